"""Server-side apply and the `metadata.managedFields` bookkeeping of every write.

Our counterpart of sigs.k8s.io/structured-merge-diff (typed merge, compare, field sets) and of
k8s.io/apimachinery/pkg/util/managedfields (the chain of managers the apiserver wraps around it):

* `server_side_apply` merges an applied configuration into the live object: fields merge by the
  schema's list and map types, fields this manager applied before and no longer applies are
  removed unless someone else owns them, and changing a field another manager owns is a 409
  conflict unless `force` moves the field to this manager.
* `update_managed_fields` records which fields an ordinary create/update/patch set or changed.

The objects are plain dicts in the request's API version; `node` is the kind's schema. Fields a
strategy resets (`status` on the main resource, everything else on `/status`) are passed as
`reset_fields` and are never owned by the writer, as upstream's IgnoredFields.
"""
from __future__ import annotations

import copy
import json
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Iterable, Sequence

from . import schema
from .errors import ApiError, bad_request
from .fieldpath import (FieldSet, PathElement, element_order, field_element, go_json, key_element, parse_fields_v1,
                        path_string, value_element)
from .jsonclone import clone, json_equal, same_json

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
MAX_UPDATE_MANAGERS = 10
OLD_UPDATES_MANAGER = "ancient-changes"
BEFORE_FIRST_APPLY = "before-first-apply"
KUBECTL = "kubectl"  # kubectl --server-side's manager; it may take over client-side apply's fields

# Fields no manager ever owns (stripMetaManager); a plain difference, children are kept.
_STRIPPED = FieldSet([(field_element("apiVersion"),), (field_element("kind"),), (field_element("metadata"),)]
                     + [(field_element("metadata"), field_element(f)) for f in (
                         "name", "namespace", "creationTimestamp", "selfLink", "uid", "clusterName",
                         "generation", "managedFields", "resourceVersion")])

# List-map key fields the OpenAPI v3 schema defaults (ours, from v2, does not carry defaults).
_KEY_DEFAULTS = {("io.k8s.api.core.v1.ContainerPort", "protocol"): "TCP",
                 ("io.k8s.api.core.v1.ServicePort", "protocol"): "TCP"}

# Struct fields Go embeds by value, so an empty object already has them (`.` ownership markers
# appear only for fields the empty object lacks).
_VALUE_FIELDS = frozenset({"metadata", "spec", "status"})
_VALUE_STRUCTS = frozenset({
    "io.k8s.api.core.v1.PodTemplateSpec", "io.k8s.api.batch.v1.JobTemplateSpec",
    "io.k8s.api.apps.v1.DeploymentStrategy", "io.k8s.api.apps.v1.DaemonSetUpdateStrategy",
    "io.k8s.api.apps.v1.StatefulSetUpdateStrategy", "io.k8s.api.core.v1.LoadBalancerStatus",
    "io.k8s.api.core.v1.VolumeResourceRequirements"})


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()  # an absent field, as opposed to an explicit null


# ---------------------------------------------------------------------------------------------
# How a schema position merges


SCALAR, ATOMIC, STRUCT, MAP, SET, KEYED, DEDUCED = "scalar", "atomic", "struct", "map", "set", "keyed", "deduced"


_shapes: dict[schema.Node, str] = {}  # nodes hash by identity


def _shape(node: schema.Node | None) -> str:
    """The element relationship of a schema position, as k8s' schema converter derives it."""
    if node is None:
        return DEDUCED
    shape = _shapes.get(node)
    if shape is None:
        shape = _derive_shape(node)
        if len(_shapes) >= 10_000:
            _shapes.clear()
        _shapes[node] = shape
    return shape


def _derive_shape(node: schema.Node) -> str:
    kind = node.type
    if kind == "array":
        if node.list_type == "atomic":
            return ATOMIC
        if node.list_type == "set":
            return SET
        if node.list_type == "map":
            return KEYED
        if "merge" in node.patch_strategy.split(","):
            return KEYED if node.patch_merge_key else SET
        return ATOMIC
    if kind in ("object", ""):
        if node.properties:
            return ATOMIC if node.map_type == "atomic" else STRUCT
        if node.values is not None:
            return ATOMIC if node.map_type == "atomic" else MAP
        return DEDUCED
    return SCALAR


def _resolve(node: schema.Node | None, value: Any) -> str:
    """The shape at `node` for `value`; free-form content is a map of free-form values, lists atomic."""
    shape = _shape(node)
    if shape != DEDUCED:
        return shape
    return MAP if isinstance(value, dict) else ATOMIC if isinstance(value, list) else SCALAR


def _child(node: schema.Node | None, shape: str, key: str) -> tuple[schema.Node | None, bool]:
    """(schema of key, whether key is a declared struct field)."""
    if node is None:
        return None, False
    if shape == STRUCT:
        sub = node.field(key)
        return sub, sub is not None
    return node.values, False


