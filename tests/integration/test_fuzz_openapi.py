"""Schemathesis against the OpenAPI documents ketch serves: no generated request may make the server fail
(no 5xx, no dropped connection), and every error answer must be a Kubernetes `Status` whose `code` is the
HTTP status, because kubectl and the client libraries decode errors only from that shape.

Generation is derandomized (hypothesis derives its seed from the test, not the clock), shrinking is off and
failures are collected rather than raised, so one run reports every distinct finding with its curl line and
the server's traceback. The fuzzer gets a server of its own: its garbage (random namespaces, half-valid
objects) must not leak into other tests, and a crash must not take the session server down.
"""
from __future__ import annotations

import base64
import re
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests
import schemathesis
import yaml
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.errors import SerializationNotPossible
from schemathesis.core.failures import FailureGroup

from helpers.cluster import Server, start_server, unique
from helpers.http import Api

# The quick run: OpenAPI v3 document -> operation paths it fuzzes (full match).
QUICK_SUBSET = {
    "api/v1": r"/api/v1/(configmaps|pods|services|namespaces(/\{name\}(/status|/finalize)?)?"
              r"|namespaces/\{namespace\}/(configmaps|pods|services)(/\{name\}(/status)?)?)",
    "apis/apps/v1": r"/apis/apps/v1/(deployments|namespaces/\{namespace\}/deployments(/\{name\}(/status|/scale)?)?)",
}
QUICK_EXAMPLES = {GenerationMode.POSITIVE: 6, GenerationMode.NEGATIVE: 4}
# Connections (exec, attach, port-forward), proxies and followed logs are streams or leave loopback's
# semantics; a watch never ends by itself.
STREAMING_PATH = re.compile(r"/watch/|/(proxy|exec|attach|portforward|log)(/\{path\})?$")
ENDLESS_QUERY = ("watch", "follow")
# Objects the fuzzer finds in place, so PUT, PATCH and DELETE reach real objects and not just 404s.
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


@dataclass(frozen=True)
class Credentials:
    """The admin's client certificate, key and the cluster CA as files, which requests needs."""
    url: str
    ca: str
    cert: str
    key: str

    @classmethod
    def from_kubeconfig(cls, kubeconfig: Path, directory: Path) -> Credentials:
        doc = yaml.safe_load(kubeconfig.read_text())
        cluster, user = doc["clusters"][0]["cluster"], doc["users"][0]["user"]
        files = {"ca": cluster["certificate-authority-data"], "cert": user["client-certificate-data"],
                 "key": user["client-key-data"]}
        for name, data in files.items():
            (directory / f"{name}.pem").write_bytes(base64.b64decode(data))
        return cls(url=cluster["server"], **{name: str(directory / f"{name}.pem") for name in files})

    def session(self) -> requests.Session:
        session = requests.Session()
        session.trust_env = False  # no proxy, no REQUESTS_CA_BUNDLE: loopback and our CA only
        session.verify, session.cert = self.ca, (self.cert, self.key)
        return session


def kubernetes_status(ctx, response, case) -> None:
    """An error answer is a `Status` object carrying the HTTP status as `code` and a machine `reason`."""
    if response.status_code < 400 or case.method.upper() == "HEAD":
        return None
    try:
        body = response.json()
    except ValueError:
        raise AssertionError(f"error body is not JSON ({response.headers.get('Content-Type')}): "
                             f"{response.content[:200]!r}") from None
    expected = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": response.status_code}
    wrong = {k: body.get(k) for k, v in expected.items() if not isinstance(body, dict) or body.get(k) != v}
    if wrong or not body.get("reason"):
        raise AssertionError(f"not a Kubernetes Status (expected {expected} and a reason), got {body!r:.300}")
    return None


