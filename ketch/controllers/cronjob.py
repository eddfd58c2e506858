"""The CronJob controller, as upstream's cronjob_controllerv2.

Each sync looks at a CronJob's Jobs (finished ones leave `status.active`; the oldest beyond
successfulJobsHistoryLimit / failedJobsHistoryLimit are deleted), then at the schedule: the most
recent unmet scheduled time not older than startingDeadlineSeconds gets a Job named
`<cronjob>-<scheduled time in minutes since the epoch>` (the name is the lock against creating it
twice), subject to concurrencyPolicy and suspend. The key is queued again for the next scheduled
time (plus 100 ms, as upstream). Schedules without a timeZone are read in UTC, as in a
kube-controller-manager container.
"""
from __future__ import annotations

import copy
import datetime
import logging
import zoneinfo

from ..api.errors import ApiError
from ..api.validation import go_quote
from ..client.rest import Client
from . import cron, podutil
from .base import Controller, InformerFactory, owner_uid_index
from ..client.events import EventRecorder

log = logging.getLogger("ketch.controllers.cronjob")

SCHEDULED_TIMESTAMP = "batch.kubernetes.io/cronjob-scheduled-timestamp"
NEXT_SCHEDULE_DELTA = 0.1
TOO_MANY_MISSED = 100
UTC = datetime.timezone.utc


def most_recent_schedule_time(cj: dict, now: datetime.datetime, sched: cron.Schedule, include_deadline: bool
                              ) -> tuple[datetime.datetime, datetime.datetime | None, int]:
    """(earliest time considered, the most recent scheduled time not after now or None, how many
    schedules were missed (roughly, as upstream counts them))."""
    earliest = podutil.parse_time(cj["metadata"].get("creationTimestamp")) or now
    last = podutil.parse_time((cj.get("status") or {}).get("lastScheduleTime"))
    if last is not None:
        earliest = last
    deadline = cj["spec"].get("startingDeadlineSeconds")
    if include_deadline and deadline is not None:
        earliest = max(earliest, now - datetime.timedelta(seconds=deadline))
    t1 = sched.next(earliest)
    if t1 is None or now < t1:
        return earliest, None, 0
    t2 = sched.next(t1)
    if t2 is None or now < t2:
        return earliest, t1, 0
    between = round((t2 - t1).total_seconds())
    if between < 1:
        raise cron.ScheduleError("time difference between two schedules is less than 1 second")
    missed = int((now - t1).total_seconds()) // between + 1
    most_recent = None
    t = sched.next(t1 + datetime.timedelta(seconds=(missed - 2) * between))
    while t is not None and t <= now:
        most_recent = t
        t = sched.next(t)
    return earliest, most_recent, missed


def next_schedule_delay(cj: dict, now: datetime.datetime, sched: cron.Schedule) -> float:
    """Seconds until the next scheduled time after the last one handled."""
    try:
        earliest, most_recent, missed = most_recent_schedule_time(cj, now, sched, False)
    except cron.ScheduleError:
        earliest, most_recent, missed = now, now, 0
    if most_recent is None:
        most_recent = earliest if missed == 0 else now
    following = sched.next(most_recent)
    if following is None:
        return 3600.0  # nothing in five years: look again later rather than never
    return (following - now).total_seconds() + NEXT_SCHEDULE_DELTA


def job_name(cj: dict, scheduled: datetime.datetime) -> str:
    return f"{cj['metadata']['name']}-{int(scheduled.timestamp()) // 60}"


def rfc1123z(t: datetime.datetime) -> str:
    return t.astimezone(UTC).strftime("%a, %d %b %Y %H:%M:%S +0000")


def rfc3339_in(t: datetime.datetime, zone: datetime.tzinfo) -> str:
    local = t.astimezone(zone)
    text = local.replace(microsecond=0).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def job_reference(job: dict) -> dict:
    meta = job["metadata"]
    return {"kind": "Job", "namespace": meta["namespace"], "name": meta["name"], "uid": meta["uid"],
            "apiVersion": "batch/v1", "resourceVersion": meta.get("resourceVersion", "")}


def finished_type(job: dict) -> str | None:
    for c in (job.get("status") or {}).get("conditions") or ():
        if c.get("type") in ("Complete", "Failed") and c.get("status") == "True":
            return c["type"]
    return None


