"""The built-in local provisioner: a directory per volume, as k3s's local-path provisioner.

It serves every StorageClass whose provisioner it owns: its own `ketch.io/local-path` (the default
`local-path` class), k3s's `rancher.io/local-path`, and the in-tree cloud disk provisioners the book
names (`kubernetes.io/gce-pd` for its `solidstate` class, `kubernetes.io/aws-ebs`, ...), for which a
local directory stands in on a cluster without a cloud. The volume is a hostPath PV
(`DirectoryOrCreate`) at `<data dir>/storage/pvc-<uid>_<namespace>_<claim>`; the data dir is
the controller manager's --data-dir (`ketch server`'s own). When the claim was bound to a node (WaitForFirstConsumer),
the PV's node affinity pins it there. Deleting the PV (reclaim policy Delete) removes the directory.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from ..api.storageclass import claim_class

NAME = "ketch.io/local-path"
OWNED = frozenset({
    NAME, "rancher.io/local-path",
    # In-tree provisioners of cloud and host disks: a local directory stands in for them.
    "kubernetes.io/gce-pd", "kubernetes.io/aws-ebs", "kubernetes.io/azure-disk", "kubernetes.io/azure-file",
    "kubernetes.io/cinder", "kubernetes.io/vsphere-volume", "kubernetes.io/portworx-volume",
    "kubernetes.io/host-path",
})
SELECTED_NODE_ANNOTATION = "volume.kubernetes.io/selected-node"


class ProvisioningError(Exception):
    pass


def storage_root(data_dir: Path) -> Path:
    return data_dir / "storage"


def owns(provisioner: str) -> bool:
    return provisioner in OWNED


def provision(claim: dict, storage_class: dict, pv_name: str, data_dir: Path) -> dict:
    """Make the directory and return the PersistentVolume for `claim` (pre-bound to it)."""
    meta, spec = claim["metadata"], claim.get("spec") or {}
    if spec.get("volumeMode") == "Block":
        raise ProvisioningError("the local-path provisioner supports only volumeMode Filesystem")
    path = storage_root(data_dir) / f"{pv_name}_{meta['namespace']}_{meta['name']}"
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o777)  # any container user may write, as k3s's provisioner allows
    pv_spec: dict = {
        "capacity": {"storage": spec["resources"]["requests"]["storage"]},
        "accessModes": list(spec.get("accessModes") or ["ReadWriteOnce"]),
        "persistentVolumeReclaimPolicy": storage_class.get("reclaimPolicy") or "Delete",
        "storageClassName": claim_class(claim),
        "volumeMode": spec.get("volumeMode") or "Filesystem",
        "hostPath": {"path": str(path), "type": "DirectoryOrCreate"},
        "claimRef": {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "namespace": meta["namespace"],
                     "name": meta["name"], "uid": meta["uid"], "resourceVersion": meta.get("resourceVersion")},
    }
    if storage_class.get("mountOptions"):
        pv_spec["mountOptions"] = list(storage_class["mountOptions"])
    node = (meta.get("annotations") or {}).get(SELECTED_NODE_ANNOTATION)
    if node:
        pv_spec["nodeAffinity"] = {"required": {"nodeSelectorTerms": [{"matchExpressions": [
            {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}]}}
    return {"apiVersion": "v1", "kind": "PersistentVolume",
            "metadata": {"name": pv_name, "annotations": {
                "pv.kubernetes.io/provisioned-by": storage_class["provisioner"],
                "pv.kubernetes.io/bound-by-controller": "yes"}},
            "spec": pv_spec}


def delete(volume: dict, data_dir: Path) -> None:
    """Remove a provisioned volume's directory (only ever one under the storage root)."""
    path = ((volume.get("spec") or {}).get("hostPath") or {}).get("path")
    if not path:
        return
    root, target = storage_root(data_dir).resolve(), Path(path).resolve()
    if target.parent != root:
        raise ProvisioningError(f"{path} is not a directory this provisioner made")
    shutil.rmtree(target, ignore_errors=True)
