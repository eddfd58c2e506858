"""NetworkPolicy end to end: real pods (busybox httpd servers, wget clients) in two namespaces on
two real nodes, policies applied with kubectl, and what gets through checked from inside the pods.
One cluster for the module; each step waits (bounded) for the rules to take effect."""
from __future__ import annotations

import json
import os
import time

import pytest

from helpers.agent import start_agent_cluster
from helpers.cluster import wait_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="runs containers: needs root")

NS_A, NS_B = "np-a", "np-b"
SERVE = "mkdir -p /www && echo hello-$(hostname) > /www/index.html && exec httpd -f -p 80 -h /www"


def _server(name: str, ns: str, node: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns, "labels": {"app": "web"}},
            "spec": {"nodeName": node, "terminationGracePeriodSeconds": 0, "containers": [{
                "name": "httpd", "image": "busybox", "command": ["sh", "-c", SERVE],
                "ports": [{"name": "http", "containerPort": 80}],
                # The kubelet's probes come from the node: policies never block them.
                "readinessProbe": {"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 1}}]}}


def _client(name: str, ns: str, labels: dict, node: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns, "labels": labels},
            "spec": {"nodeName": node, "terminationGracePeriodSeconds": 0,
                     "containers": [{"name": "c", "image": "busybox", "command": ["sleep", "3600"]}]}}


def _apply(cluster, *objs: dict) -> None:
    cluster.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": list(objs)}))


def _policy(name: str, ns: str, spec: dict) -> dict:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": ns}, "spec": spec}


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    cluster = start_agent_cluster(tmp_path_factory.mktemp("netpol"), images=["busybox:latest"], nodes=2)
    one, two = cluster.node_names
    try:
        _apply(cluster,
               {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS_A, "labels": {"team": "a"}}},
               {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS_B, "labels": {"team": "b"}}})
        # np-a's server with a client beside it (bridged on cni0) and one on the other node
        # (routed over the underlay); np-b's server and client on the second node.
        _apply(cluster, _server("web", NS_A, one), _server("web", NS_B, two),
               _client("friend", NS_A, {"access": "yes"}, one), _client("stranger", NS_A, {}, two),
               _client("visitor", NS_B, {"access": "yes"}, two))
        ips = {}
        for ns, name in ((NS_A, "web"), (NS_B, "web"), (NS_A, "friend"), (NS_A, "stranger"), (NS_B, "visitor")):
            ips[f"{ns}/{name}"] = cluster.wait_running(name, ns)["status"]["podIP"]
        yield cluster, ips
    finally:
        cluster.stop()


def reaches(cluster, client: str, ip: str) -> bool:
    """`client` ("ns/name") fetches http://ip/ within 3 s (busybox's `wget -T` crashes: `timeout`)."""
    ns, name = client.split("/")
    got = cluster.kubectl("exec", "-n", ns, name, "--", "timeout", "3", "wget", "-qO-", f"http://{ip}/",
                          check=False)
    return got.returncode == 0 and "hello-" in got.stdout


def settle(cluster, ips, expect: dict[tuple[str, str], bool], timeout: float = 30) -> None:
    """Wait until every (client, server) pair reaches or not as expected, then check once more."""
    def matches():
        return {pair: reaches(cluster, pair[0], ips[pair[1]]) for pair in expect} == expect or None
    wait_for(matches, timeout, f"connectivity {expect}", interval=0.5)


WEB_A, WEB_B = f"{NS_A}/web", f"{NS_B}/web"
FRIEND, STRANGER, VISITOR = f"{NS_A}/friend", f"{NS_A}/stranger", f"{NS_B}/visitor"


def test_network_policies(net):
    cluster, ips = net
    # No policy: everyone reaches everyone.
    settle(cluster, ips, {(FRIEND, WEB_A): True, (STRANGER, WEB_A): True, (VISITOR, WEB_A): True,
                          (STRANGER, WEB_B): True}, timeout=10)

    # Default deny for ingress in np-a: nobody reaches np-a's server; np-b's stays open.
    _apply(cluster, _policy("default-deny", NS_A, {"podSelector": {}}))
    settle(cluster, ips, {(FRIEND, WEB_A): False, (STRANGER, WEB_A): False, (VISITOR, WEB_A): False,
                          (STRANGER, WEB_B): True})
    time.sleep(3)   # three probe periods: the kubelet's probes from the node still get through
    web = cluster.pod("web", NS_A)
    assert all(c["ready"] for c in web["status"]["containerStatuses"]), web["status"]

    # Allow pods labelled access=yes (of np-a only: a podSelector alone means the policy's namespace)
    # to the named port "http".
    _apply(cluster, _policy("allow-friends", NS_A, {
        "podSelector": {"matchLabels": {"app": "web"}},
        "ingress": [{"from": [{"podSelector": {"matchLabels": {"access": "yes"}}}],
                     "ports": [{"protocol": "TCP", "port": "http"}]}]}))
    settle(cluster, ips, {(FRIEND, WEB_A): True, (STRANGER, WEB_A): False, (VISITOR, WEB_A): False})

    # The same through a Service: its DNAT happens before the policy looks at the addresses.
    cluster.kubectl("expose", "pod", "web", "-n", NS_A, "--port", "80")
    svc_ip = cluster.server.kubectl_json("get", "svc", "web", "-n", NS_A)["spec"]["clusterIP"]
    ips["svc"] = svc_ip
    settle(cluster, ips, {(FRIEND, "svc"): True, (STRANGER, "svc"): False})

    # namespaceSelector: everything from namespaces labelled team=b.
    _apply(cluster, _policy("allow-team-b", NS_A, {
        "podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": "b"}}}]}]}))
    settle(cluster, ips, {(VISITOR, WEB_A): True, (STRANGER, WEB_A): False})

    # Egress deny in np-b: its client reaches nothing, not even its own namespace's server...
    _apply(cluster, _policy("deny-out", NS_B, {"podSelector": {"matchLabels": {"access": "yes"}},
                                               "policyTypes": ["Egress"]}))
    settle(cluster, ips, {(VISITOR, WEB_A): False, (VISITOR, WEB_B): False, (STRANGER, WEB_B): True})
    # The usual "allow DNS" egress policy (to kube-system's k8s-app=kube-dns pods) reaches the
    # node agents' DNS servers, on either node, whichever the kube-dns Service picks.
    _apply(cluster, _policy("allow-dns", NS_B, {"podSelector": {}, "policyTypes": ["Egress"], "egress": [{
        "to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
        "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]}]}))

    def resolves():
        got = cluster.kubectl("exec", "-n", NS_B, "visitor", "--", "timeout", "3", "nslookup",
                              f"web.{NS_A}.svc.cluster.local.", check=False)
        return got.returncode == 0 and svc_ip in got.stdout
    wait_for(resolves, 20, "DNS through the allow-dns policy", interval=0.5)
    assert all(resolves() for _ in range(8))    # each lookup a new flow, spread over both servers
    assert not reaches(cluster, VISITOR, ips[WEB_A])
    # ...and a Service without endpoints still answers "connection refused" (kube-proxy's REJECT
    # runs before the policy chain), not a silent timeout.
    cluster.kubectl("create", "service", "clusterip", "nobody", "-n", NS_B, "--tcp", "80")
    empty_ip = cluster.server.kubectl_json("get", "svc", "nobody", "-n", NS_B)["spec"]["clusterIP"]

    def refused():
        got = cluster.kubectl("exec", "-n", NS_B, "visitor", "--", "timeout", "3", "wget", "-qO-",
                              f"http://{empty_ip}/", check=False)
        return "refused" in got.stderr or None
    wait_for(refused, 20, "connection refused from the service without endpoints", interval=0.5)

    # Deleting the policies restores the traffic.
    cluster.kubectl("delete", "networkpolicy", "--all", "-n", NS_A)
    cluster.kubectl("delete", "networkpolicy", "--all", "-n", NS_B)
    settle(cluster, ips, {(FRIEND, WEB_A): True, (STRANGER, WEB_A): True, (VISITOR, WEB_A): True,
                          (VISITOR, WEB_B): True})
    for node in (1, 2):
        rules = cluster.in_node("iptables-save", "-t", "filter", node=node).stdout
        assert "KUBE-POD-FW-" not in rules and "KUBE-NWPLCY-" not in rules, rules
        assert '-A FORWARD -m comment --comment "kubernetes network policies" -j KUBE-NETPOL-FORWARD' in rules
