"""`python -m ketch.dns --kubeconfig K --bind-address IP --port 53 [--upstream IP:port]`: the
cluster DNS server on its own, for trying it out before it is wired into a node agent."""
from __future__ import annotations

import argparse
import asyncio
import logging

from ..client import kubeconfig
from ..client.informer import SharedInformers
from ..client.rest import Client
from .server import ClusterDNS


async def run(args) -> None:
    client = Client(kubeconfig.load(args.kubeconfig), user_agent="ketch-dns")
    informers = SharedInformers(client)
    dns = ClusterDNS(informers, zone=args.cluster_domain, host=args.bind_address, port=args.port,
                     upstream=args.upstream)
    await dns.start()
    try:
        await asyncio.Event().wait()
    finally:
        await dns.stop()
        await informers.stop()
        await client.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m ketch.dns")
    parser.add_argument("--kubeconfig")
    parser.add_argument("--bind-address", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=53)
    parser.add_argument("--cluster-domain", default="cluster.local")
    parser.add_argument("--upstream", help="IP:port for names outside the cluster domain (none: SERVFAIL)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        asyncio.run(run(args))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
