"""PriorityClasses (scheduling.k8s.io/v1) through real kubectl: the system classes every cluster
has, validation as upstream's, and the Priority admission plugin resolving a pod's priority and
preemption policy from its class or the global default."""
from __future__ import annotations

import json

import pytest
from helpers.cluster import start_server


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    # A server of its own: a global default class changes every pod created after it.
    server = start_server(tmp_path_factory.mktemp("priority"),
                          extra_args=["--disable-controller-manager", "--disable-scheduler"])
    try:
        yield server
    finally:
        server.stop()


def pod(name: str, **spec) -> str:
    return json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                       "spec": {"containers": [{"name": "c", "image": "busybox"}], **spec}})


def created_pod_spec(srv, name: str, **spec) -> dict:
    srv.kubectl("create", "-f", "-", input=pod(name, **spec))
    return srv.kubectl_json("get", "pod", name)["spec"]


def refused(srv, manifest: str) -> str:
    got = srv.kubectl("create", "-f", "-", input=manifest, check=False)
    assert got.returncode != 0, got.stdout
    return got.stderr.strip()


def test_system_classes_are_there_with_the_columns_kubectl_shows(srv):
    out = srv.kubectl("get", "pc").stdout.splitlines()
    assert out[0].split() == ["NAME", "VALUE", "GLOBAL-DEFAULT", "AGE", "PREEMPTIONPOLICY"]
    rows = {line.split()[0]: line.split() for line in out[1:]}
    assert rows["system-node-critical"][1:3] == ["2000001000", "false"]
    assert rows["system-cluster-critical"][1:3] == ["2000000000", "false"]
    assert rows["system-cluster-critical"][-1] == "PreemptLowerPriority"
    spec = created_pod_spec(srv, "critical", priorityClassName="system-node-critical")
    assert (spec["priority"], spec["preemptionPolicy"]) == (2000001000, "PreemptLowerPriority")


def test_a_pod_gets_its_class_priority_and_policy(srv):
    srv.kubectl("create", "priorityclass", "batch-low", "--value=100", "--preemption-policy=Never",
                "--description=background work")
    pc = srv.kubectl_json("get", "priorityclass", "batch-low")
    assert (pc["value"], pc["preemptionPolicy"], pc["description"]) == (100, "Never", "background work")
    spec = created_pod_spec(srv, "low", priorityClassName="batch-low")
    assert (spec["priority"], spec["preemptionPolicy"]) == (100, "Never")
    # Without a class and without a default: priority 0.
    spec = created_pod_spec(srv, "plain")
    assert (spec["priority"], spec["preemptionPolicy"]) == (0, "PreemptLowerPriority")
    assert "priorityClassName" not in spec


def test_pods_that_contradict_or_miss_their_class_are_refused(srv):
    assert refused(srv, pod("ghost", priorityClassName="nope")) == (
        'Error from server (Forbidden): error when creating "STDIN": pods "ghost" is forbidden: '
        "no PriorityClass with name nope was found")
    assert "the integer value of priority (7) must not be provided in pod spec; priority admission " \
           "controller computed 0 from the given PriorityClass name" in refused(srv, pod("seven", priority=7))
    assert "the string value of PreemptionPolicy (Never) must not be provided in pod spec; priority admission " \
           "controller computed PreemptLowerPriority from the given PriorityClass name" in refused(
               srv, pod("never", priorityClassName="system-cluster-critical", preemptionPolicy="Never"))


def test_class_validation(srv):
    def pc(name: str, value: int, **fields) -> str:
        return json.dumps({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
                           "metadata": {"name": name}, "value": value, **fields})

    assert 'metadata.name: Forbidden: priority class names with \'system-\' prefix are reserved for system ' \
           'use only. error: system-mine is not a known system priority class' in refused(srv, pc("system-mine", 1))
    assert "value: Forbidden: maximum allowed value of a user defined priority is 1000000000" in refused(
        srv, pc("too-high", 1_000_000_001))
    assert 'preemptionPolicy: Unsupported value: "Sometimes": supported values: "PreemptLowerPriority", ' \
           '"Never"' in refused(srv, pc("odd", 1, preemptionPolicy="Sometimes"))
    srv.kubectl("create", "-f", "-", input=pc("fixed", 5))
    got = srv.kubectl("patch", "pc", "fixed", "--type=merge", "-p", '{"value": 6}', check=False)
    assert "value: Forbidden: may not be changed in an update." in got.stderr
    srv.kubectl("patch", "pc", "fixed", "--type=merge", "-p", '{"description": "may change"}')


def test_one_global_default_and_pods_without_a_class_get_it(srv):
    srv.kubectl("create", "priorityclass", "everyone", "--value=50", "--global-default=true")
    assert "PriorityClass everyone is already marked as default. Only one default can exist" in refused(
        srv, json.dumps({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
                         "metadata": {"name": "second"}, "value": 60, "globalDefault": True}))
    spec = created_pod_spec(srv, "defaulted")
    assert (spec["priorityClassName"], spec["priority"]) == ("everyone", 50)
    srv.kubectl("patch", "pc", "everyone", "--type=merge", "-p", '{"description": "still the default"}')
    srv.kubectl("delete", "pc", "everyone")
    assert created_pod_spec(srv, "after")["priority"] == 0
