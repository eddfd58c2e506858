"""The HTTP GET of httpGet probes and lifecycle hooks, as the kubelet's Go client makes it.

One request per connection (the prober's transport disables keep-alives), over a stream pair from a
`Dialer`, so the same code probes a pod through its network namespace and a test server on
loopback. HTTP/1.1 framing is h11's. What the kubelet does around the request is kept: HTTPS
without certificate verification, `Host` taken from a custom Host header, redirects followed only
to the same host name (at most 10; a redirect elsewhere ends the chain with that 3xx response), one
timeout for the whole exchange, the body read up to 10 KiB. Errors are raised as GoError with the
text of Go's `*url.Error` (`Get "http://10.42.0.5:80/": dial tcp 10.42.0.5:80: connect: connection
refused`), which is what probe events show.
"""
from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass
from urllib.parse import quote, urljoin, urlsplit

import h11

from .netdial import Dialer, DialTimeout, GoError, close_quietly, dial, join_host_port, is_ip, syscall_text

MAX_BODY = 10 * 1024  # the kubelet's maxRespBodyLength
MAX_REDIRECTS = 10
REDIRECT_CODES = (301, 302, 303, 307, 308)
AWAITING_HEADERS = " (Client.Timeout exceeded while awaiting headers)"
BODY_TIMEOUT = "net/http: request canceled (Client.Timeout or context cancellation while reading body)"
HTTP_TO_HTTPS = "http: server gave HTTP response to HTTPS client"
_READ_SIZE = 16384
_PATH_SAFE = "/:@!$&'()*+,;=-._~%"  # what Go's EscapedPath leaves as written


class BodyError(GoError):
    """The response arrived but its body could not be read (the prober's error path, not a failure)."""


@dataclass
class Response:
    status: int
    headers: list[tuple[str, str]]
    body: bytes  # at most MAX_BODY bytes
    url: str

    def header(self, name: str) -> str:
        name = name.lower()
        return next((v for k, v in self.headers if k.lower() == name), "")


def canonical_header(name: str) -> str:
    """textproto.CanonicalMIMEHeaderKey: "x-custom-header" -> "X-Custom-Header"."""
    if not name or any(c in name for c in " \t:\r\n"):
        return name
    return "-".join(part[:1].upper() + part[1:].lower() for part in name.split("-"))


def format_url(scheme: str, host: str, port: int, path: str) -> str:
    """The probe URL as the kubelet's formatURL and Go's URL.String write it: the port always
    present, the path from "/" and escaped where it must be, the query as given."""
    path, sep, query = path.partition("?")
    if path and not path.startswith("/"):
        path = "/" + path
    return f"{scheme}://{join_host_port(host, port)}{quote(path, safe=_PATH_SAFE)}{sep}{query}"