def _list_keys(node: schema.Node) -> tuple[str, ...]:
    return node.list_map_keys if node.list_type == "map" else (node.patch_merge_key,)


class _TypedError(Exception):
    """Objects that do not fit the schema (smd ValidationErrors)."""

    def __init__(self, errors: list[str]):
        super().__init__(errors[0] if len(errors) == 1 else "errors:\n" + "\n".join("  " + e for e in errors))


def _item_element(node: schema.Node, shape: str, item: Any, index: int, path: Sequence[PathElement]) -> PathElement:
    if shape == SET:
        if isinstance(item, (dict, list)):
            raise _TypedError([f"{path_string(path)}: element {index}: associative list without keys has an element "
                               f"that's a {'map' if isinstance(item, dict) else 'list'} type"])
        return value_element(item)
    if not isinstance(item, dict):
        raise _TypedError([f"{path_string(path)}: element {index}: associative list with keys has an element that's "
                           f"not a map type"])
    element = node.items
    keys: dict[str, Any] = {}
    for name in _list_keys(node):
        value = item.get(name)
        if value is None and element is not None:
            value = _KEY_DEFAULTS.get((element.ref, name))
            if value is None and name not in element.required:
                continue
        if value is None:
            raise _TypedError([f"{path_string(path)}: element {index}: associative list with keys has an element that "
                               f"omits key field {json.dumps(name)} (and doesn't have default value)"])
        keys[name] = value
    return key_element(keys)


def _items_by_element(value: Any, node: schema.Node, shape: str, path: Sequence[PathElement]
                      ) -> dict[PathElement, list]:
    """List items grouped by path element, in first-seen order (duplicates kept together)."""
    out: dict[PathElement, list] = {}
    if isinstance(value, list):
        for i, item in enumerate(value):
            out.setdefault(_item_element(node, shape, item, i, path), []).append(item)
    return out


def _empty(value: Any) -> bool:
    return value is MISSING or value is None or value == {} or value == []


def _is_leaf(shape: str, left: Any, right: Any) -> bool:
    """Scalars, atomic values, empty maps/lists and values of the wrong JSON type are compared whole."""
    if shape in (SCALAR, ATOMIC) or (_empty(left) and _empty(right)):
        return True
    container = dict if shape in (STRUCT, MAP) else list
    return any(v is not MISSING and v is not None and not isinstance(v, container) for v in (left, right))


# ---------------------------------------------------------------------------------------------
# Typed operations on objects


def validate(value: Any, node: schema.Node | None, path: tuple = ()) -> list[str]:
    """Why `value` cannot be typed by `node`: undeclared fields, list items without keys, duplicates."""
    errors: list[str] = []
    shape = _resolve(node, value)
    if shape in (STRUCT, MAP) and isinstance(value, dict):
        for key, sub in value.items():
            child, named = _child(node, shape, key)
            here = path + (field_element(key),)
            if shape == STRUCT and not named and not node.preserves_unknown:
                errors.append(f"{path_string(here)}: field not declared in schema")
                continue
            errors += validate(sub, child, here)
    elif shape in (SET, KEYED) and isinstance(value, list):
        seen: set[PathElement] = set()
        for i, item in enumerate(value):
            try:
                pe = _item_element(node, shape, item, i, path)
            except _TypedError as e:
                errors.append(str(e))
                continue
            if pe in seen:
                errors.append(f"{path_string(path)}: duplicate entries for key {pe.display}")
            seen.add(pe)
            errors += validate(item, node.items, path + (pe,))
    return errors


def to_field_set(value: Any, node: schema.Node | None) -> FieldSet:
    """Every field `value` sets (TypedValue.ToFieldSet)."""
    out = FieldSet()
    _collect(value, node, (), out)
    return out


def _collect(value: Any, node: schema.Node | None, path: tuple, out: FieldSet) -> None:
    shape = _resolve(node, value)
    if shape in (SCALAR, ATOMIC):
        out.insert(path)
    elif shape in (STRUCT, MAP):
        if not isinstance(value, dict):
            if value is not None:
                out.insert(path)
            return
        for key, sub in value.items():
            child, named = _child(node, shape, key)
            here = path + (field_element(key),)
            _collect(sub, child, here, out)
            if not named:
                out.insert(here)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            here = path + (_item_element(node, shape, item, i, path),)
            _collect(item, node.items, here, out)
            out.insert(here)
    elif value is not None:
        out.insert(path)


@dataclass
class Comparison:
    added: FieldSet
    modified: FieldSet
    removed: FieldSet

    def excluding(self, ignored: FieldSet) -> Comparison:
        if ignored.empty():
            return self
        return Comparison(self.added.recursive_difference(ignored), self.modified.recursive_difference(ignored),
                          self.removed.recursive_difference(ignored))


