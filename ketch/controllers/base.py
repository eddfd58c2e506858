"""What every controller is made of: shared informers, a work queue of keys, workers calling
`sync(key)`, expectations that keep a controller from acting twice on what it has not yet seen,
and an event recorder.

A controller subclasses `Controller`, declares the informers it reads in `__init__` (through the
shared `InformerFactory`, so each kind is listed and watched once per process), enqueues keys from
their handlers and implements `sync(key)`. `sync` reads the caches, makes one step towards the
desired state and returns None when done, or a delay in seconds to look again (for time-driven
work such as minReadySeconds or back-off). An exception re-queues the key with rate-limited
back-off. Because `sync` starts from the caches every time, a controller is correct after a
restart at any moment.
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Hashable

import aiohttp

from ..api import kinds
from ..api.errors import ApiError
from ..client.background import cancel_until_done
from ..client.informer import SharedInformers, object_key
from ..client.rest import Client
from ..client.workqueue import ShutDown, WorkQueue
from ..client.events import EventRecorder
from .options import ControllerOptions

log = logging.getLogger("ketch.controllers")


class InformerFactory(SharedInformers):
    """The shared informers of a controller-manager process, and its controller options (every
    controller reads them as `self.options`)."""

    def __init__(self, client: Client, resync_period: float = 0.0, options: ControllerOptions | None = None):
        super().__init__(client, resync_period)
        self.options = options or ControllerOptions()


def namespace_index(obj: dict) -> list[str]:
    return [obj.get("metadata", {}).get("namespace", "")]


def owner_uid_index(obj: dict) -> list[str]:
    return [ref["uid"] for ref in obj.get("metadata", {}).get("ownerReferences") or () if ref.get("uid")]


class Expectations:
    """How many creations and deletions a controller key still expects to observe (upstream's
    ControllerExpectations). Until they are observed, or time out, the key's cache view is stale
    and the controller must not act on counts, or it would create or delete twice."""

    TTL = 300.0

    def __init__(self) -> None:
        self._pending: dict[str, list] = {}  # key -> [adds, deletes, set_at]
        self._deleting: dict[str, set[str]] = {}  # key -> keys of the objects whose deletion is expected

    def satisfied(self, key: str) -> bool:
        entry = self._pending.get(key)
        if entry is None:
            return True
        if (entry[0] <= 0 and entry[1] <= 0) or time.monotonic() - entry[2] > self.TTL:
            return True
        return False

    def expect(self, key: str, adds: int = 0, deletes: int = 0) -> None:
        self._pending[key] = [adds, deletes, time.monotonic()]
        self._deleting.pop(key, None)

    def expect_deletions(self, key: str, object_keys: list[str]) -> None:
        """Expect these objects' deletions (upstream's UIDTrackingControllerExpectations): each counts
        once, whether first seen as a deletionTimestamp or as the final delete."""
        self.expect(key, deletes=len(object_keys))
        self._deleting[key] = set(object_keys)

    def observed_add(self, key: str) -> None:
        entry = self._pending.get(key)
        if entry is not None:
            entry[0] -= 1

    def observed_delete(self, key: str, object_key: str | None = None) -> None:
        tracked = self._deleting.get(key)
        if tracked is not None and object_key is not None:
            if object_key not in tracked:
                return
            tracked.discard(object_key)
        entry = self._pending.get(key)
        if entry is not None:
            entry[1] -= 1

    def forget(self, key: str) -> None:
        self._pending.pop(key, None)
        self._deleting.pop(key, None)


class Controller:
    """A work queue of keys and workers that call `sync(key)`."""

    name = "controller"
    workers = 2
    # Events' source component, when it should be upstream's own (kubectl describe's "From", e.g.
    # "node-controller"); empty: the manager's shared recorder.
    component = ""

    def __init__(self, client: Client, informers: InformerFactory, recorder: EventRecorder):
        self.client = client
        self.informers = informers
        self.options = informers.options
        self.recorder = EventRecorder(client, self.component) if self.component else recorder
        self.queue = WorkQueue()
        self._batched_keys: set[Hashable] = set()

    # ---- queueing ------------------------------------------------------------------------------

    def enqueue(self, obj_or_key: dict | Hashable) -> None:
        self.queue.add(object_key(obj_or_key) if isinstance(obj_or_key, dict) else obj_or_key)

    def enqueue_after(self, key: Hashable, delay: float) -> None:
        self.queue.add_after(key, delay)

    def enqueue_batched(self, key: Hashable, period: float = 0.1) -> None:
        """Queue `key` `period` seconds from now, once however many events ask meanwhile, so that a
        burst of pod status changes is one sync (upstream's batched pod event handling)."""
        if key in self._batched_keys:
            return
        self._batched_keys.add(key)

        def fire() -> None:
            self._batched_keys.discard(key)
            self.enqueue(key)
        asyncio.get_running_loop().call_later(period, fire)

    async def sync(self, key: str) -> float | None:
        raise NotImplementedError

    # ---- running -------------------------------------------------------------------------------

    async def run(self) -> None:
        await self.informers.wait_synced()
        workers = [asyncio.create_task(self._worker()) for _ in range(self.workers)]
        try:
            await asyncio.gather(*workers)
        finally:
            self.queue.shut_down()
            await cancel_until_done(*workers)
            if self.component:
                await self.recorder.close()

    async def _worker(self) -> None:
        while True:
            try:
                key = await self.queue.get()
            except ShutDown:
                return
            try:
                again = await self.sync(key)
                self.queue.forget(key)
                if again is not None:
                    self.queue.add_after(key, again)
            except ApiError as e:
                if e.code != 409:  # conflicts are routine: the cache was behind; try again
                    log.info("%s: sync %s: %s", self.name, key, e.message)
                self.queue.add_rate_limited(key)
            except (OSError, asyncio.TimeoutError, aiohttp.ClientError) as e:
                log.info("%s: sync %s: %s", self.name, key, e)
                self.queue.add_rate_limited(key)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - one bad object must not stop the controller
                log.exception("%s: sync %s failed", self.name, key)
                self.queue.add_rate_limited(key)
            finally:
                self.queue.done(key)


def stored_resources(*, namespaced: bool | None = None,
                     verbs: tuple[str, ...] = ("list", "watch", "delete")) -> list[kinds.Resource]:
    """One served Resource per stored kind (each storage prefix once, in its storage version) that
    supports `verbs`; only namespaced or only cluster-scoped kinds when `namespaced` says so."""
    seen: set[str] = set()
    out = []
    for res in kinds.RESOURCES:
        if res.group == res.storage_group and res.version == res.storage_version \
                and res.storage_prefix not in seen and all(v in res.verbs for v in verbs) \
                and (namespaced is None or res.namespaced == namespaced):
            seen.add(res.storage_prefix)
            out.append(res)
    return out


def split_key(key: str) -> tuple[str | None, str]:
    ns, _, name = key.rpartition("/")
    return (ns or None), name


class PodControl:
    """Pod creation and deletion on behalf of an owner, with upstream's events
    (SuccessfulCreate "Created pod: X", FailedCreate, SuccessfulDelete "Deleted pod: X", FailedDelete)."""

    def __init__(self, client: Client, recorder: EventRecorder):
        self.pods = client.resource("v1", "Pod")
        self.recorder = recorder

    async def create(self, owner: dict, pod: dict) -> dict:
        try:
            created = await self.pods.create(pod, namespace=owner["metadata"]["namespace"])
        except ApiError as e:
            self.recorder.event(owner, "Warning", "FailedCreate", f"Error creating: {e.message}")
            raise
        self.recorder.event(owner, "Normal", "SuccessfulCreate", f"Created pod: {created['metadata']['name']}")
        return created

    async def delete(self, owner: dict, pod: dict) -> bool:
        """Delete `pod` (already gone counts as deleted); returns False if it was already gone."""
        meta = pod["metadata"]
        try:
            await self.pods.delete(meta["name"], namespace=meta["namespace"])
        except ApiError as e:
            if e.code == 404:
                return False
            self.recorder.event(owner, "Warning", "FailedDelete", f"Error deleting: {e.message}")
            raise
        self.recorder.event(owner, "Normal", "SuccessfulDelete", f"Deleted pod: {meta['name']}")
        return True
