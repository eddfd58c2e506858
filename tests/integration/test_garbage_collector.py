"""The garbage collector on a real server: cascading deletion in the background, in the foreground
and orphaning, as kubectl and the official Python client ask for them, and dangling references.

Owners' pods are made as a workload controller would leave them: the pods exist first without
owners and get the controller reference of their owner (a running ReplicaSet controller adopts
them with the same reference), so the test holds whether the workload controllers run or not.
"""
from __future__ import annotations

import subprocess
import sys
import time
import uuid

import pytest
from kubernetes import client, config
from kubernetes.client import ApiException

from helpers.cluster import ROOT, start_server, unique, wait_for
from helpers.http import Api


@pytest.fixture(scope="module")
def api(server):
    return Api(server.kubeconfig)


@pytest.fixture
def ns(api):
    name = unique("gc")
    status, body, _ = api.request("POST", "/api/v1/namespaces", {"metadata": {"name": name}})
    assert status == 201, body
    yield name
    api.request("DELETE", f"/api/v1/namespaces/{name}")


def pod(name: str, labels: dict, owners: list[dict] | None = None) -> dict:
    meta = {"name": name, "labels": labels}
    if owners:
        meta["ownerReferences"] = owners
    # A scheduler nobody serves keeps the pods unbound, so deleting them takes effect at once.
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta,
            "spec": {"schedulerName": "none", "containers": [{"name": "c", "image": "busybox"}]}}


def ref(obj: dict, controller: bool = True, block: bool = True) -> dict:
    return {"apiVersion": obj["apiVersion"], "kind": obj["kind"], "name": obj["metadata"]["name"],
            "uid": obj["metadata"]["uid"], "controller": controller, "blockOwnerDeletion": block}


def create(api, path: str, obj: dict) -> dict:
    status, body, _ = api.request("POST", path, obj)
    assert status == 201, body
    return body


def pods(api, ns: str, selector: str = "") -> list[dict]:
    q = f"?labelSelector={selector}" if selector else ""
    status, body, _ = api.request("GET", f"/api/v1/namespaces/{ns}/pods{q}")
    assert status == 200, body
    return body["items"]


def exists(api, path: str) -> bool:
    return api.request("GET", path)[0] == 200


def replicaset_with_pods(api, ns: str, name: str, n: int = 2) -> dict:
    labels = {"app": name}
    for i in range(n):
        create(api, f"/api/v1/namespaces/{ns}/pods", pod(f"{name}-{i}", labels))
    rs = create(api, f"/apis/apps/v1/namespaces/{ns}/replicasets", {
        "apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": name},
        "spec": {"replicas": n, "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels},
                              "spec": {"schedulerName": "none", "containers": [{"name": "c", "image": "busybox"}]}}}})
    rs.setdefault("apiVersion", "apps/v1")
    rs.setdefault("kind", "ReplicaSet")
    for i in range(n):
        status, body, _ = api.request("PATCH", f"/api/v1/namespaces/{ns}/pods/{name}-{i}",
                                      {"metadata": {"ownerReferences": [ref(rs)]}},
                                      content_type="application/merge-patch+json")
        assert status == 200, body
    wait_for(lambda: len([p for p in pods(api, ns, f"app={name}")
                          if [r["uid"] for r in p["metadata"].get("ownerReferences", [])] == [rs["metadata"]["uid"]]])
             == n, what="the pods to be owned by the ReplicaSet")
    return rs


def test_kubectl_delete_cascade_background_deletes_the_pods(server, api, ns):
    replicaset_with_pods(api, ns, "bg")
    server.kubectl("delete", "rs", "bg", "-n", ns, "--cascade=background")
    wait_for(lambda: not pods(api, ns, "app=bg"), what="the pods to be collected")


def test_kubectl_delete_cascade_foreground_waits_for_the_pods(server, api, ns):
    rs = replicaset_with_pods(api, ns, "fg")
    # A finalizer of the test's own keeps one pod, so the owner is seen waiting for it.
    status, body, _ = api.request("PATCH", f"/api/v1/namespaces/{ns}/pods/fg-0",
                                  {"metadata": {"finalizers": ["example.com/hold"]}},
                                  content_type="application/merge-patch+json")
    assert status == 200, body
    server.kubectl("delete", "rs", "fg", "-n", ns, "--cascade=foreground", "--wait=false")
    path = f"/apis/apps/v1/namespaces/{ns}/replicasets/fg"
    wait_for(lambda: [p["metadata"]["name"] for p in pods(api, ns, "app=fg")] == ["fg-0"],
             what="the unheld pod to be collected")
    status, owner, _ = api.request("GET", path)
    assert status == 200 and owner["metadata"]["deletionTimestamp"]
    assert owner["metadata"]["finalizers"] == ["foregroundDeletion"]
    held = pods(api, ns, "app=fg")[0]
    assert held["metadata"]["deletionTimestamp"]
    api.request("PATCH", f"/api/v1/namespaces/{ns}/pods/fg-0", {"metadata": {"finalizers": None}},
                content_type="application/merge-patch+json")
    wait_for(lambda: not exists(api, path), what="the owner to go once its dependents are gone")
    assert not pods(api, ns, "app=fg")
    assert rs["metadata"]["uid"]


