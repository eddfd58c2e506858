"""Semantic validation: exact upstream messages for bad objects, updates, and the book's manifests."""

from __future__ import annotations

import copy
import json
import pathlib
import re
from typing import Any

import pytest
import yaml

from ketch.api import decode, kinds, validation
from ketch.api import names as names_mod

BOOK = pathlib.Path("/work/shared/book-examples")


# --- builders of already-defaulted objects (as validation sees them) ----------------------------------------


def container(**fields: Any) -> dict:
    return {
        "name": "c",
        "image": "nginx",
        "imagePullPolicy": "Always",
        "terminationMessagePolicy": "File",
        "terminationMessagePath": "/dev/termination-log",
        **fields,
    }


def pod_spec(**fields: Any) -> dict:
    return {
        "containers": [container()],
        "restartPolicy": "Always",
        "dnsPolicy": "ClusterFirst",
        "terminationGracePeriodSeconds": 30,
        "schedulerName": "default-scheduler",
        "securityContext": {},
        **fields,
    }


def meta(name: str = "web", namespace: str | None = "default", **fields: Any) -> dict:
    out = {"name": name, **fields}
    if namespace is not None:
        out["namespace"] = namespace
    return out


def pod(**spec: Any) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta(), "spec": pod_spec(**spec)}


def template(labels: dict | None = None, **spec: Any) -> dict:
    return {"metadata": {"labels": {"app": "web"} if labels is None else labels}, "spec": pod_spec(**spec)}


def deployment(**spec: Any) -> dict:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta(),
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "web"}},
            "template": template(),
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}},
            "revisionHistoryLimit": 10,
            "progressDeadlineSeconds": 600,
            **spec,
        },
    }


def rc(**spec: Any) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "ReplicationController",
        "metadata": meta(),
        "spec": {"replicas": 1, "selector": {"app": "web"}, "template": template(), **spec},
    }


def service(**spec: Any) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta(),
        "spec": {
            "ports": [{"port": 80, "protocol": "TCP", "targetPort": 80}],
            "type": "ClusterIP",
            "sessionAffinity": "None",
            "internalTrafficPolicy": "Cluster",
            **spec,
        },
    }


def job(**spec: Any) -> dict:
    labels = {
        "controller-uid": "u1",
        "job-name": "web",
        "batch.kubernetes.io/controller-uid": "u1",
        "batch.kubernetes.io/job-name": "web",
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": meta(uid="u1"),
        "spec": {
            "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "u1"}},
            "template": template(labels, restartPolicy="Never"),
            "backoffLimit": 6,
            "completions": 1,
            "parallelism": 1,
            "manualSelector": False,
            "completionMode": "NonIndexed",
            **spec,
        },
    }


def cron_job(**spec: Any) -> dict:
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": meta(),
        "spec": {
            "schedule": "*/1 * * * *",
            "concurrencyPolicy": "Allow",
            "suspend": False,
            "jobTemplate": {"spec": {"template": {"spec": pod_spec(restartPolicy="OnFailure")}}},
            **spec,
        },
    }


def put(obj: dict, path: str, value: Any) -> dict:
    """A copy of obj with `a.b[0].c` set (a value of DELETE removes it)."""
    obj = copy.deepcopy(obj)
    steps = [int(p) if p.isdigit() else p for p in re.findall(r"[^.\[\]]+", path)]
    target = obj
    for step in steps[:-1]:
        target = target[step]
    if value is DELETE:
        del target[steps[-1]]
    else:
        target[steps[-1]] = value
    return obj


DELETE = object()


def messages(group: str, kind: str, obj: dict, old: dict | None = None) -> list[str]:
    return [e.message() for e in validation.validate(group, kind, obj, old)]


# --- valid objects stay valid ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "group, kind, obj",
    [
        ("", "Pod", pod()),
        ("apps", "Deployment", deployment()),
        ("", "ReplicationController", rc()),
        ("", "Service", service()),
        ("batch", "Job", job()),
        ("batch", "CronJob", cron_job()),
    ],
)
def test_valid_objects_have_no_errors(group, kind, obj):
    assert messages(group, kind, obj) == []


# --- bad objects: (group, kind, object, exact messages) -------------------------------------------------------

