"""What a simulated kubelet reports for a pod: its plan (from annotations) and its status documents."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

from ..api import durations

PREFIX = "ketch.io/simulate-"
START_DELAY = PREFIX + "start-delay"
READY_AFTER = PREFIX + "ready-after"
DURATION = PREFIX + "duration"
EXIT_CODE = PREFIX + "exit-code"
CPU = PREFIX + "cpu"
MEMORY = PREFIX + "memory"
TRIMMED = "_trimmed"   # marks an object already trimmed (a paged list trims before the informer does)

def parse_duration(text: str) -> float:
    """Go's time.ParseDuration ("1m30s", "500ms"), or a bare number of seconds; never negative."""
    return max(durations.parse(text.strip(), bare_seconds=True), 0.0)


@dataclass
class Plan:
    start_delay: float
    ready_after: float
    duration: float | None
    exit_code: int

    def restarts(self, restart_policy: str) -> bool:
        """Whether an exited container is started again (the pod does not finish)."""
        return restart_policy == "Always" or (restart_policy == "OnFailure" and self.exit_code != 0)


def plan_for(pod: dict, default_start_delay: float = 0.0) -> Plan:
    ann = pod["metadata"].get("annotations") or {}

    def seconds(key: str, default: float | None) -> float | None:
        try:
            return parse_duration(ann[key]) if key in ann else default
        except ValueError:
            return default

    try:
        code = int(ann.get(EXIT_CODE, "0"))
    except ValueError:
        code = 1
    return Plan(seconds(START_DELAY, default_start_delay) or 0.0, seconds(READY_AFTER, 0.0) or 0.0,
                seconds(DURATION, None), code)


def trim(pod: dict) -> dict:
    """The part of a Pod the simulator keeps in memory (10,000 pods must stay cheap)."""
    if pod.get(TRIMMED):
        return pod
    meta, spec, status = pod["metadata"], pod.get("spec") or {}, pod.get("status") or {}
    ann = {k: v for k, v in (meta.get("annotations") or {}).items() if k.startswith(PREFIX)}
    kept_meta = {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion", "deletionTimestamp")
                 if k in meta}
    if ann:
        kept_meta["annotations"] = ann
    statuses = [{"name": c.get("name"), "restartCount": c.get("restartCount", 0),
                 "startedAt": ((c.get("state") or {}).get("running") or {}).get("startedAt")}
                for c in status.get("containerStatuses") or ()]
    return {
        TRIMMED: True,
        "metadata": kept_meta,
        "spec": {"nodeName": spec.get("nodeName"), "restartPolicy": spec.get("restartPolicy", "Always"),
                 "containers": [(c.get("name"), c.get("image", "")) for c in spec.get("containers") or ()],
                 "initContainers": [(c.get("name"), c.get("image", "")) for c in spec.get("initContainers") or ()]},
        "status": {"phase": status.get("phase"), "startTime": status.get("startTime"),
                   "podIP": status.get("podIP"),
                   "conditions": {c.get("type"): c.get("status") for c in status.get("conditions") or ()},
                   "containerStatuses": statuses},
    }


def _sha(*parts: str) -> str:
    return hashlib.sha256("/".join(parts).encode()).hexdigest()


def image_ref(image: str) -> tuple[str, str]:
    """(image, imageID) as containerd reports them: fully qualified name and a repo digest."""
    name = image or "unknown"
    if "@" in name:
        repo = name.split("@", 1)[0]
    else:
        repo = name.rsplit(":", 1)[0] if ":" in name.rsplit("/", 1)[-1] else name
        if ":" not in name.rsplit("/", 1)[-1]:
            name += ":latest"
    first = repo.split("/", 1)[0]
    if "/" not in repo or ("." not in first and ":" not in first and first != "localhost"):
        prefix = "docker.io/" if "/" in repo else "docker.io/library/"
        repo, name = prefix + repo, prefix + name
    return name, f"{repo}@sha256:{_sha('image', image)}"


def _container_id(pod: dict, cname: str, restart: int) -> str:
    return "containerd://" + _sha(pod["metadata"].get("uid", ""), cname, str(restart))


def _running(pod: dict, cname: str, image: str, started: str, ready: bool, restarts: int = 0,
             last: dict | None = None) -> dict:
    img, image_id = image_ref(image)
    return {"name": cname, "state": {"running": {"startedAt": started}}, "lastState": last or {},
            "ready": ready, "restartCount": restarts, "image": img, "imageID": image_id,
            "containerID": _container_id(pod, cname, restarts), "started": True}


def _terminated(pod: dict, cname: str, image: str, started: str, finished: str, code: int, restarts: int = 0
                ) -> dict:
    img, image_id = image_ref(image)
    cid = _container_id(pod, cname, restarts)
    return {"name": cname, "state": {"terminated": _termination(code, started, finished, cid)}, "lastState": {},
            "ready": False, "restartCount": restarts, "image": img, "imageID": image_id, "containerID": cid,
            "started": False}


