"""The store contract: an etcd-v3-shaped revisioned key/value log.

Only the API server talks to a Store. Every successful write gets the next
revision (a cluster-wide, strictly increasing integer); reads can be made at
the latest revision or at an older one that is not yet compacted; a watch
streams every change under a prefix from a start revision, in revision order,
with no gaps and no duplicates. The default implementation is
`ketch.storage.sqlite.SQLiteStore`; an etcd backend must be a thin adapter
with this same interface.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass
from types import TracebackType
from typing import Self

PUT = "PUT"
DELETE = "DELETE"


@dataclass(frozen=True, slots=True)
class KeyValue:
    key: str
    value: bytes  # opaque bytes (the API server stores JSON)
    create_revision: int
    mod_revision: int
    lease: int = 0


@dataclass(frozen=True, slots=True)
class Event:
    type: str  # PUT or DELETE (etcd naming)
    # For DELETE: mod_revision is the revision of the delete and value the last value.
    kv: KeyValue
    prev_kv: KeyValue | None  # the value before this event; None for a create

    @property
    def revision(self) -> int:
        return self.kv.mod_revision


@dataclass(frozen=True, slots=True)
class RangeResult:
    kvs: list[KeyValue]
    more: bool  # keys beyond `limit` remain
    count: int  # keys matching the prefix from `start`, ignoring `limit`
    revision: int  # the revision the read was made at


class StoreError(Exception):
    """Base of every error the store raises on purpose."""


class KeyExistsError(StoreError):
    """create() of a key that exists; `.kv` is the current value."""

    def __init__(self, kv: KeyValue) -> None:
        super().__init__(f"key already exists: {kv.key}")
        self.kv = kv


class KeyNotFoundError(StoreError):
    """update() or delete() of a key that does not exist."""

    def __init__(self, key: str) -> None:
        super().__init__(f"key not found: {key}")
        self.key = key


class ConflictError(StoreError):
    """The mod-revision precondition failed; `.kv` is the current value."""

    def __init__(self, kv: KeyValue, expected_mod_revision: int) -> None:
        super().__init__(
            f"conflict on {kv.key}: expected mod_revision {expected_mod_revision}, "
            f"current {kv.mod_revision}"
        )
        self.kv = kv
        self.expected_mod_revision = expected_mod_revision


class CompactedError(StoreError):
    """The revision asked for is older than the compaction point."""

    def __init__(self, revision: int, compact_revision: int) -> None:
        super().__init__(
            f"revision {revision} has been compacted (compact revision {compact_revision})"
        )
        self.revision = revision
        self.compact_revision = compact_revision


class FutureRevisionError(StoreError):
    """A read asked for a revision newer than the current one."""

    def __init__(self, revision: int, current_revision: int) -> None:
        super().__init__(
            f"revision {revision} is newer than the current revision {current_revision}"
        )
        self.revision = revision
        self.current_revision = current_revision


class LeaseNotFoundError(StoreError):
    """A write or revoke named a lease that does not exist (or has expired)."""

    def __init__(self, lease: int) -> None:
        super().__init__(f"lease not found: {lease}")
        self.lease = lease


class Watch(ABC):
    """An async iterator of Events; close() (or leaving `async with`) stops it.

    Iteration ends (StopAsyncIteration) once the watch or its store is closed.
    It raises CompactedError if the history it still has to deliver was
    compacted away before it could be read.
    """

    @abstractmethod
    async def __anext__(self) -> Event: ...

    @abstractmethod
    def close(self) -> None: ...

    @property
    @abstractmethod
    def revision(self) -> int:
        """Every event up to this revision has been delivered (or did not match)."""

    def __aiter__(self) -> AsyncIterator[Event]:
        return self

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class Store(ABC):
    """Revision semantics: revision 0 in a read means "latest"; a read at a
    revision newer than current raises FutureRevisionError; a read or watch at a
    revision below compact_revision() raises CompactedError (the compact revision
    itself stays readable, as in etcd)."""

    @abstractmethod
    async def start(self) -> None: ...

    @abstractmethod
    async def close(self) -> None: ...

    @abstractmethod
    def current_revision(self) -> int:
        """The latest committed revision (0 on an empty store). Cheap."""

    @abstractmethod
    def compact_revision(self) -> int: ...

    @abstractmethod
    async def get(self, key: str, revision: int = 0) -> KeyValue | None: ...

    @abstractmethod
    async def range(
        self, prefix: str, *, start: str = "", limit: int = 0, revision: int = 0
    ) -> RangeResult:
        """Keys that start with `prefix` and are >= `start`, ascending, at most
        `limit` of them (0 = all). To page, pass the last key + "\\0" as start and
        the first page's revision."""

    @abstractmethod
    async def count(self, prefix: str) -> int: ...

    @abstractmethod
    async def create(self, key: str, value: bytes, lease: int = 0) -> KeyValue:
        """Raises KeyExistsError, LeaseNotFoundError."""

    @abstractmethod
    async def update(
        self,
        key: str,
        value: bytes,
        expected_mod_revision: int = 0,
        *,
        lease: int | None = None,
    ) -> KeyValue:
        """expected_mod_revision 0 = unconditional, else ConflictError when the
        current mod_revision differs. KeyNotFoundError if absent. lease None keeps
        the key's current lease."""

    @abstractmethod
    async def delete(self, key: str, expected_mod_revision: int = 0) -> KeyValue:
        """Returns the deleted kv with mod_revision = the revision of the delete."""

    @abstractmethod
    def watch(self, prefix: str, from_revision: int = 0) -> Watch:
        """Events with revision >= from_revision under prefix (0 = only future
        events). Raises CompactedError at once if 0 < from_revision <
        compact_revision(); a from_revision in the future waits for it."""

    @abstractmethod
    async def compact(self, revision: int) -> None:
        """Drop history superseded at or before `revision`; later reads and
        watches below `revision` raise CompactedError. Compacting at or below
        the current compact revision does nothing."""

    @abstractmethod
    async def grant_lease(self, ttl_seconds: float) -> int:
        """A new lease id; keys attached to it are deleted when it expires."""

    @abstractmethod
    async def revoke_lease(self, lease: int) -> None:
        """Delete every key attached to the lease (DELETE events), then the lease."""

    async def compact_older_than(self, keep_revisions: int) -> int:
        """Compact so that the newest `keep_revisions` revisions stay readable.
        Meant to be called periodically by the API server; returns the compact
        revision afterwards."""
        target = self.current_revision() - keep_revisions
        if target > self.compact_revision():
            await self.compact(target)
        return self.compact_revision()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
