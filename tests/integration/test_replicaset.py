"""The ReplicaSet and ReplicationController controllers on a real server, driven with real kubectl
and raw HTTP: replica counts, adoption and release through ownerReferences, upstream's events,
failed creations, which pods a scale-down picks, status fields and minReadySeconds.

Pods here name a scheduler nobody runs (`schedulerName: none`), so they stay unbound whatever else
runs on the session server; where a test needs pods on a node or Ready, it binds them and writes
their status through the API as a kubelet would.
"""
from __future__ import annotations

import json
import time

import pytest

from helpers.cluster import BOOK, unique, wait_for
from helpers.http import Api


@pytest.fixture(scope="module")
def api(server):
    return Api(server.kubeconfig)


@pytest.fixture
def ns(server, api):
    name = unique("rs")
    server.kubectl("create", "namespace", name)
    yield name
    api.request("DELETE", f"/api/v1/namespaces/{name}")


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def replicaset(name: str, replicas: int, labels: dict, **spec) -> dict:
    return {"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"schedulerName": "none",
                                           "containers": [{"name": "c", "image": "busybox"}]}},
                     **spec}}


def create(api: Api, ns: str, obj: dict) -> dict:
    group = "/api/v1" if obj["apiVersion"] == "v1" else f"/apis/{obj['apiVersion']}"
    plural = {"ReplicaSet": "replicasets", "ReplicationController": "replicationcontrollers", "Pod": "pods"}[obj["kind"]]
    status, body, _ = api.request("POST", f"{group}/namespaces/{ns}/{plural}", obj)
    assert status == 201, body
    return body


def pods(api: Api, ns: str, selector: str = "", active: bool = True) -> list[dict]:
    status, body, _ = api.request("GET", f"/api/v1/namespaces/{ns}/pods?labelSelector={selector}")
    assert status == 200, body
    items = body["items"]
    return [p for p in items if not p["metadata"].get("deletionTimestamp")] if active else items


def events(api: Api, ns: str, name: str) -> list[dict]:
    _, body, _ = api.request("GET", f"/api/v1/namespaces/{ns}/events?fieldSelector=involvedObject.name={name}")
    return body["items"]


def bind(api: Api, ns: str, pod: str, node: str) -> None:
    status, body, _ = api.request("POST", f"/api/v1/namespaces/{ns}/pods/{pod}/binding",
                                  {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": pod},
                                   "target": {"kind": "Node", "name": node}})
    assert status == 201, body


def set_status(api: Api, ns: str, pod: str, phase: str, ready: bool, restarts: int = 0) -> None:
    _, current, _ = api.request("GET", f"/api/v1/namespaces/{ns}/pods/{pod}")
    t = now()
    current["status"] = {
        "phase": phase,
        "conditions": [{"type": "Ready", "status": "True" if ready else "False", "lastTransitionTime": t}],
        "containerStatuses": [{"name": "c", "image": "busybox", "imageID": "", "ready": ready,
                               "restartCount": restarts, "state": {"running": {"startedAt": t}}}],
    }
    status, body, _ = api.request("PUT", f"/api/v1/namespaces/{ns}/pods/{pod}/status", current)
    assert status == 200, body


def rs_status(server, ns: str, name: str, kind: str = "rs") -> dict:
    return server.kubectl_json("get", kind, name, "-n", ns).get("status", {})


