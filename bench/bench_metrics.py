"""Metrics pipeline benchmark: what one scrape round of metrics.k8s.io costs at 1,000 nodes.

In one process: the simulated nodes' kubelet endpoint (ketch/simulate/kubelet_api.py) serves N
nodes with M pods spread evenly, and the API server's scraper (ketch/apiserver/metrics.py) reads
them all over loopback HTTP, 32 at a time, as it does every --metrics-resolution. Measured: the
wall time of a round (both sides share the core, so this is pessimistic), the API server's share
(parsing the Prometheus text and computing usage), and the kubelet side's rendering per node. The
baseline column is the default resolution, 15 s: the ratio is the share of one core (or of the
interval) a round takes.

    .venv/bin/python bench/bench_metrics.py            # 1,000 nodes, 10,000 pods
    .venv/bin/python bench/bench_metrics.py --quick    # 100 nodes, 1,000 pods
"""
from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import aiohttp  # noqa: E402

from bench._common import Figure, print_table  # noqa: E402
from ketch.apiserver import metrics  # noqa: E402
from ketch.simulate.kubelet_api import KubeletAPI  # noqa: E402
from ketch.simulate.usage import PodUsage, UsageBook  # noqa: E402

RESOLUTION = 15.0
ROUNDS = 3


class FakeSimulator:
    """What KubeletAPI reads of a Simulator: its nodes, their usage book and pod cache."""

    def __init__(self, nodes: int, pods: int):
        self.nodes = {f"node-{i}": None for i in range(nodes)}
        self.usage = UsageBook()
        self.pods: dict = {}
        since = time.time() - 60
        for p in range(pods):
            self.usage.pods[("bench", f"pod-{p}")] = PodUsage("bench", f"pod-{p}", f"node-{p % nodes}", since,
                                                              {"app": (100_000_000, 64 << 20)})


class NodeList:
    """The registry's Node list, as the scraper reads it."""

    def __init__(self, nodes: list[dict]):
        self.nodes = nodes

    async def list(self, _res, _namespace, _opts):
        return self.nodes, {}


async def run(n_nodes: int, n_pods: int) -> list[Figure]:
    sim = FakeSimulator(n_nodes, n_pods)
    kubelet = KubeletAPI(sim)  # type: ignore[arg-type]
    await kubelet.start()
    nodes = [{"metadata": {"name": n, "annotations": {metrics.KUBELET_URL_ANNOTATION: kubelet.url(n)}}}
             for n in sim.nodes]
    store = metrics.MetricsStore()
    scraper = metrics.Scraper(NodeList(nodes), store)  # type: ignore[arg-type]
    rounds = []
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=metrics.SCRAPE_CONCURRENCY)) as s:
            for _ in range(ROUNDS):
                t0 = time.perf_counter()
                await scraper.scrape_once(s)
                rounds.append(time.perf_counter() - t0)
                await asyncio.sleep(1.0)
        assert len(store.nodes) == n_nodes and len(store.pods) == n_pods, (len(store.nodes), len(store.pods))
    finally:
        await kubelet.stop()
    # The two halves alone, without HTTP.
    t0 = time.perf_counter()
    texts = {n: kubelet.render(n, time.time()) for n in sim.nodes}
    render = time.perf_counter() - t0
    t0 = time.perf_counter()
    batch = {n: metrics.parse_resource_metrics(text, time.time()) for n, text in texts.items()}
    store.store(batch, time.time())
    server_side = time.perf_counter() - t0
    scale = f"{n_nodes:,} nodes / {n_pods:,} pods"
    return [
        Figure(f"scrape round over HTTP, {scale}", "s", RESOLUTION, False, min(rounds), RESOLUTION,
               "kubelet and scraper in one process"),
        Figure(f"API server: parse + usage per round, {scale}", "s", RESOLUTION * 0.1, False, server_side,
               RESOLUTION, "share of one core at the default resolution"),
        Figure("simulated kubelet: render per node", "ms", None, False, render / n_nodes * 1000),
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="100 nodes, 1,000 pods")
    args = parser.parse_args()
    n_nodes, n_pods = (100, 1000) if args.quick else (1000, 10_000)
    figures = asyncio.run(run(n_nodes, n_pods))
    print_table(figures, "resolution (15 s)")


if __name__ == "__main__":
    main()
