"""The Job controller against a real server: pods created and counted, conditions and events as upstream.

Pods finish here the way a kubelet reports it: through pods/status (tests that need nodes use the
simulator). The session server runs every controller; back-off timing uses a server of its own
with a short --job-backoff-base."""
from __future__ import annotations

import json
import time

import pytest
import yaml
from helpers.cluster import BOOK, start_server, unique
from helpers.cluster import wait_for as poll
from helpers.http import Api

TRACKING = "batch.kubernetes.io/job-tracking"


class Jobs:
    def __init__(self, server, ns):
        self.server, self.ns = server, ns
        self.api = Api(server.kubeconfig)

    def job(self, name):
        code, body, _ = self.api.request("GET", f"/apis/batch/v1/namespaces/{self.ns}/jobs/{name}")
        assert code == 200, body
        return body

    def create(self, manifest):
        code, body, _ = self.api.request("POST", f"/apis/batch/v1/namespaces/{self.ns}/jobs", manifest)
        assert code == 201, body
        return body

    def pods(self, job):
        code, body, _ = self.api.request("GET", f"/api/v1/namespaces/{self.ns}/pods?labelSelector=job-name%3D{job}")
        assert code == 200, body
        return sorted(body["items"], key=lambda p: p["metadata"]["creationTimestamp"] + p["metadata"]["name"])

    def live_pods(self, job):
        return [p for p in self.pods(job) if not p["metadata"].get("deletionTimestamp")
                and p["status"].get("phase") not in ("Succeeded", "Failed")]

    def finish(self, pod, phase="Succeeded", exit_code=0):
        """Report the pod finished, as its kubelet would."""
        name = pod["metadata"]["name"]
        for _ in range(20):
            code, cur, _ = self.api.request("GET", f"/api/v1/namespaces/{self.ns}/pods/{name}")
            now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            cur["status"].update({"phase": phase, "containerStatuses": [{
                "name": c["name"], "image": c["image"], "imageID": "", "ready": False, "restartCount": 0,
                "started": False, "state": {"terminated": {"exitCode": exit_code, "startedAt": now,
                                                           "finishedAt": now,
                                                           "reason": "Completed" if exit_code == 0 else "Error"}},
            } for c in cur["spec"]["containers"]]})
            code, body, _ = self.api.request("PUT", f"/api/v1/namespaces/{self.ns}/pods/{name}/status", cur)
            if code == 200:
                return body
            assert code == 409, body
        raise AssertionError("could not update pod status")

    def events(self, name):
        code, body, _ = self.api.request(
            "GET", f"/api/v1/namespaces/{self.ns}/events?fieldSelector=involvedObject.name%3D{name}")
        return [(e["type"], e["reason"], e["message"]) for e in body["items"]]

    def conditions(self, name):
        return [(c["type"], c["status"], c.get("reason", "")) for c in self.job(name).get("status", {}).get("conditions", [])]


@pytest.fixture
def jobs(server):
    ns = unique("job")
    server.kubectl("create", "namespace", ns)
    try:
        yield Jobs(server, ns)
    finally:
        server.kubectl("delete", "namespace", ns, "--wait=false")


def job_manifest(name, restart="Never", **spec):
    """A Job whose pods no node matches: they stay unbound whatever nodes other tests left behind, so
    this test alone reports their status (as their kubelet would)."""
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
            "spec": {"template": {"spec": {"restartPolicy": restart, "nodeSelector": {"ketch.test/no-node": "x"},
                                           "containers": [{"name": "work", "image": "busybox",
                                                           "command": ["true"]}]}}, **spec}}


