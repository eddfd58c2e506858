"""PersistentVolume binding, the built-in local provisioner, reclaim policies and the default
StorageClass, driven with real kubectl against the session server's controllers."""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from helpers.cluster import BOOK, unique, wait_for


@pytest.fixture
def ns(server):
    name = unique("pv")
    server.kubectl("create", "namespace", name)
    yield name
    server.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture
def cluster_objects(server):
    """Cluster-scoped objects the test made (PVs, StorageClasses), deleted afterwards."""
    made: list[tuple[str, str]] = []
    yield made
    for kind, name in made:
        server.kubectl("delete", kind, name, "--ignore-not-found", "--wait=false", check=False)


def apply(server, doc: dict, ns: str | None = None) -> None:
    args = ["apply", "-f", "-"] + (["-n", ns] if ns else [])
    server.kubectl(*args, input=json.dumps(doc))


def get(server, kind: str, name: str, ns: str | None = None) -> dict | None:
    args = ["get", kind, name, "-o", "json", "--ignore-not-found"] + (["-n", ns] if ns else [])
    out = server.kubectl(*args).stdout
    return json.loads(out) if out.strip() else None


def claim(name: str, size: str = "1Gi", modes=("ReadWriteOnce",), **spec) -> dict:
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name},
            "spec": {"accessModes": list(modes), "resources": {"requests": {"storage": size}}, **spec}}


def volume(name: str, size: str, modes=("ReadWriteOnce",), labels=None, **spec) -> dict:
    return {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": name, "labels": labels or {}},
            "spec": {"capacity": {"storage": size}, "accessModes": list(modes),
                     "hostPath": {"path": f"/tmp/{name}"}, **spec}}


def phase(server, kind: str, name: str, ns: str | None = None) -> str:
    obj = get(server, kind, name, ns)
    return (obj or {}).get("status", {}).get("phase", "")


def events(server, ns: str, name: str) -> list[tuple[str, str, str]]:
    items = server.kubectl_json("get", "events", "-n", ns, "--field-selector", f"involvedObject.name={name}")["items"]
    return [(e["type"], e["reason"], e["message"]) for e in items]


def test_default_storage_class_is_bootstrapped_and_assigned(server, ns):
    sc = server.kubectl_json("get", "storageclass", "local-path")
    assert sc["provisioner"] == "ketch.io/local-path"
    assert sc["reclaimPolicy"] == "Delete" and sc["volumeBindingMode"] == "Immediate"
    assert sc["metadata"]["annotations"]["storageclass.kubernetes.io/is-default-class"] == "true"
    assert "local-path (default)" in server.kubectl("get", "storageclass").stdout
    apply(server, claim("data"), ns)
    assert get(server, "pvc", "data", ns)["spec"]["storageClassName"] == "local-path"
    # A claim that asks for no class ("") or names one through the beta annotation keeps it.
    apply(server, claim("none", storageClassName=""), ns)
    assert get(server, "pvc", "none", ns)["spec"]["storageClassName"] == ""
    legacy = claim("legacy")
    legacy["metadata"]["annotations"] = {"volume.beta.kubernetes.io/storage-class": "other"}
    apply(server, legacy, ns)
    assert "storageClassName" not in get(server, "pvc", "legacy", ns)["spec"]


