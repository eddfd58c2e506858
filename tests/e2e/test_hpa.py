"""HorizontalPodAutoscaler end to end: real kubectl, a server scraping simulated kubelets every
second, HPAs synced every second; load is the pods' ketch.io/simulate-cpu annotation, changed with
`kubectl annotate` while the autoscaler runs. The book's Listings 4-6 (an RC, autoscaling/v1) and
5-3 (a Deployment, autoscaling/v1 with `apiVersion: v1` in its target) are used verbatim."""
from __future__ import annotations

import functools
import json

import pytest
from helpers.cluster import BOOK, Simulator, start_server, unique, wait_for
from helpers.kubectl import kubectl_135

poll = functools.partial(wait_for, interval=0.3)  # kubectl-heavy polls: not too often


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    srv = start_server(tmp_path_factory.mktemp("hpa"), extra_args=[
        "--metrics-resolution", "1s", "--horizontal-pod-autoscaler-sync-period", "1s",
        "--horizontal-pod-autoscaler-downscale-stabilization", "3s"])
    sim = Simulator(srv, nodes=2, name_prefix="h-", extra_args=["--metrics"])
    try:
        sim.start()
        yield srv
    finally:
        sim.stop()
        srv.stop()


@pytest.fixture
def ns(cluster):
    name = unique("hpa")
    cluster.kubectl("create", "namespace", name)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


def hpa_of(cluster, ns: str, name: str) -> dict:
    return cluster.kubectl_json("get", "hpa", "-n", ns, name)


def replicas_reach(cluster, ns: str, hpa: str, want: int, timeout: float = 30.0) -> dict:
    got = poll(lambda: (h := hpa_of(cluster, ns, hpa)).get("status", {}).get("currentReplicas") == want
               and h.get("status", {}).get("desiredReplicas") == want and h, timeout)
    assert got, f"{hpa} never reached {want} replicas: {json.dumps(hpa_of(cluster, ns, hpa).get('status'))}"
    return got


def rescale_messages(cluster, ns: str, name: str) -> list[str]:
    events = cluster.kubectl_json("get", "events", "-n", ns, "--field-selector",
                                  f"involvedObject.name={name},reason=SuccessfulRescale")["items"]
    return [e["message"] for e in sorted(events, key=lambda e: e.get("lastTimestamp") or "")]


def condition(hpa: dict, ctype: str) -> dict:
    return next(c for c in hpa["status"]["conditions"] if c["type"] == ctype)


DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata:
      labels: {app: web}
      annotations: {ketch.io/simulate-cpu: 150m}
    spec:
      containers:
      - name: web
        image: busybox
        resources: {requests: {cpu: 100m}}
