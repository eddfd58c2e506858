"""Default preemption (PostFilter): make room for a pod that fits nowhere by evicting pods of lower
priority from one node.

For every node where preemption could help (its filter failure was Unschedulable, not
UnschedulableAndUnresolvable), all lower-priority pods are taken off in a what-if copy; if the pod
then fits, as many of them as possible are put back, highest priority first, and the rest are the
victims. Of the nodes that work, the one whose most important victim has the lowest priority wins,
then the lowest sum of victim priorities, then the fewest victims (upstream's
pickOneNodeForPreemption, without PodDisruptionBudgets).
"""
from __future__ import annotations

from dataclasses import dataclass

from .cache import NodeInfo
from .plugins import CycleState, Failure, Framework, fit_error
from .podinfo import PodInfo

NO_VICTIMS = "No preemption victims found for incoming pod"
NOT_HELPFUL = "Preemption is not helpful for scheduling"
NEVER = "not eligible due to preemptionPolicy=Never."
TERMINATING = "not eligible due to a terminating pod on the nominated node."


@dataclass
class Outcome:
    node: str = ""
    victims: list[PodInfo] | None = None
    message: str = ""  # the PostFilter message when there is no node ("preemption: ...")


def _eligible(fw: Framework, p: PodInfo) -> str:
    if p.preemption_policy == "Never":
        return NEVER
    if p.nominated_node:
        node = fw.cache.nodes.get(p.nominated_node)
        if node is not None and any(o.terminating and o.priority < p.priority for o in node.pods.values()):
            return TERMINATING
    return ""


def _victims_on(fw: Framework, state: CycleState, p: PodInfo, node: NodeInfo) -> list[PodInfo] | Failure:
    lower = [o for o in node.pods.values() if o.priority < p.priority]
    if not lower:
        return Failure((NO_VICTIMS,), False)
    trial = node.clone()
    for o in lower:
        trial.remove_pod(o.key)
    failure = fw.filter(state, trial)
    if failure is not None:
        return failure
    victims = []
    for o in sorted(lower, key=lambda o: -o.priority):  # try to keep the most important ones
        trial.add_pod(o)
        if fw.filter(state, trial) is not None:
            trial.remove_pod(o.key)
            victims.append(o)
    return victims


def preempt(fw: Framework, state: CycleState, p: PodInfo, statuses: dict[str, Failure]) -> Outcome:
    why = _eligible(fw, p)
    if why:
        return Outcome(message=f"preemption: {why}")
    nodes = fw.cache.node_infos()
    results: dict[str, Failure] = {}
    best: tuple | None = None
    for node in nodes:
        status = statuses.get(node.name)
        if status is None or not status.resolvable:
            results[node.name] = Failure((NOT_HELPFUL,), False)
            continue
        found = _victims_on(fw, state, p, node)
        if isinstance(found, Failure):
            results[node.name] = found
            continue
        if not found:  # fits without evicting anyone (the cluster changed under us): nothing to do
            results[node.name] = Failure((NO_VICTIMS,), False)
            continue
        rank = (max(v.priority for v in found), sum(v.priority for v in found), len(found))
        if best is None or rank < best[0]:
            best = (rank, node.name, found)
    if best is None:
        return Outcome(message="preemption: " + fit_error(len(nodes), results))
    return Outcome(node=best[1], victims=best[2])
