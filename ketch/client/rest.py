"""An asyncio client for the Kubernetes API, used by every ketch component.

`Client` speaks HTTPS with the kubeconfig's credentials; `client.resource("apps/v1", "Deployment")`
gives a `ResourceClient` with get/list/create/update/patch/delete/watch for that kind. Failures raise
`ApiError` carrying the server's `Status`.
"""
from __future__ import annotations

import json
from typing import Any, AsyncIterator

import aiohttp
import orjson

from ..api import kinds
from ..api.errors import ApiError
from .kubeconfig import ClientConfig

PATCH_CONTENT_TYPES = {
    "json": "application/json-patch+json",
    "merge": "application/merge-patch+json",
    "strategic": "application/strategic-merge-patch+json",
    "apply": "application/apply-patch+yaml",
}


def _error(status: int, body: bytes) -> ApiError:
    try:
        doc = orjson.loads(body)
        if isinstance(doc, dict) and doc.get("kind") == "Status":
            return ApiError(doc.get("code", status), doc.get("reason", ""), doc.get("message", ""),
                            doc.get("details"))
    except orjson.JSONDecodeError:
        pass
    return ApiError(status, "", body.decode(errors="replace").strip())


class Client:
    def __init__(self, config: ClientConfig, *, user_agent: str = "ketch",
                 connections: int = 100):
        self.config = config
        self.user_agent = user_agent
        self.connections = connections   # at most this many at once to the API server (watches count)
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            headers = {"User-Agent": self.user_agent, "Accept": "application/json"}
            if self.config.token:
                headers["Authorization"] = f"Bearer {self.config.token}"
            connector = aiohttp.TCPConnector(ssl=self.config.ssl_context(), limit=self.connections)
            self._session = aiohttp.ClientSession(base_url=self.config.server, headers=headers,
                                                  connector=connector, json_serialize=lambda o: orjson.dumps(o).decode())
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> "Client":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def request(self, method: str, path: str, *, params: dict | None = None, body: Any = None,
                      content_type: str = "application/json", timeout: float = 30) -> Any:
        data = None
        headers = {}
        if body is not None:
            data = body if isinstance(body, (bytes, str)) else orjson.dumps(body)
            headers["Content-Type"] = content_type
        async with self.session.request(method, path, params=_params(params), data=data, headers=headers,
                                        timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
            raw = await resp.read()
            if resp.status >= 400:
                raise _error(resp.status, raw)
            return orjson.loads(raw) if raw else None

    async def stream(self, path: str, params: dict | None = None) -> AsyncIterator[dict]:
        """Lines of a watch stream, decoded."""
        async with self.session.get(path, params=_params(params),
                                    timeout=aiohttp.ClientTimeout(total=None, sock_read=None)) as resp:
            if resp.status >= 400:
                raise _error(resp.status, await resp.read())
            buffer = b""
            async for chunk in resp.content.iter_any():
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    if line.strip():
                        yield orjson.loads(line)

    def resource(self, api_version: str, kind: str, namespace: str | None = None) -> "ResourceClient":
        group, version = api_version.split("/", 1) if "/" in api_version else ("", api_version)
        res = kinds.by_kind(group, version, kind)
        if res is None:
            raise ValueError(f"unknown kind {kind} in {api_version}")
        return ResourceClient(self, res, namespace)


def _params(params: dict | None) -> dict | None:
    if not params:
        return None
    out = {}
    for k, v in params.items():
        if v is None:
            continue
        out[k] = ("true" if v else "false") if isinstance(v, bool) else str(v)
    return out


class ResourceClient:
    """Operations on one kind, optionally bound to a namespace."""

    def __init__(self, client: Client, res: kinds.Resource, namespace: str | None):
        self.client = client
        self.res = res
        self.namespace = namespace

    def path(self, name: str = "", namespace: str | None = None, subresource: str = "") -> str:
        res = self.res
        base = f"/apis/{res.group}/{res.version}" if res.group else f"/api/{res.version}"
        ns = namespace if namespace is not None else self.namespace
        if res.namespaced and ns:
            base += f"/namespaces/{ns}"
        base += f"/{res.plural}"
        if name:
            base += f"/{name}"
        if subresource:
            base += f"/{subresource}"
        return base

    async def get(self, name: str, namespace: str | None = None, **params) -> dict:
        return await self.client.request("GET", self.path(name, namespace), params=params)

    async def list(self, namespace: str | None = None, **params) -> dict:
        return await self.client.request("GET", self.path("", namespace), params=params)

    async def create(self, obj: dict, namespace: str | None = None, **params) -> dict:
        ns = namespace or obj.get("metadata", {}).get("namespace") or self.namespace
        return await self.client.request("POST", self.path("", ns), params=params, body=obj)

    async def update(self, obj: dict, subresource: str = "", **params) -> dict:
        meta = obj["metadata"]
        return await self.client.request("PUT", self.path(meta["name"], meta.get("namespace"), subresource),
                                         params=params, body=obj)

    async def update_status(self, obj: dict, **params) -> dict:
        return await self.update(obj, "status", **params)

    async def patch(self, name: str, body: Any, patch_type: str = "merge", namespace: str | None = None,
                    subresource: str = "", **params) -> dict:
        ctype = PATCH_CONTENT_TYPES[patch_type]
        if patch_type == "apply" and not isinstance(body, (bytes, str)):
            body = json.dumps(body)
        return await self.client.request("PATCH", self.path(name, namespace, subresource), params=params,
                                         body=body, content_type=ctype)

    async def delete(self, name: str, namespace: str | None = None, **options) -> dict:
        body = {"kind": "DeleteOptions", "apiVersion": "v1", **options} if options else None
        return await self.client.request("DELETE", self.path(name, namespace), body=body)

    async def watch(self, namespace: str | None = None, **params) -> AsyncIterator[dict]:
        """Watch events ({"type", "object"}) until the server ends the stream."""
        params = {**params, "watch": True}
        async for event in self.client.stream(self.path("", namespace), params):
            yield event
