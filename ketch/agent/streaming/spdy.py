"""SPDY/3.1 framing and a session, the subset kubectl's streams use (moby/spdystream's peer).

A frame is 8 bytes of header then a payload. Control frames: bit 31 set, 15-bit version (3),
16-bit type, 8-bit flags, 24-bit length. Data frames: bit 31 clear, 31-bit stream id, flags,
length. Header blocks (SYN_STREAM, SYN_REPLY, HEADERS) are a count and length-prefixed
name/value pairs, zlib-compressed with the SPDY/3 dictionary in one compression context per
direction (each block ends with a sync flush).

Flow control: spdystream neither sends WINDOW_UPDATE nor waits for one, so this session neither
enforces nor advertises windows; back-pressure is TCP's (a stream whose reader lags pauses the
whole session read loop once it holds MAX_BUFFERED bytes).
"""
from __future__ import annotations

import asyncio
import logging
import struct
import zlib
from typing import Awaitable, Callable

MAX_HEADER_BLOCK = 1 << 20   # decompressed headers of one frame, at most

log = logging.getLogger("ketch.agent.streaming.spdy")

VERSION = 3
SYN_STREAM, SYN_REPLY, RST_STREAM, SETTINGS, PING, GOAWAY, HEADERS, WINDOW_UPDATE = 1, 2, 3, 4, 6, 7, 8, 9
FLAG_FIN = 0x01
RST_PROTOCOL_ERROR, RST_INVALID_STREAM, RST_CANCEL = 1, 2, 5
MAX_DATA_FRAME = 1 << 16
MAX_BUFFERED = 1 << 20


def _dictionary() -> bytes:
    """The SPDY/3 header compression dictionary (draft-mbelshe-httpbis-spdy-00 §2.6.10.1):
    length-prefixed common header words, then a run of status texts and values."""
    words = ("options head post put delete trace accept accept-charset accept-encoding accept-language "
             "accept-ranges age allow authorization cache-control connection content-base content-encoding "
             "content-language content-length content-location content-md5 content-range content-type date "
             "etag expect expires from host if-match if-modified-since if-none-match if-range "
             "if-unmodified-since last-modified location max-forwards pragma proxy-authenticate "
             "proxy-authorization range referer retry-after server te trailer transfer-encoding upgrade "
             "user-agent vary via warning www-authenticate method get status").split()
    words += ["200 OK", "version", "HTTP/1.1", "url", "public", "set-cookie", "keep-alive", "origin"]
    out = b"".join(struct.pack(">I", len(w)) + w.encode() for w in words)
    tail = ("100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505"
            "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request"
            "401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented"
            "503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 "
            "Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,image/jpg,image/gif,"
            "application/xml,application/xhtml+xml,text/plain,text/javascript,publicprivatemax-age="
            "gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.")
    return out + tail.encode()


DICTIONARY = _dictionary()


class ProtocolError(Exception):
    pass


# ---- header blocks --------------------------------------------------------------------------

class HeaderCodec:
    """One direction's compression context for name/value blocks."""

    def __init__(self) -> None:
        self._deflate = zlib.compressobj(9, zlib.DEFLATED, 15, 9, zlib.Z_DEFAULT_STRATEGY, DICTIONARY)
        self._inflate = zlib.decompressobj(zdict=DICTIONARY)

    def encode(self, headers: dict[str, str | list[str]]) -> bytes:
        parts = [struct.pack(">I", len(headers))]
        for name, value in headers.items():
            v = "\0".join(value) if isinstance(value, list) else value
            n, vb = name.lower().encode(), v.encode()
            parts += [struct.pack(">I", len(n)), n, struct.pack(">I", len(vb)), vb]
        return self._deflate.compress(b"".join(parts)) + self._deflate.flush(zlib.Z_SYNC_FLUSH)

    def decode(self, block: bytes) -> dict[str, list[str]]:
        try:
            raw = self._inflate.decompress(block, MAX_HEADER_BLOCK)
        except zlib.error as e:
            raise ProtocolError(f"header block: {e}") from None
        if self._inflate.unconsumed_tail:   # a small frame inflating to megabytes: refuse it
            raise ProtocolError(f"header block larger than {MAX_HEADER_BLOCK} bytes")
        headers: dict[str, list[str]] = {}
        try:
            (count,), pos = struct.unpack_from(">I", raw), 4
            for _ in range(count):
                (n,) = struct.unpack_from(">I", raw, pos)
                name = raw[pos + 4:pos + 4 + n].decode().lower()
                pos += 4 + n
                (n,) = struct.unpack_from(">I", raw, pos)
                value = raw[pos + 4:pos + 4 + n].decode()
                pos += 4 + n
                headers.setdefault(name, []).extend(value.split("\0"))
        except (struct.error, UnicodeDecodeError) as e:
            raise ProtocolError(f"header block: {e}") from None
        return headers


