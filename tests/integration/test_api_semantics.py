"""REST semantics of the real server on loopback: codes, reasons and messages a client sees."""
from __future__ import annotations

import json

import pytest

from helpers.cluster import unique
from helpers.http import Api


@pytest.fixture(scope="module")
def api(server):
    return Api(server.kubeconfig)


@pytest.fixture
def ns(api):
    name = unique("api")
    status, body, _ = api.request("POST", "/api/v1/namespaces", {"metadata": {"name": name}})
    assert status == 201, body
    yield name


def cm(name: str, **data) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data or {"k": "v"}}


def test_health_and_version_need_no_credentials(api):
    for path in ("/healthz", "/livez", "/readyz"):
        status, body, _ = api.request("GET", path, anonymous=True)
        assert (status, body) == (200, "ok")
    status, body, _ = api.request("GET", "/version", anonymous=True)
    assert status == 200 and body["major"] == "1" and body["gitVersion"].startswith("v1.")


def test_everything_else_needs_a_credential(api):
    status, body, _ = api.request("GET", "/api/v1/namespaces", anonymous=True)
    assert status == 401
    assert body["reason"] == "Unauthorized" and body["kind"] == "Status"


def test_bootstrap_objects_exist(api):
    for name in ("default", "kube-system", "kube-public", "kube-node-lease"):
        status, body, _ = api.request("GET", f"/api/v1/namespaces/{name}")
        assert status == 200 and body["status"]["phase"] == "Active"
    status, svc, _ = api.request("GET", "/api/v1/namespaces/default/services/kubernetes")
    assert status == 200 and svc["spec"]["clusterIP"] == "10.43.0.1"
    assert svc["spec"]["ports"][0]["port"] == 443


def test_create_get_conflict_and_not_found(api, ns):
    status, created, _ = api.request("POST", f"/api/v1/namespaces/{ns}/configmaps", cm("one"))
    assert status == 201
    meta = created["metadata"]
    assert meta["uid"] and meta["resourceVersion"] and meta["creationTimestamp"].endswith("Z")
    assert meta["namespace"] == ns
    status, body, _ = api.request("POST", f"/api/v1/namespaces/{ns}/configmaps", cm("one"))
    assert status == 409 and body["reason"] == "AlreadyExists"
    assert body["message"] == 'configmaps "one" already exists'
    assert body["details"] == {"name": "one", "kind": "configmaps"}
    status, body, _ = api.request("GET", f"/api/v1/namespaces/{ns}/configmaps/nope")
    assert status == 404 and body["reason"] == "NotFound" and body["message"] == 'configmaps "nope" not found'


def test_stale_resource_version_is_a_conflict(api, ns):
    _, created, _ = api.request("POST", f"/api/v1/namespaces/{ns}/configmaps", cm("cas"))
    first = dict(created, data={"k": "v2"})
    status, updated, _ = api.request("PUT", f"/api/v1/namespaces/{ns}/configmaps/cas", first)
    assert status == 200
    assert int(updated["metadata"]["resourceVersion"]) > int(created["metadata"]["resourceVersion"])
    stale = dict(created, data={"k": "v3"})
    status, body, _ = api.request("PUT", f"/api/v1/namespaces/{ns}/configmaps/cas", stale)
    assert status == 409 and body["reason"] == "Conflict"
    assert body["message"] == ('Operation cannot be fulfilled on configmaps "cas": the object has been modified; '
                               'please apply your changes to the latest version and try again')


def test_generate_name(api, ns):
    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"generateName": "gen-"}}
    status, created, _ = api.request("POST", f"/api/v1/namespaces/{ns}/configmaps", body)
    assert status == 201
    name = created["metadata"]["name"]
    assert name.startswith("gen-") and len(name) == len("gen-") + 5


