"""Workload controller benchmark: ReplicaSets and Deployments end to end on simulated nodes.

A real `ketch server` (API server, controllers and scheduler in one process) runs pinned to one
core; `ketch simulate` (the kubelets of the simulated nodes) and this script share the other. Phases,
each in a namespace of its own, timed from the first write to the last pod Running (watched):

  bare pods     N pods created by this script, 32 in flight: the baseline for the ReplicaSet, the
                same pods without a controller in the way
  replicaset    one ReplicaSet of N replicas created (the issue's figure: <= 10 s at 1,000)
  rollout       a Deployment of N replicas is created and left to settle, then its image changed
                (maxSurge 25%, maxUnavailable 25%) and timed until `kubectl rollout status` would say
                done: updated, available and total replicas all N (the issue's figure: <= 30 s)
  rollout/10    the same rollout at N/10 replicas, times 10: the baseline showing how the rollout
                scales (1.0x = linear)

Each figure has a second row, the server process's CPU seconds over the same interval: on a busy
machine the wall times stretch with the server's share of its core, the CPU seconds much less, so
their ratio is the steadier comparison of what the controllers add.

    .venv/bin/python bench/bench_workloads.py            # 1,000 replicas
    .venv/bin/python bench/bench_workloads.py --quick    # 300 replicas
"""
from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import _common as common  # noqa: E402
from bench._common import CpuMeter, Figure  # noqa: E402
from ketch.client import kubeconfig  # noqa: E402
from ketch.client.rest import Client  # noqa: E402

CONCURRENCY = 32


@dataclass(frozen=True)
class Plan:
    replicas: int
    nodes: int
    deadline: float


FULL = Plan(replicas=1000, nodes=20, deadline=120)
QUICK = Plan(replicas=300, nodes=10, deadline=60)


def template(labels: dict, image: str = "jonbaier/pod-scaling:0.1") -> dict:
    pod = common.pod(0)
    spec = pod["spec"]
    spec.pop("volumes", None)
    c = spec["containers"][0]
    c.pop("volumeMounts", None)
    c.pop("readinessProbe", None)
    c.pop("livenessProbe", None)
    c["image"] = image
    c["resources"] = {"requests": {"cpu": "10m", "memory": "16Mi"}}
    return {"metadata": {"labels": labels}, "spec": spec}


class Cluster:
    def __init__(self, work: Path):
        self.work = work
        self.port = common.free_port()
        self.kubeconfig = work / "kubeconfig.yaml"
        self.log = work / "server.log"
        self.proc: subprocess.Popen | None = None
        self.sim: subprocess.Popen | None = None

    def start(self, nodes: int) -> None:
        self.proc = common.spawn([sys.executable, "-m", "ketch.cli.main", "server", "--data-dir",
                                  str(self.work / "data"), "--bind-address", "127.0.0.1", "--secure-port",
                                  str(self.port), "--write-kubeconfig", str(self.kubeconfig), "--disable-agent"],
                                 self.log)
        deadline = time.monotonic() + 30
        while not self.kubeconfig.exists():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError(f"server did not start:\n{common.log_tail(self.log)}")
            time.sleep(0.05)

    def simulate(self, nodes: int) -> None:
        prefix = ["taskset", "-c", str(common.LOAD_CPU)] if common.can_pin() else []
        with open(self.work / "simulate.log", "ab") as log:
            self.sim = subprocess.Popen([*prefix, sys.executable, "-m", "ketch.cli.main", "simulate", "--kubeconfig",
                                         str(self.kubeconfig), "--nodes", str(nodes), "--cpu", "64",
                                         "--memory", "256Gi", "--pods", "250"],
                                        stdout=log, stderr=subprocess.STDOUT, cwd=common.ROOT,
                                        stdin=subprocess.DEVNULL)
        common._children.append(self.sim)

    def client(self) -> Client:
        return Client(kubeconfig.load(self.kubeconfig), user_agent="bench-workloads")


