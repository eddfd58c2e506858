"""Probes and hooks through the real runtime: a busybox pod run by runc/conmon on a test-made node
(its own network namespace, CNI bridge), probed by the agent's code from outside: httpGet, tcpSocket
and grpc connect through RuncRuntime.open_connection inside the pod's network namespace, exec probes
and hooks run through runc exec."""
from __future__ import annotations

import asyncio
import subprocess
import sys
import time

import pytest

from helpers.runtime_node import destroy_node, make_node
from ketch.agent.hooks import run_post_start, run_pre_stop
from ketch.agent.prober import run_probe
from ketch.agent.runtime import api

GRPC_SERVER = """
import sys, time, grpc
from concurrent import futures
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
server = grpc.server(futures.ThreadPoolExecutor(2))
servicer = health.HealthServicer()
health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
server.add_insecure_port(sys.argv[1])
servicer.set("", health_pb2.HealthCheckResponse.SERVING)
servicer.set("db", health_pb2.HealthCheckResponse.NOT_SERVING)
server.start()
print("ready", flush=True)
server.wait_for_termination()
"""


@pytest.fixture
def node(tmp_path):
    n = make_node(tmp_path, pod_cidr="10.251.0.0/24")
    try:
        yield n
    finally:
        destroy_node(n)


@pytest.fixture
async def pod(node):
    """(runtime, sandbox id, pod IP, container id) of a pod whose container serves HTTP on port 80."""
    rt = node.runtime()
    scfg = api.PodSandboxConfig(name="web", namespace="default", uid="uid-web", hostname="web")
    sid = await rt.run_pod_sandbox(scfg)
    cfg = api.ContainerConfig(name="app", image=node.image, command=["httpd", "-f", "-h", "/www", "-p", "80"],
                              log_path=str(node.base / "logs" / "web_app.log"))
    cid = await rt.create_container(sid, cfg, scfg)
    await rt.start_container(cid)
    ip = (await rt.pod_sandbox_status(sid)).ip
    yield rt, sid, ip, cid
    await rt.stop_pod_sandbox(sid)
    await rt.remove_pod_sandbox(sid)


POD = {"metadata": {"name": "web", "namespace": "default", "uid": "uid-web"}}
CONTAINER = {"name": "app", "ports": [{"name": "http", "containerPort": 80}]}


async def probe_of(pod, spec: dict):
    rt, sid, ip, cid = pod
    return await run_probe(spec, POD, CONTAINER, cid, rt, sandbox_id=sid, pod_ip=ip)


async def until_success(pod, spec: dict):
    for _ in range(50):
        result = await probe_of(pod, spec)
        if result.result == "success":
            return result
        await asyncio.sleep(0.1)
    raise AssertionError(f"never succeeded: {result}")


async def test_http_probe_in_the_pod_network(pod):
    _, _, ip, _ = pod
    r = await until_success(pod, {"httpGet": {"path": "/", "port": "http"}})
    assert r.output == "hello from busybox\n"
    r = await probe_of(pod, {"httpGet": {"path": "/status/", "port": 80}})
    assert (r.result, r.output) == ("failure", "HTTP probe failed with statuscode: 404")
    r = await probe_of(pod, {"httpGet": {"path": "/status/", "port": 81}})
    assert (r.result, r.output) == ("failure", f'Get "http://{ip}:81/status/": dial tcp {ip}:81: connect: '
                                               "connection refused")
    # The pod's localhost is its own, not the agent's.
    r = await probe_of(pod, {"httpGet": {"host": "127.0.0.1", "path": "/", "port": 80}})
    assert r.result == "success"


async def test_tcp_probe_in_the_pod_network(pod):
    _, _, ip, _ = pod
    await until_success(pod, {"tcpSocket": {"port": 80}})
    r = await probe_of(pod, {"tcpSocket": {"port": 81}})
    assert (r.result, r.output) == ("failure", f"dial tcp {ip}:81: connect: connection refused")


async def test_exec_probe_in_the_container(pod):
    rt, _, _, cid = pod
    r = await probe_of(pod, {"exec": {"command": ["cat", "/tmp/healthy"]}})
    assert (r.result, r.output) == ("failure", "cat: can't open '/tmp/healthy': No such file or directory\n")
    await rt.exec_sync(cid, ["touch", "/tmp/healthy"], 5)
    assert (await probe_of(pod, {"exec": {"command": ["cat", "/tmp/healthy"]}})).result == "success"
    t0 = time.monotonic()
    r = await probe_of(pod, {"exec": {"command": ["sleep", "5"]}, "timeoutSeconds": 1})
    assert (r.result, r.output) == ("failure", 'command "sleep 5" timed out')
    assert time.monotonic() - t0 < 3


async def test_grpc_probe_in_the_pod_network(pod):
    rt, sid, ip, _ = pod
    netns = (await rt.pod_sandbox_status(sid)).netns
    # A gRPC health server in the pod's network namespace (busybox has none to run in the container).
    server = subprocess.Popen(["nsenter", f"--net={netns}", sys.executable, "-c", GRPC_SERVER, f"{ip}:50051"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout.readline().strip() == "ready"
        r = await probe_of(pod, {"grpc": {"port": 50051}})
        assert (r.result, r.output) == ("success", "service healthy")
        r = await probe_of(pod, {"grpc": {"port": 50051, "service": "db"}})
        assert (r.result, r.output) == ("failure", 'service unhealthy (responded with "NOT_SERVING")')
    finally:
        server.kill()
        server.wait()
    r = await probe_of(pod, {"grpc": {"port": 50051}, "timeoutSeconds": 1})
    assert (r.result, r.output) == ("failure", f'timeout: failed to connect service "{ip}:50051" within 1s: '
                                               "context deadline exceeded")


async def test_hooks_in_the_container(pod):
    rt, sid, ip, cid = pod
    container = {"name": "app", "lifecycle": {
        "postStart": {"exec": {"command": ["sh", "-c", "echo started > /tmp/post-start"]}},
        "preStop": {"httpGet": {"path": "/", "port": 80}}}}
    assert await run_post_start(POD, container, cid, rt, sandbox_id=sid, pod_ip=ip) is None
    _, out, _ = await rt.exec_sync(cid, ["cat", "/tmp/post-start"], 5)
    assert out == b"started\n"
    await until_success(pod, {"tcpSocket": {"port": 80}})
    assert await run_pre_stop(POD, container, cid, rt, sandbox_id=sid, pod_ip=ip, grace_period=30) == 30
    failing = {"name": "app", "lifecycle": {"postStart": {"exec": {"command": ["sh", "-c", "exit 7"]}}}}
    message = await run_post_start(POD, failing, cid, rt, sandbox_id=sid, pod_ip=ip)
    assert message == ('Exec lifecycle hook ([sh -c exit 7]) for Container "app" in Pod "web_default(uid-web)" '
                       "failed - error: command 'sh -c exit 7' exited with 7: , message: \"\"")
