"""The EndpointSlice controller: discovery.k8s.io/v1 EndpointSlices for every Service with a selector,
one endpoint per selected pod with ready/serving/terminating conditions, node name, zone and a
reference to the pod, at most 100 endpoints a slice, slices grouped by the ports their pods resolve.

`SliceReconciler` turns a desired set of endpoints into the fewest writes: endpoints that did not
change stay where they are, changed ones are rewritten in place, new ones fill the slices being
written before new slices are made, and a Service with no endpoints keeps one empty placeholder
slice, as upstream's reconciler does. The EndpointSlice mirroring controller reuses it.
"""
from __future__ import annotations

import copy
import json
import time
from dataclasses import dataclass, field

from ..api.errors import ApiError
from ..client.informer import Informer
from ..client.rest import Client
from . import podutil
from .base import Controller, InformerFactory, namespace_index, split_key
from .endpointutil import (NAMESPACE_INDEX, TRIGGER_TIME, TriggerTimeTracker, endpoint_labels, find_port, managed,
                           pod_ipv4, pod_signature, selected_pods, services_for_pod, should_be_endpoint,
                           should_set_hostname, target_ref)
from ..client.events import EventRecorder

SERVICE_NAME = "kubernetes.io/service-name"
MANAGED_BY = "endpointslice.kubernetes.io/managed-by"
CONTROLLER_NAME = "endpointslice-controller.k8s.io"
ZONE_LABEL = "topology.kubernetes.io/zone"
MAX_ENDPOINTS = 100
SLICE_INDEX = "service-slices"
# How long a write of ours may take to show in the cache before the cache is trusted again.
EXPECTATION_TIMEOUT = 10.0


def slice_index(obj: dict) -> list[str]:
    """managed-by|namespace/service of a managed slice."""
    labels = obj["metadata"].get("labels") or {}
    if SERVICE_NAME not in labels or MANAGED_BY not in labels:
        return []
    return [f"{labels[MANAGED_BY]}|{obj['metadata'].get('namespace', '')}/{labels[SERVICE_NAME]}"]


def ports_key(ports: list[dict] | None) -> str:
    return json.dumps(sorted((p.get("name") or "", p.get("port") or 0, p.get("protocol") or "TCP",
                              p.get("appProtocol") or "") for p in ports or ()))


def endpoint_key(ep: dict) -> str:
    ref = ep.get("targetRef") or {}
    return ref.get("uid") or ",".join(ep.get("addresses") or ())


def _clean(ep: dict) -> dict:
    return {k: v for k, v in ep.items() if v not in (None, "")}


@dataclass
class Group:
    """Desired endpoints of one address type and port set."""
    address_type: str
    ports: list[dict]
    endpoints: dict[str, dict] = field(default_factory=dict)


