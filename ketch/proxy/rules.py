"""The service proxy's rules: Services + EndpointSlices + the node's facts -> the text that
`iptables-restore --noflush` loads into the node's network namespace, in kube-proxy's iptables
mode shape (chain names, hashes, comments, probabilities as kube-proxy writes them, so that
`iptables-save` reads like a Kubernetes node).

Pure: no I/O, deterministic order (services sorted by their port name), so the proxier can skip
a restore when the text did not change.
"""
from __future__ import annotations

import base64
import functools
import hashlib
import socket
from dataclasses import dataclass, field, replace

MASQ_MARK = "0x4000/0x4000"
# Chains this proxy creates per service/endpoint; stale ones are deleted on the next sync.
PER_SERVICE_PREFIXES = ("KUBE-SVC-", "KUBE-SVL-", "KUBE-EXT-", "KUBE-SEP-", "KUBE-FW-")
NAT_BASE_CHAINS = ("KUBE-SERVICES", "KUBE-NODEPORTS", "KUBE-POSTROUTING", "KUBE-MARK-MASQ")
FILTER_BASE_CHAINS = ("KUBE-SERVICES", "KUBE-EXTERNAL-SERVICES", "KUBE-NODEPORTS", "KUBE-FORWARD")
DEFAULT_AFFINITY_TIMEOUT = 10800
SERVICE_NAME_LABEL = "kubernetes.io/service-name"

# Jumps from the built-in chains into ours (kube-proxy's iptablesJumpChains), as
# (table, built-in chain, comment, extra match args, target); ensured once with -C/-I.
JUMP_RULES = (
    ("filter", "INPUT", "kubernetes externally-visible service portals", ["-m", "conntrack", "--ctstate", "NEW"], "KUBE-EXTERNAL-SERVICES"),
    ("filter", "FORWARD", "kubernetes forwarding rules", [], "KUBE-FORWARD"),
    ("filter", "FORWARD", "kubernetes service portals", ["-m", "conntrack", "--ctstate", "NEW"], "KUBE-SERVICES"),
    ("filter", "FORWARD", "kubernetes externally-visible service portals", ["-m", "conntrack", "--ctstate", "NEW"], "KUBE-EXTERNAL-SERVICES"),
    ("filter", "OUTPUT", "kubernetes service portals", ["-m", "conntrack", "--ctstate", "NEW"], "KUBE-SERVICES"),
    ("nat", "PREROUTING", "kubernetes service portals", [], "KUBE-SERVICES"),
    ("nat", "OUTPUT", "kubernetes service portals", [], "KUBE-SERVICES"),
    ("nat", "POSTROUTING", "kubernetes postrouting rules", [], "KUBE-POSTROUTING"),
)


@dataclass(frozen=True)
class NodeFacts:
    node_name: str
    node_ips: tuple[str, ...] = ()     # NodePorts answer on these; none: on every local address
    cluster_cidr: str = ""             # pod CIDR of the cluster; traffic from outside is masqueraded


@dataclass(frozen=True)
class Endpoint:
    ip: str
    port: int
    node_name: str = ""

    def __str__(self) -> str:
        return f"{self.ip}:{self.port}"


@dataclass
class ServicePort:
    """One port of one Service, with what the rules need (kube-proxy's ServicePort info)."""
    namespace: str
    name: str
    port_name: str
    protocol: str                    # lower case: tcp, udp, sctp
    cluster_ip: str
    port: int
    node_port: int = 0
    external_ips: list[str] = field(default_factory=list)
    lb_ips: list[str] = field(default_factory=list)
    load_balancer: bool = False      # type LoadBalancer of the built-in ServiceLB (no loadBalancerClass)
    on_node_ips: bool = False        # ... served at the node IPs on `port` (the oldest one per port)
    created: str = ""                # the Service's creationTimestamp, which decides that
    external_local: bool = False     # externalTrafficPolicy: Local
    internal_local: bool = False     # internalTrafficPolicy: Local
    affinity_timeout: int = 0        # sessionAffinity ClientIP timeout; 0 = no affinity
    endpoints: list[Endpoint] = field(default_factory=list)   # ready ones only

    @property
    def key(self) -> str:            # ServicePortName.String(): "ns/name" or "ns/name:port"
        return f"{self.namespace}/{self.name}" + (f":{self.port_name}" if self.port_name else "")

    @property
    def has_external(self) -> bool:
        return bool(self.node_port or self.external_ips or self.lb_ips)


