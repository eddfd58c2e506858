"""Cluster DNS as pods see it, on two nodes (`ketch server --nodes 2`): every agent serves DNS behind
kube-dns (10.43.0.10), and pods ask through their resolv.conf — busybox `nslookup`, glibc's
resolver (search path and all) and a raw-query client in the python image.

Nothing leaves the machine: without an upstream, names outside the cluster are SERVFAIL at once;
with `--dns-upstream` they go to a DNS server this test runs on 127.0.0.x in the root namespace
(the agents forward from there)."""
from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from dnslib import QTYPE, RCODE, RR, A
from dnslib.server import BaseResolver, DNSServer

from helpers.agent import start_agent_cluster
from helpers.cluster import wait_for

pytestmark = pytest.mark.skipif(not Path("/usr/bin/runc").exists(), reason="needs runc")

NS = "dnstest"

MANIFESTS = """
apiVersion: v1
kind: Namespace
metadata: {name: dnstest}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: dnstest}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 80, protocol: TCP}]
---
apiVersion: v1
kind: Service
metadata: {name: web-headless, namespace: dnstest}
spec:
  clusterIP: None
  selector: {app: web}
  ports: [{name: http, port: 80, protocol: TCP}]
---
apiVersion: v1
kind: Service
metadata: {name: docs, namespace: dnstest}
spec: {type: ExternalName, externalName: docs.example.com}
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: web, namespace: dnstest}
spec:
  serviceName: web-headless
  replicas: 2
  selector: {matchLabels: {app: web, member: sts}}
  template:
    metadata: {labels: {app: web, member: sts}}
    spec:
      terminationGracePeriodSeconds: 0
      containers:
      - {name: httpd, image: busybox:latest, command: [httpd, -f, -p, "80"]}
---
apiVersion: v1
kind: Pod
metadata: {name: never-ready, namespace: dnstest, labels: {app: web}}
spec:
  terminationGracePeriodSeconds: 0
  containers:
  - name: httpd
    image: busybox:latest
    command: [httpd, -f, -p, "80"]
    readinessProbe: {exec: {command: ["false"]}, periodSeconds: 1}
---
apiVersion: v1
kind: Pod
metadata: {name: asker, namespace: dnstest}
spec:
  nodeName: %(node)s
  terminationGracePeriodSeconds: 0
  containers:
  - {name: py, image: python:latest, command: [python, -c, "import time; time.sleep(3600)"]}
---
apiVersion: v1
kind: Pod
metadata: {name: bb, namespace: dnstest}
spec:
  nodeName: %(node)s
  terminationGracePeriodSeconds: 0
  containers:
  - {name: bb, image: busybox:latest, command: [sleep, "3600"]}
"""

