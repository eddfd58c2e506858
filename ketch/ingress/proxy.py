"""The ingress data path: an HTTP/1.1 reverse proxy on asyncio Protocols.

Client connections are kept alive; each request is routed by the current `RoutingState`
(host and path → backend → a ready endpoint, round robin) and sent over a pooled keep-alive
connection to the pod, dialled inside the node's network namespace through `NetnsSockets`.

Two paths, one behaviour. The fast path handles the common exchange — a request without a body
or with a small one that has arrived, answered with a small Content-Length body, over an idle
pooled connection — in the connections' data callbacks, with no coroutine (a task per request
costs as much as the rest of the work). Everything else — dialling, streamed or chunked bodies,
1xx interim responses, a 101 that turns the pair into a splice (WebSocket and any Upgrade),
retries — runs as a coroutine that owns the connections meanwhile (ketch/ingress/conn.py).
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from ..agent.runtime.namespaces import NetnsSockets
from .conn import Conn
from .http1 import (CHUNKED, FRAMING, HOP_BY_HOP, LENGTH, MAX_HEAD, NO_BODY, UNTIL_CLOSE, BadMessage, Head,
                    copy_body, parse_head, quick_request, quick_response, read_head, splice)
from .routes import Backend, RouteTable, normalize_host

log = logging.getLogger("ketch.ingress")

CONNECT_TIMEOUT = 5.0       # nginx proxy_connect_timeout is 60 s; a pod on the node answers at once or never
READ_TIMEOUT = 60.0         # nginx proxy_read_timeout: waiting for the response head
CLIENT_IDLE_TIMEOUT = 75.0  # nginx keepalive_timeout: an idle client connection
CLIENT_BODY_TIMEOUT = 60.0  # nginx client_body_timeout: between two reads of a request body (and a drain)
POOL_IDLE = 30.0            # an idle upstream connection older than this is not reused
POOL_PER_UPSTREAM = 64
TRIES = 3                   # endpoints tried when connecting fails (nginx proxy_next_upstream error)
SMALL_BODY = 65536          # bodies up to this are read whole and sent in one write
SWEEP_INTERVAL = 15.0       # how often idle clients and overdue responses are looked for
CLOCK_TICK = 1.0            # how often the proxy's request clock is read

FORWARDED = frozenset({b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host", b"x-forwarded-port",
                       b"x-real-ip", b"expect"})
REASONS = {400: "Bad Request", 404: "Not Found", 408: "Request Timeout", 413: "Payload Too Large",
           431: "Request Header Fields Too Large", 501: "Not Implemented", 502: "Bad Gateway", 503: "Service Temporarily Unavailable",
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


class UpstreamFailed(Exception):
    def __init__(self, message: str, status: int = 502):
        super().__init__(message)
        self.status = status


class ClientBodyFailed(Exception):
    """The request body could not be read (malformed, too slow, cut) before a response came."""

    def __init__(self, error: BaseException | None):
        super().__init__(repr(error))
        self.error = error


# ---- connections ---------------------------------------------------------------------------------

class ClientConn(Conn):
    def __init__(self, proxy: "IngressProxy", scheme: bytes):
        super().__init__()
        self.proxy = proxy
        self.scheme = scheme
        self.busy = False          # a request is being answered
        self.last = proxy.clock

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        peer = transport.get_extra_info("peername") or ("", 0)
        local = transport.get_extra_info("sockname") or ("", 0)
        self.client_ip = str(peer[0]).encode()
        self.port = str(local[1]).encode()
        self.self_host = f"{local[0]}:{local[1]}".encode()   # the Host of an HTTP/1.0 request without one
        # What the fast path adds to every request of this connection, after X-Forwarded-Host.
        self.forwarded = (b"\r\nX-Forwarded-For: %s\r\nX-Real-IP: %s\r\nX-Forwarded-Proto: %s\r\nX-Forwarded-Port: %s"
                          b"\r\n\r\n" % (self.client_ip, self.client_ip, self.scheme, self.port))
        self.proxy.connections.add(self)

    def data_received(self, data: bytes) -> None:
        # The common case first, one call less: a new request while nothing is pending.
        if not self.busy and not self.buf and not self.owned:
            self.proxy.next_request(self, data)
        else:
            super().data_received(data)

    def on_data(self, data: bytes) -> None:
        if self.busy:
            self.buf += data     # pipelined: after the current one
        else:
            self.proxy.next_request(self, data)

    def on_eof(self) -> None:
        if not self.busy:
            self.close()   # whatever is buffered is a head that can no longer be completed

    def on_lost(self) -> None:
        self.proxy.connections.discard(self)


class UpstreamConn(Conn):
    """A connection to one endpoint. While a fast exchange is in flight, `client` is set and the
    response is parsed in on_data."""

    def __init__(self, proxy: "IngressProxy", addr: tuple[str, int]):
        super().__init__()
        self.proxy = proxy
        self.addr = addr
        self.idle_since = 0.0
        self.client: ClientConn | None = None
        self.request: bytes = b""
        self.head_only = False
        self.idempotent = True
        self.keep = True
        self.http11 = True
        self.got_any = False
        self.started = 0.0

    def data_received(self, data: bytes) -> None:
        # The common case first, one call less: the response of a fast exchange.
        if self.client is not None and not self.buf and not self.owned:
            self.got_any = True
            self.proxy.fast_response(self, data)
        else:
            super().data_received(data)

    def on_data(self, data: bytes) -> None:
        if self.client is None:
            self.abort()        # bytes nobody asked for: this connection cannot be trusted again
            return
        self.got_any = True
        self.proxy.fast_response(self, data)

    def on_eof(self) -> None:
        if self.client is not None:
            self.proxy.fast_failed(self, "closed the connection")

    def on_lost(self) -> None:
        if self.client is not None:
            self.proxy.fast_failed(self, "connection lost")
        else:
            self.proxy.pool.forget(self)

    def timed_out(self) -> None:
        if self.client is not None:
            self.proxy.fast_failed(self, "timed out", status=504)


class UpstreamPool:
    """Idle keep-alive connections per (ip, port), newest reused first."""

    def __init__(self, proxy: "IngressProxy", sockets: NetnsSockets):
        self.proxy = proxy
        self.sockets = sockets
        self.idle: dict[tuple[str, int], list[UpstreamConn]] = {}
        self.dials = 0   # new connections made (tests read it: keep-alive means few)

    def take(self, addr: tuple[str, int], now: float) -> UpstreamConn | None:
        conns = self.idle.get(addr)
        while conns:
            up = conns.pop()
            if up.eof or up.buf or now - up.idle_since > POOL_IDLE:
                up.abort()
                continue
            return up
        return None

    async def dial(self, addr: tuple[str, int]) -> UpstreamConn:
        sock = await self.sockets.connect(addr[0], addr[1], CONNECT_TIMEOUT)
        self.dials += 1
        _, up = await asyncio.get_running_loop().create_connection(lambda: UpstreamConn(self.proxy, addr), sock=sock)
        return up

    def give(self, up: UpstreamConn, now: float) -> None:
        up.client = None
        up.owned = False
        conns = self.idle.get(up.addr)
        if conns is None:
            conns = self.idle[up.addr] = []
        if len(conns) >= POOL_PER_UPSTREAM or up.eof or up.buf:
            up.abort()
            return
        up.idle_since = now
        conns.append(up)

    def forget(self, up: UpstreamConn) -> None:
        """A connection that is gone (the pod closed it while idle) leaves the pool."""
        conns = self.idle.get(up.addr)
        if conns and up in conns:
            conns.remove(up)
            if not conns:
                del self.idle[up.addr]

    def sweep(self, now: float, addresses: set[tuple[str, int]]) -> None:
        """Idle connections past POOL_IDLE, or to an address no endpoint list names any more, are
        closed (their fds would stay forever: nothing takes them)."""
        for addr, conns in list(self.idle.items()):
            keep = [up for up in conns if addr in addresses and now - up.idle_since <= POOL_IDLE and not up.eof]
            for up in conns:
                if up not in keep:
                    up.abort()
            if keep:
                self.idle[addr] = keep
            else:
                del self.idle[addr]

    def close(self) -> None:
        for conns in self.idle.values():
            for up in conns:
                up.abort()
        self.idle.clear()


# ---- the proxy -----------------------------------------------------------------------------------

class IngressProxy:
    """Serves client connections from `state`: `protocol(scheme)` makes the Protocol for
    loop.create_server."""

    def __init__(self, sockets: NetnsSockets):
        self.state = RoutingState()
        self.pool = UpstreamPool(self, sockets)
        self._rr: dict[str, int] = {}
        self.connections: set[ClientConn] = set()
        self._tasks: set[asyncio.Task] = set()
        self._sweeper: asyncio.TimerHandle | None = None
        self.inflight: set[UpstreamConn] = set()   # fast exchanges waiting for their response
        self._routes: dict[tuple[bytes, bytes], tuple] = {}   # (Host, path) -> (routed, backend key)
        self._routes_of: RoutingState | None = None
        # A clock the timer below moves on (at most CLOCK_TICK behind): requests stamp their times
        # from it, with no time call per request; the timeouts it serves are tens of seconds.
        self.clock = time.monotonic()
        self._next_sweep = self.clock + SWEEP_INTERVAL

    def protocol(self, scheme: bytes = b"http"):
        if self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().call_later(min(CLOCK_TICK, SWEEP_INTERVAL), self._tick)
        return lambda: ClientConn(self, scheme)

    def _tick(self) -> None:
        self.clock = now = time.monotonic()
        if now >= self._next_sweep:
            self._next_sweep = now + SWEEP_INTERVAL
            self._sweep(now)
        self._sweeper = asyncio.get_running_loop().call_later(min(CLOCK_TICK, SWEEP_INTERVAL), self._tick)

    def _sweep(self, now: float) -> None:
        """Idle client connections past the keep-alive timeout are closed, fast exchanges past the
        read timeout answered 504 (one timer for all, not one per request)."""
        for c in list(self.connections):
            if not c.busy and c.last < now - CLIENT_IDLE_TIMEOUT:
                c.close()
        for up in list(self.inflight):
            if up.started < now - READ_TIMEOUT:
                up.timed_out()
        self.pool.sweep(now, {addr for eps in self.state.endpoints.values() for addr in eps})

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
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for c in list(self.connections):
            c.abort()
        for t in list(self._tasks):
            t.cancel()
        self.pool.close()

    def _spawn(self, coro) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ---- requests ----------------------------------------------------------------------------

    def plan(self, raw: bytes, client: ClientConn):
        """Parse and route one request head: (req, keep, host_value, targets, upgrade, refusal status)."""
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
            authority, _, path_part = target.split(b"//", 1)[1].partition(b"/")
            host_value, target = authority, b"/" + path_part
            req.first[1] = target
        host = normalize_host(host_value.decode("latin-1")) if host_value else ""
        if host_value is None:
            host_value = client.self_host
        path = target.split(b"?", 1)[0].decode("latin-1")
        table = self.state.table
        route = table.match(host, path)
        backend = route.backend if route is not None else table.default
        if backend is None:
            return req, keep, host_value, [], None, 503 if route is not None else 404
        targets = self.pick(backend)
        if not targets:
            return req, keep, host_value, [], None, 503
        upgrade = req.get(b"upgrade") if b"upgrade" in req.connection else None
        return req, keep, host_value, targets, upgrade, 0

    def next_request(self, client: ClientConn, data: bytes) -> None:
        """The fast path's entry with every byte the client sent that is not yet used; what is
        left over goes back to its buffer."""
        end = data.find(b"\r\n\r\n")
        if end < 0:
            if len(data) > MAX_HEAD:
                client.write(simple_response(431, True))
                client.close()
            elif client.eof:
                client.close()
            else:
                client.buf += data
            return
        head_len = end + 4
        if head_len > MAX_HEAD:
            client.write(simple_response(431, True))
            client.close()
            return
        raw = data[:head_len] if len(data) > head_len else data
        client.last = now = self.clock
        quick = quick_request(raw)
        if quick is not None:
            length = quick[5]
            if not length or (length <= SMALL_BODY and len(data) >= head_len + length):
                return self._quick(client, quick, data, raw, head_len)
        try:
            req, keep, host_value, targets, upgrade, status = self.plan(raw, client)
        except BadMessage as e:
            client.write(simple_response(e.status, True))
            client.close()
            return
        framing = req.framing
        used = head_len + (req.length if framing == LENGTH else 0)
        small = framing == NO_BODY or (framing == LENGTH and req.length <= SMALL_BODY and len(data) >= used)
        if status and small:
            client.buf += data[used:]
            client.write(simple_response(status, not keep))
            return self._after(client, keep)
        up = self.pool.take(targets[0], now) \
            if targets and small and upgrade is None and req.get(b"expect") is None else None
        if up is None:
            # Slow path: this request in a coroutine that owns the client connection.
            client.buf += data[head_len:]
            client.busy = client.owned = True
            self._spawn(self._slow_request(client, req, keep, host_value, targets, upgrade, status))
            return
        client.buf += data[used:]
        self._send(client, up, self.upstream_head(req, host_value, client, None) + data[head_len:used],
                   req.first[0], keep, req.first[2] == b"HTTP/1.1", now)

    def _quick(self, client: ClientConn, quick: tuple, data: bytes, raw: bytes, head_len: int) -> None:
        """The fast path of a plain request: routed, and sent on an idle pooled connection."""
        method, path, head, host, keep, length = quick
        state = self.state
        if state is not self._routes_of:
            self._routes.clear()      # routes of the previous state
            self._routes_of = state
        key = (host, path)
        hit = self._routes.get(key)
        if hit is None:
            # Host and path -> route, for this routing state (bounded: they come from clients).
            route = state.table.match(normalize_host(host.decode("latin-1")), path.decode("latin-1"))
            backend = route.backend if route is not None else state.table.default
            hit = (route is not None or backend is not None, backend.key if backend is not None else None)
            if len(self._routes) > 4096:
                self._routes.clear()
            self._routes[key] = hit
        routed, backend_key = hit
        used = head_len + length
        if len(data) > used:
            client.buf += data[used:]
        eps = state.endpoints.get(backend_key) if backend_key is not None else None
        if not eps:
            client.write(simple_response(503 if routed else 404, not keep))
            return self._after(client, keep)
        rr = self._rr.get(backend_key, 0)
        self._rr[backend_key] = rr + 1
        up = self.pool.take(eps[rr % len(eps)], self.clock)
        if up is None:
            # A new connection to dial: the general path, with the endpoints already picked.
            req = parse_head(raw)
            req.body_framing()
            if length:
                client.buf[:0] = data[head_len:used]
            client.busy = client.owned = True
            n = len(eps)
            targets = [eps[(rr + k) % n] for k in range(min(TRIES, n))]
            self._spawn(self._slow_request(client, req, keep, host, targets, None, 0))
            return
        # One write: the head as it came, the fields we add, the body.
        request = b"".join((head, b"X-Forwarded-Host: ", host, client.forwarded, data[head_len:used] if length else b""))
        self._send(client, up, request, method, keep, True, self.clock)

    def _send(self, client: ClientConn, up: UpstreamConn, request: bytes, method: bytes, keep: bool, http11: bool,
              now: float) -> None:
        client.busy = True
        up.client = client
        up.request = request
        up.head_only = method == b"HEAD"
        up.idempotent = method not in (b"POST", b"PATCH", b"LOCK")
        up.keep = keep
        up.http11 = http11
        up.got_any = False
        up.started = now
        self.inflight.add(up)
        up.transport.write(request)

    def _after(self, client: ClientConn, keep: bool) -> None:
        """A request is answered: go on with the next one, or close."""
        client.busy = client.owned = False
        client.last = self.clock
        if not keep or client.lost:
            client.close()
            return
        if client._read_paused:
            client.consumed()
        if client._write_paused:
            # The client does not read its responses: no more requests of it until it does.
            client.busy = client.owned = True
            self._spawn(self._after_drain(client))
        elif client.buf:
            data = bytes(client.buf)
            client.buf.clear()
            self.next_request(client, data)
        elif client.eof:
            client.close()

    async def _after_drain(self, client: ClientConn) -> None:
        try:
            async with asyncio.timeout(CLIENT_BODY_TIMEOUT):
                await client.drain()
        except (ConnectionError, TimeoutError):
            client.abort()
            return
        self._after(client, True)

    def fast_response(self, up: UpstreamConn, data: bytes) -> None:
        """A fast exchange's response bytes (all not yet used; the rest goes back to the buffer)."""
        end = data.find(b"\r\n\r\n")
        if end < 0:
            if len(data) > MAX_HEAD:
                self.fast_failed(up, "response head too large")
            else:
                up.buf += data
            return
        head_len = end + 4
        if head_len > MAX_HEAD:
            self.fast_failed(up, "response head too large")
            return
        client = up.client
        raw = data[:head_len] if len(data) > head_len else data
        quick = quick_response(raw, up.head_only)
        if quick is not None and quick[1] <= SMALL_BODY:
            head, length, reusable = quick
            used = head_len + length
            if len(data) < used:
                up.buf += data   # the rest of the body is on its way
                return
            if len(data) > used:
                up.abort()       # more than the response: nothing this connection says can be trusted
                reusable = False
            self.inflight.discard(up)
            keep = up.keep
            extra = (b"\r\n" if up.http11 else b"\r\nConnection: keep-alive\r\n") if keep else b"\r\nConnection: close\r\n"
            if not client.lost:
                client.transport.write(b"".join((head, extra, b"\r\n", data[head_len:used] if length else b"")))
            if reusable:
                self.pool.give(up, self.clock)
            else:
                up.client = None
                up.abort()
            return self._after(client, keep)
        try:
            resp = parse_head(raw)
            status = resp.first[1]
            if up.head_only or status in (b"204", b"304"):
                framing, length = NO_BODY, 0
            else:
                resp.body_framing()
                framing, length = resp.framing, resp.length
                if framing == NO_BODY and resp.get(b"content-length") is None:
                    framing = UNTIL_CLOSE
        except BadMessage as e:
            self.fast_failed(up, str(e))
            return
        if status[:1] == b"1" or framing in (CHUNKED, UNTIL_CLOSE) or length > SMALL_BODY:
            # Slow path for the response: a coroutine owns both connections from here.
            self.inflight.discard(up)
            up.buf += data[head_len:]
            up.client = None
            up.owned = client.owned = True
            self._spawn(self._slow_response(resp, up, client, up.keep, up.head_only, up.http11))
            return
        used = head_len + length
        if len(data) < used:
            up.buf += data   # the rest of the body is on its way
            return
        self.inflight.discard(up)
        keep = up.keep
        extra = b"" if keep else b"Connection: close\r\n"
        if keep and not up.http11:
            extra = b"Connection: keep-alive\r\n"
        client.write(self.client_head(resp, extra) + data[head_len:used])
        if len(data) == used and resp.first[0] == b"HTTP/1.1" and b"close" not in resp.connection:
            self.pool.give(up, self.clock)
        else:
            up.client = None
            up.abort()
        self._after(client, keep)

    def fast_failed(self, up: UpstreamConn, why: str, status: int = 502) -> None:
        client = up.client
        up.client = None
        self.inflight.discard(up)
        up.abort()
        if client is None:
            return
        if not up.got_any and status == 502 and up.idempotent:
            # A pooled connection the pod closed meanwhile: the request once more, on a new one.
            client.owned = True
            self._spawn(self._retry(client, up))
            return
        log.info("ingress: %s:%s %s", up.addr[0], up.addr[1], why)
        client.write(simple_response(status, True))
        client.close()

    async def _retry(self, client: ClientConn, old: UpstreamConn) -> None:
        async def resend() -> tuple[UpstreamConn, Head | None]:
            try:
                up = await self.pool.dial(old.addr)
            except (OSError, asyncio.TimeoutError) as e:
                raise UpstreamFailed(f"connecting to {old.addr[0]}:{old.addr[1]}: {e}") from None
            up.owned = True
            up.write(old.request)
            return up, await self._read_response(up, client, None)
        await self._relay_response(client, resend(), old.keep, old.head_only, old.http11, "retry")

    # ---- the slow path, as coroutines ----------------------------------------------------------

    async def _slow_request(self, client: ClientConn, req: Head, keep: bool, host_value: bytes, targets, upgrade,
                            status: int) -> None:
        try:
            if req.get(b"expect") is not None and req.get(b"expect").lower() == b"100-continue":
                client.write(b"HTTP/1.1 100 Continue\r\n\r\n")   # as nginx: answered here, not forwarded
            if status:
                keep = await self._refuse(status, req, client, keep)
            else:
                head = self.upstream_head(req, host_value, client, upgrade)
                try:
                    keep = await self._exchange(targets, head, req, client, keep, upgrade is not None)
                except UpstreamFailed as e:
                    log.info("ingress: %s %s: %s", req.first[0].decode(errors="replace"),
                             host_value.decode(errors="replace"), e)
                    client.write(simple_response(e.status, True))
                    keep = False
        except BadMessage as e:
            client.write(simple_response(e.status, True))
            keep = False
        except TimeoutError:
            client.write(simple_response(408, True))   # the client stopped sending its body
            keep = False
        except ClientBodyFailed as e:
            if isinstance(e.error, BadMessage):
                client.write(simple_response(e.error.status, True))
            elif isinstance(e.error, TimeoutError):
                client.write(simple_response(408, True))
            keep = False
        except (ConnectionError, OSError, asyncio.IncompleteReadError):
            keep = False
        except Exception:  # noqa: BLE001 - one broken request must not take the listener down
            log.exception("ingress: request failed")
            keep = False
        self._after(client, keep)

    async def _slow_response(self, resp: Head, up: UpstreamConn, client: ClientConn, keep: bool, head_only: bool,
                             http11: bool) -> None:
        async def final() -> tuple[UpstreamConn, Head | None]:
            if resp.first[1][:1] == b"1":   # 100 Continue, 103 Early Hints: passed on
                return up, await self._read_response(up, client, resp)
            return up, resp
        await self._relay_response(client, final(), keep, head_only, http11, "response")

    async def _relay_response(self, client: ClientConn, response, keep: bool, head_only: bool, http11: bool,
                              what: str) -> None:
        """Pass on the response `response` (awaitable: (upstream connection, final head or None))
        brings; nothing final was sent to the client yet, so a failure can still be answered."""
        try:
            up, resp = await response
            if resp is None:
                up.abort()
                raise UpstreamFailed(f"{up.addr[0]}:{up.addr[1]} closed the connection without a response")
            keep = await self._respond(resp, up, client, keep, head_only, http11, False, None)
        except UpstreamFailed as e:
            log.info("ingress: %s", e)
            client.write(simple_response(e.status, True))
            keep = False
        except (ConnectionError, OSError, asyncio.IncompleteReadError, BadMessage):
            keep = False
        except Exception:  # noqa: BLE001
            log.exception("ingress: %s failed", what)
            keep = False
        self._after(client, keep)

    async def _refuse(self, status: int, req: Head, client: ClientConn, keep: bool) -> bool:
        # A small body is read and dropped so the connection can go on; a large one closes it.
        if req.framing == LENGTH and req.length <= SMALL_BODY:
            async with asyncio.timeout(CLIENT_BODY_TIMEOUT):
                await client.readexactly(req.length)
        elif req.framing != NO_BODY:
            keep = False
        client.write(simple_response(status, not keep))
        return keep

    def upstream_head(self, req: Head, host_value: bytes, client: ClientConn, upgrade) -> bytes:
        method, target, _ = req.first
        parts = [method, b" ", target, b" HTTP/1.1\r\n"]
        drop = req.connection - FRAMING if req.connection else req.connection
        had_length = False
        for lname, name, value in req.headers:
            if lname in HOP_BY_HOP or lname in drop:
                continue
            if lname in FORWARDED or lname == b"host":
                continue   # set below: the client's own X-Forwarded-* are not trusted (as ingress-nginx)
            if lname == b"content-length":
                had_length = True   # written below, once, as the framing we read
                continue
            parts += (name, b": ", value, b"\r\n")
        parts += (b"Host: ", host_value, b"\r\n")
        if req.framing == LENGTH or had_length:
            parts += (b"Content-Length: %d\r\n" % req.length,)
        ip = client.client_ip
        parts += (b"X-Forwarded-For: ", ip,
                  b"\r\nX-Real-IP: ", ip, b"\r\nX-Forwarded-Proto: ", client.scheme,
                  b"\r\nX-Forwarded-Host: ", host_value, b"\r\nX-Forwarded-Port: ", client.port, b"\r\n")
        if upgrade is not None:
            parts += (b"Connection: Upgrade\r\nUpgrade: ", upgrade, b"\r\n")
        if req.framing == CHUNKED:
            parts.append(b"Transfer-Encoding: chunked\r\n")
        parts.append(b"\r\n")
        return b"".join(parts)

    async def _connect(self, targets: list[tuple[str, int]], fresh: bool = False) -> tuple[UpstreamConn, bool]:
        last: Exception | None = None
        for addr in targets:
            if not fresh:
                up = self.pool.take(addr, time.monotonic())
                if up is not None:
                    up.owned = True
                    return up, True
            try:
                up = await self.pool.dial(addr)
                up.owned = True
                return up, False
            except (OSError, asyncio.TimeoutError) as e:
                last = e
        raise UpstreamFailed(f"connecting to {targets[0][0]}:{targets[0][1]}: {last}")

    async def _read_response(self, up: UpstreamConn, client: ClientConn, resp: Head | None,
                             body_task: asyncio.Future | None = None) -> Head | None:
        """The final response head (interim 1xx ones passed on); None when the pod closed first.
        A request body that fails (malformed, or the client stopped sending) before the response
        came is raised here: the client is answered 400 or 408, not the pod's reaction."""
        try:
            async with asyncio.timeout(READ_TIMEOUT):
                while True:
                    if resp is None:
                        if body_task is not None and not body_task.done():
                            head_task = asyncio.ensure_future(read_head(up))
                            try:
                                await asyncio.wait((head_task, body_task), return_when=asyncio.FIRST_COMPLETED)
                                if not head_task.done() and (body_task.cancelled() or body_task.exception()):
                                    up.abort()
                                    raise ClientBodyFailed(None if body_task.cancelled() else body_task.exception())
                                raw = await head_task
                            finally:
                                if not head_task.done():
                                    head_task.cancel()
                        else:
                            raw = await read_head(up)
                        if not raw:
                            return None
                        resp = parse_head(raw)
                    if resp.first[1][:1] != b"1" or resp.first[1] == b"101":
                        return resp
                    client.write(self.client_head(resp, b""))
                    resp = None
        except TimeoutError:
            up.abort()
            raise UpstreamFailed(f"{up.addr[0]}:{up.addr[1]} sent no response in {READ_TIMEOUT:g} s", 504) from None
        except (ConnectionError, OSError, BadMessage) as e:
            up.abort()
            raise UpstreamFailed(f"reading the response from {up.addr[0]}:{up.addr[1]}: {e!r}") from None

    async def _exchange(self, targets, head: bytes, req: Head, client: ClientConn, keep: bool, upgrade: bool) -> bool:
        small = None
        if req.framing == LENGTH and req.length <= SMALL_BODY:
            async with asyncio.timeout(CLIENT_BODY_TIMEOUT):
                small = await client.readexactly(req.length)   # read whole first, as nginx buffers it
        has_body = req.framing != NO_BODY and small is None
        fresh = False
        http11 = req.first[2] == b"HTTP/1.1"
        method = req.first[0]
        head_only = method == b"HEAD"
        while True:
            up, reused = await self._connect(targets, fresh)
            body_task = None
            up.write(head + small if small is not None else head)
            if has_body:
                body_task = asyncio.ensure_future(copy_body(client, up, req.framing, req.length,
                                                            req.framing == CHUNKED, CLIENT_BODY_TIMEOUT))
            try:
                resp = await self._read_response(up, client, None, body_task)
            except BaseException:
                if body_task is not None:
                    body_task.cancel()
                raise
            if resp is None:
                up.abort()
                # Once more only when nothing can have been acted on twice (as nginx: not a POST).
                if reused and not has_body and method not in (b"POST", b"PATCH", b"LOCK"):
                    fresh = True   # the pooled connection was closed by the pod meanwhile: once more, new
                    continue
                if body_task is not None:
                    body_task.cancel()
                raise UpstreamFailed(f"{up.addr[0]}:{up.addr[1]} closed the connection without a response")
            return await self._respond(resp, up, client, keep, head_only, http11, upgrade, body_task)

    async def _respond(self, resp: Head, up: UpstreamConn, client: ClientConn, keep: bool, head_only: bool,
                       http11: bool, upgrade: bool, body_task) -> bool:
        version, status, _ = resp.first
        if status == b"101" and upgrade:
            client.write(self.client_head(resp, b"", keep_upgrade=True))
            await client.drain()
            if body_task is not None:
                body_task.cancel()
            client.half_close = up.half_close = True
            try:
                await asyncio.gather(splice(client, up), splice(up, client))
            finally:
                up.abort()
            return False
        if head_only or status in (b"204", b"304"):
            framing, length = NO_BODY, 0
        else:
            resp.body_framing()
            framing, length = resp.framing, resp.length
            if framing == NO_BODY and resp.get(b"content-length") is None:
                framing = UNTIL_CLOSE
        reusable = version == b"HTTP/1.1" and b"close" not in resp.connection and framing != UNTIL_CLOSE
        chunk_out = framing in (CHUNKED, UNTIL_CLOSE) and http11
        if framing in (CHUNKED, UNTIL_CLOSE) and not http11:
            keep = False     # an HTTP/1.0 client learns the end by the close
        extra = b"Transfer-Encoding: chunked\r\n" if chunk_out else b""
        if not keep:
            extra += b"Connection: close\r\n"
        elif not http11:
            extra += b"Connection: keep-alive\r\n"
        head = self.client_head(resp, extra)
        ok = False
        try:
            if framing == LENGTH and length <= SMALL_BODY:
                client.write(head + await up.readexactly(length))
            else:
                client.write(head)
                if framing != NO_BODY:
                    await copy_body(up, client, framing, length, chunk_out)
            await client.drain()
            ok = True
        finally:
            if body_task is not None and not body_task.done():
                body_task.cancel()   # answered before the upload ended: neither stream can go on
                keep = reusable = False
            elif body_task is not None and (body_task.cancelled() or body_task.exception() is not None):
                keep = reusable = False
            if ok and reusable:
                self.pool.give(up, time.monotonic())
            else:
                up.abort()
        return keep

    @staticmethod
    def client_head(resp: Head, extra: bytes, keep_upgrade: bool = False) -> bytes:
        _, status, reason = resp.first
        parts = [b"HTTP/1.1 ", status, b" ", reason, b"\r\n"]
        drop = resp.connection - FRAMING if resp.connection else resp.connection
        for lname, name, value in resp.headers:
            if keep_upgrade and lname in (b"upgrade", b"connection"):
                parts += (name, b": ", value, b"\r\n")
                continue
            if lname in HOP_BY_HOP or lname in drop:
                continue
            parts += (name, b": ", value, b"\r\n")
        parts += (extra, b"\r\n")
        return b"".join(parts)
