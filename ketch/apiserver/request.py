"""What a request asks for: the apiserver's RequestInfo, parsed from the path, method and query."""
from __future__ import annotations

from dataclasses import dataclass

from ..api import errors, kinds

_METHOD_VERBS = {"POST": "create", "GET": "get", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}


@dataclass
class RequestInfo:
    verb: str                       # get list watch create update patch delete deletecollection
    resource: kinds.Resource
    namespace: str | None = None    # None for cluster-scoped resources and all-namespace lists
    name: str = ""
    subresource: str = ""


def parse_resource_path(method: str, path: str, query: dict) -> RequestInfo | None:
    """Parse /api/v1/... and /apis/G/V/... resource paths; None when the path names no resource.

    Raises ApiError 404 for a group/version/resource that is not served.
    """
    parts = [p for p in path.split("/") if p]
    if parts and parts[0] == "api" and len(parts) >= 2:
        group, version, rest = "", parts[1], parts[2:]
    elif parts and parts[0] == "apis" and len(parts) >= 3:
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    if not rest:
        return None
    watch_path = False
    if rest[0] == "watch":
        watch_path, rest = True, rest[1:]
        if not rest:
            raise _not_found(path)
    namespace: str | None = None
    if rest[0] == "namespaces" and len(rest) >= 3 and not (len(rest) == 3 and rest[2] in ("status", "finalize")):
        namespace, rest = rest[1], rest[2:]
    plural, name, sub = rest[0], (rest[1] if len(rest) > 1 else ""), (rest[2] if len(rest) > 2 else "")
    if len(rest) > 3 and sub not in ("proxy",):
        raise _not_found(path)
    resource = kinds.lookup(group, version, plural)
    if resource is None:
        raise _not_found(path)
    if plural == "namespaces" and name:
        namespace = None
    if not resource.namespaced and namespace is not None:
        raise _not_found(path)
    if sub and sub not in resource.subresources:
        raise _not_found(path)
    verb = _METHOD_VERBS.get(method)
    if verb is None:
        raise errors.method_not_allowed()
    if method == "GET":
        if watch_path or _truthy(query.get("watch")):
            verb = "watch"
        elif not name:
            verb = "list"
    elif method == "DELETE" and not name:
        verb = "deletecollection"
    elif watch_path:
        raise errors.method_not_allowed()
    if name and method == "POST" and not sub:
        raise errors.method_not_allowed()
    if not name and method in ("PUT", "PATCH"):
        raise errors.method_not_allowed()
    return RequestInfo(verb, resource, namespace, name, sub)


def _truthy(v: str | None) -> bool:
    return v is not None and v.lower() in ("1", "true")


class PageNotFound(errors.ApiError):
    """An unserved path. Under /api and /apis the apiserver answers a NotFound Status; elsewhere its
    mux answers plain text `404 page not found`."""

    def __init__(self, path: str):
        super().__init__(404, "NotFound", "the server could not find the requested resource", {})
        self.path = path

    @property
    def plain_text(self) -> bool:
        return not (self.path == "/api" or self.path == "/apis" or self.path.startswith(("/api/", "/apis/")))


def _not_found(path: str) -> errors.ApiError:
    return PageNotFound(path)
