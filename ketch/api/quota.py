"""Resource quota accounting, as upstream's pkg/quota/v1: what an object uses of a quota's
resources, which quotas (and scopes) it falls under, and resource-list arithmetic.

Shared by the ResourceQuota admission step (apiserver/quota.py), which charges a request's usage,
and the resourcequota controller, which recomputes a quota's usage from the objects themselves.
Quantities are `Quantity` values; a resource list is a dict of them, keyed by resource name.
"""
from __future__ import annotations

import datetime
import functools
from typing import Iterable

from . import kinds
from .defaults import is_sidecar, pod_qos_class
from .quantity import Quantity, QuantityError, from_json
from .storageclass import claim_class
from .validation import is_native_resource

ResourceList = dict[str, Quantity]
ZERO = Quantity(0)
ONE = Quantity.from_int(1)
STORAGE_CLASS_SUFFIX = ".storageclass.storage.k8s.io/"


# ---- resource lists --------------------------------------------------------------------------

@functools.lru_cache(maxsize=4096)
def _quantity(value: str | int | float) -> Quantity | None:
    """Quantities are immutable and the same few strings recur across every pod: parse once."""
    try:
        return from_json(value)
    except (QuantityError, TypeError):
        return None  # validation refuses these; nothing to count


def parse(values: dict | None) -> ResourceList:
    out: ResourceList = {}
    for name, value in (values or {}).items():
        ok = isinstance(value, (str, int, float)) and not isinstance(value, bool)
        amount = _quantity(value) if ok else None
        if amount is not None:
            out[name] = amount
    return out


def to_json(rl: ResourceList) -> dict[str, str]:
    return {name: str(q) for name, q in sorted(rl.items())}


def add(a: ResourceList, b: ResourceList) -> ResourceList:
    out = dict(a)
    for name, q in b.items():
        out[name] = out[name] + q if name in out else q
    return out


def subtract_non_negative(a: ResourceList, b: ResourceList) -> ResourceList:
    out = {}
    for name, q in a.items():
        left = q - b[name] if name in b else q
        out[name] = left if left.sign() > 0 else ZERO
    return out


def mask(rl: ResourceList, names: Iterable[str]) -> ResourceList:
    keep = set(names)
    return {name: q for name, q in rl.items() if name in keep}


def remove_zeros(rl: ResourceList) -> ResourceList:
    return {name: q for name, q in rl.items() if not q.is_zero()}


def exceeded(usage: ResourceList, hard: ResourceList) -> list[str]:
    """The names whose usage is above the hard limit (quota.LessThanOrEqual's second result)."""
    return [name for name, q in usage.items() if name in hard and q > hard[name]]


def pretty(rl: ResourceList) -> str:
    return ",".join(f"{name}={rl[name]}" for name in sorted(rl))


def _max_into(target: ResourceList, other: ResourceList) -> None:
    for name, q in other.items():
        if name not in target or q > target[name]:
            target[name] = q


# ---- pods --------------------------------------------------------------------------------------

def _container_resources(container: dict, field: str) -> ResourceList:
    return parse(((container.get("resources") or {}).get(field)))


def pod_resources(pod: dict, field: str, *, overhead: bool = True) -> ResourceList:
    """A pod's effective requests or limits (resourcehelper.PodRequests / PodLimits): the sum over
    its containers and sidecars, raised to what any init container needs, with pod-level resources
    taking over what they name, plus the runtime overhead."""
    spec = pod.get("spec") or {}
    total: ResourceList = {}
    for c in spec.get("containers") or ():
        total = add(total, _container_resources(c, field))
    sidecars: ResourceList = {}
    init_max: ResourceList = {}
    for c in spec.get("initContainers") or ():
        own = _container_resources(c, field)
        if is_sidecar(c):
            total = add(total, own)
            sidecars = add(sidecars, own)
            _max_into(init_max, sidecars)
        else:
            _max_into(init_max, add(own, sidecars))
    _max_into(total, init_max)
    pod_level = parse(((spec.get("resources") or {}).get(field)))
    total.update(pod_level)
    if overhead and spec.get("overhead"):
        extra = parse(spec["overhead"])
        if field == "limits":
            extra = mask(extra, total)  # overhead only raises limits that are set
        total = add(total, extra)
    return total


def _compute_usage(requests: ResourceList, limits: ResourceList) -> ResourceList:
    """podComputeUsageHelper: requests and limits under their quota names."""
    out: ResourceList = {"pods": ONE}
    for name in ("cpu", "memory", "ephemeral-storage"):
        if name in requests:
            out[name] = requests[name]
            out["requests." + name] = requests[name]
        if name in limits:
            out["limits." + name] = limits[name]
    for name, q in requests.items():
        if name.startswith("hugepages-"):
            out[name] = q
            out["requests." + name] = q
        elif not is_native_resource(name):
            out["requests." + name] = q
    return out


