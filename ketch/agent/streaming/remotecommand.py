"""Exec and attach over any of the stream transports (SPDY streams or WebSocket channels).

What ends a session, as in the kubelet: the process exits (exec) or the container exits /
the client goes away (attach). The last word goes on the error stream: from protocol v4 a
metav1.Status — Success, or Failure with reason NonZeroExitCode and the exit code as the
cause (kubectl prints "command terminated with exit code N" and exits N); before v4 an error
message as plain text, nothing on success.
"""
from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from typing import Awaitable, Callable, Protocol

log = logging.getLogger("ketch.agent.streaming.remotecommand")

DRAIN_TIMEOUT = 5.0  # output still buffered after the process exited (a child may hold the pipe)


class Source(Protocol):
    async def read(self) -> bytes: ...


class Sink(Protocol):
    async def write(self, data: bytes) -> None: ...


@dataclass
class Options:
    command: list[str]
    stdin: bool = False
    stdout: bool = False
    stderr: bool = False
    tty: bool = False


def options_from_query(query, command_key: str = "command") -> Options:
    def flag(name: str, default: bool = False) -> bool:
        v = query.get(name)
        return default if v is None else v.lower() in ("1", "true")
    tty = flag("tty")
    # A TTY merges stderr into stdout, so stderr is dropped as the kubelet does.
    return Options(command=query.getall(command_key, []), stdin=flag("stdin"), stdout=flag("stdout"),
                   stderr=flag("stderr") and not tty, tty=tty)


def success_status() -> dict:
    return {"metadata": {}, "status": "Success"}


def exit_code_status(code: int, command: list[str]) -> dict:
    return {"metadata": {}, "status": "Failure",
            "message": f"command terminated with non-zero exit code: command '{' '.join(command)}' "
                       f"exited with {code}: ",
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]}}


def failure_status(message: str) -> dict:
    """apierrors.NewInternalError(message)."""
    return {"metadata": {}, "status": "Failure", "message": f"Internal error occurred: {message}",
            "reason": "InternalError", "details": {"causes": [{"message": message}]}, "code": 500}


@dataclass
class Streams:
    """The client's side of a session, whatever carries it."""

    stdin: Source | None
    stdout: Sink | None
    stderr: Sink | None
    resize: Source | None
    error: Sink
    status_json: bool  # v4 and later: the error stream carries a Status
    disconnected: asyncio.Event

    async def report(self, status: dict) -> None:
        if self.status_json:
            await self.error.write(json.dumps(status, separators=(",", ":")).encode())
        elif status["status"] != "Success":
            await self.error.write(status.get("message", "").encode())


async def _copy_out(reader: asyncio.StreamReader, sink: Sink | None) -> None:
    while data := await reader.read(1 << 16):
        if sink is not None:
            await sink.write(data)


async def _copy_in(source: Source, session) -> None:
    try:
        while data := await source.read():
            session.stdin.write(data)
            await session.stdin.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        try:
            await session.close_stdin()
        except (ConnectionError, OSError):
            pass


async def _resizes(source: Source, session) -> None:
    """Resize messages: JSON objects one after another ({"Width":W,"Height":H})."""
    decoder, buf = json.JSONDecoder(), ""
    while data := await source.read():
        buf += data.decode(errors="replace")
        while buf.strip():
            try:
                size, end = decoder.raw_decode(buf.lstrip())
            except ValueError:
                break
            buf = buf.lstrip()[end:]
            try:
                await session.resize(int(size.get("Width", 0)), int(size.get("Height", 0)))
            except Exception as e:  # noqa: BLE001 - a failed resize must not end the session
                log.debug("resize: %s", e)


async def serve(start: Callable[[], Awaitable], streams: Streams, command: list[str] | None) -> None:
    """Run a session made by `start()` (an ExecSession when `command` is given, else an
    AttachSession) against `streams`, and report how it ended."""
    try:
        session = await start()
    except Exception as e:  # noqa: BLE001 - the client is told, whatever the runtime raised
        message = getattr(e, "message", "") or str(e) or type(e).__name__
        # As the kubelet's streaming server: an InternalError naming what failed.
        what = "error executing command in container" if command is not None else "error attaching to container"
        await streams.report(failure_status(f"{what}: {message}"))
        return
    outputs = [asyncio.create_task(_copy_out(session.stdout, streams.stdout))]
    if session.stderr is not None:
        outputs.append(asyncio.create_task(_copy_out(session.stderr, streams.stderr)))
    helpers = []
    if streams.stdin is not None and session.stdin is not None:
        helpers.append(asyncio.create_task(_copy_in(streams.stdin, session)))
    if streams.resize is not None:
        helpers.append(asyncio.create_task(_resizes(streams.resize, session)))
    waiter = asyncio.create_task(session.wait())
    gone = asyncio.create_task(streams.disconnected.wait())
    try:
        await asyncio.wait([waiter, gone], return_when=asyncio.FIRST_COMPLETED)
        if not waiter.done():  # the client went away: end what it started (attach only detaches)
            try:
                await (session.kill() if command is not None else session.close())
            except Exception as e:  # noqa: BLE001 - it may have ended meanwhile
                log.debug("ending a session: %s", e)
            return
        code = waiter.result()
        await asyncio.wait(outputs, timeout=DRAIN_TIMEOUT)
        if command is not None and code:
            await streams.report(exit_code_status(code, command))
        else:
            await streams.report(success_status())
    finally:
        for t in (*outputs, *helpers, waiter, gone):
            t.cancel()
