"""Field selectors: k8s.io/apimachinery/pkg/fields.

Terms are ``field=value``, ``field==value`` or ``field!=value`` joined by commas; values may
escape ``\\``, ``,`` and ``=`` with a backslash.  Fields are compared as plain strings and a
missing field reads as ``""``.  Parse errors carry upstream's text; the apiserver returns
``str(err)`` as the 400 BadRequest message.  Which field names a kind accepts is the
server's decision; ``unsupported`` renders the matching upstream rejection.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import NamedTuple

from ketch.api.names import go_quote

EQUALS = "="
NOT_EQUALS = "!="

# Checked in this order so "==" is not read as "=" followed by a value starting with "=".
_TERM_OPERATORS = ("!=", "==", "=")
_METADATA_FIELDS = ("metadata.name", "metadata.namespace")


class FieldSelectorError(ValueError):
    """An invalid field selector; ``str(err)`` is the upstream error text."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class FieldRequirement(NamedTuple):
    field: str
    operator: str  # EQUALS ("=" and "==" alike) or NOT_EQUALS
    value: str

    def matches(self, fields: Mapping[str, str]) -> bool:
        equal = fields.get(self.field, "") == self.value
        return equal if self.operator == EQUALS else not equal

    def __str__(self) -> str:
        return f"{self.field}{self.operator}{escape_value(self.value)}"


class FieldSelector:
    __slots__ = ("requirements",)

    def __init__(self, requirements: tuple[FieldRequirement, ...] = ()):
        self.requirements = tuple(requirements)

    @property
    def empty(self) -> bool:
        return not self.requirements

    def matches(self, fields: Mapping[str, str]) -> bool:
        return all(r.matches(fields) for r in self.requirements)

    def requires_exact_match(self, field: str) -> str | None:
        for r in self.requirements:
            if r.field == field and r.operator == EQUALS:
                return r.value
        return None

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements)

    def __repr__(self) -> str:
        return f"FieldSelector({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FieldSelector) and self.requirements == other.requirements

    def __hash__(self) -> int:
        return hash(self.requirements)


EVERYTHING = FieldSelector()


def escape_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=")


def unescape_value(value: str) -> str:
    if not any(c in value for c in "\\,="):
        return value
    out: list[str] = []
    escaped = False
    for ch in value:
        if escaped:
            if ch not in "\\,=":
                raise FieldSelectorError(f"invalid field selector: invalid escape sequence: \\{ch}")
            out.append(ch)
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch in ",=":
            # Upstream formats the rune with %v, which prints its code point.
            raise FieldSelectorError(f"invalid field selector: unescaped character in value: {ord(ch)}")
        else:
            out.append(ch)
    if escaped:
        raise FieldSelectorError("invalid field selector: invalid escape sequence: \\")
    return "".join(out)


def _split_terms(text: str) -> list[str]:
    """Split on commas not preceded by a backslash; escapes stay in the terms."""
    if not text:
        return []
    terms, start, escaped = [], 0, False
    for i, ch in enumerate(text):
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == ",":
            terms.append(text[start:i])
            start = i + 1
    terms.append(text[start:])
    return terms


def _split_term(term: str) -> tuple[str, str, str] | None:
    """The first operator occurrence splits the term; field names cannot be escaped."""
    for i in range(len(term)):
        for op in _TERM_OPERATORS:
            if term.startswith(op, i):
                return term[:i], op, term[i + len(op) :]
    return None


def parse_field_selector(text: str) -> FieldSelector:
    """fields.ParseSelector. Terms are kept in sorted (raw text) order, as upstream does."""
    requirements = []
    for term in sorted(_split_terms(text)):
        if not term:
            continue
        split = _split_term(term)
        if split is None:
            raise FieldSelectorError(f"invalid selector: '{text}'; can't understand '{term}'")
        field, op, raw_value = split
        value = unescape_value(raw_value)
        if not field and not value:
            continue  # upstream's Transform drops terms that are empty on both sides
        requirements.append(FieldRequirement(field, NOT_EQUALS if op == "!=" else EQUALS, value))
    return FieldSelector(tuple(requirements))


def selector_from_set(fields: Mapping[str, str] | None) -> FieldSelector:
    return FieldSelector(tuple(FieldRequirement(k, EQUALS, v) for k, v in (fields or {}).items()))


def unsupported(fs: FieldSelector, allowed: Collection[str] | None = None) -> str | None:
    """The error for the first field the kind does not support, or None.

    Pass the kind's field-label set when upstream registers a field-label conversion for it
    (pods, nodes, events, secrets, ...): the message is ``field label not supported: X``.
    Pass None for kinds that only support metadata.name/namespace through upstream's
    default conversion, which words the rejection differently.
    """
    for r in fs.requirements:
        if allowed is None:
            if r.field not in _METADATA_FIELDS:
                only = ", ".join(go_quote(f) for f in _METADATA_FIELDS)
                return f"{go_quote(r.field)} is not a known field selector: only {only}"
        elif r.field not in allowed:
            return f"field label not supported: {r.field}"
    return None
