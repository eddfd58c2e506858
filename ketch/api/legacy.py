"""The book's legacy API versions: their schemas and their defaults.

Kubernetes 1.35 no longer ships extensions/v1beta1, apps/v1beta1, apps/v1beta2, batch/v1beta1,
batch/v2alpha1, storage.k8s.io/v1beta1 or PodSecurityPolicy; ketch serves them because the book's
manifests use them. Their schemas are derived from today's definitions: the current types are copied
into the legacy package (references among them renamed along), then the fields that differed are
patched. PodSecurityPolicy has no successor, so it is written out from the 1.24 policy/v1beta1 types.

The defaults are the old versioned defaulters (1.15/1.16). They are applied to an object in its
legacy version, before `ketch.api.convert` takes it to its storage version, where the storage
version's defaults fill whatever is still missing.
"""
from __future__ import annotations

import copy
import functools
from typing import Any, Callable, Iterable, Iterator, Mapping

from . import kinds, metricsapi, schema

REF_PREFIX = "#/definitions/"
GVK = "x-kubernetes-group-version-kind"
MAX_INT32 = 2**31 - 1


# --- deriving definitions from today's ------------------------------------------------------------

def _package(group: str, version: str) -> str:
    """Definition-name prefix of a group version: ('storage.k8s.io', 'v1') → io.k8s.api.storage.v1."""
    return f"io.k8s.api.{group.split('.')[0] or 'core'}.{version}"


def _refs(node: Any) -> Iterator[str]:
    """Names of the definitions referenced anywhere under `node`."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value.removeprefix(REF_PREFIX)
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def _rename_refs(node: Any, renames: Mapping[str, str]) -> None:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.removeprefix(REF_PREFIX) in renames:
            node["$ref"] = REF_PREFIX + renames[ref.removeprefix(REF_PREFIX)]
        for value in node.values():
            _rename_refs(value, renames)
    elif isinstance(node, list):
        for value in node:
            _rename_refs(value, renames)


def _reachable(defs: Mapping[str, dict], roots: Iterable[str], package: str,
               stop: Iterable[str] = ()) -> list[str]:
    """Names under `package` reachable from `roots`, following references within the package."""
    stopped = {f"{package}.{name}" for name in stop}
    seen: list[str] = []
    pending = [f"{package}.{name}" for name in roots]
    while pending:
        name = pending.pop(0)
        if name in seen or name in stopped:
            continue
        seen.append(name)
        pending.extend(r for r in _refs(defs[name]) if r.startswith(package + ".") and r.rsplit(".", 1)[0] == package)
    return seen


def _derive(source: Mapping[str, dict], source_package: str, group: str, version: str,
            roots: Iterable[str], stop: Iterable[str] = ()) -> dict[str, dict]:
    """Copy `roots` and the same-package types they use from `source_package` into group/version.

    References among the copied types follow them into the new package; the group-version-kind
    of top-level types is rewritten. Types named in `stop` are not copied and stay referenced.
    """
    target_package = _package(group, version)
    names = _reachable(source, roots, source_package, stop)
    renames = {name: target_package + name.removeprefix(source_package) for name in names}
    out: dict[str, dict] = {}
    for name in names:
        body = copy.deepcopy(source[name])
        _rename_refs(body, renames)
        if GVK in body:
            body[GVK] = [{"group": group, "kind": g["kind"], "version": version} for g in body[GVK]]
        out[renames[name]] = body
    return out


def _prune(defs: dict[str, dict], package: str) -> None:
    """Drop the package's definitions no top-level type uses any more."""
    roots = [n.rsplit(".", 1)[1] for n, body in defs.items() if GVK in body and n.startswith(package + ".")]
    keep = set(_reachable(defs, roots, package))
    for name in [n for n in defs if n.startswith(package + ".") and n not in keep]:
        del defs[name]


def _redescribe(prop: dict, old: str, new: str) -> None:
    """Correct a default the copied description states (left alone if the wording moved on)."""
    prop["description"] = prop.get("description", "").replace(old, new)


def _make_optional(body: dict, field: str, note: str) -> None:
    required = [r for r in body.get("required", ()) if r != field]
    if required:
        body["required"] = required
    else:
        body.pop("required", None)
    prop = body["properties"][field]
    prop["description"] = f"{prop.get('description', '').rstrip()} {note}".strip()


