"""The default binder: POST pods/NAME/binding, which the API server accepts once per pod (201),
answering 409 when the pod is already assigned or being deleted."""
from __future__ import annotations

from ..client.rest import Client


class Binder:
    def __init__(self, client: Client):
        self.client = client
        self._pods = client.resource("v1", "Pod")

    async def bind(self, pod: dict, node: str) -> None:
        meta = pod["metadata"]
        body = {"apiVersion": "v1", "kind": "Binding",
                "metadata": {"name": meta["name"], "namespace": meta["namespace"], "uid": meta.get("uid")},
                "target": {"apiVersion": "v1", "kind": "Node", "name": node}}
        await self.client.request("POST", self._pods.path(meta["name"], meta["namespace"], "binding"), body=body)

    async def delete(self, pod: dict) -> None:
        meta = pod["metadata"]
        await self._pods.delete(meta["name"], meta["namespace"], preconditions={"uid": meta.get("uid")})

    async def patch_status(self, pod: dict, status: dict) -> None:
        meta = pod["metadata"]
        await self._pods.patch(meta["name"], {"status": status}, "strategic", namespace=meta["namespace"],
                               subresource="status")
