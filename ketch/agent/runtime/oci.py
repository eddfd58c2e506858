"""OCI runtime spec (config.json) for pod sandboxes and containers, with containerd's CRI defaults."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from .api import ContainerConfig, RuntimeFailure
from .seccomp import seccomp_section

OCI_VERSION = "1.0.2"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# containerd's default capability set for CRI containers.
DEFAULT_CAPABILITIES = [
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
]

ALL_CAPABILITIES = [
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
    "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK",
    "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG",
    "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
]

DEFAULT_MASKED_PATHS = [
    "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
    "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware",
    "/sys/devices/virtual/powercap", "/proc/scsi",
]
DEFAULT_READONLY_PATHS = [
    "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
]

_PROPAGATION = {"private": "rprivate", "rslave": "rslave", "rshared": "rshared",
                "hosttocontainer": "rslave", "bidirectional": "rshared"}


@dataclass
class SandboxNamespaces:
    """Where a container finds its pod's namespaces (None: the host's, i.e. do not unshare)."""

    network: str | None
    ipc: str | None
    uts: str | None
    host_pid: bool = False
    pid: str | None = None  # the pod's pid namespace to join (shareProcessNamespace); None: its own
    # per-pod files and mounts, shared by all the pod's containers
    shm: str | None = None
    hosts: str | None = None
    resolv_conf: str | None = None
    hostname_file: str | None = None
    hostname: str = ""
    sysctls: dict[str, str] = field(default_factory=dict)


CAP_SYS_RESOURCE_BIT = 24


def _can_lower_oom_score() -> bool:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("CapEff:"):
                return bool(int(line.split()[1], 16) >> CAP_SYS_RESOURCE_BIT & 1)
    except (OSError, ValueError):
        pass
    return False


def _own_oom_score_adj() -> int:
    try:
        return int(Path("/proc/self/oom_score_adj").read_text())
    except (OSError, ValueError):
        return 0


def oom_score_adj(wanted: int) -> int:
    """The kubelet's value where allowed; without CAP_SYS_RESOURCE (as in an unprivileged
    sandbox) a process cannot go below its parent's, so clamp rather than fail."""
    if wanted < _OWN_OOM_SCORE_ADJ and not _CAN_LOWER_OOM:
        return _OWN_OOM_SCORE_ADJ
    return wanted


_CAN_LOWER_OOM = _can_lower_oom_score()
_OWN_OOM_SCORE_ADJ = _own_oom_score_adj()


def process_args(command: list[str], args: list[str], image_config: dict) -> list[str]:
    """The kubelet's rule: command replaces Entrypoint (and drops Cmd), args replace Cmd."""
    if command:
        argv = list(command) + list(args)
    else:
        argv = list(image_config.get("Entrypoint") or []) + list(args or image_config.get("Cmd") or [])
    if not argv:
        raise RuntimeFailure("no command specified")
    return argv


def merge_env(image_env: list[str], envs: list[tuple[str, str]], hostname: str) -> list[str]:
    """Image Env, then the container's (a later value for a name replaces the earlier)."""
    merged: dict[str, str] = {"PATH": DEFAULT_PATH}
    if hostname:
        merged["HOSTNAME"] = hostname
    for entry in image_env or []:
        k, _, v = entry.partition("=")
        merged[k] = v
    for k, v in envs:
        merged[k] = v
    return [f"{k}={v}" for k, v in merged.items()]


