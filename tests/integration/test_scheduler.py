"""The scheduler end to end: a real `ketch server` (its in-process scheduler), Node objects made
through the API as a kubelet would register them, pods created by kubectl and the API, and what a
user observes: the pod's nodeName, its PodScheduled condition and the scheduler's Events.

The tests share one server of this module's own (never the session server, whose nodes other tests
own); each test deletes its nodes when done, so the next sees only its own.
"""
from __future__ import annotations

import subprocess
import sys

import pytest
from helpers.cluster import BOOK, ROOT, start_server, unique
from helpers.cluster import wait_for as wait
from helpers.http import Api

TIMEOUT = 30.0


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    server = start_server(tmp_path_factory.mktemp("sched"))
    try:
        yield server
    finally:
        server.stop()


class Cluster:
    """Nodes and pods of one test, removed at its end."""

    def __init__(self, server):
        self.server = server
        self.api = Api(server.kubeconfig)
        self.ns = unique("sched")
        self.nodes: list[str] = []
        self.req("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                                "metadata": {"name": self.ns}}, expect=201)

    def req(self, method, path, body=None, expect=None, **kw):
        status, doc, _ = self.api.request(method, path, body, **kw)
        if expect is not None:
            assert status == expect, (method, path, status, doc)
        return status, doc

    def node(self, name, cpu="2", memory="4Gi", pods=110, labels=None, taints=None, ready=True):
        name = f"{self.ns}-{name}"
        spec = {"taints": taints} if taints else {}
        self.req("POST", "/api/v1/nodes", {"apiVersion": "v1", "kind": "Node",
                                           "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name,
                                                                                 **(labels or {})}},
                                           "spec": spec}, expect=201)
        self.nodes.append(name)
        res = {"cpu": cpu, "memory": memory, "pods": str(pods)}
        cond = {"type": "Ready", "status": "True" if ready else "False", "reason": "KubeletReady",
                "message": "kubelet is posting ready status"}
        self.req("PATCH", f"/api/v1/nodes/{name}/status",
                 {"status": {"capacity": res, "allocatable": res, "conditions": [cond]}},
                 content_type="application/merge-patch+json", expect=200)
        return name

    def pod(self, name, cpu=None, memory=None, labels=None, owner=None, expect=201, **spec):
        container = {"name": "c", "image": "busybox"}
        requests = {k: v for k, v in (("cpu", cpu), ("memory", memory)) if v}
        if requests:
            container["resources"] = {"requests": requests}
        if "ports" in spec:
            container["ports"] = spec.pop("ports")
        meta = {"name": name, "labels": labels or {"app": name}}
        if owner:
            meta["ownerReferences"] = [owner]
        body = {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": {"containers": [container], **spec}}
        self.req("POST", f"/api/v1/namespaces/{self.ns}/pods", body, expect=expect)
        return name

    def get_pod(self, name):
        return self.req("GET", f"/api/v1/namespaces/{self.ns}/pods/{name}", expect=200)[1]

    def pod_names(self):
        _, doc = self.req("GET", f"/api/v1/namespaces/{self.ns}/pods", expect=200)
        return sorted(p["metadata"]["name"] for p in doc["items"])

    def node_of(self, name):
        return self.get_pod(name)["spec"].get("nodeName")

    def wait_bound(self, *names, timeout=TIMEOUT):
        return {n: wait(lambda n=n: self.node_of(n), timeout, f"pod {n} bound") for n in names}

    def condition(self, name):
        pod = self.get_pod(name)
        return next((c for c in pod.get("status", {}).get("conditions") or () if c["type"] == "PodScheduled"), None)

    def wait_unschedulable(self, name, timeout=TIMEOUT):
        return wait(lambda: (c := self.condition(name)) and c["status"] == "False" and c, timeout,
                    f"pod {name} marked unschedulable")

    def events(self, name, reason):
        _, doc = self.req("GET", f"/api/v1/namespaces/{self.ns}/events"
                                 f"?fieldSelector=involvedObject.name={name}", expect=200)
        return [e for e in doc["items"] if e["reason"] == reason]

    def wait_event(self, name, reason, timeout=TIMEOUT):
        return wait(lambda: self.events(name, reason), timeout, f"{reason} event for {name}")[-1]

    def close(self):
        for n in self.nodes:
            self.api.request("DELETE", f"/api/v1/nodes/{n}")
        self.api.request("DELETE", f"/api/v1/namespaces/{self.ns}")


@pytest.fixture
def cluster(srv):
    c = Cluster(srv)
    try:
        yield c
    finally:
        c.close()


def test_binds_to_a_fitting_node_with_scheduled_event(cluster):
    node = cluster.node("n1")
    cluster.pod("web", cpu="100m")
    assert cluster.wait_bound("web")["web"] == node
    ev = cluster.wait_event("web", "Scheduled")
    assert ev["type"] == "Normal"
    assert ev["message"] == f"Successfully assigned {cluster.ns}/web to {node}"
    assert ev["source"]["component"] == "default-scheduler"
    assert cluster.condition("web")["status"] == "True"


def test_insufficient_cpu_stays_pending_with_upstream_message(cluster):
    """The book's Listing 2-12: a ReplicationController whose replicas ask for more cpu than the
    nodes have (1.5 cpu each on two 2-cpu nodes: two run, the third stays Pending)."""
    for i in range(2):
        cluster.node(f"n{i}", cpu="2")
    manifest = (BOOK / "Chapter02" / "nodejs-constraints-controller.yaml").read_text()
    cluster.server.kubectl("create", "-n", cluster.ns, "-f", "-", input=manifest)
    pods = wait(lambda: len(names := cluster.pod_names()) == 3 and names, TIMEOUT, "three replicas")
    wait(lambda: sum(1 for n in pods if cluster.node_of(n)) == 2, TIMEOUT, "two bound")
    assert len({cluster.node_of(n) for n in pods} - {None}) == 2
    pending = next(n for n in pods if not cluster.node_of(n))
    expected = ("0/2 nodes are available: 2 Insufficient cpu. preemption: 0/2 nodes are available: "
                "2 No preemption victims found for incoming pod..")
    cond = cluster.wait_unschedulable(pending)
    assert cond["reason"] == "Unschedulable"
    assert cond["message"] == expected
    ev = cluster.wait_event(pending, "FailedScheduling")
    assert ev["type"] == "Warning" and ev["message"] == expected
    assert ev["source"]["component"] == "default-scheduler"
    out = cluster.server.kubectl("describe", "pod", pending, "-n", cluster.ns).stdout
    assert "FailedScheduling" in out and "Insufficient cpu" in out
    assert "Pending" in cluster.server.kubectl("get", "pod", pending, "-n", cluster.ns).stdout


def test_node_selector_with_kubectl_label(cluster):
    a = cluster.node("a")
    b = cluster.node("b")
    cluster.server.kubectl("label", "nodes", b, "nodenickname=trusty-steve")
    for i in range(3):
        cluster.pod(f"sel-{i}", nodeSelector={"nodenickname": "trusty-steve"})
    bound = cluster.wait_bound(*(f"sel-{i}" for i in range(3)))
    assert set(bound.values()) == {b}
    cluster.pod("nowhere", nodeSelector={"nodenickname": "nobody"})
    cond = cluster.wait_unschedulable("nowhere")
    assert cond["message"] == ("0/2 nodes are available: 2 node(s) didn't match Pod's node affinity/selector. "
                               "preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling..")
    # Required node affinity with matchExpressions and matchFields.
    cluster.pod("aff", affinity={"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": [a]}]}]}}})
    assert cluster.wait_bound("aff")["aff"] == a
    assert a != b


