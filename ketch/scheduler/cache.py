"""The scheduler's cache: nodes with what their pods request, kept incrementally from informers.

Like upstream's internal cache it also holds *assumed* pods: a pod the scheduler has decided to
place is added to its node at once, before the binding is written and long before the informer
shows it bound, so the next pods never book the same room twice. The informer's bound pod then
replaces the assumed one; a failed binding forgets it.

Two indexes keep the spreading and affinity plugins from scanning every pod: pods counted per node
by label set (pods of one controller usually share one), and by controller uid.
"""
from __future__ import annotations

from collections import Counter

from .podinfo import CPU, EPHEMERAL, HOSTNAME, MEMORY, PODS, PodInfo, node_zone, resource_list

UNSCHEDULABLE_TAINT = "node.kubernetes.io/unschedulable"
NOT_READY_TAINT = "node.kubernetes.io/not-ready"
UNREACHABLE_TAINT = "node.kubernetes.io/unreachable"


class NodeInfo:
    __slots__ = ("name", "node", "labels", "allocatable", "alloc_cpu", "alloc_memory", "max_pods", "requested",
                 "req_cpu", "req_memory", "nonzero_cpu", "nonzero_memory",
                 "pods", "ports", "taints", "prefer_taints", "unschedulable", "zone", "images", "nominated")

    def __init__(self, name: str):
        self.name = name
        self.node: dict | None = None
        self.labels: dict = {}
        self.allocatable: dict[str, int] = {}
        self.alloc_cpu = self.alloc_memory = self.max_pods = 0
        self.req_cpu = self.req_memory = 0  # requested[CPU] and requested[MEMORY], for the hot path
        self.requested: dict[str, int] = {}
        self.nonzero_cpu = 0
        self.nonzero_memory = 0
        self.pods: dict[str, PodInfo] = {}
        self.ports: Counter = Counter()
        self.taints: list[dict] = []          # NoSchedule and NoExecute: filtered on
        self.prefer_taints: list[dict] = []   # PreferNoSchedule: scored on
        self.unschedulable = False
        self.zone = ""
        self.images: set[str] = set()
        self.nominated: dict[str, PodInfo] = {}

    def set_node(self, node: dict) -> None:
        self.node = node
        meta, spec, status = node.get("metadata") or {}, node.get("spec") or {}, node.get("status") or {}
        self.labels = dict(meta.get("labels") or {})
        self.labels.setdefault(HOSTNAME, self.name)
        self.allocatable = resource_list(status.get("allocatable") or status.get("capacity"))
        self.alloc_cpu, self.alloc_memory = self.allocatable.get(CPU, 0), self.allocatable.get(MEMORY, 0)
        self.max_pods = self.allocatable.get(PODS, 0)
        self.unschedulable = bool(spec.get("unschedulable"))
        taints = list(spec.get("taints") or ())
        # What the node lifecycle controller would taint a node with that is not Ready
        # (TaintNodesByCondition), unless it already carries the taint.
        ready = next((c.get("status") for c in status.get("conditions") or () if c.get("type") == "Ready"), None)
        implied = None if ready == "True" else NOT_READY_TAINT if ready in ("False", None) else UNREACHABLE_TAINT
        if implied and not any(t.get("key") == implied for t in taints):
            taints.append({"key": implied, "effect": "NoSchedule"})
        self.taints = [t for t in taints if t.get("effect") in ("NoSchedule", "NoExecute")]
        self.prefer_taints = [t for t in taints if t.get("effect") == "PreferNoSchedule"]
        self.zone = node_zone(self.labels)
        self.images = {n for img in status.get("images") or () for n in img.get("names") or ()}

    def add_pod(self, p: PodInfo) -> None:
        self.pods[p.key] = p
        for k, v in p.requests.items():
            self.requested[k] = self.requested.get(k, 0) + v
        self.req_cpu = self.requested.get(CPU, 0)
        self.req_memory = self.requested.get(MEMORY, 0)
        self.nonzero_cpu += p.nonzero_cpu
        self.nonzero_memory += p.nonzero_memory
        for port in p.host_ports:
            self.ports[port] += 1

    def remove_pod(self, key: str) -> PodInfo | None:
        p = self.pods.pop(key, None)
        if p is None:
            return None
        for k, v in p.requests.items():
            self.requested[k] = self.requested.get(k, 0) - v
        self.req_cpu = self.requested.get(CPU, 0)
        self.req_memory = self.requested.get(MEMORY, 0)
        self.nonzero_cpu -= p.nonzero_cpu
        self.nonzero_memory -= p.nonzero_memory
        for port in p.host_ports:
            self.ports[port] -= 1
            if self.ports[port] <= 0:
                del self.ports[port]
        return p

    def allowed_pods(self) -> int:
        return self.max_pods

    def clone(self) -> "NodeInfo":
        """A copy whose pods can be changed (preemption's what-if)."""
        c = NodeInfo(self.name)
        for slot in NodeInfo.__slots__:
            setattr(c, slot, getattr(self, slot))
        c.requested = dict(self.requested)
        c.pods = dict(self.pods)
        c.ports = Counter(self.ports)
        return c


