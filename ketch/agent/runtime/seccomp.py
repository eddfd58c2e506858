"""Seccomp filters for containers (a pod's `securityContext.seccompProfile`), as OCI `linux.seccomp`.

- `Unconfined` (the kubelet's default without `--seccomp-default`) and privileged containers: none.
- `RuntimeDefault`: ketch's own profile. containerd and Docker ship an allow list; this is a deny
  list of what those leave out — kernel modules, kexec, reboot, keyrings, bpf, perf, clock setting,
  mounts and new namespaces, ptrace — each allowed again when the container holds the capability
  that makes it legitimate, as theirs are. Refused calls fail with EPERM (clone3 with ENOSYS, so
  libc falls back to clone, whose namespace flags are then checked). A syscall newer than this list
  is allowed, where an allow list would refuse it.
- `Localhost`: a profile file in OCI form (`defaultAction`, `architectures`, `syscalls`), relative
  to the agent's seccomp directory, as the kubelet's `<root-dir>/seccomp`.
"""
from __future__ import annotations

import json
import platform
from pathlib import Path

from .api import RuntimeFailure

RUNTIME_DEFAULT, UNCONFINED, LOCALHOST = "RuntimeDefault", "Unconfined", "Localhost"
EPERM, ENOSYS = 1, 38

# Refused unless the container has the capability (None: always refused).
_DENIED: dict[str | None, tuple[str, ...]] = {
    None: ("add_key", "request_key", "keyctl", "kexec_load", "kexec_file_load", "nfsservctl", "uselib",
           "create_module", "get_kernel_syms", "query_module", "ustat", "sysfs", "_sysctl", "vm86", "vm86old",
           "userfaultfd", "move_pages", "mbind", "get_mempolicy", "set_mempolicy", "set_mempolicy_home_node"),
    "CAP_SYS_ADMIN": ("mount", "umount", "umount2", "pivot_root", "unshare", "setns", "swapon", "swapoff",
                      "quotactl", "quotactl_fd", "lookup_dcookie", "name_to_handle_at", "fsopen", "fsconfig",
                      "fsmount", "fspick", "move_mount", "open_tree", "mount_setattr", "fanotify_init"),
    "CAP_SYS_PTRACE": ("ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "pidfd_getfd"),
    "CAP_SYS_BOOT": ("reboot",),
    "CAP_SYS_MODULE": ("init_module", "finit_module", "delete_module"),
    "CAP_SYS_TIME": ("settimeofday", "stime", "clock_settime", "clock_settime64", "clock_adjtime",
                     "clock_adjtime64"),
    "CAP_SYS_PACCT": ("acct",),
    "CAP_SYS_RAWIO": ("iopl", "ioperm"),
    "CAP_SYSLOG": ("syslog",),
    "CAP_SYS_TTY_CONFIG": ("vhangup",),
    "CAP_DAC_READ_SEARCH": ("open_by_handle_at",),
    "CAP_BPF": ("bpf",),
    "CAP_PERFMON": ("perf_event_open",),
}
# CAP_SYS_ADMIN used to cover these, and still does.
_ALSO_BY_SYS_ADMIN = ("CAP_BPF", "CAP_PERFMON", "CAP_SYSLOG")

_CLONE_NAMESPACE_FLAGS = (0x00000080, 0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000,
                          0x20000000, 0x40000000)  # CLONE_NEWTIME, NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET

_ARCHITECTURES = {
    "x86_64": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
    "aarch64": ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"],
}


def runtime_default(capabilities: list[str]) -> dict:
    held = set(capabilities)
    if "CAP_SYS_ADMIN" in held:
        held.update(_ALSO_BY_SYS_ADMIN)
    denied = sorted(name for cap, names in _DENIED.items() if cap not in held for name in names)
    syscalls: list[dict] = [{"names": denied, "action": "SCMP_ACT_ERRNO", "errnoRet": EPERM}]
    if "CAP_SYS_ADMIN" not in held:
        syscalls.append({"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": ENOSYS})
        # clone's flags are its first argument (x86 and arm; s390 swaps the first two)
        index = 1 if platform.machine().startswith("s390") else 0
        syscalls += [{"names": ["clone"], "action": "SCMP_ACT_ERRNO", "errnoRet": EPERM,
                      "args": [{"index": index, "value": flag, "valueTwo": flag, "op": "SCMP_CMP_MASKED_EQ"}]}
                     for flag in _CLONE_NAMESPACE_FLAGS]
    profile = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": syscalls}
    architectures = _ARCHITECTURES.get(platform.machine())
    if architectures:
        profile["architectures"] = architectures
    return profile


_OCI_KEYS = ("defaultAction", "defaultErrnoRet", "architectures", "flags", "listenerPath", "listenerMetadata",
             "syscalls")


def load_localhost(path: str) -> dict:
    """A Localhost profile; errors read as containerd's (the kubelet shows them as CreateContainerError)."""
    try:
        profile = json.loads(Path(path).read_text())
        if not isinstance(profile, dict) or not isinstance(profile.get("defaultAction"), str):
            raise ValueError("defaultAction is required")
    except OSError as e:
        raise RuntimeFailure(f'failed to generate seccomp spec opts: cannot load seccomp profile "{path}": '
                             f"open {path}: {(e.strerror or str(e)).lower()}") from None
    except ValueError as e:
        raise RuntimeFailure(f'failed to generate seccomp spec opts: decoding seccomp profile failed "{path}": '
                             f"{e}") from None
    return {k: profile[k] for k in _OCI_KEYS if k in profile}


def seccomp_section(profile_type: str, localhost_path: str, capabilities: list[str], privileged: bool) -> dict | None:
    """The container's linux.seccomp, or None for no filter."""
    if privileged or profile_type not in (RUNTIME_DEFAULT, LOCALHOST):
        return None
    if profile_type == LOCALHOST:
        return load_localhost(localhost_path)
    return runtime_default(capabilities)