class CronJobController(Controller):
    name = "cronjob"
    workers = 2

    def __init__(self, client: Client, informers: InformerFactory, recorder: EventRecorder):
        super().__init__(client, informers, recorder)
        self.recorder = recorder.for_component("cronjob-controller")  # the "From" of kubectl describe
        self.cj_api = client.resource("batch/v1", "CronJob")
        self.jobs_api = client.resource("batch/v1", "Job")
        self.cronjobs = informers.informer("batch/v1", "CronJob")
        self.jobs = informers.informer("batch/v1", "Job")
        self.jobs.add_index("owner-uid", owner_uid_index)
        self.cronjobs.add_handlers(on_add=self.enqueue, on_update=lambda _o, n: self.enqueue(n))
        self.jobs.add_handlers(on_add=self._job_event, on_update=lambda _o, j: self._job_event(j),
                               on_delete=self._job_event)

    def _job_event(self, job: dict) -> None:
        ref = podutil.controller_ref(job)
        if ref is not None and ref.get("kind") == "CronJob":
            self.enqueue(f"{job['metadata']['namespace']}/{ref['name']}")

    def now(self) -> datetime.datetime:
        return podutil.now()

    async def sync(self, key: str) -> float | None:
        cached = self.cronjobs.get(key)
        if cached is None:
            return None
        cj = copy.deepcopy(cached)
        uid = cj["metadata"]["uid"]
        jobs = [j for j in self.jobs.by_index("owner-uid", uid) if (podutil.controller_ref(j) or {}).get("uid") == uid]
        cj.setdefault("status", {})
        changed = await self._cleanup_finished(cj, jobs)
        requeue, changed_by_sync = await self._sync(cj, jobs)
        if changed or changed_by_sync:
            if not cj["status"].get("active"):
                cj["status"].pop("active", None)
            try:
                await self.cj_api.update_status(cj)
            except ApiError as e:
                if e.code != 404:
                    raise
        return requeue

    async def _delete_job(self, cj: dict, job: dict) -> bool:
        try:
            await self.jobs_api.delete(job["metadata"]["name"], namespace=job["metadata"]["namespace"],
                                       propagationPolicy="Background")
        except ApiError as e:
            if e.code != 404:
                self.recorder.event(cj, "Warning", "FailedDelete", f"Deleted job: {e.message}")
                return False
        self._drop_active(cj, job["metadata"]["uid"])
        self.recorder.event(cj, "Normal", "SuccessfulDelete", f"Deleted job {job['metadata']['name']}")
        return True

    @staticmethod
    def _drop_active(cj: dict, uid: str) -> None:
        cj["status"]["active"] = [r for r in cj["status"].get("active") or () if r.get("uid") != uid]

    async def _cleanup_finished(self, cj: dict, jobs: list[dict]) -> bool:
        spec = cj["spec"]
        changed = False
        for kind, limit in (("Complete", spec.get("successfulJobsHistoryLimit")),
                            ("Failed", spec.get("failedJobsHistoryLimit"))):
            if limit is None:
                continue
            done = [j for j in jobs if finished_type(j) == kind and not j["metadata"].get("deletionTimestamp")]
            # Oldest first by start time (jobs that never started last), then name.
            done.sort(key=lambda j: ((j.get("status") or {}).get("startTime") is None,
                                     (j.get("status") or {}).get("startTime") or "", j["metadata"]["name"]))
            for job in done[:max(0, len(done) - limit)]:
                changed |= await self._delete_job(cj, job)
        return changed

    async def _sync(self, cj: dict, jobs: list[dict]) -> tuple[float | None, bool]:
        now = self.now()
        status, spec, rec = cj["status"], cj["spec"], self.recorder
        changed = False
        active_uids = {r.get("uid") for r in status.get("active") or ()}
        children = set()
        for job in jobs:
            juid = job["metadata"]["uid"]
            children.add(juid)
            finished = finished_type(job)
            if juid not in active_uids and finished is None:
                try:
                    fresh = await self.cj_api.get(cj["metadata"]["name"], namespace=cj["metadata"]["namespace"])
                except ApiError as e:
                    if e.code == 404:
                        return None, False
                    raise
                if juid in {r.get("uid") for r in (fresh.get("status") or {}).get("active") or ()}:
                    cj["status"] = status = fresh.get("status") or {}
                    cj["metadata"]["resourceVersion"] = fresh["metadata"]["resourceVersion"]
                    active_uids = {r.get("uid") for r in status.get("active") or ()}
                    continue
                rec.event(cj, "Warning", "UnexpectedJob",
                          f"Saw a job that the controller did not create or forgot: {job['metadata']['name']}")
            elif juid in active_uids and finished is not None:
                self._drop_active(cj, juid)
                rec.event(cj, "Normal", "SawCompletedJob",
                          f"Saw completed job: {job['metadata']['name']}, status: {finished}")
                changed = True
            elif finished == "Complete":
                completed = (job.get("status") or {}).get("completionTime")
                if completed and (status.get("lastSuccessfulTime") is None or
                                  podutil.parse_time(completed) > podutil.parse_time(status["lastSuccessfulTime"])):
                    status["lastSuccessfulTime"] = completed
                    changed = True
        for ref in list(status.get("active") or ()):
            if ref.get("uid") in children:
                continue
            try:
                await self.jobs_api.get(ref["name"], namespace=ref.get("namespace") or cj["metadata"]["namespace"])
            except ApiError as e:
                if e.code != 404:
                    raise
                rec.event(cj, "Normal", "MissingJob", f"Active job went missing: {ref['name']}")
                self._drop_active(cj, ref.get("uid"))
                changed = True
        if cj["metadata"].get("deletionTimestamp"):
            return None, changed

        zone_name = spec.get("timeZone")
        zone: datetime.tzinfo = UTC
        if zone_name is not None:
            try:
                zone = zoneinfo.ZoneInfo(zone_name)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError) as e:
                rec.event(cj, "Warning", "UnknownTimeZone", f"invalid timeZone: {go_quote(zone_name)}: {e}")
                return None, changed
        if spec.get("suspend"):
            return None, changed
        schedule_text = cron.in_zone(spec.get("schedule", ""), zone_name)
        if "TZ" in spec.get("schedule", ""):
            rec.event(cj, "Warning", "UnsupportedSchedule",
                      f"CRON_TZ or TZ used in schedule {go_quote(spec.get('schedule', ''))} is not officially "
                      "supported, see https://kubernetes.io/docs/concepts/workloads/controllers/cron-jobs/ for "
                      "more details")
        try:
            sched = cron.parse(schedule_text)
        except cron.ScheduleError as e:
            rec.event(cj, "Warning", "UnparseableSchedule",
                      f"unparseable schedule: {go_quote(spec.get('schedule', ''))} : {e}")
            return None, changed
        try:
            _, scheduled, missed = most_recent_schedule_time(cj, now, sched, True)
        except cron.ScheduleError as e:
            rec.event(cj, "Warning", "InvalidSchedule", f"invalid schedule: {spec.get('schedule', '')} : {e}")
            return None, changed
        if scheduled is not None and missed > TOO_MANY_MISSED:
            rec.event(cj, "Warning", "TooManyMissedTimes", "too many missed start times. Set or decrease "
                      ".spec.startingDeadlineSeconds or check clock skew")
        delay = next_schedule_delay(cj, now, sched)
        if scheduled is None:
            return delay, changed
        deadline = spec.get("startingDeadlineSeconds")
        if deadline is not None and scheduled + datetime.timedelta(seconds=deadline) < now:
            rec.event(cj, "Warning", "MissSchedule", f"Missed scheduled time to start a job: {rfc1123z(scheduled)}")
            return delay, changed
        name = job_name(cj, scheduled)
        last = podutil.parse_time(status.get("lastScheduleTime"))
        if any(r.get("name") == name for r in status.get("active") or ()) or last == scheduled:
            return delay, changed
        policy = spec.get("concurrencyPolicy", "Allow")
        if policy == "Forbid" and status.get("active"):
            rec.event(cj, "Normal", "JobAlreadyActive",
                      "Not starting job because prior execution is running and concurrency policy is Forbid")
            return delay, changed
        if policy == "Replace":
            for ref in list(status.get("active") or ()):
                try:
                    job = await self.jobs_api.get(ref["name"], namespace=ref.get("namespace") or
                                                  cj["metadata"]["namespace"])
                except ApiError as e:
                    rec.event(cj, "Warning", "FailedGet", f"Get job: {e.message}")
                    raise
                if not await self._delete_job(cj, job):
                    raise RuntimeError(f"could not replace job {ref['name']}")
                changed = True
        job = self._job_from_template(cj, scheduled, zone)
        try:
            created = await self.jobs_api.create(job, namespace=cj["metadata"]["namespace"])
            rec.event(cj, "Normal", "SuccessfulCreate", f"Created job {created['metadata']['name']}")
        except ApiError as e:
            if e.code != 409 or e.reason != "AlreadyExists":
                if "being terminated" not in e.message:
                    rec.event(cj, "Warning", "FailedCreate", f"Error creating job: {e.message}")
                raise
            created = await self.jobs_api.get(name, namespace=cj["metadata"]["namespace"])
            if (podutil.controller_ref(created) or {}).get("uid") != cj["metadata"]["uid"]:
                return None, changed
            if created["metadata"]["uid"] in {r.get("uid") for r in status.get("active") or ()}:
                return None, changed
        status.setdefault("active", []).append(job_reference(created))
        status["lastScheduleTime"] = podutil.rfc3339(scheduled)
        return delay, True

    def _job_from_template(self, cj: dict, scheduled: datetime.datetime, zone: datetime.tzinfo) -> dict:
        template = cj["spec"].get("jobTemplate") or {}
        tmeta = template.get("metadata") or {}
        annotations = dict(tmeta.get("annotations") or {})
        annotations[SCHEDULED_TIMESTAMP] = rfc3339_in(scheduled, zone)
        meta = {"name": job_name(cj, scheduled), "namespace": cj["metadata"]["namespace"],
                "annotations": annotations, "ownerReferences": [podutil.owner_reference(cj)]}
        if tmeta.get("labels"):
            meta["labels"] = dict(tmeta["labels"])
        return {"apiVersion": "batch/v1", "kind": "Job", "metadata": meta,
                "spec": copy.deepcopy(template.get("spec") or {})}
