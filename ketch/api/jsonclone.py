"""Deep copies of JSON documents (API objects, patches), several times faster than copy.deepcopy,
and their comparison as JSON values."""
from __future__ import annotations

import copy
from typing import Any

import orjson


def clone(value: Any) -> Any:
    """A deep copy of a JSON value through orjson. What a JSON round trip would not carry
    unchanged (datetimes from YAML, integers beyond 64 bits, non-string keys) is copied with
    copy.deepcopy instead."""
    try:
        return orjson.loads(orjson.dumps(value, option=orjson.OPT_PASSTHROUGH_DATETIME))
    except TypeError:  # orjson.JSONEncodeError included
        return copy.deepcopy(value)


def json_equal(a: Any, b: Any) -> bool:
    """JSON equality (a bool is not a number)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equal(v, b[k]) for k, v in a.items())
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, (dict, list)) or isinstance(b, (dict, list)):
        return False
    return a == b


def same_json(a: Any, b: Any) -> bool:
    """Whether two JSON values are equal as json_equal says (a bool is not a number) — quickly, in C:
    Python's == alone would take True for 1, so equal values must also serialize alike."""
    if a != b:
        return False
    try:
        return orjson.dumps(a) == orjson.dumps(b)
    except orjson.JSONEncodeError:
        return json_equal(a, b)
