"""Defaulting, as the apiserver does it: the fields a create or update fills in before storing.

Upstream, each API version registers defaulting functions per Go type (pkg/apis/*/v1/defaults.go
and the `+default` markers of k8s.io/api), and the generated defaulters call them for every value
of that type wherever it is nested, parents first. Here the same knowledge is one registry keyed
by schema definition name: declared values, filled when the field is unset, and small functions
for the defaults that depend on other fields. One walker, `apply_defaults`, visits an object
guided by its schema and applies the entry of every definition it reaches, so the PodSpec inside a
Deployment's template gets the PodSpec defaults without anyone restating them.

When a declared field counts as unset follows the Go field it decodes into:
- a string (Go `string`): absent, null or "" (upstream checks `== ""`);
- a number or boolean (Go `*int32`, `*bool`): absent or null only, so `replicas: 0` stays 0;
- `ZeroIsUnset(n)`: a Go value-typed number, where 0 is unset too (probe timings);
- `Ptr(v)`: a Go pointer to string or int-or-string, where an explicit "" is kept;
- a list: absent, null or empty (upstream checks `len(...) == 0`);
- a dict: absent or null gets the whole default; a dict present gets its missing fields filled.

Defaults that upstream applies in a REST strategy's PrepareForCreate rather than in defaulting
(pod status and QoS class, the Job selector, the namespace finalizer) are the `*_prepare_for_create`
functions at the end, for the registry to call once the object has its uid.
"""
from __future__ import annotations

import copy
import functools
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from typing import Any, Callable, Iterator

from . import schema

Compute = Callable[[dict], None]

CORE = "io.k8s.api.core.v1."
APPS = "io.k8s.api.apps.v1."
BATCH = "io.k8s.api.batch.v1."
AUTOSCALING = "io.k8s.api.autoscaling.v2."
NETWORKING = "io.k8s.api.networking.v1."
STORAGE = "io.k8s.api.storage.v1."
DISCOVERY = "io.k8s.api.discovery.v1."
RBAC = "io.k8s.api.rbac.v1."

RBAC_GROUP = "rbac.authorization.k8s.io"
MAX_INT32 = 2**31 - 1


@dataclass(frozen=True)
class ZeroIsUnset:
    """A default for a Go value-typed number (int32, not *int32): 0 counts as unset."""

    value: int


@dataclass(frozen=True)
class Ptr:
    """A default for a Go pointer field holding a string: only absence or null counts as unset."""

    value: Any


@dataclass
class Defaults:
    """What one definition declares: values filled first, then the compute functions in order."""

    values: dict = field(default_factory=dict)
    compute: list[Compute] = field(default_factory=list)

    def apply(self, obj: dict) -> None:
        _fill(obj, self.values)
        for fn in self.compute:
            fn(obj)


_registry: dict[str, Defaults] = {}


def register(definition: str, values: dict | None = None, compute: Compute | None = None) -> None:
    """Add defaults for a definition; values merge into any already declared, compute appends."""
    entry = _registry.setdefault(definition, Defaults())
    _plans.clear()
    if values:
        _merge(entry.values, values)
    if compute is not None:
        entry.compute.append(compute)


def defaults_for(definition: str) -> Defaults:
    """The defaults declared for a definition, values as plain JSON (a copy; empty when none)."""
    entry = _registry.get(definition)
    if entry is None:
        return Defaults()
    return Defaults(_plain(entry.values), list(entry.compute))


def apply_defaults(obj: Any, node: schema.Node, skip: tuple[str, ...] = ()) -> None:
    """Fill defaults into `obj` in place, at every position whose definition declares some.

    Parents are defaulted before their children, as upstream's generated defaulters do, and
    children added by a parent's defaults are visited too. Fields named in `skip` (at the top
    level only) are left as they are. Only the parts of the schema that lead to a definition with
    defaults are walked (`_plan`): a pod's metadata, env and resources are not visited at all.
    """
    plan = _plan(node)
    if plan is None:
        return
    if isinstance(obj, dict):
        if plan.entry is not None:
            plan.entry.apply(obj)
        if plan.fields:
            for key in list(obj):
                sub = plan.fields.get(key)
                if sub is not None and key not in skip:
                    apply_defaults(obj[key], sub)
        elif (values := plan.values) is not None:
            for value in list(obj.values()):
                apply_defaults(value, values)
    elif isinstance(obj, list) and (items := plan.items) is not None:
        for value in obj:
            apply_defaults(value, items)


