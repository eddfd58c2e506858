"""Admission: the mutating steps upstream's default plugins apply to new Pods, and the per-namespace
objects every namespace is born with.

- Priority: a Pod without a priorityClassName gets priority 0; the two built-in classes resolve to
  their values; an unknown class is refused.
- DefaultTolerationSeconds: tolerate not-ready and unreachable nodes for 300 s.
- ServiceAccount: `default` unless named; the account must exist; its token, the cluster CA and
  the namespace are projected into every container at the well-known path, unless automounting is
  turned off on the Pod or the account.

A new namespace gets its `default` ServiceAccount and the `kube-root-ca.crt` ConfigMap at once
(upstream's serviceaccount and root-ca-publisher controllers do this moments later; doing it here
means a Pod created right after its namespace never races them).
"""
from __future__ import annotations

import secrets
from typing import TYPE_CHECKING

from ..api import errors, kinds, storageclass

if TYPE_CHECKING:
    from .registry import Registry

BUILTIN_PRIORITY_CLASSES = {"system-node-critical": 2000001000, "system-cluster-critical": 2000000000}
DEFAULT_TOLERATION_SECONDS = 300
TOKEN_MOUNT_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"
TOKEN_EXPIRATION_SECONDS = 3607
ROOT_CA_CONFIGMAP = "kube-root-ca.crt"
_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def _forbidden(pod: dict, why: str) -> errors.ApiError:
    name = pod["metadata"].get("name", "")
    return errors.ApiError(403, "Forbidden", f'pods "{name}" is forbidden: {why}',
                           {"name": name, "kind": "pods"})


def _priority(pod: dict) -> None:
    spec = pod["spec"]
    cls = spec.get("priorityClassName")
    if cls:
        if cls not in BUILTIN_PRIORITY_CLASSES:
            raise _forbidden(pod, f"no PriorityClass with name {cls} was found")
        spec["priority"] = BUILTIN_PRIORITY_CLASSES[cls]
    else:
        spec.setdefault("priority", 0)
    spec.setdefault("preemptionPolicy", "PreemptLowerPriority")


def _default_tolerations(pod: dict) -> None:
    tolerations = pod["spec"].setdefault("tolerations", [])
    for key in ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"):
        if not any(t.get("key") == key and t.get("effect") in ("NoExecute", None, "") for t in tolerations):
            tolerations.append({"key": key, "operator": "Exists", "effect": "NoExecute",
                                "tolerationSeconds": DEFAULT_TOLERATION_SECONDS})


def _token_volume(name: str) -> dict:
    return {"name": name, "projected": {"defaultMode": 420, "sources": [
        {"serviceAccountToken": {"expirationSeconds": TOKEN_EXPIRATION_SECONDS, "path": "token"}},
        {"configMap": {"name": ROOT_CA_CONFIGMAP, "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
        {"downwardAPI": {"items": [{"path": "namespace",
                                    "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}]}}


async def _service_account(registry: "Registry", pod: dict) -> None:
    spec = pod["spec"]
    ns = pod["metadata"].get("namespace")
    account = spec.get("serviceAccountName") or spec.get("serviceAccount") or "default"
    spec["serviceAccountName"] = account
    spec["serviceAccount"] = account
    sa = await registry.get_or_none(kinds.lookup("", "v1", "serviceaccounts"), ns, account)
    if sa is None:
        raise _forbidden(pod, f'error looking up service account {ns}/{account}: serviceaccount "{account}" '
                              f"not found")
    automount = spec.get("automountServiceAccountToken")
    if automount is None:
        automount = sa.get("automountServiceAccountToken", True)
    if not automount:
        return
    containers = [*spec.get("initContainers", []), *spec.get("containers", [])]
    if any(m.get("mountPath") == TOKEN_MOUNT_PATH for c in containers for m in c.get("volumeMounts") or []):
        return
    volume = "kube-api-access-" + "".join(secrets.choice(_ALPHABET) for _ in range(5))
    spec.setdefault("volumes", []).append(_token_volume(volume))
    for c in containers:
        c.setdefault("volumeMounts", []).append({"name": volume, "readOnly": True, "mountPath": TOKEN_MOUNT_PATH})


async def _default_storage_class(registry: "Registry", pvc: dict) -> None:
    """DefaultStorageClass: a claim that names no class (neither spec.storageClassName nor the beta
    annotation) gets the default StorageClass, if there is one."""
    if not storageclass.class_unset(pvc):
        return
    from .registry import ListOptions
    classes, _ = await registry.list(kinds.lookup("storage.k8s.io", "v1", "storageclasses"), None, ListOptions())
    default = storageclass.default_class(classes)
    if default is not None:
        pvc.setdefault("spec", {})["storageClassName"] = default


async def admit_create(registry: "Registry", res: kinds.Resource, obj: dict) -> None:
    """Mutating admission for a new object (storage version)."""
    if res.storage_group == "" and res.kind == "Pod":
        _priority(obj)
        _default_tolerations(obj)
        await _service_account(registry, obj)
    elif res.storage_group == "" and res.kind == "PersistentVolumeClaim":
        await _default_storage_class(registry, obj)


async def namespace_created(registry: "Registry", namespace: str) -> None:
    """The objects a namespace starts with: its default ServiceAccount and the cluster CA bundle."""
    sa_res = kinds.lookup("", "v1", "serviceaccounts")
    if await registry.get_or_none(sa_res, namespace, "default") is None:
        try:
            await registry.create(sa_res, {"apiVersion": "v1", "kind": "ServiceAccount",
                                           "metadata": {"name": "default", "namespace": namespace}})
        except errors.ApiError as e:
            if e.code != 409:
                raise
    if registry.ca_pem:
        cm_res = kinds.lookup("", "v1", "configmaps")
        if await registry.get_or_none(cm_res, namespace, ROOT_CA_CONFIGMAP) is None:
            try:
                await registry.create(cm_res, {"apiVersion": "v1", "kind": "ConfigMap",
                                               "metadata": {"name": ROOT_CA_CONFIGMAP, "namespace": namespace,
                                                            "annotations": {"kubernetes.io/description":
                                                                            ROOT_CA_DESCRIPTION}},
                                               "data": {"ca.crt": registry.ca_pem}})
            except errors.ApiError as e:
                if e.code != 409:
                    raise


ROOT_CA_DESCRIPTION = ("Contains a CA bundle that can be used to verify the kube-apiserver when using "
                       "internal endpoints such as the internal service IP or kubernetes.default.svc. No other "
                       "usage is guaranteed across distributions of Kubernetes clusters.")