def test_kubectl_delete_cascade_foreground_with_wait(server, api, ns):
    replicaset_with_pods(api, ns, "fgw")
    server.kubectl("delete", "rs", "fgw", "-n", ns, "--cascade=foreground", "--timeout=20s")
    assert not exists(api, f"/apis/apps/v1/namespaces/{ns}/replicasets/fgw")
    assert not pods(api, ns, "app=fgw")


def test_kubectl_delete_cascade_orphan_keeps_the_pods_without_owner(server, api, ns):
    replicaset_with_pods(api, ns, "or")
    server.kubectl("delete", "rs", "or", "-n", ns, "--cascade=orphan")
    assert not exists(api, f"/apis/apps/v1/namespaces/{ns}/replicasets/or")
    left = pods(api, ns, "app=or")
    assert len(left) == 2
    assert all(not p["metadata"].get("ownerReferences") for p in left)
    assert all(not p["metadata"].get("deletionTimestamp") for p in left)


def test_replication_controller_orphans_by_default_in_core_v1(api, ns):
    labels = {"app": "rc"}
    create(api, f"/api/v1/namespaces/{ns}/pods", pod("rc-0", labels))
    rc = create(api, f"/api/v1/namespaces/{ns}/replicationcontrollers", {
        "apiVersion": "v1", "kind": "ReplicationController", "metadata": {"name": "rc"},
        "spec": {"replicas": 1, "selector": labels,
                 "template": {"metadata": {"labels": labels},
                              "spec": {"schedulerName": "none", "containers": [{"name": "c", "image": "busybox"}]}}}})
    rc.setdefault("apiVersion", "v1")
    rc.setdefault("kind", "ReplicationController")
    api.request("PATCH", f"/api/v1/namespaces/{ns}/pods/rc-0", {"metadata": {"ownerReferences": [ref(rc)]}},
                content_type="application/merge-patch+json")
    wait_for(lambda: len(pods(api, ns, "app=rc")) == 1 and
             pods(api, ns, "app=rc")[0]["metadata"].get("ownerReferences"), what="an owned pod")
    status, body, _ = api.request("DELETE", f"/api/v1/namespaces/{ns}/replicationcontrollers/rc")
    assert status == 200, body
    wait_for(lambda: not exists(api, f"/api/v1/namespaces/{ns}/replicationcontrollers/rc"), what="the RC to go")
    left = pods(api, ns, "app=rc")
    assert [p["metadata"]["name"] for p in left] == ["rc-0"]
    assert not left[0]["metadata"].get("ownerReferences")


def test_dangling_references_get_the_dependent_deleted(api, ns):
    cm_path = f"/api/v1/namespaces/{ns}/configmaps"
    live = create(api, cm_path, {"metadata": {"name": "live"}})
    live.update(apiVersion="v1", kind="ConfigMap")
    never = {"apiVersion": "v1", "kind": "ConfigMap", "name": "ghost", "uid": str(uuid.uuid4())}
    create(api, cm_path, {"metadata": {"name": "orphan-of-ghost", "ownerReferences": [never]}})
    # Same name as a live object but another uid: that owner is gone too.
    stale = {**ref(live), "uid": str(uuid.uuid4())}
    create(api, cm_path, {"metadata": {"name": "stale-uid", "ownerReferences": [stale]}})
    # One live owner keeps the dependent; only the reference to the missing one goes.
    both = create(api, cm_path, {"metadata": {"name": "two-owners", "ownerReferences": [ref(live, False), never]}})
    wait_for(lambda: not exists(api, f"{cm_path}/orphan-of-ghost"), what="the ghost's dependent to go")
    wait_for(lambda: not exists(api, f"{cm_path}/stale-uid"), what="the stale uid's dependent to go")

    def only_live_ref():
        _, obj, _ = api.request("GET", f"{cm_path}/two-owners")
        return [r["uid"] for r in obj["metadata"].get("ownerReferences", [])] == [live["metadata"]["uid"]]
    wait_for(only_live_ref, what="the dangling reference to be removed")
    assert exists(api, f"{cm_path}/live") and both


