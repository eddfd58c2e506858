"""Label selectors: k8s.io/apimachinery/pkg/labels and metav1.LabelSelector helpers.

``parse_selector`` is a faithful port of upstream's lexer/parser so that both accepted
syntax and error texts match.  A ``SelectorError``'s message is exactly upstream's
``labels.Parse`` error; requirement errors already start with
``unable to parse requirement: `` there, so the apiserver returns ``str(err)`` verbatim
as the 400 BadRequest message (no extra prefix) for ``?labelSelector=``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ketch.api.names import (
    FieldError,
    GoLiteral,
    aggregate,
    child,
    forbidden,
    go_quote,
    index,
    invalid,
    is_qualified_name,
    is_valid_label_value,
    key,
    not_supported,
    required,
    validate_label_name,
    validate_labels,
)

# selection.Operator values
IN = "in"
NOT_IN = "notin"
EQUALS = "="
DOUBLE_EQUALS = "=="
NOT_EQUALS = "!="
GREATER_THAN = "gt"
LESS_THAN = "lt"
EXISTS = "exists"
DOES_NOT_EXIST = "!"

_BINARY_OPERATORS = (IN, NOT_IN, EQUALS, DOUBLE_EQUALS, NOT_EQUALS, GREATER_THAN, LESS_THAN)
_SYMBOL = {EQUALS: "=", DOUBLE_EQUALS: "==", NOT_EQUALS: "!=", GREATER_THAN: ">", LESS_THAN: "<"}

_INT64_RE = re.compile(r"[+-]?[0-9]+")


class SelectorError(ValueError):
    """An invalid label selector; ``str(err)`` is the upstream error text."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def _parse_int64(text: str) -> int | None:
    """strconv.ParseInt(text, 10, 64), None on failure."""
    if _INT64_RE.fullmatch(text) is None:
        return None
    value = int(text)
    return value if -(1 << 63) <= value < (1 << 63) else None


@dataclass(frozen=True)
class Requirement:
    key: str
    operator: str
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        op = self.operator
        if op in (IN, EQUALS, DOUBLE_EQUALS):
            return self.key in labels and labels[self.key] in self.values
        if op in (NOT_IN, NOT_EQUALS):
            return self.key not in labels or labels[self.key] not in self.values
        if op == EXISTS:
            return self.key in labels
        if op == DOES_NOT_EXIST:
            return self.key not in labels
        if op in (GREATER_THAN, LESS_THAN):
            if self.key not in labels or len(self.values) != 1:
                return False
            have, want = _parse_int64(labels[self.key]), _parse_int64(self.values[0])
            if have is None or want is None:
                return False
            return have > want if op == GREATER_THAN else have < want
        return False

    def __str__(self) -> str:
        if self.operator == DOES_NOT_EXIST:
            return "!" + self.key
        if self.operator == EXISTS:
            return self.key
        values = ",".join(sorted(self.values))  # output is normalised, storage is not
        if self.operator in (IN, NOT_IN):
            return f"{self.key} {self.operator} ({values})"
        return f"{self.key}{_SYMBOL[self.operator]}{values}"


def new_requirement(key_: str, operator: str, values: Iterable[str], path: str | None = None) -> Requirement:
    """labels.NewRequirement: validate and build, raising SelectorError with the aggregate.

    ``path`` mirrors upstream's optional field path; None renders like Go's nil path.
    """
    vals = tuple(values)
    # Go prints the values slice with %#v; an empty one was always a nil slice there.
    shown = list(vals) if vals else GoLiteral("[]string(nil)")
    values_path = child(path or "", "values")
    errs: list[FieldError] = []
    if msgs := is_qualified_name(key_):
        errs.append(invalid(child(path or "", "key"), key_, "; ".join(msgs)))
    if operator in (IN, NOT_IN):
        if not vals:
            errs.append(invalid(values_path, shown, "for 'in', 'notin' operators, values set can't be empty"))
    elif operator in (EQUALS, DOUBLE_EQUALS, NOT_EQUALS):
        if len(vals) != 1:
            errs.append(invalid(values_path, shown, "exact-match compatibility requires one single value"))
    elif operator in (EXISTS, DOES_NOT_EXIST):
        if vals:
            errs.append(invalid(values_path, shown, "values set must be empty for exists and does not exist"))
    elif operator in (GREATER_THAN, LESS_THAN):
        if len(vals) != 1:
            errs.append(invalid(values_path, shown, "for 'Gt', 'Lt' operators, exactly one value is required"))
        for i, v in enumerate(vals):
            if _parse_int64(v) is None:
                errs.append(invalid(index(values_path, i), v, "for 'Gt', 'Lt' operators, the value must be an integer"))
    else:
        errs.append(
            not_supported(child(path or "", "operator"), operator, (*_BINARY_OPERATORS, EXISTS, DOES_NOT_EXIST))
        )
    for i, v in enumerate(vals):
        if msgs := is_valid_label_value(v):
            errs.append(invalid(key(index(values_path, i), key_), v, "; ".join(msgs)))
    if errs:
        raise SelectorError(aggregate(errs))
    return Requirement(key_, operator, vals)


