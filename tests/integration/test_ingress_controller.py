"""The IngressController following a real API server of its own (IngressClass is cluster-wide):
it makes its default IngressClass, serves class-less and its class's Ingresses, follows
EndpointSlice changes live, writes and clears status.loadBalancer, resolves named ports, and
serves TLS Secrets by SNI with a fallback certificate. The backends are aiohttp servers inside a
network namespace the test made, named by hand-written EndpointSlices (no pods needed)."""
from __future__ import annotations

import asyncio
import base64
import secrets
import ssl
import subprocess
import time

import aiohttp
import pytest
from aiohttp import web
from cryptography import x509
from cryptography.x509.oid import NameOID

from helpers.cluster import free_port, start_server, unique
from ketch.agent.runtime.namespaces import NetnsSockets
from ketch.client import kubeconfig
from ketch.client.informer import SharedInformers
from ketch.client.rest import Client
from ketch.ingress import IngressController
from ketch.ingress.tls import FALLBACK_CN, self_signed


@pytest.fixture(scope="module")
def api_server(tmp_path_factory):
    srv = start_server(tmp_path_factory.mktemp("ingress"))
    try:
        yield srv
    finally:
        srv.stop()


BACKENDS = ("192.0.2.2", "192.0.2.3")
NODE_IP = "192.0.2.9"   # the node's own address in its namespace


@pytest.fixture
def netns():
    name = f"ketch-t-ingc-{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        # Endpoints may not be loopback addresses: the backends get documentation addresses on the
        # namespace's lo (traffic to them never leaves it).
        for ip in (*BACKENDS, NODE_IP):
            subprocess.run(["ip", "-n", name, "addr", "add", f"{ip}/32", "dev", "lo"], check=True)
        yield f"/run/netns/{name}"
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


class Env:
    def __init__(self, server, netns):
        self.client = Client(kubeconfig.load(server.kubeconfig), user_agent="ketch-ingress-test")
        self.informers = SharedInformers(self.client)
        self.sockets = NetnsSockets(netns)
        self.http_port, self.https_port = free_port(), free_port()
        self.controller = IngressController(self.informers, self.client, self.sockets,
                                            http=("127.0.0.1", self.http_port), https=("127.0.0.1", self.https_port),
                                            node_address=NODE_IP)
        self.runners: list[web.AppRunner] = []
        self.ns = unique("ing")

    async def backend(self, ip: str, name: str) -> int:
        async def hello(request):
            return web.Response(text=f"{name} {request.headers.get('X-Forwarded-Proto')}")
        app = web.Application()
        app.router.add_get("/{tail:.*}", hello)
        sock = await self.sockets.listen(ip, 0)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.SockSite(runner, sock).start()
        self.runners.append(runner)
        return sock.getsockname()[1]

    def res(self, api_version, kind):
        return self.client.resource(api_version, kind)

    async def get(self, host: str, path: str = "/") -> tuple[int, str]:
        async with aiohttp.ClientSession() as s:
            async with s.get(f"http://127.0.0.1:{self.http_port}{path}", headers={"Host": host}) as r:
                return r.status, await r.text()

    async def eventually(self, fn, expected, timeout: float = 10.0):
        deadline = time.monotonic() + timeout
        while True:
            got = await fn()
            if got == expected or time.monotonic() > deadline:
                assert got == expected
                return got
            await asyncio.sleep(0.05)

    async def close(self):
        await self.controller.stop()
        await self.informers.stop()
        for r in self.runners:
            await r.cleanup()
        self.sockets.close()
        await self.client.close()


@pytest.fixture
async def env(api_server, netns):
    e = Env(api_server, netns)
    await e.res("v1", "Namespace").create({"metadata": {"name": e.ns}})
    e.controller.start()
    e.informers.start()
    try:
        await asyncio.wait_for(e.controller.ready.wait(), 20)
        yield e
    finally:
        await e.close()


def service(name: str, port_name: str = "http") -> dict:
    return {"metadata": {"name": name}, "spec": {"ports": [{"name": port_name, "port": 80, "targetPort": 8080}]}}


def endpoint_slice(svc: str, port: int, *eps: tuple[str, bool], port_name: str = "http") -> dict:
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": f"{svc}-manual", "labels": {"kubernetes.io/service-name": svc,
                                                             "endpointslice.kubernetes.io/managed-by": "test"}},
            "addressType": "IPv4", "ports": [{"name": port_name, "port": port, "protocol": "TCP"}],
            "endpoints": [{"addresses": [ip], "conditions": {"ready": ready}} for ip, ready in eps]}


def ingress(name: str, host: str, svc: str, port: dict, **spec) -> dict:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": name},
            "spec": {"rules": [{"host": host, "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": {
                "service": {"name": svc, "port": port}}}]}}], **spec}}


