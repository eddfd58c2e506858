"""Garbage collector benchmark: cascading deletion of many pods on a real `ketch server`.

The server (API server and every controller in one process) runs pinned to one core, this script on
the other. N pods owned by one ConfigMap are created by this script (32 in flight), then the
ConfigMap is deleted in the background and the time until the last pod is gone is measured (a
watch on the namespace's pods). The baseline is the same N pods deleted by this script directly, 32
in flight: what the collector's deletions cost beyond the deletes themselves. Then an idle phase
with the N pods present: the controllers' CPU while nothing changes.

    .venv/bin/python bench/bench_garbage_collector.py            # 10,000 pods
    .venv/bin/python bench/bench_garbage_collector.py --quick    # 2,000 pods
"""
from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import _common as common  # noqa: E402
from bench._common import CpuMeter, Figure  # noqa: E402
from ketch.api.errors import ApiError  # noqa: E402
from ketch.client import kubeconfig  # noqa: E402
from ketch.client.rest import Client  # noqa: E402

CONCURRENCY = 32


async def make_pods(client: Client, ns: str, n: int, owner: dict | None) -> None:
    pods = client.resource("v1", "Pod", ns)
    meta_extra = {"ownerReferences": [owner]} if owner else {}

    async def create(i: int) -> None:
        await pods.create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"p{i}", **meta_extra},
                           "spec": {"schedulerName": "none", "containers": [{"name": "c", "image": "busybox"}]}})
    await common.in_flight(n, create, CONCURRENCY)


async def until_no_pods(client: Client, ns: str) -> None:
    pods = client.resource("v1", "Pod", ns)
    while True:
        listed = await pods.list(limit=1)
        if not listed["items"]:
            return
        rv = listed["metadata"]["resourceVersion"]
        try:
            async for _ev in pods.watch(resourceVersion=rv, timeoutSeconds=2):
                break  # something changed: list again
        except ApiError:
            pass


async def main_async(n: int) -> int:
    common.pin_self_to_load_cpu()
    work = common.temp_dir("ketch-bench-gc-")
    proc, cfg = common.start_server(work)
    figures = []
    async with Client(kubeconfig.load(cfg), user_agent="bench-gc") as client:
        namespaces = client.resource("v1", "Namespace")
        for name in ("bench-direct", "bench-gc"):
            await namespaces.create({"metadata": {"name": name}})
        # Baseline: the script deletes N pods itself.
        await make_pods(client, "bench-direct", n, None)
        pods = client.resource("v1", "Pod", "bench-direct")
        t0 = time.monotonic()
        with CpuMeter(proc.pid) as meter:
            await common.in_flight(n, lambda i: pods.delete(f"p{i}"), CONCURRENCY)
            await until_no_pods(client, "bench-direct")
        t_direct = time.monotonic() - t0
        print(f"  direct       {n} pods deleted by the script in {t_direct:5.1f}s; {meter}", flush=True)
        # The collector: one owner deleted, its N dependents collected.
        cm = await client.resource("v1", "ConfigMap", "bench-gc").create({"metadata": {"name": "owner"}})
        owner = {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": cm["metadata"]["uid"]}
        t0 = time.monotonic()
        await make_pods(client, "bench-gc", n, owner)
        t_create = time.monotonic() - t0
        print(f"  create       {n} owned pods in {t_create:5.1f}s", flush=True)
        with CpuMeter(proc.pid) as meter:
            await asyncio.sleep(5)
        print(f"  idle         5 s with {n} owned pods present; {meter}", flush=True)
        t0 = time.monotonic()
        with CpuMeter(proc.pid) as meter:
            await client.resource("v1", "ConfigMap", "bench-gc").delete("owner", propagationPolicy="Background")
            await until_no_pods(client, "bench-gc")
        t_gc = time.monotonic() - t0
        print(f"  collected    {n} dependents in {t_gc:5.1f}s; {meter}", flush=True)
        figures.append(Figure(f"{n} dependents of a deleted owner collected", "s", None, False, t_gc, t_direct))
    common.stop(proc)
    print()
    common.print_table(figures, "direct deletes")
    print(f"(baseline: the same {n} pods deleted by this script, {CONCURRENCY} in flight)")
    if max(CpuMeter.others, default=0) > 15:
        print("note: other processes were busy during the run; figures are noisy")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2,000 pods")
    args = parser.parse_args()
    common.install_cleanup()
    return asyncio.run(main_async(2000 if args.quick else 10000))


if __name__ == "__main__":
    sys.exit(main())