def test_book_job_runs_to_completion(server, jobs):
    server.kubectl("create", "-n", jobs.ns, "-f", str(BOOK / "Chapter05/longtask.yaml"))
    pods = poll(lambda: jobs.pods("long-task"))
    assert len(pods) == 1
    pod = pods[0]
    job = jobs.job("long-task")
    uid = job["metadata"]["uid"]
    labels = pod["metadata"]["labels"]
    assert labels["batch.kubernetes.io/controller-uid"] == uid and labels["controller-uid"] == uid
    assert labels["batch.kubernetes.io/job-name"] == "long-task" and labels["job-name"] == "long-task"
    assert pod["metadata"]["generateName"] == "long-task-"
    assert TRACKING in pod["metadata"]["finalizers"]
    ref = pod["metadata"]["ownerReferences"][0]
    assert (ref["kind"], ref["name"], ref["uid"], ref["controller"]) == ("Job", "long-task", uid, True)
    status = poll(lambda: jobs.job("long-task").get("status", {}).get("active") == 1 and jobs.job("long-task")["status"])
    assert status["ready"] == 0 and status["startTime"] and status["uncountedTerminatedPods"] == {}

    jobs.finish(pod)
    poll(lambda: ("Complete", "True", "CompletionsReached") in jobs.conditions("long-task"))
    status = jobs.job("long-task")["status"]
    types = [c["type"] for c in status["conditions"]]
    assert types == ["SuccessCriteriaMet", "Complete"]
    assert status["conditions"][1]["message"] == "Reached expected number of succeeded pods"
    assert status["succeeded"] == 1 and "active" not in status and status["completionTime"]
    assert status["uncountedTerminatedPods"] == {}
    pod = poll(lambda: [p for p in jobs.pods("long-task") if TRACKING not in (p["metadata"].get("finalizers") or [])])[0]
    events = poll(lambda: (ev := jobs.events("long-task")) and len(ev) >= 2 and ev)
    assert ("Normal", "SuccessfulCreate", f"Created pod: {pod['metadata']['name']}") in events
    assert ("Normal", "Completed", "Job completed") in events
    out = server.kubectl("describe", "job", "long-task", "-n", jobs.ns).stdout
    assert "job-controller  Created pod: " in out  # the event source, as upstream's
    out = server.kubectl("get", "jobs", "-n", jobs.ns).stdout
    assert "long-task" in out and "1/1" in out and "Complete" in out.replace("Completed", "Complete")


def test_completions_and_parallelism(jobs):
    jobs.create(job_manifest("batch", completions=3, parallelism=2))
    pods = poll(lambda: len(p := jobs.live_pods("batch")) == 2 and p)
    time.sleep(0.3)
    assert len(jobs.live_pods("batch")) == 2  # never more than parallelism
    jobs.finish(pods[0])
    # One more pod is started, then no more than completions - succeeded remain.
    poll(lambda: len(jobs.live_pods("batch")) == 2 and len(jobs.pods("batch")) == 3)
    for pod in jobs.live_pods("batch"):
        jobs.finish(pod)
    poll(lambda: ("Complete", "True", "CompletionsReached") in jobs.conditions("batch"))
    assert len(jobs.pods("batch")) == 3 and jobs.job("batch")["status"]["succeeded"] == 3


def test_work_queue_job_completes_when_one_succeeds_and_none_active(jobs):
    jobs.create(job_manifest("queue", parallelism=2))
    assert jobs.job("queue")["spec"].get("completions") is None
    a, b = poll(lambda: len(p := jobs.live_pods("queue")) == 2 and p)
    jobs.finish(a)
    poll(lambda: jobs.job("queue").get("status", {}).get("succeeded") == 1)
    time.sleep(0.3)
    assert jobs.conditions("queue") == [] and len(jobs.pods("queue")) == 2  # no new pod after a success
    jobs.finish(b)
    poll(lambda: ("Complete", "True", "CompletionsReached") in jobs.conditions("queue"))
    assert jobs.job("queue")["status"]["succeeded"] == 2


def test_backoff_limit_exceeded(jobs):
    jobs.create(job_manifest("fails", backoffLimit=0, activeDeadlineSeconds=300))
    pod = poll(lambda: jobs.live_pods("fails"))[0]
    jobs.finish(pod, "Failed", exit_code=1)
    poll(lambda: ("Failed", "True", "BackoffLimitExceeded") in jobs.conditions("fails"))
    status = jobs.job("fails")["status"]
    assert [c["type"] for c in status["conditions"]] == ["FailureTarget", "Failed"]
    assert status["conditions"][1]["message"] == "Job has reached the specified backoff limit"
    assert status["failed"] == 1 and "completionTime" not in status
    poll(lambda: ("Warning", "BackoffLimitExceeded", "Job has reached the specified backoff limit")
         in jobs.events("fails"))
    assert len(jobs.pods("fails")) == 1


def test_active_deadline_deletes_pods_and_fails(jobs):
    jobs.create(job_manifest("slow", activeDeadlineSeconds=1, parallelism=2, completions=4))
    # No wait for the two pods here: the deadline may remove them before a poll sees them;
    # status.failed == 2 below proves both were created and then counted as failed.
    poll(lambda: ("Failed", "True", "DeadlineExceeded") in jobs.conditions("slow"), timeout=10)
    status = jobs.job("slow")["status"]
    assert status["conditions"][-1]["message"] == "Job was active longer than specified deadline"
    assert status["failed"] == 2 and "active" not in status and status.get("terminating") == 0
    poll(lambda: jobs.pods("slow") == [])  # unbound pods go at once once their finalizer is gone
    poll(lambda: ("Warning", "DeadlineExceeded", "Job was active longer than specified deadline")
         in jobs.events("slow"))


