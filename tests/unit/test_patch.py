"""JSON patch, JSON merge patch and strategic merge patch on realistic objects, with upstream's errors."""
from __future__ import annotations

import copy
import json

import pytest

from ketch.api import patch, schema
from ketch.api.errors import ApiError

DEPLOYMENT = schema.node("io.k8s.api.apps.v1.Deployment")
POD = schema.node("io.k8s.api.core.v1.Pod")
SERVICE = schema.node("io.k8s.api.core.v1.Service")
REVISION = schema.node("io.k8s.api.apps.v1.ControllerRevision")

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def container(name: str, image: str, **extra) -> dict:
    return {"name": name, "image": image, **extra}


def deployment(*containers: dict, **spec) -> dict:
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"},
                     "finalizers": ["example.com/a", "example.com/b"]},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                 "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": list(containers), **spec}},
                 },
    }


NGINX = container("nginx", "nginx:1.25", args=["-g", "daemon off;"],
                  ports=[{"containerPort": 80, "protocol": "TCP"}, {"containerPort": 8080, "protocol": "TCP"}],
                  env=[{"name": "MODE", "value": "dev"}, {"name": "DEBUG", "value": "1"}],
                  volumeMounts=[{"name": "data", "mountPath": "/data"}])
SIDECAR = container("sidecar", "busybox:1.36")
LIVE = deployment(NGINX, SIDECAR, volumes=[{"name": "data", "emptyDir": {}}])


def containers(obj: dict) -> list[dict]:
    return obj["spec"]["template"]["spec"]["containers"]


# ---------------------------------------------------------------------------------------------
# JSON patch


def test_json_patch_applies_operations_without_touching_the_input():
    before = copy.deepcopy(LIVE)
    out = patch.json_patch(LIVE, [
        {"op": "replace", "path": "/spec/replicas", "value": 5},
        {"op": "add", "path": "/spec/template/spec/containers/0/args/-", "value": "-q"},
        {"op": "remove", "path": "/metadata/labels/app"},
        {"op": "test", "path": "/spec/template/spec/containers/1/name", "value": "sidecar"},
    ])
    assert out["spec"]["replicas"] == 5
    assert containers(out)[0]["args"] == ["-g", "daemon off;", "-q"]
    assert out["metadata"]["labels"] == {}
    assert LIVE == before


@pytest.mark.parametrize("ops", [
    [{"op": "test", "path": "/spec/replicas", "value": 3}],
    [{"op": "replace", "path": "/spec/paused", "value": True}],   # replace needs an existing target
    [{"op": "remove", "path": "/spec/template/spec/containers/5"}],
    [{"op": "add", "path": "/spec/nothere/x", "value": 1}],
    [{"op": "frobnicate", "path": "/spec"}],
    [{"op": "add", "path": "", "value": {}}],
    [None],
])
def test_json_patch_that_does_not_apply_is_422_with_the_generic_message(ops):
    with pytest.raises(ApiError) as e:
        patch.json_patch(LIVE, ops)
    assert (e.value.code, e.value.reason) == (422, "Invalid")
    assert e.value.message == "the server rejected our request due to an error in our request"
    assert e.value.details == {}


@pytest.mark.parametrize("body, message", [
    ({"op": "add"}, "json: cannot unmarshal object into Go value of type jsonpatch.Patch"),
    ("x", "json: cannot unmarshal string into Go value of type jsonpatch.Patch"),
    ([1], "json: cannot unmarshal number into Go value of type jsonpatch.Operation"),
])
def test_json_patch_that_does_not_decode_is_400(body, message):
    with pytest.raises(ApiError) as e:
        patch.json_patch(LIVE, body)
    assert (e.value.code, e.value.reason, e.value.message) == (400, "BadRequest", message)


def test_json_patch_operation_limit_is_413():
    ops = [{"op": "test", "path": "/kind", "value": "Deployment"}] * 10001
    with pytest.raises(ApiError) as e:
        patch.json_patch(LIVE, ops)
    assert e.value.code == 413
    assert e.value.message == ("Request entity too large: The allowed maximum operations in a JSON patch is 10000, "
                               "got 10001")


# ---------------------------------------------------------------------------------------------
# JSON merge patch


