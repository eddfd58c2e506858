"""The kubelet API authenticates its callers: a client certificate of the cluster CA or a bearer
token the API server accepts in a TokenReview; anonymous callers get 401. The API server's own
calls (logs, exec, metrics) present its kubelet client certificate and get through."""
from __future__ import annotations

import asyncio
import http.client
import json
import ssl
from pathlib import Path

import pytest

from helpers.cluster import unique, wait_for
from helpers.http import Api
from streaming_env import KubeletThread, create_running_pod, register_node

from ketch.agent.run import cluster_ca
from ketch.client import kubeconfig
from ketch.client.rest import Client
from ketch.web import certs


@pytest.fixture(scope="module")
def kubelet(server, tmp_path_factory):
    k = KubeletThread(tmp_path_factory.mktemp("kubelet"), server=server).start()
    k.node = unique("authn")
    register_node(server, k.node, k.url)
    try:
        yield k
    finally:
        k.stop()
        server.kubectl("delete", "node", k.node, "--wait=false", check=False)


def _get(kubelet, path: str = "/pods", *, token: str | None = None, cert: tuple[Path, Path] | None = None):
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE   # its serving certificate is self-signed
    if cert is not None:
        ctx.load_cert_chain(*cert)
    conn = http.client.HTTPSConnection("127.0.0.1", kubelet.server.port, context=ctx, timeout=10)
    conn.request("GET", path, headers={"Authorization": f"Bearer {token}"} if token else {})
    resp = conn.getresponse()
    try:
        return resp.status, resp.read().decode()
    finally:
        conn.close()


def test_anonymous_callers_are_refused(kubelet):
    for path in ("/pods", "/stats/summary", "/metrics/resource", "/containerLogs/default/p/c", "/healthz"):
        assert _get(kubelet, path) == (401, "Unauthorized"), path
    assert _get(kubelet, token="not-a-token") == (401, "Unauthorized")


def test_a_client_certificate_of_the_cluster_ca_is_accepted(server, kubelet, tmp_path):
    tls = server.data_dir / "data" / "tls"
    status, body = _get(kubelet, cert=(tls / "admin.crt", tls / "admin.key"))
    assert status == 200 and json.loads(body)["kind"] == "PodList"
    # One signed by another CA does not get through the handshake.
    other = certs.load_or_create_ca(tmp_path / "other")
    cert, key = certs.ensure_leaf(other, tmp_path / "other", "intruder", "system:admin", ("system:masters",))
    with pytest.raises((ssl.SSLError, ConnectionError)):
        _get(kubelet, cert=(cert, key))


def test_bearer_tokens_are_checked_with_a_token_review(server, kubelet):
    ns = unique("authn")
    server.kubectl("create", "namespace", ns)
    try:
        token = wait_for(lambda: server.kubectl("create", "token", "default", "-n", ns, check=False).stdout.strip(),
                         30, "a token for the default service account")
        assert _get(kubelet, token=token)[0] == 200
        admin = next(line.split(",")[0] for line in (server.data_dir / "data" / "tls" / "tokens.csv").read_text().splitlines()
                     if ",admin," in line)
        assert _get(kubelet, "/stats/summary", token=admin)[0] == 200
        # The API server's answer, as a kubelet or metrics-server reads it.
        review = Api(server.kubeconfig).request("POST", "/apis/authentication.k8s.io/v1/tokenreviews", {
            "apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token}})
        assert review[0] == 201, review
        status = review[1]["status"]
        assert status["authenticated"] is True and status["user"]["username"] == f"system:serviceaccount:{ns}:default"
        assert {"system:serviceaccounts", f"system:serviceaccounts:{ns}", "system:authenticated"} <= \
            set(status["user"]["groups"])
        bad = Api(server.kubeconfig).request("POST", "/apis/authentication.k8s.io/v1/tokenreviews", {
            "apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": "nope"}})
        assert bad[0] == 201 and not bad[1]["status"].get("authenticated") and bad[1]["status"]["error"]
    finally:
        server.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def test_the_api_server_reaches_the_kubelet_with_its_client_certificate(server, kubelet):
    ns = unique("authn")
    server.kubectl("create", "namespace", ns)
    try:
        name = create_running_pod(server, kubelet, ns, kubelet.node, ["main"])
        out = server.kubectl("exec", "-n", ns, name, "--", "echo", "through")
        assert out.stdout == "through\n"
        status = server.kubectl("get", "--raw", f"/api/v1/nodes/{kubelet.node}/proxy/pods", check=False)
        assert status.returncode == 0 and json.loads(status.stdout)["kind"] == "PodList", status.stderr
    finally:
        server.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def test_an_agent_joined_without_a_ca_takes_the_clusters_from_kube_root_ca(server):
    """`ketch agent --server URL --token T` with no --certificate-authority: the kubelet API
    still verifies client certificates, with the CA every namespace's kube-root-ca.crt holds."""
    tls = server.data_dir / "data" / "tls"
    token = (server.data_dir / "data" / "node-token").read_text().strip()

    async def fetch() -> bytes:
        client = Client(kubeconfig.ClientConfig(server=server.url, token=token, insecure=True))
        try:
            return await cluster_ca(client)
        finally:
            await client.close()
    assert asyncio.run(fetch()).strip() == (tls / "ca.crt").read_bytes().strip()
