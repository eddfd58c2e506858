"""Server-side printing: the meta.k8s.io/v1 Table kubectl asks for (`Accept: ...;as=Table`).

One printer per kind, as the apiserver's own (pkg/printers/internalversion): the columns it
declares and a function computing one row's cells from an object in its storage version.
The server always prints "wide", so every row carries the priority-1 columns too; kubectl
hides those unless `-o wide`. Kinds without a printer get the apiserver's default table
(Name, Created At).

Printers are keyed by the kind's storage group, so objects served through a legacy group
(extensions/v1beta1 Deployments, events.k8s.io Events) use the printer of the group they
are stored in.
"""
from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from . import defaults, kinds, quantity, schema
from . import labels as labelsel

Cells = Callable[[dict, datetime], list]

META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
CORE = "io.k8s.api.core.v1."
APPS = "io.k8s.api.apps.v1."
BATCH = "io.k8s.api.batch.v1."
EXT = "io.k8s.api.extensions.v1beta1."
BATCH_BETA = "io.k8s.api.batch.v1beta1."
SCHEDULING = "io.k8s.api.scheduling.v1."
HPA = "io.k8s.api.autoscaling.v2."
HPA_BETA = "io.k8s.api.autoscaling.v2beta1."
RBAC_BETA = "io.k8s.api.rbac.v1beta1."
DISCOVERY_BETA = "io.k8s.api.discovery.v1beta1."
PSP_SPEC = "io.k8s.api.policy.v1beta1.PodSecurityPolicySpec"

# Upstream describes some columns with the docs of API versions Kubernetes 1.35 no longer
# publishes; these are their texts (k8s.io/api types_swagger_doc_generated.go).
_LEGACY_DOCS: dict[tuple[str, str], str] = {
    (EXT + "ReplicaSetSpec", "replicas"): "Replicas is the number of desired replicas. This is a pointer to distinguish between explicit zero and unspecified. Defaults to 1. More info: https://kubernetes.io/docs/concepts/workloads/controllers/replicationcontroller/#what-is-a-replicationcontroller",
    (EXT + "ReplicaSetSpec", "selector"): "Selector is a label query over pods that should match the replica count. If the selector is empty, it is defaulted to the labels present on the pod template. Label keys and values that must match in order to be controlled by this replica set. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors",
    (EXT + "ReplicaSetStatus", "replicas"): "Replicas is the most recently observed number of replicas. More info: https://kubernetes.io/docs/concepts/workloads/controllers/replicationcontroller/#what-is-a-replicationcontroller",
    (EXT + "ReplicaSetStatus", "readyReplicas"): "The number of ready replicas for this replica set.",
    (EXT + "DaemonSetStatus", "desiredNumberScheduled"): "The total number of nodes that should be running the daemon pod (including nodes correctly running the daemon pod). More info: https://kubernetes.io/docs/concepts/workloads/controllers/daemonset/",
    (EXT + "DaemonSetStatus", "currentNumberScheduled"): "The number of nodes that are running at least 1 daemon pod and are supposed to run the daemon pod. More info: https://kubernetes.io/docs/concepts/workloads/controllers/daemonset/",
    (EXT + "DaemonSetStatus", "numberReady"): "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and ready.",
    (EXT + "DaemonSetStatus", "updatedNumberScheduled"): "The total number of nodes that are running updated daemon pod",
    (EXT + "DaemonSetStatus", "numberAvailable"): "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and available (ready for at least spec.minReadySeconds)",
    (EXT + "DaemonSetSpec", "selector"): "A label query over pods that are managed by the daemon set. Must match in order to be controlled. If empty, defaulted to labels on Pod template. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors",
    (EXT + "DeploymentStatus", "updatedReplicas"): "Total number of non-terminated pods targeted by this deployment that have the desired template spec.",
    (EXT + "DeploymentStatus", "availableReplicas"): "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment.",
    (EXT + "DeploymentSpec", "selector"): "Label selector for pods. Existing ReplicaSets whose pods are selected by this will be the ones affected by this deployment.",
    (EXT + "NetworkPolicySpec", "podSelector"): "Selects the pods to which this NetworkPolicy object applies.  The array of ingress rules is applied to any pods selected by this field. Multiple network policies can select the same set of pods.  In this case, the ingress rules for each are combined additively. This field is NOT optional and follows standard label selector semantics. An empty podSelector matches all pods in this namespace.",
    (BATCH_BETA + "CronJobSpec", "timeZone"): "The time zone name for the given schedule, see https://en.wikipedia.org/wiki/List_of_tz_database_time_zones. If not specified, this will default to the time zone of the kube-controller-manager process. The set of valid time zone names and the time zone offset is loaded from the system-wide time zone database by the API server during CronJob validation and the controller manager during execution. If no system-wide time zone database can be found a bundled version of the database is used instead. If the time zone name becomes invalid during the lifetime of a CronJob or due to a change in host configuration, the controller will stop creating new new Jobs and will create a system event with the reason UnknownTimeZone. More information can be found in https://kubernetes.io/docs/concepts/workloads/controllers/cron-jobs/#time-zones This is beta field and must be enabled via the `CronJobTimeZone` feature gate.",
    (HPA_BETA + "HorizontalPodAutoscalerSpec", "metrics"): "metrics contains the specifications for which to use to calculate the desired replica count (the maximum replica count across all metrics will be used).  The desired replica count is calculated multiplying the ratio between the target value and the current value by the current number of pods.  Ergo, metrics used must decrease as the pod count is increased, and vice-versa.  See the individual metric source types for more information about how each type of metric must respond.",
    (RBAC_BETA + "RoleBinding", "roleRef"): "RoleRef can reference a Role in the current namespace or a ClusterRole in the global namespace. If the RoleRef cannot be resolved, the Authorizer must return an error.",
    (RBAC_BETA + "ClusterRoleBinding", "roleRef"): "RoleRef can only reference a ClusterRole in the global namespace. If the RoleRef cannot be resolved, the Authorizer must return an error.",
    (DISCOVERY_BETA + "EndpointSlice", "addressType"): "addressType specifies the type of address carried by this EndpointSlice. All addresses in this slice must be the same type. This field is immutable after creation. The following address types are currently supported: * IPv4: Represents an IPv4 Address. * IPv6: Represents an IPv6 Address. * FQDN: Represents a Fully Qualified Domain Name.",
    (DISCOVERY_BETA + "EndpointSlice", "ports"): "ports specifies the list of network ports exposed by each endpoint in this slice. Each port must have a unique name. When ports is empty, it indicates that there are no defined ports. When a port is defined with a nil port value, it indicates \"all ports\". Each slice may include a maximum of 100 ports.",
    (DISCOVERY_BETA + "EndpointSlice", "endpoints"): "endpoints is a list of unique endpoints in this slice. Each slice may include a maximum of 1000 endpoints.",
    (PSP_SPEC, "privileged"): "privileged determines if a pod can request to be run as privileged.",
    (PSP_SPEC, "allowedCapabilities"): "allowedCapabilities is a list of capabilities that can be requested to add to the container. Capabilities in this field may be added at the pod author's discretion. You must not list a capability in both allowedCapabilities and requiredDropCapabilities.",
    (PSP_SPEC, "seLinux"): "seLinux is the strategy that will dictate the allowable labels that may be set.",
    (PSP_SPEC, "runAsUser"): "runAsUser is the strategy that will dictate the allowable RunAsUser values that may be set.",
    (PSP_SPEC, "fsGroup"): "fsGroup is the strategy that will dictate what fs group is used by the SecurityContext.",
    (PSP_SPEC, "supplementalGroups"): "supplementalGroups is the strategy that will dictate what supplemental groups are used by the SecurityContext.",
    (PSP_SPEC, "readOnlyRootFilesystem"): "readOnlyRootFilesystem when set to true will force containers to run with a read only root file system.  If the container specifically requests to run with a non-read only root file system the PSP should deny the pod. If set to false the container may run with a read only root file system if it wishes but it will not be forced to.",
    (PSP_SPEC, "volumes"): "volumes is an allowlist of volume plugins. Empty indicates that no volumes may be used. To allow all volumes you may use '*'.",
}

