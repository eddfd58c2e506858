"""A pod's status as the kubelet computes it (generateAPIPodStatus and getPhase): from what the
runtime says of the pod's containers, what the pod worker knows of why a container waits, and
what the prober says of readiness. Pure functions: no I/O.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..api.defaults import pod_qos_class, sidecars
from .resource_metrics import rfc3339
from .runtime.api import CONTAINER_EXITED, CONTAINER_RUNNING, ContainerStatus

PENDING, RUNNING, SUCCEEDED, FAILED = "Pending", "Running", "Succeeded", "Failed"


@dataclass
class Waiting:
    reason: str
    message: str = ""


@dataclass
class ContainerView:
    """What the pod worker knows of one container of the spec."""
    spec: dict
    current: ContainerStatus | None = None      # the newest attempt
    previous: ContainerStatus | None = None     # the attempt before it (lastState)
    waiting: Waiting | None = None              # why it is not running, when the worker knows
    ready: bool = False
    started: bool | None = None                 # the startup probe's verdict (None: no probe)
    image: str = ""                             # the image as the runtime names it
    image_id: str = ""
    termination_message: str = ""
    init: bool = False                          # an init container
    sidecar: bool = False                       # an init container with restartPolicy Always
    behind_init: bool = False                   # an app container of a pod with init containers
    reported: dict | None = None                # its status as the API has it now


@dataclass
class PodView:
    pod: dict
    host_ip: str
    pod_ip: str = ""
    sandbox_ready: bool = False
    runtime_name: str = "ketch-runc"
    init: list[ContainerView] = field(default_factory=list)
    containers: list[ContainerView] = field(default_factory=list)
    start_time: str = ""
    terminal_phase: str = ""   # set once the worker decided the pod is done for good
    reason: str = ""           # pod-level reason, e.g. "Evicted"
    message: str = ""


def _terminated(cs: ContainerStatus, runtime_name: str, message: str = "") -> dict:
    out = {"exitCode": cs.exit_code, "reason": cs.reason or ("Completed" if cs.exit_code == 0 else "Error"),
           "startedAt": rfc3339(cs.started_at) if cs.started_at else None,
           "finishedAt": rfc3339(cs.finished_at) if cs.finished_at else None,
           "containerID": f"{runtime_name}://{cs.id}"}
    if message or cs.message:
        out["message"] = message or cs.message
    return out


def container_status(view: ContainerView, runtime_name: str) -> dict:
    spec, cur = view.spec, view.current
    if cur is None and view.waiting is None and "terminated" in ((view.reported or {}).get("state") or {}):
        return view.reported   # the runtime forgot a finished container (as upstream, keep its end)
    out: dict = {"name": spec["name"], "image": view.image or spec.get("image", ""), "imageID": view.image_id,
                 "ready": False, "restartCount": cur.attempt if cur else 0, "started": False,
                 "state": {}, "lastState": {}}
    if cur is not None:
        out["containerID"] = f"{runtime_name}://{cur.id}"
    if view.previous is not None and view.previous.state == CONTAINER_EXITED:
        out["lastState"] = {"terminated": _terminated(view.previous, runtime_name)}
    if cur is not None and cur.state == CONTAINER_RUNNING and view.waiting is None:
        out["state"] = {"running": {"startedAt": rfc3339(cur.started_at or cur.created_at)}}
        out["ready"] = view.ready
        out["started"] = True if view.started is None else view.started
    elif cur is not None and cur.state == CONTAINER_EXITED and view.waiting is None:
        out["state"] = {"terminated": _terminated(cur, runtime_name, view.termination_message)}
        # A finished init container counts as ready; a sidecar is meant to be running.
        out["ready"] = view.init and not view.sidecar and cur.exit_code == 0
    else:
        waiting = view.waiting or Waiting("PodInitializing" if view.behind_init else "ContainerCreating")
        out["state"] = {"waiting": {"reason": waiting.reason, **({"message": waiting.message}
                                                                 if waiting.message else {})}}
        if cur is not None and cur.state == CONTAINER_EXITED:
            # Waiting to be restarted: the run that ended is the last state.
            out["lastState"] = {"terminated": _terminated(cur, runtime_name, view.termination_message)}
    if not out["imageID"]:
        out["imageID"] = ""
    return out


def _is_stopped_ok(status: dict) -> bool | None:
    """True/False if the container's last run ended with 0/non-zero; None if it never ended."""
    term = status["state"].get("terminated") or (status["lastState"] or {}).get("terminated")
    return None if term is None else term["exitCode"] == 0


