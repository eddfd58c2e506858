"""kubectl exec, logs and port-forward through the API server and the kubelet API to real
containers (runc + conmon + CNI on a throwaway node namespace)."""
from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request

import pytest

from helpers.cluster import start_server, unique, wait_for
from helpers.runtime_node import destroy_node, make_node
from streaming_env import KubeletThread, create_running_pod, kubectl_env, register_node, run_in_pty

from ketch.agent import resource_metrics
from ketch.agent.runtime import api
from ketch.agent.server import ContainerRef, KubeletError

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="runc needs root")


class RuntimeBackend:
    """One pod of real containers, looked up by container name."""

    def __init__(self, runtime, sandbox_id: str, containers: dict[str, tuple[str, str]]):
        self.runtime, self.sandbox_id, self.containers = runtime, sandbox_id, containers
        self.builder = resource_metrics.SummaryBuilder()

    def add_container(self, namespace, pod, name):
        pass

    async def resolve(self, namespace, pod, container, previous=False):
        if not container:
            return ContainerRef("", self.sandbox_id)
        if container not in self.containers or previous:
            raise KubeletError(400, f'previous terminated container "{container}" in pod "{pod}" not found')
        cid, log_path = self.containers[container]
        return ContainerRef(cid, self.sandbox_id, log_path)

    async def summary(self):
        return await resource_metrics.summary_from_runtime(self.builder, self.runtime, "rtnode", 0)

    async def resource_metrics(self):
        return resource_metrics.render_summary(await self.summary())


@pytest.fixture
def server(tmp_path):
    """A server of its own that scrapes kubelets every second (for kubectl top)."""
    (tmp_path / "server").mkdir()
    srv = start_server(tmp_path / "server", ["--metrics-resolution", "1s"])
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def real_kubelet(server, tmp_path):
    node = make_node(tmp_path)
    kubelet = None
    try:
        async def backend():
            rt = node.runtime()
            scfg = api.PodSandboxConfig(name="rt-pod", namespace="default", uid="uid-rt-pod", hostname="rt-pod")
            sid = await rt.run_pod_sandbox(scfg)
            made = {}
            for name, command, stdin in (
                    ("web", ["httpd", "-f", "-h", "/www", "-p", "80"], False),
                    ("talker", ["sh", "-c", "echo hello from the runtime; sleep 1000"], False),
                    ("reader", ["sh", "-c", "while read l; do echo got:$l; done"], True)):
                log_path = str(tmp_path / "logs" / f"{name}.log")
                cid = await rt.create_container(sid, api.ContainerConfig(name=name, image=node.image, command=command,
                                                                          log_path=log_path, stdin=stdin), scfg)
                await rt.start_container(cid)
                made[name] = (cid, log_path)
            return RuntimeBackend(rt, sid, made)
        kubelet = KubeletThread(tmp_path / "kubelet", backend, server=server).start()
        kubelet.node = unique("rtnode")
        register_node(server, kubelet.node, kubelet.url)
        yield kubelet
    finally:
        if kubelet is not None:
            kubelet.stop()
            server.kubectl("delete", "node", kubelet.node, "--wait=false", check=False)
        destroy_node(node)


def test_kubectl_against_real_containers(server, real_kubelet):
    ns = "default"
    pod = create_running_pod(server, real_kubelet, ns, real_kubelet.node, ["web", "talker", "reader"], name="rt-pod")
    out = server.kubectl("exec", pod, "-n", ns, "-c", "web", "--", "cat", "/etc/hostname").stdout
    assert out == "rt-pod\n"
    p = server.kubectl("exec", pod, "-n", ns, "-c", "web", "--", "sh", "-c", "exit 7", check=False)
    assert p.returncode == 7 and "command terminated with exit code 7" in p.stderr
    p = server.kubectl("exec", "-i", pod, "-n", ns, "-c", "web", "--", "sh", "-c", "read x; echo got=$x",
                       input="typed\n")
    assert p.stdout == "got=typed\n"
    code, out = run_in_pty(["/usr/bin/kubectl", "exec", "-it", pod, "-n", ns, "-c", "web", "--", "sh", "-c",
                            "tty; echo READY; read x; echo got=$x; exit 4"], kubectl_env(server), b"typed\r")
    assert b"/dev/pts/" in out and b"got=typed" in out and code == 4, out
    # attach to the main process of a container with stdin: what it prints comes back
    attach = subprocess.Popen(["/usr/bin/kubectl", "attach", "-i", pod, "-n", ns, "-c", "reader"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              env=kubectl_env(server))
    try:
        time.sleep(1.0)
        attach.stdin.write(b"ping\n")
        attach.stdin.flush()
        assert attach.stdout.readline() == b"got:ping\n"
    finally:
        attach.kill()
        attach.wait()
    # stats of the real pod through nodes/proxy: the Summary, then /metrics/resource from it
    base = f"/api/v1/nodes/{real_kubelet.node}/proxy"
    summary = json.loads(server.kubectl("get", "--raw", f"{base}/stats/summary").stdout)
    [entry] = summary["pods"]
    assert entry["podRef"] == {"name": "rt-pod", "namespace": "default", "uid": "uid-rt-pod"}
    assert {c["name"] for c in entry["containers"]} == {"web", "talker", "reader"}
    assert entry["memory"]["workingSetBytes"] > 0 and entry["cpu"]["usageCoreNanoSeconds"] > 0
    assert summary["node"]["memory"]["workingSetBytes"] > 0
    metrics = server.kubectl("get", "--raw", f"{base}/metrics/resource").stdout
    assert 'container_memory_working_set_bytes{container="web",namespace="default",pod="rt-pod"}' in metrics
    deadline = time.monotonic() + 10
    while "hello from the runtime" not in (logs := server.kubectl("logs", pod, "-n", ns, "-c", "talker").stdout):
        assert time.monotonic() < deadline, logs
        time.sleep(0.1)
    assert logs == "hello from the runtime\n"
    pf = subprocess.Popen(["/usr/bin/kubectl", "port-forward", "-n", ns, f"pod/{pod}", ":80"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=kubectl_env(server), text=True)
    try:
        line = pf.stdout.readline()
        local = int(line.split("127.0.0.1:")[1].split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{local}/", timeout=10) as r:
            assert r.read() == b"hello from busybox\n"
    finally:
        pf.kill()
        pf.wait()
    # metrics.k8s.io scrapes the kubelet's /metrics/resource over HTTPS: kubectl top works
    top = wait_for(lambda: (p := server.kubectl("top", "pod", "rt-pod", "--containers", check=False)).returncode == 0
                   and p.stdout, timeout=20, what="kubectl top")
    assert "web" in top and "talker" in top and "Mi" in top
