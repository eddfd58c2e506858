"""Kubernetes `Status` errors. Every failure a client can see is one of these.

The messages follow the apiserver's (k8s.io/apimachinery/pkg/api/errors) so kubectl prints what it
prints against a real cluster, e.g. `pods "web" not found`.
"""
from __future__ import annotations

from typing import Any, Iterable


class ApiError(Exception):
    """An error answered as a `Status` object with HTTP `code` and machine-readable `reason`."""

    def __init__(self, code: int, reason: str, message: str, details: dict | None = None,
                 headers: dict | None = None):
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details
        self.headers = headers or {}

    def status(self) -> dict[str, Any]:
        body: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                                "message": self.message}
        if self.reason:
            body["reason"] = self.reason
        if self.details is not None:
            body["details"] = self.details
        body["code"] = self.code
        return body


def _qualified(group: str, resource: str) -> str:
    return f"{resource}.{group}" if group else resource


def _details(name: str | None, group: str, resource: str, **extra) -> dict:
    d: dict[str, Any] = {}
    if name:
        d["name"] = name
    if group:
        d["group"] = group
    if resource:
        d["kind"] = resource
    d.update(extra)
    return d


def not_found(group: str, resource: str, name: str) -> ApiError:
    return ApiError(404, "NotFound", f'{_qualified(group, resource)} "{name}" not found',
                    _details(name, group, resource))


def already_exists(group: str, resource: str, name: str) -> ApiError:
    return ApiError(409, "AlreadyExists", f'{_qualified(group, resource)} "{name}" already exists',
                    _details(name, group, resource))


def conflict(group: str, resource: str, name: str, why: str) -> ApiError:
    return ApiError(409, "Conflict", f'Operation cannot be fulfilled on {_qualified(group, resource)} "{name}": {why}',
                    _details(name, group, resource))


STALE_OBJECT = "the object has been modified; please apply your changes to the latest version and try again"


def invalid(group: str, kind: str, name: str, errors: Iterable) -> ApiError:
    """`errors` are ketch.api.names.FieldError (anything with .type, .field, .message())."""
    errors = list(errors)
    causes = [{"reason": e.type, "message": e.message().split(": ", 1)[1] if ": " in e.message() else e.message(),
               "field": e.field} for e in errors]
    rendered = [e.message() for e in errors]
    summary = rendered[0] if len(rendered) == 1 else "[" + ", ".join(rendered) + "]"
    qualified = f"{kind}.{group}" if group else kind
    return ApiError(422, "Invalid", f'{qualified} "{name}" is invalid: {summary}',
                    _details(name, group, kind, causes=causes))


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def method_not_allowed(message: str = "the server does not allow this method on the requested resource") -> ApiError:
    return ApiError(405, "MethodNotAllowed", message)


def gone(message: str) -> ApiError:
    return ApiError(410, "Expired", message)


def forbidden(message: str) -> ApiError:
    return ApiError(403, "Forbidden", message)


def unauthorized(message: str = "Unauthorized") -> ApiError:
    return ApiError(401, "Unauthorized", message)


def too_large(message: str = "the request entity is too large") -> ApiError:
    return ApiError(413, "RequestEntityTooLarge", message)


def unsupported_media_type(content_type: str) -> ApiError:
    return ApiError(415, "UnsupportedMediaType", 'the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf')


def not_acceptable(message: str) -> ApiError:
    return ApiError(406, "NotAcceptable", message)


def server_timeout(message: str) -> ApiError:
    return ApiError(504, "Timeout", message)


def internal(message: str) -> ApiError:
    return ApiError(500, "InternalError", f"Internal error occurred: {message}")
