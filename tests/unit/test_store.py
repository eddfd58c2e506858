"""The revisioned store: every method, its errors, watch ordering, compaction, restart, leases."""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ketch.storage import (
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
    SQLiteStore,
    StoreError,
    Watch,
    open_store,
)
from ketch.storage.sqlite import prefix_end
from ketch.storage.watch import EventLog

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def db_path(tmp_path: Path) -> str:
    return str(tmp_path / "state.db")


@pytest.fixture
async def store(db_path: str) -> AsyncIterator[SQLiteStore]:
    s = SQLiteStore(db_path)
    await s.start()
    try:
        yield s
    finally:
        await s.close()


async def take(watch: Watch, n: int, timeout: float = 5.0) -> list[Event]:
    async def collect() -> list[Event]:
        return [await anext(watch) for _ in range(n)]

    return await asyncio.wait_for(collect(), timeout)


async def nothing_pending(watch: Watch) -> bool:
    try:
        await asyncio.wait_for(anext(watch), 0.1)
    except TimeoutError:
        return True
    return False


def row_count(db_path: str) -> int:
    conn = sqlite3.connect(db_path)
    try:
        return conn.execute("SELECT COUNT(*) FROM log").fetchone()[0]
    finally:
        conn.close()


# ---- writes and reads at the latest revision ----


async def test_empty_store_is_at_revision_zero(store: SQLiteStore) -> None:
    assert store.current_revision() == 0
    assert store.compact_revision() == 0
    assert await store.get("/a") is None
    result = await store.range("/")
    assert (result.kvs, result.more, result.count, result.revision) == ([], False, 0, 0)


async def test_create_gives_consecutive_revisions(store: SQLiteStore) -> None:
    a = await store.create("/a", b"1")
    b = await store.create(
        "/b",
        b"2",
    )
    assert a == KeyValue("/a", b"1", 1, 1, 0)
    assert b == KeyValue("/b", b"2", 2, 2, 0)
    assert store.current_revision() == 2
    assert await store.get("/a") == a


async def test_create_existing_key_raises_with_current(store: SQLiteStore) -> None:
    first = await store.create("/a", b"1")
    with pytest.raises(KeyExistsError) as info:
        await store.create("/a", b"2")
    assert info.value.kv == first
    assert store.current_revision() == 1  # a failed write takes no revision


async def test_update_unconditional_and_conditional(store: SQLiteStore) -> None:
    created = await store.create("/a", b"1")
    updated = await store.update("/a", b"2")
    assert updated == KeyValue("/a", b"2", created.create_revision, 2, 0)
    again = await store.update("/a", b"3", expected_mod_revision=updated.mod_revision)
    assert again.mod_revision == 3 and again.value == b"3"
    with pytest.raises(ConflictError) as info:
        await store.update("/a", b"4", expected_mod_revision=updated.mod_revision)
    assert info.value.kv == again
    assert (await store.get("/a")) == again


async def test_update_missing_key_raises(store: SQLiteStore) -> None:
    with pytest.raises(KeyNotFoundError):
        await store.update("/nope", b"x")


async def test_delete_returns_last_value_at_delete_revision(store: SQLiteStore) -> None:
    created = await store.create("/a", b"1")
    deleted = await store.delete("/a")
    assert deleted == KeyValue("/a", b"1", created.create_revision, 2, 0)
    assert await store.get("/a") is None
    with pytest.raises(KeyNotFoundError):
        await store.delete("/a")
    recreated = await store.create("/a", b"new")
    assert recreated.create_revision == recreated.mod_revision == 3


async def test_conditional_delete(store: SQLiteStore) -> None:
    created = await store.create("/a", b"1")
    await store.update("/a", b"2")
    with pytest.raises(ConflictError):
        await store.delete("/a", expected_mod_revision=created.mod_revision)
    assert (await store.delete("/a", expected_mod_revision=2)).mod_revision == 3


async def test_bad_arguments_are_rejected(store: SQLiteStore) -> None:
    with pytest.raises(ValueError):
        await store.create("", b"x")
    with pytest.raises(TypeError):
        await store.create("/a", "not bytes")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        await store.get("/a", revision=-1)


async def test_concurrent_creates_of_one_key_let_exactly_one_win(
    store: SQLiteStore,
) -> None:
    results = await asyncio.gather(
        *(store.create("/same", str(i).encode()) for i in range(50)),
        return_exceptions=True,
    )
    winners = [r for r in results if isinstance(r, KeyValue)]
    losers = [r for r in results if isinstance(r, KeyExistsError)]
    assert len(winners) == 1 and len(losers) == 49
    assert all(err.kv == winners[0] for err in losers)
    assert store.current_revision() == 1


