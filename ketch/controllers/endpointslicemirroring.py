"""The EndpointSlice mirroring controller: the Endpoints users write for a Service without a
selector are mirrored into EndpointSlices (managed by endpointslicemirroring-controller.k8s.io),
so slice readers see them too, as upstream's. Endpoints labelled skip-mirror (the apiserver's own
`kubernetes` Endpoints) and Services with a selector are left to others."""
from __future__ import annotations

from ..client.rest import Client
from .base import Controller, InformerFactory
from .endpointslice import (MANAGED_BY, SERVICE_NAME, SLICE_INDEX, Group, SliceReconciler, endpoint_key, ports_key,
                            slice_index)
from .endpointutil import TRIGGER_TIME, address_type, selector
from ..client.events import EventRecorder

CONTROLLER_NAME = "endpointslicemirroring-controller.k8s.io"
SKIP_MIRROR = "endpointslice.kubernetes.io/skip-mirror"
LEADER_ANNOTATION = "control-plane.alpha.kubernetes.io/leader"  # leader-election records, not endpoints
MAX_MIRRORED = 1000
NOT_MIRRORED_ANNOTATIONS = {TRIGGER_TIME, "kubectl.kubernetes.io/last-applied-configuration"}


def _endpoint(addr: dict, ready: bool) -> dict:
    ep: dict = {"addresses": [addr["ip"]], "conditions": {"ready": ready}}
    if addr.get("hostname"):
        ep["hostname"] = addr["hostname"]
    if addr.get("targetRef"):
        ep["targetRef"] = addr["targetRef"]
    if addr.get("nodeName"):
        ep["nodeName"] = addr["nodeName"]
    return ep


def desired_groups(endpoints: dict) -> list[Group]:
    groups: dict[tuple[str, str], Group] = {}
    count = 0
    for subset in endpoints.get("subsets") or ():
        ports = [{"name": p.get("name") or "", "port": p.get("port"), "protocol": p.get("protocol") or "TCP",
                  **({"appProtocol": p["appProtocol"]} if p.get("appProtocol") else {})}
                 for p in subset.get("ports") or ()]
        for field, ready in (("addresses", True), ("notReadyAddresses", False)):
            for addr in subset.get(field) or ():
                family = address_type(addr.get("ip", ""))
                if family is None or count >= MAX_MIRRORED:
                    continue
                group = groups.setdefault((family, ports_key(ports)), Group(family, ports))
                ep = _endpoint(addr, ready)
                group.endpoints.setdefault(endpoint_key(ep), ep)
                count += 1
    return list(groups.values())


class EndpointSliceMirroringController(Controller):
    name = "endpointslicemirroring"

    def __init__(self, client: Client, informers: InformerFactory, recorder: EventRecorder):
        super().__init__(client, informers, recorder)
        self.recorder = recorder.for_component("endpoint-slice-mirroring-controller")  # the "From" of kubectl describe
        self.services = informers.informer("v1", "Service")
        self.endpoints = informers.informer("v1", "Endpoints")
        self.slices = informers.informer("discovery.k8s.io/v1", "EndpointSlice")
        self.slices.add_index(SLICE_INDEX, slice_index)
        self.reconciler = SliceReconciler(client, self.slices, CONTROLLER_NAME)
        for inf in (self.services, self.endpoints):
            inf.add_handlers(on_add=self.enqueue, on_update=lambda _o, new: self.enqueue(new), on_delete=self.enqueue)
        self.slices.add_handlers(on_update=lambda _o, new: self._slice_changed(new), on_delete=self._slice_changed)

    def _slice_changed(self, s: dict) -> None:
        labels = s["metadata"].get("labels") or {}
        if labels.get(MANAGED_BY) == CONTROLLER_NAME and labels.get(SERVICE_NAME):
            self.enqueue(f"{s['metadata'].get('namespace')}/{labels[SERVICE_NAME]}")

    async def sync(self, key: str) -> float | None:
        svc = self.services.get(key)
        eps = self.endpoints.get(key)
        if svc is None:
            self.reconciler.forget(key)
            return None  # its mirrored slices are owned by it and go with it
        if not self.reconciler.cache_current(key):
            return 0.05
        mirror = eps is not None and selector(svc) is None and \
            (eps["metadata"].get("labels") or {}).get(SKIP_MIRROR) != "true" and \
            LEADER_ANNOTATION not in (eps["metadata"].get("annotations") or {})
        if not mirror:
            await self.reconciler.reconcile(key, svc, [], {}, {}, placeholder=False)  # mirrored earlier
            return None
        labels = {k: v for k, v in (eps["metadata"].get("labels") or {}).items()}
        annotations = {k: v for k, v in (eps["metadata"].get("annotations") or {}).items()
                       if k not in NOT_MIRRORED_ANNOTATIONS}
        await self.reconciler.reconcile(key, svc, desired_groups(eps), labels, annotations, placeholder=False)
        return None
