"""The kubelet's AtomicWriter (pkg/volume/util/atomic_writer.go): a directory of projected files
that readers always see whole, before or after an update, never half of each.

Layout of a target directory:

    ..2026_12_01_17_45_27.1234567890/   the current payload, one timestamped directory per version
    ..data -> ..2026_12_01_17_45_27.1234567890
    key -> ..data/key                    each top-level entry the user sees goes through ..data

An update writes a new timestamped directory, points `..data_tmp` at it and renames that over
`..data` (one atomic rename). The directory it replaced stays until the next update, which removes
every version but the new one and its predecessor: a reader whose path walk read `..data` just before
the rename still finds its file (upstream removes it at once, and such a reader sees ENOENT).
"""
from __future__ import annotations

import os
import posixpath
import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

DATA_DIR = "..data"
NEW_DATA_DIR = "..data_tmp"
MAX_FILE_NAME_LENGTH = 255
MAX_PATH_LENGTH = 4096


class PayloadError(ValueError):
    """A payload path the writer refuses; str() is upstream's message."""


@dataclass
class FileProjection:
    data: bytes
    mode: int
    fs_user: int | None = None


def validate_path(target: str) -> None:
    if not target:
        raise PayloadError(f'invalid path: must not be empty: "{target}"')
    if target.startswith("/"):
        raise PayloadError(f"invalid path: must be relative path: {target}")
    if len(target) > MAX_PATH_LENGTH:
        raise PayloadError(f"invalid path: must be less than or equal to {MAX_PATH_LENGTH} characters")
    items = target.split("/")
    for item in items:
        if item == "..":
            raise PayloadError(f"invalid path: must not contain '..': {target}")
        if len(item) > MAX_FILE_NAME_LENGTH:
            raise PayloadError(f"invalid path: filenames must be less than or equal to {MAX_FILE_NAME_LENGTH} characters")
    if items[0].startswith("..") and len(items[0]) > 2:
        raise PayloadError(f"invalid path: must not start with '..': {target}")


def clean_payload(payload: dict[str, FileProjection]) -> dict[str, FileProjection]:
    cleaned = {}
    for path, projection in payload.items():
        validate_path(path)
        cleaned[posixpath.normpath(path)] = projection
    return cleaned


class AtomicWriter:
    def __init__(self, target_dir: Path):
        self.target = Path(target_dir)

    def current_dir(self) -> Path | None:
        try:
            return self.target / os.readlink(self.target / DATA_DIR)
        except FileNotFoundError:
            return None

    def write(self, payload: dict[str, FileProjection], set_perms: Callable[[str], None] | None = None) -> bool:
        """Project the payload; returns whether a new version was written (False: content unchanged)."""
        payload = clean_payload(payload)
        old = self.current_dir()
        to_remove = self._paths_to_remove(payload, old) if old else set()
        changed = old is None or self._differs(payload, old)
        if changed:
            ts_dir = self._new_timestamp_dir()
            try:
                self._write_payload(payload, ts_dir)
                if set_perms is not None:
                    set_perms(ts_dir.name)
                tmp_link = self.target / NEW_DATA_DIR
                if tmp_link.is_symlink():
                    tmp_link.unlink()
                os.symlink(ts_dir.name, tmp_link)
                os.rename(tmp_link, self.target / DATA_DIR)
            except BaseException:
                shutil.rmtree(ts_dir, ignore_errors=True)
                raise
        self._create_user_visible(payload)
        self._remove_user_visible(to_remove)
        if changed:
            self._remove_versions_except({ts_dir.name, old.name if old else None})
        return changed

    # --- steps ---

    def _remove_versions_except(self, keep: set[str | None]) -> None:
        """Remove timestamped directories (any `..` directory: no payload path may start so)."""
        with os.scandir(self.target) as entries:
            for entry in entries:
                if entry.name.startswith("..") and entry.name not in keep and entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path, ignore_errors=True)

    def _new_timestamp_dir(self) -> Path:
        prefix = time.strftime("..%Y_%m_%d_%H_%M_%S.", time.gmtime())
        while True:  # os.MkdirTemp's naming: the prefix and a random decimal
            path = self.target / f"{prefix}{random.getrandbits(32)}"
            try:
                path.mkdir()
            except FileExistsError:
                continue
            os.chmod(path, 0o755)
            return path

    @staticmethod
    def _write_payload(payload: dict[str, FileProjection], ts_dir: Path) -> None:
        for rel, projection in payload.items():
            full = ts_dir / rel
            full.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
            fd = os.open(full, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, projection.mode)
            try:
                os.write(fd, projection.data)
                os.fchmod(fd, projection.mode)  # exact mode whatever the umask
                if projection.fs_user is not None:
                    os.fchown(fd, projection.fs_user, -1)
            finally:
                os.close(fd)

    @staticmethod
    def _differs(payload: dict[str, FileProjection], old: Path) -> bool:
        """shouldWritePayload: content only (as upstream, a mode-only change is not rewritten)."""
        for rel, projection in payload.items():
            try:
                if (old / rel).read_bytes() != projection.data:
                    return True
            except OSError:
                return True
        return False

    @staticmethod
    def _paths_to_remove(payload: dict[str, FileProjection], old: Path) -> set[str]:
        """Every old path (files and their parent directories) the new payload no longer has."""
        existing = set()
        for dirpath, dirnames, filenames in os.walk(old):
            rel_dir = os.path.relpath(dirpath, old)
            for name in dirnames + filenames:
                existing.add(os.path.normpath(os.path.join(rel_dir, name)))
        wanted = set()
        for rel in payload:
            parts = rel.split("/")
            for i in range(1, len(parts) + 1):
                wanted.add("/".join(parts[:i]))
        return existing - wanted

    def _create_user_visible(self, payload: dict[str, FileProjection]) -> None:
        for rel in payload:
            top = rel.split("/", 1)[0]
            link = self.target / top
            if not link.is_symlink() and not link.exists():
                os.symlink(os.path.join(DATA_DIR, top), link)

    def _remove_user_visible(self, paths: set[str]) -> None:
        for rel in paths:
            if "/" in rel:
                continue  # nested paths vanish with the old timestamped directory
            link = self.target / rel
            if link.is_symlink():
                link.unlink()
