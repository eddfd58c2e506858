"""Scheduler benchmark: pods created against a real `ketch server` with many Ready nodes, timed
until every one is bound.

The server (`--disable-scheduler`) runs pinned to one core; the schedulers under test run as
`ketch scheduler` processes on the other core, beside this load generator, each taking the pods of
its own schedulerName. Phases, one after another on the same nodes:

  ketch          `ketch scheduler` as shipped: adaptive percentageOfNodesToScore (50% - nodes/125,
                 at least 5% and 100 nodes), binds in flight while the loop goes on
  baseline       the same scheduler with --percentage-of-nodes-to-score 100: every node filtered
                 and scored for every pod, as a scheduler without sampling does
  in-process     a second server, as shipped: the scheduler inside `ketch server` (same process and
                 core as the API server), for reference

Each phase creates its pods (the book's Chapter02 node-js pod with cpu and memory requests, owned
by one object as a ReplicaSet's are) concurrently, 32 in flight, and counts them bound from a watch;
the figure is pods / (last bind - first create), so it includes the API server's create and bind
writes and the Scheduled events. "scheduler capacity" is pods per CPU second of the scheduler
process itself: what it would place with a core to itself, and steady when the machine is busy.
Nodes are Node objects with capacity and a Ready condition, made by this script (a kubelet's
registration, without the kubelet: no pod goes Running).

    .venv/bin/python bench/bench_scheduler.py            # 10,000 pods on 1,000 nodes
    .venv/bin/python bench/bench_scheduler.py --quick    # 2,000 pods on 200 nodes
"""
from __future__ import annotations

import argparse
import asyncio
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import _common as common  # noqa: E402
from bench._common import CpuMeter, Figure  # noqa: E402
from ketch.client import kubeconfig  # noqa: E402

TARGET = 300.0  # pods/s, the figure
CONCURRENCY = 32


@dataclass(frozen=True)
class Plan:
    nodes: int
    pods: int
    deadline: float


FULL = Plan(nodes=1000, pods=10_000, deadline=600)
QUICK = Plan(nodes=200, pods=2_000, deadline=180)


class Cluster:
    def __init__(self, work: Path):
        self.work = work
        self.port = common.free_port()
        self.kubeconfig = work / "kubeconfig.yaml"
        self.base = f"https://127.0.0.1:{self.port}"
        self.log = work / "server.log"
        self.proc: subprocess.Popen | None = None
        self._ssl: ssl.SSLContext | None = None

    def start(self, extra: list[str] | None = None) -> None:
        # The nodes are registered without kubelets renewing their Leases: keep the node lifecycle
        # controller from calling them unreachable (and tainting them) during the run.
        grace = ["--node-monitor-grace-period", "3600s", "--node-startup-grace-period", "3600s"]
        self.proc = common.spawn([sys.executable, "-m", "ketch.cli.main", "server", "--data-dir",
                                  str(self.work / "data"), "--bind-address", "127.0.0.1", "--secure-port",
                                  str(self.port), "--write-kubeconfig", str(self.kubeconfig), "--disable-agent",
                                  *grace, *(extra or [])], self.log)

    def ssl(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = kubeconfig.load(self.kubeconfig).ssl_context()
        return self._ssl

    def http(self, limit: int = CONCURRENCY) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=self.ssl(), limit=limit),
                                     timeout=aiohttp.ClientTimeout(total=None, sock_read=120))

    async def wait_ready(self, timeout: float = 30) -> None:
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if self.kubeconfig.exists():
                try:
                    async with self.http() as http, http.get(f"{self.base}/readyz") as r:
                        if r.status == 200:
                            return
                except (aiohttp.ClientError, OSError):
                    pass
            await asyncio.sleep(0.05)
        raise RuntimeError(f"server not ready:\n{common.log_tail(self.log)}")

    def scheduler(self, name: str, extra: list[str]) -> subprocess.Popen:
        """A `ketch scheduler` process on the load core (this process's), logging beside the server."""
        prefix = ["taskset", "-c", str(common.LOAD_CPU)] if common.can_pin() else []
        with open(self.work / f"scheduler-{name}.log", "ab") as log:
            proc = subprocess.Popen([*prefix, sys.executable, "-m", "ketch.cli.main", "scheduler", "--kubeconfig",
                                     str(self.kubeconfig), "--no-leader-elect", "--scheduler-name", name, *extra],
                                    stdout=log, stderr=subprocess.STDOUT, cwd=common.ROOT, stdin=subprocess.DEVNULL)
        common._children.append(proc)
        return proc


