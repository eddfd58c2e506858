"""Take over an aiohttp server connection after answering 101 Switching Protocols.

aiohttp only hands upgraded connections to its own WebSocket reader (and only for `Upgrade:
websocket`), so SPDY/3.1 and byte-for-byte proxying swap the transport's protocol for an
asyncio stream pair. The prepared 101 response is returned to aiohttp when the caller is done,
and aiohttp then closes the connection.
"""
from __future__ import annotations

import asyncio

from aiohttp import web


async def switch_protocols(request: web.Request, headers) -> tuple[web.StreamResponse, asyncio.StreamReader,
                                                                  asyncio.StreamWriter]:
    """Send `101` with `headers` and return (response to hand back to aiohttp, reader, writer)."""
    resp = web.StreamResponse(status=101, headers=headers)
    resp.force_close()
    await resp.prepare(request)
    transport = request.transport
    assert transport is not None
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 20, loop=loop)
    protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
    tail = getattr(request.protocol, "_message_tail", b"")  # bytes aiohttp read past the request
    if tail:
        reader.feed_data(tail)
        request.protocol._message_tail = b""
    transport.set_protocol(protocol)
    protocol.connection_made(transport)
    transport.resume_reading()
    writer = asyncio.StreamWriter(transport, protocol, reader, loop)
    return resp, reader, writer


async def splice(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, chunk: int = 1 << 16) -> None:
    """Copy until EOF, then half-close the writer's side (or close it when it cannot)."""
    try:
        while data := await reader.read(chunk):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        try:
            if writer.can_write_eof():
                writer.write_eof()
            else:
                writer.close()
        except (ConnectionError, OSError, RuntimeError):
            pass


async def splice_both(a: tuple[asyncio.StreamReader, asyncio.StreamWriter],
                      b: tuple[asyncio.StreamReader, asyncio.StreamWriter]) -> None:
    """Copy both ways until both directions end (or one side fails); then close both."""
    tasks = [asyncio.create_task(splice(a[0], b[1])), asyncio.create_task(splice(b[0], a[1]))]
    try:
        done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        # A TLS stream cannot half-close: when one side ends, give the other a moment to finish.
        if pending:
            await asyncio.wait(pending, timeout=None if all(w.can_write_eof() for w in (a[1], b[1])) else 5)
    finally:
        for t in tasks:
            t.cancel()
        for w in (a[1], b[1]):
            w.close()
