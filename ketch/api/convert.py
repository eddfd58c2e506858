"""Conversion between the versions a kind is served in and the version it is stored in.

Every kind has one storage version (`stored_as` in `ketch.api.kinds`). `convert` takes an object of
any served version to the storage version of its kind, or from there out to any served version,
doing what upstream's conversion functions do on the way through the internal version: fields that
moved are moved, and fields a version lacks travel in the annotations upstream used for them, so a
round trip through a narrower version loses nothing.

Conversion does not default. The write path is: `legacy.apply_legacy_defaults` on the object as
sent, `convert` to the storage version, then the storage version's defaults.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import orjson

from . import kinds
from .jsonclone import clone


class ConversionError(ValueError):
    """The object cannot be expressed in the requested version."""


def storage_version_of(group: str, kind: str) -> str:
    """The apiVersion objects of `kind` served by `group` are stored in, e.g. ('extensions', 'Ingress')
    → 'networking.k8s.io/v1'."""
    for r in kinds.RESOURCES:
        if r.group == group and r.kind == kind:
            return r.storage_gv
    raise ConversionError(f'no kind "{kind}" is registered for group "{group}"')


def convert(obj: dict, to_api_version: str) -> dict:
    """`obj` (carrying its own apiVersion and kind) expressed in `to_api_version`, as a new dict.

    Either side must be the storage version of the kind, or both served versions of one kind (the
    conversion then goes through the storage version). A `<Kind>List` is converted item by item.
    Converting to the version the object is already in returns `obj` itself.
    """
    api_version = obj.get("apiVersion", "")
    if api_version == to_api_version:
        return obj
    source, target = _group_version(api_version), _group_version(to_api_version)
    kind = obj.get("kind", "")
    out = clone(obj)
    if kinds.by_kind(*source, kind) is None and kind.endswith("List") and isinstance(out.get("items"), list):
        item_kind = kind.removesuffix("List")
        out["items"] = [_convert_item(item, source, item_kind, target) for item in out["items"]]
    else:
        out = _convert_one(out, source, kind, target)
    out["apiVersion"] = to_api_version
    return out


def _group_version(api_version: str) -> tuple[str, str]:
    group, _, version = api_version.rpartition("/")
    return group, version


def _convert_item(item: Any, list_source: tuple[str, str], kind: str, target: tuple[str, str]) -> Any:
    if not isinstance(item, dict):
        return item
    source = _group_version(item["apiVersion"]) if item.get("apiVersion") else list_source
    out = _convert_one(item, source, kind, target)
    if "apiVersion" in item:
        out["apiVersion"] = f"{target[0]}/{target[1]}" if target[0] else target[1]
    return out


def _convert_one(obj: dict, source: tuple[str, str], kind: str, target: tuple[str, str]) -> dict:
    """Convert `obj` (a private copy, changed in place where convenient) from source to target."""
    if source == target:
        return obj
    have, want = kinds.by_kind(*source, kind), kinds.by_kind(*target, kind)
    for gv, resource in ((source, have), (target, want)):
        if resource is None:
            raise ConversionError(f'no kind "{kind}" is registered for version "{_api_version(gv)}"')
    storage = (have.storage_group, have.storage_version)
    if (want.storage_group, want.storage_version) != storage:
        raise ConversionError(f"{_api_version(source)} {kind} cannot be converted to {_api_version(target)}")
    if source != storage:
        obj = _ROUTES.get((*source, kind), _SAME).to_storage(obj)
    if target != storage:
        obj = _ROUTES.get((*target, kind), _SAME).from_storage(obj)
    return obj


def _api_version(gv: tuple[str, str]) -> str:
    return f"{gv[0]}/{gv[1]}" if gv[0] else gv[1]


Step = Callable[[dict], dict]


def _same(obj: dict) -> dict:
    return obj


@dataclass(frozen=True)
class _Route:
    """How one served version reaches the storage version of its kind, and back."""

    to_storage: Step = _same
    from_storage: Step = _same


_SAME = _Route()


# --- small helpers on objects -----------------------------------------------------------------------

_INTEGER = re.compile(r"[+-]?\d+")  # what Go's strconv.ParseInt accepts


def _child(parent: dict, key: str) -> dict:
    value = parent.get(key)
    if not isinstance(value, dict):
        value = parent[key] = {}
    return value


def _annotations(obj: dict) -> dict:
    return _child(_child(obj, "metadata"), "annotations")


def _annotation(obj: dict, key: str) -> str | None:
    meta = obj.get("metadata")
    annotations = meta.get("annotations") if isinstance(meta, dict) else None
    return annotations.get(key) if isinstance(annotations, dict) else None


def _drop_annotations(obj: dict, keys: Iterable[str]) -> None:
    """Remove annotations, and the annotations map itself once empty (Go omits an empty map)."""
    meta = obj.get("metadata")
    annotations = meta.get("annotations") if isinstance(meta, dict) else None
    if not isinstance(annotations, dict):
        return
    for key in keys:
        annotations.pop(key, None)
    if not annotations:
        del meta["annotations"]


def _dicts(value: Any) -> list[dict]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _pick(source: Any, keys: Iterable[str]) -> dict:
    return {k: source[k] for k in keys if k in source} if isinstance(source, dict) else {}


def _compact(fields: dict) -> dict:
    return {k: v for k, v in fields.items() if v is not None}


def _renamed(obj: dict, renames: dict[str, str]) -> dict:
    """`obj` with keys renamed, in their original places."""
    return {renames.get(k, k): v for k, v in obj.items()}


# --- apps: Deployment rollbackTo and DaemonSet templateGeneration ------------------------------------
# apps/v1 has neither field; upstream keeps them in these annotations of the apps/v1 object.

ROLLBACK_TO_ANNOTATION = "deprecated.deployment.rollback.to"
TEMPLATE_GENERATION_ANNOTATION = "deprecated.daemonset.template.generation"


def _rollback_to_annotation(obj: dict) -> dict:
    spec = obj.get("spec")
    rollback = spec.pop("rollbackTo", None) if isinstance(spec, dict) else None
    if isinstance(rollback, dict):
        _annotations(obj)[ROLLBACK_TO_ANNOTATION] = str(rollback.get("revision") or 0)
    else:
        _drop_annotations(obj, [ROLLBACK_TO_ANNOTATION])
    return obj


def _rollback_to_field(obj: dict) -> dict:
    revision = _annotation(obj, ROLLBACK_TO_ANNOTATION)
    if revision and _INTEGER.fullmatch(revision):  # a malformed value stays visible as an annotation
        _drop_annotations(obj, [ROLLBACK_TO_ANNOTATION])
        _child(obj, "spec")["rollbackTo"] = {"revision": int(revision)}
    return obj


def _template_generation_annotation(obj: dict) -> dict:
    spec = obj.get("spec")
    generation = spec.pop("templateGeneration", None) if isinstance(spec, dict) else None
    if generation is not None:
        _annotations(obj)[TEMPLATE_GENERATION_ANNOTATION] = str(generation)
    return obj


def _template_generation_field(obj: dict) -> dict:
    generation = _annotation(obj, TEMPLATE_GENERATION_ANNOTATION)
    if generation is not None and _INTEGER.fullmatch(generation):
        _drop_annotations(obj, [TEMPLATE_GENERATION_ANNOTATION])
        _child(obj, "spec")["templateGeneration"] = int(generation)
    return obj


# --- extensions/v1beta1 Ingress ↔ networking.k8s.io/v1 ---------------------------------------------

def _backend_to_v1(backend: Any) -> Any:
    if not isinstance(backend, dict):
        return backend
    out = _pick(backend, ("resource",))
    name, port = backend.get("serviceName"), backend.get("servicePort")
    if name or isinstance(port, str) or port:
        if isinstance(port, str):
            service_port = {"name": port} if port else {}
        else:
            service_port = {"number": port} if port else {}
        out["service"] = {"name": name or "", "port": service_port}
    return out


def _backend_to_v1beta1(backend: Any) -> Any:
    if not isinstance(backend, dict):
        return backend
    out: dict[str, Any] = {}
    service = backend.get("service")
    if isinstance(service, dict):
        port = service.get("port") if isinstance(service.get("port"), dict) else {}
        out["serviceName"] = service.get("name", "")
        out["servicePort"] = port["name"] if port.get("name") else port.get("number", 0)
    out.update(_pick(backend, ("resource",)))
    return out


def _ingress_paths(spec: dict) -> list[dict]:
    paths: list[dict] = []
    for rule in _dicts(spec.get("rules")):
        http = rule.get("http")
        if isinstance(http, dict):
            paths.extend(_dicts(http.get("paths")))
    return paths


def _ingress_to_v1(obj: dict) -> dict:
    spec = obj.get("spec")
    if isinstance(spec, dict):
        spec = obj["spec"] = _renamed(spec, {"backend": "defaultBackend"})
        if "defaultBackend" in spec:
            spec["defaultBackend"] = _backend_to_v1(spec["defaultBackend"])
        for path in _ingress_paths(spec):
            if "backend" in path:
                path["backend"] = _backend_to_v1(path["backend"])
            if not path.get("pathType"):  # extensions/v1beta1 defaulted it so
                path["pathType"] = "ImplementationSpecific"
    return obj


def _ingress_to_v1beta1(obj: dict) -> dict:
    spec = obj.get("spec")
    if isinstance(spec, dict):
        spec = obj["spec"] = _renamed(spec, {"defaultBackend": "backend"})
        if "backend" in spec:
            spec["backend"] = _backend_to_v1beta1(spec["backend"])
        for path in _ingress_paths(spec):
            if "backend" in path:
                path["backend"] = _backend_to_v1beta1(path["backend"])
    return obj


# --- autoscaling/v1 HorizontalPodAutoscaler ↔ autoscaling/v2 ----------------------------------------
# v1 knows only a CPU utilization target. Upstream keeps the rest of a v2 object in annotations of the
# v1 object: metrics and statuses in the shape of v1's (unpublished) metric types, the behavior as
# the JSON of the internal Go struct (capitalised field names), the conditions as they are.

METRICS_ANNOTATION = "autoscaling.alpha.kubernetes.io/metrics"
CURRENT_METRICS_ANNOTATION = "autoscaling.alpha.kubernetes.io/current-metrics"
CONDITIONS_ANNOTATION = "autoscaling.alpha.kubernetes.io/conditions"
BEHAVIOR_ANNOTATION = "autoscaling.alpha.kubernetes.io/behavior"
ROUND_TRIP_ANNOTATIONS = (METRICS_ANNOTATION, BEHAVIOR_ANNOTATION, CURRENT_METRICS_ANNOTATION,
                          CONDITIONS_ANNOTATION)
DEFAULT_CPU_UTILIZATION = 80

_HPA_SPEC_FIELDS = ("scaleTargetRef", "minReplicas", "maxReplicas")
_HPA_STATUS_FIELDS = ("observedGeneration", "lastScaleTime", "currentReplicas", "desiredReplicas")
_CONDITION_FIELDS = ("type", "status", "lastTransitionTime", "reason", "message")

# Per metric source type: (field of the v1 form, dotted path in the v2 form), in v1 field order.
_SOURCE_FIELDS: dict[str, list[tuple[str, str]]] = {
    "object": [("target", "describedObject"), ("metricName", "metric.name"), ("targetValue", "target.value"),
               ("selector", "metric.selector"), ("averageValue", "target.averageValue")],
    "pods": [("metricName", "metric.name"), ("targetAverageValue", "target.averageValue"),
             ("selector", "metric.selector")],
    "resource": [("name", "name"), ("targetAverageUtilization", "target.averageUtilization"),
                 ("targetAverageValue", "target.averageValue")],
    "containerResource": [("name", "name"), ("targetAverageUtilization", "target.averageUtilization"),
                          ("targetAverageValue", "target.averageValue"), ("container", "container")],
    "external": [("metricName", "metric.name"), ("metricSelector", "metric.selector"),
                 ("targetValue", "target.value"), ("targetAverageValue", "target.averageValue")],
}
_STATUS_FIELDS: dict[str, list[tuple[str, str]]] = {
    "object": [("target", "describedObject"), ("metricName", "metric.name"), ("currentValue", "current.value"),
               ("selector", "metric.selector"), ("averageValue", "current.averageValue")],
    "pods": [("metricName", "metric.name"), ("currentAverageValue", "current.averageValue"),
             ("selector", "metric.selector")],
    "resource": [("name", "name"), ("currentAverageUtilization", "current.averageUtilization"),
                 ("currentAverageValue", "current.averageValue")],
    "containerResource": [("name", "name"), ("currentAverageUtilization", "current.averageUtilization"),
                          ("currentAverageValue", "current.averageValue"), ("container", "container")],
    "external": [("metricName", "metric.name"), ("metricSelector", "metric.selector"),
                 ("currentValue", "current.value"), ("currentAverageValue", "current.averageValue")],
}
# v1 fields Go declares without a pointer: always written, their zero value when unset.
_SOURCE_ZEROS = {"object": {"metricName": "", "targetValue": "0"}, "pods": {"metricName": "", "targetAverageValue": "0"},
                 "resource": {"name": ""}, "containerResource": {"name": "", "container": ""},
                 "external": {"metricName": ""}}
_STATUS_ZEROS = {"object": {"metricName": "", "currentValue": "0"},
                 "pods": {"metricName": "", "currentAverageValue": "0"},
                 "resource": {"name": "", "currentAverageValue": "0"},
                 "containerResource": {"name": "", "currentAverageValue": "0", "container": ""},
                 "external": {"metricName": "", "currentValue": "0"}}


def _get_path(obj: Any, path: str) -> Any:
    for key in path.split("."):
        obj = obj.get(key) if isinstance(obj, dict) else None
    return obj


def _set_path(obj: dict, path: str, value: Any) -> None:
    *parents, last = path.split(".")
    for key in parents:
        obj = obj.setdefault(key, {})
    obj[last] = value


def _metric_to_v1(metric: dict, fields: dict[str, list[tuple[str, str]]], zeros: dict[str, dict]) -> dict:
    out: dict[str, Any] = {"type": metric.get("type", "")}
    for source_type, pairs in fields.items():
        source = metric.get(source_type)
        if isinstance(source, dict):
            converted = {v1: _get_path(source, path) for v1, path in pairs}
            out[source_type] = _compact({k: zeros[source_type].get(k) if v is None else v
                                         for k, v in converted.items()})
    return out


def _metric_to_v2(metric: dict, fields: dict[str, list[tuple[str, str]]], zeros: dict[str, dict]) -> dict:
    out: dict[str, Any] = {"type": metric.get("type", "")}
    for source_type, pairs in fields.items():
        source = metric.get(source_type)
        if isinstance(source, dict):
            values = {**zeros[source_type], **_compact(source)}
            converted: dict[str, Any] = {}
            for v1, path in pairs:
                if values.get(v1) is not None:
                    _set_path(converted, path, values[v1])
            out[source_type] = converted
    return out


def _metric_target_type(source_type: str, target: dict) -> str:
    """The v2 target type upstream infers from which v1 fields are set."""
    if source_type == "object":
        return "Value" if target.get("averageValue") is None else "AverageValue"
    if source_type == "external":
        return "AverageValue" if target.get("value") is None else "Value"
    if source_type == "pods":
        return "AverageValue"
    return "AverageValue" if target.get("averageUtilization") is None else "Utilization"


def _metric_spec_to_v2(metric: dict) -> dict:
    out = _metric_to_v2(metric, _SOURCE_FIELDS, _SOURCE_ZEROS)
    for source_type, source in out.items():
        if isinstance(source, dict):
            target = source.get("target", {})
            source["target"] = {"type": _metric_target_type(source_type, target), **target}
    return out


def _is_cpu(metric: dict, part: str) -> bool:
    """A Resource metric on cpu whose `part` (target or current) is a utilization."""
    resource = metric.get("resource") if isinstance(metric.get("resource"), dict) else {}
    return (metric.get("type") == "Resource" and resource.get("name") == "cpu"
            and _get_path(resource, f"{part}.averageUtilization") is not None)


def _cpu_target(utilization: int) -> dict:
    return {"type": "Resource",
            "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": utilization}}}


_BEHAVIOR_DIRECTIONS = ("scaleUp", "scaleDown")
_RULES_FIELDS = ("stabilizationWindowSeconds", "selectPolicy", "policies", "tolerance")
_POLICY_ZEROS = {"type": "", "value": 0, "periodSeconds": 0}


def _go_name(name: str) -> str:
    return name[0].upper() + name[1:]


def _behavior_to_go(behavior: dict) -> dict:
    """The behavior as Go marshals the internal struct: field names capitalised, nils as null."""
    def rules(r: Any) -> dict | None:
        if not isinstance(r, dict):
            return None
        out = {}
        for field in _RULES_FIELDS:
            value = r.get(field)
            if field == "policies" and isinstance(value, list):
                value = [{_go_name(k): p.get(k, zero) for k, zero in _POLICY_ZEROS.items()} for p in _dicts(value)]
            out[_go_name(field)] = value
        return out
    return {_go_name(d): rules(behavior.get(d)) for d in _BEHAVIOR_DIRECTIONS}


def _behavior_from_go(raw: Any) -> dict:
    """Read the annotation the way Go's JSON decoding does: field names matched without case."""
    def folded(d: Any) -> dict:
        return {k.lower(): v for k, v in d.items()} if isinstance(d, dict) else {}
    out = {}
    directions = folded(raw)
    for direction in _BEHAVIOR_DIRECTIONS:
        rules = folded(directions.get(direction.lower()))
        if not rules and not isinstance(directions.get(direction.lower()), dict):
            continue
        converted = {f: rules.get(f.lower()) for f in _RULES_FIELDS}
        if isinstance(converted["policies"], list):
            converted["policies"] = [_compact({k: folded(p).get(k.lower()) for k in _POLICY_ZEROS})
                                     for p in converted["policies"]]
        out[direction] = _compact(converted)
    return out


