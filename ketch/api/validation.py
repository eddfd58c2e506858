"""Semantic validation of API objects: what pkg/apis/<group>/validation does upstream.

`validate(group, kind, obj, old)` checks a decoded and defaulted object of a storage version (create
when `old` is None, update otherwise) and returns upstream's field errors, in upstream's order and
wording, for `errors.invalid` to turn into a 422.

Validators are registered per definition (`@validates("io.k8s.api.core.v1.PodSpec")`) and composed
along the schema: `check(value, node, path)` runs the validator of the value's definition, or, for a
definition without one, the checks of its fields. So a PodTemplateSpec is validated the same way in a
ReplicationController, a Deployment or a CronJob's job template.

Upstream validates its internal types, so a few paths and values differ from the v1 JSON shape in the
same way they differ against a real apiserver (`spec.template.labels`, `spec.securityContext.shareProcessNamespace`).
An absent field counts as Go's zero value. `prepare(...)` applies the strategy mutations upstream does
right before validating (Job selector generation, Service clusterIPs).
"""

from __future__ import annotations

import copy
import datetime
import re
import zoneinfo
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

from . import durations, kinds, schema
from .labels import SelectorError, selector_from_label_selector, selector_from_set, validate_label_selector
from .names import (
    FieldError,
    GoLiteral,
    child,
    duplicate,
    forbidden,
    go_quote,
    index,
    inclusive_range_error,
    invalid,
    is_config_map_key,
    is_dns1123_label,
    is_dns1123_subdomain,
    is_dns1123_subdomain_with_underscore,
    is_http_header_name,
    is_percent,
    is_qualified_name,
    is_relaxed_env_var_name,
    is_valid_cidr,
    is_valid_group_id,
    is_valid_ip,
    is_valid_ipv4_address,
    is_valid_ipv6_address,
    is_valid_label_value,
    is_valid_port_name,
    is_valid_port_num,
    is_valid_user_id,
    is_wildcard_dns1123_subdomain,
    key,
    name_is_dns1035_label,
    name_is_dns_label,
    name_is_dns_subdomain,
    not_found,
    not_supported,
    required,
    too_long,
    too_long_max_length,
    too_many,
    validate_annotations,
    validate_label_name,
    validate_labels,
    validate_path_segment_name,
)
from .decode import json_kind
from .quantity import Quantity, QuantityError, from_json

Errors = list[FieldError]
NameFn = Callable[[str, bool], list[str]]

IS_NEGATIVE = "must be greater than or equal to 0"
IMMUTABLE = "field is immutable"
NOT_POSITIVE = "must be greater than zero"
MAX_INT32 = (1 << 31) - 1


# ================================================================================================
# Registry
# ================================================================================================


@dataclass(frozen=True)
class Context:
    """What nested validators may need to know about the object being validated."""

    group: str = ""
    kind: str = ""
    resource_is_pod: bool = False


Validator = Callable[[Any, str, Context], Errors]
_VALIDATORS: dict[str, Validator] = {}


def validates(*definitions: str) -> Callable[[Validator], Validator]:
    """Register `fn(value, path, ctx)` as the validator of values of these definitions."""

    def register(fn: Validator) -> Validator:
        for name in definitions:
            _VALIDATORS[name] = fn
        return fn

    return register


def check(value: Any, node: schema.Node, path: str, ctx: Context = Context()) -> Errors:
    """Validate `value` at schema position `node`: its definition's validator, else its fields."""
    if value is None:
        return []
    fn = _VALIDATORS.get(node.ref or "")
    if fn is not None:
        return fn(value, path, ctx)
    return descend(value, node, path, ctx)


def descend(value: Any, node: schema.Node, path: str, ctx: Context, skip: Iterable[str] = ()) -> Errors:
    """The checks of every schema-described child of `value` (except the fields in `skip`)."""
    errs: Errors = []
    if node.preserves_unknown:
        return errs
    if isinstance(value, list) and node.items is not None:
        for i, item in enumerate(value):
            errs += check(item, node.items, index(path, i), ctx)
    elif isinstance(value, dict):
        if node.properties:
            for name, sub in value.items():
                sub_node = node.field(name)
                if sub_node is not None and name not in skip:
                    errs += check(sub, sub_node, child(path, name), ctx)
        elif node.values is not None:
            for name, sub in value.items():
                errs += check(sub, node.values, key(path, name), ctx)
    return errs


def nested(value: Any, definition: str, path: str, ctx: Context = Context()) -> Errors:
    return check(value, schema.node(definition), path, ctx)


# ================================================================================================
# Small helpers
# ================================================================================================


