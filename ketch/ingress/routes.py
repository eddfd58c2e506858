"""The ingress routing table as pure functions of Ingresses, IngressClasses, Services and
EndpointSlices (networking.k8s.io/v1 semantics), so every rule is unit-tested without a socket.

- Which Ingresses are ours: `serves()`.
- Hosts: exact, or `*.foo.com` matching exactly one more DNS label; a rule without host matches all.
- Paths: Exact (whole path, case-sensitive), Prefix (element-wise on `/`), ImplementationSpecific
  (as Prefix). Among the rules whose host matches, the most specific host wins first (exact, then
  wildcard, then host-less), then the longest path, Exact before Prefix; on a tie, the oldest
  Ingress (ingress-nginx's conflict rule). A request no rule matches goes to the oldest served
  Ingress's spec.defaultBackend, else a 404 from the built-in default backend.
- Backends: a Service port by number or by name, resolved against the Service's ports, then to the
  EndpointSlice port of the same name; only ready endpoints (ready unset counts as ready).
"""
from __future__ import annotations

from dataclasses import dataclass, field

CLASS_ANNOTATION = "kubernetes.io/ingress.class"
DEFAULT_CLASS_ANNOTATION = "ingressclass.kubernetes.io/is-default-class"
SERVICE_NAME_LABEL = "kubernetes.io/service-name"

EXACT, PREFIX = 0, 1   # Exact sorts before Prefix on equal length


# ---- which Ingresses are served --------------------------------------------------------------

def is_default_class(ingress_class: dict) -> bool:
    annotations = ingress_class.get("metadata", {}).get("annotations") or {}
    return annotations.get(DEFAULT_CLASS_ANNOTATION) == "true"


def serves(ingress: dict, class_name: str, classes: list[dict]) -> bool:
    """Whether the controller of IngressClass `class_name` serves this Ingress: named by
    spec.ingressClassName or the legacy annotation; a class-less one when our class is the
    default, or when no IngressClass exists at all (generous, so the book's class-less example
    works on a cluster that has none)."""
    spec = ingress.get("spec") or {}
    named = spec.get("ingressClassName")
    if named:
        return named == class_name
    legacy = (ingress.get("metadata", {}).get("annotations") or {}).get(CLASS_ANNOTATION)
    if legacy:
        return legacy == class_name
    if not classes:
        return True
    return any(c.get("metadata", {}).get("name") == class_name and is_default_class(c) for c in classes)


# ---- hosts and paths -------------------------------------------------------------------------

def normalize_host(host: str) -> str:
    """The Host header without port and trailing dot, lowercased ("[::1]:80" -> "[::1]")."""
    host = host.strip().lower()
    if host.startswith("["):
        end = host.find("]")
        return host[:end + 1] if end >= 0 else host
    if ":" in host:
        host = host.rsplit(":", 1)[0]
    return host.rstrip(".")


def host_matches(rule_host: str, host: str) -> bool:
    """Ingress host matching: exact, or a wildcard `*.foo.com` for exactly one label more."""
    if not rule_host:
        return True
    rule_host = rule_host.lower()
    if rule_host.startswith("*."):
        suffix = rule_host[1:]   # ".foo.com"
        return host.endswith(suffix) and len(host) > len(suffix) and "." not in host[:-len(suffix)]
    return host == rule_host


def host_rank(rule_host: str) -> int:
    return 2 if not rule_host else 1 if rule_host.startswith("*.") else 0


def path_matches(kind: int, rule_path: str, path: str) -> bool:
    """Exact: the same string. Prefix: rule_path's `/`-separated elements are a prefix of the
    path's (`/foo` matches `/foo`, `/foo/`, `/foo/bar`, not `/foobar`); trailing slashes ignored."""
    if kind == EXACT:
        return path == rule_path
    prefix = rule_path.rstrip("/")
    if not prefix:
        return True
    return path == prefix or path.startswith(prefix) and path[len(prefix)] == "/"


# ---- backends --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Backend:
    """A Service port named by an Ingress: `port` is a number or a port name."""
    namespace: str
    service: str
    port: int | str
    key: str = field(init=False, compare=False, repr=False)   # "ns/service:port", looked up per request

    def __post_init__(self):
        object.__setattr__(self, "key", f"{self.namespace}/{self.service}:{self.port}")


def backend_of(namespace: str, backend: dict | None) -> Backend | None:
    if not isinstance(backend, dict):
        return None
    service = backend.get("service")
    if not isinstance(service, dict) or not service.get("name"):
        return None   # a resource backend: not something a proxy can dial
    port = service.get("port") or {}
    number = port.get("number")
    ref: int | str = number if isinstance(number, int) and number else port.get("name") or 0
    return Backend(namespace, service["name"], ref)


