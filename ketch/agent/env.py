"""A container's environment as the kubelet makes it (makeEnvironmentVariables).

Order of resolution is upstream's: envFrom sources first (later sources and then `env` entries
override earlier ones), each `env` value expanded against the variables declared before it and
the Service variables, then the Service discovery variables the container did not declare. The
result keeps declaration order (upstream iterates a Go map, so its order is arbitrary; ours is
stable so that a container's config hash does not change between syncs).

Failures the kubelet reports as CreateContainerConfigError raise `ConfigError` with upstream's
text; keys of an envFrom source that are not valid variable names are skipped and reported in
`ContainerEnv.warnings` as the kubelet's `InvalidEnvironmentVariableNames` event.
"""
from __future__ import annotations

import base64
import math
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping, Protocol

from ..api.names import go_quote, is_env_var_name, is_qualified_name
from ..api.quantity import Quantity, parse_quantity

# Services whose variables every pod gets, whatever its enableServiceLinks (upstream's masterServices).
MASTER_SERVICES = ("kubernetes",)
MASTER_NAMESPACE = "default"

INVALID_ENV_NAMES_REASON = "InvalidEnvironmentVariableNames"


class ConfigError(Exception):
    """The container cannot be configured (CreateContainerConfigError); str() is upstream's message."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class PodSource(Protocol):
    """What the kubelet's informers and node know, as env and volumes need it. All coroutines."""

    async def config_map(self, namespace: str, name: str) -> dict | None: ...
    async def secret(self, namespace: str, name: str) -> dict | None: ...
    async def services(self, namespace: str) -> list[dict]: ...
    async def node_allocatable(self) -> dict[str, str]: ...


@dataclass
class ContainerEnv:
    env: list[tuple[str, str]]
    warnings: list[tuple[str, str]] = field(default_factory=list)  # (event reason, message)


# --- $(VAR) expansion (third_party/forked/golang/expansion) ----------------------------------


def expand(text: str, mapping: Callable[[str], str]) -> str:
    """`$(NAME)` → mapping(NAME); `$$` → `$`; anything else after `$` is kept as written."""
    out: list[str] = []
    checkpoint = 0
    cursor = 0
    n = len(text)
    while cursor < n:
        if text[cursor] == "$" and cursor + 1 < n:
            out.append(text[checkpoint:cursor])
            nxt = text[cursor + 1]
            if nxt == "$":
                out.append("$")
                advance = 1
            elif nxt == "(":
                close = text.find(")", cursor + 2)
                if close == -1:  # an unterminated reference is kept verbatim
                    out.append("$(")
                    advance = 1
                else:
                    out.append(mapping(text[cursor + 2:close]))
                    advance = close - cursor
            else:
                out.append("$" + nxt)
                advance = 1
            cursor += advance
            checkpoint = cursor + 1
        cursor += 1
    out.append(text[checkpoint:])
    return "".join(out)


def mapping_for(*contexts: Mapping[str, str]) -> Callable[[str], str]:
    """The first context that has the name wins; an unknown name stays `$(NAME)`."""

    def lookup(name: str) -> str:
        for ctx in contexts:
            if name in ctx:
                return ctx[name]
        return f"$({name})"

    return lookup


def expand_command_and_args(container: dict, env: Iterable[tuple[str, str]]) -> tuple[list[str], list[str]]:
    """ExpandContainerCommandAndArgs: `$(VAR)` in command and args against the final environment."""
    mapping = mapping_for(dict(env))
    command = [expand(c, mapping) for c in container.get("command") or []]
    args = [expand(a, mapping) for a in container.get("args") or []]
    return command, args


def expand_subpath_expr(expr: str, env: Iterable[tuple[str, str]]) -> str:
    """ExpandContainerVolumeMounts: every referenced variable must be set and non-empty."""
    values = dict(env)
    missing: set[str] = set()

    def lookup(name: str) -> str:
        value = values.get(name, "")
        if not value:
            missing.add(name)
        return value

    expanded = expand(expr, lookup)
    if missing:
        raise ConfigError("missing value for " + ", ".join(sorted(missing)))
    return expanded


