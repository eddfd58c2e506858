"""Store benchmark: group-committed SQLiteStore next to a naive sqlite3 baseline.

Prints creates/s (concurrent and sequential), GET latency at 500 req/s under
writes, LIST time for 10,000 ~1.5 KB objects, watch delivery latency with 100
watchers and the process RSS with 10,000 pods stored. Runs in well under 60 s.
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ketch.storage import SQLiteStore

PODS = 10_000
CONCURRENCY = 500
BASELINE_INSERTS = 2_000
WATCHERS = 100
WATCH_EVENTS = 500


def pod_json(i: int) -> bytes:
    """A pod-shaped JSON document of about 1.5 KB."""
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"pod-{i:05d}",
            "namespace": "default",
            "uid": f"{i:08d}-0000-4000-8000-000000000000",
            "labels": {"app": "bench", "tier": str(i % 7)},
            "annotations": {"note": "x" * 1180},
        },
        "spec": {
            "containers": [
                {"name": "app", "image": "nginx:1.27", "ports": [{"containerPort": 80}]}
            ]
        },
        "status": {"phase": "Running", "podIP": f"10.0.{i // 256 % 256}.{i % 256}"},
    }
    return orjson.dumps(pod)


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.3f} ms"


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def naive_baseline(path: str, values: list[bytes]) -> float:
    """One autocommit INSERT per object, same journal and sync settings: inserts/s."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE log (id INTEGER PRIMARY KEY, name TEXT, value BLOB)")
    started = time.perf_counter()
    for i, value in enumerate(values):
        conn.execute(
            "INSERT INTO log (name, value) VALUES (?, ?)", (f"/naive/{i}", value)
        )
    elapsed = time.perf_counter() - started
    conn.close()
    return len(values) / elapsed


async def concurrent_creates(store: SQLiteStore, values: list[bytes]) -> float:
    keys = iter(range(len(values)))

    async def worker() -> None:
        for i in keys:
            await store.create(f"/registry/pods/default/pod-{i:05d}", values[i])

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return len(values) / (time.perf_counter() - started)


async def sequential_creates(store: SQLiteStore, value: bytes, n: int) -> float:
    started = time.perf_counter()
    for i in range(n):
        await store.create(f"/registry/seq/{i}", value)
    return n / (time.perf_counter() - started)


async def get_latency_at_rate(
    store: SQLiteStore, rate: int, seconds: float
) -> list[float]:
    """GETs paced at `rate`/s while a writer updates pods at 200/s; each GET's latency."""
    stop = asyncio.Event()

    async def background_writes() -> None:
        while not stop.is_set():
            i = random.randrange(PODS)
            await store.update(f"/registry/pods/default/pod-{i:05d}", pod_json(i))
            await asyncio.sleep(1 / 200)

    async def one_get(key: str, samples: list[float]) -> None:
        started = time.perf_counter()
        await store.get(key)
        samples.append(time.perf_counter() - started)

    writer = asyncio.create_task(background_writes())
    samples: list[float] = []
    pending = []
    begin = time.perf_counter()
    for n in range(int(rate * seconds)):
        delay = begin + n / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        key = f"/registry/pods/default/pod-{random.randrange(PODS):05d}"
        pending.append(asyncio.create_task(one_get(key, samples)))
    await asyncio.gather(*pending)
    stop.set()
    await writer
    return samples


async def timed(coro_factory, repeat: int) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        await coro_factory()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


async def watch_latency(store: SQLiteStore) -> list[float]:
    sent: dict[int, float] = {}
    samples: list[float] = []
    watches = [store.watch("/registry/pods/", 0) for _ in range(WATCHERS)]

    async def consume(watch) -> None:  # type: ignore[no-untyped-def]
        received = 0
        async for event in watch:
            samples.append(time.perf_counter() - sent[event.revision])
            received += 1
            if received == WATCH_EVENTS:
                break

    consumers = [asyncio.create_task(consume(w)) for w in watches]
    value = pod_json(0)
    for n in range(WATCH_EVENTS):
        # the revision this update will get: nothing else writes during this phase
        sent[store.current_revision() + 1] = time.perf_counter()
        await store.update(f"/registry/pods/default/pod-{n:05d}", value)
        await asyncio.sleep(1 / 500)
    await asyncio.wait_for(asyncio.gather(*consumers, return_exceptions=True), 20)
    for watch in watches:
        watch.close()
    return samples


async def main() -> None:
    workdir = tempfile.mkdtemp(prefix="ketch-bench-store-")
    try:
        values = [
            bytes(memoryview(pod_json(i))) for i in range(PODS)
        ]  # tight, as the store keeps them
        print(
            f"object size: {statistics.mean(map(len, values)):.0f} bytes; sqlite {sqlite3.sqlite_version}"
        )

        baseline = naive_baseline(
            os.path.join(workdir, "naive.db"), values[:BASELINE_INSERTS]
        )
        store = SQLiteStore(os.path.join(workdir, "store.db"))
        await store.start()
        try:
            creates = await concurrent_creates(store, values)
            print(f"creates/s, {CONCURRENCY} concurrent, group commit: {creates:,.0f}")
            print(f"creates/s, naive autocommit-per-insert baseline:   {baseline:,.0f}")
            print(f"  ratio store/naive: {creates / baseline:.1f}x")
            sequential = await sequential_creates(store, values[0], 1000)
            del values  # from here on only the store holds the pods
            print(
                f"creates/s, one at a time (fsync per create):       {sequential:,.0f}"
            )
            for i in range(1000):
                await store.delete(f"/registry/seq/{i}")
            print(f"RSS with {PODS:,} pods stored: {rss_mb():.0f} MB")

            samples = await get_latency_at_rate(store, 500, 3.0)
            print(
                f"GET at 500 req/s under 200 writes/s: p50 {ms(percentile(samples, 0.5))}, "
                f"p99 {ms(percentile(samples, 0.99))} ({len(samples)} gets)"
            )

            latest = await timed(lambda: store.range("/registry/pods/"), 5)
            result = await store.range("/registry/pods/")
            assert len(result.kvs) == PODS
            as_json = await timed(lambda: _range_as_json_list(store), 5)
            old_rev = store.current_revision() - 100
            historic = await timed(
                lambda: store.range("/registry/pods/", revision=old_rev), 3
            )
            print(
                f"range of {PODS:,} x ~1.5 KB at latest: {ms(latest)}; "
                f"plus joining a JSON list body: {ms(as_json)}; "
                f"at an older revision (SQLite): {ms(historic)}"
            )

            deliveries = await watch_latency(store)
            print(
                f"watch delivery, {WATCHERS} watchers x {WATCH_EVENTS} events at 500/s: "
                f"p50 {ms(percentile(deliveries, 0.5))}, p99 {ms(percentile(deliveries, 0.99))}"
            )
            print(f"RSS at the end: {rss_mb():.0f} MB")
        finally:
            await store.close()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


async def _range_as_json_list(store: SQLiteStore) -> bytes:
    result = await store.range("/registry/pods/")
    return b'{"items":[' + b",".join(kv.value for kv in result.kvs) + b"]}"


if __name__ == "__main__":
    started = time.perf_counter()
    asyncio.run(main())
    print(f"bench_store took {time.perf_counter() - started:.1f} s")