def _mark_deprecated(defs: dict[str, dict], group: str, version: str) -> None:
    for body in defs.values():
        for gvk in body.get(GVK, ()):
            resource = kinds.by_kind(group, version, gvk["kind"])
            if resource is not None and resource.storage_gv != resource.group_version:
                body["description"] = (f"DEPRECATED: {group}/{version} {gvk['kind']} is served for older "
                                       f"clients and stored as {resource.storage_gv}. {body.get('description', '')}")


# Small schema builders for the types written out by hand.

def _string(description: str) -> dict:
    return {"description": description, "type": "string"}


def _boolean(description: str) -> dict:
    return {"description": description, "type": "boolean"}


def _integer(description: str, fmt: str = "int32") -> dict:
    return {"description": description, "format": fmt, "type": "integer"}


def _ref(name: str, description: str) -> dict:
    return {"$ref": REF_PREFIX + name, "description": description}


def _array(items: dict, description: str) -> dict:
    return {"description": description, "items": items, "type": "array"}


def _object(description: str, properties: dict, required: Iterable[str] = ()) -> dict:
    body: dict[str, Any] = {"description": description, "properties": properties, "type": "object"}
    if required:
        body["required"] = list(required)
    return body


def _type_meta() -> dict:
    """apiVersion and kind, described the way every current type describes them."""
    current = schema.definitions()["io.k8s.api.apps.v1.Deployment"]["properties"]
    return {"apiVersion": copy.deepcopy(current["apiVersion"]), "kind": copy.deepcopy(current["kind"])}


# --- apps: extensions/v1beta1, apps/v1beta1, apps/v1beta2 -----------------------------------------

APPS_V1 = "io.k8s.api.apps.v1"
_SELECTOR_NOTE = "When omitted, it defaults to the pod template's labels."

# The defaults each legacy version applied where apps/v1 applies another (see the defaulters below).
_DEFAULT_TEXT: dict[tuple[str, str], list[tuple[str, str, str, str]]] = {
    ("extensions", "v1beta1"): [
        ("RollingUpdateDeployment", "maxUnavailable", "Defaults to 25%.", "Defaults to 1."),
        ("RollingUpdateDeployment", "maxSurge", "Defaults to 25%.", "Defaults to 1."),
        ("DeploymentSpec", "revisionHistoryLimit", "Defaults to 10.", "Defaults to 2147483647 (keep all)."),
        ("DeploymentSpec", "progressDeadlineSeconds", "Defaults to 600s.",
         "Defaults to 2147483647s (no deadline)."),
        ("DaemonSetUpdateStrategy", "type", "Default is RollingUpdate.", "Default is OnDelete."),
    ],
    ("apps", "v1beta1"): [
        ("DeploymentSpec", "revisionHistoryLimit", "Defaults to 10.", "Defaults to 2."),
        ("StatefulSetUpdateStrategy", "type", "Default is RollingUpdate.", "Default is OnDelete."),
    ],
}


def _apps(group: str, version: str, served: Iterable[str], *, selector_defaulted: bool,
          rollback: bool, template_generation: bool) -> dict[str, dict]:
    roots = [name for kind in served for name in (kind, kind + "List")]
    defs = _derive(schema.definitions(), APPS_V1, group, version, roots)
    package = _package(group, version)

    for type_name, field, old, new in _DEFAULT_TEXT.get((group, version), ()):
        if f"{package}.{type_name}" in defs:
            _redescribe(defs[f"{package}.{type_name}"]["properties"][field], old, new)
    if selector_defaulted:
        for spec in ("DeploymentSpec", "ReplicaSetSpec", "DaemonSetSpec", "StatefulSetSpec"):
            if f"{package}.{spec}" in defs:
                _make_optional(defs[f"{package}.{spec}"], "selector", _SELECTOR_NOTE)
    if rollback:
        defs[f"{package}.DeploymentSpec"]["properties"]["rollbackTo"] = _ref(
            f"{package}.RollbackConfig",
            "DEPRECATED: the revision to roll back to. The deployment controller starts the rollback, "
            "then clears the field.")
        defs.update(_rollback_types(group, version))
    if template_generation:
        defs[f"{package}.DaemonSetSpec"]["properties"]["templateGeneration"] = _integer(
            "DEPRECATED: a sequence number of the pod template's generation, set by the server. It may be "
            "set only at creation.", "int64")
    defs.update(_scale_types(group, version))
    return defs


