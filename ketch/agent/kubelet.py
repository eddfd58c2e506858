"""The node agent (kubelet): registers its Node, renews its Lease, reports the node's conditions,
and runs the pods bound to it as containers through the runtime.

Parts: `PodWorker` (podworker.py) takes each pod a step towards its spec; the PLEG loop here
relists the runtime every second and wakes the worker of any pod whose containers changed state;
the image manager, volume manager, prober and the kubelet API server (logs, exec, attach,
port-forward, stats) are each their own module. The kubelet only reads and writes the API through
the client: pods bound to this node (a field-selected informer), services (for the environment),
and single GETs of the ConfigMaps, Secrets and claims a pod uses.
"""
from __future__ import annotations

import asyncio
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..api.errors import ApiError
from ..api.quantity import parse_quantity
from ..client.events import EventRecorder
from ..client.informer import Informer, object_key
from ..client.rest import Client
from ..controllers.base import InformerFactory
from . import containers as cc
from . import env as podenv
from . import eviction
from . import logs
from . import node as nodeinfo
from . import podfiles
from . import staticpods
from .imagepull import ImageManager
from .podworker import PodWorker
from .prober.manager import ProbeManager
from .runtime.api import ContainerStatus, RuntimeService
from .runtime.cni import CNI_BIN_DIRS
from .volumes import VolumeManager
from .volumes.projections import ProjectionError

log = logging.getLogger("ketch.agent")

PLEG_PERIOD = 1.0
LEASE_RENEW = 10.0                  # a quarter of the lease's 40 s
STATUS_UPDATE = 10.0                # nodeStatusUpdateFrequency: conditions checked this often
STATUS_REPORT = 60.0                # ... and written at least this often even when unchanged
KUBELET_URL_ANNOTATION = "ketch.io/kubelet-url"
LOG_ROTATION_PERIOD = 10.0          # containerLogMonitorInterval
TERMINATION_MESSAGE_MAX = 4096      # the kubelet's limits on a termination message
FALLBACK_LOG_LINES, FALLBACK_LOG_BYTES = 80, 2048


@dataclass
class AgentConfig:
    node_name: str
    data_dir: Path
    node_ip: str = ""                  # "": the node's underlay address, else 127.0.0.1
    address: str = "127.0.0.1"         # where the kubelet API listens
    port: int = nodeinfo.KUBELET_PORT  # 0: any free port
    cluster_dns: list[str] = field(default_factory=list)
    cluster_domain: str = "cluster.local"
    max_pods: int = nodeinfo.MAX_PODS
    labels: dict[str, str] = field(default_factory=dict)
    pod_manifest_path: Path | None = None
    file_check_frequency: float = staticpods.SCAN_PERIOD
    eviction_hard: str = eviction.DEFAULT_HARD
    container_log_max_size: int = 10 * 1024**2   # containerLogMaxSize 10Mi
    container_log_max_files: int = 5
    eviction_pressure_transition_period: float = 300.0
    cgroup_root: str = "kubepods"      # the pods' cgroups, relative to the agent's own cgroup
    seccomp_default: bool = False      # RuntimeDefault for containers that name no seccomp profile
    cni_bin_dirs: list[str] = field(default_factory=lambda: list(CNI_BIN_DIRS))  # where CNI plugins are looked up
    cluster_cidr: str = "10.42.0.0/16"  # the cluster's pod network (the service proxy masquerades the rest)
    network: str = ""                  # "host": the network services run in the agent's own namespace
    underlay: str = ""                 # netns of the bridge the node namespaces share ("": none)
    underlay_cidr: str = "172.30.0.0/16"
    serve_dns: bool = True             # answer cluster DNS on the node's address (behind kube-dns)
    dns_upstream: str | None = None    # where names outside the cluster domain go (None: SERVFAIL)
    ingress_class: str = "ketch"       # the ingress controller's IngressClass
    ingress_address: str = "127.0.0.1"  # where it listens on the host (and writes into Ingress status)
    ingress_http_port: int = 80        # 0: no HTTP listener
    ingress_https_port: int = 443      # 0: no HTTPS listener; both 0: no ingress controller

    @property
    def root(self) -> Path:
        """The agent's own state, per node (several agents may share one machine's data dir)."""
        return self.data_dir / "agent" / self.node_name

    @property
    def seccomp_root(self) -> Path:
        """Where Localhost seccomp profiles are found (the kubelet's <root-dir>/seccomp)."""
        return self.root / "seccomp"

    @property
    def pod_log_root(self) -> Path:
        return self.data_dir / "agent" / self.node_name / "pod-logs"


