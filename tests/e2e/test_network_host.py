"""`--network host`: the node is the machine's own network namespace — here one the test made to
stand in for a machine (an interface, an address, a default route), with the whole server inside
it. Pods are bridged there, the service proxy's chains and cluster DNS live there."""
from __future__ import annotations

from pathlib import Path

import pytest

from helpers.agent import start_agent_cluster
from helpers.cluster import wait_for

pytestmark = pytest.mark.skipif(not Path("/usr/bin/runc").exists(), reason="needs runc")

PODS = """
apiVersion: v1
kind: Pod
metadata: {name: web, labels: {app: web}}
spec:
  containers:
  - {name: web, image: jonbaier/node-express-info:latest, ports: [{containerPort: 80}]}
---
apiVersion: v1
kind: Pod
metadata: {name: client}
spec:
  terminationGracePeriodSeconds: 0
  containers:
  - {name: c, image: busybox:latest, command: [sleep, "3600"]}
"""


def test_node_in_the_machines_own_namespace(tmp_path):
    cluster = start_agent_cluster(tmp_path, network_host=True,
                                  images=["busybox:latest", "jonbaier/node-express-info:latest"])
    try:
        node = cluster.server.kubectl_json("get", "node", cluster.node_name)
        internal = [a["address"] for a in node["status"]["addresses"] if a["type"] == "InternalIP"]
        assert internal == ["192.168.77.2"], "the address of the default route's interface"
        cluster.kubectl("apply", "-f", "-", input=PODS)
        cluster.kubectl("expose", "pod", "web", "--port", "80")
        cluster.wait_running("web")
        cluster.wait_running("client")
        # the pods' bridge and the proxy's chains are in the machine's namespace
        assert "cni0" in cluster.in_node("ip", "-o", "link").stdout
        wait_for(lambda: "default/web" in cluster.in_node("iptables-save", "-t", "nat").stdout, 20, "web rules")
        page = cluster.kubectl("exec", "client", "--", "wget", "-qO-", "http://web.default.svc.cluster.local/").stdout
        assert "web" in page
    finally:
        cluster.stop()
