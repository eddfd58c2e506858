"""Who may call the kubelet API, as a kubelet with `--anonymous-auth=false`: a caller with a
client certificate the cluster CA signed (the API server's kube-apiserver-kubelet-client), or a
bearer token the API server vouches for in a TokenReview (the kubelet's webhook authenticator,
answers cached two minutes). Anyone else gets 401 Unauthorized.

Authorization (the kubelet's SubjectAccessReview against RBAC) arrives with the API server's
authorizer; until then an authenticated caller may use every endpoint, as on the API server.
"""
from __future__ import annotations

import hashlib
import logging
import time

from ..api.errors import ApiError

log = logging.getLogger("ketch.agent.authn")

TOKEN_CACHE_TTL = 120.0     # the kubelet's --authentication-token-webhook-cache-ttl
TOKEN_CACHE_SIZE = 4096

User = tuple[str, tuple[str, ...]]


class TokenReviewer:
    """Bearer token → (user, groups) by a TokenReview to the API server, or None."""

    def __init__(self, client):
        self.reviews = client.resource("authentication.k8s.io/v1", "TokenReview")
        self._cache: dict[bytes, tuple[float, User | None]] = {}

    async def __call__(self, token: str) -> User | None:
        key = hashlib.sha256(token.encode()).digest()   # tokens themselves are not kept
        now = time.monotonic()
        hit = self._cache.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        try:
            review = await self.reviews.create({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                                                "spec": {"token": token}})
        except (ApiError, OSError) as e:   # not cached: the next request asks again
            log.warning("token review failed: %s", e)
            return None
        status = review.get("status") or {}
        user = None
        if status.get("authenticated"):
            info = status.get("user") or {}
            user = (info.get("username", ""), tuple(info.get("groups") or ()))
        if len(self._cache) >= TOKEN_CACHE_SIZE:
            self._cache = {k: v for k, v in self._cache.items() if v[0] > now}
            if len(self._cache) >= TOKEN_CACHE_SIZE:
                self._cache.clear()
        self._cache[key] = (now + TOKEN_CACHE_TTL, user)
        return user
