"""Label selector parsing, matching and metav1.LabelSelector conversion (upstream texts)."""

import pytest

from ketch.api.labels import (
    EVERYTHING,
    NOTHING,
    Requirement,
    SelectorError,
    new_requirement,
    parse_selector,
    selector_from_label_selector,
    selector_from_set,
    validate_label_selector,
)

NAME_PART_MSG = (
    "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
    "alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is "
    "'([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
)
LABEL_VALUE_MSG = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must "
    "start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used "
    "for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
)
SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
    "and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is "
    r"'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)


@pytest.mark.parametrize(
    "text, canonical",
    [
        ("", ""),
        ("   ", ""),
        ("a=b", "a=b"),
        ("a==b", "a==b"),
        ("a!=b", "a!=b"),
        ("a", "a"),
        ("!a", "!a"),
        ("a>1", "a>1"),
        ("a in (x,y)", "a in (x,y)"),
        ("a notin (y,x,y)", "a notin (x,y)"),
        ("x in (foo,,baz),y,z notin ()", "x in (,baz,foo),y,z notin ()"),
        ("a in (,)", "a in ()"),
        ("a in (x,)", "a in (,x)"),
        ("z=1,a=2,m", "a=2,m,z=1"),
        ("  a  =  b  ,  c  ", "a=b,c"),
        ("a=\tb\n", "a=b"),
        ("a=", "a="),
        ("a=,b", "a=,b"),
        ("in in (in)", "in in (in)"),
        ("notin=notin", "notin=notin"),
        ("example.com/app=web", "example.com/app=web"),
        ("a=b,a!=c", "a=b,a!=c"),  # same key keeps input order
    ],
)
def test_parse_canonical_string(text: str, canonical: str) -> None:
    assert str(parse_selector(text)) == canonical


@pytest.mark.parametrize(
    "text, message",
    [
        ("a in b", "unable to parse requirement: found 'b' expected: '('"),
        ("a in x,y", "unable to parse requirement: found 'x' expected: '('"),
        ("a b", "unable to parse requirement: found 'b', expected: in, notin, =, ==, !=, gt, lt"),
        ("a===b", "unable to parse requirement: found '=', expected: identifier"),
        ("a>>1", "unable to parse requirement: found '>', expected: identifier"),
        ("a=(", "unable to parse requirement: found '(', expected: identifier"),
        ("a in (x y)", "unable to parse requirement: found 'y', expected: ',' or ')'"),
        ("a in (x", "unable to parse requirement: found '', expected: ',' or ')'"),
        ("a in (=)", "unable to parse requirement: found '=', expected: ',', ')' or identifier"),
        ("a in (x,=)", "unable to parse requirement: found '=', expected: ',', or identifier"),
        ("a=b c", "found 'c', expected: ',' or 'end of string'"),
        ("!a=b", "found '=', expected: ',' or 'end of string'"),
        ("a=b,", "found '', expected: identifier after ','"),
        ("a,,b", "found ',', expected: identifier after ','"),
        (",a", "found ',', expected: !, identifier, or 'end of string'"),
        ("=a", "found '=', expected: !, identifier, or 'end of string'"),
        ("!", "unable to parse requirement: found '', expected: identifier"),
        ("-a", f'unable to parse requirement: <nil>: Invalid value: "-a": {NAME_PART_MSG}'),
        ("app:monolith", f'unable to parse requirement: <nil>: Invalid value: "app:monolith": {NAME_PART_MSG}'),
        (
            "Example.com/a",
            f'unable to parse requirement: <nil>: Invalid value: "Example.com/a": prefix part {SUBDOMAIN_MSG}',
        ),
        ("/a=b", 'unable to parse requirement: <nil>: Invalid value: "/a": prefix part must be non-empty'),
        (
            "a/=b",
            f'unable to parse requirement: <nil>: Invalid value: "a/": name part must be non-empty; {NAME_PART_MSG}',
        ),
        ("a=b@c", f'unable to parse requirement: values[0][a]: Invalid value: "b@c": {LABEL_VALUE_MSG}'),
        ("a in (ok,-x)", f'unable to parse requirement: values[0][a]: Invalid value: "-x": {LABEL_VALUE_MSG}'),
        (
            "a=" + "b" * 64,
            'unable to parse requirement: values[0][a]: Invalid value: "'
            + "b" * 64
            + '": must be no more than 63 characters',
        ),
        (
            "a>b",
            "unable to parse requirement: values[0]: Invalid value: \"b\": for 'Gt', 'Lt' operators, the value must be an integer",
        ),
        (
            "a<-1x",
            (
                "unable to parse requirement: [values[0]: Invalid value: \"-1x\": for 'Gt', 'Lt' operators, "
                f'the value must be an integer, values[0][a]: Invalid value: "-1x": {LABEL_VALUE_MSG}]'
            ),
        ),
        (
            "a>99999999999999999999",
            (
                'unable to parse requirement: values[0]: Invalid value: "99999999999999999999": '
                "for 'Gt', 'Lt' operators, the value must be an integer"
            ),
        ),
    ],
)
def test_parse_errors(text: str, message: str) -> None:
    with pytest.raises(SelectorError) as info:
        parse_selector(text)
    assert str(info.value) == message
    assert info.value.message == message


