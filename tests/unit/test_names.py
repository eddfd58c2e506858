"""FieldError rendering and name/label validators, checked against upstream's exact texts."""

import pytest

from ketch.api import names
from ketch.api.names import (
    FieldError,
    GoLiteral,
    aggregate,
    duplicate,
    forbidden,
    go_quote,
    go_value,
    internal_error,
    invalid,
    not_found,
    not_supported,
    required,
    too_long,
    too_long_max_length,
    too_many,
)
from ketch.api.quantity import parse_quantity

SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
    "and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is "
    r"'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)
LABEL_MSG = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and "
    "end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is "
    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)
DNS1035_MSG = (
    "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic "
    "character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for "
    "validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"
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


# ---------------------------------------------------------------------------------------
# FieldError
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "err, message",
    [
        (invalid("metadata.name", "Foo", SUBDOMAIN_MSG), f'metadata.name: Invalid value: "Foo": {SUBDOMAIN_MSG}'),
        (required("spec.containers[0].name"), "spec.containers[0].name: Required value"),
        (
            required("metadata.name", "name or generateName is required"),
            "metadata.name: Required value: name or generateName is required",
        ),
        (
            not_supported("spec.restartPolicy", "x", ["Always", "Never", "OnFailure"]),
            'spec.restartPolicy: Unsupported value: "x": supported values: "Always", "Never", "OnFailure"',
        ),
        (not_supported("spec.x", "y", []), 'spec.x: Unsupported value: "y"'),
        (duplicate("spec.ports[1].name", "http"), 'spec.ports[1].name: Duplicate value: "http"'),
        (
            forbidden("metadata.namespace", "not allowed on this type"),
            "metadata.namespace: Forbidden: not allowed on this type",
        ),
        (
            too_long("metadata.annotations", "", 262144),
            "metadata.annotations: Too long: must have at most 262144 bytes",
        ),
        (too_long_max_length("spec.x", "abc", 2), "spec.x: Too long: may not be longer than 2"),
        (too_long_max_length("spec.x", "abc", -1), "spec.x: Too long: value is too long"),
        (too_many("spec.containers", 5, 4), "spec.containers: Too many: 5: must have at most 4 items"),
        (too_many("spec.containers", -1, -1), "spec.containers: Too many: has too many items"),
        (not_found("spec.volumes[0]", "data"), 'spec.volumes[0]: Not found: "data"'),
        (internal_error("metadata.name", "boom"), "metadata.name: Internal error: boom"),
        (
            invalid("spec.replicas", -1, "must be greater than or equal to 0"),
            "spec.replicas: Invalid value: -1: must be greater than or equal to 0",
        ),
        (invalid("spec.x", None, "must be set"), "spec.x: Invalid value: null: must be set"),
    ],
)
def test_field_error_message(err: FieldError, message: str) -> None:
    assert err.message() == message
    assert str(err) == message
    assert err.body() == message.split(": ", 1)[1]


def test_field_error_reason_types() -> None:
    assert invalid("a", 1, "x").type == "FieldValueInvalid"
    assert required("a").type == "FieldValueRequired"
    assert not_supported("a", "b", []).type == "FieldValueNotSupported"
    assert duplicate("a", "b").type == "FieldValueDuplicate"
    assert forbidden("a", "b").type == "FieldValueForbidden"
    assert too_long("a", "b", 1).type == "FieldValueTooLong"
    assert too_many("a", 2, 1).type == "FieldValueTooMany"