def resolve_user(rootfs: Path, image_user: str, run_as_user: int | None, run_as_group: int | None,
                 run_as_username: str, supplemental: list[int]) -> dict:
    """OCI process.user: securityContext wins over the image's User; names via /etc/passwd."""
    user_part, group_part = "", ""
    if run_as_user is not None:
        user_part = str(run_as_user)
    elif run_as_username:
        user_part = run_as_username
    else:
        user_part, _, group_part = (image_user or "").partition(":")
    passwd = _read_db(rootfs / "etc/passwd")
    uid, gid, name = 0, None, None
    if user_part:
        if user_part.isdigit():
            uid = int(user_part)
            for e in passwd:
                if len(e) > 3 and e[2] == user_part:
                    name, gid = e[0], int(e[3])
                    break
        else:
            for e in passwd:
                if len(e) > 3 and e[0] == user_part:
                    name, uid, gid = e[0], int(e[2]), int(e[3])
                    break
            else:
                raise RuntimeFailure(f'unable to find user {user_part}: no matching entries in passwd file')
    elif passwd:
        name = "root"
    if run_as_group is not None:
        gid = run_as_group
    elif group_part:
        if group_part.isdigit():
            gid = int(group_part)
        else:
            g = next((e for e in _read_db(rootfs / "etc/group") if e and e[0] == group_part), None)
            if g is None:
                raise RuntimeFailure(f'unable to find group {group_part}: no matching entries in group file')
            gid = int(g[2])
    if gid is None:
        gid = 0
    extra = list(supplemental)
    if name:  # groups that list the user as a member, as containerd adds them
        for e in _read_db(rootfs / "etc/group"):
            if len(e) > 3 and name in e[3].split(",") and e[2].isdigit():
                extra.append(int(e[2]))
    extra = sorted({g for g in extra if g != gid})
    user = {"uid": uid, "gid": gid}
    if extra:
        user["additionalGids"] = extra
    return user


def _read_db(path: Path) -> list[list[str]]:
    try:
        # the rootfs is the container's: never follow a symlink out of it
        if path.is_symlink():
            return []
        return [line.split(":") for line in path.read_text(errors="replace").splitlines()
                if line and not line.startswith("#")]
    except OSError:
        return []


def _own_capability_mask() -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("CapBnd:"):
                return int(line.split()[1], 16)
    except (OSError, ValueError):
        pass
    return (1 << len(ALL_CAPABILITIES)) - 1


def host_capabilities() -> list[str]:
    """What "all capabilities" means here: those the agent itself holds (as containerd does),
    ALL_CAPABILITIES being in bit order."""
    mask = _own_capability_mask()
    return [c for bit, c in enumerate(ALL_CAPABILITIES) if mask >> bit & 1]


def _cap(name: str) -> str:
    name = name.upper()
    return name if name.startswith("CAP_") else f"CAP_{name}"


def capabilities(add: list[str], drop: list[str], privileged: bool) -> list[str]:
    if privileged:
        return host_capabilities()
    caps = list(DEFAULT_CAPABILITIES)
    if any(_cap(a) == "CAP_ALL" for a in add):
        caps = host_capabilities()
    else:
        for a in add:
            c = _cap(a)
            if c not in caps:
                caps.append(c)
    if any(_cap(d) == "CAP_ALL" for d in drop):
        # drop ALL, then the explicitly added ones come back (kubelet/containerd order)
        caps = [c for c in (_cap(a) for a in add) if c != "CAP_ALL"]
    else:
        dropped = {_cap(d) for d in drop}
        caps = [c for c in caps if c not in dropped]
    return caps


