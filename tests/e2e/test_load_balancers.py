"""NodePort and LoadBalancer Services from the host, as the book's readers reach them: the book's
NodePort Service answers `curl http://127.0.0.1:30001` on the host, and its LoadBalancer Service
gets an EXTERNAL-IP of its own on the host's loopback (the built-in ServiceLB) that answers on
port 80 — `ketch server` with its agent running the book's node-js pods in real containers."""
from __future__ import annotations

import json
import os
import random
import socket
import subprocess

import pytest

from helpers.agent import start_agent_cluster
from helpers.cluster import BOOK, wait_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="runs containers: needs root")

REFUSED = 7
PAGE = "Container name (hostname): node-js-"
# A pool of our own inside 127.0.1.0/24, so that clusters of other tests (default pool, from
# 127.0.1.1) never share an address with ours.
POOL_BASE = 16 * random.randrange(1, 15)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = start_agent_cluster(tmp_path_factory.mktemp("servicelb"),
                            extra_args=["--service-lb-cidr", f"127.0.1.{POOL_BASE}/28"],
                            images=["jonbaier/node-express-info:latest"])
    try:
        c.kubectl("create", "-f", str(BOOK / "Chapter02" / "nodejs-controller.yaml"))
        wait_for(lambda: len([p for p in c.pods("name=node-js") if p["status"].get("phase") == "Running"]) == 3,
                 90, "three node-js pods", interval=0.3)
        yield c
    finally:
        c.stop()


def curl(url: str) -> subprocess.CompletedProcess:
    return subprocess.run(["curl", "-sS", "-m", "5", url], capture_output=True, text=True)


def answers(url: str) -> bool:
    return PAGE in curl(url).stdout


def free_on_host(port: int, ip: str = "127.0.0.1") -> bool:
    """Nobody listens on ip:port (a bind without SO_REUSEPORT fails even against one that has it;
    SO_REUSEADDR lets connections in TIME_WAIT from an earlier run pass)."""
    try:
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((ip, port))
        return True
    except OSError:
        return False


def external_ip(cluster, name: str) -> str:
    return cluster.kubectl("get", "svc", name, "--no-headers").stdout.split()[3]


def lb_manifest(name: str) -> str:
    return json.dumps({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
                       "spec": {"type": "LoadBalancer", "selector": {"name": "node-js"}, "ports": [{"port": 80}]}})


def test_book_node_port_answers_on_the_host(cluster):
    """Chapter 3's NodePort Service, verbatim: nodePort 30001 on the host's loopback."""
    if not free_on_host(30001):
        pytest.skip("127.0.0.1:30001 is taken on this host (another cluster's test?)")
    cluster.kubectl("create", "-f", str(BOOK / "Chapter03" / "nodejs-service-nodePort.yaml"))
    try:
        wait_for(lambda: answers("http://127.0.0.1:30001"), 30, "the node-js page on 127.0.0.1:30001", interval=0.3)
        # The NodePort rules spread the connections over the RC's pods.
        names = {p["metadata"]["name"] for p in cluster.pods("name=node-js")}
        pages = [curl("http://127.0.0.1:30001").stdout for _ in range(12)]
        seen = {n for n in names for page in pages if f"Container name (hostname): {n}" in page}
        assert len(seen) >= 2, seen
    finally:
        cluster.kubectl("delete", "svc", "node-js-nodeport", check=False)
    # Deleting the Service closes the listener.
    wait_for(lambda: curl("http://127.0.0.1:30001").returncode == REFUSED, 15, "30001 closed", interval=0.3)


def test_book_load_balancer_gets_an_external_ip_that_answers(cluster):
    """Chapter 2's LoadBalancer Service: EXTERNAL-IP from the loopback pool, `curl` on port 80;
    a second LoadBalancer on port 80 gets an address of its own; deleting one closes its
    listener; a type change clears the status."""
    cluster.kubectl("create", "-f", str(BOOK / "Chapter02" / "nodejs-rc-service.yaml"))
    cluster.kubectl("create", "-f", "-", input=lb_manifest("node-js-second"))
    try:
        first = wait_for(lambda: (ip := external_ip(cluster, "node-js")) != "<pending>" and ip, 30,
                         "node-js's EXTERNAL-IP", interval=0.3)
        second = wait_for(lambda: (ip := external_ip(cluster, "node-js-second")) != "<pending>" and ip, 30,
                          "the second EXTERNAL-IP", interval=0.3)
        assert first == f"127.0.1.{POOL_BASE + 1}" and second == f"127.0.1.{POOL_BASE + 2}"
        for ip in (first, second):
            wait_for(lambda ip=ip: answers(f"http://{ip}:80/"), 30, f"the node-js page at {ip}", interval=0.3)
        svc = cluster.server.kubectl_json("get", "svc", "node-js")
        assert svc["status"]["loadBalancer"]["ingress"] == [{"ip": first, "ipMode": "VIP"}]
        assert svc["spec"]["ports"][0]["nodePort"] >= 30000

        cluster.kubectl("delete", "svc", "node-js-second")
        wait_for(lambda: curl(f"http://{second}:80/").returncode == REFUSED, 15, "the second closed", interval=0.3)

        cluster.kubectl("patch", "svc", "node-js", "--type", "merge", "-p",
                        json.dumps({"spec": {"type": "NodePort", "allocateLoadBalancerNodePorts": None}}))
        wait_for(lambda: external_ip(cluster, "node-js") == "<none>", 15, "the status cleared", interval=0.3)
        assert not cluster.server.kubectl_json("get", "svc", "node-js")["status"].get("loadBalancer")
        wait_for(lambda: curl(f"http://{first}:80/").returncode == REFUSED, 15, "the address closed", interval=0.3)
    finally:
        cluster.kubectl("delete", "svc", "node-js", "node-js-second", "--ignore-not-found", check=False)


def _listeners(port: int, pid: int) -> int:
    """How many listening sockets of process `pid` are bound to 127.0.0.1:port."""
    out = subprocess.run(["ss", "-Hltnp", f"sport = :{port}"], capture_output=True, text=True).stdout
    return sum(1 for line in out.splitlines() if f"127.0.0.1:{port} " in line and f"pid={pid}," in line)


def test_node_port_on_every_node(tmp_path):
    """Two nodes on one machine: each node's agent listens on the NodePort (the kernel spreads
    connections over them), and from the host the port answers whichever agent takes it."""
    port = next(p for p in random.sample(range(30100, 32700), 200) if free_on_host(p))
    c = start_agent_cluster(tmp_path, nodes=2, images=["jonbaier/node-express-info:latest"],
                            extra_args=["--service-lb-cidr", f"127.0.1.{POOL_BASE}/28"])
    try:
        c.kubectl("create", "-f", str(BOOK / "Chapter02" / "nodejs-controller.yaml"))
        c.kubectl("create", "-f", "-", input=json.dumps({
            "apiVersion": "v1", "kind": "Service", "metadata": {"name": "node-js-nodeport"},
            "spec": {"type": "NodePort", "selector": {"name": "node-js"}, "ports": [{"port": 80, "nodePort": port}]}}))
        wait_for(lambda: len([p for p in c.pods("name=node-js") if p["status"].get("phase") == "Running"]) == 3,
                 90, "three node-js pods", interval=0.3)
        wait_for(lambda: _listeners(port, c.server.proc.pid) == 2, 30, "a listener per node", interval=0.3)
        for _ in range(8):
            wait_for(lambda: answers(f"http://127.0.0.1:{port}/"), 30, "the node-js page", interval=0.3)
    finally:
        c.stop()
