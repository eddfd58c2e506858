"""The scheduling queue, as upstream's PriorityQueue: three places a pending pod can wait.

- active: ready to be tried, highest priority first, then the one waiting longest;
- back-off: failed recently; waits 1 s, 2 s, 4 s ... up to 10 s (doubling per attempt) before it
  may be tried again;
- unschedulable: fitted nowhere; stays until a cluster event could change that (a node added or
  changed, an assigned pod deleted or finished) moves it to active, or to back-off if its back-off
  has not yet run out. Pods left there longer than 5 minutes are retried anyway.

If such an event happens while a pod is being tried, the pod goes to back-off instead of
unschedulable when it fails, so the event is not lost (upstream's moveRequestCycle).
"""
from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from dataclasses import dataclass, field

INITIAL_BACKOFF = 1.0
MAX_BACKOFF = 10.0
MAX_IN_UNSCHEDULABLE = 300.0


@dataclass
class QueuedPod:
    key: str
    pod: dict
    timestamp: float = field(default_factory=time.monotonic)  # first queued (for ordering)
    attempts: int = 0
    last_failure: float = 0.0
    unschedulable_since: float = 0.0

    @property
    def priority(self) -> int:
        return int((self.pod.get("spec") or {}).get("priority") or 0)

    def backoff_expiry(self, initial: float, maximum: float) -> float:
        if self.attempts == 0:
            return 0.0
        return self.last_failure + min(initial * 2 ** (self.attempts - 1), maximum)


class SchedulingQueue:
    def __init__(self, initial_backoff: float = INITIAL_BACKOFF, max_backoff: float = MAX_BACKOFF):
        self.initial_backoff, self.max_backoff = initial_backoff, max_backoff
        self._seq = itertools.count()
        self._active: list[tuple] = []      # heap of (-priority, timestamp, seq, key)
        self._backoff: list[tuple] = []     # heap of (expiry, seq, key)
        self._where: dict[str, str] = {}    # key -> "active" | "backoff" | "unschedulable"
        self._entry: dict[str, tuple] = {}  # key -> the live heap entry (others are stale)
        self.pods: dict[str, QueuedPod] = {}
        self._in_flight: set[str] = set()
        self._unschedulable: set[str] = set()
        self._move_cycle = -1
        self._cycle = 0
        self._wake = asyncio.Event()
        self._closed = False

    def __len__(self) -> int:
        return len(self._where)

    # ---- placing ---------------------------------------------------------------------------

    def _push_active(self, qp: QueuedPod) -> None:
        self._unschedulable.discard(qp.key)
        entry = (-qp.priority, qp.timestamp, next(self._seq), qp.key)
        heapq.heappush(self._active, entry)
        self._entry[qp.key] = entry
        self._where[qp.key] = "active"
        self._wake.set()

    def _push_backoff(self, qp: QueuedPod) -> None:
        self._unschedulable.discard(qp.key)
        entry = (qp.backoff_expiry(self.initial_backoff, self.max_backoff), next(self._seq), qp.key)
        heapq.heappush(self._backoff, entry)
        self._entry[qp.key] = entry
        self._where[qp.key] = "backoff"
        self._wake.set()

    def add(self, pod: dict, key: str) -> None:
        """A new pending pod (or one seen again): to active unless it is queued or being tried."""
        qp = self.pods.get(key)
        if qp is not None:
            qp.pod = pod
            return
        if key in self._in_flight:
            return
        qp = self.pods[key] = QueuedPod(key, pod)
        self._push_active(qp)

    def update(self, pod: dict, key: str, spec_changed: bool) -> None:
        qp = self.pods.get(key)
        if qp is None:
            self.add(pod, key)
            return
        qp.pod = pod
        if spec_changed and self._where.get(key) == "unschedulable":
            self._move(qp)

    def delete(self, key: str) -> None:
        self._unschedulable.discard(key)
        self.pods.pop(key, None)
        self._where.pop(key, None)
        self._entry.pop(key, None)

    def requeue(self, pod: dict, key: str, unschedulable: bool, cycle: int) -> None:
        """After a failed attempt: unschedulable (wait for an event) or back-off (an error)."""
        self._in_flight.discard(key)
        qp = self.pods.get(key) or QueuedPod(key, pod)
        qp.pod = pod
        self.pods[key] = qp
        qp.attempts += 1
        qp.last_failure = time.monotonic()
        if unschedulable and self._move_cycle < cycle:
            qp.unschedulable_since = qp.last_failure
            self._where[key] = "unschedulable"
            self._unschedulable.add(key)
            self._entry.pop(key, None)
        else:
            self._push_backoff(qp)

    def done(self, key: str) -> None:
        """The pod was scheduled (or dropped): forget its attempts."""
        self._in_flight.discard(key)
        self._unschedulable.discard(key)
        self.pods.pop(key, None)
        self._where.pop(key, None)
        self._entry.pop(key, None)

    def _move(self, qp: QueuedPod) -> None:
        if qp.backoff_expiry(self.initial_backoff, self.max_backoff) > time.monotonic():
            self._push_backoff(qp)
        else:
            self._push_active(qp)

    def move_all(self, only=None) -> None:  # noqa: ANN001 - predicate on QueuedPod
        """A cluster event that may make unschedulable pods fit (those `only` accepts, if given)."""
        self._move_cycle = self._cycle
        for key in list(self._unschedulable):
            qp = self.pods[key]
            if only is None or only(qp):
                self._move(qp)

    # ---- taking ----------------------------------------------------------------------------

    def _flush_backoff(self, now: float) -> None:
        while self._backoff:
            expiry, _, key = self._backoff[0]
            if self._entry.get(key) is not self._backoff[0]:
                heapq.heappop(self._backoff)
                continue
            if expiry > now:
                break
            heapq.heappop(self._backoff)
            self._push_active(self.pods[key])

    def _flush_unschedulable(self, now: float) -> None:
        for key in list(self._unschedulable):
            if now - self.pods[key].unschedulable_since > MAX_IN_UNSCHEDULABLE:
                self._move(self.pods[key])

    def pop_nowait(self) -> QueuedPod | None:
        now = time.monotonic()
        if self._backoff and self._backoff[0][0] <= now:
            self._flush_backoff(now)
        while self._active:
            entry = heapq.heappop(self._active)
            key = entry[3]
            if self._entry.get(key) is not entry:
                continue
            del self._entry[key]
            del self._where[key]
            self._in_flight.add(key)
            self._cycle += 1
            return self.pods[key]
        return None

    async def pop(self) -> QueuedPod:
        last_flush = 0.0
        while True:
            if self._closed:
                raise asyncio.CancelledError
            now = time.monotonic()
            wait = 1.0
            if now - last_flush > 10:
                self._flush_unschedulable(now)
                last_flush = now
            qp = self.pop_nowait()
            if qp is not None:
                return qp
            if self._backoff:
                wait = max(0.0, min(wait, self._backoff[0][0] - now))
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), max(wait, 0.01))
            except asyncio.TimeoutError:
                pass

    @property
    def cycle(self) -> int:
        return self._cycle

    def close(self) -> None:
        self._closed = True
        self._wake.set()

    def counts(self) -> dict[str, int]:
        out = {"active": 0, "backoff": 0, "unschedulable": 0}
        for where in self._where.values():
            out[where] += 1
        return out
