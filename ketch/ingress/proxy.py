"""The ingress data path: an HTTP/1.1 reverse proxy on asyncio streams.

Client connections are kept alive; each request is routed by the current `RoutingState`
(host and path → backend → a ready endpoint, round robin) and sent over a pooled keep-alive
connection to the pod, dialled inside the node's network namespace through `NetnsSockets`.
Bodies stream both ways; a 101 Switching Protocols turns the pair of connections into a splice
(WebSocket and any other Upgrade).
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from ..agent.runtime.namespaces import NetnsSockets
from .http1 import (CHUNKED, HOP_BY_HOP, LENGTH, MAX_HEAD, NO_BODY, UNTIL_CLOSE, BadMessage, Head,
                    copy_body, parse_head, read_head, splice)
from .routes import Backend, RouteTable, normalize_host

log = logging.getLogger("ketch.ingress")

CONNECT_TIMEOUT = 5.0       # nginx proxy_connect_timeout is 60 s; a pod on the node answers at once or never
READ_TIMEOUT = 60.0         # nginx proxy_read_timeout: waiting for the response head
CLIENT_IDLE_TIMEOUT = 75.0  # nginx keepalive_timeout: an idle client connection
POOL_IDLE = 30.0            # an idle upstream connection older than this is not reused
POOL_PER_UPSTREAM = 64
TRIES = 3                   # endpoints tried when connecting fails (nginx proxy_next_upstream error)

FORWARDED = frozenset({b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host", b"x-forwarded-port",
                       b"x-real-ip", b"expect"})
REASONS = {400: "Bad Request", 404: "Not Found", 413: "Payload Too Large", 431: "Request Header Fields Too Large",
           501: "Not Implemented", 502: "Bad Gateway", 503: "Service Temporarily Unavailable",
           504: "Gateway Timeout"}
BODIES = {404: b"default backend - 404\n", 502: b"502 Bad Gateway\n", 503: b"503 Service Temporarily Unavailable\n",
          504: b"504 Gateway Timeout\n"}


@dataclass
class RoutingState:
    """What the controller hands the proxy after each change: the route table and the ready
    endpoints of each backend (by Backend.key)."""
    table: RouteTable = field(default_factory=RouteTable)
    endpoints: dict[str, list[tuple[str, int]]] = field(default_factory=dict)


def simple_response(status: int, close: bool, body: bytes | None = None) -> bytes:
    body = BODIES.get(status, f"{status} {REASONS.get(status, '')}\n".encode()) if body is None else body
    return (f"HTTP/1.1 {status} {REASONS.get(status, '')}\r\nContent-Type: text/plain; charset=utf-8\r\n"
            f"Content-Length: {len(body)}\r\n{'Connection: close' + chr(13) + chr(10) if close else ''}\r\n"
            ).encode() + body


class UpstreamPool:
    """Idle keep-alive connections per (ip, port), newest reused first."""

    def __init__(self, sockets: NetnsSockets):
        self.sockets = sockets
        self.idle: dict[tuple[str, int], list[tuple[asyncio.StreamReader, asyncio.StreamWriter, float]]] = {}
        self.dials = 0   # new connections made (tests read it: keep-alive means few)

    def take(self, addr: tuple[str, int]):
        conns = self.idle.get(addr)
        now = time.monotonic()
        while conns:
            reader, writer, since = conns.pop()
            if writer.is_closing() or reader.at_eof() or now - since > POOL_IDLE:
                writer.transport.abort()
                continue
            return reader, writer
        return None

    async def dial(self, addr: tuple[str, int]):
        sock = await self.sockets.connect(addr[0], addr[1], CONNECT_TIMEOUT)
        self.dials += 1
        return await asyncio.open_connection(sock=sock, limit=MAX_HEAD)

    def give(self, addr: tuple[str, int], reader, writer) -> None:
        conns = self.idle.setdefault(addr, [])
        if len(conns) >= POOL_PER_UPSTREAM:
            writer.transport.abort()
            return
        conns.append((reader, writer, time.monotonic()))

    def close(self) -> None:
        for conns in self.idle.values():
            for _, writer, _ in conns:
                writer.transport.abort()
        self.idle.clear()


class UpstreamFailed(Exception):
    pass


class IngressProxy:
    """Serves client connections (`handle`, for asyncio.start_server) from `state`."""

    def __init__(self, sockets: NetnsSockets):
        self.state = RoutingState()
        self.pool = UpstreamPool(sockets)
        self._rr: dict[str, int] = {}
        self.connections: set[asyncio.StreamWriter] = set()

    def pick(self, backend: Backend) -> list[tuple[str, int]]:
        """The endpoints to try for one request: round robin's next first, then the following ones."""
        eps = self.state.endpoints.get(backend.key)
        if not eps:
            return []
        i = self._rr.get(backend.key, 0)
        self._rr[backend.key] = i + 1
        n = len(eps)
        return [eps[(i + k) % n] for k in range(min(TRIES, n))]

    def close(self) -> None:
        for w in list(self.connections):
            w.transport.abort()
        self.pool.close()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, scheme: bytes = b"http") -> None:
        self.connections.add(writer)
        peer = writer.get_extra_info("peername") or ("", 0)
        local = writer.get_extra_info("sockname") or ("", 0)
        client_ip = str(peer[0]).encode()
        port = str(local[1]).encode()
        self_host = f"{local[0]}:{local[1]}".encode()   # the Host of an HTTP/1.0 request without one
        try:
            while True:
                try:
                    async with asyncio.timeout(CLIENT_IDLE_TIMEOUT):
                        raw = await read_head(reader)
                except TimeoutError:
                    break
                if not raw:
                    break
                try:
                    keep = await self.serve_one(raw, reader, writer, client_ip, scheme, port, self_host)
                except BadMessage as e:
                    writer.write(simple_response(e.status, True))
                    break
                if not keep:
                    break
            await writer.drain()
        except (ConnectionError, OSError, asyncio.IncompleteReadError, BadMessage, TimeoutError):
            pass
        except Exception:  # noqa: BLE001 - one broken request must not take the listener down
            log.exception("ingress: request failed")
        finally:
            self.connections.discard(writer)
            writer.transport.close()

    async def serve_one(self, raw: bytes, reader, writer, client_ip: bytes, scheme: bytes, port: bytes,
                        self_host: bytes = b"") -> bool:
        """One request; True when the client connection stays open for the next."""
        req = parse_head(raw)
        method, target, version = req.first
        if version == b"HTTP/1.1":
            keep = b"close" not in req.connection
        elif version == b"HTTP/1.0":
            keep = b"keep-alive" in req.connection
        else:
            raise BadMessage(400, "unsupported HTTP version")
        req.body_framing()
        host_value = req.get(b"host")
        if host_value is None and version == b"HTTP/1.1":
            raise BadMessage(400, "no Host")
        if target.startswith(b"http://") or target.startswith(b"https://"):   # absolute-form
            rest = target.split(b"//", 1)[1]
            authority, slash, path_part = rest.partition(b"/")
            host_value, target = authority, b"/" + path_part
        host = normalize_host((host_value or b"").decode("latin-1"))
        if host_value is None:
            host_value = self_host
        path = target.split(b"?", 1)[0].decode("latin-1")
        if req.get(b"expect") is not None and req.get(b"expect").lower() == b"100-continue":
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")   # as nginx: answered here, not forwarded

        state = self.state
        route = state.table.match(host, path)
        backend = route.backend if route is not None else state.table.default
        if backend is None:
            status = 503 if route is not None else 404
            return await self._refuse(status, req, reader, writer, keep)
        targets = self.pick(backend)
        if not targets:
            return await self._refuse(503, req, reader, writer, keep)

        upgrade = req.get(b"upgrade") if b"upgrade" in req.connection else None
        head = self._upstream_head(req, host_value, client_ip, scheme, port, upgrade)
        try:
            return await self._exchange(targets, head, req, reader, writer, keep, upgrade is not None)
        except UpstreamFailed as e:
            log.info("ingress: %s %s%s: %s", method.decode(errors="replace"), host, path, e)
            writer.write(simple_response(502, True))
            return False

    async def _refuse(self, status: int, req: Head, reader, writer, keep: bool) -> bool:
        # A small body is read and dropped so the connection can go on; a large one closes it.
        if req.framing == LENGTH and req.length <= 65536:
            await reader.readexactly(req.length)
        elif req.framing != NO_BODY:
            keep = False
        writer.write(simple_response(status, not keep))
        return keep

    @staticmethod
    def _upstream_head(req: Head, host_value, client_ip: bytes, scheme: bytes, port: bytes, upgrade) -> bytes:
        method, target, _ = req.first
        parts = [method, b" ", target, b" HTTP/1.1\r\n"]
        xff = None
        drop = req.connection
        for lname, name, value in req.headers:
            if lname in HOP_BY_HOP or lname in drop:
                continue
            if lname in FORWARDED:
                if lname == b"x-forwarded-for":
                    xff = value if xff is None else xff + b", " + value
                continue
            parts += (name, b": ", value, b"\r\n")
        if host_value is not None and req.get(b"host") is None:
            parts += (b"Host: ", host_value, b"\r\n")
        parts += (b"X-Forwarded-For: ", (xff + b", " + client_ip) if xff else client_ip,
                  b"\r\nX-Real-IP: ", client_ip, b"\r\nX-Forwarded-Proto: ", scheme,
                  b"\r\nX-Forwarded-Host: ", host_value or b"", b"\r\nX-Forwarded-Port: ", port, b"\r\n")
        if upgrade is not None:
            parts += (b"Connection: Upgrade\r\nUpgrade: ", upgrade, b"\r\n")
        if req.framing == CHUNKED:
            parts.append(b"Transfer-Encoding: chunked\r\n")
        parts.append(b"\r\n")
        return b"".join(parts)

    async def _connect(self, targets: list[tuple[str, int]], fresh: bool = False):
        last: Exception | None = None
        for addr in targets:
            if not fresh:
                got = self.pool.take(addr)
                if got is not None:
                    return addr, got[0], got[1], True
            try:
                r, w = await self.pool.dial(addr)
                return addr, r, w, False
            except (OSError, asyncio.TimeoutError) as e:
                last = e
        raise UpstreamFailed(f"connecting to {targets[0][0]}:{targets[0][1]}: {last}")

    async def _exchange(self, targets, head: bytes, req: Head, reader, writer, keep: bool, upgrade: bool) -> bool:
        small = None
        if req.framing == LENGTH and req.length <= 65536:
            small = await reader.readexactly(req.length)
        has_body = req.framing != NO_BODY and small is None
        fresh = False
        while True:
            addr, ur, uw, reused = await self._connect(targets, fresh)
            body_task = None
            if small is not None:
                uw.write(head + small)   # a small body was read whole first (as nginx buffers it): one write
            else:
                uw.write(head)
                if has_body:
                    body_task = asyncio.ensure_future(copy_body(reader, uw, req.framing, req.length, req.framing == CHUNKED))
            try:
                async with asyncio.timeout(READ_TIMEOUT):
                    raw = await read_head(ur)
                    resp = parse_head(raw) if raw else None
                    while resp is not None and resp.first[1][:1] == b"1" and resp.first[1] != b"101":
                        writer.write(raw)                     # 100 Continue, 103 Early Hints: passed on
                        raw = await read_head(ur)
                        resp = parse_head(raw) if raw else None
            except (ConnectionError, OSError, BadMessage, TimeoutError) as e:
                uw.transport.abort()
                if body_task is not None:
                    body_task.cancel()
                raise UpstreamFailed(f"reading the response from {addr[0]}:{addr[1]}: {e!r}") from None
            if resp is None:
                uw.transport.abort()
                if reused and not has_body:
                    fresh = True   # the pooled connection was closed by the pod meanwhile: once more, new
                    continue
                if body_task is not None:
                    body_task.cancel()
                raise UpstreamFailed(f"{addr[0]}:{addr[1]} closed the connection without a response")
            return await self._respond(resp, addr, ur, uw, req, reader, writer, keep, upgrade, body_task)

    async def _respond(self, resp: Head, addr, ur, uw, req: Head, reader, writer, keep: bool, upgrade: bool,
                       body_task) -> bool:
        version, status, _ = resp.first
        if status == b"101" and upgrade:
            writer.write(self._client_head(resp, b"", keep_upgrade=True))
            await writer.drain()
            if body_task is not None:
                body_task.cancel()
            try:
                await asyncio.gather(splice(reader, uw), splice(ur, writer))
            finally:
                uw.transport.abort()
            return False
        if req.first[0] == b"HEAD" or status in (b"204", b"304"):
            framing, length = NO_BODY, 0
        else:
            resp.body_framing()
            framing, length = resp.framing, resp.length
            if framing == NO_BODY and resp.get(b"content-length") is None:
                framing = UNTIL_CLOSE
        reusable = version == b"HTTP/1.1" and b"close" not in resp.connection and framing != UNTIL_CLOSE
        http11 = req.first[2] == b"HTTP/1.1"
        chunk_out = framing in (CHUNKED, UNTIL_CLOSE) and http11
        if framing in (CHUNKED, UNTIL_CLOSE) and not http11:
            keep = False     # an HTTP/1.0 client learns the end by the close
        extra = b"Transfer-Encoding: chunked\r\n" if chunk_out else b""
        if not keep:
            extra += b"Connection: close\r\n"
        elif not http11:
            extra += b"Connection: keep-alive\r\n"
        head = self._client_head(resp, extra)
        ok = False
        try:
            if framing == LENGTH and length <= 65536:
                writer.write(head + await ur.readexactly(length))
            else:
                writer.write(head)
                if framing != NO_BODY:
                    await copy_body(ur, writer, framing, length, chunk_out)
            await writer.drain()
            ok = True
        finally:
            if body_task is not None and not body_task.done():
                body_task.cancel()   # answered before the upload ended: neither stream can go on
                keep = reusable = False
            elif body_task is not None and body_task.exception() is not None:
                keep = reusable = False
            if ok and reusable:
                self.pool.give(addr, ur, uw)
            else:
                uw.transport.abort()
        return keep

    @staticmethod
    def _client_head(resp: Head, extra: bytes, keep_upgrade: bool = False) -> bytes:
        _, status, reason = resp.first
        parts = [b"HTTP/1.1 ", status, b" ", reason, b"\r\n"]
        drop = resp.connection
        for lname, name, value in resp.headers:
            if keep_upgrade and lname in (b"upgrade", b"connection"):
                parts += (name, b": ", value, b"\r\n")
                continue
            if lname in HOP_BY_HOP or lname in drop:
                continue
            parts += (name, b": ", value, b"\r\n")
        parts += (extra, b"\r\n")
        return b"".join(parts)