@dataclass(frozen=True)
class _Plan:
    """What `apply_defaults` does at one schema position: the entry of its definition, and the
    children (fields, map values or list items) below which some definition declares defaults."""

    entry: Defaults | None
    fields: dict[str, schema.Node]
    values: schema.Node | None
    items: schema.Node | None


_plans: dict[schema.Node, _Plan | None] = {}  # None: nothing below the position is ever defaulted
_UNKNOWN = object()
_WORKING_OUT = _Plan(None, {}, None, None)


def _plan(node: schema.Node) -> _Plan | None:
    plan = _plans.get(node, _UNKNOWN)
    if plan is not _UNKNOWN:
        return plan
    # A recursive schema (JSONSchemaProps) meets itself while its plan is worked out: the
    # provisional plan counts as defaulted, which at worst walks a little more than needed.
    _plans[node] = _WORKING_OUT
    entry = _registry.get(node.ref) if node.ref else None
    fields = {key: sub for key, sub in node.fields() if _plan(sub) is not None} if node.properties else {}
    values = node.values if not node.properties and node.values is not None and _plan(node.values) else None
    items = node.items if node.items is not None and _plan(node.items) else None
    plan = _Plan(entry, fields, values, items) if entry or fields or values or items else None
    _plans[node] = plan
    return plan


# --- filling declared values ------------------------------------------------------------------

def _unset(value: Any, default: Any) -> bool:
    if value is None:
        return True
    if isinstance(default, Ptr):
        return False
    if isinstance(default, ZeroIsUnset):
        return value == 0
    if isinstance(default, str):
        return value == ""
    if isinstance(default, list):
        return value == []
    return False


def _plain(value: Any) -> Any:
    """A fresh JSON copy of a declared value, markers replaced by what they hold."""
    if isinstance(value, (Ptr, ZeroIsUnset)):
        return _plain(value.value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _fill(obj: dict, values: dict) -> None:
    for key, default in values.items():
        current = obj.get(key)
        if isinstance(default, dict) and isinstance(current, dict):
            _fill(current, default)
        elif _unset(current, default):
            obj[key] = _plain(default)


def _merge(into: dict, values: dict) -> None:
    """Merge declared values into a registry entry, copying so entries never share a dict."""
    for key, value in values.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = copy.deepcopy(value)


# --- small helpers for the computed defaults ---------------------------------------------------

def _child(obj: dict, key: str) -> dict:
    """obj[key] as a dict, created when absent or null (a Go value-typed struct always exists)."""
    value = obj.get(key)
    if value is None:
        value = obj[key] = {}
    return value if isinstance(value, dict) else {}


def _at(obj: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def _dicts(obj: Any, *keys: str) -> Iterator[dict]:
    """The dict items of the lists obj[key] for each key (containers, initContainers, ...)."""
    for key in keys:
        items = _at(obj, key)
        if isinstance(items, list):
            yield from (item for item in items if isinstance(item, dict))


def _unset_str(value: Any) -> bool:
    return value is None or value == ""


def _computes(*definitions: str) -> Callable[[Compute], Compute]:
    def decorate(fn: Compute) -> Compute:
        for definition in definitions:
            register(definition, compute=fn)
        return fn
    return decorate


# --- declared values -----------------------------------------------------------------------------

_CONTAINER = {"terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File"}
_RBD = {"pool": "rbd", "user": "admin", "keyring": "/etc/ceph/keyring"}
_SCALE_IO = {"storageMode": "ThinProvisioned", "fsType": "xfs"}
_FILE_MODE = {"defaultMode": 0o644}
_ROLE_REF = {"roleRef": {"apiGroup": RBAC_GROUP}}
# An HPA without metrics scales on CPU (autoscaling.DefaultCPUUtilization).
_CPU_METRIC = {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization",
                                                                          "averageUtilization": 80}}}

