"""Every resource ketch serves: one table, read by discovery, REST routing, storage and OpenAPI.

A `Resource` is one kind in one served group/version. Resources of the same kind in several
versions (apps/v1 and extensions/v1beta1 Deployments) share one storage key prefix and one storage
version; objects are converted between versions on the way in and out (`ketch.api.convert`).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from . import schema

STANDARD_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
NO_COLLECTION_DELETE = ("create", "delete", "get", "list", "patch", "update", "watch")


@dataclass(frozen=True)
class Resource:
    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool = True
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    verbs: tuple[str, ...] = STANDARD_VERBS
    subresources: tuple[str, ...] = ()
    # Fields a fieldSelector may name beyond metadata.name and metadata.namespace.
    selectable_fields: tuple[str, ...] = ()
    # Where objects of this kind live: `storage_version` is the version they are stored in.
    storage_prefix: str = ""
    storage_group: str = ""
    storage_version: str = ""
    # Definition name of this version's schema; derived from the GVK when left empty.
    definition: str = ""
    # False for resources computed on request and never kept in the store (metrics.k8s.io):
    # storage, OpenAPI, the namespace controller and the garbage collector leave them alone.
    stored: bool = True

    @property
    def group_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def api_version(self) -> str:
        return self.group_version

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def list_kind(self) -> str:
        return self.kind + "List"

    @property
    def storage_gv(self) -> str:
        g, v = self.storage_group, self.storage_version
        return f"{g}/{v}" if g else v

    @cached_property
    def schema_name(self) -> str:
        return self.definition or schema.gvk_index()[(self.group, self.version, self.kind)]

    @property
    def schema(self) -> schema.Node:
        return schema.node(self.schema_name)

    @property
    def has_status(self) -> bool:
        return "status" in self.subresources

    def key(self, namespace: str | None, name: str) -> str:
        if self.namespaced:
            return f"{self.storage_prefix}{namespace}/{name}"
        return f"{self.storage_prefix}{name}"

    def prefix(self, namespace: str | None = None) -> str:
        if self.namespaced and namespace:
            return f"{self.storage_prefix}{namespace}/"
        return self.storage_prefix


_resources: list[Resource] = []


def _add(group: str, version: str, kind: str, plural: str, *, stored_as: tuple[str, str] | None = None,
         registry_name: str | None = None, **kw) -> None:
    storage_group, storage_version = stored_as or (group, version)
    prefix = f"/registry/{registry_name or plural}/"
    _resources.append(Resource(group, version, kind, plural, storage_prefix=prefix,
                               storage_group=storage_group, storage_version=storage_version, **kw))


ALL = ("all",)
POD_FIELDS = ("spec.nodeName", "spec.restartPolicy", "spec.schedulerName", "spec.serviceAccountName",
              "spec.hostNetwork", "status.phase", "status.podIP", "status.nominatedNodeName")
EVENT_FIELDS = ("involvedObject.kind", "involvedObject.namespace", "involvedObject.name",
                "involvedObject.uid", "involvedObject.apiVersion", "involvedObject.resourceVersion",
                "involvedObject.fieldPath", "reason", "reportingComponent", "source", "type")

# core/v1
_add("", "v1", "Pod", "pods", short_names=("po",), categories=ALL,
     subresources=("status", "binding", "eviction", "log", "exec", "attach", "portforward", "proxy",
                   "ephemeralcontainers", "resize"),
     selectable_fields=POD_FIELDS)
_add("", "v1", "Service", "services", short_names=("svc",), categories=ALL,
     verbs=STANDARD_VERBS, subresources=("status", "proxy"), registry_name="services/specs",
     selectable_fields=("spec.clusterIP", "spec.type"))
_add("", "v1", "Endpoints", "endpoints", short_names=("ep",), registry_name="services/endpoints")
_add("", "v1", "ReplicationController", "replicationcontrollers", short_names=("rc",), categories=ALL,
     subresources=("status", "scale"), registry_name="controllers", selectable_fields=("status.replicas",))
_add("", "v1", "Namespace", "namespaces", namespaced=False, short_names=("ns",),
     verbs=NO_COLLECTION_DELETE, subresources=("status", "finalize"), selectable_fields=("status.phase",))
_add("", "v1", "Node", "nodes", namespaced=False, short_names=("no",), registry_name="minions",
     subresources=("status", "proxy"), selectable_fields=("spec.unschedulable",))
_add("", "v1", "Event", "events", short_names=("ev",), selectable_fields=EVENT_FIELDS)
_add("", "v1", "ConfigMap", "configmaps", short_names=("cm",))
_add("", "v1", "Secret", "secrets", selectable_fields=("type",))
_add("", "v1", "ServiceAccount", "serviceaccounts", short_names=("sa",), subresources=("token",))
_add("", "v1", "PersistentVolume", "persistentvolumes", namespaced=False, short_names=("pv",),
     subresources=("status",))
_add("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims", short_names=("pvc",),
     subresources=("status",))
_add("", "v1", "ResourceQuota", "resourcequotas", short_names=("quota",), subresources=("status",))
_add("", "v1", "LimitRange", "limitranges", short_names=("limits",))
_add("", "v1", "PodTemplate", "podtemplates")
_add("", "v1", "Binding", "bindings", verbs=("create",))

# apps
APPS_KINDS = (
    ("Deployment", "deployments", ("deploy",), ("status", "scale")),
    ("ReplicaSet", "replicasets", ("rs",), ("status", "scale")),
    ("StatefulSet", "statefulsets", ("sts",), ("status", "scale")),
    ("DaemonSet", "daemonsets", ("ds",), ("status",)),
    ("ControllerRevision", "controllerrevisions", (), ()),
)
for kind, plural, short, sub in APPS_KINDS:
    _add("apps", "v1", kind, plural, short_names=short, subresources=sub,
         categories=ALL if kind != "ControllerRevision" else (),
         selectable_fields=("status.replicas",) if kind == "ReplicaSet" else ())

# batch
_add("batch", "v1", "Job", "jobs", categories=ALL, subresources=("status",),
     selectable_fields=("status.successful",))
_add("batch", "v1", "CronJob", "cronjobs", short_names=("cj",), categories=ALL, subresources=("status",))

# autoscaling: v2 is the storage version; v1 is what the book uses.
for v in ("v2", "v1"):
    _add("autoscaling", v, "HorizontalPodAutoscaler", "horizontalpodautoscalers", short_names=("hpa",),
         categories=ALL, subresources=("status",), stored_as=("autoscaling", "v2"))

# networking
_add("networking.k8s.io", "v1", "Ingress", "ingresses", short_names=("ing",), subresources=("status",),
     registry_name="ingress")
_add("networking.k8s.io", "v1", "IngressClass", "ingressclasses", namespaced=False)
_add("networking.k8s.io", "v1", "NetworkPolicy", "networkpolicies", short_names=("netpol",),
     registry_name="networkpolicies")

_add("storage.k8s.io", "v1", "StorageClass", "storageclasses", namespaced=False, short_names=("sc",))
_add("coordination.k8s.io", "v1", "Lease", "leases")
_add("scheduling.k8s.io", "v1", "PriorityClass", "priorityclasses", namespaced=False, short_names=("pc",))
_add("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices")
_add("policy", "v1", "PodDisruptionBudget", "poddisruptionbudgets", short_names=("pdb",),
     subresources=("status",))
_add("events.k8s.io", "v1", "Event", "events", short_names=("ev",), stored_as=("", "v1"))

for kind, plural, namespaced in (("Role", "roles", True), ("ClusterRole", "clusterroles", False),
                                 ("RoleBinding", "rolebindings", True),
                                 ("ClusterRoleBinding", "clusterrolebindings", False)):
    _add("rbac.authorization.k8s.io", "v1", kind, plural, namespaced=namespaced)

# Reviews: answered from the request alone, never stored (`kubectl auth can-i`, `kubectl auth whoami`).
REVIEW_KINDS = {"SelfSubjectAccessReview", "SelfSubjectReview", "TokenReview"}
_add("authorization.k8s.io", "v1", "SelfSubjectAccessReview", "selfsubjectaccessreviews", namespaced=False,
     verbs=("create",))
_add("authentication.k8s.io", "v1", "SelfSubjectReview", "selfsubjectreviews", namespaced=False, verbs=("create",))
_add("authentication.k8s.io", "v1", "TokenReview", "tokenreviews", namespaced=False, verbs=("create",))

# metrics.k8s.io: usage the API server scrapes from the kubelets (ketch/apiserver/metrics.py), read-only.
for kind, plural, namespaced in (("NodeMetrics", "nodes", False), ("PodMetrics", "pods", True)):
    _add("metrics.k8s.io", "v1beta1", kind, plural, namespaced=namespaced, verbs=("get", "list"), stored=False,
         registry_name=f"metrics.k8s.io/{plural}", definition=f"io.k8s.metrics.pkg.apis.metrics.v1beta1.{kind}")

# The book's legacy versions, stored in today's versions.
_LEGACY_APPS = {
    ("extensions", "v1beta1"): ("Deployment", "ReplicaSet", "DaemonSet"),
    ("apps", "v1beta1"): ("Deployment", "StatefulSet", "ControllerRevision"),
    ("apps", "v1beta2"): ("Deployment", "ReplicaSet", "StatefulSet", "DaemonSet", "ControllerRevision"),
}
for (group, version), kinds in _LEGACY_APPS.items():
    for kind, plural, short, sub in APPS_KINDS:
        if kind in kinds:
            # Short names stay with today's group: kubectl warns when one names two groups.
            _add(group, version, kind, plural, short_names=short if group == "apps" else (), subresources=sub,
                 stored_as=("apps", "v1"), definition=f"io.k8s.api.{group}.{version}.{kind}",
                 categories=ALL if kind != "ControllerRevision" else ())
_add("extensions", "v1beta1", "Ingress", "ingresses", subresources=("status",),
     stored_as=("networking.k8s.io", "v1"), registry_name="ingress",
     definition="io.k8s.api.extensions.v1beta1.Ingress")
for group in ("extensions", "policy"):
    _add(group, "v1beta1", "PodSecurityPolicy", "podsecuritypolicies", namespaced=False,
         short_names=("psp",) if group == "policy" else (), stored_as=("policy", "v1beta1"), registry_name="podsecuritypolicy",
         definition=f"io.k8s.api.{group}.v1beta1.PodSecurityPolicy")
for version in ("v1beta1", "v2alpha1"):
    _add("batch", version, "CronJob", "cronjobs", short_names=("cj",), categories=ALL,
         subresources=("status",), stored_as=("batch", "v1"),
         definition=f"io.k8s.api.batch.{version}.CronJob")
_add("storage.k8s.io", "v1beta1", "StorageClass", "storageclasses", namespaced=False, short_names=("sc",),
     stored_as=("storage.k8s.io", "v1"), definition="io.k8s.api.storage.v1beta1.StorageClass")

RESOURCES: tuple[Resource, ...] = tuple(_resources)

# Kinds (by storage group) whose delete answers with the deleted object rather than a Status: the
# registries upstream marks ReturnDeletedObject.
RETURNS_DELETED_OBJECT = {("", "Pod"), ("", "PodTemplate"), ("", "Service"), ("", "ServiceAccount"),
                          ("", "PersistentVolume"), ("", "PersistentVolumeClaim"), ("", "ResourceQuota"),
                          ("storage.k8s.io", "StorageClass"), ("policy", "PodSecurityPolicy")}

# Discovery order matters: kubectl resolves `deployments` to the first group that serves it, so
# today's groups come before the legacy ones, and each group lists its preferred version first.
GROUP_ORDER = ("", "apps", "events.k8s.io", "authentication.k8s.io", "authorization.k8s.io", "autoscaling",
               "batch", "networking.k8s.io", "policy", "rbac.authorization.k8s.io", "storage.k8s.io",
               "coordination.k8s.io", "discovery.k8s.io", "extensions", "metrics.k8s.io")
PREFERRED_VERSION = {"": "v1", "apps": "v1", "autoscaling": "v2", "batch": "v1", "policy": "v1",
                     "storage.k8s.io": "v1", "extensions": "v1beta1"}

_by_path = {(r.group, r.version, r.plural): r for r in RESOURCES}
_by_kind = {(r.group, r.version, r.kind): r for r in RESOURCES}


def lookup(group: str, version: str, plural: str) -> Resource | None:
    return _by_path.get((group, version, plural))


def by_kind(group: str, version: str, kind: str) -> Resource | None:
    return _by_kind.get((group, version, kind))


def group_versions() -> dict[str, list[str]]:
    """group → served versions, preferred first."""
    out: dict[str, list[str]] = {}
    for r in RESOURCES:
        versions = out.setdefault(r.group, [])
        if r.version not in versions:
            versions.append(r.version)
    for group, versions in out.items():
        preferred = PREFERRED_VERSION.get(group, versions[0])
        versions.sort(key=lambda v: (v != preferred, _version_rank(v)))
    return {g: out[g] for g in sorted(out, key=lambda g: (GROUP_ORDER.index(g) if g in GROUP_ORDER else 99, g))}


def _version_rank(version: str) -> tuple:
    """Kubernetes version priority: GA > beta > alpha, higher numbers first."""
    import re
    m = re.fullmatch(r"v(\d+)(?:(alpha|beta)(\d+))?", version)
    if not m:
        return (3, version)
    major, stage, minor = int(m[1]), m[2], int(m[3] or 0)
    return ({None: 0, "beta": 1, "alpha": 2}[stage], -major, -minor)


def resources_in(group: str, version: str) -> list[Resource]:
    return [r for r in RESOURCES if r.group == group and r.version == version]


def storage_resource(r: Resource) -> Resource:
    """The Resource of the version `r`'s objects are stored in."""
    return _by_kind[(r.storage_group, r.storage_version, r.kind)]
