"""Schemathesis against the OpenAPI documents ketch serves: no generated request may make the server fail
(no 5xx), and every error answer must be a Kubernetes `Status` whose `code` is the HTTP status, because
kubectl and the client libraries decode errors only from that shape.

schemathesis runs in this process (bench/fuzz_openapi.py's `Run`: coverage and fuzzing phases, a fixed seed,
no example database, a fixed number of examples, one worker) on the served documents bounded to a namespace
of the test's own (`bounded_document`); with a fixed namespace name on a fresh server a run repeats itself.
The fuzzer gets a server of its own: its garbage (random namespaces, half-valid objects) must not leak into
other tests, and a crash must not take the session server down. A failure lists each failing operation with
schemathesis' curl line, then the server's tracebacks.
"""
from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
import requests
import schemathesis

from helpers.cluster import ROOT, Server, start_server

sys.path.insert(0, str(ROOT))
# The bounds, the checks and the run are shared with the long run.
from bench.fuzz_openapi import (Credentials, Run, bounded_document, junit_failures,  # noqa: E402
                                kubernetes_status, merged_document, not_a_server_failure, served_documents,
                                server_tracebacks)

# Objects the fuzzer finds in place, so PUT, PATCH and DELETE reach real objects, not only 404s.
SEED_NAME = "fuzz-seed"
QUICK_DOCUMENTS = ["api/v1", "apis/apps/v1"]
QUICK_PATHS = (r"/api/v1/(configmaps|pods|services|namespaces(/\{name\}(/status|/finalize)?)?"
               r"|namespaces/\{namespace\}/(configmaps|pods|services)(/\{name\})?)"
               r"|/apis/apps/v1/(deployments|namespaces/\{namespace\}/deployments(/\{name\}(/scale)?)?)")
QUICK_RUN = Run(phases="coverage,fuzzing", max_examples=15, names=(SEED_NAME,),
                no_coverage=r"^(POST|PUT) .*/(pods|deployments)(/\{name\})?$|^PUT .*/status$")
