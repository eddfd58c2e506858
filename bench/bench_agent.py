"""Node agent figures (issue 4): pod startup latency on one node, the agent's memory with 100 pods,
and pod deletion — each beside a baseline measured in the same run.

A real `ketch server --disable-agent` (API server, controllers, scheduler; pinned to one core) and a
separate `ketch agent` process (any core, so its runc/conmon children are not squeezed onto one),
whose node lives in a network namespace this script makes (the pods' bridge is there; the root
namespace is never touched) and whose pods' cgroups sit under a cgroup of this script's. The image
(busybox, bundled) is present beforehand. Phases:

  baseline      the floor under the kubelet, before the agent starts: (a) `runc run -d` of busybox
                `sleep 3600` on an overlay of the same image, one after another; (b) the agent's own
                runtime (RuncRuntime, in this process, on a node namespace of its own): a burst of
                50 pod sandboxes (netns, CNI, cgroup, pinned IPC/UTS namespaces) + container create + start, all at once
                as the kubelet's pod workers (one per pod) do, timed from the burst start to each
                container started; the same burst 2 per core at a time; then (those 50 running) 20
                more pods one after another
  idle          the agent's VmRSS once its node is Ready and it idled IDLE seconds
  startup       50 pods (busybox `sleep 3600`) created in one burst through the API, bound by the
                scheduler; create -> Running (phase Running, container running) as a watch sees it,
                and as the kubelet reports it (creationTimestamp -> startedAt, whole seconds)
  one by one    20 more pods, each created once the one before is Running (50 and more running):
                the latency without queueing behind the rest of a burst, closer to how the Kubernetes
                SLO is measured (pods arriving at a steady rate, not all at once)
  100 pods      50 more; the agent's VmRSS after all 100 are Running and it idled IDLE seconds
  delete        the 100 pods deleted in one burst (grace period 1 s: a PID-1 `sleep` ignores SIGTERM,
                so the kill comes after it); delete -> gone from the API, watched; the agent's VmRSS
  cycles        100 pods created and deleted again (--cycles, default 2 in all), the agent's VmRSS
                after each: a leak keeps growing, a high-water mark stays

Everything is removed at the end, also on failure or a signal: the processes (by PID), then as
`ketch killall` the pods' sandboxes and containers, then what may remain (runc state, monitors,
mounts, the network namespaces, cgroups) as the tests' destroy_node does.

    .venv/bin/python bench/bench_agent.py               # 50-pod burst, 100 pods for memory
    .venv/bin/python bench/bench_agent.py --quick       # 20 / 40 pods, shorter idles
    KETCH_BENCH_PROFILE=1 .venv/bin/python bench/bench_agent.py   # the agent under cProfile in
        the startup burst and the delete burst: their costliest functions (the event loop's thread,
        CPU time) are printed at the end, and the profiles kept as /tmp/bench-agent-<tag>.<phase>.prof
    KETCH_BENCH_TRACEMALLOC=1 .venv/bin/python bench/bench_agent.py   # the agent's heap traced:
        what grows with the pods running, and from one create/delete cycle to the next
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import pstats
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from bench import _common as common  # noqa: E402
from bench._common import CpuMeter, Figure, percentile  # noqa: E402
from helpers.runtime_node import destroy_node  # noqa: E402
from ketch.agent.runtime import api as rt_api  # noqa: E402
from ketch.agent.runtime.cni import CNIConfig  # noqa: E402
from ketch.agent.runtime.runc import RuncRuntime  # noqa: E402
from ketch.client import kubeconfig  # noqa: E402
from ketch.client.rest import Client  # noqa: E402
from ketch.images import bundled  # noqa: E402
from ketch.images.store import ImageStore  # noqa: E402

IMAGE = "busybox:latest"
NODE = "bench-node"
# The runtime bursts' concurrencies: all at once, as the kubelet's pod workers (one per pod, up to
# --max-pods: ketch/agent/podworker.py), and 2 per core, to show what a cap on concurrent starts gives.
CAPPED = 2 * (os.cpu_count() or 1)
RAW_RUNS = 10
PROFILE = os.environ.get("KETCH_BENCH_PROFILE") == "1"
MEMTRACE = os.environ.get("KETCH_BENCH_TRACEMALLOC") == "1"
# The agent's main thread under cProfile with its CPU clock (thread_time): what runs on the event
# loop, without the loop's idle waits that a wall clock charges to whatever coroutine awaited
# (coroutines count a call per resumption, so their ncalls say little). One profile per phase,
# started and stopped by SIGUSR1. With tracemalloc on, SIGUSR2 writes a snapshot of the heap.
INSTRUMENTED_AGENT = """import cProfile, os, signal, sys, time, tracemalloc
from ketch.cli.main import main
state = {"profile": None, "n": 0, "snapshots": 0}
def toggle(_sig, _frame):
    # SIGUSR1 starts a profile; the next one writes it to PREFIX.N
    if state["profile"] is None:
        state["profile"] = cProfile.Profile(time.thread_time)
        state["profile"].enable()
    else:
        state["profile"].disable()
        state["profile"].dump_stats(f"{sys.argv[1]}.{state['n']}")
        state["profile"], state["n"] = None, state["n"] + 1
