"""Events expire --event-ttl after their last write (kube-apiserver's event storage), through
store leases that survive a kill -9; other kinds never expire."""
from __future__ import annotations

import time

import pytest
from helpers.cluster import start_server, wait_for

TTL = 3.0


def _event(name: str, api_version: str = "v1") -> str:
    if api_version == "v1":
        return f"""
apiVersion: v1
kind: Event
metadata: {{name: {name}, namespace: default}}
involvedObject: {{kind: Pod, name: p, namespace: default}}
reason: Testing
message: expires
type: Normal
"""
    return f"""
apiVersion: events.k8s.io/v1
kind: Event
metadata: {{name: {name}, namespace: default}}
eventTime: "2026-01-01T00:00:00.000000Z"
reportingController: ketch.io/test
reportingInstance: test-1
action: Testing
reason: Testing
regarding: {{kind: Pod, name: p, namespace: default}}
type: Normal
"""


@pytest.fixture
def ttl_server(tmp_path):
    srv = start_server(tmp_path, extra_args=["--event-ttl", f"{TTL}s", "--disable-controller-manager",
                                             "--disable-scheduler"])
    try:
        yield srv
    finally:
        srv.stop()


def _exists(srv, resource: str, name: str) -> bool:
    got = srv.kubectl("get", resource, name, "-o", "name", check=False)
    if got.returncode != 0 and "NotFound" not in got.stderr:
        raise AssertionError(got.stderr)
    return got.returncode == 0


def test_events_expire_after_their_last_write(ttl_server):
    srv = ttl_server
    t0 = time.monotonic()
    srv.kubectl("create", "-f", "-", input=_event("touched") + "---" + _event("untouched", "events.k8s.io/v1"))
    srv.kubectl("create", "configmap", "stays", "--from-literal=a=b")
    time.sleep(1.5)
    srv.kubectl("patch", "event", "touched", "--type=merge", "-p", '{"count": 2}')
    touched_at = time.monotonic()
    assert _exists(srv, "events.events.k8s.io", "untouched"), "an Event went before its TTL"

    wait_for(lambda: not _exists(srv, "events.events.k8s.io", "untouched"), 15, "the untouched event expiring")
    assert time.monotonic() - t0 >= TTL
    if time.monotonic() - touched_at < TTL:
        assert _exists(srv, "event", "touched"), "the patch did not restart the TTL"
    wait_for(lambda: not _exists(srv, "event", "touched"), 15, "the patched event expiring")
    assert time.monotonic() - touched_at >= TTL
    assert _exists(srv, "configmap", "stays")


def test_an_event_still_expires_after_a_kill_9(ttl_server):
    srv = ttl_server
    srv.kubectl("create", "-f", "-", input=_event("outlives-the-server"))
    srv.kill9()
    srv.start()  # a lost lease would keep the event for ever
    wait_for(lambda: not _exists(srv, "event", "outlives-the-server"), 15, "the event expiring after a restart")