@functools.lru_cache(maxsize=65536)   # a sync hashes every chain name again; most are unchanged
def _hash(text: str) -> str:
    return base64.b32encode(hashlib.sha256(text.encode()).digest()).decode()[:16]


def service_chain(prefix: str, sp: ServicePort) -> str:
    """KUBE-SVC-/SVL-/EXT-/FW- + base32(sha256(servicePortName + protocol))[:16], as kube-proxy."""
    return prefix + _hash(sp.key + sp.protocol)


def endpoint_chain(sp: ServicePort, ep: Endpoint) -> str:
    return "KUBE-SEP-" + _hash(sp.key + sp.protocol + str(ep))


def probability(n: int) -> str:
    return "%0.10f" % (1.0 / n)      # kube-proxy's computeProbability


def _is_ipv4(ip: str) -> bool:
    try:
        socket.inet_pton(socket.AF_INET, ip)     # far cheaper than ipaddress, per endpoint per sync
        return True
    except (OSError, TypeError):
        return False


def _is_loopback(ip: str) -> bool:
    return ip.startswith("127.")


def _ready(ep: dict) -> bool:
    # EndpointConditions.ready: nil means ready (the API's documented meaning).
    return (ep.get("conditions") or {}).get("ready") is not False


def service_ports(services: list[dict], slices: list[dict], cache: dict | None = None) -> list[ServicePort]:
    """Flatten Services and their EndpointSlices into ServicePorts with ready endpoints, sorted.
    `cache` (kept by the caller between calls) holds each Service's ports by the resourceVersions
    of the Service and its slices: an endpoint change flattens one Service again, not all."""
    by_service: dict[tuple[str, str], list[dict]] = {}
    for sl in slices:
        meta = sl.get("metadata") or {}
        svc_name = (meta.get("labels") or {}).get(SERVICE_NAME_LABEL)
        if svc_name and sl.get("addressType", "IPv4") == "IPv4":
            by_service.setdefault((meta.get("namespace", ""), svc_name), []).append(sl)
    out: list[ServicePort] = []
    kept: dict = {}
    for svc in services:
        meta = svc.get("metadata") or {}
        ns, name = meta.get("namespace", ""), meta.get("name", "")
        own = by_service.get((ns, name), ())
        version = (meta.get("uid"), meta.get("resourceVersion"),
                   tuple(sorted(((s["metadata"].get("name"), s["metadata"].get("resourceVersion")) for s in own),
                                key=str)))
        hit = cache.get((ns, name)) if cache is not None and version[1] else None
        ports = hit[1] if hit is not None and hit[0] == version else _service_ports(svc, own)
        kept[(ns, name)] = (version, ports)
        out.extend(ports)
    if cache is not None:
        cache.clear()
        cache.update(kept)
    out = _claim_node_ports(out)
    out.sort(key=lambda sp: (sp.key, sp.protocol))
    return out


def _claim_node_ports(ports: list[ServicePort]) -> list[ServicePort]:
    """Which LoadBalancer serves each protocol/port at the node IPs: the oldest Service (k3s's
    ServiceLB leaves a later one pending on a taken port; here it keeps its own address and just
    does not get the node's). Changed ports are new objects: cached ones are never mutated."""
    taken: set[tuple[str, int]] = set()
    winners: set[int] = set()
    for sp in sorted((p for p in ports if p.load_balancer), key=lambda p: (p.created, p.key, p.protocol)):
        if (sp.protocol, sp.port) not in taken:
            taken.add((sp.protocol, sp.port))
            winners.add(id(sp))
    return [sp if sp.on_node_ips == (id(sp) in winners) else replace(sp, on_node_ips=id(sp) in winners)
            for sp in ports]