def snapshot(_sig, _frame):
    tracemalloc.take_snapshot().dump(f"{sys.argv[1]}.mem.{state['snapshots']}")
    state["snapshots"] += 1
signal.signal(signal.SIGUSR1, toggle)
if os.environ.get("KETCH_BENCH_TRACEMALLOC") == "1":
    tracemalloc.start(8)
    signal.signal(signal.SIGUSR2, snapshot)
main(sys.argv[2:])
"""
MEM_PHASES = ("idle", "pods running", "after the deletes", "after a 2nd cycle")


@dataclass(frozen=True)
class Plan:
    burst: int        # pods of the startup figure
    one_by_one: int   # pods then started one at a time, the burst's pods running
    total: int        # pods of the memory figure
    idle: float       # seconds the agent idles before an RSS reading
    deadline: float   # seconds a phase may take


FULL = Plan(burst=50, one_by_one=20, total=100, idle=10, deadline=180)
QUICK = Plan(burst=20, one_by_one=5, total=40, idle=3, deadline=90)


@dataclass
class Node:
    """What destroy_node (tests/helpers/runtime_node.py) needs to clear one runtime root."""
    base: Path
    root: Path
    netns_name: str
    cgroup_top: str


def make_netns(name: str) -> None:
    subprocess.run(["ip", "netns", "add", name], check=True)
    subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)


def remove_node(node: Node) -> None:
    destroy_node(node)


def bench_pod(i: int) -> dict:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"bench-{i:03d}", "labels": {"app": "bench-agent"}},
            "spec": {"containers": [{"name": "sleep", "image": IMAGE, "command": ["sleep", "3600"],
                                     "imagePullPolicy": "IfNotPresent"}],
                     "terminationGracePeriodSeconds": 1}}


def running(pod: dict) -> bool:
    status = pod.get("status") or {}
    statuses = status.get("containerStatuses") or []
    return status.get("phase") == "Running" and bool(statuses) and all(
        "running" in (s.get("state") or {}) for s in statuses)


def seconds(timestamp: str) -> float:
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()


def summary(ms: list[float]) -> str:
    return (f"p50 {percentile(ms, 0.5):7.1f} ms  p99 {percentile(ms, 0.99):7.1f} ms  "
            f"min {min(ms):7.1f}  max {max(ms):7.1f}  (n={len(ms)})")


# ---- baselines: the raw runtime ---------------------------------------------------------------

def raw_runc(node: Node, store: ImageStore, runs: int) -> list[float]:
    """ms per busybox `sleep 3600` started with `runc run -d` on a fresh overlay of the image (its
    own, empty network namespace: runc's default spec), one after another."""
    image = store.resolve(IMAGE)
    work = node.root
    runc_root = work / "runc"
    runc_root.mkdir(parents=True)
    template = work / "template"
    template.mkdir()
    subprocess.run(["runc", "spec"], cwd=template, check=True)
    spec = json.loads((template / "config.json").read_text())
    spec["process"].update(terminal=False, args=["sleep", "3600"])
    spec["root"] = {"path": "rootfs", "readonly": False}
    out = []
    try:
        for i in range(runs):
            bundle = work / f"c{i}"
            bundle.mkdir()
            spec["linux"]["cgroupsPath"] = f"{node.cgroup_top}/raw-{i}"   # relative: under our own cgroup
            t = time.perf_counter()
            store.mount_rootfs(image, bundle / "rootfs", bundle / "overlay")
            (bundle / "config.json").write_text(json.dumps(spec))
            subprocess.run(["runc", "--root", str(runc_root), "run", "-d", f"raw-{i}"], cwd=bundle, check=True,
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            out.append((time.perf_counter() - t) * 1000)
    finally:
        for cid in sorted(os.listdir(runc_root)):
            subprocess.run(["runc", "--root", str(runc_root), "delete", "--force", cid], capture_output=True)
        for i in range(runs):
            with contextlib.suppress(OSError):
                store.unmount_rootfs(work / f"c{i}" / "rootfs")
    return out


async def runtime_pods(node: Node, store: ImageStore, burst: int, one_by_one: int,
                       concurrencies: tuple[int, ...]) -> tuple[dict[int, list[float]], list[float]]:
    """The agent's runtime alone. For each concurrency c: ms from a burst's start until each of
    `burst` pods (sandbox + busybox container) is started, c at a time, on an empty node. Then, the
    last burst's pods running, ms for each of `one_by_one` more pods started one after another."""
    image = store.resolve(IMAGE)
    rt = RuncRuntime(node.root, store, CNIConfig(pod_cidr="10.251.0.0/24"), host_netns=f"/run/netns/{node.netns_name}",
                     cgroup_root=f"{node.cgroup_top}/kubepods")

    async def start_pod(i: int) -> None:
        scfg = rt_api.PodSandboxConfig(name=f"raw-{i:03d}", namespace="bench", uid=f"uid-raw-{i}",
                                       hostname=f"raw-{i:03d}", labels={"app": "bench-raw"})
        sid = await rt.run_pod_sandbox(scfg)
        ccfg = rt_api.ContainerConfig(name="sleep", image=image, command=["sleep", "3600"],
                                      log_path=str(node.base / "logs" / f"raw-{i:03d}.log"))
        cid = await rt.create_container(sid, ccfg, scfg)
        await rt.start_container(cid)

    async def remove_all() -> None:
        for sb in await rt.list_pod_sandboxes():
            with contextlib.suppress(Exception):
                await rt.stop_pod_sandbox(sb.id)
                await rt.remove_pod_sandbox(sb.id)

    bursts: dict[int, list[float]] = {}
    alone: list[float] = []
    try:
        for n, concurrency in enumerate(concurrencies):
            if n:
                await remove_all()
            done = bursts[concurrency] = []
            t0 = time.perf_counter()

            async def in_the_burst(i: int) -> None:
                await start_pod(i)
                done.append((time.perf_counter() - t0) * 1000)  # noqa: B023 - awaited within the iteration
            await common.in_flight(burst, in_the_burst, concurrency=concurrency)
        for i in range(burst, burst + one_by_one):
            t = time.perf_counter()
            await start_pod(i)
            alone.append((time.perf_counter() - t) * 1000)
    finally:
        await remove_all()
        await rt.close()
    return bursts, alone


# ---- the cluster ------------------------------------------------------------------------------

class Cluster:
    def __init__(self, work: Path, tag: str):
        self.work = work
        self.data = work / "data"
        self.netns = f"ketch-bench-{tag}"
        self.cgroup_top = f"ketch-bench-{tag}"
        self.node = Node(base=work, root=self.data / "agent" / NODE / "runtime", netns_name=self.netns,
                         cgroup_top=self.cgroup_top)
        self.server: subprocess.Popen | None = None
        self.agent: subprocess.Popen | None = None
        self.kubeconfig: Path | None = None
        self.profile = work / "agent.prof"     # .0: the startup burst, .1: the delete burst

    def start(self) -> None:
        make_netns(self.netns)
        common.on_cleanup(self.clear)
        self.server, self.kubeconfig = common.start_server(self.work)
        argv = ["agent", "--kubeconfig", str(self.kubeconfig), "--data-dir",
                str(self.data), "--node-name", NODE, "--node-netns", self.netns, "--kubelet-port", "0",
                "--cgroup-root", f"{self.cgroup_top}/kubepods", "--max-pods", "110"]
        instrumented = PROFILE or MEMTRACE
        argv = ["-c", INSTRUMENTED_AGENT, str(self.profile), *argv] if instrumented else ["-m", "ketch.cli.main", *argv]
        self.agent = common.spawn([sys.executable, *argv], self.work / "agent.log", cpu=None)

    def toggle_profile(self) -> None:
        if PROFILE:
            self.agent.send_signal(signal.SIGUSR1)

    def heap_snapshot(self) -> None:
        if MEMTRACE:
            self.agent.send_signal(signal.SIGUSR2)

    def heap_report(self) -> None:
        """What the agent's Python heap holds more of: with the pods running than idle (the per-pod
        cost), and after a second create/delete cycle than after the first (a leak)."""
        import tracemalloc
        paths = [self.profile.with_name(f"{self.profile.name}.mem.{n}") for n in range(len(MEM_PHASES))]
        if not all(p.exists() for p in paths):
            return
        snaps = [tracemalloc.Snapshot.load(str(p)) for p in paths]
        for new, old in ((1, 0), (3, 2)):
            diff = snaps[new].compare_to(snaps[old], "lineno")
            grown = sum(d.size_diff for d in diff)
            print(f"\nagent heap (tracemalloc), {MEM_PHASES[new]} vs {MEM_PHASES[old]}: {grown / 1024:+.0f} kB; "
                  "largest changes:")
            for d in diff[:15]:
                print(f"  {d.size_diff / 1024:+8.0f} kB {d.count_diff:+7d} blocks  {d.traceback}")
            top = snaps[new].compare_to(snaps[old], "traceback")[:3]
            for d in top:
                print(f"  {d.size_diff / 1024:+8.0f} kB from:")
                for line in d.traceback.format()[-12:]:
                    print(f"      {line}")

    def stop_agent(self) -> None:
        """SIGTERM: the agent leaves its containers running, as a kubelet does."""
        if self.agent is not None:
            common.stop(self.agent, grace=20)

    def clear(self) -> None:
        """The pods of the stopped agent (`ketch killall`), then whatever remains."""
        if self.node.root.is_dir():
            subprocess.run([sys.executable, "-m", "ketch.cli.main", "killall", "--data-dir", str(self.data)],
                           cwd=common.ROOT, capture_output=True, timeout=300)
        remove_node(self.node)

    def client(self) -> Client:
        return Client(kubeconfig.load(self.kubeconfig), user_agent="bench-agent")


async def wait_node_ready(client: Client, cluster: Cluster, timeout: float = 60) -> None:
    nodes = client.resource("v1", "Node")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cluster.agent.poll() is not None:
            raise RuntimeError(f"the agent exited:\n{common.log_tail(cluster.work / 'agent.log')}")
        with contextlib.suppress(Exception):
            node = await nodes.get(NODE)
            if node["spec"].get("podCIDR") and any(c.get("type") == "Ready" and c.get("status") == "True"
                                                   for c in node["status"].get("conditions") or ()):
                return
        await asyncio.sleep(0.2)
    raise RuntimeError(f"node {NODE} not Ready:\n{common.log_tail(cluster.work / 'agent.log')}")


async def wait_service_account(client: Client, namespace: str = "default", timeout: float = 30) -> None:
    """Admission needs the namespace's default ServiceAccount before pods can be created."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            await client.resource("v1", "ServiceAccount").get("default", namespace=namespace)
            return
        await asyncio.sleep(0.1)
    raise RuntimeError("no default ServiceAccount")


class PodWatch:
    """A watch of the namespace's pods from now on: when each was first seen Running (container
    running), and when each was deleted, on this process's perf_counter clock."""

    def __init__(self, client: Client, namespace: str = "default"):
        self.pods = client.resource("v1", "Pod")
        self.namespace = namespace
        self.running_at: dict[str, float] = {}
        self.gone_at: dict[str, float] = {}
        self.last: dict[str, dict] = {}
        self.changed = asyncio.Event()
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        rv = (await self.pods.list(self.namespace, limit=1))["metadata"]["resourceVersion"]
        self._task = asyncio.create_task(self._run(rv))
        await asyncio.sleep(0.1)

    async def _run(self, rv: str) -> None:
        while True:
            async for ev in self.pods.watch(self.namespace, resourceVersion=rv, allowWatchBookmarks=True,
                                            timeoutSeconds=600):
                now = time.perf_counter()
                obj = ev.get("object") or {}
                rv = obj.get("metadata", {}).get("resourceVersion", rv)
                name = obj.get("metadata", {}).get("name")
                if ev.get("type") == "BOOKMARK" or not name:
                    continue
                if ev.get("type") == "DELETED":
                    self.gone_at.setdefault(name, now)
                    self.last.pop(name, None)
                else:
                    self.last[name] = obj
                    if running(obj):
                        self.running_at.setdefault(name, now)
                self.changed.set()

    async def until(self, done, deadline: float, what: str) -> None:
        end = time.monotonic() + deadline
        while not done():
            self.changed.clear()
            left = end - time.monotonic()
            if left <= 0:
                raise RuntimeError(f"{what}: not done after {deadline}s")
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.changed.wait(), left)

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task


