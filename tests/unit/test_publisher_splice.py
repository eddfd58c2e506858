"""The host publisher's byte pump between two real loopback TCP connections: every byte both
ways, a half-close passed on (the other direction keeps flowing), and a reset ends both; the
in-kernel splice and the user-space copy alike."""
import asyncio
import hashlib
import os
import socket

import pytest

from ketch.agent import publisher


def tcp_pair() -> tuple[socket.socket, socket.socket]:
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        a = socket.create_connection(srv.getsockname())
        b, _ = srv.accept()
    for s in (a, b):
        s.setblocking(False)
    return a, b


@pytest.fixture(params=["splice", "copy"])
def pump(request, monkeypatch):
    fn = publisher._pump_splice if request.param == "splice" else publisher._pump_copy
    monkeypatch.setattr(publisher, "_pump", fn)
    return request.param


async def test_bytes_both_ways_with_half_close(pump):
    loop = asyncio.get_running_loop()
    client, a = tcp_pair()          # client <-> [a  splice  b] <-> server
    b, server = tcp_pair()
    task = asyncio.create_task(publisher.splice(a, b))
    payload = os.urandom(3 << 20)

    async def server_side():
        h, n = hashlib.sha256(), 0
        while chunk := await loop.sock_recv(server, 1 << 16):
            h.update(chunk)
            n += len(chunk)
        # The client's half-close arrived; the way back is still open.
        await loop.sock_sendall(server, f"{n} {h.hexdigest()}".encode())
        server.close()

    srv = asyncio.create_task(server_side())
    await loop.sock_sendall(client, payload)
    client.shutdown(socket.SHUT_WR)
    reply = b""
    while chunk := await asyncio.wait_for(loop.sock_recv(client, 1024), 10):
        reply += chunk
    assert reply.decode() == f"{len(payload)} {hashlib.sha256(payload).hexdigest()}"
    await asyncio.wait_for(asyncio.gather(task, srv), 10)   # both directions ended: splice returns
    for s in (client, a, b):
        s.close()


async def test_a_reset_ends_both_directions(pump):
    client, a = tcp_pair()
    b, server = tcp_pair()
    task = asyncio.create_task(publisher.splice(a, b))
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    client.close()                   # RST
    await asyncio.wait_for(task, 5)
    a.close()
    b.close()
    server.close()
