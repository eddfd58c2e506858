"""The LimitRanger admission plugin: the LimitRanges of a namespace default and bound what its Pods
and PersistentVolumeClaims ask for (upstream's plugin/pkg/admission/limitranger).

Mutating, for new Pods: every container and init container gets the `default` limits and
`defaultRequest` requests of the namespace's Container-type limits that it does not state itself
(the LimitRange's own defaulting already made `defaultRequest` fall back to `default`, then `min`),
and the Pod records what was set in the `kubernetes.io/limit-ranger` annotation.
Validating: each container (type Container), the pod's sums (type Pod) and a claim's storage
request (type PersistentVolumeClaim) must lie within min and max, and a container's or pod's limit
within maxLimitRequestRatio of its request. The first LimitRange with violations refuses the object
with all of them, in upstream's words.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from ..api import kinds
from ..api import quota as q
from ..api.quantity import Quantity

if TYPE_CHECKING:
    from .admission import Attributes
    from .registry import Registry

ANNOTATION = "kubernetes.io/limit-ranger"
_MAX_MILLI = ((1 << 63) - 1) // 1000  # resource.MaxMilliValue


async def _limit_ranges(registry: "Registry", a: "Attributes") -> list[dict]:
    """The namespace's LimitRanges, read once for both phases of a request."""
    if "limitranges" not in a.memo:
        from .registry import ListOptions
        a.memo["limitranges"], _ = await registry.list(kinds.lookup("", "v1", "limitranges"), a.namespace,
                                                       ListOptions())
    return a.memo["limitranges"]


def _supported(a: "Attributes") -> bool:
    if a.old is not None and (a.old.get("metadata") or {}).get("deletionTimestamp"):
        return False  # objects on their way out are left alone
    return a.is_("", "Pod", "CREATE") or a.is_("", "PersistentVolumeClaim")


async def admit(registry: "Registry", a: "Attributes") -> None:
    if not a.is_("", "Pod", "CREATE") or not _supported(a):
        return
    for lr in await _limit_ranges(registry, a):
        _set_defaults(lr, a.obj)


async def validate(registry: "Registry", a: "Attributes") -> None:
    if not _supported(a):
        return
    check = _check_pod if a.resource.kind == "Pod" else _check_claim
    for lr in await _limit_ranges(registry, a):
        problems = check(lr, a.obj)
        if problems:
            raise a.forbidden(_aggregate(problems))


def _items(lr: dict, kind: str) -> list[dict]:
    return [i for i in (lr.get("spec") or {}).get("limits") or () if i.get("type") == kind]


# ---- defaults ----------------------------------------------------------------------------------

def _set_defaults(lr: dict, pod: dict) -> None:
    limits: dict = {}
    requests: dict = {}
    for item in _items(lr, "Container"):
        requests.update(item.get("defaultRequest") or {})
        limits.update(item.get("default") or {})
    if not limits and not requests:
        return
    notes: list[str] = []
    spec = pod.get("spec") or {}
    for label, field in (("container", "containers"), ("init container", "initContainers")):
        for c in spec.get(field) or ():
            notes += _merge(c, requests, limits, label)
    if notes:
        meta = pod.setdefault("metadata", {})
        annotations = meta.get("annotations") or {}
        annotations[ANNOTATION] = "LimitRanger plugin set: " + "; ".join(notes)
        meta["annotations"] = annotations


def _merge(container: dict, requests: dict, limits: dict, label: str) -> list[str]:
    resources = container.get("resources") or {}
    notes = []
    for field, defaults, what in (("requests", requests, "request"), ("limits", limits, "limit")):
        have = resources.get(field) or {}
        added = sorted(k for k in defaults if k not in have)
        if added:
            resources[field] = {**have, **{k: defaults[k] for k in added}}
            notes.append(f"{', '.join(added)} {what} for {label} {container.get('name', '')}")
    if notes:
        container["resources"] = resources
    return notes


# ---- constraints -------------------------------------------------------------------------------

def _values(*quantities: Quantity | None) -> list[int]:
    """Comparable integers at a common precision (requestLimitEnforcedValues): milli-units unless
    one of them would overflow there. An absent quantity is zero."""
    present = [x or q.ZERO for x in quantities]
    if all(x.int_value_ceil() <= _MAX_MILLI for x in present):
        return [x.milli_value() for x in present]
    return [x.int_value_ceil() for x in present]


