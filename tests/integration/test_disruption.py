"""PodDisruptionBudget status from the disruption controller, and evictions that respect it.

Pods report Running and Ready through pods/status, as a kubelet would, so the budget's arithmetic
is the only thing under test.
"""
from __future__ import annotations

import datetime
import time

import pytest

from helpers.cluster import unique, wait_for
from helpers.http import Api

MERGE = "application/merge-patch+json"


@pytest.fixture(scope="module")
def api(server):
    return Api(server.kubeconfig)


@pytest.fixture
def ns(api):
    name = unique("pdb")
    status, body, _ = api.request("POST", "/api/v1/namespaces", {"metadata": {"name": name}})
    assert status == 201, body
    yield name
    api.request("DELETE", f"/api/v1/namespaces/{name}")


def running_pod(api, ns: str, name: str, labels: dict, ready: bool = True, owners: list | None = None) -> dict:
    meta = {"name": name, "labels": labels}
    if owners:
        meta["ownerReferences"] = owners
    status, pod, _ = api.request("POST", f"/api/v1/namespaces/{ns}/pods", {
        "apiVersion": "v1", "kind": "Pod", "metadata": meta,
        "spec": {"schedulerName": "none", "containers": [{"name": "c", "image": "busybox"}]}})
    assert status == 201, pod
    set_ready(api, ns, name, ready)
    return pod


def set_ready(api, ns: str, name: str, ready: bool) -> None:
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    _, pod, _ = api.request("GET", f"/api/v1/namespaces/{ns}/pods/{name}")
    pod["status"]["phase"] = "Running"
    pod["status"]["conditions"] = [{"type": "Ready", "status": "True" if ready else "False",
                                    "lastTransitionTime": now}]
    status, body, _ = api.request("PUT", f"/api/v1/namespaces/{ns}/pods/{name}/status", pod)
    assert status == 200, body


def pdb(api, ns: str, name: str, labels: dict, **spec) -> dict:
    status, body, _ = api.request("POST", f"/apis/policy/v1/namespaces/{ns}/poddisruptionbudgets", {
        "apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": name},
        "spec": {"selector": {"matchLabels": labels}, **spec}})
    assert status == 201, body
    return body


def pdb_status(api, ns: str, name: str) -> dict:
    _, body, _ = api.request("GET", f"/apis/policy/v1/namespaces/{ns}/poddisruptionbudgets/{name}")
    return body.get("status") or {}


def settled(api, ns: str, name: str, **want):
    def check():
        st = pdb_status(api, ns, name)
        return st if all(st.get(k) == v for k, v in want.items()) else None
    return wait_for(check, what=f"pdb status {want}")


def evict(api, ns: str, name: str):
    return api.request("POST", f"/api/v1/namespaces/{ns}/pods/{name}/eviction", {
        "apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": name, "namespace": ns}})


def test_min_available_status_and_evictions(server, api, ns):
    labels = {"app": "web"}
    for i in range(3):
        running_pod(api, ns, f"web-{i}", labels)
    budget = pdb(api, ns, "web", labels, minAvailable=2)
    st = settled(api, ns, "web", currentHealthy=3, desiredHealthy=2, expectedPods=3, disruptionsAllowed=1,
                 observedGeneration=budget["metadata"]["generation"])
    cond = st["conditions"][0]
    assert (cond["type"], cond["status"], cond["reason"]) == ("DisruptionAllowed", "True", "SufficientPods")
    assert cond["observedGeneration"] == budget["metadata"]["generation"] and cond["lastTransitionTime"]
    out = server.kubectl("get", "pdb", "web", "-n", ns).stdout.splitlines()
    assert out[0].split() == ["NAME", "MIN", "AVAILABLE", "MAX", "UNAVAILABLE", "ALLOWED", "DISRUPTIONS", "AGE"]
    assert out[1].split()[:4] == ["web", "2", "N/A", "1"]

    # One eviction is allowed: the pod goes and the budget records it until the pod is gone.
    status, body, _ = evict(api, ns, "web-0")
    assert status == 201, body
    assert api.request("GET", f"/api/v1/namespaces/{ns}/pods/web-0")[0] == 404
    st = settled(api, ns, "web", currentHealthy=2, disruptionsAllowed=0, expectedPods=2)
    assert not st.get("disruptedPods")
    cond = st["conditions"][0]
    assert (cond["status"], cond["reason"]) == ("False", "InsufficientPods")

    # The next one would break the budget: 429 with upstream's message and cause.
    status, body, _ = evict(api, ns, "web-1")
    assert status == 429, body
    assert body["reason"] == "TooManyRequests"
    assert body["message"] == "Cannot evict pod as it would violate the pod's disruption budget."
    assert body["details"]["causes"] == [{"reason": "DisruptionBudget",
                                          "message": "The disruption budget web needs 2 healthy pods and has 2 "
                                                     "currently"}]
    assert api.request("GET", f"/api/v1/namespaces/{ns}/pods/web-1")[0] == 200
    out = server.kubectl("get", "pdb", "web", "-n", ns).stdout.splitlines()
    assert out[1].split()[3] == "0"

    # A pod that is not Running (Pending) is evicted whatever the budget says.
    api.request("POST", f"/api/v1/namespaces/{ns}/pods", {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "pending", "labels": labels},
        "spec": {"schedulerName": "none", "containers": [{"name": "c", "image": "busybox"}]}})
    assert evict(api, ns, "pending")[0] == 201


