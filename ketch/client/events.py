"""An event recorder, as client-go's: core/v1 Events about an object, written in the background.

A repeat of the same event (same object, type, reason and message) is not a new Event: the
existing one's count and lastTimestamp go up, so `kubectl describe` shows "(x3 over 2m)" as it
does upstream. As client-go's EventCorrelator, from the tenth distinct message with the same object,
type and reason within ten minutes the events are combined into one ("(combined from similar
events): ..."), and each object may have 25 events at once, then one per five minutes (the spam
filter): a ReplicaSet of 1,000 replicas does not write 1,000 SuccessfulCreate events. Writing never
blocks the caller; when the API server is slow, the backlog is bounded and the oldest pending
events are dropped (events are best-effort upstream too).
"""
from __future__ import annotations

import asyncio
import datetime
import logging
import time
from collections import OrderedDict

from ..api.errors import ApiError
from .background import cancel_until_done
from .rest import Client

log = logging.getLogger("ketch.client.events")

NORMAL, WARNING = "Normal", "Warning"
MAX_BACKLOG = 1000
CACHE_SIZE = 4096
SPAM_BURST, SPAM_QPS = 25, 1 / 300       # client-go's defaultSpamBurst, defaultSpamQPS
AGGREGATE_MAX_EVENTS, AGGREGATE_INTERVAL = 10, 600.0
COMBINED_PREFIX = "(combined from similar events): "


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
        self._spam: OrderedDict[tuple, list] = OrderedDict()  # object -> [tokens, last refill]
        self._similar: OrderedDict[tuple, list] = OrderedDict()  # (object, type, reason) -> [messages, first]

    def for_component(self, component: str) -> "ComponentRecorder":
        """This recorder writing as `component` (each upstream controller is its own event source,
        the "From" of `kubectl describe`), sharing the writer and caches."""
        return ComponentRecorder(self, component)

    def _allowed(self, ref: dict, component: str) -> bool:
        """The spam filter: a token bucket per source and object."""
        key = (component, ref.get("namespace"), ref.get("kind"), ref.get("name"), ref.get("uid"))
        now = time.monotonic()
        bucket = self._spam.get(key)
        if bucket is None:
            bucket = self._spam[key] = [float(SPAM_BURST), now]
            if len(self._spam) > CACHE_SIZE:
                self._spam.popitem(last=False)
        bucket[0] = min(SPAM_BURST, bucket[0] + (now - bucket[1]) * SPAM_QPS)
        bucket[1] = now
        if bucket[0] < 1:
            return False
        bucket[0] -= 1
        return True

    def _aggregate(self, ref: dict, event_type: str, reason: str, message: str) -> tuple[str, str]:
        """(message, dedup message): similar events past the tenth distinct message become one."""
        key = (ref.get("namespace"), ref.get("uid") or ref.get("name"), ref.get("fieldPath", ""), event_type, reason)
        now = time.monotonic()
        record = self._similar.get(key)
        if record is None or now - record[1] > AGGREGATE_INTERVAL:
            record = self._similar[key] = [set(), now]
            if len(self._similar) > CACHE_SIZE:
                self._similar.popitem(last=False)
        record[0].add(message)
        if len(record[0]) < AGGREGATE_MAX_EVENTS:
            return message, message
        return COMBINED_PREFIX + message, COMBINED_PREFIX

    def event(self, obj: dict, event_type: str, reason: str, message: str, field_path: str = "",
              component: str = "") -> None:
        """Record an event about `obj` (fire and forget)."""
        if self._pending is None:
            self._pending = asyncio.Queue()
            self._task = asyncio.get_running_loop().create_task(self._writer())
        ref = reference(obj, field_path)
        component = component or self.component
        if not self._allowed(ref, component):
            return
        message, dedup = self._aggregate(ref, event_type, reason, message)
        if self._pending.qsize() >= MAX_BACKLOG:
            self._pending.get_nowait()
        self._pending.put_nowait((ref, event_type, reason, message, _now(), dedup, component))

    async def flush(self, timeout: float = 5.0) -> None:
        """Wait until every recorded event has been written (tests, shutdown)."""
        t0 = time.monotonic()
        while self._pending is not None and (self._pending.qsize() or self._busy) and \
                time.monotonic() - t0 < timeout:
            await asyncio.sleep(0.02)

    async def close(self) -> None:
        if self._task is not None:
            await cancel_until_done(self._task)
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

    async def _write(self, ref: dict, event_type: str, reason: str, message: str, now: str,
                     dedup: str | None = None, component: str = "") -> None:
        ns = ref.get("namespace") or "default"
        component = component or self.component
        key = (component, ns, ref.get("uid") or ref.get("name"), ref.get("fieldPath", ""), event_type, reason,
               message if dedup is None else dedup)
        seen = self._seen.get(key)
        if seen is not None:
            name, count = seen
            try:
                await self._events.patch(name, {"count": count + 1, "lastTimestamp": now, "message": message},
                                         "merge", namespace=ns)
                seen[1] = count + 1
                self._seen.move_to_end(key)
                return
            except ApiError as e:
                if e.code != 404:
                    raise
        name = f"{ref.get('name', 'unknown')}.{time.time_ns():x}"
        source = {"component": component}
        if self.host:
            source["host"] = self.host
        await self._events.create({
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": name, "namespace": ns},
            "involvedObject": ref, "reason": reason, "message": message, "type": event_type,
            "source": source, "firstTimestamp": now, "lastTimestamp": now, "count": 1,
            "reportingComponent": component, "reportingInstance": self.host or component,
        }, namespace=ns)
        self._seen[key] = [name, 1]
        if len(self._seen) > CACHE_SIZE:
            self._seen.popitem(last=False)


class ComponentRecorder:
    """An EventRecorder view whose events come from another component."""

    def __init__(self, parent: EventRecorder, component: str):
        self.parent = parent
        self.component = component

    def event(self, obj: dict, event_type: str, reason: str, message: str, field_path: str = "") -> None:
        self.parent.event(obj, event_type, reason, message, field_path, component=self.component)

    async def flush(self, timeout: float = 5.0) -> None:
        await self.parent.flush(timeout)
