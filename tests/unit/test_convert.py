"""The book's legacy API versions: schemas, legacy defaults, conversion to and from storage versions."""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Iterator

import orjson
import pytest
import yaml

from ketch.api import convert, kinds, legacy, schema
from ketch.api.convert import ConversionError

BOOK = Path("/work/shared/book-examples")
MAX_INT32 = 2**31 - 1


def split(api_version: str) -> tuple[str, str]:
    group, _, version = api_version.rpartition("/")
    return group, version


def book_documents() -> Iterator[tuple[str, dict]]:
    for path in sorted(BOOK.rglob("*")):
        if path.suffix in (".yaml", ".yml"):
            docs = list(yaml.safe_load_all(path.read_text()))
        elif path.suffix == ".json":
            docs = [json.loads(path.read_text())]
        else:
            continue
        for doc in docs:
            if isinstance(doc, dict):
                yield str(path.relative_to(BOOK)), doc


def legacy_manifests() -> list[tuple[str, dict]]:
    """Book documents in a served version that is not their kind's storage version."""
    if not BOOK.is_dir():
        return []
    out = []
    for name, doc in book_documents():
        resource = kinds.by_kind(*split(doc["apiVersion"]), doc["kind"])
        if resource is not None and resource.storage_gv != resource.group_version:
            out.append((name, doc))
    return out


LEGACY = legacy_manifests()
needs_book = pytest.mark.skipif(not LEGACY, reason="book examples not available")


def book(name: str) -> dict:
    return copy.deepcopy(dict(LEGACY)[name])


def storage_defaults(stored: dict) -> None:
    """The storage version's own defaults, when that module exists yet."""
    try:
        from ketch.api import defaults
    except ImportError:
        return
    resource = kinds.by_kind(*split(stored["apiVersion"]), stored["kind"])
    defaults.apply_defaults(stored, resource.schema)


def defaulted(obj: dict) -> dict:
    """`obj` with its legacy defaults applied (a copy)."""
    obj = copy.deepcopy(obj)
    legacy.apply_legacy_defaults(*split(obj["apiVersion"]), obj["kind"], obj)
    return obj


def write(obj: dict) -> dict:
    """The write path: legacy defaults, conversion to the storage version, storage defaults."""
    obj = defaulted(obj)
    stored = convert.convert(obj, convert.storage_version_of(split(obj["apiVersion"])[0], obj["kind"]))
    storage_defaults(stored)
    return stored


def served_versions(stored: dict) -> list[str]:
    """Every apiVersion the stored object's kind can be read in."""
    group, version = split(stored["apiVersion"])
    return [r.group_version for r in kinds.RESOURCES
            if r.kind == stored["kind"] and (r.storage_group, r.storage_version) == (group, version)]


def contains(big: Any, small: Any) -> bool:
    """Everything in `small` is in `big` (which may hold more fields)."""
    if isinstance(small, dict):
        return isinstance(big, dict) and all(k in big and contains(big[k], v) for k, v in small.items())
    if isinstance(small, list):
        return isinstance(big, list) and len(big) == len(small) and all(map(contains, big, small))
    return big == small


def unknown_fields(obj: Any, node: schema.Node) -> list[str]:
    unknown = []
    for path, value, at in schema.walk(obj, node):
        if isinstance(value, dict) and at.properties:
            unknown += [f"{path}.{k}" for k in value if k not in at.properties]
    return unknown


@pytest.fixture(scope="module", autouse=True)
def installed():
    legacy.install()


# --- schemas ----------------------------------------------------------------------------------------

def refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from refs(value)


def test_every_definition_kinds_names_exists_with_its_list():
    defs = schema.definitions()
    for r in kinds.RESOURCES:
        assert r.schema_name in defs, r
        assert r.schema.properties, r
        if r.definition:
            assert r.definition + "List" in defs, r
            assert {"group": r.group, "kind": r.kind, "version": r.version} in defs[r.definition][legacy.GVK]


def test_every_legacy_ref_resolves():
    defs = schema.definitions()
    for name, body in legacy.LEGACY_DEFINITIONS.items():
        for ref in refs(body):
            assert ref.startswith("#/definitions/") and ref.removeprefix("#/definitions/") in defs, (name, ref)


