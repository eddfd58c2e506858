"""What the apiserver does to a request body before it validates it: decode it into the typed struct.

Upstream decodes JSON with sigs.k8s.io/json into the Go type of the resource. That step

- rejects values of the wrong JSON type with Go's `json: cannot unmarshal ... into Go struct field
  <Struct>.<json path> of type <go type>` (the path names struct fields only: no indices, no map keys);
- runs the custom unmarshalers of Quantity, IntOrString and Time, whose errors abort decoding;
- with fieldValidation=Strict/Warn, collects `unknown field "a.b[0].c"` and `duplicate field "a.b"`
  in document order (the server reports them as `strict decoding error: ...` or as warnings);
- stores quantities canonically (`cpu: 0.5` is stored as `500m`).

Here the typed struct is the schema (`ketch.api.schema.Node`); the Go type names that appear in
messages are derived from the definition names, with a small table for Go's named string types.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any, Callable, NamedTuple

import yaml

from . import schema
from .casefold import fold_case
from .jsonclone import same_json
from .names import go_quote
from .quantity import ERR_FORMAT_WRONG, QuantityError, from_json

TIME = "io.k8s.apimachinery.pkg.apis.meta.v1.Time"
MICRO_TIME = "io.k8s.apimachinery.pkg.apis.meta.v1.MicroTime"
RAW_EXTENSION = "io.k8s.apimachinery.pkg.runtime.RawExtension"

_INT_RANGES = {"int32": (-(1 << 31), (1 << 31) - 1), "int64": (-(1 << 63), (1 << 63) - 1)}
_OPAQUE_GO_TYPES = {
    schema.QUANTITY: "resource.Quantity",
    schema.INT_OR_STRING: "intstr.IntOrString",
    RAW_EXTENSION: "runtime.RawExtension",
}

# Go's named string (and string slice) types, which type errors name: (definition, field) -> type.
_CORE, _APPS, _BATCH, _NET = (
    "io.k8s.api.core.v1.",
    "io.k8s.api.apps.v1.",
    "io.k8s.api.batch.v1.",
    "io.k8s.api.networking.v1.",
)
_NAMED_STRINGS: dict[tuple[str, str], str] = {
    **{
        (_CORE + d, f): "v1." + t
        for d, f, t in (
            ("PodSpec", "restartPolicy", "RestartPolicy"),
            ("PodSpec", "dnsPolicy", "DNSPolicy"),
            ("PodSpec", "preemptionPolicy", "PreemptionPolicy"),
            ("Container", "imagePullPolicy", "PullPolicy"),
            ("EphemeralContainer", "imagePullPolicy", "PullPolicy"),
            ("Container", "terminationMessagePolicy", "TerminationMessagePolicy"),
            ("EphemeralContainer", "terminationMessagePolicy", "TerminationMessagePolicy"),
            ("Container", "restartPolicy", "ContainerRestartPolicy"),
            ("ContainerPort", "protocol", "Protocol"),
            ("ServicePort", "protocol", "Protocol"),
            ("EndpointPort", "protocol", "Protocol"),
            ("ServiceSpec", "type", "ServiceType"),
            ("ServiceSpec", "sessionAffinity", "ServiceAffinity"),
            ("ServiceSpec", "externalTrafficPolicy", "ServiceExternalTrafficPolicy"),
            ("ServiceSpec", "internalTrafficPolicy", "ServiceInternalTrafficPolicy"),
            ("ServiceSpec", "ipFamilyPolicy", "IPFamilyPolicy"),
            ("HTTPGetAction", "scheme", "URIScheme"),
            ("VolumeMount", "mountPropagation", "MountPropagationMode"),
            ("PersistentVolumeClaimSpec", "volumeMode", "PersistentVolumeMode"),
            ("PersistentVolumeSpec", "volumeMode", "PersistentVolumeMode"),
            ("PersistentVolumeSpec", "persistentVolumeReclaimPolicy", "PersistentVolumeReclaimPolicy"),
            ("Secret", "type", "SecretType"),
            ("Toleration", "operator", "TolerationOperator"),
            ("Toleration", "effect", "TaintEffect"),
            ("Taint", "effect", "TaintEffect"),
            ("NodeSelectorRequirement", "operator", "NodeSelectorOperator"),
            ("HostPathVolumeSource", "type", "HostPathType"),
            ("PodStatus", "phase", "PodPhase"),
            ("NamespaceStatus", "phase", "NamespacePhase"),
            ("LimitRangeItem", "type", "LimitType"),
            ("SeccompProfile", "type", "SeccompProfileType"),
            ("PodSecurityContext", "fsGroupChangePolicy", "PodFSGroupChangePolicy"),
        )
    },
    (_APPS + "DeploymentStrategy", "type"): "v1.DeploymentStrategyType",
    (_APPS + "StatefulSetSpec", "podManagementPolicy"): "v1.PodManagementPolicyType",
    (_APPS + "StatefulSetUpdateStrategy", "type"): "v1.StatefulSetUpdateStrategyType",
    (_APPS + "DaemonSetUpdateStrategy", "type"): "v1.DaemonSetUpdateStrategyType",
    (_BATCH + "CronJobSpec", "concurrencyPolicy"): "v1.ConcurrencyPolicy",
    (_BATCH + "JobSpec", "completionMode"): "v1.CompletionMode",
    (_BATCH + "JobSpec", "podReplacementPolicy"): "v1.PodReplacementPolicy",
    (_NET + "HTTPIngressPath", "pathType"): "v1.PathType",
    ("io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelectorRequirement", "operator"): "v1.LabelSelectorOperator",
}
_NAMED_STRING_ITEMS: dict[tuple[str, str], str] = {
    (_CORE + "PersistentVolumeClaimSpec", "accessModes"): "v1.PersistentVolumeAccessMode",
    (_CORE + "PersistentVolumeSpec", "accessModes"): "v1.PersistentVolumeAccessMode",
    (_CORE + "ServiceSpec", "ipFamilies"): "v1.IPFamily",
    (_CORE + "NamespaceSpec", "finalizers"): "v1.FinalizerName",
    (_CORE + "Capabilities", "add"): "v1.Capability",
    (_CORE + "Capabilities", "drop"): "v1.Capability",
    (_CORE + "ResourceQuotaSpec", "scopes"): "v1.ResourceQuotaScope",
    (_NET + "NetworkPolicySpec", "policyTypes"): "v1.PolicyType",
}


class Structure(NamedTuple):
    """What decoding found. `type_errors[0]` is the error upstream would report (empty: decodes)."""

    type_errors: list[str]
    unknown_fields: list[str]


# ------------------------------------------------------------------------------------------------
# Go type names as they appear in unmarshal errors
# ------------------------------------------------------------------------------------------------


def struct_name(node: schema.Node) -> str:
    """The unqualified Go name of a definition: `DeploymentSpec`."""
    return (node.ref or "").rsplit(".", 1)[-1]


def go_type(node: schema.Node, owner: str = "", field: str = "") -> str:
    """The Go type of a schema position; `owner`/`field` name the struct field holding it."""
    if node.ref in _OPAQUE_GO_TYPES:
        return _OPAQUE_GO_TYPES[node.ref]
    if node.ref and (node.properties or node.ref in (TIME, MICRO_TIME)):
        package = node.ref.rsplit(".", 2)[-2]
        return f"{package}.{struct_name(node)}"
    t = node.type
    if t == "array":
        named = _NAMED_STRING_ITEMS.get((owner, field))
        return "[]" + (named or go_type(node.items, owner, field) if node.items else "interface {}")
    if t == "object" or node.is_map:
        values = node.values
        if values is not None and values.ref == schema.QUANTITY and owner.startswith(_CORE):
            return "v1.ResourceList"
        return "map[string]" + (go_type(values) if values is not None else "interface {}")
    if t == "string":
        if node.format == "byte":
            return "[]uint8"
        return _NAMED_STRINGS.get((owner, field), "string")
    if t == "integer":
        return node.format if node.format in _INT_RANGES else "int"
    if t == "number":
        return "float64"
    if t == "boolean":
        return "bool"
    return "interface {}"


def json_kind(value: Any) -> str:
    """How Go's decoder names a JSON value in an UnmarshalTypeError."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, (list, tuple)):
        return "array"
    return "object"


