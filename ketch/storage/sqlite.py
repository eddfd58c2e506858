"""SQLiteStore: the default Store, an embedded SQLite log in the manner of k3s's kine.

The table
    One append-only table, `log`. Its INTEGER PRIMARY KEY `id` is the revision:
    every write (create, update, delete) inserts exactly one row, so revisions
    are contiguous. Columns: name (the key), created (1 when the row creates the
    key), deleted (1 for a tombstone), create_revision, prev_revision (id of the
    key's previous row, 0 for a create), lease, value (for a tombstone: the last
    value) and old_value (an update's previous value, so a watch read from disk
    still has prev_kv after the previous row was compacted away). An index on
    (name, id) serves per-key history and the rebuild at start. A `meta` table
    holds the compact revision; a `lease` table holds granted leases.
    Only the row with the highest id is guaranteed to survive compaction, so
    the current revision is never lost and revisions are never reused.

Memory
    The latest state of every key lives in a SortedDict, rebuilt from the table
    at start (newest row per name that is not a tombstone): get/range/count at
    the latest revision never touch SQLite. Reads at an older revision query
    the table on a second, read-only connection in its own thread.

Group commit
    create/update/delete only queue an operation. One writer task takes
    everything queued, validates each operation in order against the
    in-memory state plus the batch's own earlier changes, gives each its
    revision, inserts all the rows in ONE transaction on the writer thread's
    connection and commits. Only then does it apply the batch to memory,
    publish its events and resolve the callers' futures, with a result or
    their error: a caller that got a result is durable, and a read never sees
    an uncommitted write. Operations queued while a batch commits form the
    next batch, so fsync costs are shared by every concurrent writer.

Durability choice
    WAL journal with synchronous=FULL by default: each batch commit fsyncs the
    WAL, so an acknowledged write survives kill -9 and also an OS crash or
    power loss. Group commit amortises the fsync (about 0.4 ms here).
    synchronous="NORMAL" is accepted too: it survives kill -9 of the process
    (the WAL is in the OS page cache) but may lose the last commits on an OS
    crash.

Watch buffer
    Committed events go into a ring (ketch.storage.watch.EventLog) bounded by
    count (watch_buffer_events) and approximate bytes (watch_buffer_bytes).
    Watchers are cursors over it; one behind the ring reads history from the
    table and then continues from the ring. See watch.py.

Compaction
    compact(rev) deletes rows superseded by a later row of the same key with
    id <= rev, and tombstones with id < rev, in windows so writes interleave.
    The newest row at or below rev of every live key stays, so reads at rev
    still work. compact_older_than(keep) is the periodic helper for the API
    server: it compacts to current_revision() - keep.

Leases
    grant_lease(ttl) records a lease with a wall-clock expiry; a background
    task revokes expired leases, deleting their keys (DELETE events) in the
    same group-committed way. Leases survive restarts.

One process at a time: an flock on `<path>.lock` refuses a second opener.
"""

from __future__ import annotations

import asyncio
import dataclasses
import fcntl
import logging
import os
import secrets
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sortedcontainers import SortedDict

from ketch.storage.interface import (
    DELETE,
    PUT,
    CompactedError,
    ConflictError,
    Event,
    FutureRevisionError,
    KeyExistsError,
    KeyNotFoundError,
    KeyValue,
    LeaseNotFoundError,
    RangeResult,
    Store,
    StoreError,
    Watch,
)
from ketch.storage.watch import EventLog, LogWatch

