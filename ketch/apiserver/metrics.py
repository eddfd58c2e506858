"""metrics.k8s.io/v1beta1 (NodeMetrics, PodMetrics), served by the API server itself.

What metrics-server does behind the aggregator, done in-process: a scraper task lists the Nodes
every `resolution` seconds and GETs `<kubelet-url>/metrics/resource` from each (the base URL a node
advertises in its `ketch.io/kubelet-url` annotation), a few at a time. The answer is the kubelet's
Prometheus text (node_cpu_usage_seconds_total, container_memory_working_set_bytes, ...). CPU usage is
the rate of the cumulative cpu seconds between the last two scrapes, memory the last working set;
the results are kept in memory only (never stored) and read by `kubectl top` and the HPA.

Network safety: kubelet URLs whose host is not loopback are refused unless the server is configured
to scrape remote kubelets (`--metrics-allow-remote-kubelets`), so a node object cannot make the API
server connect anywhere.
"""
from __future__ import annotations

import asyncio
import datetime
import ipaddress
import logging
import re
import ssl
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web

from ..api import durations, errors, kinds
from ..api.quantity import BINARY_SI, Quantity, parse_quantity
from .registry import ListOptions, Registry

log = logging.getLogger("ketch.apiserver.metrics")

GROUP = "metrics.k8s.io"
KUBELET_URL_ANNOTATION = "ketch.io/kubelet-url"
DEFAULT_RESOLUTION = 15.0
SCRAPE_CONCURRENCY = 32
NODES = kinds.lookup("", "v1", "nodes")
PODS = kinds.lookup("", "v1", "pods")


# ---- the kubelet's resource metrics, parsed --------------------------------------------------

@dataclass(frozen=True)
class Point:
    """One sample: cumulative cpu core-seconds and working set bytes at time `ts` (unix seconds)."""

    cpu: float
    memory: int
    ts: float
    start: float = 0.0  # container start time, 0 when unknown


@dataclass
class NodeSample:
    node: Point | None = None
    containers: dict[tuple[str, str, str], Point] = field(default_factory=dict)  # (ns, pod, container)


_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+(-?\d+))?\s*$")
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*,?')
_UNESCAPE = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}


def _labels(text: str | None) -> dict[str, str]:
    if not text:
        return {}
    return {m[1]: _unescape(m[2]) if "\\" in m[2] else m[2] for m in _LABEL.finditer(text)}


def _unescape(value: str) -> str:
    return re.sub(r"\\[\\\"n]", lambda e: _UNESCAPE[e[0]], value)


def parse_resource_metrics(text: str, now: float) -> NodeSample:
    """The kubelet's /metrics/resource answer (Prometheus text format 0.0.4). Samples without a
    timestamp are taken at `now`."""
    node: dict[str, tuple[float, float]] = {}
    containers: dict[tuple[str, str, str], dict[str, tuple[float, float]]] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _LINE.match(line)
        if m is None:
            continue
        name, value_text, ts_text = m[1], m[3], m[4]
        try:
            value = float(value_text)
        except ValueError:
            continue
        ts = int(ts_text) / 1000 if ts_text else now
        if name in ("node_cpu_usage_seconds_total", "node_memory_working_set_bytes"):
            node[name] = (value, ts)
        elif name in ("container_cpu_usage_seconds_total", "container_memory_working_set_bytes",
                      "container_start_time_seconds"):
            lb = _labels(m[2])
            key = (lb.get("namespace", ""), lb.get("pod", ""), lb.get("container", ""))
            if all(key):
                containers.setdefault(key, {})[name] = (value, ts)
    sample = NodeSample()
    if "node_cpu_usage_seconds_total" in node and "node_memory_working_set_bytes" in node:
        cpu, ts = node["node_cpu_usage_seconds_total"]
        sample.node = Point(cpu, int(node["node_memory_working_set_bytes"][0]), ts)
    for key, values in containers.items():
        if "container_cpu_usage_seconds_total" in values and "container_memory_working_set_bytes" in values:
            cpu, ts = values["container_cpu_usage_seconds_total"]
            start = values.get("container_start_time_seconds", (0.0, 0.0))[0]
            sample.containers[key] = Point(cpu, int(values["container_memory_working_set_bytes"][0]), ts, start)
    return sample