class SliceReconciler:
    """Writes a Service's slices of one manager towards the desired groups, tracking its own
    writes so a stale cache never makes it create a slice twice."""

    def __init__(self, client: Client, slices: Informer, managed_by: str):
        self.client = client
        self.slices = slices
        self.managed_by = managed_by
        self.rc = client.resource("discovery.k8s.io/v1", "EndpointSlice")
        self._written: dict[str, tuple[float, dict[str, int | None]]] = {}  # svc key -> (at, name -> rv|None)

    def existing(self, key: str) -> list[dict]:
        return self.slices.by_index(SLICE_INDEX, f"{self.managed_by}|{key}")

    def cache_current(self, key: str) -> bool:
        """Whether the cache shows every write made for this Service."""
        entry = self._written.get(key)
        if entry is None:
            return True
        at, written = entry
        ns, _ = split_key(key)
        for name, rv in written.items():
            cached = self.slices.get(f"{ns}/{name}")
            seen = cached is not None and int(cached["metadata"].get("resourceVersion") or 0) >= (rv or 0)
            if (rv is None and cached is not None) or (rv is not None and not seen):
                if time.monotonic() - at < EXPECTATION_TIMEOUT:
                    return False
        del self._written[key]
        return True

    def forget(self, key: str) -> None:
        self._written.pop(key, None)

    async def reconcile(self, key: str, svc: dict, groups: list[Group], labels: dict, annotations: dict,
                        placeholder: bool = True) -> None:
        ns, name = split_key(key)
        meta_labels = {**labels, SERVICE_NAME: name, MANAGED_BY: self.managed_by}
        owner = {"apiVersion": "v1", "kind": "Service", "name": name, "uid": svc["metadata"]["uid"],
                 "controller": True, "blockOwnerDeletion": True}
        existing: dict[tuple[str, str], list[dict]] = {}
        to_delete: list[dict] = []
        for s in self.existing(key):
            if not any(r.get("uid") == owner["uid"] for r in s["metadata"].get("ownerReferences") or ()):
                to_delete.append(s)  # a slice of an earlier Service of that name
            else:
                existing.setdefault((s.get("addressType", ""), ports_key(s.get("ports"))), []).append(s)
        to_update: list[dict] = []
        to_create: list[dict] = []
        for group in groups:
            if not group.endpoints:
                continue
            slices = existing.pop((group.address_type, ports_key(group.ports)), [])
            remaining = dict(group.endpoints)
            changed, unchanged = [], []
            for s in slices:
                kept, dirty = [], False
                for ep in s.get("endpoints") or ():
                    want = remaining.pop(endpoint_key(ep), None)
                    if want is None:
                        dirty = True
                    elif _clean(ep) != want:
                        kept.append(want)
                        dirty = True
                    else:
                        kept.append(ep)
                if dirty or self._meta_differs(s, meta_labels, owner):
                    changed.append((s, kept))
                else:
                    unchanged.append((s, kept))
            new_eps = list(remaining.values())
            # New endpoints go first into slices being written anyway, then into ones with room.
            for _s, kept in changed:
                while new_eps and len(kept) < MAX_ENDPOINTS:
                    kept.append(new_eps.pop(0))
            for s, kept in unchanged:
                if new_eps and len(kept) < MAX_ENDPOINTS:
                    while new_eps and len(kept) < MAX_ENDPOINTS:
                        kept.append(new_eps.pop(0))
                    changed.append((s, kept))
            for s, kept in changed:
                if kept:
                    to_update.append(self._slice(s, ns, name, group, kept, meta_labels, annotations, owner))
                else:
                    to_delete.append(s)
            while new_eps:
                chunk, new_eps = new_eps[:MAX_ENDPOINTS], new_eps[MAX_ENDPOINTS:]
                to_create.append(self._slice(None, ns, name, group, chunk, meta_labels, annotations, owner))
        leftovers = [s for slices in existing.values() for s in slices]
        if placeholder and not any(g.endpoints for g in groups):
            # No endpoints at all: the Service keeps (or gets) one empty placeholder slice.
            kept_slice = next((s for s in leftovers if not s.get("endpoints") and not s.get("ports")
                               and s.get("addressType") == "IPv4"), None)
            empty = Group("IPv4", [])
            if kept_slice is None:
                to_create.append(self._slice(None, ns, name, empty, [], meta_labels, annotations, owner))
            else:
                leftovers.remove(kept_slice)
                if self._meta_differs(kept_slice, meta_labels, owner):
                    to_update.append(self._slice(kept_slice, ns, name, empty, [], meta_labels, annotations, owner))
        to_delete.extend(leftovers)
        written: dict[str, int | None] = {}
        try:
            for obj in to_create:
                made = await self.rc.create(obj, ns)
                written[made["metadata"]["name"]] = int(made["metadata"]["resourceVersion"])
            for obj in to_update:
                made = await self.rc.update(obj)
                written[made["metadata"]["name"]] = int(made["metadata"]["resourceVersion"])
            for s in to_delete:
                try:
                    await self.rc.delete(s["metadata"]["name"], ns)
                except ApiError as e:
                    if e.code != 404:
                        raise
                written[s["metadata"]["name"]] = None
        finally:
            if written:
                self._written[key] = (time.monotonic(), written)

    @staticmethod
    def _meta_differs(s: dict, labels: dict, owner: dict) -> bool:
        return (s["metadata"].get("labels") or {}) != labels or \
            not any(r.get("uid") == owner["uid"] for r in s["metadata"].get("ownerReferences") or ())

    @staticmethod
    def _slice(current: dict | None, ns: str | None, name: str, group: Group, endpoints: list[dict],
               labels: dict, annotations: dict, owner: dict) -> dict:
        if current is not None:
            obj = copy.deepcopy(current)
        else:
            obj = {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                   "metadata": {"generateName": f"{name}-", "namespace": ns}, "addressType": group.address_type}
        meta = obj["metadata"]
        meta["labels"] = dict(labels)
        meta["ownerReferences"] = [owner]
        merged = {**(meta.get("annotations") or {}), **annotations}
        if TRIGGER_TIME not in annotations:
            merged.pop(TRIGGER_TIME, None)
        if merged:
            meta["annotations"] = merged
        else:
            meta.pop("annotations", None)
        obj["endpoints"] = endpoints
        if group.ports:
            obj["ports"] = group.ports
        else:
            obj.pop("ports", None)
        return obj


