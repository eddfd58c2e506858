"""Informers: a local cache of one kind kept current by list + watch, with event handlers.

As client-go's reflector: list, then watch from the list's resourceVersion (with bookmarks); on a
dropped connection, watch again from the last resourceVersion seen; on 410 Gone, list again and
reconcile the cache (deletions that were missed become delete events). A periodic resync replays
every cached object to the update handlers so controllers can correct drift.
"""
from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass
from typing import Callable

from ..api.errors import ApiError
from .background import Background
from .compact import Compactor
from .rest import Client, ResourceClient

log = logging.getLogger("ketch.client.informer")

Handler = Callable[..., None]
IndexFn = Callable[[dict], "list[str] | tuple[str, ...]"]
LIST_PAGE_SIZE = 500


def object_key(obj: dict) -> str:
    meta = obj.get("metadata", {})
    ns = meta.get("namespace")
    return f"{ns}/{meta['name']}" if ns else meta["name"]


@dataclass
class Handlers:
    on_add: Handler | None = None          # (obj)
    on_update: Handler | None = None       # (old, new)
    on_delete: Handler | None = None       # (obj)


class Informer(Background):
    def __init__(self, resource: ResourceClient, *, namespace: str | None = None, label_selector: str = "",
                 field_selector: str = "", resync_period: float = 0.0, watch_timeout: int = 300,
                 transform: Callable[[dict], dict] | None = None):
        self.resource = resource
        self.transform = transform  # applied to each object before it is cached and handed out
        self.namespace = namespace
        self.label_selector = label_selector
        self.field_selector = field_selector
        self.resync_period = resync_period
        self.watch_timeout = watch_timeout
        self.cache: dict[str, dict] = {}
        self.handlers: list[Handlers] = []
        self._index_fns: dict[str, IndexFn] = {}
        self._indexes: dict[str, dict[str, set[str]]] = {}
        self.synced = asyncio.Event()
        self.resource_version = ""
        self.relists = 0

    def add_handlers(self, on_add: Handler | None = None, on_update: Handler | None = None,
                     on_delete: Handler | None = None) -> None:
        h = Handlers(on_add, on_update, on_delete)
        self.handlers.append(h)
        if self.synced.is_set():
            for obj in list(self.cache.values()):
                if on_add:
                    on_add(obj)

    def get(self, key: str) -> dict | None:
        return self.cache.get(key)

    # ---- indexes (client-go's Indexer): name -> value -> keys of the objects with that value ---

    def add_index(self, name: str, fn: IndexFn) -> None:
        if name in self._index_fns:
            return
        self._index_fns[name] = fn
        index: dict[str, set[str]] = {}
        for key, obj in self.cache.items():
            for value in fn(obj):
                index.setdefault(value, set()).add(key)
        self._indexes[name] = index

    def by_index(self, name: str, value: str) -> list[dict]:
        keys = self._indexes[name].get(value, ())
        return [self.cache[k] for k in keys if k in self.cache]

    def _put(self, key: str, obj: dict) -> dict | None:
        old = self.cache.get(key)
        self.cache[key] = obj
        for name, fn in self._index_fns.items():
            index = self._indexes[name]
            if old is not None:
                for value in fn(old):
                    index.get(value, set()).discard(key)
            for value in fn(obj):
                index.setdefault(value, set()).add(key)
        return old

    def _pop(self, key: str) -> dict | None:
        old = self.cache.pop(key, None)
        if old is not None:
            for name, fn in self._index_fns.items():
                for value in fn(old):
                    keys = self._indexes[name].get(value)
                    if keys is not None:
                        keys.discard(key)
                        if not keys:
                            del self._indexes[name][value]
        return old

    def list(self) -> list[dict]:
        return list(self.cache.values())


    async def wait_synced(self, timeout: float | None = None) -> None:
        await asyncio.wait_for(self.synced.wait(), timeout)

    # ---- the reflector loop ------------------------------------------------------------------

    def _params(self) -> dict:
        return {"labelSelector": self.label_selector or None, "fieldSelector": self.field_selector or None}

    async def _list(self) -> None:
        # In pages of LIST_PAGE_SIZE, as client-go's pager does: one snapshot (the continue token
        # pins the revision) without holding the whole collection's JSON at once.
        fresh: dict[str, dict] = {}
        token = None
        while True:
            result = await self.resource.list(self.namespace, **self._params(), limit=LIST_PAGE_SIZE,
                                              **({"continue": token} if token else {}))
            for o in result.get("items", []):
                o.setdefault("kind", self.resource.res.kind)
                o.setdefault("apiVersion", self.resource.res.api_version)
                fresh[object_key(o)] = self.transform(o) if self.transform is not None else o
            token = result.get("metadata", {}).get("continue")
            if not token:
                break
        self.relists += 1
        _release_freed_memory()
        for key, old in list(self.cache.items()):
            if key not in fresh:
                self._pop(key)
                self._emit("on_delete", old)
        for key, obj in fresh.items():
            old = self._put(key, obj)
            if old is None:
                self._emit("on_add", obj)
            elif old.get("metadata", {}).get("resourceVersion") != obj["metadata"].get("resourceVersion"):
                self._emit("on_update", old, obj)
        self.resource_version = result.get("metadata", {}).get("resourceVersion", "")
        self.synced.set()

    async def run(self) -> None:
        backoff = 0.1
        need_list = True
        resync_task = asyncio.create_task(self._resync_loop()) if self.resync_period > 0 else None
        try:
            while True:
                try:
                    if need_list:
                        await self._list()
                        need_list = False
                    await self._watch()
                    backoff = 0.1
                except ApiError as e:
                    if e.code == 410:
                        need_list = True
                        continue
                    log.warning("informer %s: %s", self.resource.res.plural, e.message)
                    await asyncio.sleep(backoff + random.random() * backoff)
                    backoff = min(backoff * 2, 10)
                except (OSError, asyncio.TimeoutError, ValueError) as e:
                    log.info("informer %s: connection problem: %s", self.resource.res.plural, e)
                    await asyncio.sleep(backoff + random.random() * backoff)
                    backoff = min(backoff * 2, 10)
                except Exception as e:  # aiohttp errors
                    if e.__class__.__module__.startswith("aiohttp"):
                        await asyncio.sleep(backoff + random.random() * backoff)
                        backoff = min(backoff * 2, 10)
                        continue
                    raise
        finally:
            if resync_task is not None:
                resync_task.cancel()

    async def _watch(self) -> None:
        params = {**self._params(), "resourceVersion": self.resource_version, "allowWatchBookmarks": True,
                  "timeoutSeconds": self.watch_timeout}
        async for event in self.resource.watch(self.namespace, **params):
            etype, obj = event.get("type"), event.get("object", {})
            if etype == "ERROR":
                raise ApiError(obj.get("code", 500), obj.get("reason", ""), obj.get("message", ""))
            rv = obj.get("metadata", {}).get("resourceVersion")
            if etype == "BOOKMARK":
                self.resource_version = rv or self.resource_version
                continue
            key = object_key(obj)
            if etype == "DELETED":
                self._pop(key)
                self._emit("on_delete", obj)
            else:
                if self.transform is not None:
                    obj = self.transform(obj)
                old = self._put(key, obj)
                if old is None:
                    self._emit("on_add", obj)
                else:
                    self._emit("on_update", old, obj)
            if rv:
                self.resource_version = rv

    async def _resync_loop(self) -> None:
        while True:
            await asyncio.sleep(self.resync_period)
            if self.synced.is_set():
                for obj in list(self.cache.values()):
                    self._emit("on_update", obj, obj)

    def _emit(self, which: str, *args) -> None:
        for h in self.handlers:
            fn = getattr(h, which)
            if fn is not None:
                try:
                    fn(*args)
                except Exception:  # noqa: BLE001 - one bad handler must not stop the informer
                    log.exception("informer handler %s failed", which)


