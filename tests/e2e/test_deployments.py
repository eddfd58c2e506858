"""Workloads end to end with real kubectl on simulated nodes: the book's chapter 2 and 4 RCs
(replacement, `kubectl scale`), and chapter 5's Deployment walkthrough — rollout, `set image`,
`rollout history/undo/pause/resume/status/restart`, a bad image stuck while the old version keeps
serving (ProgressDeadlineExceeded), Recreate, proportional scaling mid-rollout, revision history
limits and cascading deletion through the official Python client.

A "bad image" is emulated by the simulator's `ketch.io/simulate-ready-after` annotation: its pods
run but never become Ready, which is what a rollout sees of an image that never starts serving.
"""
from __future__ import annotations

import json
import time

import pytest
import yaml

from helpers.cluster import BOOK, unique, wait_for
from helpers.kubectl import kubectl_135

NEVER_READY = {"ketch.io/simulate-ready-after": "1h"}


@pytest.fixture
def ns(server, simulated_nodes):
    name = unique("dep")
    server.kubectl("create", "namespace", name)
    yield name
    server.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture(scope="module", params=["1.32", "1.35"])
def kubectl(request) -> str:
    if request.param == "1.32":
        return "/usr/bin/kubectl"
    path = kubectl_135()
    if path is None:
        pytest.skip("kubectl 1.35 unavailable")
    return path


def get(server, ns: str, *what: str) -> dict:
    return server.kubectl_json("get", *what, "-n", ns)


def running_pods(server, ns: str, selector: str) -> list[dict]:
    items = get(server, ns, "pods", "-l", selector)["items"]
    return [p for p in items if p["status"].get("phase") == "Running" and not p["metadata"].get("deletionTimestamp")]


def replicasets(server, ns: str) -> dict[str, dict]:
    return {rs["metadata"]["name"]: rs for rs in get(server, ns, "rs")["items"]}


def images(server, ns: str, selector: str) -> list[str]:
    return sorted(p["spec"]["containers"][0]["image"] for p in running_pods(server, ns, selector))


def deployment(name: str, replicas: int, image: str = "jonbaier/pod-scaling:0.1", **spec) -> dict:
    labels = {"app": name}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"containers": [{"name": "app", "image": image}]}}, **spec}}


def apply(server, ns: str, obj: dict) -> None:
    server.kubectl("create", "-n", ns, "-f", "-", input=json.dumps(obj))


def deployment_events(server, ns: str, name: str) -> list[str]:
    items = get(server, ns, "events", "--field-selector", f"involvedObject.name={name}")["items"]
    items.sort(key=lambda e: int(e["metadata"]["resourceVersion"]))
    return [e["message"] for e in items if e["reason"] == "ScalingReplicaSet"]


# ---- chapters 2 and 4: ReplicationControllers --------------------------------------------------

def test_rc_pods_run_and_deleted_ones_are_replaced(server, ns):
    server.kubectl("create", "-n", ns, "-f", str(BOOK / "Chapter02" / "nodejs-controller.yaml"))
    first = wait_for(lambda: len(p := running_pods(server, ns, "name=node-js")) == 3 and p, what="3 Running")
    assert {p["spec"]["nodeName"] for p in first} <= {"sim-0", "sim-1", "sim-2"}
    wait_for(lambda: get(server, ns, "rc", "node-js")["status"].get("readyReplicas") == 3, what="3 ready")
    out = server.kubectl("get", "rc", "node-js", "-n", ns).stdout.split("\n")[1].split()
    assert out[:4] == ["node-js", "3", "3", "3"]
    server.kubectl("delete", "pods", "-l", "name=node-js", "-n", ns)
    old = {p["metadata"]["name"] for p in first}
    wait_for(lambda: len(p := running_pods(server, ns, "name=node-js")) == 3
             and not old & {q["metadata"]["name"] for q in p}, what="3 replacements Running")
    described = server.kubectl("describe", "rc", "node-js", "-n", ns).stdout
    assert "Pods Status:  3 Running / 0 Waiting / 0 Succeeded / 0 Failed" in described


