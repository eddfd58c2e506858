"""ketch.api.protobuf: decoding Kubernetes protobuf request bodies.

Real bodies come from real kubectl 1.32, pointed at a capture server on loopback; the expected
objects are what the same kubectl prints for `--dry-run=client -o json`. Special types, error
cases and unknown fields are checked with hand-built bytes.
"""
from __future__ import annotations

import base64
import importlib.util
import json
import os
import random
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import orjson
import pytest
from helpers.kubectl import CACHE, SDK

from ketch.api import protobuf
from ketch.api.durations import format_ns as go_duration
from ketch.api.protobuf import MAGIC, ProtobufError, decode, message_type

KUBECTL = "/usr/bin/kubectl"
# kubectl sends protobuf from 1.32 on; 1.35 is used when a test run has already cached it.
KUBECTLS = {version: path for version, path in {
    "1.32": KUBECTL, "1.33": SDK.format(minor=33), "1.35": str(CACHE / "kubectl-1.35" / "kubectl")}.items()
    if os.path.exists(path)}
REPO = Path(__file__).resolve().parents[2]


# --- a minimal protobuf encoder for hand-built bodies ----------------------------------------------

def varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


def vi(number: int, value: int) -> bytes:
    return varint(number << 3) + varint(value)


def ld(number: int, value: bytes | str) -> bytes:
    data = value.encode() if isinstance(value, str) else value
    return varint(number << 3 | 2) + varint(len(data)) + data


def body(api_version: str, kind: str, raw: bytes, *extra: bytes) -> bytes:
    return MAGIC + ld(1, ld(1, api_version) + ld(2, kind)) + ld(2, raw) + b"".join(extra)


def meta(name: str, *extra: bytes) -> bytes:
    """ObjectMeta as Go writes it: every non-pointer field, even empty, and a zero creationTimestamp."""
    return ld(1, ld(1, name) + ld(2, "") + ld(3, "") + ld(4, "") + ld(5, "") + ld(6, "") + vi(7, 0) + ld(8, b"")
              + b"".join(extra))


# --- special types ---------------------------------------------------------------------------------

def test_zero_value_fields_are_dropped_and_explicit_pointer_zeros_kept():
    raw = meta("cm", ld(11, ld(1, "app") + ld(2, ""))) + ld(2, ld(1, "a") + ld(2, ""))
    obj, notes = decode(body("v1", "ConfigMap", raw))
    assert obj == {"apiVersion": "v1", "kind": "ConfigMap",
                   "metadata": {"name": "cm", "labels": {"app": ""}}, "data": {"a": ""}}
    assert notes == []
    # immutable is a *bool: on the wire only when set, so an explicit false is the user's.
    obj, _ = decode(body("v1", "ConfigMap", raw + vi(4, 0)))
    assert obj["immutable"] is False
    # ObjectMeta.deletionGracePeriodSeconds is an *int64; generation is a plain int64.
    obj, _ = decode(body("v1", "ConfigMap", meta("cm", vi(10, 0))))
    assert obj["metadata"] == {"name": "cm", "deletionGracePeriodSeconds": 0}


def test_time_and_micro_time():
    ts = ld(1, vi(1, 1796148000) + vi(2, 123456789))  # 2026-12-01T18:00:00.123456789Z
    raw = meta("e") + ld(2, vi(1, 1796148000) + vi(2, 123456789)) + ld(13, ts[2:]) + ld(14, b"")
    obj, _ = decode(body("events.k8s.io/v1", "Event", raw))
    assert obj["eventTime"] == "2026-12-01T18:00:00.123456Z"
    assert obj["deprecatedFirstTimestamp"] == "2026-12-01T18:00:00Z"
    assert "deprecatedLastTimestamp" not in obj  # zero Time: Go's JSON writes null


def test_required_fields_survive_pruning():
    # Event requires eventTime: a zero one stays, as the null Go's JSON writes for it.
    obj, _ = decode(body("events.k8s.io/v1", "Event", meta("e") + ld(2, b"")))
    assert obj["eventTime"] is None
    # ServicePort requires port; Container requires name: their zero values are kept.
    port = ld(1, "") + ld(2, "TCP") + vi(3, 0) + ld(4, vi(1, 0) + vi(2, 0) + ld(3, "")) + vi(5, 0)
    obj, _ = decode(body("v1", "Service", meta("s") + ld(2, ld(1, port) + ld(3, ""))))
    assert obj["spec"] == {"ports": [{"protocol": "TCP", "port": 0, "targetPort": 0}]}
    pod_spec = ld(2, ld(1, "") + ld(2, "nginx") + ld(8, b"") + vi(16, 0))
    obj, _ = decode(body("v1", "Pod", meta("p") + ld(2, pod_spec) + ld(3, b"")))
    assert obj["spec"] == {"containers": [{"name": "", "image": "nginx", "resources": {}}]}
    assert obj["status"] == {}  # Go's JSON writes structs whatever their content