def test_local_path_provisions_binds_and_deletes_with_the_claim(server, ns):
    apply(server, claim("data", "2Gi"), ns)
    wait_for(lambda: phase(server, "pvc", "data", ns) == "Bound")
    pvc = get(server, "pvc", "data", ns)
    pv_name = "pvc-" + pvc["metadata"]["uid"]
    assert pvc["spec"]["volumeName"] == pv_name
    assert pvc["metadata"]["annotations"]["pv.kubernetes.io/bind-completed"] == "yes"
    assert pvc["metadata"]["annotations"]["pv.kubernetes.io/bound-by-controller"] == "yes"
    assert pvc["metadata"]["annotations"]["volume.kubernetes.io/storage-provisioner"] == "ketch.io/local-path"
    assert pvc["status"]["capacity"] == {"storage": "2Gi"}
    assert pvc["status"]["accessModes"] == ["ReadWriteOnce"]
    pv = wait_for(lambda: (p := get(server, "pv", pv_name)) and p["status"].get("phase") == "Bound" and p)
    assert pv["metadata"]["annotations"]["pv.kubernetes.io/provisioned-by"] == "ketch.io/local-path"
    assert pv["spec"]["persistentVolumeReclaimPolicy"] == "Delete"
    assert pv["spec"]["storageClassName"] == "local-path"
    assert pv["spec"]["claimRef"]["name"] == "data" and pv["spec"]["claimRef"]["uid"] == pvc["metadata"]["uid"]
    path = Path(pv["spec"]["hostPath"]["path"])
    assert path.name == f"{pv_name}_{ns}_data"
    assert path.parent == (server.data_dir / "data" / "storage").resolve()
    assert path.is_dir()
    table = server.kubectl("get", "pvc", "-n", ns).stdout
    assert "data" in table and "Bound" in table and pv_name in table and "2Gi" in table and "RWO" in table
    assert ("Normal", "ProvisioningSucceeded",
            f"Successfully provisioned volume {pv_name} using ketch.io/local-path") in \
        wait_for(lambda: (e := events(server, ns, "data")) and any(r == "ProvisioningSucceeded" for _, r, _ in e) and e)
    assert "persistentvolume-controller" in server.kubectl("describe", "pvc", "data", "-n", ns).stdout
    # Reclaim policy Delete: the claim goes, the volume and its directory go too.
    server.kubectl("delete", "pvc", "data", "-n", ns)
    wait_for(lambda: get(server, "pv", pv_name) is None)
    assert not path.exists()


def test_static_volumes_bind_by_class_modes_size_and_selector(server, ns, cluster_objects):
    tag = unique("s")
    pvs = {f"{tag}-small": volume(f"{tag}-small", "1Gi", labels={"tier": tag}),
           f"{tag}-big": volume(f"{tag}-big", "10Gi", labels={"tier": tag}),
           f"{tag}-mid": volume(f"{tag}-mid", "5Gi", labels={"tier": tag}),
           f"{tag}-rox": volume(f"{tag}-rox", "5Gi", modes=("ReadOnlyMany",), labels={"tier": tag}),
           f"{tag}-other": volume(f"{tag}-other", "5Gi", labels={"tier": "elsewhere"})}
    for name, pv in pvs.items():
        pv["spec"]["storageClassName"] = ""
        cluster_objects.append(("pv", name))
        apply(server, pv)
    for name in pvs:
        wait_for(lambda n=name: phase(server, "pv", n) == "Available")
    # Smallest volume that fits 3Gi, with the claim's mode, matching the selector: the 5Gi one.
    apply(server, claim("want", "3Gi", storageClassName="", selector={"matchLabels": {"tier": tag}}), ns)
    wait_for(lambda: phase(server, "pvc", "want", ns) == "Bound")
    pvc = get(server, "pvc", "want", ns)
    assert pvc["spec"]["volumeName"] == f"{tag}-mid"
    assert pvc["status"]["capacity"] == {"storage": "5Gi"}
    pv = wait_for(lambda: (p := get(server, "pv", f"{tag}-mid")) and p["status"].get("phase") == "Bound" and p)
    assert pv["spec"]["claimRef"]["namespace"] == ns and pv["spec"]["claimRef"]["name"] == "want"
    assert pv["metadata"]["annotations"]["pv.kubernetes.io/bound-by-controller"] == "yes"
    assert f"{ns}/want" in server.kubectl("get", "pv", f"{tag}-mid").stdout
    # ReadOnlyMany is served only by the volume that offers it.
    apply(server, claim("ro", "1Gi", modes=("ReadOnlyMany",), storageClassName="",
                        selector={"matchLabels": {"tier": tag}}), ns)
    wait_for(lambda: phase(server, "pvc", "ro", ns) == "Bound")
    assert get(server, "pvc", "ro", ns)["spec"]["volumeName"] == f"{tag}-rox"
    # Retain (a static volume's default): the claim goes, the volume stays Released with its claimRef.
    server.kubectl("delete", "pvc", "want", "-n", ns)
    wait_for(lambda: phase(server, "pv", f"{tag}-mid") == "Released")
    assert get(server, "pv", f"{tag}-mid")["spec"]["claimRef"]["name"] == "want"