CASES: list[tuple[str, str, str, dict, list[str]]] = [
    # ObjectMeta
    (
        "name required",
        "",
        "Pod",
        put(pod(), "metadata.name", DELETE),
        ["metadata.name: Required value: name or generateName is required"],
    ),
    (
        "generateName only",
        "",
        "Pod",
        put(put(pod(), "metadata.name", DELETE), "metadata.generateName", "web-"),
        ["metadata.name: Required value: name or generateName is required"],
    ),
    (
        "pod name",
        "",
        "Pod",
        put(pod(), "metadata.name", "Web_1"),
        [
            'metadata.name: Invalid value: "Web_1": a lowercase RFC 1123 subdomain must consist of lower case '
            "alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. "
            "'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*"
            "[a-z0-9])?)*')"
        ],
    ),
    ("namespace required", "", "Pod", put(pod(), "metadata.namespace", DELETE), ["metadata.namespace: Required value"]),
    (
        "namespace on cluster-scoped",
        "",
        "Namespace",
        {"metadata": meta("team-a", namespace="default"), "spec": {"finalizers": ["kubernetes"]}},
        ["metadata.namespace: Forbidden: not allowed on this type"],
    ),
    (
        "namespace name is a label",
        "",
        "Namespace",
        {"metadata": meta("team.a", namespace=None)},
        ['metadata.name: Invalid value: "team.a": must not contain dots'],
    ),
    (
        "service name is a DNS-1035 label",
        "",
        "Service",
        put(service(), "metadata.name", "1web"),
        [
            'metadata.name: Invalid value: "1web": a DNS-1035 label must consist of lower case alphanumeric '
            "characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. "
            "'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"
        ],
    ),
    (
        "label value",
        "",
        "Pod",
        put(pod(), "metadata.labels", {"app": "-x"}),
        [
            'metadata.labels: Invalid value: "-x": a valid label must be an empty string or consist of alphanumeric '
            "characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or "
            "'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
        ],
    ),
    (
        "finalizer",
        "",
        "Pod",
        put(pod(), "metadata.finalizers", ["custom"]),
        [
            'metadata.finalizers[0]: Invalid value: "custom": name is neither a standard finalizer name nor is it '
            "fully qualified"
        ],
    ),
    (
        "owner references",
        "",
        "Pod",
        put(
            pod(),
            "metadata.ownerReferences",
            [
                {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "a", "uid": "1", "controller": True},
                {"apiVersion": "", "kind": "ReplicaSet", "name": "b", "uid": "", "controller": True},
            ],
        ),
        [
            'metadata.ownerReferences.apiVersion: Invalid value: "": version must not be empty',
            'metadata.ownerReferences.uid: Invalid value: "": must not be empty',
            "metadata.ownerReferences: Invalid value: []v1.OwnerReference{...}: Only one reference can have Controller "
            'set to true. Found "true" in references for ReplicaSet/a and ReplicaSet/b',
        ],
    ),
    # Pod spec
    ("containers required", "", "Pod", pod(containers=[]), ["spec.containers: Required value"]),
    ("image required", "", "Pod", pod(containers=[container(image="")]), ["spec.containers[0].image: Required value"]),
    (
        "container name",
        "",
        "Pod",
        pod(containers=[container(name="Web")]),
        [
            'spec.containers[0].name: Invalid value: "Web": a lowercase RFC 1123 label must consist of lower case '
            "alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  "
            "or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
        ],
    ),
    (
        "duplicate container names incl. init",
        "",
        "Pod",
        pod(containers=[container(), container()], initContainers=[container()]),
        ['spec.containers[1].name: Duplicate value: "c"', 'spec.initContainers[0].name: Duplicate value: "c"'],
    ),
    (
        "ports",
        "",
        "Pod",
        pod(
            containers=[
                container(
                    ports=[
                        {"containerPort": 0, "protocol": "TCP"},
                        {"containerPort": 70000, "protocol": "HTTP", "name": "web"},
                        {"containerPort": 80, "protocol": "TCP", "name": "web"},
                        {"containerPort": 81, "protocol": "TCP", "name": "nodejsPort"},
                    ]
                )
            ]
        ),
        [
            "spec.containers[0].ports[0].containerPort: Required value",
            "spec.containers[0].ports[1].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive",
            'spec.containers[0].ports[1].protocol: Unsupported value: "HTTP": supported values: "SCTP", "TCP", "UDP"',
            'spec.containers[0].ports[2].name: Duplicate value: "web"',
            'spec.containers[0].ports[3].name: Invalid value: "nodejsPort": must contain only alpha-numeric characters '
            "(a-z, 0-9), and hyphens (-)",
        ],
    ),
    (
        "env",
        "",
        "Pod",
        pod(
            containers=[
                container(
                    env=[
                        {"name": ""},
                        {"name": "A=B"},
                        {
                            "name": "X",
                            "value": "v",
                            "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}},
                        },
                    ]
                )
            ]
        ),
        [
            "spec.containers[0].env[0].name: Required value",
            'spec.containers[0].env[1].name: Invalid value: "A=B": a valid environment variable name must consist only '
            "of printable ASCII characters other than '='",
            'spec.containers[0].env[2].valueFrom: Invalid value: "": may not be specified when `value` is not empty',
        ],
    ),
    (
        "env fieldPath",
        "",
        "Pod",
        pod(
            containers=[
                container(env=[{"name": "A", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "spec.foo"}}}])
            ]
        ),
        [
            'spec.containers[0].env[0].valueFrom.fieldRef.fieldPath: Invalid value: "spec.foo": error converting '
            "fieldPath: field label not supported: spec.foo"
        ],
    ),
    (
        "requests above limits",
        "",
        "Pod",
        pod(
            containers=[
                container(
                    resources={"limits": {"cpu": "500m", "memory": "1Gi"}, "requests": {"cpu": "600m", "memory": "-1"}}
                )
            ]
        ),
        [
            'spec.containers[0].resources.requests: Invalid value: "600m": must be less than or equal to cpu limit of 500m',
            'spec.containers[0].resources.requests[memory]: Invalid value: "-1": must be greater than or equal to 0',
        ],
    ),
    (
        "resource names",
        "",
        "Pod",
        pod(containers=[container(resources={"limits": {"pods": "1", "gpu": "1"}})]),
        [
            'spec.containers[0].resources.limits[pods]: Invalid value: "pods": must be a standard resource for containers',
            'spec.containers[0].resources.limits[gpu]: Invalid value: "gpu": must be a standard resource type or fully '
            "qualified",
            'spec.containers[0].resources.limits[gpu]: Invalid value: "gpu": must be a standard resource for containers',
        ],
    ),
    (
        "volume mounts",
        "",
        "Pod",
        pod(
            containers=[
                container(volumeMounts=[{"name": "data", "mountPath": "/d"}, {"name": "logs", "mountPath": "/d"}])
            ],
            volumes=[{"name": "logs", "emptyDir": {}}],
        ),
        [
            'spec.containers[0].volumeMounts[0].name: Not found: "data"',
            'spec.containers[0].volumeMounts[1].mountPath: Invalid value: "/d": must be unique',
        ],
    ),
    (
        "volumes",
        "",
        "Pod",
        pod(
            volumes=[
                {"name": "a"},
                {"name": "b", "emptyDir": {}, "hostPath": {"path": "/x"}},
                {"name": "b", "configMap": {}},
                {"name": "Bad", "secret": {"secretName": "s"}},
            ]
        ),
        [
            "spec.volumes[0]: Required value: must specify a volume type",
            "spec.volumes[1].hostPath: Forbidden: may not specify more than 1 volume type",
            "spec.volumes[2].configMap.name: Required value",  # not a duplicate: volumes[1] had errors
            'spec.volumes[3].name: Invalid value: "Bad": a lowercase RFC 1123 label must consist of lower case '
            "alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or "
            "'123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
        ],
    ),
    (
        "enums",
        "",
        "Pod",
        pod(
            restartPolicy="Sometimes",
            dnsPolicy="",
            containers=[container(imagePullPolicy="Maybe", terminationMessagePolicy="")],
        ),
        [
            "spec.containers[0].terminationMessagePolicy: Required value",
            'spec.containers[0].imagePullPolicy: Unsupported value: "Maybe": supported values: "Always", "IfNotPresent", '
            '"Never"',
            'spec.restartPolicy: Unsupported value: "Sometimes": supported values: "Always", "OnFailure", "Never"',
            "spec.dnsPolicy: Required value",
        ],
    ),
    (
        "probes",
        "",
        "Pod",
        pod(
            containers=[
                container(
                    livenessProbe={
                        "periodSeconds": -1,
                        "successThreshold": 2,
                        "timeoutSeconds": 1,
                        "failureThreshold": 3,
                    },
                    readinessProbe={"exec": {"command": ["true"]}, "tcpSocket": {"port": 80}, "successThreshold": 1},
                )
            ]
        ),
        [
            "spec.containers[0].livenessProbe: Required value: must specify a handler type",
            "spec.containers[0].livenessProbe.periodSeconds: Invalid value: -1: must be greater than or equal to 0",
            "spec.containers[0].livenessProbe.successThreshold: Invalid value: 2: must be 1",
            "spec.containers[0].readinessProbe.tcpSocket: Forbidden: may not specify more than 1 handler type",
        ],
    ),
    (
        "http probe port",
        "",
        "Pod",
        pod(
            containers=[
                container(
                    readinessProbe={
                        "httpGet": {"path": "/", "port": "my_port", "scheme": "HTTP"},
                        "successThreshold": 1,
                    }
                )
            ]
        ),
        [
            'spec.containers[0].readinessProbe.httpGet.port: Invalid value: "my_port": must contain only alpha-numeric '
            "characters (a-z, 0-9), and hyphens (-)"
        ],
    ),
    (
        "grace period",
        "",
        "Pod",
        put(pod(), "spec.terminationGracePeriodSeconds", DELETE),
        ["spec.terminationGracePeriodSeconds: Required value"],
    ),
    (
        "tolerations",
        "",
        "Pod",
        pod(tolerations=[{"operator": "Equal", "value": "x"}, {"key": "k", "operator": "Exists", "value": "v"}]),
        [
            'spec.tolerations[0].operator: Invalid value: "Equal": operator must be Exists when `key` is empty, which '
            'means "match all values and all keys"',
            "spec.tolerations[1].operator: Invalid value: \"v\": value must be empty when `operator` is 'Exists'",
        ],
    ),
    (
        "host network ports",
        "",
        "Pod",
        pod(
            hostNetwork=True, containers=[container(ports=[{"containerPort": 80, "hostPort": 8080, "protocol": "TCP"}])]
        ),
        [
            "spec.containers[0].ports[0].hostPort: Invalid value: 8080: must match `containerPort` when `hostNetwork` is true"
        ],
    ),
    (
        "active deadline",
        "",
        "Pod",
        pod(activeDeadlineSeconds=0),
        ["spec.activeDeadlineSeconds: Invalid value: 0: must be between 1 and 2147483647, inclusive"],
    ),
    (
        "ephemeral on create",
        "",
        "Pod",
        pod(ephemeralContainers=[container(name="debug")]),
        ["spec.ephemeralContainers: Forbidden: cannot be set on create"],
    ),
    (
        "image whitespace",
        "",
        "Pod",
        pod(containers=[container(image=" nginx")]),
        ['spec.containers[0].image: Invalid value: " nginx": must not have leading or trailing whitespace'],
    ),
    # ReplicationController
    (
        "rc restart policy",
        "",
        "ReplicationController",
        put(rc(), "spec.template.spec.restartPolicy", "OnFailure"),
        ['spec.template.spec.restartPolicy: Unsupported value: "OnFailure": supported values: "Always"'],
    ),
    (
        "rc selector mismatch",
        "",
        "ReplicationController",
        put(rc(), "spec.selector", {"app": "x"}),
        [
            'spec.template.metadata.labels: Invalid value: map[string]string{"app":"web"}: `selector` does not match '
            "template `labels`"
        ],
    ),
    (
        "rc selector required",
        "",
        "ReplicationController",
        put(put(rc(), "spec.selector", {}), "spec.replicas", -1),
        ["spec.selector: Required value", "spec.replicas: Invalid value: -1: must be greater than or equal to 0"],
    ),
    (
        "rc template labels path",
        "",
        "ReplicationController",
        put(put(rc(), "spec.template.metadata.labels", {"app": "web", "x/y/z": "1"}), "spec.selector", {"app": "web"}),
        [
            'spec.template.labels: Invalid value: "x/y/z": a valid label key must consist of alphanumeric characters, '
            "'-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or "
            "'123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS "
            "subdomain prefix and '/' (e.g. 'example.com/MyName')"
        ],
    ),
    # Deployment and friends
    (
        "deployment selector required",
        "apps",
        "Deployment",
        put(deployment(), "spec.selector", DELETE),
        # a missing selector selects nothing, so the template cannot match it either
        [
            "spec.selector: Required value",
            'spec.template.metadata.labels: Invalid value: map[string]string{"app":"web"}: `selector` does not match '
            "template `labels`",
        ],
    ),
    (
        "deployment empty selector",
        "apps",
        "Deployment",
        put(deployment(), "spec.selector", {}),
        [
            "spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string(nil), "
            "MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: empty selector is invalid for deployment"
        ],
    ),
    (
        "deployment template labels",
        "apps",
        "Deployment",
        put(deployment(), "spec.template.metadata.labels", DELETE),
        [
            "spec.template.metadata.labels: Invalid value: map[string]string(nil): `selector` does not match template "
            "`labels`"
        ],
    ),
    (
        "deployment strategy",
        "apps",
        "Deployment",
        put(deployment(), "spec.strategy.rollingUpdate", {"maxSurge": 0, "maxUnavailable": "0%"}),
        ["spec.strategy.rollingUpdate.maxUnavailable: Invalid value: 0%: may not be 0 when `maxSurge` is 0"],
    ),
    (
        "deployment bad percent",
        "apps",
        "Deployment",
        put(deployment(), "spec.strategy.rollingUpdate", {"maxSurge": "x", "maxUnavailable": "120%"}),
        [
            "spec.strategy.rollingUpdate.maxSurge: Invalid value: x: a valid percent string must be a numeric string "
            "followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')",
            "spec.strategy.rollingUpdate.maxUnavailable: Invalid value: 120%: must not be greater than 100%",
        ],
    ),
    (
        "deployment deadline",
        "apps",
        "Deployment",
        deployment(minReadySeconds=700),
        ["spec.progressDeadlineSeconds: Invalid value: 600: must be greater than minReadySeconds"],
    ),
    (
        "deployment restart policy",
        "apps",
        "Deployment",
        put(deployment(), "spec.template.spec.restartPolicy", "Never"),
        ['spec.template.spec.restartPolicy: Unsupported value: "Never": supported values: "Always"'],
    ),
    (
        "replicaset",
        "apps",
        "ReplicaSet",
        {
            "metadata": meta(),
            "spec": {"replicas": -2, "selector": {"matchLabels": {"app": "web"}}, "template": template()},
        },
        ["spec.replicas: Invalid value: -2: must be greater than or equal to 0"],
    ),
    (
        "daemonset strategy",
        "apps",
        "DaemonSet",
        {
            "metadata": meta(),
            "spec": {
                "selector": {"matchLabels": {"app": "web"}},
                "template": template(),
                "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 0}},
            },
        },
        ["spec.updateStrategy.rollingUpdate.maxUnavailable: Required value: cannot be 0 when maxSurge is 0"],
    ),
    (
        "statefulset",
        "apps",
        "StatefulSet",
        {
            "metadata": meta("web.1"),
            "spec": {
                "selector": {"matchLabels": {"app": "web"}},
                "template": template(),
                "podManagementPolicy": "Fast",
                "updateStrategy": {"type": "RollingUpdate"},
                "replicas": 1,
            },
        },
        [
            'metadata.name: Invalid value: "web.1": must not contain dots',
            "spec.podManagementPolicy: Invalid value: \"Fast\": must be 'OrderedReady' or 'Parallel'",
        ],
    ),
    # Job and CronJob
    (
        "job restart policy",
        "batch",
        "Job",
        put(job(), "spec.template.spec.restartPolicy", "Always"),
        ['spec.template.spec.restartPolicy: Required value: valid values: "OnFailure", "Never"'],
    ),
    (
        "job generated labels",
        "batch",
        "Job",
        put(job(), "spec.template.metadata.labels.controller-uid", "u2"),
        [
            "spec.template.metadata.labels[controller-uid]: Invalid value: map[string]string{"
            '"batch.kubernetes.io/controller-uid":"u1", "batch.kubernetes.io/job-name":"web", "controller-uid":"u2", '
            '"job-name":"web"}: must be \'u1\''
        ],
    ),
    (
        "cron schedule",
        "batch",
        "CronJob",
        cron_job(schedule="bad"),
        ['spec.schedule: Invalid value: "bad": expected exactly 5 fields, found 1: [bad]'],
    ),
    (
        "cron schedule range",
        "batch",
        "CronJob",
        cron_job(schedule="61 * * * *"),
        ['spec.schedule: Invalid value: "61 * * * *": end of range (61) above maximum (59): 61'],
    ),
    (
        "cron time zone in schedule",
        "batch",
        "CronJob",
        cron_job(schedule="CRON_TZ=UTC 0 * * * *"),
        [
            'spec.schedule: Invalid value: "CRON_TZ=UTC 0 * * * *": cannot use TZ or CRON_TZ in schedule, use timeZone '
            "field instead"
        ],
    ),
    (
        "cron job template",
        "batch",
        "CronJob",
        put(cron_job(), "spec.jobTemplate.spec.template.spec.restartPolicy", "Always"),
        ['spec.jobTemplate.spec.template.spec.restartPolicy: Required value: valid values: "OnFailure", "Never"'],
    ),
    (
        "cron name length",
        "batch",
        "CronJob",
        put(cron_job(), "metadata.name", "x" * 53),
        [f'metadata.name: Invalid value: "{"x" * 53}": must be no more than 52 characters'],
    ),
    # Service
    ("service ports required", "", "Service", service(ports=[]), ["spec.ports: Required value"]),
    (
        "service ports",
        "",
        "Service",
        service(
            ports=[
                {"port": 0, "protocol": "TCP", "targetPort": 80},
                {"name": "a", "port": 81, "protocol": "TCP", "targetPort": 0},
                {"name": "a", "port": 81, "protocol": "TCP", "targetPort": "x_y"},
            ]
        ),
        [
            "spec.ports[0].name: Required value",
            "spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive",
            "spec.ports[1].targetPort: Invalid value: 0: must be between 1 and 65535, inclusive",
            'spec.ports[2].name: Duplicate value: "a"',
            'spec.ports[2].targetPort: Invalid value: "x_y": must contain only alpha-numeric characters (a-z, 0-9), and '
            "hyphens (-)",
            'spec.ports[2]: Duplicate value: core.ServicePort{Protocol:"TCP", Port:81}',
        ],
    ),
    (
        "service type",
        "",
        "Service",
        service(type="Internal"),
        [
            'spec.type: Unsupported value: "Internal": supported values: "ClusterIP", "ExternalName", "LoadBalancer", '
            '"NodePort"'
        ],
    ),
    (
        "node port on ClusterIP",
        "",
        "Service",
        service(ports=[{"port": 80, "protocol": "TCP", "targetPort": 80, "nodePort": 30080}]),
        ["spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'"],
    ),
    (
        "node port range",
        "",
        "Service",
        service(
            type="NodePort",
            externalTrafficPolicy="Cluster",
            ports=[{"port": 80, "protocol": "TCP", "targetPort": 80, "nodePort": 8080}],
        ),
        [
            "spec.ports[0].nodePort: Invalid value: 8080: provided port is not in the valid range. The range of valid "
            "ports is 30000-32767"
        ],
    ),
    (
        "cluster ip",
        "",
        "Service",
        service(clusterIP="10.0.0.300", clusterIPs=["10.0.0.300"]),
        [
            'spec.clusterIPs[0]: Invalid value: "10.0.0.300": must be a valid IP address, (e.g. 10.9.8.7 or '
            "2001:db8::ffff)"
        ],
    ),
    (
        "session affinity",
        "",
        "Service",
        service(sessionAffinity="Sticky"),
        ['spec.sessionAffinity: Unsupported value: "Sticky": supported values: "ClientIP", "None"'],
    ),
    (
        "load balancer",
        "",
        "Service",
        service(type="LoadBalancer", externalTrafficPolicy="Cluster"),
        ["allocateLoadBalancerNodePorts: Required value"],
    ),
    (
        "selector labels",
        "",
        "Service",
        service(selector={"app": "a b"}),
        [
            'spec.selector: Invalid value: "a b": a valid label must be an empty string or consist of alphanumeric '
            "characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or "
            "'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
        ],
    ),
    # other core kinds
    (
        "endpoints",
        "",
        "Endpoints",
        {
            "metadata": meta(),
            "subsets": [
                {
                    "addresses": [{"ip": "127.0.0.1"}],
                    "ports": [{"port": 80, "protocol": "TCP"}, {"port": 81, "protocol": "TCP"}],
                }
            ],
        },
        [
            'subsets[0].addresses[0].ip: Invalid value: "127.0.0.1": may not be in the loopback range (127.0.0.0/8, ::1/128)',
            "subsets[0].ports[0].name: Required value",
            "subsets[0].ports[1].name: Required value",
        ],
    ),
    (
        "secret keys",
        "",
        "Secret",
        {"metadata": meta(), "type": "Opaque", "data": {"a b": "eA=="}},
        [
            "data[a b]: Invalid value: \"a b\": a valid config key must consist of alphanumeric characters, '-', '_' or "
            "'.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')"
        ],
    ),
    (
        "secret size",
        "",
        "Secret",
        {"metadata": meta(), "type": "Opaque", "stringData": {"big": "x" * (1 << 20 | 1)}},
        ["data: Too long: must have at most 1048576 bytes"],
    ),
    (
        "tls secret",
        "",
        "Secret",
        {"metadata": meta(), "type": "kubernetes.io/tls", "data": {"tls.crt": "eA=="}},
        ["data[tls.key]: Required value"],
    ),
    (
        "configmap",
        "",
        "ConfigMap",
        {"metadata": meta(), "data": {"..x": "1", "ok": "2"}, "binaryData": {"ok": "eA=="}},
        [
            "data[..x]: Invalid value: \"..x\": must not start with '..'",
            'data[ok]: Invalid value: "ok": duplicate of key present in binaryData',
        ],
    ),
    (
        "pvc",
        "",
        "PersistentVolumeClaim",
        {"metadata": meta(), "spec": {"accessModes": [], "resources": {}}},
        [
            "spec.accessModes: Required value: at least 1 access mode is required",
            "spec.resources[storage]: Required value",
        ],
    ),
    (
        "pvc access mode",
        "",
        "PersistentVolumeClaim",
        {
            "metadata": meta(),
            "spec": {"accessModes": ["ReadWriteSometimes"], "resources": {"requests": {"storage": "0"}}},
        },
        [
            'spec.accessModes: Unsupported value: "ReadWriteSometimes": supported values: "ReadOnlyMany", "ReadWriteMany", '
            '"ReadWriteOnce", "ReadWriteOncePod"',
            'spec.resources[storage]: Invalid value: "0": must be greater than zero',
        ],
    ),
    (
        "pv",
        "",
        "PersistentVolume",
        {
            "metadata": meta("pv1", namespace=None),
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "capacity": {"storage": "1Gi"},
                "persistentVolumeReclaimPolicy": "Retain",
            },
        },
        ["spec: Required value: must specify a volume type"],
    ),
    (
        "resource quota",
        "",
        "ResourceQuota",
        {"metadata": meta(), "spec": {"hard": {"pods": "1.5", "widgets": "1"}}},
        [
            "spec.hard[pods]: Invalid value: 1500m: must be an integer",
            'spec.hard[widgets]: Invalid value: "widgets": must be a standard resource type or fully qualified',
            'spec.hard[widgets]: Invalid value: "widgets": must be a standard resource for quota',
        ],
    ),
    (
        "limit range",
        "",
        "LimitRange",
        {"metadata": meta(), "spec": {"limits": [{"type": "Container", "min": {"cpu": "1"}, "max": {"cpu": "500m"}}]}},
        ["spec.limits[0].min[cpu]: Invalid value: 1: min value 1 is greater than max value 500m"],
    ),
    (
        "event namespace",
        "",
        "Event",
        {
            "metadata": meta("e1", namespace="team"),
            "involvedObject": {"kind": "Pod", "name": "p", "namespace": "other"},
        },
        ['involvedObject.namespace: Invalid value: "other": does not match event.namespace'],
    ),
    # other groups
    (
        "ingress",
        "networking.k8s.io",
        "Ingress",
        {
            "metadata": meta(),
            "spec": {
                "rules": [
                    {
                        "host": "10.0.0.1",
                        "http": {
                            "paths": [
                                {
                                    "path": "x",
                                    "pathType": "Prefix",
                                    "backend": {"service": {"name": "s", "port": {"number": 80}}},
                                },
                                {"path": "/", "backend": {"service": {"name": "s", "port": {"number": 80}}}},
                            ]
                        },
                    }
                ]
            },
        },
        [
            'spec.rules[0].host: Invalid value: "10.0.0.1": must be a DNS name, not an IP address',
            'spec.rules[0].http.paths[0].path: Invalid value: "x": must be an absolute path',
            "spec.rules[0].http.paths[1].pathType: Required value: pathType must be specified",
        ],
    ),
    (
        "ingress without rules",
        "networking.k8s.io",
        "Ingress",
        {"metadata": meta(), "spec": {}},
        ["spec: Invalid value: []networking.IngressRule(nil): either `defaultBackend` or `rules` must be specified"],
    ),
    (
        "network policy",
        "networking.k8s.io",
        "NetworkPolicy",
        {
            "metadata": meta(),
            "spec": {"podSelector": {}, "ingress": [{"from": [{}]}], "policyTypes": ["Ingress", "Sideways"]},
        },
        [
            "spec.ingress[0].from[0]: Required value: must specify a peer",
            'spec.policyTypes[1]: Unsupported value: "Sideways": supported values: "Ingress", "Egress"',
        ],
    ),
    (
        "hpa",
        "autoscaling",
        "HorizontalPodAutoscaler",
        {
            "apiVersion": "autoscaling/v1",
            "metadata": meta(),
            "spec": {
                "minReplicas": 3,
                "maxReplicas": 2,
                "scaleTargetRef": {"kind": "Deployment"},
                "targetCPUUtilizationPercentage": 0,
            },
        },
        [
            "spec.maxReplicas: Invalid value: 2: must be greater than or equal to `minReplicas`",
            "spec.scaleTargetRef.name: Required value",
            "spec.metrics[0].resource.target.averageUtilization: Invalid value: 0: must be greater than 0",
        ],
    ),
    (
        "storage class",
        "storage.k8s.io",
        "StorageClass",
        {"metadata": meta("fast", namespace=None), "volumeBindingMode": "Immediate"},
        ["provisioner: Required value"],
    ),
    (
        "role",
        "rbac.authorization.k8s.io",
        "Role",
        {"metadata": meta("a/b"), "rules": [{"apiGroups": [""]}]},
        [
            "metadata.name: Invalid value: \"a/b\": may not contain '/'",
            "rules[0].verbs: Required value: verbs must contain at least one value",
            "rules[0].resources: Required value: resource rules must supply at least one resource",
        ],
    ),
    (
        "cluster role binding",
        "rbac.authorization.k8s.io",
        "ClusterRoleBinding",
        {
            "metadata": meta("admins", namespace=None),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "admin"},
            "subjects": [{"kind": "ServiceAccount", "name": "sa"}, {"kind": "Robot", "name": "r"}],
        },
        [
            'roleRef.kind: Unsupported value: "Role": supported values: "ClusterRole"',
            "subjects[0].namespace: Required value",
            'subjects[1].kind: Unsupported value: "Robot": supported values: "ServiceAccount", "User", "Group"',
        ],
    ),
    (
        "pdb",
        "policy",
        "PodDisruptionBudget",
        {"metadata": meta("a_b"), "spec": {"minAvailable": 1, "maxUnavailable": 1}},
        [
            "spec: Invalid value: policy.PodDisruptionBudgetSpec{MinAvailable:1, MaxUnavailable:1}: minAvailable and "
            "maxUnavailable cannot be both set"
        ],
    ),
    (
        "pdb name is a path segment",
        "policy",
        "PodDisruptionBudget",
        {"metadata": meta("a%b"), "spec": {"minAvailable": 1}},
        ["metadata.name: Invalid value: \"a%b\": may not contain '%'"],
    ),
    (
        "lease",
        "coordination.k8s.io",
        "Lease",
        {"metadata": meta(), "spec": {"leaseDurationSeconds": 0}},
        ["spec.leaseDurationSeconds: Invalid value: 0: must be greater than 0"],
    ),
    (
        "endpoint slice",
        "discovery.k8s.io",
        "EndpointSlice",
        {"metadata": meta(), "addressType": "IPv5", "endpoints": [{"addresses": []}]},
        [
            'addressType: Unsupported value: "IPv5": supported values: "FQDN", "IPv4", "IPv6"',
            "endpoints[0].addresses: Required value: must contain at least 1 address",
        ],
    ),
]


