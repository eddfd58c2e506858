"""Leases shared by the keys that expire together, as kube-apiserver's etcd3 lease manager does.

Granting a lease per Event would make one lease per write; instead a lease is reused for the writes
of a short window (5% of the TTL, at most 60 s, at most 1,000 keys), granted that much longer than
the TTL, so every key lives at least its TTL and at most the TTL plus the window.
"""
from __future__ import annotations

import asyncio
import time

from .interface import Store

REUSE_SECONDS = 60.0
REUSE_FRACTION = 0.05
MAX_KEYS_PER_LEASE = 1000


class LeaseManager:
    def __init__(self, store: Store, *, reuse_seconds: float = REUSE_SECONDS,
                 reuse_fraction: float = REUSE_FRACTION, max_keys: int = MAX_KEYS_PER_LEASE):
        self.store = store
        self.reuse_seconds = reuse_seconds
        self.reuse_fraction = reuse_fraction
        self.max_keys = max_keys
        self._lease = 0
        self._expires_at = 0.0
        self._keys = 0
        self._lock = asyncio.Lock()

    async def lease(self, ttl: float) -> int:
        """A lease that keeps a key written now for at least `ttl` seconds."""
        async with self._lock:
            now = time.time()
            reuse = min(self.reuse_fraction * ttl, self.reuse_seconds)
            # The previous lease still outlives ttl, and not by more than the window.
            if (self._lease and now + ttl < self._expires_at <= now + ttl + reuse
                    and self._keys < self.max_keys):
                self._keys += 1
                return self._lease
            self._lease = await self.store.grant_lease(ttl + reuse)
            self._expires_at = now + ttl + reuse
            self._keys = 1
            return self._lease
