"""The official `kubernetes` Python client, used exactly as its users do, against a real ketch server.

Every expectation here is what an upstream kube-apiserver (1.35) answers; a failure means ketch
differs from Kubernetes in a way a Python user would notice.
"""
from __future__ import annotations

import base64
import datetime as dt
import json
import threading
import time
from collections.abc import Callable

import pytest
import yaml
from kubernetes import client, config, utils, watch
from kubernetes.client import ApiException

from helpers.cluster import BOOK, unique

MERGE = "application/merge-patch+json"
APPLY = "application/apply-patch+yaml"


# ---------------------------------------------------------------- fixtures and helpers

@pytest.fixture(scope="module")
def api_client(server) -> client.ApiClient:
    api = config.new_client_from_config(config_file=str(server.kubeconfig))
    yield api
    api.close()


@pytest.fixture(scope="module")
def core(api_client) -> client.CoreV1Api:
    return client.CoreV1Api(api_client)


@pytest.fixture(scope="module")
def apps(api_client) -> client.AppsV1Api:
    return client.AppsV1Api(api_client)


@pytest.fixture(scope="module")
def batch(api_client) -> client.BatchV1Api:
    return client.BatchV1Api(api_client)


@pytest.fixture
def ns(core) -> str:
    name = unique("py")
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    try:
        core.delete_namespace(name)
    except ApiException:
        pass


def api_error(call: Callable, *args, **kwargs) -> tuple[int, dict]:
    """Run a call that must fail; return (HTTP status, the Status body), checking the body's shape."""
    with pytest.raises(ApiException) as info:
        call(*args, **kwargs)
    err = info.value
    body = json.loads(err.body)
    assert body["kind"] == "Status" and body["apiVersion"] == "v1", body
    assert body["status"] == "Failure" and body["code"] == err.status, body
    return err.status, body


def rv(obj) -> int:
    return int(obj.metadata.resource_version)


def meta(name: str | None, **kw) -> client.V1ObjectMeta:
    return client.V1ObjectMeta(name=name, **kw)


def config_map(name: str, labels: dict | None = None, **data: str) -> client.V1ConfigMap:
    return client.V1ConfigMap(metadata=meta(name, labels=labels), data=data or {"k": "v"})


def deployment(name: str, replicas: int | None = None, *containers: tuple[str, str]) -> client.V1Deployment:
    containers = containers or (("web", "nginx:1.25"),)
    return client.V1Deployment(
        metadata=meta(name),
        spec=client.V1DeploymentSpec(
            replicas=replicas,
            selector=client.V1LabelSelector(match_labels={"app": name}),
            template=client.V1PodTemplateSpec(
                metadata=meta(None, labels={"app": name}),
                spec=client.V1PodSpec(containers=[client.V1Container(name=n, image=i) for n, i in containers]))))


def gone(read: Callable, *args) -> bool:
    try:
        read(*args)
    except ApiException as e:
        return e.status == 404
    return False


def clear_finalizers(patch: Callable, name: str, namespace: str) -> None:
    """Remove finalizers no controller here would remove; a running GC may have done it already."""
    try:
        patch(name, namespace, {"metadata": {"finalizers": None}}, _content_type=MERGE)
    except ApiException as e:
        assert e.status == 404, e.body


def watch_events(func: Callable, *args, count: int, **kwargs) -> list[dict]:
    """The first `count` events of a watch (the server ends it after a few seconds regardless)."""
    w = watch.Watch()
    events = []
    for event in w.stream(func, *args, timeout_seconds=5, _request_timeout=10, **kwargs):
        events.append(event)
        if len(events) == count:
            w.stop()
            break
    return events


# ---------------------------------------------------------------- kubeconfig and discovery

def test_load_kube_config_makes_default_clients_work(server):
    config.load_kube_config(config_file=str(server.kubeconfig))
    try:
        assert client.Configuration.get_default_copy().host == server.url
        version = client.VersionApi().get_code()
        assert version.major == "1" and version.git_version.startswith("v1.")
        names = {n.metadata.name for n in client.CoreV1Api().list_namespace().items}
        assert {"default", "kube-system", "kube-public", "kube-node-lease"} <= names
        groups = {g.name for g in client.ApisApi().get_api_versions().groups}
        assert {"apps", "batch", "storage.k8s.io", "coordination.k8s.io"} <= groups
        core_resources = {r.name for r in client.CoreV1Api().get_api_resources().resources}
        assert {"pods", "pods/status", "configmaps", "secrets", "services", "namespaces"} <= core_resources
    finally:
        client.Configuration.set_default(None)


# ---------------------------------------------------------------- CRUD on many kinds

