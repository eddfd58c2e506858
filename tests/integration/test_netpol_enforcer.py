"""The NetworkPolicy enforcer against a real API server and a real node network namespace (made
here, empty but for the rules): it follows policies and pods (on a simulated node, which gives
them addresses), coalesces bursts, deletes what went away, and keeps FORWARD's jump in place."""
from __future__ import annotations

import asyncio
import os
import subprocess
import uuid

import pytest

from helpers.cluster import unique
from ketch.client import kubeconfig
from ketch.client.informer import SharedInformers
from ketch.client.rest import Client
from ketch.netpol.enforcer import NetworkPolicyEnforcer
from ketch.netpol.rules import TOP_CHAIN, pod_chain, policy_chain

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for a network namespace")

NODE = "sim-0"      # one of the session server's simulated nodes


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, check=check, timeout=20)


@pytest.fixture
def netns():
    name = f"ketch-t-np-{uuid.uuid4().hex[:8]}"
    sh("ip", "netns", "add", name)
    try:
        yield name
    finally:
        sh("ip", "netns", "del", name, check=False)


async def until(predicate, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not predicate():
        assert loop.time() < end, "condition not met in time"
        await asyncio.sleep(0.05)


def saved(netns: str) -> str:
    return sh("ip", "netns", "exec", netns, "iptables-save", "-t", "filter").stdout


async def test_enforcer_follows_the_api_server(netns, server, simulated_nodes):
    client = Client(kubeconfig.load(server.kubeconfig), user_agent="ketch-netpol-test")
    informers = SharedInformers(client)
    ns = unique("netpol")
    enforcer = NetworkPolicyEnforcer(informers, netns, NODE, min_sync_period=1.0)
    pods = client.resource("v1", "Pod", ns)
    policies = client.resource("networking.k8s.io/v1", "NetworkPolicy", ns)
    try:
        await client.resource("v1", "Namespace").create({"metadata": {"name": ns}})
        for name in ("web", "other"):
            await pods.create({"metadata": {"name": name, "labels": {"app": name}},
                               "spec": {"nodeName": NODE if name == "web" else "sim-1",
                                        "containers": [{"name": "c", "image": "busybox"}]}})
        informers.start()
        enforcer.start()
        await until(lambda: all((p.get("status") or {}).get("podIP") for p in enforcer.pods.list()
                                if p["metadata"]["namespace"] == ns) and enforcer.syncs >= 1)
        assert f"-j {TOP_CHAIN}" in saved(netns) and "KUBE-POD-FW-" not in saved(netns)

        await policies.create({"metadata": {"name": "deny"}, "spec": {"podSelector": {}}})
        web_in = pod_chain(ns, "web", "Ingress")
        await until(lambda: web_in in (enforcer.last.text if enforcer.last else ""))
        rules = saved(netns)
        assert f":{web_in}" in rules and f":{policy_chain(ns, 'deny', 'Ingress')}" in rules
        assert pod_chain(ns, "other", "Ingress") not in rules      # on another node

        # A burst of eight changes is coalesced: a sync at once, then at most one a second.
        before = enforcer.syncs
        for i in range(8):
            await policies.create({"metadata": {"name": f"p{i}"}, "spec": {
                "podSelector": {"matchLabels": {"app": "web"}}, "ingress": [{"ports": [{"port": 8000 + i}]}]}})
        last = policy_chain(ns, "p7", "Ingress")
        await until(lambda: last in (enforcer.last.text if enforcer.last else ""))
        await asyncio.sleep(1.2)
        assert 1 <= enforcer.syncs - before <= 3
        assert "--dport 8007" in saved(netns)

        # The service proxy prepending its jumps later: ours moves back behind its REJECTs and in
        # front of its ACCEPTs at the next sync.
        node = ("ip", "netns", "exec", netns, "iptables")
        for chain in ("KUBE-FORWARD", "KUBE-SERVICES"):
            sh(*node, "-N", chain, check=False)
            sh(*node, "-I", "FORWARD", "1", "-j", chain)
        assert await enforcer.sync_once(force=True)
        forward = [line.split(" -j ")[-1] for line in saved(netns).splitlines() if line.startswith("-A FORWARD")]
        assert forward == ["KUBE-SERVICES", TOP_CHAIN, "KUBE-FORWARD"]
        assert not await enforcer.sync_once()          # nothing changed: no restore
        # ... and a jump of the proxy's inserted later still is put behind ours by a sync without
        # changes (no waiting for the periodic full one).
        sh(*node, "-D", "FORWARD", "-j", "KUBE-FORWARD")
        sh(*node, "-I", "FORWARD", "1", "-j", "KUBE-FORWARD")
        assert not await enforcer.sync_once()
        forward = [line.split(" -j ")[-1] for line in saved(netns).splitlines() if line.startswith("-A FORWARD")]
        assert forward.index(TOP_CHAIN) < forward.index("KUBE-FORWARD")

        # Everything gone: every chain of ours goes, the jump and the top chain stay.
        for name in ["deny"] + [f"p{i}" for i in range(8)]:
            await policies.delete(name)
        await until(lambda: enforcer.last and enforcer.last.chains == {TOP_CHAIN})
        rules = saved(netns)
        assert "KUBE-NWPLCY-" not in rules and f"-j {TOP_CHAIN}" in rules
    finally:
        await enforcer.stop()
        await informers.stop()
        try:
            await client.resource("v1", "Namespace").delete(ns)
        finally:
            await client.close()
