"""The disruption controller: keeps each PodDisruptionBudget's status current, as upstream's.

expectedPods is the number of selected pods for an integer minAvailable, otherwise the sum of the
scales of the controllers owning the selected pods (a Deployment through its ReplicaSets,
ReplicationControllers, StatefulSets, and anything with a scale subresource); pods without a
controller are left out of that sum, with an UnmanagedPods warning, so a percentage cannot count
them. currentHealthy counts Ready pods not being deleted and not recently evicted; an eviction
recorded in disruptedPods is forgotten once the pod is deleted or two minutes have passed.
disruptionsAllowed = currentHealthy - desiredHealthy (never below 0, and 0 while nothing is
expected), reported by the DisruptionAllowed condition. The eviction subresource reads it.
"""
from __future__ import annotations

import copy
import datetime
import math

from ..api import kinds
from ..api import labels as labelsel
from ..api.errors import ApiError
from ..client.rest import Client
from . import podutil
from .base import Controller, InformerFactory, namespace_index, split_key
from ..client.events import EventRecorder

DELETION_TIMEOUT = datetime.timedelta(minutes=2)
STALE_DISRUPTION_TIMEOUT = datetime.timedelta(minutes=2)
CONDITION = "DisruptionAllowed"
NAMESPACE_INDEX = "namespace"


class CountError(Exception):
    """The expected pod count cannot be worked out (upstream's getExpectedPodCount errors)."""


def scaled_value(value: int | str, total: int) -> int:
    """intstr.GetScaledValueFromIntOrPercent with rounding up."""
    if isinstance(value, int):
        return value
    if not isinstance(value, str) or not value.endswith("%"):
        raise CountError("invalid value for IntOrString: invalid type: string is not a percentage")
    try:
        percent = int(value[:-1])
    except ValueError:
        raise CountError(f'invalid value for IntOrString: invalid value "{value}": strconv.Atoi: parsing '
                         f'"{value[:-1]}": invalid syntax') from None
    return math.ceil(percent * total / 100)


def _group(api_version: str) -> str:
    return api_version.rpartition("/")[0]


def set_condition(conditions: list[dict], new: dict, now: str) -> None:
    """meta.SetStatusCondition: the transition time moves only when the status does."""
    for c in conditions:
        if c.get("type") == new["type"]:
            if c.get("status") != new["status"]:
                c["lastTransitionTime"] = now
            c.update({k: v for k, v in new.items() if k != "lastTransitionTime"})
            return
    conditions.append({**new, "lastTransitionTime": now})


def stale_disruption_wait(pod: dict) -> float | None:
    """Seconds until a pod's DisruptionTarget condition counts as stale (<= 0: now); None if it cannot."""
    if podutil.is_terminating(pod) or (pod.get("status") or {}).get("phase") in podutil.TERMINAL_PHASES:
        return None
    cond = podutil.condition(pod, "DisruptionTarget")
    if cond is None or cond.get("status") != "True" or cond.get("reason") == "TerminationByKubelet":
        return None
    since = podutil.parse_time(cond.get("lastTransitionTime")) or podutil.now()
    return (since + STALE_DISRUPTION_TIMEOUT - podutil.now()).total_seconds()


def conditions_up_to_date(pdb: dict) -> bool:
    status = pdb.get("status") or {}
    cond = next((c for c in status.get("conditions") or () if c.get("type") == CONDITION), None)
    if cond is None or status.get("observedGeneration") != pdb["metadata"].get("generation"):
        return False
    if status.get("disruptionsAllowed", 0) > 0:
        return cond.get("status") == "True" and cond.get("reason") == "SufficientPods"
    return cond.get("status") == "False" and cond.get("reason") == "InsufficientPods"


