"""Control-plane memory: the controller manager and the scheduler with 10,000 pods in their caches.

A `ketch server --disable-controller-manager --disable-scheduler` holds N pods (the rich pod of
bench/_common.py, bound to one of 100 Node objects, so the scheduler caches them as placed and has
nothing to do), owned by ReplicaSets of 100 pods each whose scale matches, so the controllers have
nothing to do either. Then `ketch controller-manager` and `ketch scheduler` start as processes of
their own; once their informers have synced and they are idle, their RSS is read. The baseline is
the same two processes on an empty cluster: the ratio shows what the cached pods cost.

    .venv/bin/python bench/bench_control_plane_memory.py            # 10,000 pods
    .venv/bin/python bench/bench_control_plane_memory.py --quick    # 2,000 pods
"""
from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import _common as common  # noqa: E402
from bench._common import Figure  # noqa: E402
from ketch.client import kubeconfig  # noqa: E402
from ketch.client.rest import Client  # noqa: E402

NODES = 100
PER_SET = 100


async def populate(client: Client, n: int) -> None:
    nodes = client.resource("v1", "Node")

    async def node(i: int) -> None:
        created = await nodes.create({"apiVersion": "v1", "kind": "Node", "metadata": {"name": f"n{i}"}})
        created["status"] = {"capacity": {"cpu": "64", "memory": "256Gi", "pods": "250"},
                             "allocatable": {"cpu": "64", "memory": "256Gi", "pods": "250"},
                             "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}]}
        await nodes.update_status(created)
    await common.in_flight(NODES, node)
    sets = client.resource("apps/v1", "ReplicaSet", "default")
    owners = []
    for s in range(max(1, n // PER_SET)):
        rs = await sets.create({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": f"rs{s}"},
                                "spec": {"replicas": PER_SET, "selector": {"matchLabels": {"set": f"rs{s}"}},
                                         "template": {"metadata": {"labels": {"set": f"rs{s}"}},
                                                      "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}})
        owners.append(rs)
    pods = client.resource("v1", "Pod", "default")

    async def pod(i: int) -> None:
        owner = owners[i // PER_SET]
        body = common.pod(i)
        body["metadata"]["labels"] = {"set": owner["metadata"]["name"]}
        body["metadata"]["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                                "name": owner["metadata"]["name"], "uid": owner["metadata"]["uid"],
                                                "controller": True, "blockOwnerDeletion": True}]
        body["spec"]["nodeName"] = f"n{i % NODES}"
        await pods.create(body)
    await common.in_flight(n, pod)


def settle(procs: dict[str, subprocess.Popen], quiet_for: float = 3.0, timeout: float = 300.0) -> None:
    """Until every process has used under 5% of a core for `quiet_for` seconds (synced and idle)."""
    deadline = time.monotonic() + timeout
    last = {name: common.cpu_seconds(p.pid) for name, p in procs.items()}
    quiet_since = time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = {name: common.cpu_seconds(p.pid) for name, p in procs.items()}
        busy = any(now[k] - last[k] > 0.025 for k in now)
        last = now
        if busy:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since >= quiet_for:
            return
    raise RuntimeError("the control plane did not settle")


def measure(work: Path, cfg: Path, label: str) -> float:
    procs = {name: common.spawn([sys.executable, "-m", "ketch.cli.main", name, "--kubeconfig", str(cfg),
                                 "--no-leader-elect"], work / f"{name}-{label}.log")
             for name in ("controller-manager", "scheduler")}
    try:
        time.sleep(2)
        settle(procs)
        rss = {name: common.status_mb(p.pid) for name, p in procs.items()}
        print(f"  {label:<10} controller-manager {rss['controller-manager']:6.1f} MB, scheduler "
              f"{rss['scheduler']:6.1f} MB", flush=True)
        return sum(rss.values())
    finally:
        for p in procs.values():
            common.stop(p)


async def main_async(n: int) -> int:
    common.pin_self_to_load_cpu()
    figures = []
    work = common.temp_dir("ketch-bench-cpmem-")
    proc, cfg = common.start_server(work, "--disable-controller-manager", "--disable-scheduler")
    try:
        empty = measure(work, cfg, "empty")
        async with Client(kubeconfig.load(cfg), user_agent="bench-cpmem") as client:
            t0 = time.monotonic()
            await populate(client, n)
            print(f"  populated  {n} pods on {NODES} nodes in {time.monotonic() - t0:.1f}s", flush=True)
        full = measure(work, cfg, f"{n} pods")
    finally:
        common.stop(proc)
    figures.append(Figure(f"controller manager + scheduler RSS, {n} pods cached", "MB",
                          300 if n >= 10000 else None, False, full, empty))
    print()
    common.print_table(figures, "empty cluster")
    print("(baseline: the same two processes with no pods)")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2,000 pods")
    args = parser.parse_args()
    common.install_cleanup()
    return asyncio.run(main_async(2000 if args.quick else 10000))


if __name__ == "__main__":
    sys.exit(main())
