"""pods/binding and the bindings collection: how a scheduler assigns a pod to a node, once."""
from __future__ import annotations

import pytest

from helpers.cluster import unique
from helpers.http import Api


@pytest.fixture(scope="module")
def api(server):
    return Api(server.kubeconfig)


@pytest.fixture
def ns(api):
    name = unique("bind")
    status, body, _ = api.request("POST", "/api/v1/namespaces", {"metadata": {"name": name}})
    assert status == 201, body
    return name


def make_pod(api, ns: str, name: str, scheduler: str = "no-such-scheduler") -> dict:
    # A scheduler name nobody serves keeps the cluster's own scheduler away from the test's pod.
    status, body, _ = api.request("POST", f"/api/v1/namespaces/{ns}/pods", {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"schedulerName": scheduler, "containers": [{"name": "c", "image": "busybox"}]}})
    assert status == 201, body
    return body


def binding(name: str, node: str, **meta) -> dict:
    return {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name, **meta},
            "target": {"apiVersion": "v1", "kind": "Node", "name": node}}


def test_binding_assigns_the_node_and_marks_the_pod_scheduled(api, ns):
    make_pod(api, ns, "p")
    status, body, _ = api.request("POST", f"/api/v1/namespaces/{ns}/pods/p/binding",
                                  binding("p", "node-a", annotations={"k": "v"}))
    assert status == 201, body
    assert body["kind"] == "Status" and body["status"] == "Success"
    _, pod, _ = api.request("GET", f"/api/v1/namespaces/{ns}/pods/p")
    assert pod["spec"]["nodeName"] == "node-a"
    assert pod["metadata"]["annotations"]["k"] == "v"
    scheduled = [c for c in pod["status"]["conditions"] if c["type"] == "PodScheduled"]
    assert scheduled and scheduled[0]["status"] == "True"


def test_a_pod_is_bound_only_once(api, ns):
    make_pod(api, ns, "p")
    assert api.request("POST", f"/api/v1/namespaces/{ns}/bindings", binding("p", "node-a"))[0] == 201
    status, body, _ = api.request("POST", f"/api/v1/namespaces/{ns}/pods/p/binding", binding("p", "node-b"))
    assert status == 409 and body["reason"] == "Conflict"
    assert body["message"] == 'Operation cannot be fulfilled on pods/binding "p": pod p is already assigned to ' \
                              'node "node-a"'
    _, pod, _ = api.request("GET", f"/api/v1/namespaces/{ns}/pods/p")
    assert pod["spec"]["nodeName"] == "node-a"
    # The bindings collection stores nothing of its own.
    status, _, _ = api.request("GET", f"/api/v1/namespaces/{ns}/bindings")
    assert status == 405


def test_bad_bindings_are_refused_with_a_status(api, ns):
    status, body, _ = api.request("POST", f"/api/v1/namespaces/{ns}/pods/missing/binding",
                                  binding("missing", "node-a"))
    assert status == 404 and body["message"] == 'pods "missing" not found'
    make_pod(api, ns, "p")
    bad = binding("p", "node-a")
    bad["target"]["kind"] = "Service"
    status, body, _ = api.request("POST", f"/api/v1/namespaces/{ns}/pods/p/binding", bad)
    assert status == 422 and body["reason"] == "Invalid", body
    status, body, _ = api.request("POST", f"/api/v1/namespaces/{ns}/pods/p/binding", binding("other", "node-a"))
    assert status == 400, body
    status, body, _ = api.request("POST", f"/api/v1/namespaces/{ns}/pods/p/binding", {"kind": "Pod"})
    assert status == 400, body


def test_binding_a_pod_being_deleted_is_a_conflict(api, ns):
    make_pod(api, ns, "p")
    _, pod, _ = api.request("GET", f"/api/v1/namespaces/{ns}/pods/p")
    # A finalizer keeps the pod around with a deletionTimestamp.
    api.request("PATCH", f"/api/v1/namespaces/{ns}/pods/p", {"metadata": {"finalizers": ["test/hold"]}},
                content_type="application/merge-patch+json")
    api.request("DELETE", f"/api/v1/namespaces/{ns}/pods/p")
    status, body, _ = api.request("POST", f"/api/v1/namespaces/{ns}/pods/p/binding", binding("p", "node-a"))
    assert status == 409 and "is being deleted" in body["message"]
    api.request("PATCH", f"/api/v1/namespaces/{ns}/pods/p", {"metadata": {"finalizers": None}},
                content_type="application/merge-patch+json")
