"""The cluster DNS server: UDP and TCP on one address and port, answering the cluster zone from
`ClusterRecords` kept current by informers (Services, EndpointSlices, Namespaces).

Names the zone does not own go to the upstream given explicitly (`upstream="IP:port"`); without
one they get SERVFAIL, as CoreDNS's `.:53` block whose kubernetes plugin falls through to no next
plugin ("no next plugin found"). Over UDP an answer larger than the client's buffer (512 bytes,
or its EDNS0 size) is cut to what fits and flagged TC, so the client retries over TCP.

Local answers are cached as packed bytes keyed by the query (less its ID) and dropped whenever the
records change, so a repeated query costs a dictionary lookup. A query not in the cache that is
plain (one question, at most an OPT record: what pods' resolvers send) is read and packed by
`wire`, not dnslib (15 µs an answer rather than 50); the rest goes through dnslib.
"""
from __future__ import annotations

import asyncio
import errno
import logging
import struct

from dnslib import EDNS0, OPCODE, QTYPE, RCODE, DNSError, DNSHeader, DNSLabel, DNSQuestion, DNSRecord

from ..client.informer import SharedInformers
from . import wire
from .records import ClusterRecords, Result

log = logging.getLogger("ketch.dns")

UDP_DEFAULT_SIZE = 512
UDP_MAX_SIZE = 4096  # the largest EDNS0 buffer we honour
FORWARD_TIMEOUT = 2.0  # seconds, as CoreDNS forward's dial+read budget for one try
CACHE_LIMIT = 10_000
SYNC_TIMEOUT = 5.0  # CoreDNS starts serving unsynced after 5 s


def parse_hostport(text: str, default_port: int = 53) -> tuple[str, int]:
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        return host, int(rest.lstrip(":") or default_port)
    host, sep, port = text.rpartition(":")
    if not sep or ":" in host:
        return text, default_port
    return host, int(port)


