"""HorizontalPodAutoscaler controller: upstream's podautoscaler (horizontal.go, replica_calculator.go).

Every sync period (--horizontal-pod-autoscaler-sync-period, 15 s) each HPA reads its target's scale
subresource (Deployment, ReplicaSet, ReplicationController, StatefulSet, or anything with one), asks
metrics.k8s.io for the usage of the pods its selector picks, and computes

    desiredReplicas = ceil(readyPods * currentUtilization / targetUtilization)

for Resource metrics (cpu, memory; Utilization against the pods' requests, or AverageValue),
leaving the count alone within a 10% tolerance. Pods not yet ready, or without metrics, are
handled as upstream: ignored, then counted as using 0% on a scale-up and 100% on a scale-down when
that does not flip the direction. The largest proposal over all metrics wins, then is bounded by
min/max replicas and stabilised: without spec.behavior by the 5-minute downscale window and a
scale-up limit of max(2x, 4); with spec.behavior by its stabilization windows and policies.
Status (currentReplicas, desiredReplicas, currentMetrics, lastScaleTime) and the conditions
AbleToScale, ScalingActive and ScalingLimited carry upstream's reasons and messages; a rescale is a
SuccessfulRescale event ("New size: 4; reason: cpu resource utilization (percentage of request)
above target").

Resource and ContainerResource metrics are computed; Pods, Object and External metrics need a
custom or external metrics API, which ketch does not serve yet, and fail as they do on a cluster
without an adapter. Recommendations and scale events live in memory, as upstream's do, so a
restarted controller starts a fresh stabilization window.
"""
from __future__ import annotations

import copy
import logging
import math
import time

from ..api import durations, kinds, labels
from ..api.defaults import sidecars
from ..api.errors import ApiError
from ..api.quantity import DECIMAL_SI, Quantity, parse_quantity
from ..client.rest import Client
from .base import Controller, InformerFactory, namespace_index, split_key
from ..client.events import EventRecorder
from .podutil import condition, parse_time

log = logging.getLogger("ketch.controllers.podautoscaler")

TOLERANCE = 0.1
CPU_INITIALIZATION_PERIOD = 300.0
INITIAL_READINESS_DELAY = 30.0
SCALE_UP_LIMIT_FACTOR = 2.0
SCALE_UP_LIMIT_MINIMUM = 4
NAMESPACE_INDEX = "namespace"
HPA_API = "autoscaling/v2"


CONTAINER_REASON = "FailedGetContainerResourceMetric"
# Metric sources that need a custom or external metrics API, which ketch does not serve yet.
_UNSERVED = {"Pods": ("FailedGetPodsMetric", "pods", "custom.metrics.k8s.io"),
             "Object": ("FailedGetObjectMetric", "object", "custom.metrics.k8s.io"),
             "External": ("FailedGetExternalMetric", "external", "external.metrics.k8s.io")}


class MetricError(Exception):
    """A metric could not be computed; `reason` becomes the ScalingActive=False condition's reason."""

    def __init__(self, message: str, reason: str = "FailedGetResourceMetric"):
        super().__init__(message)
        self.reason = reason


# ---- conditions and status -----------------------------------------------------------------------

def set_condition(hpa: dict, ctype: str, status: str, reason: str, message: str) -> None:
    """Upstream's setCondition: the transition time moves only when the status changes."""
    conditions = hpa.setdefault("status", {}).setdefault("conditions", []) or []
    hpa["status"]["conditions"] = conditions
    existing = next((c for c in conditions if c.get("type") == ctype), None)
    if existing is None:
        existing = {"type": ctype}
        conditions.append(existing)
    if existing.get("status") != status:
        existing["lastTransitionTime"] = rfc3339_now()
    existing.update(status=status, reason=reason, message=message)


def rfc3339_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def set_status(hpa: dict, current: int, desired: int, metrics: list[dict], rescale: bool) -> None:
    old = hpa.get("status") or {}
    status: dict = {"currentReplicas": current, "desiredReplicas": desired}
    if old.get("lastScaleTime"):
        status["lastScaleTime"] = old["lastScaleTime"]
    if rescale:
        status["lastScaleTime"] = rfc3339_now()
    if metrics:
        status["currentMetrics"] = metrics
    if old.get("conditions"):
        status["conditions"] = old["conditions"]
    hpa["status"] = status


