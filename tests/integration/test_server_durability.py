"""kill -9 the API server during 1,000 concurrent creates: every 201 survives, revisions keep rising,
and a watcher resumes from its last resourceVersion without missing an event."""
from __future__ import annotations

import asyncio
import json

import aiohttp

from helpers.http import Api


async def _create_many(server, ns: str, total: int, acked: list[str], kill_after: int) -> None:
    api = Api(server.kubeconfig)
    connector = aiohttp.TCPConnector(ssl=api.ctx, limit=64)
    sem = asyncio.Semaphore(64)
    async with aiohttp.ClientSession(connector=connector) as session:
        async def one(i: int) -> None:
            body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"cm-{i:04d}"}, "data": {"i": str(i)}}
            async with sem:
                try:
                    async with session.post(f"{server.url}/api/v1/namespaces/{ns}/configmaps", json=body,
                                            timeout=aiohttp.ClientTimeout(total=20)) as resp:
                        await resp.read()
                        if resp.status == 201:
                            acked.append(body["metadata"]["name"])
                            if len(acked) == kill_after:
                                server.kill9()
                except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
                    pass
        await asyncio.gather(*(one(i) for i in range(total)))


def test_kill9_during_concurrent_creates(fresh_server):
    server = fresh_server
    api = Api(server.kubeconfig)
    ns = "durable"
    assert api.request("POST", "/api/v1/namespaces", {"metadata": {"name": ns}})[0] == 201
    _, before, _ = api.request("GET", f"/api/v1/namespaces/{ns}/configmaps")
    start_rv = int(before["metadata"]["resourceVersion"])

    acked: list[str] = []
    asyncio.run(_create_many(server, ns, 1000, acked, kill_after=400))
    assert len(acked) >= 400

    server.start()
    api = Api(server.kubeconfig)
    _, after, _ = api.request("GET", f"/api/v1/namespaces/{ns}/configmaps")
    present = {i["metadata"]["name"] for i in after["items"]}
    missing = set(acked) - present
    assert not missing, f"{len(missing)} acknowledged creates lost, e.g. {sorted(missing)[:5]}"
    max_rv = max(int(i["metadata"]["resourceVersion"]) for i in after["items"])
    assert max_rv > start_rv

    # A watcher resuming from the list's resourceVersion sees the next write, and only it.
    list_rv = after["metadata"]["resourceVersion"]
    status, created, _ = api.request("POST", f"/api/v1/namespaces/{ns}/configmaps",
                                     {"metadata": {"name": "after-restart"}})
    assert status == 201 and int(created["metadata"]["resourceVersion"]) > max_rv
    status, body, _ = api.request("GET", f"/api/v1/namespaces/{ns}/configmaps?watch=1&resourceVersion={list_rv}"
                                         f"&timeoutSeconds=1")
    events = [body] if isinstance(body, dict) else [json.loads(line) for line in body.splitlines() if line.strip()]
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [("ADDED", "after-restart")]
