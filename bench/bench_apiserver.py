"""API server benchmark: a real `ketch server` process next to etcd 3.4 as the baseline.

The server runs pinned to one core and this script, the load generator, to the other. Both targets
go through the same phases with the same aiohttp client; etcd stores each pod as ketch stored it
(defaults, managedFields...), which is what kube-apiserver would write:

  cold start on an empty data dir   spawn -> first 200 on /readyz (etcd: /health)
  create throughput                 concurrent POSTs of ~1.5 KB pods over keep-alive connections
  GET latency                       open-loop at a steady 500 req/s, measured from the scheduled send time
  LIST                              all pods as JSON and as a Table (etcd: one range over the prefix)
  watch delivery                    100 watch streams on the namespace, then paced writes; latency is
                                    write response -> event arrival at each watcher
  RSS                               VmRSS of the server with all pods stored
  cold start on the existing dir    restart with all pods stored

etcd is driven through its JSON gateway (/v3/kv/put, /v3/kv/range, /v3/watch) over plain HTTP, so the
ratios compare ketch's whole API path (TLS, authentication, decoding, defaulting, validation,
conversion, encoding) with the bare store that kube-apiserver sits on: a reference point, not a
like-for-like comparison.

    .venv/bin/python bench/bench_apiserver.py            # the full figures (10,000 pods), ~1.5 minutes
    .venv/bin/python bench/bench_apiserver.py --quick    # 2,000 pods, shorter phases
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import ssl
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import _common as common  # noqa: E402
from bench._common import CpuMeter, Figure, percentile  # noqa: E402
from ketch.client import kubeconfig  # noqa: E402

ETCD = "/usr/bin/etcd"
NAMESPACE = "default"
TABLE_ACCEPT = "application/json;as=Table;v=v1;g=meta.k8s.io"
READY_TIMEOUT = 30.0
GET_RATE = 500
WATCHERS = 100
NOISE_PCT = 15  # other processes' CPU above which the figures are flagged as noisy


@dataclass(frozen=True)
class Plan:
    pods: int
    create_concurrency: int
    create_deadline: float
    get_seconds: float
    list_repeats: int
    watch_writes: int
    watch_rate: float
    budgets: dict[str, float]  # seconds for all the phases of each target


FULL = Plan(pods=10_000, create_concurrency=32, create_deadline=75, get_seconds=5, list_repeats=3,
            watch_writes=200, watch_rate=20, budgets={"ketch": 170, "etcd": 60})
QUICK = Plan(pods=2_000, create_concurrency=32, create_deadline=25, get_seconds=2, list_repeats=2,
             watch_writes=60, watch_rate=20, budgets={"ketch": 80, "etcd": 40})


@dataclass
class Request:
    method: str
    url: str
    data: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)


def b64(data: bytes | str) -> str:
    return base64.b64encode(data.encode() if isinstance(data, str) else data).decode()


# ---- the two targets --------------------------------------------------------------------------
# Each target turns the benchmark's operations into HTTP requests and knows how to start itself.

class Ketch:
    name = "ketch"
    list_unit = "pods"
    has_table = True

    def __init__(self, work: Path):
        self.work = work
        self.port = common.free_port()
        self.kubeconfig = work / "kubeconfig.yaml"
        self.log = work / "server.log"
        self.base = f"https://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self._ssl: ssl.SSLContext | None = None

    def argv(self) -> list[str]:
        return [sys.executable, "-m", "ketch.cli.main", "server", "--data-dir", str(self.work / "data"),
                "--bind-address", "127.0.0.1", "--secure-port", str(self.port),
                "--write-kubeconfig", str(self.kubeconfig), "--disable-agent",
                # The API server alone, as etcd is storage alone: with no nodes the scheduler would
                # write a FailedScheduling status and event for every pod during the later phases.
                "--disable-scheduler", "--disable-controller-manager"]

    def ready_url(self) -> str:
        return f"{self.base}/readyz"

    def client_ssl(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = kubeconfig.load(self.kubeconfig).ssl_context()
        return self._ssl

    def _pods(self, name: str = "") -> str:
        return f"{self.base}/api/v1/namespaces/{NAMESPACE}/pods" + (f"/{name}" if name else "")

    def create(self, name: str, body: bytes) -> Request:
        return Request("POST", self._pods(), body, {"Content-Type": "application/json"})

    def write_value(self, n: int, name: str, bodies: list[tuple[str, bytes]]) -> bytes:
        return common.pod_bytes(n, name)  # the name is in the body

    def get(self, name: str) -> Request:
        return Request("GET", self._pods(name))

    def list(self, table: bool) -> Request:
        return Request("GET", self._pods(), headers={"Accept": TABLE_ACCEPT if table else "application/json"})

    def count_listed(self, body: bytes, table: bool) -> int:
        doc = orjson.loads(body)
        return len(doc["rows"] if table else doc["items"])

    async def watch(self, session: aiohttp.ClientSession) -> Request:
        # Start at the current revision: a watch without one would first replay every pod as ADDED.
        async with session.get(self._pods(), params={"limit": "1"}) as r:
            body = await r.read()
            if r.status != 200:
                raise RuntimeError(f"LIST ?limit=1 failed: HTTP {r.status}: {body[:300]!r}")
            rv = orjson.loads(body)["metadata"]["resourceVersion"]
        return Request("GET", self._pods() + f"?watch=1&resourceVersion={rv}&timeoutSeconds=120")

    async def watch_established(self, response: aiohttp.ClientResponse) -> None:
        """The 200 is sent once the server has registered the watch."""

    def revisions_in(self, line: bytes) -> list[int]:
        event = orjson.loads(line)
        if event.get("type") in ("ADDED", "MODIFIED", "DELETED"):
            return [int(event["object"]["metadata"]["resourceVersion"])]
        return []

    def revision_of_write(self, body: bytes) -> int:
        return int(orjson.loads(body)["metadata"]["resourceVersion"])


class Etcd:
    name = "etcd"
    list_unit = "keys"
    has_table = False

    def __init__(self, work: Path):
        self.work = work
        self.port, self.peer_port = common.free_port(), common.free_port()
        self.log = work / "etcd.log"
        self.base = f"http://127.0.0.1:{self.port}"
        self.prefix = f"/registry/pods/{NAMESPACE}/"
        self.proc: subprocess.Popen | None = None

    def argv(self) -> list[str]:
        peer = f"http://127.0.0.1:{self.peer_port}"
        return [ETCD, "--name", "bench", "--data-dir", str(self.work / "etcd-data"),
                "--listen-client-urls", self.base, "--advertise-client-urls", self.base,
                "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                "--initial-cluster", f"bench={peer}", "--logger", "zap", "--log-level", "warn"]

    def ready_url(self) -> str:
        return f"{self.base}/health"

    def client_ssl(self) -> bool:
        return False

    def _range(self, key: str, range_end: str | None = None) -> Request:
        doc = {"key": b64(key)} | ({"range_end": b64(range_end)} if range_end else {})
        return Request("POST", f"{self.base}/v3/kv/range", orjson.dumps(doc))

    def _prefix_end(self) -> str:
        return self.prefix[:-1] + chr(ord(self.prefix[-1]) + 1)

    def create(self, name: str, body: bytes) -> Request:
        doc = {"key": b64(self.prefix + name), "value": b64(body)}
        return Request("POST", f"{self.base}/v3/kv/put", orjson.dumps(doc))

    def write_value(self, n: int, name: str, bodies: list[tuple[str, bytes]]) -> bytes:
        return bodies[n % len(bodies)][1]  # the name is in the key; the value the size of a stored pod

    def get(self, name: str) -> Request:
        return self._range(self.prefix + name)

    def list(self, table: bool) -> Request:
        return self._range(self.prefix, self._prefix_end())

    def count_listed(self, body: bytes, table: bool) -> int:
        return int(orjson.loads(body).get("count", 0))

    async def watch(self, session: aiohttp.ClientSession) -> Request:
        doc = {"create_request": {"key": b64(self.prefix), "range_end": b64(self._prefix_end())}}
        return Request("POST", f"{self.base}/v3/watch", orjson.dumps(doc))

    async def watch_established(self, response: aiohttp.ClientResponse) -> None:
        created = orjson.loads(await response.content.readline())
        if not created.get("result", {}).get("created"):
            raise RuntimeError(f"etcd watch not created: {created}")

    def revisions_in(self, line: bytes) -> list[int]:
        result = orjson.loads(line).get("result", {})
        return [int(e["kv"]["mod_revision"]) for e in result.get("events", ())]

    def revision_of_write(self, body: bytes) -> int:
        return int(orjson.loads(body)["header"]["revision"])


Target = Ketch | Etcd


def session(target: Target, limit: int, read_timeout: float = 60) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(ssl=target.client_ssl(), limit=limit, keepalive_timeout=60)
    return aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=None,
                                                                                    sock_read=read_timeout))


async def send(http: aiohttp.ClientSession, req: Request) -> tuple[int, bytes]:
    async with http.request(req.method, req.url, data=req.data, headers=req.headers) as r:
        return r.status, await r.read()


class Errors:
    """Failed requests of a phase: counted, with the first answer kept for the report."""

    def __init__(self) -> None:
        self.count = 0
        self.first = ""

    def check(self, status: int, body: bytes) -> bool:
        if status < 300:
            return True
        self.count += 1
        if not self.first:
            self.first = f"HTTP {status}: {body[:300].decode(errors='replace')}"
        return False

    def __str__(self) -> str:
        return f"; {self.count} failed, first: {self.first}" if self.count else ""


# ---- phases -----------------------------------------------------------------------------------

async def start(target: Target) -> float:
    """Spawn the server and poll its readiness endpoint: seconds from spawn to the first 200."""
    started = time.perf_counter()
    target.proc = common.spawn(target.argv(), target.log)
    # Readiness is unauthenticated, and ketch's CA is not known before its first start.
    connector = aiohttp.TCPConnector(ssl=False, force_close=True)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=1)) as http:
        while time.perf_counter() - started < READY_TIMEOUT:
            if target.proc.poll() is not None:
                raise RuntimeError(f"{target.name} exited with {target.proc.returncode}:\n"
                                   f"{common.log_tail(target.log)}")
            try:
                async with http.get(target.ready_url()) as r:
                    if r.status == 200:
                        return time.perf_counter() - started
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
                pass
            await asyncio.sleep(0.005)
    raise RuntimeError(f"{target.name} not ready after {READY_TIMEOUT}s:\n{common.log_tail(target.log)}")


def shut_down(target: Target) -> None:
    if target.proc is not None:
        common.stop(target.proc)
        target.proc = None


async def create_phase(target: Target, bodies: list[tuple[str, bytes]], plan: Plan
                       ) -> tuple[float, dict[str, bytes]]:
    """Concurrent creates; returns objects/s and the reply to each successful create, by name."""
    requests = iter([(name, target.create(name, body)) for name, body in bodies])
    errors, replies = Errors(), {}
    deadline = time.perf_counter() + plan.create_deadline

    async def worker(http: aiohttp.ClientSession) -> None:
        for name, req in requests:
            if time.perf_counter() > deadline:
                return
            status, reply = await send(http, req)
            if errors.check(status, reply):
                replies[name] = reply

    async with session(target, plan.create_concurrency) as http:
        with CpuMeter(target.proc.pid) as cpu:
            t0 = time.perf_counter()
            await asyncio.gather(*(worker(http) for _ in range(plan.create_concurrency)))
            elapsed = time.perf_counter() - t0
    created = len(replies)
    rate = created / elapsed
    cut = " (stopped at the phase deadline)" if created + errors.count < len(bodies) else ""
    print(f"  create: {created:,} pods in {elapsed:.1f} s over {plan.create_concurrency} connections = "
          f"{rate:,.0f}/s{cut}; {cpu}{errors}", flush=True)
    return rate, replies


async def get_phase(target: Target, names: list[str], plan: Plan) -> list[float]:
    """Open-loop GETs at GET_RATE/s; each latency counts from its scheduled send time."""
    errors = Errors()

    async def paced(http: aiohttp.ClientSession, seconds: float, samples: list[float] | None) -> None:
        tasks = []
        begin = time.perf_counter()
        for n in range(int(GET_RATE * seconds)):
            scheduled = begin + n / GET_RATE
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(http, target.get(names[n * 7919 % len(names)]), scheduled,
                                                 samples)))
        await asyncio.wait_for(asyncio.gather(*tasks), 30)

    async def one(http: aiohttp.ClientSession, req: Request, scheduled: float, samples: list[float] | None) -> None:
        status, body = await send(http, req)
        if samples is not None and errors.check(status, body):
            samples.append(time.perf_counter() - scheduled)

    samples: list[float] = []
    await asyncio.sleep(1)  # "steady": let the server finish what the bulk creates left behind
    async with session(target, 64) as http:
        await paced(http, 1, None)  # warm-up: connections and handshakes, not recorded
        with CpuMeter(target.proc.pid) as cpu:
            await paced(http, plan.get_seconds, samples)
    print(f"  GET at {GET_RATE}/s for {plan.get_seconds:g} s: p50 {1000 * percentile(samples, 0.5):.2f} ms, "
          f"p99 {1000 * percentile(samples, 0.99):.2f} ms, max {1000 * max(samples, default=0):.1f} ms "
          f"({len(samples)} ok); {cpu}{errors}", flush=True)
    return samples


async def list_phase(target: Target, table: bool, expected: int, plan: Plan) -> float | None:
    """Median seconds to receive the whole LIST body; None when it fails."""
    times, errors, size, listed = [], Errors(), 0, 0
    req = target.list(table)
    async with session(target, 1, read_timeout=30) as http:
        for _ in range(plan.list_repeats):
            t0 = time.perf_counter()
            status, body = await send(http, req)
            times.append(time.perf_counter() - t0)
            if not errors.check(status, body):
                break
            size, listed = len(body), target.count_listed(body, table)
    what = "Table" if table else "JSON"
    if errors.count:
        print(f"  LIST as {what}: failed{errors}", flush=True)
        return None
    median = statistics.median(times)
    short = f" (expected {expected:,})" if listed != expected else ""
    print(f"  LIST as {what}: {listed:,} {target.list_unit}{short}, {size / 1e6:.1f} MB, median "
          f"{1000 * median:.0f} ms of {[round(1000 * t) for t in times]} ms", flush=True)
    return median


async def watch_phase(target: Target, plan: Plan, bodies: list[tuple[str, bytes]]) -> list[float]:
    """WATCHERS streams, then paced writes: write response -> arrival at each watcher, in seconds."""
    arrivals: list[list[tuple[int, float]]] = [[] for _ in range(WATCHERS)]
    answered: dict[int, float] = {}
    errors = Errors()

    async def watcher(http: aiohttp.ClientSession, req: Request, seen: list[tuple[int, float]],
                      established: asyncio.Event, counter: list[int]) -> None:
        async with http.request(req.method, req.url, data=req.data, headers=req.headers) as r:
            if not errors.check(r.status, b"" if r.status < 300 else await r.read()):
                return
            await target.watch_established(r)
            counter[0] += 1
            if counter[0] == WATCHERS:
                established.set()
            async for line in r.content:
                now = time.perf_counter()
                if line.strip():
                    seen.extend((rev, now) for rev in target.revisions_in(line))

    async with session(target, 0, read_timeout=60) as watch_http, session(target, 4) as write_http:
        req = await target.watch(watch_http)
        established, counter = asyncio.Event(), [0]
        streams = [asyncio.create_task(watcher(watch_http, req, arrivals[w], established, counter))
                   for w in range(WATCHERS)]
        try:
            await asyncio.wait_for(established.wait(), 20)
            with CpuMeter(target.proc.pid) as cpu:
                begin = time.perf_counter()
                for n in range(plan.watch_writes):
                    delay = begin + n / plan.watch_rate - time.perf_counter()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    name = f"watch-write-{n:04d}"
                    status, reply = await send(write_http, target.create(name, target.write_value(n, name, bodies)))
                    if errors.check(status, reply):
                        answered[target.revision_of_write(reply)] = time.perf_counter()
                # let the last events arrive, boundedly
                wait_until = time.perf_counter() + 10
                while time.perf_counter() < wait_until and \
                        sum(sum(rev in answered for rev, _ in seen) for seen in arrivals) < WATCHERS * len(answered):
                    await asyncio.sleep(0.05)
        finally:
            for task in streams:
                task.cancel()
            await asyncio.gather(*streams, return_exceptions=True)
    samples, early = [], 0
    for seen in arrivals:
        for rev, at in seen:
            if rev in answered:
                early += at < answered[rev]
                samples.append(max(0.0, at - answered[rev]))
    missing = WATCHERS * len(answered) - len(samples)
    print(f"  watch: {WATCHERS} watchers x {len(answered)} writes at {plan.watch_rate:g}/s: "
          f"p50 {1000 * percentile(samples, 0.5):.1f} ms, p99 {1000 * percentile(samples, 0.99):.1f} ms, "
          f"max {1000 * max(samples, default=0):.1f} ms; {len(samples):,} deliveries ({early:,} before the write "
          f"response, counted as 0), {missing:,} missing; {cpu}{errors}", flush=True)
    return samples


# ---- one target, all phases -------------------------------------------------------------------

@dataclass
class Results:
    cold_empty: float | None = None
    cold_existing: float | None = None
    creates_per_s: float | None = None
    get_p50: float | None = None
    get_p99: float | None = None
    list_json: float | None = None
    list_table: float | None = None
    watch_p50: float | None = None
    watch_p99: float | None = None
    rss_mb: float | None = None
    error: str = ""
    stored: dict[str, bytes] = field(default_factory=dict)  # create replies, by name


async def run_target(target: Target, plan: Plan, bodies: list[tuple[str, bytes]], res: Results) -> None:
    print(f"== {target.name}", flush=True)
    res.cold_empty = await start(target)
    print(f"  cold start, empty data dir: {1000 * res.cold_empty:.0f} ms; "
          f"RSS {common.status_mb(target.proc.pid):.0f} MB", flush=True)

    res.creates_per_s, res.stored = await create_phase(target, bodies, plan)
    created = len(res.stored)
    rss_created = common.status_mb(target.proc.pid)

    samples = await get_phase(target, list(res.stored) or [bodies[0][0]], plan)
    res.get_p50, res.get_p99 = 1000 * percentile(samples, 0.5), 1000 * percentile(samples, 0.99)

    json_s = await list_phase(target, False, created, plan)
    res.list_json = None if json_s is None else 1000 * json_s
    if target.has_table:
        table_s = await list_phase(target, True, created, plan)
        res.list_table = None if table_s is None else 1000 * table_s

    watch = await watch_phase(target, plan, bodies)
    res.watch_p50, res.watch_p99 = 1000 * percentile(watch, 0.5), 1000 * percentile(watch, 0.99)

    pid = target.proc.pid
    res.rss_mb = common.status_mb(pid)
    print(f"  RSS with {created:,} pods stored: {rss_created:.0f} MB after the creates, {res.rss_mb:.0f} MB after "
          f"every phase (peak {common.status_mb(pid, 'VmHWM'):.0f} MB)", flush=True)

    shut_down(target)
    res.cold_existing = await start(target)
    print(f"  cold start, existing data dir ({created:,} pods): {1000 * res.cold_existing:.0f} ms; "
          f"RSS {common.status_mb(target.proc.pid):.0f} MB", flush=True)
    shut_down(target)


async def guarded(target: Target, plan: Plan, bodies: list[tuple[str, bytes]], budget: float) -> Results:
    """Run one target within `budget` seconds; a failure is reported and leaves the other target to run."""
    res = Results()
    try:
        await asyncio.wait_for(run_target(target, plan, bodies, res), budget)
    except Exception as e:  # noqa: BLE001 - the report must still come out
        res.error = f"{type(e).__name__}: {e}".strip()
        print(f"  {target.name} failed: {res.error[-2000:]}", flush=True)
    finally:
        shut_down(target)
    return res


def figures(k: Results, e: Results, pods: int) -> list[Figure]:
    return [
        Figure("create throughput", "pods/s", 1000, True, k.creates_per_s, e.creates_per_s),
        Figure("GET p50 at 500/s", "ms", None, False, k.get_p50, e.get_p50),
        Figure("GET p99 at 500/s", "ms", 5, False, k.get_p99, e.get_p99),
        Figure(f"LIST {pods:,} pods as JSON", "ms", 500, False, k.list_json, e.list_json),
        Figure(f"LIST {pods:,} pods as Table", "ms", 500, False, k.list_table, e.list_json,
               "the etcd column is the same range as for JSON (etcd has no Table)"),
        Figure(f"watch p50, {WATCHERS} watchers", "ms", None, False, k.watch_p50, e.watch_p50),
        Figure(f"watch p99, {WATCHERS} watchers", "ms", 50, False, k.watch_p99, e.watch_p99),
        Figure(f"RSS with {pods:,} pods", "MB", 250, False, k.rss_mb, e.rss_mb),
        Figure("cold start, empty dir", "s", 2, False, k.cold_empty, e.cold_empty),
        Figure("cold start, existing dir", "s", 2, False, k.cold_existing, e.cold_existing),
    ]


async def main(plan: Plan, only: str | None) -> int:
    common.pin_self_to_load_cpu()
    bodies = [(f"node-js-pod-{i:05d}", common.pod_bytes(i)) for i in range(plan.pods)]
    print(f"{plan.pods:,} pods of {statistics.mean(len(b) for _, b in bodies):,.0f} bytes of JSON as sent; "
          f"{'server on CPU 0, load generator on CPU 1' if common.can_pin() else 'no CPU pinning (1 core)'}; "
          f"aiohttp {aiohttp.__version__} client; loopback only", flush=True)
    print("baseline: etcd 3.4 (the store real Kubernetes uses) through its JSON gateway over plain HTTP; "
          "ketch/etcd compares ketch's whole API path with kube-apiserver's storage alone", flush=True)
    started = time.perf_counter()
    results = {}
    for cls in (Ketch, Etcd):
        if only and cls.name != only:
            results[cls.name] = Results(error="skipped")
            continue
        if cls is Etcd:
            # etcd gets what kube-apiserver would write: each object as ketch stored it (defaults,
            # managedFields...), or the posted bytes when ketch did not run.
            stored = results["ketch"].stored
            bodies = [(name, stored.get(name, body)) for name, body in bodies]
            print(f"etcd values: {'objects as ketch returned them' if stored else 'pods as posted'}, mean "
                  f"{statistics.mean(len(b) for _, b in bodies):,.0f} bytes", flush=True)
        results[cls.name] = await guarded(cls(common.temp_dir(f"ketch-bench-{cls.name}-")), plan, bodies,
                                          plan.budgets[cls.name])
    print()
    table = figures(results["ketch"], results["etcd"], plan.pods)
    common.print_table(table, "etcd 3.4")
    for f in table:
        if f.note:
            print(f"  {f.name}: {f.note}")
    missed = [f.name for f in table if f.verdict() == "MISS"]
    unmeasured = [f.name for f in table if f.target is not None and f.ketch is None]
    print(f"targets missed: {', '.join(missed) if missed else 'none'}"
          + (f"; not measured: {', '.join(unmeasured)}" if unmeasured else ""))
    busiest = max(CpuMeter.others, default=0.0)
    if busiest > NOISE_PCT:
        print(f"WARNING: other processes used up to {busiest:.0f}% of a core during the measured phases; "
              "the figures are noisy, rerun on an idle machine")
    print(f"bench_apiserver took {time.perf_counter() - started:.0f} s")
    return 1 if any(r.error and r.error != "skipped" for r in results.values()) else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2,000 pods and shorter phases")
    parser.add_argument("--only", choices=("ketch", "etcd"), help="run one target (no ratios)")
    args = parser.parse_args()
    common.install_cleanup()
    try:
        import uvloop
        run = uvloop.run
    except ImportError:
        run = asyncio.run
    try:
        code = run(main(QUICK if args.quick else FULL, args.only))
    finally:
        common.cleanup()
    sys.exit(code)
