"""`ketch simulate`: run a Simulator against the API server of a kubeconfig until cancelled."""
from __future__ import annotations

from pathlib import Path

from ..client import kubeconfig
from ..client.rest import Client
from .simulator import Simulator, SimulatorConfig

USER_AGENT = "kubelet/v1.35.0 (ketch-sim)"


async def run(kubeconfig_path: Path, config: SimulatorConfig) -> None:
    client = Client(kubeconfig.load(kubeconfig_path), user_agent=USER_AGENT)
    try:
        await Simulator(client, config).run()
    finally:
        await client.close()
