"""REST handlers: one per verb, shared by every kind.

A request's object travels: body (request version) → decode checks → legacy defaults → storage
version → defaults → registry (strategy, validation, store) → back to the request version → the
representation the client accepted (object, Table, PartialObjectMetadata; JSON or YAML).
"""
from __future__ import annotations

import asyncio
import copy
import datetime
import random
from typing import Any

import orjson
from aiohttp import web

from ..api import apply as ssa
from ..api import (
    convert,
    decode,
    defaults,
    errors,
    fields,
    kinds,
    labels,
    legacy,
    names,
    patch,
    schema,
    tables,
)
from ..api.jsonclone import clone
from . import codec, pods, satokens, strategy
from .registry import DeleteOptions, ListOptions, Registry, WatchEvent, gc_paused, now_rfc3339
from .stored import raw as stored_json
from ..storage.interface import KeyValue
from .request import RequestInfo

MIN_REQUEST_TIMEOUT = 1800
BOOKMARK_INTERVAL = 60.0


class Context:
    """One request: what it addresses and how it wants the answer."""

    def __init__(self, request: web.Request, info: RequestInfo, registry: Registry, credentials=None):
        self.request = request
        self.info = info
        self.res = info.resource
        self.registry = registry
        self.credentials = credentials  # server.Credentials: TokenReview, and its issuer for serviceaccounts/NAME/token
        self.query = request.query
        self.accept = codec.negotiate(request.headers.get("Accept"))
        self.warnings: list[str] = []

    @property
    def dry_run(self) -> bool:
        values = self.query.getall("dryRun", [])
        bad = [v for v in values if v != "All"]
        if bad:
            raise errors.invalid("meta.k8s.io", "CreateOptions", "",
                                 [names.not_supported("dryRun", bad, ["All"])])
        return bool(values)

    @property
    def field_validation(self) -> str:
        v = self.query.get("fieldValidation", "")
        if v not in ("", "Ignore", "Warn", "Strict"):
            raise errors.bad_request(f"fieldValidation must be one of Ignore, Warn, Strict; got {v}")
        return v or "Warn"

    def field_manager(self) -> str:
        manager = self.query.get("fieldManager")
        if manager is not None:
            if len(manager) > 128:
                raise errors.bad_request("fieldManager must be at most 128 characters")
            return manager
        agent = self.request.headers.get("User-Agent", "unknown")
        # Upstream: the User-Agent's first token, up to the first '/'.
        return agent.split("/", 1)[0][:128] or "unknown"

    def reset_fields(self, subresource: str) -> tuple[tuple[str, ...], ...]:
        """Fields a write through this endpoint does not own: status from the main resource, the
        rest from the status subresource (as upstream's strategies reset them)."""
        if not self.res.has_status:
            return ()
        return (("spec",), ("metadata", "labels"), ("metadata", "annotations")) if subresource == "status" \
            else (("status",),)

    @property
    def plain_json(self) -> bool:
        """The answer is the stored JSON itself: same version, no Table, no YAML."""
        a = self.accept
        return not (a.yaml or a.table or a.partial_metadata) and self.res.storage_gv == self.res.api_version

    def warning_headers(self) -> dict:
        return {"Warning": ", ".join(f'299 - "{w}"' for w in self.warnings)} if self.warnings else {}

    def respond(self, obj: Any, status: int = 200) -> web.Response:
        body, content_type = codec.dumps(obj, self.accept)
        return web.Response(body=body, status=status, content_type=content_type, headers=self.warning_headers())

    # ---- representations --------------------------------------------------------------------

    def external(self, obj: dict) -> dict:
        """A stored object in the request's version."""
        return convert.convert(obj, self.res.api_version)

    def render_object(self, obj: dict) -> Any:
        if self.accept.table:
            return tables.table(self.res.storage_group, self.res.kind, [obj], now=_now(),
                                include_object=self.query.get("includeObject", "Metadata"),
                                list_metadata={"resourceVersion": obj["metadata"].get("resourceVersion", "")},
                                api_version_of_objects=self.res.api_version,
                                convert=self.external)
        if self.accept.partial_metadata:
            return _partial(obj)
        return self.external(obj)

    def render_list(self, items: list[dict], meta: dict) -> Any:
        if self.accept.table:
            return tables.table(self.res.storage_group, self.res.kind, items, now=_now(),
                                include_object=self.query.get("includeObject", "Metadata"),
                                list_metadata=meta, api_version_of_objects=self.res.api_version,
                                convert=self.external)
        if self.accept.partial_metadata:
            return {"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1", "metadata": meta,
                    "items": [_partial(o) for o in items]}
        return {"kind": self.res.list_kind, "apiVersion": self.res.api_version, "metadata": meta,
                "items": [self.external(o) for o in items]}

    # ---- incoming objects -------------------------------------------------------------------

    async def read_body(self, res: kinds.Resource | None = None) -> dict:
        """The request's body, read, parsed and decode-checked as `res` (default: the resource addressed)."""
        raw, ctype = await _read(self.request), self.request.headers.get("Content-Type", "")
        served, self.res = self.res, res or self.res
        try:
            return self.check_body(codec.parse_body(raw, ctype), raw, ctype)
        finally:
            self.res = served

    def check_body(self, obj: Any, raw: bytes | None = None, content_type: str = "", decoded: dict | None = None
                   ) -> dict:
        """Decode checks on a body in the request's version; returns it pruned and canonical.
        `decoded`: the stored object the body was made from (a patch's), whose equal fields are not walked."""
        if obj is None:
            raise errors.bad_request("the body of the request was empty")
        if not isinstance(obj, dict):
            raise errors.bad_request(f"Object 'Kind' is missing in '{_short(obj)}'")
        res = self.res
        mode = self.field_validation
        media = codec.media_type(content_type)
        if media not in ("", codec.JSON, codec.YAML, "application/apply-patch+yaml"):
            raw = None  # duplicate keys can only be told from JSON or YAML text
        # JSON: counted before the checks below add kind, apiVersion or metadata.
        parsed_keys = decode.count_keys(obj) if raw is not None and media in ("", codec.JSON) else None
        kind, api_version = obj.get("kind"), obj.get("apiVersion")
        if kind is not None and kind != res.kind:
            raise errors.bad_request(f"the kind in the data ({kind}) does not match the expected kind ({res.kind})")
        if api_version is not None and api_version != res.api_version:
            raise errors.bad_request(f"the API version in the data ({api_version}) does not match the expected "
                                     f"API version ({res.api_version})")
        obj["kind"], obj["apiVersion"] = res.kind, res.api_version
        if not isinstance(obj.get("metadata", {}), dict):
            raise errors.bad_request(f"{res.kind} in version \"{res.version}\" cannot be handled as a {res.kind}: "
                                     f"json: cannot unmarshal {decode.json_kind(obj['metadata'])} into Go struct field "
                                     f"{res.kind}.metadata of type v1.ObjectMeta")
        obj.setdefault("metadata", {})
        found = decode.decode_body(obj, res.schema, strict=mode == "Strict", decoded=decoded)
        if found.type_errors:
            raise errors.bad_request(decode.handled_as_message(res.kind, res.version, res.kind,
                                                               found.type_errors[0]))
        unknown = decode.unknown_field_messages(found.unknown_fields)
        if mode == "Strict":
            if raw is not None:
                unknown = decode.find_duplicate_fields(raw, content_type, res.schema, parsed_keys) + unknown
            if unknown:
                raise errors.bad_request(decode.strict_error_message(unknown))
        elif mode == "Warn":
            self.warnings.extend(unknown)
            if raw is not None:
                self.warnings.extend(decode.find_duplicate_fields(raw, content_type, res.schema, parsed_keys))
        return obj

    def to_storage(self, obj: dict) -> dict:
        res = self.res
        if res.storage_gv != res.api_version:
            legacy.apply_legacy_defaults(res.group, res.version, res.kind, obj)
            obj = convert.convert(obj, res.storage_gv)
        defaults.apply_defaults(obj, kinds.storage_resource(res).schema)
        strategy.canonicalize(res, obj)
        return obj

    def admit(self, new: dict, old_ext: dict | None, manager: str) -> dict:
        """Default `new` (request version) into the storage version, then record what `manager`
        changed in managedFields — on the defaulted object, as upstream's field manager sees it."""
        stored = self.to_storage(new)
        ext = self.external(stored)
        sub = self.info.subresource
        ssa.update_managed_fields(old_ext, ext, self.res.schema, manager, "Update", api_version=self.res.api_version,
                                  now=now_rfc3339(), subresource=sub, reset_fields=self.reset_fields(sub))
        if ext is not stored:
            managed = ext["metadata"].get("managedFields")
            if managed is None:
                stored["metadata"].pop("managedFields", None)
            else:
                stored["metadata"]["managedFields"] = managed
        return stored

    def namespace_of_body(self, obj: dict) -> None:
        meta = obj.setdefault("metadata", {})
        ns = self.info.namespace
        if self.res.namespaced:
            body_ns = meta.get("namespace")
            if body_ns and ns and body_ns != ns:
                raise errors.bad_request("the namespace of the provided object does not match the namespace sent "
                                         "on the request")
            if ns:
                meta["namespace"] = ns
        else:
            meta.pop("namespace", None)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _partial(obj: dict) -> dict:
    return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj.get("metadata", {})}


