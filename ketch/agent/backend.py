"""What the kubelet API server (server.py) asks of the kubelet: which runtime container a
pod/container name means, the pods of the node, and the stats documents."""
from __future__ import annotations

import time
from typing import TYPE_CHECKING

from . import containers as cc
from . import resource_metrics
from .server import ContainerRef, KubeletError

if TYPE_CHECKING:
    from .kubelet import Kubelet


class KubeletBackend:
    def __init__(self, kubelet: "Kubelet"):
        self.k = kubelet
        self.runtime = kubelet.runtime
        self._stats = resource_metrics.SummaryBuilder()   # keeps the last CPU counters, for rates

    def pods(self) -> list[dict]:
        return self.k.pods.list()

    async def resolve(self, namespace: str, pod: str, container: str, previous: bool = False) -> ContainerRef:
        obj = self.k.pod(f"{namespace}/{pod}")
        if obj is None:
            raise KubeletError(404, "pod does not exist")
        uid = obj["metadata"]["uid"]
        sandboxes = sorted(await self.runtime.list_pod_sandboxes(labels={cc.POD_UID: uid}),
                           key=lambda s: s.created_at, reverse=True)
        if not container:
            if not sandboxes:
                raise KubeletError(404, f'pod "{pod}" has no sandbox')
            return ContainerRef(container_id="", sandbox_id=sandboxes[0].id)
        spec = next((c for c in (obj["spec"].get("initContainers") or []) + obj["spec"]["containers"]
                     if c["name"] == container), None)
        if spec is None:
            raise KubeletError(404, f'container not found ("{container}")')
        attempts = cc.newest_first(await self.runtime.list_containers(labels={cc.POD_UID: uid,
                                                                              cc.CONTAINER_NAME: container}))
        if previous:   # the attempt before the newest one
            attempts = attempts[1:]
        if not attempts:
            if previous:
                raise KubeletError(400, f'previous terminated container "{container}" in pod "{pod}" not found')
            raise KubeletError(400, f'container "{container}" in pod "{pod}" is waiting to start: ContainerCreating')
        cs = attempts[0]
        return ContainerRef(container_id=cs.id, sandbox_id=cs.sandbox_id, log_path=cs.log_path,
                            tty=bool(spec.get("tty")), stdin=bool(spec.get("stdin")))

    async def summary(self) -> dict:
        """The Summary API document, from the runtime's cgroup stats and the node's counters."""
        return await resource_metrics.summary_from_runtime(self._stats, self.runtime, self.k.node_name, _boot_ns(),
                                                           fs_path=self.k.config.data_dir)

    async def resource_metrics(self) -> str:
        return resource_metrics.render_summary(await self.summary())


def _boot_ns() -> int:
    with open("/proc/uptime") as f:
        return time.time_ns() - int(float(f.read().split()[0]) * 1e9)
