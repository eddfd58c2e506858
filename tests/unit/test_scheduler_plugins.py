"""Filters, scores and messages of the scheduler's plugins, on a cache built by hand."""
from __future__ import annotations

from ketch.scheduler import plugins, preemption
from ketch.scheduler.cache import Cache
from ketch.api.scheduling import tolerates
from ketch.scheduler.podinfo import pod_info, pod_requests


def node(name: str, cpu: str = "2", memory: str = "4Gi", pods: int = 110, labels=None, taints=None,
         unschedulable=False, ready="True") -> dict:
    res = {"cpu": cpu, "memory": memory, "pods": str(pods)}
    return {"metadata": {"name": name, "labels": labels or {}},
            "spec": {"taints": taints or [], "unschedulable": unschedulable},
            "status": {"allocatable": res, "conditions": [{"type": "Ready", "status": ready}]}}


def pod(name: str, cpu: str | None = None, priority: int = 0, node_name: str = "", labels=None, **spec) -> dict:
    c = {"name": "c", "image": "x"}
    if cpu:
        c["resources"] = {"requests": {"cpu": cpu}}
    if "ports" in spec:
        c["ports"] = spec.pop("ports")
    return {"metadata": {"name": name, "namespace": "ns", "uid": f"uid-{name}", "labels": labels or {}},
            "spec": {"containers": [c], "priority": priority, "nodeName": node_name, **spec}}


def framework(*nodes: dict, pods=()) -> plugins.Framework:
    cache = Cache()
    for n in nodes:
        cache.set_node(n)
    for p in pods:
        cache.add_pod(pod_info(p), p["spec"]["nodeName"])
    return plugins.Framework(cache, lambda ns: {}, lambda p: None)


def statuses(fw: plugins.Framework, p: dict) -> tuple[plugins.CycleState, dict]:
    info = pod_info(p)
    state = fw.prefilter(info)
    return state, {n.name: f for n in fw.cache.node_infos() if (f := fw.filter(state, n)) is not None}


def test_requests_sum_containers_max_init_and_overhead():
    spec = {"containers": [{"resources": {"requests": {"cpu": "100m", "memory": "1Mi"}}},
                           {"resources": {"limits": {"cpu": "200m"}}}],
            "initContainers": [{"resources": {"requests": {"cpu": "500m"}}},
                               {"resources": {"requests": {"memory": "1Ki"}}}],
            "overhead": {"cpu": "10m"}}
    assert pod_requests(spec) == {"cpu": 510, "memory": 1024 * 1024}


def test_tolerations():
    taint = {"key": "k", "value": "v", "effect": "NoSchedule"}
    assert tolerates({"key": "k", "operator": "Equal", "value": "v", "effect": "NoSchedule"}, taint)
    assert tolerates({"key": "k", "operator": "Exists"}, taint)
    assert tolerates({"operator": "Exists"}, taint)
    assert not tolerates({"key": "k", "value": "w"}, taint)
    assert not tolerates({"key": "k", "operator": "Exists", "effect": "NoExecute"}, taint)


def test_fit_error_histogram_is_sorted_like_upstream():
    fw = framework(node("a", cpu="1"), node("b", labels={"x": "y"}, taints=[{"key": "k", "value": "v",
                                                                             "effect": "NoSchedule"}]),
                   node("c", unschedulable=True), pods=[pod("big", cpu="900m", node_name="a")])
    _, st = statuses(fw, pod("p", cpu="500m"))
    assert plugins.fit_error(3, st) == ("0/3 nodes are available: 1 Insufficient cpu, 1 node(s) had untolerated "
                                        "taint {k: v}, 1 node(s) were unschedulable.")


def test_not_ready_node_is_tainted():
    fw = framework(node("a", ready="False"))
    _, st = statuses(fw, pod("p"))
    assert st["a"].reasons == ("node(s) had untolerated taint {node.kubernetes.io/not-ready: }",)


def test_too_many_pods_counts_pods_without_requests():
    fw = framework(node("a", pods=1), pods=[pod("x", node_name="a")])
    _, st = statuses(fw, pod("p"))
    assert st["a"].reasons == ("Too many pods",)


def test_node_affinity_operators():
    fw = framework(node("a", labels={"gen": "3", "disk": "ssd"}), node("b", labels={"gen": "1"}))
    aff = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "gen", "operator": "Gt", "values": ["2"]},
                              {"key": "disk", "operator": "Exists"}]}]}}}
    _, st = statuses(fw, pod("p", affinity=aff))
    assert set(st) == {"b"} and st["b"].reasons == (plugins.ERR_NODE_AFFINITY,)


def test_host_ports():
    fw = framework(node("a"), pods=[pod("x", node_name="a", ports=[{"containerPort": 1, "hostPort": 80}])])
    _, st = statuses(fw, pod("p", ports=[{"containerPort": 1, "hostPort": 80}]))
    assert st["a"].reasons == (plugins.ERR_PORTS,)
    _, st = statuses(fw, pod("p", ports=[{"containerPort": 1, "hostPort": 80, "protocol": "UDP"}]))
    assert not st


def test_topology_spread_do_not_schedule():
    zone = "topology.kubernetes.io/zone"
    fw = framework(node("a", labels={zone: "z1"}), node("b", labels={zone: "z2"}),
                   pods=[pod("x", node_name="a", labels={"app": "w"})])
    tsc = [{"maxSkew": 1, "topologyKey": zone, "whenUnsatisfiable": "DoNotSchedule",
            "labelSelector": {"matchLabels": {"app": "w"}}}]
    _, st = statuses(fw, pod("p", labels={"app": "w"}, topologySpreadConstraints=tsc))
    assert set(st) == {"a"} and st["a"].reasons == (plugins.ERR_SPREAD,)


def test_least_allocated_prefers_the_emptier_node():
    fw = framework(node("a"), node("b"), pods=[pod("x", cpu="1", node_name="a")])
    state, _ = statuses(fw, pod("p", cpu="100m"))
    nodes = fw.cache.node_infos()
    scores = fw.score(state, nodes)
    assert plugins.select_host(nodes, scores).name == "b"


def test_nodes_to_find_is_adaptive():
    assert plugins.nodes_to_find(50) == 50
    assert plugins.nodes_to_find(200) == 100
    assert plugins.nodes_to_find(1000) == 420
    assert plugins.nodes_to_find(5000) == 500
    assert plugins.nodes_to_find(1000, 100) == 1000


def test_preemption_picks_lowest_priority_victims():
    fw = framework(node("a", cpu="1"), node("b", cpu="1"),
                   pods=[pod("a1", cpu="800m", priority=5, node_name="a"),
                         pod("b1", cpu="800m", priority=1, node_name="b")])
    p = pod("hi", cpu="800m", priority=10)
    state, st = statuses(fw, p)
    out = preemption.preempt(fw, state, pod_info(p), st)
    assert out.node == "b" and [v.name for v in out.victims] == ["b1"]
    never = pod("n", cpu="800m", priority=10, preemptionPolicy="Never")
    state, st = statuses(fw, never)
    assert preemption.preempt(fw, state, pod_info(never), st).message == \
        "preemption: not eligible due to preemptionPolicy=Never."
    low = pod("low", cpu="800m", priority=0)
    state, st = statuses(fw, low)
    assert plugins.fit_error(2, st, preemption.preempt(fw, state, pod_info(low), st).message) == (
        "0/2 nodes are available: 2 Insufficient cpu. preemption: 0/2 nodes are available: "
        "2 No preemption victims found for incoming pod..")
