"""The StatefulSet controller, as upstream's: pods with stable names `<set>-<ordinal>`, their own
PersistentVolumeClaims `<claim template>-<set>-<ordinal>`, ordered or parallel management, rolling
updates from the highest ordinal down (partition, maxUnavailable) or OnDelete, and the template
history in ControllerRevisions (history.py).

One sync, as upstream's updateStatefulSet: work out the current and update revisions; put every
ordinal in [start, start+replicas) in place (a failed pod is deleted and made again; a missing one
is created, claims first; with OrderedReady each waits until every lower ordinal is Running and
Ready, one step per sync); remove pods above the range, highest first (one at a time, and only
while the others are healthy, with OrderedReady); then replace pods of an old revision from the
highest ordinal down to the partition, at most maxUnavailable unavailable at once. Claims are never
deleted by scale-down unless persistentVolumeClaimRetentionPolicy.whenScaled is Delete; with
whenDeleted Delete they are owned by the set, so the garbage collector removes them with it.
"""
from __future__ import annotations

import copy
import logging
import math
import re

from ..api.errors import ApiError
from ..api.labels import selector_from_label_selector
from ..client.rest import Client
from . import history
from .base import Controller, InformerFactory, namespace_index, owner_uid_index
from ..client.events import NORMAL, WARNING, EventRecorder
from .podutil import (controller_ref, is_available, is_ready, is_terminating, now, owner_reference, pod_from_template,
                      ready_since)
from .replicaset import ORPHAN_INDEX, orphan_namespace_index

log = logging.getLogger("ketch.controllers.statefulset")

POD_NAME_LABEL = "statefulset.kubernetes.io/pod-name"
POD_INDEX_LABEL = "apps.kubernetes.io/pod-index"
REVISION_LABEL = "controller-revision-hash"
OWNER_INDEX = "owner-uid"
_ORDINAL = re.compile(r"^(.*)-([0-9]+)$")


def parent_and_ordinal(pod: dict) -> tuple[str, int]:
    m = _ORDINAL.match(pod["metadata"]["name"])
    return (m[1], int(m[2])) if m else ("", -1)


def pod_revision(pod: dict) -> str:
    return (pod["metadata"].get("labels") or {}).get(REVISION_LABEL, "")


def running_and_ready(pod: dict) -> bool:
    return pod.get("status", {}).get("phase") == "Running" and is_ready(pod)


def healthy(pod: dict, min_ready: int) -> bool:
    return running_and_ready(pod) and is_available(pod, min_ready) and not is_terminating(pod)


def claim_name(template: dict, set_name: str, ordinal: int) -> str:
    return f"{template['metadata']['name']}-{set_name}-{ordinal}"


def scaled(value: int | str | None, total: int) -> int:
    """An int-or-percent of `total`, rounded up, at least 1 (upstream's maxUnavailable)."""
    if value is None:
        return 1
    if isinstance(value, str) and value.endswith("%"):
        return max(1, math.ceil(int(value[:-1]) * total / 100))
    return max(1, int(value))


