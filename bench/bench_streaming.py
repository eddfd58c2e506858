"""Streaming figures: `kubectl exec … -- true` round trip and port-forward throughput, each
beside a baseline measured in the same run.

A real `ketch server`, and the kubelet API (ketch.agent.server) in this process with the test
suite's host-process backend (tests/helpers/host_backend.py: "containers" are host processes,
port-forward reaches loopback servers), registered as a Node with a pod bound to it. So the
figures are the protocols' and the API server hop's cost, not a container runtime's.

    exec: kubectl 1.32 (WebSocket v5) and 1.27 (SPDY) `exec -- true`, against `kubectl get pod`
          (the same kubectl start-up and TLS handshake with one plain request); and an in-process
          WebSocket exec through the API server against the same exec sent straight to the kubelet.
    logs -f: time from a line written to the CRI log file until `kubectl logs -f` prints it.
    port-forward: MB/s pod→client and client→pod through `kubectl port-forward` (1.32: SPDY in
          WebSocket; 1.27: SPDY), against a direct loopback connection to the same servers.

Usage: python bench/bench_streaming.py [--runs 20] [--mb 200]
"""
from __future__ import annotations

import argparse
import asyncio
import os
import socket
import ssl
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))

from _common import install_cleanup, start_server, stop, temp_dir  # noqa: E402
from streaming_env import KubeletThread, create_running_pod, register_node  # noqa: E402

KUBECTL = {"1.32": "/usr/bin/kubectl", "1.27": "/usr/lib/google-cloud-sdk/bin/kubectl.1.27"}
CHUNK = 1 << 16


class Cluster:
    """Just enough of the tests' Server for streaming_env: kubectl with this kubeconfig."""

    def __init__(self, kubeconfig: Path):
        self.kubeconfig = kubeconfig
        self.env = {**os.environ, "KUBECONFIG": str(kubeconfig), "HOME": str(kubeconfig.parent)}

    def kubectl(self, *args, kubectl="/usr/bin/kubectl", input=None, check=True, timeout=60):
        p = subprocess.run([kubectl, *args], input=input, capture_output=True, text=True, env=self.env,
                           timeout=timeout)
        if check and p.returncode:
            raise RuntimeError(f"kubectl {args}: {p.stderr}")
        return p


def timed(fn, runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
    return out


def summary(ms: list[float]) -> str:
    ms = sorted(ms)
    return f"p50 {statistics.median(ms):6.1f} ms  p90 {ms[int(len(ms) * 0.9) - 1]:6.1f} ms"


# ---- in-process WebSocket exec ------------------------------------------------------------------

def _client_tls(kubeconfig: Path, tmp: Path) -> tuple[str, ssl.SSLContext]:
    import base64
    cfg = yaml.safe_load(kubeconfig.read_text())
    user = cfg["users"][0]["user"]
    cluster = cfg["clusters"][0]["cluster"]
    for name, key in (("ca.crt", "certificate-authority-data"),):
        (tmp / name).write_bytes(base64.b64decode(cluster[key]))
    (tmp / "c.crt").write_bytes(base64.b64decode(user["client-certificate-data"]))
    (tmp / "c.key").write_bytes(base64.b64decode(user["client-key-data"]))
    ctx = ssl.create_default_context(cafile=str(tmp / "ca.crt"))
    ctx.load_cert_chain(tmp / "c.crt", tmp / "c.key")
    return cluster["server"], ctx


async def ws_exec_times(url: str, ssl_ctx, runs: int) -> list[float]:
    import aiohttp
    out = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ssl_ctx, force_close=True)) as s:
        for _ in range(runs):
            t = time.perf_counter()
            async with s.ws_connect(url, protocols=("v5.channel.k8s.io",), method="GET") as ws:
                async for msg in ws:
                    if msg.type == aiohttp.WSMsgType.BINARY and msg.data[:1] == b"\x03":
                        break
            out.append((time.perf_counter() - t) * 1000)
    return out


# ---- port-forward throughput ----------------------------------------------------------------------

def serve_forever(handler) -> int:
    sock = socket.create_server(("127.0.0.1", 0))

    def loop():
        while True:
            conn, _ = sock.accept()
            threading.Thread(target=handler, args=(conn,), daemon=True).start()
    threading.Thread(target=loop, daemon=True).start()
    return sock.getsockname()[1]


def source_handler(total: int):
    block = os.urandom(CHUNK)

    def handle(conn):
        with conn:
            sent = 0
            while sent < total:
                conn.sendall(block)
                sent += len(block)
    return handle


def sink_handler(conn):
    with conn:
        n = 0
        while data := conn.recv(1 << 18):
            n += len(data)
        conn.sendall(b"k")  # the acknowledgement: every byte arrived


def download(port: int, total: int) -> float:
    with socket.create_connection(("127.0.0.1", port)) as s:
        t, n = time.perf_counter(), 0
        while n < total:
            data = s.recv(1 << 18)
            if not data:
                break
            n += len(data)
        return n / (time.perf_counter() - t) / 1e6