def slice_port(svc_port: dict, number: int) -> dict:
    port = {"name": svc_port.get("name") or "", "port": number, "protocol": svc_port.get("protocol") or "TCP"}
    if svc_port.get("appProtocol"):
        port["appProtocol"] = svc_port["appProtocol"]
    return port


class EndpointSliceController(Controller):
    name = "endpointslice"

    def __init__(self, client: Client, informers: InformerFactory, recorder: EventRecorder):
        super().__init__(client, informers, recorder)
        self.recorder = recorder.for_component("endpoint-slice-controller")  # the "From" of kubectl describe
        self.services = informers.informer("v1", "Service")
        self.pods = informers.informer("v1", "Pod")
        self.nodes = informers.informer("v1", "Node")
        self.slices = informers.informer("discovery.k8s.io/v1", "EndpointSlice")
        self.services.add_index(NAMESPACE_INDEX, namespace_index)
        self.pods.add_index(NAMESPACE_INDEX, namespace_index)
        self.slices.add_index(SLICE_INDEX, slice_index)
        self.reconciler = SliceReconciler(client, self.slices, CONTROLLER_NAME)
        self.tracker = TriggerTimeTracker()
        self.services.add_handlers(on_add=self.enqueue, on_update=lambda _o, new: self.enqueue(new),
                                   on_delete=self.enqueue)
        self.pods.add_handlers(on_add=self._pod_changed, on_update=self._pod_updated, on_delete=self._pod_changed)
        self.slices.add_handlers(on_update=lambda _o, new: self._slice_changed(new), on_delete=self._slice_changed)
        self.nodes.add_handlers(on_update=self._node_updated)

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

    def _slice_changed(self, s: dict) -> None:
        labels = s["metadata"].get("labels") or {}
        if labels.get(MANAGED_BY) == CONTROLLER_NAME and labels.get(SERVICE_NAME):
            self.enqueue(f"{s['metadata'].get('namespace')}/{labels[SERVICE_NAME]}")

    def _node_updated(self, old: dict, new: dict) -> None:
        if (old["metadata"].get("labels") or {}).get(ZONE_LABEL) != (new["metadata"].get("labels") or {}).get(ZONE_LABEL):
            for pod in self.pods.list():
                if (pod.get("spec") or {}).get("nodeName") == new["metadata"]["name"]:
                    self._pod_changed(pod)

    def endpoint(self, pod: dict, svc: dict) -> dict:
        publish = bool((svc.get("spec") or {}).get("publishNotReadyAddresses"))
        serving = publish or podutil.is_ready(pod)
        terminating = podutil.is_terminating(pod)
        ep: dict = {"addresses": [pod_ipv4(pod)],
                    "conditions": {"ready": publish or (serving and not terminating), "serving": serving,
                                   "terminating": terminating}}
        if should_set_hostname(pod, svc):
            ep["hostname"] = pod["spec"]["hostname"]
        ep["targetRef"] = target_ref(pod)
        node_name = (pod.get("spec") or {}).get("nodeName")
        if node_name:
            ep["nodeName"] = node_name
            node = self.nodes.get(node_name)
            zone = ((node or {}).get("metadata", {}).get("labels") or {}).get(ZONE_LABEL)
            if zone:
                ep["zone"] = zone
        return ep

    async def sync(self, key: str) -> float | None:
        svc = self.services.get(key)
        if svc is None:  # its slices go with it: they are owned by the Service
            self.tracker.forget(key)
            self.reconciler.forget(key)
            return None
        if not managed(svc):
            return None
        if not self.reconciler.cache_current(key):
            return 0.05
        pods = selected_pods(self.pods, svc)
        groups: dict[str, Group] = {}
        svc_ports = (svc.get("spec") or {}).get("ports") or []
        for pod in pods:
            if not should_be_endpoint(pod, include_terminating=True):
                continue
            ports = []
            for sp in svc_ports:
                number = find_port(pod, sp)
                if number is not None:
                    ports.append(slice_port(sp, number))
            group = groups.setdefault(ports_key(ports), Group("IPv4", ports))
            group.endpoints[pod["metadata"]["uid"]] = self.endpoint(pod, svc)
        trigger = self.tracker.compute(key, svc, pods)
        try:
            await self.reconciler.reconcile(key, svc, list(groups.values()), endpoint_labels(svc),
                                            {TRIGGER_TIME: trigger} if trigger else {})
        except ApiError as e:
            if e.code == 403 and "NamespaceTerminating" in str(e.details):
                return None  # the namespace is going away, and the Service with it
            if e.code == 409:
                raise  # the cache was behind: routine, tried again without an event
            self.recorder.event(svc, "Warning", "FailedToUpdateEndpointSlices",
                                f"Error updating Endpoint Slices for Service {key}: {e.message}")
            raise
        return None

