"""The `ketch` command."""
from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shutil
import signal
import sys
from pathlib import Path

from .. import __version__


def default_data_dir() -> Path:
    if os.geteuid() == 0:
        return Path("/var/lib/ketch")
    return Path.home() / ".local" / "share" / "ketch"


def _server(args: argparse.Namespace) -> int:
    from ..api import schema
    from ..apiserver.server import APIServer, ServerConfig

    data_dir = Path(args.data_dir or default_data_dir())
    if args.nodes < 1 or (args.nodes > 1 and (args.disable_agent or not args.node_netns)):
        print("ketch server: --nodes N needs N >= 1, a --node-netns and the agent", file=sys.stderr)
        return 2
    error = None if args.disable_agent else _agent_flags_error(args)
    if error:
        print(f"ketch server: {error}", file=sys.stderr)
        return 2
    kubeconfig = Path(args.write_kubeconfig) if args.write_kubeconfig else data_dir / "kubeconfig.yaml"
    config = ServerConfig(data_dir=data_dir, bind_address=args.bind_address, secure_port=args.secure_port,
                          kubeconfig_path=kubeconfig, datastore_endpoint=args.datastore_endpoint or "",
                          advertise_names=tuple(args.tls_san or ()), metrics_resolution=args.metrics_resolution,
                          metrics_allow_remote_kubelets=args.metrics_allow_remote_kubelets, event_ttl=args.event_ttl,
                          cluster_dns=next((d for d in (args.cluster_dns or "").split(",") if d), ""))

    async def run() -> bool:
        stop, failed = asyncio.Event(), asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        server = APIServer(config)
        await server.start()
        components = []
        shared = _shared_informers(args, data_dir, server)
        if not args.disable_controller_manager:
            from ..controllers import manager
            from ..controllers import options
            components.append(asyncio.create_task(manager.run(
                server.component_kubeconfig("controller-manager", "system:kube-controller-manager"),
                options=options.from_args(args, data_dir), informers=shared)))
        if not args.disable_scheduler:
            from ..scheduler import scheduler as kube_scheduler
            components.append(asyncio.create_task(kube_scheduler.run(
                server.component_kubeconfig("scheduler", "system:kube-scheduler"), informers=shared)))
        if not args.disable_agent:
            from ..agent.run import run as run_agent
            for agent_config, netns in _local_nodes(args, data_dir):
                components.append(asyncio.create_task(_agent_task(
                    run_agent, server.component_kubeconfig(f"node-{agent_config.node_name}",
                                                           f"system:node:{agent_config.node_name}"),
                    agent_config, netns, failed)))
        if args.simulate_nodes:
            from ..simulate.run import run as simulate
            from ..simulate.simulator import SimulatorConfig
            components.append(asyncio.create_task(simulate(
                server.component_kubeconfig("simulator", "system:node:simulator"),
                SimulatorConfig(nodes=args.simulate_nodes, metrics=True))))
        print(f"ketch: API server (Kubernetes v{schema.KUBERNETES_VERSION}) is serving on {config.url}", flush=True)
        print(f"ketch: point kubectl at it with:  export KUBECONFIG={kubeconfig}", flush=True)
        try:
            waits = [asyncio.ensure_future(e.wait()) for e in (stop, failed)]
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            for w in waits:
                w.cancel()
        finally:
            print("ketch: shutting down", flush=True)
            for task in components:
                task.cancel()
            await asyncio.gather(*components, return_exceptions=True)
            if shared is not None:
                await shared.stop()
                await shared.client.close()
            await server.stop()
        return not failed.is_set()

    return 0 if _run(run()) else 1


def _shared_informers(args: argparse.Namespace, data_dir: Path, server):  # noqa: ANN001, ANN202
    """One cache of each kind for the in-process controller manager and scheduler (as in one
    kube-controller-manager, each kind is listed and watched once per process), or None when
    only one of them runs. It watches as the controller manager, which may read every kind."""
    if args.disable_controller_manager or args.disable_scheduler:
        return None
    from ..client import kubeconfig
    from ..client.rest import Client
    from ..controllers import manager, options
    from ..controllers.base import InformerFactory
    client = Client(kubeconfig.load(server.component_kubeconfig("controller-manager", "system:kube-controller-manager")),
                    user_agent=manager.USER_AGENT)
    return InformerFactory(client, options=options.from_args(args, data_dir))


