"""The Job controller, as upstream's pkg/controller/job.

A Job runs pods until `completions` of them succeed (or, with completions unset — the work-queue
style — until any succeeds and none is active), at most `parallelism` at a time. Failed pods count
against `backoffLimit`; between re-creations after failures the controller waits 10 s, doubling per
failure up to 6 min. `activeDeadlineSeconds`, `suspend` and `completionMode: Indexed` behave as
upstream's.

Pods carry the `batch.kubernetes.io/job-tracking` finalizer: a finished pod is first recorded in
`status.uncountedTerminatedPods`, then its finalizer is removed, then it moves to the
succeeded/failed counters — so no pod is counted twice or lost across restarts. A finishing Job
first gets the interim condition (SuccessCriteriaMet or FailureTarget), and the terminal one
(Complete or Failed) once no pod is left terminating, as upstream 1.35 does.

The back-off base is the controller manager's --job-backoff-base (default 10 s; tests shorten it).
"""
from __future__ import annotations

import asyncio
import copy
import datetime
import logging

from ..api import labels as labelsel
from ..api.errors import ApiError
from ..client.rest import Client
from . import podutil
from .base import Controller, Expectations, InformerFactory, PodControl, namespace_index, owner_uid_index
from ..client.events import EventRecorder
from .replicaset import ORPHAN_INDEX, orphan_namespace_index

log = logging.getLogger("ketch.controllers.job")

TRACKING_FINALIZER = "batch.kubernetes.io/job-tracking"
INDEX_KEY = "batch.kubernetes.io/job-completion-index"
FAILURE_COUNT = "batch.kubernetes.io/job-index-failure-count"
IGNORED_FAILURE_COUNT = "batch.kubernetes.io/job-index-ignored-failure-count"
MAX_GENERATED_PREFIX = 58  # generateName prefixes longer than this are cut (upstream's MaxGeneratedNameLength)
MANAGED_BY = "kubernetes.io/job-controller"
MAX_UNCOUNTED = 500
MAX_CREATE_DELETE_PER_SYNC = 500
POD_BATCH_PERIOD = 0.1  # pod events of one Job within this time are one sync (upstream: syncJobBatchPeriod)
COMPLETIONS_REACHED = ("CompletionsReached", "Reached expected number of succeeded pods")


# ---- small pure helpers -----------------------------------------------------------------------

def is_finished(job: dict) -> bool:
    return any(c.get("type") in ("Complete", "Failed") and c.get("status") == "True"
               for c in job.get("status", {}).get("conditions") or ())


def has_finalizer(pod: dict) -> bool:
    return TRACKING_FINALIZER in (pod["metadata"].get("finalizers") or ())


def completion_index(pod: dict) -> int | None:
    value = (pod["metadata"].get("annotations") or {}).get(INDEX_KEY)
    if value is None or not value.isdigit():
        return None
    return int(value)


def parse_indexes(text: str, completions: int) -> set[int]:
    """`1,3-5` -> {1, 3, 4, 5}, dropping indexes >= completions."""
    out: set[int] = set()
    for part in (text or "").split(","):
        if not part:
            continue
        lo, _, hi = part.partition("-")
        try:
            first, last = int(lo), int(hi or lo)
        except ValueError:
            continue
        out.update(range(first, min(last, completions - 1) + 1))
    return out


def format_indexes(indexes: set[int]) -> str:
    """{1, 3, 4, 5} -> `1,3-5` (status.completedIndexes)."""
    parts, run = [], []
    for i in sorted(indexes):
        if run and i == run[-1] + 1:
            run.append(i)
            continue
        if run:
            parts.append(str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}")
        run = [i]
    if run:
        parts.append(str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}")
    return ",".join(parts)


def is_pod_failed(pod: dict, job: dict) -> bool:
    """Failed, or deleted before it succeeded (unless only Failed pods are replaced)."""
    phase = pod.get("status", {}).get("phase")
    if phase == "Failed":
        return True
    if only_replace_failed(job):
        return False
    return podutil.is_terminating(pod) and phase != "Succeeded"


def only_replace_failed(job: dict) -> bool:
    spec = job["spec"]
    return spec.get("podReplacementPolicy") == "Failed" or spec.get("podFailurePolicy") is not None


def finish_time(pod: dict) -> datetime.datetime:
    """When a pod finished: its last container's finishedAt, else its deletion time, else now."""
    latest = None
    status = pod.get("status") or {}
    for cs in (status.get("containerStatuses") or []) + (status.get("initContainerStatuses") or []):
        t = podutil.parse_time(((cs.get("state") or {}).get("terminated") or {}).get("finishedAt"))
        if t is not None and (latest is None or t > latest):
            latest = t
    return latest or podutil.parse_time(pod["metadata"].get("deletionTimestamp")) or podutil.now()


def condition(job: dict, ctype: str) -> dict | None:
    return podutil.condition(job, ctype)


def new_condition(ctype: str, reason: str, message: str, status: str = "True") -> dict:
    now = podutil.rfc3339(podutil.now())
    return {"type": ctype, "status": status, "lastProbeTime": now, "lastTransitionTime": now,
            "reason": reason, "message": message}