# --- Service discovery variables (pkg/kubelet/envvars) -----------------------------------------


def _env_name(name: str) -> str:
    return name.replace("-", "_").upper()


def _join_host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def service_ip_set(service: dict) -> bool:
    ip = (service.get("spec") or {}).get("clusterIP") or ""
    return ip not in ("", "None")


def service_env(services: Iterable[dict]) -> list[tuple[str, str]]:
    """FromServices: `<NAME>_SERVICE_HOST`, `_SERVICE_PORT[_<PORT>]` and Docker link variables."""
    result: list[tuple[str, str]] = []
    for svc in services:
        spec = svc.get("spec") or {}
        ports = spec.get("ports") or []
        if not service_ip_set(svc) or not ports:
            continue
        ip = spec["clusterIP"]
        prefix = _env_name(svc["metadata"]["name"])
        result.append((prefix + "_SERVICE_HOST", ip))
        result.append((prefix + "_SERVICE_PORT", str(ports[0]["port"])))
        for port in ports:
            if port.get("name"):
                result.append((f"{prefix}_SERVICE_PORT_{_env_name(port['name'])}", str(port["port"])))
        for i, port in enumerate(ports):
            protocol = port.get("protocol") or "TCP"
            url = f"{protocol.lower()}://{_join_host_port(ip, port['port'])}"
            if i == 0:  # Docker special-cases the first port
                result.append((prefix + "_PORT", url))
            port_prefix = f"{prefix}_PORT_{port['port']}_{protocol.upper()}"
            result += [
                (port_prefix, url),
                (port_prefix + "_PROTO", protocol.lower()),
                (port_prefix + "_PORT", str(port["port"])),
                (port_prefix + "_ADDR", ip),
            ]
    return result


async def service_env_map(source: PodSource, namespace: str, enable_service_links: bool) -> dict[str, str]:
    """getServiceEnvVarMap: the namespace's Services (when links are on) and the master services."""
    candidates = list(await source.services(MASTER_NAMESPACE))
    if enable_service_links and namespace != MASTER_NAMESPACE:
        candidates += await source.services(namespace)
    chosen: dict[str, dict] = {}
    for svc in candidates:
        if not service_ip_set(svc):
            continue
        name, ns = svc["metadata"]["name"], svc["metadata"].get("namespace", "")
        if ns == MASTER_NAMESPACE and name in MASTER_SERVICES:
            chosen.setdefault(name, svc)
        elif ns == namespace and enable_service_links:
            chosen[name] = svc
    return dict(service_env(chosen[name] for name in sorted(chosen)))


# --- downward API values ---------------------------------------------------------------------


def _split_subscript(path: str) -> tuple[str, str] | None:
    if path.endswith("']") and "['" in path:
        base, _, rest = path.partition("['")
        return base, rest[:-2]
    return None


def format_map(values: Mapping[str, str]) -> str:
    """fieldpath.FormatMap: `key="value"` lines, sorted by key, Go-quoted."""
    return "\n".join(f"{k}={go_quote(values[k])}" for k in sorted(values))


def object_field_value(pod: dict, field_path: str) -> str:
    """fieldpath.ExtractFieldPathAsString on a pod's metadata."""
    meta = pod.get("metadata") or {}
    sub = _split_subscript(field_path)
    if sub:
        base, key = sub
        if base not in ("metadata.annotations", "metadata.labels"):
            raise ConfigError(f'fieldPath "{field_path}" does not support subscript')
        errs = is_qualified_name(key.lower() if base == "metadata.annotations" else key)
        if errs:
            raise ConfigError(f"invalid key subscript in {field_path}: {';'.join(errs)}")
        return (meta.get(base.split(".")[1]) or {}).get(key, "")
    if field_path in ("metadata.annotations", "metadata.labels"):
        return format_map(meta.get(field_path.split(".")[1]) or {})
    if field_path in ("metadata.name", "metadata.namespace", "metadata.uid"):
        return meta.get(field_path.split(".")[1]) or ""
    raise ConfigError(f"unsupported fieldPath: {field_path}")


