"""The stored form of API objects: what a read gives back is what was written, every way it reads."""
from __future__ import annotations

import json

import orjson
import pytest

from ketch.apiserver import stored
from ketch.storage.interface import KeyValue

OBJECTS = [
    {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a", "namespace": "default", "resourceVersion": "3",
                                                     "managedFields": [{"manager": "kubectl", "operation": "Update",
                                                                        "fieldsV1": {"f:spec": {"f:x": {}}}}]},
     "spec": {"control": "\x1e in a string", "text": "é ✓"}},
    {"metadata": {"managedFields": []}},
    {"metadata": {"name": "c", "managedFields": None}, "status": {"s": 1}},
    {"kind": "K", "metadata": {"name": "d", "managedFields": [{"a": 1}]}},
    {"metadata": {"name": "no-managers"}, "spec": {}},
    {"metadata": {}, "kind": "X"},
    {"kind": "NoMetadata"},
    {"metadata": {"name": "big", "managedFields": [{"a": 1}]}, "spec": {"n": 2 ** 70}},  # stdlib JSON's path
]


def expected(obj: dict) -> dict:
    out = json.loads(json.dumps(obj))
    out.setdefault("metadata", {})["resourceVersion"] = "7"
    return out


@pytest.mark.parametrize("obj", OBJECTS)
def test_every_read_gives_back_what_was_written(obj):
    kv = KeyValue("/registry/x", stored.encode(obj), 1, 7)
    assert stored.decode(kv) == expected(obj)
    assert json.loads(stored.raw(kv)) == expected(obj)
    if "big" not in json.dumps(obj):
        rendered = orjson.dumps(stored.decode(kv, managed_fields_raw=True))  # left as JSON text, written out
        assert orjson.loads(rendered) == expected(obj)


def test_managed_fields_come_last_in_metadata_as_upstream_writes_them():
    kv = KeyValue("/registry/x", stored.encode(OBJECTS[0]), 1, 7)
    metadata = list(json.loads(stored.raw(kv))["metadata"])
    assert metadata == ["resourceVersion", "name", "namespace", "managedFields"]


def test_values_written_before_managed_fields_were_kept_apart_still_read():
    old = json.dumps({"metadata": {"name": "a", "managedFields": [{"manager": "m"}]}, "spec": {"x": 1}},
                     separators=(",", ":")).encode()
    kv = KeyValue("/registry/x", old, 1, 7)
    want = {"metadata": {"name": "a", "managedFields": [{"manager": "m"}], "resourceVersion": "7"}, "spec": {"x": 1}}
    assert stored.decode(kv) == want and json.loads(stored.raw(kv)) == want
