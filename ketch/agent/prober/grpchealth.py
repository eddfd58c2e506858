"""The grpc probe: grpc.health.v1.Health/Check over HTTP/2 cleartext, as the kubelet's prober.

The call is small enough to make directly with h2 over a `Dialer` stream pair: one stream, a
length-prefixed HealthCheckRequest{service} out, a HealthCheckResponse{status} and the grpc-status
trailer back. A gRPC library could not use the pod-namespace connection the runtime hands us.
Results and texts are upstream's (pkg/probe/grpc): SERVING is success, anything else a failure
(`service unhealthy (responded with "NOT_SERVING")`, `timeout: failed to connect service ...`).
As grpc-go's blocking dial does, a refused connection is retried until the timeout.
"""
from __future__ import annotations

import asyncio
import struct
from urllib.parse import unquote

import h2.config
import h2.connection
import h2.events
import h2.exceptions

from ...api.durations import format_seconds
from .netdial import Dialer, GoError, close_quietly, dial, join_host_port

CHECK_PATH = "/grpc.health.v1.Health/Check"
SERVING_STATUS = {0: "UNKNOWN", 1: "SERVING", 2: "NOT_SERVING", 3: "SERVICE_UNKNOWN"}
CODE_NAMES = ("OK", "Canceled", "Unknown", "InvalidArgument", "DeadlineExceeded", "NotFound", "AlreadyExists",
              "PermissionDenied", "ResourceExhausted", "FailedPrecondition", "Aborted", "OutOfRange",
              "Unimplemented", "Internal", "Unavailable", "DataLoss", "Unauthenticated")
DEADLINE_EXCEEDED, UNIMPLEMENTED, UNAVAILABLE, UNKNOWN = 4, 12, 14, 2
# grpc-go's mapping of a non-200 HTTP status to a code
_HTTP_CODES = {400: 13, 401: 16, 403: 7, 404: 12, 429: 14, 502: 14, 503: 14, 504: 14}
_HTTP_REASONS = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
                 429: "Too Many Requests", 500: "Internal Server Error", 502: "Bad Gateway",
                 503: "Service Unavailable", 504: "Gateway Timeout"}
_BACKOFF_BASE, _BACKOFF_MULTIPLIER = 1.0, 1.6  # grpc-go's connection backoff


class _RpcError(Exception):
    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code, self.message = code, message


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def encode_request(service: str) -> bytes:
    """A length-prefixed HealthCheckRequest (field 1: service; left out when empty)."""
    raw = service.encode()
    message = b"\x0a" + _varint(len(raw)) + raw if raw else b""
    return struct.pack(">BI", 0, len(message)) + message


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return value, pos


def decode_status(payload: bytes) -> int:
    """HealthCheckResponse.status (field 1, a varint) from the message after its 5-byte prefix."""
    pos, status = 0, 0
    while pos < len(payload):
        key, pos = _read_varint(payload, pos)
        if key & 7 == 0:
            value, pos = _read_varint(payload, pos)
            if key >> 3 == 1:
                status = value
        elif key & 7 == 2:
            length, pos = _read_varint(payload, pos)
            pos += length
        else:
            break
    return status


