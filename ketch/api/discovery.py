"""The discovery documents: what `/api`, `/apis`, `/apis/GROUP` and `/api[s]/.../VERSION` answer.

Everything is derived from `kinds.RESOURCES`; these are pure functions returning dicts, and the
server serialises and caches them. Shapes follow the upstream apiserver (and, for `/apis`, the
aggregator in front of it, which is why named groups carry no serverAddressByClientCIDRs).

Aggregated discovery (kubectl 1.26+ asks for v2beta1 first, 1.30+ for v2) — what the server must send:

* Request `Accept` contains `application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList`
  (or `v=v2beta1`): answer `aggregated_discovery(legacy_core=<path is /api>, version=<v>)` with
  `Content-Type: aggregated_content_type(v)`, `ETag: "<etag(body)>"` (quoted), `Vary: Accept` and
  `Cache-Control: public`; reply 304 with no body when `If-None-Match` equals the quoted ETag.
* Any other Accept: the unaggregated `api_versions()` / `api_group_list()`.
"""
from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass

from . import kinds, schema

AGGREGATED_GROUP = "apidiscovery.k8s.io"
AGGREGATED_VERSIONS = ("v2", "v2beta1")

_UPDATE = ("get", "patch", "update")
_CONNECT = ("create", "get")
_PROXY = ("create", "delete", "get", "patch", "update")


@dataclass(frozen=True)
class Subresource:
    """One `resource/subresource` as discovery lists it."""

    name: str
    verbs: tuple[str, ...]
    kind: str
    # The kind's group/version when it is not the parent's; discovery then names them explicitly.
    group: str | None = None
    version: str | None = None


# name → (verbs, kind or None for the parent's kind, group/version or None for the parent's).
# "{kind}" stands for the parent kind (nodes/proxy answers NodeProxyOptions).
_SUBRESOURCES: dict[str, tuple[tuple[str, ...], str | None, tuple[str, str] | None]] = {
    "status": (_UPDATE, None, None),
    "scale": (_UPDATE, "Scale", ("autoscaling", "v1")),
    "ephemeralcontainers": (_UPDATE, None, None),
    "resize": (_UPDATE, None, None),
    "finalize": (("update",), None, None),
    "log": (("get",), None, None),
    "binding": (("create",), "Binding", None),
    "eviction": (("create",), "Eviction", ("policy", "v1")),
    "token": (("create",), "TokenRequest", ("authentication.k8s.io", "v1")),
    "exec": (_CONNECT, "PodExecOptions", None),
    "attach": (_CONNECT, "PodAttachOptions", None),
    "portforward": (_CONNECT, "PodPortForwardOptions", None),
    "proxy": (_PROXY, "{kind}ProxyOptions", None),
}


def subresources(r: kinds.Resource, gvks: dict | None = None) -> list[Subresource]:
    """The subresources of `r`, sorted by name as upstream registers them.

    The legacy apps versions scale through their own group's Scale kind when its schema is known.
    """
    gvks = schema.gvk_index() if gvks is None else gvks
    out = []
    for name in sorted(r.subresources):
        verbs, kind, gv = _SUBRESOURCES[name]
        kind = (kind or r.kind).replace("{kind}", r.kind)
        if name == "scale" and (r.group, r.version, "Scale") in gvks:
            gv = (r.group, r.version)
        group, version = gv if gv else (None, None)
        out.append(Subresource(name, tuple(sorted(verbs)), kind, group, version))
    return out


def storage_version_hash(group: str, version: str, kind: str) -> str:
    """Opaque and stable, as upstream: first 8 bytes of sha256("group/version/kind"), base64."""
    digest = hashlib.sha256(f"{group}/{version}/{kind}".encode()).digest()
    return base64.b64encode(digest[:8]).decode()


def _is_stored(r: kinds.Resource) -> bool:
    # Create-only resources (bindings, reviews) and computed ones (metrics) carry no hash.
    return r.stored and "get" in r.verbs


def _gv(group: str, version: str) -> dict:
    return {"groupVersion": f"{group}/{version}" if group else version, "version": version}


def api_versions(server_address: str) -> dict:
    """GET /api."""
    return {"kind": "APIVersions", "versions": list(kinds.group_versions().get("", [])),
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}]}


def _group(group: str, versions: list[str]) -> dict:
    return {"name": group, "versions": [_gv(group, v) for v in versions],
            "preferredVersion": _gv(group, versions[0])}


