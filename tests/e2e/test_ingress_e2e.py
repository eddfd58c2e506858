"""The book's Ingress walkthrough (Chapter 3) end to end: `ketch server` with its node agent runs
the whale pods in real containers; the book's three files are applied verbatim with kubectl; an
IngressController (as the agent runs it: on the host's loopback, dialling the pods inside the
node's network namespace) answers curl for a.whale.hey and b.whale.hey, and kubectl shows the
Ingress's address."""
from __future__ import annotations

import asyncio
import os
import subprocess
import threading
import time

import pytest

from helpers.agent import start_agent_cluster
from helpers.cluster import BOOK, free_port
from ketch.agent.runtime.namespaces import NetnsSockets
from ketch.client import kubeconfig
from ketch.client.informer import SharedInformers
from ketch.client.rest import Client
from ketch.ingress import IngressController

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="runs containers: needs root")


class ControllerThread:
    """An IngressController on an event loop of its own, so the test can block on kubectl and curl."""

    def __init__(self, kubeconfig_path, netns_path: str, port: int):
        self.kubeconfig_path, self.netns_path, self.port = kubeconfig_path, netns_path, port
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(30)

    async def _start(self):
        self.client = Client(kubeconfig.load(self.kubeconfig_path), user_agent="ketch-ingress-e2e")
        self.informers = SharedInformers(self.client)
        self.sockets = NetnsSockets(self.netns_path)
        self.controller = IngressController(self.informers, self.client, self.sockets,
                                            http=("127.0.0.1", self.port), https=("127.0.0.1", 0))
        self.controller.start()
        self.informers.start()
        await asyncio.wait_for(self.controller.ready.wait(), 20)

    async def _stop(self):
        await self.controller.stop()
        await self.informers.stop()
        self.sockets.close()
        await self.client.close()

    def stop(self):
        asyncio.run_coroutine_threadsafe(self._stop(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


def curl(host: str, port: int) -> subprocess.CompletedProcess:
    return subprocess.run(["curl", "-s", "--max-time", "5", "--resolve", f"{host}:{port}:127.0.0.1",
                           f"http://{host}:{port}/"], capture_output=True, text=True)


def test_book_chapter3_whale_ingress(tmp_path):
    cluster = start_agent_cluster(tmp_path, images=["jonbaier/httpwhalesay:0.1"])
    ingress = None
    try:
        chapter = BOOK / "Chapter03"
        for f in ("whale-rcs.yaml", "whale-svcs.yaml", "whale-ingress.yaml"):
            cluster.kubectl("create", "-f", str(chapter / f))
        port = free_port()
        ingress = ControllerThread(cluster.server.kubeconfig, f"/run/netns/{cluster.netns_name}", port)

        deadline = time.monotonic() + 120
        while True:
            a, b = curl("a.whale.hey", port), curl("b.whale.hey", port)
            if "Whale Type A, Here." in a.stdout and "Whale B" in b.stdout:
                break
            assert time.monotonic() < deadline, f"no whales through the ingress: {a.stdout!r} {b.stdout!r}"
            time.sleep(0.5)
        assert "Whale B" not in a.stdout and "Whale Type A" not in b.stdout
        assert "default backend - 404" in curl("c.whale.hey", port).stdout

        deadline = time.monotonic() + 20
        while True:
            ing = cluster.server.kubectl_json("get", "ingress", "whale-ingress")
            if (ing.get("status") or {}).get("loadBalancer", {}).get("ingress") == [{"ip": "127.0.0.1"}]:
                break
            assert time.monotonic() < deadline, ing.get("status")
            time.sleep(0.2)
        table = cluster.kubectl("get", "ingress", "whale-ingress").stdout
        assert "127.0.0.1" in table and "a.whale.hey,b.whale.hey" in table
    finally:
        if ingress is not None:
            ingress.stop()
        cluster.stop()
