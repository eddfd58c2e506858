"""The ReplicaSet and ReplicationController controllers (upstream's pkg/controller/replicaset; the
ReplicationController is the same controller with a map selector, as upstream's replication
package wraps it).

One sync of a ReplicaSet: the active pods it owns (owner-uid index) and the orphans in its
namespace that its selector matches (orphan index) are claimed — orphans adopted, owned pods whose
labels no longer match released; then, once the creations and deletions of the previous sync have
been observed (expectations), the difference to spec.replicas is created in slow-start batches
(1, 2, 4, … up to 500 per sync) or deleted in upstream's deletion order; last the status
subresource is written. Cost per sync is O(pods of this ReplicaSet), never of all pods.
"""
from __future__ import annotations

import asyncio
import copy
import datetime
import logging
from typing import Awaitable, Callable

from ..api.errors import ApiError
from ..api.labels import Selector, SelectorError, selector_from_label_selector, selector_from_set
from ..client.informer import object_key
from ..client.rest import Client
from . import podutil
from .base import Controller, Expectations, InformerFactory, PodControl, namespace_index, owner_uid_index
from ..client.events import EventRecorder

log = logging.getLogger("ketch.controllers.replicaset")

BURST_REPLICAS = 500          # upstream's burstReplicas: most pods created or deleted in one sync
SLOW_START_INITIAL_BATCH = 1  # upstream's SlowStartInitialBatchSize
DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"
OWNER_INDEX = "owner-uid"
NAMESPACE_INDEX = "namespace"
ORPHAN_INDEX = "orphan-namespace"
# Pod status changes of one owner within this window make one sync: a ReplicaSet of 1,000 pods
# going Running one by one is synced (and its status written) a few dozen times, not 1,000.
BATCH_SECONDS = 0.1


def orphan_namespace_index(obj: dict) -> list[str]:
    """Objects without a controller, by namespace: the candidates for adoption."""
    return [] if podutil.controller_ref(obj) else [obj.get("metadata", {}).get("namespace", "")]