Doc = str | tuple[str, str]  # literal text, or (definition, field) whose API doc describes the column


@dataclass(frozen=True)
class Column:
    name: str
    doc: Doc = ""
    type: str = "string"
    format: str = ""
    priority: int = 0

    def definition(self) -> dict:
        return {"name": self.name, "type": self.type, "format": self.format,
                "description": _describe(self.doc), "priority": self.priority}


def _describe(doc: Doc) -> str:
    if isinstance(doc, str):
        return doc
    if doc in _LEGACY_DOCS:
        return _LEGACY_DOCS[doc]
    definition, field = doc
    return schema.definitions()[definition]["properties"][field].get("description", "")


def _wide(name: str, doc: Doc = "", type: str = "string") -> Column:
    return Column(name, doc, type, priority=1)


NAME = Column("Name", (META, "name"), format="name")
AGE = Column("Age", (META, "creationTimestamp"))
CONTAINERS = _wide("Containers", "Names of each container in the template.")
IMAGES = _wide("Images", "Images referenced by each container in the template.")


@dataclass(frozen=True)
class Printer:
    columns: tuple[Column, ...]
    cells: Cells
    conditions: Callable[[dict], list[dict]] | None = None  # the row's TableRowConditions


_PRINTERS: dict[tuple[str, str], Printer] = {}


def _prints(group: str, kind: str, *columns: Column,
            conditions: Callable[[dict], list[dict]] | None = None) -> Callable[[Cells], Cells]:
    def register(cells: Cells) -> Cells:
        _PRINTERS[(group, kind)] = Printer(columns, cells, conditions)
        return cells
    return register


# --- public API -------------------------------------------------------------------------------

def column_definitions(group: str, kind: str) -> list[dict]:
    return [c.definition() for c in _printer(group, kind).columns]


def row_cells(group: str, kind: str, obj: dict, now: datetime) -> list:
    return _printer(group, kind).cells(obj, _utc(now))


def table(group: str, kind: str, objects: list[dict], *, now: datetime, include_object: str = "Metadata",
          list_metadata: dict, api_version_of_objects: str, no_headers: bool = False,
          convert: Callable[[dict], dict] | None = None) -> dict:
    """A meta.k8s.io/v1 Table of `objects` (storage version).

    `include_object` is the request's includeObject ("" means Metadata). For "Object" each row
    embeds the object as `convert` turns it into the requested version; without `convert` the
    object is embedded as is, stamped with `api_version_of_objects` and `kind`.
    """
    mode = include_object or "Metadata"
    if mode not in ("None", "Object", "Metadata"):
        raise ValueError(f'unrecognized includeObject value: "{include_object}"')
    printer = _printer(group, kind)
    now = _utc(now)
    rows = []
    for obj in objects:
        row: dict[str, Any] = {"cells": printer.cells(obj, now)}
        conditions = printer.conditions(obj) if printer.conditions else []
        if conditions:
            row["conditions"] = conditions
        row["object"] = _embedded(obj, mode, kind, api_version_of_objects, convert)
        rows.append(row)
    metadata = {k: list_metadata[k] for k in ("resourceVersion", "continue") if list_metadata.get(k)}
    if list_metadata.get("remainingItemCount") is not None:
        metadata["remainingItemCount"] = list_metadata["remainingItemCount"]
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "columnDefinitions": None if no_headers else [c.definition() for c in printer.columns],
        # The default convertor starts from a nil slice, so an empty list encodes as null.
        "rows": rows if rows or printer is not _DEFAULT else None,
    }


def human_duration(seconds: float) -> str:
    """apimachinery's duration.HumanDuration: about two significant figures."""
    s = int(seconds)  # truncates toward zero, as Go's int()
    if s < -1:
        return "<invalid>"  # more than the tolerated clock skew into the future
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        return f"{minutes}m{s % 60}s" if s % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = s // 3600
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    days = hours // 24
    if hours < 24 * 8:
        return f"{days}d{hours % 24}h" if hours % 24 else f"{days}d"
    if hours < 24 * 365 * 2:
        return f"{days}d"
    if hours < 24 * 365 * 8:
        return f"{days // 365}y{days % 365}d" if days % 365 else f"{days // 365}y"
    return f"{days // 365}y"


# --- lookup and table rows --------------------------------------------------------------------

