"""tmpfs mounts for memory-backed volumes, and finding what is mounted under a directory."""
from __future__ import annotations

import os
from pathlib import Path

from ...mounts import mount, unmount  # noqa: F401 - unmount is part of this module's surface


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
    mount("tmpfs", target, "tmpfs", f"size={size_bytes}" if size_bytes else "")
