"""The streaming protocols' building blocks: SPDY/3.1 framing and sessions, exec statuses, the
kubelet's query parsing, and the resource-metrics documents."""
from __future__ import annotations

import asyncio
import json
import socket
import struct

from multidict import MultiDict

from ketch.agent import resource_metrics as rm
from ketch.agent.runtime import api as rt
from ketch.agent.server import ports_from_query
from ketch.agent.streaming import remotecommand, spdy


def test_dictionary_is_the_spdy3_one():
    assert len(spdy.DICTIONARY) == 1423
    assert spdy.DICTIONARY.startswith(b"\x00\x00\x00\x07options") and spdy.DICTIONARY.endswith(b",enq=0.")


def test_header_blocks_share_one_context_per_direction():
    sender, receiver = spdy.HeaderCodec(), spdy.HeaderCodec()
    first = sender.encode({"streamType": "error", "port": "80", "requestID": "0"})
    second = sender.encode({"streamType": "data", "port": "80", "requestID": "0"})
    assert len(second) < len(first)  # the second block refers back to the first
    assert receiver.decode(first) == {"streamtype": ["error"], "port": ["80"], "requestid": ["0"]}
    assert receiver.decode(second)["streamtype"] == ["data"]
    assert spdy.HeaderCodec().decode(spdy.HeaderCodec().encode({"a": ["x", "y"]})) == {"a": ["x", "y"]}


class Client:
    """The client half of a SPDY session, enough to drive the server side."""

    def __init__(self, reader, writer):
        self.reader, self.writer, self.codec, self.inflate = reader, writer, spdy.HeaderCodec(), spdy.HeaderCodec()

    def syn(self, sid: int, headers: dict, fin: bool = False):
        payload = struct.pack(">IIBB", sid, 0, 0, 0) + self.codec.encode(headers)
        self.writer.write(spdy.control_frame(spdy.SYN_STREAM, spdy.FLAG_FIN if fin else 0, payload))

    def data(self, sid: int, data: bytes, fin: bool = False):
        self.writer.write(spdy.data_frame(sid, spdy.FLAG_FIN if fin else 0, data))

    async def frame(self):
        head = await self.reader.readexactly(8)
        word, fl = struct.unpack(">II", head)
        payload = await self.reader.readexactly(fl & 0xFFFFFF)
        if word & 0x80000000:
            if word & 0xFFFF == spdy.SYN_REPLY:
                self.inflate.decode(payload[4:])
            return ("control", word & 0xFFFF, fl >> 24, payload)
        return ("data", word & 0x7FFFFFFF, fl >> 24, payload)


def test_session_replies_echoes_pings_and_carries_data():
    async def scenario():
        a, b = socket.socketpair()
        sr, sw = await asyncio.open_connection(sock=a)
        cr, cw = await asyncio.open_connection(sock=b)
        arrived = asyncio.Queue()

        async def write(frame):
            sw.write(frame)
            await sw.drain()
        session = spdy.Session(sr, write, arrived.put_nowait)
        serving = asyncio.create_task(session.serve())
        client = Client(cr, cw)
        client.syn(1, {"streamtype": "stdin"})
        kind, ftype, _, payload = await client.frame()
        assert (kind, ftype, struct.unpack(">I", payload[:4])[0]) == ("control", spdy.SYN_REPLY, 1)
        stream = await arrived.get()
        assert stream.header("streamType") == "stdin"
        client.writer.write(spdy.control_frame(spdy.PING, 0, struct.pack(">I", 7)))
        assert await client.frame() == ("control", spdy.PING, 0, struct.pack(">I", 7))
        client.data(1, b"hello ")
        client.data(1, b"world", fin=True)
        assert await stream.read_all() == b"hello world"
        await stream.write(b"x" * 70000)  # split in frames of at most 64 KiB
        got = b""
        while len(got) < 70000:
            kind, sid, _, payload = await client.frame()
            assert (kind, sid) == ("data", 1)
            got += payload
        await stream.close()
        assert await client.frame() == ("data", 1, spdy.FLAG_FIN, b"")
        client.data(9, b"?")  # an unknown stream is reset
        kind, ftype, _, payload = await client.frame()
        assert (ftype, struct.unpack(">II", payload)) == (spdy.RST_STREAM, (9, spdy.RST_INVALID_STREAM))
        cw.close()
        await asyncio.wait_for(serving, 5)
        assert session.closed
        sw.close()
    asyncio.run(scenario())