def _rollback_types(group: str, version: str) -> dict[str, dict]:
    package = _package(group, version)
    return {
        f"{package}.RollbackConfig": _object(
            "DEPRECATED: which revision of a Deployment to roll back to.",
            {"revision": _integer("The revision to roll back to. 0 means the revision before the current "
                                  "one.", "int64")}),
        f"{package}.DeploymentRollback": {
            **_object(
                "DEPRECATED: a request to roll a Deployment back to an earlier revision, posted to its "
                "rollback subresource.",
                {**_type_meta(),
                 "name": _string("Name of the Deployment to roll back."),
                 "rollbackTo": _ref(f"{package}.RollbackConfig", "The revision to roll back to."),
                 "updatedAnnotations": {"additionalProperties": {"type": "string"},
                                        "description": "Annotations to set on the Deployment along with "
                                                       "the rollback.",
                                        "type": "object"}},
                required=("name", "rollbackTo")),
            GVK: [{"group": group, "kind": "DeploymentRollback", "version": version}],
        },
    }


def _scale_types(group: str, version: str) -> dict[str, dict]:
    """The group's own Scale (the scale subresource's body), derived from autoscaling/v1's."""
    defs = _derive(schema.definitions(), "io.k8s.api.autoscaling.v1", group, version, ["Scale"])
    status = defs[f"{_package(group, version)}.ScaleStatus"]["properties"]
    status["selector"] = {"additionalProperties": {"type": "string"},
                          "description": "The label query over the pods counted in replicas, as a map of "
                                         "labels. Left empty when the query has set-based requirements.",
                          "type": "object"}
    status["targetSelector"] = _string("The label query over the pods counted in replicas, in the string "
                                       "form of label selectors (the query-parameter syntax).")
    return defs


# --- extensions/v1beta1 Ingress ---------------------------------------------------------------------

def _ingress() -> dict[str, dict]:
    current = schema.definitions()
    defs = _derive(current, "io.k8s.api.networking.v1", "extensions", "v1beta1", ["Ingress", "IngressList"])
    package = _package("extensions", "v1beta1")

    backend = copy.deepcopy(current["io.k8s.api.networking.v1.IngressBackend"])
    resource = backend["properties"]["resource"]
    _redescribe(resource, "a service.Name and service.Port must not be specified",
                "serviceName and servicePort must not be specified")
    backend["properties"] = {
        "resource": resource,
        "serviceName": _string("Name of the referenced service."),
        "servicePort": {"$ref": REF_PREFIX + schema.INT_OR_STRING,
                        "description": "Port of the referenced service: its number, or the name of one of "
                                       "its ports."},
    }
    defs[f"{package}.IngressBackend"] = backend

    spec = defs[f"{package}.IngressSpec"]["properties"]
    default_backend = spec.pop("defaultBackend")
    spec["backend"] = {**default_backend,
                       "description": "The backend for requests that match no rule. At least one of backend "
                                      "or rules must be given."}
    path = defs[f"{package}.HTTPIngressPath"]
    path["required"] = ["backend"]
    path["properties"]["pathType"]["description"] += (
        "\nOptional in this version: defaults to ImplementationSpecific.")
    _prune(defs, package)
    return defs


# --- PodSecurityPolicy (policy/v1beta1, and extensions/v1beta1 with the same fields) -----------------

