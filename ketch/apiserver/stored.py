"""How the API server keeps objects in the store.

A value is the object's JSON with `metadata` first and without `resourceVersion` (the revision
is the version). When the object has managedFields, they are kept apart, at the end of
`metadata`, between two ASCII record separators: `{"metadata":{…meta…␞[…managedFields…]␞},"spec":…}`.
JSON text never holds that byte raw (strings escape control characters), so the split is exact.
Reads splice the revision and the managedFields back into the stored bytes instead of decoding
and re-encoding them (`raw`), and a list that only writes its objects out again can leave the
managedFields — often half of an object — undecoded (`decode(..., managed_fields_raw=True)`).
Values written before managedFields were kept apart (no separator) read the same.
"""
from __future__ import annotations

import json
from typing import Any

import orjson

from ..storage import interface as st
from .codec import json_bytes

_META_PREFIX = b'{"metadata":{'
_SEPARATOR = b"\x1e"
_ABSENT: Any = object()


def encode(obj: dict) -> bytes:
    meta = dict(obj.get("metadata") or {})
    meta.pop("resourceVersion", None)
    managed = meta.pop("managedFields", _ABSENT)
    rest = {k: v for k, v in obj.items() if k != "metadata"}
    if managed is _ABSENT:
        return json_bytes({"metadata": meta, **rest})
    meta_json, rest_json = json_bytes(meta), json_bytes(rest)
    return b"".join((b'{"metadata":', meta_json[:-1], _SEPARATOR, json_bytes(managed), _SEPARATOR, b"}",
                     b"}" if rest_json == b"{}" else b"," + rest_json[1:]))


def _split(value: bytes) -> tuple[bytes, bytes, bytes | None]:
    """(JSON up to the end of metadata's fields, the rest, managedFields' JSON or None)."""
    first = value.find(_SEPARATOR)
    if first < 0:
        return value, b"", None
    second = value.rindex(_SEPARATOR)
    return value[:first], value[second + 1:], value[first + 1:second]


def _loads(value: bytes) -> Any:
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError:
        return json.loads(value)  # integers beyond 64 bits, which orjson refuses


def decode(kv: st.KeyValue, *, managed_fields_raw: bool = False) -> dict:
    """The stored object with its resourceVersion. With `managed_fields_raw` its managedFields
    stay JSON text (an orjson.Fragment): for objects that are only written out again as JSON."""
    head, tail, managed = _split(kv.value)
    obj = _loads(head + tail)
    meta = obj.setdefault("metadata", {})
    meta["resourceVersion"] = str(kv.mod_revision)
    if managed is not None:
        meta["managedFields"] = orjson.Fragment(managed) if managed_fields_raw else _loads(managed)
    return obj


def raw(kv: st.KeyValue) -> bytes:
    """The stored object as JSON with its resourceVersion, without a decode/encode round trip."""
    head, tail, managed = _split(kv.value)
    if not head.startswith(_META_PREFIX):
        return orjson.dumps(decode(kv))
    fields = head[len(_META_PREFIX):]
    out = _META_PREFIX + b'"resourceVersion":"%d"' % kv.mod_revision
    if managed is None:  # `fields` runs on past metadata: closing brace and all
        return out + (fields if fields[:1] == b"}" else b"," + fields)
    return out + (b"," + fields if fields else b"") + b',"managedFields":' + managed + tail
