"""RuntimeService on runc and conmon: OCI bundles, CNI networking, cgroups, and state on disk.

Layout under the runtime root:
  runc/                     runc's own state (--root)
  state/sandboxes/ID.json   what a new agent needs to adopt a sandbox
  state/containers/ID.json  ... and a container
  sandboxes/ID/             netns, ipc, uts (namespaces bind-mounted on files), shm (tmpfs),
                            hosts, resolv.conf, hostname; pause/ (the pause container's bundle,
                            for pods sharing a pid namespace)
  containers/ID/            config.json, rootfs (overlay), overlay/{upper,work}, attach, ctl
  exits/ID                  conmon's record of an exit code
  persist/ID/               conmon's persist dir (its "oom" and "exit" files)
  cni/networks/             host-local's leases
  pause-rootfs/             busybox for pause processes
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import secrets
import shutil
import signal
import socket
import time
from pathlib import Path
from typing import Any

import orjson

from . import api
from .api import (ContainerConfig, ContainerStats, ContainerStatus, NotFound, PodSandboxConfig,
                  PodSandboxStats, PodSandboxStatus, RuntimeFailure, RuntimeService, RuntimeStatus,
                  VersionInfo)
from .cgroups import BESTEFFORT_SHARES, CgroupLayout, pod_cgroup, qos_parent
from .cni import CNI, CNIConfig, CNIError, port_mappings_for_cni, result_ips
from .conmon import (RUNC, MonitorError, MonitorPaths, conmon_pid, create_container, read_exit_code,
                     runc, send_ctl)
from .namespaces import (create_netns, is_pinned, mount_tmpfs, pin_pod_namespaces, remove_ns_file,
                         run_in_netns, umount)
from .oci import SandboxNamespaces, container_spec, pause_spec
from . import stats
from .sandbox_files import write_sandbox_files
from .state import RecordStore
from .streams import (ConmonAttachSession, PipeExecSession, TtyExecSession, connect_seqpacket,
                      kill_pid_file, set_winsize)

log = logging.getLogger("ketch.agent.runtime")

RUNTIME_NAME = "ketch-runc"
RUNTIME_VERSION = "0.1.0"
SHM_SIZE = 64 * 1024 * 1024
BUSYBOX = "/bin/busybox"
EXIT_POLL = 0.02


def _now() -> int:
    return time.time_ns()


def _new_id() -> str:
    return secrets.token_hex(32)


def process_start_time(pid: int) -> int | None:
    """Start time (clock ticks since boot) of a live, non-zombie process, else None."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2:].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def _alive(pid: int, start_time: int | None) -> bool:
    if pid <= 0:
        return False
    st = process_start_time(pid)
    return st is not None and (start_time is None or st == start_time)


def _monitor_alive(paths, container_id: str) -> bool:
    """Whether the container's conmon still runs: its pid, and a command line naming the
    container (after a reboot the pid may belong to anything)."""
    pid = conmon_pid(paths)
    if pid <= 0:
        return False
    try:
        return container_id.encode() in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