def test_int_or_string():
    def target_port(ios: bytes):
        raw = meta("s") + ld(2, ld(1, vi(3, 80) + ld(4, ios)))
        return decode(body("v1", "Service", raw))[0]["spec"]["ports"][0]["targetPort"]

    assert target_port(vi(1, 0) + vi(2, 8080) + ld(3, "")) == 8080
    assert target_port(vi(1, 1) + vi(2, 0) + ld(3, "http")) == "http"


def test_quantity_map():
    hard = ld(1, ld(1, "cpu") + ld(2, ld(1, "500m"))) + ld(1, ld(1, "memory") + ld(2, ld(1, "1Gi")))
    obj, _ = decode(body("v1", "ResourceQuota", meta("q") + ld(2, hard)))
    assert obj["spec"] == {"hard": {"cpu": "500m", "memory": "1Gi"}}


def test_bytes_map_values_are_base64():
    raw = meta("s") + ld(2, ld(1, "k") + ld(2, b"\x00\xffv")) + ld(2, ld(1, "empty")) + ld(3, "Opaque")
    obj, _ = decode(body("v1", "Secret", raw))
    assert obj["data"] == {"k": base64.b64encode(b"\x00\xffv").decode(), "empty": ""}
    assert obj["type"] == "Opaque"


def test_duration():
    raw = meta("m") + ld(2, vi(1, 1796148000)) + ld(3, vi(1, 30_000_000_000))
    obj, _ = decode(body("metrics.k8s.io/v1beta1", "PodMetrics", raw))
    assert obj["window"] == "30s" and obj["timestamp"] == "2026-12-01T18:00:00Z"


@pytest.mark.parametrize("ns, text", [
    (0, "0s"), (7, "7ns"), (1500, "1.5µs"), (2_000_000, "2ms"), (1_500_000_000, "1.5s"),
    (90 * 10**9, "1m30s"), (3600 * 10**9, "1h0m0s"), (3661 * 10**9 + 5 * 10**8, "1h1m1.5s"),
    (-3600 * 10**9, "-1h0m0s"), (100 * 3600 * 10**9, "100h0m0s"),
])
def test_go_duration(ns, text):
    assert go_duration(ns) == text


def test_raw_extension_json_and_nested_protobuf():
    inner = json.dumps({"spec": {"replicas": 2}}).encode()
    obj, _ = decode(body("apps/v1", "ControllerRevision", meta("r") + ld(2, ld(1, inner)) + vi(3, 4)))
    assert obj["data"] == {"spec": {"replicas": 2}} and obj["revision"] == 4
    nested = body("v1", "ConfigMap", meta("inner") + ld(2, ld(1, "a") + ld(2, "b")))
    obj, _ = decode(body("apps/v1", "ControllerRevision", meta("r") + ld(2, ld(1, nested))))
    assert obj["data"] == {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "inner"}, "data": {"a": "b"}}
    obj, _ = decode(body("apps/v1", "ControllerRevision", meta("r") + ld(2, b"")))
    assert "data" not in obj  # empty RawExtension: Go's JSON writes null


def test_fields_v1_in_managed_fields():
    entry = ld(1, "kubectl") + ld(2, "Apply") + ld(3, "v1") + ld(4, vi(1, 1796148000)) + ld(6, "FieldsV1") \
        + ld(7, ld(1, b'{"f:data":{"f:a":{}}}')) + ld(8, "")
    obj, _ = decode(body("v1", "ConfigMap", meta("cm", ld(17, entry))))
    assert obj["metadata"]["managedFields"] == [{
        "manager": "kubectl", "operation": "Apply", "apiVersion": "v1", "time": "2026-12-01T18:00:00Z",
        "fieldsType": "FieldsV1", "fieldsV1": {"f:data": {"f:a": {}}}}]


