"""One probe run against real servers on loopback: httpGet (aiohttp, HTTP and HTTPS), tcpSocket,
grpc (grpcio's health service) and exec (a local process), with the kubelet's result texts.

`Loopback` stands in for the runtime: its open_connection is where the agent would open the socket
inside the pod's network namespace; here "the pod" is this machine's loopback.
"""
from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import ssl
import time

import grpc
import pytest
from aiohttp import web
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from ketch.agent.hooks import run_hook, run_pre_stop
from ketch.agent.prober import run_probe
from ketch.web.certs import ensure_leaf, load_or_create_ca

POD = {"metadata": {"name": "web", "namespace": "default", "uid": "u-1"}, "status": {"podIP": "127.0.0.1"}}


class Loopback:
    """The runtime's network and exec entry points, on this machine."""

    async def open_connection(self, sandbox_id: str, port: int, host: str = "127.0.0.1"):
        return await asyncio.open_connection(host, port)

    async def exec_sync(self, container_id: str, cmd: list[str], timeout: float | None = None):
        proc = await asyncio.create_subprocess_exec(*cmd, stdout=asyncio.subprocess.PIPE,
                                                    stderr=asyncio.subprocess.PIPE, start_new_session=True)
        try:
            out, err = await asyncio.wait_for(proc.communicate(), timeout)
        except (asyncio.TimeoutError, asyncio.CancelledError):
            os.killpg(proc.pid, signal.SIGKILL)  # the shell's children too, which hold the pipes
            await proc.wait()
            raise
        return proc.returncode, out, err


RUNTIME = Loopback()


async def probe(spec: dict, container: dict | None = None):
    return await run_probe(spec, POD, container or {"name": "app"}, "cid", RUNTIME, sandbox_id="sb")


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _start(app: web.Application, ssl_context=None):
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
    await site.start()
    return runner, site._server.sockets[0].getsockname()[1]


def _app() -> web.Application:
    async def echo(request):
        return web.json_response({k: v for k, v in request.headers.items()} | {"path": request.path_qs})

    async def status(request):
        return web.Response(status=int(request.match_info["code"]), text="body of the error")

    async def big(request):
        resp = web.StreamResponse()
        await resp.prepare(request)
        try:
            for _ in range(256):
                await resp.write(b"x" * 4096)
        except (ConnectionError, RuntimeError):
            pass
        return resp

    async def slow(request):
        await asyncio.sleep(1.5)  # past the probe's 1 s timeout
        return web.Response(text="late")

    async def to_echo(request):
        raise web.HTTPFound("/echo?from=redirect")

    async def elsewhere(request):
        port = request.url.port
        raise web.HTTPFound(f"http://localhost:{port}/echo", text="moved away")

    async def loop(request):
        raise web.HTTPFound("/loop")

    app = web.Application()
    app.add_routes([web.get("/echo", echo), web.get("/status/{code}", status), web.get("/big", big),
                    web.get("/slow", slow), web.get("/to-echo", to_echo), web.get("/elsewhere", elsewhere),
                    web.get("/loop", loop)])
    return app


@pytest.fixture
async def http_port():
    runner, port = await _start(_app())
    yield port
    await runner.cleanup()


@pytest.fixture
async def https_port(tmp_path):
    ca = load_or_create_ca(tmp_path)
    cert, key = ensure_leaf(ca, tmp_path, "server", "pod", server_names=("127.0.0.1",), server=True)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    runner, port = await _start(_app(), ctx)
    yield port
    await runner.cleanup()


async def test_http_success_sends_the_kubelets_request(http_port):
    container = {"name": "app", "ports": [{"name": "web", "containerPort": http_port}]}
    r = await probe({"httpGet": {"path": "/echo", "port": "web",
                                 "httpHeaders": [{"name": "x-custom-header", "value": "Awesome"}]}}, container)
    assert r.result == "success" and r.error is None
    seen = json.loads(r.output)
    assert seen["User-Agent"] == "kube-probe/1.35"
    assert seen["Accept"] == "*/*"
    assert seen["Host"] == f"127.0.0.1:{http_port}"
    assert seen["X-Custom-Header"] == "Awesome"


async def test_http_custom_host_and_accept_headers(http_port):
    r = await probe({"httpGet": {"path": "/echo", "port": http_port, "httpHeaders": [
        {"name": "Host", "value": "example.test"}, {"name": "Accept", "value": ""},
        {"name": "User-Agent", "value": "mine"}]}})
    seen = json.loads(r.output)
    assert seen["Host"] == "example.test" and "Accept" not in seen and seen["User-Agent"] == "mine"


async def test_http_error_status_is_a_failure_without_the_body(http_port):
    r = await probe({"httpGet": {"path": "/status/500", "port": http_port}})
    assert (r.result, r.output) == ("failure", "HTTP probe failed with statuscode: 500")
    r = await probe({"httpGet": {"path": "/status/399", "port": http_port}})
    assert r.result == "warning"  # a 3xx without Location: success, with a ProbeWarning


