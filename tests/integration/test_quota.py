"""ResourceQuota on a real server: admission refuses what would exceed a quota with upstream's
Forbidden messages and charges what it admits (exactly, under concurrent creates); the
resourcequota controller keeps status.hard and status.used true, so `kubectl describe quota` and
`kubectl describe namespace` show Used against Hard; the book's chapter 3 walkthrough (a
4-replica RC under a 3-pod quota) ends with 3 pods and FailedCreate events.
"""
from __future__ import annotations

import re
import threading

import pytest
import yaml

from helpers.cluster import BOOK, unique, wait_for
from helpers.http import Api


@pytest.fixture(scope="module")
def api(server):
    return Api(server.kubeconfig)


@pytest.fixture
def ns(server, api):
    name = unique("quota")
    server.kubectl("create", "namespace", name)
    yield name
    api.request("DELETE", f"/api/v1/namespaces/{name}")


def pod(name: str, **resources) -> dict:
    container = {"name": "c", "image": "busybox"}
    if resources:
        container["resources"] = resources
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"schedulerName": "none", "containers": [container]}}


def quota(name: str, hard: dict, **spec) -> dict:
    return {"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": name}, "spec": {"hard": hard, **spec}}


def post(api: Api, ns: str, plural: str, obj: dict, group: str = "/api/v1", query: str = ""):
    return api.request("POST", f"{group}/namespaces/{ns}/{plural}{query}", obj)


def create(api: Api, ns: str, plural: str, obj: dict, group: str = "/api/v1") -> dict:
    status, body, _ = post(api, ns, plural, obj, group)
    assert status == 201, body
    return body


def refused(api: Api, ns: str, plural: str, obj: dict, group: str = "/api/v1") -> str:
    status, body, _ = post(api, ns, plural, obj, group)
    assert status == 403 and body["reason"] == "Forbidden", body
    return body["message"]


def used(api: Api, ns: str, name: str) -> dict:
    status, body, _ = api.request("GET", f"/api/v1/namespaces/{ns}/resourcequotas/{name}")
    assert status == 200, body
    return (body.get("status") or {}).get("used") or {}


def make_quota(api: Api, ns: str, name: str, hard: dict, **spec) -> None:
    """Create a quota and wait for the controller's first count."""
    create(api, ns, "resourcequotas", quota(name, hard, **spec))
    wait_for(lambda: set(used(api, ns, name)) == set(hard), what=f"quota {name} counted")


def describe_rows(text: str) -> dict[str, tuple[str, str]]:
    """`Resource  Used  Hard` rows of kubectl describe output, by resource."""
    rows = {}
    for line in text.splitlines():
        m = re.fullmatch(r"\s*(\S+)\s+(\d\S*)\s+(\d\S*)\s*", line)
        if m:
            rows[m[1]] = (m[2], m[3])
    return rows


def test_book_quota_limits_an_rc_to_three_pods(server, api, ns, simulated_nodes):
    """Chapter 3, Listings 3-16 and 3-17: describe namespace shows the quota, the RC of 4 gets 3."""
    doc = yaml.safe_load((BOOK / "Chapter03/quota.yaml").read_text())
    doc["metadata"]["namespace"] = ns
    server.kubectl("create", "-f", "-", input=yaml.safe_dump(doc))
    described = wait_for(lambda: (out := server.kubectl("describe", f"namespace/{ns}").stdout)
                         and "pods                    0     3" in out and out, what="quota counted")
    assert "test-quotas" in described
    assert describe_rows(described) == {"pods": ("0", "3"), "replicationcontrollers": ("0", "1"),
                                        "services": ("0", "1")}

    rc = yaml.safe_load((BOOK / "Chapter03/busybox-ns.yaml").read_text())
    rc["metadata"]["namespace"] = ns
    server.kubectl("create", "-f", "-", input=yaml.safe_dump(rc))
    pattern = re.compile(r'Error creating: pods "busybox-ns-[a-z0-9]{5}" is forbidden: exceeded quota: test-quotas, '
                         r"requested: pods=1, used: pods=3, limited: pods=3")
    described_rc = wait_for(lambda: (out := server.kubectl("describe", "rc/busybox-ns", f"--namespace={ns}").stdout)
                            and pattern.search(out) and out, what="FailedCreate event", timeout=20)
    assert re.search(r"Warning\s+FailedCreate", described_rc)
    wait_for(lambda: describe_rows(server.kubectl("describe", f"namespace/{ns}").stdout)
             == {"pods": ("3", "3"), "replicationcontrollers": ("1", "1"), "services": ("0", "1")},
             what="used at the maximum")
    out = server.kubectl("get", "pods", "-n", ns, "--no-headers").stdout.splitlines()
    assert len(out) == 3, out
    # Only one RC fits either.
    rc["metadata"]["name"] = "another"
    second = server.kubectl("create", "-f", "-", input=yaml.safe_dump(rc), check=False)
    assert second.returncode != 0
    assert ('replicationcontrollers "another" is forbidden: exceeded quota: test-quotas, requested: '
            "replicationcontrollers=1, used: replicationcontrollers=1, limited: replicationcontrollers=1") \
        in second.stderr


