"""Opening a probe's TCP connection, with Go's error texts.

Every probe and HTTP hook reaches the pod through one function, a `Dialer(host, port)` that
returns an asyncio stream pair: in the agent it is the runtime's `open_connection`, which opens the
socket inside the pod's network namespace. The kubelet's users read probe failures as Go's net
package words them (`dial tcp 10.42.0.5:80: connect: connection refused`, `... i/o timeout`), so
the OSErrors of the socket are translated to those texts here, once, for every prober.
"""
from __future__ import annotations

import asyncio
import errno
import ipaddress
import os
import socket
from typing import Awaitable, Callable

Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]
Dialer = Callable[[str, int], Awaitable[Streams]]


class GoError(Exception):
    """An error whose str() is what Go's err.Error() gives for the same failure."""


class DialTimeout(GoError):
    """The connection was not established within the timeout (Go's i/o timeout)."""


def join_host_port(host: str, port: int) -> str:
    """net.JoinHostPort: IPv6 literals in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


def syscall_text(e: OSError) -> str:
    """Go's syscall.Errno text: the C library's strerror with a lower-case first letter."""
    if e.errno is None:
        return str(e)
    text = os.strerror(e.errno)
    return text[:1].lower() + text[1:]


def dial_error(host: str, port: int, e: BaseException) -> str:
    """The text of net.Dial's OpError for an exception of a connect attempt."""
    if isinstance(e, socket.gaierror):
        return f"dial tcp: lookup {host}: no such host"
    if isinstance(e, OSError) and e.errno is not None:
        op = "connect: " if e.errno in (errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH,
                                        errno.ETIMEDOUT, errno.EADDRNOTAVAIL) else ""
        return f"dial tcp {join_host_port(host, port)}: {op}{syscall_text(e)}"
    # The runtime's own failures (sandbox gone, netns missing) carry their message.
    return f"dial tcp {join_host_port(host, port)}: {getattr(e, 'message', '') or e}"


async def dial(dialer: Dialer, host: str, port: int, timeout: float | None) -> Streams:
    """Connect within `timeout` seconds; raises GoError (DialTimeout on timeout) worded as Go's."""
    try:
        return await asyncio.wait_for(dialer(host, port), timeout)
    except asyncio.TimeoutError:
        raise DialTimeout(f"dial tcp {join_host_port(host, port)}: i/o timeout") from None
    except asyncio.CancelledError:
        raise
    except Exception as e:  # noqa: BLE001 - every connect failure is a probe failure with Go's text
        raise GoError(dial_error(host, port, e)) from e


def close_quietly(writer: asyncio.StreamWriter) -> None:
    """Close without waiting (a probe never needs the peer's FIN) and without raising."""
    try:
        writer.close()
    except Exception:  # noqa: BLE001 - the connection may already be gone
        pass

