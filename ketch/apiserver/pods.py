"""The Pod subresources that act rather than store: binding (the scheduler's write) and eviction
(a delete that respects PodDisruptionBudgets), with upstream's answers and messages."""
from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from ..api import errors, kinds, labels, names
from .registry import DeleteOptions, ListOptions, now_rfc3339

if TYPE_CHECKING:
    from .handlers import Context

PODS = kinds.lookup("", "v1", "pods")
PDBS = kinds.lookup("policy", "v1", "poddisruptionbudgets")
BINDING = kinds.by_kind("", "v1", "Binding")
# Eviction is only ever posted to pods/NAME/eviction; it has a schema but no collection of its own.
EVICTION = kinds.Resource("policy", "v1", "Eviction", "evictions", verbs=("create",),
                          storage_group="policy", storage_version="v1")
SUCCESS = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}


def set_condition(status: dict, cond_type: str, value: str, now: str, reason: str = "", message: str = "") -> bool:
    """Set a pod condition; the transition time moves only when the status changes. True if changed."""
    conds = status.setdefault("conditions", [])
    new = {"type": cond_type, "status": value, "lastProbeTime": None, "lastTransitionTime": now}
    if reason:
        new["reason"] = reason
    if message:
        new["message"] = message
    for i, c in enumerate(conds):
        if c.get("type") == cond_type:
            if c.get("status") == value and c.get("reason", "") == reason and c.get("message", "") == message:
                return False
            if c.get("status") == value:
                new["lastTransitionTime"] = c.get("lastTransitionTime", now)
            conds[i] = new
            return True
    conds.append(new)
    return True


async def bind(ctx: "Context") -> web.StreamResponse:
    """POST pods/NAME/binding or POST bindings: assign the pod to a node, once."""
    binding = await ctx.read_body(BINDING)
    name = ctx.info.name if ctx.info.subresource == "binding" else binding["metadata"].get("name", "")
    if ctx.info.subresource == "binding" and binding["metadata"].get("name", name) != name:
        raise errors.bad_request("name in URL does not match name in Binding object")
    target = binding.get("target") or {}
    problems = []
    if target.get("kind", "") not in ("", "Node"):
        problems.append(names.not_supported("target.kind", target.get("kind"), ["Node", "<empty>"]))
    if not target.get("name"):
        problems.append(names.required("target.name", ""))
    if problems:
        raise errors.invalid("", "Binding", name, problems)
    node = target["name"]
    now = now_rfc3339()

    def transform(pod: dict | None) -> dict:
        if pod is None:
            raise errors.not_found("", "pods", name)
        why = None
        if pod["metadata"].get("deletionTimestamp"):
            why = f"pod {name} is being deleted, cannot be assigned to a host"
        elif pod["spec"].get("nodeName"):
            why = f'pod {name} is already assigned to node "{pod["spec"]["nodeName"]}"'
        if why:
            raise errors.conflict("", "pods/binding", name, why)
        pod["spec"]["nodeName"] = node
        extra = binding["metadata"].get("annotations") or {}
        if extra:
            pod["metadata"].setdefault("annotations", {}).update(extra)
        set_condition(pod.setdefault("status", {}), "PodScheduled", "True", now)
        return pod

    await ctx.registry.update(PODS, ctx.info.namespace, name, transform, subresource="binding",
                              dry_run=ctx.dry_run, retry=True, trusted=True)
    return ctx.respond(SUCCESS, 201)


def _can_ignore_budget(pod: dict) -> bool:
    return pod.get("status", {}).get("phase") in ("Succeeded", "Failed", "Pending") or \
        bool(pod["metadata"].get("deletionTimestamp"))


def _too_many(message: str, cause: str, retry_after: int = 0) -> errors.ApiError:
    details: dict = {"causes": [{"reason": "DisruptionBudget", "message": cause}]}
    headers = {}
    if retry_after:
        details["retryAfterSeconds"] = retry_after
        headers["Retry-After"] = str(retry_after)
    return errors.ApiError(429, "TooManyRequests", message, details, headers=headers)


async def evict(ctx: "Context") -> web.StreamResponse:
    """POST pods/NAME/eviction: delete the pod unless that would break its PodDisruptionBudget."""
    eviction = await ctx.read_body(EVICTION)
    name, ns = ctx.info.name, ctx.info.namespace
    if eviction["metadata"].get("name", name) != name:
        raise errors.bad_request("name in URL does not match name in Eviction object")
    pod = await ctx.registry.get(PODS, ns, name)
    if not _can_ignore_budget(pod):
        # A conflict means the budget moved under us (another eviction): judge it again, as upstream retries.
        for attempt in range(5):
            try:
                await _check_budgets(ctx, ns, pod)
                break
            except errors.ApiError as e:
                if e.code != 409 or attempt == 4:
                    raise
    options = eviction.get("deleteOptions") or {}
    opts = DeleteOptions(grace_period_seconds=options.get("gracePeriodSeconds"),
                         precondition_uid=(options.get("preconditions") or {}).get("uid"),
                         precondition_rv=(options.get("preconditions") or {}).get("resourceVersion"),
                         dry_run=ctx.dry_run)
    if not ctx.dry_run:
        updated = await _mark_disruption_target(ctx, ns, name, opts)
        if opts.precondition_rv:
            opts.precondition_rv = updated["metadata"]["resourceVersion"]
    await ctx.registry.delete(PODS, ns, name, opts)
    return ctx.respond(SUCCESS, 201)


