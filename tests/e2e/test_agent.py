"""The node agent end to end, as a user meets it: `ketch server` with its agent running real
containers (runc, conmon, CNI in a network namespace standing in for the node), driven by kubectl
and the book's manifests."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from helpers.agent import start_agent_cluster
from helpers.cluster import BOOK, unique, wait_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="runs containers: needs root")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = start_agent_cluster(tmp_path_factory.mktemp("agent"))
    try:
        yield c
    finally:
        c.stop()


def _reasons(cluster, name: str) -> list[str]:
    return [e["reason"] for e in sorted(cluster.events(name), key=lambda e: e.get("firstTimestamp") or "")]


def _count(cluster, name: str, reason: str) -> int:
    """How many times the event happened (repeats are one Event with a count, as upstream)."""
    return sum(e.get("count") or 1 for e in cluster.events(name) if e["reason"] == reason)


def _pod_manifest(name: str, container: dict, **spec) -> str:
    return json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": name}},
                       "spec": {"containers": [{"name": name, **container}], **spec}})


def test_book_chapter2_pods_serve_each_other(cluster):
    """Listing 2-4's controller: three pods with IPs from the node's range; one reaches another's
    page by IP with `kubectl exec ... wget`, which names the pod it came from."""
    cluster.kubectl("create", "-f", str(BOOK / "Chapter02" / "nodejs-controller.yaml"))
    try:
        pods = wait_for(lambda: (lambda ps: ps if len(ps) == 3 and all(
            p["status"].get("phase") == "Running" and p["status"].get("podIP") for p in ps) else None)(
            cluster.pods("name=node-js")), 60, "three node-js pods running", interval=0.3)
        cidr = cluster.server.kubectl_json("get", "node", cluster.node_name)["spec"]["podCIDR"]
        prefix = cidr.rsplit(".", 1)[0] + "."
        assert all(p["status"]["podIP"].startswith(prefix) for p in pods)
        assert len({p["status"]["podIP"] for p in pods}) == 3
        first, other = pods[0], pods[1]
        out = cluster.kubectl("exec", first["metadata"]["name"], "--", "wget", "-qO-", other["status"]["podIP"]).stdout
        assert f"Container name (hostname): {other['metadata']['name']}" in out
        status = first["status"]["containerStatuses"][0]
        assert status["state"]["running"]["startedAt"]
        assert status["containerID"].startswith("ketch-runc://")
        assert status["image"] == "docker.io/jonbaier/node-express-info:latest"
        conditions = {c["type"]: c["status"] for c in first["status"]["conditions"]}
        assert conditions == {"PodReadyToStartContainers": "True", "Initialized": "True", "Ready": "True",
                              "ContainersReady": "True", "PodScheduled": "True"}
        reasons = _reasons(cluster, first["metadata"]["name"])
        for reason in ("Scheduled", "Pulled", "Created", "Started"):
            assert reason in reasons, reasons
    finally:
        cluster.kubectl("delete", "rc", "node-js", "--wait=false", check=False)


def test_killed_container_is_restarted_with_the_last_state(cluster):
    """Killing a container's process on the node: the kubelet starts a new container; the pod
    shows restartCount 1 and the killed run as its last state."""
    name = unique("victim")
    cluster.kubectl("create", "-f", "-", input=_pod_manifest(name, {"image": "busybox", "command": ["sleep", "3600"]}))
    try:
        pod = cluster.wait_running(name)
        first = pod["status"]["containerStatuses"][0]["containerID"]
        os.kill(cluster.container_pid(first), signal.SIGKILL)

        def restarted():
            s = cluster.pod(name)["status"]["containerStatuses"][0]
            return s if s["restartCount"] == 1 and "running" in s["state"] else None
        status = wait_for(restarted, 30, "the container restarted", interval=0.2)
        assert status["containerID"] != first
        last = status["lastState"]["terminated"]
        assert last["exitCode"] == 137 and last["reason"] == "Error" and last["containerID"] == first
        wait_for(lambda: _count(cluster, name, "Started") == 2, 10, "two Started events")
    finally:
        cluster.kubectl("delete", "pod", name, "--grace-period=0", "--force", check=False)


def test_crash_loop_back_off(cluster):
    """A container that keeps failing waits out the kubelet's back-off: CrashLoopBackOff."""
    name = unique("crasher")
    cluster.kubectl("create", "-f", "-", input=_pod_manifest(name, {"image": "busybox", "command": ["sh", "-c", "exit 3"]}))
    try:
        def backing_off():
            s = (cluster.pod(name)["status"].get("containerStatuses") or [{}])[0]
            return s if (s.get("state", {}).get("waiting") or {}).get("reason") == "CrashLoopBackOff" else None
        status = wait_for(backing_off, 30, "CrashLoopBackOff", interval=0.2)
        assert status["lastState"]["terminated"]["exitCode"] == 3
        assert status["state"]["waiting"]["message"].startswith(f"back-off 10s restarting failed container={name} ")
        assert "BackOff" in _reasons(cluster, name)
        assert cluster.pod(name)["status"]["phase"] == "Running"
        assert f"{name}   0/1     CrashLoopBackOff" in cluster.kubectl("get", "pod", name).stdout
    finally:
        cluster.kubectl("delete", "pod", name, "--grace-period=0", "--force", check=False)