def _bytes(text: str) -> int:
    """A quantity of bytes ("10Mi", "500k", "1048576")."""
    from ..api.quantity import parse_quantity
    try:
        return parse_quantity(text).scaled_value(0)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"invalid size {text!r}: {e}") from None


def _eviction_thresholds(text: str) -> str:
    from ..agent.eviction import EvictionConfigError, parse_thresholds
    try:
        parse_thresholds(text)
    except EvictionConfigError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def _agent_config(args: argparse.Namespace, data_dir: Path):
    import socket

    from ..agent.kubelet import AgentConfig
    labels = dict(kv.split("=", 1) for kv in (args.node_labels or "").split(",") if "=" in kv)
    return AgentConfig(node_name=args.node_name or socket.gethostname().lower(), data_dir=data_dir,
                       node_ip=args.node_ip, address=args.kubelet_address, port=args.kubelet_port,
                       cluster_dns=[d for d in (args.cluster_dns or "").split(",") if d],
                       cluster_domain=args.cluster_domain, max_pods=args.max_pods, labels=labels,
                       cgroup_root=args.cgroup_root, seccomp_default=args.seccomp_default, cni_bin_dirs=[d for d in args.cni_bin_dir.split(",") if d],
                       pod_manifest_path=Path(args.pod_manifest_path) if args.pod_manifest_path else None,
                       cluster_cidr=args.cluster_cidr or DEFAULT_CLUSTER_CIDR,
                       underlay=(args.underlay or f"{args.node_netns}-net") if args.node_netns else "",
                       underlay_cidr=args.underlay_cidr, serve_dns=not args.disable_dns,
                       network=args.network or "",
                       ingress_class=args.ingress_class, ingress_address=args.ingress_address,
                       ingress_http_port=0 if args.disable_ingress else args.ingress_http_port,
                       ingress_https_port=0 if args.disable_ingress else args.ingress_https_port,
                       dns_upstream=args.dns_upstream,
                       file_check_frequency=args.file_check_frequency, eviction_hard=args.eviction_hard,
                       eviction_pressure_transition_period=args.eviction_pressure_transition_period,
                       container_log_max_size=args.container_log_max_size,
                       container_log_max_files=args.container_log_max_files)


DEFAULT_CLUSTER_CIDR = "10.42.0.0/16"


def _agent_flags_error(args: argparse.Namespace) -> str | None:
    """What is wrong with the agent flags, before anything starts."""
    from ..agent import nodenet
    from ..apiserver.allocators import SERVICE_CIDR
    from ..dns.server import parse_hostport
    import ipaddress
    if args.network and args.node_netns:
        return "--network host and --node-netns exclude each other"
    try:
        nodenet.check_underlay_cidr(args.underlay_cidr, args.cluster_cidr or DEFAULT_CLUSTER_CIDR,
                                    str(SERVICE_CIDR), getattr(args, "service_lb_cidr", "") or "")
    except ValueError as e:
        return f"--underlay-cidr: {e}"
    if args.dns_upstream:
        try:
            host, port = parse_hostport(args.dns_upstream)
            ipaddress.ip_address(host)
            if not 0 < port < 65536:
                raise ValueError(port)
        except ValueError:
            return f"--dns-upstream {args.dns_upstream}: want IP:PORT"
    return None


def _local_nodes(args: argparse.Namespace, data_dir: Path) -> list:
    """(AgentConfig, node netns) of each node `ketch server` runs on this machine: the first as the
    flags say, the others (--nodes N) named NAME-2.., in namespaces NETNS-2.. on the same underlay,
    with kubelet APIs on free ports and cgroups of their own."""
    import dataclasses
    first = _agent_config(args, data_dir)
    nodes = [(first, args.node_netns)]
    for i in range(2, args.nodes + 1):
        # Static pods are the machine's: they run on the first node only.
        # (Every node's ingress controller shares the host's ports: SO_REUSEPORT.)
        nodes.append((dataclasses.replace(first, node_name=f"{first.node_name}-{i}", port=0, node_ip="",
                                          cgroup_root=f"{first.cgroup_root}-{i}", pod_manifest_path=None),
                      f"{args.node_netns}-{i}"))
    return nodes


