"""The StatefulSet controller: stable names and claims, ordered and parallel pod management, rolling
updates with partitions, OnDelete, ControllerRevisions, and the book's chapter 6 whaleset on
simulated nodes. Most tests play the kubelet themselves (pods/status), with a scheduler name nobody
serves, so that they decide when a pod is Running and Ready."""
from __future__ import annotations

import json
import time

import pytest

from helpers.cluster import BOOK, unique, wait_for
from helpers.http import Api


@pytest.fixture(scope="module")
def api(server):
    return Api(server.kubeconfig)


@pytest.fixture
def ns(server):
    name = unique("sts")
    server.kubectl("create", "namespace", name)
    yield name
    server.kubectl("delete", "namespace", name, "--wait=false", check=False)


def statefulset(name: str, replicas: int = 3, image: str = "busybox:1", claims: bool = True, **spec) -> dict:
    doc = {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": name},
           "spec": {"serviceName": name, "replicas": replicas, "selector": {"matchLabels": {"app": name}},
                    "template": {"metadata": {"labels": {"app": name}},
                                 "spec": {"schedulerName": "no-such-scheduler",
                                          "containers": [{"name": "c", "image": image,
                                                          "volumeMounts": [{"name": "www", "mountPath": "/www"}]
                                                          if claims else []}]}},
                    **spec}}
    if claims:
        doc["spec"]["volumeClaimTemplates"] = [{"metadata": {"name": "www"}, "spec": {
            "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]
    return doc


def apply(server, doc: dict, ns: str) -> None:
    server.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(doc))


def pod(api, ns: str, name: str) -> dict | None:
    status, body, _ = api.request("GET", f"/api/v1/namespaces/{ns}/pods/{name}")
    return body if status == 200 else None


def pod_names(api, ns: str) -> list[str]:
    _, body, _ = api.request("GET", f"/api/v1/namespaces/{ns}/pods")
    return sorted(p["metadata"]["name"] for p in body["items"] if not p["metadata"].get("deletionTimestamp"))


def set_phase(api, ns: str, name: str, phase: str = "Running", ready: bool = True) -> None:
    """What a kubelet reports: the phase and the Ready condition."""
    for _ in range(20):
        body = pod(api, ns, name)
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        body["status"] = {"phase": phase, "conditions": [
            {"type": "Ready", "status": "True" if ready else "False", "lastTransitionTime": now}]}
        status, resp, _ = api.request("PUT", f"/api/v1/namespaces/{ns}/pods/{name}/status", body)
        if status == 200:
            return
        assert status == 409, resp
    raise AssertionError("could not write pod status")


def make_ready(api, ns: str, name: str) -> dict:
    wait_for(lambda: pod(api, ns, name))
    set_phase(api, ns, name)
    return pod(api, ns, name)


def sts(server, ns: str, name: str) -> dict:
    return server.kubectl_json("get", "statefulset", name, "-n", ns)


def events(server, ns: str, name: str) -> list[tuple[str, str]]:
    items = server.kubectl_json("get", "events", "-n", ns, "--field-selector", f"involvedObject.name={name}")["items"]
    return [(e["reason"], e["message"]) for e in items]


def list_rv(api, ns: str) -> str:
    return api.request("GET", f"/api/v1/namespaces/{ns}/pods")[1]["metadata"]["resourceVersion"]


def watch_events(api, ns: str, rv: str, seconds: int = 3) -> list[tuple[str, str]]:
    """The pod events of the namespace after `rv`, for `seconds`, in order."""
    _, text, _ = api.request("GET", f"/api/v1/namespaces/{ns}/pods?watch=1&resourceVersion={rv}"
                                    f"&timeoutSeconds={seconds}")
    lines = text if isinstance(text, str) else json.dumps(text)
    out = []
    for line in lines.splitlines():
        if line.strip():
            ev = json.loads(line)
            out.append((ev["type"], ev["object"]["metadata"]["name"]))
    return out


def test_ordered_creation_identity_and_claims(server, api, ns):
    apply(server, statefulset("web"), ns)
    web0 = wait_for(lambda: pod(api, ns, "web-0"))
    time.sleep(0.5)  # OrderedReady: nothing more until web-0 is Running and Ready
    assert pod_names(api, ns) == ["web-0"]
    labels = web0["metadata"]["labels"]
    assert labels["statefulset.kubernetes.io/pod-name"] == "web-0"
    assert labels["apps.kubernetes.io/pod-index"] == "0"
    assert labels["app"] == "web"
    assert web0["spec"]["hostname"] == "web-0" and web0["spec"]["subdomain"] == "web"
    ref = web0["metadata"]["ownerReferences"][0]
    assert ref["kind"] == "StatefulSet" and ref["name"] == "web" and ref["controller"] is True
    assert {"name": "www", "persistentVolumeClaim": {"claimName": "www-web-0"}} in web0["spec"]["volumes"]
    claim = server.kubectl_json("get", "pvc", "www-web-0", "-n", ns)
    assert claim["metadata"]["labels"] == {"app": "web"}
    wait_for(lambda: server.kubectl_json("get", "pvc", "www-web-0", "-n", ns)["status"]["phase"] == "Bound")
    make_ready(api, ns, "web-0")
    wait_for(lambda: pod(api, ns, "web-1"))
    time.sleep(0.3)
    assert pod_names(api, ns) == ["web-0", "web-1"]
    make_ready(api, ns, "web-1")
    make_ready(api, ns, "web-2")
    status = wait_for(lambda: (s := sts(server, ns, "web")["status"]).get("readyReplicas") == 3 and s)
    revision = labels["controller-revision-hash"]
    assert status["replicas"] == 3 and status["currentReplicas"] == 3 and status["updatedReplicas"] == 3
    assert status["availableReplicas"] == 3
    assert status["currentRevision"] == status["updateRevision"] == revision
    assert status["observedGeneration"] == 1 and status["collisionCount"] == 0
    rev = server.kubectl_json("get", "controllerrevision", revision, "-n", ns)
    assert rev["revision"] == 1 and rev["metadata"]["ownerReferences"][0]["name"] == "web"
    assert rev["data"]["spec"]["template"]["$patch"] == "replace"
    assert revision.startswith("web-")
    got = events(server, ns, "web")
    assert ("SuccessfulCreate", "create Claim www-web-0 Pod web-0 in StatefulSet web success") in got
    assert ("SuccessfulCreate", "create Pod web-2 in StatefulSet web successful") in got
    assert "statefulset-controller" in server.kubectl("describe", "statefulset", "web", "-n", ns).stdout
    out = server.kubectl("rollout", "status", "statefulset/web", "-n", ns, "--timeout=10s").stdout
    # The defaulted partition (0) makes kubectl report a partitioned roll-out, as on any cluster.
    assert "partitioned roll out complete: 3 new pods have been updated" in out
    table = server.kubectl("get", "statefulset", "web", "-n", ns).stdout
    assert "3/3" in table
    pvcs = server.kubectl("get", "pvc", "-n", ns, "-o", "name").stdout.split()
    assert pvcs == [f"persistentvolumeclaim/www-web-{i}" for i in range(3)]


def test_scale_down_in_reverse_order_keeps_claims(server, api, ns):
    apply(server, statefulset("db", replicas=3), ns)
    for i in range(3):
        make_ready(api, ns, f"db-{i}")
    wait_for(lambda: sts(server, ns, "db")["status"].get("readyReplicas") == 3)
    rv = list_rv(api, ns)
    server.kubectl("scale", "statefulset", "db", "--replicas=1", "-n", ns)
    wait_for(lambda: pod_names(api, ns) == ["db-0"])
    deleted = [name for kind, name in watch_events(api, ns, rv, 1) if kind == "DELETED"]
    assert deleted == ["db-2", "db-1"]
    # Claims outlive scale-down (retention policy Retain); scaling up again reuses them.
    pvcs = server.kubectl("get", "pvc", "-n", ns, "-o", "name").stdout.split()
    assert pvcs == [f"persistentvolumeclaim/www-db-{i}" for i in range(3)]
    uid = server.kubectl_json("get", "pvc", "www-db-1", "-n", ns)["metadata"]["uid"]
    server.kubectl("scale", "statefulset", "db", "--replicas=2", "-n", ns)
    wait_for(lambda: pod(api, ns, "db-1"))
    assert server.kubectl_json("get", "pvc", "www-db-1", "-n", ns)["metadata"]["uid"] == uid
    assert ("SuccessfulDelete", "delete Pod db-2 in StatefulSet db successful") in events(server, ns, "db")


def test_parallel_creates_all_at_once_and_failed_pods_are_recreated(server, api, ns):
    apply(server, statefulset("par", replicas=3, claims=False, podManagementPolicy="Parallel"), ns)
    wait_for(lambda: pod_names(api, ns) == ["par-0", "par-1", "par-2"])
    make_ready(api, ns, "par-0")
    old_uid = pod(api, ns, "par-1")["metadata"]["uid"]
    set_phase(api, ns, "par-1", "Failed", ready=False)
    wait_for(lambda: (p := pod(api, ns, "par-1")) and p["metadata"]["uid"] != old_uid)
    assert ("RecreatingFailedPod", f"StatefulSet {ns}/par is recreating failed Pod par-1") in events(server, ns, "par")


def test_rolling_update_with_partition_history_and_undo(server, api, ns):
    apply(server, statefulset("app", replicas=3, claims=False,
                              updateStrategy={"type": "RollingUpdate", "rollingUpdate": {"partition": 2}}), ns)
    for i in range(3):
        make_ready(api, ns, f"app-{i}")
    first = wait_for(lambda: (s := sts(server, ns, "app")["status"]).get("readyReplicas") == 3 and s)["updateRevision"]
    server.kubectl("set", "image", "statefulset/app", "c=busybox:2", "-n", ns)
    second = wait_for(lambda: (r := sts(server, ns, "app")["status"]["updateRevision"]) != first and r)
    # Only ordinals at or above the partition move to the new revision, highest first.
    new2 = wait_for(lambda: (p := pod(api, ns, "app-2")) and p["metadata"]["labels"]["controller-revision-hash"]
                    == second and p)
    assert new2["spec"]["containers"][0]["image"] == "busybox:2"
    set_phase(api, ns, "app-2")
    status = wait_for(lambda: (s := sts(server, ns, "app")["status"]).get("readyReplicas") == 3 and
                      s.get("updatedReplicas") == 1 and s)
    assert status["currentRevision"] == first and status["currentReplicas"] == 2
    for i in (0, 1):
        assert pod(api, ns, f"app-{i}")["metadata"]["labels"]["controller-revision-hash"] == first
    out = server.kubectl("rollout", "status", "statefulset/app", "-n", ns, "--timeout=5s").stdout
    assert "partitioned roll out complete: 1 new pods have been updated" in out
    # Partition 0: app-1, then app-0, each once the one before is back and Ready.
    server.kubectl("patch", "statefulset", "app", "-n", ns, "-p",
                   '{"spec":{"updateStrategy":{"rollingUpdate":{"partition":0}}}}')
    for i in (1, 0):
        wait_for(lambda i=i: (p := pod(api, ns, f"app-{i}")) and
                 p["metadata"]["labels"]["controller-revision-hash"] == second)
        set_phase(api, ns, f"app-{i}")
    status = wait_for(lambda: (s := sts(server, ns, "app")["status"]).get("currentRevision") == second and s)
    assert status["updatedReplicas"] == 3 and status["currentReplicas"] == 3
    history = server.kubectl("rollout", "history", "statefulset/app", "-n", ns).stdout
    assert "REVISION" in history and "\n1 " in history and "\n2 " in history
    # Undo: the old template comes back as revision 3 (the same ControllerRevision, renumbered).
    server.kubectl("rollout", "undo", "statefulset/app", "-n", ns)
    wait_for(lambda: sts(server, ns, "app")["status"]["updateRevision"] == first)
    rev = server.kubectl_json("get", "controllerrevision", first, "-n", ns)
    assert rev["revision"] == 3
    wait_for(lambda: pod(api, ns, "app-2") and pod(api, ns, "app-2")["metadata"]["labels"][
        "controller-revision-hash"] == first)
    assert pod(api, ns, "app-2")["spec"]["containers"][0]["image"] == "busybox:1"


def test_on_delete_replaces_only_deleted_pods(server, api, ns):
    apply(server, statefulset("od", replicas=2, claims=False, updateStrategy={"type": "OnDelete"}), ns)
    for i in range(2):
        make_ready(api, ns, f"od-{i}")
    first = wait_for(lambda: (s := sts(server, ns, "od")["status"]).get("readyReplicas") == 2 and s)["updateRevision"]
    server.kubectl("set", "image", "statefulset/od", "c=busybox:2", "-n", ns)
    second = wait_for(lambda: (r := sts(server, ns, "od")["status"]["updateRevision"]) != first and r)
    time.sleep(0.5)
    assert all(pod(api, ns, f"od-{i}")["metadata"]["labels"]["controller-revision-hash"] == first for i in range(2))
    server.kubectl("delete", "pod", "od-0", "-n", ns)
    wait_for(lambda: (p := pod(api, ns, "od-0")) and p["metadata"]["labels"]["controller-revision-hash"] == second)
    assert pod(api, ns, "od-1")["metadata"]["labels"]["controller-revision-hash"] == first


def test_book_chapter6_whaleset_on_simulated_nodes(server, simulated_nodes, ns):
    server.kubectl("delete", "storageclass", "solidstate", "--ignore-not-found")
    server.kubectl("create", "-f", str(BOOK / "Chapter06/solidstate-sc.yaml"))
    try:
        api = Api(server.kubeconfig)
        rv = list_rv(api, ns)
        server.kubectl("create", "-n", ns, "-f", str(BOOK / "Chapter06/sayhey-svc.yaml"))
        server.kubectl("create", "-n", ns, "-f", str(BOOK / "Chapter06/sayhey-statefulset.yaml"))
        wait_for(lambda: sts(server, ns, "whaleset")["status"].get("readyReplicas") == 3, timeout=45)
        # whaleset-0, -1, -2, in that order: each created only once the one before was Ready.
        added = [name for kind, name in watch_events(api, ns, rv, 1) if kind == "ADDED"]
        assert added == ["whaleset-0", "whaleset-1", "whaleset-2"]
        pods = server.kubectl("get", "pods", "-n", ns).stdout
        assert all(f"whaleset-{i} " in pods for i in range(3)) and pods.count("Running") == 3
        assert "3/3" in server.kubectl("get", "statefulsets", "-n", ns).stdout
        for i in range(3):
            pvc = server.kubectl_json("get", "pvc", f"www-whaleset-{i}", "-n", ns)
            assert pvc["status"]["phase"] == "Bound"
            assert pvc["status"]["capacity"] == {"storage": "1Gi"} and pvc["status"]["accessModes"] == ["ReadWriteOnce"]
            pv = server.kubectl_json("get", "pv", pvc["spec"]["volumeName"])
            assert pv["spec"]["claimRef"]["name"] == f"www-whaleset-{i}"
            assert pv["metadata"]["annotations"]["pv.kubernetes.io/provisioned-by"] == "kubernetes.io/gce-pd"
            assert pv["spec"]["storageClassName"] == "solidstate"
        pv_table = server.kubectl("get", "pv").stdout
        assert all(f"{ns}/www-whaleset-{i}" in pv_table for i in range(3)) and "RWO" in pv_table
        pod0 = server.kubectl_json("get", "pod", "whaleset-0", "-n", ns)
        assert pod0["spec"]["hostname"] == "whaleset-0" and pod0["spec"]["subdomain"] == "sayhey-svc"
        assert pod0["spec"]["nodeName"] in simulated_nodes.node_names
    finally:
        server.kubectl("delete", "statefulset", "whaleset", "-n", ns, "--wait=false", check=False)
        server.kubectl("delete", "pvc", "--all", "-n", ns, "--wait=false", check=False)
        server.kubectl("delete", "storageclass", "solidstate", "--ignore-not-found", check=False)


def test_claim_retention_policy_delete(server, api, ns):
    doc = statefulset("ret", replicas=2, persistentVolumeClaimRetentionPolicy={"whenScaled": "Delete",
                                                                              "whenDeleted": "Delete"})
    apply(server, doc, ns)
    for i in range(2):
        make_ready(api, ns, f"ret-{i}")
    wait_for(lambda: sts(server, ns, "ret")["status"].get("readyReplicas") == 2)
    claim = server.kubectl_json("get", "pvc", "www-ret-0", "-n", ns)
    assert [r["kind"] for r in claim["metadata"]["ownerReferences"]] == ["StatefulSet"]
    # whenScaled Delete: the claim of a scaled-away ordinal goes once its pod has gone.
    server.kubectl("scale", "statefulset", "ret", "--replicas=1", "-n", ns)
    wait_for(lambda: server.kubectl("get", "pvc", "-n", ns, "-o", "name").stdout.split()
             == ["persistentvolumeclaim/www-ret-0"])
    # whenDeleted Delete: the garbage collector removes the claims with the set.
    server.kubectl("delete", "statefulset", "ret", "-n", ns)
    wait_for(lambda: not server.kubectl("get", "pvc", "-n", ns, "-o", "name").stdout.split(), timeout=30)


def test_orphans_named_as_members_are_adopted(server, api, ns):
    orphan = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "adopt-0", "labels": {"app": "adopt"}},
              "spec": {"schedulerName": "no-such-scheduler", "containers": [{"name": "c", "image": "busybox:1"}]}}
    apply(server, orphan, ns)
    uid = pod(api, ns, "adopt-0")["metadata"]["uid"]
    apply(server, statefulset("adopt", replicas=1, claims=False, updateStrategy={"type": "OnDelete"}), ns)
    adopted = wait_for(lambda: (p := pod(api, ns, "adopt-0")) and p["metadata"].get("ownerReferences") and p)
    assert adopted["metadata"]["uid"] == uid
    assert adopted["metadata"]["ownerReferences"][0]["name"] == "adopt"
    # A pod whose labels stop matching is released.
    server.kubectl("label", "pod", "adopt-0", "app=other", "--overwrite", "-n", ns)
    wait_for(lambda: not pod(api, ns, "adopt-0")["metadata"].get("ownerReferences"))