def test_taints_and_tolerations(cluster):
    tainted = cluster.node("gpu", taints=[{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}])
    cluster.pod("plain")
    cond = cluster.wait_unschedulable("plain")
    assert cond["message"].startswith("0/1 nodes are available: 1 node(s) had untolerated taint {dedicated: gpu}.")
    cluster.pod("tolerant", tolerations=[{"key": "dedicated", "operator": "Equal", "value": "gpu",
                                          "effect": "NoSchedule"}])
    assert cluster.wait_bound("tolerant")["tolerant"] == tainted
    # A node that is not Ready carries the not-ready taint: nothing new goes there.
    cluster.node("sick", ready=False)
    cluster.pod("plain2")
    cond = cluster.wait_unschedulable("plain2")
    assert "1 node(s) had untolerated taint {node.kubernetes.io/not-ready: }" in cond["message"]
    # Removing the taint (a node update) wakes the waiting pod.
    cluster.server.kubectl("taint", "nodes", tainted, "dedicated=gpu:NoSchedule-")
    assert cluster.wait_bound("plain")["plain"] == tainted


def test_cordon_stops_placement(cluster):
    a = cluster.node("a")
    cluster.server.kubectl("cordon", a)
    cluster.pod("p")
    cond = cluster.wait_unschedulable("p")
    assert cond["message"].startswith("0/1 nodes are available: 1 node(s) were unschedulable.")
    cluster.server.kubectl("uncordon", a)
    assert cluster.wait_bound("p")["p"] == a


