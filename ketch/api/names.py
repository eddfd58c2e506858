"""Field errors and the name/label/annotation validators of Kubernetes.

Mirrors k8s.io/apimachinery/pkg/util/validation (+ .../field), pkg/api/validate/content,
pkg/api/validation and pkg/apis/meta/v1/validation.  Every message is byte-for-byte what
the apiserver prints, because kubectl users and tests compare them literally.

Validators named ``is_*`` return a list of message strings (empty when valid), exactly like
upstream; callers wrap each message with ``invalid(path, value, msg)``.  Lengths are counted
in UTF-8 bytes, as Go's ``len(string)`` does.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from ketch.api.quantity import Quantity

# --------------------------------------------------------------------------------------
# FieldError (k8s.io/apimachinery/pkg/util/validation/field)
# --------------------------------------------------------------------------------------

FIELD_VALUE_NOT_FOUND = "FieldValueNotFound"
FIELD_VALUE_REQUIRED = "FieldValueRequired"
FIELD_VALUE_DUPLICATE = "FieldValueDuplicate"
FIELD_VALUE_INVALID = "FieldValueInvalid"
FIELD_VALUE_NOT_SUPPORTED = "FieldValueNotSupported"
FIELD_VALUE_FORBIDDEN = "FieldValueForbidden"
FIELD_VALUE_TOO_LONG = "FieldValueTooLong"
FIELD_VALUE_TOO_MANY = "FieldValueTooMany"
FIELD_VALUE_TYPE_INVALID = "FieldValueTypeInvalid"
INTERNAL_ERROR = "InternalError"

_TYPE_TEXT = {
    FIELD_VALUE_NOT_FOUND: "Not found",
    FIELD_VALUE_REQUIRED: "Required value",
    FIELD_VALUE_DUPLICATE: "Duplicate value",
    FIELD_VALUE_INVALID: "Invalid value",
    FIELD_VALUE_NOT_SUPPORTED: "Unsupported value",
    FIELD_VALUE_FORBIDDEN: "Forbidden",
    FIELD_VALUE_TOO_LONG: "Too long",
    FIELD_VALUE_TOO_MANY: "Too many",
    FIELD_VALUE_TYPE_INVALID: "Invalid value",
    INTERNAL_ERROR: "Internal error",
}
# Upstream never prints the offending value for these reasons.
_VALUE_HIDDEN = {FIELD_VALUE_REQUIRED, FIELD_VALUE_FORBIDDEN, FIELD_VALUE_TOO_LONG, INTERNAL_ERROR}


class _Omitted:
    """Marker for 'no value to print' (upstream's omitValue)."""

    def __repr__(self) -> str:
        return "OMITTED"


OMITTED = _Omitted()


@dataclass(frozen=True)
class GoLiteral:
    """A value whose Go rendering is known verbatim, e.g. ``[]string(nil)``."""

    text: str


@dataclass(frozen=True)
class FieldError:
    """One field-level validation error, rendered like upstream field.Error."""

    type: str
    field: str
    value: Any
    detail: str

    def body(self) -> str:
        """The message without the field path (used for Status causes)."""
        text = _TYPE_TEXT[self.type]
        if self.type not in _VALUE_HIDDEN and self.value is not OMITTED:
            text += ": " + go_value(self.value)
        if self.detail:
            text += ": " + self.detail
        return text

    def message(self) -> str:
        return f"{self.field}: {self.body()}"

    def __str__(self) -> str:
        return self.message()


def required(field: str, detail: str = "") -> FieldError:
    return FieldError(FIELD_VALUE_REQUIRED, field, "", detail)


def invalid(field: str, value: Any, detail: str) -> FieldError:
    return FieldError(FIELD_VALUE_INVALID, field, value, detail)


def type_invalid(field: str, value: Any, detail: str) -> FieldError:
    return FieldError(FIELD_VALUE_TYPE_INVALID, field, value, detail)


def not_found(field: str, value: Any) -> FieldError:
    return FieldError(FIELD_VALUE_NOT_FOUND, field, value, "")


def not_supported(field: str, value: Any, valid: Iterable[str]) -> FieldError:
    quoted = [go_quote(v) for v in valid]
    detail = "supported values: " + ", ".join(quoted) if quoted else ""
    return FieldError(FIELD_VALUE_NOT_SUPPORTED, field, value, detail)


def duplicate(field: str, value: Any) -> FieldError:
    return FieldError(FIELD_VALUE_DUPLICATE, field, value, "")


def forbidden(field: str, detail: str) -> FieldError:
    return FieldError(FIELD_VALUE_FORBIDDEN, field, "", detail)


def too_long(field: str, value: Any, max_len: int) -> FieldError:
    """field.TooLong: the byte-limit wording used for annotations, names, etc."""
    return FieldError(FIELD_VALUE_TOO_LONG, field, value, f"must have at most {max_len} bytes")


def too_long_max_length(field: str, value: Any, max_len: int) -> FieldError:
    """field.TooLongMaxLength: the 'may not be longer than' wording."""
    detail = f"may not be longer than {max_len}" if max_len >= 0 else "value is too long"
    return FieldError(FIELD_VALUE_TOO_LONG, field, value, detail)


def too_many(field: str, actual: int, max_items: int) -> FieldError:
    detail = f"must have at most {max_items} items" if max_items >= 0 else "has too many items"
    return FieldError(FIELD_VALUE_TOO_MANY, field, actual if actual >= 0 else OMITTED, detail)


def internal_error(field: str, detail: str) -> FieldError:
    return FieldError(INTERNAL_ERROR, field, None, detail)


def aggregate(errors: Iterable[FieldError | str]) -> str:
    """Render a list like ErrorList.ToAggregate().Error(): de-duplicated, '[a, b]' for many."""
    messages: list[str] = []
    for err in errors:
        text = str(err)
        if text not in messages:
            messages.append(text)
    if len(messages) == 1:
        return messages[0]
    return "[" + ", ".join(messages) + "]" if messages else ""


# Field paths are plain strings rendered like field.Path.String().
def child(path: str, *names: str) -> str:
    for name in names:
        path = f"{path}.{name}" if path else name
    return path


def index(path: str, i: int) -> str:
    return f"{path}[{i}]"


def key(path: str, k: str) -> str:
    return f"{path}[{k}]"


# --------------------------------------------------------------------------------------
# Go value rendering (what fmt prints for field.Error.BadValue)
# --------------------------------------------------------------------------------------

_GO_ESCAPES = {"\a": r"\a", "\b": r"\b", "\f": r"\f", "\n": r"\n", "\r": r"\r", "\t": r"\t", "\v": r"\v"}


def go_quote(s: str) -> str:
    """strconv.Quote: Go's %q for a string."""
    out = ['"']
    for ch in s:
        cp = ord(ch)
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch.isprintable():
            out.append(ch)
        elif ch in _GO_ESCAPES:
            out.append(_GO_ESCAPES[ch])
        elif cp < 0x20 or cp == 0x7F:
            out.append(f"\\x{cp:02x}")
        elif 0xD800 <= cp <= 0xDFFF:
            out.append("\\ufffd")  # Go sees an invalid rune here
        elif cp < 0x10000:
            out.append(f"\\u{cp:04x}")
        else:
            out.append(f"\\U{cp:08x}")
    out.append('"')
    return "".join(out)


def go_float(f: float) -> str:
    """Go's %v for a float64 (strconv 'g' with shortest precision)."""
    if math.isnan(f):
        return "NaN"
    if f in (float("inf"), float("-inf")):
        return "+Inf" if f > 0 else "-Inf"
    sign, digits, exp = Decimal(repr(f)).as_tuple()
    prefix = "-" if sign else ""
    if not any(digits):
        return prefix + "0"
    text = "".join(map(str, digits)).rstrip("0")
    exp += len(digits) - len(text)  # value == int(text) * 10**exp
    point = len(text) + exp  # position of the decimal point within text
    if point - 1 < -4 or point - 1 >= 6:  # shortest %g switches to %e from 1e+06
        mantissa = text[0] + ("." + text[1:] if len(text) > 1 else "")
        e = point - 1
        return f"{prefix}{mantissa}e{'-' if e < 0 else '+'}{abs(e):02d}"
    if point <= 0:
        return f"{prefix}0.{'0' * -point}{text}"
    if point >= len(text):
        return prefix + text + "0" * (point - len(text))
    return f"{prefix}{text[:point]}.{text[point:]}"


def go_value(value: Any) -> str:
    """How field.Error prints a bad value; JSON for shapes Go would print as structs."""
    if value is None:
        return "null"
    if isinstance(value, GoLiteral):
        return value.text
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return go_float(value)
    if isinstance(value, str):
        return go_quote(value)
    if isinstance(value, Quantity):  # a fmt.Stringer upstream
        return str(value)
    if isinstance(value, (list, tuple)):
        return _go_slice(value)
    if isinstance(value, Mapping) and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        inner = ", ".join(f"{go_quote(k)}:{go_quote(value[k])}" for k in sorted(value))
        return "map[string]string{" + inner + "}"
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def _go_slice(items: list | tuple) -> str:
    if all(isinstance(v, str) for v in items):
        return "[]string{" + ", ".join(go_quote(v) for v in items) + "}"
    if all(isinstance(v, int) and not isinstance(v, bool) for v in items):
        return "[]int{" + ", ".join(str(v) for v in items) + "}"
    return "[]interface {}{" + ", ".join(go_value(v) for v in items) + "}"


# --------------------------------------------------------------------------------------
# Message builders (validation.MaxLenError, RegexError, ...)
# --------------------------------------------------------------------------------------

# Kubernetes 1.35 says "characters"; later releases (content package) say "bytes".
# Kept in one place so the wording can follow the targeted release.
_LENGTH_UNIT = "characters"


def max_len_error(length: int) -> str:
    return f"must be no more than {length} {_LENGTH_UNIT}"


def regex_error(msg: str, fmt: str, *examples: str) -> str:
    if not examples:
        return f"{msg} (regex used for validation is '{fmt}')"
    # Upstream joins "'a', " and " or " which yields the double space in "'a',  or 'b'".
    shown = " or ".join(f"'{e}', " for e in examples)
    return f"{msg} (e.g. {shown}regex used for validation is '{fmt}')"


def empty_error() -> str:
    return "must be non-empty"


def inclusive_range_error(lo: int, hi: int) -> str:
    return f"must be between {lo} and {hi}, inclusive"


def _blen(s: str) -> int:
    return len(s.encode("utf-8", "surrogatepass"))


def remembers_valid(check: Callable[[str], list[str]]) -> Callable[[str], list[str]]:
    """A string checker that remembers the strings it passed: the same label keys, names and env
    names come in object after object. Failures are computed each time (they carry messages)."""
    passed: set[str] = set()

    @functools.wraps(check)
    def remembered(value: str) -> list[str]:
        exact = type(value) is str
        if exact and value in passed:
            return []
        errs = check(value)
        if not errs and exact:
            if len(passed) >= 20_000:
                passed.clear()
            passed.add(value)
        return errs

    return remembered


def _matches(pattern: re.Pattern[str], value: str) -> bool:
    # Go's ^...$ anchor the whole text; Python's $ would also accept a trailing newline.
    return pattern.fullmatch(value) is not None


# --------------------------------------------------------------------------------------
# DNS names
# --------------------------------------------------------------------------------------

DNS1123_LABEL_MAX_LENGTH = 63
DNS1123_SUBDOMAIN_MAX_LENGTH = 253
DNS1035_LABEL_MAX_LENGTH = 63

_DNS1123_LABEL_FMT = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_LABEL_MSG = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
    "and must start and end with an alphanumeric character"
)
_DNS1123_SUBDOMAIN_FMT = _DNS1123_LABEL_FMT + r"(\." + _DNS1123_LABEL_FMT + ")*"
_DNS1123_SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
    "and must start and end with an alphanumeric character"
)
_DNS1123_LABEL_UNDERSCORE_FMT = "_?[a-z0-9]([-_a-z0-9]*[a-z0-9])?"
_DNS1123_SUBDOMAIN_UNDERSCORE_FMT = _DNS1123_LABEL_UNDERSCORE_FMT + r"(\." + _DNS1123_LABEL_UNDERSCORE_FMT + ")*"
_DNS1123_SUBDOMAIN_UNDERSCORE_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '_', '-' or '.', "
    "and must start and end with an alphanumeric character"
)
_DNS1035_LABEL_FMT = "[a-z]([-a-z0-9]*[a-z0-9])?"
_DNS1035_LABEL_MSG = (
    "a DNS-1035 label must consist of lower case alphanumeric characters or '-', "
    "start with an alphabetic character, and end with an alphanumeric character"
)
_WILDCARD_DNS1123_SUBDOMAIN_FMT = r"\*\." + _DNS1123_SUBDOMAIN_FMT
_WILDCARD_DNS1123_SUBDOMAIN_MSG = (
    "a wildcard DNS-1123 subdomain must start with '*.', followed by a valid DNS subdomain, "
    "which must consist of lower case alphanumeric characters, '-' or '.' and end with an alphanumeric character"
)

