"""The service proxy's rules loaded into a real node network namespace: a pod reaches another pod
through a ClusterIP, a Service without endpoints is rejected, a NodePort answers on the node's IP,
and the Proxier follows Services/EndpointSlices from a real API server.

Topology, all in namespaces this test creates (the root namespace is never touched):
node netns: bridge br0 10.250.0.1/24, eth0 (a veth) 192.168.77.2/24 (the node's IP);
pod netns A 10.250.0.2 runs `busybox httpd`, pod netns B 10.250.0.3 is the client.
"""
from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import uuid
from dataclasses import dataclass, field

import pytest

from helpers.cluster import unique
from ketch.client import kubeconfig
from ketch.client.informer import SharedInformers
from ketch.client.rest import Client
from ketch.proxy.proxier import Proxier, RuleSyncer
from ketch.proxy.rules import NodeFacts

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not (shutil.which("busybox") and shutil.which("curl")),
                                reason="needs root, busybox and curl")

NODE_IP = "192.168.77.2"
SERVER_IP, CLIENT_IP = "10.250.0.2", "10.250.0.3"
CLUSTER_IP = "10.43.0.50"
REFUSED = 7        # curl's "Couldn't connect to server" at once (a REJECT), not 28 (a timeout, a DROP)


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, check=check, timeout=20)


@dataclass
class Net:
    node: str
    server: str
    client: str
    page_dir: str
    procs: list[subprocess.Popen] = field(default_factory=list)

    def facts(self) -> NodeFacts:
        return NodeFacts("node-1", (NODE_IP,), "10.250.0.0/16")

    def fetch(self, netns: str, url: str) -> subprocess.CompletedProcess:
        # curl, not busybox wget: the static busybox's wget segfaults on this machine.
        return sh("ip", "netns", "exec", netns, "curl", "-sS", "-m", "3", url, check=False)


@pytest.fixture
def net(tmp_path):
    tag = uuid.uuid4().hex[:8]
    n = Net(f"kp-node-{tag}", f"kp-srv-{tag}", f"kp-cli-{tag}", str(tmp_path / "www"))
    made: list[str] = []
    try:
        for ns in (n.node, n.server, n.client):
            sh("ip", "netns", "add", ns)
            made.append(ns)
        node = ("ip", "-n", n.node)
        sh(*node, "link", "add", "br0", "type", "bridge")
        sh(*node, "addr", "add", "10.250.0.1/24", "dev", "br0")
        sh(*node, "link", "set", "br0", "up")
        # The node's "uplink": a veth pair kept inside the node netns (no dummy module here).
        sh(*node, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0-peer")
        sh(*node, "addr", "add", f"{NODE_IP}/24", "dev", "eth0")
        sh(*node, "link", "set", "eth0-peer", "up")
        sh(*node, "link", "set", "eth0", "up")
        # A default route out of the uplink, as a node has: traffic to a cluster IP without
        # endpoints must be routed to reach the filter table's REJECT. (Not via br0: the ICMP
        # redirects a same-interface route sends would use up the per-host ICMP rate limit and
        # the REJECT's port-unreachable would be suppressed.)
        sh(*node, "route", "add", "default", "dev", "eth0")
        sh(*node, "link", "set", "lo", "up")
        sh("ip", "netns", "exec", n.node, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        for i, (pod, ip) in enumerate(((n.server, SERVER_IP), (n.client, CLIENT_IP))):
            veth = f"veth{i}"
            sh(*node, "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", pod)
            sh(*node, "link", "set", veth, "master", "br0", "up")
            sh("bridge", "-n", n.node, "link", "set", "dev", veth, "hairpin", "on")
            sh("ip", "-n", pod, "addr", "add", f"{ip}/24", "dev", "eth0")
            sh("ip", "-n", pod, "link", "set", "eth0", "up")
            sh("ip", "-n", pod, "link", "set", "lo", "up")
            sh("ip", "-n", pod, "route", "add", "default", "via", "10.250.0.1")
        os.makedirs(n.page_dir)
        with open(os.path.join(n.page_dir, "index.html"), "w") as f:
            f.write("hello from the pod\n")
        n.procs.append(subprocess.Popen(["ip", "netns", "exec", n.server, "busybox", "httpd", "-f", "-p", "80",
                                         "-h", n.page_dir]))
        yield n
    finally:
        for p in n.procs:
            p.kill()
            p.wait()
        for ns in reversed(made):
            sh("ip", "netns", "del", ns, check=False)


def service(ports, name="web", ns="default", **spec) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"namespace": ns, "name": name},
            "spec": {"clusterIP": CLUSTER_IP, "type": spec.pop("type", "ClusterIP"), "ports": ports, **spec}}