# ---- usage from two samples ------------------------------------------------------------------

def rfc3339(ts: float) -> str:
    return datetime.datetime.fromtimestamp(int(ts), datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def go_duration(seconds: float) -> str:
    """A window as metrics-server writes it: time.Duration.String() at millisecond precision."""
    return durations.format_seconds(seconds, precision_ns=1_000_000)


def usage(prev: Point, last: Point) -> dict | None:
    """{cpu, memory} between two points, or None when they give no rate (same time, counter reset)."""
    window = last.ts - prev.ts
    if window <= 0 or last.cpu < prev.cpu:
        return None
    nanocores = round((last.cpu - prev.cpu) / window * 1e9)
    return {"cpu": Quantity.from_scaled(nanocores, -9).canonical(),
            "memory": Quantity.from_int(last.memory, BINARY_SI).canonical()}


class MetricsStore:
    """The last two scrapes of every node and container, and the usage computed from them."""

    def __init__(self) -> None:
        self._nodes: dict[str, Point] = {}
        self._containers: dict[tuple[str, str, str], Point] = {}
        self._last_scrape = 0.0
        self.nodes: dict[str, dict] = {}                 # name -> {timestamp, window, usage}
        self.pods: dict[tuple[str, str], dict] = {}      # (ns, name) -> {timestamp, window, containers}

    def store(self, batch: dict[str, NodeSample], scraped_at: float) -> None:
        """Replace what is known with one scrape of every node (as metrics-server does: a node or
        pod missing from the batch has no metrics until it is seen twice again)."""
        nodes: dict[str, Point] = {}
        containers: dict[tuple[str, str, str], Point] = {}
        node_usage: dict[str, dict] = {}
        pods: dict[tuple[str, str], dict] = {}
        broken: set[tuple[str, str]] = set()
        for name, sample in batch.items():
            if sample.node is not None:
                nodes[name] = last = sample.node
                prev = self._nodes.get(name)
                u = usage(prev, last) if prev is not None else None
                if u is not None:
                    node_usage[name] = {"timestamp": rfc3339(last.ts), "window": go_duration(last.ts - prev.ts),
                                        "usage": u}
            for key, last in sample.containers.items():
                containers[key] = last
                prev = self._containers.get(key)
                if prev is None and self._last_scrape and last.start >= self._last_scrape:
                    prev = Point(0.0, 0, last.start)  # started since the last scrape: counted from its start
                u = usage(prev, last) if prev is not None else None
                pod_key = key[:2]
                if u is None:
                    broken.add(pod_key)  # a pod is served only when every container has usage
                    continue
                pod = pods.setdefault(pod_key, {"timestamp": last.ts, "window": 0.0, "containers": []})
                pod["timestamp"] = max(pod["timestamp"], last.ts)
                pod["window"] = max(pod["window"], last.ts - prev.ts)
                pod["containers"].append({"name": key[2], "usage": u})
        for key in broken:
            pods.pop(key, None)
        for pod in pods.values():
            pod["timestamp"], pod["window"] = rfc3339(pod["timestamp"]), go_duration(pod["window"])
            pod["containers"].sort(key=lambda c: c["name"])
        self._nodes, self._containers, self._last_scrape = nodes, containers, scraped_at
        self.nodes, self.pods = node_usage, pods


# ---- the scraper -------------------------------------------------------------------------------

def kubelet_url(node: dict) -> str:
    """The base URL of a node's kubelet API, from its `ketch.io/kubelet-url` annotation ("" if none);
    the metrics scraper and the pods/log, exec, attach, portforward and nodes/proxy proxy use it."""
    return (node["metadata"].get("annotations") or {}).get(KUBELET_URL_ANNOTATION, "")


KUBELET_CLIENT_FILES = "apiserver-kubelet-client"      # DIR/tls/<this>.crt and .key (kubeadm's names)
KUBELET_CLIENT_USER = "kube-apiserver-kubelet-client"


def kubelet_client_tls(tls_dir: Path) -> ssl.SSLContext:
    """TLS towards kubelets: the server authenticates with its kubelet client certificate (the
    kubelets verify it with the cluster CA); their self-signed serving certificates are not
    verified yet (metrics-server's --kubelet-insecure-tls)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.load_cert_chain(tls_dir / f"{KUBELET_CLIENT_FILES}.crt", tls_dir / f"{KUBELET_CLIENT_FILES}.key")
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def is_loopback_url(url: str) -> bool:
    try:
        host = urlsplit(url).hostname or ""
    except ValueError:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Scraper:
    """Every `resolution` seconds, every node's kubelet, `SCRAPE_CONCURRENCY` at a time."""

    def __init__(self, registry: Registry, store: MetricsStore, *, resolution: float = DEFAULT_RESOLUTION,
                 allow_remote: bool = False, tls_dir: Path):
        self.registry = registry
        self.store = store
        self.resolution = resolution
        self.allow_remote = allow_remote
        self.tls_dir = tls_dir
        self._refused: set[str] = set()

    async def run(self) -> None:
        ssl_ctx = kubelet_client_tls(self.tls_dir)
        timeout = aiohttp.ClientTimeout(total=min(max(self.resolution * 0.9, 1.0), 10.0))
        connector = aiohttp.TCPConnector(limit=SCRAPE_CONCURRENCY, ssl=ssl_ctx)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            while True:
                started = time.monotonic()
                try:
                    await self.scrape_once(session)
                except asyncio.CancelledError:
                    raise
                except Exception:  # noqa: BLE001 - a bad round must not stop the scraper
                    log.exception("metrics scrape failed")
                await asyncio.sleep(max(self.resolution - (time.monotonic() - started), 0.05))

    async def scrape_once(self, session: aiohttp.ClientSession) -> None:
        nodes, _ = await self.registry.list(NODES, None, ListOptions())
        scraped_at = time.time()
        limit = asyncio.Semaphore(SCRAPE_CONCURRENCY)
        results = await asyncio.gather(*(self._scrape(session, limit, n) for n in nodes))
        self.store.store({name: sample for name, sample in results if sample is not None}, scraped_at)

    async def _scrape(self, session: aiohttp.ClientSession, limit: asyncio.Semaphore,
                      node: dict) -> tuple[str, NodeSample | None]:
        name = node["metadata"]["name"]
        base = kubelet_url(node)
        if not base:
            return name, None
        if not self.allow_remote and not is_loopback_url(base):
            if name not in self._refused:
                self._refused.add(name)
                log.warning("node %s: not scraping kubelet at %s (not loopback; start the server with "
                            "--metrics-allow-remote-kubelets to allow it)", name, base)
            return name, None
        async with limit:
            try:
                async with session.get(base.rstrip("/") + "/metrics/resource") as resp:
                    if resp.status != 200:
                        log.info("node %s: kubelet metrics answered %s", name, resp.status)
                        return name, None
                    text = await resp.text()
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError, ValueError) as e:
                log.info("node %s: kubelet metrics: %s", name, e or type(e).__name__)
                return name, None
        return name, parse_resource_metrics(text, time.time())


