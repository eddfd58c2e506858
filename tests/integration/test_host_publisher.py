"""The host publisher with the service proxy in a real node namespace, following a real API
server: a NodePort answers on the host's 127.0.0.1 (through the node's NodePort rules, dialled
at a local address of the node), bulk TCP with a half-close and UDP datagrams go through, a
loopback LoadBalancer address from the ServiceLB answers on its port, listeners follow port
changes and deletions, and a host port taken by someone else is a Warning event, retried.

Topology, all in namespaces this test creates: node netns with bridge br0 10.251.0.1/24 and an
uplink veth with the default route; a pod
netns 10.251.0.2 running busybox httpd (80) and a small TCP digest / UDP echo server.
"""
from __future__ import annotations

import asyncio
import hashlib
import os
import random
import shutil
import socket
import subprocess
import sys
import uuid

import pytest

from helpers.cluster import start_server, unique
from ketch.agent.publisher import HostPublisher
from ketch.agent.runtime.namespaces import NetnsSockets
from ketch.client import kubeconfig
from ketch.client.events import EventRecorder
from ketch.client.informer import SharedInformers
from ketch.client.rest import Client
from ketch.proxy.proxier import Proxier
from ketch.proxy.rules import NodeFacts

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not (shutil.which("busybox") and shutil.which("curl")),
                                reason="needs root, busybox and curl")

GATEWAY, POD_IP = "10.251.0.1", "10.251.0.2"
REFUSED = 7

SERVER = r"""
import hashlib, socket, sys, threading
def digest():
    srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("0.0.0.0", 9000)); srv.listen(64)
    while True:
        c, _ = srv.accept()
        def serve(c=c):
            h, n = hashlib.sha256(), 0
            while True:
                b = c.recv(1 << 16)
                if not b: break
                h.update(b); n += len(b)
            c.sendall(f"{n} {h.hexdigest()}".encode()); c.close()
        threading.Thread(target=serve, daemon=True).start()
def echo():
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("0.0.0.0", 9053))
    while True:
        d, a = u.recvfrom(65535); u.sendto(b"echo:" + d, a)
threading.Thread(target=echo, daemon=True).start()
digest()
"""


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, check=check, timeout=20)


def free_node_ports(n: int) -> list[int]:
    """Ports of the NodePort range nobody on the host has, TCP and UDP."""
    out: list[int] = []
    for port in random.sample(range(30100, 32700), 400):
        try:
            for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
                with socket.socket(socket.AF_INET, kind) as s:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    s.bind(("127.0.0.1", port))
        except OSError:
            continue
        out.append(port)
        if len(out) == n:
            return out
    raise AssertionError("no free ports")