DECLARED: dict[str, dict] = {
    # core/v1: pods and everything a pod template holds
    CORE + "Pod": {"spec": {"enableServiceLinks": True}},  # Pod only: templates keep it unset
    CORE + "PodSpec": {"dnsPolicy": "ClusterFirst", "restartPolicy": "Always", "securityContext": {},
                       "terminationGracePeriodSeconds": 30, "schedulerName": "default-scheduler"},
    CORE + "Container": _CONTAINER,
    CORE + "EphemeralContainer": _CONTAINER,
    CORE + "ContainerPort": {"protocol": "TCP"},
    CORE + "Probe": {"timeoutSeconds": ZeroIsUnset(1), "periodSeconds": ZeroIsUnset(10),
                     "successThreshold": ZeroIsUnset(1), "failureThreshold": ZeroIsUnset(3)},
    CORE + "HTTPGetAction": {"path": "/", "scheme": "HTTP"},
    CORE + "GRPCAction": {"service": Ptr("")},
    CORE + "ObjectFieldSelector": {"apiVersion": "v1"},
    CORE + "HostPathVolumeSource": {"type": Ptr("")},
    CORE + "SecretVolumeSource": _FILE_MODE,
    CORE + "ConfigMapVolumeSource": _FILE_MODE,
    CORE + "DownwardAPIVolumeSource": _FILE_MODE,
    CORE + "ProjectedVolumeSource": _FILE_MODE,
    CORE + "ServiceAccountTokenProjection": {"expirationSeconds": 3600},
    CORE + "ISCSIVolumeSource": {"iscsiInterface": "default"},
    CORE + "ISCSIPersistentVolumeSource": {"iscsiInterface": "default"},
    CORE + "RBDVolumeSource": _RBD,
    CORE + "RBDPersistentVolumeSource": _RBD,
    CORE + "ScaleIOVolumeSource": _SCALE_IO,
    CORE + "ScaleIOPersistentVolumeSource": _SCALE_IO,
    CORE + "AzureDiskVolumeSource": {"cachingMode": Ptr("ReadWrite"), "kind": Ptr("Shared"),
                                     "fsType": Ptr("ext4"), "readOnly": False},
    # core/v1: the other kinds
    CORE + "ReplicationController": {"spec": {"replicas": 1}},
    CORE + "ServicePort": {"protocol": "TCP"},
    CORE + "EndpointPort": {"protocol": "TCP"},
    CORE + "Secret": {"type": "Opaque"},
    CORE + "PersistentVolume": {"spec": {"persistentVolumeReclaimPolicy": "Retain",
                                         "volumeMode": Ptr("Filesystem")},
                                "status": {"phase": "Pending"}},
    CORE + "PersistentVolumeClaim": {"spec": {}, "status": {"phase": "Pending"}},
    CORE + "PersistentVolumeClaimSpec": {"volumeMode": Ptr("Filesystem")},
    CORE + "Namespace": {"status": {"phase": "Active"}},
    # apps/v1
    APPS + "Deployment": {"spec": {"replicas": 1, "revisionHistoryLimit": 10, "progressDeadlineSeconds": 600}},
    APPS + "ReplicaSet": {"spec": {"replicas": 1}},
    APPS + "StatefulSet": {"spec": {"podManagementPolicy": "OrderedReady", "replicas": 1, "revisionHistoryLimit": 10,
                                    "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Retain",
                                                                             "whenScaled": "Retain"}}},
    APPS + "DaemonSet": {"spec": {"revisionHistoryLimit": 10}},
    # batch/v1
    BATCH + "Job": {"spec": {"completionMode": Ptr("NonIndexed"), "suspend": False, "manualSelector": False}},
    BATCH + "CronJob": {"spec": {"concurrencyPolicy": "Allow", "suspend": False, "successfulJobsHistoryLimit": 3,
                                 "failedJobsHistoryLimit": 1}},
    BATCH + "PodFailurePolicyOnPodConditionsPattern": {"status": "True"},
    # autoscaling/v2
    AUTOSCALING + "HorizontalPodAutoscaler": {"spec": {"minReplicas": 1, "metrics": [_CPU_METRIC]}},
    # networking.k8s.io/v1, storage.k8s.io/v1, discovery.k8s.io/v1, rbac.authorization.k8s.io/v1
    NETWORKING + "NetworkPolicyPort": {"protocol": Ptr("TCP")},
    STORAGE + "StorageClass": {"reclaimPolicy": Ptr("Delete"), "volumeBindingMode": Ptr("Immediate")},
    "io.k8s.api.scheduling.v1.PriorityClass": {"preemptionPolicy": Ptr("PreemptLowerPriority")},
    DISCOVERY + "EndpointPort": {"name": Ptr(""), "protocol": Ptr("TCP")},
    RBAC + "RoleBinding": _ROLE_REF,
    RBAC + "ClusterRoleBinding": _ROLE_REF,
}