def pod_counts(pod: dict, now: datetime.datetime | None = None) -> bool:
    """QuotaV1Pod: terminal pods, and pods stuck past their deletion grace, use no compute quota."""
    if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
        return False
    meta = pod.get("metadata") or {}
    deleted, grace = meta.get("deletionTimestamp"), meta.get("deletionGracePeriodSeconds")
    if deleted and grace is not None:
        try:
            at = datetime.datetime.fromisoformat(deleted.replace("Z", "+00:00"))
        except ValueError:
            return True
        now = now or datetime.datetime.now(datetime.timezone.utc)
        if now > at + datetime.timedelta(seconds=grace):
            return False
    return True


# ---- evaluators --------------------------------------------------------------------------------

class Evaluator:
    """Counts one resource (group, plural) for quota: objects of it, by default."""

    def __init__(self, group: str, resource: str, names: Iterable[str] = ()):
        self.group, self.resource = group, resource
        self.count_name = f"count/{resource}.{group}" if group else f"count/{resource}"
        self.names = frozenset({self.count_name, *names})

    def handles(self, operation: str) -> bool:
        return operation == "CREATE"

    def matching_resources(self, names: Iterable[str]) -> list[str]:
        return [n for n in names if n in self.names]

    def matches_scope(self, scope: str, operator: str, values: list[str], obj: dict) -> bool:
        return False  # only pods fall under scoped quotas

    def matches(self, quota: dict, obj: dict) -> bool:
        """The quota limits something of ours and every one of its scopes takes the object."""
        if not self.matching_resources(parse((quota.get("spec") or {}).get("hard"))):
            return False
        return all(self.matches_scope(s, op, vals, obj) for s, op, vals in scopes(quota))

    def constraints(self, required: list[str], obj: dict) -> str | None:
        return None

    def usage(self, obj: dict) -> ResourceList:
        return {name: ONE for name in self.names}


class PodEvaluator(Evaluator):
    COMPUTE = ("cpu", "memory", "ephemeral-storage", "requests.cpu", "requests.memory",
               "requests.ephemeral-storage", "limits.cpu", "limits.memory", "limits.ephemeral-storage")
    # Quota on these makes every container state them (a compatibility rule upstream keeps).
    MUST_SPECIFY = frozenset({"cpu", "memory", "requests.cpu", "requests.memory", "limits.cpu", "limits.memory"})

    def __init__(self) -> None:
        super().__init__("", "pods", ("pods", *self.COMPUTE))

    def matching_resources(self, names: Iterable[str]) -> list[str]:
        return [n for n in names if n in self.names or n.startswith(("hugepages-", "requests.hugepages-"))
                or (n.startswith("requests.") and not is_native_resource(n))]

    def matches_scope(self, scope: str, operator: str, values: list[str], pod: dict) -> bool:
        spec = pod.get("spec") or {}
        if scope in ("Terminating", "NotTerminating"):
            deadline = spec.get("activeDeadlineSeconds")
            terminating = isinstance(deadline, int) and deadline >= 0
            return terminating == (scope == "Terminating")
        if scope in ("BestEffort", "NotBestEffort"):
            return (pod_qos_class(pod) == "BestEffort") == (scope == "BestEffort")
        if scope == "PriorityClass":
            cls = spec.get("priorityClassName") or ""
            return {"Exists": bool(cls), "DoesNotExist": not cls, "In": cls in values,
                    "NotIn": cls not in values}.get(operator, False)
        if scope == "CrossNamespacePodAffinity":
            affinity = spec.get("affinity") or {}
            terms = [t for kind in ("podAffinity", "podAntiAffinity") for field in
                     ("requiredDuringSchedulingIgnoredDuringExecution",
                      "preferredDuringSchedulingIgnoredDuringExecution")
                     for t in (affinity.get(kind) or {}).get(field) or ()]
            terms = [t.get("podAffinityTerm", t) for t in terms]
            return any(t.get("namespaces") or t.get("namespaceSelector") is not None for t in terms)
        return False

    def constraints(self, required: list[str], pod: dict) -> str | None:
        needed = self.MUST_SPECIFY.intersection(required)
        if not needed:
            return None
        missing: dict[str, set[str]] = {}
        spec = pod.get("spec") or {}
        for c in [*(spec.get("containers") or ()), *(spec.get("initContainers") or ())]:
            have = _compute_usage(_container_resources(c, "requests"), _container_resources(c, "limits"))
            for name in needed - have.keys():
                missing.setdefault(name, set()).add(c.get("name", ""))
        if not missing:
            return None
        return "must specify " + "; ".join(f"{name} for: {','.join(sorted(missing[name]))}"
                                           for name in sorted(missing))

    def usage(self, pod: dict) -> ResourceList:
        out: ResourceList = {self.count_name: ONE}  # every stored pod, whatever its phase
        if pod_counts(pod):
            out.update(_compute_usage(pod_resources(pod, "requests"), pod_resources(pod, "limits")))
        return out


def service_usage_type(svc: dict) -> str:
    return (svc.get("spec") or {}).get("type") or "ClusterIP"


