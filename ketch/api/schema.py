"""The structural schema of every API type: Kubernetes' own OpenAPI definitions.

The definitions come from the `kubernetes-validate` package, which ships the upstream OpenAPI
definitions (turned into JSON Schema) for each Kubernetes release. We normalise them back to the
OpenAPI v2 shape the API server publishes (`type` a single string, `$ref` into `#/definitions/`),
so one document serves structural validation, pruning, strategic-merge keys, `kubectl explain`
and the published OpenAPI. Types the upstream release no longer carries (the book's legacy
versions) are added by `ketch.api.legacy` through `add_definitions`.

`Node` is a read-only view of one position in a schema: what a walker (defaulting, validation,
strategic merge patch, server-side apply) needs to know there.
"""
from __future__ import annotations

import copy
import functools
from functools import cached_property
import importlib.resources
from dataclasses import dataclass
from typing import Any, Iterator

import orjson

KUBERNETES_VERSION = "1.35.0"
_SCHEMA_DIR = f"v{KUBERNETES_VERSION}-local"

INT_OR_STRING = "io.k8s.apimachinery.pkg.util.intstr.IntOrString"
QUANTITY = "io.k8s.apimachinery.pkg.api.resource.Quantity"
OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"

_definitions: dict[str, dict] | None = None