class DisruptionController(Controller):
    name = "disruption"

    def __init__(self, client: Client, informers: InformerFactory, recorder: EventRecorder):
        super().__init__(client, informers, recorder)
        self.recorder = recorder.for_component("controllermanager")  # the "From" of kubectl describe
        self.pdb_client = client.resource("policy/v1", "PodDisruptionBudget")
        self.pdbs = informers.informer("policy/v1", "PodDisruptionBudget")
        self.pods = informers.informer("v1", "Pod")
        self.owners = {kind: informers.informer(api_version, kind) for api_version, kind in (
            ("apps/v1", "ReplicaSet"), ("apps/v1", "Deployment"), ("apps/v1", "StatefulSet"),
            ("v1", "ReplicationController"))}
        self.pdbs.add_index(NAMESPACE_INDEX, namespace_index)
        self.pods.add_index(NAMESPACE_INDEX, namespace_index)
        self.pdbs.add_handlers(on_add=self.enqueue, on_update=lambda _o, new: self.enqueue(new),
                               on_delete=self.enqueue)
        self.pods.add_handlers(on_add=self._pod_changed, on_update=self._pod_updated, on_delete=self._pod_changed)
        for inf in self.owners.values():
            inf.add_handlers(on_update=self._scale_changed)

    def _pod_changed(self, pod: dict) -> None:
        wait = stale_disruption_wait(pod)
        if wait is not None:
            self.enqueue_after(("stale-disruption", f"{pod['metadata']['namespace']}/{pod['metadata']['name']}"), wait)
        pod_labels = pod["metadata"].get("labels") or {}
        for pdb in self.pdbs.by_index(NAMESPACE_INDEX, pod["metadata"].get("namespace", "")):
            if self._selects(pdb, pod_labels):
                self.enqueue(pdb)

    def _pod_updated(self, old: dict, new: dict) -> None:
        self._pod_changed(new)
        if old["metadata"].get("labels") != new["metadata"].get("labels"):
            self._pod_changed(old)

    def _scale_changed(self, old: dict, new: dict) -> None:
        if (old.get("spec") or {}).get("replicas") != (new.get("spec") or {}).get("replicas"):
            for pdb in self.pdbs.by_index(NAMESPACE_INDEX, new["metadata"].get("namespace", "")):
                self.enqueue(pdb)

    @staticmethod
    def _selects(pdb: dict, pod_labels: dict) -> bool:
        try:
            return labelsel.selector_from_label_selector((pdb.get("spec") or {}).get("selector")).matches(pod_labels)
        except labelsel.SelectorError:
            return False

    async def sync(self, key: str | tuple) -> float | None:
        if isinstance(key, tuple):
            return await self._clear_stale_disruption(key[1])
        pdb = self.pdbs.get(key)
        if pdb is None:
            return None
        ns, _ = split_key(key)
        pods = [p for p in self.pods.by_index(NAMESPACE_INDEX, ns or "")
                if self._selects(pdb, p["metadata"].get("labels") or {})]
        if not pods:
            self.recorder.event(pdb, "Normal", "NoPods", "No matching pods found")
        try:
            expected, desired, unmanaged = await self._expected_count(pdb, pods)
        except CountError as e:
            self.recorder.event(pdb, "Warning", "CalculateExpectedPodCountFailed",
                                f"Failed to calculate the number of expected pods: {e}")
            await self._fail_safe(pdb, str(e))
            return 5.0
        if unmanaged:
            self.recorder.event(pdb, "Warning", "UnmanagedPods",
                                f"Pods selected by this PodDisruptionBudget (selector: {_selector_text(pdb)}) were "
                                "found to be unmanaged. As a result, the status of the PDB cannot be calculated "
                                "correctly, which may result in undefined behavior. To account for these pods please "
                                'set ".spec.minAvailable" field of the PDB to an integer value.')
        now = podutil.now()
        disrupted, recheck = self._disrupted_pods(pdb, pods, now)
        healthy = 0
        for pod in pods:
            if podutil.is_terminating(pod) or pod["metadata"]["name"] in disrupted:
                continue
            if podutil.is_ready(pod):
                healthy += 1
        await self._update_status(pdb, healthy, desired, expected, disrupted)
        return recheck

    async def _clear_stale_disruption(self, key: str) -> float | None:
        """A DisruptionTarget condition on a pod that did not go within two minutes is reset to False."""
        pod = self.pods.get(key)
        if pod is None:
            return None
        wait = stale_disruption_wait(pod)
        if wait is None:
            return None
        if wait > 0:
            return wait
        new = copy.deepcopy(pod)
        now = podutil.rfc3339(podutil.now())
        new["status"]["conditions"] = [c if c.get("type") != "DisruptionTarget" else
                                       {"type": "DisruptionTarget", "status": "False", "lastProbeTime": None,
                                        "lastTransitionTime": now} for c in new["status"]["conditions"]]
        await self.client.resource("v1", "Pod").update_status(new)
        return None

    async def _expected_count(self, pdb: dict, pods: list[dict]) -> tuple[int, int, list[str]]:
        spec = pdb.get("spec") or {}
        expected, desired, unmanaged = 0, 0, []
        if spec.get("maxUnavailable") is not None:
            expected, unmanaged = await self._expected_scale(pods)
            desired = max(expected - scaled_value(spec["maxUnavailable"], expected), 0)
        elif spec.get("minAvailable") is not None:
            if isinstance(spec["minAvailable"], int):
                desired, expected = spec["minAvailable"], len(pods)
            else:
                expected, unmanaged = await self._expected_scale(pods)
                desired = scaled_value(spec["minAvailable"], expected)
        return expected, desired, unmanaged

    async def _expected_scale(self, pods: list[dict]) -> tuple[int, list[str]]:
        """The sum of the scales of the pods' controllers, and the pods that have none."""
        scales: dict[str, int] = {}
        unmanaged = []
        for pod in pods:
            ref = podutil.controller_ref(pod)
            if ref is None:
                unmanaged.append(pod["metadata"]["name"])
                continue
            if ref.get("uid") in scales:
                continue
            found = await self._controller_scale(ref, pod["metadata"]["namespace"])
            if found is None:
                raise CountError(f'found no controllers for pod "{pod["metadata"]["name"]}"')
            scales[found[0]] = found[1]
        return sum(scales.values()), unmanaged

    async def _controller_scale(self, ref: dict, ns: str) -> tuple[str, int] | None:
        """(uid, replicas) of the controller a pod's controller reference leads to, as upstream's finders."""
        group, kind, uid = _group(ref.get("apiVersion", "")), ref.get("kind"), ref.get("uid")
        if group == "apps" and kind == "ReplicaSet":
            rs = self.owners["ReplicaSet"].get(f"{ns}/{ref['name']}")
            if rs is not None and rs["metadata"].get("uid") == uid:
                owner = podutil.controller_ref(rs)
                if owner is not None and owner.get("kind") == "Deployment" and _group(owner.get("apiVersion", "")) == "apps":
                    dep = self.owners["Deployment"].get(f"{ns}/{owner['name']}")
                    if dep is not None and dep["metadata"].get("uid") == owner.get("uid"):
                        return dep["metadata"]["uid"], (dep.get("spec") or {}).get("replicas", 1)
                else:
                    return uid, (rs.get("spec") or {}).get("replicas", 1)
        for g, k in (("", "ReplicationController"), ("apps", "StatefulSet")):
            if group == g and kind == k:
                obj = self.owners[k].get(f"{ns}/{ref['name']}")
                if obj is not None and obj["metadata"].get("uid") == uid:
                    return uid, (obj.get("spec") or {}).get("replicas", 1)
        return await self._scale_subresource(ref, ns)

    async def _scale_subresource(self, ref: dict, ns: str) -> tuple[str, int] | None:
        api_version = ref.get("apiVersion", "")
        group, _, version = api_version.rpartition("/")
        res = kinds.by_kind(group, version, ref.get("kind", ""))
        if res is None:
            raise CountError(f'no matches for kind "{ref.get("kind")}" in version "{api_version}"')
        if "scale" not in res.subresources:
            raise CountError(f"{res.plural}{'.' + res.group if res.group else ''} does not implement the scale "
                             "subresource")
        rc = self.client.resource(res.api_version, res.kind, ns)
        try:
            scale = await self.client.request("GET", rc.path(ref["name"], subresource="scale"))
        except ApiError as e:
            if e.code == 404:
                return None
            raise
        if scale["metadata"].get("uid") != ref.get("uid"):
            return None
        return ref["uid"], (scale.get("spec") or {}).get("replicas", 0)

    def _disrupted_pods(self, pdb: dict, pods: list[dict], now: datetime.datetime) -> tuple[dict, float | None]:
        recorded = (pdb.get("status") or {}).get("disruptedPods") or {}
        kept: dict[str, str] = {}
        recheck: float | None = None
        for pod in pods:
            name = pod["metadata"]["name"]
            if podutil.is_terminating(pod) or name not in recorded:
                continue
            at = podutil.parse_time(recorded[name])
            if at is None:
                continue
            expires = at + DELETION_TIMEOUT
            if expires < now:
                self.recorder.event(pod, "Warning", "NotDeleted", f"Pod was expected by PDB {pdb['metadata']['namespace']}"
                                                                  f"/{pdb['metadata']['name']} to be deleted but it wasn't")
                continue
            kept[name] = recorded[name]
            wait = (expires - now).total_seconds()
            recheck = wait if recheck is None else min(recheck, wait)
        return kept, recheck

    async def _update_status(self, pdb: dict, healthy: int, desired: int, expected: int, disrupted: dict) -> None:
        allowed = healthy - desired
        if expected <= 0 or allowed <= 0:
            allowed = 0
        status = pdb.get("status") or {}
        generation = pdb["metadata"].get("generation")
        if (status.get("currentHealthy"), status.get("desiredHealthy"), status.get("expectedPods"),
                status.get("disruptionsAllowed"), status.get("disruptedPods") or {}, status.get("observedGeneration")) \
                == (healthy, desired, expected, allowed, disrupted, generation) and conditions_up_to_date(pdb):
            return
        new = copy.deepcopy(pdb)
        conditions = copy.deepcopy(status.get("conditions") or [])
        new["status"] = {"currentHealthy": healthy, "desiredHealthy": desired, "expectedPods": expected,
                         "disruptionsAllowed": allowed, "observedGeneration": generation}
        if disrupted:
            new["status"]["disruptedPods"] = disrupted
        reason, value = ("SufficientPods", "True") if allowed > 0 else ("InsufficientPods", "False")
        set_condition(conditions, {"type": CONDITION, "status": value, "reason": reason, "message": "",
                                   "observedGeneration": generation}, podutil.rfc3339(podutil.now()))
        new["status"]["conditions"] = conditions
        await self.pdb_client.update_status(new)

    async def _fail_safe(self, pdb: dict, message: str) -> None:
        """Allow no disruption when the budget cannot be computed (upstream's failSafe)."""
        old = pdb.get("status") or {}
        cond = next((c for c in old.get("conditions") or () if c.get("type") == CONDITION), {})
        if old.get("disruptionsAllowed", 0) == 0 and cond.get("reason") == "SyncFailed" and \
                cond.get("message") == message:
            return
        new = copy.deepcopy(pdb)
        status = new.setdefault("status", {})
        status["disruptionsAllowed"] = 0
        conditions = status.setdefault("conditions", [])
        set_condition(conditions, {"type": CONDITION, "status": "False", "reason": "SyncFailed", "message": message,
                                   "observedGeneration": status.get("observedGeneration", 0)},
                      podutil.rfc3339(podutil.now()))
        await self.pdb_client.update_status(new)


def _selector_text(pdb: dict) -> str:
    """A LabelSelector as Go's %v prints it (&LabelSelector{MatchLabels:map[k:v,],MatchExpressions:[]...})."""
    sel = (pdb.get("spec") or {}).get("selector") or {}
    labels = ",".join(f"{k}: {v}" for k, v in sorted((sel.get("matchLabels") or {}).items()))
    exprs = ",".join(f"LabelSelectorRequirement{{Key:{e.get('key')},Operator:{e.get('operator')},"
                     f"Values:[{' '.join(e.get('values') or [])}],}}" for e in sel.get("matchExpressions") or ())
    return f"&LabelSelector{{MatchLabels:map[string]string{{{labels + ',' if labels else ''}}},MatchExpressions:[]LabelSelectorRequirement{{{exprs}}},}}"
