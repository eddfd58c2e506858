"""What the scheduler needs to know about a pod and a node, parsed once from the API objects.

A `PodInfo` holds the pod's resource requests (containers + max(initContainers) + overhead, as
upstream's `computePodResourceRequest`), host ports, tolerations, affinity terms and spread
constraints, so filters and scores never walk the pod spec again.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field

from ..api import labels as labelsel
from ..api.defaults import is_sidecar
from ..api.quantity import QuantityError, parse_quantity
from ..api.scheduling import NodeSelectorTerm

CPU, MEMORY, EPHEMERAL, PODS = "cpu", "memory", "ephemeral-storage", "pods"
# Scoring treats a pod without requests as if it asked for this much (upstream's non-zero defaults).
DEFAULT_MILLI_CPU = 100
DEFAULT_MEMORY = 200 * 1024 * 1024
TERMINAL = ("Succeeded", "Failed")
HOSTNAME = "kubernetes.io/hostname"
ZONE_LABELS = ("topology.kubernetes.io/zone", "failure-domain.beta.kubernetes.io/zone")


@functools.lru_cache(maxsize=4096)
def amount(resource: str, value: str) -> int:
    """A quantity in the scheduler's integer unit: millicores for cpu, the value itself otherwise."""
    try:
        q = parse_quantity(value)
    except (QuantityError, TypeError):
        return 0
    return q.milli_value() if resource == CPU else q.int_value_ceil()


def resource_list(rl: dict | None) -> dict[str, int]:
    return {k: amount(k, str(v)) for k, v in (rl or {}).items()}


def _container_requests(c: dict) -> dict[str, int]:
    res = c.get("resources") or {}
    out = resource_list(res.get("limits"))  # requests default to limits
    out.update(resource_list(res.get("requests")))
    return out


def _add(into: dict[str, int], more: dict[str, int]) -> None:
    for k, v in more.items():
        into[k] = into.get(k, 0) + v


def pod_requests(spec: dict) -> dict[str, int]:
    total: dict[str, int] = {}
    for c in spec.get("containers") or ():
        _add(total, _container_requests(c))
    sidecars: dict[str, int] = {}
    init_max: dict[str, int] = {}
    for c in spec.get("initContainers") or ():
        req = _container_requests(c)
        if is_sidecar(c):  # it runs beside the app containers
            _add(sidecars, req)
            req = dict(sidecars)
        else:
            req = {k: v + sidecars.get(k, 0) for k, v in req.items()}
        for k, v in req.items():
            init_max[k] = max(init_max.get(k, 0), v)
    _add(total, sidecars)
    for k, v in init_max.items():
        total[k] = max(total.get(k, 0), v)
    _add(total, resource_list(spec.get("overhead")))
    return {k: v for k, v in total.items() if v}


@dataclass
class AffinityTerm:
    """A pod (anti-)affinity term: which pods (selector, namespaces) in which topology domain."""
    selector: labelsel.Selector
    namespaces: frozenset[str] | None  # None: every namespace
    namespace_selector: labelsel.Selector | None
    topology_key: str
    weight: int = 0

    @classmethod
    def parse(cls, term: dict, own_namespace: str, weight: int = 0) -> "AffinityTerm":
        try:
            selector = labelsel.selector_from_label_selector(term.get("labelSelector"))
        except labelsel.SelectorError:
            selector = labelsel.NOTHING
        ns_sel_raw = term.get("namespaceSelector")
        namespaces = term.get("namespaces") or []
        ns_sel = None
        if ns_sel_raw is not None:
            try:
                ns_sel = labelsel.selector_from_label_selector(ns_sel_raw)
            except labelsel.SelectorError:
                ns_sel = labelsel.NOTHING
        if ns_sel is not None and ns_sel.empty:
            ns_set: frozenset[str] | None = None  # {} selects every namespace
            ns_sel = None
        else:
            ns_set = frozenset(namespaces) if namespaces or ns_sel is not None else frozenset((own_namespace,))
        return cls(selector, ns_set, ns_sel, term.get("topologyKey") or "", weight)

    def matches_namespace(self, namespace: str, ns_labels) -> bool:  # noqa: ANN001 - callable
        if self.namespaces is None:
            return True
        if namespace in self.namespaces:
            return True
        return self.namespace_selector is not None and self.namespace_selector.matches(ns_labels(namespace))

    def matches(self, pod: "PodInfo", ns_labels) -> bool:  # noqa: ANN001
        return self.matches_namespace(pod.namespace, ns_labels) and self.selector.matches(pod.labels)


@dataclass
class SpreadConstraint:
    max_skew: int
    topology_key: str
    hard: bool
    selector: labelsel.Selector
    min_domains: int


