"""The three client patch types of PATCH requests: JSON patch, JSON merge patch, strategic merge patch.

Each takes the object as JSON-decoded in the request's API version and returns the patched copy, or
raises the `ApiError` the apiserver answers with (k8s.io/apiserver endpoints/handlers/patch.go):

* JSON patch (RFC 6902, via the `jsonpatch` library): an undecodable patch is 400; an operation
  that does not apply is 422 with the apiserver's generic message (it drops the library's text).
* JSON merge patch (RFC 7386, as evanphx/json-patch v4 implements it: nulls are pruned from
  values that are added).
* Strategic merge patch (k8s.io/apimachinery/pkg/util/strategicpatch): lists merge by the schema's
  `x-kubernetes-patch-strategy`/`x-kubernetes-patch-merge-key`, with the `$patch`, `$retainKeys`,
  `$setElementOrder/<list>` and `$deleteFromPrimitiveList/<list>` directives. Errors keep
  upstream's status split: malformed directives 400, lists of lists 422, everything else 500.
"""
from __future__ import annotations

import copy
import json
import math
from typing import Any

import jsonpatch
import jsonpointer

from . import schema
from .decode import json_kind
from .errors import ApiError, bad_request
from .jsonclone import clone

MAX_JSON_PATCH_OPERATIONS = 10000

DIRECTIVE = "$patch"
RETAIN_KEYS = "$retainKeys"
SET_ELEMENT_ORDER = "$setElementOrder"
DELETE_FROM_PRIMITIVE_LIST = "$deleteFromPrimitiveList"


def _unprocessable() -> ApiError:
    """errors.NewGenericServerResponse(422, ...): the original error text is not passed on."""
    return ApiError(422, "Invalid", "the server rejected our request due to an error in our request", {})


def _internal(message: str) -> ApiError:
    """A plain Go error reaching the apiserver's error writer: 500, empty reason, the error's text."""
    return ApiError(500, "", message)


# ---------------------------------------------------------------------------------------------
# JSON patch


def json_patch(obj: dict, patch: Any) -> dict:
    if patch is None:
        return copy.deepcopy(obj)
    if not isinstance(patch, list):
        raise bad_request(f"json: cannot unmarshal {json_kind(patch)} into Go value of type jsonpatch.Patch")
    for op in patch:
        if op is not None and not isinstance(op, dict):
            raise bad_request(f"json: cannot unmarshal {json_kind(op)} into Go value of type jsonpatch.Operation")
    if len(patch) > MAX_JSON_PATCH_OPERATIONS:
        raise ApiError(413, "RequestEntityTooLarge",
                       f"Request entity too large: The allowed maximum operations in a JSON patch is "
                       f"{MAX_JSON_PATCH_OPERATIONS}, got {len(patch)}")
    # evanphx/json-patch refuses a null operation and the whole-document path "" (RFC allows it).
    if any(op is None or op.get("path") == "" for op in patch):
        raise _unprocessable()
    try:
        result = jsonpatch.JsonPatch(patch).apply(obj, in_place=False)
    except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException, KeyError, IndexError,
            TypeError, ValueError, AttributeError):
        raise _unprocessable() from None
    if not isinstance(result, dict):
        raise _unprocessable()
    return result


# ---------------------------------------------------------------------------------------------
# JSON merge patch


def merge_patch(obj: dict, patch: Any) -> dict:
    if isinstance(patch, dict):
        return _merge_docs(clone(obj), patch)
    if isinstance(patch, list):
        # v4 MergePatch makes a non-object patch the whole document; decoding it then fails.
        replaced = json.dumps(_prune_nulls(patch), separators=(",", ":"))
        reason = ("couldn't get version/kind; json parse error: json: cannot unmarshal array into Go value of "
                  'type struct { APIVersion string "json:\\"apiVersion,omitempty\\""; '
                  'Kind string "json:\\"kind,omitempty\\"" }')
        body = f"Invalid value: {json.dumps(replaced)}: {reason}"
        raise ApiError(422, "Invalid", f' "" is invalid: patch: {body}',
                       {"causes": [{"reason": "FieldValueInvalid", "message": body, "field": "patch"}]})
    raise bad_request("Invalid JSON Patch")


