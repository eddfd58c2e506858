"""Lifecycle hooks: a container's postStart and preStop handlers, as the kubelet's handlerRunner.

Handlers: exec (in the container, through the runtime), httpGet (through the pod's network
namespace, HTTPS without verification, the status code not looked at: only a failed request
fails), sleep, and tcpSocket, which upstream keeps in the API but fails at run time ("Cannot run
handler: invalid handler: ..."). A failed handler yields the message the kubelet logs and shows as
the container's waiting message (`Exec lifecycle hook ([sh -c exit 1]) for Container "app" in Pod
"web_default(uid)" failed - error: ..., message: ""`); the events say only "PostStartHook failed" /
"PreStopHook failed", so that no secret leaks into them.

What the kubelet does around them: after a failed postStart it kills the container (Killing
message "FailedPostStartHook") and reports it waiting with reason PostStartHookError and this
message; preStop runs for at most the grace period, and the time it took is taken off the grace
period left for the stop signal (at least 2 s remain, the kubelet's minimum).
"""
from __future__ import annotations

import asyncio
import logging
import time

from ..api.names import go_quote
from ..client.events import WARNING as EVENT_WARNING
from .prober import httpget
from .prober.manager import field_path, pod_ref
from .prober.netdial import GoError
from .prober.probe import action_url, format_pod, runtime_dialer, user_agent

log = logging.getLogger("ketch.agent.hooks")

FAILED_POST_START, FAILED_PRE_STOP = "FailedPostStartHook", "FailedPreStopHook"
POST_START_FAILED_EVENT, PRE_STOP_FAILED_EVENT = "PostStartHook failed", "PreStopHook failed"
POST_START_ERROR = "PostStartHookError"  # the container's waiting reason (kuberuntime's ErrPostStartHook)
POST_START_KILL_MESSAGE = "FailedPostStartHook"  # the Killing event's message after it
LIFECYCLE_HTTP_FALLBACK = "LifecycleHTTPFallback"
MIN_GRACE_PERIOD = 2  # minimumGracePeriodInSeconds


def _go_list(items: list[str]) -> str:
    """Go's %v of a []string."""
    return "[" + " ".join(items) + "]"


def _go_handler(handler: dict) -> str:
    """Go's %v of the *LifecycleHandler upstream cannot run (tcpSocket)."""
    tcp = handler.get("tcpSocket") or {}
    port = tcp.get("port", 0)
    port_text = f"{{1 0 {port}}}" if isinstance(port, str) else f"{{0 {port} }}"
    tcp_text = f"&TCPSocketAction{{Port:{port_text},Host:{tcp.get('host', '')},}}" if "tcpSocket" in handler else "nil"
    return f"&LifecycleHandler{{Exec:nil,HTTPGet:nil,TCPSocket:{tcp_text},Sleep:nil,}}"


class _Hook:
    """One handler run for one container."""

    def __init__(self, handler: dict, pod: dict, container: dict, container_id: str, runtime, sandbox_id: str,
                 pod_ip: str, recorder):
        self.handler, self.pod, self.container, self.container_id = handler, pod, container, container_id
        self.runtime, self.sandbox_id, self.pod_ip, self.recorder = runtime, sandbox_id, pod_ip, recorder
        self.where = f"for Container {go_quote(container.get('name', ''))} in Pod {go_quote(format_pod(pod))}"

    def describe_failure(self, error: str, output: str = "") -> str:
        if "exec" in self.handler:
            command = (self.handler["exec"] or {}).get("command") or []
            return f"Exec lifecycle hook ({_go_list(command)}) {self.where} failed - error: {error}, message: " \
                   f"{go_quote(output)}"
        if "httpGet" in self.handler:
            return f"HTTP lifecycle hook ({(self.handler['httpGet'] or {}).get('path', '')}) {self.where} " \
                   f"failed - error: {error}"
        seconds = (self.handler.get("sleep") or {}).get("seconds", 0)
        return f"Sleep lifecycle hook ({seconds}) {self.where} failed - error: {error}"

    async def run(self) -> str | None:
        if "exec" in self.handler:
            return await self.run_exec()
        if "httpGet" in self.handler:
            error = await self.run_http()
            return None if error is None else self.describe_failure(error)
        if "sleep" in self.handler:
            await asyncio.sleep(float((self.handler["sleep"] or {}).get("seconds", 0)))
            return None
        return f"Cannot run handler: invalid handler: {_go_handler(self.handler)}"

    async def run_exec(self) -> str | None:
        command = (self.handler["exec"] or {}).get("command") or []
        try:
            code, stdout, stderr = await self.runtime.exec_sync(self.container_id, command, None)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - the runtime could not exec: the hook failed
            return self.describe_failure(getattr(e, "message", "") or str(e))
        if code == 0:
            return None
        # The CRI client's CodeExitError, then the combined output.
        error = f"command '{' '.join(command)}' exited with {code}: {stderr.decode(errors='replace')}"
        return self.describe_failure(error, (stdout + stderr).decode(errors="replace"))

    async def run_http(self) -> str | None:
        action = self.handler["httpGet"] or {}
        host = action.get("host") or self.pod_ip
        if not host:
            return "failed to find networking container: no pod IP"
        try:
            url = action_url(action, self.container, host)
        except ValueError as e:
            return str(e)
        headers = httpget.probe_headers(action.get("httpHeaders"), user_agent("lifecycle"))
        dialer = runtime_dialer(self.runtime, self.sandbox_id)
        try:
            await httpget.get(dialer, url, headers, None)
            return None
        except httpget.BodyError:
            return None  # the body is only drained
        except GoError as e:
            if not (url.startswith("https:") and str(e).endswith(httpget.HTTP_TO_HTTPS)):
                return str(e)
        # An HTTPS hook that got an HTTP answer is retried over HTTP, as upstream does.
        plain = "http:" + url[len("https:"):]
        try:
            await httpget.get(dialer, plain, [(k, v) for k, v in headers if k != "Authorization"], None)
        except httpget.BodyError:
            pass
        except GoError as e:
            return str(e)
        if self.recorder is not None:
            host_port = plain.split("/")[2]
            self.recorder.event(pod_ref(self.pod), EVENT_WARNING, LIFECYCLE_HTTP_FALLBACK,
                                f"request to HTTPS lifecycle hook {host_port} got HTTP response, "
                                "retry with HTTP succeeded")
        return None


