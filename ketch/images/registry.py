"""An OCI distribution (v2) client on aiohttp: pull into the image store, push out of it.

Authentication as docker and containerd do it: try anonymously; on 401 follow WWW-Authenticate —
Basic sends the credentials, Bearer fetches a token from the realm (with service and scope, Basic
credentials if any). Every blob and every manifest fetched by digest is verified (sha256).
Failure messages use containerd's wording, which is what kubelet events show.
"""
from __future__ import annotations

import asyncio
import base64
import hashlib
import ipaddress
import os
import socket
import re
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from . import reference
from .archive import INDEX_MEDIA_TYPES, choose_platform
from .errors import ContentRemoved, ImageError, ImagePullError
from .store import Image, ImageStore

MANIFEST_MEDIA_TYPES = (
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
)
ACCEPT = ", ".join(MANIFEST_MEDIA_TYPES)

# progress(kind, digest, bytes done, bytes total): kind is "manifest", "config" or "layer";
# done == total marks the end of one blob.
Progress = Callable[[str, str, int, int], None]


class _NotFound(Exception):
    pass


class _Unreachable(ImageError):
    """The registry could not be reached at all (no route, no name, no answer in time)."""


class _Unauthorized(Exception):
    pass


def is_loopback_host(host: str) -> bool:
    if host.startswith("["):
        name = host[1:host.index("]")]
    else:
        name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


