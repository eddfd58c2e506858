"""Admission: the ordered chain of plugins every create and update passes, as kube-apiserver's.

Each plugin is named after its upstream counterpart and may have a mutating step (`admit`, run in
chain order before validation) and a validating step (`validate`, run in chain order after the
object's own validation, just before it is stored). Security admission plugs in the same way: one
`Plugin` in `CHAIN`. Steps see the object in its storage version and ignore what is not theirs.

- NamespaceLifecycle: no new objects in a missing or terminating namespace.
- LimitRanger: LimitRange defaults, min/max and ratio checks (limitranger.py).
- ServiceAccount: `default` unless named; the account must exist; its token, the cluster CA and
  the namespace are projected into every container at the well-known path, unless automounting is
  turned off on the Pod or the account.
- Priority: a Pod gets the priority and preemption policy of its PriorityClass, or of the global
  default class when it names none (priority 0 without one); an unknown class, or a priority or
  policy in the pod that differs from its class's, is refused. Only one class may be the default.
- DefaultTolerationSeconds: tolerate not-ready and unreachable nodes for 300 s.
- DefaultStorageClass: a PersistentVolumeClaim that asks for no class gets the default one.
- StorageObjectInUseProtection: claims and volumes get the kubernetes.io/pvc-protection and
  kubernetes.io/pv-protection finalizers (ketch/controllers/volumeprotection.py removes them).
- ResourceQuota: refuses what would exceed a quota and charges the quota's usage (quota.py).

A new namespace gets its `default` ServiceAccount and the `kube-root-ca.crt` ConfigMap at once
(upstream's serviceaccount and root-ca-publisher controllers do this moments later; doing it here
means a Pod created right after its namespace never races them).
"""
from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Awaitable, Callable

from ..api import errors, kinds, storageclass
from . import limitranger, quota
from .strategy import generate_name
from .stored import decode

if TYPE_CHECKING:
    from .registry import Registry

DEFAULT_TOLERATION_SECONDS = 300
TOKEN_MOUNT_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"
TOKEN_EXPIRATION_SECONDS = 3607
ROOT_CA_CONFIGMAP = "kube-root-ca.crt"


CREATE, UPDATE = "CREATE", "UPDATE"


@dataclass
class Attributes:
    """What a plugin is asked about (upstream's admission.Attributes). `obj` is the object being
    written, in its storage version; mutating steps change it in place."""
    operation: str  # CREATE or UPDATE
    resource: kinds.Resource
    obj: dict
    old: dict | None = None
    subresource: str = ""
    dry_run: bool = False
    memo: dict = field(default_factory=dict)  # lookups plugins share within this one request

    @property
    def namespace(self) -> str:
        return self.obj.get("metadata", {}).get("namespace") or ""

    @property
    def name(self) -> str:
        meta = self.obj.get("metadata", {})
        return meta.get("name") or meta.get("generateName") or ""

    def is_(self, group: str, kind: str, operation: str | None = None) -> bool:
        """This plugin's business: the main resource of `group`/`kind`, for `operation` if given."""
        return self.resource.storage_group == group and self.resource.kind == kind and not self.subresource \
            and (operation is None or self.operation == operation)

    def forbidden(self, why: str) -> errors.ApiError:
        """`<resource> "<name>" is forbidden: <why>`, as admission.NewForbidden words it."""
        res = kinds.storage_resource(self.resource)
        qualified = f"{res.plural}.{res.group}" if res.group else res.plural
        details = {"name": self.name, **({"group": res.group} if res.group else {}), "kind": res.plural}
        return errors.ApiError(403, "Forbidden", f'{qualified} "{self.name}" is forbidden: {why}', details)


Step = Callable[["Registry", Attributes], Awaitable[None]]


@dataclass(frozen=True)
class Plugin:
    name: str
    admit: Step | None = None  # mutating
    validate: Step | None = None  # validating


async def admit(registry: "Registry", a: Attributes) -> None:
    """The mutating phase: every plugin's `admit`, in chain order. A new object's spec is not
    defaulted again afterwards (strategy.prepare_for_create): what a plugin adds, it writes whole."""
    for plugin in CHAIN:
        if plugin.admit is not None:
            await plugin.admit(registry, a)


async def validate(registry: "Registry", a: Attributes) -> None:
    """The validating phase: every plugin's `validate`, in chain order (ResourceQuota last)."""
    for plugin in CHAIN:
        if plugin.validate is not None:
            await plugin.validate(registry, a)


def _forbidden(pod: dict, why: str) -> errors.ApiError:
    return Attributes(CREATE, kinds.lookup("", "v1", "pods"), pod).forbidden(why)


async def _priority_classes(registry: "Registry") -> list[dict]:
    """Every PriorityClass, decoded once per stored revision (pods ask on every create)."""
    res = kinds.lookup("scheduling.k8s.io", "v1", "priorityclasses")
    seen = _decoded_classes.setdefault(registry.store, {})
    classes = []
    for kv in (await registry.store.range(res.prefix())).kvs:
        obj = seen.get((kv.key, kv.mod_revision))
        if obj is None:
            if len(seen) > 1000:
                seen.clear()
            obj = seen[(kv.key, kv.mod_revision)] = decode(kv)
        classes.append(obj)
    return classes