def test_a_disruption_is_forgotten_after_two_minutes(api, ns):
    labels = {"app": "old"}
    for i in range(2):
        running_pod(api, ns, f"old-{i}", labels)
    pdb(api, ns, "old", labels, minAvailable=1)
    settled(api, ns, "old", currentHealthy=2, disruptionsAllowed=1)
    _, current, _ = api.request("GET", f"/apis/policy/v1/namespaces/{ns}/poddisruptionbudgets/old")
    long_ago = (datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=3)).strftime(
        "%Y-%m-%dT%H:%M:%SZ")
    recent = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    current["status"]["disruptedPods"] = {"old-0": long_ago, "old-1": recent}
    status, body, _ = api.request("PUT", f"/apis/policy/v1/namespaces/{ns}/poddisruptionbudgets/old/status", current)
    assert status == 200, body
    # old-0's eviction is long overdue and dropped; old-1's still counts against the healthy pods.
    st = settled(api, ns, "old", currentHealthy=1, disruptionsAllowed=0)
    assert st["disruptedPods"] == {"old-1": recent}


def test_percentages_count_the_owning_controllers_scale(api, ns):
    labels = {"app": "rs"}
    for i in range(3):
        running_pod(api, ns, f"rs-{i}", labels)
    status, rs, _ = api.request("POST", f"/apis/apps/v1/namespaces/{ns}/replicasets", {
        "apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "rs"},
        "spec": {"replicas": 3, "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels},
                              "spec": {"schedulerName": "none", "containers": [{"name": "c", "image": "busybox"}]}}}})
    assert status == 201, rs
    ref = {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": rs["metadata"]["uid"],
           "controller": True, "blockOwnerDeletion": True}
    for i in range(3):  # as the ReplicaSet controller adopts them
        api.request("PATCH", f"/api/v1/namespaces/{ns}/pods/rs-{i}", {"metadata": {"ownerReferences": [ref]}},
                    content_type=MERGE)
    pdb(api, ns, "half", labels, minAvailable="50%")
    settled(api, ns, "half", expectedPods=3, desiredHealthy=2, currentHealthy=3, disruptionsAllowed=1)
    # Scaling the owner changes what is expected.
    api.request("PATCH", f"/apis/apps/v1/namespaces/{ns}/replicasets/rs", {"spec": {"replicas": 6}},
                content_type=MERGE)
    settled(api, ns, "half", expectedPods=6, desiredHealthy=3)


def test_unmanaged_pods_do_not_count_for_max_unavailable(api, ns):
    labels = {"app": "bare"}
    for i in range(2):
        running_pod(api, ns, f"bare-{i}", labels)
    pdb(api, ns, "bare", labels, maxUnavailable="50%")
    settled(api, ns, "bare", expectedPods=0, desiredHealthy=0, currentHealthy=2, disruptionsAllowed=0)

    def warned():
        _, events, _ = api.request("GET", f"/api/v1/namespaces/{ns}/events")
        return [e for e in events["items"] if e["reason"] == "UnmanagedPods"]
    event = wait_for(warned, what="the UnmanagedPods event")[0]
    assert event["type"] == "Warning" and event["involvedObject"]["name"] == "bare"
    assert 'set ".spec.minAvailable" field of the PDB to an integer value' in event["message"]


def test_a_controller_without_scale_fails_safe(api, ns):
    status, cm, _ = api.request("POST", f"/api/v1/namespaces/{ns}/configmaps", {"metadata": {"name": "boss"}})
    assert status == 201
    owner = {"apiVersion": "v1", "kind": "ConfigMap", "name": "boss", "uid": cm["metadata"]["uid"],
             "controller": True}
    running_pod(api, ns, "owned", {"app": "odd"}, owners=[owner])
    pdb(api, ns, "odd", {"app": "odd"}, minAvailable="10%")

    def failed():
        conds = pdb_status(api, ns, "odd").get("conditions") or []
        return conds and conds[0]["reason"] == "SyncFailed" and conds[0]
    cond = wait_for(failed, what="the SyncFailed condition")
    assert cond["status"] == "False" and cond["message"] == "configmaps does not implement the scale subresource"
    assert pdb_status(api, ns, "odd")["disruptionsAllowed"] == 0


