"""Filter and score plugins of the default profile, in upstream's order and with its reasons.

`prefilter(pod)` computes, once per attempt, everything a filter or score needs beyond one node
(affinity domains, spread counts), so that `filter(state, node)` and the scores are a few dict
lookups per node. A failed filter answers a `Failure`: upstream's reason strings and whether
preemption could help (Unschedulable) or not (UnschedulableAndUnresolvable).
"""
from __future__ import annotations

import functools
import math
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable

from .cache import UNSCHEDULABLE_TAINT, Cache, NodeInfo
from ..api.scheduling import tolerates
from .podinfo import CPU, EPHEMERAL, HOSTNAME, MEMORY, AffinityTerm, PodInfo, SpreadConstraint

MAX_SCORE = 100

ERR_UNSCHEDULABLE = "node(s) were unschedulable"
ERR_NODE_NAME = "node(s) didn't match the requested node name"
ERR_NODE_AFFINITY = "node(s) didn't match Pod's node affinity/selector"
ERR_PORTS = "node(s) didn't have free ports for the requested pod ports"
ERR_TOO_MANY_PODS = "Too many pods"
ERR_CPU, ERR_MEMORY = f"Insufficient {CPU}", f"Insufficient {MEMORY}"
ERR_SPREAD = "node(s) didn't match pod topology spread constraints"
ERR_SPREAD_LABEL = "node(s) didn't match pod topology spread constraints (missing required label)"
ERR_AFFINITY = "node(s) didn't match pod affinity rules"
ERR_ANTI_AFFINITY = "node(s) didn't match pod anti-affinity rules"
ERR_EXISTING_ANTI_AFFINITY = "node(s) didn't satisfy existing pods anti-affinity rules"

WEIGHTS = {"fit": 1, "balanced": 1, "taint": 3, "node_affinity": 2, "spread": 2, "pod_affinity": 2, "image": 1}


@dataclass(frozen=True)
class Failure:
    reasons: tuple[str, ...]
    resolvable: bool  # preemption might help


def _fail(reason: str, resolvable: bool = False) -> Failure:
    return Failure((reason,), resolvable)


FAIL_UNSCHEDULABLE = _fail(ERR_UNSCHEDULABLE)
FAIL_NODE_NAME = _fail(ERR_NODE_NAME)
FAIL_NODE_AFFINITY = _fail(ERR_NODE_AFFINITY)
FAIL_PORTS = _fail(ERR_PORTS, True)
_UNSCHEDULABLE = {"key": UNSCHEDULABLE_TAINT, "effect": "NoSchedule"}


def untolerated(taints: list[dict], tolerations: list[dict]) -> dict | None:
    for taint in taints:
        if not any(tolerates(t, taint) for t in tolerations):
            return taint
    return None


def matches_node_selector(p: PodInfo, node: NodeInfo) -> bool:
    """NodeSelector AND required node affinity (its terms ORed)."""
    nl = node.labels
    for k, v in p.node_selector.items():
        if nl.get(k) != v:
            return False
    if p.required_node_terms is not None:
        return any(t.matches(nl, node.name) for t in p.required_node_terms)
    return True


def ports_conflict(wanted: list[tuple[str, str, int]], used: Counter) -> bool:
    for ip, proto, port in wanted:
        for uip, uproto, uport in used:
            if uport == port and uproto == proto and (ip == uip or "0.0.0.0" in (ip, uip)):
                return True
    return False


def insufficient(p: PodInfo, node: NodeInfo, extra: dict[str, int] | None = None, extra_pods: int = 0) -> list[str]:
    """NodeResourcesFit: every resource the node lacks for `p` (all are reported, as upstream)."""
    out = []
    if len(node.pods) + extra_pods + 1 > node.allowed_pods():
        out.append(ERR_TOO_MANY_PODS)
    if not p.requests:
        return out
    alloc, used = node.allocatable, node.requested
    for name in (CPU, MEMORY, EPHEMERAL):
        want = p.requests.get(name, 0)
        if want and alloc.get(name, 0) < want + used.get(name, 0) + (extra.get(name, 0) if extra else 0):
            out.append(f"Insufficient {name}")
    for name, want in p.requests.items():
        if name in (CPU, MEMORY, EPHEMERAL):
            continue
        if alloc.get(name, 0) < want + used.get(name, 0) + (extra.get(name, 0) if extra else 0):
            out.append(f"Insufficient {name}")
    return out