def compare(old: Any, new: Any, node: schema.Node | None) -> Comparison:
    """Fields added, modified and removed going from `old` to `new` (TypedValue.Compare)."""
    result = Comparison(FieldSet(), FieldSet(), FieldSet())
    _compare(old, new, node, (), result)
    return result


def _compare(left: Any, right: Any, node: schema.Node | None, path: tuple, result: Comparison) -> None:
    shape = _resolve(node, right if right is not MISSING else left)
    if _is_leaf(shape, left, right):
        if left is MISSING:
            result.added.insert(path)
        elif right is MISSING:
            result.removed.insert(path)
        elif not json_equal(left, right):
            result.modified.insert(path)
        return
    if same_json(left, right):
        return  # most of an update is unchanged: nothing below can differ
    if shape in (STRUCT, MAP):
        lmap = left if isinstance(left, dict) else {}
        rmap = right if isinstance(right, dict) else {}
        for key in dict.fromkeys([*lmap, *rmap]):
            child, _ = _child(node, shape, key)
            _compare(lmap.get(key, MISSING), rmap.get(key, MISSING), child, path + (field_element(key),), result)
    else:
        litems = _items_by_element(left, node, shape, path)
        ritems = _items_by_element(right, node, shape, path)
        for pe in dict.fromkeys([*litems, *ritems]):
            _compare(litems[pe][0] if pe in litems else MISSING, ritems[pe][0] if pe in ritems else MISSING,
                     node.items, path + (pe,), result)
    if left is MISSING:
        result.added.insert(path)
    elif right is MISSING:
        result.removed.insert(path)


def created_fields_v1(zero: Any, new: Any, node: schema.Node | None, reset: FieldSet, stripped: FieldSet) -> dict:
    """The FieldsV1 of what a create's manager owns: `added ∪ modified` of compare(zero, new), less
    `reset` (with all below it) and less `stripped`'s members — as _record_update would find them.

    A create is the commonest write and `zero` has few fields, so this walks `new` alone and writes
    the FieldsV1 JSON as it goes (elements sorted, an owned node with children leading with "."),
    with no field set in between; paths only `zero` has would be "removed" and are not wanted here.
    """
    body: dict = {}
    _created_into(zero, new, node, body, reset, stripped)
    return body


def _created_into(left: Any, right: Any, node: schema.Node | None, body: dict,
                  reset: FieldSet | None, stripped: FieldSet | None) -> None:
    """Write into `body` the entries below `right` (a container `left` also has) that differ from `left`."""
    shape = _resolve(node, right)
    if shape in (STRUCT, MAP):
        lmap = left if isinstance(left, dict) else {}
        for key in sorted(right):
            child, _ = _child(node, shape, key)
            _created_entry(lmap.get(key, MISSING), right[key], child, field_element(key), body, reset, stripped)
    else:
        litems = _items_by_element(left, node, shape, ())
        ritems = _items_by_element(right, node, shape, ())
        for element in sorted(ritems, key=element_order):
            same = litems.get(element)
            _created_entry(same[0] if same else MISSING, ritems[element][0], node.items, element, body, reset,
                           stripped)


def _created_entry(left: Any, right: Any, node: schema.Node | None, pe: PathElement, body: dict,
                   reset: FieldSet | None, stripped: FieldSet | None) -> None:
    """The entry of `pe` (holding `right`, where `left` was) in `body`, if the manager owns anything there."""
    if reset is not None:
        if pe in reset.members:
            return
        reset = reset.children.get(pe)
    owned = stripped is None or pe not in stripped.members
    stripped = stripped.children.get(pe) if stripped is not None else None
    if left is MISSING:
        sub = {".": {}} if owned else {}
        _added_into(right, node, sub, reset, stripped)
    elif _is_leaf(_resolve(node, right), left, right):
        if not owned or json_equal(left, right):
            return
        sub = {".": {}}
    else:
        sub = {}
        _created_into(left, right, node, sub, reset, stripped)
    if len(sub) > 1 or (sub and "." not in sub):
        body[pe.text] = sub
    elif sub:
        body[pe.text] = {}  # owned, nothing below: a bare member


