"""Applying the service proxy's rules inside a node's network namespace, and the Proxier loop fed
by the Service and EndpointSlice informers (kube-proxy's iptables Proxier).

Every command runs through `nsenter --net=<netns path>`: the namespace is a required argument, so
the proxy can never touch the root network namespace by accident.
"""
from __future__ import annotations

import asyncio
import logging
import os
import time

from ..client.background import Background
from ..client.informer import SharedInformers
from .rules import JUMP_RULES, NodeFacts, ServicePort, render, service_ports

log = logging.getLogger("ketch.proxy")

DEFAULT_MIN_SYNC_PERIOD = 1.0   # kube-proxy's iptables.minSyncPeriod
DEFAULT_SYNC_PERIOD = 30.0      # kube-proxy's iptables.syncPeriod: a sync even without changes
FULL_SYNC_PERIOD = 3600.0       # kube-proxy's fullSyncPeriod: everything rewritten, jumps re-checked
COMMAND_TIMEOUT = 30.0


class ProxyError(Exception):
    pass


def netns_path(netns: str) -> str:
    """A netns name (as `ip netns add NAME` makes) or a path to a namespace file."""
    if not netns:
        raise ValueError("the proxy needs the node's network namespace; refusing the root one")
    return netns if "/" in netns else f"/run/netns/{netns}"