_DNS1123_LABEL_RE = re.compile(_DNS1123_LABEL_FMT)
_DNS1123_SUBDOMAIN_RE = re.compile(_DNS1123_SUBDOMAIN_FMT)
_DNS1123_SUBDOMAIN_UNDERSCORE_RE = re.compile(_DNS1123_SUBDOMAIN_UNDERSCORE_FMT)
_DNS1035_LABEL_RE = re.compile(_DNS1035_LABEL_FMT)
_WILDCARD_DNS1123_SUBDOMAIN_RE = re.compile(_WILDCARD_DNS1123_SUBDOMAIN_FMT)


@remembers_valid
def is_dns1123_label(value: str) -> list[str]:
    errs = []
    if _blen(value) > DNS1123_LABEL_MAX_LENGTH:
        errs.append(max_len_error(DNS1123_LABEL_MAX_LENGTH))
    if not _matches(_DNS1123_LABEL_RE, value):
        if _matches(_DNS1123_SUBDOMAIN_RE, value):
            errs.append("must not contain dots")  # a valid subdomain, so the dots are the problem
        else:
            errs.append(regex_error(_DNS1123_LABEL_MSG, _DNS1123_LABEL_FMT, "my-name", "123-abc"))
    return errs


@remembers_valid
def is_dns1123_subdomain(value: str) -> list[str]:
    errs = []
    if _blen(value) > DNS1123_SUBDOMAIN_MAX_LENGTH:
        errs.append(max_len_error(DNS1123_SUBDOMAIN_MAX_LENGTH))
    if not _matches(_DNS1123_SUBDOMAIN_RE, value):
        errs.append(regex_error(_DNS1123_SUBDOMAIN_MSG, _DNS1123_SUBDOMAIN_FMT, "example.com"))
    return errs


