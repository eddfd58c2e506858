"""The controller manager: every controller of the cluster in one process, sharing informers.

`ketch server` runs it in-process; `ketch controller-manager --kubeconfig F` runs it alone, and with
leader election several copies can run while one works (Lease kube-system/kube-controller-manager).
"""
from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from ..client import kubeconfig
from ..client import leader
from ..client.leader import LeaderElector
from ..client.rest import Client
from .base import Controller, InformerFactory
from .cronjob import CronJobController
from .daemonset import DaemonSetController
from .deployment import DeploymentController
from .disruption import DisruptionController
from .endpoints import EndpointsController
from .endpointslice import EndpointSliceController
from .endpointslicemirroring import EndpointSliceMirroringController
from ..client.events import EventRecorder
from .garbagecollector import GarbageCollector
from .job import JobController
from .namespace import NamespaceController
from .options import ControllerOptions
from .nodeipam import NodeIPAMController
from .nodelifecycle import NodeLifecycleController, TaintEvictionController
from .persistentvolume import PersistentVolumeController
from .podautoscaler import HorizontalPodAutoscalerController
from .replicaset import ReplicaSetController, ReplicationControllerController
from .resourcequota import ResourceQuotaController
from .servicelb import ServiceLBController
from .statefulset import StatefulSetController
from .ttlafterfinished import TTLAfterFinishedController
from .volumeprotection import PVCProtectionController, PVProtectionController

log = logging.getLogger("ketch.controllers.manager")
USER_AGENT = "kube-controller-manager/v1.35.0 (ketch)"

# name -> controller class; `--controllers` selects among these names.
CONTROLLERS: dict[str, type[Controller]] = {
    "namespace": NamespaceController,
    "ttl-after-finished": TTLAfterFinishedController,
    "disruption": DisruptionController,
    "horizontalpodautoscaling": HorizontalPodAutoscalerController,
    "endpointslicemirroring": EndpointSliceMirroringController,
    "endpointslice": EndpointSliceController,
    "endpoint": EndpointsController,
    "nodeipam": NodeIPAMController,
    "nodelifecycle": NodeLifecycleController,
    "taint-eviction-controller": TaintEvictionController,
    "persistentvolume-binder": PersistentVolumeController,
    "statefulset": StatefulSetController,
    "pvc-protection": PVCProtectionController,
    "pv-protection": PVProtectionController,
    "replicaset": ReplicaSetController,
    "replicationcontroller": ReplicationControllerController,
    "deployment": DeploymentController,
    "garbagecollector": GarbageCollector,
    "job": JobController,
    "resourcequota": ResourceQuotaController,
    "daemonset": DaemonSetController,
    "cronjob": CronJobController,
    "service-lb-controller": ServiceLBController,
}


async def run_controllers(client: Client, names: list[str] | None = None,
                          options: ControllerOptions | None = None,
                          informers: InformerFactory | None = None) -> None:
    """Run the selected controllers (all by default) until cancelled. Informers given by the caller
    (`ketch server` shares them with its scheduler) carry the options and are the caller's to stop."""
    own = informers is None
    if informers is None:
        informers = InformerFactory(client, options=options)
    recorder = EventRecorder(client, "controller-manager")
    selected = [CONTROLLERS[n](client, informers, recorder) for n in (names or CONTROLLERS)]
    informers.start()
    try:
        await asyncio.gather(*(c.run() for c in selected))
    finally:
        await recorder.close()
        if own:
            await informers.stop()


async def run(kubeconfig_path: Path, *, leader_elect: bool = False, names: list[str] | None = None,
              lease_name: str = "kube-controller-manager", options: ControllerOptions | None = None,
              informers: InformerFactory | None = None) -> None:
    client = Client(kubeconfig.load(kubeconfig_path), user_agent=USER_AGENT)
    try:
        if not leader_elect:
            await run_controllers(client, names, options, informers)
            return
        elector = LeaderElector(client, lease_name, "kube-system", leader.identity())
        try:
            await elector.run(lambda: run_controllers(client, names, options, informers))
        finally:
            await elector.release()
    finally:
        await client.close()