async def wait_ready(client: Client, nodes: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            items = (await client.resource("v1", "Node").list()).get("items", [])
            ready = [n for n in items if any(c.get("type") == "Ready" and c.get("status") == "True"
                                             for c in n.get("status", {}).get("conditions") or ())]
            if len(ready) >= nodes:
                return
        except Exception:  # noqa: BLE001 - the server is still starting
            pass
        await asyncio.sleep(0.2)
    raise RuntimeError("simulated nodes never became Ready")


async def namespace(client: Client, name: str) -> None:
    await client.resource("v1", "Namespace").create({"apiVersion": "v1", "kind": "Namespace",
                                                     "metadata": {"name": name}})
    # Admission needs the namespace's default ServiceAccount before pods can be created.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            await client.resource("v1", "ServiceAccount").get("default", namespace=name)
            return
        except Exception:  # noqa: BLE001
            await asyncio.sleep(0.05)


async def until_running(client: Client, ns: str, count: int, start, deadline: float,
                        pid: int | None = None) -> tuple[float, float]:
    """Run `start()`, then watch the namespace's pods until `count` of them are Running: seconds, and
    the server's CPU seconds meanwhile."""
    pods = client.resource("v1", "Pod")
    rv = (await pods.list(ns, limit=1))["metadata"]["resourceVersion"]
    running: set[str] = set()
    seen: set[str] = set()
    marks: dict[str, float] = {}
    done = asyncio.Event()

    async def watch() -> None:
        async for ev in pods.watch(ns, resourceVersion=rv, allowWatchBookmarks=True, timeoutSeconds=600):
            obj = ev.get("object") or {}
            name = obj.get("metadata", {}).get("name")
            if ev.get("type") == "ADDED":
                seen.add(name)
                if len(seen) == count:
                    marks["created"] = time.perf_counter()
            if ev.get("type") == "DELETED" or obj.get("metadata", {}).get("deletionTimestamp"):
                running.discard(name)
            elif (obj.get("status") or {}).get("phase") == "Running":
                running.add(name)
            if len(running) >= count:
                done.set()
                return

    watcher = asyncio.create_task(watch())
    await asyncio.sleep(0.1)
    cpu0 = common.cpu_seconds(pid) if pid else 0.0
    t0 = time.perf_counter()
    await start()
    try:
        await asyncio.wait_for(done.wait(), deadline)
    except asyncio.TimeoutError:
        raise RuntimeError(f"only {len(running)}/{count} pods Running after {deadline}s") from None
    finally:
        watcher.cancel()
    elapsed = time.perf_counter() - t0
    cpu = common.cpu_seconds(pid) - cpu0 if pid else 0.0
    if "created" in marks and count > 1:
        print(f"    ({count} pods existed after {marks['created'] - t0:.1f}s)", flush=True)
    return elapsed, cpu


async def bare_pods(client: Client, ns: str, n: int, deadline: float, pid: int | None = None) -> tuple[float, float]:
    await namespace(client, ns)
    pods = client.resource("v1", "Pod", ns)
    tmpl = template({"app": "bare"})

    async def start() -> None:
        queue = list(range(n))

        async def worker() -> None:
            while queue:
                i = queue.pop()
                await pods.create({"apiVersion": "v1", "kind": "Pod",
                                   "metadata": {"name": f"bare-{i:05d}", **tmpl["metadata"]}, "spec": tmpl["spec"]})
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return await until_running(client, ns, n, start, deadline, pid)


async def replicaset(client: Client, ns: str, n: int, deadline: float, pid: int) -> tuple[float, float]:
    await namespace(client, ns)
    rs = {"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "bench"},
          "spec": {"replicas": n, "selector": {"matchLabels": {"app": "rs"}}, "template": template({"app": "rs"})}}

    async def start() -> None:
        await client.resource("apps/v1", "ReplicaSet", ns).create(rs)
    return await until_running(client, ns, n, start, deadline, pid)


async def deployment_done(client: Client, ns: str, name: str, n: int, deadline: float) -> None:
    res = client.resource("apps/v1", "Deployment", ns)
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        d = await res.get(name)
        st = d.get("status") or {}
        if st.get("observedGeneration", 0) >= d["metadata"]["generation"] and st.get("updatedReplicas") == n \
                and st.get("replicas") == n and st.get("availableReplicas") == n:
            return
        await asyncio.sleep(0.05)
    raise RuntimeError(f"deployment {ns}/{name} not rolled out after {deadline}s: {st}")


async def rollout(client: Client, ns: str, n: int, deadline: float, pid: int) -> tuple[float, float]:
    """Seconds for the image change of an N-replica Deployment to be rolled out, and the server's CPU
    seconds meanwhile."""
    await namespace(client, ns)
    res = client.resource("apps/v1", "Deployment", ns)
    d = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "bench"},
         "spec": {"replicas": n, "selector": {"matchLabels": {"app": "deploy"}},
                  "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
                  "template": template({"app": "deploy"})}}
    await res.create(d)
    await deployment_done(client, ns, "bench", n, deadline)
    cpu0 = common.cpu_seconds(pid)
    t0 = time.perf_counter()
    await res.patch("bench", {"spec": {"template": {"spec": {"containers": [
        {"name": d["spec"]["template"]["spec"]["containers"][0]["name"], "image": "jonbaier/pod-scaling:0.2"}]}}}},
        "strategic")
    await deployment_done(client, ns, "bench", n, deadline)
    return time.perf_counter() - t0, common.cpu_seconds(pid) - cpu0


