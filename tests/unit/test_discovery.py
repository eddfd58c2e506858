"""Discovery documents: shapes, ordering and content as the upstream apiserver publishes them."""
import hashlib

import orjson
import pytest
from kubernetes.client import ApiClient

from ketch.api import discovery, kinds


def _by_name(resource_list: dict) -> dict[str, dict]:
    return {e["name"]: e for e in resource_list["resources"]}


def _python_client_model(doc: dict, model: str):
    """Deserialize as the official Python client does; it rejects missing required fields."""
    return ApiClient()._ApiClient__deserialize(orjson.loads(orjson.dumps(doc)), model)


def test_api_versions_lists_v1_and_the_server_address():
    doc = discovery.api_versions("10.0.0.1:6443")
    assert doc == {"kind": "APIVersions", "versions": ["v1"],
                   "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "10.0.0.1:6443"}]}
    assert _python_client_model(doc, "V1APIVersions").versions == ["v1"]


def test_group_list_follows_kinds_order_with_the_preferred_version_first():
    doc = discovery.api_group_list()
    assert (doc["kind"], doc["apiVersion"]) == ("APIGroupList", "v1")
    expected = [(g, vs) for g, vs in kinds.group_versions().items() if g]
    assert [(g["name"], [v["version"] for v in g["versions"]]) for g in doc["groups"]] == expected
    for group in doc["groups"]:
        assert group["preferredVersion"] == group["versions"][0]
        assert all(v["groupVersion"] == f"{group['name']}/{v['version']}" for v in group["versions"])
        assert "serverAddressByClientCIDRs" not in group  # the aggregator in front of /apis sets none
    by_name = {g["name"]: g for g in doc["groups"]}
    assert by_name["autoscaling"]["preferredVersion"]["version"] == "v2"
    assert [v["version"] for v in by_name["apps"]["versions"]] == ["v1", "v1beta2", "v1beta1"]
    # Today's groups come before the legacy extensions group, so `deployments` resolves to apps.
    assert list(by_name).index("apps") < list(by_name).index("extensions")
    assert len(_python_client_model(doc, "V1APIGroupList").groups) == len(doc["groups"])


def test_api_group():
    doc = discovery.api_group("batch")
    assert doc["kind"] == "APIGroup" and doc["name"] == "batch"
    assert doc["preferredVersion"] == {"groupVersion": "batch/v1", "version": "v1"}
    assert discovery.api_group("nope.example.com") is None
    assert discovery.api_group("") is None  # the core group is /api, not /apis/
    assert _python_client_model(doc, "V1APIGroup").name == "batch"


def test_core_resource_list_matches_upstream_entries():
    doc = discovery.api_resource_list("", "v1")
    assert doc["kind"] == "APIResourceList" and doc["groupVersion"] == "v1"
    assert "apiVersion" not in doc  # upstream's /api/v1 carries none
    names = [e["name"] for e in doc["resources"]]
    assert names == sorted(names)
    res = _by_name(doc)
    assert res["pods"] == {"name": "pods", "singularName": "pod", "namespaced": True, "kind": "Pod",
                           "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update",
                                     "watch"],
                           "shortNames": ["po"], "categories": ["all"], "storageVersionHash": "xPOwRZ+Yhw8="}
    assert res["bindings"] == {"name": "bindings", "singularName": "binding", "namespaced": True,
                               "kind": "Binding", "verbs": ["create"]}
    assert res["namespaces"]["verbs"] == ["create", "delete", "get", "list", "patch", "update", "watch"]
    assert res["configmaps"]["storageVersionHash"] == "qFsyl6wFWjQ="
    expected_subresources = {
        "pods/status": (None, "Pod", ["get", "patch", "update"]),
        "pods/log": (None, "Pod", ["get"]),
        "pods/exec": (None, "PodExecOptions", ["create", "get"]),
        "pods/attach": (None, "PodAttachOptions", ["create", "get"]),
        "pods/portforward": (None, "PodPortForwardOptions", ["create", "get"]),
        "pods/proxy": (None, "PodProxyOptions", ["create", "delete", "get", "patch", "update"]),
        "pods/binding": (None, "Binding", ["create"]),
        "pods/eviction": (("policy", "v1"), "Eviction", ["create"]),
        "pods/ephemeralcontainers": (None, "Pod", ["get", "patch", "update"]),
        "pods/resize": (None, "Pod", ["get", "patch", "update"]),
        "serviceaccounts/token": (("authentication.k8s.io", "v1"), "TokenRequest", ["create"]),
        "namespaces/finalize": (None, "Namespace", ["update"]),
        "nodes/proxy": (None, "NodeProxyOptions", ["create", "delete", "get", "patch", "update"]),
        "services/proxy": (None, "ServiceProxyOptions", ["create", "delete", "get", "patch", "update"]),
        "replicationcontrollers/scale": (("autoscaling", "v1"), "Scale", ["get", "patch", "update"]),
    }
    for name, (gv, kind, verbs) in expected_subresources.items():
        entry = res[name]
        assert (entry["kind"], entry["verbs"], entry["singularName"]) == (kind, verbs, ""), name
        assert (entry.get("group"), entry.get("version")) == (gv or (None, None)), name
        assert entry["namespaced"] == res[name.split("/")[0]]["namespaced"]
        assert "storageVersionHash" not in entry and "shortNames" not in entry
    assert len(_python_client_model(doc, "V1APIResourceList").resources) == len(doc["resources"])