def _go_json(value: Any) -> str:
    return orjson.dumps(value).decode()


def _annotation_json(annotations: dict, key: str) -> Any:
    try:
        return orjson.loads(annotations[key])
    except orjson.JSONDecodeError as e:
        raise ConversionError(f"annotation {key}: {e}") from None


def _hpa_to_v2(obj: dict) -> dict:
    meta = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
    annotations = meta.get("annotations") if isinstance(meta.get("annotations"), dict) else {}
    spec = obj.get("spec") if isinstance(obj.get("spec"), dict) else {}

    new_spec = _pick(spec, _HPA_SPEC_FIELDS)
    metrics = []
    if METRICS_ANNOTATION in annotations:
        metrics = [_metric_spec_to_v2(m) for m in _dicts(_annotation_json(annotations, METRICS_ANNOTATION))]
    if spec.get("targetCPUUtilizationPercentage") is not None:
        metrics.append(_cpu_target(spec["targetCPUUtilizationPercentage"]))
    # v1 always meant "80% CPU" when it said nothing; upstream writes that down on conversion.
    new_spec["metrics"] = metrics or [_cpu_target(DEFAULT_CPU_UTILIZATION)]
    if BEHAVIOR_ANNOTATION in annotations:
        new_spec["behavior"] = _behavior_from_go(_annotation_json(annotations, BEHAVIOR_ANNOTATION))
    obj["spec"] = new_spec

    status = obj.get("status")
    new_status = _pick(status, _HPA_STATUS_FIELDS)
    current = []
    if isinstance(status, dict) and status.get("currentCPUUtilizationPercentage") is not None:
        current = [{"type": "Resource", "resource": {
            "name": "cpu", "current": {"averageUtilization": status["currentCPUUtilizationPercentage"]}}}]
    if CURRENT_METRICS_ANNOTATION in annotations:  # more detailed than the CPU figure alone
        current = [_metric_to_v2(m, _STATUS_FIELDS, _STATUS_ZEROS)
                   for m in _dicts(_annotation_json(annotations, CURRENT_METRICS_ANNOTATION))]
    if current:
        new_status["currentMetrics"] = current
    if CONDITIONS_ANNOTATION in annotations:
        new_status["conditions"] = [_pick(c, _CONDITION_FIELDS)
                                    for c in _dicts(_annotation_json(annotations, CONDITIONS_ANNOTATION))]
    if status is not None or new_status:
        obj["status"] = new_status
    _drop_annotations(obj, ROUND_TRIP_ANNOTATIONS)
    return obj