RS = """
apiVersion: apps/v1
kind: ReplicaSet
metadata: {name: frontend}
spec:
  replicas: 6
  selector: {matchLabels: {app: frontend}}
  template:
    metadata: {labels: {app: frontend}}
    spec:
      containers: [{name: c, image: busybox}]
"""


def test_pods_of_one_replicaset_spread_over_nodes(cluster):
    names = [cluster.node(f"n{i}", cpu="8", memory="32Gi") for i in range(3)]
    cluster.server.kubectl("apply", "-n", cluster.ns, "-f", "-", input=RS)
    pods = wait(lambda: len(p := cluster.pod_names()) == 6 and p, TIMEOUT, "six replicas")
    bound = cluster.wait_bound(*pods)
    per_node = {n: list(bound.values()).count(n) for n in names}
    assert per_node == {n: 2 for n in names}, per_node


def test_host_port_conflict(cluster):
    a = cluster.node("a")
    cluster.pod("p1", ports=[{"containerPort": 80, "hostPort": 8080}])
    assert cluster.wait_bound("p1")["p1"] == a
    cluster.pod("p2", ports=[{"containerPort": 80, "hostPort": 8080}])
    cond = cluster.wait_unschedulable("p2")
    assert cond["message"].startswith(
        "0/1 nodes are available: 1 node(s) didn't have free ports for the requested pod ports.")
    cluster.pod("p3", ports=[{"containerPort": 80, "hostPort": 8081}])
    assert cluster.wait_bound("p3")["p3"] == a


def test_required_anti_affinity(cluster):
    names = [cluster.node(f"n{i}") for i in range(2)]
    anti = {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{
        "labelSelector": {"matchLabels": {"app": "store"}}, "topologyKey": "kubernetes.io/hostname"}]}}
    for i in range(3):
        cluster.pod(f"store-{i}", labels={"app": "store"}, affinity=anti)
    wait(lambda: sum(1 for i in range(3) if cluster.node_of(f"store-{i}")) == 2, TIMEOUT, "two bound")
    placed = {cluster.node_of(f"store-{i}") for i in range(3)} - {None}
    assert placed == set(names)
    pending = next(f"store-{i}" for i in range(3) if not cluster.node_of(f"store-{i}"))
    cond = cluster.wait_unschedulable(pending)
    # Upstream checks the existing pods' anti-affinity first: the placed pods repel this one.
    assert cond["message"].startswith("0/2 nodes are available: 2 node(s) didn't satisfy existing pods "
                                      "anti-affinity rules.")
    cluster.pod("loner", labels={"app": "other"}, affinity=anti)
    cond = cluster.wait_unschedulable("loner")
    assert cond["message"].startswith("0/2 nodes are available: 2 node(s) didn't match pod anti-affinity rules.")
    # Pod affinity: goes next to a store pod.
    cluster.pod("cache", affinity={"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{
        "labelSelector": {"matchLabels": {"app": "store"}}, "topologyKey": "kubernetes.io/hostname"}]}})
    assert cluster.wait_bound("cache")["cache"] in names


def test_preemption(cluster):
    node = cluster.node("n", cpu="1")
    cluster.pod("low", cpu="800m")
    cluster.wait_bound("low")
    cluster.req("POST", "/apis/scheduling.k8s.io/v1/priorityclasses", expect=201, body={
        "apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
        "metadata": {"name": f"{cluster.ns}-never"}, "value": 1000, "preemptionPolicy": "Never"})
    cluster.pod("never", cpu="800m", priorityClassName=f"{cluster.ns}-never")
    cond = cluster.wait_unschedulable("never")
    assert cond["message"] == ("0/1 nodes are available: 1 Insufficient cpu. preemption: "
                               "not eligible due to preemptionPolicy=Never..")
    cluster.req("DELETE", f"/api/v1/namespaces/{cluster.ns}/pods/never?gracePeriodSeconds=0", expect=200)
    cluster.pod("high", cpu="800m", priorityClassName="system-cluster-critical")
    # The victim is deleted (gracefully: with no kubelet, finish it as one would) ...
    wait(lambda: cluster.get_pod("low")["metadata"].get("deletionTimestamp"), TIMEOUT, "victim deleted")
    assert cluster.get_pod("high")["status"].get("nominatedNodeName") == node
    assert cluster.wait_event("low", "Preempted")["message"].startswith("Preempted by pod ")
    cluster.req("DELETE", f"/api/v1/namespaces/{cluster.ns}/pods/low?gracePeriodSeconds=0", expect=200)
    # ... and the preemptor takes its place.
    assert cluster.wait_bound("high")["high"] == node