def _added_into(value: Any, node: schema.Node | None, body: dict, reset: FieldSet | None,
                stripped: FieldSet | None) -> None:
    """_created_into where the left side has nothing (most of a create): all below `value` is added."""
    shape = DEDUCED if node is None else _shapes.get(node) or _shape(node)
    if shape is DEDUCED:
        shape = MAP if isinstance(value, dict) else ATOMIC if isinstance(value, list) else SCALAR
    if shape is SCALAR or shape is ATOMIC or not value:
        return
    if shape is STRUCT or shape is MAP:
        if not isinstance(value, dict):
            return
        field = node.field if shape is STRUCT else None  # type: ignore[union-attr]  # STRUCT comes from a node
        values = None if node is None else node.values
        for key in sorted(value):
            sub_value = value[key]
            if reset is not None or stripped is not None:
                child = field(key) if field is not None else values
                _created_entry(MISSING, sub_value, child, field_element(key), body, reset, stripped)
            # What _created_entry(MISSING, ...) does with nothing reset or stripped, inlined: this
            # loop visits most of a create's fields.
            elif not sub_value or not isinstance(sub_value, (dict, list)):
                body["f:" + key] = {}  # a scalar or an empty value: owned whole, whatever its shape
            else:
                sub = {".": {}}
                _added_into(sub_value, field(key) if field is not None else values, sub, None, None)
                body["f:" + key] = sub if len(sub) > 1 else {}
    elif isinstance(value, list):
        items = node.items  # type: ignore[union-attr]  # list shapes come from a node
        by_element = _items_by_element(value, node, shape, ())
        for element in sorted(by_element, key=element_order):
            _created_entry(MISSING, by_element[element][0], items, element, body, reset, stripped)


def merge(live: Any, config: Any, node: schema.Node | None) -> Any:
    """`config` merged into `live` (TypedValue.Merge): config wins, granular maps and lists merge."""
    return _merge(live, config, node, ())


def _merge(left: Any, right: Any, node: schema.Node | None, path: tuple) -> Any:
    shape = _resolve(node, right if right is not MISSING else left)
    if _is_leaf(shape, left, right):
        return copy.deepcopy(right if right is not MISSING else left)
    if shape in (STRUCT, MAP):
        lmap = left if isinstance(left, dict) else {}
        rmap = right if isinstance(right, dict) else {}
        out = {}
        for key in dict.fromkeys([*lmap, *rmap]):
            child, _ = _child(node, shape, key)
            merged = _merge(lmap.get(key, MISSING), rmap.get(key, MISSING), child, path + (field_element(key),))
            if merged is not MISSING:
                out[key] = merged
        return out if out else MISSING
    return _merge_items(left, right, node, shape, path)


def _merge_items(left: Any, right: Any, node: schema.Node, shape: str, path: tuple) -> Any:
    """Associative lists: shared items keep the config's order, live-only items stay where they were."""
    litems = _items_by_element(left, node, shape, path)
    ritems = _items_by_element(right, node, shape, path)
    lorder, rorder = list(litems), list(ritems)
    shared = iter([pe for pe in rorder if pe in litems])
    next_shared = next(shared, None)
    out: list = []

    def emit(pe: PathElement, lhs: Any, rhs: Any) -> None:
        merged = _merge(lhs, rhs, node.items, path + (pe,))
        if merged is not MISSING:
            out.append(merged)

    i = j = 0
    while i < len(lorder) or j < len(rorder):
        if i < len(lorder) and j < len(rorder):
            pe = lorder[i]
            if pe == rorder[j]:
                emit(pe, litems[pe][0], ritems[pe][0])
                i, j = i + 1, j + 1
                next_shared = next(shared, None)
                continue
            if pe in ritems and next_shared is not None and next_shared != pe:
                i += 1  # shared, but placed later by the config's order
                continue
        if i < len(lorder) and lorder[i] not in ritems:
            for item in litems[lorder[i]]:
                emit(lorder[i], item, MISSING)
            i += 1
            continue
        if j < len(rorder):
            pe = rorder[j]
            emit(pe, litems[pe][0] if pe in litems else MISSING, ritems[pe][0])
            j += 1
            if next_shared == pe:
                next_shared = next(shared, None)
            continue
        i += 1  # a shared live item the config already placed
    return out if out else MISSING


def remove_items(value: Any, doomed: FieldSet, node: schema.Node | None) -> Any:
    """`value` without the members of `doomed` (and everything below them). Emptied maps become null."""
    shape = _resolve(node, value)
    if shape in (STRUCT, MAP) and isinstance(value, dict) and value:
        out = {}
        for key, sub in value.items():
            pe = field_element(key)
            if pe in doomed.members:
                continue
            below = doomed.children.get(pe)
            if below is not None and not below.empty():
                sub = remove_items(sub, below, _child(node, shape, key)[0])
            out[key] = sub
        return out or None
    if shape in (SET, KEYED) and isinstance(value, list) and value:
        kept = []
        for i, item in enumerate(value):
            pe = _item_element(node, shape, item, i, ())
            if pe in doomed.members:
                continue
            below = doomed.children.get(pe)
            if below is not None and not below.empty():
                item = remove_items(item, below, node.items)
            kept.append(item)
        return kept or None
    return value


