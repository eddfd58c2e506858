"""An in-memory stand-in for what the kubelet reads from its informers (configMaps, secrets,
services, claims, volumes) and from its node: plain dicts, shaped as the API returns them."""
from __future__ import annotations

import base64


def secret(namespace: str, name: str, **data: str | bytes) -> dict:
    return {"kind": "Secret", "metadata": {"namespace": namespace, "name": name},
            "data": {k: base64.b64encode(v if isinstance(v, bytes) else v.encode()).decode() for k, v in data.items()}}


def config_map(namespace: str, name: str, **data: str) -> dict:
    return {"kind": "ConfigMap", "metadata": {"namespace": namespace, "name": name}, "data": dict(data)}


def service(namespace: str, name: str, cluster_ip: str, *ports: dict) -> dict:
    return {"kind": "Service", "metadata": {"namespace": namespace, "name": name},
            "spec": {"clusterIP": cluster_ip, "ports": list(ports)}}


class DictSource:
    def __init__(self, objects: list[dict] = (), allocatable: dict | None = None, tokens: bool = False):
        self.config_maps: dict[tuple[str, str], dict] = {}
        self.secrets: dict[tuple[str, str], dict] = {}
        self.service_list: list[dict] = []
        self.claims: dict[tuple[str, str], dict] = {}
        self.volumes: dict[str, dict] = {}
        self.allocatable = allocatable or {"cpu": "2", "memory": "8Gi", "ephemeral-storage": "100Gi", "pods": "110"}
        self.token_requests: list[tuple] = []
        if tokens:
            self.service_account_token = self._token
        for obj in objects:
            self.add(obj)

    def add(self, obj: dict) -> None:
        meta, kind = obj["metadata"], obj["kind"]
        key = (meta.get("namespace", ""), meta["name"])
        if kind == "Service":
            self.service_list.append(obj)
        elif kind == "PersistentVolume":
            self.volumes[meta["name"]] = obj
        else:
            {"ConfigMap": self.config_maps, "Secret": self.secrets, "PersistentVolumeClaim": self.claims}[kind][key] = obj

    async def config_map(self, namespace: str, name: str) -> dict | None:
        return self.config_maps.get((namespace, name))

    async def secret(self, namespace: str, name: str) -> dict | None:
        return self.secrets.get((namespace, name))

    async def services(self, namespace: str) -> list[dict]:
        return [s for s in self.service_list if s["metadata"]["namespace"] == namespace]

    async def node_allocatable(self) -> dict[str, str]:
        return dict(self.allocatable)

    async def persistent_volume_claim(self, namespace: str, name: str) -> dict | None:
        return self.claims.get((namespace, name))

    async def persistent_volume(self, name: str) -> dict | None:
        return self.volumes.get(name)

    async def _token(self, namespace: str, service_account: str, audience: str, expiration_seconds: int,
                     pod: dict) -> str:
        self.token_requests.append((namespace, service_account, audience, expiration_seconds))
        return f"token-{len(self.token_requests)}-for-{namespace}-{service_account}"