class ApiSource:
    """What env.py and volumes.py read from the API, for the pods of this node."""

    def __init__(self, kubelet: "Kubelet"):
        self.k = kubelet

    async def _get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> dict | None:
        try:
            return await self.k.client.resource(api_version, kind).get(name, namespace)
        except ApiError as e:
            if e.code == 404:
                return None
            raise

    async def config_map(self, namespace: str, name: str) -> dict | None:
        return await self._get("v1", "ConfigMap", name, namespace)

    async def secret(self, namespace: str, name: str) -> dict | None:
        return await self._get("v1", "Secret", name, namespace)

    async def service_account_token(self, namespace: str, account: str, audience: str, expiration: int,
                                    pod: dict) -> str | None:
        """A token bound to the pod (TokenRequest), as the kubelet's token manager asks for one;
        None when the API server has no TokenRequest API."""
        meta = pod["metadata"]
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                "spec": {"audiences": [audience] if audience else [], "expirationSeconds": expiration,
                         "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": meta["name"],
                                            "uid": meta["uid"]}}}
        path = self.k.client.resource("v1", "ServiceAccount").path(account, namespace, "token")
        try:
            answer = await self.k.client.request("POST", path, body=body)
        except ApiError as e:
            if e.code == 404 and "serviceaccounts" not in e.message:
                return None  # no such API (the account missing is an error, as upstream)
            raise ProjectionError(f'failed to fetch token: {e.message}') from None
        return answer["status"]["token"]

    async def services(self, namespace: str) -> list[dict]:
        return [s for s in self.k.services.list() if s["metadata"].get("namespace") == namespace]

    async def node_allocatable(self) -> dict[str, str]:
        return self.k.facts.allocatable(self.k.config.max_pods)

    async def persistent_volume_claim(self, namespace: str, name: str) -> dict | None:
        return await self._get("v1", "PersistentVolumeClaim", name, namespace)

    async def persistent_volume(self, name: str) -> dict | None:
        return await self._get("v1", "PersistentVolume", name)


