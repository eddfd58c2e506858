"""The ingress controller of a node agent: informers in, routing state and Ingress status out,
and the listeners that serve it.

Every change of an Ingress, IngressClass, Service, EndpointSlice or Secret schedules one rebuild
(events of one loop turn are coalesced): the Ingresses of our class → a route table, the ready
endpoints of each backend it names, the SNI certificates. The proxy reads the new state on its
next request; connections in flight keep theirs.
"""
from __future__ import annotations

import asyncio
import logging

from ..agent.runtime.namespaces import NetnsSockets
from ..api.errors import ApiError
from ..client.background import Background
from ..client.informer import SharedInformers, object_key
from ..client.rest import Client
from .proxy import IngressProxy, RoutingState
from .routes import (DEFAULT_CLASS_ANNOTATION, SERVICE_NAME_LABEL, build_table, is_default_class,
                     resolve_endpoints, serves, tls_hosts)
from .tls import SniContexts

log = logging.getLogger("ketch.ingress")

CONTROLLER_NAME = "ketch.io/ingress-controller"   # spec.controller of our IngressClass
STATUS_RETRY = 2.0
LISTEN_RETRY = 10.0   # a listen that failed (the port taken) is tried again this often


def _service_of_slice(es: dict) -> list[str]:
    name = (es.get("metadata", {}).get("labels") or {}).get(SERVICE_NAME_LABEL)
    return [f"{es['metadata'].get('namespace')}/{name}"] if name else []