@pytest.fixture
def node(tmp_path):
    tag = uuid.uuid4().hex[:6]
    node, pod = f"ketch-t-slb-{tag}-n", f"ketch-t-slb-{tag}-p"
    made, procs = [], []
    try:
        for ns in (node, pod):
            sh("ip", "netns", "add", ns)
            made.append(ns)
        sh("ip", "-n", node, "link", "add", "br0", "type", "bridge")
        sh("ip", "-n", node, "addr", "add", f"{GATEWAY}/24", "dev", "br0")
        sh("ip", "-n", node, "link", "set", "br0", "up")
        sh("ip", "-n", node, "link", "set", "lo", "up")
        # An uplink and a default route, as a node has: a cluster IP dialled from the node itself
        # must be routable before the nat OUTPUT chain rewrites it.
        sh("ip", "-n", node, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0-peer")
        sh("ip", "-n", node, "addr", "add", "192.168.78.2/24", "dev", "eth0")
        sh("ip", "-n", node, "link", "set", "eth0-peer", "up")
        sh("ip", "-n", node, "link", "set", "eth0", "up")
        sh("ip", "-n", node, "route", "add", "default", "dev", "eth0")
        sh("ip", "-n", node, "link", "add", "veth0", "type", "veth", "peer", "name", "eth0", "netns", pod)
        sh("ip", "-n", node, "link", "set", "veth0", "master", "br0", "up")
        sh("ip", "-n", pod, "addr", "add", f"{POD_IP}/24", "dev", "eth0")
        sh("ip", "-n", pod, "link", "set", "eth0", "up")
        sh("ip", "-n", pod, "link", "set", "lo", "up")
        sh("ip", "-n", pod, "route", "add", "default", "via", GATEWAY)
        www = tmp_path / "www"
        www.mkdir()
        (www / "index.html").write_text("hello from the pod\n")
        procs.append(subprocess.Popen(["ip", "netns", "exec", pod, "busybox", "httpd", "-f", "-p", "80",
                                       "-h", str(www)]))
        procs.append(subprocess.Popen(["ip", "netns", "exec", pod, sys.executable, "-c", SERVER]))
        yield node
    finally:
        for p in procs:
            p.kill()
            p.wait()
        for ns in reversed(made):
            sh("ip", "netns", "del", ns, check=False)


@pytest.fixture
def api(tmp_path):
    # A server of our own with a pool nobody else uses: the LoadBalancer address is bound here.
    pool = f"127.0.1.{8 * random.randrange(4, 30)}/29"
    (tmp_path / "srv").mkdir()
    srv = start_server(tmp_path / "srv", ["--service-lb-cidr", pool, "--disable-agent"])
    try:
        yield srv
    finally:
        srv.stop()


def service(name, ports, **spec) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"type": spec.pop("type", "NodePort"), "ports": ports, **spec}}


def endpoint_slice(name, ports) -> dict:
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": f"{name}-1", "labels": {"kubernetes.io/service-name": name}},
            "addressType": "IPv4", "ports": ports,
            "endpoints": [{"addresses": [POD_IP], "conditions": {"ready": True}, "nodeName": "node-1"}]}


async def curl(url: str) -> subprocess.CompletedProcess:
    return await asyncio.to_thread(sh, "curl", "-sS", "-m", "3", url, check=False)


async def eventually(fn, timeout: float = 10.0, what: str = "condition"):
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while True:
        value = await fn()
        if value:
            return value
        assert loop.time() < end, f"timed out waiting for {what}; last: {value!r}"
        await asyncio.sleep(0.1)


async def fetches(url: str, body: str = "hello from the pod\n"):
    async def ok():
        r = await curl(url)
        return r.stdout == body
    return ok


async def refused(url: str):
    async def no():
        return (await curl(url)).returncode == REFUSED
    return no


async def digest_through(port: int, payload: bytes) -> str:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(payload)
    await writer.drain()
    writer.write_eof()                      # half-close: the server answers after our end of stream
    reply = await asyncio.wait_for(reader.read(), 20)
    writer.close()
    return reply.decode()


async def udp_roundtrip(port: int, data: bytes) -> bytes | None:
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.setblocking(False)
        s.connect(("127.0.0.1", port))
        for _ in range(20):
            s.send(data)
            try:
                return await asyncio.wait_for(loop.sock_recv(s, 65535), 0.3)
            except (asyncio.TimeoutError, ConnectionRefusedError):
                continue
    return None


