"""The simulated nodes' kubelet endpoint for resource metrics, as the API server's scraper reads it.

One HTTP server on 127.0.0.1 (a random port) serves every simulated node of the process:
`GET /nodes/<node>/metrics/resource` answers what the kubelet's /metrics/resource answers, in the
Prometheus text format with the same metric names and millisecond timestamps. Each node advertises
its base URL, `http://127.0.0.1:PORT/nodes/<node>`, in the Node annotation `ketch.io/kubelet-url`.

Usage comes from the simulator's `UsageBook`. A pod's `ketch.io/simulate-cpu` / `-memory`
annotations are re-read on every scrape, so `kubectl annotate pod P ketch.io/simulate-cpu=500m
--overwrite` changes its load at runtime. CPU counters are cumulative core-seconds: each read adds
the current rate times the time since the previous read, so a rate taken between two scrapes is the
simulated usage.
"""
from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from aiohttp import web

from ..agent.resource_metrics import ContainerUsage, PodUsage, render

if TYPE_CHECKING:
    from .simulator import Simulator

log = logging.getLogger("ketch.simulate.kubelet")

KUBELET_URL_ANNOTATION = "ketch.io/kubelet-url"
# What the node's own daemons use besides the pods, so an idle node does not read zero.
NODE_BASE_CPU = 20_000_000        # nanocores (20m)
NODE_BASE_MEMORY = 256 * 1024**2  # bytes
INDEX_TTL = 1.0

class _Counter:
    """Cumulative core-seconds of something whose rate may change between reads."""

    __slots__ = ("seconds", "at")

    def __init__(self, since: float):
        self.seconds = 0.0
        self.at = since

    def read(self, nanocores: int, now: float) -> float:
        self.seconds += nanocores / 1e9 * max(now - self.at, 0.0)
        self.at = now
        return self.seconds


class KubeletAPI:
    """The resource-metrics endpoint of every node of one Simulator."""

    def __init__(self, sim: Simulator):
        self.sim = sim
        self.started = time.time()
        self._nodes: dict[str, _Counter] = {}
        self._containers: dict[tuple[str, str, str], _Counter] = {}
        self._by_node: dict[str, list[tuple[str, str]]] = {}
        self._indexed_at = -INDEX_TTL
        self._runner: web.AppRunner | None = None
        self.port = 0

    def url(self, node: str) -> str:
        return f"http://127.0.0.1:{self.port}/nodes/{node}"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/nodes/{node}/metrics/resource", self._metrics)
        app.router.add_get("/nodes/{node}/healthz", self._healthz)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        log.info("simulated kubelets serve metrics on 127.0.0.1:%d", self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _healthz(self, request: web.Request) -> web.Response:
        if request.match_info["node"] not in self.sim.nodes:
            raise web.HTTPNotFound()
        return web.Response(text="ok")

    async def _metrics(self, request: web.Request) -> web.Response:
        node = request.match_info["node"]
        if node not in self.sim.nodes:
            raise web.HTTPNotFound()
        now = int(time.time() * 1000) / 1000  # counters read at the millisecond the sample is stamped with
        return web.Response(text=self.render(node, now), content_type="text/plain",
                            charset="utf-8", headers={"X-Content-Type-Options": "nosniff"})

    def _pods_on(self, node: str) -> list[tuple[str, str]]:
        """The pods of `node`, from an index rebuilt at most every INDEX_TTL seconds (so a round of
        scrapes over 1,000 nodes walks 10,000 pods a few times, not once per node)."""
        if time.monotonic() - self._indexed_at > INDEX_TTL:
            index: dict[str, list[tuple[str, str]]] = {}
            pods = self.sim.usage.pods  # type: ignore[union-attr]
            for key, pod_usage in list(pods.items()):
                index.setdefault(pod_usage.node, []).append(key)
            self._by_node, self._indexed_at = index, time.monotonic()
            for key in [k for k in self._containers if k[:2] not in pods]:
                del self._containers[key]  # the pod is gone
        return self._by_node.get(node, [])

    def render(self, node: str, now: float) -> str:
        """The node's /metrics/resource text at `now`."""
        usage = self.sim.usage
        pods = []
        if usage is not None:
            for ns, name in self._pods_on(node):
                pod_usage = usage.pods.get((ns, name))
                if pod_usage is None or pod_usage.node != node:
                    continue
                cached = self.sim.pods.get(f"{ns}/{name}")
                if cached is not None:
                    usage.record(cached)  # re-read its annotations: load may change at runtime
                    pod_usage = usage.pods[(ns, name)]
                pods.append(pod_usage)
        node_cpu, node_memory = NODE_BASE_CPU, NODE_BASE_MEMORY
        rendered = []
        for p in pods:
            containers = []
            for container, (cpu, memory) in sorted(p.containers.items()):
                key = (p.namespace, p.name, container)
                counter = self._containers.get(key)
                if counter is None:
                    counter = self._containers[key] = _Counter(p.since)
                containers.append(ContainerUsage(container, counter.read(cpu, now), memory, p.since))
            rendered.append(PodUsage(p.namespace, p.name, sum(c.cpu_seconds for c in containers), p.memory,
                                     containers))
            node_cpu += p.cpu
            node_memory += p.memory
        counter = self._nodes.get(node)
        if counter is None:
            counter = self._nodes[node] = _Counter(self.started)
        return render(rendered, counter.read(node_cpu, now), node_memory, now)