async def _agent_task(run_agent, kubeconfig_path: Path, config, netns: str | None, failed: asyncio.Event) -> None:
    """One in-process agent; if it fails, the server stops with it (as k3s does), saying why."""
    from ..client import kubeconfig
    from ..client.rest import Client
    from ..agent.run import API_CONNECTIONS, USER_AGENT
    client = Client(kubeconfig.load(kubeconfig_path), user_agent=USER_AGENT, connections=API_CONNECTIONS)
    try:
        await run_agent(client, config, netns)
    except Exception:  # noqa: BLE001 - reported, then the whole server goes
        logging.getLogger("ketch.agent").exception("the agent of node %s failed", config.node_name)
        failed.set()
    finally:
        await client.close()


def _agent(args: argparse.Namespace) -> int:
    from ..agent.run import API_CONNECTIONS, USER_AGENT, run
    from ..client import kubeconfig
    from ..client.rest import Client
    data_dir = Path(args.data_dir or default_data_dir())
    error = _agent_flags_error(args)
    if error:
        print(f"ketch agent: {error}", file=sys.stderr)
        return 2
    config = _agent_config(args, data_dir)
    if args.kubeconfig:
        client_config = kubeconfig.load(args.kubeconfig)
    elif args.server and args.token:
        ca = Path(args.certificate_authority).read_bytes() if args.certificate_authority else None
        client_config = kubeconfig.ClientConfig(server=args.server.rstrip("/"), token=args.token, ca_pem=ca,
                                                insecure=ca is None)
    else:
        print("ketch agent: give --kubeconfig, or --server and --token", file=sys.stderr)
        return 2

    async def main() -> None:
        client = Client(client_config, user_agent=USER_AGENT, connections=API_CONNECTIONS)
        try:
            await run(client, config, args.node_netns)
        finally:
            await client.close()
    _until_signalled(main())
    return 0


def _killall(args: argparse.Namespace) -> int:
    from ..agent.killall import killall
    data_dir = Path(args.data_dir or default_data_dir())
    removed = asyncio.run(killall(data_dir))
    print(f"ketch: removed {removed} pod sandboxes under {data_dir}")
    return 0


def add_agent_flags(p: argparse.ArgumentParser) -> None:
    from ..agent.runtime.cni import CNI_BIN_DIRS
    p.add_argument("--node-name", help="the Node's name (default: this machine's hostname)")
    p.add_argument("--node-ip", default="", help="the node's InternalIP and pods' hostIP (default: its address on "
                                                 "the underlay with --node-netns, else 127.0.0.1)")
    p.add_argument("--node-labels", help="extra labels of the Node, k=v,k2=v2")
    p.add_argument("--node-netns", metavar="NAME",
                   help="a network namespace standing in for the node's host network (made if missing): the "
                        "pods' bridge lives there instead of in the agent's own namespace")
    p.add_argument("--network", choices=["host"],
                   help="host: the node is this machine's network namespace (its real interfaces and "
                        "iptables): pods, service proxy, DNS and routes to other machines' pods there; "
                        "for clusters of several machines (not with --node-netns)")
    p.add_argument("--underlay", metavar="NAME",
                   help="with --node-netns: the network namespace of the bridge the nodes share (made if "
                        "missing; default NODE_NETNS-net); agents joining a cluster give the cluster's")
    p.add_argument("--underlay-cidr", default="172.30.0.0/16",
                   help="addresses of the nodes on the underlay (default 172.30.0.0/16)")
    p.add_argument("--dns-upstream", metavar="IP:PORT",
                   help="where cluster DNS sends names outside the cluster domain (default: none, SERVFAIL)")
    p.add_argument("--disable-dns", action="store_true", help="serve no cluster DNS on this node")
    p.add_argument("--ingress-class", default="ketch", help="the ingress controller's IngressClass (default ketch)")
    p.add_argument("--ingress-address", default="127.0.0.1",
                   help="host address the ingress controller listens on (default 127.0.0.1)")
    p.add_argument("--ingress-http-port", type=int, default=80, help="its HTTP port (default 80; 0: none)")
    p.add_argument("--ingress-https-port", type=int, default=443, help="its HTTPS port (default 443; 0: none)")
    p.add_argument("--disable-ingress", action="store_true", help="run no ingress controller on this node")
    p.add_argument("--kubelet-address", default="127.0.0.1", help="address of the kubelet API (default 127.0.0.1)")
    p.add_argument("--kubelet-port", type=int, default=10250, help="port of the kubelet API (default 10250; 0: any)")
    p.add_argument("--cluster-dns", default="10.43.0.10", help="comma-separated DNS servers of the pods "
                                                              "(default 10.43.0.10)")
    p.add_argument("--cluster-domain", default="cluster.local", help="the cluster's DNS domain (default cluster.local)")
    p.add_argument("--max-pods", type=int, default=110, help="pods the node takes at most (default 110)")
    p.add_argument("--pod-manifest-path", metavar="DIR", help="run the pods of the manifests in DIR as static pods")
    p.add_argument("--file-check-frequency", type=_duration, default=20.0, metavar="DURATION",
                   help="how often the manifest directory is re-read (default 20s)")
    p.add_argument("--eviction-hard", type=_eviction_thresholds, default="memory.available<100Mi,nodefs.available<10%",
                   help="hard eviction thresholds, SIGNAL<QUANTITY|PERCENT,... with memory.available, "
                        "nodefs.available, pid.available (default memory.available<100Mi,nodefs.available<10%%)")
    p.add_argument("--eviction-pressure-transition-period", type=_duration, default=300.0, metavar="DURATION",
                   help="how long a pressure condition stays after its signal recovered (default 5m0s)")
    p.add_argument("--container-log-max-size", type=_bytes, default=10 * 1024**2, metavar="SIZE",
                   help="rotate a container's log at this size (default 10Mi)")
    p.add_argument("--container-log-max-files", type=int, default=5,
                   help="log files kept per container, the live one included (default 5)")
    p.add_argument("--seccomp-default", action="store_true",
                   help="run containers that name no seccomp profile with RuntimeDefault (default: Unconfined)")
    p.add_argument("--cni-bin-dir", default=",".join(CNI_BIN_DIRS), metavar="DIR[,DIR...]",
                   help=f"where the CNI plugins are found, first match wins (default {','.join(CNI_BIN_DIRS)})")
    p.add_argument("--cgroup-root", default="kubepods",
                   help="cgroup of the pods, relative to the agent's own cgroup (default kubepods)")