SEEDS = {
    "api/v1/namespaces/{ns}/configmaps": {"apiVersion": "v1", "kind": "ConfigMap", "data": {"k": "v"}},
    "api/v1/namespaces/{ns}/services": {"apiVersion": "v1", "kind": "Service", "spec": {"ports": [{"port": 80}]}},
    "api/v1/namespaces/{ns}/pods": {"apiVersion": "v1", "kind": "Pod",
                                    "spec": {"containers": [{"name": "c", "image": "busybox"}]}},
    "apis/apps/v1/namespaces/{ns}/deployments": {"apiVersion": "apps/v1", "kind": "Deployment", "spec": {
        "selector": {"matchLabels": {"app": "seed"}},
        "template": {"metadata": {"labels": {"app": "seed"}},
                     "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}},
}


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory) -> Iterator[Server]:
    srv = start_server(tmp_path_factory.mktemp("fuzz"))
    try:
        yield srv
    finally:
        srv.stop()


def fuzz(server: Server, out: Path, namespace: str, run: Run, documents: list[str] | None,
         paths: str = ".*") -> None:
    """Bound the served documents to a new namespace, seed it, run schemathesis, fail with what it found."""
    credentials = Credentials.write(server.kubeconfig, out)
    with credentials.session() as session:
        created = session.post(f"{credentials.url}/api/v1/namespaces", json={"metadata": {"name": namespace}},
                               timeout=10)
        assert created.status_code == 201, created.text
        for collection, body in SEEDS.items():
            url = f"{credentials.url}/{collection.format(ns=namespace)}"
            seeded = session.post(url, json={**body, "metadata": {"name": SEED_NAME}}, timeout=10)
            assert seeded.status_code == 201, seeded.text
        documents = documents or served_documents(session, credentials.url)
        doc = bounded_document(merged_document(session, credentials.url, documents), namespace,
                               keep=lambda _method, path: re.fullmatch(paths, path) is not None)
    assert doc["paths"], f"no operation of {documents} matches {paths}"
    code = run(doc, credentials, out / "schemathesis")
    failures = junit_failures(out / "schemathesis" / "junit.xml")
    if failures or code:
        lines = [f"schemathesis exit status {code}, {len(failures)} failing operations:"]
        for failure in failures:
            lines += [f"--- {failure.operation}", failure.text[:3000]]
        log = server.log_path.read_text(errors="replace") if server.log_path else ""
        for trace in server_tracebacks(log):
            lines += [f"--- server traceback x{trace.count}, first for {trace.request}", trace.traceback]
        pytest.fail("\n".join(lines), pytrace=False)


def test_quick_subset_answers_without_5xx_and_errors_as_status(fuzz_server, tmp_path):
    """configmaps, pods, services, namespaces and deployments: 43 operations, the coverage phase (but for
    PodSpec-sized bodies) and 15 fuzzed examples each; about 45 s."""
    fuzz(fuzz_server, tmp_path, "fuzz-quick", QUICK_RUN, QUICK_DOCUMENTS, QUICK_PATHS)


@pytest.mark.fuzz
@pytest.mark.timeout(900)
def test_every_served_operation_answers_without_5xx_and_errors_as_status(fuzz_server, tmp_path):
    """Every operation of every /openapi/v3 document, within 10 minutes (bench/fuzz_openapi.py goes on
    for longer)."""
    fuzz(fuzz_server, tmp_path, "fuzz-all", Run(phases="examples,coverage,fuzzing", max_examples=20, max_time=600,
                                               names=(SEED_NAME,)), None)


# ---- the bounds and checks themselves ----------------------------------------------------------

def param(name: str, where: str = "query") -> dict:
    return {"name": name, "in": where, "schema": {"type": "string"}}


def test_bounds_keep_the_fuzzer_in_its_namespace_and_off_streams():
    doc = {"openapi": "3.0.0", "paths": {
        "/api/v1/namespaces/{name}": {"parameters": [param("name", "path")], "get": {}, "delete": {}},
        "/api/v1/namespaces/{namespace}/pods": {"parameters": [param("namespace", "path"), param("pretty")],
                                                "get": {"parameters": [param("watch"), param("limit")]},
                                                "delete": {"requestBody": {"content": {"*/*": {}}}}},
        "/api/v1/nodes": {"get": {}, "delete": {}},
        "/api/v1/watch/namespaces/{namespace}/pods": {"get": {}},
        "/api/v1/namespaces/{namespace}/pods/{name}/exec": {"get": {}, "post": {}},
        "/api/v1/namespaces/{namespace}/services/{name}/proxy/{path}": {"get": {}, "head": {}},
    }}
    bounded = bounded_document(doc, "fz")
    assert {path: sorted(item.keys() - {"parameters"}) for path, item in bounded["paths"].items()} == {
        "/api/v1/namespaces/fz": ["get"], "/api/v1/namespaces/fz/pods": ["delete", "get"], "/api/v1/nodes": ["get"]}
    pods = bounded["paths"]["/api/v1/namespaces/fz/pods"]
    assert pods["parameters"] == [param("pretty")] and pods["get"]["parameters"] == [param("limit")]
    assert list(pods["delete"]["requestBody"]["content"]) == ["application/json", "application/yaml"]
    assert bounded["paths"]["/api/v1/namespaces/fz"]["parameters"] == []
    assert "delete" in doc["paths"]["/api/v1/nodes"]  # the served document is left alone


def response(status: int, body: bytes, content_type: str = "application/json") -> schemathesis.Response:
    return schemathesis.Response(status_code=status, headers={"content-type": [content_type]}, content=body,
                                 request=requests.PreparedRequest(), elapsed=0.0, verify=True)


GET = SimpleNamespace(method="GET")  # all the checks read of the case
NOT_FOUND = b'{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"x","reason":"NotFound","code":404}'


@pytest.mark.parametrize("answer", [
    response(404, b"404: Not Found", "text/plain"),
    response(404, NOT_FOUND.replace(b'"reason":"NotFound",', b"")),
    response(400, NOT_FOUND),
    response(404, NOT_FOUND.replace(b'"kind":"Status"', b'"kind":"ConfigMap"')),
    response(500, b"[]"),
])
def test_the_status_check_rejects_errors_kubectl_cannot_decode(answer):
    with pytest.raises(AssertionError):
        kubernetes_status(None, answer, GET)


def test_the_status_check_accepts_a_status_and_any_success():
    assert kubernetes_status(None, response(404, NOT_FOUND), GET) is None
    assert kubernetes_status(None, response(200, b"not even json"), GET) is None


def test_a_read_ahead_of_the_store_is_the_504_kubernetes_answers_by_design():
    ahead = b'{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"Timeout","code":504,' \
            b'"message":"Too large resource version: 1000, current: 44"}'
    assert not_a_server_failure(None, response(504, ahead), GET) is None