def _short(obj: Any) -> str:
    text = orjson.dumps(obj).decode()
    return text if len(text) < 80 else text[:77] + "..."


def list_options(query) -> ListOptions:
    opts = ListOptions()
    ls = query.get("labelSelector", "")
    if ls:
        try:
            opts.label_selector = labels.parse_selector(ls)
        except labels.SelectorError as e:
            raise errors.bad_request(str(e)) from None  # upstream's parser text, verbatim
    fs = query.get("fieldSelector", "")
    if fs:
        try:
            opts.field_selector = fields.parse_field_selector(fs)
        except fields.FieldSelectorError as e:
            raise errors.bad_request(str(e)) from None
    limit = query.get("limit", "")
    if limit:
        try:
            opts.limit = max(int(limit), 0)
        except ValueError:
            raise errors.bad_request(f'invalid limit "{limit}"') from None
    opts.continue_token = query.get("continue", "")
    opts.resource_version = query.get("resourceVersion", "")
    opts.resource_version_match = query.get("resourceVersionMatch", "")
    if opts.resource_version_match not in ("", "Exact", "NotOlderThan"):
        raise errors.bad_request(f'resourceVersionMatch: Unsupported value: "{opts.resource_version_match}": '
                                 f'supported values: "Exact", "NotOlderThan"')
    if opts.resource_version_match and not opts.resource_version:
        raise errors.bad_request("resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden unless "
                                 "resourceVersion is provided")
    if opts.continue_token and opts.resource_version not in ("", "0"):
        raise errors.bad_request("specifying resource version is not allowed when using continue")
    return opts


