"""The files a pod's containers share: /etc/hostname, and /etc/hosts and /etc/resolv.conf when
the kubelet did not write its own (CRI runtimes write resolv.conf from the DNSConfig)."""

from __future__ import annotations

import os
from pathlib import Path

from .api import DNSConfig
from .state import write_atomic

DEFAULT_HOSTS = """# Kubernetes-managed hosts file.
127.0.0.1\tlocalhost
::1\tlocalhost ip6-localhost ip6-loopback
fe00::0\tip6-localnet
fe00::0\tip6-mcastprefix
fe00::1\tip6-allnodes
fe00::2\tip6-allrouters
"""


def resolv_conf_text(dns: DNSConfig) -> str:
    """containerd's layout: search, nameservers, options."""
    lines = ["search " + " ".join(dns.searches)] if dns.searches else []
    lines += [f"nameserver {s}" for s in dns.servers]
    if dns.options:
        lines.append("options " + " ".join(dns.options))
    return "\n".join(lines) + "\n"


def write_sandbox_files(sdir: Path, hostname: str, ips: list[str], host_network: bool,
                        hosts_file: str | None, resolv_conf: str | None, dns: DNSConfig | None) -> dict:
    """Write what is missing; returns the paths to bind-mount ({"hostname_file", "hosts",
    "resolv_conf"}, the last two possibly None)."""
    out: dict = {"hostname_file": str(sdir / "hostname")}
    write_atomic(sdir / "hostname", f"{hostname}\n".encode())
    if hosts_file:
        out["hosts"] = hosts_file
    elif host_network:   # a copy of the node's: a container must not be able to rewrite the node's own
        write_atomic(sdir / "hosts", Path("/etc/hosts").read_bytes() if os.path.exists("/etc/hosts") else b"")
        out["hosts"] = str(sdir / "hosts")
    else:
        text = DEFAULT_HOSTS + "".join(f"{ip}\t{hostname}\n" for ip in ips[:1])
        write_atomic(sdir / "hosts", text.encode())
        out["hosts"] = str(sdir / "hosts")
    if resolv_conf:
        out["resolv_conf"] = resolv_conf
    elif dns is not None:
        write_atomic(sdir / "resolv.conf", resolv_conf_text(dns).encode())
        out["resolv_conf"] = str(sdir / "resolv.conf")
    elif os.path.exists("/etc/resolv.conf"):   # a copy, as containerd makes
        write_atomic(sdir / "resolv.conf", Path("/etc/resolv.conf").read_bytes())
        out["resolv_conf"] = str(sdir / "resolv.conf")
    else:
        out["resolv_conf"] = None
    return out