@pytest.mark.parametrize("what, group, kind, obj, expected", CASES, ids=[c[0] for c in CASES])
def test_bad_objects(what, group, kind, obj, expected):
    assert messages(group, kind, obj) == expected


def test_errors_render_for_the_invalid_status():
    from ketch.api import errors

    err = errors.invalid(
        "apps", "Deployment", "web", validation.validate("apps", "Deployment", deployment(replicas=-1))
    )
    assert err.code == 422
    assert (
        err.message
        == 'Deployment.apps "web" is invalid: spec.replicas: Invalid value: -1: must be greater than or equal to 0'
    )
    assert err.details["causes"] == [
        {
            "reason": "FieldValueInvalid",
            "field": "spec.replicas",
            "message": "Invalid value: -1: must be greater than or equal to 0",
        }
    ]


def test_validators_compose_along_the_schema():
    # The PodTemplateSpec validator runs wherever a PodTemplateSpec appears, e.g. in a PodTemplate.
    obj = {"metadata": meta(), "template": template(containers=[container(name="")])}
    assert messages("", "PodTemplate", obj) == ["template.spec.containers[0].name: Required value"]
    # ...and registered nested validators are reached by the generic descent of a definition without one.
    from ketch.api import schema

    spec = {"selector": {"matchLabels": {"a": "-"}}, "template": template(containers=[])}
    assert [e.message() for e in validation.check(spec, schema.node("io.k8s.api.apps.v1.DeploymentSpec"), "spec")] == [
        'spec.selector.matchLabels: Invalid value: "-": a valid label must be an empty string or consist of '
        "alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. "
        "'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?"
        "[A-Za-z0-9])?')",
        "spec.template.spec.containers: Required value",
    ]


