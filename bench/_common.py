"""Helpers shared by the benchmarks: child processes pinned to a core, /proc readings, the
benchmark pod, percentiles and the result table.

Every process started here is recorded and killed by PID on exit, whatever the way out.
"""
from __future__ import annotations

import asyncio
import atexit
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[1]
SERVER_CPU, LOAD_CPU = 0, 1
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

_children: list[subprocess.Popen] = []
_temp_dirs: list[Path] = []
_cleanups: list = []   # callables run after the children die and before the temp dirs go


# ---- processes ----------------------------------------------------------------------------------

def can_pin() -> bool:
    return (os.cpu_count() or 1) >= 2 and shutil.which("taskset") is not None


def pin_self_to_load_cpu() -> None:
    """The load generator gets its own core, so it never competes with the server under test."""
    if can_pin():
        os.sched_setaffinity(0, {LOAD_CPU})


def spawn(argv: list[str], log_path: Path, cwd: Path = ROOT, cpu: int | None = SERVER_CPU) -> subprocess.Popen:
    """Start a server on `cpu` (taskset execs it, so the PID is the server's own; None: any core)."""
    prefix = ["taskset", "-c", str(cpu)] if cpu is not None and can_pin() else []
    with open(log_path, "ab") as log:
        proc = subprocess.Popen([*prefix, *argv], stdout=log, stderr=subprocess.STDOUT, cwd=cwd,
                                stdin=subprocess.DEVNULL)
    _children.append(proc)
    return proc


def start_server(work: Path, *extra: str, timeout: float = 30.0) -> tuple[subprocess.Popen, Path]:
    """`ketch server` on SERVER_CPU with its data under `work`; returns it and its kubeconfig once
    the kubeconfig is written."""
    cfg = work / "kubeconfig.yaml"
    proc = spawn([sys.executable, "-m", "ketch.cli.main", "server", "--data-dir", str(work / "data"),
                  "--bind-address", "127.0.0.1", "--secure-port", str(free_port()),
                  "--write-kubeconfig", str(cfg), "--disable-agent", *extra], work / "server.log")
    deadline = time.monotonic() + timeout
    while not cfg.exists():
        if time.monotonic() > deadline or proc.poll() is not None:
            raise RuntimeError(f"server did not start:\n{log_tail(work / 'server.log')}")
        time.sleep(0.05)
    return proc, cfg


async def in_flight(n: int, fn, concurrency: int = 32) -> None:
    """`await fn(i)` for i in range(n), `concurrency` at a time."""
    sem = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with sem:
            await fn(i)
    await asyncio.gather(*(one(i) for i in range(n)))


def stop(proc: subprocess.Popen, grace: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after `grace` seconds: this PID only."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc in _children:
        _children.remove(proc)


def temp_dir(prefix: str) -> Path:
    path = Path(tempfile.mkdtemp(prefix=prefix))
    _temp_dirs.append(path)
    return path


def on_cleanup(fn) -> None:
    """Run `fn()` at cleanup, after the children are killed and before the temp dirs are removed
    (e.g. unmounting what a child left mounted under them)."""
    _cleanups.append(fn)


def cleanup() -> None:
    for proc in list(_children):
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        _children.remove(proc)
    while _cleanups:
        fn = _cleanups.pop()
        try:
            fn()
        except Exception as e:  # noqa: BLE001 - the rest of the cleanup must still run
            print(f"cleanup {getattr(fn, '__name__', fn)}: {e}", file=sys.stderr)
    for path in list(_temp_dirs):
        shutil.rmtree(path, ignore_errors=True)
        _temp_dirs.remove(path)


def install_cleanup() -> None:
    """Children and temp dirs go away on normal exit, on exceptions and on SIGTERM/SIGINT/SIGHUP."""
    atexit.register(cleanup)

    def on_signal(signum, _frame) -> None:  # noqa: ANN001
        cleanup()
        os._exit(128 + signum)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_signal)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def log_tail(path: Path, size: int = 3000) -> str:
    return path.read_text(errors="replace")[-size:] if path.exists() else ""


# ---- /proc --------------------------------------------------------------------------------------