class Selector:
    """An AND of requirements (upstream internalSelector), or the match-nothing selector."""

    __slots__ = ("_nothing", "requirements")

    def __init__(self, requirements: Iterable[Requirement] = (), *, nothing: bool = False):
        # Sorted by key for a deterministic String(); Python's sort is stable.
        self.requirements: tuple[Requirement, ...] = tuple(sorted(requirements, key=lambda r: r.key))
        self._nothing = nothing

    @property
    def empty(self) -> bool:
        """True when the selector does not restrict anything (Nothing is not empty)."""
        return not self._nothing and not self.requirements

    @property
    def matches_nothing(self) -> bool:
        return self._nothing

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        if self._nothing:
            return False
        labels = labels or {}
        return all(r.matches(labels) for r in self.requirements)

    def add(self, *requirements: Requirement) -> Selector:
        if self._nothing:
            return self
        return Selector((*self.requirements, *requirements))

    def requires_exact_match(self, label: str) -> str | None:
        """The single value ``label`` must have, if this selector pins it."""
        for r in self.requirements:
            if r.key == label:
                if r.operator in (EQUALS, DOUBLE_EQUALS, IN) and len(r.values) == 1:
                    return r.values[0]
                return None
        return None

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements)

    def __repr__(self) -> str:
        return "Selector(nothing)" if self._nothing else f"Selector({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Selector):
            return NotImplemented
        return self._nothing == other._nothing and self.requirements == other.requirements

    def __hash__(self) -> int:
        return hash((self._nothing, self.requirements))


EVERYTHING = Selector()
NOTHING = Selector(nothing=True)


# --------------------------------------------------------------------------------------
# Lexer / parser (ported token for token so the error texts line up)
# --------------------------------------------------------------------------------------

_ERROR, _EOS, _CLOSED_PAR, _COMMA, _NOT, _DOUBLE_EQ, _EQ, _GT, _IDENT, _IN, _LT, _NOT_EQ, _NOT_IN, _OPEN_PAR = range(14)

_STRING_TO_TOKEN = {
    ")": _CLOSED_PAR,
    ",": _COMMA,
    "!": _NOT,
    "==": _DOUBLE_EQ,
    "=": _EQ,
    ">": _GT,
    "in": _IN,
    "<": _LT,
    "!=": _NOT_EQ,
    "notin": _NOT_IN,
    "(": _OPEN_PAR,
}
_OPERATOR_FOR_TOKEN = {
    _IN: IN,
    _EQ: EQUALS,
    _DOUBLE_EQ: DOUBLE_EQUALS,
    _GT: GREATER_THAN,
    _LT: LESS_THAN,
    _NOT_IN: NOT_IN,
    _NOT_EQ: NOT_EQUALS,
}
_WHITESPACE = " \t\r\n"
_SPECIAL = "=!(),><"
_END = "\0"  # upstream's read() returns 0 at the end, so a NUL byte acts the same


