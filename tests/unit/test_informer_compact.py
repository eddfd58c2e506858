"""Compacted informer caches (ketch/client/compact.py): equal parts shared, objects unchanged."""
from __future__ import annotations

import copy
import gc

import orjson

from ketch.client.compact import Compactor
from ketch.client.informer import COMPACTED_KINDS, SharedInformers


def _pod(i: int, node: str = "n1") -> dict:
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": f"p{i}", "namespace": "default", "uid": f"uid-{i}", "resourceVersion": str(10 + i),
                     "labels": {"app": "web", "tier": "front"},
                     "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": "rs-1",
                                          "controller": True, "blockOwnerDeletion": True}]},
        "spec": {
            "containers": [{"name": "c", "image": "busybox", "imagePullPolicy": "IfNotPresent",
                            "env": [{"name": "I", "value": str(i)}],
                            "resources": {"requests": {"cpu": "100m"}, "limits": {"cpu": "100m"}},
                            "ports": [{"containerPort": 80, "protocol": "TCP"}]},
                           {"name": "d", "image": "busybox", "imagePullPolicy": "IfNotPresent",
                            "resources": {"requests": {"cpu": "50m"}, "limits": {"cpu": "200m"}}}],
            "tolerations": [{"key": "k", "operator": "Exists", "tolerationSeconds": 300}],
            "nodeName": node, "priority": 0, "enableServiceLinks": True, "hostNetwork": False,
            "securityContext": {}, "weights": [1, 1.0, True, None, "1"],
        },
        "status": {"phase": "Pending", "qosClass": "Burstable"},
    }


def _ids(o, out: list) -> list:  # noqa: ANN001
    if isinstance(o, (dict, list)):
        out.append(id(o))
        for v in (o.values() if isinstance(o, dict) else o):
            _ids(v, out)
    return out


def test_compacted_objects_equal_what_the_server_sent_byte_for_byte() -> None:
    c = Compactor()
    got = [c.compact(orjson.loads(orjson.dumps(_pod(i)))) for i in range(20)]
    for i, obj in enumerate(got):
        assert obj == _pod(i)
        assert orjson.dumps(obj) == orjson.dumps(_pod(i))  # key order and types (1, 1.0, True) kept
    assert c.check() == []


def test_equal_parts_are_shared_between_objects_and_strings_interned() -> None:
    c = Compactor()
    # A part is entered in the table when what it holds already is: one more object per level of
    # nesting before the deepest parts are shared.
    *_, b, d = (c.compact(_pod(i)) for i in range(8))
    assert b["spec"]["tolerations"] is d["spec"]["tolerations"]
    assert b["metadata"]["labels"] is d["metadata"]["labels"]
    assert b["metadata"]["ownerReferences"] is d["metadata"]["ownerReferences"]
    assert b["spec"]["containers"][1] is d["spec"]["containers"][1]
    assert b["spec"]["containers"] is not d["spec"]["containers"]  # the env differs
    assert b["spec"]["nodeName"] is d["spec"]["nodeName"]
    # The top level and metadata stay each object's own.
    assert b is not d and b["metadata"] is not d["metadata"]


def test_no_part_is_shared_within_one_object_so_deep_copies_have_no_aliases() -> None:
    c = Compactor()
    objs = [c.compact(_pod(i)) for i in range(5)]
    for obj in objs:
        ids = _ids(obj, [])
        assert len(ids) == len(set(ids)), "a part appears twice in one object"
    # requests and limits are equal dicts, and so are two containers' resources: a deep copy
    # changed in one place changes only that place, and no cached object.
    copied = copy.deepcopy(objs[3])
    copied["spec"]["containers"][0]["resources"]["limits"]["cpu"] = "2"
    assert copied["spec"]["containers"][0]["resources"]["requests"]["cpu"] == "100m"
    assert objs[3]["spec"]["containers"][0]["resources"]["limits"]["cpu"] == "100m"
    for i, obj in enumerate(objs):
        assert obj == _pod(i)


def test_types_that_compare_equal_are_not_confused() -> None:
    c = Compactor()
    one = c.compact({"metadata": {}, "spec": {"x": [1], "y": {"v": 1}}})
    other = c.compact({"metadata": {}, "spec": {"x": [True], "y": {"v": 1.0}}})
    again = c.compact({"metadata": {}, "spec": {"x": [1], "y": {"v": 1}}})
    assert orjson.dumps(other) == b'{"metadata":{},"spec":{"x":[true],"y":{"v":1.0}}}'
    assert orjson.dumps(one) == orjson.dumps(again) == b'{"metadata":{},"spec":{"x":[1],"y":{"v":1}}}'
    # Same content in another key order is another part.
    swapped = c.compact({"metadata": {}, "spec": {"y": {"v": 1}, "x": [1]}})
    assert list(swapped["spec"]) == ["y", "x"]


def test_parts_no_object_holds_are_swept() -> None:
    c = Compactor()
    objs = [c.compact(_pod(i, node=f"n{i}")) for i in range(50)]
    assert len(c) > 0
    del objs
    gc.collect()
    c.sweep()
    assert len(c) == 0
    # And sharing starts afresh, still correct.
    again = [c.compact(_pod(i)) for i in range(3)]
    assert [o == _pod(i) for i, o in enumerate(again)] == [True] * 3
    assert again[1]["spec"]["tolerations"] is again[2]["spec"]["tolerations"]


def test_sweep_keeps_the_parts_still_held() -> None:
    c = Compactor()
    kept = [c.compact(_pod(i)) for i in range(4)]
    dropped = [c.compact(_pod(i, node="other")) for i in range(4, 40)]
    del dropped
    c.sweep()
    for i, obj in enumerate(kept):
        assert obj == _pod(i)
    newer = c.compact(_pod(99))
    assert newer["spec"]["tolerations"] is kept[3]["spec"]["tolerations"]
    assert c.check() == []


def test_check_finds_a_shared_part_changed_in_place() -> None:
    c = Compactor()
    a, b, d = (c.compact(_pod(i)) for i in range(3))
    d["spec"]["tolerations"][0]["tolerationSeconds"] = 1  # what no component may do
    assert b["spec"]["tolerations"][0]["tolerationSeconds"] == 1  # shared: why it is forbidden
    assert len(c.check()) >= 1


def test_shared_informers_compact_pods_only() -> None:
    class FakeClient:
        def resource(self, api_version: str, kind: str):  # noqa: ANN202
            from ketch.client.rest import ResourceClient
            from ketch.api import kinds
            group, version = api_version.split("/", 1) if "/" in api_version else ("", api_version)
            return ResourceClient(self, kinds.by_kind(group, version, kind), None)

    informers = SharedInformers(FakeClient())  # type: ignore[arg-type]
    assert ("v1", "Pod") in COMPACTED_KINDS
    pods = informers.informer("v1", "Pod")
    cms = informers.informer("v1", "ConfigMap")
    raw = _pod(1)
    raw["metadata"]["managedFields"] = [{"manager": "kubectl"}]
    a = pods.transform(copy.deepcopy(raw))
    b = pods.transform(copy.deepcopy(raw) | {"metadata": {**raw["metadata"], "name": "p2"}})
    assert "managedFields" not in a["metadata"]
    assert b["spec"]["tolerations"] is informers.compactor.compact(_pod(3))["spec"]["tolerations"]
    entries = len(informers.compactor)
    cm = {"metadata": {"name": "x", "managedFields": []}, "data": {"a": "b"}}
    assert cms.transform(cm) == {"metadata": {"name": "x"}, "data": {"a": "b"}}
    assert len(informers.compactor) == entries  # config maps enter no table
