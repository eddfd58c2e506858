"""Decode Kubernetes protobuf request bodies (`application/vnd.kubernetes.protobuf`) into JSON form.

kubectl >= 1.32 sends typed requests (create configmap/secret/deployment/..., auth can-i, create
token, drain) as protobuf. A body is the magic `k8s\\x00` followed by a `runtime.Unknown` message
(typeMeta=1 {apiVersion=1, kind=2}, raw=2, contentEncoding=3, contentType=4); `raw` is the object
message, whose type follows from apiVersion and kind. Field numbers come from
`data/protobuf_fields.json`, generated from the descriptors kubectl embeds
(`scripts/gen_protobuf_fields.py`), which also records each field's JSON name (mostly the proto
name; "" for an embedded Go struct, whose fields are the parent's, as with `json:",inline"`).

The result is what the JSON decoder would have produced from the same object sent as JSON.
Go writes every value (non-pointer) field, zero or not, while its JSON encoder leaves `omitempty`
zeros out, so zero scalars of value fields (empty strings, 0, false, empty bytes) are dropped
unless the OpenAPI definition lists the field as `required` (the fields Go writes without
omitempty). Pointer fields are on the wire only when set, so their explicit zeros are kept
(`replicas: 0`, `automountServiceAccountToken: false`, `storageClassName: ""`): the table knows
which fields are pointers from gogoproto.nullable in kubectl's descriptors. Zero Time/MicroTime
and empty RawExtension/FieldsV1 are dropped (Go's JSON writes null for them) unless required.
Nested messages are kept even when empty: Go's JSON writes structs (`resources: {}`, `status: {}`)
whatever their content. Where omitempty and `required` disagree, a zero value field comes out
differently from JSON (rare: a few non-omitempty fields are optional in the schema).

Fields unknown to the table (added after the kubectl release it came from) are skipped and
reported, so the server can warn instead of failing.
"""
from __future__ import annotations

import base64
import datetime
import functools
import math
import struct
from pathlib import Path
from typing import Any, Iterator

import orjson

from ketch.api import durations, schema

MEDIA_TYPE = "application/vnd.kubernetes.protobuf"
MAGIC = b"k8s\x00"
FIELDS_FILE = Path(__file__).parent / "data" / "protobuf_fields.json"

VARINT, FIXED64, LENGTH_DELIMITED, FIXED32 = 0, 1, 2, 5  # wire types (3 and 4, groups, are unused)

_META = "k8s.io.apimachinery.pkg.apis.meta.v1."
TIME = _META + "Time"
MICRO_TIME = _META + "MicroTime"
DURATION = _META + "Duration"
FIELDS_V1 = _META + "FieldsV1"
QUANTITY = "k8s.io.apimachinery.pkg.api.resource.Quantity"
INT_OR_STRING = "k8s.io.apimachinery.pkg.util.intstr.IntOrString"
RAW_EXTENSION = "k8s.io.apimachinery.pkg.runtime.RawExtension"

# Scalar field types whose JSON form is a number, by how the wire value is read.
_SIGNED_VARINT = {"int32": 32, "int64": 64, "enum": 32}
_UNSIGNED_VARINT = {"uint32", "uint64"}
_ZIGZAG = {"sint32", "sint64"}
_FIXED = {"fixed32": "<I", "sfixed32": "<i", "float": "<f", "fixed64": "<Q", "sfixed64": "<q", "double": "<d"}
_SCALAR_WIRE = {
    **{t: VARINT for t in (*_SIGNED_VARINT, *_UNSIGNED_VARINT, *_ZIGZAG, "bool")},
    **{t: FIXED32 if struct.calcsize(f) == 4 else FIXED64 for t, f in _FIXED.items()},
}


class ProtobufError(ValueError):
    """A body that cannot be decoded; the message is fit for a 400 BadRequest."""


# --- wire format ---------------------------------------------------------------------------------

