"""Docker image references, normalised as containerd and the kubelet do.

`busybox` → `docker.io/library/busybox:latest`; `me/app` → `docker.io/me/app:latest`;
`localhost:5000/app@sha256:…` keeps its registry and digest. The first path component names a
registry only when it has a `.` or a `:` or is `localhost` (docker/distribution's rule).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

DEFAULT_DOMAIN = "docker.io"
LEGACY_DOMAIN = "index.docker.io"
DEFAULT_TAG = "latest"

# docker/distribution reference grammar (reference/regexp.go), path components and tags.
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_PATH = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
_DOMAIN = re.compile(r"^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*"
                     r"|\[[0-9a-fA-F:]+\])(?::[0-9]+)?$")
_TAG = re.compile(r"^[\w][\w.-]{0,127}$")
_DIGEST = re.compile(r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[0-9a-fA-F]{32,}$")
_SHA256 = re.compile(r"^sha256:[0-9a-f]{64}$")
_ID = re.compile(r"^(?:sha256:)?[0-9a-f]{64}$")
NAME_TOTAL_LENGTH_MAX = 255


class InvalidReference(ValueError):
    pass


@dataclass(frozen=True)
class Reference:
    domain: str
    path: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        """`docker.io/library/busybox`: the repository, without tag or digest."""
        return f"{self.domain}/{self.path}"

    @property
    def familiar_name(self) -> str:
        """`busybox` for docker.io/library/busybox, as docker prints it."""
        if self.domain != DEFAULT_DOMAIN:
            return self.name
        return self.path.removeprefix("library/") if self.path.count("/") == 1 else self.path

    def with_tag(self, tag: str) -> Reference:
        return Reference(self.domain, self.path, tag, None)

    def with_digest(self, digest: str) -> Reference:
        return Reference(self.domain, self.path, None, digest)

    def __str__(self) -> str:
        text = self.name
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


def split_domain(name: str) -> tuple[str, str]:
    first, sep, rest = name.partition("/")
    if not sep or ("." not in first and ":" not in first and first != "localhost" and first.lower() == first):
        domain, path = DEFAULT_DOMAIN, name
    else:
        domain, path = first, rest
    if domain == LEGACY_DOMAIN:
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in path:
        path = f"library/{path}"
    return domain, path


def parse(text: str, default_tag: bool = True) -> Reference:
    """Parse and normalise a reference; `default_tag` adds `:latest` when there is neither a tag
    nor a digest (as `docker pull` and the kubelet do)."""
    if not text or text != text.strip():
        raise InvalidReference(f"invalid reference format: {text!r}")
    remainder, _, digest = text.partition("@")
    if digest and not _DIGEST.match(digest):
        raise InvalidReference(f"invalid reference format: {text}: invalid digest")
    # A tag follows the last ':' that is after the last '/' (so registry ports are not tags).
    tag = None
    colon = remainder.rfind(":")
    if colon > remainder.rfind("/"):
        remainder, tag = remainder[:colon], remainder[colon + 1:]
        if not _TAG.match(tag):
            raise InvalidReference(f"invalid reference format: {text}")
    if len(remainder) > NAME_TOTAL_LENGTH_MAX:
        raise InvalidReference(f"invalid reference format: {text}: repository name must not be more "
                               f"than {NAME_TOTAL_LENGTH_MAX} characters")
    domain, path = split_domain(remainder)
    if not _DOMAIN.match(domain):
        raise InvalidReference(f"invalid reference format: {text}")
    if not _PATH.match(path):
        if path.lower() != path:
            raise InvalidReference(f"invalid reference format: repository name ({path}) must be lowercase")
        raise InvalidReference(f"invalid reference format: {text}")
    if tag is None and not digest and default_tag:
        tag = DEFAULT_TAG
    return Reference(domain, path, tag, digest or None)


def is_image_id(text: str) -> bool:
    """A full image id: `sha256:<64 hex>` or the 64 hex alone."""
    return bool(_ID.match(text))


def is_sha256_digest(text: str) -> bool:
    return bool(_SHA256.match(text))


def registry_host(domain: str) -> str:
    """The host serving a domain's distribution API (docker.io's is registry-1.docker.io)."""
    return "registry-1.docker.io" if domain == DEFAULT_DOMAIN else domain
