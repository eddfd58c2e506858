"""The metrics pipeline's pure parts: the kubelet's Prometheus text, rates between scrapes, the
formats metrics.k8s.io answers in, and the HPA's replica calculator."""
from ketch.apiserver import metrics
from ketch.controllers import podautoscaler as hpa
from ketch.agent.resource_metrics import go_float

KUBELET_TEXT = """\
# HELP container_cpu_usage_seconds_total [STABLE] Cumulative cpu time consumed by the container in core-seconds
# TYPE container_cpu_usage_seconds_total counter
container_cpu_usage_seconds_total{container="app",namespace="ns",pod="web-\\"1\\""} 10.5 1700000010000
container_cpu_usage_seconds_total{container="side",namespace="ns",pod="web-\\"1\\""} 1 1700000010000
# TYPE container_memory_working_set_bytes gauge
container_memory_working_set_bytes{container="app",namespace="ns",pod="web-\\"1\\""} 6.7108864e+07 1700000010000
container_memory_working_set_bytes{container="side",namespace="ns",pod="web-\\"1\\""} 1024 1700000010000
container_start_time_seconds{container="app",namespace="ns",pod="web-\\"1\\""} 1.7e+09 1700000000000
# TYPE node_cpu_usage_seconds_total counter
node_cpu_usage_seconds_total 357.35491 1700000010000
node_memory_working_set_bytes 1.616273408e+09 1700000010000
resource_scrape_error 0
"""


def test_kubelet_text_is_parsed_with_escapes_and_millisecond_timestamps():
    sample = metrics.parse_resource_metrics(KUBELET_TEXT, now=0)
    assert sample.node == metrics.Point(357.35491, 1616273408, 1700000010.0)
    app = sample.containers[("ns", 'web-"1"', "app")]
    assert (app.cpu, app.memory, app.ts, app.start) == (10.5, 67108864, 1700000010.0, 1.7e9)
    assert set(sample.containers) == {("ns", 'web-"1"', "app"), ("ns", 'web-"1"', "side")}


def _sample(cpu: float, ts: float, node_cpu: float) -> metrics.NodeSample:
    return metrics.NodeSample(metrics.Point(node_cpu, 2 << 30, ts),
                              {("ns", "p", "c"): metrics.Point(cpu, 64 << 20, ts, start=ts - 100)})


def test_usage_is_the_rate_between_two_scrapes():
    store = metrics.MetricsStore()
    store.store({"n1": _sample(10.0, 1000.0, 100.0)}, 1000.0)
    assert store.nodes == {} and store.pods == {}  # one point gives no rate
    store.store({"n1": _sample(13.0, 1015.0, 115.0)}, 1015.0)
    assert store.nodes["n1"]["usage"] == {"cpu": "1", "memory": "2Gi"}
    assert store.nodes["n1"]["window"] == "15s"
    pod = store.pods[("ns", "p")]
    assert pod["containers"] == [{"name": "c", "usage": {"cpu": "200m", "memory": "64Mi"}}]
    assert pod["timestamp"] == "1970-01-01T00:16:55Z"
    store.store({}, 1030.0)  # a node not scraped has no metrics until seen twice again
    assert store.nodes == {} and store.pods == {}


def test_a_container_started_since_the_last_scrape_counts_from_its_start():
    store = metrics.MetricsStore()
    store.store({}, 1000.0)
    fresh = metrics.NodeSample(None, {("ns", "new", "c"): metrics.Point(0.5, 1, 1010.0, start=1005.0)})
    store.store({"n1": fresh}, 1010.0)
    assert store.pods[("ns", "new")]["containers"][0]["usage"]["cpu"] == "100m"


def test_go_formats():
    assert [metrics.go_duration(s) for s in (0, 0.5, 15.012, 60.5, 3605)] == ["0s", "500ms", "15.012s", "1m0.5s",
                                                                               "1h0m5s"]
    assert [go_float(v) for v in (0, 197.853363, 686260224, 1.5e-5, 12, 100000)] == \
        ["0", "197.853363", "6.86260224e+08", "1.5e-05", "12", "100000"]


def test_loopback_urls_only():
    assert metrics.is_loopback_url("http://127.0.0.1:1234/nodes/a")
    assert metrics.is_loopback_url("https://[::1]:10250")
    assert metrics.is_loopback_url("http://localhost:1")
    assert not metrics.is_loopback_url("http://10.0.0.1:10250")
    assert not metrics.is_loopback_url("http://example.com")


# ---- the replica calculator ----------------------------------------------------------------------

NOW = 1_000_000.0


def _pod(name: str, request: str = "100m", phase: str = "Running", ready: bool = True, started: float = NOW - 600):
    ts = _ts(started)
    return {"metadata": {"name": name},
            "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": request}}}]},
            "status": {"phase": phase, "startTime": ts,
                       "conditions": [{"type": "Ready", "status": "True" if ready else "False",
                                       "lastTransitionTime": ts}]}}


def _ts(t: float) -> str:
    import time
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def _m(milli: int) -> tuple[int, float, float]:
    return (milli, NOW - 1, 15.0)


