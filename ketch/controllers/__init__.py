"""Controllers: clients of the API that move actual state towards desired state."""
from __future__ import annotations

import asyncio
from pathlib import Path

from ..client import kubeconfig
from ..client.rest import Client
from .namespace import NamespaceController


async def run_all(kubeconfig_path: Path) -> None:
    """Run every controller until cancelled (`ketch server` runs them in-process)."""
    client = Client(kubeconfig.load(kubeconfig_path), user_agent="kube-controller-manager/v1.35.0 (ketch)")
    try:
        await asyncio.gather(NamespaceController(client).run())
    finally:
        await client.close()