def test_merge_patch_merges_maps_replaces_lists_and_deletes_nulls():
    out = patch.merge_patch(LIVE, {
        "metadata": {"labels": {"tier": "front", "app": None}},
        "spec": {"replicas": 4, "strategy": {"rollingUpdate": None},
                 "template": {"spec": {"containers": [{"name": "only", "image": "x"}]}}},
    })
    assert out["metadata"]["labels"] == {"tier": "front"}
    assert out["spec"]["strategy"] == {"type": "RollingUpdate"}
    assert containers(out) == [{"name": "only", "image": "x"}]
    assert out["spec"]["template"]["spec"]["volumes"] == LIVE["spec"]["template"]["spec"]["volumes"]


def test_merge_patch_prunes_nulls_from_added_values():
    out = patch.merge_patch({"metadata": {"name": "a"}}, {"metadata": {"annotations": {"x": "1", "y": None}}})
    assert out["metadata"]["annotations"] == {"x": "1"}


@pytest.mark.parametrize("body", [None, "text", 3])
def test_merge_patch_that_is_not_an_object_is_400(body):
    with pytest.raises(ApiError) as e:
        patch.merge_patch(LIVE, body)
    assert (e.value.code, e.value.message) == (400, "Invalid JSON Patch")


def test_merge_patch_with_an_array_replaces_the_document_and_fails_decoding():
    with pytest.raises(ApiError) as e:
        patch.merge_patch(LIVE, [{"op": "add"}])
    assert (e.value.code, e.value.reason) == (422, "Invalid")
    assert "couldn't get version/kind; json parse error" in e.value.message
    assert e.value.details["causes"][0]["field"] == "patch"


# ---------------------------------------------------------------------------------------------
# Strategic merge patch


def smp(obj: dict, body: dict, node=DEPLOYMENT) -> dict:
    return patch.strategic_merge_patch(obj, body, node)


def test_containers_merge_by_name():
    out = smp(LIVE, {"spec": {"template": {"spec": {"containers": [{"name": "sidecar", "image": "busybox:1.37"}]}}}})
    assert [c["name"] for c in containers(out)] == ["nginx", "sidecar"]
    assert containers(out)[1] == {"name": "sidecar", "image": "busybox:1.37"}
    assert containers(out)[0] == NGINX


def test_new_container_and_null_removing_a_field():
    out = smp(LIVE, {"spec": {"replicas": None, "template": {"spec": {"containers": [
        {"name": "logger", "image": "fluent-bit", "resources": None}]}}}})
    assert "replicas" not in out["spec"]
    # Without $setElementOrder, items only in the patch sort before the server's (mergeSortedSlice).
    assert [c["name"] for c in containers(out)] == ["logger", "nginx", "sidecar"]
    assert containers(out)[0] == {"name": "logger", "image": "fluent-bit"}


@pytest.mark.parametrize("live, body, expected", [
    # upstream strategicpatch test vectors: "preserve the order from the patch in a merging list"
    (["1", "2", "3"], ["3", "1", "2"], ["3", "1", "2"]),
    (["1", "2", "3"], ["3", "1"], ["2", "3", "1"]),
    (["1", "2"], ["2", "3"], ["1", "2", "3"]),
])
def test_merge_lists_follow_the_patch_order(live, body, expected):
    obj = deployment(*[container(n, "img") for n in live])
    out = smp(obj, {"spec": {"template": {"spec": {"containers": [{"name": n, "image": "new"} for n in body]}}}})
    assert [c["name"] for c in containers(out)] == expected
    obj = {"metadata": {"name": "x", "finalizers": live}}
    assert smp(obj, {"metadata": {"finalizers": body}})["metadata"]["finalizers"] == expected


