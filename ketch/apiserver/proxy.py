"""The API server's way to the kubelets: pods/log, pods/exec, pods/attach, pods/portforward and
nodes/proxy, checked here as the apiserver checks them, then passed to the node's kubelet.

Upgraded requests (exec, attach, port-forward over WebSocket or SPDY/3.1) are not parsed: the
API server opens a connection of its own to the kubelet, sends the same request line and
headers, answers the client with the kubelet's 101 and copies bytes both ways, so every
protocol the kubelet speaks works end to end (upstream's UpgradeAwareHandler; since our kubelet
itself speaks WebSocket, no translation to SPDY is needed).

The kubelet is found by its Node's `ketch.io/kubelet-url` annotation (metrics.kubelet_url). TLS to
it is not verified yet: kubelets make their own self-signed certificates (the security issue
brings the kubelet serving CA). As for metrics, URLs that are not loopback are refused unless the
server allows remote kubelets. A node without the annotation (simulated nodes) answers as an
unreachable kubelet does upstream.
"""
from __future__ import annotations

import asyncio
import ssl
from pathlib import Path
from urllib.parse import quote, urlencode, urlsplit

import aiohttp
from aiohttp import web

from ..web import hijack
from ..api import errors, kinds, names
from .metrics import is_loopback_url, kubelet_client_tls, kubelet_url
from .registry import Registry

PODS = kinds.lookup("", "v1", "pods")
NODES = kinds.lookup("", "v1", "nodes")
SUBRESOURCES = ("log", "exec", "attach", "portforward", "proxy")
DEFAULT_KUBELET_PORT = 10250
LOG_PARAMS = ("follow", "previous", "timestamps", "sinceSeconds", "sinceTime", "tailLines", "limitBytes")
EXEC_PARAMS = ("command", "stdin", "stdout", "stderr", "tty")
_HOP_BY_HOP = {"host", "authorization", "transfer-encoding", "keep-alive", "proxy-connection", "te", "trailer"}
_CONNECT_TIMEOUT = 10.0
_UPGRADE_TIMEOUT = 30.0   # for the kubelet's answer to an exec/attach/port-forward


# ---- the checks the apiserver does before it talks to a kubelet --------------------------------

def _names(containers: list[dict]) -> str:
    return "[" + " ".join(c["name"] for c in containers) + "]"


def pick_container(pod: dict, container: str) -> str:
    """The container a request means (upstream's LogLocation/streamLocation)."""
    spec = pod.get("spec") or {}
    name = pod["metadata"]["name"]
    containers = spec.get("containers") or []
    inits = spec.get("initContainers") or []
    ephemerals = spec.get("ephemeralContainers") or []
    if not container:
        if len(containers) == 1:
            return containers[0]["name"]
        message = f"a container name must be specified for pod {name}, choose one of: {_names(containers)}"
        if inits:
            message += f" or one of the init containers: {_names(inits)}"
        if ephemerals:
            message += f" or one of the ephemeral containers: {_names(ephemerals)}"
        raise errors.bad_request(message)
    if not any(c["name"] == container for c in (*containers, *inits, *ephemerals)):
        raise errors.bad_request(f"container {container} is not valid for pod {name}")
    return container


