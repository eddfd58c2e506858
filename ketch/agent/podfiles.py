"""The files a pod's sandbox gets before its containers start: /etc/hosts, /etc/resolv.conf and
/etc/hostname, with the kubelet's text (pkg/kubelet/kubelet_pods.go ensureHostsFile,
pkg/kubelet/network/dns GetPodDNS) and containerd's resolv.conf layout.

They live in the pod's directory (`<root>/pods/<uid>/etc-hosts`, as the kubelet names it, plus
`resolv.conf` and `hostname`) and the runtime bind-mounts them into every container.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from ..api.names import is_dns1123_label
from .runtime.api import DNSConfig

MANAGED_HOSTS_HEADER = "# Kubernetes-managed hosts file.\n"
MANAGED_HOSTS_HEADER_HOST_NETWORK = "# Kubernetes-managed hosts file (host network).\n"
HOSTNAME_MAX_LEN = 63
FQDN_MAX_LEN = 64
MAX_DNS_NAMESERVERS = 3
MAX_DNS_SEARCH_PATHS = 32
MAX_DNS_SEARCH_LIST_CHARS = 2048
MAX_DNS_SEARCH_LENGTH = 253  # one search domain longer than a DNS subdomain aborts some resolvers
DEFAULT_DNS_OPTIONS = ["ndots:5"]
DNS_CONFIG_FORMING = "DNSConfigForming"
MISSING_CLUSTER_DNS = "MissingClusterDNS"


class PodFilesError(Exception):
    """The pod's hostname or domain cannot be formed; str() is the kubelet's message."""


@dataclass
class PodFiles:
    hosts: Path
    resolv_conf: Path
    hostname: Path
    dns: DNSConfig
    hostname_value: str
    warnings: list[tuple[str, str]] = field(default_factory=list)  # (event reason, message) for the pod


# --- hostname ------------------------------------------------------------------------------------


def _truncate_hostname(hostname: str) -> str:
    """truncatePodHostnameIfNeeded: at most 63 characters, not ending in '-' or '.'."""
    if len(hostname) <= HOSTNAME_MAX_LEN:
        return hostname
    return hostname[:HOSTNAME_MAX_LEN].rstrip("-.")


def pod_hostname(pod: dict) -> str:
    """spec.hostname, else the pod's name, truncated as upstream."""
    spec = pod.get("spec") or {}
    return _truncate_hostname(spec.get("hostname") or pod["metadata"]["name"])


def pod_hostname_and_domain(pod: dict, cluster_domain: str) -> tuple[str, str]:
    """GeneratePodHostNameAndDomain: (hostname, `<subdomain>.<ns>.svc.<domain>` or "")."""
    spec, meta = pod.get("spec") or {}, pod["metadata"]
    if spec.get("hostname"):
        errs = is_dns1123_label(spec["hostname"])
        if errs:
            raise PodFilesError(f'pod Hostname "{spec["hostname"]}" is not a valid DNS label: {";".join(errs)}')
    hostname = pod_hostname(pod)
    if not hostname:
        raise PodFilesError(f'hostname for pod "{meta["name"]}" was invalid: "{spec.get("hostname") or meta["name"]}"')
    domain = ""
    if spec.get("subdomain"):
        errs = is_dns1123_label(spec["subdomain"])
        if errs:
            raise PodFilesError(f'pod Subdomain "{spec["subdomain"]}" is not a valid DNS label: {";".join(errs)}')
        domain = f"{spec['subdomain']}.{meta.get('namespace') or 'default'}.svc.{cluster_domain}"
    return hostname, domain


def sandbox_hostname(pod: dict, cluster_domain: str, node_hostname: str = "") -> str:
    """The UTS hostname: the node's for hostNetwork pods, the FQDN with setHostnameAsFQDN."""
    spec = pod.get("spec") or {}
    if spec.get("hostNetwork"):
        return node_hostname or os.uname().nodename
    hostname, domain = pod_hostname_and_domain(pod, cluster_domain)
    if spec.get("setHostnameAsFQDN") and domain:
        fqdn = f"{hostname}.{domain}"
        if len(fqdn) > FQDN_MAX_LEN:
            raise PodFilesError(
                f"failed to construct FQDN from pod hostname and cluster domain, FQDN {fqdn} is too long "
                f"({FQDN_MAX_LEN} characters is the max, {len(fqdn)} characters requested)")
        return fqdn
    return hostname