def test_indexed_job(jobs):
    jobs.create(job_manifest("idx", completions=3, parallelism=3, completionMode="Indexed"))
    pods = poll(lambda: len(p := jobs.live_pods("idx")) == 3 and p)
    by_index = {}
    for pod in pods:
        ix = pod["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"]
        assert pod["metadata"]["labels"]["batch.kubernetes.io/job-completion-index"] == ix
        assert pod["spec"]["hostname"] == f"idx-{ix}"
        assert pod["metadata"]["generateName"] == f"idx-{ix}-"
        env = pod["spec"]["containers"][0]["env"]
        assert {"name": "JOB_COMPLETION_INDEX", "valueFrom": {"fieldRef": {
            "apiVersion": "v1", "fieldPath": "metadata.labels['batch.kubernetes.io/job-completion-index']"}}} in env
        by_index[int(ix)] = pod
    assert sorted(by_index) == [0, 1, 2]
    jobs.finish(by_index[0])
    jobs.finish(by_index[2])
    poll(lambda: jobs.job("idx").get("status", {}).get("completedIndexes") == "0,2")
    jobs.finish(by_index[1])
    poll(lambda: ("Complete", "True", "CompletionsReached") in jobs.conditions("idx"))
    status = jobs.job("idx")["status"]
    assert status["completedIndexes"] == "0-2" and status["succeeded"] == 3


def test_suspend_and_resume(server, jobs):
    jobs.create(job_manifest("sus", suspend=True))
    poll(lambda: ("Suspended", "True", "JobSuspended") in jobs.conditions("sus"))
    assert jobs.pods("sus") == [] and "startTime" not in jobs.job("sus")["status"]
    server.kubectl("patch", "job", "sus", "-n", jobs.ns, "--type=merge", "-p", json.dumps({"spec": {"suspend": False}}))
    poll(lambda: ("Suspended", "False", "JobResumed") in jobs.conditions("sus"))
    pod = poll(lambda: jobs.live_pods("sus"))[0]
    assert jobs.job("sus")["status"]["startTime"]
    server.kubectl("patch", "job", "sus", "-n", jobs.ns, "--type=merge", "-p", json.dumps({"spec": {"suspend": True}}))
    poll(lambda: jobs.live_pods("sus") == [])
    status = jobs.job("sus")["status"]
    assert status.get("failed", 0) == 0  # pods deleted by suspension are not failures
    poll(lambda: ("Normal", "Suspended", "Job suspended") in jobs.events("sus"))
    assert ("Normal", "SuccessfulDelete", f"Deleted pod: {pod['metadata']['name']}") in jobs.events("sus")


def test_deleting_a_job_releases_its_pods(server, jobs):
    jobs.create(job_manifest("gone"))
    poll(lambda: jobs.live_pods("gone"))
    server.kubectl("delete", "job", "gone", "-n", jobs.ns, "--cascade=orphan", "--wait=false")
    # An orphaned pod loses the tracking finalizer so that it can be deleted later.
    poll(lambda: all(TRACKING not in (p["metadata"].get("finalizers") or []) for p in jobs.pods("gone")))
    # Deleted the usual way (background): the garbage collector deletes the pods, and their
    # finalizer does not hold them.
    jobs.create(job_manifest("cascade"))
    poll(lambda: jobs.live_pods("cascade"))
    server.kubectl("delete", "job", "cascade", "-n", jobs.ns)
    poll(lambda: jobs.pods("cascade") == [])


def test_backoff_between_failures(tmp_path):
    srv = start_server(tmp_path, ["--job-backoff-base", "2"])
    try:
        jobs = Jobs(srv, "default")
        jobs.create(job_manifest("retry", backoffLimit=2))
        first = poll(lambda: jobs.live_pods("retry"))[0]
        jobs.finish(first, "Failed", 1)
        t0 = time.monotonic()
        second = poll(lambda: jobs.live_pods("retry"))[0]
        waited = time.monotonic() - t0
        assert 0.9 <= waited < 3, waited  # 2 s after finishedAt (whole seconds)
        jobs.finish(second, "Failed", 1)
        t0 = time.monotonic()
        poll(lambda: jobs.live_pods("retry"))
        waited = time.monotonic() - t0
        assert 2.9 <= waited < 5.5, waited  # doubled
        jobs.finish(jobs.live_pods("retry")[0], "Failed", 1)
        poll(lambda: ("Failed", "True", "BackoffLimitExceeded") in jobs.conditions("retry"))
        assert jobs.job("retry")["status"]["failed"] == 3
        manifest = yaml.safe_load((BOOK / "Chapter05/longtask.yaml").read_text())
        assert manifest["spec"]["template"]["spec"]["restartPolicy"] == "OnFailure"
    finally:
        srv.stop()


