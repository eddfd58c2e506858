"""kill -9 during a burst of concurrent creates: every acknowledged write survives."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ketch.storage import SQLiteStore

pytestmark = pytest.mark.timeout(120)

REPO = Path(__file__).resolve().parents[2]

# Keeps about 1,000 creates in flight; prints "key revision" the moment each returns.
CHILD = r"""
import asyncio, sys
from ketch.storage import SQLiteStore

async def worker(store, tag, n):
    for i in range(200):
        key = f"/burst/{tag}/{n:04d}/{i:03d}"
        kv = await store.create(key, b"x" * 512)
        sys.stdout.write(f"{key} {kv.mod_revision}\n")
        sys.stdout.flush()

async def main(path, tag):
    store = SQLiteStore(path)
    await store.start()
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    await asyncio.gather(*(worker(store, tag, n) for n in range(1000)))

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""

KILL_AFTER_ACKS = 3000


def run_and_kill(db_path: str, tag: str) -> dict[str, int]:
    """Start the writer child, kill -9 it mid-burst; return every write it acknowledged."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, db_path, tag],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=REPO,
        env=env,
    )
    acked: dict[str, int] = {}
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == b"ready\n", (
            child.stderr.read() if child.stderr else ""
        )
        deadline = time.monotonic() + 60
        while len(acked) < KILL_AFTER_ACKS and time.monotonic() < deadline:
            line = child.stdout.readline()
            if not line:
                break
            key, revision = line.split()
            acked[key.decode()] = int(revision)
        assert child.poll() is None, (
            "the child finished before it could be killed mid-burst"
        )
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=10)
        # lines already in the pipe were acknowledged too; a torn last line was not
        for line in child.stdout.read().splitlines(keepends=True):
            if line.endswith(b"\n"):
                key, revision = line.split()
                acked[key.decode()] = int(revision)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        for pipe in (child.stdout, child.stderr):
            if pipe is not None:
                pipe.close()
    assert child.returncode == -signal.SIGKILL
    assert len(acked) >= KILL_AFTER_ACKS
    return acked


def integrity(db_path: str) -> str:
    conn = sqlite3.connect(db_path)
    try:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        conn.close()


async def test_acknowledged_writes_survive_kill_9(tmp_path: Path) -> None:
    db_path = str(tmp_path / "burst.db")
    highest_seen = 0
    for round_ in range(2):
        acked = run_and_kill(db_path, f"r{round_}")
        assert (
            min(acked.values()) > highest_seen
        )  # revisions keep increasing across restarts
        highest_seen = max(acked.values())
        assert integrity(db_path) == "ok"

        store = SQLiteStore(db_path)
        await store.start()
        try:
            for key, revision in acked.items():
                kv = await store.get(key)
                assert kv is not None, f"acknowledged {key} lost"
                assert kv.mod_revision == kv.create_revision == revision
            assert store.current_revision() >= highest_seen
            fresh = await store.create(f"/after/{round_}", b"x")
            assert fresh.mod_revision > highest_seen
            highest_seen = fresh.mod_revision
        finally:
            await store.close()