async def request(http: aiohttp.ClientSession, method: str, url: str, body: dict, ctype: str = "application/json"
                  ) -> dict:
    async with http.request(method, url, data=orjson.dumps(body), headers={"Content-Type": ctype}) as r:
        raw = await r.read()
        if r.status >= 300:
            raise RuntimeError(f"{method} {url}: {r.status} {raw[:300]!r}")
        return orjson.loads(raw)


async def make_nodes(c: Cluster, n: int) -> float:
    """Node objects as a kubelet registers them: capacity, allocatable, Ready, zone labels."""
    t0 = time.perf_counter()
    res = {"cpu": "16", "memory": "64Gi", "pods": "110", "ephemeral-storage": "100Gi"}
    ready = {"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "kubelet is posting ready status"}

    async def one(http: aiohttp.ClientSession, i: int) -> None:
        name = f"node-{i:04d}"
        labels = {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
                  "topology.kubernetes.io/zone": f"zone-{'abc'[i % 3]}"}
        await request(http, "POST", f"{c.base}/api/v1/nodes",
                      {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels}})
        await request(http, "PATCH", f"{c.base}/api/v1/nodes/{name}/status",
                      {"status": {"capacity": res, "allocatable": res, "conditions": [ready]}},
                      "application/merge-patch+json")

    async with c.http() as http:
        queue = list(range(n))

        async def worker() -> None:
            while queue:
                await one(http, queue.pop())
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return time.perf_counter() - t0


