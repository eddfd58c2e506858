"""Which StorageClass a claim or volume belongs to, and which class is the default: shared by the
DefaultStorageClass admission step and the PersistentVolume binder."""
from __future__ import annotations

BETA_CLASS_ANNOTATION = "volume.beta.kubernetes.io/storage-class"
DEFAULT_CLASS_ANNOTATIONS = ("storageclass.kubernetes.io/is-default-class",
                             "storageclass.beta.kubernetes.io/is-default-class")


def claim_class(claim: dict) -> str:
    """The class of a PVC: the legacy annotation wins over spec.storageClassName; "" is no class."""
    ann = claim.get("metadata", {}).get("annotations") or {}
    if BETA_CLASS_ANNOTATION in ann:
        return ann[BETA_CLASS_ANNOTATION]
    return (claim.get("spec") or {}).get("storageClassName") or ""


def volume_class(volume: dict) -> str:
    ann = volume.get("metadata", {}).get("annotations") or {}
    if BETA_CLASS_ANNOTATION in ann:
        return ann[BETA_CLASS_ANNOTATION]
    return (volume.get("spec") or {}).get("storageClassName") or ""


def class_unset(claim: dict) -> bool:
    """No class asked for at all (neither field nor annotation): the default class applies."""
    ann = claim.get("metadata", {}).get("annotations") or {}
    return (claim.get("spec") or {}).get("storageClassName") is None and BETA_CLASS_ANNOTATION not in ann


def is_default(storage_class: dict) -> bool:
    ann = storage_class.get("metadata", {}).get("annotations") or {}
    return any(ann.get(a) == "true" for a in DEFAULT_CLASS_ANNOTATIONS)


def default_class(classes: list[dict]) -> str | None:
    """The default class's name; with several defaults the newest wins, as upstream since 1.28."""
    defaults = [c for c in classes if is_default(c)]
    if not defaults:
        return None
    newest = max(defaults, key=lambda c: (c["metadata"].get("creationTimestamp", ""), c["metadata"]["name"]))
    return newest["metadata"]["name"]