def is_dns1123_subdomain_with_underscore(value: str) -> list[str]:
    errs = []
    if _blen(value) > DNS1123_SUBDOMAIN_MAX_LENGTH:
        errs.append(max_len_error(DNS1123_SUBDOMAIN_MAX_LENGTH))
    if not _matches(_DNS1123_SUBDOMAIN_UNDERSCORE_RE, value):
        errs.append(regex_error(_DNS1123_SUBDOMAIN_UNDERSCORE_MSG, _DNS1123_SUBDOMAIN_UNDERSCORE_FMT, "example.com"))
    return errs


@remembers_valid
def is_dns1035_label(value: str) -> list[str]:
    errs = []
    if _blen(value) > DNS1035_LABEL_MAX_LENGTH:
        errs.append(max_len_error(DNS1035_LABEL_MAX_LENGTH))
    if not _matches(_DNS1035_LABEL_RE, value):
        errs.append(regex_error(_DNS1035_LABEL_MSG, _DNS1035_LABEL_FMT, "my-name", "abc-123"))
    return errs


def is_wildcard_dns1123_subdomain(value: str) -> list[str]:
    errs = []
    if _blen(value) > DNS1123_SUBDOMAIN_MAX_LENGTH:
        errs.append(max_len_error(DNS1123_SUBDOMAIN_MAX_LENGTH))
    if not _matches(_WILDCARD_DNS1123_SUBDOMAIN_RE, value):
        errs.append(regex_error(_WILDCARD_DNS1123_SUBDOMAIN_MSG, _WILDCARD_DNS1123_SUBDOMAIN_FMT, "*.example.com"))
    return errs


