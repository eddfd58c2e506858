"""Defaulting: the book's manifests in, what a 1.35 apiserver stores (and `kubectl get -o yaml` shows) out.

Expectations follow upstream's defaulters (pkg/apis/*/v1/defaults.go and the generated
zz_generated.defaults.go), the REST strategies' PrepareForCreate, and the JSON the apiserver
writes for Go value-typed structs (`resources: {}`). What other parts of the server add (cluster
IP, node ports, service account, admission) is not part of these objects.
"""
from __future__ import annotations

import copy
import re
import textwrap

import pytest
import yaml

from helpers.cluster import BOOK
from ketch.api import defaults, schema

CORE = "io.k8s.api.core.v1."
UID = "0a4f3c3e-7f5b-4d2c-9a51-3c7a1a0e2b10"


def book(path: str) -> dict:
    file = BOOK / path
    if not file.exists():
        pytest.skip(f"book examples not found at {BOOK}")
    return yaml.safe_load(file.read_text())


def y(text: str) -> dict:
    return yaml.safe_load(text)


def defaulted(obj: dict, definition: str) -> dict:
    obj = copy.deepcopy(obj)
    defaults.apply_defaults(obj, schema.node(definition))
    return obj


# What every defaulted pod spec below has besides its containers, volumes and enableServiceLinks.
POD_SPEC_DEFAULTS = """\
dnsPolicy: ClusterFirst
restartPolicy: Always
schedulerName: default-scheduler
securityContext: {}
terminationGracePeriodSeconds: 30
"""
IN_POD = textwrap.indent(POD_SPEC_DEFAULTS, " " * 2)
IN_TEMPLATE = textwrap.indent(POD_SPEC_DEFAULTS, " " * 6)