def _number_text(value: int | float) -> str:
    return str(value) if isinstance(value, int) else repr(value)


# ------------------------------------------------------------------------------------------------
# Structure check (type errors and unknown fields of an already parsed body)
# ------------------------------------------------------------------------------------------------


class _Fatal(Exception):
    """An unmarshaler error: upstream stops decoding at the first one."""


class _Checker:
    """One walk of a parsed body over its schema. It always finds type errors (and, if `strict`,
    unknown fields); with `fix` it also does what decoding into the Go type does to the body, in
    the same walk: keys folded to the field they spell (casefold.py), unknown fields dropped (and
    recorded), quantities stored in canonical form."""

    def __init__(self, strict: bool, fix: bool = False, unchanged: frozenset[str] = frozenset()):
        self.strict = strict
        self.fix = fix
        self.unchanged = unchanged  # top-level fields known to be decoded already: not walked
        self.type_errors: list[str] = []
        self.unknown: list[str] = []

    def type_error(
        self, value: Any, go: str, struct: str, stack: tuple[str, ...], *, kind: str | None = None, fatal: bool = False
    ) -> None:
        what = kind or json_kind(value)
        if struct or stack:
            message = f"json: cannot unmarshal {what} into Go struct field {struct}.{'.'.join(stack)} of type {go}"
        else:
            message = f"json: cannot unmarshal {what} into Go value of type {go}"
        if fatal:
            raise _Fatal(message)
        self.type_errors.append(message)

    def check(
        self,
        value: Any,
        node: schema.Node,
        struct: str,
        stack: tuple[str, ...],
        path: str,
        owner: str = "",
        field: str = "",
    ) -> Any:
        """Check `value` at `node`; returns it, or with `fix` what replaces it in its container."""
        if value is None or node.preserves_unknown or node.ref == RAW_EXTENSION:
            return value  # null leaves the Go zero value; free-form content is not decoded into a type
        if node.properties:  # the most common position first
            if not isinstance(value, dict):
                self.type_error(value, go_type(node, owner, field), struct, stack)
                return value
            if self.fix:
                fold_case(value, node)
            name, fields = _object_table(node)
            for key, sub in list(value.items()):
                if not stack and key in self.unchanged:
                    continue
                sub_node, passes = fields.get(key, _UNKNOWN_FIELD)
                if passes(sub):
                    continue  # most leaves: nothing to check or fix, no paths to build
                sub_path = f"{path}.{key}" if path else key
                if sub_node is None:
                    if (self.strict or self.fix) and sub_path not in self.unknown:
                        self.unknown.append(sub_path)
                    if self.fix:
                        del value[key]
                    continue
                checked = self.check(sub, sub_node, name, stack + (key,), sub_path, node.ref or "", key)
                if checked is not sub:
                    value[key] = checked
            return value
        t = node.type
        if t == "quantity":
            quantity = _parse_quantity(value)
            return str(quantity) if self.fix else value
        elif t == "int-or-string":
            if not isinstance(value, str) and not _fits_int(value, "int32"):
                kind = f"number {_number_text(value)}" if json_kind(value) == "number" else None
                self.type_error(value, "int32", struct, stack, kind=kind, fatal=True)
        elif node.ref in (TIME, MICRO_TIME):
            if not isinstance(value, str):
                self.type_error(value, "string", struct, stack, fatal=True)
            problem = rfc3339_error(value)
            if problem:
                raise _Fatal(problem)
        elif t == "string":
            if not isinstance(value, str):
                self.type_error(value, go_type(node, owner, field), struct, stack)
            elif node.format == "byte":
                problem = base64_error(value)
                if problem:
                    self.type_errors.append(problem)
        elif t == "integer":
            if not _fits_int(value, node.format or "int64"):
                kind = f"number {_number_text(value)}" if json_kind(value) == "number" else None
                self.type_error(value, go_type(node), struct, stack, kind=kind)
        elif t == "number":
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                self.type_error(value, "float64", struct, stack)
        elif t == "boolean":
            if not isinstance(value, bool):
                self.type_error(value, "bool", struct, stack)
        elif t == "array":
            if not isinstance(value, list):
                self.type_error(value, go_type(node, owner, field), struct, stack)
            elif node.items is not None:
                items, passes = node.items, _passing_leaf(node.items)
                for i, item in enumerate(value):
                    if passes(item):
                        continue
                    checked = self.check(item, items, struct, stack, f"{path}[{i}]", owner, field)
                    if checked is not item:
                        value[i] = checked
        elif node.is_map:
            if not isinstance(value, dict):
                self.type_error(value, go_type(node, owner, field), struct, stack)
            elif node.values is not None:
                values, passes = node.values, _passing_leaf(node.values)
                for key, sub in value.items():
                    if passes(sub):
                        continue
                    checked = self.check(sub, values, struct, stack, f"{path}.{key}" if path else key)
                    if checked is not sub:
                        value[key] = checked
        return value


