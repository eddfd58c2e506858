"""The ResourceQuota admission plugin (upstream's plugin/pkg/admission/resourcequota): the last
validating step. A create (or an update that grows usage) is refused when it would take any quota
of its namespace over a hard limit, and is otherwise charged to those quotas' status.used before
it is stored.

Charges serialize through the quota objects: each one is a status write conditioned on the
resourceVersion the check read, so of concurrent writers only one wins a given quota version and
the others check again against the new usage (as upstream's quota evaluator does). Within one API
server, requests of a namespace take their turn (upstream queues them per namespace), so they do
not race each other at all. So ten concurrent pod creates under `pods: 3` admit exactly three.

Two deliberate differences from upstream, both to make quota exact from the moment it exists:
the hard limits are read from spec (upstream waits for the controller to copy them into status),
and usage a quota has not recorded yet is counted here from the stored objects, instead of
refusing with "status unknown" or letting the request through uncounted. The resourcequota
controller recomputes usage from the objects themselves and releases what deleted or finished
objects held.
"""
from __future__ import annotations

import asyncio
import weakref
from typing import TYPE_CHECKING

from ..api import errors, kinds
from ..api import quota as q

if TYPE_CHECKING:
    from .admission import Attributes
    from .registry import Registry

QUOTAS = kinds.lookup("", "v1", "resourcequotas")
RETRIES = 8
_locks: "weakref.WeakValueDictionary[str, asyncio.Lock]" = weakref.WeakValueDictionary()


async def validate(registry: "Registry", a: "Attributes") -> None:
    if a.subresource or not a.resource.namespaced or not a.namespace:
        return
    res = kinds.storage_resource(a.resource)
    evaluator = q.evaluator(res.group, res.plural)
    if not evaluator.handles(a.operation):
        return
    from .registry import ListOptions
    if not (await registry.list(QUOTAS, a.namespace, ListOptions()))[0]:
        return
    lock = _locks.get(a.namespace)
    if lock is None:
        lock = _locks[a.namespace] = asyncio.Lock()
    async with lock:  # one charge at a time per namespace in this server; others retry on 409
        await _charge(registry, evaluator, a)


async def _charge(registry: "Registry", evaluator: q.Evaluator, a: "Attributes") -> None:
    from .registry import ListOptions
    charged: set[str] = set()
    last: errors.ApiError | None = None
    for _attempt in range(RETRIES):
        quotas, _ = await registry.list(QUOTAS, a.namespace, ListOptions())
        quotas = [quota for quota in quotas if quota["metadata"]["name"] not in charged]
        writes = await _check(registry, evaluator, quotas, a)
        if a.dry_run or not writes or await _exists(registry, a):
            return
        last = None
        for quota, status in writes:
            try:
                await _write_status(registry, quota, status)
                charged.add(quota["metadata"]["name"])
            except errors.ApiError as e:
                if e.code == 404:  # the quota went away: nothing to charge
                    charged.add(quota["metadata"]["name"])
                elif e.code == 409:  # the controller, or another API server, wrote it meanwhile
                    last = e
                else:
                    raise
        if last is None:
            return
    raise last or errors.conflict("", "resourcequotas", "", errors.STALE_OBJECT)


async def _check(registry: "Registry", evaluator: q.Evaluator, quotas: list[dict], a: "Attributes"
                 ) -> list[tuple[dict, dict]]:
    """The new status of each quota the request is charged to; Forbidden if one would be exceeded."""
    pertinent = []
    for quota in quotas:
        if not evaluator.matches(quota, a.obj):
            continue
        hard = q.parse(quota["spec"].get("hard"))
        problem = evaluator.constraints(evaluator.matching_resources(hard), a.obj)
        if problem:
            raise a.forbidden(f"failed quota: {quota['metadata']['name']}: {problem}")
        pertinent.append((quota, hard))
    if not pertinent:
        return []
    delta = evaluator.usage(a.obj)
    negative = sorted(name for name, amount in delta.items() if amount.sign() < 0)
    if negative:
        raise a.forbidden(f"quota usage is negative for resource(s): {','.join(negative)}")
    if a.operation == "UPDATE" and a.old is not None:
        delta = q.subtract_non_negative(delta, evaluator.usage(a.old))
    delta = q.remove_zeros(delta)
    if not delta:
        return []
    writes = []
    for quota, hard in pertinent:
        status = quota.get("status") or {}
        used = q.parse(status.get("used"))
        unrecorded = [name for name in hard if name not in used]
        if unrecorded:
            used.update(await _count(registry, quota, unrecorded))
        requested = q.mask(delta, hard)
        new_used = q.add(used, requested)
        over = q.exceeded(q.mask(new_used, requested), hard)
        if over:
            raise a.forbidden(f"exceeded quota: {quota['metadata']['name']}, requested: "
                              f"{q.pretty(q.mask(requested, over))}, used: {q.pretty(q.mask(used, over))}, "
                              f"limited: {q.pretty(q.mask(hard, over))}")
        if requested or unrecorded:
            writes.append((quota, {"hard": dict(quota["spec"].get("hard") or {}),
                                   "used": q.to_json(q.mask(new_used, hard))}))
    return writes


async def _exists(registry: "Registry", a: "Attributes") -> bool:
    """A create of a name that is taken fails with AlreadyExists right after this step: checked as
    upstream does (so a full quota still answers Forbidden), but not charged."""
    return a.operation == "CREATE" and \
        await registry.get_or_none(a.resource, a.namespace, a.obj["metadata"].get("name", "")) is not None


async def _count(registry: "Registry", quota: dict, names: list[str]) -> q.ResourceList:
    """Usage of `names` counted from the stored objects of the quota's namespace."""
    from .registry import ListOptions
    used: q.ResourceList = {}
    for evaluator in q.evaluators_for(names):
        res = q.stored_resource(evaluator.group, evaluator.resource)
        if res is None:
            continue
        objects, _ = await registry.list(res, quota["metadata"]["namespace"], ListOptions())
        used.update(q.usage_of(quota, evaluator, evaluator.matching_resources(names), objects))
    return used


async def _write_status(registry: "Registry", quota: dict, status: dict) -> None:
    rv = quota["metadata"]["resourceVersion"]

    def transform(current: dict) -> dict:
        current["status"] = status
        current["metadata"]["resourceVersion"] = rv  # the precondition: the usage that was checked
        return current

    await registry.update(QUOTAS, quota["metadata"]["namespace"], quota["metadata"]["name"], transform,
                          subresource="status")
