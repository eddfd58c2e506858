"""The built-in service load balancer's address pool, the publisher's listener plan, and the
service proxy's rules for LoadBalancer Services at the node IPs (loopback ingress IPs get none)."""
import pytest

from ketch.agent.publisher import Target, desired
from ketch.controllers.options import ControllerOptions
from ketch.controllers.servicelb import AddressPool, PoolExhausted, is_ours
from ketch.proxy.rules import NodeFacts, build_rules


def test_pool_hands_out_the_lowest_free_address_once():
    pool = AddressPool("127.0.1.0/24")
    assert pool.size == 254                               # no .0, no .255
    assert [pool.allocate(k) for k in ("a/1", "a/2", "a/3")] == ["127.0.1.1", "127.0.1.2", "127.0.1.3"]
    assert pool.allocate("a/2") == "127.0.1.2"            # a Service keeps its address
    assert pool.release("a/2") and not pool.release("a/2")
    assert pool.allocate("a/4") == "127.0.1.2"            # lowest free again
    assert pool.allocate("a/5") == "127.0.1.4"


def test_pool_occupy_is_first_come_and_inside_the_pool_only():
    pool = AddressPool("127.0.1.0/24")
    assert pool.occupy("a/1", "127.0.1.7")
    assert not pool.occupy("a/2", "127.0.1.7")            # never two Services the same
    assert not pool.occupy("a/2", "127.0.2.7") and not pool.occupy("a/2", "10.0.0.1")
    assert not pool.occupy("a/2", "not-an-ip")
    assert pool.occupy("a/1", "127.0.1.9")                # moving frees the old one
    assert pool.address_of("a/1") == "127.0.1.9"
    assert pool.occupy("a/2", "127.0.1.7")


def test_pool_exhaustion():
    pool = AddressPool("127.0.1.240/30")
    assert [pool.allocate("a"), pool.allocate("b")] == ["127.0.1.241", "127.0.1.242"]
    with pytest.raises(PoolExhausted, match="no free address left in 127.0.1.240/30"):
        pool.allocate("c")
    pool.release("a")
    assert pool.allocate("c") == "127.0.1.241"
    assert AddressPool("127.0.1.9/32").allocate("x") == "127.0.1.9"   # a single address works too


def test_default_pool_and_which_services_are_ours():
    assert ControllerOptions().service_lb_cidr == "127.0.1.0/24"
    assert is_ours({"spec": {"type": "LoadBalancer"}})
    assert not is_ours({"spec": {"type": "LoadBalancer", "loadBalancerClass": "example.com/lb"}})
    assert not is_ours({"spec": {"type": "NodePort"}})


def svc(name, type_, ports, ingress=(), cluster_ip="10.43.0.20", ts="2026-01-01T00:00:00Z"):
    return {"metadata": {"namespace": "default", "name": name, "creationTimestamp": ts},
            "spec": {"type": type_, "clusterIP": cluster_ip, "ports": ports},
            "status": {"loadBalancer": {"ingress": [{"ip": ip, "ipMode": "VIP"} for ip in ingress]}}}


def test_publisher_plan():
    services = [
        svc("np", "NodePort", [{"port": 80, "nodePort": 30001}, {"port": 53, "nodePort": 30053, "protocol": "UDP"}]),
        svc("lb", "LoadBalancer", [{"port": 80, "nodePort": 31000}], ingress=["127.0.1.1"], cluster_ip="10.43.0.21"),
        svc("nonp", "LoadBalancer", [{"port": 8080}], ingress=["127.0.1.2"], cluster_ip="10.43.0.22"),
        svc("cloud", "LoadBalancer", [{"port": 80, "nodePort": 31001}], ingress=["203.0.113.9"]),
        svc("plain", "ClusterIP", [{"port": 80}]),
        svc("sctp", "NodePort", [{"port": 80, "nodePort": 30002, "protocol": "SCTP"}]),
        svc("late", "NodePort", [{"port": 81, "nodePort": 30001}], ts="2026-02-01T00:00:00Z"),
    ]
    plan = desired(services, "10.42.0.1", "127.0.0.1")
    assert plan == {
        ("127.0.0.1", 30001, "TCP"): Target("default/np", "10.42.0.1", 30001),    # the older Service keeps it
        ("127.0.0.1", 30053, "UDP"): Target("default/np", "10.42.0.1", 30053),
        ("127.0.0.1", 31000, "TCP"): Target("default/lb", "10.42.0.1", 31000),
        ("127.0.1.1", 80, "TCP"): Target("default/lb", "10.42.0.1", 31000),
        ("127.0.1.2", 8080, "TCP"): Target("default/nonp", "10.43.0.22", 8080),  # no nodePort: the cluster IP
        ("127.0.0.1", 31001, "TCP"): Target("default/cloud", "10.42.0.1", 31001),  # not a loopback ingress
    }
    # Only the loopback LoadBalancer addresses (a node that is the machine itself).
    assert set(desired(services, "10.42.0.1", "127.0.0.1", node_ports=False)) == {
        ("127.0.1.1", 80, "TCP"), ("127.0.1.2", 8080, "TCP")}
    # A loopback node IP cannot be DNATed to a pod: the cluster IP is dialled instead.
    assert desired(services[:1], "127.0.0.1", "127.0.0.1")[("127.0.0.1", 30001, "TCP")] == \
        Target("default/np", "10.43.0.20", 80)


