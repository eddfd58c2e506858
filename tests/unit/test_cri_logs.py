"""CRI-format log files: parsing, the kubelet's read options, follow across rotation, rotation."""
from __future__ import annotations

import asyncio
import time

from ketch.agent import logs

T0 = logs.parse_timestamp("2026-11-30T05:33:20Z")


def write(path, records):
    with open(path, "ab") as f:
        for ts, stream, text, partial in records:
            f.write(logs.format_line(ts, stream, text, partial))


def read(path, **opts) -> bytes:
    out = []

    async def sink(b):
        out.append(b)
    asyncio.run(logs.read_logs(path, logs.LogOptions(**opts), sink))
    return b"".join(out)


def test_parse_and_format_round_trip():
    line = logs.format_line(T0 + 123, "stderr", b"hello world")
    assert line == b"2026-11-30T05:33:20.000000123Z stderr F hello world\n"
    parsed = logs.parse_line(line)
    assert (parsed.ts_ns, parsed.stream, parsed.partial, parsed.text) == (T0 + 123, "stderr", False, b"hello world")
    # conmon's form: +00:00 offsets; an empty line has no text after the tag
    assert logs.parse_line(b"2026-12-01T17:45:27.404022755+00:00 stdout F x").ts_ns == \
        logs.parse_timestamp("2026-12-01T17:45:27.404022755Z")
    assert logs.parse_line(b"2026-12-01T17:45:27Z stdout F").text == b""
    assert logs.parse_timestamp("2026-12-01T18:45:27+01:00") == logs.parse_timestamp("2026-12-01T17:45:27Z")
    assert logs.parse_line(b"garbage") is None


def test_options(tmp_path):
    p = tmp_path / "c.log"
    write(p, [(T0 + i * 10**9, "stdout", f"line {i}".encode(), False) for i in range(5)])
    write(p, [(T0 + 10 * 10**9, "stdout", b"long ", True), (T0 + 11 * 10**9, "stdout", b"line", False)])
    assert read(p) == b"line 0\nline 1\nline 2\nline 3\nline 4\nlong line\n"
    assert read(p, tail_lines=2) == b"line 4\nlong line\n"   # partial records belong to their line
    assert read(p, tail_lines=0) == b""
    assert read(p, tail_lines=100) == read(p)
    assert read(p, since_ns=T0 + 3 * 10**9) == b"line 3\nline 4\nlong line\n"
    assert read(p, limit_bytes=9) == b"line 0\nli"
    assert read(p, timestamps=True, tail_lines=1) == b"2026-11-30T05:33:30.000000000Z long line\n"
    assert read(tmp_path / "missing.log") == b""


def test_tail_of_a_large_file(tmp_path):
    p = tmp_path / "big.log"
    write(p, [(T0 + i, "stdout", b"x" * 100 + str(i).encode(), False) for i in range(3000)])
    assert read(p, tail_lines=3).splitlines() == [b"x" * 100 + str(i).encode() for i in (2997, 2998, 2999)]


def test_a_read_without_follow_is_the_log_as_it_was(tmp_path):
    """A container writing while `kubectl logs --tail 2` reads: exactly two lines come back."""
    p = tmp_path / "busy.log"
    write(p, [(T0 + i, "stdout", f"line {i}".encode(), False) for i in range(10)])
    out = []

    async def sink(b):
        if not out:   # the container writes on while the first line goes out
            write(p, [(T0 + 100 + i, "stdout", f"late {i}".encode(), False) for i in range(3)])
        out.append(b)
    asyncio.run(logs.read_logs(p, logs.LogOptions(tail_lines=2), sink))
    assert b"".join(out) == b"line 8\nline 9\n"


def test_follow_sees_new_lines_and_survives_rotation(tmp_path):
    p = tmp_path / "c.log"
    write(p, [(T0, "stdout", b"first", False)])
    got: list[bytes] = []
    running = True

    async def sink(b):
        got.append(b)

    async def still_running():
        return running

    async def scenario():
        nonlocal running
        follower = asyncio.create_task(logs.read_logs(p, logs.LogOptions(follow=True), sink, still_running))
        await asyncio.sleep(0.1)
        t = time.monotonic()
        write(p, [(T0 + 1, "stdout", b"second", False)])
        while b"second\n" not in got:
            await asyncio.sleep(0.005)
        latency = time.monotonic() - t
        rotated = logs.rotate(p, max_size=1, max_files=2)
        write(rotated, [(T0 + 2, "stdout", b"late write to the old file", False)])
        write(p, [(T0 + 3, "stdout", b"in the new file", False)])
        while b"in the new file\n" not in got:
            await asyncio.sleep(0.01)
        running = False
        await asyncio.wait_for(follower, 5)
        return latency

    latency = asyncio.run(scenario())
    assert b"".join(got) == b"first\nsecond\nlate write to the old file\nin the new file\n"
    assert latency < 0.5  # POLL_INTERVAL is 20 ms; the margin is for a loaded 2-core machine


def test_rotate_keeps_max_files(tmp_path):
    p = tmp_path / "c.log"
    assert logs.rotate(p, 10, 3) is None           # no file yet
    p.write_bytes(b"small")
    assert logs.rotate(p, 10, 3) is None           # under the size
    made = []
    for _ in range(4):
        p.write_bytes(b"x" * 20)
        made.append(logs.rotate(p, 10, 3))
        assert not p.exists()
    rotated = sorted(tmp_path.glob("c.log.*"))
    # max_files 3 = the live file + two rotated; all but the newest compressed, as the kubelet does
    assert rotated == sorted([made[-1], made[-2].with_name(made[-2].name + ".gz")])


def test_rotated_logs_are_compressed_whole_and_in_order(tmp_path):
    import gzip
    p = tmp_path / "c.log"
    contents = []
    for i in range(5):
        body = b"".join(b"2024-01-01T00:00:0%dZ stdout F line %d of rotation %d\n" % (i, n, i) for n in range(500))
        p.write_bytes(body)
        contents.append(body)
        logs.rotate(p, 10, 5)
    (tmp_path / "c.log.20240101-000000.gz.tmp").write_bytes(b"cut short")  # left by a crash
    p.write_bytes(b"x" * 20)
    newest = logs.rotate(p, 10, 5)
    names = sorted(f.name for f in tmp_path.glob("c.log.*"))
    assert not any(n.endswith(".tmp") for n in names)
    assert len(names) == 4 and newest.name in names and sum(n.endswith(".gz") for n in names) == 3
    # the three compressed ones are the last three rotations before the newest, intact
    gz = sorted(tmp_path.glob("c.log.*.gz"), key=lambda f: f.stat().st_mtime_ns)
    assert [gzip.decompress(f.read_bytes()) for f in gz] == contents[2:]
