"""The DaemonSet controller, as upstream's pkg/controller/daemon.

One pod per eligible node: a node is eligible when the pod template's nodeSelector and required
node affinity match it and its NoSchedule/NoExecute taints are tolerated (a pod keeps running on a
node whose NoSchedule taints it does not tolerate, as upstream). Pods are not bound here: each new
pod gets a required node affinity term on `metadata.name` (matchFields) and the default scheduler
places it, as upstream does since 1.12. Daemon pods get upstream's automatic tolerations.

Templates are versioned in ControllerRevisions (`<ds>-<hash>`, data = the template as a replacing
patch); pods carry `controller-revision-hash`. Updates roll out node by node with RollingUpdate
(maxUnavailable, or maxSurge to start the new pod before the old one goes) or wait for the user
to delete pods (OnDelete).
"""
from __future__ import annotations

import asyncio
import copy
import logging
import math
import time

from ..api import labels as labelsel
from ..api.errors import ApiError
from ..client.rest import Client
from ..api.scheduling import NodeSelectorTerm, tolerates
from . import history, podutil
from .base import Controller, Expectations, InformerFactory, PodControl, owner_uid_index
from ..client.events import EventRecorder
from .replicaset import ORPHAN_INDEX, orphan_namespace_index

log = logging.getLogger("ketch.controllers.daemonset")

REVISION_HASH = "controller-revision-hash"
TEMPLATE_GENERATION = "pod-template-generation"
TEMPLATE_GENERATION_ANNOTATION = "deprecated.daemonset.template.generation"  # set by the API server
SLOW_START_BATCH = 1
_TOLERATIONS = (
    ("node.kubernetes.io/not-ready", "NoExecute"),
    ("node.kubernetes.io/unreachable", "NoExecute"),
    ("node.kubernetes.io/disk-pressure", "NoSchedule"),
    ("node.kubernetes.io/memory-pressure", "NoSchedule"),
    ("node.kubernetes.io/pid-pressure", "NoSchedule"),
    ("node.kubernetes.io/unschedulable", "NoSchedule"),
)


def add_daemon_tolerations(spec: dict) -> None:
    """Upstream's AddOrUpdateDaemonPodTolerations: daemons stay through node trouble."""
    wanted = list(_TOLERATIONS)
    if spec.get("hostNetwork"):
        wanted.append(("node.kubernetes.io/network-unavailable", "NoSchedule"))
    tolerations = spec.setdefault("tolerations", [])
    for key, effect in wanted:
        tol = {"key": key, "operator": "Exists", "effect": effect}
        for i, t in enumerate(tolerations):
            if t.get("key") == key and t.get("effect") == effect:
                tolerations[i] = tol
                break
        else:
            tolerations.append(tol)


def set_node_affinity(spec: dict, node_name: str) -> None:
    """Upstream's ReplaceDaemonSetPodNodeNameNodeAffinity: the pod can only go to `node_name`."""
    field_term = {"key": "metadata.name", "operator": "In", "values": [node_name]}
    affinity = spec.setdefault("affinity", {})
    node_aff = affinity.setdefault("nodeAffinity", {})
    required = node_aff.get("requiredDuringSchedulingIgnoredDuringExecution")
    if not required or not required.get("nodeSelectorTerms"):
        node_aff["requiredDuringSchedulingIgnoredDuringExecution"] = {
            "nodeSelectorTerms": [{"matchFields": [field_term]}]}
        return
    for term in required["nodeSelectorTerms"]:
        term["matchFields"] = [f for f in term.get("matchFields") or () if f.get("key") != "metadata.name"]
        term["matchFields"].append(copy.deepcopy(field_term))


def target_node(pod: dict) -> str:
    """The node a daemon pod is for: its nodeName, else its metadata.name affinity term."""
    spec = pod.get("spec") or {}
    if spec.get("nodeName"):
        return spec["nodeName"]
    required = ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution") or {}
    for term in required.get("nodeSelectorTerms") or ():
        for f in term.get("matchFields") or ():
            if f.get("key") == "metadata.name" and f.get("operator") == "In" and len(f.get("values") or ()) == 1:
                return f["values"][0]
    return ""