def _check_field_selector(res: kinds.Resource, opts: ListOptions) -> None:
    if opts.field_selector is None:
        return
    allowed = {"metadata.name", "metadata.namespace", *res.selectable_fields}
    bad = fields.unsupported(opts.field_selector, allowed)
    if bad:
        raise errors.bad_request(f'field label not supported: {bad}')


# ---- verbs ------------------------------------------------------------------------------------

async def get(ctx: Context) -> web.StreamResponse:
    if ctx.plain_json and not ctx.info.subresource:
        body = await ctx.registry.get_raw(ctx.res, ctx.info.namespace, ctx.info.name)
        return web.Response(body=body, content_type="application/json")
    obj = await ctx.registry.get(ctx.res, ctx.info.namespace, ctx.info.name)
    return ctx.respond(ctx.render_object(obj))


async def list_(ctx: Context) -> web.StreamResponse:
    opts = list_options(ctx.query)
    _check_field_selector(ctx.res, opts)
    if ctx.plain_json and opts.label_selector is None and opts.field_selector is None:
        # Fast path: stored bytes go out as they are (no conversion, no filtering).
        items, meta = await ctx.registry.list(ctx.res, ctx.info.namespace, opts, as_raw=True)
        body = b"".join((b'{"kind":', orjson.dumps(ctx.res.list_kind), b',"apiVersion":',
                         orjson.dumps(ctx.res.api_version), b',"metadata":', orjson.dumps(meta),
                         b',"items":[', b",".join(items), b"]}"))
        return web.Response(body=body, content_type="application/json", headers=ctx.warning_headers())
    # Objects written straight out as JSON in their stored version can keep their managedFields
    # undecoded (often half of each object); YAML and conversions need them decoded.
    managed_fields_raw = not ctx.accept.yaml and ctx.res.storage_gv == ctx.res.api_version
    # The collector stays off until the decoded objects are freed again: enabled while they are
    # alive, its next pass would walk their millions of containers (~200 ms for 10,000 pods).
    with gc_paused():
        items, meta = await ctx.registry.list(ctx.res, ctx.info.namespace, opts, managed_fields_raw=managed_fields_raw)
        try:
            return ctx.respond(ctx.render_list(items, meta))
        except TypeError:
            if not managed_fields_raw:
                raise
            # integers beyond 64 bits: the standard library's encoder, which needs them decoded
            items, meta = await ctx.registry.list(ctx.res, ctx.info.namespace, opts)
            return ctx.respond(ctx.render_list(items, meta))
        finally:
            del items