class _Lexer:
    def __init__(self, text: str):
        self.text = text
        self.pos = 0

    def read(self) -> str:
        if self.pos < len(self.text):
            self.pos += 1
            return self.text[self.pos - 1]
        return _END

    def unread(self) -> None:
        self.pos -= 1

    def lex(self) -> tuple[int, str]:
        ch = self.read()
        while ch in _WHITESPACE:
            ch = self.read()
        if ch == _END:
            return _EOS, ""
        self.unread()
        return self._special() if ch in _SPECIAL else self._identifier()

    def _identifier(self) -> tuple[int, str]:
        chars = []
        while True:
            ch = self.read()
            if ch == _END:
                break
            if ch in _SPECIAL or ch in _WHITESPACE:
                self.unread()
                break
            chars.append(ch)
        word = "".join(chars)
        return _STRING_TO_TOKEN.get(word, _IDENT), word

    def _special(self) -> tuple[int, str]:
        buffer = ""
        last: tuple[int, str] | None = None
        while True:
            ch = self.read()
            if ch == _END:
                break
            if ch not in _SPECIAL:
                self.unread()
                break
            buffer += ch
            if buffer in _STRING_TO_TOKEN:
                last = (_STRING_TO_TOKEN[buffer], buffer)
            elif last is not None:
                self.unread()
                break
        if last is None:
            return _ERROR, f"error expected: keyword found '{buffer}'"
        return last


class _Parser:
    def __init__(self, text: str):
        lexer = _Lexer(text)
        self.items: list[tuple[int, str]] = []
        while True:
            self.items.append(lexer.lex())
            if self.items[-1][0] == _EOS:
                break
        self.position = 0

    def _peek_raw(self) -> tuple[int, str]:
        return self.items[self.position]

    @staticmethod
    def _as_value(item: tuple[int, str]) -> tuple[int, str]:
        # 'in' / 'notin' are ordinary words where a key or value is expected.
        tok, lit = item
        return (_IDENT, lit) if tok in (_IN, _NOT_IN) else item

    def lookahead(self) -> tuple[int, str]:
        return self._as_value(self._peek_raw())

    def consume(self, as_value: bool = True) -> tuple[int, str]:
        item = self._peek_raw()
        self.position += 1
        return self._as_value(item) if as_value else item

    def parse(self) -> list[Requirement]:
        requirements: list[Requirement] = []
        while True:
            tok, lit = self.lookahead()
            if tok == _EOS:
                return requirements
            if tok not in (_IDENT, _NOT):
                raise SelectorError(f"found '{lit}', expected: !, identifier, or 'end of string'")
            try:
                requirements.append(self._requirement())
            except SelectorError as err:
                raise SelectorError(f"unable to parse requirement: {err.message}") from None
            tok, lit = self.consume()
            if tok == _EOS:
                return requirements
            if tok != _COMMA:
                raise SelectorError(f"found '{lit}', expected: ',' or 'end of string'")
            tok, lit = self.lookahead()
            if tok not in (_IDENT, _NOT):
                raise SelectorError(f"found '{lit}', expected: identifier after ','")

    def _requirement(self) -> Requirement:
        key_, operator = self._key_and_inferred_operator()
        if operator in (EXISTS, DOES_NOT_EXIST):
            return new_requirement(key_, operator, ())
        operator = self._operator()
        if operator in (IN, NOT_IN):
            values = self._value_set()
        else:
            values = self._exact_value()
        return new_requirement(key_, operator, sorted(values))

    def _key_and_inferred_operator(self) -> tuple[str, str | None]:
        operator = None
        tok, lit = self.consume()
        if tok == _NOT:
            operator = DOES_NOT_EXIST
            tok, lit = self.consume()
        if tok != _IDENT:
            raise SelectorError(f"found '{lit}', expected: identifier")
        if msgs := is_qualified_name(lit):
            raise SelectorError(invalid("<nil>", lit, "; ".join(msgs)).message())
        if self.lookahead()[0] in (_EOS, _COMMA) and operator != DOES_NOT_EXIST:
            operator = EXISTS
        return lit, operator

    def _operator(self) -> str:
        tok, lit = self.consume(as_value=False)
        if tok not in _OPERATOR_FOR_TOKEN:
            raise SelectorError(f"found '{lit}', expected: {', '.join(_BINARY_OPERATORS)}")
        return _OPERATOR_FOR_TOKEN[tok]

    def _value_set(self) -> set[str]:
        tok, lit = self.consume()
        if tok != _OPEN_PAR:
            raise SelectorError(f"found '{lit}' expected: '('")
        tok, lit = self.lookahead()
        if tok in (_IDENT, _COMMA):
            values = self._identifiers()
            if self.consume()[0] != _CLOSED_PAR:
                raise SelectorError(f"found '{lit}', expected: ')'")
            return values
        if tok == _CLOSED_PAR:  # "()" means the single empty value
            self.consume()
            return {""}
        raise SelectorError(f"found '{lit}', expected: ',', ')' or identifier")

    def _identifiers(self) -> set[str]:
        values: set[str] = set()
        while True:
            tok, lit = self.consume()
            if tok == _IDENT:
                values.add(lit)
                tok2, lit2 = self.lookahead()
                if tok2 == _CLOSED_PAR:
                    return values
                if tok2 != _COMMA:
                    raise SelectorError(f"found '{lit2}', expected: ',' or ')'")
            elif tok == _COMMA:  # empty entries such as "(,a)", "(a,,b)" and "(a,)" mean ""
                if not values:
                    values.add("")
                tok2, _ = self.lookahead()
                if tok2 == _CLOSED_PAR:
                    values.add("")
                    return values
                if tok2 == _COMMA:
                    values.add("")
            else:
                raise SelectorError(f"found '{lit}', expected: ',', or identifier")

    def _exact_value(self) -> set[str]:
        if self.lookahead()[0] in (_EOS, _COMMA):
            return {""}
        tok, lit = self.consume()
        if tok == _IDENT:
            return {lit}
        raise SelectorError(f"found '{lit}', expected: identifier")


