"""Pure pieces of the endpoints and disruption controllers: subset packing, port resolution and
budget arithmetic, against upstream's rules."""
from __future__ import annotations

import pytest

from ketch.controllers.disruption import CountError, scaled_value
from ketch.controllers.endpoints import repack
from ketch.controllers.endpointutil import find_port, should_be_endpoint


def addr(ip: str, uid: str) -> dict:
    return {"ip": ip, "targetRef": {"kind": "Pod", "name": uid, "uid": uid}}


HTTP = {"name": "http", "port": 8080, "protocol": "TCP"}
METRICS = {"name": "metrics", "port": 9090, "protocol": "TCP"}


def test_addresses_with_the_same_ports_share_a_subset():
    subsets = repack([(addr("10.0.0.2", "b"), [HTTP, METRICS], True), (addr("10.0.0.1", "a"), [METRICS, HTTP], True),
                      (addr("10.0.0.3", "c"), [HTTP, METRICS], False)])
    assert subsets == [{"addresses": [addr("10.0.0.1", "a"), addr("10.0.0.2", "b")],
                        "notReadyAddresses": [addr("10.0.0.3", "c")], "ports": [HTTP, METRICS]}]


def test_different_port_sets_make_different_subsets():
    subsets = repack([(addr("10.0.0.1", "a"), [HTTP], True), (addr("10.0.0.2", "b"), [HTTP, METRICS], True)])
    assert subsets == [{"addresses": [addr("10.0.0.1", "a"), addr("10.0.0.2", "b")], "ports": [HTTP]},
                       {"addresses": [addr("10.0.0.2", "b")], "ports": [METRICS]}]


def test_not_ready_trumps_ready_for_the_same_address_and_port():
    subsets = repack([(addr("10.0.0.1", "a"), [HTTP], True), (addr("10.0.0.1", "a"), [HTTP], False)])
    assert subsets == [{"notReadyAddresses": [addr("10.0.0.1", "a")], "ports": [HTTP]}]


def test_addresses_sort_numerically_and_portless_subsets_stay():
    subsets = repack([(addr("10.0.0.10", "x"), [], True), (addr("10.0.0.9", "y"), [], True)])
    assert subsets == [{"addresses": [addr("10.0.0.9", "y"), addr("10.0.0.10", "x")]}]


POD = {"metadata": {"name": "p"}, "spec": {"containers": [
    {"name": "c", "ports": [{"name": "web", "containerPort": 8080}, {"name": "dns", "containerPort": 53,
                                                                    "protocol": "UDP"}]}]},
       "status": {"podIP": "10.0.0.1", "phase": "Running"}}


def test_target_ports_resolve_by_number_or_by_name_and_protocol():
    assert find_port(POD, {"port": 80, "targetPort": 9000}) == 9000
    assert find_port(POD, {"port": 80}) == 80
    assert find_port(POD, {"port": 80, "targetPort": "web"}) == 8080
    assert find_port(POD, {"port": 53, "targetPort": "dns", "protocol": "UDP"}) == 53
    assert find_port(POD, {"port": 53, "targetPort": "dns"}) is None  # TCP has no port named dns
    assert find_port(POD, {"port": 80, "targetPort": "nope"}) is None


def test_which_pods_become_endpoints():
    assert should_be_endpoint(POD, include_terminating=False)
    assert not should_be_endpoint({**POD, "status": {"phase": "Running"}}, include_terminating=True)
    done = {**POD, "spec": {**POD["spec"], "restartPolicy": "Never"}, "status": {**POD["status"], "phase": "Succeeded"}}
    assert not should_be_endpoint(done, include_terminating=True)
    going = {**POD, "metadata": {"name": "p", "deletionTimestamp": "2026-01-01T00:00:00Z"}}
    assert not should_be_endpoint(going, include_terminating=False) and should_be_endpoint(going, True)


def test_budget_values_scale_and_round_up():
    assert scaled_value(3, 10) == 3
    assert scaled_value("50%", 3) == 2
    assert scaled_value("10%", 1) == 1
    assert scaled_value("0%", 7) == 0
    with pytest.raises(CountError, match="string is not a percentage"):
        scaled_value("2", 5)