def _never(value: Any) -> bool:
    return False


def _is_str(value: Any) -> bool:
    return type(value) is str


def _is_bool(value: Any) -> bool:
    return type(value) is bool


def _int_within(lo: int, hi: int, *, or_str: bool = False) -> Callable[[Any], bool]:
    def passes(value: Any) -> bool:
        return (type(value) is int and lo <= value <= hi) or (or_str and type(value) is str)
    return passes


_leaf_tests: dict[schema.Node, Callable[[Any], bool]] = {}


def _passing_leaf(node: schema.Node) -> Callable[[Any], bool]:
    """A test of the values that check() at `node` would pass unchanged, without errors: a string
    where a plain string goes (not a time, not base64), a boolean, an integer in range. The
    parent skips the call for them; every other value is checked."""
    test = _leaf_tests.get(node)
    if test is None:
        t = node.type
        if t == "string" and node.format != "byte" and node.ref not in (TIME, MICRO_TIME):
            test = _is_str
        elif t == "boolean":
            test = _is_bool
        elif t == "integer":
            test = _int_within(*_INT_RANGES.get(node.format or "int64", _INT_RANGES["int64"]))
        elif t == "int-or-string":
            test = _int_within(*_INT_RANGES["int32"], or_str=True)
        else:
            test = _never
        _leaf_tests[node] = test
    return test