def test_apps_resource_list_serves_deployments_with_scale():
    doc = discovery.api_resource_list("apps", "v1")
    assert doc["apiVersion"] == "v1" and doc["groupVersion"] == "apps/v1"
    res = _by_name(doc)
    assert res["deployments"]["kind"] == "Deployment"
    assert res["deployments"]["shortNames"] == ["deploy"]
    assert res["deployments"]["storageVersionHash"] == "8aSe+NMegvE="
    assert res["deployments/scale"] == {"name": "deployments/scale", "singularName": "", "namespaced": True,
                                        "group": "autoscaling", "version": "v1", "kind": "Scale",
                                        "verbs": ["get", "patch", "update"]}
    assert "categories" not in res["controllerrevisions"]
    assert discovery.api_resource_list("apps", "v9") is None
    client_list = _python_client_model(doc, "V1APIResourceList")
    assert {r.name: r.kind for r in client_list.resources}["deployments"] == "Deployment"


def test_storage_version_hash_names_the_storage_version():
    assert discovery.storage_version_hash("", "v1", "Pod") == "xPOwRZ+Yhw8="
    core = _by_name(discovery.api_resource_list("", "v1"))["events"]["storageVersionHash"]
    assert _by_name(discovery.api_resource_list("events.k8s.io", "v1"))["events"]["storageVersionHash"] == core
    v1 = _by_name(discovery.api_resource_list("autoscaling", "v1"))["horizontalpodautoscalers"]
    v2 = _by_name(discovery.api_resource_list("autoscaling", "v2"))["horizontalpodautoscalers"]
    assert v1["storageVersionHash"] == v2["storageVersionHash"] == \
        discovery.storage_version_hash("autoscaling", "v2", "HorizontalPodAutoscaler")


def _aggregated_resources() -> dict[tuple[str, str, str], dict]:
    out = {}
    for legacy in (True, False):
        for item in discovery.aggregated_discovery(legacy)["items"]:
            for version in item["versions"]:
                for res in version["resources"]:
                    out[(item["metadata"].get("name", ""), version["version"], res["resource"])] = res
    return out


def test_aggregated_discovery_covers_every_resource():
    found = _aggregated_resources()
    assert len(found) == len(kinds.RESOURCES)
    for r in kinds.RESOURCES:
        res = found[(r.group, r.version, r.plural)]
        assert res["responseKind"] == {"group": "", "version": "", "kind": r.kind}
        assert res["scope"] == ("Namespaced" if r.namespaced else "Cluster")
        assert res["singularResource"] == r.singular
        assert res["verbs"] == sorted(r.verbs)
        assert res.get("shortNames", []) == list(r.short_names)
        assert res.get("categories", []) == list(r.categories)
        assert [s["subresource"] for s in res.get("subresources", [])] == sorted(r.subresources)


