"""resource.Quantity semantics: parsing, rounding, canonical strings and arithmetic."""

from fractions import Fraction as F

import pytest

from ketch.api import quantity
from ketch.api.quantity import (
    ERR_FORMAT_WRONG,
    ERR_NUMERIC,
    ERR_SUFFIX,
    Quantity,
    QuantityError,
    canonical,
    from_json,
    parse_quantity,
)

BIN, DEC, EXP = quantity.BINARY_SI, quantity.DECIMAL_SI, quantity.DECIMAL_EXPONENT
MAX_INT64 = 2**63 - 1

# (input, exact value, format) — the cases of upstream's TestQuantityParse.
PARSE_TABLE = [
    ("0", 0, DEC),
    ("0n", 0, DEC),
    ("0u", 0, DEC),
    ("0m", 0, DEC),
    ("0Ki", 0, BIN),
    ("0k", 0, DEC),
    ("0Mi", 0, BIN),
    ("0M", 0, DEC),
    ("0Gi", 0, BIN),
    ("0G", 0, DEC),
    ("0Ti", 0, BIN),
    ("0T", 0, DEC),
    ("1", 1, DEC),
    ("1Ki", 1024, BIN),
    ("8Ki", 8 * 1024, BIN),
    ("7Mi", 7 * 2**20, BIN),
    ("6Gi", 6 * 2**30, BIN),
    ("5Ti", 5 * 2**40, BIN),
    ("4Pi", 4 * 2**50, BIN),
    ("3Ei", 3 * 2**60, BIN),
    ("10Ti", 10 * 2**40, BIN),
    ("100Ti", 100 * 2**40, BIN),
    ("5n", F(5, 10**9), DEC),
    ("4u", F(4, 10**6), DEC),
    ("3m", F(3, 1000), DEC),
    ("9", 9, DEC),
    ("8k", 8000, DEC),
    ("50k", 50000, DEC),
    ("7M", 7 * 10**6, DEC),
    ("6G", 6 * 10**9, DEC),
    ("5T", 5 * 10**12, DEC),
    ("40T", 40 * 10**12, DEC),
    ("300T", 300 * 10**12, DEC),
    ("2P", 2 * 10**15, DEC),
    ("1E", 10**18, DEC),
    ("1E-3", F(1, 1000), EXP),
    ("1e3", 1000, EXP),
    ("1E6", 10**6, EXP),
    ("1e9", 10**9, EXP),
    ("1E12", 10**12, EXP),
    ("1e15", 10**15, EXP),
    ("1E18", 10**18, EXP),
    ("1e14", 10**14, EXP),
    ("1e13", 10**13, EXP),
    ("100.035k", 100035, DEC),
    ("0.001", F(1, 1000), DEC),
    ("0.0005k", F(1, 2), DEC),
    ("0.005", F(5, 1000), DEC),
    ("0.05", F(5, 100), DEC),
    ("0.5", F(1, 2), DEC),
    ("0.00050k", F(1, 2), DEC),
    ("0.00500", F(5, 1000), DEC),
    ("0.05000", F(5, 100), DEC),
    ("0.50000", F(1, 2), DEC),
    ("0.5e0", F(1, 2), EXP),
    ("0.5e-1", F(5, 100), EXP),
    ("0.5e-2", F(5, 1000), EXP),
    ("10.035M", 10035000, DEC),
    ("1.2e3", 1200, EXP),
    ("1.3E+6", 1300000, EXP),
    ("1.40e9", 14 * 10**8, EXP),
    ("1.53E12", 153 * 10**10, EXP),
    ("1.6e15", 16 * 10**14, EXP),
    ("1.7E18", 17 * 10**17, EXP),
    ("9.01", F(901, 100), DEC),
    ("8.1k", 8100, DEC),
    ("7.123456M", 7123456, DEC),
    ("6.987654321G", 6987654321, DEC),
    ("5.444T", 5444 * 10**9, DEC),
    ("40.1T", 401 * 10**11, DEC),
    ("300.2T", 3002 * 10**11, DEC),
    ("2.5P", 25 * 10**14, DEC),
    ("1.01E", 101 * 10**16, DEC),
    # values that round up to the nano unit, or saturate
    ("3.001n", F(4, 10**9), DEC),
    ("1.1E-9", F(2, 10**9), EXP),
    ("0.0000000001", F(1, 10**9), DEC),
    ("0.0000000005", F(1, 10**9), DEC),
    ("0.00000000050", F(1, 10**9), DEC),
    ("0.5e-9", F(1, 10**9), EXP),
    ("0.9n", F(1, 10**9), DEC),
    ("0.00000012345", F(124, 10**9), DEC),
    ("0.00000012354", F(124, 10**9), DEC),
    ("9Ei", MAX_INT64, BIN),
    ("9223372036854775807Ki", MAX_INT64, BIN),
    ("12E", 12 * 10**18, DEC),
    # fractional binary values
    ("100.035Ki", F(10243584, 100), BIN),
    ("0.5Mi", 2**19, BIN),
    ("0.05Gi", F(536870912, 10), BIN),
    ("0.025Ti", F(274877906944, 10), BIN),
    # written by trolls
    ("0.000000000001Ki", F(2, 10**9), DEC),
    (".001", F(1, 1000), DEC),
    (".0001k", F(1, 10), DEC),
    ("1.", 1, DEC),
    ("1.G", 10**9, DEC),
]