# --------------------------------------------------------------------------------------
# Label keys (qualified names) and values
# --------------------------------------------------------------------------------------

LABEL_KEY_MAX_LENGTH = 63
LABEL_VALUE_MAX_LENGTH = 63

_LABEL_KEY_FMT = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_LABEL_KEY_MSG = (
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"
)
_LABEL_KEY_EXAMPLES = ("MyName", "my.name", "123-abc")
_LABEL_VALUE_FMT = "(" + _LABEL_KEY_FMT + ")?"
_LABEL_VALUE_MSG = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', "
    "and must start and end with an alphanumeric character"
)
_LABEL_KEY_RE = re.compile(_LABEL_KEY_FMT)
_LABEL_VALUE_RE = re.compile(_LABEL_VALUE_FMT)


@remembers_valid
def is_qualified_name(value: str) -> list[str]:
    """A label key / annotation key: ``[DNS-subdomain '/'] name``."""
    errs: list[str] = []
    parts = value.split("/")
    if len(parts) == 1:
        name = parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            errs.append("prefix part " + empty_error())
        else:
            errs.extend("prefix part " + msg for msg in is_dns1123_subdomain(prefix))
    else:
        return [
            "a valid label key "
            + regex_error(_LABEL_KEY_MSG, _LABEL_KEY_FMT, *_LABEL_KEY_EXAMPLES)
            + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
        ]
    if not name:
        errs.append("name part " + empty_error())
    elif _blen(name) > LABEL_KEY_MAX_LENGTH:
        errs.append("name part " + max_len_error(LABEL_KEY_MAX_LENGTH))
    if not _matches(_LABEL_KEY_RE, name):
        errs.append("name part " + regex_error(_LABEL_KEY_MSG, _LABEL_KEY_FMT, *_LABEL_KEY_EXAMPLES))
    return errs


