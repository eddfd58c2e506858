"""The cluster zone's records from the book's Services, as CoreDNS's kubernetes plugin answers."""
from __future__ import annotations

import ipaddress

import pytest
from dnslib import QTYPE, RCODE

from ketch.dns.records import ClusterRecords

Z = "cluster.local"


def service(name, ns="default", cluster_ip="10.43.0.20", ports=None, **spec):
    spec = {"clusterIP": cluster_ip, "ports": ports or [{"port": 80, "protocol": "TCP"}], **spec}
    if cluster_ip and cluster_ip != "None":
        spec["clusterIPs"] = [cluster_ip]
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns}, "spec": spec}


def endpoint_slice(service_name, endpoints, ns="default", ports=None, name=None):
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
            "metadata": {"name": name or f"{service_name}-abcde", "namespace": ns,
                         "labels": {"kubernetes.io/service-name": service_name}},
            "endpoints": endpoints, "ports": ports if ports is not None else [{"port": 8080, "protocol": "TCP", "name": ""}]}


def ep(ip, ready=True, hostname=None):
    out = {"addresses": [ip], "conditions": {"ready": ready}}
    if hostname:
        out["hostname"] = hostname
    return out


@pytest.fixture
def zone():
    z = ClusterRecords(Z)
    for ns in ("default", "kube-system", "test"):
        z.set_namespace({"metadata": {"name": ns}})
    z.set_service(service("node-js", cluster_ip="10.43.0.20",
                          ports=[{"name": "http", "port": 80, "protocol": "TCP"},
                                 {"name": "https", "port": 443, "protocol": "TCP"}]))
    z.set_endpoint_slice(endpoint_slice("node-js", [ep("10.42.0.5")]))
    z.set_service(service("node-js-none", cluster_ip="None", ports=[{"name": "http", "port": 80, "protocol": "TCP"}]))
    z.set_endpoint_slice(endpoint_slice("node-js-none", [ep("10.42.0.5"), ep("10.42.1.6"), ep("10.42.2.7"),
                                                         ep("10.42.2.8", ready=False)],
                                        ports=[{"name": "http", "port": 80, "protocol": "TCP"}]))
    z.set_service(service("sayhey-svc", cluster_ip="None"))
    z.set_endpoint_slice(endpoint_slice("sayhey-svc", [ep("10.42.1.10", hostname="whaleset-0"),
                                                       ep("10.42.2.11", hostname="whaleset-1")]))
    z.set_service(service("external", cluster_ip="", ports=[], type="ExternalName", externalName="api.example.com"))
    z.set_service(service("kube-dns", ns="kube-system", cluster_ip="10.43.0.10",
                          ports=[{"name": "dns", "port": 53, "protocol": "UDP"}]))
    return z


def rdatas(result, rtype=None):
    return sorted(str(rr.rdata) for rr in result.answer if rtype is None or rr.rtype == rtype)


def test_cluster_ip_service_answers_its_cluster_ip(zone):
    r = zone.resolve("node-js.default.svc.cluster.local.", QTYPE.A)
    assert r.rcode == RCODE.NOERROR and rdatas(r) == ["10.43.0.20"]
    assert r.answer[0].ttl == 5 and str(r.answer[0].rname) == "node-js.default.svc.cluster.local."


def test_legacy_form_from_the_book_answers_too(zone):
    r = zone.resolve("node-js.default.cluster.local", QTYPE.A)
    assert rdatas(r) == ["10.43.0.20"]
    assert str(r.answer[0].rname) == "node-js.default.cluster.local."


def test_case_is_kept_and_matching_ignores_it(zone):
    r = zone.resolve("Node-JS.Default.SVC.cluster.local.", QTYPE.A)
    assert rdatas(r) == ["10.43.0.20"] and str(r.answer[0].rname) == "Node-JS.Default.SVC.cluster.local."


def test_headless_service_answers_every_ready_endpoint(zone):
    r = zone.resolve("node-js-none.default.svc.cluster.local", QTYPE.A)
    assert rdatas(r) == ["10.42.0.5", "10.42.1.6", "10.42.2.7"]


