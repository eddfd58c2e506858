"""NetworkPolicy rules: policies + pods + namespaces + this node's name -> the filter-table text
that `iptables-restore --noflush` loads into the node's network namespace.

The shape is kube-router's: FORWARD jumps to one top chain; it sends each new connection from or
to a local pod that some policy isolates into that pod's chain (KUBE-POD-FW-<hash>, one per pod
and direction); the pod chain asks the chain of every policy selecting the pod
(KUBE-NWPLCY-<hash>, one per policy and direction) to mark the packet allowed, then RETURNs when
marked and DROPs when not. Chains only check, never ACCEPT, so a connection between two local
pods passes the source's egress check and then the destination's ingress check, and the rest of
FORWARD (kube-proxy's KUBE-FORWARD, CNI's rules) still runs afterwards.

Kubernetes semantics this encodes: policies are additive allow-lists; a pod is isolated for a
direction only when a policy with that policyType selects it; replies (established, related) are
always allowed; traffic from the node itself is never filtered (and never passes FORWARD anyway:
it is OUTPUT); a pod can always reach itself. Peers are pod IPs (no ipset here: the `ipset` tool
is not installed), so rules are one per peer address and port.

Pure and deterministic (everything sorted), so the enforcer skips a restore when nothing changed.
"""
from __future__ import annotations

import base64
import hashlib
import ipaddress
import logging
import socket
from dataclasses import dataclass, field

from ..api.labels import NOTHING, Selector, SelectorError, selector_from_label_selector

log = logging.getLogger("ketch.netpol")

TOP_CHAIN = "KUBE-NETPOL-FORWARD"
POLICY_PREFIX = "KUBE-NWPLCY-"
POD_PREFIX = "KUBE-POD-FW-"
OUR_PREFIXES = (POLICY_PREFIX, POD_PREFIX)
ALLOW_MARK = "0x10000/0x10000"     # kube-router's bit; kube-proxy uses 0x4000 and 0x8000
CLEAR_MARK = "0x0/0x10000"
JUMP_COMMENT = "kubernetes network policies"
# kube-proxy's chains in FORWARD that only REJECT/DROP (a service without endpoints). Ours goes
# right after them, so a client isolated for egress still gets "connection refused" from them,
# and before everything else: KUBE-FORWARD ACCEPTs masquerade-marked (NodePort) traffic.
PORTAL_CHAINS = frozenset({"KUBE-PROXY-FIREWALL", "KUBE-SERVICES", "KUBE-EXTERNAL-SERVICES"})
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
INGRESS, EGRESS = "Ingress", "Egress"


def chain_hash(text: str) -> str:
    return base64.b32encode(hashlib.sha256(text.encode()).digest()).decode()[:16]


def policy_chain(namespace: str, name: str, direction: str) -> str:
    return POLICY_PREFIX + chain_hash(f"{namespace}/{name}/{direction}")


def pod_chain(namespace: str, name: str, direction: str) -> str:
    return POD_PREFIX + chain_hash(f"{namespace}/{name}/{direction}")


@dataclass
class Pod:
    namespace: str
    name: str
    ip: str
    node_name: str
    labels: dict[str, str] = field(default_factory=dict)
    ports: dict[tuple[str, str], int] = field(default_factory=dict)   # (name, protocol) -> containerPort

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


def _ipv4(ip) -> bool:
    try:
        socket.inet_pton(socket.AF_INET, ip)
        return True
    except (OSError, TypeError):
        return False


def pod_info(obj: dict) -> Pod | None:
    """What the rules need of a pod; None for pods that take no part: no IPv4 address yet,
    finished (their address may be reused), or on the host network (policies do not apply to
    them, and their address is the node's)."""
    meta, spec, status = obj.get("metadata") or {}, obj.get("spec") or {}, obj.get("status") or {}
    if spec.get("hostNetwork") or status.get("phase") in ("Succeeded", "Failed"):
        return None
    ips = [i.get("ip") for i in status.get("podIPs") or () if isinstance(i, dict)] or [status.get("podIP")]
    ip = next((i for i in ips if _ipv4(i)), None)
    if ip is None:
        return None
    ports: dict[tuple[str, str], int] = {}
    for c in spec.get("containers") or ():
        for p in c.get("ports") or ():
            if p.get("name") and p.get("containerPort"):
                ports.setdefault((p["name"], (p.get("protocol") or "TCP").lower()), int(p["containerPort"]))
    return Pod(meta.get("namespace") or "default", meta.get("name") or "", ip, spec.get("nodeName") or "",
               dict(meta.get("labels") or {}), ports)