def _affinity_terms(block: dict | None, ns: str) -> tuple[list[AffinityTerm], list[AffinityTerm]]:
    block = block or {}
    required = [AffinityTerm.parse(t, ns) for t in block.get("requiredDuringSchedulingIgnoredDuringExecution") or ()]
    preferred = [AffinityTerm.parse(w.get("podAffinityTerm") or {}, ns, int(w.get("weight") or 0))
                 for w in block.get("preferredDuringSchedulingIgnoredDuringExecution") or ()]
    return required, preferred


@dataclass
class PodInfo:
    key: str
    uid: str
    namespace: str
    name: str
    labels: dict
    priority: int
    requests: dict[str, int]
    nonzero_cpu: int
    nonzero_memory: int
    host_ports: list[tuple[str, str, int]]
    node_name: str
    tolerations: list[dict]
    node_selector: dict
    required_node_terms: list[NodeSelectorTerm] | None
    preferred_node_terms: list[tuple[int, NodeSelectorTerm]]
    affinity: list[AffinityTerm]
    preferred_affinity: list[AffinityTerm]
    anti_affinity: list[AffinityTerm]
    preferred_anti_affinity: list[AffinityTerm]
    spread: list[SpreadConstraint]
    controller_uid: str
    preemption_policy: str
    terminating: bool
    terminal: bool
    nominated_node: str
    pod: dict = field(repr=False, default_factory=dict)

    @property
    def label_group(self) -> tuple:
        return (self.namespace, frozenset(self.labels.items()))


def _spread_constraints(spec: dict, pod_labels: dict) -> list[SpreadConstraint]:
    out = []
    for c in spec.get("topologySpreadConstraints") or ():
        try:
            sel = labelsel.selector_from_label_selector(c.get("labelSelector"))
        except labelsel.SelectorError:
            sel = labelsel.NOTHING
        for key in c.get("matchLabelKeys") or ():
            if key in pod_labels:
                sel = sel.add(labelsel.Requirement(key, labelsel.IN, (pod_labels[key],)))
        out.append(SpreadConstraint(int(c.get("maxSkew") or 1), c.get("topologyKey") or "",
                                    (c.get("whenUnsatisfiable") or "DoNotSchedule") == "DoNotSchedule", sel,
                                    int(c.get("minDomains") or 1)))
    return out


def pod_info(pod: dict) -> PodInfo:
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    ns = meta.get("namespace") or "default"
    pod_labels = meta.get("labels") or {}
    requests = pod_requests(spec)
    ports = []
    for c in spec.get("containers") or ():
        for p in c.get("ports") or ():
            if p.get("hostPort"):
                ports.append((p.get("hostIP") or "0.0.0.0", p.get("protocol") or "TCP", int(p["hostPort"])))
    affinity = spec.get("affinity") or {}
    node_aff = affinity.get("nodeAffinity") or {}
    req = node_aff.get("requiredDuringSchedulingIgnoredDuringExecution")
    required_terms = None
    if req is not None:
        required_terms = [NodeSelectorTerm.parse(t) for t in req.get("nodeSelectorTerms") or ()]
    preferred_terms = [(int(p.get("weight") or 0), NodeSelectorTerm.parse(p.get("preference") or {}))
                       for p in node_aff.get("preferredDuringSchedulingIgnoredDuringExecution") or ()]
    aff, pref_aff = _affinity_terms(affinity.get("podAffinity"), ns)
    anti, pref_anti = _affinity_terms(affinity.get("podAntiAffinity"), ns)
    controller = next((r for r in meta.get("ownerReferences") or () if r.get("controller")), None)
    status = pod.get("status") or {}
    return PodInfo(
        key=f"{ns}/{meta.get('name', '')}", uid=meta.get("uid", ""), namespace=ns, name=meta.get("name", ""),
        labels=pod_labels, priority=int(spec.get("priority") or 0), requests=requests,
        nonzero_cpu=requests.get(CPU) or DEFAULT_MILLI_CPU, nonzero_memory=requests.get(MEMORY) or DEFAULT_MEMORY,
        host_ports=ports, node_name=spec.get("nodeName") or "", tolerations=spec.get("tolerations") or [],
        node_selector=spec.get("nodeSelector") or {}, required_node_terms=required_terms,
        preferred_node_terms=preferred_terms, affinity=aff, preferred_affinity=pref_aff, anti_affinity=anti,
        preferred_anti_affinity=pref_anti, spread=_spread_constraints(spec, pod_labels),
        controller_uid=(controller or {}).get("uid", ""),
        preemption_policy=spec.get("preemptionPolicy") or "PreemptLowerPriority",
        terminating=bool(meta.get("deletionTimestamp")), terminal=status.get("phase") in TERMINAL,
        nominated_node=status.get("nominatedNodeName") or "", pod=pod)


def node_zone(node_labels: dict) -> str:
    for key in ZONE_LABELS:
        if key in node_labels:
            return node_labels[key]
    return ""
