"""Namespaces as bind-mounted files (a pod's network, IPC and UTS namespaces), and running code
inside a network namespace from a thread.

Python 3.11 has no os.setns or os.unshare, so a thread enters or unshares namespaces through
libc. Namespaces are per thread, and sockets opened inside a network namespace stay usable from
any thread afterwards.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import os
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, TypeVar

from ... import mounts

CLONE_NEWNET = 0x40000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUTS = 0x04000000

T = TypeVar("T")

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def _setns(fd: int, nstype: int) -> None:
    if _libc.setns(fd, nstype) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def umount(path: str | os.PathLike) -> None:
    """Unmount path lazily; a path that is not a mount point is left alone."""
    mounts.unmount(path, lazy=True)


def create_netns(path: Path) -> None:
    """A new, empty network namespace pinned by a bind mount at path (as `ip netns add`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()

    def pin() -> None:
        # In a thread of its own: unshare moves only this thread, which then ends.
        if _libc.unshare(CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err), "unshare(CLONE_NEWNET)")
        mounts.mount(f"/proc/self/task/{threading.get_native_id()}/ns/net", path, None,
                     flags=mounts.MS_BIND)

    try:
        run_in_netns_sync(None, pin, own_thread=True)
    except OSError as e:
        path.unlink(missing_ok=True)
        raise OSError(f"creating network namespace {path}: {e}") from e


def mount_tmpfs(target: str | os.PathLike, options: str) -> None:
    mounts.mount("shm", target, "tmpfs", options, mounts.MS_NOSUID | mounts.MS_NODEV | mounts.MS_NOEXEC)


def remove_ns_file(path: Path) -> None:
    """Undo a pinned namespace (network, IPC or UTS): unmount its file and remove it."""
    umount(path)
    path.unlink(missing_ok=True)


def is_pinned(path: str | os.PathLike) -> bool:
    """Whether a namespace is mounted on path: a namespace file lives on nsfs, not on the
    filesystem of the directory holding it (after a reboot only the empty file is left)."""
    try:
        return os.stat(path).st_dev != os.stat(os.path.dirname(path)).st_dev
    except OSError:
        return False


# Sysctls a pod may set, by the namespace that holds them (runc's list): anything else is the
# node's own and no pod may change it.
_IPC_SYSCTLS = ("kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem", "kernel.shmall",
                "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced")


def _sysctl_path(name: str) -> str:
    """/proc/sys path of a sysctl named with dots, or with slashes (the kubelet accepts both: in
    the dotted form an interface name's own dot is written as a slash, as sysctl(8) does)."""
    if "/" in name and ("." not in name or name.index("/") < name.index(".")):
        return "/proc/sys/" + name
    return "/proc/sys/" + "/".join(part.replace("/", ".") for part in name.split("."))


def check_sysctls(sysctls: dict[str, str], own_net: bool, own_ipc: bool, own_uts: bool) -> None:
    """Refuse a sysctl that would land in a namespace the pod shares with the node (runc's rules
    and wording)."""
    for name in sysctls:
        relative = _sysctl_path(name)[len("/proc/sys/"):]
        if any(part in ("", ".", "..") for part in relative.split("/")):
            raise ValueError(f'invalid sysctl name "{name}"')   # never a path out of /proc/sys
        dotted = relative.replace("/", ".")
        if dotted in _IPC_SYSCTLS or dotted.startswith("fs.mqueue."):
            if not own_ipc:
                raise ValueError(f'sysctl "{name}" is not allowed in the hosts ipc namespace')
        elif dotted.startswith("net."):
            if not own_net:
                raise ValueError(f'sysctl "{name}" not allowed in host network namespace')
        elif not (dotted == "kernel.domainname" and own_uts):
            raise ValueError(f'sysctl "{name}" is not in a separate kernel namespace')