DNS_NAMESPACE, DNS_SERVICE, DNS_MANAGED_BY = "kube-system", "kube-dns", "agent.ketch.io"
DNS_POD_LABELS = {"k8s-app": "kube-dns"}   # CoreDNS's pods' label, as every "allow DNS" policy selects


def agent_dns_peers(slices: list[dict]) -> list[Pod]:
    """The node agents' DNS servers (kube-dns endpoints at the nodes' addresses, see
    ketch/agent/nodedns.py) as the CoreDNS pods they stand in for: in kube-system, labelled
    k8s-app=kube-dns, with the slice's named ports. So the usual egress policy allowing DNS
    (namespaceSelector kube-system + podSelector k8s-app=kube-dns) lets queries through to the
    servers on other nodes as well (the one on the pod's own node is always reachable)."""
    out = []
    for sl in slices:
        meta = sl.get("metadata") or {}
        labels = meta.get("labels") or {}
        if (meta.get("namespace"), labels.get("kubernetes.io/service-name"),
                labels.get("endpointslice.kubernetes.io/managed-by")) != (DNS_NAMESPACE, DNS_SERVICE, DNS_MANAGED_BY):
            continue
        ports = {(q["name"], (q.get("protocol") or "TCP").lower()): int(q["port"])
                 for q in sl.get("ports") or () if q.get("name") and q.get("port")}
        for ep in sl.get("endpoints") or ():
            for ip in ep.get("addresses") or ():
                if _ipv4(ip):   # no node name: never one of the local pods that get chains
                    out.append(Pod(DNS_NAMESPACE, f"dns@{ep.get('nodeName') or ip}", ip, "", dict(DNS_POD_LABELS), ports))
    return out


def _selector(ls) -> Selector:
    try:
        return selector_from_label_selector(ls)
    except SelectorError as e:      # validation keeps these out; never let one break every rule
        log.warning("network policy selector %r: %s", ls, e)
        return NOTHING


def policy_types(spec: dict) -> list[str]:
    """spec.policyTypes, or the API's default when a stored object lacks it."""
    return list(spec.get("policyTypes") or ([INGRESS, EGRESS] if spec.get("egress") else [INGRESS]))


def cidr_minus(cidr: str, excepts=()) -> list[str]:
    """An ipBlock as plain CIDRs: `cidr` with the `except` ranges cut out (no ipset `nomatch`
    here). IPv6 blocks give nothing: the rules are IPv4 only."""
    try:
        parts = [ipaddress.ip_network(cidr, strict=False)]
    except ValueError:
        return []
    if parts[0].version != 4:
        return []
    for text in excepts or ():
        try:
            ex = ipaddress.ip_network(text, strict=False)
        except ValueError:
            continue
        if ex.version != 4:
            continue
        kept = []
        for p in parts:
            if p.subnet_of(ex):
                continue
            kept.extend(p.address_exclude(ex) if ex.subnet_of(p) else [p])
        parts = kept
    return [str(p) for p in sorted(parts)]


@dataclass(frozen=True)
class PortMatch:
    protocol: str                 # tcp, udp, sctp
    port: int | None = None       # None: every port of the protocol
    end_port: int | None = None
    name: str | None = None       # a named port, resolved per pod

    def args(self, number: int | None = None) -> tuple[str, ...]:
        port = number if self.name else self.port
        if port is None:
            return ("-p", self.protocol)
        dport = f"{port}:{self.end_port}" if self.end_port and self.end_port > port and not self.name else str(port)
        return ("-p", self.protocol, "-m", self.protocol, "--dport", dport)


def port_match(p: dict) -> PortMatch:
    protocol = (p.get("protocol") or "TCP").lower()
    port = p.get("port")
    if isinstance(port, str) and not port.isdigit():
        return PortMatch(protocol, name=port)
    end = p.get("endPort")
    return PortMatch(protocol, int(port) if port is not None else None, int(end) if end else None)


# A resolved peer: ("pod", Pod) or ("cidr", "10.0.0.0/8").
Peer = tuple