RESOURCES = (CPU, MEMORY, EPHEMERAL)


class Cache:
    def __init__(self) -> None:
        self.nodes: dict[str, NodeInfo] = {}
        self.node_order: list[str] = []           # nodes with a Node object, in a stable order
        self._infos: list[NodeInfo] | None = None
        self.pod_node: dict[str, str] = {}        # pod key -> node it is counted on
        self.assumed: set[str] = set()
        # (namespace, frozenset(labels)) -> {"labels", "namespace", "nodes": Counter}
        self.label_groups: dict[tuple, dict] = {}
        self.by_controller: dict[str, Counter] = {}  # controller uid -> node -> pods
        self.by_controller_zone: dict[str, Counter] = {}  # controller uid -> zone -> pods
        self.pod_zone: dict[str, str] = {}            # pod key -> zone it was counted in
        self.zones: Counter = Counter()               # zone -> nodes
        self.with_anti_affinity: dict[str, PodInfo] = {}  # pods having required anti-affinity terms
        self.with_affinity: dict[str, PodInfo] = {}       # pods having (anti-)affinity terms at all
        self.nominated: dict[str, tuple[str, PodInfo]] = {}  # pod key -> (node, info)

    # ---- nodes -----------------------------------------------------------------------------

    def _node(self, name: str) -> NodeInfo:
        info = self.nodes.get(name)
        if info is None:
            info = self.nodes[name] = NodeInfo(name)
        return info

    def set_node(self, node: dict) -> None:
        name = node["metadata"]["name"]
        info = self._node(name)
        if info.node is None:
            self.node_order.append(name)
            self._infos = None
        elif info.zone:
            self._zone_count(info.zone, -1)
        info.set_node(node)
        if info.zone:
            self.zones[info.zone] += 1

    def remove_node(self, name: str) -> None:
        info = self.nodes.get(name)
        if info is None:
            return
        if info.node is not None and info.zone:
            self._zone_count(info.zone, -1)
        info.node = None
        if name in self.node_order:
            self.node_order.remove(name)
            self._infos = None
        if not info.pods:
            del self.nodes[name]

    def _zone_count(self, zone: str, delta: int) -> None:
        self.zones[zone] += delta
        if self.zones[zone] <= 0:
            del self.zones[zone]

    def node_infos(self) -> list[NodeInfo]:
        """The nodes in a stable order (rebuilt only when nodes come or go)."""
        if self._infos is None:
            self._infos = [self.nodes[n] for n in self.node_order]
        return self._infos

    # ---- pods ------------------------------------------------------------------------------

    def _count(self, p: PodInfo, node: str, delta: int) -> None:
        group = self.label_groups.get(p.label_group)
        if group is None:
            group = self.label_groups[p.label_group] = {"labels": p.labels, "namespace": p.namespace,
                                                       "nodes": Counter()}
        group["nodes"][node] += delta
        if group["nodes"][node] <= 0:
            del group["nodes"][node]
            if not group["nodes"]:
                del self.label_groups[p.label_group]
        if p.controller_uid:
            _bump(self.by_controller, p.controller_uid, node, delta)
            if delta > 0:
                info = self.nodes.get(node)
                zone = info.zone if info is not None else ""
                if zone:
                    self.pod_zone[p.key] = zone
            else:
                zone = self.pod_zone.pop(p.key, "")
            if zone:
                _bump(self.by_controller_zone, p.controller_uid, zone, delta)

    def add_pod(self, p: PodInfo, node: str, assumed: bool = False) -> None:
        """Count `p` on `node` (replacing what was counted for it before, assumed or not)."""
        self.remove_pod(p.key)
        self._node(node).add_pod(p)
        self.pod_node[p.key] = node
        self._count(p, node, 1)
        if p.anti_affinity:
            self.with_anti_affinity[p.key] = p
        if p.anti_affinity or p.affinity or p.preferred_affinity or p.preferred_anti_affinity:
            self.with_affinity[p.key] = p
        if assumed:
            self.assumed.add(p.key)
        self.clear_nominated(p.key)

    def remove_pod(self, key: str) -> PodInfo | None:
        node = self.pod_node.pop(key, None)
        self.assumed.discard(key)
        self.with_anti_affinity.pop(key, None)
        self.with_affinity.pop(key, None)
        if node is None:
            return None
        info = self.nodes.get(node)
        p = info.remove_pod(key) if info is not None else None
        if p is not None:
            self._count(p, node, -1)
        if info is not None and info.node is None and not info.pods:
            del self.nodes[node]
        return p

    def confirm(self, key: str, pod: dict) -> None:
        """The informer shows an assumed pod bound where it was assumed: it is now a bound pod."""
        self.assumed.discard(key)
        node = self.nodes.get(self.pod_node.get(key, ""))
        p = node.pods.get(key) if node is not None else None
        if p is not None:
            p.pod = pod
            p.node_name = pod["spec"].get("nodeName") or ""

    def is_assumed(self, key: str) -> bool:
        return key in self.assumed

    def node_of(self, key: str) -> str | None:
        return self.pod_node.get(key)

    # ---- nominated pods (preemptors waiting for their victims to go) ---------------------------

    def nominate(self, p: PodInfo, node: str) -> None:
        self.clear_nominated(p.key)
        info = self.nodes.get(node)
        if info is not None:
            info.nominated[p.key] = p
            self.nominated[p.key] = (node, p)

    def clear_nominated(self, key: str) -> None:
        entry = self.nominated.pop(key, None)
        if entry is not None and entry[0] in self.nodes:
            self.nodes[entry[0]].nominated.pop(key, None)

    # ---- indexes ------------------------------------------------------------------------------

    def matching_counts(self, selector, namespaces) -> Counter:  # noqa: ANN001
        """Pods per node whose labels match `selector`, in `namespaces` (a predicate on a namespace)."""
        out: Counter = Counter()
        for group in self.label_groups.values():
            if namespaces(group["namespace"]) and selector.matches(group["labels"]):
                out.update(group["nodes"])
        return out

    def controller_counts(self, uid: str) -> Counter:
        return self.by_controller.get(uid) or Counter()

    def controller_zone_counts(self, uid: str) -> Counter:
        return self.by_controller_zone.get(uid) or Counter()


def _bump(index: dict[str, Counter], key: str, value: str, delta: int) -> None:
    counts = index.setdefault(key, Counter())
    counts[value] += delta
    if counts[value] <= 0:
        del counts[value]
        if not counts:
            del index[key]
