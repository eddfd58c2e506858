"""Long schemathesis run over every operation a fresh `ketch server` serves, to find 5xx answers and error
answers that are not a Kubernetes `Status`.

All /openapi/v3 group-version documents are merged into one OpenAPI 3.0 document (they share component
names) and bounded before schemathesis sees it (`bounded_document`): streaming and proxy operations are
dropped, as are DELETEs outside a namespace (namespace deletion, cluster-scoped delete-collection), the
namespace is written into the paths, `watch`/`follow` are removed and request bodies are declared as JSON
and YAML (the spec says */*), so no request can reach beyond the fuzzer's own namespace or hang. The
schemathesis CLI then runs in this process (`Run`) its examples, coverage and fuzzing phases (stateful off:
links could carry other namespaces' names) with `not_a_server_failure` (schemathesis' `not_a_server_error`
but for Kubernetes' own 504 to a resourceVersion ahead of the store) and `kubernetes_status`, under a time
limit. The server listens on loopback only and is killed by PID when the script ends.

    .venv/bin/python bench/fuzz_openapi.py                            # everything, 15 minutes
    .venv/bin/python bench/fuzz_openapi.py --max-time 120 --paths '/(pods|configmaps)'

The exit status is schemathesis'; the distinct tracebacks of the server log are printed at the end and the
JUnit report (a curl line per failure) is kept in --report-dir.
"""
from __future__ import annotations

import argparse
import copy
import json
import re
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from xml.etree import ElementTree

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import requests  # noqa: E402
import schemathesis  # noqa: E402
from hypothesis.configuration import set_hypothesis_home_dir  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402

from bench import _common as common  # noqa: E402
from ketch.client import kubeconfig  # noqa: E402

# Connections (exec, attach, port-forward), proxies and logs stream or forward; a watch never ends.
STREAMING_PATH = re.compile(r"/watch/|/(proxy|exec|attach|portforward|log)(/\{path\})?$")
ENDLESS_QUERY = frozenset({"watch", "follow"})
HTTP_METHODS = ("get", "put", "post", "delete", "patch")
BODY_MEDIA_TYPES = ("application/json", "application/yaml")


# ---- shared with tests/integration/test_fuzz_openapi.py ----------------------------------------

@dataclass(frozen=True)
class Credentials:
    """The admin's client certificate and key and the cluster CA as files: requests and the schemathesis
    CLI take paths, not PEM data."""
    url: str
    ca: str
    cert: str
    key: str

    @classmethod
    def write(cls, kubeconfig_path: Path, directory: Path) -> Credentials:
        config = kubeconfig.load(kubeconfig_path)
        paths = {}
        for name, pem in (("ca", config.ca_pem), ("cert", config.cert_pem), ("key", config.key_pem)):
            paths[name] = directory / f"{name}.pem"
            paths[name].write_bytes(pem or b"")
        return cls(url=config.server, **{name: str(path) for name, path in paths.items()})

    def session(self) -> requests.Session:
        session = requests.Session()
        session.trust_env = False  # no proxy, no REQUESTS_CA_BUNDLE: loopback and our CA only
        session.verify, session.cert = self.ca, (self.cert, self.key)
        return session


def is_safe(method: str, path: str) -> bool:
    """Terminating, not forwarding, and never deleting anything outside the fuzzer's namespace."""
    if STREAMING_PATH.search(path) or method.lower() not in HTTP_METHODS:
        return False
    return not (method.lower() == "delete" and "{namespace}" not in path)


def bounded_document(doc: dict, namespace: str, keep: Callable[[str, str], bool] = lambda m, p: True) -> dict:
    """`doc` with only the safe operations `keep` accepts, `namespace` written into the paths (for
    /api/v1/namespaces/{name}... too: never default or kube-system), no watch/follow parameters and
    request bodies in the media types the server decodes."""
    bounded = {**doc, "paths": {}}
    for path, item in doc["paths"].items():
        operations = {m: op for m, op in item.items() if is_safe(m, path) and keep(m, path)}
        if not operations:
            continue
        pinned = {"namespace"} | ({"name"} if path.startswith("/api/v1/namespaces/{name}") else set())
        new_item = {m: _without_parameters(op, pinned) for m, op in operations.items()}
        if "parameters" in item:
            new_item["parameters"] = _without(item["parameters"], pinned)
        bounded["paths"][_pin(path, pinned, namespace)] = new_item
    return bounded


def _pin(path: str, pinned: set[str], namespace: str) -> str:
    for name in pinned:
        path = path.replace(f"{{{name}}}", namespace)
    return path


def _without_parameters(operation: dict, pinned: set[str]) -> dict:
    operation = copy.copy(operation)
    if "parameters" in operation:
        operation["parameters"] = _without(operation["parameters"], pinned)
    content = operation.get("requestBody", {}).get("content", {})
    if "*/*" in content:
        # go-restful publishes */*; the server reads JSON and YAML (and protobuf, which schemathesis cannot
        # write). Naming them sends generated bodies to the decoder instead of to a 415.
        body = {media: content["*/*"] for media in BODY_MEDIA_TYPES}
        operation["requestBody"] = {**operation["requestBody"], "content": body}
    return operation