def test_kubectl_apply_patch_with_set_element_order():
    """The shape of patch kubectl 1.27-1.35 computes from the last-applied annotation."""
    annotation = json.dumps({"apiVersion": "apps/v1", "kind": "Deployment"}) + "\n"
    body = {
        "metadata": {"annotations": {LAST_APPLIED: annotation}, "labels": {"tier": "web"}},
        "spec": {"replicas": 3, "template": {"spec": {
            "$setElementOrder/containers": [{"name": "sidecar"}, {"name": "nginx"}],
            "containers": [{
                "$setElementOrder/env": [{"name": "MODE"}],
                "env": [{"name": "MODE", "value": "prod"}, {"$patch": "delete", "name": "DEBUG"}],
                "image": "nginx:1.26", "name": "nginx"}]}}},
    }
    out = smp(LIVE, body)
    assert out["metadata"]["annotations"] == {LAST_APPLIED: annotation}
    assert out["metadata"]["labels"] == {"app": "web", "tier": "web"}
    assert out["spec"]["replicas"] == 3
    assert [c["name"] for c in containers(out)] == ["sidecar", "nginx"]
    nginx = containers(out)[1]
    assert nginx["image"] == "nginx:1.26"
    assert nginx["env"] == [{"name": "MODE", "value": "prod"}]
    assert nginx["ports"] == NGINX["ports"] and nginx["args"] == NGINX["args"]


def test_set_element_order_keeps_server_only_items_in_place():
    live = deployment(container("a", "a"), container("b", "b"), container("c", "c"))
    body = {"spec": {"template": {"spec": {"$setElementOrder/containers": [{"name": "a"}, {"name": "c"}, {"name": "d"}],
                                           "containers": [{"name": "d", "image": "d"}]}}}}
    assert [c["name"] for c in containers(smp(live, body))] == ["a", "b", "c", "d"]


def test_deleting_a_container_port():
    body = {"spec": {"template": {"spec": {
        "$setElementOrder/containers": [{"name": "nginx"}, {"name": "sidecar"}],
        "containers": [{"name": "nginx", "$setElementOrder/ports": [{"containerPort": 80}],
                        "ports": [{"$patch": "delete", "containerPort": 8080}]}]}}}}
    out = smp(LIVE, body)
    assert containers(out)[0]["ports"] == [{"containerPort": 80, "protocol": "TCP"}]
    assert containers(out)[1] == SIDECAR


def test_patch_delete_removes_a_whole_container_and_a_map():
    out = smp(LIVE, {"spec": {"strategy": {"$patch": "delete"}, "template": {"spec": {"containers": [
        {"$patch": "delete", "name": "sidecar"}]}}}})
    assert [c["name"] for c in containers(out)] == ["nginx"]
    assert out["spec"]["strategy"] == {}


def test_patch_replace_on_a_list_and_on_a_map():
    out = smp(LIVE, {"metadata": {"labels": {"$patch": "replace", "only": "this"}},
                     "spec": {"template": {"spec": {"containers": [
                         {"$patch": "replace"}, {"name": "solo", "image": "solo"}]}}}})
    assert out["metadata"]["labels"] == {"only": "this"}
    assert containers(out) == [{"name": "solo", "image": "solo"}]


def test_retain_keys_on_strategy():
    out = smp(LIVE, {"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}})
    assert out["spec"]["strategy"] == {"type": "Recreate"}


def test_retain_keys_on_a_volume_changing_its_source():
    body = {"spec": {"template": {"spec": {
        "$setElementOrder/volumes": [{"name": "data"}],
        "volumes": [{"$retainKeys": ["configMap", "name"], "configMap": {"name": "settings"}, "emptyDir": None,
                     "name": "data"}]}}}}
    out = smp(LIVE, body)
    assert out["spec"]["template"]["spec"]["volumes"] == [{"name": "data", "configMap": {"name": "settings"}}]


def test_primitive_merge_lists_union_and_delete():
    out = smp(LIVE, {"metadata": {"finalizers": ["example.com/c", "example.com/a"]}})
    assert out["metadata"]["finalizers"] == ["example.com/c", "example.com/a", "example.com/b"]
    out = smp(LIVE, {"metadata": {"$setElementOrder/finalizers": ["example.com/b"],
                                  "$deleteFromPrimitiveList/finalizers": ["example.com/a"]}})
    assert out["metadata"]["finalizers"] == ["example.com/b"]


def test_lists_without_a_merge_strategy_are_replaced():
    out = smp(LIVE, {"spec": {"template": {"spec": {"containers": [{"name": "nginx", "args": ["-v"]}]}}}})
    assert containers(out)[0]["args"] == ["-v"]


def test_service_ports_merge_by_port():
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
               "spec": {"selector": {"app": "web"}, "ports": [
                   {"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"},
                   {"name": "https", "port": 443, "targetPort": 8443, "protocol": "TCP"}]}}
    out = smp(service, {"spec": {"$setElementOrder/ports": [{"port": 80}],
                                 "ports": [{"port": 80, "targetPort": 9090}, {"$patch": "delete", "port": 443}]}},
              SERVICE)
    assert out["spec"]["ports"] == [{"name": "http", "port": 80, "targetPort": 9090, "protocol": "TCP"}]


def test_pod_labels_and_tolerations():
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": {"a": "1"}},
           "spec": {"containers": [container("c", "i")], "tolerations": [{"key": "k", "operator": "Exists"}]}}
    out = smp(pod, {"metadata": {"labels": {"b": "2"}}, "spec": {"tolerations": [{"key": "z", "operator": "Exists"}]}},
              POD)
    assert out["metadata"]["labels"] == {"a": "1", "b": "2"}
    assert out["spec"]["tolerations"] == [{"key": "z", "operator": "Exists"}]