class NetnsIptables:
    """iptables, iptables-restore and conntrack run inside one network namespace. `backend` is
    "" (the system's default iptables, nft on Debian, the one CNI portmap also uses), "nft" or
    "legacy"."""

    def __init__(self, netns: str, backend: str = ""):
        self.netns = netns_path(netns)
        if not os.path.exists(self.netns):
            raise ProxyError(f"network namespace {self.netns} does not exist")
        self.suffix = f"-{backend}" if backend else ""

    async def run(self, *argv: str, stdin: bytes | None = None) -> tuple[int, str, str]:
        proc = await asyncio.create_subprocess_exec(
            "nsenter", f"--net={self.netns}", *argv,
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        try:
            out, err = await asyncio.wait_for(proc.communicate(stdin), COMMAND_TIMEOUT)
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()
            raise ProxyError(f"{argv[0]} timed out in {self.netns}") from None
        return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")

    async def restore(self, text: str) -> None:
        """Atomically replace our chains (--noflush keeps everyone else's rules, e.g. CNI's)."""
        rc, _, err = await self.run(f"iptables{self.suffix}-restore", "--noflush", "--wait", stdin=text.encode())
        if rc != 0:
            raise ProxyError(f"iptables-restore failed in {self.netns}: {err.strip()}")

    async def save(self, table: str) -> str:
        rc, out, err = await self.run(f"iptables{self.suffix}-save", "-t", table)
        if rc != 0:
            raise ProxyError(f"iptables-save -t {table} failed in {self.netns}: {err.strip()}")
        return out

    async def chains(self, table: str) -> set[str]:
        return {line[1:].split()[0] for line in (await self.save(table)).splitlines() if line.startswith(":")}

    async def ensure_jumps(self) -> None:
        """The jumps from the built-in chains into ours, prepended once (kube-proxy's EnsureRule)."""
        for table, chain, comment, match, target in JUMP_RULES:
            rule = [*match, "-m", "comment", "--comment", comment, "-j", target]
            rc, _, _ = await self.run(f"iptables{self.suffix}", "-w", "-t", table, "-C", chain, *rule)
            if rc != 0:
                rc, _, err = await self.run(f"iptables{self.suffix}", "-w", "-t", table, "-I", chain, "1", *rule)
                if rc != 0:
                    raise ProxyError(f"iptables -t {table} -I {chain} failed in {self.netns}: {err.strip()}")

    async def conntrack_delete(self, *match: str) -> None:
        # Exit status 1 with "0 flow entries have been deleted" is the common, harmless case.
        rc, _, err = await self.run("conntrack", "-D", *match)
        if rc not in (0, 1):
            log.warning("conntrack -D %s in %s: %s", " ".join(match), self.netns, err.strip())


def stale_udp_flows(old: list[ServicePort], new: list[ServicePort]) -> list[tuple[str, ...]]:
    """conntrack -D matches for UDP flows that would keep going to a removed endpoint, or keep
    being rejected after a service got its first endpoint (kube-proxy's deleteUDPEndpointConnections
    and the "service was empty" flush)."""
    old_by_key = {(sp.key, sp.protocol): sp for sp in old}
    new_by_key = {(sp.key, sp.protocol): sp for sp in new}
    flows: list[tuple[str, ...]] = []
    for k, sp in old_by_key.items():
        if sp.protocol != "udp":
            continue
        now = new_by_key.get(k)
        kept = {e.ip for e in now.endpoints} if now else set()
        for ep in sp.endpoints:
            if ep.ip in kept:
                continue
            for ip in [sp.cluster_ip, *sp.external_ips, *sp.lb_ips]:
                flows.append(("-p", "udp", "--orig-dst", ip, "--dst-nat", ep.ip))
            if sp.node_port:
                flows.append(("-p", "udp", "--dport", str(sp.node_port), "--dst-nat", ep.ip))
    for k, sp in new_by_key.items():
        before = old_by_key.get(k)
        if sp.protocol == "udp" and sp.endpoints and (before is None or not before.endpoints):
            for ip in [sp.cluster_ip, *sp.external_ips, *sp.lb_ips]:
                flows.append(("-p", "udp", "--orig-dst", ip))
            if sp.node_port:
                flows.append(("-p", "udp", "--dport", str(sp.node_port)))
    return list(dict.fromkeys(flows))


class RuleSyncer:
    """One node namespace's state: restores only when the rules changed, and then only the chains
    of the service ports that changed (a partial sync; a full one first, when forced and after a
    failure); deletes the chains of services that went away; flushes stale UDP conntrack entries."""

    def __init__(self, netns: str, node: NodeFacts, backend: str = ""):
        self.iptables = NetnsIptables(netns, backend)
        self.node = node
        self.last_text: str | None = None         # the last restore's input
        self.nat_chains: set[str] | None = None   # our chains in the nat table; None: read them (full sync)
        self.fingerprints: dict[str, str] = {}
        self.last_state: tuple | None = None
        self.ports: list[ServicePort] = []
        self.render_cache: dict = {}              # each service port's rules, while it is unchanged
        self.ports_cache: dict = {}               # each Service's ports, while it and its slices are
        self.syncs = 0                            # restores done (tests and metrics read it)

    async def sync(self, services: list[dict], slices: list[dict], force: bool = False) -> bool:
        """Bring the namespace's rules to these Services/EndpointSlices; True when rules were written."""
        ports = service_ports(services, slices, self.ports_cache)
        full = force or self.nat_chains is None
        if full:
            # Adopt what is there (a previous agent's chains, say) and rewrite everything.
            self.nat_chains = await self.iptables.chains("nat")
        rendered = render(ports, self.node, self.nat_chains, None if full else self.fingerprints, self.render_cache)
        if rendered.state == self.last_state and not full:
            self.ports = ports
            return False
        try:
            await self.iptables.restore(rendered.text)
            if full:
                await self.iptables.ensure_jumps()
        except Exception:
            self.nat_chains = None                # the next sync is a full one
            raise
        self.nat_chains, self.fingerprints = rendered.nat_chains, rendered.fingerprints
        self.last_state, self.last_text = rendered.state, rendered.text
        self.syncs += 1
        for flow in stale_udp_flows(self.ports, ports):
            await self.iptables.conntrack_delete(*flow)
        self.ports = ports
        return True


class Proxier(Background):
    """kube-proxy for one node: watches Services and EndpointSlices through the shared informers
    and keeps the node namespace's rules current. Changes are coalesced: a sync runs at once when
    the last one is older than min_sync_period, else when it gets that old (kube-proxy's
    BoundedFrequencyRunner); a sync every sync_period regardless, a full one every full_sync_period
    (with 1,000 services a full restore takes seconds with iptables-nft, a partial one milliseconds)."""

    def __init__(self, informers: SharedInformers, netns: str, node: NodeFacts, *, backend: str = "",
                 min_sync_period: float = DEFAULT_MIN_SYNC_PERIOD, sync_period: float = DEFAULT_SYNC_PERIOD,
                 full_sync_period: float = FULL_SYNC_PERIOD):
        self.syncer = RuleSyncer(netns, node, backend)
        self.services = informers.informer("v1", "Service")
        self.slices = informers.informer("discovery.k8s.io/v1", "EndpointSlice")
        self.min_sync_period = min_sync_period
        self.sync_period = sync_period
        self.full_sync_period = full_sync_period
        self._changed = asyncio.Event()
        self._last_sync = 0.0
        for inf in (self.services, self.slices):
            inf.add_handlers(on_add=self._on_change, on_update=self._on_update, on_delete=self._on_change)

    def _on_change(self, obj: dict) -> None:
        self._changed.set()

    def _on_update(self, old: dict, new: dict) -> None:
        self._changed.set()

    async def sync_once(self, force: bool = False) -> bool:
        """One sync from the informer caches (tests call it directly)."""
        self._changed.clear()
        self._last_sync = time.monotonic()
        return await self.syncer.sync(self.services.list(), self.slices.list(), force=force)


    async def run(self) -> None:
        await asyncio.gather(self.services.synced.wait(), self.slices.synced.wait())
        last_full = time.monotonic()       # the first sync is a full one anyway (nothing known yet)
        while True:
            try:
                full = time.monotonic() - last_full >= self.full_sync_period
                await self.sync_once(force=full)
                if full:
                    last_full = time.monotonic()
            except Exception:
                log.exception("service proxy sync failed; retrying")
                self._changed.set()
            try:
                await asyncio.wait_for(self._changed.wait(), self.sync_period)
            except asyncio.TimeoutError:
                continue
            # Coalesce: whatever else changes until min_sync_period since the last sync goes in too.
            delay = self._last_sync + self.min_sync_period - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