def test_namespace_lifecycle(core):
    name = unique("pyns")
    created = core.create_namespace(client.V1Namespace(metadata=meta(name, labels={"team": "a"})))
    assert created.status.phase == "Active"
    assert created.spec.finalizers == ["kubernetes"]
    # The API server labels every namespace with its own name.
    assert created.metadata.labels == {"team": "a", "kubernetes.io/metadata.name": name}
    listed = core.list_namespace(label_selector="team=a").items
    assert name in [n.metadata.name for n in listed]
    deleted = core.delete_namespace(name)  # the Namespace itself comes back, now terminating
    assert deleted["kind"] == "Namespace" and deleted["metadata"]["deletionTimestamp"]
    assert deleted["status"]["phase"] == "Terminating"


def test_configmap_create_read_replace_delete(core, ns):
    created = core.create_namespaced_config_map(ns, config_map("one", a="1"))
    assert created.metadata.namespace == ns and created.metadata.uid
    assert isinstance(created.metadata.creation_timestamp, dt.datetime)
    assert created.metadata.creation_timestamp.tzinfo is not None
    read = core.read_namespaced_config_map("one", ns)
    assert read.data == {"a": "1"} and read.metadata.resource_version == created.metadata.resource_version

    read.data["b"] = "2"
    replaced = core.replace_namespaced_config_map("one", ns, read)
    assert replaced.data == {"a": "1", "b": "2"}
    assert rv(replaced) > rv(created)
    assert replaced.metadata.uid == created.metadata.uid

    # Replacing with the old resourceVersion is an optimistic-concurrency conflict.
    status, body = api_error(core.replace_namespaced_config_map, "one", ns, read)
    assert status == 409 and body["reason"] == "Conflict"
    assert body["message"] == ('Operation cannot be fulfilled on configmaps "one": the object has been '
                               'modified; please apply your changes to the latest version and try again')

    deleted = core.delete_namespaced_config_map("one", ns)
    assert deleted["kind"] == "Status" and deleted["status"] == "Success"
    assert deleted["details"]["name"] == "one" and deleted["details"]["kind"] == "configmaps"
    assert deleted["details"]["uid"] == created.metadata.uid
    assert gone(core.read_namespaced_config_map, "one", ns)


def test_secret_string_data_is_stored_base64(core, ns):
    body = client.V1Secret(metadata=meta("creds"), string_data={"password": "s3cr3t"},
                           data={"user": base64.b64encode(b"admin").decode()})
    created = core.create_namespaced_secret(ns, body)
    assert created.type == "Opaque"
    assert created.data == {"user": "YWRtaW4=", "password": base64.b64encode(b"s3cr3t").decode()}
    assert created.string_data is None  # write-only: merged into data, never returned
    patched = core.patch_namespaced_secret("creds", ns, {"stringData": {"user": "root"}})
    assert base64.b64decode(patched.data["user"]) == b"root"
    core.delete_namespaced_secret("creds", ns)
    assert gone(core.read_namespaced_secret, "creds", ns)


def test_pod_defaults_and_delete(core, ns):
    # A node selector no node matches keeps the pod Pending, never bound.
    pod = client.V1Pod(metadata=meta("p"), spec=client.V1PodSpec(node_selector={"no-such": "node"}, containers=[
        client.V1Container(name="web", image="nginx"),
        client.V1Container(name="tool", image="busybox:1.36", command=["sleep", "3600"])]))
    created = core.create_namespaced_pod(ns, pod)
    spec = created.spec
    assert spec.restart_policy == "Always"
    assert spec.dns_policy == "ClusterFirst"
    assert spec.scheduler_name == "default-scheduler"
    assert spec.termination_grace_period_seconds == 30
    assert spec.enable_service_links is True
    web, tool = spec.containers
    assert web.image_pull_policy == "Always"  # untagged means :latest
    assert tool.image_pull_policy == "IfNotPresent"
    assert web.termination_message_path == "/dev/termination-log"
    assert web.termination_message_policy == "File"
    assert created.status.phase == "Pending"
    assert created.status.qos_class == "BestEffort"

    assert [p.metadata.name for p in core.list_namespaced_pod(ns, field_selector="status.phase=Pending").items] == ["p"]
    assert core.list_namespaced_pod(ns, field_selector="status.phase=Running").items == []
    assert [p.metadata.name for p in core.list_namespaced_pod(ns, field_selector="spec.nodeName=").items] == ["p"]

    # A pod never bound to a node is deleted at once, and the deleted pod is returned.
    deleted = core.delete_namespaced_pod("p", ns)
    assert isinstance(deleted, client.V1Pod) and deleted.metadata.name == "p"
    assert gone(core.read_namespaced_pod, "p", ns)