def test_legacy_types_only_reference_their_own_package_or_shared_types():
    for name, body in legacy.LEGACY_DEFINITIONS.items():
        for ref in refs(body):
            target = ref.removeprefix("#/definitions/")
            assert not target.startswith(("io.k8s.api.apps.v1.", "io.k8s.api.networking.v1.",
                                          "io.k8s.api.storage.v1.")), (name, target)
            if target.startswith("io.k8s.api.batch.v1."):
                assert target == "io.k8s.api.batch.v1.JobSpec" and "JobTemplateSpec" in name


def test_install_is_idempotent_and_gvk_index_knows_legacy_kinds():
    legacy.install()
    legacy.install()
    index = schema.gvk_index()
    assert index[("extensions", "v1beta1", "Ingress")] == "io.k8s.api.extensions.v1beta1.Ingress"
    assert index[("apps", "v1beta1", "DeploymentRollback")] == "io.k8s.api.apps.v1beta1.DeploymentRollback"
    assert index[("batch", "v2alpha1", "CronJobList")] == "io.k8s.api.batch.v2alpha1.CronJobList"
    assert index[("apps", "v1", "Deployment")] == "io.k8s.api.apps.v1.Deployment"


def test_legacy_only_fields_and_optional_selectors():
    ext = "io.k8s.api.extensions.v1beta1"
    spec = schema.node(f"{ext}.DeploymentSpec")
    assert spec.required == ("template",)
    assert spec.field("rollbackTo").ref == f"{ext}.RollbackConfig"
    assert spec.field("rollbackTo").field("revision").format == "int64"
    assert spec.field("strategy").field("rollingUpdate").ref == f"{ext}.RollingUpdateDeployment"
    rolling = spec.field("strategy").field("rollingUpdate").properties
    assert "Defaults to 1." in rolling["maxSurge"]["description"]
    assert "Defaults to 1." in rolling["maxUnavailable"]["description"]
    assert "2147483647" in spec.field("revisionHistoryLimit").description
    assert "selector" not in schema.node(f"{ext}.ReplicaSetSpec").required
    daemon = schema.node(f"{ext}.DaemonSetSpec")
    assert daemon.field("templateGeneration").type == "integer"
    assert "Default is OnDelete." in daemon.field("updateStrategy").field("type").description
    assert schema.node("io.k8s.api.apps.v1beta1.StatefulSetSpec").required == ("template",)
    assert "Default is OnDelete." in schema.node("io.k8s.api.apps.v1beta1.StatefulSetUpdateStrategy").field(
        "type").description
    assert "selector" in schema.node("io.k8s.api.apps.v1beta2.DeploymentSpec").required
    assert "rollbackTo" not in schema.node("io.k8s.api.apps.v1beta2.DeploymentSpec").properties
    # apps/v1 itself is untouched
    assert "rollbackTo" not in schema.node("io.k8s.api.apps.v1.DeploymentSpec").properties
    assert "selector" in schema.node("io.k8s.api.apps.v1.ReplicaSetSpec").required

    status = schema.node(f"{ext}.ScaleStatus")
    assert status.field("selector").is_map and status.field("targetSelector").type == "string"


def test_legacy_ingress_schema():
    ext = "io.k8s.api.extensions.v1beta1"
    backend = schema.node(f"{ext}.IngressBackend")
    assert set(backend.properties) == {"serviceName", "servicePort", "resource"}
    assert backend.field("servicePort").type == "int-or-string"
    spec = schema.node(f"{ext}.IngressSpec")
    assert spec.field("backend").ref == f"{ext}.IngressBackend"
    assert "defaultBackend" not in spec.properties and spec.field("ingressClassName").type == "string"
    assert schema.node(f"{ext}.HTTPIngressPath").required == ("backend",)
    assert f"{ext}.IngressServiceBackend" not in schema.definitions()


def test_pod_security_policy_schema():
    for package in ("io.k8s.api.policy.v1beta1", "io.k8s.api.extensions.v1beta1"):
        spec = schema.node(f"{package}.PodSecurityPolicySpec")
        assert set(spec.required) == {"seLinux", "runAsUser", "supplementalGroups", "fsGroup"}
        assert spec.field("runAsUser").ref == f"{package}.RunAsUserStrategyOptions"
        assert spec.field("runAsUser").field("ranges").items.field("max").format == "int64"
        assert spec.field("hostPorts").items.required == ("min", "max")
        assert spec.field("seLinux").field("seLinuxOptions").ref == "io.k8s.api.core.v1.SELinuxOptions"
        assert spec.field("volumes").items.type == "string"