def _merge_docs(doc: dict, patch: dict) -> dict:
    for key, value in patch.items():
        if value is None:
            doc.pop(key, None)
        elif key not in doc:
            doc[key] = _prune_nulls(value)
        elif isinstance(doc[key], dict) and isinstance(value, dict):
            _merge_docs(doc[key], value)
        elif isinstance(doc[key], dict):
            doc[key] = copy.deepcopy(value)
        else:
            doc[key] = _prune_nulls(value)
    return doc


def _prune_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _prune_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_prune_nulls(v) for v in value if v is not None]
    return value


# ---------------------------------------------------------------------------------------------
# Strategic merge patch


class _PatchError(Exception):
    def __init__(self, error: ApiError):
        super().__init__(error.message)
        self.error = error


def _bad(message: str) -> _PatchError:
    return _PatchError(bad_request(message))


def _fail(message: str) -> _PatchError:
    return _PatchError(_internal(message))


BAD_RETAIN_KEYS = "invalid patch format of retainKeys"
BAD_PRIMITIVE_LIST = "invalid patch format of primitive list"
BAD_SET_ELEMENT_ORDER = "invalid patch format of setElementOrder list"


def strategic_merge_patch(obj: dict, patch: Any, node: schema.Node | None) -> dict:
    """Apply `patch` to `obj` with the merge rules of `node` (the kind's schema)."""
    if patch is None:
        patch = {}
    if not isinstance(patch, dict):
        raise bad_request(f"json: cannot unmarshal {json_kind(patch)} into Go value of type map[string]interface {{}}")
    try:
        return _merge_map(clone(obj), clone(patch), node)
    except _PatchError as e:
        raise e.error from None


def _go(value: Any) -> str:
    """Go's %v of a JSON value, for error messages that embed maps and lists."""
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isfinite(value) and value.is_integer() and abs(value) < 1e21:
            return str(int(value))
        return repr(value)
    if isinstance(value, dict):
        return "map[" + " ".join(f"{k}:{_go(v)}" for k, v in sorted(value.items())) + "]"
    if isinstance(value, list):
        return "[" + " ".join(_go(v) for v in value) + "]"
    return str(value)


def _go_type(value: Any) -> str:
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int64"
    if isinstance(value, float):
        return "float64"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "[]interface {}"
    return "map[string]interface {}"


def _bad_arg_type(expected: str, actual: Any) -> _PatchError:
    return _fail(f"expected a {expected}, but received a {_go_type(actual)}")


def _no_merge_key(item: dict, key: str) -> _PatchError:
    return _fail(f"map: {_go(item)} does not contain declared merge key: {key}")


def _same(a: Any, b: Any) -> bool:
    """Go's == on two JSON scalars held in interfaces: the dynamic types must match too."""
    return _go_type(a) == _go_type(b) and a == b


def _hashable(value: Any) -> Any:
    return (_go_type(value), value if not isinstance(value, (dict, list)) else json.dumps(value, sort_keys=True))


