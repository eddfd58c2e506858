"""The registry client against Debian's docker-registry on loopback: OCI and docker schema2
manifests, an index with two platforms, digest pinning, containerd's failure wording, Basic auth
(htpasswd) and Bearer token auth (a token server of the test's own, as docker/distribution's token
spec describes)."""
from __future__ import annotations

import asyncio
import base64
import datetime
import hashlib
import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
import warnings
from pathlib import Path

import orjson
import pytest
from aiohttp import web

from helpers.cluster import free_port
from ketch.images import bundled
from ketch.images.errors import ImagePullError
from ketch.images.registry import RegistryClient, push
from ketch.images.store import ImageStore

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not Path("/usr/bin/docker-registry").exists(),
                                reason="needs root and Debian's docker-registry")
KETCH = [sys.executable, "-m", "ketch.cli.main"]


class Registry:
    def __init__(self, tmp: Path, auth: dict | None = None):
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        config = {"version": 0.1, "log": {"level": "error"},
                  "storage": {"filesystem": {"rootdirectory": str(tmp / "registry-data")}, "delete": {"enabled": True}},
                  "http": {"addr": self.host}, "health": {"storagedriver": {"enabled": False}}}
        if auth:
            config["auth"] = auth
        (tmp / "registry.json").write_text(json.dumps(config))  # YAML is a superset of JSON
        self.log = open(tmp / "registry.log", "wb")
        self.proc = subprocess.Popen(["docker-registry", "serve", str(tmp / "registry.json")],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while True:
            try:
                urllib.request.urlopen(f"http://{self.host}/v2/", timeout=1)
                break
            except urllib.error.HTTPError:
                break  # 401 with auth: it is up
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError((tmp / "registry.log").read_text()) from None
                time.sleep(0.05)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> ImageStore:
    """A store with busybox and two book images to push."""
    store = ImageStore(tmp_path_factory.mktemp("source") / "images")
    bundled.ensure(store, ["busybox", "jonbaier/pod-scaling:0.1", "jonbaier/pod-scaling:0.2"])
    return store


@pytest.fixture
def registry(tmp_path):
    r = Registry(tmp_path)
    yield r
    r.stop()


def fresh_store(tmp_path) -> ImageStore:
    return ImageStore(tmp_path / f"pull-{uuid.uuid4().hex[:6]}" / "images")


async def test_pull_oci_and_schema2_with_digest_pinning(tmp_path, registry, images):
    source = images.resolve("jonbaier/pod-scaling:0.1")
    digest = await push(images, "jonbaier/pod-scaling:0.1", f"{registry.host}/book/pod-scaling:0.1")
    assert digest == source.manifest_digest
    # skopeo writes docker schema2 (v2s2) for the second tag: both media types must pull.
    subprocess.run(["skopeo", "copy", "-q", "--src-tls-verify=false", "--dest-tls-verify=false", "--format", "v2s2",
                    f"docker://{registry.host}/book/pod-scaling:0.1", f"docker://{registry.host}/book/pod-scaling:v2s2"],
                   check=True, env={**os.environ, "REGISTRY_AUTH_FILE": str(tmp_path / "auth.json")},
                   capture_output=True, cwd=tmp_path)

    store = fresh_store(tmp_path)
    events = []
    pulled = await store.pull(f"{registry.host}/book/pod-scaling:0.1", progress=lambda *e: events.append(e))
    assert pulled.id == source.id and pulled.config == source.config
    assert pulled.repo_tags == [f"{registry.host}/book/pod-scaling:0.1"]
    assert pulled.repo_digests == [f"{registry.host}/book/pod-scaling@{digest}"]
    assert all(d.is_dir() for d in pulled.layer_dirs)
    assert {e[0] for e in events} == {"manifest", "config", "layer"} and all(e[2] <= e[3] for e in events)

    v2s2 = await store.pull(f"{registry.host}/book/pod-scaling:v2s2")
    assert v2s2.id == source.id
    manifest = orjson.loads(store.read_blob(v2s2.manifest_digest))
    assert manifest["mediaType"] == "application/vnd.docker.distribution.manifest.v2+json"

    by_digest = await fresh_store(tmp_path).pull(f"{registry.host}/book/pod-scaling@{digest}")
    assert by_digest.id == source.id and by_digest.repo_tags == []
    wrong = "sha256:" + "0" * 64
    with pytest.raises(ImagePullError) as err:
        await fresh_store(tmp_path).pull(f"{registry.host}/book/pod-scaling@{wrong}")
    ref = f"{registry.host}/book/pod-scaling@{wrong}"
    assert str(err.value) == f'failed to pull and unpack image "{ref}": failed to resolve reference "{ref}": {ref}: not found'
    assert err.value.code == "NotFound" and not err.value.unreachable


async def test_index_picks_linux_amd64(tmp_path, registry, images):
    amd = images.resolve("jonbaier/pod-scaling:0.1")
    arm = images.resolve("jonbaier/pod-scaling:0.2")
    repo = f"{registry.host}/book/multi"
    for image, tag in ((amd, "amd"), (arm, "arm")):
        await push(images, image.id, f"{repo}:{tag}")
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": arm.manifest_digest,
         "size": len(images.read_blob(arm.manifest_digest)), "platform": {"architecture": "arm64", "os": "linux"}},
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": amd.manifest_digest,
         "size": len(images.read_blob(amd.manifest_digest)), "platform": {"architecture": "amd64", "os": "linux"}}]}
    body = orjson.dumps(index)
    async with RegistryClient(registry.host) as client:
        await client.push_manifest("book/multi", "latest", body, index["mediaType"])
    pulled = await fresh_store(tmp_path).pull(f"{repo}:latest")
    assert pulled.id == amd.id
    assert pulled.repo_digests == [f"{repo}@sha256:{hashlib.sha256(body).hexdigest()}"]


