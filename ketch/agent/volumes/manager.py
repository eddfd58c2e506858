"""The kubelet's volume manager for one node: set up each pod's volumes before its containers
start, keep projected content fresh, tear everything down when the pod is gone, and turn
volumeMounts into the runtime's bind mounts.

Layout is the kubelet's: `<root>/pods/<uid>/volumes/kubernetes.io~<plugin>/<name>`. hostPath
volumes, and hostPath or local PersistentVolumes, are used where they are. Teardown needs only
the directory tree (and /proc/self/mountinfo), so it works for pods a restarted agent no longer
knows about.
"""
from __future__ import annotations

import asyncio
import logging
import os
import shutil
import stat
from pathlib import Path

from ...api.quantity import parse_quantity
from ..env import ConfigError, expand_subpath_expr
from ..runtime.api import Mount
from .atomic_writer import AtomicWriter, FileProjection, PayloadError
from .hostpath import HostPathError, check_type
from .mounts import mount_tmpfs, mount_type, mounts_under, unmount
from .projections import (DEFAULT_MODE, ProjectionError, TokenCache, config_map_volume_payload,
                          downward_api_payload, projected_payload, secret_volume_payload)

log = logging.getLogger("ketch.agent.volumes")

EMPTY_DIR = "kubernetes.io~empty-dir"
CONFIG_MAP = "kubernetes.io~configmap"
SECRET = "kubernetes.io~secret"
DOWNWARD_API = "kubernetes.io~downward-api"
PROJECTED = "kubernetes.io~projected"

# Kinds whose content the kubelet projects, always mounted read-only (GetAttributes().ReadOnly).
PROJECTED_KINDS = ("configMap", "secret", "downwardAPI", "projected")
FAILED_MOUNT = "FailedMount"

RW_MASK, RO_MASK, EXEC_MASK = 0o660, 0o440, 0o110


class VolumeError(Exception):
    """A volume that cannot be set up; the pod stays ContainerCreating. str() is the event text."""

    def __init__(self, volume: str, message: str, reason: str = FAILED_MOUNT):
        super().__init__(message)
        self.volume, self.message, self.reason = volume, message, reason


def _setup_failed(name: str, err: object) -> VolumeError:
    return VolumeError(name, f'MountVolume.SetUp failed for volume "{name}" : {err}')


# --- pod facts --------------------------------------------------------------------------------


def _security(pod: dict) -> dict:
    return (pod.get("spec") or {}).get("securityContext") or {}


def fs_user_of(pod: dict) -> int | None:
    """FsUserFrom: the runAsUser every (init) container shares, if they all have one."""
    spec = pod.get("spec") or {}
    pod_user = _security(pod).get("runAsUser")
    user = None
    for c in (spec.get("initContainers") or []) + (spec.get("containers") or []):
        uid = (c.get("securityContext") or {}).get("runAsUser", pod_user)
        if uid is None or (user is not None and uid != user):
            return None
        user = uid
    return user


def pod_memory_limit(pod: dict) -> int | None:
    """ResourceConfigForPod's memory limit: set only when every container has one."""
    spec = pod.get("spec") or {}
    pod_level = ((spec.get("resources") or {}).get("limits") or {}).get("memory")
    if pod_level is not None:
        return parse_quantity(pod_level).int_value_ceil()

    def limit(c: dict) -> int | None:
        raw = ((c.get("resources") or {}).get("limits") or {}).get("memory")
        return parse_quantity(raw).int_value_ceil() if raw is not None else None

    limits = [limit(c) for c in spec.get("containers") or []]
    inits = [limit(c) for c in spec.get("initContainers") or []]
    if not limits or None in limits or None in inits:
        return None
    total = max([sum(limits)] + inits)
    overhead = (spec.get("overhead") or {}).get("memory")
    return total + (parse_quantity(overhead).int_value_ceil() if overhead else 0)


def memory_volume_size(pod: dict, size_limit: str | None, allocatable_memory: str | None) -> int | None:
    """calculateEmptyDirMemorySize: node allocatable, capped by the pod's limit, then by sizeLimit."""
    size = parse_quantity(allocatable_memory).int_value_ceil() if allocatable_memory else None
    pod_limit = pod_memory_limit(pod)
    if pod_limit and (size is None or pod_limit <= size):
        size = pod_limit
    if size_limit is not None:
        vol = parse_quantity(size_limit).int_value_ceil()
        if vol > 0 and (size is None or vol <= size):
            size = vol
    return size


# --- ownership --------------------------------------------------------------------------------


def _requires_permission_change(root: Path, fs_group: int, readonly: bool) -> bool:
    st = os.stat(root)
    if st.st_gid != fs_group or not stat.S_ISDIR(st.st_mode):
        return True
    perms = (RO_MASK if readonly else RW_MASK) | EXEC_MASK
    return (st.st_mode & perms) != perms or not st.st_mode & stat.S_ISGID


