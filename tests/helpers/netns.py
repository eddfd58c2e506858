"""A network namespace of the test's own, with loopback up, removed afterwards even on failure."""
from __future__ import annotations

import contextlib
import secrets
import subprocess
from typing import Iterator


@contextlib.contextmanager
def scratch_netns(prefix: str) -> Iterator[str]:
    """Yields the namespace's path (/run/netns/<prefix>-<random>)."""
    name = f"{prefix}-{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        yield f"/run/netns/{name}"
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)