def test_concurrent_creates_admit_exactly_the_quota(api, ns):
    make_quota(api, ns, "three", {"pods": "3"})
    results: list[tuple[int, dict]] = []
    lock = threading.Lock()

    def one(i: int) -> None:
        status, body, _ = post(api, ns, "pods", pod(f"p{i}"))
        with lock:
            results.append((status, body))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(s for s, _ in results) == [201] * 3 + [403] * 7, [b.get("message") for _, b in results]
    for status, body in results:
        if status == 403:
            assert re.fullmatch(r'pods "p\d" is forbidden: exceeded quota: three, requested: pods=1, '
                                r"used: pods=3, limited: pods=3", body["message"]), body
    _, listed, _ = api.request("GET", f"/api/v1/namespaces/{ns}/pods")
    assert len(listed["items"]) == 3
    assert used(api, ns, "three") == {"pods": "3"}


def test_usage_is_released_by_deletes_and_finished_pods(api, ns):
    make_quota(api, ns, "two", {"pods": "2", "count/pods": "3"})
    create(api, ns, "pods", pod("a"))
    create(api, ns, "pods", pod("b"))
    assert "exceeded quota: two, requested: pods=1, used: pods=2, limited: pods=2" in \
        refused(api, ns, "pods", pod("c"))
    # A pod that finished uses no pod quota (count/pods counts every stored pod).
    status, current, _ = api.request("GET", f"/api/v1/namespaces/{ns}/pods/a")
    current["status"]["phase"] = "Succeeded"
    status, body, _ = api.request("PUT", f"/api/v1/namespaces/{ns}/pods/a/status", current)
    assert status == 200, body
    wait_for(lambda: used(api, ns, "two") == {"pods": "1", "count/pods": "2"}, what="finished pod released")
    create(api, ns, "pods", pod("c"))
    assert refused(api, ns, "pods", pod("d")) == (
        'pods "d" is forbidden: exceeded quota: two, requested: count/pods=1,pods=1, used: count/pods=3,pods=2, '
        "limited: count/pods=3,pods=2")
    status, body, _ = api.request("DELETE", f"/api/v1/namespaces/{ns}/pods/a?gracePeriodSeconds=0")
    assert status == 200, body
    wait_for(lambda: used(api, ns, "two") == {"pods": "2", "count/pods": "2"}, what="deleted pod released")


def test_compute_quota_needs_requests_and_limits(server, api, ns):
    make_quota(api, ns, "compute", {"requests.cpu": "1", "limits.memory": "1Gi", "memory": "2Gi"})
    two = pod("two")
    two["spec"]["containers"].append({"name": "d", "image": "busybox", "resources": {"requests": {"cpu": "100m"}}})
    assert refused(api, ns, "pods", two) == (
        'pods "two" is forbidden: failed quota: compute: must specify limits.memory for: c,d; memory for: c,d; '
        "requests.cpu for: c")
    sized = {"requests": {"cpu": "600m", "memory": "256Mi"}, "limits": {"memory": "512Mi"}}
    create(api, ns, "pods", pod("first", **sized))
    assert refused(api, ns, "pods", pod("second", **sized)) == (
        'pods "second" is forbidden: exceeded quota: compute, requested: requests.cpu=600m, used: '
        "requests.cpu=600m, limited: requests.cpu=1")
    create(api, ns, "pods", pod("small", requests={"cpu": "400m", "memory": "256Mi"}, limits={"memory": "512Mi"}))
    rows = describe_rows(server.kubectl("describe", "quota", "compute", "-n", ns).stdout)
    assert rows == {"limits.memory": ("1Gi", "1Gi"), "memory": ("512Mi", "2Gi"), "requests.cpu": ("1", "1")}