def ensure_condition(conditions: list, ctype: str, status: str, reason: str, message: str) -> bool:
    """Set a condition (replacing one of the same type if it differs); False is never added."""
    for i, c in enumerate(conditions):
        if c.get("type") == ctype:
            if (c.get("status"), c.get("reason", ""), c.get("message", "")) != (status, reason, message):
                conditions[i] = new_condition(ctype, reason, message, status)
                return True
            return False
    if status != "False":
        conditions.append(new_condition(ctype, reason, message, status))
        return True
    return False


def past_backoff_limit_on_failure(job: dict, pods: list[dict]) -> bool:
    """restartPolicy OnFailure: container restarts of running pods count against backoffLimit."""
    if job["spec"]["template"].get("spec", {}).get("restartPolicy") != "OnFailure":
        return False
    restarts = 0
    for pod in pods:
        status = pod.get("status") or {}
        if status.get("phase") in ("Running", "Pending"):
            for cs in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or []):
                restarts += cs.get("restartCount", 0)
    limit = job["spec"].get("backoffLimit", 6)
    return restarts > 0 if limit == 0 else restarts >= limit


def add_completion_index_env(spec: dict) -> None:
    """Every container of an Indexed Job's pod gets JOB_COMPLETION_INDEX from the index label."""
    env_var = {"name": "JOB_COMPLETION_INDEX", "valueFrom": {"fieldRef": {
        "apiVersion": "v1", "fieldPath": f"metadata.labels['{INDEX_KEY}']"}}}
    for field in ("initContainers", "containers"):
        for c in spec.get(field) or ():
            env = c.setdefault("env", [])
            if not any(e.get("name") == "JOB_COMPLETION_INDEX" for e in env):
                env.append(copy.deepcopy(env_var))


def _failed_container(statuses: list, requirement: dict) -> dict | None:
    """The first terminated, non-zero container whose exit code matches an onExitCodes requirement."""
    for cs in statuses or ():
        terminated = (cs.get("state") or {}).get("terminated")
        if terminated is None:
            continue
        name = requirement.get("containerName")
        code = terminated.get("exitCode", 0)
        if (name is None or name == cs.get("name")) and code != 0:
            values = requirement.get("values") or ()
            if (requirement.get("operator") == "In" and code in values) or \
                    (requirement.get("operator") == "NotIn" and code not in values):
                return cs
    return None


def match_pod_failure_policy(policy: dict | None, pod: dict) -> tuple[str | None, bool, str | None]:
    """Upstream's matchPodFailurePolicy for a failed pod: (the FailJob message if a FailJob rule
    matched, whether the failure counts towards backoffLimit — not if an Ignore rule matched, the
    action of the matching rule)."""
    if policy is None:
        return None, True, None
    status, meta = pod.get("status") or {}, pod["metadata"]
    for index, rule in enumerate(policy.get("rules") or ()):
        action = rule.get("action")
        if rule.get("onExitCodes") is not None:
            req = rule["onExitCodes"]
            cs = _failed_container(status.get("containerStatuses"), req) or \
                _failed_container(status.get("initContainerStatuses"), req)
            if cs is None:
                continue
            message = (f"Container {cs.get('name')} for pod {meta['namespace']}/{meta['name']} failed with exit code "
                       f"{cs['state']['terminated'].get('exitCode', 0)} matching {action} rule at index {index}")
        elif rule.get("onPodConditions") is not None:
            matched = next((c for c in status.get("conditions") or () for pattern in rule["onPodConditions"]
                            if c.get("type") == pattern.get("type")
                            and c.get("status") == pattern.get("status", "True")), None)
            if matched is None:
                continue
            message = (f"Pod {meta['namespace']}/{meta['name']} has condition {matched.get('type')} matching "
                       f"{action} rule at index {index}")
        else:
            continue
        if action == "Ignore":
            return None, False, action
        if action == "FailJob":
            return message, True, action
        if action in ("Count", "FailIndex"):
            return None, True, action
    return None, True, None


def annotation_count(pod: dict, key: str) -> int:
    """An index failure count annotation (0 when absent or not a valid int32)."""
    value = (pod["metadata"].get("annotations") or {}).get(key, "")
    return int(value) if value.isdigit() and int(value) <= 2**31 - 1 else 0


def is_index_failed(job: dict, pod: dict) -> bool:
    """backoffLimitPerIndex: whether this failed pod makes its index failed."""
    if not is_pod_failed(pod, job):
        return False
    _, counts, action = match_pod_failure_policy(job["spec"].get("podFailurePolicy"), pod)
    if action == "FailIndex":
        return True
    return counts and annotation_count(pod, FAILURE_COUNT) >= job["spec"]["backoffLimitPerIndex"]


def match_success_policy(policy: dict | None, completions: int, succeeded: set[int]) -> str | None:
    """Upstream's matchSuccessPolicy (Indexed Jobs): the message when a rule is met."""
    if policy is None or not succeeded:
        return None
    for index, rule in enumerate(policy.get("rules") or ()):
        count = rule.get("succeededCount")
        if rule.get("succeededIndexes") is not None:
            required = parse_indexes(rule["succeededIndexes"], completions)
            if not required:
                continue
            contains = len(required & succeeded)
            if contains == len(required) or (count is not None and contains >= count):
                return f"Matched rules at index {index}"
        elif count is not None and len(succeeded) >= count:
            return f"Matched rules at index {index}"
    return None