class DNSServer:
    def __init__(self, records: ClusterRecords, *, host: str = "127.0.0.1", port: int = 53,
                 upstream: str | None = None):
        self.records = records
        self.host = host
        self.port = port
        self.upstream = parse_hostport(upstream) if upstream else None
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.base_events.Server | None = None
        self._cache: dict[bytes, bytes] = {}
        self._cache_generation = -1
        self._tasks: set[asyncio.Task] = set()

    # --- answering ------------------------------------------------------------------------------

    def local_answer(self, data: bytes, max_size: int | None) -> bytes | None:
        """The packed reply to a query the zone answers; None when it must be forwarded."""
        if self._cache_generation != self.records.generation:
            self._cache.clear()
            self._cache_generation = self.records.generation
        key = (max_size or 0).to_bytes(2, "big") + data[2:]
        cached = self._cache.get(key)
        if cached is not None:
            return data[:2] + cached
        query = wire.parse_query(data)
        if query is not None:
            # The common query: read and answered without dnslib's generic parser and packer.
            reply = None
            qname, qtype = DNSLabel(query.labels), query.qtype
            udp_size = None if query.udp_size is None else max(UDP_DEFAULT_SIZE, min(query.udp_size, UDP_MAX_SIZE))
        else:
            try:
                request = DNSRecord.parse(data)
            except (DNSError, Exception):  # noqa: BLE001 - any garbage is a format error
                return self._format_error(data)
            reply = request.reply()
            reply.header.rd = request.header.rd
            udp_size = self._edns_size(request)
            if udp_size is not None:
                reply.add_ar(EDNS0(udp_len=UDP_MAX_SIZE))
            if request.header.opcode != OPCODE.QUERY:
                reply.header.rcode = RCODE.NOTIMP
                return reply.pack()
            if len(request.questions) != 1:
                reply.header.rcode = RCODE.FORMERR
                return reply.pack()
            qname, qtype = request.q.qname, request.q.qtype
        try:
            result = self.records.resolve(qname, qtype)
        except Exception:  # noqa: BLE001 - one odd object must not take the server down
            log.exception("resolving %s %s", qname, QTYPE.get(qtype))
            result = Result(RCODE.SERVFAIL)
        aa = 1
        if result.not_ours:
            if self.upstream is not None:
                return None
            aa, result = 0, Result(RCODE.SERVFAIL)
        limit = None if max_size is None else (udp_size or max_size)
        packed = None
        if query is not None:
            packed = wire.pack_reply(query, 0x8080 | aa << 10 | query.echo | result.rcode, result.answer,
                                     result.authority, result.additional, opt=udp_size is not None)
            if packed is not None and limit is not None and len(packed) > limit:
                packed = None  # too big: dnslib's path below cuts it to fit
            if packed is None:
                reply = self._reply_record(query, qname)
        if packed is None:
            reply.header.aa = aa
            reply.header.rcode = result.rcode
            for rr in result.answer:
                reply.add_answer(rr)
            for rr in result.authority:
                reply.add_auth(rr)
            packed = self._fit(reply, result.additional, limit)
        if len(self._cache) >= CACHE_LIMIT:
            self._cache.clear()  # the names asked often come back at once
        self._cache[key] = packed[2:]
        return packed

    @staticmethod
    def _reply_record(query: wire.Query, qname: DNSLabel) -> DNSRecord:
        reply = DNSRecord(DNSHeader(id=query.ident, qr=1, aa=1, ra=1, rd=query.echo >> 8 & 1, cd=query.echo >> 4 & 1),
                          q=DNSQuestion(qname, query.qtype, query.qclass))
        if query.udp_size is not None:
            reply.add_ar(EDNS0(udp_len=UDP_MAX_SIZE))
        return reply

    @staticmethod
    def _edns_size(request: DNSRecord) -> int | None:
        for rr in request.ar:
            if rr.rtype == QTYPE.OPT:
                return max(UDP_DEFAULT_SIZE, min(int(rr.rclass), UDP_MAX_SIZE))
        return None

    @staticmethod
    def _fit(reply: DNSRecord, additional: list, max_size: int | None) -> bytes:
        """Pack, dropping additional records and then answers until it fits `max_size` (UDP);
        losing an answer sets TC."""
        opt = list(reply.ar)
        reply.ar = list(additional) + opt
        packed = reply.pack()
        if max_size is None or len(packed) <= max_size:
            return packed
        reply.ar = opt
        packed = reply.pack()
        while len(packed) > max_size and (reply.rr or reply.auth):
            reply.header.tc = 1
            if reply.rr:
                reply.rr.pop()
            else:
                reply.auth.pop()
            packed = reply.pack()
        return packed

    @staticmethod
    def _format_error(data: bytes) -> bytes | None:
        if len(data) < 12:
            return None  # not even a header: drop it
        ident, flags = struct.unpack("!HH", data[:4])
        # QR set, opcode and RD echoed, RCODE FORMERR, no sections.
        return struct.pack("!HHHHHH", ident, 0x8000 | (flags & 0x7900) | RCODE.FORMERR, 0, 0, 0, 0)

    async def forward(self, data: bytes, tcp: bool) -> bytes | None:
        host, port = self.upstream
        try:
            if tcp:
                reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), FORWARD_TIMEOUT)
                try:
                    writer.write(len(data).to_bytes(2, "big") + data)
                    size = int.from_bytes(await asyncio.wait_for(reader.readexactly(2), FORWARD_TIMEOUT), "big")
                    return await asyncio.wait_for(reader.readexactly(size), FORWARD_TIMEOUT)
                finally:
                    writer.close()
            loop = asyncio.get_running_loop()
            done: asyncio.Future = loop.create_future()

            class Once(asyncio.DatagramProtocol):
                def datagram_received(self, reply, addr):
                    if not done.done() and reply[:2] == data[:2]:
                        done.set_result(reply)

                def error_received(self, exc):  # ICMP unreachable: fail now, not at the timeout
                    if not done.done():
                        done.set_exception(exc)

            transport, _ = await loop.create_datagram_endpoint(Once, remote_addr=(host, port))
            try:
                transport.sendto(data)
                return await asyncio.wait_for(done, FORWARD_TIMEOUT)
            finally:
                transport.close()
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError) as err:
            log.debug("forward to %s:%s failed: %s", host, port, err)
            try:
                reply = DNSRecord.parse(data).reply(aa=0)
                reply.header.rcode = RCODE.SERVFAIL
                return reply.pack()
            except Exception:  # noqa: BLE001
                return None

    async def _forward_udp(self, data: bytes, addr) -> None:
        reply = await self.forward(data, tcp=False)
        if reply is not None and self._udp is not None:
            self._udp.sendto(reply, addr)

    # --- transports -----------------------------------------------------------------------------

    async def start(self, udp_sock=None, tcp_sock=None) -> None:
        """Serve on host:port, or on the sockets given (bound already, e.g. inside another network
        namespace; the TCP one listening)."""
        loop = asyncio.get_running_loop()
        server = self

        class UDP(asyncio.DatagramProtocol):
            def datagram_received(self, data, addr):
                reply = server.local_answer(data, UDP_DEFAULT_SIZE)
                if reply is not None:
                    server._udp.sendto(reply, addr)
                elif server.upstream is not None:
                    task = asyncio.ensure_future(server._forward_udp(data, addr))
                    server._tasks.add(task)
                    task.add_done_callback(server._tasks.discard)

        # UDP first: with port 0 the kernel picks one, and TCP takes the same number.
        if udp_sock is not None:
            self._udp, _ = await loop.create_datagram_endpoint(UDP, sock=udp_sock)
            self._tcp = await asyncio.start_server(self._serve_tcp, sock=tcp_sock)
            self.host, self.port = udp_sock.getsockname()[:2]
        else:
            asked = self.port
            for attempt in range(20):
                self._udp, _ = await loop.create_datagram_endpoint(UDP, local_addr=(self.host, asked))
                self.port = self._udp.get_extra_info("sockname")[1]
                try:
                    self._tcp = await asyncio.start_server(self._serve_tcp, self.host, self.port)
                    break
                except OSError as e:
                    # The kernel's free UDP port may be taken over TCP: with port 0, pick again.
                    self._udp.close()
                    if asked != 0 or e.errno != errno.EADDRINUSE or attempt == 19:
                        raise
        log.info("cluster DNS for %s on %s:%d (udp, tcp)", self.records.zone, self.host, self.port)

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                size = int.from_bytes(await asyncio.wait_for(reader.readexactly(2), 10.0), "big")
                data = await reader.readexactly(size)
                reply = self.local_answer(data, None)
                if reply is None:
                    reply = await self.forward(data, tcp=True)
                if reply is not None:
                    writer.write(len(reply).to_bytes(2, "big") + reply)
                    await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()

    async def stop(self) -> None:
        if self._udp is not None:
            self._udp.close()
            self._udp = None
        if self._tcp is not None:
            self._tcp.close()
            await self._tcp.wait_closed()
            self._tcp = None
        for task in list(self._tasks):
            task.cancel()


