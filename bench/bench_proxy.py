"""Service proxy benchmark: TCP throughput through a ClusterIP against the pod's own IP, through
the host publisher (the host's 127.0.0.1:nodePort) against the same, and rule-sync latency after
an Endpoints change with 1,000 Services x 10 endpoints.

All of it in network namespaces made here (ketch-t-bench-*; the root namespace is never touched):
a node netns with a bridge (10.252.0.1/24) and an uplink with the default route, a pod netns
(10.252.0.2) running a sink server, and the project's RuleSyncer writing real kube-proxy rules.

(a) The issue's figure "throughput through a ClusterIP >= 0.95 x direct pod IP": the same client
    in the node netns sends a bounded bulk transfer to the pod IP and to the ClusterIP, rounds
    alternating, medians compared.
(b) "rule sync after an Endpoints change: p99 <= 200 ms with 1,000 Services x 10 endpoints": a
    first full sync of 1,000 x 10 (the baseline), then single-endpoint changes, each timed from
    the informer lists to the partial iptables-restore done (render + restore).
(c) No target: the host publisher's splice (127.0.0.1:nodePort on the host -> node IP:nodePort ->
    NodePort DNAT -> pod) against the pod IP from the node netns.

    .venv/bin/python bench/bench_proxy.py            # 1 GiB per transfer, 5 rounds, 50 changes
    .venv/bin/python bench/bench_proxy.py --quick    # 256 MiB, 3 rounds, 20 changes
"""
from __future__ import annotations

import argparse
import asyncio
import os
import random
import secrets
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import (LOAD_CPU, SERVER_CPU, Figure, can_pin, install_cleanup, on_cleanup,  # noqa: E402
                           percentile, print_table, spawn, temp_dir)
from ketch.proxy.proxier import RuleSyncer  # noqa: E402
from ketch.proxy.rules import NodeFacts  # noqa: E402

GATEWAY, POD_IP = "10.252.0.1", "10.252.0.2"
CLUSTER_IP, SINK_PORT, NODE_PORT = "10.43.250.1", 9000, 30999
SERVICES, ENDPOINTS = 1000, 10

SINK = r"""
import socket, threading
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("0.0.0.0", %d)); srv.listen(64)
def serve(c):
    buf = bytearray(1 << 20)
    while c.recv_into(buf):
        pass
    c.sendall(b"ok"); c.close()
while True:
    c, _ = srv.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
""" % SINK_PORT

CLIENT = r"""
import socket, sys, time
ip, port, total = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
chunk = memoryview(bytes(1 << 20))
s = socket.create_connection((ip, port))
t0 = time.perf_counter(); sent = 0
while sent < total:
    s.sendall(chunk); sent += len(chunk)
s.shutdown(socket.SHUT_WR)
assert s.recv(2) == b"ok"
print(time.perf_counter() - t0)
"""


def sh(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True, timeout=30)