def _service_ports(svc: dict, slices) -> list[ServicePort]:
    out: list[ServicePort] = []
    meta, spec = svc.get("metadata") or {}, svc.get("spec") or {}
    cluster_ip = spec.get("clusterIP") or ""
    if spec.get("type") == "ExternalName" or not _is_ipv4(cluster_ip):
        return out               # headless (None) and ExternalName services get no rules
    ns, name = meta.get("namespace", ""), meta["name"]
    svc_type = spec.get("type", "ClusterIP")
    externally_reachable = svc_type in ("NodePort", "LoadBalancer")
    timeout = 0
    if spec.get("sessionAffinity") == "ClientIP":
        cfg = ((spec.get("sessionAffinityConfig") or {}).get("clientIP") or {})
        timeout = int(cfg.get("timeoutSeconds") or DEFAULT_AFFINITY_TIMEOUT)
    # Loopback ingress IPs (the built-in service load balancer's) are served by the agent's
    # host publisher on the host itself; inside the node they would mean nothing.
    lb_ips = [i["ip"] for i in ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or ()
              if i.get("ip") and _is_ipv4(i["ip"]) and not _is_loopback(i["ip"])] \
        if svc_type == "LoadBalancer" else []
    for p in spec.get("ports") or ():
        protocol = (p.get("protocol") or "TCP").lower()
        sp = ServicePort(
            namespace=ns, name=name, port_name=p.get("name") or "", protocol=protocol,
            cluster_ip=cluster_ip, port=int(p["port"]),
            node_port=int(p.get("nodePort") or 0) if externally_reachable else 0,
            external_ips=[ip for ip in spec.get("externalIPs") or () if _is_ipv4(ip)],
            # (only the built-in ServiceLB's LoadBalancers, without a loadBalancerClass, are served
            # at the node IPs, as k3s's ignores the others)
            lb_ips=lb_ips, load_balancer=svc_type == "LoadBalancer" and not spec.get("loadBalancerClass"),
            affinity_timeout=timeout,
            created=meta.get("creationTimestamp") or "",
            internal_local=spec.get("internalTrafficPolicy") == "Local")
        sp.external_local = spec.get("externalTrafficPolicy") == "Local" and (sp.has_external or
                                                                              svc_type == "LoadBalancer")
        sp.endpoints = _endpoints_for(sp, slices)
        out.append(sp)
    return out


def _endpoints_for(sp: ServicePort, slices) -> list[Endpoint]:
    """Ready endpoints of a service port: the slice port with the same name and protocol gives the
    number (the EndpointSlice controller resolved a named targetPort per pod)."""
    seen: dict[str, Endpoint] = {}
    for sl in slices:
        port = next((q.get("port") for q in sl.get("ports") or ()
                     if (q.get("name") or "") == sp.port_name
                     and (q.get("protocol") or "TCP").lower() == sp.protocol), None)
        if not port:
            continue
        for ep in sl.get("endpoints") or ():
            if not _ready(ep):
                continue
            for ip in ep.get("addresses") or ():
                if not _is_ipv4(ip):
                    continue
                e = Endpoint(ip, int(port), ep.get("nodeName") or "")
                seen.setdefault(str(e), e)
    return sorted(seen.values(), key=lambda e: (socket.inet_pton(socket.AF_INET, e.ip), e.port))


def _q(text: str) -> str:
    return f'"{text}"' if " " in text else text


class _Table:
    def __init__(self, name: str, base_chains: tuple[str, ...]):
        self.name = name
        self.chains: dict[str, None] = dict.fromkeys(base_chains)   # ordered set
        self.lines: list[tuple[str, str]] = []   # (chain, rule)

    def chain(self, name: str) -> None:
        self.chains.setdefault(name)

    def add(self, chain: str, *args: str) -> None:
        self.lines.append((chain, " ".join(("-A", chain) + args)))

    def render(self, delete: list[str]) -> str:
        head = [f"*{self.name}"] + [f":{c} - [0:0]" for c in [*self.chains, *delete]]
        return "\n".join(head + [line for _, line in self.lines] + [f"-X {c}" for c in delete] + ["COMMIT", ""])


