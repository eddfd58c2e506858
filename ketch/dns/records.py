"""The records of the cluster zone, computed from Services, EndpointSlices and Namespaces as the
API returns them (plain dicts), answering as CoreDNS's kubernetes plugin does with
`pods insecure` and reverse zones `in-addr.arpa ip6.arpa` with fallthrough.

Names (zone `cluster.local`):
- `<svc>.<ns>.svc.<zone>`: the ClusterIPs (A/AAAA); for a headless Service one record per ready
  endpoint; for an ExternalName Service a CNAME to its externalName.
- `<endpoint>.<svc>.<ns>.svc.<zone>`: one endpoint, named by its hostname (StatefulSet pods) or
  its IP with dashes, as CoreDNS's endpointHostname.
- `_<port>._<proto>.<svc>.<ns>.svc.<zone>` SRV: priority 0, weight 100/n split over the n
  records, target the Service name (ClusterIP) or each endpoint name (headless), addresses in
  the additional section.
- `<a-b-c-d>.<ns>.pod.<zone>`: the IP the name spells, when the namespace exists (insecure mode).
- PTR for ClusterIPs, else for endpoint addresses.
- `<svc>.<ns>.<zone>`: the legacy kube-dns form the 2017 book uses. CoreDNS answers NXDOMAIN for
  it; we answer it as `<svc>.<ns>.svc.<zone>`. A namespace literally called `svc` or `pod` keeps
  the standard meaning (the modern form wins any ambiguity).

A name that exists with no record of the asked type is NODATA (NOERROR, empty answer), a name that
does not exist NXDOMAIN; both carry the zone's SOA in the authority section. Names this zone does
not own (outside it, and reverse names of addresses no Service or endpoint has) get `Result.
not_ours`, for the server to forward or refuse.
"""
from __future__ import annotations

import functools
import ipaddress
import time
from dataclasses import dataclass, field

from dnslib import AAAA, CNAME, NS, PTR, QTYPE, RCODE, RR, SOA, SRV, A, DNSLabel

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
DNS_SERVICE = ("kube-system", "kube-dns")  # answers for ns.dns.<zone>, the zone's NS
DEFAULT_TTL = 5  # CoreDNS kubernetes plugin's default `ttl`


@dataclass
class Result:
    rcode: int = RCODE.NOERROR
    answer: list[RR] = field(default_factory=list)
    authority: list[RR] = field(default_factory=list)
    additional: list[RR] = field(default_factory=list)
    not_ours: bool = False  # outside the zone: forward, or fail as CoreDNS with no next plugin


@dataclass(frozen=True)
class _Item:
    """One backend record as CoreDNS's msg.Service: an address or a CNAME target, a port, and the
    name SRV points at."""
    host: str
    port: int
    target: str  # fully qualified, with the trailing dot
    is_name: bool = False  # host is a name (ExternalName)


class NameError_(Exception):
    """The name does not exist (NXDOMAIN)."""


@functools.lru_cache(maxsize=16384)
def _ip(text: str):
    # Cached: the same few addresses are parsed for every answer naming them.
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


@functools.lru_cache(maxsize=16384)
def _address_rdata(host: str):
    """(record type, dnslib rdata) of an address; None for text that is not one."""
    addr = _ip(host)
    if addr is None:
        return None
    return (QTYPE.A, A(host)) if addr.version == 4 else (QTYPE.AAAA, AAAA(host))


def _dashed(ip: str) -> str:
    return ip.replace(".", "-").replace(":", "-")


def _ready(endpoint: dict) -> bool:
    # CoreDNS keeps an endpoint unless `ready` is explicitly false.
    return (endpoint.get("conditions") or {}).get("ready") is not False


def _reverse_ip(labels: list[str]) -> str | None:
    """The address a full in-addr.arpa / ip6.arpa name (labels without the suffix) stands for."""
    if len(labels) == 4 and all(lab.isdigit() for lab in labels):
        addr = _ip(".".join(reversed(labels)))
    elif len(labels) == 32 and all(len(lab) == 1 for lab in labels):
        nibbles = "".join(reversed(labels))
        addr = _ip(":".join(nibbles[i:i + 4] for i in range(0, 32, 4)))
    else:
        return None
    return str(addr) if addr else None


