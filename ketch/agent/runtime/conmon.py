"""conmon, the per-container monitor CRI-O uses: it runs `runc create`, holds the container's
stdio, writes its CRI-format log and its exit code, and outlives the agent.

The launch follows CRI-O: a start pipe (fd given as _OCI_STARTPIPE) lets conmon go on once we
write to it, and a sync pipe (_OCI_SYNCPIPE) brings back `{"data": <pid>}` when `runc create`
is done, or a negative value with a message when it failed.
"""

from __future__ import annotations

import asyncio
import json
import os
import select
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

CONMON = shutil.which("conmon") or "/usr/bin/conmon"
RUNC = shutil.which("runc") or "/usr/sbin/runc"

CREATE_TIMEOUT = 30.0


class MonitorError(Exception):
    pass


@dataclass
class MonitorPaths:
    bundle: Path
    log_path: str
    exit_dir: Path
    persist_dir: Path
    conmon_pidfile: Path

    @property
    def attach_socket(self) -> Path:
        return self.bundle / "attach"

    @property
    def ctl_fifo(self) -> Path:
        return self.bundle / "ctl"


def _launch(container_id: str, name: str, runc_root: Path, paths: MonitorPaths, stdin: bool,
            stdin_once: bool, tty: bool) -> int:
    paths.persist_dir.mkdir(parents=True, exist_ok=True)  # without it conmon writes no exit file
    paths.exit_dir.mkdir(parents=True, exist_ok=True)
    Path(paths.log_path).parent.mkdir(parents=True, exist_ok=True)
    argv = [
        CONMON, "--api-version", "1", "-c", container_id, "-u", container_id, "-n", name,
        "-r", RUNC, "--runtime-arg", f"--root={runc_root}",
        "-b", str(paths.bundle), "-p", str(paths.bundle / "pidfile"), "-P", str(paths.conmon_pidfile),
        "-l", f"k8s-file:{paths.log_path}", "--exit-dir", str(paths.exit_dir),
        "--persist-dir", str(paths.persist_dir), "--full-attach", "--no-sync-log",
        "--log-level", "error",
    ]
    if stdin:
        argv.append("-i")
        if not stdin_once:
            argv.append("--leave-stdin-open")
    if tty:
        argv.append("-t")
    sync_r, sync_w = os.pipe()
    start_r, start_w = os.pipe()
    try:
        env = dict(os.environ, _OCI_SYNCPIPE=str(sync_w), _OCI_STARTPIPE=str(start_r))
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, pass_fds=(sync_w, start_r), env=env,
                                start_new_session=True, cwd=paths.bundle)  # conmon drops an "oom" file in its cwd
        os.close(sync_w)
        sync_w = -1
        os.close(start_r)
        start_r = -1
        os.write(start_w, b"\0")
        os.close(start_w)
        start_w = -1
        # conmon's first process exits once its monitor has forked off.
        try:
            _, err = proc.communicate(timeout=CREATE_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise MonitorError("timed out waiting for conmon to start the container") from None
        if proc.returncode != 0:
            raise MonitorError(f"conmon failed: {err.decode(errors='replace').strip()}")
        try:
            message = _read_sync(sync_r, CREATE_TIMEOUT)
        except ValueError:   # a truncated sync message
            raise MonitorError("conmon reported the container's pid unreadably") from None
    finally:
        for fd in (sync_r, sync_w, start_r, start_w):
            if fd >= 0:
                os.close(fd)
    pid = message.get("data", -1)
    if not isinstance(pid, int) or pid <= 0:
        raise MonitorError(_clean_runc_message(message.get("message") or "runc create failed"))
    return pid


def _read_sync(fd: int, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    buf = b""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise MonitorError("timed out waiting for the container to be created")
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            continue
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        buf += chunk
        try:
            return json.loads(buf)
        except ValueError:
            continue
    if not buf:
        raise MonitorError("conmon exited without reporting the container's pid")
    return json.loads(buf)


def _clean_runc_message(message: str) -> str:
    # runc's logs come back as JSON lines or "time=... level=error msg=..."; keep the msg
    lines = [ln for ln in message.strip().splitlines() if ln.strip()]
    for ln in reversed(lines):
        try:
            doc = json.loads(ln)
            if isinstance(doc, dict) and doc.get("msg"):
                return doc["msg"]
        except ValueError:
            pass
        if "msg=" in ln:
            return ln.split("msg=", 1)[1].strip().strip('"').replace('\\"', '"')
    return message.strip()


async def create_container(container_id: str, name: str, runc_root: Path, paths: MonitorPaths,
                           stdin: bool = False, stdin_once: bool = False, tty: bool = False) -> int:
    """Start a monitor that runs `runc create`; returns the container's init pid."""
    return await asyncio.to_thread(_launch, container_id, name, runc_root, paths, stdin, stdin_once, tty)


def read_exit_code(paths: MonitorPaths, container_id: str) -> tuple[int, int] | None:
    """(exit code, finish time in ns) once conmon recorded the exit, else None."""
    p = paths.exit_dir / container_id
    try:
        raw = p.read_text().strip()
        st = p.stat()
    except OSError:
        return None
    if not raw:
        return None
    try:
        return int(raw), st.st_mtime_ns
    except ValueError:
        return 255, st.st_mtime_ns


def conmon_pid(paths: MonitorPaths) -> int:
    try:
        return int(paths.conmon_pidfile.read_text().strip())
    except (OSError, ValueError):
        return 0


def send_ctl(paths: MonitorPaths, message_type: int, height: int = 0, width: int = 0) -> None:
    """conmon's control fifo: 1 = resize the terminal, 2 = reopen the log file."""
    try:
        fd = os.open(paths.ctl_fifo, os.O_WRONLY | os.O_NONBLOCK)
    except OSError:
        return  # conmon is gone; nothing to control
    try:
        os.write(fd, f"{message_type} {height} {width}\n".encode())
    finally:
        os.close(fd)


async def runc(runc_root: Path, *args: str, check: bool = True, timeout: float = 30.0) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        RUNC, "--root", str(runc_root), *args,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()
        raise MonitorError(f"runc {args[0]} timed out") from None
    if check and proc.returncode != 0:
        raise MonitorError(_clean_runc_message(err.decode(errors="replace")) or f"runc {args[0]} failed")
    return proc.returncode, out.decode(errors="replace")
