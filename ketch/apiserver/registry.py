"""The generic registry: create, read, update, delete and watch any kind on the store.

Objects here are in their storage version, already decoded and defaulted by the HTTP layer. The
registry owns what is the same for every kind — keys, resourceVersion, uid and timestamps,
optimistic concurrency, graceful deletion and finalizers, namespace lifecycle checks, selectors,
paging and watch filtering — and asks `strategy` for what differs.
"""
from __future__ import annotations

import base64
import contextlib
import copy
import datetime
import gc
import os
import time
import uuid
from dataclasses import dataclass
from typing import Any, AsyncIterator, Callable

import orjson

from ..api import errors, fields, kinds, labels, validation
from ..storage import interface as st
from ..storage.leases import LeaseManager
from . import admission, allocators, strategy
from .stored import decode, encode, raw


_last_second: list = [0, ""]  # [whole seconds, their RFC 3339 text]: writes come many a second


class _UidSource:
    """Version 4 UUIDs from os.urandom drawn 4 KiB at a time. uuid4() makes a getrandom call per
    UUID, and each lets the store's writer thread take the GIL mid-request; this makes one per
    256 creates. A forked child starts a pool of its own, so no two processes share UIDs."""

    def __init__(self) -> None:
        self._pool, self._at = b"", 0
        os.register_at_fork(after_in_child=self._forget)

    def _forget(self) -> None:
        self._pool, self._at = b"", 0

    def __call__(self) -> str:
        if self._at >= len(self._pool):
            self._pool, self._at = os.urandom(4096), 0
        raw = self._pool[self._at:self._at + 16]
        self._at += 16
        return str(uuid.UUID(bytes=raw, version=4))


new_uid = _UidSource()


def now_rfc3339() -> str:
    second = int(time.time())
    if second != _last_second[0]:
        _last_second[:] = [second, datetime.datetime.fromtimestamp(second, datetime.timezone.utc)
                           .strftime("%Y-%m-%dT%H:%M:%SZ")]
    return _last_second[1]


@dataclass
class ListOptions:
    label_selector: labels.Selector | None = None
    field_selector: fields.FieldSelector | None = None
    limit: int = 0
    continue_token: str = ""
    resource_version: str = ""
    resource_version_match: str = ""


@dataclass
class DeleteOptions:
    grace_period_seconds: int | None = None
    propagation_policy: str | None = None
    orphan_dependents: bool | None = None
    precondition_uid: str | None = None
    precondition_rv: str | None = None
    dry_run: bool = False


@dataclass
class WatchEvent:
    """`object` may be shared with other watchers of the same change: read it, never change it."""

    type: str      # ADDED MODIFIED DELETED BOOKMARK ERROR
    object: dict
    revision: int = 0
    kv: st.KeyValue | None = None  # the stored value `object` was decoded from (see `raw`)


class _SharedDecodes:
    """Every watcher of a kind sees the same changes one after another, so each stored value is
    decoded once for all of them (upstream's watch cache shares its decoded objects likewise)."""

    SIZE = 256

    def __init__(self) -> None:
        self._objects: dict[tuple[str, int, int], dict] = {}

    def decode(self, kv: st.KeyValue) -> dict:
        key = (kv.key, kv.mod_revision, kv.create_revision)
        obj = self._objects.get(key)
        if obj is None:
            if len(self._objects) >= self.SIZE:
                del self._objects[next(iter(self._objects))]
            obj = self._objects[key] = decode(kv)
        return obj


def field_value(obj: dict, path: str) -> str:
    """The string a field selector compares against, as upstream's per-kind field sets give it."""
    if path == "source" and obj.get("kind", "Event") == "Event":
        return (obj.get("source") or {}).get("component", "")
    cur: Any = obj
    for part in path.split("."):
        if not isinstance(cur, dict):
            return ""
        cur = cur.get(part)
    if cur is None:
        # Upstream reports unset booleans as "false" and unset numbers as "0".
        return {"spec.hostNetwork": "false", "spec.unschedulable": "false",
                "status.replicas": "0", "status.successful": "0"}.get(path, "")
    if isinstance(cur, bool):
        return "true" if cur else "false"
    return str(cur)