def _tls_context() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # the kubelet's InsecureSkipVerify
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def _tls_error_text(e: ssl.SSLError) -> str:
    reason = (getattr(e, "reason", "") or "").upper()
    if reason in ("WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "PACKET_LENGTH_TOO_LONG", "HTTP_REQUEST"):
        return HTTP_TO_HTTPS  # a plain HTTP server answered the ClientHello
    if isinstance(e, (ssl.SSLEOFError, ssl.SSLZeroReturnError)):
        return "EOF"
    return f"remote error: tls: {reason.lower().replace('_', ' ') or e}"


def _socket_text(writer: asyncio.StreamWriter, e: OSError) -> str:
    """Go's read error: `read tcp 10.42.0.1:41234->10.42.0.5:80: read: connection reset by peer`."""
    local, peer = writer.get_extra_info("sockname"), writer.get_extra_info("peername")
    if local and peer:
        return f"read tcp {join_host_port(local[0], local[1])}->{join_host_port(peer[0], peer[1])}: read: {syscall_text(e)}"
    return f"read: {syscall_text(e)}"


class _Deadline:
    def __init__(self, timeout: float | None):
        loop = asyncio.get_running_loop()
        self._loop, self._at = loop, (None if timeout is None else loop.time() + timeout)

    def remaining(self) -> float | None:
        return None if self._at is None else max(0.0, self._at - self._loop.time())


async def _exchange(dialer: Dialer, url: str, host_header: str, headers: list[tuple[str, str]],
                    deadline: _Deadline, body_limit: int) -> Response:
    """One GET on a new connection."""
    parts = urlsplit(url)
    scheme, host = parts.scheme, parts.hostname or ""
    port = parts.port or (443 if scheme == "https" else 80)
    target = quote((parts.path or "/") + (f"?{parts.query}" if parts.query else ""), safe=_PATH_SAFE + "?")
    try:
        reader, writer = await dial(dialer, host, port, deadline.remaining())
    except DialTimeout as e:
        raise GoError(f'Get "{url}": {e}{AWAITING_HEADERS}') from None
    except GoError as e:
        raise GoError(f'Get "{url}": {e}') from None
    got_response = False
    try:
        if scheme == "https":
            await asyncio.wait_for(writer.start_tls(_tls_context(), server_hostname=None if is_ip(host) else host),
                                   deadline.remaining())
        conn = h11.Connection(h11.CLIENT)
        try:
            request = h11.Request(method="GET", target=target.encode(),
                                  headers=[("Host", host_header or parts.netloc), *headers, ("Connection", "close")])
        except h11.LocalProtocolError as e:  # a header Go would not send either
            raise GoError(f'Get "{url}": net/http: invalid header: {e}') from None
        writer.write(conn.send(request) + conn.send(h11.EndOfMessage()))
        status, response_headers, body = 0, [], bytearray()
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await asyncio.wait_for(reader.read(_READ_SIZE), deadline.remaining())
                conn.receive_data(data)
                if not data and not got_response and conn.their_state is h11.SEND_RESPONSE:
                    raise GoError(f'Get "{url}": EOF')
                continue
            if isinstance(event, h11.InformationalResponse):
                continue
            if isinstance(event, h11.Response):
                got_response = True
                status = event.status_code
                response_headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in event.headers.raw_items()]
            elif isinstance(event, h11.Data):
                body += event.data
                if len(body) >= body_limit:  # ReadAtMost: the rest is left unread, the probe goes on
                    del body[body_limit:]
                    break
            elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                break
        return Response(status, response_headers, bytes(body), url)
    except asyncio.TimeoutError:
        if got_response:
            raise BodyError(BODY_TIMEOUT) from None
        raise GoError(f'Get "{url}": context deadline exceeded{AWAITING_HEADERS}') from None
    except h11.RemoteProtocolError as e:
        if got_response:
            raise BodyError("unexpected EOF") from None
        raise GoError(f'Get "{url}": net/http: HTTP/1.x transport connection broken: malformed HTTP response: {e}') from None
    except ssl.SSLError as e:
        raise GoError(f'Get "{url}": {_tls_error_text(e)}') from None
    except OSError as e:
        text = _socket_text(writer, e)
        if got_response:
            raise BodyError(text) from None
        raise GoError(f'Get "{url}": {text}') from None
    finally:
        close_quietly(writer)


async def get(dialer: Dialer, url: str, headers: list[tuple[str, str]], timeout: float | None,
              body_limit: int = MAX_BODY) -> Response:
    """GET `url` as the kubelet's prober client does; `headers` as the probe's httpHeaders (a Host
    header sets the request's Host). Redirects to another host name end with that 3xx response."""
    deadline = _Deadline(timeout)
    custom_host = next((v for k, v in headers if k.lower() == "host"), "")
    headers = [(k, v) for k, v in headers if k.lower() != "host"]
    first = urlsplit(url)
    host_header, via = custom_host, 0
    while True:
        response = await _exchange(dialer, url, host_header, headers, deadline, body_limit)
        location = response.header("location")
        if response.status not in REDIRECT_CODES or not location:
            return response
        next_url = urljoin(url, location)
        if urlsplit(next_url).hostname != first.hostname:
            return response  # http.ErrUseLastResponse: the redirect itself is the answer
        via += 1
        if via >= MAX_REDIRECTS:
            raise GoError(f'Get "{location}": stopped after {MAX_REDIRECTS} redirects')
        # Go keeps a custom Host header only through relative redirects.
        keep = custom_host and custom_host != first.netloc and not urlsplit(location).scheme
        host_header, url = (custom_host if keep else ""), next_url


def probe_headers(http_headers: list[dict] | None, user_agent: str) -> list[tuple[str, str]]:
    """The request headers of an httpGet action: its httpHeaders (names canonicalised), then
    User-Agent and `Accept: */*` unless given; an empty Accept removes it (newProbeRequest)."""
    out = [(canonical_header(h.get("name", "")), h.get("value", "")) for h in http_headers or []]
    names = {k for k, _ in out}
    if "User-Agent" not in names:
        out.append(("User-Agent", user_agent))
    if "Accept" not in names:
        out.append(("Accept", "*/*"))
    # An empty Accept or User-Agent is not sent at all.
    return [(k, v) for k, v in out if v or k not in ("Accept", "User-Agent")]

