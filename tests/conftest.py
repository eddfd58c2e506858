"""Fixtures shared by the suite: a real `ketch server` on loopback and real kubectl binaries."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from helpers.cluster import Server, Simulator, start_server  # noqa: E402


@pytest.fixture(scope="session")
def _session_cluster(tmp_path_factory) -> tuple[Server, Simulator]:
    srv = start_server(tmp_path_factory.mktemp("ketch"))
    sim = None
    try:
        sim = Simulator(srv, nodes=3, name_prefix="sim-").start()
        yield srv, sim
    finally:
        if sim is not None:
            sim.stop()
        srv.stop()


@pytest.fixture(scope="session")
def server(_session_cluster) -> Server:
    """One API server for the whole session (tests use their own namespaces). It always has three
    simulated nodes, as a cluster has nodes: pods are scheduled and run unless a test keeps them
    from it (a scheduler name nobody serves, a nodeSelector no node matches)."""
    return _session_cluster[0]


@pytest.fixture
def fresh_server(tmp_path) -> Server:
    """A server of the test's own, for tests that restart or kill it."""
    srv = start_server(tmp_path)
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="session")
def simulated_nodes(_session_cluster) -> Simulator:
    """The session server's three simulated nodes, sim-0..sim-2 (zones sim-a..sim-c, 4 cpu, 16Gi,
    110 pods): pods bound to them go Running and Ready at once (see ketch/simulate for annotations)."""
    return _session_cluster[1]


@pytest.fixture
def simulator():
    """Start simulators of the test's own: `simulator(fresh_server, nodes=2, name_prefix="a-",
    extra_args=[...])` returns a started Simulator; every one is stopped after the test."""
    started: list[Simulator] = []

    def start(srv: Server, nodes: int = 3, name_prefix: str = "sim-", extra_args: list[str] | None = None
              ) -> Simulator:
        sim = Simulator(srv, nodes=nodes, name_prefix=name_prefix, extra_args=extra_args or [])
        started.append(sim)
        return sim.start()

    try:
        yield start
    finally:
        for sim in started:
            sim.stop()
