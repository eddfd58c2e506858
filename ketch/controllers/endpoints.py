"""The Endpoints controller: one core/v1 Endpoints per Service with a selector, listing the selected
pods' IPs as ready or not-ready addresses with the ports their targetPorts resolve to, packed into
subsets as upstream's RepackSubsets does. Services without a selector keep the Endpoints their
users write; an Endpoints is deleted with its Service."""
from __future__ import annotations

import copy
import ipaddress
import logging

from ..api.errors import ApiError
from ..client.rest import Client
from . import podutil
from .base import Controller, InformerFactory, namespace_index, split_key
from .endpointutil import (NAMESPACE_INDEX, TRIGGER_TIME, TriggerTimeTracker, endpoint_labels, find_port,
                           is_headless, managed, pod_ipv4, pod_signature, selected_pods, services_for_pod,
                           should_be_endpoint, should_set_hostname, target_ref)
from ..client.events import EventRecorder

log = logging.getLogger("ketch.controllers.endpoints")
MAX_CAPACITY = 1000
OVER_CAPACITY = "endpoints.kubernetes.io/over-capacity"


def endpoint_address(pod: dict, svc: dict) -> dict:
    addr: dict = {"ip": pod_ipv4(pod)}
    if should_set_hostname(pod, svc):
        addr["hostname"] = pod["spec"]["hostname"]
    if (pod.get("spec") or {}).get("nodeName"):
        addr["nodeName"] = pod["spec"]["nodeName"]
    addr["targetRef"] = target_ref(pod)
    return addr


def endpoint_port(svc_port: dict, number: int) -> dict:
    port: dict = {"port": number, "protocol": svc_port.get("protocol") or "TCP"}
    if svc_port.get("name"):
        port["name"] = svc_port["name"]
    if svc_port.get("appProtocol"):
        port["appProtocol"] = svc_port["appProtocol"]
    return port


def _port_key(port: dict) -> tuple:
    return (port.get("name", ""), port.get("port", 0), port.get("protocol", "TCP"), port.get("appProtocol", ""))


def _addr_key(addr: dict) -> tuple:
    return (addr["ip"], (addr.get("targetRef") or {}).get("uid", ""))


def _addr_order(addr: dict) -> tuple:
    try:
        ip: object = int(ipaddress.ip_address(addr["ip"]))
    except ValueError:
        ip = 0
    return (ip, (addr.get("targetRef") or {}).get("uid", ""))


def repack(entries: list[tuple[dict, list[dict], bool]]) -> list[dict]:
    """Subsets from (address, ports, ready) entries: addresses offering the same ports share a
    subset; an address not ready on a port is not ready there (upstream's RepackSubsets)."""
    addresses: dict[tuple, dict] = {}
    by_port: dict[tuple, tuple[dict | None, dict[tuple, bool]]] = {}
    for addr, ports, ready in entries:
        key = _addr_key(addr)
        addresses.setdefault(key, addr)
        for port in ports or [None]:
            pk = _port_key(port) if port is not None else ()
            entry = by_port.setdefault(pk, (port, {}))
            if entry[1].get(key, True):
                entry[1][key] = ready
    groups: dict[frozenset, list[dict]] = {}
    for port, ready_by_addr in by_port.values():
        ports = groups.setdefault(frozenset(ready_by_addr.items()), [])
        if port is not None:
            ports.append(port)
    subsets = []
    for members, ports in groups.items():
        subset: dict = {}
        ready = sorted((addresses[k] for k, r in members if r), key=_addr_order)
        not_ready = sorted((addresses[k] for k, r in members if not r), key=_addr_order)
        if ready:
            subset["addresses"] = ready
        if not_ready:
            subset["notReadyAddresses"] = not_ready
        if ports:
            subset["ports"] = sorted(ports, key=_port_key)
        subsets.append(subset)
    subsets.sort(key=lambda s: (_addr_order((s.get("addresses") or s.get("notReadyAddresses"))[0]),
                                [_port_key(p) for p in s.get("ports", [])]))
    return subsets


def desired_subsets(svc: dict, pods: list[dict]) -> list[dict]:
    spec = svc.get("spec") or {}
    tolerate_unready = bool(spec.get("publishNotReadyAddresses"))
    entries = []
    for pod in pods:
        if not should_be_endpoint(pod, include_terminating=tolerate_unready):
            continue
        addr = endpoint_address(pod, svc)
        ready = tolerate_unready or podutil.is_ready(pod)
        svc_ports = spec.get("ports") or []
        if not svc_ports:
            if is_headless(svc):  # a headless service may have no ports
                entries.append((addr, [], ready))
            continue
        ports = []
        for sp in svc_ports:
            number = find_port(pod, sp)
            if number is not None:
                ports.append(endpoint_port(sp, number))
        if ports:
            entries.append((addr, ports, ready))
    return repack(entries)


