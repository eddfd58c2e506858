"""The OpenAPI documents: /openapi/v2 (Swagger 2.0) and /openapi/v3 (one OpenAPI 3.0 document per
group-version), built from `kinds.RESOURCES`, `discovery.subresources` and the schema definitions.

Operations are generated the way the apiserver's installer registers routes (operation ids such as
`listCoreV1NamespacedPod`, `x-kubernetes-action`, `x-kubernetes-group-version-kind`, the parameters of
each verb, parameters shared by every operation of a path moved to the path). Definitions are the
upstream ones, so kubectl finds the strategic-merge keys (`x-kubernetes-patch-*`, list types) in them.

What the server must send (build once, lazily, and keep the bytes — `PublishedOpenAPI` does that):

* GET /openapi/v2: kubectl asks for `application/com.github.proto-openapi.spec.v2@v1.0+protobuf` and
  only understands protobuf there; answer `v2_protobuf()` with
  `Content-Type: application/com.github.proto-openapi.spec.v2.v1.0+protobuf`, or `v2_json()` with
  `application/json` when JSON is accepted. Both carry `ETag: "<etag>"` and `Vary: Accept`.
* GET /openapi/v3: `v3_index()`, `Content-Type: application/json`, quoted ETag of its bytes.
* GET /openapi/v3/<path>[?hash=H]: `v3(path)`, `application/json`, `ETag: "<etag>"`. When `hash`
  is given and differs, 301 to the index's serverRelativeURL; when it matches, add
  `Cache-Control: public, immutable` and an `Expires` one year ahead. Unknown path: 404.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass

import orjson

from . import discovery, kinds, schema

log = logging.getLogger(__name__)

DEFAULT_VERSION = f"v{schema.KUBERNETES_VERSION}"
META = "io.k8s.apimachinery.pkg.apis.meta.v1."
SERVED_MEDIA = ("application/json", "application/yaml", "application/vnd.kubernetes.protobuf")
WATCH_MEDIA = SERVED_MEDIA + ("application/json;stream=watch", "application/vnd.kubernetes.protobuf;stream=watch")
PATCH_MEDIA = ("application/json-patch+json", "application/merge-patch+json",
               "application/strategic-merge-patch+json", "application/apply-patch+yaml")
ANY = ("*/*",)
STRING = "string"  # a response that is a plain string, not a definition
OK, CREATED, ACCEPTED = ("200", "OK"), ("201", "Created"), ("202", "Accepted")
SECURITY_SCHEME = {"BearerToken": {"description": "Bearer Token authentication", "in": "header",
                                   "name": "authorization", "type": "apiKey"}}




@dataclass(frozen=True)
class Param:
    name: str
    location: str  # "query" or "path"
    type: str
    description: str


def _q(name: str, type_: str, description: str) -> Param:
    return Param(name, "query", type_, description)


def _from_delete_options(name: str) -> Param:
    """Delete parameters carry the documentation of the DeleteOptions field they set."""
    prop = schema.definitions()[META + "DeleteOptions"]["properties"][name]
    type_ = prop["type"] if prop["type"] in ("integer", "boolean") else "string"
    return _q(name, type_, prop.get("description", ""))


PRETTY = _q("pretty", "string", "If 'true', the output is pretty printed.")
NAMESPACE = Param("namespace", "path", "string", "the namespace of the object (its name and auth scope)")
PATH = Param("path", "path", "string", "path to the resource")
LIST_PARAMS = (
    _q("allowWatchBookmarks", "boolean", "Ask a watch for BOOKMARK events. Ignored by lists; servers send "
                                         "bookmarks at their discretion."),
    _q("continue", "string", "The metadata.continue token of the previous page of a paginated list, to get "
                             "the next page. Not supported with watch."),
    _q("fieldSelector", "string", "Restrict the returned objects by their fields. Defaults to everything."),
    _q("labelSelector", "string", "Restrict the returned objects by their labels. Defaults to everything."),
    _q("limit", "integer", "The most objects a list returns; when there are more, metadata.continue is set. "
                           "Not supported with watch."),
    _q("resourceVersion", "string", "Constrains the resource versions the request may be served from; see "
                                    "https://kubernetes.io/docs/reference/using-api/api-concepts/#resource-"
                                    "versions. Defaults to unset."),
    _q("resourceVersionMatch", "string", "How resourceVersion applies to a list (Exact or NotOlderThan). "
                                         "Defaults to unset."),
    _q("sendInitialEvents", "boolean", "With watch=true, start with synthetic events for the current state, "
                                       "then a BOOKMARK annotated k8s.io/initial-events-end. Needs "
                                       "resourceVersionMatch=NotOlderThan."),
    _q("timeoutSeconds", "integer", "Timeout for the list or watch call, whatever the activity."),
    _q("watch", "boolean", "Watch for changes to the described resources: a stream of add, update and "
                           "remove notifications."),
)
DELETE_COLLECTION_LIST_PARAMS = tuple(p for p in LIST_PARAMS if p.name not in ("watch", "allowWatchBookmarks"))
_FIELD_MANAGER = "The name of the actor making these changes: at most 128 printable characters."
FIELD_VALIDATION = _q("fieldValidation", "string", "How to treat unknown or duplicate fields in the object: "
                                                   "Ignore, Warn (the default) or Strict.")


def _write_params() -> tuple[Param, ...]:
    return (_from_delete_options("dryRun"), _q("fieldManager", "string", _FIELD_MANAGER), FIELD_VALIDATION)


def _patch_params() -> tuple[Param, ...]:
    return (_from_delete_options("dryRun"),
            _q("fieldManager", "string", _FIELD_MANAGER + " Required for apply patches, optional otherwise."),
            FIELD_VALIDATION,
            _q("force", "boolean", "Force an apply patch: take over fields other managers own. Must be unset "
                                   "for other patch types."))


def _delete_params() -> tuple[Param, ...]:
    return tuple(_from_delete_options(n) for n in ("dryRun", "gracePeriodSeconds",
                                                   "ignoreStoreReadErrorWithClusterBreakingPotential",
                                                   "orphanDependents", "propagationPolicy"))


_STREAMS = (_q("stderr", "boolean", "Redirect the standard error stream of the container."),
            _q("stdin", "boolean", "Redirect the standard input stream of the container. Defaults to false."),
            _q("stdout", "boolean", "Redirect the standard output stream of the container."),
            _q("tty", "boolean", "Allocate a TTY for the call. Defaults to false."))
_CONTAINER = _q("container", "string", "The container to use; defaults to the only container of the pod.")
# The query parameters of subresources served with options (PodLogOptions, PodExecOptions, ...).
_OPTION_PARAMS: dict[str, tuple[Param, ...]] = {
    "log": (_CONTAINER,
            _q("follow", "boolean", "Follow the log stream. Defaults to false."),
            _q("insecureSkipTLSVerifyBackend", "boolean", "Do not verify the serving certificate of the node "
                                                          "agent the logs come from."),
            _q("limitBytes", "integer", "Stop after this many bytes of log output."),
            _q("previous", "boolean", "The logs of the previous, terminated, container. Defaults to false."),
            _q("sinceSeconds", "integer", "Only logs newer than this many seconds."),
            _q("stream", "string", "Which stream to return: All (the default), Stdout or Stderr."),
            _q("tailLines", "integer", "The number of lines from the end of the logs to show."),
            _q("timestamps", "boolean", "Prefix every line with its RFC3339 timestamp. Defaults to false.")),
    "exec": (_q("command", "string", "The command to run, one argument per parameter; no shell involved."),
             _CONTAINER) + _STREAMS,
    "attach": (_CONTAINER,) + _STREAMS,
    "portforward": (_q("ports", "integer", "The ports to forward; required with WebSockets."),),
    "proxy": (_q("path", "string", "The URL path of the proxied request."),),
}
_GET_WITH_OPTIONS = ("log",)
_CONNECT_METHODS = {"proxy": ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")}
_DEFAULT_CONNECT_METHODS = ("GET", "POST")


@dataclass
class Operation:
    method: str  # lower case HTTP method
    operation_id: str
    description: str
    tag: str
    params: list[Param]
    responses: list[tuple[tuple[str, str], str | None]]  # ((code, text), definition | STRING | None)
    produces: tuple[str, ...]
    consumes: tuple[str, ...]
    body: str | None = None
    body_required: bool = True
    action: str | None = None
    gvk: tuple[str, str, str] | None = None


@dataclass
class Route:
    document: str  # the OpenAPI v3 document the path belongs to ("api/v1", "apis/apps", ...)
    path: str
    operation: Operation


def _valid_id(s: str, capitalize: bool) -> str:
    """Upstream's ToValidOperationID: drop punctuation, camel-case at each dropped character."""
    out = []
    upper = capitalize
    for i, c in enumerate(s):
        if c.isalpha() or c == "_" or (i and c.isdigit()):
            out.append(c.upper() if upper else c)
            upper = False
        else:
            upper = True
    return "".join(out)