@dataclass
class SpreadState:
    constraint: SpreadConstraint
    counts: Counter            # domain value -> matching pods
    min_count: int
    self_match: int


@dataclass
class CycleState:
    pod: PodInfo
    check_node_affinity: bool
    nominated_extra: bool
    existing_anti: set[tuple[str, str]] = field(default_factory=set)   # (topologyKey, value) forbidden
    affinity_domains: list[set[tuple[str, str]]] | None = None         # per required affinity term
    affinity_self_ok: bool = False
    anti_domains: list[tuple[str, set[str]]] = field(default_factory=list)
    spread: list[SpreadState] = field(default_factory=list)
    spread_eligible: set[str] | None = None
    filter: Callable[[NodeInfo], Failure | None] | None = None


class Framework:
    def __init__(self, cache: Cache, ns_labels: Callable[[str], dict],
                 default_spread: Callable[[PodInfo], Callable[[], Counter] | None]):
        self.cache = cache
        self.ns_labels = ns_labels
        self.default_spread = default_spread  # pod -> (lambda: node -> count of its peers) or None

    # ---- prefilter ---------------------------------------------------------------------------

    def _domains(self, term: AffinityTerm) -> set[str]:
        """Values of term.topologyKey on nodes that hold a pod matching the term."""
        counts = self.cache.matching_counts(term.selector, lambda ns: term.matches_namespace(ns, self.ns_labels))
        out = set()
        for node_name in counts:
            info = self.cache.nodes.get(node_name)
            if info is not None and term.topology_key in info.labels:
                out.add(info.labels[term.topology_key])
        return out

    def prefilter(self, p: PodInfo) -> CycleState:
        state = CycleState(p, bool(p.node_selector) or p.required_node_terms is not None,
                           bool(self.cache.nominated))
        # Existing pods' required anti-affinity against this pod.
        for other in self.cache.with_anti_affinity.values():
            node = self.cache.nodes.get(self.cache.node_of(other.key) or "")
            if node is None:
                continue
            for term in other.anti_affinity:
                if term.topology_key in node.labels and term.matches(p, self.ns_labels):
                    state.existing_anti.add((term.topology_key, node.labels[term.topology_key]))
        if p.affinity:
            state.affinity_domains = [{(t.topology_key, v) for v in self._domains(t)} for t in p.affinity]
            # The first pod of a group that selects itself may go anywhere (upstream's special case).
            if not any(state.affinity_domains) and all(t.matches(p, self.ns_labels) for t in p.affinity):
                state.affinity_self_ok = True
        for term in p.anti_affinity:
            state.anti_domains.append((term.topology_key, self._domains(term)))
        hard = [c for c in p.spread if c.hard]
        if hard:
            self._prefilter_spread(state, hard)
        return state

    def _prefilter_spread(self, state: CycleState, hard: list[SpreadConstraint]) -> None:
        p = state.pod
        eligible = set()
        for node in self.cache.node_infos():
            if all(c.topology_key in node.labels for c in hard) and matches_node_selector(p, node):
                eligible.add(node.name)
        state.spread_eligible = eligible
        for c in hard:
            counts: Counter = Counter()
            for name in eligible:
                counts[self.cache.nodes[name].labels[c.topology_key]] += 0
            for node_name, n in self.cache.matching_counts(c.selector, lambda ns: ns == p.namespace).items():
                if node_name in eligible:
                    counts[self.cache.nodes[node_name].labels[c.topology_key]] += n
            min_count = min(counts.values()) if counts else 0
            if len(counts) < c.min_domains:
                min_count = 0
            state.spread.append(SpreadState(c, counts, min_count, 1 if c.selector.matches(p.labels) else 0))

    # ---- filter ------------------------------------------------------------------------------

    def filter(self, state: CycleState, node: NodeInfo) -> Failure | None:
        return self.compiled(state)(node)

    def compiled(self, state: CycleState) -> Callable[[NodeInfo], Failure | None]:
        if state.filter is None:
            state.filter = self._compile(state)
        return state.filter

    def _compile(self, state: CycleState) -> Callable[[NodeInfo], Failure | None]:
        """The filter chain specialised to one pod: checks the pod cannot fail are left out, so the
        common case costs a few attribute reads per node."""
        p = state.pod
        unsched_ok = any(tolerates(t, _UNSCHEDULABLE) for t in p.tolerations)
        selector = list(p.node_selector.items())
        terms = p.required_node_terms
        tolerations = p.tolerations
        ports = p.host_ports
        want_cpu, want_memory = p.requests.get(CPU, 0), p.requests.get(MEMORY, 0)
        other_requests = [(k, v) for k, v in p.requests.items() if k not in (CPU, MEMORY)]
        node_name = p.node_name
        spread = state.spread
        affinity = bool(state.existing_anti or state.affinity_domains is not None or state.anti_domains)
        nominated = state.nominated_extra
        fail_unsched, fail_name, fail_aff, fail_ports = FAIL_UNSCHEDULABLE, FAIL_NODE_NAME, FAIL_NODE_AFFINITY, FAIL_PORTS
        lacking_cache: dict[tuple, Failure] = {}
        filter_spread, filter_affinity, nominated_extra = self._filter_spread, self._filter_affinity, self._nominated_extra

        def check(node: NodeInfo) -> Failure | None:
            if node.unschedulable and not unsched_ok:
                return fail_unsched
            if node_name and node_name != node.name:
                return fail_name
            if node.taints:
                taint = untolerated(node.taints, tolerations)
                if taint is not None:
                    return _fail(f"node(s) had untolerated taint {{{taint.get('key', '')}: {taint.get('value', '')}}}")
            if selector or terms is not None:
                labels = node.labels
                for k, v in selector:
                    if labels.get(k) != v:
                        return fail_aff
                if terms is not None and not any(t.matches(labels, node.name) for t in terms):
                    return fail_aff
            if ports and node.ports and ports_conflict(ports, node.ports):
                return fail_ports
            if nominated and node.nominated:
                extra, extra_pods = nominated_extra(p, node)
                lacking = insufficient(p, node, extra, extra_pods)
            else:
                lacking = None
                if len(node.pods) >= node.max_pods:
                    lacking = [ERR_TOO_MANY_PODS]
                if want_cpu and node.alloc_cpu < want_cpu + node.req_cpu:
                    lacking = [*(lacking or ()), ERR_CPU]
                if want_memory and node.alloc_memory < want_memory + node.req_memory:
                    lacking = [*(lacking or ()), ERR_MEMORY]
                if other_requests:
                    alloc, used = node.allocatable, node.requested
                    for k, want in other_requests:
                        if alloc.get(k, 0) < want + used.get(k, 0):
                            lacking = [*(lacking or ()), f"Insufficient {k}"]
            if lacking:
                key = tuple(lacking)
                failure = lacking_cache.get(key)
                if failure is None:
                    failure = lacking_cache[key] = Failure(key, True)
                return failure
            if spread:
                failure = filter_spread(state, node)
                if failure is not None:
                    return failure
            if affinity:
                return filter_affinity(state, node)
            return None
        return check

    @staticmethod
    def _nominated_extra(p: PodInfo, node: NodeInfo) -> tuple[dict[str, int], int]:
        """What pods nominated to this node with at least p's priority will take (upstream counts
        them as if already there, so that a preemptor's room is not taken by others)."""
        extra: dict[str, int] = {}
        count = 0
        for key, other in node.nominated.items():
            if key != p.key and other.priority >= p.priority:
                count += 1
                for k, v in other.requests.items():
                    extra[k] = extra.get(k, 0) + v
        return extra, count

    @staticmethod
    def _filter_spread(state: CycleState, node: NodeInfo) -> Failure | None:
        for s in state.spread:
            key = s.constraint.topology_key
            if key not in node.labels:
                return _fail(ERR_SPREAD_LABEL)
            if s.counts.get(node.labels[key], 0) + s.self_match - s.min_count > s.constraint.max_skew:
                return _fail(ERR_SPREAD, True)
        return None

    @staticmethod
    def _filter_affinity(state: CycleState, node: NodeInfo) -> Failure | None:
        labels = node.labels
        if state.existing_anti:
            for key, value in state.existing_anti:
                if labels.get(key) == value:
                    return _fail(ERR_EXISTING_ANTI_AFFINITY, True)
        if state.affinity_domains is not None and not state.affinity_self_ok:
            for term, domains in zip(state.pod.affinity, state.affinity_domains):
                if term.topology_key not in labels or (term.topology_key, labels[term.topology_key]) not in domains:
                    return _fail(ERR_AFFINITY)
        elif state.affinity_domains is not None:
            if any(t.topology_key not in labels for t in state.pod.affinity):
                return _fail(ERR_AFFINITY)
        for key, domains in state.anti_domains:
            if key in labels and labels[key] in domains:
                return _fail(ERR_ANTI_AFFINITY, True)
        return None

    # ---- score -------------------------------------------------------------------------------

    def score(self, state: CycleState, nodes: list[NodeInfo]) -> list[float]:
        """Weighted sum of the plugin scores (each 0-100) per node. A plugin whose score would be
        the same on every node (no PreferNoSchedule taints, no preferences) is skipped: it cannot
        change the choice."""
        p = state.pod
        cpu, mem = p.nonzero_cpu, p.nonzero_memory
        wf, wb = WEIGHTS["fit"], WEIGHTS["balanced"]
        totals = []
        append = totals.append
        for n in nodes:
            acpu, amem = n.alloc_cpu, n.alloc_memory
            fcpu = (n.nonzero_cpu + cpu) / acpu if acpu else 1.0
            fmem = (n.nonzero_memory + mem) / amem if amem else 1.0
            fcpu = 1.0 if fcpu > 1.0 else fcpu
            fmem = 1.0 if fmem > 1.0 else fmem
            # least allocated: mean free share; balanced: 1 - std of the used shares (|a-b|/2 for two)
            append(wf * int((2 - fcpu - fmem) * 50) + wb * int((1 - abs(fcpu - fmem) / 2) * MAX_SCORE))
        self._score_taints(p, nodes, totals)
        if p.preferred_node_terms:
            raw = [sum(w for w, t in p.preferred_node_terms if t.matches(n.labels, n.name)) for n in nodes]
            _add_normalized(totals, raw, WEIGHTS["node_affinity"])
        self._score_spread(state, nodes, totals)
        self._score_pod_affinity(p, nodes, totals)
        return totals

    @staticmethod
    def _score_taints(p: PodInfo, nodes: list[NodeInfo], totals: list[float]) -> None:
        if not any(n.prefer_taints for n in nodes):
            return
        tols = [t for t in p.tolerations if (t.get("effect") or "PreferNoSchedule") == "PreferNoSchedule"]
        raw = [sum(1 for taint in n.prefer_taints if not any(tolerates(t, taint) for t in tols)) for n in nodes]
        _add_normalized(totals, raw, WEIGHTS["taint"], reverse=True)

    def _score_spread(self, state: CycleState, nodes: list[NodeInfo], totals: list[float]) -> None:
        """Fewer pods of the same group in a node's domain score higher: the pod's own soft and hard
        constraints, else upstream's default spreading (by host and by zone) of the pods of its
        controller, or of the Services selecting it."""
        p = state.pod
        raw = [0.0] * len(nodes)
        if p.spread:
            for c in p.spread:
                counts = self.cache.matching_counts(c.selector, lambda ns: ns == p.namespace)
                if c.topology_key == HOSTNAME:
                    self._spread_by_host(nodes, counts, raw)
                elif counts:
                    value_of = functools.partial(_label, c.topology_key)
                    self._spread_by_domain(nodes, self._per_domain(counts, value_of), value_of, raw)
        else:
            if p.controller_uid:
                counts = self.cache.controller_counts(p.controller_uid)
                zones = self.cache.controller_zone_counts(p.controller_uid)
            else:
                peers = self.default_spread(p)
                if peers is None:
                    return
                counts = peers()
                zones = self._per_domain(counts, lambda n: n.zone) if self.cache.zones else Counter()
            if not counts:
                return
            self._spread_by_host(nodes, counts, raw)
            if self.cache.zones:
                self._spread_by_domain(nodes, zones, lambda n: n.zone, raw, len(self.cache.zones))
        _add_normalized(totals, raw, WEIGHTS["spread"], reverse=True)

    def _per_domain(self, counts: Counter, value_of: Callable[[NodeInfo], str | None]) -> Counter:
        out: Counter = Counter()
        for node_name, c in counts.items():
            info = self.cache.nodes.get(node_name)
            value = value_of(info) if info is not None else None
            if value:
                out[value] += c
        return out

    def _spread_by_host(self, nodes: list[NodeInfo], counts: Counter, raw: list[float]) -> None:
        weight = math.log(len(self.cache.node_order) + 2)  # upstream weighs a constraint by log(domains + 2)
        get = counts.get
        for i, n in enumerate(nodes):
            c = get(n.name)
            if c:
                raw[i] += weight * c

    @staticmethod
    def _spread_by_domain(nodes: list[NodeInfo], per_domain: Counter, value_of: Callable[[NodeInfo], str | None],
                          raw: list[float], domains: int = 0) -> None:
        if not per_domain:
            return
        values = [value_of(n) for n in nodes]
        weight = math.log((domains or len(set(values) - {None})) + 2)
        get = per_domain.get
        for i, v in enumerate(values):
            c = get(v)
            if c:
                raw[i] += weight * c

    def _score_pod_affinity(self, p: PodInfo, nodes: list[NodeInfo], totals: list[float]) -> None:
        terms = [(t, t.weight) for t in p.preferred_affinity] + [(t, -t.weight) for t in p.preferred_anti_affinity]
        existing = []
        for other in self.cache.with_affinity.values():
            node = self.cache.nodes.get(self.cache.node_of(other.key) or "")
            if node is None:
                continue
            for t in other.preferred_affinity:
                if t.topology_key in node.labels and t.matches(p, self.ns_labels):
                    existing.append((t.topology_key, node.labels[t.topology_key], t.weight))
            for t in other.preferred_anti_affinity:
                if t.topology_key in node.labels and t.matches(p, self.ns_labels):
                    existing.append((t.topology_key, node.labels[t.topology_key], -t.weight))
        if not terms and not existing:
            return
        per_term = []
        for term, weight in terms:
            counts = self.cache.matching_counts(term.selector, lambda ns, t=term: t.matches_namespace(ns, self.ns_labels))
            by_domain: Counter = Counter()
            for node_name, c in counts.items():
                info = self.cache.nodes.get(node_name)
                if info is not None and term.topology_key in info.labels:
                    by_domain[info.labels[term.topology_key]] += c
            per_term.append((term.topology_key, by_domain, weight))
        raw = []
        for n in nodes:
            s = 0.0
            for key, by_domain, weight in per_term:
                if key in n.labels:
                    s += weight * by_domain.get(n.labels[key], 0)
            for key, value, weight in existing:
                if n.labels.get(key) == value:
                    s += weight
            raw.append(s)
        _add_normalized(totals, raw, WEIGHTS["pod_affinity"], min_max=True)