def _truncate(subsets: list[dict]) -> bool:
    """Keep at most MAX_CAPACITY addresses, ready ones first. True if any were dropped."""
    total = sum(len(s.get("addresses", [])) + len(s.get("notReadyAddresses", [])) for s in subsets)
    if total <= MAX_CAPACITY:
        return False
    room = MAX_CAPACITY
    for field in ("addresses", "notReadyAddresses"):
        for s in subsets:
            if field in s:
                s[field] = s[field][:max(room, 0)]
                room -= len(s[field])
                if not s[field]:
                    del s[field]
    subsets[:] = [s for s in subsets if s.get("addresses") or s.get("notReadyAddresses")]
    return True


class EndpointsController(Controller):
    name = "endpoints"

    def __init__(self, client: Client, informers: InformerFactory, recorder: EventRecorder):
        super().__init__(client, informers, recorder)
        self.recorder = recorder.for_component("endpoint-controller")  # the "From" of kubectl describe
        self.endpoints = client.resource("v1", "Endpoints")
        self.services = informers.informer("v1", "Service")
        self.pods = informers.informer("v1", "Pod")
        self.endpoints_cache = informers.informer("v1", "Endpoints")
        self.services.add_index(NAMESPACE_INDEX, namespace_index)
        self.pods.add_index(NAMESPACE_INDEX, namespace_index)
        self.tracker = TriggerTimeTracker()
        self.services.add_handlers(on_add=self.enqueue, on_update=lambda _o, new: self.enqueue(new),
                                   on_delete=self.enqueue)
        self.pods.add_handlers(on_add=self._pod_changed, on_update=self._pod_updated, on_delete=self._pod_changed)
        self.endpoints_cache.add_handlers(on_delete=self.enqueue)

    def _pod_changed(self, pod: dict) -> None:
        for svc in services_for_pod(self.services, pod):
            self.enqueue(svc)

    def _pod_updated(self, old: dict, new: dict) -> None:
        labels_changed = old["metadata"].get("labels") != new["metadata"].get("labels")
        if not labels_changed and pod_signature(old) == pod_signature(new) and \
                [c.get("ports") for c in old["spec"].get("containers", [])] == \
                [c.get("ports") for c in new["spec"].get("containers", [])]:
            return
        self._pod_changed(new)
        if labels_changed:
            self._pod_changed(old)

    async def sync(self, key: str) -> float | None:
        ns, name = split_key(key)
        svc = self.services.get(key)
        if svc is None:
            self.tracker.forget(key)
            try:
                await self.endpoints.delete(name, ns)
            except ApiError as e:
                if e.code != 404:
                    raise
            return None
        if not managed(svc):
            return None
        pods = selected_pods(self.pods, svc)
        subsets = desired_subsets(svc, pods)
        truncated = _truncate(subsets)
        trigger = self.tracker.compute(key, svc, pods)
        labels = endpoint_labels(svc)
        current = self.endpoints_cache.get(key)
        if current is not None:
            annotations = current["metadata"].get("annotations") or {}
            if (current.get("subsets") or []) == subsets and (current["metadata"].get("labels") or {}) == labels \
                    and (annotations.get(OVER_CAPACITY) == "truncated") == truncated:
                return None
            new = copy.deepcopy(current)
        else:
            new = {"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": name, "namespace": ns}}
        meta = new["metadata"]
        meta["labels"] = labels
        annotations = meta.setdefault("annotations", {})
        if trigger:
            annotations[TRIGGER_TIME] = trigger
        else:
            annotations.pop(TRIGGER_TIME, None)
        if truncated:
            annotations[OVER_CAPACITY] = "truncated"
        else:
            annotations.pop(OVER_CAPACITY, None)
        if not annotations:
            del meta["annotations"]
        new["subsets"] = subsets
        try:
            if current is None:
                await self.endpoints.create(new, ns)
            else:
                await self.endpoints.update(new)
        except ApiError as e:
            if e.code == 403 and "NamespaceTerminating" in str(e.details):
                return None  # the namespace is going away, and the Service with it
            if e.code == 409:
                raise  # the cache was behind: routine, tried again without an event
            if current is None:
                self.recorder.event(new, "Warning", "FailedToCreateEndpoint",
                                    f"Failed to create endpoint for service {ns}/{name}: {e.message}")
            else:
                self.recorder.event(new, "Warning", "FailedToUpdateEndpoint",
                                    f"Failed to update endpoint {ns}/{name}: {e.message}")
            raise
        return None
