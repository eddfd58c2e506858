"""Per-kind behaviour of the generic registry, as the apiserver's REST strategies define it.

The registry (registry.py) is the same for every kind; what differs lives here: which kinds keep a
generation, what a create resets, what the status subresource may change, which kinds delete
gracefully, and the allocations some kinds need (Service cluster IPs and node ports).
"""
from __future__ import annotations

import base64
import copy
import random
from typing import Any

from ..api import defaults, kinds
from ..api.jsonclone import clone

GENERATE_NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
CREATE_ON_UPDATE = {("", "Endpoints"), ("", "Event"), ("coordination.k8s.io", "Lease")}
DEFAULT_POD_GRACE_SECONDS = 30
TEMPLATE_GENERATION = "deprecated.daemonset.template.generation"


def canonicalize(res: kinds.Resource, obj: dict) -> None:
    """Write-only conveniences folded into the stored form, as upstream's conversion does:
    a Secret's stringData is base64-encoded into data (overriding same keys) and dropped."""
    if res.storage_group == "" and res.kind == "Secret" and "stringData" in obj:
        string_data = obj.pop("stringData") or {}
        if string_data:
            data = obj.setdefault("data", {}) or {}
            obj["data"] = data
            for key, value in string_data.items():
                data[key] = base64.b64encode(str(value).encode()).decode()


# Kinds (as requested: group, version, kind) whose deletion orphans dependents unless the client
# asks otherwise — upstream keeps this default for API versions older than server-side GC.
_ORPHAN_BY_DEFAULT_KINDS = {"Deployment", "ReplicaSet", "DaemonSet", "StatefulSet"}


def default_propagation(res: kinds.Resource) -> str:
    if (res.group, res.version, res.kind) in (("", "v1", "ReplicationController"), ("batch", "v1", "Job")):
        return "Orphan"
    if res.group in ("extensions", "apps") and res.version != "v1" and res.kind in _ORPHAN_BY_DEFAULT_KINDS:
        return "Orphan"
    return "Background"


def generate_name(prefix: str) -> str:
    """Five random characters, as upstream's utilrand.String (math/rand: names are not secrets)."""
    return prefix + "".join(random.choices(GENERATE_NAME_ALPHABET, k=5))


# Kinds with a spec whose upstream strategy keeps no generation (no controller reports an
# observedGeneration for them): kubectl shows none on a Service, Node, Lease, ...
_NO_GENERATION = {("", "Node"), ("", "Service"), ("", "Namespace"), ("", "PersistentVolume"),
                  ("", "PersistentVolumeClaim"), ("", "ResourceQuota"), ("", "LimitRange"),
                  ("coordination.k8s.io", "Lease")}


def tracks_generation(res: kinds.Resource) -> bool:
    """Kinds with a spec bump metadata.generation when their spec changes (most, not all)."""
    stored = kinds.storage_resource(res)
    return "spec" in stored.schema.properties and (stored.storage_group, stored.kind) not in _NO_GENERATION


_ZERO_SCALARS = {"integer": 0, "number": 0, "string": "", "boolean": False}


def go_zero(node) -> Any:
    """How Go encodes the zero value of a schema's type: a struct as its required (non-omitempty)
    fields, each zero; scalars as 0, "" or false; slices and maps as null."""
    if node.type == "object" and not node.is_map:
        return {name: go_zero(child) for name in node.required if (child := node.field(name)) is not None}
    return _ZERO_SCALARS.get(node.type)