def _label(key: str, node: NodeInfo) -> str | None:
    return node.labels.get(key)


def _add_normalized(totals: list[float], raw: list[float], weight: int, reverse: bool = False,
                    min_max: bool = False) -> None:
    if not raw:
        return
    hi, lo = max(raw), min(raw)
    for i, r in enumerate(raw):
        if min_max:
            s = MAX_SCORE * (r - lo) / (hi - lo) if hi > lo else 0
        elif reverse:
            s = MAX_SCORE * (hi - r) / hi if hi > 0 else MAX_SCORE
        else:
            s = MAX_SCORE * r / hi if hi > 0 else 0
        totals[i] += weight * int(s)


def select_host(nodes: list[NodeInfo], scores: list[float]) -> NodeInfo:
    """The best-scored node; ties broken at random (as upstream's selectHost)."""
    best = max(scores)
    ties = [i for i, s in enumerate(scores) if s == best]
    return nodes[ties[0] if len(ties) == 1 else random.choice(ties)]


def nodes_to_find(num_nodes: int, percentage: int = 0) -> int:
    """numFeasibleNodesToFind: all nodes below 100; else an adaptive share (50% − nodes/125,
    at least 5%) and at least 100."""
    if num_nodes < 100 or percentage >= 100:
        return num_nodes
    if percentage <= 0:
        percentage = max(50 - num_nodes // 125, 5)
    return min(num_nodes, max(num_nodes * percentage // 100, 100))


def histogram(statuses: dict[str, Failure]) -> str:
    counts: Counter = Counter()
    for f in statuses.values():
        for r in f.reasons:
            counts[r] += 1
    return ", ".join(sorted(f"{v} {k}" for k, v in counts.items()))


def prefilter_error(num_nodes: int, message: str, preemption_policy: str) -> str:
    """A PreFilter rejected the pod for every node: its message stands for the histogram; preemption
    finds nothing to evict for it (the form upstream prints)."""
    if preemption_policy == "Never":
        post = "preemption: not eligible due to preemptionPolicy=Never."
    else:
        post = f"preemption: 0/{num_nodes} nodes are available: {num_nodes} No preemption victims found for " \
               "incoming pod."
    return f"0/{num_nodes} nodes are available: {message}. {post}."


def fit_error(num_nodes: int, statuses: dict[str, Failure], post_filter_msg: str = "") -> str:
    """FitError.Error(): "0/N nodes are available: <sorted reason histogram>. <postfilter>."."""
    msg = f"0/{num_nodes} nodes are available:"
    hist = histogram(statuses)
    if hist:
        msg += f" {hist}."
    if post_filter_msg:
        msg += f" {post_filter_msg}."
    return msg

