"""The built-in service load balancer (k3s' ServiceLB, in the shape of a cloud provider's service
controller): every Service of type LoadBalancer without spec.loadBalancerClass gets an address of
its own from a loopback pool (--service-lb-cidr, default 127.0.1.0/24), written as
status.loadBalancer.ingress [{"ip": addr, "ipMode": "VIP"}]. The node agents' host publisher
listens on that address, on the Service's ports, on the host's loopback — so, as with a cloud's
load balancers, many Services can each serve port 80 at their own EXTERNAL-IP.

The lowest free address is given (spec.loadBalancerIP, when set, must be a free one of the pool);
an address stays with its Service while it is a LoadBalancer; what is taken is rebuilt from the
Services' status on start. As upstream's service controller, it holds the Service with the
finalizer service.kubernetes.io/load-balancer-cleanup, taken off once the address is given back
(on deletion, or when the Service stops being a LoadBalancer, whose status is then cleared). With the pool used up a Service stays <pending> with upstream's SyncLoadBalancerFailed
warning, and is retried when an address is freed.
"""
from __future__ import annotations

import ipaddress
import logging

from ..api.errors import ApiError
from ..client.events import NORMAL, WARNING, EventRecorder
from ..client.informer import object_key
from ..client.rest import Client
from .base import Controller, InformerFactory

log = logging.getLogger("ketch.controllers.servicelb")

RETRY_EXHAUSTED = 60.0   # seconds; a freed address retries the waiting Services at once
FINALIZER = "service.kubernetes.io/load-balancer-cleanup"   # upstream's (and k3s ServiceLB's)


class PoolExhausted(Exception):
    pass


class AddressPool:
    """The host addresses of one CIDR and which Service (by key) holds each."""

    def __init__(self, cidr: str):
        self.network = ipaddress.ip_network(cidr, strict=False)
        if self.network.version != 4:
            raise ValueError(f"service load balancer CIDR must be IPv4: {cidr}")
        first, last = int(self.network.network_address), int(self.network.broadcast_address)
        if self.network.num_addresses > 2:
            first, last = first + 1, last - 1          # no network or broadcast address
        self.first, self.last = first, last
        self.owner: dict[int, str] = {}                # address -> service key
        self.held: dict[str, int] = {}                 # service key -> address

    @property
    def size(self) -> int:
        return self.last - self.first + 1

    def _index(self, ip: str) -> int | None:
        try:
            addr = int(ipaddress.IPv4Address(ip))
        except ValueError:
            return None
        return addr if self.first <= addr <= self.last else None

    def contains(self, ip: str) -> bool:
        return self._index(ip) is not None

    def address_of(self, key: str) -> str | None:
        addr = self.held.get(key)
        return None if addr is None else str(ipaddress.IPv4Address(addr))

    def occupy(self, key: str, ip: str) -> bool:
        """Give `ip` to `key` if it is in the pool and free (or already key's)."""
        addr = self._index(ip)
        if addr is None or self.owner.get(addr, key) != key:
            return False
        self.release(key)
        self.owner[addr], self.held[key] = key, addr
        return True

    def release(self, key: str) -> bool:
        addr = self.held.pop(key, None)
        if addr is None:
            return False
        del self.owner[addr]
        return True

    def allocate(self, key: str) -> str:
        """key's address, or the lowest free one."""
        held = self.address_of(key)
        if held is not None:
            return held
        for addr in range(self.first, self.last + 1):
            if addr not in self.owner:
                self.owner[addr], self.held[key] = key, addr
                return str(ipaddress.IPv4Address(addr))
        raise PoolExhausted(f"no free address left in {self.network}")


def is_ours(svc: dict) -> bool:
    spec = svc.get("spec") or {}
    return spec.get("type") == "LoadBalancer" and not spec.get("loadBalancerClass")


def ingress_ips(svc: dict) -> list[str]:
    return [i["ip"] for i in ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or ()
            if i.get("ip")]


