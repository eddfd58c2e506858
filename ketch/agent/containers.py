"""From a pod's spec to the runtime's configs: the sandbox config of the pod and the container
config of each container, with the labels and annotations the kubelet puts on them so that a
restarted agent can tell, from the runtime alone, which pod and container each one belongs to.

Resource arithmetic is the kubelet's: cpu shares = milli-CPU request * 1024 / 1000 (at least 2),
CFS quota = milli-CPU limit * period / 1000 (at least 1 ms), the OOM score adjustment by QoS
class (Guaranteed -997, BestEffort 1000, Burstable scaled by the memory request).
"""
from __future__ import annotations

import hashlib
from pathlib import Path
import orjson

from ..api.defaults import pod_qos_class
from ..api.quantity import parse_quantity
from .runtime.api import (ContainerConfig, LinuxContainerConfig, LinuxPodSandboxConfig, Mount, PodSandboxConfig,
                          PortMapping)

POD_NAME = "io.kubernetes.pod.name"
POD_NAMESPACE = "io.kubernetes.pod.namespace"
POD_UID = "io.kubernetes.pod.uid"
CONTAINER_NAME = "io.kubernetes.container.name"
CONTAINER_HASH = "io.kubernetes.container.hash"
RESTART_COUNT = "io.kubernetes.container.restartCount"
TERMINATION_MESSAGE_PATH = "io.kubernetes.container.terminationMessagePath"
GRACE_PERIOD = "io.kubernetes.pod.terminationGracePeriod"
INIT_CONTAINER = "ketch.io/init-container"

CPU_PERIOD_US = 100_000
MIN_SHARES, MIN_QUOTA_US = 2, 1_000


def pod_labels(pod: dict) -> dict[str, str]:
    meta = pod["metadata"]
    return {POD_NAME: meta["name"], POD_NAMESPACE: meta["namespace"], POD_UID: meta["uid"]}


def newest_first(statuses: list) -> list:
    """A container's attempts, the newest (highest restart count) first."""
    return sorted(statuses, key=lambda c: (c.attempt, c.created_at), reverse=True)


