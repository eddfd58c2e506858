"""cgroups of pods and containers, v1 or v2 (detected), always relative to the agent's own cgroup.

The layout is the kubelet's with the cgroupfs driver: <root>/pod<uid> for Guaranteed pods,
<root>/burstable/pod<uid> and <root>/besteffort/pod<uid> for the others, one cgroup per
container (named by its id) under its pod's. runc creates the container cgroups from the OCI
spec's relative cgroupsPath; this module creates pod cgroups with their limits, computes the
absolute directories (for stats and OOM counters) and removes what is left.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass, field
from pathlib import Path

CPU_PERIOD_DEFAULT = 100_000
AGENT_LEAF = "ketch-agent"  # v2: where the agent's own processes go when it delegates
BESTEFFORT_SHARES = 2  # the kubelet's MinShares

# v1 hierarchies this module reads or writes; runc handles the others.
_V1_MANAGED = ("cpu", "cpuacct", "memory", "pids")


@dataclass
class Usage:
    cpu_usage_ns: int = 0
    memory_usage: int = 0
    memory_working_set: int = 0
    memory_rss: int = 0
    page_faults: int = 0
    major_page_faults: int = 0
    oom_kills: int = 0


@dataclass
class CgroupLayout:
    version: int  # 1 or 2
    # v1: controller -> the agent's own directory in that hierarchy; v2: {"": own directory}
    own: dict[str, Path] = field(default_factory=dict)
    # every v1 hierarchy's own directory (runc creates container cgroups in all of them)
    all_hierarchies: list[Path] = field(default_factory=list)
    # v2: the agent's cgroup as runc names it (the path in /proc/self/cgroup)
    own_path: str = "/"

    @classmethod
    def detect(cls, proc_self: str = "/proc/self") -> "CgroupLayout":
        mounts = _cgroup_mounts(f"{proc_self}/mountinfo")
        memberships = _memberships(f"{proc_self}/cgroup")
        v2_root = next((m for m in mounts if m[2] == "cgroup2" and m[1] == "/sys/fs/cgroup"), None)
        if v2_root is not None:
            own_path = memberships.get("", "/")
            # runc nests beside a systemd scope, not in it; and the leaf that delegate() moved
            # an earlier agent into is not where pods go
            if own_path.endswith(".scope") or os.path.basename(own_path) == AGENT_LEAF:
                own_path = os.path.dirname(own_path)
            return cls(2, {"": _join(v2_root[1], v2_root[0], own_path)}, [], own_path)
        own: dict[str, Path] = {}
        hierarchies: list[Path] = []
        for root, mountpoint, fstype, options in mounts:
            if fstype == "cgroup2":  # hybrid layout: runc makes its cgroups there too
                if "" in memberships:
                    hierarchies.append(_join(mountpoint, root, memberships[""]))
                continue
            if fstype != "cgroup":
                continue
            controllers = [o for o in options if o in _KNOWN_V1 or o.startswith("name=")]
            key = ",".join(sorted(controllers))
            path = memberships.get(key)
            if path is None:
                continue
            d = _join(mountpoint, root, path)
            hierarchies.append(d)
            for c in controllers:
                own.setdefault(c, d)
        return cls(1, own, hierarchies)

    # --- paths ------------------------------------------------------------------------

    def spec_path(self, relative: str) -> str:
        """cgroupsPath for an OCI spec. v1: relative, which runc nests under its own cgroup in
        each hierarchy. v2: absolute, because runc's own cgroup may be the leaf delegate()
        made, and pods belong beside it."""
        if self.version == 1:
            return relative
        return os.path.join(self.own_path, relative)

    def delegate(self) -> None:
        """v2 only: let cgroups under the agent's own one use cpu, memory and pids.

        cgroup v2 forbids controllers in the children of a cgroup that holds processes, so the
        processes of the agent's cgroup move into a leaf of it first (as k3s evacuates its
        root cgroup)."""
        if self.version != 2:
            return
        own = self.own[""]
        available = set(_read(own / "cgroup.controllers").split())
        wanted = " ".join("+" + c for c in ("cpu", "memory", "pids") if c in available)
        if not wanted:
            return
        try:
            (own / "cgroup.subtree_control").write_text(wanted)
            return
        except OSError as e:
            if e.errno != errno.EBUSY:
                return
        leaf = own / AGENT_LEAF
        leaf.mkdir(exist_ok=True)
        for pid in _read(own / "cgroup.procs").split():
            try:
                (leaf / "cgroup.procs").write_text(pid)
            except OSError:
                pass  # gone meanwhile, or a kernel thread
        try:
            (own / "cgroup.subtree_control").write_text(wanted)
        except OSError:
            pass  # limits will then be refused by runc with its own message

    def dirs(self, relative: str) -> dict[str, Path]:
        """Absolute directories of a relative cgroup, per managed controller."""
        if self.version == 2:
            return {"": self.own[""] / relative}
        return {c: self.own[c] / relative for c in _V1_MANAGED if c in self.own}

    # --- pod cgroups -------------------------------------------------------------------

    def create(self, relative: str, cpu_shares: int = 0, cpu_quota: int = 0, cpu_period: int = 0,
               memory_limit: int = 0) -> None:
        """Make a cgroup (and its parents) with the given limits (0 = leave the default)."""
        for d in self.dirs(relative).values():
            d.mkdir(parents=True, exist_ok=True)
        period = cpu_period or CPU_PERIOD_DEFAULT
        if self.version == 1:
            d = self.dirs(relative)
            if cpu_shares and "cpu" in d:
                _write(d["cpu"] / "cpu.shares", cpu_shares)
            if cpu_quota and "cpu" in d:
                _write(d["cpu"] / "cpu.cfs_period_us", period)
                _write(d["cpu"] / "cpu.cfs_quota_us", cpu_quota)
            if memory_limit and "memory" in d:
                _write(d["memory"] / "memory.limit_in_bytes", memory_limit)
        else:
            d = self.own[""] / relative
            _enable_v2_controllers(self.own[""], relative)
            if cpu_shares:
                _write(d / "cpu.weight", shares_to_weight(cpu_shares))
            if cpu_quota:
                _write(d / "cpu.max", f"{cpu_quota} {period}")
            if memory_limit:
                _write(d / "memory.max", memory_limit)

    def remove(self, relative: str) -> None:
        """Remove a cgroup and what is under it, leaves first; busy or missing ones are left."""
        roots = [self.own[""]] if self.version == 2 else self.all_hierarchies
        for base in roots:
            top = base / relative
            if not top.is_dir():
                continue
            for dirpath, _, _ in sorted(os.walk(top), key=lambda w: -len(w[0])):
                try:
                    os.rmdir(dirpath)
                except OSError as e:
                    if e.errno not in (errno.ENOENT, errno.EBUSY):
                        raise

    # --- reading -----------------------------------------------------------------------

    def usage(self, dirs: dict[str, str]) -> Usage:
        """Usage from absolute directories recorded by dirs() (which survive agent restarts)."""
        u = Usage()
        if self.version == 2:
            d = Path(dirs[""])
            cpu = _kv(d / "cpu.stat")
            u.cpu_usage_ns = cpu.get("usage_usec", 0) * 1000
            u.memory_usage = _int(d / "memory.current")
            mem = _kv(d / "memory.stat")
            u.memory_rss = mem.get("anon", 0)
            u.memory_working_set = max(0, u.memory_usage - mem.get("inactive_file", 0))
            u.page_faults = mem.get("pgfault", 0)
            u.major_page_faults = mem.get("pgmajfault", 0)
            u.oom_kills = _kv(d / "memory.events").get("oom_kill", 0)
            return u
        if "cpuacct" in dirs:
            u.cpu_usage_ns = _int(Path(dirs["cpuacct"]) / "cpuacct.usage")
        if "memory" in dirs:
            d = Path(dirs["memory"])
            u.memory_usage = _int(d / "memory.usage_in_bytes")
            mem = _kv(d / "memory.stat")
            u.memory_rss = mem.get("total_rss", mem.get("rss", 0))
            inactive = mem.get("total_inactive_file", mem.get("inactive_file", 0))
            u.memory_working_set = max(0, u.memory_usage - inactive)
            u.page_faults = mem.get("total_pgfault", 0)
            u.major_page_faults = mem.get("total_pgmajfault", 0)
            u.oom_kills = _kv(d / "memory.oom_control").get("oom_kill", 0)
        return u

    def oom_kills(self, dirs: dict[str, str]) -> int:
        if self.version == 2:
            return _kv(Path(dirs[""]) / "memory.events").get("oom_kill", 0)
        if "memory" not in dirs:
            return 0
        return _kv(Path(dirs["memory"]) / "memory.oom_control").get("oom_kill", 0)

    def memory_limit(self, dirs: dict[str, str]) -> int:
        """The applied memory limit in bytes (0 = unlimited)."""
        if self.version == 2:
            raw = _read(Path(dirs[""]) / "memory.max")
            return 0 if raw in ("", "max") else int(raw)
        v = _int(Path(dirs.get("memory", "/nonexistent")) / "memory.limit_in_bytes")
        return 0 if v >= 1 << 62 else v

    def pids_limit(self, dirs: dict[str, str]) -> int:
        d = dirs.get("") or dirs.get("pids")
        if d is None:
            return 0
        raw = _read(Path(d) / "pids.max")
        return 0 if raw in ("", "max") else int(raw)


_KNOWN_V1 = {"cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "net_cls", "blkio",
             "perf_event", "net_prio", "hugetlb", "pids", "rdma", "misc"}


def shares_to_weight(shares: int) -> int:
    """cgroup v1 cpu.shares to v2 cpu.weight, the conversion runc and the kubelet use."""
    if shares <= 0:
        return 100
    return 1 + ((shares - 2) * 9999) // 262142


def qos_parent(root: str, qos_class: str) -> str:
    q = (qos_class or "Guaranteed").lower()
    return root if q == "guaranteed" else f"{root}/{q}"


def pod_cgroup(root: str, qos_class: str, pod_uid: str) -> str:
    return f"{qos_parent(root, qos_class)}/pod{pod_uid}"


def _join(mountpoint: str, mount_root: str, path: str) -> Path:
    rel = os.path.relpath(path, mount_root) if mount_root != "/" else path.lstrip("/")
    if rel.startswith(".."):  # our cgroup lies outside the mount: use the mount itself
        rel = ""
    return Path(mountpoint) / rel if rel not in ("", ".") else Path(mountpoint)


def _cgroup_mounts(mountinfo: str) -> list[tuple[str, str, str, list[str]]]:
    out = []
    for line in Path(mountinfo).read_text().splitlines():
        pre, _, post = line.partition(" - ")
        fields, post_fields = pre.split(), post.split()
        if not post_fields or post_fields[0] not in ("cgroup", "cgroup2"):
            continue
        options = post_fields[2].split(",") if len(post_fields) > 2 else []
        out.append((fields[3], fields[4], post_fields[0], options))
    return out


def _memberships(path: str) -> dict[str, str]:
    """/proc/self/cgroup as {"cpu,cpuacct": path, ...}; the v2 entry under ""."""
    out = {}
    for line in Path(path).read_text().splitlines():
        _, controllers, cg = line.split(":", 2)
        out[",".join(sorted(controllers.split(","))) if controllers else ""] = cg
    return out


def _enable_v2_controllers(own: Path, relative: str) -> None:
    """Delegate cpu, memory and pids down to the new cgroup (best effort; runc does the rest)."""
    d = own
    for part in Path(relative).parts:
        try:
            available = _read(d / "cgroup.controllers").split()
            wanted = [c for c in ("cpu", "memory", "pids") if c in available]
            if wanted:
                (d / "cgroup.subtree_control").write_text(" ".join("+" + c for c in wanted))
        except OSError:
            pass  # the agent's own cgroup holds processes: v2 forbids delegation there
        d = d / part


def _write(path: Path, value) -> None:
    path.write_text(str(value))


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def _int(path: Path) -> int:
    raw = _read(path)
    try:
        return int(raw)
    except ValueError:
        return 0


def _kv(path: Path) -> dict[str, int]:
    out = {}
    for line in _read(path).splitlines():
        parts = line.split()
        if len(parts) == 2:
            try:
                out[parts[0]] = int(parts[1])
            except ValueError:
                pass
    return out