def test_list_wrapper_maps_to_list():
    extra = ld(5, ld(1, "scopes") + ld(2, ld(1, "a") + ld(1, "b"))) + ld(5, ld(1, "none") + ld(2, b""))
    obj, _ = decode(body("authorization.k8s.io/v1", "SubjectAccessReview", meta("") + ld(2, ld(3, "bob") + extra)))
    assert obj["spec"] == {"user": "bob", "extra": {"scopes": ["a", "b"], "none": []}}


def test_repeated_scalars_packed_and_unpacked_and_negative():
    packed = ld(4, varint(1) + varint(2) + varint((1 << 64) - 3))  # supplementalGroups: 1, 2, -3
    unpacked = vi(4, 7)
    pod = ld(2, ld(14, packed + unpacked + vi(2, (1 << 64) - 1)))  # runAsUser -1
    obj, _ = decode(body("v1", "Pod", meta("p") + pod))
    assert obj["spec"]["securityContext"] == {"supplementalGroups": [1, 2, -3, 7], "runAsUser": -1}


def test_embedded_struct_fields_join_the_parent():
    key_ref = ld(1, ld(1, "settings")) + ld(2, "color")  # ConfigMapKeySelector{LocalObjectReference, key}
    env = ld(7, ld(1, "COLOR") + ld(3, ld(3, key_ref)))
    obj, _ = decode(body("v1", "Pod", meta("p") + ld(2, ld(2, ld(1, "c") + env))))
    assert obj["spec"]["containers"][0]["env"] == [{"name": "COLOR",
                                                   "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "color"}}}]


def test_proto_names_that_differ_from_json_names():
    obj, _ = decode(body("admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration",
                         meta("w") + ld(2, ld(1, "hook.example.com"))))
    assert obj["webhooks"] == [{"name": "hook.example.com"}]  # the proto field is `Webhooks`


def test_singular_message_occurrences_merge():
    raw = meta("cm") + ld(1, ld(3, "ns"))
    obj, _ = decode(body("v1", "ConfigMap", raw))
    assert obj["metadata"] == {"name": "cm", "namespace": "ns"}


def test_unknown_fields_are_skipped_and_reported():
    raw = meta("cm", vi(99, 5)) + ld(2, ld(1, "a") + ld(2, "b")) + ld(50, b"xyz") + varint(51 << 3 | 5) + b"\0\0\0\0"
    obj, notes = decode(body("v1", "ConfigMap", raw))
    assert obj["data"] == {"a": "b"} and obj["metadata"] == {"name": "cm"}
    assert sorted(notes) == [
        "unknown field number 50 in the object (k8s.io.api.core.v1.ConfigMap)",
        "unknown field number 51 in the object (k8s.io.api.core.v1.ConfigMap)",
        "unknown field number 99 in metadata (k8s.io.apimachinery.pkg.apis.meta.v1.ObjectMeta)",
    ]


@pytest.mark.parametrize("data, message", [
    (b'{"kind":"ConfigMap"}', "does not appear to be a protobuf message"),
    (body("v1", "NoSuchKind", b""), 'no kind "NoSuchKind" is registered for version "v1"'),
    (MAGIC + ld(1, ld(1, "v1")), "Object 'Kind' is missing"),
    (body("v1", "ConfigMap", meta("cm"))[:-3], "truncated"),
    (body("v1", "ConfigMap", vi(1, 5)), "wire type does not fit a message field"),
    (body("v1", "ConfigMap", ld(1, vi(1, 5))), "wire type 0 does not fit a string field"),
    (body("v1", "ConfigMap", b"", ld(3, "gzip")), "unsupported protobuf content encoding"),
    (body("apps/v1", "ControllerRevision", ld(2, ld(1, b"{nope"))), "invalid JSON"),
    (MAGIC + b"\x0b", "unsupported wire type 3"),
    (MAGIC + vi(1, 5), "typeMeta: wire type 0 does not fit a message field"),
    (body("v1", "ResourceQuota", ld(2, ld(1, ld(1, "cpu") + vi(2, 1)))), "wire type 0 does not fit a message field"),
    (body("v1", "ConfigMap", meta("cm", ld(8, vi(1, 1 << 62)))), "timestamp out of range"),
])
def test_malformed_bodies_raise_protobuf_error(data, message):
    with pytest.raises(ProtobufError, match=message):
        decode(data)
    assert issubclass(ProtobufError, ValueError)


def test_mutated_bodies_fail_only_with_protobuf_error():
    rng = random.Random(7)
    seeds = [
        body("v1", "Pod", meta("p", ld(11, ld(1, "a") + ld(2, "b"))) + ld(2, ld(2, ld(1, "c") + ld(8, b""))
                                                                            + ld(14, ld(4, varint(1) + varint(2))))),
        body("v1", "ResourceQuota", meta("q") + ld(2, ld(1, ld(1, "cpu") + ld(2, ld(1, "1"))))),
        body("apps/v1", "ControllerRevision", meta("r") + ld(2, ld(1, b'{"a": 1}'))),
        body("v1", "Service", meta("s") + ld(2, ld(1, vi(3, 80) + ld(4, vi(1, 1) + ld(3, "http"))))),
    ]
    for _ in range(3000):
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 3)):
            at = rng.randrange(len(MAGIC), len(data))
            if rng.random() < 0.5:
                data[at] = rng.randrange(256)
            else:
                data.insert(at, rng.randrange(256))
        try:
            obj, _ = decode(bytes(data))
        except ProtobufError:
            continue
        orjson.dumps(obj)  # whatever decodes is JSON-serialisable


