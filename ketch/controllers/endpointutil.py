"""What the Endpoints and EndpointSlice controllers share: which pods a Service selects, which of
them become endpoints, how a service port resolves against a pod, and the trigger-time tracker
behind the `endpoints.kubernetes.io/last-change-trigger-time` annotation (upstream's endpointutil)."""
from __future__ import annotations

import ipaddress

from ..api import labels as labelsel
from ..api.defaults import sidecars
from ..client.informer import Informer
from . import podutil

TRIGGER_TIME = "endpoints.kubernetes.io/last-change-trigger-time"
HEADLESS_LABEL = "service.kubernetes.io/headless"
NAMESPACE_INDEX = "namespace"


def selector(svc: dict) -> dict | None:
    """The Service's selector, None when it has none (its endpoints are then written by hand)."""
    return (svc.get("spec") or {}).get("selector") or None


def managed(svc: dict) -> bool:
    """Whether a controller computes this Service's endpoints from pods."""
    return selector(svc) is not None and (svc.get("spec") or {}).get("type") != "ExternalName"


def is_headless(svc: dict) -> bool:
    return (svc.get("spec") or {}).get("clusterIP") == "None"


def selected_pods(pods: Informer, svc: dict) -> list[dict]:
    sel = labelsel.selector_from_set(selector(svc))
    ns = svc["metadata"].get("namespace", "")
    return [p for p in pods.by_index(NAMESPACE_INDEX, ns) if sel.matches(p["metadata"].get("labels") or {})]


def services_for_pod(services: Informer, pod: dict) -> list[dict]:
    ns = pod["metadata"].get("namespace", "")
    pod_labels = pod["metadata"].get("labels") or {}
    return [s for s in services.by_index(NAMESPACE_INDEX, ns)
            if selector(s) is not None and labelsel.selector_from_set(selector(s)).matches(pod_labels)]


def pod_ipv4(pod: dict) -> str | None:
    status = pod.get("status") or {}
    ips = [i.get("ip") for i in status.get("podIPs") or ()] or [status.get("podIP")]
    for ip in ips:
        if ip and address_type(ip) == "IPv4":
            return ip
    return None


def address_type(ip: str) -> str | None:
    try:
        return "IPv4" if ipaddress.ip_address(ip).version == 4 else "IPv6"
    except ValueError:
        return None


def should_be_endpoint(pod: dict, include_terminating: bool) -> bool:
    """upstream's ShouldPodBeInEndpoints."""
    if not pod_ipv4(pod):
        return False
    if not include_terminating and podutil.is_terminating(pod):
        return False
    spec, phase = pod.get("spec") or {}, (pod.get("status") or {}).get("phase")
    if spec.get("restartPolicy") == "Never":
        return phase not in ("Failed", "Succeeded")
    if spec.get("restartPolicy") == "OnFailure":
        return phase != "Succeeded"
    return True


def should_set_hostname(pod: dict, svc: dict) -> bool:
    spec = pod.get("spec") or {}
    return bool(spec.get("hostname")) and spec.get("subdomain") == svc["metadata"]["name"] and \
        pod["metadata"].get("namespace") == svc["metadata"].get("namespace")


def find_port(pod: dict, svc_port: dict) -> int | None:
    """The pod's port for a service port: targetPort as a number, or the container port of that name
    and protocol (upstream's podutil.FindPort)."""
    target = svc_port.get("targetPort", svc_port.get("port"))
    if isinstance(target, int):
        return target
    if isinstance(target, str) and target.isdigit():
        return int(target)
    protocol = svc_port.get("protocol") or "TCP"
    spec = pod.get("spec") or {}
    for container in [*(spec.get("containers") or ()), *sidecars(spec)]:
        for port in container.get("ports") or ():
            if port.get("name") == target and (port.get("protocol") or "TCP") == protocol:
                return port.get("containerPort")
    return None


def target_ref(pod: dict) -> dict:
    meta = pod["metadata"]
    return {"kind": "Pod", "namespace": meta.get("namespace", ""), "name": meta["name"], "uid": meta["uid"]}


def endpoint_labels(svc: dict) -> dict:
    out = dict(svc["metadata"].get("labels") or {})
    if is_headless(svc):
        out[HEADLESS_LABEL] = ""
    else:
        out.pop(HEADLESS_LABEL, None)
    return out


def pod_signature(pod: dict) -> tuple:
    """What of a pod can change its endpoints; an update that keeps it needs no sync."""
    meta, spec, status = pod["metadata"], pod.get("spec") or {}, pod.get("status") or {}
    return (meta.get("deletionTimestamp"), podutil.is_ready(pod), status.get("podIP"), str(status.get("podIPs")),
            spec.get("nodeName"), spec.get("hostname"), spec.get("subdomain"), status.get("phase"),
            podutil.condition(pod, "Ready") and podutil.condition(pod, "Ready").get("lastTransitionTime"))


class TriggerTimeTracker:
    """The earliest change not yet written for each Service: a pod's Ready transition newer than the
    last sync saw, or the Service's creation for a Service not seen before (upstream's
    TriggerTimeTracker)."""

    def __init__(self) -> None:
        self._state: dict[str, tuple[str, dict[str, str]]] = {}

    def compute(self, key: str, svc: dict, pods: list[dict]) -> str | None:
        last_svc, last_pods = self._state.get(key, ("", {}))
        earliest: str | None = None
        seen: dict[str, str] = {}
        for pod in pods:
            cond = podutil.condition(pod, "Ready")
            t = podutil.parse_time(cond.get("lastTransitionTime")) if cond else None
            if t is None:
                continue
            stamp = podutil.rfc3339(t)
            seen[pod["metadata"]["name"]] = stamp
            if stamp > last_pods.get(pod["metadata"]["name"], "") and (earliest is None or stamp < earliest):
                earliest = stamp
        created = podutil.parse_time(svc["metadata"].get("creationTimestamp"))
        svc_stamp = podutil.rfc3339(created) if created else ""
        if svc_stamp > last_svc and (earliest is None or svc_stamp < earliest):
            earliest = svc_stamp
        self._state[key] = (svc_stamp, seen)
        return earliest

    def forget(self, key: str) -> None:
        self._state.pop(key, None)
