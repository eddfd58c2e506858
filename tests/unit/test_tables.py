"""Server-side printing: the cells kubectl shows for every kind, as the real apiserver prints them."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ketch.api import kinds, schema, tables

NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


def ago(**delta: float) -> str:
    return (NOW - timedelta(**delta)).strftime("%Y-%m-%dT%H:%M:%SZ")


def meta(name: str, age: dict | None = None, **extra) -> dict:
    return {"name": name, "namespace": "default", "uid": f"uid-{name}", "resourceVersion": "42",
            "creationTimestamp": ago(**(age or {"days": 5})), **extra}


# --- pods -------------------------------------------------------------------------------------

def pod(name: str = "web", *, phase: str = "Running", containers: int = 1, statuses: list | None = None,
        init: list | None = None, init_statuses: list | None = None, conditions: list | None = None,
        spec: dict | None = None, status: dict | None = None, **metadata) -> dict:
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": meta(name, {"minutes": 30}, **metadata),
        "spec": {"containers": [{"name": f"c{i}", "image": "nginx"} for i in range(containers)],
                 **({"initContainers": init} if init is not None else {}), **(spec or {})},
        "status": {"phase": phase, **({"containerStatuses": statuses} if statuses is not None else {}),
                   **({"initContainerStatuses": init_statuses} if init_statuses is not None else {}),
                   **({"conditions": conditions} if conditions is not None else {}), **(status or {})},
    }


def running(ready: bool = True, restarts: int = 0, **extra) -> dict:
    return {"name": "c0", "ready": ready, "restartCount": restarts, "started": True,
            "state": {"running": {"startedAt": ago(minutes=29)}}, **extra}


def waiting(reason: str, restarts: int = 0, **extra) -> dict:
    return {"name": "c0", "ready": False, "restartCount": restarts, "state": {"waiting": {"reason": reason}}, **extra}


def terminated(reason: str | None = None, exit_code: int = 0, signal: int = 0, name: str = "c0", **extra) -> dict:
    state = {"exitCode": exit_code, "finishedAt": ago(minutes=1)}
    if reason:
        state["reason"] = reason
    if signal:
        state["signal"] = signal
    return {"name": name, "ready": False, "restartCount": 0, "state": {"terminated": state}, **extra}


READY = [{"type": "Initialized", "status": "True"}, {"type": "Ready", "status": "True"}]
NOT_INITIALIZED = [{"type": "Initialized", "status": "False"}]
SIDECAR = {"name": "proxy", "image": "envoy", "restartPolicy": "Always"}

POD_CASES = [
    ("running", pod(statuses=[running()], conditions=READY), ["1/1", "Running", "0"]),
    ("unschedulable", pod(phase="Pending", conditions=[{"type": "PodScheduled", "status": "False",
                                                        "reason": "Unschedulable"}]), ["0/1", "Pending", "0"]),
    ("creating", pod(phase="Pending", statuses=[waiting("ContainerCreating")]), ["0/1", "ContainerCreating", "0"]),
    ("image pull", pod(phase="Pending", statuses=[waiting("ImagePullBackOff")]), ["0/1", "ImagePullBackOff", "0"]),
    ("crash loop", pod(statuses=[waiting("CrashLoopBackOff", restarts=3, lastState={
        "terminated": {"exitCode": 1, "reason": "Error", "finishedAt": ago(minutes=5)}})]),
     ["0/1", "CrashLoopBackOff", "3 (5m ago)"]),
    ("restarted, no finish time", pod(statuses=[running(restarts=2)], conditions=READY), ["1/1", "Running", "2"]),
    ("completed", pod(phase="Succeeded", statuses=[terminated("Completed")]), ["0/1", "Completed", "0"]),
    ("error", pod(phase="Failed", statuses=[terminated("Error", exit_code=1)]), ["0/1", "Error", "0"]),
    ("exit code", pod(phase="Failed", statuses=[terminated(exit_code=137)]), ["0/1", "ExitCode:137", "0"]),
    ("signal", pod(phase="Failed", statuses=[terminated(exit_code=0, signal=9)]), ["0/1", "Signal:9", "0"]),
    ("terminating", pod(statuses=[running()], conditions=READY, deletionTimestamp=ago(seconds=10)),
     ["1/1", "Terminating", "0"]),
    ("deleted after success", pod(phase="Succeeded", statuses=[terminated("Completed")],
                                  deletionTimestamp=ago(seconds=10)), ["0/1", "Completed", "0"]),
    ("node lost", pod(statuses=[running()], status={"reason": "NodeLost"}, deletionTimestamp=ago(minutes=1)),
     ["1/1", "Unknown", "0"]),
    ("evicted", pod(phase="Failed", status={"reason": "Evicted", "message": "low on memory"}),
     ["0/1", "Evicted", "0"]),
    ("scheduling gated", pod(phase="Pending", conditions=[{"type": "PodScheduled", "status": "False",
                                                           "reason": "SchedulingGated"}]),
     ["0/1", "SchedulingGated", "0"]),
    ("init running", pod(phase="Pending", init=[{"name": "setup", "image": "busybox"}],
                         init_statuses=[{"name": "setup", "ready": False, "restartCount": 0,
                                         "state": {"running": {}}}],
                         statuses=[waiting("PodInitializing")], conditions=NOT_INITIALIZED),
     ["0/1", "Init:0/1", "0"]),
    ("second init running", pod(phase="Pending", init=[{"name": "a"}, {"name": "b"}],
                                init_statuses=[terminated("Completed", name="a"),
                                               {"name": "b", "restartCount": 0, "state": {"running": {}}}],
                                conditions=NOT_INITIALIZED),
     ["0/1", "Init:1/2", "0"]),
    ("init crash loop", pod(phase="Pending", init=[{"name": "setup"}],
                            init_statuses=[{**waiting("CrashLoopBackOff", restarts=4), "name": "setup"}],
                            conditions=NOT_INITIALIZED),
     ["0/1", "Init:CrashLoopBackOff", "4"]),
    ("init error", pod(phase="Pending", init=[{"name": "setup"}],
                       init_statuses=[terminated("Error", exit_code=1, name="setup")], conditions=NOT_INITIALIZED),
     ["0/1", "Init:Error", "0"]),
    ("init exit code", pod(phase="Pending", init=[{"name": "setup"}],
                           init_statuses=[terminated(exit_code=2, name="setup")]), ["0/1", "Init:ExitCode:2", "0"]),
    ("init signal", pod(phase="Pending", init=[{"name": "setup"}],
                        init_statuses=[terminated(exit_code=1, signal=9, name="setup")]),
     ["0/1", "Init:Signal:9", "0"]),
    ("pod initializing", pod(phase="Pending", init=[{"name": "setup"}],
                             init_statuses=[terminated("Completed", name="setup")],
                             statuses=[waiting("PodInitializing")]),
     ["0/1", "PodInitializing", "0"]),
    ("sidecar", pod(init=[SIDECAR], init_statuses=[{"name": "proxy", "ready": True, "started": True,
                                                     "restartCount": 1, "state": {"running": {}},
                                                     "lastState": {"terminated": {"exitCode": 1,
                                                                                  "finishedAt": ago(minutes=20)}}}],
                    statuses=[running()], conditions=READY),
     ["2/2", "Running", "1 (20m ago)"]),
    ("sidecar starting", pod(phase="Pending", init=[SIDECAR],
                             init_statuses=[{"name": "proxy", "ready": False, "started": False,
                                             "restartCount": 0, "state": {"running": {}}}],
                             conditions=NOT_INITIALIZED),
     ["0/2", "Init:0/1", "0"]),
    ("completed container, sibling ready", pod(containers=2, statuses=[terminated("Completed"),
                                                                       running(name="c1")], conditions=READY),
     ["1/2", "Running", "0"]),
    ("completed container, sibling not ready", pod(containers=2, statuses=[terminated("Completed"),
                                                                           running(name="c1")]),
     ["1/2", "NotReady", "0"]),
    ("two of three ready", pod(containers=3, statuses=[running(), running(name="c1", ready=False),
                                                       running(name="c2")]),
     ["2/3", "Running", "0"]),
]


@pytest.mark.parametrize("obj,expected", [c[1:] for c in POD_CASES], ids=[c[0] for c in POD_CASES])
def test_pod_ready_status_restarts(obj, expected):
    cells = tables.row_cells("", "Pod", obj, NOW)
    assert cells[0] == "web"
    assert cells[1:4] == expected
    assert cells[4] == "30m"


def test_pod_wide_columns():
    scheduled = pod(statuses=[running()], conditions=READY + [{"type": "example.com/lb", "status": "True"}],
                    spec={"nodeName": "node-1", "readinessGates": [{"conditionType": "example.com/lb"},
                                                                   {"conditionType": "example.com/dns"}]},
                    status={"podIP": "10.244.1.5", "podIPs": [{"ip": "10.244.1.5"}, {"ip": "fd00::5"}]})
    assert tables.row_cells("", "Pod", scheduled, NOW)[5:] == ["10.244.1.5", "node-1", "<none>", "1/2"]
    pending = pod(phase="Pending", status={"nominatedNodeName": "node-2"})
    assert tables.row_cells("", "Pod", pending, NOW)[5:] == ["<none>", "<none>", "node-2", "<none>"]
    only_pod_ip = pod(status={"podIP": "10.244.3.3"})
    assert tables.row_cells("", "Pod", only_pod_ip, NOW)[5] == "10.244.3.3"


# --- services ---------------------------------------------------------------------------------

def service(name: str, kind: str, ports: list, cluster_ip: str = "10.96.12.34", *, external_ips: list | None = None,
            ingress: list | None = None, selector: dict | None = None, **spec) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": meta(name),
            "spec": {"type": kind, "clusterIP": cluster_ip, "clusterIPs": [cluster_ip], "ports": ports,
                     **({"selector": selector} if selector else {}),
                     **({"externalIPs": external_ips} if external_ips else {}), **spec},
            "status": {"loadBalancer": {"ingress": ingress} if ingress else {}}}


HTTP = [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]
NODE_HTTP = [{**HTTP[0], "nodePort": 30080}]

SERVICE_CASES = [
    ("cluster ip", service("kube-dns", "ClusterIP", [{"name": "dns", "port": 53, "protocol": "UDP"},
                                                     {"name": "dns-tcp", "port": 53, "protocol": "TCP"}],
                           "10.96.0.10", selector={"k8s-app": "kube-dns"}),
     ["kube-dns", "ClusterIP", "10.96.0.10", "<none>", "53/UDP,53/TCP", "5d", "k8s-app=kube-dns"]),
    ("node port", service("web", "NodePort", NODE_HTTP, selector={"tier": "frontend", "app": "web"}),
     ["web", "NodePort", "10.96.12.34", "<none>", "80:30080/TCP", "5d", "app=web,tier=frontend"]),
    ("load balancer pending", service("lb", "LoadBalancer", NODE_HTTP),
     ["lb", "LoadBalancer", "10.96.12.34", "<pending>", "80:30080/TCP", "5d", "<none>"]),
    ("load balancer ready", service("lb", "LoadBalancer", NODE_HTTP,
                                    ingress=[{"ip": "203.0.113.9"}, {"hostname": "lb.example.com"},
                                             {"ip": "203.0.113.10"}]),
     ["lb", "LoadBalancer", "10.96.12.34", "203.0.113.10,203.0.113.9,lb.example.com", "80:30080/TCP", "5d",
      "<none>"]),
    ("load balancer and external ips", service("lb", "LoadBalancer", NODE_HTTP, ingress=[{"ip": "203.0.113.9"}],
                                               external_ips=["198.51.100.1"]),
     ["lb", "LoadBalancer", "10.96.12.34", "203.0.113.9,198.51.100.1", "80:30080/TCP", "5d", "<none>"]),
    ("external ips", service("ext", "ClusterIP", HTTP, external_ips=["198.51.100.1", "198.51.100.2"]),
     ["ext", "ClusterIP", "10.96.12.34", "198.51.100.1,198.51.100.2", "80/TCP", "5d", "<none>"]),
    ("external name", {"metadata": meta("db"), "spec": {"type": "ExternalName", "externalName": "db.example.com"}},
     ["db", "ExternalName", "<none>", "db.example.com", "<none>", "5d", "<none>"]),
    ("headless", service("db", "ClusterIP", [{"port": 5432, "protocol": "TCP"}], "None", selector={"app": "db"}),
     ["db", "ClusterIP", "None", "<none>", "5432/TCP", "5d", "app=db"]),
]


@pytest.mark.parametrize("obj,expected", [c[1:] for c in SERVICE_CASES], ids=[c[0] for c in SERVICE_CASES])
def test_service_rows(obj, expected):
    assert tables.row_cells("", "Service", obj, NOW) == expected


# --- workloads --------------------------------------------------------------------------------

TEMPLATE = {"metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "nginx", "image": "nginx:1.25"},
                                    {"name": "log", "image": "busybox:1.36"}]}}


def workload(kind: str, name: str, spec: dict, status: dict, age: dict | None = None, **metadata) -> dict:
    return {"kind": kind, "metadata": meta(name, age or {"minutes": 10}, **metadata), "spec": spec, "status": status}


SELECTOR = {"matchLabels": {"app": "web"},
            "matchExpressions": [{"key": "tier", "operator": "In", "values": ["frontend", "backend"]},
                                 {"key": "env", "operator": "Exists"},
                                 {"key": "canary", "operator": "DoesNotExist"},
                                 {"key": "zone", "operator": "NotIn", "values": ["b"]}]}

WORKLOAD_CASES = [
    ("deployment mid-rollout", "apps", "Deployment",
     workload("Deployment", "web", {"replicas": 3, "selector": {"matchLabels": {"app": "web"}}, "template": TEMPLATE},
              {"replicas": 4, "readyReplicas": 2, "updatedReplicas": 1, "availableReplicas": 2}),
     ["web", "2/3", 1, 2, "10m", "nginx,log", "nginx:1.25,busybox:1.36", "app=web"]),
    ("deployment new", "apps", "Deployment",
     workload("Deployment", "api", {"replicas": 2, "selector": SELECTOR, "template": TEMPLATE}, {}, {"seconds": 5}),
     ["api", "0/2", 0, 0, "5s", "nginx,log", "nginx:1.25,busybox:1.36",
      "app=web,!canary,env,tier in (backend,frontend),zone notin (b)"]),  # sorted by key
    ("deployment bad selector", "apps", "Deployment",
     workload("Deployment", "bad", {"replicas": 1, "selector": {"matchExpressions": [
         {"key": "a", "operator": "In", "values": []}]}, "template": TEMPLATE}, {}),
     ["bad", "0/1", 0, 0, "10m", "nginx,log", "nginx:1.25,busybox:1.36", "<invalid>"]),
    ("legacy deployment", "extensions", "Deployment",
     workload("Deployment", "web", {"replicas": 1, "selector": {"matchLabels": {"app": "web"}}, "template": TEMPLATE},
              {"readyReplicas": 1, "updatedReplicas": 1, "availableReplicas": 1}),
     ["web", "1/1", 1, 1, "10m", "nginx,log", "nginx:1.25,busybox:1.36", "app=web"]),
    ("replicaset", "apps", "ReplicaSet",
     workload("ReplicaSet", "web-7d4b9c", {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                                           "template": TEMPLATE}, {"replicas": 3, "readyReplicas": 1}),
     ["web-7d4b9c", 3, 3, 1, "10m", "nginx,log", "nginx:1.25,busybox:1.36", "app=web"]),
    ("replicaset scaled to zero", "apps", "ReplicaSet",
     workload("ReplicaSet", "web-old", {"replicas": 0, "selector": {}, "template": TEMPLATE}, {"replicas": 0}),
     ["web-old", 0, 0, 0, "10m", "nginx,log", "nginx:1.25,busybox:1.36", "<none>"]),
    ("replication controller", "", "ReplicationController",
     workload("ReplicationController", "frontend", {"replicas": 2, "selector": {"app": "web", "tier": "fe"},
                                                    "template": TEMPLATE}, {"replicas": 2, "readyReplicas": 2}),
     ["frontend", 2, 2, 2, "10m", "nginx,log", "nginx:1.25,busybox:1.36", "app=web,tier=fe"]),
    ("statefulset", "apps", "StatefulSet",
     workload("StatefulSet", "db", {"replicas": 3, "serviceName": "db", "template": TEMPLATE},
              {"replicas": 2, "readyReplicas": 1}, {"hours": 3}),
     ["db", "1/3", "3h", "nginx,log", "nginx:1.25,busybox:1.36"]),
    ("daemonset", "apps", "DaemonSet",
     workload("DaemonSet", "fluentd", {"selector": {"matchLabels": {"app": "fluentd"}},
                                       "template": {"spec": {"nodeSelector": {"kubernetes.io/os": "linux"},
                                                             "containers": [{"name": "f", "image": "fluentd"}]}}},
              {"desiredNumberScheduled": 3, "currentNumberScheduled": 3, "numberReady": 2,
               "updatedNumberScheduled": 3, "numberAvailable": 2}, {"days": 2, "hours": 3}),
     ["fluentd", 3, 3, 2, 3, 2, "kubernetes.io/os=linux", "2d3h", "f", "fluentd", "app=fluentd"]),
    ("daemonset without node selector", "extensions", "DaemonSet",
     workload("DaemonSet", "proxy", {"selector": {"matchLabels": {"k": "v"}},
                                     "template": {"spec": {"containers": [{"name": "p", "image": "kube-proxy"}]}}},
              {}),
     ["proxy", 0, 0, 0, 0, 0, "<none>", "10m", "p", "kube-proxy", "k=v"]),
]


@pytest.mark.parametrize("group,kind,obj,expected", [c[1:] for c in WORKLOAD_CASES], ids=[c[0] for c in WORKLOAD_CASES])
def test_workload_rows(group, kind, obj, expected):
    assert tables.row_cells(group, kind, obj, NOW) == expected


def job(name: str, status: dict, spec: dict | None = None, **metadata) -> dict:
    return workload("Job", name, {"selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "abc"}},
                                  "template": {"spec": {"containers": [{"name": "pi", "image": "perl:5.34"}]}},
                                  **(spec or {"completions": 1, "parallelism": 1})}, status, **metadata)


COMPLETE = [{"type": "SuccessCriteriaMet", "status": "True"}, {"type": "Complete", "status": "True"}]

JOB_CASES = [
    ("complete", job("pi", {"succeeded": 1, "startTime": ago(minutes=10), "completionTime": ago(minutes=7, seconds=50),
                            "conditions": COMPLETE}), ["pi", "Complete", "1/1", "2m10s", "10m"]),
    ("running", job("pi", {"active": 1, "startTime": ago(minutes=4)}), ["pi", "Running", "0/1", "4m", "10m"]),
    ("not started", job("pi", {}), ["pi", "Running", "0/1", "", "10m"]),
    ("work queue", job("queue", {"succeeded": 2, "startTime": ago(seconds=90)}, {"parallelism": 3}),
     ["queue", "Running", "2/1 of 3", "90s", "10m"]),
    ("fixed completions", job("batch", {"succeeded": 3, "startTime": ago(hours=1)}, {"completions": 5, "parallelism": 2}),
     ["batch", "Running", "3/5", "60m", "10m"]),
    ("failed", job("pi", {"failed": 6, "startTime": ago(minutes=9), "conditions": [
        {"type": "FailureTarget", "status": "True"}, {"type": "Failed", "status": "True"}]}),
     ["pi", "Failed", "0/1", "9m", "10m"]),
    ("failure target", job("pi", {"startTime": ago(minutes=9), "conditions": [{"type": "FailureTarget",
                                                                                "status": "True"}]}),
     ["pi", "FailureTarget", "0/1", "9m", "10m"]),
    ("suspended", job("pi", {"conditions": [{"type": "Suspended", "status": "True"}]}),
     ["pi", "Suspended", "0/1", "", "10m"]),
    ("terminating", job("pi", {"startTime": ago(minutes=2), "conditions": [{"type": "Suspended", "status": "True"}]},
                        deletionTimestamp=ago(seconds=3)), ["pi", "Terminating", "0/1", "2m", "10m"]),
]


@pytest.mark.parametrize("obj,expected", [c[1:] for c in JOB_CASES], ids=[c[0] for c in JOB_CASES])
def test_job_rows(obj, expected):
    cells = tables.row_cells("batch", "Job", obj, NOW)
    assert cells[:5] == expected
    assert cells[5:] == ["pi", "perl:5.34", "batch.kubernetes.io/controller-uid=abc"]


def test_cronjob_rows():
    spec = {"schedule": "*/1 * * * *", "suspend": False, "jobTemplate": {"spec": {
        "template": {"spec": {"containers": [{"name": "hello", "image": "busybox"}]}}}}}
    active = workload("CronJob", "hello", spec, {"active": [{"name": "hello-28577"}], "lastScheduleTime": ago(seconds=45)},
                      {"days": 12})
    assert tables.row_cells("batch", "CronJob", active, NOW) == [
        "hello", "*/1 * * * *", "<none>", "False", 1, "45s", "12d", "hello", "busybox", "<none>"]
    fresh = workload("CronJob", "nightly", {**spec, "timeZone": "Etc/UTC", "suspend": None}, {})
    assert tables.row_cells("batch", "CronJob", fresh, NOW)[:7] == [
        "nightly", "*/1 * * * *", "Etc/UTC", "<unset>", 0, "<none>", "10m"]
    assert tables.row_cells("batch", "CronJob", {**fresh, "spec": {**spec, "suspend": True}}, NOW)[3] == "True"


# --- autoscaling ------------------------------------------------------------------------------

def hpa(metrics: list, current: list | None = None, min_replicas: int | None = 1) -> dict:
    spec = {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "php-apache"},
            "maxReplicas": 10, "metrics": metrics}
    if min_replicas is not None:
        spec["minReplicas"] = min_replicas
    status = {"currentReplicas": 1, "desiredReplicas": 1}
    if current is not None:
        status["currentMetrics"] = current
    return workload("HorizontalPodAutoscaler", "php-apache", spec, status)


CPU = {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}}
MEMORY = {"type": "Resource", "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "500Mi"}}}
PODS = {"type": "Pods", "pods": {"metric": {"name": "qps"}, "target": {"type": "AverageValue", "averageValue": "1k"}}}
EXTERNAL = {"type": "External", "external": {"metric": {"name": "queue"}, "target": {"type": "Value", "value": "30"}}}
OBJECT_AVG = {"type": "Object", "object": {"metric": {"name": "rps"}, "describedObject": {"kind": "Ingress", "name": "x"},
                                           "target": {"type": "AverageValue", "averageValue": "10"}}}
CONTAINER = {"type": "ContainerResource", "containerResource": {"name": "cpu", "container": "app",
                                                                "target": {"type": "Utilization",
                                                                           "averageUtilization": 60}}}

HPA_CASES = [
    ("no metrics yet", hpa([CPU]), "cpu: <unknown>/50%"),
    ("cpu observed", hpa([CPU], [{"type": "Resource", "resource": {"name": "cpu", "current": {
        "averageUtilization": 12, "averageValue": "60m"}}}]), "cpu: 12%/50%"),
    ("memory value", hpa([MEMORY], [{"type": "Resource", "resource": {"name": "memory", "current": {
        "averageValue": "100Mi"}}}]), "memory: 100Mi/500Mi"),
    ("pods unknown", hpa([PODS]), "<unknown>/1k"),
    ("external value", hpa([EXTERNAL], [{"type": "External", "external": {"metric": {"name": "queue"},
                                                                          "current": {"value": "12"}}}]), "12/30"),
    ("object average", hpa([OBJECT_AVG]), "<unknown>/10 (avg)"),
    ("container resource", hpa([CONTAINER]), "cpu: <unknown>/60%"),
    ("more than two", hpa([CPU, MEMORY, PODS]), "cpu: <unknown>/50%, memory: <unknown>/500Mi + 1 more..."),
    ("none", hpa([]), "<none>"),
]


@pytest.mark.parametrize("obj,targets", [c[1:] for c in HPA_CASES], ids=[c[0] for c in HPA_CASES])
def test_hpa_targets(obj, targets):
    assert tables.row_cells("autoscaling", "HorizontalPodAutoscaler", obj, NOW) == [
        "php-apache", "Deployment/php-apache", targets, "1", 10, 1, "10m"]


def test_hpa_without_min_replicas_and_through_v1():
    assert tables.row_cells("autoscaling", "HorizontalPodAutoscaler", hpa([CPU], min_replicas=None), NOW)[3] == "<unset>"
    assert tables.column_definitions("autoscaling", "HorizontalPodAutoscaler")[2]["name"] == "Targets"


# --- everything else --------------------------------------------------------------------------

def obj(name: str, age: dict | None = None, metadata: dict | None = None, **body) -> dict:
    return {"metadata": meta(name, age, **(metadata or {})), **body}


NODE_STATUS = {"nodeInfo": {"kubeletVersion": "v1.35.0", "osImage": "Ubuntu 24.04 LTS",
                            "kernelVersion": "6.8.0-31-generic", "containerRuntimeVersion": "containerd://1.7.13"},
               "addresses": [{"type": "Hostname", "address": "cp-1"}, {"type": "InternalIP", "address": "172.18.0.2"}]}

ROW_CASES = [
    ("node control plane", "", "Node",
     obj("cp-1", {"days": 40}, {"labels": {"node-role.kubernetes.io/control-plane": "", "kubernetes.io/role": "master",
                                           "node-role.kubernetes.io/": ""}},
         spec={}, status={**NODE_STATUS, "conditions": [{"type": "MemoryPressure", "status": "False"},
                                                        {"type": "Ready", "status": "True"}]}),
     ["cp-1", "Ready", "control-plane,master", "40d", "v1.35.0", "172.18.0.2", "<none>", "Ubuntu 24.04 LTS",
      "6.8.0-31-generic", "containerd://1.7.13"]),
    ("node cordoned", "", "Node",
     obj("w-1", {"hours": 5}, spec={"unschedulable": True},
         status={"conditions": [{"type": "Ready", "status": "Unknown"}],
                 "addresses": [{"type": "ExternalIP", "address": "203.0.113.7"}], "nodeInfo": {}}),
     ["w-1", "NotReady,SchedulingDisabled", "<none>", "5h", "", "<none>", "203.0.113.7", "<unknown>", "<unknown>",
      "<unknown>"]),
    ("node registering", "", "Node", obj("w-2", {"seconds": 3}),
     ["w-2", "Unknown", "<none>", "3s", "", "<none>", "<none>", "<unknown>", "<unknown>", "<unknown>"]),
    ("namespace", "", "Namespace", obj("kube-system", {"days": 400}, status={"phase": "Active"}),
     ["kube-system", "Active", "400d"]),
    ("namespace deleting", "", "Namespace", obj("old", {"days": 800}, status={"phase": "Terminating"}),
     ["old", "Terminating", "2y70d"]),
    ("configmap", "", "ConfigMap", obj("cfg", data={"a": "1", "b": "2"}, binaryData={"c": "AA=="}), ["cfg", 3, "5d"]),
    ("configmap empty", "", "ConfigMap", obj("empty"), ["empty", 0, "5d"]),
    ("secret", "", "Secret", obj("tls", type="kubernetes.io/tls", data={"tls.crt": "AA==", "tls.key": "AA=="}),
     ["tls", "kubernetes.io/tls", 2, "5d"]),
    ("service account", "", "ServiceAccount", obj("default", secrets=[{"name": "default-token"}]), ["default", 1, "5d"]),
    ("service account bare", "", "ServiceAccount", obj("builder"), ["builder", 0, "5d"]),
    ("endpoints none", "", "Endpoints", obj("pending"), ["pending", "<none>", "5d"]),
    ("endpoints", "", "Endpoints",
     obj("web", subsets=[{"addresses": [{"ip": "10.244.1.5"}, {"ip": "10.244.2.7"}],
                          "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}]),
     ["web", "10.244.1.5:80,10.244.2.7:80", "5d"]),
    ("endpoints many", "", "Endpoints",
     obj("big", subsets=[{"addresses": [{"ip": f"10.0.0.{i}"} for i in range(1, 4)],
                          "ports": [{"port": 80}, {"port": 443}]}]),
     ["big", "10.0.0.1:80,10.0.0.2:80,10.0.0.3:80 + 3 more...", "5d"]),
    ("endpoints headless and ipv6", "", "Endpoints",
     obj("mixed", subsets=[{"addresses": [{"ip": "10.0.0.9"}]},
                           {"addresses": [{"ip": "fd00::1"}], "ports": [{"port": 8080}]}]),
     ["mixed", "10.0.0.9,[fd00::1]:8080", "5d"]),
    ("pv bound", "", "PersistentVolume",
     obj("pv-1", spec={"capacity": {"storage": "10Gi"}, "accessModes": ["ReadWriteMany", "ReadWriteOnce"],
                       "persistentVolumeReclaimPolicy": "Retain", "storageClassName": "standard",
                       "claimRef": {"namespace": "default", "name": "data"}, "volumeMode": "Filesystem"},
         status={"phase": "Bound"}),
     ["pv-1", "10Gi", "RWO,RWX", "Retain", "Bound", "default/data", "standard", "<unset>", "", "5d", "Filesystem"]),
    ("pv released, beta class, deleting", "", "PersistentVolume",
     obj("pv-2", metadata={"annotations": {"volume.beta.kubernetes.io/storage-class": "slow"},
                           "deletionTimestamp": ago(seconds=5)},
         spec={"capacity": {"storage": "1Gi"}, "accessModes": ["ReadOnlyMany"], "storageClassName": "fast",
               "persistentVolumeReclaimPolicy": "Delete", "volumeAttributesClassName": "gold"},
         status={"phase": "Released", "reason": "Waiting"}),
     ["pv-2", "1Gi", "ROX", "Delete", "Terminating", "", "slow", "gold", "Waiting", "5d", "<unset>"]),
    ("pvc bound", "", "PersistentVolumeClaim",
     obj("data", spec={"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "5Gi"}},
                       "storageClassName": "standard", "volumeName": "pvc-123", "volumeMode": "Filesystem"},
         status={"phase": "Bound", "accessModes": ["ReadWriteOnce"], "capacity": {"storage": "8Gi"}}),
     ["data", "Bound", "pvc-123", "8Gi", "RWO", "standard", "<unset>", "5d", "Filesystem"]),
    ("pvc pending", "", "PersistentVolumeClaim",
     obj("cache", spec={"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "5Gi"}}},
         status={"phase": "Pending"}),
     ["cache", "Pending", "", "", "", "", "<unset>", "5d", "<unset>"]),
    ("pvc deleting", "", "PersistentVolumeClaim",
     obj("old", metadata={"deletionTimestamp": ago(seconds=1)}, spec={"volumeName": "pv-9"},
         status={"phase": "Bound"}),
     ["old", "Terminating", "pv-9", "0", "", "", "<unset>", "5d", "<unset>"]),
    ("resource quota", "", "ResourceQuota",
     obj("compute", status={"hard": {"requests.cpu": "2", "pods": "10", "limits.memory": "4Gi", "limits.cpu": "4",
                                     "limitsx": "1"},
                            "used": {"requests.cpu": "500m", "pods": "3", "limits.cpu": "1"}}),
     ["compute", "limitsx: 0/1, pods: 3/10, requests.cpu: 500m/2", "limits.cpu: 1/4, limits.memory: 0/4Gi", "5d"]),
    ("resource quota unobserved", "", "ResourceQuota", obj("fresh", spec={"hard": {"pods": "1"}}),
     ["fresh", "", "", "5d"]),
    ("pod template", "", "PodTemplate",
     obj("tmpl", template={"metadata": {"labels": {"run": "x", "app": "y"}},
                           "spec": {"containers": [{"name": "a", "image": "img-a"}]}}),
     ["tmpl", "a", "img-a", "app=y,run=x"]),
    ("ingress", "networking.k8s.io", "Ingress",
     obj("web", spec={"ingressClassName": "nginx", "tls": [{"hosts": ["foo.example.com"]}],
                      "rules": [{"host": "foo.example.com"}, {"host": "bar.example.com"}]},
         status={"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}]}}),
     ["web", "nginx", "foo.example.com,bar.example.com", "192.0.2.1", "80, 443", "5d"]),
    ("ingress catch-all", "extensions", "Ingress",
     obj("default-backend", spec={"defaultBackend": {"service": {"name": "web", "port": {"number": 80}}},
                                  "rules": [{"http": {"paths": []}}]}),
     ["default-backend", "<none>", "*", "", "80", "5d"]),
    ("ingress many hosts", "networking.k8s.io", "Ingress",
     obj("many", spec={"rules": [{"host": h} for h in ("a.io", "", "b.io", "c.io", "d.io", "e.io")]}),
     ["many", "<none>", "a.io,b.io,c.io + 3 more...", "", "80", "5d"]),
    ("ingress class", "networking.k8s.io", "IngressClass",
     obj("external-lb", spec={"controller": "example.com/ingress-controller",
                              "parameters": {"apiGroup": "k8s.example.com", "kind": "IngressParameters",
                                             "name": "external-lb"}}),
     ["external-lb", "example.com/ingress-controller", "IngressParameters.k8s.example.com/external-lb", "5d"]),
    ("ingress class plain", "networking.k8s.io", "IngressClass", obj("nginx", spec={"controller": "k8s.io/ingress-nginx"}),
     ["nginx", "k8s.io/ingress-nginx", "<none>", "5d"]),
    ("network policy", "networking.k8s.io", "NetworkPolicy",
     obj("db", spec={"podSelector": {"matchLabels": {"role": "db"}}, "policyTypes": ["Ingress"]}), ["db", "role=db", "5d"]),
    ("network policy all pods", "networking.k8s.io", "NetworkPolicy", obj("deny", spec={"podSelector": {}}),
     ["deny", "<none>", "5d"]),
    ("pdb min available", "policy", "PodDisruptionBudget",
     obj("zk", spec={"minAvailable": 2}, status={"disruptionsAllowed": 1}), ["zk", "2", "N/A", 1, "5d"]),
    ("pdb max unavailable", "policy", "PodDisruptionBudget",
     obj("web", spec={"maxUnavailable": "25%"}, status={}), ["web", "N/A", "25%", 0, "5d"]),
    ("role binding", "rbac.authorization.k8s.io", "RoleBinding",
     obj("read-pods", roleRef={"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pod-reader"},
         subjects=[{"kind": "User", "name": "jane"}, {"kind": "Group", "name": "devs"},
                   {"kind": "ServiceAccount", "name": "ci", "namespace": "build"}, {"kind": "User", "name": "bob"}]),
     ["read-pods", "Role/pod-reader", "5d", "jane, bob", "devs", "build/ci"]),
    ("cluster role binding", "rbac.authorization.k8s.io", "ClusterRoleBinding",
     obj("admins", roleRef={"kind": "ClusterRole", "name": "cluster-admin"},
         subjects=[{"kind": "Group", "name": "system:masters"}]),
     ["admins", "ClusterRole/cluster-admin", "5d", "", "system:masters", ""]),
    ("storage class default", "storage.k8s.io", "StorageClass",
     obj("standard", metadata={"annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
         provisioner="rancher.io/local-path", volumeBindingMode="WaitForFirstConsumer", reclaimPolicy="Delete"),
     ["standard (default)", "rancher.io/local-path", "Delete", "WaitForFirstConsumer", False, "5d"]),
    ("storage class legacy", "storage.k8s.io", "StorageClass",
     obj("fast", metadata={"annotations": {"storageclass.beta.kubernetes.io/is-default-class": "false"}},
         provisioner="kubernetes.io/gce-pd", allowVolumeExpansion=True),
     ["fast", "kubernetes.io/gce-pd", "Delete", "Immediate", True, "5d"]),
    ("lease", "coordination.k8s.io", "Lease", obj("kube-scheduler", spec={"holderIdentity": "cp-1_1234"}),
     ["kube-scheduler", "cp-1_1234", "5d"]),
    ("lease free", "coordination.k8s.io", "Lease", obj("node-1", spec={}), ["node-1", "", "5d"]),
    ("endpoint slice", "discovery.k8s.io", "EndpointSlice",
     obj("web-abc12", addressType="IPv4",
         ports=[{"name": "http", "port": 80}, {"name": "https", "port": 443}, {"name": "named"}, {}],
         endpoints=[{"addresses": ["10.0.0.1"]}, {"addresses": ["10.0.0.2", "10.0.0.3"]}, {"addresses": ["10.0.0.4"]}]),
     ["web-abc12", "IPv4", "80,443,named + 1 more...", "10.0.0.1,10.0.0.2,10.0.0.3 + 1 more...", "5d"]),
    ("endpoint slice empty", "discovery.k8s.io", "EndpointSlice", obj("web-empty", addressType="IPv6", endpoints=[]),
     ["web-empty", "IPv6", "<unset>", "<unset>", "5d"]),
    ("controller revision", "apps", "ControllerRevision",
     obj("web-6b8f9", metadata={"ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "web",
                                                     "uid": "u", "controller": True}]}, revision=2),
     ["web-6b8f9", "statefulset.apps/web", 2, "5d"]),
    ("controller revision orphan", "apps", "ControllerRevision",
     obj("orphan", metadata={"ownerReferences": [{"apiVersion": "v1", "kind": "Pod", "name": "x", "uid": "u"}]},
         revision=1),
     ["orphan", "<none>", 1, "5d"]),
    ("pod security policy", "policy", "PodSecurityPolicy",
     obj("restricted", spec={"privileged": False, "allowedCapabilities": ["NET_BIND_SERVICE", "CHOWN"],
                             "seLinux": {"rule": "RunAsAny"}, "runAsUser": {"rule": "MustRunAsNonRoot"},
                             "fsGroup": {"rule": "MustRunAs"}, "supplementalGroups": {"rule": "RunAsAny"},
                             "readOnlyRootFilesystem": True, "volumes": ["configMap", "secret"]}),
     ["restricted", "false", "NET_BIND_SERVICE,CHOWN", "RunAsAny", "MustRunAsNonRoot", "MustRunAs", "RunAsAny", True,
      "configMap,secret"]),
    ("pod security policy via extensions", "extensions", "PodSecurityPolicy",
     obj("privileged", spec={"privileged": True, "seLinux": {"rule": "RunAsAny"}, "runAsUser": {"rule": "RunAsAny"},
                             "fsGroup": {"rule": "RunAsAny"}, "supplementalGroups": {"rule": "RunAsAny"},
                             "volumes": ["*"]}),
     ["privileged", "true", "", "RunAsAny", "RunAsAny", "RunAsAny", "RunAsAny", False, "*"]),
    ("role has no printer", "rbac.authorization.k8s.io", "Role", obj("pod-reader", {"days": 1}),
     ["pod-reader", "2024-04-30T12:00:00Z"]),
    ("limit range has no printer", "", "LimitRange", obj("limits", {"seconds": 30}), ["limits", "2024-05-01T11:59:30Z"]),
    ("cluster role has no printer", "rbac.authorization.k8s.io", "ClusterRole",
     {"metadata": {"name": "view"}}, ["view", "0001-01-01T00:00:00Z"]),
    ("unknown kind", "example.com", "Widget", obj("w"), ["w", "2024-04-26T12:00:00Z"]),
]


@pytest.mark.parametrize("group,kind,obj,expected", [c[1:] for c in ROW_CASES], ids=[c[0] for c in ROW_CASES])
def test_rows(group, kind, obj, expected):
    assert tables.row_cells(group, kind, obj, NOW) == expected


# --- events -----------------------------------------------------------------------------------

SCHEDULED = {
    "metadata": meta("web-1.17c5a9e2", {"minutes": 2}),
    "involvedObject": {"kind": "Pod", "namespace": "default", "name": "web-1", "apiVersion": "v1"},
    "reason": "Scheduled", "message": "Successfully assigned default/web-1 to node-1\n", "type": "Normal",
    "source": {"component": "default-scheduler"}, "firstTimestamp": ago(minutes=2), "lastTimestamp": ago(minutes=2),
    "count": 1,
}
PULLING = {
    **SCHEDULED, "metadata": meta("web-1.17c5aa01", {"minutes": 30}), "reason": "BackOff", "type": "Warning",
    "message": "Back-off pulling image", "involvedObject": {**SCHEDULED["involvedObject"],
                                                              "fieldPath": "spec.containers{web}"},
    "source": {"component": "kubelet", "host": "node-1"}, "firstTimestamp": ago(minutes=30),
    "lastTimestamp": ago(seconds=20), "count": 12,
}
NEW_API = {
    "metadata": meta("web.17c5b000", {"hours": 2}),
    "involvedObject": {"kind": "Deployment", "namespace": "default", "name": "web"},
    "reason": "ScalingReplicaSet", "message": "Scaled up replica set web-7d4b9c to 3", "type": "Normal",
    "eventTime": ago(hours=2), "reportingComponent": "deployment-controller", "reportingInstance": "cp-1",
    "series": {"count": 4, "lastObservedTime": ago(minutes=6)},
}
CLUSTER_EVENT = {"metadata": meta("node.1", {"days": 1}), "involvedObject": {"kind": "Node"}, "type": "Normal",
                 "reason": "RegisteredNode", "eventTime": ago(days=1), "reportingComponent": "node-controller"}

EVENT_CASES = [
    ("scheduled", SCHEDULED, ["2m", "Normal", "Scheduled", "pod/web-1", "", "default-scheduler",
                              "Successfully assigned default/web-1 to node-1", "2m", 1, "web-1.17c5a9e2"]),
    ("repeated", PULLING, ["20s", "Warning", "BackOff", "pod/web-1", "spec.containers{web}", "kubelet, node-1",
                           "Back-off pulling image", "30m", 12, "web-1.17c5aa01"]),
    ("series", NEW_API, ["6m", "Normal", "ScalingReplicaSet", "deployment/web", "", "deployment-controller, cp-1",
                         "Scaled up replica set web-7d4b9c to 3", "120m", 4, "web.17c5b000"]),
    ("singleton new api", CLUSTER_EVENT, ["24h", "Normal", "RegisteredNode", "node", "", "node-controller", "", "24h", 1,
                                          "node.1"]),
    ("no times", {"metadata": {"name": "x"}}, ["<unknown>", "", "", "", "", "", "", "<unknown>", 1, "x"]),
]


@pytest.mark.parametrize("group", ["", "events.k8s.io"])
@pytest.mark.parametrize("obj,expected", [c[1:] for c in EVENT_CASES], ids=[c[0] for c in EVENT_CASES])
def test_event_rows(group, obj, expected):
    assert tables.row_cells(group, "Event", obj, NOW) == expected


# --- column definitions -----------------------------------------------------------------------

def doc(definition: str, field: str) -> str:
    return schema.definitions()[definition]["properties"][field]["description"]


def test_pod_columns_match_upstream():
    columns = tables.column_definitions("", "Pod")
    assert [(c["name"], c["type"], c["format"], c["priority"]) for c in columns] == [
        ("Name", "string", "name", 0), ("Ready", "string", "", 0), ("Status", "string", "", 0),
        ("Restarts", "string", "", 0), ("Age", "string", "", 0), ("IP", "string", "", 1), ("Node", "string", "", 1),
        ("Nominated Node", "string", "", 1), ("Readiness Gates", "string", "", 1)]
    assert columns[0]["description"] == doc("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", "name")
    assert columns[4]["description"] == doc("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", "creationTimestamp")
    assert columns[1]["description"] == "The aggregate readiness state of this pod for accepting traffic."
    assert columns[6]["description"] == doc("io.k8s.api.core.v1.PodSpec", "nodeName")


@pytest.mark.parametrize("group,kind,columns", [
    ("", "Service", [("Name", 0), ("Type", 0), ("Cluster-IP", 0), ("External-IP", 0), ("Port(s)", 0), ("Age", 0),
                     ("Selector", 1)]),
    ("apps", "Deployment", [("Name", 0), ("Ready", 0), ("Up-to-date", 0), ("Available", 0), ("Age", 0),
                            ("Containers", 1), ("Images", 1), ("Selector", 1)]),
    ("batch", "Job", [("Name", 0), ("Status", 0), ("Completions", 0), ("Duration", 0), ("Age", 0), ("Containers", 1),
                      ("Images", 1), ("Selector", 1)]),
    ("", "Event", [("Last Seen", 0), ("Type", 0), ("Reason", 0), ("Object", 0), ("Subobject", 1), ("Source", 1),
                   ("Message", 0), ("First Seen", 1), ("Count", 1), ("Name", 1)]),
    ("", "ReplicationController", [("Name", 0), ("Desired", 0), ("Current", 0), ("Ready", 0), ("Age", 0),
                                   ("Containers", 1), ("Images", 1), ("Selector", 1)]),
])
def test_column_names_and_priorities(group, kind, columns):
    assert [(c["name"], c["priority"]) for c in tables.column_definitions(group, kind)] == columns


def test_column_types_and_legacy_descriptions():
    rs = tables.column_definitions("apps", "ReplicaSet")
    assert [c["type"] for c in rs[:4]] == ["string", "integer", "integer", "integer"]
    assert rs[1]["description"].startswith("Replicas is the number of desired replicas.")
    cron = tables.column_definitions("batch", "CronJob")
    assert [c["type"] for c in cron[:5]] == ["string", "string", "string", "boolean", "integer"]
    assert cron[2]["description"].endswith("This is beta field and must be enabled via the `CronJobTimeZone` feature gate.")
    assert tables.column_definitions("", "Event")[9]["format"] == "name"
    assert tables.column_definitions("extensions", "Ingress") == tables.column_definitions("networking.k8s.io", "Ingress")


def test_every_served_kind_has_complete_columns():
    for r in kinds.RESOURCES:
        columns = tables.column_definitions(r.group, r.kind)
        assert columns, r
        for c in columns:
            assert set(c) == {"name", "type", "format", "description", "priority"}
            assert c["description"], (r.kind, c["name"])


def test_default_columns_are_name_and_created_at():
    assert [(c["name"], c["type"], c["format"]) for c in tables.column_definitions("rbac.authorization.k8s.io", "Role")] \
        == [("Name", "string", "name"), ("Created At", "date", "")]


# --- the Table --------------------------------------------------------------------------------

def test_table_with_metadata_rows():
    done = pod("done", phase="Succeeded", statuses=[terminated("Completed")])
    live = pod("live", statuses=[running()], conditions=READY)
    result = tables.table("", "Pod", [done, live], now=NOW, list_metadata={"resourceVersion": "77", "continue": ""},
                          api_version_of_objects="v1")
    assert result["kind"] == "Table" and result["apiVersion"] == "meta.k8s.io/v1"
    assert result["metadata"] == {"resourceVersion": "77"}
    assert result["columnDefinitions"] == tables.column_definitions("", "Pod")
    first, second = result["rows"]
    assert first["cells"] == ["done", "0/1", "Completed", "0", "30m", "<none>", "<none>", "<none>", "<none>"]
    assert first["conditions"] == [{"type": "Completed", "status": "True", "reason": "Succeeded",
                                    "message": "The pod has completed successfully."}]
    assert first["object"] == {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                               "metadata": done["metadata"]}
    assert "conditions" not in second
    failed = pod("f", phase="Failed")
    row = tables.table("", "Pod", [failed], now=NOW, list_metadata={}, api_version_of_objects="v1")["rows"][0]
    assert row["conditions"][0]["reason"] == "Failed" and row["conditions"][0]["message"] == "The pod failed."


def test_table_include_object_modes():
    deployment = workload("Deployment", "web", {"replicas": 1, "template": TEMPLATE}, {})
    deployment["apiVersion"] = "apps/v1"
    none = tables.table("apps", "Deployment", [deployment], now=NOW, include_object="None", list_metadata={},
                        api_version_of_objects="apps/v1")
    assert none["rows"][0]["object"] is None
    full = tables.table("extensions", "Deployment", [deployment], now=NOW, include_object="Object",
                        list_metadata={}, api_version_of_objects="extensions/v1beta1")
    embedded = full["rows"][0]["object"]
    assert embedded["apiVersion"] == "extensions/v1beta1" and embedded["kind"] == "Deployment"
    assert embedded["spec"] == deployment["spec"]
    converted = tables.table("apps", "Deployment", [deployment], now=NOW, include_object="Object", list_metadata={},
                             api_version_of_objects="apps/v1beta2", convert=lambda o: {"converted": o["metadata"]["name"]})
    assert converted["rows"][0]["object"] == {"converted": "web"}
    default = tables.table("apps", "Deployment", [deployment], now=NOW, include_object="", list_metadata={},
                           api_version_of_objects="apps/v1")
    assert default["rows"][0]["object"]["kind"] == "PartialObjectMetadata"
    with pytest.raises(ValueError, match='unrecognized includeObject value: "Everything"'):
        tables.table("apps", "Deployment", [deployment], now=NOW, include_object="Everything", list_metadata={},
                     api_version_of_objects="apps/v1")


def test_table_list_metadata_and_empty_lists():
    printed = tables.table("", "ConfigMap", [], now=NOW, api_version_of_objects="v1",
                           list_metadata={"resourceVersion": "9", "continue": "abc", "remainingItemCount": 0})
    assert printed["metadata"] == {"resourceVersion": "9", "continue": "abc", "remainingItemCount": 0}
    assert printed["rows"] == []
    default = tables.table("rbac.authorization.k8s.io", "Role", [], now=NOW, list_metadata={"resourceVersion": "9"},
                           api_version_of_objects="rbac.authorization.k8s.io/v1")
    assert default["rows"] is None and default["columnDefinitions"][1]["name"] == "Created At"
    headless = tables.table("", "ConfigMap", [obj("c")], now=NOW, list_metadata={}, api_version_of_objects="v1",
                            no_headers=True)
    assert headless["columnDefinitions"] is None and headless["rows"][0]["cells"] == ["c", 0, "5d"]


def test_naive_now_is_utc_and_future_timestamps():
    naive = NOW.replace(tzinfo=None)
    assert tables.row_cells("", "ConfigMap", obj("c", {"hours": 1}), naive)[2] == "60m"
    assert tables.row_cells("", "ConfigMap", obj("c", {"seconds": -1}), NOW)[2] == "0s"
    assert tables.row_cells("", "ConfigMap", obj("c", {"seconds": -5}), NOW)[2] == "<invalid>"


# --- durations --------------------------------------------------------------------------------

@pytest.mark.parametrize("seconds,text", [
    (-5, "<invalid>"), (-1.5, "0s"), (-1, "0s"), (0, "0s"), (1, "1s"), (70, "70s"), (119.9, "119s"), (120, "2m"),
    (190, "3m10s"), (599, "9m59s"), (600, "10m"), (70 * 60, "70m"), (3 * 3600 - 1, "179m"), (3 * 3600, "3h"),
    (7 * 3600 + 59 * 60 + 59, "7h59m"), (8 * 3600, "8h"), (47 * 3600, "47h"), (48 * 3600, "2d"),
    (49 * 3600, "2d1h"), ((8 * 24 - 1) * 3600, "7d23h"), ((8 * 24 + 2) * 3600, "8d"), (367 * 24 * 3600, "367d"),
    ((365 * 2 * 24) * 3600, "2y"), ((365 * 2 * 24 + 25) * 3600, "2y1d"), ((365 * 8 * 24 + 2) * 3600, "8y"),
])
def test_human_duration(seconds, text):
    assert tables.human_duration(seconds) == text


def test_quantities_print_canonically_and_bad_selectors_show_error():
    pv = obj("pv", spec={"capacity": {"storage": "1024Mi"}, "accessModes": ["ReadWriteOnce"]}, status={"phase": "Available"})
    assert tables.row_cells("", "PersistentVolume", pv, NOW)[1] == "1Gi"
    quota = obj("q", status={"hard": {"requests.cpu": "2000m"}, "used": {"requests.cpu": "1000m"}})
    assert tables.row_cells("", "ResourceQuota", quota, NOW)[1] == "requests.cpu: 1/2"
    rs = workload("ReplicaSet", "rs", {"replicas": 1, "template": TEMPLATE, "selector": {"matchExpressions": [
        {"key": "a", "operator": "Bogus"}]}}, {})
    assert tables.row_cells("apps", "ReplicaSet", rs, NOW)[-1] == "<error>"
