"""The Deployment controller (upstream's pkg/controller/deployment): a Deployment owns ReplicaSets
named `<deployment>-<pod-template-hash>`, one per template it has had; the one whose template is the
Deployment's is the new ReplicaSet, the rest are old. A sync claims ReplicaSets (adopt orphans,
release non-matching), then, unless paused: rolls back (legacy rollbackTo), scales proportionally
when spec.replicas changed, or steps the rollout — RollingUpdate (surge the new ReplicaSet, scale
old ones down while availability allows) or Recreate (old to zero, wait for their pods to go, then
the new one) — and writes status with the Available and Progressing conditions. The arithmetic
lives in deployutil.py.
"""
from __future__ import annotations

import copy
import logging

from ..api.errors import ApiError
from ..api.labels import SelectorError, selector_from_label_selector
from ..client.informer import object_key
from ..client.rest import Client
from . import deployutil as du
from . import podutil
from .base import Controller, InformerFactory, namespace_index, owner_uid_index
from ..client.events import EventRecorder
from .replicaset import NAMESPACE_INDEX, ORPHAN_INDEX, OWNER_INDEX, orphan_namespace_index

log = logging.getLogger("ketch.controllers.deployment")


class DeploymentController(Controller):
    name = "deployment"
    workers = 5  # upstream's --concurrent-deployment-syncs

    def __init__(self, client: Client, informers: InformerFactory, recorder: EventRecorder):
        super().__init__(client, informers, recorder)
        self.recorder = recorder.for_component("deployment-controller")
        self.deployments = client.resource("apps/v1", "Deployment")
        self.replicasets = client.resource("apps/v1", "ReplicaSet")
        self.dinformer = informers.informer("apps/v1", "Deployment")
        self.dinformer.add_index(NAMESPACE_INDEX, namespace_index)
        self.rsinformer = informers.informer("apps/v1", "ReplicaSet")
        self.rsinformer.add_index(NAMESPACE_INDEX, namespace_index)
        self.rsinformer.add_index(OWNER_INDEX, owner_uid_index)
        self.rsinformer.add_index(ORPHAN_INDEX, orphan_namespace_index)
        self.pods = informers.informer("v1", "Pod")
        self.pods.add_index(OWNER_INDEX, owner_uid_index)
        self._written_revision: dict[str, str | None] = {}
        self.dinformer.add_handlers(on_add=self.enqueue, on_update=lambda _o, n: self.enqueue(n),
                                    on_delete=lambda d: self._written_revision.pop(object_key(d), None))
        self.rsinformer.add_handlers(on_add=self._rs_changed, on_update=self._rs_updated, on_delete=self._rs_changed)
        self.pods.add_handlers(on_delete=self._pod_deleted)

    # ---- event handlers ----------------------------------------------------------------------------

    def _owner_of(self, obj: dict) -> dict | None:
        ref = podutil.controller_ref(obj)
        if ref is None or ref.get("kind") != "Deployment":
            return None
        d = self.dinformer.get(f"{obj['metadata'].get('namespace')}/{ref.get('name')}")
        return d if d is not None and d["metadata"].get("uid") == ref.get("uid") else None

    def _matching(self, rs: dict) -> list[dict]:
        labels = rs["metadata"].get("labels")
        out = []
        for d in self.dinformer.by_index(NAMESPACE_INDEX, rs["metadata"].get("namespace", "")):
            try:
                sel = selector_from_label_selector((d.get("spec") or {}).get("selector"))
            except SelectorError:
                continue
            if not sel.empty and sel.matches(labels):
                out.append(d)
        return out

    def _rs_changed(self, rs: dict) -> None:
        d = self._owner_of(rs)
        if d is not None:
            self.enqueue(d)
        elif podutil.controller_ref(rs) is None:
            for d in self._matching(rs):
                self.enqueue(d)

    def _rs_updated(self, old: dict, rs: dict) -> None:
        if old["metadata"].get("resourceVersion") == rs["metadata"].get("resourceVersion"):
            return
        old_owner = self._owner_of(old)
        if old_owner is not None and podutil.controller_ref(old) != podutil.controller_ref(rs):
            self.enqueue(old_owner)
        d = self._owner_of(rs)
        if d is not None:
            self.enqueue(d)
        elif podutil.controller_ref(rs) is None and (old["metadata"].get("labels") != rs["metadata"].get("labels")
                                                     or podutil.controller_ref(old) is not None):
            for d in self._matching(rs):
                self.enqueue(d)

    def _pod_deleted(self, pod: dict) -> None:
        """A Recreate rollout waits for the old pods to be gone."""
        ref = podutil.controller_ref(pod)
        if ref is None or ref.get("kind") != "ReplicaSet":
            return
        rs = self.rsinformer.get(f"{pod['metadata'].get('namespace')}/{ref.get('name')}")
        d = self._owner_of(rs) if rs is not None else None
        if d is not None and not du.is_rolling(d):
            self.enqueue(d)

    # ---- sync --------------------------------------------------------------------------------------

    async def sync(self, key: str) -> float | None:
        cached = self.dinformer.get(key)
        if cached is None:
            self._written_revision.pop(key, None)
            return None
        d = copy.deepcopy(cached)
        self._written_revision[key] = (d["metadata"].get("annotations") or {}).get(du.REVISION)
        selector = (d.get("spec") or {}).get("selector")
        if selector == {} or (selector is not None and not selector.get("matchLabels")
                              and not selector.get("matchExpressions")):
            self.recorder.event(d, "Warning", "SelectingAll",
                                "This deployment is selecting all pods. A non-empty selector is required.")
            if (d.get("status") or {}).get("observedGeneration", 0) < d["metadata"].get("generation", 0):
                d.setdefault("status", {})["observedGeneration"] = d["metadata"]["generation"]
                await self.write_status(d)
            return None
        rs_list = await self.claim_replica_sets(d)
        if podutil.is_terminating(d):
            return await self.sync_status_only(d, rs_list)
        await self.check_paused_conditions(d)
        if d["spec"].get("paused"):
            return await self.scale_sync(d, rs_list)
        if (d["metadata"].get("annotations") or {}).get(du.ROLLBACK_TO) is not None:
            return await self.rollback(d, rs_list)
        if await self.is_scaling_event(d, rs_list):
            return await self.scale_sync(d, rs_list)
        if du.is_rolling(d):
            return await self.rollout_rolling(d, rs_list)
        return await self.rollout_recreate(d, rs_list)

    # ---- ReplicaSets: claiming, the new one, scaling -----------------------------------------------

    async def claim_replica_sets(self, d: dict) -> list[dict]:
        """Upstream's ClaimReplicaSets: the ReplicaSets this Deployment owns, after adopting orphans its
        selector matches and releasing owned ones it no longer matches."""
        meta = d["metadata"]
        uid = meta["uid"]
        try:
            selector = selector_from_label_selector(d["spec"].get("selector"))
        except SelectorError:
            return []
        deleting = podutil.is_terminating(d)
        owned, adopt = [], []
        for rs in self.rsinformer.by_index(OWNER_INDEX, uid):
            if (podutil.controller_ref(rs) or {}).get("uid") != uid:
                continue
            if selector.matches(rs["metadata"].get("labels")):
                owned.append(rs)
            elif not deleting:
                await self._patch_rs_refs(rs, [{"$patch": "delete", "uid": uid}])
        if not deleting and not selector.empty:
            adopt = [rs for rs in self.rsinformer.by_index(ORPHAN_INDEX, meta["namespace"])
                     if not podutil.is_terminating(rs) and selector.matches(rs["metadata"].get("labels"))]
        if adopt:
            fresh = await self.deployments.get(meta["name"], namespace=meta["namespace"])
            if fresh["metadata"].get("uid") != uid or fresh["metadata"].get("deletionTimestamp"):
                return owned
            for rs in adopt:
                patched = await self._patch_rs_refs(rs, [podutil.owner_reference(d)])
                if patched is not None:
                    owned.append(patched)
        return owned

    async def _patch_rs_refs(self, rs: dict, refs: list[dict]) -> dict | None:
        meta = rs["metadata"]
        try:
            return await self.replicasets.patch(meta["name"], {"metadata": {"ownerReferences": refs, "uid": meta["uid"]}},
                                                "strategic", namespace=meta["namespace"])
        except ApiError as e:
            if e.code in (404, 409, 422):
                return None
            raise

    async def new_and_old(self, d: dict, rs_list: list[dict], create: bool) -> tuple[dict | None, list[dict]]:
        """getAllReplicaSetsAndSyncRevision: the new ReplicaSet (its annotations brought up to date,
        created if asked and missing) and the old ones; the Deployment's revision follows the new one."""
        existing = du.find_new(d, rs_list)
        old = du.find_old(d, rs_list, existing)
        new_revision = du.max_revision(old) + 1
        if existing is not None:
            rs = copy.deepcopy(existing)
            changed = du.set_new_rs_annotations(d, rs, new_revision, True)
            min_ready = d["spec"].get("minReadySeconds") or 0
            if changed or (rs["spec"].get("minReadySeconds") or 0) != min_ready:
                rs["spec"]["minReadySeconds"] = min_ready
                rs = await self.replicasets.update(rs)
                _replace(rs_list, rs)
                return rs, old
            needs_update = _set_revision(d, (rs["metadata"].get("annotations") or {}).get(du.REVISION))
            status = d.setdefault("status", {})
            if du.has_progress_deadline(d) and du.get_condition(status, "Progressing") is None:
                du.set_condition(status, du.new_condition("Progressing", "True", du.FOUND_NEW_RS_REASON,
                                                          f'Found new replica set "{rs["metadata"]["name"]}"'))
                needs_update = True
            if needs_update:
                await self.write_status(d)
            return rs, old
        if not create:
            return None, old
        return await self.create_new(d, rs_list, old, new_revision), old

    async def create_new(self, d: dict, rs_list: list[dict], old: list[dict], new_revision: int) -> dict | None:
        meta, spec = d["metadata"], d["spec"]
        status = d.setdefault("status", {})
        tmpl = copy.deepcopy(spec["template"])
        pod_hash = du.compute_hash(tmpl, status.get("collisionCount"))
        tmeta = tmpl.setdefault("metadata", {})
        tmeta["labels"] = {**(tmeta.get("labels") or {}), du.HASH_LABEL: pod_hash}
        selector = copy.deepcopy(spec["selector"])
        selector["matchLabels"] = {**(selector.get("matchLabels") or {}), du.HASH_LABEL: pod_hash}
        rs = {"apiVersion": "apps/v1", "kind": "ReplicaSet",
              "metadata": {"name": f"{meta['name']}-{pod_hash}", "namespace": meta["namespace"],
                           "ownerReferences": [podutil.owner_reference(d)], "labels": dict(tmeta["labels"])},
              "spec": {"replicas": 0, "minReadySeconds": spec.get("minReadySeconds") or 0,
                       "selector": selector, "template": tmpl}}
        rs["spec"]["replicas"] = self.new_rs_replicas(d, old + [rs], rs)
        du.set_new_rs_annotations(d, rs, new_revision, False)
        created, exists = None, False
        try:
            created = await self.replicasets.create(rs)
        except ApiError as e:
            if e.code == 409 and e.reason == "AlreadyExists":
                exists = True
                found = self.rsinformer.get(f"{meta['namespace']}/{rs['metadata']['name']}")
                if found is None:
                    found = await self.replicasets.get(rs["metadata"]["name"], namespace=meta["namespace"])
                ref = podutil.controller_ref(found) or {}
                if ref.get("uid") == meta["uid"] and du.equal_ignore_hash(spec["template"], du.template(found)):
                    created = found
                else:  # a hash collision: try another name next time
                    status["collisionCount"] = int(status.get("collisionCount") or 0) + 1
                    await self.write_status(d)
                    raise
            elif "NamespaceTerminating" in str(e.details or ""):
                raise
            else:
                msg = f'Failed to create new replica set "{rs["metadata"]["name"]}": {e.message}'
                if du.has_progress_deadline(d):
                    du.set_condition(status, du.new_condition("Progressing", "False", du.FAILED_RS_CREATE_REASON, msg))
                    try:
                        await self.write_status(d)
                    except ApiError:
                        pass
                self.recorder.event(d, "Warning", du.FAILED_RS_CREATE_REASON, msg)
                raise
        rs_list.append(created)
        count = du.replicas(created)
        if not exists and count > 0:
            self.recorder.event(d, "Normal", "ScalingReplicaSet",
                                f"Scaled up replica set {created['metadata']['name']} from 0 to {count}")
        needs_update = _set_revision(d, str(new_revision))
        if not exists and du.has_progress_deadline(d):
            du.set_condition(status, du.new_condition("Progressing", "True", du.NEW_RS_REASON,
                                                      f'Created new replica set "{created["metadata"]["name"]}"'))
            needs_update = True
        if needs_update:
            await self.write_status(d)
        return created

    def new_rs_replicas(self, d: dict, all_rss: list[dict], new: dict) -> int:
        """NewRSNewReplicas: how far the new ReplicaSet may grow now."""
        if not du.is_rolling(d):
            return du.replicas(d)
        desired = du.replicas(d)
        current = du.spec_total(all_rss)
        max_total = desired + du.max_surge(d)
        if current >= max_total:
            return du.replicas(new)
        return du.replicas(new) + min(max_total - current, desired - du.replicas(new))

    async def scale_rs(self, rs_list: list[dict], rs: dict, new_scale: int, d: dict) -> tuple[bool, dict]:
        """scaleReplicaSet: the size and the desired/max replica annotations, with a ScalingReplicaSet
        event on the Deployment when the size changed."""
        desired, max_replicas = du.replicas(d), du.replicas(d) + du.max_surge(d)
        size_changed = du.replicas(rs) != new_scale
        if not size_changed and not du.replicas_annotations_need_update(rs, desired, max_replicas):
            return False, rs
        old_scale = du.replicas(rs)
        updated = copy.deepcopy(rs)
        updated["spec"]["replicas"] = new_scale
        du.set_replicas_annotations(updated, desired, max_replicas)
        updated = await self.replicasets.update(updated)
        _replace(rs_list, updated)
        if size_changed:
            direction = "up" if old_scale < new_scale else "down"
            self.recorder.event(d, "Normal", "ScalingReplicaSet",
                                f"Scaled {direction} replica set {updated['metadata']['name']} from {old_scale} to {new_scale}")
        return size_changed, updated

    async def scale_rs_and_record(self, rs_list: list[dict], rs: dict, new_scale: int, d: dict) -> tuple[bool, dict]:
        if du.replicas(rs) == new_scale:
            return False, rs
        return await self.scale_rs(rs_list, rs, new_scale, d)

    # ---- scaling (paused, or spec.replicas changed) ------------------------------------------------

    async def is_scaling_event(self, d: dict, rs_list: list[dict]) -> bool:
        new, old = await self.new_and_old(d, rs_list, False)
        for rs in du.active(old + [new]):
            desired = du.desired_replicas_annotation(rs)
            if desired is not None and desired != du.replicas(d):
                return True
        return False

    async def scale_sync(self, d: dict, rs_list: list[dict]) -> float | None:
        """sync(): scale without rolling out; a paused Deployment's history is cleaned up too."""
        new, old = await self.new_and_old(d, rs_list, False)
        await self.scale(d, rs_list, _current(rs_list, new), [_current(rs_list, rs) for rs in old])
        new, old = _current(rs_list, new), [_current(rs_list, rs) for rs in old]
        if d["spec"].get("paused") and (d["metadata"].get("annotations") or {}).get(du.ROLLBACK_TO) is None:
            await self.cleanup(d, old)
        return await self.sync_status(d, old + [new], new)

    async def scale(self, d: dict, rs_list: list[dict], new: dict | None, old: list[dict]) -> None:
        target = du.find_active_or_latest(new, old)
        if target is not None:
            if du.replicas(target) != du.replicas(d):
                await self.scale_rs_and_record(rs_list, target, du.replicas(d), d)
            return
        if du.is_saturated(d, new):
            for rs in du.active(old):
                await self.scale_rs_and_record(rs_list, rs, 0, d)
            return
        if not du.is_rolling(d):
            return
        # Proportional scaling: the change spread over the active ReplicaSets by their size.
        live = du.active(old + [new])
        allowed = du.replicas(d) + du.max_surge(d) if du.replicas(d) > 0 else 0
        to_add = allowed - du.spec_total(live)
        if to_add > 0:  # larger first, newer first among equals
            live.sort(key=lambda rs: (rs["metadata"].get("creationTimestamp") or "", rs["metadata"]["name"]),
                      reverse=True)
            live.sort(key=du.replicas, reverse=True)
        elif to_add < 0:  # larger first, older first among equals
            live = du.by_creation(live)
            live.sort(key=du.replicas, reverse=True)
        added = 0
        sizes: dict[str, int] = {}
        for rs in live:
            if to_add != 0:
                share = du.proportion(rs, d, to_add, added)
                sizes[rs["metadata"]["name"]] = du.replicas(rs) + share
                added += share
            else:
                sizes[rs["metadata"]["name"]] = du.replicas(rs)
        for i, rs in enumerate(live):
            name = rs["metadata"]["name"]
            if i == 0 and to_add != 0:
                sizes[name] = max(sizes[name] + to_add - added, 0)
            await self.scale_rs(rs_list, rs, sizes[name], d)

    # ---- RollingUpdate -----------------------------------------------------------------------------

    async def rollout_rolling(self, d: dict, rs_list: list[dict]) -> float | None:
        new, old = await self.new_and_old(d, rs_list, True)
        all_rss = old + [new]
        if await self.reconcile_new(d, rs_list, all_rss, new):
            return await self.sync_rollout_status(d, _refresh(rs_list, all_rss), _current(rs_list, new))
        new = _current(rs_list, new)
        old = [_current(rs_list, rs) for rs in old]
        if await self.reconcile_old(d, rs_list, old + [new], du.active(old), new):
            return await self.sync_rollout_status(d, _refresh(rs_list, old + [new]), _current(rs_list, new))
        if du.complete(d, d.get("status") or {}):
            await self.cleanup(d, old)
        return await self.sync_rollout_status(d, old + [new], new)

    async def reconcile_new(self, d: dict, rs_list: list[dict], all_rss: list, new: dict | None) -> bool:
        if new is None:
            return False
        if du.replicas(new) == du.replicas(d):
            return False
        if du.replicas(new) > du.replicas(d):
            return (await self.scale_rs_and_record(rs_list, new, du.replicas(d), d))[0]
        count = self.new_rs_replicas(d, [rs for rs in all_rss if rs is not None], new)
        return (await self.scale_rs_and_record(rs_list, new, count, d))[0]

    async def reconcile_old(self, d: dict, rs_list: list[dict], all_rss: list, old: list[dict],
                            new: dict | None) -> bool:
        old_count = du.spec_total(old)
        if old_count == 0:
            return False
        all_count = du.spec_total(all_rss)
        min_available = du.replicas(d) - du.max_unavailable(d)
        new_unavailable = du.replicas(new) - int(((new or {}).get("status") or {}).get("availableReplicas") or 0) \
            if new is not None else 0
        max_scaled_down = all_count - min_available - new_unavailable
        if max_scaled_down <= 0:
            return False
        # Unhealthy replicas of old ReplicaSets go first: they do not count towards availability.
        cleaned = 0
        for rs in du.by_creation(old):
            if cleaned >= max_scaled_down:
                break
            available = int((rs.get("status") or {}).get("availableReplicas") or 0)
            if du.replicas(rs) == 0 or du.replicas(rs) == available:
                continue
            down = min(max_scaled_down - cleaned, du.replicas(rs) - available)
            if down < 0:
                # Its status is behind a scale-down (more available than wanted): upstream refuses
                # to "clean up" upwards and retries; the status update will bring us back.
                return cleaned > 0
            await self.scale_rs_and_record(rs_list, rs, du.replicas(rs) - down, d)
            cleaned += down
        old = [_current(rs_list, rs) for rs in old]
        all_rss = old + [_current(rs_list, new)]
        # Then available ones, as far as minAvailable allows.
        available_total = du.available_total(all_rss)
        scaled = 0
        if available_total > min_available:
            to_scale = available_total - min_available
            for rs in du.by_creation(old):
                if scaled >= to_scale:
                    break
                if du.replicas(rs) == 0:
                    continue
                down = min(du.replicas(rs), to_scale - scaled)
                await self.scale_rs_and_record(rs_list, rs, du.replicas(rs) - down, d)
                scaled += down
        return cleaned + scaled > 0

    # ---- Recreate ----------------------------------------------------------------------------------

    async def rollout_recreate(self, d: dict, rs_list: list[dict]) -> float | None:
        new, old = await self.new_and_old(d, rs_list, False)
        scaled = False
        for rs in du.active(old):
            scaled |= (await self.scale_rs_and_record(rs_list, rs, 0, d))[0]
        old = [_current(rs_list, rs) for rs in old]
        if scaled or self.old_pods_running(new, old):
            return await self.sync_rollout_status(d, old + [new], new)
        if new is None:
            new, old = await self.new_and_old(d, rs_list, True)
        if new is not None:
            await self.scale_rs_and_record(rs_list, new, du.replicas(d), d)
            new = _current(rs_list, new)
        if du.complete(d, d.get("status") or {}):
            await self.cleanup(d, old)
        return await self.sync_rollout_status(d, old + [new], new)

    def old_pods_running(self, new: dict | None, old: list[dict]) -> bool:
        if du.actual_total(old) > 0:
            return True
        for rs in old:
            for pod in self.pods.by_index(OWNER_INDEX, rs["metadata"]["uid"]):
                if (podutil.controller_ref(pod) or {}).get("uid") != rs["metadata"]["uid"]:
                    continue
                if (pod.get("status") or {}).get("phase") not in ("Failed", "Succeeded"):
                    return True
        return False

    # ---- rollback (the legacy rollbackTo, kept as an annotation) -----------------------------------

    async def rollback(self, d: dict, rs_list: list[dict]) -> float | None:
        new, old = await self.new_and_old(d, rs_list, True)
        all_rss = [rs for rs in old + [new] if rs is not None]
        try:
            to = int(d["metadata"]["annotations"][du.ROLLBACK_TO])
        except ValueError:
            to = 0
        if to == 0:
            to = du.last_revision(all_rss)
            if to == 0:
                self.recorder.event(d, "Warning", "DeploymentRollbackRevisionNotFound", "Unable to find last revision.")
                return await self.clear_rollback(d)
        for rs in all_rss:
            if du.revision(rs) == to:
                if not du.equal_ignore_hash(d["spec"]["template"], du.template(rs)):
                    tmpl = copy.deepcopy(du.template(rs))
                    (tmpl.get("metadata") or {}).get("labels", {}).pop(du.HASH_LABEL, None)
                    d["spec"]["template"] = tmpl
                    ann = {k: v for k, v in (d["metadata"].get("annotations") or {}).items() if k in du.SKIP_COPY}
                    ann.update({k: v for k, v in (rs["metadata"].get("annotations") or {}).items()
                                if k not in du.SKIP_COPY})
                    d["metadata"]["annotations"] = ann
                    await self.clear_rollback(d)
                    self.recorder.event(d, "Normal", "DeploymentRollback",
                                        f'Rolled back deployment "{d["metadata"]["name"]}" to revision {to}')
                    return None
                self.recorder.event(d, "Warning", "DeploymentRollbackTemplateUnchanged",
                                    "The rollback revision contains the same template as current deployment "
                                    f'"{d["metadata"]["name"]}"')
                return await self.clear_rollback(d)
        self.recorder.event(d, "Warning", "DeploymentRollbackRevisionNotFound",
                            "Unable to find the revision to rollback to.")
        return await self.clear_rollback(d)

    async def clear_rollback(self, d: dict) -> None:
        d["metadata"].setdefault("annotations", {}).pop(du.ROLLBACK_TO, None)
        await self.deployments.update(d)
        return None

    # ---- history cleanup ---------------------------------------------------------------------------

    async def cleanup(self, d: dict, old: list[dict]) -> None:
        """Delete the oldest revisions beyond revisionHistoryLimit, only ReplicaSets scaled to zero."""
        if not du.has_revision_history_limit(d):
            return
        cleanable = [rs for rs in old if rs is not None and not podutil.is_terminating(rs)]
        diff = len(cleanable) - int(d["spec"]["revisionHistoryLimit"])
        if diff <= 0:
            return
        cleanable.sort(key=lambda rs: (du.revision(rs) or 0, rs["metadata"].get("creationTimestamp") or "",
                                       rs["metadata"]["name"]))
        for rs in cleanable[:diff]:
            st = rs.get("status") or {}
            if st.get("replicas", 0) != 0 or du.replicas(rs) != 0 or \
                    (rs["metadata"].get("generation") or 0) > (st.get("observedGeneration") or 0):
                continue
            try:
                await self.replicasets.delete(rs["metadata"]["name"], namespace=rs["metadata"]["namespace"])
            except ApiError as e:
                if e.code != 404:
                    raise

    # ---- status ------------------------------------------------------------------------------------

    async def check_paused_conditions(self, d: dict) -> None:
        if not du.has_progress_deadline(d):
            return
        status = d.setdefault("status", {})
        cond = du.get_condition(status, "Progressing")
        if cond is not None and cond.get("reason") == du.TIMED_OUT_REASON:
            return  # a reported lack of progress is not overwritten
        paused_cond = cond is not None and cond.get("reason") == du.PAUSED_REASON
        if d["spec"].get("paused") and not paused_cond:
            du.set_condition(status, du.new_condition("Progressing", "Unknown", du.PAUSED_REASON, "Deployment is paused"))
        elif not d["spec"].get("paused") and paused_cond:
            du.set_condition(status, du.new_condition("Progressing", "Unknown", du.RESUMED_REASON,
                                                      "Deployment is resumed"))
        else:
            return
        await self.write_status(d)

    def calculate_status(self, d: dict, all_rss: list, new: dict | None) -> dict:
        rss = [rs for rs in all_rss if rs is not None]
        available = du.available_total(rss)
        unavailable = max(du.spec_total(rss) - available, 0)
        old = d.get("status") or {}
        status = {"observedGeneration": d["metadata"].get("generation") or 0,
                  "replicas": du.actual_total(rss), "updatedReplicas": du.actual_total([new]),
                  "readyReplicas": du.ready_total(rss), "availableReplicas": available,
                  "unavailableReplicas": unavailable}
        status = {k: v for k, v in status.items() if v}
        if old.get("collisionCount") is not None:
            status["collisionCount"] = old["collisionCount"]
        if old.get("conditions"):
            status["conditions"] = copy.deepcopy(old["conditions"])
        if available >= du.replicas(d) - du.max_unavailable(d):
            du.set_condition(status, du.new_condition("Available", "True", du.MIN_AVAILABLE_REASON,
                                                      "Deployment has minimum availability."))
        else:
            du.set_condition(status, du.new_condition("Available", "False", du.MIN_UNAVAILABLE_REASON,
                                                      "Deployment does not have minimum availability."))
        return status

    async def sync_status(self, d: dict, all_rss: list, new: dict | None) -> None:
        status = self.calculate_status(d, all_rss, new)
        if status != (d.get("status") or {}):
            d["status"] = status
            await self.write_status(d)
        return None

    async def sync_status_only(self, d: dict, rs_list: list[dict]) -> None:
        new, old = await self.new_and_old(d, rs_list, False)
        return await self.sync_status(d, old + [new], new)

    async def sync_rollout_status(self, d: dict, all_rss: list, new: dict | None) -> float | None:
        status = self.calculate_status(d, all_rss, new)
        if not du.has_progress_deadline(d):
            du.remove_condition(status, "Progressing")
        current = du.get_condition(d.get("status") or {}, "Progressing")
        done = status.get("replicas", 0) == status.get("updatedReplicas", 0) and current is not None and \
            current.get("reason") == du.NEW_RS_AVAILABLE_REASON
        rs_name = new["metadata"]["name"] if new is not None else None
        if du.has_progress_deadline(d) and not done:
            if du.complete(d, status):
                msg = f'ReplicaSet "{rs_name}" has successfully progressed.' if rs_name else \
                    f'Deployment "{d["metadata"]["name"]}" has successfully progressed.'
                du.set_condition(status, du.new_condition("Progressing", "True", du.NEW_RS_AVAILABLE_REASON, msg))
            elif du.progressing(d, status):
                msg = f'ReplicaSet "{rs_name}" is progressing.' if rs_name else \
                    f'Deployment "{d["metadata"]["name"]}" is progressing.'
                cond = du.new_condition("Progressing", "True", du.RS_UPDATED_REASON, msg)
                if current is not None:
                    if current.get("status") == "True":
                        cond["lastTransitionTime"] = current.get("lastTransitionTime")
                    du.remove_condition(status, "Progressing")
                du.set_condition(status, cond)
            elif du.timed_out(d, status):
                msg = f'ReplicaSet "{rs_name}" has timed out progressing.' if rs_name else \
                    f'Deployment "{d["metadata"]["name"]}" has timed out progressing.'
                du.set_condition(status, du.new_condition("Progressing", "False", du.TIMED_OUT_REASON, msg))
        # The new ReplicaSet's failure first, then any old one's (upstream's getReplicaFailures).
        failure = next((c for rs in [new, *all_rss] if rs is not None
                        for c in (rs.get("status") or {}).get("conditions") or () if c.get("type") == "ReplicaFailure"),
                       None)
        if failure is not None:
            du.set_condition(status, {"type": "ReplicaFailure", "status": failure.get("status", "True"),
                                      "lastUpdateTime": failure.get("lastTransitionTime"),
                                      "lastTransitionTime": failure.get("lastTransitionTime"),
                                      "reason": failure.get("reason", ""), "message": failure.get("message", "")})
        else:
            du.remove_condition(status, "ReplicaFailure")
        if status == (d.get("status") or {}):
            return self.requeue_stuck(d, status)
        d["status"] = status
        await self.write_status(d)
        return None

    def requeue_stuck(self, d: dict, status: dict) -> float | None:
        """With no sign of progress, look again when the progress deadline passes."""
        cond = du.get_condition(d.get("status") or {}, "Progressing")
        if not du.has_progress_deadline(d) or cond is None:
            return None
        if du.complete(d, status) or cond.get("reason") == du.TIMED_OUT_REASON:
            return None
        left = du.seconds_to_deadline(d, d.get("status") or {})
        if left is None:
            return None
        return max(left, 0) + 1.0 if left >= 1 else 0.5

    async def write_status(self, d: dict) -> None:
        """UpdateStatus. Upstream's status strategy for Deployments also keeps metadata changes (the
        revision annotation); ketch's status subresource keeps only status, so a changed revision
        annotation is written first with a metadata-only patch (no generation change)."""
        key = object_key(d)
        revision = (d["metadata"].get("annotations") or {}).get(du.REVISION)
        if revision is not None and revision != self._written_revision.get(key):
            patched = await self.deployments.patch(d["metadata"]["name"],
                                                   {"metadata": {"annotations": {du.REVISION: revision}}},
                                                   "merge", namespace=d["metadata"]["namespace"])
            self._written_revision[key] = revision
            d["metadata"]["resourceVersion"] = patched["metadata"]["resourceVersion"]
        updated = await self.deployments.update_status(d)
        d["metadata"]["resourceVersion"] = updated["metadata"]["resourceVersion"]


def _set_revision(d: dict, rev: str | None) -> bool:
    if rev is None:
        return False
    ann = d["metadata"].setdefault("annotations", {})
    if ann is None:
        ann = d["metadata"]["annotations"] = {}
    if ann.get(du.REVISION) != rev:
        ann[du.REVISION] = rev
        return True
    return False


def _replace(rs_list: list[dict], rs: dict) -> None:
    """Keep this sync's list current after writing a ReplicaSet."""
    for i, item in enumerate(rs_list):
        if item["metadata"]["uid"] == rs["metadata"]["uid"]:
            rs_list[i] = rs
            return
    rs_list.append(rs)


def _current(rs_list: list[dict], rs: dict | None) -> dict | None:
    if rs is None:
        return None
    for item in rs_list:
        if item["metadata"]["uid"] == rs["metadata"]["uid"]:
            return item
    return rs


def _refresh(rs_list: list[dict], rss: list) -> list:
    return [_current(rs_list, rs) for rs in rss]
