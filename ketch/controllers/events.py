"""An event recorder, as client-go's: core/v1 Events about an object, written in the background.

A repeat of the same event (same object, type, reason and message) is not a new Event: the
existing one's count and lastTimestamp go up, so `kubectl describe` shows "(x3 over 2m)" as it
does upstream. Writing never blocks the caller; when the API server is slow, the backlog is
bounded and the oldest pending events are dropped (events are best-effort upstream too).
"""
from __future__ import annotations

import asyncio
import datetime
import logging
import time
from collections import OrderedDict

from ..api.errors import ApiError
from ..client.rest import Client

log = logging.getLogger("ketch.controllers.events")

NORMAL, WARNING = "Normal", "Warning"
MAX_BACKLOG = 1000
CACHE_SIZE = 4096


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def reference(obj: dict, field_path: str = "") -> dict:
    meta = obj.get("metadata", {})
    ref = {"kind": obj.get("kind", ""), "namespace": meta.get("namespace"), "name": meta.get("name", ""),
           "uid": meta.get("uid"), "apiVersion": obj.get("apiVersion", ""),
           "resourceVersion": meta.get("resourceVersion")}
    if field_path:
        ref["fieldPath"] = field_path
    return {k: v for k, v in ref.items() if v}


class EventRecorder:
    def __init__(self, client: Client, component: str, host: str = ""):
        self.client = client
        self.component = component
        self.host = host
        self._events = client.resource("v1", "Event")
        self._pending: asyncio.Queue | None = None
        self._task: asyncio.Task | None = None
        self._busy = False
        # (namespace, uid/name, type, reason, message) -> [event name, count]
        self._seen: OrderedDict[tuple, list] = OrderedDict()

    def event(self, obj: dict, event_type: str, reason: str, message: str, field_path: str = "") -> None:
        """Record an event about `obj` (fire and forget)."""
        if self._pending is None:
            self._pending = asyncio.Queue()
            self._task = asyncio.get_running_loop().create_task(self._writer())
        if self._pending.qsize() >= MAX_BACKLOG:
            self._pending.get_nowait()
        self._pending.put_nowait((reference(obj, field_path), event_type, reason, message, _now()))

    async def flush(self, timeout: float = 5.0) -> None:
        """Wait until every recorded event has been written (tests, shutdown)."""
        t0 = time.monotonic()
        while self._pending is not None and (self._pending.qsize() or self._busy) and \
                time.monotonic() - t0 < timeout:
            await asyncio.sleep(0.02)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
            self._task = None

    async def _writer(self) -> None:
        assert self._pending is not None
        while True:
            item = await self._pending.get()
            self._busy = True
            try:
                await self._write(*item)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - events are best effort
                log.info("could not write event %s: %s", item[2], e)
            finally:
                self._busy = False

    async def _write(self, ref: dict, event_type: str, reason: str, message: str, now: str) -> None:
        ns = ref.get("namespace") or "default"
        key = (ns, ref.get("uid") or ref.get("name"), ref.get("fieldPath", ""), event_type, reason, message)
        seen = self._seen.get(key)
        if seen is not None:
            name, count = seen
            try:
                await self._events.patch(name, {"count": count + 1, "lastTimestamp": now}, "merge", namespace=ns)
                seen[1] = count + 1
                self._seen.move_to_end(key)
                return
            except ApiError as e:
                if e.code != 404:
                    raise
        name = f"{ref.get('name', 'unknown')}.{time.time_ns():x}"
        source = {"component": self.component}
        if self.host:
            source["host"] = self.host
        await self._events.create({
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": name, "namespace": ns},
            "involvedObject": ref, "reason": reason, "message": message, "type": event_type,
            "source": source, "firstTimestamp": now, "lastTimestamp": now, "count": 1,
            "reportingComponent": self.component, "reportingInstance": self.host or self.component,
        }, namespace=ns)
        self._seen[key] = [name, 1]
        if len(self._seen) > CACHE_SIZE:
            self._seen.popitem(last=False)
