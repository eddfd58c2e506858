"""kubectl logs / exec / attach / cp / port-forward and the Python client's stream and
portforward, end to end: real kubectl (1.27 SPDY, 1.32 and 1.35 WebSocket) → real `ketch server`
→ the kubelet API (ketch.agent.server) whose containers are host processes."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import time

import pytest

from helpers import kubectl as kubectl_versions
from helpers.cluster import unique, wait_for
from streaming_env import KubeletThread, create_running_pod, kubectl_env, register_node, run_in_pty

from ketch.agent import logs

# 1.27, 1.32 and 1.35 by default; KETCH_STREAMING_KUBECTLS=1.27,1.30,1.32,1.33,1.35 runs every one.
VERSIONS = {v: p for v, p in kubectl_versions.versions().items() if v in os.environ.get("KETCH_STREAMING_KUBECTLS", "1.27,1.32,1.35").split(",")}
# What each kubectl speaks: 1.27 SPDY/3.1 only; from 1.30 exec over WebSocket v5, from 1.31
# port-forward as SPDY tunneled in WebSocket.
EXEC_PROTOCOL = {"1.27": "spdy:v4.channel.k8s.io", "1.30": "websocket:v5.channel.k8s.io",
                 "1.32": "websocket:v5.channel.k8s.io", "1.33": "websocket:v5.channel.k8s.io",
                 "1.35": "websocket:v5.channel.k8s.io"}
PORTFORWARD_PROTOCOL = {"1.27": "spdy:portforward.k8s.io", "1.30": "spdy:portforward.k8s.io",
                        "1.32": "websocket:SPDY/3.1+portforward.k8s.io",
                        "1.33": "websocket:SPDY/3.1+portforward.k8s.io",
                        "1.35": "websocket:SPDY/3.1+portforward.k8s.io"}


class protocol_used:
    """The kubelet sessions a block opened, by protocol."""

    def __init__(self, kubelet):
        self.counter = kubelet.server.sessions_by_protocol

    def __enter__(self):
        self.before = dict(self.counter)
        return self

    def __exit__(self, *exc):
        self.used = {k for k, v in self.counter.items() if v > self.before.get(k, 0)}


@pytest.fixture(scope="module")
def kubelet(server, tmp_path_factory):
    k = KubeletThread(tmp_path_factory.mktemp("kubelet"), server=server).start()
    k.node = unique("streaming")
    register_node(server, k.node, k.url)
    try:
        yield k
    finally:
        k.stop()
        server.kubectl("delete", "node", k.node, "--wait=false", check=False)


@pytest.fixture(scope="module")
def ns(server, kubelet):
    name = unique("st")
    server.kubectl("create", "namespace", name)
    yield name
    server.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture(scope="module")
def pod(server, kubelet, ns):
    return create_running_pod(server, kubelet, ns, kubelet.node, ["main"])


# ---- exec -------------------------------------------------------------------------------------

@pytest.mark.parametrize("version", sorted(VERSIONS))
def test_exec_passes_output_and_exit_code(server, kubelet, ns, pod, version):
    with protocol_used(kubelet) as used:
        p = server.kubectl("exec", pod, "-n", ns, "--", "sh", "-c", "echo out; echo err >&2; exit 3",
                           kubectl=VERSIONS[version], check=False)
    assert used.used == {EXEC_PROTOCOL[version]}
    assert p.returncode == 3
    assert p.stdout == "out\n"
    assert "err\n" in p.stderr and "command terminated with exit code 3" in p.stderr
    ok = server.kubectl("exec", pod, "-n", ns, "--", "true", kubectl=VERSIONS[version], check=False)
    assert ok.returncode == 0 and ok.stdout == "" and "terminated" not in ok.stderr


@pytest.mark.parametrize("version", sorted(VERSIONS))
def test_exec_stdin(server, ns, pod, version):
    data = "".join(f"line {i}\n" for i in range(2000))
    p = server.kubectl("exec", "-i", pod, "-n", ns, "--", "tr", "a-z", "A-Z", input=data, kubectl=VERSIONS[version])
    assert p.stdout == data.upper()
    big = server.kubectl("exec", "-i", pod, "-n", ns, "--", "wc", "-c", input="x" * 5_000_000,
                         kubectl=VERSIONS[version])
    assert big.stdout.strip() == "5000000"


@pytest.mark.parametrize("version", sorted(VERSIONS))
def test_exec_tty(server, ns, pod, version):
    """`kubectl exec -it` from a terminal: the command sees a TTY and the terminal's size, input
    is echoed by the remote terminal, and the exit code comes back."""
    script = "tty; stty size; echo READY; read x; echo got=$x; exit 4"
    code, out = run_in_pty([VERSIONS[version], "exec", "-it", pod, "-n", ns, "--", "sh", "-c", script],
                            kubectl_env(server), b"hello\r")
    text = out.decode(errors="replace")
    assert "/dev/pts/" in text, text
    assert "got=hello" in text, text
    assert code == 4, text


# ---- logs -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def logged_pod(server, kubelet, ns):
    name = create_running_pod(server, kubelet, ns, kubelet.node, ["app", "sidecar"])
    app = kubelet.backend.by_pod[(ns, name)]["app"]
    base = time.time_ns() - 3600 * 10**9  # an hour ago, then a line a minute
    with open(app.log_path, "wb") as f:
        for i in range(5):
            f.write(logs.format_line(base + i * 60 * 10**9, "stdout", f"old {i}".encode()))
        f.write(logs.format_line(time.time_ns(), "stderr", b"recent, split ", partial=True))
        f.write(logs.format_line(time.time_ns(), "stderr", b"in two"))
    return name, app


def test_logs_options(server, ns, logged_pod):
    name, _ = logged_pod
    every = server.kubectl("logs", name, "-n", ns, "-c", "app").stdout
    assert every == "old 0\nold 1\nold 2\nold 3\nold 4\nrecent, split in two\n"
    assert server.kubectl("logs", name, "-n", ns, "-c", "app", "--tail=2").stdout == "old 4\nrecent, split in two\n"
    assert server.kubectl("logs", name, "-n", ns, "-c", "app", "--since=10m").stdout == "recent, split in two\n"
    since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 3600 + 150))  # after "old 2"
    assert server.kubectl("logs", name, "-n", ns, "-c", "app", f"--since-time={since}").stdout == \
        "old 3\nold 4\nrecent, split in two\n"
    stamped = server.kubectl("logs", name, "-n", ns, "-c", "app", "--timestamps", "--tail=1").stdout
    assert stamped.endswith("Z recent, split in two\n") and stamped[:4].isdigit()
    assert server.kubectl("logs", name, "-n", ns, "-c", "app", "--limit-bytes=8").stdout == "old 0\nol"


def test_logs_errors_as_upstream(server, ns, logged_pod, kubelet):
    name, _ = logged_pod
    # kubectl picks a default container itself; the API server's own answer:
    p = server.kubectl("get", "--raw", f"/api/v1/namespaces/{ns}/pods/{name}/log", check=False)
    assert p.returncode != 0
    assert "a container name must be specified for pod %s, choose one of: [app sidecar]" % name in p.stderr
    p = server.kubectl("logs", name, "-n", ns, "-c", "app", "--previous", check=False)
    assert f'previous terminated container "app" in pod "{name}" not found' in p.stderr
    p = server.kubectl("logs", name, "-n", ns, "-c", "nope", check=False)
    assert f"container nope is not valid for pod {name}" in p.stderr
    waiting = unique("w")
    server.kubectl("run", waiting, "-n", ns, "--image=busybox", "--overrides",
                   '{"spec":{"nodeName":"%s","tolerations":[{"operator":"Exists"}]}}' % kubelet.node)
    p = server.kubectl("logs", waiting, "-n", ns, check=False)
    assert f'container "{waiting}" in pod "{waiting}" is waiting to start: ContainerCreating' in p.stderr


def test_logs_on_a_simulated_node_answer_as_an_unreachable_kubelet(server, ns):
    name = unique("sim")
    server.kubectl("run", name, "-n", ns, "--image=busybox", "--overrides", '{"spec":{"nodeName":"sim-0"}}')
    wait_for(lambda: server.kubectl_json("get", "pod", name, "-n", ns)["status"].get("phase") == "Running",
             what="simulated pod running")
    p = server.kubectl("logs", name, "-n", ns, check=False)
    assert p.returncode != 0 and "Error from server: Get \"https://" in p.stderr and "10250/containerLogs/" in p.stderr
    p = server.kubectl("exec", name, "-n", ns, "--", "true", check=False)
    assert p.returncode != 0 and "error dialing backend" in p.stderr


def test_logs_follow_and_rotation(server, ns, logged_pod):
    name, app = logged_pod
    proc = subprocess.Popen(["/usr/bin/kubectl", "logs", "-f", name, "-n", ns, "-c", "app", "--tail=0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=kubectl_env(server))
    try:
        got = []
        reader = threading.Thread(target=lambda: got.extend(iter(proc.stdout.readline, b"")), daemon=True)
        reader.start()
        time.sleep(1.0)
        with open(app.log_path, "ab") as f:
            f.write(logs.format_line(time.time_ns(), "stdout", b"followed 1"))
        wait_for(lambda: b"followed 1\n" in got, timeout=10, what="followed line")
        rotated = logs.rotate(app.log_path, max_size=1, max_files=3)
        assert rotated is not None and rotated.exists()
        with open(app.log_path, "ab") as f:  # the runtime reopened the log: a new file
            f.write(logs.format_line(time.time_ns(), "stdout", b"after rotation"))
        wait_for(lambda: b"after rotation\n" in got, timeout=10, what="line after rotation")
    finally:
        proc.kill()
        proc.wait()


# ---- attach and cp --------------------------------------------------------------------------

@pytest.mark.parametrize("version", sorted(VERSIONS))
def test_attach(server, kubelet, ns, version):
    name = create_running_pod(server, kubelet, ns, kubelet.node, ["main"])
    c = kubelet.backend.by_pod[(ns, name)]["main"]
    kubelet.call(kubelet.backend.runtime.start_main(c.id, "read l; echo got:$l; sleep 0.5"))
    p = server.kubectl("attach", "-i", name, "-n", ns, input="hello\n", kubectl=VERSIONS[version], timeout=30)
    assert "got:hello" in p.stdout


def test_cp_both_ways(server, ns, pod, tmp_path):
    src = tmp_path / "data.bin"
    src.write_bytes(os.urandom(300_000))
    server.kubectl("cp", str(src), f"{ns}/{pod}:copied.bin")
    back = tmp_path / "back.bin"
    server.kubectl("cp", f"{ns}/{pod}:copied.bin", str(back))
    assert back.read_bytes() == src.read_bytes()


# ---- port-forward ------------------------------------------------------------------------------

class EchoServer:
    """A loopback TCP server answering each connection with what it reads, upper-cased."""

    def __init__(self):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    @staticmethod
    def _one(conn):
        with conn:
            while data := conn.recv(65536):
                conn.sendall(data.upper())

    def close(self):
        self.sock.close()


@pytest.fixture(scope="module")
def echo(kubelet):
    e = EchoServer()
    kubelet.backend.runtime.ports[80] = e.port  # the pod's port 80
    yield e
    e.close()


def _roundtrip(port: int, payload: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
        got = bytearray()
        reader = threading.Thread(target=lambda: _read_n(s, got, len(payload)))
        reader.start()
        s.sendall(payload)
        reader.join(30)
        return bytes(got)


def _read_n(s, buf, n):
    while len(buf) < n:
        chunk = s.recv(65536)
        if not chunk:
            return
        buf += chunk


@pytest.mark.parametrize("version", sorted(VERSIONS))
def test_port_forward_moves_data_both_ways(server, kubelet, ns, pod, echo, version):
    with protocol_used(kubelet) as used:
        proc = subprocess.Popen([VERSIONS[version], "port-forward", "-n", ns, f"pod/{pod}", ":80"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=kubectl_env(server), text=True)
        try:
            line = proc.stdout.readline()  # Forwarding from 127.0.0.1:PORT -> 80
            assert "Forwarding from 127.0.0.1:" in line, line + (proc.stderr.read() if proc.poll() is not None else "")
            local = int(line.split("127.0.0.1:")[1].split()[0])
            payload = os.urandom(1_000_000).hex().encode()
            for _ in range(2):  # two connections over the same session
                assert _roundtrip(local, payload) == payload.upper()
        finally:
            proc.kill()
            proc.wait()
    assert used.used == {PORTFORWARD_PROTOCOL[version]}


def test_port_forward_to_a_service_and_logs_by_label(server, kubelet, ns, echo):
    """kubectl resolves a Service to one of its pods and its port to the pod's (targetPort)."""
    app = unique("app")
    name = create_running_pod(server, kubelet, ns, kubelet.node, ["main"], labels={"app": app})
    with open(kubelet.backend.by_pod[(ns, name)]["main"].log_path, "ab") as f:
        f.write(logs.format_line(time.time_ns(), "stdout", b"from the labelled pod"))
    assert server.kubectl("logs", "-n", ns, "-l", f"app={app}").stdout == "from the labelled pod\n"
    server.kubectl("create", "service", "clusterip", app, "-n", ns, "--tcp=8080:80")
    proc = subprocess.Popen(["/usr/bin/kubectl", "port-forward", "-n", ns, f"svc/{app}", ":8080"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=kubectl_env(server), text=True)
    try:
        line = proc.stdout.readline()
        assert line.endswith("-> 80\n"), line
        local = int(line.split("127.0.0.1:")[1].split()[0])
        assert _roundtrip(local, b"via the service") == b"VIA THE SERVICE"
    finally:
        proc.kill()
        proc.wait()


def test_port_forward_to_a_closed_port_reports_the_error(server, ns, pod, kubelet):
    with socket.create_server(("127.0.0.1", 0)) as s:
        closed = s.getsockname()[1]
    kubelet.backend.runtime.ports[81] = closed
    proc = subprocess.Popen(["/usr/bin/kubectl", "port-forward", "-n", ns, f"pod/{pod}", ":81"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=kubectl_env(server), text=True)
    try:
        line = proc.stdout.readline()
        local = int(line.split("127.0.0.1:")[1].split()[0])
        with socket.create_connection(("127.0.0.1", local), timeout=10) as c:
            c.settimeout(10)
            assert c.recv(10) == b""
        err = ""
        deadline = time.monotonic() + 10
        while "error forwarding port 81" not in err and time.monotonic() < deadline:
            err += proc.stderr.readline()
        assert "error forwarding port 81" in err
        assert 'failed to connect to localhost:81 inside namespace' in err and "connection refused" in err
    finally:
        proc.kill()
        proc.wait()


# ---- the Python client -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def core_v1(server):
    from kubernetes import client, config
    api = client.ApiClient(config.load_kube_config(config_file=str(server.kubeconfig)) or None)
    return client.CoreV1Api(api)


def test_python_client_exec(core_v1, ns, pod):
    from kubernetes.stream import stream
    out = stream(core_v1.connect_get_namespaced_pod_exec, pod, ns, command=["sh", "-c", "echo hi; echo e >&2"],
                 stderr=True, stdin=False, stdout=True, tty=False)
    assert "hi" in out
    resp = stream(core_v1.connect_get_namespaced_pod_exec, pod, ns, command=["sh", "-c", "read x; echo $x; exit 5"],
                  stderr=True, stdin=True, stdout=True, tty=False, _preload_content=False)
    resp.write_stdin("typed\n")
    resp.run_forever(timeout=10)
    assert resp.read_stdout().strip() == "typed" or "typed" in resp.read_all()
    assert resp.returncode == 5


def test_python_client_port_forward(core_v1, ns, pod, echo):
    from kubernetes.stream import portforward
    pf = portforward(core_v1.connect_get_namespaced_pod_portforward, pod, ns, ports="80")
    s = pf.socket(80)
    s.settimeout(10)
    s.sendall(b"hello over websocket")
    got = b""
    while len(got) < 20:
        got += s.recv(100)
    assert got == b"HELLO OVER WEBSOCKET"
    s.close()
    pf.close()


def test_python_client_exec_tty(core_v1, ns, pod):
    from kubernetes.stream import stream
    resp = stream(core_v1.connect_get_namespaced_pod_exec, pod, ns, command=["sh", "-c", "tty; stty size"],
                  stderr=True, stdin=True, stdout=True, tty=True, _preload_content=False)
    resp.write_channel(4, json.dumps({"Width": 100, "Height": 30}))
    resp.run_forever(timeout=10)
    out = resp.read_all()
    assert "/dev/pts/" in out


# ---- nodes/proxy -------------------------------------------------------------------------------

def test_node_proxy_reaches_the_kubelet(server, kubelet):
    base = f"/api/v1/nodes/{kubelet.node}/proxy"
    assert server.kubectl("get", "--raw", f"{base}/healthz").stdout == "ok"
    summary = json.loads(server.kubectl("get", "--raw", f"{base}/stats/summary").stdout)
    assert "node" in summary and "pods" in summary
    assert "resource_scrape_error 0" in server.kubectl("get", "--raw", f"{base}/metrics/resource").stdout
    pods = json.loads(server.kubectl("get", "--raw", f"{base}/pods").stdout)
    assert pods["kind"] == "PodList"
    p = server.kubectl("get", "--raw", "/api/v1/nodes/sim-0/proxy/healthz", check=False)
    assert p.returncode != 0 and "10250" in p.stderr


def test_kubelet_down_answers_as_upstream(server, ns):
    """A node whose kubelet URL points at a closed port: Go's wording of the refused dial."""
    with socket.create_server(("127.0.0.1", 0)) as s:
        port = s.getsockname()[1]
    node = unique("down")
    register_node(server, node, f"https://127.0.0.1:{port}")
    try:
        name = unique("p")
        server.kubectl("run", name, "-n", ns, "--image=busybox", "--overrides",
                       '{"spec":{"nodeName":"%s","tolerations":[{"operator":"Exists"}]}}' % node)
        p = server.kubectl("exec", name, "-n", ns, "--", "true", check=False)
        assert f"error dialing backend: dial tcp 127.0.0.1:{port}: connect: connection refused" in p.stderr
        p = server.kubectl("get", "--raw", f"/api/v1/nodes/{node}/proxy/healthz", check=False)
        assert f'Get "https://127.0.0.1:{port}/healthz": dial tcp 127.0.0.1:{port}: connect: connection refused' \
            in p.stderr
    finally:
        server.kubectl("delete", "node", node, "--wait=false", check=False)


# ---- the channel protocols, spoken directly to the kubelet ------------------------------------

@pytest.mark.parametrize("protocol", ["v4.channel.k8s.io", "channel.k8s.io", "base64.channel.k8s.io",
                                      "v4.base64.channel.k8s.io", "v5.channel.k8s.io"])
def test_websocket_channel_protocols(kubelet, ns, pod, protocol):
    import asyncio
    import base64

    import aiohttp

    async def exec_once():
        tls = kubelet.client_tls()
        url = f"{kubelet.url}/exec/{ns}/{pod}/main?command=sh&command=-c&command=echo+hi%3B+exit+3&stdout=1&stderr=1"
        got: dict[int, bytes] = {}
        async with aiohttp.ClientSession() as s, s.ws_connect(url, protocols=(protocol,), ssl=tls) as ws:
            assert ws.protocol == protocol
            async for msg in ws:
                if msg.type == aiohttp.WSMsgType.TEXT:
                    assert "base64" in protocol
                    channel, data = int(msg.data[0]), base64.b64decode(msg.data[1:])
                else:
                    channel, data = msg.data[0], msg.data[1:]
                got[channel] = got.get(channel, b"") + data
        return got

    got = asyncio.run(exec_once())
    assert got[1] == b"hi\n"
    if protocol.startswith(("v4", "v5")):
        status = json.loads(got[3])
        assert status["status"] == "Failure" and status["reason"] == "NonZeroExitCode"
        assert status["details"]["causes"] == [{"reason": "ExitCode", "message": "3"}]
    else:  # before v4 the error channel carries the message only
        assert got[3].startswith(b"command terminated with non-zero exit code")


@pytest.mark.parametrize("version", sorted(VERSIONS))
def test_exec_process_is_killed_when_the_client_goes_away(server, kubelet, ns, pod, version):
    workdir = kubelet.backend.by_pod[(ns, pod)]["main"].workdir
    pidfile = workdir / f"sleep-{version}.pid"
    proc = subprocess.Popen([VERSIONS[version], "exec", pod, "-n", ns, "--", "sh", "-c",
                             f"echo $$ > {pidfile.name}; exec sleep 1000"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=kubectl_env(server))
    try:
        wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), timeout=10, what="exec started")
        pid = int(pidfile.read_text())
    finally:
        proc.kill()
        proc.wait()
    wait_for(lambda: _gone(pid), timeout=10, what="the exec'd process to be killed")


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"  # a zombie is dead
    except (FileNotFoundError, ProcessLookupError):  # gone, or being reaped as we read
        return True


def test_log_options_validated_as_upstream(server, ns, logged_pod):
    name, _ = logged_pod
    base = f"/api/v1/namespaces/{ns}/pods/{name}/log?container=app"
    p = server.kubectl("get", "--raw", f"{base}&tailLines=-1", check=False)
    assert f'PodLogOptions "{name}" is invalid: tailLines: Invalid value: -1: must be greater than or equal to 0' \
        in p.stderr
    p = server.kubectl("get", "--raw", f"{base}&sinceSeconds=5&sinceTime=2026-01-01T00:00:00Z", check=False)
    assert "at most one of `sinceTime` or `sinceSeconds` may be specified" in p.stderr
    p = server.kubectl("get", "--raw", f"{base}&limitBytes=0", check=False)
    assert "limitBytes: Invalid value: 0: must be greater than 0" in p.stderr