def control_frame(ftype: int, flags: int, payload: bytes) -> bytes:
    return struct.pack(">HHI", 0x8000 | VERSION, ftype, (flags << 24) | len(payload)) + payload


def data_frame(stream_id: int, flags: int, payload: bytes) -> bytes:
    return struct.pack(">II", stream_id & 0x7FFFFFFF, (flags << 24) | len(payload)) + payload


# ---- streams and the session ----------------------------------------------------------------

class Stream:
    """One SPDY stream opened by the peer: its headers, what it sent, and a way to answer."""

    def __init__(self, session: Session, stream_id: int, headers: dict[str, list[str]]):
        self.session = session
        self.id = stream_id
        self.headers = headers
        self._buffer = bytearray()
        self._readable = asyncio.Event()
        self._drained = asyncio.Event()
        self._drained.set()
        self.remote_closed = False   # the peer sent FIN (or reset)
        self.local_closed = False    # we sent FIN (or reset)
        self.reset_by_peer = asyncio.Event()  # RST_STREAM received, or the session ended

    def header(self, name: str, default: str = "") -> str:
        values = self.headers.get(name.lower())
        return values[0] if values else default

    # incoming
    def _feed(self, data: bytes) -> None:
        if self.remote_closed:
            return
        self._buffer += data
        self._readable.set()
        if len(self._buffer) > MAX_BUFFERED:
            self._drained.clear()

    def _feed_eof(self) -> None:
        self.remote_closed = True
        self._readable.set()
        self._drained.set()

    async def read(self, n: int = MAX_DATA_FRAME) -> bytes:
        """Up to n bytes; b"" once the peer closed its side."""
        while not self._buffer:
            if self.remote_closed:
                return b""
            self._readable.clear()
            await self._readable.wait()
        chunk = bytes(self._buffer[:n])
        del self._buffer[:n]
        if len(self._buffer) <= MAX_BUFFERED // 2:
            self._drained.set()
        return chunk

    async def read_all(self) -> bytes:
        out = bytearray()
        while chunk := await self.read():
            out += chunk
        return bytes(out)

    # outgoing
    async def write(self, data: bytes) -> None:
        if self.local_closed or self.session.closed:
            return
        for i in range(0, len(data), MAX_DATA_FRAME):
            await self.session.send(data_frame(self.id, 0, data[i:i + MAX_DATA_FRAME]))

    async def close(self) -> None:
        """Half-close: an empty DATA frame with FIN."""
        if not self.local_closed and not self.session.closed:
            self.local_closed = True
            await self.session.send(data_frame(self.id, FLAG_FIN, b""))

    async def reset(self, status: int = RST_CANCEL) -> None:
        if not self.session.closed and not (self.local_closed and self.remote_closed):
            self.local_closed = True
            await self.session.send(control_frame(RST_STREAM, 0, struct.pack(">II", self.id, status)))
        self._feed_eof()