# --- updates --------------------------------------------------------------------------------------------------


def stored(obj: dict) -> dict:
    obj = copy.deepcopy(obj)
    obj["metadata"].update(resourceVersion="5", uid="u1", creationTimestamp="2024-01-01T00:00:00Z")
    return obj


def test_update_of_immutable_metadata():
    old = stored(pod())
    new = put(put(old, "metadata.name", "web2"), "metadata.uid", "u2")
    assert messages("", "Pod", new, old) == [
        'metadata.name: Invalid value: "web2": field is immutable',
        'metadata.uid: Invalid value: "u2": field is immutable',
    ]


def test_update_needs_a_resource_version():
    old = stored(pod())
    assert messages("", "Pod", put(old, "metadata.resourceVersion", ""), old) == [
        'metadata.resourceVersion: Invalid value: "": must be specified for an update'
    ]


def test_pod_update_allows_images_only():
    old = stored(pod())
    assert messages("", "Pod", put(old, "spec.containers[0].image", "nginx:2"), old) == []
    changed = messages("", "Pod", put(old, "spec.restartPolicy", "Never"), old)
    assert len(changed) == 1
    assert changed[0].startswith(
        "spec: Forbidden: pod updates may not change fields other than `spec.containers[*].image`,"
        "`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing "
        "tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)\n"
    )
    assert messages("", "Pod", put(old, "spec.containers", [container(), container(name="d")]), old) == [
        "spec.containers: Forbidden: pod updates may not add or remove containers"
    ]