def test_headless_endpoints_have_names_of_their_own(zone):
    assert rdatas(zone.resolve("10-42-1-6.node-js-none.default.svc.cluster.local", QTYPE.A)) == ["10.42.1.6"]
    r = zone.resolve("whaleset-1.sayhey-svc.default.svc.cluster.local", QTYPE.A)
    assert rdatas(r) == ["10.42.2.11"]
    assert zone.resolve("whaleset-7.sayhey-svc.default.svc.cluster.local", QTYPE.A).rcode == RCODE.NXDOMAIN


def test_srv_for_a_named_port_of_a_cluster_ip_service(zone):
    r = zone.resolve("_http._tcp.node-js.default.svc.cluster.local", QTYPE.SRV)
    assert rdatas(r) == ["0 100 80 node-js.default.svc.cluster.local."]
    assert [(str(rr.rname), str(rr.rdata)) for rr in r.additional] == [("node-js.default.svc.cluster.local.", "10.43.0.20")]
    # Without a port every port is listed, the weight split between them.
    both = zone.resolve("node-js.default.svc.cluster.local", QTYPE.SRV)
    assert rdatas(both) == ["0 50 443 node-js.default.svc.cluster.local.", "0 50 80 node-js.default.svc.cluster.local."]
    assert zone.resolve("_dns._udp.kube-dns.kube-system.svc.cluster.local", QTYPE.SRV).answer[0].rdata.port == 53
    assert zone.resolve("_nope._tcp.node-js.default.svc.cluster.local", QTYPE.SRV).rcode == RCODE.NXDOMAIN


def test_srv_of_a_headless_service_points_at_each_endpoint(zone):
    r = zone.resolve("_http._tcp.node-js-none.default.svc.cluster.local", QTYPE.SRV)
    assert rdatas(r) == [f"0 33 80 10-42-{x}.node-js-none.default.svc.cluster.local."
                         for x in ("0-5", "1-6", "2-7")]
    assert sorted(str(rr.rdata) for rr in r.additional) == ["10.42.0.5", "10.42.1.6", "10.42.2.7"]


def test_external_name_is_a_cname(zone):
    r = zone.resolve("external.default.svc.cluster.local", QTYPE.A)
    assert [(rr.rtype, str(rr.rdata)) for rr in r.answer] == [(QTYPE.CNAME, "api.example.com.")]
    assert rdatas(zone.resolve("external.default.svc.cluster.local", QTYPE.CNAME)) == ["api.example.com."]
    assert rdatas(zone.resolve("external.default.svc.cluster.local", QTYPE.SRV)) == ["0 100 0 api.example.com."]


def test_nxdomain_and_nodata_carry_the_soa(zone):
    nx = zone.resolve("nope.default.svc.cluster.local", QTYPE.A)
    assert nx.rcode == RCODE.NXDOMAIN and not nx.answer
    soa = nx.authority[0]
    assert soa.rtype == QTYPE.SOA and str(soa.rname) == "cluster.local." and soa.ttl == 5
    assert str(soa.rdata.mname) == "ns.dns.cluster.local." and str(soa.rdata.rname) == "hostmaster.cluster.local."
    assert soa.rdata.times[1:] == (7200, 1800, 86400, 5)
    # The name exists, but not with an IPv6 address: NODATA.
    nodata = zone.resolve("node-js.default.svc.cluster.local", QTYPE.AAAA)
    assert nodata.rcode == RCODE.NOERROR and not nodata.answer and nodata.authority[0].rtype == QTYPE.SOA
    for name in ("default.svc.cluster.local", "svc.cluster.local", "cluster.local"):
        r = zone.resolve(name, QTYPE.A)
        assert r.rcode == RCODE.NOERROR and not r.answer, name
    for name in ("node-js.nosuchns.svc.cluster.local", "nosuchns.svc.cluster.local",
                 "a.b.c.cluster.local", "x.default.nope.cluster.local"):
        assert zone.resolve(name, QTYPE.A).rcode == RCODE.NXDOMAIN, name