@needs_book
def test_book_has_the_legacy_manifests_we_expect():
    found = {(doc["apiVersion"], doc["kind"]) for _, doc in LEGACY}
    assert found == {("extensions/v1beta1", "Deployment"), ("extensions/v1beta1", "ReplicaSet"),
                     ("extensions/v1beta1", "Ingress"), ("extensions/v1beta1", "PodSecurityPolicy"),
                     ("apps/v1beta1", "StatefulSet"), ("batch/v2alpha1", "CronJob"),
                     ("storage.k8s.io/v1beta1", "StorageClass"), ("autoscaling/v1", "HorizontalPodAutoscaler")}


@needs_book
@pytest.mark.parametrize("name", [n for n, _ in LEGACY])
def test_book_manifest_fields_are_all_known(name):
    manifest = defaulted(book(name))
    resource = kinds.by_kind(*split(manifest["apiVersion"]), manifest["kind"])
    assert unknown_fields(manifest, resource.schema) == []
    stored = write(book(name))
    assert unknown_fields(stored, kinds.by_kind(*split(stored["apiVersion"]), stored["kind"]).schema) == []


# --- the whole pipeline over the book's manifests -------------------------------------------------

@needs_book
@pytest.mark.parametrize("name", [n for n, _ in LEGACY])
def test_book_manifest_round_trips(name):
    manifest = defaulted(book(name))
    plain = convert.convert(manifest, convert.storage_version_of(split(manifest["apiVersion"])[0],
                                                                 manifest["kind"]))
    back = convert.convert(plain, manifest["apiVersion"])
    # Nothing is lost on the way to storage and back; extensions/v1beta1 paths gain their pathType.
    assert contains(back, manifest)
    assert back == manifest or manifest["kind"] == "Ingress"

    stored = write(book(name))
    assert contains(convert.convert(stored, manifest["apiVersion"]), manifest)
    for version in served_versions(stored):
        view = convert.convert(stored, version)
        assert view["apiVersion"] == version and view["kind"] == stored["kind"]
        assert convert.convert(view, stored["apiVersion"]) == stored, version


