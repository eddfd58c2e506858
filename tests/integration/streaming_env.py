"""A kubelet API server (ketch.agent.server) on loopback in a thread of the test process, backed by
host processes (helpers.host_backend), registered as a Node of a real `ketch server`, with pods
bound to it and marked Running so the API server's checks pass."""
from __future__ import annotations

import asyncio
import json
import os
import pty
import select
import ssl
import subprocess
import threading
import time
from pathlib import Path

from helpers.cluster import unique
from helpers.host_backend import HostBackend

from ketch.agent.authn import TokenReviewer
from ketch.agent.run import cluster_ca
from ketch.agent.server import KubeletServer
from ketch.client import kubeconfig
from ketch.client.rest import Client


class KubeletThread:
    def __init__(self, root: Path, backend_factory=None, server=None):
        """`backend_factory`: a coroutine function making the backend inside the kubelet's loop
        (default: host processes). `server`: the `ketch server` whose CA and TokenReviews
        authenticate callers, as an agent's kubelet API does (without one it serves anyone)."""
        self.root = root
        self.backend_factory = backend_factory
        self.api_server = server
        self.client = None
        self.loop = asyncio.new_event_loop()
        self.backend: HostBackend | None = None
        self.server: KubeletServer | None = None
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def start(self) -> "KubeletThread":
        self._thread.start()
        self.call(self._start())
        return self

    async def _start(self):
        self.backend = await self.backend_factory() if self.backend_factory else HostBackend(self.root)
        authn = {}
        if self.api_server is not None:
            self.client = Client(kubeconfig.load(self.api_server.kubeconfig))
            authn = {"client_ca": await cluster_ca(self.client), "token_reviewer": TokenReviewer(self.client)}
        self.server = KubeletServer(self.backend, "127.0.0.1", 0, cert_dir=self.root / "tls", node_name="streaming",
                                    **authn)
        await self.server.start()

    def call(self, coro, timeout: float = 30):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        try:
            if isinstance(self.backend, HostBackend):
                self.call(self.backend.runtime.stop())
            self.call(self.server.stop())
            if self.client is not None:
                self.call(self.client.close())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(5)

    @property
    def url(self) -> str:
        return self.server.url

    def client_tls(self) -> ssl.SSLContext:
        """TLS for calling the kubelet directly: the API server's admin certificate (signed by the CA
        the kubelet trusts); the kubelet's own self-signed certificate is not verified."""
        ctx = ssl.create_default_context()
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        tls = self.api_server.data_dir / "data" / "tls"
        ctx.load_cert_chain(tls / "admin.crt", tls / "admin.key")
        return ctx


def kubectl_env(server) -> dict:
    return {**os.environ, "KUBECONFIG": str(server.kubeconfig), "HOME": str(server.data_dir)}


def register_node(server, name: str, url: str) -> None:
    node = {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "annotations": {"ketch.io/kubelet-url": url},
                         "labels": {"kubernetes.io/hostname": name}},
            "spec": {"taints": [{"key": "ketch.io/streaming-test", "effect": "NoSchedule"}]},
            "status": {"addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
                       "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                                       "message": "ok"}]}}
    server.kubectl("create", "-f", "-", input=json.dumps(node))


def create_running_pod(server, kubelet: KubeletThread, ns: str, node: str, containers: list[str],
                       name: str | None = None, labels: dict | None = None) -> str:
    """A pod bound to `node` whose containers are host processes, with status Running."""
    name = name or unique("p")
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns, "labels": labels or {}},
           "spec": {"nodeName": node, "containers": [{"name": c, "image": "busybox"} for c in containers],
                    "tolerations": [{"operator": "Exists"}]}}
    server.kubectl("create", "-f", "-", input=json.dumps(pod))
    for c in containers:
        kubelet.backend.add_container(ns, name, c)
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    status = {"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}],
                         "containerStatuses": [
                             {"name": c, "ready": True, "restartCount": 0, "image": "busybox", "imageID": "",
                              "containerID": f"host://{ns}-{name}-{c}", "state": {"running": {"startedAt": now}}}
                             for c in containers]}}
    server.kubectl("patch", "pod", name, "-n", ns, "--subresource=status", "--type=merge", "-p", json.dumps(status))
    return name


def run_in_pty(argv: list[str], env: dict, send: bytes, timeout: float = 20) -> tuple[int, bytes]:
    """Run `argv` on a terminal of its own; type `send` once it printed READY; (exit code, output)."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True)
    os.close(slave)
    out = b""
    sent = False
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            r, _, _ = select.select([master], [], [], 0.1)
            if r:
                try:
                    chunk = os.read(master, 65536)
                except OSError:
                    break
                if not chunk:
                    break
                out += chunk
            if not sent and b"READY" in out:
                os.write(master, send)
                sent = True
            if proc.poll() is not None and not r:
                break
        return proc.wait(timeout=5), out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
