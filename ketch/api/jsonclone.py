"""Deep copies of JSON documents (API objects, patches), several times faster than copy.deepcopy."""
from __future__ import annotations

import copy
from typing import Any

import orjson


def clone(value: Any) -> Any:
    """A deep copy of a JSON value through orjson; values orjson cannot write (integers beyond
    64 bits, non-string keys) are copied with copy.deepcopy."""
    try:
        return orjson.loads(orjson.dumps(value))
    except (orjson.JSONEncodeError, orjson.JSONDecodeError):
        return copy.deepcopy(value)
