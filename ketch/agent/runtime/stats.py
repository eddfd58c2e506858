"""Stats of containers and pods: cgroup usage, the writable layer, and the pod's eth0 counters."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from .api import ContainerStats, PodSandboxStats
from .cgroups import Usage


def _usage_fields(u: Usage) -> dict:
    return {"cpu_usage_core_nanoseconds": u.cpu_usage_ns, "memory_working_set_bytes": u.memory_working_set,
            "memory_usage_bytes": u.memory_usage, "memory_rss_bytes": u.memory_rss,
            "memory_page_faults": u.page_faults, "memory_major_page_faults": u.major_page_faults}


def container_stats(container_id: str, timestamp: int, u: Usage, upper_dir: Path) -> ContainerStats:
    return ContainerStats(id=container_id, timestamp=timestamp, writable_layer_bytes=disk_usage(upper_dir),
                          **_usage_fields(u))


def pod_stats(sandbox_id: str, timestamp: int, u: Usage,
              eth0: tuple[int, int, int, int] | None) -> PodSandboxStats:
    stats = PodSandboxStats(id=sandbox_id, timestamp=timestamp, **_usage_fields(u))
    if eth0:
        (stats.network_rx_bytes, stats.network_rx_errors,
         stats.network_tx_bytes, stats.network_tx_errors) = eth0
    return stats


def net_dev() -> dict[str, tuple[int, int, int, int]]:
    """(rx bytes, rx errors, tx bytes, tx errors) per interface of the calling thread's network
    namespace: call it from a thread that entered the pod's (no process of the pod need run)."""
    out = {}
    for line in Path("/proc/thread-self/net/dev").read_text().splitlines()[2:]:
        name, _, rest = line.partition(":")
        f = rest.split()
        if len(f) >= 16:
            out[name.strip()] = (int(f[0]), int(f[2]), int(f[8]), int(f[10]))
    return out


def disk_usage(path: Path) -> int:
    """Bytes allocated under path (what `du` counts)."""
    total = 0
    for dirpath, _, filenames in os.walk(path):
        for f in filenames:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, f)).st_blocks * 512
    return total