# ---- the API -----------------------------------------------------------------------------------

def _table(items: list[dict], usage_of, include_object: str) -> dict:
    """metrics-server's table: Name, one column per resource (sorted), Window."""
    columns = None
    rows = []
    for obj in items:
        u = usage_of(obj)
        names = sorted(u)
        if columns is None:
            columns = [{"name": "Name", "type": "string", "format": "name", "description": "Name of the resource",
                        "priority": 0}]
            columns += [{"name": n, "type": "string", "format": "quantity", "description": "", "priority": 0}
                        for n in names]
            columns.append({"name": "Window", "type": "string", "format": "duration", "description": "",
                            "priority": 0})
        row: dict = {"cells": [obj["metadata"]["name"], *(u.get(n, "") for n in names), obj["window"]]}
        if include_object == "Object":
            row["object"] = obj
        elif include_object != "None":
            row["object"] = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                             "metadata": obj["metadata"]}
        rows.append(row)
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {}, "columnDefinitions": columns,
            "rows": rows}


def _pod_usage(pod_metrics: dict) -> dict[str, str]:
    total: dict[str, Quantity] = {}
    for c in pod_metrics["containers"]:
        for k, v in c["usage"].items():
            total[k] = total.get(k, Quantity.from_int(0)) + parse_quantity(v)
    return {k: v.canonical() for k, v in total.items()}