class ServiceEvaluator(Evaluator):
    def __init__(self) -> None:
        super().__init__("", "services", ("services", "services.loadbalancers", "services.nodeports"))

    def handles(self, operation: str) -> bool:
        return operation in ("CREATE", "UPDATE")

    def usage(self, svc: dict) -> ResourceList:
        spec = svc.get("spec") or {}
        ports = Quantity.from_int(len(spec.get("ports") or ()))
        kind = service_usage_type(svc)
        node_ports = ports if kind == "NodePort" or (
            kind == "LoadBalancer" and spec.get("allocateLoadBalancerNodePorts", True) is not False) else ZERO
        return {self.count_name: ONE, "services": ONE, "services.nodeports": node_ports,
                "services.loadbalancers": ONE if kind == "LoadBalancer" else ZERO}


def claim_storage(pvc: dict) -> Quantity | None:
    """The larger of what the claim asks for and what was allocated to it (a resize in flight)."""
    asked = parse(((pvc.get("spec") or {}).get("resources") or {}).get("requests")).get("storage")
    allocated = parse((pvc.get("status") or {}).get("allocatedResources")).get("storage")
    if asked is None or (allocated is not None and allocated > asked):
        return allocated
    return asked


class ClaimEvaluator(Evaluator):
    def __init__(self) -> None:
        super().__init__("", "persistentvolumeclaims", ("persistentvolumeclaims", "requests.storage"))

    def handles(self, operation: str) -> bool:
        return operation in ("CREATE", "UPDATE")

    def matching_resources(self, names: Iterable[str]) -> list[str]:
        return [n for n in names if n in self.names or (STORAGE_CLASS_SUFFIX in n and n.endswith(
            ("/persistentvolumeclaims", "/requests.storage")))]

    def usage(self, pvc: dict) -> ResourceList:
        out: ResourceList = {self.count_name: ONE, "persistentvolumeclaims": ONE}
        cls = claim_class(pvc)
        if cls:
            out[cls + STORAGE_CLASS_SUFFIX + "persistentvolumeclaims"] = ONE
        storage = claim_storage(pvc)
        if storage is not None:
            out["requests.storage"] = storage
            if cls:
                out[cls + STORAGE_CLASS_SUFFIX + "requests.storage"] = storage
        return out


# Object counts that also go by their pre-`count/` names.
LEGACY_COUNT_NAMES = {"configmaps": "configmaps", "resourcequotas": "resourcequotas",
                      "replicationcontrollers": "replicationcontrollers", "secrets": "secrets"}
_EVALUATORS: dict[tuple[str, str], Evaluator] = {
    ("", "pods"): PodEvaluator(), ("", "services"): ServiceEvaluator(),
    ("", "persistentvolumeclaims"): ClaimEvaluator(),
    **{("", r): Evaluator("", r, (alias,)) for r, alias in LEGACY_COUNT_NAMES.items()},
}


def evaluator(group: str, resource: str) -> Evaluator:
    key = (group, resource)
    if key not in _EVALUATORS:
        _EVALUATORS[key] = Evaluator(group, resource)
    return _EVALUATORS[key]


def evaluators_for(names: Iterable[str]) -> list[Evaluator]:
    """The evaluators that count any of the quota resource `names` (count/<resource>.<group> names
    bring their own)."""
    names = list(names)
    found = [e for e in _EVALUATORS.values() if e.matching_resources(names)]
    for name in names:
        if name.startswith("count/"):
            resource, _, group = name[len("count/"):].partition(".")
            e = evaluator(group, resource)
            if e not in found:
                found.append(e)
    return found


def scopes(quota: dict) -> list[tuple[str, str, list[str]]]:
    """(scope, operator, values) for spec.scopes and spec.scopeSelector together."""
    spec = quota.get("spec") or {}
    out = [(s, "Exists", []) for s in spec.get("scopes") or ()]
    for expr in (spec.get("scopeSelector") or {}).get("matchExpressions") or ():
        out.append((expr.get("scopeName", ""), expr.get("operator", ""), list(expr.get("values") or ())))
    return out


def usage_of(quota: dict, e: Evaluator, names: list[str], objects: Iterable[dict]) -> ResourceList:
    """What the objects of `e`'s resource in the quota's scope use of `names` (zeros included)."""
    total: ResourceList = {name: ZERO for name in names}
    quota_scopes = scopes(quota)
    for obj in objects:
        if all(e.matches_scope(s, op, vals, obj) for s, op, vals in quota_scopes):
            for name, amount in e.usage(obj).items():
                if name in total:
                    total[name] = total[name] + amount
    return total


def stored_resource(group: str, plural: str) -> kinds.Resource | None:
    """The served, namespaced resource in which objects of group/plural are stored, if any."""
    for res in kinds.RESOURCES:
        if res.group == group and res.plural == plural and res.group == res.storage_group \
                and res.version == res.storage_version and res.namespaced and res.stored:
            return res
    return None
