"""Cluster DNS served by every node agent, behind the `kube-system/kube-dns` Service.

The server answers on the node's address inside the node's network namespace (port 53, UDP and
TCP), and the agent publishes that address as an EndpointSlice of the kube-dns Service, owned by
its Node (gone with it). The service proxy then sends the pods' queries to 10.43.0.10 to one of
the nodes' servers, the way it spreads them over CoreDNS pods on a real cluster — no special case
in the proxy or the pods' resolv.conf.
"""
from __future__ import annotations

import asyncio
import logging
import socket

from ..api.errors import ApiError
from ..client.background import Background
from ..dns.server import ClusterDNS
from .runtime.namespaces import NetnsSockets

log = logging.getLogger("ketch.agent.dns")

DNS_NAMESPACE, DNS_SERVICE = "kube-system", "kube-dns"
MANAGED_BY = "agent.ketch.io"   # the node lifecycle controller knows this name too
REPUBLISH = 60.0   # the slice is checked this often (someone may have deleted it)


def endpoint_slice(node_name: str, node_uid: str, ip: str, port: int) -> dict:
    return {
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": f"{DNS_SERVICE}-{node_name}"[:253], "namespace": DNS_NAMESPACE,
                     "labels": {"kubernetes.io/service-name": DNS_SERVICE,
                                "endpointslice.kubernetes.io/managed-by": MANAGED_BY},
                     "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": node_name, "uid": node_uid}]},
        "addressType": "IPv4",
        "ports": [{"name": "dns", "port": port, "protocol": "UDP"},
                  {"name": "dns-tcp", "port": port, "protocol": "TCP"}],
        "endpoints": [{"addresses": [ip], "nodeName": node_name,
                       "conditions": {"ready": True, "serving": True, "terminating": False}}],
    }


class NodeDNS(Background):
    def __init__(self, kubelet, sockets: NetnsSockets, *, zone: str = "cluster.local", port: int = 53,
                 upstream: str | None = None):
        self.kubelet = kubelet
        self.sockets = sockets
        self.port = port
        self.dns = ClusterDNS(kubelet.informers, zone=zone, upstream=upstream)
        self.slices = kubelet.client.resource("discovery.k8s.io/v1", "EndpointSlice", DNS_NAMESPACE)

    async def run(self) -> None:
        ip = self.kubelet.node_ip
        udp = await self.sockets.listen(ip, self.port, socket.SOCK_DGRAM)
        try:
            tcp = await self.sockets.listen(ip, self.port)
        except BaseException:
            udp.close()
            raise
        await self.dns.start(udp, tcp)
        try:
            await self.kubelet.ready.wait()     # the Node exists: its uid owns the slice
            while True:
                try:
                    await self.publish(ip)
                except Exception:  # noqa: BLE001 - retried
                    log.exception("publishing the node's DNS endpoint")
                await asyncio.sleep(REPUBLISH)
        finally:
            await self.dns.stop()
            await self._withdraw(ip)

    async def _withdraw(self, ip: str) -> None:
        """On a clean stop: the endpoint is not ready (best effort, briefly: a killed agent leaves
        that to the node lifecycle controller, which does it when the Node goes NotReady)."""
        if not self.kubelet.node_uid:
            return
        gone = endpoint_slice(self.kubelet.node_name, self.kubelet.node_uid, ip, self.port)
        gone["endpoints"][0]["conditions"] = {"ready": False, "serving": False, "terminating": True}
        try:
            await asyncio.wait_for(self._put(gone), 2.0)
        except (Exception, asyncio.TimeoutError):  # noqa: BLE001 - stopping anyway
            log.info("could not mark the node's DNS endpoint not ready")

    async def publish(self, ip: str) -> None:
        await self._put(endpoint_slice(self.kubelet.node_name, self.kubelet.node_uid, ip, self.port))

    async def _put(self, want: dict) -> None:
        name = want["metadata"]["name"]
        try:
            have = await self.slices.get(name)
        except ApiError as e:
            if e.code != 404:
                raise
            await self.slices.create(want)
            return
        if any(have.get(k) != want[k] for k in ("ports", "endpoints")) or \
                have["metadata"].get("ownerReferences") != want["metadata"]["ownerReferences"]:
            have.update(ports=want["ports"], endpoints=want["endpoints"])
            have["metadata"]["ownerReferences"] = want["metadata"]["ownerReferences"]
            await self.slices.update(have)