class MetricsAPI:
    """GET and LIST of nodes and pods in metrics.k8s.io/v1beta1, joined with the cached usage."""

    def __init__(self, registry: Registry, store: MetricsStore):
        self.registry = registry
        self.store = store

    def _node_metrics(self, node: dict, now: str) -> dict | None:
        u = self.store.nodes.get(node["metadata"]["name"])
        if u is None:
            return None
        meta = {"name": node["metadata"]["name"], "creationTimestamp": now}
        if node["metadata"].get("labels"):
            meta["labels"] = node["metadata"]["labels"]
        return {"kind": "NodeMetrics", "apiVersion": f"{GROUP}/v1beta1", "metadata": meta, **u}

    def _pod_metrics(self, pod: dict, now: str) -> dict | None:
        pmeta = pod["metadata"]
        u = self.store.pods.get((pmeta.get("namespace", ""), pmeta["name"]))
        if u is None:
            return None
        meta = {"name": pmeta["name"], "namespace": pmeta.get("namespace", ""), "creationTimestamp": now}
        if pmeta.get("labels"):
            meta["labels"] = pmeta["labels"]
        return {"kind": "PodMetrics", "apiVersion": f"{GROUP}/v1beta1", "metadata": meta, **u}

    async def serve(self, ctx) -> web.StreamResponse:
        """The request `ctx` (a handlers.Context) addresses nodes or pods of metrics.k8s.io."""
        from .handlers import list_options
        info = ctx.info
        if info.subresource or info.verb not in info.resource.verbs:
            raise errors.method_not_allowed()
        node_kind = info.resource.kind == "NodeMetrics"
        source, build = (NODES, self._node_metrics) if node_kind else (PODS, self._pod_metrics)
        now = rfc3339(time.time())
        if info.verb == "get":
            obj = await self.registry.get_or_none(source, info.namespace, info.name)
            shown = info.name if node_kind else f"{info.namespace}/{info.name}"
            if obj is None:
                raise errors.not_found("", "node" if node_kind else "pods", shown)
            metrics = build(obj, now)
            if metrics is None:
                raise errors.not_found(GROUP, "nodemetrics" if node_kind else "podmetrics", shown)
            items = [metrics]
        else:
            opts = list_options(ctx.query)
            opts.limit, opts.continue_token, opts.resource_version = 0, "", ""
            objs, _ = await self.registry.list(source, info.namespace, opts)
            items = [m for m in (build(o, now) for o in objs) if m is not None]
            items.sort(key=lambda m: (m["metadata"].get("namespace", ""), m["metadata"]["name"]))
        if ctx.accept.table:
            usage_of = (lambda m: m["usage"]) if node_kind else _pod_usage
            return ctx.respond(_table(items, usage_of, ctx.query.get("includeObject", "Metadata")))
        if info.verb == "get":
            return ctx.respond(items[0])
        return ctx.respond({"kind": info.resource.list_kind, "apiVersion": f"{GROUP}/v1beta1", "metadata": {},
                            "items": items})
