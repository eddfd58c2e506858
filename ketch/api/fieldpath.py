"""Field paths and field sets, as server-side apply records them in `metadata.managedFields`.

This is our counterpart of sigs.k8s.io/structured-merge-diff's `fieldpath` package: a `PathElement`
names one step into an object (`f:` a field, `k:` an associative-list item by its keys, `v:` a
set-list item by value, `i:` a list index); a `FieldSet` is a trie of paths where a node may itself
be a member (serialised as `".": {}` in FieldsV1). Ordering and encoding follow upstream exactly,
since the FieldsV1 JSON is what clients see.
"""
from __future__ import annotations

import json
import math
import operator
from typing import Any, Iterable, Iterator, Sequence

import orjson


def go_json(value: Any, sort_keys: bool = False) -> str:
    """Compact JSON the way Go's encoding/json writes it (HTML-sensitive characters escaped)."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, sort_keys=sort_keys)
    return (text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def value_order(value: Any) -> tuple:
    """Total order of JSON values (smd value.Compare): numbers < strings < bools < lists < maps < null."""
    if isinstance(value, bool):
        return (2, value)
    if isinstance(value, (int, float)):
        return (0, float(value))
    if isinstance(value, str):
        return (1, value)
    if isinstance(value, list):
        return (3, tuple(value_order(v) for v in value))
    if isinstance(value, dict):
        return (4, tuple((k, value_order(v)) for k, v in sorted(value.items())))
    return (5,)


def _value_string(value: Any) -> str:
    """smd value.ToString: strings quoted, everything else as Go's %v."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, float) and value.is_integer() and math.isfinite(value):
        return str(int(value))
    return go_json(value)


class PathElement(str):
    """One step of a field path: the string is its FieldsV1 spelling and its identity. A str, so
    the set and dict operations on field sets hash and compare in C."""

    text: str  # the same string as a plain str (JSON object keys must be exactly str)
    order: tuple  # upstream's element order
    display: str  # how a conflict message spells it

    def __new__(cls, text: str, order: tuple, display: str) -> PathElement:
        pe = super().__new__(cls, text)
        pe.text, pe.order, pe.display = text, order, display
        return pe

    @property
    def kind(self) -> str:
        return self[0]

    @property
    def name(self) -> str:
        """The field name of an `f:` element."""
        return self[2:]

    def __lt__(self, other: str) -> bool:
        return self.order < other.order  # type: ignore[attr-defined]

    def __repr__(self) -> str:
        return f"PathElement({str.__repr__(self)})"


element_order = operator.attrgetter("order")  # of PathElements: upstream's element order


_field_elements: dict[str, PathElement] = {}


def field_element(name: str) -> PathElement:
    """Interned: one object per field name, so set and dict lookups succeed on identity."""
    pe = _field_elements.get(name)
    if pe is None:
        pe = PathElement("f:" + name, (0, name), "." + name)
        if len(_field_elements) < 100_000:  # map keys are unbounded; struct fields are few
            _field_elements[name] = pe
    return pe


_key_elements: dict[tuple, PathElement] = {}  # bounded: cleared when it holds 10,000


def key_element(keys: dict[str, Any]) -> PathElement:
    """An associative-list item named by its key fields (sorted by name, as upstream). Remembered:
    the same few keys (container names, ports, env names) recur in object after object."""
    items = tuple(sorted(keys.items()))
    memo = tuple((k, type(v), v) for k, v in items)  # typed: True, 1 and 1.0 are different keys
    try:
        pe = _key_elements.get(memo)
    except TypeError:  # a key field holding a list or map
        return _make_key_element(items)
    if pe is None:
        pe = _make_key_element(items)
        if len(_key_elements) >= 10_000:
            _key_elements.clear()
        _key_elements[memo] = pe
    return pe