class BackoffRecord:
    """Failures since the last success and when the last one happened (upstream's backoffRecord)."""

    __slots__ = ("failures", "last_failure")

    def __init__(self, failures: int = 0, last_failure: datetime.datetime | None = None):
        self.failures = failures
        self.last_failure = last_failure

    def after(self, succeeded: list[dict], failed: list[dict]) -> "BackoffRecord":
        """The record once newly finished pods are counted."""
        finished = sorted([(finish_time(p), False) for p in succeeded] + [(finish_time(p), True) for p in failed],
                          key=lambda t: t[0])
        failures, last = self.failures, self.last_failure
        for when, is_failure in finished:
            if is_failure:
                failures += 1
                last = when if last is None or when > last else last
            else:
                failures, last = 0, None
        return BackoffRecord(failures, last)

    def remaining(self, base: float, cap: float) -> float:
        if self.failures == 0 or self.last_failure is None:
            return 0.0
        delay = min(base * 2 ** (self.failures - 1), cap)
        return delay - (podutil.now() - self.last_failure).total_seconds()


# ---- the controller ---------------------------------------------------------------------------

class JobController(Controller):
    name = "job"
    workers = 4
    backoff_cap = 360.0

    def __init__(self, client: Client, informers: InformerFactory, recorder: EventRecorder):
        super().__init__(client, informers, recorder)
        self.jobs_api = client.resource("batch/v1", "Job")
        self.pods_api = client.resource("v1", "Pod")
        self.recorder = recorder.for_component("job-controller")  # the "From" of kubectl describe
        self.pod_control = PodControl(client, self.recorder)
        self.jobs = informers.informer("batch/v1", "Job")
        self.pods = informers.informer("v1", "Pod")
        self.pods.add_index("owner-uid", owner_uid_index)
        self.pods.add_index(ORPHAN_INDEX, orphan_namespace_index)
        self.jobs.add_index("namespace", namespace_index)
        self.expectations = Expectations()
        self.rm_finalizers: dict[str, set[str]] = {}  # job key -> pod uids whose finalizer removal is unseen
        self.backoff: dict[str, BackoffRecord] = {}
        self.jobs.add_handlers(on_add=self.enqueue, on_update=lambda _o, n: self.enqueue(n),
                               on_delete=self._job_deleted)
        self.pods.add_handlers(on_add=self._pod_added, on_update=self._pod_updated, on_delete=self._pod_deleted)

    # ---- event handlers ----------------------------------------------------------------------

    def _job_key(self, pod: dict) -> str | None:
        ref = podutil.controller_ref(pod)
        if ref is None or ref.get("kind") != "Job" or ref.get("apiVersion") != "batch/v1":
            return None
        return f"{pod['metadata']['namespace']}/{ref['name']}"

    def _orphan_event(self, pod: dict) -> None:
        """An orphan pod may be adopted by a Job with a manual selector that matches it."""
        if podutil.controller_ref(pod) is not None or podutil.is_terminating(pod):
            return
        for job in self.jobs.by_index("namespace", pod["metadata"]["namespace"]):
            if job["spec"].get("manualSelector"):
                try:
                    selector = labelsel.selector_from_label_selector(job["spec"].get("selector"))
                except labelsel.SelectorError:
                    continue
                if not selector.empty and selector.matches(pod["metadata"].get("labels")):
                    self.enqueue(job)

    def _pod_added(self, pod: dict) -> None:
        key = self._job_key(pod)
        if key is None:
            self._orphan_event(pod)
            return
        self.expectations.observed_add(key)
        self._enqueue_for_pod(key, pod)

    def _pod_updated(self, old: dict, pod: dict) -> None:
        key = self._job_key(pod) or self._job_key(old)
        if self._job_key(pod) is None:
            self._orphan_event(pod)
        if key is not None:
            if not has_finalizer(pod):
                self.rm_finalizers.get(key, set()).discard(pod["metadata"].get("uid"))
            self._enqueue_for_pod(key, pod)

    def _pod_deleted(self, pod: dict) -> None:
        key = self._job_key(pod)
        if key is None:
            return
        self.expectations.observed_delete(key)
        self.rm_finalizers.get(key, set()).discard(pod["metadata"].get("uid"))
        self.enqueue_batched(key, POD_BATCH_PERIOD)

    def _enqueue_for_pod(self, key: str, pod: dict) -> None:
        job = self.jobs.get(key)
        ref = podutil.controller_ref(pod)
        if has_finalizer(pod) and (job is None or ref is None or job["metadata"]["uid"] != ref.get("uid")
                                   or is_finished(job)):
            self.enqueue(("orphan", f"{pod['metadata']['namespace']}/{pod['metadata']['name']}"))
        self.enqueue_batched(key, POD_BATCH_PERIOD)

    def _job_deleted(self, job: dict) -> None:
        key = f"{job['metadata']['namespace']}/{job['metadata']['name']}"
        self.enqueue(key)
        for pod in self.pods.by_index("owner-uid", job["metadata"]["uid"]):
            if has_finalizer(pod):
                self.enqueue(("orphan", f"{pod['metadata']['namespace']}/{pod['metadata']['name']}"))

    # ---- sync --------------------------------------------------------------------------------

    async def sync(self, key) -> float | None:
        if isinstance(key, tuple):
            return await self._sync_orphan(key[1])
        job = self.jobs.get(key)
        if job is None:
            self.expectations.forget(key)
            self.rm_finalizers.pop(key, None)
            self.backoff.pop(key, None)
            return None
        managed_by = job["spec"].get("managedBy")
        if managed_by and managed_by != MANAGED_BY:
            return None
        if is_finished(job):
            self.backoff.pop(key, None)
            return None
        if job["spec"].get("completionMode", "NonIndexed") not in ("NonIndexed", "Indexed"):
            self.recorder.event(job, "Warning", "UnknownCompletionMode",
                                "Skipped Job sync because completion mode is unknown")
            return None
        return await JobSync(self, key, copy.deepcopy(job)).run()

    async def _sync_orphan(self, pod_key: str) -> None:
        """Remove the tracking finalizer from a pod whose Job is gone or finished."""
        pod = self.pods.get(pod_key)
        if pod is None or not has_finalizer(pod):
            return None
        ref = podutil.controller_ref(pod)
        if ref is not None and ref.get("kind") == "Job" and ref.get("apiVersion") == "batch/v1":
            job = self.jobs.get(f"{pod['metadata']['namespace']}/{ref['name']}")
            if job is not None and job["metadata"]["uid"] == ref.get("uid") and not is_finished(job):
                return None
        await self.remove_finalizer(pod)
        return None

    async def claim_pods(self, job: dict) -> list[dict]:
        """The Job's pods, after adopting orphans its selector matches (they get the tracking
        finalizer) and releasing owned pods it no longer matches (upstream's ClaimPods)."""
        meta = job["metadata"]
        uid = meta["uid"]
        try:
            selector = labelsel.selector_from_label_selector(job["spec"].get("selector"))
        except labelsel.SelectorError:
            selector = labelsel.NOTHING
        deleting = bool(meta.get("deletionTimestamp"))
        owned, release = [], []
        for pod in self.pods.by_index("owner-uid", uid):
            if (podutil.controller_ref(pod) or {}).get("uid") != uid:
                continue
            (owned if deleting or selector.matches(pod["metadata"].get("labels")) else release).append(pod)
        adopt = [] if deleting or selector.empty else [
            p for p in self.pods.by_index(ORPHAN_INDEX, meta["namespace"])
            if not podutil.is_terminating(p) and selector.matches(p["metadata"].get("labels"))]
        if adopt:
            fresh = await self.jobs_api.get(meta["name"], namespace=meta["namespace"])
            if fresh["metadata"].get("uid") != uid or fresh["metadata"].get("deletionTimestamp"):
                adopt = []
        patches = [(p, {"ownerReferences": [podutil.owner_reference(job)], "finalizers": [TRACKING_FINALIZER]})
                   for p in adopt]
        patches += [(p, {"ownerReferences": [{"$patch": "delete", "uid": uid}],
                         "$deleteFromPrimitiveList/finalizers": [TRACKING_FINALIZER]}) for p in release]
        for pod, patch in patches:
            pmeta = pod["metadata"]
            try:
                patched = await self.pods_api.patch(pmeta["name"], {"metadata": {**patch, "uid": pmeta["uid"]}},
                                                    "strategic", namespace=pmeta["namespace"])
            except ApiError as e:
                if e.code in (404, 409, 422):
                    continue  # gone or changed meanwhile: the next sync sees
                raise
            if "finalizers" in patch:
                owned.append(patched)
        return owned

    async def remove_finalizer(self, pod: dict) -> None:
        meta = pod["metadata"]
        try:
            await self.pods_api.patch(meta["name"], {"metadata": {
                "$deleteFromPrimitiveList/finalizers": [TRACKING_FINALIZER]}}, "strategic", namespace=meta["namespace"])
        except ApiError as e:
            if e.code != 404:
                raise