def test_aggregated_and_plain_discovery_agree_on_subresources():
    found = _aggregated_resources()
    for group, versions in kinds.group_versions().items():
        for version in versions:
            for entry in discovery.api_resource_list(group, version)["resources"]:
                if "/" not in entry["name"]:
                    continue
                parent, sub = entry["name"].split("/")
                agg = {s["subresource"]: s for s in found[(group, version, parent)]["subresources"]}[sub]
                assert agg["verbs"] == entry["verbs"]
                assert agg["responseKind"] == {"group": entry.get("group", ""), "version": entry.get("version", ""),
                                               "kind": entry["kind"]}


def test_aggregated_document_shape_and_order():
    core = discovery.aggregated_discovery(legacy_core=True)
    assert (core["kind"], core["apiVersion"], core["metadata"]) == \
        ("APIGroupDiscoveryList", "apidiscovery.k8s.io/v2", {})
    assert [item["metadata"] for item in core["items"]] == [{"creationTimestamp": None}]
    assert [v["version"] for v in core["items"][0]["versions"]] == ["v1"]
    named = discovery.aggregated_discovery(legacy_core=False, version="v2beta1")
    assert named["apiVersion"] == "apidiscovery.k8s.io/v2beta1"
    assert [(i["metadata"]["name"], [v["version"] for v in i["versions"]]) for i in named["items"]] == \
        [(g, vs) for g, vs in kinds.group_versions().items() if g]
    for item in named["items"]:
        assert item["metadata"]["creationTimestamp"] is None
        for version in item["versions"]:
            assert version["freshness"] == "Current"
            names = [r["resource"] for r in version["resources"]]
            assert names == sorted(names)
    deployments = {r["resource"]: r for r in named["items"][0]["versions"][0]["resources"]}["deployments"]
    assert deployments["subresources"] == [
        {"subresource": "scale", "responseKind": {"group": "autoscaling", "version": "v1", "kind": "Scale"},
         "verbs": ["get", "patch", "update"]},
        {"subresource": "status", "responseKind": {"group": "", "version": "", "kind": "Deployment"},
         "verbs": ["get", "patch", "update"]}]
    with pytest.raises(ValueError):
        discovery.aggregated_discovery(True, "v3")


def test_all_category_and_short_names():
    found = _aggregated_resources()
    in_all = {plural for (g, v, plural), res in found.items() if g in ("", "apps", "batch") and v == "v1"
              and "all" in res.get("categories", [])}
    assert {"pods", "services", "replicationcontrollers", "deployments", "replicasets", "statefulsets",
            "daemonsets", "jobs", "cronjobs"} <= in_all
    assert "configmaps" not in in_all and "secrets" not in in_all
    assert found[("", "v1", "services")]["shortNames"] == ["svc"]
    assert found[("autoscaling", "v2", "horizontalpodautoscalers")]["categories"] == ["all"]


def test_content_type_and_etag():
    assert discovery.aggregated_content_type("v2") == \
        "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
    body = orjson.dumps(discovery.aggregated_discovery(False))
    tag = discovery.etag(body)
    assert tag == hashlib.sha512(body).hexdigest().upper() and len(tag) == 128
    assert discovery.etag(body + b" ") != tag


def test_a_create_only_cluster_scoped_resource():
    """The self-review APIs (kubectl auth can-i / whoami): create-only and cluster-scoped."""
    assert discovery.api_group("authorization.k8s.io")["preferredVersion"]["version"] == "v1"
    entry = _by_name(discovery.api_resource_list("authorization.k8s.io", "v1"))["selfsubjectaccessreviews"]
    assert entry == {"name": "selfsubjectaccessreviews", "singularName": "selfsubjectaccessreview",
                     "namespaced": False, "kind": "SelfSubjectAccessReview", "verbs": ["create"]}
    item = next(i for i in discovery.aggregated_discovery(False)["items"]
                if i["metadata"]["name"] == "authorization.k8s.io")
    assert item["versions"][0]["resources"][0]["scope"] == "Cluster"
