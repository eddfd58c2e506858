"""Quota accounting (ketch/api/quota.py): pod sums, evaluators' usage and matching, scopes."""
from __future__ import annotations

import datetime

from ketch.api import quota as q


def pod(*containers, init=(), **spec):
    return {"metadata": {"name": "p"}, "spec": {"containers": list(containers), "initContainers": list(init), **spec},
            "status": {"phase": "Pending"}}


def c(name="c", restart=None, **resources):
    out = {"name": name, "resources": resources}
    if restart:
        out["restartPolicy"] = restart
    return out


def text(rl):
    return q.to_json(rl)


def test_pod_requests_sum_containers_and_take_the_largest_init_container():
    p = pod(c("a", requests={"cpu": "100m", "memory": "64Mi"}), c("b", requests={"cpu": "200m"}),
            init=(c("i", requests={"cpu": "1", "memory": "32Mi"}),))
    assert text(q.pod_resources(p, "requests")) == {"cpu": "1", "memory": "64Mi"}


def test_sidecars_add_up_and_overhead_counts_for_quota():
    p = pod(c("a", requests={"cpu": "100m"}, limits={"cpu": "200m"}),
            init=(c("side", restart="Always", requests={"cpu": "50m"}), c("i", requests={"cpu": "120m"})),
            overhead={"cpu": "10m", "memory": "1Mi"})
    # The init container runs beside the sidecar started before it: 120m + 50m > 100m + 50m.
    assert text(q.pod_resources(p, "requests", overhead=False)) == {"cpu": "170m"}
    assert text(q.pod_resources(p, "requests")) == {"cpu": "180m", "memory": "1Mi"}
    # Overhead raises only the limits that are set.
    assert text(q.pod_resources(p, "limits")) == {"cpu": "210m"}


def test_pod_usage_names_and_terminal_pods():
    e = q.evaluator("", "pods")
    p = pod(c(requests={"cpu": "250m", "memory": "1Gi", "nvidia.com/gpu": "1", "hugepages-2Mi": "4Mi"},
              limits={"memory": "2Gi"}))
    assert text(e.usage(p)) == {
        "count/pods": "1", "pods": "1", "cpu": "250m", "requests.cpu": "250m", "memory": "1Gi",
        "requests.memory": "1Gi", "limits.memory": "2Gi", "requests.nvidia.com/gpu": "1",
        "hugepages-2Mi": "4Mi", "requests.hugepages-2Mi": "4Mi"}
    p["status"]["phase"] = "Failed"
    assert text(e.usage(p)) == {"count/pods": "1"}


def test_pods_past_their_deletion_grace_stop_counting():
    p = pod(c())
    past = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=60)
    p["metadata"].update(deletionTimestamp=past.strftime("%Y-%m-%dT%H:%M:%SZ"), deletionGracePeriodSeconds=30)
    assert not q.pod_counts(p)
    p["metadata"]["deletionGracePeriodSeconds"] = 3600
    assert q.pod_counts(p)


def test_constraints_name_missing_resources_per_container():
    e = q.evaluator("", "pods")
    p = pod(c("a", requests={"cpu": "1"}), c("b"))
    assert e.constraints(["requests.cpu", "limits.cpu", "pods"], p) == \
        "must specify limits.cpu for: a,b; requests.cpu for: b"
    assert e.constraints(["pods", "requests.storage"], p) is None


def test_services_claims_and_object_counts():
    svc = {"spec": {"type": "LoadBalancer", "ports": [{"port": 80}, {"port": 443}]}}
    assert text(q.evaluator("", "services").usage(svc)) == {
        "count/services": "1", "services": "1", "services.loadbalancers": "1", "services.nodeports": "2"}
    svc["spec"]["allocateLoadBalancerNodePorts"] = False
    assert text(q.evaluator("", "services").usage(svc))["services.nodeports"] == "0"
    pvc = {"metadata": {"annotations": {"volume.beta.kubernetes.io/storage-class": "fast"}},
           "spec": {"resources": {"requests": {"storage": "1Gi"}}}, "status": {"allocatedResources": {"storage": "2Gi"}}}
    assert text(q.evaluator("", "persistentvolumeclaims").usage(pvc)) == {
        "count/persistentvolumeclaims": "1", "persistentvolumeclaims": "1", "requests.storage": "2Gi",
        "fast.storageclass.storage.k8s.io/persistentvolumeclaims": "1",
        "fast.storageclass.storage.k8s.io/requests.storage": "2Gi"}
    assert text(q.evaluator("", "secrets").usage({})) == {"count/secrets": "1", "secrets": "1"}
    assert text(q.evaluator("apps", "deployments").usage({})) == {"count/deployments.apps": "1"}


def test_evaluators_for_quota_names():
    found = {(e.group, e.resource) for e in q.evaluators_for(
        ["pods", "requests.storage", "count/deployments.apps", "configmaps", "services.nodeports"])}
    assert found == {("", "pods"), ("", "persistentvolumeclaims"), ("apps", "deployments"), ("", "configmaps"),
                     ("", "services")}


def test_scopes():
    e = q.evaluator("", "pods")
    best_effort = pod(c())
    burstable = pod(c(requests={"cpu": "1"}), activeDeadlineSeconds=10, priorityClassName="high")

    def quota(scopes=(), exprs=()):
        return {"spec": {"hard": {"pods": "1"}, "scopes": list(scopes),
                         "scopeSelector": {"matchExpressions": list(exprs)}}}

    assert e.matches(quota(["BestEffort"]), best_effort) and not e.matches(quota(["BestEffort"]), burstable)
    assert e.matches(quota(["NotBestEffort", "Terminating"]), burstable)
    assert not e.matches(quota(["Terminating"]), best_effort)
    prio = {"scopeName": "PriorityClass", "operator": "In", "values": ["high"]}
    assert e.matches(quota(exprs=[prio]), burstable) and not e.matches(quota(exprs=[prio]), best_effort)
    # Scoped quotas count pods only.
    assert not q.evaluator("", "services").matches(
        {"spec": {"hard": {"services": "1"}, "scopes": ["BestEffort"]}}, {"spec": {}})


def test_list_arithmetic_and_messages():
    used, hard = q.parse({"pods": "3", "cpu": "500m"}), q.parse({"pods": "3", "cpu": "1"})
    new = q.add(used, q.parse({"pods": "1", "cpu": "500m"}))
    assert q.exceeded(new, hard) == ["pods"]
    assert q.pretty(q.parse({"pods": "1", "cpu": "1500m"})) == "cpu=1500m,pods=1"
    assert text(q.subtract_non_negative(q.parse({"a": "1", "b": "2"}), q.parse({"a": "3"}))) == {"a": "0", "b": "2"}