def test_pod_admission_sets_priority_and_default_tolerations(core, ns):
    pod = client.V1Pod(metadata=meta("prio"), spec=client.V1PodSpec(
        containers=[client.V1Container(name="c", image="busybox:1.36")]))
    spec = core.create_namespaced_pod(ns, pod).spec
    assert spec.priority == 0 and spec.preemption_policy == "PreemptLowerPriority"
    assert sorted((t.key, t.operator, t.effect, t.toleration_seconds) for t in spec.tolerations) == [
        ("node.kubernetes.io/not-ready", "Exists", "NoExecute", 300),
        ("node.kubernetes.io/unreachable", "Exists", "NoExecute", 300)]


def test_pod_gets_default_service_account_and_token_volume(core, ns):
    pod = client.V1Pod(metadata=meta("sa"), spec=client.V1PodSpec(
        containers=[client.V1Container(name="c", image="busybox:1.36")]))
    spec = core.create_namespaced_pod(ns, pod).spec
    assert spec.service_account_name == "default"
    [volume] = spec.volumes
    assert volume.name.startswith("kube-api-access-") and volume.projected is not None
    [mount] = spec.containers[0].volume_mounts
    assert (mount.name, mount.mount_path, mount.read_only) == (
        volume.name, "/var/run/secrets/kubernetes.io/serviceaccount", True)


def test_service_defaults_and_immutable_cluster_ip(core, ns):
    svc = client.V1Service(metadata=meta("web"), spec=client.V1ServiceSpec(
        selector={"app": "web"}, ports=[client.V1ServicePort(port=80)]))
    created = core.create_namespaced_service(ns, svc)
    spec = created.spec
    assert spec.type == "ClusterIP" and spec.session_affinity == "None"
    assert spec.cluster_ip and spec.cluster_ips == [spec.cluster_ip]
    assert spec.ip_families == ["IPv4"] and spec.ip_family_policy == "SingleStack"
    assert spec.internal_traffic_policy == "Cluster"
    port = spec.ports[0]
    assert port.protocol == "TCP" and port.target_port == 80

    status, body = api_error(core.patch_namespaced_service, "web", ns, {"spec": {"clusterIP": "10.43.250.250"}})
    assert status == 422 and body["reason"] == "Invalid"
    assert body["message"].startswith('Service "web" is invalid: spec.clusterIPs[0]: Invalid value: ')
    assert body["message"].endswith(": may not change once set")

    node_port = core.create_namespaced_service(ns, client.V1Service(metadata=meta("np"), spec=client.V1ServiceSpec(
        type="NodePort", selector={"app": "web"}, ports=[client.V1ServicePort(port=80)])))
    assert 30000 <= node_port.spec.ports[0].node_port <= 32767
    assert node_port.spec.external_traffic_policy == "Cluster"
    for name in ("web", "np"):
        core.delete_namespaced_service(name, ns)
        assert gone(core.read_namespaced_service, name, ns)