def _make_key_element(items: tuple) -> PathElement:
    text = "k:{" + ",".join(f"{go_json(k)}:{go_json(v)}" for k, v in items) + "}"
    display = "[" + ",".join(f"{k}={_value_string(v)}" for k, v in items) + "]"
    return PathElement(text, (1, tuple((k, value_order(v)) for k, v in items)), display)


def value_element(value: Any) -> PathElement:
    return PathElement("v:" + go_json(value), (2, value_order(value)), f"[={_value_string(value)}]")


def index_element(index: int) -> PathElement:
    return PathElement(f"i:{index}", (3, index), f"[{index}]")


def parse_element(text: str) -> PathElement | None:
    """A FieldsV1 key → PathElement; None for element types we do not know (dropped, as upstream)."""
    if len(text) < 2 or text[1] != ":":
        raise ValueError(f"missing colon: {text}" if len(text) >= 2 else "key must be 2 characters long:")
    kind, body = text[0], text[2:]
    if kind == "f":
        return field_element(body)
    if kind == "k":
        keys = json.loads(body)
        if not isinstance(keys, dict):
            raise ValueError(f"invalid key element: {text}")
        return key_element(keys)
    if kind == "v":
        return value_element(json.loads(body))
    if kind == "i":
        return index_element(int(body))
    return None


Path = tuple[PathElement, ...]


def path_string(path: Sequence[PathElement]) -> str:
    """How conflicts name a path: `.spec.template.spec.containers[name="nginx"].image`."""
    return "".join(pe.display for pe in path)