async def test_default_class_status_and_endpoints_followed_live(env):
    ns = env.ns
    klass = await env.res("networking.k8s.io/v1", "IngressClass").get("ketch")
    assert klass["spec"]["controller"] == "ketch.io/ingress-controller"
    assert klass["metadata"]["annotations"]["ingressclass.kubernetes.io/is-default-class"] == "true"

    p1 = await env.backend("192.0.2.2", "one")
    await env.res("v1", "Service").create(service("web"), namespace=ns)
    slices = env.res("discovery.k8s.io/v1", "EndpointSlice")
    await slices.create(endpoint_slice("web", p1, ("192.0.2.2", True)), namespace=ns)
    ingresses = env.res("networking.k8s.io/v1", "Ingress")
    await ingresses.create(ingress("site", "a.test", "web", {"number": 80}), namespace=ns)   # class-less

    await env.eventually(lambda: env.get("a.test"), (200, "one http"))
    assert await env.get("other.test") == (404, "default backend - 404\n")
    # the node's own address inside its namespace serves the same (what pods and NodePorts reach)
    reader, writer = await env.sockets.open_connection(NODE_IP, env.http_port, timeout=5)
    writer.write(b"GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n")
    assert (await reader.read()).endswith(b"one http")
    writer.close()

    async def lb():
        got = await ingresses.get("site", namespace=ns)
        return (got.get("status") or {}).get("loadBalancer", {}).get("ingress")
    await env.eventually(lb, [{"ip": "127.0.0.1"}])
    before = (await ingresses.get("site", namespace=ns))["metadata"]["resourceVersion"]
    env.controller._status_wake.set()    # a second pass: nothing to write, nothing written
    await asyncio.sleep(0.3)
    assert (await ingresses.get("site", namespace=ns))["metadata"]["resourceVersion"] == before

    # The endpoint goes unready: 503 at once; ready again: served; gone: 503.
    es = await slices.get("web-manual", namespace=ns)
    es["endpoints"][0]["conditions"]["ready"] = False
    es = await slices.update(es)
    await env.eventually(lambda: env.get("a.test"), (503, "503 Service Temporarily Unavailable\n"))
    es["endpoints"][0]["conditions"]["ready"] = True
    await slices.update(es)
    await env.eventually(lambda: env.get("a.test"), (200, "one http"))
    await slices.delete("web-manual", namespace=ns)
    await env.eventually(lambda: env.get("a.test"), (503, "503 Service Temporarily Unavailable\n"))

    # Handed to another class: no longer served, and our status entry goes.
    site = await ingresses.get("site", namespace=ns)
    site["spec"]["ingressClassName"] = "traefik"
    await ingresses.update(site)
    await env.eventually(lambda: env.get("a.test"), (404, "default backend - 404\n"))
    await env.eventually(lb, None)


async def test_named_port_and_tls_by_sni(env):
    ns = env.ns
    port = await env.backend("192.0.2.2", "secure")
    await env.res("v1", "Service").create(service("tls-web", port_name="web"), namespace=ns)
    await env.res("discovery.k8s.io/v1", "EndpointSlice").create(
        endpoint_slice("tls-web", port, ("192.0.2.2", True), port_name="web"), namespace=ns)
    cert, key = self_signed("secure.test", ("secure.test",))
    await env.res("v1", "Secret").create({"metadata": {"name": "secure-tls"}, "type": "kubernetes.io/tls", "data": {
        "tls.crt": base64.b64encode(cert).decode(), "tls.key": base64.b64encode(key).decode()}}, namespace=ns)
    await env.res("networking.k8s.io/v1", "Ingress").create(
        ingress("secure", "secure.test", "tls-web", {"name": "web"}, ingressClassName="ketch",
                tls=[{"hosts": ["secure.test"], "secretName": "secure-tls"}]), namespace=ns)
    await env.eventually(lambda: env.get("secure.test"), (200, "secure http"))

    async def https_get(server_name: str, ctx: ssl.SSLContext) -> tuple[bytes, bytes]:
        reader, writer = await asyncio.open_connection("127.0.0.1", env.https_port, ssl=ctx, server_hostname=server_name)
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        writer.write(f"GET / HTTP/1.1\r\nHost: {server_name}\r\nConnection: close\r\n\r\n".encode())
        body = await reader.read()
        writer.close()
        return body, der

    verify = ssl.create_default_context(cadata=cert.decode())   # trusts only the Secret's certificate
    body, _ = await https_get("secure.test", verify)
    assert body.startswith(b"HTTP/1.1 200") and body.endswith(b"secure https")

    insecure = ssl.create_default_context()
    insecure.check_hostname = False
    insecure.verify_mode = ssl.CERT_NONE
    _, der = await https_get("unknown.test", insecure)
    cn = x509.load_der_x509_certificate(der).subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert cn == FALLBACK_CN


async def test_failed_listen_is_retried_and_the_others_serve(api_server, netns, monkeypatch, caplog):
    """The HTTP port is taken (a socket without SO_REUSEPORT): HTTPS serves meanwhile, a warning
    says so, and HTTP is served once the port is free."""
    import socket as socket_module
    from ketch.ingress import controller as controller_module
    monkeypatch.setattr(controller_module, "LISTEN_RETRY", 0.2)
    e = Env(api_server, netns)
    blocker = socket_module.socket()
    blocker.bind(("127.0.0.1", e.http_port))
    blocker.listen(1)
    await e.res("v1", "Namespace").create({"metadata": {"name": e.ns}})
    caplog.set_level("WARNING", logger="ketch.ingress")
    e.controller.start()
    e.informers.start()
    try:
        await asyncio.wait_for(e.controller.ready.wait(), 20)
        assert ("127.0.0.1", e.https_port, "https") in e.controller.addresses
        assert ("127.0.0.1", e.http_port, "http") not in e.controller.addresses
        assert any("cannot listen on 127.0.0.1:%d" % e.http_port in r.getMessage() for r in caplog.records)
        blocker.close()
        await e.eventually(lambda: _served(e), True)
        status, body = await e.get("nobody.example")
        assert status == 404 and body == "default backend - 404\n"
    finally:
        blocker.close()
        await e.close()


async def _served(e) -> bool:
    return ("127.0.0.1", e.http_port, "http") in e.controller.addresses
