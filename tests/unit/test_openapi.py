"""OpenAPI v2 and v3 documents: paths and definitions for every served kind, upstream naming, and
documents kubectl accepts (checked with the real kubectl against a loopback stub when available)."""
import asyncio
import hashlib
import logging
import os
import re
import shutil
import time

import orjson
import pytest
from aiohttp import web

from ketch.api import discovery, kinds, openapi, schema

META = "io.k8s.apimachinery.pkg.apis.meta.v1."
METHODS = ("get", "put", "post", "delete", "patch", "head", "options")


@pytest.fixture(scope="module")
def published():
    logging.getLogger("ketch.api.openapi").setLevel(logging.ERROR)  # legacy schemas may be absent
    return openapi.PublishedOpenAPI()


@pytest.fixture(scope="module")
def v2(published):
    return orjson.loads(published.v2_json().body)


@pytest.fixture(scope="module")
def v3(published):
    return {p: orjson.loads(published.v3(p).body) for p in openapi.openapi_v3_paths()}


def _known(r: kinds.Resource) -> str | None:
    name = r.definition or schema.gvk_index().get((r.group, r.version, r.kind))
    return name if name in schema.definitions() else None


SERVED = [r for r in kinds.RESOURCES if _known(r)]


def _operations(doc: dict):
    for path, item in doc["paths"].items():
        for method in METHODS:
            if method in item:
                yield path, method, item[method], item.get("parameters", [])


def _op_index(doc: dict) -> dict[str, tuple[str, str, dict, list]]:
    return {op["operationId"]: (path, method, op, shared) for path, method, op, shared in _operations(doc)}


def _param_names(op: dict, shared: list) -> set[str]:
    return {p["name"] for p in op.get("parameters", []) + shared}