@needs_book
def test_node_js_deploy_as_apps_v1_has_selector_from_its_template():
    stored = write(book("Chapter05/node-js-deploy.yaml"))
    assert stored["apiVersion"] == "apps/v1"
    spec = stored["spec"]
    assert spec["selector"] == {"matchLabels": {"name": "node-js-deploy"}}
    assert spec["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 1}}
    # extensions kept every old ReplicaSet and had no progress deadline
    assert spec["revisionHistoryLimit"] == MAX_INT32 and spec["progressDeadlineSeconds"] == MAX_INT32
    assert spec["replicas"] == 1
    for version in ("apps/v1beta1", "apps/v1beta2"):
        assert convert.convert(stored, version)["spec"]["selector"] == spec["selector"]


@needs_book
def test_boomload_deploy_gets_labels_from_its_template():
    stored = write(book("Chapter05/boomload-deploy.yaml"))
    assert stored["metadata"]["labels"] == {"app": "loadgenerator-deploy"}
    assert stored["spec"]["selector"] == {"matchLabels": {"app": "loadgenerator-deploy"}}


@needs_book
def test_replica_set_keeps_its_own_selector():
    stored = write(book("Chapter02/nodejs-labels-replicaset.yaml"))
    assert stored["spec"]["selector"]["matchExpressions"] == [
        {"key": "name", "operator": "In", "values": ["node-js-rs"]}]
    assert stored["spec"]["selector"]["matchLabels"] == {"app": "node-js-express", "deployment": "test"}
    assert stored["metadata"]["labels"] == stored["spec"]["template"]["metadata"]["labels"]


@needs_book
def test_whale_ingress_in_networking_v1_and_back():
    stored = write(book("Chapter03/whale-ingress.yaml"))
    assert stored["apiVersion"] == "networking.k8s.io/v1"
    paths = [p for rule in stored["spec"]["rules"] for p in rule["http"]["paths"]]
    assert [p["backend"] for p in paths] == [
        {"service": {"name": "whale-svc-a", "port": {"number": 80}}},
        {"service": {"name": "whale-svc-b", "port": {"number": 80}}}]
    assert {p["pathType"] for p in paths} == {"ImplementationSpecific"}

    back = convert.convert(stored, "extensions/v1beta1")
    paths = [p for rule in back["spec"]["rules"] for p in rule["http"]["paths"]]
    assert [p["backend"] for p in paths] == [{"serviceName": "whale-svc-a", "servicePort": 80},
                                             {"serviceName": "whale-svc-b", "servicePort": 80}]


@needs_book
def test_sayhey_statefulset_defaults():
    stored = write(book("Chapter06/sayhey-statefulset.yaml"))
    spec = stored["spec"]
    assert stored["apiVersion"] == "apps/v1"
    assert spec["selector"] == {"matchLabels": {"app": "sayhey"}}
    assert spec["updateStrategy"]["type"] == "OnDelete"
    assert spec["podManagementPolicy"] == "OrderedReady"
    assert spec["revisionHistoryLimit"] == 10
    assert spec["volumeClaimTemplates"][0]["metadata"]["annotations"] == {
        "volume.beta.kubernetes.io/storage-class": "solidstate"}


@needs_book
def test_cronjob_v2alpha1():
    manifest = defaulted(book("Chapter05/cronjob.yaml"))
    assert manifest["spec"]["concurrencyPolicy"] == "Allow" and manifest["spec"]["suspend"] is False
    assert "successfulJobsHistoryLimit" not in manifest["spec"]  # v2alpha1 left them to the server
    stored = write(book("Chapter05/cronjob.yaml"))
    assert stored["apiVersion"] == "batch/v1" and stored["spec"]["schedule"] == "*/1 * * * *"
    beta = convert.convert(stored, "batch/v1beta1")
    assert beta["spec"]["jobTemplate"] == stored["spec"]["jobTemplate"]


@needs_book
def test_storage_class_v1beta1():
    stored = write(book("Chapter06/solidstate-sc.yaml"))
    assert stored["apiVersion"] == "storage.k8s.io/v1"
    assert stored["provisioner"] == "kubernetes.io/gce-pd"
    assert stored["parameters"] == {"type": "pd-ssd", "zone": "us-central1-b"}
    assert stored["reclaimPolicy"] == "Delete" and stored["volumeBindingMode"] == "Immediate"


@needs_book
def test_pod_security_policy_json():
    stored = write(book("Chapter10/default-security-policy.json"))
    assert stored["apiVersion"] == "policy/v1beta1"
    assert stored["spec"]["readOnlyRootFilesystem"] is True and stored["spec"]["volumes"] == ["*"]
    assert stored["spec"]["allowPrivilegeEscalation"] is True
    assert convert.convert(stored, "extensions/v1beta1")["spec"] == stored["spec"]


@needs_book
def test_book_hpa_targets_cpu():
    stored = write(book("Chapter05/node-js-deploy-hpa.yaml"))
    assert stored["apiVersion"] == "autoscaling/v2"
    assert stored["spec"]["metrics"] == [
        {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 10}}}]
    v1 = convert.convert(stored, "autoscaling/v1")
    assert v1["spec"]["targetCPUUtilizationPercentage"] == 10
    assert "annotations" not in v1["metadata"]


# --- legacy defaults ------------------------------------------------------------------------------

def deployment(api_version: str, **spec) -> dict:
    return {"apiVersion": api_version, "kind": "Deployment", "metadata": {"name": "d"},
            "spec": {"template": {"metadata": {"labels": {"app": "a"}},
                                  "spec": {"containers": [{"name": "c", "image": "i"}]}}, **spec}}


@pytest.mark.parametrize("api_version, rolling, history, deadline, selector", [
    ("extensions/v1beta1", 1, MAX_INT32, MAX_INT32, {"matchLabels": {"app": "a"}}),
    ("apps/v1beta1", "25%", 2, 600, {"matchLabels": {"app": "a"}}),
    ("apps/v1beta2", "25%", 10, 600, None),
])
def test_deployment_defaults_per_version(api_version, rolling, history, deadline, selector):
    obj = defaulted(deployment(api_version))
    spec = obj["spec"]
    assert spec["strategy"] == {"type": "RollingUpdate",
                                "rollingUpdate": {"maxUnavailable": rolling, "maxSurge": rolling}}
    assert (spec["revisionHistoryLimit"], spec["progressDeadlineSeconds"]) == (history, deadline)
    assert spec.get("selector") == selector
    assert spec["replicas"] == 1


def test_defaults_leave_what_was_given():
    obj = defaulted(deployment("extensions/v1beta1", replicas=0, revisionHistoryLimit=0,
                               selector={"matchLabels": {"app": "a", "x": "y"}},
                               strategy={"type": "Recreate"}))
    obj["metadata"]["labels"] = {"own": "label"}
    spec = obj["spec"]
    assert spec["replicas"] == 0 and spec["revisionHistoryLimit"] == 0
    assert spec["selector"] == {"matchLabels": {"app": "a", "x": "y"}}
    assert spec["strategy"] == {"type": "Recreate"}
    labelled = deployment("extensions/v1beta1")
    labelled["metadata"]["labels"] = {"own": "label"}
    assert defaulted(labelled)["metadata"]["labels"] == {"own": "label"}


