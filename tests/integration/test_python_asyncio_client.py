"""`kubernetes_asyncio`, used exactly as its users do, against a real ketch server.

Every expectation here is what an upstream kube-apiserver (1.35) answers.
"""
from __future__ import annotations

import json
from collections.abc import Awaitable

import pytest
from kubernetes_asyncio import client, config, watch
from kubernetes_asyncio.client import ApiException

from helpers.cluster import unique

MERGE = "application/merge-patch+json"
APPLY = "application/apply-patch+yaml"


@pytest.fixture
async def api(server) -> client.ApiClient:
    async with await config.new_client_from_config(config_file=str(server.kubeconfig)) as api_client:
        yield api_client


@pytest.fixture
async def ns(api) -> str:
    core = client.CoreV1Api(api)
    name = unique("pyaio")
    await core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    try:
        await core.delete_namespace(name)
    except ApiException:
        pass


async def api_error(call: Awaitable) -> tuple[int, dict]:
    """Await a call that must fail; return (HTTP status, the Status body)."""
    with pytest.raises(ApiException) as info:
        await call
    body = json.loads(info.value.body)
    assert body["kind"] == "Status" and body["status"] == "Failure" and body["code"] == info.value.status, body
    return info.value.status, body


def config_map(name: str, labels: dict | None = None, **data: str) -> client.V1ConfigMap:
    return client.V1ConfigMap(metadata=client.V1ObjectMeta(name=name, labels=labels), data=data or {"k": "v"})


def rv(obj) -> int:
    return int(obj.metadata.resource_version)


async def test_load_kube_config_and_config_map_crud(server, ns):
    cfg = client.Configuration()
    await config.load_kube_config(config_file=str(server.kubeconfig), client_configuration=cfg)
    assert cfg.host == server.url
    async with client.ApiClient(cfg) as api_client:
        core = client.CoreV1Api(api_client)
        created = await core.create_namespaced_config_map(ns, config_map("one", a="1"))
        assert created.metadata.namespace == ns and created.metadata.uid
        read = await core.read_namespaced_config_map("one", ns)
        assert read.data == {"a": "1"}
        read.data["b"] = "2"
        replaced = await core.replace_namespaced_config_map("one", ns, read)
        assert replaced.data == {"a": "1", "b": "2"} and rv(replaced) > rv(created)
        status, body = await api_error(core.replace_namespaced_config_map("one", ns, read))
        assert status == 409 and body["reason"] == "Conflict"
        deleted = await core.delete_namespaced_config_map("one", ns)
        assert deleted.status == "Success" and deleted.details.name == "one" and deleted.details.kind == "configmaps"
        status, body = await api_error(core.read_namespaced_config_map("one", ns))
        assert status == 404 and body["message"] == 'configmaps "one" not found'


async def test_crud_on_workload_kinds(api, ns):
    core, apps, batch = client.CoreV1Api(api), client.AppsV1Api(api), client.BatchV1Api(api)
    container = client.V1Container(name="web", image="nginx:1.25")

    pod = await core.create_namespaced_pod(ns, client.V1Pod(
        metadata=client.V1ObjectMeta(name="p"), spec=client.V1PodSpec(containers=[container])))
    assert pod.spec.restart_policy == "Always" and pod.status.phase == "Pending"
    assert pod.spec.containers[0].image_pull_policy == "IfNotPresent"

    dep = await apps.create_namespaced_deployment(ns, client.V1Deployment(
        metadata=client.V1ObjectMeta(name="web"),
        spec=client.V1DeploymentSpec(
            selector=client.V1LabelSelector(match_labels={"app": "web"}),
            template=client.V1PodTemplateSpec(metadata=client.V1ObjectMeta(labels={"app": "web"}),
                                              spec=client.V1PodSpec(containers=[container])))))
    assert dep.spec.replicas == 1 and dep.spec.template.spec.restart_policy == "Always"
    assert dep.spec.strategy.type == "RollingUpdate"
    scale = await apps.patch_namespaced_deployment_scale("web", ns, {"spec": {"replicas": 3}})
    assert scale.spec.replicas == 3
    status = await apps.read_namespaced_deployment_status("web", ns)
    assert status.spec.replicas == 3 and status.metadata.generation == 2

    job = await batch.create_namespaced_job(ns, client.V1Job(
        metadata=client.V1ObjectMeta(name="once"),
        spec=client.V1JobSpec(template=client.V1PodTemplateSpec(
            spec=client.V1PodSpec(restart_policy="Never", containers=[container])))))
    assert job.spec.backoff_limit == 6 and job.spec.completions == 1
    assert job.spec.selector.match_labels == {"batch.kubernetes.io/controller-uid": job.metadata.uid}

    svc = await core.create_namespaced_service(ns, client.V1Service(
        metadata=client.V1ObjectMeta(name="web"),
        spec=client.V1ServiceSpec(selector={"app": "web"}, ports=[client.V1ServicePort(port=80)])))
    assert svc.spec.cluster_ip and svc.spec.ports[0].target_port == 80

    deleted_pod = await core.delete_namespaced_pod("p", ns)
    assert deleted_pod.metadata.name == "p"
    await apps.delete_namespaced_deployment("web", ns, propagation_policy="Background")
    await batch.delete_namespaced_job("once", ns, propagation_policy="Background")
    await core.delete_namespaced_service("web", ns)
    for read in (core.read_namespaced_pod("p", ns), apps.read_namespaced_deployment("web", ns),
                 batch.read_namespaced_job("once", ns), core.read_namespaced_service("web", ns)):
        assert (await api_error(read))[0] == 404