def strip_managed_fields(obj: dict) -> dict:
    """client-go's TransformStripManagedFields: no component but the API server reads
    managedFields, and they are often the larger part of an object."""
    obj.get("metadata", {}).pop("managedFields", None)
    return obj


def _release_freed_memory() -> None:
    """Hand the C heap's free pages back to the system (glibc's malloc_trim). A list's response
    bodies and parse buffers are megabytes that glibc keeps, between the long-lived objects they
    were interleaved with, once they are freed."""
    if _malloc_trim is not None:
        _malloc_trim(0)


def _find_malloc_trim():  # noqa: ANN202
    try:
        import ctypes
        return ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None


_malloc_trim = _find_malloc_trim()

# Kinds whose cached objects share their equal parts (ketch/client/compact.py): the kinds that come
# by the ten thousand. Every component reading them from the cache copies before it changes one.
COMPACTED_KINDS = frozenset({("v1", "Pod")})


class SharedInformers:
    """One informer per kind, shared by every component of a process (controllers, scheduler), so
    each kind is listed and watched once. Cached objects carry no managedFields, as upstream's
    controller manager and scheduler drop them; pods share their equal parts (COMPACTED_KINDS)."""

    def __init__(self, client: Client, resync_period: float = 0.0):
        self.client = client
        self.resync_period = resync_period
        self._informers: dict[tuple[str, str], Informer] = {}
        self.compactor = Compactor()

    def _strip_and_compact(self, obj: dict) -> dict:
        return self.compactor.compact(strip_managed_fields(obj))

    def informer(self, api_version: str, kind: str) -> Informer:
        key = (api_version, kind)
        if key not in self._informers:
            transform = self._strip_and_compact if key in COMPACTED_KINDS else strip_managed_fields
            self._informers[key] = Informer(self.client.resource(api_version, kind), resync_period=self.resync_period,
                                            transform=transform)
        return self._informers[key]

    def start(self) -> None:
        for inf in self._informers.values():
            inf.start()

    async def wait_synced(self) -> None:
        await asyncio.gather(*(inf.synced.wait() for inf in self._informers.values()))

    async def stop(self) -> None:
        await asyncio.gather(*(inf.stop() for inf in self._informers.values()))