async def test_range_is_prefix_bounded_and_sorted(store: SQLiteStore) -> None:
    for key in ["/pods/b", "/pods/a", "/podsx", "/pod", "/pods/c/d", "/services/a"]:
        await store.create(key, key.encode())
    result = await store.range("/pods/")
    assert [kv.key for kv in result.kvs] == ["/pods/a", "/pods/b", "/pods/c/d"]
    assert (result.count, result.more, result.revision) == (3, False, 6)
    assert await store.count("/pods/") == 3
    assert await store.count("/") == 6
    assert await store.count("/zzz") == 0


async def test_range_pages_with_start_and_limit(store: SQLiteStore) -> None:
    for i in range(10):
        await store.create(f"/p/{i:02d}", b"x")
    seen: list[str] = []
    start = ""
    counts = []
    while True:
        page = await store.range("/p/", start=start, limit=3)
        seen += [kv.key for kv in page.kvs]
        counts.append(page.count)
        if not page.more:
            break
        start = page.kvs[-1].key + "\0"
    assert seen == [f"/p/{i:02d}" for i in range(10)]
    assert counts == [10, 7, 4, 1]  # matching from start, limit ignored


async def test_paging_at_a_fixed_revision_ignores_later_writes(
    store: SQLiteStore,
) -> None:
    for i in range(6):
        await store.create(f"/p/{i}", b"old")
    first = await store.range("/p/", limit=3)
    await store.update("/p/4", b"new")
    await store.delete("/p/5")
    await store.create("/p/6", b"new")
    rest = await store.range(
        "/p/", start=first.kvs[-1].key + "\0", revision=first.revision
    )
    assert [kv.key for kv in rest.kvs] == ["/p/3", "/p/4", "/p/5"]
    assert all(kv.value == b"old" for kv in rest.kvs)
    assert rest.revision == first.revision and rest.count == 3 and not rest.more


# ---- reads at an older revision ----


async def test_get_and_range_at_old_revisions(store: SQLiteStore) -> None:
    await store.create("/a/1", b"v1")  # 1
    await store.create("/a/2", b"w1")  # 2
    await store.update("/a/1", b"v2")  # 3
    await store.delete("/a/2")  # 4
    await store.create("/a/3", b"z1")  # 5
    assert (await store.get("/a/1", revision=2)).value == b"v1"
    assert (await store.get("/a/1", revision=3)) == KeyValue("/a/1", b"v2", 1, 3, 0)
    assert await store.get("/a/2", revision=4) is None
    assert await store.get("/a/3", revision=4) is None
    at3 = await store.range("/a/", revision=3)
    assert [(kv.key, kv.value) for kv in at3.kvs] == [("/a/1", b"v2"), ("/a/2", b"w1")]
    assert at3.revision == 3 and at3.count == 2
    page = await store.range("/a/", limit=1, revision=3)
    assert [kv.key for kv in page.kvs] == ["/a/1"] and page.more and page.count == 2
    at5 = await store.range("/a/", start="/a/2", revision=4)
    assert at5.kvs == [] and at5.count == 0


async def test_future_revision_raises(store: SQLiteStore) -> None:
    await store.create("/a", b"1")
    with pytest.raises(FutureRevisionError):
        await store.get("/a", revision=2)
    with pytest.raises(FutureRevisionError):
        await store.range("/", revision=5)
    with pytest.raises(FutureRevisionError):
        await store.compact(2)


# ---- watch ----


async def test_watch_from_past_revision_replays_from_buffer(store: SQLiteStore) -> None:
    await store.create("/a/1", b"v1")  # 1
    await store.create("/b/1", b"x")  # 2 (other prefix)
    await store.update("/a/1", b"v2")  # 3
    await store.delete("/a/1")  # 4
    async with store.watch("/a/", from_revision=1) as watch:
        events = await take(watch, 3)
        assert [(e.type, e.kv.mod_revision) for e in events] == [
            (PUT, 1),
            (PUT, 3),
            (DELETE, 4),
        ]
        assert events[0].prev_kv is None
        assert events[1].prev_kv == KeyValue("/a/1", b"v1", 1, 1, 0)
        assert events[2].kv == KeyValue("/a/1", b"v2", 1, 4, 0)
        assert events[2].prev_kv == KeyValue("/a/1", b"v2", 1, 3, 0)
        assert watch.revision == 4
        assert await nothing_pending(watch)