_UNKNOWN_FIELD: tuple[None, Callable[[Any], bool]] = (None, _never)
_Fields = dict[str, tuple[schema.Node, Callable[[Any], bool]]]
_object_tables: dict[schema.Node, tuple[str, _Fields]] = {}


def _object_table(node: schema.Node) -> tuple[str, _Fields]:
    """An object type's Go struct name, and its fields, each with the test of its values that
    need no check."""
    table = _object_tables.get(node)
    if table is None:
        fields = {key: (sub, _passing_leaf(sub)) for key, sub in node.fields()}
        table = _object_tables[node] = (struct_name(node), fields)
    return table


def _fits_int(value: Any, fmt: str) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    if isinstance(value, float) and not value.is_integer():
        return False
    lo, hi = _INT_RANGES.get(fmt, _INT_RANGES["int64"])
    return lo <= int(value) <= hi


def _parse_quantity(value: Any) -> Any:
    if isinstance(value, (dict, list)):
        raise _Fatal(ERR_FORMAT_WRONG)  # upstream parses the raw JSON text, which cannot match
    try:
        return from_json(value)
    except QuantityError as err:
        raise _Fatal(str(err)) from None


def _walk(obj: Any, node: schema.Node, strict: bool, fix: bool, decoded: dict | None = None) -> Structure:
    unchanged: frozenset[str] = frozenset()
    if isinstance(obj, dict) and isinstance(decoded, dict):
        unchanged = frozenset(k for k, v in obj.items() if k in decoded and same_json(v, decoded[k]))
    checker = _Checker(strict, fix, unchanged)
    try:
        checker.check(obj, node, "", (), "")
    except _Fatal as fatal:
        return Structure([str(fatal)], [])
    return Structure(checker.type_errors, checker.unknown)


def check_structure(obj: Any, node: schema.Node, *, strict: bool) -> Structure:
    """Decode-time checks of a parsed body against `node`. Unknown fields are reported only if `strict`."""
    return _walk(obj, node, strict, fix=False)


def decode_body(obj: Any, node: schema.Node, *, strict: bool, decoded: dict | None = None) -> Structure:
    """Decode a parsed body into `node`'s type, in place: keys folded to the field they spell, then
    checked; unknown fields dropped and reported in document order (free-form places are left
    intact); quantities stored canonically (`cpu: 0.5` as `500m`). With type errors the body is
    left half-decoded (the request fails).

    `decoded` is an object of the same type that was decoded before (the stored one, for a patch):
    a top-level field equal to its would decode to itself again, so it is not walked."""
    return _walk(obj, node, strict, fix=True, decoded=decoded)


def unknown_field_messages(paths: list[str]) -> list[str]:
    """The strict-decoding texts (also the Warning header texts) for unknown field paths."""
    return [f"unknown field {go_quote(p)}" for p in paths]


# ------------------------------------------------------------------------------------------------
# Strict decoding of the raw body: unknown and duplicate fields in document order
# ------------------------------------------------------------------------------------------------


class _Pairs(list):
    """A JSON object as its (key, value) pairs, duplicates included."""