_decoded_classes: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _default_class(classes: list[dict]) -> dict | None:
    """The global default; of several (made before the check existed), the lowest value."""
    defaults = [c for c in classes if c.get("globalDefault")]
    return min(defaults, key=lambda c: c.get("value", 0)) if defaults else None


async def _priority(registry: "Registry", a: Attributes) -> None:
    pod = a.obj
    spec = pod["spec"]
    name = spec.get("priorityClassName")
    classes = await _priority_classes(registry)
    if name:
        pc = next((c for c in classes if c["metadata"]["name"] == name), None)
        if pc is None:
            raise a.forbidden(f"no PriorityClass with name {name} was found")
    else:
        pc = _default_class(classes)
        if pc is not None:
            spec["priorityClassName"] = pc["metadata"]["name"]
    priority = pc.get("value", 0) if pc is not None else 0
    policy = (pc.get("preemptionPolicy") if pc is not None else None) or "PreemptLowerPriority"
    if spec.get("priority") is not None and spec["priority"] != priority:
        raise a.forbidden(f"the integer value of priority ({spec['priority']}) must not be provided in pod spec; "
                          f"priority admission controller computed {priority} from the given PriorityClass name")
    if spec.get("preemptionPolicy") is not None and spec["preemptionPolicy"] != policy:
        raise a.forbidden(f"the string value of PreemptionPolicy ({spec['preemptionPolicy']}) must not be provided "
                          f"in pod spec; priority admission controller computed {policy} from the given "
                          f"PriorityClass name")
    spec["priority"] = priority
    spec["preemptionPolicy"] = policy


async def _only_one_default_class(registry: "Registry", a: Attributes) -> None:
    if not a.obj.get("globalDefault"):
        return
    current = _default_class(await _priority_classes(registry))
    if current is not None and (a.operation == CREATE or current["metadata"]["name"] != a.name):
        raise a.forbidden(f"PriorityClass {current['metadata']['name']} is already marked as default. "
                          f"Only one default can exist")


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
    volume = generate_name("kube-api-access-")
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


async def _namespace_lifecycle(registry: "Registry", a: Attributes) -> None:
    if a.operation != CREATE:
        return
    try:
        await registry.check_namespace(a.resource, a.namespace)
    except errors.ApiError as e:
        e.message = e.message.replace("{name}", a.obj.get("metadata", {}).get("name", ""))
        raise


async def _service_account_plugin(registry: "Registry", a: Attributes) -> None:
    if a.is_("", "Pod", CREATE):
        await _service_account(registry, a.obj)


async def _priority_plugin(registry: "Registry", a: Attributes) -> None:
    if a.is_("", "Pod", CREATE):
        await _priority(registry, a)


async def _priority_class_plugin(registry: "Registry", a: Attributes) -> None:
    if a.is_("scheduling.k8s.io", "PriorityClass"):
        await _only_one_default_class(registry, a)


async def _default_toleration_seconds_plugin(registry: "Registry", a: Attributes) -> None:
    if a.is_("", "Pod", CREATE):
        _default_tolerations(a.obj)


async def _default_storage_class_plugin(registry: "Registry", a: Attributes) -> None:
    if a.is_("", "PersistentVolumeClaim", CREATE):
        await _default_storage_class(registry, a.obj)


async def _storage_object_in_use_protection(registry: "Registry", a: Attributes) -> None:
    """StorageObjectInUseProtection: new claims and volumes carry the finalizers the pvc-protection
    and pv-protection controllers remove once nothing uses them."""
    if a.is_("", "PersistentVolumeClaim", CREATE):
        finalizer = "kubernetes.io/pvc-protection"
    elif a.is_("", "PersistentVolume", CREATE):
        finalizer = "kubernetes.io/pv-protection"
    else:
        return
    finalizers = a.obj["metadata"].setdefault("finalizers", [])
    if finalizer not in finalizers:
        finalizers.append(finalizer)


# Upstream's recommended order (kube-apiserver --enable-admission-plugins).
CHAIN: list[Plugin] = [
    Plugin("NamespaceLifecycle", admit=_namespace_lifecycle),
    Plugin("LimitRanger", admit=limitranger.admit, validate=limitranger.validate),
    Plugin("ServiceAccount", admit=_service_account_plugin),
    Plugin("Priority", admit=_priority_plugin, validate=_priority_class_plugin),
    Plugin("DefaultTolerationSeconds", admit=_default_toleration_seconds_plugin),
    Plugin("DefaultStorageClass", admit=_default_storage_class_plugin),
    Plugin("StorageObjectInUseProtection", admit=_storage_object_in_use_protection),
    Plugin("ResourceQuota", validate=quota.validate),
]


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
