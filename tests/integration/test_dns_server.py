"""The cluster DNS server on loopback, fed by informers of a real ketch API server, queried over UDP
and TCP with dnslib as a client would."""
from __future__ import annotations

import asyncio
import time

import pytest
from dnslib import EDNS0, QTYPE, RCODE, DNSRecord

from helpers.cluster import unique
from helpers.http import Api
from ketch.client import kubeconfig
from ketch.client.informer import SharedInformers
from ketch.client.rest import Client
from ketch.dns.records import ClusterRecords
from ketch.dns.server import ClusterDNS, DNSServer


@pytest.fixture(scope="module")
def api(server):
    return Api(server.kubeconfig)


@pytest.fixture
def ns(api):
    name = unique("dns")
    status, body, _ = api.request("POST", "/api/v1/namespaces", {"metadata": {"name": name}})
    assert status == 201, body
    yield name
    api.request("DELETE", f"/api/v1/namespaces/{name}")


@pytest.fixture
async def dns(server):
    client = Client(kubeconfig.load(server.kubeconfig), user_agent="ketch-dns-test")
    informers = SharedInformers(client)
    cluster_dns = ClusterDNS(informers, host="127.0.0.1", port=0)
    await cluster_dns.start()
    try:
        yield cluster_dns
    finally:
        await cluster_dns.stop()
        await informers.stop()
        await client.close()


async def query(port: int, name: str, qtype: str = "A", tcp: bool = False) -> DNSRecord:
    raw = await asyncio.to_thread(DNSRecord.question(name, qtype).send, "127.0.0.1", port, tcp=tcp, timeout=2)
    return DNSRecord.parse(raw)


async def answers(port: int, name: str, qtype: str = "A", tcp: bool = False) -> list[str]:
    return sorted(str(rr.rdata) for rr in (await query(port, name, qtype, tcp)).rr)


