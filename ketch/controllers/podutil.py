"""Pods as the workload controllers see them: made from templates, owned through controller
references, and judged active, ready or available the way upstream's controllers judge them."""
from __future__ import annotations

import copy
import datetime

TERMINAL_PHASES = ("Succeeded", "Failed")


def parse_time(ts: str | None) -> datetime.datetime | None:
    if not ts:
        return None
    ts = ts.rstrip("Z").split(".", 1)[0]
    return datetime.datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=datetime.timezone.utc)


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def rfc3339(t: datetime.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def controller_ref(obj: dict) -> dict | None:
    for ref in obj.get("metadata", {}).get("ownerReferences") or ():
        if ref.get("controller"):
            return ref
    return None


def owner_reference(owner: dict) -> dict:
    """The reference a controller puts on what it creates: controller, blocking foreground deletion."""
    meta = owner["metadata"]
    return {"apiVersion": owner["apiVersion"], "kind": owner["kind"], "name": meta["name"], "uid": meta["uid"],
            "controller": True, "blockOwnerDeletion": True}


def pod_from_template(template: dict, owner: dict, *, name: str = "", generate_name: str = "") -> dict:
    """A new Pod from a pod template, owned by `owner` (in its namespace)."""
    tmeta = template.get("metadata") or {}
    meta: dict = {"namespace": owner["metadata"]["namespace"], "ownerReferences": [owner_reference(owner)]}
    if name:
        meta["name"] = name
    else:
        meta["generateName"] = generate_name or f"{owner['metadata']['name']}-"
    for field in ("labels", "annotations", "finalizers"):
        if tmeta.get(field):
            meta[field] = copy.deepcopy(tmeta[field])
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": copy.deepcopy(template.get("spec") or {})}


def is_terminating(pod: dict) -> bool:
    return bool(pod.get("metadata", {}).get("deletionTimestamp"))


def is_active(pod: dict) -> bool:
    """Counted towards a controller's replicas: not finished and not being deleted."""
    return pod.get("status", {}).get("phase") not in TERMINAL_PHASES and not is_terminating(pod)


def condition(obj: dict, cond_type: str) -> dict | None:
    for c in obj.get("status", {}).get("conditions") or ():
        if c.get("type") == cond_type:
            return c
    return None


def is_ready(pod: dict) -> bool:
    c = condition(pod, "Ready")
    return c is not None and c.get("status") == "True"


def is_available(pod: dict, min_ready_seconds: int, at: datetime.datetime | None = None) -> bool:
    """Ready for at least minReadySeconds."""
    c = condition(pod, "Ready")
    if c is None or c.get("status") != "True":
        return False
    if min_ready_seconds <= 0:
        return True
    since = parse_time(c.get("lastTransitionTime"))
    return since is not None and ((at or now()) - since).total_seconds() >= min_ready_seconds


def ready_since(pod: dict) -> datetime.datetime | None:
    c = condition(pod, "Ready")
    return parse_time(c.get("lastTransitionTime")) if c is not None and c.get("status") == "True" else None


_PHASE_RANK = {"Pending": 0, "Unknown": 1, "Running": 2}


def deletion_order_key(pod: dict) -> tuple:
    """Sort key putting the pods to delete first, as upstream's controller.ActivePods: unscheduled
    before scheduled, Pending before Unknown before Running, not ready before ready, ready for less
    time first, more container restarts first, newer first."""
    status = pod.get("status") or {}
    since = ready_since(pod)
    restarts = sum(c.get("restartCount", 0) for c in status.get("containerStatuses") or ())
    created = pod.get("metadata", {}).get("creationTimestamp") or ""
    return (bool((pod.get("spec") or {}).get("nodeName")), _PHASE_RANK.get(status.get("phase"), 1),
            is_ready(pod), -(since.timestamp() if since else 0.0), -restarts,
            tuple(-ord(ch) for ch in created))
