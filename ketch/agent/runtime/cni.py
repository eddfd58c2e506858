"""Pod networking through the standard CNI plugins, as a CNI 1.0.0 runtime (libcni) drives them.

One network list: bridge (with host-local IPAM on the node's podCIDR) then portmap (hostPort),
plus loopback for the pod's lo. ADD calls the plugins in order, each getting the previous one's
result as prevResult; DEL calls them in reverse with the cached ADD result. Plugins run inside
the node's network namespace (`host_netns`), so the bridge and the iptables rules of portmap
live there and never in the root namespace of a test machine.
"""

from __future__ import annotations

import copy
import ipaddress
import json
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from .namespaces import run_in_netns

CNI_VERSION = "1.0.0"
PLUGIN_TIMEOUT = 60


class CNIError(Exception):
    pass


CNI_BIN_DIRS = ("/usr/lib/cni", "/opt/cni/bin")  # Debian's containernetworking-plugins, then upstream's place


@dataclass
class CNIConfig:
    pod_cidr: str = ""  # the node's spec.podCIDR, e.g. "10.244.1.0/24"; "" = not known yet
    bridge: str = "cni0"
    network_name: str = "ketch"
    plugin_dirs: list[str] = field(default_factory=lambda: list(CNI_BIN_DIRS))
    mtu: int = 0
    ipam_data_dir: str = ""  # default: <runtime root>/cni/networks
    hairpin: bool = True

    def network_list(self, data_dir: str) -> dict:
        bridge = {
            "type": "bridge",
            "bridge": self.bridge,
            "isGateway": True,
            "isDefaultGateway": True,
            "hairpinMode": self.hairpin,
            "ipMasq": False,
            "ipam": {
                "type": "host-local",
                "ranges": [[{"subnet": self.pod_cidr}]],
                "dataDir": self.ipam_data_dir or data_dir,
            },
        }
        if self.mtu:
            bridge["mtu"] = self.mtu
        return {
            "cniVersion": CNI_VERSION,
            "name": self.network_name,
            "plugins": [bridge, {"type": "portmap", "capabilities": {"portMappings": True}}],
        }