def container_log_error(pod: dict, container: str, previous: bool) -> str | None:
    """Why a container has no logs to show yet (the kubelet's validateContainerLogStatus), or None."""
    status = pod.get("status") or {}
    name = pod["metadata"]["name"]
    found = None
    for key in ("containerStatuses", "initContainerStatuses", "ephemeralContainerStatuses"):
        for cs in status.get(key) or []:
            if cs.get("name") == container:
                found = cs
    if found is None:
        return f'container "{container}" in pod "{name}" is waiting to start: ContainerCreating' \
            if status.get("phase", "Pending") == "Pending" else f'container "{container}" in pod "{name}" is not available'
    state, last = found.get("state") or {}, found.get("lastTerminationState") or {}
    if previous:
        if not (last.get("terminated") or {}).get("containerID"):
            return f'previous terminated container "{container}" in pod "{name}" not found'
        return None
    if "running" in state:
        return None
    if "terminated" in state:
        if state["terminated"].get("containerID") or (last.get("terminated") or {}).get("containerID"):
            return None
        return f'container "{container}" in pod "{name}" is terminated'
    if "terminated" in last:
        return None if last["terminated"].get("containerID") else \
            f'container "{container}" in pod "{name}" is terminated'
    if "waiting" in state:
        reason = state["waiting"].get("reason", "")
        why = {"ErrImagePull": "image can't be pulled",
               "ImagePullBackOff": "trying and failing to pull image"}.get(reason, reason)
        return f'container "{container}" in pod "{name}" is waiting to start: {why}'
    return f'container "{container}" in pod "{name}" is waiting to start - no logs yet'


def validate_log_options(query, pod_name: str) -> None:
    """PodLogOptions as the apiserver validates them (422 Invalid)."""
    def number(key: str) -> int | None:
        v = query.get(key)
        if v in (None, ""):
            return None
        try:
            return int(v)
        except ValueError:
            raise errors.bad_request(f'strconv.ParseInt: parsing "{v}": invalid syntax') from None
    errs = []
    tail, limit, since = number("tailLines"), number("limitBytes"), number("sinceSeconds")
    if tail is not None and tail < 0:
        errs.append(names.invalid("tailLines", tail, "must be greater than or equal to 0"))
    if limit is not None and limit < 1:
        errs.append(names.invalid("limitBytes", limit, "must be greater than 0"))
    if since is not None and query.get("sinceTime"):
        errs.append(names.forbidden("", "at most one of `sinceTime` or `sinceSeconds` may be specified"))
    elif since is not None and since < 1:
        errs.append(names.invalid("sinceSeconds", since, "must be greater than 0"))
    if errs:
        raise errors.invalid("", "PodLogOptions", pod_name, errs)


def dial_error(host: str, port: int, e: BaseException) -> str:
    """A failed connection as Go's net package words it."""
    if isinstance(e, ConnectionRefusedError):
        return f"dial tcp {host}:{port}: connect: connection refused"
    if isinstance(e, asyncio.TimeoutError):
        return f"dial tcp {host}:{port}: i/o timeout"
    return str(e) or type(e).__name__


def _unreachable_address(node: dict) -> str:
    """host:port a kubelet without a URL would have upstream (InternalIP and the kubelet port)."""
    addresses = (node.get("status") or {}).get("addresses") or []
    host = next((a["address"] for t in ("InternalIP", "ExternalIP", "Hostname") for a in addresses
                 if a.get("type") == t), node["metadata"]["name"])
    port = (((node.get("status") or {}).get("daemonEndpoints") or {}).get("kubeletEndpoint") or {}).get("Port") \
        or DEFAULT_KUBELET_PORT
    return f"{host}:{port}"