@pytest.mark.parametrize(
    "value, rendered",
    [
        ("plain", '"plain"'),
        ('say "hi"\\', r'"say \"hi\"\\"'),
        ("line\nbreak\ttab", r'"line\nbreak\ttab"'),
        ("\x01\x7f", r'"\x01\x7f"'),
        ("Māori 日本", '"Māori 日本"'),
        ("\u200b", r'"\u200b"'),
        (True, "true"),
        (False, "false"),
        (0, "0"),
        (-42, "-42"),
        (1.5, "1.5"),
        (100.0, "100"),
        (123456.0, "123456"),
        (1e6, "1e+06"),
        (1234567.0, "1.234567e+06"),
        (0.0001, "0.0001"),
        (0.00001, "1e-05"),
        (-2.5, "-2.5"),
        (None, "null"),
        (["a", "b"], '[]string{"a", "b"}'),
        ([], "[]string{}"),
        ([1, 2], "[]int{1, 2}"),
        ({"b": "2", "a": "1"}, 'map[string]string{"a":"1", "b":"2"}'),
        (GoLiteral("[]string(nil)"), "[]string(nil)"),
        (parse_quantity("1Gi"), "1Gi"),
        ({"name": "x", "port": 80}, '{"name":"x","port":80}'),
    ],
)
def test_go_value_rendering(value: object, rendered: str) -> None:
    assert go_value(value) == rendered


def test_go_quote_matches_strconv() -> None:
    assert go_quote("") == '""'
    assert go_quote("\U0001f600") == '"\U0001f600"'  # printable emoji stays as is
    assert go_quote("\U000e0001") == r'"\U000e0001"'  # unprintable tag character


@pytest.mark.parametrize(
    "errors, expected",
    [
        ([], ""),
        ([required("a")], "a: Required value"),
        ([required("a"), forbidden("b", "no")], "[a: Required value, b: Forbidden: no]"),
        ([required("a"), required("a")], "a: Required value"),
    ],
)
def test_aggregate(errors: list[FieldError], expected: str) -> None:
    assert aggregate(errors) == expected


def test_path_helpers() -> None:
    path = names.child("", "spec", "containers")
    assert names.child(names.index(path, 0), "name") == "spec.containers[0].name"
    assert names.key(names.child("metadata", "labels"), "app") == "metadata.labels[app]"


# ---------------------------------------------------------------------------------------
# DNS names
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["a", "ab", "abc", "a1", "a-1", "a--1--2--b", "0", "01", "a" * 63])
def test_dns1123_label_accepts(value: str) -> None:
    assert names.is_dns1123_label(value) == []


@pytest.mark.parametrize(
    "value, errors",
    [
        ("", [LABEL_MSG]),
        ("A", [LABEL_MSG]),
        ("-a", [LABEL_MSG]),
        ("a-", [LABEL_MSG]),
        ("a_b", [LABEL_MSG]),
        ("a.b", ["must not contain dots"]),
        ("a\n", [LABEL_MSG]),
        ("a" * 64, ["must be no more than 63 characters"]),
        ("A" * 64, ["must be no more than 63 characters", LABEL_MSG]),
    ],
)
def test_dns1123_label_rejects(value: str, errors: list[str]) -> None:
    assert names.is_dns1123_label(value) == errors


@pytest.mark.parametrize("value", ["a", "a.b", "a.b.c", "1.2.3", "a-1.b-2", "0.a", ("a" * 63 + ".") * 3 + "a" * 61])
def test_dns1123_subdomain_accepts(value: str) -> None:
    assert names.is_dns1123_subdomain(value) == []


@pytest.mark.parametrize(
    "value, errors",
    [
        ("", [SUBDOMAIN_MSG]),
        ("A", [SUBDOMAIN_MSG]),
        ("a..b", [SUBDOMAIN_MSG]),
        (".a", [SUBDOMAIN_MSG]),
        ("a.", [SUBDOMAIN_MSG]),
        ("a_b.c", [SUBDOMAIN_MSG]),
        ("a" * 254, ["must be no more than 253 characters"]),
    ],
)
def test_dns1123_subdomain_rejects(value: str, errors: list[str]) -> None:
    assert names.is_dns1123_subdomain(value) == errors


@pytest.mark.parametrize(
    "value, errors",
    [
        ("a", []),
        ("a-1", []),
        ("1a", [DNS1035_MSG]),
        ("a.b", [DNS1035_MSG]),
        ("a" * 64, ["must be no more than 63 characters"]),
    ],
)
def test_dns1035_label(value: str, errors: list[str]) -> None:
    assert names.is_dns1035_label(value) == errors