def _min(kind: str, name: str, enforced: Quantity, requests: q.ResourceList, limits: q.ResourceList) -> str | None:
    req, lim = requests.get(name), limits.get(name)
    r, li, e = _values(req, lim, enforced)
    if req is None:
        return f"minimum {name} usage per {kind} is {enforced}.  No request is specified"
    if r < e:
        return f"minimum {name} usage per {kind} is {enforced}, but request is {req}"
    if lim is not None and li < e:
        return f"minimum {name} usage per {kind} is {enforced}, but limit is {lim}"
    return None


def _max(kind: str, name: str, enforced: Quantity, requests: q.ResourceList, limits: q.ResourceList) -> str | None:
    req, lim = requests.get(name), limits.get(name)
    r, li, e = _values(req, lim, enforced)
    if lim is None:
        return f"maximum {name} usage per {kind} is {enforced}.  No limit is specified"
    if li > e:
        return f"maximum {name} usage per {kind} is {enforced}, but limit is {lim}"
    if req is not None and r > e:
        return f"maximum {name} usage per {kind} is {enforced}, but request is {req}"
    return None


def _max_request(kind: str, name: str, enforced: Quantity, requests: q.ResourceList) -> str | None:
    """The max of a kind whose limits mean nothing (claims): checked against the request."""
    req = requests.get(name)
    r, _, e = _values(req, None, enforced)
    if req is None:
        return f"maximum {name} usage per {kind} is {enforced}.  No request is specified"
    if r > e:
        return f"maximum {name} usage per {kind} is {enforced}, but request is {req}"
    return None


def _ratio(kind: str, name: str, enforced: Quantity, requests: q.ResourceList, limits: q.ResourceList) -> str | None:
    req, lim = requests.get(name), limits.get(name)
    r, li, _ = _values(req, lim, enforced)
    if req is None or r == 0:
        return (f"{name} max limit to request ratio per {kind} is {enforced}, but no request is specified "
                f"or request is 0")
    if lim is None or li == 0:
        return (f"{name} max limit to request ratio per {kind} is {enforced}, but no limit is specified "
                f"or limit is 0")
    observed = li / r
    shown, allowed = observed, float(enforced.int_value_ceil())
    if enforced.int_value_ceil() <= _MAX_MILLI:
        observed, allowed = observed * 1000, float(enforced.milli_value())
    if observed > allowed:
        return f"{name} max limit to request ratio per {kind} is {enforced}, but provided ratio is {shown:f}"
    return None


def _bounds(item: dict, kind: str, requests: q.ResourceList, limits: q.ResourceList) -> list[str]:
    found = []
    for field, check in (("min", _min), ("max", _max), ("maxLimitRequestRatio", _ratio)):
        for name, enforced in q.parse(item.get(field)).items():
            problem = check(kind, name, enforced, requests, limits)
            if problem:
                found.append(problem)
    return found


def _check_pod(lr: dict, pod: dict) -> list[str]:
    spec = pod.get("spec") or {}
    found: list[str] = []
    for item in (lr.get("spec") or {}).get("limits") or ():
        if item.get("type") == "Container":
            for c in [*(spec.get("containers") or ()), *(spec.get("initContainers") or ())]:
                resources = c.get("resources") or {}
                found += _bounds(item, "Container", q.parse(resources.get("requests")),
                                 q.parse(resources.get("limits")))
        elif item.get("type") == "Pod":
            found += _bounds(item, "Pod", q.pod_resources(pod, "requests", overhead=False),
                             q.pod_resources(pod, "limits", overhead=False))
    return found


def _check_claim(lr: dict, pvc: dict) -> list[str]:
    requests = q.parse(((pvc.get("spec") or {}).get("resources") or {}).get("requests"))
    found: list[str] = []
    for item in _items(lr, "PersistentVolumeClaim"):
        for name, enforced in q.parse(item.get("min")).items():
            problem = _min("PersistentVolumeClaim", name, enforced, requests, {})
            if problem:
                found.append(problem)
        for name, enforced in q.parse(item.get("max")).items():
            problem = _max_request("PersistentVolumeClaim", name, enforced, requests)
            if problem:
                found.append(problem)
    return found


def _aggregate(messages: list[str]) -> str:
    """utilerrors.NewAggregate's text: one message alone, several (each once) in brackets."""
    unique = list(dict.fromkeys(messages))
    return unique[0] if len(unique) == 1 else "[" + ", ".join(unique) + "]"