@pytest.mark.parametrize("text, value, fmt", PARSE_TABLE)
def test_parse_value_and_format(text: str, value, fmt: str) -> None:
    q = parse_quantity(text)
    assert q.value == value
    assert q.format == fmt


@pytest.mark.parametrize("text, value, fmt", PARSE_TABLE)
def test_parse_with_explicit_sign(text: str, value, fmt: str) -> None:
    assert parse_quantity("-" + text).value == -value
    assert parse_quantity("-" + text).format == fmt
    assert parse_quantity("+" + text).value == value


@pytest.mark.parametrize(
    "text, message",
    [
        ("", ERR_FORMAT_WRONG),
        ("1.1.M", ERR_FORMAT_WRONG),
        ("1+1.0M", ERR_FORMAT_WRONG),
        ("0.1am", ERR_FORMAT_WRONG),
        ("aoeu", ERR_FORMAT_WRONG),
        (" 1", ERR_FORMAT_WRONG),
        ("1 ", ERR_FORMAT_WRONG),
        ("1e3x", ERR_FORMAT_WRONG),
        ("0.1mi", ERR_SUFFIX),
        (".5i", ERR_SUFFIX),
        ("1i", ERR_SUFFIX),
        ("-3.01i", ERR_SUFFIX),
        ("-3.01e-", ERR_SUFFIX),
        ("1e", ERR_SUFFIX),
        ("1Kii", ERR_SUFFIX),
        ("1e4294967297", ERR_SUFFIX),  # exponent beyond int32
        (".e-10", ERR_NUMERIC),  # no digits at all on the slow path
    ],
)
def test_parse_errors(text: str, message: str) -> None:
    with pytest.raises(QuantityError) as info:
        parse_quantity(text)
    assert str(info.value) == message


def test_format_error_text_is_upstreams() -> None:
    assert ERR_FORMAT_WRONG == (
        "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
    )


