"""The simulator: registers its Nodes, renews their Leases, heartbeats their status and plays the
kubelet for the pods bound to them (see the package docstring for the pod annotations).

Built for 1,000 nodes and 10,000 pods in one process: one HTTP client, every request under one
semaphore (`concurrency`), lease renewals spread evenly over the renewal interval, status written
through pods/status and nodes/status strategic-merge patches, and pods cached trimmed (pods.trim).
A pod's progress is derived from its status, so a restarted simulator carries on where it stopped.
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

import aiohttp

from ..api.errors import ApiError
from ..client.informer import Informer, object_key
from ..client.rest import Client
from ..controllers.base import Controller, InformerFactory
from ..client.events import EventRecorder
from ..controllers.podutil import TERMINAL_PHASES, parse_time
from . import nodes as simnodes
from . import pods as simpods
from .addresses import PodAddresses, fallback_cidr
from .kubelet_api import KUBELET_URL_ANNOTATION, KubeletAPI
from .usage import UsageBook

log = logging.getLogger("ketch.simulate")


def _rfc3339(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def _micro(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e6):06d}Z"


def _seconds(ts: str | None) -> float | None:
    t = parse_time(ts)
    return t.timestamp() if t else None


@dataclass
class SimulatorConfig:
    nodes: int = 3
    name_prefix: str = "sim-"
    profile: simnodes.NodeProfile = field(default_factory=simnodes.NodeProfile)
    start_delay: float = 0.0          # binding -> Running, unless a pod's annotation says otherwise
    lease_interval: float = 10.0      # kubelet: a quarter of leaseDurationSeconds (40 s)
    heartbeat_interval: float = 60.0  # node status lastHeartbeatTime
    concurrency: int = 50             # requests in flight at most
    metrics: bool = False
    pod_cpu: str = "1m"
    pod_memory: str = "8Mi"
    cleanup: bool = False             # delete the nodes and leases on exit


@dataclass
class SimNode:
    name: str
    index: int
    ip: str = ""
    uid: str = ""
    pod_cidr: str = ""
    last_heartbeat: float = 0.0


@dataclass
class PodState:
    """What the simulator has written for one pod (the cache may lag behind its own patches)."""
    seen: float
    started: float | None = None           # pod startTime
    container_started: float | None = None  # current container run
    restarts: int = 0
    ready: bool = False
    done: bool = False                      # the final status is written
    backoff_until: float | None = None      # in CrashLoopBackOff until then


class _PagedTrimmed:
    """A ResourceClient whose list pages through the collection (500 a page, as client-go's
    reflector) and keeps only trimmed accepted items, so a relist of 10,000 pods never holds them
    all decoded at once."""

    PAGE = 500

    def __init__(self, resource, trim, keep):
        self.resource, self.res, self.trim, self.keep = resource, resource.res, trim, keep

    async def list(self, namespace=None, **params) -> dict:
        params.pop("limit", None)      # the informer's own paging: this one pages and trims instead
        params.pop("continue", None)
        items: list[dict] = []
        first_rv, token = None, None
        while True:
            page = await self.resource.list(namespace, limit=self.PAGE, **({"continue": token} if token else {}),
                                            **params)
            meta = page.get("metadata") or {}
            first_rv = first_rv or meta.get("resourceVersion")
            items.extend(self.trim(o) for o in page.get("items", []) if self.keep is None or self.keep(o))
            token = meta.get("continue")
            if not token:
                return {"metadata": {"resourceVersion": first_rv}, "items": items}

    def watch(self, namespace=None, **params):
        return self.resource.watch(namespace, **params)


class TrimmedInformer(Informer):
    """An informer that caches `trim(obj)` instead of the object (handlers still get it whole);
    with `keep`, only the objects it accepts are cached at all. `trim` must accept its own output."""

    def __init__(self, resource, trim, keep=None, **kw):
        super().__init__(_PagedTrimmed(resource, trim, keep), **kw)
        self.trim, self.keep = trim, keep

    def _put(self, key: str, obj: dict) -> dict | None:
        if self.keep is not None and not self.keep(obj):
            return None
        return super()._put(key, self.trim(obj))


def trim_node(node: dict) -> dict:
    """What the simulator reads of a Node: its podCIDR and Ready condition."""
    if node.get(simpods.TRIMMED):
        return node
    meta, spec = node["metadata"], node.get("spec") or {}
    ready = [c for c in (node.get("status") or {}).get("conditions") or () if c.get("type") == "Ready"]
    return {simpods.TRIMMED: True, "metadata": {"name": meta["name"], "resourceVersion": meta.get("resourceVersion")},
            "spec": {"podCIDR": spec.get("podCIDR")}, "status": {"conditions": ready}}


class Simulator:
    def __init__(self, client: Client, config: SimulatorConfig):
        self.client = client
        self.config = config
        # Requests in flight: pods and registration share `slots`; the node heartbeats (leases,
        # status) have slots of their own, so neither starves the other when the API server is slow.
        self.slots = asyncio.Semaphore(config.concurrency)
        self.heartbeat_slots = asyncio.Semaphore(max(2, config.concurrency // 2))
        self.nodes: dict[str, SimNode] = {
            f"{config.name_prefix}{i}": SimNode(f"{config.name_prefix}{i}", i) for i in range(config.nodes)}
        self.node_api = client.resource("v1", "Node")
        self.lease_api = client.resource("coordination.k8s.io/v1", "Lease", simnodes.LEASE_NAMESPACE)
        self.pod_api = client.resource("v1", "Pod")
        # Pods bound to a node; only those on this simulator's nodes are kept, trimmed.
        self.pods = TrimmedInformer(self.pod_api, simpods.trim, lambda p: (p.get("spec") or {}).get("nodeName")
                                    in self.nodes, field_selector="spec.nodeName!=")
        self.node_informer = TrimmedInformer(self.node_api, trim_node, lambda n: n["metadata"]["name"] in self.nodes)
        self.usage = UsageBook(config.pod_cpu, config.pod_memory) if config.metrics else None
        self.kubelet = PodSimulator(self)
        # With --metrics, the nodes' /metrics/resource endpoint (advertised in ketch.io/kubelet-url).
        self.kubelet_api = KubeletAPI(self) if self.usage is not None else None
        self.ready = asyncio.Event()      # set once every node is registered and the caches synced
        self._tasks: set[asyncio.Task] = set()

    async def call(self, coro, heartbeat: bool = False):
        async with self.heartbeat_slots if heartbeat else self.slots:
            return await coro

    def spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.info("simulator task failed: %s", task.exception())

    # ---- running -------------------------------------------------------------------------------

    async def run(self) -> None:
        if self.kubelet_api is not None:
            await self.kubelet_api.start()
        await self.register()
        self.node_informer.add_handlers(on_add=self._node_changed, on_update=lambda _o, n: self._node_changed(n),
                                        on_delete=self._node_deleted)
        self.pods.add_handlers(on_add=self._pod_event, on_update=lambda _o, n: self._pod_event(n),
                               on_delete=self._pod_event)
        self.node_informer.start()
        self.pods.start()
        try:
            await asyncio.gather(self.node_informer.wait_synced(), self.pods.wait_synced())
            self.ready.set()
            log.warning("%d simulated nodes ready (%s0..%s%d)", len(self.nodes), self.config.name_prefix,
                        self.config.name_prefix, len(self.nodes) - 1)
            await asyncio.gather(self.kubelet.run(), self._lease_loop(), self._heartbeat_loop())
        finally:
            for task in list(self._tasks):
                task.cancel()
            await self.pods.stop()
            await self.node_informer.stop()
            if self.kubelet_api is not None:
                await self.kubelet_api.stop()
            if self.config.cleanup:
                await asyncio.shield(self._cleanup())

    async def _cleanup(self) -> None:
        async def one(node: SimNode) -> None:
            for api in (self.lease_api, self.node_api):
                try:
                    await self.call(api.delete(node.name))
                except (ApiError, OSError, asyncio.TimeoutError):
                    pass
        await asyncio.gather(*(one(n) for n in self.nodes.values()))

    # ---- nodes ---------------------------------------------------------------------------------

    async def register(self) -> None:
        """Create this simulator's Nodes and Leases, or take over the ones a previous run left."""
        existing = {n["metadata"]["name"]: n for n in (await self.node_api.list()).get("items", [])}
        taken = {a.get("address") for name, n in existing.items() if name not in self.nodes
                 for a in (n.get("status") or {}).get("addresses") or () if a.get("type") == "InternalIP"}
        next_ip = 0
        for node in self.nodes.values():
            old = existing.get(node.name)
            ips = [a["address"] for a in ((old or {}).get("status") or {}).get("addresses") or ()
                   if a.get("type") == "InternalIP"]
            if ips:
                node.ip = ips[0]
            else:
                while simnodes.internal_ip(next_ip) in taken:
                    next_ip += 1
                node.ip = simnodes.internal_ip(next_ip)
            taken.add(node.ip)
        await asyncio.gather(*(self._register(node, existing.get(node.name)) for node in self.nodes.values()))

    async def _register(self, node: SimNode, existing: dict | None) -> None:
        now = time.time()
        desired = simnodes.node_object(node.name, node.index, node.ip, self.config.profile, _rfc3339(now))
        if self.kubelet_api is not None:
            desired["metadata"]["annotations"][KUBELET_URL_ANNOTATION] = self.kubelet_api.url(node.name)
        if existing is None:
            try:
                created = await self.call(self.node_api.create({k: v for k, v in desired.items() if k != "status"}))
            except ApiError as e:
                if e.code != 409:
                    raise
                created = await self.call(self.node_api.patch(node.name, {"metadata": desired["metadata"]}))
        else:
            created = await self.call(self.node_api.patch(node.name, {"metadata": desired["metadata"]}))
        node.uid = created["metadata"]["uid"]
        node.pod_cidr = (created.get("spec") or {}).get("podCIDR", "")
        await self.call(self.node_api.patch(node.name, {"status": desired["status"]}, "strategic",
                                            subresource="status"))
        node.last_heartbeat = now
        await self._renew(node)

    def _node_changed(self, obj: dict) -> None:
        node = self.nodes.get(obj["metadata"]["name"])
        if node is None:
            return
        node.pod_cidr = (obj.get("spec") or {}).get("podCIDR", "") or node.pod_cidr
        ready = next((c for c in (obj.get("status") or {}).get("conditions") or () if c.get("type") == "Ready"), None)
        # Someone (the node lifecycle controller) thinks the node is gone: say at once that it is not.
        if ready is not None and ready.get("status") != "True" and time.time() - node.last_heartbeat > 1:
            node.last_heartbeat = time.time()
            self.spawn(self._heartbeat(node))

    def _node_deleted(self, obj: dict) -> None:
        if self.nodes.pop(obj["metadata"]["name"], None) is not None:
            log.warning("node %s was deleted; no longer simulating it", obj["metadata"]["name"])

    async def _renew(self, node: SimNode) -> None:
        async with self.heartbeat_slots:
            now = _micro(time.time())   # stamped when sent, not when queued
            await simnodes.renew_lease(self.lease_api, node.name, node.uid, now)

    async def _heartbeat(self, node: SimNode) -> None:
        now = time.time()
        cached = self.node_informer.get(node.name)
        ready = next((c for c in ((cached or {}).get("status") or {}).get("conditions") or ()
                      if c.get("type") == "Ready"), None)
        since = ready.get("lastTransitionTime") if ready and ready.get("status") == "True" else None
        conditions = simnodes.node_conditions(_rfc3339(now), since)
        try:
            await self.call(self.node_api.patch(node.name, {"status": {"conditions": conditions}}, "strategic",
                                                subresource="status"), heartbeat=True)
            node.last_heartbeat = now
        except ApiError as e:
            log.info("heartbeat of %s: %s", node.name, e.message)

    async def _spread(self, interval: float, action) -> None:
        """Call `action(node)` for every node once per `interval`, evenly spaced, never two at once
        for the same node."""
        loop = asyncio.get_running_loop()
        busy: set[str] = set()

        async def one(node: SimNode) -> None:
            try:
                await action(node)
            except (ApiError, OSError, asyncio.TimeoutError, aiohttp.ClientError) as e:
                log.info("%s %s: %s", action.__name__, node.name, e)
            finally:
                busy.discard(node.name)

        while True:
            t0 = loop.time()
            batch = list(self.nodes.values())
            step = interval / max(len(batch), 1)
            for i, node in enumerate(batch):
                delay = t0 + i * step - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                if node.name not in busy and node.name in self.nodes:
                    busy.add(node.name)
                    self.spawn(one(node))
            await asyncio.sleep(max(t0 + interval - loop.time(), 0))

    async def _lease_loop(self) -> None:
        await self._spread(self.config.lease_interval, self._renew)

    async def _heartbeat_loop(self) -> None:
        await asyncio.sleep(self.config.heartbeat_interval)
        await self._spread(self.config.heartbeat_interval, self._heartbeat)

    # ---- pods ----------------------------------------------------------------------------------

    def _pod_event(self, obj: dict) -> None:
        if (obj.get("spec") or {}).get("nodeName") in self.nodes:
            self.kubelet.enqueue(object_key(obj))


