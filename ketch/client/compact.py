"""Compact informer caches: equal parts of cached objects are one object in memory.

Ten thousand pods of a few templates hold the same `resources`, probes, tolerations, volumes and
label maps ten thousand times over, and a parsed JSON object costs a dict or a str per field. As a
cached object enters an informer's cache, `Compactor.compact` replaces each of its lists and dicts
(below the top level and `metadata`, which are unique per object) by an equal one already cached
when there is one (hash-consing, bottom-up), and interns its string values (`sys.intern`).

The result is equal (`==`, and byte-for-byte as JSON: key order and types are kept) to what the
server sent. Two rules keep sharing invisible:

- Cached objects are read-only, as in client-go: a component copies (`copy.deepcopy`) before it
  changes one. A change made in place would now show in every object sharing that part.
- No part is shared *within* one object, so a deep copy of a cached object has no aliased parts
  either (`copy.deepcopy` keeps aliasing): changing one field of the copy changes only that field.

The table of shared parts holds each part once; parts no cached object uses any more are swept
(by reference count) when the table has doubled since the last sweep.
"""
from __future__ import annotations

import logging
import os
import sys

log = logging.getLogger("ketch.client.compact")
_intern = sys.intern
_getrefcount = sys.getrefcount

# Markers that keep keys unambiguous: True == 1 == 1.0 in a tuple, but not in JSON.
_DICT, _LIST, _TRUE, _FALSE, _FLOAT = (object() for _ in range(5))

# metadata fields whose values are unique per object: interning them would only cost a table slot.
_UNIQUE_META = frozenset(("name", "uid", "resourceVersion", "creationTimestamp", "deletionTimestamp", "selfLink"))
_MIN_SWEEP = 4096
# Tests: check the shared parts for changes made in place at every (frequent) sweep.
_CHECK = bool(os.environ.get("KETCH_CHECK_SHARED_PARTS"))


class Compactor:
    """One per process (SharedInformers): objects of every cached kind share parts."""

    def __init__(self) -> None:
        # key (content, children by their keys) -> (the shared part, that key as stored)
        self._table: dict[tuple, tuple] = {}
        self._min_sweep = 64 if _CHECK else _MIN_SWEEP
        self._sweep_at = self._min_sweep

    def __len__(self) -> int:
        return len(self._table)

    def compact(self, obj: dict) -> dict:
        """`obj` with its parts shared (in place; the top-level dict and metadata stay its own)."""
        used: set[int] = set()
        for field, value in obj.items():
            tv = type(value)
            if field == "metadata" and tv is dict:
                self._metadata(value, used)
            elif tv is dict or tv is list:
                obj[field] = self._canon(value, used)[0]
            elif tv is str:
                obj[field] = _intern(value)
        if len(self._table) >= self._sweep_at:
            self.sweep()
        return obj

    def _metadata(self, meta: dict, used: set[int]) -> None:
        for field, value in meta.items():
            tv = type(value)
            if tv is dict or tv is list:
                meta[field] = self._canon(value, used)[0]
            elif tv is str and field not in _UNIQUE_META:
                meta[field] = _intern(value)

    def _canon(self, o, used: set[int]):  # noqa: ANN001, ANN202 - dict or list -> (part, key or None)
        """The shared part equal to `o` and its key; None as key when `o` is not a shared part
        (new, or an equal part already appears in this object), so neither is anything holding it."""
        shareable = True
        if type(o) is dict:
            key = [_DICT]
            for k, v in o.items():
                tv = type(v)
                if tv is str:
                    v = o[k] = _intern(v)
                    key += (k, v)
                elif tv is dict or tv is list:
                    v, vkey = self._canon(v, used)
                    o[k] = v
                    if vkey is None:
                        shareable = False
                    key += (k, vkey)
                elif tv is bool:
                    key += (k, _TRUE if v else _FALSE)
                elif tv is float:
                    key += (k, (_FLOAT, v))
                else:  # int, None
                    key += (k, v)
        else:
            key = [_LIST]
            for i, v in enumerate(o):
                tv = type(v)
                if tv is str:
                    v = o[i] = _intern(v)
                    key.append(v)
                elif tv is dict or tv is list:
                    v, vkey = self._canon(v, used)
                    o[i] = v
                    if vkey is None:
                        shareable = False
                    key.append(vkey)
                elif tv is bool:
                    key.append(_TRUE if v else _FALSE)
                elif tv is float:
                    key.append((_FLOAT, v))
                else:
                    key.append(v)
        if not shareable:
            return o, None
        tkey = tuple(key)
        entry = self._table.get(tkey)
        if entry is None:
            # New here. Whatever holds it is new too, so only the innermost new part is entered
            # (a chain of unique parts would cost a table entry each for nothing): what holds
            # it is entered when an equal one comes again, and shared from then on.
            self._table[tkey] = (o, tkey)
            used.add(id(o))
            return o, None
        part, tkey = entry  # the stored key: the keys of parts holding this one share it
        if id(part) in used:  # already a part of this object: keep this copy its own
            return o, None
        used.add(id(part))
        return part, tkey

    def sweep(self) -> None:
        """Forget the parts no cached object holds any more (newest first, so that a part freed
        with its holder is seen free in the same pass)."""
        if _CHECK:
            for tkey in self.check():
                log.error("a shared part of cached objects was changed in place: %r", tkey)
        table = self._table
        for tkey in reversed(list(table)):
            # References: the table entry's and getrefcount's argument.
            if _getrefcount(table[tkey][0]) <= 2:
                del table[tkey]
        self._sweep_at = max(self._min_sweep, 2 * len(table))

    def check(self) -> list[tuple]:
        """The keys of shared parts whose content no longer matches (changed in place): for tests."""
        return [tkey for tkey, (part, _) in self._table.items() if _rekey(part) != tkey]


def _rekey(o) -> tuple:  # noqa: ANN001
    def value(v):  # noqa: ANN001, ANN202
        tv = type(v)
        if tv is dict or tv is list:
            return _rekey(v)
        if tv is bool:
            return _TRUE if v else _FALSE
        if tv is float:
            return (_FLOAT, v)
        return v
    if type(o) is dict:
        key = [_DICT]
        for k, v in o.items():
            key += (k, value(v))
        return tuple(key)
    return (_LIST, *(value(v) for v in o))
