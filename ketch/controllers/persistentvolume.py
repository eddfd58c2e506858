"""The PersistentVolume binder (upstream's persistentvolume-binder): claims and volumes bound to
each other, volumes provisioned for classes whose provisioner is built in (localpath.py), and
volumes reclaimed when their claim goes.

Binding, as upstream: a pending claim takes the smallest Available volume of its class (the legacy
`volume.beta.kubernetes.io/storage-class` annotation counts as its class; "" is no class) whose
access modes include the claim's, whose capacity covers the request, whose volumeMode matches and
whose labels match the claim's selector; a volume pre-bound to the claim (claimRef) or named by it
(spec.volumeName) is taken first. Binding writes, in order: the PV's claimRef, the PV's phase
Bound, the PVC's volumeName with the bind-completed annotation, the PVC's status (Bound, capacity,
access modes). Each step is a write with the cached resourceVersion, so a stale cache ends in a
conflict and a retry, never a double binding. Choosing a volume and writing its claimRef happen
under one lock, so two claims synced at once never pick the same volume; the rest runs in parallel.

Without a volume, a claim of a class is provisioned (the built-in provisioner, or an
ExternalProvisioning event naming the class's provisioner); a claim without a class waits with
FailedBinding. WaitForFirstConsumer classes wait until the scheduler selects a node
(volume.kubernetes.io/selected-node) or a pod using the claim is bound to one.

A volume whose claim is deleted is Released; reclaim policy Delete removes a provisioned volume
(and its directory), Retain keeps it Released.
"""
from __future__ import annotations

import asyncio
import copy
import datetime
import logging

from ..api import storageclass
from ..api.errors import ApiError
from ..api.labels import selector_from_label_selector
from ..api.quantity import parse_quantity
from ..client.rest import Client
from . import localpath
from .base import Controller, InformerFactory
from ..client.events import NORMAL, WARNING, EventRecorder

log = logging.getLogger("ketch.controllers.persistentvolume")

BIND_COMPLETED = "pv.kubernetes.io/bind-completed"
BOUND_BY_CONTROLLER = "pv.kubernetes.io/bound-by-controller"
PROVISIONED_BY = "pv.kubernetes.io/provisioned-by"
STORAGE_PROVISIONER = ("volume.kubernetes.io/storage-provisioner", "volume.beta.kubernetes.io/storage-provisioner")
SELECTED_NODE = localpath.SELECTED_NODE_ANNOTATION
CLAIM_INDEX = "claims"
RESYNC = 15.0  # upstream's claim and volume sync period: pending claims look again this often


def _ann(obj: dict) -> dict:
    return obj.get("metadata", {}).get("annotations") or {}


def _rv(obj: dict | None) -> int:
    try:
        return int((obj or {}).get("metadata", {}).get("resourceVersion") or 0)
    except ValueError:
        return 0


def pod_claims(pod: dict) -> list[str]:
    """The claims a pod uses, as namespace/name keys (an ephemeral volume's claim is `<pod>-<volume>`)."""
    meta = pod["metadata"]
    ns, out = meta.get("namespace", ""), []
    for v in (pod.get("spec") or {}).get("volumes") or ():
        if (v.get("persistentVolumeClaim") or {}).get("claimName"):
            out.append(f"{ns}/{v['persistentVolumeClaim']['claimName']}")
        elif v.get("ephemeral") is not None:
            out.append(f"{ns}/{meta['name']}-{v['name']}")
    return out


def _storage(obj_resources: dict | None) -> object:
    value = (obj_resources or {}).get("storage")
    return parse_quantity(value) if value is not None else None


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def bound_to(volume: dict, claim: dict) -> bool:
    """The volume's claimRef names this claim (and, when it has a uid, this very claim)."""
    ref = (volume.get("spec") or {}).get("claimRef")
    meta = claim["metadata"]
    if not ref or ref.get("name") != meta["name"] or ref.get("namespace") != meta.get("namespace"):
        return False
    return not ref.get("uid") or ref["uid"] == meta["uid"]