def _check_api_version(selector: dict) -> str:
    version = selector.get("apiVersion") or "v1"
    if version != "v1":
        raise ConfigError(f"unsupported pod version: {version}")
    path = selector.get("fieldPath") or ""
    return "spec.nodeName" if path == "spec.host" else path


def pod_field_value(pod: dict, selector: dict) -> str:
    """podFieldSelectorRuntimeValue: env fieldRef over a pod whose status the kubelet filled in."""
    path = _check_api_version(selector)
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    pod_ips = [p["ip"] for p in status.get("podIPs") or [] if p.get("ip")] or (
        [status["podIP"]] if status.get("podIP") else [])
    host_ips = [p["ip"] for p in status.get("hostIPs") or [] if p.get("ip")] or (
        [status["hostIP"]] if status.get("hostIP") else [])
    if path == "spec.nodeName":
        return spec.get("nodeName") or ""
    if path == "spec.serviceAccountName":
        return spec.get("serviceAccountName") or ""
    if path == "status.hostIP":
        return host_ips[0] if host_ips else ""
    if path == "status.hostIPs":
        return ",".join(host_ips)
    if path == "status.podIP":
        return pod_ips[0] if pod_ips else ""
    if path == "status.podIPs":
        return ",".join(pod_ips)
    return object_field_value(pod, path)


_LIMIT_DEFAULTS = ("cpu", "memory", "ephemeral-storage")


def with_allocatable_limits(container: dict, allocatable: Mapping[str, str]) -> dict:
    """MergeContainerResourceLimits: a container without a cpu/memory/storage limit gets the node's allocatable."""
    resources = dict(container.get("resources") or {})
    limits = dict(resources.get("limits") or {})
    for name in _LIMIT_DEFAULTS:
        if name not in limits and name in allocatable:
            limits[name] = allocatable[name]
    resources["limits"] = limits
    return {**container, "resources": resources}


def resource_field_value(selector: dict, container: dict) -> str:
    """ExtractContainerResourceValue: the ceiling of the quantity over the divisor."""
    resource = selector.get("resource") or ""
    divisor = parse_quantity(selector["divisor"]) if selector.get("divisor") not in (None, "", 0) else None
    if divisor is None or divisor.is_zero():
        divisor = parse_quantity("1")
    kind, _, name = resource.partition(".")
    if kind not in ("limits", "requests") or not (name in _LIMIT_DEFAULTS or name.startswith("hugepages-")):
        raise ConfigError(f"unsupported container resource : {resource}")
    raw = ((container.get("resources") or {}).get(kind) or {}).get(name)
    amount = parse_quantity(raw) if raw is not None else Quantity(0)
    if name == "cpu":
        return str(math.ceil(amount.milli_value() / divisor.milli_value()))
    return str(math.ceil(amount.int_value_ceil() / divisor.int_value_ceil()))


def find_container(pod: dict, name: str) -> dict:
    spec = pod.get("spec") or {}
    for c in (spec.get("containers") or []) + (spec.get("initContainers") or []):
        if c.get("name") == name:
            return c
    raise ConfigError(f"container {name} not found")


async def resource_field_for(pod: dict, container: dict | None, selector: dict, source: PodSource) -> str:
    """containerResourceRuntimeValue over the pod with limits defaulted to node allocatable."""
    if selector.get("containerName"):
        container = find_container(pod, selector["containerName"])
    assert container is not None
    allocatable = await source.node_allocatable()
    return resource_field_value(selector, with_allocatable_limits(container, allocatable))


# --- configMaps and secrets --------------------------------------------------------------------


def decode_secret_value(value: str) -> str:
    """Secret data is base64 in the API; the process sees the bytes (undecodable ones kept as is)."""
    return base64.b64decode(value).decode("utf-8", "surrogateescape")


