"""Node-pressure eviction, as the kubelet's eviction manager: hard thresholds on the node's
signals, the node conditions they raise, pod admission under pressure, and evicting one pod per
round until the signal recovers.

Signals: memory.available (MemAvailable of /proc/meminfo), nodefs.available (the filesystem of the
agent's data dir: pod volumes, logs, container layers), pid.available. Thresholds come from
`--eviction-hard` in the kubelet's syntax (`memory.available<100Mi,nodefs.available<10%`). Under
disk pressure unused images are garbage-collected first; then pods are ranked as upstream:
pods using more than they request first, then lower priority, then larger usage.
"""
from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..api.quantity import parse_quantity
from . import node as nodeinfo

MEMORY, NODEFS, PIDS = "memory.available", "nodefs.available", "pid.available"
DEFAULT_HARD = "memory.available<100Mi,nodefs.available<10%"
CONDITION = {MEMORY: "MemoryPressure", NODEFS: "DiskPressure", PIDS: "PIDPressure"}
RESOURCE = {MEMORY: "memory", NODEFS: "ephemeral-storage", PIDS: "pids"}
NODE_LOW = "The node was low on resource: {resource}. Threshold quantity: {threshold}, available: {available}. "
CONTAINER_USAGE = "Container {name} was using {usage}, request is {request}, has larger consumption of {resource}. "
ADMIT_REJECT = "The node had condition: [{conditions}]. "


class EvictionConfigError(ValueError):
    pass


@dataclass
class Threshold:
    signal: str
    quantity: int | None = None      # bytes (or pids)
    percentage: float | None = None  # of capacity

    def value(self, capacity: int) -> int:
        return self.quantity if self.quantity is not None else int(capacity * (self.percentage or 0))

    def text(self, capacity: int) -> str:
        return _quantity(self.value(capacity)) if self.signal != PIDS else str(self.value(capacity))


def parse_thresholds(text: str) -> list[Threshold]:
    """`memory.available<100Mi,nodefs.available<10%` (the kubelet's --eviction-hard)."""
    out = []
    for item in (t.strip() for t in text.split(",") if t.strip()):
        signal, sep, value = item.partition("<")
        if not sep or signal not in CONDITION:
            raise EvictionConfigError(f"invalid eviction threshold {item!r}: want SIGNAL<QUANTITY with SIGNAL one of "
                                      f"{', '.join(CONDITION)}")
        if value.endswith("%"):
            out.append(Threshold(signal, percentage=float(value[:-1]) / 100))
        else:
            try:
                out.append(Threshold(signal, quantity=parse_quantity(value).scaled_value(0)))
            except ValueError as e:
                raise EvictionConfigError(f"invalid eviction threshold {item!r}: {e}") from None
    return out


def _quantity(n: int) -> str:
    """Bytes the way the kubelet prints them in eviction messages: binary SI, whole units."""
    for unit, size in (("Gi", 1024**3), ("Mi", 1024**2), ("Ki", 1024)):
        if n >= size and n % size == 0:
            return f"{n // size}{unit}"
    return f"{n // 1024}Ki" if n >= 1024 else str(n)


@dataclass
class Observation:
    available: int
    capacity: int


def observe(data_dir: Path) -> dict[str, Observation]:
    mem = nodeinfo.meminfo()
    disk = shutil.disk_usage(data_dir)
    pid_max = int(Path("/proc/sys/kernel/pid_max").read_text().strip() or 32768)
    running = sum(1 for p in os.listdir("/proc") if p.isdigit())
    return {MEMORY: Observation(mem.get("MemAvailable", 0), mem.get("MemTotal", 0)),
            NODEFS: Observation(disk.free, disk.total),
            PIDS: Observation(pid_max - running, pid_max)}


@dataclass
class PodUsage:
    """One pod's use of the signal's resource, and its request."""
    pod: dict
    usage: int
    request: int
    containers: list[tuple[str, int, int]] = field(default_factory=list)   # (name, usage, request)


def rank(pods: list[PodUsage]) -> list[PodUsage]:
    """Eviction order: usage above requests first, then lower priority, then more usage above request."""
    def key(p: PodUsage):
        exceeds = p.usage > p.request
        priority = p.pod["spec"].get("priority") or 0
        return (not exceeds, priority, -(p.usage - p.request))
    return sorted(pods, key=key)


def eviction_message(signal: str, threshold: Threshold, obs: Observation, victim: PodUsage) -> str:
    resource = RESOURCE[signal]
    message = NODE_LOW.format(resource=resource, threshold=threshold.text(obs.capacity),
                              available=_quantity(max(obs.available, 0)) if signal != PIDS else obs.available)
    for name, usage, request in victim.containers:
        if usage > request:
            message += CONTAINER_USAGE.format(name=name, usage=_quantity(usage), request=_quantity(request) if request
                                              else "0", resource=resource)
    return message


class EvictionManager:
    def __init__(self, data_dir: Path, thresholds: list[Threshold], transition_period: float = 300.0):
        self.data_dir = data_dir
        self.thresholds = thresholds
        self.transition_period = transition_period
        self._met_at: dict[str, float] = {}     # condition -> last time its threshold was met
        self.observations: dict[str, Observation] = {}

    def met(self) -> list[tuple[Threshold, Observation]]:
        """The thresholds the node is past now."""
        self.observations = observe(self.data_dir)
        out = []
        for t in self.thresholds:
            obs = self.observations[t.signal]
            if obs.available < t.value(obs.capacity):
                out.append((t, obs))
                self._met_at[CONDITION[t.signal]] = time.monotonic()
        return out

    def conditions(self) -> dict[str, bool]:
        """Pressure conditions: true while met, and for the transition period after (no flapping)."""
        now = time.monotonic()
        return {c: now - self._met_at.get(c, -1e18) < max(self.transition_period, 0.001) for c in CONDITION.values()}

    def admit(self, pod: dict) -> str | None:
        """Why a new pod may not start here now, or None (upstream's eviction admission)."""
        pressure = [c for c, on in self.conditions().items() if on]
        if not pressure:
            return None
        if pressure == ["MemoryPressure"] and (pod.get("status") or {}).get("qosClass") != "BestEffort":
            return None
        return ADMIT_REJECT.format(conditions=", ".join(pressure))


def pod_disk_usage(pod_dir: Path) -> int:
    """Bytes a pod's own directory (its emptyDir volumes) occupies on the node's filesystem."""
    total = 0
    dev = None
    for dirpath, dirs, files in os.walk(pod_dir):
        try:
            st = os.lstat(dirpath)
        except OSError:
            continue
        if dev is None:
            dev = st.st_dev
        elif st.st_dev != dev:   # a tmpfs volume is memory, not disk
            dirs[:] = []
            continue
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
            except OSError:
                pass
    return total
