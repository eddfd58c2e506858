"""The prober manager, as the kubelet's: one worker per (pod, container, probe type).

A worker probes every periodSeconds (the first run at once, none before initialDelaySeconds have
passed since the container started) and changes its result only after failureThreshold failures or
successThreshold successes in a row. Readiness starts as failure and liveness as success; the
startup result starts unknown, and until it is success neither liveness nor readiness runs. After a
liveness or startup failure the worker holds until the kubelet reports a new container (the
restarted one), then starts over from the initial result.

Every run that fails records the kubelet's Warning event on the pod (`Unhealthy`, "Liveness probe
failed: <output>"; `ProbeWarning` for a redirect to another host; "... probe errored and resulted
in unknown state: ..." when the prober itself failed, whose result is then thrown away). The kubelet
hears of a changed result through `on_result(pod_uid, container_name, probe_type, result, output)`
(result "success", "failure" or "unknown"); it kills a container whose liveness or startup result
became failure, with the Killing message of `kill_message`.
"""
from __future__ import annotations

import asyncio
import inspect
import logging
import random
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from ...api.defaults import sidecars
from ...client.events import WARNING as EVENT_WARNING
from .probe import FAILURE, SUCCESS, UNKNOWN, WARNING, ProbeResult, run_probe

log = logging.getLogger("ketch.agent.prober")

LIVENESS, READINESS, STARTUP = "liveness", "readiness", "startup"
PROBE_TYPES = (STARTUP, LIVENESS, READINESS)
SPEC_FIELDS = {LIVENESS: "livenessProbe", READINESS: "readinessProbe", STARTUP: "startupProbe"}
INITIAL_RESULT = {LIVENESS: SUCCESS, READINESS: FAILURE, STARTUP: UNKNOWN}
MAX_PROBE_RETRIES = 3  # the kubelet's maxProbeRetries, for runs where the prober erred
REASON_UNHEALTHY, REASON_PROBE_WARNING = "Unhealthy", "ProbeWarning"

OnResult = Callable[[str, str, str, str, str], Any]


def kill_message(container_name: str, probe_type: str, will_restart: bool = True) -> str:
    """The Killing event's message after a failed liveness or startup probe."""
    message = f"Container {container_name} failed {probe_type} probe"
    return message + ", will be restarted" if will_restart else message


def probe_grace_period(pod: dict, container: dict, probe_type: str) -> int:
    """The grace period of a kill for a failed probe: the probe's terminationGracePeriodSeconds
    when set, else the pod's (30 s by default)."""
    spec = container.get(SPEC_FIELDS[probe_type]) or {}
    value = spec.get("terminationGracePeriodSeconds")
    if value is None:
        value = (pod.get("spec") or {}).get("terminationGracePeriodSeconds", 30)
    return int(value)


def field_path(pod: dict, container_name: str) -> str:
    """The container reference's fieldPath of events about it."""
    spec = pod.get("spec") or {}
    for key in ("containers", "initContainers", "ephemeralContainers"):
        if any(c.get("name") == container_name for c in spec.get(key) or []):
            return f"spec.{key}{{{container_name}}}"
    return f"spec.containers{{{container_name}}}"


def pod_ref(pod: dict) -> dict:
    """The object events about a pod are recorded on (informer copies may lack kind)."""
    return {"kind": "Pod", "apiVersion": "v1", "metadata": pod.get("metadata", {})}


def probed_containers(pod: dict) -> list[dict]:
    """Containers that may have probes: regular ones and sidecars (restartable init containers)."""
    spec = pod.get("spec") or {}
    return [*sidecars(spec), *(spec.get("containers") or [])]


@dataclass
class _Container:
    id: str | None
    started_at: float  # epoch seconds
    generation: int = 0  # bumped with every new container, so a run for the old one is dropped


@dataclass
class _Pod:
    pod: dict
    sandbox_id: str
    pod_ip: str
    containers: dict[str, _Container] = field(default_factory=dict)
    terminating: bool = False