async def create_burst(client: Client, names_and_pods: list[tuple[str, dict]]) -> dict[str, float]:
    """Create the pods all at once; returns when each create was sent."""
    pods = client.resource("v1", "Pod", "default")
    sent: dict[str, float] = {}

    async def one(i: int) -> None:
        name, pod = names_and_pods[i]
        sent[name] = time.perf_counter()
        await pods.create(pod)
    await common.in_flight(len(names_and_pods), one, concurrency=len(names_and_pods))
    return sent


async def idle_reading(pid: int, idle: float) -> tuple[float, float]:
    """After `idle` seconds: the process's VmRSS in MB, and its CPU meanwhile in % of a core."""
    cpu = common.cpu_seconds(pid)
    await asyncio.sleep(idle)
    return common.status_mb(pid), 100 * (common.cpu_seconds(pid) - cpu) / idle


async def delete_all(client: Client, watch: PodWatch, names: list[str], deadline: float) -> tuple[list[float], float]:
    """Delete the pods in one burst: ms from each delete until the watch saw it gone, and seconds
    from the first delete to the last pod gone."""
    pods = client.resource("v1", "Pod", "default")
    deleted: dict[str, float] = {}

    async def delete(i: int) -> None:
        deleted[names[i]] = time.perf_counter()
        await pods.delete(names[i])
    await common.in_flight(len(names), delete, concurrency=len(names))
    await watch.until(lambda: all(n in watch.gone_at for n in names), deadline, f"{len(names)} pods gone")
    gone = [(watch.gone_at[n] - deleted[n]) * 1000 for n in names]
    return gone, max(watch.gone_at[n] for n in names) - min(deleted.values())


