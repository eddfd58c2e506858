"""The small piece of HTTP/1.1 the ingress proxy needs: parsing a message head, choosing how its
body is framed, and copying a body from one stream to another as it arrives (Content-Length,
chunked or until close), re-framed for the receiving side.

Bodies are never buffered whole: each piece is written on as soon as it is read, so a slow
upload or a long event stream flows through.
"""
from __future__ import annotations

import asyncio
import re

CHUNK = 65536
MAX_HEAD = 65536

# RFC 9110 7.6.1 connection-specific fields, plus the ones proxies invent; never forwarded.
HOP_BY_HOP = frozenset({b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer",
                        b"transfer-encoding", b"upgrade", b"proxy-authenticate", b"proxy-authorization"})

# Never removed by a Connection token: the fields that frame the message and say where it goes (a
# `Connection: content-length` stripping the length would let the body pass as a second request).
FRAMING = frozenset({b"content-length", b"transfer-encoding", b"host"})

NO_BODY, LENGTH, CHUNKED, UNTIL_CLOSE = 0, 1, 2, 3
_CHUNK_SIZE = re.compile(rb"[0-9A-Fa-f]{1,16}")   # int(x, 16) alone takes 0x10, 1_0, +1, -1


class BadMessage(Exception):
    """A malformed message: the status to answer with (requests) and why."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status


class Head:
    """A parsed request or response head. `headers` keeps each field as (lowercase name, name,
    value) in order; `first` is the start line split in three."""
    __slots__ = ("first", "headers", "framing", "length", "connection")

    def __init__(self, first: list[bytes], headers: list[tuple[bytes, bytes, bytes]]):
        self.first = first
        self.headers = headers
        self.framing = NO_BODY
        self.length = 0
        tokens: set[bytes] = set()
        for lname, _, value in headers:
            if lname == b"connection":
                tokens.update(t.strip().lower() for t in value.split(b","))
        self.connection = tokens

    def get(self, lname: bytes) -> bytes | None:
        for n, _, v in self.headers:
            if n == lname:
                return v
        return None

    def body_framing(self, chunked_ok: bool = True) -> None:
        """Set framing/length from Transfer-Encoding and Content-Length (RFC 9112 6.3)."""
        te = cl = None
        for lname, _, value in self.headers:
            if lname == b"transfer-encoding":
                te = value.lower() if te is None else te + b"," + value.lower()
            elif lname == b"content-length":
                if cl is not None and cl != value.strip():
                    raise BadMessage(400, "conflicting Content-Length")
                cl = value.strip()
        if te is not None:
            if cl is not None:
                raise BadMessage(400, "both Transfer-Encoding and Content-Length")   # smuggling
            if te.rsplit(b",", 1)[-1].strip() != b"chunked" or not chunked_ok:
                raise BadMessage(501 if chunked_ok else 400, "unsupported Transfer-Encoding")
            self.framing = CHUNKED
        elif cl is not None:
            if not cl.isdigit():
                raise BadMessage(400, "bad Content-Length")
            self.length = int(cl)
            self.framing = LENGTH if self.length else NO_BODY


def parse_head(raw: bytes) -> Head:
    """A head as read up to and including its blank line."""
    if raw.endswith(b"\r\n\r\n"):
        lines = raw[:-4].split(b"\r\n")
        stray = raw.count(b"\r") != len(lines) + 1 or raw.count(b"\n") != len(lines) + 1
    else:
        lines = raw.rstrip(b"\r\n").split(b"\n")
        stray = raw.rstrip(b"\r\n").find(b"\r") >= 0
    if stray or b"\0" in raw:
        # A proxy forwards lines: one the next hop splits differently would smuggle fields past us.
        raise BadMessage(400, "bare CR or LF, or NUL, in the head")
    first = lines[0].split(b" ", 2)
    if len(first) != 3:
        raise BadMessage(400, "bad start line")
    headers = []
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep or not name or name[-1:] in (b" ", b"\t") or name[:1] in (b" ", b"\t"):
            raise BadMessage(400, "bad header line")
        headers.append((name.lower(), name, value.strip()))
    return Head(first, headers)


async def read_head(reader: asyncio.StreamReader) -> bytes:
    """Up to the blank line; b"" when the peer closed before sending anything."""
    try:
        raw = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as e:
        if e.partial.strip():
            raise BadMessage(400, "incomplete head") from None
        return b""
    except asyncio.LimitOverrunError:
        raise BadMessage(431, "head too large") from None
    if len(raw) > MAX_HEAD:   # the blank line came, but past the limit
        raise BadMessage(431, "head too large")
    return raw


async def copy_body(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, framing: int, length: int,
                    chunk_out: bool, timeout: float | None = None) -> None:
    """Copy one body: `framing`/`length` say how it arrives, `chunk_out` whether to send it on
    chunked (else as it comes: a known length, or until close). With `timeout`, each read of the
    reader must make progress within it (nginx's client_body_timeout): TimeoutError."""
    try:
        await _copy_body(reader, writer, framing, length, chunk_out, timeout)
    except asyncio.LimitOverrunError:
        raise BadMessage(400, "chunk line too long") from None


def _timed(reader, timeout: float | None):
    """reader's read and readuntil, each bounded by `timeout`."""
    if timeout is None:
        return reader.read, reader.readuntil, reader.readexactly

    async def read(n):
        async with asyncio.timeout(timeout):
            return await reader.read(n)

    async def readuntil(sep):
        async with asyncio.timeout(timeout):
            return await reader.readuntil(sep)

    async def readexactly(n):
        async with asyncio.timeout(timeout):
            return await reader.readexactly(n)
    return read, readuntil, readexactly


async def _copy_body(reader, writer, framing: int, length: int, chunk_out: bool, timeout: float | None) -> None:
    write = writer.write
    read, readuntil, readexactly = _timed(reader, timeout)
    if framing == LENGTH:
        left = length
        while left:
            data = await read(min(left, CHUNK))
            if not data:
                raise asyncio.IncompleteReadError(b"", left)
            left -= len(data)
            write(b"%x\r\n%s\r\n" % (len(data), data) if chunk_out else data)
            await writer.drain()
    elif framing == CHUNKED:
        while True:
            line = await readuntil(b"\r\n")
            size_text = line[:-2].split(b";", 1)[0].rstrip(b" \t")   # whitespace only before an extension
            if _CHUNK_SIZE.fullmatch(size_text) is None:
                raise BadMessage(400, "bad chunk size")
            size = int(size_text, 16)
            if size == 0:
                while (await readuntil(b"\r\n")) != b"\r\n":
                    pass   # trailers: dropped
                break
            left = size
            while left:
                data = await read(min(left, CHUNK))
                if not data:
                    raise asyncio.IncompleteReadError(b"", left)
                left -= len(data)
                write(b"%x\r\n%s\r\n" % (len(data), data) if chunk_out else data)
            if await readexactly(2) != b"\r\n":
                raise BadMessage(400, "bad chunk end")
            await writer.drain()
    elif framing == UNTIL_CLOSE:
        while True:
            data = await read(CHUNK)
            if not data:
                break
            write(b"%x\r\n%s\r\n" % (len(data), data) if chunk_out else data)
            await writer.drain()
    if chunk_out:
        write(b"0\r\n\r\n")
        await writer.drain()


async def splice(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Bytes one way until EOF, then half-close the other side (an upgraded connection)."""
    try:
        while True:
            data = await reader.read(CHUNK)
            if not data:
                break
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        pass


# ---- the fast path's parsers: the common message in one split, None for anything else ----------
# They keep ordinary header lines as they came (nothing rebuilt) and give up — the general
# parser then decides — on any field that needs care: framing other than a Content-Length,
# upgrades, Expect, the forwarded fields we set, hop-by-hop fields but a plain Connection, a line
# without a name, whitespace before a colon, folded lines, a bare CR or LF or a NUL (which a next
# hop could split on: a field smuggled past us).
#
# A head is split into lines and each line's verdict is a pure function of its bytes, so verdicts
# are memoized per line (bounded): most lines recur from message to message (Host, Server,
# Content-Type, Connection...), and a dict hit costs a fraction of the checks; a line seen once
# (a Date, a cookie) pays the checks and is remembered until the memo is full and starts over.

_ORDINARY, _BAIL, _HOST, _LENGTH, _KEEP, _CLOSE, _DROP = range(7)
_CONNECTION = -1   # a name whose verdict depends on its value: keep-alive or close
_REQUEST_FIELDS = {b"host": _HOST, b"content-length": _LENGTH, b"connection": _CONNECTION,
                   **dict.fromkeys((b"transfer-encoding", b"upgrade", b"expect", b"te", b"trailer", b"keep-alive",
                                    b"proxy-connection", b"proxy-authenticate", b"proxy-authorization",
                                    b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host",
                                    b"x-forwarded-port", b"x-real-ip"), _BAIL)}
_RESPONSE_FIELDS = {b"content-length": _LENGTH, b"connection": _CONNECTION, b"keep-alive": _DROP,
                    **dict.fromkeys((b"transfer-encoding", b"upgrade", b"te", b"trailer", b"proxy-connection",
                                     b"proxy-authenticate", b"proxy-authorization"), _BAIL)}
_WS = frozenset(b" \t")   # as ints: line[i] is one
MEMO_LINES = 4096       # verdicts remembered per memo...
MEMO_LINE_MAX = 256     # ...of lines up to this long: a few MB at most, whatever clients send
_BAILED = (_BAIL, None)
_PLAIN = (_ORDINARY, None)


def _stray(line: bytes) -> bool:
    return line.find(b"\r") >= 0 or line.find(b"\n") >= 0 or line.find(b"\0") >= 0


def _field_verdict(line: bytes, fields: dict) -> tuple[int, object]:
    """(kind, value) of one header line: the Host, the Content-Length as an int."""
    colon = line.find(b":")
    if colon < 1 or line[colon - 1] in _WS or line[0] in _WS or _stray(line):
        return _BAILED
    kind = fields.get(line[:colon].lower(), _ORDINARY)
    if kind == _ORDINARY or kind == _BAIL or kind == _DROP:
        return _PLAIN if kind == _ORDINARY else (kind, None)
    value = line[colon + 1:].strip()
    if kind == _HOST:
        return (_HOST, value) if value else _BAILED
    if kind == _LENGTH:
        return (_LENGTH, int(value)) if value.isdigit() else _BAILED
    value = value.lower()   # Connection: only a plain one; tokens naming fields are the general parser's work
    return (_KEEP, None) if value == b"keep-alive" else (_CLOSE, None) if value == b"close" else _BAILED


def _request_line_verdict(line: bytes) -> tuple[bytes, bytes] | None:
    """(method, path without the query) of an origin-form HTTP/1.1 request line."""
    first = line.split(b" ")
    if len(first) != 3 or first[2] != b"HTTP/1.1" or not first[1].startswith(b"/") or _stray(line):
        return None
    target = first[1]
    q = target.find(b"?")
    return first[0], target if q < 0 else target[:q]


def _status_line_verdict(line: bytes) -> bytes:
    """The status of an HTTP/1.1 final response's status line, else b""."""
    if not line.startswith(b"HTTP/1.1 ") or line[9:10] == b"1" or _stray(line):   # 1xx: interim
        return b""
    return line[9:12]


def _memo(memo: dict, key: bytes, verdict):
    if len(key) <= MEMO_LINE_MAX:
        if len(memo) >= MEMO_LINES:
            memo.clear()
        memo[key] = verdict
    return verdict


_start_lines: dict[bytes, tuple[bytes, bytes] | None] = {}   # request lines
_request_lines: dict[bytes, tuple[int, object]] = {}         # request header lines
_response_lines: dict[bytes, tuple[int, object]] = {}        # response header lines
_status_lines: dict[bytes, bytes] = {}


def quick_request(raw: bytes) -> tuple[bytes, bytes, bytes, bytes, bool, int] | None:
    """An HTTP/1.1 request with one Host, no body or a Content-Length one, nothing special:
    (method, path without the query, head, Host, keep-alive, body length). `head` is the request
    as it came, less a plain Connection field and the final CRLF."""
    lines = raw[:-4].split(b"\r\n")
    start = _start_lines.get(lines[0], _BAILED)
    if start is _BAILED:
        start = _memo(_start_lines, lines[0], _request_line_verdict(lines[0]))
    if start is None:
        return None
    memo = _request_lines
    host = None
    length = -1
    keep = True
    cut = None
    for line in lines[1:]:
        verdict = memo.get(line)
        if verdict is None:
            verdict = _memo(memo, line, _field_verdict(line, _REQUEST_FIELDS))
        kind = verdict[0]
        if kind == _ORDINARY:
            continue
        if kind == _HOST:
            if host is not None:
                return None
            host = verdict[1]
        elif kind == _LENGTH:
            if length >= 0:
                return None
            length = verdict[1]
        elif (kind == _KEEP or kind == _CLOSE) and cut is None:
            keep = kind == _KEEP
            cut = line
        else:
            return None
    if host is None:
        return None
    if cut is not None:
        lines.remove(cut)
        lines.append(b"")
        head = b"\r\n".join(lines)
    else:
        head = raw[:-2]
    return start[0], start[1], head, host, keep, max(length, 0)


def quick_response(raw: bytes, head_only: bool) -> tuple[bytes, int, bool] | None:
    """An HTTP/1.1 response with a Content-Length (or none needed): (its head without the hop-by-hop
    fields and without the blank line, body length, connection reusable)."""
    lines = raw[:-4].split(b"\r\n")
    status = _status_lines.get(lines[0])
    if status is None:
        status = _memo(_status_lines, lines[0], _status_line_verdict(lines[0]))
    if not status:
        return None
    memo = _response_lines
    length = -1
    reusable = True
    cuts = None
    for line in lines[1:]:
        verdict = memo.get(line)
        if verdict is None:
            verdict = _memo(memo, line, _field_verdict(line, _RESPONSE_FIELDS))
        kind = verdict[0]
        if kind == _ORDINARY:
            continue
        if kind == _LENGTH:
            if length >= 0:
                return None
            length = verdict[1]
            continue
        if kind == _BAIL:
            return None
        if kind == _CLOSE:
            reusable = False
        if cuts is None:      # Connection and Keep-Alive: hop-by-hop
            cuts = [line]
        else:
            cuts.append(line)
    if head_only or status == b"204" or status == b"304":
        length = 0
    elif length < 0:
        return None
    if cuts is None:
        return raw[:-4], length, reusable
    for line in cuts:
        lines.remove(line)
    return b"\r\n".join(lines), length, reusable