def test_wildcard_and_underscore_subdomains() -> None:
    assert names.is_wildcard_dns1123_subdomain("*.example.com") == []
    assert names.is_wildcard_dns1123_subdomain("*.*.example.com") != []
    assert names.is_dns1123_subdomain_with_underscore("_srv.example.com") == []
    assert names.is_dns1123_subdomain_with_underscore("a__") != []


# ---------------------------------------------------------------------------------------
# Label keys and values
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "simple",
        "now-with-dashes",
        "1-starts-with-num",
        "1234",
        "simple/simple",
        "now.with.dots/simple",
        "1.2.3.4/5678",
        "Uppercase_Is_OK_123",
        "example.com/Uppercase_Is_OK_123",
        "requests.storage-foo",
        "a" * 63,
        "a" * 253 + "/" + "b" * 63,
    ],
)
def test_qualified_name_accepts(value: str) -> None:
    assert names.is_qualified_name(value) == []


@pytest.mark.parametrize(
    "value, errors",
    [
        ("nospecialchars%^=@", [NAME_PART_MSG]),
        ("cantendwithadash-", [NAME_PART_MSG]),
        ("example.com/", ["name part must be non-empty", NAME_PART_MSG]),
        ("/simple", ["prefix part must be non-empty"]),
        ("Example.com/abc", ["prefix part " + SUBDOMAIN_MSG]),
        ("a" * 64, ["name part must be no more than 63 characters"]),
        ("a" * 254 + "/abc", ["prefix part must be no more than 253 characters"]),
        (
            "only/one/slash",
            [
                (
                    "a valid label key must consist of alphanumeric characters, '-', '_' or '.', and must start and "
                    "end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for "
                    "validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix "
                    "and '/' (e.g. 'example.com/MyName')"
                )
            ],
        ),
    ],
)
def test_qualified_name_rejects(value: str, errors: list[str]) -> None:
    assert names.is_qualified_name(value) == errors


@pytest.mark.parametrize(
    "value", ["", "simple", "now-with-dashes", "1-starts-with-num", "end-with-num-1", "1234", "a" * 63]
)
def test_label_value_accepts(value: str) -> None:
    assert names.is_valid_label_value(value) == []


@pytest.mark.parametrize(
    "value, errors",
    [
        ("nospecialchars%^=@", [LABEL_VALUE_MSG]),
        ("Tama-nui-te-rā.is.Māori.sun", [LABEL_VALUE_MSG]),
        ("\\backslashes\\are\\bad", [LABEL_VALUE_MSG]),
        ("-starts-with-dash", [LABEL_VALUE_MSG]),
        ("ends.with.dot.", [LABEL_VALUE_MSG]),
        ("a" * 64, ["must be no more than 63 characters"]),
        ("ā" * 32, ["must be no more than 63 characters", LABEL_VALUE_MSG]),  # 64 bytes, counted as Go does
    ],
)
def test_label_value_rejects(value: str, errors: list[str]) -> None:
    assert names.is_valid_label_value(value) == errors


# ---------------------------------------------------------------------------------------
# Identifiers, keys, ports and the rest
# ---------------------------------------------------------------------------------------

C_IDENTIFIER_MSG = (
    "a valid C identifier must start with alphabetic character or '_', followed by a string of alphanumeric "
    "characters or '_' (e.g. 'my_name',  or 'MY_NAME',  or 'MyName', regex used for validation is "
    "'[A-Za-z_][A-Za-z0-9_]*')"
)
ENV_MSG = (
    "a valid environment variable name must consist of alphabetic characters, digits, '_', '-', or '.', and "
    "must not start with a digit (e.g. 'my.env-name',  or 'MY_ENV.NAME',  or 'MyEnvName1', regex used for "
    "validation is '[-._a-zA-Z][-._a-zA-Z0-9]*')"
)
RELAXED_ENV_MSG = "a valid environment variable name must consist only of printable ASCII characters other than '='"
CONFIG_KEY_MSG = (
    "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or "
    "'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')"
)