def _normalise(schema: Any) -> Any:
    """JSON Schema (as kubernetes-validate ships it) → OpenAPI v2 (as the apiserver publishes)."""
    if isinstance(schema, list):
        return [_normalise(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "$ref":
            out[key] = value.replace("#/$defs/", "#/definitions/")
        elif key == "type" and isinstance(value, list):
            types = [t for t in value if t != "null"]
            out[key] = types[0] if len(types) == 1 else types
        elif key == "enum" and isinstance(value, list):
            # kubernetes-validate pins apiVersion/kind with enums; upstream publishes none.
            continue
        elif key in ("properties", "patternProperties"):
            out[key] = {k: _normalise(v) for k, v in value.items()}
        else:
            out[key] = _normalise(value)
    return out


def _load() -> dict[str, dict]:
    root = importlib.resources.files("kubernetes_validate") / "kubernetes-json-schema" / _SCHEMA_DIR
    raw = orjson.loads((root / "_definitions.json").read_bytes())["$defs"]
    defs = {name: _normalise(body) for name, body in raw.items()}
    # Upstream publishes these two as plain strings with a format; JSON Schema made them oneOf.
    defs[INT_OR_STRING] = {
        "description": "IntOrString is a type that can hold an int32 or a string.",
        "format": "int-or-string",
        "type": "string",
    }
    defs[QUANTITY] = {
        "description": "Quantity is a fixed-point representation of a number, such as 500m or 512Mi.",
        "type": "string",
    }
    return defs


def definitions() -> dict[str, dict]:
    """All definitions by name (`io.k8s.api.core.v1.Pod`, ...), OpenAPI v2 shaped. Do not mutate."""
    global _definitions
    if _definitions is None:
        _definitions = _load()
    return _definitions


def add_definitions(extra: dict[str, dict]) -> None:
    """Register definitions the upstream release lacks (legacy API versions)."""
    definitions().update(extra)
    node.cache_clear()
    _resolved.clear()


def copy_definition(name: str) -> dict:
    return copy.deepcopy(definitions()[name])


@dataclass(frozen=True, eq=False)
class Node:
    """One position in a schema. `ref` is the definition name when the position is a named type."""

    schema: dict
    ref: str | None = None

    @cached_property
    def type(self) -> str:
        """'object', 'array', 'string', 'integer', 'number', 'boolean', or '' (any)."""
        if self.ref == INT_OR_STRING:
            return "int-or-string"
        if self.ref == QUANTITY:
            return "quantity"
        t = self.schema.get("type", "")
        if isinstance(t, list):
            return ""
        if not t and ("properties" in self.schema or "additionalProperties" in self.schema):
            return "object"
        return t

    @cached_property
    def format(self) -> str:
        return self.schema.get("format", "")

    @property
    def description(self) -> str:
        return self.schema.get("description", "")

    @cached_property
    def properties(self) -> dict[str, dict]:
        return self.schema.get("properties", {})

    @cached_property
    def required(self) -> tuple[str, ...]:
        return tuple(self.schema.get("required", ()))

    @cached_property
    def is_map(self) -> bool:
        """An object whose keys are free (labels, resource lists, ...)."""
        return "additionalProperties" in self.schema and not self.properties

    @cached_property
    def preserves_unknown(self) -> bool:
        """True where arbitrary content is allowed (RawExtension, JSON, free-form objects)."""
        if self.schema.get("x-kubernetes-preserve-unknown-fields"):
            return True
        return self.type in ("object", "") and not self.properties and "additionalProperties" not in self.schema

    @cached_property
    def _field_nodes(self) -> dict[str, Node]:
        return {name: _resolve(sub) for name, sub in self.properties.items()}

    @cached_property
    def lowered_field_names(self) -> dict[str, tuple[str, ...]]:
        """Field names by their lower-case spelling (for the book-era case-insensitive decoding)."""
        out: dict[str, tuple[str, ...]] = {}
        for name in self.properties:
            out[name.lower()] = out.get(name.lower(), ()) + (name,)
        return out

    def field(self, name: str) -> Node | None:
        return self._field_nodes.get(name)

    def fields(self) -> Iterator[tuple[str, Node]]:
        return iter(self._field_nodes.items())

    @cached_property
    def values(self) -> Node | None:
        """The schema of a map's values."""
        sub = self.schema.get("additionalProperties")
        return _resolve(sub) if isinstance(sub, dict) else None

    @cached_property
    def items(self) -> Node | None:
        sub = self.schema.get("items")
        return _resolve(sub) if isinstance(sub, dict) else None

    # Merge semantics (strategic merge patch and server-side apply) of a list or map field.
    @cached_property
    def patch_strategy(self) -> str:
        return self.schema.get("x-kubernetes-patch-strategy", "")

    @cached_property
    def patch_merge_key(self) -> str:
        return self.schema.get("x-kubernetes-patch-merge-key", "")

    @cached_property
    def list_type(self) -> str:
        """'atomic', 'set', 'map', or '' (unspecified: atomic for apply)."""
        return self.schema.get("x-kubernetes-list-type", "")

    @cached_property
    def list_map_keys(self) -> tuple[str, ...]:
        return tuple(self.schema.get("x-kubernetes-list-map-keys", ()))

    @cached_property
    def map_type(self) -> str:
        return self.schema.get("x-kubernetes-map-type", "")


_resolved: dict[int, tuple[dict, Node]] = {}


def _resolve(sub: dict) -> Node:
    """The Node for a property or item schema; cached, since schema dicts live as long as the process
    (the cache keeps `sub` alive, so its id cannot be reused)."""
    hit = _resolved.get(id(sub))
    if hit is not None and hit[0] is sub:
        return hit[1]
    node_ = _resolve_uncached(sub)
    _resolved[id(sub)] = (sub, node_)
    return node_


def _resolve_uncached(sub: dict) -> Node:
    ref = sub.get("$ref")
    if ref is None:
        all_of = sub.get("allOf")
        if all_of and len(all_of) == 1 and "$ref" in all_of[0]:
            ref = all_of[0]["$ref"]
    if ref is None:
        return Node(sub)
    name = ref.rsplit("/", 1)[-1]
    merged = definitions()[name]
    # Field-level extensions (patch strategy of the field holding the ref) live beside the ref.
    extras = {k: v for k, v in sub.items() if k.startswith("x-kubernetes-")}
    if extras:
        merged = {**merged, **extras}
    return Node(merged, name)


@functools.lru_cache(maxsize=None)
def node(name: str) -> Node:
    """The Node of a named definition, e.g. node('io.k8s.api.core.v1.Pod')."""
    return Node(definitions()[name], name)


def gvk_index() -> dict[tuple[str, str, str], str]:
    """(group, version, kind) → definition name, from x-kubernetes-group-version-kind."""
    index: dict[tuple[str, str, str], str] = {}
    for name, body in definitions().items():
        for gvk in body.get("x-kubernetes-group-version-kind", ()):
            index.setdefault((gvk["group"], gvk["version"], gvk["kind"]), name)
    return index


def walk(obj: Any, at: Node, path: str = "") -> Iterator[tuple[str, Any, Node]]:
    """Yield (path, value, node) for every value of `obj` that the schema describes, parents first.

    Paths are written the way Kubernetes field errors name them: `spec.containers[0].ports[1]`,
    `metadata.labels[app]`.
    """
    yield path, obj, at
    if isinstance(obj, dict):
        if at.properties:
            for key, value in obj.items():
                sub = at.field(key)
                if sub is not None:
                    yield from walk(value, sub, f"{path}.{key}" if path else key)
        elif at.values is not None:
            for key, value in obj.items():
                yield from walk(value, at.values, f"{path}[{key}]")
    elif isinstance(obj, list) and at.items is not None:
        for i, value in enumerate(obj):
            yield from walk(value, at.items, f"{path}[{i}]")