def build_rules(services: list[dict], slices: list[dict], node: NodeFacts,
                existing_nat_chains: set[str] = frozenset()) -> str:
    """The iptables-restore input (filter then nat) for these Services on this node.
    `existing_nat_chains`: chains in the node's nat table now; stale per-service ones are deleted."""
    return render(service_ports(services, slices), node, existing_nat_chains).text


@dataclass
class Rendered:
    text: str                          # iptables-restore --noflush input
    fingerprints: dict[str, str]       # service port -> its own chains' text, for the next partial sync
    nat_chains: set[str]               # our nat chains once this is restored
    state: tuple                       # equal states: nothing to restore (stale chains go with a change)


def render(ports: list[ServicePort], node: NodeFacts, existing_nat_chains: set[str] = frozenset(),
           previous: dict[str, str] | None = None, cache: dict | None = None) -> Rendered:
    """All rules; with `previous` (the fingerprints of the rules in place), a partial sync as
    kube-proxy's: the shared chains are always rewritten, a service port's own chains (SVC, SVL,
    EXT, SEP) only when they changed; --noflush leaves the undeclared ones as they are.
    `cache` (kept by the caller between renders for one node) holds each service port's rendered
    rules, reused while the port is equal: an endpoint change re-renders one port, not all."""
    nat, flt = _Table("nat", NAT_BASE_CHAINS), _Table("filter", FILTER_BASE_CHAINS)
    _write_base(nat, flt)
    fingerprints: dict[str, str] = {}
    all_chains = set(NAT_BASE_CHAINS)
    rendered: dict = {None: node}        # rules are the node's: another node, another cache
    if cache is not None and cache.get(None) != node:
        cache.clear()
    for sp in ports:
        ident = f"{sp.key}/{sp.protocol}"
        hit = cache.get(ident) if cache else None
        if hit is not None and hit[0] == sp:
            _, lines, chains, filter_lines, fp = hit
        else:
            scratch, scratch_filter = _Table("nat", ()), _Table("filter", ())
            _write_service_port(scratch, scratch_filter, sp, node)
            lines, chains, filter_lines = scratch.lines, list(scratch.chains), scratch_filter.lines
            fp = "\n".join([*chains, *(line for chain, line in lines if chain not in NAT_BASE_CHAINS)])
        rendered[ident] = (sp, lines, chains, filter_lines, fp)
        flt.lines.extend(filter_lines)
        fingerprints[ident] = fp
        all_chains.update(chains)
        unchanged = previous is not None and previous.get(ident) == fp
        for chain, line in lines:
            if chain in NAT_BASE_CHAINS or not unchanged:
                nat.lines.append((chain, line))
        if not unchanged:
            for chain in chains:
                nat.chain(chain)
    if cache is not None:
        cache.clear()
        cache.update(rendered)
    # NodePorts last in KUBE-SERVICES (kube-proxy's note says why: it matches any local address).
    nodeports_comment = _q("kubernetes service nodeports; NOTE: this must be the last rule in this chain")
    if node.node_ips:
        for ip in node.node_ips:
            nat.add("KUBE-SERVICES", "-m", "comment", "--comment", nodeports_comment, "-d", ip, "-j", "KUBE-NODEPORTS")
    else:
        nat.add("KUBE-SERVICES", "-m", "comment", "--comment", nodeports_comment,
                "-m", "addrtype", "--dst-type", "LOCAL", "-j", "KUBE-NODEPORTS")
    stale = sorted(c for c in existing_nat_chains if c.startswith(PER_SERVICE_PREFIXES) and c not in all_chains)
    shared = flt.render([]) + "\n".join(line for chain, line in nat.lines if chain in NAT_BASE_CHAINS)
    return Rendered(text=flt.render([]) + nat.render(stale), fingerprints=fingerprints,
                    nat_chains=all_chains, state=(shared, tuple(sorted(fingerprints.items()))))