def test_load_balancer_rules_at_node_ips_and_none_for_loopback_ingress():
    s = svc("web", "LoadBalancer", [{"port": 80, "nodePort": 31080}], ingress=["127.0.1.1", "172.18.0.2"])
    sl = {"metadata": {"namespace": "default", "name": "web-x", "labels": {"kubernetes.io/service-name": "web"}},
          "addressType": "IPv4", "ports": [{"name": "", "port": 8080, "protocol": "TCP"}],
          "endpoints": [{"addresses": ["10.42.0.5"], "conditions": {"ready": True}, "nodeName": "n1"}]}
    text = build_rules([s], [sl], NodeFacts("n1", ("172.30.0.2",), "10.42.0.0/16"))
    assert "127.0.1.1" not in text                                                 # host-only
    for ip in ("172.18.0.2", "172.30.0.2"):
        assert f'-A KUBE-SERVICES -m comment --comment "default/web loadbalancer IP" -m tcp -p tcp -d {ip} ' \
               f'--dport 80 -j KUBE-EXT-' in text
    assert "--dport 31080 -j KUBE-EXT-" in text
    # Not a LoadBalancer: nothing at the node IP on the service port.
    s2 = svc("web", "NodePort", [{"port": 80, "nodePort": 31080}])
    assert "-d 172.30.0.2 --dport 80" not in build_rules([s2], [sl], NodeFacts("n1", ("172.30.0.2",), "10.42.0.0/16"))
    # Without endpoints the node IP's service port is rejected, as the other external addresses.
    text = build_rules([s], [], NodeFacts("n1", ("172.30.0.2",), "10.42.0.0/16"))
    assert '"default/web has no endpoints" -m tcp -p tcp -d 172.30.0.2 --dport 80 -j REJECT' in text


def test_the_oldest_load_balancer_holds_a_port_at_the_node_ips():
    old = svc("old", "LoadBalancer", [{"port": 80, "nodePort": 31080}], ingress=["127.0.1.1"])
    new = svc("aaa-new", "LoadBalancer", [{"port": 80, "nodePort": 31081}], ingress=["127.0.1.2"])
    old["metadata"]["creationTimestamp"], new["metadata"]["creationTimestamp"] = "2026-01-01T00:00:00Z", \
        "2026-01-02T00:00:00Z"
    text = build_rules([new, old], [], NodeFacts("n1", ("172.30.0.2",), "10.42.0.0/16"))
    at_node = [ln for ln in text.splitlines() if "-d 172.30.0.2 --dport 80" in ln]
    assert len(at_node) == 1 and "default/old" in at_node[0]
    assert "--dport 31081" in text, "the later one keeps its node port"


def test_a_load_balancer_of_another_class_is_not_served_at_the_node_ips():
    s = svc("metal", "LoadBalancer", [{"port": 80, "nodePort": 31080}])
    s["spec"]["loadBalancerClass"] = "metallb.io/metallb"
    assert "-d 172.30.0.2 --dport 80" not in build_rules([s], [], NodeFacts("n1", ("172.30.0.2",), "10.42.0.0/16"))


def test_publisher_never_binds_the_hosts_own_address_or_another_class():
    services = [svc("mine", "LoadBalancer", [{"port": 443, "nodePort": 31443}], ingress=["127.0.0.1"]),
                svc("other", "LoadBalancer", [{"port": 80, "nodePort": 31080}], ingress=["127.0.1.5"])]
    services[1]["spec"]["loadBalancerClass"] = "example.com/lb"
    plan = desired(services, "10.42.0.1", "127.0.0.1", node_ports=False)
    assert plan == {}, "127.0.0.1:443 is the ingress's; another class's address is not ours to serve"


def test_the_pool_must_be_loopback_without_the_hosts_address():
    import argparse
    from ketch.controllers.options import _loopback_cidr
    assert _loopback_cidr("127.0.1.0/24") == "127.0.1.0/24"
    for bad in ("10.0.0.0/24", "127.0.0.0/24", "fd00::/64"):
        with pytest.raises(argparse.ArgumentTypeError):
            _loopback_cidr(bad)