def test_deployment_defaults_generation_and_selector_validation(apps, ns):
    created = apps.create_namespaced_deployment(ns, deployment("web"))
    spec = created.spec
    assert created.metadata.generation == 1
    assert spec.replicas == 1
    assert spec.strategy.type == "RollingUpdate"
    assert (spec.strategy.rolling_update.max_surge, spec.strategy.rolling_update.max_unavailable) == ("25%", "25%")
    assert spec.revision_history_limit == 10 and spec.progress_deadline_seconds == 600
    assert spec.template.spec.restart_policy == "Always"
    assert spec.template.spec.containers[0].image_pull_policy == "IfNotPresent"

    relabeled = apps.patch_namespaced_deployment("web", ns, {"metadata": {"labels": {"tier": "front"}}})
    assert relabeled.metadata.generation == 1  # metadata changes leave generation alone
    reimaged = apps.patch_namespaced_deployment(
        "web", ns, {"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "nginx:1.26"}]}}}})
    assert reimaged.metadata.generation == 2

    assert [d.metadata.name for d in apps.list_namespaced_deployment(ns, label_selector="tier=front").items] == ["web"]
    everywhere = apps.list_deployment_for_all_namespaces(label_selector="tier=front").items
    assert (ns, "web") in [(d.metadata.namespace, d.metadata.name) for d in everywhere]

    bad = deployment("bad")
    bad.spec.selector.match_labels = {"app": "other"}
    status, body = api_error(apps.create_namespaced_deployment, ns, bad)
    assert status == 422 and body["reason"] == "Invalid"
    assert body["details"] == {"name": "bad", "group": "apps", "kind": "Deployment", "causes": body["details"]["causes"]}
    assert any(c["field"] == "spec.template.metadata.labels" and c["reason"] == "FieldValueInvalid"
               for c in body["details"]["causes"]), body
    assert body["message"].startswith('Deployment.apps "bad" is invalid: spec.template.metadata.labels: Invalid value')


def test_deployment_scale_and_status_subresources(apps, ns):
    apps.create_namespaced_deployment(ns, deployment("web", 2))
    scale = apps.read_namespaced_deployment_scale("web", ns)
    assert (scale.kind, scale.api_version) == ("Scale", "autoscaling/v1")
    assert scale.spec.replicas == 2 and scale.status.selector == "app=web"

    scaled = apps.patch_namespaced_deployment_scale("web", ns, {"spec": {"replicas": 5}})
    assert scaled.spec.replicas == 5
    live = apps.read_namespaced_deployment("web", ns)
    assert live.spec.replicas == 5 and live.metadata.generation == 2

    # The deployment controller writes status meanwhile, so a replace can lose the race: read and
    # retry on conflict, as client-go's RetryOnConflict does.
    for _attempt in range(20):
        scaled = apps.read_namespaced_deployment_scale("web", ns)
        scaled.spec.replicas = 3
        try:
            assert apps.replace_namespaced_deployment_scale("web", ns, scaled).spec.replicas == 3
            break
        except client.exceptions.ApiException as e:
            assert e.status == 409
    else:
        raise AssertionError("the scale replace kept conflicting")

    status = apps.read_namespaced_deployment_status("web", ns)
    assert status.metadata.name == "web" and status.spec.replicas == 3
    generation = status.metadata.generation
    # The status endpoint changes status only; the main endpoint ignores status.
    condition = {"type": "Available", "status": "False", "reason": "Testing", "message": "set by a test"}
    patched = apps.patch_namespaced_deployment_status(
        "web", ns, {"spec": {"replicas": 9}, "status": {"conditions": [condition]}})
    assert patched.spec.replicas == 3
    assert ("Available", "Testing") in [(c.type, c.reason) for c in patched.status.conditions]
    assert patched.metadata.generation == generation
    ignored = apps.patch_namespaced_deployment("web", ns, {"status": {"replicas": 42}})
    assert ignored.status.replicas != 42


def test_foreground_delete_records_finalizer(apps, ns):
    apps.create_namespaced_deployment(ns, deployment("web"))
    deleted = apps.delete_namespaced_deployment(
        "web", ns, body=client.V1DeleteOptions(propagation_policy="Foreground"))
    # Deletion waits for dependents: the object is returned with a finalizer and a deletion timestamp.
    assert deleted["kind"] == "Deployment"
    assert "foregroundDeletion" in deleted["metadata"]["finalizers"]
    assert deleted["metadata"]["deletionTimestamp"]
    clear_finalizers(apps.patch_namespaced_deployment, "web", ns)
    assert gone(apps.read_namespaced_deployment, "web", ns)


def test_job_defaults_generated_selector_and_orphan_default(batch, ns):
    job = client.V1Job(metadata=meta("pi"), spec=client.V1JobSpec(template=client.V1PodTemplateSpec(
        spec=client.V1PodSpec(restart_policy="Never", containers=[
            client.V1Container(name="pi", image="perl:5.34", command=["perl", "-e", "print 1"])]))))
    created = batch.create_namespaced_job(ns, job)
    spec, uid = created.spec, created.metadata.uid
    assert (spec.completions, spec.parallelism, spec.backoff_limit) == (1, 1, 6)
    assert spec.completion_mode == "NonIndexed" and spec.suspend is False
    assert spec.pod_replacement_policy == "TerminatingOrFailed"
    assert spec.selector.match_labels == {"batch.kubernetes.io/controller-uid": uid}
    assert spec.template.metadata.labels == {
        "batch.kubernetes.io/controller-uid": uid, "controller-uid": uid,
        "batch.kubernetes.io/job-name": "pi", "job-name": "pi"}

    bad = client.V1Job(metadata=meta("bad"), spec=client.V1JobSpec(template=client.V1PodTemplateSpec(
        spec=client.V1PodSpec(restart_policy="Always", containers=[client.V1Container(name="c", image="busybox")]))))
    status, body = api_error(batch.create_namespaced_job, ns, bad)
    assert status == 422
    assert any(c["field"] == "spec.template.spec.restartPolicy" for c in body["details"]["causes"]), body

    # batch/v1 keeps a Job's pods by default: deletion records the "orphan" finalizer.
    deleted = batch.delete_namespaced_job("pi", ns)
    assert deleted["kind"] == "Job" and deleted["metadata"]["finalizers"] == ["orphan"]
    assert deleted["metadata"]["deletionTimestamp"]
    clear_finalizers(batch.patch_namespaced_job, "pi", ns)
    assert gone(batch.read_namespaced_job, "pi", ns)


def test_storage_class_is_cluster_scoped(api_client):
    storage = client.StorageV1Api(api_client)
    name = unique("sc")
    created = storage.create_storage_class(client.V1StorageClass(
        metadata=meta(name), provisioner="example.com/fast", parameters={"type": "ssd"}))
    assert created.metadata.namespace is None
    assert created.reclaim_policy == "Delete" and created.volume_binding_mode == "Immediate"
    assert name in [s.metadata.name for s in storage.list_storage_class().items]
    # Parameters are immutable once set.
    status, body = api_error(storage.patch_storage_class, name, {"parameters": {"type": "hdd"}})
    assert status == 422 and body["message"] == (
        f'StorageClass.storage.k8s.io "{name}" is invalid: parameters: Forbidden: updates to parameters are forbidden.')
    storage.delete_storage_class(name)
    assert gone(storage.read_storage_class, name)


def test_lease_keeps_microsecond_times(api_client, ns):
    leases = client.CoordinationV1Api(api_client)
    renew = dt.datetime(2025, 3, 4, 5, 6, 7, 123456, tzinfo=dt.timezone.utc)
    created = leases.create_namespaced_lease(ns, client.V1Lease(metadata=meta("leader"), spec=client.V1LeaseSpec(
        holder_identity="pod-a", lease_duration_seconds=15, acquire_time=renew, renew_time=renew)))
    assert created.spec.holder_identity == "pod-a" and created.spec.renew_time == renew
    later = renew + dt.timedelta(seconds=5, microseconds=1)
    created.spec.renew_time = later
    created.spec.lease_transitions = 1
    replaced = leases.replace_namespaced_lease("leader", ns, created)
    assert replaced.spec.renew_time == later and replaced.spec.lease_transitions == 1
    assert [x.spec.holder_identity for x in leases.list_namespaced_lease(ns).items] == ["pod-a"]
    leases.delete_namespaced_lease("leader", ns)
    assert gone(leases.read_namespaced_lease, "leader", ns)


# ---------------------------------------------------------------- list: selectors and paging

def test_label_and_field_selectors_are_exact(core, ns):
    for name, labels in [("a", {"app": "web", "tier": "front"}), ("b", {"app": "web", "tier": "db"}),
                         ("c", {"app": "api"}), ("d", None)]:
        core.create_namespaced_config_map(ns, config_map(name, labels))

    def names(**kw) -> list[str]:
        return [c.metadata.name for c in core.list_namespaced_config_map(ns, **kw).items]

    assert names(label_selector="app=web") == ["a", "b"]
    assert names(label_selector="app in (web,api)") == ["a", "b", "c"]
    assert names(label_selector="app,tier!=db") == ["a", "c"]
    # kube-root-ca.crt (published into every namespace by a controller) has no labels either.
    assert [n for n in names(label_selector="!app") if n != "kube-root-ca.crt"] == ["d"]
    assert names(label_selector="app notin (web),app") == ["c"]
    assert names(field_selector="metadata.name=b") == ["b"]
    assert names(field_selector="metadata.name!=b", label_selector="app") == ["a", "c"]
    assert names(field_selector=f"metadata.namespace={ns}", label_selector="tier=front") == ["a"]

    status, body = api_error(core.list_namespaced_config_map, ns, field_selector="spec.foo=bar")
    assert status == 400 and body["reason"] == "BadRequest"
    assert "field label not supported: spec.foo" in body["message"]
    status, body = api_error(core.list_namespaced_config_map, ns, label_selector="app in (web")
    assert status == 400 and body["reason"] == "BadRequest"


def test_limit_and_continue_page_through_a_snapshot(core, ns):
    for i in range(7):
        core.create_namespaced_config_map(ns, config_map(f"page-{i}", {"paged": "yes"}))
    # Compare pages with the unpaged list: a controller may have published kube-root-ca.crt here.
    everything = [c.metadata.name for c in core.list_namespaced_config_map(ns).items]
    assert everything == sorted(everything) and len(everything) >= 7

    first = core.list_namespaced_config_map(ns, limit=3)
    assert [c.metadata.name for c in first.items] == everything[:3]
    assert first.metadata._continue and first.metadata.remaining_item_count == len(everything) - 3

    # Pages after the first are served from the first page's snapshot.
    core.create_namespaced_config_map(ns, config_map("page-9", {"paged": "yes"}))
    seen, token = [c.metadata.name for c in first.items], first.metadata._continue
    while token:
        page = core.list_namespaced_config_map(ns, limit=3, _continue=token)
        assert page.metadata.resource_version == first.metadata.resource_version
        seen += [c.metadata.name for c in page.items]
        token = page.metadata._continue
    assert seen == everything and "page-9" not in seen
    assert page.metadata.remaining_item_count is None

    # With a selector the server cannot know how many remain, so it does not say.
    selected = core.list_namespaced_config_map(ns, label_selector="paged=yes", limit=3)
    assert [c.metadata.name for c in selected.items] == ["page-0", "page-1", "page-2"]
    assert selected.metadata._continue and selected.metadata.remaining_item_count is None
    rest = core.list_namespaced_config_map(ns, label_selector="paged=yes", _continue=selected.metadata._continue)
    assert [c.metadata.name for c in rest.items] == ["page-3", "page-4", "page-5", "page-6", "page-9"]

    now = core.list_namespaced_config_map(ns, label_selector="paged=yes")
    assert len(now.items) == 8 and not now.metadata._continue
    assert int(now.metadata.resource_version) > int(first.metadata.resource_version)


# ---------------------------------------------------------------- watch

def change_one_config_map(core, ns: str, name: str) -> None:
    core.create_namespaced_config_map(ns, config_map(name, a="1"))
    core.patch_namespaced_config_map(name, ns, {"data": {"a": "2"}})
    core.delete_namespaced_config_map(name, ns)


def assert_add_modify_delete(events: list[dict], name: str) -> None:
    assert [(e["type"], e["object"].metadata.name) for e in events] == [
        ("ADDED", name), ("MODIFIED", name), ("DELETED", name)]
    assert isinstance(events[0]["object"], client.V1ConfigMap)
    assert [e["object"].data for e in events] == [{"a": "1"}, {"a": "2"}, {"a": "2"}]
    versions = [rv(e["object"]) for e in events]
    assert versions == sorted(versions) and len(set(versions)) == 3
    assert events[0]["raw_object"]["kind"] == "ConfigMap" and events[0]["raw_object"]["apiVersion"] == "v1"


def test_watch_replays_changes_after_resource_version(core, ns):
    start = core.list_namespaced_config_map(ns).metadata.resource_version
    change_one_config_map(core, ns, "w")
    events = watch_events(core.list_namespaced_config_map, ns, count=3, resource_version=start,
                          field_selector="metadata.name=w")
    assert_add_modify_delete(events, "w")


def test_watch_streams_live_changes(core, ns):
    start = core.list_namespaced_config_map(ns).metadata.resource_version
    events: list[dict] = []
    watcher = threading.Thread(target=lambda: events.extend(watch_events(
        core.list_namespaced_config_map, ns, count=3, resource_version=start, field_selector="metadata.name=live")))
    watcher.start()
    time.sleep(0.3)
    change_one_config_map(core, ns, "live")
    watcher.join(15)
    assert_add_modify_delete(events, "live")


def test_watch_with_label_selector_sees_object_leave_as_deleted(core, ns):
    start = core.list_namespaced_config_map(ns).metadata.resource_version
    core.create_namespaced_config_map(ns, config_map("sel", {"app": "x"}))
    core.patch_namespaced_config_map("sel", ns, {"metadata": {"labels": {"app": "y"}}})
    events = watch_events(core.list_namespaced_config_map, ns, count=2, resource_version=start,
                          label_selector="app=x")
    assert [(e["type"], e["object"].metadata.labels["app"]) for e in events] == [("ADDED", "x"), ("DELETED", "y")]


# ---------------------------------------------------------------- patch types

def test_every_patch_type_on_a_config_map(core, ns):
    core.create_namespaced_config_map(ns, config_map("p", a="1", b="2"))
    # A dict body goes as a strategic merge patch.
    smp = core.patch_namespaced_config_map("p", ns, {"data": {"c": "3"}})
    assert smp.data == {"a": "1", "b": "2", "c": "3"}
    # A list body goes as a JSON patch.
    jp = core.patch_namespaced_config_map("p", ns, [
        {"op": "test", "path": "/data/a", "value": "1"},
        {"op": "replace", "path": "/data/a", "value": "one"},
        {"op": "remove", "path": "/data/b"},
        {"op": "add", "path": "/metadata/labels", "value": {"patched": "json"}}])
    assert jp.data == {"a": "one", "c": "3"} and jp.metadata.labels == {"patched": "json"}
    status, body = api_error(core.patch_namespaced_config_map, "p", ns,
                             [{"op": "test", "path": "/data/a", "value": "wrong"}])
    assert status == 422
    # JSON merge patch: null removes a key.
    mp = core.patch_namespaced_config_map("p", ns, {"data": {"c": None, "d": "4"}}, _content_type=MERGE)
    assert mp.data == {"a": "one", "d": "4"}
    # Server-side apply needs a field manager and records it.
    applied = core.patch_namespaced_config_map(
        "p", ns, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "p"}, "data": {"e": "5"}},
        _content_type=APPLY, field_manager="py-test")
    assert applied.data == {"a": "one", "d": "4", "e": "5"} and rv(applied) > rv(mp)
    managers = {(m.manager, m.operation) for m in applied.metadata.managed_fields}
    assert ("py-test", "Apply") in managers
    status, body = api_error(core.patch_namespaced_config_map, "p", ns,
                             {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "p"}},
                             _content_type=APPLY)
    assert status == 422 and body["message"] == (
        'PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: is required for apply patch')