# Go value-typed structs: decoding always creates them, so the apiserver returns them even empty
# (`resources: {}` in every container). Not defaults upstream, but just as visible in its output.
ALWAYS_PRESENT: dict[str, dict] = {
    CORE + "Container": {"resources": {}},
    CORE + "EphemeralContainer": {"resources": {}},
    CORE + "PodTemplateSpec": {"metadata": {}},
    CORE + "PersistentVolumeClaimSpec": {"resources": {}},
    CORE + "PersistentVolumeClaimTemplate": {"metadata": {}},
    BATCH + "JobTemplateSpec": {"metadata": {}},
    NETWORKING + "NetworkPolicy": {"spec": {"podSelector": {}}},
    DISCOVERY + "Endpoint": {"conditions": {}},
}

for _table in (DECLARED, ALWAYS_PRESENT):
    for _definition, _values in _table.items():
        register(_definition, _values)


# --- computed defaults: core/v1 ------------------------------------------------------------------

@_computes(CORE + "Pod")
def _pod(pod: dict) -> None:
    spec = _child(pod, "spec")
    containers = list(_dicts(spec, "containers", "initContainers"))
    # Requests default to limits, in Pods only (not templates), before anything else is defaulted.
    for container in containers:
        _requests_from_limits(container)
    if spec.get("hostNetwork") is True:
        for container in containers:
            for port in _dicts(container, "ports"):
                if not port.get("hostPort") and port.get("containerPort") is not None:
                    port["hostPort"] = port["containerPort"]


def _requests_from_limits(container: dict) -> None:
    resources = container.get("resources")
    limits = _at(resources, "limits")
    if not isinstance(limits, dict) or not limits:
        return
    requests = resources.get("requests")
    if requests is None:
        requests = resources["requests"] = {}
    if isinstance(requests, dict):
        for name, quantity in limits.items():
            requests.setdefault(name, quantity)


@_computes(CORE + "Container", CORE + "EphemeralContainer")
def _image_pull_policy(container: dict) -> None:
    if _unset_str(container.get("imagePullPolicy")):
        container["imagePullPolicy"] = pull_policy_for(container.get("image"))


@_computes(CORE + "ImageVolumeSource")
def _image_volume_pull_policy(source: dict) -> None:
    if _unset_str(source.get("pullPolicy")):
        source["pullPolicy"] = pull_policy_for(source.get("reference"))


@_computes(CORE + "Volume")
def _volume_source(volume: dict) -> None:
    """A volume that names no source is an emptyDir."""
    if all(volume.get(source) is None for source in _volume_sources()):
        volume["emptyDir"] = {}


@functools.cache
def _volume_sources() -> frozenset[str]:
    return frozenset(schema.node(CORE + "Volume").properties) - {"name"}


@_computes(CORE + "ReplicationController")
def _rc_selector(rc: dict) -> None:
    spec = _child(rc, "spec")
    template_labels = _at(spec, "template", "metadata", "labels")
    if isinstance(template_labels, dict) and template_labels and not spec.get("selector"):
        spec["selector"] = dict(template_labels)
    _labels_from_template(rc)


def _labels_from_template(obj: dict) -> None:
    """Empty object labels become the pod template's (ReplicationController, Job)."""
    template_labels = _at(obj, "spec", "template", "metadata", "labels")
    meta = _child(obj, "metadata")
    if isinstance(template_labels, dict) and template_labels and not meta.get("labels"):
        meta["labels"] = dict(template_labels)