class RegistryClient:
    """One registry host; `plain_http` speaks HTTP (the default for loopback registries, as
    containerd allows localhost without TLS); `insecure` skips TLS verification."""

    def __init__(self, host: str, auth: tuple[str, str] | None = None, plain_http: bool | None = None,
                 insecure: bool = False, timeout: float = 30.0):
        self.host = host
        self.auth = auth
        self.scheme = "http" if (is_loopback_host(host) if plain_http is None else plain_http) else "https"
        self._ssl: ssl.SSLContext | bool = False if insecure else True
        self._timeout = aiohttp.ClientTimeout(total=None, connect=timeout, sock_read=timeout)
        self._session: aiohttp.ClientSession | None = None
        self._authorization: dict[str, str] = {}  # scope → Authorization header value

    async def __aenter__(self) -> RegistryClient:
        self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()

    def url(self, path: str) -> str:
        return f"{self.scheme}://{self.host}{path}"

    async def request(self, method: str, path: str, scope: str, headers: dict[str, str] | None = None,
                      data: Any = None, expect: tuple[int, ...] = (200,)) -> aiohttp.ClientResponse:
        """Send a request, authenticating once when the registry asks; the caller releases the
        response. 404 raises _NotFound, 401/403 _Unauthorized, other statuses ImageError."""
        assert self._session is not None
        url = self.url(path)
        for attempt in range(2):
            hdrs = dict(headers or {})
            if scope in self._authorization:
                hdrs["Authorization"] = self._authorization[scope]
            try:
                resp = await self._session.request(method, url, headers=hdrs, data=data, ssl=self._ssl,
                                                   allow_redirects=True)
            except aiohttp.ClientConnectorError as e:
                raise _Unreachable(f"failed to do request: {method.title()} \"{url}\": {_describe(e)}") from None
            except aiohttp.ClientError as e:
                raise ImageError(f"failed to do request: {method.title()} \"{url}\": {_describe(e)}") from None
            except asyncio.TimeoutError:
                raise _Unreachable(f"failed to do request: {method.title()} \"{url}\": i/o timeout") from None
            if resp.status == 401 and attempt == 0 and await self._authenticate(resp, scope):
                resp.release()
                continue
            if resp.status in expect:
                return resp
            body = await resp.text()
            resp.release()
            if resp.status == 404:
                raise _NotFound(body)
            if resp.status in (401, 403):
                raise _Unauthorized(_server_message(body))
            raise ImageError(f"unexpected status from {method} request to {url}: {resp.status} {resp.reason}")
        raise AssertionError("unreachable")

    async def _authenticate(self, resp: aiohttp.ClientResponse, scope: str) -> bool:
        challenge = resp.headers.get("WWW-Authenticate", "")
        kind, _, params_text = challenge.partition(" ")
        params = dict(re.findall(r'(\w+)="([^"]*)"', params_text))
        if kind.lower() == "basic":
            if not self.auth:
                return False
            self._authorization[scope] = self._basic()
            return True
        if kind.lower() != "bearer" or "realm" not in params:
            return False
        query = {k: v for k, v in (("service", params.get("service")), ("scope", scope)) if v}
        assert self._session is not None
        basic = {"Authorization": self._basic()} if self.auth else {}
        try:
            async with self._session.get(params["realm"], params=query, headers=basic, ssl=self._ssl) as tresp:
                if tresp.status != 200:
                    raise _Unauthorized(f"failed to fetch {'oauth' if basic else 'anonymous'} token: unexpected "
                                        f"status from GET request to {params['realm']}: {tresp.status} {tresp.reason}")
                body = await tresp.json(content_type=None)
        except aiohttp.ClientError as e:
            raise ImageError(f"failed to authorize: failed to fetch token: {_describe(e)}") from None
        token = body.get("token") or body.get("access_token")
        if not token:
            return False
        self._authorization[scope] = f"Bearer {token}"
        return True

    def _basic(self) -> str:
        assert self.auth is not None
        return "Basic " + base64.b64encode(f"{self.auth[0]}:{self.auth[1]}".encode()).decode()

    async def ping(self) -> None:
        resp = await self.request("GET", "/v2/", scope="", expect=(200,))
        resp.release()

    async def get_manifest(self, repository: str, ref: str) -> tuple[bytes, str, str]:
        """(body, media type, digest) of a manifest or index; a digest `ref` is verified."""
        resp = await self.request("GET", f"/v2/{repository}/manifests/{ref}", scope=_pull_scope(repository),
                                  headers={"Accept": ACCEPT})
        try:
            body = await resp.read()
        finally:
            resp.release()
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        if reference.is_sha256_digest(ref) and digest != ref:
            raise ImageError(f"manifest digest mismatch: expected {ref}, got {digest}")
        media_type = resp.headers.get("Content-Type", "").split(";")[0].strip()
        if media_type not in MANIFEST_MEDIA_TYPES:
            media_type = orjson.loads(body).get("mediaType", media_type)
        return body, media_type, digest

    async def fetch_blob(self, repository: str, digest: str, dest: Path, size: int, kind: str,
                         progress: Progress | None) -> None:
        """Download a blob to `dest`, checking its sha256 against `digest`."""
        resp = await self.request("GET", f"/v2/{repository}/blobs/{digest}", scope=_pull_scope(repository))
        sha = hashlib.sha256()
        done = 0
        try:
            with open(dest, "wb") as f:
                async for chunk in resp.content.iter_chunked(1 << 16):
                    sha.update(chunk)
                    f.write(chunk)
                    done += len(chunk)
                    if progress:
                        progress(kind, digest, done, max(size, done))
        except (aiohttp.ClientError, asyncio.TimeoutError) as e:
            raise ImageError(f"failed to copy: read {digest}: {_describe(e)}") from None
        finally:
            resp.release()
        got = "sha256:" + sha.hexdigest()
        if got != digest:
            raise ImageError(f"failed to copy: unexpected commit digest {got}, expected {digest}: failed precondition")
        if progress:
            progress(kind, digest, done, done)

    async def blob_exists(self, repository: str, digest: str) -> bool:
        try:
            resp = await self.request("HEAD", f"/v2/{repository}/blobs/{digest}", scope=_push_scope(repository))
        except _NotFound:
            return False
        resp.release()
        return True

    async def push_blob(self, repository: str, digest: str, path: Path) -> None:
        if await self.blob_exists(repository, digest):
            return
        scope = _push_scope(repository)
        resp = await self.request("POST", f"/v2/{repository}/blobs/uploads/", scope=scope, expect=(202,))
        location = resp.headers["Location"]
        resp.release()
        sep = "&" if "?" in location else "?"
        upload = f"{location}{sep}digest={digest}"
        if upload.startswith("http"):
            upload = upload.split(self.host, 1)[1]
        with open(path, "rb") as f:
            resp = await self.request("PUT", upload, scope=scope, data=f,
                                      headers={"Content-Type": "application/octet-stream"}, expect=(201,))
        resp.release()

    async def push_manifest(self, repository: str, ref: str, body: bytes, media_type: str) -> None:
        resp = await self.request("PUT", f"/v2/{repository}/manifests/{ref}", scope=_push_scope(repository),
                                  data=body, headers={"Content-Type": media_type}, expect=(201,))
        resp.release()


def _pull_scope(repository: str) -> str:
    return f"repository:{repository}:pull"


def _push_scope(repository: str) -> str:
    return f"repository:{repository}:pull,push"


def _describe(e: BaseException) -> str:
    if isinstance(e, aiohttp.ClientConnectorError):
        os_error = e.os_error
        if isinstance(os_error, socket.gaierror):
            return f"dial tcp: lookup {e.host}: no such host"
        if isinstance(os_error, OSError) and os_error.errno:
            return f"dial tcp {e.host}:{e.port}: connect: {os.strerror(os_error.errno).lower()}"
        if isinstance(os_error, OSError) and "Name or service not known" in str(os_error):
            return f"dial tcp: lookup {e.host}: no such host"
    return str(e) or type(e).__name__


def _server_message(body: str) -> str:
    try:
        errors = orjson.loads(body).get("errors") or []
        first = errors[0]
        return f"server message: {first.get('code', '').lower()}: {first.get('message', '')}"
    except (ValueError, IndexError, AttributeError, TypeError):
        return body.strip()


