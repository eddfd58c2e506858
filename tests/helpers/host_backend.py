"""A kubelet backend for streaming tests whose "containers" are plain host processes.

Each container has a working directory (exec runs there, with busybox's tar first on PATH for
`kubectl cp`), a CRI-format log file, and optionally a main process (`sh` reading stdin, for
attach). Port-forward connects to loopback ports the test opened. No container isolation: this
stands in for the runtime only so the protocols can be tested end to end with real clients.
"""
from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import pty
import shutil
import struct
import termios
import time
from dataclasses import dataclass, field
from pathlib import Path

from ketch.agent import logs
from ketch.agent.runtime import api as rt
from ketch.agent.server import ContainerRef, KubeletError


def _tools_dir(root: Path) -> Path:
    d = root / "bin"
    d.mkdir(parents=True, exist_ok=True)
    busybox = shutil.which("busybox")
    if busybox and not (d / "tar").exists():
        os.symlink(busybox, d / "tar")
    return d


class _ProcessExec(rt.ExecSession):
    proc: asyncio.subprocess.Process

    async def resize(self, width: int, height: int) -> None:
        pass

    async def wait(self) -> int:
        code = await self.proc.wait()
        return code if code >= 0 else 128 - code

    async def kill(self) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):  # it exited meanwhile
                self.proc.kill()


class _PtyExec(_ProcessExec):
    def __init__(self, proc, master: int, reader, writer):
        self.proc, self.master, self.tty = proc, master, True
        self.stdout, self.stdin, self.stderr = reader, writer, None

    async def resize(self, width: int, height: int) -> None:
        fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))

    async def wait(self) -> int:
        code = await super().wait()
        await asyncio.sleep(0.05)  # the last output, then the terminal goes
        self.stdin.close()
        os.close(self.master)
        return code


class _PipeExec(_ProcessExec):
    def __init__(self, proc):
        self.proc, self.tty = proc, False
        self.stdin, self.stdout, self.stderr = proc.stdin, proc.stdout, proc.stderr


class _Attach(rt.AttachSession):
    def __init__(self, container: "HostContainer", stdin: bool):
        self.container, self.tty = container, False
        self.stdout = asyncio.StreamReader()
        self.stderr = None
        self.stdin = container.proc.stdin if stdin else None
        self._closed = asyncio.Event()
        container.attached.append(self.stdout)

    async def resize(self, width: int, height: int) -> None:
        pass

    async def wait(self) -> None:
        done = asyncio.create_task(self.container.proc.wait())
        closed = asyncio.create_task(self._closed.wait())
        await asyncio.wait([done, closed], return_when=asyncio.FIRST_COMPLETED)
        done.cancel(), closed.cancel()
        self.stdout.feed_eof()

    async def close(self) -> None:
        self._closed.set()

    async def close_stdin(self) -> None:
        pass  # the container's stdin stays open for the next attach (stdinOnce=false)


@dataclass
class HostContainer:
    name: str
    id: str
    workdir: Path
    log_path: Path
    proc: asyncio.subprocess.Process | None = None
    attached: list = field(default_factory=list)
    previous_log: Path | None = None


