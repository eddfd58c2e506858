"""The host publisher: NodePort and LoadBalancer Services reachable on the host's loopback.

The node lives in a network namespace of its own, so its NodePorts are not on the host. The
publisher listens in the agent's (root) namespace — on host_address:nodePort for every Service
port with a nodePort ("the port on every node": bound with SO_REUSEPORT, so the agents of several
nodes on one machine share it and the kernel spreads connections over them), and on ip:port for
every LoadBalancer whose ingress IP is a loopback address (the built-in ServiceLB's) — and
forwards each connection into the node: to node_ip:nodePort, where the service proxy's NodePort
rules pick an endpoint, or to clusterIP:port for a port without a nodePort
(allocateLoadBalancerNodePorts: false) or when node_ip is itself a loopback address (127/8 cannot
be DNATed to a pod without route_localnet, which we do not turn on).

TCP is spliced both ways inside the kernel (splice(2) through a pipe per direction, so at most
BUFFER bytes in flight and none copied to user space), half-closes passed on; UDP
datagrams are relayed through one upstream socket per client address, dropped after an idle
timeout. A port that cannot be bound (something else on the host has it) is logged and reported
as a Warning event on the Service, and retried; it never stops the others.
"""
from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import socket
import time
from dataclasses import dataclass

from ..client.background import Background
from ..client.informer import SharedInformers, object_key
from .runtime.namespaces import NetnsSockets

log = logging.getLogger("ketch.agent.publisher")

BUFFER = 256 * 1024          # bytes in flight per direction of a TCP connection
F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
CONNECT_TIMEOUT = 5.0
RETRY_PERIOD = 10.0          # a port that could not be bound is tried again this often
UDP_IDLE_TIMEOUT = 60.0      # a UDP client silent this long loses its upstream socket
UDP_MAX_CLIENTS = 1024       # per listener; the oldest is dropped past it
DATAGRAM = 65535


@dataclass(frozen=True)
class Target:
    service: str             # namespace/name, for events
    ip: str
    port: int


def _loopback(ip: str) -> bool:
    return ip.startswith("127.")


def desired(services: list[dict], node_ip: str, host_address: str, node_ports: bool = True
            ) -> dict[tuple[str, int, str], Target]:
    """(listen ip, port, protocol) -> where its connections go, for these Services; without
    `node_ports` only the loopback LoadBalancer addresses."""
    out: dict[tuple[str, int, str], Target] = {}
    via_node = bool(node_ip) and not _loopback(node_ip)
    for svc in sorted(services, key=lambda s: (s["metadata"].get("creationTimestamp") or "", object_key(s))):
        spec = svc.get("spec") or {}
        kind, cluster_ip = spec.get("type") or "ClusterIP", spec.get("clusterIP") or ""
        if kind not in ("NodePort", "LoadBalancer") or not cluster_ip or cluster_ip == "None":
            continue
        key = object_key(svc)
        # The ServiceLB's addresses: loopback ones of Services it serves (no loadBalancerClass),
        # never the host's own 127.0.0.1, where the ingress controller and the NodePorts listen.
        lb_ips = [i["ip"] for i in ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or ()
                  if _loopback(i.get("ip") or "") and i["ip"] not in ("127.0.0.1", host_address)] \
            if kind == "LoadBalancer" and not spec.get("loadBalancerClass") else []
        for p in spec.get("ports") or ():
            proto = (p.get("protocol") or "TCP").upper()
            if proto not in ("TCP", "UDP"):
                continue
            node_port = int(p.get("nodePort") or 0)
            target = Target(key, node_ip, node_port) if node_port and via_node else \
                Target(key, cluster_ip, int(p["port"]))
            if node_port and node_ports:
                out.setdefault((host_address, node_port, proto), target)   # the first Service keeps a clash
            for ip in lb_ips:
                out.setdefault((ip, int(p["port"]), proto), target)
    return out