# ---- the replica calculator -----------------------------------------------------------------------

def scale_resource(ref: dict) -> kinds.Resource | None:
    """The served resource that scaleTargetRef names (RESTMapper: group and kind, preferred version
    first); the scale subresource is asked for next, as upstream does. The book's `apiVersion: v1, kind: Deployment` (which 1.7's HPA
    accepted, resolving the kind alone) finds the kind in the group that serves it today."""
    api_version, kind = ref.get("apiVersion", ""), ref.get("kind", "")
    group = api_version.split("/", 1)[0] if "/" in api_version else ""
    order = kinds.group_versions()
    candidates = [r for r in kinds.RESOURCES if r.kind == kind and r.stored]  # its /scale may still 404
    for wanted_group in (group, None):
        for g, versions in order.items():
            if wanted_group is not None and g != wanted_group:
                continue
            for v in versions:
                for r in candidates:
                    if r.group == g and r.version == v:
                        return r
        if group != "":  # only the legacy core spelling falls back to other groups
            return None
    return None


def group_pods(pods: list[dict], metrics: dict[str, tuple[int, float, float]], resource: str, now: float
               ) -> tuple[int, set[str], set[str], set[str]]:
    """groupPods: (ready count, unready, missing, ignored) pod names."""
    ready, unready, missing, ignored = 0, set(), set(), set()
    for pod in pods:
        name = pod["metadata"]["name"]
        phase = (pod.get("status") or {}).get("phase")
        if pod["metadata"].get("deletionTimestamp") or phase == "Failed":
            ignored.add(name)
            continue
        if phase == "Pending":
            unready.add(name)
            continue
        metric = metrics.get(name)
        if metric is None:
            missing.add(name)
            continue
        if resource == "cpu":
            _value, ts, window = metric
            cond = condition(pod, "Ready")
            start = parse_time((pod.get("status") or {}).get("startTime"))
            if cond is None or start is None:
                is_unready = True
            else:
                transition = parse_time(cond.get("lastTransitionTime"))
                transition_ts = transition.timestamp() if transition else 0.0
                if start.timestamp() + CPU_INITIALIZATION_PERIOD > now:
                    is_unready = cond.get("status") == "False" or ts < transition_ts + window
                else:
                    is_unready = cond.get("status") == "False" and \
                        start.timestamp() + INITIAL_READINESS_DELAY > transition_ts
            if is_unready:
                unready.add(name)
                continue
        ready += 1
    return ready, unready, missing, ignored


def pod_requests(pods: list[dict], resource: str, container: str = "") -> dict[str, int]:
    """calculatePodRequests: the pods' summed container requests, in milli-units."""
    out = {}
    for pod in pods:
        spec = pod.get("spec") or {}
        containers = list(spec.get("containers") or [])
        containers += sidecars(spec)
        total = 0
        for c in containers:
            if container and c.get("name") != container:
                continue
            request = ((c.get("resources") or {}).get("requests") or {}).get(resource)
            if request is None:
                raise MetricError(f"missing request for {resource} in container {c.get('name')} of Pod "
                                  f"{pod['metadata']['name']}")
            total += parse_quantity(request).milli_value()
        out[pod["metadata"]["name"]] = total
    return out


def utilization_ratio(metrics: dict[str, int], requests: dict[str, int], target: int) -> tuple[float, int, int]:
    """GetResourceUtilizationRatio: (ratio to target, utilization %, raw average milli-value)."""
    used = requested = entries = 0
    for name, value in metrics.items():
        if name in requests:
            used += value
            requested += requests[name]
            entries += 1
    if requested == 0:
        raise MetricError("no metrics returned matched known pods")
    utilization = int(used * 100 / requested)
    return utilization / target, utilization, used // entries


