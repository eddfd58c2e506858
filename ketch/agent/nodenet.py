"""The node's uplink when nodes share one machine: each node's network namespace gets an `eth0`
on an underlay bridge that lives in a namespace of its own, an address on it (the node's
InternalIP), a default route to the underlay's gateway address (which leads nowhere: the underlay
has no way out of the machine) and, kept current from the Nodes, a route to every other node's
podCIDR via that node's address: flannel's host-gw, no overlay needed on one L2 segment.

What is allocated lives in the underlay itself: each node's port on the bridge carries the node
namespace and address in its interface alias, so an agent restart finds its address again and
a new node takes the lowest free one (under a file lock: agents of several processes may start
at once). Nothing here touches the root namespace: every command runs with `ip -n`.
"""
from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import ipaddress
import json
import logging
import subprocess
from pathlib import Path

from ..client.background import Background
from ..client.informer import SharedInformers

log = logging.getLogger("ketch.agent.nodenet")

DEFAULT_UNDERLAY_CIDR = "172.30.0.0/16"
UPLINK = "eth0"
BRIDGE = "underlay0"
ROUTE_PROTOCOL = "196"     # marks the host-gw routes as ours (any number the kernel does not use itself)
ALIAS_PREFIX = "ketch-node "
LOCK_DIR = Path("/run/ketch")


class NodeNetError(Exception):
    pass


def _ip(*args: str, netns: str | None, check: bool = True) -> str:
    """`ip` inside namespace `netns` (None: this process's own, for `--network host`)."""
    argv = ["ip", *(("-n", netns) if netns else ()), *args]
    got = subprocess.run(argv, capture_output=True, text=True)
    if check and got.returncode != 0:
        raise NodeNetError(f"{' '.join(argv)}: {got.stderr.strip()}")
    return got.stdout


def _ensure_netns(name: str) -> None:
    if not (Path("/run/netns") / name).exists():
        subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True)
    _ip("link", "set", "lo", "up", netns=name)


def _sysctl(netns: str, key: str, value: str) -> None:
    # `ip netns exec` runs sysctl inside the namespace: /proc/sys/net is per namespace.
    subprocess.run(["ip", "netns", "exec", netns, "sysctl", "-qw", f"{key}={value}"], check=True,
                   capture_output=True)


def port_name(node_netns: str) -> str:
    """The node's port on the underlay bridge: unique per node namespace, within IFNAMSIZ."""
    return "u-" + hashlib.sha1(node_netns.encode()).hexdigest()[:12]


def _ports(underlay: str) -> dict[str, dict]:
    """The bridge's ports that carry a node: port name -> {"netns": ..., "ip": ...}."""
    ports = {}
    for link in json.loads(_ip("-j", "link", "show", netns=underlay) or "[]"):
        alias = link.get("ifalias") or ""
        if alias.startswith(ALIAS_PREFIX):
            ports[link["ifname"]] = dict(kv.split("=", 1) for kv in alias[len(ALIAS_PREFIX):].split() if "=" in kv)
    return ports


def _uplink_address(node_netns: str) -> str | None:
    for link in json.loads(_ip("-j", "addr", "show", "dev", UPLINK, netns=node_netns, check=False) or "[]"):
        for addr in link.get("addr_info", []):
            if addr.get("family") == "inet":
                return addr["local"]
    return None


