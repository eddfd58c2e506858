"""The node lifecycle and taint-eviction controllers against simulated nodes that die and come back."""
from __future__ import annotations

import functools
import json
import time

import pytest
from helpers.cluster import start_server, wait_for

_poll = functools.partial(wait_for, interval=0.2)  # kubectl-heavy polls: not too often


@pytest.fixture
def cluster(tmp_path):
    """A server whose node lifecycle controller gives up on a node after 3 s of silence."""
    srv = start_server(tmp_path, ["--node-monitor-grace-period", "3s", "--node-monitor-period", "500ms"])
    try:
        yield srv
    finally:
        srv.stop()


def _pod(name: str, node: str, tolerations: list[dict]) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"nodeName": node, "tolerations": tolerations,
                     "containers": [{"name": "c", "image": "busybox:1.36"}]}}


def _taints(srv, node: str) -> set[tuple[str, str]]:
    spec = srv.kubectl_json("get", "node", node)["spec"]
    return {(t["key"], t["effect"]) for t in spec.get("taints") or ()}


def test_dead_node_is_tainted_and_its_pods_evicted(cluster, simulator):
    fast = ["--lease-interval", "0.5"]
    simulator(cluster, nodes=2, name_prefix="live-", extra_args=fast)
    dead = simulator(cluster, nodes=1, name_prefix="dead-", extra_args=fast)
    unreachable = {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"}
    pods = {"apiVersion": "v1", "kind": "List", "items": [
        _pod("short", "dead-0", [{**unreachable, "tolerationSeconds": 2}]),
        _pod("forever", "dead-0", [unreachable]),
        _pod("default", "dead-0", []),           # admission: 300 s for not-ready and unreachable
        _pod("elsewhere", "live-0", [])]}
    cluster.kubectl("apply", "-f", "-", input=json.dumps(pods))
    cluster.kubectl("wait", "--for=condition=Ready", "pod/short", "pod/forever", "pod/default", "pod/elsewhere",
                    "--timeout=20s")
    assert _taints(cluster, "dead-0") == set()

    dead.kill9()
    _poll(lambda: cluster.kubectl("get", "node", "dead-0", "--no-headers").stdout.split()[1] == "NotReady")
    conds = {c["type"]: c for c in cluster.kubectl_json("get", "node", "dead-0")["status"]["conditions"]}
    for ctype in ("Ready", "MemoryPressure", "DiskPressure", "PIDPressure"):
        assert conds[ctype]["status"] == "Unknown" and conds[ctype]["reason"] == "NodeStatusUnknown"
    assert conds["Ready"]["message"] == "Kubelet stopped posting node status."
    _poll(lambda: {("node.kubernetes.io/unreachable", "NoExecute"),
                   ("node.kubernetes.io/unreachable", "NoSchedule")} <= _taints(cluster, "dead-0"))
    noexecute = next(t for t in cluster.kubectl_json("get", "node", "dead-0")["spec"]["taints"]
                     if t["effect"] == "NoExecute")
    assert noexecute["timeAdded"]

    # The pod tolerating 2 s is deleted (and stays Terminating: no kubelet is left to confirm).
    short = _poll(lambda: (p := cluster.kubectl_json("get", "pod", "short"))["metadata"].get("deletionTimestamp") and p)
    target = next(c for c in short["status"]["conditions"] if c["type"] == "DisruptionTarget")
    assert target["reason"] == "DeletionByTaintManager" and target["status"] == "True"
    assert target["message"] == "Taint manager: deleting due to NoExecute taint"
    events = cluster.kubectl_json("get", "events", "--field-selector", "involvedObject.name=short")["items"]
    assert any(e["reason"] == "TaintManagerEviction" and e["message"] == "Marking for deletion Pod default/short"
               and e["source"]["component"] == "taint-eviction-controller" for e in events)
    # The others stay, but their pods are no longer Ready.
    for name in ("forever", "default"):
        pod = cluster.kubectl_json("get", "pod", name)
        assert not pod["metadata"].get("deletionTimestamp")
        assert {c["type"]: c["status"] for c in pod["status"]["conditions"]}["Ready"] == "False"
    node_events = cluster.kubectl_json("get", "events", "--field-selector", "involvedObject.name=dead-0")["items"]
    assert any(e["reason"] == "NodeNotReady" and e["message"] == "Node dead-0 status is now: NodeNotReady"
               and e["source"]["component"] == "node-controller" for e in node_events)
    # Healthy nodes are untouched.
    assert cluster.kubectl("get", "node", "live-0", "--no-headers").stdout.split()[1] == "Ready"
    assert _taints(cluster, "live-0") == set()
    assert cluster.kubectl_json("get", "pod", "elsewhere")["status"]["phase"] == "Running"

    # The node comes back: Ready, taints gone, the terminating pod finally finalized.
    dead.start()
    _poll(lambda: _taints(cluster, "dead-0") == set())
    assert cluster.kubectl("get", "node", "dead-0", "--no-headers").stdout.split()[1] == "Ready"
    _poll(lambda: cluster.kubectl("get", "pod", "short", check=False).returncode != 0)
    cluster.kubectl("wait", "--for=condition=Ready", "pod/forever", "--timeout=20s")
    # The pod that tolerated 300 s is no longer to be deleted.
    _poll(lambda: any(e["reason"] == "TaintManagerEviction" and e["message"] == "Cancelling deletion of Pod default/default"
                      for e in cluster.kubectl_json("get", "events", "--field-selector",
                                                    "involvedObject.name=default")["items"]))


def test_cordon_taints_unschedulable(cluster, simulator):
    simulator(cluster, nodes=1, name_prefix="c-", extra_args=["--lease-interval", "0.5"])
    cluster.kubectl("cordon", "c-0")
    _poll(lambda: ("node.kubernetes.io/unschedulable", "NoSchedule") in _taints(cluster, "c-0"))
    assert cluster.kubectl("get", "node", "c-0", "--no-headers").stdout.split()[1] == "Ready,SchedulingDisabled"
    cluster.kubectl("uncordon", "c-0")
    _poll(lambda: _taints(cluster, "c-0") == set())


def test_all_nodes_down_is_not_an_eviction(cluster, simulator):
    """Every node silent at once looks like the control plane is cut off: no NoExecute taints."""
    sim = simulator(cluster, nodes=2, name_prefix="all-", extra_args=["--lease-interval", "0.5"])
    sim.kill9()
    _poll(lambda: all(cluster.kubectl("get", "node", n, "--no-headers").stdout.split()[1] == "NotReady"
                      for n in sim.node_names))
    time.sleep(1.5)  # three monitor passes: any NoExecute taint would have been added by now
    for name in sim.node_names:
        assert ("node.kubernetes.io/unreachable", "NoExecute") not in _taints(cluster, name)
        assert ("node.kubernetes.io/unreachable", "NoSchedule") in _taints(cluster, name)


# ---- node IPAM ------------------------------------------------------------------------------------

def _node(name: str) -> str:
    return json.dumps({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}})