def test_exit_statuses_as_kubectl_reads_them():
    assert remotecommand.success_status() == {"metadata": {}, "status": "Success"}
    s = remotecommand.exit_code_status(3, ["sh", "-c", "exit 3"])
    assert s["reason"] == "NonZeroExitCode" and s["details"] == {"causes": [{"reason": "ExitCode", "message": "3"}]}
    assert s["message"].startswith("command terminated with non-zero exit code: ")


def test_query_parsing():
    q = MultiDict([("command", "ls"), ("command", "-l"), ("stdin", "1"), ("stdout", "true"), ("stderr", "true"),
                   ("tty", "true")])
    opts = remotecommand.options_from_query(q)
    assert (opts.command, opts.stdin, opts.stdout, opts.stderr, opts.tty) == (["ls", "-l"], True, True, False, True)
    assert ports_from_query(MultiDict([("port", "80"), ("port", "8080")])) == [80, 8080]
    assert ports_from_query(MultiDict([("ports", "80,81")])) == [80, 81]
    for bad in ("0", "x", "70000"):
        try:
            ports_from_query(MultiDict([("ports", bad)]))
        except ValueError:
            continue
        raise AssertionError(bad)


def test_summary_and_resource_metrics_agree():
    builder = rm.SummaryBuilder()
    node = rm.NodeStats(timestamp=10 * 10**9, cpu_usage_core_nanoseconds=5 * 10**9, memory_usage_bytes=2000,
                        memory_working_set_bytes=1500, memory_rss_bytes=1000, memory_available_bytes=8000)

    def pod(ts, cpu):
        c = rt.ContainerStats(id="c1", timestamp=ts, cpu_usage_core_nanoseconds=cpu, memory_working_set_bytes=300,
                              memory_usage_bytes=400, writable_layer_bytes=50)
        s = rt.PodSandboxStats(id="s1", timestamp=ts, cpu_usage_core_nanoseconds=cpu, memory_working_set_bytes=300,
                               network_rx_bytes=11, network_tx_bytes=22, containers=[c])
        return rm.PodEntry("web", "default", "uid-1", 10**9, s, [rm.ContainerEntry("app", 2 * 10**9, c, log_bytes=7)],
                           [{"name": "data", "usedBytes": 3}])
    first = builder.build("n1", 0, node, [pod(10 * 10**9, 10**9)])
    assert "usageNanoCores" not in first["pods"][0]["cpu"]     # a rate needs two reads
    node.timestamp, node.cpu_usage_core_nanoseconds = 12 * 10**9, 6 * 10**9
    doc = builder.build("n1", 0, node, [pod(12 * 10**9, 2 * 10**9)])
    p = doc["pods"][0]
    assert p["podRef"] == {"name": "web", "namespace": "default", "uid": "uid-1"}
    assert p["cpu"]["usageNanoCores"] == 500_000_000 and doc["node"]["cpu"]["usageNanoCores"] == 500_000_000
    assert p["network"]["rxBytes"] == 11 and p["network"]["interfaces"][0]["name"] == "eth0"
    assert p["ephemeral-storage"]["usedBytes"] == 50 + 7 + 3
    assert p["containers"][0]["memory"]["workingSetBytes"] == 300
    json.dumps(doc)
    text = rm.render_summary(doc, now=12.0)
    assert 'container_cpu_usage_seconds_total{container="app",namespace="default",pod="web"} 2 12000' in text
    assert "node_memory_working_set_bytes 1500 12000" in text
    assert 'container_start_time_seconds{container="app",namespace="default",pod="web"} 2 2000' in text
