"""Node lifecycle and taint-based eviction, as upstream's node-lifecycle-controller and
taint-eviction-controller.

NodeLifecycleController watches the health signals of every Node: its kube-node-lease Lease
renewals and its Ready condition's heartbeats. A node that shows neither within the grace period
gets its Ready, MemoryPressure, DiskPressure and PIDPressure conditions set to Unknown ("Kubelet
stopped posting node status."), its pods marked not Ready, and the NoExecute taint
node.kubernetes.io/unreachable (node.kubernetes.io/not-ready when Ready is False). NoExecute taints
are added at most 0.1 nodes per second per zone, and not at all when every node is down (upstream's
"master disruption" guess: the control plane, not the nodes, is cut off) or when a small zone is
partially disrupted. A node Ready again loses them at once. The NoSchedule taints follow the
conditions too (not-ready, unreachable, memory/disk/pid-pressure, network-unavailable) and
spec.unschedulable (node.kubernetes.io/unschedulable).

TaintEvictionController deletes the pods on a node with NoExecute taints they do not tolerate: at
once without a toleration, after the least tolerationSeconds of the tolerations used (the
DefaultTolerationSeconds admission plugin gives every pod 300 s for not-ready and unreachable),
never for tolerations without seconds. The pod first gets the DisruptionTarget condition
(DeletionByTaintManager). Pods stuck terminating on a dead node stay, as upstream; their
controllers replace them.

Timing comes from upstream's flags (ketch.controllers.options): --node-monitor-grace-period
(default 50s, upstream's since 1.32), --node-startup-grace-period (1m), --node-monitor-period (5s),
--node-eviction-rate (0.1 nodes/s per zone).
"""
from __future__ import annotations

import asyncio
import copy
import logging
import time

from ..api.errors import ApiError
from ..client.informer import object_key
from ..client.rest import Client
from ..api.scheduling import tolerates
from .base import Controller, InformerFactory, split_key
from ..client.events import NORMAL, WARNING, EventRecorder
from .podutil import parse_time

log = logging.getLogger("ketch.controllers.nodelifecycle")

NOT_READY = "node.kubernetes.io/not-ready"
UNREACHABLE = "node.kubernetes.io/unreachable"
UNSCHEDULABLE = "node.kubernetes.io/unschedulable"
LEASE_NAMESPACE = "kube-node-lease"
HEALTH_CONDITIONS = ("Ready", "MemoryPressure", "DiskPressure", "PIDPressure")
# condition type -> {status: taint key}, for the NoSchedule taints (TaintNodesByCondition)
CONDITION_TAINTS = {
    "Ready": {"False": NOT_READY, "Unknown": UNREACHABLE},
    "MemoryPressure": {"True": "node.kubernetes.io/memory-pressure"},
    "DiskPressure": {"True": "node.kubernetes.io/disk-pressure"},
    "NetworkUnavailable": {"True": "node.kubernetes.io/network-unavailable"},
    "PIDPressure": {"True": "node.kubernetes.io/pid-pressure"},
}
CONTROLLER_NOSCHEDULE_KEYS = {k for m in CONDITION_TAINTS.values() for k in m.values()} | {UNSCHEDULABLE}
EXCLUDE_DISRUPTION = "node.kubernetes.io/exclude-disruption"
LARGE_CLUSTER = 50
UNHEALTHY_ZONE_THRESHOLD = 0.55
SECONDARY_EVICTION_RATE = 0.01
MONITOR = ("monitor",)  # the work-queue key of the periodic health pass


AGENT_MANAGER = "agent.ketch.io"     # endpointslice.kubernetes.io/managed-by of the agents' own slices


