"""The scheduler: informers feed the cache and the queue; one loop places pods.

Each cycle takes the most important pending pod, filters nodes (a sample of them in big
clusters, upstream's percentageOfNodesToScore, starting where the last cycle stopped), scores the
feasible ones and picks the best. The pod is then *assumed* on that node in the cache and the
binding is written in the background (a bounded number at once) while the loop goes on. A pod
that fits nowhere may preempt lower-priority pods; otherwise it is marked PodScheduled=False,
gets a FailedScheduling event and waits in the queue for a cluster event.

Only pods whose spec.schedulerName is "default-scheduler", that have no nodeName and are not
being deleted or finished, are scheduled.
"""
from __future__ import annotations

import asyncio
import datetime
import logging

import aiohttp

from ..api import labels as labelsel
from ..api.errors import ApiError
from ..client.background import cancel_until_done
from ..client.informer import object_key
from ..client.rest import Client
from ..client.informer import SharedInformers
from ..client.events import EventRecorder
from . import plugins, preemption
from .binder import Binder
from .cache import Cache
from .podinfo import TERMINAL, pod_info
from .queue import QueuedPod, SchedulingQueue

log = logging.getLogger("ketch.scheduler")
SCHEDULER_NAME = "default-scheduler"
NO_NODES = "no nodes available to schedule pods"
USER_AGENT = "kube-scheduler/v1.35.0 (ketch)"


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def responsible(pod: dict, name: str = SCHEDULER_NAME) -> bool:
    return ((pod.get("spec") or {}).get("schedulerName") or SCHEDULER_NAME) == name


def pending(pod: dict) -> bool:
    return not (pod.get("spec") or {}).get("nodeName") and not pod["metadata"].get("deletionTimestamp") and \
        (pod.get("status") or {}).get("phase") not in TERMINAL


def _node_facts(node: dict) -> tuple:
    """What of a Node can change where pods fit (heartbeats alone must not wake the queue)."""
    spec, status = node.get("spec") or {}, node.get("status") or {}
    ready = next((c.get("status") for c in status.get("conditions") or () if c.get("type") == "Ready"), None)
    return (node["metadata"].get("labels"), spec.get("taints"), spec.get("unschedulable"),
            status.get("allocatable"), status.get("capacity"), ready)


