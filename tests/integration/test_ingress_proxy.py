"""The ingress data path: ketch's proxy on the host's loopback in front of aiohttp backends
listening inside a network namespace the test made (so only the proxy, dialling through
NetnsSockets, can reach them). Keep-alive on both sides, bodies streamed both ways, WebSocket
passthrough, forwarded headers, round robin, and the 404/503/502 answers."""
from __future__ import annotations

import asyncio

import aiohttp
import pytest

from helpers.netns import scratch_netns
from aiohttp import web

from ketch.agent.runtime.namespaces import NetnsSockets
from ketch.ingress.proxy import IngressProxy, RoutingState
from ketch.ingress.routes import build_table


@pytest.fixture
def netns():
    with scratch_netns("ketch-t-ing") as path:
        yield path


class Env:
    def __init__(self, netns: str):
        self.sockets = NetnsSockets(netns)
        self.proxy = IngressProxy(self.sockets)
        self.runners: list[web.AppRunner] = []
        self.server = None
        self.port = 0
        self.seen: list[dict] = []   # request headers the backends got

    async def backend(self, ip: str, app: web.Application) -> tuple[str, int]:
        sock = await self.sockets.listen(ip, 0)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.SockSite(runner, sock).start()
        self.runners.append(runner)
        return ip, sock.getsockname()[1]

    async def start(self) -> None:
        self.server = await asyncio.get_running_loop().create_server(self.proxy.protocol(), "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    def route(self, rules: list[dict], endpoints: dict[str, list[tuple[str, int]]], default: str | None = None) -> None:
        spec = {"rules": rules}
        if default:
            spec["defaultBackend"] = {"service": {"name": default, "port": {"number": 80}}}
        table = build_table([{"metadata": {"name": "t", "namespace": "default"}, "spec": spec}])
        self.proxy.state = RoutingState(table, {f"default/{svc}:80": eps for svc, eps in endpoints.items()})

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def close(self) -> None:
        self.proxy.close()
        if self.server is not None:
            self.server.close()
        for r in self.runners:
            await r.cleanup()
        self.sockets.close()


@pytest.fixture
async def env(netns):
    e = Env(netns)
    await e.start()
    try:
        yield e
    finally:
        await e.close()


def rule(host: str, path: str, svc: str, path_type: str = "Prefix") -> dict:
    return {**({"host": host} if host else {}),
            "http": {"paths": [{"path": path, "pathType": path_type,
                                "backend": {"service": {"name": svc, "port": {"number": 80}}}}]}}


def named_app(name: str, seen: list | None = None) -> web.Application:
    async def hello(request: web.Request):
        if seen is not None:
            seen.append(dict(request.headers))
        body = await request.read()
        return web.Response(text=f"{name} {request.method} {request.path_qs} {len(body)}")
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", hello)
    return app


async def test_host_routing_keep_alive_and_round_robin(env):
    a1 = await env.backend("127.0.0.2", named_app("a1"))
    a2 = await env.backend("127.0.0.3", named_app("a2"))
    b = await env.backend("127.0.0.4", named_app("b"))
    env.route([rule("a.example", "/", "svc-a"), rule("b.example", "/", "svc-b")],
              {"svc-a": [a1, a2], "svc-b": [b]})
    async with aiohttp.ClientSession() as s:
        got = []
        for i in range(6):
            async with s.get(f"{env.url}/x?i={i}", headers={"Host": "a.example:8080"}) as r:
                assert r.status == 200
                got.append((await r.text()).split()[0])
        async with s.post(f"{env.url}/upload", data=b"z" * 1000, headers={"Host": "b.example"}) as r:
            assert await r.text() == "b POST /upload 1000"
        connector_conns = len(s.connector._conns)
    assert got == ["a1", "a2"] * 3                      # round robin over the ready endpoints
    assert len(env.proxy.connections) <= 1 and connector_conns == 1   # one client connection, reused
    assert env.proxy.pool.dials == 3                    # one upstream connection per endpoint, reused


async def test_forwarded_headers_and_hop_by_hop_removed(env):
    seen: list[dict] = []
    a = await env.backend("127.0.0.2", named_app("a", seen))
    env.route([rule("a.example", "/", "svc-a")], {"svc-a": [a]})
    reader, writer = await asyncio.open_connection("127.0.0.1", env.port)
    for _ in range(2):   # a new upstream connection, then the pooled one (the callback path)
        writer.write(b"GET /h HTTP/1.1\r\nHost: a.example\r\nConnection: keep-alive, X-Secret\r\nX-Secret: 1\r\n"
                     b"Keep-Alive: timeout=5\r\nX-Forwarded-For: 192.0.2.1\r\nX-Real-IP: 6.6.6.6\r\nTE: trailers\r\n\r\n")
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 OK")
        length = int(next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")))
        await reader.readexactly(length)
    writer.close()
    assert len(seen) == 2 and env.proxy.pool.dials == 1
    for headers in seen:
        h = {k.lower(): v for k, v in headers.items()}
        assert h["x-forwarded-for"] == "127.0.0.1"     # the client's own are not trusted (as ingress-nginx)
        assert h["x-real-ip"] == "127.0.0.1"
        assert h["x-forwarded-proto"] == "http" and h["x-forwarded-host"] == "a.example"
        assert h["x-forwarded-port"] == str(env.port) and h["host"] == "a.example"
        assert "x-secret" not in h and "keep-alive" not in h and "te" not in h
    # A plain request (the one-pass parser's), on the pooled connection too.
    async with aiohttp.ClientSession() as session:
        for _ in range(2):
            async with session.get(f"{env.url}/p?q=1", headers={"Host": "a.example"}) as r:
                assert await r.text() == "a GET /p?q=1 0"
    assert len(seen) == 4 and env.proxy.pool.dials == 1
    h = {k.lower(): v for k, v in seen[3].items()}
    assert h["x-forwarded-for"] == "127.0.0.1" and h["x-real-ip"] == "127.0.0.1" and h["host"] == "a.example"
    assert h["x-forwarded-proto"] == "http" and h["x-forwarded-port"] == str(env.port)


async def test_default_backend_404_and_503(env):
    d = await env.backend("127.0.0.2", named_app("default"))
    env.route([rule("a.example", "/only", "svc-a", "Exact")], {"svc-a": []})
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{env.url}/", headers={"Host": "nobody.example"}) as r:
            assert r.status == 404 and await r.text() == "default backend - 404\n"
        async with s.get(f"{env.url}/only", headers={"Host": "a.example"}) as r:
            assert r.status == 503                      # a backend without endpoints
        env.route([rule("a.example", "/only", "svc-a", "Exact")], {"svc-a": [], "svc-d": [d]}, default="svc-d")
        async with s.get(f"{env.url}/other", headers={"Host": "a.example"}) as r:
            assert (await r.text()).startswith("default GET /other")
        # an endpoint that refuses connections: 502
        env.route([rule("", "/", "svc-a")], {"svc-a": [("127.0.0.9", 1)]})
        async with s.get(f"{env.url}/", headers={"Host": "x"}) as r:
            assert r.status == 502


async def test_streaming_both_ways(env):
    """The first piece of a response reaches the client while the backend still holds the
    second; the first piece of an upload reaches the backend while the client still holds the
    second. Neither side could go on if the proxy buffered."""
    first_seen = asyncio.Event()
    upload_first = asyncio.Event()

    async def stream(request):
        resp = web.StreamResponse()
        await resp.prepare(request)
        await resp.write(b"first;")
        await asyncio.wait_for(first_seen.wait(), 5)
        await resp.write(b"second")
        await resp.write_eof()
        return resp

    async def upload(request):
        got = await request.content.readexactly(6)
        assert got == b"part1;"
        upload_first.set()
        rest = await request.content.read()
        return web.Response(text=(got + rest).decode())

    app = web.Application()
    app.router.add_get("/stream", stream)
    app.router.add_post("/upload", upload)
    a = await env.backend("127.0.0.2", app)
    env.route([rule("", "/", "svc-a")], {"svc-a": [a]})

    async def body():
        yield b"part1;"
        await asyncio.wait_for(upload_first.wait(), 5)
        yield b"part2"

    async with aiohttp.ClientSession() as s:
        async with s.get(f"{env.url}/stream") as r:
            assert r.headers.get("Transfer-Encoding") == "chunked"
            assert await r.content.readexactly(6) == b"first;"
            first_seen.set()
            assert await r.content.read() == b"second"
        async with s.post(f"{env.url}/upload", data=body()) as r:
            assert await r.text() == "part1;part2"
        async with s.get(f"{env.url}/stream") as r:   # the same connections go on after chunked bodies
            assert await r.read() == b"first;second"


async def test_websocket_passthrough(env):
    async def ws_handler(request):
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for msg in ws:
            await ws.send_str(f"echo:{msg.data}")
        return ws

    app = web.Application()
    app.router.add_get("/ws", ws_handler)
    a = await env.backend("127.0.0.2", app)
    env.route([rule("ws.example", "/", "svc-a")], {"svc-a": [a]})
    async with aiohttp.ClientSession() as s:
        async with s.ws_connect(f"{env.url}/ws", headers={"Host": "ws.example"}) as ws:
            for i in range(3):
                await ws.send_str(f"m{i}")
                assert (await ws.receive(timeout=5)).data == f"echo:m{i}"
            await ws.close()


async def test_http10_head_and_pool_reconnect(env):
    a = await env.backend("127.0.0.2", named_app("a"))
    env.route([rule("", "/", "svc-a")], {"svc-a": [a]})
    reader, writer = await asyncio.open_connection("127.0.0.1", env.port)
    writer.write(b"GET /old HTTP/1.0\r\n\r\n")
    data = await reader.read()                         # HTTP/1.0 without keep-alive: closed after
    assert data.startswith(b"HTTP/1.1 200") and b"Connection: close" in data and data.endswith(b"a GET /old 0")
    writer.close()
    async with aiohttp.ClientSession() as s:
        async with s.head(f"{env.url}/h") as r:
            assert r.status == 200 and await r.read() == b""
        # The pod closes its idle keep-alive connections (a restart): the proxy dials anew.
        for up in [c for conns in env.proxy.pool.idle.values() for c in conns]:
            up.abort()
        async with s.get(f"{env.url}/after") as r:
            assert await r.text() == "a GET /after 0"


async def test_bad_requests_answer_400(env):
    env.route([], {})
    for raw in (b"NONSENSE\r\n\r\n", b"GET / HTTP/1.1\r\n\r\n",
                b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
                b"GET / HTTP/1.1\r\nHost: x\nTransfer-Encoding: chunked\r\n\r\n"):   # a field behind a bare LF
        reader, writer = await asyncio.open_connection("127.0.0.1", env.port)
        writer.write(raw)
        assert (await reader.read()).startswith(b"HTTP/1.1 400")
        writer.close()


async def read_response(reader) -> tuple[bytes, bytes]:
    """(head, body) of one Content-Length response."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
    return head, await reader.readexactly(length)


async def test_pipelined_requests_answered_in_order(env):
    a = await env.backend("127.0.0.2", named_app("a"))
    env.route([rule("", "/", "svc-a")], {"svc-a": [a]})
    reader, writer = await asyncio.open_connection("127.0.0.1", env.port)
    writer.write(b"".join(b"GET /%d HTTP/1.1\r\nHost: x\r\n\r\n" % i for i in range(5)))
    bodies = [(await read_response(reader))[1] for _ in range(5)]
    assert bodies == [b"a GET /%d 0" % i for i in range(5)]
    # HTTP/1.0 with keep-alive: kept, and told so
    writer.write(b"GET /old HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    head, body = await read_response(reader)
    assert b"Connection: keep-alive" in head and body == b"a GET /old 0"
    # Expect: 100-continue is answered by the proxy, then the body flows
    writer.write(b"POST /e HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
    assert await reader.readuntil(b"\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"
    writer.write(b"hello")
    assert (await read_response(reader))[1] == b"a POST /e 5"
    writer.close()


def raw_backend(behaviour):
    """A tiny HTTP server: behaviour(n, request head) -> response bytes or None (close) or ... (hang)."""
    counter = [0]

    async def serve(reader, writer):
        counter[0] += 1
        conn, n = counter[0], 0
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                n += 1
                got = behaviour(n, head, conn)
                if got is None:
                    break
                if got is ...:
                    await asyncio.sleep(3600)
                writer.write(got)
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()
    return serve


def ok(body: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


async def listen_raw(env, ip, behaviour):
    sock = await env.sockets.listen(ip, 0)
    server = await asyncio.start_server(raw_backend(behaviour), sock=sock)
    env.runners.append(type("R", (), {"cleanup": staticmethod(lambda: _close(server))})())
    return ip, sock.getsockname()[1]


async def _close(server):
    server.close()


async def test_pooled_connection_closed_by_the_pod_is_retried_for_get_not_post(env):
    # Each connection answers its first request and closes at the second without a word: the
    # race of a pod's keep-alive timeout, made certain.
    a = await listen_raw(env, "127.0.0.2", lambda n, head, conn: ok(b"conn %d" % conn) if n == 1 else None)
    env.route([rule("", "/", "svc-a")], {"svc-a": [a]})
    async with aiohttp.ClientSession() as s:
        for expected in (b"conn 1", b"conn 2", b"conn 3"):
            async with s.get(f"{env.url}/") as r:
                assert r.status == 200 and await r.read() == expected
        async with s.post(f"{env.url}/", data=b"once") as r:
            assert r.status == 502            # not sent twice: the pod may have acted on it


async def test_response_timeout_is_504(netns, monkeypatch):
    from ketch.ingress import proxy as proxy_module
    monkeypatch.setattr(proxy_module, "READ_TIMEOUT", 0.3)
    monkeypatch.setattr(proxy_module, "SWEEP_INTERVAL", 0.1)
    env = Env(netns)
    await env.start()
    try:
        a = await listen_raw(env, "127.0.0.2", lambda n, head, conn: ... if b"/hang" in head else ok(b"fine"))
        env.route([rule("", "/", "svc-a")], {"svc-a": [a]})
        async with aiohttp.ClientSession() as s:
            async with s.get(f"{env.url}/hang") as r:     # on a new connection (the coroutine path)
                assert r.status == 504
            async with s.get(f"{env.url}/ok") as r:
                assert await r.read() == b"fine"
            async with s.get(f"{env.url}/hang") as r:     # on the pooled one (the callback path)
                assert r.status == 504
    finally:
        await env.close()


async def test_large_bodies_both_ways(env):
    import hashlib

    async def digest(request):
        h = hashlib.sha256()
        async for chunk in request.content.iter_chunked(65536):
            h.update(chunk)
        return web.Response(text=h.hexdigest())

    async def big(request):
        return web.Response(body=bytes(range(256)) * 8192)   # 2 MiB with a Content-Length

    app = web.Application()
    app.router.add_post("/digest", digest)
    app.router.add_get("/big", big)
    a = await env.backend("127.0.0.2", app)
    env.route([rule("", "/", "svc-a")], {"svc-a": [a]})
    payload = bytes(range(256)) * 12288   # 3 MiB
    async with aiohttp.ClientSession() as s:
        async with s.post(f"{env.url}/digest", data=payload) as r:
            assert await r.text() == hashlib.sha256(payload).hexdigest()
        for _ in range(2):
            async with s.get(f"{env.url}/big") as r:
                assert r.headers["Content-Length"] == str(2 * 1024 * 1024)
                assert await r.read() == bytes(range(256)) * 8192


# ---- review fixes: each test below failed before its fix ------------------------------------------

async def raw_exchange(env, data: bytes, eof: bool = False, timeout: float = 5.0) -> bytes:
    """Everything the proxy answers to `data` until it closes the connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", env.port)
    try:
        writer.write(data)
        if eof:
            writer.write_eof()
        return await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()


async def test_connection_tokens_cannot_remove_the_framing(env):
    """A request smuggling attempt: `Connection: content-length` must not strip the length, or the
    pod reads the body as a second request the routes never saw."""
    seen: list[dict] = []
    paths: list[str] = []

    async def hello(request):
        paths.append(request.path)
        seen.append(dict(request.headers))
        return web.Response(text=f"{request.path} {len(await request.read())}")
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", hello)
    a = await env.backend("127.0.0.2", app)
    env.route([rule("", "/public", "svc-a")], {"svc-a": [a]})
    hidden = b"GET /admin HTTP/1.1\r\nHost: x\r\n\r\n"
    for connection in (b"content-length", b"keep-alive, Content-Length, host"):
        data = await raw_exchange(env, b"POST /public HTTP/1.1\r\nHost: x\r\nConnection: %s\r\nContent-Length: %d\r\n\r\n%s"
                                  % (connection, len(hidden), hidden) + b"GET /public HTTP/1.1\r\nHost: x\r\n"
                                  b"Connection: close\r\n\r\n")
        assert data.count(b"HTTP/1.1 200") == 2 and b"/public %d" % len(hidden) in data
    await asyncio.sleep(0.1)
    assert "/admin" not in paths and paths.count("/public") == 4
    assert all(h["Host"] == "x" for h in seen)

    # The other direction: a pod's `Connection: content-length` does not strip its framing either.
    b = await listen_raw(env, "127.0.0.3", lambda n, head, conn: b"HTTP/1.1 200 OK\r\nConnection: Content-Length\r\n"
                         b"Content-Length: 5\r\n\r\nhello")
    env.route([rule("", "/", "svc-b")], {"svc-b": [b]})
    reader, writer = await asyncio.open_connection("127.0.0.1", env.port)
    for _ in range(2):   # a new connection (the coroutine path), then the pooled one
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        head, body = await asyncio.wait_for(read_response(reader), 5)
        assert body == b"hello" and head.lower().count(b"content-length: 5") == 1
    writer.close()


async def test_client_x_forwarded_for_is_replaced(env):
    seen: list[dict] = []
    a = await env.backend("127.0.0.2", named_app("a", seen))
    env.route([rule("", "/", "svc-a")], {"svc-a": [a]})
    for _ in range(2):
        await raw_exchange(env, b"GET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 6.6.6.6\r\nX-Forwarded-Proto: https\r\n"
                           b"X-Forwarded-Host: evil\r\nX-Forwarded-Port: 1\r\nConnection: close\r\n\r\n")
    assert len(seen) == 2
    for h in seen:
        assert h["X-Forwarded-For"] == "127.0.0.1" and h["X-Forwarded-Proto"] == "http"
        assert h["X-Forwarded-Host"] == "x" and h["X-Forwarded-Port"] == str(env.port)


async def test_post_on_a_closed_pooled_connection_is_not_retried(env):
    """The slow path (a body that arrives after its head) must not send a POST twice either."""
    posts = []

    def behaviour(n, head, conn):
        if head.startswith(b"POST"):
            posts.append(conn)
        return ok(b"conn %d" % conn) if n == 1 else None
    a = await listen_raw(env, "127.0.0.2", behaviour)
    env.route([rule("", "/", "svc-a")], {"svc-a": [a]})
    reader, writer = await asyncio.open_connection("127.0.0.1", env.port)
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (await read_response(reader))[1] == b"conn 1"
    writer.write(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\n")
    await asyncio.sleep(0.1)
    writer.write(b"once")
    rest = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    assert rest.startswith(b"HTTP/1.1 502") and posts == [1]


@pytest.mark.parametrize("size", [b"0x4", b"+4", b"-1", b"4_0", b" 4", b"", b"1" * 17])
async def test_bad_chunk_size_is_400(env, size):
    a = await env.backend("127.0.0.2", named_app("a"))
    env.route([rule("", "/", "svc-a")], {"svc-a": [a]})
    data = await raw_exchange(env, b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n%s\r\nabcd\r\n0\r\n\r\n"
                              % size)
    assert data.startswith(b"HTTP/1.1 400")


async def test_chunk_line_too_long_is_400(env):
    a = await env.backend("127.0.0.2", named_app("a"))
    env.route([rule("", "/", "svc-a")], {"svc-a": [a]})
    data = await raw_exchange(env, b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n4;" + b"e" * 70000)
    assert data.startswith(b"HTTP/1.1 400")


async def test_good_chunked_upload_still_works(env):
    a = await env.backend("127.0.0.2", named_app("a"))
    env.route([rule("", "/", "svc-a")], {"svc-a": [a]})
    data = await raw_exchange(env, b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                              b"4;ext=1\r\nabcd\r\nA\r\n0123456789\r\n0\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 200") and data.endswith(b"a POST / 14")


@pytest.mark.parametrize("length", [10, 200000])   # read whole first / streamed
async def test_slow_client_body_times_out(netns, monkeypatch, length):
    from ketch.ingress import proxy as proxy_module
    monkeypatch.setattr(proxy_module, "CLIENT_BODY_TIMEOUT", 0.3)
    env = Env(netns)
    await env.start()
    try:
        a = await env.backend("127.0.0.2", named_app("a"))
        env.route([rule("", "/", "svc-a")], {"svc-a": [a]})
        data = await raw_exchange(env, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\nabc" % length,
                                  timeout=3)
        assert data.startswith(b"HTTP/1.1 408")
        # A refused request's body is drained with the same timeout.
        env.route([], {})
        data = await raw_exchange(env, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc", timeout=3)
        assert data.startswith(b"HTTP/1.1 408")
    finally:
        await env.close()


async def test_upstream_pool_is_swept(netns, monkeypatch):
    from ketch.ingress import proxy as proxy_module
    monkeypatch.setattr(proxy_module, "POOL_IDLE", 0.3)
    monkeypatch.setattr(proxy_module, "SWEEP_INTERVAL", 0.1)
    monkeypatch.setattr(proxy_module, "CLOCK_TICK", 0.05)
    env = Env(netns)
    await env.start()
    try:
        a = await env.backend("127.0.0.2", named_app("a"))
        b = await env.backend("127.0.0.3", named_app("b"))
        env.route([rule("", "/", "svc-a")], {"svc-a": [a, b]})
        async with aiohttp.ClientSession() as s:
            for _ in range(2):
                async with s.get(f"{env.url}/") as r:
                    assert r.status == 200
        assert set(env.proxy.pool.idle) == {a, b}
        # An address no endpoint list names any more: its connections go at the next sweep.
        env.route([rule("", "/", "svc-a")], {"svc-a": [a]})
        await asyncio.sleep(0.2)
        assert set(env.proxy.pool.idle) == {a}
        # Idle past POOL_IDLE: closed, and the empty list dropped.
        await asyncio.sleep(0.6)
        assert env.proxy.pool.idle == {}
    finally:
        await env.close()


async def test_pooled_connection_closed_by_the_pod_leaves_the_pool(env):
    # The pod answers one request, then closes the idle connection (its keep-alive timeout).
    async def serve_once(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(ok(b"once"))
        await writer.drain()
        await asyncio.sleep(0.1)
        writer.close()
    sock = await env.sockets.listen("127.0.0.3", 0)
    server = await asyncio.start_server(serve_once, sock=sock)
    try:
        addr = ("127.0.0.3", sock.getsockname()[1])
        env.route([rule("", "/", "svc-b")], {"svc-b": [addr]})
        async with aiohttp.ClientSession() as s:
            async with s.get(f"{env.url}/") as r:
                assert await r.read() == b"once"
        assert len(env.proxy.pool.idle[addr]) == 1
        await asyncio.sleep(0.5)
        assert not env.proxy.pool.idle.get(addr)
    finally:
        server.close()


async def test_half_close_with_a_partial_head_is_closed(env):
    env.route([], {})
    data = await raw_exchange(env, b"GET / HTTP/1.1\r\nHost: x\r\n", eof=True, timeout=2)
    assert data == b""


async def test_oversized_head_is_431(env):
    a = await env.backend("127.0.0.2", named_app("a"))
    env.route([rule("", "/", "svc-a")], {"svc-a": [a]})
    data = await raw_exchange(env, b"GET / HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"p" * 70000 + b"\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 431")


async def test_nul_in_a_head_is_400(env):
    a = await env.backend("127.0.0.2", named_app("a"))
    env.route([rule("", "/", "svc-a")], {"svc-a": [a]})
    data = await raw_exchange(env, b"GET / HTTP/1.1\r\nHost: x\r\nX: a\0b\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 400")
