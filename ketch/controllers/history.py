"""ControllerRevisions: the template history of StatefulSets and DaemonSets (upstream's
pkg/controller/history).

A revision holds a strategic-merge patch that re-applies its owner's pod template
(`{"spec": {"template": {..., "$patch": "replace"}}}`, which `kubectl rollout undo` applies), a
revision number, and the owner's controller reference. Its name is `<owner>-<hash>`, the hash an
FNV-1 32-bit hash of the data plus the owner's collisionCount, encoded as upstream's
SafeEncodeString; when a different revision already has that name, the collision count goes up and
the hash is taken again.
"""
from __future__ import annotations

import copy

import orjson

from ..api.errors import ApiError
from ..client.informer import Informer
from ..client.rest import Client
from .base import InformerFactory, owner_uid_index
from .podutil import controller_ref, owner_reference

HASH_LABEL = "controller.kubernetes.io/hash"
OWNER_INDEX = "owner-uid"
_ALPHANUMS = "bcdfghjklmnpqrstvwxz2456789"


def revision_informer(informers: InformerFactory) -> Informer:
    """The shared ControllerRevision informer, indexed by owner uid."""
    inf = informers.informer("apps/v1", "ControllerRevision")
    inf.add_index(OWNER_INDEX, owner_uid_index)
    return inf


def _canonical(data: dict) -> bytes:
    return orjson.dumps(data, option=orjson.OPT_SORT_KEYS)


def _fnv1_32(data: bytes) -> int:
    h = 0x811C9DC5
    for b in data:
        h = (h * 0x01000193) & 0xFFFFFFFF
        h ^= b
    return h


def safe_encode(s: str) -> str:
    """Upstream's rand.SafeEncodeString: no vowels, so no words."""
    return "".join(_ALPHANUMS[ord(c) % len(_ALPHANUMS)] for c in s)


def revision_hash(data: dict, collision_count: int | None = None) -> str:
    raw = _canonical(data)
    if collision_count is not None:
        raw += str(collision_count).encode()
    return safe_encode(str(_fnv1_32(raw)))


def revision_name(prefix: str, hash_: str) -> str:
    return f"{prefix[:223]}-{hash_}"


def template_patch(owner: dict) -> dict:
    """The revision data of a StatefulSet or DaemonSet: its pod template, as a replacing patch."""
    template = copy.deepcopy(owner.get("spec", {}).get("template") or {})
    template["$patch"] = "replace"
    return {"spec": {"template": template}}


def template_of(revision: dict) -> dict:
    """The pod template a revision records."""
    template = copy.deepcopy(((revision.get("data") or {}).get("spec") or {}).get("template") or {})
    template.pop("$patch", None)
    return template


def new_revision(owner: dict, data: dict, number: int, collision_count: int | None, *,
                 hash_label: str = HASH_LABEL, hash_input: dict | None = None) -> dict:
    """A ControllerRevision of `owner` (not yet created). The name's hash is of `hash_input`
    (default: the data); DaemonSets hash their template and label it controller-revision-hash."""
    meta = owner["metadata"]
    hash_ = revision_hash(data if hash_input is None else hash_input, collision_count)
    labels = dict(((owner.get("spec") or {}).get("template") or {}).get("metadata", {}).get("labels") or {})
    labels[hash_label] = hash_
    rev_meta: dict = {"name": revision_name(meta["name"], hash_), "namespace": meta.get("namespace"),
                      "labels": labels, "ownerReferences": [owner_reference(owner)]}
    if meta.get("annotations"):
        rev_meta["annotations"] = dict(meta["annotations"])  # kubectl rollout history's CHANGE-CAUSE
    return {"apiVersion": "apps/v1", "kind": "ControllerRevision", "metadata": rev_meta, "data": data,
            "revision": number}


def list_revisions(informer: Informer, owner: dict) -> list[dict]:
    """The owner's revisions (by controller reference), oldest first."""
    uid = owner["metadata"]["uid"]
    revs = [r for r in informer.by_index(OWNER_INDEX, uid) if (controller_ref(r) or {}).get("uid") == uid]
    return sorted(revs, key=lambda r: (r.get("revision", 0), r["metadata"].get("creationTimestamp", ""),
                                       r["metadata"]["name"]))


def next_revision(revisions: list[dict]) -> int:
    return max((r.get("revision", 0) for r in revisions), default=0) + 1


def equal_revisions(revisions: list[dict], data: dict) -> list[dict]:
    want = _canonical(data)
    return [r for r in revisions if _canonical(r.get("data") or {}) == want]


async def create_revision(client: Client, owner: dict, data: dict, number: int,
                          collision_count: int, **naming) -> tuple[dict, int]:
    """Create the revision, raising the collision count past names taken by different data.
    Returns the revision (new, or the existing one with equal data) and the collision count."""
    res = client.resource("apps/v1", "ControllerRevision", owner["metadata"].get("namespace"))
    while True:
        rev = new_revision(owner, data, number, collision_count, **naming)
        try:
            return await res.create(rev), collision_count
        except ApiError as e:
            if e.code != 409:
                raise
        existing = await res.get(rev["metadata"]["name"])
        if _canonical(existing.get("data") or {}) == _canonical(data):
            return existing, collision_count
        collision_count += 1


async def update_revision_number(client: Client, revision: dict, number: int) -> dict:
    """Renumber a revision (a rollback makes an old template the newest revision again)."""
    if revision.get("revision") == number:
        return revision
    res = client.resource("apps/v1", "ControllerRevision", revision["metadata"].get("namespace"))
    return await res.patch(revision["metadata"]["name"], {"revision": number}, "merge")


async def truncate_history(client: Client, revisions: list[dict], live: set[str], limit: int) -> None:
    """Delete the oldest revisions not in `live` (names) beyond `limit` of them."""
    old = [r for r in revisions if r["metadata"]["name"] not in live]
    excess = len(old) - max(limit, 0)
    for rev in old[:max(excess, 0)]:
        res = client.resource("apps/v1", "ControllerRevision", rev["metadata"].get("namespace"))
        try:
            await res.delete(rev["metadata"]["name"])
        except ApiError as e:
            if e.code != 404:
                raise
