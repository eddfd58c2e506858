#!/usr/bin/env python3
"""Generate ketch/api/data/protobuf_fields.json: the field numbers of every Kubernetes proto message.

    scripts/gen_protobuf_fields.py [KUBECTL ...]

Default: /usr/bin/kubectl (1.32) and the Cloud SDK's kubectl.1.33; the committed table was
generated from both.

kubectl 1.32 and 1.33 embed the gzip-compressed FileDescriptorProto of each k8s.io/api and
k8s.io/apimachinery `generated.proto` (registered by gogo-protobuf), gogoproto field options
included; kubectl 1.35 no longer does. We find the gzip members in the binary, keep the descriptors of `generated.proto` files
and read descriptor.proto's wire format with ketch's own reader (no protobuf package needed).
With several binaries the tables are merged, later ones winning: Kubernetes never reuses a
field number, so a newer kubectl only adds fields.

Proto field names are mostly the JSON names, but not always: go-to-protobuf names a field after
its Go `protobuf:"name=..."` tag (`Webhooks`, `uID`, `aPIGroup`) and turns embedded structs
(`json:",inline"`, e.g. LocalObjectReference in ConfigMapKeySelector, VolumeSource in Volume)
into a message field of their own. The JSON names are therefore taken from the OpenAPI
definitions (`ketch.api.schema`; the same message in another version of its group when this
version is gone), matching case-insensitively; an embedded struct gets the JSON name "" (its
fields belong to the parent object, as with Go's `json:",inline"`).

Output, one message per line, messages sorted by name and fields by number, so regenerating is
deterministic:
    {"source": [{"kubectl": version, "files": n}, ...],
     "mapEntries": [message, ...],           # map<K, V> entry messages (key=1, value=2)
     "listWrappers": [message, ...],         # Go named slices (ExtraValue, Verbs): JSON is the list
     "messages": {message: {number: [jsonName, type, label, typeName, nullable]}}}
typeName is "" for scalars; nullable is gogoproto.nullable from the descriptor: true where the Go
field is a pointer (written only when set, so an explicit zero is meaningful), false where it is
a value (written always, even when zero).
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ketch.api import schema  # noqa: E402
from ketch.api.protobuf import FIELDS_FILE, LENGTH_DELIMITED, VARINT, iter_fields  # noqa: E402

GZIP_MEMBER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00"
DEFAULT_KUBECTLS = ("/usr/bin/kubectl", "/usr/lib/google-cloud-sdk/bin/kubectl.1.33")
MAX_DESCRIPTOR = 4 << 20  # the largest (core/v1) decompresses to well under 1 MiB
GOGO_NULLABLE = 65001  # gogoproto.nullable, a FieldOptions extension

# descriptor.proto: FieldDescriptorProto.Type and .Label values.
TYPES = {1: "double", 2: "float", 3: "int64", 4: "uint64", 5: "int32", 6: "fixed64", 7: "fixed32",
         8: "bool", 9: "string", 10: "group", 11: "message", 12: "bytes", 13: "uint32", 14: "enum",
         15: "sfixed32", 16: "sfixed64", 17: "sint32", 18: "sint64"}
LABELS = {1: "optional", 2: "required", 3: "repeated"}


def _strings(buf: bytes, number: int) -> list[str]:
    return [v.decode() for n, w, v in iter_fields(buf) if n == number and w == LENGTH_DELIMITED]


def _messages(buf: bytes, number: int) -> list[bytes]:
    return [v for n, w, v in iter_fields(buf) if n == number and w == LENGTH_DELIMITED]


def _field(buf: bytes) -> tuple[int, list]:
    """FieldDescriptorProto: name=1 number=3 label=4 type=5 type_name=6 options=8 json_name=10."""
    values: dict[int, int | bytes] = {n: v for n, _, v in iter_fields(buf)}
    name = values.get(10, values[1]).decode()
    type_name = values[6].decode().lstrip(".") if 6 in values else ""
    return values[3], [name, TYPES[values[5]], LABELS[values[4]], type_name, _nullable(values.get(8, b""))]


def _nullable(options: bytes) -> bool:
    """gogoproto.nullable (FieldOptions extension 65001, default true): whether the Go field is a
    pointer, which Go writes only when set. go-to-protobuf sets it false for every value field."""
    return all(not (n == GOGO_NULLABLE and w == VARINT and v == 0) for n, w, v in iter_fields(options))


def _is_map_entry(options: list[bytes]) -> bool:
    """MessageOptions.map_entry = 7."""
    return any(n == 7 and w == VARINT and v for opt in options for n, w, v in iter_fields(opt))


def _add_message(buf: bytes, scope: str, messages: dict, map_entries: set) -> None:
    """DescriptorProto: name=1 field=2 nested_type=3 options=7."""
    name = f"{scope}.{_strings(buf, 1)[0]}"
    messages.setdefault(name, {}).update(_field(f) for f in _messages(buf, 2))
    if _is_map_entry(_messages(buf, 7)):
        map_entries.add(name)
    for nested in _messages(buf, 3):
        _add_message(nested, name, messages, map_entries)


def descriptors(binary: bytes) -> list[bytes]:
    """The FileDescriptorProtos of every `generated.proto` gzip member in `binary`."""
    found = []
    pos = binary.find(GZIP_MEMBER)
    while pos >= 0:
        try:
            raw = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(binary[pos:pos + MAX_DESCRIPTOR])
            names = _strings(raw, 1)
        except (zlib.error, UnicodeDecodeError, ValueError, KeyError):
            names = []  # not a descriptor, just bytes that look like a gzip header
        if names and names[0].endswith("generated.proto"):
            found.append(raw)
        pos = binary.find(GZIP_MEMBER, pos + 1)
    return found


def _openapi_properties(message: str) -> set[str] | None:
    """JSON property names of a message's OpenAPI definition, or of its namesakes in other versions
    of the same group when the 1.35 definitions no longer carry this version."""
    defs = schema.definitions()
    name = "io.k8s." + message.removeprefix("k8s.io.")
    if name in defs:
        return set(defs[name].get("properties", {}))
    package, _, short = name.rpartition(".")
    group = package.rpartition(".")[0]
    namesakes = [d for d in defs if d.rpartition(".")[2] == short and d.rpartition(".")[0].rpartition(".")[0] == group]
    if not namesakes:
        return None
    return {p for d in namesakes for p in defs[d].get("properties", {})}


def _embedded_names(messages: dict[str, dict], message: str, props: set[str], seen: frozenset = frozenset()) -> set[str]:
    """The lower-cased JSON names `message` contributes when embedded in a parent with `props`
    (its own embedded structs expanded), or an empty set when it cannot be embedded there."""
    names: set[str] = set()
    for name, kind, _, type_name, _ in messages.get(message, {}).values():
        sub = set()
        if name.lower() not in props and kind == "message" and type_name not in seen:
            sub = _embedded_names(messages, type_name, props, seen | {message})
        names |= sub or {name.lower()}
    return names if names and names <= props else set()


def json_names(messages: dict[str, dict], map_entries: set[str]) -> list[str]:
    """Rename fields to their JSON names in place; return the fields that could not be checked."""
    own = {m: _openapi_properties(m) for m in messages if m not in map_entries}
    inherited: dict[str, set[str]] = {}  # definition-less embedded structs take their parent's names
    unresolved = []

    def resolve(message: str, props: set[str]) -> None:
        by_lower = {p.lower(): p for p in props}
        for row in messages[message].values():
            name, kind = row[0], row[1]
            if name in props:
                continue
            if name.lower() in by_lower:
                row[0] = by_lower[name.lower()]
            elif kind == "message" and _embedded_names(messages, row[3], set(by_lower)):
                row[0] = ""
                if not own.get(row[3]):
                    inherited.setdefault(row[3], set()).update(props)
            else:
                unresolved.append(f"{message}.{name}")

    for message, props in own.items():
        if props:
            resolve(message, props)
    for message, props in inherited.items():
        resolve(message, props)
    return unresolved


def list_wrappers(messages: dict[str, dict]) -> list[str]:
    """Messages standing for a Go named slice: one repeated `items` field, and no definition of their own."""
    return sorted(m for m, fields in messages.items()
                  if list(fields) == [1] and fields[1][0] == "items" and fields[1][2] == "repeated"
                  and _openapi_properties(m) is None)


def kubectl_version(kubectl: str) -> str:
    out = subprocess.run([kubectl, "version", "--client", "-o", "json"], capture_output=True, text=True,
                         check=True).stdout
    return json.loads(out)["clientVersion"]["gitVersion"]


def dump(table: dict) -> str:
    lines = ["{"] + [f"{json.dumps(key)}: {json.dumps(table[key])}," for key in ("source", "mapEntries", "listWrappers")]
    lines.append('"messages": {')
    items = sorted(table["messages"].items())
    for i, (name, fields) in enumerate(items):
        comma = "," if i < len(items) - 1 else ""
        body = json.dumps({str(n): fields[n] for n in sorted(fields)}, separators=(",", ":"))
        lines.append(f"{json.dumps(name)}: {body}{comma}")
    lines += ["}", "}"]
    return "\n".join(lines) + "\n"


def generate(kubectls: list[str]) -> dict:
    messages: dict[str, dict] = {}
    map_entries: set[str] = set()
    source = []
    for kubectl in kubectls:
        files = descriptors(Path(kubectl).read_bytes())
        if not files:
            raise SystemExit(f"{kubectl}: no embedded generated.proto descriptors (kubectl > 1.33?)")
        for fd in files:
            package = _strings(fd, 2)[0]  # FileDescriptorProto: name=1 package=2 message_type=4
            for message in _messages(fd, 4):
                _add_message(message, package, messages, map_entries)
        version = kubectl_version(kubectl)
        source.append({"kubectl": re.sub(r"-.*", "", version), "files": len(files)})
    unresolved = json_names(messages, map_entries)
    return {"source": source, "mapEntries": sorted(map_entries), "listWrappers": list_wrappers(messages),
            "messages": messages, "unresolved": unresolved}


def main(argv: list[str]) -> None:
    table = generate(argv or [k for k in DEFAULT_KUBECTLS if Path(k).exists()])
    FIELDS_FILE.parent.mkdir(parents=True, exist_ok=True)
    text = dump(table)
    FIELDS_FILE.write_text(text)
    print(f"{FIELDS_FILE}: {len(table['messages'])} messages, {len(text) // 1024} KiB, from {table['source']}")
    if table["unresolved"]:
        print(f"kept the proto name of {len(table['unresolved'])} fields absent from the OpenAPI definitions:",
              *table["unresolved"], sep="\n  ")


if __name__ == "__main__":
    main(sys.argv[1:])
