"""The DaemonSet controller on a server of its own with simulated nodes: one pod per eligible node,
placed by the scheduler through a metadata.name node affinity, rolled out node by node."""
from __future__ import annotations

import functools
import json
import time

import pytest
from helpers.cluster import BOOK, Simulator, start_server, unique, wait_for
from helpers.http import Api

poll = functools.partial(wait_for, interval=0.1)  # kubectl-heavy polls: not too often


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A server of this module's own (never add Nodes to the session server) with three simulated
    nodes. Tests use their own DaemonSets and undo what they do to the nodes."""
    srv = start_server(tmp_path_factory.mktemp("ds"))
    sim = Simulator(srv, nodes=3, name_prefix="node-")
    try:
        sim.start()
        yield srv, sim
    finally:
        sim.stop()
        srv.stop()


def ds_manifest(name, **spec):
    return {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": name},
            "spec": {"selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": "agent", "image": "fluentd:v1"}]}}, **spec}}


def pods_of(srv, name):
    items = srv.kubectl_json("get", "pods", "-l", f"app={name}")["items"]  # default namespace
    return [p for p in items if not p["metadata"].get("deletionTimestamp")]


def status(srv, name):
    return srv.kubectl_json("get", "ds", name).get("status", {})


def test_one_pod_per_node_then_nodes_come_and_go(cluster):
    srv, sim = cluster
    srv.kubectl("apply", "-f", "-", input=json.dumps(ds_manifest("agent")))
    srv.kubectl("rollout", "status", "ds/agent", "--timeout=30s")
    pods = pods_of(srv, "agent")
    assert sorted(p["spec"]["nodeName"] for p in pods) == ["node-0", "node-1", "node-2"]
    pod = pods[0]
    node = pod["spec"]["nodeName"]
    terms = pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert terms == [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node]}]}]
    tolerations = {(t["key"], t["effect"]) for t in pod["spec"]["tolerations"] if t.get("operator") == "Exists"}
    assert {("node.kubernetes.io/not-ready", "NoExecute"), ("node.kubernetes.io/unreachable", "NoExecute"),
            ("node.kubernetes.io/disk-pressure", "NoSchedule"), ("node.kubernetes.io/memory-pressure", "NoSchedule"),
            ("node.kubernetes.io/pid-pressure", "NoSchedule"), ("node.kubernetes.io/unschedulable", "NoSchedule")
            } <= tolerations
    assert not any("tolerationSeconds" in t for t in pod["spec"]["tolerations"]
                   if t["key"] in ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"))
    assert pod["metadata"]["labels"]["controller-revision-hash"]
    ref = pod["metadata"]["ownerReferences"][0]
    assert (ref["kind"], ref["name"], ref["controller"]) == ("DaemonSet", "agent", True)
    st = status(srv, "agent")
    assert (st["desiredNumberScheduled"], st["currentNumberScheduled"], st["numberReady"], st["numberAvailable"],
            st["updatedNumberScheduled"], st["numberMisscheduled"]) == (3, 3, 3, 3, 3, 0)
    assert st["observedGeneration"] == 1 and "numberUnavailable" not in st
    revs = srv.kubectl_json("get", "controllerrevisions", "-l", "app=agent")["items"]
    assert len(revs) == 1 and revs[0]["revision"] == 1
    assert revs[0]["metadata"]["name"] == f"agent-{pod['metadata']['labels']['controller-revision-hash']}"
    assert revs[0]["data"]["spec"]["template"]["$patch"] == "replace"
    out = srv.kubectl("get", "ds", "agent").stdout.split("\n")[1].split()
    assert out[:6] == ["agent", "3", "3", "3", "3", "3"], out

    # A tainted node keeps its daemon pod only if it tolerates NoExecute taints.
    srv.kubectl("taint", "nodes", "node-2", "dedicated=infra:NoSchedule")
    time.sleep(0.3)
    assert len(pods_of(srv, "agent")) == 3  # NoSchedule: keeps running
    assert status(srv, "agent")["desiredNumberScheduled"] == 2
    srv.kubectl("taint", "nodes", "node-2", "dedicated=infra:NoExecute")
    poll(lambda: sorted(p["spec"]["nodeName"] for p in pods_of(srv, "agent")) == ["node-0", "node-1"])
    srv.kubectl("taint", "nodes", "node-2", "dedicated-")
    poll(lambda: len(pods_of(srv, "agent")) == 3 and status(srv, "agent").get("numberReady") == 3)
    events = srv.kubectl_json("get", "events", "--field-selector", "involvedObject.name=agent")["items"]
    reasons = {e["reason"] for e in events}
    assert {"SuccessfulCreate", "SuccessfulDelete"} <= reasons
    assert any(e["message"].startswith("Created pod: agent-") and e["source"]["component"] == "daemonset-controller"
               for e in events)


def test_node_selector_daemonset_and_job_on_labelled_node(cluster):
    srv, sim = cluster
    m = ds_manifest("picky")
    m["spec"]["template"]["spec"]["nodeSelector"] = {"nodenickname": "trusty-steve"}
    srv.kubectl("apply", "-f", "-", input=json.dumps(m))
    poll(lambda: status(srv, "picky").get("observedGeneration") == 1)
    assert pods_of(srv, "picky") == [] and status(srv, "picky")["desiredNumberScheduled"] == 0
    srv.kubectl("label", "nodes", "node-1", "nodenickname=trusty-steve")
    pod = poll(lambda: [p for p in pods_of(srv, "picky") if p["status"].get("phase") == "Running"])[0]
    assert pod["spec"]["nodeName"] == "node-1"
    # The book's nodeSelector Job runs on the labelled node and completes.
    srv.kubectl("create", "-f", str(BOOK / "Chapter05/longtask-nodeselector.yaml"))
    job_pod = poll(lambda: srv.kubectl_json("get", "pods", "-l", "job-name=long-task-ns")["items"])[0]
    assert poll(lambda: srv.kubectl_json("get", "pod", job_pod["metadata"]["name"])["spec"].get("nodeName")) \
        == "node-1"
    # Label removed: the daemon pod goes, as upstream (the node no longer matches).
    srv.kubectl("label", "nodes", "node-1", "nodenickname-")
    poll(lambda: pods_of(srv, "picky") == [])
    assert status(srv, "picky").get("numberMisscheduled", 0) == 0


def test_rolling_update_and_history(cluster):
    srv, sim = cluster
    srv.kubectl("apply", "-f", "-", input=json.dumps(ds_manifest("roll")))
    srv.kubectl("rollout", "status", "ds/roll", "--timeout=30s")
    first = {p["metadata"]["name"] for p in pods_of(srv, "roll")}
    srv.kubectl("set", "image", "ds/roll", "agent=fluentd:v2")
    srv.kubectl("rollout", "status", "ds/roll", "--timeout=60s")
    pods = pods_of(srv, "roll")
    assert len(pods) == 3 and not first & {p["metadata"]["name"] for p in pods}
    assert {p["spec"]["containers"][0]["image"] for p in pods} == {"fluentd:v2"}
    revs = sorted(srv.kubectl_json("get", "controllerrevisions", "-l", "app=roll")["items"], key=lambda r: r["revision"])
    assert [r["revision"] for r in revs] == [1, 2]
    assert {p["metadata"]["labels"]["controller-revision-hash"] for p in pods} == \
        {revs[1]["metadata"]["labels"]["controller-revision-hash"]}
    st = status(srv, "roll")
    assert st["observedGeneration"] == 2 and st["updatedNumberScheduled"] == 3
    hist = srv.kubectl("rollout", "history", "ds/roll").stdout
    assert "REVISION" in hist and "1" in hist and "2" in hist
    detail = srv.kubectl("rollout", "history", "ds/roll", "--revision=1").stdout
    assert "fluentd:v1" in detail
    srv.kubectl("rollout", "undo", "ds/roll")
    srv.kubectl("rollout", "status", "ds/roll", "--timeout=60s")
    poll(lambda: {p["spec"]["containers"][0]["image"] for p in pods_of(srv, "roll")} == {"fluentd:v1"})
    revs = sorted(srv.kubectl_json("get", "controllerrevisions", "-l", "app=roll")["items"], key=lambda r: r["revision"])
    assert [r["revision"] for r in revs] == [2, 3]  # the old template became the newest revision


def test_on_delete_and_surge(cluster):
    srv, sim = cluster
    m = ds_manifest("manual", updateStrategy={"type": "OnDelete"})
    srv.kubectl("apply", "-f", "-", input=json.dumps(m))
    poll(lambda: status(srv, "manual").get("numberAvailable") == 3)  # rollout status wants RollingUpdate
    srv.kubectl("set", "image", "ds/manual", "agent=fluentd:v2")
    poll(lambda: status(srv, "manual").get("observedGeneration") == 2)
    time.sleep(0.3)
    assert {p["spec"]["containers"][0]["image"] for p in pods_of(srv, "manual")} == {"fluentd:v1"}
    assert status(srv, "manual").get("updatedNumberScheduled", 0) == 0
    victim = pods_of(srv, "manual")[0]
    srv.kubectl("delete", "pod", victim["metadata"]["name"], "--wait=false")
    poll(lambda: sorted(p["spec"]["containers"][0]["image"] for p in pods_of(srv, "manual")) ==
         ["fluentd:v1", "fluentd:v1", "fluentd:v2"])

    s = ds_manifest("surge", updateStrategy={"type": "RollingUpdate",
                                             "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}})
    srv.kubectl("apply", "-f", "-", input=json.dumps(s))
    srv.kubectl("rollout", "status", "ds/surge", "--timeout=30s")
    srv.kubectl("set", "image", "ds/surge", "agent=fluentd:v2")
    srv.kubectl("rollout", "status", "ds/surge", "--timeout=60s")
    assert {p["spec"]["containers"][0]["image"] for p in pods_of(srv, "surge")} == {"fluentd:v2"}
    assert status(srv, "surge")["numberAvailable"] == 3


def test_status_subresource_shapes(cluster):
    srv, _ = cluster
    api = Api(srv.kubeconfig)
    name = unique("ds")
    code, body, _ = api.request("POST", "/apis/apps/v1/namespaces/default/daemonsets", ds_manifest(name))
    assert code == 201, body
    st = poll(lambda: status(srv, name).get("numberAvailable") == 3 and status(srv, name))
    assert set(st) >= {"currentNumberScheduled", "numberMisscheduled", "desiredNumberScheduled", "numberReady",
                       "observedGeneration", "updatedNumberScheduled", "numberAvailable"}


def test_failed_daemon_pod_is_replaced(cluster):
    srv, _ = cluster
    api = Api(srv.kubeconfig)
    srv.kubectl("apply", "-f", "-", input=json.dumps(ds_manifest("flaky")))
    srv.kubectl("rollout", "status", "ds/flaky", "--timeout=30s")
    victim = sorted(pods_of(srv, "flaky"), key=lambda p: p["spec"]["nodeName"])[0]
    name = victim["metadata"]["name"]
    victim["status"]["phase"] = "Failed"  # as a kubelet that rejected or lost the pod reports it
    code, body, _ = api.request("PUT", f"/api/v1/namespaces/default/pods/{name}/status", victim)
    assert code == 200, body
    poll(lambda: (new := [p for p in pods_of(srv, "flaky") if p["spec"].get("nodeName") == victim["spec"]["nodeName"]
                          and p["metadata"]["name"] != name]) and new[0]["status"].get("phase") == "Running")
    events = srv.kubectl_json("get", "events", "--field-selector", "involvedObject.name=flaky")["items"]
    assert any(e["reason"] == "FailedDaemonPod" and e["message"] == f"Found failed daemon pod default/{name} on node "
               f"{victim['spec']['nodeName']}, will try to kill it" for e in events)


def test_orphaned_pods_are_adopted_again(cluster):
    srv, _ = cluster
    srv.kubectl("apply", "-f", "-", input=json.dumps(ds_manifest("keeper")))
    srv.kubectl("rollout", "status", "ds/keeper", "--timeout=30s")
    before = {p["metadata"]["name"] for p in pods_of(srv, "keeper")}
    srv.kubectl("delete", "ds", "keeper", "--cascade=orphan", "--timeout=30s")
    poll(lambda: all(not p["metadata"].get("ownerReferences") for p in pods_of(srv, "keeper")))
    srv.kubectl("apply", "-f", "-", input=json.dumps(ds_manifest("keeper")))
    uid = srv.kubectl_json("get", "ds", "keeper")["metadata"]["uid"]
    poll(lambda: all((p["metadata"].get("ownerReferences") or [{}])[0].get("uid") == uid
                     for p in pods_of(srv, "keeper")))
    poll(lambda: status(srv, "keeper").get("numberAvailable") == 3)
    assert {p["metadata"]["name"] for p in pods_of(srv, "keeper")} == before  # adopted, not replaced


def test_daemon_pods_go_to_cordoned_nodes(cluster):
    srv, _ = cluster
    srv.kubectl("cordon", "node-0")
    try:
        srv.kubectl("apply", "-f", "-", input=json.dumps(ds_manifest("cordon")))
        srv.kubectl("rollout", "status", "ds/cordon", "--timeout=30s")
        assert sorted(p["spec"]["nodeName"] for p in pods_of(srv, "cordon")) == ["node-0", "node-1", "node-2"]
    finally:
        srv.kubectl("uncordon", "node-0")
