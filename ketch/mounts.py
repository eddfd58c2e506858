"""mount(2) and umount2(2) through libc, for the image store's overlays and the agent's tmpfs
volumes: a syscall each, not a `mount` process."""
from __future__ import annotations

import ctypes
import errno
import os
from pathlib import Path

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
MNT_DETACH = 2
MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_BIND = 2, 4, 8, 4096


def mount(source: str | os.PathLike, target: Path | str, fstype: str | None, options: str = "",
          flags: int = 0) -> None:
    if _libc.mount(os.fsencode(source), os.fsencode(target), fstype.encode() if fstype else None, flags,
                   options.encode() or None) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {fstype or 'bind'} failed: {os.strerror(err)}", str(target))


def unmount(target: Path | str, lazy: bool = False) -> None:
    """umount (lazily when asked, or when busy: a process still has a file open there), ignoring
    'not mounted'."""
    path = os.fsencode(target)
    if _libc.umount2(path, MNT_DETACH if lazy else 0) == 0:
        return
    err = ctypes.get_errno()
    if err == errno.EBUSY and _libc.umount2(path, MNT_DETACH) == 0:
        return
    err = ctypes.get_errno() if err == errno.EBUSY else err
    if err in (errno.EINVAL, errno.ENOENT):  # not a mount point (any more)
        return
    raise OSError(err, f"unmount failed: {os.strerror(err)}", str(target))
