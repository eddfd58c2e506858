"""Payloads of the projected volume kinds: configMap, secret, downwardAPI and projected
(pkg/volume/{configmap,secret,downwardapi,projected} MakePayload / CollectData), as files for
the AtomicWriter. Failures raise ProjectionError with upstream's text.
"""
from __future__ import annotations

import base64
import logging
import time
from typing import Any

from ..env import ConfigError, object_field_value, resource_field_for
from .atomic_writer import FileProjection

log = logging.getLogger("ketch.agent.volumes")

DEFAULT_MODE = 0o644
TOKEN_DEFAULT_EXPIRATION = 3600


class ProjectionError(Exception):
    pass


def aggregate(errors: list[str]) -> str:
    """utilerrors.NewAggregate(...).Error()."""
    return errors[0] if len(errors) == 1 else "[" + ", ".join(errors) + "]"


def _mode(value: Any, default: int) -> int:
    return int(value) if value is not None else default


def _payload(items: list[dict], data: dict[str, bytes], default_mode: int, optional: bool,
             missing: str) -> dict[str, FileProjection]:
    """The files of a configMap or secret source: every key, or just `items` (key -> path, mode)."""
    if not items:
        return {k: FileProjection(v, default_mode) for k, v in data.items()}
    payload = {}
    for item in items:
        if item["key"] not in data:
            if optional:
                continue
            raise ProjectionError(f"{missing}: {item['key']}")
        payload[item["path"]] = FileProjection(data[item["key"]], _mode(item.get("mode"), default_mode))
    return payload


def config_map_payload(items: list[dict], config_map: dict, default_mode: int, optional: bool) -> dict[str, FileProjection]:
    data = {k: v.encode() for k, v in (config_map.get("data") or {}).items()}
    data.update({k: base64.b64decode(v) for k, v in (config_map.get("binaryData") or {}).items()})
    return _payload(items, data, default_mode, optional, "configmap references non-existent config key")


def secret_payload(items: list[dict], secret: dict, default_mode: int, optional: bool) -> dict[str, FileProjection]:
    data = {k: base64.b64decode(v) for k, v in (secret.get("data") or {}).items()}
    return _payload(items, data, default_mode, optional, "references non-existent secret key")


async def downward_api_payload(items: list[dict], pod: dict, default_mode: int, source) -> dict[str, FileProjection]:
    """CollectData: every item is attempted; the errors come back together."""
    payload, errors = {}, []
    for item in items:
        mode = _mode(item.get("mode"), default_mode)
        value = ""
        try:
            if item.get("fieldRef") is not None:
                value = object_field_value(pod, item["fieldRef"].get("fieldPath") or "")
            elif item.get("resourceFieldRef") is not None:
                value = await resource_field_for(pod, None, item["resourceFieldRef"], source)
        except ConfigError as err:
            errors.append(err.message)
        payload[item["path"]] = FileProjection(value.encode(), mode)
    if errors:
        raise ProjectionError(aggregate(errors))
    return payload


async def _get(source, kind: str, namespace: str, name: str, optional: bool) -> dict | None:
    """A configMap or secret; None when absent and optional (then it projects as empty)."""
    obj = await (source.config_map if kind == "configmap" else source.secret)(namespace, name)
    if obj is None and not optional:
        raise ProjectionError(f'{kind} "{name}" not found')
    return obj


async def config_map_volume_payload(spec: dict, namespace: str, source) -> dict[str, FileProjection]:
    optional = bool(spec.get("optional"))
    cm = await _get(source, "configmap", namespace, spec.get("name") or "", optional) or {}
    return config_map_payload(spec.get("items") or [], cm, _mode(spec.get("defaultMode"), DEFAULT_MODE), optional)


async def secret_volume_payload(spec: dict, namespace: str, source) -> dict[str, FileProjection]:
    optional = bool(spec.get("optional"))
    secret = await _get(source, "secret", namespace, spec.get("secretName") or "", optional) or {}
    return secret_payload(spec.get("items") or [], secret, _mode(spec.get("defaultMode"), DEFAULT_MODE), optional)


class TokenCache:
    """Service-account tokens of projected volumes, renewed past 80% of their lifetime (as the
    kubelet's token manager does) rather than on every refresh."""

    def __init__(self):
        self._tokens: dict[tuple, tuple[str, float, float]] = {}  # key → (token, issued, ttl)

    async def get(self, source, pod: dict, item: dict) -> str | None:
        request = getattr(source, "service_account_token", None)
        if request is None:
            return None
        meta, spec = pod["metadata"], pod.get("spec") or {}
        ttl = float(item.get("expirationSeconds") or TOKEN_DEFAULT_EXPIRATION)
        audience = item.get("audience") or ""
        key = (meta.get("uid"), spec.get("serviceAccountName") or "default", audience, ttl)
        cached = self._tokens.get(key)
        now = time.monotonic()
        if cached and now - cached[1] < 0.8 * cached[2]:
            return cached[0]
        token = await request(meta.get("namespace") or "default", key[1], audience, int(ttl), pod)
        if token is None:
            return None
        self._tokens[key] = (token, now, ttl)
        return token

    def forget(self, pod_uid: str) -> None:
        for key in [k for k in self._tokens if k[0] == pod_uid]:
            del self._tokens[key]


async def projected_payload(spec: dict, pod: dict, source, tokens: TokenCache, fs_user: int | None,
                            fs_group: int | None) -> dict[str, FileProjection]:
    """collectData of the projected plugin: every source's files in one payload."""
    namespace = pod["metadata"].get("namespace") or "default"
    default_mode = _mode(spec.get("defaultMode"), DEFAULT_MODE)
    payload: dict[str, FileProjection] = {}
    errors: list[str] = []
    for src in spec.get("sources") or []:
        try:
            if src.get("configMap") is not None:
                cm_spec = src["configMap"]
                optional = bool(cm_spec.get("optional"))
                cm = await _get(source, "configmap", namespace, cm_spec.get("name") or "", optional)
                if cm is not None or optional:
                    payload.update(config_map_payload(cm_spec.get("items") or [], cm or {}, default_mode, optional))
            elif src.get("secret") is not None:
                s_spec = src["secret"]
                optional = bool(s_spec.get("optional"))
                secret = await _get(source, "secret", namespace, s_spec.get("name") or "", optional)
                payload.update(secret_payload(s_spec.get("items") or [], secret or {}, default_mode, optional))
            elif src.get("downwardAPI") is not None:
                payload.update(await downward_api_payload(src["downwardAPI"].get("items") or [], pod, default_mode,
                                                          source))
            elif src.get("serviceAccountToken") is not None:
                item = src["serviceAccountToken"]
                token = await tokens.get(source, pod, item)
                if token is None:
                    log.info("no TokenRequest API: projected token %s of pod %s/%s left out", item.get("path"),
                             namespace, pod["metadata"].get("name"))
                    continue
                mode = 0o600 if (fs_user is not None or fs_group is not None) else default_mode
                payload[item["path"]] = FileProjection(token.encode(), mode, fs_user)
        except ProjectionError as err:
            errors.append(str(err))
    if errors:
        raise ProjectionError(aggregate(errors))
    return payload
