"""One probe run, as the kubelet's prober.runProbe: exec, httpGet, tcpSocket or grpc.

Results are upstream's probe.Result values. `output` is what the kubelet puts after "Liveness
probe failed: " in the Unhealthy event (the exec command's output, `HTTP probe failed with
statuscode: 500`, Go's dial error...). `error` marks a run in which the prober itself failed (an
unknown port name, the runtime unable to exec): upstream records "<type> probe errored and resulted
in <result> state: <error>", retries, and then leaves the worker's state as it was.

Network probes connect through `runtime.open_connection(sandbox_id, port, host)`, inside the pod's
network namespace; exec probes go through `runtime.exec_sync`.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass

from ...api import schema
from ...api.names import go_quote
from . import grpchealth, httpget
from .netdial import Dialer, GoError, close_quietly, dial

SUCCESS, WARNING, FAILURE, UNKNOWN = "success", "warning", "failure", "unknown"
MAX_EXEC_OUTPUT = 10 * 1024  # the exec prober's LimitWriter
EXEC_GRACE = 2.0  # past timeoutSeconds, in case the runtime itself hangs


def user_agent(purpose: str) -> str:
    """`kube-probe/1.35`, `kube-lifecycle/1.35`: the kubelet's version as ours."""
    major, minor, _ = schema.KUBERNETES_VERSION.split(".")
    return f"kube-{purpose}/{major}.{minor}"


@dataclass(frozen=True)
class ProbeResult:
    result: str  # SUCCESS | WARNING (a success with a ProbeWarning event) | FAILURE | UNKNOWN
    output: str = ""
    error: str | None = None


def format_pod(pod: dict) -> str:
    """The kubelet's format.Pod: name_namespace(uid)."""
    meta = pod.get("metadata", {})
    return f"{meta.get('name', '')}_{meta.get('namespace', '')}({meta.get('uid', '')})"


def resolve_port(port: int | str, container: dict) -> int:
    """probe.ResolveContainerPort: a number, a container port's name, or a number in a string.
    Raises ValueError with Go's text."""
    if isinstance(port, str):
        named = next((p.get("containerPort") for p in container.get("ports") or [] if p.get("name") == port), None)
        if named is not None:
            port = named
        else:
            try:
                port = int(port, 10)
            except ValueError:
                raise ValueError(f"strconv.Atoi: parsing {go_quote(port)}: invalid syntax") from None
    if 0 < port < 65536:
        return port
    raise ValueError(f"invalid port number: {port}")


def action_url(action: dict, container: dict, pod_ip: str) -> str:
    """The URL of an httpGet action (GetProbeUrl): scheme lower-cased, host defaulting to the pod IP."""
    scheme = (action.get("scheme") or "HTTP").lower()
    host = action.get("host") or pod_ip
    return httpget.format_url(scheme, host, resolve_port(action.get("port", 0), container), action.get("path", ""))


def expand_static(command: list[str], env: list[dict] | None) -> list[str]:
    """ExpandContainerCommandOnlyStatic: $(VAR) from the container's env values only (a valueFrom
    variable expands to ""), $$ for a literal $, unknown references left as written."""
    values = {e.get("name", ""): e.get("value", "") for e in env or []}

    def expand(text: str) -> str:
        out, i = [], 0
        while i < len(text):
            ch = text[i]
            if ch != "$" or i + 1 >= len(text):
                out.append(ch)
                i += 1
                continue
            nxt = text[i + 1]
            if nxt == "$":
                out.append("$")
                i += 2
            elif nxt == "(":
                end = text.find(")", i + 2)
                if end < 0:
                    out.append("$(")
                    i += 2
                else:
                    name = text[i + 2:end]
                    out.append(values[name] if name in values else f"$({name})")
                    i = end + 1
            else:
                out.append("$" + nxt)
                i += 2
        return "".join(out)

    return [expand(part) for part in command]


def runtime_dialer(runtime, sandbox_id: str) -> Dialer:
    """Connections from inside the pod's network namespace."""
    def open_in_pod(host: str, port: int):
        return runtime.open_connection(sandbox_id, port, host)
    return open_in_pod