class RuncRuntime(RuntimeService):
    def __init__(self, root: Path | str, image_store: Any, cni: CNIConfig | None = None,
                 host_netns: str | None = None, cgroup_root: str = "kubepods"):
        self.root = Path(root)
        self.image_store = image_store
        self.host_netns = host_netns
        self.cgroup_root = cgroup_root
        self.cgroups = CgroupLayout.detect()
        self.cgroups.delegate()
        for sub in ("runc", "sandboxes", "containers", "exits", "persist", "cni/networks"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self.runc_root = self.root / "runc"
        self.cni = CNI(cni or CNIConfig(), self.root / "cni", host_netns)
        self._sandbox_store = RecordStore(self.root / "state" / "sandboxes")
        self._container_store = RecordStore(self.root / "state" / "containers")
        # Adoption: whatever an earlier agent left is ours now.
        self._sandboxes: dict[str, dict] = self._sandbox_store.load_all()
        self._containers: dict[str, dict] = self._container_store.load_all()
        self._locks: dict[str, asyncio.Lock] = {}
        # An earlier agent that died half-way through a creation leaves records to clean up:
        # they show as not ready / exited, so the kubelet removes them.
        for rec in self._sandboxes.values():
            if rec.get("state") == "creating":
                rec["state"] = api.SANDBOX_NOTREADY
        for rec in self._containers.values():
            if rec.get("state") == "creating":
                rec.update(state=api.CONTAINER_EXITED, exit_code=255, reason="Error",
                           message="the runtime restarted while creating this container",
                           finished_at=_now())
        self._pause_rootfs = self._ensure_pause_rootfs()

    # --- helpers ----------------------------------------------------------------------

    def _lock(self, key: str) -> asyncio.Lock:
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        return lock

    def _ensure_pause_rootfs(self) -> Path:
        rootfs = self.root / "pause-rootfs"
        if not (rootfs / "bin" / "sh").exists():
            tmp = self.root / f".pause-rootfs-{os.getpid()}"
            shutil.rmtree(tmp, ignore_errors=True)
            (tmp / "bin").mkdir(parents=True)
            for d in ("proc", "dev", "sys", "etc"):
                (tmp / d).mkdir()
            shutil.copy2(BUSYBOX, tmp / "bin" / "busybox")
            for applet in ("sh", "sleep"):
                (tmp / "bin" / applet).symlink_to("busybox")
            shutil.rmtree(rootfs, ignore_errors=True)
            os.replace(tmp, rootfs)
        return rootfs

    def _sandbox(self, sandbox_id: str) -> dict:
        rec = self._sandboxes.get(sandbox_id)
        if rec is None:
            raise NotFound(f"pod sandbox {sandbox_id} not found")
        return rec

    def _container(self, container_id: str) -> dict:
        rec = self._containers.get(container_id)
        if rec is None:
            raise NotFound(f"container {container_id} not found")
        return rec

    def _save_sandbox(self, rec: dict) -> None:
        self._sandbox_store.save(rec["id"], rec)

    def _save_container(self, rec: dict) -> None:
        self._container_store.save(rec["id"], rec)

    def _monitor_paths(self, rec: dict) -> MonitorPaths:
        return MonitorPaths(bundle=Path(rec["bundle"]), log_path=rec["log_path"],
                            exit_dir=self.root / "exits", persist_dir=self.root / "persist" / rec["id"],
                            conmon_pidfile=Path(rec["bundle"]) / "conmon.pid")

    # --- version / status -------------------------------------------------------------

    async def version(self) -> VersionInfo:
        return VersionInfo(version="v1", runtime_name=RUNTIME_NAME, runtime_version=RUNTIME_VERSION)

    async def status(self) -> RuntimeStatus:
        runtime_ready = os.access(RUNC, os.X_OK)
        network_ready = self.cni.ready
        msg = ""
        if not network_ready:
            msg = ("container runtime network not ready: NetworkReady=false "
                   "reason:NetworkPluginNotReady message:Network plugin returns error: cni plugin not initialized")
        return RuntimeStatus(runtime_ready=runtime_ready, network_ready=network_ready, message=msg)

    async def update_runtime_config(self, pod_cidr: str) -> None:
        self.cni.config.pod_cidr = pod_cidr

    # --- sandboxes --------------------------------------------------------------------

    async def run_pod_sandbox(self, config: PodSandboxConfig) -> str:
        sid = _new_id()
        sdir = self.root / "sandboxes" / sid
        sdir.mkdir(parents=True)
        lx = config.linux
        rec: dict = {
            "id": sid, "name": config.name, "namespace": config.namespace, "uid": config.uid,
            "attempt": config.attempt, "labels": dict(config.labels),
            "annotations": dict(config.annotations), "created_at": _now(), "state": "creating",
            "dir": str(sdir), "host_network": lx.host_network, "host_pid": lx.host_pid,
            "share_pid": lx.share_pid and not lx.host_pid, "host_ipc": lx.host_ipc, "hostname": config.hostname or config.name,
            "netns": None, "own_netns": False, "ips": [], "cni_result": None,
            "port_mappings": port_mappings_for_cni(config.port_mappings),
            "cgroup": lx.cgroup_parent or pod_cgroup(self.cgroup_root, lx.qos_class, config.uid),
        }
        self._sandboxes[sid] = rec
        self._save_sandbox(rec)
        async with self._lock(sid):
            try:
                await self._setup_sandbox(rec, config)
            except Exception as e:
                log.warning("pod sandbox %s/%s failed: %s", config.namespace, config.name, e)
                try:
                    await self._teardown_sandbox(rec)
                    await self._forget_sandbox(rec)
                except RuntimeFailure as teardown:  # kept, NotReady: removing it retries the DEL
                    log.warning("pod sandbox %s/%s kept: %s", config.namespace, config.name, teardown.message)
                if isinstance(e, api.RuntimeError_):
                    raise
                raise RuntimeFailure(f"failed to create pod sandbox: {e}") from e
        return sid

    async def _setup_sandbox(self, rec: dict, config: PodSandboxConfig) -> None:
        sdir = Path(rec["dir"])
        lx = config.linux
        # network namespace and CNI
        if lx.host_network:
            rec["netns"] = self.host_netns
        else:
            netns = sdir / "netns"
            rec["netns"], rec["own_netns"] = str(netns), True
            self._save_sandbox(rec)  # first: an agent killed right after still knows to remove it
            await asyncio.to_thread(create_netns, netns)
            try:
                result, rec["cni_network"] = await self.cni.add(rec["id"], str(netns), rec["port_mappings"],
                                                                config.name, config.namespace, config.uid)
            except CNIError as e:
                raise RuntimeFailure(
                    f'failed to setup network for sandbox "{rec["id"]}": {e}') from e
            rec["cni_result"] = result
            rec["ips"] = result_ips(result)
            self._save_sandbox(rec)
        # cgroup of the pod; BestEffort ones (and their QoS parent) get the kubelet's minimum shares
        shares = lx.cpu_shares
        if (lx.qos_class or "").lower() == "besteffort" and not lx.cgroup_parent:
            await asyncio.to_thread(self.cgroups.create, qos_parent(self.cgroup_root, "BestEffort"),
                                    BESTEFFORT_SHARES)
            shares = shares or BESTEFFORT_SHARES
        await asyncio.to_thread(self.cgroups.create, rec["cgroup"], shares, lx.cpu_quota,
                                lx.cpu_period, lx.memory_limit_bytes)
        rec["cgroup_dirs"] = {k: str(v) for k, v in self.cgroups.dirs(rec["cgroup"]).items()}
        # per-pod files
        rec.update(write_sandbox_files(sdir, rec["hostname"], rec["ips"], lx.host_network, config.hosts_file,
                                       config.resolv_conf, config.dns))
        if not lx.host_ipc:
            shm = sdir / "shm"
            shm.mkdir(exist_ok=True)
            rec["shm"] = str(shm)
            self._save_sandbox(rec)
            try:
                mount_tmpfs(shm, f"mode=1777,size={SHM_SIZE}")
            except OSError as e:
                raise RuntimeFailure(f"mounting the pod's /dev/shm: {e}") from e
        if rec["share_pid"]:
            await self._start_pause(rec, config)
        else:
            # No process holds the pod's namespaces (CRI-O's "drop infra container"): its IPC and
            # UTS namespaces are pinned on files as the netns is, and the containers join those.
            # A pause process is only needed as PID 1 of a pid namespace the containers share.
            ipc = None if lx.host_ipc else sdir / "ipc"
            uts = None if lx.host_network else sdir / "uts"
            rec["ipc"], rec["uts"] = ipc and str(ipc), uts and str(uts)
            self._save_sandbox(rec)  # first, as for the netns: a successor knows what to unmount
            try:
                await pin_pod_namespaces(rec["netns"] if rec["own_netns"] else None, ipc, uts,
                                         rec["hostname"], dict(lx.sysctls))
            except (OSError, ValueError) as e:
                raise RuntimeFailure(f"failed to create the pod's namespaces: {e}") from e
        rec["state"] = api.SANDBOX_READY
        self._save_sandbox(rec)

    async def _start_pause(self, rec: dict, config: PodSandboxConfig) -> None:
        """The pause process: PID 1 of the pod's shared pid namespace (it reaps orphans), and
        the owner of its IPC and UTS namespaces."""
        lx = config.linux
        pause_dir = Path(rec["dir"]) / "pause"
        pause_dir.mkdir()
        ns = SandboxNamespaces(network=rec["netns"], ipc=None if lx.host_ipc else "",
                               uts=None if lx.host_network else "", host_pid=lx.host_pid,
                               hostname=rec["hostname"], sysctls=dict(lx.sysctls))
        spec = pause_spec(self._pause_rootfs, ns, self.cgroups.spec_path(f"{rec['cgroup']}/{rec['id']}"),
                          lx.host_ipc)
        (pause_dir / "config.json").write_bytes(orjson.dumps(spec))
        rec["bundle"] = str(pause_dir)
        rec["log_path"] = str(pause_dir / "pause.log")
        self._save_sandbox(rec)
        try:
            pid = await create_container(rec["id"], f"k8s_POD_{config.name}_{config.namespace}",
                                         self.runc_root, self._monitor_paths(rec))
            await runc(self.runc_root, "start", rec["id"])
        except MonitorError as e:
            raise RuntimeFailure(f"failed to start the pod's pause process: {e}") from e
        rec["pause_pid"], rec["pause_start"] = pid, process_start_time(pid)

    async def _teardown_sandbox(self, rec: dict) -> None:
        """Kill the pause process if any, release the network and unmount; keep the record.

        A failed CNI DEL fails the call and leaves the namespace and the cached result, so the
        next stop or remove calls DEL again (as containerd: the pod's IP is not leaked)."""
        if rec.get("torn_down"):
            return
        rec["state"] = api.SANDBOX_NOTREADY  # stopped from the first step, even if a later one fails
        self._save_sandbox(rec)
        if rec.get("bundle"):
            await self._kill_and_wait(rec, signal.SIGKILL, 10.0)
        if rec.get("cni_result") is not None or (rec.get("own_netns") and rec.get("netns")):
            try:
                await self.cni.delete(rec["id"], rec.get("netns"), rec["port_mappings"], rec.get("cni_result"),
                                      rec.get("cni_network"), rec["name"], rec["namespace"], rec["uid"])
            except CNIError as e:
                log.warning("CNI DEL for sandbox %s: %s", rec["id"], e)
                raise RuntimeFailure(f'failed to destroy network for sandbox "{rec["id"]}": {e}') from e
            rec["cni_result"] = None
        if rec.get("own_netns") and rec.get("netns"):
            await asyncio.to_thread(remove_ns_file, Path(rec["netns"]))
        for pinned in (rec.get("ipc"), rec.get("uts")):
            if pinned:
                await asyncio.to_thread(remove_ns_file, Path(pinned))
        if rec.get("shm"):
            umount(rec["shm"])
        rec["torn_down"] = True
        self._save_sandbox(rec)

    async def _forget_sandbox(self, rec: dict) -> None:
        if rec.get("bundle"):
            await runc(self.runc_root, "delete", "--force", rec["id"], check=False)
        if rec.get("cgroup"):
            await asyncio.to_thread(self.cgroups.remove, rec["cgroup"])
        self._cleanup_monitor_files(rec["id"])
        shutil.rmtree(rec["dir"], ignore_errors=True)
        self._sandboxes.pop(rec["id"], None)
        self._locks.pop(rec["id"], None)
        self._sandbox_store.delete(rec["id"])

    def _cleanup_monitor_files(self, key: str) -> None:
        (self.root / "exits" / key).unlink(missing_ok=True)
        shutil.rmtree(self.root / "persist" / key, ignore_errors=True)

    async def stop_pod_sandbox(self, sandbox_id: str) -> None:
        rec = self._sandboxes.get(sandbox_id)
        if rec is None:
            return  # CRI: stopping what is gone is not an error
        for c in [c for c in self._containers.values() if c["sandbox_id"] == sandbox_id]:
            with contextlib.suppress(NotFound):   # removed meanwhile: stopped all the same
                await self.stop_container(c["id"], 0)
        async with self._lock(sandbox_id):
            await self._teardown_sandbox(rec)
            rec["state"] = api.SANDBOX_NOTREADY
            self._save_sandbox(rec)

    async def remove_pod_sandbox(self, sandbox_id: str) -> None:
        rec = self._sandboxes.get(sandbox_id)
        if rec is None:
            return
        for c in [c for c in self._containers.values() if c["sandbox_id"] == sandbox_id]:
            await self.remove_container(c["id"])
        async with self._lock(sandbox_id):
            await self._teardown_sandbox(rec)
            await self._forget_sandbox(rec)

    def _sandbox_state(self, rec: dict) -> str:
        if rec.get("state") != api.SANDBOX_READY:
            return api.SANDBOX_NOTREADY
        if rec.get("bundle"):  # a pause process holds the namespaces: ready while it lives
            alive = _alive(rec.get("pause_pid", 0), rec.get("pause_start"))
            return api.SANDBOX_READY if alive else api.SANDBOX_NOTREADY
        # Files hold them (CRI-O's rule for a dropped infra container): ready while they are
        # mounted; after a reboot they are not, and the kubelet makes a new sandbox.
        pinned = [rec.get("ipc"), rec.get("uts"), rec.get("netns") if rec.get("own_netns") else None]
        if not all(is_pinned(p) for p in pinned if p):
            return api.SANDBOX_NOTREADY
        return api.SANDBOX_READY

    def _sandbox_status(self, rec: dict) -> PodSandboxStatus:
        ips = list(rec.get("ips") or [])
        return PodSandboxStatus(
            id=rec["id"], name=rec["name"], namespace=rec["namespace"], uid=rec["uid"],
            attempt=rec["attempt"], state=self._sandbox_state(rec), created_at=rec["created_at"],
            ip=ips[0] if ips else "", ips=ips, netns=rec.get("netns") or "/proc/self/ns/net",
            labels=dict(rec["labels"]), annotations=dict(rec["annotations"]),
            host_network=rec["host_network"])

    async def pod_sandbox_status(self, sandbox_id: str) -> PodSandboxStatus:
        return self._sandbox_status(self._sandbox(sandbox_id))

    async def list_pod_sandboxes(self, labels: dict[str, str] | None = None) -> list[PodSandboxStatus]:
        out = []
        for rec in list(self._sandboxes.values()):
            if rec.get("state") == "creating":
                continue
            if labels and any(rec["labels"].get(k) != v for k, v in labels.items()):
                continue
            out.append(self._sandbox_status(rec))
        return out

    # --- containers -------------------------------------------------------------------

    async def create_container(self, sandbox_id: str, config: ContainerConfig,
                               sandbox_config: PodSandboxConfig) -> str:
        sb = self._sandbox(sandbox_id)
        if self._sandbox_state(sb) != api.SANDBOX_READY:
            raise RuntimeFailure(f"pod sandbox {sandbox_id} is not ready")
        image = config.image
        cid = _new_id()
        cdir = self.root / "containers" / cid
        cdir.mkdir(parents=True)
        rec: dict = {
            "id": cid, "sandbox_id": sandbox_id, "name": config.name, "attempt": config.attempt,
            "image_id": getattr(image, "id", ""), "image_ref": _image_ref(image),
            "labels": dict(config.labels), "annotations": dict(config.annotations),
            "log_path": config.log_path or str(cdir / "container.log"), "created_at": _now(),
            "bundle": str(cdir), "rootfs": str(cdir / "rootfs"), "state": "creating",
            "tty": config.tty, "stdin": config.stdin, "host_pid": sb["host_pid"],
            "share_pid": sb.get("share_pid", False),
            "cgroup": f"{sb['cgroup']}/{cid}",
        }
        stop_signal = config.stop_signal or (getattr(image, "config", {}) or {}).get("StopSignal") or "SIGTERM"
        rec["stop_signal"] = stop_signal
        async with self._lock(cid):
            self._containers[cid] = rec
            try:
                # Recorded before the mount: an agent killed meanwhile leaves nothing unfindable
                # (unmounting what is not mounted is a no-op).
                rec["rootfs_mounted"] = True
                self._save_container(rec)
                await asyncio.to_thread(self.image_store.mount_rootfs, image, cdir / "rootfs", cdir / "overlay")
                ns = SandboxNamespaces(
                    network=sb.get("netns"),
                    ipc=None if sb["host_ipc"] else _pod_namespace(sb, "ipc"),
                    uts=None if sb["host_network"] else _pod_namespace(sb, "uts"),
                    host_pid=sb["host_pid"], pid=_pod_namespace(sb, "pid") if sb.get("share_pid") else None,
                    shm=sb.get("shm"), hosts=sb.get("hosts"),
                    resolv_conf=sb.get("resolv_conf"), hostname_file=sb.get("hostname_file"),
                    hostname=sb["hostname"])
                spec = await asyncio.to_thread(container_spec, config, getattr(image, "config", {}) or {},
                                               cdir / "rootfs", ns, self.cgroups.spec_path(rec["cgroup"]),
                                               sb["host_ipc"], stop_signal)
                (cdir / "config.json").write_bytes(orjson.dumps(spec))
                rec["cgroup_dirs"] = {k: str(v) for k, v in self.cgroups.dirs(rec["cgroup"]).items()}
                self._save_container(rec)
            except Exception as e:
                await self._forget_container(rec)
                if isinstance(e, api.RuntimeError_):
                    raise
                raise RuntimeFailure(f"failed to create container: {e}") from e
            try:
                pid = await create_container(
                    cid, f"k8s_{config.name}_{sandbox_config.name}_{sandbox_config.namespace}",
                    self.runc_root, self._monitor_paths(rec), stdin=config.stdin,
                    stdin_once=config.stdin_once, tty=config.tty)
            except (MonitorError, OSError) as e:
                # As containerd, whose task (the process) only exists from StartContainer on:
                # the container is created, and starting it fails with the runtime's message.
                rec["start_error"] = ("failed to create containerd task: failed to create shim task: "
                                      f"OCI runtime create failed: {e}: unknown")
                pid = 0
            rec["pid"], rec["pid_start"] = pid, process_start_time(pid) if pid else None
            rec["state"] = api.CONTAINER_CREATED
            self._save_container(rec)
        return cid

    async def start_container(self, container_id: str) -> None:
        rec = self._container(container_id)
        async with self._lock(container_id):
            if rec["state"] != api.CONTAINER_CREATED:
                raise RuntimeFailure(f"container {container_id} is not in created state: {rec['state']}")
            if rec.get("start_error"):
                self._mark_start_error(rec)
                raise RuntimeFailure(rec["start_error"])
            started = _now()  # before: a short-lived process may be gone when runc returns
            try:
                await runc(self.runc_root, "start", container_id)
            except MonitorError as e:
                raise RuntimeFailure(f"failed to start container {container_id}: {e}") from e
            rec["state"] = api.CONTAINER_RUNNING
            rec["started_at"] = started
            self._save_container(rec)

    async def _kill_and_wait(self, rec: dict, sig: int, timeout: float) -> bool:
        """Signal a container's init and wait for conmon to record its exit."""
        paths = self._monitor_paths(rec)
        pid, start = rec.get("pid") or rec.get("pause_pid", 0), rec.get("pid_start", rec.get("pause_start"))
        if read_exit_code(paths, rec["id"]) is not None:
            return True
        if _alive(pid, start):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
            if sig == signal.SIGKILL and (rec.get("host_pid") or rec.get("share_pid")):
                await runc(self.runc_root, "kill", "--all", rec["id"], "KILL", check=False)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if read_exit_code(paths, rec["id"]) is not None:
                return True
            if not _alive(pid, start) and not _monitor_alive(paths, rec["id"]):
                return True  # no monitor left to write an exit file
            await asyncio.sleep(EXIT_POLL)
        return False

    async def stop_container(self, container_id: str, timeout_seconds: float) -> None:
        rec = self._container(container_id)
        async with self._lock(container_id):
            if self._refresh(rec) not in (api.CONTAINER_RUNNING, api.CONTAINER_CREATED):
                return
            if rec.get("start_error"):
                self._mark_start_error(rec)
                return
            sig = _signal_number(rec.get("stop_signal", "SIGTERM"))
            if timeout_seconds > 0 and rec["state"] == api.CONTAINER_RUNNING:
                if await self._kill_and_wait(rec, sig, timeout_seconds):
                    self._refresh(rec)
                    return
            if not await self._kill_and_wait(rec, signal.SIGKILL, 10.0):
                raise RuntimeFailure(f"container {container_id} did not exit after SIGKILL")
            self._refresh(rec)

    async def remove_container(self, container_id: str) -> None:
        rec = self._containers.get(container_id)
        if rec is None:
            return
        with contextlib.suppress(NotFound):
            await self.stop_container(container_id, 0)
        async with self._lock(container_id):
            if container_id in self._containers:   # not removed by a concurrent call meanwhile
                await self._forget_container(rec)

    async def _forget_container(self, rec: dict) -> None:
        await runc(self.runc_root, "delete", "--force", rec["id"], check=False)
        if rec.get("rootfs_mounted"):
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self.image_store.unmount_rootfs, rec["rootfs"])
        await asyncio.to_thread(self.cgroups.remove, rec["cgroup"])
        self._cleanup_monitor_files(rec["id"])
        await asyncio.to_thread(shutil.rmtree, rec["bundle"], True)
        self._containers.pop(rec["id"], None)
        self._locks.pop(rec["id"], None)
        self._container_store.delete(rec["id"])

    def _mark_start_error(self, rec: dict) -> None:
        """containerd's record of a container that could not start: exit code 128, StartError."""
        rec.update(state=api.CONTAINER_EXITED, exit_code=128, reason="StartError",
                   message=rec["start_error"], started_at=0, finished_at=_now())
        self._save_container(rec)

    def _refresh(self, rec: dict) -> str:
        """Bring a container record up to date with conmon's exit file and the process table."""
        state = rec.get("state")
        if state in (api.CONTAINER_EXITED, "creating"):
            return state
        if rec.get("start_error"):
            return state  # created, with no process; start_container will fail
        paths = self._monitor_paths(rec)
        exited = read_exit_code(paths, rec["id"])
        if exited is None:
            if _alive(rec.get("pid", 0), rec.get("pid_start")) or _monitor_alive(paths, rec["id"]):
                return state
            # conmon writes the exit file and then exits: it may have done both since the first look
            exited = read_exit_code(paths, rec["id"])
        if exited is None:
            exited = (255, _now())  # process and monitor both gone without a word
            rec["message"] = "container's monitor exited without recording an exit code"
        code, finished = exited
        finished = max(finished, rec.get("started_at", 0))  # the exit file's mtime is coarser
        rec["exit_code"], rec["finished_at"] = code, finished
        oom = (paths.persist_dir / "oom").exists() or self.cgroups.oom_kills(rec.get("cgroup_dirs", {})) > 0
        if oom:
            rec["reason"] = "OOMKilled"
        else:
            rec["reason"] = "Completed" if code == 0 else "Error"
        if state == api.CONTAINER_CREATED:
            rec.setdefault("started_at", 0)
        rec["state"] = api.CONTAINER_EXITED
        self._save_container(rec)
        return api.CONTAINER_EXITED

    def _container_status(self, rec: dict) -> ContainerStatus:
        state = self._refresh(rec)
        return ContainerStatus(
            id=rec["id"], sandbox_id=rec["sandbox_id"], name=rec["name"], attempt=rec["attempt"],
            state=api.CONTAINER_UNKNOWN if state == "creating" else state,
            created_at=rec["created_at"], started_at=rec.get("started_at", 0),
            finished_at=rec.get("finished_at", 0), exit_code=rec.get("exit_code", 0),
            reason=rec.get("reason", ""), message=rec.get("message", ""), image_id=rec["image_id"],
            image_ref=rec["image_ref"], log_path=rec["log_path"], labels=dict(rec["labels"]),
            annotations=dict(rec["annotations"]),
            pid=rec.get("pid", 0) if state == api.CONTAINER_RUNNING else 0)

    async def container_status(self, container_id: str) -> ContainerStatus:
        return self._container_status(self._container(container_id))

    async def list_containers(self, sandbox_id: str | None = None,
                              labels: dict[str, str] | None = None) -> list[ContainerStatus]:
        out = []
        for rec in list(self._containers.values()):
            if rec.get("state") == "creating":
                continue
            if sandbox_id and rec["sandbox_id"] != sandbox_id:
                continue
            if labels and any(rec["labels"].get(k) != v for k, v in labels.items()):
                continue
            out.append(self._container_status(rec))
        return out

    async def wait_container(self, container_id: str) -> ContainerStatus:
        while True:
            rec = self._container(container_id)
            if self._refresh(rec) == api.CONTAINER_EXITED:
                return self._container_status(rec)
            await asyncio.sleep(EXIT_POLL * 5)

    async def reopen_container_log(self, container_id: str) -> None:
        rec = self._container(container_id)
        if self._refresh(rec) != api.CONTAINER_RUNNING:
            raise RuntimeFailure(f"container {container_id} is not running")
        send_ctl(self._monitor_paths(rec), 2)

    # --- streaming --------------------------------------------------------------------

    def _running(self, container_id: str) -> dict:
        rec = self._container(container_id)
        if self._refresh(rec) != api.CONTAINER_RUNNING:
            raise RuntimeFailure(f"container {container_id} is not running")
        return rec

    def _exec_pid_file(self, rec: dict) -> Path:
        return Path(rec["bundle"]) / f"exec-{secrets.token_hex(6)}.pid"

    async def exec_sync(self, container_id: str, cmd: list[str],
                        timeout: float | None = None) -> tuple[int, bytes, bytes]:
        rec = self._running(container_id)
        pid_file = self._exec_pid_file(rec)
        proc = await asyncio.create_subprocess_exec(
            RUNC, "--root", str(self.runc_root), "exec", "--pid-file", str(pid_file), container_id, *cmd,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
        try:
            out, err = await asyncio.wait_for(proc.communicate(), timeout if timeout else None)
        except (asyncio.TimeoutError, asyncio.CancelledError):
            # Timed out, or the caller (a probe's or a hook's own timeout) gave up: the process
            # must not run on. Kill it in the container (runc exec then reaps it and exits), or
            # runc exec itself when it had not started the process yet.
            if pid_file.exists():
                kill_pid_file(pid_file)
            elif proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
            with contextlib.suppress(Exception):
                await asyncio.shield(asyncio.wait_for(proc.communicate(), 5))
            raise
        finally:
            pid_file.unlink(missing_ok=True)
        failure = _runc_start_failure(proc.returncode, err)
        if failure:
            raise _exec_failure(pid_file, failure)   # probes report it as "errored", hooks as failed
        return proc.returncode, out, err

    async def exec(self, container_id: str, cmd: list[str], tty: bool = False,
                   stdin: bool = False) -> api.ExecSession:
        rec = self._running(container_id)
        pid_file = self._exec_pid_file(rec)
        base = [RUNC, "--root", str(self.runc_root), "exec", "--pid-file", str(pid_file)]
        if not tty:
            proc = await asyncio.create_subprocess_exec(
                *base, container_id, *cmd,
                stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            if not await _exec_started(proc, pid_file):
                # runc could not start it (no such executable, ...): containerd's error, not a run
                err = await proc.stderr.read()
                raise _exec_failure(pid_file, _runc_start_failure(proc.returncode, err)
                                    or err.decode(errors="replace").strip())
            return PipeExecSession(proc, pid_file)
        master, slave = os.openpty()
        try:
            set_winsize(master, 80, 24)
            # setsid --ctty: our pty becomes runc's controlling terminal, so a resize of it
            # reaches runc as SIGWINCH and runc resizes the container's console.
            proc = await asyncio.create_subprocess_exec(
                "setsid", "--ctty", *base, "-t", container_id, *cmd,
                stdin=slave, stdout=slave, stderr=slave)
        except BaseException:
            os.close(master)
            raise
        finally:
            os.close(slave)
        os.set_blocking(master, False)
        return TtyExecSession(proc, master, pid_file)

    async def attach(self, container_id: str, stdin: bool = False, tty: bool = False) -> api.AttachSession:
        rec = self._running(container_id)
        paths = self._monitor_paths(rec)
        try:
            sock = connect_seqpacket(paths.attach_socket)
        except OSError as e:
            raise RuntimeFailure(f"failed to attach to container {container_id}: {e}") from e

        def resize(width: int, height: int) -> None:
            send_ctl(paths, 1, height, width)

        async def exited() -> None:
            await self.wait_container(container_id)

        return ConmonAttachSession(sock, rec["tty"], stdin and rec["stdin"], resize, exited)

    async def open_connection(self, sandbox_id: str, port: int, host: str = "127.0.0.1"
                              ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        rec = self._sandbox(sandbox_id)
        if self._sandbox_state(rec) != api.SANDBOX_READY:
            raise RuntimeFailure(f"pod sandbox {sandbox_id} is not ready")

        def connect() -> socket.socket:
            s = socket.create_connection((host, port), timeout=10)
            s.setblocking(False)
            return s

        sock = await run_in_netns(rec.get("netns"), connect)
        return await asyncio.open_connection(sock=sock)

    # --- stats ------------------------------------------------------------------------

    async def container_stats(self, container_id: str) -> ContainerStats:
        rec = self._container(container_id)
        u = await asyncio.to_thread(self.cgroups.usage, rec.get("cgroup_dirs", {}))
        upper = Path(rec["bundle"]) / "overlay" / "upper"
        return await asyncio.to_thread(stats.container_stats, container_id, _now(), u, upper)

    async def pod_sandbox_stats(self, sandbox_id: str) -> PodSandboxStats:
        rec = self._sandbox(sandbox_id)
        u = await asyncio.to_thread(self.cgroups.usage, rec.get("cgroup_dirs", {}))
        eth0 = None
        if rec.get("own_netns") and self._sandbox_state(rec) == api.SANDBOX_READY:
            # read from inside the pod's netns: no process of the pod need be running
            with contextlib.suppress(OSError):
                eth0 = (await run_in_netns(rec["netns"], stats.net_dev)).get("eth0")
        result = stats.pod_stats(sandbox_id, _now(), u, eth0)
        for c in list(self._containers.values()):
            if c["sandbox_id"] == sandbox_id and self._refresh(c) == api.CONTAINER_RUNNING:
                result.containers.append(await self.container_stats(c["id"]))
        return result


def _pod_namespace(sb: dict, kind: str) -> str:
    """Where a container joins its pod's namespace: the pause process's (pods sharing a pid
    namespace, and sandboxes made before namespaces were pinned on files), else the file."""
    if sb.get("pause_pid"):
        return f"/proc/{sb['pause_pid']}/ns/{kind}"
    return sb[kind]


_RUNC_ERROR = re.compile(r'^time="[^"]*" level=error msg="(.*)"$')


def _exec_failure(pid_file: Path, failure: str) -> RuntimeFailure:
    """containerd's wording for an exec whose process could not start."""
    return RuntimeFailure(f'failed to exec in container: failed to start exec "{pid_file.stem}": '
                          f"OCI runtime exec failed: {failure}: unknown")


async def _exec_started(proc: asyncio.subprocess.Process, pid_file: Path) -> bool:
    """Whether `runc exec` started the process: it writes the pid file once it has, and exits
    without it when it could not."""
    waiter = asyncio.ensure_future(proc.wait())
    try:
        while not pid_file.exists():
            done, _ = await asyncio.wait({waiter}, timeout=0.002)
            if done:
                return pid_file.exists()
        return True
    finally:
        waiter.cancel()


def _runc_start_failure(returncode: int, stderr: bytes) -> str:
    """runc's own message when it could not start the process (it then exits 255), else ""."""
    if returncode != 255:
        return ""
    lines = stderr.decode(errors="replace").strip().splitlines()
    m = _RUNC_ERROR.match(lines[-1]) if lines else None
    return m.group(1).replace('\\"', '"') if m else ""


def _signal_number(name: str) -> int:
    name = str(name).upper()
    if name.isdigit():
        return int(name)
    if not name.startswith("SIG"):
        name = "SIG" + name
    return int(getattr(signal.Signals, name, signal.SIGTERM))


def _image_ref(image: Any) -> str:
    digests = getattr(image, "repo_digests", None) or []
    if digests:
        return digests[0]
    return getattr(image, "id", "")