def _clean(value: Any) -> Any:
    """A patch value taken verbatim: directives and nulls are dropped, as decoding the result would."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items() if v is not None and not _is_directive(k)}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def _is_directive(key: str) -> bool:
    return key in (DIRECTIVE, RETAIN_KEYS) or key.startswith(SET_ELEMENT_ORDER) or key.startswith(
        DELETE_FROM_PRIMITIVE_LIST)


def _field_meta(node: schema.Node | None, key: str) -> tuple[schema.Node | None, str, str]:
    """(schema of the field, patch strategy, merge key) of `key` inside `node`."""
    if node is None:
        return None, "", ""
    if node.properties:
        sub = node.field(key)
        if sub is None:
            return None, "", ""
        return sub, _strategy(sub.patch_strategy), sub.patch_merge_key
    return node.values, "", ""


def _strategy(declared: str) -> str:
    """The strategy other than retainKeys (retainKeys itself only matters to patch generation)."""
    parts = [p for p in declared.split(",") if p] if declared else []
    if len(parts) > 2 or (len(parts) == 2 and "retainKeys" not in parts):
        raise _fail(f"unexpected patch strategy: [{' '.join(parts)}]")
    others = [p for p in parts if p != "retainKeys"]
    return others[0] if others else ""


def _kind(value: Any) -> str:
    return "map" if isinstance(value, dict) else "slice" if isinstance(value, list) else "scalar"


def _extract_key(key: str, prefix: str) -> str:
    head, sep, rest = key.partition("/")
    if not sep or head != prefix:
        raise _bad(BAD_PRIMITIVE_LIST if prefix == DELETE_FROM_PRIMITIVE_LIST else BAD_SET_ELEMENT_ORDER)
    return rest


def _merge_map(original: dict | None, patch: dict, node: schema.Node | None) -> dict:
    if DIRECTIVE in patch:
        directive = patch[DIRECTIVE]
        if directive == "replace":
            return _clean(patch)
        if directive == "delete":
            return {}
        raise _fail(f"unknown patch type: {_go_directive(directive)} in map: {_go(patch)}")
    if original is None:
        original = {}
    _apply_retain_keys(original, patch)
    _merge_ordered_lists(original, patch, node)

    # Deletions from primitive lists come after the lists' own merges, as kubectl's patches assume.
    keys = sorted(patch, key=lambda k: k.startswith(DELETE_FROM_PRIMITIVE_LIST))
    for key in keys:
        patch_value = patch[key]
        is_delete_list = key.startswith(DELETE_FROM_PRIMITIVE_LIST)
        if is_delete_list:
            key = _extract_key(key, DELETE_FROM_PRIMITIVE_LIST)
        if patch_value is None:
            original.pop(key, None)
            continue
        if key not in original:
            if not is_delete_list:
                original[key] = _clean(patch_value)
            continue
        current = original[key]
        if _kind(current) != _kind(patch_value):
            if not is_delete_list:
                original[key] = _clean(patch_value)
            continue
        sub, strategy, merge_key = _field_meta(node, key)
        if isinstance(current, dict):
            original[key] = _clean(patch_value) if strategy == "replace" else _merge_map(current, patch_value, sub)
        elif isinstance(current, list):
            original[key] = _merge_list(current, patch_value, sub, strategy, merge_key, is_delete_list)
        else:
            original[key] = patch_value
    return original


def _go_directive(value: Any) -> str:
    """%s of a directive value: strings print as-is, other types the way fmt marks a bad verb."""
    return value if isinstance(value, str) else f"%!s({_go_type(value)}={_go(value)})"


def _apply_retain_keys(original: dict, patch: dict) -> None:
    if RETAIN_KEYS not in patch:
        return
    retain = patch.pop(RETAIN_KEYS)
    if not isinstance(retain, list):
        raise _bad(BAD_RETAIN_KEYS)
    keep = {_hashable(k) for k in retain}
    for key, value in patch.items():
        if value is None or key.startswith(DELETE_FROM_PRIMITIVE_LIST) or key.startswith(SET_ELEMENT_ORDER):
            continue
        if _hashable(key) not in keep:
            raise _bad(BAD_RETAIN_KEYS)
    for key in [k for k in original if _hashable(k) not in keep]:
        del original[key]


def _merge_ordered_lists(original: dict, patch: dict, node: schema.Node | None) -> None:
    """`$setElementOrder/<list>`: merge the list, then order it as the directive says."""
    for directive_key in [k for k in patch if k.startswith(SET_ELEMENT_ORDER)]:
        order = patch.pop(directive_key)
        if not isinstance(order, list):
            raise _bad_arg_type("[]interface {}", order)
        key = _extract_key(directive_key, SET_ELEMENT_ORDER)
        in_original, in_patch = key in original, key in patch
        original_list, patch_list = original.get(key), patch.get(key)
        if in_original and not isinstance(original_list, list):
            raise _bad_arg_type("[]interface {}", original_list)
        if in_patch and not isinstance(patch_list, list):
            raise _bad_arg_type("[]interface {}", patch_list)
        original_list, patch_list = original_list or [], patch_list or []
        sub, strategy, merge_key = _field_meta(node, key)
        _check_order(patch_list, order, merge_key)
        if in_original and in_patch:
            merged = _merge_list(original_list, patch_list, sub, strategy, merge_key, False)
        elif in_original:
            merged = original_list
        elif in_patch:
            merged = _clean(patch_list)
        else:
            continue
        ordered, server_only = _partition(merged, order, merge_key)
        kind = _element_kind(original_list, patch_list)
        original[key] = _normalize_order(ordered, server_only, order, original_list, merge_key, kind)
        patch.pop(key, None)


def _check_order(patch_list: list, order: list, merge_key: str) -> None:
    """The patch's items must appear in the same relative order as in `$setElementOrder`."""
    if not order or not patch_list:
        return
    items = _split_deletions(patch_list)[0] if merge_key else patch_list
    i = j = 0
    while i < len(items) and j < len(order):
        if isinstance(items[i], dict) and DIRECTIVE in items[i]:
            i += 1
            continue
        if _merge_key_equal(items[i], order[j], merge_key):
            i += 1
        j += 1
    if i < len(items) and j >= len(order):
        raise _fail(f"The order in patch list:\n{_go(patch_list)}\n doesn't match {SET_ELEMENT_ORDER} list:\n"
                    f"{_go(order)}\n")