def _rfc3339(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def node_condition(node: dict, ctype: str) -> dict | None:
    return next((c for c in (node.get("status") or {}).get("conditions") or () if c.get("type") == ctype), None)


def noexecute_taints(node: dict) -> list[dict]:
    return [t for t in (node.get("spec") or {}).get("taints") or () if t.get("effect") == "NoExecute"]


def zone_key(node: dict) -> str:
    labels = node.get("metadata", {}).get("labels") or {}
    region = labels.get("topology.kubernetes.io/region") or labels.get("failure-domain.beta.kubernetes.io/region", "")
    zone = labels.get("topology.kubernetes.io/zone") or labels.get("failure-domain.beta.kubernetes.io/zone", "")
    return f"{region}:\x00:{zone}" if region or zone else ""


def node_name_index(pod: dict) -> list[str]:
    name = (pod.get("spec") or {}).get("nodeName")
    return [name] if name else []


class _Health:
    """What the controller last saw of a node, and when (its own clock: kubelets' clocks may skew)."""
    __slots__ = ("probe", "heartbeat", "renew", "ready")

    def __init__(self, probe: float, heartbeat: str | None, renew: str | None, ready: str | None):
        self.probe, self.heartbeat, self.renew, self.ready = probe, heartbeat, renew, ready


class _Bucket:
    """A token bucket (burst 1) limiting how fast one zone's nodes get NoExecute taints."""
    __slots__ = ("rate", "tokens", "at")

    def __init__(self, rate: float):
        self.rate, self.tokens, self.at = rate, 1.0, time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(1.0, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.rate > 0 and self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class NodeLifecycleController(Controller):
    name = "nodelifecycle"
    component = "node-controller"
    workers = 4

    def __init__(self, client: Client, informers: InformerFactory, recorder: EventRecorder):
        super().__init__(client, informers, recorder)
        self.grace_period = self.options.node_monitor_grace_period
        self.startup_grace_period = self.options.node_startup_grace_period
        self.monitor_period = self.options.node_monitor_period
        self.eviction_rate = self.options.node_eviction_rate
        self.node_api = client.resource("v1", "Node")
        self.pod_api = client.resource("v1", "Pod")
        self.nodes = informers.informer("v1", "Node")
        self.leases = informers.informer("coordination.k8s.io/v1", "Lease")
        self.pods = informers.informer("v1", "Pod")
        self.pods.add_index("nodeName", node_name_index)
        self.health: dict[str, _Health] = {}
        self.known: dict[str, str] = {}           # node name -> uid
        self.zone_states: dict[str, str] = {}
        self.buckets: dict[str, _Bucket] = {}
        self.all_disrupted = False
        self.nodes.add_handlers(on_add=self.enqueue, on_update=lambda _o, n: self.enqueue(n))
        self.queue.add(MONITOR)

    # ---- per node: the NoSchedule taints follow the conditions --------------------------------

    async def sync(self, key) -> float | None:
        if key == MONITOR:
            await self.monitor()
            return self.monitor_period
        node = self.nodes.get(key)
        if node is None:
            return None
        want = self._noschedule_taints(node)
        have = {t["key"] for t in (node.get("spec") or {}).get("taints") or ()
                if t.get("effect") == "NoSchedule" and t.get("key") in CONTROLLER_NOSCHEDULE_KEYS}
        if want != have:
            await self.swap_taints(node, add=[{"key": k, "effect": "NoSchedule"} for k in sorted(want - have)],
                                   remove=[(k, "NoSchedule") for k in have - want])
        return None

    @staticmethod
    def _noschedule_taints(node: dict) -> set[str]:
        want = set()
        for c in (node.get("status") or {}).get("conditions") or ():
            key = CONDITION_TAINTS.get(c.get("type"), {}).get(c.get("status"))
            if key:
                want.add(key)
        if (node.get("spec") or {}).get("unschedulable"):
            want.add(UNSCHEDULABLE)
        return want

    async def swap_taints(self, node: dict, add: list[dict], remove: list[tuple[str, str]]) -> dict:
        """Add and remove taints in one write, guarded by the node's resourceVersion; on a conflict
        (the cache was behind) once more from a fresh read, as upstream's taint helpers retry."""
        for attempt in range(3):
            taints = [t for t in (node.get("spec") or {}).get("taints") or ()
                      if (t.get("key"), t.get("effect")) not in remove
                      and not any(a["key"] == t.get("key") and a["effect"] == t.get("effect") for a in add)]
            now = _rfc3339(time.time())
            taints += [{**a, "timeAdded": now} if a["effect"] == "NoExecute" else a for a in add]
            body = {"metadata": {"resourceVersion": node["metadata"]["resourceVersion"]},
                    "spec": {"taints": taints or None}}
            try:
                return await self.node_api.patch(node["metadata"]["name"], body, "merge")
            except ApiError as e:
                if e.code != 409 or attempt == 2:
                    raise
                node = await self.node_api.get(node["metadata"]["name"])
        raise AssertionError("not reached")

    # ---- the periodic health pass (monitorNodeHealth) -----------------------------------------

    async def monitor(self) -> None:
        nodes = self.nodes.list()
        names = {n["metadata"]["name"] for n in nodes}
        for node in nodes:
            meta = node["metadata"]
            if meta["name"] not in self.known:
                self.known[meta["name"]] = meta.get("uid", "")
                self._node_event(node, "RegisteredNode", f"Registered Node {meta['name']} in Controller")
        for name in [n for n in self.known if n not in names]:
            uid = self.known.pop(name)
            self.health.pop(name, None)
            self._node_event({"metadata": {"name": name, "uid": uid}}, "RemovingNode",
                             f"Removing Node {name} from Controller")
        sem = asyncio.Semaphore(8)

        async def one(node: dict) -> tuple[dict, str | None, str | None]:
            async with sem:
                return await self._update_health(node)

        results = await asyncio.gather(*(one(n) for n in nodes), return_exceptions=True)
        current: list[tuple[dict, str | None]] = []
        for node, result in zip(nodes, results):
            if isinstance(result, BaseException):
                log.info("node %s: health update failed: %s", node["metadata"]["name"], result)
                continue
            updated, observed, status = result
            current.append((updated, status))
            if status != "True" and observed == "True":
                self.recorder.event(_node_ref(updated), NORMAL, "NodeNotReady",
                                    f"Node {updated['metadata']['name']} status is now: NodeNotReady")
                await self._mark_pods_not_ready(updated["metadata"]["name"])
                await self._mark_agent_endpoints_not_ready(updated["metadata"]["name"])
        self._handle_disruption(current)
        for node, status in current:
            try:
                await self._taint_for_eviction(node, status)
            except ApiError as e:
                if e.code not in (404, 409):
                    log.info("node %s: tainting failed: %s", node["metadata"]["name"], e.message)
                # a conflict: the next pass sees the newer node

    def _node_event(self, node: dict, reason: str, text: str) -> None:
        name = node["metadata"]["name"]
        self.recorder.event(_node_ref(node), NORMAL, reason, f"Node {name} event: {text}")

    async def _update_health(self, node: dict) -> tuple[dict, str | None, str | None]:
        """tryUpdateNodeHealth: (node as it is now, Ready status seen, Ready status now)."""
        name = node["metadata"]["name"]
        now = time.time()
        ready = node_condition(node, "Ready")
        lease = self.leases.get(f"{LEASE_NAMESPACE}/{name}")
        renew = ((lease or {}).get("spec") or {}).get("renewTime")
        heartbeat = ready.get("lastHeartbeatTime") if ready else None
        health = self.health.get(name)
        if health is None:
            created = parse_time(node["metadata"].get("creationTimestamp"))
            probe = now if ready is not None or created is None else created.timestamp()
            health = self.health[name] = _Health(probe, heartbeat, renew, ready.get("status") if ready else None)
        else:
            if heartbeat != health.heartbeat:
                health.heartbeat, health.probe = heartbeat, now
            if renew and (health.renew is None or renew > health.renew):
                health.renew, health.probe = renew, now
        observed = ready.get("status") if ready else "Unknown"
        grace = self.grace_period if ready is not None else self.startup_grace_period
        if now <= health.probe + grace:
            return node, observed, observed
        changed = copy.deepcopy(node)
        conditions = changed.setdefault("status", {}).setdefault("conditions", [])
        stamp = _rfc3339(now)
        dirty = False
        for ctype in HEALTH_CONDITIONS:
            c = node_condition(changed, ctype)
            if c is None:
                conditions.append({"type": ctype, "status": "Unknown", "reason": "NodeStatusNeverUpdated",
                                   "message": "Kubelet never posted node status.",
                                   "lastHeartbeatTime": node["metadata"].get("creationTimestamp"),
                                   "lastTransitionTime": stamp})
                dirty = True
            elif c.get("status") != "Unknown":
                c.update(status="Unknown", reason="NodeStatusUnknown", message="Kubelet stopped posting node status.",
                         lastTransitionTime=stamp)
                dirty = True
        if dirty:
            changed = await self.node_api.update_status(changed)
            ready_now = node_condition(changed, "Ready")
            health.heartbeat = ready_now.get("lastHeartbeatTime") if ready_now else None
        return changed, observed, "Unknown"

    async def _mark_pods_not_ready(self, node_name: str) -> None:
        """MarkPodsNotReady: the pods of a node that stopped reporting are no longer Ready."""
        stamp = _rfc3339(time.time())
        for pod in self.pods.by_index("nodeName", node_name):
            ready = next((c for c in (pod.get("status") or {}).get("conditions") or () if c.get("type") == "Ready"),
                         None)
            if ready is None or ready.get("status") == "False":
                continue
            meta = pod["metadata"]
            try:
                await self.pod_api.patch(meta["name"], {"status": {"conditions": [
                    {"type": "Ready", "status": "False", "lastTransitionTime": stamp}]}}, "strategic",
                    namespace=meta["namespace"], subresource="status")
            except ApiError as e:
                if e.code == 404:
                    continue
                log.info("pod %s/%s: marking not ready: %s", meta["namespace"], meta["name"], e.message)
                continue
            self.recorder.event(pod, WARNING, "NodeNotReady", "Node is not ready")

    async def _mark_agent_endpoints_not_ready(self, node_name: str) -> None:
        """The endpoints node agents serve themselves (cluster DNS, ketch/agent/nodedns.py) stand for
        pods of their node: not ready with it, as its pods are. The agent sets them ready again."""
        slices = self.client.resource("discovery.k8s.io/v1", "EndpointSlice")
        try:
            listed = await slices.list(labelSelector=f"endpointslice.kubernetes.io/managed-by={AGENT_MANAGER}")
        except ApiError as e:
            log.info("agent endpoints of node %s: %s", node_name, e.message)
            return
        for sl in listed.get("items") or ():
            endpoints = sl.get("endpoints") or []
            if not any(e.get("nodeName") == node_name and (e.get("conditions") or {}).get("ready") is not False
                       for e in endpoints):
                continue
            for e in endpoints:
                if e.get("nodeName") == node_name:
                    e["conditions"] = {**(e.get("conditions") or {}), "ready": False, "serving": False}
            try:
                await slices.update(sl)
            except ApiError as e:
                log.info("agent endpoints of node %s: %s", node_name, e.message)

    def _handle_disruption(self, current: list[tuple[dict, str | None]]) -> None:
        """Zone states and their tainting rates (handleDisruption)."""
        zones: dict[str, list[str | None]] = {}
        for node, status in current:
            if EXCLUDE_DISRUPTION not in (node["metadata"].get("labels") or {}):
                zones.setdefault(zone_key(node), []).append(status)
        states = {z: self._zone_state(s) for z, s in zones.items()}
        all_now = bool(states) and all(s == "FullDisruption" for s in states.values())
        all_before = bool(self.zone_states) and all(s == "FullDisruption" for s in self.zone_states.values())
        if all_now and not all_before:
            log.warning("every node is not Ready: assuming the control plane is cut off; no taint-based evictions")
        if all_before and not all_now:
            log.warning("nodes are Ready again: resuming taint-based evictions")
            now = time.time()
            for health in self.health.values():
                health.probe = now
        for zone, statuses in zones.items():
            state = states[zone]
            if all_now:
                rate = 0.0
            elif state == "PartialDisruption":
                rate = SECONDARY_EVICTION_RATE if len(statuses) > LARGE_CLUSTER else 0.0
            else:
                rate = self.eviction_rate
            bucket = self.buckets.get(zone)
            if bucket is None:
                self.buckets[zone] = _Bucket(rate)
            else:
                bucket.rate = rate
        self.zone_states = states
        self.all_disrupted = all_now

    @staticmethod
    def _zone_state(statuses: list[str | None]) -> str:
        ready = sum(1 for s in statuses if s == "True")
        not_ready = len(statuses) - ready
        if ready == 0 and not_ready > 0:
            return "FullDisruption"
        if not_ready > 2 and not_ready / len(statuses) >= UNHEALTHY_ZONE_THRESHOLD:
            return "PartialDisruption"
        return "Normal"

    async def _taint_for_eviction(self, node: dict, status: str | None) -> None:
        """processTaintBaseEviction: NoExecute not-ready / unreachable taints follow Ready."""
        keys = {t.get("key") for t in noexecute_taints(node)}
        if status == "True" or self.all_disrupted:
            if keys & {NOT_READY, UNREACHABLE}:
                await self.swap_taints(node, add=[], remove=[(NOT_READY, "NoExecute"), (UNREACHABLE, "NoExecute")])
            return
        want, other = (NOT_READY, UNREACHABLE) if status == "False" else (UNREACHABLE, NOT_READY)
        if want in keys and other not in keys:
            return
        if other in keys:   # swap at once, no rate limit: the node is tainted already
            await self.swap_taints(node, add=[{"key": want, "effect": "NoExecute"}], remove=[(other, "NoExecute")])
            return
        bucket = self.buckets.get(zone_key(node))
        if bucket is not None and bucket.take():
            await self.swap_taints(node, add=[{"key": want, "effect": "NoExecute"}], remove=[])


def _node_ref(node: dict) -> dict:
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": node["metadata"]["name"],
                                                              "uid": node["metadata"].get("uid", "")}}


