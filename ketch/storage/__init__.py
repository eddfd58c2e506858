"""The revisioned store the API server keeps every object in (etcd v3 shaped)."""

from __future__ import annotations

from pathlib import Path

from ketch.storage.interface import (
    DELETE,
    PUT,
    CompactedError,
    ConflictError,
    Event,
    FutureRevisionError,
    KeyExistsError,
    KeyNotFoundError,
    KeyValue,
    LeaseNotFoundError,
    RangeResult,
    Store,
    StoreError,
    Watch,
)
from ketch.storage.sqlite import SQLiteStore

__all__ = [
    "DELETE",
    "PUT",
    "CompactedError",
    "ConflictError",
    "Event",
    "FutureRevisionError",
    "KeyExistsError",
    "KeyNotFoundError",
    "KeyValue",
    "LeaseNotFoundError",
    "RangeResult",
    "SQLiteStore",
    "Store",
    "StoreError",
    "Watch",
    "open_store",
]

SQLITE_SCHEME = "sqlite://"


def open_store(endpoint: str) -> Store:
    """A (not yet started) store for an endpoint: `sqlite:///abs/path.db` or a file path."""
    if endpoint.startswith(SQLITE_SCHEME):
        path = endpoint[len(SQLITE_SCHEME) :]
        if not path.startswith("/"):
            raise ValueError(
                f"sqlite endpoint needs an absolute path (sqlite:///abs/path.db): {endpoint!r}"
            )
        return SQLiteStore(path)
    if "://" in endpoint:
        scheme = endpoint.split("://", 1)[0]
        raise ValueError(
            f"unsupported store endpoint scheme {scheme!r} in {endpoint!r}: "
            "use sqlite:///abs/path.db or a file path"
        )
    if not endpoint:
        raise ValueError(
            "store endpoint is empty: use sqlite:///abs/path.db or a file path"
        )
    return SQLiteStore(str(Path(endpoint)))
