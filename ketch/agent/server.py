"""The kubelet's own HTTPS API (port 10250 upstream), which the API server proxies to.

Routes as the kubelet's: /healthz, /pods, /containerLogs/{ns}/{pod}/{container},
/exec|attach/{ns}/{pod}[/{uid}]/{container}, /portForward/{ns}/{pod}[/{uid}],
/run/{ns}/{pod}[/{uid}]/{container} (POST, exec_sync), /stats/summary, /metrics/resource.
Exec, attach and port-forward speak WebSocket (Upgrade: websocket) and SPDY/3.1 (Upgrade:
SPDY/3.1) on the same paths; see ketch/agent/streaming.

The server is given a backend (the kubelet) that maps pod and container names to runtime
ids. It serves on the address it is given with a self-signed certificate. Given a client CA,
it authenticates every caller (ketch.agent.authn): a client certificate that CA signed, or a
bearer token the `token_reviewer` accepts; anyone else gets 401 Unauthorized. Without one (only
tests that drive the server alone) it serves anyone.
"""
from __future__ import annotations

import asyncio
import collections
import inspect
import logging
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Awaitable, Callable, Protocol

from aiohttp import web

from ..web import certs
from . import logs
from .runtime import api as rt
from ..web import hijack
from .streaming import channels, portforward, remotecommand, spdy

log = logging.getLogger("ketch.agent.server")

SPDY_EXEC_PROTOCOLS = ("v4.channel.k8s.io", "v3.channel.k8s.io", "v2.channel.k8s.io", "channel.k8s.io")
STREAM_CREATION_TIMEOUT = 30.0


@dataclass
class ContainerRef:
    container_id: str
    sandbox_id: str
    log_path: str = ""
    tty: bool = False
    stdin: bool = False