def test_object_counts_services_and_claims(api, ns):
    make_quota(api, ns, "objects", {
        "services": "2", "services.nodeports": "1", "services.loadbalancers": "0", "configmaps": "2",
        "secrets": "1", "count/deployments.apps": "1", "persistentvolumeclaims": "2", "requests.storage": "3Gi",
        "gold.storageclass.storage.k8s.io/requests.storage": "1Gi", "resourcequotas": "1"})
    # Every namespace starts with the kube-root-ca.crt ConfigMap; the quota counts itself.
    assert used(api, ns, "objects")["configmaps"] == "1" and used(api, ns, "objects")["resourcequotas"] == "1"
    assert "requested: resourcequotas=1, used: resourcequotas=1, limited: resourcequotas=1" in refused(
        api, ns, "resourcequotas", quota("second", {"pods": "1"}))

    def svc(name, kind="ClusterIP", ports=1):
        return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
                "spec": {"type": kind, "selector": {"app": name},
                         "ports": [{"name": f"p{i}", "port": 80 + i} for i in range(ports)]}}

    assert "exceeded quota: objects, requested: services.nodeports=2, used: services.nodeports=0, " \
           "limited: services.nodeports=1" in refused(api, ns, "services", svc("np2", "NodePort", 2))
    assert "requested: services.loadbalancers=1, used: services.loadbalancers=0, limited: " \
           "services.loadbalancers=0" in refused(api, ns, "services", svc("lb", "LoadBalancer"))
    create(api, ns, "services", svc("np", "NodePort"))
    create(api, ns, "services", svc("plain"))
    assert "requested: services=1, used: services=2, limited: services=2" in refused(api, ns, "services", svc("x"))
    # An update that grows usage is charged too.
    status, current, _ = api.request("GET", f"/api/v1/namespaces/{ns}/services/plain")
    current["spec"]["type"] = "NodePort"
    status, body, _ = api.request("PUT", f"/api/v1/namespaces/{ns}/services/plain", current)
    assert status == 403 and "requested: services.nodeports=1, used: services.nodeports=1" in body["message"], body

    create(api, ns, "configmaps", {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "one"}})
    assert "requested: configmaps=1, used: configmaps=2, limited: configmaps=2" in refused(
        api, ns, "configmaps", {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "two"}})
    create(api, ns, "secrets", {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}})
    refused(api, ns, "secrets", {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "t"}})

    deploy = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d1"},
              "spec": {"replicas": 0, "selector": {"matchLabels": {"a": "b"}},
                       "template": {"metadata": {"labels": {"a": "b"}},
                                    "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}}
    create(api, ns, "deployments", deploy, "/apis/apps/v1")
    deploy["metadata"]["name"] = "d2"
    assert refused(api, ns, "deployments", deploy, "/apis/apps/v1") == (
        'deployments.apps "d2" is forbidden: exceeded quota: objects, requested: count/deployments.apps=1, '
        "used: count/deployments.apps=1, limited: count/deployments.apps=1")
    # Deleting releases it at once (well before the 30 s recount).
    status, body, _ = api.request("DELETE", f"/apis/apps/v1/namespaces/{ns}/deployments/d1")
    assert status == 200, body
    wait_for(lambda: used(api, ns, "objects")["count/deployments.apps"] == "0", timeout=8, what="release")
    create(api, ns, "deployments", deploy, "/apis/apps/v1")

    def claim(name, size, cls=None):
        spec = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}}
        if cls is not None:
            spec["storageClassName"] = cls
        return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name}, "spec": spec}

    assert "requested: gold.storageclass.storage.k8s.io/requests.storage=2Gi, used: " \
           "gold.storageclass.storage.k8s.io/requests.storage=0, limited: " \
           "gold.storageclass.storage.k8s.io/requests.storage=1Gi" in refused(
               api, ns, "persistentvolumeclaims", claim("gold", "2Gi", "gold"))
    create(api, ns, "persistentvolumeclaims", claim("big", "2Gi", "none"))
    assert "requested: requests.storage=2Gi, used: requests.storage=2Gi, limited: requests.storage=3Gi" in refused(
        api, ns, "persistentvolumeclaims", claim("more", "2Gi", "none"))
    wait_for(lambda: (u := used(api, ns, "objects")) and u["services"] == "2" and u["services.nodeports"] == "1"
             and u["requests.storage"] == "2Gi" and u["count/deployments.apps"] == "1" and u["secrets"] == "1"
             and u["configmaps"] == "2" and u["persistentvolumeclaims"] == "1", what="usage recorded")


