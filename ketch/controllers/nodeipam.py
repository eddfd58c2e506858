"""Node IPAM, as upstream's range allocator (kube-controller-manager --allocate-node-cidrs): every Node
gets spec.podCIDR / spec.podCIDRs, one /24 of the cluster CIDR 10.42.0.0/16 each (k3s' defaults),
never the same one as another node. What is taken is rebuilt from the Nodes on every start, before
anything is handed out; a deleted node's range is free again, handed out last (the search goes on
from the last range given, as upstream's cidrset does). When the cluster CIDR is used up the node
gets a CIDRNotAvailable event and waits for a range to be freed.

--cluster-cidr and --node-cidr-mask-size change the defaults (a /16 holds 256 nodes of /24).
"""
from __future__ import annotations

import ipaddress
import logging

from ..api.errors import ApiError
from ..client.rest import Client
from .base import Controller, InformerFactory
from ..client.events import NORMAL, EventRecorder

log = logging.getLogger("ketch.controllers.nodeipam")

RETRY_EXHAUSTED = 60.0   # seconds; a freed range retries the waiting nodes at once


class CIDRNotAvailable(Exception):
    pass


class CIDRSet:
    """The node-sized ranges of one cluster CIDR, and which are taken."""

    def __init__(self, cluster_cidr: str, mask_size: int):
        self.network = ipaddress.ip_network(cluster_cidr, strict=False)
        if mask_size < self.network.prefixlen:
            raise ValueError(f"node CIDR mask /{mask_size} is larger than the cluster CIDR {cluster_cidr}")
        self.mask_size = mask_size
        self.size = 1 << (mask_size - self.network.prefixlen)
        self.step = 1 << (self.network.max_prefixlen - mask_size)
        self.used: set[int] = set()
        self.next = 0

    def _cidr(self, index: int) -> str:
        return f"{self.network.network_address + index * self.step}/{self.mask_size}"

    def index_of(self, cidr: str) -> int | None:
        try:
            net = ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            return None
        if net.version != self.network.version or net.prefixlen != self.mask_size or not net.subnet_of(self.network):
            return None
        return (int(net.network_address) - int(self.network.network_address)) // self.step

    def occupy(self, cidr: str) -> bool:
        index = self.index_of(cidr)
        if index is None:
            return False
        self.used.add(index)
        return True

    def release(self, cidr: str) -> None:
        index = self.index_of(cidr)
        if index is not None:
            self.used.discard(index)

    def allocate(self) -> str:
        for i in range(self.size):
            index = (self.next + i) % self.size
            if index not in self.used:
                self.used.add(index)
                self.next = (index + 1) % self.size
                return self._cidr(index)
        raise CIDRNotAvailable(f"no free /{self.mask_size} left in {self.network}")


class NodeIPAMController(Controller):
    name = "nodeipam"
    component = "cidrAllocator"
    workers = 1   # allocation is a decision over all nodes; one worker keeps it simple and ordered

    def __init__(self, client: Client, informers: InformerFactory, recorder: EventRecorder):
        super().__init__(client, informers, recorder)
        self.cidrs = CIDRSet(self.options.cluster_cidr, self.options.node_cidr_mask_size)
        self.node_api = client.resource("v1", "Node")
        self.nodes = informers.informer("v1", "Node")
        self.assigned: dict[str, tuple[str, str]] = {}   # node name -> (CIDR, node uid)
        self.waiting: set[str] = set()       # nodes left without a range: retried when one frees
        self._rebuilt = False
        self.nodes.add_handlers(on_add=self.enqueue, on_update=lambda _o, n: self.enqueue(n),
                                on_delete=self.enqueue)

    def _rebuild(self) -> None:
        """Occupy every range the stored nodes hold, before handing out any (survives restarts)."""
        for node in self.nodes.list():
            self._occupy(node)
        self._rebuilt = True

    def _occupy(self, node: dict) -> None:
        meta = node["metadata"]
        cidr = (node.get("spec") or {}).get("podCIDR")
        if cidr and self.assigned.get(meta["name"]) != (cidr, meta.get("uid")):
            self._release(meta["name"])
            if self.cidrs.occupy(cidr):
                self.assigned[meta["name"]] = (cidr, meta.get("uid"))

    def _release(self, name: str) -> None:
        entry = self.assigned.pop(name, None)
        if entry is not None:
            self.cidrs.release(entry[0])
            for waiting in self.waiting:
                self.enqueue(waiting)

    async def sync(self, name: str) -> float | None:
        if not self._rebuilt:
            self._rebuild()
        node = self.nodes.get(name)
        if node is None or (node.get("spec") or {}).get("podCIDR"):
            self.waiting.discard(name)
        if node is None:
            self._release(name)
            return None
        if (node.get("spec") or {}).get("podCIDR"):
            self._occupy(node)
            return None
        uid = node["metadata"].get("uid")
        if name in self.assigned:
            if self.assigned[name][1] == uid:
                return None   # our patch is not in the cache yet
            self._release(name)   # a node of the same name, deleted and made again
        try:
            cidr = self.cidrs.allocate()
        except CIDRNotAvailable as e:
            log.info("node %s: %s", name, e)
            self.recorder.event(node, NORMAL, "CIDRNotAvailable", f"Node {name} status is now: CIDRNotAvailable")
            self.waiting.add(name)
            return RETRY_EXHAUSTED
        self.assigned[name] = (cidr, uid)
        try:
            await self.node_api.patch(name, {"metadata": {"resourceVersion": node["metadata"]["resourceVersion"]},
                                             "spec": {"podCIDR": cidr, "podCIDRs": [cidr]}}, "merge")
        except ApiError as e:
            self._release(name)
            if e.code == 404:
                return None
            if e.code != 409:
                self.recorder.event(node, NORMAL, "CIDRAssignmentFailed",
                                    f"Node {name} status is now: CIDRAssignmentFailed")
            raise
        log.info("node %s: podCIDR %s", name, cidr)
        return None

