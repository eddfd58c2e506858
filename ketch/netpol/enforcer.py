"""The NetworkPolicy enforcer of one node: watches NetworkPolicies, Pods (all of them: selectors
pick peers on every node) and Namespaces, and keeps the node namespace's filter rules for its
own pods current, each change set applied in one atomic `iptables-restore --noflush`."""
from __future__ import annotations

import asyncio
import logging
import time

from ..client.background import Background
from ..client.informer import SharedInformers
from ..proxy.proxier import NetnsIptables
from .rules import (DNS_NAMESPACE, DNS_SERVICE, OUR_PREFIXES, Rendered, agent_dns_peers, jump_fix, pod_info,
                    render)

log = logging.getLogger("ketch.netpol")

DEFAULT_MIN_SYNC_PERIOD = 1.0   # coalescing, as kube-proxy's minSyncPeriod
DEFAULT_SYNC_PERIOD = 30.0      # a sync even without changes: re-checks FORWARD's jump, heals edits


def _pod_facts(obj: dict):
    """What of a pod the rules depend on; status-only updates (conditions, restarts) do not count."""
    p = pod_info(obj)
    return None if p is None else (p.ip, p.node_name, tuple(sorted(p.labels.items())), tuple(sorted(p.ports.items())))


def _labels(obj: dict):
    return (obj.get("metadata") or {}).get("labels")


class NetworkPolicyEnforcer(Background):
    def __init__(self, informers: SharedInformers, netns: str, node_name: str, *, backend: str = "",
                 min_sync_period: float = DEFAULT_MIN_SYNC_PERIOD, sync_period: float = DEFAULT_SYNC_PERIOD):
        self.iptables = NetnsIptables(netns, backend)
        self.node_name = node_name
        self.policies = informers.informer("networking.k8s.io/v1", "NetworkPolicy")
        self.pods = informers.informer("v1", "Pod")
        self.namespaces = informers.informer("v1", "Namespace")
        self.slices = informers.informer("discovery.k8s.io/v1", "EndpointSlice")   # the proxy's, shared
        self.min_sync_period = min_sync_period
        self.sync_period = sync_period
        self.last: Rendered | None = None
        self.syncs = 0                 # restores done (tests read it)
        self._changed = asyncio.Event()
        self._last_sync = 0.0
        self.policies.add_handlers(on_add=self._touch, on_update=lambda old, new: self._touch(),
                                   on_delete=self._touch)
        self.pods.add_handlers(on_add=self._touch, on_update=self._pod_update, on_delete=self._touch)
        self.namespaces.add_handlers(on_add=self._touch, on_delete=self._touch,
                                     on_update=lambda old, new: _labels(old) != _labels(new) and self._touch())
        self.slices.add_handlers(on_add=self._slice_change, on_delete=self._slice_change,
                                 on_update=lambda old, new: self._slice_change(new))

    def _touch(self, *_) -> None:
        self._changed.set()

    def _slice_change(self, sl: dict) -> None:
        # Only the agents' kube-dns slices are peers (agent_dns_peers); the rest is the proxy's.
        labels = (sl.get("metadata") or {}).get("labels") or {}
        if (sl.get("metadata") or {}).get("namespace") == DNS_NAMESPACE and \
                labels.get("kubernetes.io/service-name") == DNS_SERVICE:
            self._changed.set()

    def _pod_update(self, old: dict, new: dict) -> None:
        if _pod_facts(old) != _pod_facts(new):
            self._changed.set()

    async def _ensure_bridge_netfilter(self) -> None:
        # Pod-to-pod traffic on one node is bridged on cni0: FORWARD sees it only with this on
        # (per network namespace since Linux 5.3, so this is the node namespace's own switch).
        rc, _, err = await self.iptables.run("sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=1")
        if rc != 0:
            log.warning("network policies cannot see traffic between pods on one node "
                        "(net.bridge.bridge-nf-call-iptables: %s)", err.strip())

    async def sync_once(self, force: bool = False) -> bool:
        """One sync from the informer caches; True when rules were written."""
        self._changed.clear()
        self._last_sync = time.monotonic()
        args = (self.policies.list(), self.pods.list(), self.namespaces.list(), self.node_name)
        dns = agent_dns_peers(self.slices.list())
        if not force and self.last is not None and render(*args, extra_peers=dns).state == self.last.state:
            # The rules stand; the jump may not: kube-proxy's jumps, inserted at the top of FORWARD
            # when the proxy (re)starts, can land ahead of ours.
            await self._fix_jump()
            return False
        saved = await self.iptables.save("filter")
        chains = {line[1:].split()[0] for line in saved.splitlines() if line.startswith(":")}
        forward = [line for line in saved.splitlines() if line.startswith("-A FORWARD ")]
        rendered = render(*args, existing_chains={c for c in chains if c.startswith(OUR_PREFIXES)},
                          forward=forward, extra_peers=dns)
        try:
            await self.iptables.restore(rendered.text)
        except Exception:
            self.last = None           # the next sync rewrites everything
            raise
        self.last = rendered
        self.syncs += 1
        return True

    async def _fix_jump(self) -> None:
        fix = jump_fix([line for line in (await self.iptables.save("filter")).splitlines()
                        if line.startswith("-A FORWARD ")])
        if fix:
            await self.iptables.restore("*filter\n" + "\n".join(fix) + "\nCOMMIT\n")

    async def run(self) -> None:
        await self._ensure_bridge_netfilter()
        await asyncio.gather(*(inf.synced.wait() for inf in (self.policies, self.pods, self.namespaces, self.slices)))
        force = True
        while True:
            try:
                await self.sync_once(force=force)
            except Exception:
                log.exception("network policy sync failed; retrying")
                self._changed.set()
            try:
                await asyncio.wait_for(self._changed.wait(), self.sync_period)
                force = False
            except asyncio.TimeoutError:
                force = True
                continue
            delay = self._last_sync + self.min_sync_period - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