def test_empty_selector_covers_every_pod_and_unready_pods_may_go(api, ns):
    running_pod(api, ns, "a", {"x": "1"})
    running_pod(api, ns, "b", {"y": "2"})
    running_pod(api, ns, "sick", {"z": "3"}, ready=False)
    status, body, _ = api.request("POST", f"/apis/policy/v1/namespaces/{ns}/poddisruptionbudgets", {
        "apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "all"},
        "spec": {"selector": {}, "minAvailable": 2}})
    assert status == 201, body
    settled(api, ns, "all", expectedPods=3, currentHealthy=2, desiredHealthy=2, disruptionsAllowed=0)
    assert evict(api, ns, "a")[0] == 429
    # An unready pod does not count as healthy, so evicting it breaks nothing.
    assert evict(api, ns, "sick")[0] == 201


def test_kubectl_drain_respects_the_budget(fresh_server, simulator):
    srv = fresh_server
    sim = simulator(srv, nodes=2, name_prefix="drain-")
    ns = unique("drain")
    srv.kubectl("create", "namespace", ns)
    srv.kubectl("create", "deployment", "web", "--image=busybox", "--replicas=2", "-n", ns)
    srv.kubectl("rollout", "status", "deployment/web", "-n", ns, "--timeout=30s")
    srv.kubectl("create", "pdb", "web", "--selector=app=web", "--min-available=2", "-n", ns)
    api = Api(srv.kubeconfig)
    settled(api, ns, "web", currentHealthy=2, expectedPods=2, disruptionsAllowed=0)
    node = srv.kubectl_json("get", "pods", "-n", ns)["items"][0]["spec"]["nodeName"]
    assert node in sim.node_names
    refused = srv.kubectl("drain", node, "--ignore-daemonsets", "--timeout=3s", check=False)
    assert refused.returncode != 0
    assert "Cannot evict pod as it would violate the pod's disruption budget." in refused.stderr
    assert len(srv.kubectl_json("get", "pods", "-n", ns)["items"]) == 2
    srv.kubectl("patch", "pdb", "web", "-n", ns, "--type=merge", "-p", '{"spec":{"minAvailable":1}}')
    settled(api, ns, "web", desiredHealthy=1, disruptionsAllowed=1)
    done = srv.kubectl("drain", node, "--ignore-daemonsets", "--timeout=30s")
    assert "evicted" in done.stdout
    srv.kubectl("rollout", "status", "deployment/web", "-n", ns, "--timeout=30s")
    assert all(p["spec"]["nodeName"] != node for p in srv.kubectl_json("get", "pods", "-n", ns)["items"])


def test_an_evicted_pod_is_marked_as_a_disruption_target(api, ns):
    running_pod(api, ns, "bound", {"app": "bound"})
    status, body, _ = api.request("POST", f"/api/v1/namespaces/{ns}/pods/bound/binding", {
        "apiVersion": "v1", "kind": "Binding", "metadata": {"name": "bound"}, "target": {"kind": "Node", "name": "away"}})
    assert status == 201, body
    assert evict(api, ns, "bound")[0] == 201
    _, pod, _ = api.request("GET", f"/api/v1/namespaces/{ns}/pods/bound")
    assert pod["metadata"]["deletionTimestamp"]  # bound: it terminates gracefully, marked meanwhile
    cond = [c for c in pod["status"]["conditions"] if c["type"] == "DisruptionTarget"]
    assert cond and (cond[0]["status"], cond[0]["reason"], cond[0]["message"]) == (
        "True", "EvictionByEvictionAPI", "Eviction API: evicting")
    api.request("DELETE", f"/api/v1/namespaces/{ns}/pods/bound", {"kind": "DeleteOptions", "apiVersion": "v1",
                                                                   "gracePeriodSeconds": 0})


def test_a_stale_disruption_target_condition_is_reset(api, ns):
    running_pod(api, ns, "kept", {"app": "kept"})
    _, pod, _ = api.request("GET", f"/api/v1/namespaces/{ns}/pods/kept")
    long_ago = (datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=3)).strftime(
        "%Y-%m-%dT%H:%M:%SZ")
    pod["status"]["conditions"].append({"type": "DisruptionTarget", "status": "True", "lastTransitionTime": long_ago,
                                        "reason": "EvictionByEvictionAPI", "message": "Eviction API: evicting"})
    status, body, _ = api.request("PUT", f"/api/v1/namespaces/{ns}/pods/kept/status", pod)
    assert status == 200, body

    def reset():
        _, current, _ = api.request("GET", f"/api/v1/namespaces/{ns}/pods/kept")
        cond = [c for c in current["status"]["conditions"] if c["type"] == "DisruptionTarget"]
        return cond and cond[0]["status"] == "False" and cond[0]
    cond = wait_for(reset, what="the stale condition to be reset")
    assert "reason" not in cond
