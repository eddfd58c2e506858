"""The objects a simulated node consists of: its Node (spec, labels, status) and its Lease."""
from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field

from ..agent.node import (KUBELET_PORT, KUBELET_VERSION, LEASE_DURATION_SECONDS, LEASE_NAMESPACE,  # noqa: F401
                          base_labels, lease_object, node_conditions, renew_lease)

SIMULATED_ANNOTATION = "ketch.io/simulated"   # as kwok's kwok.x-k8s.io/node: fake
ZONE_NAMES = "abcdefghijklmnopqrstuvwxyz"


@dataclass
class NodeProfile:
    """What every node of one simulator looks like."""

    cpu: str = "4"
    memory: str = "16Gi"
    pods: int = 110
    ephemeral_storage: str = "100Gi"
    zones: int = 3
    region: str = "sim"
    labels: dict[str, str] = field(default_factory=dict)

    def zone(self, index: int) -> str:
        return f"{self.region}-{ZONE_NAMES[index % max(self.zones, 1) % len(ZONE_NAMES)]}"

    @property
    def instance_type(self) -> str:
        return f"sim.{self.cpu}cpu-{self.memory}"

    def capacity(self) -> dict[str, str]:
        return {"cpu": self.cpu, "memory": self.memory, "pods": str(self.pods),
                "ephemeral-storage": self.ephemeral_storage, "hugepages-1Gi": "0", "hugepages-2Mi": "0"}


def _stable_uuid(name: str, what: str) -> str:
    return str(uuid.UUID(hashlib.md5(f"{what}/{name}".encode()).hexdigest()))


def node_labels(name: str, index: int, profile: NodeProfile) -> dict[str, str]:
    zone = profile.zone(index)
    return {**base_labels(name), "node.kubernetes.io/instance-type": profile.instance_type,
            "topology.kubernetes.io/region": profile.region, "topology.kubernetes.io/zone": zone,
            **profile.labels}


def node_status(name: str, ip: str, profile: NodeProfile, now: str) -> dict:
    capacity = profile.capacity()
    return {
        "capacity": capacity, "allocatable": dict(capacity),
        "conditions": node_conditions(now),
        "addresses": [{"type": "InternalIP", "address": ip}, {"type": "Hostname", "address": name}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": KUBELET_PORT}},
        "nodeInfo": {"machineID": _stable_uuid(name, "machine").replace("-", ""),
                     "systemUUID": _stable_uuid(name, "system"), "bootID": str(uuid.uuid4()),
                     "kernelVersion": "6.1.0-ketch-sim", "osImage": "ketch simulated node",
                     "containerRuntimeVersion": "ketch-sim://" + KUBELET_VERSION,
                     "kubeletVersion": KUBELET_VERSION, "operatingSystem": "linux", "architecture": "amd64"},
    }


def node_object(name: str, index: int, ip: str, profile: NodeProfile, now: str) -> dict:
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": node_labels(name, index, profile),
                     "annotations": {SIMULATED_ANNOTATION: "true", "node.alpha.kubernetes.io/ttl": "0",
                                     "volumes.kubernetes.io/controller-managed-attach-detach": "true"}},
        "spec": {},
        "status": node_status(name, ip, profile, now),
    }


def internal_ip(n: int) -> str:
    """The n-th node address in 10.244.0.0/16 (never bound to any interface)."""
    return f"10.244.{(n // 254) % 256}.{n % 254 + 1}"