async def test_list_with_selectors_and_paging(api, ns):
    core = client.CoreV1Api(api)
    for i in range(5):
        await core.create_namespaced_config_map(ns, config_map(f"c{i}", {"parity": "even" if i % 2 == 0 else "odd"}))

    async def names(**kw) -> list[str]:
        return [c.metadata.name for c in (await core.list_namespaced_config_map(ns, **kw)).items]

    assert await names(label_selector="parity=even") == ["c0", "c2", "c4"]
    assert await names(label_selector="parity!=even,parity") == ["c1", "c3"]
    assert await names(field_selector="metadata.name=c3") == ["c3"]

    everything = await names()  # may include kube-root-ca.crt, published by a controller
    first = await core.list_namespaced_config_map(ns, limit=2)
    assert [c.metadata.name for c in first.items] == everything[:2]
    assert first.metadata.remaining_item_count == len(everything) - 2
    seen = [c.metadata.name for c in first.items]
    token = first.metadata._continue
    while token:
        page = await core.list_namespaced_config_map(ns, limit=2, _continue=token)
        assert page.metadata.resource_version == first.metadata.resource_version
        seen += [c.metadata.name for c in page.items]
        token = page.metadata._continue
    assert seen == everything


async def test_watch_from_resource_version(api, ns):
    core = client.CoreV1Api(api)
    start = (await core.list_namespaced_config_map(ns)).metadata.resource_version
    await core.create_namespaced_config_map(ns, config_map("w", a="1"))
    await core.patch_namespaced_config_map("w", ns, {"data": {"a": "2"}})
    await core.delete_namespaced_config_map("w", ns)

    events = []
    async with watch.Watch() as w:
        async for event in w.stream(core.list_namespaced_config_map, ns, resource_version=start,
                                    field_selector="metadata.name=w", timeout_seconds=5):
            events.append(event)
            if len(events) == 3:
                break
    assert [(e["type"], e["object"].data["a"]) for e in events] == [("ADDED", "1"), ("MODIFIED", "2"), ("DELETED", "2")]
    assert isinstance(events[0]["object"], client.V1ConfigMap)
    versions = [rv(e["object"]) for e in events]
    assert versions == sorted(versions) and len(set(versions)) == 3


async def test_one_patch_of_each_type(api, ns):
    core = client.CoreV1Api(api)
    await core.create_namespaced_config_map(ns, config_map("p", a="1", b="2"))
    smp = await core.patch_namespaced_config_map("p", ns, {"data": {"c": "3"}})  # dict: strategic merge
    assert smp.data == {"a": "1", "b": "2", "c": "3"}
    jp = await core.patch_namespaced_config_map(  # list: JSON patch
        "p", ns, [{"op": "remove", "path": "/data/b"}, {"op": "replace", "path": "/data/a", "value": "one"}])
    assert jp.data == {"a": "one", "c": "3"}
    mp = await core.patch_namespaced_config_map("p", ns, {"data": {"c": None}}, _content_type=MERGE)
    assert mp.data == {"a": "one"}
    applied = await core.patch_namespaced_config_map(
        "p", ns, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "p"}, "data": {"z": "26"}},
        _content_type=APPLY, field_manager="aio-test")
    assert applied.data == {"a": "one", "z": "26"}
    assert ("aio-test", "Apply") in {(m.manager, m.operation) for m in applied.metadata.managed_fields}
    assert rv(smp) < rv(jp) < rv(mp) < rv(applied)


async def test_api_exceptions_carry_status_bodies(api, ns):
    core = client.CoreV1Api(api)
    status, body = await api_error(core.read_namespaced_secret("nope", ns))
    assert status == 404 and body["reason"] == "NotFound" and body["details"] == {"name": "nope", "kind": "secrets"}
    await core.create_namespaced_config_map(ns, config_map("dup"))
    status, body = await api_error(core.create_namespaced_config_map(ns, config_map("dup")))
    assert status == 409 and body["reason"] == "AlreadyExists"
    status, body = await api_error(core.create_namespaced_config_map(ns, config_map("UPPER")))
    assert status == 422 and body["reason"] == "Invalid"
    assert body["details"]["causes"][0]["field"] == "metadata.name"
