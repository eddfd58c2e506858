"""Three nodes on one machine (`ketch server --nodes 3`): each in its own network namespace on a
shared underlay, pods reaching pods and Services across nodes, and cluster DNS behind kube-dns —
the book's chapter 3 with real containers, real kubectl and the book's manifests verbatim."""
from __future__ import annotations

import ipaddress
import json
import random
import subprocess
import time
from pathlib import Path

import pytest

from helpers.agent import start_agent_cluster
from helpers.cluster import wait_for

BOOK = Path(__file__).resolve().parents[2].parent / "shared" / "book-examples"
if not BOOK.is_dir():
    BOOK = Path("/work/shared/book-examples")

pytestmark = pytest.mark.skipif(not Path("/usr/bin/runc").exists(), reason="needs runc")

CLIENT = """
apiVersion: v1
kind: Pod
metadata: {name: %(name)s, namespace: %(namespace)s}
spec:
  nodeName: %(node)s
  terminationGracePeriodSeconds: 0
  containers:
  - {name: c, image: busybox:latest, command: [sleep, "3600"]}
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    pool = f"127.0.1.{16 * random.randrange(1, 15)}/28"    # LoadBalancer addresses of our own
    c = start_agent_cluster(tmp_path_factory.mktemp("multinode"), nodes=3, extra_args=["--service-lb-cidr", pool],
                            images=["busybox:latest", "jonbaier/node-express-info:latest", "debian:latest",
                                    "jonbaier/node-express-multi:latest", "jonbaier/pod-scaling:0.2",
                                    "jonbaier/pod-scaling:0.3", "jonbaier/httpwhalesay:0.2"])
    try:
        yield c
    finally:
        c.stop()


def exec_out(cluster, pod: str, *argv: str, namespace: str = "default", check: bool = True) -> str:
    got = cluster.kubectl("exec", pod, "-n", namespace, "--", *argv, check=False)
    if check:
        assert got.returncode == 0, got.stderr
    return got.stdout


def fetch(cluster, pod: str, url: str, namespace: str = "default") -> str:
    """A page by `wget` from inside a pod, each try bounded (a Service the proxy has no rules for
    yet would hang, not fail), retried for a while."""
    return wait_for(lambda: exec_out(cluster, pod, "timeout", "5", "wget", "-qO-", url, namespace=namespace,
                                     check=False), 30, f"{url} from {pod}", interval=0.3)


def client_pod(cluster, name: str, node: str, namespace: str = "default") -> None:
    cluster.kubectl("apply", "-f", "-", input=CLIENT % {"name": name, "namespace": namespace, "node": node})
    cluster.wait_running(name, namespace)


def test_nodes_join_one_underlay_with_routes_to_each_others_pods(cluster):
    nodes = {n["metadata"]["name"]: n for n in cluster.server.kubectl_json("get", "nodes")["items"]}
    assert sorted(nodes) == sorted(cluster.node_names)
    ips = {name: next(a["address"] for a in n["status"]["addresses"] if a["type"] == "InternalIP")
           for name, n in nodes.items()}
    assert len(set(ips.values())) == 3
    assert all(ipaddress.ip_address(ip) in ipaddress.ip_network("172.30.0.0/16") for ip in ips.values())
    cidrs = {name: n["spec"]["podCIDR"] for name, n in nodes.items()}
    assert len(set(cidrs.values())) == 3
    # host-gw: node 1 routes the other nodes' pod ranges via their addresses
    def routed():
        routes = json.loads(cluster.in_node("ip", "-j", "route").stdout)
        have = {r["dst"]: r.get("gateway") for r in routes}
        return all(have.get(cidrs[n]) == ips[n] for n in cluster.node_names[1:])
    wait_for(routed, 20, "routes to the other nodes' pods")
    # the underlay is in a namespace of its own; nothing of it is in the root namespace
    root_links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert "underlay0" not in root_links and " u-" not in root_links


def test_book_chapter3_services_across_three_nodes(cluster):
    cluster.kubectl("apply", "-f", str(BOOK / "Chapter02" / "nodejs-controller.yaml"))
    cluster.kubectl("apply", "-f", str(BOOK / "Chapter03" / "nodejs-service-internal.yaml"))
    pods = wait_for(lambda: (lambda ps: ps if len(ps) == 3 and all(
        p["status"].get("podIP") and any(c["type"] == "Ready" and c["status"] == "True"
                                         for c in p["status"].get("conditions", [])) for p in ps) else None)(
        cluster.pods("name=node-js")), 120, "three node-js pods ready", interval=0.5)
    by_node = {p["spec"]["nodeName"]: p for p in pods}
    assert len(by_node) == 3, "the scheduler spreads the RC over the three nodes"
    client_pod(cluster, "client", cluster.node_names[0])

    # pod to pod across nodes, by pod IP
    for p in pods:
        page = fetch(cluster, "client", f"http://{p['status']['podIP']}/")
        assert p["metadata"]["name"] in page

    # the ClusterIP, from a pod: spread over the pods on all three nodes
    ip = cluster.server.kubectl_json("get", "svc", "node-js-internal")["spec"]["clusterIP"]
    seen = set()
    for _ in range(60):
        page = fetch(cluster, "client", f"http://{ip}/")
        seen |= {p["metadata"]["name"] for p in pods if p["metadata"]["name"] in page}
        if len(seen) == 3:
            break
    assert len(seen) == 3, f"only {seen} answered through {ip}"


def test_cluster_dns_from_another_namespace(cluster):
    svc = cluster.server.kubectl_json("get", "svc", "kube-dns", "-n", "kube-system")
    assert svc["spec"]["clusterIP"] == "10.43.0.10"
    def dns_nodes():
        slices = cluster.server.kubectl_json("get", "endpointslices", "-n", "kube-system",
                                             "-l", "kubernetes.io/service-name=kube-dns")["items"]
        return sorted(e["nodeName"] for s in slices for e in s["endpoints"] if e["conditions"]["ready"])
    wait_for(lambda: dns_nodes() == sorted(cluster.node_names), 30, "every node's DNS endpoint")

    cluster.kubectl("apply", "-f", str(BOOK / "Chapter03" / "test-ns.yaml"))
    cluster.kubectl("apply", "-f", str(BOOK / "Chapter02" / "nodejs-controller.yaml"))
    cluster.kubectl("apply", "-f", str(BOOK / "Chapter03" / "nodejs-service-internal.yaml"))
    client_pod(cluster, "dns-client", cluster.node_names[2], namespace="test")
    wait_for(lambda: any(s.get("endpoints") for s in cluster.server.kubectl_json(
        "get", "endpointslices", "-l", "kubernetes.io/service-name=node-js-internal")["items"]), 60, "endpoints")
    # the full name, the legacy form the book uses, and a short name through the search path
    for name in ("node-js-internal.default.svc.cluster.local", "node-js-internal.default.cluster.local",
                 "node-js-internal.default"):
        page = fetch(cluster, "dns-client", f"http://{name}/", namespace="test")
        assert "node-js-" in page, name
    # a name the cluster does not know, with no upstream configured: no answer, quickly
    got = cluster.kubectl("exec", "dns-client", "-n", "test", "--", "nslookup", "nosuch.example.", check=False)
    assert got.returncode != 0


def test_book_chapter3_ports_and_chapter4_session_affinity(cluster):
    """Listing 3-5's port 90 -> 80, Listing 3-6's two ports, and chapter 4's A/B Service with
    sessionAffinity: ClientIP pinning one client to one pod."""
    for f in ("nodejs-customPort-controller.yaml", "nodejs-customPort-service.yaml",
              "nodejs-multi-controller.yaml", "nodejs-multi-service.yaml"):
        cluster.kubectl("apply", "-f", str(BOOK / "Chapter03" / f))
    for f in ("pod-A-controller.yaml", "pod-B-controller.yaml", "pod-AB-service.yaml"):
        cluster.kubectl("apply", "-f", str(BOOK / "Chapter04" / f))
    client_pod(cluster, "ports-client", cluster.node_names[1])

    def ready_endpoints(service: str, count: int):
        slices = cluster.server.kubectl_json("get", "endpointslices",
                                             "-l", f"kubernetes.io/service-name={service}")["items"]
        return sum(1 for s in slices for e in s.get("endpoints") or [] if e["conditions"].get("ready")) >= count
    for service, count in (("node-js-90", 3), ("node-js-multi", 3)):
        wait_for(lambda service=service, count=count: ready_endpoints(service, count), 90, f"{service} endpoints", interval=0.5)

    ip90 = cluster.server.kubectl_json("get", "svc", "node-js-90")["spec"]["clusterIP"]
    assert "node-js-90-" in fetch(cluster, "ports-client", f"http://{ip90}:90/")
    multi = cluster.server.kubectl_json("get", "svc", "node-js-multi")["spec"]["clusterIP"]
    assert "node-js-multi-" in fetch(cluster, "ports-client", f"http://{multi}:80/")
    admin = fetch(cluster, "ports-client", f"http://{multi}:8888/")
    assert admin.strip(), "the second port answers too"

    # The A/B pods turn ready after their 30 s initial delay.
    wait_for(lambda: ready_endpoints("node-js-scale-ab", 4), 120, "the A/B pods ready", interval=1)
    ab = cluster.server.kubectl_json("get", "svc", "node-js-scale-ab")["spec"]["clusterIP"]
    pods = {p["metadata"]["name"] for p in cluster.pods("service=node-js-scale-ab")}
    answered = set()
    for _ in range(12):
        page = fetch(cluster, "ports-client", f"http://{ab}/")
        answered |= {name for name in pods if name in page}
    assert len(answered) == 1, f"one client, one pod with ClientIP affinity; got {answered}"


def test_book_chapter6_statefulset_names(cluster):
    """Chapter 6: from inside whaleset-0, `curl sayhey-svc` and the pod name of whaleset-1."""
    for f in ("solidstate-sc.yaml", "sayhey-svc.yaml", "sayhey-statefulset.yaml"):
        cluster.kubectl("apply", "-f", str(BOOK / "Chapter06" / f))
    for i in range(3):
        cluster.wait_running(f"whaleset-{i}", timeout=120)
    wait_for(lambda: sum(len(s.get("endpoints") or []) for s in cluster.server.kubectl_json(
        "get", "endpointslices", "-l", "kubernetes.io/service-name=sayhey-svc")["items"]) == 3, 30, "endpoints")
    assert "Whale it up!" in exec_out(cluster, "whaleset-0", "curl", "-s", "sayhey-svc")
    page = exec_out(cluster, "whaleset-0", "curl", "-s", "whaleset-1.sayhey-svc.default.svc.cluster.local")
    assert "Whale it up!" in page


def dnat_count(cluster, key: str, node: int = 1) -> int:
    rules = cluster.in_node("iptables-save", "-t", "nat", node=node).stdout.splitlines()
    return sum(1 for r in rules if r.startswith("-A KUBE-SEP-") and key in r and "DNAT" in r)


def test_scaling_and_readiness_change_the_rules_and_the_traffic(cluster):
    cluster.kubectl("apply", "-f", str(BOOK / "Chapter02" / "nodejs-controller.yaml"))
    cluster.kubectl("apply", "-f", str(BOOK / "Chapter03" / "nodejs-service-internal.yaml"))
    key = "default/node-js-internal"
    cluster.kubectl("scale", "rc", "node-js", "--replicas=5")
    wait_for(lambda: dnat_count(cluster, key, node=3) == 5, 90, "five endpoints in node 3's rules", interval=0.3)
    cluster.kubectl("scale", "rc", "node-js", "--replicas=1")
    wait_for(lambda: dnat_count(cluster, key, node=3) == 1, 60, "one endpoint left", interval=0.3)
    cluster.kubectl("scale", "rc", "node-js", "--replicas=3")

    # A pod failing its readiness probe gets no more traffic; ready again, it gets it back.
    manifest = """