class ServiceLBController(Controller):
    name = "service-lb"
    component = "service-controller"   # the events' source a cloud's load balancers have
    workers = 1   # allocation is a decision over all Services; one worker keeps it ordered

    def __init__(self, client: Client, informers: InformerFactory, recorder: EventRecorder):
        super().__init__(client, informers, recorder)
        self.pool = AddressPool(self.options.service_lb_cidr)
        self.service_api = client.resource("v1", "Service")
        self.services = informers.informer("v1", "Service")
        self.waiting: set[str] = set()
        self._rebuilt = False
        self.services.add_handlers(on_add=self.enqueue, on_update=lambda _o, n: self.enqueue(n),
                                   on_delete=self.enqueue)

    def _rebuild(self) -> None:
        """Occupy what the stored Services hold, oldest first, before handing out any address."""
        for svc in sorted(self.services.list(), key=lambda s: (s["metadata"].get("creationTimestamp") or "",
                                                                object_key(s))):
            if is_ours(svc):
                for ip in ingress_ips(svc):
                    if self.pool.occupy(object_key(svc), ip):
                        break
        self._rebuilt = True

    def _release(self, key: str) -> None:
        if self.pool.release(key):
            for waiting in self.waiting:
                self.enqueue(waiting)

    async def _write_ingress(self, svc: dict, ingress: list[dict] | None) -> None:
        meta = svc["metadata"]
        await self.service_api.patch(meta["name"], {"status": {"loadBalancer": {"ingress": ingress}}}, "merge",
                                     namespace=meta["namespace"], subresource="status")

    async def _set_finalizer(self, svc: dict, present: bool) -> None:
        meta = svc["metadata"]
        others = [f for f in meta.get("finalizers") or () if f != FINALIZER]
        await self.service_api.patch(meta["name"], {"metadata": {
            "resourceVersion": meta["resourceVersion"], "finalizers": [*others, FINALIZER] if present else others}},
            "merge", namespace=meta["namespace"])

    async def sync(self, key: str) -> float | None:
        if not self._rebuilt:
            self._rebuild()
        svc = self.services.get(key)
        if svc is None:
            self.waiting.discard(key)
            self._release(key)
            return None
        meta, spec = svc["metadata"], svc.get("spec") or {}
        finalized = FINALIZER in (meta.get("finalizers") or ())
        if finalized and (meta.get("deletionTimestamp") or not is_ours(svc)):
            return await self._clean_up(svc, key)
        if not is_ours(svc):
            self.waiting.discard(key)
            self._release(key)
            # A LoadBalancer address left behind without our finalizer (a class of its own
            # belongs to another controller: its status is left alone).
            if spec.get("type") != "LoadBalancer" and any(self.pool.contains(ip) for ip in ingress_ips(svc)):
                await self._write_ingress(svc, None)
            return None
        if meta.get("deletionTimestamp"):
            return None
        if not finalized:
            # First the finalizer, as upstream's service controller: the address is given back
            # before the Service goes, whatever happens to this process meanwhile.
            await self._set_finalizer(svc, True)
            return None     # the update comes back through the informer
        shown = ingress_ips(svc)
        held = self.pool.address_of(key)
        if held is not None and shown == [held]:
            return None
        wanted = spec.get("loadBalancerIP") or ""
        try:
            ip = self._choose(key, svc, wanted, shown)
        except PoolExhausted as e:
            self.waiting.add(key)
            log.info("service %s: %s", key, e)
            self.recorder.event(svc, WARNING, "SyncLoadBalancerFailed",
                                f"Error syncing load balancer: failed to ensure load balancer: {e}")
            return RETRY_EXHAUSTED
        self.waiting.discard(key)
        self.recorder.event(svc, NORMAL, "EnsuringLoadBalancer", "Ensuring load balancer")
        try:
            await self._write_ingress(svc, [{"ip": ip, "ipMode": "VIP"}])
        except ApiError as e:
            if e.code == 404:
                self._release(key)
                return None
            raise
        log.info("service %s: load balancer address %s", key, ip)
        self.recorder.event(svc, NORMAL, "EnsuredLoadBalancer", "Ensured load balancer")
        return None

    async def _clean_up(self, svc: dict, key: str) -> None:
        """A Service being deleted, or no longer a LoadBalancer: its address back to the pool,
        then the finalizer off and (if it stays) its status cleared, as upstream does."""
        self.waiting.discard(key)
        self.recorder.event(svc, NORMAL, "DeletingLoadBalancer", "Deleting load balancer")
        self._release(key)
        self.recorder.event(svc, NORMAL, "DeletedLoadBalancer", "Deleted load balancer")
        try:
            await self._set_finalizer(svc, False)
            if not svc["metadata"].get("deletionTimestamp") and ingress_ips(svc):
                await self._write_ingress(svc, None)
        except ApiError as e:
            if e.code != 404:
                raise
        return None

    def _choose(self, key: str, svc: dict, wanted: str, shown: list[str]) -> str:
        held = self.pool.address_of(key)
        if wanted:
            if held == wanted or self.pool.occupy(key, wanted):
                return wanted
            why = "is in use" if self.pool.contains(wanted) else f"is not in {self.pool.network}"
            raise PoolExhausted(f"requested loadBalancerIP {wanted} {why}")
        if held is not None:
            return held
        for ip in shown:   # what it showed before a restart, if still free
            if self.pool.occupy(key, ip):
                return ip
        return self.pool.allocate(key)