class IngressController(Background):
    """Serves the Ingresses of IngressClass `class_name` on `http` and `https` (host, port; port 0:
    not served) in the agent's own namespace (the host's loopback; SO_REUSEPORT so agents on one
    machine share the ports), and, with `node_address`, on that address inside the node's
    namespace too. Pods are dialled through `sockets` (the node's namespace). Served Ingresses
    get status.loadBalancer.ingress [{"ip": status_ip}]. With `ensure_class`, an IngressClass
    `class_name` is created when missing, as the default class unless another one is."""

    def __init__(self, informers: SharedInformers, client: Client, sockets: NetnsSockets, *,
                 class_name: str = "ketch", http: tuple[str, int] = ("127.0.0.1", 80),
                 https: tuple[str, int] = ("127.0.0.1", 443), status_ip: str = "127.0.0.1",
                 node_address: str | None = None, ensure_class: bool = True):
        self.client = client
        self.sockets = sockets
        self.class_name = class_name
        self.http, self.https = http, https
        self.status_ip = status_ip
        self.node_address = node_address
        self.ensure_class = ensure_class
        self.ingresses = informers.informer("networking.k8s.io/v1", "Ingress")
        self.classes = informers.informer("networking.k8s.io/v1", "IngressClass")
        self.services = informers.informer("v1", "Service")
        self.slices = informers.informer("discovery.k8s.io/v1", "EndpointSlice")
        self.secrets = informers.informer("v1", "Secret")
        self.slices.add_index("service", _service_of_slice)
        self.proxy = IngressProxy(sockets)
        self.sni = SniContexts()
        self.served: set[str] = set()        # namespace/name of the Ingresses of our class
        self.ready = asyncio.Event()         # listeners open and the first state built
        self.addresses: list[tuple[str, int, str]] = []   # (host, port, scheme) actually listened on
        self.rebuilds = 0
        self._scheduled = False
        self._status_wake = asyncio.Event()
        self._servers: list[asyncio.base_events.Server] = []

    # ---- state -----------------------------------------------------------------------------

    def _changed(self, *_args) -> None:
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self.rebuild)

    def rebuild(self) -> None:
        self._scheduled = False
        classes = self.classes.list()
        mine = [i for i in self.ingresses.list() if serves(i, self.class_name, classes)]
        table = build_table(mine)
        services = self.services.cache
        endpoints: dict[str, list[tuple[str, int]]] = {}
        backends = [r.backend for r in table.routes if r.backend is not None]
        if table.default is not None:
            backends.append(table.default)
        for b in backends:
            if b.key not in endpoints:
                key = f"{b.namespace}/{b.service}"
                endpoints[b.key] = resolve_endpoints(b, services, {key: self.slices.by_index("service", key)})
        self.proxy.state = RoutingState(table, endpoints)
        self.proxy.pool.sweep(self.proxy.clock, {addr for eps in endpoints.values() for addr in eps})
        self.sni.update(tls_hosts(mine), self.secrets.cache)
        self.served = {object_key(i) for i in mine}
        self.rebuilds += 1
        self._status_wake.set()

    # ---- IngressClass ----------------------------------------------------------------------

    async def _ensure_class(self) -> None:
        if self.classes.get(self.class_name) is not None:
            return
        default = not any(is_default_class(c) for c in self.classes.list())
        obj = {"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
               "metadata": {"name": self.class_name,
                            **({"annotations": {DEFAULT_CLASS_ANNOTATION: "true"}} if default else {})},
               "spec": {"controller": CONTROLLER_NAME}}
        try:
            await self.client.resource("networking.k8s.io/v1", "IngressClass").create(obj)
            log.info("ingress: created IngressClass %s%s", self.class_name, " (default)" if default else "")
        except ApiError as e:
            if e.code != 409:   # another agent was first
                log.warning("ingress: cannot create IngressClass %s: %s", self.class_name, e.message)

    # ---- status ----------------------------------------------------------------------------

    def desired_status(self, ingress: dict) -> list[dict] | None:
        """The status.loadBalancer.ingress to write, or None when it is right already: ours added
        on a served Ingress, ours removed on one we do not serve; other agents' entries (another
        --ingress-address) kept either way, or agents would overwrite each other forever."""
        current = ((ingress.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
        ours = {"ip": self.status_ip}
        if object_key(ingress) in self.served:
            if any(e.get("ip") == self.status_ip and not e.get("hostname") for e in current):
                return None
            return [*current, ours]
        if any(e.get("ip") == self.status_ip and not e.get("hostname") for e in current):
            return [e for e in current if not (e.get("ip") == self.status_ip and not e.get("hostname"))]
        return None

    async def sync_status(self) -> bool:
        """One pass over the cached Ingresses; True when every write that was due succeeded."""
        ok = True
        res = self.client.resource("networking.k8s.io/v1", "Ingress")
        for ing in self.ingresses.list():
            want = self.desired_status(ing)
            if want is None:
                continue
            meta = ing["metadata"]
            body = {"status": {"loadBalancer": {"ingress": want or None}}}
            try:
                await res.patch(meta["name"], body, namespace=meta.get("namespace"), subresource="status")
            except ApiError as e:
                if e.code != 404:
                    log.warning("ingress: status of %s/%s: %s", meta.get("namespace"), meta["name"], e.message)
                    ok = False
            except (OSError, asyncio.TimeoutError) as e:
                log.info("ingress: status of %s/%s: %s", meta.get("namespace"), meta["name"], e)
                ok = False
        return ok

    async def _status_loop(self) -> None:
        while True:
            await self._status_wake.wait()
            self._status_wake.clear()
            try:
                ok = await self.sync_status()
            except Exception:  # noqa: BLE001 - aiohttp's errors; try again
                log.exception("ingress: status sync failed")
                ok = False
            if not ok:
                await asyncio.sleep(STATUS_RETRY)
                self._status_wake.set()

    # ---- listeners -------------------------------------------------------------------------

    def _plans(self) -> list[tuple[NetnsSockets, str, int, str, str]]:
        here = NetnsSockets(None)
        plans = []
        for (host, port), scheme in ((self.http, "http"), (self.https, "https")):
            if port:
                plans.append((here, host, port, scheme, "the host"))
                if self.node_address:
                    plans.append((self.sockets, self.node_address, port, scheme, "the node's namespace"))
        return plans

    async def _listen(self, plans: list) -> list:
        """Open each planned listener; the ones that failed are returned (to try again later)."""
        failed = []
        for plan in plans:
            sockets, host, port, scheme, where = plan
            sock = None
            try:
                sock = await sockets.listen(host, port, reuse_port=True)
                loop = asyncio.get_running_loop()
                if scheme == "https":
                    server = await loop.create_server(self.proxy.protocol(b"https"), sock=sock, ssl=self.sni.fallback)
                else:
                    server = await loop.create_server(self.proxy.protocol(b"http"), sock=sock)
            except OSError as e:
                if sock is not None:
                    sock.close()
                log.warning("ingress: cannot listen on %s:%s in %s (trying again in %g s): %s",
                            host, port, where, LISTEN_RETRY, e)
                failed.append(plan)
                continue
            self._servers.append(server)
            self.addresses.append((host, sock.getsockname()[1], scheme))
            log.info("ingress: class %s serving on %s://%s:%s", self.class_name, scheme, host, sock.getsockname()[1])
        return failed

    async def _listen_retry(self, pending: list) -> None:
        while pending:
            await asyncio.sleep(LISTEN_RETRY)
            pending = await self._listen(pending)

    async def run(self) -> None:
        status_task = retry_task = None
        try:
            for inf in (self.ingresses, self.classes, self.services, self.slices, self.secrets):
                await inf.synced.wait()
            if self.ensure_class:
                await self._ensure_class()
            for inf in (self.ingresses, self.classes, self.services, self.slices, self.secrets):
                inf.add_handlers(on_add=self._changed, on_update=self._changed, on_delete=self._changed)
            self.rebuild()
            pending = await self._listen(self._plans())
            if pending:   # the listeners that worked serve meanwhile
                retry_task = asyncio.create_task(self._listen_retry(pending))
            status_task = asyncio.create_task(self._status_loop())
            self.ready.set()
            await asyncio.Event().wait()
        finally:
            for task in (status_task, retry_task):
                if task is not None:
                    task.cancel()
            for server in self._servers:
                server.close()
            self.proxy.close()
            self._servers.clear()