def _write_base(nat: _Table, flt: _Table) -> None:
    nat.add("KUBE-POSTROUTING", "-m", "mark", "!", "--mark", MASQ_MARK, "-j", "RETURN")
    nat.add("KUBE-POSTROUTING", "-j", "MARK", "--xor-mark", "0x4000")
    nat.add("KUBE-POSTROUTING", "-m", "comment", "--comment", _q("kubernetes service traffic requiring SNAT"),
            "-j", "MASQUERADE", "--random-fully")
    nat.add("KUBE-MARK-MASQ", "-j", "MARK", "--or-mark", "0x4000")
    flt.add("KUBE-FORWARD", "-m", "conntrack", "--ctstate", "INVALID", "-j", "DROP")
    flt.add("KUBE-FORWARD", "-m", "comment", "--comment", _q("kubernetes forwarding rules"),
            "-m", "mark", "--mark", MASQ_MARK, "-j", "ACCEPT")
    flt.add("KUBE-FORWARD", "-m", "comment", "--comment", _q("kubernetes forwarding conntrack rule"),
            "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT")


def _write_service_port(nat: _Table, flt: _Table, sp: ServicePort, node: NodeFacts) -> None:
    key, proto = sp.key, sp.protocol
    match_port = ("-m", proto, "-p", proto)
    local_eps = [e for e in sp.endpoints if e.node_name == node.node_name]
    svc_chain, svl_chain, ext_chain = (service_chain(p, sp) for p in ("KUBE-SVC-", "KUBE-SVL-", "KUBE-EXT-"))
    # Which endpoint set each kind of traffic uses (kube-proxy's internal/external policy).
    internal_eps = local_eps if sp.internal_local else sp.endpoints
    internal_chain = svl_chain if sp.internal_local else svc_chain
    external_eps = local_eps if sp.external_local else sp.endpoints
    # A LoadBalancer is also served on the service port at every node IP, as k3s' ServiceLB does
    # (it reports the node IPs as the ingress IPs, which kube-proxy then matches).
    lb_ips = sp.lb_ips + [ip for ip in node.node_ips if sp.on_node_ips and ip not in sp.lb_ips]
    has_external = sp.has_external or bool(lb_ips)
    # Cluster endpoints serve internal traffic unless its policy is Local, and external traffic
    # always: with externalTrafficPolicy Local too, for the short cut of pods and the node itself.
    uses_cluster = bool(sp.endpoints) and (not sp.internal_local or has_external)
    uses_local = bool(local_eps) and (sp.internal_local or sp.external_local)

    def no_endpoints(chain: str, eps_local: bool, *match: str) -> None:
        if not sp.endpoints:
            flt.add(chain, "-m", "comment", "--comment", _q(f"{key} has no endpoints"), *match, "-j", "REJECT")
        elif eps_local:
            flt.add(chain, "-m", "comment", "--comment", _q(f"{key} has no local endpoints"), *match, "-j", "DROP")

    # Cluster IP.
    cip_match = match_port + ("-d", sp.cluster_ip, "--dport", str(sp.port))
    if internal_eps:
        nat.add("KUBE-SERVICES", "-m", "comment", "--comment", _q(f"{key} cluster IP"), *cip_match, "-j", internal_chain)
    else:
        no_endpoints("KUBE-SERVICES", sp.internal_local, *cip_match)

    # External IPs, load-balancer IPs, node port: all through the EXT chain whenever the service has
    # endpoints at all; what the EXT chain does not short-cut or send on (externalTrafficPolicy
    # Local without local endpoints) the filter table then drops, as kube-proxy does.
    ext_matches = [("external IP", match_port + ("-d", ip, "--dport", str(sp.port))) for ip in sp.external_ips]
    ext_matches += [("loadbalancer IP", match_port + ("-d", ip, "--dport", str(sp.port))) for ip in lb_ips]
    for what, match in ext_matches:
        if sp.endpoints:
            nat.add("KUBE-SERVICES", "-m", "comment", "--comment", _q(f"{key} {what}"), *match, "-j", ext_chain)
        if not external_eps:
            no_endpoints("KUBE-EXTERNAL-SERVICES", sp.external_local, *match)
    if sp.node_port:
        if sp.endpoints:
            nat.add("KUBE-NODEPORTS", "-m", "comment", "--comment", _q(key), *match_port,
                    "--dport", str(sp.node_port), "-j", ext_chain)
        if not external_eps:
            no_endpoints("KUBE-EXTERNAL-SERVICES", sp.external_local, "-m", "addrtype", "--dst-type", "LOCAL",
                         *match_port, "--dport", str(sp.node_port))

    if has_external and sp.endpoints:
        nat.chain(ext_chain)
        if sp.external_local:
            if node.cluster_cidr:
                nat.add(ext_chain, "-m", "comment", "--comment", _q(f"pod traffic for {key} external destinations"),
                        "-s", node.cluster_cidr, "-j", svc_chain)
            nat.add(ext_chain, "-m", "comment", "--comment", _q(f"masquerade LOCAL traffic for {key} external destinations"),
                    "-m", "addrtype", "--src-type", "LOCAL", "-j", "KUBE-MARK-MASQ")
            nat.add(ext_chain, "-m", "comment", "--comment", _q(f"route LOCAL traffic for {key} external destinations"),
                    "-m", "addrtype", "--src-type", "LOCAL", "-j", svc_chain)
            if local_eps:
                nat.add(ext_chain, "-j", svl_chain)
        else:
            nat.add(ext_chain, "-m", "comment", "--comment", _q(f"masquerade traffic for {key} external destinations"),
                    "-j", "KUBE-MARK-MASQ")
            nat.add(ext_chain, "-j", svc_chain)

    # The SVC (all ready endpoints) and SVL (this node's) chains; masquerade traffic from outside
    # the cluster CIDR into the chain the cluster IP uses.
    for chain, eps, used in ((svc_chain, sp.endpoints, uses_cluster), (svl_chain, local_eps, uses_local)):
        if not used:
            continue
        nat.chain(chain)
        if chain == internal_chain and node.cluster_cidr:
            nat.add(chain, "-m", "comment", "--comment", _q(f"{key} cluster IP"), *cip_match,
                    "!", "-s", node.cluster_cidr, "-j", "KUBE-MARK-MASQ")
        _write_balancing(nat, chain, sp, eps)

    for ep in sp.endpoints:
        sep = endpoint_chain(sp, ep)
        nat.chain(sep)
        nat.add(sep, "-m", "comment", "--comment", _q(key), "-s", ep.ip, "-j", "KUBE-MARK-MASQ")   # hairpin
        affinity = ("-m", "recent", "--name", sep, "--set") if sp.affinity_timeout else ()
        nat.add(sep, "-m", "comment", "--comment", _q(key), *affinity, *match_port,
                "-j", "DNAT", "--to-destination", str(ep))


def _write_balancing(nat: _Table, chain: str, sp: ServicePort, eps: list[Endpoint]) -> None:
    """ClientIP affinity first (a client seen recently goes back to its endpoint), then a random
    pick: endpoint i of n with probability 1/(n-i), the last one unconditionally."""
    if sp.affinity_timeout:
        for ep in eps:
            sep = endpoint_chain(sp, ep)
            nat.add(chain, "-m", "comment", "--comment", _q(f"{sp.key} -> {ep}"), "-m", "recent", "--name", sep,
                    "--rcheck", "--seconds", str(sp.affinity_timeout), "--reap", "-j", sep)
    n = len(eps)
    for i, ep in enumerate(eps):
        stat = ("-m", "statistic", "--mode", "random", "--probability", probability(n - i)) if i < n - 1 else ()
        nat.add(chain, "-m", "comment", "--comment", _q(f"{sp.key} -> {ep}"), *stat, "-j", endpoint_chain(sp, ep))