apiVersion: v1
kind: Pod
metadata: {name: %(name)s, labels: {app: ready-test}}
spec:
  nodeName: %(node)s
  containers:
  - name: web
    image: jonbaier/node-express-info:latest
    readinessProbe:
      exec: {command: [sh, -c, "test ! -e /tmp/unready"]}
      periodSeconds: 1
      failureThreshold: 1
"""
    for name, node in (("ready-a", cluster.node_names[1]), ("ready-b", cluster.node_names[2])):
        cluster.kubectl("apply", "-f", "-", input=manifest % {"name": name, "node": node})
    cluster.kubectl("create", "service", "clusterip", "ready-test", "--tcp=80:80")
    cluster.kubectl("set", "selector", "service", "ready-test", "app=ready-test")
    client_pod(cluster, "ready-client", cluster.node_names[0])
    for name in ("ready-a", "ready-b"):
        cluster.wait_running(name)
    ip = cluster.server.kubectl_json("get", "svc", "ready-test")["spec"]["clusterIP"]
    wait_for(lambda: dnat_count(cluster, "default/ready-test") == 2, 30, "both endpoints in the rules")

    def answers(n: int = 12, until: set[str] | None = None) -> set[str]:
        seen = set()
        for _ in range(n):
            page = fetch(cluster, "ready-client", f"http://{ip}/")
            seen |= {name for name in ("ready-a", "ready-b") if name in page}
            if seen == until:
                break
        return seen
    assert answers(40, until={"ready-a", "ready-b"}) == {"ready-a", "ready-b"}
    cluster.kubectl("exec", "ready-a", "--", "touch", "/tmp/unready")
    wait_for(lambda: dnat_count(cluster, "default/ready-test") == 1, 30, "the unready pod out of the rules")
    assert answers() == {"ready-b"}
    cluster.kubectl("exec", "ready-a", "--", "rm", "/tmp/unready")
    wait_for(lambda: dnat_count(cluster, "default/ready-test") == 2, 30, "the pod back in the rules")


def test_hairpin_a_pod_reaches_itself_through_its_service(cluster):
    cluster.kubectl("apply", "-f", "-", input="""