class CNI:
    def __init__(self, config: CNIConfig, data_dir: Path, host_netns: str | None):
        self.config = config
        self.data_dir = data_dir
        self.host_netns = host_netns

    @property
    def ready(self) -> bool:
        return bool(self.config.pod_cidr) and self._find("bridge") is not None

    def _find(self, plugin: str) -> str | None:
        for d in self.config.plugin_dirs:
            p = os.path.join(d, plugin)
            if os.access(p, os.X_OK):
                return p
        return None

    async def add(self, container_id: str, netns: str, port_mappings: list[dict],
                  pod_name: str = "", pod_namespace: str = "", pod_uid: str = "") -> tuple[dict, dict]:
        """Attach the pod's netns; returns the final CNI result (ips, interfaces, ...) and the
        network list used, which DEL must be given again (as libcni caches it)."""
        if not self.config.pod_cidr:
            raise CNIError("network is not ready: the node has no podCIDR yet")
        args = _cni_args(pod_name, pod_namespace, pod_uid, container_id)
        await self._call("loopback", "ADD", {"cniVersion": CNI_VERSION, "name": "lo", "type": "loopback"},
                         container_id, netns, "lo", args)
        conf_list = self.config.network_list(str(self.data_dir / "networks"))
        if not port_mappings:   # portmap has nothing to do for a pod without hostPorts: a fork less
            conf_list["plugins"] = [p for p in conf_list["plugins"]
                                    if not (p.get("capabilities") or {}).get("portMappings")]
        prev = None
        done: list[dict] = []
        try:
            for plugin in conf_list["plugins"]:
                conf = self._plugin_conf(conf_list, plugin, prev, port_mappings)
                prev = await self._call(plugin["type"], "ADD", conf, container_id, netns, "eth0", args)
                done.append(plugin)
        except Exception:
            # Undo what did succeed, as libcni's callers do on a failed ADD.
            await self._delete_plugins(conf_list, list(reversed(done)), prev, port_mappings,
                                       container_id, netns, args)
            raise
        return prev or {}, conf_list

    async def delete(self, container_id: str, netns: str | None, port_mappings: list[dict],
                     prev_result: dict | None, conf_list: dict | None, pod_name: str = "",
                     pod_namespace: str = "", pod_uid: str = "") -> None:
        if conf_list is None:  # ADD never completed: today's config is the best guess
            if not self.config.pod_cidr:
                return
            conf_list = self.config.network_list(str(self.data_dir / "networks"))
        args = _cni_args(pod_name, pod_namespace, pod_uid, container_id)
        await self._delete_plugins(conf_list, list(reversed(conf_list["plugins"])), prev_result,
                                   port_mappings, container_id, netns, args)

    async def _delete_plugins(self, conf_list, plugins, prev_result, port_mappings, container_id,
                              netns, args) -> None:
        errors = []
        for plugin in plugins:
            conf = self._plugin_conf(conf_list, plugin, prev_result, port_mappings)
            try:
                await self._call(plugin["type"], "DEL", conf, container_id, netns or "", "eth0", args)
            except CNIError as e:
                errors.append(str(e))
        if errors:
            raise CNIError("; ".join(errors))

    @staticmethod
    def _plugin_conf(conf_list: dict, plugin: dict, prev: dict | None, port_mappings: list[dict]) -> dict:
        conf = copy.deepcopy(plugin)
        conf["cniVersion"] = conf_list["cniVersion"]
        conf["name"] = conf_list["name"]
        caps = conf.pop("capabilities", {})
        if caps.get("portMappings") and port_mappings:
            conf["runtimeConfig"] = {"portMappings": port_mappings}
        if prev is not None:
            conf["prevResult"] = prev
        return conf

    async def _call(self, plugin: str, command: str, conf: dict, container_id: str, netns: str,
                    ifname: str, args: str) -> dict | None:
        path = self._find(plugin)
        if path is None:
            raise CNIError(f'failed to find plugin "{plugin}" in path [{" ".join(self.config.plugin_dirs)}]')
        env = {
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": container_id,
            "CNI_NETNS": netns,
            "CNI_IFNAME": ifname,
            "CNI_PATH": ":".join(self.config.plugin_dirs),
            "CNI_ARGS": args,
        }
        # A child inherits the namespaces of the thread that forks it: the plugin starts in
        # the node's netns (loopback works on CNI_NETNS alone and needs no entering).
        netns_of_plugin = None if plugin == "loopback" else self.host_netns
        try:
            proc = await run_in_netns(netns_of_plugin, lambda: subprocess.run(
                [path], env=env, input=json.dumps(conf).encode(), capture_output=True, timeout=PLUGIN_TIMEOUT))
        except (OSError, subprocess.TimeoutExpired) as e:
            raise CNIError(f'plugin type="{plugin}" failed ({command.lower()}): {e}') from None
        out, err = proc.stdout, proc.stderr
        if proc.returncode != 0:
            raise CNIError(f'plugin type="{plugin}" failed ({command.lower()}): {_error_message(out, err)}')
        if command != "ADD" or not out.strip():
            return None
        try:
            return json.loads(out)
        except ValueError:
            raise CNIError(f'plugin type="{plugin}" failed ({command.lower()}): unreadable result {out[:200]!r}') \
                from None


def _cni_args(pod_name: str, pod_namespace: str, pod_uid: str, container_id: str) -> str:
    # The same CNI_ARGS the kubelet's CRI runtimes pass.
    return (f"IgnoreUnknown=1;K8S_POD_NAMESPACE={pod_namespace};K8S_POD_NAME={pod_name};"
            f"K8S_POD_INFRA_CONTAINER_ID={container_id};K8S_POD_UID={pod_uid}")


def _error_message(out: bytes, err: bytes) -> str:
    try:
        e = json.loads(out)
        if not isinstance(e, dict):
            raise ValueError("not an error object")
        msg = e.get("msg", "")
        if e.get("details"):
            msg = f"{msg}: {e['details']}"
        return msg or out.decode(errors="replace")
    except ValueError:
        return (err or out).decode(errors="replace").strip()


def result_ips(result: dict) -> list[str]:
    """Pod IPs (no prefix length) from a CNI result, IPv4 first as the kubelet orders them."""
    ips = []
    for entry in (result or {}).get("ips", []):
        addr = entry.get("address", "")
        if addr:
            ips.append(str(ipaddress.ip_interface(addr).ip))
    return sorted(ips, key=lambda ip: ipaddress.ip_address(ip).version)


def port_mappings_for_cni(mappings) -> list[dict]:
    """CRI PortMappings with a host port, as portmap's runtimeConfig wants them."""
    out = []
    for m in mappings:
        if not m.host_port:
            continue
        entry = {"hostPort": m.host_port, "containerPort": m.container_port,
                 "protocol": (m.protocol or "TCP").lower()}
        if m.host_ip:
            entry["hostIP"] = m.host_ip
        out.append(entry)
    return out