def status_mb(pid: int, field: str = "VmRSS") -> float:
    """A memory figure of a process from /proc/PID/status, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def busy_cpu_seconds() -> float:
    """CPU time the whole machine spent not idle (all cores), from /proc/stat."""
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, Path("/proc/stat").read_text()
                                                                  .split("\n", 1)[0].split()[1:9])
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS


class CpuMeter:
    """CPU use over a phase, as % of one core: the server, this load generator, and everything else
    on the machine (which makes the figures noisy when it is not near 0)."""

    others: list[float] = []  # the "everything else" reading of every phase so far

    def __init__(self, server_pid: int):
        self.server_pid = server_pid

    def __enter__(self) -> CpuMeter:
        self._wall = time.perf_counter()
        self._own = time.process_time()
        self._server = cpu_seconds(self.server_pid)
        self._busy = busy_cpu_seconds()
        return self

    def __exit__(self, *exc: object) -> None:
        wall = time.perf_counter() - self._wall
        server = cpu_seconds(self.server_pid) - self._server
        own = time.process_time() - self._own
        self.server_pct = 100 * server / wall
        self.client_pct = 100 * own / wall
        self.other_pct = max(0.0, 100 * (busy_cpu_seconds() - self._busy - server - own) / wall)
        CpuMeter.others.append(self.other_pct)

    def __str__(self) -> str:
        return (f"CPU: server {self.server_pct:.0f}%, load generator {self.client_pct:.0f}%, "
                f"other processes {self.other_pct:.0f}%")


# ---- workload -----------------------------------------------------------------------------------

def pod(i: int, name: str | None = None, namespace: str = "default") -> dict:
    """A realistic pod: the book's Chapter02 node-js pod with labels, probes, env and resources."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name or f"node-js-pod-{i:05d}",
            "namespace": namespace,
            "labels": {"name": "node-js-labels", "app": "node-js-express", "deployment": "test",
                       "tier": ("frontend", "backend", "cache")[i % 3], "shard": str(i % 16)},
            "annotations": {"kubernetes.io/description": "Node.js express info service, benchmark replica "
                                                         f"{i} of the Chapter02 example",
                            "example.com/build": f"build-{i * 7919 % 100000:05d}-a1b2c3d4e5f6"},
        },
        "spec": {
            "containers": [{
                "name": "node-js-pod",
                "image": "jonbaier/node-express-info:latest",
                "ports": [{"name": "http", "containerPort": 80, "protocol": "TCP"}],
                "env": [{"name": "NODE_ENV", "value": "production"},
                        {"name": "PORT", "value": "80"},
                        {"name": "REPLICA", "value": str(i)},
                        {"name": "LOG_LEVEL", "value": "info"},
                        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
                "resources": {"requests": {"cpu": "100m", "memory": "128Mi"},
                              "limits": {"cpu": "500m", "memory": "256Mi"}},
                "livenessProbe": {"httpGet": {"path": "/", "port": 80}, "initialDelaySeconds": 30,
                                  "timeoutSeconds": 1},
                "readinessProbe": {"httpGet": {"path": "/status/", "port": 80}, "initialDelaySeconds": 30,
                                   "timeoutSeconds": 1},
                "imagePullPolicy": "IfNotPresent",
                "securityContext": {"runAsNonRoot": True, "runAsUser": 1000, "allowPrivilegeEscalation": False},
                "volumeMounts": [{"name": "config", "mountPath": "/etc/node-js", "readOnly": True}],
            }],
            "volumes": [{"name": "config", "configMap": {"name": "node-js-config"}}],
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 30,
            "nodeSelector": {"kubernetes.io/os": "linux"},
        },
    }


def pod_bytes(i: int, name: str | None = None) -> bytes:
    return orjson.dumps(pod(i, name))


# ---- figures ------------------------------------------------------------------------------------

def percentile(samples: list[float], q: float) -> float:
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass
class Figure:
    """One line of the result table. `higher_is_better` decides how the target is checked."""
    name: str
    unit: str
    target: float | None
    higher_is_better: bool
    ketch: float | None = None
    baseline: float | None = None
    note: str = ""

    def verdict(self) -> str:
        if self.target is None or self.ketch is None:
            return ""
        ok = self.ketch >= self.target if self.higher_is_better else self.ketch <= self.target
        return "ok" if ok else "MISS"


def _fmt(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.1f}" if abs(value) >= 10 else f"{value:,.2f}"


def print_table(figures: list[Figure], baseline_name: str) -> None:
    header = ("figure", "ketch", "target", baseline_name, f"ketch/{baseline_name.split()[0]}", "")
    rows = []
    for f in figures:
        target = "" if f.target is None else f"{'>=' if f.higher_is_better else '<='} {_fmt(f.target)}"
        ratio = (f"{f.ketch / f.baseline:.2f}x" if f.ketch is not None and f.baseline else "n/a")
        rows.append((f"{f.name} ({f.unit})", _fmt(f.ketch), target, _fmt(f.baseline), ratio, f.verdict()))
    widths = [max(len(r[c]) for r in (header, *rows)) for c in range(len(header))]
    for r in (header, *rows):
        print("  ".join(cell.ljust(w) if c == 0 else cell.rjust(w) for c, (cell, w) in enumerate(zip(r, widths))))
    sys.stdout.flush()
