"""resource.Quantity: exact fixed-point amounts such as ``500m``, ``1Gi`` or ``1e3``.

Follows k8s.io/apimachinery/pkg/api/resource: the same scanner (including its leniency),
rounding (parsed values round up, away from zero, to 1n), the BinarySI cap at 2^63-1 and
the canonical ``String()``.  Like upstream, a parse that was already in canonical form
remembers its input text and serialises it unchanged (so ``"+1"`` stays ``"+1"`` while
``"1000m"`` becomes ``"1"``).

Values are held exactly as ``coefficient * 10**exponent`` with Python ints; there is no
int64 overflow to emulate.  Where upstream would drop a suffix it has no name for
(DecimalSI beyond ``E`` or below ``n``, BinarySI beyond ``Ei``) this follows the newer
upstream fix and falls back to exponent notation instead of corrupting the value.
"""

from __future__ import annotations

import functools
import math
import re
import sys
from fractions import Fraction

DECIMAL_SI = "DecimalSI"
BINARY_SI = "BinarySI"
DECIMAL_EXPONENT = "DecimalExponent"

ERR_FORMAT_WRONG = "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
ERR_NUMERIC = "unable to parse numeric part of quantity"
ERR_SUFFIX = "unable to parse quantity's suffix"

_DECIMAL_SUFFIXES = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_BINARY_SUFFIXES = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}
_DECIMAL_SUFFIX_FOR_EXPONENT = {e: s for s, e in _DECIMAL_SUFFIXES.items()}
_BINARY_SUFFIX_FOR_POWER_OF_1024 = {0: "", **{e // 10: s for s, e in _BINARY_SUFFIXES.items()}}

_DIGITS = "0123456789"
_SUFFIX_CHARS = "eEinumkKMGTP"
_EXPONENT_RE = re.compile(r"[+-]?[0-9]+")
_MAX_INT32 = (1 << 31) - 1
_MAX_INT64 = (1 << 63) - 1
_NANO = -9
_MAX_INT64_DIGITS = 18  # digits that always fit an int64 (upstream's precision budget)
_INT64_DIGITS = 19  # digits of the largest int64


class QuantityError(ValueError):
    """An unparseable quantity; ``str(err)`` is the upstream error text."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def _digit_count(n: int) -> int:
    """Decimal digits of |n| without str(), which refuses very long ints."""
    n = abs(n)
    digits = max(int((n.bit_length() - 1) * math.log10(2)), 0)  # 10**digits <= n for n >= 1
    while n >= 10 ** (digits + 1):
        digits += 1
    return digits + 1


def _strip_tens(coef: int, exp: int) -> tuple[int, int]:
    if coef == 0:
        return 0, 0
    while coef % 10 == 0:
        coef //= 10
        exp += 1
    return coef, exp


class Quantity:
    """An immutable quantity: exact value, a format family and (maybe) its original text."""

    __slots__ = ("_coef", "_exp", "_text", "format")

    def __init__(self, coef: int, exp: int = 0, format: str = DECIMAL_SI, text: str | None = None):
        self._coef, self._exp = _strip_tens(coef, exp)
        self.format = format
        self._text = text

    # -- construction -------------------------------------------------------------------

    @classmethod
    def from_int(cls, value: int, format: str = DECIMAL_SI) -> Quantity:
        """resource.NewQuantity."""
        return cls(value, 0, format)

    @classmethod
    def from_milli(cls, value: int, format: str = DECIMAL_SI) -> Quantity:
        """resource.NewMilliQuantity."""
        return cls(value, -3, format)

    @classmethod
    def from_scaled(cls, value: int, scale: int) -> Quantity:
        """resource.NewScaledQuantity: value * 10**scale in DecimalSI."""
        return cls(value, scale, DECIMAL_SI)

    # -- value access -------------------------------------------------------------------

    @property
    def value(self) -> Fraction:
        if self._exp >= 0:
            return Fraction(self._coef * 10**self._exp)
        return Fraction(self._coef, 10**-self._exp)

    def sign(self) -> int:
        return (self._coef > 0) - (self._coef < 0)

    def is_zero(self) -> bool:
        return self._coef == 0

    def scaled_value(self, scale: int) -> int:
        """ceil(q / 10**scale), rounding away from zero (ScaledValue).

        Saturates at the int64 bounds, as upstream's int64 path does, so an absurd
        exponent cannot make callers build a gigantic integer.
        """
        shift = self._exp - scale
        magnitude = abs(self._coef)
        if shift >= 0:
            if _digit_count(magnitude) + shift > _INT64_DIGITS:
                return _MAX_INT64 if self._coef > 0 else -_MAX_INT64 - 1
            return max(min(self._coef * 10**shift, _MAX_INT64), -_MAX_INT64 - 1)
        if _digit_count(magnitude) <= -shift:  # |q / 10**scale| < 1: only the rounding unit is left
            return self.sign()
        quotient, remainder = divmod(magnitude, 10**-shift)
        return self.sign() * (quotient + (remainder != 0))

    def int_value_ceil(self) -> int:
        """Quantity.Value(): the integer value rounded up, away from zero."""
        return self.scaled_value(0)

    def milli_value(self) -> int:
        """Quantity.MilliValue(): ceil(q * 1000), away from zero."""
        return self.scaled_value(-3)

    # -- arithmetic (format follows the left operand unless it is zero, as upstream) ----

    def _combine(self, other: Quantity, sign: int) -> Quantity:
        exp = min(self._exp, other._exp)
        coef = self._coef * 10 ** (self._exp - exp) + sign * other._coef * 10 ** (other._exp - exp)
        return Quantity(coef, exp, other.format if self.is_zero() else self.format)

    def __add__(self, other: object) -> Quantity:
        if not isinstance(other, Quantity):
            return NotImplemented
        return self._combine(other, 1)

    def __radd__(self, other: object) -> Quantity:
        if other == 0 and not isinstance(other, Quantity):  # lets sum() start from 0
            return Quantity(self._coef, self._exp, self.format)
        return NotImplemented

    def __sub__(self, other: object) -> Quantity:
        if not isinstance(other, Quantity):
            return NotImplemented
        return self._combine(other, -1)

    def __neg__(self) -> Quantity:
        return Quantity(-self._coef, self._exp, self.format)

    def __mul__(self, other: object) -> Quantity:
        if not isinstance(other, int) or isinstance(other, bool):
            return NotImplemented
        return Quantity(self._coef * other, self._exp, self.format)

    __rmul__ = __mul__

    # -- comparison -----------------------------------------------------------------------

    def _cmp(self, other: Quantity) -> int:
        a, b = self.sign(), other.sign()
        if a != b or a == 0:
            return (a > b) - (a < b)
        # Same sign: compare orders of magnitude first so huge exponents stay cheap.
        order_a = _digit_count(self._coef) + self._exp
        order_b = _digit_count(other._coef) + other._exp
        if order_a != order_b:
            return a if order_a > order_b else -a
        exp = min(self._exp, other._exp)
        x = self._coef * 10 ** (self._exp - exp)
        y = other._coef * 10 ** (other._exp - exp)
        return (x > y) - (x < y)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Quantity):
            return NotImplemented
        return self._coef == other._coef and self._exp == other._exp

    def __hash__(self) -> int:
        return hash((self._coef, self._exp))

    def __lt__(self, other: Quantity) -> bool:
        return self._cmp(other) < 0

    def __le__(self, other: Quantity) -> bool:
        return self._cmp(other) <= 0

    def __gt__(self, other: Quantity) -> bool:
        return self._cmp(other) > 0

    def __ge__(self, other: Quantity) -> bool:
        return self._cmp(other) >= 0

    # -- serialisation --------------------------------------------------------------------

    def canonical(self) -> str:
        """The canonical form, ignoring any remembered input text (CanonicalizeBytes)."""
        if self._coef == 0:
            return "0"
        fmt = self.format
        if fmt == BINARY_SI and (abs(self._coef) * 10 ** max(self._exp, 0) < 1024 or self._exp < 0):
            fmt = DECIMAL_SI  # small or fractional binary values would round; show them exactly
        elif fmt not in (DECIMAL_SI, BINARY_SI):
            fmt = DECIMAL_EXPONENT
        if fmt == BINARY_SI:
            text = self._binary_text()
            if text is not None:
                return text
            fmt = DECIMAL_EXPONENT  # beyond Ei there is no binary suffix
        # Move the exponent down to a multiple of three (mantissa grows, stays integral).
        shift = self._exp % 3
        coef, exp = self._coef * 10**shift, self._exp - shift
        if fmt == DECIMAL_SI and exp in _DECIMAL_SUFFIX_FOR_EXPONENT:
            return f"{coef}{_DECIMAL_SUFFIX_FOR_EXPONENT[exp]}"
        return f"{coef}e{exp}" if exp else str(coef)

    def _binary_text(self) -> str | None:
        magnitude = abs(self._coef) * 10**self._exp
        power = 0
        while magnitude >= 1024 and magnitude % 1024 == 0:
            magnitude //= 1024
            power += 1
        suffix = _BINARY_SUFFIX_FOR_POWER_OF_1024.get(power)
        if suffix is None:
            return None
        return f"{'-' if self._coef < 0 else ''}{magnitude}{suffix}"

    def __str__(self) -> str:
        return self._text if self._text is not None else self.canonical()

    def __repr__(self) -> str:
        return f"Quantity({str(self)!r}, {self.format})"


# --------------------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------------------


def _scan(s: str) -> tuple[bool, str, str, str, str]:
    """parseQuantityString: (positive, value, num, denom, suffix)."""
    positive, pos, end = True, 0, len(s)
    if s[0] in "+-":
        positive = s[0] == "+"
        pos = 1
    while pos < end and s[pos] == "0":  # leading zeros
        pos += 1
    if pos >= end:
        return positive, "0", "0", "", ""
    start = pos
    while pos < end and s[pos] in _DIGITS:
        pos += 1
    num = s[start:pos] or "0"
    if pos >= end:
        return positive, s, num, "", ""
    denom = ""
    if s[pos] == ".":
        pos += 1
        start = pos
        while pos < end and s[pos] in _DIGITS:
            pos += 1
        denom = s[start:pos]
        if pos >= end:
            return positive, s, num, denom, ""
    value = s[:pos]
    suffix_start = pos
    while pos < end and s[pos] in _SUFFIX_CHARS:
        pos += 1
    if pos < end and s[pos] in "+-":
        pos += 1
    while pos < end and s[pos] in _DIGITS:
        pos += 1
    if pos < end:
        raise QuantityError(ERR_FORMAT_WRONG)
    return positive, value, num, denom, s[suffix_start:]


def _interpret(suffix: str) -> tuple[int, int, str]:
    """(base, exponent, format) for a suffix."""
    if suffix in _DECIMAL_SUFFIXES:
        return 10, _DECIMAL_SUFFIXES[suffix], DECIMAL_SI
    if suffix in _BINARY_SUFFIXES:
        return 2, _BINARY_SUFFIXES[suffix], BINARY_SI
    if len(suffix) > 1 and suffix[0] in "eE" and _EXPONENT_RE.fullmatch(suffix[1:]):
        exponent = int(suffix[1:])
        if -_MAX_INT32 <= exponent <= _MAX_INT32:  # the scale is an int32 upstream
            return 10, exponent, DECIMAL_EXPONENT
    raise QuantityError(ERR_SUFFIX)


def _is_canonical_text(fmt: str, digits: str, scale: int, binary_exponent: int) -> bool:
    """Whether upstream keeps the input string verbatim for serialisation."""
    if fmt == BINARY_SI:
        return binary_exponent % 10 == 0 and int(digits) & 0x07 != 0
    return scale % 3 == 0 and not digits.endswith("000") and digits[0] != "0"


def _fast_path(s: str, positive: bool, num: str, denom: str, exponent: int, fmt: str) -> Quantity | None:
    """Upstream's int64 path: exact, and the only one that may keep the input text."""
    if fmt == BINARY_SI:
        if exponent < 0 or denom:
            return None
        scale, mantissa = 0, 1 << exponent
        precision = 15 - len(num) - exponent * 3 // 10 - 1
    else:
        scale, mantissa = exponent, 1
        precision = _MAX_INT64_DIGITS - (len(num) + len(denom))
    scale -= len(denom)
    if precision < 0 or scale < _NANO:
        return None
    digits = num + denom
    result = int(digits) * mantissa
    if result > _MAX_INT64:
        return None
    text = s if _is_canonical_text(fmt, digits, scale, exponent) else None
    return Quantity(result if positive else -result, scale, fmt, text)


def _slow_path(value: str, base: int, exponent: int, fmt: str) -> Quantity:
    """Upstream's inf.Dec path: round up to 1n, cap BinarySI at 2^63-1."""
    whole, _, fraction = value.lstrip("+-").partition(".")
    if not (whole + fraction):
        raise QuantityError(ERR_NUMERIC)
    negative = value.startswith("-")
    digits = whole + fraction
    significant = digits.strip("0")
    limit = sys.get_int_max_str_digits()
    if limit and len(significant) > limit:
        # Python refuses to convert that many digits; upstream would, but no real quantity has them.
        raise QuantityError(ERR_NUMERIC)
    coef = int(significant) if significant else 0
    exp = (len(digits) - len(digits.rstrip("0"))) - len(fraction)  # trailing zeros move into exp
    if base == 10:
        exp += exponent
    else:
        coef <<= exponent
    coef, exp = _strip_tens(coef, exp)
    if coef and exp < _NANO:
        drop = _NANO - exp
        # Anything below one nano-unit becomes exactly 1n ("if you ask for some, you get some").
        coef = 1 if _digit_count(coef) <= drop else -(-coef // 10**drop)
        exp = _NANO
    if fmt == BINARY_SI:
        if _magnitude_exceeds(coef, exp, _MAX_INT64):
            coef, exp = _MAX_INT64, 0
        if coef and exp < 0 and _digit_count(coef) <= -exp:  # 0 < value < 1 cannot be binary
            fmt = DECIMAL_SI
    return Quantity(-coef if negative else coef, exp, fmt)


def _magnitude_exceeds(coef: int, exp: int, limit: int) -> bool:
    if exp >= 0:
        return coef * 10**exp > limit
    return coef > limit * 10**-exp


def parse_quantity(s: str | int | float) -> Quantity:
    """resource.ParseQuantity. Numbers are parsed from their text, as from a JSON number."""
    if isinstance(s, bool) or not isinstance(s, (str, int, float)):
        raise TypeError(f"cannot parse a quantity from {type(s).__name__}")
    if isinstance(s, int):
        s = str(s)
    elif isinstance(s, float):
        s = repr(s) if math.isfinite(s) else str(s)
    return _parse_text(s)


@functools.lru_cache(maxsize=4096)
def _parse_text(s: str) -> Quantity:
    """Remembered (quantities are immutable): the same few requests and limits recur everywhere."""
    if not s:
        raise QuantityError(ERR_FORMAT_WRONG)
    if s == "0":
        return Quantity(0, 0, DECIMAL_SI, "0")
    positive, value, num, denom, suffix = _scan(s)
    base, exponent, fmt = _interpret(suffix)
    return _fast_path(s, positive, num, denom, exponent, fmt) or _slow_path(value, base, exponent, fmt)


def from_json(value: object) -> Quantity:
    """Quantity.UnmarshalJSON: null is zero, strings are trimmed, booleans are rejected."""
    if value is None:
        return Quantity(0)
    if isinstance(value, bool):
        return parse_quantity("true" if value else "false")
    if isinstance(value, str):
        return parse_quantity(value.strip())
    return parse_quantity(value)  # type: ignore[arg-type]


def canonical(s: str | int | float) -> str:
    """The string the apiserver would store for ``s``."""
    return str(parse_quantity(s))