def test_scopes_select_the_pods_a_quota_counts(api, ns):
    make_quota(api, ns, "besteffort", {"pods": "1"}, scopes=["BestEffort"])
    make_quota(api, ns, "terminating", {"pods": "1"}, scopes=["Terminating", "NotBestEffort"])
    make_quota(api, ns, "priority", {"pods": "0"},
               scopeSelector={"matchExpressions": [{"scopeName": "PriorityClass", "operator": "In",
                                                    "values": ["system-cluster-critical"]}]})
    create(api, ns, "pods", pod("be1"))
    assert "exceeded quota: besteffort" in refused(api, ns, "pods", pod("be2"))
    sized = {"requests": {"cpu": "10m"}}
    create(api, ns, "pods", pod("burstable1", **sized))
    create(api, ns, "pods", pod("burstable2", **sized))  # not terminating: no quota covers it
    short = pod("short1", **sized)
    short["spec"]["activeDeadlineSeconds"] = 60
    create(api, ns, "pods", short)
    short["metadata"]["name"] = "short2"
    assert "exceeded quota: terminating, requested: pods=1, used: pods=1, limited: pods=1" in \
        refused(api, ns, "pods", short)
    critical = pod("critical", **sized)
    critical["spec"]["priorityClassName"] = "system-cluster-critical"
    assert "exceeded quota: priority, requested: pods=1, used: pods=0, limited: pods=0" in \
        refused(api, ns, "pods", critical)
    wait_for(lambda: used(api, ns, "besteffort") == {"pods": "1"} and used(api, ns, "terminating") == {"pods": "1"}
             and used(api, ns, "priority") == {"pods": "0"}, what="scoped usage")


def test_dry_runs_and_taken_names_are_not_charged(api, ns):
    make_quota(api, ns, "one", {"pods": "1", "configmaps": "3"})
    status, body, _ = post(api, ns, "pods", pod("dry"), query="?dryRun=All")
    assert status == 201, body
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"}}
    create(api, ns, "configmaps", cm)
    status, body, _ = post(api, ns, "configmaps", cm)
    assert status == 409 and body["reason"] == "AlreadyExists", body
    assert used(api, ns, "one") == {"pods": "0", "configmaps": "2"}
    create(api, ns, "pods", pod("real"))
    status, body, _ = post(api, ns, "pods", pod("dry2"), query="?dryRun=All")
    assert status == 403 and "exceeded quota: one" in body["message"], body


def test_quota_counts_what_exists_and_follows_spec_edits(server, api, ns):
    for i in range(2):
        create(api, ns, "pods", pod(f"old{i}"))
    # Created right before a pod: admission counts what exists even before the controller has.
    create(api, ns, "resourcequotas", quota("late", {"pods": "2"}))
    assert "used: pods=2, limited: pods=2" in refused(api, ns, "pods", pod("new"))
    server.kubectl("patch", "quota", "late", "-n", ns, "-p", '{"spec":{"hard":{"pods":"5","services":"1"}}}')
    create(api, ns, "pods", pod("new"))
    wait_for(lambda: describe_rows(server.kubectl("describe", "quota", "late", "-n", ns).stdout)
             == {"pods": ("3", "5"), "services": ("0", "1")}, what="describe shows the new hard")