def sim_job(name, restart="Never", duration="200ms", exit_code=0, **spec):
    m = job_manifest(name, restart, **spec)
    del m["spec"]["template"]["spec"]["nodeSelector"]
    m["spec"]["template"]["metadata"] = {"annotations": {"ketch.io/simulate-duration": duration,
                                                         "ketch.io/simulate-exit-code": str(exit_code)}}
    return m


def test_jobs_on_simulated_nodes(server, jobs, simulated_nodes):
    """End to end: the scheduler binds the pods, the simulated kubelet runs and finishes them."""
    jobs.create(sim_job("e2e", completions=3, parallelism=2))
    poll(lambda: ("Complete", "True", "CompletionsReached") in jobs.conditions("e2e"), timeout=30)
    status = jobs.job("e2e")["status"]
    assert status["succeeded"] == 3 and "failed" not in status and status["completionTime"]
    pods = jobs.pods("e2e")
    assert len(pods) == 3 and all(p["spec"]["nodeName"].startswith("sim-") for p in pods)
    assert all(p["status"]["phase"] == "Succeeded" for p in pods)
    out = server.kubectl("describe", "job", "e2e", "-n", jobs.ns).stdout
    assert "3 Succeeded / 0 Failed" in out and "Completed" in out and "SuccessfulCreate" in out

    # restartPolicy OnFailure: the kubelet restarts the failing container; restarts count
    # against backoffLimit.
    jobs.create(sim_job("crashy", "OnFailure", duration="100ms", exit_code=1, backoffLimit=1))
    poll(lambda: ("Failed", "True", "BackoffLimitExceeded") in jobs.conditions("crashy"), timeout=30)
    assert jobs.job("crashy")["status"]["failed"] == 1  # the restarted pod, deleted and counted
    poll(lambda: jobs.live_pods("crashy") == [])


def test_pod_failure_policy(jobs):
    policy = {"rules": [{"action": "Ignore", "onExitCodes": {"operator": "In", "values": [3]}},
                        {"action": "FailJob", "onExitCodes": {"containerName": "work", "operator": "In",
                                                              "values": [42]}}]}
    jobs.create(job_manifest("ignored", backoffLimit=0, podFailurePolicy=policy))
    pod = poll(lambda: jobs.live_pods("ignored"))[0]
    jobs.finish(pod, "Failed", exit_code=3)
    poll(lambda: TRACKING not in (jobs.pods("ignored")[0]["metadata"].get("finalizers") or []))
    time.sleep(0.3)
    status = jobs.job("ignored")["status"]
    assert "failed" not in status and jobs.conditions("ignored") == []  # not counted against backoffLimit

    jobs.create(job_manifest("fatal", backoffLimit=6, podFailurePolicy=policy))
    pod = poll(lambda: jobs.live_pods("fatal"))[0]
    jobs.finish(pod, "Failed", exit_code=42)
    poll(lambda: ("Failed", "True", "PodFailurePolicy") in jobs.conditions("fatal"))
    cond = jobs.job("fatal")["status"]["conditions"][-1]
    assert cond["message"] == (f"Container work for pod {jobs.ns}/{pod['metadata']['name']} failed with exit code 42 "
                               "matching FailJob rule at index 1")
    assert [c["type"] for c in jobs.job("fatal")["status"]["conditions"]] == ["FailureTarget", "Failed"]