class Session:
    """The server side of a SPDY/3.1 connection: accepts the peer's streams (each answered at
    once with SYN_REPLY, as the kubelet does), answers PING, ends on GOAWAY or EOF.

    `reader` has asyncio.StreamReader's readexactly; `write` sends bytes in order.
    """

    def __init__(self, reader, write: Callable[[bytes], Awaitable[None]],
                 on_stream: Callable[[Stream], None]):
        self._reader = reader
        self._write = write
        self._on_stream = on_stream
        self._lock = asyncio.Lock()
        self._out = HeaderCodec()
        self._in = HeaderCodec()
        self.streams: dict[int, Stream] = {}
        self.closed = False

    async def send(self, frame: bytes) -> None:
        async with self._lock:
            if self.closed:
                return
            try:
                await self._write(frame)
            except (ConnectionError, RuntimeError, OSError):
                self._close()

    async def _send_headers_frame(self, ftype: int, stream_id: int, headers: dict, flags: int = 0) -> None:
        async with self._lock:  # compression order must match wire order
            if self.closed:
                return
            frame = control_frame(ftype, flags, struct.pack(">I", stream_id) + self._out.encode(headers))
            try:
                await self._write(frame)
            except (ConnectionError, RuntimeError, OSError):
                self._close()

    async def goaway(self) -> None:
        last = max(self.streams, default=0)
        await self.send(control_frame(GOAWAY, 0, struct.pack(">II", last, 0)))

    def _close(self) -> None:
        self.closed = True
        for s in self.streams.values():
            s._feed_eof()
            s.reset_by_peer.set()

    async def serve(self) -> None:
        """Read frames until the connection ends."""
        try:
            while True:
                head = await self._reader.readexactly(8)
                word, flags_len = struct.unpack(">II", head)
                flags, length = flags_len >> 24, flags_len & 0xFFFFFF
                payload = await self._reader.readexactly(length) if length else b""
                if word & 0x80000000:
                    await self._control((word >> 16) & 0x7FFF, word & 0xFFFF, flags, payload)
                else:
                    await self._data(word & 0x7FFFFFFF, flags, payload)
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        except (ProtocolError, struct.error, zlib.error) as e:   # a frame too short, headers unreadable
            log.info("spdy: %s", e)
            await self.goaway()
        finally:
            self._close()

    async def _data(self, stream_id: int, flags: int, payload: bytes) -> None:
        stream = self.streams.get(stream_id)
        if stream is None:
            await self.send(control_frame(RST_STREAM, 0, struct.pack(">II", stream_id, RST_INVALID_STREAM)))
            return
        if payload:
            stream._feed(payload)
            if not stream._drained.is_set():
                await stream._drained.wait()
        if flags & FLAG_FIN:
            stream._feed_eof()

    async def _control(self, version: int, ftype: int, flags: int, payload: bytes) -> None:
        if version != VERSION:
            raise ProtocolError(f"unsupported version {version}")
        if ftype == SYN_STREAM:
            stream_id = struct.unpack_from(">I", payload)[0] & 0x7FFFFFFF
            headers = self._in.decode(payload[10:])
            stream = self.streams[stream_id] = Stream(self, stream_id, headers)
            await self._send_headers_frame(SYN_REPLY, stream_id, {})
            if flags & FLAG_FIN:
                stream._feed_eof()
            self._on_stream(stream)
        elif ftype in (SYN_REPLY, HEADERS):
            self._in.decode(payload[4:])  # keep the decompression context in step
        elif ftype == RST_STREAM:
            stream = self.streams.get(struct.unpack_from(">I", payload)[0] & 0x7FFFFFFF)
            if stream is not None:
                stream.local_closed = True
                stream._feed_eof()
                stream.reset_by_peer.set()
        elif ftype == PING:
            await self.send(control_frame(PING, 0, payload[:4]))
        elif ftype == GOAWAY:
            raise asyncio.IncompleteReadError(b"", None)
        # SETTINGS and WINDOW_UPDATE need no answer (no flow control, see the module doc)