class KubeletProxy:
    def __init__(self, registry: Registry, *, tls_dir: Path, allow_remote: bool = False):
        self.registry = registry
        self.allow_remote = allow_remote
        self._tls = kubelet_client_tls(tls_dir)
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=self._tls, limit=0),
                                                  timeout=aiohttp.ClientTimeout(total=None,
                                                                                sock_connect=_CONNECT_TIMEOUT))
        return self._session

    async def serve(self, ctx) -> web.StreamResponse:
        info = ctx.info
        sub, method = info.subresource, ctx.request.method
        if info.resource.plural == "nodes" and sub == "proxy":
            node = await self._node(info.name)
            prefix = f"/nodes/{info.name}/proxy"   # (a node may be called proxy-1)
            rest = ctx.request.path.split(prefix, 1)[1] if prefix in ctx.request.path else "/"
            return await self._forward_plain(ctx, node, rest or "/", ctx.request.query_string)
        if info.resource.plural != "pods" or sub == "proxy":
            raise errors.ApiError(404, "NotFound", "the server could not find the requested resource")
        if sub == "log" and method != "GET" or sub != "log" and method not in ("GET", "POST"):
            raise errors.method_not_allowed()
        pod = await self.registry.get_or_none(PODS, info.namespace, info.name)
        if pod is None:
            raise errors.not_found("", "pods", info.name)
        query = ctx.request.query
        ns, name = info.namespace, info.name
        if sub == "portforward":
            path = f"/portForward/{quote(ns)}/{quote(name)}"
            params = [("port", p) for v in query.getall("ports", []) + query.getall("port", [])
                      for p in v.split(",") if p.strip()]
        else:
            container = pick_container(pod, query.get("container", ""))
            if sub == "log":
                validate_log_options(query, name)
                why = container_log_error(pod, container, query.get("previous", "").lower() in ("1", "true"))
                if why is not None:
                    raise errors.bad_request(why)
                path = f"/containerLogs/{quote(ns)}/{quote(name)}/{quote(container)}"
                params = [(k, v) for k in LOG_PARAMS for v in query.getall(k, [])]
            else:
                path = f"/{sub}/{quote(ns)}/{quote(name)}/{quote(container)}"
                params = [(k, v) for k in EXEC_PARAMS for v in query.getall(k, [])]
        node_name = (pod.get("spec") or {}).get("nodeName", "")
        if not node_name:
            if sub == "log":
                return web.Response(status=200, content_type="text/plain", body=b"")
            raise errors.bad_request(f"pod {name} does not have a host assigned")
        node = await self._node(node_name)
        qs = urlencode(params)
        if sub == "log":
            return await self._forward_plain(ctx, node, path, qs, streaming_log=True)
        return await self._forward_upgrade(ctx, node, path, qs)

    async def _node(self, name: str) -> dict:
        node = await self.registry.get_or_none(NODES, None, name)
        if node is None:
            raise errors.not_found("", "nodes", name)
        return node

    def _base(self, node: dict, path: str, qs: str, upgrade: bool) -> str:
        """The kubelet's base URL, or raise the error an unreachable kubelet gives."""
        base = kubelet_url(node)
        if not base:
            address = _unreachable_address(node)
            if upgrade:
                raise errors.ApiError(500, "", f"error dialing backend: dial tcp {address}: connect: connection refused")
            url = f"https://{address}{path}" + (f"?{qs}" if qs else "")
            raise errors.ApiError(500, "", f'Get "{url}": dial tcp {address}: connect: connection refused')
        if not self.allow_remote and not is_loopback_url(base):
            raise errors.ApiError(500, "", f"error dialing backend: kubelet {base} is not on loopback (the server "
                                           "proxies to remote kubelets only with --metrics-allow-remote-kubelets)")
        return base.rstrip("/")

    async def _forward_plain(self, ctx, node: dict, path: str, qs: str, streaming_log: bool = False
                             ) -> web.StreamResponse:
        base = self._base(node, path, qs, upgrade=False)
        url = base + path + (f"?{qs}" if qs else "")
        request = ctx.request
        body = await request.read() if request.can_read_body else None
        # the body is passed on as it comes, so ask for it unencoded
        headers = {k: v for k, v in request.headers.items()
                   if k.lower() not in _HOP_BY_HOP | {"content-length", "accept-encoding"}}
        try:
            upstream = await self._client().request(request.method, url, data=body, headers=headers,
                                                    allow_redirects=False, auto_decompress=False)
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as e:
            target = urlsplit(url)
            cause = e.os_error if isinstance(e, aiohttp.ClientConnectorError) else e
            raise errors.ApiError(500, "", f'{request.method.capitalize()} "{url}": '
                                           f'{dial_error(target.hostname or "", target.port or 443, cause)}') from None
        async with upstream:
            if streaming_log and upstream.status != 200:
                text = (await upstream.read()).decode(errors="replace").strip()
                if upstream.status == 400:
                    raise errors.bad_request(text)
                if upstream.status == 500:
                    raise errors.internal(text)
                raise errors.ApiError(upstream.status, "", text)
            resp = web.StreamResponse(status=upstream.status)
            for k, v in upstream.headers.items():
                if k.lower() not in _HOP_BY_HOP | {"content-length", "content-encoding", "date", "server",
                                                   "connection"}:
                    resp.headers.add(k, v)
            await resp.prepare(request)

            async def client_gone() -> None:
                # aiohttp does not cancel a handler whose client left; a quiet `logs -f` would
                # otherwise hold the kubelet's stream open until the container exits.
                while request.transport is not None and not request.transport.is_closing():
                    await asyncio.sleep(1.0)
                upstream.close()
            watcher = asyncio.ensure_future(client_gone())
            try:
                async for chunk in upstream.content.iter_any():
                    await resp.write(chunk)
                await resp.write_eof()
            except (aiohttp.ClientError, ConnectionError):
                pass  # either side went away (a follow ended by the client)
            finally:
                watcher.cancel()
            return resp

    async def _forward_upgrade(self, ctx, node: dict, path: str, qs: str) -> web.StreamResponse:
        request = ctx.request
        if "upgrade" not in request.headers.get("Connection", "").lower():
            raise errors.bad_request("Upgrade request required")
        base = self._base(node, path, qs, upgrade=True)
        target = urlsplit(base)
        host, port = target.hostname or "", target.port or (443 if target.scheme == "https" else 80)
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(
                host, port, ssl=self._tls if target.scheme == "https" else None,
                server_hostname=host if target.scheme == "https" else None), _CONNECT_TIMEOUT)
        except (OSError, asyncio.TimeoutError, ssl.SSLError) as e:
            raise errors.ApiError(500, "", f"error dialing backend: {dial_error(host, port, e)}") from None
        try:
            head = [f"{request.method} {target.path.rstrip('/')}{path}{'?' + qs if qs else ''} HTTP/1.1",
                    f"Host: {target.netloc}"]
            for k, v in request.headers.items():
                if k.lower() not in _HOP_BY_HOP:
                    head.append(f"{k}: {v}")
            writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
            # A kubelet that accepts but never answers must not hold the client forever.
            await asyncio.wait_for(writer.drain(), _CONNECT_TIMEOUT)
            status, headers = await asyncio.wait_for(_read_response_head(reader), _UPGRADE_TIMEOUT)
            if status != 101:
                length = int(next((v for k, v in headers if k.lower() == "content-length"), "0") or 0)
                body = await asyncio.wait_for(reader.readexactly(length), _UPGRADE_TIMEOUT) if length else b""
                resp = web.Response(status=status, body=body)
                for k, v in headers:
                    if k.lower() not in ("content-length", "date", "server", "connection", "transfer-encoding"):
                        resp.headers.add(k, v)
                return resp
            reply = [(k, v) for k, v in headers if k.lower() not in ("content-length", "date", "server")]
            resp, client_reader, client_writer = await hijack.switch_protocols(request, _multidict(reply))
            await hijack.splice_both((client_reader, client_writer), (reader, writer))
            return resp
        except (OSError, ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                asyncio.TimeoutError) as e:
            raise errors.ApiError(500, "", f"error proxying to the kubelet: {e or type(e).__name__}") from None
        finally:
            writer.close()   # whatever happened, the kubelet learns the session is over


def _multidict(pairs):
    from multidict import CIMultiDict
    return CIMultiDict(pairs)


async def _read_response_head(reader: asyncio.StreamReader) -> tuple[int, list[tuple[str, str]]]:
    raw = await reader.readuntil(b"\r\n\r\n")
    lines = raw.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[1].isdigit():
        raise ValueError(f"bad status line {lines[0]!r}")
    headers = []
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers.append((k.strip(), v.strip()))
    return int(parts[1]), headers