def test_book_rc_creates_its_pods_with_events_and_status(server, api, ns):
    server.kubectl("create", "-n", ns, "-f", str(BOOK / "Chapter02" / "nodejs-controller.yaml"))
    created = wait_for(lambda: len(pods(api, ns, "name=node-js")) == 3 and pods(api, ns, "name=node-js"),
                       what="three pods")
    for p in created:
        assert p["metadata"]["generateName"] == "node-js-"
        [ref] = p["metadata"]["ownerReferences"]
        assert ref["kind"] == "ReplicationController" and ref["apiVersion"] == "v1" and ref["name"] == "node-js"
        assert ref["controller"] is True and ref["blockOwnerDeletion"] is True
    status = wait_for(lambda: (s := rs_status(server, ns, "node-js", "rc")).get("observedGeneration") == 1
                      and s.get("replicas") == 3 and s, what="rc status")
    assert status["fullyLabeledReplicas"] == 3
    # The session's simulated nodes run the pods: the RC reports them ready, as the book shows.
    wait_for(lambda: rs_status(server, ns, "node-js", "rc").get("readyReplicas") == 3, what="ready pods")
    out = server.kubectl("get", "rc", "node-js", "-n", ns).stdout.split("\n")[1].split()
    assert out[:4] == ["node-js", "3", "3", "3"]
    wait_for(lambda: len([e for e in events(api, ns, "node-js") if e["reason"] == "SuccessfulCreate"]) == 3,
             what="three SuccessfulCreate events")
    messages = sorted(e["message"] for e in events(api, ns, "node-js"))
    assert messages == sorted(f"Created pod: {p['metadata']['name']}" for p in created)
    assert {e["source"]["component"] for e in events(api, ns, "node-js")} == {"replication-controller"}
    described = server.kubectl("describe", "rc", "node-js", "-n", ns).stdout
    assert "Pods Status:  3 Running / 0 Waiting / 0 Succeeded / 0 Failed" in described
    assert "SuccessfulCreate" in described


def test_pods_deleted_by_label_are_replaced(server, api, ns):
    server.kubectl("create", "-n", ns, "-f", str(BOOK / "Chapter02" / "nodejs-controller.yaml"))
    first = {p["metadata"]["name"] for p in wait_for(lambda: len(pods(api, ns)) == 3 and pods(api, ns))}
    server.kubectl("delete", "pods", "-l", "name=node-js", "-n", ns, "--wait=false")
    fresh = wait_for(lambda: len(now_ := pods(api, ns)) == 3 and not first & {p["metadata"]["name"] for p in now_}
                     and now_, what="three replacements")
    assert len({p["metadata"]["name"] for p in fresh}) == 3


def test_scale_up_and_down_with_kubectl(server, api, ns):
    server.kubectl("create", "-n", ns, "-f", str(BOOK / "Chapter02" / "nodejs-controller.yaml"))
    wait_for(lambda: len(pods(api, ns)) == 3)
    server.kubectl("scale", "rc", "node-js", "--replicas=5", "-n", ns)
    wait_for(lambda: len(pods(api, ns)) == 5, what="five pods")
    server.kubectl("scale", "rc", "node-js", "--replicas=1", "-n", ns)
    wait_for(lambda: len(pods(api, ns)) == 1, what="one pod")
    wait_for(lambda: rs_status(server, ns, "node-js", "rc").get("replicas") == 1)
    deleted = [e for e in events(api, ns, "node-js") if e["reason"] == "SuccessfulDelete"]
    wait_for(lambda: len([e for e in events(api, ns, "node-js") if e["reason"] == "SuccessfulDelete"]) == 4)
    deleted = [e for e in events(api, ns, "node-js") if e["reason"] == "SuccessfulDelete"]
    assert all(e["message"].startswith("Deleted pod: node-js-") for e in deleted)
    # Many pods at once: exactly as many as asked, none twice (expectations hold back the next sync).
    server.kubectl("scale", "rc", "node-js", "--replicas=60", "-n", ns)
    wait_for(lambda: len(pods(api, ns)) == 60, what="sixty pods")
    time.sleep(0.5)
    assert len(pods(api, ns)) == 60


def test_book_replicaset_set_based_selector(server, api, ns):
    server.kubectl("create", "-n", ns, "-f", str(BOOK / "Chapter02" / "nodejs-labels-replicaset.yaml"))
    wait_for(lambda: len(pods(api, ns)) == 3, what="three pods")
    [p] = pods(api, ns)[:1]
    [ref] = p["metadata"]["ownerReferences"]
    assert (ref["apiVersion"], ref["kind"], ref["name"]) == ("apps/v1", "ReplicaSet", "node-js-rs")
    status = wait_for(lambda: (s := rs_status(server, ns, "node-js-rs")).get("replicas") == 3 and s)
    assert status["fullyLabeledReplicas"] == 3
    described = server.kubectl("describe", "rs", "node-js-rs", "-n", ns).stdout
    assert "replicaset-controller  Created pod: node-js-rs-" in described