class ClusterRecords:
    def __init__(self, zone: str = "cluster.local", ttl: int = DEFAULT_TTL, track_namespaces: bool = True):
        self.zone = zone.strip(".").lower()
        self.ttl = ttl
        # Without a Namespace feed a namespace exists when some Service lives in it.
        self.track_namespaces = track_namespaces
        self.services: dict[tuple[str, str], dict] = {}
        self.slices: dict[tuple[str, str], dict] = {}
        self.slices_by_service: dict[tuple[str, str], set[tuple[str, str]]] = {}
        self.namespaces: set[str] = set()
        self._service_namespaces: dict[str, int] = {}  # namespace -> how many Services it has
        self.modified = int(time.time())  # the SOA serial, as CoreDNS's "last modified"
        self.generation = 0  # bumped on every change (the server's answer cache follows it)
        self._reverse: dict[str, list[str]] | None = None
        self._soa: tuple[int, RR] | None = None

    # --- the feed -------------------------------------------------------------------------------

    def _changed(self) -> None:
        self.modified = int(time.time())
        self.generation += 1
        self._reverse = None

    @staticmethod
    def _key(obj: dict) -> tuple[str, str]:
        meta = obj.get("metadata") or {}
        return meta.get("namespace", ""), meta.get("name", "")

    def set_service(self, svc: dict) -> None:
        key = self._key(svc)
        if key not in self.services:
            self._service_namespaces[key[0]] = self._service_namespaces.get(key[0], 0) + 1
        self.services[key] = svc
        self._changed()

    def remove_service(self, svc: dict) -> None:
        key = self._key(svc)
        if self.services.pop(key, None) is not None:
            left = self._service_namespaces.pop(key[0]) - 1
            if left:
                self._service_namespaces[key[0]] = left
        self._changed()

    def set_endpoint_slice(self, es: dict) -> None:
        key = self._key(es)
        self.remove_endpoint_slice(es, notify=False)
        service = ((es.get("metadata") or {}).get("labels") or {}).get(SERVICE_NAME_LABEL)
        if service:
            self.slices[key] = es
            self.slices_by_service.setdefault((key[0], service), set()).add(key)
        self._changed()

    def remove_endpoint_slice(self, es: dict, notify: bool = True) -> None:
        key = self._key(es)
        old = self.slices.pop(key, None)
        if old is not None:
            service = old["metadata"]["labels"][SERVICE_NAME_LABEL]
            keys = self.slices_by_service.get((key[0], service))
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self.slices_by_service[(key[0], service)]
        if notify:
            self._changed()

    def set_namespace(self, ns: dict) -> None:
        self.namespaces.add(ns["metadata"]["name"])
        self._changed()

    def remove_namespace(self, ns: dict) -> None:
        self.namespaces.discard(ns["metadata"]["name"])
        self._changed()

    # --- lookups --------------------------------------------------------------------------------

    def _namespace_exists(self, ns: str) -> bool:
        if self.track_namespaces:
            return ns in self.namespaces
        return ns in self._service_namespaces

    def _endpoints(self, ns: str, service: str):
        """(address, endpoint name, ports) of every ready endpoint of a Service."""
        for key in sorted(self.slices_by_service.get((ns, service), ())):
            es = self.slices[key]
            # A slice without ports still names its addresses (CoreDNS adds a port -1 sentinel).
            ports = es.get("ports") or [{"port": -1}]
            for ep in es.get("endpoints") or ():
                if not _ready(ep):
                    continue
                for addr in ep.get("addresses") or ():
                    yield addr, ep.get("hostname") or _dashed(addr), ports

    def _service_items(self, ns: str, name: str, endpoint: str, port: str, proto: str) -> list[_Item]:
        """CoreDNS's findServices: raises NameError_ when nothing matches."""
        svc = self.services.get((ns, name))
        if svc is None:
            raise NameError_
        spec = svc.get("spec") or {}
        base = f"{name}.{ns}.svc.{self.zone}."
        items: list[_Item] = []

        def port_matches(p: dict) -> bool:
            return ((not port or port == (p.get("name") or "").lower())
                    and (not proto or proto == (p.get("protocol") or "TCP").lower()))

        if spec.get("type") == "ExternalName":
            if endpoint or not spec.get("externalName"):
                raise NameError_
            return [_Item(spec["externalName"].rstrip(".") + ".", 0, base, is_name=True)]
        headless = spec.get("clusterIP") == "None"
        if headless or endpoint:
            for addr, ep_name, ports in self._endpoints(ns, name):
                if endpoint and endpoint != ep_name.lower():
                    continue
                for p in ports:
                    if port_matches(p):
                        items.append(_Item(addr, int(p.get("port", -1)), f"{ep_name}.{base}"))
        else:
            ips = spec.get("clusterIPs") or ([spec["clusterIP"]] if spec.get("clusterIP") else [])
            for p in spec.get("ports") or ():
                if port_matches(p):
                    items.extend(_Item(ip, int(p["port"]), base) for ip in ips)
        if not items:
            raise NameError_
        return items

    def _reverse_index(self) -> dict[str, list[str]]:
        """address -> PTR targets: a ClusterIP names its Service; any other address every endpoint
        name it has (CoreDNS's serviceRecordForIP)."""
        if self._reverse is None:
            index: dict[str, list[str]] = {}
            for (ns, name) in self.slices_by_service:
                for addr, ep_name, _ports in self._endpoints(ns, name):
                    names = index.setdefault(str(_ip(addr) or addr), [])
                    target = f"{ep_name}.{name}.{ns}.svc.{self.zone}."
                    if target not in names:
                        names.append(target)
            for (ns, name), svc in self.services.items():
                spec = svc.get("spec") or {}
                for ip in spec.get("clusterIPs") or ([spec["clusterIP"]] if spec.get("clusterIP") else []):
                    if _ip(ip):
                        index[str(_ip(ip))] = [f"{name}.{ns}.svc.{self.zone}."]
            self._reverse = index
        return self._reverse

    def soa(self) -> RR:
        # Built once per serial: making dnslib labels costs more than the rest of an NXDOMAIN.
        if self._soa is None or self._soa[0] != self.modified:
            zone = self.zone + "."
            self._soa = (self.modified, RR(zone, QTYPE.SOA, ttl=self.ttl, rdata=SOA(
                f"ns.dns.{zone}", f"hostmaster.{zone}", (self.modified & 0xFFFFFFFF, 7200, 1800, 86400, self.ttl))))
        return self._soa[1]

    def _dns_addresses(self) -> list[str]:
        svc = self.services.get(DNS_SERVICE)
        if not svc:
            return []
        spec = svc.get("spec") or {}
        return [ip for ip in spec.get("clusterIPs") or [spec.get("clusterIP")] if ip and _ip(ip)]

    def _address_rrs(self, owner, addresses, qtype: int) -> list[RR]:
        out, seen = [], set()
        for host in addresses:
            typed = _address_rdata(host)
            if typed is None or typed[0] != qtype or host in seen:
                continue
            out.append(RR(owner, qtype, ttl=self.ttl, rdata=typed[1]))
            seen.add(host)
        return out

    def resolve(self, qname, qtype: int) -> Result:
        """The answer for one question; `qname` as asked (its case is kept in the answer)."""
        owner = qname if isinstance(qname, DNSLabel) else DNSLabel(qname)
        try:  # the labels joined, as str() spells them when none needs escaping (the usual case)
            name = b".".join(owner.label).decode("ascii").lower()
            if name.count(".") != len(owner.label) - 1 or "\\" in name:
                raise ValueError
        except ValueError:
            name = str(owner).rstrip(".").lower()
        if name.endswith(".in-addr.arpa") or name.endswith(".ip6.arpa"):
            return self._resolve_reverse(owner, name, qtype)
        if name != self.zone and not name.endswith("." + self.zone):
            return Result(not_ours=True)
        try:
            answer, additional = self._records(owner, name[:-len(self.zone)].rstrip("."), qtype)
        except NameError_:
            return Result(RCODE.NXDOMAIN, authority=[self.soa()])
        if not answer:
            return Result(RCODE.NOERROR, authority=[self.soa()])
        return Result(RCODE.NOERROR, answer=answer, additional=additional)

    def _resolve_reverse(self, owner, name: str, qtype: int) -> Result:
        labels = name.split(".")[:-2]
        ip = _reverse_ip(labels)
        names = self._reverse_index().get(ip, []) if ip else []
        if not names or qtype != QTYPE.PTR:
            # CoreDNS: errNoItems, and `fallthrough in-addr.arpa ip6.arpa` hands the name on.
            return Result(not_ours=True)
        return Result(answer=[RR(owner, QTYPE.PTR, ttl=self.ttl, rdata=PTR(n)) for n in names])

    def _records(self, owner, base: str, qtype: int) -> tuple[list[RR], list[RR]]:
        """(answer, additional) for a name under the zone, `base` the labels left of it; raises
        NameError_ for NXDOMAIN; an empty answer is NODATA."""
        zone = self.zone + "."
        if base == "":
            if qtype == QTYPE.SOA:
                return [self.soa()], []
            if qtype == QTYPE.NS:
                ns_name = f"ns.dns.{zone}"
                return ([RR(owner, QTYPE.NS, ttl=self.ttl, rdata=NS(ns_name))],
                        self._address_rrs(ns_name, self._dns_addresses(), QTYPE.A)
                        + self._address_rrs(ns_name, self._dns_addresses(), QTYPE.AAAA))
            return [], []
        if base == "ns.dns":
            return self._address_rrs(owner, self._dns_addresses(), qtype), []
        segs = base.split(".")
        kind = segs[-1]
        if kind not in ("svc", "pod"):
            if len(segs) != 2:
                raise NameError_
            segs, kind = segs + ["svc"], "svc"  # the legacy <svc>.<ns>.<zone>
        segs = segs[:-1]
        if not segs:
            return [], []  # svc.<zone>, pod.<zone>: NODATA
        ns = segs[-1]
        if not self._namespace_exists(ns):
            raise NameError_
        if len(segs) == 1:
            return [], []  # <ns>.svc.<zone>: NODATA
        service, rest = segs[-2], segs[:-2]
        endpoint = port = proto = ""
        if len(rest) == 1:
            endpoint = rest[0]
        elif len(rest) == 2:
            port, proto = rest[0].removeprefix("_"), rest[1].removeprefix("_")
        elif rest:
            raise NameError_
        if kind == "pod":
            ip = service.replace("-", ".") if service.count("-") == 3 and "--" not in service else service.replace("-", ":")
            if _ip(ip) is None:
                raise NameError_
            return self._address_rrs(owner, [str(_ip(ip))], qtype), []
        items = self._service_items(ns, service, endpoint, port, proto)
        if items[0].is_name:
            if qtype == QTYPE.SRV:  # CoreDNS: an SRV at port 0 pointing at the external name
                return [RR(owner, QTYPE.SRV, ttl=self.ttl, rdata=SRV(0, 100, 0, items[0].host))], []
            return self._cname(owner, items[0].host, qtype), []
        if qtype in (QTYPE.A, QTYPE.AAAA):
            return self._address_rrs(owner, [i.host for i in items], qtype), []
        if qtype == QTYPE.SRV:
            return self._srv(owner, items)
        return [], []

    def _cname(self, owner, target: str, qtype: int) -> list[RR]:
        if qtype not in (QTYPE.A, QTYPE.AAAA, QTYPE.CNAME):
            return []
        out = [RR(owner, QTYPE.CNAME, ttl=self.ttl, rdata=CNAME(target))]
        target_name = target.rstrip(".").lower()
        if qtype != QTYPE.CNAME and target_name.endswith("." + self.zone):
            # A target in our zone is chased here; one outside needs an upstream, which CoreDNS
            # without `forward` does not have: the CNAME alone is the answer.
            try:
                out += self._records(target, target_name[:-len(self.zone) - 1], qtype)[0]
            except NameError_:
                pass
        return out

    def _srv(self, owner, items: list[_Item]) -> tuple[list[RR], list[RR]]:
        # CoreDNS: every record weighs 100, scaled so a priority's weights add up to ~100 (at
        # least 1), counting the port-less endpoints it then leaves out.
        weight = max(1, int(100.0 / (100 * len(items)) * 100))
        items = [i for i in items if i.port >= 0]
        answer, extra, seen, seen_extra = [], [], set(), set()
        for item in items:
            if (item.target, item.port) not in seen:
                seen.add((item.target, item.port))
                answer.append(RR(owner, QTYPE.SRV, ttl=self.ttl,
                                 rdata=SRV(priority=0, weight=weight, port=item.port, target=item.target)))
            if (item.target, item.host) not in seen_extra:
                seen_extra.add((item.target, item.host))
                version = _ip(item.host).version
                extra += self._address_rrs(item.target, [item.host], QTYPE.A if version == 4 else QTYPE.AAAA)
        return answer, extra