def _until_signalled(coro) -> None:
    """Run `coro` until it returns or SIGTERM/SIGINT arrives."""
    async def main() -> None:
        task = asyncio.ensure_future(coro)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, task.cancel)
        try:
            await task
        except asyncio.CancelledError:
            pass
    _run(main())


def _controller_manager(args: argparse.Namespace) -> int:
    from ..controllers import manager
    names = [n for n in (args.controllers or "").split(",") if n] or None
    unknown = [n for n in names or () if n not in manager.CONTROLLERS]
    if unknown:
        print(f"ketch: unknown controllers {', '.join(unknown)}; known: {', '.join(manager.CONTROLLERS)}",
              file=sys.stderr)
        return 2
    from ..controllers import options
    data_dir = Path(args.data_dir or default_data_dir())
    _until_signalled(manager.run(Path(args.kubeconfig), leader_elect=args.leader_elect, names=names,
                                 options=options.from_args(args, data_dir)))
    return 0


def _simulate(args: argparse.Namespace) -> int:
    from ..simulate.nodes import NodeProfile
    from ..simulate.run import run
    from ..simulate.simulator import SimulatorConfig
    labels = dict(kv.split("=", 1) for kv in (args.labels or "").split(",") if "=" in kv)
    profile = NodeProfile(cpu=args.cpu, memory=args.memory, pods=args.pods, zones=args.zones, labels=labels)
    config = SimulatorConfig(nodes=args.nodes, name_prefix=args.name_prefix, profile=profile,
                             start_delay=args.start_delay, lease_interval=args.lease_interval,
                             heartbeat_interval=args.heartbeat_interval, concurrency=args.concurrency,
                             metrics=args.metrics, pod_cpu=args.pod_cpu, pod_memory=args.pod_memory,
                             cleanup=args.cleanup)
    _until_signalled(run(Path(args.kubeconfig), config))
    return 0


def _scheduler(args: argparse.Namespace) -> int:
    from ..scheduler import scheduler
    _until_signalled(scheduler.run(Path(args.kubeconfig), leader_elect=args.leader_elect,
                                   percentage_of_nodes_to_score=args.percentage_of_nodes_to_score,
                                   scheduler_name=args.scheduler_name,
                                   lease_name=args.lock_object_name or "kube-scheduler"))
    return 0