async def run_hook(handler: dict, pod: dict, container: dict, container_id: str, runtime, *, sandbox_id: str,
                   pod_ip: str, timeout: float | None = None, recorder=None) -> str | None:
    """Run a LifecycleHandler; None when it succeeded, else upstream's failure message. After
    `timeout` seconds the handler is abandoned (a sleep handler says so as upstream's does when
    the container goes away first)."""
    hook = _Hook(handler, pod, container, container_id, runtime, sandbox_id, pod_ip, recorder)
    try:
        return await asyncio.wait_for(hook.run(), timeout)
    except asyncio.TimeoutError:
        if "sleep" in handler:
            return hook.describe_failure("container terminated before sleep hook finished")
        return hook.describe_failure(f"hook did not complete within {timeout:g}s")


async def run_post_start(pod: dict, container: dict, container_id: str, runtime, *, sandbox_id: str, pod_ip: str,
                         recorder=None, timeout: float | None = None) -> str | None:
    """The container's postStart hook, if any; on failure records FailedPostStartHook and returns
    the message (the kubelet then kills the container and reports PostStartHookError)."""
    handler = (container.get("lifecycle") or {}).get("postStart")
    if not handler:
        return None
    message = await run_hook(handler, pod, container, container_id, runtime, sandbox_id=sandbox_id, pod_ip=pod_ip,
                             timeout=timeout, recorder=recorder)
    if message is not None:
        log.info("postStart hook of %s failed: %s", container.get("name"), message)
        if recorder is not None:
            recorder.event(pod_ref(pod), EVENT_WARNING, FAILED_POST_START, POST_START_FAILED_EVENT,
                           field_path(pod, container.get("name", "")))
    return message


async def run_pre_stop(pod: dict, container: dict, container_id: str, runtime, *, sandbox_id: str, pod_ip: str,
                       grace_period: float, recorder=None) -> float:
    """The container's preStop hook, if any, for at most `grace_period` seconds; returns the grace
    period left for the stop signal (never below the kubelet's 2 s minimum). A hook that fails
    records FailedPreStopHook; one still running at the end of the grace period is abandoned."""
    handler = (container.get("lifecycle") or {}).get("preStop")
    if not handler or grace_period <= 0:
        return max(grace_period, MIN_GRACE_PERIOD)
    started = time.monotonic()
    hook = _Hook(handler, pod, container, container_id, runtime, sandbox_id, pod_ip, recorder)
    try:
        message = await asyncio.wait_for(hook.run(), grace_period)
    except asyncio.TimeoutError:
        log.info("preStop hook of %s not completed in the grace period (%ss)", container.get("name"), grace_period)
        message = None
    if message is not None:
        log.info("preStop hook of %s failed: %s", container.get("name"), message)
        if recorder is not None:
            recorder.event(pod_ref(pod), EVENT_WARNING, FAILED_PRE_STOP, PRE_STOP_FAILED_EVENT,
                           field_path(pod, container.get("name", "")))
    # The kubelet subtracts whole seconds.
    return max(grace_period - int(time.monotonic() - started), MIN_GRACE_PERIOD)