# A DNS client in the standard library: each (name, type) asked once of the pod's nameserver over
# UDP; prints [rcode, [[type, data]...], ms] per question ("lookup" questions go through glibc's
# getaddrinfo instead, search path and all: [0, [addresses], ms] or [error, [], ms]).
ASK = r"""
import json, random, socket, struct, sys, time
server = next(l.split()[1] for l in open("/etc/resolv.conf") if l.startswith("nameserver"))
TYPES = {"A": 1, "CNAME": 5, "PTR": 12, "AAAA": 28, "SRV": 33}
NAMES = {v: k for k, v in TYPES.items()}

def name(msg, pos):
    labels, end = [], None
    while msg[pos]:
        if msg[pos] >= 0xC0:
            end = end or pos + 2
            pos = struct.unpack_from("!H", msg, pos)[0] & 0x3FFF
            continue
        labels.append(msg[pos + 1:pos + 1 + msg[pos]].decode())
        pos += 1 + msg[pos]
    return ".".join(labels) + ".", end or pos + 1

def ask(qname, qtype):
    ident = random.randrange(65536)
    q = struct.pack("!HHHHHH", ident, 0x0100, 1, 0, 0, 0)
    q += b"".join(bytes([len(l)]) + l.encode() for l in qname.rstrip(".").split(".")) + b"\0"
    q += struct.pack("!HH", TYPES[qtype], 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(3)
    s.sendto(q, (server, 53))
    msg = s.recv(4096)
    _, flags, qd, an, _, _ = struct.unpack_from("!HHHHHH", msg)
    pos = name(msg, 12)[1] + 4
    out = []
    for _ in range(an):
        _, pos = name(msg, pos)
        rtype, _, _, size = struct.unpack_from("!HHIH", msg, pos)
        pos += 10
        if rtype == 1:
            data = socket.inet_ntoa(msg[pos:pos + 4])
        elif rtype == 33:
            data = "%d %d %d %s" % (*struct.unpack_from("!HHH", msg, pos), name(msg, pos + 6)[0])
        elif rtype in (5, 12):
            data = name(msg, pos)[0]
        else:
            data = msg[pos:pos + size].hex()
        out.append([NAMES.get(rtype, str(rtype)), data])
        pos += size
    return flags & 0xF, sorted(out)

results = []
for qname, qtype in json.loads(sys.argv[1]):
    t = time.monotonic()
    if qtype == "lookup":
        try:
            got = 0, sorted({a[4][0] for a in socket.getaddrinfo(qname, 80, socket.AF_INET, socket.SOCK_STREAM)})
        except socket.gaierror as e:
            got = e.errno, []
    else:
        got = ask(qname, qtype)
    results.append([*got, round((time.monotonic() - t) * 1000)])
print(json.dumps(results))
"""


def ask(cluster, *questions: tuple[str, str], pod: str = "asker") -> list[list]:
    got = cluster.kubectl("exec", pod, "-n", NS, "--", "python", "-c", ASK, json.dumps(questions), check=False)
    assert got.returncode == 0, got.stderr
    return json.loads(got.stdout)


def ask_until_answered(cluster) -> bool:
    """Whether the asker's nameserver answers yet (the kube-dns rules may come after the pod)."""
    got = cluster.kubectl("exec", "asker", "-n", NS, "--", "python", "-c", ASK,
                          json.dumps([["kubernetes.default.svc.cluster.local", "A"]]), check=False)
    return got.returncode == 0


def answers(cluster, name: str, qtype: str = "A") -> tuple[int, list]:
    rcode, rrs, _ms = ask(cluster, (name, qtype))[0]
    return rcode, rrs


def start(tmp, **kw):
    return start_agent_cluster(tmp, images=["busybox:latest", "python:latest"], **kw)


def deploy(cluster) -> dict:
    """The Services and pods; {pod name: IP} of the StatefulSet's two ready pods."""
    cluster.kubectl("apply", "-f", "-", input=MANIFESTS % {"node": cluster.node_names[-1]})
    for pod in ("asker", "bb", "web-0", "web-1"):  # never-ready: running, never ready (its endpoint says so)
        cluster.wait_running(pod, NS, timeout=120)

    def ready_endpoints():
        slices = cluster.server.kubectl_json("get", "endpointslices", "-n", NS,
                                             "-l", "kubernetes.io/service-name=web-headless")["items"]
        eps = [e for s in slices for e in s.get("endpoints") or ()]
        ready = {e["targetRef"]["name"]: e["addresses"][0] for e in eps if e["conditions"].get("ready")}
        return ready if sorted(ready) == ["web-0", "web-1"] and len(eps) == 3 else None
    web = wait_for(ready_endpoints, 60, "the headless Service's endpoints", interval=0.5)
    wait_for(lambda: ask_until_answered(cluster), 30, "cluster DNS answering", interval=0.5)
    return web


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = start(tmp_path_factory.mktemp("dns"), nodes=2)
    try:
        c.web = deploy(c)
        c.web_ip = c.server.kubectl_json("get", "svc", "web", "-n", NS)["spec"]["clusterIP"]
        yield c
    finally:
        c.stop()