BOOK_CASES = [
    ("Chapter02/nodejs-controller.yaml", CORE + "ReplicationController", """
apiVersion: v1
kind: ReplicationController
metadata: {name: node-js, labels: {name: node-js}}
spec:
  replicas: 3
  selector: {name: node-js}
  template:
    metadata: {labels: {name: node-js}}
    spec:
      containers:
      - name: node-js
        image: jonbaier/node-express-info:latest
        imagePullPolicy: Always
        ports: [{containerPort: 80, protocol: TCP}]
        resources: {}
        terminationMessagePath: /dev/termination-log
        terminationMessagePolicy: File
""" + IN_TEMPLATE),
    # Limits only, in a template: requests are defaulted from limits in Pods, not templates.
    ("Chapter02/nodejs-constraints-controller.yaml", CORE + "ReplicationController", """
apiVersion: v1
kind: ReplicationController
metadata: {name: node-js-constraints, labels: {name: node-js-constraints}}
spec:
  replicas: 3
  selector: {name: node-js-constraints}
  template:
    metadata: {labels: {name: node-js-constraints}}
    spec:
      containers:
      - name: node-js-constraints
        image: jonbaier/node-express-info:latest
        imagePullPolicy: Always
        ports: [{containerPort: 80, protocol: TCP}]
        resources: {limits: {memory: 512Mi, cpu: 1500m}}
        terminationMessagePath: /dev/termination-log
        terminationMessagePolicy: File
""" + IN_TEMPLATE),
    ("Chapter03/nodejs-service-nodePort.yaml", CORE + "Service", """
apiVersion: v1
kind: Service
metadata: {name: node-js-nodeport, labels: {name: node-js-nodeport}}
spec:
  externalTrafficPolicy: Cluster
  internalTrafficPolicy: Cluster
  ports: [{port: 80, nodePort: 30001, protocol: TCP, targetPort: 80}]
  selector: {name: node-js}
  sessionAffinity: None
  type: NodePort
"""),
    ("Chapter04/pod-AB-service.yaml", CORE + "Service", """
apiVersion: v1
kind: Service
metadata: {name: node-js-scale-ab, labels: {service: node-js-scale-ab}}
spec:
  allocateLoadBalancerNodePorts: true
  externalTrafficPolicy: Cluster
  internalTrafficPolicy: Cluster
  ports: [{port: 80, protocol: TCP, targetPort: 80}]
  selector: {service: node-js-scale-ab}
  sessionAffinity: ClientIP
  sessionAffinityConfig: {clientIP: {timeoutSeconds: 10800}}
  type: LoadBalancer
"""),
    ("Chapter03/nodejs-custom-service.yaml", CORE + "Service", """
apiVersion: v1
kind: Service
metadata: {name: custom-service}
spec:
  allocateLoadBalancerNodePorts: true
  externalTrafficPolicy: Cluster
  internalTrafficPolicy: Cluster
  ports: [{name: http, protocol: TCP, port: 80, targetPort: 80}]
  sessionAffinity: None
  type: LoadBalancer
"""),
    ("Chapter06/storage-memory.yaml", CORE + "Pod", """
apiVersion: v1
kind: Pod
metadata: {name: memory-pd}
spec:
  containers:
  - image: nginx:latest
    imagePullPolicy: Always
    name: memory-pd
    ports: [{containerPort: 80, protocol: TCP}]
    resources: {}
    terminationMessagePath: /dev/termination-log
    terminationMessagePolicy: File
    volumeMounts: [{mountPath: /memory-pd, name: memory-volume}]
  enableServiceLinks: true
  volumes: [{name: memory-volume, emptyDir: {medium: Memory}}]
""" + IN_POD),
    ("Chapter02/nodejs-pod-health.yaml", CORE + "Pod", """
apiVersion: v1
kind: Pod
metadata: {name: node-js-pod}
spec:
  containers:
  - name: node-js-pod
    image: jonbaier/node-express-info:latest
    imagePullPolicy: Always
    ports: [{containerPort: 80, protocol: TCP}]
    livenessProbe:
      httpGet: {path: /, port: 80, scheme: HTTP}
      initialDelaySeconds: 30
      timeoutSeconds: 1
      periodSeconds: 10
      successThreshold: 1
      failureThreshold: 3
    readinessProbe:
      httpGet: {path: /status/, port: 80, scheme: HTTP}
      initialDelaySeconds: 30
      timeoutSeconds: 1
      periodSeconds: 10
      successThreshold: 1
      failureThreshold: 3
    resources: {}
    terminationMessagePath: /dev/termination-log
    terminationMessagePolicy: File
  enableServiceLinks: true
""" + IN_POD),
    ("Chapter10/secret-pod.yaml", CORE + "Pod", """
apiVersion: v1
kind: Pod
metadata: {name: secret-pod}
spec:
  containers:
  - name: secret-pod
    image: jonbaier/node-express-info:latest
    imagePullPolicy: Always
    ports: [{containerPort: 80, name: web, protocol: TCP}]
    resources: {}
    terminationMessagePath: /dev/termination-log
    terminationMessagePolicy: File
    volumeMounts: [{name: secret-volume, mountPath: /etc/secret-phrases}]
  enableServiceLinks: true
  volumes: [{name: secret-volume, secret: {secretName: secret-phrases, defaultMode: 420}}]
""" + IN_POD),
    ("Chapter10/nodejs-pod-psc.yaml", CORE + "Pod", """
apiVersion: v1
kind: Pod
metadata: {name: node-js-psc}
spec:
  containers:
  - name: node-js-psc
    image: jonbaier/node-express-info:latest
    imagePullPolicy: Always
    ports: [{containerPort: 80, protocol: TCP}]
    resources: {}
    terminationMessagePath: /dev/termination-log
    terminationMessagePolicy: File
  dnsPolicy: ClusterFirst
  enableServiceLinks: true
  restartPolicy: Always
  schedulerName: default-scheduler
  securityContext: {runAsNonRoot: true}
  terminationGracePeriodSeconds: 30
"""),
    # A lifecycle hook's httpGet is an HTTPGetAction like a probe's: scheme defaults there too.
    ("Chapter02/apache-hooks-controller.yaml", CORE + "ReplicationController", """
apiVersion: v1
kind: ReplicationController
metadata: {name: apache-hook, labels: {name: apache-hook}}
spec:
  replicas: 3
  selector: {name: apache-hook}
  template:
    metadata: {labels: {name: apache-hook}}
    spec:
      containers:
      - name: apache-hook
        image: bitnami/apache:latest
        imagePullPolicy: Always
        ports: [{containerPort: 80, protocol: TCP}]
        lifecycle:
          postStart:
            httpGet: {path: "http://my.registration-server.com/register/", port: 80, scheme: HTTP}
          preStop:
            exec: {command: [/usr/local/bin/apachectl, -k, graceful-stop]}
        resources: {}
        terminationMessagePath: /dev/termination-log
        terminationMessagePolicy: File
""" + IN_TEMPLATE),
    ("Chapter06/pvc-exmaple.yaml", CORE + "PersistentVolumeClaim", """
kind: PersistentVolumeClaim
apiVersion: v1
metadata:
  name: demo-claim
  annotations: {volume.beta.kubernetes.io/storage-class: solidstate}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 1Gi}}
  selector: {matchLabels: {release: aws-storage}}
  volumeMode: Filesystem
status: {phase: Pending}
"""),
    ("Chapter03/test-ns.yaml", CORE + "Namespace", """
apiVersion: v1
kind: Namespace
metadata: {name: test, labels: {kubernetes.io/metadata.name: test}}
status: {phase: Active}
"""),
    ("Chapter05/longtask.yaml", "io.k8s.api.batch.v1.Job", """
apiVersion: batch/v1
kind: Job
metadata: {name: long-task}
spec:
  backoffLimit: 6
  completionMode: NonIndexed
  completions: 1
  manualSelector: false
  parallelism: 1
  podReplacementPolicy: TerminatingOrFailed
  suspend: false
  template:
    metadata: {name: long-task}
    spec:
      containers:
      - name: long-task
        image: docker/whalesay
        command: [cowsay, Finishing that task in a jiffy]
        imagePullPolicy: Always
        resources: {}
        terminationMessagePath: /dev/termination-log
        terminationMessagePolicy: File
      dnsPolicy: ClusterFirst
      restartPolicy: OnFailure
      schedulerName: default-scheduler
      securityContext: {}
      terminationGracePeriodSeconds: 30
"""),
]


@pytest.mark.parametrize("path,definition,expected", BOOK_CASES, ids=[c[0] for c in BOOK_CASES])
def test_book_manifest_defaults(path: str, definition: str, expected: str) -> None:
    assert defaulted(book(path), definition) == y(expected)


@pytest.mark.parametrize("path,definition", [
    ("Chapter03/quota.yaml", CORE + "ResourceQuota"),
    ("Chapter09/configmap-fed.yaml", CORE + "ConfigMap"),
    ("Chapter03/nodejs-custom-endpoint.yaml", CORE + "Endpoints"),
])
def test_kinds_without_defaults_are_left_alone(path: str, definition: str) -> None:
    obj = book(path)
    assert defaulted(obj, definition) == obj


