"""Deployment arithmetic and bookkeeping, pure functions over the JSON objects (upstream's
pkg/controller/deployment/util): surge and unavailability from ints or percentages, the pod-template
hash, finding the new and old ReplicaSets, revision and replica annotations, proportions for scaling
mid-rollout, and the Deployment conditions.
"""
from __future__ import annotations

import copy
import math
import re
import struct

import orjson

from . import podutil
from .history import safe_encode

REVISION = "deployment.kubernetes.io/revision"
REVISION_HISTORY = "deployment.kubernetes.io/revision-history"
DESIRED_REPLICAS = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"
ROLLBACK_TO = "deprecated.deployment.rollback.to"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
HASH_LABEL = "pod-template-hash"
# Annotations of a Deployment that are not copied to its ReplicaSets (nor back on rollback).
SKIP_COPY = frozenset({LAST_APPLIED, REVISION, REVISION_HISTORY, DESIRED_REPLICAS, MAX_REPLICAS, ROLLBACK_TO})
MAX_INT32 = 2 ** 31 - 1
MAX_REVISION_HISTORY_CHARS = 2000

# Condition reasons (upstream's deploymentutil constants).
NEW_RS_REASON = "NewReplicaSetCreated"
FOUND_NEW_RS_REASON = "FoundNewReplicaSet"
RS_UPDATED_REASON = "ReplicaSetUpdated"
NEW_RS_AVAILABLE_REASON = "NewReplicaSetAvailable"
TIMED_OUT_REASON = "ProgressDeadlineExceeded"
FAILED_RS_CREATE_REASON = "ReplicaSetCreateError"
PAUSED_REASON = "DeploymentPaused"
RESUMED_REASON = "DeploymentResumed"
MIN_AVAILABLE_REASON = "MinimumReplicasAvailable"
MIN_UNAVAILABLE_REASON = "MinimumReplicasUnavailable"

_PERCENT = re.compile(r"^(\d+)%$")


# ---- numbers ---------------------------------------------------------------------------------------

def scaled_value(value: int | str | None, total: int, round_up: bool) -> int:
    """intstr.GetScaledValueFromIntOrPercent."""
    if value is None:
        return 0
    if isinstance(value, int):
        return value
    m = _PERCENT.match(value)
    if m is None:
        try:
            return int(value)
        except ValueError:
            raise ValueError(f"invalid value for IntOrString: invalid value {value!r}") from None
    scaled = int(m.group(1)) * total / 100
    return math.ceil(scaled) if round_up else math.floor(scaled)


def replicas(obj: dict | None) -> int:
    if obj is None:
        return 0
    value = (obj.get("spec") or {}).get("replicas")
    return 1 if value is None else int(value)


def is_rolling(d: dict) -> bool:
    return ((d.get("spec") or {}).get("strategy") or {}).get("type", "RollingUpdate") == "RollingUpdate"


def resolve_fenceposts(d: dict) -> tuple[int, int]:
    """Surge rounds up, unavailability down; both zero would deadlock, so unavailability becomes 1."""
    rolling = ((d.get("spec") or {}).get("strategy") or {}).get("rollingUpdate") or {}
    desired = replicas(d)
    surge = scaled_value(rolling.get("maxSurge", "25%"), desired, True)
    unavailable = scaled_value(rolling.get("maxUnavailable", "25%"), desired, False)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


def max_surge(d: dict) -> int:
    return resolve_fenceposts(d)[0] if is_rolling(d) else 0


def max_unavailable(d: dict) -> int:
    if not is_rolling(d) or replicas(d) == 0:
        return 0
    return min(resolve_fenceposts(d)[1], replicas(d))


def spec_total(rss: list) -> int:
    return sum(replicas(rs) for rs in rss if rs is not None)


def _status_total(rss: list, field: str) -> int:
    return sum(int((rs.get("status") or {}).get(field) or 0) for rs in rss if rs is not None)


def actual_total(rss: list) -> int:
    return _status_total(rss, "replicas")


def ready_total(rss: list) -> int:
    return _status_total(rss, "readyReplicas")


def available_total(rss: list) -> int:
    return _status_total(rss, "availableReplicas")


def active(rss: list) -> list[dict]:
    return [rs for rs in rss if rs is not None and replicas(rs) > 0]


def has_progress_deadline(d: dict) -> bool:
    value = (d.get("spec") or {}).get("progressDeadlineSeconds")
    return value is not None and value != MAX_INT32


def has_revision_history_limit(d: dict) -> bool:
    value = (d.get("spec") or {}).get("revisionHistoryLimit")
    return value is not None and value != MAX_INT32


# ---- templates, hashes, ordering -------------------------------------------------------------------

def fnv32a(data: bytes) -> int:
    h = 0x811C9DC5
    for b in data:
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    return h