class PodSimulator(Controller):
    """Plays the kubelet for the pods on the simulator's nodes: one sync per pod key."""

    name = "simulated-kubelet"

    def __init__(self, sim: Simulator):
        super().__init__(sim.client, InformerFactory(sim.client), EventRecorder(sim.client, "kubelet"))
        self.sim = sim
        self.workers = sim.config.concurrency
        self.addresses = PodAddresses()
        self.states: dict[str, PodState] = {}

    def _forget(self, key: str) -> None:
        self.states.pop(key, None)
        self.addresses.release(key)
        if self.sim.usage is not None:
            ns, _, name = key.partition("/")
            self.sim.usage.forget(ns, name)

    def _state(self, key: str, pod: dict, node: SimNode) -> PodState:
        state = self.states.get(key)
        if state is None:
            state = self.states[key] = PodState(seen=time.time())
            status = pod["status"]
            started = _seconds(status.get("startTime"))
            if status.get("phase") == "Running" and started is not None:
                # A previous run of the simulator started it: carry on from what the status says.
                first = (status.get("containerStatuses") or [{}])[0]
                state.started = started
                state.container_started = _seconds(first.get("startedAt")) or started
                state.restarts = first.get("restartCount") or 0
                state.ready = status["conditions"].get("Ready") == "True"
                if status.get("podIP"):
                    self.addresses.claim(key, node.name, status["podIP"])
                if self.sim.usage is not None:
                    self.sim.usage.record(pod)
        return state

    async def _patch(self, pod: dict, body: dict) -> bool:
        meta = pod["metadata"]
        try:
            await self.sim.call(self.sim.pod_api.patch(meta["name"], body, "strategic", namespace=meta["namespace"],
                                                       subresource="status"))
            return True
        except ApiError as e:
            if e.code == 404:
                return False
            raise

    async def sync(self, key: str) -> float | None:
        pod = self.sim.pods.get(key)
        node = self.sim.nodes.get(pod["spec"]["nodeName"]) if pod is not None else None
        if pod is None or node is None:
            self._forget(key)
            return None
        meta = pod["metadata"]
        if meta.get("deletionTimestamp"):
            # The containers are "stopped": finish the graceful delete as the kubelet does.
            try:
                await self.sim.call(self.sim.pod_api.delete(meta["name"], meta["namespace"], gracePeriodSeconds=0,
                                                            preconditions={"uid": meta["uid"]}))
            except ApiError as e:
                if e.code not in (404, 409):
                    raise
            self._forget(key)
            return None
        if pod["status"].get("phase") in TERMINAL_PHASES:
            self._forget(key)
            return None
        plan = simpods.plan_for(pod, self.sim.config.start_delay)
        state = self._state(key, pod, node)
        if state.done:
            return None
        now = time.time()
        if state.started is None:
            wait = state.seen + plan.start_delay - now
            if wait > 0:
                return wait
            ip = self.addresses.assign(key, node.name, node.pod_cidr or fallback_cidr(node.index))
            ready = plan.ready_after <= 0
            if not await self._patch(pod, simpods.running_status(pod, node.ip, ip, _rfc3339(now), ready=ready)):
                return None
            state.started = state.container_started = now
            state.ready = ready
            if self.sim.usage is not None:
                self.sim.usage.record(pod)
        assert state.container_started is not None
        started = _rfc3339(state.container_started)
        due: list[float] = []
        if not state.ready and state.backoff_until is None:
            ready_at = state.container_started + plan.ready_after
            if now >= ready_at:
                if not await self._patch(pod, simpods.ready_status(pod, _rfc3339(now), started, state.restarts)):
                    return None
                state.ready = True
            else:
                due.append(ready_at)
        if plan.duration is not None:
            exit_at = state.container_started + plan.duration
            if now < exit_at:
                due.append(exit_at)
            elif plan.restarts(pod["spec"]["restartPolicy"]):
                if state.restarts > 0 and state.backoff_until is None:
                    # As the kubelet: restart at once the first time, then back off 10 s, 20 s, ... 5 min.
                    backoff = min(10 * 2 ** (state.restarts - 1), 300)
                    body = simpods.backoff_status(pod, plan.exit_code, _rfc3339(now), started, state.restarts, backoff)
                    if not await self._patch(pod, body):
                        return None
                    state.backoff_until, state.ready = now + backoff, False
                if state.backoff_until is not None and now < state.backoff_until:
                    due.append(state.backoff_until)
                else:
                    ready = plan.ready_after <= 0
                    body = simpods.restarted_status(pod, plan.exit_code, _rfc3339(now), started, state.restarts,
                                                    ready=ready)
                    if not await self._patch(pod, body):
                        return None
                    state.container_started, state.restarts, state.ready = now, state.restarts + 1, ready
                    state.backoff_until = None
                    due.append(now + plan.duration)
                    if not ready:
                        due.append(now + plan.ready_after)
            else:
                body = simpods.finished_status(pod, plan.exit_code, _rfc3339(now), started, state.restarts)
                await self._patch(pod, body)
                state.done = True
                if self.sim.usage is not None:
                    self.sim.usage.forget(meta["namespace"], meta["name"])
                return None
        return max(min(due) - time.time(), 0.0) if due else None