async def create(ctx: Context) -> web.StreamResponse:
    obj = await ctx.read_body()
    ctx.namespace_of_body(obj)
    meta = obj["metadata"]
    if ctx.res.namespaced and not meta.get("namespace"):
        meta["namespace"] = "default"
    if not meta.get("name") and not meta.get("generateName"):
        raise errors.invalid(ctx.res.group, ctx.res.kind, "",
                             [names.required("metadata.name", "name or generateName is required")])
    stored = ctx.admit(obj, None, ctx.field_manager())
    created = await ctx.registry.create(ctx.res, stored, dry_run=ctx.dry_run)
    return ctx.respond(ctx.render_object(created), 201)


async def update(ctx: Context) -> web.StreamResponse:
    raw, ctype = await _read(ctx.request), ctx.request.headers.get("Content-Type", "")
    body = codec.parse_body(raw, ctype)
    sub = ctx.info.subresource
    if sub == "scale":
        return await _update_scale(ctx, body)
    obj = ctx.check_body(body, raw, ctype)
    ctx.namespace_of_body(obj)
    manager = ctx.field_manager()

    def transform(current: dict | None) -> dict:
        new = clone(obj)
        current_ext = ctx.external(current) if current is not None else None
        if current_ext is not None and "managedFields" not in new["metadata"]:
            new["metadata"]["managedFields"] = current_ext["metadata"].get("managedFields", [])
        return ctx.admit(new, current_ext, manager)

    allow_create = (ctx.res.group, ctx.res.kind) in strategy.CREATE_ON_UPDATE and not sub
    result, created = await ctx.registry.update(ctx.res, ctx.info.namespace, ctx.info.name, transform,
                                                subresource=sub, dry_run=ctx.dry_run, allow_create=allow_create)
    return ctx.respond(ctx.render_object(result), 201 if created else 200)


_GO_JSON_TYPES = {list: "array", str: "string", bool: "bool"}  # how encoding/json names what it met


def _patched(ctx: Context, kind: str, document: Any, current_ext: dict) -> dict:
    if kind == "json":
        return patch.json_patch(current_ext, document)  # it checks the document is a list
    if not isinstance(document, dict):
        if document is None and kind == "merge":
            raise errors.bad_request("Invalid JSON Patch")
        go_type = _GO_JSON_TYPES.get(type(document), "number")
        if kind == "strategic":
            raise errors.bad_request(f"json: cannot unmarshal {go_type} into Go value of type map[string]interface {{}}")
        # RFC 7386 makes a non-object patch the whole new document; upstream then fails to decode
        # it as an object, with the patched bytes as the invalid value.
        raise errors.invalid("", "", "", [names.invalid(
            "patch", orjson.dumps(document).decode(),
            f"couldn't get version/kind; json parse error: json: cannot unmarshal {go_type} into Go value of type "
            'struct { APIVersion string "json:\\"apiVersion,omitempty\\""; Kind string "json:\\"kind,omitempty\\"" }')])
    if kind == "merge":
        return patch.merge_patch(current_ext, document)
    return patch.strategic_merge_patch(current_ext, document, ctx.res.schema)


