"""Service-account tokens: the TokenRequest API (`POST serviceaccounts/NAME/token`, what
`kubectl create token` and the kubelet's projected volumes call) and their authentication.

Tokens are JWTs signed RS256 with the key `DATA_DIR/tls/service-account.key` (made on first start,
as kube-apiserver's --service-account-signing-key-file), issuer and default audience
`https://kubernetes.default.svc.cluster.local`. A token authenticates while it has not expired, its
service account still exists with the same uid, and the object it is bound to (a Pod, Secret or
Node) does too — upstream's checks, so deleting the pod revokes its tokens.
"""
from __future__ import annotations

import base64
import json
import os
import secrets
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from ..api import errors, kinds, names

if TYPE_CHECKING:
    from .registry import Registry

ISSUER = "https://kubernetes.default.svc.cluster.local"
DEFAULT_EXPIRATION = 3600
MIN_EXPIRATION = 600  # ten minutes
MAX_EXPIRATION = 1 << 32
BINDABLE = {kind: kinds.lookup("", "v1", plural) for kind, plural in (("Pod", "pods"), ("Secret", "secrets"),
                                                                     ("Node", "nodes"))}
SERVICE_ACCOUNTS = kinds.lookup("", "v1", "serviceaccounts")
_HEADER = {"alg": "RS256", "kid": ""}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def username(namespace: str, name: str) -> str:
    return f"system:serviceaccount:{namespace}:{name}"


