"""The container runtime interface the kubelet codes against, shaped as CRI v1 (cri-api api.proto).

Field names follow the proto's (snake_case), so another runtime (containerd or CRI-O over
gRPC) could implement RuntimeService by translating one-to-one. Times are nanoseconds since
the epoch, as CRI's int64 timestamps are. All methods are coroutines.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Protocol


# --- errors ---------------------------------------------------------------------------------


class RuntimeError_(Exception):
    """Base of every runtime error (the underscore keeps the builtin RuntimeError usable)."""

    def __init__(self, message: str = ""):
        super().__init__(message)
        self.message = message


class NotFound(RuntimeError_):
    """No sandbox or container with that id (CRI's gRPC NotFound)."""


class RuntimeFailure(RuntimeError_):
    """The runtime could not do what was asked; message is what the kubelet shows in events."""


# --- images as the runtime sees them ----------------------------------------------------------


class ImageLike(Protocol):
    """What the runtime needs of an image (ketch.images.store.Image satisfies it)."""

    id: str  # "sha256:<config digest>"
    config: dict  # the OCI image config's `config` object: Env, Entrypoint, Cmd, User, ...
    layer_dirs: list  # unpacked layer directories, lowest first


# --- pod sandbox ------------------------------------------------------------------------------


@dataclass
class DNSConfig:
    servers: list[str] = field(default_factory=list)
    searches: list[str] = field(default_factory=list)
    options: list[str] = field(default_factory=list)


@dataclass
class PortMapping:
    container_port: int
    host_port: int = 0
    protocol: str = "TCP"  # "TCP" | "UDP" | "SCTP" (as the pod spec spells it)
    host_ip: str = ""


@dataclass
class LinuxPodSandboxConfig:
    """CRI's LinuxPodSandboxConfig with its NamespaceOption flattened to booleans."""

    host_network: bool = False
    host_pid: bool = False
    host_ipc: bool = False
    share_pid: bool = False  # NamespaceMode POD for pid: the containers join the pause's (shareProcessNamespace)
    # Cgroup parent of the pod, relative to the agent's own cgroup; "" lets the runtime lay it
    # out as the kubelet does: kubepods[/burstable|/besteffort]/pod<uid>.
    cgroup_parent: str = ""
    qos_class: str = ""  # "Guaranteed" | "Burstable" | "BestEffort"; "" = Guaranteed
    sysctls: dict[str, str] = field(default_factory=dict)
    # Pod-level cgroup limits, the sums the kubelet computes (0 = none): shares from the
    # containers' cpu requests, quota and memory only when every container has a limit.
    cpu_shares: int = 0
    cpu_quota: int = 0
    cpu_period: int = 0
    memory_limit_bytes: int = 0


@dataclass
class PodSandboxConfig:
    name: str
    namespace: str
    uid: str
    attempt: int = 0
    hostname: str = ""
    log_directory: str = ""
    dns: DNSConfig | None = None
    port_mappings: list[PortMapping] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    linux: LinuxPodSandboxConfig = field(default_factory=LinuxPodSandboxConfig)
    # Files the kubelet wrote for the pod, bind-mounted into every container that does not mount
    # its own at that path. None: the runtime writes /etc/resolv.conf from `dns` (when given)
    # and /etc/hosts with localhost and the pod's own name.
    hosts_file: str | None = None
    resolv_conf: str | None = None


SANDBOX_READY = "ready"
SANDBOX_NOTREADY = "notready"


@dataclass
class PodSandboxStatus:
    id: str
    name: str
    namespace: str
    uid: str
    attempt: int
    state: str  # SANDBOX_READY | SANDBOX_NOTREADY
    created_at: int
    ip: str = ""
    ips: list[str] = field(default_factory=list)
    netns: str = ""  # path of the network namespace (the node's for hostNetwork pods)
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    host_network: bool = False


# --- containers -------------------------------------------------------------------------------


@dataclass
class Mount:
    container_path: str
    host_path: str
    readonly: bool = False
    # "private" | "rslave" (HostToContainer) | "rshared" (Bidirectional)
    propagation: str = "private"


@dataclass
class LinuxContainerConfig:
    """CRI's LinuxContainerResources and LinuxContainerSecurityContext, flattened."""

    cpu_shares: int = 0  # 0: runtime default (1024 on v1, weight 100 on v2)
    cpu_quota: int = 0  # microseconds per period; 0 = unlimited
    cpu_period: int = 0  # microseconds; 0 = 100000
    memory_limit_bytes: int = 0  # 0 = unlimited
    pids_limit: int = 0  # 0 = unlimited
    oom_score_adj: int = 0
    run_as_user: int | None = None
    run_as_group: int | None = None
    run_as_username: str = ""
    supplemental_groups: list[int] = field(default_factory=list)
    readonly_rootfs: bool = False
    privileged: bool = False
    capabilities_add: list[str] = field(default_factory=list)  # "NET_ADMIN" or "CAP_NET_ADMIN"
    capabilities_drop: list[str] = field(default_factory=list)  # "ALL" drops every default
    no_new_privs: bool = False
    # None = the runtime's defaults (containerd's list); [] = none (procMount: Unmasked)
    masked_paths: list[str] | None = None
    readonly_paths: list[str] | None = None
    # Rlimits as (type, soft, hard), e.g. ("RLIMIT_NOFILE", 1048576, 1048576)
    rlimits: list[tuple[str, int, int]] = field(default_factory=list)
    seccomp: str = "Unconfined"  # CRI's SecurityProfile: "RuntimeDefault" | "Unconfined" | "Localhost"
    seccomp_localhost: str = ""  # Localhost: the profile file's absolute path


@dataclass
class ContainerConfig:
    name: str
    image: Any  # an ImageLike, already resolved and present in the image store
    attempt: int = 0
    command: list[str] = field(default_factory=list)  # overrides the image's Entrypoint
    args: list[str] = field(default_factory=list)  # overrides the image's Cmd
    working_dir: str = ""
    envs: list[tuple[str, str]] = field(default_factory=list)  # after the image's Env
    mounts: list[Mount] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    log_path: str = ""  # absolute path of the CRI-format log file ("" = no log)
    stdin: bool = False
    stdin_once: bool = False
    tty: bool = False
    linux: LinuxContainerConfig = field(default_factory=LinuxContainerConfig)
    stop_signal: str = ""  # "" = the image's StopSignal, else SIGTERM


CONTAINER_CREATED = "created"
CONTAINER_RUNNING = "running"
CONTAINER_EXITED = "exited"
CONTAINER_UNKNOWN = "unknown"


@dataclass
class ContainerStatus:
    id: str
    sandbox_id: str
    name: str
    attempt: int
    state: str  # CONTAINER_CREATED | CONTAINER_RUNNING | CONTAINER_EXITED | CONTAINER_UNKNOWN
    created_at: int
    started_at: int = 0
    finished_at: int = 0
    exit_code: int = 0
    reason: str = ""  # "OOMKilled" | "Error" | "Completed" once exited
    message: str = ""
    image_id: str = ""
    image_ref: str = ""
    log_path: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    pid: int = 0  # host PID of the container's init process while running


# --- stats ------------------------------------------------------------------------------------


@dataclass
class ContainerStats:
    id: str
    timestamp: int
    cpu_usage_core_nanoseconds: int = 0  # cumulative
    memory_working_set_bytes: int = 0  # usage - inactive_file, as cAdvisor
    memory_usage_bytes: int = 0
    memory_rss_bytes: int = 0
    memory_page_faults: int = 0
    memory_major_page_faults: int = 0
    writable_layer_bytes: int = 0  # bytes used in the container's overlay upper dir


@dataclass
class PodSandboxStats:
    id: str
    timestamp: int
    cpu_usage_core_nanoseconds: int = 0
    memory_working_set_bytes: int = 0
    memory_usage_bytes: int = 0
    memory_rss_bytes: int = 0
    memory_page_faults: int = 0
    memory_major_page_faults: int = 0
    network_rx_bytes: int = 0  # of the pod's eth0 (0 for hostNetwork pods)
    network_tx_bytes: int = 0
    network_rx_errors: int = 0
    network_tx_errors: int = 0
    containers: list[ContainerStats] = field(default_factory=list)


@dataclass
class RuntimeStatus:
    runtime_ready: bool
    network_ready: bool
    message: str = ""


@dataclass
class VersionInfo:
    version: str  # CRI API version, "v1"
    runtime_name: str  # e.g. "ketch-runc", appears in containerID "<runtime_name>://<id>"
    runtime_version: str
    runtime_api_version: str = "v1"


# --- streaming sessions -----------------------------------------------------------------------


class ExecSession(ABC):
    """A process started in a container; streams are asyncio's.

    stdin is None unless asked for; with a TTY stderr is None (the terminal merges it).
    """

    stdin: asyncio.StreamWriter | None
    stdout: asyncio.StreamReader
    stderr: asyncio.StreamReader | None
    tty: bool

    @abstractmethod
    async def resize(self, width: int, height: int) -> None: ...

    @abstractmethod
    async def wait(self) -> int:
        """The process's exit code (128+signal when killed)."""

    @abstractmethod
    async def kill(self) -> None: ...

    async def close_stdin(self) -> None:
        if self.stdin is not None and not self.stdin.is_closing():
            self.stdin.close()


class AttachSession(ABC):
    """Attached to a container's main process through its monitor.

    wait() returns when the container exits or the session is closed (detach); closing never
    stops the container.
    """

    stdin: asyncio.StreamWriter | None
    stdout: asyncio.StreamReader
    stderr: asyncio.StreamReader | None
    tty: bool

    @abstractmethod
    async def resize(self, width: int, height: int) -> None: ...

    @abstractmethod
    async def wait(self) -> None: ...

    @abstractmethod
    async def close(self) -> None: ...

    async def close_stdin(self) -> None:
        if self.stdin is not None and not self.stdin.is_closing():
            self.stdin.close()


# --- the service ------------------------------------------------------------------------------


class RuntimeService(ABC):
    @abstractmethod
    async def version(self) -> VersionInfo: ...

    @abstractmethod
    async def status(self) -> RuntimeStatus: ...

    # sandboxes
    @abstractmethod
    async def run_pod_sandbox(self, config: PodSandboxConfig) -> str:
        """Create namespaces, network and cgroup of a pod; returns the sandbox id."""

    @abstractmethod
    async def stop_pod_sandbox(self, sandbox_id: str) -> None:
        """Kill every container of the pod and free its network; idempotent."""

    @abstractmethod
    async def remove_pod_sandbox(self, sandbox_id: str) -> None:
        """Remove the pod's containers and everything of the sandbox; idempotent."""

    @abstractmethod
    async def pod_sandbox_status(self, sandbox_id: str) -> PodSandboxStatus: ...

    @abstractmethod
    async def list_pod_sandboxes(self, labels: dict[str, str] | None = None) -> list[PodSandboxStatus]: ...

    # containers
    @abstractmethod
    async def create_container(self, sandbox_id: str, config: ContainerConfig,
                               sandbox_config: PodSandboxConfig) -> str: ...

    @abstractmethod
    async def start_container(self, container_id: str) -> None: ...

    @abstractmethod
    async def stop_container(self, container_id: str, timeout_seconds: float) -> None:
        """Stop signal, then SIGKILL after timeout_seconds (0: at once); idempotent."""

    @abstractmethod
    async def remove_container(self, container_id: str) -> None:
        """Remove a container (killing it if still running); idempotent."""

    @abstractmethod
    async def container_status(self, container_id: str) -> ContainerStatus: ...

    @abstractmethod
    async def list_containers(self, sandbox_id: str | None = None,
                              labels: dict[str, str] | None = None) -> list[ContainerStatus]: ...

    async def wait_container(self, container_id: str) -> ContainerStatus:
        """Until the container has exited; its final status."""
        while True:
            status = await self.container_status(container_id)
            if status.state == CONTAINER_EXITED:
                return status
            await asyncio.sleep(0.1)

    # streaming
    @abstractmethod
    async def exec_sync(self, container_id: str, cmd: list[str],
                        timeout: float | None = None) -> tuple[int, bytes, bytes]:
        """Run cmd; on timeout kill it and raise asyncio.TimeoutError."""

    @abstractmethod
    async def exec(self, container_id: str, cmd: list[str], tty: bool = False,
                   stdin: bool = False) -> ExecSession: ...

    @abstractmethod
    async def attach(self, container_id: str, stdin: bool = False, tty: bool = False) -> AttachSession: ...

    @abstractmethod
    async def open_connection(self, sandbox_id: str, port: int, host: str = "127.0.0.1"
                              ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A TCP connection opened inside the sandbox's network namespace."""

    # stats
    @abstractmethod
    async def container_stats(self, container_id: str) -> ContainerStats: ...

    @abstractmethod
    async def pod_sandbox_stats(self, sandbox_id: str) -> PodSandboxStats: ...

    async def list_container_stats(self) -> list[ContainerStats]:
        out = []
        for c in await self.list_containers():
            if c.state == CONTAINER_RUNNING:
                try:
                    out.append(await self.container_stats(c.id))
                except NotFound:
                    pass
        return out

    async def reopen_container_log(self, container_id: str) -> None:
        """Reopen the log file after the kubelet rotated it (CRI ReopenContainerLog)."""
        raise RuntimeFailure("log reopening is not supported")

    async def update_runtime_config(self, pod_cidr: str) -> None:
        """The node's podCIDR, once the control plane has assigned it (CRI UpdateRuntimeConfig)."""
        return None

    async def close(self) -> None:
        """Release in-process resources; containers keep running."""
        return None
