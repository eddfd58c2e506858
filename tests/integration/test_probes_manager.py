"""The prober manager's workers against a real HTTP server on loopback, with their results reported
to a callback and their events written through a real EventRecorder to the session's API server:
thresholds, initial delay, startup gating, the hold after a liveness failure and the restart.
Also the lifecycle hook's failure event."""
from __future__ import annotations

import asyncio
import time

import pytest
from aiohttp import web

from helpers.cluster import unique
from ketch.agent.hooks import run_post_start, run_pre_stop
from ketch.agent.prober import ProbeManager, kill_message
from ketch.client import kubeconfig
from ketch.client.events import EventRecorder
from ketch.client.rest import Client


class Loopback:
    """Stands in for the runtime's open_connection: "the pod" is this machine's loopback."""

    async def open_connection(self, sandbox_id: str, port: int, host: str = "127.0.0.1"):
        return await asyncio.open_connection(host, port)

    async def exec_sync(self, container_id: str, cmd: list[str], timeout: float | None = None):
        proc = await asyncio.create_subprocess_exec(*cmd, stdout=asyncio.subprocess.PIPE,
                                                    stderr=asyncio.subprocess.PIPE)
        out, err = await proc.communicate()
        return proc.returncode, out, err


class App:
    """An HTTP server whose endpoints answer 200 or 500 as the test says, counting hits."""

    def __init__(self):
        self.status: dict[str, int] = {}
        self.hits: dict[str, list[float]] = {}
        self.port = 0

    async def handle(self, request):
        name = request.match_info["name"]
        self.hits.setdefault(name, []).append(time.monotonic())
        if name == "away":
            raise web.HTTPFound(f"http://localhost:{self.port}/elsewhere", text="gone elsewhere")
        return web.Response(status=self.status.get(name, 200), text=name)

    async def start(self):
        app = web.Application()
        app.add_routes([web.get("/{name}", self.handle)])
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]


@pytest.fixture
async def app():
    a = App()
    await a.start()
    yield a
    await a.runner.cleanup()


@pytest.fixture
async def client(server):
    c = Client(kubeconfig.load(server.kubeconfig), user_agent="ketch-test")
    yield c
    await c.close()


@pytest.fixture
async def ns(client):
    name = unique("probe")
    await client.resource("v1", "Namespace").create({"metadata": {"name": name}})
    return name


@pytest.fixture
async def recorder(client):
    r = EventRecorder(client, "kubelet", host="node-1")
    yield r
    await r.close()


class Results:
    def __init__(self):
        self.calls: list[tuple[str, str, str, str]] = []

    def __call__(self, uid, name, probe_type, result, output):
        self.calls.append((name, probe_type, result, output))

    async def wait_for(self, entry: tuple, since: int = 0, timeout: float = 8.0) -> float:
        t0 = time.monotonic()
        while entry not in [c[:3] for c in self.calls[since:]]:
            assert time.monotonic() - t0 < timeout, f"no {entry} in {self.calls}"
            await asyncio.sleep(0.02)
        return time.monotonic()


def pod(ns: str, container: dict) -> dict:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web", "namespace": ns, "uid": unique("uid")},
            "spec": {"containers": [container]}, "status": {"podIP": "127.0.0.1"}}


def http_probe(port: int, path: str, **fields) -> dict:
    return {"httpGet": {"path": path, "port": port}, "periodSeconds": 1, "timeoutSeconds": 1, **fields}


async def events(client, ns: str, reason: str) -> list[dict]:
    items = (await client.resource("v1", "Event", ns).list())["items"]
    return [e for e in items if e["reason"] == reason]


async def test_readiness_thresholds_initial_delay_and_events(app, client, ns, recorder):
    results = Results()
    manager = ProbeManager(Loopback(), recorder, results, jitter=False)
    container = {"name": "app", "readinessProbe": http_probe(app.port, "ready", initialDelaySeconds=1,
                                                             successThreshold=2, failureThreshold=2)}
    p = pod(ns, container)
    uid = p["metadata"]["uid"]
    try:
        t0 = time.monotonic()
        manager.add_pod(p, {"app": "c1"}, "sandbox", "127.0.0.1")
        assert manager.started(uid, "app")  # no startup probe
        ready_at = await results.wait_for(("app", "readiness", "success"))
        assert app.hits["ready"][0] - t0 >= 0.95  # none before initialDelaySeconds
        assert len(app.hits["ready"]) == 2 and ready_at - t0 >= 1.9  # two successes in a row, a period apart
        assert manager.readiness(uid, "app")

        app.status["ready"] = 500
        await results.wait_for(("app", "readiness", "failure"))
        assert results.calls[-1] == ("app", "readiness", "failure", "HTTP probe failed with statuscode: 500")
        assert not manager.readiness(uid, "app")
        assert len(results.calls) == 2  # only changes are reported

        await recorder.flush()
        [event] = await events(client, ns, "Unhealthy")
        assert event["type"] == "Warning" and event["count"] >= 2
        assert event["message"] == "Readiness probe failed: HTTP probe failed with statuscode: 500"
        assert event["involvedObject"]["fieldPath"] == "spec.containers{app}"
        assert event["involvedObject"]["uid"] == uid and event["source"] == {"component": "kubelet", "host": "node-1"}
    finally:
        await manager.stop()


