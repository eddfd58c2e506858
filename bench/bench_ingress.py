"""Ingress benchmark: requests/s through ketch's ingress proxy against Debian's nginx proxying the
same backend, with the same load generator, in one run.

A network namespace made here (ketch-t-ingb-*) holds the backend: nginx answering a fixed
20-byte body on 127.0.0.1:8080 (fast, so the proxies are what is measured). ketch's proxy
(ketch.ingress.proxy.IngressProxy on uvloop, as the agent runs it, routing by the Host of an
Ingress rule) listens on the host's loopback and dials the backend inside the namespace through
NetnsSockets, as the agent does with pods. The baseline nginx proxy (one worker, upstream
keep-alive, the X-Forwarded-* headers ingress-nginx sets, no access log) runs inside the
namespace. Each proxy has core 0 to itself; the load generator and the backend share core 1.
Load: wrk (when installed; `apt-get install wrk`) or a Python asyncio keep-alive client, with
CONNECTIONS keep-alive connections, bounded by duration (wrk) or request count (Python); the
proxies are measured in alternating rounds and their medians compared. The Python generator
tops out near 30,000 req/s on this machine, below nginx: use wrk for the ratio.

    .venv/bin/python bench/bench_ingress.py            # 4 rounds of 5 s per proxy (wrk) / 100,000 requests
    .venv/bin/python bench/bench_ingress.py --quick    # 2 rounds of 2 s / 20,000
    .venv/bin/python bench/bench_ingress.py --loadgen python
"""
from __future__ import annotations

import argparse
import asyncio
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import (LOAD_CPU, Figure, can_pin, free_port, install_cleanup, log_tail, on_cleanup,  # noqa: E402
                           print_table, spawn, stop, temp_dir)

CONNECTIONS = 32
BACKEND_PORT = 8080
HOST = "bench.example"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"

BACKEND_CONF = """
worker_processes 1;
daemon off;
pid {dir}/backend.pid;
error_log {dir}/backend-error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {dir}/tmp; proxy_temp_path {dir}/tmp; fastcgi_temp_path {dir}/tmp;
  uwsgi_temp_path {dir}/tmp; scgi_temp_path {dir}/tmp;
  keepalive_requests 10000000;
  server {{
    listen 127.0.0.1:{port};
    location / {{ default_type text/plain; return 200 "hello from backend\\n"; }}
  }}
}}
"""

PROXY_CONF = """
worker_processes 1;
daemon off;
pid {dir}/proxy.pid;
error_log {dir}/proxy-error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {dir}/tmp; proxy_temp_path {dir}/tmp; fastcgi_temp_path {dir}/tmp;
  uwsgi_temp_path {dir}/tmp; scgi_temp_path {dir}/tmp;
  keepalive_requests 10000000;
  upstream backend {{ server 127.0.0.1:{backend}; keepalive 64; keepalive_requests 10000000; }}
  server {{
    listen 127.0.0.1:{port};
    server_name {host};
    location / {{
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Real-IP $remote_addr;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_set_header X-Forwarded-Host $host;
      proxy_set_header X-Forwarded-Port $server_port;
    }}
  }}
}}
"""


# ---- ketch's proxy, in a child process ---------------------------------------------------------

async def serve_ketch(port: int, netns: str, backend_port: int) -> None:
    from ketch.agent.runtime.namespaces import NetnsSockets
    from ketch.ingress.proxy import IngressProxy, RoutingState
    from ketch.ingress.routes import build_table
    proxy = IngressProxy(NetnsSockets(netns))
    ingress = {"metadata": {"name": "bench", "namespace": "default"}, "spec": {"rules": [
        {"host": HOST, "http": {"paths": [{"path": "/", "pathType": "Prefix",
                                           "backend": {"service": {"name": "backend", "port": {"number": 80}}}}]}}]}}
    proxy.state = RoutingState(build_table([ingress]), {"default/backend:80": [("127.0.0.1", backend_port)]})
    sock = await NetnsSockets(None).listen("127.0.0.1", port, reuse_port=True)
    await asyncio.get_running_loop().create_server(proxy.protocol(b"http"), sock=sock)
    print("ready", flush=True)
    await asyncio.Event().wait()


# ---- load generators ----------------------------------------------------------------------------

def run_wrk(port: int, netns_name: str | None, seconds: float) -> float:
    prefix = ["ip", "netns", "exec", netns_name] if netns_name else []
    pin = ["taskset", "-c", str(LOAD_CPU)] if can_pin() else []
    out = subprocess.run([*prefix, *pin, "wrk", "-t1", f"-c{CONNECTIONS}", f"-d{seconds:g}s", "-H", f"Host: {HOST}",
                          f"http://127.0.0.1:{port}/"], capture_output=True, text=True, timeout=seconds + 30)
    m = re.search(r"Requests/sec:\s+([\d.]+)", out.stdout)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)|Socket errors: .*", out.stdout)
    if not m or errors:
        raise SystemExit(f"wrk failed:\n{out.stdout}\n{out.stderr}")
    return float(m.group(1))


