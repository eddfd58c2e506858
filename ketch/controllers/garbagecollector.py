"""The garbage collector: deletes objects whose owners are gone, and carries out foreground and
orphan deletion for owners, as upstream's.

Every stored kind that can be listed, watched and deleted is watched (events excepted, as
upstream ignores them). The owner graph is the informer caches with two indexes: by uid (does an
owner exist?) and by owner uid (what depends on it?). Work items are (kind, key) pairs:

- a dependent whose owners all turned out to be gone is deleted (Background; upstream's
  attemptToDelete). An owner that is not in the cache is confirmed with a live GET first, because
  informers of different kinds run apart; confirmed absences are remembered by (namespace, uid).
  A dependent that still has a live owner only loses its references to the gone ones;
- an owner being deleted with the `foregroundDeletion` finalizer has its dependents deleted
  (those with dependents of their own in the foreground too) and loses the finalizer once no
  dependent with blockOwnerDeletion is left;
- an owner being deleted with the `orphan` finalizer has its references removed from every
  dependent, then loses the finalizer.
"""
from __future__ import annotations

import logging
from collections import OrderedDict

from ..api import kinds
from ..api.errors import ApiError
from ..client.informer import Informer, object_key
from ..client.rest import Client
from .base import Controller, InformerFactory, owner_uid_index, stored_resources
from ..client.events import EventRecorder

log = logging.getLogger("ketch.controllers.garbagecollector")

FOREGROUND = "foregroundDeletion"
ORPHAN = "orphan"
# Upstream's DefaultIgnoredResources: events are never owners worth watching for.
IGNORED = {("", "Event"), ("events.k8s.io", "Event")}
OWNERS_INDEX = "gc-owner-uid"
UID_INDEX = "uid"
ABSENT_CACHE_SIZE = 10000


def uid_index(obj: dict) -> list[str]:
    uid = obj.get("metadata", {}).get("uid")
    return [uid] if uid else []


def collected_resources() -> list[kinds.Resource]:
    return [r for r in stored_resources() if (r.storage_group, r.kind) not in IGNORED]


def _refs(obj: dict) -> list[dict]:
    return obj.get("metadata", {}).get("ownerReferences") or []


def _deleting_with(obj: dict, finalizer: str) -> bool:
    meta = obj.get("metadata", {})
    return bool(meta.get("deletionTimestamp")) and finalizer in (meta.get("finalizers") or ())