@_computes(CORE + "Service")
def _service(svc: dict) -> None:
    spec = _child(svc, "spec")
    if _unset_str(spec.get("sessionAffinity")):
        spec["sessionAffinity"] = "None"
    if spec["sessionAffinity"] == "None":
        spec.pop("sessionAffinityConfig", None)
    elif spec["sessionAffinity"] == "ClientIP" and _at(spec, "sessionAffinityConfig", "clientIP",
                                                        "timeoutSeconds") is None:
        spec["sessionAffinityConfig"] = {"clientIP": {"timeoutSeconds": 10800}}
    if _unset_str(spec.get("type")):
        spec["type"] = "ClusterIP"
    kind = spec["type"]
    externally_accessible = kind in ("NodePort", "LoadBalancer") or (kind == "ClusterIP"
                                                                     and bool(spec.get("externalIPs")))
    if externally_accessible and _unset_str(spec.get("externalTrafficPolicy")):
        spec["externalTrafficPolicy"] = "Cluster"
    if spec.get("internalTrafficPolicy") is None and kind in ("ClusterIP", "NodePort", "LoadBalancer"):
        spec["internalTrafficPolicy"] = "Cluster"
    if kind == "LoadBalancer":
        if spec.get("allocateLoadBalancerNodePorts") is None:
            spec["allocateLoadBalancerNodePorts"] = True
        for ingress in _dicts(_at(svc, "status", "loadBalancer"), "ingress"):
            if ingress.get("ip") and ingress.get("ipMode") is None:
                ingress["ipMode"] = "VIP"


@_computes(CORE + "ServicePort")
def _target_port(port: dict) -> None:
    if port.get("targetPort") in (None, 0, "") and port.get("port") is not None:
        port["targetPort"] = port["port"]


@_computes(CORE + "Namespace")
def _namespace_name_label(ns: dict) -> None:
    meta = _child(ns, "metadata")
    if meta.get("name"):
        labels = meta.get("labels")
        if not isinstance(labels, dict):
            labels = meta["labels"] = {}
        labels["kubernetes.io/metadata.name"] = meta["name"]


@_computes(CORE + "NodeStatus")
def _allocatable(status: dict) -> None:
    capacity = status.get("capacity")
    if status.get("allocatable") is None and isinstance(capacity, dict) and capacity:
        status["allocatable"] = dict(capacity)


@_computes(CORE + "LimitRangeItem")
def _limit_range_defaults(item: dict) -> None:
    """Container limits: the default limit falls back to max, the default request to it, then to min."""
    if item.get("type") != "Container":
        return
    for target, source in (("default", "max"), ("defaultRequest", "default"), ("defaultRequest", "min")):
        missing = {k: v for k, v in (item.get(source) or {}).items() if k not in (item.get(target) or {})}
        if missing:
            item[target] = {**(item.get(target) or {}), **missing}


# --- computed defaults: apps/v1 ------------------------------------------------------------------

@_computes(APPS + "Deployment")
def _deployment_strategy(deployment: dict) -> None:
    strategy = _child(_child(deployment, "spec"), "strategy")
    if _unset_str(strategy.get("type")):
        strategy["type"] = "RollingUpdate"
    if strategy["type"] == "RollingUpdate":
        _fill(_child(strategy, "rollingUpdate"), {"maxUnavailable": Ptr("25%"), "maxSurge": Ptr("25%")})


@_computes(APPS + "DaemonSet")
def _daemonset_strategy(ds: dict) -> None:
    strategy = _child(_child(ds, "spec"), "updateStrategy")
    if _unset_str(strategy.get("type")):
        strategy["type"] = "RollingUpdate"
    if strategy["type"] == "RollingUpdate":
        _fill(_child(strategy, "rollingUpdate"), {"maxUnavailable": 1, "maxSurge": 0})


@_computes(APPS + "StatefulSet")
def _statefulset_strategy(sts: dict) -> None:
    strategy = _child(_child(sts, "spec"), "updateStrategy")
    if _unset_str(strategy.get("type")):
        strategy["type"] = "RollingUpdate"
        if strategy.get("rollingUpdate") is None:
            strategy["rollingUpdate"] = {}
    # An explicit RollingUpdate without rollingUpdate stays without it.
    rolling = strategy.get("rollingUpdate")
    if strategy["type"] == "RollingUpdate" and isinstance(rolling, dict):
        _fill(rolling, {"partition": 0, "maxUnavailable": 1})  # MaxUnavailableStatefulSet is on in 1.35


# --- computed defaults: batch/v1, autoscaling/v2, networking, rbac -------------------------------