@pytest.mark.parametrize("api_version, kind, message", [
    ("v1", "ConfigMap", "k8s.io.api.core.v1.ConfigMap"),
    ("apps/v1", "Deployment", "k8s.io.api.apps.v1.Deployment"),
    ("rbac.authorization.k8s.io/v1", "Role", "k8s.io.api.rbac.v1.Role"),
    ("authorization.k8s.io/v1", "SelfSubjectAccessReview", "k8s.io.api.authorization.v1.SelfSubjectAccessReview"),
    ("flowcontrol.apiserver.k8s.io/v1", "FlowSchema", "k8s.io.api.flowcontrol.v1.FlowSchema"),
    ("internal.apiserver.k8s.io/v1alpha1", "StorageVersion", "k8s.io.api.apiserverinternal.v1alpha1.StorageVersion"),
    ("metrics.k8s.io/v1beta1", "NodeMetrics", "k8s.io.metrics.pkg.apis.metrics.v1beta1.NodeMetrics"),
    ("policy/v1", "DeleteOptions", "k8s.io.apimachinery.pkg.apis.meta.v1.DeleteOptions"),
    ("v1", "Nope", None),
])
def test_message_type(api_version, kind, message):
    assert message_type(api_version, kind) == message


def test_table_records_provenance_and_is_complete():
    table = protobuf.table()
    assert table.source and all(s["kubectl"].startswith("v1.") for s in table.source)
    assert table.messages["k8s.io.api.core.v1.ConfigMap"][2][:3] == ("data", "message", "repeated")
    referenced = {row[3] for fields in table.messages.values() for row in fields.values() if row[1] == "message"}
    assert referenced <= table.messages.keys()
    assert table.map_entries <= table.messages.keys() and table.list_wrappers <= table.messages.keys()


def test_eviction_keeps_an_explicit_zero_grace_period():
    delete_options = vi(1, 0) + ld(4, "Background")  # DeleteOptions: *gracePeriodSeconds, *propagationPolicy
    obj, _ = decode(body("policy/v1", "Eviction", meta("web-1", ld(3, "default")) + ld(2, delete_options)))
    assert obj == {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "web-1", "namespace": "default"},
                   "deleteOptions": {"gracePeriodSeconds": 0, "propagationPolicy": "Background"}}


@pytest.mark.skipif(not os.path.exists(KUBECTL), reason="needs kubectl 1.32")
def test_generator_reproduces_the_committed_table():
    spec = importlib.util.spec_from_file_location("gen_protobuf_fields", REPO / "scripts" / "gen_protobuf_fields.py")
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    committed = orjson.loads(protobuf.FIELDS_FILE.read_bytes())
    kubectls = [s for s in gen.DEFAULT_KUBECTLS if os.path.exists(s)]
    if len(kubectls) != len(committed["source"]):
        pytest.skip("the committed table came from kubectl binaries this machine lacks")
    # In a fresh interpreter: the generator reads the schema, which other tests extend in-process.
    import subprocess
    import sys
    code = ("import importlib.util, sys; spec = importlib.util.spec_from_file_location('g', sys.argv[1]); "
            "g = importlib.util.module_from_spec(spec); spec.loader.exec_module(g); "
            "sys.stdout.write(g.dump(g.generate(sys.argv[2:])))")
    out = subprocess.run([sys.executable, "-c", code, str(REPO / "scripts" / "gen_protobuf_fields.py"), *kubectls],
                         capture_output=True, text=True, check=True).stdout
    assert orjson.loads(out) == committed