class _Worker:
    def __init__(self, manager: "ProbeManager", uid: str, container: dict, probe_type: str):
        self.manager, self.uid, self.container, self.probe_type = manager, uid, container, probe_type
        self.name = container["name"]
        self.spec = container[SPEC_FIELDS[probe_type]]
        self.result = INITIAL_RESULT[probe_type]
        self.last_result: str | None = None
        self.run_length = 0
        self.on_hold = False
        self.generation = -1
        self.trigger = asyncio.Event()
        self.task: asyncio.Task | None = None

    @property
    def period(self) -> float:
        return float(self.spec.get("periodSeconds") or 10)

    def reset(self, generation: int) -> None:
        """A new container: probing resumes from the initial result."""
        self.generation, self.on_hold = generation, False
        self.last_result, self.run_length = None, 0
        self.set_result(INITIAL_RESULT[self.probe_type], "")

    def set_result(self, result: str, output: str) -> None:
        if result != self.result:
            self.result = result
            self.manager._report(self.uid, self.name, self.probe_type, result, output)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        if self.manager.jitter and self.period > time.monotonic() - self.manager.created:
            # Right after an agent restart, spread the workers over one period.
            await asyncio.sleep(random.random() * self.period)
        next_at = loop.time()
        while True:
            try:
                if not await self.do_probe():
                    return
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - a worker keeps going, as the kubelet's HandleCrash
                log.exception("probe worker %s/%s %s", self.uid, self.name, self.probe_type)
            next_at += self.period
            now = loop.time()
            while next_at <= now:  # a ticker drops the ticks a slow probe missed
                next_at += self.period
            try:
                await asyncio.wait_for(self.trigger.wait(), next_at - now)
            except asyncio.TimeoutError:
                pass
            self.trigger.clear()

    async def do_probe(self) -> bool:
        """One tick; False ends the worker."""
        entry = self.manager._pods.get(self.uid)
        if entry is None:
            return False
        if entry.terminating and self.probe_type in (LIVENESS, STARTUP):
            self.set_result(SUCCESS, "")  # a quiet shutdown
            return False
        state = entry.containers.get(self.name)
        if state is None or state.id is None:
            return True  # not created yet, or not running
        if state.generation != self.generation:
            self.reset(state.generation)
        if self.on_hold:
            return True
        if time.time() - state.started_at < int(self.spec.get("initialDelaySeconds") or 0):
            return True
        started = self.manager.started(self.uid, self.name)
        if (self.probe_type == STARTUP) == started:
            return True  # startup probes stop once started; the others wait for it
        outcome = await self.probe_with_retries(entry, state)
        if self.manager._pods.get(self.uid) is not entry or state.generation != self.generation:
            return True  # the container changed meanwhile: this result is about the old one
        self.record_events(entry, outcome)
        if outcome.error is not None:
            return True
        result = SUCCESS if outcome.result in (SUCCESS, WARNING) else FAILURE
        if result == self.last_result:
            self.run_length += 1
        else:
            self.last_result, self.run_length = result, 1
        threshold = self.spec.get("failureThreshold" if result == FAILURE else "successThreshold") or \
            (3 if result == FAILURE else 1)
        if self.run_length < int(threshold):
            return True
        self.set_result(result, outcome.output)
        if self.probe_type in (LIVENESS, STARTUP) and result == FAILURE:
            # The container will be restarted; wait for the new one.
            self.on_hold, self.run_length = True, 0
        return True

    async def probe_with_retries(self, entry: _Pod, state: _Container) -> ProbeResult:
        outcome = ProbeResult(UNKNOWN)
        for _ in range(MAX_PROBE_RETRIES):
            outcome = await run_probe(self.spec, entry.pod, self.container, state.id, self.manager.runtime,
                                      sandbox_id=entry.sandbox_id, pod_ip=entry.pod_ip)
            if outcome.error is None:
                break
        return outcome

    def record_events(self, entry: _Pod, outcome: ProbeResult) -> None:
        kind = self.probe_type.capitalize()
        if outcome.error is not None:
            reason, message = REASON_UNHEALTHY, \
                f"{kind} probe errored and resulted in {outcome.result} state: {outcome.error}"
        elif outcome.result == FAILURE:
            reason, message = REASON_UNHEALTHY, f"{kind} probe failed: {outcome.output}"
        elif outcome.result == WARNING:
            reason, message = REASON_PROBE_WARNING, f"{kind} probe warning: {outcome.output}"
        else:
            return
        self.manager._event(entry.pod, self.name, reason, message)


