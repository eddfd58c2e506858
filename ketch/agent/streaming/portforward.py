"""Port-forward: SPDY/3.1 (one stream pair per connection), the WebSocket channel protocol (one
channel pair per port, for the Python client), and kubectl >= 1.31's SPDY tunneled inside
WebSocket binary messages (`SPDY/3.1+portforward.k8s.io`).

SPDY: for each forwarded connection the client opens an error stream then a data stream, both
with headers `port` and `requestID`; the kubelet connects to the port inside the pod and copies
bytes until either side ends; failures are written on the error stream as text.
WebSocket: channel 2i carries port i's data and 2i+1 its errors; the server's first message on
each channel is the port number, two bytes little endian.
"""
from __future__ import annotations

import asyncio
import logging
import struct
from typing import Awaitable, Callable

from aiohttp import WSMsgType, web

from . import spdy
from .channels import ChannelSocket

log = logging.getLogger("ketch.agent.streaming.portforward")

PROTOCOL = "portforward.k8s.io"
TUNNEL_PROTOCOL = "SPDY/3.1+portforward.k8s.io"
Connect = Callable[[int], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]


def forward_error(port: int, pod: str, e: BaseException) -> str:
    """The kubelet's message (with containerd's wording for a port nothing listens on)."""
    if isinstance(e, ConnectionRefusedError):
        detail = (f'failed to connect to localhost:{port} inside namespace "{pod}", '
                  f"IPv4: dial tcp4 127.0.0.1:{port}: connect: connection refused")
    else:
        detail = getattr(e, "message", "") or str(e) or type(e).__name__
    return f"error forwarding port {port} to pod {pod}, uid : {detail}"


async def _pod_to_client(reader: asyncio.StreamReader, write: Callable[[bytes], Awaitable[None]]) -> None:
    try:
        while data := await reader.read(1 << 16):
            await write(data)
    except (ConnectionError, OSError):
        pass


async def _client_to_pod(read: Callable[[], Awaitable[bytes]], writer: asyncio.StreamWriter) -> None:
    try:
        while data := await read():
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        pass


# ---- SPDY -----------------------------------------------------------------------------------

async def _forward_pair(error: spdy.Stream, data: spdy.Stream, connect: Connect, pod: str) -> None:
    try:
        port = int(data.header("port"))
        reader, writer = await connect(port)
    except Exception as e:  # noqa: BLE001 - reported to the client, as the kubelet does
        port_text = data.header("port")
        await error.write(forward_error(int(port_text) if port_text.isdigit() else 0, pod, e).encode())
        await error.close()
        await data.close()
        return
    try:
        to_client = asyncio.create_task(_pod_to_client(reader, data.write))
        to_pod = asyncio.create_task(_client_to_pod(data.read, writer))
        reset = asyncio.create_task(data.reset_by_peer.wait())
        # until the pod's side ends, or the client resets the stream (then drop the connection)
        await asyncio.wait([to_client, reset], return_when=asyncio.FIRST_COMPLETED)
        await data.close()
        await error.close()
        await asyncio.wait([to_pod], timeout=1.0)
        for t in (to_client, to_pod, reset):
            t.cancel()
    finally:
        writer.close()


async def serve_spdy(reader, write: Callable[[bytes], Awaitable[None]], connect: Connect, pod: str) -> None:
    """Serve one SPDY port-forward connection until the client ends it."""
    pairs: dict[str, dict[str, spdy.Stream]] = {}
    tasks: set[asyncio.Task] = set()

    def on_stream(stream: spdy.Stream) -> None:
        kind, request = stream.header("streamtype"), stream.header("requestid")
        if kind not in ("error", "data"):
            asyncio.ensure_future(stream.reset(spdy.RST_PROTOCOL_ERROR))
            return
        pair = pairs.setdefault(request, {})
        pair[kind] = stream
        if len(pair) == 2:
            del pairs[request]
            t = asyncio.create_task(_forward_pair(pair["error"], pair["data"], connect, pod))
            tasks.add(t)
            t.add_done_callback(tasks.discard)

    session = spdy.Session(reader, write, on_stream)
    try:
        await session.serve()
    finally:
        for t in list(tasks):
            t.cancel()


class _MessageReader:
    """A byte stream made of WebSocket binary messages (what the SPDY session reads)."""

    def __init__(self, ws: web.WebSocketResponse):
        self.ws = ws
        self._buf = bytearray()

    async def readexactly(self, n: int) -> bytes:
        while len(self._buf) < n:
            msg = await self.ws.receive()
            if msg.type == WSMsgType.BINARY:
                self._buf += msg.data
            elif msg.type == WSMsgType.TEXT:
                self._buf += msg.data.encode()
            else:
                raise asyncio.IncompleteReadError(bytes(self._buf), n)
        out = bytes(self._buf[:n])
        del self._buf[:n]
        return out


async def serve_tunnel(ws: web.WebSocketResponse, connect: Connect, pod: str) -> None:
    """kubectl >= 1.31: the SPDY connection's bytes ride in WebSocket binary messages."""
    await serve_spdy(_MessageReader(ws), ws.send_bytes, connect, pod)


# ---- WebSocket channels -----------------------------------------------------------------------

async def serve_websocket(ws: web.WebSocketResponse, ports: list[int], connect: Connect, pod: str) -> None:
    sock = ChannelSocket(ws, 2 * len(ports))
    pump = asyncio.create_task(sock.run())
    for i, port in enumerate(ports):
        prefix = struct.pack("<H", port)
        await sock.send(2 * i, prefix)
        await sock.send(2 * i + 1, prefix)

    async def one(i: int, port: int) -> None:
        try:
            reader, writer = await connect(port)
        except Exception as e:  # noqa: BLE001 - reported on the port's error channel
            await sock.send(2 * i + 1, forward_error(port, pod, e).encode())
            return
        to_pod = asyncio.create_task(_client_to_pod(sock.inboxes[2 * i].read, writer))
        try:
            await _pod_to_client(reader, lambda d: sock.send(2 * i, d))
        finally:
            to_pod.cancel()
            writer.close()

    try:
        forwards = [asyncio.create_task(one(i, p)) for i, p in enumerate(ports)]
        await asyncio.wait([pump, *forwards], return_when=asyncio.FIRST_COMPLETED)
        if not pump.done():
            await asyncio.wait(forwards)
    finally:
        for t in (pump, *forwards):
            t.cancel()
        await ws.close()