def test_free_form_content_merges_like_a_merge_patch():
    revision = {"apiVersion": "apps/v1", "kind": "ControllerRevision", "metadata": {"name": "r"}, "revision": 1,
                "data": {"spec": {"template": {"x": 1, "list": [1, 2]}, "keep": True}}}
    out = smp(revision, {"data": {"spec": {"template": {"y": 2, "list": [3], "x": None}}}}, REVISION)
    assert out["data"] == {"spec": {"template": {"list": [3], "y": 2}, "keep": True}}


@pytest.mark.parametrize("body, code, reason, message", [
    ({"spec": {"template": {"spec": {"containers": [{"image": "nginx"}]}}}}, 500, "",
     "map: map[image:nginx] does not contain declared merge key: name"),
    ({"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": {}}}}, 400, "BadRequest",
     "invalid patch format of retainKeys"),
    ({"spec": {"strategy": {"$retainKeys": "type"}}}, 400, "BadRequest", "invalid patch format of retainKeys"),
    ({"metadata": {"$deleteFromPrimitiveListfinalizers": ["a"]}}, 400, "BadRequest",
     "invalid patch format of primitive list"),
    ({"metadata": {"$setElementOrderfinalizers": ["a"]}}, 400, "BadRequest",
     "invalid patch format of setElementOrder list"),
    ({"metadata": {"finalizers": [["a"]]}}, 500, "",
     "list element types are not identical: [[example.com/a example.com/b] [[a]]]"),
    ({"spec": {"template": {"spec": {"containers": [{"$patch": "merge", "name": "nginx"}]}}}}, 500, "",
     "merging lists cannot yet be specified in the patch"),
    ({"spec": {"strategy": {"$patch": "frob"}}}, 500, "", "unknown patch type: frob in map: map[$patch:frob]"),
    ([{"op": "add"}], 400, "BadRequest", "json: cannot unmarshal array into Go value of type map[string]interface {}"),
])
def test_strategic_merge_patch_errors(body, code, reason, message):
    with pytest.raises(ApiError) as e:
        smp(LIVE, body)
    assert (e.value.code, e.value.reason, e.value.message) == (code, reason, message)


def test_lists_of_lists_are_422():
    with pytest.raises(ApiError) as e:
        smp({"metadata": {"name": "x", "finalizers": []}}, {"metadata": {"finalizers": [["a"]]}})
    assert (e.value.code, e.value.reason) == (422, "Invalid")
    assert e.value.message == "the server rejected our request due to an error in our request"


def test_set_element_order_must_agree_with_the_patch_order():
    body = {"spec": {"template": {"spec": {"$setElementOrder/containers": [{"name": "nginx"}],
                                           "containers": [{"name": "sidecar", "image": "x"}]}}}}
    with pytest.raises(ApiError) as e:
        smp(LIVE, body)
    assert e.value.code == 500 and e.value.message.startswith("The order in patch list:\n")


def test_strategic_merge_patch_leaves_its_inputs_alone():
    before, body = copy.deepcopy(LIVE), {"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}
    body_before = copy.deepcopy(body)
    smp(LIVE, body)
    assert LIVE == before and body == body_before