def _started(status: dict) -> bool:
    """A regular container ever ran: the pod was initialized before (HasAnyRegularContainerStarted)."""
    return bool({"running", "terminated"} & set(status["state"])) or bool((status["lastState"] or {}).get("terminated"))


def phase(pod: dict, init: list[dict], containers: list[dict]) -> str:
    """getPhase: the pod's phase from its containers' statuses. Sidecars count as running while
    they run and not at all once they stopped: a pod is done when its app containers are."""
    spec = pod["spec"]
    policy = spec.get("restartPolicy") or "Always"
    sidecar_names = {c["name"] for c in sidecars(spec)}
    pending_init = failed_init = pending_sidecars = 0
    waiting = running = stopped = succeeded = 0
    for status in init:
        state, last = status["state"], (status["lastState"] or {}).get("terminated")
        if status["name"] in sidecar_names:
            if "running" in state:
                running += 1
                pending_sidecars += not status.get("started")
            elif "waiting" in state and last is None:
                pending_sidecars += 1
                waiting += 1
        elif "terminated" in state:
            failed_init += state["terminated"]["exitCode"] != 0
        elif "waiting" in state and last is not None:
            failed_init += last["exitCode"] != 0
        else:
            pending_init += 1
    for status in containers:
        state = status["state"]
        if "running" in state:
            running += 1
        elif "terminated" in state:
            stopped += 1
            succeeded += state["terminated"]["exitCode"] == 0
        elif (status["lastState"] or {}).get("terminated") is not None:
            stopped += 1   # waiting to restart: stopped, and (as upstream) not counted as succeeded
        else:
            waiting += 1
    if failed_init and policy == "Never":
        return FAILED
    if pending_init or (pending_sidecars and not any(_started(s) for s in containers)) or waiting:
        return PENDING
    if running:
        return RUNNING
    if stopped:
        if policy == "Always":
            return RUNNING
        if stopped == succeeded:
            return SUCCEEDED
        return FAILED if policy == "Never" else RUNNING
    return PENDING


def _condition(ctype: str, ok: bool, old: dict[str, dict], now: str, reason: str = "", message: str = "") -> dict:
    status = "True" if ok else "False"
    prev = old.get(ctype)
    since = prev["lastTransitionTime"] if prev and prev.get("status") == status and prev.get("lastTransitionTime") \
        else now
    c = {"type": ctype, "status": status, "lastProbeTime": None, "lastTransitionTime": since}
    if reason:
        c["reason"] = reason
    if message:
        c["message"] = message
    return c


def _readiness_gate_failure(pod: dict, conditions: dict[str, dict]) -> str | None:
    """Why the pod's readinessGates keep it not Ready (upstream's message), or None."""
    for gate in pod["spec"].get("readinessGates") or ():
        ctype = gate.get("conditionType", "")
        cond = conditions.get(ctype)
        if cond is None:
            return f'corresponding condition of pod readiness gate "{ctype}" does not exist.'
        if cond.get("status") != "True":
            return f'the status of pod readiness gate "{ctype}" is not "True", but {cond.get("status")}'
    return None


