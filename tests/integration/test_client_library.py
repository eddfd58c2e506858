"""ketch's own client library against the real server: REST, informers, work queue, leader election."""
from __future__ import annotations

import asyncio

import pytest

from helpers.cluster import unique
from ketch.api.errors import ApiError
from ketch.client import kubeconfig
from ketch.client.informer import Informer
from ketch.client.leader import LeaderElector
from ketch.client.rest import Client
from ketch.client.workqueue import WorkQueue


@pytest.fixture
async def client(server):
    c = Client(kubeconfig.load(server.kubeconfig), user_agent="ketch-test")
    yield c
    await c.close()


@pytest.fixture
async def ns(client):
    name = unique("cl")
    await client.resource("v1", "Namespace").create({"metadata": {"name": name}})
    return name


def cm(name: str, **labels) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": labels}, "data": {"a": "b"}}


async def until(predicate, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not predicate():
        if loop.time() > end:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


async def test_rest_crud_and_errors(client, ns):
    cms = client.resource("v1", "ConfigMap", ns)
    created = await cms.create(cm("one"))
    assert created["metadata"]["namespace"] == ns
    got = await cms.get("one")
    assert got["data"] == {"a": "b"}
    patched = await cms.patch("one", {"data": {"c": "d"}}, "merge")
    assert patched["data"] == {"a": "b", "c": "d"}
    with pytest.raises(ApiError) as err:
        await cms.create(cm("one"))
    assert err.value.code == 409 and err.value.reason == "AlreadyExists"
    await cms.delete("one")
    with pytest.raises(ApiError) as err:
        await cms.get("one")
    assert err.value.code == 404


async def test_informer_tracks_adds_updates_deletes(client, ns):
    cms = client.resource("v1", "ConfigMap", ns)
    await cms.create(cm("before"))
    seen: list[tuple[str, str]] = []
    informer = Informer(cms, namespace=ns)
    informer.add_handlers(on_add=lambda o: seen.append(("add", o["metadata"]["name"])),
                          on_update=lambda old, new: seen.append(("update", new["metadata"]["name"])),
                          on_delete=lambda o: seen.append(("delete", o["metadata"]["name"])))
    informer.start()
    try:
        await informer.wait_synced(5)
        assert ("add", "before") in seen
        await cms.create(cm("during"))
        await cms.patch("before", {"data": {"x": "y"}}, "merge")
        await cms.delete("during")
        await until(lambda: ("delete", "during") in seen)
        assert seen.index(("add", "during")) < seen.index(("delete", "during"))
        assert ("update", "before") in seen
        assert set(informer.cache) == {f"{ns}/before", f"{ns}/kube-root-ca.crt"}
        assert informer.cache[f"{ns}/before"]["data"] == {"a": "b", "x": "y"}
    finally:
        await informer.stop()


async def test_informer_label_selector(client, ns):
    cms = client.resource("v1", "ConfigMap", ns)
    informer = Informer(cms, namespace=ns, label_selector="tier=web")
    informer.start()
    try:
        await informer.wait_synced(5)
        await cms.create(cm("web", tier="web"))
        await cms.create(cm("db", tier="db"))
        await until(lambda: f"{ns}/web" in informer.cache)
        await asyncio.sleep(0.2)
        assert set(informer.cache) == {f"{ns}/web"}
        # Relabelling out of the selector reads as a delete.
        await cms.patch("web", {"metadata": {"labels": {"tier": "db"}}}, "merge")
        await until(lambda: not informer.cache)
    finally:
        await informer.stop()


async def test_workqueue_dedups_and_serialises_keys():
    q = WorkQueue()
    for _ in range(3):
        q.add("a")
    q.add("b")
    assert len(q) == 2
    first = await q.get()
    q.add(first)            # re-added while processing: not handed out twice
    second = await q.get()
    assert {first, second} == {"a", "b"}
    assert len(q) == 0
    q.done(first)           # now it comes back
    assert await asyncio.wait_for(q.get(), 1) == first
    q.add_rate_limited("c")
    q.add_rate_limited("c")
    assert q.num_requeues("c") == 2
    q.forget("c")
    assert q.num_requeues("c") == 0


async def test_leader_election_one_leader_and_failover(client, ns):
    a = LeaderElector(client, "test-lock", ns, "a", lease_duration=2, renew_deadline=1.5, retry_period=0.2)
    b = LeaderElector(client, "test-lock", ns, "b", lease_duration=2, renew_deadline=1.5, retry_period=0.2)
    leading: list[str] = []
    stop_a = asyncio.Event()

    async def lead_a():
        leading.append("a")
        await stop_a.wait()

    async def lead_b():
        leading.append("b")
        await asyncio.sleep(30)

    task_a = asyncio.create_task(a.run(lead_a))
    await until(lambda: leading == ["a"])
    task_b = asyncio.create_task(b.run(lead_b))
    await asyncio.sleep(1.0)
    assert leading == ["a"]          # b waits while a renews
    task_a.cancel()                  # a dies without releasing: b takes over after the lease expires
    await until(lambda: leading == ["a", "b"], timeout=8)
    lease = await client.resource("coordination.k8s.io/v1", "Lease", ns).get("test-lock")
    assert lease["spec"]["holderIdentity"] == "b"
    assert lease["spec"]["leaseTransitions"] == 1
    task_b.cancel()
    await asyncio.gather(task_a, task_b, return_exceptions=True)