def matches(res: kinds.Resource, obj: dict, opts: ListOptions) -> bool:
    meta = obj.get("metadata", {})
    if opts.label_selector is not None and not opts.label_selector.matches(meta.get("labels") or {}):
        return False
    if opts.field_selector is not None:
        values = {"metadata.name": meta.get("name", ""), "metadata.namespace": meta.get("namespace", "")}
        for f, _op, _v in opts.field_selector.requirements:
            if f not in values:
                values[f] = field_value(obj, f)
        if not opts.field_selector.matches(values):
            return False
    return True


@contextlib.contextmanager
def gc_paused():
    """Decoding thousands of objects allocates millions of containers that all stay alive; the
    cyclic collector would scan them again and again for nothing. Reference counting still frees."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def encode_continue(revision: int, start_key: str) -> str:
    token = orjson.dumps({"v": "meta.k8s.io/v1", "rv": revision, "start": start_key})
    return base64.urlsafe_b64encode(token).decode().rstrip("=")


def decode_continue(token: str) -> tuple[int, str]:
    try:
        padded = token + "=" * (-len(token) % 4)
        data = orjson.loads(base64.urlsafe_b64decode(padded))
        if data.get("v") != "meta.k8s.io/v1":
            raise ValueError
        return int(data["rv"]), str(data["start"])
    except Exception:
        raise errors.bad_request("continue key is not valid: incorrect encoded start resourceVersion "
                                 "(version meta.k8s.io/v1)") from None


DEFAULT_EVENT_TTL = 3600.0  # kube-apiserver's --event-ttl default, 1h0m0s

TOO_OLD_CONTINUE = ("The provided continue parameter is too old to display a consistent list result. "
                    "You can start a new list without the continue parameter, or use the continue token "
                    "in this response to retrieve the remainder of the results. Continuing with the "
                    "provided token results in an inconsistent list - objects that were created, "
                    "modified, or deleted between the time the first chunk was returned and now may "
                    "show up in the list.")


class Registry:
    def __init__(self, store: st.Store, ca_pem: str = "", event_ttl: float = DEFAULT_EVENT_TTL):
        self.store = store
        self.ca_pem = ca_pem  # published to every namespace as kube-root-ca.crt
        self.event_ttl = event_ttl  # kube-apiserver's --event-ttl: each write of an Event restarts it
        self._leases = LeaseManager(store)
        self.allocators = allocators.ServiceAllocators(self)
        self._namespace_res = kinds.lookup("", "v1", "namespaces")
        self._watch_decodes = _SharedDecodes()  # per store: revisions are one store's

    # ---- reads -------------------------------------------------------------------------------

    async def get(self, res: kinds.Resource, namespace: str | None, name: str) -> dict:
        kv = await self.store.get(res.key(namespace, name))
        if kv is None:
            raise errors.not_found(res.group, res.plural, name)
        return decode(kv)

    async def get_raw(self, res: kinds.Resource, namespace: str | None, name: str) -> bytes:
        kv = await self.store.get(res.key(namespace, name))
        if kv is None:
            raise errors.not_found(res.group, res.plural, name)
        return raw(kv)

    async def get_or_none(self, res: kinds.Resource, namespace: str | None, name: str) -> dict | None:
        kv = await self.store.get(res.key(namespace, name))
        return decode(kv) if kv is not None else None

    async def list(self, res: kinds.Resource, namespace: str | None, opts: ListOptions, *, as_raw: bool = False,
                   managed_fields_raw: bool = False) -> tuple[list, dict]:
        """Items in storage version and the list metadata (resourceVersion, continue, remainingItemCount).

        With `as_raw` (only without selectors) the items are stored JSON bytes, ready to send; with
        `managed_fields_raw` their managedFields are left as JSON text (stored.decode)."""
        prefix = res.prefix(namespace)
        revision, start = 0, prefix
        if opts.continue_token:
            revision, start_key = decode_continue(opts.continue_token)
            start = prefix + start_key
        elif opts.resource_version and opts.resource_version_match == "Exact":
            revision = _parse_rv(opts.resource_version)
        elif opts.resource_version not in ("", "0") and opts.resource_version_match not in ("NotOlderThan",):
            rv = _parse_rv(opts.resource_version)
            if rv > self.store.current_revision():
                raise errors.server_timeout(f"Too large resource version: {rv}, current: "
                                            f"{self.store.current_revision()}")
        filtering = opts.label_selector is not None and not opts.label_selector.empty or \
            opts.field_selector is not None and not opts.field_selector.empty
        items: list[dict] = []
        try:
            while True:
                batch = opts.limit if opts.limit and not filtering else (max(opts.limit * 2, 500) if opts.limit else 0)
                result = await self.store.range(prefix, start=start, limit=batch, revision=revision)
                revision = result.revision
                if not result.kvs:  # admission asks for quotas and limit ranges that seldom exist
                    return items, {"resourceVersion": str(revision)}
                with gc_paused():
                    last_key = self._collect(res, result.kvs, items, opts, filtering, as_raw, managed_fields_raw)
                if opts.limit and len(items) == opts.limit:
                    more = result.more or (last_key != result.kvs[-1].key)
                    meta: dict[str, Any] = {"resourceVersion": str(revision)}
                    if more:
                        meta["continue"] = encode_continue(revision, last_key[len(prefix):] + "\0")
                        if not filtering:
                            remaining = result.count - len(result.kvs) + \
                                (len(result.kvs) - 1 - [k.key for k in result.kvs].index(last_key))
                            if remaining > 0:
                                meta["remainingItemCount"] = remaining
                    return items, meta
                if not result.more or not result.kvs:
                    return items, {"resourceVersion": str(revision)}
                start = result.kvs[-1].key + "\0"
        except st.CompactedError:
            if opts.continue_token:
                raise errors.gone(TOO_OLD_CONTINUE) from None
            raise errors.gone(f"resourceVersion: {revision} is too old") from None
        except st.FutureRevisionError:
            raise errors.server_timeout(f"Too large resource version: {revision}, current: "
                                        f"{self.store.current_revision()}") from None

    @staticmethod
    def _collect(res: kinds.Resource, kvs: list, items: list, opts: ListOptions, filtering: bool,
                 as_raw: bool, managed_fields_raw: bool = False) -> str | None:
        """Append the matching objects of one range to `items`, up to the limit; the last key read."""
        last_key = None
        for kv in kvs:
            last_key = kv.key
            if as_raw and not filtering:
                items.append(raw(kv))
            else:
                obj = decode(kv, managed_fields_raw=managed_fields_raw)
                if filtering and not matches(res, obj, opts):
                    continue
                items.append(obj)
            if opts.limit and len(items) == opts.limit:
                break
        return last_key

    # ---- writes ------------------------------------------------------------------------------

    async def check_namespace(self, res: kinds.Resource, namespace: str | None) -> None:
        if not res.namespaced:
            return
        ns = await self.get_or_none(self._namespace_res, None, namespace or "")
        if ns is None:
            raise errors.not_found("", "namespaces", namespace or "")
        if ns.get("metadata", {}).get("deletionTimestamp") or ns.get("status", {}).get("phase") == "Terminating":
            raise errors.ApiError(403, "Forbidden",
                                  f'{_resource_for_message(res)} "{{name}}" is forbidden: unable to create new '
                                  f"content in namespace {namespace} because it is being terminated",
                                  {"causes": [{"reason": "NamespaceTerminating",
                                               "message": f"namespace {namespace} is being terminated",
                                               "field": "metadata.namespace"}]})

    async def create(self, res: kinds.Resource, obj: dict, *, dry_run: bool = False,
                     trusted: bool = False) -> dict:
        """Create `obj` (storage version, defaulted). Returns it as stored, with resourceVersion.

        `trusted` writes (the server's own) skip admission and validation."""
        meta = obj.setdefault("metadata", {})
        strategy.strip_server_fields(meta)
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = strategy.generate_name(meta["generateName"])
        if not res.namespaced:
            meta.pop("namespace", None)
        meta["uid"] = new_uid()
        meta["creationTimestamp"] = now_rfc3339()
        attrs = admission.Attributes(admission.CREATE, res, obj, dry_run=dry_run)
        if not trusted:
            await admission.admit(self, attrs)  # before the strategy: a Pod's QoS class sees LimitRange defaults
        strategy.prepare_for_create(res, obj)
        # Allocation (cluster IPs, node ports) comes first: validation checks what it assigned.
        async with self.allocators.for_create(res, obj, dry_run):
            if not trusted:
                self._validate(res, obj, None)
                await admission.validate(self, attrs)
            if dry_run:
                if await self.store.get(res.key(meta.get("namespace"), meta["name"])) is not None:
                    raise errors.already_exists(res.group, res.plural, meta["name"])
                return obj
            try:
                kv = await self.store.create(res.key(meta.get("namespace"), meta["name"]), encode(obj),
                                             lease=await self._lease(res))
            except st.KeyExistsError:
                raise errors.already_exists(res.group, res.plural, meta["name"]) from None
        meta["resourceVersion"] = str(kv.mod_revision)
        if res.kind == "Namespace" and res.storage_group == "":
            await admission.namespace_created(self, meta["name"])
        return obj

    async def _lease(self, res: kinds.Resource, otherwise: int | None = 0) -> int | None:
        """The lease a write of `res` attaches: Events expire event_ttl after their last write, as
        upstream's event storage does; other kinds keep `otherwise` (none, or the key's own)."""
        if res.kind == "Event" and res.storage_group == "" and self.event_ttl > 0:
            return await self._leases.lease(self.event_ttl)
        return otherwise

    def _validate(self, res: kinds.Resource, obj: dict, old: dict | None, subresource: str = "") -> None:
        validation.prepare(res.storage_group, res.kind, obj, old)
        problems = validation.validate(res.storage_group, res.kind, obj, old, subresource=subresource,
                                       request_group=res.group if res.group != res.storage_group else None)
        if problems:
            raise errors.invalid(res.group, res.kind, obj.get("metadata", {}).get("name", ""), problems)

    async def update(self, res: kinds.Resource, namespace: str | None, name: str,
                     transform: Callable[[dict | None], dict], *, subresource: str = "",
                     dry_run: bool = False, allow_create: bool = False, retry: bool = False,
                     trusted: bool = False) -> tuple[dict, bool]:
        """Read-modify-write: `transform(current_or_None)` returns the new object (storage version).

        The new object's metadata.resourceVersion, when set, is a precondition (409 on mismatch);
        otherwise the update is unconditional against what was read, and is retried on a race when
        `retry` (patches). Returns (object, created).
        """
        key = res.key(namespace, name)
        for _attempt in range(16):
            kv = await self.store.get(key)
            current = decode(kv) if kv else None
            if current is None and not allow_create:
                raise errors.not_found(res.group, res.plural, name)
            new = transform(decode(kv) if kv else None)  # a second decode: a fresh copy for transform to change
            meta = new.setdefault("metadata", {})
            if meta.get("name", name) != name:
                raise errors.bad_request("the name of the object (%s) does not match the name on the URL (%s)"
                                         % (meta.get("name"), name))
            meta["name"] = name
            if current is None:
                created = await self.create(res, new, dry_run=dry_run)
                return created, True
            requested_rv = meta.get("resourceVersion") or ""
            if requested_rv and requested_rv != current["metadata"]["resourceVersion"]:
                raise errors.conflict(res.group, res.plural, name, errors.STALE_OBJECT)
            attrs = admission.Attributes(admission.UPDATE, res, new, current, subresource, dry_run)
            if not trusted:
                await admission.admit(self, attrs)
            self._keep_server_fields(res, new, current)
            if subresource == "status":
                new = attrs.obj = strategy.prepare_for_status_update(res, new, current)
            elif subresource == "":
                strategy.prepare_for_update(res, new, current)
            await self.allocators.for_update(res, new, current)
            if not trusted:
                self._validate(res, new, current, subresource)
                await admission.validate(self, attrs)
            if _same(new, current):
                return current, False
            if dry_run:
                return new, False
            if self._finished_deleting(new):
                try:
                    await self.store.delete(key, expected_mod_revision=kv.mod_revision)
                except st.ConflictError:
                    if retry or not requested_rv:
                        continue
                    raise errors.conflict(res.group, res.plural, name, errors.STALE_OBJECT) from None
                except st.KeyNotFoundError:  # deleted meanwhile (the garbage collector, say)
                    raise errors.not_found(res.group, res.plural, name) from None
                new["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
                return new, False
            try:
                stored = await self.store.update(key, encode(new), expected_mod_revision=kv.mod_revision,
                                                 lease=await self._lease(res, None))
            except st.ConflictError:
                if retry or not requested_rv:
                    continue
                raise errors.conflict(res.group, res.plural, name, errors.STALE_OBJECT) from None
            except st.KeyNotFoundError:
                raise errors.not_found(res.group, res.plural, name) from None
            new["metadata"]["resourceVersion"] = str(stored.mod_revision)
            return new, False
        raise errors.conflict(res.group, res.plural, name, errors.STALE_OBJECT)

    @staticmethod
    def _keep_server_fields(res: kinds.Resource, new: dict, current: dict) -> None:
        meta, old = new["metadata"], current["metadata"]
        for f in ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation"):
            if f in old:
                meta[f] = old[f]
            else:
                meta.pop(f, None)
        if res.namespaced:
            meta["namespace"] = old.get("namespace")
        else:
            meta.pop("namespace", None)

    @staticmethod
    def _finished_deleting(obj: dict) -> bool:
        meta = obj["metadata"]
        if obj.get("kind") == "Namespace" and (obj.get("spec") or {}).get("finalizers"):
            return False  # still being emptied by the namespace controller
        return bool(meta.get("deletionTimestamp")) and not meta.get("finalizers") and \
            not meta.get("deletionGracePeriodSeconds")

    async def delete(self, res: kinds.Resource, namespace: str | None, name: str, opts: DeleteOptions
                     ) -> tuple[dict, bool]:
        """Returns (object, deleted_now). A graceful or finalizer-held delete returns the object
        with deletionTimestamp set and deleted_now False."""
        key = res.key(namespace, name)
        for _attempt in range(16):
            kv = await self.store.get(key)
            if kv is None:
                raise errors.not_found(res.group, res.plural, name)
            obj = decode(kv)
            meta = obj["metadata"]
            if opts.precondition_uid and opts.precondition_uid != meta.get("uid"):
                raise errors.conflict(res.group, res.plural, name,
                                      f"Precondition failed: UID in precondition: {opts.precondition_uid}, "
                                      f"UID in object meta: {meta.get('uid')}")
            if opts.precondition_rv and opts.precondition_rv != meta.get("resourceVersion"):
                raise errors.conflict(res.group, res.plural, name,
                                      f"Precondition failed: ResourceVersion in precondition: "
                                      f"{opts.precondition_rv}, ResourceVersion in object meta: "
                                      f"{meta.get('resourceVersion')}")
            updated = copy.deepcopy(obj)
            umeta = updated["metadata"]
            finalizers = list(umeta.get("finalizers") or [])
            policy = opts.propagation_policy
            if opts.orphan_dependents is not None and policy is None:
                policy = "Orphan" if opts.orphan_dependents else "Background"
            if policy is not None:
                # An explicit policy replaces an earlier one, as upstream's deletion finalizers do.
                finalizers = [f for f in finalizers if f not in ("orphan", "foregroundDeletion")]
            elif not finalizers_pending(obj):
                policy = strategy.default_propagation(res)
            if policy == "Foreground" and "foregroundDeletion" not in finalizers:
                finalizers.append("foregroundDeletion")
            elif policy == "Orphan" and "orphan" not in finalizers:
                finalizers.append("orphan")
            if finalizers:
                umeta["finalizers"] = finalizers
            else:
                umeta.pop("finalizers", None)
            graceful = strategy.deletes_gracefully(res, obj)
            grace = strategy.pod_grace_period(obj, opts.grace_period_seconds) if graceful else 0
            namespace_terminating = res.kind == "Namespace" and (obj.get("spec") or {}).get("finalizers")
            if namespace_terminating:
                updated.setdefault("status", {})["phase"] = "Terminating"
            if (finalizers or namespace_terminating or (graceful and grace > 0)):
                if not umeta.get("deletionTimestamp"):
                    ts = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=grace)
                    umeta["deletionTimestamp"] = ts.strftime("%Y-%m-%dT%H:%M:%SZ")
                    umeta["deletionGracePeriodSeconds"] = grace
                elif graceful and grace < (umeta.get("deletionGracePeriodSeconds") or 0):
                    ts = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=grace)
                    umeta["deletionTimestamp"] = ts.strftime("%Y-%m-%dT%H:%M:%SZ")
                    umeta["deletionGracePeriodSeconds"] = grace
                if _same(updated, obj) or opts.dry_run:
                    return updated, False
                try:
                    stored = await self.store.update(key, encode(updated), expected_mod_revision=kv.mod_revision)
                except (st.ConflictError, st.KeyNotFoundError):
                    continue
                umeta["resourceVersion"] = str(stored.mod_revision)
                return updated, False
            if opts.dry_run:
                return obj, True
            try:
                await self.store.delete(key, expected_mod_revision=kv.mod_revision)
            except (st.ConflictError, st.KeyNotFoundError):
                continue
            return obj, True
        raise errors.conflict(res.group, res.plural, name, errors.STALE_OBJECT)

    # ---- watch -------------------------------------------------------------------------------

    async def watch(self, res: kinds.Resource, namespace: str | None, opts: ListOptions, *,
                    send_initial: bool | None, name: str = "") -> AsyncIterator[WatchEvent]:
        """Watch events (storage version objects) following upstream's semantics for
        resourceVersion: unset → initial ADDED for the current state, then changes; "0" → the same;
        N → every change after N; sendInitialEvents=true → the state then a BOOKMARK."""
        prefix = res.key(namespace, name) if name else res.prefix(namespace)
        rv = opts.resource_version
        initial = send_initial if send_initial is not None else rv in ("", "0")
        if initial:
            snapshot = await self.store.range(prefix)
            start = snapshot.revision + 1
            for kv in snapshot.kvs:
                if name and kv.key != prefix:
                    continue
                obj = decode(kv)
                if matches(res, obj, opts):
                    yield WatchEvent("ADDED", obj, kv.mod_revision, kv)
            if send_initial:
                yield WatchEvent("BOOKMARK", {"metadata": {"resourceVersion": str(snapshot.revision),
                                                           "annotations": {"k8s.io/initial-events-end": "true"}}},
                                 snapshot.revision)
        else:
            start = _parse_rv(rv) + 1
        try:
            watch = self.store.watch(prefix, start)
        except st.CompactedError as e:
            raise errors.gone(f"too old resource version: {start - 1} ({e.compact_revision})") from None
        async with watch:
            try:
                async for ev in watch:
                    if name and ev.kv.key != prefix:
                        continue
                    out = self._filter(res, ev, opts)
                    if out is not None:
                        yield out
            except st.CompactedError as e:
                raise errors.gone(f"too old resource version: {start - 1} ({e.compact_revision})") from None

    def _filter(self, res: kinds.Resource, ev: st.Event, opts: ListOptions) -> WatchEvent | None:
        kv = ev.kv  # for a DELETE: the last value at the revision of the delete
        obj = self._watch_decodes.decode(kv)
        now_match = matches(res, obj, opts)
        if ev.type == st.DELETE:
            return WatchEvent("DELETED", obj, kv.mod_revision, kv) if now_match else None
        if ev.prev_kv is None:
            return WatchEvent("ADDED", obj, kv.mod_revision, kv) if now_match else None
        filtered = opts.label_selector is not None or opts.field_selector is not None
        was_match = not filtered or matches(res, self._watch_decodes.decode(ev.prev_kv), opts)
        if now_match and was_match:
            return WatchEvent("MODIFIED", obj, kv.mod_revision, kv)
        if now_match:
            return WatchEvent("ADDED", obj, kv.mod_revision, kv)
        if was_match:
            return WatchEvent("DELETED", obj, kv.mod_revision, kv)
        return None


def finalizers_pending(obj: dict) -> bool:
    """Deletion already under way: the first request's policy stands."""
    return bool(obj.get("metadata", {}).get("deletionTimestamp"))


def _same(a: dict, b: dict) -> bool:
    """Equal apart from resourceVersion (a no-op update writes nothing, as upstream)."""
    ma, mb = a.get("metadata", {}), b.get("metadata", {})
    ra, rb = ma.pop("resourceVersion", None), mb.pop("resourceVersion", None)
    try:
        return a == b
    finally:
        if ra is not None:
            ma["resourceVersion"] = ra
        if rb is not None:
            mb["resourceVersion"] = rb


def _parse_rv(rv: str) -> int:
    try:
        value = int(rv)
        if value < 0 or value >= 1 << 64:  # upstream parses a uint64
            raise ValueError
        return value
    except ValueError:
        raise errors.bad_request(f'invalid resource version "{rv}"') from None


def _resource_for_message(res: kinds.Resource) -> str:
    return f"{res.plural}.{res.group}" if res.group else res.plural