def parse_selector(text: str) -> Selector:
    """labels.Parse: the ``-l`` / ``?labelSelector=`` syntax. Empty text selects everything."""
    return Selector(_Parser(text).parse())


# --------------------------------------------------------------------------------------
# Map selectors and metav1.LabelSelector
# --------------------------------------------------------------------------------------


def selector_from_set(labels: Mapping[str, str] | None, *, validate: bool = False) -> Selector:
    """labels.SelectorFromSet (or ValidatedSelectorFromSet when ``validate``); empty selects all."""
    if not labels:
        return EVERYTHING
    if validate:
        return Selector(new_requirement(k, EQUALS, [v]) for k, v in sorted(labels.items()))
    return Selector(Requirement(k, EQUALS, (v,)) for k, v in labels.items())


_LABEL_SELECTOR_OPERATORS = {"In": IN, "NotIn": NOT_IN, "Exists": EXISTS, "DoesNotExist": DOES_NOT_EXIST}


def selector_from_label_selector(ls: Mapping | None) -> Selector:
    """metav1.LabelSelectorAsSelector: None matches nothing, {} matches everything."""
    if ls is None:
        return NOTHING
    match_labels = ls.get("matchLabels") or {}
    expressions = ls.get("matchExpressions") or []
    if not match_labels and not expressions:
        return EVERYTHING
    requirements = [new_requirement(k, EQUALS, [v]) for k, v in sorted(match_labels.items())]
    for expr in expressions:
        op_name = expr.get("operator") or ""
        if op_name not in _LABEL_SELECTOR_OPERATORS:
            raise SelectorError(f"{go_quote(str(op_name))} is not a valid pod selector operator")
        requirements.append(
            new_requirement(expr.get("key") or "", _LABEL_SELECTOR_OPERATORS[op_name], expr.get("values") or [])
        )
    return Selector(requirements)


def validate_label_selector(
    ls: Mapping | None, path: str, *, allow_invalid_label_value: bool = False
) -> list[FieldError]:
    """metav1 validation.ValidateLabelSelector (the shape check run on spec.selector)."""
    if ls is None:
        return []
    errs = validate_labels(ls.get("matchLabels"), child(path, "matchLabels"))
    for i, expr in enumerate(ls.get("matchExpressions") or []):
        expr_path = index(child(path, "matchExpressions"), i)
        values = expr.get("values") or []
        operator = expr.get("operator") or ""
        if operator in ("In", "NotIn"):
            if not values:
                errs.append(
                    required(child(expr_path, "values"), "must be specified when `operator` is 'In' or 'NotIn'")
                )
        elif operator in ("Exists", "DoesNotExist"):
            if values:
                errs.append(
                    forbidden(
                        child(expr_path, "values"),
                        "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                    )
                )
        else:
            errs.append(invalid(child(expr_path, "operator"), operator, "not a valid selector operator"))
        errs.extend(validate_label_name(expr.get("key") or "", child(expr_path, "key")))
        if not allow_invalid_label_value:
            for j, value in enumerate(values):
                errs.extend(
                    invalid(index(child(expr_path, "values"), j), value, m) for m in is_valid_label_value(value)
                )
    return errs