def bench_pod(i: int, scheduler: str, owner: dict, ns: str) -> dict:
    """The book's Chapter02 node-js pod as a ReplicaSet would stamp it out, with requests."""
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"pod-{i:05d}", "namespace": ns, "labels": {"name": "node-js"},
                         "ownerReferences": [owner]},
            "spec": {"schedulerName": scheduler, "containers": [{
                "name": "node-js", "image": "jonbaier/node-express-info:latest",
                "ports": [{"containerPort": 80}],
                "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}}]}}


async def phase(c: Cluster, scheduler: str, plan: Plan, scheduler_pid: int = 0
                ) -> tuple[float, float, CpuMeter, float]:
    """Create the phase's pods in a namespace of its own: seconds to all bound and to all created,
    the CPU figures, and the scheduler process's CPU seconds when it is a process of its own."""
    pods = plan.pods
    ns = f"bench-{scheduler}"
    async with c.http() as http:
        await request(http, "POST", f"{c.base}/api/v1/namespaces",
                      {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
        # Pods owned by one (real) object, as a ReplicaSet's are: the scheduler spreads them.
        owner_obj = await request(http, "POST", f"{c.base}/api/v1/namespaces/{ns}/configmaps",
                                  {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "owner"}})
        owner = {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner_obj["metadata"]["uid"],
                 "controller": True}
        # Warm-up: the scheduler has synced its caches once one pod is bound.
        await request(http, "POST", f"{c.base}/api/v1/namespaces/{ns}/pods", bench_pod(99999, scheduler, owner, ns))
        async with http.get(f"{c.base}/api/v1/namespaces/{ns}/pods") as r:
            rv = (await r.json())["metadata"]["resourceVersion"]
        deadline = time.monotonic() + 60
        while True:
            async with http.get(f"{c.base}/api/v1/namespaces/{ns}/pods/pod-99999") as r:
                if (await r.json())["spec"].get("nodeName"):
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"scheduler {scheduler} never bound the warm-up pod")
            await asyncio.sleep(0.1)

        bodies = [orjson.dumps(bench_pod(i, scheduler, owner, ns)) for i in range(pods)]
        bound: set[str] = set()
        done = asyncio.Event()

        async def watch() -> None:
            """Count bound pods from a watch; if the server ends the stream (a slow reader), list
            once to catch up and watch again from there."""
            url = f"{c.base}/api/v1/namespaces/{ns}/pods"
            since = rv
            while True:
                params = {"watch": "true", "resourceVersion": since, "allowWatchBookmarks": "true"}
                async with http.get(url, params=params) as r:
                    buffer = b""
                    async for chunk in r.content.iter_any():
                        buffer += chunk
                        *lines, buffer = buffer.split(b"\n")
                        for line in lines:
                            if b'"nodeName"' not in line:
                                continue
                            obj = orjson.loads(line)["object"]
                            if obj.get("spec", {}).get("nodeName") and obj["metadata"]["name"] != "pod-99999":
                                bound.add(obj["metadata"]["name"])
                                if len(bound) >= pods:
                                    done.set()
                                    return
                async with http.get(url) as r:
                    listed = orjson.loads(await r.read())
                since = listed["metadata"]["resourceVersion"]
                for obj in listed["items"]:
                    if obj["spec"].get("nodeName") and obj["metadata"]["name"] != "pod-99999":
                        bound.add(obj["metadata"]["name"])
                if len(bound) >= pods:
                    done.set()
                    return

        watcher = asyncio.create_task(watch())
        await asyncio.sleep(0.2)
        created_at = 0.0
        sched_cpu0 = common.cpu_seconds(scheduler_pid) if scheduler_pid else 0.0
        with CpuMeter(c.proc.pid) as meter:
            t0 = time.perf_counter()
            next_i = 0

            async def creator() -> None:
                nonlocal next_i
                while next_i < len(bodies):
                    body = bodies[next_i]
                    next_i += 1
                    async with http.post(f"{c.base}/api/v1/namespaces/{ns}/pods", data=body,
                                         headers={"Content-Type": "application/json"}) as r:
                        if r.status != 201:
                            raise RuntimeError(f"create: {r.status} {(await r.read())[:200]!r}")
                        await r.read()
            await asyncio.gather(*(creator() for _ in range(CONCURRENCY)))
            created_at = time.perf_counter() - t0
            try:
                await asyncio.wait_for(done.wait(), plan.deadline)
            except asyncio.TimeoutError:
                raise RuntimeError(f"{scheduler}: only {len(bound)}/{pods} bound after {plan.deadline}s") from None
            elapsed = time.perf_counter() - t0
        sched_cpu = common.cpu_seconds(scheduler_pid) - sched_cpu0 if scheduler_pid else 0.0
        watcher.cancel()
        return elapsed, created_at, meter, sched_cpu


async def main_async(plan: Plan) -> int:
    common.pin_self_to_load_cpu()
    # The schedulers under test run as processes of their own beside a server without its own
    # scheduler (`--disable-scheduler`, as a cluster whose kube-scheduler runs apart).
    c = Cluster(common.temp_dir("ketch-bench-sched-"))
    c.start(["--disable-scheduler"])
    await c.wait_ready()
    took = await make_nodes(c, plan.nodes)
    print(f"{plan.nodes} nodes registered in {took:.1f}s; {plan.pods} pods per phase", flush=True)
    results, capacity = {}, {}
    for name, extra in (("ketch", []), ("baseline", ["--percentage-of-nodes-to-score", "100"])):
        proc = c.scheduler(name, extra)
        elapsed, created, meter, cpu = await phase(c, name, plan, proc.pid)
        common.stop(proc)
        results[name] = plan.pods / elapsed
        capacity[name] = plan.pods / cpu
        print(f"  {name:9s} {plan.pods} pods bound in {elapsed:5.1f}s ({results[name]:6.0f} pods/s; creates "
              f"alone took {created:.1f}s); {meter}; scheduler process {100 * cpu / elapsed:.0f}% "
              f"({cpu:.1f} CPU s)", flush=True)
    common.stop(c.proc)
    # `ketch server` as shipped: the scheduler in the API server's process, on its core.
    c = Cluster(common.temp_dir("ketch-bench-sched-"))
    c.start()
    await c.wait_ready()
    await make_nodes(c, plan.nodes)
    elapsed, created, meter, _ = await phase(c, "default-scheduler", plan)
    inproc = plan.pods / elapsed
    print(f"  in-process {plan.pods} pods bound in {elapsed:5.1f}s ({inproc:6.0f} pods/s; creates alone took "
          f"{created:.1f}s); {meter}", flush=True)
    figures = [Figure(f"end to end, {plan.pods} pods on {plan.nodes} nodes", "pods/s", TARGET, True,
                      results["ketch"], results["baseline"]),
               Figure("same, scheduler inside ketch server", "pods/s", None, True, inproc, results["baseline"]),
               # Pods placed per second of the scheduler's own CPU: what it could do with a core to
               # itself, and a figure that other processes on the machine do not disturb.
               Figure("scheduler capacity", "pods per CPU s", None, True, capacity["ketch"], capacity["baseline"])]
    print()
    common.print_table(figures, "score-all baseline")
    if max(CpuMeter.others, default=0) > 15:
        print("note: other processes were busy during the run; figures are noisy")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2,000 pods on 200 nodes")
    args = parser.parse_args()
    common.install_cleanup()
    try:
        return asyncio.run(main_async(QUICK if args.quick else FULL))
    finally:
        common.cleanup()


if __name__ == "__main__":
    sys.exit(main())
