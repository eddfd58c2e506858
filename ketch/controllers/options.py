"""The controller manager's settings, named as kube-controller-manager's flags.

One table (`FLAGS`) gives each setting its flag, type and help, so `ketch server` and `ketch
controller-manager` accept the same flags and every controller reads the same values from
`self.options`.
"""
from __future__ import annotations

import argparse
import dataclasses
import ipaddress
from pathlib import Path
from typing import Callable

from ..api import durations


@dataclasses.dataclass(frozen=True)
class ControllerOptions:
    # Where the built-in local-path provisioner keeps volumes (DATA_DIR/storage).
    data_dir: Path = Path("/var/lib/ketch")
    cluster_cidr: str = "10.42.0.0/16"
    node_cidr_mask_size: int = 24
    node_monitor_period: float = 5.0
    node_monitor_grace_period: float = 50.0   # upstream's default since 1.32
    node_startup_grace_period: float = 60.0
    node_eviction_rate: float = 0.1
    horizontal_pod_autoscaler_sync_period: float = 15.0
    horizontal_pod_autoscaler_downscale_stabilization: float = 300.0
    # Not an upstream flag (k3s' ServiceLB uses node IPs): the built-in load balancer's loopback pool.
    service_lb_cidr: str = "127.0.1.0/24"
    # Not an upstream flag: the first Job pod re-creation delay (doubling to 6 min), for tests.
    job_backoff_base: float = 10.0


def _duration(text: str) -> float:
    try:
        seconds = durations.parse(text.strip(), bare_seconds=True)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    if seconds < 0:
        raise argparse.ArgumentTypeError(f"duration must not be negative: {text}")
    return seconds


def _ipv4_cidr(text: str) -> str:
    try:
        net = ipaddress.ip_network(text.strip(), strict=False)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    if net.version != 4:
        raise argparse.ArgumentTypeError(f"not an IPv4 CIDR: {text}")
    return str(net)


def _loopback_cidr(text: str) -> str:
    """The ServiceLB's pool: loopback addresses only (they are published on the host's loopback,
    never routed), and not 127.0.0.1, the host's own (the ingress and NodePorts listen there)."""
    cidr = _ipv4_cidr(text)
    net = ipaddress.ip_network(cidr)
    if not net.subnet_of(ipaddress.ip_network("127.0.0.0/8")):
        raise argparse.ArgumentTypeError(f"the service load balancer's addresses must be loopback (127.0.0.0/8): {text}")
    if ipaddress.ip_address("127.0.0.1") in net:
        raise argparse.ArgumentTypeError(f"{text} holds 127.0.0.1, the host's own address")
    return cidr


# field -> (type, help)
FLAGS: dict[str, tuple[Callable, str]] = {
    "cluster_cidr": (str, "pod network of the cluster; each node gets a range of it (default 10.42.0.0/16)"),
    "node_cidr_mask_size": (int, "size of each node's pod range (default 24)"),
    "node_monitor_period": (_duration, "how often node health is checked (default 5s)"),
    "node_monitor_grace_period": (_duration, "a node silent this long is marked NotReady/Unknown (default 50s)"),
    "node_startup_grace_period": (_duration, "grace for a new node to report Ready (default 1m)"),
    "node_eviction_rate": (float, "nodes per second per zone whose pods are evicted when nodes fail (default 0.1)"),
    "horizontal_pod_autoscaler_sync_period": (_duration, "how often autoscalers are evaluated (default 15s)"),
    "horizontal_pod_autoscaler_downscale_stabilization": (
        _duration, "autoscalers scale down only to the highest recommendation of this window (default 5m)"),
    "service_lb_cidr": (_loopback_cidr, "loopback addresses the built-in service load balancer gives LoadBalancer "
                                    "Services, one each (default 127.0.1.0/24)"),
    "job_backoff_base": (_duration, "first delay before a failed Job pod is re-created, doubling (default 10s)"),
}


def add_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("controller manager")
    for field, (kind, text) in FLAGS.items():
        group.add_argument("--" + field.replace("_", "-"), type=kind, default=None, help=text)


def from_args(args: argparse.Namespace, data_dir: Path) -> ControllerOptions:
    given = {f: getattr(args, f) for f in FLAGS if getattr(args, f, None) is not None}
    return ControllerOptions(data_dir=data_dir.resolve(), **given)