def prepare_for_create(res: kinds.Resource, obj: dict) -> None:
    """Reset what a client may not set on create (after uid and name are assigned)."""
    core = res.storage_group == ""
    if core and res.kind == "Node":
        # Upstream lets a Node carry its status on create (the kubelet registers with it), all
        # but status.config, which only the kubelet's dynamic configuration set.
        (obj.get("status") or {}).pop("config", None)
    elif res.has_status:
        obj.pop("status", None)
    if core and res.kind == "Pod":
        defaults.pod_prepare_for_create(obj)
    elif core and res.kind == "Namespace":
        defaults.namespace_prepare_for_create(obj)
    elif res.storage_group == "batch" and res.kind == "Job":
        defaults.job_prepare_for_create(obj)
    elif (core and res.kind == "Service") or (res.storage_group == "networking.k8s.io" and res.kind == "Ingress"):
        obj["status"] = {"loadBalancer": {}}
    # Go encodes a zero spec or status struct (omitempty does not omit structs) with the fields that
    # lack omitempty, the schema's required ones: every object upstream returns has both.
    schema = kinds.storage_resource(res).schema
    for part in ("spec", "status"):
        node = schema.field(part)
        if node is not None and obj.get(part) is None:
            obj[part] = go_zero(node)
    if tracks_generation(res):
        obj["metadata"]["generation"] = 1
    if res.storage_group == "apps" and res.kind == "DaemonSet":
        obj["metadata"].setdefault("annotations", {})[TEMPLATE_GENERATION] = "1"
    # Status defaults (a PV's phase, ...) come back, as upstream re-defaults what it stores. The
    # spec was defaulted before and what is changed in it here declares no defaults, except the
    # labels a Job's template gains.
    redefault_spec = res.storage_group == "batch" and res.kind == "Job"
    defaults.apply_defaults(obj, kinds.storage_resource(res).schema, skip=() if redefault_spec else ("spec",))


def prepare_for_update(res: kinds.Resource, obj: dict, old: dict) -> None:
    """A main-resource update keeps the old status and bumps generation when the spec changed."""
    if res.has_status and "status" in old:
        obj["status"] = copy.deepcopy(old["status"])
    elif res.has_status:
        obj.pop("status", None)
    generation = old.get("metadata", {}).get("generation")
    if tracks_generation(res):
        changed = obj.get("spec") != old.get("spec")
        obj["metadata"]["generation"] = (generation or 1) + (1 if changed else 0)
    elif generation is not None:
        obj["metadata"]["generation"] = generation
    if res.storage_group == "apps" and res.kind == "DaemonSet":
        _keep_template_generation(obj, old)


def _keep_template_generation(obj: dict, old: dict) -> None:
    """A DaemonSet's template generation (upstream's internal spec.templateGeneration, shown in
    apps/v1 as an annotation) counts changes of its pod template; clients cannot set it."""
    old_value = (old["metadata"].get("annotations") or {}).get(TEMPLATE_GENERATION, "1")
    try:
        value = int(old_value)
    except ValueError:
        value = 1
    if (obj.get("spec") or {}).get("template") != (old.get("spec") or {}).get("template"):
        value += 1
    obj["metadata"].setdefault("annotations", {})[TEMPLATE_GENERATION] = str(value)


def prepare_for_status_update(res: kinds.Resource, obj: dict, old: dict) -> dict:
    """A status update changes only status (and, as upstream allows, nothing of metadata)."""
    merged = clone(old)
    merged["status"] = obj.get("status")
    if merged["status"] is None:
        merged.pop("status")
    meta_new = obj.get("metadata", {})
    # Upstream lets the status subresource carry resourceVersion (for the precondition) only.
    if "resourceVersion" in meta_new:
        merged["metadata"]["resourceVersion"] = meta_new["resourceVersion"]
    return merged


def deletes_gracefully(res: kinds.Resource, obj: dict) -> bool:
    """Pods bound to a node wait for the node agent to stop their containers."""
    return res.kind == "Pod" and res.group == "" and bool(obj.get("spec", {}).get("nodeName"))


def pod_grace_period(obj: dict, requested: int | None) -> int:
    if requested is not None:
        return requested
    spec_grace = obj.get("spec", {}).get("terminationGracePeriodSeconds")
    return DEFAULT_POD_GRACE_SECONDS if spec_grace is None else int(spec_grace)


def strip_server_fields(meta: dict) -> None:
    """Fields the server owns; a client's values are ignored on create."""
    for f in ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "selfLink",
              "resourceVersion", "generation"):
        meta.pop(f, None)


def status_details(res: kinds.Resource, name: str, uid: str | None = None) -> dict[str, Any]:
    d: dict[str, Any] = {"name": name}
    if res.group:
        d["group"] = res.group
    d["kind"] = res.plural
    if uid:
        d["uid"] = uid
    return d