def test_bad_input_gets_a_status_never_a_500(api, ns):
    cases = [
        ("POST", f"/api/v1/namespaces/{ns}/configmaps", b"{not json", "application/json", 400, "BadRequest"),
        ("POST", f"/api/v1/namespaces/{ns}/configmaps", b"a: [", "application/yaml", 400, "BadRequest"),
        ("POST", f"/api/v1/namespaces/{ns}/configmaps", b"{}", "text/plain", 415,
         "UnsupportedMediaType"),
        ("POST", f"/api/v1/namespaces/{ns}/configmaps",
         json.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "Bad_Name"}}).encode(),
         "application/json", 422, "Invalid"),
        ("POST", f"/api/v1/namespaces/{ns}/configmaps",
         json.dumps({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "x"}}).encode(),
         "application/json", 400, "BadRequest"),
        ("POST", f"/api/v1/namespaces/{ns}/configmaps", b"x" * (3 * 1024 * 1024 + 10), "application/json", 413,
         "RequestEntityTooLarge"),
        ("GET", f"/api/v1/namespaces/{ns}/configmaps?labelSelector=a%20in%20b", None, "", 400, "BadRequest"),
        ("GET", f"/api/v1/namespaces/{ns}/configmaps?fieldSelector=spec.foo%3Dx", None, "", 400, "BadRequest"),
        ("POST", f"/api/v1/namespaces/{ns}/configmaps/x", b"{}", "application/json", 405, "MethodNotAllowed"),
    ]
    for method, path, raw, ctype, code, reason in cases:
        status, body, _ = api.request(method, path, raw=raw, content_type=ctype)
        assert status == code, (method, path, ctype, status, body)
        assert body["kind"] == "Status" and body["reason"] == reason, body


def test_invalid_lists_each_bad_field(api, ns):
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": {"bad key!": "v"}},
           "spec": {"containers": [{"name": "Web"}]}}
    status, body, _ = api.request("POST", f"/api/v1/namespaces/{ns}/pods", pod)
    assert status == 422 and body["reason"] == "Invalid"
    fields = {c["field"] for c in body["details"]["causes"]}
    assert {"metadata.labels", "spec.containers[0].name", "spec.containers[0].image"} <= fields, body
    assert body["message"].startswith('Pod "p" is invalid: [')


def test_unknown_fields_strict_warn_ignore(api, ns):
    body = cm("strict")
    body["spec"] = {"oops": 1}
    status, err, _ = api.request("POST", f"/api/v1/namespaces/{ns}/configmaps?fieldValidation=Strict", body)
    assert status == 400 and err["message"] == 'strict decoding error: unknown field "spec"'
    status, created, headers = api.request("POST", f"/api/v1/namespaces/{ns}/configmaps?fieldValidation=Warn", body)
    assert status == 201 and "spec" not in created
    assert 'unknown field \\"spec\\"' in headers.get("Warning", "") or 'unknown field "spec"' in headers.get("Warning", "")


def test_list_paging_with_continue(api, ns):
    for i in range(7):
        api.request("POST", f"/api/v1/namespaces/{ns}/secrets", {"metadata": {"name": f"page-{i}"}})
    names, token, pages = [], "", 0
    while True:
        q = "?limit=3" + (f"&continue={token}" if token else "")
        status, page, _ = api.request("GET", f"/api/v1/namespaces/{ns}/secrets{q}")
        assert status == 200
        pages += 1
        names += [i["metadata"]["name"] for i in page["items"]]
        token = page["metadata"].get("continue", "")
        if not token:
            break
        assert page["metadata"]["remainingItemCount"] == 7 - len(names)
    assert pages == 3 and names == [f"page-{i}" for i in range(7)]


def test_label_and_field_selectors(api, ns):
    for name, tier in (("a", "web"), ("b", "db"), ("c", "web")):
        c = cm(name)
        c["metadata"]["labels"] = {"tier": tier}
        api.request("POST", f"/api/v1/namespaces/{ns}/configmaps", c)
    _, page, _ = api.request("GET", f"/api/v1/namespaces/{ns}/configmaps?labelSelector=tier%3Dweb")
    assert [i["metadata"]["name"] for i in page["items"]] == ["a", "c"]
    _, page, _ = api.request("GET", f"/api/v1/namespaces/{ns}/configmaps?labelSelector=tier%2Ctier%20notin%20(web)")
    assert [i["metadata"]["name"] for i in page["items"]] == ["b"]
    # `notin` also matches objects without the label, like the namespace's kube-root-ca.crt.
    _, page, _ = api.request("GET", f"/api/v1/namespaces/{ns}/configmaps?labelSelector=tier%20notin%20(web)")
    assert [i["metadata"]["name"] for i in page["items"]] == ["b", "kube-root-ca.crt"]
    _, page, _ = api.request("GET", f"/api/v1/namespaces/{ns}/configmaps?fieldSelector=metadata.name%21%3Da")
    assert [i["metadata"]["name"] for i in page["items"]] == ["b", "c", "kube-root-ca.crt"]