class KubeletError(Exception):
    """A request the kubelet refuses; the message is what the client sees."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


class Backend(Protocol):
    """What the server needs of the kubelet."""

    runtime: rt.RuntimeService

    async def resolve(self, namespace: str, pod: str, container: str, previous: bool = False) -> ContainerRef:
        """The container (container "" = the pod: only sandbox_id is meaningful), or raise
        KubeletError (404 for an unknown pod, 400 for a container that cannot be used)."""

    def summary(self) -> dict | Any:
        """The Summary API document (may be a coroutine)."""

    def resource_metrics(self) -> str | Any:
        """The /metrics/resource text (may be a coroutine)."""


async def _maybe_await(value):
    return await value if inspect.isawaitable(value) else value


def _bool(query, name: str) -> bool:
    return query.get(name, "").lower() in ("1", "true")


def _negotiate(offered: list[str], served: tuple[str, ...]) -> str | None:
    for header in offered:
        for proto in (p.strip() for p in header.split(",")):
            if proto in served:
                return proto
    return None


class _Sink:
    def __init__(self, sock: channels.ChannelSocket, channel: int):
        self.sock, self.channel = sock, channel

    async def write(self, data: bytes) -> None:
        await self.sock.send(self.channel, data)


class KubeletServer:
    def __init__(self, backend: Backend, address: str = "127.0.0.1", port: int = 0, *,
                 cert_dir: Path, node_name: str = "", client_ca: bytes | None = None,
                 token_reviewer: Callable[[str], Awaitable[tuple[str, tuple[str, ...]] | None]] | None = None):
        self.backend = backend
        self.client_ca = client_ca
        self.token_reviewer = token_reviewer
        self.address = address
        self.port = port
        self.cert_dir = Path(cert_dir)
        self.node_name = node_name
        self._runner: web.AppRunner | None = None
        # "<websocket|spdy>:<subprotocol>" -> sessions served: which protocol each client chose
        self.sessions_by_protocol: collections.Counter[str] = collections.Counter()

    @property
    def url(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"https://{host}:{self.port}"

    def _ssl(self) -> ssl.SSLContext:
        ca = certs.load_or_create_ca(self.cert_dir, "kubelet-ca")
        names = tuple(dict.fromkeys(n for n in (self.address, "127.0.0.1", "localhost", self.node_name) if n))
        cert, key = certs.ensure_leaf(ca, self.cert_dir, "kubelet", f"{self.node_name or 'kubelet'}@kubelet",
                                      server_names=names, server=True)
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(cert, key)
        if self.client_ca is not None:
            ctx.load_verify_locations(cadata=self.client_ca.decode())
            ctx.verify_mode = ssl.CERT_OPTIONAL   # a certificate, if offered, must be the CA's
        ctx.set_alpn_protocols(["http/1.1"])
        return ctx

    @web.middleware
    async def _authenticate(self, request: web.Request, handler):
        if self.client_ca is not None:
            user = None
            ssl_object = request.transport.get_extra_info("ssl_object") if request.transport else None
            der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
            if der:
                user = certs.subject_of(der)
            auth = request.headers.get("Authorization", "")
            if user is None and auth.startswith("Bearer ") and self.token_reviewer is not None:
                user = await self.token_reviewer(auth[7:].strip())
            if user is None:
                return web.Response(status=401, text="Unauthorized")
        return await handler(request)

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._authenticate])
        r = app.router
        r.add_get("/healthz", self._healthz)
        r.add_get("/pods", self._pods)
        r.add_get("/containerLogs/{ns}/{pod}/{container}", self._logs)
        for verb in ("exec", "attach"):
            for path in (f"/{verb}/{{ns}}/{{pod}}/{{container}}", f"/{verb}/{{ns}}/{{pod}}/{{uid}}/{{container}}"):
                r.add_route("GET", path, self._remote_command)
                r.add_route("POST", path, self._remote_command)
        for path in ("/portForward/{ns}/{pod}", "/portForward/{ns}/{pod}/{uid}"):
            r.add_route("GET", path, self._port_forward)
            r.add_route("POST", path, self._port_forward)
        r.add_post("/run/{ns}/{pod}/{container}", self._run)
        r.add_post("/run/{ns}/{pod}/{uid}/{container}", self._run)
        r.add_get("/stats/summary", self._summary)
        r.add_get("/metrics/resource", self._metrics)
        return app

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app(), access_log=None, handle_signals=False, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.address, self.port, ssl_context=self._ssl(), reuse_address=True)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        log.info("kubelet API serving on %s", self.url)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # ---- helpers -------------------------------------------------------------------------

    async def _resolve(self, request: web.Request, previous: bool = False) -> ContainerRef:
        m = request.match_info
        return await self.backend.resolve(m["ns"], m["pod"], m.get("container", ""), previous)

    @staticmethod
    def _error(e: KubeletError) -> web.Response:
        return web.Response(status=e.status, text=e.message)

    # ---- plain endpoints -------------------------------------------------------------------

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def _pods(self, request: web.Request) -> web.Response:
        pods = getattr(self.backend, "pods", None)
        items = await _maybe_await(pods()) if pods else []
        return web.json_response({"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items})

    async def _summary(self, request: web.Request) -> web.Response:
        return web.json_response(await _maybe_await(self.backend.summary()))

    async def _metrics(self, request: web.Request) -> web.Response:
        text = await _maybe_await(self.backend.resource_metrics())
        return web.Response(text=text, content_type="text/plain", charset="utf-8",
                            headers={"X-Content-Type-Options": "nosniff"})

    async def _logs(self, request: web.Request) -> web.StreamResponse:
        q = request.query
        try:
            opts = log_options(q)
            ref = await self._resolve(request, _bool(q, "previous"))
        except KubeletError as e:
            return self._error(e)
        resp = web.StreamResponse(headers={"Content-Type": "text/plain"})
        await resp.prepare(request)
        runtime = self.backend.runtime

        async def running() -> bool:
            if request.transport is None or request.transport.is_closing():
                return False   # the client went away: a follow ends
            try:
                return (await runtime.container_status(ref.container_id)).state == rt.CONTAINER_RUNNING
            except rt.RuntimeError_:
                return False

        async def write(data: bytes) -> None:
            await resp.write(data)

        try:
            await logs.read_logs(ref.log_path, opts, write, running if opts.follow else None)
        except (ConnectionError, asyncio.CancelledError):
            return resp
        await resp.write_eof()
        return resp

    async def _run(self, request: web.Request) -> web.Response:
        cmd = request.query.get("cmd", "").split()
        try:
            ref = await self._resolve(request)
            _, out, err = await self.backend.runtime.exec_sync(ref.container_id, cmd, None)
        except KubeletError as e:
            return self._error(e)
        except rt.RuntimeError_ as e:
            return web.Response(status=500, text=e.message)
        return web.Response(body=out + err, content_type="text/plain")

    # ---- exec and attach -------------------------------------------------------------------

    async def _remote_command(self, request: web.Request) -> web.StreamResponse:
        attach = request.path.startswith("/attach/")
        opts = remotecommand.options_from_query(request.query)
        if not attach and not opts.command:
            return web.Response(status=400, text="you must specify at least 1 command")
        if not (opts.stdin or opts.stdout or opts.stderr):
            return web.Response(status=400, text="you must specify at least 1 of stdin, stdout, stderr")
        try:
            ref = await self._resolve(request)
        except KubeletError as e:
            return self._error(e)
        runtime = self.backend.runtime
        if attach:
            def start():
                return runtime.attach(ref.container_id, stdin=opts.stdin, tty=opts.tty)
            command = None
        else:
            def start():
                return runtime.exec(ref.container_id, opts.command, tty=opts.tty, stdin=opts.stdin)
            command = opts.command
        upgrade = request.headers.get("Upgrade", "").lower()
        if upgrade == "websocket":
            return await self._remote_command_ws(request, opts, start, command)
        if upgrade.startswith("spdy/"):
            return await self._remote_command_spdy(request, opts, start, command)
        return web.Response(status=400, text="Upgrade request required")

    async def _remote_command_ws(self, request, opts, start, command) -> web.StreamResponse:
        ws = web.WebSocketResponse(protocols=channels.EXEC_PROTOCOLS, max_msg_size=0, autoping=True)
        await ws.prepare(request)
        sock = channels.ChannelSocket(ws, 5)
        self.sessions_by_protocol[f"websocket:{sock.protocol}"] += 1
        pump = asyncio.create_task(sock.run())
        gone = asyncio.Event()
        pump.add_done_callback(lambda _: gone.set())
        streams = remotecommand.Streams(
            stdin=sock.inboxes[channels.STDIN] if opts.stdin else None,
            stdout=_Sink(sock, channels.STDOUT) if opts.stdout else None,
            stderr=_Sink(sock, channels.STDERR) if opts.stderr else None,
            resize=sock.inboxes[channels.RESIZE] if opts.tty else None,
            error=_Sink(sock, channels.ERROR), status_json=sock.status_json, disconnected=gone)
        try:
            await remotecommand.serve(start, streams, command)
        finally:
            await ws.close()
            pump.cancel()
        return ws

    async def _remote_command_spdy(self, request, opts, start, command) -> web.StreamResponse:
        version = _negotiate(request.headers.getall("X-Stream-Protocol-Version", []), SPDY_EXEC_PROTOCOLS)
        if version is None:
            offered = request.headers.getall("X-Stream-Protocol-Version", [])
            return web.Response(status=403, headers={"X-Accepted-Stream-Protocol-Versions": ", ".join(SPDY_EXEC_PROTOCOLS)},
                                text=f"unable to upgrade: unable to negotiate protocol: client supports {offered}, "
                                     f"server accepts {list(SPDY_EXEC_PROTOCOLS)}")
        resp, reader, writer = await hijack.switch_protocols(
            request, {"Connection": "Upgrade", "Upgrade": "SPDY/3.1", "X-Stream-Protocol-Version": version})
        self.sessions_by_protocol[f"spdy:{version}"] += 1
        arrived: asyncio.Queue[spdy.Stream] = asyncio.Queue()

        async def write(frame: bytes) -> None:
            writer.write(frame)
            await writer.drain()

        session = spdy.Session(reader, write, arrived.put_nowait)
        serving = asyncio.create_task(session.serve())
        gone = asyncio.Event()
        serving.add_done_callback(lambda _: gone.set())
        wanted = {"error"} | {n for n, on in (("stdin", opts.stdin), ("stdout", opts.stdout),
                                             ("stderr", opts.stderr)) if on}
        if opts.tty and version in ("v3.channel.k8s.io", "v4.channel.k8s.io"):
            wanted.add("resize")
        got: dict[str, spdy.Stream] = {}
        try:
            try:
                async with asyncio.timeout(STREAM_CREATION_TIMEOUT):
                    while not wanted <= got.keys():
                        stream = await arrived.get()
                        got[stream.header("streamtype")] = stream
            except TimeoutError:
                log.info("exec: timed out waiting for client to create streams")
                return resp
            streams = remotecommand.Streams(
                stdin=got.get("stdin"), stdout=got.get("stdout"), stderr=got.get("stderr"),
                resize=got.get("resize"), error=got["error"], status_json=version == "v4.channel.k8s.io",
                disconnected=gone)
            await remotecommand.serve(start, streams, command)
            for stream in got.values():
                await stream.close()
        finally:
            serving.cancel()
            writer.close()
        return resp

    # ---- port-forward ----------------------------------------------------------------------

    async def _port_forward(self, request: web.Request) -> web.StreamResponse:
        try:
            ref = await self._resolve(request)
        except KubeletError as e:
            return self._error(e)
        runtime = self.backend.runtime

        def connect(port: int):
            return runtime.open_connection(ref.sandbox_id, port)

        upgrade = request.headers.get("Upgrade", "").lower()
        if upgrade == "websocket":
            ws = web.WebSocketResponse(protocols=(portforward.TUNNEL_PROTOCOL, *channels.PORTFORWARD_PROTOCOLS),
                                       max_msg_size=0)
            chosen = ws.can_prepare(request).protocol
            self.sessions_by_protocol[f"websocket:{chosen or ''}"] += 1
            if chosen == portforward.TUNNEL_PROTOCOL:
                await ws.prepare(request)
                await portforward.serve_tunnel(ws, connect, ref.sandbox_id)
                await ws.close()
                return ws
            try:
                ports = ports_from_query(request.query)
            except ValueError as e:
                return web.Response(status=400, text=str(e))
            await ws.prepare(request)
            await portforward.serve_websocket(ws, ports, connect, ref.sandbox_id)
            return ws
        if upgrade.startswith("spdy/"):
            version = _negotiate(request.headers.getall("X-Stream-Protocol-Version", []), (portforward.PROTOCOL,))
            if version is None:
                return web.Response(status=403, text="unable to upgrade: unable to negotiate protocol")
            resp, reader, writer = await hijack.switch_protocols(
                request, {"Connection": "Upgrade", "Upgrade": "SPDY/3.1", "X-Stream-Protocol-Version": version})
            self.sessions_by_protocol[f"spdy:{version}"] += 1

            async def write(frame: bytes) -> None:
                writer.write(frame)
                await writer.drain()

            try:
                await portforward.serve_spdy(reader, write, connect, ref.sandbox_id)
            finally:
                writer.close()
            return resp
        return web.Response(status=400, text="Upgrade request required")


def ports_from_query(query) -> list[int]:
    """`port=80&port=8080` (as the API server sends) or `ports=80,8080` (as clients send it)."""
    texts = [p for v in query.getall("port", []) + query.getall("ports", []) for p in v.split(",") if p.strip()]
    if not texts:
        raise ValueError("at least one port must be specified")
    ports = []
    for t in texts:
        try:
            port = int(t)
        except ValueError:
            raise ValueError(f"unable to parse {t!r} as a port: invalid syntax") from None
        if not 0 < port < 65536:
            raise ValueError(f"port {t!r} must be > 0 and < 65536")
        ports.append(port)
    return ports


def log_options(query) -> logs.LogOptions:
    """The kubelet's container log query: follow, tailLines, sinceSeconds, sinceTime, timestamps,
    limitBytes."""
    import time

    def number(name: str) -> int | None:
        v = query.get(name)
        if v in (None, ""):
            return None
        try:
            return int(v)
        except ValueError:
            raise KubeletError(400, f"invalid {name}: {v!r}") from None
    since_ns = None
    if (secs := number("sinceSeconds")) is not None:
        since_ns = time.time_ns() - secs * 1_000_000_000
    elif query.get("sinceTime"):
        since_ns = logs.parse_timestamp(query["sinceTime"])
        if since_ns is None:
            raise KubeletError(400, f"invalid sinceTime: {query['sinceTime']!r}")
    tail = number("tailLines")
    return logs.LogOptions(follow=_bool(query, "follow"), tail_lines=tail if tail is None or tail >= 0 else None,
                           since_ns=since_ns, timestamps=_bool(query, "timestamps"),
                           limit_bytes=number("limitBytes"))

