"""Cluster DNS benchmark: queries/s and latency of ketch's DNS server on loopback UDP.

The server runs in its own process on one core (ketch.dns.server.DNSServer over a zone of 1,000
Services, 100 of them headless with 3 endpoints); the load generator on the other core keeps a
window of queries in flight and times each. Two query mixes: names asked again and again (what
pods do; answered from the server's packed-answer cache) and names asked once each (every one
resolved). The baseline is a trivial responder on the same event loop and core that answers each
query with a fixed packet, the ceiling of a Python asyncio UDP server on this machine.

    .venv/bin/python bench/bench_dns.py            # 20,000 queries per phase
    .venv/bin/python bench/bench_dns.py --quick    # 5,000
"""
from __future__ import annotations

import argparse
import asyncio
import socket
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dnslib import RR, A, DNSRecord  # noqa: E402

from bench._common import (Figure, install_cleanup, percentile, pin_self_to_load_cpu, print_table,  # noqa: E402
                           spawn, stop, temp_dir)

SERVICES, HEADLESS = 1000, 100
WINDOW = 8  # queries in flight (a few busy pods); latency grows with it by Little's law
TIME_LIMIT = 20.0  # seconds per phase at most


def build_zone():
    from ketch.dns.records import ClusterRecords
    zone = ClusterRecords("cluster.local", track_namespaces=False)
    for i in range(SERVICES):
        headless = i < HEADLESS
        meta = {"name": f"svc-{i}", "namespace": "default"}
        ip = f"10.43.{i // 250}.{i % 250 + 1}"
        spec = {"clusterIP": "None"} if headless else {"clusterIP": ip, "clusterIPs": [ip]}
        zone.set_service({"metadata": meta, "spec": {**spec, "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}})
        if headless:
            zone.set_endpoint_slice({
                "metadata": {"name": f"svc-{i}-x", "namespace": "default", "labels": {"kubernetes.io/service-name": f"svc-{i}"}},
                "ports": [{"name": "http", "port": 80, "protocol": "TCP"}],
                "endpoints": [{"addresses": [f"10.42.{i}.{k}"], "conditions": {"ready": True}} for k in range(1, 4)]})
    return zone


async def serve(kind: str, port: int) -> None:
    if kind == "ketch":
        from ketch.dns.server import DNSServer
        server = DNSServer(build_zone(), host="127.0.0.1", port=port)
        await server.start()
    else:
        loop = asyncio.get_running_loop()
        fixed = DNSRecord.question("svc-1.default.svc.cluster.local").reply()
        fixed.add_answer(RR("svc-1.default.svc.cluster.local", rdata=A("10.43.0.2"), ttl=5))
        body = fixed.pack()[2:]

        class Trivial(asyncio.DatagramProtocol):
            def connection_made(self, transport):
                self.transport = transport

            def datagram_received(self, data, addr):
                self.transport.sendto(data[:2] + body, addr)

        await loop.create_datagram_endpoint(Trivial, local_addr=("127.0.0.1", port))
    print("ready", flush=True)
    await asyncio.Event().wait()


def queries(mix: str, count: int) -> list[bytes]:
    if mix == "repeated":
        names = [f"svc-{i % 200}.default.svc.cluster.local" for i in range(200)]
    else:
        names = [f"svc-{i % SERVICES}.default.svc.cluster.local" if i < SERVICES
                 else f"miss-{i}.default.svc.cluster.local" for i in range(count)]
    return [DNSRecord.question(names[i % len(names)]).pack() for i in range(count)]


async def load(port: int, packets: list[bytes]) -> tuple[float, list[float]]:
    """Send `packets` keeping WINDOW in flight; (queries/s, latencies in ms)."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.connect(("127.0.0.1", port))
    sock.setblocking(False)
    sent_at: dict[int, float] = {}
    latencies: list[float] = []
    done = loop.create_future()
    it = iter(enumerate(packets))
    deadline = time.monotonic() + TIME_LIMIT

    def send_next():
        for i, pkt in it:
            ident = i & 0xFFFF
            sent_at[ident] = time.perf_counter()
            sock.send(ident.to_bytes(2, "big") + pkt[2:])
            return
        if not sent_at and not done.done():
            done.set_result(None)

    def readable():
        while True:
            try:
                data = sock.recv(4096)
            except BlockingIOError:
                return
            t0 = sent_at.pop(int.from_bytes(data[:2], "big"), None)
            if t0 is not None:
                latencies.append((time.perf_counter() - t0) * 1000)
            if time.monotonic() > deadline:
                if not done.done():
                    done.set_result(None)
                return
            send_next()

    loop.add_reader(sock.fileno(), readable)
    start = time.perf_counter()
    for _ in range(WINDOW):
        send_next()
    try:
        await asyncio.wait_for(done, TIME_LIMIT + 5)
    except asyncio.TimeoutError:
        pass  # lost datagrams: count what came back
    elapsed = time.perf_counter() - start
    loop.remove_reader(sock.fileno())
    sock.close()
    return len(latencies) / elapsed, latencies


def start(kind: str, work: Path) -> tuple[object, int]:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    log = work / f"{kind}.log"
    proc = spawn([sys.executable, __file__, "--serve", kind, "--port", str(port)], log)
    deadline = time.monotonic() + 30
    while "ready" not in log.read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"{kind} server did not start:\n{log.read_text()}")
        time.sleep(0.05)
    return proc, port


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--serve", choices=("ketch", "trivial"))
    parser.add_argument("--port", type=int)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve(args.serve, args.port))
        return
    install_cleanup()
    pin_self_to_load_cpu()
    count = 5000 if args.quick else 20000
    work = temp_dir("ketch-bench-dns-")
    results = {}
    for kind in ("trivial", "ketch"):
        proc, port = start(kind, work)
        for mix in ("repeated", "distinct"):
            if kind == "trivial" and mix == "distinct":
                continue
            asyncio.run(load(port, queries(mix, 500)))  # warm up
            results[kind, mix] = asyncio.run(load(port, queries(mix, count)))
        stop(proc)
    base_qps, base_lat = results["trivial", "repeated"]
    figures = []
    for mix in ("repeated", "distinct"):
        qps, lat = results["ketch", mix]
        figures.append(Figure(f"queries/s, {mix} names", "q/s", 5000, True, qps, base_qps,))
        figures.append(Figure(f"p99 latency, {mix} names", "ms", 5.0, False, percentile(lat, 0.99),
                              percentile(base_lat, 0.99)))
        figures.append(Figure(f"p50 latency, {mix} names", "ms", None, False, percentile(lat, 0.5),
                              percentile(base_lat, 0.5)))
    print(f"{count} queries per phase, {WINDOW} in flight, UDP on loopback; zone of {SERVICES} Services")
    print_table(figures, "trivial responder")


if __name__ == "__main__":
    main()