def make_net(tag: str) -> tuple[str, str]:
    node, pod = f"ketch-t-bench-{tag}-n", f"ketch-t-bench-{tag}-p"
    for ns in (node, pod):
        sh("ip", "netns", "add", ns)
        on_cleanup(lambda ns=ns: subprocess.run(["ip", "netns", "del", ns], capture_output=True))
    n = ("ip", "-n", node)
    sh(*n, "link", "set", "lo", "up")
    sh(*n, "link", "add", "br0", "type", "bridge")
    sh(*n, "addr", "add", f"{GATEWAY}/24", "dev", "br0")
    sh(*n, "link", "set", "br0", "up")
    sh(*n, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0-peer")
    sh(*n, "addr", "add", "192.168.79.2/24", "dev", "eth0")
    sh(*n, "link", "set", "eth0-peer", "up")
    sh(*n, "link", "set", "eth0", "up")
    sh(*n, "route", "add", "default", "dev", "eth0")
    sh(*n, "link", "add", "veth0", "type", "veth", "peer", "name", "eth0", "netns", pod)
    sh(*n, "link", "set", "veth0", "master", "br0", "up")
    sh("ip", "-n", pod, "addr", "add", f"{POD_IP}/24", "dev", "eth0")
    sh("ip", "-n", pod, "link", "set", "eth0", "up")
    sh("ip", "-n", pod, "link", "set", "lo", "up")
    sh("ip", "-n", pod, "route", "add", "default", "via", GATEWAY)
    return node, pod


def transfer(netns: str | None, ip: str, port: int, total: int) -> float:
    """MB/s of one bulk transfer by a fresh client process (in netns, or on the host)."""
    prefix = ["taskset", "-c", str(LOAD_CPU)] if can_pin() else []
    ns = ["ip", "netns", "exec", netns] if netns else []
    out = subprocess.run([*prefix, *ns, sys.executable, "-c", CLIENT, ip, str(port), str(total)],
                         capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        raise SystemExit(f"client to {ip}:{port} failed: {out.stderr.strip()}")
    return total / float(out.stdout) / 1e6


def one_service() -> tuple[list[dict], list[dict]]:
    svc = {"metadata": {"namespace": "bench", "name": "sink"},
           "spec": {"type": "NodePort", "clusterIP": CLUSTER_IP,
                    "ports": [{"port": 80, "targetPort": SINK_PORT, "nodePort": NODE_PORT}]}}
    sl = {"metadata": {"namespace": "bench", "name": "sink-1", "labels": {"kubernetes.io/service-name": "sink"}},
          "addressType": "IPv4", "ports": [{"name": "", "port": SINK_PORT, "protocol": "TCP"}],
          "endpoints": [{"addresses": [POD_IP], "conditions": {"ready": True}, "nodeName": "bench-node"}]}
    return [svc], [sl]


class _StubInformer:
    """The publisher's view of Services without an API server: a fixed list."""

    def __init__(self, items: list[dict]):
        self.items = items
        self.synced = asyncio.Event()
        self.synced.set()

    def add_handlers(self, **_handlers) -> None:
        pass

    def list(self) -> list[dict]:
        return self.items

    def get(self, key: str) -> dict | None:
        return None


class _StubInformers:
    def __init__(self, items: list[dict]):
        self.inf = _StubInformer(items)

    def informer(self, api_version: str, kind: str) -> _StubInformer:
        return self.inf


async def publisher_rounds(node: str, services: list[dict], total: int, rounds: int) -> list[float]:
    from ketch.agent.publisher import HostPublisher
    from ketch.agent.runtime.namespaces import NetnsSockets
    sockets = NetnsSockets(f"/run/netns/{node}")
    pub = HostPublisher(_StubInformers(services), sockets, GATEWAY)
    pub.start()
    try:
        for _ in range(50):
            if ("127.0.0.1", NODE_PORT, "TCP") in pub.listeners or pub.failed:
                break
            await asyncio.sleep(0.05)
        if pub.failed:
            raise SystemExit(f"host publisher: {pub.failed}")
        return [await asyncio.to_thread(transfer, None, "127.0.0.1", NODE_PORT, total) for _ in range(rounds)]
    finally:
        await pub.stop()
        sockets.close()


def many_services() -> tuple[list[dict], list[dict], int]:
    services, slices, next_ip = [], [], 0
    base = (10 << 24) | (42 << 16)
    for i in range(SERVICES):
        name = f"svc-{i}"
        services.append({"metadata": {"namespace": "bench", "name": name, "uid": f"uid-{i}", "resourceVersion": "1"},
                         "spec": {"type": "ClusterIP", "clusterIP": f"10.43.{i // 250}.{i % 250 + 1}",
                                  "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}})
        eps = []
        for _ in range(ENDPOINTS):
            next_ip += 1
            ip = base + next_ip
            eps.append({"addresses": [f"10.42.{(ip >> 8) & 255}.{ip & 255}"], "conditions": {"ready": True},
                        "nodeName": "bench-node"})
        slices.append({"metadata": {"namespace": "bench", "name": f"{name}-1", "resourceVersion": "1",
                                    "labels": {"kubernetes.io/service-name": name}},
                       "addressType": "IPv4", "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
                       "endpoints": eps})
    return services, slices, next_ip


async def sync_latency(node: str, changes: int) -> tuple[float, list[float], float]:
    services, slices, next_ip = many_services()
    syncer = RuleSyncer(node, NodeFacts("bench-node", (), "10.42.0.0/16"))
    t0 = time.perf_counter()
    await syncer.sync(services, slices)
    full = time.perf_counter() - t0
    rng = random.Random(5)
    base = (10 << 24) | (42 << 16)
    samples = []
    for _ in range(changes):
        k = rng.randrange(SERVICES)
        next_ip += 1
        ip = base + next_ip
        eps = list(slices[k]["endpoints"])
        eps[rng.randrange(ENDPOINTS)] = {"addresses": [f"10.42.{(ip >> 8) & 255}.{ip & 255}"],
                                         "conditions": {"ready": True}, "nodeName": "bench-node"}
        # a new object with a new resourceVersion, as the informer hands it over
        slices[k] = {**slices[k], "endpoints": eps,
                     "metadata": {**slices[k]["metadata"], "resourceVersion": str(next_ip)}}
        t0 = time.perf_counter()
        wrote = await syncer.sync(services, slices)
        samples.append(time.perf_counter() - t0)
        assert wrote
    t0 = time.perf_counter()
    await syncer.sync(services, slices, force=True)
    full_again = time.perf_counter() - t0
    return full, samples, full_again


def _run(coro):
    """On uvloop when it is there, as the agent runs."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench_proxy needs root (network namespaces, iptables inside them)")
    install_cleanup()
    total = (256 if args.quick else 1024) << 20
    rounds = 3 if args.quick else 5
    changes = 20 if args.quick else 50
    work = temp_dir("ketch-bench-proxy-")
    node, pod = make_net(secrets.token_hex(3))
    spawn(["ip", "netns", "exec", pod, sys.executable, "-c", SINK], work / "sink.log", cpu=SERVER_CPU)
    services, slices = one_service()
    asyncio.run(RuleSyncer(node, NodeFacts("bench-node", (), "10.252.0.0/16")).sync(services, slices))
    for _ in range(50):     # the sink is up once a transfer works
        try:
            transfer(node, POD_IP, SINK_PORT, 1 << 20)
            break
        except SystemExit:
            time.sleep(0.1)

    direct, via_cip = [], []
    for _ in range(rounds):                 # alternating, so drift hits both alike
        direct.append(transfer(node, POD_IP, SINK_PORT, total))
        via_cip.append(transfer(node, CLUSTER_IP, 80, total))
    via_host = _run(publisher_rounds(node, services, total, rounds))
    d, c, h = statistics.median(direct), statistics.median(via_cip), statistics.median(via_host)
    # Each ClusterIP round against the direct round just before it: robust to a busy machine.
    paired = statistics.median(x / y for x, y in zip(via_cip, direct))
    print(f"bulk TCP, {total >> 20} MiB per transfer, {rounds} rounds (MB/s): direct pod IP {d:,.0f}, "
          f"ClusterIP {c:,.0f} (ratio of medians {c / d:.3f}, median of paired rounds {paired:.3f}), "
          f"host 127.0.0.1:nodePort via the publisher {h:,.0f} (ratio {h / d:.3f})")

    full, samples, full_again = asyncio.run(sync_latency(node, changes))
    ms = [s * 1000 for s in samples]
    print(f"rule sync, {SERVICES} Services x {ENDPOINTS} endpoints: full {full * 1000:,.0f} ms "
          f"(again at the end {full_again * 1000:,.0f} ms); {changes} single-endpoint changes: "
          f"p50 {percentile(ms, 0.5):.1f} ms, p99 {percentile(ms, 0.99):.1f} ms, max {max(ms):.1f} ms")
    print()
    print_table([
        Figure("throughput via ClusterIP", "MB/s", 0.95 * d, True, c, d, "same client, server, run"),
        Figure("throughput via host publisher", "MB/s", None, True, h, d),
        Figure("endpoint change sync p50", "ms", None, False, percentile(ms, 0.5), full * 1000),
        Figure("endpoint change sync p99", "ms", 200.0, False, percentile(ms, 0.99), full * 1000),
    ], "direct pod IP / full sync")


if __name__ == "__main__":
    main()