def _pod_security_policy() -> dict[str, dict]:
    package = _package("policy", "v1beta1")
    meta = "io.k8s.apimachinery.pkg.apis.meta.v1"

    def named(name: str, description: str) -> dict:
        return _ref(f"{package}.{name}", description)

    def id_ranges(what: str) -> dict:
        return _array({"$ref": f"{REF_PREFIX}{package}.IDRange"},
                      f"The ranges of {what} allowed. Required for MustRunAs; the first range's minimum is "
                      "the default.")

    def strategy(description: str, what: str, rule_required: bool) -> dict:
        return _object(description,
                       {"rule": _string(f"The strategy that dictates the allowable {what}: MustRunAs, "
                                        "MayRunAs or RunAsAny (RunAsUser also allows MustRunAsNonRoot)."),
                        "ranges": id_ranges(what)},
                       required=("rule",) if rule_required else ())

    string_list = {"type": "string"}
    spec = _object("The conditions a pod must meet to be admitted under the policy.", {
        "privileged": _boolean("Whether a pod may run privileged containers."),
        "defaultAddCapabilities": _array(string_list, "Capabilities added to every container unless its "
                                                      "spec drops them. Implicitly allowed."),
        "requiredDropCapabilities": _array(string_list, "Capabilities every container must drop; they may "
                                                        "not be added."),
        "allowedCapabilities": _array(string_list, "Capabilities a container may request to add. '*' "
                                                   "allows any."),
        "volumes": _array(string_list, "The volume types a pod may use. '*' allows all; empty allows none."),
        "hostNetwork": _boolean("Whether a pod may use the node's network namespace."),
        "hostPorts": _array({"$ref": f"{REF_PREFIX}{package}.HostPortRange"},
                            "The host port ranges a pod may expose."),
        "hostPID": _boolean("Whether a pod may use the node's process ID namespace."),
        "hostIPC": _boolean("Whether a pod may use the node's IPC namespace."),
        "seLinux": named("SELinuxStrategyOptions", "How SELinux labels of pods are set and checked."),
        "runAsUser": named("RunAsUserStrategyOptions", "Which user IDs containers may run as."),
        "runAsGroup": named("RunAsGroupStrategyOptions", "Which primary group IDs containers may run as. "
                                                         "When omitted, the pod's own choice stands."),
        "supplementalGroups": named("SupplementalGroupsStrategyOptions",
                                    "Which supplemental groups a pod may use."),
        "fsGroup": named("FSGroupStrategyOptions", "Which FSGroup a pod's volumes may be given."),
        "readOnlyRootFilesystem": _boolean("Whether containers must run with a read-only root filesystem."),
        "defaultAllowPrivilegeEscalation": _boolean("The allowPrivilegeEscalation a container gets when it "
                                                    "does not say."),
        "allowPrivilegeEscalation": _boolean("Whether a container may allow privilege escalation. "
                                             "Defaults to true."),
        "allowedHostPaths": _array({"$ref": f"{REF_PREFIX}{package}.AllowedHostPath"},
                                   "The host paths hostPath volumes may use. Empty allows any."),
        "allowedFlexVolumes": _array({"$ref": f"{REF_PREFIX}{package}.AllowedFlexVolume"},
                                     "The Flexvolume drivers a pod may use. Empty allows any."),
        "allowedCSIDrivers": _array({"$ref": f"{REF_PREFIX}{package}.AllowedCSIDriver"},
                                    "The CSI drivers inline CSI volumes may use. Empty allows any."),
        "allowedUnsafeSysctls": _array(string_list, "Unsafe sysctls a pod may set; a trailing '*' matches "
                                                    "a prefix."),
        "forbiddenSysctls": _array(string_list, "Sysctls a pod may not set; a trailing '*' matches a "
                                                "prefix."),
        "allowedProcMountTypes": _array(string_list, "The procMount types containers may use. Empty allows "
                                                     "only the default."),
        "runtimeClass": named("RuntimeClassStrategyOptions", "Which RuntimeClasses a pod may use. When "
                                                             "omitted, any is allowed."),
    }, required=("seLinux", "runAsUser", "supplementalGroups", "fsGroup"))

    def range_type(description: str, fmt: str) -> dict:
        return _object(description, {"min": _integer("Start of the range, inclusive.", fmt),
                                     "max": _integer("End of the range, inclusive.", fmt)},
                       required=("min", "max"))

    policy = f"{package}.PodSecurityPolicy"
    defs = {
        policy: {**_object("DEPRECATED: a cluster-wide policy on the security-sensitive parts of pods. "
                           "Removed from Kubernetes in 1.25; served by ketch for older clients.",
                           {**_type_meta(),
                            "metadata": _ref(f"{meta}.ObjectMeta", "Standard object's metadata."),
                            "spec": named("PodSecurityPolicySpec", "The policy enforced.")}),
                 GVK: [{"group": "policy", "kind": "PodSecurityPolicy", "version": "v1beta1"}]},
        policy + "List": {**_object("A list of PodSecurityPolicy objects.",
                                    {**_type_meta(),
                                     "items": _array({"$ref": REF_PREFIX + policy}, "The PodSecurityPolicies."),
                                     "metadata": _ref(f"{meta}.ListMeta", "Standard list metadata.")},
                                    required=("items",)),
                          GVK: [{"group": "policy", "kind": "PodSecurityPolicyList", "version": "v1beta1"}]},
        policy + "Spec": spec,
        f"{package}.HostPortRange": range_type("A range of host ports.", "int32"),
        f"{package}.IDRange": range_type("A range of user or group IDs.", "int64"),
        f"{package}.AllowedHostPath": _object("A host path prefix hostPath volumes may use.", {
            "pathPrefix": _string("The allowed path prefix, matched a path element at a time: /foo allows "
                                  "/foo and /foo/bar but not /food."),
            "readOnly": _boolean("Whether volumes under the prefix must be mounted read-only.")}),
        f"{package}.AllowedFlexVolume": _object("A Flexvolume driver pods may use.", {
            "driver": _string("Name of the Flexvolume driver.")}, required=("driver",)),
        f"{package}.AllowedCSIDriver": _object("A CSI driver inline CSI volumes may use.", {
            "name": _string("Registered name of the CSI driver.")}, required=("name",)),
        f"{package}.SELinuxStrategyOptions": _object("How SELinux labels are chosen and checked.", {
            "rule": _string("The strategy that dictates the allowable labels: MustRunAs or RunAsAny."),
            "seLinuxOptions": _ref("io.k8s.api.core.v1.SELinuxOptions",
                                   "The labels to apply under MustRunAs.")}, required=("rule",)),
        f"{package}.RunAsUserStrategyOptions": strategy("Which user IDs containers may run as.",
                                                        "user IDs", True),
        f"{package}.RunAsGroupStrategyOptions": strategy("Which primary group IDs containers may run as.",
                                                         "group IDs", True),
        f"{package}.SupplementalGroupsStrategyOptions": strategy("Which supplemental groups a pod may use.",
                                                                 "supplemental groups", False),
        f"{package}.FSGroupStrategyOptions": strategy("Which FSGroup a pod's volumes may be given.",
                                                      "FSGroup IDs", False),
        f"{package}.RuntimeClassStrategyOptions": _object("Which RuntimeClasses a pod may use.", {
            "allowedRuntimeClassNames": _array(string_list, "RuntimeClass names a pod may use; '*' allows "
                                                            "any, empty requires none to be set."),
            "defaultRuntimeClassName": _string("The RuntimeClass a pod gets when it names none.")},
            required=("allowedRuntimeClassNames",)),
    }
    return {**defs, **_derive(defs, package, "extensions", "v1beta1", ["PodSecurityPolicy",
                                                                      "PodSecurityPolicyList"])}