def test_kubectl_scale_rc(server, ns, kubectl="/usr/bin/kubectl"):
    server.kubectl("create", "-n", ns, "-f", str(BOOK / "Chapter04" / "pod-scaling-controller.yaml"))
    wait_for(lambda: len(running_pods(server, ns, "name=node-js-scale")) == 1, what="1 Running")
    server.kubectl("scale", "--replicas=3", "rc/node-js-scale", "-n", ns, kubectl=kubectl)
    wait_for(lambda: len(running_pods(server, ns, "name=node-js-scale")) == 3, what="3 Running")
    # kubectl scale --current-replicas is a precondition on the scale subresource.
    bad = server.kubectl("scale", "--current-replicas=2", "--replicas=1", "rc/node-js-scale", "-n", ns,
                         kubectl=kubectl, check=False)
    assert bad.returncode != 0 and "Expected replicas to be 2, was 3" in bad.stderr
    server.kubectl("scale", "--current-replicas=3", "--replicas=1", "rc/node-js-scale", "-n", ns, kubectl=kubectl)
    wait_for(lambda: len(running_pods(server, ns, "name=node-js-scale")) == 1, what="1 Running")


# ---- chapter 5: Deployments ----------------------------------------------------------------------

def test_book_deployment_walkthrough(server, ns, kubectl):
    k = {"kubectl": kubectl}
    server.kubectl("create", "-n", ns, "-f", str(BOOK / "Chapter05" / "node-js-deploy.yaml"), **k)
    out = server.kubectl("rollout", "status", "deployment/node-js-deploy", "-n", ns, "--timeout=30s", **k).stdout
    assert 'deployment "node-js-deploy" successfully rolled out' in out
    server.kubectl("scale", "deployment", "node-js-deploy", "--replicas=3", "-n", ns, **k)
    server.kubectl("rollout", "status", "deployment/node-js-deploy", "-n", ns, "--timeout=30s", **k)
    assert images(server, ns, "name=node-js-deploy") == ["jonbaier/pod-scaling:0.1"] * 3
    [rs1] = replicasets(server, ns).values()
    pod_hash = rs1["metadata"]["labels"]["pod-template-hash"]
    assert rs1["metadata"]["name"] == f"node-js-deploy-{pod_hash}"
    assert rs1["spec"]["selector"]["matchLabels"] == {"name": "node-js-deploy", "pod-template-hash": pod_hash}
    assert rs1["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "1"
    assert rs1["metadata"]["annotations"]["deployment.kubernetes.io/desired-replicas"] == "3"
    # extensions/v1beta1 defaults: maxSurge 1, so max-replicas is 3 + 1.
    assert rs1["metadata"]["annotations"]["deployment.kubernetes.io/max-replicas"] == "4"

    server.kubectl("set", "image", "deployment/node-js-deploy", "node-js-deploy=jonbaier/pod-scaling:0.2",
                   "-n", ns, **k)
    server.kubectl("annotate", "deployment/node-js-deploy", "kubernetes.io/change-cause=image 0.2", "-n", ns, **k)
    server.kubectl("rollout", "status", "deployment/node-js-deploy", "-n", ns, "--timeout=30s", **k)
    wait_for(lambda: images(server, ns, "name=node-js-deploy") == ["jonbaier/pod-scaling:0.2"] * 3, what="0.2 x3")
    history = server.kubectl("rollout", "history", "deployment/node-js-deploy", "-n", ns, **k).stdout
    rows = [line.split(None, 1) for line in history.strip().splitlines()[2:]]
    assert rows == [["1", "<none>"], ["2", "image 0.2"]]
    rev1 = server.kubectl("rollout", "history", "deployment/node-js-deploy", "--revision=1", "-n", ns, **k).stdout
    assert "jonbaier/pod-scaling:0.1" in rev1 and "revision #1" in rev1
    d = get(server, ns, "deployment", "node-js-deploy")
    assert d["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "2"
    assert d["status"]["updatedReplicas"] == 3 and d["status"]["availableReplicas"] == 3
    assert d["status"]["observedGeneration"] == d["metadata"]["generation"]
    events = deployment_events(server, ns, "node-js-deploy")
    new = next(n for n in replicasets(server, ns) if n != rs1["metadata"]["name"])
    assert f"Scaled up replica set {rs1['metadata']['name']} from 0 to 1" in events
    assert f"Scaled up replica set {rs1['metadata']['name']} from 1 to 3" in events
    assert any(e.startswith(f"Scaled up replica set {new} from 0 to ") for e in events)
    assert f"Scaled down replica set {rs1['metadata']['name']} from 1 to 0" in events or \
        any(e.startswith(f"Scaled down replica set {rs1['metadata']['name']} from ") and e.endswith(" to 0")
            for e in events)

    # undo: back to revision 1's template, which becomes revision 3.
    out = server.kubectl("rollout", "undo", "deployment/node-js-deploy", "-n", ns, **k).stdout
    assert "rolled back" in out
    server.kubectl("rollout", "status", "deployment/node-js-deploy", "-n", ns, "--timeout=30s", **k)
    wait_for(lambda: images(server, ns, "name=node-js-deploy") == ["jonbaier/pod-scaling:0.1"] * 3, what="0.1 x3")
    rss = replicasets(server, ns)
    assert len(rss) == 2
    assert rss[rs1["metadata"]["name"]]["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "3"
    assert rss[rs1["metadata"]["name"]]["metadata"]["annotations"]["deployment.kubernetes.io/revision-history"] == "1"
    history = server.kubectl("rollout", "history", "deployment/node-js-deploy", "-n", ns, **k).stdout
    assert [line.split(None, 1)[0] for line in history.strip().splitlines()[2:]] == ["2", "3"]

    # undo --to-revision=2
    server.kubectl("rollout", "undo", "deployment/node-js-deploy", "--to-revision=2", "-n", ns, **k)
    server.kubectl("rollout", "status", "deployment/node-js-deploy", "-n", ns, "--timeout=30s", **k)
    wait_for(lambda: images(server, ns, "name=node-js-deploy") == ["jonbaier/pod-scaling:0.2"] * 3, what="0.2 again")
    d = get(server, ns, "deployment", "node-js-deploy")
    assert d["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "4"
    assert d["metadata"]["annotations"].get("kubernetes.io/change-cause") == "image 0.2"

    described = server.kubectl("describe", "deployment", "node-js-deploy", "-n", ns, **k).stdout
    assert "ScalingReplicaSet" in described and "NewReplicaSet:" in described
    assert "deployment-controller  Scaled up replica set node-js-deploy-" in described
    assert "3 desired | 3 updated | 3 total | 3 available | 0 unavailable" in described


def test_pause_resume_and_restart(server, ns, kubectl):
    k = {"kubectl": kubectl}
    apply(server, ns, deployment("web", 2))
    server.kubectl("rollout", "status", "deployment/web", "-n", ns, "--timeout=30s", **k)
    server.kubectl("rollout", "pause", "deployment/web", "-n", ns, **k)
    server.kubectl("set", "image", "deployment/web", "app=jonbaier/pod-scaling:0.2", "-n", ns, **k)
    cond = wait_for(lambda: next((c for c in get(server, ns, "deployment", "web")["status"].get("conditions", [])
                                  if c["type"] == "Progressing" and c["reason"] == "DeploymentPaused"), None),
                    what="DeploymentPaused")
    assert cond["status"] == "Unknown" and cond["message"] == "Deployment is paused"
    time.sleep(0.5)
    assert len(replicasets(server, ns)) == 1  # paused: no rollout
    assert images(server, ns, "app=web") == ["jonbaier/pod-scaling:0.1"] * 2
    # Scaling a paused Deployment still works.
    server.kubectl("scale", "deployment/web", "--replicas=3", "-n", ns, **k)
    wait_for(lambda: len(running_pods(server, ns, "app=web")) == 3, what="3 while paused")
    server.kubectl("rollout", "resume", "deployment/web", "-n", ns, **k)
    server.kubectl("rollout", "status", "deployment/web", "-n", ns, "--timeout=30s", **k)
    wait_for(lambda: images(server, ns, "app=web") == ["jonbaier/pod-scaling:0.2"] * 3, what="rolled out")
    cond = next(c for c in get(server, ns, "deployment", "web")["status"]["conditions"] if c["type"] == "Progressing")
    assert cond["reason"] == "NewReplicaSetAvailable" and cond["status"] == "True"
    assert cond["message"].startswith('ReplicaSet "web-') and cond["message"].endswith('" has successfully progressed.')

    server.kubectl("rollout", "restart", "deployment/web", "-n", ns, **k)
    server.kubectl("rollout", "status", "deployment/web", "-n", ns, "--timeout=30s", **k)
    wait_for(lambda: len(replicasets(server, ns)) == 3, what="a third ReplicaSet")
    d = get(server, ns, "deployment", "web")
    assert "kubectl.kubernetes.io/restartedAt" in d["spec"]["template"]["metadata"]["annotations"]
    assert d["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "3"


def test_bad_image_is_stuck_with_the_old_version_serving(server, ns, kubectl="/usr/bin/kubectl"):
    k = {"kubectl": kubectl}
    apply(server, ns, deployment("stuck", 3, progressDeadlineSeconds=3))
    server.kubectl("rollout", "status", "deployment/stuck", "-n", ns, "--timeout=30s", **k)
    server.kubectl("patch", "deployment/stuck", "-n", ns, "-p", json.dumps({"spec": {"template": {
        "metadata": {"annotations": NEVER_READY},
        "spec": {"containers": [{"name": "app", "image": "jonbaier/pod-scaling:42.0"}]}}}}), **k)
    status = server.kubectl("rollout", "status", "deployment/stuck", "-n", ns, "--timeout=40s", check=False, **k)
    assert status.returncode != 0
    assert 'deployment "stuck" exceeded its progress deadline' in status.stderr
    d = get(server, ns, "deployment", "stuck")
    cond = next(c for c in d["status"]["conditions"] if c["type"] == "Progressing")
    assert (cond["status"], cond["reason"]) == ("False", "ProgressDeadlineExceeded")
    new = next(rs for rs in replicasets(server, ns).values()
               if rs["spec"]["template"]["spec"]["containers"][0]["image"].endswith(":42.0"))
    assert cond["message"] == f'ReplicaSet "{new["metadata"]["name"]}" has timed out progressing.'
    # maxUnavailable 25% of 3 rounds down to 0: all three old pods keep serving, Ready.
    old = [p for p in running_pods(server, ns, "app=stuck") if p["spec"]["containers"][0]["image"].endswith(":0.1")]
    assert len(old) == 3 and all(c["status"] == "True" for p in old for c in p["status"]["conditions"]
                                 if c["type"] == "Ready")
    assert d["status"]["availableReplicas"] == 3 and d["status"]["unavailableReplicas"] == 1
    avail = next(c for c in d["status"]["conditions"] if c["type"] == "Available")
    assert avail["status"] == "True" and avail["reason"] == "MinimumReplicasAvailable"
    described = server.kubectl("describe", "deployment", "stuck", "-n", ns, **k).stdout
    assert "ProgressDeadlineExceeded" in described
    # The way out: undo to the working revision.
    server.kubectl("rollout", "undo", "deployment/stuck", "-n", ns, **k)
    server.kubectl("rollout", "status", "deployment/stuck", "-n", ns, "--timeout=30s", **k)
    wait_for(lambda: images(server, ns, "app=stuck") == ["jonbaier/pod-scaling:0.1"] * 3, what="recovered")


def test_legacy_rollback_to(server, ns):
    """extensions/v1beta1's spec.rollbackTo (what the old rollback subresource set) rolls back."""
    server.kubectl("create", "-n", ns, "-f", str(BOOK / "Chapter05" / "node-js-deploy.yaml"))
    server.kubectl("rollout", "status", "deployment/node-js-deploy", "-n", ns, "--timeout=30s")
    server.kubectl("set", "image", "deployment/node-js-deploy", "node-js-deploy=jonbaier/pod-scaling:0.2", "-n", ns)
    server.kubectl("rollout", "status", "deployment/node-js-deploy", "-n", ns, "--timeout=30s")
    server.kubectl("patch", "deployments.v1beta1.extensions", "node-js-deploy", "-n", ns, "--type=merge",
                   "-p", '{"spec": {"rollbackTo": {"revision": 1}}}')
    wait_for(lambda: images(server, ns, "name=node-js-deploy") == ["jonbaier/pod-scaling:0.1"], what="rolled back")
    d = get(server, ns, "deployment", "node-js-deploy")
    assert "deprecated.deployment.rollback.to" not in d["metadata"].get("annotations", {})
    assert d["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "3"
    events = get(server, ns, "events", "--field-selector", "reason=DeploymentRollback")["items"]
    assert [e["message"] for e in events] == ['Rolled back deployment "node-js-deploy" to revision 1']


def test_recreate_scales_old_down_before_new_up(server, ns):
    apply(server, ns, deployment("recreate", 2, strategy={"type": "Recreate"}))
    server.kubectl("rollout", "status", "deployment/recreate", "-n", ns, "--timeout=30s")
    server.kubectl("set", "image", "deployment/recreate", "app=jonbaier/pod-scaling:0.2", "-n", ns)
    server.kubectl("rollout", "status", "deployment/recreate", "-n", ns, "--timeout=30s")
    wait_for(lambda: images(server, ns, "app=recreate") == ["jonbaier/pod-scaling:0.2"] * 2, what="0.2 x2")
    events = wait_for(lambda: len(e := deployment_events(server, ns, "recreate")) >= 3 and e)
    assert events[1].startswith("Scaled down replica set recreate-") and events[1].endswith("from 2 to 0")
    assert events[2].startswith("Scaled up replica set recreate-") and events[2].endswith("from 0 to 2")


def test_scaling_mid_rollout_is_proportional(server, ns):
    apply(server, ns, deployment("prop", 10, strategy={"type": "RollingUpdate",
                                                       "rollingUpdate": {"maxSurge": 3, "maxUnavailable": 2}}))
    server.kubectl("rollout", "status", "deployment/prop", "-n", ns, "--timeout=30s")
    [old_name] = replicasets(server, ns)
    server.kubectl("patch", "deployment/prop", "-n", ns, "-p", json.dumps({"spec": {"template": {
        "metadata": {"annotations": NEVER_READY}}}}))

    def sizes():
        rss = replicasets(server, ns)
        return {("old" if n == old_name else "new"): rs["spec"]["replicas"] for n, rs in rss.items()}
    # Surge 3 and 2 unavailable: old 8, new 5 (13 = 10 + 3), and there it stays, the new pods unready.
    wait_for(lambda: sizes() == {"old": 8, "new": 5}, what="old 8 / new 5")
    server.kubectl("scale", "deployment/prop", "--replicas=20", "-n", ns)
    # 23 = 20 + 3 spread by size: old 8*23/13 -> 14, new 5*23/13 -> 9.
    wait_for(lambda: sizes() == {"old": 14, "new": 9}, what="old 14 / new 9")
    for rs in replicasets(server, ns).values():
        assert rs["metadata"]["annotations"]["deployment.kubernetes.io/desired-replicas"] == "20"
        assert rs["metadata"]["annotations"]["deployment.kubernetes.io/max-replicas"] == "23"


def test_revision_history_limit_and_cascading_delete(server, ns):
    from kubernetes import client, config
    apply(server, ns, deployment("hist", 1, revisionHistoryLimit=1))
    for tag in ("0.2", "0.3", "0.4"):
        server.kubectl("set", "image", "deployment/hist", f"app=jonbaier/pod-scaling:{tag}", "-n", ns)
        server.kubectl("rollout", "status", "deployment/hist", "-n", ns, "--timeout=30s")
    rss = wait_for(lambda: len(r := replicasets(server, ns)) == 2 and r, what="history cut to 1 old")
    revisions = sorted(int(rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"]) for rs in rss.values())
    assert revisions == [3, 4]

    api = client.AppsV1Api(config.new_client_from_config(str(server.kubeconfig)))
    api.delete_namespaced_deployment("hist", ns, body=client.V1DeleteOptions(propagation_policy="Background"))
    wait_for(lambda: not get(server, ns, "rs")["items"], what="ReplicaSets collected")
    wait_for(lambda: not [p for p in get(server, ns, "pods")["items"] if not p["metadata"].get("deletionTimestamp")],
             what="pods collected")


def test_apply_yaml_roll_out_and_kubectl_get_columns(server, ns, kubectl="/usr/bin/kubectl"):
    doc = deployment("applied", 2)
    doc["metadata"]["annotations"] = {"kubernetes.io/change-cause": "first"}
    server.kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump(doc), kubectl=kubectl)
    server.kubectl("rollout", "status", "deployment/applied", "-n", ns, "--timeout=30s", kubectl=kubectl)
    row = server.kubectl("get", "deploy", "applied", "-n", ns, kubectl=kubectl).stdout.split("\n")[1].split()
    assert row[:4] == ["applied", "2/2", "2", "2"]
    [rs] = replicasets(server, ns).values()
    assert rs["metadata"]["annotations"]["kubernetes.io/change-cause"] == "first"
    assert "kubectl.kubernetes.io/last-applied-configuration" not in rs["metadata"]["annotations"]


def test_failed_pod_creation_shows_as_replica_failure(server, ns):
    d = deployment("nosa", 2)
    d["spec"]["template"]["spec"]["serviceAccountName"] = "missing"
    apply(server, ns, d)

    def failure():
        conds = get(server, ns, "deployment", "nosa").get("status", {}).get("conditions", [])
        return next((c for c in conds if c["type"] == "ReplicaFailure"), None)
    cond = wait_for(failure, what="ReplicaFailure")
    assert (cond["status"], cond["reason"]) == ("True", "FailedCreate")
    assert cond["message"].endswith('serviceaccount "missing" not found')
    server.kubectl("create", "serviceaccount", "missing", "-n", ns)
    server.kubectl("rollout", "status", "deployment/nosa", "-n", ns, "--timeout=40s")
    wait_for(lambda: failure() is None, what="ReplicaFailure cleared")