def mismatch(volume: dict, claim: dict) -> str:
    """Why `volume` cannot serve `claim` ("" when it can): upstream's checkVolumeSatisfyClaim."""
    vspec, cspec = volume.get("spec") or {}, claim.get("spec") or {}
    requested = _storage((cspec.get("resources") or {}).get("requests"))
    capacity = _storage(vspec.get("capacity"))
    if requested is not None and (capacity is None or capacity < requested):
        return "requested PV is too small"
    if storageclass.volume_class(volume) != storageclass.claim_class(claim):
        return "storageClassName does not match"
    if (vspec.get("volumeMode") or "Filesystem") != (cspec.get("volumeMode") or "Filesystem"):
        return "incompatible volumeMode"
    if not set(cspec.get("accessModes") or ()) <= set(vspec.get("accessModes") or ()):
        return "incompatible accessMode"
    return ""


class PersistentVolumeController(Controller):
    name = "persistentvolume-binder"
    component = "persistentvolume-controller"  # kubectl describe's "From", as upstream
    workers = 4  # choosing a volume is serialized (self._choosing); provisioning and writes are not

    def __init__(self, client: Client, informers: InformerFactory, recorder: EventRecorder):
        super().__init__(client, informers, recorder)
        self.pvs = client.resource("v1", "PersistentVolume")
        self.pvcs = client.resource("v1", "PersistentVolumeClaim")
        self.volumes = informers.informer("v1", "PersistentVolume")
        self.claims = informers.informer("v1", "PersistentVolumeClaim")
        self.classes = informers.informer("storage.k8s.io/v1", "StorageClass")
        self.pods = informers.informer("v1", "Pod")
        self.pods.add_index(CLAIM_INDEX, pod_claims)
        # What this controller wrote last, until the informers catch up (upstream keeps the same
        # cache): a sync right after a write must not act on the older cached copy.
        self._written: dict[str, dict] = {}
        self._choosing = asyncio.Lock()
        self.claims.add_handlers(on_add=self._claim_changed, on_update=lambda _o, n: self._claim_changed(n),
                                 on_delete=self._claim_deleted)
        self.volumes.add_handlers(on_add=self._volume_changed, on_update=lambda _o, n: self._volume_changed(n),
                                  on_delete=self._volume_changed)
        self.classes.add_handlers(on_add=lambda _c: self._pending_claims(),
                                  on_update=lambda _o, _n: self._pending_claims())
        self.pods.add_handlers(on_add=self._pod_changed, on_update=lambda _o, n: self._pod_changed(n))

    # ---- event handlers ------------------------------------------------------------------------

    def _claim_changed(self, claim: dict) -> None:
        self.enqueue("claim:" + f"{claim['metadata']['namespace']}/{claim['metadata']['name']}")

    def _claim_deleted(self, claim: dict) -> None:
        self._written.pop("claim:" + f"{claim['metadata']['namespace']}/{claim['metadata']['name']}", None)
        volume = (claim.get("spec") or {}).get("volumeName")
        if volume:
            self.enqueue("volume:" + volume)

    def _volume_changed(self, volume: dict) -> None:
        self.enqueue("volume:" + volume["metadata"]["name"])
        ref = (volume.get("spec") or {}).get("claimRef")
        if ref and ref.get("name"):
            self.enqueue(f"claim:{ref.get('namespace')}/{ref['name']}")
        elif not ref:
            self._pending_claims()  # a new Available volume may serve a waiting claim

    def _pending_claims(self) -> None:
        for claim in self.claims.list():
            if claim.get("status", {}).get("phase", "Pending") == "Pending":
                self._claim_changed(claim)

    def _pod_changed(self, pod: dict) -> None:
        if (pod.get("spec") or {}).get("nodeName"):
            for key in pod_claims(pod):
                self.enqueue("claim:" + key)

    # ---- cache with our own writes -------------------------------------------------------------

    def _latest(self, key: str, cached: dict | None) -> dict | None:
        mine = self._written.get(key)
        if mine is None:
            return cached
        if cached is None or _rv(cached) >= _rv(mine):
            self._written.pop(key, None)
            return cached
        return mine

    def _claim(self, key: str) -> dict | None:
        return self._latest("claim:" + key, self.claims.get(key))

    def _volume(self, name: str) -> dict | None:
        return self._latest("volume:" + name, self.volumes.get(name))

    def _remember(self, kind: str, obj: dict) -> dict:
        meta = obj["metadata"]
        key = f"{meta['namespace']}/{meta['name']}" if kind == "claim" else meta["name"]
        obj.setdefault("kind", "PersistentVolumeClaim" if kind == "claim" else "PersistentVolume")
        obj.setdefault("apiVersion", "v1")
        self._written[f"{kind}:{key}"] = obj
        return obj

    # ---- sync ----------------------------------------------------------------------------------

    async def sync(self, key: str) -> float | None:
        kind, _, rest = key.partition(":")
        if kind == "claim":
            claim = self._claim(rest)
            return await self.sync_claim(claim) if claim is not None else None
        volume = self._volume(rest)
        return await self.sync_volume(volume) if volume is not None else None

    async def sync_claim(self, claim: dict) -> float | None:
        if storageclass.class_unset(claim) and not (claim.get("spec") or {}).get("volumeName"):
            default = storageclass.default_class(self.classes.list())
            if default is not None:  # upstream's retroactive default StorageClass assignment
                claim = copy.deepcopy(claim)
                claim["spec"]["storageClassName"] = default
                self._remember("claim", await self.pvcs.update(claim))
                return None
        if BIND_COMPLETED not in _ann(claim):
            return await self._sync_unbound(claim)
        return await self._sync_bound(claim)

    async def _sync_unbound(self, claim: dict) -> float | None:
        wanted = (claim.get("spec") or {}).get("volumeName")
        if not wanted:
            cls_name = storageclass.claim_class(claim)
            sc = self.classes.get(cls_name) if cls_name else None
            delayed = bool(sc and sc.get("volumeBindingMode") == "WaitForFirstConsumer"
                           and SELECTED_NODE not in _ann(claim))
            if delayed:
                node = self._consumer_node(claim)
                if node:  # what the scheduler's volume binding does: record the consumer's node
                    claim = copy.deepcopy(claim)
                    claim["metadata"].setdefault("annotations", {})[SELECTED_NODE] = node
                    self._remember("claim", await self.pvcs.update(claim))
                    return None
            async with self._choosing:
                volume = self.find_best_match(claim)
                if volume is not None:
                    volume = await self._bind_volume(volume, claim)
            if volume is not None:
                await self.bind(volume, claim)
                return None
            if delayed:
                self.recorder.event(claim, NORMAL, "WaitForFirstConsumer",
                                    "waiting for first consumer to be created before binding")
                await self._claim_status(claim, "Pending", None)
                return None
            if cls_name:
                return await self.provision(claim, cls_name, sc)
            self.recorder.event(claim, NORMAL, "FailedBinding",
                                "no persistent volumes available for this claim and no storage class is set")
            await self._claim_status(claim, "Pending", None)
            return RESYNC
        volume = self._volume(wanted)
        if volume is None:
            await self._claim_status(claim, "Pending", None)
            return RESYNC
        ref = (volume.get("spec") or {}).get("claimRef")
        if ref is None:
            why = mismatch(volume, claim)
            if why:
                self.recorder.event(claim, WARNING, "FailedBinding", f'Cannot bind to requested volume "{wanted}": {why}')
                await self._claim_status(claim, "Pending", None)
                return RESYNC
            await self.bind(volume, claim)
        elif bound_to(volume, claim):
            await self.bind(volume, claim)
        else:
            await self._claim_status(claim, "Pending", None)  # the volume is someone else's; wait
            return RESYNC
        return None

    async def _sync_bound(self, claim: dict) -> float | None:
        name = (claim.get("spec") or {}).get("volumeName")
        if not name:
            await self._claim_lost(claim, "ClaimLost",
                                   "Bound claim has lost reference to PersistentVolume. Data on the volume is lost!")
            return None
        volume = self._volume(name)
        if volume is None:
            await self._claim_lost(claim, "ClaimLost", "Bound claim has lost its PersistentVolume. Data on the volume "
                                                       "is lost!")
            return None
        ref = (volume.get("spec") or {}).get("claimRef")
        if ref is None or ref.get("uid") == claim["metadata"]["uid"]:
            await self.bind(volume, claim)  # completes a half-done binding; writes nothing when done
            return None
        await self._claim_lost(claim, "ClaimMisbound", "Two claims are bound to the same volume, this one is bound "
                                                       "incorrectly")
        return None

    def _consumer_node(self, claim: dict) -> str:
        key = f"{claim['metadata']['namespace']}/{claim['metadata']['name']}"
        for pod in self.pods.by_index(CLAIM_INDEX, key):
            if (pod.get("spec") or {}).get("nodeName"):
                return pod["spec"]["nodeName"]
        return ""

    def find_best_match(self, claim: dict) -> dict | None:
        """The volume pre-bound to the claim, else the smallest Available volume that fits it."""
        spec = claim.get("spec") or {}
        selector = selector_from_label_selector(spec["selector"]) if spec.get("selector") else None
        best, best_size = None, None
        for cached in self.volumes.list():
            volume = self._volume(cached["metadata"]["name"]) or cached
            if volume["metadata"].get("deletionTimestamp"):
                continue
            why = mismatch(volume, claim)
            if why in ("requested PV is too small", "incompatible volumeMode"):
                continue
            if bound_to(volume, claim):
                return volume
            if (volume.get("spec") or {}).get("claimRef") or volume.get("status", {}).get("phase") != "Available":
                continue
            if why or (selector is not None and not selector.matches(volume["metadata"].get("labels"))):
                continue
            size = _storage(volume["spec"].get("capacity"))
            if best is None or size < best_size:
                best, best_size = volume, size
        return best

    # ---- binding -------------------------------------------------------------------------------

    async def _bind_volume(self, volume: dict, claim: dict) -> dict:
        """The first step of binding: the volume's claimRef names this claim (with its uid)."""
        meta = claim["metadata"]
        ref = (volume.get("spec") or {}).get("claimRef")
        if ref and ref.get("uid") == meta["uid"] and ref.get("name") == meta["name"] \
                and ref.get("namespace") == meta["namespace"]:
            return volume
        volume = copy.deepcopy(volume)
        if not ref:
            volume["metadata"].setdefault("annotations", {})[BOUND_BY_CONTROLLER] = "yes"
        volume["spec"]["claimRef"] = {"kind": "PersistentVolumeClaim", "namespace": meta["namespace"],
                                      "name": meta["name"], "uid": meta["uid"], "apiVersion": "v1",
                                      "resourceVersion": meta.get("resourceVersion")}
        return self._remember("volume", await self.pvs.update(volume))

    async def bind(self, volume: dict, claim: dict) -> None:
        vol_name = volume["metadata"]["name"]
        volume = await self._bind_volume(volume, claim)
        volume = await self._volume_phase(volume, "Bound")
        if (claim.get("spec") or {}).get("volumeName") != vol_name or BIND_COMPLETED not in _ann(claim):
            claim = copy.deepcopy(claim)
            ann = claim["metadata"].setdefault("annotations", {})
            if claim["spec"].get("volumeName") != vol_name:
                claim["spec"]["volumeName"] = vol_name
                ann[BOUND_BY_CONTROLLER] = "yes"
            ann[BIND_COMPLETED] = "yes"
            claim = self._remember("claim", await self.pvcs.update(claim))
        await self._claim_status(claim, "Bound", volume)

    async def _claim_status(self, claim: dict, phase: str, volume: dict | None) -> dict:
        status = claim.get("status") or {}
        want = {"phase": phase}
        if volume is not None:
            want["accessModes"] = list(volume["spec"].get("accessModes") or [])
            want["capacity"] = dict(volume["spec"].get("capacity") or {})
        if all(status.get(k) == v for k, v in want.items()) and \
                (volume is not None or not (status.get("accessModes") or status.get("capacity"))):
            return claim
        claim = copy.deepcopy(claim)
        new_status = claim.setdefault("status", {})
        new_status.update(want)
        if volume is None:
            new_status.pop("accessModes", None)
            new_status.pop("capacity", None)
        return self._remember("claim", await self.pvcs.update_status(claim))

    async def _claim_lost(self, claim: dict, reason: str, message: str) -> None:
        if claim.get("status", {}).get("phase") == "Lost":
            return
        await self._claim_status(claim, "Lost", None)
        self.recorder.event(claim, WARNING, reason, message)

    async def _volume_phase(self, volume: dict, phase: str, message: str = "") -> dict:
        status = volume.get("status") or {}
        if status.get("phase") == phase and (status.get("message") or "") == message:
            return volume
        volume = copy.deepcopy(volume)
        new_status = {"phase": phase, "lastPhaseTransitionTime": _now()}
        if message:
            new_status["message"] = message
        volume["status"] = new_status
        return self._remember("volume", await self.pvs.update_status(volume))

    # ---- provisioning --------------------------------------------------------------------------

    async def provision(self, claim: dict, cls_name: str, sc: dict | None) -> float | None:
        if sc is None:
            self.recorder.event(claim, WARNING, "ProvisioningFailed", f'storageclass.storage.k8s.io "{cls_name}" not '
                                                                      f"found")
            await self._claim_status(claim, "Pending", None)
            return RESYNC
        provisioner = sc.get("provisioner", "")
        if any(_ann(claim).get(a) != provisioner for a in STORAGE_PROVISIONER):
            claim = copy.deepcopy(claim)
            claim["metadata"].setdefault("annotations", {}).update({a: provisioner for a in STORAGE_PROVISIONER})
            self._remember("claim", await self.pvcs.update(claim))
            return None  # the update brings the claim back
        if not localpath.owns(provisioner):
            self.recorder.event(claim, NORMAL, "ExternalProvisioning",
                                f"Waiting for a volume to be created either by the external provisioner "
                                f"'{provisioner}' or manually by the system administrator. If volume creation is "
                                f"delayed, please verify that the provisioner is running and correctly registered.")
            await self._claim_status(claim, "Pending", None)
            return RESYNC
        if (claim.get("spec") or {}).get("selector"):
            self.recorder.event(claim, WARNING, "ProvisioningFailed",
                                f'Failed to provision volume with StorageClass "{cls_name}": claim Selector is not '
                                f"supported")
            await self._claim_status(claim, "Pending", None)
            return RESYNC
        pv_name = "pvc-" + claim["metadata"]["uid"]
        if self._volume(pv_name) is not None:
            return None  # provisioned already; the volume's events bind it
        try:
            pv = localpath.provision(claim, sc, pv_name, self.options.data_dir)
        except (localpath.ProvisioningError, OSError) as e:
            self.recorder.event(claim, WARNING, "ProvisioningFailed",
                                f'Failed to provision volume with StorageClass "{cls_name}": {e}')
            await self._claim_status(claim, "Pending", None)
            return RESYNC
        try:
            self._remember("volume", await self.pvs.create(pv))
        except ApiError as e:
            if e.code != 409:
                raise
            return None
        self.recorder.event(claim, NORMAL, "ProvisioningSucceeded",
                            f"Successfully provisioned volume {pv_name} using {provisioner}")
        self.enqueue("claim:" + f"{claim['metadata']['namespace']}/{claim['metadata']['name']}")
        return None

    # ---- volumes -------------------------------------------------------------------------------

    async def sync_volume(self, volume: dict) -> float | None:
        if volume["metadata"].get("deletionTimestamp"):
            return None  # going; pv-protection lets it go once it is not Bound
        ref = (volume.get("spec") or {}).get("claimRef")
        if not ref or not ref.get("uid"):
            await self._volume_phase(volume, "Available")  # unused, or pre-bound to a claim by name
            return None
        key = f"{ref.get('namespace')}/{ref.get('name')}"
        claim = self._claim(key)
        if claim is None:  # the claim may be newer than the cache: ask before releasing its volume
            try:
                claim = await self.pvcs.get(ref.get("name"), namespace=ref.get("namespace"))
            except ApiError as e:
                if e.code != 404:
                    raise
        if claim is not None and claim["metadata"]["uid"] != ref["uid"]:
            claim = None  # deleted, and another of the same name made since
        if claim is None:
            if volume.get("status", {}).get("phase") not in ("Released", "Failed"):
                volume = await self._volume_phase(volume, "Released")
            return await self.reclaim(volume)
        bound_name = (claim.get("spec") or {}).get("volumeName")
        if not bound_name:
            self.enqueue("claim:" + key)  # binding not finished: the claim's sync completes it
            return None
        if bound_name == volume["metadata"]["name"]:
            await self._volume_phase(volume, "Bound")
            return None
        # The claim is bound to another volume.
        if PROVISIONED_BY in _ann(volume) and volume["spec"].get("persistentVolumeReclaimPolicy") == "Delete":
            if volume.get("status", {}).get("phase") not in ("Released", "Failed"):
                volume = await self._volume_phase(volume, "Released")
            return await self.reclaim(volume)
        volume = copy.deepcopy(volume)
        if _ann(volume).get(BOUND_BY_CONTROLLER):
            volume["spec"].pop("claimRef", None)
            volume["metadata"]["annotations"].pop(BOUND_BY_CONTROLLER, None)
        else:
            volume["spec"]["claimRef"].pop("uid", None)  # the user pre-bound it: keep the name
        volume = self._remember("volume", await self.pvs.update(volume))
        await self._volume_phase(volume, "Available")
        return None

    async def reclaim(self, volume: dict) -> float | None:
        policy = (volume.get("spec") or {}).get("persistentVolumeReclaimPolicy", "Retain")
        name = volume["metadata"]["name"]
        if policy == "Retain":
            return None
        if policy == "Recycle":
            if volume.get("status", {}).get("phase") != "Failed":
                await self._volume_phase(volume, "Failed", "No recycler plugin found for the volume!")
                self.recorder.event(volume, WARNING, "VolumeFailedRecycle", "No recycler plugin found for the volume!")
            return None
        provisioner = _ann(volume).get(PROVISIONED_BY)
        if provisioner and not localpath.owns(provisioner):
            return None  # an external provisioner's volume: its deleter's job
        if not provisioner:
            message = f'error getting deleter volume plugin for volume "{name}": no deletable volume plugin matched'
            if volume.get("status", {}).get("phase") != "Failed":
                await self._volume_phase(volume, "Failed", message)
                self.recorder.event(volume, WARNING, "VolumeFailedDelete", message)
            return None
        try:
            localpath.delete(volume, self.options.data_dir)
        except (localpath.ProvisioningError, OSError) as e:
            self.recorder.event(volume, WARNING, "VolumeFailedDelete", str(e))
            await self._volume_phase(volume, "Failed", str(e))
            return None
        try:
            await self.pvs.delete(name)
        except ApiError as e:
            if e.code != 404:
                raise
        self._written.pop("volume:" + name, None)
        return None