class _Listener:
    """One bound socket and the tasks serving it."""

    def __init__(self, publisher: "HostPublisher", sock: socket.socket, target: Target, proto: str):
        self.publisher, self.sock, self.target, self.proto = publisher, sock, target, proto
        self.tasks: set[asyncio.Task] = set()
        self.main = asyncio.create_task(self._accept() if proto == "TCP" else self._relay())

    def _spawn(self, coro) -> None:
        task = asyncio.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def close(self) -> None:
        for task in (self.main, *self.tasks):
            task.cancel()
        await asyncio.gather(self.main, *self.tasks, return_exceptions=True)
        self.sock.close()

    # ---- TCP -----------------------------------------------------------------------------------

    async def _accept(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                conn, _ = await loop.sock_accept(self.sock)
            except OSError as e:          # EMFILE and friends: back off, keep listening
                log.warning("accept on %s: %s", self.sock.getsockname(), e)
                await asyncio.sleep(0.5)
                continue
            conn.setblocking(False)
            self._spawn(self._forward(conn, self.target))

    async def _forward(self, conn: socket.socket, target: Target) -> None:
        upstream = None
        try:
            try:
                upstream = await self.publisher.sockets.connect(target.ip, target.port, CONNECT_TIMEOUT)
            except (OSError, asyncio.TimeoutError) as e:
                log.info("%s: connecting to %s:%d in the node: %s", target.service, target.ip, target.port, e)
                return
            for s in (conn, upstream):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            await splice(conn, upstream)
        finally:
            conn.close()
            if upstream is not None:
                upstream.close()

    # ---- UDP -----------------------------------------------------------------------------------

    async def _relay(self) -> None:
        loop = asyncio.get_running_loop()
        clients: dict[tuple, list] = {}   # client address -> [upstream socket, reader task, last seen]
        sweeper = asyncio.create_task(self._sweep(clients))
        try:
            while True:
                data, addr = await _recvfrom(self.sock)
                entry = clients.get(addr)
                if entry is None:
                    if len(clients) >= UDP_MAX_CLIENTS:
                        oldest = min(clients, key=lambda a: clients[a][2])
                        self._drop(clients, oldest)
                    try:
                        up = await self.publisher.sockets.new_socket(socket.AF_INET, socket.SOCK_DGRAM)
                        up.connect((self.target.ip, self.target.port))   # UDP: only sets the peer
                    except OSError as e:
                        log.info("%s: UDP upstream %s:%d: %s", self.target.service, self.target.ip,
                                 self.target.port, e)
                        continue
                    entry = clients[addr] = [up, asyncio.create_task(self._replies(up, addr)), 0.0]
                entry[2] = time.monotonic()
                try:
                    await loop.sock_sendall(entry[0], data)
                except OSError:
                    pass      # e.g. ECONNREFUSED from an earlier ICMP: UDP is lossy anyway
        finally:
            sweeper.cancel()
            for addr in list(clients):
                self._drop(clients, addr)

    async def _replies(self, up: socket.socket, addr: tuple) -> None:
        while True:
            try:
                data, _ = await _recvfrom(up)
            except ConnectionRefusedError:
                continue
            except OSError:
                return
            try:
                self.sock.sendto(data, addr)
            except (BlockingIOError, OSError):
                pass

    async def _sweep(self, clients: dict) -> None:
        while True:
            await asyncio.sleep(min(UDP_IDLE_TIMEOUT, 5.0))
            now = time.monotonic()
            for addr in [a for a, e in clients.items() if now - e[2] > UDP_IDLE_TIMEOUT]:
                self._drop(clients, addr)

    @staticmethod
    def _drop(clients: dict, addr: tuple) -> None:
        up, task, _ = clients.pop(addr)
        task.cancel()
        up.close()


async def _ready(fd: int, write: bool) -> None:
    """Until fd is readable (or writable)."""
    loop = asyncio.get_running_loop()
    fut = loop.create_future()
    add, remove = (loop.add_writer, loop.remove_writer) if write else (loop.add_reader, loop.remove_reader)
    add(fd, lambda: fut.done() or fut.set_result(None))
    try:
        await fut
    finally:
        remove(fd)


async def _recvfrom(sock: socket.socket) -> tuple[bytes, tuple]:
    """One datagram (uvloop has no loop.sock_recvfrom)."""
    while True:
        try:
            return sock.recvfrom(DATAGRAM)
        except BlockingIOError:
            await _ready(sock.fileno(), write=False)


def _half_close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        pass


async def _pump_splice(src: socket.socket, dst: socket.socket) -> None:
    """Move src's bytes to dst inside the kernel (splice through a pipe of BUFFER bytes: no copy
    to user space, at most BUFFER in flight) until src's end of stream, then half-close dst."""
    r, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        try:
            fcntl.fcntl(w, F_SETPIPE_SZ, BUFFER)
        except OSError:
            pass   # above /proc/sys/fs/pipe-max-size: the default pipe size does
        flags = os.SPLICE_F_MOVE | os.SPLICE_F_NONBLOCK
        sfd, dfd = src.fileno(), dst.fileno()
        while True:
            try:
                n = os.splice(sfd, w, BUFFER, flags=flags)
            except BlockingIOError:
                await _ready(sfd, write=False)
                continue
            if n == 0:
                break
            while n:
                try:
                    n -= os.splice(r, dfd, n, flags=flags)
                except BlockingIOError:
                    await _ready(dfd, write=True)
    finally:
        os.close(r)
        os.close(w)
    _half_close(dst)


async def _pump_copy(src: socket.socket, dst: socket.socket) -> None:
    """The same through one user-space buffer, where splice(2) is missing."""
    loop = asyncio.get_running_loop()
    buf = bytearray(BUFFER)
    view = memoryview(buf)
    while True:
        n = await loop.sock_recv_into(src, buf)
        if n == 0:
            break
        await loop.sock_sendall(dst, view[:n])
    _half_close(dst)


_pump = _pump_splice if hasattr(os, "splice") else _pump_copy


async def splice(a: socket.socket, b: socket.socket) -> None:
    """Bytes both ways between two connected non-blocking sockets until both directions ended;
    an error in either direction ends both (the caller closes the sockets)."""
    tasks = [asyncio.ensure_future(_pump(a, b)), asyncio.ensure_future(_pump(b, a))]
    try:
        pending = set(tasks)
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            if any(not t.cancelled() and t.exception() is not None for t in done):
                break
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class HostPublisher(Background):
    """Listeners on the host for the NodePort and loopback LoadBalancer Services, following the
    Service informer live (added, port changed, deleted: closed)."""

    def __init__(self, informers: SharedInformers, sockets: NetnsSockets, node_ip: str,
                 host_address: str = "127.0.0.1", *, recorder=None, retry_period: float = RETRY_PERIOD,
                 node_ports: bool = True):
        """`node_ports`=False: only the ServiceLB's loopback addresses (for an agent whose node is
        the machine itself, `--network host`, where the NodePorts are the machine's already)."""
        self.sockets = sockets
        self.node_ip = node_ip
        self.host_address = host_address
        self.recorder = recorder
        self.retry_period = retry_period
        self.node_ports = node_ports
        self.services = informers.informer("v1", "Service")
        self.listeners: dict[tuple[str, int, str], _Listener] = {}
        self.failed: dict[tuple[str, int, str], str] = {}   # what could not be bound -> the error
        self._changed = asyncio.Event()
        self.services.add_handlers(on_add=lambda _o: self._changed.set(),
                                   on_update=lambda _o, _n: self._changed.set(),
                                   on_delete=lambda _o: self._changed.set())

    async def run(self) -> None:
        await self.services.synced.wait()
        try:
            while True:
                self._changed.clear()
                try:
                    await self.reconcile()
                except Exception:  # noqa: BLE001 - one bad Service must not stop the others' ports
                    log.exception("host publisher: reconciling the listeners failed; retrying")
                    self._changed.set()
                    await asyncio.sleep(self.retry_period)
                timeout = self.retry_period if self.failed else None
                try:
                    await asyncio.wait_for(self._changed.wait(), timeout)
                except asyncio.TimeoutError:
                    pass
        finally:
            await asyncio.gather(*(lst.close() for lst in self.listeners.values()), return_exceptions=True)
            self.listeners.clear()

    async def reconcile(self) -> None:
        """Bring the listeners to what the Services ask for now."""
        want = desired(self.services.list(), self.node_ip, self.host_address, self.node_ports)
        for key in [k for k in self.listeners if k not in want]:
            await self.listeners.pop(key).close()
            log.info("closed %s:%d/%s", *key)
        for key in [k for k in self.failed if k not in want]:
            del self.failed[key]
        for key, target in want.items():
            current = self.listeners.get(key)
            if current is not None:
                current.target = target     # new connections go to the new place; open ones stay
                continue
            ip, port, proto = key
            try:
                sock = self._bind(ip, port, proto)
            except OSError as e:
                if self.failed.get(key) != str(e):
                    self._report(target, ip, port, proto, e)
                self.failed[key] = str(e)
                continue
            self.failed.pop(key, None)
            self.listeners[key] = _Listener(self, sock, target, proto)
            log.info("%s: listening on %s:%d/%s -> %s:%d", target.service, ip, port, proto, target.ip, target.port)

    @staticmethod
    def _bind(ip: str, port: int, proto: str) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM if proto == "TCP" else socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)   # shared by the agents of one machine
            sock.setblocking(False)
            sock.bind((ip, port))
            if proto == "TCP":
                sock.listen(511)
        except BaseException:
            sock.close()
            raise
        return sock

    def _report(self, target: Target, ip: str, port: int, proto: str, error: OSError) -> None:
        message = f"can't open port {ip}:{port}/{proto.lower()}, skipping it: {error.strerror or error}"
        log.warning("%s: %s (retrying every %.0fs)", target.service, message, self.retry_period)
        svc = self.services.get(target.service)
        if self.recorder is not None and svc is not None:
            self.recorder.event(svc, "Warning", "FailedToOpenPort", message)