def _pod_cidrs(srv) -> dict[str, str]:
    nodes = srv.kubectl_json("get", "nodes")["items"]
    return {n["metadata"]["name"]: (n.get("spec") or {}).get("podCIDR") for n in nodes}


def test_nodes_get_distinct_pod_cidrs_that_survive_a_restart(cluster, simulator):
    simulator(cluster, nodes=2, name_prefix="ipam-")
    cidrs = _poll(lambda: (c := _pod_cidrs(cluster)) and all(c.values()) and c)
    assert set(cidrs) == {"ipam-0", "ipam-1"} and len(set(cidrs.values())) == 2
    assert all(c.startswith("10.42.") and c.endswith(".0/24") for c in cidrs.values())
    node = cluster.kubectl_json("get", "node", "ipam-0")
    assert node["spec"]["podCIDRs"] == [node["spec"]["podCIDR"]]
    # Pods on a simulated node take their IPs from its podCIDR.
    cluster.kubectl("apply", "-f", "-", input=json.dumps(_pod("p", "ipam-1", [])))
    cluster.kubectl("wait", "--for=condition=Ready", "pod/p", "--timeout=20s")
    ip = cluster.kubectl_json("get", "pod", "p")["status"]["podIP"]
    assert ip.rsplit(".", 1)[0] == cidrs["ipam-1"].rsplit(".", 1)[0]

    # A restarted controller rebuilds what is taken from the nodes: nothing is handed out twice.
    cluster.stop()
    cluster.start()
    for i in range(3):
        cluster.kubectl("create", "-f", "-", input=_node(f"plain-{i}"))
    after = _poll(lambda: (c := _pod_cidrs(cluster)) and all(c.values()) and c)
    assert len(after) == 5 and len(set(after.values())) == 5
    assert {k: after[k] for k in cidrs} == cidrs


