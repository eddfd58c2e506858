"""Container logs in the CRI format, read with the kubelet's options and rotated as it does.

A CRI log line is `<RFC3339Nano timestamp> <stdout|stderr> <P|F> <text>`: `P` is a partial line
(the writer split a long line), `F` ends it. `kubectl logs` sees the text of each line joined
from its partials; with timestamps each line is prefixed with its first part's timestamp.

Rotation, as the kubelet's containerLogMaxSize/MaxFiles: `X.log` is renamed `X.log.<UTC time>`
and the runtime is asked to reopen `X.log` (ReopenContainerLog); the oldest rotated files go
beyond max_files - 1. Before each rotation the rotated files still plain are gzipped to
`X.log.<UTC time>.gz` (through a `.tmp` file), as the kubelet's container log manager does, so
all but the newest rotated file are compressed. A follower notices the rename (the inode at the
path changes), drains the old file and carries on in the new one.
"""
from __future__ import annotations

import asyncio
import datetime
import gzip
import os
import shutil
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Awaitable, Callable

POLL_INTERVAL = 0.02     # follow latency: new lines show within this much
RUNNING_CHECK_EVERY = 1.0
_LINE = re.compile(rb"^(\S+) (stdout|stderr) ([PF]) ?(.*)$", re.S)
_TS = re.compile(r"^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)$")


@dataclass
class LogOptions:
    follow: bool = False
    tail_lines: int | None = None      # None = all
    since_ns: int | None = None        # lines at or after this time (ns since the epoch)
    timestamps: bool = False
    limit_bytes: int | None = None


@dataclass
class LogLine:
    ts_ns: int
    stream: str
    partial: bool
    text: bytes


def parse_timestamp(text: str) -> int | None:
    """RFC 3339 with up to nanoseconds → ns since the epoch."""
    m = _TS.match(text)
    if m is None:
        return None
    y, mo, d, h, mi, s, frac, zone = m.groups()
    offset = datetime.timezone.utc if zone == "Z" else datetime.timezone(
        (1 if zone[0] == "+" else -1) * datetime.timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6])))
    dt = datetime.datetime(int(y), int(mo), int(d), int(h), int(mi), int(s), tzinfo=offset)
    return int(dt.timestamp()) * 1_000_000_000 + int((frac or "0").ljust(9, "0"))