CHECKS = [not_a_server_error, kubernetes_status]


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

    def schema(self, document: str) -> schemathesis.BaseSchema:
        doc = self.session.get(f"{self.credentials.url}/openapi/v3/{document}",
                               headers={"Accept": "application/json"}, timeout=30).json()
        config = schemathesis.Config.from_dict({
            "base-url": self.credentials.url, "tls-verify": self.credentials.ca,
            "request-cert": self.credentials.cert, "request-cert-key": self.credentials.key,
            "request-timeout": 10, "max-redirects": 0})
        return schemathesis.openapi.from_dict(doc, config=config)

    def operations(self, document: str, pattern: str = ".*") -> Iterator[schemathesis.APIOperation]:
        wanted = re.compile(pattern)
        for result in self.schema(document).get_all_operations():
            operation = result.ok()
            if wanted.fullmatch(operation.path) and is_safe(operation.method.upper(), operation.path):
                yield operation

    def fuzz(self, operation: schemathesis.APIOperation, examples: dict[GenerationMode, int]) -> None:
        pins = {"namespace": self.namespace} if "{namespace}" in operation.path else {}
        if operation.path.startswith("/api/v1/namespaces/{name}"):
            pins["name"] = self.namespace  # never another namespace: kube-system, default...
        seed = None if "name" in pins else seed_resource(operation.path)
        for mode, count in examples.items():
            # Valid input is more telling against a real object; invalid input also gets random names.
            if seed and mode == GenerationMode.POSITIVE:
                self.ensure_seed(seed)
                self._run(operation, mode, {**pins, "name": SEED_NAME}, count)
            else:
                self._run(operation, mode, pins, count)

    def _run(self, operation, mode: GenerationMode, path_parameters: dict, max_examples: int) -> None:
        @given(operation.as_strategy(mode, path_parameters=path_parameters))
        @settings(max_examples=max_examples, derandomize=True, database=None, deadline=None,
                  phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
        def one_case(case: schemathesis.Case) -> None:
            if isinstance(case.query, dict):
                for name in ENDLESS_QUERY:
                    case.query.pop(name, None)
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
                    self._record(operation.label, failure.title + (f": {failure.message}" if failure.message
                                                                     else ""),
                                 response.status_code, case.as_curl_command(verify=False),
                                 response.content[:400].decode(errors="replace"))
        one_case()

    def _record(self, operation: str, problem: str, status: int | None, curl: str, response: str) -> None:
        # Same operation, same status, same complaint (message digits and quotes vary with the input).
        key = (operation, status, re.sub(r"'[^']*'|\d+", "_", problem)[:120])
        if key in self.findings:
            self.findings[key].count += 1
        else:
            self.findings[key] = Finding(operation, problem, status, curl, response)

    def ensure_seed(self, resource: str) -> None:
        base = seed_collection(resource, self.namespace)
        url = f"{self.credentials.url}{base}"
        if self.session.get(f"{url}/{SEED_NAME}", timeout=10).status_code == 404:
            body = {**SEEDS[resource], "metadata": {"name": SEED_NAME}}
            status = self.session.post(url, json=body, timeout=10).status_code
            assert status in (201, 409), f"cannot seed {resource}: {status}"


def is_safe(method: str, path: str) -> bool:
    """Loopback-bounded, terminating, and never deleting anything outside the fuzzer's namespace."""
    if STREAMING_PATH.search(path) or method in ("HEAD", "OPTIONS"):
        return False
    return not (method == "DELETE" and "{namespace}" not in path)


def seed_resource(path: str) -> str | None:
    match = re.search(r"/namespaces/\{namespace\}/(\w+)/\{name\}", path)
    return match.group(1) if match and match.group(1) in SEEDS else None


def seed_collection(resource: str, namespace: str) -> str:
    prefix = "/apis/apps/v1" if resource == "deployments" else "/api/v1"
    return f"{prefix}/namespaces/{namespace}/{resource}"


def server_tracebacks(log: str) -> dict[str, str]:
    """Distinct tracebacks ketch logged as "internal error serving ..." -> the first request that hit it."""
    found: dict[str, str] = {}
    for entry in re.split(r"\n(?=\d{4}-\d\d-\d\d )", log):
        head, _, trace = entry.partition("\n")
        if "internal error serving" in head and trace:
            key = "\n".join(trace.strip().splitlines()[-4:])
            found.setdefault(key, head.split("internal error serving", 1)[1].strip()[:300])
    return found


def report(fuzzer: Fuzzer, log: str) -> str:
    lines = [f"{len(fuzzer.findings)} distinct findings in {fuzzer.requests_sent} requests:"]
    for f in sorted(fuzzer.findings.values(), key=lambda f: (f.status or 0, f.operation)):
        lines += [f"- {f.operation} -> {f.status} (x{f.count}): {f.problem[:300]}",
                  f"    {f.curl[:600]}", f"    response: {f.response[:300]}"]
    for trace, request in server_tracebacks(log).items():
        lines += [f"server traceback, first for {request}:", trace]
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
        credentials = Credentials.from_kubeconfig(fuzz_server.kubeconfig, Path(directory))
        with credentials.session() as session:
            yield Fuzzer(credentials, namespace, session)


def full_log(server: Server) -> str:
    return server.log_path.read_text(errors="replace") if server.log_path else ""


def run_and_assert(fuzzer: Fuzzer, server: Server, subset: dict[str, str],
                   examples: dict[GenerationMode, int], budget: float | None = None) -> None:
    started = time.monotonic()
    for document, pattern in subset.items():
        for operation in fuzzer.operations(document, pattern):
            if budget is not None and time.monotonic() - started > budget:
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
    index = fuzzer.session.get(f"{fuzzer.credentials.url}/openapi/v3", timeout=30).json()["paths"]
    documents = {path: ".*" for path in index if re.fullmatch(r"api/v1|apis/[^/]+/[^/]+", path)}
    run_and_assert(fuzzer, fuzz_server, documents, {GenerationMode.POSITIVE: 4, GenerationMode.NEGATIVE: 3},
                   budget=600)
