"""The CronJob controller against a real server. A scheduled time that was missed while nobody
watched is one the controller starts at once, so setting status.lastScheduleTime into the past (as
if the controller had been down) makes it fire without waiting for the clock; one slow test waits
for a real minute boundary."""
from __future__ import annotations

import functools
import datetime
import json
import time

import pytest
from helpers.cluster import BOOK, unique, wait_for
from helpers.http import Api

poll = functools.partial(wait_for, interval=0.1)  # kubectl-heavy polls: not too often


def ago(**kw) -> str:
    return (datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(**kw)).strftime("%Y-%m-%dT%H:%M:%SZ")


class CronJobs:
    def __init__(self, server, ns):
        self.server, self.ns = server, ns
        self.api = Api(server.kubeconfig)
        self.base = f"/apis/batch/v1/namespaces/{ns}"

    def get(self, name):
        code, body, _ = self.api.request("GET", f"{self.base}/cronjobs/{name}")
        assert code == 200, body
        return body

    def create(self, name, schedule="0 0 1 1 *", **spec):
        body = {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": name},
                "spec": {"schedule": schedule, "jobTemplate": {
                    "metadata": {"labels": {"cron": name}, "annotations": {"note": "from-template"}},
                    "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [
                        {"name": "c", "image": "busybox", "command": ["true"]}]}}}}, **spec}}
        code, out, _ = self.api.request("POST", f"{self.base}/cronjobs", body)
        assert code == 201, out
        return out

    def set_status(self, name, **status):
        for _ in range(20):
            cj = self.get(name)
            cj["status"] = {**(cj.get("status") or {}), **status}
            code, out, _ = self.api.request("PUT", f"{self.base}/cronjobs/{name}/status", cj)
            if code == 200:
                return out
            assert code == 409, out
        raise AssertionError("status update kept conflicting")

    def jobs(self, cron):
        code, body, _ = self.api.request("GET", f"{self.base}/jobs?labelSelector=cron%3D{cron}")
        assert code == 200, body
        return [j for j in body["items"] if not j["metadata"].get("deletionTimestamp")]

    def events(self, name):
        code, body, _ = self.api.request("GET", f"/api/v1/namespaces/{self.ns}/events"
                                                f"?fieldSelector=involvedObject.name%3D{name}")
        return [(e["type"], e["reason"], e["message"]) for e in body["items"]]

    def complete_job(self, job, started):
        """Mark a Job finished, as the Job controller would."""
        name = job["metadata"]["name"]
        for _ in range(20):
            code, cur, _ = self.api.request("GET", f"{self.base}/jobs/{name}")
            cur["status"] = {"startTime": started, "completionTime": started, "succeeded": 1, "conditions": [
                {"type": "SuccessCriteriaMet", "status": "True", "reason": "CompletionsReached",
                 "lastTransitionTime": started},
                {"type": "Complete", "status": "True", "reason": "CompletionsReached", "lastTransitionTime": started}]}
            code, out, _ = self.api.request("PUT", f"{self.base}/jobs/{name}/status", cur)
            if code == 200:
                return out
            assert code == 409, out
        raise AssertionError("job status update kept conflicting")


@pytest.fixture
def cronjobs(server):
    ns = unique("cron")
    server.kubectl("create", "namespace", ns)
    try:
        yield CronJobs(server, ns)
    finally:
        server.kubectl("delete", "namespace", ns, "--wait=false")


def minute_of(ts: str) -> int:
    return int(datetime.datetime.strptime(ts, "%Y-%m-%dT%H:%M:%SZ").replace(
        tzinfo=datetime.timezone.utc).timestamp()) // 60


