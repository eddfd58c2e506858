"""Paths inside a container root filesystem, resolved as the container would see them: a
symlink (even an absolute one) never leads outside the root. The builder writes COPY/ADD files
and reads /etc/passwd through this."""
from __future__ import annotations

import os
from pathlib import Path

_MAX_LINKS = 40


def resolve(root: Path, path: str) -> Path:
    """The host path of `path` (absolute inside `root`), every symlink followed within `root`;
    components that do not exist yet are kept as they are."""
    root = Path(os.path.realpath(root))
    parts = [p for p in path.split("/") if p not in ("", ".")]
    current: list[str] = []
    links = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            if current:
                current.pop()
            continue
        candidate = root.joinpath(*current, part)
        if candidate.is_symlink():
            links += 1
            if links > _MAX_LINKS:
                raise OSError(f"too many levels of symbolic links in {path}")
            target = os.readlink(candidate)
            if target.startswith("/"):
                current = []
            parts = [p for p in target.split("/") if p not in ("", ".")] + parts
            continue
        current.append(part)
    return root.joinpath(*current)