@remembers_valid
def is_valid_label_value(value: str) -> list[str]:
    errs = []
    if _blen(value) > LABEL_VALUE_MAX_LENGTH:
        errs.append(max_len_error(LABEL_VALUE_MAX_LENGTH))
    if not _matches(_LABEL_VALUE_RE, value):
        errs.append(regex_error(_LABEL_VALUE_MSG, _LABEL_VALUE_FMT, "MyValue", "my_value", "12345"))
    return errs


# --------------------------------------------------------------------------------------
# Identifiers, keys, ports, percentages, headers
# --------------------------------------------------------------------------------------

_C_IDENTIFIER_FMT = "[A-Za-z_][A-Za-z0-9_]*"
_C_IDENTIFIER_MSG = (
    "a valid C identifier must start with alphabetic character or '_', "
    "followed by a string of alphanumeric characters or '_'"
)
_ENV_VAR_NAME_FMT = "[-._a-zA-Z][-._a-zA-Z0-9]*"
_ENV_VAR_NAME_MSG = (
    "a valid environment variable name must consist of alphabetic characters, digits, '_', '-', or '.', "
    "and must not start with a digit"
)
_RELAXED_ENV_VAR_NAME_MSG = (
    "a valid environment variable name must consist only of printable ASCII characters other than '='"
)
_CONFIG_MAP_KEY_FMT = "[-._a-zA-Z0-9]+"
_CONFIG_MAP_KEY_MSG = "a valid config key must consist of alphanumeric characters, '-', '_' or '.'"
_PERCENT_FMT = "[0-9]+%"
_PERCENT_MSG = "a valid percent string must be a numeric string followed by an ending '%'"
_HTTP_HEADER_NAME_FMT = "[-A-Za-z0-9]+"
_HTTP_HEADER_NAME_MSG = "a valid HTTP header must consist of alphanumeric characters or '-'"

_C_IDENTIFIER_RE = re.compile(_C_IDENTIFIER_FMT)
_ENV_VAR_NAME_RE = re.compile(_ENV_VAR_NAME_FMT)
_CONFIG_MAP_KEY_RE = re.compile(_CONFIG_MAP_KEY_FMT)
_PERCENT_RE = re.compile(_PERCENT_FMT)
_HTTP_HEADER_NAME_RE = re.compile(_HTTP_HEADER_NAME_FMT)
_PORT_NAME_CHARSET_RE = re.compile("[-a-z0-9]+")
_HAS_LETTER_RE = re.compile("[a-z]")