def test_strategic_merge_keeps_list_entries_merge_patch_replaces_them(apps, ns):
    apps.create_namespaced_deployment(ns, deployment("web", 1, ("web", "nginx:1.25"), ("side", "busybox:1.36")))
    change = {"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}}}}
    smp = apps.patch_namespaced_deployment("web", ns, change)
    assert [(c.name, c.image) for c in smp.spec.template.spec.containers] == [
        ("web", "nginx:1.27"), ("side", "busybox:1.36")]
    deleted = apps.patch_namespaced_deployment(
        "web", ns, {"spec": {"template": {"spec": {"containers": [{"name": "side", "$patch": "delete"}]}}}})
    assert [c.name for c in deleted.spec.template.spec.containers] == ["web"]

    apps.patch_namespaced_deployment("web", ns, [{"op": "add", "path": "/spec/template/spec/containers/-",
                                                  "value": {"name": "side", "image": "busybox:1.36"}}])
    merged = apps.patch_namespaced_deployment("web", ns, change, _content_type=MERGE)
    assert [(c.name, c.image) for c in merged.spec.template.spec.containers] == [("web", "nginx:1.27")]
    assert merged.spec.template.spec.containers[0].image_pull_policy == "IfNotPresent"  # defaults re-applied


def test_server_side_apply_conflicts_on_replicas_unless_forced(apps, ns):
    def apply(manager: str, replicas: int, force: bool | None = None):
        body = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "ssa"},
                "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "ssa"}},
                         "template": {"metadata": {"labels": {"app": "ssa"}},
                                      "spec": {"containers": [{"name": "web", "image": "nginx:1.25"}]}}}}
        return apps.patch_namespaced_deployment("ssa", ns, body, _content_type=APPLY, field_manager=manager,
                                                force=force)

    created = apply("alpha", 2)  # apply creates what does not exist
    assert created.spec.replicas == 2 and created.metadata.generation == 1

    status, body = api_error(apply, "beta", 3)
    assert status == 409 and body["reason"] == "Conflict"
    assert body["message"] == 'Apply failed with 1 conflict: conflict with "alpha": .spec.replicas'
    assert body["details"]["causes"] == [
        {"reason": "FieldManagerConflict", "message": 'conflict with "alpha"', "field": ".spec.replicas"}]
    assert apps.read_namespaced_deployment("ssa", ns).spec.replicas == 2

    forced = apply("beta", 3, force=True)
    assert forced.spec.replicas == 3 and forced.metadata.generation == 2
    owners = {m.manager: json.dumps(m.fields_v1) for m in forced.metadata.managed_fields}
    assert '"f:replicas"' in owners["beta"] and '"f:replicas"' not in owners["alpha"]
    # Everything else alpha applied with the same values is now shared, so alpha keeps it.
    assert '"f:template"' in owners["alpha"] and '"f:template"' in owners["beta"]

    # Applying a value equal to the live one is shared ownership, never a conflict.
    assert apply("gamma", 3).spec.replicas == 3