def test_pre_bound_volume_and_claim(server, ns, cluster_objects):
    tag = unique("pre")
    # A volume reserved for a claim by its claimRef (no uid) goes to that claim only.
    reserved = volume(f"{tag}-reserved", "1Gi", storageClassName="",
                      claimRef={"namespace": ns, "name": "mine"})
    cluster_objects += [("pv", f"{tag}-reserved"), ("pv", f"{tag}-named"), ("pv", f"{tag}-tiny")]
    apply(server, reserved)
    apply(server, claim("mine", "1Gi", storageClassName=""), ns)
    wait_for(lambda: phase(server, "pvc", "mine", ns) == "Bound")
    assert get(server, "pvc", "mine", ns)["spec"]["volumeName"] == f"{tag}-reserved"
    assert "pv.kubernetes.io/bound-by-controller" not in get(server, "pv", f"{tag}-reserved")["metadata"].get(
        "annotations", {})
    # A claim naming its volume (spec.volumeName) gets exactly that one.
    apply(server, volume(f"{tag}-named", "2Gi", storageClassName=""))
    apply(server, claim("named", "1Gi", storageClassName="", volumeName=f"{tag}-named"), ns)
    wait_for(lambda: phase(server, "pvc", "named", ns) == "Bound")
    assert get(server, "pv", f"{tag}-named")["spec"]["claimRef"]["name"] == "named"
    # ... and waits, with an event, when that volume cannot serve it.
    apply(server, volume(f"{tag}-tiny", "1Mi", storageClassName=""))
    apply(server, claim("toobig", "1Gi", storageClassName="", volumeName=f"{tag}-tiny"), ns)
    msg = f'Cannot bind to requested volume "{tag}-tiny": requested PV is too small'
    wait_for(lambda: ("Warning", "FailedBinding", msg) in events(server, ns, "toobig"))
    assert phase(server, "pvc", "toobig", ns) == "Pending"


def test_claim_without_class_or_volume_waits_with_failed_binding(server, ns):
    apply(server, claim("lonely", "7Ti", storageClassName=""), ns)
    wait_for(lambda: ("Normal", "FailedBinding",
                      "no persistent volumes available for this claim and no storage class is set")
             in events(server, ns, "lonely"))
    assert phase(server, "pvc", "lonely", ns) == "Pending"
    described = server.kubectl("describe", "pvc", "lonely", "-n", ns).stdout
    assert "FailedBinding" in described and "no storage class is set" in described


def test_external_provisioner_and_missing_class(server, ns, cluster_objects):
    sc = unique("ext")
    cluster_objects.append(("storageclass", sc))
    apply(server, {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": sc},
                   "provisioner": "example.com/nfs"})
    apply(server, claim("ext", storageClassName=sc), ns)
    msg = ("Waiting for a volume to be created either by the external provisioner 'example.com/nfs' or manually by "
           "the system administrator. If volume creation is delayed, please verify that the provisioner is running "
           "and correctly registered.")
    wait_for(lambda: ("Normal", "ExternalProvisioning", msg) in events(server, ns, "ext"))
    pvc = get(server, "pvc", "ext", ns)
    assert pvc["metadata"]["annotations"]["volume.kubernetes.io/storage-provisioner"] == "example.com/nfs"
    assert pvc["status"]["phase"] == "Pending"
    missing = unique("nosuch")
    apply(server, claim("missing", storageClassName=missing), ns)
    wait_for(lambda: ("Warning", "ProvisioningFailed", f'storageclass.storage.k8s.io "{missing}" not found')
             in events(server, ns, "missing"))
    # The class appears later: the waiting claim is provisioned then.
    cluster_objects.append(("storageclass", missing))
    apply(server, {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": missing},
                   "provisioner": "ketch.io/local-path"})
    wait_for(lambda: phase(server, "pvc", "missing", ns) == "Bound")


def test_book_solidstate_class_serves_the_legacy_annotation(server, ns):
    server.kubectl("delete", "storageclass", "solidstate", "--ignore-not-found")
    server.kubectl("create", "-f", str(BOOK / "Chapter06/solidstate-sc.yaml"))
    try:
        # The book's demo-claim: a selector cannot be provisioned for, so it waits, as upstream.
        server.kubectl("create", "-n", ns, "-f", str(BOOK / "Chapter06/pvc-exmaple.yaml"))
        wait_for(lambda: ("Warning", "ProvisioningFailed",
                          'Failed to provision volume with StorageClass "solidstate": claim Selector is not supported')
                 in events(server, ns, "demo-claim"))
        assert phase(server, "pvc", "demo-claim", ns) == "Pending"
        # Without the selector, the legacy annotation's class provisions a local volume.
        doc = claim("ssd")
        doc["metadata"]["annotations"] = {"volume.beta.kubernetes.io/storage-class": "solidstate"}
        apply(server, doc, ns)
        wait_for(lambda: phase(server, "pvc", "ssd", ns) == "Bound")
        pv = get(server, "pv", get(server, "pvc", "ssd", ns)["spec"]["volumeName"])
        assert pv["metadata"]["annotations"]["pv.kubernetes.io/provisioned-by"] == "kubernetes.io/gce-pd"
        assert pv["spec"]["storageClassName"] == "solidstate"
        assert pv["spec"]["persistentVolumeReclaimPolicy"] == "Delete"
        server.kubectl("delete", "pvc", "ssd", "-n", ns)
        wait_for(lambda: get(server, "pv", pv["metadata"]["name"]) is None)
    finally:
        server.kubectl("delete", "storageclass", "solidstate", "--ignore-not-found")


