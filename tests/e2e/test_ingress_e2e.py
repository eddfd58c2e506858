"""The book's Ingress walkthrough (Chapter 3) end to end: `ketch server` with three nodes runs the
whale pods in real containers; the book's three files are applied verbatim with kubectl; every
node agent's ingress controller (on the host's loopback, sharing the port, dialling the pods inside
its node's network namespace) answers curl for a.whale.hey and b.whale.hey, and kubectl shows the
Ingress's address."""
from __future__ import annotations

import os
import subprocess
import time

import pytest

from helpers.agent import start_agent_cluster
from helpers.cluster import BOOK, free_port, wait_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="runs containers: needs root")


def curl(host: str, port: int) -> subprocess.CompletedProcess:
    return subprocess.run(["curl", "-s", "--max-time", "5", "--resolve", f"{host}:{port}:127.0.0.1",
                           f"http://{host}:{port}/"], capture_output=True, text=True)


def test_book_chapter3_whale_ingress(tmp_path):
    port = free_port()     # the book's is 80; a port of the test's own, so no other cluster shares it
    cluster = start_agent_cluster(tmp_path, images=["jonbaier/httpwhalesay:0.1"], nodes=3,
                                  extra_args=["--ingress-http-port", str(port), "--ingress-https-port", "0"])
    try:
        chapter = BOOK / "Chapter03"
        for f in ("whale-rcs.yaml", "whale-svcs.yaml", "whale-ingress.yaml"):
            cluster.kubectl("create", "-f", str(chapter / f))
        klass = wait_for(lambda: cluster.kubectl("get", "ingressclass", "ketch", "-o",
                                                 "jsonpath={.metadata.annotations}", check=False).stdout, 20,
                         "the IngressClass the agents make")
        assert '"ingressclass.kubernetes.io/is-default-class":"true"' in klass

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
        # every request answered, whichever node's controller the kernel hands it to
        for _ in range(12):
            assert "Whale Type A, Here." in curl("a.whale.hey", port).stdout
    finally:
        cluster.stop()