def endpoint_slice(ips, name="web", ns="default", port=80) -> dict:
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"namespace": ns, "name": f"{name}-1", "labels": {"kubernetes.io/service-name": name}},
            "addressType": "IPv4", "ports": [{"name": "", "port": port, "protocol": "TCP"}],
            "endpoints": [{"addresses": [ip], "conditions": {"ready": True}, "nodeName": "node-1"} for ip in ips]}


async def until(predicate, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not predicate():
        assert loop.time() < end, "condition not met in time"
        await asyncio.sleep(0.02)


async def wait_until_fetch(net: Net, netns: str, url: str, ok: bool, timeout: float = 5.0) -> subprocess.CompletedProcess:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while True:
        r = await asyncio.to_thread(net.fetch, netns, url)
        if (r.returncode == 0) == ok or loop.time() > end:
            return r
        await asyncio.sleep(0.1)


async def test_cluster_ip_reject_and_node_port(net):
    syncer = RuleSyncer(net.node, net.facts())
    svc = service([{"port": 80, "targetPort": 80, "nodePort": 30080}], type="NodePort")
    assert await syncer.sync([svc], [endpoint_slice([SERVER_IP])])
    assert not await syncer.sync([svc], [endpoint_slice([SERVER_IP])])      # unchanged text: no restore
    assert syncer.syncs == 1

    r = await wait_until_fetch(net, net.client, f"http://{CLUSTER_IP}/", ok=True)
    assert r.stdout == "hello from the pod\n", r.stderr
    # Hairpin: the server pod reaches itself through its own Service.
    r = net.fetch(net.server, f"http://{CLUSTER_IP}/")
    assert r.stdout == "hello from the pod\n", r.stderr
    # NodePort from the node itself, at the node's IP.
    r = net.fetch(net.node, f"http://{NODE_IP}:30080/")
    assert r.stdout == "hello from the pod\n", r.stderr

    saved = sh("ip", "netns", "exec", net.node, "iptables-save", "-t", "nat").stdout
    assert '-m comment --comment "default/web cluster IP"' in saved and "KUBE-SVC-" in saved

    # No endpoints: the cluster IP and the node port are rejected (refused at once, not a hang).
    assert await syncer.sync([svc], [])
    r = net.fetch(net.client, f"http://{CLUSTER_IP}/")
    assert r.returncode == REFUSED, r.stderr
    r = net.fetch(net.node, f"http://{NODE_IP}:30080/")
    assert r.returncode == REFUSED, r.stderr
    saved = sh("ip", "netns", "exec", net.node, "iptables-save").stdout
    assert "KUBE-SVC-" not in saved and "KUBE-SEP-" not in saved                  # stale chains deleted
    assert '"default/web has no endpoints"' in saved

    # A new syncer (an agent restarted) adopts the namespace and restores service.
    again = RuleSyncer(net.node, net.facts())
    assert await again.sync([svc], [endpoint_slice([SERVER_IP])])
    r = net.fetch(net.client, f"http://{CLUSTER_IP}/")
    assert r.stdout == "hello from the pod\n", r.stderr
    jumps = sh("ip", "netns", "exec", net.node, "iptables-save", "-t", "nat").stdout.count("-j KUBE-SERVICES")
    assert jumps == 2                                                                # PREROUTING, OUTPUT once each


async def test_proxier_follows_the_api_server(net, server):
    client = Client(kubeconfig.load(server.kubeconfig), user_agent="ketch-proxy-test")
    informers = SharedInformers(client)
    ns = unique("proxy")
    proxier = Proxier(informers, net.node, net.facts(), min_sync_period=0.5)
    try:
        await client.resource("v1", "Namespace").create({"metadata": {"name": ns}})
        informers.start()
        proxier.start()
        # Selector-less Service with a hand-written EndpointSlice (the book's Listing 3-10 shape).
        svc = service([{"port": 80, "targetPort": 80}], name="web", ns=ns)
        svc["spec"].pop("clusterIP")
        created = await client.resource("v1", "Service", ns).create(svc)
        cluster_ip = created["spec"]["clusterIP"]
        slices = client.resource("discovery.k8s.io/v1", "EndpointSlice", ns)
        await slices.create(endpoint_slice([SERVER_IP], ns=ns))
        # Wait for the rules before the first connection: a SYN sent before them would leave an
        # un-NATed conntrack entry that a later connection reusing its source port would follow.
        await until(lambda: f'"{ns}/web cluster IP"' in (proxier.syncer.last_text or ""))
        r = await wait_until_fetch(net, net.client, f"http://{cluster_ip}/", ok=True)
        assert r.stdout == "hello from the pod\n", r.stderr
        # A burst of endpoint changes is coalesced: one sync at once, one for the rest.
        before = proxier.syncer.syncs
        for extra in range(10, 15):
            await slices.patch("web-1", {"endpoints": [{"addresses": [SERVER_IP], "conditions": {"ready": True}},
                                                       {"addresses": [f"10.250.0.{extra}"], "conditions": {"ready": True}}]},
                               "merge")
        await until(lambda: "10.250.0.14" in str(proxier.slices.list()))
        await asyncio.sleep(0.7)
        assert 1 <= proxier.syncer.syncs - before <= 2
        assert "10.250.0.14:80" in proxier.syncer.last_text and "10.250.0.13:80" not in proxier.syncer.last_text
        await slices.delete("web-1")
        await until(lambda: f'"{ns}/web has no endpoints"' in (proxier.syncer.last_text or ""), timeout=2.0)
        r = await wait_until_fetch(net, net.client, f"http://{cluster_ip}/", ok=False)
        assert r.returncode == REFUSED, r.stderr
    finally:
        await proxier.stop()
        await informers.stop()
        try:
            await client.resource("v1", "Namespace").delete(ns)
        finally:
            await client.close()


def udp_flows(net: Net) -> str:
    return sh("ip", "netns", "exec", net.node, "conntrack", "-L", "-p", "udp", check=False).stdout


async def test_removed_udp_endpoint_loses_its_conntrack_entries(net):
    syncer = RuleSyncer(net.node, net.facts())
    svc = service([{"name": "dns", "port": 53, "protocol": "UDP"}], name="dns")
    sl = endpoint_slice([SERVER_IP], name="dns", port=53)
    sl["ports"] = [{"name": "dns", "port": 53, "protocol": "UDP"}]
    await syncer.sync([svc], [sl])
    # One datagram through the cluster IP leaves a NATed flow (nothing needs to answer it).
    sh("ip", "netns", "exec", net.client, sys.executable, "-c",
       f"import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'hi', ('{CLUSTER_IP}', 53))")
    assert f"dst={CLUSTER_IP}" in udp_flows(net) and f"src={SERVER_IP}" in udp_flows(net)
    await syncer.sync([svc], [])
    assert f"dst={CLUSTER_IP}" not in udp_flows(net)