def test_cluster_cidr_used_up(tmp_path):
    srv = start_server(tmp_path, ["--cluster-cidr", "10.42.0.0/23"])   # room for two nodes
    try:
        for i in range(3):
            srv.kubectl("create", "-f", "-", input=_node(f"n-{i}"))
        _poll(lambda: sum(1 for c in _pod_cidrs(srv).values() if c) == 2)
        left = next(n for n, c in _pod_cidrs(srv).items() if not c)
        _poll(lambda: any(e["reason"] == "CIDRNotAvailable" and e["message"] == f"Node {left} status is now: "
                          "CIDRNotAvailable" for e in srv.kubectl_json("get", "events")["items"]))
        # A deleted node's range goes to the one waiting.
        srv.kubectl("delete", "node", next(n for n, c in _pod_cidrs(srv).items() if c))
        _poll(lambda: _pod_cidrs(srv).get(left))
    finally:
        srv.stop()


def test_pods_of_a_dead_node_are_replaced_on_the_others(cluster, simulator):
    """The issue's promise: a node that stops renewing its Lease has its pods replaced elsewhere."""
    fast = ["--lease-interval", "0.5"]
    simulator(cluster, nodes=1, name_prefix="keep-", extra_args=fast)
    dead = simulator(cluster, nodes=1, name_prefix="lost-", extra_args=fast)
    rc = {"apiVersion": "v1", "kind": "ReplicationController", "metadata": {"name": "web"},
          "spec": {"replicas": 4, "selector": {"app": "web"}, "template": {
              "metadata": {"labels": {"app": "web"}},
              "spec": {"tolerations": [{"key": "node.kubernetes.io/unreachable", "operator": "Exists",
                                        "effect": "NoExecute", "tolerationSeconds": 1}],
                       "containers": [{"name": "web", "image": "busybox:1.36"}]}}}}
    cluster.kubectl("create", "-f", "-", input=json.dumps(rc))

    def placement() -> dict[str, str]:
        items = cluster.kubectl_json("get", "pods", "-l", "app=web")["items"]
        return {p["metadata"]["name"]: p["spec"].get("nodeName", "") for p in items
                if not p["metadata"].get("deletionTimestamp") and p["status"].get("phase") == "Running"}
    before = _poll(lambda: len(p := placement()) == 4 and p)
    on_lost = {name for name, node in before.items() if node == "lost-0"}
    assert on_lost, f"the spread put nothing on lost-0: {before}"

    dead.kill9()
    after = _poll(lambda: len(p := placement()) == 4 and set(p.values()) == {"keep-0"} and p, timeout=30)
    assert not on_lost & set(after), "the lost node's pods were replaced by new ones"


def test_a_dead_nodes_agent_endpoints_go_not_ready(cluster, simulator):
    """The cluster DNS endpoint a node agent publishes for itself (managed-by agent.ketch.io) is
    marked not ready with the node, as its pods are, so the proxy stops sending queries there."""
    fast = ["--lease-interval", "0.5"]
    simulator(cluster, nodes=1, name_prefix="live-", extra_args=fast)
    dead = simulator(cluster, nodes=1, name_prefix="dead-", extra_args=fast)
    def endpoint(node: str, ip: str) -> dict:
        return {"addresses": [ip], "nodeName": node, "conditions": {"ready": True, "serving": True}}
    cluster.kubectl("apply", "-f", "-", input=json.dumps({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
        "metadata": {"name": "kube-dns-test", "namespace": "kube-system",
                     "labels": {"kubernetes.io/service-name": "kube-dns",
                                "endpointslice.kubernetes.io/managed-by": "agent.ketch.io"}},
        "ports": [{"name": "dns", "port": 53, "protocol": "UDP"}],
        "endpoints": [endpoint("dead-0", "172.30.0.9"), endpoint("live-0", "172.30.0.8")]}))
    dead.kill9()

    def readiness():
        sl = cluster.kubectl_json("get", "endpointslice", "kube-dns-test", "-n", "kube-system")
        return {e["nodeName"]: e["conditions"]["ready"] for e in sl["endpoints"]}
    _poll(lambda: readiness() == {"dead-0": False, "live-0": True}, timeout=30)