def test_defaulting_twice_changes_nothing() -> None:
    """Upstream defaults again whenever it reads from storage: a second pass must be a no-op."""
    for path, definition, _ in BOOK_CASES:
        once = defaulted(book(path), definition)
        assert defaulted(once, definition) == once, path


def test_defaults_are_copies() -> None:
    first = defaulted(book("Chapter06/storage-memory.yaml"), CORE + "Pod")
    second = defaulted(book("Chapter06/storage-memory.yaml"), CORE + "Pod")
    first["spec"]["securityContext"]["runAsUser"] = 1000
    first["spec"]["containers"][0]["resources"]["limits"] = {"cpu": "1"}
    assert second["spec"]["securityContext"] == {}
    assert second["spec"]["containers"][0]["resources"] == {}
    assert defaults.defaults_for(CORE + "PodSpec").values["securityContext"] == {}


# --- storage-version forms of the book's legacy manifests ---------------------------------------

def as_apps_v1(obj: dict) -> dict:
    """What the legacy conversion hands over: apps/v1, with the selector apps/v1 requires."""
    obj = copy.deepcopy(obj)
    obj["apiVersion"] = "apps/v1"
    obj["spec"]["selector"] = {"matchLabels": dict(obj["spec"]["template"]["metadata"]["labels"])}
    return obj


def test_deployment() -> None:
    out = defaulted(as_apps_v1(book("Chapter05/node-js-deploy.yaml")), "io.k8s.api.apps.v1.Deployment")
    spec = out["spec"]
    assert {k: v for k, v in spec.items() if k != "template"} == y("""
progressDeadlineSeconds: 600
replicas: 1
revisionHistoryLimit: 10
selector: {matchLabels: {name: node-js-deploy}}
strategy:
  type: RollingUpdate
  rollingUpdate: {maxSurge: 25%, maxUnavailable: 25%}
""")
    container = spec["template"]["spec"]["containers"][0]
    assert container["imagePullPolicy"] == "IfNotPresent"  # tagged 0.1
    assert "enableServiceLinks" not in spec["template"]["spec"]


def test_deployment_recreate_and_explicit_values() -> None:
    obj = y("""
spec:
  replicas: 0
  revisionHistoryLimit: 0
  strategy: {type: Recreate}
  template: {spec: {terminationGracePeriodSeconds: 0, containers: [{name: c, image: busybox}]}}
""")
    spec = defaulted(obj, "io.k8s.api.apps.v1.Deployment")["spec"]
    assert spec["strategy"] == {"type": "Recreate"}
    assert (spec["replicas"], spec["revisionHistoryLimit"]) == (0, 0)
    assert spec["template"]["spec"]["terminationGracePeriodSeconds"] == 0
    partial = defaulted(y("spec: {strategy: {rollingUpdate: {maxSurge: 0}}}"), "io.k8s.api.apps.v1.Deployment")
    assert partial["spec"]["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": "25%"}}


def test_statefulset_with_volume_claim_templates() -> None:
    out = defaulted(as_apps_v1(book("Chapter06/sayhey-statefulset.yaml")), "io.k8s.api.apps.v1.StatefulSet")
    spec = out["spec"]
    assert {k: v for k, v in spec.items() if k not in ("template", "volumeClaimTemplates")} == y("""
persistentVolumeClaimRetentionPolicy: {whenDeleted: Retain, whenScaled: Retain}
podManagementPolicy: OrderedReady
replicas: 3
revisionHistoryLimit: 10
selector: {matchLabels: {app: sayhey}}
serviceName: sayhey-svc
updateStrategy:
  type: RollingUpdate
  rollingUpdate: {partition: 0, maxUnavailable: 1}
""")
    assert spec["template"]["spec"]["terminationGracePeriodSeconds"] == 10
    # The claim templates are PersistentVolumeClaims: they get a claim's defaults, status included.
    assert spec["volumeClaimTemplates"] == y("""
- metadata:
    name: www
    annotations: {volume.beta.kubernetes.io/storage-class: solidstate}
  spec:
    accessModes: [ReadWriteOnce]
    resources: {requests: {storage: 1Gi}}
    volumeMode: Filesystem
  status: {phase: Pending}
""")


@pytest.mark.parametrize("strategy,expected", [
    ({"type": "OnDelete"}, {"type": "OnDelete"}),
    ({"type": "RollingUpdate"}, {"type": "RollingUpdate"}),  # no rollingUpdate given, none made
    ({"type": "RollingUpdate", "rollingUpdate": {"partition": 2}},
     {"type": "RollingUpdate", "rollingUpdate": {"partition": 2, "maxUnavailable": 1}}),
])
def test_statefulset_update_strategy(strategy: dict, expected: dict) -> None:
    out = defaulted({"spec": {"updateStrategy": strategy}}, "io.k8s.api.apps.v1.StatefulSet")
    assert out["spec"]["updateStrategy"] == expected