class _Lookups:
    """The configMaps and secrets one container's env reads, each fetched once."""

    def __init__(self, source: PodSource, namespace: str):
        self.source, self.namespace = source, namespace
        self._cache: dict[tuple[str, str], dict | None] = {}

    async def get(self, kind: str, name: str) -> dict | None:
        key = (kind, name)
        if key not in self._cache:
            fetch = self.source.config_map if kind == "configmap" else self.source.secret
            self._cache[key] = await fetch(self.namespace, name)
        return self._cache[key]

    async def data(self, kind: str, name: str, optional: bool) -> dict[str, str] | None:
        obj = await self.get(kind, name)
        if obj is None:
            if optional:
                return None
            raise ConfigError(f'{kind} "{name}" not found')
        if kind == "secret":
            return {k: decode_secret_value(v) for k, v in (obj.get("data") or {}).items()}
        return dict(obj.get("data") or {})


async def container_env_with_warnings(pod: dict, container: dict, source: PodSource) -> ContainerEnv:
    meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
    namespace = meta.get("namespace") or "default"
    links = spec.get("enableServiceLinks")
    services = await service_env_map(source, namespace, True if links is None else bool(links))
    lookups = _Lookups(source, namespace)
    declared: dict[str, str] = {}
    warnings: list[tuple[str, str]] = []

    for env_from in container.get("envFrom") or []:
        for kind, ref_key, label in (("configmap", "configMapRef", "configMap"), ("secret", "secretRef", "secret")):
            ref = env_from.get(ref_key)
            if ref is None:
                continue
            name = ref.get("name") or ""
            data = await lookups.data(kind, name, bool(ref.get("optional")))
            if data is None:
                continue
            invalid = []
            for key in sorted(data):
                var = (env_from.get("prefix") or "") + key
                if is_env_var_name(var):  # upstream checks the strict C-identifier-like rule here
                    invalid.append(var)
                    continue
                declared[var] = data[key]
            if invalid:
                warnings.append((INVALID_ENV_NAMES_REASON,
                                 f"Keys [{', '.join(sorted(invalid))}] from the EnvFrom {label} {namespace}/{name} were "
                                 "skipped since they are considered invalid environment variable names."))

    mapping = mapping_for(declared, services)
    for var in container.get("env") or []:
        name, value, value_from = var["name"], var.get("value") or "", var.get("valueFrom")
        if value:
            value = expand(value, mapping)
        elif value_from:
            resolved = await _value_from(pod, container, value_from, lookups, source, namespace)
            if resolved is None:  # an optional reference that is absent: the variable is left out
                continue
            value = resolved
        declared.pop(name, None)  # a redeclared name moves to where env declares it
        declared[name] = value

    env = list(declared.items()) + [(k, v) for k, v in services.items() if k not in declared]
    return ContainerEnv(env, warnings)


async def _value_from(pod: dict, container: dict, value_from: dict, lookups: _Lookups, source: PodSource,
                      namespace: str) -> str | None:
    if value_from.get("fieldRef") is not None:
        return pod_field_value(pod, value_from["fieldRef"])
    if value_from.get("resourceFieldRef") is not None:
        return await resource_field_for(pod, container, value_from["resourceFieldRef"], source)
    for kind, ref_key, title in (("configmap", "configMapKeyRef", "ConfigMap"), ("secret", "secretKeyRef", "Secret")):
        ref = value_from.get(ref_key)
        if ref is None:
            continue
        optional = bool(ref.get("optional"))
        data = await lookups.data(kind, ref.get("name") or "", optional)
        if data is None:
            return None
        key = ref.get("key") or ""
        if key not in data:
            if optional:
                return None
            raise ConfigError(f"couldn't find key {key} in {title} {namespace}/{ref.get('name')}")
        return data[key]
    return ""


async def container_env(pod: dict, container: dict, source: PodSource) -> list[tuple[str, str]]:
    """The container's environment; see container_env_with_warnings for the skipped-key events."""
    return (await container_env_with_warnings(pod, container, source)).env