def test_success_policy(jobs):
    jobs.create(job_manifest("leader", completions=3, parallelism=3, completionMode="Indexed",
                             successPolicy={"rules": [{"succeededIndexes": "0", "succeededCount": 1}]}))
    pods = poll(lambda: len(p := jobs.live_pods("leader")) == 3 and p)
    leader = next(p for p in pods if p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"] == "0")
    jobs.finish(leader)
    poll(lambda: ("Complete", "True", "SuccessPolicy") in jobs.conditions("leader"))
    status = jobs.job("leader")["status"]
    assert [(c["type"], c["message"]) for c in status["conditions"]] == [
        ("SuccessCriteriaMet", "Matched rules at index 0"), ("Complete", "Matched rules at index 0")]
    assert status["completedIndexes"] == "0" and status["succeeded"] == 1 and "failed" not in status
    assert jobs.live_pods("leader") == []  # the other indexes were stopped, not counted as failures


def test_counts_survive_a_control_plane_crash(tmp_path):
    """Finished pods are recorded before their finalizer goes, so a kill -9 at any point neither
    loses nor double-counts them."""
    srv = start_server(tmp_path, ["--job-backoff-base", "1"])
    try:
        jobs = Jobs(srv, "default")
        jobs.create(job_manifest("durable", completions=4, parallelism=4))
        pods = poll(lambda: len(p := jobs.live_pods("durable")) == 4 and p)
        jobs.finish(pods[0])
        jobs.finish(pods[1], "Failed", 1)
        srv.kill9()
        srv.start()
        jobs.finish(pods[2])
        poll(lambda: jobs.job("durable").get("status", {}).get("succeeded") == 2)
        jobs.finish(pods[3])
        # One more pod replaces the failed one (after the back-off), then the Job completes.
        new = poll(lambda: [p for p in jobs.live_pods("durable")], timeout=30)
        jobs.finish(new[0])
        poll(lambda: ("Complete", "True", "CompletionsReached") in jobs.conditions("durable"))
        status = jobs.job("durable")["status"]
        assert (status["succeeded"], status["failed"]) == (4, 1)
        assert len(jobs.pods("durable")) == 5
    finally:
        srv.stop()


def test_manual_selector_adopts_orphans(jobs):
    orphan = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "stray", "labels": {"app": "manual"}},
              "spec": {"restartPolicy": "Never", "nodeSelector": {"ketch.test/no-node": "x"},
                       "containers": [{"name": "work", "image": "busybox"}]}}
    code, body, _ = jobs.api.request("POST", f"/api/v1/namespaces/{jobs.ns}/pods", orphan)
    assert code == 201, body
    m = job_manifest("manual", manualSelector=True, selector={"matchLabels": {"app": "manual"}})
    m["spec"]["template"]["metadata"] = {"labels": {"app": "manual"}}
    jobs.create(m)

    def adopted():
        code, pod, _ = jobs.api.request("GET", f"/api/v1/namespaces/{jobs.ns}/pods/stray")
        refs = pod["metadata"].get("ownerReferences") or []
        return refs and refs[0]["name"] == "manual" and TRACKING in pod["metadata"].get("finalizers", []) and pod
    pod = poll(adopted)
    poll(lambda: jobs.job("manual").get("status", {}).get("active") == 1)

    def live_names():
        code, body, _ = jobs.api.request("GET", f"/api/v1/namespaces/{jobs.ns}/pods?labelSelector=app%3Dmanual")
        return [p["metadata"]["name"] for p in body["items"] if not p["metadata"].get("deletionTimestamp")]
    poll(lambda: live_names() == ["stray"])  # the orphan counts as the one pod (the older one stays)
    jobs.finish(pod)
    poll(lambda: ("Complete", "True", "CompletionsReached") in jobs.conditions("manual"))


def test_backoff_limit_per_index(tmp_path):
    srv = start_server(tmp_path, ["--job-backoff-base", "0.5"])
    try:
        jobs = Jobs(srv, "default")
        jobs.create(job_manifest("perindex", completions=3, parallelism=3, completionMode="Indexed",
                                 backoffLimitPerIndex=1))
        assert jobs.job("perindex")["spec"]["backoffLimit"] == 2147483647

        def pod_for(ix):
            return [p for p in jobs.live_pods("perindex")
                    if p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"] == str(ix)]
        first = poll(lambda: pod_for(1))[0]
        assert first["metadata"]["annotations"]["batch.kubernetes.io/job-index-failure-count"] == "0"
        jobs.finish(first, "Failed", 1)
        second = poll(lambda: pod_for(1))[0]  # the index gets another try, carrying its failure count
        assert second["metadata"]["annotations"]["batch.kubernetes.io/job-index-failure-count"] == "1"
        poll(lambda: jobs.job("perindex").get("status", {}).get("failed") == 1)
        jobs.finish(second, "Failed", 1)
        poll(lambda: jobs.job("perindex").get("status", {}).get("failedIndexes") == "1")
        time.sleep(0.8)
        assert pod_for(1) == []  # a failed index is not retried
        jobs.finish(pod_for(0)[0])
        jobs.finish(pod_for(2)[0])
        poll(lambda: ("Failed", "True", "FailedIndexes") in jobs.conditions("perindex"))
        status = jobs.job("perindex")["status"]
        assert status["conditions"][-1]["message"] == "Job has failed indexes"
        assert (status["failed"], status["succeeded"], status["completedIndexes"], status["failedIndexes"]) == \
            (2, 2, "0,2", "1")
    finally:
        srv.stop()
