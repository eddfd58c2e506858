"""The WebSocket channel protocols of exec, attach and port-forward (k8s.io/apiserver wsstream).

Every message starts with a channel number: one byte in the binary protocols, one ASCII digit
followed by base64 in the `base64.` ones. Exec and attach use stdin 0, stdout 1, stderr 2,
error 3 (plain text before v4, a metav1.Status JSON from v4) and resize 4 (JSON
{"Width","Height"}); v5 adds channel 255 = "close": [255, N] half-closes channel N.
"""
from __future__ import annotations

import asyncio
import base64

from aiohttp import WSMsgType, web

STDIN, STDOUT, STDERR, ERROR, RESIZE, CLOSE = 0, 1, 2, 3, 4, 255

V5 = "v5.channel.k8s.io"
V4 = "v4.channel.k8s.io"
V4_BASE64 = "v4.base64.channel.k8s.io"
V1 = "channel.k8s.io"
V1_BASE64 = "base64.channel.k8s.io"
# The order wins nothing: the client's first protocol that is served is taken.
EXEC_PROTOCOLS = (V5, V4, V4_BASE64, V1, V1_BASE64)
PORTFORWARD_PROTOCOLS = (V4, V4_BASE64, "portforward.k8s.io")


class Inbox:
    """What the peer sent on one channel, read as a stream; b"" once closed. Once someone reads
    it, a full inbox makes the sender wait (so the WebSocket stops being read: TCP back-pressure);
    a channel nobody reads never blocks the others."""

    MAX_MESSAGES = 64

    def __init__(self) -> None:
        self._queue: asyncio.Queue[bytes] = asyncio.Queue()
        self._space = asyncio.Event()
        self._space.set()
        self.closed = False
        self.reading = False

    async def feed(self, data: bytes) -> None:
        if self.closed or not data:
            return
        self._queue.put_nowait(data)
        if self.reading and self._queue.qsize() >= self.MAX_MESSAGES:
            self._space.clear()
            await self._space.wait()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._queue.put_nowait(b"")
            self._space.set()

    async def read(self) -> bytes:
        self.reading = True
        if self.closed and self._queue.empty():
            return b""
        data = await self._queue.get()
        if self._queue.qsize() < self.MAX_MESSAGES // 2:
            self._space.set()
        return data


class ChannelSocket:
    """A WebSocket carrying channels: per-channel inboxes fed by `run()`, and `send(channel, data)`."""

    def __init__(self, ws: web.WebSocketResponse, channels: int):
        self.ws = ws
        self.protocol = ws.ws_protocol or ""
        self.base64 = "base64" in self.protocol
        self.v5 = self.protocol == V5
        self.status_json = self.protocol.startswith(("v4.", "v5."))
        self.inboxes = [Inbox() for _ in range(channels)]
        self._lock = asyncio.Lock()

    async def send(self, channel: int, data: bytes) -> None:
        if self.ws.closed:
            return
        try:
            async with self._lock:
                if self.base64:
                    await self.ws.send_str(chr(ord("0") + channel) + base64.b64encode(data).decode())
                else:
                    await self.ws.send_bytes(bytes([channel]) + data)
        except (ConnectionError, RuntimeError):
            pass

    async def run(self) -> None:
        """Dispatch incoming messages until the socket closes; then every inbox reads EOF."""
        try:
            async for msg in self.ws:
                if msg.type == WSMsgType.BINARY:
                    data = msg.data
                elif msg.type == WSMsgType.TEXT:
                    text = msg.data
                    if not text:
                        continue
                    if self.base64:
                        try:
                            data = bytes([ord(text[0]) - ord("0")]) + base64.b64decode(text[1:])
                        except ValueError:
                            continue
                    else:
                        data = text.encode()
                else:
                    break
                if not data:
                    continue
                channel, payload = data[0], data[1:]
                if channel == CLOSE and self.v5:
                    if payload and payload[0] < len(self.inboxes):
                        self.inboxes[payload[0]].close()
                elif channel < len(self.inboxes):
                    await self.inboxes[channel].feed(payload)
        finally:
            for inbox in self.inboxes:
                inbox.close()