def _group_word(group: str) -> str:
    return group.removesuffix(".k8s.io") or "core"


def tag_of(group: str, version: str | None = None) -> str:
    tag = _valid_id(_group_word(group), False)
    return f"{tag}_{_valid_id(version, False)}" if version else tag


def operation_id(verb: str, group: str, version: str | None, rest: str) -> str:
    prefix = verb + _valid_id(_group_word(group), True) + (_valid_id(version, True) if version else "")
    return prefix + _valid_id(rest, True)


def _article(noun: str) -> str:
    if noun.endswith("s") and not noun.endswith("ss"):
        return " "
    return " an " if noun[0].lower() in "aeiou" else " a "


_WATCH_LIST_DOC = ("watch individual changes to a list of {}. deprecated: use the 'watch' parameter with a list "
                   "operation instead.")
_WATCH_DOC = ("watch changes to an object of kind {}. deprecated: use the 'watch' parameter with a list operation "
              "instead, filtered to a single item with the 'fieldSelector' parameter.")


class _Routes:
    """Every route of the served API, in the apiserver's registration order."""

    def __init__(self) -> None:
        self.defs = schema.definitions()
        self.gvks = schema.gvk_index()
        self.routes: list[Route] = []

    def definition(self, group: str, version: str, kind: str, hint: str = "") -> str | None:
        name = hint or self.gvks.get((group, version, kind))
        return name if name in self.defs else None

    def object_definition(self, r: kinds.Resource) -> str | None:
        return self.definition(r.group, r.version, r.kind, r.definition)

    def list_definition(self, r: kinds.Resource, obj: str) -> str | None:
        return self.definition(r.group, r.version, r.kind + "List") or self.definition("", "", "", obj + "List")

    def add(self, document: str, path: str, op: Operation) -> None:
        self.routes.append(Route(document, path, op))

    def build(self) -> list[Route]:
        self.roots()
        for r in kinds.RESOURCES:
            obj = self.object_definition(r)
            if obj is None:
                if r.stored:  # computed resources (metrics.k8s.io) publish no schema
                    log.warning("no schema for %s/%s %s: left out of OpenAPI", r.group, r.version, r.kind)
                continue
            _ResourceRoutes(self, r, obj).add_all()
        return self.routes

    def roots(self) -> None:
        def get(document, path, op_id, tag, definition, description):
            self.add(document, path, Operation("get", op_id, description, tag, [], [(OK, definition)],
                                               SERVED_MEDIA, SERVED_MEDIA))
        get("api", "/api/", "getCoreAPIVersions", "core", META + "APIVersions", "get available API versions")
        get("apis", "/apis/", "getAPIVersions", "apis", META + "APIGroupList", "get available API versions")
        for group, versions in kinds.group_versions().items():
            base = f"apis/{group}" if group else "api"
            if group:
                get(base, f"/{base}/", operation_id("get", group, None, "APIGroup"), tag_of(group),
                    META + "APIGroup", "get information of a group")
            for v in versions:
                get(f"{base}/{v}", f"/{base}/{v}/", operation_id("get", group, v, "APIResources"), tag_of(group, v),
                    META + "APIResourceList", "get available resources")
        self.add("version", "/version/", Operation("get", "getCodeVersion", "get the code version", "version", [],
                                                   [(OK, "io.k8s.apimachinery.pkg.version.Info")],
                                                   ("application/json",), ("application/json",)))