def test_missed_schedule_starts_a_job(cronjobs):
    cronjobs.create("every", "* * * * *", timeZone="Asia/Tokyo")
    cronjobs.set_status("every", lastScheduleTime=ago(minutes=5))
    job = poll(lambda: cronjobs.jobs("every"))[0]
    cj = poll(lambda: (c := cronjobs.get("every"))["status"].get("active") and c)
    last = cj["status"]["lastScheduleTime"]
    assert job["metadata"]["name"] == f"every-{minute_of(last)}"
    ref = cj["status"]["active"][0]
    assert (ref["kind"], ref["name"], ref["uid"], ref["apiVersion"]) == \
        ("Job", job["metadata"]["name"], job["metadata"]["uid"], "batch/v1")
    owner = job["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["controller"]) == ("CronJob", "every", True)
    assert job["metadata"]["annotations"]["note"] == "from-template"
    stamp = job["metadata"]["annotations"]["batch.kubernetes.io/cronjob-scheduled-timestamp"]
    assert stamp.endswith("+09:00")  # the scheduled time in the CronJob's zone
    assert datetime.datetime.fromisoformat(stamp) == datetime.datetime.fromisoformat(last.replace("Z", "+00:00"))
    assert ("Normal", "SuccessfulCreate", f"Created job {job['metadata']['name']}") in \
        poll(lambda: cronjobs.events("every"))
    assert "cronjob-controller  Created job every-" in cronjobs.server.kubectl(
        "describe", "cronjob", "every", "-n", cronjobs.ns).stdout
    # Processing it again starts nothing new: the name is the lock.
    time.sleep(0.3)
    assert len(cronjobs.jobs("every")) == 1


def test_too_many_missed_and_suspend(cronjobs):
    cronjobs.create("late", "* * * * *")
    cronjobs.set_status("late", lastScheduleTime=ago(hours=3))
    poll(lambda: ("Warning", "TooManyMissedTimes", "too many missed start times. Set or decrease "
                  ".spec.startingDeadlineSeconds or check clock skew") in cronjobs.events("late"))
    poll(lambda: len(cronjobs.jobs("late")) == 1)  # still starts the most recent one
    cronjobs.create("paused", "* * * * *", suspend=True)
    cronjobs.set_status("paused", lastScheduleTime=ago(minutes=5))
    time.sleep(0.5)
    assert cronjobs.jobs("paused") == []


def test_completed_jobs_leave_active_and_history_is_trimmed(cronjobs):
    cj = cronjobs.create("hist", successfulJobsHistoryLimit=2)
    owner = {"apiVersion": "batch/v1", "kind": "CronJob", "name": "hist", "uid": cj["metadata"]["uid"],
             "controller": True, "blockOwnerDeletion": True}
    made = []
    for i in range(4):
        body = {"apiVersion": "batch/v1", "kind": "Job",
                "metadata": {"name": f"hist-{i}", "labels": {"cron": "hist"}, "ownerReferences": [owner]},
                "spec": {"managedBy": "example.com/elsewhere", "template": {"spec": {"restartPolicy": "Never", "containers": [
                    {"name": "c", "image": "busybox"}]}}}}
        code, job, _ = cronjobs.api.request("POST", f"{cronjobs.base}/jobs", body)
        assert code == 201, job
        made.append(job)
    # As if the controller had started them (else each sync warns UnexpectedJob about them, and the
    # event spam filter, 25 per object, would soon drop the events this test looks for). The Job
    # controller leaves these Jobs alone (managedBy), so that this test alone finishes them.
    cronjobs.set_status("hist", active=[{"kind": "Job", "namespace": cronjobs.ns, "name": j["metadata"]["name"],
                                         "uid": j["metadata"]["uid"], "apiVersion": "batch/v1"} for j in made])
    times = [ago(minutes=10 - i) for i in range(4)]
    for job, started in zip(made, times):
        cronjobs.complete_job(job, started)
    # The two oldest go; the newest stays and leaves the active list.
    poll(lambda: sorted(j["metadata"]["name"] for j in cronjobs.jobs("hist")) == ["hist-2", "hist-3"])
    poll(lambda: (s := cronjobs.get("hist")["status"]).get("lastSuccessfulTime") == times[3] and not s.get("active"))
    want = {("Normal", "SawCompletedJob", "Saw completed job: hist-3, status: Complete"),
            ("Normal", "SuccessfulDelete", "Deleted job hist-0"), ("Normal", "SuccessfulDelete", "Deleted job hist-1")}
    poll(lambda: want <= set(cronjobs.events("hist")))


def test_missing_active_job_is_dropped(cronjobs):
    cronjobs.create("lost")
    cronjobs.set_status("lost", active=[{"kind": "Job", "namespace": cronjobs.ns, "name": "lost-1",
                                         "uid": "00000000-0000-0000-0000-000000000001", "apiVersion": "batch/v1"}])
    poll(lambda: not cronjobs.get("lost")["status"].get("active"))
    poll(lambda: ("Normal", "MissingJob", "Active job went missing: lost-1") in cronjobs.events("lost"))


def test_book_cronjob_and_kubectl_create_job_from_cronjob(server, cronjobs):
    server.kubectl("create", "-n", cronjobs.ns, "-f", str(BOOK / "Chapter05/cronjob.yaml"))
    server.kubectl("create", "-n", cronjobs.ns, "-f", str(BOOK / "Chapter05/longtask-cron.yaml"))
    assert cronjobs.get("long-task-cron")["spec"]["schedule"] == "15 10 * * 6"
    server.kubectl("create", "job", "manual-run", "--from=cronjob/long-task-cron", "-n", cronjobs.ns)
    job = server.kubectl_json("get", "job", "manual-run", "-n", cronjobs.ns)
    assert job["metadata"]["annotations"]["cronjob.kubernetes.io/instantiate"] == "manual"
    assert job["metadata"]["ownerReferences"][0]["name"] == "long-task-cron"
    # The Job controller runs it like any other.
    poll(lambda: server.kubectl_json("get", "pods", "-n", cronjobs.ns, "-l", "job-name=manual-run")["items"])
    out = server.kubectl("get", "cronjobs", "-n", cronjobs.ns).stdout
    assert "hello" in out and "*/1 * * * *" in out and "15 10 * * 6" in out


@pytest.mark.slow
def test_fires_on_the_minute_with_replace_and_forbid(cronjobs):
    """Waits for a real minute boundary (at most about 60 s)."""
    for name, policy in (("rep", "Replace"), ("forbid", "Forbid")):
        cronjobs.create(name, "* * * * *", concurrencyPolicy=policy)
        cronjobs.set_status(name, lastScheduleTime=ago(minutes=2))
    first = {name: poll(lambda n=name: cronjobs.jobs(n))[0]["metadata"]["name"] for name in ("rep", "forbid")}
    # The jobs stay active (their pods never finish here); at the next minute Replace swaps its job
    # for a new one and Forbid starts none.
    new = poll(lambda: [j for j in cronjobs.jobs("rep") if j["metadata"]["name"] != first["rep"]], timeout=70)
    assert int(new[0]["metadata"]["name"].rsplit("-", 1)[1]) == int(first["rep"].rsplit("-", 1)[1]) + 1
    poll(lambda: [j["metadata"]["name"] for j in cronjobs.jobs("rep")] == [new[0]["metadata"]["name"]])
    assert ("Normal", "SuccessfulDelete", f"Deleted job {first['rep']}") in cronjobs.events("rep")
    poll(lambda: ("Normal", "JobAlreadyActive",
                  "Not starting job because prior execution is running and concurrency policy is Forbid")
         in cronjobs.events("forbid"), timeout=10)
    assert [j["metadata"]["name"] for j in cronjobs.jobs("forbid")] == [first["forbid"]]
    assert json.dumps(cronjobs.get("rep")["status"]["active"]).count('"uid"') == 1