def test_a_service_by_every_name_a_pod_may_use(cluster):
    names = ["web", f"web.{NS}", f"web.{NS}.svc", f"web.{NS}.svc.cluster.local", f"web.{NS}.svc.cluster.local.",
             f"web.{NS}.cluster.local"]
    got = ask(cluster, *[(n, "lookup") for n in names])
    assert [g[:2] for g in got] == [[0, [cluster.web_ip]]] * len(names), list(zip(names, got))
    # what a user types: busybox nslookup. It asks every search domain (and exits 1 when one of
    # them is NXDOMAIN, on any cluster), printing the one that exists.
    out = cluster.kubectl("exec", "bb", "-n", NS, "--", "nslookup", "web", check=False)
    assert "Server:\t\t10.43.0.10" in out.stdout
    assert f"Name:\tweb.{NS}.svc.cluster.local\nAddress: {cluster.web_ip}" in out.stdout, out.stdout
    out = cluster.kubectl("exec", "bb", "-n", NS, "--", "nslookup", f"web.{NS}.svc.cluster.local.", check=False)
    assert out.returncode == 0 and f"Address: {cluster.web_ip}" in out.stdout, out.stdout
    # from another namespace the short name is not this Service; svc.ns is
    rcode, rrs = answers(cluster, "web.default.svc.cluster.local")
    assert rcode == RCODE.NXDOMAIN and rrs == []


def test_headless_service_answers_its_ready_pods_only(cluster):
    rcode, rrs = answers(cluster, f"web-headless.{NS}.svc.cluster.local")
    assert rcode == 0 and rrs == sorted(["A", ip] for ip in cluster.web.values())
    never = cluster.pod("never-ready", NS)["status"]["podIP"]
    assert never not in {ip for _, ip in rrs}


def test_statefulset_pods_have_names_of_their_own(cluster):
    got = ask(cluster, *[(f"{pod}.web-headless.{NS}.svc.cluster.local", "A") for pod in ("web-0", "web-1")],
              (f"web-2.web-headless.{NS}.svc.cluster.local", "A"))
    assert [g[:2] for g in got] == [[0, [["A", cluster.web["web-0"]]]], [0, [["A", cluster.web["web-1"]]]],
                                    [RCODE.NXDOMAIN, []]]
    # and through the pod's own search path, as the pods of a StatefulSet reach each other
    assert ask(cluster, ("web-1.web-headless", "lookup"))[0][:2] == [0, [cluster.web["web-1"]]]


def test_srv_of_a_named_port(cluster):
    assert answers(cluster, f"_http._tcp.web.{NS}.svc.cluster.local", "SRV") == (
        0, [["SRV", f"0 100 80 web.{NS}.svc.cluster.local."]])
    rcode, rrs = answers(cluster, f"_http._tcp.web-headless.{NS}.svc.cluster.local", "SRV")
    assert rcode == 0 and rrs == sorted(["SRV", f"0 50 80 {pod}.web-headless.{NS}.svc.cluster.local."]
                                        for pod in ("web-0", "web-1"))
    assert answers(cluster, f"_https._tcp.web.{NS}.svc.cluster.local", "SRV")[0] == RCODE.NXDOMAIN
    out = cluster.kubectl("exec", "bb", "-n", NS, "--", "nslookup", "-type=srv",
                          f"_http._tcp.web.{NS}.svc.cluster.local", check=False)
    assert out.returncode == 0 and f"0 100 80 web.{NS}.svc.cluster.local" in out.stdout, out.stdout


def test_ptr_of_a_service_ip(cluster):
    reverse = ".".join(reversed(cluster.web_ip.split("."))) + ".in-addr.arpa"
    assert answers(cluster, reverse, "PTR") == (0, [["PTR", f"web.{NS}.svc.cluster.local."]])
    out = cluster.kubectl("exec", "bb", "-n", NS, "--", "nslookup", cluster.web_ip, check=False)
    assert out.returncode == 0 and f"name = web.{NS}.svc.cluster.local" in out.stdout, out.stdout


def test_external_name_is_a_cname(cluster):
    assert answers(cluster, f"docs.{NS}.svc.cluster.local") == (0, [["CNAME", "docs.example.com."]])