def _chdir_prefix_errors(value: str) -> list[str]:
    if value == ".":
        return ["must not be '.'"]
    if value == "..":
        return ["must not be '..'"]
    if value.startswith(".."):
        return ["must not start with '..'"]
    return []


@remembers_valid
def is_c_identifier(value: str) -> list[str]:
    if not _matches(_C_IDENTIFIER_RE, value):
        return [regex_error(_C_IDENTIFIER_MSG, _C_IDENTIFIER_FMT, "my_name", "MY_NAME", "MyName")]
    return []


@remembers_valid
def is_env_var_name(value: str) -> list[str]:
    """Strict env var names (used when RelaxedEnvironmentVariableValidation is off)."""
    errs = []
    if not _matches(_ENV_VAR_NAME_RE, value):
        errs.append(regex_error(_ENV_VAR_NAME_MSG, _ENV_VAR_NAME_FMT, "my.env-name", "MY_ENV.NAME", "MyEnvName1"))
    return errs + _chdir_prefix_errors(value)


@remembers_valid
def is_relaxed_env_var_name(value: str) -> list[str]:
    """Env var names under RelaxedEnvironmentVariableValidation (on by default in 1.35)."""
    errs = []
    if not value:
        errs.append("environment variable name " + empty_error())
    if any(not (0x20 <= ord(ch) < 0x7F) or ch == "=" for ch in value):
        errs.append(_RELAXED_ENV_VAR_NAME_MSG)
    return errs


@remembers_valid
def is_config_map_key(value: str) -> list[str]:
    errs = []
    if _blen(value) > DNS1123_SUBDOMAIN_MAX_LENGTH:
        errs.append(max_len_error(DNS1123_SUBDOMAIN_MAX_LENGTH))
    if not _matches(_CONFIG_MAP_KEY_RE, value):
        errs.append(regex_error(_CONFIG_MAP_KEY_MSG, _CONFIG_MAP_KEY_FMT, "key.name", "KEY_NAME", "key-name"))
    return errs + _chdir_prefix_errors(value)


def is_valid_port_num(port: int) -> list[str]:
    return [] if 1 <= port <= 65535 else [inclusive_range_error(1, 65535)]


def is_in_range(value: int, lo: int, hi: int) -> list[str]:
    return [] if lo <= value <= hi else [inclusive_range_error(lo, hi)]


def is_valid_group_id(gid: int) -> list[str]:
    return is_in_range(gid, 0, 0xFFFFFFFF)


def is_valid_user_id(uid: int) -> list[str]:
    return is_in_range(uid, 0, 0xFFFFFFFF)


@remembers_valid
def is_valid_port_name(port: str) -> list[str]:
    errs = []
    if _blen(port) > 15:
        errs.append(max_len_error(15))
    if not _matches(_PORT_NAME_CHARSET_RE, port):
        errs.append("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)")
    if not _HAS_LETTER_RE.search(port):
        errs.append("must contain at least one letter (a-z)")
    if "--" in port:
        errs.append("must not contain consecutive hyphens")
    if port and (port[0] == "-" or port[-1] == "-"):
        errs.append("must not begin or end with a hyphen")
    return errs


def is_percent(value: str) -> list[str]:
    """validation.IsValidPercent."""
    if not _matches(_PERCENT_RE, value):
        return [regex_error(_PERCENT_MSG, _PERCENT_FMT, "1%", "93%")]
    return []


def is_http_header_name(value: str) -> list[str]:
    if not _matches(_HTTP_HEADER_NAME_RE, value):
        return [regex_error(_HTTP_HEADER_NAME_MSG, _HTTP_HEADER_NAME_FMT, "X-Header-Name")]
    return []


# --------------------------------------------------------------------------------------
# IP addresses (netutils.ParseIPSloppy / ParseCIDRSloppy accept leading zeros in IPv4)
# --------------------------------------------------------------------------------------