def test_chain_of_owners_across_kinds_and_cluster_scope(api, ns):
    # A namespaced dependent of a cluster-scoped owner; a second level below it.
    owner = create(api, "/api/v1/namespaces", {"metadata": {"name": unique("gcowner")}})
    owner.update(apiVersion="v1", kind="Namespace")
    cm = create(api, f"/api/v1/namespaces/{ns}/configmaps", {"metadata": {"name": "mid",
                                                                          "ownerReferences": [ref(owner)]}})
    cm.update(apiVersion="v1", kind="ConfigMap")
    create(api, f"/api/v1/namespaces/{ns}/secrets", {"metadata": {"name": "leaf", "ownerReferences": [ref(cm)]}})
    time.sleep(0.3)
    assert exists(api, f"/api/v1/namespaces/{ns}/secrets/leaf")
    api.request("DELETE", f"/api/v1/namespaces/{owner['metadata']['name']}")
    wait_for(lambda: not exists(api, f"/api/v1/namespaces/{ns}/secrets/leaf"), timeout=20, what="the chain to go")
    assert not exists(api, f"/api/v1/namespaces/{ns}/configmaps/mid")


# ---- the official Python client, propagationPolicy=Background ------------------------------

@pytest.fixture(scope="module")
def py(server):
    api_client = config.new_client_from_config(config_file=str(server.kubeconfig))
    yield api_client
    api_client.close()


def _template(labels: dict, restart: str = "Always") -> client.V1PodTemplateSpec:
    return client.V1PodTemplateSpec(
        metadata=client.V1ObjectMeta(labels=labels),
        spec=client.V1PodSpec(scheduler_name="none", restart_policy=restart,
                              containers=[client.V1Container(name="c", image="busybox")]))


def _own(api, ns: str, owner: dict, kind_path: str, name: str, obj: dict) -> dict:
    obj["metadata"]["name"] = name
    obj["metadata"]["ownerReferences"] = [ref(owner)]
    return create(api, f"{kind_path}", obj)


def test_python_client_background_deletes_deployment_replicasets_and_pods(api, py, ns):
    apps = client.AppsV1Api(py)
    labels = {"app": "web"}
    dep = apps.create_namespaced_deployment(ns, client.V1Deployment(
        metadata=client.V1ObjectMeta(name="web"),
        spec=client.V1DeploymentSpec(replicas=1, selector=client.V1LabelSelector(match_labels=labels),
                                     template=_template(labels))))
    owner = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "uid": dep.metadata.uid}}
    rs = _own(api, ns, owner, f"/apis/apps/v1/namespaces/{ns}/replicasets", "web-manual", {
        "apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"labels": {**labels, "pod-template-hash": "m"}},
        "spec": {"replicas": 1, "selector": {"matchLabels": {**labels, "pod-template-hash": "m"}},
                 "template": {"metadata": {"labels": {**labels, "pod-template-hash": "m"}},
                              "spec": {"schedulerName": "none", "containers": [{"name": "c", "image": "busybox"}]}}}})
    rs.update(apiVersion="apps/v1", kind="ReplicaSet")
    _own(api, ns, rs, f"/api/v1/namespaces/{ns}/pods", "web-manual-pod", pod("", {**labels, "pod-template-hash": "m"}))
    apps.delete_namespaced_deployment("web", ns, propagation_policy="Background")
    wait_for(lambda: not pods(api, ns) and not api.request(
        "GET", f"/apis/apps/v1/namespaces/{ns}/replicasets")[1]["items"], timeout=20,
        what="the deployment's replica sets and pods to go")


