"""Every manifest of the book, created verbatim with real kubectl, reads back in today's versions."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from helpers.cluster import BOOK, unique

MANIFESTS = sorted(p for p in BOOK.rglob("*") if p.suffix in (".yaml", ".json"))
# What a real apiserver rejects: the placeholder Endpoints address that is not an IP, and the
# bundle's v1beta1-era JSON controller (its `id` field is unknown to strict decoding; its port name
# `nodejsPort` is not a valid IANA service name either). The book's text uses neither.
REJECTED = {
    "Chapter02/nodejs2-controller.json":
        'error when creating "{path}": strict decoding error: unknown field "id"',
    "Chapter03/nodejs-custom-endpoint.yaml":
        'The Endpoints "custom-service" is invalid: \n* subsets[0].addresses[0].ip: Invalid value: '
        '"<ENTER IP TO POINT SERVICE TO>": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)',
}


def _docs(path: Path) -> list[dict]:
    text = path.read_text()
    if path.suffix == ".json":
        return [json.loads(text)]
    return [d for d in yaml.safe_load_all(text) if d]


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: str(p.relative_to(BOOK)))
def test_book_manifest_creates_and_reads_back(server, path):
    rel = str(path.relative_to(BOOK))
    docs = _docs(path)
    for doc in docs:  # a manifest that creates a namespace gets a clean slate
        if doc["kind"] == "Namespace":
            server.kubectl("delete", "namespace", doc["metadata"]["name"], "--ignore-not-found", "--wait=true")
    named = {d["metadata"].get("namespace") for d in docs} - {None}
    ns = next(iter(named)) if named else unique("book")
    if server.kubectl("get", "namespace", ns, check=False).returncode != 0:
        server.kubectl("create", "namespace", ns)
    try:
        proc = server.kubectl("create", "-n", ns, "-f", str(path), check=False)
        if rel in REJECTED:
            assert proc.returncode != 0
            assert REJECTED[rel].format(path=path) in proc.stderr, proc.stderr
            return
        assert proc.returncode == 0, proc.stderr + server.log()
        assert "Warning" not in proc.stderr, proc.stderr
        for doc in docs:
            kind, name = doc["kind"], doc["metadata"]["name"]
            args = ["get", kind.lower(), name] + (["-n", ns] if kind not in CLUSTER_SCOPED else [])
            live = server.kubectl_json(*args)
            assert live["kind"] == kind
            assert live["metadata"]["name"] == name
            assert live["metadata"]["uid"] and live["metadata"]["resourceVersion"]
            assert live["apiVersion"] == CURRENT_VERSION.get(kind, doc["apiVersion"]), live["apiVersion"]
            if kind in ("Deployment", "ReplicaSet", "StatefulSet", "DaemonSet"):
                template_labels = doc["spec"]["template"]["metadata"]["labels"]
                selector = live["spec"]["selector"]
                if "selector" not in doc["spec"]:
                    assert selector == {"matchLabels": template_labels}
                else:
                    assert selector == doc["spec"]["selector"]
    finally:
        if not named:
            server.kubectl("delete", "namespace", ns, "--wait=false", check=False)
        for doc in docs:
            if doc["kind"] in CLUSTER_SCOPED:
                server.kubectl("delete", doc["kind"].lower(), doc["metadata"]["name"], "--wait=false", check=False)


CLUSTER_SCOPED = {"Namespace", "StorageClass", "PodSecurityPolicy", "PersistentVolume", "Node"}
# What `kubectl get` resolves each kind to on today's server.
CURRENT_VERSION = {
    "Deployment": "apps/v1", "ReplicaSet": "apps/v1", "StatefulSet": "apps/v1", "DaemonSet": "apps/v1",
    "Ingress": "networking.k8s.io/v1", "CronJob": "batch/v1", "StorageClass": "storage.k8s.io/v1",
    "HorizontalPodAutoscaler": "autoscaling/v2", "PodSecurityPolicy": "policy/v1beta1",
}


def test_legacy_deployment_reads_back_as_apps_v1_with_selector(server):
    ns = unique("legacy")
    server.kubectl("create", "namespace", ns)
    server.kubectl("create", "-n", ns, "-f", str(BOOK / "Chapter05/node-js-deploy.yaml"))
    out = server.kubectl("get", "deploy", "node-js-deploy", "-n", ns, "-o", "yaml").stdout
    live = yaml.safe_load(out)
    assert live["apiVersion"] == "apps/v1"
    assert live["spec"]["selector"] == {"matchLabels": {"name": "node-js-deploy"}}
    # The same object, read through the book's version.
    old = server.kubectl_json("get", "deployments.v1beta1.extensions", "node-js-deploy", "-n", ns)
    assert old["apiVersion"] == "extensions/v1beta1"
    assert old["spec"]["template"]["spec"]["containers"][0]["image"] == "jonbaier/pod-scaling:0.1"


def test_legacy_ingress_reads_back_in_both_versions(server):
    ns = unique("ing")
    server.kubectl("create", "namespace", ns)
    server.kubectl("create", "-n", ns, "-f", str(BOOK / "Chapter03/whale-ingress.yaml"))
    live = server.kubectl_json("get", "ingress", "whale-ingress", "-n", ns)
    backend = live["spec"]["rules"][0]["http"]["paths"][0]["backend"]
    assert backend == {"service": {"name": "whale-svc-a", "port": {"number": 80}}}
    old = server.kubectl_json("get", "ingresses.v1beta1.extensions", "whale-ingress", "-n", ns)
    assert old["spec"]["rules"][0]["http"]["paths"][0]["backend"] == {"serviceName": "whale-svc-a",
                                                                      "servicePort": 80}
