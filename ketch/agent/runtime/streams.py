"""Exec and attach sessions on asyncio streams.

exec without a TTY is `runc exec` with pipes. exec with a TTY runs `runc exec -t` in the
foreground on a pty of ours that is its controlling terminal: runc relays between it and the
container's console and, on SIGWINCH, copies our pty's size to the container's (so resizing is
TIOCSWINSZ on our master). attach talks to conmon's SOCK_SEQPACKET attach socket, where every
packet from conmon starts with a stream byte (2 stdout, 3 stderr) and what we send is stdin.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import signal
import socket
import struct
import termios
from pathlib import Path

from .api import AttachSession, ExecSession

STDOUT_PIPE = 2
STDERR_PIPE = 3
_PACKET = 8192  # what we send per packet (conmon reads stdin in 8 KiB reads)
_RECV = 65536  # a SEQPACKET read longer than the buffer is cut: read generously


def set_winsize(fd: int, width: int, height: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))


def kill_pid_file(path: Path, sig: int = signal.SIGKILL) -> None:
    try:
        pid = int(path.read_text().strip())
    except (OSError, ValueError):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


class _FdWriter:
    """The subset of asyncio.StreamWriter sessions need, over a file descriptor or a packet socket."""

    def __init__(self, send, close):
        self._send = send
        self._close = close
        self._closed = False

    def write(self, data: bytes) -> None:
        if self._closed or not data:
            return
        self._send(data)

    def writelines(self, lines) -> None:
        for d in lines:
            self.write(d)

    async def drain(self) -> None:
        await asyncio.sleep(0)

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.close()

    def is_closing(self) -> bool:
        return self._closed

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._close()

    async def wait_closed(self) -> None:
        return None


class PipeExecSession(ExecSession):
    def __init__(self, proc: asyncio.subprocess.Process, pid_file: Path):
        self.proc = proc
        self.pid_file = pid_file
        self.tty = False
        self.stdin = proc.stdin
        self.stdout = proc.stdout
        self.stderr = proc.stderr

    async def resize(self, width: int, height: int) -> None:
        return None

    async def wait(self) -> int:
        rc = await self.proc.wait()
        with contextlib.suppress(OSError):
            self.pid_file.unlink()
        return rc

    async def kill(self) -> None:
        kill_pid_file(self.pid_file)


class TtyExecSession(ExecSession):
    def __init__(self, proc: asyncio.subprocess.Process, master: int, pid_file: Path):
        self.proc = proc
        self.master = master
        self.pid_file = pid_file
        self.tty = True
        self.stderr = None
        loop = asyncio.get_running_loop()
        self.stdout = asyncio.StreamReader()
        self._closed = False
        self._pending = bytearray()  # what the pty would not take yet
        loop.add_reader(master, self._on_readable)
        self.stdin = _FdWriter(self._send, lambda: self._send(b"\x04"))  # EOF: ^D to the line discipline

    def _send(self, data: bytes) -> None:
        if self._closed:
            return
        was_idle = not self._pending
        self._pending += data
        if was_idle:
            self._flush()

    def _flush(self) -> None:
        loop = asyncio.get_running_loop()
        while self._pending and not self._closed:
            try:
                n = os.write(self.master, self._pending)
            except BlockingIOError:
                loop.add_writer(self.master, self._on_writable)
                return
            except OSError:
                self._pending.clear()
                break
            del self._pending[:n]
        with contextlib.suppress(Exception):
            loop.remove_writer(self.master)

    def _on_writable(self) -> None:
        self._flush()

    def _on_readable(self) -> None:
        try:
            data = os.read(self.master, 65536)
        except BlockingIOError:
            return
        except OSError:  # EIO: every slave closed, i.e. the process and runc are gone
            data = b""
        if data:
            self.stdout.feed_data(data)
        else:
            self._finish_reading()

    def _finish_reading(self) -> None:
        if not self._closed:
            self._closed = True
            loop = asyncio.get_running_loop()
            loop.remove_reader(self.master)
            loop.remove_writer(self.master)
            self.stdout.feed_eof()
            os.close(self.master)

    async def resize(self, width: int, height: int) -> None:
        if not self._closed:
            set_winsize(self.master, width, height)

    async def wait(self) -> int:
        rc = await self.proc.wait()
        # Let the reader drain what the process printed last before the pty closes.
        for _ in range(50):
            if self._closed:
                break
            await asyncio.sleep(0.01)
        self._finish_reading()
        with contextlib.suppress(OSError):
            self.pid_file.unlink()
        return rc

    async def kill(self) -> None:
        kill_pid_file(self.pid_file)


class ConmonAttachSession(AttachSession):
    def __init__(self, sock: socket.socket, tty: bool, want_stdin: bool, resize_fn, exited):
        self.sock = sock
        self.tty = tty
        self._resize_fn = resize_fn
        self._exited = exited  # coroutine function: returns when the container has exited
        self.stdout = asyncio.StreamReader()
        self.stderr = None if tty else asyncio.StreamReader()
        self.stdin = _FdWriter(self._send, self._shutdown_stdin) if want_stdin else None
        self._outbox: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._pump = asyncio.create_task(self._read_loop())
        self._writer = asyncio.create_task(self._write_loop()) if want_stdin else None
        self._closed = False

    def _send(self, data: bytes) -> None:
        for i in range(0, len(data), _PACKET):
            self._outbox.put_nowait(data[i:i + _PACKET])

    def _shutdown_stdin(self) -> None:
        self._outbox.put_nowait(None)

    async def _write_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            data = await self._outbox.get()
            if data is None:
                with contextlib.suppress(OSError):
                    self.sock.shutdown(socket.SHUT_WR)
                return
            try:
                await loop.sock_sendall(self.sock, data)
            except OSError:
                return

    async def _read_loop(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                packet = await loop.sock_recv(self.sock, _RECV)
                if not packet:
                    break
                stream, payload = packet[0], packet[1:]
                if stream == STDERR_PIPE and self.stderr is not None:
                    self.stderr.feed_data(payload)
                elif stream in (STDOUT_PIPE, STDERR_PIPE):
                    self.stdout.feed_data(payload)
        except OSError:
            pass
        finally:
            self.stdout.feed_eof()
            if self.stderr is not None:
                self.stderr.feed_eof()

    async def resize(self, width: int, height: int) -> None:
        self._resize_fn(width, height)

    async def wait(self) -> None:
        """Until the container exits (conmon then closes the socket) or close() is called."""
        try:
            await asyncio.shield(self._pump)
        except asyncio.CancelledError:
            if not self._closed:
                raise
            return
        if not self._closed:
            await self._exited()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._writer is not None:
            self._writer.cancel()
        self._pump.cancel()
        with contextlib.suppress(BaseException):
            await self._pump
        self.sock.close()


def connect_seqpacket(path: Path) -> socket.socket:
    """Connect to a unix socket whose path may be longer than sun_path allows."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
    dirfd = os.open(path.parent, os.O_PATH | os.O_CLOEXEC)
    try:
        sock.connect(f"/proc/self/fd/{dirfd}/{path.name}")
    except OSError:
        sock.close()
        raise
    finally:
        os.close(dirfd)
    sock.setblocking(False)
    return sock