class FieldSet:
    """A set of field paths, stored as a trie. Operations return new sets (except `insert`, which is
    only used while a set is being built), so results may share unchanged subtrees with their inputs."""

    __slots__ = ("members", "children")

    def __init__(self, paths: Iterable[Sequence[PathElement]] = ()):
        self.members: set[PathElement] = set()
        self.children: dict[PathElement, FieldSet] = {}
        for path in paths:
            self.insert(path)

    def insert(self, path: Sequence[PathElement]) -> None:
        if not path:
            return
        node = self
        for pe in path[:-1]:
            node = node.children.setdefault(pe, FieldSet())
        node.members.add(path[-1])

    def has(self, path: Sequence[PathElement]) -> bool:
        node: FieldSet | None = self
        for pe in path[:-1]:
            node = node.children.get(pe)
            if node is None:
                return False
        return bool(path) and path[-1] in node.members

    def child(self, pe: PathElement) -> FieldSet:
        """The paths below `pe` (relative), possibly empty."""
        return self.children.get(pe) or FieldSet()

    def empty(self) -> bool:
        return not self.members and all(c.empty() for c in self.children.values())

    def copy(self) -> FieldSet:
        out = FieldSet()
        out.members = set(self.members)
        out.children = {pe: c.copy() for pe, c in self.children.items()}
        return out

    def union(self, other: FieldSet) -> FieldSet:
        if not other.members and not other.children:
            return self
        if not self.members and not self.children:
            return other
        out = FieldSet()
        out.members = self.members | other.members
        for pe in self.children.keys() | other.children.keys():
            mine, theirs = self.children.get(pe), other.children.get(pe)
            out.children[pe] = mine.union(theirs) if mine and theirs else (mine or theirs)
        return out

    def intersection(self, other: FieldSet) -> FieldSet:
        out = FieldSet()
        out.members = self.members & other.members
        for pe, mine in self.children.items():
            theirs = other.children.get(pe)
            if theirs is not None:
                both = mine.intersection(theirs)
                if not both.empty():
                    out.children[pe] = both
        return out

    def difference(self, other: FieldSet) -> FieldSet:
        """Paths of self not in other (path by path: a member of other does not remove its children)."""
        if not other.members and not other.children:
            return self
        out = FieldSet()
        out.members = self.members - other.members
        for pe, mine in self.children.items():
            theirs = other.children.get(pe)
            if theirs is None:
                if not mine.empty():
                    out.children[pe] = mine
                continue
            rest = mine.difference(theirs)
            if not rest.empty():
                out.children[pe] = rest
        return self if out._same_as(self) else out

    def recursive_difference(self, other: FieldSet) -> FieldSet:
        """Like difference, but a member of other also removes everything below it."""
        if not other.members and not other.children:
            return self
        out = FieldSet()
        out.members = self.members - other.members
        for pe, mine in self.children.items():
            if pe in other.members:
                continue
            theirs = other.children.get(pe)
            rest = mine.recursive_difference(theirs) if theirs is not None else mine
            if not rest.empty():
                out.children[pe] = rest
        return self if out._same_as(self) else out

    def _same_as(self, original: FieldSet) -> bool:
        """Whether a difference of `original` removed nothing: then `original` itself is the answer,
        which keeps a set parsed from managedFields (and its remembered encoding) when untouched."""
        return len(self.members) == len(original.members) and len(self.children) == len(original.children) \
            and all(original.children.get(pe) is sub for pe, sub in self.children.items())

    def paths(self, prefix: Path = ()) -> Iterator[Path]:
        """Every member path: this level's members (sorted), then each child's, as upstream iterates."""
        for pe in sorted(self.members, key=element_order):
            yield prefix + (pe,)
        for pe in sorted(self.children, key=element_order):
            yield from self.children[pe].paths(prefix + (pe,))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FieldSet) and set(self.paths()) == set(other.paths())

    def __repr__(self) -> str:
        return f"FieldSet({[path_string(p) for p in self.paths()]})"

    # FieldsV1 encoding
    def to_fields_v1(self) -> dict:
        """The FieldsV1 JSON object: elements in upstream order; a member with children leads with `"."`.
        A set parsed by `parse_fields_v1` answers from its remembered encoding, as a new object."""
        known = _encodings.get(id(self))
        if known is not None and known[0] is self:
            return orjson.loads(known[1])
        return self._encode()

    def _encode(self) -> dict:
        out: dict[str, Any] = {}
        members, children = self.members, self.children
        for pe in sorted(members | children.keys() if children else members, key=element_order):
            sub = children.get(pe)
            body = sub._encode() if sub is not None else None
            if not body:  # no child, or children without members
                out[pe.text] = {}
            else:
                out[pe.text] = {".": {}, **body} if pe in members else body
        return out

    @classmethod
    def from_fields_v1(cls, fields: Any) -> FieldSet:
        if not isinstance(fields, dict):
            raise ValueError("FieldsV1 must be an object")
        out = cls()
        for key, body in fields.items():
            if key == ".":
                continue
            pe = parse_element(key)
            if pe is None:
                continue
            if not isinstance(body, dict) or not body or "." in body:
                out.members.add(pe)
            sub = cls.from_fields_v1(body) if isinstance(body, dict) else cls()
            if not sub.empty():
                out.children[pe] = sub
        return out


# Managed fields are parsed on every update and most entries come back unchanged (another manager's
# fields, the same for every pod of a template), so parsed sets are remembered by their JSON text,
# with their encoding. Sound because a FieldSet is never changed once built (see the class).
_parsed: dict[bytes, FieldSet] = {}
_encodings: dict[int, tuple[FieldSet, bytes]] = {}  # id → (set, FieldsV1 text); the set keeps the id unique
_REMEMBERED = 512  # ~15 KB each for a pod's entry: a few MB at most


def parse_fields_v1(fields: Any) -> FieldSet:
    """FieldSet.from_fields_v1, remembered: equal FieldsV1 texts give the same (shared) set."""
    try:
        text = orjson.dumps(fields)
    except TypeError:  # orjson.JSONEncodeError included: what JSON cannot hold is never remembered
        return FieldSet.from_fields_v1(fields)
    hit = _parsed.get(text)
    if hit is None:
        hit = FieldSet.from_fields_v1(fields)
        if len(_parsed) >= _REMEMBERED:
            _parsed.clear()
            _encodings.clear()
        _parsed[text] = hit
        _encodings[id(hit)] = (hit, orjson.dumps(hit._encode()))
    return hit