def test_killed_mid_rollout_the_set_ends_exact(fresh_server, simulator):
    """kill -9 of the whole control plane while pods and claims are being made: after the restart,
    exactly one pod, claim and volume per ordinal, and one revision."""
    srv = fresh_server
    simulator(srv, nodes=2, name_prefix="k-")
    srv.kubectl("create", "namespace", "kill")
    doc = statefulset("k", replicas=5)
    del doc["spec"]["template"]["spec"]["schedulerName"]
    apply(srv, doc, "kill")
    api = Api(srv.kubeconfig)
    wait_for(lambda: len(pod_names(api, "kill")) >= 2, timeout=30)
    srv.kill9()
    srv.start()
    wait_for(lambda: sts(srv, "kill", "k")["status"].get("readyReplicas") == 5, timeout=45)
    assert pod_names(api, "kill") == [f"k-{i}" for i in range(5)]
    claims = srv.kubectl_json("get", "pvc", "-n", "kill")["items"]
    assert sorted(c["metadata"]["name"] for c in claims) == [f"www-k-{i}" for i in range(5)]
    wait_for(lambda: all(c["status"]["phase"] == "Bound" for c in srv.kubectl_json("get", "pvc", "-n", "kill")["items"]))
    pvs = srv.kubectl_json("get", "pv")["items"]
    assert sorted(pv["spec"]["claimRef"]["name"] for pv in pvs) == [f"www-k-{i}" for i in range(5)]
    assert len(srv.kubectl_json("get", "controllerrevisions", "-n", "kill")["items"]) == 1