class Kubelet:
    def __init__(self, client: Client, config: AgentConfig, runtime: RuntimeService, image_store):
        self.client = client
        self.config = config
        self.runtime = runtime
        self.image_store = image_store
        self.node_name = config.node_name
        self.node_ip = config.node_ip or "127.0.0.1"
        self.facts = nodeinfo.MachineFacts.read(config.data_dir)
        self.eviction = eviction.EvictionManager(config.data_dir, eviction.parse_thresholds(config.eviction_hard),
                                                 config.eviction_pressure_transition_period)
        self.recorder = EventRecorder(client, "kubelet", host=config.node_name)
        self.informers = InformerFactory(client)
        self.pods = Informer(client.resource("v1", "Pod"), field_selector=f"spec.nodeName={config.node_name}")
        self.services = self.informers.informer("v1", "Service")
        self.images = ImageManager(image_store, self.recorder)
        self.source = ApiSource(self)
        self.volumes = VolumeManager(config.root, self.source)
        self.static = staticpods.StaticPods(config.pod_manifest_path, config.node_name) \
            if config.pod_manifest_path else None
        self.worker = PodWorker(self)
        self.prober = ProbeManager(runtime, self.recorder, self.worker.probe_result)
        self.node_api = client.resource("v1", "Node")
        self.lease_api = client.resource("coordination.k8s.io/v1", "Lease", nodeinfo.LEASE_NAMESPACE)
        self.runtime_name = "ketch-runc"
        self.runtime_version = ""
        self.node_uid = ""
        self.pod_cidr = ""
        self.kubelet_url = ""
        self.ready = asyncio.Event()
        self._last_report = 0.0
        self._reported: tuple | None = None
        self._transitions: dict[str, tuple[str, str]] = {}   # condition -> (status, since)
        self._pleg: dict[str, str] = {}

    # ---- what the pod worker asks ----------------------------------------------------------------

    def pod(self, key: str) -> dict | None:
        """The pod to run under `key`: a static pod, else the API's pod bound here (not a mirror)."""
        if self.static is not None and key in self.static.pods:
            return self.static.pods[key]
        pod = self.pods.get(key)
        return None if staticpods.is_mirror(pod) else pod

    def pod_log_dir(self, pod: dict) -> Path:
        """/var/log/pods/<namespace>_<name>_<uid>, as the kubelet lays out its log files."""
        meta = pod["metadata"]
        return self.config.pod_log_root / f"{meta['namespace']}_{meta['name']}_{meta['uid']}"

    def container_log_path(self, pod: dict, name: str, attempt: int) -> Path:
        path = self.pod_log_dir(pod) / name / f"{attempt}.log"
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def _termination_file(self, pod: dict, name: str, attempt: int) -> Path:
        return self.config.root / "pods" / pod["metadata"]["uid"] / "containers" / name / f"termination-{attempt}"

    def termination_log(self, pod: dict, name: str, attempt: int) -> Path:
        """The host file mounted at the container's terminationMessagePath (made empty)."""
        path = self._termination_file(pod, name, attempt)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(exist_ok=True)
        return path

    def termination_message(self, pod: dict, container: dict, cs: ContainerStatus) -> str:
        """The file at terminationMessagePath, else (FallbackToLogsOnError, failed) the log's tail."""
        try:
            message = self._termination_file(pod, container["name"], cs.attempt).read_bytes()[
                :TERMINATION_MESSAGE_MAX].decode(errors="replace")
        except OSError:
            message = ""
        if not message and container.get("terminationMessagePolicy") == "FallbackToLogsOnError" and cs.exit_code:
            message = _log_tail(Path(cs.log_path), FALLBACK_LOG_LINES, FALLBACK_LOG_BYTES)
        return message

    def pod_ip(self, pod: dict, sandbox) -> str:
        """The pod's IP: its sandbox's, or for a hostNetwork pod its node's (as the kubelet says)."""
        if sandbox is None:
            return ""
        return self.node_ip if pod["spec"].get("hostNetwork") else sandbox.ip

    def pod_files(self, pod: dict, pod_ips: list[str]) -> podfiles.PodFiles:
        """Write the pod's /etc/hosts, resolv.conf and hostname (again once its IP is known)."""
        files = podfiles.write_pod_files(self.config.root / "pods" / pod["metadata"]["uid"], pod, pod_ips,
                                         cluster_dns=self.config.cluster_dns,
                                         cluster_domain=self.config.cluster_domain)
        for reason, message in files.warnings:
            self.recorder.event(pod, "Warning", reason, message)
        return files

    async def container_env(self, pod: dict, container: dict, sandbox) -> tuple[list, list, list]:
        view = _with_ips(pod, self.node_ip, self.pod_ip(pod, sandbox))
        built = await podenv.container_env_with_warnings(view, container, self.source)
        for reason, message in built.warnings:
            self.recorder.event(pod, "Warning", reason, message)
        command, args = podenv.expand_command_and_args(container, built.env)
        return built.env, command, args

    def check_non_root(self, pod: dict, container: dict, image) -> None:
        """runAsNonRoot: refuse an image that would run as root, as the kubelet does."""
        sc = cc._security(pod, container)
        if not sc.get("runAsNonRoot"):
            return
        meta = pod["metadata"]
        where = f'(pod: "{meta["name"]}_{meta["namespace"]}({meta["uid"]})", container: {container["name"]})'
        uid = sc.get("runAsUser")
        if uid is None:
            user = ((getattr(image, "config", None) or {}).get("User") or "").split(":", 1)[0]
            if user and not user.isdigit():
                raise podenv.ConfigError(f"container has runAsNonRoot and image has non-numeric user ({user}), "
                                         f"cannot verify user is non-root {where}")
            uid = int(user) if user else 0
        if int(uid) == 0:
            raise podenv.ConfigError(f"container has runAsNonRoot and image will run as root {where}")

    def image_names(self, container: dict, cs: ContainerStatus) -> tuple[str, str]:
        image = self.image_store.resolve(container.get("image") or "") if self.image_store else None
        name = (image.repo_tags[0] if image is not None and image.repo_tags else container.get("image", ""))
        image_id = (image.repo_digests[0] if image is not None and image.repo_digests else cs.image_id)
        return name, image_id


    # ---- running -------------------------------------------------------------------------------

    async def run(self) -> None:
        version = await self.runtime.version()
        self.runtime_name, self.runtime_version = version.runtime_name, version.runtime_version
        await self.register()
        self.pods.add_handlers(on_add=self._pod_event, on_update=lambda _o, n: self._pod_event(n),
                               on_delete=self._pod_event)
        self.pods.start()
        self.informers.start()
        await asyncio.gather(self.pods.wait_synced(), self.informers.wait_synced())
        await self._adopt()
        if self.static is not None:
            self._scan_static()
        self.ready.set()
        log.warning("node %s ready (pod CIDR %s)", self.node_name, self.pod_cidr or "none yet")
        try:
            await asyncio.gather(self.worker.run(), self._pleg_loop(), self._lease_loop(), self._status_loop(),
                                 self._static_loop(), self._log_rotation_loop())
        finally:
            await self.prober.stop()
            await self.pods.stop()
            await self.informers.stop()
            await self.recorder.close()

    def _pod_event(self, pod: dict) -> None:
        self.worker.enqueue(object_key(pod))

    async def _adopt(self) -> None:
        """After a restart: every pod the runtime still runs gets a sync, bound here or not."""
        for sb in await self.runtime.list_pod_sandboxes():
            ns, name = sb.labels.get(cc.POD_NAMESPACE), sb.labels.get(cc.POD_NAME)
            if ns and name:
                self.worker.enqueue(f"{ns}/{name}")

    async def _log_rotation_loop(self) -> None:
        """The kubelet's container log manager: a log past the size limit is rotated (the runtime
        reopens it), keeping the newest files."""
        while True:
            await asyncio.sleep(LOG_ROTATION_PERIOD)
            try:
                containers = await self.runtime.list_containers()
            except Exception as e:  # noqa: BLE001 - try again next round
                log.info("log rotation: %s", e)
                continue
            for c in containers:
                if c.state != "running" or not c.log_path:
                    continue
                try:
                    # in a thread: compressing a rotated log takes a while
                    if await asyncio.to_thread(logs.rotate, c.log_path, self.config.container_log_max_size,
                                               self.config.container_log_max_files) is not None:
                        await self.runtime.reopen_container_log(c.id)
                except Exception as e:  # noqa: BLE001 - one log must not stop the others
                    log.info("log rotation of %s: %s", c.id[:12], e)

    def _scan_static(self) -> None:
        try:
            for key in self.static.scan():
                self.worker.enqueue(key)
        except Exception as e:  # noqa: BLE001 - a bad manifest must not stop the agent
            log.warning("static pods in %s: %s", self.config.pod_manifest_path, e)

    async def _static_loop(self) -> None:
        if self.static is None:
            return
        while True:
            await asyncio.sleep(self.config.file_check_frequency)
            self._scan_static()

    async def _pleg_loop(self) -> None:
        """The pod lifecycle event generator: relist, and sync each pod whose containers changed."""
        while True:
            await asyncio.sleep(PLEG_PERIOD)
            try:
                containers = await self.runtime.list_containers()
            except Exception as e:  # noqa: BLE001 - a failing relist must not stop the agent
                log.info("relist: %s", e)
                continue
            seen: dict[str, str] = {}
            for c in containers:
                seen[c.id] = c.state
                if self._pleg.get(c.id) != c.state:
                    ns, name = c.labels.get(cc.POD_NAMESPACE), c.labels.get(cc.POD_NAME)
                    if ns and name:
                        self.worker.enqueue(f"{ns}/{name}")
            self._pleg = seen

    # ---- the node ------------------------------------------------------------------------------

    async def register(self) -> None:
        meta = {"name": self.node_name,
                "labels": {**nodeinfo.base_labels(self.node_name), **self.config.labels},
                "annotations": {"node.alpha.kubernetes.io/ttl": "0",
                                "volumes.kubernetes.io/controller-managed-attach-detach": "true",
                                **({KUBELET_URL_ANNOTATION: self.kubelet_url} if self.kubelet_url else {})}}
        try:
            # As the kubelet, register with the status filled in: no reader sees a Node without one.
            node = await self.node_api.create({"apiVersion": "v1", "kind": "Node", "metadata": meta, "spec": {},
                                               "status": self._node_status(self.eviction.conditions())})
            log.info("registered node %s", self.node_name)
        except ApiError as e:
            if e.code != 409:
                raise
            node = await self.node_api.patch(self.node_name, {"metadata": meta})
        self.node_uid = node["metadata"]["uid"]
        await self._report_status(force=True)
        await self._renew()
        # The node IPAM controller assigns the pod CIDR shortly after registration.
        for _ in range(100):
            node = await self.node_api.get(self.node_name)
            cidr = (node.get("spec") or {}).get("podCIDR") or ""
            if cidr:
                await self._set_pod_cidr(cidr)
                return
            await asyncio.sleep(0.1)
        log.warning("node %s has no podCIDR yet; pods wait for one", self.node_name)

    async def _set_pod_cidr(self, cidr: str) -> None:
        if cidr and cidr != self.pod_cidr:
            self.pod_cidr = cidr
            await self.runtime.update_runtime_config(cidr)

    async def _renew(self) -> None:
        now = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + f".{time.time_ns() // 1000 % 1_000_000:06d}Z"
        await nodeinfo.renew_lease(self.lease_api, self.node_name, self.node_uid, now)

    async def _lease_loop(self) -> None:
        while True:
            await asyncio.sleep(LEASE_RENEW)
            try:
                await self._renew()
            except Exception as e:  # noqa: BLE001 - the agent outlives a failed heartbeat
                log.info("lease renewal: %s", e)

    async def _report_status(self, force: bool = False) -> None:
        pressure = self.eviction.conditions()
        key = tuple(sorted(pressure.items()))
        if not force and key == self._reported and time.monotonic() - self._last_report < STATUS_REPORT:
            return
        await self.node_api.patch(self.node_name, {"status": self._node_status(pressure)}, "merge",
                                  subresource="status")
        self._reported, self._last_report = key, time.monotonic()

    def _node_status(self, pressure: dict[str, bool]) -> dict:
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        status = nodeinfo.node_status(self.node_name, self.node_ip, self.facts,
                                      f"{self.runtime_name}://{self.runtime_version}", now,
                                      self.config.port, self.config.max_pods)
        conditions = nodeinfo.node_conditions(now, pressure=pressure)
        for c in conditions:   # a condition's transition time moves only when its status does
            last = self._transitions.get(c["type"])
            if last is not None and last[0] == c["status"]:
                c["lastTransitionTime"] = last[1]
        status["conditions"] = conditions
        self._transitions = {c["type"]: (c["status"], c["lastTransitionTime"]) for c in conditions}
        status["images"] = self._images()
        return status

    # ---- node-pressure eviction -----------------------------------------------------------------

    async def _reclaim(self) -> None:
        """Past a hard threshold: free images (disk), else evict the first pod in upstream's order."""
        for threshold, obs in self.eviction.met():
            resource = eviction.RESOURCE[threshold.signal]
            self.recorder.event(self._node_ref(), "Warning", "EvictionThresholdMet",
                                f"Attempting to reclaim {resource}")
            if threshold.signal == eviction.NODEFS and self.image_store is not None:
                in_use = await self._images_in_use()
                need = threshold.value(obs.capacity) - obs.available
                if await asyncio.to_thread(self.image_store.prune, in_use, need):
                    if not any(t is threshold for t, _ in self.eviction.met()):
                        continue
            usages = [u for u in [await self._usage(pod, threshold.signal) for pod in self._evictable()] if u]
            if not usages:
                continue
            victim = eviction.rank(usages)[0]
            message = eviction.eviction_message(threshold.signal, threshold, obs, victim)
            log.warning("evicting %s/%s: %s", victim.pod["metadata"]["namespace"], victim.pod["metadata"]["name"],
                        message)
            self.recorder.event(victim.pod, "Warning", "Evicted", message)
            self.worker.evict(victim.pod, message)
            return   # one pod per round, then look again

    async def _images_in_use(self) -> set[str]:
        """Images any container of this machine uses: the store is shared by every agent of the
        data dir (`ketch server --nodes N`), so the other nodes' containers count too."""
        own = self.config.root / "runtime"
        others = [r for r in (self.config.data_dir / "agent").glob("*/runtime") if r != own]
        return await images_in_use(self.runtime, others, self.image_store)

    def _node_ref(self) -> dict:
        # The kubelet's node reference carries the node's name as its uid.
        return {"kind": "Node", "apiVersion": "v1", "metadata": {"name": self.node_name, "uid": self.node_name}}

    def _evictable(self) -> list[dict]:
        """Running pods of this node the kubelet may evict (not static pods: they are critical)."""
        out = []
        for pod in self.pods.list():
            meta = pod["metadata"]
            state = self.worker.states.get(meta["uid"])
            if staticpods.is_mirror(pod) or meta.get("deletionTimestamp") or (state and state.terminal_phase):
                continue
            if (pod.get("status") or {}).get("phase") == "Running":
                out.append(pod)
        return out

    async def _usage(self, pod: dict, signal: str) -> eviction.PodUsage | None:
        uid = pod["metadata"]["uid"]
        resource = "memory" if signal == eviction.MEMORY else "ephemeral-storage"
        containers = []
        for c in await self.runtime.list_containers(labels={cc.POD_UID: uid}):
            if c.state != "running":
                continue
            try:
                stats = await self.runtime.container_stats(c.id)
            except Exception:  # noqa: BLE001 - a container that just went has no stats
                continue
            spec = next((s for s in pod["spec"]["containers"] if s["name"] == c.name), {})
            request = ((spec.get("resources") or {}).get("requests") or {}).get(resource)
            request_bytes = parse_quantity(request).scaled_value(0) if request else 0
            if signal == eviction.MEMORY:
                used = stats.memory_working_set_bytes
            else:
                log_size = Path(c.log_path).stat().st_size if c.log_path and Path(c.log_path).exists() else 0
                used = stats.writable_layer_bytes + log_size
            containers.append((c.name, used, request_bytes))
        if not containers:
            return None
        total = sum(u for _, u, _ in containers)
        if signal == eviction.NODEFS:   # emptyDir volumes on the node's disk count too
            extra = await asyncio.to_thread(eviction.pod_disk_usage, self.volumes.pod_dir(uid))
            total += extra
            name, used, request = containers[0]
            containers[0] = (name, used + extra, request)
        return eviction.PodUsage(pod, total, sum(r for _, _, r in containers), containers)

    def _images(self) -> list[dict]:
        """node.status.images: the 50 largest images, as the kubelet reports them."""
        try:
            images = self.image_store.list() if self.image_store is not None else []
        except Exception:  # noqa: BLE001 - the image list is informational
            return []
        images = sorted(images, key=lambda i: getattr(i, "size", 0), reverse=True)[:50]
        return [{"names": [*i.repo_digests, *i.repo_tags], "sizeBytes": getattr(i, "size", 0)} for i in images]

    async def _status_loop(self) -> None:
        while True:
            await asyncio.sleep(STATUS_UPDATE)
            try:
                await self._reclaim()
                node = await self.node_api.get(self.node_name)
                ready = next((c for c in (node.get("status") or {}).get("conditions") or ()
                              if c.get("type") == "Ready"), {})
                # The node lifecycle controller marked us Unknown (we were away): say at once.
                await self._report_status(force=ready.get("status") != "True")
                await self._set_pod_cidr((node.get("spec") or {}).get("podCIDR") or "")
            except Exception as e:  # noqa: BLE001 - the agent outlives a failed status round
                log.info("node status: %s", e)