class _Connection:
    """One HTTP/2 client connection on a stream pair."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))

    def flush(self) -> None:
        data = self.h2.data_to_send()
        if data:
            self.writer.write(data)

    async def events(self) -> list:
        data = await self.reader.read(65536)
        if not data:
            raise ConnectionResetError("EOF")
        events = self.h2.receive_data(data)
        self.flush()
        return events

    async def handshake(self) -> None:
        """Preface out, the server's SETTINGS in: grpc-go's READY."""
        self.h2.initiate_connection()
        self.flush()
        while True:
            for event in await self.events():
                if isinstance(event, h2.events.RemoteSettingsChanged):
                    return
                if isinstance(event, h2.events.ConnectionTerminated):
                    raise ConnectionResetError("connection terminated")

    async def check(self, authority: str, service: str, user_agent: str, timeout: float) -> int:
        """The RPC; returns the serving status or raises _RpcError."""
        stream = self.h2.get_next_available_stream_id()
        self.h2.send_headers(stream, [
            (":method", "POST"), (":scheme", "http"), (":path", CHECK_PATH), (":authority", authority),
            ("content-type", "application/grpc"), ("user-agent", user_agent), ("te", "trailers"),
            ("grpc-timeout", f"{max(1, int(timeout * 1000))}m")])
        self.h2.send_data(stream, encode_request(service), end_stream=True)
        self.flush()
        headers: dict[str, str] = {}
        body = bytearray()
        while True:
            try:
                events = await self.events()
            except (ConnectionError, OSError):
                raise _RpcError(UNAVAILABLE, "error reading from server: EOF") from None
            for event in events:
                if isinstance(event, (h2.events.ResponseReceived, h2.events.TrailersReceived)) \
                        and event.stream_id == stream:
                    headers.update(dict(event.headers))
                elif isinstance(event, h2.events.DataReceived) and event.stream_id == stream:
                    body += event.data
                    self.h2.acknowledge_received_data(event.flow_controlled_length, stream)
                    self.flush()
                elif isinstance(event, h2.events.StreamReset) and event.stream_id == stream:
                    raise _RpcError(UNAVAILABLE, f"stream terminated by RST_STREAM with error code: {event.error_code.name}")
                elif isinstance(event, h2.events.ConnectionTerminated):
                    raise _RpcError(UNAVAILABLE, "error reading from server: EOF")
                elif isinstance(event, h2.events.StreamEnded) and event.stream_id == stream:
                    return _status_of(headers, bytes(body))


def _status_of(headers: dict[str, str], body: bytes) -> int:
    http_status = int(headers.get(":status", "0") or 0)
    if http_status != 200:
        reason = _HTTP_REASONS.get(http_status, "")
        raise _RpcError(_HTTP_CODES.get(http_status, UNKNOWN),
                        f"unexpected HTTP status code received from server: {http_status} ({reason})")
    code = int(headers.get("grpc-status", UNKNOWN))
    if code != 0:
        raise _RpcError(code, unquote(headers.get("grpc-message", "")))
    if len(body) < 5:
        raise _RpcError(13, "server closed the stream without sending trailers")  # grpc-go's Internal
    (length,) = struct.unpack(">I", body[1:5])
    return decode_status(body[5:5 + length])


async def _connect(dialer: Dialer, host: str, port: int, loop: asyncio.AbstractEventLoop, deadline: float
                   ) -> _Connection:
    """Dial and handshake, retrying with grpc-go's backoff until `deadline` (asyncio.TimeoutError)."""
    backoff = _BACKOFF_BASE
    while True:
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise asyncio.TimeoutError
        try:
            reader, writer = await dial(dialer, host, port, remaining)
        except GoError:
            await asyncio.sleep(min(backoff, max(0.0, deadline - loop.time())))
            backoff *= _BACKOFF_MULTIPLIER
            continue
        conn = _Connection(reader, writer)
        try:
            await asyncio.wait_for(conn.handshake(), max(0.0, deadline - loop.time()))
            return conn
        except (ConnectionError, OSError, h2.exceptions.ProtocolError):
            close_quietly(writer)
            await asyncio.sleep(min(backoff, max(0.0, deadline - loop.time())))
            backoff *= _BACKOFF_MULTIPLIER
        except BaseException:
            close_quietly(writer)
            raise


async def check(dialer: Dialer, host: str, port: int, service: str, timeout: float, user_agent: str
                ) -> tuple[bool, str]:
    """(healthy, output) of one grpc probe, as pkg/probe/grpc words it."""
    addr = join_host_port(host, port)
    took = format_seconds(timeout)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    try:
        conn = await _connect(dialer, host, port, loop, deadline)
    except asyncio.TimeoutError:
        return False, f'timeout: failed to connect service "{addr}" within {took}: context deadline exceeded'
    try:
        status = await asyncio.wait_for(conn.check(addr, service, user_agent, timeout),
                                        max(0.0, deadline - loop.time()))
    except asyncio.TimeoutError:
        return False, f"timeout: health rpc did not complete within {took}"
    except _RpcError as e:
        if e.code == UNIMPLEMENTED:
            return False, ("error: this server does not implement the grpc health protocol "
                           f"(grpc.health.v1.Health): {e.message}")
        if e.code == DEADLINE_EXCEEDED:
            return False, f"timeout: health rpc did not complete within {took}"
        name = CODE_NAMES[e.code] if 0 <= e.code < len(CODE_NAMES) else f"Code({e.code})"
        return False, f"error: health rpc probe failed: rpc error: code = {name} desc = {e.message}"
    except h2.exceptions.ProtocolError as e:
        return False, f"error: health rpc probe failed: rpc error: code = Internal desc = {e}"
    finally:
        close_quietly(conn.writer)
    if status != 1:
        return False, f'service unhealthy (responded with "{SERVING_STATUS.get(status, str(status))}")'
    return True, "service healthy"