def test_max_unavailable_replaces_several_at_once(server, api, ns):
    apply(server, statefulset("mu", replicas=4, claims=False, podManagementPolicy="Parallel",
                              updateStrategy={"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 2}}), ns)
    for i in range(4):
        make_ready(api, ns, f"mu-{i}")
    first = wait_for(lambda: (s := sts(server, ns, "mu")["status"]).get("readyReplicas") == 4 and s)["updateRevision"]
    server.kubectl("set", "image", "statefulset/mu", "c=busybox:2", "-n", ns)
    second = wait_for(lambda: (r := sts(server, ns, "mu")["status"]["updateRevision"]) != first and r)

    def revision(i):
        p = pod(api, ns, f"mu-{i}")
        return p and p["metadata"]["labels"]["controller-revision-hash"]
    wait_for(lambda: revision(3) == second and revision(2) == second)
    time.sleep(0.3)  # two unavailable: the lower ordinals wait
    assert revision(1) == first and revision(0) == first
    set_phase(api, ns, "mu-3")
    set_phase(api, ns, "mu-2")
    wait_for(lambda: revision(1) == second and revision(0) == second)


def test_revision_history_limit_keeps_live_revisions(server, api, ns):
    apply(server, statefulset("hist", replicas=1, claims=False, revisionHistoryLimit=1,
                              updateStrategy={"type": "OnDelete"}), ns)
    make_ready(api, ns, "hist-0")
    first = wait_for(lambda: sts(server, ns, "hist")["status"].get("readyReplicas") == 1 and
                     sts(server, ns, "hist")["status"]["currentRevision"])
    for tag in ("2", "3", "4"):
        server.kubectl("set", "image", "statefulset/hist", f"c=busybox:{tag}", "-n", ns)
        wait_for(lambda tag=tag: any(r["data"]["spec"]["template"]["spec"]["containers"][0]["image"] == f"busybox:{tag}"
                                     for r in server.kubectl_json("get", "controllerrevisions", "-n", ns)["items"]))

    def revisions():
        return sorted(r["revision"] for r in server.kubectl_json("get", "controllerrevisions", "-n", ns)["items"])
    # Live: the current revision (hist-0 still runs it) and the update revision; of the rest, one is kept.
    wait_for(lambda: revisions() == [1, 3, 4])
    assert sts(server, ns, "hist")["status"]["currentRevision"] == first
