"""Field selector parsing, matching and rejection messages (upstream pkg/fields)."""

import pytest

from ketch.api.fields import (
    EQUALS,
    NOT_EQUALS,
    FieldRequirement,
    FieldSelectorError,
    escape_value,
    parse_field_selector,
    selector_from_set,
    unescape_value,
    unsupported,
)


@pytest.mark.parametrize(
    "text, requirements, canonical",
    [
        ("", [], ""),
        (",", [], ""),
        ("a=b", [("a", EQUALS, "b")], "a=b"),
        ("a==b", [("a", EQUALS, "b")], "a=b"),
        ("a!=b", [("a", NOT_EQUALS, "b")], "a!=b"),
        ("a=", [("a", EQUALS, "")], "a="),
        ("=b", [("", EQUALS, "b")], "=b"),
        ("=", [], ""),  # empty on both sides: dropped, as upstream's Transform does
        ("b=2,a=1", [("a", EQUALS, "1"), ("b", EQUALS, "2")], "a=1,b=2"),
        ("metadata.name=x,,", [("metadata.name", EQUALS, "x")], "metadata.name=x"),
        ("a=!b", [("a", EQUALS, "!b")], "a=!b"),
        (" a = b ", [(" a ", EQUALS, " b ")], " a = b "),  # no whitespace trimming
        (r"a=b\,c", [("a", EQUALS, "b,c")], r"a=b\,c"),
        (r"a=b\=c\\d", [("a", EQUALS, "b=c\\d")], r"a=b\=c\\d"),
        (r"a!=x\,y,b=z", [("a", NOT_EQUALS, "x,y"), ("b", EQUALS, "z")], r"a!=x\,y,b=z"),
    ],
)
def test_parse(text: str, requirements: list[tuple], canonical: str) -> None:
    fs = parse_field_selector(text)
    assert [tuple(r) for r in fs.requirements] == requirements
    assert str(fs) == canonical
    assert fs.empty == (not requirements)


@pytest.mark.parametrize(
    "text, message",
    [
        ("a", "invalid selector: 'a'; can't understand 'a'"),
        ("a=b,c", "invalid selector: 'a=b,c'; can't understand 'c'"),
        ("a=b=c", "invalid field selector: unescaped character in value: 61"),
        ("a!==b", "invalid field selector: unescaped character in value: 61"),
        (r"a=b\x", r"invalid field selector: invalid escape sequence: \x"),
        ("a=b\\", "invalid field selector: invalid escape sequence: \\"),
    ],
)
def test_parse_errors(text: str, message: str) -> None:
    with pytest.raises(FieldSelectorError) as info:
        parse_field_selector(text)
    assert str(info.value) == message


@pytest.mark.parametrize(
    "text, fields, expected",
    [
        ("", {}, True),
        ("status.phase=Running", {"status.phase": "Running"}, True),
        ("status.phase=Running", {"status.phase": "Pending"}, False),
        ("status.phase!=Running", {"status.phase": "Pending"}, True),
        ("status.phase!=Running", {}, True),
        ("spec.nodeName=", {}, True),  # a missing field reads as ""
        ("spec.nodeName=", {"spec.nodeName": "n1"}, False),
        ("metadata.name=a,metadata.namespace=b", {"metadata.name": "a", "metadata.namespace": "b"}, True),
        ("metadata.name=a,metadata.namespace=b", {"metadata.name": "a", "metadata.namespace": "c"}, False),
        (r"metadata.name=a\,b", {"metadata.name": "a,b"}, True),
    ],
)
def test_matches(text: str, fields: dict, expected: bool) -> None:
    assert parse_field_selector(text).matches(fields) is expected


def test_unsupported_messages() -> None:
    fs = parse_field_selector("status.phase=Running,spec.nodeName=n1")
    assert unsupported(fs, {"spec.nodeName", "status.phase", "metadata.name"}) is None
    assert unsupported(fs, {"spec.nodeName", "metadata.name"}) == "field label not supported: status.phase"
    assert unsupported(fs) == (
        '"spec.nodeName" is not a known field selector: only "metadata.name", "metadata.namespace"'
    )
    assert unsupported(parse_field_selector("metadata.namespace!=default")) is None


def test_requires_exact_match() -> None:
    fs = parse_field_selector("spec.nodeName!=a,spec.nodeName=b")
    assert fs.requires_exact_match("spec.nodeName") == "b"
    assert parse_field_selector("a!=b").requires_exact_match("a") is None


@pytest.mark.parametrize("value", ["", "plain", "a,b", "a=b", "back\\slash", "\\,=\\"])
def test_escape_round_trip(value: str) -> None:
    assert unescape_value(escape_value(value)) == value
    assert parse_field_selector("f=" + escape_value(value)).requirements == (FieldRequirement("f", EQUALS, value),)


def test_selector_from_set() -> None:
    fs = selector_from_set({"metadata.name": "x"})
    assert fs.matches({"metadata.name": "x"}) and not fs.matches({"metadata.name": "y"})
    assert selector_from_set(None).empty