apiVersion: v1
kind: Pod
metadata: {name: hairpin, labels: {app: hairpin}}
spec:
  containers:
  - {name: web, image: jonbaier/node-express-info:latest}
""")
    cluster.kubectl("create", "service", "clusterip", "hairpin", "--tcp=80:80")
    cluster.kubectl("set", "selector", "service", "hairpin", "app=hairpin")
    cluster.wait_running("hairpin")
    wait_for(lambda: dnat_count(cluster, "default/hairpin", node=1) == 1 and
             dnat_count(cluster, "default/hairpin", node=2) == 1 and
             dnat_count(cluster, "default/hairpin", node=3) == 1, 30, "rules on every node")
    assert "hairpin" in fetch(cluster, "hairpin", "http://hairpin/")


STREAMER = """
apiVersion: v1
kind: Pod
metadata: {name: streamer, labels: {app: streamer}}
spec:
  nodeName: %(server_node)s
  terminationGracePeriodSeconds: 0
  containers:
  - name: s
    image: busybox:latest
    # one connection only (no -k): if it broke, nothing could take its place
    command: [sh, -c, "i=0; while true; do echo $i; i=$((i+1)); sleep 0.1; done | nc -l -p 9000"]
---
apiVersion: v1
kind: Pod
metadata: {name: listener}
spec:
  nodeName: %(client_node)s
  terminationGracePeriodSeconds: 0
  containers:
  - name: c
    image: busybox:latest
    # stdin held open: at its end nc would half-close, and the server's nc would quit
    command: [sh, -c, "sleep 3600 | nc streamer 9000 > /tmp/out"]
