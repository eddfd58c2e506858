"""The kubelet's stats documents: /metrics/resource (Prometheus text, what metrics-server and
the API server's metrics.k8s.io scraper read) and /stats/summary (the Summary API,
stats/v1alpha1), shared by the real agent and the simulated nodes.

`render()` writes /metrics/resource from per-pod usage; `SummaryBuilder` makes the Summary
document from runtime stats (cumulative CPU nanoseconds, memory, network of each sandbox) and
the node's own counters, turning cumulative CPU into usageNanoCores between two reads; and
`render_summary()` derives /metrics/resource from a Summary, so both documents agree.
"""
from __future__ import annotations

import datetime
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HELP = {
    "container_cpu_usage_seconds_total": ("counter", "Cumulative cpu time consumed by the container in core-seconds"),
    "container_memory_working_set_bytes": ("gauge", "Current working set of the container in bytes"),
    "container_start_time_seconds": ("gauge", "Start time of the container since unix epoch in seconds"),
    "node_cpu_usage_seconds_total": ("counter", "Cumulative cpu time consumed by the node in core-seconds"),
    "node_memory_working_set_bytes": ("gauge", "Current working set of the node in bytes"),
    "pod_cpu_usage_seconds_total": ("counter", "Cumulative cpu time consumed by the pod in core-seconds"),
    "pod_memory_working_set_bytes": ("gauge", "Current working set of the pod in bytes"),
    "resource_scrape_error": ("gauge", "1 if there was an error while getting container metrics, 0 otherwise"),
}


def go_float(v: float) -> str:
    """strconv.FormatFloat(v, 'g', -1, 64), as Prometheus' text encoder writes sample values:
    the shortest digits that round-trip, in exponent form below 1e-4 and from 1e6."""
    if v == 0:
        return "0"
    text = repr(float(v))
    sign = "-" if text[0] == "-" else ""
    mantissa, _, exp = text.lstrip("-").partition("e")
    whole, _, frac = mantissa.partition(".")
    digits = (whole + frac).lstrip("0").rstrip("0") or "0"
    point = len(whole) if whole != "0" else -(len(frac) - len(frac.lstrip("0")))
    exp10 = point - 1 + (int(exp) if exp else 0)
    if exp10 < -4 or exp10 >= 6:
        lead = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{sign}{lead}e{'-' if exp10 < 0 else '+'}{abs(exp10):02d}"
    if exp10 < 0:
        return f"{sign}0.{'0' * (-exp10 - 1)}{digits}"
    if len(digits) <= exp10 + 1:
        return sign + digits + "0" * (exp10 + 1 - len(digits))
    return f"{sign}{digits[:exp10 + 1]}.{digits[exp10 + 1:]}"


def escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


# ---- /metrics/resource ------------------------------------------------------------------------

@dataclass
class ContainerUsage:
    name: str
    cpu_seconds: float      # cumulative core-seconds
    memory_bytes: int       # working set
    start_time: float       # unix seconds


@dataclass
class PodUsage:
    namespace: str
    name: str
    cpu_seconds: float
    memory_bytes: int
    containers: list[ContainerUsage] = field(default_factory=list)


def render(pods: list[PodUsage], node_cpu_seconds: float, node_memory_bytes: int, now: float,
           scrape_error: bool = False) -> str:
    """The /metrics/resource text, samples stamped at `now` (unix seconds, millisecond precision)."""
    ts = str(round(now * 1000))
    samples: dict[str, list[str]] = {name: [] for name in HELP}
    for p in sorted(pods, key=lambda p: (p.namespace, p.name)):
        pod_labels = f'namespace="{escape(p.namespace)}",pod="{escape(p.name)}"'
        for c in sorted(p.containers, key=lambda c: c.name):
            labels = f'{{container="{escape(c.name)}",{pod_labels}}}'
            samples["container_cpu_usage_seconds_total"].append(f"{labels} {go_float(c.cpu_seconds)} {ts}")
            samples["container_memory_working_set_bytes"].append(f"{labels} {go_float(c.memory_bytes)} {ts}")
            samples["container_start_time_seconds"].append(
                f"{labels} {go_float(c.start_time)} {int(c.start_time * 1000)}")
        samples["pod_cpu_usage_seconds_total"].append(f"{{{pod_labels}}} {go_float(p.cpu_seconds)} {ts}")
        samples["pod_memory_working_set_bytes"].append(f"{{{pod_labels}}} {go_float(p.memory_bytes)} {ts}")
    samples["node_cpu_usage_seconds_total"].append(f" {go_float(node_cpu_seconds)} {ts}")
    samples["node_memory_working_set_bytes"].append(f" {go_float(node_memory_bytes)} {ts}")
    samples["resource_scrape_error"].append(f" {1 if scrape_error else 0}")
    out = []
    for name, (kind, text) in HELP.items():
        lines = samples[name]
        if lines:
            out.append(f"# HELP {name} [STABLE] {text}\n# TYPE {name} {kind}\n")
            out.extend(f"{name}{line}\n" for line in lines)
    return "".join(out)