def resource_replicas(current: int, target_utilization: int, resource: str, pods: list[dict],
                      metrics: dict[str, tuple[int, float, float]], now: float, container: str = ""
                      ) -> tuple[int, int, int]:
    """GetResourceReplicas: (proposal, utilization %, raw average milli-value)."""
    if not pods:
        raise MetricError("no pods returned by selector while calculating replica count")
    ready, unready, missing, ignored = group_pods(pods, metrics, resource, now)
    values = {n: m[0] for n, m in metrics.items() if n not in ignored and n not in unready}
    if not values:
        raise MetricError("did not receive metrics for targeted pods (pods might be unready)")
    requests = pod_requests(pods, resource, container)
    ratio, utilization, raw = utilization_ratio(values, requests, target_utilization)
    scale_up_with_unready = bool(unready) and ratio > 1.0
    if not scale_up_with_unready and not missing:
        if abs(1.0 - ratio) <= TOLERANCE:
            return current, utilization, raw
        return math.ceil(ratio * ready), utilization, raw
    if missing:
        if ratio < 1.0:
            fallback = max(100, target_utilization)
            for name in missing:
                values[name] = requests[name] * fallback // 100
        elif ratio > 1.0:
            for name in missing:
                values[name] = 0
    if scale_up_with_unready:
        for name in unready:
            values[name] = 0
    new_ratio, _, _ = utilization_ratio(values, requests, target_utilization)
    return _adjusted(current, ratio, new_ratio, len(values)), utilization, raw


def _adjusted(current: int, ratio: float, new_ratio: float, count: int) -> int:
    """The second pass shared by both calculators: no change within tolerance or when the pods
    assumed for missing metrics would flip the direction of the scale."""
    if abs(1.0 - new_ratio) <= TOLERANCE or (ratio < 1.0 < new_ratio) or (ratio > 1.0 > new_ratio):
        return current
    proposal = math.ceil(new_ratio * count)
    if (new_ratio < 1.0 and proposal > current) or (new_ratio > 1.0 and proposal < current):
        return current
    return proposal


def raw_resource_replicas(current: int, target_milli: int, resource: str, pods: list[dict],
                          metrics: dict[str, tuple[int, float, float]], now: float) -> tuple[int, int]:
    """GetRawResourceReplicas (calcPlainMetricReplicas): (proposal, average usage milli-value)."""
    if not pods:
        raise MetricError("no pods returned by selector while calculating replica count")
    ready, unready, missing, ignored = group_pods(pods, metrics, resource, now)
    values = {n: m[0] for n, m in metrics.items() if n not in ignored and n not in unready}
    if not values:
        raise MetricError("did not receive metrics for targeted pods (pods might be unready)")
    usage = sum(values.values()) // len(values)
    ratio = (sum(values.values()) / len(values)) / target_milli
    scale_up_with_unready = bool(unready) and ratio > 1.0
    if not scale_up_with_unready and not missing:
        if abs(1.0 - ratio) <= TOLERANCE:
            return current, usage
        return math.ceil(ratio * ready), usage
    for name in missing:
        values[name] = target_milli if ratio < 1.0 else 0
    if scale_up_with_unready:
        for name in unready:
            values[name] = 0
    new_ratio = (sum(values.values()) / len(values)) / target_milli
    return _adjusted(current, ratio, new_ratio, len(values)), usage


def _resource_source(spec: dict) -> tuple[dict, str]:
    """The resource source of a Resource or ContainerResource metric spec, and its container."""
    kind = spec.get("type")
    if kind == "Resource" and spec.get("resource"):
        return spec["resource"], ""
    if kind == "ContainerResource" and spec.get("containerResource"):
        return spec["containerResource"], spec["containerResource"].get("container", "")
    if kind in _UNSERVED:
        reason, _, api = _UNSERVED[kind]
        metric = ((spec.get(kind[0].lower() + kind[1:]) or {}).get("metric") or {}).get("name", "")
        raise MetricError(f"unable to get metric {metric}: unable to fetch metrics from {api}: no such API is "
                          "served by this cluster", reason)
    raise MetricError(f'unknown metric source type "{kind}"', "InvalidMetricSourceType")


