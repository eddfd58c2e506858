"""Storage object in-use protection, as upstream's pvc-protection and pv-protection controllers.

Every claim carries the `kubernetes.io/pvc-protection` finalizer and every volume
`kubernetes.io/pv-protection` (the StorageObjectInUseProtection admission step adds them; these
controllers add them to older objects). A claim being deleted keeps its finalizer, and stays
Terminating, while a pod that has not finished uses it; a volume being deleted keeps its own while
it is Bound. Then the finalizer goes and the deletion completes.
"""
from __future__ import annotations

import copy

from ..api.errors import ApiError
from ..client.rest import Client
from .base import Controller, InformerFactory, split_key
from ..client.events import EventRecorder
from .persistentvolume import CLAIM_INDEX, pod_claims
from .podutil import TERMINAL_PHASES

PVC_FINALIZER = "kubernetes.io/pvc-protection"
PV_FINALIZER = "kubernetes.io/pv-protection"


def _needs_work(obj: dict, finalizer: str) -> bool:
    meta = obj["metadata"]
    has = finalizer in (meta.get("finalizers") or ())
    return has if meta.get("deletionTimestamp") else not has


async def _set_finalizer(resource, obj: dict, finalizer: str, present: bool) -> None:
    obj = copy.deepcopy(obj)
    finalizers = [f for f in obj["metadata"].get("finalizers") or () if f != finalizer]
    if present:
        finalizers.append(finalizer)
    obj["metadata"]["finalizers"] = finalizers
    try:
        await resource.update(obj)
    except ApiError as e:
        if e.code != 404:
            raise


class PVCProtectionController(Controller):
    name = "pvc-protection"

    def __init__(self, client: Client, informers: InformerFactory, recorder: EventRecorder):
        super().__init__(client, informers, recorder)
        self.claims = informers.informer("v1", "PersistentVolumeClaim")
        self.pods = informers.informer("v1", "Pod")
        self.pods.add_index(CLAIM_INDEX, pod_claims)
        self.api = client.resource("v1", "PersistentVolumeClaim")
        self.pod_api = client.resource("v1", "Pod")
        self.claims.add_handlers(on_add=self._claim, on_update=lambda _o, n: self._claim(n))
        self.pods.add_handlers(on_update=lambda _o, n: self._pod(n), on_delete=self._pod)

    def _claim(self, claim: dict) -> None:
        if _needs_work(claim, PVC_FINALIZER):
            self.enqueue(claim)

    def _pod(self, pod: dict) -> None:
        for key in pod_claims(pod):
            claim = self.claims.get(key)
            if claim is not None and claim["metadata"].get("deletionTimestamp"):
                self.enqueue(key)

    @staticmethod
    def _uses(pod: dict, key: str) -> bool:
        return key in pod_claims(pod) and pod.get("status", {}).get("phase") not in TERMINAL_PHASES

    async def sync(self, key: str) -> float | None:
        claim = self.claims.get(key)
        if claim is None or not _needs_work(claim, PVC_FINALIZER):
            return None
        if not claim["metadata"].get("deletionTimestamp"):
            await _set_finalizer(self.api, claim, PVC_FINALIZER, True)
            return None
        if any(self._uses(p, key) for p in self.pods.by_index(CLAIM_INDEX, key)):
            return None  # a pod event brings the claim back
        # The cache may not have seen a pod created a moment ago: ask the API server before letting go.
        ns, _ = split_key(key)
        live = await self.pod_api.list(namespace=ns)
        if any(self._uses({**p, "metadata": {**p["metadata"], "namespace": ns}}, key) for p in live.get("items", [])):
            return 1.0
        await _set_finalizer(self.api, claim, PVC_FINALIZER, False)
        return None


class PVProtectionController(Controller):
    name = "pv-protection"

    def __init__(self, client: Client, informers: InformerFactory, recorder: EventRecorder):
        super().__init__(client, informers, recorder)
        self.volumes = informers.informer("v1", "PersistentVolume")
        self.api = client.resource("v1", "PersistentVolume")
        self.volumes.add_handlers(on_add=self._volume, on_update=lambda _o, n: self._volume(n))

    def _volume(self, volume: dict) -> None:
        if _needs_work(volume, PV_FINALIZER):
            self.enqueue(volume)

    async def sync(self, key: str) -> float | None:
        volume = self.volumes.get(key)
        if volume is None or not _needs_work(volume, PV_FINALIZER):
            return None
        if not volume["metadata"].get("deletionTimestamp"):
            await _set_finalizer(self.api, volume, PV_FINALIZER, True)
        elif volume.get("status", {}).get("phase") != "Bound":
            await _set_finalizer(self.api, volume, PV_FINALIZER, False)
        return None  # still Bound: the binder's phase change brings it back