def test_extensions_fills_rolling_update_even_for_recreate_when_given():
    obj = defaulted(deployment("extensions/v1beta1", strategy={"type": "Recreate", "rollingUpdate": {}}))
    assert obj["spec"]["strategy"]["rollingUpdate"] == {"maxUnavailable": 1, "maxSurge": 1}
    obj = defaulted(deployment("apps/v1beta1", strategy={"type": "Recreate", "rollingUpdate": {}}))
    assert obj["spec"]["strategy"]["rollingUpdate"] == {}


def test_template_without_labels_leaves_selector_unset():
    obj = deployment("extensions/v1beta1")
    del obj["spec"]["template"]["metadata"]
    assert "selector" not in defaulted(obj)["spec"]


def test_defaults_apply_to_list_items_and_skip_unknown_kinds():
    items = {"apiVersion": "extensions/v1beta1", "kind": "DeploymentList",
             "items": [deployment("extensions/v1beta1")]}
    legacy.apply_legacy_defaults("extensions", "v1beta1", "DeploymentList", items)
    assert items["items"][0]["spec"]["selector"] == {"matchLabels": {"app": "a"}}
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}}
    legacy.apply_legacy_defaults("", "v1", "Pod", pod)
    assert pod == {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}}


def daemon_set(api_version: str, **spec) -> dict:
    return {"apiVersion": api_version, "kind": "DaemonSet", "metadata": {"name": "ds"},
            "spec": {"template": {"metadata": {"labels": {"app": "ds"}},
                                  "spec": {"containers": [{"name": "c", "image": "i"}]}}, **spec}}


def test_extensions_daemon_set_template_generation_travels_as_annotation():
    obj = defaulted(daemon_set("extensions/v1beta1"))
    assert obj["spec"]["updateStrategy"] == {"type": "OnDelete"}
    assert obj["spec"]["templateGeneration"] == 1 and obj["spec"]["revisionHistoryLimit"] == 10
    obj["spec"]["templateGeneration"] = 4
    stored = convert.convert(obj, "apps/v1")
    assert "templateGeneration" not in stored["spec"]
    assert stored["metadata"]["annotations"] == {convert.TEMPLATE_GENERATION_ANNOTATION: "4"}
    assert stored["spec"]["selector"] == {"matchLabels": {"app": "ds"}}
    back = convert.convert(stored, "extensions/v1beta1")
    assert back == obj and "annotations" not in back["metadata"]
    assert convert.convert(stored, "apps/v1beta2")["metadata"]["annotations"] == stored["metadata"]["annotations"]