def _base_mounts(ns: SandboxNamespaces, privileged: bool, host_ipc: bool) -> list[dict]:
    ro_sys = [] if privileged else ["ro"]
    mounts = [
        {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
         "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs",
         "options": ["nosuid", "noexec", "nodev"] + ro_sys},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
         "options": ["nosuid", "noexec", "nodev", "relatime"] + (["rw"] if privileged else ["ro"])},
    ]
    if host_ipc:
        mounts.append(_bind("/dev/shm", "/dev/shm", False))
    elif ns.shm:
        mounts.append(_bind("/dev/shm", ns.shm, False))
    else:
        mounts.append({"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
                       "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]})
    return mounts


def _bind(dest: str, src: str, readonly: bool, propagation: str = "private") -> dict:
    opts = ["rbind", _PROPAGATION.get(propagation.lower(), "rprivate")]
    opts.append("ro" if readonly else "rw")
    return {"destination": dest, "type": "bind", "source": src, "options": opts}


def _namespaces(ns: SandboxNamespaces, *, own_ipc_uts: bool) -> list[dict]:
    out = [{"type": "mount"}]
    if not ns.host_pid:
        out.append({"type": "pid", "path": ns.pid} if ns.pid else {"type": "pid"})
    if ns.network is not None:
        out.append({"type": "network", "path": ns.network})
    if own_ipc_uts:
        if ns.ipc is not None:
            out.append({"type": "ipc"})
        if ns.uts is not None:
            out.append({"type": "uts"})
    else:
        if ns.ipc is not None:
            out.append({"type": "ipc", "path": ns.ipc})
        if ns.uts is not None:
            out.append({"type": "uts", "path": ns.uts})
    return out


def _host_devices() -> list[dict]:
    """Every device node of the host, for privileged containers."""
    out = []
    for dirpath, dirnames, filenames in os.walk("/dev"):
        dirnames[:] = [d for d in dirnames if d not in ("pts", "shm", "mqueue", "fd")]
        for f in filenames:
            p = os.path.join(dirpath, f)
            try:
                st = os.lstat(p)
            except OSError:
                continue
            if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                if p in ("/dev/console", "/dev/ptmx", "/dev/tty"):
                    continue
                out.append({"path": p, "type": "c" if stat.S_ISCHR(st.st_mode) else "b",
                            "major": os.major(st.st_rdev), "minor": os.minor(st.st_rdev),
                            "fileMode": stat.S_IMODE(st.st_mode), "uid": st.st_uid, "gid": st.st_gid})
    return out


def _resources(cpu_shares: int, cpu_quota: int, cpu_period: int, memory: int, pids: int,
               privileged: bool) -> dict:
    res: dict = {"devices": [{"allow": privileged, "access": "rwm"}]}
    cpu = {}
    if cpu_shares:
        cpu["shares"] = cpu_shares
    if cpu_quota:
        cpu["quota"] = cpu_quota
        cpu["period"] = cpu_period or 100_000
    if cpu:
        res["cpu"] = cpu
    if memory:
        res["memory"] = {"limit": memory}
    if pids:
        res["pids"] = {"limit": pids}
    return res


def container_spec(config: ContainerConfig, image_config: dict, rootfs: Path, ns: SandboxNamespaces,
                   cgroups_path: str, host_ipc: bool, stop_signal: str) -> dict:
    lx = config.linux
    argv = process_args(config.command, config.args, image_config)
    user = resolve_user(rootfs, image_config.get("User", ""), lx.run_as_user, lx.run_as_group,
                        lx.run_as_username, lx.supplemental_groups)
    caps = capabilities(lx.capabilities_add, lx.capabilities_drop, lx.privileged)
    # Non-root processes get no effective capabilities (they keep the bounding set).
    effective = caps if user["uid"] == 0 or lx.privileged else []
    process = {
        "terminal": config.tty,
        "user": user,
        "args": argv,
        "env": merge_env(image_config.get("Env") or [], config.envs, ns.hostname),
        "cwd": config.working_dir or image_config.get("WorkingDir") or "/",
        "capabilities": {"bounding": caps, "effective": effective, "permitted": effective},
        "noNewPrivileges": lx.no_new_privs,
        "oomScoreAdj": oom_score_adj(lx.oom_score_adj),
    }
    if lx.rlimits:
        process["rlimits"] = [{"type": t, "soft": s, "hard": h} for t, s, h in lx.rlimits]

    mounts = _base_mounts(ns, lx.privileged, host_ipc)
    own_targets = {os.path.normpath(m.container_path) for m in config.mounts}
    for dest, src in (("/etc/hosts", ns.hosts), ("/etc/resolv.conf", ns.resolv_conf),
                      ("/etc/hostname", ns.hostname_file)):
        if src and dest not in own_targets:
            mounts.append(_bind(dest, src, False))
    # Longer paths after shorter, so /a/b lands on top of /a (as the kubelet orders them).
    for m in sorted(config.mounts, key=lambda m: len(os.path.normpath(m.container_path).split("/"))):
        if not os.path.exists(m.host_path):
            os.makedirs(m.host_path, exist_ok=True)  # as containerd does for a missing source
        mounts.append(_bind(m.container_path, m.host_path, m.readonly, m.propagation))

    linux: dict = {
        "namespaces": _namespaces(ns, own_ipc_uts=False),
        "cgroupsPath": cgroups_path,
        "resources": _resources(lx.cpu_shares, lx.cpu_quota, lx.cpu_period, lx.memory_limit_bytes,
                                lx.pids_limit, lx.privileged),
    }
    if any(m.propagation.lower() in ("rshared", "bidirectional") for m in config.mounts):
        linux["rootfsPropagation"] = "rshared"
    elif any(m.propagation.lower() in ("rslave", "hosttocontainer") for m in config.mounts):
        linux["rootfsPropagation"] = "rslave"
    seccomp = seccomp_section(lx.seccomp, lx.seccomp_localhost, caps, lx.privileged)
    if seccomp is not None:
        linux["seccomp"] = seccomp
    if lx.privileged:
        linux["devices"] = _host_devices()
    else:
        linux["maskedPaths"] = DEFAULT_MASKED_PATHS if lx.masked_paths is None else lx.masked_paths
        linux["readonlyPaths"] = DEFAULT_READONLY_PATHS if lx.readonly_paths is None else lx.readonly_paths
    annotations = dict(config.annotations)
    if stop_signal:
        annotations["org.opencontainers.image.stopSignal"] = stop_signal
    return {
        "ociVersion": OCI_VERSION,
        "process": process,
        "root": {"path": str(rootfs), "readonly": lx.readonly_rootfs},
        "mounts": mounts,
        "annotations": annotations,
        "linux": linux,
    }


PAUSE_SCRIPT = "trap 'exit 0' TERM INT; while :; do sleep 2147483647 & wait $!; done"


def pause_spec(rootfs: Path, ns: SandboxNamespaces, cgroups_path: str, host_ipc: bool) -> dict:
    """The sandbox's holder process: owns the pod's IPC and UTS namespaces, exits on SIGTERM."""
    linux: dict = {
        "namespaces": _namespaces(ns, own_ipc_uts=True),
        "cgroupsPath": cgroups_path,
        "resources": _resources(BESTEFFORT_PAUSE_SHARES, 0, 0, 0, 0, False),
        "maskedPaths": DEFAULT_MASKED_PATHS,
        "readonlyPaths": DEFAULT_READONLY_PATHS,
    }
    if ns.sysctls:
        linux["sysctl"] = dict(ns.sysctls)
    spec = {
        "ociVersion": OCI_VERSION,
        "process": {
            "terminal": False,
            "user": {"uid": 0, "gid": 0},
            "args": ["/bin/sh", "-c", PAUSE_SCRIPT],
            "env": [f"PATH={DEFAULT_PATH}"],
            "cwd": "/",
            "capabilities": {"bounding": [], "effective": [], "permitted": []},
            "noNewPrivileges": True,
            "oomScoreAdj": oom_score_adj(-998),  # the kubelet's value for pause containers
        },
        "root": {"path": str(rootfs), "readonly": True},
        "mounts": [m for m in _base_mounts(ns, False, host_ipc) if m["destination"] != "/dev/shm"],
        "linux": linux,
    }
    if ns.uts is not None and ns.hostname:
        spec["hostname"] = ns.hostname
    return spec


BESTEFFORT_PAUSE_SHARES = 2