def node_fits(spec: dict, node: dict) -> tuple[bool, bool]:
    """(should run, should continue running) of upstream's NodeShouldRunDaemonPod."""
    name = node["metadata"]["name"]
    if spec.get("nodeName") and spec["nodeName"] != name:
        return False, False
    labels = node["metadata"].get("labels") or {}
    if any(labels.get(k) != v for k, v in (spec.get("nodeSelector") or {}).items()):
        return False, False
    required = ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution")
    if required is not None:
        terms = [NodeSelectorTerm.parse(t) for t in required.get("nodeSelectorTerms") or ()]
        if not any(t.matches(labels, name) for t in terms):
            return False, False
    tolerations = list(spec.get("tolerations") or ())
    tspec = {"tolerations": tolerations, "hostNetwork": spec.get("hostNetwork")}
    add_daemon_tolerations(tspec)
    untolerated = [t for t in (node.get("spec") or {}).get("taints") or ()
                   if t.get("effect") in ("NoSchedule", "NoExecute")
                   and not any(tolerates(tol, t) for tol in tspec["tolerations"])]
    if untolerated:
        return False, not any(t.get("effect") == "NoExecute" for t in untolerated)
    return True, True


def scaled(value, total: int, round_up: bool = True) -> int:
    """An int-or-percent against `total` (upstream's GetScaledValueFromIntOrPercent)."""
    if isinstance(value, str) and value.endswith("%"):
        frac = int(value[:-1]) * total / 100
        return math.ceil(frac) if round_up else math.floor(frac)
    return int(value or 0)


def template_generation(ds: dict) -> str | None:
    return (ds["metadata"].get("annotations") or {}).get(TEMPLATE_GENERATION_ANNOTATION)


def by_age(pods: list[dict]) -> list[dict]:
    return sorted(pods, key=lambda p: (p["metadata"].get("creationTimestamp", ""), p["metadata"]["name"]))


class Backoff:
    """client-go's flowcontrol.Backoff: per key, a delay that doubles on each step up to a cap and is
    forgotten after twice the cap without steps."""

    def __init__(self, initial: float = 1.0, cap: float = 900.0):
        self.initial, self.cap = initial, cap
        self._entries: dict[str, tuple[float, float]] = {}  # key -> (delay, last step)

    def remaining(self, key: str) -> float:
        entry = self._entries.get(key)
        if entry is None:
            return 0.0
        return max(0.0, entry[0] - (time.monotonic() - entry[1]))

    def step(self, key: str) -> None:
        now = time.monotonic()
        entry = self._entries.get(key)
        if entry is None or now - entry[1] > 2 * self.cap:
            self._entries[key] = (self.initial, now)
        else:
            self._entries[key] = (min(entry[0] * 2, self.cap), now)