def feed_records(records: ClusterRecords, informers: SharedInformers) -> None:
    """Keep `records` current from the shared informers of Services, EndpointSlices and
    Namespaces."""
    for (api_version, kind), (put, remove) in {
        ("v1", "Service"): (records.set_service, records.remove_service),
        ("discovery.k8s.io/v1", "EndpointSlice"): (records.set_endpoint_slice, records.remove_endpoint_slice),
        ("v1", "Namespace"): (records.set_namespace, records.remove_namespace),
    }.items():
        informers.informer(api_version, kind).add_handlers(
            on_add=put, on_update=lambda _old, new, put=put: put(new), on_delete=remove)


class ClusterDNS:
    """The server and its feed, as one unit to start in a process that has shared informers."""

    def __init__(self, informers: SharedInformers, *, zone: str = "cluster.local", host: str = "127.0.0.1",
                 port: int = 53, upstream: str | None = None, ttl: int = 5):
        self.informers = informers
        self.records = ClusterRecords(zone, ttl)
        feed_records(self.records, informers)
        self.server = DNSServer(self.records, host=host, port=port, upstream=upstream)

    @property
    def port(self) -> int:
        return self.server.port

    async def start(self, udp_sock=None, tcp_sock=None) -> None:
        """Start the informers (idempotent when shared) and serve once they synced, or after 5 s."""
        self.informers.start()
        try:
            await asyncio.wait_for(self.informers.wait_synced(), SYNC_TIMEOUT)
        except asyncio.TimeoutError:
            log.warning("starting cluster DNS with unsynced caches")
        await self.server.start(udp_sock, tcp_sock)

    async def stop(self) -> None:
        await self.server.stop()
