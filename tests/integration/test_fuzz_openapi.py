"""Schemathesis against the OpenAPI documents ketch serves: no generated request may make the server fail
(no 5xx, no dropped connection), and every error answer must be a Kubernetes `Status` whose `code` is the
HTTP status, because kubectl and the client libraries decode errors only from that shape.

Generation is derandomized (hypothesis derives its seed from the test, not the clock), shrinking is off and
failures are collected rather than raised, so one run reports every distinct finding with its curl line and
the server's traceback. The fuzzer gets a server of its own: its garbage (random namespaces, half-valid
objects) must not leak into other tests, and a crash must not take the session server down.
"""
from __future__ import annotations

import re
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.core.errors import SerializationNotPossible
from schemathesis.core.failures import FailureGroup

from helpers.cluster import ROOT, Server, start_server, unique
from helpers.http import Api

sys.path.insert(0, str(ROOT))
# The bounds, the Status check and the log reading are shared with the long run.
from bench.fuzz_openapi import (CHECKS, Credentials, bounded_document, fetch_document,  # noqa: E402
                                kubernetes_status, not_a_server_failure, served_documents, server_tracebacks)

# The quick run: OpenAPI v3 document -> operation paths it fuzzes (full match, as served).
QUICK_SUBSET = {
    "api/v1": r"/api/v1/(configmaps|pods|services|namespaces(/\{name\}(/status|/finalize)?)?"
              r"|namespaces/\{namespace\}/(configmaps|pods|services)(/\{name\}(/status)?)?)",
    "apis/apps/v1": r"/apis/apps/v1/(deployments|namespaces/\{namespace\}/deployments(/\{name\}(/status|/scale)?)?)",
}
QUICK_EXAMPLES = {GenerationMode.POSITIVE: 6, GenerationMode.NEGATIVE: 3}
# Objects the fuzzer finds in place, so valid PUT, PATCH and DELETE reach real objects, not just 404s.
SEEDS = {
    "configmaps": {"apiVersion": "v1", "kind": "ConfigMap", "data": {"k": "v"}},
    "services": {"apiVersion": "v1", "kind": "Service", "spec": {"ports": [{"port": 80}]}},
    "pods": {"apiVersion": "v1", "kind": "Pod", "spec": {"containers": [{"name": "c", "image": "busybox"}]}},
    "deployments": {"apiVersion": "apps/v1", "kind": "Deployment", "spec": {
        "selector": {"matchLabels": {"app": "seed"}},
        "template": {"metadata": {"labels": {"app": "seed"}},
                     "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}},
}
SEED_NAME = "fuzz-seed"


@dataclass
class Finding:
    operation: str
    problem: str
    status: int | None
    curl: str
    response: str
    count: int = 1


@dataclass
class Fuzzer:
    """Drives schemathesis operation by operation against one server, collecting distinct findings."""
    credentials: Credentials
    namespace: str
    session: requests.Session
    findings: dict[tuple, Finding] = field(default_factory=dict)
    requests_sent: int = 0

    def operations(self, document: str, pattern: str = ".*") -> Iterator[schemathesis.APIOperation]:
        """The operations of a served document whose (served) path matches, bounded to our namespace."""
        wanted = re.compile(pattern)
        doc = bounded_document(fetch_document(self.session, self.credentials.url, document), self.namespace,
                               keep=lambda _method, path: bool(wanted.fullmatch(path)))
        config = schemathesis.Config.from_dict({
            "base-url": self.credentials.url, "tls-verify": self.credentials.ca,
            "request-cert": self.credentials.cert, "request-cert-key": self.credentials.key,
            "request-timeout": 10, "max-redirects": 0})
        for result in schemathesis.openapi.from_dict(doc, config=config).get_all_operations():
            yield result.ok()

    def fuzz(self, operation: schemathesis.APIOperation, examples: dict[GenerationMode, int]) -> None:
        seed = self.seed_resource(operation.path)
        for mode, count in examples.items():
            # Valid input tells more against a real object; invalid input also gets random names.
            if seed and mode == GenerationMode.POSITIVE:
                self.ensure_seed(seed)
                self._run(operation, mode, {"name": SEED_NAME}, count)
            else:
                self._run(operation, mode, {}, count)

    def _run(self, operation: schemathesis.APIOperation, mode: GenerationMode, path_parameters: dict,
             max_examples: int) -> None:
        @given(operation.as_strategy(mode, path_parameters=path_parameters))
        @settings(max_examples=max_examples, derandomize=True, database=None, deadline=None,
                  phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
        def one_case(case: schemathesis.Case) -> None:
            self.requests_sent += 1
            try:
                response = case.call(session=self.session)
            except SerializationNotPossible:
                return
            except requests.RequestException as exc:
                self._record(operation.label, f"no response: {type(exc).__name__}: {exc}", None,
                             case.as_curl_command(verify=False), "")
                return
            try:
                case.validate_response(response, checks=CHECKS)
            except FailureGroup as group:
                for failure in group.exceptions:
                    self._record(operation.label, f"{failure.title}: {failure.message}", response.status_code,
                                 case.as_curl_command(verify=False),
                                 response.content[:400].decode(errors="replace"))
        one_case()

    def _record(self, operation: str, problem: str, status: int | None, curl: str, response: str) -> None:
        # Same operation, status and complaint; quoted input and numbers vary from example to example.
        key = (operation, status, re.sub(r"'[^']*'|\d+", "_", problem)[:120])
        if key in self.findings:
            self.findings[key].count += 1
        else:
            self.findings[key] = Finding(operation, problem, status, curl, response)

    def seed_resource(self, path: str) -> str | None:
        match = re.search(rf"/namespaces/{self.namespace}/(\w+)/\{{name\}}", path)
        return match.group(1) if match and match.group(1) in SEEDS else None

    def ensure_seed(self, resource: str) -> None:
        group = "apis/apps/v1" if SEEDS[resource]["apiVersion"] == "apps/v1" else "api/v1"
        url = f"{self.credentials.url}/{group}/namespaces/{self.namespace}/{resource}"
        if self.session.get(f"{url}/{SEED_NAME}", timeout=10).status_code == 404:
            body = {**SEEDS[resource], "metadata": {"name": SEED_NAME}}
            status = self.session.post(url, json=body, timeout=10).status_code
            assert status in (201, 409), f"cannot seed {resource}: {status}"


def report(fuzzer: Fuzzer, log: str) -> str:
    lines = [f"{len(fuzzer.findings)} distinct findings in {fuzzer.requests_sent} requests:"]
    for f in sorted(fuzzer.findings.values(), key=lambda f: (f.status or 0, f.operation)):
        lines += [f"- {f.operation} -> {f.status} (x{f.count}): {f.problem[:300]}",
                  f"    {f.curl[:600]}", f"    response: {f.response[:300]}"]
    for trace in server_tracebacks(log):
        lines += [f"server traceback x{trace.count}, first for {trace.request}:", trace.traceback]
    return "\n".join(lines)


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory) -> Iterator[Server]:
    srv = start_server(tmp_path_factory.mktemp("fuzz"))
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def fuzzer(fuzz_server: Server) -> Iterator[Fuzzer]:
    namespace = unique("fuzz")
    status, body, _ = Api(fuzz_server.kubeconfig).request("POST", "/api/v1/namespaces",
                                                         {"metadata": {"name": namespace}})
    assert status == 201, body
    with tempfile.TemporaryDirectory() as directory:
        credentials = Credentials.write(fuzz_server.kubeconfig, Path(directory))
        with credentials.session() as session:
            yield Fuzzer(credentials, namespace, session)


def full_log(server: Server) -> str:
    return server.log_path.read_text(errors="replace") if server.log_path else ""


def run_and_assert(fuzzer: Fuzzer, server: Server, subset: dict[str, str],
                   examples: dict[GenerationMode, int], budget: float | None = None) -> None:
    deadline = time.monotonic() + (budget if budget is not None else float("inf"))
    for operation in (op for document, pattern in subset.items() for op in fuzzer.operations(document, pattern)):
        if time.monotonic() > deadline:
            break
        fuzzer.fuzz(operation, examples)
    assert fuzzer.requests_sent > 0
    if fuzzer.findings:
        pytest.fail(report(fuzzer, full_log(server)), pytrace=False)


def test_quick_subset_answers_every_request_without_5xx_and_errors_as_status(fuzzer, fuzz_server):
    """configmaps, pods, services, namespaces and deployments: ~50 operations, a few examples each."""
    run_and_assert(fuzzer, fuzz_server, QUICK_SUBSET, QUICK_EXAMPLES)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_every_served_operation_answers_without_5xx_and_errors_as_status(fuzzer, fuzz_server):
    """Every operation of every /openapi/v3 document; bounded by a time budget (bench/fuzz_openapi.py
    runs schemathesis' own phases for longer)."""
    documents = {path: ".*" for path in served_documents(fuzzer.session, fuzzer.credentials.url)}
    run_and_assert(fuzzer, fuzz_server, documents, {GenerationMode.POSITIVE: 4, GenerationMode.NEGATIVE: 3},
                   budget=600)


# ---- the bounds and checks themselves ----------------------------------------------------------

def param(name: str, where: str = "query") -> dict:
    return {"name": name, "in": where, "schema": {"type": "string"}}


def test_bounds_keep_the_fuzzer_in_its_namespace_and_off_streams():
    doc = {"openapi": "3.0.0", "paths": {
        "/api/v1/namespaces/{name}": {"parameters": [param("name", "path")], "get": {}, "delete": {}},
        "/api/v1/namespaces/{namespace}/pods": {"parameters": [param("namespace", "path"), param("pretty")],
                                                "get": {"parameters": [param("watch"), param("limit")]},
                                                "delete": {}},
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
    assert bounded["paths"]["/api/v1/namespaces/fz"]["parameters"] == []
    assert "delete" in doc["paths"]["/api/v1/nodes"]  # the served document is left alone


def response(status: int, body: bytes, content_type: str = "application/json") -> schemathesis.Response:
    return schemathesis.Response(status_code=status, headers={"content-type": [content_type]}, content=body,
                                 request=requests.PreparedRequest(), elapsed=0.0, verify=True)


GET = type("Case", (), {"method": "GET"})()
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