async def test_node_port_and_load_balancer_published_on_the_host(node, api):
    p_http, p_digest, p_udp, p_moved, p_taken = free_node_ports(5)
    client = Client(kubeconfig.load(api.kubeconfig), user_agent="ketch-publisher-test")
    informers = SharedInformers(client)
    recorder = EventRecorder(client, "kube-proxy")
    sockets = NetnsSockets(f"/run/netns/{node}")
    proxier = Proxier(informers, node, NodeFacts("node-1", (), "10.251.0.0/16"), min_sync_period=0.2)
    publisher = HostPublisher(informers, sockets, GATEWAY, recorder=recorder, retry_period=0.5)
    ns = unique("pub")
    blocker = None
    try:
        await client.resource("v1", "Namespace").create({"metadata": {"name": ns}})
        svcs = client.resource("v1", "Service", ns)
        slices = client.resource("discovery.k8s.io/v1", "EndpointSlice", ns)
        await svcs.create(service("np", [
            {"name": "http", "port": 80, "nodePort": p_http},
            {"name": "digest", "port": 9000, "nodePort": p_digest},
            {"name": "dns", "port": 53, "protocol": "UDP", "nodePort": p_udp}]))
        await slices.create(endpoint_slice("np", [{"name": "http", "port": 80, "protocol": "TCP"},
                                                  {"name": "digest", "port": 9000, "protocol": "TCP"},
                                                  {"name": "dns", "port": 9053, "protocol": "UDP"}]))
        await svcs.create(service("lb", [{"port": 80}], type="LoadBalancer", allocateLoadBalancerNodePorts=False))
        await slices.create(endpoint_slice("lb", [{"name": "", "port": 80, "protocol": "TCP"}]))
        informers.start()
        proxier.start()
        publisher.start()

        # NodePort: host 127.0.0.1 -> node 10.251.0.1:nodePort -> the proxy's NodePort DNAT -> pod.
        await eventually(await fetches(f"http://127.0.0.1:{p_http}/"), what="the NodePort page")
        assert publisher.listeners[("127.0.0.1", p_http, "TCP")].target.ip == GATEWAY
        payload = os.urandom(8 << 20)
        assert await digest_through(p_digest, payload) == f"{len(payload)} {hashlib.sha256(payload).hexdigest()}"
        assert await digest_through(p_digest, b"") == f"0 {hashlib.sha256(b'').hexdigest()}"
        assert await udp_roundtrip(p_udp, b"ping") == b"echo:ping"

        # LoadBalancer without node ports: its own loopback address, forwarded to the cluster IP.
        async def lb_ip():
            got = await svcs.get("lb")
            return ((got.get("status") or {}).get("loadBalancer") or {}).get("ingress")
        [ing] = await eventually(lb_ip, what="the load balancer's address")
        assert ing["ip"].startswith("127.0.1.")
        await eventually(await fetches(f"http://{ing['ip']}/"), what="the LoadBalancer page")

        # A changed nodePort moves the listener; a deleted Service closes its listener.
        np = await svcs.get("np")
        np["spec"]["ports"][0]["nodePort"] = p_moved
        await svcs.update(np)
        await eventually(await fetches(f"http://127.0.0.1:{p_moved}/"), what="the moved NodePort")
        await eventually(await refused(f"http://127.0.0.1:{p_http}/"), what="the old port closed")
        await svcs.delete("lb")
        await eventually(await refused(f"http://{ing['ip']}/"), what="the LoadBalancer listener closed")

        # A host port someone else holds: a Warning on the Service, and the port taken once free.
        blocker = socket.socket()
        blocker.bind(("127.0.0.1", p_taken))
        blocker.listen(1)
        await svcs.create(service("taken", [{"name": "http", "port": 80, "nodePort": p_taken}]))
        await slices.create(endpoint_slice("taken", [{"name": "http", "port": 80, "protocol": "TCP"}]))

        async def warned():
            events = (await client.resource("v1", "Event", ns).list())["items"]
            return [e for e in events if e["involvedObject"]["name"] == "taken"]
        [event] = await eventually(warned, what="the FailedToOpenPort event")
        assert (event["type"], event["reason"]) == ("Warning", "FailedToOpenPort")
        assert event["message"].startswith(f"can't open port 127.0.0.1:{p_taken}/tcp, skipping it: ")
        assert publisher.failed
        blocker.close()
        blocker = None
        await eventually(await fetches(f"http://127.0.0.1:{p_taken}/"), what="the port taken once free")
        assert not publisher.failed
    finally:
        if blocker is not None:
            blocker.close()
        await publisher.stop()
        await proxier.stop()
        await informers.stop()
        await recorder.close()
        sockets.close()
        await client.close()
    # Stopped: nothing listens any more.
    assert (await curl(f"http://127.0.0.1:{p_moved}/")).returncode == REFUSED
