"""A throwaway "node" for runtime tests: its own network namespace (standing in for the node's
host netns), runtime root, image store and cgroup root, and a cleanup that removes all of it —
containers, conmon monitors, mounts, the netns, cgroups — even after a failed test."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from ketch.agent.runtime.cgroups import CgroupLayout
from ketch.agent.runtime.cni import CNIConfig
from ketch.agent.runtime.runc import RuncRuntime
from ketch.images.store import ImageStore
from helpers.rootfs import busybox_image


@dataclass
class RuntimeNode:
    base: Path
    netns_name: str
    cgroup_top: str
    pod_cidr: str
    image: object
    store: ImageStore
    runtimes: list = field(default_factory=list)

    @property
    def netns(self) -> str:
        return f"/run/netns/{self.netns_name}"

    @property
    def root(self) -> Path:
        return self.base / "runtime"

    def runtime(self, **cni) -> RuncRuntime:
        """A RuntimeService on this node's root (a second call: a restarted agent); `cni`: CNIConfig fields."""
        rt = RuncRuntime(self.root, self.store, CNIConfig(pod_cidr=self.pod_cidr, **cni), host_netns=self.netns,
                         cgroup_root=f"{self.cgroup_top}/kubepods")
        self.runtimes.append(rt)
        return rt

    def in_node(self, *argv: str) -> subprocess.CompletedProcess:
        return subprocess.run(["ip", "netns", "exec", self.netns_name, *argv], capture_output=True, text=True)


def make_node(base: Path, pod_cidr: str = "10.250.0.0/24") -> RuntimeNode:
    tag = secrets.token_hex(4)
    name = f"ktest-rt-{tag}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    subprocess.run(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"], check=True)
    return RuntimeNode(base=base, netns_name=name, cgroup_top=f"ketch-test-{tag}", pod_cidr=pod_cidr,
                       image=busybox_image(base / "busybox"), store=ImageStore(base / "images"))


def destroy_node(node: RuntimeNode) -> None:
    root = node.root
    runc_root = root / "runc"
    # 1. every container runc knows of (pause ones too): kill and delete
    if runc_root.is_dir():
        for cid in os.listdir(runc_root):
            subprocess.run(["runc", "--root", str(runc_root), "delete", "--force", cid],
                           capture_output=True)
    # 2. monitors we started, by the pids they recorded
    for pidfile in root.glob("**/conmon.pid"):
        with contextlib.suppress(ValueError, OSError):
            pid = int(pidfile.read_text())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            if b"conmon" in cmdline and str(root).encode() in cmdline:
                os.kill(pid, signal.SIGKILL)
    # 3. mounts under the test's directory (overlays, shm, netns files), deepest first
    mounts = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    for m in sorted((m for m in mounts if m.startswith(str(node.base))), key=len, reverse=True):
        subprocess.run(["umount", "-l", m], capture_output=True)
    # 4. the node's network namespace (its bridge and veths go with it)
    subprocess.run(["ip", "netns", "del", node.netns_name], capture_output=True)
    # 5. cgroups, leaves first
    layout = CgroupLayout.detect()
    tops = [layout.own[""]] if layout.version == 2 else layout.all_hierarchies
    for top in tops:
        d = top / node.cgroup_top
        if d.is_dir():
            for dirpath, _, _ in sorted(os.walk(d), key=lambda w: -len(w[0])):
                with contextlib.suppress(OSError):
                    os.rmdir(dirpath)


CNI_PLUGINS = ("bridge", "host-local", "loopback", "portmap")


def cni_plugin_dir(path: Path) -> Path:
    """A CNI plugin directory of its own holding links to the plugins ketch uses, for a test to break."""
    path.mkdir()
    for name in CNI_PLUGINS:
        (path / name).symlink_to(f"/usr/lib/cni/{name}")
    return path