def rss_parts(pid: int) -> str:
    """VmRSS split: anonymous (the heap: Python objects, arenas) and file-backed (mapped shared
    libraries and the interpreter, shared with other processes)."""
    return (f"anon {common.status_mb(pid, 'RssAnon'):.1f} MB + file {common.status_mb(pid, 'RssFile'):.1f} MB "
            f"+ shmem {common.status_mb(pid, 'RssShmem'):.1f} MB")


def connections_to(pid: int, port: int) -> int:
    """How many established TCP connections process `pid` holds to loopback port `port`."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/net/{Path(table).name}").read_text().splitlines()[1:]:
                fields = line.split()
                remote_port = int(fields[2].rsplit(":", 1)[1], 16)
                if fields[3] == "01" and remote_port == port and fields[9] in inodes:
                    count += 1
    return count


def monitors_rss(root: Path) -> tuple[int, float]:
    """How many conmon processes monitor containers under `root`, and their VmRSS in MB together."""
    count, total = 0, 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            cmdline = (entry / "cmdline").read_bytes()
            if cmdline.startswith(b"conmon") or b"/conmon\0" in cmdline:
                if str(root).encode() in cmdline:
                    count += 1
                    total += common.status_mb(int(entry.name))
    return count, total


# ---- the run ------------------------------------------------------------------------------------

async def main_async(plan: Plan, cycles: int = 2) -> int:
    work = common.temp_dir("ketch-bench-agent-")
    tag = secrets.token_hex(4)
    store = ImageStore(work / "data" / "images")
    bundled.ensure(store, [IMAGE])
    figures: list[Figure] = []

    # Baselines first, with no agent running.
    raw_node = Node(base=work / "raw", root=work / "raw", netns_name=f"ketch-bench-{tag}-none",
                    cgroup_top=f"ketch-bench-{tag}-raw")   # no netns: runc's default spec makes one per container
    common.on_cleanup(lambda: remove_node(raw_node))
    raw = raw_runc(raw_node, store, RAW_RUNS)
    remove_node(raw_node)
    print(f"runc run -d (overlay + run), one at a time:   {summary(raw)}", flush=True)
    base_node = Node(base=work / "baseline", root=work / "baseline" / "runtime", netns_name=f"ketch-bench-{tag}-rt",
                     cgroup_top=f"ketch-bench-{tag}-rt")
    make_netns(base_node.netns_name)
    common.on_cleanup(lambda: remove_node(base_node))
    with CpuMeter(os.getpid()) as meter:
        bursts, floor_alone = await runtime_pods(base_node, store, plan.burst, plan.one_by_one,
                                                 (plan.burst, CAPPED))
    floor, capped = bursts[plan.burst], bursts[CAPPED]
    print(f"RuncRuntime, burst of {plan.burst} (all at once): {summary(floor)}", flush=True)
    print(f"RuncRuntime, burst of {plan.burst} ({CAPPED} at a time): {summary(capped)}; "
          f"{meter}".replace("server", "this process"), flush=True)
    print(f"RuncRuntime, one pod at a time, {plan.burst} running: {summary(floor_alone)}", flush=True)
    remove_node(base_node)

    cluster = Cluster(work, tag)
    cluster.start()
    agent_pid = cluster.agent.pid
    async with cluster.client() as client:
        await wait_node_ready(client, cluster)
        await wait_service_account(client)
        rss_idle, cpu_idle = await idle_reading(agent_pid, plan.idle)
        cluster.heap_snapshot()
        api_port = int(kubeconfig.load(cluster.kubeconfig).server.rsplit(":", 1)[1])
        print(f"node {NODE} Ready; agent pid {agent_pid}, server pid {cluster.server.pid}; "
              f"idle agent VmRSS {rss_idle:.1f} MB ({rss_parts(agent_pid)}), CPU {cpu_idle:.1f}%, "
              f"{connections_to(agent_pid, api_port)} connections to the API server", flush=True)
        watch = PodWatch(client)
        await watch.start()
        try:
            # startup burst
            burst = [(f"bench-{i:03d}", bench_pod(i)) for i in range(plan.burst)]
            cluster.toggle_profile()
            with CpuMeter(agent_pid) as meter:
                server_cpu, agent_cpu = common.cpu_seconds(cluster.server.pid), common.cpu_seconds(agent_pid)
                sent = await create_burst(client, burst)
                await watch.until(lambda: all(n in watch.running_at for n, _ in burst), plan.deadline,
                                  f"{plan.burst} pods Running")
                server_cpu = common.cpu_seconds(cluster.server.pid) - server_cpu
                agent_cpu = common.cpu_seconds(agent_pid) - agent_cpu
            cluster.toggle_profile()
            watched = [(watch.running_at[n] - sent[n]) * 1000 for n, _ in burst]
            reported = []
            for n, _ in burst:
                pod = watch.last[n]
                started = pod["status"]["containerStatuses"][0]["state"]["running"]["startedAt"]
                reported.append((seconds(started) - seconds(pod["metadata"]["creationTimestamp"])) * 1000)
            span = max(watch.running_at[n] for n, _ in burst) - min(sent.values())
            print(f"startup, {plan.burst} pods in a burst (watched):  {summary(watched)}; "
                  f"all Running after {span:.2f} s", flush=True)
            print(f"startup (kubelet's creationTimestamp -> startedAt, 1 s resolution): {summary(reported)}", flush=True)
            print(f"  {meter}".replace("server", "agent") + f"; API server CPU {server_cpu:.2f} s "
                  f"({server_cpu / plan.burst * 1000:.0f} ms per pod), agent CPU {agent_cpu:.2f} s "
                  f"({agent_cpu / plan.burst * 1000:.0f} ms per pod; its runc/conmon/CNI children not counted)",
                  flush=True)
            figures.append(Figure(f"pod startup p50, {plan.burst}-pod burst, create -> Running", "ms",
                                  500 if plan is FULL else None, False, percentile(watched, 0.5),
                                  percentile(floor, 0.5)))
            figures.append(Figure(f"pod startup p99, {plan.burst}-pod burst", "ms", 1500 if plan is FULL else None,
                                  False, percentile(watched, 0.99), percentile(floor, 0.99)))
            figures.append(Figure(f"  runtime burst {CAPPED} at a time: p50 (vs all at once)", "ms", None, False,
                                  percentile(capped, 0.5), percentile(floor, 0.5)))
            figures.append(Figure(f"  runtime burst {CAPPED} at a time: p99 (vs all at once)", "ms", None, False,
                                  percentile(capped, 0.99), percentile(floor, 0.99)))
            figures.append(Figure("  kubelet-reported startup p50 (1 s resolution)", "ms", None, False,
                                  percentile(reported, 0.5), None))
            figures.append(Figure("  kubelet-reported startup p99 (1 s resolution)", "ms", None, False,
                                  percentile(reported, 0.99), None))
            if PROFILE:
                print("(KETCH_BENCH_PROFILE: the agent runs under cProfile, figures are inflated)")

            # one at a time, the burst's pods running: the latency without queueing behind others
            alone = []
            for i in range(plan.burst, plan.burst + plan.one_by_one):
                name = f"bench-{i:03d}"
                sent = await create_burst(client, [(name, bench_pod(i))])
                await watch.until(lambda name=name: name in watch.running_at, plan.deadline, f"pod {name} Running")
                alone.append((watch.running_at[name] - sent[name]) * 1000)
            print(f"startup, one pod at a time, {plan.burst} running (watched): {summary(alone)}", flush=True)
            figures.append(Figure(f"pod startup p50, one at a time, {plan.burst}+ running", "ms",
                                  500 if plan is FULL else None, False, percentile(alone, 0.5),
                                  percentile(floor_alone, 0.5)))
            figures.append(Figure(f"pod startup p99, one at a time, {plan.burst}+ running", "ms",
                                  1500 if plan is FULL else None, False, percentile(alone, 0.99),
                                  percentile(floor_alone, 0.99)))

            # up to `total` pods; memory
            first = plan.burst + plan.one_by_one
            rest = [(f"bench-{i:03d}", bench_pod(i)) for i in range(first, plan.total)]
            await create_burst(client, rest)
            everyone = [f"bench-{i:03d}" for i in range(plan.total)]
            await watch.until(lambda: all(n in watch.running_at for n in everyone), plan.deadline,
                              f"{plan.total} pods Running")
            rss_full, cpu_full = await idle_reading(agent_pid, plan.idle)
            cluster.heap_snapshot()
            conmons, conmon_mb = monitors_rss(cluster.node.root)
            per_pod = (rss_full - rss_idle) / plan.total
            print(f"{plan.total} pods Running: agent VmRSS {rss_full:.1f} MB ({rss_parts(agent_pid)}; "
                  f"{per_pod * 1024:.0f} kB per pod), idle CPU {cpu_full:.1f}%; "
                  f"{connections_to(agent_pid, api_port)} connections to the API server; "
                  f"{conmons} conmon monitors {conmon_mb:.1f} MB together; server VmRSS "
                  f"{common.status_mb(cluster.server.pid):.1f} MB", flush=True)
            figures.append(Figure(f"agent VmRSS, {plan.total} pods running", "MB", 80 if plan is FULL else None,
                                  False, rss_full, 275))
            figures.append(Figure("  agent VmRSS, idle (no pods)", "MB", None, False, rss_idle, None))
            figures.append(Figure("  agent VmRSS per pod", "kB", None, False, per_pod * 1024, None))
            figures.append(Figure(f"  agent CPU idling with {plan.total} pods (vs no pods)", "% core", None, False,
                                  cpu_full, cpu_idle))

            # delete them all
            cluster.toggle_profile()
            with CpuMeter(agent_pid) as meter:
                gone, span = await delete_all(client, watch, everyone, plan.deadline)
            cluster.toggle_profile()
            print(f"delete, {plan.total} pods in a burst (grace 1 s): {summary(gone)}; all gone after {span:.2f} s; "
                  f"agent {meter}".replace("server", "agent"), flush=True)
            figures.append(Figure(f"pod delete -> gone p50, {plan.total}-pod burst, grace 1 s", "ms", None, False,
                                  percentile(gone, 0.5), None))
            figures.append(Figure(f"pod delete -> gone p99, {plan.total}-pod burst", "ms", None, False,
                                  percentile(gone, 0.99), None))
            rss_after, _ = await idle_reading(agent_pid, plan.idle)
            cluster.heap_snapshot()
            print(f"after the deletes: agent VmRSS {rss_after:.1f} MB ({rss_parts(agent_pid)})", flush=True)
            figures.append(Figure("  agent VmRSS after the pods are gone", "MB", None, False, rss_after, rss_idle))

            # the same again: does the agent's memory keep growing (a leak) or stay (a high-water mark)?
            previous = rss_after
            for cycle in range(2, cycles + 1):
                again = [(f"again{cycle}-{i:03d}", {**bench_pod(i), "metadata": {"name": f"again{cycle}-{i:03d}"}})
                         for i in range(plan.total)]
                await create_burst(client, again)
                await watch.until(lambda again=again: all(n in watch.running_at for n, _ in again), plan.deadline,
                                  f"{plan.total} pods Running again")
                await delete_all(client, watch, [n for n, _ in again], plan.deadline)
                rss_again, _ = await idle_reading(agent_pid, plan.idle)
                if cycle == 2:
                    cluster.heap_snapshot()
                    await asyncio.sleep(2 if MEMTRACE else 0)   # the last snapshot is written
                print(f"after cycle {cycle} of {plan.total} pods: agent VmRSS {rss_again:.1f} MB "
                      f"({rss_parts(agent_pid)})", flush=True)
                figures.append(Figure(f"  agent VmRSS after {plan.total}-pod cycle {cycle} (vs the one before)", "MB",
                                      None, False, rss_again, previous))
                previous = rss_again
        finally:
            await watch.stop()
    cluster.stop_agent()
    common.stop(cluster.server)
    print()
    common.print_table(figures, "baseline")
    print(f"(baselines: startup, the agent's runtime (RuncRuntime) in this process starting a burst of "
          f"{plan.burst} pods all at once (as the kubelet's pod workers), then pods one at a time; raw `runc run -d` p50 {percentile(raw, 0.5):.0f} ms; "
          "RSS, the k3s agent's minimum; after the deletes, the idle agent)")
    if max(CpuMeter.others, default=0) > 15:
        print("note: other processes were busy during the run; figures are noisy")
    if MEMTRACE:
        print("(KETCH_BENCH_TRACEMALLOC: the agent runs with tracemalloc on, its RSS figures are inflated)")
        cluster.heap_report()
    if PROFILE:
        for n, phase in enumerate(("startup burst", "delete burst")):
            path = cluster.profile.with_name(f"{cluster.profile.name}.{n}")
            if not path.exists():
                continue
            kept = Path(f"/tmp/bench-agent-{tag}.{n}.prof")
            kept.write_bytes(path.read_bytes())
            stats = pstats.Stats(str(kept))
            print(f"\nagent profile, {phase}, event-loop thread CPU, by own time ({kept}):")
            stats.sort_stats("tottime").print_stats(25)
            print(f"agent profile, {phase}, event-loop thread CPU, cumulative:")
            stats.sort_stats("cumulative").print_stats(35)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="20-pod burst, 40 pods for memory, short idles")
    parser.add_argument("--cycles", type=int, default=2, help="create/delete cycles of all the pods, to tell a "
                                                              "leak from a high-water mark (default 2)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench_agent: runs containers, needs root", file=sys.stderr)
        return 2
    common.install_cleanup()
    try:
        return asyncio.run(main_async(QUICK if args.quick else FULL, max(1, args.cycles)))
    finally:
        common.cleanup()


if __name__ == "__main__":
    sys.exit(main())
