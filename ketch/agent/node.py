"""What a node says about itself: its Node object (capacity, allocatable, labels, addresses,
nodeInfo, conditions) and its Lease. The real agent reads the facts from the machine; the
simulator (ketch.simulate) builds the same objects from a profile.

Allocatable is capacity minus the kubelet's default hard eviction thresholds (memory.available
100Mi, nodefs.available 10%): no resources are reserved for system daemons by default, as upstream.
"""
from __future__ import annotations

import os
import platform
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

from ..api.errors import ApiError

KUBELET_VERSION = "v1.35.0"
KUBELET_PORT = 10250
LEASE_NAMESPACE = "kube-node-lease"
LEASE_DURATION_SECONDS = 40
MAX_PODS = 110
EVICTION_MEMORY_BYTES = 100 * 1024**2     # evictionHard memory.available<100Mi
EVICTION_NODEFS_FRACTION = 0.10           # evictionHard nodefs.available<10%


def node_conditions(now: str, transition: str | None = None, pressure: dict[str, bool] | None = None) -> list[dict]:
    """The kubelet's four node conditions, in the kubelet's order. `pressure` says which of
    MemoryPressure/DiskPressure/PIDPressure hold; `transition` is their lastTransitionTime
    (default now)."""
    pressure = pressure or {}

    def cond(ctype: str, status: str, reason: str, message: str) -> dict:
        return {"type": ctype, "status": status, "reason": reason, "message": message,
                "lastHeartbeatTime": now, "lastTransitionTime": transition or now}

    def pressure_cond(ctype: str, ok: tuple[str, str], bad: tuple[str, str]) -> dict:
        reason, message = bad if pressure.get(ctype) else ok
        return cond(ctype, "True" if pressure.get(ctype) else "False", reason, message)

    return [pressure_cond("MemoryPressure", ("KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
                          ("KubeletHasInsufficientMemory", "kubelet has insufficient memory available")),
            pressure_cond("DiskPressure", ("KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
                          ("KubeletHasDiskPressure", "kubelet has disk pressure")),
            pressure_cond("PIDPressure", ("KubeletHasSufficientPID", "kubelet has sufficient PID available"),
                          ("KubeletHasInsufficientPID", "kubelet has insufficient PID available")),
            cond("Ready", "True", "KubeletReady", "kubelet is posting ready status")]


def lease_object(node: dict, renew_time: str) -> dict:
    meta = node["metadata"]
    return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": meta["name"], "namespace": LEASE_NAMESPACE,
                         "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": meta["name"],
                                              "uid": meta["uid"]}]},
            "spec": {"holderIdentity": meta["name"], "leaseDurationSeconds": LEASE_DURATION_SECONDS,
                     "renewTime": renew_time}}


async def renew_lease(lease_api, node_name: str, node_uid: str, renew_time: str) -> None:
    """The kubelet's heartbeat: bump the node's Lease, making it (owned by the Node) if missing."""
    try:
        await lease_api.patch(node_name, {"spec": {"holderIdentity": node_name,
                                                   "leaseDurationSeconds": LEASE_DURATION_SECONDS,
                                                   "renewTime": renew_time}})
    except ApiError as e:
        if e.code != 404:
            raise
        await lease_api.create(lease_object({"metadata": {"name": node_name, "uid": node_uid}}, renew_time))


def base_labels(name: str) -> dict[str, str]:
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
    return {"beta.kubernetes.io/arch": arch, "beta.kubernetes.io/os": "linux",
            "kubernetes.io/arch": arch, "kubernetes.io/os": "linux", "kubernetes.io/hostname": name}


# ---- the machine ---------------------------------------------------------------------------------

def _read(path: str, default: str = "") -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return default


def meminfo() -> dict[str, int]:
    """/proc/meminfo in bytes."""
    out: dict[str, int] = {}
    for line in _read("/proc/meminfo").splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts:
            out[key] = int(parts[0]) * (1024 if len(parts) > 1 else 1)
    return out


def os_image() -> str:
    for line in _read("/etc/os-release").splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip().strip('"')
    return "Linux"


def _ki(n: int) -> str:
    return f"{n // 1024}Ki"


@dataclass
class MachineFacts:
    cpus: int
    memory_bytes: int
    storage_bytes: int
    machine_id: str
    system_uuid: str
    boot_id: str
    kernel: str
    os_image: str

    @classmethod
    def read(cls, data_dir: Path) -> "MachineFacts":
        data_dir.mkdir(parents=True, exist_ok=True)
        machine_id = _read("/etc/machine-id") or _read("/var/lib/dbus/machine-id") or uuid.uuid4().hex
        return cls(cpus=len(os.sched_getaffinity(0)) or os.cpu_count() or 1,
                   memory_bytes=meminfo().get("MemTotal", 0),
                   storage_bytes=shutil.disk_usage(data_dir).total,
                   machine_id=machine_id,
                   system_uuid=_read("/sys/class/dmi/id/product_uuid") or str(uuid.UUID(machine_id[:32].ljust(32, "0"))),
                   boot_id=_read("/proc/sys/kernel/random/boot_id") or str(uuid.uuid4()),
                   kernel=os.uname().release, os_image=os_image())

    def capacity(self, max_pods: int = MAX_PODS) -> dict[str, str]:
        return {"cpu": str(self.cpus), "ephemeral-storage": _ki(self.storage_bytes), "hugepages-1Gi": "0",
                "hugepages-2Mi": "0", "memory": _ki(self.memory_bytes), "pods": str(max_pods)}

    def allocatable(self, max_pods: int = MAX_PODS) -> dict[str, str]:
        storage = int(self.storage_bytes * (1 - EVICTION_NODEFS_FRACTION))
        return {"cpu": str(self.cpus), "ephemeral-storage": str(storage), "hugepages-1Gi": "0", "hugepages-2Mi": "0",
                "memory": _ki(max(self.memory_bytes - EVICTION_MEMORY_BYTES, 0)), "pods": str(max_pods)}


def node_status(name: str, ip: str, facts: MachineFacts, runtime_version: str, now: str, port: int,
                max_pods: int = MAX_PODS) -> dict:
    return {
        "capacity": facts.capacity(max_pods), "allocatable": facts.allocatable(max_pods),
        "conditions": node_conditions(now),
        "addresses": [{"type": "InternalIP", "address": ip}, {"type": "Hostname", "address": name}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": port}},
        "nodeInfo": {"machineID": facts.machine_id, "systemUUID": facts.system_uuid, "bootID": facts.boot_id,
                     "kernelVersion": facts.kernel, "osImage": facts.os_image,
                     "containerRuntimeVersion": runtime_version, "kubeletVersion": KUBELET_VERSION,
                     "kubeProxyVersion": "", "operatingSystem": "linux",
                     "architecture": base_labels(name)["kubernetes.io/arch"]},
    }