def test_job_logs_show_the_whale(cluster):
    """Chapter 5's Job: the whale says its line in `kubectl logs`, and the Job completes."""
    cluster.kubectl("create", "-f", str(BOOK / "Chapter05" / "longtask.yaml"))
    try:
        wait_for(lambda: (cluster.server.kubectl_json("get", "job", "long-task")["status"].get("succeeded") or 0) >= 1,
                 60, "the Job to succeed", interval=0.3)
        logs = cluster.kubectl("logs", "job/long-task").stdout
        assert "Finishing that task in a jiffy" in logs
        pod = cluster.pods("job-name=long-task")[0]
        assert pod["status"]["phase"] == "Succeeded"
        term = pod["status"]["containerStatuses"][0]["state"]["terminated"]
        assert term["reason"] == "Completed" and term["exitCode"] == 0
    finally:
        cluster.kubectl("delete", "job", "long-task", "--wait=false", check=False)


def test_missing_image_is_err_image_pull_then_back_off(cluster):
    """An image that is nowhere: ErrImagePull, then ImagePullBackOff, as the book's pod-scaling:42.0."""
    name = unique("noimage")
    cluster.kubectl("create", "-f", "-", input=_pod_manifest(name, {"image": "jonbaier/pod-scaling:42.0"}))
    try:
        def waiting():
            s = (cluster.pod(name)["status"].get("containerStatuses") or [{}])[0]
            return (s.get("state", {}).get("waiting") or {}).get("reason")
        assert wait_for(lambda: waiting() in ("ErrImagePull", "ImagePullBackOff") and waiting(), 30, "pull failure")
        wait_for(lambda: waiting() == "ImagePullBackOff", 30, "ImagePullBackOff")
        events = cluster.events(name)
        failed = [e["message"] for e in events if e["reason"] == "Failed"]
        assert any(m.startswith('Failed to pull image "jonbaier/pod-scaling:42.0": ') for m in failed), failed
        assert "Error: ErrImagePull" in failed and "Error: ImagePullBackOff" in failed
        assert cluster.pod(name)["status"]["phase"] == "Pending"
    finally:
        cluster.kubectl("delete", "pod", name, "--grace-period=0", "--force", check=False)


def test_run_as_non_root_refuses_a_root_image(cluster):
    """Listing 10-4: runAsNonRoot with an image that runs as root never starts."""
    cluster.kubectl("create", "-f", str(BOOK / "Chapter10" / "nodejs-pod-psc.yaml"))
    name = "node-js-psc"
    try:
        def refused():
            s = (cluster.pod(name)["status"].get("containerStatuses") or [{}])[0]
            return s.get("state", {}).get("waiting") if (s.get("state", {}).get("waiting") or {}).get(
                "reason") == "CreateContainerConfigError" else None
        waiting = wait_for(refused, 30, "CreateContainerConfigError")
        assert waiting["message"].startswith("container has runAsNonRoot and image will run as root")
    finally:
        cluster.kubectl("delete", "pod", name, "--grace-period=0", "--force", check=False)


def test_delete_stops_the_containers_and_removes_the_pod(cluster):
    """A graceful delete: the kubelet stops the containers (SIGTERM, then SIGKILL for a process
    that ignores it, after the grace period) and removes the pod; no container is left."""
    name = unique("gone")
    cluster.kubectl("create", "-f", "-", input=_pod_manifest(
        name, {"image": "busybox", "command": ["sh", "-c", "trap '' TERM; sleep 3600"]},
        terminationGracePeriodSeconds=2))
    pod = cluster.wait_running(name)
    pid = cluster.container_pid(pod["status"]["containerStatuses"][0]["containerID"])
    t0 = time.monotonic()
    cluster.kubectl("delete", "pod", name, "--wait=true", timeout=30)
    took = time.monotonic() - t0
    assert 1.5 < took < 15, took
    assert not os.path.exists(f"/proc/{pid}") or "sleep" not in open(f"/proc/{pid}/cmdline").read()
    assert "Killing" in [e["reason"] for e in cluster.events(name)]


def test_agent_killed_and_restarted_adopts_its_containers(cluster):
    """kill -9 of the agent while pods run: after the restart the same containers run (none
    started twice), statuses are unchanged, and logs carry on in the same files."""
    name = unique("keep")
    cluster.kubectl("create", "-f", "-", input=json.dumps({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {"replicas": 5, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{
                     "name": "ticker", "image": "busybox",
                     "command": ["sh", "-c", "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.2; done"]}]}}}}))
    try:
        pods = wait_for(lambda: (lambda ps: ps if len(ps) == 5 and all(
            p["status"].get("phase") == "Running" for p in ps) else None)(cluster.pods(f"app={name}")),
            60, "five pods running", interval=0.3)
        before = {p["metadata"]["name"]: p["status"]["containerStatuses"][0]["containerID"] for p in pods}
        cluster.server.kill9()
        time.sleep(1)
        cluster.server.start()
        time.sleep(3)   # a few PLEG relists and syncs of the adopted pods
        after = {p["metadata"]["name"]: p["status"]["containerStatuses"][0] for p in cluster.pods(f"app={name}")}
        assert set(after) == set(before)
        for pod_name, status in after.items():
            assert status["containerID"] == before[pod_name]
            assert status["restartCount"] == 0 and "running" in status["state"]
        # One container per pod under the runtime, and the log keeps growing.
        one = next(iter(before))
        lines = cluster.kubectl("logs", one).stdout.splitlines()
        wait_for(lambda: len(cluster.kubectl("logs", one).stdout.splitlines()) > len(lines) + 2, 10, "more log lines")
        ps = subprocess.run(["ps", "-ww", "-eo", "args"], capture_output=True, text=True).stdout
        for cid in before.values():   # one monitor per container: nothing was started twice
            assert sum(1 for line in ps.splitlines() if "conmon" in line and f"-c {cid.split('://')[1]} " in line) == 1
    finally:
        cluster.kubectl("delete", "deployment", name, "--wait=false", check=False)