@pytest.mark.parametrize(
    "func, value, errors",
    [
        (names.is_c_identifier, "_a1", []),
        (names.is_c_identifier, "1a", [C_IDENTIFIER_MSG]),
        (names.is_c_identifier, "a-b", [C_IDENTIFIER_MSG]),
        (names.is_env_var_name, "my.env-name", []),
        (names.is_env_var_name, "1A", [ENV_MSG]),
        (names.is_env_var_name, "..", ["must not be '..'"]),
        (names.is_env_var_name, "..a", ["must not start with '..'"]),
        (names.is_relaxed_env_var_name, "1 weird:name!", []),
        (names.is_relaxed_env_var_name, "", ["environment variable name must be non-empty"]),
        (names.is_relaxed_env_var_name, "A=B", [RELAXED_ENV_MSG]),
        (names.is_relaxed_env_var_name, "tab\there", [RELAXED_ENV_MSG]),
        (names.is_relaxed_env_var_name, "ünicode", [RELAXED_ENV_MSG]),
        (names.is_config_map_key, "key.name", []),
        (names.is_config_map_key, "a b", [CONFIG_KEY_MSG]),
        (names.is_config_map_key, ".", ["must not be '.'"]),
        (names.is_config_map_key, "..data", ["must not start with '..'"]),
        (names.is_config_map_key, "a" * 254, ["must be no more than 253 characters"]),
        (names.is_valid_port_name, "http", []),
        (names.is_valid_port_name, "a-b-1", []),
        (names.is_valid_port_name, "1234", ["must contain at least one letter (a-z)"]),
        (names.is_valid_port_name, "a--b", ["must not contain consecutive hyphens"]),
        (names.is_valid_port_name, "-ab", ["must not begin or end with a hyphen"]),
        (names.is_valid_port_name, "Http", ["must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)"]),
        (names.is_valid_port_name, "a" * 16, ["must be no more than 15 characters"]),
        (
            names.is_valid_port_name,
            "",
            [
                "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)",
                "must contain at least one letter (a-z)",
            ],
        ),
        (names.is_percent, "93%", []),
        (
            names.is_percent,
            "9.3%",
            [
                (
                    "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', "
                    "regex used for validation is '[0-9]+%')"
                )
            ],
        ),
        (names.is_http_header_name, "X-Header-Name", []),
        (
            names.is_http_header_name,
            "X_Header",
            [
                (
                    "a valid HTTP header must consist of alphanumeric characters or '-' (e.g. 'X-Header-Name', "
                    "regex used for validation is '[-A-Za-z0-9]+')"
                )
            ],
        ),
    ],
)
def test_string_validators(func, value: str, errors: list[str]) -> None:
    assert func(value) == errors


@pytest.mark.parametrize(
    "port, errors",
    [
        (1, []),
        (65535, []),
        (0, ["must be between 1 and 65535, inclusive"]),
        (65536, ["must be between 1 and 65535, inclusive"]),
    ],
)
def test_port_number(port: int, errors: list[str]) -> None:
    assert names.is_valid_port_num(port) == errors


IP_MSG = ["must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"]
CIDR_MSG = ["must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)"]


@pytest.mark.parametrize(
    "value, errors",
    [
        ("10.9.8.7", []),
        ("2001:db8::ffff", []),
        ("::ffff:1.2.3.4", []),
        ("010.001.002.003", []),  # ParseIPSloppy accepts leading zeros
        ("256.1.1.1", IP_MSG),
        ("1.2.3", IP_MSG),
        ("fe80::1%eth0", IP_MSG),
        ("", IP_MSG),
        ("example.com", IP_MSG),
    ],
)
def test_ip(value: str, errors: list[str]) -> None:
    assert names.is_valid_ip(value) == errors