async def test_http_redirects(http_port):
    r = await probe({"httpGet": {"path": "/to-echo", "port": http_port}})
    assert r.result == "success" and json.loads(r.output)["path"] == "/echo?from=redirect"
    r = await probe({"httpGet": {"path": "/elsewhere", "port": http_port}})
    assert (r.result, r.output) == ("warning", "Probe terminated redirects, Response body: moved away")
    r = await probe({"httpGet": {"path": "/loop", "port": http_port}})
    assert (r.result, r.output) == ("failure", 'Get "/loop": stopped after 10 redirects')


async def test_http_body_read_stops_at_10_kib(http_port):
    t0 = time.monotonic()
    r = await probe({"httpGet": {"path": "/big", "port": http_port}})
    assert r.result == "success" and len(r.output) == 10 * 1024
    assert time.monotonic() - t0 < 1


async def test_http_timeout_and_refused(http_port):
    t0 = time.monotonic()
    r = await probe({"httpGet": {"path": "/slow", "port": http_port}, "timeoutSeconds": 1})
    assert 0.9 < time.monotonic() - t0 < 2
    assert (r.result, r.output) == ("failure", f'Get "http://127.0.0.1:{http_port}/slow": context deadline exceeded '
                                               "(Client.Timeout exceeded while awaiting headers)")
    port = closed_port()
    r = await probe({"httpGet": {"path": "status /x?a=b c", "port": port}})
    assert (r.result, r.output) == ("failure", f'Get "http://127.0.0.1:{port}/status%20/x?a=b c": dial tcp '
                                               f"127.0.0.1:{port}: connect: connection refused")


async def test_http_unknown_port_name_is_a_prober_error(http_port):
    r = await probe({"httpGet": {"path": "/", "port": "metrics"}}, {"name": "app", "ports": []})
    assert (r.result, r.error) == ("unknown", 'strconv.Atoi: parsing "metrics": invalid syntax')


async def test_https_without_verification(https_port, http_port):
    r = await probe({"httpGet": {"path": "/echo", "port": https_port, "scheme": "HTTPS"}})
    assert r.result == "success" and json.loads(r.output)["User-Agent"] == "kube-probe/1.35"
    r = await probe({"httpGet": {"path": "/echo", "port": http_port, "scheme": "HTTPS"}})
    assert (r.result, r.output) == ("failure", f'Get "https://127.0.0.1:{http_port}/echo": '
                                               "http: server gave HTTP response to HTTPS client")


async def test_tcp_socket():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        assert (await probe({"tcpSocket": {"port": port}})).result == "success"
        # That connection, never accepted, fills the accept queue: the next one is never answered.
        t0 = time.monotonic()
        r = await probe({"tcpSocket": {"port": port}, "timeoutSeconds": 1})
        assert (r.result, r.output) == ("failure", f"dial tcp 127.0.0.1:{port}: i/o timeout")
        assert time.monotonic() - t0 < 2
        r = await probe({"httpGet": {"path": "/", "port": port}, "timeoutSeconds": 1})
        assert (r.result, r.output) == ("failure", f'Get "http://127.0.0.1:{port}/": dial tcp 127.0.0.1:{port}: '
                                                   "i/o timeout (Client.Timeout exceeded while awaiting headers)")
    port = closed_port()
    r = await probe({"tcpSocket": {"port": port}})
    assert (r.result, r.output) == ("failure", f"dial tcp 127.0.0.1:{port}: connect: connection refused")


@pytest.fixture
async def grpc_port():
    server = grpc.aio.server()
    servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    await servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    await servicer.set("db", health_pb2.HealthCheckResponse.NOT_SERVING)
    yield port
    await server.stop(0)


async def test_grpc_health(grpc_port):
    assert await probe({"grpc": {"port": grpc_port}}) == (await probe({"grpc": {"port": grpc_port, "service": ""}}))
    r = await probe({"grpc": {"port": grpc_port}})
    assert (r.result, r.output) == ("success", "service healthy")
    r = await probe({"grpc": {"port": grpc_port, "service": "db"}})
    assert (r.result, r.output) == ("failure", 'service unhealthy (responded with "NOT_SERVING")')
    r = await probe({"grpc": {"port": grpc_port, "service": "cache"}})
    assert r.result == "failure" and r.output.startswith("error: health rpc probe failed: rpc error: code = NotFound")


async def test_grpc_without_health_service_and_unreachable():
    server = grpc.aio.server()
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        r = await probe({"grpc": {"port": port}})
        assert r.result == "failure"
        assert r.output.startswith("error: this server does not implement the grpc health protocol "
                                   "(grpc.health.v1.Health): ")
    finally:
        await server.stop(0)
    port = closed_port()
    r = await probe({"grpc": {"port": port}, "timeoutSeconds": 1})
    assert (r.result, r.output) == ("failure", f'timeout: failed to connect service "127.0.0.1:{port}" within 1s: '
                                               "context deadline exceeded")