@_computes(BATCH + "Job")
def _job(job: dict) -> None:
    spec = _child(job, "spec")
    if spec.get("completions") is None and spec.get("parallelism") is None:
        spec["completions"] = 1
    if spec.get("parallelism") is None:
        spec["parallelism"] = 1
    if spec.get("backoffLimit") is None:
        spec["backoffLimit"] = MAX_INT32 if spec.get("backoffLimitPerIndex") is not None else 6
    if spec.get("podReplacementPolicy") is None:
        spec["podReplacementPolicy"] = "Failed" if spec.get("podFailurePolicy") is not None else "TerminatingOrFailed"
    _labels_from_template(job)


_SCALE_UP = {"stabilizationWindowSeconds": 0, "selectPolicy": "Max",
             "policies": [{"type": "Pods", "value": 4, "periodSeconds": 15},
                          {"type": "Percent", "value": 100, "periodSeconds": 15}]}
# No scale-down stabilization window: the controller manager's flag supplies it.
_SCALE_DOWN = {"selectPolicy": "Max", "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}]}


@_computes(AUTOSCALING + "HorizontalPodAutoscaler")
def _hpa_behavior(hpa: dict) -> None:
    """A behavior given gets both scaling rules completed; fields the client set win."""
    behavior = _at(hpa, "spec", "behavior")
    if not isinstance(behavior, dict):
        return
    for direction, default in (("scaleUp", _SCALE_UP), ("scaleDown", _SCALE_DOWN)):
        rules = _plain(default)
        given = behavior.get(direction)
        if isinstance(given, dict):
            rules.update({k: v for k, v in given.items() if v is not None})
        behavior[direction] = rules


@_computes(NETWORKING + "NetworkPolicy")
def _policy_types(policy: dict) -> None:
    spec = _child(policy, "spec")
    if not spec.get("policyTypes"):
        spec["policyTypes"] = ["Ingress", "Egress"] if spec.get("egress") else ["Ingress"]


@_computes(NETWORKING + "IngressClass")
def _ingress_class_scope(ingress_class: dict) -> None:
    parameters = _at(ingress_class, "spec", "parameters")
    if isinstance(parameters, dict) and parameters.get("scope") is None:
        parameters["scope"] = "Cluster"


@_computes(RBAC + "Subject")
def _subject_api_group(subject: dict) -> None:
    # ServiceAccount subjects default to the core group "", which the apiserver omits anyway.
    if _unset_str(subject.get("apiGroup")) and subject.get("kind") in ("User", "Group"):
        subject["apiGroup"] = RBAC_GROUP


# --- image references ----------------------------------------------------------------------------

_DOMAIN_PART = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = re.compile(rf"(?:{_DOMAIN_PART}(?:\.{_DOMAIN_PART})*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?")
_PATH_PART = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REMAINDER = re.compile(
    rf"(?P<path>{_PATH_PART}(?:/{_PATH_PART})*)"
    r"(?::(?P<tag>\w[\w.-]{0,127}))?"
    r"(?:@(?P<digest>[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}))?",
    re.ASCII)
_IMAGE_ID = re.compile(r"[a-f0-9]{64}")
_NAME_MAX = 255


def image_tag(image: Any) -> str:
    """The tag of an image reference as the kubelet reads it (docker reference grammar).

    "latest" when neither tag nor digest is given; "" for a digest-only or unparsable reference.
    """
    if not isinstance(image, str) or _IMAGE_ID.fullmatch(image):
        return ""
    slash = image.find("/")
    head = image[:slash]
    if slash == -1 or (not any(c in head for c in ".:") and head != "localhost" and head.lower() == head):
        domain, rest = "docker.io", image
    else:
        domain, rest = head, image[slash + 1:]
    repository = rest.split(":", 1)[0]
    match = _REMAINDER.fullmatch(rest)
    if repository.lower() != repository or match is None or not _DOMAIN.fullmatch(domain):
        return ""
    library = "library/" if domain == "docker.io" and "/" not in match["path"] else ""
    if len(domain) + 1 + len(library) + len(match["path"]) > _NAME_MAX:
        return ""
    if match["tag"]:
        return match["tag"]
    return "" if match["digest"] else "latest"


def pull_policy_for(image: Any) -> str:
    return "Always" if image_tag(image) == "latest" else "IfNotPresent"


# --- what REST strategies set on create ----------------------------------------------------------

APPARMOR_ANNOTATION_PREFIX = "container.apparmor.security.beta.kubernetes.io/"
JOB_NAME_LABELS = ("job-name", "batch.kubernetes.io/job-name")
CONTROLLER_UID_LABELS = ("controller-uid", "batch.kubernetes.io/controller-uid")
CONTROLLER_UID_LABEL = "batch.kubernetes.io/controller-uid"
NAMESPACE_FINALIZER = "kubernetes"


def pod_prepare_for_create(pod: dict) -> None:
    """A new Pod: generation 1, status Pending with its QoS class, and the other create-time mutations."""
    _child(pod, "metadata")["generation"] = 1
    qos = _at(pod, "status", "qosClass") or pod_qos_class(pod)
    pod["status"] = {"phase": "Pending", "qosClass": qos}
    spec = _child(pod, "spec")
    if spec.get("schedulingGates"):
        pod["status"]["conditions"] = [{
            "type": "PodScheduled", "status": "False", "lastProbeTime": None, "lastTransitionTime": _now(),
            "reason": "SchedulingGated", "message": "Scheduling is blocked due to non-empty scheduling gates"}]
    labels = _at(pod, "metadata", "labels") or {}
    _merge_affinity_label_keys(spec, labels)
    _merge_spread_label_keys(spec, labels)
    _sync_apparmor_annotations(pod)


def job_prepare_for_create(job: dict) -> None:
    """Generate a Job's selector and pod labels from its name and uid (call after the uid is set).

    Unless manualSelector is true, the template gets `job-name`, `controller-uid` and their
    `batch.kubernetes.io/` forms, and the selector matches the uid. Empty Job labels then take the
    template's, as upstream's defaulting does again when it reads the stored Job.
    """
    spec = _child(job, "spec")
    if not spec.get("manualSelector"):
        meta = _child(job, "metadata")
        labels = _child(_child(_child(spec, "template"), "metadata"), "labels")
        for key in JOB_NAME_LABELS:
            labels.setdefault(key, meta.get("name", ""))
        for key in CONTROLLER_UID_LABELS:
            labels.setdefault(key, meta.get("uid", ""))
        _child(_child(spec, "selector"), "matchLabels").setdefault(CONTROLLER_UID_LABEL, meta.get("uid", ""))
    _labels_from_template(job)


def namespace_prepare_for_create(ns: dict) -> None:
    """A new Namespace is Active and carries the `kubernetes` finalizer (not a default: it may be removed later)."""
    ns["status"] = {"phase": "Active"}
    spec = _child(ns, "spec")
    finalizers = spec.get("finalizers") or []
    if NAMESPACE_FINALIZER not in finalizers:
        spec["finalizers"] = [*finalizers, NAMESPACE_FINALIZER]


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _merge_affinity_label_keys(spec: dict, labels: dict) -> None:
    """matchLabelKeys / mismatchLabelKeys of pod (anti-)affinity terms become selector requirements."""
    for kind in ("podAffinity", "podAntiAffinity"):
        affinity = _at(spec, "affinity", kind)
        terms = list(_dicts(affinity, "requiredDuringSchedulingIgnoredDuringExecution"))
        terms += [t["podAffinityTerm"] for t in _dicts(affinity, "preferredDuringSchedulingIgnoredDuringExecution")
                  if isinstance(t.get("podAffinityTerm"), dict)]
        for term in terms:
            _require_label_values(term, "matchLabelKeys", "In", labels)
            _require_label_values(term, "mismatchLabelKeys", "NotIn", labels)


def _merge_spread_label_keys(spec: dict, labels: dict) -> None:
    for constraint in _dicts(spec, "topologySpreadConstraints"):
        _require_label_values(constraint, "matchLabelKeys", "In", labels)


def _require_label_values(term: dict, keys_field: str, operator: str, labels: dict) -> None:
    selector = term.get("labelSelector")
    if not isinstance(selector, dict):
        return  # a null selector matches nothing; there is nothing to narrow
    for key in term.get(keys_field) or ():
        if key in labels:
            expressions = selector.get("matchExpressions")
            if not isinstance(expressions, list):
                expressions = selector["matchExpressions"] = []
            expressions.append({"key": key, "operator": operator, "values": [labels[key]]})


def _sync_apparmor_annotations(pod: dict) -> None:
    """The deprecated per-container AppArmor annotations become securityContext.appArmorProfile fields."""
    spec = _child(pod, "spec")
    annotations = _at(pod, "metadata", "annotations") or {}
    if _at(spec, "os", "name") == "windows" or not annotations:
        return
    pod_profile = _at(spec, "securityContext", "appArmorProfile")
    for container in _dicts(spec, "initContainers", "containers", "ephemeralContainers"):
        value = annotations.get(APPARMOR_ANNOTATION_PREFIX + str(container.get("name")))
        if value is None or _at(container, "securityContext", "appArmorProfile") is not None:
            continue
        profile = _apparmor_profile(value)
        if profile is not None and profile != pod_profile:
            _child(container, "securityContext")["appArmorProfile"] = profile


def _apparmor_profile(annotation: str) -> dict | None:
    if annotation == "unconfined":
        return {"type": "Unconfined"}
    if annotation == "runtime/default":
        return {"type": "RuntimeDefault"}
    name = annotation.removeprefix("localhost/")
    if annotation.startswith("localhost/") and name and name.strip() == name and len(name) <= 4095:
        return {"type": "Localhost", "localhostProfile": name}
    return None


# --- QoS class -----------------------------------------------------------------------------------

QOS_RESOURCES = frozenset({"cpu", "memory"})
_QUANTITY = re.compile(r"([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))(?:[eE]([+-]?[0-9]+)|(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]))?")
_BINARY_POWER = {"Ki": 1, "Mi": 2, "Gi": 3, "Ti": 4, "Pi": 5, "Ei": 6}
_DECIMAL_EXPONENT = {"n": -9, "u": -6, "m": -3, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}


def _quantity(value: Any) -> Decimal:
    """A resource quantity's value (0 for what does not parse; validation reports those)."""
    if isinstance(value, bool):
        return Decimal(0)
    match = _QUANTITY.fullmatch(str(value))
    if match is None:
        return Decimal(0)
    try:
        number = Decimal(match[1])
    except InvalidOperation:
        return Decimal(0)
    if match[2]:
        return number.scaleb(int(match[2]))
    if suffix := match[3]:
        if suffix in _BINARY_POWER:
            return number * Decimal(1024) ** _BINARY_POWER[suffix]
        return number.scaleb(_DECIMAL_EXPONENT[suffix])
    return number


def _add_quantities(totals: dict[str, Decimal], resources: Any) -> set[str]:
    """Add the positive cpu/memory quantities of a resource list; return the names added."""
    added = set()
    for name, quantity in (resources or {}).items() if isinstance(resources, dict) else ():
        amount = _quantity(quantity)
        if name in QOS_RESOURCES and amount > 0:
            totals[name] = totals.get(name, Decimal(0)) + amount
            added.add(name)
    return added


def is_sidecar(container: dict) -> bool:
    """A restartable init container (KEP-753): starts in order with the init containers, then
    runs beside the app containers for the pod's whole life."""
    return container.get("restartPolicy") == "Always"


def sidecars(spec: dict) -> list[dict]:
    return [c for c in spec.get("initContainers") or () if is_sidecar(c)]


def pod_qos_class(pod: dict) -> str:
    """Guaranteed, Burstable or BestEffort, from cpu and memory requests and limits.

    Pod-level resources, when given, decide alone; otherwise every container and init container
    counts, and Guaranteed needs cpu and memory limits on each with requests equal to limits.
    """
    spec = pod.get("spec") if isinstance(pod.get("spec"), dict) else {}
    requests: dict[str, Decimal] = {}
    limits: dict[str, Decimal] = {}
    guaranteed = True
    pod_resources = spec.get("resources")
    if isinstance(pod_resources, dict):
        _add_quantities(requests, pod_resources.get("requests"))
        if pod_resources.get("limits"):
            guaranteed = _add_quantities(limits, pod_resources["limits"]) >= QOS_RESOURCES
    else:
        for container in _dicts(spec, "containers", "initContainers"):
            resources = container.get("resources")
            _add_quantities(requests, _at(resources, "requests"))
            if not _add_quantities(limits, _at(resources, "limits")) >= QOS_RESOURCES:
                guaranteed = False
    if not requests and not limits:
        return "BestEffort"
    if guaranteed and requests == limits:
        return "Guaranteed"
    return "Burstable"
