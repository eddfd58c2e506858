"""LimitRanger admission on a real server: LimitRange defaults land in new pods (with upstream's
annotation, and in the QoS class), min/max/ratio bounds per container, per pod and per claim refuse
with upstream's Forbidden messages, and `kubectl describe` shows the ranges."""
from __future__ import annotations

import re
import time

import pytest

from helpers.cluster import unique
from helpers.http import Api

ANNOTATION = "kubernetes.io/limit-ranger"


@pytest.fixture(scope="module")
def api(server):
    return Api(server.kubeconfig)


@pytest.fixture
def ns(server, api):
    name = unique("limits")
    server.kubectl("create", "namespace", name)
    yield name
    api.request("DELETE", f"/api/v1/namespaces/{name}")


def limit_range(api: Api, ns: str, *limits: dict, name: str = "limits") -> dict:
    status, body, _ = api.request("POST", f"/api/v1/namespaces/{ns}/limitranges",
                                  {"apiVersion": "v1", "kind": "LimitRange", "metadata": {"name": name},
                                   "spec": {"limits": list(limits)}})
    assert status == 201, body
    return body


def pod(name: str, *containers: dict, init: tuple = ()) -> dict:
    spec = {"schedulerName": "none",
            "containers": list(containers) or [{"name": "c", "image": "busybox"}]}
    if init:
        spec["initContainers"] = list(init)
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


def container(name: str = "c", **resources) -> dict:
    return {"name": name, "image": "busybox", "resources": resources}


def create(api: Api, ns: str, obj: dict, plural: str = "pods") -> dict:
    status, body, _ = api.request("POST", f"/api/v1/namespaces/{ns}/{plural}", obj)
    assert status == 201, body
    return body


def refused(api: Api, ns: str, obj: dict, plural: str = "pods") -> str:
    status, body, _ = api.request("POST", f"/api/v1/namespaces/{ns}/{plural}", obj)
    assert status == 403 and body["reason"] == "Forbidden", body
    return body["message"]


def test_defaults_fill_containers_and_are_recorded(server, api, ns):
    limit_range(api, ns, {"type": "Container", "default": {"cpu": "500m", "memory": "256Mi"},
                          "defaultRequest": {"cpu": "100m"}})
    # The LimitRange's own defaulting: a default request falls back to the default limit.
    stored = server.kubectl_json("get", "limitrange", "limits", "-n", ns)
    assert stored["spec"]["limits"][0]["defaultRequest"] == {"cpu": "100m", "memory": "256Mi"}

    created = create(api, ns, pod("web", container("app"), container("side", limits={"cpu": "200m"}),
                                  init=(container("setup", requests={"cpu": "50m"}),)))
    app, side = created["spec"]["containers"]
    assert app["resources"] == {"limits": {"cpu": "500m", "memory": "256Mi"},
                                "requests": {"cpu": "100m", "memory": "256Mi"}}
    # `side` stated a cpu limit, so its cpu request defaulted to it, before admission.
    assert side["resources"] == {"limits": {"cpu": "200m", "memory": "256Mi"},
                                 "requests": {"cpu": "200m", "memory": "256Mi"}}
    assert created["spec"]["initContainers"][0]["resources"] == {
        "limits": {"cpu": "500m", "memory": "256Mi"}, "requests": {"cpu": "50m", "memory": "256Mi"}}
    assert created["metadata"]["annotations"][ANNOTATION] == (
        "LimitRanger plugin set: cpu, memory request for container app; cpu, memory limit for container app; "
        "memory request for container side; memory limit for container side; memory request for init container "
        "setup; cpu, memory limit for init container setup")
    assert created["status"]["qosClass"] == "Burstable"

    described = server.kubectl("describe", "limitrange", "limits", "-n", ns).stdout
    assert re.search(r"Container\s+cpu\s+-\s+-\s+100m\s+500m\s+-", described), described
    assert re.search(r"Container\s+memory\s+-\s+-\s+256Mi\s+256Mi\s+-", described), described
    assert "Resource Limits" in server.kubectl("describe", "namespace", ns).stdout


def test_defaults_equal_to_limits_make_guaranteed_pods(api, ns):
    limit_range(api, ns, {"type": "Container", "max": {"cpu": "1", "memory": "1Gi"}})
    created = create(api, ns, pod("g"))
    # max → default → defaultRequest: the pod asks for exactly its limits.
    assert created["spec"]["containers"][0]["resources"] == {"limits": {"cpu": "1", "memory": "1Gi"},
                                                             "requests": {"cpu": "1", "memory": "1Gi"}}
    assert created["status"]["qosClass"] == "Guaranteed"
    # A pod that states its own resources is not annotated.
    own = create(api, ns, pod("own", container(limits={"cpu": "1", "memory": "1Gi"})))
    assert ANNOTATION not in (own["metadata"].get("annotations") or {})