def upload(port: int, total: int) -> float:
    block = os.urandom(CHUNK)
    with socket.create_connection(("127.0.0.1", port)) as s:
        t = time.perf_counter()
        for _ in range(total // CHUNK):
            s.sendall(block)
        s.shutdown(socket.SHUT_WR)
        s.settimeout(60)
        assert s.recv(1) == b"k"
        return total / (time.perf_counter() - t) / 1e6


def port_forward(cluster: Cluster, kubectl: str, ns: str, pod: str, ports: list[int]):
    proc = subprocess.Popen([kubectl, "port-forward", "-n", ns, f"pod/{pod}", *[f":{p}" for p in ports]],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=cluster.env, text=True)
    local = []
    while len(local) < len(ports):  # "Forwarding from 127.0.0.1:N -> P" (and [::1] lines)
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError("kubectl port-forward ended")
        if "127.0.0.1:" in line:
            local.append(int(line.split("127.0.0.1:")[1].split()[0]))
    return proc, local


def follow_latency(cluster: Cluster, kubelet, pod: str, runs: int) -> list[float]:
    from ketch.agent import logs
    log_path = kubelet.backend.by_pod[("bench", pod)]["main"].log_path
    proc = subprocess.Popen(["/usr/bin/kubectl", "logs", "-f", "--tail=0", "-n", "bench", pod],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=cluster.env)
    try:
        time.sleep(1.5)  # the follow is established
        out = []
        for i in range(runs):
            t = time.perf_counter()
            with open(log_path, "ab") as f:
                f.write(logs.format_line(time.time_ns(), "stdout", f"mark {i}".encode()))
            line = proc.stdout.readline()
            assert line == f"mark {i}\n".encode(), line
            out.append((time.perf_counter() - t) * 1000)
        return out
    finally:
        proc.kill()
        proc.wait()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--mb", type=int, default=200)
    args = ap.parse_args()
    install_cleanup()
    work = temp_dir("ketch-bench-streaming")
    proc, cfg = start_server(work)
    cluster = Cluster(cfg)
    kubelet = None
    try:
        for _ in range(100):
            if cluster.kubectl("get", "--raw", "/readyz", check=False).returncode == 0:
                break
            time.sleep(0.1)
        kubelet = KubeletThread(work / "kubelet").start()
        register_node(cluster, "bench-node", kubelet.url)
        cluster.kubectl("create", "namespace", "bench")
        pod = create_running_pod(cluster, kubelet, "bench", "bench-node", ["main"], name="bench")
        total = args.mb * 1_000_000
        kubelet.backend.runtime.ports[80] = serve_forever(source_handler(total))
        kubelet.backend.runtime.ports[81] = serve_forever(sink_handler)

        print(f"exec round trip ({args.runs} runs each)")
        base = timed(lambda: cluster.kubectl("get", "pod", pod, "-n", "bench", "-o", "name"), args.runs)
        print(f"  kubectl get pod (baseline)        {summary(base)}")
        for version, path in KUBECTL.items():
            if not os.path.exists(path):
                continue
            ms = timed(lambda path=path: cluster.kubectl("exec", pod, "-n", "bench", "--", "true", kubectl=path),
                       args.runs)
            print(f"  kubectl {version} exec -- true        {summary(ms)}  "
                  f"ratio to get {statistics.median(ms) / statistics.median(base):.2f}")
        server_url, ctx = _client_tls(cfg, work)
        query = "command=true&stdout=true&stderr=true"
        via = asyncio.run(ws_exec_times(f"{server_url}/api/v1/namespaces/bench/pods/{pod}/exec?{query}",
                                        ctx, args.runs * 2))
        insecure = ssl.create_default_context()
        insecure.check_hostname, insecure.verify_mode = False, ssl.CERT_NONE
        direct = asyncio.run(ws_exec_times(f"{kubelet.url}/exec/bench/{pod}/main?{query}", insecure, args.runs * 2))
        print(f"  in-process ws exec via API server {summary(via)}")
        print(f"  in-process ws exec to the kubelet {summary(direct)}  "
              f"API server hop x{statistics.median(via) / statistics.median(direct):.2f}")

        print("log follow latency")
        ms = follow_latency(cluster, kubelet, pod, args.runs)
        print(f"  kubectl logs -f                   {summary(ms)}")

        print(f"port-forward throughput ({args.mb} MB each way)")
        src, sink = kubelet.backend.runtime.ports[80], kubelet.backend.runtime.ports[81]
        d_base, u_base = download(src, total), upload(sink, total)
        print(f"  direct loopback (baseline)        down {d_base:7.1f} MB/s  up {u_base:7.1f} MB/s")
        for version, path in KUBECTL.items():
            if not os.path.exists(path):
                continue
            pf, (lsrc, lsink) = port_forward(cluster, path, "bench", pod, [80, 81])
            try:
                d, u = download(lsrc, total), upload(lsink, total)
            finally:
                pf.kill()
                pf.wait()
            print(f"  kubectl {version} port-forward       down {d:7.1f} MB/s  up {u:7.1f} MB/s  "
                  f"ratio to direct {d / d_base:.3f} / {u / u_base:.3f}")
    finally:
        if kubelet is not None:
            kubelet.stop()
        stop(proc)


if __name__ == "__main__":
    main()
