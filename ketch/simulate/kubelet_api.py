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

if TYPE_CHECKING:
    from .simulator import Simulator

log = logging.getLogger("ketch.simulate.kubelet")

KUBELET_URL_ANNOTATION = "ketch.io/kubelet-url"
# What the node's own daemons use besides the pods, so an idle node does not read zero.
NODE_BASE_CPU = 20_000_000        # nanocores (20m)
NODE_BASE_MEMORY = 256 * 1024**2  # bytes
INDEX_TTL = 1.0

_HELP = {
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
        pods.sort(key=lambda p: (p.namespace, p.name))
        ts = str(round(now * 1000))
        samples: dict[str, list[str]] = {name: [] for name in _HELP}
        node_cpu, node_memory = NODE_BASE_CPU, NODE_BASE_MEMORY
        for p in pods:
            pod_labels = f'namespace="{_escape(p.namespace)}",pod="{_escape(p.name)}"'
            pod_cpu = 0.0
            for container, (cpu, memory) in sorted(p.containers.items()):
                key = (p.namespace, p.name, container)
                counter = self._containers.get(key)
                if counter is None:
                    counter = self._containers[key] = _Counter(p.since)
                seconds = counter.read(cpu, now)
                pod_cpu += seconds
                labels = f'{{container="{_escape(container)}",{pod_labels}}}'
                samples["container_cpu_usage_seconds_total"].append(f"{labels} {go_float(seconds)} {ts}")
                samples["container_memory_working_set_bytes"].append(f"{labels} {go_float(memory)} {ts}")
                start_ms = int(p.since * 1000)
                samples["container_start_time_seconds"].append(f"{labels} {go_float(p.since)} {start_ms}")
            samples["pod_cpu_usage_seconds_total"].append(f"{{{pod_labels}}} {go_float(pod_cpu)} {ts}")
            samples["pod_memory_working_set_bytes"].append(f"{{{pod_labels}}} {go_float(p.memory)} {ts}")
            node_cpu += p.cpu
            node_memory += p.memory
        counter = self._nodes.get(node)
        if counter is None:
            counter = self._nodes[node] = _Counter(self.started)
        samples["node_cpu_usage_seconds_total"].append(f" {go_float(counter.read(node_cpu, now))} {ts}")
        samples["node_memory_working_set_bytes"].append(f" {go_float(node_memory)} {ts}")
        samples["resource_scrape_error"].append(" 0")
        out = []
        for name, (kind, text) in _HELP.items():
            lines = samples[name]
            if not lines:
                continue
            out.append(f"# HELP {name} [STABLE] {text}\n# TYPE {name} {kind}\n")
            out.extend(f"{name}{line}\n" for line in lines)
        return "".join(out)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