def _run(coro):
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def _kubectl(args: list[str]) -> int:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        print("ketch: kubectl not found on PATH", file=sys.stderr)
        return 127
    env = dict(os.environ)
    if "KUBECONFIG" not in env:
        # The local server's admin kubeconfig: KETCH_DATA_DIR, the default data dir, or `make up`'s.
        candidates = [Path(env["KETCH_DATA_DIR"]) / "kubeconfig.yaml"] if "KETCH_DATA_DIR" in env else []
        candidates += [default_data_dir() / "kubeconfig.yaml", Path(".ketch/data/kubeconfig.yaml")]
        env["KUBECONFIG"] = str(next((c for c in candidates if c.exists()), candidates[0]))
    os.execve(kubectl, [kubectl, *args], env)
    return 0  # not reached


def _duration(text: str) -> float:
    """A positive Go duration ("15s", "500ms", "1m30s") or a bare number of seconds."""
    from ..api import durations
    try:
        seconds = durations.parse(text.strip(), bare_seconds=True)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"duration must be positive: {text}")
    return seconds


def build_parser() -> argparse.ArgumentParser:
    from ..controllers import options as controller_options
    parser = argparse.ArgumentParser(prog="ketch", description="Kubernetes, in Python.")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    sub = parser.add_subparsers(dest="command", required=True)

    server = sub.add_parser("server", help="run the control plane in the foreground")
    server.add_argument("--data-dir", help="state directory (default /var/lib/ketch as root, else "
                                           "~/.local/share/ketch)")
    server.add_argument("--bind-address", default="127.0.0.1", help="address to serve HTTPS on")
    server.add_argument("--secure-port", type=int, default=6443, help="HTTPS port (default 6443)")
    server.add_argument("--write-kubeconfig", help="write the admin kubeconfig here "
                                                   "(default DATA_DIR/kubeconfig.yaml)")
    server.add_argument("--datastore-endpoint", help="sqlite:///path/to/state.db (default DATA_DIR/state.db)")
    server.add_argument("--tls-san", action="append", help="extra name or IP for the serving certificate")
    server.add_argument("--disable-agent", action="store_true", help="run no node agent for this machine")
    server.add_argument("--disable-controller-manager", action="store_true",
                        help="run no controllers in-process (run `ketch controller-manager` instead)")
    server.add_argument("--disable-scheduler", action="store_true",
                        help="run no scheduler in-process (run `ketch scheduler` instead)")
    server.add_argument("--nodes", type=int, default=1, metavar="N",
                        help="run N nodes with real containers on this machine, each in a network namespace "
                             "of its own (NODE_NETNS, NODE_NETNS-2, ...; needs --node-netns) (default 1)")
    server.add_argument("--simulate-nodes", type=int, default=0, metavar="N",
                        help="register N simulated nodes in-process (sim-0..), as `ketch simulate --metrics` "
                             "does, so pods run as far as the API can tell (default 0)"),
    server.add_argument("--metrics-resolution", type=_duration, default=15.0, metavar="DURATION",
                        help="how often kubelets are scraped for metrics.k8s.io, e.g. 15s (default), 2s, 500ms")
    server.add_argument("--metrics-allow-remote-kubelets", action="store_true",
                        help="scrape kubelets whose URL is not loopback (a multi-machine cluster)")
    server.add_argument("--event-ttl", type=_duration, default=3600.0, metavar="DURATION",
                        help="how long an Event is kept after its last write, as kube-apiserver's flag "
                             "(default 1h0m0s)")
    controller_options.add_flags(server)
    add_agent_flags(server)
    server.set_defaults(func=_server)

    agent = sub.add_parser("agent", help="run a node agent (kubelet) against an API server")
    agent.add_argument("--server", help="the API server's URL, with --token")
    agent.add_argument("--token", help="the API server's join token (its DATA_DIR/node-token)")
    agent.add_argument("--certificate-authority", help="the cluster CA to verify the server with (default: "
                                                       "not verified)")
    agent.add_argument("--kubeconfig", help="kubeconfig with the API server and credentials (instead of --server)")
    agent.add_argument("--data-dir", help="state directory: images, containers, pod volumes and logs (default as "
                                          "ketch server's)")
    agent.add_argument("--cluster-cidr", default="10.42.0.0/16",
                       help="the cluster's pod network, for the service proxy (default 10.42.0.0/16)")
    add_agent_flags(agent)
    agent.set_defaults(func=_agent)

    killall = sub.add_parser("killall", help="stop and remove every pod the node agents of a data dir run "
                                             "(the agents must be stopped), as k3s-killall.sh")
    killall.add_argument("--data-dir", help="the agents' state directory (default as ketch server's)")
    killall.set_defaults(func=_killall)

    cm = sub.add_parser("controller-manager", help="run the controllers alone against an API server")
    cm.add_argument("--kubeconfig", required=True, help="kubeconfig with the API server and credentials")
    cm.add_argument("--leader-elect", action=argparse.BooleanOptionalAction, default=True,
                    help="elect one active copy through the kube-system/kube-controller-manager Lease "
                         "(default on)")
    cm.add_argument("--controllers", help="comma-separated controllers to run (default all)")
    cm.add_argument("--data-dir", help="where the local-path provisioner keeps volumes, under storage/ "
                                       "(default as ketch server's)")
    controller_options.add_flags(cm)
    cm.set_defaults(func=_controller_manager)

    sim = sub.add_parser("simulate", help="run simulated nodes (as kwok does) against an API server")
    sim.add_argument("--kubeconfig", required=True, help="kubeconfig with the API server and credentials")
    sim.add_argument("--nodes", type=int, default=3, help="how many nodes (default 3)")
    sim.add_argument("--name-prefix", default="sim-", help="node names are PREFIX0, PREFIX1, ... (default sim-)")
    sim.add_argument("--cpu", default="4", help="cpu capacity of each node (default 4)")
    sim.add_argument("--memory", default="16Gi", help="memory capacity of each node (default 16Gi)")
    sim.add_argument("--pods", type=int, default=110, help="pod capacity of each node (default 110)")
    sim.add_argument("--zones", type=int, default=3, help="spread the nodes over this many zones (default 3)")
    sim.add_argument("--labels", help="extra node labels, k=v,k2=v2")
    sim.add_argument("--start-delay", type=float, default=0.0, help="seconds from binding to Running (default 0)")
    sim.add_argument("--lease-interval", type=float, default=10.0, help="seconds between lease renewals (default 10)")
    sim.add_argument("--heartbeat-interval", type=float, default=60.0,
                     help="seconds between node status heartbeats (default 60)")
    sim.add_argument("--concurrency", type=int, default=50, help="API requests in flight at most (default 50)")
    sim.add_argument("--metrics", action="store_true", help="keep simulated pod usage (ketch.io/simulate-cpu, "
                                                             "ketch.io/simulate-memory annotations)")
    sim.add_argument("--pod-cpu", default="1m", help="simulated cpu use of a container (default 1m)")
    sim.add_argument("--pod-memory", default="8Mi", help="simulated memory use of a container (default 8Mi)")
    sim.add_argument("--cleanup", action="store_true", help="delete the nodes and their leases on exit")
    sim.set_defaults(func=_simulate)

    sched = sub.add_parser("scheduler", help="run the scheduler alone against an API server")
    sched.add_argument("--kubeconfig", required=True, help="kubeconfig with the API server and credentials")
    sched.add_argument("--leader-elect", action=argparse.BooleanOptionalAction, default=True,
                       help="elect one active copy through the kube-system/kube-scheduler Lease (default on)")
    sched.add_argument("--percentage-of-nodes-to-score", type=int, default=0,
                       help="share of nodes to find feasible before scoring (default adaptive, as upstream)")
    sched.add_argument("--scheduler-name", default="default-scheduler",
                       help="schedule the pods whose spec.schedulerName is this (default default-scheduler)")
    sched.add_argument("--lock-object-name", help="the kube-system Lease to elect on (default kube-scheduler)")
    sched.set_defaults(func=_scheduler)

    kubectl = sub.add_parser("kubectl", help="run kubectl against this machine's ketch server",
                             add_help=False)
    kubectl.add_argument("args", nargs=argparse.REMAINDER)
    kubectl.set_defaults(func=lambda a: _kubectl(a.args))

    from ..images import cli as image_cli
    image_cli.add_parser(sub, default_data_dir)

    version = sub.add_parser("version", help="print the version")
    version.set_defaults(func=lambda a: print(f"ketch {__version__}") or 0)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["kubectl"]:
        return _kubectl(argv[1:])
    args = build_parser().parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=max(level, logging.DEBUG), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
