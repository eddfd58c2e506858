"""The pure parts of the node's underlay: which routes to other nodes' pods, which CIDRs will do."""
import pytest

from ketch.agent.nodenet import check_underlay_cidr, node_routes


def node(name, ip, cidr):
    return {"metadata": {"name": name}, "spec": {"podCIDR": cidr, "podCIDRs": [cidr]},
            "status": {"addresses": [{"type": "InternalIP", "address": ip}, {"type": "Hostname", "address": name}]}}


def test_routes_to_the_other_nodes_pods_on_the_underlay_only():
    nodes = [node("a", "172.30.0.2", "10.42.0.0/24"), node("b", "172.30.0.3", "10.42.1.0/24"),
             node("sim", "10.244.0.7", "10.42.2.0/24"), node("lo", "127.0.0.1", "10.42.3.0/24"),
             {"metadata": {"name": "new"}, "spec": {}, "status": {}}]
    assert node_routes(nodes, "a", "172.30.0.0/16") == {"10.42.1.0/24": "172.30.0.3"}
    # --network host: any other node, but never a loopback next hop
    assert node_routes(nodes, "a", None) == {"10.42.1.0/24": "172.30.0.3", "10.42.2.0/24": "10.244.0.7"}


def test_underlay_cidr_must_stay_clear_of_the_cluster_ranges():
    assert check_underlay_cidr("172.30.0.1/16", "10.42.0.0/16", "10.43.0.0/16") == "172.30.0.0/16"
    for bad, why in (("10.42.0.0/24", "overlaps"), ("10.43.0.0/20", "overlaps"), ("127.1.0.0/16", "loopback"),
                     ("172.30.0.0/30", "/29"), ("fd00::/64", "IPv4")):
        with pytest.raises(ValueError, match=why):
            check_underlay_cidr(bad, "10.42.0.0/16", "10.43.0.0/16")