def status_messages(obj: dict, old: dict) -> list[str]:
    return [e.message() for e in validation.validate("", "Pod", obj, old, subresource="status")]


def test_pod_status_update_checks_the_status_not_the_spec():
    old = stored(pod())
    old["spec"]["containers"][0]["image"] = ""  # the stored spec is the status strategy's: not checked again
    running = put(old, "status", {"phase": "Running", "podIP": "10.42.0.5", "podIPs": [{"ip": "10.42.0.5"}],
                                  "conditions": [{"type": "Ready", "status": "True"},
                                                 {"type": "example.com/gate", "status": "True"}]})
    assert status_messages(running, old) == []
    assert messages("", "Pod", running, old) != []  # a main-resource update checks the spec
    bad = put(running, "status.podIPs", [{"ip": "10.42.0.300"}, {"ip": "10.42.0.6"}])
    bad = put(bad, "status.conditions", [{"type": "not a name!", "status": "True"}])
    bad = put(bad, "status.nominatedNodeName", "Node_1")
    assert status_messages(bad, old) == [
        'metadata.conditions[0].Type: Invalid value: "not a name!": name part must consist of alphanumeric characters, '
        "'-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or "
        "'123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')",
        'status.nominatedNodeName: Invalid value: "Node_1": a lowercase RFC 1123 subdomain must consist of lower '
        "case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. "
        "'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
        'status.podIPs[0]: Invalid value: "10.42.0.300": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)',
    ]
    two_v4 = put(running, "status.podIPs", [{"ip": "10.42.0.5"}, {"ip": "10.42.0.6"}])
    assert status_messages(two_v4, old) == [
        'status.podIPs: Invalid value: []core.PodIP{core.PodIP{IP:"10.42.0.5"}, core.PodIP{IP:"10.42.0.6"}}: '
        "may specify no more than one IP for each IP family"]
    assert status_messages(put(running, "status.podIPs", [{"ip": "10.42.0.5"}, {"ip": "fd00::5"}]), old) == []
    on_node = put(put(running, "status.hostIP", "172.30.0.2"), "status.hostIPs", [{"ip": "172.30.0.2"}])
    assert status_messages(on_node, old) == []
    assert status_messages(put(on_node, "status.hostIP", "172.30.0.3"), old) == [
        'status.hostIPs[0].ip: Invalid value: "172.30.0.2": must be equal to `hostIP`']


