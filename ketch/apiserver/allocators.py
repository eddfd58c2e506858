"""Service cluster IP and node port allocation, done by the apiserver on create as upstream does.

What is in use is read from the stored Services themselves (one source of truth, nothing to drift),
under a lock so two creates cannot take the same address.
"""
from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import random
from typing import TYPE_CHECKING


from ..api import errors, kinds
from ..api.names import FieldError, invalid
from .stored import decode

if TYPE_CHECKING:
    from .registry import Registry

SERVICE_CIDR = ipaddress.ip_network("10.43.0.0/16")
NODE_PORT_RANGE = range(30000, 32768)
KUBERNETES_SERVICE_IP = "10.43.0.1"


def _needs_node_ports(svc: dict) -> bool:
    spec = svc.get("spec", {})
    t = spec.get("type", "ClusterIP")
    return t == "NodePort" or (t == "LoadBalancer" and spec.get("allocateLoadBalancerNodePorts", True))


class ServiceAllocators:
    def __init__(self, registry: "Registry", cidr: ipaddress.IPv4Network = SERVICE_CIDR):
        self.registry = registry
        self.cidr = cidr
        self.lock = asyncio.Lock()
        self._services = kinds.lookup("", "v1", "services")

    async def _in_use(self, skip_key: str = "") -> tuple[set[str], set[int]]:
        ips: set[str] = set()
        ports: set[int] = set()
        result = await self.registry.store.range(self._services.prefix())
        for kv in result.kvs:
            if kv.key == skip_key:
                continue
            spec = decode(kv).get("spec", {})
            for ip in spec.get("clusterIPs") or ([spec["clusterIP"]] if spec.get("clusterIP") else []):
                ips.add(ip)
            for p in spec.get("ports") or []:
                if p.get("nodePort"):
                    ports.add(int(p["nodePort"]))
        return ips, ports

    @contextlib.asynccontextmanager
    async def for_create(self, res: kinds.Resource, obj: dict, dry_run: bool):
        if res.kind != "Service" or res.group != "":
            yield
            return
        async with self.lock:
            ips, ports = await self._in_use()
            problems = self._assign(obj, ips, ports)
            if problems:
                raise errors.invalid("", "Service", obj["metadata"].get("name", ""), problems)
            yield

    async def for_update(self, res: kinds.Resource, new: dict, old: dict) -> None:
        if res.kind != "Service" or res.group != "":
            return
        spec, old_spec = new.setdefault("spec", {}), old.get("spec", {})
        # The cluster IP is kept when an update omits it (kubectl replace/apply of the original manifest).
        for f in ("clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"):
            if f not in spec and f in old_spec and spec.get("type", "ClusterIP") != "ExternalName":
                spec[f] = old_spec[f]
        old_ports = {(p.get("port"), p.get("protocol", "TCP")): p.get("nodePort") for p in old_spec.get("ports") or []}
        for p in spec.get("ports") or []:
            if not p.get("nodePort") and _needs_node_ports(new):
                kept = old_ports.get((p.get("port"), p.get("protocol", "TCP")))
                if kept:
                    p["nodePort"] = kept
        async with self.lock:
            key = self._services.key(new["metadata"].get("namespace"), new["metadata"]["name"])
            ips, ports = await self._in_use(skip_key=key)
            problems = self._assign(new, ips, ports)
            if problems:
                raise errors.invalid("", "Service", new["metadata"].get("name", ""), problems)

    def _assign(self, svc: dict, ips: set[str], ports: set[int]) -> list[FieldError]:
        spec = svc.setdefault("spec", {})
        problems: list[FieldError] = []
        if spec.get("type", "ClusterIP") == "ExternalName":
            return problems
        ip = spec.get("clusterIP") or ""
        if ip and ip != "None":
            try:
                addr = ipaddress.ip_address(ip)
            except ValueError:
                addr = None
            if addr is not None and addr not in self.cidr:
                problems.append(invalid("spec.clusterIPs", [ip],
                                        f"failed to allocate IP {ip}: the provided IP ({ip}) is not in the "
                                        f"valid range. The range of valid IPs is {self.cidr}"))
            elif addr is not None and ip in ips:
                problems.append(invalid("spec.clusterIPs", [ip],
                                        f"failed to allocate IP {ip}: provided IP is already allocated"))
        elif not ip:
            ip = self._free_ip(ips)
        spec["clusterIP"] = ip
        spec["clusterIPs"] = [ip]
        spec.setdefault("ipFamilies", ["IPv4"])
        spec.setdefault("ipFamilyPolicy", "SingleStack")
        if _needs_node_ports(svc):
            taken = set(ports)
            for i, p in enumerate(spec.get("ports") or []):
                np = p.get("nodePort")
                if np:
                    if int(np) in taken:
                        problems.append(invalid(f"spec.ports[{i}].nodePort", np, "provided port is already allocated"))
                    elif int(np) not in NODE_PORT_RANGE:
                        problems.append(invalid(f"spec.ports[{i}].nodePort", np,
                                                f"provided port is not in the valid range. The range of valid "
                                                f"ports is {NODE_PORT_RANGE.start}-{NODE_PORT_RANGE.stop - 1}"))
                    taken.add(int(np))
                else:
                    p["nodePort"] = self._free_port(taken)
                    taken.add(p["nodePort"])
        return problems

    def _free_ip(self, used: set[str]) -> str:
        size = self.cidr.num_addresses
        base = int(self.cidr.network_address)
        for _ in range(64):
            candidate = str(ipaddress.ip_address(base + random.randrange(2, size - 1)))
            if candidate not in used and candidate != KUBERNETES_SERVICE_IP:
                return candidate
        for offset in range(2, size - 1):
            candidate = str(ipaddress.ip_address(base + offset))
            if candidate not in used:
                return candidate
        raise errors.internal("range is full: no more IPs available in the service range")

    @staticmethod
    def _free_port(used: set[int]) -> int:
        free = [p for p in NODE_PORT_RANGE if p not in used]
        if not free:
            raise errors.internal("range is full: no more node ports available")
        return random.choice(free)