# --- everything -------------------------------------------------------------------------------------

def _build() -> dict[str, dict]:
    current = schema.definitions()
    groups: list[tuple[str, str, dict[str, dict]]] = [
        ("extensions", "v1beta1", _apps("extensions", "v1beta1", ("Deployment", "ReplicaSet", "DaemonSet"),
                                        selector_defaulted=True, rollback=True, template_generation=True)),
        ("apps", "v1beta1", _apps("apps", "v1beta1", ("Deployment", "StatefulSet", "ControllerRevision"),
                                  selector_defaulted=True, rollback=True, template_generation=False)),
        ("apps", "v1beta2", _apps("apps", "v1beta2", ("Deployment", "ReplicaSet", "StatefulSet", "DaemonSet",
                                                      "ControllerRevision"),
                                  selector_defaulted=False, rollback=False, template_generation=False)),
        ("extensions", "v1beta1", _ingress()),
        ("batch", "v1beta1", _derive(current, "io.k8s.api.batch.v1", "batch", "v1beta1",
                                     ["CronJob", "CronJobList"], stop=["JobSpec"])),
        ("batch", "v2alpha1", _derive(current, "io.k8s.api.batch.v1", "batch", "v2alpha1",
                                      ["CronJob", "CronJobList"], stop=["JobSpec"])),
        ("storage.k8s.io", "v1beta1", _derive(current, "io.k8s.api.storage.v1", "storage.k8s.io", "v1beta1",
                                              ["StorageClass", "StorageClassList"])),
    ]
    out: dict[str, dict] = {}
    for group, version, defs in groups:
        _mark_deprecated(defs, group, version)
        out.update(defs)
    psp = _pod_security_policy()
    extensions_psp = "io.k8s.api.extensions.v1beta1.PodSecurityPolicy"
    psp[extensions_psp]["description"] = ("DEPRECATED: extensions/v1beta1 PodSecurityPolicy is served for "
                                          "older clients and stored as policy/v1beta1. "
                                          "A cluster-wide policy on the security-sensitive parts of pods.")
    out.update(psp)
    for body in out.values():  # upstream publishes properties in name order
        if "properties" in body:
            body["properties"] = dict(sorted(body["properties"].items()))
    return out


