"""TLS for the ingress: one server context per kubernetes.io/tls Secret named in spec.tls,
chosen by SNI, and a self-signed fallback certificate for every other name (as ingress-nginx's
"Fake Certificate")."""
from __future__ import annotations

import base64
import datetime
import logging
import os
import ssl
import tempfile

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from .routes import host_matches

log = logging.getLogger("ketch.ingress")

FALLBACK_CN = "Ketch Ingress Controller Fake Certificate"


def _context(cert_pem: bytes, key_pem: bytes) -> ssl.SSLContext:
    """A server context from PEM bytes (ssl loads only files: a private temporary one, removed at once)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.set_alpn_protocols(["http/1.1"])
    with tempfile.TemporaryDirectory(prefix="ketch-ingress-tls-") as d:
        cert_path, key_path = os.path.join(d, "tls.crt"), os.path.join(d, "tls.key")
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key_pem)
        with open(cert_path, "wb") as f:
            f.write(cert_pem)
        ctx.load_cert_chain(cert_path, key_path)
    return ctx


def self_signed(cn: str = FALLBACK_CN, names: tuple[str, ...] = ("ingress.local",)) -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Acme Co"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=365))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
            .sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def secret_context(secret: dict) -> ssl.SSLContext:
    """The context of a TLS Secret's tls.crt/tls.key; ValueError saying what is wrong."""
    data = secret.get("data") or {}
    try:
        cert, key = base64.b64decode(data["tls.crt"]), base64.b64decode(data["tls.key"])
    except (KeyError, ValueError, TypeError):
        raise ValueError("no tls.crt and tls.key") from None
    try:
        return _context(cert, key)
    except (ssl.SSLError, OSError) as e:
        raise ValueError(f"bad certificate or key: {e}") from None


class SniContexts:
    """The listener's context; its SNI callback swaps in the context of the Secret that covers
    the name asked for. `update()` takes (host, "ns/secret") pairs (oldest Ingress first) and the
    Secrets; contexts are rebuilt only when a Secret's resourceVersion changes."""

    def __init__(self):
        cert, key = self_signed()
        self.fallback = _context(cert, key)
        self.fallback.sni_callback = self._select
        self._by_host: dict[str, ssl.SSLContext] = {}
        self._wildcards: list[tuple[str, ssl.SSLContext]] = []
        self._cache: dict[str, tuple[str, ssl.SSLContext | None]] = {}   # ns/name -> (resourceVersion, context)

    def update(self, hosts: list[tuple[str, str]], secrets: dict[str, dict]) -> None:
        by_host: dict[str, ssl.SSLContext] = {}
        wildcards: list[tuple[str, ssl.SSLContext]] = []
        cache: dict[str, tuple[str, ssl.SSLContext | None]] = {}
        for host, key in hosts:
            secret = secrets.get(key)
            if secret is None:
                continue
            rv = secret.get("metadata", {}).get("resourceVersion", "")
            cached = cache.get(key) or self._cache.get(key)
            if cached is None or cached[0] != rv:
                try:
                    cached = (rv, secret_context(secret))
                except ValueError as e:
                    log.warning("ingress: TLS Secret %s: %s; serving the fallback certificate", key, e)
                    cached = (rv, None)
            cache[key] = cached
            ctx = cached[1]
            if ctx is None:
                continue
            if host.startswith("*."):
                wildcards.append((host, ctx))
            else:
                by_host.setdefault(host, ctx)
        self._by_host, self._wildcards, self._cache = by_host, wildcards, cache

    def context_for(self, server_name: str | None) -> ssl.SSLContext:
        if server_name:
            name = server_name.lower().rstrip(".")
            ctx = self._by_host.get(name)
            if ctx is not None:
                return ctx
            for pattern, ctx in self._wildcards:
                if host_matches(pattern, name):
                    return ctx
        return self.fallback

    def _select(self, sslobj: ssl.SSLObject, server_name: str | None, _ctx: ssl.SSLContext) -> None:
        ctx = self.context_for(server_name)
        if ctx is not self.fallback:
            sslobj.context = ctx
