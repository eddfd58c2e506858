"""The TTL-after-finished controller: a Job with spec.ttlSecondsAfterFinished is deleted that many
seconds after it finished (its Complete or Failed condition turned True), together with its pods.

As upstream's: the TTL is checked against the cache, then once more against a fresh read of the
Job (its TTL may have been changed meanwhile) before the delete, which is conditional on the Job's
uid and cascades in the foreground, so the Job is gone only once its pods are.
"""
from __future__ import annotations

import logging

from ..api.errors import ApiError
from ..client.rest import Client
from . import podutil
from .base import Controller, InformerFactory, split_key
from ..client.events import EventRecorder

log = logging.getLogger("ketch.controllers.ttlafterfinished")


def finish_time(job: dict):
    for c in (job.get("status") or {}).get("conditions") or ():
        if c.get("type") in ("Complete", "Failed") and c.get("status") == "True":
            return podutil.parse_time(c.get("lastTransitionTime")) or \
                podutil.parse_time((job.get("status") or {}).get("completionTime"))
    return None


def needs_cleanup(job: dict) -> bool:
    return (job.get("spec") or {}).get("ttlSecondsAfterFinished") is not None and \
        not job["metadata"].get("deletionTimestamp") and finish_time(job) is not None


def time_left(job: dict) -> float | None:
    """Seconds until the Job expires (<= 0: expired); None if it does not need cleaning up."""
    if not needs_cleanup(job):
        return None
    finished = finish_time(job)
    now = podutil.now()
    if finished > now:
        log.info("job %s/%s finished in the future (clock skew); its clean-up is deferred",
                 job["metadata"].get("namespace"), job["metadata"]["name"])
    return (finished - now).total_seconds() + job["spec"]["ttlSecondsAfterFinished"]


class TTLAfterFinishedController(Controller):
    name = "ttlafterfinished"

    def __init__(self, client: Client, informers: InformerFactory, recorder: EventRecorder):
        super().__init__(client, informers, recorder)
        self.jobs_client = client.resource("batch/v1", "Job")
        self.jobs = informers.informer("batch/v1", "Job")
        self.jobs.add_handlers(on_add=self._changed, on_update=lambda _o, new: self._changed(new))

    def _changed(self, job: dict) -> None:
        if needs_cleanup(job):
            self.enqueue(job)

    async def sync(self, key: str) -> float | None:
        job = self.jobs.get(key)
        if job is None:
            return None
        left = time_left(job)
        if left is None:
            return None
        if left > 0:
            return left
        ns, name = split_key(key)
        try:
            fresh = await self.jobs_client.get(name, ns)
        except ApiError as e:
            if e.code == 404:
                return None
            raise
        left = time_left(fresh)
        if left is None:
            return None
        if left > 0:
            return left
        log.info("cleaning up job %s/%s", ns, name)
        try:
            await self.jobs_client.delete(name, ns, propagationPolicy="Foreground",
                                          preconditions={"uid": fresh["metadata"]["uid"]})
        except ApiError as e:
            if e.code not in (404, 409):
                raise
        return None