def test_watch_from_resource_version_sees_ordered_events(api, ns):
    _, created, _ = api.request("POST", f"/api/v1/namespaces/{ns}/configmaps", cm("w"))
    rv = created["metadata"]["resourceVersion"]
    api.request("PUT", f"/api/v1/namespaces/{ns}/configmaps/w", dict(created, data={"k": "2"}))
    api.request("DELETE", f"/api/v1/namespaces/{ns}/configmaps/w")
    status, body, _ = api.request(
        "GET", f"/api/v1/namespaces/{ns}/configmaps?watch=1&resourceVersion={rv}&timeoutSeconds=1")
    assert status == 200
    events = [body] if isinstance(body, dict) else [json.loads(line) for line in body.splitlines() if line.strip()]
    assert [e["type"] for e in events] == ["MODIFIED", "DELETED"]
    rvs = [int(e["object"]["metadata"]["resourceVersion"]) for e in events]
    assert rvs == sorted(rvs) and rvs[0] > int(rv)


def test_finalizers_hold_deletion(api, ns):
    c = cm("held")
    c["metadata"]["finalizers"] = ["example.com/hold"]
    api.request("POST", f"/api/v1/namespaces/{ns}/configmaps", c)
    status, body, _ = api.request("DELETE", f"/api/v1/namespaces/{ns}/configmaps/held")
    assert status == 200 and body["metadata"]["deletionTimestamp"]
    status, live, _ = api.request("GET", f"/api/v1/namespaces/{ns}/configmaps/held")
    assert status == 200 and live["metadata"]["finalizers"] == ["example.com/hold"]
    status, _, _ = api.request("PATCH", f"/api/v1/namespaces/{ns}/configmaps/held",
                               {"metadata": {"finalizers": None}}, content_type="application/merge-patch+json")
    assert status == 200
    status, _, _ = api.request("GET", f"/api/v1/namespaces/{ns}/configmaps/held")
    assert status == 404


def test_generation_only_on_kinds_upstream_keeps_it_for(api, ns):
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "g"}, "spec": {"ports": [{"port": 80}]}}
    status, created, _ = api.request("POST", f"/api/v1/namespaces/{ns}/services", svc)
    assert status == 201 and "generation" not in created["metadata"]
    status, patched, _ = api.request("PATCH", f"/api/v1/namespaces/{ns}/services/g", {"spec": {"ports": [{"port": 81}]}},
                                     content_type="application/merge-patch+json")
    assert status == 200 and patched["spec"]["ports"][0]["port"] == 81 and "generation" not in patched["metadata"]
    lease = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "g"},
             "spec": {"holderIdentity": "me"}}
    status, created, _ = api.request("POST", f"/apis/coordination.k8s.io/v1/namespaces/{ns}/leases", lease)
    assert status == 201 and "generation" not in created["metadata"]
    policy = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "g"},
              "spec": {"podSelector": {}}}
    status, created, _ = api.request("POST", f"/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies", policy)
    assert status == 201 and created["metadata"]["generation"] == 1


def test_created_objects_carry_spec_and_status_as_go_encodes_them(api, ns):
    """A zero spec or status struct is still encoded, with its non-omitempty fields."""
    def create(path: str, obj: dict) -> dict:
        status, created, _ = api.request("POST", path, obj)
        assert status == 201, created
        return created
    quota = create(f"/api/v1/namespaces/{ns}/resourcequotas", {"apiVersion": "v1", "kind": "ResourceQuota",
                                                               "metadata": {"name": "q"}})
    assert quota["spec"] == {} and quota["status"] == {}
    limits = create(f"/api/v1/namespaces/{ns}/limitranges", {"apiVersion": "v1", "kind": "LimitRange",
                                                             "metadata": {"name": "l"}})
    assert limits["spec"] == {"limits": None}
    rc = create(f"/api/v1/namespaces/{ns}/replicationcontrollers", {
        "apiVersion": "v1", "kind": "ReplicationController", "metadata": {"name": "rc"},
        "spec": {"replicas": 0, "selector": {"a": "b"}, "template": {"metadata": {"labels": {"a": "b"}}, "spec": {
            "containers": [{"name": "c", "image": "busybox"}]}}}})
    assert rc["status"] == {"replicas": 0}
    ingress = create(f"/apis/networking.k8s.io/v1/namespaces/{ns}/ingresses", {
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "i"},
        "spec": {"defaultBackend": {"service": {"name": "s", "port": {"number": 80}}}}})
    assert ingress["status"] == {"loadBalancer": {}}