async def exec_probe(runtime, container_id: str, command: list[str], timeout: float) -> ProbeResult:
    try:
        code, stdout, stderr = await asyncio.wait_for(runtime.exec_sync(container_id, command, timeout),
                                                      timeout + EXEC_GRACE)
    except asyncio.TimeoutError:
        return ProbeResult(FAILURE, f"command {go_quote(' '.join(command))} timed out")
    except asyncio.CancelledError:
        raise
    except Exception as e:  # noqa: BLE001 - the runtime could not exec: an errored probe
        return ProbeResult(UNKNOWN, "", error=getattr(e, "message", "") or str(e))
    output = (stdout + stderr)[:MAX_EXEC_OUTPUT].decode(errors="replace")
    return ProbeResult(SUCCESS if code == 0 else FAILURE, output)


async def http_probe(dialer: Dialer, action: dict, container: dict, pod_ip: str, timeout: float) -> ProbeResult:
    try:
        url = action_url(action, container, pod_ip)
    except ValueError as e:
        return ProbeResult(UNKNOWN, "", error=str(e))
    headers = httpget.probe_headers(action.get("httpHeaders"), user_agent("probe"))
    try:
        response = await httpget.get(dialer, url, headers, timeout)
    except httpget.BodyError as e:
        return ProbeResult(FAILURE, "", error=str(e))
    except GoError as e:
        return ProbeResult(FAILURE, str(e))
    body = response.body.decode(errors="replace")
    if 200 <= response.status < 400:
        if response.status >= 300:
            return ProbeResult(WARNING, f"Probe terminated redirects, Response body: {body}")
        return ProbeResult(SUCCESS, body)
    # Upstream keeps the body out of the message (issue 99425).
    return ProbeResult(FAILURE, f"HTTP probe failed with statuscode: {response.status}")


async def tcp_probe(dialer: Dialer, action: dict, container: dict, pod_ip: str, timeout: float) -> ProbeResult:
    try:
        port = resolve_port(action.get("port", 0), container)
    except ValueError as e:
        return ProbeResult(UNKNOWN, "", error=str(e))
    try:
        _, writer = await dial(dialer, action.get("host") or pod_ip, port, timeout)
    except GoError as e:
        return ProbeResult(FAILURE, str(e))
    close_quietly(writer)
    return ProbeResult(SUCCESS, "")


async def grpc_probe(dialer: Dialer, action: dict, pod_ip: str, timeout: float) -> ProbeResult:
    healthy, output = await grpchealth.check(dialer, pod_ip, int(action.get("port", 0)),
                                             action.get("service") or "", timeout, user_agent("probe"))
    return ProbeResult(SUCCESS if healthy else FAILURE, output)


async def run_probe(probe: dict, pod: dict, container: dict, container_id: str, runtime, *,
                    sandbox_id: str, pod_ip: str | None = None) -> ProbeResult:
    """Run `probe` (a container's livenessProbe, readinessProbe or startupProbe) once."""
    timeout = float(probe.get("timeoutSeconds") or 1)
    pod_ip = pod_ip if pod_ip is not None else (pod.get("status") or {}).get("podIP", "")
    if "exec" in probe:
        command = expand_static((probe["exec"] or {}).get("command") or [], container.get("env"))
        return await exec_probe(runtime, container_id, command, timeout)
    dialer = runtime_dialer(runtime, sandbox_id)
    if "httpGet" in probe:
        return await http_probe(dialer, probe["httpGet"] or {}, container, pod_ip, timeout)
    if "tcpSocket" in probe:
        return await tcp_probe(dialer, probe["tcpSocket"] or {}, container, pod_ip, timeout)
    if "grpc" in probe:
        return await grpc_probe(dialer, probe["grpc"] or {}, pod_ip, timeout)
    return ProbeResult(UNKNOWN, "", error=f"missing probe handler for {format_pod(pod)}:{container.get('name', '')}")
