"""The pod worker: one `sync(pod key)` that takes a pod one step towards its spec, as the kubelet's
syncPod/computePodActions do, and writes the status that results.

Everything is re-derived on each sync from the runtime (sandboxes and containers carry the pod's
uid and the container's name and attempt as labels and annotations), so a restarted agent adopts
what runs and starts nothing twice. What the runtime cannot say — why a container waits, the
crash back-off, probe verdicts — lives in `PodState`, and is rebuilt as it is met again.

Order of work for a live pod: sandbox (volumes and pod files first), then init containers one at a
time, then every app container. A dead sandbox is replaced and every container of the old one is
killed, as upstream. A deleted or finished pod is stopped: preStop hooks, the stop signal, the
grace period, SIGKILL; a deleted one is then removed from the API with grace 0.
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..api.defaults import is_sidecar, sidecars
from ..api.durations import format_seconds
from ..api.errors import ApiError
from ..client.events import NORMAL, WARNING
from ..controllers.base import Controller
from ..client.informer import object_key
from . import containers as cc
from . import hooks
from .backoff import CRASH_INITIAL, CRASH_MAX, Backoff
from .imagepull import ImagePullFailed
from .prober.manager import FAILURE, LIVENESS, STARTUP, kill_message
from .runtime.api import (CONTAINER_CREATED, CONTAINER_EXITED, CONTAINER_RUNNING, ContainerStatus, Mount,
                          RuntimeError_, SANDBOX_READY)
from .staticpods import CONFIG_HASH, CONFIG_MIRROR, is_mirror, mirror_pod
from .status import ContainerView, PodView, Waiting, pod_status

log = logging.getLogger("ketch.agent.pods")

TERMINAL = ("Succeeded", "Failed")
RESYNC = 10.0                  # the kubelet resyncs every pod periodically
KEEP_EXITED = 1                # exited attempts kept besides the newest (for --previous and lastState)


def _ns() -> int:
    return time.time_ns()


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def field_path(container: dict, init: bool = False) -> str:
    return f"spec.{'initContainers' if init else 'containers'}{{{container['name']}}}"


@dataclass
class PodState:
    """What the worker knows of one pod beyond what the runtime says."""
    uid: str
    waiting: dict[str, Waiting] = field(default_factory=dict)
    kill: dict[str, tuple[str, str]] = field(default_factory=dict)  # container -> (its id, why it must go)
    running: dict[str, str] = field(default_factory=dict)  # container -> the id the prober watches
    start_time: str = ""
    terminal_phase: str = ""
    last_status: dict | None = None
    written_to: str = ""          # the uid of the API pod last_status went to (a static pod's mirror changes)
    reason: str = ""              # pod-level, once the kubelet ended it: "Evicted"
    message: str = ""
    grace: float | None = None    # overrides the pod's grace period (an eviction's 0)
    sandbox_config: object = None
    volume_paths: dict[str, Path] | None = None
    volumes_refreshed: float = 0.0
    stopped: bool = False


POD_WORKER_BACKOFF = 10.0  # the kubelet's workerBackOffPeriod: a pod whose sync failed tries again after it


class PodWorker(Controller):
    name = "kubelet"

    def __init__(self, kubelet):
        super().__init__(kubelet.client, kubelet.informers, kubelet.recorder)
        # As the kubelet's one goroutine per pod: a pod waiting out its grace period never holds
        # up another pod (the queue still never syncs one pod twice at once).
        self.workers = kubelet.config.max_pods
        # Creating sandboxes and containers is CPU work in runc, conmon and the CNI plugins: a burst
        # of pods finishes sooner started a few at a time (two per core) than all at once.
        self.starts = asyncio.Semaphore(2 * kubelet.facts.cpus)
        self.k = kubelet
        self.runtime = kubelet.runtime
        self.states: dict[str, PodState] = {}
        self.keys: dict[str, str] = {}      # pod uid -> key, for the prober's callbacks
        self.crash_backoff = Backoff(CRASH_INITIAL, CRASH_MAX)
        self.pod_api = kubelet.client.resource("v1", "Pod")

    # ---- the sync ------------------------------------------------------------------------------

    async def sync(self, key: str) -> float | None:
        pod = self.k.pod(key)
        api_pod = self.k.pods.get(key)
        if pod is None and is_mirror(api_pod):
            await self._delete_api_pod(api_pod)   # the mirror of a static pod whose file went away
        sandboxes = await self.runtime.list_pod_sandboxes(labels={cc.POD_NAMESPACE: key.split("/", 1)[0],
                                                                  cc.POD_NAME: key.split("/", 1)[1]})
        uid = pod["metadata"]["uid"] if pod is not None else None
        # Sandboxes of an earlier pod of that name (deleted while we were away, or recreated).
        stale_left = False
        for sb in sandboxes:
            if sb.uid != uid:
                try:
                    await self._remove_sandbox(sb.id, sb.uid)
                except RuntimeError_ as e:  # that pod is gone from the API: nobody to tell but the log
                    log.warning("pod %s: removing sandbox %s: %s", key, sb.id[:12], e.message)
                    stale_left = True
        if pod is None:
            return POD_WORKER_BACKOFF if stale_left else None
        state = self.states.get(uid)
        if state is None:
            state = self.states[uid] = PodState(uid, start_time=(pod.get("status") or {}).get("startTime") or "")
        meta = pod["metadata"]
        if meta.get("deletionTimestamp") or (pod.get("status") or {}).get("phase") in TERMINAL or state.terminal_phase:
            return await self._terminate(pod, state)
        return await self._run(pod, state)

    async def _run(self, pod: dict, state: PodState) -> float | None:
        uid = state.uid
        ours = await self.runtime.list_pod_sandboxes(labels={cc.POD_UID: uid})
        ready = sorted((sb for sb in ours if sb.state == SANDBOX_READY), key=lambda s: s.created_at, reverse=True)
        sandbox = ready[0] if ready else None
        by_name = await self._containers(uid)
        if sandbox is None and ours and self._all_done(pod, by_name):
            # The sandbox went away after the pod finished (restartPolicy Never/OnFailure): stay done.
            state.terminal_phase = pod_status(self._view(pod, state, by_name, None), _now())["phase"]
            if state.terminal_phase in TERMINAL:
                return await self._terminate(pod, state)
        if not ours and not (pod.get("status") or {}).get("startTime"):
            refused = self.k.eviction.admit(pod)    # a new pod on a node under pressure
            if refused:
                self.recorder.event(pod, WARNING, "Evicted", refused)
                self.end(state, "Evicted", refused)
                return await self._terminate(pod, state)
        if not state.start_time:
            state.start_time = _now()
        if sandbox is None:
            sandbox = await self._new_sandbox(pod, state, ours, by_name)
            if sandbox is None:
                await self._write_status(pod, state, by_name, None)
                return 2.0
            by_name = await self._containers(uid)
        elif state.volume_paths is None:   # adopted after a restart: the volumes are on disk already
            state.volume_paths = await self.k.volumes.setup(pod)
            state.volumes_refreshed = time.monotonic()
        elif time.monotonic() - state.volumes_refreshed > 30:
            await self.k.volumes.refresh(pod)   # configMap and secret updates reach mounted files
            state.volumes_refreshed = time.monotonic()
        if state.sandbox_config is None:   # an adopted sandbox: its files are rewritten as they were
            state.sandbox_config = self._sandbox_config(pod, sandbox.attempt, sandbox.ip)
        again = await self._containers_step(pod, state, sandbox, by_name)
        by_name = await self._containers(uid)
        self._probe(pod, by_name, sandbox)
        await self._write_status(pod, state, by_name, sandbox)
        return min(again, RESYNC) if again is not None else RESYNC

    def _probe(self, pod: dict, by_name: dict, sandbox) -> None:
        """Keep the prober's workers on the running containers of the pod."""
        uid = pod["metadata"]["uid"]
        self.keys[uid] = object_key(pod)
        running = {n: cs[0] for n, cs in by_name.items() if cs and cs[0].state == CONTAINER_RUNNING}
        state = self.states.get(uid)
        if state is not None:
            state.running = {n: c.id for n, c in running.items()}
        self.k.prober.add_pod(pod, {n: c.id for n, c in running.items()}, sandbox.id, self.k.pod_ip(pod, sandbox),
                              {n: (c.started_at or c.created_at) / 1e9 for n, c in running.items()})
        for name, cs in by_name.items():
            if name not in running and cs:
                self.k.prober.update_container(uid, name, None)

    def probe_result(self, uid: str, name: str, probe_type: str, result: str, output: str) -> None:
        """The prober's verdict changed: a failed liveness or startup probe restarts the container."""
        state, key = self.states.get(uid), self.keys.get(uid)
        if state is None or key is None:
            return
        if probe_type in (LIVENESS, STARTUP) and result == FAILURE:
            pod = self.k.pods.get(key)
            restarts = pod is not None and ((pod["spec"].get("restartPolicy") or "Always") != "Never"
                                            or any(c["name"] == name for c in sidecars(pod["spec"])))
            # Tied to the container probed: a restart meanwhile must not kill its healthy successor.
            state.kill[name] = (state.running.get(name, ""), kill_message(name, probe_type, will_restart=restarts))
        self.enqueue(key)

    async def _containers(self, uid: str) -> dict[str, list[ContainerStatus]]:
        """The pod's containers by name, newest attempt first."""
        out: dict[str, list[ContainerStatus]] = {}
        for c in await self.runtime.list_containers(labels={cc.POD_UID: uid}):
            out.setdefault(c.labels.get(cc.CONTAINER_NAME, c.name), []).append(c)
        return {name: cc.newest_first(cs) for name, cs in out.items()}

    def _all_done(self, pod: dict, by_name: dict) -> bool:
        policy = pod["spec"].get("restartPolicy") or "Always"
        if policy == "Always":
            return False
        for c in pod["spec"]["containers"]:
            latest = (by_name.get(c["name"]) or [None])[0]
            if latest is None or latest.state != CONTAINER_EXITED:
                return False
            if policy == "OnFailure" and latest.exit_code != 0:
                return False
        return True

    # ---- sandbox -------------------------------------------------------------------------------

    def _sandbox_config(self, pod: dict, attempt: int, pod_ip: str = ""):
        files = self.k.pod_files(pod, [pod_ip] if pod_ip else [])
        return cc.sandbox_config(pod, hostname=files.hostname_value, dns=files.dns, hosts_file=str(files.hosts),
                                 resolv_conf=str(files.resolv_conf), log_directory=str(self.k.pod_log_dir(pod)),
                                 attempt=attempt)

    async def _new_sandbox(self, pod: dict, state: PodState, old: list, by_name: dict):
        if old:
            if any(cs for cs in by_name.values()):
                self.recorder.event(pod, NORMAL, "SandboxChanged", "Pod sandbox changed, it will be killed and re-created.")
            # Stopped (their containers killed with them), not removed: the old containers keep
            # the restart counts, last states and back-off of the pod (removed with the pod, or by
            # the container GC).
            if not await self._kill_sandboxes(pod, state.uid):
                return None
        try:
            state.volume_paths = await self.k.volumes.setup(pod)
            state.volumes_refreshed = time.monotonic()
        except Exception as e:  # noqa: BLE001 - any volume failure: the pod waits, with an event
            message = getattr(e, "message", None) or str(e)
            self.recorder.event(pod, WARNING, "FailedMount", message)
            for c in pod["spec"]["containers"]:
                state.waiting[c["name"]] = Waiting("ContainerCreating")
            return None
        attempt = max((sb.attempt for sb in old), default=-1) + 1
        try:
            async with self.starts:
                sandbox_id = await self.runtime.run_pod_sandbox(self._sandbox_config(pod, attempt))
            sandbox = await self.runtime.pod_sandbox_status(sandbox_id)
        except RuntimeError_ as e:
            self.recorder.event(pod, WARNING, "FailedCreatePodSandBox", f"Failed to create pod sandbox: {e.message}")
            return None
        # /etc/hosts names the pod's IP, known only now; containers mount the rewritten files.
        state.sandbox_config = self._sandbox_config(pod, attempt, sandbox.ip)
        log.info("pod %s/%s: sandbox %s ip %s", pod["metadata"]["namespace"], pod["metadata"]["name"],
                 sandbox.id[:12], sandbox.ip)
        return sandbox

    async def _remove_sandbox(self, sandbox_id: str, uid: str) -> None:
        await self.runtime.stop_pod_sandbox(sandbox_id)   # kills its containers too
        await self.runtime.remove_pod_sandbox(sandbox_id)
        if uid and not await self.runtime.list_pod_sandboxes(labels={cc.POD_UID: uid}):
            await self.k.volumes.teardown(uid)
            self._forget(uid)

    def _forget(self, uid: str) -> None:
        self.states.pop(uid, None)
        self.keys.pop(uid, None)
        self.crash_backoff.forget_prefix((uid,))
        self.k.images.forget_pod(uid)
        self.k.prober.remove_pod(uid)

    # ---- containers ----------------------------------------------------------------------------

    async def _containers_step(self, pod: dict, state: PodState, sandbox, by_name: dict) -> float | None:
        spec = pod["spec"]
        policy = spec.get("restartPolicy") or "Always"
        due: list[float] = []
        # A container created but never started (the agent died between the two, or runc start
        # failed): one sync creates and starts, so it is an orphan; the one before it counts.
        for cs in by_name.values():
            while cs and cs[0].state == CONTAINER_CREATED:
                await self.runtime.remove_container(cs.pop(0).id)
        if policy != "Always" and sidecars(spec) and self._all_done(pod, by_name):
            # The app containers are done for good: the sidecars are stopped and stay stopped.
            await self._stop_sidecars(pod, by_name, self._grace(pod))
            return None
        # Once an app container ran in this sandbox the pod is initialized: of the init containers
        # only the sidecars are kept running, and a sidecar's restart no longer holds anything up.
        initialized = any(cs and cs[0].sandbox_id == sandbox.id
                          for name, cs in by_name.items() if name in {c["name"] for c in spec["containers"]})
        # Init containers, in order: each must succeed (a sidecar: have started) before the next starts.
        for container in spec.get("initContainers") or ():
            latest = (by_name.get(container["name"]) or [None])[0]
            if is_sidecar(container):
                delay, started = await self._keep_running(pod, state, sandbox, container, latest, "Always", init=True)
                if delay is not None:
                    due.append(delay)
                if not (started or initialized):
                    return min(due) if due else None   # the prober's verdict or the PLEG wakes us
                continue
            if initialized:
                continue
            if latest is not None and latest.state == CONTAINER_EXITED and latest.exit_code == 0:
                state.waiting.pop(container["name"], None)
                continue
            if latest is not None and latest.state in (CONTAINER_RUNNING, CONTAINER_CREATED):
                return None   # wait for it (the PLEG wakes us when it exits)
            if latest is not None and latest.state == CONTAINER_EXITED and policy == "Never":
                state.terminal_phase = "Failed"
                return 0.0
            return await self._start_or_back_off(pod, state, sandbox, container, latest, init=True)
        for container in spec["containers"]:
            latest = (by_name.get(container["name"]) or [None])[0]
            delay, _ = await self._keep_running(pod, state, sandbox, container, latest, policy)
            if delay is not None:
                due.append(delay)
        await self._collect_exited(by_name)
        return min(due) if due else None

    async def _keep_running(self, pod: dict, state: PodState, sandbox, container: dict,
                            latest: ContainerStatus | None, policy: str, init: bool = False) -> tuple[float | None, bool]:
        """Keep an app container or a sidecar as its restart policy wants it: restarted when it
        exited, failed its liveness probe or changed its spec. Returns when to look again, and
        whether the container has started (running, its startup probe passed)."""
        name = container["name"]
        if latest is not None and latest.state == CONTAINER_RUNNING:
            victim, why = state.kill.pop(name, ("", None))
            if victim != latest.id:
                why = None
            if why is None and latest.annotations.get(cc.CONTAINER_HASH) != cc.container_hash(container):
                why = f"Container {name} definition changed, will be restarted"
            if why is None:
                state.waiting.pop(name, None)
                return None, not container.get("startupProbe") or self.k.prober.started(state.uid, name)
            self.recorder.event(pod, NORMAL, "Killing", why, field_path(container, init))
            await self._stop_container(pod, container, latest, self._grace(pod))
            latest = await self.runtime.container_status(latest.id)
        if latest is not None and latest.state == CONTAINER_CREATED:
            return None, False
        if latest is not None and latest.state == CONTAINER_EXITED:
            if policy == "Never" or (policy == "OnFailure" and latest.exit_code == 0):
                state.waiting.pop(name, None)
                return None, False
        delay = await self._start_or_back_off(pod, state, sandbox, container, latest, init)
        # Started just now: without a startup probe, running is started.
        return delay, delay is None and name not in state.waiting and not container.get("startupProbe")

    async def _start_or_back_off(self, pod: dict, state: PodState, sandbox, container: dict,
                                 latest: ContainerStatus | None, init: bool = False) -> float | None:
        name = container["name"]
        if latest is not None:
            key = (state.uid, name)
            remaining = self.crash_backoff.remaining(key, latest.finished_at / 1e9)
            if remaining > 0:
                meta = pod["metadata"]
                delay = int(self.crash_backoff.delay(key))
                message = f"back-off {format_seconds(delay)} restarting failed container={name} " \
                          f"pod={meta['name']}_{meta['namespace']}({meta['uid']})"
                if (state.waiting.get(name) or Waiting("")).reason != "CrashLoopBackOff":
                    self.recorder.event(pod, WARNING, "BackOff", "Back-off restarting failed container "
                                        f"{name} in pod {meta['name']}_{meta['namespace']}({meta['uid']})",
                                        field_path(container, init))
                state.waiting[name] = Waiting("CrashLoopBackOff", message)
                return remaining
            self.crash_backoff.next(key)
        attempt = latest.attempt + 1 if latest is not None else 0
        return await self._start(pod, state, sandbox, container, attempt, init)

    async def _start(self, pod: dict, state: PodState, sandbox, container: dict, attempt: int,
                     init: bool) -> float | None:
        name, fpath = container["name"], field_path(container, init)
        try:
            image = await self.k.images.ensure(pod, container, fpath)
        except ImagePullFailed as e:
            state.waiting[name] = e.waiting
            return 2.0
        try:
            envs, command, args = await self.k.container_env(pod, container, sandbox)
            self.k.check_non_root(pod, container, image)
            mounts = self.k.volumes.mounts(pod, container, state.volume_paths or {}, envs=envs)
        except Exception as e:  # noqa: BLE001 - ConfigError, VolumeError: the container cannot start
            message = getattr(e, "message", None) or str(e)
            self.recorder.event(pod, WARNING, "Failed", f"Error: {message}", fpath)
            state.waiting[name] = Waiting("CreateContainerConfigError", message)
            return 2.0
        log_path = self.k.container_log_path(pod, name, attempt)
        mounts.append(Mount(container_path=container.get("terminationMessagePath") or "/dev/termination-log",
                            host_path=str(self.k.termination_log(pod, name, attempt))))
        config = cc.container_config(pod, container, image=image, attempt=attempt, command=command, args=args,
                                     envs=envs, mounts=mounts, log_path=str(log_path),
                                     memory_capacity=self.k.facts.memory_bytes, init=init,
                                     seccomp_root=self.k.config.seccomp_root,
                                     seccomp_default=self.k.config.seccomp_default)
        async with self.starts:
            try:
                cid = await self.runtime.create_container(sandbox.id, config, state.sandbox_config)
            except RuntimeError_ as e:
                self.recorder.event(pod, WARNING, "Failed", f"Error: {e.message}", fpath)
                state.waiting[name] = Waiting("CreateContainerError", e.message)
                return 2.0
            self.recorder.event(pod, NORMAL, "Created", f"Created container: {name}", fpath)
            try:
                await self.runtime.start_container(cid)
            except RuntimeError_ as e:
                self.recorder.event(pod, WARNING, "Failed", f"Error: {e.message}", fpath)
                state.waiting[name] = Waiting("RunContainerError", e.message)
                return 2.0
        self.recorder.event(pod, NORMAL, "Started", f"Started container {name}", fpath)
        state.waiting.pop(name, None)
        error = await hooks.run_post_start(pod, container, cid, self.runtime, sandbox_id=sandbox.id,
                                           pod_ip=self.k.pod_ip(pod, sandbox), recorder=self.recorder,
                                           timeout=self._grace(pod))
        if error is not None:
            self.recorder.event(pod, NORMAL, "Killing", hooks.POST_START_KILL_MESSAGE, fpath)
            await self.runtime.stop_container(cid, self._grace(pod))
            state.waiting[name] = Waiting(hooks.POST_START_ERROR, error)
        return None

    async def _stop_container(self, pod: dict, container: dict | None, cs: ContainerStatus, grace: float,
                              turn: asyncio.Future | None = None) -> None:
        """preStop, then (a sidecar) its turn to stop, then the stop signal and the rest of the
        grace period, then SIGKILL."""
        remaining = grace
        if container is not None and cs.state == CONTAINER_RUNNING and (container.get("lifecycle") or {}).get("preStop"):
            sandbox = await self._sandbox_of(cs)
            remaining = await hooks.run_pre_stop(pod, container, cs.id, self.runtime, sandbox_id=cs.sandbox_id,
                                                 pod_ip=self.k.pod_ip(pod, sandbox), grace_period=grace,
                                                 recorder=self.recorder)
        if turn is not None and remaining > 0:
            began = time.monotonic()
            await asyncio.wait({turn}, timeout=remaining)
            remaining = max(remaining - (time.monotonic() - began), 0.0)
        try:
            await self.runtime.stop_container(cs.id, remaining)
        except RuntimeError_ as e:
            log.info("stop %s: %s", cs.id[:12], e.message)

    async def _stop_in_order(self, pod: dict, running: list[tuple[dict | None, ContainerStatus]], grace: float) -> None:
        """Stop containers as the kubelet's termination ordering does: the app containers at once;
        each sidecar, its preStop hook run, waits for them and for the sidecars after it, so the
        sidecars stop last and in reverse order, all within one grace period."""
        order = {c["name"]: i for i, c in enumerate(sidecars(pod["spec"]))}
        side = sorted(((spec, cs) for spec, cs in running if spec is not None and spec["name"] in order),
                      key=lambda item: order[item[0]["name"]], reverse=True)
        before = asyncio.ensure_future(asyncio.gather(*(self._stop_container(pod, spec, cs, grace) for spec, cs in running
                                                        if spec is None or spec["name"] not in order)))
        stops = [before]
        for spec, cs in side:
            before = asyncio.ensure_future(self._stop_container(pod, spec, cs, grace, turn=before))
            stops.append(before)
        await asyncio.gather(*stops)

    async def _stop_sidecars(self, pod: dict, by_name: dict, grace: float) -> None:
        running = [(c, by_name[c["name"]][0]) for c in sidecars(pod["spec"])
                   if by_name.get(c["name"]) and by_name[c["name"]][0].state == CONTAINER_RUNNING]
        for spec, _cs in running:
            self.recorder.event(pod, NORMAL, "Killing", f"Stopping container {spec['name']}", field_path(spec, True))
        await self._stop_in_order(pod, running, grace)

    async def _sandbox_of(self, cs: ContainerStatus):
        try:
            return await self.runtime.pod_sandbox_status(cs.sandbox_id)
        except RuntimeError_:
            return None

    async def _collect_exited(self, by_name: dict) -> None:
        """Remove exited attempts older than the newest two (the kubelet's container GC)."""
        for cs in by_name.values():
            for old in cs[1 + KEEP_EXITED:]:
                if old.state == CONTAINER_EXITED:
                    try:
                        await self.runtime.remove_container(old.id)
                    except RuntimeError_:
                        pass

    def end(self, state: PodState, reason: str, message: str, grace: float | None = 0) -> None:
        """The kubelet ends the pod itself (eviction): Failed with `reason`, containers stopped."""
        state.terminal_phase, state.reason, state.message, state.grace = "Failed", reason, message, grace

    def evict(self, pod: dict, message: str) -> None:
        uid = pod["metadata"]["uid"]
        state = self.states.get(uid) or self.states.setdefault(uid, PodState(uid))
        self.end(state, "Evicted", message)
        self.enqueue(object_key(pod))

    def _grace(self, pod: dict) -> float:
        state = self.states.get(pod["metadata"]["uid"])
        if state is not None and state.grace is not None:
            return state.grace
        meta = pod["metadata"]
        if meta.get("deletionGracePeriodSeconds") is not None:
            return float(meta["deletionGracePeriodSeconds"])
        grace = pod["spec"].get("terminationGracePeriodSeconds")
        return 30.0 if grace is None else float(grace)

    # ---- termination ---------------------------------------------------------------------------

    async def _terminate(self, pod: dict, state: PodState) -> float | None:
        meta = pod["metadata"]
        uid = state.uid
        by_name = await self._containers(uid)
        specs = {c["name"]: c for c in (pod["spec"].get("initContainers") or []) + pod["spec"]["containers"]}
        running = [(specs.get(n), cs[0]) for n, cs in by_name.items() if cs and cs[0].state == CONTAINER_RUNNING]
        self.k.prober.stop_liveness_and_startup(uid)   # readiness goes on while the containers stop
        grace = self._grace(pod)   # deletionGracePeriodSeconds once deleted, as the kubelet's killPod
        for spec, _cs in running:
            if spec is not None:
                self.recorder.event(pod, NORMAL, "Killing", f"Stopping container {spec['name']}",
                                    field_path(spec, spec not in pod["spec"]["containers"]))
        await self._stop_in_order(pod, running, grace)
        self.k.prober.remove_pod(uid)
        if not await self._kill_sandboxes(pod, uid):
            return POD_WORKER_BACKOFF
        by_name = await self._containers(uid)
        if not state.terminal_phase:
            # A pod stopped for good ends in a terminal phase, whatever its restart policy.
            view = self._view(pod, state, by_name, None)
            view.pod = {**pod, "spec": {**pod["spec"], "restartPolicy": "Never"}}
            state.terminal_phase = pod_status(view, _now())["phase"]
            if state.terminal_phase not in TERMINAL:
                state.terminal_phase = "Failed"
        await self._write_status(pod, state, by_name, None)
        await self.k.volumes.teardown(uid)
        if not meta.get("deletionTimestamp"):
            return None
        if not await self._kill_sandboxes(pod, uid, remove=True):
            return POD_WORKER_BACKOFF
        await self._delete_api_pod(pod)
        self._forget(uid)
        return None

    async def _kill_sandboxes(self, pod: dict, uid: str, remove: bool = False) -> bool:
        """Stop (or remove) the pod's sandboxes; False, with the kubelet's FailedKillPod event, when
        the runtime could not (a CNI DEL that failed): the pod stays until a later try succeeds."""
        for sb in await self.runtime.list_pod_sandboxes(labels={cc.POD_UID: uid}):
            try:
                await (self.runtime.remove_pod_sandbox if remove else self.runtime.stop_pod_sandbox)(sb.id)
            except RuntimeError_ as e:
                quoted = e.message.replace("\\", "\\\\").replace('"', '\\"')
                self.recorder.event(pod, WARNING, "FailedKillPod", f'error killing pod: failed to "KillPodSandbox" for '
                                    f'"{uid}" with KillPodSandboxError: "rpc error: code = Unknown desc = {quoted}"')
                return False
        return True

    # ---- status --------------------------------------------------------------------------------

    def _view(self, pod: dict, state: PodState, by_name: dict, sandbox) -> PodView:
        has_init = bool(pod["spec"].get("initContainers"))
        old_status = pod.get("status") or {}
        reported = {s.get("name"): s for s in (old_status.get("containerStatuses") or []) +
                    (old_status.get("initContainerStatuses") or []) if isinstance(s, dict)}

        def view(container: dict, init: bool = False) -> ContainerView:
            cs = by_name.get(container["name"]) or []
            cur = cs[0] if cs else None
            prev = cs[1] if len(cs) > 1 else None
            uid, name = state.uid, container["name"]
            v = ContainerView(spec=container, current=cur, previous=prev, waiting=state.waiting.get(name),
                              ready=self.k.prober.readiness(uid, name),
                              started=self.k.prober.started(uid, name), init=init,
                              sidecar=init and is_sidecar(container),
                              behind_init=has_init and not init, reported=reported.get(name))
            if cur is not None:
                v.image, v.image_id = self.k.image_names(container, cur)
                if cur.state == CONTAINER_EXITED:
                    v.termination_message = self.k.termination_message(pod, container, cur)
            return v

        return PodView(pod=pod, host_ip=self.k.node_ip, pod_ip=self.k.pod_ip(pod, sandbox),
                       sandbox_ready=sandbox is not None, runtime_name=self.k.runtime_name,
                       init=[view(c, init=True) for c in pod["spec"].get("initContainers") or ()],
                       containers=[view(c) for c in pod["spec"]["containers"]],
                       start_time=state.start_time, terminal_phase=state.terminal_phase, reason=state.reason,
                       message=state.message)

    async def _write_status(self, pod: dict, state: PodState, by_name: dict, sandbox) -> None:
        status = pod_status(self._view(pod, state, by_name, sandbox), _now())
        target = pod
        if CONFIG_HASH in (pod["metadata"].get("annotations") or {}):   # a static pod: its mirror shows it
            target = await self._mirror(pod)
            if target is None:
                return
        meta = target["metadata"]
        if status == target.get("status") or (status == state.last_status and state.written_to == meta["uid"]):
            return
        try:
            await self.pod_api.patch(meta["name"], {"metadata": {"uid": meta["uid"]}, "status": status}, "merge",
                                     namespace=meta["namespace"], subresource="status")
            state.last_status, state.written_to = status, meta["uid"]
            if target is not pod:
                pod["status"] = status   # the static pod itself is the agent's own object
        except ApiError as e:
            if e.code != 404:
                raise

    async def _mirror(self, pod: dict) -> dict | None:
        """The API's mirror of a static pod: made when missing, replaced when stale or deleted."""
        key = object_key(pod)
        mirror = self.k.pods.get(key)
        digest = pod["metadata"]["annotations"][CONFIG_HASH]
        if mirror is not None and (mirror["metadata"].get("annotations", {}).get(CONFIG_MIRROR) != digest
                                   or mirror["metadata"].get("deletionTimestamp")):
            await self._delete_api_pod(mirror)
            mirror = None
        if mirror is None:
            node = {"metadata": {"name": self.k.node_name, "uid": self.k.node_uid}}
            try:
                mirror = await self.pod_api.create(mirror_pod(pod, node), namespace=pod["metadata"]["namespace"])
            except ApiError as e:
                if e.code == 409:   # the old one is still going; the next sync makes it
                    return None
                raise
        return mirror

    async def _delete_api_pod(self, pod: dict) -> None:
        meta = pod["metadata"]
        try:
            await self.pod_api.delete(meta["name"], meta["namespace"], gracePeriodSeconds=0,
                                      preconditions={"uid": meta["uid"]})
        except ApiError as e:
            if e.code not in (404, 409):
                raise

