"""Simulated resource usage (`ketch simulate --metrics`), for a metrics.k8s.io server to report.

While a pod runs on a simulated node, `UsageBook.pods[(namespace, name)]` holds a `PodUsage`: the
node, when the numbers started, and per container (cpu in nanocores, memory in bytes). The pod's
`ketch.io/simulate-cpu` / `ketch.io/simulate-memory` annotations (quantities, for the whole pod)
are split evenly over its containers; without them each container uses the simulator's defaults.
`node_usage(node)` sums a node's pods. Reading is cheap and never blocks: plain dicts.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

from ..api.quantity import parse_quantity
from .pods import CPU, MEMORY


def nanocores(text: str) -> int:
    return parse_quantity(text).scaled_value(-9)


def bytes_of(text: str) -> int:
    return parse_quantity(text).scaled_value(0)


@dataclass
class PodUsage:
    namespace: str
    name: str
    node: str
    since: float                                   # time.time() when the pod started running
    containers: dict[str, tuple[int, int]]         # container -> (nanocores, bytes)

    @property
    def cpu(self) -> int:
        return sum(c for c, _ in self.containers.values())

    @property
    def memory(self) -> int:
        return sum(m for _, m in self.containers.values())


class UsageBook:
    def __init__(self, default_cpu: str = "1m", default_memory: str = "8Mi"):
        self.default_cpu = nanocores(default_cpu)
        self.default_memory = bytes_of(default_memory)
        self.pods: dict[tuple[str, str], PodUsage] = {}

    def record(self, pod: dict) -> None:
        """Start (or refresh) the usage of a running pod (a trimmed pod, see pods.trim)."""
        meta = pod["metadata"]
        ann = meta.get("annotations") or {}
        names = [c for c, _ in pod["spec"]["containers"]] or ["main"]
        try:
            cpu = nanocores(ann[CPU]) // len(names) if CPU in ann else self.default_cpu
            memory = bytes_of(ann[MEMORY]) // len(names) if MEMORY in ann else self.default_memory
        except ValueError:
            cpu, memory = self.default_cpu, self.default_memory
        key = (meta["namespace"], meta["name"])
        old = self.pods.get(key)
        self.pods[key] = PodUsage(meta["namespace"], meta["name"], pod["spec"]["nodeName"],
                                  old.since if old else time.time(), {n: (cpu, memory) for n in names})

    def forget(self, namespace: str, name: str) -> None:
        self.pods.pop((namespace, name), None)

    def node_usage(self, node: str) -> tuple[int, int]:
        """(nanocores, bytes) used by the pods running on `node`."""
        cpu = memory = 0
        for u in self.pods.values():
            if u.node == node:
                cpu += u.cpu
                memory += u.memory
        return cpu, memory