LEGACY_DEFINITIONS: dict[str, dict] = _build()


def install() -> None:
    """Publish the legacy definitions in `ketch.api.schema`. Safe to call any number of times."""
    if not LEGACY_DEFINITIONS.keys() <= schema.definitions().keys():
        schema.add_definitions(LEGACY_DEFINITIONS)
    metricsapi.install()  # metrics.k8s.io: also absent from upstream's release


# --- legacy defaults ------------------------------------------------------------------------------

def _child(parent: dict, key: str) -> dict | None:
    """parent[key] as a dict, created when absent or null; None when it holds something else."""
    value = parent.get(key)
    if value is None:
        value = parent[key] = {}
    return value if isinstance(value, dict) else None


def _default(obj: dict, key: str, value: Any) -> None:
    """Set a field Go would see as unset (nil pointer, empty string)."""
    if obj.get(key) in (None, ""):
        obj[key] = value


def _selector_from_template(obj: dict, spec: dict) -> None:
    """A missing selector, and empty object labels, default to the pod template's labels."""
    template = spec.get("template")
    template_meta = template.get("metadata") if isinstance(template, dict) else None
    labels = template_meta.get("labels") if isinstance(template_meta, dict) else None
    if not isinstance(labels, dict):
        return
    if spec.get("selector") is None:
        spec["selector"] = {"matchLabels": dict(labels)}
    meta = _child(obj, "metadata")
    if meta is not None and not meta.get("labels"):
        meta["labels"] = dict(labels)


def _deployment(obj: dict, *, from_template: bool, rolling: int | str, history: int, deadline: int,
                rolling_when_given: bool) -> None:
    spec = _child(obj, "spec")
    if spec is None:
        return
    if from_template:
        _selector_from_template(obj, spec)
    _default(spec, "replicas", 1)
    strategy = _child(spec, "strategy")
    if strategy is not None:
        _default(strategy, "type", "RollingUpdate")
        # extensions filled in rollingUpdate whenever one was given, whatever the type.
        given = rolling_when_given and strategy.get("rollingUpdate") is not None
        if strategy["type"] == "RollingUpdate" or given:
            update = _child(strategy, "rollingUpdate")
            if update is not None:
                _default(update, "maxUnavailable", rolling)
                _default(update, "maxSurge", rolling)
    _default(spec, "revisionHistoryLimit", history)
    _default(spec, "progressDeadlineSeconds", deadline)


def _replica_set(obj: dict, *, from_template: bool) -> None:
    spec = _child(obj, "spec")
    if spec is None:
        return
    if from_template:
        _selector_from_template(obj, spec)
    _default(spec, "replicas", 1)


def _daemon_set(obj: dict, *, from_template: bool, update_type: str, template_generation: bool) -> None:
    spec = _child(obj, "spec")
    if spec is None:
        return
    if from_template:
        _selector_from_template(obj, spec)
    strategy = _child(spec, "updateStrategy")
    if strategy is not None:
        _default(strategy, "type", update_type)
        if strategy["type"] == "RollingUpdate":
            update = _child(strategy, "rollingUpdate")
            if update is not None:
                _default(update, "maxUnavailable", 1)
    _default(spec, "revisionHistoryLimit", 10)
    if template_generation:
        _default(spec, "templateGeneration", 1)