def test_daemon_set_rolling_update_defaults():
    obj = defaulted(daemon_set("extensions/v1beta1", updateStrategy={"type": "RollingUpdate"}))
    assert obj["spec"]["updateStrategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}}
    beta2 = daemon_set("apps/v1beta2", selector={"matchLabels": {"app": "ds"}})
    assert defaulted(beta2)["spec"]["updateStrategy"] == {"type": "RollingUpdate",
                                                         "rollingUpdate": {"maxUnavailable": 1}}


def test_stateful_set_defaults_per_version():
    sts = {"apiVersion": "apps/v1beta2", "kind": "StatefulSet", "metadata": {"name": "s"},
           "spec": {"serviceName": "s", "selector": {"matchLabels": {"a": "b"}},
                    "template": {"metadata": {"labels": {"a": "b"}}}}}
    spec = defaulted(sts)["spec"]
    assert spec["updateStrategy"] == {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}
    sts["apiVersion"] = "apps/v1beta1"
    assert defaulted(sts)["spec"]["updateStrategy"] == {"type": "OnDelete"}


def test_cronjob_v1beta1_history_limits():
    cron = {"apiVersion": "batch/v1beta1", "kind": "CronJob", "metadata": {"name": "c"},
            "spec": {"schedule": "* * * * *", "jobTemplate": {"spec": {}}}}
    spec = defaulted(cron)["spec"]
    assert (spec["successfulJobsHistoryLimit"], spec["failedJobsHistoryLimit"]) == (3, 1)
    assert spec["concurrencyPolicy"] == "Allow"


# --- conversions ----------------------------------------------------------------------------------

def test_same_version_is_identity_without_copy():
    obj = deployment("apps/v1")
    assert convert.convert(obj, "apps/v1") is obj


def test_conversion_returns_a_new_object():
    obj = defaulted(deployment("extensions/v1beta1"))
    before = copy.deepcopy(obj)
    stored = convert.convert(obj, "apps/v1")
    stored["spec"]["template"]["metadata"]["labels"]["changed"] = "yes"
    assert obj == before


def test_conversion_between_two_legacy_versions_goes_through_storage():
    obj = defaulted(deployment("extensions/v1beta1", rollbackTo={"revision": 2}))
    beta1 = convert.convert(obj, "apps/v1beta1")
    assert beta1["apiVersion"] == "apps/v1beta1" and beta1["spec"]["rollbackTo"] == {"revision": 2}
    beta2 = convert.convert(obj, "apps/v1beta2")
    assert "rollbackTo" not in beta2["spec"]
    assert beta2["metadata"]["annotations"] == {convert.ROLLBACK_TO_ANNOTATION: "2"}


def test_rollback_to_travels_as_annotation():
    obj = defaulted(deployment("extensions/v1beta1", rollbackTo={"revision": 3}))
    stored = convert.convert(obj, "apps/v1")
    assert "rollbackTo" not in stored["spec"]
    assert stored["metadata"]["annotations"] == {convert.ROLLBACK_TO_ANNOTATION: "3"}
    assert convert.convert(stored, "extensions/v1beta1") == obj
    # Writing without rollbackTo clears a pending rollback.
    plain = copy.deepcopy(obj)
    del plain["spec"]["rollbackTo"]
    plain["metadata"]["annotations"] = {convert.ROLLBACK_TO_ANNOTATION: "3", "keep": "me"}
    assert convert.convert(plain, "apps/v1")["metadata"]["annotations"] == {"keep": "me"}


def test_unconvertible_requests_are_refused():
    with pytest.raises(ConversionError):
        convert.convert({"apiVersion": "v1", "kind": "Pod", "metadata": {}}, "apps/v1")
    with pytest.raises(ConversionError):
        convert.convert(deployment("apps/v1"), "networking.k8s.io/v1")
    with pytest.raises(ConversionError):
        convert.convert({"apiVersion": "extensions/v1beta1", "kind": "StatefulSet"}, "apps/v1")
    with pytest.raises(ConversionError):
        convert.storage_version_of("extensions", "StatefulSet")


def test_storage_version_of():
    assert convert.storage_version_of("extensions", "Deployment") == "apps/v1"
    assert convert.storage_version_of("extensions", "Ingress") == "networking.k8s.io/v1"
    assert convert.storage_version_of("extensions", "PodSecurityPolicy") == "policy/v1beta1"
    assert convert.storage_version_of("batch", "CronJob") == "batch/v1"
    assert convert.storage_version_of("autoscaling", "HorizontalPodAutoscaler") == "autoscaling/v2"
    assert convert.storage_version_of("events.k8s.io", "Event") == "v1"
    assert convert.storage_version_of("", "Pod") == "v1"


def test_lists_convert_item_by_item():
    stored = [convert.convert(defaulted(deployment("extensions/v1beta1", rollbackTo={"revision": 1})), "apps/v1"),
              convert.convert(defaulted(deployment("extensions/v1beta1")), "apps/v1")]
    del stored[1]["apiVersion"], stored[1]["kind"]  # items of a list response carry no type
    listed = {"apiVersion": "apps/v1", "kind": "DeploymentList", "metadata": {"resourceVersion": "7"},
              "items": stored}
    out = convert.convert(listed, "extensions/v1beta1")
    assert out["apiVersion"] == "extensions/v1beta1" and out["kind"] == "DeploymentList"
    assert out["metadata"] == {"resourceVersion": "7"}
    assert out["items"][0]["apiVersion"] == "extensions/v1beta1"
    assert out["items"][0]["spec"]["rollbackTo"] == {"revision": 1}
    assert "apiVersion" not in out["items"][1] and "rollbackTo" not in out["items"][1]["spec"]
    assert convert.convert(out, "apps/v1") == listed


def ingress_v1(**spec) -> dict:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "i"}, "spec": spec}