# --- /etc/hosts ----------------------------------------------------------------------------------


def _host_alias_entries(pod: dict) -> str:
    aliases = (pod.get("spec") or {}).get("hostAliases") or []
    if not aliases:
        return ""
    lines = ["", "# Entries added by HostAliases."]
    lines += [f"{a.get('ip', '')}\t" + "\t".join(a.get("hostnames") or []) for a in aliases]
    return "\n".join(lines) + "\n"


def hosts_file_content(pod: dict, pod_ips: list[str], cluster_domain: str, node_hosts_file: str = "/etc/hosts") -> str:
    """managedHostsFileContent (or the node's file under a header for hostNetwork pods)."""
    if (pod.get("spec") or {}).get("hostNetwork"):
        return MANAGED_HOSTS_HEADER_HOST_NETWORK + Path(node_hosts_file).read_text() + _host_alias_entries(pod)
    hostname, domain = pod_hostname_and_domain(pod, cluster_domain)
    text = (MANAGED_HOSTS_HEADER
            + "127.0.0.1\tlocalhost\n"
            + "::1\tlocalhost ip6-localhost ip6-loopback\n"
            + "fe00::0\tip6-localnet\n"
            + "fe00::0\tip6-mcastprefix\n"
            + "fe00::1\tip6-allnodes\n"
            + "fe00::2\tip6-allrouters\n")
    for ip in pod_ips:
        text += f"{ip}\t{hostname}.{domain}\t{hostname}\n" if domain else f"{ip}\t{hostname}\n"
    return text + _host_alias_entries(pod)


# --- DNS -----------------------------------------------------------------------------------------


def _merge_options(options: dict[str, str], more: list[str]) -> None:
    for op in more:
        name, sep, value = op.partition(":")
        options[name] = value if sep else ""


def _options_list(options: dict[str, str]) -> list[str]:
    return [f"{k}:{v}" if v else k for k, v in options.items()]


def parse_resolv_conf(text: str) -> DNSConfig:
    """parseResolvConf: nameservers accumulate; the last `search` and merged `options` win."""
    servers: list[str] = []
    searches: list[str] = []
    options: dict[str, str] = {}
    for line in text.split("\n"):
        line = line.strip()
        if line.startswith("#"):
            continue
        fields = line.split()
        if not fields:
            continue
        if fields[0] == "nameserver" and len(fields) >= 2:
            servers.append(fields[1])
        elif fields[0] == "search":
            searches = [s.removesuffix(".") for s in fields[1:] if s != "."]
        elif fields[0] == "options":
            _merge_options(options, fields[1:])
    return DNSConfig(servers=servers, searches=searches, options=_options_list(options))


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _dns_type(pod: dict) -> str:
    spec = pod.get("spec") or {}
    policy = spec.get("dnsPolicy") or "ClusterFirst"
    if policy == "None":
        return "none"
    if policy == "ClusterFirstWithHostNet":
        return "cluster"
    if policy == "ClusterFirst" and not spec.get("hostNetwork"):
        return "cluster"
    if policy in ("ClusterFirst", "Default"):
        return "host"
    return "cluster"


def pod_dns_config(pod: dict, cluster_dns: list[str], cluster_domain: str,
                   node_resolv_conf: str | None = "/etc/resolv.conf",
                   node_ips: list[str] | None = None) -> tuple[DNSConfig, list[tuple[str, str]]]:
    """GetPodDNS: the DNS settings of the pod's sandbox and the events the kubelet would record."""
    warnings: list[tuple[str, str]] = []
    host = parse_resolv_conf(Path(node_resolv_conf).read_text()) if node_resolv_conf else DNSConfig()
    dns_type = _dns_type(pod)
    if dns_type == "none":
        dns = DNSConfig()
    elif dns_type == "cluster" and cluster_dns:
        searches = host.searches
        if cluster_domain:
            ns = pod["metadata"].get("namespace") or "default"
            searches = _unique([f"{ns}.svc.{cluster_domain}", f"svc.{cluster_domain}", cluster_domain] + host.searches)
        dns = DNSConfig(servers=list(cluster_dns), searches=searches, options=list(DEFAULT_DNS_OPTIONS))
    else:
        if dns_type == "cluster":
            warnings.append((MISSING_CLUSTER_DNS,
                             f'pod: "{pod["metadata"]["name"]}_{pod["metadata"].get("namespace") or "default"}'
                             f'({pod["metadata"].get("uid", "")})". kubelet does not have ClusterDNS IP configured and '
                             'cannot create Pod using "ClusterFirst" policy. Falling back to "Default" policy.'))
        dns = host
        if not node_resolv_conf:
            # No resolv.conf for the kubelet: the local resolver, lookups effectively disabled.
            servers = ["::1" if ":" in ip else "127.0.0.1" for ip in node_ips or []] or ["127.0.0.1"]
            dns = DNSConfig(servers=servers, searches=["."], options=[])
    pod_dns = (pod.get("spec") or {}).get("dnsConfig")
    if pod_dns:
        options: dict[str, str] = {}
        _merge_options(options, dns.options)
        for op in pod_dns.get("options") or []:
            options[op.get("name", "")] = op.get("value") or ""
        dns = DNSConfig(servers=_unique(dns.servers + list(pod_dns.get("nameservers") or [])),
                        searches=_unique(dns.searches + list(pod_dns.get("searches") or [])),
                        options=_options_list(options))
    return _fit_limits(dns, warnings), warnings


