"""One TCP (or TLS) connection of the proxy as an asyncio Protocol whose received bytes sit in
one buffer that either of two readers consumes: callbacks (`on_data`, the proxy's fast path for
small messages, with no coroutine per request) or a coroutine that owns the connection for a while
and awaits `readuntil`/`read`/`readexactly` (bodies that stream, upgrades). Writing has the
StreamWriter's shape (`write`, `await drain()`), with the transport's flow control."""
from __future__ import annotations

import asyncio

HIGH_WATER = 256 * 1024   # buffered and unread: stop reading from the socket
LOW_WATER = 64 * 1024


class Conn(asyncio.Protocol):
    def __init__(self) -> None:
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None
        self.eof = False            # the peer will send nothing more
        self.lost = False           # the connection is gone
        self.owned = False          # a coroutine reads the buffer: on_data is not called
        self.half_close = False     # keep writing after the peer's EOF (a spliced upgrade)
        self._waiter: asyncio.Future | None = None
        self._drain: asyncio.Future | None = None
        self._write_paused = False
        self._read_paused = False

    # ---- what subclasses do with data when no coroutine owns the connection --------------------

    def on_data(self, data: bytes) -> None:
        """Every received byte not yet used (the buffer is empty meanwhile); what the subclass
        does not use it puts back in self.buf."""
        self.buf += data

    def on_eof(self) -> None:
        pass

    def on_lost(self) -> None:
        pass

    # ---- asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        waiter = self._waiter
        if waiter is not None:
            self.buf += data
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)
        elif self.owned:
            self.buf += data
        elif self.buf:
            self.buf += data
            data = bytes(self.buf)
            self.buf.clear()
            self.on_data(data)
        else:
            self.on_data(data)
        if len(self.buf) > HIGH_WATER and not self._read_paused and not self.lost:
            self._read_paused = True
            self.transport.pause_reading()

    def eof_received(self) -> bool:
        self.eof = True
        self._wake()
        if not self.owned:
            self.on_eof()
        return self.half_close

    def connection_lost(self, exc) -> None:
        self.eof = self.lost = True
        self._wake()
        drain = self._drain
        if drain is not None and not drain.done():
            drain.set_result(None)
        self.on_lost()

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        drain = self._drain
        if drain is not None and not drain.done():
            drain.set_result(None)

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    # ---- reading, for a coroutine --------------------------------------------------------------

    @property
    def write_paused(self) -> bool:
        return self._write_paused

    def consumed(self) -> None:
        """Bytes were taken from the buffer: read from the socket again once it is low."""
        if self._read_paused and len(self.buf) < LOW_WATER and not self.lost:
            self._read_paused = False
            self.transport.resume_reading()

    async def _wait(self) -> None:
        if self._read_paused and not self.lost:
            self._read_paused = False
            self.transport.resume_reading()
        self._waiter = waiter = asyncio.get_running_loop().create_future()
        try:
            await waiter
        finally:
            self._waiter = None

    async def readuntil(self, sep: bytes = b"\r\n\r\n", limit: int = 65536) -> bytes:
        start = 0
        while True:
            i = self.buf.find(sep, start)
            if i >= 0:
                end = i + len(sep)
                data = bytes(self.buf[:end])
                del self.buf[:end]
                self.consumed()
                return data
            if len(self.buf) > limit:
                raise asyncio.LimitOverrunError("separator not found within the limit", len(self.buf))
            if self.eof:
                partial = bytes(self.buf)
                self.buf.clear()
                raise asyncio.IncompleteReadError(partial, None)
            start = max(0, len(self.buf) - len(sep) + 1)
            await self._wait()

    async def read(self, n: int) -> bytes:
        while not self.buf:
            if self.eof:
                return b""
            await self._wait()
        data = bytes(self.buf[:n])
        del self.buf[:n]
        self.consumed()
        return data

    async def readexactly(self, n: int) -> bytes:
        while len(self.buf) < n:
            if self.eof:
                partial = bytes(self.buf)
                self.buf.clear()
                raise asyncio.IncompleteReadError(partial, n)
            await self._wait()
        data = bytes(self.buf[:n])
        del self.buf[:n]
        self.consumed()
        return data

    def at_eof(self) -> bool:
        return self.eof and not self.buf

    # ---- writing -----------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if not self.lost:
            self.transport.write(data)

    async def drain(self) -> None:
        if self.lost:
            raise ConnectionResetError("connection lost")
        if self._write_paused:
            self._drain = drain = asyncio.get_running_loop().create_future()
            try:
                await drain
            finally:
                self._drain = None
            if self.lost:
                raise ConnectionResetError("connection lost")

    def can_write_eof(self) -> bool:
        return not self.lost and self.transport.can_write_eof()

    def write_eof(self) -> None:
        if not self.lost:
            self.transport.write_eof()

    def is_closing(self) -> bool:
        return self.lost or self.transport is None or self.transport.is_closing()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        self.eof = True   # at once: connection_lost comes a loop turn later
        if self.transport is not None:
            self.transport.abort()
