"""`ketch simulate`: simulated nodes register as a kubelet would, and play the kubelet for their pods."""
from __future__ import annotations

import functools
import json
import time

import pytest
from helpers.cluster import unique, wait_for

_poll = functools.partial(wait_for, interval=0.1)  # kubectl-heavy polls: not too often


@pytest.fixture
def ns(server):
    name = unique("sim")
    server.kubectl("create", "namespace", name)
    yield name
    server.kubectl("delete", "namespace", name, "--wait=false", check=False)


def _pods(*pods: str) -> str:
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": [json.loads(p) for p in pods]})


def _pod(name: str, node: str, *, restart: str = "Always", annotations: dict | None = None,
         containers: int = 1) -> str:
    return json.dumps({"apiVersion": "v1", "kind": "Pod",
                       "metadata": {"name": name, "annotations": annotations or {}},
                       "spec": {"nodeName": node, "restartPolicy": restart,
                                "containers": [{"name": f"c{i}", "image": "busybox:1.36"} for i in range(containers)]}})


def test_nodes_register_with_a_kubelets_shape(server, simulated_nodes):
    table = server.kubectl("get", "nodes", *simulated_nodes.node_names).stdout.splitlines()
    assert table[0].split() == ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]
    for line, name in zip(table[1:], simulated_nodes.node_names):
        cols = line.split()
        assert cols[0] == name and cols[1] == "Ready" and cols[2] == "<none>" and cols[4] == "v1.35.0"
    node = server.kubectl_json("get", "node", "sim-1")
    labels, status = node["metadata"]["labels"], node["status"]
    assert labels["kubernetes.io/hostname"] == "sim-1"
    assert labels["kubernetes.io/os"] == "linux" and labels["kubernetes.io/arch"] == "amd64"
    assert labels["topology.kubernetes.io/zone"] == "sim-b"
    assert "node.kubernetes.io/instance-type" in labels
    assert node["metadata"]["annotations"]["ketch.io/simulated"] == "true"
    assert status["capacity"]["cpu"] == "4" and status["capacity"]["memory"] == "16Gi"
    assert status["allocatable"]["pods"] == "110" and "ephemeral-storage" in status["allocatable"]
    conds = {c["type"]: c for c in status["conditions"]}
    assert conds["Ready"]["status"] == "True" and conds["Ready"]["reason"] == "KubeletReady"
    assert conds["Ready"]["message"] == "kubelet is posting ready status"
    assert all(conds[t]["status"] == "False" for t in ("MemoryPressure", "DiskPressure", "PIDPressure"))
    addresses = {a["type"]: a["address"] for a in status["addresses"]}
    assert addresses["Hostname"] == "sim-1" and addresses["InternalIP"].startswith("10.244.")
    assert status["nodeInfo"]["kubeletVersion"] == "v1.35.0"
    assert status["daemonEndpoints"]["kubeletEndpoint"]["Port"] == 10250
    assert not node["spec"].get("taints")


def test_leases_renew(server, simulated_nodes):
    def renew_time() -> str:
        return server.kubectl_json("get", "lease", "-n", "kube-node-lease", "sim-0")["spec"]["renewTime"]

    lease = server.kubectl_json("get", "lease", "-n", "kube-node-lease", "sim-0")
    assert lease["spec"]["holderIdentity"] == "sim-0" and lease["spec"]["leaseDurationSeconds"] == 40
    assert lease["metadata"]["ownerReferences"][0]["kind"] == "Node"
    first = lease["spec"]["renewTime"]
    _poll(lambda: renew_time() != first, timeout=15, interval=0.5)


def test_pod_goes_running_and_ready(server, simulated_nodes, ns):
    server.kubectl("-n", ns, "apply", "-f", "-", input=_pod("web", "sim-2", containers=2))
    server.kubectl("-n", ns, "wait", "--for=condition=Ready", "pod/web", "--timeout=20s")
    row = server.kubectl("-n", ns, "get", "pod", "web", "-o", "wide", "--no-headers").stdout.split()
    assert row[1:3] == ["2/2", "Running"] and row[6] == "sim-2"
    pod = server.kubectl_json("-n", ns, "get", "pod", "web")
    status = pod["status"]
    node_ip = next(a["address"] for a in server.kubectl_json("get", "node", "sim-2")["status"]["addresses"]
                   if a["type"] == "InternalIP")
    assert status["phase"] == "Running" and status["hostIP"] == node_ip and status["podIP"]
    assert status["podIPs"] == [{"ip": status["podIP"]}] and status["startTime"]
    assert [c["type"] for c in status["conditions"]] == [
        "PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled"]
    assert all(c["status"] == "True" for c in status["conditions"])
    for cs in status["containerStatuses"]:
        assert cs["ready"] and cs["started"] and cs["restartCount"] == 0 and "running" in cs["state"]
        assert cs["containerID"].startswith("containerd://") and len(cs["containerID"]) == 13 + 64
        assert cs["image"] == "docker.io/library/busybox:1.36"
        assert cs["imageID"].startswith("docker.io/library/busybox@sha256:")