_DOTTED_QUAD_RE = re.compile(r"[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+")


def _parse_ip_sloppy(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if "%" in value:  # Go rejects IPv6 zones; Python would accept them
        return None
    if _matches(_DOTTED_QUAD_RE, value):
        octets = [int(part) for part in value.split(".")]
        if all(o <= 255 for o in octets):
            return ipaddress.IPv4Address(".".join(map(str, octets)))
        return None
    if ":" not in value:
        return None
    try:
        return ipaddress.IPv6Address(value)
    except ValueError:
        return None


def _parse_cidr_sloppy(value: str) -> bool:
    address, slash, prefix = value.partition("/")
    ip = _parse_ip_sloppy(address)
    if not slash or ip is None or not prefix.isascii() or not prefix.isdigit():
        return False
    return int(prefix) <= ip.max_prefixlen


def is_valid_ip(value: str) -> list[str]:
    if _parse_ip_sloppy(value) is None:
        return ["must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"]
    return []


def is_valid_ipv4_address(value: str) -> list[str]:
    ip = _parse_ip_sloppy(value)
    ok = isinstance(ip, ipaddress.IPv4Address) or (isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None)
    return [] if ok else ["must be a valid IPv4 address"]


def is_valid_ipv6_address(value: str) -> list[str]:
    ip = _parse_ip_sloppy(value)
    ok = isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is None
    return [] if ok else ["must be a valid IPv6 address"]


def is_valid_cidr(value: str) -> list[str]:
    if not _parse_cidr_sloppy(value):
        return ["must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)"]
    return []


# --------------------------------------------------------------------------------------
# Object names (ValidateNameFunc: name, prefix) -> messages
# --------------------------------------------------------------------------------------

NameValidator = Callable[[str, bool], list[str]]


def mask_trailing_dash(name: str) -> str:
    """Upstream's maskTrailingDash, including its quirk of dropping two characters."""
    return name[:-2] + "a" if name.endswith("-") else name


def name_is_dns_subdomain(name: str, prefix: bool) -> list[str]:
    return is_dns1123_subdomain(mask_trailing_dash(name) if prefix else name)


def name_is_dns_label(name: str, prefix: bool) -> list[str]:
    return is_dns1123_label(mask_trailing_dash(name) if prefix else name)


def name_is_dns1035_label(name: str, prefix: bool) -> list[str]:
    return is_dns1035_label(mask_trailing_dash(name) if prefix else name)


def validate_path_segment_name(name: str, prefix: bool) -> list[str]:
    """Names that only need to be safe as a URL path segment (e.g. RBAC roles)."""
    if not prefix and name in (".", ".."):
        return [f"may not be '{name}'"]
    return [f"may not contain '{bad}'" for bad in ("/", "%") if bad in name]


validate_namespace_name = name_is_dns_label
validate_service_account_name = name_is_dns_subdomain


# --------------------------------------------------------------------------------------
# Labels and annotations (metav1 validation / api validation)
# --------------------------------------------------------------------------------------

TOTAL_ANNOTATION_SIZE_LIMIT_B = 256 * (1 << 10)


def validate_label_name(name: str, path: str) -> list[FieldError]:
    return [invalid(path, name, msg) for msg in is_qualified_name(name)]


def validate_labels(labels: Mapping[str, str] | None, path: str) -> list[FieldError]:
    """Keys and values are both reported at ``path`` itself, as upstream does."""
    errs: list[FieldError] = []
    for k in sorted(labels or {}):
        errs.extend(validate_label_name(k, path))
        errs.extend(invalid(path, labels[k], msg) for msg in is_valid_label_value(labels[k]))
    return errs


def validate_annotations(annotations: Mapping[str, str] | None, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    annotations = annotations or {}
    for k in sorted(annotations):
        # Annotation keys are qualified names where case does not matter.
        errs.extend(invalid(path, k, msg) for msg in is_qualified_name(k.lower()))
    total = sum(_blen(k) + _blen(v) for k, v in annotations.items())
    if total > TOTAL_ANNOTATION_SIZE_LIMIT_B:
        errs.append(too_long(path, "", TOTAL_ANNOTATION_SIZE_LIMIT_B))
    return errs
