"""`ketch killall`: stop everything the node agents of a data directory run — as k3s-killall.sh
does for k3s. Containers outlive their agent on purpose (an agent restart adopts them); this is
how a machine is cleared: every sandbox and container removed, pod volumes unmounted, and the
network namespaces that stood in for the nodes deleted. The agents must be stopped first."""
from __future__ import annotations

import json
import logging
import subprocess
from pathlib import Path

from ..images.store import ImageStore
from .runtime.api import RuntimeFailure
from .runtime.runc import RuncRuntime
from .volumes import VolumeManager
from . import nodenet

log = logging.getLogger("ketch.agent")


async def killall(data_dir: Path) -> int:
    """Remove every pod of every agent under `data_dir`; returns how many sandboxes went."""
    removed = 0
    store = ImageStore(data_dir / "images")
    for node_root in sorted((data_dir / "agent").glob("*")):
        runtime_root = node_root / "runtime"
        try:
            facts = json.loads((node_root / "agent.json").read_text())
        except (OSError, ValueError):
            facts = {}
        netns, underlay = facts.get("node_netns"), facts.get("underlay")
        if not runtime_root.is_dir():      # set up no further than its network
            _remove_network(netns, underlay)
            continue
        runtime = RuncRuntime(runtime_root, store, host_netns=f"/run/netns/{netns}" if netns else None)
        for sandbox in await runtime.list_pod_sandboxes():
            try:
                await runtime.stop_pod_sandbox(sandbox.id)
                await runtime.remove_pod_sandbox(sandbox.id)
            except RuntimeFailure as e:  # a failing CNI DEL: the others still go
                log.warning("sandbox %s of %s/%s not removed: %s", sandbox.id[:12], sandbox.namespace,
                            sandbox.name, e.message)
                continue
            removed += 1
        for container in await runtime.list_containers():   # any left without a sandbox
            await runtime.remove_container(container.id)
        volumes = VolumeManager(node_root, source=None)
        for uid in volumes.pod_uids_on_disk():
            await volumes.teardown(uid)
        await runtime.close()
        _remove_network(netns, underlay)
    return removed


def _remove_network(netns: str | None, underlay: str | None) -> None:
    if netns and underlay:
        nodenet.detach(netns, underlay)
    if netns and (Path("/run/netns") / netns).exists():
        subprocess.run(["ip", "netns", "del", netns], capture_output=True)