async def test_startup_gates_liveness_and_a_failed_liveness_holds_until_restart(app, client, ns, recorder):
    results = Results()
    manager = ProbeManager(Loopback(), recorder, results, jitter=False)
    app.status["started"] = 500
    container = {"name": "app", "startupProbe": http_probe(app.port, "started", failureThreshold=30),
                 "livenessProbe": http_probe(app.port, "live", failureThreshold=1)}
    p = pod(ns, container)
    uid = p["metadata"]["uid"]
    try:
        manager.add_pod(p, {"app": "c1"}, "sandbox", "127.0.0.1")
        await asyncio.sleep(1.5)
        assert not manager.started(uid, "app") and not manager.readiness(uid, "app")
        assert "live" not in app.hits  # liveness waits for the startup probe

        app.status["started"] = 200
        await results.wait_for(("app", "startup", "success"))
        assert manager.started(uid, "app")
        while "live" not in app.hits:
            await asyncio.sleep(0.05)

        app.status["live"] = 500
        await results.wait_for(("app", "liveness", "failure"))
        assert results.calls[-1][3] == "HTTP probe failed with statuscode: 500"
        hits = len(app.hits["live"])
        await asyncio.sleep(1.5)
        assert len(app.hits["live"]) == hits  # on hold until the container is replaced

        # The kubelet restarts the container: the workers start over.
        app.status["live"] = 200
        started_hits = len(app.hits["started"])
        before = len(results.calls)
        manager.update_container(uid, "app", "c2")
        assert results.calls[before:] == [("app", "startup", "unknown", ""), ("app", "liveness", "success", "")]
        assert not manager.started(uid, "app")
        await results.wait_for(("app", "startup", "success"), since=before)
        assert len(app.hits["started"]) > started_hits  # the new container was probed for startup again

        await recorder.flush()
        messages = {e["message"] for e in await events(client, ns, "Unhealthy")}
        assert messages == {"Startup probe failed: HTTP probe failed with statuscode: 500",
                            "Liveness probe failed: HTTP probe failed with statuscode: 500"}
    finally:
        await manager.stop()
    assert kill_message("app", "liveness") == "Container app failed liveness probe, will be restarted"


async def test_warning_and_errored_probe_events(app, client, ns, recorder):
    results = Results()
    manager = ProbeManager(Loopback(), recorder, results, jitter=False)
    container = {"name": "app", "readinessProbe": http_probe(app.port, "away"),
                 "livenessProbe": {"httpGet": {"path": "/", "port": "metrics"}, "periodSeconds": 1}}
    p = pod(ns, container)
    try:
        manager.add_pod(p, {"app": "c1"}, "sandbox", "127.0.0.1")
        # A redirect to another host is a success, with a warning.
        await results.wait_for(("app", "readiness", "success"))
        await recorder.flush()
        [warning] = await events(client, ns, "ProbeWarning")
        assert (warning["type"], warning["message"]) == (
            "Warning", "Readiness probe warning: Probe terminated redirects, Response body: gone elsewhere")
        # A probe the prober cannot run is an error, thrown away: liveness stays success.
        [errored] = await events(client, ns, "Unhealthy")
        assert errored["message"] == ('Liveness probe errored and resulted in unknown state: '
                                      'strconv.Atoi: parsing "metrics": invalid syntax')
        assert [c for c in results.calls if c[1] == "liveness"] == []
    finally:
        await manager.stop()


async def test_hook_failure_events(client, ns, recorder):
    container = {"name": "app", "lifecycle": {"postStart": {"exec": {"command": ["false"]}},
                                              "preStop": {"exec": {"command": ["sh", "-c", "exit 2"]}}}}
    p = pod(ns, container)
    message = await run_post_start(p, container, "c1", Loopback(), sandbox_id="sandbox", pod_ip="127.0.0.1",
                                   recorder=recorder)
    assert message.startswith('Exec lifecycle hook ([false]) for Container "app" in Pod "web_')
    left = await run_pre_stop(p, container, "c1", Loopback(), sandbox_id="sandbox", pod_ip="127.0.0.1",
                              grace_period=30, recorder=recorder)
    assert left == 30
    await recorder.flush()
    for reason, text in (("FailedPostStartHook", "PostStartHook failed"), ("FailedPreStopHook", "PreStopHook failed")):
        [event] = await events(client, ns, reason)
        assert (event["type"], event["message"]) == ("Warning", text)  # no hook output: it may hold secrets
        assert event["involvedObject"]["fieldPath"] == "spec.containers{app}"