def _default_cells(obj: dict, now: datetime) -> list:
    created = _time(_meta(obj).get("creationTimestamp")) or datetime(1, 1, 1, tzinfo=UTC)
    return [_name(obj), created.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")]


# rest.defaultTableConvertor: what the apiserver serves for kinds without a printer.
_DEFAULT = Printer((NAME, Column("Created At", (META, "creationTimestamp"), "date")), _default_cells)


@functools.cache
def _printer(group: str, kind: str) -> Printer:
    storage_group = next((r.storage_group for r in kinds.RESOURCES if r.group == group and r.kind == kind), group)
    return _PRINTERS.get((storage_group, kind), _DEFAULT)


def _embedded(obj: dict, mode: str, kind: str, api_version: str,
              convert: Callable[[dict], dict] | None) -> dict | None:
    if mode == "None":
        return None
    if mode == "Metadata":
        return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": _meta(obj)}
    if convert is not None:
        return convert(obj)
    return {**obj, "apiVersion": api_version, "kind": kind}


# --- small formatting helpers (each mirrors an upstream one) ----------------------------------

def _utc(t: datetime) -> datetime:
    return t if t.tzinfo else t.replace(tzinfo=UTC)


_FRACTION = re.compile(r"(\.\d{6})\d+")


def _time(value: str | None) -> datetime | None:
    if not value:
        return None
    return _utc(datetime.fromisoformat(_FRACTION.sub(r"\1", value)))


def _since(value: str | datetime | None, now: datetime) -> str:
    """translateTimestampSince."""
    t = _time(value) if isinstance(value, str) or value is None else value
    if t is None:
        return "<unknown>"
    return human_duration((now - t).total_seconds())


def _get(obj: Any, path: str, default: Any = None) -> Any:
    for key in path.split("."):
        if not isinstance(obj, dict) or obj.get(key) is None:
            return default
        obj = obj[key]
    return obj


def _meta(obj: dict) -> dict:
    return obj.get("metadata") or {}


def _name(obj: dict) -> str:
    return _meta(obj).get("name", "")


def _age(obj: dict, now: datetime) -> str:
    return _since(_meta(obj).get("creationTimestamp"), now)


def _labels(labels: dict | None) -> str:
    """labels.FormatLabels."""
    return str(labelsel.selector_from_set(labels)) or "<none>"


def _selector_string(selector: dict | None) -> str:
    """metav1.LabelSelectorAsSelector(...).String(); nil and empty selectors both print empty."""
    return str(labelsel.selector_from_label_selector(selector))


def _format_selector(selector: dict | None) -> str:
    """metav1.FormatLabelSelector."""
    try:
        return _selector_string(selector) or "<none>"
    except labelsel.SelectorError:
        return "<error>"


def _containers(containers: list | None) -> list[str]:
    """layoutContainerCells: names, images."""
    containers = containers or []
    return [",".join(c.get("name", "") for c in containers), ",".join(c.get("image", "") for c in containers)]


def _int_or_string(value: Any, absent: str) -> str:
    return absent if value is None else str(value)


def _quantity(value: Any) -> str:
    """resource.Quantity.String() of a stored quantity; a missing one is the zero quantity."""
    try:
        return str(quantity.from_json(value))
    except quantity.QuantityError:
        return str(value)


def _quantity_ptr(value: Any) -> str:
    """The same of a *Quantity, which prints <nil> when unset."""
    return "<nil>" if value is None else _quantity(value)


def _condition_true(conditions: Iterable[dict] | None, kind: str) -> bool:
    for c in conditions or ():
        if c.get("type") == kind:
            return c.get("status") == "True"
    return False


def _join_host_port(host: str, port: Any) -> str:
    try:
        is_v6 = ipaddress.ip_address(host).version == 6
    except ValueError:
        is_v6 = ":" in host
    return f"[{host}]:{port}" if is_v6 else f"{host}:{port}"


def _more(items: list[str], count: int, limit: int, empty: str) -> str:
    """The "a,b,c + N more..." lists of endpoints and slices."""
    text = ",".join(items[:limit])
    if count > limit:
        return f"{text} + {count - limit} more..."
    return text or empty


def _load_balancer(ingress: list | None) -> str:
    """loadBalancerStatusStringer, wide (the server always prints wide, so never clipped)."""
    points = {i.get("ip") or i.get("hostname") for i in ingress or []}
    return ",".join(sorted(p for p in points if p))


def _access_modes(modes: list | None) -> str:
    """helper.GetAccessModesAsString."""
    present = set(modes or [])
    return ",".join(short for mode, short in (("ReadWriteOnce", "RWO"), ("ReadOnlyMany", "ROX"),
                                              ("ReadWriteMany", "RWX"), ("ReadWriteOncePod", "RWOP"))
                    if mode in present)


def _storage_class(obj: dict) -> str:
    """GetPersistentVolume(Claim)Class: the beta annotation wins over spec.storageClassName."""
    annotations = _meta(obj).get("annotations") or {}
    if "volume.beta.kubernetes.io/storage-class" in annotations:
        return annotations["volume.beta.kubernetes.io/storage-class"]
    return _get(obj, "spec.storageClassName", "")


def _controller_of(obj: dict) -> dict | None:
    return next((r for r in _meta(obj).get("ownerReferences") or [] if r.get("controller")), None)


# --- core/v1 ----------------------------------------------------------------------------------

@_prints("", "Pod", NAME,
         Column("Ready", "The aggregate readiness state of this pod for accepting traffic."),
         Column("Status", "The aggregate status of the containers in this pod."),
         Column("Restarts", "The number of times the containers in this pod have been restarted and when the last "
                            "container in this pod has restarted."),
         AGE,
         _wide("IP", (CORE + "PodStatus", "podIP")),
         _wide("Node", (CORE + "PodSpec", "nodeName")),
         _wide("Nominated Node", (CORE + "PodStatus", "nominatedNodeName")),
         _wide("Readiness Gates", (CORE + "PodSpec", "readinessGates")),
         conditions=lambda pod: _pod_conditions(pod))
def _pod(pod: dict, now: datetime) -> list:
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    conditions = status.get("conditions") or []
    init_specs = spec.get("initContainers") or []
    sidecar_names = {c.get("name") for c in defaults.sidecars(spec)}
    total = len(spec.get("containers") or []) + len(sidecar_names)
    ready = 0
    phase = status.get("phase") or ""
    reason = status.get("reason") or phase
    if any(c.get("type") == "PodScheduled" and c.get("reason") == "SchedulingGated" for c in conditions):
        reason = "SchedulingGated"

    restarts = sidecar_restarts = 0
    last_restart = last_sidecar_restart = None
    initializing = False
    for i, cs in enumerate(status.get("initContainerStatuses") or []):
        count, finished = cs.get("restartCount") or 0, _last_termination(cs)
        restarts += count
        last_restart = _later(last_restart, finished)
        sidecar = cs.get("name") in sidecar_names
        if sidecar:
            sidecar_restarts += count
            last_sidecar_restart = _later(last_sidecar_restart, finished)
        state = cs.get("state") or {}
        terminated, waiting = state.get("terminated"), state.get("waiting")
        if terminated is not None and not terminated.get("exitCode"):
            continue
        if sidecar and cs.get("started"):
            ready += 1 if cs.get("ready") else 0
            continue
        initializing = True
        if terminated is not None:
            reason = "Init:" + (terminated.get("reason") or _exit_reason(terminated))
        elif waiting and waiting.get("reason") and waiting["reason"] != "PodInitializing":
            reason = "Init:" + waiting["reason"]
        else:
            reason = f"Init:{i}/{len(init_specs)}"
        break

    if not initializing or _condition_true(conditions, "Initialized"):
        # Restarts of finished init containers no longer count once the pod is initialized.
        restarts, last_restart = sidecar_restarts, last_sidecar_restart
        has_running = False
        for cs in reversed(status.get("containerStatuses") or []):
            restarts += cs.get("restartCount") or 0
            last_restart = _later(last_restart, _last_termination(cs))
            state = cs.get("state") or {}
            waiting, terminated = state.get("waiting"), state.get("terminated")
            if waiting is not None and waiting.get("reason"):
                reason = waiting["reason"]
            elif terminated is not None:
                reason = terminated.get("reason") or _exit_reason(terminated)
            elif cs.get("ready") and state.get("running") is not None:
                has_running = True
                ready += 1
        if reason == "Completed" and has_running:
            reason = "Running" if _condition_true(conditions, "Ready") else "NotReady"

    if _meta(pod).get("deletionTimestamp"):
        if status.get("reason") == "NodeLost":
            reason = "Unknown"
        elif phase not in ("Succeeded", "Failed"):
            reason = "Terminating"

    restarts_cell = str(restarts)
    if restarts and last_restart is not None:
        restarts_cell = f"{restarts} ({_since(last_restart, now)} ago)"

    pod_ips = status.get("podIPs") or []
    pod_ip = (pod_ips[0].get("ip") if pod_ips else status.get("podIP")) or "<none>"
    gates = spec.get("readinessGates") or []
    readiness = "<none>"
    if gates:
        true = sum(1 for g in gates if _condition_true(conditions, g.get("conditionType")))
        readiness = f"{true}/{len(gates)}"
    return [_name(pod), f"{ready}/{total}", reason, restarts_cell, _age(pod, now),
            pod_ip, spec.get("nodeName") or "<none>", status.get("nominatedNodeName") or "<none>", readiness]


def _pod_conditions(pod: dict) -> list[dict]:
    """Finished pods are marked Completed, so clients may hide them."""
    phase = (pod.get("status") or {}).get("phase")
    message = {"Succeeded": "The pod has completed successfully.", "Failed": "The pod failed."}.get(phase)
    if message is None:
        return []
    return [{"type": "Completed", "status": "True", "reason": phase, "message": message}]


def _exit_reason(terminated: dict) -> str:
    if terminated.get("signal"):
        return f"Signal:{terminated['signal']}"
    return f"ExitCode:{terminated.get('exitCode') or 0}"


def _last_termination(status: dict) -> datetime | None:
    return _time(_get(status, "lastState.terminated.finishedAt"))


def _later(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None or (b is not None and b > a):
        return b
    return a


@_prints("", "PodTemplate", NAME,
         Column("Containers", "Names of each container in the template."),
         Column("Images", "Images referenced by each container in the template."),
         Column("Pod Labels", "The labels for the pod template."))
def _pod_template(obj: dict, now: datetime) -> list:
    return [_name(obj), *_containers(_get(obj, "template.spec.containers")),
            _labels(_get(obj, "template.metadata.labels"))]


@_prints("", "ReplicationController", NAME,
         Column("Desired", (CORE + "ReplicationControllerSpec", "replicas"), "integer"),
         Column("Current", (CORE + "ReplicationControllerStatus", "replicas"), "integer"),
         Column("Ready", (CORE + "ReplicationControllerStatus", "readyReplicas"), "integer"),
         AGE, CONTAINERS, IMAGES,
         _wide("Selector", (CORE + "ReplicationControllerSpec", "selector")))
def _replication_controller(obj: dict, now: datetime) -> list:
    return [_name(obj), _get(obj, "spec.replicas", 0), _get(obj, "status.replicas", 0),
            _get(obj, "status.readyReplicas", 0), _age(obj, now),
            *_containers(_get(obj, "spec.template.spec.containers")), _labels(_get(obj, "spec.selector"))]


def _service_external_ip(svc: dict) -> str:
    """getServiceExternalIP."""
    spec = svc.get("spec") or {}
    external = spec.get("externalIPs") or []
    kind = spec.get("type")
    if kind in ("ClusterIP", "NodePort"):
        return ",".join(external) or "<none>"
    if kind == "LoadBalancer":
        balancer = _load_balancer(_get(svc, "status.loadBalancer.ingress"))
        if external:
            return ",".join((balancer.split(",") if balancer else []) + external)
        return balancer or "<pending>"
    if kind == "ExternalName":
        return spec.get("externalName", "")
    return "<unknown>"


def _service_ports(ports: list | None) -> str:
    """makePortString: port/protocol, or port:nodePort/protocol."""
    pieces = []
    for p in ports or []:
        node_port = p.get("nodePort") or 0
        prefix = f"{p.get('port', 0)}:{node_port}" if node_port > 0 else f"{p.get('port', 0)}"
        pieces.append(f"{prefix}/{p.get('protocol', '')}")
    return ",".join(pieces) or "<none>"


@_prints("", "Service", NAME,
         Column("Type", (CORE + "ServiceSpec", "type")),
         Column("Cluster-IP", (CORE + "ServiceSpec", "clusterIP")),
         Column("External-IP", (CORE + "ServiceSpec", "externalIPs")),
         Column("Port(s)", (CORE + "ServiceSpec", "ports")),
         AGE,
         _wide("Selector", (CORE + "ServiceSpec", "selector")))
def _service(svc: dict, now: datetime) -> list:
    spec = svc.get("spec") or {}
    cluster_ips = spec.get("clusterIPs") or ([spec["clusterIP"]] if spec.get("clusterIP") else [])
    return [_name(svc), spec.get("type", ""), cluster_ips[0] if cluster_ips else "<none>",
            _service_external_ip(svc), _service_ports(spec.get("ports")), _age(svc, now),
            _labels(spec.get("selector"))]


@_prints("", "Endpoints", NAME, Column("Endpoints", (CORE + "Endpoints", "subsets")), AGE)
def _endpoints(obj: dict, now: datetime) -> list:
    subsets = obj.get("subsets") or []
    if not subsets:
        return [_name(obj), "<none>", _age(obj, now)]
    shown, count, limit = [], 0, 3
    for subset in subsets:
        addresses = [a.get("ip", "") for a in subset.get("addresses") or []]
        ports = subset.get("ports") or []
        if not ports:  # headless services may have no ports
            count += len(addresses)
            shown += addresses
            continue
        for port in ports:
            count += len(addresses)
            shown += [_join_host_port(ip, port.get("port", 0)) for ip in addresses]
    return [_name(obj), _more(shown, count, limit, ""), _age(obj, now)]


@_prints("", "Node", NAME,
         Column("Status", "The status of the node"),
         Column("Roles", "The roles of the node"),
         AGE,
         Column("Version", (CORE + "NodeSystemInfo", "kubeletVersion")),
         _wide("Internal-IP", (CORE + "NodeStatus", "addresses")),
         _wide("External-IP", (CORE + "NodeStatus", "addresses")),
         _wide("OS-Image", (CORE + "NodeSystemInfo", "osImage")),
         _wide("Kernel-Version", (CORE + "NodeSystemInfo", "kernelVersion")),
         _wide("Container-Runtime", (CORE + "NodeSystemInfo", "containerRuntimeVersion")))
def _node(node: dict, now: datetime) -> list:
    ready = next((c for c in _get(node, "status.conditions", []) if c.get("type") == "Ready"), None)
    status = ["Unknown"] if ready is None else ["Ready" if ready.get("status") == "True" else "NotReady"]
    if _get(node, "spec.unschedulable"):
        status.append("SchedulingDisabled")
    roles = set()
    for key, value in (_meta(node).get("labels") or {}).items():
        if key.startswith("node-role.kubernetes.io/") and key != "node-role.kubernetes.io/":
            roles.add(key.removeprefix("node-role.kubernetes.io/"))
        elif key == "kubernetes.io/role" and value:
            roles.add(value)
    info = _get(node, "status.nodeInfo", {})
    addresses = _get(node, "status.addresses", [])

    def address(kind: str) -> str:
        return next((a.get("address", "") for a in addresses if a.get("type") == kind), "<none>")

    return [_name(node), ",".join(status), ",".join(sorted(roles)) or "<none>", _age(node, now),
            info.get("kubeletVersion", ""), address("InternalIP"), address("ExternalIP"),
            info.get("osImage") or "<unknown>", info.get("kernelVersion") or "<unknown>",
            info.get("containerRuntimeVersion") or "<unknown>"]


@_prints("", "Event",
         Column("Last Seen", (CORE + "Event", "lastTimestamp")),
         Column("Type", (CORE + "Event", "type")),
         Column("Reason", (CORE + "Event", "reason")),
         Column("Object", (CORE + "Event", "involvedObject")),
         _wide("Subobject", (CORE + "ObjectReference", "fieldPath")),
         _wide("Source", (CORE + "Event", "source")),
         Column("Message", (CORE + "Event", "message")),
         _wide("First Seen", (CORE + "Event", "firstTimestamp")),
         _wide("Count", (CORE + "Event", "count")),
         Column("Name", (META, "name"), format="name", priority=1))
def _event(ev: dict, now: datetime) -> list:
    first = _since(ev.get("firstTimestamp") or ev.get("eventTime"), now)
    last = _since(ev["lastTimestamp"], now) if ev.get("lastTimestamp") else first
    count = ev.get("count") or 0
    if ev.get("series") is not None:
        last = _since(_get(ev, "series.lastObservedTime"), now)
        count = _get(ev, "series.count", 0)
    elif count == 0:
        count = 1  # singleton events of the new API carry no count
    involved = ev.get("involvedObject") or {}
    target = involved.get("kind", "").lower()
    if involved.get("name"):
        target += "/" + involved["name"]
    component = _get(ev, "source.component") or ev.get("reportingComponent") or ""
    host = _get(ev, "source.host") or ev.get("reportingInstance") or ""
    return [last, ev.get("type", ""), ev.get("reason", ""), target, involved.get("fieldPath", ""),
            f"{component}, {host}" if host else component, (ev.get("message") or "").strip(),
            first, count, _name(ev)]


@_prints("", "Namespace", NAME, Column("Status", "The status of the namespace"), AGE)
def _namespace(obj: dict, now: datetime) -> list:
    return [_name(obj), _get(obj, "status.phase", ""), _age(obj, now)]


@_prints("", "Secret", NAME, Column("Type", (CORE + "Secret", "type")), Column("Data", (CORE + "Secret", "data")), AGE)
def _secret(obj: dict, now: datetime) -> list:
    return [_name(obj), obj.get("type", ""), len(obj.get("data") or {}), _age(obj, now)]


@_prints("", "ConfigMap", NAME, Column("Data", (CORE + "ConfigMap", "data")), AGE)
def _config_map(obj: dict, now: datetime) -> list:
    return [_name(obj), len(obj.get("data") or {}) + len(obj.get("binaryData") or {}), _age(obj, now)]


@_prints("", "ServiceAccount", NAME, Column("Secrets", (CORE + "ServiceAccount", "secrets")), AGE)
def _service_account(obj: dict, now: datetime) -> list:
    return [_name(obj), len(obj.get("secrets") or []), _age(obj, now)]


@_prints("", "PersistentVolume", NAME,
         Column("Capacity", (CORE + "PersistentVolumeSpec", "capacity")),
         Column("Access Modes", (CORE + "PersistentVolumeSpec", "accessModes")),
         Column("Reclaim Policy", (CORE + "PersistentVolumeSpec", "persistentVolumeReclaimPolicy")),
         Column("Status", (CORE + "PersistentVolumeStatus", "phase")),
         Column("Claim", (CORE + "PersistentVolumeSpec", "claimRef")),
         Column("StorageClass", "StorageClass of the pv"),
         Column("VolumeAttributesClass", "VolumeAttributesClass of the pv"),
         Column("Reason", (CORE + "PersistentVolumeStatus", "reason")),
         AGE,
         _wide("VolumeMode", (CORE + "PersistentVolumeSpec", "volumeMode")))
def _persistent_volume(pv: dict, now: datetime) -> list:
    spec = pv.get("spec") or {}
    claim = spec.get("claimRef")
    phase = "Terminating" if _meta(pv).get("deletionTimestamp") else _get(pv, "status.phase", "")
    return [_name(pv), _quantity(_get(spec, "capacity.storage")), _access_modes(spec.get("accessModes")),
            spec.get("persistentVolumeReclaimPolicy", ""), phase,
            f"{claim.get('namespace', '')}/{claim.get('name', '')}" if claim is not None else "",
            _storage_class(pv), spec.get("volumeAttributesClassName") or "<unset>",
            _get(pv, "status.reason", ""), _age(pv, now), spec.get("volumeMode") or "<unset>"]


@_prints("", "PersistentVolumeClaim", NAME,
         Column("Status", (CORE + "PersistentVolumeClaimStatus", "phase")),
         Column("Volume", (CORE + "PersistentVolumeClaimSpec", "volumeName")),
         Column("Capacity", (CORE + "PersistentVolumeClaimStatus", "capacity")),
         Column("Access Modes", (CORE + "PersistentVolumeClaimStatus", "accessModes")),
         Column("StorageClass", "StorageClass of the pvc"),
         Column("VolumeAttributesClass", "VolumeAttributesClass of the pvc"),
         AGE,
         _wide("VolumeMode", (CORE + "PersistentVolumeClaimSpec", "volumeMode")))
def _persistent_volume_claim(pvc: dict, now: datetime) -> list:
    spec = pvc.get("spec") or {}
    phase = "Terminating" if _meta(pvc).get("deletionTimestamp") else _get(pvc, "status.phase", "")
    bound = bool(spec.get("volumeName"))  # capacity and modes are only known once bound
    return [_name(pvc), phase, spec.get("volumeName", ""),
            _quantity(_get(pvc, "status.capacity.storage")) if bound else "",
            _access_modes(_get(pvc, "status.accessModes")) if bound else "",
            _storage_class(pvc), spec.get("volumeAttributesClassName") or "<unset>", _age(pvc, now),
            spec.get("volumeMode") or "<unset>"]


@_prints("", "ResourceQuota", NAME,
         Column("Request", "Request represents a minimum amount of cpu/memory that a container may consume."),
         Column("Limit", "Limits control the maximum amount of cpu/memory that a container may use independent of "
                         "contention on the node."),
         AGE)
def _resource_quota(quota: dict, now: datetime) -> list:
    hard, used = _get(quota, "status.hard", {}), _get(quota, "status.used", {})
    requests, limits = [], []
    for resource in sorted(hard):
        column = limits if resource.split(".")[0] == "limits" and "." in resource else requests
        column.append(f"{resource}: {_quantity(used.get(resource))}/{_quantity(hard[resource])}")
    return [_name(quota), ", ".join(requests), ", ".join(limits), _age(quota, now)]


# --- apps/v1 ----------------------------------------------------------------------------------

@_prints("apps", "Deployment", NAME,
         Column("Ready", "Number of the pod with ready state"),
         Column("Up-to-date", (EXT + "DeploymentStatus", "updatedReplicas")),
         Column("Available", (EXT + "DeploymentStatus", "availableReplicas")),
         AGE, CONTAINERS, IMAGES,
         _wide("Selector", (EXT + "DeploymentSpec", "selector")))
def _deployment(obj: dict, now: datetime) -> list:
    try:
        selector = _selector_string(_get(obj, "spec.selector"))
    except labelsel.SelectorError:
        selector = "<invalid>"
    return [_name(obj), f"{_get(obj, 'status.readyReplicas', 0)}/{_get(obj, 'spec.replicas', 0)}",
            _get(obj, "status.updatedReplicas", 0), _get(obj, "status.availableReplicas", 0), _age(obj, now),
            *_containers(_get(obj, "spec.template.spec.containers")), selector]


@_prints("apps", "ReplicaSet", NAME,
         Column("Desired", (EXT + "ReplicaSetSpec", "replicas"), "integer"),
         Column("Current", (EXT + "ReplicaSetStatus", "replicas"), "integer"),
         Column("Ready", (EXT + "ReplicaSetStatus", "readyReplicas"), "integer"),
         AGE, CONTAINERS, IMAGES,
         _wide("Selector", (EXT + "ReplicaSetSpec", "selector")))
def _replica_set(obj: dict, now: datetime) -> list:
    return [_name(obj), _get(obj, "spec.replicas", 0), _get(obj, "status.replicas", 0),
            _get(obj, "status.readyReplicas", 0), _age(obj, now),
            *_containers(_get(obj, "spec.template.spec.containers")), _format_selector(_get(obj, "spec.selector"))]


@_prints("apps", "StatefulSet", NAME, Column("Ready", "Number of the pod with ready state"), AGE, CONTAINERS, IMAGES)
def _stateful_set(obj: dict, now: datetime) -> list:
    return [_name(obj), f"{_get(obj, 'status.readyReplicas', 0)}/{_get(obj, 'spec.replicas', 0)}", _age(obj, now),
            *_containers(_get(obj, "spec.template.spec.containers"))]


@_prints("apps", "DaemonSet", NAME,
         *(Column(name, (EXT + "DaemonSetStatus", field), "integer") for name, field in (
             ("Desired", "desiredNumberScheduled"), ("Current", "currentNumberScheduled"), ("Ready", "numberReady"),
             ("Up-to-date", "updatedNumberScheduled"), ("Available", "numberAvailable"))),
         Column("Node Selector", (CORE + "PodSpec", "nodeSelector")),
         AGE, CONTAINERS, IMAGES,
         _wide("Selector", (EXT + "DaemonSetSpec", "selector")))
def _daemon_set(obj: dict, now: datetime) -> list:
    counts = [_get(obj, "status." + f, 0) for f in ("desiredNumberScheduled", "currentNumberScheduled",
                                                   "numberReady", "updatedNumberScheduled", "numberAvailable")]
    return [_name(obj), *counts, _labels(_get(obj, "spec.template.spec.nodeSelector")), _age(obj, now),
            *_containers(_get(obj, "spec.template.spec.containers")), _format_selector(_get(obj, "spec.selector"))]


@_prints("apps", "ControllerRevision", NAME,
         Column("Controller", "Controller of the object"),
         Column("Revision", (APPS + "ControllerRevision", "revision")),
         AGE)
def _controller_revision(obj: dict, now: datetime) -> list:
    owner = _controller_of(obj)
    controller = "<none>"
    if owner is not None:
        api_version = owner.get("apiVersion", "")
        group = api_version.split("/")[0] if "/" in api_version else ""
        kind = owner.get("kind", "")
        group_kind = f"{kind}.{group}" if group else kind
        controller = f"{group_kind.lower()}/{owner.get('name', '')}" if group_kind else owner.get("name", "")
    return [_name(obj), controller, obj.get("revision", 0), _age(obj, now)]


# --- batch/v1 ---------------------------------------------------------------------------------

@_prints("batch", "Job", NAME,
         Column("Status", "Status of the job."),
         Column("Completions", (BATCH + "JobStatus", "succeeded")),
         Column("Duration", "Time required to complete the job."),
         AGE, CONTAINERS, IMAGES,
         _wide("Selector", (BATCH + "JobSpec", "selector")))
def _job(job: dict, now: datetime) -> list:
    spec, status = job.get("spec") or {}, job.get("status") or {}
    succeeded = status.get("succeeded") or 0
    if spec.get("completions") is not None:
        completions = f"{succeeded}/{spec['completions']}"
    elif (spec.get("parallelism") or 0) > 1:
        completions = f"{succeeded}/1 of {spec['parallelism']}"
    else:
        completions = f"{succeeded}/1"
    start, end = _time(status.get("startTime")), _time(status.get("completionTime"))
    duration = "" if start is None else human_duration(((end or now) - start).total_seconds())
    conditions = status.get("conditions")
    if _condition_true(conditions, "Complete"):
        state = "Complete"
    elif _condition_true(conditions, "Failed"):
        state = "Failed"
    elif _meta(job).get("deletionTimestamp"):
        state = "Terminating"
    elif _condition_true(conditions, "Suspended"):
        state = "Suspended"
    elif _condition_true(conditions, "FailureTarget"):
        state = "FailureTarget"
    else:
        state = "Running"
    return [_name(job), state, completions, duration, _age(job, now),
            *_containers(_get(spec, "template.spec.containers")), _format_selector(spec.get("selector"))]


@_prints("scheduling.k8s.io", "PriorityClass", NAME,
         Column("Value", (SCHEDULING + "PriorityClass", "value"), "integer"),
         Column("Global-Default", (SCHEDULING + "PriorityClass", "globalDefault"), "boolean"),
         AGE,
         Column("PreemptionPolicy", (SCHEDULING + "PriorityClass", "preemptionPolicy")))
def _priority_class(obj: dict, now: datetime) -> list:
    return [_name(obj), obj.get("value", 0), bool(obj.get("globalDefault")), _age(obj, now),
            obj.get("preemptionPolicy") or ""]


@_prints("batch", "CronJob", NAME,
         Column("Schedule", (BATCH + "CronJobSpec", "schedule")),  # upstream cites v1beta1; same text
         Column("Timezone", (BATCH_BETA + "CronJobSpec", "timeZone")),
         Column("Suspend", (BATCH + "CronJobSpec", "suspend"), "boolean"),
         Column("Active", (BATCH + "CronJobStatus", "active"), "integer"),
         Column("Last Schedule", (BATCH + "CronJobStatus", "lastScheduleTime")),
         AGE, CONTAINERS, IMAGES,
         _wide("Selector", (BATCH + "JobSpec", "selector")))
def _cron_job(obj: dict, now: datetime) -> list:
    spec = obj.get("spec") or {}
    suspend = spec.get("suspend")
    last = _get(obj, "status.lastScheduleTime")
    return [_name(obj), spec.get("schedule", ""), spec.get("timeZone") or "<none>",
            "<unset>" if suspend is None else ("True" if suspend else "False"),
            len(_get(obj, "status.active", [])), _since(last, now) if last else "<none>", _age(obj, now),
            *_containers(_get(spec, "jobTemplate.spec.template.spec.containers")),
            _format_selector(_get(spec, "jobTemplate.spec.selector"))]


# --- autoscaling/v2 ---------------------------------------------------------------------------

_METRIC_SOURCES = {"External": "external", "Object": "object", "Pods": "pods", "Resource": "resource",
                   "ContainerResource": "containerResource"}


def _hpa_metric(spec: dict, status: dict | None) -> str:
    """One entry of formatHPAMetrics: current/target, by metric source type."""
    kind = spec.get("type")
    field = _METRIC_SOURCES.get(kind)
    if field is None:
        return "<unknown type>"
    source = spec.get(field) or {}
    target = source.get("target") or {}
    observed = (status or {}).get(field)  # statuses are index-aligned with the specs
    current = (observed or {}).get("current") or {}

    def reading(key: str) -> str:
        return "<unknown>" if observed is None else _quantity_ptr(current.get(key))

    if kind == "Pods":
        return f"{reading('averageValue')}/{_quantity_ptr(target.get('averageValue'))}"
    if kind in ("External", "Object"):
        if target.get("averageValue") is not None:
            average = current.get("averageValue") if observed is not None else None
            shown = "<unknown>" if average is None else _quantity(average)
            return f"{shown}/{_quantity(target['averageValue'])} (avg)"
        return f"{reading('value')}/{_quantity_ptr(target.get('value'))}"
    name = source.get("name", "")
    if target.get("averageValue") is not None:
        return f"{name}: {reading('averageValue')}/{_quantity(target['averageValue'])}"
    utilization = current.get("averageUtilization") if observed is not None else None
    goal = target.get("averageUtilization")
    return (f"{name}: {'<unknown>' if utilization is None else f'{utilization}%'}/"
            f"{'<auto>' if goal is None else f'{goal}%'}")


@_prints("autoscaling", "HorizontalPodAutoscaler", NAME,
         # Upstream cites autoscaling/v2beta1, whose texts match v2 except for `metrics`.
         Column("Reference", (HPA + "HorizontalPodAutoscalerSpec", "scaleTargetRef")),
         Column("Targets", (HPA_BETA + "HorizontalPodAutoscalerSpec", "metrics")),
         Column("MinPods", (HPA + "HorizontalPodAutoscalerSpec", "minReplicas")),
         Column("MaxPods", (HPA + "HorizontalPodAutoscalerSpec", "maxReplicas")),
         Column("Replicas", (HPA + "HorizontalPodAutoscalerStatus", "currentReplicas")),
         AGE)
def _hpa(obj: dict, now: datetime) -> list:
    spec = obj.get("spec") or {}
    metrics, statuses = spec.get("metrics") or [], _get(obj, "status.currentMetrics", [])
    shown = [_hpa_metric(m, statuses[i] if i < len(statuses) else None) for i, m in enumerate(metrics)]
    targets = ", ".join(shown[:2]) + (f" + {len(shown) - 2} more..." if len(shown) > 2 else "") if shown else "<none>"
    ref = spec.get("scaleTargetRef") or {}
    min_pods = spec.get("minReplicas")
    return [_name(obj), f"{ref.get('kind', '')}/{ref.get('name', '')}", targets,
            "<unset>" if min_pods is None else str(min_pods), spec.get("maxReplicas", 0),
            _get(obj, "status.currentReplicas", 0), _age(obj, now)]


# --- networking, policy, rbac, storage, coordination, discovery -------------------------------

def _ingress_hosts(rules: list[dict], limit: int = 3) -> str:
    """formatHosts: "more" only once `limit` hosts were listed and another rule follows."""
    hosts: list[str] = []
    more = False
    for rule in rules:
        more = more or len(hosts) == limit
        if not more and rule.get("host"):
            hosts.append(rule["host"])
    if not hosts:
        return "*"
    return ",".join(hosts) + (f" + {len(rules) - limit} more..." if more else "")


@_prints("networking.k8s.io", "Ingress", NAME,
         Column("Class", "The name of the IngressClass resource that should be used for additional configuration"),
         Column("Hosts", "Hosts that incoming requests are matched against before the ingress rule"),
         Column("Address", "Address is a list containing ingress points for the load-balancer"),
         Column("Ports", "Ports of TLS configurations that open"),
         AGE)
def _ingress(obj: dict, now: datetime) -> list:
    spec = obj.get("spec") or {}
    return [_name(obj), spec.get("ingressClassName") or "<none>", _ingress_hosts(spec.get("rules") or []),
            _load_balancer(_get(obj, "status.loadBalancer.ingress")), "80, 443" if spec.get("tls") else "80",
            _age(obj, now)]


@_prints("networking.k8s.io", "IngressClass", NAME,
         Column("Controller", "Controller that is responsible for handling this class"),
         Column("Parameters", "A reference to a resource with additional parameters"),
         AGE)
def _ingress_class(obj: dict, now: datetime) -> list:
    params = _get(obj, "spec.parameters")
    text = "<none>"
    if params is not None:
        text = params.get("kind", "") + (f".{params['apiGroup']}" if params.get("apiGroup") is not None else "")
        text += "/" + params.get("name", "")
    return [_name(obj), _get(obj, "spec.controller", ""), text, _age(obj, now)]


@_prints("networking.k8s.io", "NetworkPolicy", NAME,
         Column("Pod-Selector", (EXT + "NetworkPolicySpec", "podSelector")), AGE)
def _network_policy(obj: dict, now: datetime) -> list:
    return [_name(obj), _format_selector(_get(obj, "spec.podSelector", {})), _age(obj, now)]


@_prints("policy", "PodDisruptionBudget", NAME,
         Column("Min Available", "The minimum number of pods that must be available."),
         Column("Max Unavailable", "The maximum number of pods that may be unavailable."),
         Column("Allowed Disruptions", "Calculated number of pods that may be disrupted at this time.", "integer"),
         AGE)
def _pod_disruption_budget(obj: dict, now: datetime) -> list:
    return [_name(obj), _int_or_string(_get(obj, "spec.minAvailable"), "N/A"),
            _int_or_string(_get(obj, "spec.maxUnavailable"), "N/A"), _get(obj, "status.disruptionsAllowed", 0),
            _age(obj, now)]


# Removed upstream in 1.25; the printer is the one of the releases that still served it.
@_prints("policy", "PodSecurityPolicy", NAME,
         *(Column(name, (PSP_SPEC, field)) for name, field in (
             ("Priv", "privileged"), ("Caps", "allowedCapabilities"), ("SELinux", "seLinux"),
             ("RunAsUser", "runAsUser"), ("FsGroup", "fsGroup"), ("SupGroup", "supplementalGroups"),
             ("ReadOnlyRootFs", "readOnlyRootFilesystem"), ("Volumes", "volumes"))))
def _pod_security_policy(obj: dict, now: datetime) -> list:
    spec = obj.get("spec") or {}
    return [_name(obj), "true" if spec.get("privileged") else "false", ",".join(spec.get("allowedCapabilities") or []),
            _get(spec, "seLinux.rule", ""), _get(spec, "runAsUser.rule", ""), _get(spec, "fsGroup.rule", ""),
            _get(spec, "supplementalGroups.rule", ""), bool(spec.get("readOnlyRootFilesystem")),
            ",".join(spec.get("volumes") or [])]


def _binding_columns(kind: str, word: str) -> tuple[Column, ...]:
    return (NAME, Column("Role", (RBAC_BETA + kind, "roleRef")), AGE,
            _wide("Users", f"Users in the {word}"), _wide("Groups", f"Groups in the {word}"),
            _wide("ServiceAccounts", f"ServiceAccounts in the {word}"))


def _binding(obj: dict, now: datetime) -> list:
    users, groups, accounts = [], [], []
    for s in obj.get("subjects") or []:
        if s.get("kind") == "ServiceAccount":
            accounts.append(f"{s.get('namespace', '')}/{s.get('name', '')}")
        elif s.get("kind") == "User":
            users.append(s.get("name", ""))
        elif s.get("kind") == "Group":
            groups.append(s.get("name", ""))
    ref = obj.get("roleRef") or {}
    return [_name(obj), f"{ref.get('kind', '')}/{ref.get('name', '')}", _age(obj, now),
            ", ".join(users), ", ".join(groups), ", ".join(accounts)]


_prints("rbac.authorization.k8s.io", "RoleBinding", *_binding_columns("RoleBinding", "roleBinding"))(_binding)
_prints("rbac.authorization.k8s.io", "ClusterRoleBinding",
        *_binding_columns("ClusterRoleBinding", "clusterRoleBinding"))(_binding)


_DEFAULT_CLASS_ANNOTATIONS = ("storageclass.kubernetes.io/is-default-class",
                              "storageclass.beta.kubernetes.io/is-default-class")


@_prints("storage.k8s.io", "StorageClass", NAME,
         *(Column(name, ("io.k8s.api.storage.v1.StorageClass", field)) for name, field in (
             ("Provisioner", "provisioner"), ("ReclaimPolicy", "reclaimPolicy"),
             ("VolumeBindingMode", "volumeBindingMode"), ("AllowVolumeExpansion", "allowVolumeExpansion"))),
         AGE)
def _storage_class_row(obj: dict, now: datetime) -> list:
    annotations = _meta(obj).get("annotations") or {}
    name = _name(obj)
    if any(annotations.get(a) == "true" for a in _DEFAULT_CLASS_ANNOTATIONS):
        name += " (default)"
    return [name, obj.get("provisioner", ""), obj.get("reclaimPolicy") or "Delete",
            obj.get("volumeBindingMode") or "Immediate", bool(obj.get("allowVolumeExpansion")), _age(obj, now)]


@_prints("coordination.k8s.io", "Lease", NAME,
         Column("Holder", ("io.k8s.api.coordination.v1.LeaseSpec", "holderIdentity")), AGE)
def _lease(obj: dict, now: datetime) -> list:
    return [_name(obj), _get(obj, "spec.holderIdentity", ""), _age(obj, now)]


@_prints("discovery.k8s.io", "EndpointSlice", NAME,
         Column("AddressType", (DISCOVERY_BETA + "EndpointSlice", "addressType")),
         Column("Ports", (DISCOVERY_BETA + "EndpointSlice", "ports")),
         Column("Endpoints", (DISCOVERY_BETA + "EndpointSlice", "endpoints")),
         AGE)
def _endpoint_slice(obj: dict, now: datetime) -> list:
    ports = obj.get("ports") or []
    port_names = [str(p["port"]) if p.get("port") is not None else p.get("name") if p.get("name") is not None else "*"
                  for p in ports]
    addresses = [a for e in obj.get("endpoints") or [] for a in e.get("addresses") or []]
    return [_name(obj), obj.get("addressType", ""), _more(port_names, len(port_names), 3, "<unset>"),
            _more(addresses, len(addresses), 3, "<unset>"), _age(obj, now)]