def test_pods_get_distinct_ips(server, simulated_nodes, ns):
    names = [f"p{i}" for i in range(4)]
    server.kubectl("-n", ns, "apply", "-f", "-", input=_pods(*(_pod(n, "sim-0") for n in names)))
    server.kubectl("-n", ns, "wait", "--for=condition=Ready", *[f"pod/{n}" for n in names], "--timeout=20s")
    ips = [p["status"]["podIP"] for p in server.kubectl_json("-n", ns, "get", "pods")["items"]]
    assert len(set(ips)) == 4


def test_finishing_pods_succeed_or_fail(server, simulated_nodes, ns):
    server.kubectl("-n", ns, "apply", "-f", "-", input=_pods(
        _pod("ok", "sim-0", restart="Never", annotations={"ketch.io/simulate-duration": "1s"}),
        _pod("bad", "sim-1", restart="Never", annotations={"ketch.io/simulate-duration": "500ms",
                                                          "ketch.io/simulate-exit-code": "3"})))
    server.kubectl("-n", ns, "wait", "--for=jsonpath={.status.phase}=Succeeded", "pod/ok", "--timeout=20s")
    server.kubectl("-n", ns, "wait", "--for=jsonpath={.status.phase}=Failed", "pod/bad", "--timeout=20s")
    ok = server.kubectl_json("-n", ns, "get", "pod", "ok")["status"]
    term = ok["containerStatuses"][0]["state"]["terminated"]
    assert term["reason"] == "Completed" and term["exitCode"] == 0 and term["finishedAt"]
    assert {c["type"]: c["status"] for c in ok["conditions"]}["Ready"] == "False"
    bad = server.kubectl_json("-n", ns, "get", "pod", "bad")["status"]
    term = bad["containerStatuses"][0]["state"]["terminated"]
    assert term["reason"] == "Error" and term["exitCode"] == 3
    rows = {r.split()[0]: r.split()[2] for r in server.kubectl("-n", ns, "get", "pods", "--no-headers").stdout.splitlines()}
    assert rows == {"ok": "Completed", "bad": "Error"}


def test_failing_container_is_restarted_with_back_off(server, simulated_nodes, ns):
    server.kubectl("-n", ns, "apply", "-f", "-", input=_pod(
        "crash", "sim-0", restart="OnFailure",
        annotations={"ketch.io/simulate-duration": "300ms", "ketch.io/simulate-exit-code": "1"}))

    def waiting():
        status = server.kubectl_json("-n", ns, "get", "pod", "crash")["status"]
        cs = (status.get("containerStatuses") or [{}])[0]
        return cs if "waiting" in cs.get("state", {}) else None

    cs = _poll(waiting)
    assert cs["state"]["waiting"]["reason"] == "CrashLoopBackOff" and cs["restartCount"] == 1
    assert cs["lastState"]["terminated"]["exitCode"] == 1
    row = server.kubectl("-n", ns, "get", "pod", "crash", "--no-headers").stdout.split()
    assert row[2] == "CrashLoopBackOff"


def test_readiness_delay(server, simulated_nodes, ns):
    server.kubectl("-n", ns, "apply", "-f", "-", input=_pod("slow", "sim-1",
                                                           annotations={"ketch.io/simulate-ready-after": "1s"}))
    _poll(lambda: server.kubectl_json("-n", ns, "get", "pod", "slow")["status"].get("phase") == "Running")
    ready = {c["type"]: c for c in server.kubectl_json("-n", ns, "get", "pod", "slow")["status"]["conditions"]}
    assert ready["Ready"]["status"] == "False" and ready["Ready"]["reason"] == "ContainersNotReady"
    server.kubectl("-n", ns, "wait", "--for=condition=Ready", "pod/slow", "--timeout=20s")


def test_graceful_delete_completes(server, simulated_nodes, ns):
    server.kubectl("-n", ns, "apply", "-f", "-", input=_pod("gone", "sim-2"))
    server.kubectl("-n", ns, "wait", "--for=condition=Ready", "pod/gone", "--timeout=20s")
    t0 = time.monotonic()
    server.kubectl("-n", ns, "delete", "pod", "gone", "--timeout=20s")  # waits until the pod is gone
    assert time.monotonic() - t0 < 10
    assert server.kubectl("-n", ns, "get", "pod", "gone", check=False).returncode != 0


def test_simulator_on_a_fresh_server_with_custom_nodes(fresh_server, simulator):
    sim = simulator(fresh_server, nodes=2, name_prefix="big-",
                    extra_args=["--cpu", "32", "--memory", "128Gi", "--pods", "250", "--zones", "1",
                                "--labels", "pool=big,tier=gold"])
    node = fresh_server.kubectl_json("get", "node", "big-1")
    assert node["status"]["capacity"]["cpu"] == "32" and node["status"]["capacity"]["pods"] == "250"
    assert node["metadata"]["labels"]["pool"] == "big" and node["metadata"]["labels"]["tier"] == "gold"
    assert node["metadata"]["labels"]["topology.kubernetes.io/zone"] == "sim-a"
    # A restarted simulator takes its nodes over, keeping their addresses.
    ip = node["status"]["addresses"][0]["address"]
    sim.stop()
    sim.start()
    assert fresh_server.kubectl_json("get", "node", "big-1")["status"]["addresses"][0]["address"] == ip