class HostRuntime(rt.RuntimeService):
    """The streaming subset of RuntimeService on host processes."""

    def __init__(self, root: Path):
        self.root = root
        self.path = f"{_tools_dir(root)}:{os.environ.get('PATH', '/usr/bin:/bin')}"
        self.containers: dict[str, HostContainer] = {}
        self.ports: dict[int, int] = {}  # pod port -> loopback port

    def env(self) -> dict:
        return {**os.environ, "PATH": self.path, "TERM": "xterm"}

    async def exec(self, container_id, cmd, tty=False, stdin=False):
        c = self.containers[container_id]
        if tty:
            master, slave = pty.openpty()
            proc = await asyncio.create_subprocess_exec(*cmd, stdin=slave, stdout=slave, stderr=slave, cwd=c.workdir,
                                                        env=self.env(), start_new_session=True,
                                                        preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0))
            os.close(slave)
            loop = asyncio.get_running_loop()
            reader = asyncio.StreamReader()
            rfile = os.fdopen(os.dup(master), "rb", buffering=0)
            await loop.connect_read_pipe(lambda: _EIOTolerantProtocol(reader), rfile)
            wfile = os.fdopen(os.dup(master), "wb", buffering=0)
            wt, wp = await loop.connect_write_pipe(asyncio.streams.FlowControlMixin, wfile)
            writer = asyncio.StreamWriter(wt, wp, None, loop)
            return _PtyExec(proc, master, reader, writer)
        proc = await asyncio.create_subprocess_exec(
            *cmd, stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=c.workdir, env=self.env())
        return _PipeExec(proc)

    async def exec_sync(self, container_id, cmd, timeout=None):
        s = await self.exec(container_id, cmd)
        out, err = await asyncio.gather(s.stdout.read(), s.stderr.read())
        return await s.wait(), out, err

    async def attach(self, container_id, stdin=False, tty=False):
        c = self.containers[container_id]
        if c.proc is None or c.proc.returncode is not None:
            raise rt.RuntimeFailure("container is not running")
        return _Attach(c, stdin)

    async def start_main(self, container_id: str, script: str) -> None:
        """A main process whose output goes to the log file and to attached sessions."""
        c = self.containers[container_id]
        c.proc = await asyncio.create_subprocess_exec("sh", "-c", script, stdin=asyncio.subprocess.PIPE,
                                                      stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
                                                      cwd=c.workdir, env=self.env())

        async def pump():
            with open(c.log_path, "ab", buffering=0) as f:
                while line := await c.proc.stdout.readline():
                    f.write(logs.format_line(time.time_ns(), "stdout", line.rstrip(b"\n")))
                    for r in c.attached:
                        r.feed_data(line)
        asyncio.get_running_loop().create_task(pump())

    async def open_connection(self, sandbox_id, port, host="127.0.0.1"):
        return await asyncio.open_connection(host, self.ports.get(port, port))

    async def container_status(self, container_id):
        c = self.containers.get(container_id)
        if c is None:
            raise rt.NotFound(container_id)
        running = c.proc is None or c.proc.returncode is None
        return rt.ContainerStatus(id=c.id, sandbox_id="sandbox-" + c.id, name=c.name, attempt=0,
                                  state=rt.CONTAINER_RUNNING if running else rt.CONTAINER_EXITED, created_at=0)

    async def stop(self) -> None:
        for c in self.containers.values():
            if c.proc is not None and c.proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    c.proc.kill()
                await c.proc.wait()

    # the rest of RuntimeService is not needed by the kubelet API
    async def version(self): raise NotImplementedError
    async def status(self): raise NotImplementedError
    async def run_pod_sandbox(self, config): raise NotImplementedError
    async def stop_pod_sandbox(self, sandbox_id): raise NotImplementedError
    async def remove_pod_sandbox(self, sandbox_id): raise NotImplementedError
    async def pod_sandbox_status(self, sandbox_id): raise NotImplementedError
    async def list_pod_sandboxes(self, labels=None): return []
    async def create_container(self, sandbox_id, config, sandbox_config): raise NotImplementedError
    async def start_container(self, container_id): raise NotImplementedError
    async def stop_container(self, container_id, timeout_seconds): raise NotImplementedError
    async def remove_container(self, container_id): raise NotImplementedError
    async def list_containers(self, sandbox_id=None, labels=None): return []
    async def container_stats(self, container_id): raise NotImplementedError
    async def pod_sandbox_stats(self, sandbox_id): raise NotImplementedError


class _EIOTolerantProtocol(asyncio.StreamReaderProtocol):
    """A pty master reads EIO once the last slave closes: that is the end of output."""

    def connection_lost(self, exc):
        super().connection_lost(None)


class HostBackend:
    """Pods are (namespace, name) → {container name: HostContainer}."""

    def __init__(self, root: Path):
        self.root = root
        self.runtime = HostRuntime(root)
        self.by_pod: dict[tuple[str, str], dict[str, HostContainer]] = {}

    def add_container(self, namespace: str, pod: str, name: str) -> HostContainer:
        cid = f"{namespace}-{pod}-{name}"
        workdir = self.root / "containers" / cid
        workdir.mkdir(parents=True, exist_ok=True)
        c = HostContainer(name, cid, workdir, self.root / "logs" / f"{cid}.log")
        c.log_path.parent.mkdir(parents=True, exist_ok=True)
        c.log_path.touch()
        self.by_pod.setdefault((namespace, pod), {})[name] = c
        self.runtime.containers[cid] = c
        return c

    async def resolve(self, namespace, pod, container, previous=False):
        containers = self.by_pod.get((namespace, pod))
        if containers is None:
            raise KubeletError(404, "pod does not exist")
        if not container:
            first = next(iter(containers.values()))
            return ContainerRef("", "sandbox-" + first.id)
        c = containers.get(container)
        if c is None:
            raise KubeletError(404, f"container not found ({container!r})")
        log_path = c.previous_log if previous else c.log_path
        if log_path is None:
            raise KubeletError(400, f'previous terminated container "{container}" in pod "{pod}" not found')
        return ContainerRef(c.id, "sandbox-" + c.id, str(log_path))

    def summary(self) -> dict:
        return {"node": {"nodeName": "host"}, "pods": []}

    def resource_metrics(self) -> str:
        return "resource_scrape_error 0\n"
