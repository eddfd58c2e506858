"""hostPath type checks (pkg/volume/hostpath checkType) with the kubelet's messages."""
from __future__ import annotations

import os
import stat


class HostPathError(Exception):
    pass


def _mode(path: str) -> int | None:
    try:
        return os.stat(path).st_mode
    except FileNotFoundError:
        return None


def check_type(path: str, kind: str | None) -> None:
    """Create (…OrCreate) or check the path as its declared type; "" or None checks nothing."""
    if not kind:
        return
    mode = _mode(path)
    if kind == "DirectoryOrCreate":
        if mode is None and not os.path.lexists(path):
            os.makedirs(path, 0o755, exist_ok=True)
            return
        kind = "Directory"
    elif kind == "FileOrCreate":
        if mode is None and not os.path.lexists(path):
            try:  # the parent is not created, as upstream
                os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o644))
            except OSError as err:
                raise HostPathError(f"open {path}: {err.strerror.lower()}") from None
            return
        kind = "File"
    checks = {
        "Directory": (stat.S_ISDIR, "a directory"),
        "File": (stat.S_ISREG, "a file"),
        "Socket": (stat.S_ISSOCK, "a socket file"),
        "CharDevice": (stat.S_ISCHR, "a character device"),
        "BlockDevice": (stat.S_ISBLK, "a block device"),
    }
    if kind not in checks:
        raise HostPathError(f"{kind} is an invalid volume type")
    test, what = checks[kind]
    if mode is None or not test(mode):
        raise HostPathError(f"hostPath type check failed: {path} is not {what}")