T = TypeVar("T")
logger = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS log (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    created INTEGER NOT NULL,
    deleted INTEGER NOT NULL,
    create_revision INTEGER NOT NULL,
    prev_revision INTEGER NOT NULL,
    lease INTEGER NOT NULL,
    value BLOB NOT NULL,
    old_value BLOB
);
CREATE INDEX IF NOT EXISTS log_name_id ON log (name, id);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS lease (id INTEGER PRIMARY KEY, ttl REAL NOT NULL, expires_at REAL NOT NULL);
"""
ROW_COLUMNS = "id, name, created, deleted, create_revision, prev_revision, lease, value, old_value"
Row = tuple[int, str, int, int, int, int, int, bytes, bytes | None]

MAX_BATCH = 2000  # operations per transaction; the rest wait for the next batch
COMPACT_WINDOW = 10_000  # revisions per compaction transaction
LEASE_CHECK_SECONDS = 1.0  # the longest the expiry task sleeps


def prefix_end(prefix: str) -> str | None:
    """The smallest string above every string that starts with prefix (None: no bound)."""
    while prefix:
        last = ord(prefix[-1]) + 1
        if last == 0xD800:  # skip surrogates: they cannot be encoded for SQLite
            last = 0xE000
        if last <= 0x10FFFF:
            return prefix[:-1] + chr(last)
        prefix = prefix[:-1]
    return None


def row_of(event: Event) -> Row:
    kv, prev = event.kv, event.prev_kv
    if event.type == DELETE:
        assert prev is not None
        return (
            kv.mod_revision,
            kv.key,
            0,
            1,
            kv.create_revision,
            prev.mod_revision,
            kv.lease,
            kv.value,
            None,
        )
    if prev is None:
        return (
            kv.mod_revision,
            kv.key,
            1,
            0,
            kv.create_revision,
            0,
            kv.lease,
            kv.value,
            None,
        )
    return (
        kv.mod_revision,
        kv.key,
        0,
        0,
        kv.create_revision,
        prev.mod_revision,
        kv.lease,
        kv.value,
        prev.value,
    )


def event_of(row: Row) -> Event:
    """The inverse of row_of. prev_kv.lease is taken from the row (leases rarely change)."""
    rev, name, created, deleted, create_rev, prev_rev, lease, value, old_value = row
    kv = KeyValue(name, value, create_rev, rev, lease)
    if deleted:
        return Event(DELETE, kv, KeyValue(name, value, create_rev, prev_rev, lease))
    if created:
        return Event(PUT, kv, None)
    assert old_value is not None
    return Event(PUT, kv, KeyValue(name, old_value, create_rev, prev_rev, lease))


def kv_of(row: Row) -> KeyValue:
    return KeyValue(row[1], row[7], row[4], row[0], row[6])


def name_bounds(column: str, low: str, prefix: str) -> tuple[str, list[str]]:
    """SQL condition and parameters for `low <= column < prefix_end(prefix)`."""
    end = prefix_end(prefix)
    if end is None:
        return f"{column} >= ?", [low]
    return f"{column} >= ? AND {column} < ?", [low, end]


class ThreadConnection:
    """One sqlite3 connection confined to a thread of its own, driven from asyncio."""

    def __init__(self, path: str, name: str, pragmas: list[str]) -> None:
        self._path = path
        self._pragmas = pragmas
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._conn: sqlite3.Connection | None = None

    async def open(self) -> None:
        self._conn = await self._in_thread(self._connect)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        return await self._in_thread(fn, self._conn, *args)

    async def close(self) -> None:
        if self._conn is not None:
            await self._in_thread(self._conn.close)
            self._conn = None
        self._executor.shutdown(wait=True)

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self._path, isolation_level=None)
        for pragma in self._pragmas:
            conn.execute(pragma)
        return conn

    async def _in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(
            self._executor, fn, *args
        )


# ---- statements run on the writer thread ----


def create_schema(conn: sqlite3.Connection) -> None:
    conn.executescript(SCHEMA)


def load_state(
    conn: sqlite3.Connection,
) -> tuple[list[Row], int, int, list[tuple[int, float]]]:
    """Latest row of every live key (by name), the current and compact revisions, leases."""
    conn.execute("BEGIN")
    try:
        rows = conn.execute(
            f"SELECT {ROW_COLUMNS} FROM log WHERE id IN "
            "(SELECT MAX(id) FROM log GROUP BY name) AND deleted = 0 ORDER BY name"
        ).fetchall()
        (max_id,) = conn.execute("SELECT COALESCE(MAX(id), 0) FROM log").fetchone()
        compact = conn.execute(
            "SELECT value FROM meta WHERE key = 'compact_revision'"
        ).fetchone()
        leases = conn.execute("SELECT id, expires_at FROM lease").fetchall()
    finally:
        conn.execute("COMMIT")
    compact_rev = compact[0] if compact else 0
    return rows, max(max_id, compact_rev), compact_rev, leases


def append_rows(
    conn: sqlite3.Connection, rows: list[Row], revoked_leases: list[int]
) -> None:
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.executemany(
            f"INSERT INTO log ({ROW_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?)", rows
        )
        conn.executemany(
            "DELETE FROM lease WHERE id = ?", [(lease,) for lease in revoked_leases]
        )
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def insert_lease(
    conn: sqlite3.Connection, lease: int, ttl: float, expires_at: float
) -> None:
    conn.execute(
        "INSERT INTO lease (id, ttl, expires_at) VALUES (?, ?, ?)",
        (lease, ttl, expires_at),
    )


def compact_window(conn: sqlite3.Connection, low: int, high: int, target: int) -> None:
    """Delete rows superseded by a row with id in (low, high], and tombstones in [low, high)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute(
            "INSERT INTO meta (key, value) VALUES ('compact_revision', ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (target,),
        )
        conn.execute(
            "DELETE FROM log WHERE id IN (SELECT prev_revision FROM log "
            "WHERE id > ? AND id <= ? AND prev_revision > 0)",
            (low, high),
        )
        conn.execute(
            "DELETE FROM log WHERE deleted = 1 AND id >= ? AND id < ?", (low, high)
        )
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