# --- real kubectl bodies -----------------------------------------------------------------------------

DISCOVERY = {
    "v1": [("configmaps", "ConfigMap", True), ("secrets", "Secret", True), ("namespaces", "Namespace", False),
           ("services", "Service", True), ("pods", "Pod", True), ("serviceaccounts", "ServiceAccount", True),
           ("serviceaccounts/token", "TokenRequest", True), ("resourcequotas", "ResourceQuota", True)],
    "apps/v1": [("deployments", "Deployment", True)],
    "batch/v1": [("jobs", "Job", True), ("cronjobs", "CronJob", True)],
    "policy/v1": [("poddisruptionbudgets", "PodDisruptionBudget", True)],
    "rbac.authorization.k8s.io/v1": [("roles", "Role", True), ("rolebindings", "RoleBinding", True)],
    "authorization.k8s.io/v1": [("selfsubjectaccessreviews", "SelfSubjectAccessReview", False)],
    "authentication.k8s.io/v1": [("selfsubjectreviews", "SelfSubjectReview", False)],
}

# id → kubectl arguments. Namespaced commands run in a namespace named after their id, which is how
# the capture server tells their bodies apart; cluster-scoped ones are named after their resource.
PRINTABLE = {  # `--dry-run=client -o json` prints the object these would send
    "configmap": ["create", "configmap", "cm1", "--from-literal=a=b", "--from-literal=c=d"],
    "secret": ["create", "secret", "generic", "s1", "--from-literal=k=v", "--type=Opaque"],
    "namespaces": ["create", "namespace", "ns1"],
    "service": ["create", "service", "clusterip", "svc1", "--tcp=80:8080"],
    "deployment": ["create", "deployment", "dep1", "--image=nginx", "--replicas=3", "--port=80"],
    "deployment-zero": ["create", "deployment", "dep0", "--image=nginx", "--replicas=0"],
    "job": ["create", "job", "j1", "--image=busybox", "--", "echo", "hi"],
    "cronjob": ["create", "cronjob", "cj1", "--image=busybox", "--schedule=*/5 * * * *"],
    "quota": ["create", "quota", "q1", "--hard=cpu=1,memory=1G,pods=2"],
    "pdb": ["create", "pdb", "pdb1", "--selector=app=x", "--min-available=50%"],
    "role": ["create", "role", "r1", "--verb=get,list", "--resource=pods,deployments.apps"],
    "rolebinding": ["create", "rolebinding", "rb1", "--role=r1", "--user=alice", "--serviceaccount=default:sa"],
}
OTHERS = {
    "selfsubjectaccessreviews": ["auth", "can-i", "create", "pods"],
    "selfsubjectreviews": ["auth", "whoami"],
    "token": ["create", "token", "sa1", "--duration=1h"],
}
CLUSTER_SCOPED = {"namespaces", "selfsubjectaccessreviews", "selfsubjectreviews"}


class _Capture(BaseHTTPRequestHandler):
    """Answers discovery and records POST bodies by namespace (or resource, when cluster-scoped)."""

    bodies: dict[str, tuple[str, bytes]] = {}

    def log_message(self, *args) -> None:
        pass

    def _reply(self, code: int, obj: dict) -> None:
        data = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        path = self.path.split("?")[0]
        if path == "/version":
            return self._reply(200, {"major": "1", "minor": "32", "gitVersion": "v1.32.0"})
        if path == "/api":
            return self._reply(200, {"kind": "APIVersions", "versions": ["v1"]})
        if path == "/apis":
            groups = [{"name": gv.split("/")[0], "versions": [{"groupVersion": gv, "version": gv.split("/")[1]}],
                       "preferredVersion": {"groupVersion": gv, "version": gv.split("/")[1]}}
                      for gv in DISCOVERY if "/" in gv]
            return self._reply(200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
        gv = path.removeprefix("/api/").removeprefix("/apis/")
        if gv in DISCOVERY:
            resources = [{"name": n, "singularName": "", "namespaced": ns, "kind": k,
                          "verbs": ["create", "get", "list"]} for n, k, ns in DISCOVERY[gv]]
            return self._reply(200, {"kind": "APIResourceList", "groupVersion": gv, "resources": resources})
        self._reply(404, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404})

    def do_POST(self) -> None:
        data = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        segments = self.path.split("?")[0].split("/")
        key = segments[segments.index("namespaces") + 1] if "namespaces" in segments[:-1] else segments[-1]
        self.bodies[key] = (self.headers.get("Content-Type", ""), data)
        try:
            obj, _ = decode(data)
        except ProtobufError as err:
            return self._reply(400, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": str(err),
                                     "reason": "BadRequest", "code": 400})
        obj.setdefault("status", {}).update({"allowed": True, "token": "t0k3n"})
        self._reply(201, obj)