def _merge_key_equal(left: Any, right: Any, merge_key: str) -> bool:
    if not merge_key:
        return _same(left, right)
    for item in (left, right):
        if not isinstance(item, dict):
            raise _bad_arg_type("map[string]interface {}", item)
        if merge_key not in item:
            raise _no_merge_key(item, merge_key)
    return _same(left[merge_key], right[merge_key])


def _merge_list(original: list, patch: list, node: schema.Node | None, strategy: str, merge_key: str,
                is_delete_list: bool) -> list:
    if strategy != "merge":
        return _clean(patch)
    element = node.items if node is not None else None
    if not original and not patch:
        return original
    kind = _element_kind(original, patch)
    if kind != "map":
        if is_delete_list:
            doomed = {_hashable(v) for v in patch}
            return [v for v in original if _hashable(v) not in doomed]
        merged = _dedupe(original + patch)
    else:
        if not merge_key:
            raise _fail("cannot merge lists without merge key for type struct")
        original, patch = _apply_list_directives(original, patch, merge_key)
        merged = list(original)
        for item in patch:
            if merge_key not in item:
                raise _no_merge_key(item, merge_key)
            index = _find_by_key(merged, merge_key, item[merge_key])
            if index is None:
                merged.append(_clean(item))
            else:
                merged[index] = _merge_map(merged[index], item, element)
    ordered, server_only = _partition(merged, patch, merge_key)
    return _normalize_order(ordered, server_only, patch, original, merge_key, kind)


def _element_kind(*lists: list) -> str:
    """All items of the lists share one JSON type, which is not a list (sliceElementType)."""
    first: str | None = None
    for items in lists:
        for item in items:
            kind = _go_type(item)
            if first is None:
                first = kind
                if kind == "[]interface {}":
                    raise _PatchError(_unprocessable())  # lists of lists are not supported
            elif kind != first:
                raise _fail(f"list element types are not identical: {_go(list(lists))}")
    if first is None:
        raise _fail("no elements in any of the given slices")
    return "map" if first == "map[string]interface {}" else "scalar"


def _dedupe(items: list) -> list:
    seen: set = set()
    out = []
    for item in items:
        key = _hashable(item)
        if key not in seen:
            seen.add(key)
            out.append(item)
    return out