# ---- statements run on the reader thread ----


def select_key_at(conn: sqlite3.Connection, key: str, revision: int) -> Row | None:
    return conn.execute(
        f"SELECT {ROW_COLUMNS} FROM log WHERE name = ? AND id <= ? ORDER BY id DESC LIMIT 1",
        (key, revision),
    ).fetchone()


def select_range_at(
    conn: sqlite3.Connection, prefix: str, low: str, limit: int, revision: int
) -> tuple[list[Row], int]:
    bounds, params = name_bounds("name", low, prefix)
    latest = f"SELECT MAX(id) FROM log WHERE {bounds} AND id <= ? GROUP BY name"
    params = [*params, revision]
    conn.execute("BEGIN")  # one snapshot for the rows and the count
    try:
        rows = conn.execute(
            f"SELECT {ROW_COLUMNS} FROM log WHERE id IN ({latest}) AND deleted = 0 "
            "ORDER BY name LIMIT ?",
            [*params, limit or -1],
        ).fetchall()
        (count,) = conn.execute(
            f"SELECT COUNT(*) FROM log WHERE id IN ({latest}) AND deleted = 0", params
        ).fetchone()
    finally:
        conn.execute("COMMIT")
    return rows, count


def select_events(
    conn: sqlite3.Connection, prefix: str, first: int, last: int
) -> list[Row]:
    bounds, params = name_bounds("name", prefix, prefix)
    return conn.execute(
        f"SELECT {ROW_COLUMNS} FROM log WHERE id >= ? AND id <= ? AND {bounds} ORDER BY id",
        [first, last, *params],
    ).fetchall()


@dataclass(slots=True)
class Op:
    kind: str  # "create" | "update" | "delete" | "revoke"
    key: str
    future: asyncio.Future[Any]
    value: bytes = b""
    expected_mod_revision: int = 0
    lease: int | None = 0


@dataclass(slots=True)
class Batch:
    """What one transaction will do, planned against memory plus its own earlier ops."""

    revision: int  # the last revision given out so far
    changes: dict[str, KeyValue | None] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    revoked_leases: list[int] = field(default_factory=list)
    outcomes: list[tuple[asyncio.Future[Any], Any, BaseException | None]] = field(
        default_factory=list
    )