def test_container_bounds(server, api, ns):
    limit_range(api, ns, {"type": "Container", "min": {"cpu": "50m", "memory": "10Mi"},
                          "max": {"cpu": "500m", "memory": "1Gi"}, "maxLimitRequestRatio": {"cpu": "4"}})
    assert refused(api, ns, pod("big", container(limits={"cpu": "1"}, requests={"cpu": "500m"}))) == \
        'pods "big" is forbidden: maximum cpu usage per Container is 500m, but limit is 1'
    assert refused(api, ns, pod("tiny", container(requests={"memory": "5Mi"}))) == \
        'pods "tiny" is forbidden: minimum memory usage per Container is 10Mi, but request is 5Mi'
    assert refused(api, ns, pod("ratio", container(limits={"cpu": "400m"}, requests={"cpu": "50m"}))) == \
        'pods "ratio" is forbidden: cpu max limit to request ratio per Container is 4, but provided ratio is 8.000000'
    # Several problems are listed together, in brackets.
    assert refused(api, ns, pod("both", container(limits={"cpu": "2", "memory": "2Gi"}))) == (
        'pods "both" is forbidden: [maximum cpu usage per Container is 500m, but limit is 2, '
        "maximum memory usage per Container is 1Gi, but limit is 2Gi]")
    # kubectl prints the same.
    out = server.kubectl("run", "cli", "-n", ns, "--image=busybox", "--overrides",
                         '{"spec":{"containers":[{"name":"cli","image":"busybox",'
                         '"resources":{"limits":{"cpu":"1","memory":"100Mi"}}}]}}', check=False)
    assert out.returncode != 0
    assert 'Error from server (Forbidden): pods "cli" is forbidden: maximum cpu usage per Container is 500m, ' \
           "but limit is 1" in out.stderr
    # Within bounds (max is also the default limit, min the default request): admitted.
    fine = create(api, ns, pod("fine", container(limits={"cpu": "200m"}, requests={"cpu": "100m"})))
    assert fine["spec"]["containers"][0]["resources"]["limits"] == {"cpu": "200m", "memory": "1Gi"}


def test_pod_sums_and_init_containers(api, ns):
    limit_range(api, ns, {"type": "Pod", "max": {"cpu": "1"}, "min": {"memory": "100Mi"}})
    two = pod("sum", container("a", limits={"cpu": "600m"}, requests={"memory": "60Mi"}),
              container("b", limits={"cpu": "600m"}, requests={"memory": "60Mi"}))
    assert refused(api, ns, two) == 'pods "sum" is forbidden: maximum cpu usage per Pod is 1, but limit is 1200m'
    # The largest init container counts when it needs more than the app containers together.
    init = pod("init", container("a", limits={"cpu": "300m"}, requests={"memory": "60Mi"}),
               init=(container("setup", limits={"cpu": "1500m"}),))
    assert refused(api, ns, init) == ('pods "init" is forbidden: [minimum memory usage per Pod is 100Mi, but '
                                      "request is 60Mi, maximum cpu usage per Pod is 1, but limit is 1500m]")
    assert refused(api, ns, pod("none")) == ('pods "none" is forbidden: [minimum memory usage per Pod is 100Mi.  '
                                             "No request is specified, maximum cpu usage per Pod is 1.  No limit "
                                             "is specified]")
    create(api, ns, pod("ok", container("a", limits={"cpu": "500m"}, requests={"memory": "60Mi"}),
                        container("b", limits={"cpu": "500m"}, requests={"memory": "60Mi"})))


def test_claim_storage_bounds(api, ns):
    limit_range(api, ns, {"type": "PersistentVolumeClaim", "min": {"storage": "1Gi"}, "max": {"storage": "5Gi"}})

    def claim(name, size):
        return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name},
                "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "none",
                         "resources": {"requests": {"storage": size}}}}

    assert refused(api, ns, claim("huge", "10Gi"), "persistentvolumeclaims") == (
        'persistentvolumeclaims "huge" is forbidden: maximum storage usage per PersistentVolumeClaim is 5Gi, '
        "but request is 10Gi")
    assert refused(api, ns, claim("small", "500Mi"), "persistentvolumeclaims") == (
        'persistentvolumeclaims "small" is forbidden: minimum storage usage per PersistentVolumeClaim is 1Gi, '
        "but request is 500Mi")
    create(api, ns, claim("right", "2Gi"), "persistentvolumeclaims")


def test_ranges_apply_to_new_pods_only(api, ns):
    create(api, ns, pod("before"))
    limit_range(api, ns, {"type": "Container", "min": {"cpu": "100m"}})
    # Updating a pod that predates the range is not checked against it (nor re-defaulted).
    status, body, _ = api.request("PATCH", f"/api/v1/namespaces/{ns}/pods/before",
                                  {"metadata": {"labels": {"touched": "yes"}}},
                                  content_type="application/merge-patch+json")
    assert status == 200, body
    assert not body["spec"]["containers"][0].get("resources")
    assert "minimum cpu usage per Container is 100m, but request is 50m" in refused(
        api, ns, pod("after", container(requests={"cpu": "50m"})))


def test_limit_range_defaults_satisfy_a_compute_quota(api, ns):
    """LimitRanger mutates before ResourceQuota checks: defaults count, and satisfy must-specify."""
    status, body, _ = api.request("POST", f"/api/v1/namespaces/{ns}/resourcequotas",
                                  {"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "cpu"},
                                   "spec": {"hard": {"requests.cpu": "300m", "limits.cpu": "1"}}})
    assert status == 201, body
    assert "failed quota: cpu: must specify limits.cpu for: c; requests.cpu for: c" in refused(api, ns, pod("bare"))
    limit_range(api, ns, {"type": "Container", "default": {"cpu": "400m"}, "defaultRequest": {"cpu": "200m"}})
    create(api, ns, pod("defaulted"))
    assert "exceeded quota: cpu, requested: requests.cpu=200m, used: requests.cpu=200m, limited: requests.cpu=300m" \
        in refused(api, ns, pod("again"))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        _, q, _ = api.request("GET", f"/api/v1/namespaces/{ns}/resourcequotas/cpu")
        if (q.get("status") or {}).get("used") == {"limits.cpu": "400m", "requests.cpu": "200m"}:
            break
        time.sleep(0.05)
    assert q["status"]["used"] == {"limits.cpu": "400m", "requests.cpu": "200m"}