"""


def last_count(cluster) -> int:
    out = exec_out(cluster, "listener", "cat", "/tmp/out").split()
    return int(out[-1]) if out else -1


def test_killing_the_agents_does_not_interrupt_established_service_traffic(cluster):
    cluster.kubectl("create", "service", "clusterip", "streamer", "--tcp=9000:9000")
    cluster.kubectl("set", "selector", "service", "streamer", "app=streamer")
    server, client = (STREAMER % {"server_node": cluster.node_names[2],
                                  "client_node": cluster.node_names[0]}).split("---")
    cluster.kubectl("apply", "-f", "-", input=server)
    cluster.wait_running("streamer")
    wait_for(lambda: dnat_count(cluster, "default/streamer") == 1, 30, "the streamer in node 1's rules")
    cluster.kubectl("apply", "-f", "-", input=client)
    cluster.wait_running("listener")
    wait_for(lambda: last_count(cluster) > 5, 60, "the stream flowing", interval=0.5)
    def kubelet_urls():
        return {n["metadata"]["name"]: n["metadata"]["annotations"].get("ketch.io/kubelet-url")
                for n in cluster.server.kubectl_json("get", "nodes")["items"]}
    urls = kubelet_urls()
    cluster.server.kill9()          # the API server and every agent with it
    time.sleep(3)
    cluster.server.start()
    # Each agent is back once it advertised its new kubelet API (a free port each start) ...
    wait_for(lambda: all(kubelet_urls()[n] != urls[n] for n in cluster.node_names), 60, "every agent back")
    # ... and its proxy is syncing again once a new Service's rules appear on the stream's nodes.
    cluster.kubectl("create", "service", "clusterip", "after-restart", "--tcp=80:80")
    # (no endpoints: its rule is a REJECT in the filter table)
    wait_for(lambda: "default/after-restart" in cluster.in_node("iptables-save", "-t", "filter", node=1).stdout and
             "default/after-restart" in cluster.in_node("iptables-save", "-t", "filter", node=3).stdout, 30,
             "the restarted proxies syncing")
    before = last_count(cluster)
    time.sleep(1)
    after = last_count(cluster)
    assert after > before, "the established connection kept flowing through the restart"
    numbers = [int(n) for n in exec_out(cluster, "listener", "cat", "/tmp/out").split()]
    assert numbers == list(range(len(numbers))), "one unbroken stream"


def test_book_custom_service_and_endpoints_point_at_a_load_balancer(cluster):
    """Listings 3-10/3-11: a Service without a selector and hand-written Endpoints pointing at the
    node-js-multi load balancer, which (as k3s's ServiceLB) serves its port on every node's
    address; the book's file has a placeholder IP, so the test fills in node 2's."""
    for f in ("nodejs-multi-controller.yaml", "nodejs-multi-service.yaml"):
        cluster.kubectl("apply", "-f", str(BOOK / "Chapter03" / f))
    external = wait_for(lambda: (cluster.server.kubectl_json("get", "svc", "node-js-multi")["status"]
                                 .get("loadBalancer") or {}).get("ingress"), 30, "an EXTERNAL-IP")
    assert external[0]["ip"].startswith("127.0.1.")
    # (The older of two LoadBalancers on one port holds it at the node IPs; creationTimestamps
    # have seconds, so the book's order — custom-service well after node-js-multi — matters.)
    wait_for(lambda: any(e["conditions"].get("ready") for s in cluster.server.kubectl_json(
        "get", "endpointslices", "-l", "kubernetes.io/service-name=node-js-multi")["items"]
        for e in s.get("endpoints") or []), 60, "node-js-multi ready")
    time.sleep(1.1)
    node2 = cluster.server.kubectl_json("get", "node", cluster.node_names[1])
    node2_ip = next(a["address"] for a in node2["status"]["addresses"] if a["type"] == "InternalIP")
    cluster.kubectl("apply", "-f", str(BOOK / "Chapter03" / "nodejs-custom-service.yaml"))
    endpoints = (BOOK / "Chapter03" / "nodejs-custom-endpoint.yaml").read_text()
    placeholder = cluster.kubectl("apply", "-f", "-", input=endpoints, check=False)
    assert placeholder.returncode != 0, "the book's placeholder is not an IP address"
    cluster.kubectl("apply", "-f", "-", input=endpoints.replace("<ENTER IP TO POINT SERVICE TO>", node2_ip))
    described = cluster.kubectl("describe", "service", "custom-service").stdout
    assert f"{node2_ip}:80" in described
    client_pod(cluster, "custom-client", cluster.node_names[0])
    # (before the proxy has the rules a request would hang, not fail: wait for them, and bound each try)
    wait_for(lambda: dnat_count(cluster, "default/custom-service") == 1, 30, "custom-service's rules")
    wait_for(lambda: "node-js-multi-" in exec_out(cluster, "custom-client", "timeout", "5", "wget", "-qO-",
                                                  "http://custom-service/", check=False), 60,
             "custom-service answering with node-js-multi's page", interval=0.5)


def test_traffic_policies_and_external_ips(cluster):
    """internalTrafficPolicy Local keeps a client on its node's endpoints; externalTrafficPolicy
    Local answers a NodePort only on nodes with an endpoint; externalIPs are served on every node."""
    manifest = """
apiVersion: v1
kind: Pod
metadata: {name: %(name)s, labels: {app: policies}}
spec:
  nodeName: %(node)s
  containers:
  - {name: web, image: jonbaier/node-express-info:latest}
"""
    cluster.kubectl("apply", "-f", "-", input=manifest % {"name": "pol-1", "node": cluster.node_names[0]})
    cluster.kubectl("apply", "-f", "-", input=manifest % {"name": "pol-2", "node": cluster.node_names[1]})
    cluster.kubectl("apply", "-f", "-", input="""
apiVersion: v1
kind: Service
metadata: {name: pol-local}
spec:
  selector: {app: policies}
  internalTrafficPolicy: Local
  ports: [{port: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: pol-ext}
spec:
  type: NodePort
  selector: {app: policies}
  externalTrafficPolicy: Local
  externalIPs: [192.0.2.80]
  ports: [{port: 80}]
""")
    for name in ("pol-1", "pol-2"):
        cluster.wait_running(name)
    client_pod(cluster, "pol-client-1", cluster.node_names[0])
    client_pod(cluster, "pol-client-3", cluster.node_names[2])
    wait_for(lambda: dnat_count(cluster, "default/pol-local") == 2, 30, "pol-local's endpoints in the rules")
    for _ in range(8):
        assert "pol-1" in fetch(cluster, "pol-client-1", "http://pol-local/")
    # node 3 has no local endpoint: dropped there (a timeout, not a refusal)
    got = cluster.kubectl("exec", "pol-client-3", "--", "timeout", "3", "wget", "-qO-", "http://pol-local/",
                          check=False)
    assert got.returncode != 0 and "pol-" not in got.stdout

    svc = cluster.server.kubectl_json("get", "svc", "pol-ext")
    node_port = svc["spec"]["ports"][0]["nodePort"]
    ips = {n["metadata"]["name"]: next(a["address"] for a in n["status"]["addresses"] if a["type"] == "InternalIP")
           for n in cluster.server.kubectl_json("get", "nodes")["items"]}
    # Traffic from outside the pod network (node 3's own address) to node 2's NodePort: node 2
    # has an endpoint and answers with its own pod, the client's address kept (no masquerade).
    def curl_from_node(node: int, ip: str):
        return cluster.in_node("curl", "-s", "-m", "3", f"http://{ip}:{node_port}/", node=node)
    for _ in range(4):
        assert "pol-2" in curl_from_node(3, ips[cluster.node_names[1]]).stdout
    # node 3 has no endpoint: its NodePort does not answer outside traffic (dropped)
    assert curl_from_node(1, ips[cluster.node_names[2]]).returncode != 0
    # the external IP answers from any node's pods
    assert "pol-" in fetch(cluster, "pol-client-3", "http://192.0.2.80/")