async def eventually(fn, expected, timeout: float = 1.0):
    """`await fn()` until it returns `expected`, within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        got = await fn()
        if got == expected or time.monotonic() > deadline:
            assert got == expected
            return
        await asyncio.sleep(0.05)


def create(api, ns, path, body):
    status, obj, _ = api.request("POST", f"/apis/discovery.k8s.io/v1/namespaces/{ns}/{path}" if path == "endpointslices"
                                 else f"/api/v1/namespaces/{ns}/{path}", body)
    assert status == 201, obj
    return obj


def headless_slice(name, ips, hostnames=None):
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
            "metadata": {"name": f"{name}-1", "labels": {"kubernetes.io/service-name": name}},
            "ports": [{"name": "http", "port": 80, "protocol": "TCP"}],
            "endpoints": [{"addresses": [ip], "conditions": {"ready": True},
                           **({"hostname": hostnames[i]} if hostnames else {})} for i, ip in enumerate(ips)]}


async def test_services_answer_over_udp_and_tcp_and_follow_updates(api, ns, dns):
    svc = create(api, ns, "services", {"metadata": {"name": "node-js"},
                                        "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]}})
    cluster_ip = svc["spec"]["clusterIP"]
    name = f"node-js.{ns}.svc.cluster.local"
    await eventually(lambda: answers(dns.port, name), [cluster_ip])
    assert await answers(dns.port, name, tcp=True) == [cluster_ip]
    assert await answers(dns.port, f"node-js.{ns}.cluster.local") == [cluster_ip]  # the book's form
    srv = await query(dns.port, f"_http._tcp.{name}", "SRV")
    assert [str(rr.rdata) for rr in srv.rr] == [f"0 100 80 {name}."]
    assert srv.rr[0].ttl == 5

    create(api, ns, "services", {"metadata": {"name": "sayhey-svc"},
                                 "spec": {"clusterIP": "None", "ports": [{"name": "http", "port": 80}]}})
    create(api, ns, "endpointslices", headless_slice("sayhey-svc", ["10.42.1.10", "10.42.2.11"],
                                                     ["whaleset-0", "whaleset-1"]))
    await eventually(lambda: answers(dns.port, f"whaleset-1.sayhey-svc.{ns}.svc.cluster.local"), ["10.42.2.11"])
    assert await answers(dns.port, f"sayhey-svc.{ns}.svc.cluster.local") == ["10.42.1.10", "10.42.2.11"]

    # An update shows within a second.
    grown = headless_slice("sayhey-svc", ["10.42.1.10", "10.42.2.11", "10.42.0.12"],
                           ["whaleset-0", "whaleset-1", "whaleset-2"])
    status, body, _ = api.request("PATCH", f"/apis/discovery.k8s.io/v1/namespaces/{ns}/endpointslices/sayhey-svc-1",
                                  {"endpoints": grown["endpoints"]}, content_type="application/merge-patch+json")
    assert status == 200, body
    await eventually(lambda: answers(dns.port, f"sayhey-svc.{ns}.svc.cluster.local"),
                     ["10.42.0.12", "10.42.1.10", "10.42.2.11"])
    api.request("DELETE", f"/api/v1/namespaces/{ns}/services/node-js")
    await eventually(lambda: _rcode(dns.port, name), RCODE.NXDOMAIN)


async def _rcode(port, name, qtype="A"):
    return (await query(port, name, qtype)).header.rcode


async def test_nxdomain_nodata_and_names_outside_the_zone(api, ns, dns):
    create(api, ns, "services", {"metadata": {"name": "web"}, "spec": {"ports": [{"port": 80}]}})
    name = f"web.{ns}.svc.cluster.local"
    await eventually(lambda: _rcode(dns.port, name), RCODE.NOERROR)
    nodata = await query(dns.port, name, "AAAA")
    assert nodata.header.rcode == RCODE.NOERROR and not nodata.rr
    assert nodata.auth[0].rtype == QTYPE.SOA and str(nodata.auth[0].rdata.mname) == "ns.dns.cluster.local."
    nx = await query(dns.port, f"nope.{ns}.svc.cluster.local")
    assert nx.header.rcode == RCODE.NXDOMAIN and nx.header.aa and nx.auth[0].rtype == QTYPE.SOA
    # No upstream given: what CoreDNS without `forward` answers.
    assert await _rcode(dns.port, "example.com") == RCODE.SERVFAIL


async def test_big_answers_truncate_over_udp_and_come_whole_over_tcp(api, ns, dns):
    ips = [f"10.42.3.{i}" for i in range(1, 61)]
    create(api, ns, "services", {"metadata": {"name": "many"},
                                 "spec": {"clusterIP": "None", "ports": [{"name": "http", "port": 80}]}})
    create(api, ns, "endpointslices", headless_slice("many", ips))
    name = f"many.{ns}.svc.cluster.local"
    await eventually(lambda: _tcp_count(dns.port, name), 60)
    udp = await query(dns.port, name)
    assert udp.header.tc == 1 and 0 < len(udp.rr) < 60 and len(udp.pack()) <= 512


async def _tcp_count(port, name):
    return len((await query(port, name, tcp=True)).rr)


async def test_edns_buffer_lets_a_bigger_answer_through_udp(api, ns, dns):
    ips = [f"10.42.4.{i}" for i in range(1, 61)]
    create(api, ns, "services", {"metadata": {"name": "wide"},
                                 "spec": {"clusterIP": "None", "ports": [{"name": "http", "port": 80}]}})
    create(api, ns, "endpointslices", headless_slice("wide", ips))
    name = f"wide.{ns}.svc.cluster.local"
    await eventually(lambda: _tcp_count(dns.port, name), 60)
    q = DNSRecord.question(name)
    q.add_ar(EDNS0(udp_len=4096))
    reply = DNSRecord.parse(await asyncio.to_thread(q.send, "127.0.0.1", dns.port, timeout=2))
    assert reply.header.tc == 0 and len(reply.rr) == 60
    assert any(rr.rtype == QTYPE.OPT for rr in reply.ar)


async def test_names_outside_the_zone_go_to_the_given_upstream():
    # The upstream is another DNSServer, authoritative for a zone of its own.
    other = ClusterRecords("example.test", track_namespaces=False)
    other.set_service({"metadata": {"name": "web", "namespace": "prod"},
                       "spec": {"clusterIP": "192.0.2.7", "clusterIPs": ["192.0.2.7"], "ports": [{"port": 80}]}})
    upstream = DNSServer(other, host="127.0.0.1", port=0)
    await upstream.start()
    cluster = DNSServer(ClusterRecords(), host="127.0.0.1", port=0, upstream=f"127.0.0.1:{upstream.port}")
    await cluster.start()
    try:
        for tcp in (False, True):
            assert await answers(cluster.port, "web.prod.svc.example.test", tcp=tcp) == ["192.0.2.7"]
            assert await _rcode(cluster.port, "nope.prod.svc.example.test") == RCODE.NXDOMAIN
        await upstream.stop()
        # A dead upstream: SERVFAIL, as CoreDNS forward with no healthy upstream.
        assert await _rcode(cluster.port, "web.prod.svc.example.test") == RCODE.SERVFAIL
    finally:
        await cluster.stop()
        await upstream.stop()