async def pin_pod_namespaces(netns: str | None, ipc: Path | None, uts: Path | None, hostname: str,
                             sysctls: dict[str, str]) -> None:
    """A pod's IPC and UTS namespaces with no process holding them (CRI-O's pinns): a thread of
    its own enters the pod's network namespace (None: stays in the agent's), unshares new IPC and
    UTS namespaces (those whose file is given), names the host, writes the pod's sysctls and
    bind-mounts the new namespaces onto the files; the thread then ends and the mounts keep the
    namespaces. /proc/sys resolves a namespaced sysctl through the writing thread's own
    namespaces, so net.* land in the pod's netns and kernel.shm* and friends in its IPC one."""
    check_sysctls(sysctls, netns is not None, ipc is not None, uts is not None)
    for path in (ipc, uts):
        if path is not None:
            path.touch()

    def pin() -> None:
        flags = (CLONE_NEWIPC if ipc else 0) | (CLONE_NEWUTS if uts else 0)
        if flags and _libc.unshare(flags) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err), "unshare(CLONE_NEWIPC|CLONE_NEWUTS)")
        if uts is not None and hostname:
            name = hostname.encode()
            if _libc.sethostname(name, len(name)) != 0:
                err = ctypes.get_errno()
                raise OSError(err, os.strerror(err), f"sethostname({hostname!r})")
        for name, value in sysctls.items():
            try:
                with open(_sysctl_path(name), "w") as f:
                    f.write(value)
            except OSError as e:
                raise OSError(e.errno, f"setting sysctl {name}={value}: {e.strerror}") from None
        tid = threading.get_native_id()
        for kind, path in (("ipc", ipc), ("uts", uts)):
            if path is not None:
                mounts.mount(f"/proc/self/task/{tid}/ns/{kind}", path, None, flags=mounts.MS_BIND)

    await run_in_netns(netns, pin)


def _enter_and_call(netns: str | None, fn: Callable[[], T]) -> T:
    """Enter netns in the calling thread, which must be a dedicated one, then call fn."""
    if netns is not None:
        fd = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
        try:
            _setns(fd, CLONE_NEWNET)
        finally:
            os.close(fd)
    return fn()


def run_in_netns_sync(netns: str | None, fn: Callable[[], T], own_thread: bool = False) -> T:
    """Run fn in a fresh thread that has entered netns (None: this process's own, in the
    calling thread unless own_thread)."""
    if netns is None and not own_thread:
        return fn()
    result: dict = {}

    def body() -> None:
        try:
            result["value"] = _enter_and_call(netns, fn)
        except BaseException as e:  # handed to the caller's thread
            result["error"] = e

    # A thread of its own: it never returns to a pool with the wrong namespace.
    t = threading.Thread(target=body, name="netns", daemon=True)
    t.start()
    t.join()
    if "error" in result:
        raise result["error"]
    return result["value"]


async def run_in_netns(netns: str | None, fn: Callable[[], T]) -> T:
    """Run fn inside netns (in a thread of its own) without blocking the event loop."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future = loop.create_future()

    def body() -> None:
        try:
            value = _enter_and_call(netns, fn)
        except BaseException as e:
            loop.call_soon_threadsafe(_settle, fut, None, e)
        else:
            loop.call_soon_threadsafe(_settle, fut, value, None)

    threading.Thread(target=body, name="netns-call", daemon=True).start()
    return await fut


def _settle(fut: asyncio.Future, value, error) -> None:
    if fut.cancelled():
        return
    if error is not None:
        fut.set_exception(error)
    else:
        fut.set_result(value)


def _enter_thread(netns: str) -> None:
    _enter_and_call(netns, lambda: None)


class NetnsSockets:
    """Sockets made inside one network namespace (None: this process's own), for asyncio code
    that runs in another: one long-lived thread has entered the namespace and makes them; a
    socket keeps its namespace, so the event loop then uses it like any other. The agent's host
    port publisher and ingress controller listen on the host's loopback and dial pods this way."""

    def __init__(self, netns: str | None):
        self.netns = netns
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="netns-sockets", initializer=_enter_thread,
                                            initargs=(netns,)) if netns else None

    async def new_socket(self, family: int = socket.AF_INET, type: int = socket.SOCK_STREAM) -> socket.socket:
        if self._executor is None:
            sock = socket.socket(family, type)
        else:
            sock = await asyncio.get_running_loop().run_in_executor(self._executor, socket.socket, family, type)
        sock.setblocking(False)
        return sock

    async def connect(self, host: str, port: int, timeout: float | None = None) -> socket.socket:
        """A connected non-blocking TCP socket to host:port (an IP address) inside the namespace."""
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = await self.new_socket(family)
        try:
            await asyncio.wait_for(asyncio.get_running_loop().sock_connect(sock, (host, port)), timeout)
        except BaseException:
            sock.close()
            raise
        return sock

    async def open_connection(self, host: str, port: int, timeout: float | None = None, **kwargs):
        """asyncio.open_connection to host:port inside the namespace: (reader, writer)."""
        return await asyncio.open_connection(sock=await self.connect(host, port, timeout), **kwargs)

    async def listen(self, host: str, port: int, type: int = socket.SOCK_STREAM, reuse_port: bool = False,
                     backlog: int = 511) -> socket.socket:
        """A bound (and for TCP listening) socket on host:port inside the namespace."""
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = await self.new_socket(family, type)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((host, port))
            if type == socket.SOCK_STREAM:
                sock.listen(backlog)
        except BaseException:
            sock.close()
            raise
        return sock

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False)
