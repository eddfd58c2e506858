"""Running a node agent: the image store, the runc runtime, the kubelet and its API server, wired
together, until cancelled. Used by `ketch agent` and by `ketch server` (one agent for the local node).

`host_netns` names a network namespace that stands in for the node's host network: the CNI bridge,
the pods' veth peers and hostNetwork pods live there (created if missing, with loopback up). Without
it the pods are bridged in the agent's own network namespace, as on a real node.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
from pathlib import Path

from ..api.errors import ApiError
from ..client.background import Background
from ..client.rest import Client
from ..images.store import ImageStore
from ..ingress import IngressController
from ..netpol.enforcer import NetworkPolicyEnforcer
from ..proxy.proxier import Proxier
from ..proxy.rules import NodeFacts
from .kubelet import AgentConfig, Kubelet
from .runtime.cni import CNIConfig
from .runtime.runc import RuncRuntime
from .server import KubeletServer
from .authn import TokenReviewer
from .backend import KubeletBackend
from . import nodenet
from .nodedns import NodeDNS
from .publisher import HostPublisher
from .runtime.namespaces import NetnsSockets

log = logging.getLogger("ketch.agent")

USER_AGENT = "kubelet/v1.35.0 (linux/amd64) ketch"
# Connections to the API server: two watches and the pods' status writes (upstream's kubelet has
# one HTTP/2 connection); more only cost memory (TLS buffers) on the node.
API_CONNECTIONS = 16


def ensure_netns(name: str) -> str:
    """The path of network namespace `name`, made (with loopback up) if it does not exist yet."""
    path = Path("/run/netns") / name
    if not path.exists():
        subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True)
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True, capture_output=True)
    return str(path)


async def cluster_ca(client: Client) -> bytes:
    """The CA the kubelet API verifies client certificates with: the one of the agent's kubeconfig,
    or (joined with a token and no CA) the cluster's, as every namespace's kube-root-ca.crt has it."""
    if client.config.ca_pem:
        return client.config.ca_pem
    configmaps = client.resource("v1", "ConfigMap", namespace="kube-system")
    while True:
        try:
            return (await configmaps.get("kube-root-ca.crt"))["data"]["ca.crt"].encode()
        except ApiError as e:   # the controller manager publishes it shortly after start
            if e.code != 404:
                raise
            await asyncio.sleep(1.0)


async def build(client: Client, config: AgentConfig, host_netns: str | None = None
                ) -> tuple[Kubelet, KubeletServer, list[Background]]:
    """The agent's parts: the kubelet, its API server, and the node's network services (each a
    Background, started once the kubelet API listens)."""
    config.root.mkdir(parents=True, exist_ok=True)
    config.seccomp_root.mkdir(exist_ok=True)
    # What `ketch killall` needs to clear this node after the agent stopped (written first: even a
    # node whose setup failed half way is cleared).
    (config.root / "agent.json").write_text(json.dumps({"node_name": config.node_name, "node_netns": host_netns,
                                                        "underlay": config.underlay if host_netns else ""}))
    netns = ensure_netns(host_netns) if host_netns else None
    if netns and config.underlay:
        address = await asyncio.to_thread(nodenet.attach, host_netns, config.underlay, config.underlay_cidr)
        config.node_ip = config.node_ip or address
    if config.network == "host" and not config.node_ip:
        config.node_ip = nodenet.default_route_address() or ""
    config.node_ip = config.node_ip or "127.0.0.1"
    store = ImageStore(config.data_dir / "images")
    runtime = RuncRuntime(config.root / "runtime", store, CNIConfig(plugin_dirs=list(config.cni_bin_dirs)), host_netns=netns,
                          cgroup_root=config.cgroup_root)
    kubelet = Kubelet(client, config, runtime, store)
    server = KubeletServer(KubeletBackend(kubelet), config.address, config.port, cert_dir=config.root / "tls",
                           node_name=config.node_name, client_ca=await cluster_ca(client),
                           token_reviewer=TokenReviewer(client))
    components: list[Background] = []
    # The node's network services live in its network namespace: the one standing in for its host,
    # or with `--network host` the agent's own (a real machine's). Without either they do not run:
    # nothing then touches the namespace the agent was started in.
    services_netns = netns or (f"/proc/{os.getpid()}/ns/net" if config.network == "host" else None)
    if services_netns:
        sockets = NetnsSockets(netns)     # None: the agent's own namespace
        # In a node namespace NodePorts (and LoadBalancer ports, as k3s's ServiceLB) answer on the
        # node's address, as kube-proxy's --nodeport-addresses=primary; on a real machine on every
        # local address, kube-proxy's default.
        node_ips = (kubelet.node_ip,) if netns and not kubelet.node_ip.startswith("127.") else ()
        components.append(Proxier(kubelet.informers, services_netns,
                                  NodeFacts(config.node_name, node_ips, config.cluster_cidr)))
        # NetworkPolicies: filter rules for this node's pods in the same namespace's FORWARD chain.
        components.append(NetworkPolicyEnforcer(kubelet.informers, services_netns, config.node_name))
        # NodePorts and the ServiceLB's loopback addresses, published on the host's loopback (with
        # --network host the NodePorts are on the machine's own addresses already).
        components.append(HostPublisher(kubelet.informers, sockets, kubelet.node_ip,
                                        recorder=kubelet.recorder.for_component("kube-proxy"),
                                        node_ports=bool(netns)))
        if config.ingress_http_port or config.ingress_https_port:
            # Ingresses served on the host's loopback (and, in a node namespace, on the node's address).
            components.append(IngressController(
                kubelet.informers, client, sockets, class_name=config.ingress_class,
                http=(config.ingress_address, config.ingress_http_port),
                https=(config.ingress_address, config.ingress_https_port), status_ip=config.ingress_address,
                node_address=kubelet.node_ip if netns and not kubelet.node_ip.startswith("127.") else None))
        if config.serve_dns:
            components.append(NodeDNS(kubelet, sockets, zone=config.cluster_domain, upstream=config.dns_upstream))
        if config.underlay and netns:
            components.append(nodenet.HostGwRoutes(kubelet.informers, host_netns, config.node_name,
                                                   config.underlay_cidr))
        elif config.network == "host":
            # Machines on one L2 segment: a route to each other node's pods via its address.
            components.append(nodenet.HostGwRoutes(kubelet.informers, None, config.node_name, None))
    return kubelet, server, components


async def run(client: Client, config: AgentConfig, host_netns: str | None = None,
              started: asyncio.Event | None = None) -> None:
    kubelet, server, components = await build(client, config, host_netns)
    await server.start()
    kubelet.kubelet_url = server.url
    for component in components:
        component.start()   # each waits for the informers the kubelet starts
    try:
        task = asyncio.ensure_future(kubelet.run())
        if started is not None:
            waiter = asyncio.ensure_future(kubelet.ready.wait())
            await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            started.set()
        await task
    finally:
        # The proxy's rules stay: service traffic outlives an agent restart.
        for component in reversed(components):
            await component.stop()
        await server.stop()
        await kubelet.runtime.close()