class Scheduler:
    def __init__(self, client: Client, *, percentage_of_nodes_to_score: int = 0, bind_concurrency: int = 32,
                 scheduler_name: str = SCHEDULER_NAME, recorder: EventRecorder | None = None,
                 informers: SharedInformers | None = None):
        self.client = client
        self.name = scheduler_name
        # Informers given by the caller (`ketch server` shares the controller manager's) are the
        # caller's to stop.
        self._own_informers = informers is None
        self.informers = informers or SharedInformers(client)
        self.pods = self.informers.informer("v1", "Pod")
        self.nodes = self.informers.informer("v1", "Node")
        self.services = self.informers.informer("v1", "Service")
        self.namespaces = self.informers.informer("v1", "Namespace")
        self.claims = self.informers.informer("v1", "PersistentVolumeClaim")
        self.classes = self.informers.informer("storage.k8s.io/v1", "StorageClass")
        self.services.add_index("namespace", lambda o: [o["metadata"].get("namespace", "")])
        self.recorder = recorder or EventRecorder(client, scheduler_name)
        self.cache = Cache()
        self.queue = SchedulingQueue()
        self.framework = plugins.Framework(self.cache, self._ns_labels, self._default_spread)
        self.binder = Binder(client)
        self.percentage = percentage_of_nodes_to_score
        self._binds = asyncio.Semaphore(bind_concurrency)
        self._writes = asyncio.Semaphore(16)
        self._tasks: set[asyncio.Task] = set()
        self._next_start = 0
        self.scheduled = 0
        self.pods.add_handlers(self._pod_added, self._pod_updated, self._pod_deleted)
        self.nodes.add_handlers(self._node_added, self._node_updated, self._node_deleted)
        self.claims.add_handlers(lambda c: self.queue.move_all(), lambda o, c: self.queue.move_all())

    # ---- informer events -----------------------------------------------------------------------

    def _pod_added(self, pod: dict) -> None:
        node = (pod.get("spec") or {}).get("nodeName")
        key = object_key(pod)
        if node:
            if (pod.get("status") or {}).get("phase") not in TERMINAL:
                self.cache.add_pod(pod_info(pod), node)
                self.queue.move_all(lambda qp: bool(((qp.pod.get("spec") or {}).get("affinity") or {})
                                                    .get("podAffinity")))
        elif responsible(pod, self.name) and pending(pod):
            self._pending_seen(pod, key)

    def _pending_seen(self, pod: dict, key: str) -> None:
        if (pod.get("spec") or {}).get("schedulingGates"):
            self.queue.delete(key)
            self._mark_gated(pod)
            return
        self.queue.add(pod, key)
        nominated = (pod.get("status") or {}).get("nominatedNodeName")
        if nominated and key not in self.cache.nominated:  # a preemptor seen after a restart
            self.cache.nominate(pod_info(pod), nominated)

    def _pod_updated(self, old: dict, pod: dict) -> None:
        key = object_key(pod)
        node = (pod.get("spec") or {}).get("nodeName")
        old_meta, meta = old.get("metadata") or {}, pod["metadata"]
        changed = old.get("spec") != pod.get("spec") or old_meta.get("labels") != meta.get("labels")
        if node:
            self.queue.delete(key)
            if (pod.get("status") or {}).get("phase") in TERMINAL:
                if self.cache.remove_pod(key) is not None:
                    self.queue.move_all()
            elif self.cache.is_assumed(key) and self.cache.node_of(key) == node and \
                    {**(old.get("spec") or {}), "nodeName": node} == pod.get("spec") and \
                    old_meta.get("labels") == meta.get("labels") and not meta.get("deletionTimestamp"):
                self.cache.confirm(key, pod)  # our own binding, observed: what was assumed stands
            elif changed or self.cache.node_of(key) != node or self.cache.is_assumed(key) or \
                    bool(meta.get("deletionTimestamp")) != bool(old_meta.get("deletionTimestamp")):
                self.cache.add_pod(pod_info(pod), node)
            return
        if not responsible(pod, self.name) or not pending(pod):
            self.queue.delete(key)
            self.cache.clear_nominated(key)
            return
        if self.cache.is_assumed(key):
            return  # being bound; the informer will show it assigned
        if (pod.get("spec") or {}).get("schedulingGates"):
            self.queue.delete(key)
            self._mark_gated(pod)
            return
        self.queue.update(pod, key, changed)

    def _mark_gated(self, pod: dict) -> None:
        """PodScheduled=False, SchedulingGated: what upstream shows for a pod that may not be tried yet."""
        old = next((c for c in (pod.get("status") or {}).get("conditions") or () if c.get("type") == "PodScheduled"),
                   None)
        if old is not None and old.get("reason") == "SchedulingGated":
            return
        cond = {"type": "PodScheduled", "status": "False", "reason": "SchedulingGated",
                "message": "Scheduling is blocked due to non-empty scheduling gates", "lastProbeTime": None,
                "lastTransitionTime": _now()}
        self._spawn(self._write_status(pod, {"conditions": [cond]}))

    def _pod_deleted(self, pod: dict) -> None:
        key = object_key(pod)
        self.queue.delete(key)
        self.cache.clear_nominated(key)
        if self.cache.remove_pod(key) is not None:
            self.queue.move_all()

    def _node_added(self, node: dict) -> None:
        self.cache.set_node(node)
        self.queue.move_all()

    def _node_updated(self, old: dict, node: dict) -> None:
        self.cache.set_node(node)
        if _node_facts(old) != _node_facts(node):
            self.queue.move_all()

    def _node_deleted(self, node: dict) -> None:
        self.cache.remove_node(node["metadata"]["name"])

    # ---- what plugins ask ----------------------------------------------------------------------

    def _ns_labels(self, namespace: str) -> dict:
        ns = self.namespaces.get(namespace)
        return (ns or {}).get("metadata", {}).get("labels") or {}

    def _default_spread(self, p):  # noqa: ANN001, ANN202 - PodInfo -> counter factory or None
        """Peers to spread a pod without a controller from: the pods of the Services selecting it."""
        selectors = []
        for svc in self.services.by_index("namespace", p.namespace):
            sel = (svc.get("spec") or {}).get("selector")
            if sel and all(p.labels.get(k) == v for k, v in sel.items()):
                selectors.append(sel)
        if not selectors:
            return None
        merged: dict = {}
        for sel in selectors:
            merged.update(sel)
        selector = labelsel.selector_from_set(merged)
        ns = p.namespace
        return lambda: self.cache.matching_counts(selector, lambda n: n == ns)

    # ---- the loop ------------------------------------------------------------------------------

    async def run(self) -> None:
        self.informers.start()
        try:
            await self.informers.wait_synced()
            log.info("scheduler: caches synced (%d nodes, %d pods pending)", len(self.cache.node_order),
                     len(self.queue))
            while True:
                qp = await self.queue.pop()
                await self._binds.acquire()  # a bind slot, handed to the bind task if one starts
                try:
                    bound = self.schedule_one(qp)
                except Exception:  # noqa: BLE001 - one bad pod must not stop the scheduler
                    log.exception("scheduling %s failed", qp.key)
                    self.queue.requeue(qp.pod, qp.key, unschedulable=False, cycle=self.queue.cycle)
                    bound = False
                if not bound:
                    self._binds.release()
                await asyncio.sleep(0)
        finally:
            self.queue.close()
            await cancel_until_done(*self._tasks)
            await self.recorder.close()
            if self._own_informers:
                await self.informers.stop()

    def _spawn(self, coro) -> None:  # noqa: ANN001
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def schedule_one(self, qp: QueuedPod) -> bool:
        """One scheduling cycle; True when a bind task was started (it owns a bind slot)."""
        key = qp.key
        pod = self.pods.get(key)
        if pod is None or pod["metadata"].get("uid") != qp.pod["metadata"].get("uid") or \
                not pending(pod) or not responsible(pod, self.name) or self.cache.node_of(key):
            self.queue.done(key)
            return False
        cycle = self.queue.cycle
        p = pod_info(pod)
        nodes = self.cache.node_infos()
        if not nodes:
            self._failed(pod, NO_NODES, cycle)
            return False
        volume_problem = self._volume_prefilter(pod)
        if volume_problem:
            self._failed(pod, plugins.prefilter_error(len(nodes), volume_problem, p.preemption_policy), cycle)
            return False
        state = self.framework.prefilter(p)
        feasible, statuses = self._find_nodes(state, nodes)
        if not feasible:
            outcome = preemption.preempt(self.framework, state, p, statuses)
            if outcome.node:
                self._preempt(pod, p, outcome)
                self._failed(pod, plugins.fit_error(len(nodes), statuses), cycle, nominated=outcome.node)
            else:
                self._failed(pod, plugins.fit_error(len(nodes), statuses, outcome.message), cycle)
            return False
        host = feasible[0] if len(feasible) == 1 else \
            plugins.select_host(feasible, self.framework.score(state, feasible))
        self.cache.add_pod(p, host.name, assumed=True)
        self.queue.done(key)
        self._spawn(self._bind(pod, host.name))
        return True

    def _volume_prefilter(self, pod: dict) -> str:
        """VolumeBinding's PreFilter: every claim the pod uses must exist, and be bound unless its
        class binds on first consumer (then binding follows the pod's placement)."""
        ns = pod["metadata"].get("namespace", "")
        for vol in (pod.get("spec") or {}).get("volumes") or ():
            name = (vol.get("persistentVolumeClaim") or {}).get("claimName")
            if not name:
                continue
            claim = self.claims.get(f"{ns}/{name}")
            if claim is None:
                return f'persistentvolumeclaim "{name}" not found'
            if claim["metadata"].get("deletionTimestamp"):
                return f'persistentvolumeclaim "{name}" is being deleted'
            spec = claim.get("spec") or {}
            if spec.get("volumeName"):
                continue
            sc = self.classes.get(spec.get("storageClassName") or "")
            if not sc or sc.get("volumeBindingMode") != "WaitForFirstConsumer":
                return "pod has unbound immediate PersistentVolumeClaims"
        return ""

    def _find_nodes(self, state: plugins.CycleState, nodes: list) -> tuple[list, dict]:
        """Filter from where the last cycle stopped until enough feasible nodes are found."""
        n = len(nodes)
        want = plugins.nodes_to_find(n, self.percentage)
        feasible, statuses = [], {}
        start = self._next_start % n
        check = self.framework.compiled(state)
        checked = 0
        for node in nodes[start:] + nodes[:start] if start else nodes:
            checked += 1
            failure = check(node)
            if failure is None:
                feasible.append(node)
                if len(feasible) >= want:
                    break
            else:
                statuses[node.name] = failure
        self._next_start = (start + checked) % n
        return feasible, statuses

    async def _bind(self, pod: dict, node: str) -> None:
        key = object_key(pod)
        meta = pod["metadata"]
        try:
            try:
                await self.binder.bind(pod, node)
            except ApiError as e:
                if self.cache.is_assumed(key):
                    self.cache.remove_pod(key)
                if e.code in (404, 409):
                    return  # gone, or assigned already: the informer tells the rest
                log.info("binding %s to %s: %s", key, node, e.message)
                self.queue.requeue(pod, key, unschedulable=False, cycle=self.queue.cycle)
                return
            except (OSError, asyncio.TimeoutError, aiohttp.ClientError) as e:
                if self.cache.is_assumed(key):
                    self.cache.remove_pod(key)
                log.info("binding %s to %s: %s", key, node, e)
                self.queue.requeue(pod, key, unschedulable=False, cycle=self.queue.cycle)
                return
        finally:
            self._binds.release()
        self.scheduled += 1
        self.recorder.event(pod, "Normal", "Scheduled",
                            f"Successfully assigned {meta['namespace']}/{meta['name']} to {node}")

    # ---- failures ------------------------------------------------------------------------------

    def _failed(self, pod: dict, message: str, cycle: int, nominated: str = "") -> None:
        key = object_key(pod)
        self.queue.requeue(pod, key, unschedulable=True, cycle=cycle)
        self.recorder.event(pod, "Warning", "FailedScheduling", message)
        status = pod.get("status") or {}
        old = next((c for c in status.get("conditions") or () if c.get("type") == "PodScheduled"), None)
        if old is not None and old.get("status") == "False" and old.get("reason") == "Unschedulable" and \
                old.get("message") == message and (status.get("nominatedNodeName") or "") == nominated:
            return
        since = old.get("lastTransitionTime") if old is not None and old.get("status") == "False" else None
        cond = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message,
                "lastProbeTime": None, "lastTransitionTime": since or _now()}
        patch: dict = {"conditions": [cond]}
        if nominated or status.get("nominatedNodeName"):
            patch["nominatedNodeName"] = nominated or None
        self._spawn(self._write_status(pod, patch))

    async def _write_status(self, pod: dict, patch: dict) -> None:
        async with self._writes:
            try:
                await self.binder.patch_status(pod, patch)
            except (ApiError, OSError, asyncio.TimeoutError, aiohttp.ClientError) as e:
                log.info("updating status of %s: %s", object_key(pod), e)

    def _preempt(self, pod: dict, p, outcome: preemption.Outcome) -> None:  # noqa: ANN001
        self.cache.nominate(p, outcome.node)
        for victim in outcome.victims or ():
            self.recorder.event(victim.pod, "Normal", "Preempted",
                                f"Preempted by pod {p.uid} on node {outcome.node}")
            self._spawn(self._delete(victim.pod))

    async def _delete(self, pod: dict) -> None:
        async with self._writes:
            try:
                await self.binder.delete(pod)
            except (ApiError, OSError, asyncio.TimeoutError, aiohttp.ClientError) as e:
                log.info("preempting %s: %s", object_key(pod), e)


# ---- running it --------------------------------------------------------------------------------

async def run_scheduler(client: Client, **options) -> None:
    await Scheduler(client, **options).run()


async def run(kubeconfig_path, *, leader_elect: bool = False, lease_name: str = "kube-scheduler",  # noqa: ANN001
              **options) -> None:
    from ..client import kubeconfig
    from ..client.leader import LeaderElector, identity

    client = Client(kubeconfig.load(kubeconfig_path), user_agent=USER_AGENT)
    try:
        if not leader_elect:
            await run_scheduler(client, **options)
            return
        elector = LeaderElector(client, lease_name, "kube-system", identity())
        try:
            await elector.run(lambda: run_scheduler(client, **options))
        finally:
            await elector.release()
    finally:
        await client.close()