def test_python_client_background_deletes_daemonset_and_job_pods(api, py, ns):
    apps, batch = client.AppsV1Api(py), client.BatchV1Api(py)
    ds = apps.create_namespaced_daemon_set(ns, client.V1DaemonSet(
        metadata=client.V1ObjectMeta(name="agent"),
        spec=client.V1DaemonSetSpec(selector=client.V1LabelSelector(match_labels={"app": "agent"}),
                                    template=_template({"app": "agent"}))))
    job = batch.create_namespaced_job(ns, client.V1Job(
        metadata=client.V1ObjectMeta(name="work"),
        spec=client.V1JobSpec(template=_template({"app": "work"}, "Never"), manual_selector=True,
                              selector=client.V1LabelSelector(match_labels={"app": "work"}))))
    for owner, kind, version in ((ds, "DaemonSet", "apps/v1"), (job, "Job", "batch/v1")):
        o = {"apiVersion": version, "kind": kind, "metadata": {"name": owner.metadata.name, "uid": owner.metadata.uid}}
        # Labels the owner selects: a workload controller releases the pods it does not select.
        _own(api, ns, o, f"/api/v1/namespaces/{ns}/pods", f"{owner.metadata.name}-manual",
             pod("", {"app": owner.metadata.name}))
    apps.delete_namespaced_daemon_set("agent", ns, propagation_policy="Background")
    batch.delete_namespaced_job("work", ns, propagation_policy="Background")
    wait_for(lambda: not pods(api, ns), timeout=20, what="the daemon set's and job's pods to go")
    with pytest.raises(ApiException) as e:
        batch.read_namespaced_job("work", ns)
    assert e.value.status == 404


def test_many_dependents_are_collected_quickly(api, py, ns):
    owner = create(api, f"/api/v1/namespaces/{ns}/configmaps", {"metadata": {"name": "many"}})
    owner.update(apiVersion="v1", kind="ConfigMap")
    n = 300
    core = client.CoreV1Api(py)  # one kept-alive connection for the bulk creation
    for i in range(n):
        core.create_namespaced_pod(ns, pod(f"m-{i}", {"app": "many"}, [ref(owner, False, False)]))
    t0 = time.monotonic()
    api.request("DELETE", f"/api/v1/namespaces/{ns}/configmaps/many")
    wait_for(lambda: not api.request("GET", f"/api/v1/namespaces/{ns}/pods?limit=1")[1]["items"], timeout=30,
             what=f"{n} dependents to go")
    elapsed = time.monotonic() - t0
    print(f"{n} dependents collected in {elapsed:.2f}s")
    assert elapsed < 20, elapsed  # ~3 s on an idle machine; bench/bench_garbage_collector.py measures it


# ---- ttl-after-finished ----------------------------------------------------------------------

def test_finished_jobs_are_deleted_after_their_ttl(api, ns):
    # managedBy another controller keeps the Job controller out: the test reports the Job finished.
    jobs = f"/apis/batch/v1/namespaces/{ns}/jobs"
    for name, ttl in (("short", 1), ("long", 600), ("none", None)):
        spec = {"managedBy": "example.com/test", "template": {"spec": {
            "restartPolicy": "Never", "schedulerName": "none", "containers": [{"name": "c", "image": "busybox"}]}}}
        if ttl is not None:
            spec["ttlSecondsAfterFinished"] = ttl
        create(api, jobs, {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name}, "spec": spec})
        job = create(api, f"/api/v1/namespaces/{ns}/pods", pod(f"{name}-pod", {"job": name}))
        assert job
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        for _ in range(10):
            _, current, _ = api.request("GET", f"{jobs}/{name}")
            current["status"] = {"startTime": now, "completionTime": now, "succeeded": 1, "conditions": [
                {"type": "SuccessCriteriaMet", "status": "True", "lastTransitionTime": now},
                {"type": "Complete", "status": "True", "lastTransitionTime": now}]}
            status, body, _ = api.request("PUT", f"{jobs}/{name}/status", current)
            if status == 200:
                break
            assert status == 409, body
        _, owner, _ = api.request("GET", f"{jobs}/{name}")
        owner.update(apiVersion="batch/v1", kind="Job")
        api.request("PATCH", f"/api/v1/namespaces/{ns}/pods/{name}-pod",
                    {"metadata": {"ownerReferences": [ref(owner)]}}, content_type="application/merge-patch+json")
    t0 = time.monotonic()
    wait_for(lambda: not exists(api, f"{jobs}/short"), timeout=10, what="the finished job to be cleaned up")
    assert time.monotonic() - t0 >= 0.0
    wait_for(lambda: not exists(api, f"/api/v1/namespaces/{ns}/pods/short-pod"), what="its pod to go")
    assert exists(api, f"{jobs}/long") and exists(api, f"{jobs}/none")
    assert exists(api, f"/api/v1/namespaces/{ns}/pods/long-pod")


# ---- end to end: real workload controllers, scheduler and simulated nodes --------------------