def _with_flags(args: list[str], flags: list[str]) -> list[str]:
    at = args.index("--") if "--" in args else len(args)  # flags must precede a `--` command line
    return args[:at] + flags + args[at:]


@pytest.fixture(scope="module", params=list(KUBECTLS) or [pytest.param(None, marks=pytest.mark.skip("no kubectl"))])
def kubectl_bodies(request, tmp_path_factory):
    """Run every command against the capture server, and the printable ones with --dry-run=client -o json."""
    _Capture.bodies = {}
    tmp = tmp_path_factory.mktemp("kubectl")
    (tmp / "kubeconfig").write_text("")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Capture)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    env = {**os.environ, "KUBECONFIG": str(tmp / "kubeconfig")}
    base = [KUBECTLS[request.param], f"--server=http://127.0.0.1:{server.server_address[1]}", "--cache-dir", str(tmp / "cache"),
            "-v=0"]

    def run(key: str, args: list[str], flags: list[str]) -> subprocess.CompletedProcess:
        namespace = [] if key in CLUSTER_SCOPED else ["-n", key]
        return subprocess.run(base + _with_flags(args, namespace + flags), capture_output=True, text=True,
                              timeout=30, env=env)

    jobs = [(key, args, []) for key, args in {**PRINTABLE, **OTHERS}.items()]
    jobs += [(key, args, ["--dry-run=client", "-o", "json"]) for key, args in PRINTABLE.items()]
    try:
        with ThreadPoolExecutor(max_workers=8) as pool:
            results = list(pool.map(lambda job: run(*job), jobs))
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
    sent = dict(zip([key for key, _, flags in jobs if not flags], results))
    printed = {key: json.loads(r.stdout) for (key, _, flags), r in zip(jobs, results) if flags}
    return dict(_Capture.bodies), printed, sent


def _without_nulls(obj):
    """Drop the nulls Go's JSON writes for zero Time values (`creationTimestamp: null`)."""
    if isinstance(obj, dict):
        return {k: _without_nulls(v) for k, v in obj.items() if v is not None}
    if isinstance(obj, list):
        return [_without_nulls(v) for v in obj]
    return obj


@pytest.mark.parametrize("key", PRINTABLE)
def test_kubectl_body_decodes_to_the_json_kubectl_would_send(kubectl_bodies, key):
    bodies, printed, sent = kubectl_bodies
    assert key in bodies, sent[key].stderr
    content_type, data = bodies[key]
    assert content_type == protobuf.MEDIA_TYPE
    obj, notes = decode(data)
    assert notes == []
    assert obj == _without_nulls(printed[key])
    assert sent[key].returncode == 0, sent[key].stderr


def test_kubectl_keeps_an_explicit_zero_on_a_pointer_field(kubectl_bodies):
    obj, _ = decode(kubectl_bodies[0]["deployment-zero"][1])
    assert obj["spec"]["replicas"] == 0


def test_kubectl_auth_and_token_bodies(kubectl_bodies):
    bodies, _, sent = kubectl_bodies
    assert decode(bodies["selfsubjectaccessreviews"][1]) == ({
        "apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview", "metadata": {},
        "spec": {"resourceAttributes": {"namespace": "default", "verb": "create", "resource": "pods"}},
        "status": {"allowed": False}}, [])  # allowed is required: Go's JSON writes it
    assert sent["selfsubjectaccessreviews"].stdout.strip() == "yes"
    assert decode(bodies["selfsubjectreviews"][1]) == ({
        "apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview", "metadata": {},
        "status": {"userInfo": {}}}, [])
    assert decode(bodies["token"][1]) == ({
        "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "metadata": {},
        "spec": {"expirationSeconds": 3600},
        "status": {"token": "", "expirationTimestamp": None}}, [])  # both required: Go's JSON writes them
    assert sent["token"].stdout.strip() == "t0k3n"