class DaemonSetController(Controller):
    name = "daemonset"
    workers = 2

    def __init__(self, client: Client, informers: InformerFactory, recorder: EventRecorder):
        super().__init__(client, informers, recorder)
        self.ds_api = client.resource("apps/v1", "DaemonSet")
        self.recorder = recorder.for_component("daemonset-controller")  # the "From" of kubectl describe
        self.pod_control = PodControl(client, self.recorder)
        self.daemonsets = informers.informer("apps/v1", "DaemonSet")
        self.pods = informers.informer("v1", "Pod")
        self.pods.add_index("owner-uid", owner_uid_index)
        self.pods.add_index(ORPHAN_INDEX, orphan_namespace_index)
        self.pods_api = client.resource("v1", "Pod")
        self.nodes = informers.informer("v1", "Node")
        self.revisions = history.revision_informer(informers)
        self.expectations = Expectations()
        self.failed_pods_backoff = Backoff()
        self.daemonsets.add_handlers(on_add=self.enqueue, on_update=lambda _o, n: self.enqueue(n),
                                     on_delete=self.enqueue)
        self.pods.add_handlers(on_add=lambda p: self._pod_event(p, add=True),
                               on_update=lambda _o, p: self._pod_event(p),
                               on_delete=lambda p: self._pod_event(p, delete=True))
        self.nodes.add_handlers(on_add=self._node_event, on_update=self._node_updated, on_delete=self._node_event)
        self.revisions.add_handlers(on_add=self._owned_event, on_update=lambda _o, r: self._owned_event(r),
                                    on_delete=self._owned_event)

    def _owner_key(self, obj: dict) -> str | None:
        ref = podutil.controller_ref(obj)
        if ref is None or ref.get("kind") != "DaemonSet" or not ref.get("apiVersion", "").startswith("apps/"):
            return None
        return f"{obj['metadata']['namespace']}/{ref['name']}"

    def _pod_event(self, pod: dict, add: bool = False, delete: bool = False) -> None:
        key = self._owner_key(pod)
        if key is None:
            return
        if add:
            self.expectations.observed_add(key)
        if delete:
            self.expectations.observed_delete(key)
        self.enqueue_batched(key)  # a burst of pod status changes is one sync and one status write

    def _owned_event(self, obj: dict) -> None:
        key = self._owner_key(obj)
        if key is not None:
            self.enqueue(key)

    def _node_event(self, _node: dict) -> None:
        for ds in self.daemonsets.list():
            self.enqueue(ds)

    def _node_updated(self, old: dict, new: dict) -> None:
        def shape(n: dict) -> tuple:
            return (n["metadata"].get("labels"), (n.get("spec") or {}).get("taints"),
                    (n.get("spec") or {}).get("unschedulable"))
        if shape(old) != shape(new):
            self._node_event(new)

    # ---- sync --------------------------------------------------------------------------------

    async def sync(self, key: str) -> float | None:
        ds = self.daemonsets.get(key)
        if ds is None:
            self.expectations.forget(key)
            return None
        ds = copy.deepcopy(ds)
        pods = await self._claim_pods(ds)
        nodes = self.nodes.list()
        current, old = await self._history(ds)
        hash_ = current["metadata"]["labels"][REVISION_HASH]
        requeue = None
        if not ds["metadata"].get("deletionTimestamp") and self.expectations.satisfied(key):
            by_node = self._pods_by_node(pods)
            requeue = await self._manage(ds, nodes, by_node, hash_, key)
            strategy = (ds["spec"].get("updateStrategy") or {})
            if strategy.get("type", "RollingUpdate") == "RollingUpdate":
                await self._rolling_update(ds, nodes, by_node, hash_, key)
            await self._cleanup_history(ds, pods, old)
        again = await self._update_status(ds, nodes, self._pods_by_node(pods), hash_)
        return min((d for d in (requeue, again) if d is not None), default=None)

    async def _claim_pods(self, ds: dict) -> list[dict]:
        """The DaemonSet's pods, after adopting orphans its selector matches and releasing owned pods
        it no longer matches (upstream's ClaimPods)."""
        meta = ds["metadata"]
        uid = meta["uid"]
        try:
            selector = labelsel.selector_from_label_selector(ds["spec"].get("selector"))
        except labelsel.SelectorError:
            return []
        owned, release = [], []
        for pod in self.pods.by_index("owner-uid", uid):
            if (podutil.controller_ref(pod) or {}).get("uid") != uid:
                continue
            if selector.matches(pod["metadata"].get("labels")) or meta.get("deletionTimestamp"):
                owned.append(pod)
            else:
                release.append(pod)
        adopt = [] if meta.get("deletionTimestamp") or selector.empty else [
            p for p in self.pods.by_index(ORPHAN_INDEX, meta["namespace"])
            if not podutil.is_terminating(p) and selector.matches(p["metadata"].get("labels"))]
        if adopt:
            fresh = await self.ds_api.get(meta["name"], namespace=meta["namespace"])
            if fresh["metadata"].get("uid") != uid or fresh["metadata"].get("deletionTimestamp"):
                adopt = []
        for pod, refs in [(p, [podutil.owner_reference(ds)]) for p in adopt] + \
                [(p, [{"$patch": "delete", "uid": uid}]) for p in release]:
            pmeta = pod["metadata"]
            try:
                patched = await self.pods_api.patch(pmeta["name"], {"metadata": {
                    "ownerReferences": refs, "uid": pmeta["uid"]}}, "strategic", namespace=pmeta["namespace"])
            except ApiError as e:
                if e.code in (404, 409, 422):
                    continue  # gone or changed meanwhile: the next sync sees
                raise
            if refs[0].get("controller"):
                owned.append(patched)
        return owned

    def _pods_by_node(self, pods: list[dict]) -> dict[str, list[dict]]:
        out: dict[str, list[dict]] = {}
        for pod in pods:
            out.setdefault(target_node(pod), []).append(pod)
        return out

    def _template(self, ds: dict) -> dict:
        return ds["spec"].get("template") or {}

    # ---- history -----------------------------------------------------------------------------

    async def _history(self, ds: dict) -> tuple[dict, list[dict]]:
        """The current revision (created or renumbered as needed) and the older ones."""
        revisions = history.list_revisions(self.revisions, ds)
        data = history.template_patch(ds)
        equal = history.equal_revisions(revisions, data)
        top = history.next_revision(revisions) - 1
        if equal:
            current = equal[-1]
            if current.get("revision", 0) < top:
                current = await history.update_revision_number(self.client, current, top + 1)
        else:
            collision = (ds.get("status") or {}).get("collisionCount") or 0
            current, collision_now = await history.create_revision(
                self.client, ds, data, top + 1, collision, hash_label=REVISION_HASH,
                hash_input=self._template(ds))
            if collision_now != collision:
                ds.setdefault("status", {})["collisionCount"] = collision_now
        name = current["metadata"]["name"]
        return current, [r for r in revisions if r["metadata"]["name"] != name]

    async def _cleanup_history(self, ds: dict, pods: list[dict], old: list[dict]) -> None:
        limit = ds["spec"].get("revisionHistoryLimit", 10)
        if len(old) <= limit:
            return
        live_hashes = {(p["metadata"].get("labels") or {}).get(REVISION_HASH) for p in pods}
        live = {r["metadata"]["name"] for r in old if (r["metadata"].get("labels") or {}).get(REVISION_HASH) in live_hashes}
        await history.truncate_history(self.client, old, live, limit)

    # ---- pods --------------------------------------------------------------------------------

    def _new_pod(self, ds: dict, node_name: str, hash_: str) -> dict:
        template = copy.deepcopy(self._template(ds))
        tmeta = template.setdefault("metadata", {})
        labels = tmeta.setdefault("labels", {})
        labels[REVISION_HASH] = hash_
        generation = template_generation(ds)
        if generation is not None:
            labels[TEMPLATE_GENERATION] = generation
        spec = template.setdefault("spec", {})
        add_daemon_tolerations(spec)
        set_node_affinity(spec, node_name)
        return podutil.pod_from_template(template, ds, generate_name=f"{ds['metadata']['name']}-")

    async def _manage(self, ds: dict, nodes: list[dict], by_node: dict[str, list[dict]], hash_: str, key: str
                      ) -> float | None:
        """Create and delete pods towards one per eligible node; returns when to look again (failed-pod back-off)."""
        requeue = None
        spec = self._template(ds).get("spec") or {}
        surging = self._max_surge(ds, nodes) > 0
        to_create: list[str] = []
        to_delete: list[dict] = []
        node_names = set()
        for node in nodes:
            name = node["metadata"]["name"]
            node_names.add(name)
            should_run, keep_running = node_fits(spec, node)
            daemon_pods = by_node.get(name, [])
            if should_run and not daemon_pods:
                to_create.append(name)
            elif keep_running:
                running = []
                for pod in daemon_pods:
                    if podutil.is_terminating(pod):
                        continue
                    if pod.get("status", {}).get("phase") == "Failed":
                        # Deleting and re-creating can fight a kubelet that rejects the pod: back off.
                        backoff_key = f"{key}/{name}"
                        wait = self.failed_pods_backoff.remaining(backoff_key)
                        if wait > 0:
                            requeue = wait if requeue is None else min(requeue, wait)
                            continue
                        self.failed_pods_backoff.step(backoff_key)
                        self.recorder.event(ds, "Warning", "FailedDaemonPod",
                                            f"Found failed daemon pod {pod['metadata']['namespace']}/"
                                            f"{pod['metadata']['name']} on node {name}, will try to kill it")
                        to_delete.append(pod)
                        continue
                    running.append(pod)
                to_delete += self._excess(ds, by_age(running), hash_, surging)
            elif daemon_pods:
                to_delete += [p for p in daemon_pods if not podutil.is_terminating(p)]
        # Pods meant for nodes that are gone (and not yet scheduled) go too.
        for name, pods in by_node.items():
            if name not in node_names:
                to_delete += [p for p in pods if not podutil.is_terminating(p) and not p["spec"].get("nodeName")]
        await self._sync_nodes(ds, to_delete, to_create, hash_, key)
        return requeue

    def _excess(self, ds: dict, running: list[dict], hash_: str, surging: bool) -> list[dict]:
        """Pods beyond one per node: the oldest stays; with surge an old ready pod may stay beside the
        newest until that one is available."""
        if len(running) <= 1:
            return []
        if not surging:
            return running[1:]
        newest = oldest_old = None
        excess = []
        for pod in running:
            if (pod["metadata"].get("labels") or {}).get(REVISION_HASH) == hash_:
                if newest is None:
                    newest = pod
                    continue
            elif oldest_old is None:
                oldest_old = pod
                continue
            excess.append(pod)
        if newest is not None and oldest_old is not None:
            if not podutil.is_ready(oldest_old) or podutil.is_available(newest, ds["spec"].get("minReadySeconds", 0)):
                excess.append(oldest_old)
        return excess

    async def _sync_nodes(self, ds: dict, to_delete: list[dict], to_create: list[str], hash_: str, key: str) -> None:
        if not to_delete and not to_create:
            return
        self.expectations.expect(key, adds=len(to_create), deletes=len(to_delete))
        error = None
        batch = SLOW_START_BATCH
        pending = list(to_create)
        while pending:
            chunk, pending = pending[:batch], pending[batch:]
            results = await asyncio.gather(*(self.pod_control.create(ds, self._new_pod(ds, n, hash_)) for n in chunk),
                                           return_exceptions=True)
            failures = [r for r in results if isinstance(r, BaseException)]
            for _ in failures:
                self.expectations.observed_add(key)
            if failures:
                error = failures[0]
                for _ in pending:
                    self.expectations.observed_add(key)
                break
            batch *= 2
        results = await asyncio.gather(*(self.pod_control.delete(ds, p) for p in to_delete), return_exceptions=True)
        for r in results:
            if isinstance(r, BaseException):
                self.expectations.observed_delete(key)
                error = error or r
            elif r is False:
                self.expectations.observed_delete(key)
        if error is not None and not (isinstance(error, ApiError) and "being terminated" in error.message):
            raise error

    # ---- rolling update ----------------------------------------------------------------------

    def _desired(self, ds: dict, nodes: list[dict]) -> int:
        spec = self._template(ds).get("spec") or {}
        return sum(1 for n in nodes if node_fits(spec, n)[0])

    def _max_surge(self, ds: dict, nodes: list[dict]) -> int:
        strategy = ds["spec"].get("updateStrategy") or {}
        if strategy.get("type", "RollingUpdate") != "RollingUpdate":
            return 0
        return scaled((strategy.get("rollingUpdate") or {}).get("maxSurge", 0), self._desired(ds, nodes))

    def _max_unavailable(self, ds: dict, nodes: list[dict]) -> int:
        rolling = (ds["spec"].get("updateStrategy") or {}).get("rollingUpdate") or {}
        desired = self._desired(ds, nodes)
        surge = scaled(rolling.get("maxSurge", 0), desired)
        unavailable = scaled(rolling.get("maxUnavailable", 1), desired)
        return 1 if surge == 0 and unavailable == 0 else unavailable

    async def _rolling_update(self, ds: dict, nodes: list[dict], by_node: dict[str, list[dict]], hash_: str,
                              key: str) -> None:
        if not self.expectations.satisfied(key):
            return  # the manage step just acted; look again once its pods are seen
        spec = self._template(ds).get("spec") or {}
        min_ready = ds["spec"].get("minReadySeconds", 0)
        max_surge = self._max_surge(ds, nodes)
        max_unavailable = self._max_unavailable(ds, nodes)
        old_to_delete: list[dict] = []
        candidates: list = []
        busy = 0
        surge_nodes: list[str] = []
        for node in nodes:
            name = node["metadata"]["name"]
            if not node_fits(spec, node)[0]:
                continue
            live = [p for p in by_node.get(name, []) if p.get("status", {}).get("phase") != "Failed"]
            new = [p for p in live if (p["metadata"].get("labels") or {}).get(REVISION_HASH) == hash_]
            old = [p for p in live if p not in new]
            if len(new) > 1 or len(old) > 1:
                busy += 1  # the manage step cleans up duplicates first
                continue
            new_pod, old_pod = (new or [None])[0], (old or [None])[0]
            if max_surge == 0:
                if (new_pod is None) == (old_pod is None):
                    busy += 1
                elif new_pod is not None:
                    busy += not podutil.is_available(new_pod, min_ready)
                elif not podutil.is_available(old_pod, min_ready):
                    old_to_delete.append(old_pod)
                elif podutil.is_terminating(old_pod):
                    busy += 1
                else:
                    candidates.append(old_pod)
            else:
                if old_pod is None:
                    continue
                if new_pod is None:
                    if not podutil.is_available(old_pod, min_ready):
                        surge_nodes.append(name)
                    else:
                        candidates.append(name)
                elif not podutil.is_available(new_pod, min_ready):
                    busy += 1
                else:
                    old_to_delete.append(old_pod)
        room = max(0, (max_surge or max_unavailable) - busy)
        if max_surge == 0:
            old_to_delete += candidates[:room]
        else:
            surge_nodes += candidates[:room]
        await self._sync_nodes(ds, [p for p in old_to_delete if not podutil.is_terminating(p)], surge_nodes, hash_, key)

    # ---- status ------------------------------------------------------------------------------

    async def _update_status(self, ds: dict, nodes: list[dict], by_node: dict[str, list[dict]], hash_: str
                             ) -> float | None:
        spec = self._template(ds).get("spec") or {}
        min_ready = ds["spec"].get("minReadySeconds", 0)
        desired = current = misscheduled = ready = available = updated = 0
        for node in nodes:
            should_run, _ = node_fits(spec, node)
            daemon_pods = by_node.get(node["metadata"]["name"], [])
            if not should_run:
                misscheduled += bool(daemon_pods)
                continue
            desired += 1
            if not daemon_pods:
                continue
            current += 1
            pod = sorted(daemon_pods, key=lambda p: (p.get("status", {}).get("phase") != "Running",
                                                     p["metadata"].get("creationTimestamp", ""),
                                                     p["metadata"]["name"]))[0]
            if podutil.is_ready(pod):
                ready += 1
                available += podutil.is_available(pod, min_ready)
            labels = pod["metadata"].get("labels") or {}
            generation = template_generation(ds)
            if labels.get(REVISION_HASH) == hash_ or (generation is not None and REVISION_HASH not in labels
                                                      and labels.get(TEMPLATE_GENERATION) == generation):
                updated += 1
        status = dict(ds.get("status") or {})
        new = {**status, "currentNumberScheduled": current, "numberMisscheduled": misscheduled,
               "desiredNumberScheduled": desired, "numberReady": ready,
               "observedGeneration": ds["metadata"].get("generation", 1),
               "updatedNumberScheduled": updated, "numberAvailable": available,
               "numberUnavailable": desired - available}
        for field in ("updatedNumberScheduled", "numberAvailable", "numberUnavailable"):
            if not new[field]:
                new.pop(field)
        if new != (self.daemonsets.get(f"{ds['metadata']['namespace']}/{ds['metadata']['name']}") or {}).get("status"):
            ds["status"] = new
            try:
                await self.ds_api.update_status(ds)
            except ApiError as e:
                if e.code != 404:
                    raise
        if min_ready > 0 and ready != available:
            return float(min_ready)
        return None