def _d(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def _l(value: Any) -> list:
    return value if isinstance(value, list) else []


def _s(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _i(value: Any) -> int:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0


def _msgs(path: str, value: Any, messages: Iterable[str]) -> Errors:
    return [invalid(path, value, m) for m in messages]


def nonnegative(value: Any, path: str) -> Errors:
    v = _i(value)
    return [invalid(path, v, IS_NEGATIVE)] if v < 0 else []


def immutable(new: Any, old: Any, path: str, shown: Any = None) -> Errors:
    if _semantic(new) == _semantic(old):
        return []
    return [invalid(path, new if shown is None else shown, IMMUTABLE)]


def _semantic(value: Any) -> Any:
    """A comparable form for apiequality.Semantic: a field that is absent, null, empty or a Go zero
    value reads the same as one never set (the internal struct cannot tell them apart)."""
    if isinstance(value, dict):
        out = {k: _semantic(v) for k, v in value.items()}
        return {k: v for k, v in out.items() if v not in (None, {}, [], "", 0, False)}
    if isinstance(value, list):
        return [_semantic(v) for v in value]
    return value


def _quantity(value: Any) -> Quantity | None:
    try:
        return from_json(value)
    except (QuantityError, TypeError):
        return None


def go_map(labels: Mapping | None) -> Any:
    """How Go prints a map[string]string value, including a nil one."""
    return GoLiteral("map[string]string(nil)") if labels is None else dict(labels)


def go_int_or_string(value: Any) -> GoLiteral:
    """IntOrString is a Stringer upstream: printed without quotes."""
    return GoLiteral(str(_i(value)) if not isinstance(value, str) else value)


def go_label_selector(ls: Mapping | None) -> Any:
    """%#v of a metav1.LabelSelector (the value of selector errors)."""
    if ls is None:
        return None
    labels = ls.get("matchLabels")
    labels_text = (
        "map[string]string(nil)"
        if labels is None
        else (
            "map[string]string{" + ", ".join(f"{go_quote(k)}:{go_quote(str(labels[k]))}" for k in sorted(labels)) + "}"
        )
    )
    expressions = ls.get("matchExpressions")
    if expressions is None:
        expr_text = "[]v1.LabelSelectorRequirement(nil)"
    else:
        parts = []
        for e in _l(expressions):
            values = e.get("values")
            values_text = (
                "[]string(nil)" if values is None else ("[]string{" + ", ".join(go_quote(str(v)) for v in values) + "}")
            )
            parts.append(
                f"v1.LabelSelectorRequirement{{Key:{go_quote(_s(e.get('key')))}, "
                f"Operator:{go_quote(_s(e.get('operator')))}, Values:{values_text}}}"
            )
        expr_text = "[]v1.LabelSelectorRequirement{" + ", ".join(parts) + "}"
    return GoLiteral(f"v1.LabelSelector{{MatchLabels:{labels_text}, MatchExpressions:{expr_text}}}")


def go_struct(value: Any, go_name: str) -> GoLiteral:
    """A best-effort %#v of an internal struct value (its exact text has pointers upstream anyway)."""

    def render(v: Any) -> str:
        if isinstance(v, dict):
            return "{" + ", ".join(f"{k[:1].upper()}{k[1:]}:{render(x)}" for k, x in v.items()) + "}"
        if isinstance(v, list):
            return "{" + ", ".join(render(x) for x in v) + "}"
        if isinstance(v, str):
            return go_quote(v)
        if isinstance(v, bool):
            return "true" if v else "false"
        return "nil" if v is None else str(v)

    return GoLiteral(go_name + render(_d(value)))


def _ip_errors(path: str, value: str) -> Errors:
    return _msgs(path, value, is_valid_ip(value))


# ================================================================================================
# ObjectMeta
# ================================================================================================

STANDARD_FINALIZERS = {"kubernetes", "orphan", "foregroundDeletion"}
TOTAL_ANNOTATION_LIMIT = 256 * 1024


def validate_object_meta(meta: Mapping, namespaced: bool, name_fn: NameFn, path: str = "metadata") -> Errors:
    """ValidateObjectMeta (apimachinery) plus the core finalizer-name check."""
    meta = _d(meta)
    errs: Errors = []
    generate = _s(meta.get("generateName"))
    if generate:
        errs += _msgs(child(path, "generateName"), generate, name_fn(generate, True))
    name = _s(meta.get("name"))
    if not name:
        errs.append(required(child(path, "name"), "name or generateName is required"))
    else:
        errs += _msgs(child(path, "name"), name, name_fn(name, False))
    errs += _meta_common(meta, namespaced, path)
    for i, f in enumerate(_l(meta.get("finalizers"))):
        errs += _kube_finalizer_name(_s(f), index(child(path, "finalizers"), i))
    if not errs and path == "metadata":
        _top_meta_passed[0] = (meta, namespaced, name_fn)
    return errs


# The last object's own metadata that passed validate_object_meta, with how it was checked: the
# generic check of a create (validate) need not run again on it when its name rule was at least
# as strict as a path segment's (which only forbids ".", "..", "/" and "%").
_top_meta_passed: list = [None]
_PATH_SAFE_NAME_RULES = (name_is_dns_subdomain, name_is_dns_label, name_is_dns1035_label)


def _meta_passed_already(meta: Mapping, namespaced: bool) -> bool:
    passed = _top_meta_passed[0]
    return passed is not None and passed[0] is meta and passed[1] == namespaced and passed[2] in _PATH_SAFE_NAME_RULES


def _meta_common(meta: Mapping, namespaced: bool, path: str) -> Errors:
    errs: Errors = []
    namespace = _s(meta.get("namespace"))
    if namespaced:
        if not namespace:
            errs.append(required(child(path, "namespace"), ""))
        else:
            errs += _msgs(child(path, "namespace"), namespace, name_is_dns_label(namespace, False))
    elif namespace:
        errs.append(forbidden(child(path, "namespace"), "not allowed on this type"))
    errs += nonnegative(meta.get("generation"), child(path, "generation"))
    errs += validate_labels(meta.get("labels"), child(path, "labels"))
    errs += validate_annotations(meta.get("annotations"), child(path, "annotations"))
    errs += validate_owner_references(_l(meta.get("ownerReferences")), child(path, "ownerReferences"))
    errs += validate_finalizers(_l(meta.get("finalizers")), child(path, "finalizers"))
    errs += _validate_managed_fields(_l(meta.get("managedFields")), child(path, "managedFields"))
    return errs


def validate_owner_references(refs: list, path: str) -> Errors:
    errs: Errors = []
    first_controller = ""
    for ref in refs:
        ref = _d(ref)
        api_version, kind = _s(ref.get("apiVersion")), _s(ref.get("kind"))
        parts = api_version.split("/")
        version = "" if len(parts) > 2 else parts[-1]
        group = parts[0] if len(parts) == 2 else ""
        if not version:
            errs.append(invalid(child(path, "apiVersion"), api_version, "version must not be empty"))
        if not kind:
            errs.append(invalid(child(path, "kind"), kind, "must not be empty"))
        if not _s(ref.get("name")):
            errs.append(invalid(child(path, "name"), _s(ref.get("name")), "must not be empty"))
        if not _s(ref.get("uid")):
            errs.append(invalid(child(path, "uid"), _s(ref.get("uid")), "must not be empty"))
        if (group, version, kind) == ("", "v1", "Event"):
            errs.append(
                invalid(
                    path,
                    go_struct(ref, "v1.OwnerReference"),
                    f"{group}/{version}, Kind={kind} is disallowed from being an owner",
                )
            )
        if ref.get("controller") is True:
            current = f"{kind}/{_s(ref.get('name'))}"
            if first_controller:
                errs.append(
                    invalid(
                        path,
                        GoLiteral("[]v1.OwnerReference{...}"),
                        'Only one reference can have Controller set to true. Found "true" in '
                        f"references for {first_controller} and {current}",
                    )
                )
            else:
                first_controller = current
    return errs


def validate_finalizers(finalizers: list, path: str) -> Errors:
    errs: Errors = []
    for f in finalizers:
        errs += _msgs(path, _s(f), is_qualified_name(_s(f)))
    if "orphan" in finalizers and "foregroundDeletion" in finalizers:
        errs.append(invalid(path, list(finalizers), "finalizer orphan and foregroundDeletion cannot be both set"))
    return errs


def _kube_finalizer_name(name: str, path: str) -> Errors:
    if "/" not in name and name not in STANDARD_FINALIZERS:
        return [invalid(path, name, "name is neither a standard finalizer name nor is it fully qualified")]
    return []


def _validate_managed_fields(entries: list, path: str) -> Errors:
    errs: Errors = []
    for i, entry in enumerate(entries):
        entry, p = _d(entry), index(path, i)
        if entry.get("operation") not in ("Apply", "Update"):
            errs.append(invalid(child(p, "operation"), _s(entry.get("operation")), "must be `Apply` or `Update`"))
        fields_type = _s(entry.get("fieldsType"))
        if fields_type and fields_type != "FieldsV1":
            errs.append(invalid(child(p, "fieldsType"), fields_type, "must be `FieldsV1`"))
        manager = _s(entry.get("manager"))
        if len(manager) > 128:
            errs.append(too_long(child(p, "manager"), manager, 128))
    return errs


def validate_object_meta_update(new: Mapping, old: Mapping, path: str = "metadata") -> Errors:
    """ValidateObjectMetaUpdate."""
    new, old = _d(new), _d(old)
    errs: Errors = []
    if old.get("deletionTimestamp"):
        extra = sorted(set(_l(new.get("finalizers"))) - set(_l(old.get("finalizers"))))
        if extra:
            shown = "[]string{" + ", ".join(go_quote(f) for f in extra) + "}"
            errs.append(
                forbidden(
                    child(path, "finalizers"),
                    f"no new finalizers can be added if the object is being deleted, found new finalizers {shown}",
                )
            )
    if not _s(new.get("resourceVersion")):
        errs.append(invalid(child(path, "resourceVersion"), "", "must be specified for an update"))
    if _i(new.get("generation")) < _i(old.get("generation")):
        errs.append(invalid(child(path, "generation"), _i(new.get("generation")), "must not be decremented"))
    for name in ("name", "namespace", "uid"):
        errs += immutable(_s(new.get(name)), _s(old.get(name)), child(path, name))
    for name in ("creationTimestamp", "deletionTimestamp"):
        if new.get(name) != old.get(name):
            errs.append(invalid(child(path, name), _go_time(new.get(name)), IMMUTABLE))
    if new.get("deletionGracePeriodSeconds") != old.get("deletionGracePeriodSeconds"):
        errs.append(
            invalid(child(path, "deletionGracePeriodSeconds"), new.get("deletionGracePeriodSeconds"), IMMUTABLE)
        )
    errs += validate_labels(new.get("labels"), child(path, "labels"))
    errs += validate_annotations(new.get("annotations"), child(path, "annotations"))
    errs += validate_owner_references(_l(new.get("ownerReferences")), child(path, "ownerReferences"))
    errs += _validate_managed_fields(_l(new.get("managedFields")), child(path, "managedFields"))
    for i, f in enumerate(_l(new.get("finalizers"))):
        errs += _kube_finalizer_name(_s(f), index(child(path, "finalizers"), i))
    return errs


def _go_time(value: Any) -> Any:
    """metav1.Time is a Stringer: Go's time.Time.String() layout."""
    if not isinstance(value, str):
        return GoLiteral("0001-01-01 00:00:00 +0000 UTC") if value is None else value
    try:
        t = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return value
    return GoLiteral(t.astimezone(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S +0000 UTC"))


def validate_template_object_meta(meta: Mapping, path: str) -> Errors:
    """ValidateTemplateObjectMeta: only labels and annotations may be set."""
    meta = _d(meta)
    errs = validate_annotations(meta.get("annotations"), child(path, "annotations"))
    errs += validate_labels(meta.get("labels"), child(path, "labels"))
    for name, value in meta.items():
        if name not in ("labels", "annotations") and value not in (None, "", {}, [], 0):
            errs.append(forbidden(child(path, name), "cannot be set"))
    return errs


@validates("io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector")
def _label_selector(value: Any, path: str, ctx: Context) -> Errors:
    return validate_label_selector(_d(value), path)


# ================================================================================================
# Resources (names, quantities, requirements)
# ================================================================================================

_STANDARD_RESOURCES = {
    "cpu",
    "memory",
    "ephemeral-storage",
    "requests.cpu",
    "requests.memory",
    "requests.ephemeral-storage",
    "limits.cpu",
    "limits.memory",
    "limits.ephemeral-storage",
    "pods",
    "resourcequotas",
    "services",
    "replicationcontrollers",
    "secrets",
    "configmaps",
    "persistentvolumeclaims",
    "storage",
    "requests.storage",
    "services.nodeports",
    "services.loadbalancers",
}
_STANDARD_QUOTA_RESOURCES = _STANDARD_RESOURCES - {"storage"}
_INTEGER_RESOURCES = {
    "pods",
    "resourcequotas",
    "services",
    "replicationcontrollers",
    "secrets",
    "configmaps",
    "persistentvolumeclaims",
    "services.nodeports",
    "services.loadbalancers",
}
_CONTAINER_RESOURCES = {"cpu", "memory", "ephemeral-storage"}
_POD_LEVEL_RESOURCES = ("cpu", "hugepages-", "memory")


def is_hugepage(name: str) -> bool:
    return name.startswith("hugepages-")


def is_native_resource(name: str) -> bool:
    return "/" not in name or "kubernetes.io/" in name


def is_extended_resource(name: str) -> bool:
    if is_native_resource(name) or name.startswith("requests."):
        return False
    return not is_qualified_name("requests." + name)


def is_overcommit_allowed(name: str) -> bool:
    return is_native_resource(name) and not is_hugepage(name)


def is_integer_resource(name: str) -> bool:
    return name in _INTEGER_RESOURCES or is_extended_resource(name)


def _is_quota_hugepage(name: str) -> bool:
    return name.startswith("hugepages-") or name.startswith("requests.hugepages-")


def validate_resource_name(name: str, path: str) -> Errors:
    errs = _msgs(path, name, is_qualified_name(name))
    if errs:
        return errs
    if "/" not in name and name not in _STANDARD_RESOURCES and not _is_quota_hugepage(name):
        return [invalid(path, name, "must be a standard resource type or fully qualified")]
    return []


def validate_container_resource_name(name: str, path: str) -> Errors:
    errs = validate_resource_name(name, path)
    if "/" not in name:
        if name not in _CONTAINER_RESOURCES and not is_hugepage(name):
            return errs + [invalid(path, name, "must be a standard resource for containers")]
    elif not is_native_resource(name) and not is_extended_resource(name):
        return errs + [invalid(path, name, "doesn't follow extended resource name standard")]
    return errs


def validate_quota_resource_name(name: str, path: str) -> Errors:
    errs = validate_resource_name(name, path)
    if "/" not in name and name not in _STANDARD_QUOTA_RESOURCES and not _is_quota_hugepage(name):
        return errs + [invalid(path, name, "must be a standard resource for quota")]
    return errs


def validate_resource_quantity_value(name: str, value: Quantity, path: str) -> Errors:
    errs: Errors = []
    if value.sign() < 0:
        errs.append(invalid(path, str(value), IS_NEGATIVE))
    if is_integer_resource(name) and value.milli_value() % 1000 != 0:
        errs.append(invalid(path, value, "must be an integer"))
    return errs


def validate_resource_requirements(
    req: Mapping, path: str, name_fn: Callable[[str, str], Errors] | None = None, claim_names: set[str] | None = None
) -> Errors:
    """validateResourceRequirements: names, quantities, requests <= limits, hugepages."""
    name_fn = name_fn or validate_container_resource_name
    req = _d(req)
    lim_path, req_path = child(path, "limits"), child(path, "requests")
    limits = {k: _quantity(v) for k, v in _d(req.get("limits")).items()}
    requests = {k: _quantity(v) for k, v in _d(req.get("requests")).items()}
    errs: Errors = []
    lim_cpu_mem = req_cpu_mem = lim_huge = req_huge = False
    for name, q in limits.items():
        p = key(lim_path, name)
        errs += name_fn(name, p)
        if q is not None:
            errs += validate_resource_quantity_value(name, q, p)
        if is_hugepage(name):
            lim_huge = True
        lim_cpu_mem = lim_cpu_mem or name in ("cpu", "memory")
    for name, q in requests.items():
        p = key(req_path, name)
        errs += name_fn(name, p)
        if q is None:
            continue
        errs += validate_resource_quantity_value(name, q, p)
        limit = limits.get(name)
        if name in limits and limit is not None:
            if q != limit and not is_overcommit_allowed(name):
                errs.append(invalid(req_path, str(q), f"must be equal to {name} limit of {limit}"))
            elif q > limit:
                errs.append(invalid(req_path, str(q), f"must be less than or equal to {name} limit of {limit}"))
        elif not is_overcommit_allowed(name):
            errs.append(required(lim_path, "Limit must be set for non overcommitable resources"))
        if is_hugepage(name):
            req_huge = True
        req_cpu_mem = req_cpu_mem or name in ("cpu", "memory")
    if not lim_cpu_mem and not req_cpu_mem and (req_huge or lim_huge):
        errs.append(forbidden(path, "HugePages require cpu or memory"))
    errs += _resource_claim_names(_l(req.get("claims")), claim_names or set(), child(path, "claims"))
    return errs


def _resource_claim_names(claims: list, pod_claims: set[str], path: str) -> Errors:
    errs: Errors = []
    seen: set[str] = set()
    for i, claim in enumerate(claims):
        name, request = _s(_d(claim).get("name")), _s(_d(claim).get("request"))
        p = index(path, i)
        if not name:
            errs.append(required(p, ""))
            continue
        k = f"{name}/{request}" if request else name
        if name in seen or k in seen:
            errs.append(duplicate(p, k))
        if request:
            errs += _msgs(child(p, "request"), request, is_dns1123_label(request))
        seen.update({k, name})
        if name not in pod_claims:
            detail = "must be one of the names in pod.spec.resourceClaims" + (
                ": " + ", ".join(sorted(pod_claims)) if pod_claims else " which is empty"
            )
            errs.append(FieldError(not_found(p, name).type, p, name, detail))
    return errs


@validates("io.k8s.api.core.v1.ResourceRequirements")
def _resource_requirements(value: Any, path: str, ctx: Context) -> Errors:
    return validate_resource_requirements(value, path)


# ================================================================================================
# Volumes
# ================================================================================================

FILE_MODE_ERROR = "must be a number between 0 and 0777 (octal), both inclusive"
_PD_PARTITION_ERROR = inclusive_range_error(1, 255)

# The pod volume sources in upstream's check order: (field, path used for its own errors).
_VOLUME_SOURCES = (
    ("emptyDir", "emptyDir"),
    ("hostPath", "hostPath"),
    ("gitRepo", "gitRepo"),
    ("gcePersistentDisk", "persistentDisk"),
    ("awsElasticBlockStore", "awsElasticBlockStore"),
    ("secret", "secret"),
    ("nfs", "nfs"),
    ("iscsi", "iscsi"),
    ("glusterfs", "glusterfs"),
    ("flocker", "flocker"),
    ("persistentVolumeClaim", "persistentVolumeClaim"),
    ("rbd", "rbd"),
    ("cinder", "cinder"),
    ("cephfs", "cephfs"),
    ("quobyte", "quobyte"),
    ("downwardAPI", "downwardAPI"),
    ("fc", "fc"),
    ("flexVolume", "flexVolume"),
    ("configMap", "configMap"),
    ("azureFile", "azureFile"),
    ("vsphereVolume", "vsphereVolume"),
    ("photonPersistentDisk", "photonPersistentDisk"),
    ("portworxVolume", "portworxVolume"),
    ("azureDisk", "azureDisk"),
    ("storageos", "storageos"),
    ("projected", "projected"),
    ("scaleIO", "scaleIO"),
    ("csi", "csi"),
    ("ephemeral", "ephemeral"),
    ("image", "image"),
)
# The name upstream uses in the "more than 1 volume type" error, where it differs from the field.
_VOLUME_FORBIDDEN_NAME = {"cephfs": "cephFS", "downwardAPI": "downwarAPI"}
# Sources whose only checks are required string fields.
_REQUIRED_FIELDS = {
    "glusterfs": ("endpoints", "path"),
    "rbd": ("monitors", "image"),
    "cephfs": ("monitors",),
    "vsphereVolume": ("volumePath",),
    "photonPersistentDisk": ("pdID",),
    "portworxVolume": ("volumeID",),
    "scaleIO": ("gateway", "system", "volumeName"),
    "azureFile": ("secretName", "shareName"),
    "azureDisk": ("diskName", "diskURI"),
    "flexVolume": ("driver",),
}


def _mode_errors(mode: Any, path: str) -> Errors:
    if mode is not None and not 0 <= _i(mode) <= 0o777:
        return [invalid(path, _i(mode), FILE_MODE_ERROR)]
    return []


def _no_backsteps(target: str, path: str) -> Errors:
    if ".." in target.replace("\\", "/").split("/"):
        return [invalid(path, target, "must not contain '..'")]
    return []


def _local_descending_path(target: str, path: str) -> Errors:
    errs = [invalid(path, target, "must be a relative path")] if target.startswith("/") else []
    return errs + _no_backsteps(target, path)


def validate_local_non_reserved_path(target: str, path: str) -> Errors:
    errs = _local_descending_path(target, path)
    if target.startswith("..") and not target.startswith("../"):
        errs.append(invalid(path, target, "must not start with '..'"))
    return errs


def _key_to_path(item: Mapping, path: str) -> Errors:
    item = _d(item)
    errs: Errors = []
    if not _s(item.get("key")):
        errs.append(required(child(path, "key"), ""))
    if not _s(item.get("path")):
        errs.append(required(child(path, "path"), ""))
    errs += validate_local_non_reserved_path(_s(item.get("path")), child(path, "path"))
    return errs + _mode_errors(item.get("mode"), child(path, "mode"))


_HOST_PATH_TYPES = ["", "BlockDevice", "CharDevice", "Directory", "DirectoryOrCreate", "File", "FileOrCreate", "Socket"]


def _volume_source_errors(name: str, src: Mapping, path: str, vol_name: str) -> Errors:
    """The checks of one volume source (the ones a pod spec can hold)."""
    src = _d(src)
    errs: Errors = []
    if name == "emptyDir":
        limit = _quantity(src.get("sizeLimit")) if src.get("sizeLimit") is not None else None
        if limit is not None and limit.sign() < 0:
            errs.append(forbidden(child(path, "sizeLimit"), "SizeLimit field must be a valid resource quantity"))
    elif name == "hostPath":
        if not _s(src.get("path")):
            return [required(child(path, "path"), "")]
        errs += _no_backsteps(_s(src["path"]), child(path, "path"))
        if src.get("type") is not None and src["type"] not in _HOST_PATH_TYPES:
            errs.append(not_supported(child(path, "type"), src["type"], _HOST_PATH_TYPES))
    elif name == "gitRepo":
        if not _s(src.get("repository")):
            errs.append(required(child(path, "repository"), ""))
        errs += _local_descending_path(_s(src.get("directory")), child(path, "directory"))
    elif name in ("persistentDisk", "awsElasticBlockStore"):
        id_field = "pdName" if name == "persistentDisk" else "volumeID"
        if not _s(src.get(id_field)):
            errs.append(required(child(path, id_field), ""))
        if not 0 <= _i(src.get("partition")) <= 255:
            errs.append(invalid(child(path, "partition"), _i(src.get("partition")), _PD_PARTITION_ERROR))
    elif name in ("secret", "configMap"):
        name_field = "secretName" if name == "secret" else "name"
        if not _s(src.get(name_field)):
            errs.append(required(child(path, name_field), ""))
        errs += _mode_errors(src.get("defaultMode"), child(path, "defaultMode"))
        for i, item in enumerate(_l(src.get("items"))):
            errs += _key_to_path(item, index(child(path, "items"), i))
    elif name == "nfs":
        if not _s(src.get("server")):
            errs.append(required(child(path, "server"), ""))
        if not _s(src.get("path")):
            errs.append(required(child(path, "path"), ""))
        if not _s(src.get("path")).startswith("/"):
            errs.append(invalid(child(path, "path"), _s(src.get("path")), "must be an absolute path"))
    elif name == "iscsi":
        if not _s(src.get("targetPortal")):
            errs.append(required(child(path, "targetPortal"), ""))
        if not _s(src.get("iqn")):
            errs.append(required(child(path, "iqn"), ""))
        elif not _s(src.get("iqn")).startswith(("iqn", "eui", "naa")):
            errs.append(invalid(child(path, "iqn"), src["iqn"], "must be valid format starting with iqn, eui, or naa"))
        if not 0 <= _i(src.get("lun")) <= 255:
            errs.append(invalid(child(path, "lun"), _i(src.get("lun")), inclusive_range_error(0, 255)))
        if (src.get("chapAuthDiscovery") or src.get("chapAuthSession")) and src.get("secretRef") is None:
            errs.append(required(child(path, "secretRef"), ""))
    elif name == "flocker":
        ds_name, ds_uuid = _s(src.get("datasetName")), _s(src.get("datasetUUID"))
        if not ds_name and not ds_uuid:
            errs.append(required(path, "one of datasetName and datasetUUID is required"))
        if ds_name and ds_uuid:
            errs.append(invalid(path, "resource", "datasetName and datasetUUID can not be specified simultaneously"))
        if "/" in ds_name:
            errs.append(invalid(child(path, "datasetName"), ds_name, "must not contain '/'"))
    elif name == "persistentVolumeClaim":
        if not _s(src.get("claimName")):
            errs.append(required(child(path, "claimName"), ""))
    elif name == "cinder":
        if not _s(src.get("volumeID")):
            errs.append(required(child(path, "volumeID"), ""))
    elif name == "quobyte":
        if not _s(src.get("registry")):
            errs.append(
                required(child(path, "registry"), "must be a host:port pair or multiple pairs separated by commas")
            )
        if not _s(src.get("volume")):
            errs.append(required(child(path, "volume"), ""))
    elif name == "downwardAPI":
        errs += _mode_errors(src.get("defaultMode"), child(path, "defaultMode"))
        for item in _l(src.get("items")):
            errs += _downward_api_file(item, path)
    elif name == "fc":
        wwns, wwids = _l(src.get("targetWWNs")), _l(src.get("wwids"))
        if not wwns and not wwids:
            errs.append(required(child(path, "targetWWNs"), "must specify either targetWWNs or wwids, but not both"))
        if wwns and wwids:
            errs.append(
                invalid(child(path, "targetWWNs"), wwns, "targetWWNs and wwids can not be specified simultaneously")
            )
        if wwns:
            if src.get("lun") is None:
                errs.append(required(child(path, "lun"), "lun is required if targetWWNs is specified"))
            elif not 0 <= _i(src.get("lun")) <= 255:
                errs.append(invalid(child(path, "lun"), _i(src.get("lun")), inclusive_range_error(0, 255)))
    elif name == "storageos":
        if not _s(src.get("volumeName")):
            errs.append(required(child(path, "volumeName"), ""))
        else:
            errs += _msgs(child(path, "volumeName"), src["volumeName"], is_dns1123_label(src["volumeName"]))
    elif name == "projected":
        errs += _mode_errors(src.get("defaultMode"), child(path, "defaultMode"))
        errs += _projection_sources(_l(src.get("sources")), path)
    elif name == "csi":
        errs += validate_csi_driver_name(_s(src.get("driver")), child(path, "driver"))
    elif name == "ephemeral":
        template = src.get("volumeClaimTemplate")
        if template is None:
            errs.append(required(child(path, "volumeClaimTemplate"), ""))
        else:
            tpath = child(path, "volumeClaimTemplate")
            errs += validate_template_object_meta(_d(template).get("metadata"), child(tpath, "metadata"))
            errs += validate_pvc_spec(_d(_d(template).get("spec")), child(tpath, "spec"))
    elif name == "image":
        errs += _pull_policy(src.get("pullPolicy"), child(path, "pullPolicy"))
    elif name in _REQUIRED_FIELDS:
        for f in _REQUIRED_FIELDS[name]:
            if not src.get(f):
                errs.append(required(child(path, f), ""))
    return errs


def validate_csi_driver_name(driver: str, path: str) -> Errors:
    errs: Errors = []
    if not driver:
        errs.append(required(path, ""))
    if len(driver) > 63:
        errs.append(too_long(path, "", 63))
    return errs + _msgs(path, driver, is_dns1123_subdomain(driver.lower()))


def _downward_api_file(item: Mapping, path: str) -> Errors:
    item = _d(item)
    errs: Errors = []
    if not _s(item.get("path")):
        errs.append(required(child(path, "path"), ""))
    errs += validate_local_non_reserved_path(_s(item.get("path")), child(path, "path"))
    if item.get("fieldRef") is not None:
        errs += _object_field_selector(item["fieldRef"], _VOLUME_FIELD_PATHS, child(path, "fieldRef"))
        if item.get("resourceFieldRef") is not None:
            errs.append(invalid(path, "resource", "fieldRef and resourceFieldRef can not be specified simultaneously"))
    elif item.get("resourceFieldRef") is not None:
        errs += _resource_field_selector(item["resourceFieldRef"], child(path, "resourceFieldRef"), volume=True)
    else:
        errs.append(required(path, "one of fieldRef and resourceFieldRef is required"))
    return errs + _mode_errors(item.get("mode"), child(path, "mode"))


def _projection_sources(sources: list, path: str) -> Errors:
    errs: Errors = []
    seen_paths: set[str] = set()
    for i, source in enumerate(sources):
        source, sp = _d(source), index(child(path, "sources"), i)
        count = 0
        for kind in ("secret", "configMap"):
            if source.get(kind) is None:
                continue
            count += 1
            proj, pp = _d(source[kind]), child(sp, kind)
            if not _s(proj.get("name")):
                errs.append(required(child(pp, "name"), ""))
            for j, item in enumerate(_l(proj.get("items"))):
                errs += _key_to_path(item, index(child(pp, "items"), j))
                item_path = _s(_d(item).get("path"))
                if item_path:
                    if item_path in seen_paths:
                        errs.append(invalid(path, _s(proj.get("name")), "conflicting duplicate paths"))
                    seen_paths.add(item_path)
        if source.get("downwardAPI") is not None:
            count += 1
            for item in _l(_d(source["downwardAPI"]).get("items")):
                errs += _downward_api_file(item, child(sp, "downwardAPI"))
                item_path = _s(_d(item).get("path"))
                if item_path:
                    if item_path in seen_paths:
                        errs.append(invalid(path, item_path, "conflicting duplicate paths"))
                    seen_paths.add(item_path)
        if source.get("serviceAccountToken") is not None:
            count += 1
            token, tp = _d(source["serviceAccountToken"]), child(sp, "serviceAccountToken")
            seconds = _i(token.get("expirationSeconds"))
            if seconds < 600:
                errs.append(
                    invalid(child(tp, "expirationSeconds"), seconds, "may not specify a duration less than 10 minutes")
                )
            if seconds > 1 << 32:
                errs.append(
                    invalid(
                        child(tp, "expirationSeconds"), seconds, "may not specify a duration larger than 2^32 seconds"
                    )
                )
            if not _s(token.get("path")):
                errs.append(required(child(path, "path"), ""))
            else:
                errs += validate_local_non_reserved_path(token["path"], child(path, "path"))
        if source.get("clusterTrustBundle") is not None:
            count += 1
        if count > 1:
            errs.append(forbidden(sp, "may not specify more than 1 volume type per source"))
    return errs


def validate_volumes(volumes: list, path: str, pod_name: str = "") -> tuple[dict[str, dict], Errors]:
    """ValidateVolumes: the valid volumes by name, and the errors."""
    errs: Errors = []
    valid: dict[str, dict] = {}
    names: set[str] = set()
    for i, vol in enumerate(volumes):
        vol, p = _d(vol), index(path, i)
        name = _s(vol.get("name"))
        el = _volume_source(vol, p, name)
        if not name:
            el.append(required(child(p, "name"), ""))
        else:
            el += _msgs(child(p, "name"), name, is_dns1123_label(name))
        if name in names:
            el.append(duplicate(child(p, "name"), name))
        if el:
            errs += el
        else:
            names.add(name)
            valid[name] = vol
    return valid, errs


def _volume_source(vol: Mapping, path: str, vol_name: str) -> Errors:
    errs: Errors = []
    count = 0
    for fld, own_path in _VOLUME_SOURCES:
        if vol.get(fld) is None:
            continue
        if count:
            errs.append(
                forbidden(child(path, _VOLUME_FORBIDDEN_NAME.get(fld, fld)), "may not specify more than 1 volume type")
            )
            continue
        count += 1
        errs += _volume_source_errors(own_path, vol[fld], child(path, own_path), vol_name)
    if not count:
        errs.append(required(path, "must specify a volume type"))
    return errs


# ================================================================================================
# Containers
# ================================================================================================

PROTOCOLS = ["SCTP", "TCP", "UDP"]
_ENV_FIELD_PATHS = {
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "spec.nodeName",
    "spec.serviceAccountName",
    "status.hostIP",
    "status.hostIPs",
    "status.podIP",
    "status.podIPs",
}
_VOLUME_FIELD_PATHS = {"metadata.name", "metadata.namespace", "metadata.labels", "metadata.annotations", "metadata.uid"}
_DOWNWARD_LABELS = {
    "metadata.annotations",
    "metadata.labels",
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "spec.nodeName",
    "spec.restartPolicy",
    "spec.serviceAccountName",
    "spec.schedulerName",
    "status.phase",
    "status.hostIP",
    "status.hostIPs",
    "status.podIP",
    "status.podIPs",
}
_RESOURCE_FIELD_PATHS = {
    "limits.cpu",
    "limits.memory",
    "limits.ephemeral-storage",
    "requests.cpu",
    "requests.memory",
    "requests.ephemeral-storage",
}
_SUBSCRIPTED = re.compile(r"(.+)\['(.*)'\]")
_MEMORY_DIVISORS = {"1", "1k", "1M", "1G", "1T", "1P", "1E", "1Ki", "1Mi", "1Gi", "1Ti", "1Pi", "1Ei"}
_DIVISOR_LIST = "1, 1k, 1M, 1G, 1T, 1P, 1E, 1Ki, 1Mi, 1Gi, 1Ti, 1Pi, 1Ei"
PULL_POLICIES = ["Always", "IfNotPresent", "Never"]


def _convert_downward_label(version: str, label: str) -> tuple[str, str | None]:
    """ConvertDownwardAPIFieldLabel: (internal label, error)."""
    if version != "v1":
        return "", f"unsupported pod version: {version}"
    m = _SUBSCRIPTED.fullmatch(label)
    if m:
        if m[1] in ("metadata.annotations", "metadata.labels"):
            return label, None
        return "", f"field label does not support subscript: {label}"
    if label == "spec.host":
        return "spec.nodeName", None
    if label in _DOWNWARD_LABELS:
        return label, None
    return "", f"field label not supported: {label}"


def _object_field_selector(fs: Mapping, expressions: set[str], path: str) -> Errors:
    fs = _d(fs)
    version, field_path = _s(fs.get("apiVersion")), _s(fs.get("fieldPath"))
    if not version:
        return [required(child(path, "apiVersion"), "")]
    if not field_path:
        return [required(child(path, "fieldPath"), "")]
    internal, err = _convert_downward_label(version, field_path)
    if err:
        return [invalid(child(path, "fieldPath"), field_path, f"error converting fieldPath: {err}")]
    m = _SUBSCRIPTED.fullmatch(internal)
    if m:
        if m[1] == "metadata.annotations":
            return _msgs(path, m[2].lower(), is_qualified_name(m[2].lower()))
        if m[1] == "metadata.labels":
            return _msgs(path, m[2], is_qualified_name(m[2]))
        return [invalid(path, m[1], "does not support subscript")]
    if internal not in expressions:
        return [not_supported(child(path, "fieldPath"), internal, sorted(expressions))]
    return []


def _resource_field_selector(fs: Mapping, path: str, volume: bool) -> Errors:
    fs = _d(fs)
    resource = _s(fs.get("resource"))
    errs: Errors = []
    if volume and not _s(fs.get("containerName")):
        errs.append(required(child(path, "containerName"), ""))
    elif not resource:
        errs.append(required(child(path, "resource"), ""))
    elif resource not in _RESOURCE_FIELD_PATHS and not resource.startswith(
        ("requests.hugepages-", "limits.hugepages-")
    ):
        errs.append(not_supported(child(path, "resource"), resource, sorted(_RESOURCE_FIELD_PATHS)))
    divisor = _quantity(fs.get("divisor")) if fs.get("divisor") is not None else None
    if divisor is not None and not divisor.is_zero():
        text = divisor.canonical()
        if resource in ("limits.cpu", "requests.cpu") and text not in ("1m", "1"):
            errs.append(
                invalid(
                    child(path, "divisor"),
                    resource,
                    "only divisor's values 1m and 1 are supported with the cpu resource",
                )
            )
        elif resource in ("limits.memory", "requests.memory") and text not in _MEMORY_DIVISORS:
            errs.append(
                invalid(
                    child(path, "divisor"),
                    resource,
                    f"only divisor's values {_DIVISOR_LIST} are supported with the memory resource",
                )
            )
        elif resource in ("limits.ephemeral-storage", "requests.ephemeral-storage") and text not in _MEMORY_DIVISORS:
            errs.append(
                invalid(
                    child(path, "divisor"),
                    resource,
                    f"only divisor's values {_DIVISOR_LIST} are supported with the local ephemeral storage resource",
                )
            )
        if resource.startswith(("requests.hugepages-", "limits.hugepages-")) and text not in _MEMORY_DIVISORS:
            errs.append(
                invalid(
                    child(path, "divisor"),
                    resource,
                    f"only divisor's values {_DIVISOR_LIST} are supported with the hugepages resource",
                )
            )
    return errs


def _key_selector(sel: Mapping, path: str) -> Errors:
    sel = _d(sel)
    name, k = _s(sel.get("name")), _s(sel.get("key"))
    errs = _msgs(child(path, "name"), name, name_is_dns_subdomain(name, False))
    if not k:
        errs.append(required(child(path, "key"), ""))
    else:
        errs += _msgs(child(path, "key"), k, is_config_map_key(k))
    return errs


def validate_env(env: list, path: str) -> Errors:
    errs: Errors = []
    for i, ev in enumerate(env):
        ev, p = _d(ev), index(path, i)
        name = _s(ev.get("name"))
        if not name:
            errs.append(required(child(p, "name"), ""))
        else:
            errs += _msgs(child(p, "name"), name, is_relaxed_env_var_name(name))
        errs += _env_value_from(ev, child(p, "valueFrom"))
    return errs


def _env_value_from(ev: Mapping, path: str) -> Errors:
    source = ev.get("valueFrom")
    if source is None:
        return []
    source = _d(source)
    errs: Errors = []
    count = 0
    if source.get("fieldRef") is not None:
        count += 1
        errs += _object_field_selector(source["fieldRef"], _ENV_FIELD_PATHS, child(path, "fieldRef"))
    if source.get("resourceFieldRef") is not None:
        count += 1
        errs += _resource_field_selector(source["resourceFieldRef"], child(path, "resourceFieldRef"), volume=False)
    if source.get("configMapKeyRef") is not None:
        count += 1
        errs += _key_selector(source["configMapKeyRef"], child(path, "configMapKeyRef"))
    if source.get("secretKeyRef") is not None:
        count += 1
        errs += _key_selector(source["secretKeyRef"], child(path, "secretKeyRef"))
    if source.get("fileKeyRef") is not None:
        count += 1
    if count == 0:
        errs.append(
            invalid(
                path, "", "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`"
            )
        )
    elif _s(ev.get("value")):
        errs.append(invalid(path, "", "may not be specified when `value` is not empty"))
    elif count > 1:
        errs.append(invalid(path, "", "may not have more than one field specified at a time"))
    return errs


def validate_env_from(sources: list, path: str) -> Errors:
    errs: Errors = []
    for i, ev in enumerate(sources):
        ev, p = _d(ev), index(path, i)
        prefix = _s(ev.get("prefix"))
        if prefix:
            errs += _msgs(child(p, "prefix"), prefix, is_relaxed_env_var_name(prefix))
        count = 0
        for ref in ("configMapRef", "secretRef"):
            if ev.get(ref) is None:
                continue
            count += 1
            name = _s(_d(ev[ref]).get("name"))
            if not name:
                errs.append(required(child(p, ref, "name"), ""))
            else:
                errs += _msgs(child(p, ref, "name"), name, name_is_dns_subdomain(name, True))
        if count == 0:
            errs.append(invalid(path, "", "must specify one of: `configMapRef` or `secretRef`"))
        elif count > 1:
            errs.append(invalid(path, "", "may not have more than one field specified at a time"))
    return errs


def validate_container_ports(ports: list, path: str) -> Errors:
    errs: Errors = []
    names: set[str] = set()
    for i, port in enumerate(ports):
        port, p = _d(port), index(path, i)
        name = _s(port.get("name"))
        if name:
            msgs = is_valid_port_name(name)
            if msgs:
                errs += _msgs(child(p, "name"), name, msgs)
            elif name in names:
                errs.append(duplicate(child(p, "name"), name))
            else:
                names.add(name)
        container_port = _i(port.get("containerPort"))
        if container_port == 0:
            errs.append(required(child(p, "containerPort"), ""))
        else:
            errs += _msgs(child(p, "containerPort"), container_port, is_valid_port_num(container_port))
        host_port = _i(port.get("hostPort"))
        if host_port:
            errs += _msgs(child(p, "hostPort"), host_port, is_valid_port_num(host_port))
        protocol = _s(port.get("protocol"))
        if not protocol:
            errs.append(required(child(p, "protocol"), ""))
        elif protocol not in PROTOCOLS:
            errs.append(not_supported(child(p, "protocol"), protocol, PROTOCOLS))
    return errs


def validate_volume_mounts(
    mounts: list, devices: dict[str, str], volumes: dict[str, dict], container: Mapping, path: str
) -> Errors:
    errs: Errors = []
    mount_points: set[str] = set()
    for i, mnt in enumerate(mounts):
        mnt, p = _d(mnt), index(path, i)
        name, mount_path = _s(mnt.get("name")), _s(mnt.get("mountPath"))
        if not name:
            errs.append(required(child(p, "name"), ""))
        if name not in volumes:
            errs.append(not_found(child(p, "name"), name))
        if not mount_path:
            errs.append(required(child(p, "mountPath"), ""))
        if mount_path in mount_points:
            errs.append(invalid(child(p, "mountPath"), mount_path, "must be unique"))
        mount_points.add(mount_path)
        if name in devices:
            errs.append(invalid(child(p, "name"), name, "must not already exist in volumeDevices"))
        if mount_path in devices.values():
            errs.append(invalid(child(p, "mountPath"), mount_path, "must not already exist as a path in volumeDevices"))
        sub_path, sub_expr = _s(mnt.get("subPath")), _s(mnt.get("subPathExpr"))
        if name in volumes and volumes[name].get("image") is not None:
            if sub_path:
                errs.append(invalid(child(p, "subPath"), sub_path, "not allowed in image volume sources"))
            if sub_expr:
                errs.append(invalid(child(p, "subPathExpr"), sub_expr, "not allowed in image volume sources"))
        if sub_path:
            errs += _local_descending_path(sub_path, child(path, "subPath"))
        if sub_expr:
            if sub_path:
                errs.append(
                    invalid(child(p, "subPathExpr"), sub_expr, "subPathExpr and subPath are mutually exclusive")
                )
            errs += _local_descending_path(sub_expr, child(path, "subPathExpr"))
        propagation = mnt.get("mountPropagation")
        if propagation is not None:
            errs += _mount_propagation(propagation, container, child(path, "mountPropagation"))
        errs += _recursive_read_only(mnt, child(path, "recursiveReadOnly"))
    return errs


def _mount_propagation(mode: Any, container: Mapping, path: str) -> Errors:
    supported = ["Bidirectional", "HostToContainer", "None"]
    errs = [] if mode in supported else [not_supported(path, mode, supported)]
    privileged = _d(_d(container).get("securityContext")).get("privileged") is True
    if mode == "Bidirectional" and not privileged:
        errs.append(forbidden(path, "Bidirectional mount propagation is available only to privileged containers"))
    return errs


def _recursive_read_only(mnt: Mapping, path: str) -> Errors:
    mode = mnt.get("recursiveReadOnly")
    if mode is None or mode == "Disabled":
        return []
    if mode in ("Enabled", "IfPossible"):
        errs: Errors = []
        if not mnt.get("readOnly"):
            errs.append(forbidden(path, "may only be specified when readOnly is true"))
        if mnt.get("mountPropagation") not in (None, "None"):
            errs.append(forbidden(path, "may only be specified when mountPropagation is None or not specified"))
        return errs
    return [not_supported(path, mode, ["Disabled", "Enabled", "IfPossible"])]


def validate_volume_devices(devices: list, mounts: dict[str, str], volumes: dict[str, dict], path: str) -> Errors:
    errs: Errors = []
    seen_paths: set[str] = set()
    seen_names: set[str] = set()
    for i, dev in enumerate(devices):
        dev, p = _d(dev), index(path, i)
        name, dev_path = _s(dev.get("name")), _s(dev.get("devicePath"))
        vol = volumes.get(name)
        if not name:
            errs.append(required(child(p, "name"), ""))
        if name in seen_names:
            errs.append(invalid(child(p, "name"), name, "must be unique"))
        if vol is not None and vol.get("persistentVolumeClaim") is None and vol.get("ephemeral") is None:
            errs.append(
                invalid(
                    child(p, "name"),
                    name,
                    "can only use volume source type of PersistentVolumeClaim or Ephemeral for block mode",
                )
            )
        if vol is None:
            errs.append(not_found(child(p, "name"), name))
        if not dev_path:
            errs.append(required(child(p, "devicePath"), ""))
        if dev_path in seen_paths:
            errs.append(invalid(child(p, "devicePath"), dev_path, "must be unique"))
        if dev_path and _no_backsteps(dev_path, ""):
            errs.append(invalid(child(p, "devicePath"), dev_path, "can not contain backsteps ('..')"))
        else:
            seen_paths.add(dev_path)
        if name in mounts:
            errs.append(invalid(child(p, "name"), name, "must not already exist in volumeMounts"))
        if dev_path in mounts.values():
            errs.append(invalid(child(p, "devicePath"), dev_path, "must not already exist as a path in volumeMounts"))
        if name:
            seen_names.add(name)
    return errs


def _pull_policy(policy: Any, path: str) -> Errors:
    if policy in PULL_POLICIES:
        return []
    if not policy:
        return [required(path, "")]
    return [not_supported(path, policy, PULL_POLICIES)]


def _resize_policy(policies: list, path: str, pod_restart_policy: str) -> Errors:
    errs: Errors = []
    seen: set[str] = set()
    for i, p in enumerate(policies):
        p = _d(p)
        name, restart = _s(p.get("resourceName")), _s(p.get("restartPolicy"))
        if name in seen:
            errs.append(duplicate(index(path, i), name))
        seen.add(name)
        if not name:
            errs.append(required(path, ""))
        elif name not in ("cpu", "memory"):
            errs.append(not_supported(path, name, ["cpu", "memory"]))
        if not restart:
            errs.append(required(path, ""))
        elif restart not in ("NotRequired", "RestartContainer"):
            errs.append(not_supported(path, restart, ["NotRequired", "RestartContainer"]))
        if pod_restart_policy == "Never" and restart != "NotRequired":
            errs.append(invalid(path, restart, "must be 'NotRequired' when `restartPolicy` is 'Never'"))
    return errs


def validate_security_context(sc: Any, path: str, host_users: bool = True) -> Errors:
    if sc is None:
        return []
    sc = _d(sc)
    errs: Errors = []
    if sc.get("runAsUser") is not None:
        errs += _msgs(child(path, "runAsUser"), _i(sc["runAsUser"]), is_valid_user_id(_i(sc["runAsUser"])))
    if sc.get("runAsGroup") is not None:
        errs += _msgs(child(path, "runAsGroup"), _i(sc["runAsGroup"]), is_valid_group_id(_i(sc["runAsGroup"])))
    proc_mount = sc.get("procMount")
    if proc_mount is not None:
        if proc_mount not in ("Default", "Unmasked"):
            errs.append(not_supported(child(path, "procMount"), proc_mount, ["Default", "Unmasked"]))
        if host_users and proc_mount == "Unmasked":
            errs.append(invalid(child(path, "procMount"), proc_mount, "`hostUsers` must be false to use `Unmasked`"))
    errs += _seccomp_profile(sc.get("seccompProfile"), child(path, "seccompProfile"))
    if sc.get("allowPrivilegeEscalation") is False:
        if sc.get("privileged") is True:
            errs.append(
                invalid(
                    path,
                    go_struct(sc, "core.SecurityContext"),
                    "cannot set `allowPrivilegeEscalation` to false and `privileged` to true",
                )
            )
        if "CAP_SYS_ADMIN" in _l(_d(sc.get("capabilities")).get("add")):
            errs.append(
                invalid(
                    path,
                    go_struct(sc, "core.SecurityContext"),
                    "cannot set `allowPrivilegeEscalation` to false and `capabilities.Add` CAP_SYS_ADMIN",
                )
            )
    errs += _app_armor_profile(sc.get("appArmorProfile"), child(path, "appArmorProfile"))
    return errs


def _seccomp_profile(profile: Any, path: str) -> Errors:
    if profile is None:
        return []
    profile = _d(profile)
    errs: Errors = []
    types = ["Localhost", "RuntimeDefault", "Unconfined"]
    kind = _s(profile.get("type"))
    if not kind:
        errs.append(required(child(path, "type"), "type is required when seccompProfile is set"))
    elif kind not in types:
        errs.append(not_supported(child(path, "type"), kind, types))
    if kind == "Localhost":
        if profile.get("localhostProfile") is None:
            errs.append(required(child(path, "localhostProfile"), "must be set when seccomp type is Localhost"))
        else:
            errs += _local_descending_path(_s(profile["localhostProfile"]), child(path, "localhostProfile"))
    elif profile.get("localhostProfile") is not None:
        errs.append(
            invalid(
                child(path, "localhostProfile"),
                go_struct(profile, "core.SeccompProfile"),
                "can only be set when seccomp type is Localhost",
            )
        )
    return errs


def _app_armor_profile(profile: Any, path: str) -> Errors:
    if profile is None:
        return []
    profile = _d(profile)
    kind, local = _s(profile.get("type")), profile.get("localhostProfile")
    if kind == "Localhost":
        if local is None or not _s(local).strip():
            return [required(child(path, "localhostProfile"), "must be set when AppArmor type is Localhost")]
        if _s(local).strip() != local:
            return [invalid(child(path, "localhostProfile"), local, "must not be padded with whitespace")]
        return []
    if kind in ("RuntimeDefault", "Unconfined"):
        if local is not None:
            return [invalid(child(path, "localhostProfile"), local, "can only be set when AppArmor type is Localhost")]
        return []
    if not kind:
        return [required(child(path, "type"), "type is required when appArmorProfile is set")]
    return [not_supported(child(path, "type"), kind, ["Localhost", "RuntimeDefault", "Unconfined"])]


# --- probes and lifecycle handlers ------------------------------------------------------------------


def validate_port_num_or_name(port: Any, path: str) -> Errors:
    if isinstance(port, str):
        return _msgs(path, port, is_valid_port_name(port))
    return _msgs(path, _i(port), is_valid_port_num(_i(port)))


def _handler(handler: Mapping, grace: Any, path: str, kinds_allowed: tuple[str, ...]) -> Errors:
    handler = _d(handler)
    errs: Errors = []
    count = 0
    for kind in ("exec", "httpGet", "tcpSocket", "grpc", "sleep"):
        if kind not in kinds_allowed or handler.get(kind) is None:
            continue
        if count:
            errs.append(forbidden(child(path, kind), "may not specify more than 1 handler type"))
            continue
        count += 1
        action, p = _d(handler[kind]), child(path, kind)
        if kind == "exec":
            if not _l(action.get("command")):
                errs.append(required(child(p, "command"), ""))
        elif kind == "httpGet":
            if not _s(action.get("path")):
                errs.append(required(child(p, "path"), ""))
            errs += validate_port_num_or_name(action.get("port"), child(p, "port"))
            scheme = _s(action.get("scheme"))
            if scheme not in ("HTTP", "HTTPS"):
                errs.append(not_supported(child(p, "scheme"), scheme, ["HTTP", "HTTPS"]))
            for header in _l(action.get("httpHeaders")):
                name = _s(_d(header).get("name"))
                errs += _msgs(child(p, "httpHeaders"), name, is_http_header_name(name))
        elif kind == "tcpSocket":
            errs += validate_port_num_or_name(action.get("port"), child(p, "port"))
        elif kind == "grpc":
            errs += validate_port_num_or_name(_i(action.get("port")), child(p, "port"))
        elif kind == "sleep" and grace is not None:
            seconds = _i(action.get("seconds"))
            if seconds < 0 or seconds > _i(grace):
                errs.append(
                    invalid(
                        p, seconds, f"must be non-negative and less than terminationGracePeriodSeconds ({_i(grace)})"
                    )
                )
    if not count:
        errs.append(required(path, "must specify a handler type"))
    return errs


def _probe(probe: Any, grace: Any, path: str, kind: str) -> Errors:
    if probe is None:
        return []
    probe = _d(probe)
    errs = _handler(probe, grace, path, ("exec", "httpGet", "tcpSocket", "grpc"))
    for name in ("initialDelaySeconds", "timeoutSeconds", "periodSeconds", "successThreshold", "failureThreshold"):
        errs += nonnegative(probe.get(name), child(path, name))
    tgps = probe.get("terminationGracePeriodSeconds")
    if tgps is not None and _i(tgps) <= 0:
        errs.append(invalid(child(path, "terminationGracePeriodSeconds"), _i(tgps), "must be greater than 0"))
    if kind in ("liveness", "startup") and _i(probe.get("successThreshold")) != 1:
        errs.append(invalid(child(path, "successThreshold"), _i(probe.get("successThreshold")), "must be 1"))
    if kind == "readiness" and tgps is not None:
        errs.append(
            invalid(child(path, "terminationGracePeriodSeconds"), _i(tgps), "must not be set for readinessProbes")
        )
    return errs


def _lifecycle(lifecycle: Mapping, grace: Any, path: str) -> Errors:
    lifecycle = _d(lifecycle)
    errs: Errors = []
    for hook in ("postStart", "preStop"):
        if lifecycle.get(hook) is not None:
            errs += _handler(lifecycle[hook], grace, child(path, hook), ("exec", "httpGet", "tcpSocket", "sleep"))
    return errs


def _container_common(
    ctr: Mapping, volumes: dict[str, dict], claims: set[str], path: str, pod_restart: str, host_users: bool
) -> Errors:
    errs: Errors = []
    name = _s(ctr.get("name"))
    if not name:
        errs.append(required(child(path, "name"), ""))
    else:
        errs += _msgs(child(path, "name"), name, is_dns1123_label(name))
    if not _s(ctr.get("image")):
        errs.append(required(child(path, "image"), ""))
    policy = ctr.get("terminationMessagePolicy")
    if policy not in ("File", "FallbackToLogsOnError"):
        if not policy:
            errs.append(required(child(path, "terminationMessagePolicy"), ""))
        else:
            errs.append(
                not_supported(child(path, "terminationMessagePolicy"), policy, ["File", "FallbackToLogsOnError"])
            )
    mounts = {_s(_d(m).get("name")): _s(_d(m).get("mountPath")) for m in _l(ctr.get("volumeMounts"))}
    devices = {_s(_d(d).get("name")): _s(_d(d).get("devicePath")) for d in _l(ctr.get("volumeDevices"))}
    errs += validate_container_ports(_l(ctr.get("ports")), child(path, "ports"))
    errs += validate_env(_l(ctr.get("env")), child(path, "env"))
    errs += validate_env_from(_l(ctr.get("envFrom")), child(path, "envFrom"))
    errs += validate_volume_mounts(_l(ctr.get("volumeMounts")), devices, volumes, ctr, child(path, "volumeMounts"))
    errs += validate_volume_devices(_l(ctr.get("volumeDevices")), mounts, volumes, child(path, "volumeDevices"))
    errs += _pull_policy(ctr.get("imagePullPolicy"), child(path, "imagePullPolicy"))
    errs += validate_resource_requirements(_d(ctr.get("resources")), child(path, "resources"), claim_names=claims)
    errs += _resize_policy(_l(ctr.get("resizePolicy")), child(path, "resizePolicy"), pod_restart)
    errs += validate_security_context(ctr.get("securityContext"), child(path, "securityContext"), host_users)
    return errs


def _host_port_conflicts(containers: list, path: str) -> Errors:
    errs: Errors = []
    seen: set[str] = set()
    for ci, ctr in enumerate(containers):
        for pi, port in enumerate(_l(_d(ctr).get("ports"))):
            port = _d(port)
            host_port = _i(port.get("hostPort"))
            if not host_port:
                continue
            k = f"{_s(port.get('protocol'))}/{_s(port.get('hostIP'))}/{host_port}"
            if k in seen:
                errs.append(duplicate(child(index(child(index(path, ci), "ports"), pi), "hostPort"), k))
            seen.add(k)
    return errs


def validate_containers(
    containers: list,
    volumes: dict[str, dict],
    claims: set[str],
    grace: Any,
    path: str,
    pod_restart: str,
    host_users: bool,
) -> Errors:
    if not containers:
        return [required(path, "")]
    errs: Errors = []
    names: set[str] = set()
    for i, ctr in enumerate(containers):
        ctr, p = _d(ctr), index(path, i)
        errs += _container_common(ctr, volumes, claims, p, pod_restart, host_users)
        name = _s(ctr.get("name"))
        if name in names:
            errs.append(duplicate(child(p, "name"), name))
        names.add(name)
        if ctr.get("lifecycle") is not None:
            errs += _lifecycle(ctr["lifecycle"], grace, child(p, "lifecycle"))
        errs += _probe(ctr.get("livenessProbe"), grace, child(p, "livenessProbe"), "liveness")
        errs += _probe(ctr.get("readinessProbe"), grace, child(p, "readinessProbe"), "readiness")
        errs += _probe(ctr.get("startupProbe"), grace, child(p, "startupProbe"), "startup")
        if ctr.get("restartPolicy") is not None:
            errs.append(forbidden(child(p, "restartPolicy"), "may not be set for non-init containers"))
    return errs + _host_port_conflicts(containers, path)


def validate_init_containers(
    containers: list,
    regular: list,
    volumes: dict[str, dict],
    claims: set[str],
    grace: Any,
    path: str,
    pod_restart: str,
    host_users: bool,
) -> Errors:
    errs: Errors = []
    names = {_s(_d(c).get("name")) for c in regular}
    for i, ctr in enumerate(containers):
        ctr, p = _d(ctr), index(path, i)
        errs += _container_common(ctr, volumes, claims, p, pod_restart, host_users)
        restart_always = False
        if ctr.get("restartPolicy") is not None:
            if ctr["restartPolicy"] != "Always":
                errs.append(not_supported(child(p, "restartPolicy"), ctr["restartPolicy"], ["Always"]))
            restart_always = ctr["restartPolicy"] == "Always"
        name = _s(ctr.get("name"))
        if name in names:
            errs.append(duplicate(child(p, "name"), name))
        elif name:
            names.add(name)
        errs += _host_port_conflicts([ctr], path)
        if restart_always:
            if ctr.get("lifecycle") is not None:
                errs += _lifecycle(ctr["lifecycle"], grace, child(p, "lifecycle"))
            errs += _probe(ctr.get("livenessProbe"), grace, child(p, "livenessProbe"), "liveness")
            errs += _probe(ctr.get("readinessProbe"), grace, child(p, "readinessProbe"), "readiness")
            errs += _probe(ctr.get("startupProbe"), grace, child(p, "startupProbe"), "startup")
        else:
            for fld in ("lifecycle", "livenessProbe", "readinessProbe", "startupProbe"):
                if ctr.get(fld) is not None:
                    errs.append(
                        forbidden(child(p, fld), "may not be set for init containers without restartPolicy=Always")
                    )
    return errs


def _ephemeral_containers(
    ephemeral: list,
    containers: list,
    init: list,
    volumes: dict[str, dict],
    claims: set[str],
    path: str,
    pod_restart: str,
    host_users: bool,
) -> Errors:
    errs: Errors = []
    others = {_s(_d(c).get("name")) for c in containers + init}
    names = set(others)
    allowed = {
        "name",
        "image",
        "command",
        "args",
        "workingDir",
        "envFrom",
        "env",
        "volumeMounts",
        "volumeDevices",
        "terminationMessagePath",
        "terminationMessagePolicy",
        "imagePullPolicy",
        "securityContext",
        "stdin",
        "stdinOnce",
        "tty",
        "targetContainerName",
    }
    for i, ec in enumerate(ephemeral):
        ec, p = _d(ec), index(path, i)
        errs += _container_common(ec, volumes, claims, p, pod_restart, host_users)
        errs += _image_whitespace(ec, p)
        name = _s(ec.get("name"))
        if name in names:
            errs.append(duplicate(child(p, "name"), name))
        names.add(name)
        target = _s(ec.get("targetContainerName"))
        if target and target not in others:
            errs.append(not_found(child(p, "targetContainerName"), target))
        for fld, value in ec.items():
            if fld not in allowed and value not in (None, {}, [], "", 0, False):
                errs.append(forbidden(child(p, fld), "cannot be set for an Ephemeral Container"))
        for j, vm in enumerate(_l(ec.get("volumeMounts"))):
            for sub in ("subPath", "subPathExpr"):
                if _s(_d(vm).get(sub)):
                    errs.append(
                        forbidden(
                            child(index(child(p, "volumeMounts"), j), sub), "cannot be set for an Ephemeral Container"
                        )
                    )
    return errs


def _image_whitespace(ctr: Mapping, path: str) -> Errors:
    image = _s(ctr.get("image"))
    if image != image.strip():
        return [invalid(child(path, "image"), image, "must not have leading or trailing whitespace")]
    return []


# ================================================================================================
# Pod spec
# ================================================================================================

RESTART_POLICIES = ["Always", "OnFailure", "Never"]
DNS_POLICIES = ["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"]
TAINT_EFFECTS = ["NoSchedule", "PreferNoSchedule", "NoExecute"]
_NODE_SELECTOR_OPS = ("In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt")


def _enum(value: Any, path: str, allowed: list[str]) -> Errors:
    """The common `"" -> Required, unknown -> Unsupported` pattern."""
    if value in allowed:
        return []
    if not value:
        return [required(path, "")]
    return [not_supported(path, value, allowed)]


def validate_tolerations(tolerations: list, path: str) -> Errors:
    errs: Errors = []
    for i, t in enumerate(tolerations):
        t, p = _d(t), index(path, i)
        k, op, value, effect = _s(t.get("key")), _s(t.get("operator")), _s(t.get("value")), _s(t.get("effect"))
        if k:
            errs += validate_label_name(k, child(p, "key"))
        if not k and op != "Exists":
            errs.append(
                invalid(
                    child(p, "operator"),
                    op,
                    'operator must be Exists when `key` is empty, which means "match all values and all keys"',
                )
            )
        if t.get("tolerationSeconds") is not None and effect != "NoExecute":
            errs.append(
                invalid(child(p, "effect"), effect, "effect must be 'NoExecute' when `tolerationSeconds` is set")
            )
        if op in ("Equal", ""):
            msgs = is_valid_label_value(value)
            if msgs:
                errs.append(invalid(child(p, "operator"), value, ";".join(msgs)))
        elif op == "Exists":
            if value:
                errs.append(invalid(child(p, "operator"), value, "value must be empty when `operator` is 'Exists'"))
        else:
            errs.append(not_supported(child(p, "operator"), op, ["Equal", "Exists"]))
        if effect and effect not in TAINT_EFFECTS:
            errs.append(not_supported(child(p, "effect"), effect, TAINT_EFFECTS))
    return errs


def _node_selector_requirement(rq: Mapping, allow_invalid_values: bool, path: str) -> Errors:
    rq = _d(rq)
    op, values = _s(rq.get("operator")), _l(rq.get("values"))
    errs: Errors = []
    if op in ("In", "NotIn"):
        if not values:
            errs.append(required(child(path, "values"), "must be specified when `operator` is 'In' or 'NotIn'"))
    elif op in ("Exists", "DoesNotExist"):
        if values:
            errs.append(
                forbidden(child(path, "values"), "may not be specified when `operator` is 'Exists' or 'DoesNotExist'")
            )
    elif op in ("Gt", "Lt"):
        if len(values) != 1:
            errs.append(
                required(child(path, "values"), "must be specified single value when `operator` is 'Lt' or 'Gt'")
            )
    else:
        errs.append(invalid(child(path, "operator"), op, "not a valid selector operator"))
    errs += validate_label_name(_s(rq.get("key")), child(path, "key"))
    if not allow_invalid_values:
        for j, v in enumerate(values):
            errs += _msgs(index(child(path, "values"), j), v, is_valid_label_value(_s(v)))
    return errs


def _node_field_requirement(rq: Mapping, path: str) -> Errors:
    rq = _d(rq)
    errs: Errors = []
    if rq.get("operator") in ("In", "NotIn"):
        if len(_l(rq.get("values"))) != 1:
            errs.append(
                required(
                    child(path, "values"),
                    "must be only one value when `operator` is 'In' or 'NotIn' for node field selector",
                )
            )
    else:
        errs.append(invalid(child(path, "operator"), _s(rq.get("operator")), "not a valid selector operator"))
    if rq.get("key") != "metadata.name":
        errs.append(invalid(child(path, "key"), _s(rq.get("key")), "not a valid field selector key"))
    else:
        for i, v in enumerate(_l(rq.get("values"))):
            errs += _msgs(index(child(path, "values"), i), v, name_is_dns_subdomain(_s(v), False))
    return errs


def validate_node_selector_term(term: Mapping, allow_invalid_values: bool, path: str) -> Errors:
    term = _d(term)
    errs: Errors = []
    for j, rq in enumerate(_l(term.get("matchExpressions"))):
        errs += _node_selector_requirement(rq, allow_invalid_values, index(child(path, "matchExpressions"), j))
    for j, rq in enumerate(_l(term.get("matchFields"))):
        errs += _node_field_requirement(rq, index(child(path, "matchFields"), j))
    return errs


def validate_node_selector(selector: Mapping, allow_invalid_values: bool, path: str) -> Errors:
    terms = _l(_d(selector).get("nodeSelectorTerms"))
    terms_path = child(path, "nodeSelectorTerms")
    if not terms:
        return [required(terms_path, "must have at least one node selector term")]
    errs: Errors = []
    for i, term in enumerate(terms):
        errs += validate_node_selector_term(term, allow_invalid_values, index(terms_path, i))
    return errs


def _pod_affinity_term(term: Mapping, path: str) -> Errors:
    term = _d(term)
    errs = validate_label_selector(term.get("labelSelector"), child(path, "labelSelector"))
    errs += validate_label_selector(term.get("namespaceSelector"), child(path, "namespaceSelector"))
    for name in _l(term.get("namespaces")):
        errs += _msgs(child(path, "namespace"), name, name_is_dns_label(_s(name), False))
    selector = term.get("labelSelector")
    for fld in ("matchLabelKeys", "mismatchLabelKeys"):
        keys = _l(term.get(fld))
        if keys and selector is None:
            errs.append(forbidden(child(path, fld), "must not be specified when labelSelector is not set"))
        elif keys:
            for i, k in enumerate(keys):
                errs += validate_label_name(_s(k), index(child(path, fld), i))
    mismatch = set(_l(term.get("mismatchLabelKeys")))
    for i, k in enumerate(_l(term.get("matchLabelKeys"))):
        if k in mismatch:
            errs.append(
                invalid(
                    index(child(path, "matchLabelKeys"), i), k, "exists in both matchLabelKeys and mismatchLabelKeys"
                )
            )
    topology = _s(term.get("topologyKey"))
    if not topology:
        errs.append(required(child(path, "topologyKey"), "can not be empty"))
    return errs + validate_label_name(topology, child(path, "topologyKey"))


def _weight(value: Any, path: str) -> Errors:
    w = _i(value)
    return [] if 0 < w <= 100 else [invalid(path, w, "must be in the range 1-100")]


def validate_affinity(affinity: Any, path: str) -> Errors:
    if affinity is None:
        return []
    affinity = _d(affinity)
    errs: Errors = []
    node = affinity.get("nodeAffinity")
    if node is not None:
        node, np = _d(node), child(path, "nodeAffinity")
        required_terms = node.get("requiredDuringSchedulingIgnoredDuringExecution")
        if required_terms is not None:
            errs += validate_node_selector(
                required_terms, False, child(np, "requiredDuringSchedulingIgnoredDuringExecution")
            )
        for i, term in enumerate(_l(node.get("preferredDuringSchedulingIgnoredDuringExecution"))):
            tp = index(child(np, "preferredDuringSchedulingIgnoredDuringExecution"), i)
            errs += _weight(_d(term).get("weight"), child(tp, "weight"))
            errs += validate_node_selector_term(_d(term).get("preference"), True, child(tp, "preference"))
    for kind in ("podAffinity", "podAntiAffinity"):
        pod = affinity.get(kind)
        if pod is None:
            continue
        pod, pp = _d(pod), child(path, kind)
        for i, term in enumerate(_l(pod.get("requiredDuringSchedulingIgnoredDuringExecution"))):
            errs += _pod_affinity_term(term, index(child(pp, "requiredDuringSchedulingIgnoredDuringExecution"), i))
        for i, term in enumerate(_l(pod.get("preferredDuringSchedulingIgnoredDuringExecution"))):
            tp = index(child(pp, "preferredDuringSchedulingIgnoredDuringExecution"), i)
            errs += _weight(_d(term).get("weight"), child(tp, "weight"))
            errs += _pod_affinity_term(_d(term).get("podAffinityTerm"), child(tp, "podAffinityTerm"))
    return errs


def _dns_config(config: Any, policy: str, path: str) -> Errors:
    if policy == "None":
        if config is None:
            return [required(path, "must provide `dnsConfig` when `dnsPolicy` is None")]
        if not _l(_d(config).get("nameservers")):
            return [
                required(
                    child(path, "nameservers"), "must provide at least one DNS nameserver when `dnsPolicy` is None"
                )
            ]
    if config is None:
        return []
    config = _d(config)
    errs: Errors = []
    servers, searches = _l(config.get("nameservers")), _l(config.get("searches"))
    if len(servers) > 3:
        errs.append(invalid(child(path, "nameservers"), servers, "must not have more than 3 nameservers"))
    for i, ns in enumerate(servers):
        errs += _ip_errors(index(child(path, "nameservers"), i), _s(ns))
    if len(searches) > 32:
        errs.append(invalid(child(path, "searches"), searches, "must not have more than 32 search paths"))
    if len(" ".join(map(str, searches))) > 2048:
        errs.append(
            invalid(
                child(path, "searches"),
                searches,
                "must not have more than 2048 characters (including spaces) in the search list",
            )
        )
    for i, search in enumerate(searches):
        search = _s(search)
        if search != ".":
            search = search.removesuffix(".")
            errs += _msgs(index(child(path, "searches"), i), search, is_dns1123_subdomain_with_underscore(search))
    for i, option in enumerate(_l(config.get("options"))):
        if not _s(_d(option).get("name")):
            errs.append(required(index(child(path, "options"), i), "must not be empty"))
    return errs


def _topology_spread(constraints: list, path: str) -> Errors:
    errs: Errors = []
    for i, c in enumerate(constraints):
        c, p = _d(c), index(path, i)
        if _i(c.get("maxSkew")) <= 0:
            errs.append(invalid(child(p, "maxSkew"), _i(c.get("maxSkew")), NOT_POSITIVE))
        if not _s(c.get("topologyKey")):
            errs.append(required(child(p, "topologyKey"), "can not be empty"))
        action = _s(c.get("whenUnsatisfiable"))
        if action not in ("DoNotSchedule", "ScheduleAnyway"):
            errs.append(not_supported(child(p, "whenUnsatisfiable"), action, ["DoNotSchedule", "ScheduleAnyway"]))
        for other in constraints[i + 1 :]:
            other = _d(other)
            if (other.get("topologyKey"), other.get("whenUnsatisfiable")) == (c.get("topologyKey"), action):
                errs.append(
                    duplicate(child(p, "{topologyKey, whenUnsatisfiable}"), f"{{{_s(c.get('topologyKey'))}, {action}}}")
                )
                break
        if c.get("minDomains") is not None:
            md = _i(c["minDomains"])
            if md <= 0:
                errs.append(invalid(child(p, "minDomains"), md, NOT_POSITIVE))
            if action != "DoNotSchedule":
                errs.append(
                    invalid(
                        child(p, "minDomains"),
                        md,
                        f"can only use minDomains if whenUnsatisfiable=DoNotSchedule, not {action}",
                    )
                )
        for policy in ("nodeAffinityPolicy", "nodeTaintsPolicy"):
            if c.get(policy) is not None and c[policy] not in ("Honor", "Ignore"):
                errs.append(not_supported(child(p, policy), c[policy], ["Honor", "Ignore"]))
        selector = c.get("labelSelector")
        keys = _l(c.get("matchLabelKeys"))
        if keys:
            if selector is None:
                errs.append(
                    forbidden(child(p, "matchLabelKeys"), "must not be specified when labelSelector is not set")
                )
            present = set(_d(selector).get("matchLabels") or {}) | {
                _s(_d(e).get("key")) for e in _l(_d(selector).get("matchExpressions"))
            }
            for j, k in enumerate(keys):
                errs += validate_label_name(_s(k), index(child(p, "matchLabelKeys"), j))
                if k in present:
                    errs.append(
                        invalid(
                            index(child(p, "matchLabelKeys"), j), k, "exists in both matchLabelKeys and labelSelector"
                        )
                    )
        errs += validate_label_selector(selector, child(p, "labelSelector"))
    return errs


def _pod_security_context(sc: Any, spec: Mapping, path: str) -> Errors:
    if sc is None:
        return []
    sc = _d(sc)
    errs: Errors = []
    if sc.get("fsGroup") is not None:
        errs += _msgs(child(path, "fsGroup"), _i(sc["fsGroup"]), is_valid_group_id(_i(sc["fsGroup"])))
    if sc.get("runAsUser") is not None:
        errs += _msgs(child(path, "runAsUser"), _i(sc["runAsUser"]), is_valid_user_id(_i(sc["runAsUser"])))
    if sc.get("runAsGroup") is not None:
        errs += _msgs(child(path, "runAsGroup"), _i(sc["runAsGroup"]), is_valid_group_id(_i(sc["runAsGroup"])))
    for g, gid in enumerate(_l(sc.get("supplementalGroups"))):
        errs += _msgs(index(child(path, "supplementalGroups"), g), _i(gid), is_valid_group_id(_i(gid)))
    if spec.get("shareProcessNamespace") is True and spec.get("hostPID") is True:
        errs.append(
            invalid(
                child(path, "shareProcessNamespace"), True, "ShareProcessNamespace and HostPID cannot both be enabled"
            )
        )
    sysctls = _l(sc.get("sysctls"))
    seen: set[str] = set()
    for i, s in enumerate(sysctls):
        name, p = _s(_d(s).get("name")), child(index(child(path, "sysctls"), i), "name")
        if not name:
            errs.append(required(p, ""))
        elif len(name) > 253 or not _SYSCTL_RE.fullmatch(name):
            errs.append(invalid(p, name, f"must have at most 253 characters and match regex {_SYSCTL_FMT}"))
        elif name in seen:
            errs.append(duplicate(p, name))
        if spec.get("hostNetwork") is True and name.startswith("net."):
            errs.append(invalid(p, name, "may not be specified when 'hostNetwork' is true"))
        elif spec.get("hostIPC") is True and (
            name.startswith(("kernel.sem", "kernel.shm", "kernel.msg", "fs.mqueue."))
        ):
            errs.append(invalid(p, name, "may not be specified when 'hostIPC' is true"))
        seen.add(name)
    policy = sc.get("fsGroupChangePolicy")
    if policy is not None and policy not in ("OnRootMismatch", "Always"):
        errs.append(not_supported(child(path, "fsGroupChangePolicy"), policy, ["Always", "OnRootMismatch"]))
    errs += _seccomp_profile(sc.get("seccompProfile"), child(path, "seccompProfile"))
    errs += _app_armor_profile(sc.get("appArmorProfile"), child(path, "appArmorProfile"))
    policy = sc.get("supplementalGroupsPolicy")
    if policy is not None and policy not in ("Merge", "Strict"):
        errs.append(not_supported(child(path, "supplementalGroupsPolicy"), policy, ["Merge", "Strict"]))
    policy = sc.get("seLinuxChangePolicy")
    if policy is not None and policy not in ("MountOption", "Recursive"):
        errs.append(not_supported(child(path, "seLinuxChangePolicy"), policy, ["MountOption", "Recursive"]))
    return errs


_SYSCTL_SEGMENT = "[a-z0-9]([-_a-z0-9]*[a-z0-9])?"
_SYSCTL_FMT = f"^({_SYSCTL_SEGMENT}[\\./])*{_SYSCTL_SEGMENT}$"
_SYSCTL_RE = re.compile(_SYSCTL_FMT[1:-1])


def _pod_resources(spec: Mapping, claims: set[str], path: str) -> Errors:
    """Pod-level resources (PodLevelResources, on by default since it is beta)."""
    resources = spec.get("resources")
    if resources is None:
        return []
    resources = _d(resources)
    errs: Errors = []
    if resources.get("claims") is not None:
        errs.append(forbidden(child(path, "claims"), "claims cannot be set for Resources at pod-level"))

    def pod_resource_name(name: str, p: str) -> Errors:
        found = validate_resource_name(name, p)
        if found:
            return found
        if name not in ("cpu", "memory") and not is_hugepage(name):
            return [not_supported(p, name, list(_POD_LEVEL_RESOURCES))]
        return []

    errs += validate_resource_requirements(
        {k: v for k, v in resources.items() if k != "claims"}, path, name_fn=pod_resource_name, claim_names=claims
    )
    requests = {k: _quantity(v) for k, v in _d(resources.get("requests")).items()}
    limits = {k: _quantity(v) for k, v in _d(resources.get("limits")).items()}
    totals: dict[str, Quantity] = {}
    for ctr in _l(spec.get("containers")):
        for name, v in _d(_d(_d(ctr).get("resources")).get("requests")).items():
            q = _quantity(v)
            if q is not None:
                totals[name] = totals[name] + q if name in totals else q
    for name, total in totals.items():
        pod_request = requests.get(name) or Quantity(0)
        if total > pod_request:
            errs.append(
                invalid(
                    key(child(path, "requests"), name),
                    str(pod_request),
                    f"must be greater than or equal to aggregate container requests of {total}",
                )
            )
    for i, ctr in enumerate(_l(spec.get("containers"))):
        for name, v in _d(_d(_d(ctr).get("resources")).get("limits")).items():
            q, pod_limit = _quantity(v), limits.get(name)
            if q is not None and pod_limit is not None and q > pod_limit:
                p = child(key(index(child(path, "containers"), i), name), "limits")
                errs.append(invalid(p, str(q), f"must be less than or equal to pod limits of {pod_limit}"))
    return errs


def _visit_containers(spec: Mapping, path: str) -> Iterable[tuple[dict, str]]:
    for fld in ("initContainers", "containers", "ephemeralContainers"):
        for i, ctr in enumerate(_l(spec.get(fld))):
            yield _d(ctr), index(child(path, fld), i)


def _os_specific(spec: Mapping, path: str) -> Errors:
    os_spec = spec.get("os")
    if os_spec is None:
        return []
    name = _s(_d(os_spec).get("name"))
    if not name:
        return [required(child(path, "os", "name"), "cannot be empty")]
    if name not in ("linux", "windows"):
        return [not_supported(child(path, "os"), name, ["linux", "windows"])]
    errs: Errors = []
    sc = _d(spec.get("securityContext"))
    if name == "linux":
        if sc.get("windowsOptions") is not None:
            errs.append(
                forbidden(
                    child(path, "securityContext", "windowsOptions"), "windows options cannot be set for a linux pod"
                )
            )
        for ctr, cp in _visit_containers(spec, path):
            if _d(ctr.get("securityContext")).get("windowsOptions") is not None:
                errs.append(
                    forbidden(
                        child(cp, "securityContext", "windowsOptions"), "windows options cannot be set for a linux pod"
                    )
                )
        return errs
    pod_forbidden = (
        ("appArmorProfile", True),
        ("seLinuxOptions", True),
        ("seccompProfile", True),
        ("fsGroup", True),
        ("fsGroupChangePolicy", True),
        ("sysctls", True),
        ("runAsUser", True),
        ("runAsGroup", True),
        ("supplementalGroups", True),
        ("supplementalGroupsPolicy", True),
        ("seLinuxChangePolicy", True),
    )
    if spec.get("securityContext") is not None:
        if sc.get("hostUsers") is not None:
            errs.append(forbidden(child(path, "hostUsers"), "cannot be set for a windows pod"))
        for fld in ("hostPID", "hostIPC"):
            if spec.get(fld) is True:
                errs.append(forbidden(child(path, fld), "cannot be set for a windows pod"))
        if spec.get("shareProcessNamespace") is not None:
            errs.append(forbidden(child(path, "shareProcessNamespace"), "cannot be set for a windows pod"))
        for fld, _ in pod_forbidden:
            if sc.get(fld) not in (None, []):
                errs.append(forbidden(child(path, "securityContext", fld), "cannot be set for a windows pod"))
    for ctr, cp in _visit_containers(spec, path):
        csc = ctr.get("securityContext")
        if csc is None:
            continue
        for fld in (
            "appArmorProfile",
            "seLinuxOptions",
            "seccompProfile",
            "capabilities",
            "readOnlyRootFilesystem",
            "privileged",
            "allowPrivilegeEscalation",
            "procMount",
            "runAsUser",
            "runAsGroup",
        ):
            if _d(csc).get(fld) is not None:
                errs.append(forbidden(child(cp, "securityContext", fld), "cannot be set for a windows pod"))
    return errs


def validate_pod_spec(
    spec: Mapping, path: str, pod_meta: Mapping | None = None, resource_is_pod: bool = False
) -> Errors:
    """ValidatePodSpec."""
    spec = _d(spec)
    errs: Errors = []
    grace = spec.get("terminationGracePeriodSeconds")
    if grace is None:
        errs.append(required(child(path, "terminationGracePeriodSeconds"), ""))
    sc = _d(spec.get("securityContext"))
    host_users = sc.get("hostUsers") is not False
    restart = _s(spec.get("restartPolicy"))
    volumes, volume_errs = validate_volumes(_l(spec.get("volumes")), child(path, "volumes"))
    errs += volume_errs
    claims = {_s(_d(c).get("name")) for c in _l(spec.get("resourceClaims")) if _s(_d(c).get("name"))}
    errs += _pod_resource_claims(_l(spec.get("resourceClaims")), child(path, "resourceClaims"))
    containers, init = _l(spec.get("containers")), _l(spec.get("initContainers"))
    errs += validate_containers(containers, volumes, claims, grace, child(path, "containers"), restart, host_users)
    errs += validate_init_containers(
        init, containers, volumes, claims, grace, child(path, "initContainers"), restart, host_users
    )
    errs += _ephemeral_containers(
        _l(spec.get("ephemeralContainers")),
        containers,
        init,
        volumes,
        claims,
        child(path, "ephemeralContainers"),
        restart,
        host_users,
    )
    errs += _pod_resources(spec, claims, child(path, "resources"))
    if spec.get("hostNetwork") is True:
        for i, ctr in enumerate(containers):
            for j, port in enumerate(_l(_d(ctr).get("ports"))):
                hp, cp = _i(_d(port).get("hostPort")), _i(_d(port).get("containerPort"))
                if (resource_is_pod or hp != 0) and hp != cp:
                    p = child(index(child(index(child(path, "containers"), i), "ports"), j), "hostPort")
                    errs.append(invalid(p, hp, "must match `containerPort` when `hostNetwork` is true"))
    errs += _enum(restart, child(path, "restartPolicy"), RESTART_POLICIES)
    errs += _enum(_s(spec.get("dnsPolicy")), child(path, "dnsPolicy"), DNS_POLICIES)
    errs += validate_labels(spec.get("nodeSelector"), child(path, "nodeSelector"))
    errs += _pod_security_context(spec.get("securityContext"), spec, child(path, "securityContext"))
    for i, secret in enumerate(_l(spec.get("imagePullSecrets"))):
        if set(_d(secret)) - {"name"}:
            errs.append(
                invalid(
                    index(child(path, "imagePullSecrets"), i),
                    go_struct(secret, "core.LocalObjectReference"),
                    "only name may be set",
                )
            )
    errs += validate_affinity(spec.get("affinity"), child(path, "affinity"))
    errs += _dns_config(spec.get("dnsConfig"), _s(spec.get("dnsPolicy")), child(path, "dnsConfig"))
    for i, gate in enumerate(_l(spec.get("readinessGates"))):
        ct = _s(_d(gate).get("conditionType"))
        errs += _msgs(child(index(child(path, "readinessGates"), i), "conditionType"), ct, is_qualified_name(ct))
    seen_gates: set[str] = set()
    for i, gate in enumerate(_l(spec.get("schedulingGates"))):
        name = _s(_d(gate).get("name"))
        errs += _msgs(index(child(path, "schedulingGates"), i), name, is_qualified_name(name))
        if name in seen_gates:
            errs.append(duplicate(index(child(path, "schedulingGates"), i), name))
        seen_gates.add(name)
    errs += _topology_spread(_l(spec.get("topologySpreadConstraints")), child(path, "topologySpreadConstraints"))
    if sc.get("hostUsers") is False:
        for fld, shown in (("hostNetwork", "hostNetwork"), ("hostPID", "HostPID"), ("hostIPC", "HostIPC")):
            if spec.get(fld) is True:
                errs.append(forbidden(child(path, shown), "when `pod.Spec.HostUsers` is false"))
    for fld, fn in (("serviceAccountName", name_is_dns_subdomain), ("nodeName", name_is_dns_subdomain)):
        value = _s(spec.get(fld))
        if value:
            errs += _msgs(child(path, fld), value, fn(value, False))
    if spec.get("activeDeadlineSeconds") is not None:
        ads = _i(spec["activeDeadlineSeconds"])
        if not 1 <= ads <= MAX_INT32:
            errs.append(invalid(child(path, "activeDeadlineSeconds"), ads, inclusive_range_error(1, MAX_INT32)))
    for fld in ("hostname", "subdomain"):
        value = _s(spec.get(fld))
        if value:
            errs += _msgs(child(path, fld), value, is_dns1123_label(value))
    errs += validate_tolerations(_l(spec.get("tolerations")), child(path, "tolerations"))
    for i, alias in enumerate(_l(spec.get("hostAliases"))):
        ap = index(child(path, "hostAliases"), i)
        errs += _ip_errors(child(ap, "ip"), _s(_d(alias).get("ip")))
        for j, host in enumerate(_l(_d(alias).get("hostnames"))):
            errs += _msgs(index(child(ap, "hostnames"), j), host, is_dns1123_subdomain(_s(host)))
    for fld in ("priorityClassName", "runtimeClassName"):
        value = spec.get(fld)
        if value is not None and (fld == "runtimeClassName" or value):
            errs += _msgs(child(path, fld), value, name_is_dns_subdomain(_s(value), False))
    if spec.get("preemptionPolicy") is not None:
        errs += _enum(spec["preemptionPolicy"], child(path, "preemptionPolicy"), ["PreemptLowerPriority", "Never"])
    if spec.get("overhead") is not None:
        errs += validate_resource_requirements({"limits": spec["overhead"]}, child(path, "overhead"))
    errs += _os_specific(spec, path)
    return errs


def _pod_resource_claims(claims: list, path: str) -> Errors:
    errs: Errors = []
    names: set[str] = set()
    for i, claim in enumerate(claims):
        claim, p = _d(claim), index(path, i)
        name = _s(claim.get("name"))
        if not name:
            errs.append(required(child(p, "name"), ""))
        elif name in names:
            errs.append(duplicate(child(p, "name"), name))
        else:
            errs += _msgs(child(p, "name"), name, is_dns1123_label(name))
            names.add(name)
        by_name, by_template = claim.get("resourceClaimName"), claim.get("resourceClaimTemplateName")
        if by_name is not None and by_template is not None:
            errs.append(
                invalid(
                    p,
                    go_struct(claim, "core.PodResourceClaim"),
                    "at most one of `resourceClaimName` or `resourceClaimTemplateName` may be specified",
                )
            )
        if by_name is None and by_template is None:
            errs.append(
                invalid(
                    p,
                    go_struct(claim, "core.PodResourceClaim"),
                    "must specify one of: `resourceClaimName`, `resourceClaimTemplateName`",
                )
            )
        for fld, value in (("resourceClaimName", by_name), ("resourceClaimTemplateName", by_template)):
            if value is not None:
                errs += _msgs(child(p, fld), value, name_is_dns_subdomain(_s(value), False))
    return errs


@validates("io.k8s.api.core.v1.PodSpec")
def _pod_spec(value: Any, path: str, ctx: Context) -> Errors:
    return validate_pod_spec(value, path, resource_is_pod=ctx.resource_is_pod)


# --- annotations that constrain pods ---------------------------------------------------------------

MIRROR_POD_ANNOTATION = "kubernetes.io/config.mirror"
TOLERATIONS_ANNOTATION = "scheduler.alpha.kubernetes.io/tolerations"
DELETION_COST_ANNOTATION = "controller.kubernetes.io/pod-deletion-cost"
SECCOMP_POD_ANNOTATION = "seccomp.security.alpha.kubernetes.io/pod"
SECCOMP_CONTAINER_PREFIX = "container.seccomp.security.alpha.kubernetes.io/"
APPARMOR_PREFIX = "container.apparmor.security.beta.kubernetes.io/"


def _seccomp_annotation(value: str, path: str) -> Errors:
    if value in ("runtime/default", "docker/default", "unconfined"):
        return []
    if value.startswith("localhost/"):
        return _local_descending_path(value.removeprefix("localhost/"), path)
    return [invalid(path, value, "must be a valid seccomp profile")]


def validate_pod_specific_annotations(annotations: Mapping | None, spec: Mapping, path: str) -> Errors:
    annotations = _d(annotations)
    errs: Errors = []
    if MIRROR_POD_ANNOTATION in annotations and not _s(spec.get("nodeName")):
        errs.append(
            invalid(
                key(path, MIRROR_POD_ANNOTATION),
                annotations[MIRROR_POD_ANNOTATION],
                "must set spec.nodeName if mirror pod annotation is set",
            )
        )
    if annotations.get(TOLERATIONS_ANNOTATION):
        import json

        try:
            tolerations = json.loads(annotations[TOLERATIONS_ANNOTATION])
        except ValueError as err:
            errs.append(invalid(path, TOLERATIONS_ANNOTATION, str(err)))
        else:
            errs += validate_tolerations(_l(tolerations), child(path, TOLERATIONS_ANNOTATION))
    if DELETION_COST_ANNOTATION in annotations:
        value = annotations[DELETION_COST_ANNOTATION]
        if not re.fullmatch(r"[+-]?[0-9]+", value) or not -(1 << 31) <= int(value) < 1 << 31:
            errs.append(invalid(key(path, DELETION_COST_ANNOTATION), value, "must be a 32bit integer"))
    if SECCOMP_POD_ANNOTATION in annotations:
        errs += _seccomp_annotation(annotations[SECCOMP_POD_ANNOTATION], child(path, SECCOMP_POD_ANNOTATION))
    for k, v in annotations.items():
        if k.startswith(SECCOMP_CONTAINER_PREFIX):
            errs += _seccomp_annotation(v, child(path, k))
    names = {_s(c.get("name")) for c, _ in _visit_containers(spec, "spec")}
    for k, v in annotations.items():
        if not k.startswith(APPARMOR_PREFIX):
            continue
        container = k.removeprefix(APPARMOR_PREFIX)
        if container not in names:
            errs.append(invalid(key(path, k), container, "container not found"))
        if v not in ("", "runtime/default", "unconfined") and not v.startswith("localhost/"):
            errs.append(invalid(key(path, k), v, f"invalid AppArmor profile name: {go_quote(v)}"))
    return errs


def _seccomp_fields_match(meta: Mapping, spec: Mapping, path: str) -> Errors:
    """validateSeccompAnnotationsAndFields: annotation and field must agree where both are set."""
    annotations = _d(_d(meta).get("annotations"))
    errs: Errors = []

    def match(value: str, profile: Mapping, p: str) -> None:
        kind = _s(profile.get("type"))
        if (
            kind == "Unconfined"
            and value != "unconfined"
            or kind == "RuntimeDefault"
            and value not in ("runtime/default", "docker/default")
        ):
            errs.append(forbidden(child(p, "type"), "seccomp type in annotation and field must match"))
        elif kind == "Localhost":
            if not value.startswith("localhost/"):
                errs.append(forbidden(child(p, "type"), "seccomp type in annotation and field must match"))
            elif value.removeprefix("localhost/") != profile.get("localhostProfile"):
                errs.append(
                    forbidden(child(p, "localhostProfile"), "seccomp profile in annotation and field must match")
                )

    pod_profile = _d(spec.get("securityContext")).get("seccompProfile")
    if pod_profile is not None and SECCOMP_POD_ANNOTATION in annotations:
        match(annotations[SECCOMP_POD_ANNOTATION], _d(pod_profile), child(path, "securityContext", "seccompProfile"))
    for ctr, cp in _visit_containers(spec, path):
        profile = _d(ctr.get("securityContext")).get("seccompProfile")
        k = SECCOMP_CONTAINER_PREFIX + _s(ctr.get("name"))
        if profile is not None and k in annotations:
            match(annotations[k], _d(profile), child(cp, "securityContext", "seccompProfile"))
    return errs


def validate_pod_template_spec(template: Mapping, path: str) -> Errors:
    """ValidatePodTemplateSpec (note the upstream paths `<path>.labels`, `<path>.annotations`)."""
    template = _d(template)
    meta, spec = _d(template.get("metadata")), _d(template.get("spec"))
    errs = validate_labels(meta.get("labels"), child(path, "labels"))
    errs += validate_annotations(meta.get("annotations"), child(path, "annotations"))
    errs += validate_pod_specific_annotations(meta.get("annotations"), spec, child(path, "annotations"))
    errs += validate_pod_spec(spec, child(path, "spec"))
    errs += _seccomp_fields_match(meta, spec, child(path, "spec"))
    if _l(spec.get("ephemeralContainers")):
        errs.append(
            forbidden(child(path, "spec", "ephemeralContainers"), "ephemeral containers not allowed in pod template")
        )
    return errs


@validates("io.k8s.api.core.v1.PodTemplateSpec")
def _pod_template_spec(value: Any, path: str, ctx: Context) -> Errors:
    return validate_pod_template_spec(value, path)


# ================================================================================================
# core/v1 kinds
# ================================================================================================


def _spec_diff(old: Mapping, new: Mapping, type_name: str) -> str:
    """A go-cmp style summary of what differs (upstream appends cmp.Diff output to the message)."""
    lines = [f"  {type_name}{{"]
    for name in sorted(set(old) | set(new), key=lambda n: list(new).index(n) if n in new else len(new)):
        if _semantic(old.get(name)) != _semantic(new.get(name)):
            lines.append(f"- \t{name[:1].upper()}{name[1:]}: {_go_json(old.get(name))},")
            lines.append(f"+ \t{name[:1].upper()}{name[1:]}: {_go_json(new.get(name))},")
    lines.append("  }")
    return "\n".join(lines) + "\n"


def _go_json(value: Any) -> str:
    import json

    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _pod_metadata_and_spec(pod: Mapping) -> Errors:
    meta, spec = _d(pod.get("metadata")), _d(pod.get("spec"))
    errs = validate_object_meta(meta, True, name_is_dns_subdomain)
    errs += validate_pod_specific_annotations(meta.get("annotations"), spec, "metadata.annotations")
    errs += validate_pod_spec(spec, "spec", meta, resource_is_pod=True)
    if not _s(spec.get("serviceAccountName")):
        for vi, vol in enumerate(_l(spec.get("volumes"))):
            projected = _d(vol).get("projected")
            if projected is None:
                continue
            for si, source in enumerate(_l(_d(projected).get("sources"))):
                if _d(source).get("serviceAccountToken") is not None:
                    p = child(
                        index(child(index("spec.volumes", vi), "projected", "sources"), si), "serviceAccountToken"
                    )
                    errs.append(forbidden(p, "must not be specified when serviceAccountName is not set"))
    for fld in ("containers", "initContainers"):
        for i, ctr in enumerate(_l(spec.get(fld))):
            errs += _image_whitespace(_d(ctr), index(child("spec", fld), i))
    return errs


def validate_pod(pod: Mapping) -> Errors:
    spec = _d(pod.get("spec"))
    errs = _pod_metadata_and_spec(pod)
    if _l(spec.get("ephemeralContainers")):
        errs.append(forbidden("spec.ephemeralContainers", "cannot be set on create"))
    if _s(spec.get("nodeName")) and _l(spec.get("schedulingGates")):
        errs.append(forbidden("spec.nodeName", "cannot be set until all schedulingGates have been cleared"))
    return errs + _seccomp_fields_match(_d(pod.get("metadata")), spec, "spec")


_UPDATABLE_POD_FIELDS = ",".join(
    [
        "`spec.containers[*].image`",
        "`spec.initContainers[*].image`",
        "`spec.activeDeadlineSeconds`",
        "`spec.tolerations` (only additions to existing tolerations)",
        "`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)",
    ]
)


def validate_pod_update(new: Mapping, old: Mapping) -> Errors:
    """ValidatePodUpdate: only images, activeDeadlineSeconds, tolerations (added) and gates may change."""
    new_meta, old_meta = _d(new.get("metadata")), _d(old.get("metadata"))
    new_spec, old_spec = _d(new.get("spec")), _d(old.get("spec"))
    errs = validate_object_meta_update(new_meta, old_meta)
    errs += _pod_metadata_and_spec(new)
    errs += _pod_annotation_updates(_d(new_meta.get("annotations")), _d(old_meta.get("annotations")))
    for fld in ("containers", "initContainers"):
        new_ctrs, old_ctrs = _l(new_spec.get(fld)), _l(old_spec.get(fld))
        if len(new_ctrs) != len(old_ctrs):
            return errs + [forbidden(child("spec", fld), "pod updates may not add or remove containers")]
        for i, ctr in enumerate(new_ctrs):
            if not _s(_d(ctr).get("image")):
                errs.append(required(child(index(child("spec", fld), i), "image"), ""))
            errs += _image_whitespace(_d(ctr), index(child("spec", fld), i))
    new_ads, old_ads = new_spec.get("activeDeadlineSeconds"), old_spec.get("activeDeadlineSeconds")
    if new_ads is not None:
        if not 0 <= _i(new_ads) <= MAX_INT32:
            return errs + [invalid("spec.activeDeadlineSeconds", _i(new_ads), inclusive_range_error(0, MAX_INT32))]
        if old_ads is not None and _i(old_ads) < _i(new_ads):
            return errs + [
                invalid("spec.activeDeadlineSeconds", _i(new_ads), "must be less than or equal to previous value")
            ]
    elif old_ads is not None:
        errs.append(invalid("spec.activeDeadlineSeconds", None, "must not update from a positive integer to nil value"))
    errs += _only_added_tolerations(
        _l(new_spec.get("tolerations")), _l(old_spec.get("tolerations")), "spec.tolerations"
    )
    old_gates = {_s(_d(g).get("name")) for g in _l(old_spec.get("schedulingGates"))}
    for i, gate in enumerate(_l(new_spec.get("schedulingGates"))):
        name = _s(_d(gate).get("name"))
        if name not in old_gates:
            errs.append(
                forbidden(
                    child(index("spec.schedulingGates", i), "name"),
                    f"only deletion is allowed, but found new scheduling gate '{name}'",
                )
            )
    if _semantic(new_spec) == _semantic(old_spec):
        return errs
    munged = copy.deepcopy(new_spec)
    for fld in ("containers", "initContainers"):
        for ctr, old_ctr in zip(_l(munged.get(fld)), _l(old_spec.get(fld))):
            _d(ctr)["image"] = _d(old_ctr).get("image")
    for fld in ("activeDeadlineSeconds", "schedulingGates", "tolerations"):
        munged.pop(fld, None)
        if fld in old_spec:
            munged[fld] = old_spec[fld]
    old_grace = old_spec.get("terminationGracePeriodSeconds")
    if old_grace is not None and _i(old_grace) < 0 and munged.get("terminationGracePeriodSeconds") == 1:
        munged["terminationGracePeriodSeconds"] = old_grace
    if _l(old_spec.get("schedulingGates")):
        for fld in ("nodeSelector",):
            old_sel, new_sel = _d(old_spec.get(fld)), _d(munged.get(fld))
            if old_sel != new_sel:
                if any(new_sel.get(k) != v for k, v in old_sel.items()):
                    errs.append(
                        invalid(
                            "spec.nodeSelector",
                            dict(new_sel),
                            "only additions to spec.nodeSelector are allowed (no mutations or deletions)",
                        )
                    )
                munged[fld] = old_spec.get(fld)
    if _semantic(munged) != _semantic(old_spec):
        errs.append(
            forbidden(
                "spec",
                f"pod updates may not change fields other than {_UPDATABLE_POD_FIELDS}\n"
                + _spec_diff(old_spec, munged, "core.PodSpec"),
            )
        )
    return errs


_SYSTEM_POD_CONDITIONS = frozenset({"PodScheduled", "Ready", "Initialized"})


def validate_pod_status_update(new: Mapping, old: Mapping) -> Errors:
    """ValidatePodStatusUpdate: what a status write may change is checked; the spec is the stored
    one (the status strategy keeps it), which passed validation when it was written."""
    new_meta, old_meta = _d(new.get("metadata")), _d(old.get("metadata"))
    status, old_status = _d(new.get("status")), _d(old.get("status"))
    errs = _pod_annotation_updates(_d(new_meta.get("annotations")), _d(old_meta.get("annotations")))
    for i, condition in enumerate(_l(status.get("conditions"))):
        kind = _s(_d(condition).get("type"))
        if kind not in _SYSTEM_POD_CONDITIONS:
            # upstream names the path under metadata (fldPath there is still "metadata")
            errs += _msgs(child(index("metadata.conditions", i), "Type"), kind, is_qualified_name(kind))
    nominated = _s(status.get("nominatedNodeName"))
    if nominated and nominated != _s(old_status.get("nominatedNodeName")):
        errs += _msgs("status.nominatedNodeName", nominated, name_is_dns_subdomain(nominated, False))
    spec = _d(new.get("spec"))
    restart_policy = _s(spec.get("restartPolicy"))
    sidecars = {_s(_d(c).get("name")) for c in _l(spec.get("initContainers")) if _d(c).get("restartPolicy") == "Always"}
    for fld, policy in (("containerStatuses", restart_policy), ("initContainerStatuses", restart_policy),
                        ("ephemeralContainerStatuses", "Never")):  # ephemeral containers never restart
        errs += _container_state_transitions(_l(status.get(fld)), _l(old_status.get(fld)), child("status", fld),
                                             policy, sidecars if fld == "initContainerStatuses" else set())
    host_ips = _l(status.get("hostIPs"))
    if host_ips and _s(_d(host_ips[0]).get("ip")) != _s(status.get("hostIP")):
        errs.append(invalid("status.hostIPs[0].ip", _s(_d(host_ips[0]).get("ip")), "must be equal to `hostIP`"))
    for fld in ("podIPs", "hostIPs"):
        errs += _pod_status_ips(_l(status.get(fld)), child("status", fld))
    return errs


def _container_state_transitions(new: list, old: list, path: str, restart_policy: str, restartable: set[str]
                                 ) -> Errors:
    """ValidateContainerStateTransition: a container that terminated for good stays terminated."""
    if restart_policy == "Always":
        return []
    terminated_now = {_s(_d(s).get("name")) for s in new if _d(_d(s).get("state")).get("terminated") is not None}
    names_now = {_s(_d(s).get("name")) for s in new}
    errs: Errors = []
    for i, status in enumerate(old):
        name = _s(_d(status).get("name"))
        terminated = _d(_d(status).get("state")).get("terminated")
        if terminated is None or name in restartable:
            continue
        if _i(_d(terminated).get("exitCode")) != 0 and restart_policy == "OnFailure":
            continue
        if name in names_now and name not in terminated_now:
            errs.append(forbidden(child(index(path, i), "state"), "may not be transitioned to non-terminated state"))
    return errs


def _pod_status_ips(entries: list, path: str) -> Errors:
    """validatePodIPs / validateHostIPs: valid addresses, at most one of each family."""
    ips = [_s(_d(e).get("ip")) for e in entries]
    errs: Errors = []
    for i, ip in enumerate(ips):
        errs += _ip_errors(index(path, i), ip)
    if len(ips) > 1 and not errs:
        families = {":" in ip for ip in ips}
        if len(ips) > 2 or len(families) != 2:
            errs.append(invalid(path, GoLiteral(_go_ip_list(entries, path)), "may specify no more than one IP for "
                                                                              "each IP family"))
    return errs


def _go_ip_list(entries: list, path: str) -> str:
    kind = "core.PodIP" if path.endswith("podIPs") else "core.HostIP"
    return "[]" + kind + "{" + ", ".join(f'{kind}{{IP:{go_quote(_s(_d(e).get("ip")))}}}' for e in entries) + "}"


def _pod_annotation_updates(new: Mapping, old: Mapping) -> Errors:
    errs: Errors = []
    path = "metadata.annotations"
    for k, v in old.items():
        if new.get(k) == v:
            continue
        if k.startswith(APPARMOR_PREFIX):
            errs.append(forbidden(key(path, k), "may not remove or update AppArmor annotations"))
        if k == MIRROR_POD_ANNOTATION:
            errs.append(forbidden(key(path, k), "may not remove or update mirror pod annotation"))
    for k in new:
        if k in old:
            continue
        if k.startswith(APPARMOR_PREFIX):
            errs.append(forbidden(key(path, k), "may not add AppArmor annotations"))
        if k == MIRROR_POD_ANNOTATION:
            errs.append(forbidden(key(path, k), "may not add mirror pod annotation"))
    return errs


def _only_added_tolerations(new: list, old: list, path: str) -> Errors:
    def without_seconds(t: Any) -> dict:
        return {k: v for k, v in _d(t).items() if k != "tolerationSeconds" and v not in (None, "")}

    remaining = [without_seconds(t) for t in new]
    for t in old:
        if without_seconds(t) not in remaining:
            return [forbidden(path, "existing toleration can not be modified except its tolerationSeconds")]
    return validate_tolerations(new, path)


def validate_pod_template(obj: Mapping) -> Errors:
    errs = validate_object_meta(_d(obj.get("metadata")), True, name_is_dns_subdomain)
    return errs + validate_pod_template_spec(_d(obj.get("template")), "template")


# --- ReplicationController ------------------------------------------------------------------------------


def validate_replication_controller_spec(spec: Mapping, path: str) -> Errors:
    spec = _d(spec)
    errs = nonnegative(spec.get("minReadySeconds"), child(path, "minReadySeconds"))
    selector = _d(spec.get("selector"))
    if not selector:
        errs.append(required(child(path, "selector"), ""))
    errs += nonnegative(spec.get("replicas"), child(path, "replicas"))
    template, tpath = spec.get("template"), child(path, "template")
    if template is None:
        return errs + [required(tpath, "")]
    template = _d(template)
    labels = _d(template.get("metadata")).get("labels")
    if selector and not selector_from_set(selector).matches(_d(labels)):
        errs.append(
            invalid(child(tpath, "metadata", "labels"), go_map(labels), "`selector` does not match template `labels`")
        )
    errs += validate_pod_template_spec(template, tpath)
    tspec = _d(template.get("spec"))
    if tspec.get("restartPolicy") != "Always":
        errs.append(not_supported(child(tpath, "spec", "restartPolicy"), _s(tspec.get("restartPolicy")), ["Always"]))
    if tspec.get("activeDeadlineSeconds") is not None:
        errs.append(
            forbidden(
                child(tpath, "spec", "activeDeadlineSeconds"),
                "activeDeadlineSeconds in ReplicationController is not Supported",
            )
        )
    return errs


# --- Service ---------------------------------------------------------------------------------------------

SERVICE_TYPES = ["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"]
NODE_PORT_RANGE = (30000, 32767)


def _is_headless(spec: Mapping) -> bool:
    ips = _l(spec.get("clusterIPs"))
    return len(ips) == 1 and ips[0] == "None"


def _externally_accessible(spec: Mapping) -> bool:
    kind = spec.get("type")
    return kind in ("LoadBalancer", "NodePort") or (kind == "ClusterIP" and bool(_l(spec.get("externalIPs"))))


def validate_service(svc: Mapping) -> Errors:
    """ValidateService (plus the node port range check the allocator makes)."""
    meta, spec = _d(svc.get("metadata")), _d(svc.get("spec"))
    errs = validate_object_meta(meta, True, name_is_dns1035_label)
    annotations = _d(meta.get("annotations"))
    hints, mode = (
        annotations.get("service.kubernetes.io/topology-aware-hints"),
        annotations.get("service.kubernetes.io/topology-mode"),
    )
    if hints is not None and mode is not None and hints != mode:
        errs.append(
            invalid(
                key("metadata.annotations", "service.kubernetes.io/topology-mode"),
                mode,
                "must match annotations[service.kubernetes.io/topology-aware-hints] when both are specified",
            )
        )
    kind, ports = _s(spec.get("type")), _l(spec.get("ports"))
    headless = _is_headless(spec)
    if not ports and not headless and kind != "ExternalName":
        errs.append(required("spec.ports", ""))
    if kind in ("LoadBalancer", "NodePort") and headless:
        errs.append(invalid("spec.clusterIPs[0]", "None", f"may not be set to 'None' for {kind} services"))
    elif kind == "ExternalName":
        if _l(spec.get("clusterIPs")):
            errs.append(forbidden("spec.clusterIPs", "may not be set for ExternalName services"))
        if _l(spec.get("ipFamilies")):
            errs.append(forbidden("spec.ipFamilies", "may not be set for ExternalName services"))
        if spec.get("ipFamilyPolicy") is not None:
            errs.append(forbidden("spec.ipFamilyPolicy", "may not be set for ExternalName services"))
        cname = _s(spec.get("externalName")).removesuffix(".")
        if cname:
            errs += _msgs("spec.externalName", cname, is_dns1123_subdomain(cname))
        else:
            errs.append(required("spec.externalName", ""))
    names: set[str] = set()
    for i, port in enumerate(ports):
        errs += _service_port(_d(port), len(ports) > 1, names, index("spec.ports", i))
    if spec.get("selector") is not None:
        errs += validate_labels(spec.get("selector"), "spec.selector")
    affinity = _s(spec.get("sessionAffinity"))
    if not affinity:
        errs.append(required("spec.sessionAffinity", ""))
    elif affinity not in ("ClientIP", "None"):
        errs.append(not_supported("spec.sessionAffinity", affinity, ["ClientIP", "None"]))
    config = spec.get("sessionAffinityConfig")
    if affinity == "ClientIP":
        errs += _client_ip_affinity(config, "spec.sessionAffinityConfig")
    elif affinity == "None" and config is not None:
        errs.append(forbidden("spec.sessionAffinityConfig", "must not be set when session affinity is None"))
    errs += _cluster_ips_related(spec)
    for i, ip in enumerate(_l(spec.get("externalIPs"))):
        p = index("spec.externalIPs", i)
        found = _ip_errors(p, _s(ip))
        errs += found or validate_non_special_ip(_s(ip), p)
    if not kind:
        errs.append(required("spec.type", ""))
    elif kind not in SERVICE_TYPES:
        errs.append(not_supported("spec.type", kind, SERVICE_TYPES))
    if kind == "ClusterIP":
        for i, port in enumerate(ports):
            if _i(_d(port).get("nodePort")):
                errs.append(
                    forbidden(child(index("spec.ports", i), "nodePort"), "may not be used when `type` is 'ClusterIP'")
                )
    seen_node_ports: set[tuple] = set()
    for i, port in enumerate(ports):
        node_port = _i(_d(port).get("nodePort"))
        if not node_port:
            continue
        k = (_d(port).get("protocol"), node_port)
        if k in seen_node_ports:
            errs.append(duplicate(child(index("spec.ports", i), "nodePort"), node_port))
        seen_node_ports.add(k)
    seen_ports: set[tuple] = set()
    for i, port in enumerate(ports):
        k = (_s(_d(port).get("protocol")), _i(_d(port).get("port")))
        if k in seen_ports:
            errs.append(
                duplicate(index("spec.ports", i), go_struct({"protocol": k[0], "port": k[1]}, "core.ServicePort"))
            )
        seen_ports.add(k)
    ranges = _l(spec.get("loadBalancerSourceRanges"))
    if ranges:
        if kind != "LoadBalancer":
            errs.append(forbidden("spec.LoadBalancerSourceRanges", "may only be used when `type` is 'LoadBalancer'"))
        for i, value in enumerate(ranges):
            value = _s(value).strip()
            errs += _msgs(index("spec.LoadBalancerSourceRanges", i), value, is_valid_cidr(value))
    elif "service.beta.kubernetes.io/load-balancer-source-ranges" in annotations:
        p = key("metadata.annotations", "service.beta.kubernetes.io/load-balancer-source-ranges")
        if kind != "LoadBalancer":
            errs.append(forbidden(p, "may only be used when `type` is 'LoadBalancer'"))
        value = annotations["service.beta.kubernetes.io/load-balancer-source-ranges"].strip()
        for cidr in value.split(",") if value else []:
            errs += _msgs(p, cidr.strip(), is_valid_cidr(cidr.strip()))
    if spec.get("allocateLoadBalancerNodePorts") is not None and kind != "LoadBalancer":
        errs.append(forbidden("spec.allocateLoadBalancerNodePorts", "may only be used when `type` is 'LoadBalancer'"))
    if kind == "LoadBalancer" and spec.get("allocateLoadBalancerNodePorts") is None:
        errs.append(required("allocateLoadBalancerNodePorts", ""))
    lb_class = spec.get("loadBalancerClass")
    if kind == "LoadBalancer":
        if lb_class is not None:
            errs += _msgs("spec.loadBalancerClass", lb_class, is_qualified_name(_s(lb_class)))
    elif lb_class is not None:
        errs.append(forbidden("spec.loadBalancerClass", "may only be used when `type` is 'LoadBalancer'"))
    errs += _external_traffic_policy(spec)
    internal = spec.get("internalTrafficPolicy")
    if internal is None and kind in ("NodePort", "LoadBalancer", "ClusterIP"):
        errs.append(required("spec.internalTrafficPolicy", ""))
    if internal is not None and internal not in ("Cluster", "Local"):
        errs.append(not_supported("spec.internalTrafficPolicy", internal, ["Cluster", "Local"]))
    distribution = spec.get("trafficDistribution")
    if distribution is not None and distribution not in ("PreferClose", "PreferSameZone", "PreferSameNode"):
        errs.append(
            not_supported("spec.trafficDistribution", distribution, ["PreferClose", "PreferSameZone", "PreferSameNode"])
        )
    lo, hi = NODE_PORT_RANGE
    for i, port in enumerate(ports):
        node_port = _i(_d(port).get("nodePort"))
        if node_port and kind in ("NodePort", "LoadBalancer") and not lo <= node_port <= hi:
            errs.append(
                invalid(
                    child(index("spec.ports", i), "nodePort"),
                    node_port,
                    f"provided port is not in the valid range. The range of valid ports is {lo}-{hi}",
                )
            )
    return errs


def _service_port(port: Mapping, require_name: bool, names: set[str], path: str) -> Errors:
    errs: Errors = []
    name = _s(port.get("name"))
    if require_name and not name:
        errs.append(required(child(path, "name"), ""))
    elif name:
        errs += _msgs(child(path, "name"), name, is_dns1123_label(name))
        if name in names:
            errs.append(duplicate(child(path, "name"), name))
        names.add(name)
    errs += _msgs(child(path, "port"), _i(port.get("port")), is_valid_port_num(_i(port.get("port"))))
    protocol = _s(port.get("protocol"))
    if not protocol:
        errs.append(required(child(path, "protocol"), ""))
    elif protocol not in PROTOCOLS:
        errs.append(not_supported(child(path, "protocol"), protocol, PROTOCOLS))
    errs += validate_port_num_or_name(port.get("targetPort"), child(path, "targetPort"))
    if port.get("appProtocol") is not None:
        errs += _msgs(child(path, "appProtocol"), port["appProtocol"], is_qualified_name(_s(port["appProtocol"])))
    return errs


def _client_ip_affinity(config: Any, path: str) -> Errors:
    detail = "when session affinity type is ClientIP"
    if config is None:
        return [required(path, detail)]
    client_ip = _d(config).get("clientIP")
    if client_ip is None:
        return [required(child(path, "clientIP"), detail)]
    timeout = _d(client_ip).get("timeoutSeconds")
    if timeout is None:
        return [required(child(path, "clientIP", "timeoutSeconds"), detail)]
    if not 0 < _i(timeout) <= 86400:
        return [
            invalid(
                child(path, "clientIP", "timeoutSeconds"), _i(timeout), "must be greater than 0 and less than 86400"
            )
        ]
    return []


def _cluster_ips_related(spec: Mapping) -> Errors:
    if spec.get("type") == "ExternalName":
        return []
    errs: Errors = []
    cluster_ip, ips, families = _s(spec.get("clusterIP")), _l(spec.get("clusterIPs")), _l(spec.get("ipFamilies"))
    if cluster_ip:
        if not ips:
            errs.append(required("spec.clusterIPs", ""))
        elif ips[0] != cluster_ip:
            errs.append(invalid("spec.clusterIPs", list(ips), "first value must match `clusterIP`"))
    elif ips:
        errs.append(invalid("spec.clusterIPs", list(ips), "must be empty when `clusterIP` is not specified"))
    seen: set[str] = set()
    for i, family in enumerate(families):
        if family not in ("IPv4", "IPv6"):
            errs.append(not_supported(index("spec.ipFamilies", i), family, ["IPv4", "IPv6"]))
        if family in seen:
            errs.append(duplicate(index("spec.ipFamilies", i), family))
        seen.add(family)
    policy = spec.get("ipFamilyPolicy")
    if policy is not None and policy not in ("PreferDualStack", "RequireDualStack", "SingleStack"):
        errs.append(
            not_supported("spec.ipFamilyPolicy", policy, ["PreferDualStack", "RequireDualStack", "SingleStack"])
        )
    bad_ips = False
    for i, ip in enumerate(ips):
        if i == 0 and ip == "None":
            if len(ips) > 1:
                bad_ips = True
                errs.append(invalid("spec.clusterIPs", list(ips), "'None' must be the first and only value"))
            continue
        found = _ip_errors(index("spec.clusterIPs", i), _s(ip))
        bad_ips = bad_ips or bool(found)
        errs += found
    if len(ips) > 2:
        errs.append(invalid("spec.clusterIPs", list(ips), "may only hold up to 2 values"))
    if bad_ips:
        return errs
    if len(ips) > 1 and len({is_valid_ipv4_address(_s(ip)) == [] for ip in ips[:2]}) != 2:
        errs.append(invalid("spec.clusterIPs", list(ips), "may specify no more than one IP for each IP family"))
    if not _is_headless(spec):
        for i, ip in enumerate(ips[: len(families)]):
            v6 = is_valid_ipv6_address(_s(ip)) == []
            if families[i] == "IPv4" and v6:
                errs.append(
                    invalid(
                        index("spec.clusterIPs", i), ip, f"expected an IPv4 value as indicated by `ipFamilies[{i}]`"
                    )
                )
            if families[i] == "IPv6" and not v6:
                errs.append(
                    invalid(
                        index("spec.clusterIPs", i), ip, f"expected an IPv6 value as indicated by `ipFamilies[{i}]`"
                    )
                )
    return errs


def _external_traffic_policy(spec: Mapping) -> Errors:
    errs: Errors = []
    policy = _s(spec.get("externalTrafficPolicy"))
    if not _externally_accessible(spec):
        if policy:
            errs.append(
                invalid("spec.externalTrafficPolicy", policy, "may only be set for externally-accessible services")
            )
    elif not policy:
        errs.append(required("spec.externalTrafficPolicy", ""))
    elif policy not in ("Cluster", "Local"):
        errs.append(not_supported("spec.externalTrafficPolicy", policy, ["Cluster", "Local"]))
    health = _i(spec.get("healthCheckNodePort"))
    if not (spec.get("type") == "LoadBalancer" and policy == "Local"):
        if health:
            errs.append(
                invalid(
                    "spec.healthCheckNodePort",
                    health,
                    "may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'",
                )
            )
    elif not health:
        errs.append(required("spec.healthCheckNodePort", ""))
    else:
        errs += _msgs("spec.healthCheckNodePort", health, is_valid_port_num(health))
    return errs


def validate_service_update(new: Mapping, old: Mapping) -> Errors:
    new_spec, old_spec = _d(new.get("spec")), _d(old.get("spec"))
    errs = validate_object_meta_update(_d(new.get("metadata")), _d(old.get("metadata")))
    if "ExternalName" not in (new_spec.get("type"), old_spec.get("type")) and not (
        _is_headless(new_spec) and _is_headless(old_spec)
    ):
        old_ips, new_ips = _l(old_spec.get("clusterIPs")), _l(new_spec.get("clusterIPs"))
        if len(old_ips) == len(new_ips):
            for i, ip in enumerate(old_ips):
                if ip != new_ips[i]:
                    errs.append(invalid(index("spec.clusterIPs", i), list(new_ips), "may not change once set"))
        elif len(old_ips) > len(new_ips):
            if not new_ips:
                errs.append(invalid("spec.clusterIPs[0]", list(new_ips), "primary clusterIP can not be unset"))
            elif old_ips[0] != new_ips[0]:
                errs.append(invalid("spec.clusterIPs[0]", list(new_ips), "may not change once set"))
            if len(new_ips) == 1 and new_spec.get("ipFamilyPolicy") != "SingleStack":
                errs.append(
                    invalid(
                        "spec.ipFamilyPolicy",
                        new_spec.get("ipFamilyPolicy"),
                        "must be set to 'SingleStack' when releasing the secondary clusterIP",
                    )
                )
        elif old_ips and new_ips[0] != old_ips[0]:
            errs.append(invalid("spec.clusterIPs[0]", list(new_ips), "may not change once set"))
    if (
        old_spec.get("type") == "LoadBalancer"
        and new_spec.get("type") == "LoadBalancer"
        and old_spec.get("loadBalancerClass") != new_spec.get("loadBalancerClass")
    ):
        errs.append(invalid("spec.loadBalancerClass", new_spec.get("loadBalancerClass"), "may not change once set"))
    both_need_health = all(
        s.get("type") == "LoadBalancer" and s.get("externalTrafficPolicy") == "Local" for s in (new_spec, old_spec)
    )
    if both_need_health and new_spec.get("healthCheckNodePort") != old_spec.get("healthCheckNodePort"):
        errs.append(forbidden("spec.healthCheckNodePort", IMMUTABLE))
    return errs + validate_service(new)


def validate_non_special_ip(ip: str, path: str) -> Errors:
    import ipaddress

    if is_valid_ip(ip):
        return [invalid(path, ip, "must be a valid IP address")]
    parsed = ipaddress.ip_address(".".join(str(int(p)) for p in ip.split(".")) if "." in ip and ":" not in ip else ip)
    errs: Errors = []
    if parsed.is_unspecified:
        errs.append(invalid(path, ip, f"may not be unspecified ({ip})"))
    if parsed.is_loopback:
        errs.append(invalid(path, ip, "may not be in the loopback range (127.0.0.0/8, ::1/128)"))
    if parsed.is_link_local and not parsed.is_multicast:
        errs.append(invalid(path, ip, "may not be in the link-local range (169.254.0.0/16, fe80::/10)"))
    link_local_multicast = (
        parsed.version == 4 and ipaddress.ip_address(parsed) in ipaddress.ip_network("224.0.0.0/24")
    ) or (parsed.version == 6 and parsed in ipaddress.ip_network("ff02::/16"))
    if link_local_multicast:
        errs.append(invalid(path, ip, "may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)"))
    return errs


# --- Endpoints, Namespace, Node --------------------------------------------------------------------------


def validate_endpoints(ep: Mapping) -> Errors:
    errs = validate_object_meta(_d(ep.get("metadata")), True, name_is_dns_subdomain)
    for i, subset in enumerate(_l(ep.get("subsets"))):
        subset, p = _d(subset), index("subsets", i)
        if not _l(subset.get("addresses")) and not _l(subset.get("notReadyAddresses")):
            errs.append(required(p, "must specify `addresses` or `notReadyAddresses`"))
        for fld in ("addresses", "notReadyAddresses"):
            for j, addr in enumerate(_l(subset.get(fld))):
                errs += _endpoint_address(_d(addr), index(child(p, fld), j))
        ports = _l(subset.get("ports"))
        for j, port in enumerate(ports):
            errs += _endpoint_port(_d(port), len(ports) > 1, index(child(p, "ports"), j))
    return errs


def _endpoint_address(addr: Mapping, path: str) -> Errors:
    ip = _s(addr.get("ip"))
    errs = _ip_errors(child(path, "ip"), ip)
    if _s(addr.get("hostname")):
        errs += _msgs(child(path, "hostname"), addr["hostname"], is_dns1123_label(addr["hostname"]))
    if addr.get("nodeName") is not None:
        errs += _msgs(child(path, "nodeName"), addr["nodeName"], name_is_dns_subdomain(_s(addr["nodeName"]), False))
    return errs + validate_non_special_ip(ip, child(path, "ip"))


def _endpoint_port(port: Mapping, require_name: bool, path: str) -> Errors:
    errs: Errors = []
    name = _s(port.get("name"))
    if require_name and not name:
        errs.append(required(child(path, "name"), ""))
    elif name:
        errs += _msgs(child(path, "name"), name, is_dns1123_label(name))
    errs += _msgs(child(path, "port"), _i(port.get("port")), is_valid_port_num(_i(port.get("port"))))
    protocol = _s(port.get("protocol"))
    if not protocol:
        errs.append(required(child(path, "protocol"), ""))
    elif protocol not in PROTOCOLS:
        errs.append(not_supported(child(path, "protocol"), protocol, PROTOCOLS))
    if port.get("appProtocol") is not None:
        errs += _msgs(child(path, "appProtocol"), port["appProtocol"], is_qualified_name(_s(port["appProtocol"])))
    return errs


def validate_namespace(ns: Mapping) -> Errors:
    errs = validate_object_meta(_d(ns.get("metadata")), False, name_is_dns_label)
    for f in _l(_d(ns.get("spec")).get("finalizers")):
        errs += _msgs("spec.finalizers", _s(f), is_qualified_name(_s(f)))
        errs += _kube_finalizer_name(_s(f), "spec.finalizers")
    return errs


def _node_taints(taints: list, path: str) -> Errors:
    errs: Errors = []
    seen: set[tuple[str, str]] = set()
    for i, taint in enumerate(taints):
        taint, p = _d(taint), index(path, i)
        errs += validate_label_name(_s(taint.get("key")), child(p, "key"))
        msgs = is_valid_label_value(_s(taint.get("value")))
        if msgs:
            errs.append(invalid(child(p, "value"), _s(taint.get("value")), ";".join(msgs)))
        effect = _s(taint.get("effect"))
        if not effect:
            errs.append(required(child(p, "effect"), ""))
        elif effect not in TAINT_EFFECTS:
            errs.append(not_supported(child(p, "effect"), effect, TAINT_EFFECTS))
        k = (effect, _s(taint.get("key")))
        if k in seen:
            dup = duplicate(p, go_struct(taint, "core.Taint"))
            errs.append(FieldError(dup.type, dup.field, dup.value, "taints must be unique by key and effect pair"))
            continue
        seen.add(k)
    return errs


def _node_resources(node: Mapping) -> Errors:
    errs: Errors = []
    status = _d(node.get("status"))
    for fld in ("capacity", "allocatable"):
        for name, value in _d(status.get(fld)).items():
            q = _quantity(value)
            if q is not None:
                errs += validate_resource_quantity_value(name, q, child("status", fld, name))
    return errs


def validate_node(node: Mapping) -> Errors:
    spec = _d(node.get("spec"))
    errs = validate_object_meta(_d(node.get("metadata")), False, name_is_dns_subdomain)
    if _l(spec.get("taints")):
        errs += _node_taints(_l(spec.get("taints")), "metadata.taints")
    errs += _node_resources(node)
    cidrs = _l(spec.get("podCIDRs"))
    for i, cidr in enumerate(cidrs):
        errs += _msgs(index("spec.podCIDRs", i), cidr, is_valid_cidr(_s(cidr)))
    if len(cidrs) > 1:
        families = {":" in _s(c) for c in cidrs}
        if len(families) != 2 or len(cidrs) > 2:
            errs.append(invalid("spec.podCIDRs", list(cidrs), "may specify no more than one CIDR for each IP family"))
        seen: set[str] = set()
        for i, cidr in enumerate(cidrs):
            if cidr in seen:
                errs.append(duplicate(index("spec.podCIDRs", i), cidr))
            seen.add(cidr)
    return errs


def validate_node_update(new: Mapping, old: Mapping) -> Errors:
    new_spec, old_spec = _d(new.get("spec")), _d(old.get("spec"))
    errs = validate_object_meta_update(_d(new.get("metadata")), _d(old.get("metadata")))
    errs += _node_resources(new)
    seen: list = []
    for i, address in enumerate(_l(_d(new.get("status")).get("addresses"))):
        if address in seen:
            errs.append(duplicate(index("status.addresses", i), go_struct(address, "core.NodeAddress")))
        seen.append(address)
    old_cidrs, new_cidrs = _l(old_spec.get("podCIDRs")), _l(new_spec.get("podCIDRs"))
    if old_cidrs and old_cidrs != new_cidrs:
        errs.append(forbidden("spec.podCIDRs", 'node updates may not change podCIDR except from "" to valid'))
    if _s(old_spec.get("providerID")) and old_spec.get("providerID") != new_spec.get("providerID"):
        errs.append(forbidden("spec.providerID", 'node updates may not change providerID except from "" to valid'))
    if _l(new_spec.get("taints")):
        errs += _node_taints(_l(new_spec.get("taints")), "metadata.taints")
    if new_spec.get("externalID") != old_spec.get("externalID"):
        errs.append(forbidden("spec.externalID", "may not be updated"))
    return errs


# --- ConfigMap, Secret, ServiceAccount -------------------------------------------------------------------

MAX_SECRET_SIZE = 1024 * 1024


def _decoded_len(value: Any) -> int:
    import base64

    try:
        return len(base64.b64decode(_s(value)))
    except ValueError:
        return len(_s(value))


def validate_config_map(cm: Mapping) -> Errors:
    errs = validate_object_meta(_d(cm.get("metadata")), True, name_is_dns_subdomain)
    data, binary = _d(cm.get("data")), _d(cm.get("binaryData"))
    total = 0
    for k, v in data.items():
        errs += _msgs(key("data", k), k, is_config_map_key(k))
        if k in binary:
            errs.append(invalid(key("data", k), k, "duplicate of key present in binaryData"))
        total += len(_s(v).encode())
    for k, v in binary.items():
        errs += _msgs(key("binaryData", k), k, is_config_map_key(k))
        total += _decoded_len(v)
    if total > MAX_SECRET_SIZE:
        errs.append(too_long("", "", MAX_SECRET_SIZE))
    return errs


def _secret_data(secret: Mapping) -> dict[str, int]:
    """Key -> decoded size, with stringData merged in as the v1 -> internal conversion does."""
    sizes = {k: _decoded_len(v) for k, v in _d(secret.get("data")).items()}
    sizes.update({k: len(_s(v).encode()) for k, v in _d(secret.get("stringData")).items()})
    return sizes


def _secret_bytes(secret: Mapping, k: str) -> bytes | None:
    import base64

    if k in _d(secret.get("stringData")):
        return _s(secret["stringData"][k]).encode()
    if k in _d(secret.get("data")):
        try:
            return base64.b64decode(_s(secret["data"][k]))
        except ValueError:
            return b""
    return None


def validate_secret(secret: Mapping) -> Errors:
    meta = _d(secret.get("metadata"))
    errs = validate_object_meta(meta, True, name_is_dns_subdomain)
    sizes = _secret_data(secret)
    for k in sizes:
        errs += _msgs(key("data", k), k, is_config_map_key(k))
    if sum(sizes.values()) > MAX_SECRET_SIZE:
        errs.append(too_long("data", "", MAX_SECRET_SIZE))
    kind = _s(secret.get("type"))
    if kind == "kubernetes.io/service-account-token":
        if not _s(_d(meta.get("annotations")).get("kubernetes.io/service-account.name")):
            errs.append(required(key("metadata.annotations", "kubernetes.io/service-account.name"), ""))
    elif kind in ("kubernetes.io/dockercfg", "kubernetes.io/dockerconfigjson"):
        data_key = ".dockercfg" if kind == "kubernetes.io/dockercfg" else ".dockerconfigjson"
        content = _secret_bytes(secret, data_key)
        if content is None:
            errs.append(required(key("data", data_key), ""))
        else:
            problem = _json_object_error(content)
            if problem:
                errs.append(invalid(key("data", data_key), "<secret contents redacted>", problem))
    elif kind == "kubernetes.io/basic-auth":
        if "username" not in sizes and "password" not in sizes:
            errs += [required(key("data", "username"), ""), required(key("data", "password"), "")]
    elif kind == "kubernetes.io/ssh-auth":
        if not sizes.get("ssh-privatekey"):
            errs.append(required(key("data", "ssh-privatekey"), ""))
    elif kind == "kubernetes.io/tls":
        for k in ("tls.crt", "tls.key"):
            if k not in sizes:
                errs.append(required(key("data", k), ""))
    return errs


def _json_object_error(content: bytes) -> str | None:
    """What Go's json.Unmarshal into map[string]interface{} says about `content` (None: it decodes)."""
    import json

    text = content.decode("utf-8", "replace")
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        if err.pos >= len(text.rstrip()):
            return "unexpected end of JSON input"
        return f"invalid character {_go_char(text[err.pos])} looking for beginning of value"
    if not isinstance(value, dict):
        return f"json: cannot unmarshal {json_kind(value)} into Go value of type map[string]interface {{}}"
    return None


def _go_char(ch: str) -> str:
    """strconv.QuoteRune-style, as encoding/json's quoteChar."""
    if ch == "'":
        return "'\\''"
    if ch == '"':
        return "'\"'"
    return "'" + go_quote(ch)[1:-1] + "'"


def _immutable_data(new: Mapping, old: Mapping, fields: tuple[str, ...]) -> Errors:
    if old.get("immutable") is not True:
        return []
    errs: Errors = []
    if new.get("immutable") is not True:
        errs.append(forbidden("immutable", "field is immutable when `immutable` is set"))
    for fld in fields:
        if _d(new.get(fld)) != _d(old.get(fld)):
            errs.append(forbidden(fld, "field is immutable when `immutable` is set"))
    return errs


# --- PersistentVolume, PersistentVolumeClaim ----------------------------------------------------------

ACCESS_MODES = ["ReadOnlyMany", "ReadWriteMany", "ReadWriteOnce", "ReadWriteOncePod"]
_PV_SOURCES = (
    "hostPath",
    "gcePersistentDisk",
    "awsElasticBlockStore",
    "glusterfs",
    "flocker",
    "nfs",
    "rbd",
    "quobyte",
    "cephfs",
    "iscsi",
    "cinder",
    "fc",
    "flexVolume",
    "azureFile",
    "vsphereVolume",
    "photonPersistentDisk",
    "portworxVolume",
    "azureDisk",
    "scaleIO",
    "local",
    "storageos",
    "csi",
)


def _access_modes(modes: list, path: str, detail: str = "") -> Errors:
    errs: Errors = []
    if not modes:
        errs.append(required(path, detail))
    rwop = other = False
    for mode in modes:
        if mode not in ACCESS_MODES:
            errs.append(not_supported(path, mode, ACCESS_MODES))
        if mode == "ReadWriteOncePod":
            rwop = True
        elif mode in ACCESS_MODES:
            other = True
    if rwop and other:
        errs.append(forbidden(path, "may not use ReadWriteOncePod with other access modes"))
    return errs


def validate_pv_spec(spec: Mapping, path: str) -> Errors:
    spec = _d(spec)
    errs = _access_modes(_l(spec.get("accessModes")), child(path, "accessModes"))
    capacity = _d(spec.get("capacity"))
    if not capacity:
        errs.append(required(child(path, "capacity"), ""))
    if "storage" not in capacity or len(capacity) > 1:
        errs.append(not_supported(child(path, "capacity"), go_struct(capacity, "core.ResourceList"), ["storage"]))
    for name, value in capacity.items():
        q = _quantity(value)
        if q is not None:
            p = key(child(path, "capacity"), name)
            if q.int_value_ceil() < 0:
                errs.append(invalid(p, q.int_value_ceil(), "must be a valid resource quantity"))
            if q.sign() <= 0:
                errs.append(invalid(p, str(q), NOT_POSITIVE))
    policy = _s(spec.get("persistentVolumeReclaimPolicy"))
    if policy and policy not in ("Delete", "Recycle", "Retain"):
        errs.append(
            not_supported(child(path, "persistentVolumeReclaimPolicy"), policy, ["Delete", "Recycle", "Retain"])
        )
    node_affinity = spec.get("nodeAffinity")
    if node_affinity is not None:
        if _d(node_affinity).get("required") is not None:
            errs += validate_node_selector(
                _d(node_affinity)["required"], False, child(path, "nodeAffinity", "required")
            )
        else:
            errs.append(required(child(path, "nodeAffinity", "required"), "must specify required node constraints"))
    count = 0
    for fld in _PV_SOURCES:
        if spec.get(fld) is None:
            continue
        if count and fld != "flexVolume":
            errs.append(
                forbidden(child(path, _VOLUME_FORBIDDEN_NAME.get(fld, fld)), "may not specify more than 1 volume type")
            )
            continue
        count += 1
        own = "persistentDisk" if fld == "gcePersistentDisk" else fld
        if fld == "local":
            local = _d(spec["local"])
            if not _s(local.get("path")):
                errs.append(required(child(path, "local", "path"), ""))
            else:
                errs += _no_backsteps(local["path"], child(path, "local", "path"))
            if node_affinity is None:
                errs.append(required(child(path, "nodeAffinity"), "Local volume requires node affinity"))
        elif fld == "csi":
            csi = _d(spec["csi"])
            errs += validate_csi_driver_name(_s(csi.get("driver")), child(path, "csi", "driver"))
            if not _s(csi.get("volumeHandle")):
                errs.append(required(child(path, "csi", "volumeHandle"), ""))
        else:
            errs += _volume_source_errors(own, spec[fld], child(path, own), "")
    if not count:
        errs.append(required(path, "must specify a volume type"))
    host_path = _s(_d(spec.get("hostPath")).get("path"))
    if spec.get("hostPath") is not None and host_path.rstrip("/") == "" and host_path and policy == "Recycle":
        errs.append(
            forbidden(child(path, "persistentVolumeReclaimPolicy"), "may not be 'recycle' for a hostPath mount of '/'")
        )
    if _s(spec.get("storageClassName")):
        errs += _msgs(
            child(path, "storageClassName"),
            spec["storageClassName"],
            name_is_dns_subdomain(spec["storageClassName"], False),
        )
    mode = spec.get("volumeMode")
    if mode is not None and mode not in ("Block", "Filesystem"):
        errs.append(not_supported(child(path, "volumeMode"), mode, ["Block", "Filesystem"]))
    vac = spec.get("volumeAttributesClassName")
    if vac is not None:
        if not vac:
            errs.append(required(child(path, "volumeAttributesClassName"), "an empty string is disallowed"))
        else:
            errs += _msgs(child(path, "volumeAttributesClassName"), vac, name_is_dns_subdomain(_s(vac), False))
        if spec.get("csi") is None:
            errs.append(required(child(path, "csi"), "has to be specified when using volumeAttributesClassName"))
    return errs


def validate_pvc_spec(spec: Mapping, path: str) -> Errors:
    spec = _d(spec)
    modes = _l(spec.get("accessModes"))
    errs: Errors = []
    if not modes:
        errs.append(required(child(path, "accessModes"), "at least 1 access mode is required"))
    if spec.get("selector") is not None:
        errs += validate_label_selector(spec["selector"], child(path, "selector"))
    errs += [e for e in _access_modes(modes, child(path, "accessModes")) if modes]
    storage = _d(_d(spec.get("resources")).get("requests")).get("storage")
    storage_path = key(child(path, "resources"), "storage")
    if storage is None:
        errs.append(required(storage_path, ""))
    else:
        q = _quantity(storage)
        if q is not None:
            if q.sign() <= 0:
                errs.append(invalid(storage_path, str(q), NOT_POSITIVE))
            else:
                errs += validate_resource_quantity_value("storage", q, storage_path)
    if _s(spec.get("storageClassName")):
        errs += _msgs(
            child(path, "storageClassName"),
            spec["storageClassName"],
            name_is_dns_subdomain(spec["storageClassName"], False),
        )
    mode = spec.get("volumeMode")
    if mode is not None and mode not in ("Block", "Filesystem"):
        errs.append(not_supported(child(path, "volumeMode"), mode, ["Block", "Filesystem"]))
    for fld in ("dataSource", "dataSourceRef"):
        ref = spec.get(fld)
        if ref is None:
            continue
        ref, p = _d(ref), child(path, fld)
        if not _s(ref.get("name")):
            errs.append(required(child(p, "name"), ""))
        if not _s(ref.get("kind")):
            errs.append(required(child(p, "kind"), ""))
        group = _s(ref.get("apiGroup"))
        if not group and ref.get("kind") != "PersistentVolumeClaim":
            errs.append(
                invalid(p, _s(ref.get("kind")), "must be 'PersistentVolumeClaim' when referencing the default apiGroup")
            )
        if group:
            errs += _msgs(child(p, "apiGroup"), group, is_dns1123_subdomain(group))
        if fld == "dataSourceRef" and _s(ref.get("namespace")):
            errs += _msgs(child(p, "namespace"), ref["namespace"], name_is_dns_label(ref["namespace"], False))
    return errs


@validates("io.k8s.api.core.v1.PersistentVolumeClaimSpec")
def _pvc_spec(value: Any, path: str, ctx: Context) -> Errors:
    return validate_pvc_spec(value, path)


def validate_pvc_update(new: Mapping, old: Mapping) -> Errors:
    new_spec, old_spec = _d(new.get("spec")), _d(old.get("spec"))
    errs = validate_object_meta_update(_d(new.get("metadata")), _d(old.get("metadata")))
    errs += validate_object_meta(_d(new.get("metadata")), True, name_is_dns_subdomain)
    errs += validate_pvc_spec(new_spec, "spec")
    new_cmp, old_cmp = copy.deepcopy(new_spec), copy.deepcopy(old_spec)
    if not _s(old_spec.get("volumeName")):
        old_cmp["volumeName"] = new_cmp.get("volumeName")
    annotation = "volume.beta.kubernetes.io/storage-class"
    old_ann, new_ann = _d(_d(old.get("metadata")).get("annotations")), _d(_d(new.get("metadata")).get("annotations"))
    if old_ann.get(annotation) != new_ann.get(annotation):
        errs.append(invalid(child("metadata", "annotations", annotation), _s(new_ann.get(annotation)), IMMUTABLE))
    if old_spec.get("storageClassName") is None and new_spec.get("storageClassName") is not None:
        if annotation not in old_ann or new_spec["storageClassName"] == old_ann[annotation]:
            new_cmp["storageClassName"] = old_cmp.get("storageClassName")
    if _d(new.get("status")).get("phase") == "Bound":
        requests = _d(_d(new_cmp.setdefault("resources", {})).setdefault("requests", {}))
        requests["storage"] = _d(_d(old_spec.get("resources")).get("requests")).get("storage")
        new_cmp["volumeAttributesClassName"] = old_cmp.get("volumeAttributesClassName")
    if _semantic(new_cmp) != _semantic(old_cmp):
        errs.append(
            forbidden(
                "spec",
                "spec is immutable after creation except resources.requests and "
                "volumeAttributesClassName for bound claims\n"
                + _spec_diff(old_cmp, new_cmp, "core.PersistentVolumeClaimSpec"),
            )
        )
    old_size = _quantity(_d(_d(old_spec.get("resources")).get("requests")).get("storage"))
    new_size = _quantity(_d(_d(new_spec.get("resources")).get("requests")).get("storage"))
    if old_size is not None and new_size is not None and new_size < old_size:
        status_size = _quantity(_d(_d(old.get("status")).get("capacity")).get("storage"))
        if status_size is None or new_size <= status_size:
            errs.append(forbidden("spec.resources.requests.storage", "field can not be less than status.capacity"))
    errs += immutable(new_spec.get("volumeMode"), old_spec.get("volumeMode"), "volumeMode")
    return errs


def validate_pv_update(new: Mapping, old: Mapping) -> Errors:
    new_spec, old_spec = _d(new.get("spec")), _d(old.get("spec"))
    errs = validate_object_meta(_d(new.get("metadata")), False, name_is_dns_subdomain)
    errs += validate_pv_spec(new_spec, "spec")
    new_source = {k: v for k, v in new_spec.items() if k in _PV_SOURCES}
    old_source = {k: v for k, v in old_spec.items() if k in _PV_SOURCES}
    if _semantic(new_source) != _semantic(old_source):
        errs.append(
            forbidden(
                "spec.persistentvolumesource",
                "spec.persistentvolumesource is immutable after creation\n"
                + _spec_diff(old_source, new_source, "core.PersistentVolumeSource"),
            )
        )
    errs += immutable(new_spec.get("volumeMode"), old_spec.get("volumeMode"), "volumeMode")
    if old_spec.get("nodeAffinity") is not None and _semantic(new_spec.get("nodeAffinity")) != _semantic(
        old_spec["nodeAffinity"]
    ):
        errs.append(
            invalid(
                "nodeAffinity",
                go_struct(new_spec.get("nodeAffinity"), "core.VolumeNodeAffinity"),
                IMMUTABLE + ", except for updating from beta label to GA",
            )
        )
    return errs


# --- ResourceQuota, LimitRange ------------------------------------------------------------------------

_QUOTA_SCOPES = (
    "Terminating",
    "NotTerminating",
    "BestEffort",
    "NotBestEffort",
    "PriorityClass",
    "CrossNamespacePodAffinity",
    "VolumeAttributesClass",
)


def validate_resource_quota_spec(spec: Mapping, path: str) -> Errors:
    spec = _d(spec)
    errs: Errors = []
    for name, value in _d(spec.get("hard")).items():
        p = key(child(path, "hard"), name)
        errs += validate_quota_resource_name(name, p)
        q = _quantity(value)
        if q is not None:
            errs += validate_resource_quantity_value(name, q, p)
    scopes = _l(spec.get("scopes"))
    for scope in scopes:
        if scope not in _QUOTA_SCOPES:
            errs.append(invalid(child(path, "scopes"), list(scopes), "unsupported scope"))
    if {"BestEffort", "NotBestEffort"} <= set(scopes) or {"Terminating", "NotTerminating"} <= set(scopes):
        errs.append(invalid(child(path, "scopes"), list(scopes), "conflicting scopes"))
    selector = spec.get("scopeSelector")
    if selector is not None:
        sp = child(path, "scopeSelector", "matchExpressions")
        for req in _l(_d(selector).get("matchExpressions")):
            req = _d(req)
            scope, op = _s(req.get("scopeName")), _s(req.get("operator"))
            if scope not in _QUOTA_SCOPES:
                errs.append(invalid(child(sp, "scopeName"), scope, "unsupported scope"))
            if (
                scope in ("BestEffort", "NotBestEffort", "Terminating", "NotTerminating", "CrossNamespacePodAffinity")
                and op != "Exists"
            ):
                errs.append(
                    invalid(
                        child(sp, "operator"),
                        op,
                        "must be 'Exists' when scope is any of ResourceQuotaScopeTerminating, "
                        "ResourceQuotaScopeNotTerminating, ResourceQuotaScopeBestEffort, "
                        "ResourceQuotaScopeNotBestEffort or ResourceQuotaScopeCrossNamespacePodAffinity",
                    )
                )
            if op in ("In", "NotIn"):
                if not _l(req.get("values")):
                    errs.append(
                        required(
                            child(sp, "values"),
                            "must be at least one value when `operator` is 'In' or 'NotIn' for scope selector",
                        )
                    )
            elif op in ("Exists", "DoesNotExist"):
                if _l(req.get("values")):
                    errs.append(
                        invalid(
                            child(sp, "values"),
                            _l(req.get("values")),
                            "must be no value when `operator` is 'Exist' or 'DoesNotExist' for scope selector",
                        )
                    )
            else:
                errs.append(invalid(child(sp, "operator"), op, "not a valid selector operator"))
    return errs


def validate_limit_range(lr: Mapping) -> Errors:
    errs = validate_object_meta(_d(lr.get("metadata")), True, name_is_dns_subdomain)
    types: set[str] = set()
    for i, limit in enumerate(_l(_d(lr.get("spec")).get("limits"))):
        limit, p = _d(limit), index("spec.limits", i)
        kind = _s(limit.get("type"))
        found = _msgs(child(p, "type"), kind, is_qualified_name(kind))
        if not found and "/" not in kind and kind not in ("Pod", "Container", "PersistentVolumeClaim"):
            found = [invalid(child(p, "type"), kind, "must be a standard limit type or fully qualified")]
        errs += found
        if kind in types:
            errs.append(duplicate(child(p, "type"), kind))
        types.add(kind)

        def name_check(name: str, np: str, kind: str = kind) -> Errors:
            if kind in ("Pod", "Container"):
                return validate_container_resource_name(name, np)
            return validate_resource_name(name, np)

        values: dict[str, dict[str, Quantity]] = {}
        for fld in ("max", "min", "default", "defaultRequest", "maxLimitRequestRatio"):
            if kind == "Pod" and fld in ("default", "defaultRequest"):
                if _d(limit.get(fld)):
                    errs.append(forbidden(child(p, fld), "may not be specified when `type` is 'Pod'"))
                continue
            values[fld] = {}
            for name, value in _d(limit.get(fld)).items():
                errs += name_check(name, key(child(p, fld), name))
                q = _quantity(value)
                if q is not None:
                    values[fld][name] = q
            if fld == "min" and kind == "PersistentVolumeClaim":
                if "storage" not in values["min"] and "storage" not in values["max"]:
                    errs.append(
                        required(
                            child(p, "limits"),
                            "either minimum or maximum storage value is required, but neither was provided",
                        )
                    )
        names = {n for v in values.values() for n in v}
        for name in names:
            mn, mx = values["min"].get(name), values["max"].get(name)
            df, dr = values.get("default", {}).get(name), values.get("defaultRequest", {}).get(name)
            ratio = values["maxLimitRequestRatio"].get(name)
            if mn is not None and mx is not None and mn > mx:
                errs.append(invalid(key(child(p, "min"), name), mn, f"min value {mn} is greater than max value {mx}"))
            if dr is not None and mn is not None and mn > dr:
                errs.append(
                    invalid(
                        key(child(p, "defaultRequest"), name),
                        dr,
                        f"min value {mn} is greater than default request value {dr}",
                    )
                )
            if dr is not None and mx is not None and dr > mx:
                errs.append(
                    invalid(
                        key(child(p, "defaultRequest"), name),
                        dr,
                        f"default request value {dr} is greater than max value {mx}",
                    )
                )
            if dr is not None and df is not None and dr > df:
                errs.append(
                    invalid(
                        key(child(p, "defaultRequest"), name),
                        dr,
                        f"default request value {dr} is greater than default limit value {df}",
                    )
                )
            if df is not None and mn is not None and mn > df:
                errs.append(
                    invalid(key(child(p, "default"), name), mn, f"min value {mn} is greater than default value {df}")
                )
            if df is not None and mx is not None and df > mx:
                errs.append(
                    invalid(key(child(p, "default"), name), mx, f"default value {df} is greater than max value {mx}")
                )
            if ratio is not None and ratio < Quantity(1):
                errs.append(
                    invalid(key(child(p, "maxLimitRequestRatio"), name), ratio, f"ratio {ratio} is less than 1")
                )
            if ratio is not None and mn is not None and mx is not None and not mn.is_zero():
                limit_ratio = float(mx.value / mn.value)
                if float(ratio.value) > limit_ratio:
                    errs.append(
                        invalid(
                            key(child(p, "maxLimitRequestRatio"), name),
                            ratio,
                            f"ratio {ratio} is greater than max/min = {limit_ratio:f}",
                        )
                    )
            if not is_overcommit_allowed(name) and df is not None and dr is not None and df != dr:
                errs.append(
                    invalid(
                        key(child(p, "defaultRequest"), name),
                        dr,
                        f"default value {df} must equal to defaultRequest value {dr} in {name}",
                    )
                )
    return errs


# --- Events, Binding, ControllerRevision --------------------------------------------------------------

_CLUSTER_SCOPED_KINDS = {(r.group, r.kind) for r in kinds.RESOURCES if not r.namespaced}
_KNOWN_KINDS = {(r.group, r.kind) for r in kinds.RESOURCES}


def validate_event(event: Mapping, request_version: str = "v1") -> Errors:
    """legacyValidateEvent (core/v1) plus, for events.k8s.io/v1, the stricter checks."""
    meta, involved = _d(event.get("metadata")), _d(event.get("involvedObject"))
    namespace, involved_ns = _s(meta.get("namespace")), _s(involved.get("namespace"))
    reporting = "reportingComponent" if request_version == "v1" else "reportingController"
    errs: Errors = []
    if not event.get("eventTime"):
        if not involved_ns:
            if namespace not in ("", "default"):
                errs.append(invalid("involvedObject.namespace", involved_ns, "does not match event.namespace"))
        elif namespace != involved_ns:
            errs.append(invalid("involvedObject.namespace", involved_ns, "does not match event.namespace"))
    else:
        if not involved_ns and namespace not in ("default", "kube-system"):
            errs.append(invalid("involvedObject.namespace", involved_ns, "does not match event.namespace"))
        controller = _s(event.get("reportingComponent"))
        if not controller:
            errs.append(required(reporting, ""))
        errs += _msgs(reporting, controller, is_qualified_name(controller))
        instance = _s(event.get("reportingInstance"))
        if not instance:
            errs.append(required("reportingInstance", ""))
        if len(instance) > 128:
            errs.append(invalid("reportingInstance", "", "can have at most 128 characters"))
        for fld, limit in (("action", 128), ("reason", 128)):
            if not _s(event.get(fld)):
                errs.append(required(fld, ""))
            if len(_s(event.get(fld))) > limit:
                errs.append(invalid(fld, "", f"can have at most {limit} characters"))
        if len(_s(event.get("message"))) > 1024:
            errs.append(invalid("message", "", "can have at most 1024 characters"))
    errs += _msgs("namespace", namespace, is_dns1123_subdomain(namespace))
    if request_version == "events.k8s.io/v1":
        errs += validate_object_meta(meta, True, name_is_dns_subdomain)
        if not event.get("eventTime"):
            errs.append(required("eventTime", ""))
        if event.get("type") not in ("Normal", "Warning"):
            errs.append(invalid("type", "", f"has invalid value: {_s(event.get('type'))}"))
        if event.get("firstTimestamp"):
            errs.append(invalid("deprecatedFirstTimestamp", "", "needs to be unset"))
        if event.get("lastTimestamp"):
            errs.append(invalid("deprecatedLastTimestamp", "", "needs to be unset"))
        if _i(event.get("count")):
            errs.append(invalid("deprecatedCount", "", "needs to be unset"))
        if _d(event.get("source")):
            errs.append(invalid("deprecatedSource", "", "needs to be unset"))
    return errs


def validate_binding(binding: Mapping) -> Errors:
    target = _d(binding.get("target"))
    errs: Errors = []
    if _s(target.get("kind")) and target["kind"] != "Node":
        errs.append(not_supported("target.kind", target["kind"], ["Node", "<empty>"]))
    if not _s(target.get("name")):
        errs.append(required("target.name", ""))
    return errs


# ================================================================================================
# apps/v1
# ================================================================================================


def _int_or_percent(value: Any) -> tuple[int, bool]:
    """(value, is a valid percent string) of an IntOrString, as getIntOrPercentValue reads it."""
    if isinstance(value, str):
        if is_percent(value):
            return 0, False
        return int(value[:-1]), True
    return _i(value), False


def validate_positive_int_or_percent(value: Any, path: str) -> Errors:
    if isinstance(value, str):
        return _msgs(path, go_int_or_string(value), is_percent(value))
    return nonnegative(value, path)


def _not_more_than_100_percent(value: Any, path: str) -> Errors:
    number, is_pct = _int_or_percent(value)
    if is_pct and number > 100:
        return [invalid(path, go_int_or_string(value), "must not be greater than 100%")]
    return []


def _workload_selector(spec: Mapping, path: str, what: str) -> tuple[Any, Errors]:
    """Selector required and non-empty (Deployment, ReplicaSet, StatefulSet): (parsed selector, errors)."""
    errs: Errors = []
    ls = spec.get("selector")
    if ls is None:
        errs.append(required(child(path, "selector"), ""))
    else:
        errs += validate_label_selector(_d(ls), child(path, "selector"))
        if not _d(ls).get("matchLabels") and not _l(_d(ls).get("matchExpressions")):
            errs.append(
                invalid(child(path, "selector"), go_label_selector(_d(ls)), f"empty selector is invalid for {what}")
            )
    try:
        return selector_from_label_selector(None if ls is None else _d(ls)), errs
    except SelectorError:
        return None, errs


def _template_matches(selector: Any, template: Mapping, path: str) -> Errors:
    labels = _d(template.get("metadata")).get("labels")
    if selector is not None and not selector.empty and not selector.matches(_d(labels)):
        return [
            invalid(child(path, "metadata", "labels"), go_map(labels), "`selector` does not match template `labels`")
        ]
    return []


def _always_restart_template(template: Mapping, path: str, kind: str) -> Errors:
    spec = _d(template.get("spec"))
    errs: Errors = []
    if spec.get("restartPolicy") != "Always":
        errs.append(not_supported(child(path, "spec", "restartPolicy"), _s(spec.get("restartPolicy")), ["Always"]))
    if spec.get("activeDeadlineSeconds") is not None:
        errs.append(
            forbidden(child(path, "spec", "activeDeadlineSeconds"), f"activeDeadlineSeconds in {kind} is not Supported")
        )
    return errs


def _replica_set_template(template: Any, selector: Any, path: str, kind: str) -> Errors:
    if template is None:
        return [required(path, "")]
    template = _d(template)
    errs = _template_matches(selector, template, path)
    errs += validate_pod_template_spec(template, path)
    return errs + _always_restart_template(template, path, kind)


def validate_deployment_spec(spec: Mapping, path: str = "spec") -> Errors:
    spec = _d(spec)
    errs = nonnegative(spec.get("replicas"), child(path, "replicas"))
    selector, found = _workload_selector(spec, path, "deployment")
    errs += found
    if selector is None:
        errs.append(invalid(child(path, "selector"), go_label_selector(spec.get("selector")), "invalid label selector"))
    else:
        errs += _replica_set_template(spec.get("template"), selector, child(path, "template"), "ReplicaSet")
    errs += _deployment_strategy(_d(spec.get("strategy")), child(path, "strategy"))
    errs += nonnegative(spec.get("minReadySeconds"), child(path, "minReadySeconds"))
    if spec.get("revisionHistoryLimit") is not None:
        errs += nonnegative(spec["revisionHistoryLimit"], child(path, "revisionHistoryLimit"))
    deadline = spec.get("progressDeadlineSeconds")
    if deadline is not None:
        errs += nonnegative(deadline, child(path, "progressDeadlineSeconds"))
        if _i(deadline) <= _i(spec.get("minReadySeconds")):
            errs.append(
                invalid(child(path, "progressDeadlineSeconds"), _i(deadline), "must be greater than minReadySeconds")
            )
    return errs


def _deployment_strategy(strategy: Mapping, path: str) -> Errors:
    kind = strategy.get("type")
    if kind == "Recreate":
        if strategy.get("rollingUpdate") is not None:
            return [forbidden(child(path, "rollingUpdate"), "may not be specified when strategy `type` is 'Recreate'")]
        return []
    if kind == "RollingUpdate":
        rolling = strategy.get("rollingUpdate")
        if rolling is None:
            return [required(child(path, "rollingUpdate"), "this should be defaulted and never be nil")]
        rolling, rp = _d(rolling), child(path, "rollingUpdate")
        unavailable, surge = rolling.get("maxUnavailable"), rolling.get("maxSurge")
        errs = validate_positive_int_or_percent(unavailable, child(rp, "maxUnavailable"))
        errs += validate_positive_int_or_percent(surge, child(rp, "maxSurge"))
        if _int_or_percent(unavailable)[0] == 0 and _int_or_percent(surge)[0] == 0:
            errs.append(
                invalid(child(rp, "maxUnavailable"), go_int_or_string(unavailable), "may not be 0 when `maxSurge` is 0")
            )
        return errs + _not_more_than_100_percent(unavailable, child(rp, "maxUnavailable"))
    return [not_supported(path, go_struct(strategy, "apps.DeploymentStrategy"), ["Recreate", "RollingUpdate"])]


def validate_replica_set_spec(spec: Mapping, path: str = "spec") -> Errors:
    spec = _d(spec)
    errs = nonnegative(spec.get("replicas"), child(path, "replicas"))
    errs += nonnegative(spec.get("minReadySeconds"), child(path, "minReadySeconds"))
    selector, found = _workload_selector(spec, path, "deployment")
    errs += found
    if selector is None:
        return errs + [
            invalid(child(path, "selector"), go_label_selector(spec.get("selector")), "invalid label selector")
        ]
    return errs + _replica_set_template(spec.get("template"), selector, child(path, "template"), "ReplicaSet")


def validate_daemon_set_spec(spec: Mapping, path: str = "spec") -> Errors:
    spec = _d(spec)
    ls = spec.get("selector")
    errs = validate_label_selector(None if ls is None else _d(ls), child(path, "selector"))
    template = _d(spec.get("template"))
    try:
        selector = selector_from_label_selector(None if ls is None else _d(ls))
    except SelectorError:
        selector = None
    labels = _d(template.get("metadata")).get("labels")
    if selector is not None and not selector.matches(_d(labels)):
        errs.append(
            invalid(
                child(path, "template", "metadata", "labels"),
                go_map(labels),
                "`selector` does not match template `labels`",
            )
        )
    if ls is not None and not _d(ls).get("matchLabels") and not _l(_d(ls).get("matchExpressions")):
        errs.append(
            invalid(child(path, "selector"), go_label_selector(_d(ls)), "empty selector is invalid for daemonset")
        )
    errs += validate_pod_template_spec(template, child(path, "template"))
    errs += _always_restart_template(template, child(path, "template"), "DaemonSet")
    errs += nonnegative(spec.get("minReadySeconds"), child(path, "minReadySeconds"))
    errs += nonnegative(spec.get("templateGeneration"), child(path, "templateGeneration"))
    errs += _daemon_set_strategy(_d(spec.get("updateStrategy")), child(path, "updateStrategy"))
    if spec.get("revisionHistoryLimit") is not None:
        errs += nonnegative(spec["revisionHistoryLimit"], child(path, "revisionHistoryLimit"))
    return errs


def _daemon_set_strategy(strategy: Mapping, path: str) -> Errors:
    kind = strategy.get("type")
    if kind == "OnDelete":
        return []
    if kind != "RollingUpdate":
        return [not_supported(path, go_struct(strategy, "apps.DaemonSetUpdateStrategy"), ["RollingUpdate", "OnDelete"])]
    rolling = strategy.get("rollingUpdate")
    if rolling is None:
        return [required(child(path, "rollingUpdate"), "")]
    rolling, rp = _d(rolling), child(path, "rollingUpdate")
    unavailable, surge = rolling.get("maxUnavailable"), rolling.get("maxSurge")
    errs = validate_positive_int_or_percent(unavailable, child(rp, "maxUnavailable"))
    errs += validate_positive_int_or_percent(surge, child(rp, "maxSurge"))
    errs += _not_more_than_100_percent(unavailable, child(rp, "maxUnavailable"))
    errs += _not_more_than_100_percent(surge, child(rp, "maxSurge"))
    has_unavailable, has_surge = _int_or_percent(unavailable)[0] != 0, _int_or_percent(surge)[0] != 0
    if has_unavailable and has_surge:
        errs.append(
            invalid(child(rp, "maxSurge"), go_int_or_string(surge), "may not be set when maxUnavailable is non-zero")
        )
    elif not has_unavailable and not has_surge:
        errs.append(required(child(rp, "maxUnavailable"), "cannot be 0 when maxSurge is 0"))
    return errs


def validate_stateful_set_spec(spec: Mapping, path: str = "spec") -> Errors:
    spec = _d(spec)
    errs: Errors = []
    policy = _s(spec.get("podManagementPolicy"))
    if not policy:
        errs.append(required(child(path, "podManagementPolicy"), ""))
    elif policy not in ("OrderedReady", "Parallel"):
        errs.append(invalid(child(path, "podManagementPolicy"), policy, "must be 'OrderedReady' or 'Parallel'"))
    strategy = _d(spec.get("updateStrategy"))
    kind = _s(strategy.get("type"))
    if not kind:
        errs.append(required(child(path, "updateStrategy"), ""))
    elif kind == "OnDelete":
        if strategy.get("rollingUpdate") is not None:
            errs.append(
                invalid(
                    child(path, "updateStrategy", "rollingUpdate"),
                    go_struct(strategy["rollingUpdate"], "apps.RollingUpdateStatefulSetStrategy"),
                    "only allowed for updateStrategy 'RollingUpdate'",
                )
            )
    elif kind == "RollingUpdate":
        rolling = strategy.get("rollingUpdate")
        if rolling is not None:
            rp = child(path, "updateStrategy", "rollingUpdate")
            errs += nonnegative(_d(rolling).get("partition"), child(rp, "partition"))
            unavailable = _d(rolling).get("maxUnavailable")
            if unavailable is not None:
                errs += validate_positive_int_or_percent(unavailable, child(rp, "maxUnavailable"))
                if _int_or_percent(unavailable)[0] == 0:
                    errs.append(invalid(child(rp, "maxUnavailable"), go_int_or_string(unavailable), "cannot be 0"))
                errs += _not_more_than_100_percent(unavailable, child(rp, "maxUnavailable"))
    else:
        errs.append(
            invalid(
                child(path, "updateStrategy"),
                go_struct(strategy, "apps.StatefulSetUpdateStrategy"),
                "must be 'RollingUpdate' or 'OnDelete'",
            )
        )
    retention = spec.get("persistentVolumeClaimRetentionPolicy")
    if retention is not None:
        for fld in ("whenDeleted", "whenScaled"):
            value = _s(_d(retention).get(fld))
            if value not in ("Retain", "Delete"):
                errs.append(
                    not_supported(child(path, "persistentVolumeClaimRetentionPolicy", fld), value, ["Retain", "Delete"])
                )
    errs += nonnegative(spec.get("replicas"), child(path, "replicas"))
    errs += nonnegative(spec.get("minReadySeconds"), child(path, "minReadySeconds"))
    if spec.get("ordinals") is not None:
        errs += nonnegative(_d(spec["ordinals"]).get("start"), child(path, "ordinals.start"))
    selector, found = _workload_selector(spec, path, "statefulset")
    errs += found
    template = _d(spec.get("template"))
    tpath = child(path, "template")
    if selector is None:
        errs.append(invalid(child(path, "selector"), go_label_selector(spec.get("selector")), ""))
    else:
        # Upstream validates only the template's metadata here, not its pod spec.
        meta = _d(template.get("metadata"))
        errs += _template_matches(selector, template, tpath)
        errs += validate_labels(meta.get("labels"), child(tpath, "labels"))
        errs += validate_annotations(meta.get("annotations"), child(tpath, "annotations"))
        errs += validate_pod_specific_annotations(
            meta.get("annotations"), _d(template.get("spec")), child(tpath, "annotations")
        )
    tspec = _d(template.get("spec"))
    if tspec.get("restartPolicy") != "Always":
        errs.append(not_supported(child(tpath, "spec", "restartPolicy"), _s(tspec.get("restartPolicy")), ["Always"]))
    if tspec.get("activeDeadlineSeconds") is not None:
        errs.append(
            forbidden(
                child(tpath, "spec", "activeDeadlineSeconds"), "activeDeadlineSeconds in StatefulSet is not Supported"
            )
        )
    return errs


_STATEFUL_SET_MUTABLE = (
    "replicas",
    "ordinals",
    "template",
    "updateStrategy",
    "persistentVolumeClaimRetentionPolicy",
    "minReadySeconds",
)


def validate_stateful_set_update(new: Mapping, old: Mapping) -> Errors:
    errs = validate_object_meta_update(_d(new.get("metadata")), _d(old.get("metadata")))
    errs += validate_stateful_set_spec(_d(new.get("spec")), "spec")
    rest_new = {k: v for k, v in _d(new.get("spec")).items() if k not in _STATEFUL_SET_MUTABLE}
    rest_old = {k: v for k, v in _d(old.get("spec")).items() if k not in _STATEFUL_SET_MUTABLE}
    if _semantic(rest_new) != _semantic(rest_old):
        errs.append(
            forbidden(
                "spec",
                "updates to statefulset spec for fields other than 'replicas', 'ordinals', "
                "'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and "
                "'minReadySeconds' are forbidden",
            )
        )
    return errs


def _selector_immutable(new: Mapping, old: Mapping) -> Errors:
    new_sel, old_sel = _d(new.get("spec")).get("selector"), _d(old.get("spec")).get("selector")
    if _semantic(new_sel) != _semantic(old_sel):
        return [invalid("spec.selector", go_label_selector(new_sel), IMMUTABLE)]
    return []


def validate_controller_revision(rev: Mapping) -> Errors:
    errs = validate_object_meta(_d(rev.get("metadata")), True, name_is_dns_subdomain)
    if rev.get("data") is None:
        errs.append(required("data", "data is mandatory"))
    return errs + nonnegative(rev.get("revision"), "revision")


# ================================================================================================
# batch/v1
# ================================================================================================

JOB_NAME_LABEL, LEGACY_JOB_NAME_LABEL = "batch.kubernetes.io/job-name", "job-name"
CONTROLLER_UID_LABEL, LEGACY_CONTROLLER_UID_LABEL = "batch.kubernetes.io/controller-uid", "controller-uid"


def _has_label(meta: Mapping, path: str, name: str, expected: str) -> Errors:
    labels = _d(meta.get("labels"))
    if name not in labels:
        return [required(key(child(path, "labels"), name), f"must be '{expected}'")]
    if labels[name] != expected:
        return [invalid(key(child(path, "labels"), name), go_map(labels), f"must be '{expected}'")]
    return []


def _generated_selector(job: Mapping, require_prefixed: bool) -> Errors:
    spec, meta = _d(job.get("spec")), _d(job.get("metadata"))
    if spec.get("manualSelector") is True or spec.get("selector") is None:
        return []
    errs: Errors = []
    uid, name = _s(meta.get("uid")), _s(meta.get("name"))
    if not uid:
        errs.append(required("metadata.uid", ""))
    template_meta, tpath = _d(_d(spec.get("template")).get("metadata")), "spec.template.metadata"
    errs += _has_label(template_meta, tpath, LEGACY_CONTROLLER_UID_LABEL, uid)
    errs += _has_label(template_meta, tpath, LEGACY_JOB_NAME_LABEL, name)
    expected = {LEGACY_CONTROLLER_UID_LABEL: uid, LEGACY_JOB_NAME_LABEL: name}
    if require_prefixed:
        errs += _has_label(template_meta, tpath, CONTROLLER_UID_LABEL, uid)
        errs += _has_label(template_meta, tpath, JOB_NAME_LABEL, name)
        expected.update({CONTROLLER_UID_LABEL: uid, JOB_NAME_LABEL: name})
    try:
        selector = selector_from_label_selector(_d(spec["selector"]))
    except SelectorError:
        return errs
    if not selector.matches(expected):
        errs.append(invalid("spec.selector", go_label_selector(_d(spec["selector"])), "`selector` not auto-generated"))
    return errs


def _job_spec_body(spec: Mapping, path: str) -> Errors:
    """validateJobSpec: everything but the selector."""
    spec = _d(spec)
    errs: Errors = []
    for fld in (
        "parallelism",
        "completions",
        "activeDeadlineSeconds",
        "backoffLimit",
        "ttlSecondsAfterFinished",
        "backoffLimitPerIndex",
    ):
        if spec.get(fld) is not None:
            errs += nonnegative(spec[fld], child(path, fld))
    mode = spec.get("completionMode")
    indexed = mode == "Indexed"
    if spec.get("maxFailedIndexes") is not None:
        errs += nonnegative(spec["maxFailedIndexes"], child(path, "maxFailedIndexes"))
        if spec.get("backoffLimitPerIndex") is None:
            errs.append(required(child(path, "backoffLimitPerIndex"), "when maxFailedIndexes is specified"))
    if spec.get("managedBy") is not None:
        managed = _s(spec["managedBy"])
        if not re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?/\S+", managed):
            errs.append(
                invalid(child(path, "managedBy"), managed, 'must be a domain-prefixed path (such as "acme.io/foo")')
            )
        if len(managed) > 63:
            errs.append(too_long_max_length(child(path, "managedBy"), managed, 63))
    if mode is not None:
        if mode not in ("NonIndexed", "Indexed"):
            errs.append(not_supported(child(path, "completionMode"), mode, ["NonIndexed", "Indexed"]))
        if indexed:
            if spec.get("completions") is None:
                errs.append(required(child(path, "completions"), "when completion mode is Indexed"))
            if _i(spec.get("parallelism")) > 100000:
                errs.append(
                    invalid(
                        child(path, "parallelism"),
                        _i(spec["parallelism"]),
                        "must be less than or equal to 100000 when completion mode is Indexed",
                    )
                )
            if (
                spec.get("completions") is not None
                and spec.get("maxFailedIndexes") is not None
                and _i(spec["maxFailedIndexes"]) > _i(spec["completions"])
            ):
                errs.append(
                    invalid(
                        child(path, "maxFailedIndexes"),
                        _i(spec["maxFailedIndexes"]),
                        "must be less than or equal to completions",
                    )
                )
    if not indexed:
        for fld in ("backoffLimitPerIndex", "maxFailedIndexes"):
            if spec.get(fld) is not None:
                errs.append(invalid(child(path, fld), _i(spec[fld]), "requires indexed completion mode"))
    if spec.get("successPolicy") is not None and not indexed:
        errs.append(
            invalid(
                child(path, "successPolicy"),
                go_struct(spec["successPolicy"], "batch.SuccessPolicy"),
                "requires indexed completion mode",
            )
        )
    replacement = spec.get("podReplacementPolicy")
    if replacement is not None:
        if spec.get("podFailurePolicy") is not None:
            if replacement != "Failed":
                errs.append(not_supported(child(path, "podReplacementPolicy"), replacement, ["Failed"]))
        elif replacement not in ("Failed", "TerminatingOrFailed"):
            errs.append(
                not_supported(child(path, "podReplacementPolicy"), replacement, ["Failed", "TerminatingOrFailed"])
            )
    template = _d(spec.get("template"))
    errs += validate_pod_template_spec(template, child(path, "template"))
    restart = _s(_d(template.get("spec")).get("restartPolicy"))
    rp = child(path, "template", "spec", "restartPolicy")
    if restart in ("Always", ""):
        errs.append(required(rp, 'valid values: "OnFailure", "Never"'))
    elif restart not in ("OnFailure", "Never"):
        errs.append(not_supported(rp, restart, ["OnFailure", "Never"]))
    elif spec.get("podFailurePolicy") is not None and restart != "Never":
        errs.append(invalid(rp, restart, 'only "Never" is supported when podFailurePolicy is specified'))
    return errs


def validate_job_spec(spec: Mapping, path: str = "spec") -> Errors:
    spec = _d(spec)
    errs = _job_spec_body(spec, path)
    ls = spec.get("selector")
    if ls is None:
        errs.append(required(child(path, "selector"), ""))
    else:
        errs += validate_label_selector(_d(ls), child(path, "selector"))
    try:
        selector = selector_from_label_selector(None if ls is None else _d(ls))
    except SelectorError:
        return errs
    labels = _d(_d(spec.get("template")).get("metadata")).get("labels")
    if not selector.matches(_d(labels)):
        errs.append(
            invalid(
                child(path, "template", "metadata", "labels"),
                go_map(labels),
                "`selector` does not match template `labels`",
            )
        )
    return errs


def validate_job(job: Mapping, require_prefixed: bool = True) -> Errors:
    meta, spec = _d(job.get("metadata")), _d(job.get("spec"))
    errs = validate_object_meta(meta, True, name_is_dns_subdomain)
    errs += _generated_selector(job, require_prefixed)
    errs += validate_job_spec(spec)
    completions = spec.get("completions")
    if spec.get("completionMode") == "Indexed" and completions is not None and _i(completions) > 0:
        hostname = f"{_s(meta.get('name'))}-{_i(completions) - 1}"
        if is_dns1123_label(hostname):
            errs.append(
                invalid(
                    "metadata.name",
                    _s(meta.get("name")),
                    f"will not able to create pod with invalid DNS label: {hostname}",
                )
            )
    return errs


def validate_job_update(new: Mapping, old: Mapping) -> Errors:
    old_labels = _d(_d(_d(_d(old.get("spec")).get("template")).get("metadata")).get("labels"))
    require_prefixed = JOB_NAME_LABEL in old_labels and CONTROLLER_UID_LABEL in old_labels
    new_spec, old_spec = _d(new.get("spec")), _d(old.get("spec"))
    errs = validate_job(new, require_prefixed)
    errs += validate_object_meta_update(_d(new.get("metadata")), _d(old.get("metadata")))
    errs += validate_job_spec(new_spec)
    errs += immutable(new_spec.get("completions"), old_spec.get("completions"), "spec.completions")
    errs += immutable(
        new_spec.get("selector"), old_spec.get("selector"), "spec.selector", go_label_selector(new_spec.get("selector"))
    )
    new_template, old_template = _d(new_spec.get("template")), copy.deepcopy(_d(old_spec.get("template")))
    if old_spec.get("suspend") is True and not _d(old.get("status")).get("startTime"):
        # Suspended jobs that never started may change their scheduling directives.
        ots, nts = old_template.setdefault("spec", {}), _d(new_template.get("spec"))
        for fld in ("nodeSelector", "tolerations", "schedulingGates"):
            ots[fld] = nts.get(fld)
        node_affinity = _d(nts.get("affinity")).get("nodeAffinity")
        ots.setdefault("affinity", {})["nodeAffinity"] = node_affinity
        old_template.setdefault("metadata", {}).update(
            {k: _d(new_template.get("metadata")).get(k) for k in ("labels", "annotations")}
        )
    if _semantic(new_template) != _semantic(old_template):
        errs.append(invalid("spec.template", go_struct(new_template, "core.PodTemplateSpec"), IMMUTABLE))
    for fld in ("completionMode", "podFailurePolicy", "backoffLimitPerIndex", "managedBy", "successPolicy"):
        errs += immutable(new_spec.get(fld), old_spec.get(fld), child("spec", fld))
    return errs


def validate_job_template_spec(template: Mapping, path: str) -> Errors:
    spec = _d(_d(template).get("spec"))
    errs = _job_spec_body(spec, child(path, "spec"))
    if spec.get("selector") is not None:
        errs.append(
            invalid(
                child(path, "spec", "selector"),
                go_label_selector(spec["selector"]),
                "`selector` will be auto-generated",
            )
        )
    if spec.get("manualSelector") is True:
        errs.append(not_supported(child(path, "spec", "manualSelector"), True, ["nil", "false"]))
    return errs


def validate_cron_job_spec(spec: Mapping, old_spec: Mapping | None, path: str = "spec") -> Errors:
    spec = _d(spec)
    errs: Errors = []
    schedule = _s(spec.get("schedule"))
    if not schedule:
        errs.append(required(child(path, "schedule"), ""))
    else:
        problem = cron_schedule_error(schedule)
        if problem:
            errs.append(invalid(child(path, "schedule"), schedule, problem))
        allow_tz = old_spec is not None and "TZ" in _s(old_spec.get("schedule"))
        if allow_tz and "TZ" in schedule and spec.get("timeZone") is not None:
            errs.append(
                invalid(
                    child(path, "schedule"), schedule, "cannot use both timeZone field and TZ or CRON_TZ in schedule"
                )
            )
        elif not allow_tz and "TZ" in schedule:
            errs.append(
                invalid(
                    child(path, "schedule"),
                    schedule,
                    "cannot use TZ or CRON_TZ in schedule, use timeZone field instead",
                )
            )
    if spec.get("startingDeadlineSeconds") is not None:
        errs += nonnegative(spec["startingDeadlineSeconds"], child(path, "startingDeadlineSeconds"))
    if old_spec is None or old_spec.get("timeZone") != spec.get("timeZone"):
        errs += _time_zone(spec.get("timeZone"), child(path, "timeZone"))
    errs += _enum(_s(spec.get("concurrencyPolicy")), child(path, "concurrencyPolicy"), ["Allow", "Forbid", "Replace"])
    errs += validate_job_template_spec(_d(spec.get("jobTemplate")), child(path, "jobTemplate"))
    for fld in ("successfulJobsHistoryLimit", "failedJobsHistoryLimit"):
        if spec.get(fld) is not None:
            errs += nonnegative(spec[fld], child(path, fld))
    return errs


def _time_zone(tz: Any, path: str) -> Errors:
    if tz is None:
        return []
    tz = _s(tz)
    if not tz:
        return [invalid(path, tz, "timeZone must be nil or non-empty string")]
    for part in tz.split("/"):
        if part in (".", "..") or part.startswith("-") or not re.fullmatch(r"[A-Za-z.\-_0-9+]{1,14}", part):
            return [invalid(path, tz, f"unknown time zone {tz}")]
    if tz.lower() == "local":
        return [
            invalid(path, tz, "timeZone must be an explicit time zone as defined in https://www.iana.org/time-zones")
        ]
    try:
        zoneinfo.ZoneInfo(tz)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return [invalid(path, tz, f"unknown time zone {tz}")]
    return []


# --- cron schedules (github.com/robfig/cron/v3 ParseStandard) ------------------------------------------

_CRON_FIELDS = (
    ("minute", 0, 59, None),
    ("hour", 0, 23, None),
    ("dom", 1, 31, None),
    (
        "month",
        1,
        12,
        {
            m: i + 1
            for i, m in enumerate(("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"))
        },
    ),
    ("dow", 0, 6, {d: i for i, d in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))}),
)
_DESCRIPTORS = {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}


def _go_atoi(text: str) -> tuple[int | None, str | None]:
    if re.fullmatch(r"[+-]?[0-9]+", text):
        return int(text), None
    return None, f"strconv.Atoi: parsing {go_quote(text)}: invalid syntax"


def _cron_int(text: str, names: dict[str, int] | None, expr: str) -> int:
    if names and text.lower() in names:
        return names[text.lower()]
    num, err = _go_atoi(text)
    if err:
        raise ValueError(f"failed to parse int from {text}: {err}")
    if num < 0:
        raise ValueError(f"negative number ({num}) not allowed: {text}")
    return num


def cron_schedule_error(spec: str) -> str | None:
    """The error robfig/cron's standard parser gives for `spec` (None if it parses)."""
    if not spec:
        return "empty spec string"
    if spec.startswith(("TZ=", "CRON_TZ=")):
        space, eq = spec.find(" "), spec.find("=")
        zone = spec[eq + 1 : space] if space >= 0 else spec[eq + 1 :]
        try:
            zoneinfo.ZoneInfo(zone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            return f"provided bad location {zone}: unknown time zone {zone}"
        spec = spec[space:].strip() if space >= 0 else ""
    if spec.startswith("@"):
        if spec in _DESCRIPTORS:
            return None
        if spec.startswith("@every "):
            duration = spec[len("@every ") :]
            try:
                durations.parse(duration)
            except ValueError:
                return f"failed to parse duration {spec}: time: invalid duration {go_quote(duration)}"
            return None
        return f"unrecognized descriptor: {spec}"
    fields = spec.split()
    if len(fields) != 5:
        return f"expected exactly 5 fields, found {len(fields)}: [{' '.join(fields)}]"
    try:
        for text, (_, lo, hi, names) in zip(fields, _CRON_FIELDS):
            for expr in text.split(","):
                _cron_range(expr, lo, hi, names)
    except ValueError as err:
        return str(err)
    return None


def _cron_range(expr: str, lo: int, hi: int, names: dict[str, int] | None) -> None:
    range_and_step = expr.split("/")
    low_high = range_and_step[0].split("-")
    if low_high[0] in ("*", "?"):
        start, end = lo, hi
    else:
        start = _cron_int(low_high[0], names, expr)
        if len(low_high) == 1:
            end = start
        elif len(low_high) == 2:
            end = _cron_int(low_high[1], names, expr)
        else:
            raise ValueError(f"too many hyphens: {expr}")
    if len(range_and_step) == 2:
        step = _cron_int(range_and_step[1], None, expr)
        if len(low_high) == 1 and low_high[0] not in ("*", "?"):
            end = hi
    elif len(range_and_step) > 2:
        raise ValueError(f"too many slashes: {expr}")
    else:
        step = 1
    if start < lo:
        raise ValueError(f"beginning of range ({start}) below minimum ({lo}): {expr}")
    if end > hi:
        raise ValueError(f"end of range ({end}) above maximum ({hi}): {expr}")
    if start > end:
        raise ValueError(f"beginning of range ({start}) beyond end of range ({end}): {expr}")
    if step == 0:
        raise ValueError(f"step of range should be a positive number: {expr}")


# ================================================================================================
# autoscaling (v2 storage shape; autoscaling/v1 objects are accepted in their own shape too)
# ================================================================================================

_METRIC_TYPES = ["ContainerResource", "External", "Object", "Pods", "Resource"]
_TARGET_TYPES = ["AverageValue", "Utilization", "Value"]


def _path_segment_errors(value: str, path: str) -> Errors:
    return _msgs(path, value, validate_path_segment_name(value, False))


def validate_cross_version_object_reference(ref: Mapping, path: str) -> Errors:
    ref = _d(ref)
    errs: Errors = []
    for fld in ("kind", "name"):
        value = _s(ref.get(fld))
        if not value:
            errs.append(required(child(path, fld), ""))
        else:
            errs += _path_segment_errors(value, child(path, fld))
    api_version = _s(ref.get("apiVersion"))
    if api_version.count("/") > 1:
        errs.append(invalid(child(path, "apiVersion"), api_version, f"unexpected GroupVersion string: {api_version}"))
    return errs


def _metric_target(target: Mapping, path: str) -> Errors:
    target = _d(target)
    errs: Errors = []
    kind = _s(target.get("type"))
    if not kind:
        errs.append(required(child(path, "type"), "must specify a metric target type"))
    elif kind not in _TARGET_TYPES:
        errs.append(not_supported(child(path, "type"), kind, _TARGET_TYPES))
    for fld in ("value", "averageValue"):
        q = _quantity(target.get(fld)) if target.get(fld) is not None else None
        if q is not None and q.sign() <= 0:
            errs.append(invalid(child(path, fld), q, "must be positive"))
    utilization = target.get("averageUtilization")
    if utilization is not None and _i(utilization) < 1:
        errs.append(invalid(child(path, "averageUtilization"), _i(utilization), "must be greater than 0"))
    return errs


def _metric_spec(metric: Mapping, path: str) -> Errors:
    metric = _d(metric)
    kind = _s(metric.get("type"))
    if not kind:
        return [required(child(path, "type"), "must specify a metric source type")]
    if kind not in _METRIC_TYPES:
        return [not_supported(child(path, "type"), kind, _METRIC_TYPES)]
    source_field = {
        "ContainerResource": "containerResource",
        "External": "external",
        "Object": "object",
        "Pods": "pods",
        "Resource": "resource",
    }[kind]
    errs: Errors = []
    for fld in ("object", "pods", "resource", "containerResource", "external"):
        if fld != source_field and metric.get(fld) is not None:
            errs.append(forbidden(child(path, fld), "must populate the given metric source only"))
    source = metric.get(source_field)
    sp = child(path, source_field)
    if source is None:
        return errs + [required(sp, "must populate information for the given metric source")]
    source = _d(source)
    if kind in ("Resource", "ContainerResource"):
        if not _s(source.get("name")):
            errs.append(required(child(sp, "name"), "must specify a resource name"))
        if kind == "ContainerResource" and not _s(source.get("container")):
            errs.append(required(child(sp, "container"), "must specify a container"))
    else:
        if kind == "Object":
            errs += validate_cross_version_object_reference(source.get("describedObject"), child(sp, "describedObject"))
        metric_id = _d(source.get("metric"))
        if not _s(metric_id.get("name")):
            errs.append(required(child(sp, "metric", "name"), "must specify a metric name"))
        else:
            errs += _path_segment_errors(metric_id["name"], child(sp, "metric", "name"))
        if metric_id.get("selector") is not None:
            errs += validate_label_selector(metric_id["selector"], child(sp, "metric", "selector"))
    return errs + _metric_target(_d(source.get("target")), child(sp, "target"))


def _scaling_rules(rules: Any, path: str) -> Errors:
    if rules is None:
        return []
    rules = _d(rules)
    errs: Errors = []
    window = rules.get("stabilizationWindowSeconds")
    if window is not None and not 0 <= _i(window) <= 3600:
        errs.append(
            invalid(
                child(path, "stabilizationWindowSeconds"),
                _i(window),
                "must be greater than or equal to zero and less than or equal to 3600",
            )
        )
    policy = rules.get("selectPolicy")
    if policy is not None and policy not in ("Max", "Min", "Disabled"):
        errs.append(not_supported(child(path, "selectPolicy"), policy, ["Disabled", "Max", "Min"]))
    policies = _l(rules.get("policies"))
    if not policies:
        errs.append(required(child(path, "policies"), "must specify at least one Policy"))
    for i, p in enumerate(policies):
        p, pp = _d(p), index(child(path, "policies"), i)
        if p.get("type") not in ("Pods", "Percent"):
            errs.append(not_supported(child(pp, "type"), _s(p.get("type")), ["Percent", "Pods"]))
        if _i(p.get("value")) <= 0:
            errs.append(invalid(child(pp, "value"), _i(p.get("value")), "must be greater than zero"))
        if not 0 < _i(p.get("periodSeconds")) <= 1800:
            errs.append(
                invalid(
                    child(pp, "periodSeconds"),
                    _i(p.get("periodSeconds")),
                    "must be greater than zero and less than or equal to 1800",
                )
            )
    return errs


def validate_hpa(hpa: Mapping) -> Errors:
    errs = validate_object_meta(_d(hpa.get("metadata")), True, name_is_dns_subdomain)
    spec, path = _d(hpa.get("spec")), "spec"
    min_replicas = spec.get("minReplicas")
    if min_replicas is not None and _i(min_replicas) < 1:
        errs.append(invalid("spec.minReplicas", _i(min_replicas), "must be greater than or equal to 1"))
    max_replicas = _i(spec.get("maxReplicas"))
    if max_replicas < 1:
        errs.append(invalid("spec.maxReplicas", max_replicas, "must be greater than 0"))
    if min_replicas is not None and max_replicas < _i(min_replicas):
        errs.append(invalid("spec.maxReplicas", max_replicas, "must be greater than or equal to `minReplicas`"))
    errs += validate_cross_version_object_reference(spec.get("scaleTargetRef"), "spec.scaleTargetRef")
    if (
        "targetCPUUtilizationPercentage" in spec
        or "metrics" not in spec
        and _s(hpa.get("apiVersion")) == "autoscaling/v1"
    ):
        # autoscaling/v1 carries its one metric here; upstream validates the converted v2 metric.
        target = spec.get("targetCPUUtilizationPercentage")
        if target is not None and _i(target) < 1:
            errs.append(
                invalid("spec.metrics[0].resource.target.averageUtilization", _i(target), "must be greater than 0")
            )
        return errs
    for i, metric in enumerate(_l(spec.get("metrics"))):
        errs += _metric_spec(metric, index(child(path, "metrics"), i))
    if min_replicas is not None and _i(min_replicas) == 0:
        if not any(_d(m).get("type") in ("Object", "External") for m in _l(spec.get("metrics"))):
            errs.append(
                forbidden(
                    "spec.metrics",
                    "must specify at least one Object or External metric to support scaling to zero replicas",
                )
            )
    behavior = spec.get("behavior")
    if behavior is not None:
        for fld in ("scaleUp", "scaleDown"):
            errs += _scaling_rules(_d(behavior).get(fld), child(path, "behavior", fld))
    return errs


# ================================================================================================
# networking.k8s.io/v1
# ================================================================================================

_PATH_TYPES = ["Exact", "ImplementationSpecific", "Prefix"]
_INVALID_PATH_SEQUENCES = ("//", "/./", "/../", "%2f", "%2F")
_INVALID_PATH_SUFFIXES = ("/..", "/.")


def _typed_local_reference(ref: Any, path: str) -> Errors:
    if ref is None:
        return []
    ref = _d(ref)
    errs: Errors = []
    if ref.get("apiGroup") is not None:
        errs += _msgs(child(path, "apiGroup"), ref["apiGroup"], is_dns1123_subdomain(_s(ref["apiGroup"])))
    for fld in ("kind", "name"):
        value = _s(ref.get(fld))
        if not value:
            errs.append(required(child(path, fld), f"{fld} is required"))
        else:
            errs += _path_segment_errors(value, child(path, fld))
    return errs


def _ingress_backend(backend: Mapping, path: str) -> Errors:
    backend = _d(backend)
    resource, service = backend.get("resource"), backend.get("service")
    if resource is not None and service is not None:
        return [invalid(path, "", "cannot set both resource and service backends")]
    if resource is not None:
        return _typed_local_reference(resource, child(path, "resource"))
    if service is None:
        return [invalid(path, "", "resource or service backend is required")]
    service = _d(service)
    errs: Errors = []
    name = _s(service.get("name"))
    if not name:
        errs.append(required(child(path, "service", "name"), ""))
    else:
        errs += _msgs(child(path, "service", "name"), name, name_is_dns1035_label(name, False))
    port = _d(service.get("port"))
    port_name, number = _s(port.get("name")), _i(port.get("number"))
    if port_name and number:
        errs.append(invalid(path, "", "cannot set both port name & port number"))
    elif port_name:
        errs += _msgs(child(path, "service", "port", "name"), port_name, is_valid_port_name(port_name))
    elif number:
        errs += _msgs(child(path, "service", "port", "number"), number, is_valid_port_num(number))
    else:
        errs.append(required(path, "port name or number is required"))
    return errs


def _ingress_host(host: str, path: str) -> Errors:
    errs: Errors = []
    if not is_valid_ip(host):
        errs.append(invalid(path, host, "must be a DNS name, not an IP address"))
    if "*" in host:
        return errs + _msgs(path, host, is_wildcard_dns1123_subdomain(host))
    return errs + _msgs(path, host, is_dns1123_subdomain(host))


def validate_ingress_spec(spec: Mapping, path: str = "spec") -> Errors:
    spec = _d(spec)
    errs: Errors = []
    rules = _l(spec.get("rules"))
    if not rules and spec.get("defaultBackend") is None:
        errs.append(
            invalid(
                path, GoLiteral("[]networking.IngressRule(nil)"), "either `defaultBackend` or `rules` must be specified"
            )
        )
    if spec.get("defaultBackend") is not None:
        errs += _ingress_backend(spec["defaultBackend"], child(path, "defaultBackend"))
    for i, rule in enumerate(rules):
        rule, rp = _d(rule), index(child(path, "rules"), i)
        if _s(rule.get("host")):
            errs += _ingress_host(rule["host"], child(rp, "host"))
        http = rule.get("http")
        if http is None:
            continue
        paths = _l(_d(http).get("paths"))
        hp = child(rp, "http")
        if not paths:
            errs.append(required(child(hp, "paths"), ""))
        for j, item in enumerate(paths):
            errs += _http_ingress_path(_d(item), index(child(hp, "paths"), j))
    for tls in _l(spec.get("tls")):
        for i, host in enumerate(_l(_d(tls).get("hosts"))):
            hp = child(index(child(path, "tls"), i), "hosts")
            check_fn = is_wildcard_dns1123_subdomain if "*" in _s(host) else is_dns1123_subdomain
            errs += _msgs(hp, host, check_fn(_s(host)))
    if spec.get("ingressClassName") is not None:
        errs += _msgs(
            child(path, "ingressClassName"),
            spec["ingressClassName"],
            name_is_dns_subdomain(_s(spec["ingressClassName"]), False),
        )
    return errs


def _http_ingress_path(item: Mapping, path: str) -> Errors:
    kind = item.get("pathType")
    if kind is None:
        return [required(child(path, "pathType"), "pathType must be specified")]
    value = _s(item.get("path"))
    errs: Errors = []
    if kind in ("Exact", "Prefix"):
        if not value.startswith("/"):
            errs.append(invalid(child(path, "path"), value, "must be an absolute path"))
        for seq in _INVALID_PATH_SEQUENCES:
            if seq in value:
                errs.append(invalid(child(path, "path"), value, f"must not contain '{seq}'"))
        for suffix in _INVALID_PATH_SUFFIXES:
            if value.endswith(suffix):
                errs.append(invalid(child(path, "path"), value, f"cannot end with '{suffix}'"))
    elif kind == "ImplementationSpecific":
        if value and not value.startswith("/"):
            errs.append(invalid(child(path, "path"), value, "must be an absolute path"))
    else:
        errs.append(not_supported(child(path, "pathType"), kind, _PATH_TYPES))
    return errs + _ingress_backend(_d(item.get("backend")), child(path, "backend"))


def validate_ingress(ing: Mapping, create: bool) -> Errors:
    meta = _d(ing.get("metadata"))
    errs = validate_object_meta(meta, True, name_is_dns_subdomain)
    errs += validate_ingress_spec(_d(ing.get("spec")))
    annotation = _d(meta.get("annotations")).get("kubernetes.io/ingress.class")
    if create and annotation is not None and _d(ing.get("spec")).get("ingressClassName") is not None:
        errs.append(
            invalid(
                "annotations.kubernetes.io/ingress.class", annotation, "can not be set when the class field is also set"
            )
        )
    return errs


def validate_ingress_class(ic: Mapping) -> Errors:
    errs = validate_object_meta(_d(ic.get("metadata")), False, name_is_dns_subdomain)
    spec = _d(ic.get("spec"))
    controller = _s(spec.get("controller"))
    if len(controller) > 250:
        errs.append(too_long("spec.controller", controller, 250))
    errs += _domain_prefixed_path(controller, "spec.controller")
    return errs + _typed_local_reference(spec.get("parameters"), "spec.parameters")


# The classes every cluster has (the apiserver creates them), and the ceiling of the others.
SYSTEM_PRIORITY_CLASSES = {"system-node-critical": 2000001000, "system-cluster-critical": 2000000000}
HIGHEST_USER_DEFINABLE_PRIORITY = 1_000_000_000


def validate_priority_class(pc: Mapping) -> Errors:
    meta = _d(pc.get("metadata"))
    errs = validate_object_meta(meta, False, name_is_dns_subdomain)
    name, value = _s(meta.get("name")), _i(pc.get("value"))
    if name.startswith("system-"):
        known = name in SYSTEM_PRIORITY_CLASSES
        why = (f"{name} is not a known system priority class" if not known
               else f"value of {name} PriorityClass must be {SYSTEM_PRIORITY_CLASSES[name]}"
               if value != SYSTEM_PRIORITY_CLASSES[name]
               else f"globalDefault of {name} PriorityClass must be false" if pc.get("globalDefault") else "")
        if why:
            errs.append(forbidden("metadata.name", "priority class names with 'system-' prefix are reserved "
                                                   f"for system use only. error: {why}"))
    elif value > HIGHEST_USER_DEFINABLE_PRIORITY:
        errs.append(forbidden("value", f"maximum allowed value of a user defined priority is "
                                       f"{HIGHEST_USER_DEFINABLE_PRIORITY}"))
    if pc.get("preemptionPolicy") is not None:
        errs += _enum(pc["preemptionPolicy"], "preemptionPolicy", ["PreemptLowerPriority", "Never"])
    return errs


def validate_priority_class_update(new: Mapping, old: Mapping) -> Errors:
    """Value and preemption policy are fixed once the class exists (pods already carry them)."""
    errs: Errors = []
    if new.get("value") != old.get("value"):
        errs.append(forbidden("value", "may not be changed in an update."))
    return errs + immutable(new.get("preemptionPolicy"), old.get("preemptionPolicy"), "preemptionPolicy")


def _domain_prefixed_path(value: str, path: str) -> Errors:
    if not value:
        return [required(path, "")]
    segments = value.split("/", 1)
    if len(segments) < 2 or not segments[0]:
        return [invalid(path, value, 'must be a domain-prefixed path (such as "acme.io/foo")')]
    errs = _msgs(path, segments[0], is_dns1123_subdomain(segments[0]))
    if not re.fullmatch(r"[A-Za-z0-9/\-._~%!$&'()*+,;=:]+", segments[1]):
        errs.append(invalid(path, segments[1], "Invalid path: must be a valid HTTP path"))
    return errs


def _network_policy_port(port: Mapping, path: str) -> Errors:
    errs: Errors = []
    protocol = port.get("protocol")
    if protocol is not None and protocol not in PROTOCOLS:
        errs.append(not_supported(child(path, "protocol"), protocol, ["TCP", "UDP", "SCTP"]))
    value = port.get("port")
    if value is not None:
        errs += validate_port_num_or_name(value, child(path, "port"))
        end = port.get("endPort")
        if end is not None:
            if isinstance(value, str):
                errs.append(forbidden(child(path, "endPort"), "may not be specified when `port` is non-numeric"))
            elif _i(end) < _i(value):
                errs.append(invalid(child(path, "endPort"), _i(end), "must be greater than or equal to `port`"))
            errs += _msgs(child(path, "endPort"), _i(end), is_valid_port_num(_i(end)))
    elif port.get("endPort") is not None:
        errs.append(required(child(path, "port"), "must be specified when `endPort` is specified"))
    return errs


def _network_policy_peer(peer: Mapping, path: str) -> Errors:
    errs: Errors = []
    count = 0
    for fld in ("podSelector", "namespaceSelector"):
        if peer.get(fld) is not None:
            count += 1
            errs += validate_label_selector(peer[fld], child(path, fld))
    block = peer.get("ipBlock")
    if block is not None:
        count += 1
        block, bp = _d(block), child(path, "ipBlock")
        cidr = _s(block.get("cidr"))
        if not cidr:
            errs.append(required(child(bp, "cidr"), ""))
        elif is_valid_cidr(cidr):
            errs += _msgs(child(bp, "cidr"), cidr, is_valid_cidr(cidr))
        else:
            import ipaddress

            outer = ipaddress.ip_network(cidr, strict=False)
            for i, except_cidr in enumerate(_l(block.get("except"))):
                ep = index(child(bp, "except"), i)
                if is_valid_cidr(_s(except_cidr)):
                    errs += _msgs(ep, except_cidr, is_valid_cidr(_s(except_cidr)))
                    continue
                inner = ipaddress.ip_network(except_cidr, strict=False)
                if inner.version != outer.version or not inner.subnet_of(outer) or inner.prefixlen <= outer.prefixlen:
                    errs.append(invalid(ep, except_cidr, "must be a strict subset of `cidr`"))
    if count == 0:
        errs.append(required(path, "must specify a peer"))
    elif count > 1 and block is not None:
        errs.append(forbidden(path, "may not specify both ipBlock and another peer"))
    return errs


def validate_network_policy_spec(spec: Mapping, path: str = "spec") -> Errors:
    spec = _d(spec)
    errs = validate_label_selector(_d(spec.get("podSelector")), child(path, "podSelector"))
    for direction, peers in (("ingress", "from"), ("egress", "to")):
        for i, rule in enumerate(_l(spec.get(direction))):
            rule, rp = _d(rule), index(child(path, direction), i)
            for j, port in enumerate(_l(rule.get("ports"))):
                errs += _network_policy_port(_d(port), index(child(rp, "ports"), j))
            for j, peer in enumerate(_l(rule.get(peers))):
                errs += _network_policy_peer(_d(peer), index(child(rp, peers), j))
    types = _l(spec.get("policyTypes"))
    if len(types) > 2:
        return errs + [invalid(child(path, "policyTypes"), list(types), "may not specify more than two policyTypes")]
    for i, kind in enumerate(types):
        if kind not in ("Ingress", "Egress"):
            errs.append(not_supported(index(child(path, "policyTypes"), i), kind, ["Ingress", "Egress"]))
    return errs


# ================================================================================================
# storage, coordination, discovery, policy, rbac
# ================================================================================================


def validate_storage_class(sc: Mapping) -> Errors:
    errs = validate_object_meta(_d(sc.get("metadata")), False, name_is_dns_subdomain)
    provisioner = _s(sc.get("provisioner"))
    if not provisioner:
        errs.append(required("provisioner", provisioner))
    else:
        errs += _msgs("provisioner", provisioner.lower(), is_qualified_name(provisioner.lower()))
    parameters = _d(sc.get("parameters"))
    if len(parameters) > 512:
        errs.append(too_many("parameters", len(parameters), 512))
    if sum(len(k) + len(_s(v)) for k, v in parameters.items()) > 256 * 1024:
        errs.append(too_long("parameters", "", 256 * 1024))
    for k in parameters:
        if not k:
            errs.append(invalid("parameters", k, "field can not be empty."))
    policy = sc.get("reclaimPolicy")
    if policy is not None and policy not in ("Delete", "Retain"):
        errs.append(not_supported("reclaimPolicy", policy, ["Delete", "Retain"]))
    mode = sc.get("volumeBindingMode")
    if mode is None:
        errs.append(required("volumeBindingMode", ""))
    elif mode not in ("Immediate", "WaitForFirstConsumer"):
        errs.append(not_supported("volumeBindingMode", mode, ["Immediate", "WaitForFirstConsumer"]))
    for i, term in enumerate(_l(sc.get("allowedTopologies"))):
        seen: set[str] = set()
        for j, req in enumerate(_l(_d(term).get("matchLabelExpressions"))):
            req, rp = _d(req), index(child(index("allowedTopologies", i), "matchLabelExpressions"), j)
            values = _l(req.get("values"))
            if not values:
                errs.append(required(child(rp, "values"), ""))
            for k, v in enumerate(values):
                if v in values[:k]:
                    errs.append(duplicate(index(child(rp, "values"), k), v))
            errs += validate_label_name(_s(req.get("key")), child(rp, "key"))
            if req.get("key") in seen:
                errs.append(duplicate(child(rp, "key"), req.get("key")))
            seen.add(_s(req.get("key")))
    return errs


def validate_storage_class_update(new: Mapping, old: Mapping) -> Errors:
    errs = validate_object_meta_update(_d(new.get("metadata")), _d(old.get("metadata")))
    if _d(new.get("parameters")) != _d(old.get("parameters")):
        errs.append(forbidden("parameters", "updates to parameters are forbidden."))
    if new.get("provisioner") != old.get("provisioner"):
        errs.append(forbidden("provisioner", "updates to provisioner are forbidden."))
    if new.get("reclaimPolicy") != old.get("reclaimPolicy"):
        errs.append(forbidden("reclaimPolicy", "updates to reclaimPolicy are forbidden."))
    return errs + immutable(new.get("volumeBindingMode"), old.get("volumeBindingMode"), "volumeBindingMode")


def validate_lease(lease: Mapping) -> Errors:
    errs = validate_object_meta(_d(lease.get("metadata")), True, name_is_dns_subdomain)
    spec = _d(lease.get("spec"))
    duration = spec.get("leaseDurationSeconds")
    if duration is not None and _i(duration) <= 0:
        errs.append(invalid("spec.leaseDurationSeconds", _i(duration), "must be greater than 0"))
    transitions = spec.get("leaseTransitions")
    if transitions is not None and _i(transitions) < 0:
        errs.append(invalid("spec.leaseTransitions", _i(transitions), "must be greater than or equal to 0"))
    return errs


_ADDRESS_TYPES = ["FQDN", "IPv4", "IPv6"]


def validate_endpoint_slice(eps: Mapping) -> Errors:
    errs = validate_object_meta(_d(eps.get("metadata")), True, name_is_dns_subdomain)
    address_type = _s(eps.get("addressType"))
    if not address_type:
        errs.append(required("addressType", ""))
    elif address_type not in _ADDRESS_TYPES:
        errs.append(not_supported("addressType", address_type, _ADDRESS_TYPES))
    endpoints = _l(eps.get("endpoints"))
    if len(endpoints) > 1000:
        errs.append(too_many("endpoints", len(endpoints), 1000))
    for i, ep in enumerate(endpoints):
        ep, p = _d(ep), index("endpoints", i)
        addresses = _l(ep.get("addresses"))
        if not addresses:
            errs.append(required(child(p, "addresses"), "must contain at least 1 address"))
        elif len(addresses) > 100:
            errs.append(too_many(child(p, "addresses"), len(addresses), 100))
        for j, address in enumerate(addresses):
            ap = index(child(p, "addresses"), j)
            if address_type in ("IPv4", "IPv6"):
                check_ip = is_valid_ipv4_address if address_type == "IPv4" else is_valid_ipv6_address
                found = _msgs(ap, address, check_ip(_s(address)))
                errs += found or validate_non_special_ip(_s(address), ap)
            elif address_type == "FQDN":
                errs += _msgs(ap, address, is_dns1123_subdomain(_s(address)))
        if ep.get("hostname") is not None:
            errs += _msgs(child(p, "hostname"), ep["hostname"], is_dns1123_label(_s(ep["hostname"])))
        if ep.get("nodeName") is not None:
            errs += _msgs(child(p, "nodeName"), ep["nodeName"], name_is_dns_subdomain(_s(ep["nodeName"]), False))
    ports = _l(eps.get("ports"))
    if len(ports) > 20000:
        errs.append(too_many("ports", len(ports), 20000))
    names: set[str] = set()
    for i, port in enumerate(ports):
        port, p = _d(port), index("ports", i)
        name = _s(port.get("name"))
        if name:
            errs += _msgs(child(p, "name"), name, is_dns1123_label(name))
        if name in names:
            errs.append(duplicate(child(p, "name"), name))
        names.add(name)
        protocol = port.get("protocol")
        if protocol is None:
            errs.append(required(child(p, "protocol"), ""))
        elif protocol not in PROTOCOLS:
            errs.append(not_supported(child(p, "protocol"), protocol, PROTOCOLS))
        if port.get("appProtocol") is not None:
            errs += _msgs(child(p, "appProtocol"), port["appProtocol"], is_qualified_name(_s(port["appProtocol"])))
    return errs


def validate_pdb_spec(spec: Mapping, path: str = "spec") -> Errors:
    spec = _d(spec)
    errs: Errors = []
    if spec.get("minAvailable") is not None and spec.get("maxUnavailable") is not None:
        errs.append(
            invalid(
                path,
                go_struct(spec, "policy.PodDisruptionBudgetSpec"),
                "minAvailable and maxUnavailable cannot be both set",
            )
        )
    for fld in ("minAvailable", "maxUnavailable"):
        if spec.get(fld) is not None:
            errs += validate_positive_int_or_percent(spec[fld], child(path, fld))
            errs += _not_more_than_100_percent(spec[fld], child(path, fld))
    errs += validate_label_selector(spec.get("selector"), child(path, "selector"))
    policy = spec.get("unhealthyPodEvictionPolicy")
    if policy is not None and policy not in ("AlwaysAllow", "IfHealthyBudget"):
        errs.append(
            not_supported(child(path, "unhealthyPodEvictionPolicy"), policy, ["AlwaysAllow", "IfHealthyBudget"])
        )
    return errs


RBAC_GROUP = "rbac.authorization.k8s.io"


def _policy_rule(rule: Mapping, namespaced: bool, path: str) -> Errors:
    rule = _d(rule)
    errs: Errors = []
    if not _l(rule.get("verbs")):
        errs.append(required(child(path, "verbs"), "verbs must contain at least one value"))
    urls = _l(rule.get("nonResourceURLs"))
    if urls:
        if namespaced:
            errs.append(
                invalid(
                    child(path, "nonResourceURLs"), list(urls), "namespaced rules cannot apply to non-resource URLs"
                )
            )
        if _l(rule.get("apiGroups")) or _l(rule.get("resources")) or _l(rule.get("resourceNames")):
            errs.append(
                invalid(
                    child(path, "nonResourceURLs"),
                    list(urls),
                    "rules cannot apply to both regular resources and non-resource URLs",
                )
            )
        return errs
    if not _l(rule.get("apiGroups")):
        errs.append(required(child(path, "apiGroups"), "resource rules must supply at least one api group"))
    if not _l(rule.get("resources")):
        errs.append(required(child(path, "resources"), "resource rules must supply at least one resource"))
    return errs


def validate_role(role: Mapping, namespaced: bool) -> Errors:
    errs = validate_object_meta(_d(role.get("metadata")), namespaced, validate_path_segment_name)
    for i, rule in enumerate(_l(role.get("rules"))):
        errs += _policy_rule(rule, namespaced, index("rules", i))
    aggregation = role.get("aggregationRule")
    if not namespaced and aggregation is not None:
        selectors = _l(_d(aggregation).get("clusterRoleSelectors"))
        if not selectors:
            errs.append(
                required(
                    "aggregationRule.clusterRoleSelectors",
                    "at least one clusterRoleSelector required if aggregationRule is non-nil",
                )
            )
        for i, selector in enumerate(selectors):
            errs += validate_label_selector(_d(selector), index("aggregationRule.clusterRoleSelectors", i))
        if _l(role.get("rules")):
            errs.append(forbidden("rules", "rules must be empty if aggregationRule is non-nil"))
    return errs


def _subject(subject: Mapping, namespaced: bool, path: str) -> Errors:
    subject = _d(subject)
    errs: Errors = []
    name, kind, group = _s(subject.get("name")), _s(subject.get("kind")), _s(subject.get("apiGroup"))
    if not name:
        errs.append(required(child(path, "name"), ""))
    if kind == "ServiceAccount":
        if name:
            errs += _msgs(child(path, "name"), name, name_is_dns_subdomain(name, False))
        if group:
            errs.append(not_supported(child(path, "apiGroup"), group, [""]))
        if not namespaced and not _s(subject.get("namespace")):
            errs.append(required(child(path, "namespace"), ""))
    elif kind in ("User", "Group"):
        if group != RBAC_GROUP:
            errs.append(not_supported(child(path, "apiGroup"), group, [RBAC_GROUP]))
    else:
        errs.append(not_supported(child(path, "kind"), kind, ["ServiceAccount", "User", "Group"]))
    return errs


def validate_role_binding(binding: Mapping, namespaced: bool) -> Errors:
    errs = validate_object_meta(_d(binding.get("metadata")), namespaced, validate_path_segment_name)
    ref = _d(binding.get("roleRef"))
    if ref.get("apiGroup") != RBAC_GROUP:
        errs.append(not_supported("roleRef.apiGroup", _s(ref.get("apiGroup")), [RBAC_GROUP]))
    allowed = ["Role", "ClusterRole"] if namespaced else ["ClusterRole"]
    if ref.get("kind") not in allowed:
        errs.append(not_supported("roleRef.kind", _s(ref.get("kind")), allowed))
    name = _s(ref.get("name"))
    if not name:
        errs.append(required("roleRef.name", ""))
    else:
        errs += _path_segment_errors(name, "roleRef.name")
    for i, subject in enumerate(_l(binding.get("subjects"))):
        errs += _subject(subject, namespaced, index("subjects", i))
    return errs


# ================================================================================================
# Kinds: create and update validators, registered by their storage definitions
# ================================================================================================

UpdateValidator = Callable[[Mapping, Mapping, Context], Errors]
_UPDATE_VALIDATORS: dict[tuple[str, str], UpdateValidator] = {}  # (definition, subresource) → validator


def validates_update(*definitions: str, subresource: str = "") -> Callable[[UpdateValidator], UpdateValidator]:
    """Register `fn(new, old, ctx)` as the update validator of objects of these definitions, or of
    writes to their `subresource` (a subresource without one of its own is validated as updates)."""

    def register(fn: UpdateValidator) -> UpdateValidator:
        for name in definitions:
            _UPDATE_VALIDATORS[(name, subresource)] = fn
        return fn

    return register


_CORE_DEF, _APPS_DEF = "io.k8s.api.core.v1.", "io.k8s.api.apps.v1."


def _meta_then(name_fn: NameFn, namespaced: bool, spec_fn: Callable[[Mapping], Errors]) -> Validator:
    """A kind validator of the usual shape: ObjectMeta, then the kind's own checks."""

    def fn(obj: Any, path: str, ctx: Context) -> Errors:
        return validate_object_meta(_d(_d(obj).get("metadata")), namespaced, name_fn) + spec_fn(_d(obj))

    return fn


def _meta_update_then(spec_fn: Callable[[Mapping, Mapping], Errors]) -> UpdateValidator:
    def fn(new: Mapping, old: Mapping, ctx: Context) -> Errors:
        return validate_object_meta_update(_d(new.get("metadata")), _d(old.get("metadata"))) + spec_fn(new, old)

    return fn


def _no_checks(obj: Mapping) -> Errors:
    return []


# --- core/v1 -------------------------------------------------------------------------------------------

validates(_CORE_DEF + "Pod")(lambda obj, path, ctx: validate_pod(_d(obj)))
validates_update(_CORE_DEF + "Pod")(lambda new, old, ctx: validate_pod_update(new, old))
validates_update(_CORE_DEF + "Pod", subresource="status")(lambda new, old, ctx: validate_pod_status_update(new, old))
validates(_CORE_DEF + "PodTemplate")(lambda obj, path, ctx: validate_pod_template(_d(obj)))
validates_update(_CORE_DEF + "PodTemplate")(
    _meta_update_then(lambda new, old: validate_pod_template_spec(_d(new.get("template")), "template"))
)
validates(_CORE_DEF + "ReplicationController")(
    _meta_then(name_is_dns_subdomain, True, lambda obj: validate_replication_controller_spec(obj.get("spec"), "spec"))
)
validates_update(_CORE_DEF + "ReplicationController")(
    _meta_update_then(lambda new, old: validate_replication_controller_spec(new.get("spec"), "spec"))
)
validates(_CORE_DEF + "Service")(lambda obj, path, ctx: validate_service(_d(obj)))
validates_update(_CORE_DEF + "Service")(lambda new, old, ctx: validate_service_update(new, old))
validates(_CORE_DEF + "Endpoints")(lambda obj, path, ctx: validate_endpoints(_d(obj)))
validates_update(_CORE_DEF + "Endpoints")(
    lambda new, old, ctx: (
        validate_object_meta_update(_d(new.get("metadata")), _d(old.get("metadata"))) + validate_endpoints(new)
    )
)
validates(_CORE_DEF + "Namespace")(lambda obj, path, ctx: validate_namespace(_d(obj)))
validates_update(_CORE_DEF + "Namespace")(_meta_update_then(lambda new, old: []))
validates(_CORE_DEF + "Node")(lambda obj, path, ctx: validate_node(_d(obj)))
validates_update(_CORE_DEF + "Node")(lambda new, old, ctx: validate_node(new) + validate_node_update(new, old))
validates(_CORE_DEF + "ConfigMap")(lambda obj, path, ctx: validate_config_map(_d(obj)))
validates_update(_CORE_DEF + "ConfigMap")(
    _meta_update_then(lambda new, old: _immutable_data(new, old, ("data", "binaryData")) + validate_config_map(new))
)
validates(_CORE_DEF + "Secret")(lambda obj, path, ctx: validate_secret(_d(obj)))
validates_update(_CORE_DEF + "Secret")(
    _meta_update_then(
        lambda new, old: (
            immutable(_s(new.get("type")), _s(old.get("type")), "type")
            + _immutable_data({**new, "data": _secret_merged(new)}, {**old, "data": _secret_merged(old)}, ("data",))
            + validate_secret(new)
        )
    )
)
validates(_CORE_DEF + "ServiceAccount")(_meta_then(name_is_dns_subdomain, True, _no_checks))
validates_update(_CORE_DEF + "ServiceAccount")(
    _meta_update_then(lambda new, old: validate_object_meta(_d(new.get("metadata")), True, name_is_dns_subdomain))
)
validates(_CORE_DEF + "PersistentVolume")(
    _meta_then(name_is_dns_subdomain, False, lambda obj: validate_pv_spec(obj.get("spec"), "spec"))
)
validates_update(_CORE_DEF + "PersistentVolume")(lambda new, old, ctx: validate_pv_update(new, old))
validates(_CORE_DEF + "PersistentVolumeClaim")(
    _meta_then(name_is_dns_subdomain, True, lambda obj: validate_pvc_spec(obj.get("spec"), "spec"))
)
validates_update(_CORE_DEF + "PersistentVolumeClaim")(lambda new, old, ctx: validate_pvc_update(new, old))
validates(_CORE_DEF + "ResourceQuota")(
    _meta_then(name_is_dns_subdomain, True, lambda obj: validate_resource_quota_spec(obj.get("spec"), "spec"))
)
validates_update(_CORE_DEF + "ResourceQuota")(
    _meta_update_then(
        lambda new, old: (
            validate_resource_quota_spec(new.get("spec"), "spec")
            + (
                []
                if set(_l(_d(new.get("spec")).get("scopes"))) == set(_l(_d(old.get("spec")).get("scopes")))
                else [invalid("spec.scopes", list(_l(_d(new.get("spec")).get("scopes"))), IMMUTABLE)]
            )
        )
    )
)
validates(_CORE_DEF + "LimitRange")(lambda obj, path, ctx: validate_limit_range(_d(obj)))
validates_update(_CORE_DEF + "LimitRange")(_meta_update_then(lambda new, old: validate_limit_range(new)))
validates(_CORE_DEF + "Event")(lambda obj, path, ctx: validate_event(_d(obj), _event_version(ctx)))
validates_update(_CORE_DEF + "Event")(lambda new, old, ctx: validate_event(new, _event_version(ctx)))
validates(_CORE_DEF + "Binding")(lambda obj, path, ctx: validate_binding(_d(obj)))


def _event_version(ctx: Context) -> str:
    return "events.k8s.io/v1" if ctx.group == "events.k8s.io" else "v1"


def _secret_merged(secret: Mapping) -> dict:
    import base64

    data = dict(_d(secret.get("data")))
    data.update({k: base64.b64encode(_s(v).encode()).decode() for k, v in _d(secret.get("stringData")).items()})
    return data


# --- apps/v1 -------------------------------------------------------------------------------------------

validates(_APPS_DEF + "Deployment")(
    _meta_then(name_is_dns_subdomain, True, lambda obj: validate_deployment_spec(obj.get("spec")))
)
validates(_APPS_DEF + "ReplicaSet")(
    _meta_then(name_is_dns_subdomain, True, lambda obj: validate_replica_set_spec(obj.get("spec")))
)
validates(_APPS_DEF + "DaemonSet")(
    _meta_then(name_is_dns_subdomain, True, lambda obj: validate_daemon_set_spec(obj.get("spec")))
)
validates(_APPS_DEF + "StatefulSet")(
    _meta_then(name_is_dns_label, True, lambda obj: validate_stateful_set_spec(obj.get("spec")))
)
validates(_APPS_DEF + "ControllerRevision")(lambda obj, path, ctx: validate_controller_revision(_d(obj)))


def _apps_update(spec_fn: Callable[[Mapping], Errors]) -> UpdateValidator:
    def fn(new: Mapping, old: Mapping, ctx: Context) -> Errors:
        errs = validate_object_meta_update(_d(new.get("metadata")), _d(old.get("metadata")))
        errs += spec_fn(_d(new.get("spec")))
        if ctx.group == "apps":  # extensions/v1beta1 and apps/v1beta1 kept selectors mutable
            errs += _selector_immutable(new, old)
        return errs

    return fn


validates_update(_APPS_DEF + "Deployment")(_apps_update(validate_deployment_spec))
validates_update(_APPS_DEF + "ReplicaSet")(_apps_update(validate_replica_set_spec))
validates_update(_APPS_DEF + "DaemonSet")(_apps_update(validate_daemon_set_spec))
validates_update(_APPS_DEF + "StatefulSet")(lambda new, old, ctx: validate_stateful_set_update(new, old))
validates_update(_APPS_DEF + "ControllerRevision")(
    _meta_update_then(
        lambda new, old: (
            validate_controller_revision(new)
            + immutable(new.get("data"), old.get("data"), "data", go_struct(new.get("data"), "runtime.RawExtension"))
        )
    )
)

# --- batch/v1 ------------------------------------------------------------------------------------------

validates("io.k8s.api.batch.v1.Job")(lambda obj, path, ctx: validate_job(_d(obj)))
validates_update("io.k8s.api.batch.v1.Job")(lambda new, old, ctx: validate_job_update(new, old))


def _cron_job(obj: Mapping) -> Errors:
    name = _s(_d(obj.get("metadata")).get("name"))
    errs = validate_cron_job_spec(obj.get("spec"), None)
    if len(name) > 52:
        errs.append(invalid("metadata.name", name, "must be no more than 52 characters"))
    return errs


validates("io.k8s.api.batch.v1.CronJob")(_meta_then(name_is_dns_subdomain, True, _cron_job))
validates_update("io.k8s.api.batch.v1.CronJob")(
    _meta_update_then(lambda new, old: validate_cron_job_spec(new.get("spec"), _d(old.get("spec"))))
)

# --- the other groups ----------------------------------------------------------------------------------

validates("io.k8s.api.autoscaling.v2.HorizontalPodAutoscaler")(lambda obj, path, ctx: validate_hpa(_d(obj)))
validates_update("io.k8s.api.autoscaling.v2.HorizontalPodAutoscaler")(
    _meta_update_then(lambda new, old: validate_hpa(new))
)
validates("io.k8s.api.networking.v1.Ingress")(lambda obj, path, ctx: validate_ingress(_d(obj), create=True))
validates_update("io.k8s.api.networking.v1.Ingress")(
    _meta_update_then(lambda new, old: validate_ingress(new, create=False))
)
validates("io.k8s.api.scheduling.v1.PriorityClass")(lambda obj, path, ctx: validate_priority_class(_d(obj)))
validates_update("io.k8s.api.scheduling.v1.PriorityClass")(_meta_update_then(validate_priority_class_update))
validates("io.k8s.api.networking.v1.IngressClass")(lambda obj, path, ctx: validate_ingress_class(_d(obj)))
validates_update("io.k8s.api.networking.v1.IngressClass")(
    _meta_update_then(
        lambda new, old: (
            immutable(
                _s(_d(new.get("spec")).get("controller")), _s(_d(old.get("spec")).get("controller")), "spec.controller"
            )
            + validate_ingress_class(new)
        )
    )
)
validates("io.k8s.api.networking.v1.NetworkPolicy")(
    _meta_then(name_is_dns_subdomain, True, lambda obj: validate_network_policy_spec(obj.get("spec")))
)
validates_update("io.k8s.api.networking.v1.NetworkPolicy")(
    _meta_update_then(lambda new, old: validate_network_policy_spec(new.get("spec")))
)
validates("io.k8s.api.storage.v1.StorageClass")(lambda obj, path, ctx: validate_storage_class(_d(obj)))
validates_update("io.k8s.api.storage.v1.StorageClass")(
    lambda new, old, ctx: validate_storage_class(new) + validate_storage_class_update(new, old)
)
validates("io.k8s.api.coordination.v1.Lease")(lambda obj, path, ctx: validate_lease(_d(obj)))
validates_update("io.k8s.api.coordination.v1.Lease")(_meta_update_then(lambda new, old: validate_lease(new)))
validates("io.k8s.api.discovery.v1.EndpointSlice")(lambda obj, path, ctx: validate_endpoint_slice(_d(obj)))
validates_update("io.k8s.api.discovery.v1.EndpointSlice")(
    _meta_update_then(
        lambda new, old: (
            validate_endpoint_slice(new) + immutable(new.get("addressType"), old.get("addressType"), "addressType")
        )
    )
)
validates("io.k8s.api.policy.v1.PodDisruptionBudget")(lambda obj, path, ctx: validate_pdb_spec(_d(obj).get("spec")))
validates_update("io.k8s.api.policy.v1.PodDisruptionBudget")(lambda new, old, ctx: validate_pdb_spec(new.get("spec")))
for _kind, _namespaced in (("Role", True), ("ClusterRole", False)):
    validates(f"io.k8s.api.rbac.v1.{_kind}")(lambda obj, path, ctx, ns=_namespaced: validate_role(_d(obj), ns))
    validates_update(f"io.k8s.api.rbac.v1.{_kind}")(
        _meta_update_then(lambda new, old, ns=_namespaced: validate_role(new, ns))
    )
for _kind, _namespaced in (("RoleBinding", True), ("ClusterRoleBinding", False)):
    validates(f"io.k8s.api.rbac.v1.{_kind}")(lambda obj, path, ctx, ns=_namespaced: validate_role_binding(_d(obj), ns))
    validates_update(f"io.k8s.api.rbac.v1.{_kind}")(
        _meta_update_then(
            lambda new, old, ns=_namespaced: (
                validate_role_binding(new, ns)
                + (
                    []
                    if _semantic(new.get("roleRef")) == _semantic(old.get("roleRef"))
                    else [invalid("roleRef", go_struct(new.get("roleRef"), "rbac.RoleRef"), "cannot change roleRef")]
                )
            )
        )
    )


_PSP_RULES = {
    "runAsUser": ["MustRunAs", "MustRunAsNonRoot", "RunAsAny"],
    "seLinux": ["MustRunAs", "RunAsAny"],
    "supplementalGroups": ["MustRunAs", "RunAsAny"],
    "fsGroup": ["MustRunAs", "RunAsAny"],
}
_PSP_VOLUMES = sorted(
    {
        "*",
        "awsElasticBlockStore",
        "azureDisk",
        "azureFile",
        "cephFS",
        "cinder",
        "configMap",
        "csi",
        "downwardAPI",
        "emptyDir",
        "ephemeral",
        "fc",
        "flexVolume",
        "flocker",
        "gcePersistentDisk",
        "gitRepo",
        "glusterfs",
        "hostPath",
        "iscsi",
        "nfs",
        "persistentVolumeClaim",
        "photonPersistentDisk",
        "portworxVolume",
        "projected",
        "quobyte",
        "rbd",
        "scaleIO",
        "secret",
        "storageos",
        "vsphere",
    }
)


@validates("io.k8s.api.policy.v1beta1.PodSecurityPolicy")
def _pod_security_policy(obj: Any, path: str, ctx: Context) -> Errors:
    """The book's policy/v1beta1 PodSecurityPolicy (removed upstream in 1.25; checks as of 1.24)."""
    obj = _d(obj)
    errs = validate_object_meta(_d(obj.get("metadata")), False, name_is_dns_subdomain)
    spec = _d(obj.get("spec"))
    for fld, rules in _PSP_RULES.items():
        rule = _s(_d(spec.get(fld)).get("rule"))
        if rule not in rules:
            errs.append(not_supported(child("spec", fld, "rule"), rule, rules))
    for volume in _l(spec.get("volumes")):
        if volume not in _PSP_VOLUMES:
            errs.append(not_supported("spec.volumes", volume, _PSP_VOLUMES))
    return errs


# ================================================================================================
# Entry points
# ================================================================================================


def _storage_resource(group: str, kind: str) -> kinds.Resource:
    for r in kinds.RESOURCES:
        if r.group == group and r.kind == kind and (r.storage_group, r.storage_version) == (r.group, r.version):
            return r
    for r in kinds.RESOURCES:
        if r.group == group and r.kind == kind:
            return kinds.storage_resource(r)
    raise KeyError(f"unknown kind {kind!r} in group {group!r}")


def validate(group: str, kind: str, obj: dict, old: dict | None = None, *, request_group: str | None = None,
             subresource: str = "") -> Errors:
    """The field errors of creating `obj` (old is None) or of updating `old` to `obj`.

    `obj` is in the storage version of its kind (autoscaling/v1 HPAs are accepted as they are),
    decoded, defaulted, with its generated name and uid, after `prepare`. `request_group` is the API group the request came in through when it differs
    (e.g. "extensions" for a legacy Deployment, whose selector stays mutable).
    """
    resource = _storage_resource(group, kind)
    definition = resource.schema_name
    ctx = Context(
        group=request_group if request_group is not None else group,
        kind=kind,
        resource_is_pod=(group, kind) == ("", "Pod"),
    )
    meta = _d(obj.get("metadata"))
    if definition not in schema.definitions():  # a legacy type whose schema is not installed
        return _dedupe(validate_object_meta(meta, resource.namespaced, validate_path_segment_name))
    if old is None:
        _top_meta_passed[0] = None
        errs = check(obj, schema.node(definition), "", ctx)
        # Upstream's generic ObjectMeta check runs once the strategy's own passed.
        if not errs and not _meta_passed_already(meta, resource.namespaced):
            errs = validate_object_meta(meta, resource.namespaced, validate_path_segment_name)
    else:
        errs = validate_object_meta(meta, resource.namespaced, validate_path_segment_name)
        errs += validate_object_meta_update(meta, _d(old.get("metadata")))
        update = _UPDATE_VALIDATORS.get((definition, subresource)) or _UPDATE_VALIDATORS.get((definition, ""))
        errs += update(obj, old, ctx) if update else descend(obj, schema.node(definition), "", ctx, skip=("metadata",))
    return _dedupe(errs)


def _dedupe(errs: Errors) -> Errors:
    seen: set[str] = set()
    out: Errors = []
    for e in errs:
        text = e.message()
        if text not in seen:
            seen.add(text)
            out.append(e)
    return out


def prepare(group: str, kind: str, obj: dict, old: dict | None = None) -> None:
    """The strategy mutations upstream makes just before validating (in place).

    Job (create): the generated selector and template labels, from metadata.uid and name.
    Service: values the client may omit on update are carried over (clusterIP, nodePorts,
    healthCheckNodePort) and spec.clusterIPs is kept in step with spec.clusterIP.
    """
    if (group, kind) == ("batch", "Job") and old is None:
        from .defaults import job_prepare_for_create  # the generated selector is a defaulting concern there

        job_prepare_for_create(obj)
    elif (group, kind) == ("", "Service"):
        _prepare_service(obj, old)


def _needs_node_port(spec: Mapping) -> bool:
    return spec.get("type") == "NodePort" or (
        spec.get("type") == "LoadBalancer" and spec.get("allocateLoadBalancerNodePorts") is not False
    )


def _prepare_service(svc: dict, old: dict | None) -> None:
    spec = svc.setdefault("spec", {})
    if old is None:
        if _s(spec.get("clusterIP")) and not _l(spec.get("clusterIPs")):
            spec["clusterIPs"] = [spec["clusterIP"]]
        return
    old_spec = _d(old.get("spec"))
    if spec.get("type") != "ExternalName" and old_spec.get("type") != "ExternalName":
        if not _s(spec.get("clusterIP")):
            spec["clusterIP"] = old_spec.get("clusterIP", "")
        if not _l(spec.get("clusterIPs")) and _l(old_spec.get("clusterIPs")):
            spec["clusterIPs"] = list(old_spec["clusterIPs"])
    if _needs_node_port(old_spec) and _needs_node_port(spec):
        used = {_i(_d(p).get("nodePort")) for p in _l(old_spec.get("ports"))} & {
            _i(_d(p).get("nodePort")) for p in _l(spec.get("ports"))
        }
        by_name = {_s(_d(p).get("name")): _i(_d(p).get("nodePort")) for p in _l(old_spec.get("ports"))}
        for port in _l(spec.get("ports")):
            if isinstance(port, dict) and not _i(port.get("nodePort")):
                previous = by_name.get(_s(port.get("name")), 0)
                if previous and previous not in used:
                    port["nodePort"] = previous
    for s in (spec,):
        if (
            s.get("type") == "LoadBalancer"
            and s.get("externalTrafficPolicy") == "Local"
            and not _i(s.get("healthCheckNodePort"))
        ):
            if old_spec.get("type") == "LoadBalancer" and old_spec.get("externalTrafficPolicy") == "Local":
                s["healthCheckNodePort"] = old_spec.get("healthCheckNodePort")
    if spec.get("clusterIP") != old_spec.get("clusterIP") and _l(spec.get("clusterIPs")) == _l(
        old_spec.get("clusterIPs")
    ):
        spec["clusterIPs"] = [spec["clusterIP"]] if _s(spec.get("clusterIP")) else []
        if not spec["clusterIPs"]:
            del spec["clusterIPs"]