def compute_hash(template: dict, collision_count: int | None) -> str:
    """controller.ComputeHash: FNV-1a 32 of the template (here its canonical JSON, where upstream
    hashes Go's printed struct), then the collision count as 8 little-endian bytes, as decimal text
    in SafeEncodeString's alphabet."""
    data = orjson.dumps(template, option=orjson.OPT_SORT_KEYS)
    if collision_count is not None:
        data += struct.pack("<II", collision_count & 0xFFFFFFFF, 0)
    return safe_encode(str(fnv32a(data)))


def _without_hash(template: dict | None) -> dict:
    t = copy.deepcopy(template or {})
    meta = t.get("metadata") or {}
    labels = dict(meta.get("labels") or {})
    labels.pop(HASH_LABEL, None)
    if labels:
        meta["labels"] = labels
    else:
        meta.pop("labels", None)
    meta.pop("creationTimestamp", None)
    if meta:
        t["metadata"] = meta
    else:
        t.pop("metadata", None)
    return t


def equal_ignore_hash(a: dict | None, b: dict | None) -> bool:
    return _without_hash(a) == _without_hash(b)


def template(obj: dict) -> dict:
    return (obj.get("spec") or {}).get("template") or {}


def by_creation(rss: list[dict]) -> list[dict]:
    """ReplicaSetsByCreationTimestamp: oldest first, ties by name."""
    return sorted(rss, key=lambda rs: (rs["metadata"].get("creationTimestamp") or "", rs["metadata"]["name"]))


def find_new(d: dict, rss: list[dict]) -> dict | None:
    """The oldest ReplicaSet whose template is the Deployment's."""
    for rs in by_creation(rss):
        if equal_ignore_hash(template(rs), template(d)):
            return rs
    return None


def find_old(d: dict, rss: list[dict], new: dict | None = None) -> list[dict]:
    new = new if new is not None else find_new(d, rss)
    return [rs for rs in rss if new is None or rs["metadata"]["uid"] != new["metadata"]["uid"]]


def revision(rs: dict | None) -> int | None:
    try:
        return int(((rs or {}).get("metadata", {}).get("annotations") or {}).get(REVISION, ""))
    except ValueError:
        return None


def max_revision(rss: list[dict]) -> int:
    return max((revision(rs) or 0 for rs in rss), default=0)


def last_revision(rss: list[dict]) -> int:
    """The second highest revision: where `rollout undo` without --to-revision goes."""
    revs = sorted({r for r in (revision(rs) for rs in rss) if r is not None}, reverse=True)
    return revs[1] if len(revs) > 1 else 0


# ---- annotations -----------------------------------------------------------------------------------

def _annotations(obj: dict) -> dict:
    meta = obj.setdefault("metadata", {})
    if meta.get("annotations") is None:
        meta["annotations"] = {}
    return meta["annotations"]


def copy_annotations(d: dict, rs: dict) -> bool:
    """The Deployment's annotations (kubernetes.io/change-cause among them) onto the ReplicaSet."""
    changed = False
    rs_ann = _annotations(rs)
    for k, v in ((d["metadata"].get("annotations") or {}).items()):
        if k in SKIP_COPY or rs_ann.get(k) == v:
            continue
        rs_ann[k] = v
        changed = True
    return changed


def set_replicas_annotations(rs: dict, desired: int, max_replicas: int) -> bool:
    ann = _annotations(rs)
    changed = False
    for key, value in ((DESIRED_REPLICAS, str(desired)), (MAX_REPLICAS, str(max_replicas))):
        if ann.get(key) != value:
            ann[key] = value
            changed = True
    return changed


def replicas_annotations_need_update(rs: dict, desired: int, max_replicas: int) -> bool:
    ann = rs["metadata"].get("annotations") or {}
    return ann.get(DESIRED_REPLICAS) != str(desired) or ann.get(MAX_REPLICAS) != str(max_replicas)


def set_new_rs_annotations(d: dict, rs: dict, new_revision: int, exists: bool) -> bool:
    """SetNewReplicaSetAnnotations: copied annotations, the revision (only ever raised; a raised
    existing revision is a rollback, so the old one joins revision-history), and on creation the
    replica annotations."""
    changed = copy_annotations(d, rs)
    ann = _annotations(rs)
    old_text = ann.get(REVISION)
    try:
        old = int(old_text) if old_text is not None else 0
    except ValueError:
        return False
    if old < new_revision:
        ann[REVISION] = str(new_revision)
        changed = True
        if old_text is not None:
            history = ann.get(REVISION_HISTORY, "")
            entries = history.split(",") if history else []
            total = len(history) + len(old_text) + 1
            start = 0
            while total > MAX_REVISION_HISTORY_CHARS and start < len(entries):
                total -= len(entries[start]) + 1
                start += 1
            if total <= MAX_REVISION_HISTORY_CHARS:
                ann[REVISION_HISTORY] = ",".join(entries[start:] + [old_text])
    if not exists and set_replicas_annotations(rs, replicas(d), replicas(d) + max_surge(d)):
        changed = True
    return changed