async def _mark_disruption_target(ctx: "Context", ns: str, name: str, opts: DeleteOptions) -> dict:
    """The DisruptionTarget condition an evicted pod carries while it terminates (upstream's
    PodDisruptionConditions), checked against the delete's preconditions first."""
    now = now_rfc3339()

    def transform(pod: dict | None) -> dict:
        if pod is None:
            raise errors.not_found("", "pods", name)
        meta = pod["metadata"]
        if opts.precondition_uid and opts.precondition_uid != meta.get("uid"):
            raise errors.conflict("", "pods", name, f"Precondition failed: UID in precondition: "
                                                    f"{opts.precondition_uid}, UID in object meta: {meta.get('uid')}")
        if opts.precondition_rv and opts.precondition_rv != meta.get("resourceVersion"):
            raise errors.conflict("", "pods", name, f"Precondition failed: ResourceVersion in precondition: "
                                                    f"{opts.precondition_rv}, ResourceVersion in object meta: "
                                                    f"{meta.get('resourceVersion')}")
        set_condition(pod.setdefault("status", {}), "DisruptionTarget", "True", now, "EvictionByEvictionAPI",
                      "Eviction API: evicting")
        meta.pop("resourceVersion", None)  # against what was just read; a race reads again
        return pod

    updated, _ = await ctx.registry.update(PODS, ns, name, transform, subresource="status", trusted=True,
                                           retry=True)
    return updated


async def _check_budgets(ctx: "Context", ns: str, pod: dict) -> None:
    pod_labels = pod["metadata"].get("labels") or {}
    budgets = []
    items, _ = await ctx.registry.list(PDBS, ns, ListOptions())
    for pdb in items:
        # policy/v1: an empty selector selects every pod of the namespace, a missing one none.
        try:
            selector = labels.selector_from_label_selector((pdb.get("spec") or {}).get("selector"))
        except labels.SelectorError:
            continue
        if selector.matches(pod_labels):
            budgets.append(pdb)
    if len(budgets) > 1:
        message = "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support."
        raise errors.ApiError(500, "InternalError", f"Internal error occurred: {message}", {"causes": [{"message": message}]})
    if budgets:
        await _take_disruption(ctx, budgets[0], pod)


def _is_ready(pod: dict) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or ())


async def _take_disruption(ctx: "Context", pdb: dict, pod: dict) -> None:
    status = pdb.get("status") or {}
    pdb_name, pod_name = pdb["metadata"]["name"], pod["metadata"]["name"]
    refused = "Cannot evict pod as it would violate the pod's disruption budget."
    if status.get("observedGeneration", 0) < pdb["metadata"].get("generation", 1):
        raise _too_many(refused, f"The disruption budget {pdb_name} is still being processed by the server.",
                        retry_after=10)
    if not _is_ready(pod):
        # An unhealthy pod does not count towards the budget: evicting it takes no disruption when
        # the budget is met anyway, or always under unhealthyPodEvictionPolicy AlwaysAllow.
        policy = (pdb.get("spec") or {}).get("unhealthyPodEvictionPolicy")
        if policy == "AlwaysAllow" or (status.get("currentHealthy", 0) >= status.get("desiredHealthy", 0) > 0):
            return
    allowed = status.get("disruptionsAllowed", 0)
    if allowed < 0:
        raise errors.forbidden("pdb disruptions allowed is negative")
    if allowed == 0:
        raise _too_many(refused, f"The disruption budget {pdb_name} needs {status.get('desiredHealthy', 0)} healthy "
                                 f"pods and has {status.get('currentHealthy', 0)} currently")
    if ctx.dry_run:
        return

    def transform(current: dict | None) -> dict:
        if current is None or current["metadata"]["resourceVersion"] != pdb["metadata"]["resourceVersion"]:
            raise errors.conflict("policy", "poddisruptionbudgets", pdb_name, errors.STALE_OBJECT)
        st = current.setdefault("status", {})
        st["disruptionsAllowed"] = st.get("disruptionsAllowed", 0) - 1
        st.setdefault("disruptedPods", {})[pod_name] = now_rfc3339()
        return current

    await ctx.registry.update(PDBS, pdb["metadata"]["namespace"], pdb_name, transform,
                              subresource="status", trusted=True)