def _parse_time(text: str) -> float:
    try:
        return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except (ValueError, AttributeError):
        return 0.0


def render_summary(summary: dict, now: float | None = None) -> str:
    """/metrics/resource from a Summary document."""
    pods = []
    for p in summary.get("pods", []):
        containers = [ContainerUsage(c["name"], c.get("cpu", {}).get("usageCoreNanoSeconds", 0) / 1e9,
                                     c.get("memory", {}).get("workingSetBytes", 0), _parse_time(c.get("startTime", "")))
                      for c in p.get("containers", [])]
        ref = p["podRef"]
        pods.append(PodUsage(ref["namespace"], ref["name"], p.get("cpu", {}).get("usageCoreNanoSeconds", 0) / 1e9,
                             p.get("memory", {}).get("workingSetBytes", 0), containers))
    node = summary.get("node", {})
    return render(pods, node.get("cpu", {}).get("usageCoreNanoSeconds", 0) / 1e9,
                  node.get("memory", {}).get("workingSetBytes", 0), time.time() if now is None else now)


# ---- /stats/summary ---------------------------------------------------------------------------

def rfc3339(ts_ns: int) -> str:
    return datetime.datetime.fromtimestamp(ts_ns / 1e9, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class NodeStats:
    timestamp: int                   # ns since the epoch
    cpu_usage_core_nanoseconds: int
    memory_usage_bytes: int
    memory_working_set_bytes: int
    memory_rss_bytes: int
    memory_available_bytes: int
    memory_page_faults: int = 0
    memory_major_page_faults: int = 0
    fs_capacity_bytes: int = 0
    fs_available_bytes: int = 0
    fs_inodes: int = 0
    fs_inodes_free: int = 0


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def node_stats(fs_path: str | Path = "/") -> NodeStats:
    """The machine's counters: CPU from the root cpuacct cgroup (or /proc/stat), memory from
    /proc/meminfo (working set = used - inactive file pages, as cAdvisor), fs of `fs_path`."""
    now = time.time_ns()
    cpu = _read("/sys/fs/cgroup/cpu,cpuacct/cpuacct.usage").strip() or _read("/sys/fs/cgroup/cpuacct/cpuacct.usage").strip()
    if cpu.isdigit():
        cpu_ns = int(cpu)
    else:
        fields = (_read("/proc/stat").splitlines() or ["cpu 0 0 0 0"])[0].split()[1:]
        ticks = [int(x) for x in fields]
        busy = sum(ticks) - ticks[3] - (ticks[4] if len(ticks) > 4 else 0)
        cpu_ns = busy * (1_000_000_000 // os.sysconf("SC_CLK_TCK"))
    mem = {}
    for line in _read("/proc/meminfo").splitlines():
        k, _, v = line.partition(":")
        mem[k] = int(v.split()[0]) * 1024 if v.split() else 0
    total = mem.get("MemTotal", 0)
    used = total - mem.get("MemFree", 0)
    working = max(used - mem.get("Inactive(file)", 0), 0)
    vm = {}
    for line in _read("/proc/vmstat").splitlines():
        k, _, v = line.partition(" ")
        vm[k] = int(v) if v.strip().isdigit() else 0
    st = os.statvfs(fs_path)
    return NodeStats(now, cpu_ns, used, working, mem.get("AnonPages", 0), max(total - working, 0),
                     vm.get("pgfault", 0), vm.get("pgmajfault", 0), st.f_blocks * st.f_frsize,
                     st.f_bavail * st.f_frsize, st.f_files, st.f_ffree)


@dataclass
class ContainerEntry:
    name: str
    start_time_ns: int
    stats: object | None            # runtime ContainerStats
    log_bytes: int = 0


@dataclass
class PodEntry:
    name: str
    namespace: str
    uid: str
    start_time_ns: int
    stats: object | None            # runtime PodSandboxStats
    containers: list[ContainerEntry] = field(default_factory=list)
    volumes: list[dict] = field(default_factory=list)   # {"name", "usedBytes", ...} as the Summary has them


class SummaryBuilder:
    """Summary documents over time: keeps the last cumulative CPU of each thing to give rates."""

    def __init__(self) -> None:
        self._last: dict[str, tuple[int, int]] = {}

    def _nanocores(self, key: str, cumulative: int, ts: int) -> int | None:
        prev = self._last.get(key)
        self._last[key] = (cumulative, ts)
        if prev is None or ts <= prev[1] or cumulative < prev[0]:
            return None
        return round((cumulative - prev[0]) * 1e9 / (ts - prev[1]))

    def _cpu(self, key: str, cumulative: int, ts: int) -> dict:
        cpu = {"time": rfc3339(ts), "usageCoreNanoSeconds": cumulative}
        rate = self._nanocores(key, cumulative, ts)
        if rate is not None:
            cpu["usageNanoCores"] = rate
        return cpu

    @staticmethod
    def _memory(s, ts: int, available: int | None = None) -> dict:
        m = {"time": rfc3339(ts)}
        if available is not None:
            m["availableBytes"] = available
        m.update({"usageBytes": s.memory_usage_bytes, "workingSetBytes": s.memory_working_set_bytes,
                  "rssBytes": s.memory_rss_bytes, "pageFaults": s.memory_page_faults,
                  "majorPageFaults": s.memory_major_page_faults})
        return m

    def build(self, node_name: str, node_start_ns: int, node: NodeStats, pods: list[PodEntry]) -> dict:
        ts = node.timestamp
        fs = {"time": rfc3339(ts), "availableBytes": node.fs_available_bytes, "capacityBytes": node.fs_capacity_bytes,
              "usedBytes": max(node.fs_capacity_bytes - node.fs_available_bytes, 0), "inodesFree": node.fs_inodes_free,
              "inodes": node.fs_inodes, "inodesUsed": max(node.fs_inodes - node.fs_inodes_free, 0)}
        doc_node = {"nodeName": node_name, "startTime": rfc3339(node_start_ns),
                    "cpu": self._cpu("node", node.cpu_usage_core_nanoseconds, ts),
                    "memory": self._memory(node, ts, node.memory_available_bytes),
                    "fs": fs, "runtime": {"imageFs": dict(fs)}}
        out_pods = []
        seen = {"node"}
        for p in pods:
            key = f"pod/{p.uid}"
            entry: dict = {"podRef": {"name": p.name, "namespace": p.namespace, "uid": p.uid},
                           "startTime": rfc3339(p.start_time_ns), "containers": []}
            writable = 0
            for c in p.containers:
                ce: dict = {"name": c.name, "startTime": rfc3339(c.start_time_ns)}
                s = c.stats
                if s is not None:
                    ckey = f"{key}/{c.name}"
                    seen.add(ckey)
                    ce["cpu"] = self._cpu(ckey, s.cpu_usage_core_nanoseconds, s.timestamp)
                    ce["memory"] = self._memory(s, s.timestamp)
                    ce["rootfs"] = {"time": rfc3339(s.timestamp), "usedBytes": s.writable_layer_bytes}
                    writable += s.writable_layer_bytes
                ce["logs"] = {"time": rfc3339(ts), "usedBytes": c.log_bytes}
                entry["containers"].append(ce)
            s = p.stats
            if s is not None:
                seen.add(key)
                entry["cpu"] = self._cpu(key, s.cpu_usage_core_nanoseconds, s.timestamp)
                entry["memory"] = self._memory(s, s.timestamp)
                iface = {"name": "eth0", "rxBytes": s.network_rx_bytes, "rxErrors": s.network_rx_errors,
                         "txBytes": s.network_tx_bytes, "txErrors": s.network_tx_errors}
                entry["network"] = {"time": rfc3339(s.timestamp), **iface, "interfaces": [iface]}
            if p.volumes:
                entry["volume"] = [{"time": rfc3339(ts), **v} for v in p.volumes]
            logs = sum(c.log_bytes for c in p.containers)
            volumes = sum(v.get("usedBytes", 0) for v in p.volumes)
            entry["ephemeral-storage"] = {"time": rfc3339(ts), "usedBytes": writable + logs + volumes}
            out_pods.append(entry)
        for gone in [k for k in self._last if k not in seen]:
            del self._last[gone]
        return {"node": doc_node, "pods": out_pods}


async def summary_from_runtime(builder: SummaryBuilder, runtime: Any, node_name: str, node_start_ns: int,
                               fs_path: str | Path = "/", volumes: dict[str, list[dict]] | None = None) -> dict:
    """The Summary of every ready sandbox the runtime has, from its stats (pod identity from
    the sandbox's name/namespace/uid, container names, start times and log sizes from the
    container statuses). `volumes`: pod uid → the Summary's volume entries, when known."""
    from .runtime import api as rt
    pods = []
    for sb in await runtime.list_pod_sandboxes():
        if sb.state != rt.SANDBOX_READY:
            continue
        try:
            stats = await runtime.pod_sandbox_stats(sb.id)
        except rt.RuntimeError_:
            stats = None
        by_id = {c.id: c for c in (stats.containers if stats is not None else [])}
        entries = []
        for c in await runtime.list_containers(sandbox_id=sb.id):
            if c.state != rt.CONTAINER_RUNNING:
                continue
            try:
                log_bytes = os.path.getsize(c.log_path) if c.log_path else 0
            except OSError:
                log_bytes = 0
            entries.append(ContainerEntry(c.name, c.started_at or c.created_at, by_id.get(c.id), log_bytes))
        pods.append(PodEntry(sb.name, sb.namespace, sb.uid, sb.created_at, stats, entries,
                             (volumes or {}).get(sb.uid, [])))
    return builder.build(node_name, node_start_ns, node_stats(fs_path), pods)