async def test_missing_image_and_unreachable_registry(tmp_path, registry):
    store = fresh_store(tmp_path)
    ref = f"{registry.host}/jonbaier/pod-scaling:42.0"
    with pytest.raises(ImagePullError) as err:
        await store.pull(ref)
    assert str(err.value) == f'failed to pull and unpack image "{ref}": failed to resolve reference "{ref}": {ref}: not found'
    port = free_port()
    with pytest.raises(ImagePullError) as err:
        await store.pull(f"127.0.0.1:{port}/x:1")
    assert f'Get "http://127.0.0.1:{port}/v2/x/manifests/1": dial tcp 127.0.0.1:{port}: connect: connection refused' \
        in str(err.value)
    assert err.value.unreachable  # the kubelet may fall back to a stored image
    cli = subprocess.run([*KETCH, "image", "pull", "--data-dir", str(tmp_path / "cli"), ref], capture_output=True,
                         text=True)
    assert cli.returncode == 1 and cli.stderr.strip().endswith(f"{ref}: not found")


def _htpasswd(path: Path, user: str, password: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt  # bcrypt, the hash docker-registry's htpasswd reads; cost 4 keeps the test quick
    path.write_text(f"{user}:{crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16))}\n")


def test_basic_auth_through_the_cli(tmp_path, images):
    _htpasswd(tmp_path / "htpasswd", "reader", "s3cret")
    reg = Registry(tmp_path, auth={"htpasswd": {"realm": "ketch-test", "path": str(tmp_path / "htpasswd")}})
    try:
        data = tmp_path / "data"
        src = images.root.parent
        pushed = subprocess.run([*KETCH, "image", "push", "--data-dir", str(src), "--creds", "reader:s3cret",
                                 "busybox", f"{reg.host}/private/busybox:1"], capture_output=True, text=True)
        assert pushed.returncode == 0, pushed.stderr
        denied = subprocess.run([*KETCH, "image", "pull", "--data-dir", str(data), f"{reg.host}/private/busybox:1"],
                                capture_output=True, text=True)
        assert denied.returncode == 1 and "failed to resolve reference" in denied.stderr
        assert "401 Unauthorized" in denied.stderr or "authorization" in denied.stderr
        ok = subprocess.run([*KETCH, "image", "pull", "--data-dir", str(data), "--creds", "reader:s3cret",
                             f"{reg.host}/private/busybox:1"], capture_output=True, text=True)
        assert ok.returncode == 0, ok.stderr
        assert ok.stdout == f"Image is up to date for {images.resolve('busybox').id}\n"
        assert "Copying" in ok.stderr  # progress on stderr
        listing = subprocess.run([*KETCH, "image", "ls", "--data-dir", str(data)], capture_output=True, text=True)
        assert f"{reg.host}/private/busybox" in listing.stdout
    finally:
        reg.stop()


class TokenServer:
    """A token server as docker/distribution's token auth expects: ES256 JWTs whose x5c certificate
    is the registry's rootcertbundle; Basic credentials are required for push."""

    def __init__(self, tmp: Path, service: str):
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID
        self.key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ketch-test-token")])
        now = datetime.datetime.now(datetime.timezone.utc)
        self.cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(self.key.public_key())
                     .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
                     .not_valid_after(now + datetime.timedelta(days=1)).sign(self.key, hashes.SHA256()))
        self.cert_path = tmp / "token.pem"
        self.cert_path.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
        self.service, self.issuer = service, "ketch-test-issuer"
        self.requests: list[dict] = []
        self.port = free_port()
        self.realm = f"http://127.0.0.1:{self.port}/token"
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()
        self._started.wait(5)

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_get("/token", self._token)
        self._runner = web.AppRunner(app)
        self._loop.run_until_complete(self._runner.setup())
        self._loop.run_until_complete(web.TCPSite(self._runner, "127.0.0.1", self.port).start())
        self._started.set()
        self._loop.run_forever()

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    async def _token(self, request: web.Request) -> web.Response:
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
        authorized = request.headers.get("Authorization") == "Basic " + base64.b64encode(b"pusher:pw").decode()
        self.requests.append({"scope": request.query.get("scope"), "service": request.query.get("service"),
                              "basic": authorized})
        access = []
        kind, _, rest = (request.query.get("scope") or "").partition(":")
        repo, _, actions = rest.rpartition(":")
        if kind == "repository":
            allowed = [a for a in actions.split(",") if a == "pull" or authorized]
            access.append({"type": "repository", "name": repo, "actions": allowed})
        now = int(time.time())
        claims = {"iss": self.issuer, "sub": "pusher" if authorized else "", "aud": self.service, "exp": now + 300,
                  "nbf": now - 10, "iat": now, "jti": uuid.uuid4().hex, "access": access}
        header = {"typ": "JWT", "alg": "ES256",
                  "x5c": [base64.b64encode(self.cert.public_bytes(serialization.Encoding.DER)).decode()]}

        def b64(data: bytes) -> str:
            return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
        signing_input = f"{b64(orjson.dumps(header))}.{b64(orjson.dumps(claims))}"
        r, s = decode_dss_signature(self.key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
        token = f"{signing_input}.{b64(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"
        return web.json_response({"token": token, "expires_in": 300})


async def test_bearer_token_auth(tmp_path, images):
    tokens = TokenServer(tmp_path, service="ketch-registry")
    reg = Registry(tmp_path, auth={"token": {"realm": tokens.realm, "service": "ketch-registry",
                                             "issuer": tokens.issuer, "rootcertbundle": str(tokens.cert_path)}})
    try:
        with pytest.raises(Exception, match="failed to push"):
            await push(images, "busybox", f"{reg.host}/team/busybox:1")  # anonymous: pull only
        await push(images, "busybox", f"{reg.host}/team/busybox:1", auth=("pusher", "pw"))
        pulled = await fresh_store(tmp_path).pull(f"{reg.host}/team/busybox:1")  # anonymous pull token
        assert pulled.id == images.resolve("busybox").id
        scopes = {(r["scope"], r["basic"]) for r in tokens.requests}
        assert ("repository:team/busybox:pull,push", True) in scopes
        assert ("repository:team/busybox:pull", False) in scopes
        assert all(r["service"] == "ketch-registry" for r in tokens.requests)
    finally:
        reg.stop()
        tokens.stop()