def _wrapped(spec: dict, e: MetricError) -> str:
    """computeReplicasForMetric's wording of a failed metric."""
    kind = spec.get("type")
    if kind == "Resource":
        return f"failed to get {(spec.get('resource') or {}).get('name', '')} resource metric value: {e}"
    if kind == "ContainerResource":
        return f"failed to get {(spec.get('containerResource') or {}).get('name', '')} container metric value: {e}"
    if kind in _UNSERVED:
        return f"failed to get {_UNSERVED[kind][1]} metric value: {e}"
    return str(e)


# ---- scaling rules -------------------------------------------------------------------------------

def _change_in_period(events: list[tuple[float, int]], period: float, now: float) -> int:
    return sum(change for at, change in events if at > now - period)


def scale_up_limit(current: int, up_events: list, down_events: list, rules: dict, now: float) -> int:
    """calculateScaleUpLimitWithScalingRules."""
    select = rules.get("selectPolicy") or "Max"
    if select == "Disabled":
        return current
    pick = min if select == "Min" else max
    result = None
    for policy in rules.get("policies") or ():
        period = policy.get("periodSeconds", 15)
        start = current - _change_in_period(up_events, period, now) + _change_in_period(down_events, period, now)
        if policy.get("type") == "Pods":
            proposed = start + policy.get("value", 0)
        else:
            proposed = math.ceil(start * (1 + policy.get("value", 0) / 100))
        result = proposed if result is None else pick(result, proposed)
    return current if result is None else result


def scale_down_limit(current: int, up_events: list, down_events: list, rules: dict, now: float) -> int:
    """calculateScaleDownLimitWithBehaviors."""
    select = rules.get("selectPolicy") or "Max"
    if select == "Disabled":
        return current
    pick = max if select == "Min" else min
    result = None
    for policy in rules.get("policies") or ():
        period = policy.get("periodSeconds", 15)
        start = current - _change_in_period(up_events, period, now) + _change_in_period(down_events, period, now)
        if policy.get("type") == "Pods":
            proposed = start - policy.get("value", 0)
        else:
            proposed = int(start * (1 - policy.get("value", 0) / 100))
        result = proposed if result is None else pick(result, proposed)
    return current if result is None else result


# ---- the controller ------------------------------------------------------------------------------