async def test_watch_start_revision_is_inclusive(store: SQLiteStore) -> None:
    for i in range(5):
        await store.create(f"/k/{i}", b"x")
    watch = store.watch("/k/", from_revision=3)
    assert [e.revision for e in await take(watch, 3)] == [3, 4, 5]
    watch.close()


async def test_watch_from_zero_sees_only_future_events(store: SQLiteStore) -> None:
    await store.create("/a", b"old")
    watch = store.watch("/", 0)
    assert watch.revision == 1
    assert await nothing_pending(watch)
    await store.create("/b", b"new")
    (event,) = await take(watch, 1)
    assert event.kv.key == "/b"
    watch.close()


async def test_watch_from_future_revision_waits_for_it(store: SQLiteStore) -> None:
    watch = store.watch("/", from_revision=3)
    await store.create("/1", b"x")
    await store.create("/2", b"x")
    assert await nothing_pending(watch)
    await store.create("/3", b"x")
    assert [e.kv.key for e in await take(watch, 1)] == ["/3"]
    watch.close()


async def test_watch_survives_a_cancelled_wait(store: SQLiteStore) -> None:
    watch = store.watch("/", 0)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(anext(watch), 0.05)
    await store.create("/a", b"x")
    assert [e.kv.key for e in await take(watch, 1)] == ["/a"]
    watch.close()


async def test_watch_close_ends_iteration(store: SQLiteStore) -> None:
    watch = store.watch("/", 0)
    waiting = asyncio.create_task(anext(watch))
    await asyncio.sleep(0.01)
    watch.close()
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(waiting, 1)


async def test_store_close_ends_watches(db_path: str) -> None:
    s = SQLiteStore(db_path)
    await s.start()
    watch = s.watch("/", 0)
    waiting = asyncio.create_task(anext(watch))
    await asyncio.sleep(0.01)
    await s.close()
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(waiting, 1)
    with pytest.raises(StoreError):
        await s.create("/a", b"x")


async def test_watch_has_no_gaps_or_duplicates_under_concurrent_writers(
    store: SQLiteStore,
) -> None:
    everything = store.watch("", from_revision=1)
    only_hot = store.watch("/hot/", from_revision=1)

    async def writer(n: int) -> None:
        key = f"/{'hot' if n % 2 else 'cold'}/{n}"
        await store.create(key, b"0")
        for i in range(1, 30):
            await store.update(key, str(i).encode())
        await store.delete(key)

    await asyncio.gather(*(writer(n) for n in range(20)))
    total = store.current_revision()
    assert total == 20 * 31
    events = await take(everything, total)
    assert [e.revision for e in events] == list(range(1, total + 1))
    hot = await take(only_hot, 10 * 31)
    assert hot == [e for e in events if e.kv.key.startswith("/hot/")]
    for key in {
        e.kv.key for e in events
    }:  # per key: create, 29 updates in order, delete
        mine = [e for e in events if e.kv.key == key]
        assert [e.type for e in mine] == [PUT] * 30 + [DELETE]
        assert [e.kv.value for e in mine[:30]] == [str(i).encode() for i in range(30)]
        assert all(b.prev_kv == a.kv for a, b in itertools.pairwise(mine[:30]))
    everything.close()
    only_hot.close()


async def test_slow_watcher_falls_back_to_disk_when_ring_wraps(db_path: str) -> None:
    s = SQLiteStore(db_path, watch_buffer_events=8)
    await s.start()
    try:
        watch = s.watch("/", from_revision=1)
        for i in range(50):
            await s.create(f"/k/{i:03d}", str(i).encode())
        events = await take(watch, 50)
        assert [e.revision for e in events] == list(range(1, 51))
        assert [e.kv.value for e in events] == [str(i).encode() for i in range(50)]
        await s.create("/k/live", b"x")
        assert [e.kv.key for e in await take(watch, 1)] == ["/k/live"]
        watch.close()
    finally:
        await s.close()


async def test_watch_after_restart_replays_from_disk_identically(db_path: str) -> None:
    s = SQLiteStore(db_path)
    await s.start()
    live = s.watch("/", from_revision=1)
    await s.create("/a", b"1")
    await s.create("/b", b"1")
    await s.update("/a", b"2")
    await s.delete("/b")
    await s.create("/b", b"again")
    recorded = await take(live, 5)
    await s.close()

    s = SQLiteStore(db_path)
    await s.start()
    try:
        replay = s.watch("/", from_revision=1)
        assert await take(replay, 5) == recorded
        await s.update("/b", b"after restart")
        (after,) = await take(replay, 1)
        assert after.revision == 6 and after.prev_kv == recorded[-1].kv
        replay.close()
    finally:
        await s.close()


