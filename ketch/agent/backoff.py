"""The kubelet's exponential back-off (client-go flowcontrol.Backoff), for crashing containers
(10 s doubling to 5 min) and failing image pulls.

An entry is keyed by what failed; `in_backoff_since(key, t)` asks whether something that failed at
`t` must still wait. An entry untouched for twice the maximum is forgotten, so a container that ran
for ten minutes starts again from the initial delay.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

CRASH_INITIAL, CRASH_MAX = 10.0, 300.0
IMAGE_INITIAL, IMAGE_MAX = 10.0, 300.0


@dataclass
class _Entry:
    delay: float
    last_update: float


class Backoff:
    def __init__(self, initial: float, maximum: float, clock=time.time):
        self.initial, self.maximum, self.clock = initial, maximum, clock
        self._entries: dict[object, _Entry] = {}

    def _live(self, key) -> _Entry | None:
        entry = self._entries.get(key)
        if entry is not None and self.clock() - entry.last_update > 2 * self.maximum:
            del self._entries[key]
            return None
        return entry

    def next(self, key) -> float:
        """Record a failure now; returns the delay that now applies."""
        now = self.clock()
        entry = self._live(key)
        if entry is None:
            entry = self._entries[key] = _Entry(self.initial, now)
        else:
            entry.delay, entry.last_update = min(entry.delay * 2, self.maximum), now
        return entry.delay

    def delay(self, key) -> float:
        entry = self._live(key)
        return entry.delay if entry else 0.0

    def remaining(self, key, since: float) -> float:
        """How much longer something that last failed at `since` must wait (0: go)."""
        entry = self._live(key)
        if entry is None:
            return 0.0
        return max(since + entry.delay - self.clock(), 0.0)

    def reset(self, key) -> None:
        self._entries.pop(key, None)

    def forget_prefix(self, prefix: tuple) -> None:
        for key in [k for k in self._entries if isinstance(k, tuple) and k[:len(prefix)] == prefix]:
            del self._entries[key]