class _Cluster:
    """Pods and namespaces indexed for selector evaluation."""

    def __init__(self, pods: list[Pod], namespaces: list[dict]):
        self.pods = sorted(pods, key=lambda p: (p.namespace, p.name))
        self.ns_labels: dict[str, dict] = {}
        for ns in namespaces:
            meta = ns.get("metadata") or {}
            if meta.get("name"):
                self.ns_labels[meta["name"]] = {NAMESPACE_NAME_LABEL: meta["name"], **(meta.get("labels") or {})}
        for p in self.pods:   # a pod seen before its namespace: the label every namespace has
            self.ns_labels.setdefault(p.namespace, {NAMESPACE_NAME_LABEL: p.namespace})

    def select(self, namespaces: set[str], selector: Selector) -> list[Pod]:
        return [p for p in self.pods if p.namespace in namespaces and selector.matches(p.labels)]

    def namespaces(self, selector: Selector) -> set[str]:
        return {n for n, labels in self.ns_labels.items() if selector.matches(labels)}

    def peers(self, peers: list[dict], policy_ns: str) -> list[Peer]:
        out: list[Peer] = []
        for peer in peers:
            if not isinstance(peer, dict):
                continue
            block = peer.get("ipBlock")
            if block:
                out.extend(("cidr", c) for c in cidr_minus(block.get("cidr") or "", block.get("except")))
                continue
            if "podSelector" not in peer and "namespaceSelector" not in peer:
                continue      # an empty peer selects nothing (validation rejects it)
            nss = self.namespaces(_selector(peer["namespaceSelector"])) if "namespaceSelector" in peer \
                else {policy_ns}
            pods_sel = _selector(peer["podSelector"]) if peer.get("podSelector") is not None else Selector()
            out.extend(("pod", p) for p in self.select(nss, pods_sel))
        return out


class _Filter:
    def __init__(self):
        self.chains: dict[str, None] = {}
        self.lines: list[str] = []

    def add(self, chain: str, *args: str) -> None:
        self.chains.setdefault(chain)
        self.lines.append(" ".join(("-A", chain) + args))


def _comment(text: str) -> tuple[str, str, str, str]:
    return ("-m", "comment", "--comment", f'"{text}"')


def _rule_matches(direction: str, peers: list[Peer] | None, port: PortMatch | None,
                  targets: list[Pod], cluster: _Cluster) -> list[tuple[str, ...]]:
    """The match arguments of one rule's peers x one of its ports (None: any peer / any port)."""
    addr = "-s" if direction == INGRESS else "-d"
    if port is None or not port.name:
        port_args = port.args() if port else ()
        if peers is None:
            return [port_args]
        return [(addr, p.ip if kind == "pod" else p, *port_args) for kind, p in peers]
    if direction == INGRESS:   # the destination pod's own port of that name
        out = []
        for t in targets:
            number = t.ports.get((port.name, port.protocol))
            if number is None:
                continue
            srcs = [()] if peers is None else [("-s", p.ip if kind == "pod" else p) for kind, p in peers]
            out.extend((*src, "-d", t.ip, *port.args(number)) for src in srcs)
        return out
    # Egress: the peer pod's port of that name; an address block has no named ports.
    candidates = cluster.pods if peers is None else [p for kind, p in peers if kind == "pod"]
    return [("-d", p.ip, *port.args(p.ports[(port.name, port.protocol)]))
            for p in candidates if (port.name, port.protocol) in p.ports]


def _write_policy(flt: _Filter, chain: str, policy: dict, direction: str, targets: list[Pod],
                  cluster: _Cluster) -> None:
    meta, spec = policy.get("metadata") or {}, policy.get("spec") or {}
    ns, name = meta.get("namespace") or "default", meta.get("name") or ""
    flt.chains.setdefault(chain)
    rules = spec.get("ingress" if direction == INGRESS else "egress") or ()
    for i, rule in enumerate(rules):
        if not isinstance(rule, dict):
            continue
        peer_field = rule.get("from" if direction == INGRESS else "to")
        try:
            peers = cluster.peers(peer_field, ns) if peer_field else None    # empty or missing: everyone
            ports = [port_match(p) for p in rule.get("ports") or () if isinstance(p, dict)] or [None]
        except (TypeError, ValueError, AttributeError) as e:
            # Validation keeps such rules out; should one get through, it allows nothing (the
            # pods stay isolated) and the other rules still apply.
            log.warning("network policy %s/%s: %s rule %d skipped: %s", ns, name, direction.lower(), i, e)
            continue
        comment = _comment(f"{ns}/{name} {direction.lower()} rule {i}")
        seen: dict[tuple, None] = {}
        for port in ports:
            for match in _rule_matches(direction, peers, port, targets, cluster):
                seen.setdefault(match)
        for match in seen:
            flt.add(chain, *comment, *match, "-j", "MARK", "--set-xmark", ALLOW_MARK)


@dataclass
class Rendered:
    text: str          # iptables-restore --noflush input for the filter table
    chains: set[str]   # our chains once it is restored
    state: str         # the rules alone: equal states, nothing to restore


