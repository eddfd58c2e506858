"""Real kubectl binaries, 1.27 to 1.35, against a real ketch server."""
from __future__ import annotations

import json
import subprocess
import time

import pytest
import yaml

from helpers import kubectl as kubectl_versions
from helpers.cluster import BOOK, unique

VERSIONS = kubectl_versions.versions()

DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: nginx:1.25
        ports: [{containerPort: 80}]
        env: [{name: A, value: "1"}]
"""


@pytest.fixture
def ns(server):
    name = unique("kc")
    server.kubectl("create", "namespace", name)
    yield name
    server.kubectl("delete", "namespace", name, "--wait=false", check=False)


SKEW = "exceeds the supported minor version skew"  # what kubectl says to any server 2+ minors away


@pytest.fixture(params=sorted(VERSIONS))
def kubectl(request) -> str:
    """Each kubectl this machine has (1.27, 1.30, 1.32, 1.33, 1.35)."""
    return VERSIONS[request.param]


def no_warnings(proc: subprocess.CompletedProcess) -> None:
    lines = [line for line in proc.stderr.splitlines() if line.strip() and SKEW not in line]
    assert not lines, proc.stderr


@pytest.mark.parametrize("version", sorted(VERSIONS))
def test_core_workflow_every_kubectl(server, ns, version):
    kubectl = VERSIONS[version]

    def k(*args, **kw):
        return server.kubectl(*args, "-n", ns, kubectl=kubectl, **kw)

    assert "v1.35.0" in k("version").stdout  # kubectl's own skew and deprecation notes aside
    proc = k("create", "-f", str(BOOK / "Chapter02/nodejs-controller.yaml"))
    assert "replicationcontroller/node-js created" in proc.stdout
    no_warnings(proc)
    proc = k("get", "rc", "node-js")
    assert proc.stdout.split()[:5] == ["NAME", "DESIRED", "CURRENT", "READY", "AGE"]
    assert proc.stdout.split()[5:7] == ["node-js", "3"]
    no_warnings(proc)
    # The replication controller makes the pods and the (simulated) nodes run them.
    k("wait", "--for=jsonpath={.status.readyReplicas}=3", "rc/node-js", "--timeout=30s")
    assert k("get", "rc", "node-js").stdout.split()[5:9] == ["node-js", "3", "3", "3"]
    live = json.loads(k("get", "rc", "node-js", "-o", "json").stdout)
    assert live["spec"]["template"]["spec"]["restartPolicy"] == "Always"
    proc = k("apply", "-f", "-", input=DEPLOYMENT)
    assert "deployment.apps/web created" in proc.stdout
    no_warnings(proc)
    proc = k("apply", "-f", "-", input=DEPLOYMENT.replace("replicas: 2", "replicas: 4"))
    assert "deployment.apps/web configured" in proc.stdout
    assert json.loads(k("get", "deploy", "web", "-o", "json").stdout)["spec"]["replicas"] == 4
    proc = k("scale", "deploy", "web", "--replicas=1")
    assert "scaled" in proc.stdout
    proc = k("label", "deploy", "web", "tier=frontend")
    assert "labeled" in proc.stdout
    assert k("get", "deploy", "-l", "tier=frontend", "-o", "name").stdout.strip() == "deployment.apps/web"
    proc = k("delete", "deploy", "web")
    assert 'deployment.apps "web" deleted' in proc.stdout
    proc = k("get", "deploy", "web", check=False)
    assert proc.returncode != 0
    assert 'Error from server (NotFound): deployments.apps "web" not found' in proc.stderr


def test_get_output_formats(server, ns, kubectl):
    server.kubectl("apply", "-n", ns, "-f", "-", input=DEPLOYMENT, kubectl=kubectl)
    k = lambda *a, **kw: server.kubectl(*a, "-n", ns, kubectl=kubectl, **kw)  # noqa: E731
    wide = k("get", "deploy", "web", "-o", "wide").stdout.splitlines()
    assert wide[0].split() == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE", "CONTAINERS", "IMAGES", "SELECTOR"]
    assert wide[1].split()[5:] == ["web", "nginx:1.25", "app=web"]
    doc = yaml.safe_load(k("get", "deploy", "web", "-o", "yaml").stdout)
    assert doc["spec"]["strategy"] == {"type": "RollingUpdate",
                                       "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}}
    assert k("get", "deploy", "web", "-o", "jsonpath={.spec.template.spec.containers[0].image}").stdout == "nginx:1.25"
    cc = k("get", "deploy", "-o", "custom-columns=NAME:.metadata.name,REPLICAS:.spec.replicas").stdout.split()
    assert cc == ["NAME", "REPLICAS", "web", "2"]
    assert k("get", "deploy", "-o", "name").stdout.strip() == "deployment.apps/web"
    labels = k("get", "deploy", "--show-labels").stdout.splitlines()
    assert labels[0].split()[-1] == "LABELS" and labels[1].split()[-1] == "app=web"
    all_ns = server.kubectl("get", "deploy", "-A", kubectl=kubectl).stdout.splitlines()
    assert all_ns[0].split()[0] == "NAMESPACE"
    assert any(line.split()[:2] == [ns, "web"] for line in all_ns[1:])
    fs = server.kubectl("get", "ns", "--field-selector", f"metadata.name={ns}", "-o", "name",
                        kubectl=kubectl).stdout.strip()
    assert fs == f"namespace/{ns}"


def test_get_all_lists_the_all_category(server, ns):
    server.kubectl("apply", "-n", ns, "-f", "-", input=DEPLOYMENT)
    server.kubectl("create", "-n", ns, "-f", str(BOOK / "Chapter03/nodejs-service-nodePort.yaml"))
    server.kubectl("create", "-n", ns, "-f", str(BOOK / "Chapter02/nodejs-controller.yaml"))
    out = server.kubectl("get", "all", "-n", ns).stdout
    for name in ("deployment.apps/web", "service/node-js-nodeport", "replicationcontroller/node-js"):
        assert name in out, out
    assert "configmap" not in out  # not in the `all` category


def test_describe_patch_replace_annotate(server, ns, kubectl):
    k = lambda *a, **kw: server.kubectl(*a, "-n", ns, kubectl=kubectl, **kw)  # noqa: E731
    k("create", "-f", str(BOOK / "Chapter03/nodejs-service-nodePort.yaml"))
    out = k("describe", "svc", "node-js-nodeport").stdout
    assert "Type:                     NodePort" in out
    assert "NodePort:                 <unset>  30001/TCP" in out
    k("annotate", "svc", "node-js-nodeport", "owner=book")
    k("patch", "svc", "node-js-nodeport", "-p", '{"metadata":{"labels":{"patched":"strategic"}}}')
    k("patch", "svc", "node-js-nodeport", "--type=merge", "-p", '{"metadata":{"labels":{"merge":"yes"}}}')
    k("patch", "svc", "node-js-nodeport", "--type=json",
      "-p", '[{"op":"add","path":"/metadata/labels/json","value":"yes"}]')
    live = json.loads(k("get", "svc", "node-js-nodeport", "-o", "json").stdout)
    assert live["metadata"]["annotations"]["owner"] == "book"
    assert {"patched": "strategic", "merge": "yes", "json": "yes"}.items() <= live["metadata"]["labels"].items()
    live["metadata"]["labels"]["replaced"] = "yes"
    k("replace", "-f", "-", input=json.dumps(live))
    assert json.loads(k("get", "svc", "node-js-nodeport", "-o", "json").stdout)["metadata"]["labels"]["replaced"] == "yes"


def test_server_side_apply_and_conflicts(server, ns, kubectl):
    k = lambda *a, **kw: server.kubectl(*a, "-n", ns, kubectl=kubectl, **kw)  # noqa: E731
    proc = k("apply", "--server-side", "-f", "-", input=DEPLOYMENT)
    assert "deployment.apps/web serverside-applied" in proc.stdout
    live = json.loads(k("get", "deploy", "web", "-o", "json", "--show-managed-fields").stdout)
    managers = {m["manager"]: m["operation"] for m in live["metadata"]["managedFields"]}
    assert managers.get("kubectl") == "Apply"
    proc = k("apply", "--server-side", "--field-manager=other", "-f", "-",
             input=DEPLOYMENT.replace("replicas: 2", "replicas: 5"), check=False)
    assert proc.returncode != 0
    assert "conflict" in proc.stderr.lower() and ".spec.replicas" in proc.stderr
    k("apply", "--server-side", "--force-conflicts", "--field-manager=other", "-f", "-",
      input=DEPLOYMENT.replace("replicas: 2", "replicas: 5"))
    assert json.loads(k("get", "deploy", "web", "-o", "json").stdout)["spec"]["replicas"] == 5


def test_delete_variants_and_wait(server, ns, kubectl):
    k = lambda *a, **kw: server.kubectl(*a, "-n", ns, kubectl=kubectl, **kw)  # noqa: E731
    for i in range(3):
        k("create", "configmap", f"cm-{i}", "--from-literal=a=b")
        k("label", "configmap", f"cm-{i}", f"group={'x' if i < 2 else 'y'}")
    out = k("delete", "configmap", "-l", "group=x").stdout
    assert 'configmap "cm-0" deleted' in out and 'configmap "cm-1" deleted' in out
    assert k("get", "configmap", "cm-2", "-o", "name").stdout.strip() == "configmap/cm-2"
    k("apply", "-f", "-", input=DEPLOYMENT)
    k("delete", "deploy", "web", "--cascade=foreground", "--wait=false")
    k("delete", "configmap", "--all")
    assert "cm-2" not in k("get", "configmap").stdout
    k("create", "configmap", "waited", "--from-literal=a=b")
    proc = k("wait", "--for=delete", "configmap/waited", "--timeout=10s", check=False)
    assert proc.returncode != 0  # still there: wait times out
    k("delete", "configmap", "waited", "--wait=true")


def test_explain_api_resources_versions(server, kubectl):
    out = server.kubectl("explain", "deployment.spec.strategy", kubectl=kubectl).stdout
    assert "rollingUpdate" in out and "DeploymentStrategy" in out
    out = server.kubectl("explain", "pods.spec.containers.ports", kubectl=kubectl).stdout
    assert "containerPort" in out
    res = server.kubectl("api-resources", kubectl=kubectl).stdout
    for short in ("po", "svc", "rc", "rs", "deploy", "ds", "sts", "cj", "hpa", "ing", "ns", "no", "pv", "pvc",
                  "sc", "cm", "ep", "ev", "sa", "quota", "limits", "netpol", "pdb"):
        assert f" {short} " in res, short
    versions = server.kubectl("api-versions", kubectl=kubectl).stdout.split()
    for gv in ("v1", "apps/v1", "extensions/v1beta1", "apps/v1beta1", "batch/v2alpha1", "autoscaling/v1",
               "storage.k8s.io/v1beta1", "policy/v1beta1"):
        assert gv in versions


def test_diff_and_wait_for_condition(server, ns, kubectl):
    k = lambda *a, **kw: server.kubectl(*a, "-n", ns, kubectl=kubectl, **kw)  # noqa: E731
    k("apply", "-f", "-", input=DEPLOYMENT)
    same = k("diff", "-f", "-", input=DEPLOYMENT, check=False)
    assert same.returncode == 0, same.stderr
    changed = k("diff", "-f", "-", input=DEPLOYMENT.replace("nginx:1.25", "nginx:1.26"), check=False)
    assert changed.returncode == 1 and "nginx:1.26" in changed.stdout
    k("create", "configmap", "ready", "--from-literal=state=go")
    proc = k("wait", "--for=jsonpath={.data.state}=go", "configmap/ready", "--timeout=10s")
    assert "condition met" in proc.stdout


def test_get_watch_streams_changes(server, ns):
    env_kc = server.kubeconfig
    watcher = subprocess.Popen(["/usr/bin/kubectl", "--kubeconfig", str(env_kc), "-n", ns, "get", "configmaps",
                                "-w", "--request-timeout=8s"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    try:
        time.sleep(1.5)
        server.kubectl("-n", ns, "create", "configmap", "watched", "--from-literal=a=b")
        time.sleep(1.5)
    finally:
        watcher.terminate()
        out, err = watcher.communicate(timeout=10)
    assert "watched" in out, (out, err)


def test_config_set_context_namespace(server, ns, tmp_path):
    kc = tmp_path / "kc.yaml"
    kc.write_text(server.kubeconfig.read_text())
    run = lambda *a: subprocess.run(["/usr/bin/kubectl", "--kubeconfig", str(kc), *a],  # noqa: E731
                                    capture_output=True, text=True, check=True)
    run("config", "set-context", "--current", f"--namespace={ns}")
    run("create", "configmap", "in-ns", "--from-literal=a=b")
    assert run("get", "configmap", "in-ns", "-o", "jsonpath={.metadata.namespace}").stdout == ns


def test_server_with_simulated_nodes_runs_the_book_rc(tmp_path):
    """`ketch server --simulate-nodes N` (`make up NODES=N` adds them): nodes register, the book's
    RC gets Running pods spread over them, and `kubectl top` answers."""
    from helpers.cluster import start_server, wait_for
    srv = start_server(tmp_path, ["--simulate-nodes", "2", "--metrics-resolution", "1s"])
    try:
        # kubectl wait fails at once on a node not registered yet: wait for both to exist first.
        wait_for(lambda: srv.kubectl("get", "node/sim-0", "node/sim-1", check=False).returncode == 0, 30,
                 "the simulated nodes", interval=0.2)
        srv.kubectl("wait", "--for=condition=Ready", "node/sim-0", "node/sim-1", "--timeout=30s")
        srv.kubectl("create", "-f", str(BOOK / "Chapter02/nodejs-controller.yaml"))
        srv.kubectl("wait", "--for=condition=Ready", "pod", "-l", "name=node-js", "--timeout=30s")
        pods = srv.kubectl_json("get", "pods", "-l", "name=node-js")["items"]
        assert len(pods) == 3 and {p["spec"]["nodeName"] for p in pods} == {"sim-0", "sim-1"}
        deadline = time.monotonic() + 30
        while True:
            top = srv.kubectl("top", "nodes", check=False)
            if top.returncode == 0 and "sim-1" in top.stdout:
                break
            assert time.monotonic() < deadline, top.stderr
            time.sleep(0.5)
    finally:
        srv.stop()