class _ResourceRoutes:
    """The routes of one served resource and its subresources, named as the installer names them."""

    def __init__(self, routes: _Routes, r: kinds.Resource, obj: str) -> None:
        self.routes, self.r, self.obj = routes, r, obj
        self.document = f"apis/{r.group}/{r.version}" if r.group else f"api/{r.version}"
        self.ns = "Namespaced" if r.namespaced else ""
        self.scope = [NAMESPACE] if r.namespaced else []
        self.collection = f"namespaces/{{namespace}}/{r.plural}" if r.namespaced else r.plural
        self.item = self.collection + "/{name}"
        self.verbs = set(r.verbs)

    def add(self, path: str, method: str, verb: str, rest: str, description: str, params: list[Param],
            responses: list, produces: tuple[str, ...] = SERVED_MEDIA, consumes: tuple[str, ...] = ANY,
            body: str | None = None, body_required: bool = True, action: str | None = None,
            gvk: tuple[str, str, str] | None = None) -> None:
        r = self.r
        op = Operation(method, operation_id(verb, r.group, r.version, rest), description, tag_of(r.group, r.version),
                       params, responses, produces, consumes, body, body_required, action,
                       gvk or (r.group, r.version, r.kind))
        self.routes.add(self.document, f"/{self.document}/{path}", op)

    def add_all(self) -> None:
        self.collection_routes()
        self.item_routes()
        for sub in discovery.subresources(self.r, self.routes.gvks):
            self.subresource_routes(sub)

    def collection_routes(self) -> None:
        r, kind, ns, scope, verbs = self.r, self.r.kind, self.ns, self.scope, self.verbs
        list_def = self.routes.list_definition(r, self.obj)
        listing = f"{'list or watch' if 'watch' in verbs else 'list'} objects of kind {kind}"
        watch_list = {"list", "watch"} <= verbs
        if "list" in verbs:
            self.add(self.collection, "get", "list", ns + kind, listing, scope + [PRETTY, *LIST_PARAMS],
                     [(OK, list_def)], WATCH_MEDIA, action="list")
        if "create" in verbs:
            self.add(self.collection, "post", "create", ns + kind, f"create{_article(kind)}{kind}",
                     scope + [PRETTY, *_write_params()], [(OK, self.obj), (CREATED, self.obj), (ACCEPTED, self.obj)],
                     body=self.obj, action="post")
        if "deletecollection" in verbs:
            self.add(self.collection, "delete", "delete", "collection" + ns + kind, f"delete collection of {kind}",
                     scope + [PRETTY, *_delete_params(), *DELETE_COLLECTION_LIST_PARAMS], [(OK, META + "Status")],
                     body=META + "DeleteOptions", body_required=False, action="deletecollection")
        if watch_list:
            self.add("watch/" + self.collection, "get", "watch", ns + kind + "List", _WATCH_LIST_DOC.format(kind),
                     scope + [PRETTY, *LIST_PARAMS], [(OK, META + "WatchEvent")], WATCH_MEDIA, action="watchlist")
        if r.namespaced and "list" in verbs:
            self.add(r.plural, "get", "list", kind + "ForAllNamespaces", listing, [PRETTY, *LIST_PARAMS],
                     [(OK, list_def)], WATCH_MEDIA, action="list")
            if watch_list:
                self.add("watch/" + r.plural, "get", "watch", kind + "ListForAllNamespaces",
                         _WATCH_LIST_DOC.format(kind), [PRETTY, *LIST_PARAMS], [(OK, META + "WatchEvent")],
                         WATCH_MEDIA, action="watchlist")

    def item_routes(self) -> None:
        r, kind, ns, verbs, obj = self.r, self.r.kind, self.ns, self.verbs, self.obj
        params = self.scope + [Param("name", "path", "string", f"name of the {kind}"), PRETTY]
        deleted = obj if (r.storage_group, kind) in kinds.RETURNS_DELETED_OBJECT else META + "Status"
        if "get" in verbs:
            self.add(self.item, "get", "read", ns + kind, f"read the specified {kind}", params, [(OK, obj)],
                     action="get")
        if "update" in verbs:
            self.add(self.item, "put", "replace", ns + kind, f"replace the specified {kind}",
                     params + [*_write_params()], [(OK, obj), (CREATED, obj)], body=obj, action="put")
        if "patch" in verbs:
            self.add(self.item, "patch", "patch", ns + kind, f"partially update the specified {kind}",
                     params + [*_patch_params()], [(OK, obj), (CREATED, obj)], consumes=PATCH_MEDIA,
                     body=META + "Patch", action="patch")
        if "delete" in verbs:
            self.add(self.item, "delete", "delete", ns + kind, f"delete{_article(kind)}{kind}",
                     params + [*_delete_params()], [(OK, deleted), (ACCEPTED, deleted)], body=META + "DeleteOptions",
                     body_required=False, action="delete")
        if "watch" in verbs:
            self.add("watch/" + self.item, "get", "watch", ns + kind, _WATCH_DOC.format(kind),
                     params + [*LIST_PARAMS], [(OK, META + "WatchEvent")], WATCH_MEDIA, action="watch")

    def subresource_routes(self, sub: discovery.Subresource) -> None:
        r = self.r
        group, version = (sub.group, sub.version) if sub.group is not None else (r.group, r.version)
        gvk = (group, version, sub.kind)
        body = self.obj if sub.kind == r.kind and sub.group is None else self.routes.definition(*gvk)
        path = f"{self.item}/{sub.name}"
        rest = self.ns + r.kind + sub.name.capitalize()
        params = self.scope + [Param("name", "path", "string", f"name of the {sub.kind}")]
        what = f"{sub.name} of the specified {r.kind}"
        options = list(_OPTION_PARAMS.get(sub.name, ()))
        if options and sub.name not in _GET_WITH_OPTIONS:
            paths = [(path, [], "")] + ([(path + "/{path}", [PATH], "WithPath")] if sub.name == "proxy" else [])
            for method in _CONNECT_METHODS.get(sub.name, _DEFAULT_CONNECT_METHODS):
                for sub_path, extra, suffix in paths:
                    self.add(sub_path, method.lower(), "connect", method.title() + rest + suffix,
                             f"connect {method} requests to {sub.name} of {r.kind}", params + extra + options,
                             [(OK, STRING)], ANY, action="connect", gvk=gvk)
            return
        if "get" in sub.verbs and options:
            self.add(path, "get", "read", rest, f"read {what}", params + [PRETTY, *options], [(OK, STRING)],
                     ("text/plain",) + SERVED_MEDIA, action="get", gvk=gvk)
        elif "get" in sub.verbs:
            self.add(path, "get", "read", rest, f"read {what}", params + [PRETTY], [(OK, body)], action="get", gvk=gvk)
        if "update" in sub.verbs:
            self.add(path, "put", "replace", rest, f"replace {what}", params + [PRETTY, *_write_params()],
                     [(OK, body), (CREATED, body)], body=body, action="put", gvk=gvk)
        if "patch" in sub.verbs:
            self.add(path, "patch", "patch", rest, f"partially update {what}", params + [PRETTY, *_patch_params()],
                     [(OK, body), (CREATED, body)], consumes=PATCH_MEDIA, body=META + "Patch", action="patch",
                     gvk=gvk)
        if "create" in sub.verbs:
            self.add(path, "post", "create", rest, f"create {sub.name} of{_article(r.kind)}{r.kind}",
                     params + [PRETTY, *_write_params()], [(OK, body), (CREATED, body), (ACCEPTED, body)], body=body,
                     action="post", gvk=gvk)