def test_pod_status_update_keeps_finished_containers_finished():
    done = {"name": "web", "state": {"terminated": {"exitCode": 0}}}
    failed = {"name": "web", "state": {"terminated": {"exitCode": 1}}}
    again = {"name": "web", "state": {"running": {"startedAt": "2024-01-01T00:00:01Z"}}}
    for policy, old_status, allowed in (("Never", done, False), ("Never", failed, False), ("OnFailure", done, False),
                                        ("OnFailure", failed, True), ("Always", done, True)):
        old = stored(pod(restartPolicy=policy))
        old["status"] = {"containerStatuses": [old_status]}
        found = status_messages(put(old, "status.containerStatuses", [again]), old)
        assert found == ([] if allowed else [
            "status.containerStatuses[0].state: Forbidden: may not be transitioned to non-terminated state"]), policy


def test_pod_update_tolerations_and_deadline():
    old = stored(pod(tolerations=[{"key": "a", "operator": "Exists"}], activeDeadlineSeconds=60))
    assert (
        messages(
            "",
            "Pod",
            put(old, "spec.tolerations", [{"key": "a", "operator": "Exists"}, {"key": "b", "operator": "Exists"}]),
            old,
        )
        == []
    )
    assert messages("", "Pod", put(old, "spec.tolerations", []), old) == [
        "spec.tolerations: Forbidden: existing toleration can not be modified except its tolerationSeconds"
    ]
    assert messages("", "Pod", put(old, "spec.activeDeadlineSeconds", 120), old) == [
        "spec.activeDeadlineSeconds: Invalid value: 120: must be less than or equal to previous value"
    ]