@pytest.mark.parametrize(
    "text, labels, expected",
    [
        ("", {}, True),
        ("", None, True),
        ("a=b", {"a": "b"}, True),
        ("a=b", {"a": "c"}, False),
        ("a=b", {}, False),
        ("a==b", {"a": "b", "x": "y"}, True),
        ("a!=b", {"a": "c"}, True),
        ("a!=b", {}, True),
        ("a!=b", {"a": "b"}, False),
        ("a", {"a": ""}, True),
        ("a", {"b": "a"}, False),
        ("!a", {"b": "1"}, True),
        ("!a", {"a": "1"}, False),
        ("a in (x,y)", {"a": "y"}, True),
        ("a in (x,y)", {"a": "z"}, False),
        ("a in (x,y)", {}, False),
        ("a notin (x,y)", {"a": "z"}, True),
        ("a notin (x,y)", {}, True),
        ("a notin (x,y)", {"a": "x"}, False),
        ("a in ()", {"a": ""}, True),
        ("a=", {"a": ""}, True),
        ("a>1", {"a": "2"}, True),
        ("a>1", {"a": "1"}, False),
        ("a>1", {"a": "x"}, False),
        ("a>1", {}, False),
        ("a<10", {"a": "-5"}, True),
        ("a<10", {"a": "+9"}, True),
        ("a<10", {"a": "10"}, False),
        ("a=b,c", {"a": "b", "c": "d"}, True),
        ("a=b,c", {"a": "b"}, False),
    ],
)
def test_matches(text: str, labels: dict | None, expected: bool) -> None:
    assert parse_selector(text).matches(labels) is expected


def test_empty_everything_and_nothing() -> None:
    assert parse_selector("").empty
    assert not parse_selector("a").empty
    assert EVERYTHING.matches({"x": "y"}) and EVERYTHING.empty
    assert not NOTHING.matches({}) and not NOTHING.empty and str(NOTHING) == ""
    assert NOTHING.add(Requirement("a", "exists")) is NOTHING


def test_requires_exact_match() -> None:
    assert parse_selector("a=b,c in (d)").requires_exact_match("a") == "b"
    assert parse_selector("c in (d)").requires_exact_match("c") == "d"
    assert parse_selector("c in (d,e)").requires_exact_match("c") is None
    assert parse_selector("a!=b").requires_exact_match("a") is None
    assert parse_selector("a=b").requires_exact_match("z") is None


def test_selectors_compare_by_requirements() -> None:
    assert parse_selector("b=1,a=2") == parse_selector("a=2, b=1")
    assert parse_selector("a") != parse_selector("!a")


# ---------------------------------------------------------------------------------------
# Set and metav1.LabelSelector selectors
# ---------------------------------------------------------------------------------------


def test_selector_from_set() -> None:
    s = selector_from_set({"tier": "web", "app": "shop"})
    assert str(s) == "app=shop,tier=web"
    assert s.matches({"app": "shop", "tier": "web", "extra": "1"})
    assert not s.matches({"app": "shop"})
    assert selector_from_set({}).empty and selector_from_set(None).empty
    # Unvalidated by default (upstream SelectorFromSet); validated on request.
    assert str(selector_from_set({"-k": "v"})) == "-k=v"
    with pytest.raises(SelectorError) as info:
        selector_from_set({"-k": "v"}, validate=True)
    assert str(info.value) == f'key: Invalid value: "-k": {NAME_PART_MSG}'


