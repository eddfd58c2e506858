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

NO_BODY, LENGTH, CHUNKED, UNTIL_CLOSE = 0, 1, 2, 3


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
    lines = raw[:-4].split(b"\r\n") if raw.endswith(b"\r\n\r\n") else raw.rstrip(b"\r\n").split(b"\n")
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
        return await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as e:
        if e.partial.strip():
            raise BadMessage(400, "incomplete head") from None
        return b""
    except asyncio.LimitOverrunError:
        raise BadMessage(431, "head too large") from None


async def copy_body(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, framing: int, length: int,
                    chunk_out: bool) -> None:
    """Copy one body: `framing`/`length` say how it arrives, `chunk_out` whether to send it on
    chunked (else as it comes: a known length, or until close)."""
    write = writer.write
    if framing == LENGTH:
        left = length
        while left:
            data = await reader.read(min(left, CHUNK))
            if not data:
                raise asyncio.IncompleteReadError(b"", left)
            left -= len(data)
            write(b"%x\r\n%s\r\n" % (len(data), data) if chunk_out else data)
            await writer.drain()
    elif framing == CHUNKED:
        while True:
            line = await reader.readuntil(b"\r\n")
            size_text = line.split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise BadMessage(400, "bad chunk size") from None
            if size == 0:
                while (await reader.readuntil(b"\r\n")) != b"\r\n":
                    pass   # trailers: dropped
                break
            left = size
            while left:
                data = await reader.read(min(left, CHUNK))
                if not data:
                    raise asyncio.IncompleteReadError(b"", left)
                left -= len(data)
                write(b"%x\r\n%s\r\n" % (len(data), data) if chunk_out else data)
            if await reader.readexactly(2) != b"\r\n":
                raise BadMessage(400, "bad chunk end")
            await writer.drain()
    elif framing == UNTIL_CLOSE:
        while True:
            data = await reader.read(CHUNK)
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


# ---- the fast path's parsers: the common message in one pass, None for anything else -----------
# They keep ordinary header lines as they came (nothing rebuilt) and give up — the general
# parse_head path then decides — on any field that needs care: framing other than a
# Content-Length, upgrades, Expect, forwarded headers, hop-by-hop fields but a plain Connection.

# Fields of the lowercased head that send a message to the general parser (one regex with a
# literal prefix: a loop of `in` tests costs several times more), and whitespace before a colon.
_REQUEST_BAIL = re.compile(rb"\r\n(?:transfer-encoding|upgrade|expect|x-forwarded-|x-real-ip|te:|trailer|keep-alive|"
                           rb"proxy-|[ \t])")
_RESPONSE_BAIL = re.compile(rb"\r\n(?:transfer-encoding|upgrade|trailer|te:|proxy-|[ \t])")


# The fields the one-pass parsers look at, found in the lowercased head in one regex call.
_REQUEST_FIELDS = re.compile(rb"\r\n(host|content-length|connection):[ \t]*([^\r\n]*)")
_RESPONSE_FIELDS = re.compile(rb"\r\n(content-length|connection|keep-alive):[ \t]*([^\r\n]*)")


class QuickRequest:
    __slots__ = ("method", "head", "host", "keep", "length")

    def __init__(self, method, head, host, keep, length):
        self.method, self.head, self.host, self.keep, self.length = method, head, host, keep, length


def quick_request(raw: bytes) -> QuickRequest | None:
    """An HTTP/1.1 request with one Host, no body or a Content-Length one, nothing special.
    `head` is the request as it came, less a plain Connection field and the final CRLF."""
    line_end = raw.find(b"\r\n")
    first = raw[:line_end].split(b" ")
    if len(first) != 3 or first[2] != b"HTTP/1.1" or first[1][:1] != b"/":
        return None
    low = raw.lower()
    if _REQUEST_BAIL.search(low) is not None or b" :" in low or b"\t:" in low:
        return None
    host = None
    length = -1
    keep = True
    cut = None
    for m in _REQUEST_FIELDS.finditer(low):
        name = m.group(1)
        if name == b"host":
            if host is not None:
                return None
            host = raw[m.start(2):m.end(2)].rstrip()
        elif name == b"content-length":
            value = m.group(2).rstrip()
            if length >= 0 or not value.isdigit():
                return None
            length = int(value)
        else:
            value = m.group(2).rstrip()
            if cut is not None or value not in (b"close", b"keep-alive"):
                return None   # tokens naming fields to drop: the general parser's work
            keep = value != b"close"
            cut = m.span()
    if not host:
        return None
    head = raw[:-2] if cut is None else raw[:cut[0]] + raw[cut[1]:-2]
    return QuickRequest(first[0], head, host, keep, max(length, 0))


def quick_response(raw: bytes, head_only: bool) -> tuple[bytes, int, bool] | None:
    """An HTTP/1.1 response with a Content-Length (or none needed): (its head without the hop-by-hop
    fields and without the blank line, body length, connection reusable)."""
    status = raw[9:12]
    if raw[:9] != b"HTTP/1.1 " or status[:1] == b"1":
        return None
    low = raw.lower()
    if _RESPONSE_BAIL.search(low) is not None or b" :" in low or b"\t:" in low:
        return None
    length = -1
    reusable = True
    cuts = None
    for m in _RESPONSE_FIELDS.finditer(low):
        name = m.group(1)
        if name == b"content-length":
            value = m.group(2).rstrip()
            if length >= 0 or not value.isdigit():
                return None
            length = int(value)
            continue
        if name == b"connection":
            value = m.group(2).rstrip()
            if value == b"close":
                reusable = False
            elif value != b"keep-alive":
                return None
        if cuts is None:
            cuts = [m.span()]
        else:
            cuts.append(m.span())
    if head_only or status in (b"204", b"304"):
        length = 0
    elif length < 0:
        return None
    if cuts is None:
        return raw[:-4], length, reusable
    parts = []
    at = 0
    for start, end in cuts:
        parts.append(raw[at:start])
        at = end
    parts.append(raw[at:-4])
    return b"".join(parts), length, reusable
