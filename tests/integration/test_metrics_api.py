"""metrics.k8s.io: a fresh server scraping simulated kubelets every second, read with real kubectl
(`kubectl top`, 1.32 and 1.35) and over the raw API."""
from __future__ import annotations

import functools
import json

import pytest
from helpers.cluster import Simulator, start_server, unique, wait_for
from helpers.kubectl import kubectl_135

poll = functools.partial(wait_for, interval=0.3)  # kubectl-heavy polls: not too often

NODES = ["m-0", "m-1"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    srv = start_server(tmp_path_factory.mktemp("metrics"), extra_args=["--metrics-resolution", "1s"])
    sim = Simulator(srv, nodes=2, name_prefix="m-", extra_args=["--metrics"])
    try:
        sim.start()
        yield srv
    finally:
        sim.stop()
        srv.stop()


def _rows(output: str) -> dict[str, list[str]]:
    lines = output.strip().splitlines()
    return {line.split()[0]: line.split()[1:] for line in lines[1:]} if lines else {}


def _pod(ns: str, name: str, node: str, cpu: str, memory: str, containers: int = 1, app: str = "a") -> str:
    spec = {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": ns, "labels": {"app": app},
                         "annotations": {"ketch.io/simulate-cpu": cpu, "ketch.io/simulate-memory": memory}},
            "spec": {"nodeName": node,
                     "containers": [{"name": f"c{i}", "image": "busybox"} for i in range(containers)]}}
    return json.dumps(spec)


@pytest.fixture
def ns(cluster):
    name = unique("metrics")
    cluster.kubectl("create", "namespace", name)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


def test_discovery_lists_the_metrics_group(cluster):
    out = cluster.kubectl("api-resources", "--api-group=metrics.k8s.io").stdout
    assert _rows(out) == {"nodes": ["metrics.k8s.io/v1beta1", "false", "NodeMetrics"],
                          "pods": ["metrics.k8s.io/v1beta1", "true", "PodMetrics"]}
    explained = cluster.kubectl("explain", "podmetrics.containers").stdout
    assert "GROUP:      metrics.k8s.io" in explained and "ContainerMetrics" in explained


@pytest.mark.parametrize("kubectl", ["/usr/bin/kubectl", "1.35"])
def test_kubectl_top_nodes(cluster, kubectl):
    binary = kubectl_135() if kubectl == "1.35" else kubectl
    if binary is None:
        pytest.skip("kubectl 1.35 not available")
    rows = poll(lambda: (r := _rows(cluster.kubectl("top", "nodes", kubectl=binary, check=False).stdout))
                and set(NODES) <= set(r) and r)
    assert set(NODES) <= set(rows), rows
    for node in NODES:
        cpu, cpu_pct, memory, memory_pct = rows[node]
        assert cpu.endswith("m") and cpu_pct.endswith("%"), rows[node]
        assert memory.endswith("Mi") and memory_pct.endswith("%"), rows[node]


def test_kubectl_top_pods_reports_simulated_usage_and_follows_changes(cluster, ns):
    cluster.kubectl("apply", "-f", "-", input=_pod(ns, "busy", "m-0", "250m", "64Mi", containers=2))
    cluster.kubectl("apply", "-f", "-", input=_pod(ns, "idle", "m-1", "10m", "32Mi", app="b"))
    rows = poll(lambda: (r := _rows(cluster.kubectl("top", "pods", "-n", ns, check=False).stdout))
                and len(r) == 2 and r)
    assert rows == {"busy": ["250m", "64Mi"], "idle": ["10m", "32Mi"]}
    # Per container: the pod's usage is split evenly.
    out = cluster.kubectl("top", "pods", "-n", ns, "busy", "--containers").stdout
    assert [line.split() for line in out.strip().splitlines()[1:]] == [["busy", "c0", "125m", "32Mi"],
                                                                       ["busy", "c1", "125m", "32Mi"]]
    # Label selectors select pods.
    assert set(_rows(cluster.kubectl("top", "pods", "-n", ns, "-l", "app=b").stdout)) == {"idle"}
    k135 = kubectl_135()
    if k135:
        assert _rows(cluster.kubectl("top", "pods", "-n", ns, kubectl=k135).stdout)["idle"] == ["10m", "32Mi"]
    # Load changes at runtime with the annotation.
    cluster.kubectl("annotate", "pod", "-n", ns, "idle", "ketch.io/simulate-cpu=400m", "--overwrite")
    rows = poll(lambda: (r := _rows(cluster.kubectl("top", "pods", "-n", ns, check=False).stdout))
                and r.get("idle", [""])[0] == "400m" and r)
    assert rows["idle"] == ["400m", "32Mi"], rows


def test_raw_pod_and_node_metrics(cluster, ns):
    cluster.kubectl("apply", "-f", "-", input=_pod(ns, "raw", "m-1", "100m", "16Mi"))
    path = f"/apis/metrics.k8s.io/v1beta1/namespaces/{ns}/pods/raw"
    got = poll(lambda: json.loads(r.stdout) if (r := cluster.kubectl("get", "--raw", path, check=False)).returncode
               == 0 else None)
    assert got["kind"] == "PodMetrics" and got["apiVersion"] == "metrics.k8s.io/v1beta1"
    assert got["metadata"]["name"] == "raw" and got["metadata"]["labels"] == {"app": "a"}
    assert got["timestamp"].endswith("Z") and got["window"].endswith("s")
    assert got["containers"] == [{"name": "c0", "usage": {"cpu": "100m", "memory": "16Mi"}}]
    listed = json.loads(cluster.kubectl("get", "--raw", "/apis/metrics.k8s.io/v1beta1/nodes").stdout)
    assert listed["kind"] == "NodeMetricsList"
    node = next(i for i in listed["items"] if i["metadata"]["name"] == "m-1")
    assert set(node["usage"]) == {"cpu", "memory"}
    assert node["metadata"]["labels"]["kubernetes.io/hostname"] == "m-1"
    # Unknown pods and pods without metrics are NotFound, as metrics-server answers.
    out = cluster.kubectl("get", "--raw", f"/apis/metrics.k8s.io/v1beta1/namespaces/{ns}/pods/nope", check=False)
    assert out.returncode != 0 and f'pods "{ns}/nope" not found' in out.stderr
    # kubectl get renders metrics-server's table.
    table = cluster.kubectl("get", "podmetrics", "-n", ns, "raw").stdout.split()
    assert table[:4] == ["NAME", "CPU", "MEMORY", "WINDOW"] and table[4:7] == ["raw", "100m", "16Mi"]
    # Read-only: no watch, no writes.
    out = cluster.kubectl("delete", "podmetrics", "-n", ns, "raw", check=False)
    assert out.returncode != 0 and "MethodNotAllowed" in out.stderr


def test_kubelet_urls_off_loopback_are_not_scraped(cluster):
    name = unique("remote")
    node = {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "annotations": {"ketch.io/kubelet-url": "http://192.0.2.1:10250"}}}
    cluster.kubectl("apply", "-f", "-", input=json.dumps(node))
    try:
        assert poll(lambda: f"node {name}: not scraping kubelet at http://192.0.2.1:10250" in
                    cluster.log_path.read_text(errors="replace"))
        out = cluster.kubectl("get", "--raw", f"/apis/metrics.k8s.io/v1beta1/nodes/{name}", check=False)
        assert f'nodemetrics.metrics.k8s.io "{name}" not found' in out.stderr
    finally:
        cluster.kubectl("delete", "node", name, check=False)