# ---- definitions ------------------------------------------------------------------------------

def _gvk_entry(group: str, version: str, kind: str) -> dict:
    return {"group": group, "kind": kind, "version": version}


def _definitions(routes: _Routes) -> dict[str, dict]:
    """The upstream definitions, with x-kubernetes-group-version-kind completed for every served kind
    (legacy versions and their lists included) and the per-version meta kinds."""
    extra: dict[str, set[tuple[str, str, str]]] = {}
    served_gvs = set()
    for r in kinds.RESOURCES:
        obj = routes.object_definition(r)
        if obj is None:
            continue
        served_gvs.add((r.group, r.version))
        extra.setdefault(obj, set()).add((r.group, r.version, r.kind))
        list_def = routes.list_definition(r, obj)
        if list_def:
            extra.setdefault(list_def, set()).add((r.group, r.version, r.kind + "List"))
    for kind in ("DeleteOptions", "WatchEvent"):
        extra[META + kind] = {(g, v, kind) for g, v in served_gvs}
    out = dict(routes.defs)
    for name, gvks in extra.items():
        have = {(e["group"], e["version"], e["kind"]) for e in out[name].get("x-kubernetes-group-version-kind", ())}
        if gvks <= have:
            continue
        merged = sorted(have | gvks)
        out[name] = {**out[name], "x-kubernetes-group-version-kind": [_gvk_entry(*g) for g in merged]}
    return out