def test_workload_selectors_are_immutable_in_apps_v1():
    old = stored(deployment())
    new = put(put(old, "spec.selector.matchLabels.app", "web2"), "spec.template.metadata.labels.app", "web2")
    assert messages("apps", "Deployment", new, old) == [
        'spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{"app":"web2"}, '
        "MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is immutable"
    ]
    # extensions/v1beta1 kept them mutable
    assert validation.validate("apps", "Deployment", new, old, request_group="extensions") == []
    assert messages("apps", "Deployment", put(old, "spec.replicas", 5), old) == []


def test_statefulset_spec_update_is_limited():
    sts = {
        "metadata": meta(),
        "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": template(),
            "podManagementPolicy": "OrderedReady",
            "serviceName": "web",
            "updateStrategy": {"type": "RollingUpdate"},
            "replicas": 1,
        },
    }
    old = stored(sts)
    assert messages("apps", "StatefulSet", put(old, "spec.replicas", 3), old) == []
    assert messages("apps", "StatefulSet", put(old, "spec.serviceName", "other"), old) == [
        "spec: Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', "
        "'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden"
    ]


def test_job_template_is_immutable():
    old = stored(job())
    new = put(old, "spec.template.spec.containers[0].image", "busybox")
    errs = messages("batch", "Job", new, old)
    assert len(errs) == 1 and errs[0].startswith("spec.template: Invalid value: core.PodTemplateSpec{")
    assert errs[0].endswith(": field is immutable")


def test_immutable_configmaps_and_secrets():
    cm = stored({"metadata": meta(), "data": {"a": "1"}, "immutable": True})
    assert messages("", "ConfigMap", put(cm, "data.a", "2"), cm) == [
        "data: Forbidden: field is immutable when `immutable` is set"
    ]
    assert messages("", "ConfigMap", put(cm, "immutable", False), cm) == [
        "immutable: Forbidden: field is immutable when `immutable` is set"
    ]
    secret = stored({"metadata": meta(), "type": "Opaque", "data": {"a": "eA=="}})
    assert messages("", "Secret", put(secret, "type", "example.com/custom"), secret) == [
        'type: Invalid value: "example.com/custom": field is immutable'
    ]


def test_service_cluster_ip_cannot_change():
    old = stored(
        service(clusterIP="10.96.0.10", clusterIPs=["10.96.0.10"], ipFamilies=["IPv4"], ipFamilyPolicy="SingleStack")
    )
    new = put(put(old, "spec.clusterIP", "10.96.0.11"), "spec.clusterIPs", ["10.96.0.11"])
    assert messages("", "Service", new, old) == [
        'spec.clusterIPs[0]: Invalid value: []string{"10.96.0.11"}: may not change once set'
    ]


def test_prepare_service_keeps_allocated_values_on_replace():
    old = stored(
        service(
            type="NodePort",
            externalTrafficPolicy="Cluster",
            clusterIP="10.96.0.10",
            clusterIPs=["10.96.0.10"],
            ports=[{"port": 80, "protocol": "TCP", "targetPort": 80, "nodePort": 30080}],
        )
    )
    new = put(put(put(old, "spec.clusterIP", DELETE), "spec.clusterIPs", DELETE), "spec.ports[0].nodePort", DELETE)
    validation.prepare("", "Service", new, old)
    assert new["spec"]["clusterIPs"] == ["10.96.0.10"] and new["spec"]["ports"][0]["nodePort"] == 30080
    assert messages("", "Service", new, old) == []


def test_prepare_headless_service():
    svc = service(clusterIP="None")
    assert messages("", "Service", svc) == ["spec.clusterIPs: Required value"]
    validation.prepare("", "Service", svc)
    assert svc["spec"]["clusterIPs"] == ["None"] and messages("", "Service", svc) == []


def test_rolebinding_role_ref_is_immutable():
    binding = stored(
        {
            "metadata": meta(),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "a"},
            "subjects": [],
        }
    )
    errs = messages("rbac.authorization.k8s.io", "RoleBinding", put(binding, "roleRef.name", "b"), binding)
    assert (
        len(errs) == 1
        and errs[0].startswith("roleRef: Invalid value: ")
        and errs[0].endswith(": cannot change roleRef")
    )


# --- cron parsing --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "schedule, error",
    [
        ("*/5 * * * *", None),
        ("0 0 * * sun-sat", None),
        ("@hourly", None),
        ("@every 1h30m", None),
        ("0 0 1,15 jan,jul ?", None),
        ("* * * *", "expected exactly 5 fields, found 4: [* * * *]"),
        ("a * * * *", 'failed to parse int from a: strconv.Atoi: parsing "a": invalid syntax'),
        ("5-1 * * * *", "beginning of range (5) beyond end of range (1): 5-1"),
        ("*/0 * * * *", "step of range should be a positive number: */0"),
        ("0 0 0 * *", "beginning of range (0) below minimum (1): 0"),
        ("@weekday", "unrecognized descriptor: @weekday"),
    ],
)
def test_cron_schedule_errors(schedule, error):
    assert validation.cron_schedule_error(schedule) == error