def resolve_endpoints(backend: Backend, services: dict[str, dict], slices_by_service: dict[str, list[dict]]
                      ) -> list[tuple[str, int]]:
    """The ready (ip, port) pairs behind a backend: the Service port it names (by number or
    name), then the EndpointSlices' port with that port's name. [] when anything is missing."""
    svc = services.get(f"{backend.namespace}/{backend.service}")
    if svc is None:
        return []
    port_name = None
    for p in (svc.get("spec") or {}).get("ports") or []:
        if p.get("protocol", "TCP") != "TCP":
            continue
        if (p.get("port") == backend.port) if isinstance(backend.port, int) else (p.get("name") == backend.port):
            port_name = p.get("name") or ""
            break
    if port_name is None:
        return []
    out: list[tuple[str, int]] = []
    seen: set[tuple[str, int]] = set()
    for es in slices_by_service.get(f"{backend.namespace}/{backend.service}", ()):
        if es.get("addressType", "IPv4") not in ("IPv4", "IPv6"):
            continue
        number = next((p.get("port") for p in es.get("ports") or []
                       if (p.get("name") or "") == port_name and p.get("protocol", "TCP") == "TCP"), None)
        if not number:
            continue
        for ep in es.get("endpoints") or []:
            if (ep.get("conditions") or {}).get("ready") is False:
                continue
            for ip in ep.get("addresses") or []:
                if (ip, number) not in seen:
                    seen.add((ip, number))
                    out.append((ip, number))
    out.sort()   # a stable order, so round robin does not jump when a slice is rewritten
    return out


# ---- the table -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Route:
    host: str            # "" (any), "foo.com" or "*.foo.com"
    kind: int            # EXACT or PREFIX
    path: str
    backend: Backend | None
    ingress: str         # namespace/name, for logs and tests

    @property
    def sort_key(self) -> tuple:
        return (host_rank(self.host), -len(self.path.rstrip("/") if self.kind == PREFIX else self.path), self.kind)


@dataclass
class RouteTable:
    routes: list[Route] = field(default_factory=list)      # in precedence order
    default: Backend | None = None
    default_ingress: str = ""
    # host -> (kind, path to compare, route) of the routes that can match it, filled lazily
    # (hosts repeat; the list scan does not)
    _by_host: dict[str, list[tuple[int, str, Route]]] = field(default_factory=dict)

    def candidates(self, host: str) -> list[tuple[int, str, Route]]:
        got = self._by_host.get(host)
        if got is None:
            got = [(r.kind, r.path if r.kind == EXACT else r.path.rstrip("/"), r)
                   for r in self.routes if host_matches(r.host, host)]
            if len(self._by_host) > 4096:
                self._by_host.clear()   # bounded: Host headers come from clients
            self._by_host[host] = got
        return got

    def match(self, host: str, path: str) -> Route | None:
        """The route for a request (host already normalized; path without query): path_matches
        inlined, as this runs for every request."""
        got = self._by_host.get(host)
        if got is None:
            got = self.candidates(host)
        for kind, p, r in got:
            if kind == EXACT:
                if path == p:
                    return r
            elif not p or path == p or (path.startswith(p) and path[len(p)] == "/"):
                return r
        return None


def _age(ingress: dict) -> tuple[str, str, str]:
    meta = ingress.get("metadata", {})
    return (meta.get("creationTimestamp") or "", meta.get("namespace") or "", meta.get("name") or "")


def build_table(ingresses: list[dict]) -> RouteTable:
    """The routing table of the Ingresses served (already filtered by `serves`)."""
    table = RouteTable()
    seen: set[tuple[str, int, str]] = set()
    for ing in sorted(ingresses, key=_age):
        meta, spec = ing.get("metadata", {}), ing.get("spec") or {}
        ns = meta.get("namespace") or "default"
        key = f"{ns}/{meta.get('name')}"
        if table.default is None and spec.get("defaultBackend"):
            table.default = backend_of(ns, spec["defaultBackend"])
            table.default_ingress = key if table.default else ""
        for rule in spec.get("rules") or []:
            host = (rule.get("host") or "").lower()
            for p in ((rule.get("http") or {}).get("paths") or []):
                kind = EXACT if p.get("pathType") == "Exact" else PREFIX
                path = p.get("path") or "/"
                ident = (host, kind, path.rstrip("/") if kind == PREFIX else path)
                if ident in seen:
                    continue   # the same host and path in a younger Ingress: the oldest wins
                seen.add(ident)
                table.routes.append(Route(host, kind, path, backend_of(ns, p.get("backend")), key))
    table.routes.sort(key=lambda r: r.sort_key)   # stable: ties keep the oldest first
    return table


def tls_hosts(ingresses: list[dict]) -> list[tuple[str, str]]:
    """(host, "namespace/secretName") for every spec.tls entry, oldest Ingress first; an entry
    without hosts covers its Ingress's rule hosts."""
    out: list[tuple[str, str]] = []
    for ing in sorted(ingresses, key=_age):
        meta, spec = ing.get("metadata", {}), ing.get("spec") or {}
        ns = meta.get("namespace") or "default"
        rule_hosts = [r.get("host") for r in spec.get("rules") or [] if r.get("host")]
        for entry in spec.get("tls") or []:
            secret = entry.get("secretName")
            if not secret:
                continue
            for host in entry.get("hosts") or rule_hosts:
                out.append((host.lower(), f"{ns}/{secret}"))
    return out