def test_pod_records_spell_the_address(zone):
    assert rdatas(zone.resolve("10-42-0-5.default.pod.cluster.local", QTYPE.A)) == ["10.42.0.5"]
    assert rdatas(zone.resolve("fd00--5.default.pod.cluster.local", QTYPE.AAAA)) == ["fd00::5"]
    assert zone.resolve("not-an-ip.default.pod.cluster.local", QTYPE.A).rcode == RCODE.NXDOMAIN
    assert zone.resolve("10-42-0-5.nosuchns.pod.cluster.local", QTYPE.A).rcode == RCODE.NXDOMAIN


def test_ptr_for_cluster_ips_and_endpoints(zone):
    assert rdatas(zone.resolve("20.0.43.10.in-addr.arpa", QTYPE.PTR)) == ["node-js.default.svc.cluster.local."]
    assert rdatas(zone.resolve("11.2.42.10.in-addr.arpa", QTYPE.PTR)) == ["whaleset-1.sayhey-svc.default.svc.cluster.local."]
    # An address nobody has falls through to the next plugin (forward, or SERVFAIL).
    assert zone.resolve("99.99.99.10.in-addr.arpa", QTYPE.PTR).not_ours


def test_names_outside_the_zone_are_not_ours(zone):
    assert zone.resolve("example.com", QTYPE.A).not_ours
    assert zone.resolve("cluster.local.example.com", QTYPE.A).not_ours


def test_zone_apex_soa_ns_and_the_dns_service(zone):
    assert zone.resolve("cluster.local", QTYPE.SOA).answer[0].rtype == QTYPE.SOA
    ns = zone.resolve("cluster.local", QTYPE.NS)
    assert rdatas(ns) == ["ns.dns.cluster.local."] and [str(rr.rdata) for rr in ns.additional] == ["10.43.0.10"]
    assert rdatas(zone.resolve("ns.dns.cluster.local", QTYPE.A)) == ["10.43.0.10"]


def test_updates_change_the_answers(zone):
    gen = zone.generation
    zone.set_endpoint_slice(endpoint_slice("node-js-none", [ep("10.42.0.5")],
                                           ports=[{"name": "http", "port": 80, "protocol": "TCP"}]))
    assert zone.generation > gen
    assert rdatas(zone.resolve("node-js-none.default.svc.cluster.local", QTYPE.A)) == ["10.42.0.5"]
    zone.remove_service(service("node-js"))
    assert zone.resolve("node-js.default.svc.cluster.local", QTYPE.A).rcode == RCODE.NXDOMAIN
    zone.remove_endpoint_slice(endpoint_slice("node-js-none", []))
    # A headless Service without endpoints has no records at all: NXDOMAIN, as CoreDNS.
    assert zone.resolve("node-js-none.default.svc.cluster.local", QTYPE.A).rcode == RCODE.NXDOMAIN


def test_dual_stack_service_answers_aaaa():
    z = ClusterRecords(Z, track_namespaces=False)
    svc = service("web", cluster_ip="10.43.0.30")
    svc["spec"]["clusterIPs"] = ["10.43.0.30", "fd00:43::30"]
    z.set_service(svc)
    assert rdatas(z.resolve("web.default.svc.cluster.local", QTYPE.AAAA)) == ["fd00:43::30"]
    assert rdatas(z.resolve("web.default.svc.cluster.local", QTYPE.A)) == ["10.43.0.30"]
    ptr = ipaddress.ip_address("fd00:43::30").reverse_pointer
    assert rdatas(z.resolve(ptr, QTYPE.PTR)) == ["web.default.svc.cluster.local."]