def test_utilization_proposal_with_tolerance():
    pods = [_pod("a"), _pod("b")]
    # 150% of request against a 50% target: three times the pods.
    assert hpa.resource_replicas(2, 50, "cpu", pods, {"a": _m(150), "b": _m(150)}, NOW) == (6, 150, 150)
    # Within 10% of the target: unchanged.
    assert hpa.resource_replicas(2, 50, "cpu", pods, {"a": _m(52), "b": _m(54)}, NOW)[0] == 2


def test_missing_metrics_count_as_zero_on_scale_up_and_full_on_scale_down():
    pods = [_pod("a"), _pod("b"), _pod("c")]
    # a and b at 100% (target 50%); c has no metrics yet and counts 0: ratio 4/3 -> 4 replicas.
    assert hpa.resource_replicas(3, 50, "cpu", pods, {"a": _m(100), "b": _m(100)}, NOW)[0] == 4
    # Scale-down: c counts as 100% of its request, which keeps the count.
    assert hpa.resource_replicas(3, 50, "cpu", pods, {"a": _m(10), "b": _m(10)}, NOW)[0] == 3


def test_unready_and_pending_pods_are_left_out():
    pods = [_pod("a"), _pod("b", ready=False, started=NOW - 10), _pod("p", phase="Pending")]
    proposal, utilization, _raw = hpa.resource_replicas(3, 50, "cpu", pods, {"a": _m(100), "b": _m(900)}, NOW)
    assert utilization == 100  # b's sample is ignored
    # On a scale-up the unready pods count as 0%: 33% would flip the direction, so no change.
    assert proposal == 3


def test_missing_request_is_the_upstream_error():
    pods = [{"metadata": {"name": "x"}, "spec": {"containers": [{"name": "c"}]}, "status": {"phase": "Running"}}]
    try:
        hpa.pod_requests(pods, "cpu")
    except hpa.MetricError as e:
        assert str(e) == "missing request for cpu in container c of Pod x"
    else:
        raise AssertionError("no error")


def test_scaling_policies():
    up = {"selectPolicy": "Max", "policies": [{"type": "Pods", "value": 4, "periodSeconds": 15},
                                              {"type": "Percent", "value": 100, "periodSeconds": 15}]}
    assert hpa.scale_up_limit(1, [], [], up, NOW) == 5
    assert hpa.scale_up_limit(10, [], [], up, NOW) == 20
    # 4 pods were added 5 s ago: the period started at 6.
    assert hpa.scale_up_limit(10, [(NOW - 5, 4)], [], up, NOW) == 12
    down = {"selectPolicy": "Max", "policies": [{"type": "Percent", "value": 50, "periodSeconds": 60}]}
    assert hpa.scale_down_limit(10, [], [], down, NOW) == 5
    assert hpa.scale_down_limit(10, [], [], {"selectPolicy": "Disabled"}, NOW) == 10


def test_scale_target_resolution():
    assert hpa.scale_resource({"apiVersion": "v1", "kind": "ReplicationController"}).group == ""
    r = hpa.scale_resource({"apiVersion": "extensions/v1beta1", "kind": "Deployment"})
    assert (r.group, r.version) == ("extensions", "v1beta1")
    # The book's Listing 5-3 spells a Deployment "apiVersion: v1": found where Deployments live today.
    r = hpa.scale_resource({"apiVersion": "v1", "kind": "Deployment"})
    assert (r.group, r.version) == ("apps", "v1")
    assert hpa.scale_resource({"apiVersion": "apps/v1", "kind": "DaemonSet"}).plural == "daemonsets"  # no /scale
    assert hpa.scale_resource({"apiVersion": "batch/v1", "kind": "Deployment"}) is None


def test_container_resource_metric_counts_one_container():
    pods = [{"metadata": {"name": "a"},
             "spec": {"containers": [{"name": "app", "resources": {"requests": {"cpu": "100m"}}},
                                     {"name": "side", "resources": {"requests": {"cpu": "900m"}}}]},
             "status": {"phase": "Running", "startTime": _ts(NOW - 600),
                        "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": _ts(NOW - 600)}]}}]
    pod_metrics = {"a": {"metadata": {"name": "a", "namespace": "ns"}, "timestamp": _ts(NOW - 1), "window": "15s",
                         "containers": [{"name": "app", "usage": {"cpu": "200m"}},
                                        {"name": "side", "usage": {"cpu": "0"}}]}}
    calc = hpa.HorizontalPodAutoscalerController._resource_metric
    source = {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}
    proposal, name, status = calc(None, source, "app", 1, pods, pod_metrics, NOW)
    assert (proposal, name) == (4, "cpu container resource utilization (percentage of request)")
    assert status == {"type": "ContainerResource", "containerResource": {
        "name": "cpu", "container": "app", "current": {"averageUtilization": 200, "averageValue": "200m"}}}
    # The whole pod: 200m of 1000m is 20%, under the 50% target.
    assert calc(None, source, "", 1, pods, pod_metrics, NOW)[0] == 1