def _refs(node, found: set[str]) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                found.add(value.rsplit("/", 1)[-1])
            elif key == "properties" and isinstance(value, dict):
                for sub in value.values():
                    _refs(sub, found)
            elif not key.startswith("x-"):
                _refs(value, found)
    elif isinstance(node, list):
        for item in node:
            _refs(item, found)


def _closure(roots: set[str], defs: dict[str, dict], direct: dict[str, set[str]]) -> list[str]:
    seen: set[str] = set()
    todo = [n for n in roots if n in defs]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        if name not in direct:
            direct[name] = found = set()
            _refs(defs[name], found)
        todo.extend(n for n in direct[name] if n not in seen)
    return sorted(seen)


def _to_v3(node):
    """A v2 schema as OpenAPI 3 publishes it: refs into components, a ref with siblings as allOf."""
    if isinstance(node, list):
        return [_to_v3(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for key, value in node.items():
        if key == "properties" and isinstance(value, dict):
            out[key] = {k: _to_v3(v) for k, v in value.items()}
        elif key == "$ref" and isinstance(value, str):
            continue
        elif key.startswith("x-"):
            out[key] = value
        else:
            out[key] = _to_v3(value)
    ref = node.get("$ref")
    if isinstance(ref, str):
        ref = {"$ref": ref.replace("#/definitions/", "#/components/schemas/")}
        if not out:
            return ref
        out["allOf"] = [ref]
    return out


# ---- rendering --------------------------------------------------------------------------------

def _common_params(ops: list[Operation]) -> list[Param]:
    """Parameters every operation of a path has move to the path, as kube-openapi does."""
    common = {(p.name, p.location): p for p in ops[0].params}
    for o in ops[1:]:
        keys = {(p.name, p.location) for p in o.params}
        common = {k: p for k, p in common.items() if k in keys}
    return list(common.values())


def _sorted_params(params) -> list[Param]:
    return sorted(params, key=lambda p: (p.name, p.location))


def _group_paths(routes: list[Route]) -> dict[str, list[Operation]]:
    paths: dict[str, list[Operation]] = {}
    for route in routes:
        paths.setdefault(route.path, []).append(route.operation)
    return paths


def _v2_param(p: Param) -> dict:
    out = {"description": p.description, "in": p.location, "name": p.name}
    if p.location == "path":
        out["required"] = True
    out.update(type=p.type, uniqueItems=True)
    return out


def _v3_param(p: Param) -> dict:
    out = {"description": p.description, "in": p.location, "name": p.name}
    if p.location == "path":
        out["required"] = True
    out["schema"] = {"type": p.type, "uniqueItems": True}
    return out


def _v2_schema(target: str) -> dict:
    return {"type": "string"} if target == STRING else {"$ref": "#/definitions/" + target}


def _v3_schema(target: str) -> dict:
    return {"type": "string"} if target == STRING else {"$ref": "#/components/schemas/" + target}


def _extensions(o: Operation) -> dict:
    out = {}
    if o.action:
        out["x-kubernetes-action"] = o.action
    if o.gvk:
        out["x-kubernetes-group-version-kind"] = _gvk_entry(*o.gvk)
    return out


def _v2_operation(o: Operation, params: list[Param]) -> dict:
    out: dict = {"consumes": list(o.consumes), "description": o.description, "operationId": o.operation_id}
    rendered = []
    if o.body:
        body = {"in": "body", "name": "body"}
        if o.body_required:
            body["required"] = True
        body["schema"] = _v2_schema(o.body)
        rendered.append(body)
    rendered += [_v2_param(p) for p in _sorted_params(params)]
    if rendered:
        out["parameters"] = rendered
    out["produces"] = list(o.produces)
    out["responses"] = {code: ({"description": text, "schema": _v2_schema(t)} if t else {"description": text})
                        for (code, text), t in o.responses}
    out["responses"]["401"] = {"description": "Unauthorized"}
    out.update(schemes=["https"], tags=[o.tag], **_extensions(o))
    return out


def _v3_operation(o: Operation, params: list[Param]) -> dict:
    out: dict = {"description": o.description, "operationId": o.operation_id}
    if params:
        out["parameters"] = [_v3_param(p) for p in _sorted_params(params)]
    if o.body:
        out["requestBody"] = {"content": {m: {"schema": _v3_schema(o.body)} for m in o.consumes}}
        if o.body_required:
            out["requestBody"]["required"] = True
    responses = {}
    for (code, text), target in o.responses:
        responses[code] = {"content": {m: {"schema": _v3_schema(target)} for m in o.produces},
                           "description": text} if target else {"description": text}
    responses["401"] = {"description": "Unauthorized"}
    out.update(responses=responses, tags=[o.tag], **_extensions(o))
    return out


class _Build:
    """One generation: the routes and definitions shared by every document built from it."""

    def __init__(self, kubernetes_version: str) -> None:
        self.version = kubernetes_version
        self.routes_builder = _Routes()
        self.routes = self.routes_builder.build()
        self.defs = _definitions(self.routes_builder)
        self.direct_refs: dict[str, set[str]] = {}
        self._v3_defs: dict[str, dict] = {}

    def _render_paths(self, routes: list[Route], operation, param) -> tuple[dict, set[str]]:
        """Paths as one document shows them, and the definitions their operations use."""
        paths: dict = {}
        used: set[str] = set()
        for path, ops in _group_paths(routes).items():
            common = _common_params(ops)
            shared = {(p.name, p.location) for p in common}
            item: dict = {o.method: operation(o, [p for p in o.params if (p.name, p.location) not in shared])
                          for o in ops}
            if common:
                item["parameters"] = [param(p) for p in _sorted_params(common)]
            paths[path] = item
            for o in ops:
                used.update(t for _, t in o.responses if t and t != STRING)
                used.update([o.body] if o.body else [])
        return paths, used

    def v2(self) -> dict:
        paths, used = self._render_paths(self.routes, _v2_operation, _v2_param)
        definitions = {n: self.defs[n] for n in _closure(used, self.defs, self.direct_refs)}
        return {"definitions": definitions, "info": {"title": "Kubernetes", "version": self.version},
                "paths": paths, "security": [{"BearerToken": []}], "securityDefinitions": SECURITY_SCHEME,
                "swagger": "2.0"}

    def v3_paths(self) -> list[str]:
        return sorted({r.document for r in self.routes})

    def v3(self, document: str) -> dict | None:
        routes = [r for r in self.routes if r.document == document]
        if not routes:
            return None
        paths, used = self._render_paths(routes, _v3_operation, _v3_param)
        schemas = {}
        for name in _closure(used, self.defs, self.direct_refs):
            if name not in self._v3_defs:
                self._v3_defs[name] = _to_v3(self.defs[name])
            schemas[name] = self._v3_defs[name]
        components: dict = {"schemas": schemas} if schemas else {}
        components["securitySchemes"] = SECURITY_SCHEME
        return {"components": components, "info": {"title": "Kubernetes", "version": self.version},
                "openapi": "3.0.0", "paths": paths}


def openapi_v2(kubernetes_version: str = DEFAULT_VERSION) -> dict:
    """The Swagger 2.0 document of GET /openapi/v2."""
    return _Build(kubernetes_version).v2()


def openapi_v3_paths() -> list[str]:
    """The documents /openapi/v3 lists: "api", "api/v1", "apis", "apis/apps", "apis/apps/v1", ..."""
    return _Build(DEFAULT_VERSION).v3_paths()


def openapi_v3(group_version_path: str, kubernetes_version: str = DEFAULT_VERSION) -> dict | None:
    """The OpenAPI 3.0 document of GET /openapi/v3/<path> ("apis/apps/v1"), None when not served."""
    return _Build(kubernetes_version).v3(group_version_path.strip("/"))


# ---- serialisation ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Rendered:
    body: bytes
    etag: str  # unquoted, as the ?hash= of /openapi/v3 URLs


def render(doc: dict) -> Rendered:
    body = orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)
    return Rendered(body, discovery.etag(body))


def openapi_v3_index(documents: dict[str, Rendered] | None = None) -> dict:
    """GET /openapi/v3: where each document lives, with its hash in the URL so clients cache it for good.

    `documents` are the rendered v3 documents by path (built here when not given)."""
    if documents is None:
        build = _Build(DEFAULT_VERSION)
        documents = {p: render(build.v3(p)) for p in build.v3_paths()}
    return {"paths": {path: {"serverRelativeURL": server_relative_url(path, doc.etag)}
                      for path, doc in sorted(documents.items())}}


def server_relative_url(path: str, etag: str) -> str:
    return f"/openapi/v3/{path}?hash={etag}"


class PublishedOpenAPI:
    """What the server serves: each document built on first use, then kept as bytes and ETag."""

    def __init__(self, kubernetes_version: str = DEFAULT_VERSION) -> None:
        self.kubernetes_version = kubernetes_version
        self._build: _Build | None = None
        self._v2: Rendered | None = None
        self._v2_protobuf: Rendered | None = None
        self._v3: dict[str, Rendered] = {}
        self._index: Rendered | None = None

    def _builder(self) -> _Build:
        if self._build is None:
            self._build = _Build(self.kubernetes_version)
        return self._build

    def v2_json(self) -> Rendered:
        if self._v2 is None:
            self._v2 = render(self._builder().v2())
        return self._v2

    def v2_protobuf(self) -> Rendered:
        """Same ETag as the JSON: upstream relies on `Vary: Accept` to tell them apart."""
        if self._v2_protobuf is None:
            doc = orjson.loads(self.v2_json().body)
            self._v2_protobuf = Rendered(swagger_protobuf(doc), self.v2_json().etag)
        return self._v2_protobuf

    def v3(self, path: str) -> Rendered | None:
        path = path.strip("/")
        if path not in self._v3:
            doc = self._builder().v3(path)
            if doc is None:
                return None
            self._v3[path] = render(doc)
        return self._v3[path]

    def v3_index(self) -> Rendered:
        if self._index is None:
            docs = {p: self.v3(p) for p in self._builder().v3_paths()}
            self._index = render(openapi_v3_index(docs))
        return self._index


# ---- Swagger 2.0 as protobuf (gnostic's openapi_v2.Document), which kubectl asks for ------------

def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _len(field_no: int, payload: bytes) -> bytes:
    return _varint(field_no << 3 | 2) + _varint(len(payload)) + payload


def _str(field_no: int, value: str) -> bytes:
    return _len(field_no, value.encode()) if value else b""


def _strs(field_no: int, values) -> bytes:
    return b"".join(_len(field_no, v.encode()) for v in values)


def _bool(field_no: int, value: bool, always: bool = False) -> bytes:
    return _varint(field_no << 3) + (b"\x01" if value else b"\x00") if value or always else b""


def _any(value) -> bytes:
    # gnostic keeps extension and default values as YAML text; JSON is YAML.
    return _str(2, json.dumps(value, sort_keys=True) + "\n")


def _vendor(field_no: int, node: dict) -> bytes:
    return b"".join(_len(field_no, _str(1, k) + _len(2, _any(v))) for k, v in sorted(node.items())
                    if k.startswith("x-"))


def _pb_schema(s: dict) -> bytes:
    """openapi_v2.Schema; the field numbers are gnostic's."""
    out = [_str(1, s.get("$ref", "")), _str(2, s.get("format", "")), _str(3, s.get("title", "")),
           _str(4, s.get("description", ""))]
    if "default" in s:
        out.append(_len(5, _any(s["default"])))
    out.append(_strs(19, s.get("required", ())))
    out += [_len(20, _any(e)) for e in s.get("enum", ())]
    extra = s.get("additionalProperties")
    if isinstance(extra, dict):
        out.append(_len(21, _len(1, _pb_schema(extra))))
    elif isinstance(extra, bool):
        out.append(_len(21, _bool(2, extra, always=True)))
    if "type" in s:
        types = s["type"] if isinstance(s["type"], list) else [s["type"]]
        out.append(_len(22, _strs(1, types)))
    items = s.get("items")
    if items is not None:
        out.append(_len(23, b"".join(_len(1, _pb_schema(i)) for i in (items if isinstance(items, list) else [items]))))
    out += [_len(24, _pb_schema(a)) for a in s.get("allOf", ())]
    if "properties" in s:
        out.append(_len(25, b"".join(_len(1, _str(1, k) + _len(2, _pb_schema(v)))
                                     for k, v in sorted(s["properties"].items()))))
    out.append(_vendor(31, s))
    return b"".join(out)


def _pb_parameter(p: dict) -> bytes:
    """ParametersItem{parameter: Parameter{body_parameter | non_body_parameter{query | path sub-schema}}}."""
    if p["in"] == "body":
        body = (_str(1, p.get("description", "")) + _str(2, p["name"]) + _str(3, "body") +
                _bool(4, p.get("required", False)) + _len(5, _pb_schema(p["schema"])))
        return _len(1, _len(1, body))
    # Query and path sub-schemas number their fields differently from `type` on.
    query = p["in"] == "query"
    sub = (_bool(1, p.get("required", False)) + _str(2, p["in"]) + _str(3, p.get("description", "")) +
           _str(4, p["name"]) + _str(6 if query else 5, p.get("type", "")) +
           _bool(20 if query else 19, p.get("uniqueItems", False)))
    return _len(1, _len(2, _len(3 if query else 4, sub)))


def _pb_operation(o: dict) -> bytes:
    # Responses{response_code: [NamedResponseValue{name, ResponseValue{response: Response{description,
    # schema: SchemaItem{schema}}}}]}
    responses = b"".join(
        _len(1, _str(1, code) + _len(2, _len(1, _str(1, r.get("description", "")) +
                                             (_len(2, _len(1, _pb_schema(r["schema"]))) if "schema" in r else b""))))
        for code, r in sorted(o.get("responses", {}).items()))
    return b"".join([_strs(1, o.get("tags", ())), _str(3, o.get("description", "")), _str(5, o.get("operationId", "")),
                     _strs(6, o.get("produces", ())), _strs(7, o.get("consumes", ())),
                     b"".join(_len(8, _pb_parameter(p)) for p in o.get("parameters", ())), _len(9, responses),
                     _strs(10, o.get("schemes", ())), _vendor(13, o)])


_PATH_ITEM_FIELDS = {"get": 2, "put": 3, "post": 4, "delete": 5, "options": 6, "head": 7, "patch": 8}


def _pb_path_item(item: dict) -> bytes:
    ops = b"".join(_len(n, _pb_operation(item[m])) for m, n in _PATH_ITEM_FIELDS.items() if m in item)
    return ops + b"".join(_len(9, _pb_parameter(p)) for p in item.get("parameters", ()))


def swagger_protobuf(doc: dict) -> bytes:
    """A Swagger 2.0 document (as `openapi_v2` builds it) encoded as gnostic's openapi_v2.Document."""
    info = _str(1, doc["info"]["title"]) + _str(2, doc["info"]["version"])
    paths = b"".join(_len(2, _str(1, p) + _len(2, _pb_path_item(item))) for p, item in sorted(doc["paths"].items()))
    definitions = b"".join(_len(1, _str(1, n) + _len(2, _pb_schema(s))) for n, s in sorted(doc["definitions"].items()))
    security = b"".join(_len(12, b"".join(_len(1, _str(1, name) + _len(2, _strs(1, scopes)))
                                          for name, scopes in sorted(req.items())))
                        for req in doc.get("security", ()))
    schemes = b"".join(_len(1, _str(1, name) + _len(2, _len(2, _str(1, s["type"]) + _str(2, s["name"]) +
                                                             _str(3, s["in"]) + _str(4, s.get("description", "")))))
                       for name, s in sorted(doc.get("securityDefinitions", {}).items()))
    return b"".join([_str(1, doc["swagger"]), _len(2, info), _len(8, paths), _len(9, definitions), security,
                     _len(13, schemes) if schemes else b"", _vendor(16, doc)])