def test_status_subresource_separates_spec_and_status(api, ns):
    # A suspended CronJob: no controller writes its status meanwhile.
    cron = {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "c"},
            "spec": {"schedule": "@yearly", "suspend": True, "jobTemplate": {"spec": {"template": {"spec": {
                "restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}}}}}
    path = f"/apis/batch/v1/namespaces/{ns}/cronjobs/c"
    status, created, _ = api.request("POST", f"/apis/batch/v1/namespaces/{ns}/cronjobs", cron)
    assert status == 201 and created["metadata"]["generation"] == 1 and created["status"] == {}
    when = "2026-01-01T00:00:00Z"
    status, after, _ = api.request("PATCH", f"{path}/status",
                                   {"status": {"lastScheduleTime": when}, "spec": {"schedule": "@daily"}},
                                   content_type="application/merge-patch+json")
    assert status == 200 and after["status"]["lastScheduleTime"] == when and after["spec"]["schedule"] == "@yearly"
    assert after["metadata"]["generation"] == 1
    status, after, _ = api.request("PATCH", path, {"spec": {"schedule": "@monthly"}, "status": {"lastScheduleTime": None}},
                                   content_type="application/merge-patch+json")
    assert after["spec"]["schedule"] == "@monthly" and after["status"]["lastScheduleTime"] == when
    assert after["metadata"]["generation"] == 2
    dep = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
           "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "d"}},
                    "template": {"metadata": {"labels": {"app": "d"}},
                                 "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}}
    assert api.request("POST", f"/apis/apps/v1/namespaces/{ns}/deployments", dep)[0] == 201
    status, scale, _ = api.request("GET", f"/apis/apps/v1/namespaces/{ns}/deployments/d/scale")
    assert status == 200 and scale["kind"] == "Scale" and scale["spec"]["replicas"] == 3
    assert scale["status"]["selector"] == "app=d"


def test_a_node_registers_with_its_status(api):
    """Upstream lets a Node carry its status on create (the kubelet registers that way), all but
    status.config; later main-resource writes keep the stored status."""
    name = unique("node")
    node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}, "spec": {"unschedulable": True},
            "status": {"capacity": {"cpu": "2", "pods": "10"}, "nodeInfo": {"kubeletVersion": "v1.35.0"},
                       "config": {"error": "set by a client"}}}
    status, created, _ = api.request("POST", "/api/v1/nodes", node)
    try:
        assert status == 201, created
        assert created["status"]["capacity"] == {"cpu": "2", "pods": "10"}
        assert created["status"]["nodeInfo"]["kubeletVersion"] == "v1.35.0" and "config" not in created["status"]
        status, after, _ = api.request("PATCH", f"/api/v1/nodes/{name}",
                                       {"metadata": {"labels": {"a": "b"}}, "status": {"capacity": {"cpu": "9"}}},
                                       content_type="application/merge-patch+json")
        assert status == 200 and after["status"]["capacity"] == {"cpu": "2", "pods": "10"}
    finally:
        api.request("DELETE", f"/api/v1/nodes/{name}")


def test_dry_run_writes_nothing(api, ns):
    status, body, _ = api.request("POST", f"/api/v1/namespaces/{ns}/configmaps?dryRun=All", cm("dry"))
    assert status == 201 and body["metadata"]["name"] == "dry"
    status, _, _ = api.request("GET", f"/api/v1/namespaces/{ns}/configmaps/dry")
    assert status == 404


def test_table_output(api, ns):
    api.request("POST", f"/api/v1/namespaces/{ns}/configmaps", cm("tbl", a="1", b="2"))
    status, table, _ = api.request("GET", f"/api/v1/namespaces/{ns}/configmaps",
                                   headers={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"})
    assert status == 200 and table["kind"] == "Table"
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Data", "Age"]
    row = next(r for r in table["rows"] if r["cells"][0] == "tbl")
    assert row["cells"][1] == 2
    assert row["object"]["kind"] == "PartialObjectMetadata"


def test_odd_paths_answer_with_a_status(api, ns):
    # Names may hold any character; unknown resources and methods answer with Status objects.
    cases = [("GET", f"/api/v1/namespaces/{ns}/secrets/a%0Ab", 404, "NotFound"),
             ("GET", f"/api/v1/namespaces/{ns}/pods/x/nosuchsub", 404, "NotFound"),
             ("GET", "/api/v1/nosuchresource", 404, "NotFound"),
             ("TRACE", "/api/v1", 405, "MethodNotAllowed"),
             ("PUT", "/apis/apps/v1", 405, "MethodNotAllowed")]
    for method, path, code, reason in cases:
        status, body, _ = api.request(method, path)
        assert status == code and body["kind"] == "Status" and body["reason"] == reason, (method, path, body)
    status, body, _ = api.request("GET", "/nosuchpath")
    assert (status, body) == (404, "404 page not found\n")


def test_daemonset_template_generation_counts_template_changes(api, ns):
    ds = {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "d"},
          "spec": {"selector": {"matchLabels": {"app": "d"}},
                   "template": {"metadata": {"labels": {"app": "d"}},
                                "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}}
    path = f"/apis/apps/v1/namespaces/{ns}/daemonsets"
    status, created, _ = api.request("POST", path, ds)
    assert status == 201
    key = "deprecated.daemonset.template.generation"
    assert created["metadata"]["annotations"][key] == "1"
    merge = "application/merge-patch+json"
    _, same, _ = api.request("PATCH", f"{path}/d", {"spec": {"minReadySeconds": 5},
                                                      "metadata": {"annotations": {key: "7"}}}, content_type=merge)
    assert same["metadata"]["annotations"][key] == "1"
    _, changed, _ = api.request("PATCH", f"{path}/d", {"spec": {"template": {"metadata": {"labels": {"v": "2"}}}}},
                                content_type=merge)
    assert changed["metadata"]["annotations"][key] == "2"


def test_a_second_delete_with_another_policy_replaces_the_gc_finalizer(api, ns):
    path = f"/api/v1/namespaces/{ns}/configmaps"
    body = cm("held")
    body["metadata"]["finalizers"] = ["test.ketch.io/hold"]
    assert api.request("POST", path, body)[0] == 201
    status, first, _ = api.request("DELETE", f"{path}/held", {"propagationPolicy": "Orphan"})
    assert status == 200 and "orphan" in first["metadata"]["finalizers"]
    status, second, _ = api.request("DELETE", f"{path}/held", {"propagationPolicy": "Foreground"})
    assert status == 200
    assert "foregroundDeletion" in second["metadata"]["finalizers"]
    assert "orphan" not in second["metadata"]["finalizers"] and "test.ketch.io/hold" in second["metadata"]["finalizers"]
    api.request("PATCH", f"{path}/held", {"metadata": {"finalizers": None}},
                content_type="application/merge-patch+json")


def test_patches_that_are_not_objects_fail_as_upstream(api, ns):
    path = f"/api/v1/namespaces/{ns}/configmaps/c"
    assert api.request("POST", f"/api/v1/namespaces/{ns}/configmaps", cm("c"))[0] == 201
    merge, strategic = "application/merge-patch+json", "application/strategic-merge-patch+json"
    # A merge patch that is not an object replaces the whole document (RFC 7386), which then does
    # not decode as an object: 422 with the patched text as the invalid value.
    status, body, _ = api.request("PATCH", path, raw=b"[1]", content_type=merge)
    assert (status, body["reason"]) == (422, "Invalid")
    assert body["details"] == {"causes": [{
        "reason": "FieldValueInvalid", "field": "patch",
        "message": 'Invalid value: "[1]": couldn\'t get version/kind; json parse error: json: cannot unmarshal '
                   'array into Go value of type struct { APIVersion string "json:\\"apiVersion,omitempty\\""; '
                   'Kind string "json:\\"kind,omitempty\\"" }'}]}
    assert body["message"].startswith(' "" is invalid: patch: Invalid value: "[1]": ')
    status, body, _ = api.request("PATCH", path, raw=b"null", content_type=merge)
    assert (status, body["message"]) == (400, "Invalid JSON Patch")
    status, body, _ = api.request("PATCH", path, raw=b'"x"', content_type=strategic)
    assert (status, body["message"]) == (400, "json: cannot unmarshal string into Go value of type "
                                               "map[string]interface {}")
    assert api.request("GET", path)[1]["data"] == {"k": "v"}