# --- the book's manifests -------------------------------------------------------------------------------------

CURRENT_VERSIONS = {"v1", "batch/v1", "autoscaling/v1"}
# What a real 1.35 apiserver rejects in these manifests (the book predates the check or uses placeholders).
BOOK_REJECTIONS = {
    "Chapter02/nodejs2-controller.json": [
        'spec.template.spec.containers[0].ports[0].name: Invalid value: "nodejsPort": must contain only '
        "alpha-numeric characters (a-z, 0-9), and hyphens (-)"
    ],
    "Chapter03/nodejs-custom-endpoint.yaml": [
        'subsets[0].addresses[0].ip: Invalid value: "<ENTER IP TO POINT SERVICE TO>": must be a valid IP address, '
        "(e.g. 10.9.8.7 or 2001:db8::ffff)",
        'subsets[0].addresses[0].ip: Invalid value: "<ENTER IP TO POINT SERVICE TO>": must be a valid IP address',
    ],
}


def book_documents() -> list[tuple[str, dict]]:
    docs = []
    for path in sorted(BOOK.rglob("*")):
        if path.suffix not in (".yaml", ".yml", ".json"):
            continue
        text = path.read_text()
        loaded = [json.loads(text)] if path.suffix == ".json" else [d for d in yaml.safe_load_all(text) if d]
        docs += [(str(path.relative_to(BOOK)), d) for d in loaded if d.get("apiVersion") in CURRENT_VERSIONS]
    return docs


def as_the_server_would_store(doc: dict) -> tuple[str, dict]:
    """Decode (ignoring unknown fields), default, and prepare a manifest as the apiserver does."""
    defaults = pytest.importorskip("ketch.api.defaults")
    group, _, version = doc["apiVersion"].rpartition("/")
    resource = kinds.by_kind(group, version, doc["kind"])
    obj = copy.deepcopy(doc)
    assert decode.decode_body(obj, resource.schema, strict=False).type_errors == []
    defaults.apply_defaults(obj, resource.schema)
    obj["metadata"].setdefault("uid", "5f1c2d3e-0000-4000-8000-000000000001")
    if resource.namespaced:
        obj["metadata"].setdefault("namespace", "default")
    validation.prepare(group, doc["kind"], obj)
    return group, obj


@pytest.mark.skipif(not BOOK.is_dir(), reason="book examples not present")
@pytest.mark.parametrize("name, doc", book_documents(), ids=lambda v: v if isinstance(v, str) else v["kind"])
def test_book_manifests_validate_after_defaults(name, doc):
    group, obj = as_the_server_would_store(doc)
    assert messages(group, doc["kind"], obj) == BOOK_REJECTIONS.get(name, [])


@pytest.mark.skipif(not BOOK.is_dir(), reason="book examples not present")
def test_book_manifests_are_found():
    names = {name for name, _ in book_documents()}
    assert len(names) >= 50 and set(BOOK_REJECTIONS) <= names


def test_legacy_pod_security_policy_rules():
    from ketch.api import schema

    psp = (
        json.loads((BOOK / "Chapter10/default-security-policy.json").read_text())
        if BOOK.is_dir()
        else {
            "metadata": {"name": "default"},
            "spec": {
                "seLinux": {"rule": "RunAsAny"},
                "runAsUser": {"rule": "RunAsAny"},
                "supplementalGroups": {"rule": "RunAsAny"},
                "fsGroup": {"rule": "RunAsAny"},
                "volumes": ["*"],
            },
        }
    )
    psp_node = schema.Node({}, "io.k8s.api.policy.v1beta1.PodSecurityPolicy")
    assert validation.check(psp, psp_node, "") == []
    bad = put(put(psp, "spec.runAsUser.rule", "Root"), "spec.volumes", ["hostPaths"])
    assert [e.message() for e in validation.check(bad, psp_node, "")][0] == (
        'spec.runAsUser.rule: Unsupported value: "Root": supported values: "MustRunAs", "MustRunAsNonRoot", "RunAsAny"'
    )


def test_endpoint_slices_reject_special_addresses():
    slice_ = {
        "metadata": meta(),
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["127.0.0.1", "10.0.0.300"]}],
        "ports": [{"name": "http", "port": 80, "protocol": "TCP"}],
    }
    assert messages("discovery.k8s.io", "EndpointSlice", slice_) == [
        'endpoints[0].addresses[0]: Invalid value: "127.0.0.1": may not be in the loopback range '
        "(127.0.0.0/8, ::1/128)",
        'endpoints[0].addresses[1]: Invalid value: "10.0.0.300": must be a valid IPv4 address',
    ]


def test_node_pod_cidr_is_set_once():
    node = stored({"metadata": meta("node-1", namespace=None), "spec": {"podCIDRs": ["10.244.0.0/24"]}})
    assert messages("", "Node", put(node, "spec.podCIDRs", ["10.244.1.0/24"]), node) == [
        'spec.podCIDRs: Forbidden: node updates may not change podCIDR except from "" to valid'
    ]
    assert messages("", "Node", put(node, "spec.podCIDRs", ["10.244.0.0/33"]), node)[0] == (
        'spec.podCIDRs[0]: Invalid value: "10.244.0.0/33": must be a valid CIDR value, (e.g. 10.9.8.0/24 or '
        "2001:db8::/64)"
    )


@pytest.mark.parametrize("rule", validation._PATH_SAFE_NAME_RULES, ids=lambda r: r.__name__)
@pytest.mark.parametrize("name", [".", "..", "a/b", "a%b", "web/", "%"])
def test_name_rules_that_spare_the_generic_metadata_check_reject_what_a_path_segment_rejects(rule, name) -> None:
    # validate() skips the generic ObjectMeta check (path-segment names) on a create when the
    # kind's own check passed the same metadata with one of these rules; that is only sound if
    # each of them refuses every name and generateName a path segment refuses.
    assert names_mod.validate_path_segment_name(name, False)
    assert rule(name, False)
    if names_mod.validate_path_segment_name(name, True):
        assert rule(name, True)


def test_create_metadata_errors_come_from_the_kinds_own_check_or_the_generic_one() -> None:
    bad = pod()
    bad["metadata"]["labels"] = {"bad key!": "x"}
    assert [p.field for p in validation.validate("", "Pod", bad)] == ["metadata.labels"]
    role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": "a/b", "namespace": "default"}, "rules": []}
    assert any(p.field == "metadata.name" for p in validation.validate("rbac.authorization.k8s.io", "Role", role))
    assert validation.validate("", "Pod", pod()) == []