def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise ProtobufError("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise ProtobufError("varint too long")


def iter_fields(buf: bytes) -> Iterator[tuple[int, int, int | bytes]]:
    """(field number, wire type, value) for each field of an encoded message, in wire order.

    Varints come back as unsigned ints, fixed32/fixed64 as unsigned ints of their little-endian
    bytes, length-delimited fields as bytes.
    """
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise ProtobufError("invalid field number 0")
        if wire == VARINT:
            value, pos = _varint(buf, pos)
        elif wire == FIXED64 or wire == FIXED32:
            size = 8 if wire == FIXED64 else 4
            if pos + size > end:
                raise ProtobufError("truncated fixed-width field")
            value = int.from_bytes(buf[pos:pos + size], "little")
            pos += size
        elif wire == LENGTH_DELIMITED:
            size, pos = _varint(buf, pos)
            if pos + size > end:
                raise ProtobufError("truncated length-delimited field")
            value = bytes(buf[pos:pos + size])
            pos += size
        else:
            raise ProtobufError(f"unsupported wire type {wire} (field {number})")
        yield number, wire, value


# --- the field table -----------------------------------------------------------------------------

class _Table:
    """The generated field table: message → field number → (jsonName, type, label, typeName, nullable)."""

    def __init__(self, raw: dict):
        self.messages: dict[str, dict[int, tuple[str, str, str, str, bool]]] = {
            name: {int(n): tuple(row) for n, row in fields.items()} for name, fields in raw["messages"].items()
        }
        self.map_entries = frozenset(raw["mapEntries"])
        self.list_wrappers = frozenset(raw["listWrappers"])
        self.source = raw["source"]
        # (short group, version, kind) of every top-level message in a versioned package.
        self.kinds: dict[tuple[str, str, str], str] = {}
        for name in self.messages:
            *package, kind = name.split(".")
            if len(package) >= 2 and _is_version(package[-1]):
                self.kinds[(package[-2], package[-1], kind)] = name


def _is_version(segment: str) -> bool:
    return segment.startswith("v") and segment[1:2].isdigit()


@functools.cache
def table() -> _Table:
    return _Table(orjson.loads(FIELDS_FILE.read_bytes()))


# Groups whose first DNS label is not the short name of their Go package.
_SHORT_GROUPS = {"": "core", "internal.apiserver.k8s.io": "apiserverinternal"}


@functools.lru_cache(maxsize=512)
def message_type(api_version: str, kind: str) -> str | None:
    """The proto message of apiVersion+kind: `k8s.io.api.<shortgroup>.<version>.<Kind>`, or the meta/v1
    type every group version carries (DeleteOptions in an Eviction's group, for one)."""
    group, _, version = api_version.rpartition("/")
    short = _SHORT_GROUPS.get(group, group.split(".")[0])
    kinds = table().kinds
    return kinds.get((short, version, kind)) or kinds.get(("meta", "v1", kind))


@functools.cache
def _required(message: str) -> frozenset[str]:
    """The fields the OpenAPI definition of `message` requires (Go writes them even when empty)."""
    try:
        return frozenset(schema.node("io.k8s." + message.removeprefix("k8s.io.")).required)
    except KeyError:
        return frozenset()


# --- JSON forms of the special types -------------------------------------------------------------

_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)


