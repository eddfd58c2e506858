"""The built-in service load balancer against a real API server, driven by real kubectl: each
LoadBalancer Service gets a loopback address of its own in status (EXTERNAL-IP), a used-up pool
leaves it <pending> with upstream's SyncLoadBalancerFailed warning, loadBalancerIP is honoured,
a type change clears the status, the cleanup finalizer holds a LoadBalancer until its address is
given back, and the addresses survive a restart of the controller manager."""
from __future__ import annotations

import json

import pytest

from helpers.cluster import start_server, unique, wait_for

POOL = "127.0.1.244/30"       # two addresses: .245 and .246 (no agent here: nothing listens on them)


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    s = start_server(tmp_path_factory.mktemp("servicelb"), ["--service-lb-cidr", POOL, "--disable-agent"])
    try:
        yield s
    finally:
        s.stop()


def lb(name: str, **spec) -> str:
    return json.dumps({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
                       "spec": {"type": spec.pop("type", "LoadBalancer"), "selector": {"app": name},
                                "ports": [{"port": 80}], **spec}})


def ingress(srv, ns: str, name: str):
    svc = srv.kubectl_json("get", "svc", name, "-n", ns)
    return (svc.get("status") or {}).get("loadBalancer", {}).get("ingress")


def external_ip(srv, ns: str, name: str) -> str:
    """The EXTERNAL-IP column of `kubectl get svc`, as a user reads it."""
    out = srv.kubectl("get", "svc", name, "-n", ns, "--no-headers").stdout.split()
    return out[3]


def reasons(srv, ns: str, name: str) -> list[str]:
    events = srv.kubectl_json("get", "events", "-n", ns, "--field-selector", f"involvedObject.name={name}")
    return [e["reason"] for e in events["items"]]


@pytest.fixture
def ns(srv):
    name = unique("slb")
    srv.kubectl("create", "namespace", name)
    try:
        yield name
    finally:
        srv.kubectl("delete", "svc", "--all", "-n", name, "--wait=false", check=False)
        wait_for(lambda: not srv.kubectl_json("get", "svc", "-n", name)["items"], 20, "services gone")
        srv.kubectl("delete", "namespace", name, "--wait=false", check=False)


def test_each_load_balancer_gets_its_own_address_and_a_full_pool_is_pending(srv, ns):
    for name in ("a", "b"):
        srv.kubectl("create", "-n", ns, "-f", "-", input=lb(name))
    wait_for(lambda: ingress(srv, ns, "a") and ingress(srv, ns, "b"), 15, "two addresses")
    assert ingress(srv, ns, "a") == [{"ip": "127.0.1.245", "ipMode": "VIP"}]
    assert ingress(srv, ns, "b") == [{"ip": "127.0.1.246", "ipMode": "VIP"}]
    assert external_ip(srv, ns, "a") == "127.0.1.245"
    # Held as upstream's service controller holds a LoadBalancer, until its address is given back.
    assert srv.kubectl_json("get", "svc", "a", "-n", ns)["metadata"]["finalizers"] == [
        "service.kubernetes.io/load-balancer-cleanup"]
    assert {"EnsuringLoadBalancer", "EnsuredLoadBalancer"} <= set(reasons(srv, ns, "a"))

    srv.kubectl("create", "-n", ns, "-f", "-", input=lb("c"))
    wait_for(lambda: "SyncLoadBalancerFailed" in reasons(srv, ns, "c"), 15, "the failure event")
    assert external_ip(srv, ns, "c") == "<pending>" and not ingress(srv, ns, "c")
    [event] = [e for e in srv.kubectl_json("get", "events", "-n", ns, "--field-selector",
                                          "involvedObject.name=c")["items"] if e["reason"] == "SyncLoadBalancerFailed"]
    assert event["type"] == "Warning" and event["source"]["component"] == "service-controller"
    assert event["message"] == ("Error syncing load balancer: failed to ensure load balancer: "
                                f"no free address left in {POOL}")

    # A freed address goes to the waiting Service at once (not after the minute's retry).
    srv.kubectl("delete", "svc", "a", "-n", ns)
    wait_for(lambda: ingress(srv, ns, "c"), 10, "c gets the freed address")
    assert ingress(srv, ns, "c") == [{"ip": "127.0.1.245", "ipMode": "VIP"}]


def test_type_change_clears_the_status_and_frees_the_address(srv, ns):
    srv.kubectl("create", "-n", ns, "-f", "-", input=lb("web"))
    wait_for(lambda: ingress(srv, ns, "web"), 15, "an address")
    srv.kubectl("patch", "svc", "web", "-n", ns, "--type", "merge", "-p",
                json.dumps({"spec": {"type": "NodePort", "allocateLoadBalancerNodePorts": None}}))
    wait_for(lambda: not ingress(srv, ns, "web"), 10, "the status cleared")
    assert not srv.kubectl_json("get", "svc", "web", "-n", ns)["metadata"].get("finalizers")
    assert external_ip(srv, ns, "web") == "<none>"
    assert "DeletedLoadBalancer" in reasons(srv, ns, "web")
    # The address is free again: a new LoadBalancer takes it (the lowest free).
    srv.kubectl("create", "-n", ns, "-f", "-", input=lb("next"))
    wait_for(lambda: ingress(srv, ns, "next"), 15, "an address")
    assert ingress(srv, ns, "next")[0]["ip"] == "127.0.1.245"


def test_load_balancer_ip_and_class(srv, ns):
    srv.kubectl("create", "-n", ns, "-f", "-", input=lb("asked", loadBalancerIP="127.0.1.246"))
    srv.kubectl("create", "-n", ns, "-f", "-", input=lb("outside", loadBalancerIP="127.0.9.9"))
    srv.kubectl("create", "-n", ns, "-f", "-", input=lb("theirs", loadBalancerClass="example.com/other"))
    wait_for(lambda: ingress(srv, ns, "asked"), 15, "the asked-for address")
    assert ingress(srv, ns, "asked")[0]["ip"] == "127.0.1.246"
    wait_for(lambda: "SyncLoadBalancerFailed" in reasons(srv, ns, "outside"), 15, "a refusal")
    assert not ingress(srv, ns, "outside")
    assert not ingress(srv, ns, "theirs") and "EnsuringLoadBalancer" not in reasons(srv, ns, "theirs")
    assert not srv.kubectl_json("get", "svc", "theirs", "-n", ns)["metadata"].get("finalizers")


def test_addresses_are_rebuilt_from_status_after_a_restart(srv, ns):
    srv.kubectl("create", "-n", ns, "-f", "-", input=lb("second", loadBalancerIP="127.0.1.246"))
    wait_for(lambda: ingress(srv, ns, "second"), 15, "an address")
    srv.stop()
    srv.start()
    srv.kubectl("create", "-n", ns, "-f", "-", input=lb("after"))
    wait_for(lambda: ingress(srv, ns, "after"), 15, "an address after the restart")
    assert ingress(srv, ns, "after")[0]["ip"] == "127.0.1.245"      # not .246: that one is taken
    assert ingress(srv, ns, "second")[0]["ip"] == "127.0.1.246"