async def pull(store: ImageStore, ref: str, auth: tuple[str, str] | None = None, progress: Progress | None = None,
               plain_http: bool | None = None, insecure: bool = False) -> Image:
    """Pull `ref` into `store` (the linux/amd64 image of an index); ImagePullError on failure."""
    try:
        return await _pull(store, ref, auth, progress, plain_http, insecure)
    except _Retry:
        return await _pull(store, ref, auth, progress, plain_http, insecure)


class _Retry(Exception):
    pass


async def _pull(store: ImageStore, ref: str, auth: tuple[str, str] | None, progress: Progress | None,
                plain_http: bool | None, insecure: bool) -> Image:
    try:
        parsed = reference.parse(ref)
    except reference.InvalidReference as e:
        raise ImagePullError(f"failed to pull and unpack image \"{ref}\": {e}", code="InvalidArgument") from None
    name = str(parsed)
    prefix = f"failed to pull and unpack image \"{name}\""
    resolve_prefix = f"{prefix}: failed to resolve reference \"{name}\""
    repository = parsed.path
    client = RegistryClient(reference.registry_host(parsed.domain), auth=auth, plain_http=plain_http,
                            insecure=insecure)
    async with client:
        try:
            body, media_type, top_digest = await client.get_manifest(repository, parsed.digest or parsed.tag or "latest")
        except _NotFound:
            raise ImagePullError(f"{resolve_prefix}: {name}: not found", code="NotFound") from None
        except _Unauthorized as e:
            raise ImagePullError(f"{resolve_prefix}: pull access denied, repository does not exist or may require "
                                 f"authorization: {e}") from None
        except _Unreachable as e:
            error = ImagePullError(f"{resolve_prefix}: {e}")
            error.unreachable = True   # the kubelet may then use a stored copy (ketch.agent.imagepull)
            raise error from None
        except ImageError as e:
            raise ImagePullError(f"{resolve_prefix}: {e}") from None
        try:
            if progress:
                progress("manifest", top_digest, len(body), len(body))
            if media_type in INDEX_MEDIA_TYPES:
                chosen = choose_platform(orjson.loads(body).get("manifests", []))
                body, media_type, _ = await client.get_manifest(repository, chosen["digest"])
            manifest = orjson.loads(body)
            blobs = [("config", manifest["config"])] + [("layer", d) for d in manifest.get("layers", [])]
            semaphore = asyncio.Semaphore(3)

            async def fetch(kind: str, desc: dict[str, Any]) -> None:
                if store.has_blob(desc["digest"]):
                    if progress:
                        progress(kind, desc["digest"], desc.get("size", 0), desc.get("size", 0))
                    return
                async with semaphore:
                    tmp = store.temp_path("pull-")
                    try:
                        await client.fetch_blob(repository, desc["digest"], tmp, desc.get("size", 0), kind, progress)
                        # hashing and moving a large layer must not stall the agent's event loop
                        await asyncio.to_thread(store.put_blob_file, tmp, expected=desc["digest"], move=True)
                    finally:
                        if tmp.exists():
                            os.unlink(tmp)

            await asyncio.gather(*(fetch(kind, desc) for kind, desc in blobs))
            names = [name] if parsed.tag else []
            return await asyncio.to_thread(store.commit, body, names, [f"{parsed.name}@{top_digest}"])
        except ContentRemoved:
            raise _Retry() from None
        except _NotFound as e:
            raise ImagePullError(f"{prefix}: failed to copy: not found: {e}".rstrip(": "), code="NotFound") from None
        except _Unauthorized as e:
            raise ImagePullError(f"{prefix}: failed to copy: {e}") from None
        except ImageError as e:
            raise ImagePullError(f"{prefix}: {e}") from None


async def push(store: ImageStore, image_ref: str, dest: str, auth: tuple[str, str] | None = None,
               plain_http: bool | None = None, insecure: bool = False) -> str:
    """Push a local image to `dest` (a reference with a registry); returns the manifest digest."""
    image = store.resolve(image_ref)
    if image is None:
        raise ImageError(f"image {image_ref!r} not found")
    parsed = reference.parse(dest)
    manifest_bytes = store.read_blob(image.manifest_digest)
    manifest = orjson.loads(manifest_bytes)
    async with RegistryClient(reference.registry_host(parsed.domain), auth=auth, plain_http=plain_http,
                              insecure=insecure) as client:
        try:
            for desc in [manifest["config"], *manifest.get("layers", [])]:
                await client.push_blob(parsed.path, desc["digest"], store.blob_path(desc["digest"]))
            media_type = manifest.get("mediaType") or "application/vnd.oci.image.manifest.v1+json"
            await client.push_manifest(parsed.path, parsed.tag or parsed.digest or "latest", manifest_bytes, media_type)
        except (_NotFound, _Unauthorized) as e:
            raise ImageError(f"failed to push {parsed}: {e or 'not found'}") from None
    return image.manifest_digest