class JobSync:
    """One pass of upstream's syncJob over one Job (a fresh copy of the cached object)."""

    def __init__(self, ctl: JobController, key: str, job: dict):
        self.ctl = ctl
        self.key = key
        self.job = job
        self.spec = job["spec"]
        self.status = job.setdefault("status", {})
        self.indexed = self.spec.get("completionMode") == "Indexed"
        self.completions = self.spec.get("completions")
        self.per_index = self.indexed and self.spec.get("backoffLimitPerIndex") is not None
        self.failed_indexes: set[int] = set()
        self.delayed: dict[int, dict] = {}  # index -> the failed pod kept until its replacement exists
        self.requeue: float | None = None

    def _requeue_in(self, delay: float) -> None:
        delay = max(delay, 0.05)
        self.requeue = delay if self.requeue is None else min(self.requeue, delay)

    def _valid_index(self, pod: dict) -> bool:
        ix = completion_index(pod)
        return ix is not None and ix < (self.completions or 0)

    async def run(self) -> float | None:
        ctl, job, status, spec = self.ctl, self.job, self.status, self.spec
        satisfied = ctl.expectations.satisfied(self.key)
        pods = await ctl.claim_pods(job)
        self.pods = pods
        pending_rm = ctl.rm_finalizers.setdefault(self.key, set())
        pending_rm &= {p["metadata"]["uid"] for p in pods if has_finalizer(p)}
        self.pending_rm = pending_rm
        active_pods = [p for p in pods if podutil.is_active(p)]
        ready = sum(1 for p in active_pods if podutil.is_ready(p))
        self.terminating = sum(1 for p in pods if podutil.is_terminating(p)
                               and p.get("status", {}).get("phase") not in podutil.TERMINAL_PHASES)
        active = len(active_pods)
        uncounted = status.get("uncountedTerminatedPods") or {}
        status["uncountedTerminatedPods"] = uncounted
        self.uncounted_succeeded = set(uncounted.get("succeeded") or ())
        self.uncounted_failed = set(uncounted.get("failed") or ())

        def fresh(pred):
            return [p for p in pods if has_finalizer(p) and p["metadata"]["uid"] not in pending_rm
                    and p["metadata"]["uid"] not in self.uncounted_succeeded | self.uncounted_failed
                    and (not self.indexed or self._valid_index(p)) and pred(p)]

        new_succeeded = fresh(lambda p: p.get("status", {}).get("phase") == "Succeeded")
        new_failed = fresh(lambda p: is_pod_failed(p, job))
        self.succeeded = status.get("succeeded", 0) + len(new_succeeded) + len(self.uncounted_succeeded)
        policy = spec.get("podFailurePolicy")
        failed = status.get("failed", 0) + len(self.uncounted_failed) + \
            sum(1 for p in new_failed if match_pod_failure_policy(policy, p)[1])
        suspended = bool(spec.get("suspend"))
        if status.get("startTime") is None and not suspended:
            status["startTime"] = podutil.rfc3339(podutil.now())
        self.new_backoff = ctl.backoff.get(self.key, BackoffRecord()).after(new_succeeded, new_failed)

        finished = self._interim_from_status()
        if finished is None and policy is not None:
            message = next((m for p in pods if is_pod_failed(p, job)
                            for m in (match_pod_failure_policy(policy, p)[0],) if m), None)
            if message is not None:
                finished = new_condition("FailureTarget", "PodFailurePolicy", message)
        if finished is None:
            if failed > spec.get("backoffLimit", 6) or past_backoff_limit_on_failure(job, pods):
                finished = new_condition("FailureTarget", "BackoffLimitExceeded",
                                         "Job has reached the specified backoff limit")
            elif self._past_deadline(suspended):
                finished = new_condition("FailureTarget", "DeadlineExceeded",
                                         "Job was active longer than specified deadline")
            elif spec.get("activeDeadlineSeconds") is not None and not suspended:
                start = podutil.parse_time(status["startTime"])
                self._requeue_in(spec["activeDeadlineSeconds"] - (podutil.now() - start).total_seconds())
        if self.indexed:
            self.prev_indexes = parse_indexes(status.get("completedIndexes", ""), self.completions or 0)
            self.indexes = self.prev_indexes | {completion_index(p) for p in pods if self._valid_index(p)
                                                and p.get("status", {}).get("phase") == "Succeeded"}
            self.succeeded = len(self.indexes)
            if self.per_index:
                finished = self._failed_indexes(finished)
            if finished is None:
                message = match_success_policy(spec.get("successPolicy"), self.completions or 0, self.indexes)
                if message is not None:
                    finished = new_condition("SuccessCriteriaMet", "SuccessPolicy", message)

        suspend_changed = False
        manage_error: Exception | None = None
        if finished is not None:
            deleted, deleted_ready, manage_error = await self._delete_pods(active_pods, remove_finalizer=False)
            if deleted != active or not satisfied:
                finished = None  # not yet: pods may still be terminating or not in the cache
            active -= deleted
            self.terminating += deleted
            ready -= deleted_ready
        else:
            managed = False
            if satisfied and not job["metadata"].get("deletionTimestamp"):
                try:
                    active, ready = await self._manage(active_pods, ready)
                except ApiError as e:
                    manage_error = e
                    active = len(active_pods)
                managed = True
            if self.completions is None:
                complete = self.succeeded > 0 and active == 0
            else:
                complete = self.succeeded >= self.completions and active == 0
            if complete:
                finished = new_condition("SuccessCriteriaMet", *COMPLETIONS_REACHED)
            elif managed:
                conditions = status.setdefault("conditions", [])
                if suspended:
                    if ensure_condition(conditions, "Suspended", "True", "JobSuspended", "Job suspended"):
                        suspend_changed = True
                        ctl.recorder.event(job, "Normal", "Suspended", "Job suspended")
                elif ensure_condition(conditions, "Suspended", "False", "JobResumed", "Job resumed"):
                    suspend_changed = True
                    ctl.recorder.event(job, "Normal", "Resumed", "Job resumed")
                    status["startTime"] = podutil.rfc3339(podutil.now())
                if not conditions:
                    status.pop("conditions")

        needs_flush = suspend_changed or active != status.get("active", 0) or ready != status.get("ready") \
            or self.terminating != status.get("terminating")
        status["active"] = active
        status["ready"] = ready
        status["terminating"] = self.terminating
        if not active:
            status.pop("active")
        await self._track_status(finished, needs_flush)
        if manage_error is not None:
            raise manage_error
        return self.requeue

    def _failed_indexes(self, finished: dict | None) -> dict | None:
        """backoffLimitPerIndex: the failed indexes, the pods whose deletion waits for their
        replacement, and the Job's failure when too many indexes failed."""
        completions = self.completions or 0
        self.failed_indexes = parse_indexes(self.status.get("failedIndexes") or "", completions) | {
            completion_index(p) for p in self.pods
            if self._valid_index(p) and has_finalizer(p) and is_index_failed(self.job, p)}
        active_indexes = {completion_index(p) for p in self.pods if podutil.is_active(p)}
        for p in self.pods:
            ix = completion_index(p)
            if not (has_finalizer(p) and p["metadata"]["uid"] not in self.pending_rm and self._valid_index(p)
                    and is_pod_failed(p, self.job)) or ix in self.indexes | self.failed_indexes | active_indexes:
                continue
            last = self.delayed.get(ix)
            absolute = annotation_count(p, FAILURE_COUNT) + annotation_count(p, IGNORED_FAILURE_COUNT)
            if last is None or (annotation_count(last, FAILURE_COUNT) + annotation_count(last, IGNORED_FAILURE_COUNT)
                                <= absolute and finish_time(p) >= finish_time(last)):
                self.delayed[ix] = p
        if finished is not None:
            return finished
        max_failed = self.spec.get("maxFailedIndexes")
        if max_failed is not None and len(self.failed_indexes) > max_failed:
            return new_condition("FailureTarget", "MaxFailedIndexesExceeded",
                                 "Job has exceeded the specified maximal number of failed indexes")
        if self.failed_indexes and len(self.failed_indexes) + len(self.indexes) >= completions:
            return new_condition("FailureTarget", "FailedIndexes", "Job has failed indexes")
        return None

    def _index_wait(self, index: int) -> float:
        """backoffLimitPerIndex: seconds until index may get a new pod after its last failure."""
        last = self.delayed.get(index)
        if last is None:
            return 0.0
        failures = annotation_count(last, FAILURE_COUNT) + annotation_count(last, IGNORED_FAILURE_COUNT) + 1
        return BackoffRecord(failures, finish_time(last)).remaining(self.ctl.options.job_backoff_base, self.ctl.backoff_cap)

    def _interim_from_status(self) -> dict | None:
        """A condition recorded by an earlier pass decides the outcome."""
        met = condition(self.job, "SuccessCriteriaMet")
        if met is not None and met.get("status") == "True":
            return met
        target = condition(self.job, "FailureTarget")
        if target is not None and target.get("status") == "True":
            return new_condition("Failed", target.get("reason", ""), target.get("message", ""))
        return None

    def _past_deadline(self, suspended: bool) -> bool:
        deadline = self.spec.get("activeDeadlineSeconds")
        start = podutil.parse_time(self.status.get("startTime"))
        if deadline is None or start is None or suspended:
            return False
        return (podutil.now() - start).total_seconds() >= deadline

    # ---- pods --------------------------------------------------------------------------------

    async def _delete_pods(self, pods: list[dict], remove_finalizer: bool) -> tuple[int, int, Exception | None]:
        """Delete pods (first dropping their finalizer when they must not be counted)."""
        async def one(pod: dict) -> bool:
            if remove_finalizer and has_finalizer(pod):
                await self.ctl.remove_finalizer(pod)
            await self.ctl.pod_control.delete(self.job, pod)
            return True

        results = await asyncio.gather(*(one(p) for p in pods), return_exceptions=True)
        deleted = deleted_ready = 0
        error = None
        for pod, r in zip(pods, results):
            if isinstance(r, BaseException):
                if remove_finalizer:
                    self.ctl.expectations.observed_delete(self.key)
                error = error or r
                continue
            deleted += 1
            deleted_ready += podutil.is_ready(pod)
        return deleted, deleted_ready, error

    def _pods_for_removal(self, active_pods: list[dict], at_least: int) -> list[dict]:
        """Duplicate or out-of-range indexes first (Indexed), then by upstream's deletion order."""
        remove, keep = [], list(active_pods)
        if self.indexed:
            seen: set[int] = set()
            keep = []
            for pod in sorted(active_pods, key=podutil.deletion_order_key, reverse=True):
                ix = completion_index(pod)
                if ix is None or ix >= (self.completions or 0) or ix in seen:
                    remove.append(pod)
                else:
                    seen.add(ix)
                    keep.append(pod)
        if len(remove) < at_least:
            keep.sort(key=podutil.deletion_order_key)
            remove += keep[:at_least - len(remove)]
        return remove

    async def _manage(self, active_pods: list[dict], ready: int) -> tuple[int, int]:
        ctl, job, spec = self.ctl, self.job, self.spec
        active = len(active_pods)
        if spec.get("suspend"):
            ctl.expectations.expect(self.key, deletes=active)
            deleted, deleted_ready, err = await self._delete_pods(active_pods, remove_finalizer=True)
            self.terminating += deleted
            if err is not None:
                raise err
            return active - deleted, ready - deleted_ready
        parallelism = spec.get("parallelism", 1)
        if self.completions is None:
            want = active if self.succeeded > 0 else parallelism
        else:
            want = max(0, min(self.completions - self.succeeded, parallelism))
        to_delete = self._pods_for_removal(active_pods, max(0, active - want))[:MAX_CREATE_DELETE_PER_SYNC]
        if to_delete:
            ctl.expectations.expect(self.key, deletes=len(to_delete))
            deleted, deleted_ready, err = await self._delete_pods(to_delete, remove_finalizer=True)
            self.terminating += deleted
            if err is not None:
                raise err
            return active - deleted, ready - deleted_ready
        terminating = self.terminating if only_replace_failed(job) else 0
        diff = want - terminating - active
        if diff <= 0:
            return active, ready
        wait = 0.0 if self.per_index else self.new_backoff.remaining(ctl.options.job_backoff_base, ctl.backoff_cap)
        if wait > 0:
            self._requeue_in(wait)
            return active, ready
        diff = min(diff, MAX_CREATE_DELETE_PER_SYNC)
        indexes: list[int | None] = [None] * diff
        if self.indexed:
            busy = self.indexes | self.failed_indexes | {completion_index(p) for p in active_pods}
            if only_replace_failed(job):
                busy |= {completion_index(p) for p in self.pods if podutil.is_terminating(p)}
            indexes = [i for i in range(self.completions or 0) if i not in busy][:diff]
            if self.per_index and indexes:
                waits = {i: self._index_wait(i) for i in indexes}
                ready_now = [i for i in indexes if waits[i] <= 0]
                if not ready_now:
                    self._requeue_in(min(waits.values()))
                    return active, ready
                indexes = ready_now
            diff = len(indexes)
        ctl.expectations.expect(self.key, adds=diff)
        created, error = 0, None
        batch = 1
        while indexes:
            chunk, indexes = indexes[:batch], indexes[batch:]
            results = await asyncio.gather(*(ctl.pod_control.create(job, self._new_pod(ix)) for ix in chunk),
                                           return_exceptions=True)
            failures = [r for r in results if isinstance(r, BaseException)]
            created += len(chunk) - len(failures)
            for _ in failures:
                ctl.expectations.observed_add(self.key)
            if failures:
                error = failures[0]
                for _ in indexes:  # slow start: skip the rest after a failure
                    ctl.expectations.observed_add(self.key)
                break
            batch *= 2
        if error is not None and not (isinstance(error, ApiError) and "being terminated" in error.message):
            raise error
        return active + created, ready

    def _new_pod(self, index: int | None) -> dict:
        template = copy.deepcopy(self.spec["template"])
        tmeta = template.setdefault("metadata", {})
        finalizers = tmeta.setdefault("finalizers", [])
        if TRACKING_FINALIZER not in finalizers:
            finalizers.append(TRACKING_FINALIZER)
        name = self.job["metadata"]["name"]
        generate_name = f"{name}-"
        if index is not None:
            add_completion_index_env(template.setdefault("spec", {}))
            tmeta.setdefault("annotations", {})[INDEX_KEY] = str(index)
            tmeta.setdefault("labels", {})[INDEX_KEY] = str(index)
            template["spec"]["hostname"] = f"{name}-{index}"
            suffix = f"-{index}-"
            generate_name = name[:MAX_GENERATED_PREFIX - len(suffix)] + suffix
            if self.per_index:
                replaced = self.delayed.get(index)
                failures = ignored = 0
                if replaced is not None:
                    failures = annotation_count(replaced, FAILURE_COUNT)
                    ignored = annotation_count(replaced, IGNORED_FAILURE_COUNT)
                    if match_pod_failure_policy(self.spec.get("podFailurePolicy"), replaced)[1]:
                        failures += 1
                    else:
                        ignored += 1
                tmeta["annotations"][FAILURE_COUNT] = str(failures)
                if ignored:
                    tmeta["annotations"][IGNORED_FAILURE_COUNT] = str(ignored)
        return podutil.pod_from_template(template, self.job, generate_name=generate_name)

    # ---- status and finalizers (upstream's trackJobStatusAndRemoveFinalizers) -----------------

    async def _track_status(self, finished: dict | None, needs_flush: bool) -> None:
        job, status = self.job, self.status
        uncounted = status["uncountedTerminatedPods"]
        with_finalizer = {p["metadata"]["uid"] for p in self.pods
                          if has_finalizer(p) and p["metadata"]["uid"] not in self.pending_rm}
        needs_flush |= self._count_uncounted(with_finalizer)
        to_remove: list[dict] = []
        new_indexes: set[int] = set()
        capped = False
        finishing_failed = finished is not None and finished["type"] != "SuccessCriteriaMet"
        if self.indexed:
            self.pods.sort(key=lambda p: completion_index(p) if completion_index(p) is not None else -1)
        for pod in self.pods:
            uid = pod["metadata"]["uid"]
            if not has_finalizer(pod) or uid in self.pending_rm:
                continue
            failed = is_pod_failed(pod, job)
            phase = pod.get("status", {}).get("phase")
            if not (job["metadata"].get("deletionTimestamp") or finished is not None or phase == "Succeeded" or failed):
                continue
            if not (job["metadata"].get("deletionTimestamp") or finished is not None or phase == "Succeeded") \
                    and self.delayed.get(completion_index(pod), {}).get("metadata", {}).get("uid") == uid:
                continue  # its failure count passes to its replacement first
            to_remove.append(pod)
            if phase == "Succeeded" and uid not in uncounted.get("failed", ()):
                if self.indexed:
                    ix = completion_index(pod)
                    if self._valid_index(pod) and ix not in self.prev_indexes:
                        new_indexes.add(ix)
                        needs_flush = True
                elif uid not in uncounted.get("succeeded", ()):
                    uncounted.setdefault("succeeded", []).append(uid)
                    needs_flush = True
            elif failed or finishing_failed:
                if uid not in uncounted.get("failed", ()) and (not self.indexed or self._valid_index(pod)) \
                        and match_pod_failure_policy(self.spec.get("podFailurePolicy"), pod)[1]:
                    uncounted.setdefault("failed", []).append(uid)
                    needs_flush = True
            if len(new_indexes) + len(uncounted.get("succeeded", ())) + len(uncounted.get("failed", ())) \
                    >= MAX_UNCOUNTED:
                capped = True  # keep status small; the status update brings the Job back
                break
        if self.indexed:
            text = format_indexes(self.prev_indexes | new_indexes)
            if text != status.get("completedIndexes", ""):
                needs_flush = True
            status["completedIndexes"] = text
            status["succeeded"] = len(self.prev_indexes | new_indexes)
            if self.per_index:
                failed_text = format_indexes(self.failed_indexes)
                if failed_text != status.get("failedIndexes"):
                    status["failedIndexes"] = failed_text
                    needs_flush = True
        if finished is not None and finished["type"] == "FailureTarget":
            status.setdefault("conditions", []).append(finished)
            needs_flush = True
            finished = new_condition("Failed", finished["reason"], finished["message"])
        elif finished is not None and finished["type"] == "SuccessCriteriaMet":
            if condition(job, "SuccessCriteriaMet") is None:
                status.setdefault("conditions", []).append(finished)
                needs_flush = True
            finished = new_condition("Complete", finished.get("reason", ""), finished.get("message", ""))

        # 1. record what is about to be counted, 2. drop the finalizers, 3. move uncounted to counters.
        if needs_flush:
            await self._update_status()
            self.ctl.backoff[self.key] = self.new_backoff
            needs_flush = False
        rm_error = None
        if to_remove:
            self.pending_rm.update(p["metadata"]["uid"] for p in to_remove)
            results = await asyncio.gather(*(self.ctl.remove_finalizer(p) for p in to_remove), return_exceptions=True)
            for pod, r in zip(to_remove, results):
                if isinstance(r, BaseException):
                    self.pending_rm.discard(pod["metadata"]["uid"])
                    rm_error = rm_error or r
                else:
                    with_finalizer.discard(pod["metadata"]["uid"])
        needs_flush |= self._count_uncounted(with_finalizer)
        if rm_error is not None:
            if needs_flush:
                await self._update_status()
            raise rm_error
        done = not capped and self._enact_finished(finished)
        if done or needs_flush:
            await self._update_status()
            if done:
                self._record_finished(finished)

    def _count_uncounted(self, with_finalizer: set[str]) -> bool:
        """Uncounted pods whose finalizer is gone move to the succeeded/failed counters."""
        uncounted = self.status["uncountedTerminatedPods"]
        changed = False
        for field in ("succeeded", "failed"):
            uids = uncounted.get(field) or []
            keep = [u for u in uids if u in with_finalizer]
            if len(keep) != len(uids):
                changed = True
                self.status[field] = self.status.get(field, 0) + len(uids) - len(keep)
                if keep:
                    uncounted[field] = keep
                else:
                    uncounted.pop(field, None)
        return changed

    def _enact_finished(self, finished: dict | None) -> bool:
        if finished is None:
            return False
        uncounted = self.status["uncountedTerminatedPods"]
        if uncounted.get("succeeded") or uncounted.get("failed") or self.terminating > 0:
            return False
        ensure_condition(self.status.setdefault("conditions", []), finished["type"], "True",
                         finished.get("reason", ""), finished.get("message", ""))
        if finished["type"] == "Complete":
            self.status["completionTime"] = finished["lastTransitionTime"]
        return True

    def _record_finished(self, finished: dict) -> None:
        job, rec = self.job, self.ctl.recorder
        if finished["type"] == "Complete":
            if self.completions is not None and self.status.get("succeeded", 0) > self.completions:
                rec.event(job, "Warning", "TooManySucceededPods",
                          "Too many succeeded pods running after completion count reached")
            rec.event(job, "Normal", "Completed", "Job completed")
        else:
            rec.event(job, "Warning", finished["reason"], finished["message"])

    async def _update_status(self) -> None:
        for field in ("succeeded", "failed"):
            if not self.status.get(field):
                self.status.pop(field, None)
        updated = await self.ctl.jobs_api.update_status(self.job)
        self.job["metadata"]["resourceVersion"] = updated["metadata"]["resourceVersion"]

