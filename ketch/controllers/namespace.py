"""The namespace lifecycle controller: empties a namespace being deleted, then finalizes it.

As upstream's: a Namespace with a deletionTimestamp has every namespaced object in it deleted; once
none remain, the `kubernetes` finalizer is removed through the `finalize` subresource and the
Namespace itself goes away. Objects held by finalizers or graceful deletion keep it Terminating
until they are gone; the controller checks again with a backoff.
"""
from __future__ import annotations

import logging

from ..api import kinds
from ..api.errors import ApiError
from ..client.rest import Client
from .base import Controller, InformerFactory, stored_resources
from ..client.events import EventRecorder

log = logging.getLogger("ketch.controllers.namespace")
FINALIZER = "kubernetes"


def content_resources() -> list[kinds.Resource]:
    """One served Resource per stored namespaced kind (each storage prefix once)."""
    return stored_resources(namespaced=True, verbs=("deletecollection",))


class NamespaceController(Controller):
    name = "namespace"

    def __init__(self, client: Client, informers: InformerFactory, recorder: EventRecorder):
        super().__init__(client, informers, recorder)
        self.namespaces = client.resource("v1", "Namespace")
        self.informer = informers.informer("v1", "Namespace")
        self.retries: dict[str, int] = {}
        self.informer.add_handlers(on_add=self._enqueue, on_update=lambda _old, new: self._enqueue(new))

    def _enqueue(self, ns: dict) -> None:
        if ns.get("metadata", {}).get("deletionTimestamp"):
            self.enqueue(ns)

    async def sync(self, name: str) -> float | None:
        """One step towards deleting namespace `name`; looks again later while content remains."""
        ns = self.informer.get(name)
        if ns is None or not ns["metadata"].get("deletionTimestamp"):
            return None
        remaining = 0
        for res in content_resources():
            rc = self.client.resource(res.api_version, res.kind, name)
            await self.client.request("DELETE", rc.path(), body={"kind": "DeleteOptions", "apiVersion": "v1",
                                                                 "propagationPolicy": "Background"})
            left = await rc.list(limit=1)
            remaining += len(left.get("items", []))
        if remaining:
            self.retries[name] = retries = self.retries.get(name, 0) + 1
            return min(0.05 * 2 ** retries, 10.0)
        self.retries.pop(name, None)
        finalizers = [f for f in (ns.get("spec") or {}).get("finalizers", []) if f != FINALIZER]
        if FINALIZER in (ns.get("spec") or {}).get("finalizers", []):
            try:
                current = await self.namespaces.get(name)
            except ApiError as e:
                if e.code == 404:
                    return None
                raise
            current.setdefault("spec", {})["finalizers"] = finalizers
            await self.client.request("PUT", self.namespaces.path(name, subresource="finalize"), body=current)
        try:
            await self.namespaces.delete(name)
        except ApiError as e:
            if e.code != 404:
                raise
        return None