def test_unknown_names_fail_fast_and_nothing_leaves_the_machine(cluster):
    got = ask(cluster, (f"nosuch.{NS}.svc.cluster.local", "A"), ("nosuch.svc.cluster.local", "A"),
              ("example.com", "A"), ("nosuch.example.com", "lookup"))
    assert [g[0] for g in got] == [RCODE.NXDOMAIN, RCODE.NXDOMAIN, RCODE.SERVFAIL, -3]  # -3: EAI_AGAIN
    # no upstream: SERVFAIL at once, not after a forwarding timeout (each query's own ms)
    assert max(g[2] for g in got) < 1000, got
    out = cluster.kubectl("exec", "bb", "-n", NS, "--", "nslookup", f"nosuch.{NS}.svc.cluster.local", check=False)
    assert out.returncode == 1 and "NXDOMAIN" in out.stdout, out.stdout


def test_a_new_service_is_answered_at_once(cluster):
    cluster.kubectl("create", "service", "clusterip", "late", "-n", NS, "--tcp", "8080:8080")
    ip = cluster.server.kubectl_json("get", "svc", "late", "-n", NS)["spec"]["clusterIP"]
    wait_for(lambda: answers(cluster, f"late.{NS}.svc.cluster.local") == (0, [["A", ip]]), 10,
             "the new Service in DNS", interval=0.2)
    cluster.kubectl("delete", "service", "late", "-n", NS)
    wait_for(lambda: answers(cluster, f"late.{NS}.svc.cluster.local")[0] == RCODE.NXDOMAIN, 10,
             "the deleted Service gone from DNS", interval=0.2)


# ---- --dns-upstream ------------------------------------------------------------------------------

class OneName(BaseResolver):
    """Knows `outside.example.` (A 192.0.2.44); NXDOMAIN for anything else."""

    def __init__(self):
        self.asked: list[str] = []

    def resolve(self, request, handler):
        qname = str(request.q.qname).lower()
        self.asked.append(qname)
        reply = request.reply()
        if qname != "outside.example.":
            reply.header.rcode = RCODE.NXDOMAIN
        elif request.q.qtype == QTYPE.A:
            reply.add_answer(RR("outside.example.", QTYPE.A, rdata=A("192.0.2.44"), ttl=30))
        return reply


class QuietLogger:
    def __getattr__(self, _name):
        return lambda *_args: None


def test_names_outside_the_cluster_go_to_the_dns_upstream(tmp_path):
    resolver = OneName()
    host = f"127.0.{random.randrange(2, 250)}.{random.randrange(2, 250)}"   # loopback: nothing leaves
    upstream = DNSServer(resolver, address=host, port=0, logger=QuietLogger())
    upstream.start_thread()
    port = upstream.server.server_address[1]
    tcp = DNSServer(resolver, address=host, port=port, tcp=True, logger=QuietLogger())
    tcp.start_thread()
    c = None
    try:
        c = start(tmp_path, extra_args=["--dns-upstream", f"{host}:{port}"])
        c.kubectl("create", "namespace", NS)
        c.kubectl("apply", "-f", "-", input="""
apiVersion: v1
kind: Pod
metadata: {name: asker, namespace: dnstest}
spec:
  terminationGracePeriodSeconds: 0
  containers:
  - {name: py, image: python:latest, command: [python, -c, "import time; time.sleep(3600)"]}
""")
        c.wait_running("asker", NS, timeout=120)
        wait_for(lambda: ask_until_answered(c), 30, "cluster DNS answering", interval=0.5)
        got = ask(c, ("outside.example", "A"), ("outside.example", "lookup"), ("nope.example", "A"),
                  ("kubernetes.default.svc.cluster.local", "A"))
        assert [g[:2] for g in got] == [[0, [["A", "192.0.2.44"]]], [0, ["192.0.2.44"]], [RCODE.NXDOMAIN, []],
                                        [0, [["A", "10.43.0.1"]]]]
        assert "outside.example." in resolver.asked
        assert not any(n.endswith("cluster.local.") for n in resolver.asked), "the cluster zone stays local"
    finally:
        if c is not None:
            c.stop()
        upstream.stop()
        tcp.stop()