def _with_ips(pod: dict, host_ip: str, pod_ip: str) -> dict:
    """The pod as fieldRef sees it before its status is written: with hostIP and podIP filled in."""
    status = dict(pod.get("status") or {})
    status.setdefault("hostIP", host_ip)
    status.setdefault("hostIPs", [{"ip": host_ip}])
    if pod_ip:
        status["podIP"], status["podIPs"] = pod_ip, [{"ip": pod_ip}]
    return {**pod, "status": status}


def _log_tail(path: Path, lines: int, max_bytes: int) -> str:
    """The last lines of a CRI log file, their text only (the termination message fallback)."""
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(size - 64 * 1024, 0))
            data = f.read().splitlines()[-lines:]
    except OSError:
        return ""
    text = []
    for line in data:
        parts = line.split(b" ", 3)
        if len(parts) == 4:
            text.append(parts[3].decode(errors="replace") + ("\n" if parts[2] == b"F" else ""))
    return "".join(text)[-max_bytes:]


async def images_in_use(runtime: RuntimeService, other_roots, image_store) -> set[str]:
    """The image ids of `runtime`'s containers and of those under the other runtime roots (read
    with the same runtime type); every image when one cannot be read."""
    in_use = {c.image_id for c in await runtime.list_containers()}
    for root in other_roots:
        other = type(runtime)(root, image_store)
        try:
            in_use |= {c.image_id for c in await other.list_containers()}
        except Exception:  # noqa: BLE001 - unreadable: keep everything it might use
            log.warning("cannot read the containers under %s; pruning no images", root)
            return {i.id for i in await asyncio.to_thread(image_store.list)}
        finally:
            await other.close()
    return in_use