def _with_named_fields(fields: FieldSet, node: schema.Node | None) -> FieldSet:
    """EnsureNamedFieldsAreMembers: a struct field with owned children counts as owned itself."""
    out = FieldSet()
    out.members = set(fields.members)
    shape = _shape(node)
    for pe, below in fields.children.items():
        child = None
        if node is not None:
            if pe.kind == "f" and shape == STRUCT:
                child = node.field(pe.name)
                if child is not None:
                    out.members.add(pe)
            elif pe.kind == "f" and shape == MAP:
                child = node.values
            elif pe.kind in "kvi" and shape in (SET, KEYED):
                child = node.items
        out.children[pe] = _with_named_fields(below, child)
    return out


def _drop_nulls(value: Any, node: schema.Node | None) -> Any:
    """Typed objects have no nulls: removed and unset fields simply disappear (free-form content keeps them)."""
    if _shape(node) == DEDUCED:
        return value
    shape = _resolve(node, value)
    if isinstance(value, dict) and shape in (STRUCT, MAP):
        return {k: _drop_nulls(v, _child(node, shape, k)[0]) for k, v in value.items() if v is not None}
    if isinstance(value, list) and shape in (SET, KEYED):
        return [_drop_nulls(v, node.items) for v in value]
    return value


def _zero_object(node: schema.Node) -> dict:
    """The kind's empty Go object as JSON: value-embedded structs present, required lists/maps null."""
    cached = _zero_objects.get(node.ref or "")
    if cached is None:
        cached = _build_zero_object(node)
        if node.ref:
            _zero_objects[node.ref] = cached
    return clone(cached)


_zero_objects: dict[str, dict] = {}


def _build_zero_object(node: schema.Node) -> dict:
    out: dict[str, Any] = {}
    for name, sub in node.fields():
        if sub.properties and (name in _VALUE_FIELDS or sub.ref in _VALUE_STRUCTS):
            out[name] = _build_zero_object(sub)
        elif name in node.required and (sub.type == "array" or _shape(sub) in (STRUCT, MAP)):
            out[name] = None
    return out


# ---------------------------------------------------------------------------------------------
# managedFields entries


@dataclass(frozen=True)
class Entry:
    """One managedFields entry: who wrote which fields, how, in which version, when."""

    manager: str
    operation: str
    api_version: str
    fields: FieldSet
    time: str | None = None
    subresource: str = ""

    @property
    def applied(self) -> bool:
        return self.operation == "Apply"


Managed = dict[str, Entry]  # keyed by the manager identifier


def identifier(manager: str, operation: str, api_version: str, subresource: str = "") -> str:
    """Upstream's manager identity: appliers are one manager whatever version they apply in."""
    ident: dict[str, str] = {"manager": manager, "operation": operation}
    if api_version and operation != "Apply":
        ident["apiVersion"] = api_version
    if subresource:
        ident["subresource"] = subresource
    return go_json(ident)


def decode_managed_fields(entries: Any) -> Managed:
    """metadata.managedFields → entries; ValueError for entries upstream refuses to decode."""
    managed: Managed = {}
    for i, raw in enumerate(entries or []):
        if not isinstance(raw, dict):
            raise ValueError(f"managed fields entry {i} is not an object")
        operation = raw.get("operation") or ""
        if operation not in ("Apply", "Update"):
            raise ValueError("operation must be `Apply` or `Update`")
        api_version = raw.get("apiVersion") or ""
        if not api_version:
            raise ValueError("apiVersion must not be empty")
        fields_type = raw.get("fieldsType") or ""
        if not fields_type:
            raise ValueError(f"missing fieldsType in managed fields entry {i}")
        if fields_type != "FieldsV1":
            raise ValueError(f'invalid fieldsType "{fields_type}" in managed fields entry {i}')
        entry = Entry(raw.get("manager") or "", operation, api_version,
                      parse_fields_v1(raw.get("fieldsV1") or {}), raw.get("time"),
                      raw.get("subresource") or "")
        managed[identifier(entry.manager, operation, api_version, entry.subresource)] = entry
    return managed


def _seconds(time: str | None) -> float:
    if not time:
        return 0
    try:
        return int(datetime.fromisoformat(time.replace("Z", "+00:00")).timestamp())
    except ValueError:
        return 0


def encode_managed_fields(managed: Managed) -> list[dict] | None:
    """Entries → metadata.managedFields, in upstream's order (Apply first, then oldest first)."""
    if not managed:
        return None
    ordered = sorted(managed.values(), key=lambda e: (e.operation, _seconds(e.time), e.manager, e.api_version,
                                                      e.subresource))
    return [_entry_json(e.manager, e.operation, e.api_version, e.time, e.fields.to_fields_v1(), e.subresource)
            for e in ordered]