"""


def test_deployment_scales_out_under_load_and_back_in(cluster, ns):
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=DEPLOYMENT)
    cluster.kubectl("autoscale", "deployment", "web", "-n", ns, "--cpu-percent=50", "--min=1", "--max=4")
    cluster.kubectl("patch", "hpa", "web", "-n", ns, "--type=merge",
                    "-p", '{"spec":{"behavior":{"scaleDown":{"stabilizationWindowSeconds":2}}}}')
    # 150% of the request against 50%: out to the maximum (1 -> 3 allowed, then 4).
    hpa = replicas_reach(cluster, ns, "web", 4)
    assert cluster.kubectl_json("get", "deployment", "-n", ns, "web")["spec"]["replicas"] == 4
    assert hpa["status"]["lastScaleTime"]
    assert condition(hpa, "ScalingActive")["reason"] == "ValidMetricFound"
    assert condition(hpa, "ScalingLimited")["reason"] == "TooManyReplicas"
    messages = rescale_messages(cluster, ns, "web")
    assert messages and all(m.endswith("; reason: cpu resource utilization (percentage of request) above target")
                            for m in messages), messages
    assert messages[-1].startswith("New size: 4;")
    targets = poll(lambda: "cpu: 150%/50%" in (out := cluster.kubectl("get", "hpa", "-n", ns, "web").stdout) and out)
    assert targets, cluster.kubectl("get", "hpa", "-n", ns, "web").stdout
    k135 = kubectl_135()
    if k135:
        assert "cpu: 150%/50%" in cluster.kubectl("get", "hpa", "-n", ns, "web", kubectl=k135).stdout
    # The load stops: back to the minimum once the 2 s scale-down window has passed.
    cluster.kubectl("annotate", "pods", "-n", ns, "-l", "app=web", "ketch.io/simulate-cpu=5m", "--overwrite")
    hpa = replicas_reach(cluster, ns, "web", 1)
    assert rescale_messages(cluster, ns, "web")[-1] == "New size: 1; reason: All metrics below target"
    current = hpa["status"]["currentMetrics"][0]["resource"]
    assert current["name"] == "cpu" and current["current"]["averageUtilization"] < 50


def test_book_listing_4_6_replication_controller_autoscaling_v1(cluster, ns):
    # GCE's default LimitRange gave the book's containers a 100m cpu request; the HPA needs one.
    limits = {"apiVersion": "v1", "kind": "LimitRange", "metadata": {"name": "limits"},
              "spec": {"limits": [{"type": "Container", "defaultRequest": {"cpu": "100m"}}]}}
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(limits))
    cluster.kubectl("create", "-n", ns, "-f", str(BOOK / "Chapter04/pod-scaling-controller.yaml"))
    cluster.kubectl("create", "-n", ns, "-f", str(BOOK / "Chapter04/node-js-scale-hpa.yaml"))
    assert poll(lambda: cluster.kubectl("get", "pods", "-n", ns, "-l", "name=node-js-scale", "-o",
                                        "jsonpath={.items[*].status.phase}").stdout == "Running")
    # Idle pods (1m of 100m) are under the 20% target: one replica stays.
    out = poll(lambda: "cpu: 1%/20%" in (o := cluster.kubectl("get", "hpa", "-n", ns).stdout) and o)
    assert out, cluster.kubectl("get", "hpa", "-n", ns).stdout
    v1 = json.loads(cluster.kubectl("get", "--raw", f"/apis/autoscaling/v1/namespaces/{ns}/"
                                    "horizontalpodautoscalers/node-js-scale").stdout)
    assert v1["status"]["currentCPUUtilizationPercentage"] == 1 and v1["status"]["currentReplicas"] == 1
    # Load on the pod: out to maxReplicas 3.
    cluster.kubectl("annotate", "pods", "-n", ns, "-l", "name=node-js-scale", "ketch.io/simulate-cpu=300m",
                    "--overwrite")
    replicas_reach(cluster, ns, "node-js-scale", 3)
    assert cluster.kubectl_json("get", "rc", "-n", ns, "node-js-scale")["spec"]["replicas"] == 3
    # Load gone: back to 1 after the (test-sized) downscale stabilization window.
    cluster.kubectl("annotate", "pods", "-n", ns, "-l", "name=node-js-scale", "ketch.io/simulate-cpu=1m",
                    "--overwrite")
    replicas_reach(cluster, ns, "node-js-scale", 1)
    described = cluster.kubectl("describe", "hpa", "-n", ns, "node-js-scale").stdout
    assert "SuccessfulRescale" in described and "New size: 3; reason: cpu resource utilization" in described


def test_book_listing_5_3_deployment_with_v1_target_and_min_replicas(cluster, ns):
    cluster.kubectl("create", "-n", ns, "-f", str(BOOK / "Chapter05/node-js-deploy.yaml"))
    cluster.kubectl("create", "-n", ns, "-f", str(BOOK / "Chapter05/node-js-deploy-hpa.yaml"))
    # minReplicas 3 lifts the Deployment from 1, without waiting for metrics.
    replicas_reach(cluster, ns, "node-js-deploy", 3)
    assert cluster.kubectl_json("get", "deployment", "-n", ns, "node-js-deploy")["spec"]["replicas"] == 3
    assert rescale_messages(cluster, ns, "node-js-deploy")[0] == \
        "New size: 3; reason: Current number of replicas below Spec.MinReplicas"
    # Its pods have no cpu request: the metric cannot be computed, as upstream says.
    missing = "missing request for cpu in container node-js-deploy of Pod node-js-deploy-"
    hpa = poll(lambda: (h := hpa_of(cluster, ns, "node-js-deploy")) and
               missing in condition(h, "ScalingActive")["message"] and h)
    assert hpa, hpa_of(cluster, ns, "node-js-deploy")["status"]
    active = condition(hpa, "ScalingActive")
    assert (active["status"], active["reason"]) == ("False", "FailedGetResourceMetric")
    assert active["message"].startswith("the HPA was unable to compute the replica count: failed to get cpu "
                                        "utilization: " + missing)
    assert "cpu: <unknown>/10%" in cluster.kubectl("get", "hpa", "-n", ns).stdout


def test_missing_target_reports_failed_get_scale(cluster, ns):
    cluster.kubectl("autoscale", "deployment", "nope", "-n", ns, "--max=3", check=False)
    if cluster.kubectl("get", "hpa", "-n", ns, "nope", check=False).returncode != 0:
        # kubectl autoscale looks the target up first; write the HPA directly instead.
        hpa = {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "nope"},
               "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "nope"},
                        "maxReplicas": 3}}
        cluster.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(hpa))
    hpa = poll(lambda: (h := hpa_of(cluster, ns, "nope")).get("status", {}).get("conditions") and h)
    able = condition(hpa, "AbleToScale")
    assert (able["status"], able["reason"]) == ("False", "FailedGetScale")
    assert able["message"] == ('the HPA controller was unable to get the target\'s current scale: '
                               'deployments.apps "nope" not found')


WORKLOAD = """
apiVersion: apps/v1
kind: {kind}
metadata: {{name: loaded}}
spec:
  replicas: 1
  {extra}
  selector: {{matchLabels: {{app: loaded}}}}
  template:
    metadata:
      labels: {{app: loaded}}
      annotations: {{ketch.io/simulate-cpu: 200m}}
    spec:
      containers:
      - name: app
        image: busybox
        resources: {{requests: {{cpu: 100m}}}}
"""


@pytest.mark.parametrize("kind", ["ReplicaSet", "StatefulSet"])
def test_other_scale_targets(cluster, ns, kind):
    extra = "serviceName: loaded" if kind == "StatefulSet" else ""
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=WORKLOAD.format(kind=kind, extra=extra))
    hpa = {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "loaded"},
           "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": kind, "name": "loaded"},
                    "minReplicas": 1, "maxReplicas": 3,
                    "metrics": [{"type": "Resource", "resource": {
                        "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}}]}}
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(hpa))
    replicas_reach(cluster, ns, "loaded", 3)
    assert cluster.kubectl_json("get", kind.lower(), "-n", ns, "loaded")["spec"]["replicas"] == 3


def test_target_without_scale_subresource(cluster, ns):
    hpa = {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "ds"},
           "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "ds"}, "maxReplicas": 3}}
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(hpa))
    hpa = poll(lambda: (h := hpa_of(cluster, ns, "ds")).get("status", {}).get("conditions") and h)
    able = condition(hpa, "AbleToScale")
    assert (able["status"], able["reason"]) == ("False", "FailedGetScale")
    assert able["message"].endswith("current scale: the server could not find the requested resource")