def test_ip_families() -> None:
    assert names.is_valid_ipv4_address("1.2.3.4") == []
    assert names.is_valid_ipv4_address("::1") == ["must be a valid IPv4 address"]
    assert names.is_valid_ipv6_address("::1") == []
    assert names.is_valid_ipv6_address("1.2.3.4") == ["must be a valid IPv6 address"]


@pytest.mark.parametrize(
    "value, errors",
    [
        ("10.9.8.0/24", []),
        ("10.9.8.7/24", []),  # host bits are accepted by ParseCIDR
        ("2001:db8::/64", []),
        ("10.0.0.0/33", CIDR_MSG),
        ("10.0.0.0", CIDR_MSG),
        ("10.0.0.0/255.0.0.0", CIDR_MSG),
        ("2001:db8::/129", CIDR_MSG),
    ],
)
def test_cidr(value: str, errors: list[str]) -> None:
    assert names.is_valid_cidr(value) == errors


# ---------------------------------------------------------------------------------------
# Object names
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "func, name, prefix, errors",
    [
        (names.name_is_dns_subdomain, "my-app.v1", False, []),
        (names.name_is_dns_subdomain, "Foo", False, [SUBDOMAIN_MSG]),
        (names.name_is_dns_subdomain, "web-", True, []),  # generateName may end with '-'
        (names.name_is_dns_subdomain, "web-", False, [SUBDOMAIN_MSG]),
        (names.name_is_dns_label, "a.b", False, ["must not contain dots"]),
        (names.name_is_dns_label, "ns-", True, []),
        (names.name_is_dns1035_label, "1svc", False, [DNS1035_MSG]),
        (names.name_is_dns1035_label, "svc-", True, []),
        (names.validate_path_segment_name, "system:admin", False, []),
        (names.validate_path_segment_name, ".", False, ["may not be '.'"]),
        (names.validate_path_segment_name, "..", False, ["may not be '..'"]),
        (names.validate_path_segment_name, "..", True, []),
        (names.validate_path_segment_name, "a/b%c", False, ["may not contain '/'", "may not contain '%'"]),
        (names.validate_path_segment_name, "a/", True, ["may not contain '/'"]),
    ],
)
def test_name_validators(func, name: str, prefix: bool, errors: list[str]) -> None:
    assert func(name, prefix) == errors


def test_mask_trailing_dash_keeps_upstream_quirk() -> None:
    assert names.mask_trailing_dash("web-") == "wea"  # drops two characters, like upstream
    assert names.mask_trailing_dash("web") == "web"


# ---------------------------------------------------------------------------------------
# Labels and annotations on objects
# ---------------------------------------------------------------------------------------


def test_validate_labels_reports_keys_and_values_at_the_map() -> None:
    errs = names.validate_labels({"app": "web", "-bad": "ok", "tier": "-x"}, "metadata.labels")
    assert [e.message() for e in errs] == [
        f'metadata.labels: Invalid value: "-bad": {NAME_PART_MSG}',
        f'metadata.labels: Invalid value: "-x": {LABEL_VALUE_MSG}',
    ]
    assert all(e.type == "FieldValueInvalid" for e in errs)
    assert names.validate_labels(None, "metadata.labels") == []


def test_validate_annotations_lowercases_keys_and_limits_size() -> None:
    assert names.validate_annotations({"Example.COM/Key": "v" * 1000}, "metadata.annotations") == []
    bad = names.validate_annotations({"a/b/c": "v"}, "metadata.annotations")
    assert [e.field for e in bad] == ["metadata.annotations"]
    assert bad[0].value == "a/b/c"

    limit = names.TOTAL_ANNOTATION_SIZE_LIMIT_B
    assert names.validate_annotations({"k": "v" * (limit - 1)}, "metadata.annotations") == []
    too_big = names.validate_annotations({"k": "v" * limit}, "metadata.annotations")
    assert [e.message() for e in too_big] == ["metadata.annotations: Too long: must have at most 262144 bytes"]
    # Size is measured in UTF-8 bytes.
    assert names.validate_annotations({"k": "é" * (limit // 2)}, "metadata.annotations") != []
