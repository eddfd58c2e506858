"""Records of sandboxes and containers as JSON files, written atomically (temp file + rename).

They are the runtime's memory across agent restarts: a new process reads them back and, with
conmon's exit files, knows every sandbox and container that the previous one left running.
"""

from __future__ import annotations

import os
from pathlib import Path

import orjson


class RecordStore:
    def __init__(self, directory: Path):
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        return self.directory / f"{key}.json"

    def load_all(self) -> dict[str, dict]:
        out = {}
        for p in self.directory.glob("*.json"):
            try:
                out[p.stem] = orjson.loads(p.read_bytes())
            except (OSError, ValueError):
                continue  # a torn file cannot exist (rename is atomic); skip foreign junk
        return out

    def save(self, key: str, record: dict) -> None:
        path = self._path(key)
        tmp = path.with_name(f".{path.name}.tmp")
        # No fsync: the crash to survive is the agent's (kill -9), after which the page cache
        # still holds the file; rename alone makes the switch atomic.
        tmp.write_bytes(orjson.dumps(record))
        os.replace(tmp, path)

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)


def write_atomic(path: Path, data: bytes) -> None:
    """Replace a small file in one step (for files that containers bind-mount read-only)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