def _pairs_hook(pairs: list[tuple[str, Any]]) -> _Pairs:
    return _Pairs(pairs)


def _strict_walk(value: Any, node: schema.Node | None, path: str, out: list[str]) -> None:
    def add(message: str) -> None:
        if message not in out:  # upstream de-duplicates identical strict errors
            out.append(message)

    if isinstance(value, list) and not isinstance(value, _Pairs):
        items = node.items if node is not None else None
        for i, item in enumerate(value):
            _strict_walk(item, items, f"{path}[{i}]", out)
        return
    if not isinstance(value, _Pairs):
        return
    if node is not None and node.ref == RAW_EXTENSION:
        return  # copied verbatim by RawExtension.UnmarshalJSON
    free_form = node is None or node.preserves_unknown
    seen: set[str] = set()
    for key, sub in value:
        sub_path = f"{path}.{key}" if path else key
        if free_form or not node.properties:
            sub_node = None if free_form else node.values
        else:
            sub_node = node.field(key)
            if sub_node is None:
                add(f"unknown field {go_quote(sub_path)}")
                continue  # an unknown field's value is skipped unread
        if key in seen:
            add(f"duplicate field {go_quote(sub_path)}")
        seen.add(key)
        _strict_walk(sub, sub_node, sub_path, out)


def _is_yaml(content_type: str) -> bool:
    return "yaml" in (content_type or "").lower()


class _DuplicateKeyLoader(yaml.SafeLoader):
    """A SafeLoader that records `line N: key "k" already set in map` like go-yaml's strict mode."""

    def __init__(self, stream: Any):
        super().__init__(stream)
        self.duplicates: list[str] = []

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:
                continue
            if duplicate:
                shown = go_quote(key) if isinstance(key, str) else str(key)
                self.duplicates.append(f"line {key_node.start_mark.line + 1}: key {shown} already set in map")
        return super().construct_mapping(node, deep)


def yaml_duplicate_error(text: str) -> str | None:
    """The error go-yaml's strict unmarshal gives for duplicate mapping keys (None: no duplicates)."""
    loader = _DuplicateKeyLoader(text)
    try:
        loader.get_single_data()
    except yaml.YAMLError:
        return None  # not our concern here: the body does not parse at all
    finally:
        loader.dispose()
    if not loader.duplicates:
        return None
    return "yaml: unmarshal errors:\n  " + "\n  ".join(loader.duplicates)


def find_duplicate_fields(
    raw: bytes | str, content_type: str = "application/json", node: schema.Node | None = None,
    parsed_keys: int | None = None,
) -> list[str]:
    """The duplicate-field errors of a request body, as strict decoding reports them.

    JSON: `duplicate field "spec.replicas"` for each repeated key (inside the fields `node` describes
    when it is given, anywhere otherwise). YAML: go-yaml's single `yaml: unmarshal errors:` text.
    `parsed_keys`: `count_keys` of the JSON text's parse, which settles the common case cheaply.
    """
    if _is_yaml(content_type):
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
        problem = yaml_duplicate_error(text)
        return [problem] if problem else []
    if parsed_keys is not None and _key_ends_in(raw) == parsed_keys:
        return []
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    if not _has_duplicate_keys(text):
        return []  # the common case, told by a parse that only counts keys
    return [m for m in strict_decoding_errors(text, content_type, node) if m.startswith("duplicate field")]


def count_keys(doc: Any) -> int:
    """How many keys the objects of a parsed JSON document hold together."""
    n, stack = 0, [doc]
    for v in stack:  # grows as it goes: a breadth-first walk without recursion
        if type(v) is dict:
            n += len(v)
            stack += v.values()
        elif type(v) is list:
            stack += v
    return n


# Every key of a JSON text ends in a quote followed by a colon (with blanks between, rarely);
# inside a string only an escaped quote can, so the count is at least the number of keys, and equal
# to the parse's key count only when no object repeats a key (a repeat leaves one key fewer).
_KEY_END = re.compile(r'"[ \t\r\n]*:')
_SPACED_KEY_END = re.compile(r'"[ \t\r\n]+:')


def _key_ends_in(raw: bytes | str) -> int:
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    if _SPACED_KEY_END.search(text) is None:
        return text.count('":')
    return len(_KEY_END.findall(text))


class _DuplicateKey(Exception):
    pass


def _dict_without_duplicates(pairs: list[tuple[str, Any]]) -> dict:
    out = dict(pairs)
    if len(out) != len(pairs):
        raise _DuplicateKey
    return out