# ---------------------------------------------------------------- errors

def test_errors_are_api_exceptions_with_status_bodies(core, ns):
    status, body = api_error(core.read_namespaced_config_map, "nope", ns)
    assert status == 404 and body["reason"] == "NotFound"
    assert body["message"] == 'configmaps "nope" not found'
    assert body["details"] == {"name": "nope", "kind": "configmaps"}

    missing = unique("missing")
    status, body = api_error(core.create_namespaced_config_map, missing, config_map("x"))
    assert status == 404 and body["message"] == f'namespaces "{missing}" not found'

    core.create_namespaced_config_map(ns, config_map("dup"))
    status, body = api_error(core.create_namespaced_config_map, ns, config_map("dup"))
    assert status == 409 and body["reason"] == "AlreadyExists"
    assert body["message"] == 'configmaps "dup" already exists'
    assert body["details"] == {"name": "dup", "kind": "configmaps"}

    status, body = api_error(core.create_namespaced_config_map, ns, config_map("Bad_Name"))
    assert status == 422 and body["reason"] == "Invalid"
    assert body["message"].startswith('ConfigMap "Bad_Name" is invalid: metadata.name: Invalid value: "Bad_Name": '
                                      "a lowercase RFC 1123 subdomain must consist of")
    assert body["details"]["kind"] == "ConfigMap" and body["details"]["name"] == "Bad_Name"
    assert [(c["field"], c["reason"]) for c in body["details"]["causes"]] == [("metadata.name", "FieldValueInvalid")]