def api_group_list() -> dict:
    """GET /apis: the named groups, each with its preferred version first."""
    groups = [_group(g, vs) for g, vs in kinds.group_versions().items() if g]
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def api_group(group: str) -> dict | None:
    """GET /apis/GROUP, or None when the group is not served."""
    versions = kinds.group_versions().get(group) if group else None
    if not versions:
        return None
    return {"kind": "APIGroup", "apiVersion": "v1", **_group(group, versions)}


def _resource_entries(r: kinds.Resource, gvks: dict) -> list[dict]:
    main: dict = {"name": r.plural, "singularName": r.singular, "namespaced": r.namespaced, "kind": r.kind,
                  "verbs": sorted(r.verbs)}
    if r.short_names:
        main["shortNames"] = list(r.short_names)
    if r.categories:
        main["categories"] = list(r.categories)
    if _is_stored(r):
        main["storageVersionHash"] = storage_version_hash(r.storage_group, r.storage_version, r.kind)
    entries = [main]
    for sub in subresources(r, gvks):
        entry: dict = {"name": f"{r.plural}/{sub.name}", "singularName": "", "namespaced": r.namespaced}
        if sub.group is not None:
            entry.update(group=sub.group, version=sub.version)
        entry.update(kind=sub.kind, verbs=list(sub.verbs))
        entries.append(entry)
    return entries


def api_resource_list(group: str, version: str) -> dict | None:
    """GET /api/v1 or /apis/GROUP/VERSION, or None when that group/version is not served."""
    served = kinds.resources_in(group, version)
    if not served:
        return None
    gvks = schema.gvk_index()
    resources = [e for r in served for e in _resource_entries(r, gvks)]
    resources.sort(key=lambda e: e["name"])
    doc: dict = {"kind": "APIResourceList"}
    if group:
        doc["apiVersion"] = "v1"
    doc.update(groupVersion=f"{group}/{version}" if group else version, resources=resources)
    return doc


def _kind_ref(group: str | None, version: str | None, kind: str) -> dict:
    return {"group": group or "", "version": version or "", "kind": kind}


def _resource_discovery(r: kinds.Resource, gvks: dict) -> dict:
    entry: dict = {"resource": r.plural, "responseKind": _kind_ref(None, None, r.kind),
                   "scope": "Namespaced" if r.namespaced else "Cluster", "singularResource": r.singular,
                   "verbs": sorted(r.verbs)}
    if r.short_names:
        entry["shortNames"] = list(r.short_names)
    if r.categories:
        entry["categories"] = list(r.categories)
    subs = [{"subresource": s.name, "responseKind": _kind_ref(s.group, s.version, s.kind), "verbs": list(s.verbs)}
            for s in subresources(r, gvks)]
    if subs:
        entry["subresources"] = subs
    return entry


def _group_discovery(group: str, versions: list[str], gvks: dict) -> dict:
    metadata: dict = {"name": group} if group else {}
    metadata["creationTimestamp"] = None
    return {"metadata": metadata, "versions": [
        {"version": v,
         "resources": [_resource_discovery(r, gvks) for r in sorted(kinds.resources_in(group, v),
                                                                    key=lambda r: r.plural)],
         "freshness": "Current"}
        for v in versions]}


def aggregated_discovery(legacy_core: bool, version: str = "v2") -> dict:
    """APIGroupDiscoveryList for /api (the core group) or /apis (every named group, in /apis order)."""
    if version not in AGGREGATED_VERSIONS:
        raise ValueError(f"unknown aggregated discovery version {version!r}")
    gvks = schema.gvk_index()
    groups = [(g, vs) for g, vs in kinds.group_versions().items() if (g == "") == legacy_core]
    return {"kind": "APIGroupDiscoveryList", "apiVersion": f"{AGGREGATED_GROUP}/{version}", "metadata": {},
            "items": [_group_discovery(g, vs, gvks) for g, vs in groups]}


def aggregated_content_type(version: str = "v2") -> str:
    return f"application/json;g={AGGREGATED_GROUP};v={version};as=APIGroupDiscoveryList"


def etag(body: bytes) -> str:
    """The (unquoted) ETag upstream puts on discovery and OpenAPI documents: SHA-512, upper hex."""
    return hashlib.sha512(body).hexdigest().upper()