def test_wire_answers_of_the_server(zone, monkeypatch):
    from dnslib import DNSRecord, EDNS0

    from ketch.dns import server as dns_server
    from ketch.dns import wire
    zone.set_service(service("dual", cluster_ip="10.43.0.30", clusterIPs=["10.43.0.30", "fd00:43::30"]))
    srv = dns_server.DNSServer(zone)
    cases = [("node-js.default.svc.cluster.local", "A"), ("_http._tcp.node-js-none.default.svc.cluster.local", "SRV"),
             ("_http._tcp.node-js.default.svc.cluster.local", "SRV"), ("nope.default.svc.cluster.local", "A"),
             ("Node-JS.default.svc.cluster.local", "AAAA"), ("dual.default.svc.cluster.local", "AAAA"),
             ("external.default.svc.cluster.local", "A"), ("20.0.43.10.in-addr.arpa", "PTR"),
             ("cluster.local", "SOA"), ("cluster.local", "NS"), ("whaleset-0.sayhey-svc.default.svc.cluster.local", "A"),
             ("node-js-none.default.svc.cluster.local", "TXT"), ("example.com", "A")]
    queries = [DNSRecord.question(name, qtype) for name, qtype in cases]
    for q in queries[:4]:
        q = DNSRecord.parse(q.pack())
        q.add_ar(EDNS0(udp_len=1232))
        queries.append(q)
    cd = DNSRecord.question("node-js.default.svc.cluster.local")
    cd.header.cd = 1
    queries.append(cd)
    for q in queries:
        query = bytes(q.pack())
        fast = srv.local_answer(query, 512)
        srv._cache.clear()
        with monkeypatch.context() as m:  # the same bytes through dnslib's parser and packer
            m.setattr(wire, "parse_query", lambda data: None)
            assert srv.local_answer(query, 512) == fast, q
        srv._cache.clear()
        assert srv.local_answer(query, 512) == fast  # and from the cache
        reply = DNSRecord.parse(fast)
        assert reply.header.id == q.header.id and reply.header.rd and reply.header.cd == q.header.cd
        assert reply.header.aa == (str(q.q.qname) != "example.com.")
    garbage = srv.local_answer(b"\x12\x34\x01\x00" + b"\x00" * 8 + b"\xff", 512)
    assert DNSRecord.parse(garbage).header.rcode == RCODE.FORMERR
    notify = DNSRecord.question("cluster.local", "SOA")
    notify.header.opcode = 4
    assert DNSRecord.parse(srv.local_answer(bytes(notify.pack()), 512)).header.rcode == RCODE.NOTIMP
    assert DNSRecord.parse(srv.local_answer(bytes(DNSRecord.question("example.com").pack()), 512)).header.rcode == RCODE.SERVFAIL
    edns = DNSRecord.question("node-js-none.default.svc.cluster.local")
    edns.add_ar(EDNS0(udp_len=1232))
    assert any(rr.rtype == QTYPE.OPT for rr in DNSRecord.parse(srv.local_answer(bytes(edns.pack()), 512)).ar)


def test_a_reply_too_big_for_udp_is_cut_and_flagged(zone):
    from dnslib import DNSRecord

    from ketch.dns.server import DNSServer
    zone.set_service(service("big", cluster_ip="None"))
    zone.set_endpoint_slice(endpoint_slice("big", [ep(f"10.42.3.{i}") for i in range(1, 61)]))
    srv = DNSServer(zone)
    query = bytes(DNSRecord.question("big.default.svc.cluster.local").pack())
    udp, tcp = DNSRecord.parse(srv.local_answer(query, 512)), DNSRecord.parse(srv.local_answer(query, None))
    assert udp.header.tc and 0 < len(udp.rr) < 60
    assert not tcp.header.tc and len(tcp.rr) == 60


def test_without_a_namespace_feed_a_namespace_exists_while_it_has_a_service():
    z = ClusterRecords(Z, track_namespaces=False)
    svc = service("web", ns="shop")
    z.set_service(svc)
    z.set_service(svc)  # an update counts once
    assert z.resolve("shop.svc.cluster.local", QTYPE.A).rcode == RCODE.NOERROR  # NODATA
    assert z.resolve("nope.shop.svc.cluster.local", QTYPE.A).rcode == RCODE.NXDOMAIN
    z.remove_service(svc)
    assert z.resolve("shop.svc.cluster.local", QTYPE.A).rcode == RCODE.NXDOMAIN