def test_wait_for_first_consumer_binds_on_the_consumers_node(server, ns, cluster_objects):
    sc = unique("wffc")
    cluster_objects.append(("storageclass", sc))
    apply(server, {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": sc},
                   "provisioner": "ketch.io/local-path", "volumeBindingMode": "WaitForFirstConsumer"})
    apply(server, claim("late", storageClassName=sc), ns)
    wait_for(lambda: ("Normal", "WaitForFirstConsumer", "waiting for first consumer to be created before binding")
             in events(server, ns, "late"))
    assert phase(server, "pvc", "late", ns) == "Pending"
    # A pod using the claim, bound to a node (as the scheduler would): the volume follows it there.
    apply(server, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "user"},
                   "spec": {"nodeName": "node-x", "containers": [{"name": "c", "image": "busybox"}],
                            "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "late"}}]}}, ns)
    wait_for(lambda: phase(server, "pvc", "late", ns) == "Bound")
    pvc = get(server, "pvc", "late", ns)
    assert pvc["metadata"]["annotations"]["volume.kubernetes.io/selected-node"] == "node-x"
    pv = get(server, "pv", pvc["spec"]["volumeName"])
    term = pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]
    assert term == {"key": "kubernetes.io/hostname", "operator": "In", "values": ["node-x"]}
    server.kubectl("delete", "pod", "user", "-n", ns, "--grace-period=0", "--force", check=False)


def test_claims_in_use_are_protected_until_their_pod_goes(server, ns):
    apply(server, claim("used"), ns)
    wait_for(lambda: phase(server, "pvc", "used", ns) == "Bound")
    pvc = get(server, "pvc", "used", ns)
    assert pvc["metadata"]["finalizers"] == ["kubernetes.io/pvc-protection"]
    pv_name = pvc["spec"]["volumeName"]
    assert get(server, "pv", pv_name)["metadata"]["finalizers"] == ["kubernetes.io/pv-protection"]
    apply(server, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "user"},
                   "spec": {"schedulerName": "no-such-scheduler", "containers": [{"name": "c", "image": "busybox"}],
                            "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "used"}}]}}, ns)
    server.kubectl("delete", "pvc", "used", "-n", ns, "--wait=false")
    time.sleep(0.5)
    pvc = get(server, "pvc", "used", ns)
    assert pvc["metadata"]["deletionTimestamp"] and pvc["status"]["phase"] == "Bound"
    assert "Terminating" in server.kubectl("get", "pvc", "used", "-n", ns).stdout
    server.kubectl("delete", "pod", "user", "-n", ns)
    wait_for(lambda: get(server, "pvc", "used", ns) is None)
    wait_for(lambda: get(server, "pv", pv_name) is None)  # Delete policy; pv-protection lets it go once Released


def test_claims_racing_for_few_volumes_never_share_one(server, ns, cluster_objects):
    tag = unique("race")
    for i in range(3):
        cluster_objects.append(("pv", f"{tag}-{i}"))
        apply(server, volume(f"{tag}-{i}", "1Gi", labels={"race": tag}, storageClassName=""))
    for i in range(3):
        wait_for(lambda i=i: phase(server, "pv", f"{tag}-{i}") == "Available")
    claims = [claim(f"c{i}", storageClassName="", selector={"matchLabels": {"race": tag}}) for i in range(6)]
    server.kubectl("create", "-n", ns, "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List",
                                                                    "items": claims}))

    def bound():
        items = server.kubectl_json("get", "pvc", "-n", ns)["items"]
        return [c for c in items if c["status"].get("phase") == "Bound"]
    wait_for(lambda: len(bound()) == 3)
    time.sleep(0.5)
    got = bound()
    assert len(got) == 3 and len({c["spec"]["volumeName"] for c in got}) == 3
    for c in got:
        pv = get(server, "pv", c["spec"]["volumeName"])
        assert pv["spec"]["claimRef"]["name"] == c["metadata"]["name"]
