"""Watch fan-out: one bounded ring of recent events, one cursor per watcher.

Every committed event is appended once to `EventLog`. A watcher is only a
cursor (the next revision it wants) plus at most one chunk of matching events
it has not handed out yet, so thousands of watchers cost little and none can
make the store hold unbounded memory. A watcher that is behind the oldest
event still in the ring (it started in the past, or it consumed slowly while
the ring wrapped) reads that stretch from the store's history instead, in
windows of `HISTORY_WINDOW` revisions, then carries on from the ring. Only
when that history has been compacted away does the watch end, with
CompactedError, the way etcd cancels such a watch.

Revisions are contiguous (every revision is exactly one event), so the ring
is indexed by revision directly.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable

from ketch.storage.interface import Event, Watch

HistoryReader = Callable[[str, int, int], Awaitable[list[Event]]]
"""read(prefix, first_revision, last_revision): events in that inclusive
revision range under prefix, ascending. Raises CompactedError."""

RING_CHUNK = 1000  # events examined per step when serving from the ring
HISTORY_WINDOW = 1000  # revisions read per query when serving from history
EVENT_OVERHEAD_BYTES = (
    200  # rough size of an Event and its KeyValues, beyond the values
)


def event_size(event: Event) -> int:
    prev = len(event.prev_kv.value) if event.prev_kv is not None else 0
    return len(event.kv.value) + prev + EVENT_OVERHEAD_BYTES


class EventLog:
    """The most recent events, bounded by count and by approximate bytes."""

    def __init__(self, next_revision: int, *, max_events: int, max_bytes: int) -> None:
        if max_events < 1:
            raise ValueError("max_events must be at least 1")
        self._slots: list[Event | None] = [None] * max_events
        self._max_bytes = max_bytes
        self._bytes = 0
        self.first_revision = (
            next_revision  # oldest event held (== last + 1 when empty)
        )
        self.last_revision = (
            next_revision - 1
        )  # newest event held: the store's revision
        self.closed = False
        self._waiters: set[asyncio.Future[None]] = set()

    def __len__(self) -> int:
        return self.last_revision - self.first_revision + 1

    def append(self, events: list[Event]) -> None:
        for event in events:
            if event.revision != self.last_revision + 1:
                raise ValueError(
                    f"event revision {event.revision} does not follow {self.last_revision}"
                )
            size = event_size(event)
            while len(self) and (
                len(self) == len(self._slots) or self._bytes + size > self._max_bytes
            ):
                self._evict_oldest()
            self._slots[event.revision % len(self._slots)] = event
            self._bytes += size
            self.last_revision = event.revision
        self._wake_all()

    def get(self, revision: int) -> Event:
        if not self.first_revision <= revision <= self.last_revision:
            raise IndexError(revision)
        event = self._slots[revision % len(self._slots)]
        assert event is not None
        return event

    def waiter(self) -> asyncio.Future[None]:
        """A future resolved at the next append (or close)."""
        fut = asyncio.get_running_loop().create_future()
        self._waiters.add(fut)
        return fut

    def discard_waiter(self, fut: asyncio.Future[None]) -> None:
        self._waiters.discard(fut)

    def close(self) -> None:
        self.closed = True
        self._wake_all()

    def _evict_oldest(self) -> None:
        slot = self.first_revision % len(self._slots)
        event = self._slots[slot]
        assert event is not None
        self._bytes -= event_size(event)
        self._slots[slot] = None
        self.first_revision += 1

    def _wake_all(self) -> None:
        waiters, self._waiters = self._waiters, set()
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)


class LogWatch(Watch):
    """Events under `prefix` from `next_revision` on: ring first, history when behind it."""

    def __init__(
        self,
        log: EventLog,
        prefix: str,
        next_revision: int,
        read_history: HistoryReader,
    ) -> None:
        self._log = log
        self._prefix = prefix
        self._next = next_revision  # the next revision not yet examined
        self._read_history = read_history
        self._ready: deque[Event] = deque()  # examined, matching, not yet handed out
        self._closed = False
        self._waiter: asyncio.Future[None] | None = None

    @property
    def revision(self) -> int:
        return self._ready[0].revision - 1 if self._ready else self._next - 1

    def close(self) -> None:
        self._closed = True
        self._ready.clear()
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def __anext__(self) -> Event:
        while not self._ready:
            if self._closed or self._log.closed:
                raise StopAsyncIteration
            await self._advance()
        return self._ready.popleft()

    async def _advance(self) -> None:
        log = self._log
        if self._next > log.last_revision:
            await self._wait_for_append()
        elif self._next >= log.first_revision:
            self._take_from_ring()
        else:
            await self._take_from_history()

    async def _wait_for_append(self) -> None:
        self._waiter = self._log.waiter()
        try:
            await self._waiter
        finally:
            self._log.discard_waiter(self._waiter)
            self._waiter = None

    def _take_from_ring(self) -> None:
        last = min(self._log.last_revision, self._next + RING_CHUNK - 1)
        for revision in range(self._next, last + 1):
            event = self._log.get(revision)
            if event.kv.key.startswith(self._prefix):
                self._ready.append(event)
        self._next = last + 1

    async def _take_from_history(self) -> None:
        first = self._next
        last = min(self._log.first_revision - 1, first + HISTORY_WINDOW - 1)
        events = await self._read_history(self._prefix, first, last)
        if self._closed or self._next != first:
            return
        self._ready.extend(events)
        self._next = last + 1