@pytest.mark.parametrize(
    "ls, canonical",
    [
        ({}, ""),
        ({"matchLabels": {}, "matchExpressions": []}, ""),
        ({"matchLabels": {"b": "2", "a": "1"}}, "a=1,b=2"),
        (
            {
                "matchLabels": {"app": "web"},
                "matchExpressions": [
                    {"key": "tier", "operator": "In", "values": ["b", "a"]},
                    {"key": "env", "operator": "NotIn", "values": ["prod"]},
                    {"key": "canary", "operator": "DoesNotExist"},
                    {"key": "app", "operator": "Exists", "values": []},
                ],
            },
            "app=web,app,!canary,env notin (prod),tier in (a,b)",
        ),
    ],
)
def test_label_selector_conversion(ls: dict, canonical: str) -> None:
    assert str(selector_from_label_selector(ls)) == canonical


def test_label_selector_none_matches_nothing_and_empty_everything() -> None:
    assert not selector_from_label_selector(None).matches({})
    assert selector_from_label_selector({}).matches({"any": "thing"})


def test_label_selector_matching() -> None:
    s = selector_from_label_selector(
        {"matchLabels": {"app": "web"}, "matchExpressions": [{"key": "tier", "operator": "In", "values": ["fe"]}]}
    )
    assert s.matches({"app": "web", "tier": "fe"})
    assert not s.matches({"app": "web", "tier": "be"})
    assert not s.matches({"tier": "fe"})


@pytest.mark.parametrize(
    "ls, message",
    [
        ({"matchExpressions": [{"key": "a", "operator": "Foo"}]}, '"Foo" is not a valid pod selector operator'),
        ({"matchExpressions": [{"key": "a"}]}, '"" is not a valid pod selector operator'),
        (
            {"matchExpressions": [{"key": "a", "operator": "In", "values": []}]},
            "values: Invalid value: []string(nil): for 'in', 'notin' operators, values set can't be empty",
        ),
        (
            {"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]},
            'values: Invalid value: []string{"x"}: values set must be empty for exists and does not exist',
        ),
        (
            {"matchExpressions": [{"key": "-a", "operator": "NotIn", "values": []}]},
            (
                f'[key: Invalid value: "-a": {NAME_PART_MSG}, values: Invalid value: []string(nil): '
                "for 'in', 'notin' operators, values set can't be empty]"
            ),
        ),
        ({"matchLabels": {"a": "b c"}}, f'values[0][a]: Invalid value: "b c": {LABEL_VALUE_MSG}'),
    ],
)
def test_label_selector_errors(ls: dict, message: str) -> None:
    with pytest.raises(SelectorError) as info:
        selector_from_label_selector(ls)
    assert str(info.value) == message


def test_new_requirement_rejects_unknown_operator() -> None:
    with pytest.raises(SelectorError) as info:
        new_requirement("a", "like", ["x"])
    assert str(info.value) == (
        'operator: Unsupported value: "like": supported values: "in", "notin", "=", "==", "!=", "gt", "lt", '
        '"exists", "!"'
    )


def test_new_requirement_with_path() -> None:
    with pytest.raises(SelectorError) as info:
        new_requirement("a", "=", ["x", "y"], path="spec.selector")
    assert str(info.value) == (
        'spec.selector.values: Invalid value: []string{"x", "y"}: exact-match compatibility requires one single value'
    )


def test_validate_label_selector() -> None:
    ls = {
        "matchLabels": {"app": "-web"},
        "matchExpressions": [
            {"key": "a", "operator": "In"},
            {"key": "b", "operator": "Exists", "values": ["x"]},
            {"key": "c", "operator": "Near", "values": ["-v"]},
        ],
    }
    got = [e.message() for e in validate_label_selector(ls, "spec.selector")]
    assert got == [
        f'spec.selector.matchLabels: Invalid value: "-web": {LABEL_VALUE_MSG}',
        "spec.selector.matchExpressions[0].values: Required value: must be specified when `operator` is 'In' or 'NotIn'",
        (
            "spec.selector.matchExpressions[1].values: Forbidden: may not be specified when `operator` is 'Exists' or "
            "'DoesNotExist'"
        ),
        'spec.selector.matchExpressions[2].operator: Invalid value: "Near": not a valid selector operator',
        f'spec.selector.matchExpressions[2].values[0]: Invalid value: "-v": {LABEL_VALUE_MSG}',
    ]
    assert (
        validate_label_selector(ls, "s", allow_invalid_label_value=True)[-1].field == "s.matchExpressions[2].operator"
    )
    assert validate_label_selector(None, "spec.selector") == []