def _without(parameters: list[dict], pinned: set[str]) -> list[dict]:
    return [p for p in parameters if not (p.get("in") == "path" and p.get("name") in pinned)
            and not (p.get("in") == "query" and p.get("name") in ENDLESS_QUERY)]


UINT64_MAX = 2**64 - 1


def _json(response: schemathesis.Response) -> object:
    try:
        return json.loads(response.content)
    except ValueError:
        return None


def not_a_server_failure(ctx, response, case) -> None:  # noqa: ANN001 (schemathesis check signature)
    """schemathesis' `not_a_server_error`, but for the one 5xx Kubernetes answers by design: 504 Timeout
    to a read at a resourceVersion (a valid uint64) the store has not reached yet."""
    body = _json(response)
    if response.status_code == 504 and isinstance(body, dict) and body.get("reason") == "Timeout":
        ahead = re.fullmatch(r"Too large resource version: (\d+), current: \d+", str(body.get("message")))
        if ahead and int(ahead[1]) <= UINT64_MAX:
            return None
    return not_a_server_error(ctx, response, case)


def kubernetes_status(ctx, response, case) -> None:  # noqa: ANN001 (schemathesis check signature)
    """An error answer is a `Status` object carrying the HTTP status as `code` and a machine `reason`:
    kubectl and the client libraries decode errors only from that shape."""
    if response.status_code < 400 or case.method.upper() == "HEAD":
        return None
    body = _json(response)
    if body is None:
        content_type = ", ".join(response.headers.get("content-type", []))
        raise AssertionError(f"error body is not JSON ({content_type}): {response.content[:200]!r}")
    expected = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": response.status_code}
    if not isinstance(body, dict) or any(body.get(k) != v for k, v in expected.items()) or not body.get("reason"):
        raise AssertionError(f"not a Kubernetes Status (expected {expected} and a reason), got {body!r:.300}")
    return None


CHECKS = [not_a_server_failure, kubernetes_status]


@dataclass
class ServerTraceback:
    request: str  # the first request that hit it
    traceback: str
    count: int = 1


def server_tracebacks(log: str) -> list[ServerTraceback]:
    """The distinct tracebacks ketch logged as "internal error serving <request>": the same innermost
    frame and exception type is one bug, whatever the input's type or value in the message."""
    found: dict[tuple[str, str], ServerTraceback] = {}
    for entry in re.split(r"\n(?=\d{4}-\d\d-\d\d )", log):
        head, _, trace = entry.partition("\n")
        frames = re.findall(r'^\s*File "[^"]+", line \d+, in \S+', trace, re.M)
        if "internal error serving" not in head or not frames:
            continue
        key = (frames[-1].strip(), trace.strip().splitlines()[-1].split(":", 1)[0])
        if key in found:
            found[key].count += 1
        else:
            found[key] = ServerTraceback(head.split("internal error serving", 1)[1].strip()[:300], trace.strip())
    return list(found.values())


def served_documents(session: requests.Session, url: str) -> list[str]:
    """The group-version documents /openapi/v3 lists: "api/v1", "apis/apps/v1", ..."""
    index = session.get(f"{url}/openapi/v3", timeout=30).json()["paths"]
    return [path for path in index if re.fullmatch(r"api/v1|apis/[^/]+/[^/]+", path)]


def fetch_document(session: requests.Session, url: str, path: str) -> dict:
    response = session.get(f"{url}/openapi/v3/{path}", headers={"Accept": "application/json"}, timeout=30)
    response.raise_for_status()
    return response.json()


def merged_document(session: requests.Session, url: str, documents: list[str]) -> dict:
    """One OpenAPI 3.0 document with the paths and components of the served group-version documents."""
    merged: dict = {"openapi": "3.0.0", "info": {"title": "ketch", "version": "v1"}, "paths": {},
                    "components": {"schemas": {}}}
    for path in documents:
        doc = fetch_document(session, url, path)
        merged["paths"].update(doc["paths"])
        merged["components"]["schemas"].update(doc.get("components", {}).get("schemas", {}))
    return merged


