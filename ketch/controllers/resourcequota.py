"""The ResourceQuota controller (upstream's pkg/controller/resourcequota): keeps each quota's
status.hard equal to its spec and status.used equal to what the objects of its namespace use, so
`kubectl describe quota` and `kubectl describe namespace` show Used against Hard.

Admission (apiserver/quota.py) charges every create to the quotas before the object is stored; this
controller releases usage when objects go away or stop counting (deleted, a pod finished, a
service changed type), fills in usage for a new or edited quota, and recounts every quota every
RESYNC_SECONDS to correct any drift (a charged create that then failed to store).

A recount that comes out lower than status.used can also mean a create that admission has charged
but not yet stored; so a decrease is written only when a second recount, CONFIRM_SECONDS later,
still finds it.
"""
from __future__ import annotations

import copy
import logging
import time

from ..api import quota as q
from ..client.informer import Informer
from ..client.rest import Client
from .base import Controller, InformerFactory, namespace_index, split_key
from ..client.events import EventRecorder

log = logging.getLogger("ketch.controllers.resourcequota")

RESYNC_SECONDS = 30.0
CONFIRM_SECONDS = 1.0
NAMESPACE_INDEX = "namespace"
# The kinds watched from the start; those of other count/<resource>.<group> names when first named.
WATCHED = {("", "pods"): "Pod", ("", "services"): "Service", ("", "persistentvolumeclaims"): "PersistentVolumeClaim",
           ("", "replicationcontrollers"): "ReplicationController", ("", "secrets"): "Secret",
           ("", "configmaps"): "ConfigMap", ("", "resourcequotas"): "ResourceQuota"}


class ResourceQuotaController(Controller):
    name = "resourcequota"

    def __init__(self, client: Client, informers: InformerFactory, recorder: EventRecorder):
        super().__init__(client, informers, recorder)
        self.quotas = informers.informer("v1", "ResourceQuota")
        self.quotas.add_index(NAMESPACE_INDEX, namespace_index)
        self.quotas.add_handlers(on_add=self.enqueue, on_update=self._quota_updated)
        self.watched: dict[tuple[str, str], Informer] = {}
        for (group, resource), kind in WATCHED.items():
            self._observe(group, resource, informers.informer("v1", kind))
        self._decreased_at: dict[str, float] = {}

    def _observe(self, group: str, resource: str, inf: Informer) -> Informer:
        inf.add_index(NAMESPACE_INDEX, namespace_index)
        evaluator = q.evaluator(group, resource)
        inf.add_handlers(on_update=lambda old, new: self._object_updated(evaluator, old, new),
                         on_delete=lambda obj: self._release(evaluator, obj))
        self.watched[(group, resource)] = inf
        return inf

    async def _informer(self, group: str, resource: str) -> Informer | None:
        """The informer for what a quota counts; one for a count/<resource>.<group> name is started
        the first time a quota names it, so deletes release that usage at once too."""
        inf = self.watched.get((group, resource))
        if inf is None:
            res = q.stored_resource(group, resource)
            if res is None:
                return None
            inf = self._observe(group, resource, self.informers.informer(res.api_version, res.kind))
            inf.start()
        if not inf.synced.is_set():
            await inf.wait_synced(timeout=30)
        return inf

    # ---- what wakes a quota up -----------------------------------------------------------------

    def _quota_updated(self, old: dict, new: dict) -> None:
        spec, status = new.get("spec") or {}, new.get("status") or {}
        if (old.get("spec") or {}) != spec or status.get("hard") != spec.get("hard") \
                or not set(spec.get("hard") or {}) <= set(status.get("used") or {}):
            self.enqueue(new)

    def _release(self, evaluator: q.Evaluator, obj: dict) -> None:
        """Usage may have dropped in the object's namespace: recount the quotas that track it."""
        ns = obj.get("metadata", {}).get("namespace", "")
        for quota in self.quotas.by_index(NAMESPACE_INDEX, ns):
            if evaluator.matching_resources((quota.get("spec") or {}).get("hard") or {}):
                self.enqueue(quota)

    def _object_updated(self, evaluator: q.Evaluator, old: dict, new: dict) -> None:
        ns = new.get("metadata", {}).get("namespace", "")
        if self.quotas.by_index(NAMESPACE_INDEX, ns) and evaluator.usage(old) != evaluator.usage(new):
            self._release(evaluator, new)

    # ---- the recount ---------------------------------------------------------------------------

    async def _objects(self, evaluator: q.Evaluator, namespace: str) -> list[dict]:
        inf = await self._informer(evaluator.group, evaluator.resource)
        return inf.by_index(NAMESPACE_INDEX, namespace) if inf is not None else []

    async def usage(self, quota: dict) -> q.ResourceList:
        hard = q.parse((quota.get("spec") or {}).get("hard"))
        ns = quota["metadata"]["namespace"]
        used: q.ResourceList = {}
        for evaluator in q.evaluators_for(hard):
            objects = await self._objects(evaluator, ns)
            used.update(q.usage_of(quota, evaluator, evaluator.matching_resources(hard), objects))
        return used

    async def sync(self, key: str) -> float | None:
        quota = self.quotas.get(key)
        if quota is None:
            self._decreased_at.pop(key, None)
            return None
        spec, status = quota.get("spec") or {}, quota.get("status") or {}
        used = await self.usage(quota)
        recorded = q.parse(status.get("used"))
        if status.get("hard") == spec.get("hard") and used == recorded:
            self._decreased_at.pop(key, None)
            return RESYNC_SECONDS
        if any(name in recorded and amount < recorded[name] for name, amount in used.items()):
            first = self._decreased_at.setdefault(key, time.monotonic())
            if time.monotonic() - first < CONFIRM_SECONDS:
                return CONFIRM_SECONDS  # maybe a charged create not stored yet: look again
        self._decreased_at.pop(key, None)
        new = copy.deepcopy(quota)
        new["status"] = {"hard": dict(spec.get("hard") or {}), "used": q.to_json(used)}
        ns, _ = split_key(key)
        # The cached resourceVersion is the precondition: a charge made since is a 409, and a recount.
        await self.client.resource("v1", "ResourceQuota", ns).update_status(new)
        return RESYNC_SECONDS