def test_daemonset_and_replicaset() -> None:
    ds = defaulted({"spec": {}}, "io.k8s.api.apps.v1.DaemonSet")["spec"]
    assert ds == {"revisionHistoryLimit": 10,
                  "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}}
    rs = defaulted(as_apps_v1(book("Chapter02/nodejs-labels-replicaset.yaml")), "io.k8s.api.apps.v1.ReplicaSet")
    assert rs["spec"]["replicas"] == 3 and "labels" not in rs["metadata"]  # apps/v1 copies no labels


def test_cronjob() -> None:
    obj = book("Chapter05/cronjob.yaml")
    obj["apiVersion"] = "batch/v1"
    spec = defaulted(obj, "io.k8s.api.batch.v1.CronJob")["spec"]
    assert {k: v for k, v in spec.items() if k != "jobTemplate"} == y("""
concurrencyPolicy: Allow
failedJobsHistoryLimit: 1
schedule: "*/1 * * * *"
successfulJobsHistoryLimit: 3
suspend: false
""")
    # The job template holds a JobSpec, not a Job: the Job-level defaults are not applied to it.
    assert spec["jobTemplate"] == y("""
metadata: {}
spec:
  template:
    metadata: {}
    spec:
      containers:
      - name: scheduled-task
        image: busybox
        args: [/bin/sh, -c, date; echo Hello from the Kubernetes cluster]
        imagePullPolicy: Always
        resources: {}
        terminationMessagePath: /dev/termination-log
        terminationMessagePolicy: File
      dnsPolicy: ClusterFirst
      restartPolicy: OnFailure
      schedulerName: default-scheduler
      securityContext: {}
      terminationGracePeriodSeconds: 30
""")


def test_hpa_v2() -> None:
    hpa = y("""
spec:
  maxReplicas: 6
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: node-js-deploy}
""")
    spec = defaulted(hpa, "io.k8s.api.autoscaling.v2.HorizontalPodAutoscaler")["spec"]
    assert spec["minReplicas"] == 1
    assert spec["metrics"] == [{"type": "Resource", "resource": {
        "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}]
    assert "behavior" not in spec
    hpa["spec"]["behavior"] = {"scaleDown": {"stabilizationWindowSeconds": 60}}
    behavior = defaulted(hpa, "io.k8s.api.autoscaling.v2.HorizontalPodAutoscaler")["spec"]["behavior"]
    assert behavior == y("""
scaleUp:
  stabilizationWindowSeconds: 0
  selectPolicy: Max
  policies: [{type: Pods, value: 4, periodSeconds: 15}, {type: Percent, value: 100, periodSeconds: 15}]
scaleDown:
  stabilizationWindowSeconds: 60
  selectPolicy: Max
  policies: [{type: Percent, value: 100, periodSeconds: 15}]
""")


# --- other groups --------------------------------------------------------------------------------

OTHER_CASES = [
    ("storageclass", "io.k8s.api.storage.v1.StorageClass",
     "{provisioner: kubernetes.io/gce-pd, parameters: {type: pd-ssd}}",
     "{provisioner: kubernetes.io/gce-pd, parameters: {type: pd-ssd}, reclaimPolicy: Delete, volumeBindingMode: Immediate}"),
    ("networkpolicy-egress", "io.k8s.api.networking.v1.NetworkPolicy",
     "{spec: {egress: [{ports: [{port: 53, protocol: UDP}, {port: 443}]}]}}",
     "{spec: {podSelector: {}, policyTypes: [Ingress, Egress],"
     " egress: [{ports: [{port: 53, protocol: UDP}, {port: 443, protocol: TCP}]}]}}"),
    ("networkpolicy-ingress", "io.k8s.api.networking.v1.NetworkPolicy",
     "{spec: {podSelector: {matchLabels: {app: db}}}}",
     "{spec: {podSelector: {matchLabels: {app: db}}, policyTypes: [Ingress]}}"),
    ("ingressclass", "io.k8s.api.networking.v1.IngressClass",
     "{spec: {controller: k8s.io/ingress-nginx, parameters: {kind: Params, name: p}}}",
     "{spec: {controller: k8s.io/ingress-nginx, parameters: {kind: Params, name: p, scope: Cluster}}}"),
    ("rolebinding", "io.k8s.api.rbac.v1.RoleBinding",
     "{roleRef: {kind: Role, name: r}, subjects: [{kind: User, name: u}, {kind: Group, name: g},"
     " {kind: ServiceAccount, name: default, namespace: ns}]}",
     "{roleRef: {kind: Role, name: r, apiGroup: rbac.authorization.k8s.io},"
     " subjects: [{kind: User, name: u, apiGroup: rbac.authorization.k8s.io},"
     " {kind: Group, name: g, apiGroup: rbac.authorization.k8s.io}, {kind: ServiceAccount, name: default, namespace: ns}]}"),
    ("endpointslice", "io.k8s.api.discovery.v1.EndpointSlice",
     "{addressType: IPv4, endpoints: [{addresses: [10.0.0.1]}], ports: [{port: 80}]}",
     "{addressType: IPv4, endpoints: [{addresses: [10.0.0.1], conditions: {}}],"
     " ports: [{port: 80, name: '', protocol: TCP}]}"),
    ("endpoints", CORE + "Endpoints",
     "{subsets: [{addresses: [{ip: 10.0.0.1}], ports: [{port: 80}]}]}",
     "{subsets: [{addresses: [{ip: 10.0.0.1}], ports: [{port: 80, protocol: TCP}]}]}"),
    ("secret", CORE + "Secret", "{data: {k: dg==}}", "{data: {k: dg==}, type: Opaque}"),
    ("persistentvolume-hostpath", CORE + "PersistentVolume",
     "{spec: {capacity: {storage: 1Gi}, accessModes: [ReadWriteOnce], hostPath: {path: /data}}}",
     "{spec: {capacity: {storage: 1Gi}, accessModes: [ReadWriteOnce], hostPath: {path: /data, type: ''},"
     " persistentVolumeReclaimPolicy: Retain, volumeMode: Filesystem}, status: {phase: Pending}}"),
    ("node-allocatable", CORE + "Node",
     "{status: {capacity: {cpu: '2', memory: 4Gi}}}",
     "{status: {capacity: {cpu: '2', memory: 4Gi}, allocatable: {cpu: '2', memory: 4Gi}}}"),
    ("limitrange", CORE + "LimitRange",
     "{spec: {limits: [{type: Container, max: {cpu: '2'}, min: {memory: 64Mi}}, {type: Pod, max: {cpu: '4'}}]}}",
     "{spec: {limits: [{type: Container, max: {cpu: '2'}, min: {memory: 64Mi}, default: {cpu: '2'},"
     " defaultRequest: {cpu: '2', memory: 64Mi}}, {type: Pod, max: {cpu: '4'}}]}}"),
    ("lease", "io.k8s.api.coordination.v1.Lease", "{spec: {holderIdentity: a}}", "{spec: {holderIdentity: a}}"),
    ("pdb", "io.k8s.api.policy.v1.PodDisruptionBudget", "{spec: {minAvailable: 1}}", "{spec: {minAvailable: 1}}"),
]


@pytest.mark.parametrize("definition,given,expected", [c[1:] for c in OTHER_CASES], ids=[c[0] for c in OTHER_CASES])
def test_other_groups(definition: str, given: str, expected: str) -> None:
    assert defaulted(y(given), definition) == y(expected)


# --- core/v1 details -----------------------------------------------------------------------------

@pytest.mark.parametrize("image,policy", [
    ("nginx", "Always"),
    ("nginx:latest", "Always"),
    ("nginx:1.7.9", "IfNotPresent"),
    ("jonbaier/pod-scaling:0.1", "IfNotPresent"),
    ("localhost:5000/app", "Always"),            # the port is not a tag
    ("localhost:5000/app:v2", "IfNotPresent"),
    ("registry.example.com/team/app", "Always"),
    ("nginx@sha256:" + "a" * 64, "IfNotPresent"),  # digest only: no tag at all
    ("nginx:latest@sha256:" + "a" * 64, "Always"),
    ("MyRegistry/app", "Always"),                # an upper-case first part is a registry host
    ("quay.io/Org/app", "IfNotPresent"),         # upper-case repository: unparsable
    ("a" * 64, "IfNotPresent"),                  # a bare image ID
    ("", "IfNotPresent"),
])
def test_image_pull_policy(image: str, policy: str) -> None:
    container = defaulted({"name": "c", "image": image}, CORE + "Container")
    assert container["imagePullPolicy"] == policy


def test_explicit_values_are_kept_and_go_zero_values_are_not() -> None:
    pod = y("""
spec:
  dnsPolicy: ""
  enableServiceLinks: false
  terminationGracePeriodSeconds: 0
  containers:
  - name: c
    image: nginx
    imagePullPolicy: Never
    readinessProbe: {tcpSocket: {port: 80}, timeoutSeconds: 0, periodSeconds: 5, failureThreshold: null}
  volumes:
  - {name: cm, configMap: {name: cm, defaultMode: 0}}
""")
    spec = defaulted(pod, CORE + "Pod")["spec"]
    assert spec["dnsPolicy"] == "ClusterFirst"     # a Go string: "" is unset
    assert spec["enableServiceLinks"] is False     # a *bool: false is a value
    assert spec["terminationGracePeriodSeconds"] == 0
    assert spec["containers"][0]["imagePullPolicy"] == "Never"
    probe = spec["containers"][0]["readinessProbe"]
    assert probe == {"tcpSocket": {"port": 80}, "timeoutSeconds": 1, "periodSeconds": 5,
                     "successThreshold": 1, "failureThreshold": 3}  # int32 fields: 0 is unset
    assert spec["volumes"][0]["configMap"]["defaultMode"] == 0
    claim = defaulted({"spec": {"volumeMode": ""}}, CORE + "PersistentVolumeClaim")
    assert claim["spec"]["volumeMode"] == ""       # a *string: "" is kept (and validation rejects it)


def test_pod_requests_default_to_limits() -> None:
    pod = y("""
spec:
  initContainers: [{name: i, image: busybox, resources: {limits: {cpu: 100m}}}]
  containers:
  - {name: a, image: nginx, resources: {limits: {cpu: 500m, memory: 128Mi}, requests: {cpu: 250m}}}
  - {name: b, image: nginx, resources: {limits: {}}}
  ephemeralContainers: [{name: e, image: busybox, resources: {limits: {cpu: 1}}}]
""")
    spec = defaulted(pod, CORE + "Pod")["spec"]
    assert spec["initContainers"][0]["resources"] == {"limits": {"cpu": "100m"}, "requests": {"cpu": "100m"}}
    assert spec["containers"][0]["resources"]["requests"] == {"cpu": "250m", "memory": "128Mi"}
    assert spec["containers"][1]["resources"] == {"limits": {}}  # nothing to copy, no empty requests
    assert "requests" not in spec["ephemeralContainers"][0]["resources"]


def test_pod_volume_sources() -> None:
    pod = y("""
spec:
  containers:
  - name: c
    image: nginx
    env:
    - {name: POD, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
    - {name: CPU, valueFrom: {resourceFieldRef: {resource: limits.cpu}}}
    startupProbe: {grpc: {port: 9000}}
  volumes:
  - {name: scratch}
  - {name: host, hostPath: {path: /var/log}}
  - name: info
    downwardAPI: {items: [{path: labels, fieldRef: {fieldPath: metadata.labels}}]}
  - name: all
    projected:
      sources:
      - serviceAccountToken: {path: token}
      - downwardAPI: {items: [{path: ns, fieldRef: {fieldPath: metadata.namespace}}]}
  - {name: img, image: {reference: "quay.io/org/data:latest"}}
  - {name: eph, ephemeral: {volumeClaimTemplate: {spec: {accessModes: [ReadWriteOnce]}}}}
""")
    spec = defaulted(pod, CORE + "Pod")["spec"]
    env = spec["containers"][0]["env"]
    assert env[0]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name", "apiVersion": "v1"}}
    assert env[1]["valueFrom"] == {"resourceFieldRef": {"resource": "limits.cpu"}}
    assert spec["containers"][0]["startupProbe"]["grpc"] == {"port": 9000, "service": ""}
    assert spec["volumes"] == y("""
- {name: scratch, emptyDir: {}}
- {name: host, hostPath: {path: /var/log, type: ""}}
- name: info
  downwardAPI: {defaultMode: 420, items: [{path: labels, fieldRef: {fieldPath: metadata.labels, apiVersion: v1}}]}
- name: all
  projected:
    defaultMode: 420
    sources:
    - serviceAccountToken: {path: token, expirationSeconds: 3600}
    - downwardAPI: {items: [{path: ns, fieldRef: {fieldPath: metadata.namespace, apiVersion: v1}}]}
- {name: img, image: {reference: "quay.io/org/data:latest", pullPolicy: Always}}
- name: eph
  ephemeral:
    volumeClaimTemplate: {metadata: {}, spec: {accessModes: [ReadWriteOnce], resources: {}, volumeMode: Filesystem}}
""")


def test_host_network_ports() -> None:
    pod = y("""
spec:
  hostNetwork: true
  containers: [{name: c, image: nginx, ports: [{containerPort: 80}, {containerPort: 443, hostPort: 443}]}]
""")
    ports = defaulted(pod, CORE + "Pod")["spec"]["containers"][0]["ports"]
    assert ports == [{"containerPort": 80, "hostPort": 80, "protocol": "TCP"},
                     {"containerPort": 443, "hostPort": 443, "protocol": "TCP"}]
    template = defaulted({"spec": {"template": pod}}, "io.k8s.api.apps.v1.DaemonSet")
    assert "hostPort" not in template["spec"]["template"]["spec"]["containers"][0]["ports"][0]


@pytest.mark.parametrize("spec,expected", [
    ({"type": "ExternalName", "externalName": "db.example.com"},
     {"type": "ExternalName", "externalName": "db.example.com", "sessionAffinity": "None"}),
    ({"externalIPs": ["192.0.2.1"], "ports": [{"port": 80, "targetPort": "http"}]},
     {"externalIPs": ["192.0.2.1"], "ports": [{"port": 80, "targetPort": "http", "protocol": "TCP"}],
      "type": "ClusterIP", "sessionAffinity": "None", "externalTrafficPolicy": "Cluster",
      "internalTrafficPolicy": "Cluster"}),
    ({"sessionAffinity": "None", "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60}},
      "internalTrafficPolicy": "Local", "ports": [{"port": 53, "protocol": "UDP", "targetPort": 0}]},
     {"sessionAffinity": "None", "internalTrafficPolicy": "Local", "type": "ClusterIP",
      "ports": [{"port": 53, "protocol": "UDP", "targetPort": 53}]}),
    ({"sessionAffinity": "ClientIP", "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60}}},
     {"sessionAffinity": "ClientIP", "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60}},
      "type": "ClusterIP", "internalTrafficPolicy": "Cluster"}),
])
def test_service_spec(spec: dict, expected: dict) -> None:
    assert defaulted({"spec": spec}, CORE + "Service")["spec"] == expected


def test_load_balancer_status_ip_mode() -> None:
    svc = y("{spec: {type: LoadBalancer, allocateLoadBalancerNodePorts: false},"
            " status: {loadBalancer: {ingress: [{ip: 192.0.2.7}, {hostname: lb.example.com}]}}}")
    out = defaulted(svc, CORE + "Service")
    assert out["spec"]["allocateLoadBalancerNodePorts"] is False
    assert out["status"]["loadBalancer"]["ingress"] == [{"ip": "192.0.2.7", "ipMode": "VIP"},
                                                        {"hostname": "lb.example.com"}]


def test_replication_controller_selector_and_labels_from_template() -> None:
    rc = y("{spec: {template: {metadata: {labels: {app: web}}, spec: {containers: [{name: c, image: nginx}]}}}}")
    out = defaulted(rc, CORE + "ReplicationController")
    assert out["metadata"] == {"labels": {"app": "web"}}
    assert out["spec"]["selector"] == {"app": "web"} and out["spec"]["replicas"] == 1
    out["spec"]["selector"]["tier"] = "x"  # copies, not one shared map
    assert out["metadata"]["labels"] == {"app": "web"}


def test_namespace_label_follows_name() -> None:
    ns = defaulted({"metadata": {"name": "dev", "labels": {"kubernetes.io/metadata.name": "other", "a": "b"}}},
                   CORE + "Namespace")
    assert ns["metadata"]["labels"] == {"kubernetes.io/metadata.name": "dev", "a": "b"}
    unnamed = defaulted({"metadata": {"generateName": "dev-"}}, CORE + "Namespace")
    assert "labels" not in unnamed["metadata"]


# --- batch/v1 Job --------------------------------------------------------------------------------

@pytest.mark.parametrize("given,expected", [
    ({}, (1, 1, 6)),
    ({"parallelism": 3}, (None, 3, 6)),  # completions stays unset: a work queue
    ({"completions": 5, "backoffLimit": 0}, (5, 1, 0)),
    ({"completionMode": "Indexed", "completions": 4, "backoffLimitPerIndex": 1}, (4, 1, 2147483647)),
])
def test_job_counts(given: dict, expected: tuple) -> None:
    spec = defaulted({"spec": given}, "io.k8s.api.batch.v1.Job")["spec"]
    assert (spec.get("completions"), spec.get("parallelism"), spec.get("backoffLimit")) == expected


def test_job_pod_failure_policy() -> None:
    job = y("""
spec:
  podFailurePolicy:
    rules: [{action: Ignore, onPodConditions: [{type: DisruptionTarget}]}]
  template: {spec: {restartPolicy: Never, containers: [{name: c, image: busybox}]}}
""")
    spec = defaulted(job, "io.k8s.api.batch.v1.Job")["spec"]
    assert spec["podReplacementPolicy"] == "Failed"
    assert spec["podFailurePolicy"]["rules"][0]["onPodConditions"] == [{"type": "DisruptionTarget", "status": "True"}]


def test_job_prepare_for_create_generates_selector_and_labels() -> None:
    job = defaulted(book("Chapter05/longtask.yaml"), "io.k8s.api.batch.v1.Job")
    job["metadata"]["uid"] = UID
    defaults.job_prepare_for_create(job)
    generated = {"batch.kubernetes.io/controller-uid": UID, "batch.kubernetes.io/job-name": "long-task",
                 "controller-uid": UID, "job-name": "long-task"}
    assert job["spec"]["template"]["metadata"] == {"name": "long-task", "labels": generated}
    assert job["spec"]["selector"] == {"matchLabels": {"batch.kubernetes.io/controller-uid": UID}}
    assert job["metadata"]["labels"] == generated


def test_job_prepare_for_create_keeps_what_the_client_chose() -> None:
    job = y(f"""
metadata: {{name: pi, uid: {UID}, labels: {{team: a}}}}
spec:
  template: {{metadata: {{labels: {{app: pi}}}}, spec: {{containers: [{{name: c, image: perl}}]}}}}
""")
    job = defaulted(job, "io.k8s.api.batch.v1.Job")
    defaults.job_prepare_for_create(job)
    assert job["metadata"]["labels"] == {"team": "a"}
    assert job["spec"]["template"]["metadata"]["labels"]["app"] == "pi"
    manual = y("{metadata: {name: m, uid: u}, spec: {manualSelector: true, selector: {matchLabels: {app: m}},"
               " template: {metadata: {labels: {app: m}}}}}")
    expected = copy.deepcopy(manual)
    expected["metadata"]["labels"] = {"app": "m"}
    defaults.job_prepare_for_create(manual)
    assert manual == expected


# --- what the pod strategy sets on create --------------------------------------------------------

@pytest.mark.parametrize("containers,qos", [
    ([{}], "BestEffort"),
    ([{"limits": {"cpu": "1500m", "memory": "512Mi"}}], "Guaranteed"),   # requests come from limits
    ([{"limits": {"cpu": "1.5", "memory": "0.5Gi"}, "requests": {"cpu": "1500m", "memory": "512Mi"}}], "Guaranteed"),
    ([{"limits": {"cpu": "1", "memory": "1Gi"}}, {"limits": {"cpu": "1"}}], "Burstable"),
    ([{"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "500m"}}], "Burstable"),
    ([{"requests": {"nvidia.com/gpu": "1"}}], "BestEffort"),          # only cpu and memory count
    ([{"requests": {"cpu": "0"}}], "BestEffort"),
    ([{"limits": {"cpu": "2", "memory": "1e3M"}}, {}], "Burstable"),
])
def test_qos_class(containers: list[dict], qos: str) -> None:
    pod = {"spec": {"containers": [{"name": f"c{i}", "image": "nginx", "resources": r}
                                   for i, r in enumerate(containers)]}}
    pod = defaulted(pod, CORE + "Pod")
    defaults.pod_prepare_for_create(pod)
    assert pod["status"] == {"phase": "Pending", "qosClass": qos}
    assert pod["metadata"]["generation"] == 1


def test_qos_class_from_pod_level_resources() -> None:
    pod = {"spec": {"resources": {"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "1", "memory": "1Gi"}},
                    "containers": [{"name": "c", "image": "nginx"}]}}
    assert defaults.pod_qos_class(pod) == "Guaranteed"
    pod["spec"]["resources"] = {"requests": {"cpu": "1"}}
    assert defaults.pod_qos_class(pod) == "Burstable"


def test_pod_prepare_for_create_scheduling_gates_and_label_keys() -> None:
    pod = y("""
metadata: {name: p, labels: {app: web, rev: r1}}
spec:
  schedulingGates: [{name: example.com/wait}]
  containers: [{name: c, image: nginx}]
  affinity:
    podAntiAffinity:
      requiredDuringSchedulingIgnoredDuringExecution:
      - {topologyKey: kubernetes.io/hostname, labelSelector: {matchLabels: {app: web}}, matchLabelKeys: [rev]}
      preferredDuringSchedulingIgnoredDuringExecution:
      - weight: 1
        podAffinityTerm: {topologyKey: zone, labelSelector: {}, mismatchLabelKeys: [app, missing]}
  topologySpreadConstraints:
  - {maxSkew: 1, topologyKey: zone, whenUnsatisfiable: DoNotSchedule, labelSelector: {matchLabels: {app: web}},
     matchLabelKeys: [rev]}
  - {maxSkew: 1, topologyKey: zone, whenUnsatisfiable: DoNotSchedule, matchLabelKeys: [rev]}
""")
    defaults.pod_prepare_for_create(pod)
    condition = pod["status"]["conditions"][0]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", condition.pop("lastTransitionTime"))
    assert condition == {"type": "PodScheduled", "status": "False", "lastProbeTime": None,
                         "reason": "SchedulingGated", "message": "Scheduling is blocked due to non-empty scheduling gates"}
    anti = pod["spec"]["affinity"]["podAntiAffinity"]
    assert anti["requiredDuringSchedulingIgnoredDuringExecution"][0]["labelSelector"] == {
        "matchLabels": {"app": "web"}, "matchExpressions": [{"key": "rev", "operator": "In", "values": ["r1"]}]}
    assert anti["preferredDuringSchedulingIgnoredDuringExecution"][0]["podAffinityTerm"]["labelSelector"] == {
        "matchExpressions": [{"key": "app", "operator": "NotIn", "values": ["web"]}]}
    spread = pod["spec"]["topologySpreadConstraints"]
    assert spread[0]["labelSelector"]["matchExpressions"] == [{"key": "rev", "operator": "In", "values": ["r1"]}]
    assert "labelSelector" not in spread[1]  # no selector: matches nothing, left alone


def test_pod_prepare_for_create_apparmor_annotations() -> None:
    prefix = "container.apparmor.security.beta.kubernetes.io/"
    pod = {"metadata": {"annotations": {prefix + "a": "runtime/default", prefix + "b": "localhost/my-profile",
                                        prefix + "c": "unconfined", prefix + "d": "bogus", prefix + "e": "unconfined"}},
           "spec": {"securityContext": {"appArmorProfile": {"type": "Unconfined"}},
                    "containers": [{"name": n} for n in "abcd"] + [
                        {"name": "e", "securityContext": {"appArmorProfile": {"type": "RuntimeDefault"}}}]}}
    defaults.pod_prepare_for_create(pod)
    profiles = {c["name"]: c.get("securityContext") for c in pod["spec"]["containers"]}
    assert profiles == {"a": {"appArmorProfile": {"type": "RuntimeDefault"}},
                        "b": {"appArmorProfile": {"type": "Localhost", "localhostProfile": "my-profile"}},
                        "c": None,  # same as the pod's profile
                        "d": None,  # not a valid annotation value
                        "e": {"appArmorProfile": {"type": "RuntimeDefault"}}}  # the field wins


def test_namespace_prepare_for_create() -> None:
    ns = defaulted(book("Chapter03/test-ns.yaml"), CORE + "Namespace")
    defaults.namespace_prepare_for_create(ns)
    assert ns["spec"] == {"finalizers": ["kubernetes"]} and ns["status"] == {"phase": "Active"}
    other = {"spec": {"finalizers": ["example.com/cleanup"]}}
    defaults.namespace_prepare_for_create(other)
    assert other["spec"]["finalizers"] == ["example.com/cleanup", "kubernetes"]


# --- the registry --------------------------------------------------------------------------------

def test_every_declared_default_names_a_schema_field() -> None:
    definitions = schema.definitions()

    def check(node: schema.Node, values: dict, where: str) -> None:
        for key, value in values.items():
            sub = node.field(key)
            assert sub is not None, f"{where}.{key} is not in the schema"
            if isinstance(value, dict) and value:
                check(sub, value, f"{where}.{key}")

    for table in (defaults.DECLARED, defaults.ALWAYS_PRESENT):
        for name, values in table.items():
            assert name in definitions, name
            check(schema.node(name), values, name)


def test_register_extra_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(defaults, "_registry", dict(defaults._registry))
    monkeypatch.setattr(defaults, "_plans", {})  # what the walk learnt of the registry goes with it
    lease_spec = "io.k8s.api.coordination.v1.LeaseSpec"
    assert defaults.defaults_for(lease_spec).values == {}
    seen = []
    defaults.register(lease_spec, {"leaseDurationSeconds": 15, "strategy": defaults.Ptr("Oldest")},
                      compute=lambda spec: seen.append(dict(spec)))
    defaults.register(lease_spec, {"leaseDurationSeconds": 40})  # a later value replaces an earlier one
    declared = defaults.defaults_for(lease_spec)
    assert declared.values == {"leaseDurationSeconds": 40, "strategy": "Oldest"}
    declared.values["leaseDurationSeconds"] = 1  # a copy
    out = defaulted({"spec": {"holderIdentity": "a"}}, "io.k8s.api.coordination.v1.Lease")
    assert out == {"spec": {"holderIdentity": "a", "leaseDurationSeconds": 40, "strategy": "Oldest"}}
    assert seen == [out["spec"]]  # compute runs after the values are filled


def test_defaults_for_introspection() -> None:
    probe = defaults.defaults_for(CORE + "Probe")
    assert probe.values == {"timeoutSeconds": 1, "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3}
    assert defaults.defaults_for(CORE + "Service").compute  # computed, not declared
    assert defaults.defaults_for(CORE + "ConfigMap").values == {}