async def test_exec():
    container = {"name": "app", "env": [{"name": "WHO", "value": "probe"},
                                        {"name": "SECRET", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]}
    r = await probe({"exec": {"command": ["echo", "hi", "$(WHO)", "[$(SECRET)]", "$$(WHO)", "$(NONE)"]}}, container)
    assert (r.result, r.output) == ("success", "hi probe [] $(WHO) $(NONE)\n")
    r = await probe({"exec": {"command": ["cat", "/nonexistent/healthy"]}})
    assert (r.result, r.output) == ("failure", "cat: /nonexistent/healthy: No such file or directory\n")
    t0 = time.monotonic()
    r = await probe({"exec": {"command": ["sh", "-c", "sleep 5"]}, "timeoutSeconds": 1})
    assert (r.result, r.output) == ("failure", 'command "sh -c sleep 5" timed out')
    assert time.monotonic() - t0 < 2
    r = await probe({"exec": {"command": ["sh", "-c", "head -c 20000 /dev/zero | tr '\\0' y; exit 1"]}})
    assert r.result == "failure" and r.output == "y" * 10240


async def test_missing_handler():
    r = await probe({"periodSeconds": 1})
    assert (r.result, r.error) == ("unknown", "missing probe handler for web_default(u-1):app")


# --- lifecycle hooks ----------------------------------------------------------------------------


async def hook(handler: dict, container: dict | None = None, timeout: float | None = None, recorder=None):
    return await run_hook(handler, POD, container or {"name": "app"}, "cid", RUNTIME, sandbox_id="sb",
                          pod_ip="127.0.0.1", timeout=timeout, recorder=recorder)


async def test_exec_hook():
    assert await hook({"exec": {"command": ["true"]}}) is None
    message = await hook({"exec": {"command": ["sh", "-c", "echo out; echo err >&2; exit 3"]}})
    assert message == ('Exec lifecycle hook ([sh -c echo out; echo err >&2; exit 3]) for Container "app" in Pod '
                       '"web_default(u-1)" failed - error: command \'sh -c echo out; echo err >&2; exit 3\' exited '
                       'with 3: err\n, message: "out\\nerr\\n"')


async def test_http_hook(http_port):
    # Only a failed request fails the hook; the status code is not looked at.
    assert await hook({"httpGet": {"path": "/status/500", "port": http_port}}) is None
    port = closed_port()
    message = await hook({"httpGet": {"path": "/shutdown", "port": port}})
    assert message == ('HTTP lifecycle hook (/shutdown) for Container "app" in Pod "web_default(u-1)" failed - '
                       f'error: Get "http://127.0.0.1:{port}/shutdown": dial tcp 127.0.0.1:{port}: connect: '
                       "connection refused")


async def test_https_hook_falls_back_to_http(http_port):
    events = []

    class Recorder:
        def event(self, obj, event_type, reason, message, field_path=""):
            events.append((obj["metadata"]["name"], event_type, reason, message))

    assert await hook({"httpGet": {"path": "/echo", "port": http_port, "scheme": "HTTPS"}}, recorder=Recorder()) \
        is None
    assert events == [("web", "Warning", "LifecycleHTTPFallback",
                       f"request to HTTPS lifecycle hook 127.0.0.1:{http_port} got HTTP response, "
                       "retry with HTTP succeeded")]


async def test_sleep_and_tcp_socket_hooks():
    t0 = time.monotonic()
    assert await hook({"sleep": {"seconds": 1}}) is None
    assert 0.9 < time.monotonic() - t0 < 1.5
    assert await hook({"sleep": {"seconds": 30}}, timeout=0.2) == (
        'Sleep lifecycle hook (30) for Container "app" in Pod "web_default(u-1)" failed - error: '
        "container terminated before sleep hook finished")
    assert await hook({"tcpSocket": {"port": 8080}}) == (
        "Cannot run handler: invalid handler: &LifecycleHandler{Exec:nil,HTTPGet:nil,"
        "TCPSocket:&TCPSocketAction{Port:{0 8080 },Host:,},Sleep:nil,}")


async def test_pre_stop_time_counts_against_the_grace_period():
    container = {"name": "app", "lifecycle": {"preStop": {"sleep": {"seconds": 1}}}}
    left = await run_pre_stop(POD, container, "cid", RUNTIME, sandbox_id="sb", pod_ip="127.0.0.1", grace_period=30)
    assert left == 29
    container = {"name": "app", "lifecycle": {"preStop": {"exec": {"command": ["sleep", "10"]}}}}
    t0 = time.monotonic()
    left = await run_pre_stop(POD, container, "cid", RUNTIME, sandbox_id="sb", pod_ip="127.0.0.1", grace_period=1)
    assert left == 2 and time.monotonic() - t0 < 1.5  # abandoned at the grace period; 2 s remain for the kill