@contextlib.contextmanager
def _locked(underlay: str):
    """One lock for every underlay of the machine: nothing per underlay to leak or race on."""
    LOCK_DIR.mkdir(parents=True, exist_ok=True)
    with open(LOCK_DIR / "underlay.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def check_underlay_cidr(cidr: str, *others: str) -> str:
    """The underlay CIDR if usable: IPv4, room for a gateway and nodes, clear of loopback and of
    the cluster's other ranges (pod and service CIDRs); ValueError says why not."""
    network = ipaddress.ip_network(cidr, strict=False)
    if network.version != 4 or network.prefixlen > 29:
        raise ValueError(f"{cidr}: the underlay needs an IPv4 range of /29 or larger")
    if network.is_loopback:
        raise ValueError(f"{cidr}: the underlay cannot be loopback")
    for other in others:
        if other and network.overlaps(ipaddress.ip_network(other, strict=False)):
            raise ValueError(f"{cidr} overlaps {other}")
    return str(network)


def attach(node_netns: str, underlay: str, cidr: str = DEFAULT_UNDERLAY_CIDR) -> str:
    """Give `node_netns` its uplink on `underlay` (both made if missing); returns the node's
    address. Idempotent: a second call (an agent restart) returns the same address."""
    network = ipaddress.ip_network(cidr, strict=False)
    gateway = next(network.hosts())
    with _locked(underlay):
        _ensure_netns(underlay)
        _ensure_netns(node_netns)
        if not _ip("link", "show", BRIDGE, netns=underlay, check=False):
            _ip("link", "add", BRIDGE, "type", "bridge", netns=underlay)
            _ip("addr", "add", f"{gateway}/{network.prefixlen}", "dev", BRIDGE, netns=underlay)
        _ip("link", "set", BRIDGE, "up", netns=underlay)
        port = port_name(node_netns)
        ports = _ports(underlay)
        address = _uplink_address(node_netns)
        if port not in ports or address is None:
            if port in ports or _ip("link", "show", port, netns=underlay, check=False):
                _ip("link", "del", port, netns=underlay)   # half made: start over
                ports.pop(port, None)
            used = {p.get("ip") for p in ports.values()}
            address = next((str(a) for a in network.hosts() if a != gateway and str(a) not in used), None)
            if address is None:
                raise NodeNetError(f"the underlay {cidr} has no free address for another node")
            # Made inside the node's namespace with the peer put straight into the underlay's:
            # the pair never exists in the root namespace.
            _ip("link", "add", UPLINK, "type", "veth", "peer", "name", port, "netns", underlay, netns=node_netns)
            _ip("link", "set", port, "alias", f"{ALIAS_PREFIX}netns={node_netns} ip={address}", netns=underlay)
            _ip("addr", "add", f"{address}/{network.prefixlen}", "dev", UPLINK, netns=node_netns)
        _ip("link", "set", port, "master", BRIDGE, "up", netns=underlay)
        _ip("link", "set", UPLINK, "up", netns=node_netns)
        # Service and other nodes' traffic leaves by the uplink; the node routes between its pods'
        # bridge and the uplink.
        _ip("route", "replace", "default", "via", str(gateway), "dev", UPLINK, netns=node_netns)
        _sysctl(node_netns, "net.ipv4.ip_forward", "1")
    return address


def detach(node_netns: str, underlay: str) -> None:
    """Take the node off the underlay (its veth pair goes), and the underlay itself when it was the
    last node on it."""
    if not (Path("/run/netns") / underlay).exists():
        return
    with _locked(underlay):
        port = port_name(node_netns)
        if _ip("link", "show", port, netns=underlay, check=False):
            _ip("link", "del", port, netns=underlay, check=False)
        if not _ports(underlay):
            subprocess.run(["ip", "netns", "del", underlay], capture_output=True)


def default_route_address() -> str | None:
    """The source address of this namespace's default route, as the kubelet picks its node IP
    (a route lookup: nothing is sent)."""
    try:
        got = json.loads(_ip("-j", "route", "get", "8.8.8.8", netns=None, check=False) or "[]")
    except ValueError:
        return None
    return got[0].get("prefsrc") if got else None


def node_routes(nodes: list[dict], own_name: str, cidr: str | None) -> dict[str, str]:
    """podCIDR -> next hop for every other node whose InternalIP is on the underlay (cidr None:
    every other node)."""
    network = ipaddress.ip_network(cidr, strict=False) if cidr else ipaddress.ip_network("0.0.0.0/0")
    routes = {}
    for node in nodes:
        if node["metadata"]["name"] == own_name:
            continue
        ip = next((a["address"] for a in (node.get("status") or {}).get("addresses") or []
                   if a.get("type") == "InternalIP"), None)
        try:
            address = ipaddress.ip_address(ip) if ip is not None else None
        except ValueError:
            continue
        if address is None or address not in network or address.is_loopback:
            continue
        for pod_cidr in (node.get("spec") or {}).get("podCIDRs") or [(node.get("spec") or {}).get("podCIDR")]:
            if pod_cidr and ":" not in pod_cidr:
                routes[pod_cidr] = ip
    return routes


class HostGwRoutes(Background):
    """Keeps the node namespace's routes to the other nodes' pods equal to what the Nodes say."""

    RESYNC = 30.0

    def __init__(self, informers: SharedInformers, node_netns: str | None, node_name: str,
                 cidr: str | None = DEFAULT_UNDERLAY_CIDR):
        self.netns = node_netns
        self.node_name = node_name
        self.cidr = cidr
        self.nodes = informers.informer("v1", "Node")
        self._refused: dict[str, str] = {}    # routes the kernel refused (said once)
        self._changed = asyncio.Event()
        self.nodes.add_handlers(on_add=lambda _: self._changed.set(),
                                on_update=lambda _old, _new: self._changed.set(),
                                on_delete=lambda _: self._changed.set())

    def current(self) -> dict[str, str]:
        routes = {}
        for r in json.loads(_ip("-j", "route", "show", "proto", ROUTE_PROTOCOL, netns=self.netns) or "[]"):
            if r.get("gateway"):
                routes[r["dst"]] = r["gateway"]
        return routes

    def sync(self) -> None:
        want = node_routes(self.nodes.list(), self.node_name, self.cidr)
        have = self.current()
        for dst in have.keys() - want.keys():
            _ip("route", "del", dst, "proto", ROUTE_PROTOCOL, netns=self.netns, check=False)
        for dst, via in want.items():
            if have.get(dst) == via:
                continue
            # On the underlay the next hop is out of the uplink; on a real machine wherever the kernel
            # finds it directly (a next hop behind a router is refused: host-gw needs one L2).
            dev = ("dev", UPLINK) if self.netns else ()
            try:
                _ip("route", "replace", dst, "via", via, *dev, "proto", ROUTE_PROTOCOL, netns=self.netns)
            except NodeNetError as e:   # one node's route, not the others'
                if self._refused.get(dst) != via:
                    log.warning("no route to node pods %s via %s: %s", dst, via, e)
                self._refused[dst] = via
            else:
                self._refused.pop(dst, None)

    async def run(self) -> None:
        await self.nodes.synced.wait()
        while True:
            self._changed.clear()
            try:
                await asyncio.to_thread(self.sync)
            except Exception:  # noqa: BLE001 - retried on the next change or resync
                log.exception("syncing the routes to other nodes' pods")
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._changed.wait(), self.RESYNC)