# (coefficient, exponent, format, canonical, alternate spelling) — upstream TestQuantityString.
STRING_TABLE = [
    (2**30, 0, BIN, "1Gi", "1024Mi"),
    (300 * 2**20, 0, BIN, "300Mi", "307200Ki"),
    (6 * 1024, 0, BIN, "6Ki", ""),
    (1001 * 2**30, 0, BIN, "1001Gi", "1025024Mi"),
    (2**40, 0, BIN, "1Ti", "1024Gi"),
    (5, 0, BIN, "5", "5000m"),
    (500, -3, BIN, "500m", "0.5"),
    (1, 9, DEC, "1G", "1000M"),
    (1000, 6, DEC, "1G", "0.001T"),
    (1000000, 3, DEC, "1G", ""),
    (1000000000, 0, DEC, "1G", ""),
    (1, -3, DEC, "1m", "1000u"),
    (80, -3, DEC, "80m", ""),
    (1080, -3, DEC, "1080m", "1.08"),
    (108, -2, DEC, "1080m", "1080000000n"),
    (10800, -4, DEC, "1080m", ""),
    (300, 6, DEC, "300M", ""),
    (1, 12, DEC, "1T", ""),
    (1, 18, DEC, "1E", ""),
    (1, 21, DEC, "1e21", "1000E"),
    (5, 21, DEC, "5e21", "5000E"),
    (1, 24, DEC, "1e24", "1000000E"),
    (1, 70, BIN, "10e69", ""),
    (2, 70, BIN, "20e69", ""),
    (1, 72, BIN, "1e72", ""),
    (1234567, 6, DEC, "1234567M", ""),
    (1234567, -3, BIN, "1234567m", ""),
    (3, 3, DEC, "3k", ""),
    (1025, 0, BIN, "1025", ""),
    (0, 0, DEC, "0", ""),
    (0, 0, BIN, "0", ""),
    (1, 9, EXP, "1e9", ".001e12"),
    (1, -3, EXP, "1e-3", "0.001e0"),
    (1, -9, EXP, "1e-9", "1000e-12"),
    (80, -3, EXP, "80e-3", ""),
    (300, 6, EXP, "300e6", ""),
    (1, 12, EXP, "1e12", ""),
    (1, 3, EXP, "1e3", ""),
    (3, 3, EXP, "3e3", ""),
    (0, 0, EXP, "0", "00"),
    (1, -9, DEC, "1n", ""),
    (80, -9, DEC, "80n", ""),
    (1080, -9, DEC, "1080n", ""),
    (108, -8, DEC, "1080n", ""),
    (10800, -10, DEC, "1080n", ""),
    (1, -6, DEC, "1u", ""),
    (80, -6, DEC, "80u", ""),
    (1080, -6, DEC, "1080u", ""),
]


@pytest.mark.parametrize("coef, exp, fmt, expected, alternate", STRING_TABLE)
def test_canonical_string(coef: int, exp: int, fmt: str, expected: str, alternate: str) -> None:
    q = Quantity(coef, exp, fmt)
    assert str(q) == expected
    if coef:
        assert str(-q) == "-" + expected
    assert str(parse_quantity(expected)) == expected
    if alternate:
        assert str(parse_quantity(alternate)) == expected
        assert parse_quantity(alternate) == parse_quantity(expected)


def test_canonical_below_nano_and_binary_zero_exponent() -> None:
    assert str(Quantity(1, -12, DEC)) == "1e-12"
    assert str(Quantity(1, -10, DEC)) == "100e-12"
    assert str(Quantity(2000, 0, BIN)) == "2000"
    assert str(Quantity(-2000, 0, BIN)) == "-2000"
    assert str(parse_quantity("1Ei") * 1024) == "1180591620717411303424"


@pytest.mark.parametrize(
    "text, emitted",
    [
        # upstream TestQuantityParseEmit
        ("1Ki", "1Ki"),
        ("1Mi", "1Mi"),
        ("1Gi", "1Gi"),
        ("1024Mi", "1Gi"),
        ("1000M", "1G"),
        (".001Ki", "1024m"),
        (".000001Ki", "1024u"),
        (".000000001Ki", "1024n"),
        (".000000000001Ki", "2n"),
        # what the apiserver stores for common inputs
        ("0.5", "500m"),
        ("1000m", "1"),
        ("1e3", "1e3"),
        ("1E3", "1E3"),
        ("1500", "1500"),
        ("1000", "1k"),
        ("100M", "100M"),
        ("1.5Gi", "1536Mi"),
        ("1.5", "1500m"),
        ("0.1m", "100u"),
        ("100m", "100m"),
        ("2048Ki", "2Mi"),
        ("1025Ki", "1025Ki"),
        ("0.5Ki", "512"),
        ("100.035Ki", "102435840m"),
        ("9Ei", "9223372036854775807"),
        ("1000E", "1e21"),
        ("1e2147483647", "10e2147483646"),
        ("1e-2147483647", "1e-9"),
        ("1.0", "1"),
        ("-1.5", "-1500m"),
        ("-0", "0"),
        ("00", "0"),
        # canonical input text is kept verbatim, quirks included
        ("+1", "+1"),
        ("01", "01"),
        ("1.G", "1.G"),
        ("-1Ki", "-1Ki"),
        # the scanner's leniency: no digits before a suffix means zero
        ("e5", "0"),
        ("k", "0"),
        (".", "0"),
        ("-.", "0"),
    ],
)
def test_parse_emit(text: str, emitted: str) -> None:
    assert canonical(text) == emitted
    assert str(parse_quantity("-" + text.lstrip("+-"))) in {"0", "-" + emitted.lstrip("+-")}