def matching_tolerations(taints: list[dict], tolerations: list[dict]) -> tuple[bool, list[dict]]:
    """GetMatchingTolerations: whether every taint is tolerated, and the toleration used for each."""
    used = []
    for taint in taints:
        match = next((t for t in tolerations if tolerates(t, taint)), None)
        if match is None:
            return False, []
        used.append(match)
    return True, used


def min_toleration_seconds(used: list[dict]) -> float:
    """getMinTolerationTime: the least tolerationSeconds; -1 when every toleration is forever."""
    if not used:
        return 0.0
    seconds = [t["tolerationSeconds"] for t in used if t.get("tolerationSeconds") is not None]
    if not seconds:
        return -1.0
    return float(max(min(seconds), 0))


class TaintEvictionController(Controller):
    name = "tainteviction"
    component = "taint-eviction-controller"
    workers = 4

    def __init__(self, client: Client, informers: InformerFactory, recorder: EventRecorder):
        super().__init__(client, informers, recorder)
        self.pod_api = client.resource("v1", "Pod")
        self.nodes = informers.informer("v1", "Node")
        self.pods = informers.informer("v1", "Pod")
        self.pods.add_index("nodeName", node_name_index)
        self.scheduled: dict[str, float] = {}   # pod key -> when its eviction clock started
        self.pods.add_handlers(on_add=self._pod_changed, on_update=lambda _o, n: self._pod_changed(n),
                               on_delete=lambda p: self.scheduled.pop(object_key(p), None))
        self.nodes.add_handlers(on_add=self._node_changed, on_update=self._node_updated)

    def _pod_changed(self, pod: dict) -> None:
        if (pod.get("spec") or {}).get("nodeName"):
            self.enqueue(pod)

    def _node_changed(self, node: dict) -> None:
        if noexecute_taints(node):
            for pod in self.pods.by_index("nodeName", node["metadata"]["name"]):
                self.enqueue(pod)

    def _node_updated(self, old: dict, new: dict) -> None:
        if noexecute_taints(old) != noexecute_taints(new):
            for pod in self.pods.by_index("nodeName", new["metadata"]["name"]):
                self.enqueue(pod)

    def _cancel(self, key: str, pod: dict) -> None:
        if self.scheduled.pop(key, None) is not None:
            self.recorder.event(pod, NORMAL, "TaintManagerEviction", f"Cancelling deletion of Pod {key}")

    async def sync(self, key: str) -> float | None:
        pod = self.pods.get(key)
        if pod is None:
            self.scheduled.pop(key, None)
            return None
        node = self.nodes.get((pod.get("spec") or {}).get("nodeName") or "")
        if node is None or pod["metadata"].get("deletionTimestamp"):
            self.scheduled.pop(key, None)
            return None
        taints = noexecute_taints(node)
        if not taints:
            self._cancel(key, pod)
            return None
        tolerated, used = matching_tolerations(taints, (pod.get("spec") or {}).get("tolerations") or [])
        now = time.time()
        if tolerated:
            wait = min_toleration_seconds(used)
            if wait < 0:
                self._cancel(key, pod)
                return None
            if key not in self.scheduled:
                # The clock starts when the taint was added (so a restarted controller keeps it).
                added = [t.timestamp() for t in (parse_time(x.get("timeAdded")) for x in taints) if t]
                self.scheduled[key] = min([now, *added])
            due = self.scheduled[key] + wait
            if now < due:
                return due - now
        await self._evict(key, pod)
        return None

    async def _evict(self, key: str, pod: dict) -> None:
        ns, name = split_key(key)
        self.recorder.event(pod, NORMAL, "TaintManagerEviction", f"Marking for deletion Pod {key}")
        stamp = _rfc3339(time.time())
        try:
            await self.pod_api.patch(name, {"status": {"conditions": [{
                "type": "DisruptionTarget", "status": "True", "reason": "DeletionByTaintManager",
                "message": "Taint manager: deleting due to NoExecute taint", "lastTransitionTime": stamp}]}},
                "strategic", namespace=ns, subresource="status")
            await self.pod_api.delete(name, ns, preconditions={"uid": pod["metadata"].get("uid")})
        except ApiError as e:
            if e.code != 404:
                raise
        self.scheduled.pop(key, None)