def _stateful_set(obj: dict, *, from_template: bool, update_type: str) -> None:
    spec = _child(obj, "spec")
    if spec is None:
        return
    _default(spec, "podManagementPolicy", "OrderedReady")
    strategy = _child(spec, "updateStrategy")
    if strategy is not None:
        if not strategy.get("type"):
            strategy["type"] = update_type
            if update_type == "RollingUpdate":
                _child(strategy, "rollingUpdate")
        update = strategy.get("rollingUpdate")
        if strategy["type"] == "RollingUpdate" and isinstance(update, dict):
            _default(update, "partition", 0)
    if from_template:
        _selector_from_template(obj, spec)
    _default(spec, "replicas", 1)
    _default(spec, "revisionHistoryLimit", 10)


def _cron_job(obj: dict, *, history_limits: bool) -> None:
    spec = _child(obj, "spec")
    if spec is None:
        return
    _default(spec, "concurrencyPolicy", "Allow")
    _default(spec, "suspend", False)
    if history_limits:  # v2alpha1 left them unset
        _default(spec, "successfulJobsHistoryLimit", 3)
        _default(spec, "failedJobsHistoryLimit", 1)


def _storage_class(obj: dict) -> None:
    _default(obj, "reclaimPolicy", "Delete")
    _default(obj, "volumeBindingMode", "Immediate")


def _pod_security_policy_defaults(obj: dict) -> None:
    spec = _child(obj, "spec")
    if spec is not None:
        _default(spec, "allowPrivilegeEscalation", True)


_p = functools.partial
_DEFAULTERS: dict[tuple[str, str, str], Callable[[dict], None]] = {
    ("extensions", "v1beta1", "Deployment"): _p(_deployment, from_template=True, rolling=1, history=MAX_INT32,
                                                deadline=MAX_INT32, rolling_when_given=True),
    ("extensions", "v1beta1", "ReplicaSet"): _p(_replica_set, from_template=True),
    ("extensions", "v1beta1", "DaemonSet"): _p(_daemon_set, from_template=True, update_type="OnDelete",
                                               template_generation=True),
    ("extensions", "v1beta1", "PodSecurityPolicy"): _pod_security_policy_defaults,
    ("apps", "v1beta1", "Deployment"): _p(_deployment, from_template=True, rolling="25%", history=2,
                                          deadline=600, rolling_when_given=False),
    ("apps", "v1beta1", "StatefulSet"): _p(_stateful_set, from_template=True, update_type="OnDelete"),
    ("apps", "v1beta2", "Deployment"): _p(_deployment, from_template=False, rolling="25%", history=10,
                                          deadline=600, rolling_when_given=False),
    ("apps", "v1beta2", "ReplicaSet"): _p(_replica_set, from_template=False),
    ("apps", "v1beta2", "DaemonSet"): _p(_daemon_set, from_template=False, update_type="RollingUpdate",
                                         template_generation=False),
    ("apps", "v1beta2", "StatefulSet"): _p(_stateful_set, from_template=False, update_type="RollingUpdate"),
    ("batch", "v1beta1", "CronJob"): _p(_cron_job, history_limits=True),
    ("batch", "v2alpha1", "CronJob"): _p(_cron_job, history_limits=False),
    ("storage.k8s.io", "v1beta1", "StorageClass"): _storage_class,
    ("policy", "v1beta1", "PodSecurityPolicy"): _pod_security_policy_defaults,
}


def apply_legacy_defaults(group: str, version: str, kind: str, obj: dict) -> None:
    """Apply, in place, the defaults `group/version` gave `kind` (items of a `kind`List too).

    Kinds without legacy defaults are left alone.
    """
    if kind.endswith("List") and isinstance(obj.get("items"), list):
        for item in obj["items"]:
            apply_legacy_defaults(group, version, kind.removesuffix("List"), item)
        return
    defaulter = _DEFAULTERS.get((group, version, kind))
    if defaulter is not None and isinstance(obj, dict):
        defaulter(obj)