def test_pending_pod_scheduled_when_a_node_is_added(cluster):
    cluster.pod("early", cpu="100m")
    cond = cluster.wait_unschedulable("early")
    assert cond["message"] == "no nodes available to schedule pods"
    assert cluster.wait_event("early", "FailedScheduling")["message"] == "no nodes available to schedule pods"
    node = cluster.node("late")
    assert cluster.wait_bound("early")["early"] == node


def test_scheduling_gates_hold_a_pod_back(cluster):
    node = cluster.node("a")
    cluster.pod("gated", schedulingGates=[{"name": "example.com/wait"}])
    cond = wait(lambda: (c := cluster.condition("gated")) and c["reason"] == "SchedulingGated" and c, TIMEOUT,
                "gated condition")
    assert cond["message"] == "Scheduling is blocked due to non-empty scheduling gates"
    assert cluster.node_of("gated") is None
    cluster.req("PATCH", f"/api/v1/namespaces/{cluster.ns}/pods/gated", {"spec": {"schedulingGates": None}},
                content_type="application/merge-patch+json", expect=200)
    assert cluster.wait_bound("gated")["gated"] == node


def test_scheduler_subcommand_with_leader_election(cluster):
    """`ketch scheduler` alone: it takes the kube-system Lease and schedules its profile's pods."""
    node = cluster.node("a")
    lease = unique("sched-lease")
    log = open(cluster.server.data_dir / f"{lease}.log", "ab")
    proc = subprocess.Popen([sys.executable, "-m", "ketch.cli.main", "scheduler", "--kubeconfig",
                             str(cluster.server.kubeconfig), "--scheduler-name", "my-scheduler",
                             "--lock-object-name", lease], stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        cluster.pod("mine", schedulerName="my-scheduler")
        assert cluster.wait_bound("mine", timeout=30)["mine"] == node
        holder = cluster.req("GET", f"/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/{lease}",
                             expect=200)[1]["spec"]["holderIdentity"]
        assert holder
        ev = cluster.wait_event("mine", "Scheduled")
        assert ev["source"]["component"] == "my-scheduler"
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


def test_restart_does_not_double_bind(cluster):
    c, server = cluster, cluster.server
    c.node("a", cpu="1")
    for i in range(2):
        c.pod(f"p{i}", cpu="400m")
    before = c.wait_bound("p0", "p1")
    for n in ("p0", "p1"):
        c.wait_event(n, "Scheduled")
    server.stop()
    server.start()
    # The restarted scheduler counts what is bound: a third pod does not fit.
    c.pod("p2", cpu="400m")
    cond = c.wait_unschedulable("p2")
    assert "1 Insufficient cpu" in cond["message"]
    assert {n: c.node_of(n) for n in ("p0", "p1")} == before
    for n in ("p0", "p1"):
        events = c.events(n, "Scheduled")
        assert len(events) == 1 and events[0]["count"] == 1


def test_pod_with_missing_claim_waits_for_it(cluster):
    node = cluster.node("a")
    cluster.pod("db", volumes=[{"name": "data", "persistentVolumeClaim": {"claimName": "db-data"}}])
    cond = cluster.wait_unschedulable("db")
    assert cond["message"] == ('0/1 nodes are available: persistentvolumeclaim "db-data" not found. preemption: '
                               '0/1 nodes are available: 1 No preemption victims found for incoming pod..')
    # A claim of the default (local-path, WaitForFirstConsumer) class lets the pod be placed.
    cluster.req("POST", f"/api/v1/namespaces/{cluster.ns}/persistentvolumeclaims", {
        "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "db-data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}, expect=201)
    assert cluster.wait_bound("db")["db"] == node
