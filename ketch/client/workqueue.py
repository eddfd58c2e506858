"""A rate-limited work queue with client-go's semantics.

- A key is queued at most once however often it is added (dirty set).
- A key being processed is not handed to a second worker; if it is added meanwhile, it is queued
  again when the first worker calls `done`.
- `add_rate_limited` delays a key exponentially per failure (5 ms doubling to 1000 s) until
  `forget` resets it, combined with an overall token bucket (10 qps, burst 100) as client-go does.
"""
from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Hashable


class ShutDown(Exception):
    """The queue was shut down."""


class RateLimiter:
    def __init__(self, base: float = 0.005, cap: float = 1000.0, qps: float = 10.0, burst: int = 100):
        self.base, self.cap = base, cap
        self.failures: dict[Hashable, int] = {}
        self.qps, self.burst = qps, burst
        self._tokens = float(burst)
        self._last = time.monotonic()

    def when(self, key: Hashable) -> float:
        n = self.failures.get(key, 0)
        self.failures[key] = n + 1
        per_item = min(self.base * (2 ** n), self.cap)
        # Token bucket: how long until a token is free for this request.
        now = time.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.qps)
        self._last = now
        self._tokens -= 1
        bucket = 0.0 if self._tokens >= 0 else -self._tokens / self.qps
        return max(per_item, bucket)

    def forget(self, key: Hashable) -> None:
        self.failures.pop(key, None)

    def retries(self, key: Hashable) -> int:
        return self.failures.get(key, 0)


class WorkQueue:
    def __init__(self, rate_limiter: RateLimiter | None = None):
        self._queue: deque[Hashable] = deque()
        self._dirty: set[Hashable] = set()
        self._processing: set[Hashable] = set()
        self._cond = asyncio.Condition()
        self._shutting_down = False
        # key -> the one timer that will add it (client-go's delaying queue keeps one waiting
        # entry per item, at the earliest time asked for)
        self._timers: dict[Hashable, asyncio.TimerHandle] = {}
        self.rate_limiter = rate_limiter or RateLimiter()

    def __len__(self) -> int:
        return len(self._queue)

    def add(self, key: Hashable) -> None:
        if self._shutting_down or key in self._dirty:
            return
        self._dirty.add(key)
        if key not in self._processing:
            self._queue.append(key)
            self._notify()

    def _notify(self) -> None:
        async def wake() -> None:
            async with self._cond:
                self._cond.notify()
        asyncio.get_running_loop().create_task(wake())

    def add_after(self, key: Hashable, delay: float) -> None:
        if self._shutting_down:
            return
        if delay <= 0:
            self.add(key)
            return
        loop = asyncio.get_running_loop()
        waiting = self._timers.get(key)
        if waiting is not None:
            if waiting.when() <= loop.time() + delay:
                return   # already due as soon or sooner
            waiting.cancel()

        def fire() -> None:
            self._timers.pop(key, None)
            self.add(key)
        self._timers[key] = loop.call_later(delay, fire)

    def add_rate_limited(self, key: Hashable) -> None:
        self.add_after(key, self.rate_limiter.when(key))

    def forget(self, key: Hashable) -> None:
        self.rate_limiter.forget(key)

    def num_requeues(self, key: Hashable) -> int:
        return self.rate_limiter.retries(key)

    async def get(self) -> Hashable:
        async with self._cond:
            while not self._queue:
                if self._shutting_down:
                    raise ShutDown()
                await self._cond.wait()
            key = self._queue.popleft()
            self._processing.add(key)
            self._dirty.discard(key)
            return key

    def done(self, key: Hashable) -> None:
        self._processing.discard(key)
        if key in self._dirty:
            self._queue.append(key)
            self._notify()

    def shut_down(self) -> None:
        self._shutting_down = True
        for t in self._timers.values():
            t.cancel()
        self._timers.clear()

        async def wake_all() -> None:
            async with self._cond:
                self._cond.notify_all()
        try:
            asyncio.get_running_loop().create_task(wake_all())
        except RuntimeError:
            pass