def _hpa_to_v1(obj: dict) -> dict:
    _drop_annotations(obj, ROUND_TRIP_ANNOTATIONS)  # only what this conversion writes may be there
    spec = obj.get("spec") if isinstance(obj.get("spec"), dict) else {}
    metrics = _dicts(spec.get("metrics"))
    new_spec = _pick(spec, _HPA_SPEC_FIELDS)
    cpu = next((m for m in metrics if m.get("type") == "Resource"
                and _get_path(m, "resource.name") == "cpu"), None)
    if cpu is not None and _is_cpu(cpu, "target"):
        new_spec["targetCPUUtilizationPercentage"] = cpu["resource"]["target"]["averageUtilization"]
    extra: dict[str, str] = {}
    others = [_metric_to_v1(m, _SOURCE_FIELDS, _SOURCE_ZEROS) for m in metrics if not _is_cpu(m, "target")]
    if others:
        extra[METRICS_ANNOTATION] = _go_json(others)

    status = obj.get("status")
    if isinstance(status, dict):
        current = _dicts(status.get("currentMetrics"))
        new_status = {**_pick(status, _HPA_STATUS_FIELDS[:2]), "currentReplicas": status.get("currentReplicas", 0),
                      "desiredReplicas": status.get("desiredReplicas", 0)}
        for metric in current:
            if _is_cpu(metric, "current"):
                new_status["currentCPUUtilizationPercentage"] = metric["resource"]["current"]["averageUtilization"]
        if current:
            extra[CURRENT_METRICS_ANNOTATION] = _go_json([_metric_to_v1(m, _STATUS_FIELDS, _STATUS_ZEROS)
                                                          for m in current])
        conditions = _dicts(status.get("conditions"))
        if conditions:
            extra[CONDITIONS_ANNOTATION] = _go_json([_pick(c, _CONDITION_FIELDS) for c in conditions])
        obj["status"] = new_status
    if isinstance(spec.get("behavior"), dict):
        extra[BEHAVIOR_ANNOTATION] = _go_json(_behavior_to_go(spec["behavior"]))
    obj["spec"] = new_spec
    if extra:
        _annotations(obj).update(extra)
    return obj