class HorizontalPodAutoscalerController(Controller):
    name = "horizontalpodautoscaling"

    def __init__(self, client: Client, informers: InformerFactory, recorder: EventRecorder):
        super().__init__(client, informers, recorder)
        self.recorder = EventRecorder(client, "horizontal-pod-autoscaler")
        self.hpa_api = client.resource(HPA_API, "HorizontalPodAutoscaler")
        self.hpas = informers.informer(HPA_API, "HorizontalPodAutoscaler")
        self.pods = informers.informer("v1", "Pod")
        self.pods.add_index(NAMESPACE_INDEX, namespace_index)
        self.hpas.add_handlers(on_add=self.enqueue, on_update=self._updated, on_delete=self._deleted)
        # key -> [(time, recommendation)] and key -> [(time, replica change)], as upstream keeps them.
        self.recommendations: dict[str, list[list]] = {}
        self.scale_up_events: dict[str, list[tuple[float, int]]] = {}
        self.scale_down_events: dict[str, list[tuple[float, int]]] = {}

    async def run(self) -> None:
        try:
            await super().run()
        finally:
            await self.recorder.close()

    def _updated(self, old: dict, new: dict) -> None:
        # Our own status writes come back as updates: only a changed spec is worth an early look.
        if old.get("spec") != new.get("spec"):
            self.enqueue(new)

    def _deleted(self, obj: dict) -> None:
        key = f"{obj['metadata'].get('namespace')}/{obj['metadata']['name']}"
        for book in (self.recommendations, self.scale_up_events, self.scale_down_events):
            book.pop(key, None)

    def event(self, hpa: dict, event_type: str, reason: str, message: str) -> None:
        self.recorder.event(hpa, event_type, reason, message)

    async def sync(self, key: str) -> float | None:
        cached = self.hpas.get(key)
        if cached is None:
            self._deleted({"metadata": dict(zip(("namespace", "name"), split_key(key)))})
            return None
        hpa = copy.deepcopy(cached)
        hpa["apiVersion"], hpa["kind"] = HPA_API, "HorizontalPodAutoscaler"
        await self.reconcile(key, hpa)
        return self.options.horizontal_pod_autoscaler_sync_period

    async def _update_status(self, hpa: dict, original: dict) -> None:
        if hpa.get("status") == original:
            return
        try:
            await self.hpa_api.update_status(hpa)
        except ApiError as e:
            if e.code != 404:
                raise

    async def reconcile(self, key: str, hpa: dict) -> None:
        original = copy.deepcopy(hpa.get("status") or {})
        spec = hpa["spec"]
        ref = spec.get("scaleTargetRef") or {}
        ns = hpa["metadata"]["namespace"]
        res = scale_resource(ref)
        scale = None
        error = ""
        if res is None:
            api_version = ref.get("apiVersion", "")
            group = api_version.split("/", 1)[0] if "/" in api_version else ""
            error = f'no matches for kind "{ref.get("kind", "")}" in group "{group}"'
        else:
            scale_path = self.client.resource(res.api_version, res.kind).path(ref.get("name", ""), ns, "scale")
            try:
                scale = await self.client.request("GET", scale_path)
            except ApiError as e:
                error = e.message
        if scale is None:
            self.event(hpa, "Warning", "FailedGetScale", error)
            set_condition(hpa, "AbleToScale", "False", "FailedGetScale",
                          f"the HPA controller was unable to get the target's current scale: {error}")
            await self._update_status(hpa, original)
            return
        set_condition(hpa, "AbleToScale", "True", "SucceededGetScale",
                      "the HPA controller was able to get the target's current scale")
        current = (scale.get("spec") or {}).get("replicas") or 0
        now = time.time()
        self.recommendations.setdefault(key, [[now, current]])
        min_replicas = spec.get("minReplicas", 1) if spec.get("minReplicas") is not None else 1
        max_replicas = spec.get("maxReplicas", 0)
        desired, reason, rescale, statuses = 0, "", True, []
        if current == 0 and min_replicas != 0:
            rescale = False
            set_condition(hpa, "ScalingActive", "False", "ScalingDisabled",
                          "scaling is disabled since the replica count of the target is zero")
        elif current > max_replicas:
            reason, desired = "Current number of replicas above Spec.MaxReplicas", max_replicas
        elif current < min_replicas:
            reason, desired = "Current number of replicas below Spec.MinReplicas", min_replicas
        else:
            proposal, metric_name, statuses, err = await self.replicas_for_metrics(hpa, scale, now)
            if proposal == -1:
                set_status(hpa, current, (hpa.get("status") or {}).get("desiredReplicas", 0), statuses, False)
                await self._update_status(hpa, original)
                self.event(hpa, "Warning", "FailedComputeMetricsReplicas", err)
                return
            if proposal > desired:
                desired = proposal
            if desired > current:
                reason = f"{metric_name} above target"
            elif desired < current:
                reason = "All metrics below target"
            if spec.get("behavior") is None:
                desired = self.normalize(hpa, key, current, desired, min_replicas, now)
            else:
                desired = self.normalize_with_behaviors(hpa, key, current, desired, min_replicas, now)
            rescale = desired != current
        if rescale:
            scale.setdefault("spec", {})["replicas"] = desired
            try:
                await self.client.request("PUT", scale_path, body=scale)
            except ApiError as e:
                self.event(hpa, "Warning", "FailedRescale", f"New size: {desired}; reason: {reason}; error: {e.message}")
                set_condition(hpa, "AbleToScale", "False", "FailedUpdateScale",
                              f"the HPA controller was unable to update the target scale: {e.message}")
                set_status(hpa, current, (hpa.get("status") or {}).get("desiredReplicas", 0), statuses, False)
                await self._update_status(hpa, original)
                return
            set_condition(hpa, "AbleToScale", "True", "SucceededRescale",
                          f"the HPA controller was able to update the target scale to {desired}")
            self.event(hpa, "Normal", "SuccessfulRescale", f"New size: {desired}; reason: {reason}")
            self._store_scale_event(hpa, key, current, desired, now)
            log.info("%s: scaled %s %s/%s from %d to %d (%s)", key, ref.get("kind"), ns, ref.get("name"), current,
                     desired, reason)
        else:
            desired = current
        set_status(hpa, current, desired, statuses, rescale)
        await self._update_status(hpa, original)

    # ---- metrics ---------------------------------------------------------------------------------

    async def replicas_for_metrics(self, hpa: dict, scale: dict, now: float) -> tuple[int, str, list[dict], str]:
        """computeReplicasForMetrics: (proposal or -1, metric name, statuses, error message)."""
        selector_text = (scale.get("status") or {}).get("selector") or ""
        specs = hpa["spec"].get("metrics") or []
        if not selector_text:
            self.event(hpa, "Warning", "SelectorRequired", "selector is required")
            set_condition(hpa, "ScalingActive", "False", "InvalidSelector",
                          "the HPA target's scale is missing a selector")
            return -1, "", [], "selector is required"
        try:
            selector = labels.parse_selector(selector_text)
        except labels.SelectorError as e:
            self.event(hpa, "Warning", "InvalidSelector", f"couldn't convert selector into a corresponding internal "
                                                          f"selector object: {e}")
            set_condition(hpa, "ScalingActive", "False", "InvalidSelector", "the HPA target's scale has an "
                          "invalid selector")
            return -1, "", [], str(e)
        ns = hpa["metadata"]["namespace"]
        pods = [p for p in self.pods.by_index(NAMESPACE_INDEX, ns) if selector.matches(p["metadata"].get("labels"))]
        spec_replicas = (scale.get("spec") or {}).get("replicas") or 0
        statuses: list[dict] = []
        replicas, metric, invalid, first_error, first_condition = 0, "", 0, "", ("", "")
        metrics_cache: dict | None = None
        for spec in specs:
            status: dict = {"type": ""}
            try:
                source, container = _resource_source(spec)
                if metrics_cache is None:
                    metrics_cache = await self._pod_metrics(ns, selector_text)
                proposal, name, status = self._resource_metric(source, container, spec_replicas, pods,
                                                               metrics_cache, now)
            except MetricError as e:
                statuses.append(status)
                message = _wrapped(spec, e)
                self.event(hpa, "Warning", e.reason, str(e))
                if invalid == 0:
                    first_error, first_condition = message, (e.reason, str(e))
                invalid += 1
                continue
            statuses.append(status)
            if replicas == 0 or proposal > replicas:
                replicas, metric = proposal, name
        if invalid >= len(specs) or (invalid and replicas < spec_replicas):
            set_condition(hpa, "ScalingActive", "False", first_condition[0],
                          f"the HPA was unable to compute the replica count: {first_condition[1]}")
            error = f"invalid metrics ({invalid} invalid out of {len(specs)}), first error is: {first_error}"
            return -1, "", statuses, error
        set_condition(hpa, "ScalingActive", "True", "ValidMetricFound",
                      f"the HPA was able to successfully calculate a replica count from {metric}")
        return replicas, metric, statuses, ""

    async def _pod_metrics(self, ns: str, selector: str) -> dict[str, dict]:
        """PodMetrics by pod name, from metrics.k8s.io (as upstream's resource metrics client)."""
        try:
            listed = await self.client.resource("metrics.k8s.io/v1beta1", "PodMetrics", ns).list(labelSelector=selector)
        except ApiError as e:
            raise MetricError(f"unable to fetch metrics from resource metrics API: {e.message}") from None
        items = listed.get("items") or []
        if not items:
            raise MetricError("no metrics returned from resource metrics API")
        return {m["metadata"]["name"]: m for m in items}

    def _resource_metric(self, source: dict, container: str, current: int, pods: list[dict],
                         pod_metrics: dict[str, dict], now: float) -> tuple[int, str, dict]:
        """A Resource metric, or a ContainerResource one when `container` is named."""
        resource = source.get("name", "")
        target = source.get("target") or {}
        metrics: dict[str, tuple[int, float, float]] = {}
        for name, m in pod_metrics.items():
            total, complete = 0, True
            containers = m.get("containers") or []
            if container:
                containers = [c for c in containers if c.get("name") == container]
                if not containers:
                    raise MetricError(f"failed to get {resource} utilization: unable to get metrics for resource "
                                      f"{resource}: container {container} not present in metrics for pod "
                                      f"{m['metadata'].get('namespace')}/{name}", CONTAINER_REASON)
            for c in containers:
                value = (c.get("usage") or {}).get(resource)
                if value is None:
                    complete = False
                    break
                total += parse_quantity(value).milli_value()
            if complete:
                ts = parse_time(m.get("timestamp"))
                metrics[name] = (total, ts.timestamp() if ts else now, _seconds(m.get("window", "0s")))
        if target.get("averageValue") is not None:
            target_milli = parse_quantity(target["averageValue"]).milli_value()
            try:
                proposal, usage = raw_resource_replicas(current, target_milli, resource, pods, metrics, now)
            except MetricError as e:
                raise MetricError(f"failed to get {resource} usage: {e}", e.reason) from None
            current_status = {"averageValue": Quantity.from_milli(usage, DECIMAL_SI).canonical()}
            name = f"{resource} resource"
        else:
            utilization_target = target.get("averageUtilization")
            if utilization_target is None:
                raise MetricError("invalid resource metric source: neither an average utilization target nor an "
                                  "average value (usage) target was set")
            try:
                proposal, utilization, raw = resource_replicas(current, utilization_target, resource, pods, metrics,
                                                               now, container)
            except MetricError as e:
                raise MetricError(f"failed to get {resource} utilization: {e}", e.reason) from None
            current_status = {"averageUtilization": utilization,
                              "averageValue": Quantity.from_milli(raw, DECIMAL_SI).canonical()}
            name = f"{resource} {'container ' if container else ''}resource utilization (percentage of request)"
        if container:
            return proposal, name, {"type": "ContainerResource", "containerResource": {
                "name": resource, "container": container, "current": current_status}}
        return proposal, name, {"type": "Resource", "resource": {"name": resource, "current": current_status}}

    # ---- normalisation ---------------------------------------------------------------------------

    def normalize(self, hpa: dict, key: str, current: int, desired: int, min_replicas: int, now: float) -> int:
        """normalizeDesiredReplicas: the downscale stabilization window and the default scale-up limit."""
        stabilized = desired
        recs = self.recommendations.setdefault(key, [])
        old_index = None
        for i, (at, rec) in enumerate(recs):
            if at < now - self.options.horizontal_pod_autoscaler_downscale_stabilization:
                old_index = i
            elif rec > stabilized:
                stabilized = rec
        if old_index is not None:
            recs[old_index] = [now, desired]
        else:
            recs.append([now, desired])
        if stabilized != desired:
            set_condition(hpa, "AbleToScale", "True", "ScaleDownStabilized",
                          "recent recommendations were higher than current one, applying the highest recent "
                          "recommendation")
        else:
            set_condition(hpa, "AbleToScale", "True", "ReadyForNewScale", "recommended size matches current size")
        max_replicas = hpa["spec"].get("maxReplicas", 0)
        limit = max(int(SCALE_UP_LIMIT_FACTOR * current), SCALE_UP_LIMIT_MINIMUM)
        if max_replicas > limit:
            allowed, cond, message = limit, "ScaleUpLimit", \
                "the desired replica count is increasing faster than the maximum scale rate"
        else:
            allowed, cond, message = max_replicas, "TooManyReplicas", \
                "the desired replica count is more than the maximum replica count"
        if stabilized < min_replicas:
            result, cond, message = min_replicas, "TooFewReplicas", \
                "the desired replica count is less than the minimum replica count"
        elif stabilized > allowed:
            result = allowed
        else:
            result, cond, message = stabilized, "DesiredWithinRange", "the desired count is within the acceptable range"
        set_condition(hpa, "ScalingLimited", "False" if result == stabilized else "True", cond, message)
        return result

    def normalize_with_behaviors(self, hpa: dict, key: str, current: int, desired: int, min_replicas: int,
                                 now: float) -> int:
        """normalizeDesiredReplicasWithBehaviors: stabilization windows, then the scaling policies."""
        behavior = hpa["spec"]["behavior"]
        up = behavior.get("scaleUp") or {}
        down = behavior.get("scaleDown") or {}
        up_window = up.get("stabilizationWindowSeconds") or 0
        down_window = down.get("stabilizationWindowSeconds")
        if down_window is None:
            down_window = self.options.horizontal_pod_autoscaler_downscale_stabilization
        up_rec = down_rec = desired
        recs = self.recommendations.setdefault(key, [])
        old_index = None
        for i, (at, rec) in enumerate(recs):
            if at > now - up_window:
                up_rec = min(rec, up_rec)
            if at > now - down_window:
                down_rec = max(rec, down_rec)
            if at < now - up_window and at < now - down_window:
                old_index = i
        stabilized = max(current, up_rec)
        stabilized = min(stabilized, down_rec)
        if old_index is not None:
            recs[old_index] = [now, desired]
        else:
            recs.append([now, desired])
        if stabilized != desired:
            if desired >= current:
                set_condition(hpa, "AbleToScale", "True", "ScaleUpStabilized", "recent recommendations were lower "
                              "than current one, applying the lowest recent recommendation")
            else:
                set_condition(hpa, "AbleToScale", "True", "ScaleDownStabilized", "recent recommendations were "
                              "higher than current one, applying the highest recent recommendation")
        else:
            set_condition(hpa, "AbleToScale", "True", "ReadyForNewScale", "recommended size matches current size")
        result, cond, message = self._behavior_rate(key, current, stabilized, min_replicas,
                                                    hpa["spec"].get("maxReplicas", 0), up, down, now)
        set_condition(hpa, "ScalingLimited", "False" if result == stabilized else "True", cond, message)
        return result

    def _behavior_rate(self, key: str, current: int, desired: int, min_replicas: int, max_replicas: int,
                       up: dict, down: dict, now: float) -> tuple[int, str, str]:
        """convertDesiredReplicasWithBehaviorRate."""
        ups, downs = self.scale_up_events.get(key, []), self.scale_down_events.get(key, [])
        if desired > current:
            limit = max(scale_up_limit(current, ups, downs, up, now), current)
            if max_replicas > limit:
                allowed, cond, message = limit, "ScaleUpLimit", \
                    "the desired replica count is increasing faster than the maximum scale rate"
            else:
                allowed, cond, message = max_replicas, "TooManyReplicas", \
                    "the desired replica count is more than the maximum replica count"
            if desired > allowed:
                return allowed, cond, message
        elif desired < current:
            limit = min(scale_down_limit(current, ups, downs, down, now), current)
            if min_replicas < limit:
                allowed, cond, message = limit, "ScaleDownLimit", \
                    "the desired replica count is decreasing faster than the maximum scale rate"
            else:
                allowed, cond, message = min_replicas, "TooFewReplicas", \
                    "the desired replica count is less than the minimum replica count"
            if desired < allowed:
                return allowed, cond, message
        return desired, "DesiredWithinRange", "the desired count is within the acceptable range"

    def _store_scale_event(self, hpa: dict, key: str, previous: int, new: int, now: float) -> None:
        """storeScaleEvent: only with spec.behavior; events older than the longest policy period go."""
        behavior = hpa["spec"].get("behavior")
        if behavior is None:
            return
        up, book, change = ("scaleUp", self.scale_up_events, new - previous) if new > previous else \
            ("scaleDown", self.scale_down_events, previous - new)
        longest = max((p.get("periodSeconds", 15) for p in (behavior.get(up) or {}).get("policies") or ()),
                      default=15)
        events = [e for e in book.get(key, []) if e[0] > now - longest]
        events.append((now, change))
        book[key] = events


def _seconds(duration: str) -> float:
    """A metrics.k8s.io window ("15.012s", "1m0.5s", "500ms") in seconds; 0 when unreadable."""
    try:
        return durations.parse(duration or "0")
    except ValueError:
        return 0.0
