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
    kubeconfig = Path(args.write_kubeconfig) if args.write_kubeconfig else data_dir / "kubeconfig.yaml"
    os.environ["KETCH_DATA_DIR"] = str(data_dir.resolve())  # where the in-process provisioner keeps volumes
    config = ServerConfig(data_dir=data_dir, bind_address=args.bind_address, secure_port=args.secure_port,
                          kubeconfig_path=kubeconfig, datastore_endpoint=args.datastore_endpoint or "",
                          advertise_names=tuple(args.tls_san or ()))

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        server = APIServer(config)
        await server.start()
        from ..controllers import manager
        controllers = asyncio.create_task(manager.run(
            server.component_kubeconfig("controller-manager", "system:kube-controller-manager")))
        print(f"ketch: API server (Kubernetes v{schema.KUBERNETES_VERSION}) is serving on {config.url}", flush=True)
        print(f"ketch: point kubectl at it with:  export KUBECONFIG={kubeconfig}", flush=True)
        try:
            await stop.wait()
        finally:
            print("ketch: shutting down", flush=True)
            controllers.cancel()
            await asyncio.gather(controllers, return_exceptions=True)
            await server.stop()

    _run(run())
    return 0


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
    _until_signalled(manager.run(Path(args.kubeconfig), leader_elect=args.leader_elect, names=names))
    return 0


def _run(coro) -> None:
    try:
        import uvloop
        uvloop.run(coro)
    except ImportError:
        asyncio.run(coro)


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


def build_parser() -> argparse.ArgumentParser:
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
    server.add_argument("--disable-agent", action="store_true", help="run no node agent (the only mode so far)")
    server.set_defaults(func=_server)

    cm = sub.add_parser("controller-manager", help="run the controllers alone against an API server")
    cm.add_argument("--kubeconfig", required=True, help="kubeconfig with the API server and credentials")
    cm.add_argument("--leader-elect", action=argparse.BooleanOptionalAction, default=True,
                    help="elect one active copy through the kube-system/kube-controller-manager Lease "
                         "(default on)")
    cm.add_argument("--controllers", help="comma-separated controllers to run (default all)")
    cm.set_defaults(func=_controller_manager)

    kubectl = sub.add_parser("kubectl", help="run kubectl against this machine's ketch server",
                             add_help=False)
    kubectl.add_argument("args", nargs=argparse.REMAINDER)
    kubectl.set_defaults(func=lambda a: _kubectl(a.args))

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