def container_hash(container: dict) -> str:
    """A stable digest of a container's spec: a changed spec (a new image, say) means a new container."""
    return hashlib.sha256(orjson.dumps(container, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]


def _milli(resources: dict | None, kind: str, name: str) -> int | None:
    value = ((resources or {}).get(kind) or {}).get(name)
    return None if value is None else parse_quantity(value).milli_value()


def _bytes(resources: dict | None, kind: str, name: str) -> int | None:
    value = ((resources or {}).get(kind) or {}).get(name)
    return None if value is None else parse_quantity(value).scaled_value(0)


def oom_score_adj(qos: str, memory_request: int | None, memory_capacity: int) -> int:
    if qos == "Guaranteed":
        return -997
    if qos == "BestEffort":
        return 1000
    request = memory_request or 0
    adj = 1000 - (1000 * request) // max(memory_capacity, 1)
    return min(max(adj, 2), 999)   # Burstable never reaches the other classes' scores


def sandbox_config(pod: dict, *, hostname: str, dns, hosts_file: str | None, resolv_conf: str | None,
                   log_directory: str, attempt: int) -> PodSandboxConfig:
    meta, spec = pod["metadata"], pod["spec"]
    ports = [PortMapping(container_port=p["containerPort"], host_port=p.get("hostPort") or 0,
                         protocol=p.get("protocol") or "TCP", host_ip=p.get("hostIP") or "")
             for c in spec.get("containers") or () for p in c.get("ports") or () if p.get("hostPort")]
    sysctls = {s["name"]: s.get("value", "") for s in (spec.get("securityContext") or {}).get("sysctls") or ()}
    return PodSandboxConfig(
        name=meta["name"], namespace=meta["namespace"], uid=meta["uid"], attempt=attempt, hostname=hostname,
        log_directory=log_directory, dns=dns, port_mappings=ports,
        labels={**(meta.get("labels") or {}), **pod_labels(pod)},
        annotations=dict(meta.get("annotations") or {}),
        linux=LinuxPodSandboxConfig(host_network=bool(spec.get("hostNetwork")), host_pid=bool(spec.get("hostPID")),
                                    host_ipc=bool(spec.get("hostIPC")),
                                    share_pid=bool(spec.get("shareProcessNamespace")), qos_class=pod_qos_class(pod),
                                    sysctls=sysctls),
        hosts_file=hosts_file, resolv_conf=resolv_conf)


def _security(pod: dict, container: dict) -> dict:
    """The container's effective securityContext: its own fields over the pod's."""
    pod_sc = pod["spec"].get("securityContext") or {}
    own = container.get("securityContext") or {}
    merged = {k: pod_sc[k] for k in ("runAsUser", "runAsGroup", "runAsNonRoot", "seLinuxOptions", "seccompProfile")
              if k in pod_sc}
    merged.update(own)
    return merged


def linux_config(pod: dict, container: dict, memory_capacity: int, seccomp_root: Path | None = None,
                 seccomp_default: bool = False) -> LinuxContainerConfig:
    resources = container.get("resources") or {}
    cpu_request = _milli(resources, "requests", "cpu")
    cpu_limit = _milli(resources, "limits", "cpu")
    memory_limit = _bytes(resources, "limits", "memory")
    qos = pod_qos_class(pod)
    sc = _security(pod, container)
    caps = sc.get("capabilities") or {}
    pod_sc = pod["spec"].get("securityContext") or {}
    groups = [int(g) for g in pod_sc.get("supplementalGroups") or ()]
    if pod_sc.get("fsGroup") is not None:
        groups.insert(0, int(pod_sc["fsGroup"]))
    privileged = bool(sc.get("privileged"))
    seccomp = sc.get("seccompProfile") or {"type": "RuntimeDefault" if seccomp_default else "Unconfined"}
    localhost = seccomp.get("localhostProfile") or ""
    return LinuxContainerConfig(
        cpu_shares=max(cpu_request * 1024 // 1000, MIN_SHARES) if cpu_request is not None else MIN_SHARES,
        cpu_quota=max(cpu_limit * CPU_PERIOD_US // 1000, MIN_QUOTA_US) if cpu_limit else 0,
        cpu_period=CPU_PERIOD_US if cpu_limit else 0,
        memory_limit_bytes=memory_limit or 0,
        oom_score_adj=oom_score_adj(qos, _bytes(resources, "requests", "memory"), memory_capacity),
        run_as_user=sc.get("runAsUser"), run_as_group=sc.get("runAsGroup"), supplemental_groups=groups,
        readonly_rootfs=bool(sc.get("readOnlyRootFilesystem")), privileged=privileged,
        capabilities_add=list(caps.get("add") or ()), capabilities_drop=list(caps.get("drop") or ()),
        # As the kubelet: allowPrivilegeEscalation defaults to true unless privileged is false
        # and the capabilities are not elevated; it is only ever false when asked for.
        no_new_privs=sc.get("allowPrivilegeEscalation") is False and not privileged,
        masked_paths=[] if privileged or sc.get("procMount") == "Unmasked" else None,
        readonly_paths=[] if privileged or sc.get("procMount") == "Unmasked" else None,
        seccomp=seccomp.get("type") or "Unconfined",
        seccomp_localhost=str((seccomp_root or Path("/")) / localhost) if localhost else "")


def container_config(pod: dict, container: dict, *, image, attempt: int, command: list[str], args: list[str],
                     envs: list[tuple[str, str]], mounts: list[Mount], log_path: str, memory_capacity: int,
                     init: bool = False, seccomp_root: Path | None = None,
                     seccomp_default: bool = False) -> ContainerConfig:
    labels = {**pod_labels(pod), CONTAINER_NAME: container["name"]}
    if init:
        labels[INIT_CONTAINER] = "true"
    grace = pod["spec"].get("terminationGracePeriodSeconds")
    annotations = {CONTAINER_HASH: container_hash(container), RESTART_COUNT: str(attempt),
                   TERMINATION_MESSAGE_PATH: container.get("terminationMessagePath") or "/dev/termination-log",
                   GRACE_PERIOD: str(30 if grace is None else grace)}
    return ContainerConfig(
        name=container["name"], image=image, attempt=attempt, command=command, args=args,
        working_dir=container.get("workingDir") or "", envs=envs, mounts=mounts, labels=labels,
        annotations=annotations, log_path=log_path, stdin=bool(container.get("stdin")),
        stdin_once=bool(container.get("stdinOnce")), tty=bool(container.get("tty")),
        linux=linux_config(pod, container, memory_capacity, seccomp_root, seccomp_default))
