"""tmpfs mounts for memory-backed volumes, and finding what is mounted under a directory.

mount(2) and umount2(2) through libc: no `mount` process per volume, so a pod with a secret
and a token volume costs two syscalls, not two forks.
"""
from __future__ import annotations

import ctypes
import errno
import os
from pathlib import Path

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
MNT_DETACH = 2


def _unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as octal."""
    return (field.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\"))


def mounts_under(base: Path) -> list[tuple[Path, str]]:
    """(mount point, fs type) of every mount at or below base, deepest first."""
    base_s = os.path.realpath(base)
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            point = _unescape(fields[4])
            fstype = fields[fields.index("-") + 1]
            if point == base_s or point.startswith(base_s.rstrip("/") + "/"):
                found.append((Path(point), fstype))
    found.sort(key=lambda m: len(m[0].parts), reverse=True)
    return found


def mount_type(path: Path) -> str | None:
    """The fs type mounted exactly at path (the topmost one), or None."""
    real = os.path.realpath(path)
    kind = None
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if _unescape(fields[4]) == real:
                kind = fields[fields.index("-") + 1]
    return kind


def mount_tmpfs(target: Path, size_bytes: int | None) -> None:
    options = f"size={size_bytes}" if size_bytes else ""
    if _libc.mount(b"tmpfs", os.fsencode(target), b"tmpfs", 0, options.encode() or None) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount failed: {os.strerror(err)}", str(target))


def unmount(target: Path) -> None:
    """umount, lazily if busy (a process still has a file open there), ignoring 'not mounted'."""
    path = os.fsencode(target)
    if _libc.umount2(path, 0) == 0:
        return
    err = ctypes.get_errno()
    if err == errno.EBUSY and _libc.umount2(path, MNT_DETACH) == 0:
        return
    err = ctypes.get_errno() if err == errno.EBUSY else err
    if err in (errno.EINVAL, errno.ENOENT):  # not a mount point (any more)
        return
    raise OSError(err, f"unmount failed: {os.strerror(err)}", str(target))