# ---- compaction ----


async def test_compaction_drops_history_and_refuses_old_revisions(
    store: SQLiteStore, db_path: str
) -> None:
    await store.create("/a", b"1")  # 1
    await store.update("/a", b"2")  # 2
    await store.update("/a", b"3")  # 3
    await store.create("/b", b"x")  # 4
    await store.delete("/b")  # 5
    await store.create("/c", b"1")  # 6
    await store.update("/a", b"4")  # 7
    await store.compact(6)
    assert store.compact_revision() == 6
    with pytest.raises(CompactedError) as info:
        await store.get("/a", revision=5)
    assert info.value.compact_revision == 6
    with pytest.raises(CompactedError):
        await store.range("/", revision=1)
    with pytest.raises(CompactedError):
        store.watch("/", from_revision=5)
    # the compact revision itself stays readable and watchable
    assert (await store.get("/a", revision=6)).value == b"3"
    assert [kv.key for kv in (await store.range("/", revision=6)).kvs] == ["/a", "/c"]
    events = await take(store.watch("/", from_revision=6), 2)
    assert [e.revision for e in events] == [6, 7]
    assert events[1].prev_kv == KeyValue("/a", b"3", 1, 3, 0)
    # rows 1, 2 (superseded by 3) and 4, 5 (deleted key) are gone; 3, 6, 7 stay
    assert row_count(db_path) == 3
    await store.compact(3)  # at or below the compact revision: nothing to do
    assert store.compact_revision() == 6


async def test_compaction_is_persistent_and_revisions_never_reused(
    db_path: str,
) -> None:
    s = SQLiteStore(db_path)
    await s.start()
    await s.create("/a", b"1")
    await s.delete("/a")  # the newest row is a tombstone
    await s.compact(2)
    await s.close()
    assert row_count(db_path) == 1  # the tombstone at the compact revision stays
    s = SQLiteStore(db_path)
    await s.start()
    try:
        assert s.compact_revision() == 2
        assert s.current_revision() == 2
        assert await s.get("/a") is None
        (tombstone,) = await take(s.watch("/", from_revision=2), 1)
        assert tombstone.type == DELETE and tombstone.revision == 2
        assert (await s.create("/a", b"again")).mod_revision == 3
        with pytest.raises(CompactedError):
            await s.get("/a", revision=1)
    finally:
        await s.close()


async def test_compact_older_than_keeps_recent_revisions(store: SQLiteStore) -> None:
    await store.create("/a", b"0")
    for i in range(1, 20):
        await store.update("/a", str(i).encode())
    assert await store.compact_older_than(5) == 15
    assert (await store.get("/a", revision=15)).value == b"14"
    with pytest.raises(CompactedError):
        await store.get("/a", revision=14)
    assert await store.compact_older_than(100) == 15  # nothing older to drop


async def test_lagging_watcher_ends_with_compacted_error(db_path: str) -> None:
    s = SQLiteStore(db_path, watch_buffer_events=4)
    await s.start()
    try:
        watch = s.watch("/", from_revision=1)
        await s.create("/a", b"0")
        for i in range(1, 20):
            await s.update("/a", str(i).encode())
        await s.compact(15)
        with pytest.raises(CompactedError):
            await take(watch, 20)
    finally:
        await s.close()


# ---- restart ----


async def test_restart_rebuilds_latest_state(db_path: str) -> None:
    s = SQLiteStore(db_path)
    await s.start()
    for i in range(20):
        await s.create(f"/k/{i:02d}", b"v0")
    for i in range(0, 20, 2):
        await s.update(f"/k/{i:02d}", b"v1")
    for i in range(0, 20, 5):
        await s.delete(f"/k/{i:02d}")
    before = await s.range("/")
    await s.close()

    s = SQLiteStore(db_path)
    await s.start()
    try:
        after = await s.range("/")
        assert after == before
        assert s.current_revision() == 34
        assert (await s.create("/new", b"x")).mod_revision == 35
    finally:
        await s.close()


async def test_close_finishes_queued_writes(db_path: str) -> None:
    s = SQLiteStore(db_path)
    await s.start()
    creates = [asyncio.create_task(s.create(f"/q/{i}", b"x")) for i in range(100)]
    await asyncio.sleep(0)  # all queued, none committed yet
    await s.close()
    results = await asyncio.gather(*creates)
    s = SQLiteStore(db_path)
    await s.start()
    try:
        assert await s.count("/q/") == 100
        assert sorted(kv.mod_revision for kv in results) == list(range(1, 101))
    finally:
        await s.close()