class TokenIssuer:
    def __init__(self, tls_dir: Path):
        path = tls_dir / "service-account.key"
        if not path.exists():  # made whole or not at all (a temp file renamed), readable by root only
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            tmp = path.with_suffix(".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        self._key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        public_der = self._key.public_key().public_bytes(serialization.Encoding.DER,
                                                         serialization.PublicFormat.SubjectPublicKeyInfo)
        # as upstream: the key id is the unpadded base64url SHA-256 of the public key's DER
        digest = hashes.Hash(hashes.SHA256())
        digest.update(public_der)
        self._header = _b64(json.dumps({**_HEADER, "kid": _b64(digest.finalize())}, separators=(",", ":")).encode())

    # ---- issuing -------------------------------------------------------------------------------

    def sign(self, claims: dict) -> str:
        body = f"{self._header}.{_b64(json.dumps(claims, separators=(',', ':')).encode())}"
        return f"{body}.{_b64(self._key.sign(body.encode(), padding.PKCS1v15(), hashes.SHA256()))}"

    async def token_request(self, registry: "Registry", namespace: str, name: str, request: dict) -> dict:
        """The TokenRequest answered for service account namespace/name (upstream's TokenREST)."""
        spec = request.get("spec") or {}
        expiration = spec.get("expirationSeconds")
        expiration = DEFAULT_EXPIRATION if expiration is None else expiration
        _validate(name, expiration)
        sa = await registry.get(SERVICE_ACCOUNTS, namespace, name)
        audiences = list(spec.get("audiences") or [ISSUER])
        now = int(time.time())
        private = {"namespace": namespace,
                   "serviceaccount": {"name": name, "uid": sa["metadata"]["uid"]}}
        bound = spec.get("boundObjectRef")
        if bound:
            obj = await _bound_object(registry, namespace, bound, name)
            entry = {"name": obj["metadata"]["name"], "uid": obj["metadata"]["uid"]}
            private[bound["kind"].lower()] = entry
            if bound["kind"] == "Pod" and (obj.get("spec") or {}).get("nodeName"):
                node = await registry.get_or_none(BINDABLE["Node"], None, obj["spec"]["nodeName"])
                if node is not None:
                    private["node"] = {"name": node["metadata"]["name"], "uid": node["metadata"]["uid"]}
        claims = {"aud": audiences, "exp": now + expiration, "iat": now, "iss": ISSUER,
                  "jti": secrets.token_hex(16), "kubernetes.io": private, "nbf": now,
                  "sub": username(namespace, name)}
        expires = datetime.fromtimestamp(now + expiration, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        return {"kind": "TokenRequest", "apiVersion": "authentication.k8s.io/v1",
                "metadata": {"name": name, "namespace": namespace,
                             "creationTimestamp": datetime.fromtimestamp(now, timezone.utc).strftime(
                                 "%Y-%m-%dT%H:%M:%SZ")},
                "spec": {"audiences": audiences, "expirationSeconds": expiration,
                         "boundObjectRef": bound or None},
                "status": {"token": self.sign(claims), "expirationTimestamp": expires}}

    # ---- authenticating ----------------------------------------------------------------------

    def _claims(self, token: str) -> dict | None:
        parts = token.split(".")
        if len(parts) != 3:
            return None
        try:
            self._key.public_key().verify(_unb64(parts[2]), f"{parts[0]}.{parts[1]}".encode(), padding.PKCS1v15(),
                                          hashes.SHA256())
            claims = json.loads(_unb64(parts[1]))
        except (InvalidSignature, ValueError):
            return None
        now = time.time()
        audiences = claims.get("aud")
        audiences = [audiences] if isinstance(audiences, str) else audiences or []
        if (not isinstance(claims, dict) or claims.get("iss") != ISSUER or ISSUER not in audiences
                or not now < claims.get("exp", 0) or claims.get("nbf", 0) > now + 60):
            return None
        return claims

    async def authenticate(self, registry: "Registry", token: str) -> tuple[str, tuple[str, ...]] | None:
        """(user, groups) of a valid token whose account and bound object still exist, else None."""
        claims = self._claims(token)
        if claims is None:
            return None
        private = claims.get("kubernetes.io") or {}
        namespace, account = private.get("namespace", ""), private.get("serviceaccount") or {}
        sa = await registry.get_or_none(SERVICE_ACCOUNTS, namespace, account.get("name", ""))
        if sa is None or sa["metadata"].get("uid") != account.get("uid") or sa["metadata"].get("deletionTimestamp"):
            return None
        for kind in ("pod", "secret", "node"):
            ref = private.get(kind)
            if ref:
                obj = await registry.get_or_none(BINDABLE[kind.capitalize()], None if kind == "node" else namespace,
                                                 ref["name"])
                if obj is None or obj["metadata"].get("uid") != ref.get("uid") or \
                        obj["metadata"].get("deletionTimestamp"):
                    return None
        return username(namespace, account["name"]), ("system:serviceaccounts", f"system:serviceaccounts:{namespace}")


def _validate(name: str, expiration) -> None:
    field = "spec.expirationSeconds"
    if not isinstance(expiration, int) or expiration < MIN_EXPIRATION:
        cause = names.invalid(field, expiration, "may not specify a duration less than 10 minutes")
    elif expiration > MAX_EXPIRATION:
        cause = names.invalid(field, expiration, "may not specify a duration larger than 2^32 seconds")
    else:
        return
    raise errors.invalid("authentication.k8s.io", "TokenRequest", name, [cause])


async def _bound_object(registry: "Registry", namespace: str, ref: dict, account: str) -> dict:
    kind = ref.get("kind")
    if kind not in BINDABLE:
        raise errors.bad_request(f'cannot bind token for serviceaccount "{account}" to object of kind "{kind}"')
    res = BINDABLE[kind]
    obj = await registry.get_or_none(res, None if kind == "Node" else namespace, ref.get("name") or "")
    if obj is None:
        raise errors.not_found(res.group, res.plural, ref.get("name") or "")
    uid = ref.get("uid")
    if uid and obj["metadata"].get("uid") != uid:
        raise errors.conflict("", "serviceaccounts", account,
                              f"the UID in the bound object reference ({uid}) does not match the UID in record. "
                              "The object might have been deleted and then recreated")
    return obj
