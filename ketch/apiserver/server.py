"""The API server process: TLS, authentication, routing, bootstrap objects, and its lifecycle."""
from __future__ import annotations

import asyncio
import copy
import gc
import logging
import platform
import secrets
import ssl
import time
from dataclasses import dataclass
from pathlib import Path

import orjson
from aiohttp import web

from .. import __version__
from ..api import discovery, errors, kinds, legacy, openapi, schema, validation
from ..client import kubeconfig
from ..storage import open_store
from ..storage.interface import Store
from ..web import certs
from . import admission, codec, handlers, metrics, proxy, satokens
from .allocators import KUBERNETES_SERVICE_IP
from .registry import Registry
from .request import PageNotFound, parse_resource_path

log = logging.getLogger("ketch.apiserver")

UNAUTHENTICATED_PATHS = ("/healthz", "/livez", "/readyz", "/version")
SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
COMPACT_INTERVAL = 300.0
COMPACT_KEEP_REVISIONS = 10_000
# The default StorageClass, served by the controller manager's built-in local-path provisioner (as k3s's).
DEFAULT_STORAGE_CLASS = {
    "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
    "metadata": {"name": "local-path", "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
    "provisioner": "ketch.io/local-path", "reclaimPolicy": "Delete", "volumeBindingMode": "Immediate"}


def version_info() -> dict:
    major, minor, _patch = schema.KUBERNETES_VERSION.split(".")
    return {"major": major, "minor": minor, "emulationMajor": major, "emulationMinor": minor,
            "minCompatibilityMajor": major, "minCompatibilityMinor": str(int(minor) - 1),
            "gitVersion": f"v{schema.KUBERNETES_VERSION}+ketch", "gitCommit": f"ketch-{__version__}",
            "gitTreeState": "clean", "buildDate": "2026-12-01T00:00:00Z",
            "goVersion": f"python{platform.python_version()}", "compiler": "cpython",
            "platform": f"linux/{'amd64' if platform.machine() == 'x86_64' else platform.machine()}"}


@dataclass
class ServerConfig:
    data_dir: Path
    bind_address: str = "127.0.0.1"
    secure_port: int = 6443
    kubeconfig_path: Path | None = None
    datastore_endpoint: str = ""
    advertise_names: tuple[str, ...] = ()
    # metrics.k8s.io: how often kubelets are scraped, and whether non-loopback kubelet URLs may be.
    metrics_resolution: float = metrics.DEFAULT_RESOLUTION
    metrics_allow_remote_kubelets: bool = False
    # The kube-system/kube-dns Service is made at this cluster IP (the node agents serve it); "": none.
    cluster_dns: str = "10.43.0.10"
    # Events are deleted this long after their last write (kube-apiserver's --event-ttl).
    event_ttl: float = 3600.0

    @property
    def tls_dir(self) -> Path:
        return self.data_dir / "tls"

    @property
    def url(self) -> str:
        host = self.bind_address if self.bind_address not in ("0.0.0.0", "::") else "127.0.0.1"
        return f"https://{host}:{self.secure_port}"


NODE_TOKEN_USER = "system:node-bootstrap"

# The descriptions of the PriorityClasses the apiserver makes at start (upstream's scheduling bootstrap).
SYSTEM_PRIORITY_CLASS_DESCRIPTIONS = {
    "system-node-critical": "Used for system critical pods that must not be moved from their current node.",
    "system-cluster-critical": "Used for system critical pods that must run in the cluster, but can be moved to "
                               "another node if necessary.",
}


class Credentials:
    """Who may call: client certificates signed by the cluster CA, and bearer tokens (static ones
    and service accounts' JWTs, which `issuer` signs and checks)."""

    def __init__(self, tls_dir: Path, issuer: satokens.TokenIssuer):
        self.issuer = issuer
        self.registry: Registry | None = None   # set once the store is open: JWTs are checked against it
        self.tokens: dict[str, tuple[str, tuple[str, ...]]] = {}
        token_file = tls_dir / "tokens.csv"
        if not token_file.exists():
            token_file.write_text(f"{secrets.token_hex(24)},admin,admin,system:masters\n")
            token_file.chmod(0o600)
        for line in token_file.read_text().splitlines():
            parts = line.strip().split(",")
            if len(parts) >= 3:
                self.tokens[parts[0]] = (parts[1], tuple(parts[3:]))
        # The token agents on other machines join with (`ketch agent --token`), as k3s's node-token.
        node_token = tls_dir.parent / "node-token"
        if NODE_TOKEN_USER not in {user for user, _g in self.tokens.values()}:
            token = secrets.token_hex(24)
            with token_file.open("a") as f:
                f.write(f"{token},{NODE_TOKEN_USER},{NODE_TOKEN_USER},system:nodes\n")
            self.tokens[token] = (NODE_TOKEN_USER, ("system:nodes",))
        if not node_token.exists():
            node_token.write_text(next(t for t, (user, _g) in self.tokens.items() if user == NODE_TOKEN_USER) + "\n")
            node_token.chmod(0o600)

    def admin_token(self) -> str:
        return next(t for t, (user, _g) in self.tokens.items() if user == "admin")

    async def authenticate_token(self, token: str) -> tuple[str, tuple[str, ...]] | None:
        user = self.tokens.get(token)
        if user is None and token.count(".") == 2 and self.registry is not None:   # a JWT: a service account's
            user = await self.issuer.authenticate(self.registry, token)
        return user

    async def authenticate(self, request: web.Request) -> tuple[str, tuple[str, ...]] | None:
        auth = request.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            user = await self.authenticate_token(auth[7:].strip())
            if user is not None:
                return user
        ssl_object = request.transport.get_extra_info("ssl_object") if request.transport else None
        if ssl_object is not None:
            der = ssl_object.getpeercert(binary_form=True)
            if der:
                return certs.subject_of(der)
        return None


class APIServer:
    def __init__(self, config: ServerConfig):
        self.config = config
        self.store: Store | None = None
        self.registry: Registry | None = None
        self.runner: web.AppRunner | None = None
        self.ready = False
        self._documents: dict[str, openapi.Rendered] = {}
        self.openapi = openapi.PublishedOpenAPI()
        self._tasks: list[asyncio.Task] = []
        self.metrics_store = metrics.MetricsStore()

    # ---- setup ---------------------------------------------------------------------------------

    def _pki(self) -> ssl.SSLContext:
        tls = self.config.tls_dir
        ca = certs.load_or_create_ca(tls)
        names = ("127.0.0.1", "localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
                 "kubernetes.default.svc.cluster.local", KUBERNETES_SERVICE_IP, *self.config.advertise_names)
        if self.config.bind_address not in ("0.0.0.0", "::"):
            names = (self.config.bind_address, *names)
        names = tuple(dict.fromkeys(names))
        serving_cert, serving_key = certs.ensure_leaf(ca, tls, "serving", "kube-apiserver",
                                                      server_names=names, server=True)
        certs.ensure_leaf(ca, tls, "admin", "system:admin", ("system:masters",))
        # What the server presents to kubelets (kubeadm's apiserver-kubelet-client).
        certs.ensure_leaf(ca, tls, metrics.KUBELET_CLIENT_FILES, metrics.KUBELET_CLIENT_USER, ("system:masters",))
        self.credentials = Credentials(tls, satokens.TokenIssuer(tls))
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(serving_cert, serving_key)
        ctx.load_verify_locations(tls / "ca.crt")
        ctx.verify_mode = ssl.CERT_OPTIONAL
        ctx.set_alpn_protocols(["http/1.1"])
        return ctx

    def write_kubeconfig(self, path: Path) -> None:
        tls = self.config.tls_dir
        kubeconfig.write(path, server=self.config.url, ca_pem=(tls / "ca.crt").read_bytes(),
                         cert_pem=(tls / "admin.crt").read_bytes(), key_pem=(tls / "admin.key").read_bytes(),
                         cluster="ketch", user="admin")

    def _app(self) -> web.Application:
        app = web.Application(client_max_size=codec.MAX_BODY + 1024, middlewares=[self._middleware])
        app.router.add_route("*", r"/{tail:[\s\S]*}", self._route)  # names may hold any character
        return app

    async def start(self) -> None:
        t0 = time.monotonic()
        self.config.data_dir.mkdir(parents=True, exist_ok=True)
        legacy.install()
        ssl_ctx = self._pki()
        endpoint = self.config.datastore_endpoint or f"sqlite:///{(self.config.data_dir / 'state.db').resolve()}"
        self.store = open_store(endpoint)
        await self.store.start()
        self.registry = Registry(self.store, ca_pem=(self.config.tls_dir / "ca.crt").read_text(),
                                 event_ttl=self.config.event_ttl)
        self.credentials.registry = self.registry
        await self._bootstrap()
        # Request lines and headers up to 1 MiB, as the apiserver allows (aiohttp's default is 8 KiB).
        self.runner = web.AppRunner(self._app(), access_log=None, handle_signals=False, shutdown_timeout=1.0,
                                    max_line_size=1 << 20, max_field_size=1 << 20)
        await self.runner.setup()
        site = web.TCPSite(self.runner, self.config.bind_address, self.config.secure_port, ssl_context=ssl_ctx,
                           reuse_address=True, backlog=1024)
        await site.start()
        # Always beside the data (where `ketch kubectl` looks), and where --write-kubeconfig asks.
        self.write_kubeconfig(self.config.data_dir / "kubeconfig.yaml")
        if self.config.kubeconfig_path:
            self.write_kubeconfig(self.config.kubeconfig_path)
        self._tasks.append(asyncio.create_task(self._compactor()))
        self.metrics_api = metrics.MetricsAPI(self.registry, self.metrics_store)
        scraper = metrics.Scraper(self.registry, self.metrics_store, resolution=self.config.metrics_resolution,
                                  allow_remote=self.config.metrics_allow_remote_kubelets,
                                  tls_dir=self.config.tls_dir)
        self._tasks.append(asyncio.create_task(scraper.run()))
        self.kubelet_proxy = proxy.KubeletProxy(self.registry, tls_dir=self.config.tls_dir,
                                                allow_remote=self.config.metrics_allow_remote_kubelets)
        _tune_gc()
        self.ready = True
        log.info("serving on %s (ready in %.2fs)", self.config.url, time.monotonic() - t0)

    def component_kubeconfig(self, name: str, user: str) -> Path:
        """A kubeconfig with a client certificate of its own, for a component running beside the
        server (the controller manager's is `system:kube-controller-manager`)."""
        tls = self.config.tls_dir
        ca = certs.load_or_create_ca(tls)
        cert, key = certs.ensure_leaf(ca, tls, name, user)
        path = self.config.data_dir / f"{name}.kubeconfig"
        kubeconfig.write(path, server=self.config.url, ca_pem=(tls / "ca.crt").read_bytes(),
                         cert_pem=cert.read_bytes(), key_pem=key.read_bytes(), cluster="ketch", user=user)
        return path

    async def stop(self) -> None:
        self.ready = False
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.runner is not None:
            await self.runner.cleanup()
        if getattr(self, "kubelet_proxy", None) is not None:
            await self.kubelet_proxy.close()
        if self.store is not None:
            await self.store.close()

    async def _bootstrap(self) -> None:
        """The objects every cluster starts with: system namespaces, the `kubernetes` Service, the
        system PriorityClasses and the default StorageClass."""
        reg = self.registry
        assert reg is not None
        ns_res = kinds.lookup("", "v1", "namespaces")
        from ..api import defaults
        for name in SYSTEM_NAMESPACES:
            if await reg.get_or_none(ns_res, None, name) is None:
                obj = {"apiVersion": "v1", "kind": "Namespace",
                       "metadata": {"name": name, "labels": {"kubernetes.io/metadata.name": name}}}
                defaults.apply_defaults(obj, ns_res.schema)
                await reg.create(ns_res, obj)
            else:
                await admission.namespace_created(reg, name)  # data dirs from before it existed
        svc_res = kinds.lookup("", "v1", "services")
        if await reg.get_or_none(svc_res, "default", "kubernetes") is None:
            svc = {"apiVersion": "v1", "kind": "Service",
                   "metadata": {"name": "kubernetes", "namespace": "default",
                                "labels": {"component": "apiserver", "provider": "kubernetes"}},
                   "spec": {"clusterIP": KUBERNETES_SERVICE_IP, "type": "ClusterIP", "sessionAffinity": "None",
                            "ports": [{"name": "https", "port": 443, "protocol": "TCP",
                                       "targetPort": self.config.secure_port}]}}
            defaults.apply_defaults(svc, svc_res.schema)
            await reg.create(svc_res, svc)
        if self.config.cluster_dns and await reg.get_or_none(svc_res, "kube-system", "kube-dns") is None:
            await self._create_dns_service(reg, svc_res)
        pc_res = kinds.lookup("scheduling.k8s.io", "v1", "priorityclasses")
        for name, value in validation.SYSTEM_PRIORITY_CLASSES.items():
            if await reg.get_or_none(pc_res, None, name) is None:
                pc = {"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass", "metadata": {"name": name},
                      "value": value, "description": SYSTEM_PRIORITY_CLASS_DESCRIPTIONS[name]}
                defaults.apply_defaults(pc, pc_res.schema)
                await reg.create(pc_res, pc)
        sc_res = kinds.lookup("storage.k8s.io", "v1", "storageclasses")
        if await reg.get_or_none(sc_res, None, DEFAULT_STORAGE_CLASS["metadata"]["name"]) is None:
            await reg.create(sc_res, copy.deepcopy(DEFAULT_STORAGE_CLASS))
        ep_res = kinds.lookup("", "v1", "endpoints")
        host = self.config.bind_address if self.config.bind_address not in ("0.0.0.0", "::") else "127.0.0.1"
        endpoints = {"apiVersion": "v1", "kind": "Endpoints",
                     "metadata": {"name": "kubernetes", "namespace": "default",
                                  "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
                     "subsets": [{"addresses": [{"ip": host}],
                                  "ports": [{"name": "https", "port": self.config.secure_port, "protocol": "TCP"}]}]}
        port = {"name": "https", "port": self.config.secure_port, "protocol": "TCP"}
        endpoint_slice = {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                          "metadata": {"name": "kubernetes", "namespace": "default",
                                       "labels": {"kubernetes.io/service-name": "kubernetes"}},
                          "addressType": "IPv4", "ports": [port],
                          "endpoints": [{"addresses": [host], "conditions": {"ready": True}}]}
        # Written as the apiserver's endpoint reconciler does, trusted: on a loopback-only server the
        # address is loopback, which validation rejects for user-written Endpoints.
        for res, obj, fields in ((ep_res, endpoints, ("subsets",)),
                                 (kinds.lookup("discovery.k8s.io", "v1", "endpointslices"), endpoint_slice,
                                  ("addressType", "ports", "endpoints"))):
            current = await reg.get_or_none(res, "default", "kubernetes")
            if current is None:
                await reg.create(res, obj, trusted=True)
            elif any(current.get(f) != obj[f] for f in fields):
                await reg.update(res, "default", "kubernetes",
                                 lambda cur, obj=obj, fields=fields: {**cur, **{f: obj[f] for f in fields}},
                                 trusted=True)

    async def _create_dns_service(self, reg, svc_res) -> None:
        """kube-dns as k3s ships it, without a selector: each node agent adds its own DNS server to
        it with an EndpointSlice (ketch/agent/nodedns.py)."""
        from ..api import defaults
        labels = {"k8s-app": "kube-dns", "kubernetes.io/cluster-service": "true", "kubernetes.io/name": "CoreDNS"}
        svc = {"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": "kube-dns", "namespace": "kube-system", "labels": labels},
               "spec": {"clusterIP": self.config.cluster_dns, "type": "ClusterIP",
                        "ports": [{"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                                  {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53}]}}
        defaults.apply_defaults(svc, svc_res.schema)
        try:
            await reg.create(svc_res, svc)
        except errors.ApiError as e:   # an address outside the service CIDR, or taken: say so, serve on
            log.warning("kube-system/kube-dns not created at %s: %s", self.config.cluster_dns, e)

    async def _compactor(self) -> None:
        """Compact history periodically, keeping recent revisions for watchers and paging."""
        while True:
            await asyncio.sleep(COMPACT_INTERVAL)
            try:
                await self.store.compact_older_than(COMPACT_KEEP_REVISIONS)  # type: ignore[union-attr]
            except Exception:  # noqa: BLE001 - a failed compaction must not stop the server
                log.exception("compaction failed")

    # ---- HTTP ----------------------------------------------------------------------------------

    @web.middleware
    async def _middleware(self, request: web.Request, handler):
        try:
            path = request.path
            if not path.startswith(UNAUTHENTICATED_PATHS):
                user = await self.credentials.authenticate(request)
                if user is None:
                    raise errors.unauthorized()
                request["user"] = user
            return await handler(request)
        except PageNotFound as e:
            if e.plain_text:
                return web.Response(status=404, text="404 page not found\n", content_type="text/plain")
            return _error_response(e)
        except errors.ApiError as e:
            return _error_response(e)
        except web.HTTPException:
            raise
        except (ConnectionResetError, asyncio.CancelledError):
            raise
        except Exception as e:  # noqa: BLE001 - never a traceback to the client
            log.exception("internal error serving %s %s", request.method, request.path_qs)
            return _error_response(errors.internal(str(e) or type(e).__name__))

    @staticmethod
    def _rendered(request: web.Request, doc: openapi.Rendered, content_type: str) -> web.Response:
        etag = f'"{doc.etag}"'
        headers = {"ETag": etag, "Vary": "Accept", "Content-Type": content_type}
        if request.headers.get("If-None-Match", "").strip('"') == doc.etag:
            return web.Response(status=304, headers=headers)
        return web.Response(body=doc.body, headers=headers)

    def _serve_document(self, request: web.Request, key: str, build, content_type: str = "application/json"
                        ) -> web.Response:
        """A discovery document, built once and served with its ETag, as the OpenAPI ones are."""
        doc = self._documents.get(key)
        if doc is None:
            doc = self._documents[key] = openapi.render(build())
        return self._rendered(request, doc, content_type)

    async def _route(self, request: web.Request) -> web.StreamResponse:
        path = request.path.rstrip("/") or "/"
        method = request.method
        if path in ("/healthz", "/livez", "/readyz") or path.startswith(("/healthz/", "/livez/", "/readyz/")):
            if path.startswith("/readyz") and not self.ready:
                return web.Response(status=500, text="[-]ketch-ready failed: not ready\nreadyz check failed\n")
            return web.Response(text="ok")
        if path == "/version":
            return web.json_response(version_info())
        if path in ("/api", "/apis") or path.startswith(("/api/", "/apis/")) and \
                len([p for p in path.split("/") if p]) <= (2 if path.startswith("/api/") else 3):
            if method not in ("GET", "HEAD"):
                raise errors.method_not_allowed()
            return self._discovery(request, path)
        if path == "/openapi/v2":
            wants_proto = "application/com.github.proto-openapi.spec.v2" in request.headers.get("Accept", "")
            doc = self.openapi.v2_protobuf() if wants_proto else self.openapi.v2_json()
            ctype = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf" if wants_proto else "application/json"
            return self._rendered(request, doc, ctype)
        if path == "/openapi/v3":
            return self._rendered(request, self.openapi.v3_index(), "application/json")
        if path.startswith("/openapi/v3/"):
            doc = self.openapi.v3(path[len("/openapi/v3/"):])
            if doc is None:
                raise PageNotFound(path)
            return self._rendered(request, doc, "application/json")
        if path == "/":
            return web.json_response({"paths": sorted(["/api", "/api/v1", "/apis", "/healthz", "/livez",
                                                      "/readyz", "/openapi/v2", "/openapi/v3", "/version"])})
        info = parse_resource_path(method, path, request.query)
        if info is None:
            raise PageNotFound(path)
        ctx = handlers.Context(request, info, self.registry, self.credentials)  # type: ignore[arg-type]
        if info.resource.group == metrics.GROUP:
            return await self.metrics_api.serve(ctx)
        if info.subresource in proxy.SUBRESOURCES and info.resource.plural in ("pods", "nodes"):
            return await self.kubelet_proxy.serve(ctx)
        return await handlers.dispatch(ctx)

    def _discovery(self, request: web.Request, path: str) -> web.Response:
        accept = codec.negotiate(request.headers.get("Accept"))
        parts = [p for p in path.split("/") if p]
        if accept.aggregated_discovery and len(parts) == 1:
            v = accept.aggregated_discovery
            ctype = f"application/json;g=apidiscovery.k8s.io;v={v};as=APIGroupDiscoveryList"
            return self._serve_document(request, f"aggregated/{parts[0]}/{v}",
                                        lambda: discovery.aggregated_discovery(parts[0] == "api", v), ctype)
        if parts == ["api"]:
            return web.json_response(discovery.api_versions(f"{self.config.bind_address}:{self.config.secure_port}"))
        if parts == ["apis"]:
            return self._serve_document(request, "apis", discovery.api_group_list)
        if parts[0] == "api":
            if parts[1] != "v1":
                raise PageNotFound(path)
            return self._serve_document(request, "api/v1", lambda: discovery.api_resource_list("", "v1"))
        group = parts[1]
        versions = kinds.group_versions().get(group)
        if versions is None:
            raise PageNotFound(path)
        if len(parts) == 2:
            return self._serve_document(request, f"apis/{group}", lambda: discovery.api_group(group))
        if parts[2] not in versions:
            raise PageNotFound(path)
        return self._serve_document(request, f"apis/{group}/{parts[2]}",
                                    lambda: discovery.api_resource_list(group, parts[2]))


def _tune_gc() -> None:
    """The schema and the code are loaded for good: take them out of the collector's way, and collect
    less often, so full collections do not stall requests while thousands of objects are decoded."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 50, 100)


def _error_response(e: errors.ApiError) -> web.Response:
    return web.Response(body=orjson.dumps(e.status()), status=e.code, content_type="application/json",
                        headers=e.headers)

