"""Start and stop real `ketch server` processes for tests, and run real kubectl against them."""
from __future__ import annotations

import base64
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BOOK = ROOT.parent / "shared" / "book-examples"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ManagedProcess:
    """What every `ketch` process a test starts shares: its log, a clean stop (SIGTERM, then
    SIGKILL after 10 s) and a crash (kill -9), each of this PID only. Subclasses set `proc` and
    `log_path`."""

    proc: subprocess.Popen | None
    log_path: Path | None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-5000:] if self.log_path and self.log_path.exists() else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill9(self) -> None:
        """Die as a crashed process does (a simulator's leases stop being renewed, its nodes stay)."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


@dataclass
class Server(ManagedProcess):
    data_dir: Path
    port: int
    kubeconfig: Path
    proc: subprocess.Popen | None = None
    log_path: Path | None = None
    extra_args: list[str] = field(default_factory=list)
    agent: bool = False        # run the node agent in-process (its flags go in extra_args)
    netns: str | None = None   # run the server (and kubectl) inside this network namespace

    @property
    def _prefix(self) -> list[str]:
        # nsenter only switches the network namespace (`ip netns exec` also remounts /sys, which
        # hides the cgroup mounts runc needs).
        return ["nsenter", f"--net=/run/netns/{self.netns}"] if self.netns else []

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> None:
        self.log_path = self.data_dir / "server.log"
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [*self._prefix, sys.executable, "-m", "ketch.cli.main", "server", "--data-dir", str(self.data_dir / "data"),
             "--bind-address", "127.0.0.1", "--secure-port", str(self.port),
             "--write-kubeconfig", str(self.kubeconfig), *([] if self.agent else ["--disable-agent"]),
             *self.extra_args],
            stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        self.wait_ready(timeout)

    def wait_ready(self, timeout: float = 20.0) -> float:
        t0 = time.monotonic()
        ctx = ssl._create_unverified_context()
        while time.monotonic() - t0 < timeout:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"ketch server exited ({self.proc.returncode}):\n{self.log()}")
            if self.netns:
                got = subprocess.run([*self._prefix, "curl", "-sk", "-m", "1", f"{self.url}/readyz"],
                                     capture_output=True, text=True)
                if got.stdout == "ok" and self.kubeconfig.exists():
                    return time.monotonic() - t0
            else:
                try:
                    with urllib.request.urlopen(f"{self.url}/readyz", context=ctx, timeout=1) as r:
                        if r.status == 200 and self.kubeconfig.exists():
                            return time.monotonic() - t0
                except OSError:
                    pass
            time.sleep(0.02)
        raise RuntimeError(f"ketch server not ready after {timeout}s:\n{self.log()}")

    def kubectl(self, *args: str, kubectl: str = "/usr/bin/kubectl", input: str | None = None,
                check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig), "HOME": str(self.data_dir)}
        proc = subprocess.run([*self._prefix, kubectl, *args], input=input, capture_output=True, text=True, env=env,
                              timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}\n"
                                 f"--- server log ---\n{self.log()}")
        return proc

    def kubectl_json(self, *args: str, **kw) -> dict:
        return json.loads(self.kubectl(*args, "-o", "json", **kw).stdout)


def start_server(base: Path, extra_args: list[str] | None = None) -> Server:
    srv = Server(data_dir=base, port=free_port(), kubeconfig=base / "kubeconfig.yaml",
                 extra_args=extra_args or [])
    srv.start()
    return srv


def wait_for(fn, timeout: float = 30.0, what: str = "condition", interval: float = 0.05):
    """Poll `fn` until it returns something truthy and return that; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {value!r}")
        time.sleep(interval)


def unique(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@dataclass
class Simulator(ManagedProcess):
    """A `ketch simulate` process registering simulated nodes (PREFIX0..PREFIXn-1) on a Server."""
    server: Server
    nodes: int = 3
    name_prefix: str = "sim-"
    extra_args: list[str] = field(default_factory=list)
    proc: subprocess.Popen | None = None
    log_path: Path | None = None

    @property
    def node_names(self) -> list[str]:
        return [f"{self.name_prefix}{i}" for i in range(self.nodes)]

    def start(self, timeout: float = 30.0) -> "Simulator":
        self.log_path = self.server.data_dir / f"simulate-{self.name_prefix.rstrip('-') or 'sim'}.log"
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ketch.cli.main", "simulate", "--kubeconfig", str(self.server.kubeconfig),
             "--nodes", str(self.nodes), "--name-prefix", self.name_prefix, *self.extra_args],
            stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Until every node of this simulator is Ready (as kubectl would show it)."""
        deadline = time.monotonic() + timeout
        want = set(self.node_names)
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"ketch simulate exited ({self.proc.returncode}):\n{self.log()}")
            out = self.server.kubectl("get", "nodes", "-o", "jsonpath={range .items[*]}{.metadata.name}="
                                      "{.status.conditions[?(@.type==\"Ready\")].status}{\"\\n\"}{end}",
                                      check=False)
            ready = {line.split("=")[0] for line in out.stdout.splitlines() if line.endswith("=True")}
            if want <= ready:
                return
            time.sleep(0.1)
        raise RuntimeError(f"simulated nodes not Ready after {timeout}s:\n{self.log()}")


def jwt_claims(token: str) -> dict:
    """The claims of a JWT (its middle part), unverified."""
    part = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
