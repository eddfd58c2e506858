"""Pod IPs for simulated nodes: from the node's spec.podCIDR when the node IPAM controller set one,
else from a /24 of 10.128.0.0/9 chosen by the node's index. Nothing is ever bound to them."""
from __future__ import annotations

import ipaddress


def fallback_cidr(index: int) -> str:
    return f"10.{128 + (index // 256) % 128}.{index % 256}.0/24"


class PodAddresses:
    """Per node: the pod IPs in use, so a pod keeps its IP and no two pods share one."""

    def __init__(self) -> None:
        self._by_pod: dict[str, tuple[str, str]] = {}      # pod key -> (node, ip)
        self._used: dict[str, set[str]] = {}               # node -> ips
        self._next: dict[str, int] = {}                    # node -> next host offset to try

    def get(self, key: str) -> str | None:
        entry = self._by_pod.get(key)
        return entry[1] if entry else None

    def claim(self, key: str, node: str, ip: str) -> None:
        """Record an IP a pod already has (after a restart of the simulator)."""
        if key not in self._by_pod:
            self._by_pod[key] = (node, ip)
            self._used.setdefault(node, set()).add(ip)

    def assign(self, key: str, node: str, cidr: str) -> str:
        current = self.get(key)
        if current is not None:
            return current
        net = ipaddress.ip_network(cidr, strict=False)
        used = self._used.setdefault(node, set())
        size = net.num_addresses
        start = self._next.get(node, 2)   # .1 is the node's bridge, as with host-local
        for i in range(size):
            offset = (start + i) % size
            if offset < 2 or offset == size - 1:
                continue
            ip = str(net.network_address + offset)
            if ip not in used:
                used.add(ip)
                self._by_pod[key] = (node, ip)
                self._next[node] = offset + 1
                return ip
        raise RuntimeError(f"no free pod IP on {node} in {cidr}")

    def release(self, key: str) -> None:
        entry = self._by_pod.pop(key, None)
        if entry is not None:
            self._used.get(entry[0], set()).discard(entry[1])