def _has_duplicate_keys(text: str) -> bool:
    """Whether any object of a JSON text repeats a key (the text is known to parse)."""
    try:
        json.loads(text, object_pairs_hook=_dict_without_duplicates)
    except _DuplicateKey:
        return True
    except ValueError:
        return True  # let the full walk say what it finds
    return False


def strict_decoding_errors(raw: bytes | str, content_type: str, node: schema.Node | None) -> list[str]:
    """All strict-decoding errors of a body in upstream order: YAML duplicates first, then unknown and
    duplicate JSON fields in document order. The body must already be known to parse."""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    out: list[str] = []
    if _is_yaml(content_type):
        problem = yaml_duplicate_error(text)
        if problem:
            out.append(problem)
        # After YAML->JSON conversion only unknown fields remain to be found.
        parsed = json.loads(json.dumps(yaml.safe_load(text), default=str), object_pairs_hook=_pairs_hook)
    else:
        parsed = json.loads(text, object_pairs_hook=_pairs_hook)
    _strict_walk(parsed, node, "", out)
    return out


# ------------------------------------------------------------------------------------------------
# Messages the apiserver wraps around decode errors
# ------------------------------------------------------------------------------------------------


def strict_error_message(errors: list[str]) -> str:
    """runtime.NewStrictDecodingError."""
    return "strict decoding error: " + ", ".join(errors)


def handled_as_message(body_kind: str, body_version: str, target_kind: str, detail: str) -> str:
    """The BadRequest text of a body that did not decode (transformDecodeError)."""
    return f"{body_kind} in version {json.dumps(body_version)} cannot be handled as a {target_kind}: {detail}"


# ------------------------------------------------------------------------------------------------
# Values the Go unmarshalers parse themselves
# ------------------------------------------------------------------------------------------------

_B64_ALPHABET = re.compile(r"[A-Za-z0-9+/=]")


def base64_error(value: str) -> str | None:
    """encoding/base64 StdEncoding's CorruptInputError text for `value`, or None if it decodes.

    Go ignores CR/LF and reports the offset of the first byte it cannot use.
    """
    data = value.replace("\r", "").replace("\n", "")
    try:
        base64.b64decode(data, validate=True)
        return None
    except (binascii.Error, ValueError):
        pass
    for i, ch in enumerate(data):
        if not _B64_ALPHABET.fullmatch(ch):
            return f"illegal base64 data at input byte {i}"
    pad = data.find("=")
    if pad >= 0 and (pad % 4 < 2 or data[pad:].strip("=")):
        return f"illegal base64 data at input byte {pad}"
    return f"illegal base64 data at input byte {len(data) - len(data) % 4 if len(data) % 4 else len(data)}"


_RFC3339_LAYOUT = "2006-01-02T15:04:05Z07:00"
_RFC3339_STEPS = (
    ("2006", r"\d{4}"),
    ("-", "-"),
    ("01", r"\d{2}"),
    ("-", "-"),
    ("02", r"\d{2}"),
    ("T", "T"),
    ("15", r"\d{2}"),
    (":", ":"),
    ("04", r"\d{2}"),
    (":", ":"),
    ("05", r"\d{2}(\.\d+)?"),
    ("Z07:00", r"Z|[+-]\d{2}:\d{2}"),
)


def rfc3339_error(value: str) -> str | None:
    """Go's time.Parse(time.RFC3339, value) error text (None if it parses) for metav1.Time values."""
    rest = value
    for layout_elem, pattern in _RFC3339_STEPS:
        m = re.match(pattern, rest)
        if not m:
            return (
                f"parsing time {go_quote(value)} as {go_quote(_RFC3339_LAYOUT)}: "
                f"cannot parse {go_quote(rest)} as {go_quote(layout_elem)}"
            )
        rest = rest[m.end() :]
    if rest:
        return f"parsing time {go_quote(value)}: extra text: {go_quote(rest)}"
    month, day, hour, minute, second = (
        int(value[5:7]),
        int(value[8:10]),
        int(value[11:13]),
        int(value[14:16]),
        int(value[17:19]),
    )
    for name, v, hi in (
        ("month", month, 12),
        ("day", day, 31),
        ("hour", hour, 23),
        ("minute", minute, 59),
        ("second", second, 59),
    ):
        if not (1 if name in ("month", "day") else 0) <= v <= hi:
            return f"parsing time {go_quote(value)}: {name} out of range"
    return None