def set_volume_ownership(root: Path, fs_group: int | None, readonly: bool, policy: str | None = None) -> None:
    """SetVolumeOwnership: group fsGroup, group rw (r when read-only), setgid directories; symlinks only chowned."""
    if fs_group is None:
        return
    if policy == "OnRootMismatch" and not _requires_permission_change(root, fs_group, readonly):
        return
    mask = RO_MASK if readonly else RW_MASK
    for dirpath, dirnames, filenames in os.walk(root):
        entries = [dirpath] if dirpath == str(root) else []
        entries += [os.path.join(dirpath, n) for n in dirnames + filenames]
        for path in entries:
            st = os.lstat(path)
            os.lchown(path, -1, fs_group)
            if stat.S_ISLNK(st.st_mode):
                continue
            extra = mask | (stat.S_ISGID | EXEC_MASK if stat.S_ISDIR(st.st_mode) else 0)
            os.chmod(path, stat.S_IMODE(st.st_mode) | extra)


# --- the manager --------------------------------------------------------------------------------


class VolumeManager:
    def __init__(self, root: Path, source):
        self.root = Path(root)
        self.pods_dir = self.root / "pods"
        self.source = source
        self.tokens = TokenCache()
        # One pod's setup, refresh and teardown never interleave (two AtomicWriters on one
        # directory would race on ..data); different pods proceed concurrently.
        self._locks: dict[str, asyncio.Lock] = {}

    def _lock(self, pod_uid: str) -> asyncio.Lock:
        return self._locks.setdefault(pod_uid, asyncio.Lock())

    def pod_dir(self, pod_uid: str) -> Path:
        return self.pods_dir / pod_uid

    def volume_dir(self, pod_uid: str, plugin: str, name: str) -> Path:
        return self.pods_dir / pod_uid / "volumes" / plugin / name

    def pod_uids_on_disk(self) -> list[str]:
        """Pods that have a directory here (for cleaning up orphans after a restart)."""
        try:
            return sorted(p.name for p in self.pods_dir.iterdir() if p.is_dir())
        except FileNotFoundError:
            return []

    async def setup(self, pod: dict) -> dict[str, Path]:
        """Every volume of the pod, ready to mount: name → host path. Idempotent."""
        paths = {}
        async with self._lock(pod["metadata"]["uid"]):
            for vol in (pod.get("spec") or {}).get("volumes") or []:
                paths[vol["name"]] = await self._setup_volume(pod, vol)
        return paths

    async def refresh(self, pod: dict) -> set[str]:
        """Re-project configMap, secret, downwardAPI and projected volumes; names whose content changed."""
        changed, errors = set(), []
        async with self._lock(pod["metadata"]["uid"]):
            for vol in (pod.get("spec") or {}).get("volumes") or []:
                if not any(k in vol for k in PROJECTED_KINDS):
                    continue
                try:
                    if await self._project(pod, vol):
                        changed.add(vol["name"])
                except VolumeError as err:
                    errors.append(err)
        if errors:
            raise errors[0]
        return changed

    async def teardown(self, pod_uid: str) -> None:
        """Unmount whatever is mounted under the pod's directory, then remove it. Idempotent."""
        pod_dir = self.pod_dir(pod_uid)
        async with self._lock(pod_uid):
            self.tokens.forget(pod_uid)
            if pod_dir.exists():
                for point, _ in mounts_under(pod_dir):
                    unmount(point)
                left = mounts_under(pod_dir)
                if left:  # never rmtree through a mount: it could reach a host directory
                    raise VolumeError("", f"UnmountVolume.TearDown failed for pod {pod_uid}: "
                                          f"{left[0][0]} is still mounted")
                await asyncio.to_thread(shutil.rmtree, pod_dir)
        self._locks.pop(pod_uid, None)

    # --- per plugin ---

    async def _setup_volume(self, pod: dict, vol: dict) -> Path:
        name, uid = vol["name"], pod["metadata"]["uid"]
        if "emptyDir" in vol:
            spec = vol["emptyDir"] or {}
            path = self.volume_dir(uid, EMPTY_DIR, name)
            try:
                if spec.get("medium") == "Memory":
                    await self._tmpfs_dir(pod, path, spec.get("sizeLimit"))
                elif spec.get("medium") in (None, ""):
                    self._disk_dir(path)
                else:
                    raise VolumeError(name, f'MountVolume.SetUp failed for volume "{name}" : '
                                            f"unknown storage medium {spec['medium']!r}")
                self._ownership(pod, path, readonly=False)
            except OSError as err:
                raise _setup_failed(name, err) from None
            return path
        if "hostPath" in vol:
            spec = vol["hostPath"]
            try:
                check_type(spec["path"], spec.get("type"))
            except (HostPathError, OSError) as err:
                raise _setup_failed(name, err) from None
            return Path(spec["path"])
        if any(k in vol for k in PROJECTED_KINDS):
            await self._project(pod, vol)
            return self._projected_path(uid, vol)
        if "persistentVolumeClaim" in vol:
            return await self._claim_path(pod, name, vol["persistentVolumeClaim"].get("claimName") or "")
        if "ephemeral" in vol:  # a generic ephemeral volume: the claim the pod's controller made for it
            return await self._claim_path(pod, name, f"{pod['metadata']['name']}-{name}", ephemeral=True)
        kinds = [k for k in vol if k != "name"]
        raise _setup_failed(name, f"volume type {kinds[0] if kinds else '?'} is not supported by ketch")

    @staticmethod
    def _projected_plugin(vol: dict) -> str:
        for key, plugin in (("configMap", CONFIG_MAP), ("secret", SECRET), ("downwardAPI", DOWNWARD_API),
                            ("projected", PROJECTED)):
            if key in vol:
                return plugin
        raise KeyError(vol["name"])

    def _projected_path(self, uid: str, vol: dict) -> Path:
        return self.volume_dir(uid, self._projected_plugin(vol), vol["name"])

    async def _project(self, pod: dict, vol: dict) -> bool:
        """Write the volume's payload atomically; True when its content changed."""
        name, uid = vol["name"], pod["metadata"]["uid"]
        namespace = pod["metadata"].get("namespace") or "default"
        path = self._projected_path(uid, vol)
        fs_group = _security(pod).get("fsGroup")
        try:
            payload = await self._payload(pod, vol, namespace, fs_group)
            # Secrets and projected volumes (tokens) live in memory, as the kubelet's wrapped tmpfs.
            if "secret" in vol or "projected" in vol:
                await self._tmpfs_dir(pod, path, None)
            else:
                self._disk_dir(path)
            writer = AtomicWriter(path)
            return writer.write(payload, lambda _ts: self._ownership(pod, path, readonly=True))
        except (ProjectionError, PayloadError, OSError) as err:
            raise _setup_failed(name, err) from None

    async def _payload(self, pod: dict, vol: dict, namespace: str, fs_group: int | None) -> dict[str, FileProjection]:
        if "configMap" in vol:
            return await config_map_volume_payload(vol["configMap"], namespace, self.source)
        if "secret" in vol:
            return await secret_volume_payload(vol["secret"], namespace, self.source)
        if "downwardAPI" in vol:
            spec = vol["downwardAPI"] or {}
            mode = spec.get("defaultMode")
            return await downward_api_payload(spec.get("items") or [], pod, DEFAULT_MODE if mode is None else mode,
                                              self.source)
        return await projected_payload(vol["projected"] or {}, pod, self.source, self.tokens, fs_user_of(pod), fs_group)

    async def _claim_path(self, pod: dict, name: str, claim_name: str, ephemeral: bool = False) -> Path:
        namespace = pod["metadata"].get("namespace") or "default"
        prefix = f"error processing PVC {namespace}/{claim_name}"
        claim = await self.source.persistent_volume_claim(namespace, claim_name)
        if claim is None:
            raise VolumeError(name, f'{prefix}: failed to fetch PVC from API server: '
                                    f'persistentvolumeclaims "{claim_name}" not found')
        if (claim.get("metadata") or {}).get("deletionTimestamp"):
            raise VolumeError(name, f"{prefix}: PVC is being deleted")
        if (claim.get("status") or {}).get("phase") != "Bound":
            raise VolumeError(name, f"{prefix}: PVC is not bound")
        if ephemeral and not any(ref.get("controller") and ref.get("uid") == pod["metadata"]["uid"]
                                 for ref in claim["metadata"].get("ownerReferences") or []):
            raise VolumeError(name, f"PVC {namespace}/{claim_name} was not created for pod "
                                    f"{namespace}/{pod['metadata']['name']} (pod is not owner)")
        pv_name = (claim.get("spec") or {}).get("volumeName") or ""
        pv = await self.source.persistent_volume(pv_name) if pv_name else None
        if pv is None:
            raise VolumeError(name, f'{prefix}: failed to fetch PV {pv_name} from API server: '
                                    f'persistentvolumes "{pv_name}" not found')
        claim_ref = (pv.get("spec") or {}).get("claimRef")
        if claim_ref is None:
            raise VolumeError(name, f"{prefix}: found PV object {pv_name} but it has a nil pv.Spec.ClaimRef "
                                    "indicating it is not yet bound to the claim")
        claim_uid = claim["metadata"].get("uid", "")
        if claim_ref.get("uid", "") != claim_uid:
            raise VolumeError(name, f"{prefix}: found PV object {pv_name} but its pv.Spec.ClaimRef.UID "
                                    f"({claim_ref.get('uid', '')}) does not point to claim.UID ({claim_uid})")
        spec = pv["spec"]
        try:
            if "hostPath" in spec:
                check_type(spec["hostPath"]["path"], spec["hostPath"].get("type"))
                return Path(spec["hostPath"]["path"])
            if "local" in spec:
                path = spec["local"]["path"]
                if not os.path.exists(path):
                    raise HostPathError(f"path {path} does not exist")
                self._ownership(pod, Path(path), readonly=False)
                return Path(path)
        except (HostPathError, OSError) as err:
            raise _setup_failed(pv_name, err) from None
        kinds = [k for k in spec if k not in ("capacity", "accessModes", "claimRef", "persistentVolumeReclaimPolicy",
                                              "storageClassName", "volumeMode", "nodeAffinity", "mountOptions")]
        raise _setup_failed(pv_name, f"volume type {kinds[0] if kinds else '?'} is not supported by ketch")

    # --- directories ---

    @staticmethod
    def _disk_dir(path: Path) -> None:
        """The emptyDir wrapper: a 0777 directory whatever the umask."""
        if not path.is_dir():
            path.mkdir(parents=True, exist_ok=True)
            os.chmod(path, 0o777)

    async def _tmpfs_dir(self, pod: dict, path: Path, size_limit: str | None) -> None:
        self._disk_dir(path)
        if mount_type(path) == "tmpfs":
            return
        allocatable = (await self.source.node_allocatable()).get("memory")
        mount_tmpfs(path, memory_volume_size(pod, size_limit, allocatable))

    def _ownership(self, pod: dict, path: Path, readonly: bool) -> None:
        sec = _security(pod)
        set_volume_ownership(path, sec.get("fsGroup"), readonly, sec.get("fsGroupChangePolicy"))

    # --- container mounts ---

    def mounts(self, pod: dict, container: dict, paths: dict[str, Path],
               envs: list[tuple[str, str]] | None = None) -> list[Mount]:
        """makeMounts: the container's volumeMounts as bind mounts; raises ConfigError
        (CreateContainerConfigError) as the kubelet does."""
        volumes = {v["name"]: v for v in (pod.get("spec") or {}).get("volumes") or []}
        privileged = bool((container.get("securityContext") or {}).get("privileged"))
        result = []
        for vm in container.get("volumeMounts") or []:
            name = vm["name"]
            if name not in paths:
                raise ConfigError(f'cannot find volume "{name}" to mount into container "{container["name"]}"')
            host = Path(paths[name])
            sub = vm.get("subPath") or ""
            if vm.get("subPathExpr"):
                sub = expand_subpath_expr(vm["subPathExpr"], envs or [])
            if sub:
                host = self._subpath(host, sub, name, container["name"])
            vol = volumes.get(name) or {}
            must_ro = any(k in vol for k in PROJECTED_KINDS) or bool((vol.get("persistentVolumeClaim") or {}).get("readOnly"))
            propagation = vm.get("mountPropagation") or "None"
            if propagation == "Bidirectional" and not privileged:
                raise ConfigError("Bidirectional mount propagation is available only to privileged containers")
            result.append(Mount(container_path=vm["mountPath"], host_path=str(host),
                                readonly=bool(vm.get("readOnly")) or must_ro,
                                propagation={"HostToContainer": "rslave", "Bidirectional": "rshared"}.get(
                                    propagation, "private")))
        return result

    @staticmethod
    def _subpath(volume: Path, sub: str, mount_name: str, container_name: str) -> Path:
        """The subPath checks of makeMounts: relative, no '..', created with the volume's mode,
        and — after symlinks are followed — still inside the volume."""
        if sub.startswith("/"):
            raise ConfigError(f"error SubPath `{sub}` must not be an absolute path")
        if ".." in sub.split("/"):
            raise ConfigError(f"unable to provision SubPath `{sub}`: must not contain '..'")
        base = os.path.realpath(volume)
        target = volume / sub

        def inside(p: str) -> bool:
            return p == base or p.startswith(base.rstrip("/") + "/")

        if not os.path.lexists(target):
            # SafeMakeDir: one component at a time, each with the volume's mode, none leading out.
            perm = stat.S_IMODE(os.stat(volume).st_mode)
            current = volume
            for part in sub.split("/"):
                if part in ("", "."):
                    continue
                current = current / part
                if not os.path.lexists(current):
                    os.mkdir(current)
                    os.chmod(current, perm)
                if not inside(os.path.realpath(current)):
                    raise ConfigError(f'failed to create subPath directory for volumeMount "{mount_name}" '
                                      f'of container "{container_name}"')
        real = os.path.realpath(target)
        if not inside(real):
            raise ConfigError(f'failed to prepare subPath for volumeMount "{mount_name}" of container '
                              f'"{container_name}"')
        return Path(real)
