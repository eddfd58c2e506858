"""kubeconfig files: written by the server for its admin, read by every client."""
from __future__ import annotations

import base64
import os
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml


def write(path: Path, *, server: str, ca_pem: bytes, cert_pem: bytes | None = None, key_pem: bytes | None = None,
          token: str | None = None, cluster: str = "ketch", user: str = "admin",
          namespace: str | None = None) -> None:
    """Write a kubeconfig with one cluster, one user and a current context named after the cluster."""
    b64 = lambda data: base64.b64encode(data).decode()  # noqa: E731
    creds: dict = {}
    if cert_pem and key_pem:
        creds = {"client-certificate-data": b64(cert_pem), "client-key-data": b64(key_pem)}
    if token:
        creds["token"] = token
    context: dict = {"cluster": cluster, "user": user}
    if namespace:
        context["namespace"] = namespace
    doc = {"apiVersion": "v1", "kind": "Config", "preferences": {},
           "clusters": [{"name": cluster, "cluster": {"server": server, "certificate-authority-data": b64(ca_pem)}}],
           "users": [{"name": user, "user": creds}],
           "contexts": [{"name": cluster, "context": context}],
           "current-context": cluster}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".kubeconfig-")
    with os.fdopen(fd, "w") as f:
        yaml.safe_dump(doc, f, sort_keys=False)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


@dataclass
class ClientConfig:
    """What a client needs to reach one API server."""
    server: str
    ca_pem: bytes | None = None
    cert_pem: bytes | None = None
    key_pem: bytes | None = None
    token: str | None = None
    namespace: str = "default"
    insecure: bool = False

    def ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context()
        if self.insecure:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        elif self.ca_pem:
            ctx.load_verify_locations(cadata=self.ca_pem.decode())
        if self.cert_pem and self.key_pem:
            # ssl can only load a client pair from files.
            with tempfile.TemporaryDirectory() as d:
                cert, key = Path(d, "c.pem"), Path(d, "k.pem")
                cert.write_bytes(self.cert_pem)
                key.write_bytes(self.key_pem)
                ctx.load_cert_chain(cert, key)
        return ctx


def _data(entry: dict, key: str, base: Path) -> bytes | None:
    if entry.get(f"{key}-data"):
        return base64.b64decode(entry[f"{key}-data"])
    if entry.get(key):
        p = Path(entry[key])
        return (p if p.is_absolute() else base / p).read_bytes()
    return None


def load(path: str | os.PathLike | None = None, context: str | None = None) -> ClientConfig:
    """Load a kubeconfig (default: $KUBECONFIG, then ~/.kube/config) and resolve one context."""
    if path is None:
        path = os.environ.get("KUBECONFIG", "").split(os.pathsep)[0] or Path.home() / ".kube" / "config"
    path = Path(path)
    doc = yaml.safe_load(path.read_text()) or {}
    name = context or doc.get("current-context")
    ctx = next((c["context"] for c in doc.get("contexts", []) if c["name"] == name), None)
    if ctx is None:
        raise ValueError(f"context {name!r} not found in {path}")
    cluster = next(c["cluster"] for c in doc.get("clusters", []) if c["name"] == ctx["cluster"])
    user = next((u["user"] for u in doc.get("users", []) if u["name"] == ctx.get("user")), {}) or {}
    base = path.parent
    return ClientConfig(server=cluster["server"].rstrip("/"), ca_pem=_data(cluster, "certificate-authority", base),
                        cert_pem=_data(user, "client-certificate", base), key_pem=_data(user, "client-key", base),
                        token=user.get("token"), namespace=ctx.get("namespace") or "default",
                        insecure=bool(cluster.get("insecure-skip-tls-verify")))
