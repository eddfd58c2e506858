"""Fixtures shared by the suite: a real `ketch server` on loopback and real kubectl binaries."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from helpers.cluster import Server, start_server  # noqa: E402


@pytest.fixture(scope="session")
def server(tmp_path_factory) -> Server:
    """One API server for the whole session (tests use their own namespaces)."""
    srv = start_server(tmp_path_factory.mktemp("ketch"))
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def fresh_server(tmp_path) -> Server:
    """A server of the test's own, for tests that restart or kill it."""
    srv = start_server(tmp_path)
    try:
        yield srv
    finally:
        srv.stop()