class StatefulSetController(Controller):
    name = "statefulset"
    component = "statefulset-controller"  # kubectl describe's "From", as upstream

    def __init__(self, client: Client, informers: InformerFactory, recorder: EventRecorder):
        super().__init__(client, informers, recorder)
        self.sets = informers.informer("apps/v1", "StatefulSet")
        self.pods = informers.informer("v1", "Pod")
        self.claims = informers.informer("v1", "PersistentVolumeClaim")
        self.revisions = history.revision_informer(informers)
        self.pods.add_index(OWNER_INDEX, owner_uid_index)
        self.pods.add_index(ORPHAN_INDEX, orphan_namespace_index)
        self.claims.add_index("namespace", namespace_index)
        self.pod_api = client.resource("v1", "Pod")
        self.claim_api = client.resource("v1", "PersistentVolumeClaim")
        self.set_api = client.resource("apps/v1", "StatefulSet")
        self.sets.add_handlers(on_add=self.enqueue, on_update=lambda _o, n: self.enqueue(n))
        self.pods.add_handlers(on_add=self._pod_event, on_update=lambda _o, n: self._pod_event(n),
                               on_delete=self._pod_event)
        self.revisions.add_handlers(on_delete=self._owned_event)

    def _pod_event(self, pod: dict) -> None:
        if controller_ref(pod) is None:  # an orphan: a set whose member it would be may adopt it
            parent, _ = parent_and_ordinal(pod)
            if parent and self.sets.get(f"{pod['metadata']['namespace']}/{parent}") is not None:
                self.enqueue(f"{pod['metadata']['namespace']}/{parent}")
            return
        self._owned_event(pod)

    def _owned_event(self, obj: dict) -> None:
        ref = controller_ref(obj)
        if ref and ref.get("kind") == "StatefulSet" and ref.get("apiVersion", "").startswith("apps/"):
            self.enqueue(f"{obj['metadata']['namespace']}/{ref['name']}")

    # ---- sync ----------------------------------------------------------------------------------

    async def sync(self, key: str) -> float | None:
        sts = self.sets.get(key)
        if sts is None:
            return None
        pods = await self._claim_pods(sts)
        revisions = history.list_revisions(self.revisions, sts)
        current, update, collisions = await self._revisions(sts, revisions)
        status, again = await self._update(sts, current, update, collisions, pods)
        await self._write_status(sts, status)
        live = {current["metadata"]["name"], update["metadata"]["name"]} | {pod_revision(p) for p in pods}
        await history.truncate_history(self.client, revisions, live, sts["spec"].get("revisionHistoryLimit", 10))
        return again

    async def _revisions(self, sts: dict, revisions: list[dict]) -> tuple[dict, dict, int]:
        """The current and update revisions (created or renumbered as needed), and the collision count."""
        collisions = sts.get("status", {}).get("collisionCount") or 0
        data = history.template_patch(sts)
        number = history.next_revision(revisions)
        equal = history.equal_revisions(revisions, data)
        if equal and equal[-1]["metadata"]["name"] == revisions[-1]["metadata"]["name"]:
            update = revisions[-1]
        elif equal:  # a rollback: the old template becomes the newest revision again
            update = await history.update_revision_number(self.client, equal[-1], number)
        else:
            update, collisions = await history.create_revision(self.client, sts, data, number, collisions)
        wanted = sts.get("status", {}).get("currentRevision")
        current = next((r for r in revisions if r["metadata"]["name"] == wanted), update)
        return current, update, collisions

    async def _update(self, sts: dict, current: dict, update: dict, collisions: int,
                      pods: list[dict]) -> tuple[dict, float | None]:
        spec = sts["spec"]
        name = sts["metadata"]["name"]
        count = spec.get("replicas", 1)
        start = (spec.get("ordinals") or {}).get("start") or 0
        min_ready = spec.get("minReadySeconds") or 0
        cur_name, upd_name = current["metadata"]["name"], update["metadata"]["name"]
        status = {"observedGeneration": sts["metadata"].get("generation", 1), "replicas": 0, "readyReplicas": 0,
                  "currentReplicas": 0, "updatedReplicas": 0, "availableReplicas": 0,
                  "currentRevision": cur_name, "updateRevision": upd_name, "collisionCount": collisions}
        replicas: dict[int, dict] = {}
        condemned: list[dict] = []
        again: float | None = None
        for pod in pods:
            status["replicas"] += 1
            if running_and_ready(pod):
                status["readyReplicas"] += 1
                if is_available(pod, min_ready):
                    status["availableReplicas"] += 1
                elif min_ready:
                    since = ready_since(pod)
                    wait = min_ready - (now() - since).total_seconds() + 0.1 if since else float(min_ready)
                    again = min(again or wait, wait)
            if not is_terminating(pod):
                status["currentReplicas"] += pod_revision(pod) == cur_name
                status["updatedReplicas"] += pod_revision(pod) == upd_name
            parent, ordinal = parent_and_ordinal(pod)
            if parent != name or ordinal < 0:
                continue
            if start <= ordinal < start + count:
                replicas[ordinal] = pod
            elif ordinal >= start + count or ordinal < start:
                condemned.append(pod)
        if sts["metadata"].get("deletionTimestamp"):
            return status, again
        monotonic = spec.get("podManagementPolicy", "OrderedReady") != "Parallel"
        unhealthy = sorted((p for p in [*replicas.values(), *condemned] if not healthy(p, min_ready)),
                           key=lambda p: parent_and_ordinal(p)[1])
        first_unhealthy = unhealthy[0]["metadata"]["name"] if unhealthy else None

        def counted(pod: dict, delta: int) -> None:
            status["currentReplicas"] += delta * (pod_revision(pod) == cur_name)
            status["updatedReplicas"] += delta * (pod_revision(pod) == upd_name)

        for ordinal in range(start, start + count):
            pod = replicas.get(ordinal)
            if pod is not None and pod.get("status", {}).get("phase") in ("Failed", "Succeeded") \
                    and not is_terminating(pod):
                failed = pod["status"]["phase"] == "Failed"
                self.recorder.event(sts, WARNING, "RecreatingFailedPod" if failed else "RecreatingTerminatedPod",
                                    f"StatefulSet {sts['metadata']['namespace']}/{name} is recreating "
                                    f"{'failed' if failed else 'terminated'} Pod {pod['metadata']['name']}")
                await self._delete_pod(sts, pod)
                counted(pod, -1)
                status["replicas"] -= 1
                if monotonic:
                    return status, again  # made again once it is gone
                continue
            if pod is None:
                revision = current if self._at_current(sts, ordinal - start) else update
                new_pod, created = await self._create_pod(sts, revision, ordinal)
                replicas[ordinal] = new_pod  # counted as unavailable by the update below
                if created:
                    status["replicas"] += 1
                    counted(new_pod, 1)
                if monotonic:
                    return status, again
                continue
            if is_terminating(pod) and monotonic:
                return status, again
            if not running_and_ready(pod) and monotonic:
                return status, again
            await self._fix_identity(sts, pod, ordinal)
        for pod in sorted(condemned, key=lambda p: parent_and_ordinal(p)[1], reverse=True):
            if is_terminating(pod):
                if monotonic:
                    return status, again
                continue
            if not running_and_ready(pod) and monotonic and pod["metadata"]["name"] != first_unhealthy:
                return status, again
            await self._delete_pod(sts, pod)
            counted(pod, -1)
            if monotonic:
                return status, again
        await self._delete_scaled_claims(sts, replicas, condemned)
        strategy = spec.get("updateStrategy") or {}
        if strategy.get("type") == "OnDelete":
            return status, again
        rolling = strategy.get("rollingUpdate") or {}
        partition = rolling.get("partition") or 0
        budget = scaled(rolling.get("maxUnavailable"), count)
        targets = [replicas[o] for o in range(start + count - 1, start + partition - 1, -1) if o in replicas]
        unavailable = sum(not healthy(p, min_ready) for p in targets)
        for pod in targets:
            if pod_revision(pod) == upd_name or is_terminating(pod):
                continue
            if healthy(pod, min_ready):
                if unavailable >= budget:
                    break
                unavailable += 1
            await self._delete_pod(sts, pod)
            status["currentReplicas"] -= pod_revision(pod) == cur_name
        return status, again

    async def _claim_pods(self, sts: dict) -> list[dict]:
        """The set's pods: those it controls whose labels still match (the rest are released), and
        orphans that match and are named as its members (adopted), as upstream's ClaimPods."""
        meta = sts["metadata"]
        uid, ns = meta["uid"], meta["namespace"]
        selector = selector_from_label_selector(sts["spec"].get("selector"))
        owned = []
        for pod in self.pods.by_index(OWNER_INDEX, uid):
            if (controller_ref(pod) or {}).get("uid") != uid:
                continue
            if selector.matches(pod["metadata"].get("labels")) or meta.get("deletionTimestamp"):
                owned.append(pod)
            else:
                await self._patch_owner_refs(pod, [{"$patch": "delete", "uid": uid}])
        if meta.get("deletionTimestamp") or selector.empty:
            return owned
        for pod in self.pods.by_index(ORPHAN_INDEX, ns):
            if parent_and_ordinal(pod)[0] == meta["name"] and not is_terminating(pod) \
                    and selector.matches(pod["metadata"].get("labels")):
                if await self._patch_owner_refs(pod, [owner_reference(sts)]):
                    owned.append(pod)
        return owned

    async def _patch_owner_refs(self, pod: dict, refs: list[dict]) -> bool:
        meta = pod["metadata"]
        try:
            await self.pod_api.patch(meta["name"], {"metadata": {"ownerReferences": refs, "uid": meta["uid"]}},
                                     "strategic", namespace=meta["namespace"])
            return True
        except ApiError as e:
            if e.code in (404, 409, 422):  # gone or changed meanwhile: the next sync sees
                return False
            raise

    def _at_current(self, sts: dict, index: int) -> bool:
        """A new pod at this position belongs to the current revision (below the partition)."""
        strategy = sts["spec"].get("updateStrategy") or {}
        if strategy.get("type", "RollingUpdate") != "RollingUpdate":
            return False
        rolling = strategy.get("rollingUpdate")
        if rolling is None:
            return index < (sts.get("status", {}).get("currentReplicas") or 0)
        return index < (rolling.get("partition") or 0)

    # ---- pods and claims -----------------------------------------------------------------------

    def _new_pod(self, sts: dict, revision: dict, ordinal: int) -> dict:
        name = f"{sts['metadata']['name']}-{ordinal}"
        pod = pod_from_template(history.template_of(revision), sts, name=name)
        labels = pod["metadata"].setdefault("labels", {})
        labels.update({POD_NAME_LABEL: name, POD_INDEX_LABEL: str(ordinal),
                       REVISION_LABEL: revision["metadata"]["name"]})
        pod["spec"]["hostname"] = name
        if sts["spec"].get("serviceName"):
            pod["spec"]["subdomain"] = sts["spec"]["serviceName"]
        claims = {t["metadata"]["name"]: claim_name(t, sts["metadata"]["name"], ordinal)
                  for t in sts["spec"].get("volumeClaimTemplates") or ()}
        volumes = [{"name": v, "persistentVolumeClaim": {"claimName": c}} for v, c in claims.items()]
        pod["spec"]["volumes"] = volumes + [v for v in pod["spec"].get("volumes") or () if v["name"] not in claims]
        return pod

    async def _create_pod(self, sts: dict, revision: dict, ordinal: int) -> tuple[dict, bool]:
        """Create the pod of `ordinal` (claims first); the pod, and whether this call made it."""
        pod = self._new_pod(sts, revision, ordinal)
        await self._create_claims(sts, pod["metadata"]["name"], ordinal)
        set_name, pod_name = sts["metadata"]["name"], pod["metadata"]["name"]
        try:
            created = await self.pod_api.create(pod, namespace=sts["metadata"]["namespace"])
        except ApiError as e:
            if e.code == 409:
                return pod, False  # made already; the cache has not seen it yet
            self.recorder.event(sts, WARNING, "FailedCreate",
                                f"create Pod {pod_name} in StatefulSet {set_name} failed error: {e.message}")
            raise
        self.recorder.event(sts, NORMAL, "SuccessfulCreate", f"create Pod {pod_name} in StatefulSet {set_name} "
                                                             f"successful")
        return created, True

    async def _create_claims(self, sts: dict, pod_name: str, ordinal: int) -> None:
        """Create the pod's missing claims; a claim still being deleted must go first."""
        meta, spec = sts["metadata"], sts["spec"]
        ns, set_name = meta["namespace"], meta["name"]
        policy = spec.get("persistentVolumeClaimRetentionPolicy") or {}
        for template in spec.get("volumeClaimTemplates") or ():
            name = claim_name(template, set_name, ordinal)
            existing = self.claims.get(f"{ns}/{name}")
            if existing is not None:
                if existing["metadata"].get("deletionTimestamp"):
                    raise ApiError(409, "Conflict", f"pvc {name} is being deleted")
                continue
            tmeta = template.get("metadata") or {}
            labels = {**(tmeta.get("labels") or {}), **((spec.get("selector") or {}).get("matchLabels") or {})}
            claim = {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                     "metadata": {"name": name, "namespace": ns, "labels": labels},
                     "spec": copy.deepcopy(template.get("spec") or {})}
            if tmeta.get("annotations"):
                claim["metadata"]["annotations"] = dict(tmeta["annotations"])
            if policy.get("whenDeleted") == "Delete":  # the garbage collector deletes it with the set
                claim["metadata"]["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": "StatefulSet",
                                                         "name": set_name, "uid": meta["uid"]}]
            try:
                await self.claim_api.create(claim, namespace=ns)
            except ApiError as e:
                if e.code == 409:
                    continue
                self.recorder.event(sts, WARNING, "FailedCreate", f"create Claim {name} for Pod {pod_name} in "
                                                                  f"StatefulSet {set_name} failed error: {e.message}")
                raise
            self.recorder.event(sts, NORMAL, "SuccessfulCreate",
                                f"create Claim {name} Pod {pod_name} in StatefulSet {set_name} success")

    async def _delete_pod(self, sts: dict, pod: dict) -> None:
        meta = pod["metadata"]
        try:
            await self.pod_api.delete(meta["name"], namespace=meta["namespace"], preconditions={"uid": meta["uid"]})
        except ApiError as e:
            if e.code in (404, 409):
                return  # gone already, or a newer pod of the same name
            self.recorder.event(sts, WARNING, "FailedDelete", f"delete Pod {meta['name']} in StatefulSet "
                                                              f"{sts['metadata']['name']} failed error: {e.message}")
            raise
        self.recorder.event(sts, NORMAL, "SuccessfulDelete",
                            f"delete Pod {meta['name']} in StatefulSet {sts['metadata']['name']} successful")

    async def _fix_identity(self, sts: dict, pod: dict, ordinal: int) -> None:
        """Restore the identity labels and the claims of a pod that lost them."""
        labels = pod["metadata"].get("labels") or {}
        name = pod["metadata"]["name"]
        if labels.get(POD_NAME_LABEL) != name or labels.get(POD_INDEX_LABEL) != str(ordinal):
            await self.pod_api.patch(name, {"metadata": {"labels": {POD_NAME_LABEL: name,
                                                                    POD_INDEX_LABEL: str(ordinal)}}},
                                     "merge", namespace=pod["metadata"]["namespace"])
            self.recorder.event(sts, NORMAL, "SuccessfulUpdate",
                                f"update Pod {name} in StatefulSet {sts['metadata']['name']} successful")
        ns = sts["metadata"]["namespace"]
        if any(self.claims.get(f"{ns}/{claim_name(t, sts['metadata']['name'], ordinal)}") is None
               for t in sts["spec"].get("volumeClaimTemplates") or ()):
            await self._create_claims(sts, name, ordinal)

    async def _delete_scaled_claims(self, sts: dict, replicas: dict[int, dict], condemned: list[dict]) -> None:
        """whenScaled Delete: claims of ordinals scaled away go once their pod has gone."""
        spec = sts["spec"]
        if (spec.get("persistentVolumeClaimRetentionPolicy") or {}).get("whenScaled") != "Delete" or condemned:
            return
        ns, set_name = sts["metadata"]["namespace"], sts["metadata"]["name"]
        start, count = (spec.get("ordinals") or {}).get("start") or 0, spec.get("replicas", 1)
        templates = [t["metadata"]["name"] for t in spec.get("volumeClaimTemplates") or ()]
        for claim in self.claims.by_index("namespace", ns):
            m = _ORDINAL.match(claim["metadata"]["name"])
            if not m or claim["metadata"].get("deletionTimestamp"):
                continue
            ordinal = int(m[2])
            if start <= ordinal < start + count or ordinal in replicas:
                continue
            if any(m[1] == f"{t}-{set_name}" for t in templates):
                try:
                    await self.claim_api.delete(claim["metadata"]["name"], namespace=ns)
                except ApiError as e:
                    if e.code != 404:
                        raise
                self.recorder.event(sts, NORMAL, "SuccessfulDelete",
                                    f"delete Claim {claim['metadata']['name']} in StatefulSet {set_name} success")

    # ---- status --------------------------------------------------------------------------------

    async def _write_status(self, sts: dict, status: dict) -> None:
        strategy = (sts["spec"].get("updateStrategy") or {}).get("type", "RollingUpdate")
        if strategy == "RollingUpdate" and status["updatedReplicas"] == status["replicas"] \
                and status["readyReplicas"] == status["replicas"]:
            status["currentReplicas"] = status["updatedReplicas"]
            status["currentRevision"] = status["updateRevision"]
        old = sts.get("status") or {}
        merged = {**old, **status}
        if merged == old:
            return
        updated = copy.deepcopy(sts)
        updated["status"] = merged
        await self.set_api.update_status(updated)