async def main_async(plan: Plan, only: str | None = None) -> int:
    common.pin_self_to_load_cpu()
    work = common.temp_dir("ketch-bench-workloads-")
    c = Cluster(work)
    c.start(plan.nodes)
    c.simulate(plan.nodes)
    n = plan.replicas
    small = max(n // 10, 1)
    figures = []
    async with c.client() as client:
        await wait_ready(client, plan.nodes)
        print(f"{plan.nodes} simulated nodes Ready; {n} replicas per phase; server pid {c.proc.pid}", flush=True)
        # Warm-up: one pod through the whole path, so caches and connections exist.
        await bare_pods(client, "warm-up", 1, plan.deadline)
        if only in (None, "replicaset"):
            with CpuMeter(c.proc.pid) as meter:
                t_bare, cpu_bare = await bare_pods(client, "bench-bare", n, plan.deadline, c.proc.pid)
            print(f"  bare pods    {n} Running in {t_bare:5.1f}s; {meter}", flush=True)
            with CpuMeter(c.proc.pid) as meter:
                t_rs, cpu_rs = await replicaset(client, "bench-rs", n, plan.deadline, c.proc.pid)
            print(f"  replicaset   {n} Running in {t_rs:5.1f}s; {meter}", flush=True)
            figures.append(Figure(f"ReplicaSet of {n} created -> all Running", "s", 10.0 if n == 1000 else None, False,
                                  t_rs, t_bare))
            figures.append(Figure("  server CPU in that phase (vs the bare pods')", "s", None, False,
                                  cpu_rs, cpu_bare))
        if only in (None, "rollout"):
            with CpuMeter(c.proc.pid) as meter:
                t_small, cpu_small = await rollout(client, "bench-roll-small", small, plan.deadline, c.proc.pid)
            print(f"  rollout      {small} replicas in {t_small:5.1f}s; {meter}", flush=True)
            with CpuMeter(c.proc.pid) as meter:
                t_roll, cpu_roll = await rollout(client, "bench-roll", n, plan.deadline, c.proc.pid)
            print(f"  rollout      {n} replicas in {t_roll:5.1f}s; {meter}", flush=True)
            figures.append(Figure(f"Deployment rolling update of {n}, maxSurge 25%", "s", 30.0 if n == 1000 else None, False,
                                  t_roll, t_small * n / small))
            figures.append(Figure("  server CPU in that phase (vs N/10 x10)", "s", None, False,
                                  cpu_roll, cpu_small * n / small))
    common.stop(c.sim)
    common.stop(c.proc)
    print()
    common.print_table(figures, "baseline")
    print(f"(baselines: for the ReplicaSet, {n} bare pods created by this script; for the rollout, the rollout "
          f"of {small} replicas times {n // small})")
    if max(CpuMeter.others, default=0) > 15:
        print("note: other processes were busy during the run; figures are noisy")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="300 replicas on 10 nodes")
    parser.add_argument("--only", choices=("replicaset", "rollout"), help="run one phase and its baseline")
    args = parser.parse_args()
    common.install_cleanup()
    return asyncio.run(main_async(QUICK if args.quick else FULL, args.only))


if __name__ == "__main__":
    sys.exit(main())