def test_ingress_default_backend_named_port_and_resource():
    stored = ingress_v1(
        ingressClassName="nginx",
        defaultBackend={"service": {"name": "web", "port": {"name": "http"}}},
        rules=[{"host": "h", "http": {"paths": [
            {"path": "/static", "pathType": "Prefix",
             "backend": {"resource": {"apiGroup": "k8s.example.com", "kind": "Bucket", "name": "b"}}}]}}],
        tls=[{"hosts": ["h"], "secretName": "s"}])
    old = convert.convert(stored, "extensions/v1beta1")
    assert "defaultBackend" not in old["spec"]
    assert old["spec"]["backend"] == {"serviceName": "web", "servicePort": "http"}
    assert old["spec"]["rules"][0]["http"]["paths"][0] == {
        "path": "/static", "pathType": "Prefix",
        "backend": {"resource": {"apiGroup": "k8s.example.com", "kind": "Bucket", "name": "b"}}}
    assert old["spec"]["ingressClassName"] == "nginx" and old["spec"]["tls"] == stored["spec"]["tls"]
    assert convert.convert(old, "networking.k8s.io/v1") == stored


def test_extensions_ingress_backend_only():
    old = {"apiVersion": "extensions/v1beta1", "kind": "Ingress", "metadata": {"name": "i"},
           "spec": {"backend": {"serviceName": "web", "servicePort": 8080}},
           "status": {"loadBalancer": {"ingress": [{"ip": "10.0.0.1"}]}}}
    stored = convert.convert(old, "networking.k8s.io/v1")
    assert stored["spec"] == {"defaultBackend": {"service": {"name": "web", "port": {"number": 8080}}}}
    assert stored["status"] == old["status"]
    assert convert.convert(stored, "extensions/v1beta1") == old


def hpa_v2() -> dict:
    return {
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "web", "namespace": "default", "annotations": {"team": "a"}},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            "minReplicas": 2, "maxReplicas": 9,
            "metrics": [
                {"type": "Resource", "resource": {"name": "memory",
                                                  "target": {"type": "AverageValue", "averageValue": "500Mi"}}},
                {"type": "Pods", "pods": {"metric": {"name": "qps"},
                                          "target": {"type": "AverageValue", "averageValue": "10"}}},
                {"type": "Resource", "resource": {"name": "cpu",
                                                  "target": {"type": "Utilization", "averageUtilization": 60}}},
            ],
            "behavior": {"scaleDown": {"stabilizationWindowSeconds": 300, "selectPolicy": "Min",
                                       "policies": [{"type": "Percent", "value": 50, "periodSeconds": 60}]}},
        },
        "status": {
            "observedGeneration": 3, "currentReplicas": 2, "desiredReplicas": 3,
            "currentMetrics": [
                {"type": "Resource", "resource": {"name": "memory", "current": {"averageValue": "400Mi"}}},
                {"type": "Resource", "resource": {"name": "cpu",
                                                  "current": {"averageValue": "120m", "averageUtilization": 75}}},
            ],
            "conditions": [{"type": "AbleToScale", "status": "True", "reason": "ReadyForNewScale",
                            "lastTransitionTime": "2024-01-01T00:00:00Z"}],
        },
    }


def test_hpa_v2_only_parts_travel_in_upstream_annotations():
    stored = hpa_v2()
    v1 = convert.convert(stored, "autoscaling/v1")
    assert v1["spec"] == {"scaleTargetRef": stored["spec"]["scaleTargetRef"], "minReplicas": 2,
                          "maxReplicas": 9, "targetCPUUtilizationPercentage": 60}
    assert v1["status"] == {"observedGeneration": 3, "currentReplicas": 2, "desiredReplicas": 3,
                            "currentCPUUtilizationPercentage": 75}
    annotations = v1["metadata"]["annotations"]
    assert annotations["team"] == "a"
    # The shapes upstream writes: v1's metric types, and the behavior as the internal Go struct.
    assert annotations[convert.METRICS_ANNOTATION] == (
        '[{"type":"Resource","resource":{"name":"memory","targetAverageValue":"500Mi"}},'
        '{"type":"Pods","pods":{"metricName":"qps","targetAverageValue":"10"}}]')
    assert orjson.loads(annotations[convert.CURRENT_METRICS_ANNOTATION]) == [
        {"type": "Resource", "resource": {"name": "memory", "currentAverageValue": "400Mi"}},
        {"type": "Resource", "resource": {"name": "cpu", "currentAverageUtilization": 75,
                                          "currentAverageValue": "120m"}}]
    assert orjson.loads(annotations[convert.BEHAVIOR_ANNOTATION]) == {
        "ScaleUp": None,
        "ScaleDown": {"StabilizationWindowSeconds": 300, "SelectPolicy": "Min",
                      "Policies": [{"Type": "Percent", "Value": 50, "PeriodSeconds": 60}], "Tolerance": None}}
    assert orjson.loads(annotations[convert.CONDITIONS_ANNOTATION]) == stored["status"]["conditions"]

    back = convert.convert(v1, "autoscaling/v2")
    assert back["metadata"]["annotations"] == {"team": "a"}
    # upstream puts the CPU target after the metrics carried in the annotation
    assert back["spec"] == stored["spec"]
    assert back["status"] == stored["status"]