async def patch_(ctx: Context) -> web.StreamResponse:
    content_type = ctx.request.headers.get("Content-Type", "")
    raw = await _read(ctx.request)
    document = codec.parse_body(raw, content_type, patch=True)
    kind = codec.PATCH_TYPES[codec.media_type(content_type)]
    sub = ctx.info.subresource
    res = ctx.res
    force = ctx.query.get("force", "").lower() in ("true", "1")
    if kind == "apply":
        if "fieldManager" not in ctx.query:
            raise errors.invalid("meta.k8s.io", "PatchOptions", "",
                                 [names.required("fieldManager", "is required for apply patch")])
        if not isinstance(document, dict):
            raise errors.bad_request("error decoding YAML: the object is not a map")
    elif force:
        raise errors.bad_request("force: Invalid value: true: may not be specified for non-apply patch")
    manager = ctx.field_manager()
    if sub == "scale":
        return await _patch_scale(ctx, document, kind)

    def transform(current: dict | None) -> dict:
        if current is None and kind != "apply":
            raise errors.not_found(res.group, res.plural, ctx.info.name)
        current_ext = ctx.external(current) if current is not None else None
        if kind == "apply":
            applied = ctx.check_body(copy.deepcopy(document), raw, "application/yaml")
            ctx.namespace_of_body(applied)
            applied["metadata"].setdefault("name", ctx.info.name)
            new = ssa.server_side_apply(current_ext, applied, res.schema, manager, force, res.api_version,
                                        now_rfc3339(), subresource=sub, reset_fields=ctx.reset_fields(sub))
            return ctx.to_storage(new)
        new = ctx.check_body(_patched(ctx, kind, document, current_ext), decoded=current_ext)
        ctx.namespace_of_body(new)
        if new["metadata"].get("resourceVersion") == current_ext["metadata"].get("resourceVersion"):
            new["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        return ctx.admit(new, current_ext, manager)

    result, created = await ctx.registry.update(res, ctx.info.namespace, ctx.info.name, transform,
                                                subresource=sub, dry_run=ctx.dry_run,
                                                allow_create=kind == "apply" and not sub, retry=True)
    return ctx.respond(ctx.render_object(result), 201 if created else 200)


_DELETE_OPTIONS = "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions"


def delete_options(ctx: Context, body: Any) -> DeleteOptions:
    opts = DeleteOptions()
    if body is not None:
        if not isinstance(body, dict):
            raise errors.bad_request(f"json: cannot unmarshal {decode.json_kind(body)} into Go value of type "
                                     f"v1.DeleteOptions")
        found = decode.check_structure(body, schema.node(_DELETE_OPTIONS), strict=False)
        if found.type_errors:
            raise errors.bad_request(found.type_errors[0])
    src: dict = body or {}
    q = ctx.query
    grace = src.get("gracePeriodSeconds", q.get("gracePeriodSeconds"))
    if grace is not None:
        try:
            opts.grace_period_seconds = max(int(grace), 0)
        except (TypeError, ValueError):
            raise errors.bad_request(f'invalid gracePeriodSeconds "{grace}"') from None
    policy = src.get("propagationPolicy", q.get("propagationPolicy"))
    if policy is not None and policy not in ("Orphan", "Background", "Foreground"):
        raise errors.invalid("meta.k8s.io", "DeleteOptions", "", [
            names.not_supported("propagationPolicy", policy, ["Foreground", "Background", "Orphan", "nil"])])
    opts.propagation_policy = policy
    orphan = src.get("orphanDependents", q.get("orphanDependents"))
    if orphan is not None:
        opts.orphan_dependents = orphan in (True, "true", "1")
    pre = src.get("preconditions") or {}
    opts.precondition_uid = pre.get("uid")
    opts.precondition_rv = pre.get("resourceVersion")
    opts.dry_run = ctx.dry_run or bool(src.get("dryRun"))
    return opts


async def delete(ctx: Context) -> web.StreamResponse:
    raw = await _read(ctx.request)
    body = codec.parse_body(raw, ctx.request.headers.get("Content-Type", "")) if raw.strip() else None
    opts = delete_options(ctx, body)
    res = ctx.res
    obj, deleted = await ctx.registry.delete(res, ctx.info.namespace, ctx.info.name, opts)
    if not deleted or (res.storage_group, res.kind) in kinds.RETURNS_DELETED_OBJECT:
        status = 202 if (not deleted and opts.orphan_dependents is False) else 200
        return ctx.respond(ctx.render_object(obj), status)
    return ctx.respond({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                        "details": strategy.status_details(res, ctx.info.name, obj["metadata"].get("uid"))})


async def delete_collection(ctx: Context) -> web.StreamResponse:
    raw = await _read(ctx.request)
    body = codec.parse_body(raw, ctx.request.headers.get("Content-Type", "")) if raw.strip() else None
    opts = delete_options(ctx, body)
    lopts = list_options(ctx.query)
    _check_field_selector(ctx.res, lopts)
    items, meta = await ctx.registry.list(ctx.res, ctx.info.namespace, lopts)
    deleted = []
    for item in items:
        m = item["metadata"]
        try:
            obj, _ = await ctx.registry.delete(ctx.res, m.get("namespace"), m["name"], opts)
            deleted.append(obj)
        except errors.ApiError as e:
            if e.code != 404:
                raise
    return ctx.respond(ctx.render_list(deleted, meta))


# ---- scale subresource ------------------------------------------------------------------------

def _selector_string(obj: dict) -> str:
    sel = obj.get("spec", {}).get("selector")
    if sel is None:
        return ""
    if obj.get("kind") == "ReplicationController":
        return str(labels.selector_from_set(sel))
    return str(labels.selector_from_label_selector(sel))


def scale_of(obj: dict) -> dict:
    meta = obj["metadata"]
    return {"kind": "Scale", "apiVersion": "autoscaling/v1",
            "metadata": {"name": meta["name"], "namespace": meta.get("namespace"), "uid": meta.get("uid"),
                         "resourceVersion": meta.get("resourceVersion"),
                         "creationTimestamp": meta.get("creationTimestamp")},
            "spec": {"replicas": obj.get("spec", {}).get("replicas", 0)},
            "status": {"replicas": obj.get("status", {}).get("replicas", 0),
                       "selector": _selector_string(obj)}}


async def get_scale(ctx: Context) -> web.StreamResponse:
    obj = await ctx.registry.get(ctx.res, ctx.info.namespace, ctx.info.name)
    return ctx.respond(scale_of(obj))


def _apply_replicas(ctx: Context, current: dict, scale: dict) -> dict:
    if not isinstance(scale, dict) or scale.get("kind", "Scale") != "Scale":
        raise errors.bad_request("the body of the request must be a Scale")
    replicas = scale.get("spec", {}).get("replicas", 0)
    if not isinstance(replicas, int) or replicas < 0:
        raise errors.invalid("autoscaling", "Scale", ctx.info.name,
                             [names.invalid("spec.replicas", replicas, "must be greater than or equal to 0")])
    rv = scale.get("metadata", {}).get("resourceVersion")
    if rv and rv != current["metadata"]["resourceVersion"]:
        raise errors.conflict(ctx.res.group, ctx.res.plural, ctx.info.name, errors.STALE_OBJECT)
    current.setdefault("spec", {})["replicas"] = replicas
    return current


async def _update_scale(ctx: Context, body: Any) -> web.StreamResponse:
    result, _ = await ctx.registry.update(ctx.res, ctx.info.namespace, ctx.info.name,
                                          lambda cur: _apply_replicas(ctx, cur, body) if cur else
                                          _raise(errors.not_found(ctx.res.group, ctx.res.plural, ctx.info.name)),
                                          dry_run=ctx.dry_run, retry=True)
    return ctx.respond(scale_of(result))


async def _patch_scale(ctx: Context, document: Any, kind: str) -> web.StreamResponse:
    def transform(cur):
        if cur is None:
            raise errors.not_found(ctx.res.group, ctx.res.plural, ctx.info.name)
        scale = scale_of(cur)
        if kind == "json":
            patched = patch.json_patch(scale, document)
        elif kind == "merge":
            patched = patch.merge_patch(scale, document)
        else:
            from ..api import schema
            patched = patch.strategic_merge_patch(scale, document, schema.node("io.k8s.api.autoscaling.v1.Scale"))
        patched.setdefault("metadata", {}).pop("resourceVersion", None) if \
            patched.get("metadata", {}).get("resourceVersion") == scale["metadata"]["resourceVersion"] else None
        return _apply_replicas(ctx, cur, patched)

    result, _ = await ctx.registry.update(ctx.res, ctx.info.namespace, ctx.info.name, transform,
                                          dry_run=ctx.dry_run, retry=True)
    return ctx.respond(scale_of(result))


def _raise(e: Exception):
    raise e


# ---- watch ------------------------------------------------------------------------------------

async def watch(ctx: Context) -> web.StreamResponse:
    opts = list_options(ctx.query)
    _check_field_selector(ctx.res, opts)
    q = ctx.query
    timeout_q = q.get("timeoutSeconds")
    timeout = MIN_REQUEST_TIMEOUT * (1 + random.random())
    if timeout_q:
        try:
            timeout = float(int(timeout_q))
        except ValueError:
            raise errors.bad_request(f'invalid timeoutSeconds "{timeout_q}"') from None
    bookmarks = q.get("allowWatchBookmarks", "").lower() in ("true", "1")
    send_initial_q = q.get("sendInitialEvents")
    send_initial = None
    if send_initial_q is not None:
        send_initial = send_initial_q.lower() in ("true", "1")
        if send_initial and opts.resource_version_match != "NotOlderThan":
            raise errors.invalid("meta.k8s.io", "ListOptions", "", [names.forbidden(
                "sendInitialEvents", "sendInitialEvents is forbidden for watch unless resourceVersionMatch "
                "is set to NotOlderThan")])
        if send_initial and not bookmarks:
            raise errors.invalid("meta.k8s.io", "ListOptions", "", [names.forbidden(
                "allowWatchBookmarks", "allowWatchBookmarks has to be set to true when sendInitialEvents is set")])
    name = ""
    if opts.field_selector is not None:
        for f, op, v in opts.field_selector.requirements:
            if f == "metadata.name" and op in ("=", "=="):
                name = v
    events = ctx.registry.watch(ctx.res, ctx.info.namespace, opts, send_initial=send_initial, name=name)
    response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
    response.enable_chunked_encoding()
    await response.prepare(ctx.request)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    sent_columns = False
    last_rv = opts.resource_version or "0"

    async def send(ev_type: str, obj: dict, kv: KeyValue | None = None) -> None:
        nonlocal sent_columns
        if kv is not None and ctx.plain_json:  # the stored JSON as it is, as a GET sends it
            await response.write(b'{"type":"%s","object":%s}\n' % (ev_type.encode(), stored_json(kv)))
            return
        if ev_type in ("BOOKMARK", "ERROR"):
            payload = obj
        elif ctx.accept.table:
            payload = tables.table(ctx.res.storage_group, ctx.res.kind, [obj], now=_now(),
                                   include_object=q.get("includeObject", "Metadata"),
                                   list_metadata={"resourceVersion": obj["metadata"].get("resourceVersion", "")},
                                   api_version_of_objects=ctx.res.api_version, convert=ctx.external)
            if sent_columns:
                payload["columnDefinitions"] = []
            sent_columns = True
        elif ctx.accept.partial_metadata:
            payload = _partial(obj)
        else:
            payload = ctx.external(obj)
        await response.write(orjson.dumps({"type": ev_type, "object": payload}) + b"\n")

    def bookmark(rv: str) -> dict:
        return {"kind": ctx.res.kind, "apiVersion": ctx.res.api_version, "metadata": {"resourceVersion": rv}}

    next_bookmark = loop.time() + BOOKMARK_INTERVAL
    pending: asyncio.Future = asyncio.ensure_future(events.__anext__())
    try:
        while True:
            now = loop.time()
            if now >= deadline:
                break
            done, _ = await asyncio.wait({pending}, timeout=min(deadline, next_bookmark) - now)
            if not done:
                if bookmarks and loop.time() >= next_bookmark:
                    rv = str(max(int(last_rv), ctx.registry.store.current_revision()))
                    await send("BOOKMARK", bookmark(rv))
                    next_bookmark = loop.time() + BOOKMARK_INTERVAL
                continue
            try:
                ev = pending.result()
            except StopAsyncIteration:
                break
            except errors.ApiError as e:
                await send("ERROR", e.status())
                break
            if ev.type != "BOOKMARK" or bookmarks:
                await _send_event(send, ev, bookmark)
            if ev.revision:
                last_rv = str(ev.revision)
            pending = asyncio.ensure_future(events.__anext__())
    except ConnectionResetError:
        pass  # the client went away: the end of its watch, not an error
    finally:
        # Finish the generator's current step before closing it.
        pending.cancel()
        await asyncio.gather(pending, return_exceptions=True)
        await events.aclose()
    return response


async def _send_event(send, ev: WatchEvent, bookmark) -> None:
    if ev.type == "BOOKMARK":
        body = bookmark(ev.object["metadata"]["resourceVersion"])
        body["metadata"]["annotations"] = ev.object["metadata"].get("annotations", {})
        await send("BOOKMARK", body)
    else:
        await send(ev.type, ev.object, ev.kv)


async def _read(request: web.Request) -> bytes:
    if request.content_length is not None and request.content_length > codec.MAX_BODY:
        raise errors.too_large()
    chunks = []
    size = 0
    async for chunk in request.content.iter_chunked(65536):
        size += len(chunk)
        if size > codec.MAX_BODY:
            raise errors.too_large()
        chunks.append(chunk)
    return b"".join(chunks)


async def review(ctx: Context) -> web.StreamResponse:
    """SelfSubjectAccessReview and SelfSubjectReview: answered for the caller, not stored."""
    body = await ctx.read_body()
    user, groups = ctx.request.get("user", ("", ()))
    if ctx.res.kind == "TokenReview":
        out = await token_review(ctx, body)
    elif ctx.res.kind == "SelfSubjectReview":
        status = {"userInfo": {"username": user, "groups": [*groups, "system:authenticated"]}}
        out = {"kind": "SelfSubjectReview", "apiVersion": ctx.res.api_version,
               "metadata": {"creationTimestamp": None}, "status": status}
    else:
        # Every authenticated caller is allowed until authorization (RBAC) arrives.
        out = {"kind": "SelfSubjectAccessReview", "apiVersion": ctx.res.api_version,
               "metadata": {"creationTimestamp": None}, "spec": body.get("spec", {}),
               "status": {"allowed": True, "reason": "ketch: no authorizer configured yet"}}
    return ctx.respond(out, 201)


async def token_review(ctx: Context, body: dict) -> dict:
    """TokenReview: who a bearer token authenticates as, the way delegated authentication (a
    kubelet's webhook authenticator, metrics-server) asks. A bad token is an answer, not an error."""
    spec = body.get("spec") if isinstance(body.get("spec"), dict) else {}
    token = spec.get("token") if isinstance(spec.get("token"), str) else ""
    user = await ctx.credentials.authenticate_token(token) if token and ctx.credentials is not None else None
    audiences = [a for a in spec.get("audiences") or () if isinstance(a, str)] or [satokens.ISSUER]
    if user is None:
        status = {"user": {}, "error": "invalid bearer token"}
    else:
        status = {"authenticated": True, "audiences": audiences,
                  "user": {"username": user[0], "groups": [*user[1], "system:authenticated"]}}
    return {"kind": "TokenReview", "apiVersion": ctx.res.api_version, "metadata": {"creationTimestamp": None},
            "spec": spec, "status": status}


TOKEN_REQUEST = kinds.Resource("authentication.k8s.io", "v1", "TokenRequest", "tokenrequests", verbs=("create",),
                               storage_group="authentication.k8s.io", storage_version="v1")


async def service_account_token(ctx: Context) -> web.StreamResponse:
    """POST serviceaccounts/NAME/token: a TokenRequest answered with a signed token, not stored."""
    body = await ctx.read_body(TOKEN_REQUEST)
    answer = await ctx.credentials.issuer.token_request(ctx.registry, ctx.info.namespace, ctx.info.name, body)
    return ctx.respond(answer, 201)


async def finalize(ctx: Context) -> web.StreamResponse:
    """PUT namespaces/NAME/finalize: only spec.finalizers changes (the namespace controller's step)."""
    body = await ctx.read_body()
    finalizers = list((body.get("spec") or {}).get("finalizers") or [])

    def transform(current: dict | None) -> dict:
        if current is None:
            raise errors.not_found("", "namespaces", ctx.info.name)
        spec = current.setdefault("spec", {})
        if finalizers:
            spec["finalizers"] = finalizers
        else:
            spec.pop("finalizers", None)
        return current

    result, _ = await ctx.registry.update(ctx.res, None, ctx.info.name, transform, subresource="finalize",
                                          dry_run=ctx.dry_run, retry=True)
    return ctx.respond(ctx.render_object(result))


VERBS = {"get": get, "list": list_, "create": create, "update": update, "patch": patch_, "delete": delete,
         "deletecollection": delete_collection, "watch": watch}


async def dispatch(ctx: Context) -> web.StreamResponse:
    info = ctx.info
    verb = info.verb
    if verb not in info.resource.verbs and not info.subresource:
        raise errors.method_not_allowed()
    if info.resource.kind in kinds.REVIEW_KINDS and verb == "create":
        return await review(ctx)
    if info.subresource == "scale" and verb == "get":
        return await get_scale(ctx)
    if info.subresource == "finalize" and verb == "update":
        return await finalize(ctx)
    if verb == "create" and (info.subresource == "binding" or info.resource.kind == "Binding"):
        return await pods.bind(ctx)
    if verb == "create" and info.subresource == "eviction":
        return await pods.evict(ctx)
    if verb == "create" and info.subresource == "token" and info.resource.kind == "ServiceAccount" \
            and ctx.credentials is not None:
        return await service_account_token(ctx)
    if info.subresource in ("status", "scale"):
        if verb not in ("get", "update", "patch"):
            raise errors.method_not_allowed()
    elif info.subresource:
        raise errors.ApiError(404, "NotFound", "the server could not find the requested resource")
    return await VERBS[verb](ctx)