def test_orphans_are_adopted_and_mismatching_pods_released(server, api, ns):
    labels = {"app": "adopt"}
    orphan = create(api, ns, {"apiVersion": "v1", "kind": "Pod",
                              "metadata": {"name": "orphan", "labels": labels},
                              "spec": {"schedulerName": "none", "containers": [{"name": "c", "image": "busybox"}]}})
    rs = create(api, ns, replicaset("adopter", 2, labels))
    wait_for(lambda: len(pods(api, ns)) == 2, what="two pods")
    time.sleep(0.3)
    assert len(pods(api, ns)) == 2  # the orphan counted: only one was created
    _, adopted, _ = api.request("GET", f"/api/v1/namespaces/{ns}/pods/orphan")
    assert adopted["metadata"]["uid"] == orphan["metadata"]["uid"]
    [ref] = adopted["metadata"]["ownerReferences"]
    assert ref["uid"] == rs["metadata"]["uid"] and ref["controller"] is True

    # Relabelled out of the selector: released (the reference goes), and replaced.
    server.kubectl("label", "pod", "orphan", "app=elsewhere", "--overwrite", "-n", ns)

    def released():
        _, p, _ = api.request("GET", f"/api/v1/namespaces/{ns}/pods/orphan")
        return not p["metadata"].get("ownerReferences")
    wait_for(released, what="release")
    wait_for(lambda: len(pods(api, ns, "app=adopt")) == 2, what="a replacement")

    # A pod another controller owns is left alone (an owner no workload controller manages).
    status, someone, _ = api.request("POST", f"/api/v1/namespaces/{ns}/configmaps", {"metadata": {"name": "someone"}})
    assert status == 201, someone
    other = {"apiVersion": "v1", "kind": "ConfigMap", "name": "someone", "uid": someone["metadata"]["uid"],
             "controller": True}
    create(api, ns, {"apiVersion": "v1", "kind": "Pod",
                     "metadata": {"name": "owned-elsewhere", "labels": labels, "ownerReferences": [other]},
                     "spec": {"schedulerName": "none", "containers": [{"name": "c", "image": "busybox"}]}})
    time.sleep(0.5)
    _, p, _ = api.request("GET", f"/api/v1/namespaces/{ns}/pods/owned-elsewhere")
    assert p["metadata"]["ownerReferences"] == [other]
    assert len([q for q in pods(api, ns, "app=adopt") if q["metadata"]["name"] != "owned-elsewhere"]) == 2


def test_failed_creations_warn_and_set_replica_failure(server, api, ns):
    rs = replicaset("no-account", 3, {"app": "fail"})
    rs["spec"]["template"]["spec"]["serviceAccountName"] = "missing"
    create(api, ns, rs)

    def failures():
        return [e for e in events(api, ns, "no-account") if e["reason"] == "FailedCreate"]
    [event] = wait_for(failures, what="FailedCreate")[:1]
    assert event["type"] == "Warning"
    assert event["message"].startswith('Error creating: pods "no-account-')
    assert event["message"].endswith('is forbidden: error looking up service account '
                                     f'{ns}/missing: serviceaccount "missing" not found')
    status = wait_for(lambda: (s := rs_status(server, ns, "no-account")).get("conditions") and s)
    [cond] = status["conditions"]
    assert (cond["type"], cond["status"], cond["reason"]) == ("ReplicaFailure", "True", "FailedCreate")
    assert "serviceaccount \"missing\" not found" in cond["message"]
    assert not [e for e in events(api, ns, "no-account") if e["reason"] == "SuccessfulCreate"]
    # Slow start: a doomed creation is tried once per sync, not once per missing replica.
    assert all(e.get("count", 1) <= 5 for e in failures())

    # Once creation works again, the pods come and the condition goes.
    server.kubectl("create", "serviceaccount", "missing", "-n", ns)
    wait_for(lambda: len(pods(api, ns)) == 3, timeout=30, what="pods after the account exists")
    wait_for(lambda: not rs_status(server, ns, "no-account").get("conditions"), what="condition cleared")


