"""Layer tar files ↔ overlayfs layer directories.

OCI layers mark deletions with whiteout files (`.wh.NAME`) and opaque directories
(`.wh..wh..opq`); overlayfs marks them with a 0/0 character device and the
`trusted.overlay.opaque` xattr. Unpacking converts the first into the second, so a layer directory
can be a lowerdir as is; `write_diff` converts an upper directory back into a layer tar.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import stat
import tarfile
from pathlib import Path
from typing import BinaryIO

from .errors import ImageError

WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"
OPAQUE_XATTR = "trusted.overlay.opaque"
GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


class _HashingReader:
    """Reads through to `raw` and hashes what passes, to compute a layer's diff id while
    tarfile consumes the decompressed stream."""

    def __init__(self, raw: BinaryIO):
        self.raw, self.sha = raw, hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        self.sha.update(data)
        return data

    def drain(self) -> str:
        while self.read(1 << 20):
            pass
        return "sha256:" + self.sha.hexdigest()


def open_decompressed(path: Path) -> BinaryIO:
    f = open(path, "rb")
    magic = f.read(4)
    f.seek(0)
    if magic.startswith(GZIP_MAGIC):
        return gzip.GzipFile(fileobj=f, mode="rb")  # type: ignore[return-value]
    if magic == ZSTD_MAGIC:
        f.close()
        raise ImageError("zstd-compressed layers are not supported")
    return f


def _safe_name(name: str) -> str:
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ImageError(f"layer entry escapes the layer: {name!r}")
    return "/".join(parts)


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.unlink(path)


def unpack(blob: Path, dest: Path) -> str:
    """Unpack a layer blob (tar, or tar+gzip) into the empty directory `dest` as an overlay layer;
    return its diff id (sha256 of the uncompressed tar)."""
    dest_real = os.path.realpath(dest)
    with open_decompressed(blob) as raw:
        reader = _HashingReader(raw)
        with tarfile.open(fileobj=reader, mode="r|") as tar:  # type: ignore[arg-type]
            for member in tar:
                name = _safe_name(member.name)
                if not name:
                    continue
                parent, _, base = name.rpartition("/")
                parent_path = os.path.join(dest_real, parent)
                # No entry may write through a symlink the layer itself planted.
                if os.path.realpath(parent_path) != os.path.normpath(parent_path):
                    raise ImageError(f"layer entry {member.name!r} lies under a symbolic link")
                if base == OPAQUE_MARKER:
                    os.makedirs(parent_path, exist_ok=True)
                    os.setxattr(parent_path, OPAQUE_XATTR, b"y")
                    continue
                if base.startswith(WHITEOUT_PREFIX):
                    hidden = base[len(WHITEOUT_PREFIX):]
                    if hidden in ("", ".", ".."):   # would remove the layer itself, or its parent
                        raise ImageError(f"layer entry {member.name!r} is not a valid whiteout")
                    os.makedirs(parent_path, exist_ok=True)
                    target = os.path.join(parent_path, hidden)
                    _remove(target)
                    os.mknod(target, stat.S_IFCHR | 0o600, os.makedev(0, 0))
                    continue
                target = os.path.join(dest_real, name)
                if os.path.lexists(target) and not (member.isdir() and os.path.isdir(target)):
                    _remove(target)  # a later entry replaces an earlier one (never writes through it)
                member.name = name
                if member.islnk():
                    member.linkname = _safe_name(member.linkname)
                    # A hard link must name a file of this layer, not one reached through a
                    # symlink the layer planted (that would link, chown and chmod a host file).
                    linked = os.path.join(dest_real, member.linkname)
                    if os.path.realpath(linked) != os.path.normpath(linked):
                        raise ImageError(f"layer entry {member.name!r} links through a symbolic link")
                tar.extract(member, dest_real, set_attrs=True, numeric_owner=True, filter="fully_trusted")
        return reader.drain()


def is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _is_opaque(path: str) -> bool:
    try:
        return os.getxattr(path, OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError:
        return False


class _HashingWriter:
    def __init__(self, raw: BinaryIO):
        self.raw, self.sha, self.size = raw, hashlib.sha256(), 0

    def write(self, data: bytes) -> int:
        self.sha.update(data)
        self.size += len(data)
        return self.raw.write(data)


def write_diff(upper: Path, out: BinaryIO) -> tuple[str, int]:
    """Write the overlay upper directory `upper` as an OCI layer tar to `out` (uncompressed, so
    its digest is its diff id); return (digest, size)."""
    writer = _HashingWriter(out)
    with tarfile.open(fileobj=writer, mode="w|", format=tarfile.PAX_FORMAT) as tar:  # type: ignore[arg-type]
        for dirpath, dirnames, filenames in os.walk(upper):
            dirnames.sort()
            rel_dir = os.path.relpath(dirpath, upper)
            rel_dir = "" if rel_dir == "." else rel_dir + "/"
            if rel_dir and _is_opaque(dirpath):
                tar.addfile(_empty_file(rel_dir + OPAQUE_MARKER))
            for name in sorted(dirnames + filenames):
                path = os.path.join(dirpath, name)
                st = os.lstat(path)
                if is_whiteout(st):
                    tar.addfile(_empty_file(rel_dir + WHITEOUT_PREFIX + name))
                    continue
                info = tar.gettarinfo(path, rel_dir + name)
                info.uname = info.gname = ""
                if info.isreg():
                    with open(path, "rb") as f:
                        tar.addfile(info, f)
                else:
                    tar.addfile(info)
    return "sha256:" + writer.sha.hexdigest(), writer.size


def _empty_file(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mode = 0o644
    return info