def _timestamp(seconds: int, nanos: int, micro: bool) -> str | None:
    """metav1.Time → RFC 3339 in UTC, whole seconds; MicroTime → six fractional digits; zero → null."""
    if seconds == 0 and nanos == 0:
        return None
    try:
        t = _EPOCH + datetime.timedelta(seconds=seconds, microseconds=nanos // 1000)
    except OverflowError:
        raise ProtobufError(f"timestamp out of range: {seconds}s") from None
    text = f"{t.year:04d}-{t.month:02d}-{t.day:02d}T{t.hour:02d}:{t.minute:02d}:{t.second:02d}"
    return f"{text}.{t.microsecond:06d}Z" if micro else f"{text}Z"


def _json_float(value: float) -> float | int:
    """Go writes whole floats below 1e21 without a fraction, so a JSON decoder reads an int."""
    return int(value) if value.is_integer() and abs(value) < 1e21 else value


# --- decoding ------------------------------------------------------------------------------------

_ZERO = {"string": "", "bytes": b"", "bool": False}


def _signed(value: int, bits: int) -> int:
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


def _scalar(kind: str, value: int | bytes) -> Any:
    """One scalar from its wire value (bytes stay bytes)."""
    if kind == "string":
        return value.decode("utf-8", "replace")
    if kind == "bytes":
        return value
    if kind == "bool":
        return value != 0
    if kind in _SIGNED_VARINT:
        return _signed(value, _SIGNED_VARINT[kind])
    if kind in _UNSIGNED_VARINT:
        return value & ((1 << (32 if kind == "uint32" else 64)) - 1)
    if kind in _ZIGZAG:
        return (value >> 1) ^ -(value & 1)
    fmt = _FIXED[kind]
    number = struct.unpack(fmt, value.to_bytes(struct.calcsize(fmt), "little"))[0]
    return _json_float(number) if isinstance(number, float) and math.isfinite(number) else number


def _scalars(kind: str, wire: int, value: int | bytes, path: str) -> list[Any]:
    """The values of one occurrence of a repeated scalar field: one, or several when packed."""
    expected = _SCALAR_WIRE.get(kind, LENGTH_DELIMITED)
    if wire == LENGTH_DELIMITED and expected != LENGTH_DELIMITED:
        return [_scalar(kind, v) for v in _unpack(value, expected)]
    return [_single(kind, wire, value, path)]


def _single(kind: str, wire: int, value: int | bytes, path: str) -> Any:
    """The value of one occurrence of a singular scalar field."""
    if wire != _SCALAR_WIRE.get(kind, LENGTH_DELIMITED):
        raise ProtobufError(f"{path}: wire type {wire} does not fit a {kind} field")
    return _scalar(kind, value)


def _unpack(packed: bytes, wire: int) -> Iterator[int]:
    """The values of a packed repeated field: back-to-back varints or fixed-width integers."""
    pos = 0
    while pos < len(packed):
        if wire == VARINT:
            value, pos = _varint(packed, pos)
        else:
            size = 4 if wire == FIXED32 else 8
            if pos + size > len(packed):
                raise ProtobufError("truncated packed field")
            value, pos = int.from_bytes(packed[pos:pos + size], "little"), pos + size
        yield value


def _json_scalar(value: Any) -> Any:
    return base64.b64encode(value).decode() if isinstance(value, bytes) else value


def _parse_json(raw: bytes, path: str) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as err:
        raise ProtobufError(f"{path}: invalid JSON in embedded raw data: {err}") from None


class _Decoder:
    def __init__(self) -> None:
        self.table = table()
        self.notes: list[str] = []

    def unknown(self, buf: bytes, path: str = "") -> dict:
        """A runtime.Unknown envelope → the object it carries, with apiVersion and kind."""
        envelope = self.plain(buf, "k8s.io.apimachinery.pkg.runtime.Unknown")
        type_meta = self.plain(envelope.get("typeMeta", b""), "k8s.io.apimachinery.pkg.runtime.TypeMeta")
        api_version, kind = type_meta.get("apiVersion", ""), type_meta.get("kind", "")
        if envelope.get("contentEncoding"):
            raise ProtobufError(f"unsupported protobuf content encoding {envelope['contentEncoding']!r}")
        if not kind:
            raise ProtobufError(f"Object 'Kind' is missing in protobuf data (apiVersion {api_version!r})")
        message = message_type(api_version, kind)
        if message is None:
            raise ProtobufError(f'no kind "{kind}" is registered for version "{api_version}"')
        return {"apiVersion": api_version, "kind": kind, **self.object(envelope.get("raw", b""), message, path)}

    def plain(self, buf: bytes, message: str) -> dict[str, Any]:
        """The fields of a small fixed-layout message by name, last value winning, bytes left as
        bytes and nested messages left encoded."""
        fields = self.table.messages[message]
        out: dict[str, Any] = {}
        for number, wire, value in iter_fields(buf):
            if number in fields:
                name, kind = fields[number][:2]
                if kind != "message":
                    value = _single(kind, wire, value, name)
                elif wire != LENGTH_DELIMITED:
                    raise ProtobufError(f"{name}: wire type {wire} does not fit a message field")
                out[name] = value
        return out

    def value(self, buf: bytes, message: str, path: str) -> Any:
        """The JSON form of one encoded message."""
        special = _SPECIAL.get(message)
        if special is not None:
            return special(self, buf, path)
        if message in self.table.list_wrappers:
            return self.object(buf, message, path).get("items", [])
        return self.object(buf, message, path)

    def object(self, buf: bytes, message: str, path: str, required: frozenset[str] = frozenset()) -> dict:
        fields = self.table.messages[message]
        required = required | _required(message)
        occurrences: dict[int, list[tuple[int, int | bytes]]] = {}
        for number, wire, value in iter_fields(buf):
            if number in fields:
                occurrences.setdefault(number, []).append((wire, value))
            else:
                self.notes.append(f"unknown field number {number} in {path or 'the object'} ({message})")
        out: dict[str, Any] = {}
        for number in sorted(occurrences):
            name, kind, label, type_name, pointer = fields[number]
            values = occurrences[number]
            at = f"{path}.{name}" if path else name
            if kind != "message":
                if label == "repeated":
                    value = [_json_scalar(x) for wire, v in values for x in _scalars(kind, wire, v, at)]
                else:
                    value = _json_scalar(_single(kind, *values[-1], at))
                # Go writes value fields even when zero; its JSON leaves out omitempty zeros.
                if label == "repeated" or value or (pointer and kind != "bytes") or name in required:
                    out[name] = value
                continue
            if any(wire != LENGTH_DELIMITED for wire, _ in values):
                raise ProtobufError(f"{at}: wire type does not fit a message field")
            if type_name in self.table.map_entries:
                out[name] = self.map([v for _, v in values], type_name, at)
            elif label == "repeated":
                out[name] = [self.value(v, type_name, f"{at}[{i}]") for i, (_, v) in enumerate(values)]
            elif name == "":  # an embedded Go struct: its fields are the parent's (json:",inline")
                out.update(self.object(b"".join(v for _, v in values), type_name, path, required))
            else:  # occurrences of a singular message merge, as concatenated encodings do
                value = self.value(b"".join(v for _, v in values), type_name, at)
                if value is not None or name in required:
                    out[name] = value
        return out

    def map(self, entries: list[bytes], entry: str, path: str) -> dict[str, Any]:
        """map<K, V> fields arrive as repeated entry messages (key=1, value=2)."""
        fields = self.table.messages[entry]
        key_kind, (_, value_kind, _, value_type, _) = fields[1][1], fields[2]  # named key and value
        out: dict[str, Any] = {}
        for raw in entries:
            parsed = self.plain(raw, entry)
            key, value = parsed.get("key", _ZERO.get(key_kind, 0)), parsed.get("value")
            key = str(key).lower() if isinstance(key, bool) else str(key)
            if value_kind == "message":
                out[key] = self.value(value if value is not None else b"", value_type, f"{path}[{key}]")
            else:
                out[key] = _json_scalar(_ZERO.get(value_kind, 0) if value is None else value)
        return out


def _time(decoder: _Decoder, buf: bytes, path: str, micro: bool = False) -> str | None:
    fields = decoder.plain(buf, MICRO_TIME if micro else TIME)
    return _timestamp(fields.get("seconds", 0), fields.get("nanos", 0), micro)


def _raw_json(decoder: _Decoder, raw: bytes, path: str) -> Any:
    """Embedded raw data: JSON, or a nested protobuf-encoded object; empty → null."""
    if not raw:
        return None
    if raw.startswith(MAGIC):
        return decoder.unknown(raw[len(MAGIC):], path)
    return _parse_json(raw, path)


def _int_or_string(decoder: _Decoder, buf: bytes, path: str) -> int | str:
    fields = decoder.plain(buf, INT_OR_STRING)
    return fields.get("strVal", "") if fields.get("type", 0) == 1 else fields.get("intVal", 0)


_SPECIAL = {
    TIME: _time,
    MICRO_TIME: lambda d, buf, path: _time(d, buf, path, micro=True),
    DURATION: lambda d, buf, path: durations.format_ns(d.plain(buf, DURATION).get("duration", 0)),
    QUANTITY: lambda d, buf, path: d.plain(buf, QUANTITY).get("string") or "0",
    INT_OR_STRING: _int_or_string,
    RAW_EXTENSION: lambda d, buf, path: _raw_json(d, d.plain(buf, RAW_EXTENSION).get("raw", b""), path),
    FIELDS_V1: lambda d, buf, path: _raw_json(d, d.plain(buf, FIELDS_V1).get("Raw", b""), path),
}


def decode(body: bytes) -> tuple[dict, list[str]]:
    """A protobuf request body → (the object as the JSON decoder would have produced it, with
    apiVersion and kind; notes on fields the table does not know, for warnings)."""
    body = bytes(body)
    if not body.startswith(MAGIC):
        raise ProtobufError("provided data does not appear to be a protobuf message, expected prefix [107 56 115 0]")
    decoder = _Decoder()
    try:
        obj = decoder.unknown(body[len(MAGIC):])
    except RecursionError:
        raise ProtobufError("protobuf data nested too deeply") from None
    return obj, decoder.notes
