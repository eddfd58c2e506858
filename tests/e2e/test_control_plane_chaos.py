"""Crash safety of the control plane: the controller manager and the scheduler are killed (-9) at
random moments of a 200-replica rolling update and restarted; the rollout must still end in
exactly the desired state — no lost, duplicated or orphaned pods, every pod bound once."""
from __future__ import annotations

import json
import random
import subprocess
import sys
import time

import pytest

from helpers.cluster import ROOT, ManagedProcess, start_server

REPLICAS = 200


class Component(ManagedProcess):
    """`ketch controller-manager` or `ketch scheduler` as a process of its own."""

    def __init__(self, server, command: str):
        self.server, self.command, self.proc = server, command, None
        self.log_path = server.data_dir / f"{command}.log"
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ketch.cli.main", self.command, "--kubeconfig", str(self.server.kubeconfig),
             "--no-leader-elect"], stdout=open(self.log_path, "ab"), stderr=subprocess.STDOUT, cwd=ROOT)


@pytest.fixture
def split_control_plane(tmp_path, simulator):
    srv = start_server(tmp_path, ["--disable-controller-manager", "--disable-scheduler"])
    parts = {name: Component(srv, name) for name in ("controller-manager", "scheduler")}
    try:
        simulator(srv, nodes=4, name_prefix="chaos-")
        for part in parts.values():
            part.start()
        yield srv, parts
    finally:
        for part in parts.values():
            part.stop()
        srv.stop()


def deployment(image: str) -> str:
    return json.dumps({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"replicas": REPLICAS, "selector": {"matchLabels": {"app": "web"}},
                 "strategy": {"rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "web", "image": image}]}}}})


def rollout_done(srv, image: str) -> bool:
    d = srv.kubectl_json("get", "deployment", "web")
    st = d.get("status", {})
    return (st.get("observedGeneration") == d["metadata"]["generation"]
            and st.get("updatedReplicas") == REPLICAS and st.get("availableReplicas") == REPLICAS
            and st.get("replicas") == REPLICAS and not st.get("unavailableReplicas")
            and d["spec"]["template"]["spec"]["containers"][0]["image"] == image)


def wait_for(predicate, timeout: float, what: str, srv) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}\n{srv.log()}")


def test_killing_controllers_and_scheduler_mid_rollout_ends_in_the_desired_state(split_control_plane):
    srv, parts = split_control_plane
    rng = random.Random(20261201)
    srv.kubectl("create", "-f", "-", input=deployment("web:1"))
    wait_for(lambda: rollout_done(srv, "web:1"), 90, "the first rollout", srv)

    srv.kubectl("set", "image", "deployment/web", "web=web:2")
    # Kill each part a few times at random moments while the update is under way.
    for _round in range(4):
        time.sleep(rng.uniform(0.1, 1.2))
        victim = parts[rng.choice(sorted(parts))]
        victim.kill9()
        time.sleep(rng.uniform(0.0, 0.5))
        victim.start()
    wait_for(lambda: rollout_done(srv, "web:2"), 120, "the rollout after the crashes", srv)

    # Exactly the desired state once the old pods have finished terminating.
    def settled() -> bool:
        return not any(p["metadata"].get("deletionTimestamp")
                       for p in srv.kubectl_json("get", "pods", "-l", "app=web")["items"])
    wait_for(settled, 30, "terminating pods to go", srv)
    live = srv.kubectl_json("get", "pods", "-l", "app=web")["items"]
    assert len(live) == REPLICAS, f"{len(live)} pods instead of {REPLICAS}"
    assert len({p["metadata"]["name"] for p in live}) == REPLICAS
    assert all(p["spec"]["containers"][0]["image"] == "web:2" for p in live)
    assert all(p["spec"].get("nodeName") for p in live), "a pod was left unscheduled"
    owners = {ref["name"] for p in live for ref in p["metadata"].get("ownerReferences", [])}
    assert all(len(p["metadata"].get("ownerReferences", [])) == 1 for p in live), "an orphaned pod"
    replica_sets = srv.kubectl_json("get", "replicasets", "-l", "app=web")["items"]
    new = [rs for rs in replica_sets if rs["spec"]["template"]["spec"]["containers"][0]["image"] == "web:2"]
    assert len(new) == 1 and owners == {new[0]["metadata"]["name"]}
    assert all(rs["spec"]["replicas"] == 0 for rs in replica_sets if rs is not new[0])
    assert all(p["status"].get("phase") == "Running" for p in live)
    assert parts["controller-manager"].starts > 1 or parts["scheduler"].starts > 1