def _entry_json(manager: str, operation: str, api_version: str, time: str | None, fields_v1: dict,
                subresource: str) -> dict:
    """One managedFields entry, its keys in upstream's order and its empty strings left out."""
    entry: dict[str, Any] = {"manager": manager} if manager else {}
    entry["operation"] = operation
    entry["apiVersion"] = api_version
    if time:
        entry["time"] = time
    entry["fieldsType"] = "FieldsV1"
    entry["fieldsV1"] = fields_v1
    if subresource:
        entry["subresource"] = subresource
    return entry


def _set_managed_fields(obj: dict, entries: list[dict] | None) -> None:
    if entries:
        obj.setdefault("metadata", {})["managedFields"] = entries
    elif isinstance(obj.get("metadata"), dict):
        obj["metadata"].pop("managedFields", None)


def _without_managed_fields(obj: dict) -> dict:
    """A view of `obj` without managedFields (shallow: callers only read it)."""
    meta = obj.get("metadata")
    if not isinstance(meta, dict) or "managedFields" not in meta:
        return obj
    return {**obj, "metadata": {k: v for k, v in meta.items() if k != "managedFields"}}


def _reset_set(paths: Iterable[Sequence[str]]) -> FieldSet:
    return FieldSet(tuple(field_element(p) for p in path) for path in paths)


# ---------------------------------------------------------------------------------------------
# The updater (smd merge.Updater with the apiserver's managers around it)


class _Conflicts(Exception):
    def __init__(self, conflicts: dict[str, tuple[Entry, FieldSet]]):
        super().__init__("conflicts")
        self.conflicts = conflicts


def _disown(managed: Managed, change: Comparison, writer: str, force: bool) -> Managed:
    """Take the fields `change` touched away from every other manager (or refuse, if not forced)."""
    touched = change.modified.union(change.added)
    conflicts = {}
    for ident, entry in managed.items():
        if ident != writer:
            clash = entry.fields.intersection(touched)
            if not clash.empty():
                conflicts[ident] = (entry, clash)
    if conflicts and not force:
        raise _Conflicts(conflicts)
    out: Managed = {}
    for ident, entry in managed.items():
        fields = entry.fields
        if ident in conflicts:
            fields = fields.difference(conflicts[ident][1])
        if ident != writer and not change.removed.empty():
            fields = fields.difference(change.removed)
        if not fields.empty():
            out[ident] = replace(entry, fields=fields)
    return out


def _record_update(managed: Managed, old: Any, new: Any, node: schema.Node, manager: str, api_version: str,
                   now: str, subresource: str, ignored: FieldSet, operation: str = "Update") -> Managed:
    """The writer owns what it added or changed; other managers lose it, and lose what it removed."""
    current = "current-operation"
    change = compare(old, new, node).excluding(ignored)
    managed = _disown(managed, change, current, True)
    fields = change.modified.union(change.added).difference(change.removed).recursive_difference(ignored)
    fields = fields.difference(_STRIPPED)
    if fields.empty():
        return managed
    ident = identifier(manager, operation, api_version, subresource)
    previous = managed.get(ident)
    if previous is not None:
        fields = fields.union(previous.fields)
    managed[ident] = Entry(manager, operation, api_version, fields, now, subresource)
    return _cap_update_managers(managed)


def _cap_update_managers(managed: Managed) -> Managed:
    """At most ten Update entries: the oldest are folded into one "ancient-changes" entry per version."""
    updaters = [i for i, e in managed.items() if not e.applied]
    if len(updaters) <= MAX_UPDATE_MANAGERS:
        return managed
    updaters.sort(key=lambda i: (_seconds(managed[i].time), i))
    first_of_version: dict[str, str] = {}
    remaining = len(updaters)
    for ident in updaters:
        if remaining <= MAX_UPDATE_MANAGERS:
            break
        entry = managed[ident]
        bucket = identifier(OLD_UPDATES_MANAGER, "Update", entry.api_version)
        if entry.api_version not in first_of_version:
            first_of_version[entry.api_version] = ident
            continue
        if bucket not in managed:
            first = managed.pop(first_of_version[entry.api_version])
            managed[bucket] = replace(first, manager=OLD_UPDATES_MANAGER, subresource="")
        managed[bucket] = replace(managed[bucket], fields=entry.fields.union(managed[bucket].fields),
                                  time=entry.time)
        del managed[ident]
        remaining -= 1
    return managed