class SQLiteStore(Store):
    def __init__(
        self,
        path: str,
        *,
        synchronous: str = "FULL",
        watch_buffer_events: int = 100_000,
        watch_buffer_bytes: int = 64 << 20,
    ) -> None:
        if synchronous.upper() not in ("FULL", "NORMAL"):
            raise ValueError(
                "synchronous must be FULL or NORMAL (anything less loses acknowledged writes)"
            )
        self.path = path
        self._synchronous = synchronous.upper()
        self._buffer_events = watch_buffer_events
        self._buffer_bytes = watch_buffer_bytes
        self._kvs: SortedDict = SortedDict()  # key -> KeyValue at the latest revision
        self._revision = 0
        self._compact_revision = 0
        self._leases: dict[int, float] = {}  # lease id -> wall-clock expiry
        self._lease_keys: dict[int, set[str]] = {}
        self._queue: list[Op] = []
        self._queued = asyncio.Event()
        self._leases_changed = asyncio.Event()
        self._compact_lock = asyncio.Lock()
        self._log: EventLog | None = None
        self._writer: ThreadConnection | None = None
        self._reader: ThreadConnection | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._lock_file: int | None = None
        self._started = False
        self._closing = False

    # ---- lifecycle ----

    async def start(self) -> None:
        if self._started:
            raise StoreError("store already started")
        self._take_process_lock()
        try:
            await self._open()
        except BaseException:
            await self._release()
            raise
        self._started = True

    async def _open(self) -> None:
        # the log holds Secrets: owner-only, and SQLite gives its -wal/-shm files the same mode
        os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
        wal = ["PRAGMA journal_mode=WAL", "PRAGMA busy_timeout=10000"]
        self._writer = ThreadConnection(
            self.path,
            "ketch-store-writer",
            [*wal, f"PRAGMA synchronous={self._synchronous}"],
        )
        await self._writer.open()
        await self._writer.run(create_schema)
        rows, self._revision, self._compact_revision, leases = await self._writer.run(
            load_state
        )
        self._kvs = SortedDict((row[1], kv_of(row)) for row in rows)
        for kv in self._kvs.values():
            if kv.lease:
                self._lease_keys.setdefault(kv.lease, set()).add(kv.key)
        self._leases = dict(leases)
        self._reader = ThreadConnection(
            self.path, "ketch-store-reader", [*wal, "PRAGMA query_only=1"]
        )
        await self._reader.open()
        self._log = EventLog(
            self._revision + 1,
            max_events=self._buffer_events,
            max_bytes=self._buffer_bytes,
        )
        self._tasks = [
            asyncio.create_task(self._write_loop(), name="ketch-store-writer"),
            asyncio.create_task(self._expire_leases(), name="ketch-store-leases"),
        ]

    async def close(self) -> None:
        if not self._started or self._closing:
            return
        self._closing = True
        self._queued.set()
        writer_task, lease_task = self._tasks
        lease_task.cancel()
        await asyncio.gather(lease_task, return_exceptions=True)
        await writer_task  # drains what was queued before close
        await self._release()

    async def _release(self) -> None:
        if self._log is not None:
            self._log.close()
        for conn in (self._reader, self._writer):
            if conn is not None:
                await conn.close()
        if self._lock_file is not None:
            os.close(self._lock_file)
            self._lock_file = None

    def _take_process_lock(self) -> None:
        fd = os.open(self.path + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise StoreError(f"{self.path} is already open in another store") from None
        self._lock_file = fd

    # ---- reads ----

    def current_revision(self) -> int:
        return self._revision

    def compact_revision(self) -> int:
        return self._compact_revision

    async def get(self, key: str, revision: int = 0) -> KeyValue | None:
        if self._is_latest(revision):
            return self._kvs.get(key)
        row = await self._read_at(revision, select_key_at, key, revision)
        return None if row is None or row[3] else kv_of(row)

    async def range(
        self, prefix: str, *, start: str = "", limit: int = 0, revision: int = 0
    ) -> RangeResult:
        if limit < 0:
            raise ValueError("limit must be >= 0")
        low = max(prefix, start)
        if self._is_latest(revision):
            first = self._kvs.bisect_left(low)
            end = prefix_end(prefix)
            stop = len(self._kvs) if end is None else self._kvs.bisect_left(end)
            count = max(stop - first, 0)
            taken = min(count, limit) if limit else count
            # Admission asks for the namespace's quotas and limit ranges on every create; there are
            # seldom any, and slicing the sorted view costs more than the two bisections.
            kvs = self._kvs.values()[first : first + taken] if taken else []
            return RangeResult(
                kvs, bool(limit) and count > limit, count, self._revision
            )
        rows, count = await self._read_at(
            revision, select_range_at, prefix, low, limit, revision
        )
        return RangeResult(
            [kv_of(r) for r in rows], bool(limit) and count > limit, count, revision
        )

    async def count(self, prefix: str) -> int:
        return (await self.range(prefix, limit=1)).count

    def _is_latest(self, revision: int) -> bool:
        self._require_started()
        if revision < 0:
            raise ValueError("revision must be >= 0")
        if revision > self._revision:
            raise FutureRevisionError(revision, self._revision)
        if revision and revision < self._compact_revision:
            raise CompactedError(revision, self._compact_revision)
        return revision in (0, self._revision)

    async def _read_at(self, revision: int, fn: Callable[..., T], *args: Any) -> T:
        assert self._reader is not None
        result = await self._reader.run(fn, *args)
        # compaction raises the compact revision before it deletes rows, so a read
        # that raced it is caught here
        if revision < self._compact_revision:
            raise CompactedError(revision, self._compact_revision)
        return result

    async def _read_events(self, prefix: str, first: int, last: int) -> list[Event]:
        assert self._log is not None
        if self._log.closed:  # the store is closing: the watch is about to end anyway
            return []
        if first < self._compact_revision:
            raise CompactedError(first, self._compact_revision)
        rows = await self._read_at(first, select_events, prefix, first, last)
        return [event_of(row) for row in rows]

    # ---- writes ----

    async def create(self, key: str, value: bytes, lease: int = 0) -> KeyValue:
        return await self._submit("create", key, value=value, lease=lease)

    async def update(
        self,
        key: str,
        value: bytes,
        expected_mod_revision: int = 0,
        *,
        lease: int | None = None,
    ) -> KeyValue:
        return await self._submit(
            "update",
            key,
            value=value,
            expected_mod_revision=expected_mod_revision,
            lease=lease,
        )

    async def delete(self, key: str, expected_mod_revision: int = 0) -> KeyValue:
        return await self._submit(
            "delete", key, expected_mod_revision=expected_mod_revision
        )

    async def _submit(self, kind: str, key: str, **fields: Any) -> Any:
        self._require_started()
        if self._closing:
            raise StoreError("store is closed")
        if kind != "revoke" and (not isinstance(key, str) or not key):
            raise ValueError("key must be a non-empty string")
        if "value" in fields:
            if not isinstance(fields["value"], bytes):
                raise TypeError("value must be bytes")
            # Values live as long as the key: keep a tight copy. A serializer's output
            # (orjson's, measured) can pin ~5x its length of heap through fragmentation.
            fields["value"] = bytes(memoryview(fields["value"]))
        future = asyncio.get_running_loop().create_future()
        self._queue.append(Op(kind, key, future, **fields))
        self._queued.set()
        return await future

    async def _write_loop(self) -> None:
        while True:
            await self._queued.wait()
            self._queued.clear()
            while self._queue:
                ops, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
                try:
                    await self._commit(ops)
                except Exception as err:  # a bug: fail this batch, keep serving writes
                    logger.exception("store batch failed")
                    for op in ops:
                        if not op.future.done():
                            op.future.set_exception(StoreError(f"write failed: {err}"))
            if self._closing:
                return

    async def _commit(self, ops: list[Op]) -> None:
        batch = Batch(self._revision)
        for op in ops:
            if op.future.done():  # the caller gave up before its turn: skip it
                continue
            try:
                result: Any = self._plan(op, batch)
                batch.outcomes.append((op.future, result, None))
            except StoreError as err:
                batch.outcomes.append((op.future, None, err))
        if batch.events or batch.revoked_leases:
            assert self._writer is not None
            try:
                await self._writer.run(
                    append_rows, [row_of(e) for e in batch.events], batch.revoked_leases
                )
            except Exception as err:  # noqa: BLE001 - nothing was applied: every caller learns it
                failure = StoreError(f"commit failed: {err}")
                for future, _, _ in batch.outcomes:
                    if not future.done():
                        future.set_exception(failure)
                return
            self._apply(batch)
        for future, result, error in batch.outcomes:
            if future.done():
                continue
            if error is None:
                future.set_result(result)
            else:
                future.set_exception(error)

    def _plan(self, op: Op, batch: Batch) -> KeyValue | None:
        """Validate one operation and record its events in the batch; return its result."""
        if op.kind == "revoke":
            self._plan_revoke(op.lease or 0, batch)
            return None
        current = self._current(op.key, batch)
        revision = batch.revision + 1
        if op.kind == "create":
            if current is not None:
                raise KeyExistsError(current)
            self._check_lease(op.lease or 0, batch)
            kv = KeyValue(op.key, op.value, revision, revision, op.lease or 0)
            self._record(batch, Event(PUT, kv, None))
            return kv
        if current is None:
            raise KeyNotFoundError(op.key)
        if (
            op.expected_mod_revision
            and current.mod_revision != op.expected_mod_revision
        ):
            raise ConflictError(current, op.expected_mod_revision)
        if op.kind == "update":
            lease = current.lease if op.lease is None else op.lease
            if lease != current.lease:
                self._check_lease(lease, batch)
            kv = KeyValue(op.key, op.value, current.create_revision, revision, lease)
            self._record(batch, Event(PUT, kv, current))
            return kv
        kv = dataclasses.replace(current, mod_revision=revision)
        self._record(batch, Event(DELETE, kv, current))
        return kv

    def _plan_revoke(self, lease: int, batch: Batch) -> None:
        if lease not in self._leases or lease in batch.revoked_leases:
            raise LeaseNotFoundError(lease)
        attached = set(self._lease_keys.get(lease, ()))
        attached.update(
            k for k, kv in batch.changes.items() if kv is not None and kv.lease == lease
        )
        for key in sorted(attached):
            current = self._current(key, batch)
            if current is not None and current.lease == lease:
                kv = dataclasses.replace(current, mod_revision=batch.revision + 1)
                self._record(batch, Event(DELETE, kv, current))
        batch.revoked_leases.append(lease)

    def _check_lease(self, lease: int, batch: Batch) -> None:
        if lease and (lease not in self._leases or lease in batch.revoked_leases):
            raise LeaseNotFoundError(lease)

    def _current(self, key: str, batch: Batch) -> KeyValue | None:
        if key in batch.changes:
            return batch.changes[key]
        return self._kvs.get(key)

    @staticmethod
    def _record(batch: Batch, event: Event) -> None:
        batch.revision = event.revision
        batch.changes[event.kv.key] = event.kv if event.type == PUT else None
        batch.events.append(event)

    def _apply(self, batch: Batch) -> None:
        """Make a committed batch visible: memory, lease index, revision, watchers."""
        for event in batch.events:
            kv, prev = event.kv, event.prev_kv
            if prev is not None and prev.lease:
                self._lease_keys.get(prev.lease, set()).discard(kv.key)
            if event.type == PUT:
                self._kvs[kv.key] = kv
                if kv.lease:
                    self._lease_keys.setdefault(kv.lease, set()).add(kv.key)
            else:
                del self._kvs[kv.key]
        for lease in batch.revoked_leases:
            self._leases.pop(lease, None)
            self._lease_keys.pop(lease, None)
        self._revision = batch.revision
        assert self._log is not None
        self._log.append(batch.events)

    # ---- watch ----

    def watch(self, prefix: str, from_revision: int = 0) -> Watch:
        self._require_started()
        if from_revision < 0:
            raise ValueError("from_revision must be >= 0")
        if from_revision and from_revision < self._compact_revision:
            raise CompactedError(from_revision, self._compact_revision)
        assert self._log is not None
        start = from_revision or self._revision + 1
        return LogWatch(self._log, prefix, start, self._read_events)

    # ---- compaction ----

    async def compact(self, revision: int) -> None:
        self._require_started()
        async with self._compact_lock:
            if revision > self._revision:
                raise FutureRevisionError(revision, self._revision)
            if revision <= self._compact_revision:
                return
            low = self._compact_revision
            self._compact_revision = revision  # before any row goes: see _read_at
            assert self._writer is not None
            while low < revision:
                high = min(low + COMPACT_WINDOW, revision)
                await self._writer.run(compact_window, low, high, revision)
                low = high

    # ---- leases ----

    async def grant_lease(self, ttl_seconds: float) -> int:
        self._require_started()
        if ttl_seconds <= 0:
            raise ValueError("ttl_seconds must be > 0")
        lease = secrets.randbits(62) + 1
        while lease in self._leases:
            lease = secrets.randbits(62) + 1
        expires_at = time.time() + ttl_seconds
        assert self._writer is not None
        await self._writer.run(insert_lease, lease, ttl_seconds, expires_at)
        self._leases[lease] = expires_at
        self._leases_changed.set()
        return lease

    async def revoke_lease(self, lease: int) -> None:
        await self._submit("revoke", "", lease=lease)

    async def _expire_leases(self) -> None:
        while True:
            now = time.time()
            for lease in [lid for lid, expiry in self._leases.items() if expiry <= now]:
                try:
                    await self.revoke_lease(lease)
                except (LeaseNotFoundError, StoreError):
                    pass  # revoked meanwhile, or the store is closing
            soonest = min(self._leases.values(), default=now + LEASE_CHECK_SECONDS)
            self._leases_changed.clear()
            try:
                await asyncio.wait_for(
                    self._leases_changed.wait(),
                    timeout=min(max(soonest - time.time(), 0.01), LEASE_CHECK_SECONDS),
                )
            except TimeoutError:
                pass

    def _require_started(self) -> None:
        if not self._started:
            raise StoreError("store not started: call start() first")
