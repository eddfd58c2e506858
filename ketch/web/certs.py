"""The cluster's PKI: a self-signed CA, the API server's serving certificate, client certificates.

Everything lives under DATA_DIR/tls and is created once; a restart reuses it, so kubeconfigs stay
valid. Client certificates carry the user as CN and groups as O, as in Kubernetes.
"""
from __future__ import annotations

import functools

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_DAYS = 3650
LEAF_DAYS = 365


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _write(path: Path, data: bytes, private: bool = False) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(data)
    if private:
        os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def _key_usage(ca: bool) -> x509.KeyUsage:
    """Signing always; certificate and CRL signing only for the CA."""
    return x509.KeyUsage(digital_signature=True, key_encipherment=False, content_commitment=False,
                         data_encipherment=False, key_agreement=False, key_cert_sign=ca, crl_sign=ca,
                         encipher_only=False, decipher_only=False)


def _name(cn: str, orgs: tuple[str, ...] = ()) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs]
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    return x509.Name(attrs)


@dataclass
class CertificateAuthority:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def cert_pem(self) -> bytes:
        return _cert_pem(self.cert)

    def issue(self, cn: str, orgs: tuple[str, ...] = (), *, server_names: tuple[str, ...] = (),
              client: bool = True, server: bool = False) -> tuple[bytes, bytes]:
        """Issue a leaf certificate; returns (cert PEM, key PEM)."""
        key = _key()
        now = datetime.datetime.now(datetime.timezone.utc)
        usages = []
        if client:
            usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
        if server:
            usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
        builder = (x509.CertificateBuilder()
                   .subject_name(_name(cn, orgs)).issuer_name(self.cert.subject)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(days=LEAF_DAYS))
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                   .add_extension(_key_usage(ca=False), critical=True)
                   .add_extension(x509.ExtendedKeyUsage(usages), critical=False))
        if server_names:
            sans: list[x509.GeneralName] = []
            for n in server_names:
                try:
                    sans.append(x509.IPAddress(ipaddress.ip_address(n)))
                except ValueError:
                    sans.append(x509.DNSName(n))
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        return _cert_pem(cert), _key_pem(key)


def load_or_create_ca(directory: Path, common_name: str = "ketch-ca") -> CertificateAuthority:
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / "ca.crt", directory / "ca.key"
    if cert_path.exists() and key_path.exists():
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        return CertificateAuthority(cert, key)  # type: ignore[arg-type]
    key = _key()
    now = datetime.datetime.now(datetime.timezone.utc)
    name = _name(f"{common_name}@{int(now.timestamp())}")
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(_key_usage(ca=True), critical=True)
            .sign(key, hashes.SHA256()))
    _write(key_path, _key_pem(key), private=True)
    _write(cert_path, _cert_pem(cert))
    return CertificateAuthority(cert, key)


def ensure_leaf(ca: CertificateAuthority, directory: Path, stem: str, cn: str, orgs: tuple[str, ...] = (),
                *, server_names: tuple[str, ...] = (), server: bool = False) -> tuple[Path, Path]:
    """Issue DIR/STEM.crt and DIR/STEM.key unless present (and, for a server cert, covering the names)."""
    cert_path, key_path = directory / f"{stem}.crt", directory / f"{stem}.key"
    if cert_path.exists() and key_path.exists():
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        if not server_names or set(server_names) <= _sans(cert):
            return cert_path, key_path
    cert_pem, key_pem = ca.issue(cn, orgs, server_names=server_names, server=server, client=not server)
    _write(key_path, key_pem, private=True)
    _write(cert_path, cert_pem)
    return cert_path, key_path


def _sans(cert: x509.Certificate) -> set[str]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    return {str(v) for v in ext.get_values_for_type(x509.DNSName)} | \
           {str(v) for v in ext.get_values_for_type(x509.IPAddress)}


@functools.lru_cache(maxsize=1024)  # every request of a connection presents the same few certificates
def subject_of(cert_der: bytes) -> tuple[str, tuple[str, ...]]:
    """(user, groups) of a client certificate."""
    cert = x509.load_der_x509_certificate(cert_der)
    cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    orgs = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    return (str(cn[0].value) if cn else "", tuple(str(o.value) for o in orgs))