@dataclass
class Run:
    """One in-process schemathesis CLI run: in-process so it sees CHECKS, bounded by examples and time."""
    phases: str
    max_examples: int
    seed: int = 1
    max_time: int | None = None
    workers: int = 1  # CPython 3.11's ast.parse is not thread-safe, and hypothesis calls it
    names: tuple[str, ...] = ()  # {name} values tried half the time, so requests reach existing objects
    # Operations the coverage phase leaves out, a regex on "METHOD /path": its systematic variants of a
    # PodSpec-sized body take minutes, which a quick run cannot afford.
    no_coverage: str | None = None

    def __call__(self, doc: dict, credentials: Credentials, out: Path) -> int:
        from schemathesis.cli import schemathesis as cli

        for check in CHECKS:  # registered before the CLI resolves check names
            schemathesis.check(check)
        out.mkdir(parents=True, exist_ok=True)
        set_hypothesis_home_dir(str(out / ".hypothesis"))  # its caches go with the reports, not into the cwd
        (out / "openapi.json").write_text(json.dumps(doc))
        config = out / "schemathesis.toml"
        config.write_text(self._config())
        argv = ["--config-file", str(config), "run", str(out / "openapi.json"), "--url", credentials.url,
                "--tls-verify", credentials.ca, "--request-cert", credentials.cert,
                "--request-cert-key", credentials.key, "--request-timeout", "10", "--max-redirects", "0",
                "--max-examples", str(self.max_examples), "--seed", str(self.seed), "--generation-database", "none",
                "--workers", str(self.workers), "--phases", self.phases,
                "--checks", ",".join(check.__name__ for check in CHECKS), "--continue-on-failure",
                "--report", "junit", "--report-junit-path", str(out / "junit.xml"),
                *(["--max-time", str(self.max_time)] if self.max_time else [])]
        try:
            return cli.main(argv, standalone_mode=False) or 0
        except SystemExit as exc:
            return int(exc.code or 0)

    def _config(self) -> str:
        """schemathesis.toml; JSON strings are valid TOML basic strings."""
        toml = ""
        if self.names:
            toml += (f"[dictionaries.names]\nvalues = {json.dumps(list(self.names))}\n\n"
                     '[parameters]\n"path.name" = { dictionary = "names", probability = 0.5 }\n\n')
        if self.no_coverage:
            toml += (f"[[operations]]\ninclude-name-regex = {json.dumps(self.no_coverage)}\n"
                     "phases.coverage.enabled = false\n")
        return toml


@dataclass
class OperationFailure:
    operation: str
    text: str  # schemathesis' account: the check, the response and a curl line


def junit_failures(path: Path) -> list[OperationFailure]:
    """The failed and errored operations of a schemathesis JUnit report."""
    found = []
    for case in ElementTree.parse(path).getroot().iter("testcase"):
        for problem in [*case.iter("failure"), *case.iter("error")]:
            found.append(OperationFailure(case.get("name", "?"), (problem.text or problem.get("message") or "").strip()))
    return found


# ---- the long run -------------------------------------------------------------------------------

def start_server(work: Path, timeout: float = 30.0) -> subprocess.Popen:
    port = common.free_port()
    kubeconfig_path = work / "kubeconfig.yaml"
    proc = common.spawn([sys.executable, "-m", "ketch.cli.main", "server", "--data-dir", str(work / "data"),
                         "--bind-address", "127.0.0.1", "--secure-port", str(port),
                         "--write-kubeconfig", str(kubeconfig_path), "--disable-agent"], work / "server.log")
    ctx = ssl._create_unverified_context()  # readiness only; the fuzzing verifies the CA
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"ketch server exited ({proc.returncode}):\n{common.log_tail(work / 'server.log')}")
        try:
            with urllib.request.urlopen(f"https://127.0.0.1:{port}/readyz", context=ctx, timeout=1) as r:
                if r.status == 200 and kubeconfig_path.exists():
                    return proc
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"ketch server not ready after {timeout}s:\n{common.log_tail(work / 'server.log')}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-time", type=int, default=900, help="seconds for the whole run")
    parser.add_argument("--max-examples", type=int, default=50, help="examples per operation and phase")
    parser.add_argument("--paths", default="", help="only operations whose served path matches this regex")
    parser.add_argument("--phases", default="examples,coverage,fuzzing")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--report-dir", type=Path, default=Path(tempfile.gettempdir()) / "ketch-fuzz-report")
    args = parser.parse_args()
    common.install_cleanup()

    work = common.temp_dir("ketch-fuzz-")
    start_server(work)
    credentials = Credentials.write(work / "kubeconfig.yaml", work)
    namespace = "fuzz"
    wanted = re.compile(args.paths)
    with credentials.session() as session:
        created = session.post(f"{credentials.url}/api/v1/namespaces", json={"metadata": {"name": namespace}},
                               timeout=10)
        assert created.status_code == 201, created.text
        doc = bounded_document(merged_document(session, credentials.url, served_documents(session, credentials.url)),
                               namespace, keep=lambda _method, path: bool(wanted.search(path)))
    operations = sum(len(item.keys() - {"parameters"}) for item in doc["paths"].values())
    print(f"fuzzing {operations} operations at {credentials.url} for at most {args.max_time}s", flush=True)
    code = Run(args.phases, args.max_examples, args.seed, args.max_time, args.workers)(doc, credentials,
                                                                                     args.report_dir)
    traces = server_tracebacks((work / "server.log").read_text(errors="replace"))
    print(f"\n{len(traces)} distinct server tracebacks (reports in {args.report_dir})")
    for trace in traces:
        print(f"--- x{trace.count}, first for {trace.request}\n{trace.traceback}")
    return code


if __name__ == "__main__":
    sys.exit(main())