def pod_status(view: PodView, now: str) -> dict:
    pod = view.pod
    old_status = pod.get("status") or {}
    old = {c["type"]: c for c in old_status.get("conditions") or () if isinstance(c, dict) and "type" in c}
    init = [container_status(v, view.runtime_name) for v in view.init]
    containers = [container_status(v, view.runtime_name) for v in view.containers]
    the_phase = view.terminal_phase or phase(pod, init, containers)
    if old_status.get("phase") in (SUCCEEDED, FAILED):
        the_phase = old_status["phase"]   # a terminal phase never changes
    terminal = the_phase in (SUCCEEDED, FAILED)

    sidecar_names = {c["name"] for c in sidecars(pod["spec"])}
    initialized_before = any(_started(s) for s in containers)
    pending_init = [] if initialized_before else [
        s["name"] for s in init
        if (not s["started"] if s["name"] in sidecar_names else (s["state"].get("terminated") or {}).get("exitCode") != 0)]
    unready = [s["name"] for s in init if s["name"] in sidecar_names and not s["ready"]] + \
        [s["name"] for s in containers if not s["ready"]]
    conditions = []
    if "PodScheduled" in old:
        conditions.append(old["PodScheduled"])
    conditions.append(_condition("PodReadyToStartContainers", view.sandbox_ready and not terminal, old, now))
    if pending_init and not terminal:
        conditions.append(_condition("Initialized", False, old, now, "ContainersNotInitialized",
                                     f"containers with incomplete status: [{' '.join(pending_init)}]"))
    else:
        conditions.append(_condition("Initialized", True, old, now, "PodCompleted" if terminal and
                                     the_phase == SUCCEEDED and not view.init else ""))
    gate = _readiness_gate_failure(pod, old)
    ready = not unready and not terminal and gate is None
    if not unready and not terminal and gate is not None:
        conditions.append(_condition("Ready", False, old, now, "ReadinessGatesNotReady", gate))
        conditions.append(_condition("ContainersReady", True, old, now))
    elif ready:
        conditions.append(_condition("Ready", True, old, now))
        conditions.append(_condition("ContainersReady", True, old, now))
    else:
        reason = ("PodCompleted" if the_phase == SUCCEEDED else "PodFailed") if terminal else "ContainersNotReady"
        message = "" if terminal else f"containers with unready status: [{' '.join(unready)}]"
        conditions.append(_condition("Ready", False, old, now, reason, message))
        conditions.append(_condition("ContainersReady", False, old, now, reason, message))
    # The kubelet's order: PodReadyToStartContainers, Initialized, Ready, ContainersReady, PodScheduled.
    order = {"PodReadyToStartContainers": 0, "Initialized": 1, "Ready": 2, "ContainersReady": 3, "PodScheduled": 4}
    conditions.sort(key=lambda c: order.get(c["type"], 5))
    if view.reason == "Evicted":
        conditions.append(_condition("DisruptionTarget", True, old, now, "TerminationByKubelet", view.message))
    ours = {*order, *(("DisruptionTarget",) if view.reason == "Evicted" else ())}
    keep = [c for t, c in old.items() if t not in ours]   # readiness gates and others' conditions
    status: dict = {"phase": the_phase, "conditions": conditions + keep, "hostIP": view.host_ip,
                    "hostIPs": [{"ip": view.host_ip}] if view.host_ip else [],
                    "startTime": view.start_time or old_status.get("startTime") or now,
                    "containerStatuses": containers, "qosClass": pod_qos_class(pod)}
    if view.pod_ip:
        status["podIP"], status["podIPs"] = view.pod_ip, [{"ip": view.pod_ip}]
    elif old_status.get("podIP"):
        status["podIP"], status["podIPs"] = old_status["podIP"], old_status.get("podIPs") or [{"ip": old_status["podIP"]}]
    if init:
        status["initContainerStatuses"] = init
    if view.reason:
        status["reason"] = view.reason
    if view.message:
        status["message"] = view.message
    return status