async def test_second_open_of_same_file_is_refused(
    store: SQLiteStore, db_path: str
) -> None:
    other = SQLiteStore(db_path)
    with pytest.raises(StoreError, match="already open"):
        await other.start()


async def test_methods_before_start_raise(db_path: str) -> None:
    s = SQLiteStore(db_path)
    with pytest.raises(StoreError, match="not started"):
        await s.get("/a")


# ---- leases ----


async def test_revoke_lease_deletes_attached_keys(store: SQLiteStore) -> None:
    lease = await store.grant_lease(60)
    await store.create("/e/1", b"x", lease=lease)
    await store.create("/e/2", b"y", lease=lease)
    await store.create("/keep", b"z")
    watch = store.watch("/", 0)
    await store.revoke_lease(lease)
    events = await take(watch, 2)
    assert [(e.type, e.kv.key) for e in events] == [(DELETE, "/e/1"), (DELETE, "/e/2")]
    assert [kv.key for kv in (await store.range("/")).kvs] == ["/keep"]
    with pytest.raises(LeaseNotFoundError):
        await store.revoke_lease(lease)
    with pytest.raises(LeaseNotFoundError):
        await store.create("/e/3", b"x", lease=lease)
    watch.close()


async def test_update_keeps_or_moves_lease(store: SQLiteStore) -> None:
    first, second = await store.grant_lease(60), await store.grant_lease(60)
    await store.create("/e", b"1", lease=first)
    assert (await store.update("/e", b"2")).lease == first
    assert (await store.update("/e", b"3", lease=second)).lease == second
    await store.revoke_lease(first)
    assert (await store.get("/e")).value == b"3"
    await store.revoke_lease(second)
    assert await store.get("/e") is None


async def test_unknown_lease_is_refused(store: SQLiteStore) -> None:
    with pytest.raises(LeaseNotFoundError):
        await store.create("/e", b"x", lease=12345)


async def test_expired_lease_deletes_keys(store: SQLiteStore) -> None:
    lease = await store.grant_lease(0.2)
    await store.create("/e", b"x", lease=lease)
    watch = store.watch("/", 0)
    (event,) = await take(watch, 1, timeout=3)
    assert event.type == DELETE and event.kv.key == "/e"
    watch.close()


async def test_leases_survive_restart(db_path: str) -> None:
    s = SQLiteStore(db_path)
    await s.start()
    lease = await s.grant_lease(60)
    await s.create("/e", b"x", lease=lease)
    await s.close()
    s = SQLiteStore(db_path)
    await s.start()
    try:
        assert (await s.get("/e")).lease == lease
        await s.revoke_lease(lease)
        assert await s.get("/e") is None
    finally:
        await s.close()


# ---- pieces ----


def test_event_ring_is_bounded_by_bytes() -> None:
    log = EventLog(1, max_events=1000, max_bytes=10_000)
    events = [
        Event(PUT, KeyValue(f"/k{i}", b"x" * 1000, i, i), None) for i in range(1, 101)
    ]
    log.append(events)
    assert log.last_revision == 100
    assert 1 <= len(log) <= 10
    assert log.get(100) is events[-1]
    with pytest.raises(IndexError):
        log.get(log.first_revision - 1)


def test_event_ring_rejects_gaps() -> None:
    log = EventLog(1, max_events=10, max_bytes=1 << 20)
    with pytest.raises(ValueError):
        log.append([Event(PUT, KeyValue("/k", b"", 2, 2), None)])


def test_prefix_end() -> None:
    assert prefix_end("/pods/") == "/pods0"
    assert prefix_end("") is None
    assert prefix_end("a\U0010ffff") == "b"
    assert prefix_end("\ud7ff") == "\ue000"


def test_open_store_endpoints(tmp_path: Path) -> None:
    assert isinstance(open_store(f"sqlite://{tmp_path}/a.db"), SQLiteStore)
    plain = open_store(str(tmp_path / "b.db"))
    assert isinstance(plain, SQLiteStore) and plain.path == str(tmp_path / "b.db")
    with pytest.raises(ValueError, match="unsupported store endpoint scheme 'etcd'"):
        open_store("etcd://127.0.0.1:2379")
    with pytest.raises(ValueError, match="absolute path"):
        open_store("sqlite://relative.db")