def _termination(code: int, started: str, finished: str, cid: str) -> dict:
    return {"exitCode": code, "reason": "Completed" if code == 0 else "Error", "startedAt": started,
            "finishedAt": finished, "containerID": cid}


def _condition(ctype: str, status: bool, now: str, reason: str = "", message: str = "") -> dict:
    c = {"type": ctype, "status": "True" if status else "False", "lastProbeTime": None, "lastTransitionTime": now}
    if reason:
        c["reason"] = reason
    if message:
        c["message"] = message
    return c


def _conditions(pod: dict, now: str, *, sandbox: bool, ready: bool, reason: str = "") -> list[dict]:
    names = [c for c, _ in pod["spec"]["containers"]]
    not_ready = "" if ready else (reason or "ContainersNotReady")
    message = "" if ready else f"containers with unready status: [{' '.join(names)}]"
    conds = [_condition("PodReadyToStartContainers", sandbox, now),
             _condition("Initialized", True, now),
             _condition("Ready", ready, now, not_ready, message),
             _condition("ContainersReady", ready, now, not_ready, message)]
    if pod["status"]["conditions"].get("PodScheduled") != "True":
        conds.append(_condition("PodScheduled", True, now))
    return conds


def _only(conditions: list[dict], *types: str) -> list[dict]:
    """The conditions a patch changes (strategic merge keeps the others, with their transition times)."""
    return [c for c in conditions if c["type"] in types]


def _init_statuses(pod: dict, started: str) -> list[dict]:
    return [_terminated(pod, c, image, started, started, 0) for c, image in pod["spec"]["initContainers"]]


def running_status(pod: dict, host_ip: str, pod_ip: str, now: str, *, ready: bool) -> dict:
    """The status patch for a pod whose containers have just started."""
    status = {"phase": "Running", "hostIP": host_ip, "hostIPs": [{"ip": host_ip}],
              "podIP": pod_ip, "podIPs": [{"ip": pod_ip}], "startTime": now,
              "conditions": _conditions(pod, now, sandbox=True, ready=ready),
              "containerStatuses": [_running(pod, c, image, now, ready) for c, image in pod["spec"]["containers"]]}
    if pod["spec"]["initContainers"]:
        status["initContainerStatuses"] = _init_statuses(pod, now)
    return {"status": status}


def ready_status(pod: dict, now: str, started: str, restarts: int) -> dict:
    """The patch once the readiness delay is over."""
    return {"status": {
        "conditions": _only(_conditions(pod, now, sandbox=True, ready=True), "Ready", "ContainersReady"),
        "containerStatuses": [_running(pod, c, image, started, True, restarts) for c, image in pod["spec"]["containers"]]}}


def restarted_status(pod: dict, code: int, now: str, started: str, restarts: int, *, ready: bool) -> dict:
    """The patch when the containers (started at `started`, `restarts` times before) exited and were
    started again."""
    statuses = []
    for c, image in pod["spec"]["containers"]:
        last = {"terminated": _termination(code, started, now, _container_id(pod, c, restarts))}
        statuses.append(_running(pod, c, image, now, ready, restarts + 1, last))
    conds = _only(_conditions(pod, now, sandbox=True, ready=ready), "Ready", "ContainersReady")
    return {"status": {"conditions": conds, "containerStatuses": statuses}}


def backoff_status(pod: dict, code: int, now: str, started: str, restarts: int, backoff: int) -> dict:
    """The patch when the containers exited again and wait out the kubelet's restart back-off."""
    meta = pod["metadata"]
    statuses = []
    for c, image in pod["spec"]["containers"]:
        img, image_id = image_ref(image)
        cid = _container_id(pod, c, restarts)
        message = f"back-off {backoff}s restarting failed container={c} pod={meta['name']}_{meta['namespace']}" \
                  f"({meta.get('uid', '')})"
        statuses.append({"name": c, "state": {"waiting": {"reason": "CrashLoopBackOff", "message": message}},
                         "lastState": {"terminated": _termination(code, started, now, cid)}, "ready": False,
                         "restartCount": restarts, "image": img, "imageID": image_id, "containerID": cid,
                         "started": False})
    conds = _only(_conditions(pod, now, sandbox=True, ready=False), "Ready", "ContainersReady")
    return {"status": {"conditions": conds, "containerStatuses": statuses}}


def finished_status(pod: dict, code: int, now: str, started: str, restarts: int) -> dict:
    """The patch when the containers exited for good: Succeeded or Failed."""
    reason = "PodCompleted" if code == 0 else "PodFailed"
    conds = _only(_conditions(pod, now, sandbox=False, ready=False, reason=reason),
                  "PodReadyToStartContainers", "Ready", "ContainersReady")
    for c in conds:
        c.pop("message", None)
    return {"status": {
        "phase": "Succeeded" if code == 0 else "Failed", "conditions": conds,
        "containerStatuses": [_terminated(pod, c, image, started, now, code, restarts)
                              for c, image in pod["spec"]["containers"]]}}