def desired_replicas_annotation(rs: dict) -> int | None:
    try:
        return int((rs["metadata"].get("annotations") or {})[DESIRED_REPLICAS])
    except (KeyError, ValueError):
        return None


def is_saturated(d: dict, rs: dict | None) -> bool:
    if rs is None:
        return False
    return replicas(rs) == replicas(d) and desired_replicas_annotation(rs) == replicas(d) and \
        int((rs.get("status") or {}).get("availableReplicas") or 0) == replicas(d)


def find_active_or_latest(new: dict | None, old: list[dict]) -> dict | None:
    if new is None and not old:
        return None
    old_sorted = list(reversed(by_creation(old)))
    live = active(old_sorted + [new])
    if len(live) == 0:
        return new if new is not None else old_sorted[0]
    if len(live) == 1:
        return live[0]
    return None


def proportion(rs: dict, d: dict, to_add: int, added: int) -> int:
    """GetReplicaSetProportion: this ReplicaSet's share of the replicas added or removed."""
    if replicas(rs) == 0 or to_add == 0 or to_add == added:
        return 0
    allowed = to_add - added
    fraction = _fraction(rs, d)
    return min(fraction, allowed) if to_add > 0 else max(fraction, allowed)


def _fraction(rs: dict, d: dict) -> int:
    if replicas(d) == 0:
        return -replicas(rs)
    deployment_max = replicas(d) + max_surge(d)
    try:
        before = int((rs["metadata"].get("annotations") or {})[MAX_REPLICAS])
    except (KeyError, ValueError):
        before = 0
    if before == 0:
        before = int((d.get("status") or {}).get("replicas") or 0)
        if before == 0:
            return 0
    size = replicas(rs) * deployment_max / before
    return int(math.floor(size + 0.5)) - replicas(rs)


# ---- conditions and completeness -------------------------------------------------------------------

def new_condition(cond_type: str, status: str, reason: str, message: str) -> dict:
    now = podutil.rfc3339(podutil.now())
    return {"type": cond_type, "status": status, "lastUpdateTime": now, "lastTransitionTime": now,
            "reason": reason, "message": message}


def get_condition(status: dict, cond_type: str) -> dict | None:
    for c in status.get("conditions") or ():
        if c.get("type") == cond_type:
            return c
    return None


def set_condition(status: dict, cond: dict) -> None:
    """SetDeploymentCondition: same status and reason is no change; same status keeps the
    transition time."""
    current = get_condition(status, cond["type"])
    if current is not None and current.get("status") == cond["status"] and current.get("reason") == cond["reason"]:
        return
    if current is not None and current.get("status") == cond["status"]:
        cond = {**cond, "lastTransitionTime": current.get("lastTransitionTime")}
    status["conditions"] = [c for c in status.get("conditions") or () if c.get("type") != cond["type"]] + [cond]


def remove_condition(status: dict, cond_type: str) -> None:
    if status.get("conditions"):
        status["conditions"] = [c for c in status["conditions"] if c.get("type") != cond_type]
        if not status["conditions"]:
            del status["conditions"]


def complete(d: dict, status: dict) -> bool:
    want = replicas(d)
    return status.get("updatedReplicas", 0) == want and status.get("replicas", 0) == want and \
        status.get("availableReplicas", 0) == want and \
        status.get("observedGeneration", 0) >= (d["metadata"].get("generation") or 0)


def progressing(d: dict, new_status: dict) -> bool:
    old = d.get("status") or {}
    old_old = old.get("replicas", 0) - old.get("updatedReplicas", 0)
    new_old = new_status.get("replicas", 0) - new_status.get("updatedReplicas", 0)
    return new_status.get("updatedReplicas", 0) > old.get("updatedReplicas", 0) or new_old < old_old or \
        new_status.get("readyReplicas", 0) > old.get("readyReplicas", 0) or \
        new_status.get("availableReplicas", 0) > old.get("availableReplicas", 0)


def seconds_to_deadline(d: dict, status: dict) -> float | None:
    """Seconds until the Progressing condition's deadline passes (negative when it has)."""
    cond = get_condition(status, "Progressing")
    if cond is None or not has_progress_deadline(d):
        return None
    since = podutil.parse_time(cond.get("lastUpdateTime"))
    if since is None:
        return None
    deadline = int(d["spec"]["progressDeadlineSeconds"])
    return (since - podutil.now()).total_seconds() + deadline


def timed_out(d: dict, status: dict) -> bool:
    cond = get_condition(status, "Progressing")
    if cond is None or not has_progress_deadline(d) or cond.get("reason") == NEW_RS_AVAILABLE_REASON:
        return False
    if cond.get("reason") == TIMED_OUT_REASON:
        return True
    left = seconds_to_deadline(d, status)
    return left is not None and left < 0