def _fit_limits(dns: DNSConfig, warnings: list[tuple[str, str]]) -> DNSConfig:
    """formDNSConfigFitsLimits: at most 3 nameservers, 32 search paths of ≤ 253 and 2048 characters."""
    servers = dns.servers
    if len(servers) > MAX_DNS_NAMESERVERS:
        servers = servers[:MAX_DNS_NAMESERVERS]
        warnings.append((DNS_CONFIG_FORMING, "Nameserver limits were exceeded, some nameservers have been omitted, "
                                             f"the applied nameserver line is: {' '.join(servers)}"))
    searches = dns.searches
    exceeded = len(searches) > MAX_DNS_SEARCH_PATHS
    searches = [s for s in searches[:MAX_DNS_SEARCH_PATHS] if len(s) <= MAX_DNS_SEARCH_LENGTH]
    exceeded = exceeded or len(searches) < min(len(dns.searches), MAX_DNS_SEARCH_PATHS)
    while searches and len(" ".join(searches)) > MAX_DNS_SEARCH_LIST_CHARS:
        searches = searches[:-1]
        exceeded = True
    if exceeded:
        warnings.append((DNS_CONFIG_FORMING, "Search Line limits were exceeded, some search paths have been omitted, "
                                             f"the applied search line is: {' '.join(searches)}"))
    return DNSConfig(servers=servers, searches=searches, options=dns.options)


def resolv_conf_content(dns: DNSConfig) -> str:
    """containerd's layout: search, nameserver lines, options."""
    text = ""
    if dns.searches:
        text += "search " + " ".join(dns.searches) + "\n"
    for server in dns.servers:
        text += f"nameserver {server}\n"
    if dns.options:
        text += "options " + " ".join(dns.options) + "\n"
    return text


# --- writing -------------------------------------------------------------------------------------


def _write(path: Path, text: str) -> None:
    """Replace atomically (a running container reads its bind mount of the old inode meanwhile)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def write_pod_files(pod_dir: Path, pod: dict, pod_ips: list[str], *, cluster_dns: list[str],
                    cluster_domain: str = "cluster.local", node_resolv_conf: str | None = "/etc/resolv.conf",
                    node_hosts_file: str = "/etc/hosts", node_hostname: str = "") -> PodFiles:
    """Write etc-hosts, resolv.conf and hostname into the pod's directory; return their paths."""
    pod_dir.mkdir(parents=True, exist_ok=True)
    dns, warnings = pod_dns_config(pod, cluster_dns, cluster_domain, node_resolv_conf)
    hostname = sandbox_hostname(pod, cluster_domain, node_hostname)
    files = PodFiles(hosts=pod_dir / "etc-hosts", resolv_conf=pod_dir / "resolv.conf", hostname=pod_dir / "hostname",
                     dns=dns, hostname_value=hostname, warnings=warnings)
    _write(files.hosts, hosts_file_content(pod, pod_ips, cluster_domain, node_hosts_file))
    resolv = resolv_conf_content(dns)
    if not resolv and node_resolv_conf:
        resolv = Path(node_resolv_conf).read_text()  # as containerd: nothing configured → the host's file
    _write(files.resolv_conf, resolv)
    _write(files.hostname, hostname + "\n")
    return files