def test_kubectl_deployment_cascades_on_simulated_nodes(server, api, ns, simulated_nodes):
    server.kubectl("create", "deployment", "web", "--image=busybox", "--replicas=3", "-n", ns)
    server.kubectl("rollout", "status", "deployment/web", "-n", ns, "--timeout=30s")
    running = pods(api, ns, "app=web")
    assert len(running) == 3 and all(p["spec"].get("nodeName") for p in running)
    # An RS deleted in the foreground waits for its running pods; the Deployment makes a new one.
    rs = api.request("GET", f"/apis/apps/v1/namespaces/{ns}/replicasets")[1]["items"][0]["metadata"]["name"]
    server.kubectl("delete", "rs", rs, "-n", ns, "--cascade=foreground", "--timeout=30s")
    assert not {p["metadata"]["uid"] for p in pods(api, ns, "app=web")} & {p["metadata"]["uid"] for p in running}
    server.kubectl("delete", "deployment", "web", "-n", ns, "--timeout=30s")
    wait_for(lambda: not pods(api, ns, "app=web") and
             not api.request("GET", f"/apis/apps/v1/namespaces/{ns}/replicasets")[1]["items"], timeout=30,
             what="the deployment's replica sets and pods to go")


def test_kubectl_delete_deployment_in_the_foreground_on_simulated_nodes(server, api, ns, simulated_nodes):
    server.kubectl("create", "deployment", "fg", "--image=busybox", "--replicas=2", "-n", ns)
    server.kubectl("rollout", "status", "deployment/fg", "-n", ns, "--timeout=30s")
    # kubectl waits until the Deployment is gone, which is after its ReplicaSet and pods.
    server.kubectl("delete", "deployment", "fg", "-n", ns, "--cascade=foreground", "--timeout=30s")
    assert not pods(api, ns, "app=fg")
    assert not api.request("GET", f"/apis/apps/v1/namespaces/{ns}/replicasets")[1]["items"]


# ---- a collector started late finds the work that piled up -----------------------------------

def test_a_collector_started_later_completes_what_waited(tmp_path):
    srv = start_server(tmp_path, ["--disable-controller-manager", "--disable-scheduler"])
    cm_proc = None
    try:
        api = Api(srv.kubeconfig)
        ns = unique("late")
        create(api, "/api/v1/namespaces", {"metadata": {"name": ns}})
        cms = f"/api/v1/namespaces/{ns}/configmaps"
        gone = create(api, cms, {"metadata": {"name": "gone"}})
        gone.update(apiVersion="v1", kind="ConfigMap")
        create(api, cms, {"metadata": {"name": "dep-of-gone", "ownerReferences": [ref(gone)]}})
        api.request("DELETE", f"{cms}/gone")
        fg = create(api, cms, {"metadata": {"name": "fg"}})
        fg.update(apiVersion="v1", kind="ConfigMap")
        create(api, cms, {"metadata": {"name": "dep-of-fg", "ownerReferences": [ref(fg)]}})
        api.request("DELETE", f"{cms}/fg", {"kind": "DeleteOptions", "apiVersion": "v1",
                                            "propagationPolicy": "Foreground"})
        orphaner = create(api, cms, {"metadata": {"name": "orphaner"}})
        orphaner.update(apiVersion="v1", kind="ConfigMap")
        create(api, cms, {"metadata": {"name": "dep-of-orphaner", "ownerReferences": [ref(orphaner)]}})
        api.request("DELETE", f"{cms}/orphaner", {"kind": "DeleteOptions", "apiVersion": "v1",
                                                  "propagationPolicy": "Orphan"})
        time.sleep(0.3)  # nothing collects without a controller manager
        assert exists(api, f"{cms}/dep-of-gone") and exists(api, f"{cms}/fg") and exists(api, f"{cms}/orphaner")
        cm_proc = subprocess.Popen([sys.executable, "-m", "ketch.cli.main", "controller-manager", "--kubeconfig",
                                    str(srv.kubeconfig), "--no-leader-elect", "--controllers=garbagecollector"],
                                   cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: not exists(api, f"{cms}/dep-of-gone"), what="the dependent of a gone owner to go")
        wait_for(lambda: not exists(api, f"{cms}/fg") and not exists(api, f"{cms}/dep-of-fg"),
                 what="the foreground deletion to finish")
        wait_for(lambda: not exists(api, f"{cms}/orphaner"), what="the orphaning to finish")
        _, kept, _ = api.request("GET", f"{cms}/dep-of-orphaner")
        assert not kept["metadata"].get("ownerReferences")
    finally:
        if cm_proc is not None:
            cm_proc.terminate()
            cm_proc.wait(10)
        srv.stop()