async def slow_start_batch(count: int, initial: int, fn: Callable[[], Awaitable[None]]) -> tuple[int, Exception | None]:
    """Call `fn` `count` times in batches of doubling size, each batch concurrently, stopping after
    the first batch with a failure (upstream's slowStartBatch): a doomed creation (quota, invalid
    template) fails once instead of `count` times. Returns the successes and the first error."""
    remaining, successes, batch = count, 0, min(count, initial)
    while batch > 0:
        results = await asyncio.gather(*(fn() for _ in range(batch)), return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        successes += batch - len(errors)
        for e in errors:
            if not isinstance(e, Exception):  # cancellation
                raise e
        if errors:
            return successes, errors[0]
        remaining -= batch
        batch = min(2 * batch, remaining)
    return successes, None


def _deletion_cost(pod: dict) -> int:
    try:
        return int((pod["metadata"].get("annotations") or {}).get(DELETION_COST, 0))
    except (TypeError, ValueError):
        return 0


def deletion_rank_key(pod: dict, rank: int) -> tuple:
    """Upstream's ActivePodsWithRanks order, pods to delete first: unassigned, Pending < Unknown <
    Running, not ready, lower pod-deletion-cost, doubled up on a node (higher rank), ready for less
    time, more restarts, newer."""
    base = podutil.deletion_order_key(pod)
    return (*base[:3], _deletion_cost(pod), -rank, *base[3:])


def pods_to_delete(pods: list[dict], related: list[dict], count: int) -> list[dict]:
    if count >= len(pods):
        return list(pods)
    on_node: dict[str, int] = {}
    for p in related:
        node = (p.get("spec") or {}).get("nodeName")
        if node:
            on_node[node] = on_node.get(node, 0) + 1
    ranked = sorted(pods, key=lambda p: deletion_rank_key(p, on_node.get((p.get("spec") or {}).get("nodeName") or "", 0)))
    return ranked[:count]


def _set_condition(conditions: list[dict], cond: dict) -> list[dict]:
    out = [c for c in conditions if c.get("type") != cond["type"]]
    out.append(cond)
    return out


class ReplicaSetController(Controller):
    name = "replicaset"
    api_version, kind = "apps/v1", "ReplicaSet"
    event_source = "replicaset-controller"
    workers = 5  # upstream's --concurrent-replicaset-syncs

    def __init__(self, client: Client, informers: InformerFactory, recorder: EventRecorder):
        super().__init__(client, informers, recorder)
        self.recorder = recorder.for_component(self.event_source)
        self.resource = client.resource(self.api_version, self.kind)
        self.informer = informers.informer(self.api_version, self.kind)
        self.informer.add_index(NAMESPACE_INDEX, namespace_index)
        self.informer.add_index(OWNER_INDEX, owner_uid_index)
        self.pods = informers.informer("v1", "Pod")
        self.pods.add_index(OWNER_INDEX, owner_uid_index)
        self.pods.add_index(ORPHAN_INDEX, orphan_namespace_index)
        self.pod_resource = client.resource("v1", "Pod")
        self.pod_control = PodControl(client, self.recorder)
        self.expectations = Expectations()
        self.informer.add_handlers(on_add=self.enqueue, on_update=self._owner_updated, on_delete=self._owner_deleted)
        self.pods.add_handlers(on_add=self._pod_added, on_update=self._pod_updated, on_delete=self._pod_deleted)

    # ---- what differs between ReplicaSet and ReplicationController -------------------------------

    def selector(self, owner: dict) -> Selector:
        return selector_from_label_selector((owner.get("spec") or {}).get("selector"))

    # ---- event handlers (upstream's addPod/updatePod/deletePod) ----------------------------------

    def _enqueue_observed(self, key: str) -> None:
        """After an observed creation or deletion: at once when it was the last one expected."""
        if self.expectations.satisfied(key):
            self.enqueue(key)
        else:
            self.enqueue_batched(key, BATCH_SECONDS)

    def _owner_updated(self, old: dict, owner: dict) -> None:
        # A status-only change (most often the echo of our own write) joins the batch: it still
        # needs a look, as a write decided on a stale cache may have been skipped meanwhile.
        if old.get("spec") != owner.get("spec") or \
                old["metadata"].get("deletionTimestamp") != owner["metadata"].get("deletionTimestamp"):
            self.enqueue(owner)
        else:
            self.enqueue_batched(object_key(owner), BATCH_SECONDS)

    def _owner_deleted(self, owner: dict) -> None:
        self.expectations.forget(object_key(owner))

    def _resolve(self, pod: dict, ref: dict | None) -> dict | None:
        """The owner named by a controller reference, if it is one of ours and still the same object."""
        if ref is None or ref.get("kind") != self.kind:
            return None
        owner = self.informer.get(f"{pod['metadata'].get('namespace')}/{ref.get('name')}")
        if owner is None or owner["metadata"].get("uid") != ref.get("uid"):
            return None
        return owner

    def _matching_owners(self, pod: dict) -> list[dict]:
        labels = pod["metadata"].get("labels")
        if not labels:
            return []
        out = []
        for owner in self.informer.by_index(NAMESPACE_INDEX, pod["metadata"].get("namespace", "")):
            try:
                sel = self.selector(owner)
            except SelectorError:
                continue
            if not sel.empty and sel.matches(labels):
                out.append(owner)
        return out

    def _pod_added(self, pod: dict) -> None:
        if podutil.is_terminating(pod):
            self._pod_deleted(pod)  # a restarted controller sees a pod being deleted as added
            return
        owner = self._resolve(pod, podutil.controller_ref(pod))
        if owner is not None:
            key = object_key(owner)
            self.expectations.observed_add(key)
            self._enqueue_observed(key)
            return
        if podutil.controller_ref(pod) is None:
            for owner in self._matching_owners(pod):
                self.enqueue(owner)

    def _pod_updated(self, old: dict, pod: dict) -> None:
        if old["metadata"].get("resourceVersion") == pod["metadata"].get("resourceVersion"):
            return  # resync replay
        labels_changed = old["metadata"].get("labels") != pod["metadata"].get("labels")
        if podutil.is_terminating(pod):
            self._pod_deleted(pod)
            if labels_changed:
                self._pod_deleted(old)
            return
        ref, old_ref = podutil.controller_ref(pod), podutil.controller_ref(old)
        if ref != old_ref and old_ref is not None:
            prev = self._resolve(old, old_ref)
            if prev is not None:
                self.enqueue(prev)
        if ref is not None:
            owner = self._resolve(pod, ref)
            if owner is not None:
                self.enqueue_batched(object_key(owner), BATCH_SECONDS)
                min_ready = (owner.get("spec") or {}).get("minReadySeconds") or 0
                if min_ready and not podutil.is_ready(old) and podutil.is_ready(pod):
                    self.enqueue_after(object_key(owner), min_ready + 1)
            return
        if labels_changed or ref != old_ref:
            for owner in self._matching_owners(pod):
                self.enqueue(owner)

    def _pod_deleted(self, pod: dict) -> None:
        owner = self._resolve(pod, podutil.controller_ref(pod))
        if owner is None:
            return
        key = object_key(owner)
        self.expectations.observed_delete(key, object_key(pod))
        self._enqueue_observed(key)

    # ---- sync ------------------------------------------------------------------------------------

    async def sync(self, key: str) -> float | None:
        owner = self.informer.get(key)
        if owner is None:
            self.expectations.forget(key)
            return None
        needs_sync = self.expectations.satisfied(key)
        try:
            selector = self.selector(owner)
        except SelectorError as e:
            log.info("%s %s: invalid selector: %s", self.kind, key, e)
            return None
        pods = await self.claim_pods(owner, selector)
        error: ApiError | None = None
        diff = len(pods) - int((owner.get("spec") or {}).get("replicas", 1))
        if needs_sync and not podutil.is_terminating(owner):
            try:
                await self.manage_replicas(key, owner, pods, diff)
            except ApiError as e:
                error = e
        status, again = self.calculate_status(owner, pods, error, diff)
        await self.update_status(owner, status)
        if error is not None:
            raise error  # re-queued with back-off, as upstream returns manageReplicasErr
        return again

    async def claim_pods(self, owner: dict, selector: Selector) -> list[dict]:
        """Upstream's PodControllerRefManager.ClaimPods over the active pods this owner owns or could
        adopt; returns the active pods it owns afterwards."""
        meta = owner["metadata"]
        uid, ns = meta["uid"], meta["namespace"]
        deleting = podutil.is_terminating(owner)
        owned, adopt, release = [], [], []
        for pod in self.pods.by_index(OWNER_INDEX, uid):
            pmeta = pod["metadata"]
            if pmeta.get("deletionTimestamp") or (pod.get("status") or {}).get("phase") in podutil.TERMINAL_PHASES \
                    or (podutil.controller_ref(pod) or {}).get("uid") != uid:
                continue
            if selector.matches(pmeta.get("labels")):
                owned.append(pod)
            elif not deleting:
                release.append(pod)
        if not deleting and not selector.empty:
            for pod in self.pods.by_index(ORPHAN_INDEX, ns):
                if podutil.is_active(pod) and selector.matches(pod["metadata"].get("labels")):
                    adopt.append(pod)
        if adopt:
            try:
                await self._recheck(owner)
            except ApiError as e:
                log.info("%s %s: not adopting: %s", self.kind, object_key(owner), e.message)
                adopt = []
        results = await asyncio.gather(*(self._adopt(owner, p) for p in adopt),
                                       *(self._release(owner, p) for p in release))
        owned.extend(p for p, ok in zip(adopt, results) if ok)
        return owned

    async def _recheck(self, owner: dict) -> None:
        """Before adopting, make sure the owner is still there and not being deleted, from the API
        rather than the cache (upstream's RecheckDeletionTimestamp)."""
        meta = owner["metadata"]
        fresh = await self.resource.get(meta["name"], namespace=meta["namespace"])
        if fresh["metadata"].get("uid") != meta["uid"]:
            raise ApiError(409, "Conflict", f"original {self.kind} {object_key(owner)} is gone: got uid "
                           f"{fresh['metadata'].get('uid')}, wanted {meta['uid']}")
        if fresh["metadata"].get("deletionTimestamp"):
            raise ApiError(409, "Conflict", f"{self.kind} {object_key(owner)} has just been deleted at "
                           f"{fresh['metadata']['deletionTimestamp']}")

    async def _patch_owner_refs(self, pod: dict, refs: list[dict]) -> bool:
        meta = pod["metadata"]
        try:
            await self.pod_resource.patch(meta["name"], {"metadata": {"ownerReferences": refs, "uid": meta["uid"]}},
                                          "strategic", namespace=meta["namespace"])
            return True
        except ApiError as e:
            if e.code in (404, 409, 422):  # gone, replaced, or changed meanwhile: the next sync sees
                return False
            raise

    async def _adopt(self, owner: dict, pod: dict) -> bool:
        return await self._patch_owner_refs(pod, [podutil.owner_reference(owner)])

    async def _release(self, owner: dict, pod: dict) -> bool:
        await self._patch_owner_refs(pod, [{"$patch": "delete", "uid": owner["metadata"]["uid"]}])
        return False

    async def manage_replicas(self, key: str, owner: dict, pods: list[dict], diff: int) -> None:
        if diff < 0:
            count = min(-diff, BURST_REPLICAS)
            self.expectations.expect(key, adds=count)
            template = (owner.get("spec") or {}).get("template") or {}

            async def create() -> None:
                await self.pod_control.create(owner, podutil.pod_from_template(template, owner))
            successes, error = await slow_start_batch(count, SLOW_START_INITIAL_BATCH, create)
            # Failed and never attempted creations will not be observed by the informer.
            for _ in range(count - successes):
                self.expectations.observed_add(key)
            if error is not None:
                raise error
        elif diff > 0:
            count = min(diff, BURST_REPLICAS)
            victims = pods_to_delete(pods, self._related_pods(owner, pods), count)
            self.expectations.expect_deletions(key, [object_key(p) for p in victims])

            async def delete(pod: dict) -> None:
                try:
                    gone = await self.pod_control.delete(owner, pod)
                except Exception:  # the informer will not see this deletion; do not wait for it
                    self.expectations.observed_delete(key, object_key(pod))
                    raise
                if not gone:
                    self.expectations.observed_delete(key, object_key(pod))
            results = await asyncio.gather(*(delete(p) for p in victims), return_exceptions=True)
            for r in results:
                if isinstance(r, BaseException):
                    raise r

    def _related_pods(self, owner: dict, pods: list[dict]) -> list[dict]:
        """Active pods of this owner and of its siblings (ReplicaSets of the same Deployment), for
        the doubled-up-on-a-node rank."""
        parent = podutil.controller_ref(owner)
        if parent is None:
            return pods
        out: list[dict] = []
        for sibling in self.informer.by_index(OWNER_INDEX, parent["uid"]):
            out.extend(p for p in self.pods.by_index(OWNER_INDEX, sibling["metadata"]["uid"]) if podutil.is_active(p))
        return out

    # ---- status ----------------------------------------------------------------------------------

    def calculate_status(self, owner: dict, pods: list[dict], error: ApiError | None,
                         diff: int) -> tuple[dict, float | None]:
        spec = owner.get("spec") or {}
        min_ready = int(spec.get("minReadySeconds") or 0)
        template_labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
        now = podutil.now()
        wanted = tuple(template_labels.items())
        fully = ready = available = 0
        again: float | None = None
        for pod in pods:  # one pass, the Ready condition looked up once (this runs for every pod, often)
            labels = pod["metadata"].get("labels") or {}
            if all(labels.get(k) == v for k, v in wanted):
                fully += 1
            cond = next((c for c in (pod.get("status") or {}).get("conditions") or () if c.get("type") == "Ready"),
                        None)
            if cond is None or cond.get("status") != "True":
                continue
            ready += 1
            if min_ready <= 0:
                available += 1
                continue
            since = podutil.parse_time(cond.get("lastTransitionTime")) or now
            wait = (since + datetime.timedelta(seconds=min_ready) - now).total_seconds()
            if wait <= 0:
                available += 1
            else:
                again = wait + 0.05 if again is None else min(again, wait + 0.05)
        old = owner.get("status") or {}
        status: dict = {"replicas": len(pods)}
        for field, value in (("fullyLabeledReplicas", fully), ("readyReplicas", ready),
                             ("availableReplicas", available)):
            if value:
                status[field] = value
        if old.get("observedGeneration"):
            status["observedGeneration"] = old["observedGeneration"]
        conditions = copy.deepcopy(old.get("conditions") or [])
        failure = podutil.condition(owner, "ReplicaFailure")
        if error is not None and failure is None:
            conditions = _set_condition(conditions, {
                "type": "ReplicaFailure", "status": "True", "lastTransitionTime": podutil.rfc3339(now),
                "reason": "FailedCreate" if diff < 0 else "FailedDelete", "message": error.message})
        elif error is None and failure is not None:
            conditions = [c for c in conditions if c.get("type") != "ReplicaFailure"]
        if conditions:
            status["conditions"] = conditions
        if "terminatingReplicas" in old:
            status["terminatingReplicas"] = old["terminatingReplicas"]
        return status, (max(again, 0.05) if again is not None and error is None else None)

    async def update_status(self, owner: dict, status: dict) -> None:
        generation = owner["metadata"].get("generation") or 0
        old = owner.get("status") or {}
        if {**status, "observedGeneration": generation} == {**old, "observedGeneration": generation} and \
                old.get("observedGeneration") == generation:
            return
        status["observedGeneration"] = generation
        updated = {**owner, "status": status}
        await self.resource.update_status(updated)


class ReplicationControllerController(ReplicaSetController):
    """The same controller for core/v1 ReplicationControllers: an equality (map) selector."""

    name = "replicationcontroller"
    api_version, kind = "v1", "ReplicationController"
    event_source = "replication-controller"

    def selector(self, owner: dict) -> Selector:
        selector = (owner.get("spec") or {}).get("selector") or {}
        return selector_from_set(selector) if selector else selector_from_label_selector(None)