def test_hpa_v1_without_target_means_80_percent_cpu():
    v1 = {"apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "h"},
          "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "d"}, "maxReplicas": 3},
          "status": {"currentReplicas": 1, "desiredReplicas": 1, "currentCPUUtilizationPercentage": 42}}
    v2 = convert.convert(v1, "autoscaling/v2")
    assert v2["spec"]["metrics"] == [{"type": "Resource", "resource": {
        "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}]
    assert v2["status"]["currentMetrics"] == [{"type": "Resource", "resource": {
        "name": "cpu", "current": {"averageUtilization": 42}}}]
    again = convert.convert(v2, "autoscaling/v1")
    assert again["spec"]["targetCPUUtilizationPercentage"] == 80
    assert again["status"] == v1["status"]
    # Upstream keeps the raw current metrics even when CPU utilization says it all.
    assert again["metadata"]["annotations"] == {convert.CURRENT_METRICS_ANNOTATION: (
        '[{"type":"Resource","resource":{"name":"cpu","currentAverageUtilization":42,"currentAverageValue":"0"}}]')}
    assert convert.convert(again, "autoscaling/v2")["status"]["currentMetrics"] == [{"type": "Resource", "resource": {
        "name": "cpu", "current": {"averageValue": "0", "averageUtilization": 42}}}]


def test_hpa_object_and_external_metrics_round_trip():
    stored = hpa_v2()
    stored["spec"]["metrics"] = [
        {"type": "Object", "object": {"describedObject": {"apiVersion": "v1", "kind": "Service", "name": "s"},
                                      "metric": {"name": "rps"}, "target": {"type": "Value", "value": "100"}}},
        {"type": "External", "external": {"metric": {"name": "queue", "selector": {"matchLabels": {"q": "x"}}},
                                          "target": {"type": "AverageValue", "averageValue": "30"}}},
    ]
    del stored["spec"]["behavior"], stored["status"]
    v1 = convert.convert(stored, "autoscaling/v1")
    assert "targetCPUUtilizationPercentage" not in v1["spec"]
    assert convert.convert(v1, "autoscaling/v2")["spec"] == stored["spec"]


def test_hpa_malformed_annotation_is_a_conversion_error():
    v1 = {"apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler",
          "metadata": {"name": "h", "annotations": {convert.METRICS_ANNOTATION: "not json"}},
          "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "d"}, "maxReplicas": 3}}
    with pytest.raises(ConversionError):
        convert.convert(v1, "autoscaling/v2")


def test_events_k8s_io_event_and_core_event():
    core = {"apiVersion": "v1", "kind": "Event", "metadata": {"name": "e.1", "namespace": "default"},
            "involvedObject": {"kind": "Pod", "name": "p", "namespace": "default"},
            "reason": "Scheduled", "message": "assigned", "source": {"component": "scheduler"},
            "firstTimestamp": "2024-01-01T00:00:00Z", "lastTimestamp": "2024-01-01T00:01:00Z", "count": 2,
            "type": "Normal", "eventTime": None, "action": "Binding", "reportingComponent": "default-scheduler",
            "reportingInstance": "default-scheduler-node1",
            "related": {"kind": "Node", "name": "node1"},
            "series": {"count": 2, "lastObservedTime": "2024-01-01T00:01:00.000000Z"}}
    event = convert.convert(core, "events.k8s.io/v1")
    assert event["apiVersion"] == "events.k8s.io/v1"
    assert event["regarding"] == core["involvedObject"] and event["note"] == "assigned"
    assert event["reportingController"] == "default-scheduler"
    assert event["reportingInstance"] == "default-scheduler-node1"
    assert event["deprecatedSource"] == {"component": "scheduler"} and event["deprecatedCount"] == 2
    assert event["deprecatedFirstTimestamp"] == core["firstTimestamp"]
    assert event["deprecatedLastTimestamp"] == core["lastTimestamp"]
    assert event["series"] == core["series"] and event["related"] == core["related"]
    assert not {"involvedObject", "message", "source", "count", "reportingComponent"} & event.keys()
    assert convert.convert(event, "v1") == core