def format_timestamp(ts_ns: int) -> str:
    """The kubelet's RFC3339NanoFixed, in UTC: 2026-12-01T17:45:27.404022755Z."""
    dt = datetime.datetime.fromtimestamp(ts_ns // 1_000_000_000, datetime.timezone.utc)
    return f"{dt:%Y-%m-%dT%H:%M:%S}.{ts_ns % 1_000_000_000:09d}Z"


def parse_line(raw: bytes) -> LogLine | None:
    m = _LINE.match(raw.rstrip(b"\n"))
    if m is None:
        return None
    ts = parse_timestamp(m[1].decode(errors="replace"))
    if ts is None:
        return None
    return LogLine(ts, m[2].decode(), m[3] == b"P", m[4])


def format_line(ts_ns: int, stream: str, text: bytes, partial: bool = False) -> bytes:
    """A CRI log line (the writer side; conmon writes these for real containers)."""
    return f"{format_timestamp(ts_ns)} {stream} {'P' if partial else 'F'} ".encode() + text + b"\n"


class _Joiner:
    """Partial lines joined per stream; yields whole lines with their first part's time."""

    def __init__(self) -> None:
        self._pending: dict[str, tuple[int, bytearray]] = {}

    def add(self, line: LogLine) -> tuple[int, bytes] | None:
        ts, buf = self._pending.pop(line.stream, (line.ts_ns, bytearray()))
        buf += line.text
        if line.partial:
            self._pending[line.stream] = (ts, buf)
            return None
        return ts, bytes(buf) + b"\n"


def _tail_offset(f, lines: int, end: int) -> int:
    """Offset where the last `lines` whole lines before `end` start: a line ends at an `F` record,
    so partial records count with the line they belong to (a line still being written counts too)."""
    if lines <= 0:
        return end
    pos, seen, carry = end, 0, b""
    while pos > 0:
        start = max(0, pos - (1 << 16))
        f.seek(start)
        data = f.read(pos - start) + carry
        records = data.split(b"\n")
        carry = records[0] if start > 0 else b""
        offset = start + len(records[0]) + 1  # start of records[1]
        starts = []
        for rec in records[1:]:
            starts.append((offset, rec))
            offset += len(rec) + 1
        if start == 0:
            starts.insert(0, (0, records[0]))
        for rec_start, rec in reversed(starts):
            fields = rec.split(b" ", 3)
            if len(fields) >= 3 and fields[2] == b"F" and rec_start + len(rec) < end:
                seen += 1
                if seen == lines + 1:
                    return rec_start + len(rec) + 1
        pos = start
    return 0


async def read_logs(path: str | Path, opts: LogOptions, write: Callable[[bytes], Awaitable[None]],
                    running: Callable[[], Awaitable[bool]] | None = None) -> None:
    """Write the log at `path` as `kubectl logs` shows it. With follow, keep writing new lines
    until `running()` says the container stopped (and the file is drained)."""
    path = Path(path)
    budget = opts.limit_bytes if opts.limit_bytes and opts.limit_bytes > 0 else None
    joiner = _Joiner()

    async def emit(line: LogLine) -> bool:
        """False once limitBytes is reached."""
        nonlocal budget
        if opts.since_ns is not None and line.ts_ns < opts.since_ns:
            return True
        whole = joiner.add(line)
        if whole is None:
            return True
        ts, text = whole
        out = (format_timestamp(ts).encode() + b" " + text) if opts.timestamps else text
        if budget is not None:
            out = out[:budget]
            budget -= len(out)
        await write(out)
        return budget is None or budget > 0

    try:
        f = open(path, "rb")
    except FileNotFoundError:
        if not opts.follow:
            return
        f = None
    try:
        # Without follow the log is read as it was when asked for (a chatty container's later
        # lines would make `--tail 5` print more than five).
        left = os.fstat(f.fileno()).st_size if f is not None and not opts.follow else None
        if f is not None and opts.tail_lines is not None:
            f.seek(_tail_offset(f, opts.tail_lines, left if left is not None else f.seek(0, os.SEEK_END)))
            if left is not None:
                left -= f.tell()
        partial = b""
        last_check = asyncio.get_running_loop().time()
        while True:
            size = 1 << 16 if left is None else min(1 << 16, left)
            chunk = f.read(size) if f is not None and size > 0 else b""
            if left is not None:
                left -= len(chunk)
            if chunk:
                data = partial + chunk
                *lines, partial = data.split(b"\n")
                for raw in lines:
                    line = parse_line(raw)
                    if line is not None and not await emit(line):
                        return
                continue
            if not opts.follow:
                return
            # at EOF: a rotated file means go on in the new one
            try:
                st = path.stat()
            except FileNotFoundError:
                st = None
            if st is not None and (f is None or os.fstat(f.fileno()).st_ino != st.st_ino):
                try:
                    new = open(path, "rb")
                except FileNotFoundError:
                    new = None
                if new is not None:
                    if f is not None:
                        f.close()
                    f, partial = new, b""
                    continue
            now = asyncio.get_running_loop().time()
            if running is not None and now - last_check >= RUNNING_CHECK_EVERY:
                last_check = now
                if not await running():
                    # one more pass: lines written just before the exit
                    chunk = f.read() if f is not None else b""
                    for raw in (partial + chunk).split(b"\n"):
                        line = parse_line(raw)
                        if line is not None and not await emit(line):
                            return
                    return
            await asyncio.sleep(POLL_INTERVAL)
    finally:
        if f is not None:
            f.close()


def rotate(path: str | Path, max_size: int, max_files: int) -> Path | None:
    """Rotate `path` when it has reached `max_size` bytes, keeping at most `max_files` files
    (the live one included). Returns the rotated file's path, or None when nothing was done;
    the caller must then have the runtime reopen `path`."""
    path = Path(path)
    try:
        if path.stat().st_size < max_size:
            return None
    except FileNotFoundError:
        return None
    rotated = []
    for p in path.parent.glob(path.name + ".*"):
        if p.name.endswith(_TMP):
            p.unlink(missing_ok=True)  # a compression cut short
        elif p.is_file():
            rotated.append(p)
    # oldest first: by when they were last written (names can repeat within a second)
    rotated.sort(key=lambda p: (p.stat().st_mtime_ns, p.name))
    cut = max(0, len(rotated) - (max(max_files - 1, 1) - 1))  # leave room for the file rotated now
    for old in rotated[:cut]:
        old.unlink(missing_ok=True)
    for old in rotated[cut:]:
        if not old.name.endswith(_GZ):
            _compress(old)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d-%H%M%S")
    target = path.with_name(f"{path.name}.{stamp}")
    n = 0
    while target.exists() or target.with_name(target.name + _GZ).exists():
        n += 1
        target = path.with_name(f"{path.name}.{stamp}.{n}")
    os.rename(path, target)
    return target


_GZ, _TMP = ".gz", ".tmp"


def _compress(path: Path) -> None:
    """`path` → `path.gz`, written to a temporary name first; its time is kept (files are ordered
    by when they were last written)."""
    done = path.with_name(path.name + _GZ)
    tmp = done.with_name(done.name + _TMP)
    with open(path, "rb") as src, gzip.open(tmp, "wb") as dst:
        shutil.copyfileobj(src, dst)
    st = path.stat()
    os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.rename(tmp, done)
    path.unlink()