# --- events.k8s.io/v1 Event ↔ core/v1 Event ---------------------------------------------------------

_EVENT_FIELDS_TO_CORE = {
    "regarding": "involvedObject",
    "note": "message",
    "reportingController": "reportingComponent",
    "deprecatedSource": "source",
    "deprecatedFirstTimestamp": "firstTimestamp",
    "deprecatedLastTimestamp": "lastTimestamp",
    "deprecatedCount": "count",
}
_EVENT_FIELDS_TO_EVENTS = {core: events for events, core in _EVENT_FIELDS_TO_CORE.items()}


def _event_to_core(obj: dict) -> dict:
    return _renamed(obj, _EVENT_FIELDS_TO_CORE)


def _event_to_events(obj: dict) -> dict:
    return _renamed(obj, _EVENT_FIELDS_TO_EVENTS)


# --- the routes ---------------------------------------------------------------------------------------
# Served versions not listed differ from their storage version in apiVersion only (the legacy
# ReplicaSets, StatefulSets, ControllerRevisions, apps/v1beta2 Deployments and DaemonSets, CronJobs,
# StorageClasses and PodSecurityPolicies).

_ROLLBACK = _Route(_rollback_to_annotation, _rollback_to_field)
_ROUTES: dict[tuple[str, str, str], _Route] = {
    ("extensions", "v1beta1", "Deployment"): _ROLLBACK,
    ("apps", "v1beta1", "Deployment"): _ROLLBACK,
    ("extensions", "v1beta1", "DaemonSet"): _Route(_template_generation_annotation, _template_generation_field),
    ("extensions", "v1beta1", "Ingress"): _Route(_ingress_to_v1, _ingress_to_v1beta1),
    ("autoscaling", "v1", "HorizontalPodAutoscaler"): _Route(_hpa_to_v2, _hpa_to_v1),
    ("events.k8s.io", "v1", "Event"): _Route(_event_to_core, _event_to_events),
}