# ---------------------------------------------------------------- kubernetes.utils with the book's manifests

def test_create_from_yaml_with_book_manifests(api_client, core, batch, ns):
    rc = utils.create_from_yaml(api_client, str(BOOK / "Chapter02/nodejs-controller.yaml"), namespace=ns)[0][0]
    assert isinstance(rc, client.V1ReplicationController)
    assert rc.spec.replicas == 3 and rc.spec.selector == {"name": "node-js"}
    assert rc.spec.template.spec.restart_policy == "Always"
    assert rc.metadata.labels == {"name": "node-js"}

    # The book's JSON manifests are indented with tabs, which YAML forbids: hand one over parsed.
    json_doc = json.loads((BOOK / "Chapter02/nodejs2-service.json").read_text())
    json_svc = utils.create_from_yaml(api_client, yaml_objects=[json_doc], namespace=ns)[0][0]
    assert json_svc.spec.ports[0].target_port == "node-js2" and json_svc.spec.type == "ClusterIP"

    job = utils.create_from_yaml(api_client, str(BOOK / "Chapter05/longtask.yaml"), namespace=ns)[0][0]
    assert job.spec.template.spec.restart_policy == "OnFailure"
    assert job.spec.template.spec.containers[0].command == ["cowsay", "Finishing that task in a jiffy"]
    assert batch.read_namespaced_job("long-task", ns).spec.backoff_limit == 6

    hpa = utils.create_from_yaml(api_client, str(BOOK / "Chapter04/node-js-scale-hpa.yaml"), namespace=ns)[0][0]
    assert hpa.spec.target_cpu_utilization_percentage == 20 and hpa.spec.max_replicas == 3

    # The book pins nodePort 30001; on a shared server another test may hold it, so let ketch allocate.
    doc = yaml.safe_load((BOOK / "Chapter03/nodejs-service-nodePort.yaml").read_text())
    assert doc["spec"]["ports"][0].pop("nodePort") == 30001
    svc = utils.create_from_yaml(api_client, yaml_objects=[doc], namespace=ns)[0][0]
    assert svc.spec.type == "NodePort" and 30000 <= svc.spec.ports[0].node_port <= 32767
    core.delete_namespaced_service("node-js-nodeport", ns)

    with pytest.raises(utils.FailToCreateError) as info:
        utils.create_from_yaml(api_client, str(BOOK / "Chapter02/nodejs-controller.yaml"), namespace=ns)
    status_codes = [e.status for e in info.value.api_exceptions]
    assert status_codes == [409]


def test_create_from_yaml_with_server_side_apply(api_client, batch, ns):
    created = utils.create_from_yaml(api_client, str(BOOK / "Chapter05/longtask.yaml"), namespace=ns, apply=True)
    assert created[0][0].metadata.name == "long-task"
    live = batch.read_namespaced_job("long-task", ns)
    assert ("python-client", "Apply") in {(m.manager, m.operation) for m in live.metadata.managed_fields}
    # Applying the same manifest again is a no-op, not a conflict: the apply entry keeps its time and
    # the spec its generation (the Job controller may write the status meanwhile, so not the RV).
    def apply_entry(meta) -> tuple:
        entry = next(m for m in meta.managed_fields if m.manager == "python-client" and m.operation == "Apply")
        return entry.time, entry.fields_v1
    time.sleep(1.1)  # a write would now stamp a later second
    again = utils.create_from_yaml(api_client, str(BOOK / "Chapter05/longtask.yaml"), namespace=ns, apply=True)
    assert again[0][0].metadata.generation == live.metadata.generation  # a dynamic ResourceInstance
    assert apply_entry(batch.read_namespaced_job("long-task", ns).metadata) == apply_entry(live.metadata)