@pytest.mark.parametrize(
    "value, emitted",
    [(1, "1"), (0, "0"), (1024, "1024"), (0.5, "500m"), (1.5, "1500m"), (2.0, "2"), (1e-7, "100e-9"), (1e16, "10e15")],
)
def test_numbers_parse_from_their_text(value, emitted: str) -> None:
    assert canonical(value) == emitted


def test_from_json() -> None:
    assert str(from_json(" 1Gi ")) == "1Gi"  # UnmarshalJSON trims whitespace
    assert str(from_json(None)) == "0"
    assert str(from_json(2)) == "2"
    with pytest.raises(QuantityError):
        from_json(True)
    with pytest.raises(TypeError):
        parse_quantity([1])  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------
# Comparison and arithmetic
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "x, y, expected",
    [
        ("0", "0", 0),
        ("100m", "50m", 1),
        ("50m", "100m", -1),
        ("10000T", "100Gi", 1),
        ("1", "1000m", 0),
        ("1Ki", "1024", 0),
        ("1e3", "1k", 0),
        ("-1", "1", -1),
        ("-2", "-1", -1),
        ("1e2147483647", "9Ei", 1),
        ("1n", "1e-2147483647", 0),
        ("999m", "1", -1),
    ],
)
def test_compare(x: str, y: str, expected: int) -> None:
    a, b = parse_quantity(x), parse_quantity(y)
    assert ((a > b) - (a < b)) == expected
    assert (a == b) is (expected == 0)
    assert (a <= b) is (expected <= 0) and (a >= b) is (expected >= 0)


@pytest.mark.parametrize("text", ["100m", "1Gi"])
def test_adding_or_subtracting_zero_keeps_the_suffix(text: str) -> None:
    q, zero = parse_quantity(text), parse_quantity("0")
    assert str(q + zero) == text
    assert str(zero + q) == text
    assert str(q - zero) == text
    assert str(zero - q) == str(-q) == "-" + text


def test_arithmetic_is_exact() -> None:
    total = sum(parse_quantity("100m") for _ in range(10))
    assert str(total) == "1"
    assert (parse_quantity("1Gi") - parse_quantity("512Mi")).value == 512 * 2**20
    assert str(parse_quantity("1Gi") - parse_quantity("512Mi")) == "512Mi"
    assert str(parse_quantity("1") + parse_quantity("1Ki")) == "1025"  # left operand's format wins
    assert str(parse_quantity("0.1") + parse_quantity("0.2")) == "300m"
    assert str(parse_quantity("250m") * 3) == "750m"


@pytest.mark.parametrize(
    "text, milli, value",
    [
        ("1", 1000, 1),
        ("1.5", 1500, 2),
        ("100m", 100, 1),
        ("0.1m", 1, 1),
        ("1n", 1, 1),
        ("0", 0, 0),
        ("1Gi", 1073741824000, 1073741824),
        ("-1.5", -1500, -2),
        ("-100m", -100, -1),
        ("1e2", 100000, 100),
    ],
)
def test_milli_value_and_value(text: str, milli: int, value: int) -> None:
    q = parse_quantity(text)
    assert q.milli_value() == milli
    assert q.int_value_ceil() == value


def test_scaled_value_and_constructors() -> None:
    assert parse_quantity("1").scaled_value(-3) == 1000
    assert parse_quantity("1500").scaled_value(3) == 2
    assert parse_quantity("1e-2147483647").scaled_value(0) == 1
    assert parse_quantity("1e2147483647").milli_value() == MAX_INT64  # saturates like upstream
    assert parse_quantity("-1e30").int_value_ceil() == -MAX_INT64 - 1
    assert parse_quantity("9223372036854775807").int_value_ceil() == MAX_INT64
    assert parse_quantity("9223372036854775807").milli_value() == MAX_INT64
    assert str(Quantity.from_int(5, BIN)) == "5"
    assert str(Quantity.from_milli(1500)) == "1500m"
    assert str(Quantity.from_scaled(3, 6)) == "3M"
    assert hash(parse_quantity("1")) == hash(parse_quantity("1000m"))