def render(policies: list[dict], pods: list[dict], namespaces: list[dict], node_name: str,
           existing_chains: set[str] = frozenset(), forward: list[str] | None = None,
           extra_peers: list[Pod] = ()) -> Rendered:
    """The rules for the pods on `node_name`. `existing_chains`: the filter table's chains now
    (stale ones of ours are deleted); `forward`: its `-A FORWARD` lines now (our jump is put in
    place), None to leave FORWARD alone; `extra_peers`: more pods selectors may pick as peers
    (agent_dns_peers)."""
    infos = [p for p in (pod_info(o) for o in pods) if p is not None] + list(extra_peers)
    cluster = _Cluster(infos, namespaces)
    local = [p for p in cluster.pods if p.node_name == node_name]
    ordered = sorted((p for p in policies if isinstance(p.get("spec"), dict)),
                     key=lambda p: ((p.get("metadata") or {}).get("namespace") or "", (p.get("metadata") or {}).get("name") or ""))

    # Which policies isolate which local pods, per direction.
    isolating: dict[tuple[str, str], list[str]] = {}     # (pod key, direction) -> policy chains
    flt = _Filter()
    flt.chains.setdefault(TOP_CHAIN)
    policy_text = _Filter()
    for policy in ordered:
        meta, spec = policy.get("metadata") or {}, policy["spec"]
        ns, name = meta.get("namespace") or "default", meta.get("name") or ""
        selector = _selector(spec.get("podSelector") or {})
        selected = [p for p in local if p.namespace == ns and selector.matches(p.labels)]
        if not selected:
            continue
        for direction in (INGRESS, EGRESS):
            if direction not in policy_types(spec):
                continue
            chain = policy_chain(ns, name, direction)
            _write_policy(policy_text, chain, policy, direction, selected, cluster)
            for p in selected:
                isolating.setdefault((p.key, direction), []).append(chain)

    flt.add(TOP_CHAIN, *_comment("replies and related traffic"), "-m", "conntrack", "--ctstate",
            "RELATED,ESTABLISHED", "-j", "RETURN")
    flt.add(TOP_CHAIN, *_comment("traffic from the node"), "-m", "addrtype", "--src-type", "LOCAL", "-j", "RETURN")
    pod_text = _Filter()
    for p in local:
        for direction, addr, self_addr in ((EGRESS, "-s", "-d"), (INGRESS, "-d", "-s")):
            chains = isolating.get((p.key, direction))
            if not chains:
                continue
            pc = pod_chain(p.namespace, p.name, direction)
            what = direction.lower()
            flt.add(TOP_CHAIN, *_comment(f"{p.key} {what}"), addr, p.ip, "-j", pc)
            pod_text.add(pc, "-j", "MARK", "--set-xmark", CLEAR_MARK)
            pod_text.add(pc, *_comment(f"{p.key} reaches itself"), self_addr, p.ip, "-j", "RETURN")
            for chain in chains:
                pod_text.add(pc, "-j", chain)
            pod_text.add(pc, "-m", "mark", "--mark", ALLOW_MARK, "-j", "RETURN")
            pod_text.add(pc, *_comment(f"{p.key} {what} not allowed by any network policy"), "-j", "DROP")
    if isolating:
        flt.add(TOP_CHAIN, "-j", "MARK", "--set-xmark", CLEAR_MARK)

    chains = [*flt.chains, *pod_text.chains, *policy_text.chains]
    lines = [*flt.lines, *pod_text.lines, *policy_text.lines]
    ours = set(chains)
    stale = sorted(c for c in existing_chains if c.startswith(OUR_PREFIXES) and c not in ours)
    jump = jump_fix(forward) if forward is not None else []
    text = "\n".join(["*filter", *(f":{c} - [0:0]" for c in [*chains, *stale]), *lines, *jump,
                      *(f"-X {c}" for c in stale), "COMMIT", ""])
    return Rendered(text=text, chains=ours, state="\n".join(lines))


JUMP_ARGS = ("-m", "comment", "--comment", f'"{JUMP_COMMENT}"', "-j", TOP_CHAIN)


def _target(rule: str) -> str:
    parts = rule.rsplit(" -j ", 1)
    return parts[1].split()[0] if len(parts) == 2 else ""


def jump_fix(forward: list[str]) -> list[str]:
    """The restore lines that put FORWARD's jump to our chain in place: right after the leading
    kube-proxy portal jumps, before anything else. [] when it is there already."""
    rules = [r for r in forward if r.startswith("-A FORWARD ")]
    others = [r for r in rules if _target(r) != TOP_CHAIN]
    k = 0
    while k < len(others) and _target(others[k]) in PORTAL_CHAINS:
        k += 1
    ours = len(rules) - len(others)
    if ours == 1 and rules.index(next(r for r in rules if _target(r) == TOP_CHAIN)) == k:
        return []
    spec = " ".join(JUMP_ARGS)
    return [f"-D FORWARD {spec}"] * ours + [f"-I FORWARD {k + 1} {spec}"]