def _prune(merged: Any, managed: Managed, last: FieldSet | None, node: schema.Node) -> Any:
    """Remove what the applier applied last time and no longer does, unless some manager owns it."""
    if last is None or last.empty():
        return merged
    last = _with_named_fields(last, node)
    merged_set = _with_named_fields(to_field_set(merged, node), node)
    owned = FieldSet()
    for entry in managed.values():
        owned = owned.union(entry.fields)
    owned = _with_named_fields(owned, node)
    pruned = remove_items(merged, last, node)
    pruned_set = _with_named_fields(to_field_set(pruned, node), node)
    pruned = remove_items(merged, merged_set.difference(pruned_set.union(owned)), node)
    pruned_set = _with_named_fields(to_field_set(pruned, node), node)
    return remove_items(merged, merged_set.difference(pruned_set).intersection(last), node)


def _apply(managed: Managed, live: dict, config: dict, node: schema.Node, manager: str, force: bool,
           api_version: str, now: str, subresource: str, ignored: FieldSet) -> tuple[dict, Managed]:
    ident = identifier(manager, "Apply", api_version, subresource)
    merged = merge(live, config, node)
    previous = managed.get(ident)
    managed = dict(managed)
    managed[ident] = Entry(manager, "Apply", api_version, to_field_set(config, node).recursive_difference(ignored),
                           previous.time if previous else None, subresource)
    merged = _prune(merged, managed, previous.fields if previous else None, node)
    managed = _disown(managed, compare(live, merged, node).excluding(ignored), ident, force)
    if ident in managed:
        fields = managed[ident].fields.difference(_STRIPPED)
        if fields.empty():
            del managed[ident]
        else:
            managed[ident] = replace(managed[ident], fields=fields)
    if json_equal(live, merged):
        return copy.deepcopy(live), managed
    if ident in managed:
        managed[ident] = replace(managed[ident], time=now)
    return merged, managed


def _allowed_by_last_applied(live: dict, node: schema.Node, api_version: str) -> FieldSet | None:
    """Fields kubectl's client-side apply set and that still hold its value: kubectl may take them."""
    annotation = ((live.get("metadata") or {}).get("annotations") or {}).get(LAST_APPLIED)
    if not annotation:
        return None
    try:
        last_applied = json.loads(annotation)
        if not isinstance(last_applied, dict) or last_applied.get("apiVersion") != api_version:
            return None
        fields = to_field_set(last_applied, node)
        change = compare(last_applied, live, node)
    except (ValueError, _TypedError):
        return None
    return fields.difference(change.modified).difference(change.added).difference(change.removed)


def _describe(entry: Entry) -> str:
    text = json.dumps(entry.manager, ensure_ascii=False)
    if entry.subresource:
        text += f" with subresource {json.dumps(entry.subresource, ensure_ascii=False)}"
    if not entry.applied:
        text += f" using {entry.api_version}"
    return text


def _conflict_error(conflicts: dict[str, tuple[Entry, FieldSet]]) -> ApiError:
    found = [(conflicts[i][0], path) for i in sorted(conflicts) for path in conflicts[i][1].paths()]
    causes = [{"reason": "FieldManagerConflict", "message": f"conflict with {_describe(entry)}",
               "field": path_string(path)} for entry, path in found]
    if len(found) == 1:
        entry, path = found[0]
        message = f"Apply failed with 1 conflict: conflict with {_describe(entry)}: {path_string(path)}"
    else:
        lines = []
        for ident in sorted(conflicts):
            entry, clash = conflicts[ident]
            lines.append(f"conflicts with {_describe(entry)}:")
            lines += [f"- {path_string(p)}" for p in clash.paths()]
        message = f"Apply failed with {len(found)} conflicts: " + "\n".join(lines)
    return ApiError(409, "Conflict", message, {"causes": causes})


def _gvk_string(api_version: str, kind: str) -> str:
    group, _, version = api_version.rpartition("/")
    return f"{group}/{version}, Kind={kind}"


def _expected_kind(node: schema.Node, api_version: str) -> str | None:
    group, _, version = api_version.rpartition("/")
    for gvk in node.schema.get("x-kubernetes-group-version-kind", ()):
        if gvk.get("group", "") == group and gvk.get("version") == version:
            return gvk.get("kind")
    return None


# ---------------------------------------------------------------------------------------------
# Public API