def _apply_list_directives(original: list, patch: list, merge_key: str) -> tuple[list, list]:
    """Items carrying `$patch`: delete removes by merge key; replace makes the rest the whole list."""
    plain, replace = [], False
    for item in patch:
        if DIRECTIVE not in item:
            plain.append(item)
            continue
        directive = item[DIRECTIVE]
        if directive == "delete":
            if merge_key not in item:
                raise _no_merge_key(item, merge_key)
            _find_by_key(original, merge_key, item[merge_key])  # reports non-map items, as upstream
            original = [o for o in original if not _same(o.get(merge_key, _MISSING), item[merge_key])]
        elif directive == "replace":
            replace = True
        elif directive == "merge":
            raise _fail("merging lists cannot yet be specified in the patch")
        else:
            raise _fail(f"unknown patch type: {_go_directive(directive)} in map: {_go(item)}")
    if replace:
        return _clean(plain), []
    return original, plain


_MISSING = object()


def _find_by_key(items: list, key: str, value: Any) -> int | None:
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise _fail(f"value for key {i} is not a map.")
        if key in item and _same(item[key], value):
            return i
    return None


def _split_deletions(items: list) -> tuple[list, list]:
    keep, doomed = [], []
    for item in items:
        if not isinstance(item, dict):
            raise _bad_arg_type("map[string]interface {}", item)
        (doomed if item.get(DIRECTIVE) == "delete" else keep).append(item)
    return keep, doomed


def _partition(merged: list, by: list, merge_key: str) -> tuple[list, list]:
    """Split merged items into those named in `by` and the server's own."""
    if not merge_key:
        named = {_hashable(v) for v in by}
        return [v for v in merged if _hashable(v) in named], [v for v in merged if _hashable(v) not in named]
    ordered, server_only = [], []
    for item in merged:
        if not isinstance(item, dict):
            raise _bad_arg_type("map[string]interface {}", item)
        if merge_key not in item:
            raise _no_merge_key(item, merge_key)
        (ordered if _find_by_key(by, merge_key, item[merge_key]) is not None else server_only).append(item)
    return ordered, server_only


def _index(items: list, value: Any, merge_key: str, kind: str) -> int:
    def key_of(item: Any) -> Any:
        if kind == "map":
            return item.get(merge_key) if isinstance(item, dict) else None
        return item
    wanted = key_of(value)
    for i, item in enumerate(items):
        if _same(key_of(item), wanted):
            return i
    return -1


def _sort_by(items: list, order: list, merge_key: str, kind: str) -> list:
    """sort.SliceStable with upstream's comparator ("less" whenever either side is not in `order`)."""
    positions = [_index(order, item, merge_key, kind) for item in items]
    if all(p >= 0 for p in positions):
        return [items[i] for i in sorted(range(len(items)), key=positions.__getitem__)]
    out = list(zip(positions, items, strict=True))
    for i in range(1, len(out)):  # insertion sort, as Go's stable sort does on short runs
        j = i
        while j > 0 and (out[j][0] < 0 or out[j - 1][0] < 0 or out[j][0] < out[j - 1][0]):
            out[j], out[j - 1] = out[j - 1], out[j]
            j -= 1
    return [item for _, item in out]


def _normalize_order(patch_items: list, server_only: list, patch_order: list, server_order: list,
                     merge_key: str, kind: str) -> list:
    """Patch items in the patch's order, server-only items in the live order, interleaved by live order."""
    patch_items = _sort_items(patch_items, patch_order, merge_key, kind)
    server_only = _sort_items(server_only, server_order, merge_key, kind)
    out = []
    i = j = 0
    while i < len(server_only) or j < len(patch_items):
        if i >= len(server_only):
            out.append(patch_items[j])
            j += 1
        elif j >= len(patch_items):
            out.append(server_only[i])
            i += 1
        else:
            left = _index(server_order, server_only[i], merge_key, kind)
            right = _index(server_order, patch_items[j], merge_key, kind)
            if left >= 0 and right >= 0 and left < right:
                out.append(server_only[i])
                i += 1
            else:
                out.append(patch_items[j])
                j += 1
    return out


def _sort_items(items: list, order: list, merge_key: str, kind: str) -> list:
    doomed: list = []
    if kind == "map":
        for item in items + order:
            if not isinstance(item, dict):
                raise _bad_arg_type("map[string]interface {}", item)
            if merge_key not in item:
                raise _no_merge_key(item, merge_key)
        items, doomed = _split_deletions(items)
    return _sort_by(items, order, merge_key, kind) + doomed