class ProbeManager:
    """Probe workers for the pods of one node."""

    def __init__(self, runtime, recorder, on_result: OnResult, *, jitter: bool = True):
        self.runtime = runtime
        self.recorder = recorder
        self.on_result = on_result
        self.jitter = jitter
        self.created = time.monotonic()
        self._pods: dict[str, _Pod] = {}
        self._workers: dict[tuple[str, str, str], _Worker] = {}
        self._callbacks: set[asyncio.Task] = set()

    # --- the kubelet's calls ------------------------------------------------------------------

    def add_pod(self, pod: dict, container_ids: dict[str, str], sandbox_id: str, pod_ip: str,
                started_at: dict[str, float] | None = None) -> None:
        """Start workers for every probe of the pod. `container_ids` names the running containers;
        `started_at` their start times (epoch seconds; default now), from which initialDelaySeconds
        counts. Adding a pod again only updates its containers."""
        uid = pod["metadata"]["uid"]
        entry = self._pods.get(uid)
        if entry is None:
            entry = self._pods[uid] = _Pod(pod, sandbox_id, pod_ip)
        else:
            entry.pod, entry.sandbox_id, entry.pod_ip = pod, sandbox_id, pod_ip
        for name, cid in container_ids.items():
            self.update_container(uid, name, cid, (started_at or {}).get(name))
        for container in probed_containers(pod):
            for probe_type in PROBE_TYPES:
                key = (uid, container["name"], probe_type)
                if container.get(SPEC_FIELDS[probe_type]) and key not in self._workers:
                    worker = self._workers[key] = _Worker(self, uid, container, probe_type)
                    worker.task = asyncio.get_running_loop().create_task(
                        worker.run(), name=f"probe {pod['metadata'].get('name')}/{container['name']} {probe_type}")

    def update_container(self, uid: str, name: str, container_id: str | None, started_at: float | None = None
                         ) -> None:
        """A container (re)started with a new id, or stopped (None): its workers start over, and a
        stopped container is not ready."""
        entry = self._pods.get(uid)
        if entry is None:
            return
        state = entry.containers.get(name)
        if state is not None and state.id == container_id:
            return
        generation = state.generation + 1 if state is not None else 0
        entry.containers[name] = _Container(container_id, started_at if started_at is not None else time.time(),
                                            generation)
        for probe_type in PROBE_TYPES:
            worker = self._workers.get((uid, name, probe_type))
            if worker is None:
                continue
            if container_id is None:
                worker.generation, worker.on_hold = generation, True
                if probe_type == READINESS:
                    worker.set_result(FAILURE, "")
            else:
                worker.reset(generation)

    def stop_liveness_and_startup(self, uid: str) -> None:
        """The pod is terminating: liveness and startup end quietly (readiness goes on)."""
        entry = self._pods.get(uid)
        if entry is not None:
            entry.terminating = True
            for (wuid, _, probe_type), worker in self._workers.items():
                if wuid == uid and probe_type in (LIVENESS, STARTUP):
                    worker.trigger.set()

    def remove_pod(self, uid: str) -> None:
        self._pods.pop(uid, None)
        for key in [k for k in self._workers if k[0] == uid]:
            worker = self._workers.pop(key)
            if worker.task is not None:
                worker.task.cancel()

    def started(self, uid: str, name: str) -> bool:
        """The container's `started`: running, and its startup probe (if any) has succeeded."""
        entry = self._pods.get(uid)
        if entry is None:
            return True
        state = entry.containers.get(name)
        if state is None or state.id is None:
            return False
        worker = self._workers.get((uid, name, STARTUP))
        return worker is None or worker.result == SUCCESS

    def readiness(self, uid: str, name: str) -> bool:
        """The container's `ready`: started, and its readiness probe (if any) succeeding. Asking
        about a container not ready yet runs its readiness probe at once, as UpdatePodStatus does."""
        if not self.started(uid, name):
            return False
        worker = self._workers.get((uid, name, READINESS))
        if worker is None:
            return True
        if worker.result != SUCCESS:
            worker.trigger.set()
        return worker.result == SUCCESS

    async def stop(self) -> None:
        tasks = [w.task for w in self._workers.values() if w.task is not None] + list(self._callbacks)
        self._workers.clear()
        self._pods.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # --- to the kubelet ---------------------------------------------------------------------------

    def _report(self, uid: str, name: str, probe_type: str, result: str, output: str) -> None:
        try:
            ret = self.on_result(uid, name, probe_type, result, output)
        except Exception:  # noqa: BLE001 - the kubelet's trouble must not stop probing
            log.exception("probe result callback")
            return
        if inspect.isawaitable(ret):
            task = asyncio.get_running_loop().create_task(self._await_callback(ret))
            self._callbacks.add(task)
            task.add_done_callback(self._callbacks.discard)

    @staticmethod
    async def _await_callback(ret) -> None:
        try:
            await ret
        except Exception:  # noqa: BLE001
            log.exception("probe result callback")

    def _event(self, pod: dict, container_name: str, reason: str, message: str) -> None:
        if self.recorder is None:
            return
        self.recorder.event(pod_ref(pod), EVENT_WARNING, reason, message, field_path(pod, container_name))