async def python_load(port: int, netns: str | None, count: int) -> float:
    """`count` GETs over CONNECTIONS keep-alive connections; requests/s."""
    from ketch.agent.runtime.namespaces import NetnsSockets
    sockets = NetnsSockets(netns)
    request = f"GET / HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode()
    left = [count]

    async def conn() -> None:
        reader, writer = await sockets.open_connection("127.0.0.1", port, timeout=5)
        while left[0] > 0:
            left[0] -= 1
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            i = head.lower().index(b"content-length:") + 15
            await reader.readexactly(int(head[i:head.index(b"\r\n", i)]))
            if not head.startswith(b"HTTP/1.1 200"):
                raise SystemExit(f"bad response: {head!r}")
        writer.close()

    t0 = time.perf_counter()
    await asyncio.wait_for(asyncio.gather(*(conn() for _ in range(CONNECTIONS))), 120)
    rate = count / (time.perf_counter() - t0)
    sockets.close()
    return rate


def measure(loadgen: str, port: int, netns_path: str | None, netns_name: str | None, seconds: float,
            count: int) -> float:
    if loadgen == "wrk":
        run_wrk(port, netns_name, 1)   # warm up: connections, caches
        return run_wrk(port, netns_name, seconds)
    import uvloop
    uvloop.run(python_load(port, netns_path, count // 10))
    return uvloop.run(python_load(port, netns_path, count))


# ---- the run ------------------------------------------------------------------------------------

def wait_port(netns_name: str | None, port: int, proc, log: Path) -> None:
    deadline = time.monotonic() + 20
    prefix = ["ip", "netns", "exec", netns_name] if netns_name else []
    while True:
        ok = subprocess.run([*prefix, "curl", "-s", "-o", "/dev/null", "-H", f"Host: {HOST}",
                             f"http://127.0.0.1:{port}/"], capture_output=True).returncode == 0
        if ok:
            return
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"server on port {port} did not start:\n{log_tail(log)}")
        time.sleep(0.1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--loadgen", choices=("wrk", "python"), default="wrk" if shutil.which("wrk") else "python")
    parser.add_argument("--serve-ketch", action="store_true")
    parser.add_argument("--port", type=int)
    parser.add_argument("--netns")
    parser.add_argument("--backend-port", type=int, default=BACKEND_PORT)
    args = parser.parse_args()
    if args.serve_ketch:
        import uvloop
        uvloop.run(serve_ketch(args.port, args.netns, args.backend_port))
        return
    if not Path(NGINX).exists():
        raise SystemExit("nginx is not installed: apt-get install -y nginx-light")
    install_cleanup()
    seconds, count, rounds = (2.0, 20000, 2) if args.quick else (5.0, 100000, 4)
    work = temp_dir("ketch-bench-ingress-")
    (work / "tmp").mkdir()
    name = f"ketch-t-ingb-{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    on_cleanup(lambda: subprocess.run(["ip", "netns", "del", name], check=False))
    subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
    netns = f"/run/netns/{name}"

    (work / "backend.conf").write_text(BACKEND_CONF.format(dir=work, port=BACKEND_PORT))
    backend = spawn(["ip", "netns", "exec", name, NGINX, "-c", str(work / "backend.conf"), "-p", str(work)],
                    work / "backend.log", cpu=LOAD_CPU)
    wait_port(name, BACKEND_PORT, backend, work / "backend.log")

    nginx_port, ketch_port = free_port(), free_port()
    (work / "proxy.conf").write_text(PROXY_CONF.format(dir=work, port=nginx_port, backend=BACKEND_PORT, host=HOST))
    nginx = spawn(["ip", "netns", "exec", name, NGINX, "-c", str(work / "proxy.conf"), "-p", str(work)],
                  work / "proxy.log")
    wait_port(name, nginx_port, nginx, work / "proxy.log")
    ketch = spawn([sys.executable, __file__, "--serve-ketch", "--port", str(ketch_port), "--netns", netns,
                   "--backend-port", str(BACKEND_PORT)], work / "ketch.log")
    wait_port(None, ketch_port, ketch, work / "ketch.log")

    # Rounds that alternate which proxy goes first, so a change in the machine's other load during
    # the run weighs on both; the medians are compared. Only one proxy has load at a time.
    runs: dict[str, list[float]] = {"nginx": [], "ketch": []}
    where = {"nginx": (nginx_port, netns, name), "ketch": (ketch_port, None, None)}
    for r in range(rounds):
        for kind in (("nginx", "ketch") if r % 2 == 0 else ("ketch", "nginx")):
            port, path, ns_name = where[kind]
            runs[kind].append(measure(args.loadgen, port, path, ns_name, seconds, count))
    stop(ketch)
    stop(nginx)
    stop(backend)

    results = {k: statistics.median(v) for k, v in runs.items()}
    bound = f"{seconds:g} s" if args.loadgen == "wrk" else f"{count:,} requests"
    print(f"GET / through each proxy to one nginx backend in a netns; load: {args.loadgen}, {CONNECTIONS} "
          f"keep-alive connections, {bound} per run; each proxy on one core; median of {rounds} rounds")
    for kind, values in runs.items():
        print(f"  {kind}: " + ", ".join(f"{v:,.0f}" for v in values) + " req/s")
    print_table([Figure("requests/s through the ingress", "req/s", 0.5 * results["nginx"], True,
                        results["ketch"], results["nginx"], "target: half of nginx")], "nginx proxy")


if __name__ == "__main__":
    main()