def server_side_apply(live: dict | None, applied: dict, node: schema.Node, manager: str, force: bool,
                      api_version: str, now: str, *, subresource: str = "",
                      reset_fields: Iterable[Sequence[str]] = ()) -> dict:
    """The object after `manager` applies `applied` to `live` (None: the object does not exist yet).

    The result carries the updated `metadata.managedFields`; defaulting, validation and the
    strategy's resets are the caller's. Raises ApiError 400 (wrong apiVersion/kind, managedFields
    in the config), 409 (conflicts, unless `force`), or 500 (config does not fit the schema).
    """
    api_version_applied, kind_applied = applied.get("apiVersion") or "", applied.get("kind") or ""
    expected_kind = _expected_kind(node, api_version) or kind_applied
    if (api_version_applied, kind_applied) != (api_version, expected_kind):
        raise bad_request(f"invalid object type: {_gvk_string(api_version_applied, kind_applied)}")
    metadata = applied.get("metadata") if isinstance(applied.get("metadata"), dict) else {}
    if metadata.get("managedFields") is not None:
        raise bad_request("metadata.managedFields must be nil")
    errors = validate(applied, node)
    if errors:
        where = f"{metadata.get('namespace', '')}/{metadata.get('name', '')}; {_gvk_string(api_version, kind_applied)}"
        raise ApiError(500, "", f"failed to create typed patch object ({where}): {_TypedError(errors)}")

    ignored = _reset_set(reset_fields)
    live_obj = _without_managed_fields(live) if live is not None else {}
    try:
        managed = decode_managed_fields((live or {}).get("metadata", {}).get("managedFields"))
    except ValueError as e:
        raise ApiError(500, "", f"failed to decode managed fields: {e}") from None
    try:
        if not managed and live is not None:
            managed = _record_update(managed, _zero_object(node), live_obj, node, BEFORE_FIRST_APPLY,
                                     api_version, now, "", ignored)
        try:
            result, managed = _apply(managed, live_obj, applied, node, manager, force, api_version, now,
                                     subresource, ignored)
        except _Conflicts as e:
            allowed = _allowed_by_last_applied(live_obj, node, api_version) if manager == KUBECTL else None
            if allowed is None:
                raise _conflict_error(e.conflicts) from None
            remaining = {i: (entry, clash.difference(allowed)) for i, (entry, clash) in e.conflicts.items()}
            remaining = {i: c for i, c in remaining.items() if not c[1].empty()}
            if remaining:
                raise _conflict_error(remaining) from None
            result, managed = _apply(managed, live_obj, applied, node, manager, True, api_version, now,
                                     subresource, ignored)
    except _TypedError as e:
        raise ApiError(500, "", f"failed to merge config: {e}") from None

    result = _drop_nulls(result, node) or {}
    annotations = (result.get("metadata") or {}).get("annotations") or {}
    if manager == KUBECTL and annotations.get(LAST_APPLIED):
        annotations[LAST_APPLIED] = _last_applied(applied)
    _set_managed_fields(result, encode_managed_fields(managed))
    return result


def _last_applied(applied: dict) -> str:
    """The client-side apply annotation kubectl would write for `applied` (sorted keys, newline)."""
    config = copy.deepcopy(applied)
    annotations = (config.get("metadata") or {}).get("annotations")
    if isinstance(annotations, dict):
        annotations.pop(LAST_APPLIED, None)
    return go_json(config, sort_keys=True) + "\n"


def update_managed_fields(old: dict | None, new: dict, node: schema.Node, manager: str,
                          operation: str = "Update", *, api_version: str, now: str, subresource: str = "",
                          reset_fields: Iterable[Sequence[str]] = ()) -> None:
    """Record in `new.metadata.managedFields` what a create (`old` None), update or patch changed.

    Managed fields sent in `new` are honoured (clients may edit them; `[]` or `[{}]` resets them),
    except on subresources. Objects that exist without managed fields stay without.
    """
    new_entries = (new.get("metadata") or {}).get("managedFields", MISSING)
    old_entries = (old or {}).get("metadata", {}).get("managedFields") if old is not None else None
    managed = _decode_or_empty(old_entries)
    if not subresource:
        if new_entries == [] or new_entries == [{}]:
            managed = {}
        elif new_entries is not MISSING and new_entries:
            from_new = _decode_or_empty(new_entries)
            if from_new:
                managed = from_new
    new.get("metadata", {}).pop("managedFields", None)
    if not managed and old is not None:
        return
    if old is None and not managed and not subresource and operation == "Update":
        try:  # the fast path of the commonest write, the same fields as _record_update finds
            fields = created_fields_v1(_zero_object(node), new, node, _reset_set(reset_fields), _STRIPPED)
        except _TypedError:
            return
        if fields:
            _set_managed_fields(new, [_entry_json(manager, operation, api_version, now, fields, subresource)])
        return
    base = _without_managed_fields(old) if old is not None else _zero_object(node)
    try:
        managed = _record_update(managed, base, _without_managed_fields(new), node, manager, api_version, now,
                                 subresource, _reset_set(reset_fields), operation)
    except _TypedError:
        if old_entries:
            new.setdefault("metadata", {})["managedFields"] = copy.deepcopy(old_entries)
        return
    _set_managed_fields(new, encode_managed_fields(managed))


def _decode_or_empty(entries: Any) -> Managed:
    try:
        return decode_managed_fields(entries)
    except ValueError:
        return {}
