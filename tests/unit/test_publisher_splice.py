"""The host publisher's byte pump between two real loopback TCP connections: every byte both
ways, a half-close passed on (the other direction keeps flowing), and a reset ends both; the
in-kernel splice and the user-space copy alike. And the publisher relaying UDP and TCP in the
process's own namespace, on asyncio and on uvloop (the agent's loop)."""
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


class _Informer:
    def __init__(self, items):
        self.items = items
        self.synced = asyncio.Event()
        self.synced.set()

    def add_handlers(self, **_):
        pass

    def list(self):
        return self.items

    def get(self, key):
        return None


class _Informers:
    def __init__(self, items):
        self.inf = _Informer(items)

    def informer(self, api_version, kind):
        return self.inf


def _free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _publish_in_own_namespace() -> None:
    """A UDP echo and a TCP echo on loopback stand in for the Service (its "cluster IP" is
    127.0.0.1; a loopback node IP means the cluster IP is dialled), the publisher in between."""
    from ketch.agent.runtime.namespaces import NetnsSockets
    loop = asyncio.get_running_loop()
    echo_udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    echo_udp.bind(("127.0.0.1", 0))
    echo_udp.setblocking(False)

    def on_datagram():
        data, addr = echo_udp.recvfrom(65535)
        echo_udp.sendto(b"echo:" + data, addr)
    loop.add_reader(echo_udp.fileno(), on_datagram)

    async def echo_tcp(reader, writer):
        writer.write(await reader.read())
        await writer.drain()
        writer.close()
    tcp_server = await asyncio.start_server(echo_tcp, "127.0.0.1", 0)
    udp_port, tcp_port = echo_udp.getsockname()[1], tcp_server.sockets[0].getsockname()[1]
    np_udp, np_tcp = _free_port(socket.SOCK_DGRAM), _free_port(socket.SOCK_STREAM)
    svc = {"metadata": {"namespace": "default", "name": "echo"},
           "spec": {"type": "NodePort", "clusterIP": "127.0.0.1",
                    "ports": [{"name": "u", "protocol": "UDP", "port": udp_port, "nodePort": np_udp},
                              {"name": "t", "protocol": "TCP", "port": tcp_port, "nodePort": np_tcp}]}}
    sockets = NetnsSockets(None)
    pub = publisher.HostPublisher(_Informers([svc]), sockets, "127.0.0.1")
    pub.start()
    try:
        for _ in range(200):
            if len(pub.listeners) == 2:
                break
            await asyncio.sleep(0.01)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as c:
            c.setblocking(False)
            c.connect(("127.0.0.1", np_udp))
            for word in (b"one", b"two"):
                c.send(word)
                await asyncio.wait_for(publisher._ready(c.fileno(), write=False), 5)
                assert c.recv(100) == b"echo:" + word
        reader, writer = await asyncio.open_connection("127.0.0.1", np_tcp)
        writer.write(b"x" * 100000)
        writer.write_eof()
        assert await asyncio.wait_for(reader.read(), 5) == b"x" * 100000
        writer.close()
    finally:
        await pub.stop()
        loop.remove_reader(echo_udp.fileno())
        echo_udp.close()
        tcp_server.close()
        sockets.close()
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", np_tcp)   # stopped: closed


def test_publisher_relays_udp_and_tcp_on_asyncio_and_uvloop():
    asyncio.run(_publish_in_own_namespace())
    uvloop = pytest.importorskip("uvloop")
    uvloop.run(_publish_in_own_namespace())              # the agent's loop: no loop.sock_recvfrom there
