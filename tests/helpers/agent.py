"""A `ketch server` with its node agent running real containers, for end-to-end tests: the node
lives in a network namespace of its own (the pods' bridge is there), its pods' cgroups under a
cgroup of the test's, its images are the bundled ones; `stop()` removes all of it — server,
containers, monitors, mounts, the netns, cgroups — even after a failed test."""
from __future__ import annotations

import json
import secrets
import subprocess
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

from ketch.images import bundled
from ketch.images.store import ImageStore

from .cluster import Server, free_port, wait_for
from .runtime_node import destroy_node

IMAGES = ["busybox:latest", "jonbaier/node-express-info:latest", "docker/whalesay:latest", "nginx:latest",
          "bitnami/apache:latest", "jonbaier/httpwhalesay:0.2"]


def monitors(needle: str) -> list[str]:
    """The command lines of the running conmon processes that mention `needle` (a path, an id)."""
    out = subprocess.run(["ps", "-ww", "-eo", "args"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if line.startswith("/usr/bin/conmon") and needle in line]


@dataclass
class AgentCluster:
    server: Server
    base: Path
    node_name: str
    netns_name: str
    cgroup_top: str
    nodes: int = 1

    @property
    def underlay(self) -> str:
        return f"{self.netns_name}-net"

    @property
    def node_names(self) -> list[str]:
        return [self.node_name] + [f"{self.node_name}-{i}" for i in range(2, self.nodes + 1)]

    @property
    def netns_names(self) -> list[str]:
        return [self.netns_name] + [f"{self.netns_name}-{i}" for i in range(2, self.nodes + 1)]

    @property
    def root(self) -> Path:
        """The runtime's root (what destroy_node cleans)."""
        return self.base / "data" / "agent" / self.node_name / "runtime"

    def node_ready(self, name: str | None = None) -> bool:
        got = self.server.kubectl("get", "node", name or self.node_name, "-o", "json", check=False)
        if got.returncode != 0:
            return False
        node = json.loads(got.stdout)
        return bool(node["spec"].get("podCIDR")) and any(
            c["type"] == "Ready" and c["status"] == "True" for c in node["status"].get("conditions", []))

    def kubectl(self, *args, **kw):
        return self.server.kubectl(*args, **kw)

    def pod(self, name: str, namespace: str = "default") -> dict:
        return self.server.kubectl_json("get", "pod", name, "-n", namespace)

    def pods(self, selector: str, namespace: str = "default") -> list[dict]:
        return self.server.kubectl_json("get", "pods", "-l", selector, "-n", namespace)["items"]

    def events(self, name: str, namespace: str = "default") -> list[dict]:
        out = self.server.kubectl_json("get", "events", "-n", namespace,
                                       "--field-selector", f"involvedObject.name={name}")
        return out["items"]

    def wait_running(self, name: str, namespace: str = "default", timeout: float = 60) -> dict:
        def running():
            got = self.server.kubectl("get", "pod", name, "-n", namespace, "-o", "json", check=False)
            if got.returncode != 0:
                return None
            pod = json.loads(got.stdout)
            return pod if pod["status"].get("phase") == "Running" and all(
                c.get("ready") for c in pod["status"].get("containerStatuses") or [{}]) else None
        return wait_for(running, timeout, f"pod {name} running and ready", interval=0.2)

    def container_pid(self, container_id: str) -> int:
        """The host PID of a container's process, as runc knows it."""
        cid = container_id.split("://", 1)[-1]
        out = subprocess.run(["runc", "--root", str(self.root / "runc"), "state", cid], capture_output=True,
                             text=True, check=True).stdout
        return json.loads(out)["pid"]

    def in_node(self, *argv: str, node: int = 1) -> subprocess.CompletedProcess:
        return subprocess.run(["ip", "netns", "exec", self.netns_names[node - 1], *argv], capture_output=True,
                              text=True)

    def stop(self) -> None:
        self.server.stop()
        for name, netns in zip(self.node_names, self.netns_names):
            destroy_node(SimpleNamespace(root=self.base / "data" / "agent" / name / "runtime", base=self.base,
                                         netns_name=netns, cgroup_top=self.cgroup_top))
        subprocess.run(["ip", "netns", "del", self.underlay], capture_output=True)


def start_agent_cluster(base: Path, node_name: str = "node1", extra_args: list[str] | None = None,
                        images: list[str] | None = None, nodes: int = 1, network_host: bool = False) -> AgentCluster:
    """A server with its agent(s). network_host: the whole server runs inside a network namespace
    the test made (standing in for a machine's own network) with `--network host`."""
    bundled.ensure(ImageStore(base / "data" / "images"), images or IMAGES)
    tag = secrets.token_hex(4)
    netns, cgroup_top = f"ketch-e2e-{tag}", f"ketch-e2e-{tag}"
    if network_host:
        subprocess.run(["ip", "netns", "add", netns], check=True)
        # A machine's network: an interface with an address and a default route (to nowhere; the
        # veth's peer stays in the same namespace).
        try:
            for argv in (["link", "set", "lo", "up"], ["link", "add", "eth0", "type", "veth", "peer", "name", "peer0"],
                         ["link", "set", "eth0", "up"], ["link", "set", "peer0", "up"],
                         ["addr", "add", "192.168.77.2/24", "dev", "eth0"],
                         ["route", "add", "default", "via", "192.168.77.1"]):
                subprocess.run(["ip", "-n", netns, *argv], check=True, capture_output=True)
        except BaseException:
            subprocess.run(["ip", "netns", "del", netns], capture_output=True)
            raise
    where = ["--network", "host"] if network_host else ["--node-netns", netns]
    server = Server(data_dir=base, port=free_port(), kubeconfig=base / "kubeconfig.yaml", agent=True,
                    netns=netns if network_host else None,
                    # No ingress on the host's ports 80/443 unless a test asks (with ports of its own):
                    # clusters of other tests would share them (SO_REUSEPORT).
                    extra_args=["--node-name", node_name, *where, "--kubelet-port", "0",
                                "--ingress-http-port", "0", "--ingress-https-port", "0",
                                "--cgroup-root", f"{cgroup_top}/kubepods", "--nodes", str(nodes),
                                *(extra_args or [])])
    cluster = AgentCluster(server, base, node_name, netns, cgroup_top, nodes)
    try:
        server.start()
        for name in cluster.node_names:
            wait_for(lambda name=name: cluster.node_ready(name), 30 + 10 * nodes, f"node {name} ready", interval=0.2)
    except BaseException:
        cluster.stop()
        raise
    return cluster
