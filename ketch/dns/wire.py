"""The DNS wire format for the server's hot path: reading a plain query and packing a reply.

dnslib's generic parser and packer cost about 40 µs a reply (per-field descriptors, a buffer
object, a label object per name); these do the same for the messages the cluster zone answers
in a few µs. Output is byte for byte what dnslib packs (same name compression, SRV targets left
uncompressed as RFC 2782 asks), so either path gives the same answer; anything unusual — other
opcodes, several questions, compressed query names, record types not listed here — returns None
and the caller falls back to dnslib.
"""
from __future__ import annotations

import struct


_HEADER = struct.Struct("!HHHHHH")
_RR_FIXED = struct.Struct("!HHIH")  # type, class, TTL, RDLENGTH
_SRV_FIXED = struct.Struct("!HHH")
_SOA_TIMES = struct.Struct("!IIIII")
# dnslib's QTYPE values as plain ints: its Bimap costs a method call per lookup.
A, NS, CNAME, SOA, PTR, AAAA, SRV, OPT = 1, 2, 5, 6, 12, 28, 33, 41
OPT_4096 = b"\x00\x00\x29\x10\x00\x00\x00\x00\x00\x00\x00"  # root, OPT, 4096-byte buffer, no options


class Query:
    """A standard query with one question and at most one OPT record, as pods' resolvers send."""
    __slots__ = ("ident", "echo", "question", "labels", "qtype", "qclass", "udp_size")

    def __init__(self, ident, echo, question, labels, qtype, qclass, udp_size):
        self.ident, self.question, self.labels = ident, question, labels
        self.echo = echo  # the header bits a reply copies: RD and CD
        self.qtype, self.qclass, self.udp_size = qtype, qclass, udp_size


def parse_query(data: bytes) -> Query | None:
    """The query in `data`, or None for anything else (dnslib's full parser reads those)."""
    if len(data) < 17:
        return None
    ident, flags, qd, an, ns, ar = _HEADER.unpack_from(data)
    if flags & 0xF800 or qd != 1 or an or ns or ar > 1:  # QR or an opcode set, or more sections
        return None
    labels, pos, end = [], 12, len(data)
    while True:
        length = data[pos]
        if length == 0:
            break
        if length > 63 or pos + 2 + length > end:  # a pointer, or past the end
            return None
        labels.append(data[pos + 1:pos + 1 + length])
        pos += 1 + length
    qend = pos + 5
    if qend > end:
        return None
    qtype, qclass = struct.unpack_from("!HH", data, pos + 1)
    udp_size = None
    if ar:
        # One OPT record (EDNS0, version 0): root name, type 41, class = the client's buffer.
        if qend + 11 > end or data[qend] != 0:
            return None
        rtype, rclass, ttl, rdlength = _RR_FIXED.unpack_from(data, qend + 1)
        if rtype != OPT or (ttl >> 16) & 0xFF or qend + 11 + rdlength != end:
            return None
        udp_size = rclass
    elif qend != end:
        return None
    return Query(ident, flags & 0x0110, bytes(data[12:qend]), tuple(bytes(x) for x in labels),
                 qtype, qclass, udp_size)


class _Packer:
    """Names compressed against earlier ones, keyed by their labels as written (as dnslib)."""
    __slots__ = ("out", "names")

    def __init__(self, head: bytes, labels: tuple[bytes, ...]):
        self.out = bytearray(head)
        self.names: dict[tuple[bytes, ...], int] = {}
        offset = 12
        for i in range(len(labels)):
            self.names[labels[i:]] = offset
            offset += 1 + len(labels[i])

    def name(self, labels: tuple[bytes, ...], compress: bool = True) -> None:
        out, names = self.out, self.names
        for i in range(len(labels)):
            if compress:
                suffix = labels[i:]
                pointer = names.get(suffix)
                if pointer is not None:
                    out += (0xC000 | pointer).to_bytes(2, "big")
                    return
                if len(out) < 0x4000:
                    names[suffix] = len(out)
            label = labels[i]
            if len(label) > 63:
                raise ValueError("label too long")
            out.append(len(label))
            out += label
        out.append(0)

    def rr(self, rr) -> bool:
        self.name(rr.rname.label)
        out = self.out
        rtype, rdata = rr.rtype, rr.rdata
        start = len(out)
        out += _RR_FIXED.pack(rtype, rr.rclass, rr.ttl, 0)
        if rtype == A or rtype == AAAA:
            out += bytes(rdata.data)  # 4 or 16 ints
        elif rtype == CNAME or rtype == PTR or rtype == NS:
            self.name(rdata.label.label)
        elif rtype == SRV:
            out += _SRV_FIXED.pack(rdata.priority, rdata.weight, rdata.port)
            self.name(rdata.target.label, compress=False)
        elif rtype == SOA:
            self.name(rdata.mname.label)
            self.name(rdata.rname.label)
            out += _SOA_TIMES.pack(*rdata.times)
        else:
            return False
        struct.pack_into("!H", out, start + 8, len(out) - start - 10)
        return True


def pack_reply(query: Query, flags: int, answer=(), authority=(), additional=(), opt: bool = False) -> bytes | None:
    """The reply to `query` with header `flags` (QR, AA, RD, RA, RCODE...) and these sections
    (dnslib RRs); an OPT record last when `opt`. None when a record type is not one packed here."""
    head = _HEADER.pack(query.ident, flags, 1, len(answer), len(authority), len(additional) + opt) + query.question
    packer = _Packer(head, query.labels)
    try:
        for section in (answer, authority, additional):
            for rr in section:
                if not packer.rr(rr):
                    return None
    except (ValueError, AttributeError, TypeError, struct.error):
        return None
    if opt:
        packer.out += OPT_4096
    return bytes(packer.out)