class GarbageCollector(Controller):
    name = "garbagecollector"
    workers = 8

    def __init__(self, client: Client, informers: InformerFactory, recorder: EventRecorder):
        super().__init__(client, informers, recorder)
        self.recorder = recorder.for_component("garbage-collector-controller")  # the "From" of kubectl describe
        self.watched: list[tuple[kinds.Resource, Informer]] = []
        self._by_kind: dict[tuple[str, str], int] = {}   # (group, kind) -> index into watched
        self.absent: OrderedDict[tuple[str, str], None] = OrderedDict()  # (namespace, uid) confirmed gone
        self.started = False
        for res in collected_resources():
            inf = informers.informer(res.api_version, res.kind)
            inf.add_index(UID_INDEX, uid_index)
            inf.add_index(OWNERS_INDEX, owner_uid_index)
            idx = len(self.watched)
            self.watched.append((res, inf))
            self._by_kind[(res.group, res.kind)] = idx
            inf.add_handlers(on_add=lambda o, i=idx: self._changed(i, None, o),
                             on_update=lambda old, new, i=idx: self._changed(i, old, new),
                             on_delete=lambda o, i=idx: self._gone(i, o))

    # ---- the graph ---------------------------------------------------------------------------

    def _owner_kind(self, ref: dict) -> kinds.Resource | None:
        """The served resource an ownerReference names (any version of its group and kind)."""
        api_version = ref.get("apiVersion") or ""
        group, _, version = api_version.rpartition("/")
        res = kinds.by_kind(group, version, ref.get("kind") or "")
        if res is not None:
            return kinds.storage_resource(res)
        for r in kinds.RESOURCES:
            if r.group == group and r.kind == ref.get("kind"):
                return kinds.storage_resource(r)
        return None

    def _cached_owner(self, owner_res: kinds.Resource, namespace: str | None, uid: str) -> dict | None:
        idx = self._by_kind.get((owner_res.group, owner_res.kind))
        if idx is None:
            return None
        for obj in self.watched[idx][1].by_index(UID_INDEX, uid):
            if not owner_res.namespaced or obj["metadata"].get("namespace") == namespace:
                return obj
        return None

    def _dependents(self, uid: str) -> list[tuple[int, dict]]:
        return [(i, obj) for i, (_res, inf) in enumerate(self.watched) for obj in inf.by_index(OWNERS_INDEX, uid)]

    def _absent_owner(self, namespace: str | None, uid: str) -> None:
        self.absent[(namespace or "", uid)] = None
        self.absent.move_to_end((namespace or "", uid))
        while len(self.absent) > ABSENT_CACHE_SIZE:
            self.absent.popitem(last=False)

    # ---- events ------------------------------------------------------------------------------

    def _item(self, idx: int, obj: dict) -> tuple[int, str]:
        return (idx, object_key(obj))

    def _changed(self, idx: int, old: dict | None, obj: dict) -> None:
        if not self.started:
            return  # the first full scan in run() covers what the initial lists bring
        if old is not None and old.get("metadata", {}).get("resourceVersion") == \
                obj.get("metadata", {}).get("resourceVersion"):
            return  # a resync replay
        if _deleting_with(obj, FOREGROUND) or _deleting_with(obj, ORPHAN):
            if old is None or not (_deleting_with(old, FOREGROUND) or _deleting_with(old, ORPHAN)):
                self.enqueue(self._item(idx, obj))
            if _deleting_with(obj, FOREGROUND) and (old is None or not _deleting_with(old, FOREGROUND)):
                for dep_idx, dep in self._dependents(obj["metadata"]["uid"]):  # they go first
                    self.enqueue(self._item(dep_idx, dep))
        refs = _refs(obj)
        old_refs = _refs(old) if old is not None else []
        if refs != old_refs and self._needs_attention(obj):
            self.enqueue(self._item(idx, obj))
        # A dependent that changed may be what a foreground deletion is waiting for.
        if old is not None and (refs != old_refs or bool(obj["metadata"].get("deletionTimestamp")) !=
                                bool(old["metadata"].get("deletionTimestamp"))):
            self._enqueue_waiting_owners(obj, old_refs + refs)

    def _gone(self, idx: int, obj: dict) -> None:
        meta = obj.get("metadata", {})
        if meta.get("uid"):
            self._absent_owner(meta.get("namespace"), meta["uid"])
        if not self.started:
            return
        for dep_idx, dep in self._dependents(meta.get("uid", "")):
            self.enqueue(self._item(dep_idx, dep))
        self._enqueue_waiting_owners(obj, _refs(obj))

    def _enqueue_waiting_owners(self, dep: dict, refs: list[dict]) -> None:
        ns = dep["metadata"].get("namespace")
        for ref in refs:
            owner_res = self._owner_kind(ref)
            if owner_res is None:
                continue
            owner = self._cached_owner(owner_res, ns, ref.get("uid", ""))
            if owner is not None and _deleting_with(owner, FOREGROUND):
                self.enqueue(self._item(self._by_kind[(owner_res.group, owner_res.kind)], owner))

    def _needs_attention(self, obj: dict) -> bool:
        """Whether some owner of obj is not in the cache or is deleting its dependents."""
        ns = obj["metadata"].get("namespace")
        for ref in _refs(obj):
            owner_res = self._owner_kind(ref)
            if owner_res is None:
                continue
            owner = self._cached_owner(owner_res, ns, ref.get("uid", ""))
            if owner is None or _deleting_with(owner, FOREGROUND):
                return True
        return False

    async def run(self) -> None:
        await self.informers.wait_synced()
        self.started = True
        for idx, (_res, inf) in enumerate(self.watched):
            for obj in inf.list():
                if _deleting_with(obj, FOREGROUND) or _deleting_with(obj, ORPHAN) or \
                        (_refs(obj) and self._needs_attention(obj)):
                    self.enqueue(self._item(idx, obj))
        await super().run()

    # ---- work --------------------------------------------------------------------------------

    async def sync(self, item: tuple[int, str]) -> float | None:
        idx, key = item
        res, inf = self.watched[idx]
        obj = inf.get(key)
        if obj is None:
            return None
        if _deleting_with(obj, ORPHAN):
            return await self._orphan_dependents(res, obj)
        if _deleting_with(obj, FOREGROUND):
            return await self._delete_dependents(res, obj)
        if obj["metadata"].get("deletionTimestamp") or not _refs(obj):
            return None
        return await self._attempt_to_delete(res, obj)

    async def _owner_state(self, dep: dict, dep_res: kinds.Resource, ref: dict) -> str:
        """"solid", "dangling" or "waiting" (being deleted in the foreground), as upstream classifies."""
        uid = ref.get("uid", "")
        owner_res = self._owner_kind(ref)
        if owner_res is None:
            return "solid"  # a kind this server does not serve: nothing can be judged
        ns = dep["metadata"].get("namespace") if owner_res.namespaced else None
        if owner_res.namespaced and not dep_res.namespaced:
            # A cluster-scoped dependent cannot have a namespaced owner: the reference is absent.
            self.recorder.event(dep, "Warning", "OwnerRefInvalidNamespace",
                                f"ownerRef {ref_text(ref)} does not exist in namespace \"\"")
            return "dangling"
        if (ns or "", uid) in self.absent:
            return "dangling"
        owner = self._cached_owner(owner_res, ns, uid)
        if owner is None:
            try:
                owner = await self.client.resource(owner_res.api_version, owner_res.kind).get(ref.get("name", ""), ns)
            except ApiError as e:
                if e.code != 404:
                    raise
                owner = None
            if owner is None or owner["metadata"].get("uid") != uid:
                self._absent_owner(ns, uid)
                return "dangling"
        return "waiting" if _deleting_with(owner, FOREGROUND) else "solid"

    async def _attempt_to_delete(self, res: kinds.Resource, obj: dict) -> float | None:
        meta = obj["metadata"]
        solid, gone = [], []
        waiting = False
        for ref in _refs(obj):
            state = await self._owner_state(obj, res, ref)
            if state == "solid":
                solid.append(ref)
            else:
                gone.append(ref)
                waiting = waiting or state == "waiting"
        if solid:
            if gone:  # keep the live owners, drop the references to the others
                await self._set_owner_refs(res, obj, solid)
            return None
        has_dependents = bool(self._dependents(meta["uid"]))
        if waiting and has_dependents:
            policy = "Foreground"  # its own dependents must go before the owner waiting on it
        elif ORPHAN in (meta.get("finalizers") or ()):
            policy = "Orphan"
        elif FOREGROUND in (meta.get("finalizers") or ()):
            policy = "Foreground"
        else:
            policy = "Background"
        log.info("deleting %s %s/%s (owners gone), propagation %s", res.kind, meta.get("namespace", ""),
                 meta["name"], policy)
        await self._delete(res, obj, policy)
        return None

    async def _delete_dependents(self, res: kinds.Resource, owner: dict) -> float | None:
        uid = owner["metadata"]["uid"]
        deps = self._dependents(uid)
        blocking = [(i, d) for i, d in deps
                    if any(r.get("uid") == uid and r.get("blockOwnerDeletion") for r in _refs(d))]
        if not blocking:
            await self._remove_finalizer(res, owner, FOREGROUND)
            return None
        for i, dep in deps:
            if not dep["metadata"].get("deletionTimestamp"):
                self.enqueue(self._item(i, dep))
        return None  # each dependent's deletion or change enqueues the owner again

    async def _orphan_dependents(self, res: kinds.Resource, owner: dict) -> float | None:
        uid = owner["metadata"]["uid"]
        for i, dep in self._dependents(uid):
            kept = [r for r in _refs(dep) if r.get("uid") != uid]
            await self._set_owner_refs(self.watched[i][0], dep, kept)
        await self._remove_finalizer(res, owner, ORPHAN)
        return None

    # ---- writes ------------------------------------------------------------------------------

    def _rc(self, res: kinds.Resource):
        return self.client.resource(res.api_version, res.kind)

    async def _delete(self, res: kinds.Resource, obj: dict, policy: str) -> None:
        meta = obj["metadata"]
        try:
            await self._rc(res).delete(meta["name"], meta.get("namespace"), propagationPolicy=policy,
                                       preconditions={"uid": meta["uid"], "resourceVersion": meta["resourceVersion"]})
        except ApiError as e:
            if e.code != 404:
                raise  # a 409 means the cache was behind: the item is judged again

    async def _set_owner_refs(self, res: kinds.Resource, obj: dict, refs: list[dict]) -> None:
        meta = obj["metadata"]
        patch = {"metadata": {"ownerReferences": refs or None, "resourceVersion": meta["resourceVersion"]}}
        try:
            await self._rc(res).patch(meta["name"], patch, "merge", meta.get("namespace"))
        except ApiError as e:
            if e.code != 404:
                raise

    async def _remove_finalizer(self, res: kinds.Resource, obj: dict, finalizer: str) -> None:
        meta = obj["metadata"]
        kept = [f for f in meta.get("finalizers") or () if f != finalizer]
        patch = {"metadata": {"finalizers": kept or None, "resourceVersion": meta["resourceVersion"]}}
        try:
            await self._rc(res).patch(meta["name"], patch, "merge", meta.get("namespace"))
        except ApiError as e:
            if e.code != 404:
                raise


def ref_text(ref: dict) -> str:
    return f"{ref.get('kind')}/{ref.get('name')}, uid: {ref.get('uid')}"