def _refs(node, found: set[str]) -> set[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                found.add(value)
            else:
                _refs(value, found)
    elif isinstance(node, list):
        for item in node:
            _refs(item, found)
    return found


def _base(r: kinds.Resource) -> str:
    return f"/apis/{r.group}/{r.version}" if r.group else f"/api/{r.version}"


def _collection(r: kinds.Resource) -> str:
    return f"{_base(r)}/namespaces/{{namespace}}/{r.plural}" if r.namespaced else f"{_base(r)}/{r.plural}"


def test_resources_without_schema_are_only_the_legacy_versions():
    # Today's kinds come with the upstream schema; the legacy versions need ketch.api.legacy.
    assert all(r.definition for r in kinds.RESOURCES if not _known(r))
    assert {(r.group, r.version) for r in SERVED} >= {("", "v1"), ("apps", "v1"), ("batch", "v1")}


def test_every_served_resource_has_paths_with_its_gvk(v2):
    for r in SERVED:
        gvk = {"group": r.group, "kind": r.kind, "version": r.version}
        coll, item = v2["paths"][_collection(r)], v2["paths"].get(_collection(r) + "/{name}", {})
        if "list" in r.verbs:
            assert coll["get"]["x-kubernetes-action"] == "list"
            assert coll["get"]["x-kubernetes-group-version-kind"] == gvk
        if "create" in r.verbs:
            assert coll["post"]["x-kubernetes-action"] == "post"
        if "deletecollection" in r.verbs:
            assert coll["delete"]["x-kubernetes-action"] == "deletecollection"
        expected = {"get": "get", "update": "put", "patch": "patch", "delete": "delete"}
        for verb, method in expected.items():
            assert (method in item) == (verb in r.verbs), (r, method)
            if method in item:
                assert item[method]["x-kubernetes-action"] == expected[verb]
                assert item[method]["x-kubernetes-group-version-kind"] == gvk
        if "watch" in r.verbs:
            watch = v2["paths"][_collection(r).replace(_base(r), _base(r) + "/watch") + "/{name}"]["get"]
            assert watch["x-kubernetes-action"] == "watch"
        if r.namespaced and "list" in r.verbs:
            assert v2["paths"][f"{_base(r)}/{r.plural}"]["get"]["operationId"].endswith("ForAllNamespaces")
            assert v2["paths"][f"{_base(r)}/watch/{r.plural}"]["get"]["x-kubernetes-action"] == "watchlist"


def test_every_served_kind_and_its_list_has_a_gvk_definition(v2):
    for r in SERVED:
        for kind in (r.kind, r.kind + "List") if "list" in r.verbs else (r.kind,):
            names = [n for n, d in v2["definitions"].items()
                     if {"group": r.group, "kind": kind, "version": r.version}
                     in d.get("x-kubernetes-group-version-kind", [])]
            assert names, (r.group, r.version, kind)
    for meta in ("Status", "DeleteOptions", "WatchEvent", "Patch", "APIResourceList", "ObjectMeta"):
        assert META + meta in v2["definitions"]
    assert "io.k8s.api.autoscaling.v1.Scale" in v2["definitions"]
    watch_gvks = v2["definitions"][META + "WatchEvent"]["x-kubernetes-group-version-kind"]
    assert {"group": "apps", "kind": "WatchEvent", "version": "v1"} in watch_gvks


def test_all_refs_resolve(v2, v3):
    for ref in _refs(v2, set()):
        assert ref.startswith("#/definitions/") and ref.removeprefix("#/definitions/") in v2["definitions"], ref
    for path, doc in v3.items():
        schemas = doc.get("components", {}).get("schemas", {})
        refs = _refs(doc, set())
        for ref in refs:
            assert ref.startswith("#/components/schemas/"), (path, ref)
            assert ref.removeprefix("#/components/schemas/") in schemas, (path, ref)
        assert not any("#/definitions/" in r for r in refs)


def test_operation_ids_are_unique_and_upstream_shaped(v2, v3):
    ids = [op["operationId"] for _, _, op, _ in _operations(v2)]
    assert len(ids) == len(set(ids))
    assert sum(len(list(_operations(doc))) for doc in v3.values()) == len(ids)
    index = _op_index(v2)
    samples = {
        "listCoreV1NamespacedPod": ("/api/v1/namespaces/{namespace}/pods", "get"),
        "listCoreV1PodForAllNamespaces": ("/api/v1/pods", "get"),
        "watchCoreV1PodListForAllNamespaces": ("/api/v1/watch/pods", "get"),
        "watchCoreV1NamespacedPodList": ("/api/v1/watch/namespaces/{namespace}/pods", "get"),
        "watchCoreV1NamespacedPod": ("/api/v1/watch/namespaces/{namespace}/pods/{name}", "get"),
        "createAppsV1NamespacedDeployment": ("/apis/apps/v1/namespaces/{namespace}/deployments", "post"),
        "deleteCoreV1CollectionNamespacedPod": ("/api/v1/namespaces/{namespace}/pods", "delete"),
        "readAppsV1NamespacedDeploymentScale": ("/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale",
                                                "get"),
        "patchNetworkingV1NamespacedIngressStatus":
            ("/apis/networking.k8s.io/v1/namespaces/{namespace}/ingresses/{name}/status", "patch"),
        "connectCoreV1GetNamespacedPodExec": ("/api/v1/namespaces/{namespace}/pods/{name}/exec", "get"),
        "connectCoreV1PostNamespacedPodPortforward": ("/api/v1/namespaces/{namespace}/pods/{name}/portforward",
                                                      "post"),
        "connectCoreV1GetNodeProxyWithPath": ("/api/v1/nodes/{name}/proxy/{path}", "get"),
        "connectCoreV1OptionsNamespacedServiceProxy": ("/api/v1/namespaces/{namespace}/services/{name}/proxy",
                                                       "options"),
        "readCoreV1NamespacedPodLog": ("/api/v1/namespaces/{namespace}/pods/{name}/log", "get"),
        "createCoreV1NamespacedPodEviction": ("/api/v1/namespaces/{namespace}/pods/{name}/eviction", "post"),
        "createCoreV1NamespacedPodBinding": ("/api/v1/namespaces/{namespace}/pods/{name}/binding", "post"),
        "createCoreV1NamespacedBinding": ("/api/v1/namespaces/{namespace}/bindings", "post"),
        "createCoreV1NamespacedServiceAccountToken":
            ("/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token", "post"),
        "replaceCoreV1NamespaceFinalize": ("/api/v1/namespaces/{name}/finalize", "put"),
        "patchCoreV1NamespacedPodEphemeralcontainers":
            ("/api/v1/namespaces/{namespace}/pods/{name}/ephemeralcontainers", "patch"),
        "listRbacAuthorizationV1ClusterRole": ("/apis/rbac.authorization.k8s.io/v1/clusterroles", "get"),
        "listAutoscalingV2NamespacedHorizontalPodAutoscaler":
            ("/apis/autoscaling/v2/namespaces/{namespace}/horizontalpodautoscalers", "get"),
        "getCoreAPIVersions": ("/api/", "get"),
        "getCoreV1APIResources": ("/api/v1/", "get"),
        "getAPIVersions": ("/apis/", "get"),
        "getAppsAPIGroup": ("/apis/apps/", "get"),
        "getStorageV1APIResources": ("/apis/storage.k8s.io/v1/", "get"),
        "getCodeVersion": ("/version/", "get"),
    }
    for op_id, (path, method) in samples.items():
        assert index[op_id][:2] == (path, method), op_id
    assert index["listRbacAuthorizationV1ClusterRole"][2]["tags"] == ["rbacAuthorization_v1"]
    assert index["getCoreV1APIResources"][2]["tags"] == ["core_v1"]
    assert index["readCoreV1NamespacedPodLog"][2]["x-kubernetes-group-version-kind"] == \
        {"group": "", "kind": "Pod", "version": "v1"}
    assert index["createCoreV1NamespacedPodEviction"][2]["x-kubernetes-group-version-kind"] == \
        {"group": "policy", "kind": "Eviction", "version": "v1"}
    assert index["connectCoreV1GetNamespacedPodExec"][2]["x-kubernetes-action"] == "connect"


def test_operation_parameters(v2):
    index = _op_index(v2)
    path, _, op, shared = index["listCoreV1NamespacedPod"]
    assert {p["name"] for p in shared} == {"namespace", "pretty"}  # the rest differs between list/create/...
    assert _param_names(op, shared) == {
        "namespace", "pretty", "allowWatchBookmarks", "continue", "fieldSelector", "labelSelector", "limit",
        "resourceVersion", "resourceVersionMatch", "sendInitialEvents", "timeoutSeconds", "watch"}
    assert [p["name"] for p in op["parameters"]] == sorted(p["name"] for p in op["parameters"])
    _, _, patch, shared = index["patchAppsV1NamespacedDeployment"]
    # kubectl looks for dryRun and fieldValidation on the PATCH operation itself.
    assert {"body", "dryRun", "fieldManager", "fieldValidation", "force"} <= {p["name"] for p in patch["parameters"]}
    assert patch["parameters"][0] == {"in": "body", "name": "body", "required": True,
                                      "schema": {"$ref": f"#/definitions/{META}Patch"}}
    assert "application/strategic-merge-patch+json" in patch["consumes"]
    _, _, delete, shared = index["deleteCoreV1NamespacedPod"]
    assert {"dryRun", "gracePeriodSeconds", "orphanDependents", "propagationPolicy",
            "ignoreStoreReadErrorWithClusterBreakingPotential"} <= _param_names(delete, shared)
    assert "required" not in delete["parameters"][0]  # the DeleteOptions body is optional
    _, _, delete_collection, shared = index["deleteCoreV1CollectionNamespacedPod"]
    names = _param_names(delete_collection, shared)
    assert {"labelSelector", "gracePeriodSeconds", "continue"} <= names and "watch" not in names
    _, _, create, shared = index["createAppsV1NamespacedDeployment"]
    assert set(create["responses"]) == {"200", "201", "202", "401"}
    assert create["responses"]["201"]["schema"] == {"$ref": "#/definitions/io.k8s.api.apps.v1.Deployment"}
    _, _, exec_, shared = index["connectCoreV1GetNamespacedPodExec"]
    assert "parameters" not in exec_  # GET and POST share them all, so they live on the path
    assert {"command", "container", "stdin", "stdout", "stderr", "tty", "name", "namespace"} == \
        {p["name"] for p in shared}
    _, _, log, shared = index["readCoreV1NamespacedPodLog"]
    assert {"container", "follow", "previous", "tailLines", "timestamps"} <= {p["name"] for p in shared}
    assert log["produces"][0] == "text/plain" and log["responses"]["200"]["schema"] == {"type": "string"}
    name_param = [p for p in index["createCoreV1NamespacedPodEviction"][3] if p["name"] == "name"][0]
    assert name_param == {"description": "name of the Eviction", "in": "path", "name": "name", "required": True,
                          "type": "string", "uniqueItems": True}
    _, _, pod_delete, _ = index["deleteCoreV1NamespacedPod"]
    assert pod_delete["responses"]["200"]["schema"]["$ref"].endswith("core.v1.Pod")
    assert index["deleteAppsV1NamespacedDeployment"][2]["responses"]["200"]["schema"]["$ref"].endswith("Status")


def test_patch_metadata_is_published(v2, v3):
    containers = v2["definitions"]["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"]
    assert containers["x-kubernetes-patch-merge-key"] == "name"
    assert containers["x-kubernetes-patch-strategy"] == "merge"
    assert containers["x-kubernetes-list-type"] == "map"
    spec = v3["apis/apps/v1"]["components"]["schemas"]["io.k8s.api.apps.v1.DeploymentSpec"]
    strategy = spec["properties"]["strategy"]
    assert strategy["x-kubernetes-patch-strategy"] == "retainKeys"
    assert strategy["allOf"] == [{"$ref": "#/components/schemas/io.k8s.api.apps.v1.DeploymentStrategy"}]


def _resolve_v3(doc: dict, node: dict) -> dict:
    while "allOf" in node or "$ref" in node:
        ref = node["$ref"] if "$ref" in node else node["allOf"][0]["$ref"]
        node = doc["components"]["schemas"][ref.removeprefix("#/components/schemas/")]
    return node


def test_v3_documents_let_explain_walk_a_kind(v3):
    """What `kubectl explain deployment.spec.strategy` does with /openapi/v3/apis/apps/v1."""
    doc = v3["apis/apps/v1"]
    gvk = {"group": "apps", "kind": "Deployment", "version": "v1"}
    [node] = [s for s in doc["components"]["schemas"].values() if gvk in s.get("x-kubernetes-group-version-kind", [])]
    for field in ("spec", "strategy"):
        node = _resolve_v3(doc, node["properties"][field])
    assert set(node["properties"]) == {"rollingUpdate", "type"}
    rolling = _resolve_v3(doc, node["properties"]["rollingUpdate"])
    assert rolling["properties"]["maxSurge"]["allOf"][0]["$ref"].endswith("IntOrString")
    # Each group-version document holds only its own paths.
    assert all(p.startswith("/apis/apps/v1/") for p in doc["paths"])
    assert set(v3["api/v1"]["paths"]) >= {"/api/v1/", "/api/v1/namespaces/{namespace}/pods"}
    assert doc["openapi"] == "3.0.0" and doc["info"] == {"title": "Kubernetes", "version": "v1.35.0"}


def test_v3_operations(v3):
    index = _op_index(v3["apis/apps/v1"])
    _, _, patch, _ = index["patchAppsV1NamespacedDeployment"]
    assert set(patch["requestBody"]["content"]) == set(openapi.PATCH_MEDIA)
    assert patch["requestBody"]["required"] is True
    assert {"name": "fieldValidation", "in": "query"}.items() <= \
        [p for p in patch["parameters"] if p["name"] == "fieldValidation"][0].items()
    _, _, get, shared = index["readAppsV1NamespacedDeployment"]
    assert get["responses"]["200"]["content"]["application/json"]["schema"] == \
        {"$ref": "#/components/schemas/io.k8s.api.apps.v1.Deployment"}
    assert get["responses"]["401"] == {"description": "Unauthorized"}
    assert {"name": "name", "in": "path", "required": True}.items() <= shared[0].items()
    assert shared[0]["schema"] == {"type": "string", "uniqueItems": True}
    _, _, delete, _ = index["deleteAppsV1NamespacedDeployment"]
    assert "required" not in delete["requestBody"]


def test_v3_index_hashes_each_document(published, v3):
    index = orjson.loads(published.v3_index().body)
    assert set(index["paths"]) == set(v3) >= {"api", "api/v1", "apis", "apis/apps", "apis/apps/v1", "version"}
    for path, entry in index["paths"].items():
        url = entry["serverRelativeURL"]
        assert re.fullmatch(rf"/openapi/v3/{re.escape(path)}\?hash=[0-9A-F]{{128}}", url)
        assert url.endswith(hashlib.sha512(published.v3(path).body).hexdigest().upper())
    assert openapi.openapi_v3_index() == index
    assert published.v3("apis/nope/v1") is None


def test_generation_is_fast():
    start = time.perf_counter()
    fresh = openapi.PublishedOpenAPI()
    fresh.v2_protobuf()
    fresh.v3_index()
    discovery.aggregated_discovery(False)
    assert time.perf_counter() - start < 2.0


# ---- protobuf: decoded with a minimal wire-format reader ----------------------------------------

def _fields(buf: bytes) -> dict[int, list]:
    out: dict[int, list] = {}
    i = 0

    def varint():
        nonlocal i
        shift = value = 0
        while True:
            b = buf[i]
            i += 1
            value |= (b & 0x7F) << shift
            shift += 7
            if b < 0x80:
                return value

    while i < len(buf):
        key = varint()
        number, wire = key >> 3, key & 7
        if wire == 0:
            out.setdefault(number, []).append(varint())
        elif wire == 2:
            n = varint()
            out.setdefault(number, []).append(buf[i:i + n])
            i += n
        else:
            raise AssertionError(f"unexpected wire type {wire}")
    return out


def _named(entries: list[bytes]) -> dict[str, bytes]:
    return {_fields(e)[1][0].decode(): _fields(e).get(2, [b""])[0] for e in entries}


def test_v2_protobuf_is_the_same_document(published, v2):
    doc = _fields(published.v2_protobuf().body)
    assert doc[1] == [b"2.0"]
    assert _fields(doc[2][0]) == {1: [b"Kubernetes"], 2: [b"v1.35.0"]}
    paths = _named(_fields(doc[8][0])[2])
    assert set(paths) == set(v2["paths"])
    pod_item = _fields(paths["/api/v1/namespaces/{namespace}/pods/{name}"])
    patch = _fields(pod_item[8][0])  # PathItem.patch
    assert patch[5] == [b"patchCoreV1NamespacedPod"]
    params = [_fields(p) for p in patch[8]]
    non_body = [_fields(_fields(p[1][0])[2][0]) for p in params if 2 in _fields(p[1][0])]
    query_names = {_fields(q[3][0])[4][0].decode() for q in non_body if 3 in q}
    assert {"dryRun", "fieldValidation", "force", "fieldManager"} <= query_names
    vendor = _named(patch[13])
    assert orjson.loads(_fields(vendor["x-kubernetes-action"])[2][0]) == "patch"
    definitions = _named(_fields(doc[9][0])[1])
    assert set(definitions) == set(v2["definitions"])
    deployment = _fields(definitions["io.k8s.api.apps.v1.Deployment"])
    gvk = orjson.loads(_fields(_named(deployment[31])["x-kubernetes-group-version-kind"])[2][0])
    assert gvk == [{"group": "apps", "kind": "Deployment", "version": "v1"}]
    properties = _named(_fields(deployment[25][0])[1])
    assert _fields(properties["spec"])[1] == [b"#/definitions/io.k8s.api.apps.v1.DeploymentSpec"]
    assert published.v2_protobuf().etag == published.v2_json().etag


# ---- the real kubectl against a loopback stub serving only discovery and OpenAPI ------------------

KUBECTL = shutil.which("kubectl") or ("/usr/bin/kubectl" if os.path.exists("/usr/bin/kubectl") else None)


def _stub_app(published: openapi.PublishedOpenAPI) -> web.Application:
    def json_response(doc, content_type="application/json"):
        return web.Response(body=orjson.dumps(doc), headers={"Content-Type": content_type})

    def root(legacy: bool):
        async def handler(request):
            accept = request.headers.get("Accept", "")
            for version in ("v2", "v2beta1"):
                if discovery.aggregated_content_type(version) in accept.replace(" ", ""):
                    return json_response(discovery.aggregated_discovery(legacy, version),
                                         discovery.aggregated_content_type(version))
            return json_response(discovery.api_versions("127.0.0.1") if legacy else discovery.api_group_list())
        return handler

    async def openapi_v2(request):
        if "protobuf" in request.headers.get("Accept", ""):
            return web.Response(body=published.v2_protobuf().body,
                                headers={"Content-Type": "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"})
        return web.Response(body=published.v2_json().body, headers={"Content-Type": "application/json"})

    async def openapi_v3(request):
        doc = published.v3(request.match_info["path"])
        if doc is None:
            raise web.HTTPNotFound()
        return web.Response(body=doc.body, headers={"Content-Type": "application/json"})

    async def version(request):
        return json_response({"major": "1", "minor": "35", "gitVersion": "v1.35.0"})

    async def openapi_v3_index(request):
        return web.Response(body=published.v3_index().body, headers={"Content-Type": "application/json"})

    app = web.Application()
    app.router.add_get("/api", root(True))
    app.router.add_get("/apis", root(False))
    app.router.add_get("/version", version)
    app.router.add_get("/openapi/v2", openapi_v2)
    app.router.add_get("/openapi/v3", openapi_v3_index)
    app.router.add_get("/openapi/v3/{path:.+}", openapi_v3)
    return app


async def _kubectl(tmp_path, port: int, *args: str) -> str:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(f"""apiVersion: v1
kind: Config
clusters: [{{name: stub, cluster: {{server: "http://127.0.0.1:{port}"}}}}]
users: [{{name: stub, user: {{}}}}]
contexts: [{{name: stub, context: {{cluster: stub, user: stub}}}}]
current-context: stub
""")
    proc = await asyncio.create_subprocess_exec(
        KUBECTL, "--kubeconfig", str(kubeconfig), "--cache-dir", str(tmp_path / "cache"), *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), 30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, out.decode()
    return out.decode()


@pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")
async def test_kubectl_explains_from_our_documents(published, tmp_path):
    runner = web.AppRunner(_stub_app(published))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = site._server.sockets[0].getsockname()[1]
        v3_out = await _kubectl(tmp_path, port, "explain", "deployment.spec.strategy")
        assert "rollingUpdate" in v3_out and "KIND:       Deployment" in v3_out
        v2_out = await _kubectl(tmp_path, port, "explain", "pods.spec.containers.ports",
                                "--output=plaintext-openapiv2")
        assert "containerPort" in v2_out
        resources = await _kubectl(tmp_path, port, "api-resources", "--api-group=apps", "-o", "name")
        assert "deployments.apps" in resources.split()
    finally:
        await runner.cleanup()