def test_scale_down_picks_pods_in_upstream_order(server, api, ns):
    create(api, ns, replicaset("order", 5, {"app": "order"}))
    names = [p["metadata"]["name"] for p in wait_for(lambda: len(pods(api, ns)) == 5 and pods(api, ns))]
    unassigned, pending, running, restarted, ready = names
    for name in (pending, running, restarted, ready):
        bind(api, ns, name, "ghost-node")
    set_status(api, ns, pending, "Pending", False)
    set_status(api, ns, running, "Running", False)
    set_status(api, ns, restarted, "Running", True, restarts=3)
    set_status(api, ns, ready, "Running", True)
    wait_for(lambda: rs_status(server, ns, "order").get("readyReplicas") == 2, what="two ready")
    for victim in (unassigned, pending, running, restarted):
        want = len(pods(api, ns)) - 1
        server.kubectl("scale", "rs", "order", f"--replicas={want}", "-n", ns)
        wait_for(lambda want=want: len(pods(api, ns)) == want, what=f"{want} pods")
        assert victim not in {p["metadata"]["name"] for p in pods(api, ns)}
    assert [p["metadata"]["name"] for p in pods(api, ns)] == [ready]


def test_terminating_pods_do_not_count(server, api, ns):
    create(api, ns, replicaset("graceful", 1, {"app": "graceful"}))
    [p] = wait_for(lambda: pods(api, ns))
    name = p["metadata"]["name"]
    bind(api, ns, name, "ghost-node")
    # On a node, deletion is graceful: the pod stays (terminating) until its kubelet confirms.
    server.kubectl("delete", "pod", name, "-n", ns, "--wait=false")
    wait_for(lambda: len(pods(api, ns)) == 1 and pods(api, ns)[0]["metadata"]["name"] != name,
             what="a replacement")
    assert len(pods(api, ns, active=False)) == 2
    wait_for(lambda: rs_status(server, ns, "graceful").get("replicas") == 1)


def test_ready_and_available_with_min_ready_seconds(server, api, ns):
    create(api, ns, replicaset("slow", 2, {"app": "slow"}, minReadySeconds=2))
    names = [p["metadata"]["name"] for p in wait_for(lambda: len(pods(api, ns)) == 2 and pods(api, ns))]
    for name in names:
        bind(api, ns, name, "ghost-node")
        set_status(api, ns, name, "Running", True)
    status = wait_for(lambda: (s := rs_status(server, ns, "slow")).get("readyReplicas") == 2 and s)
    assert status.get("availableReplicas", 0) < 2
    t0 = time.monotonic()
    wait_for(lambda: rs_status(server, ns, "slow").get("availableReplicas") == 2, timeout=10, what="available")
    assert time.monotonic() - t0 < 5
    out = server.kubectl("get", "rs", "slow", "-n", ns, "-o", "json").stdout
    assert json.loads(out)["status"]["observedGeneration"] == 1


def test_owner_being_deleted_adopts_nothing(server, api, ns):
    rs = replicaset("going", 0, {"app": "going"})
    rs["metadata"]["finalizers"] = ["ketch.test/hold"]
    create(api, ns, rs)
    server.kubectl("delete", "rs", "going", "-n", ns, "--wait=false")
    create(api, ns, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "stray", "labels": {"app": "going"}},
                     "spec": {"schedulerName": "none", "containers": [{"name": "c", "image": "busybox"}]}})
    time.sleep(0.5)
    _, p, _ = api.request("GET", f"/api/v1/namespaces/{ns}/pods/stray")
    assert not p["metadata"].get("ownerReferences")
    api.request("PATCH", f"/apis/apps/v1/namespaces/{ns}/replicasets/going", {"metadata": {"finalizers": None}},
                content_type="application/merge-patch+json")
