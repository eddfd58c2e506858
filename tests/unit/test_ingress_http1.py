"""The ingress proxy's HTTP/1.1 heads: the general parser's framing rules, and the fast path's
one-pass parsers agreeing with it on plain messages and giving up on everything that needs care."""
import pytest

from ketch.ingress.http1 import CHUNKED, LENGTH, NO_BODY, BadMessage, parse_head, quick_request, quick_response


def test_framing_rules():
    head = parse_head(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n")
    head.body_framing()
    assert (head.framing, head.length) == (LENGTH, 5)
    head = parse_head(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n")
    head.body_framing()
    assert head.framing == CHUNKED
    head = parse_head(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    head.body_framing()
    assert head.framing == NO_BODY
    for bad in (b"POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
                b"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
                b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n"):
        with pytest.raises(BadMessage):
            parse_head(bad).body_framing()
    with pytest.raises(BadMessage):
        parse_head(b"GET / HTTP/1.1\r\nHost : x\r\n\r\n")   # whitespace before the colon


def test_quick_request_keeps_the_head_and_drops_a_plain_connection():
    q = quick_request(b"GET /a?b=1 HTTP/1.1\r\nHost: Foo.Example:8080\r\nConnection: close\r\nAccept: */*\r\n\r\n")
    assert q.method == b"GET" and q.host == b"Foo.Example:8080" and not q.keep and q.length == 0
    assert q.head == b"GET /a?b=1 HTTP/1.1\r\nHost: Foo.Example:8080\r\nAccept: */*\r\n"
    q = quick_request(b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\nconnection: Keep-Alive\r\n\r\n")
    assert q.keep and q.length == 3 and q.head == b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\n"


@pytest.mark.parametrize("raw", [
    b"GET / HTTP/1.0\r\nHost: x\r\n\r\n",                                  # HTTP/1.0
    b"GET http://x/ HTTP/1.1\r\nHost: x\r\n\r\n",                          # absolute form
    b"GET / HTTP/1.1\r\n\r\n",                                             # no Host
    b"GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n",                       # two Hosts
    b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",   # chunked
    b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, X-Secret\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 1.2.3.4\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nTE: trailers\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost : x\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n",
])
def test_quick_request_gives_up_on_what_needs_care(raw):
    assert quick_request(raw) is None


def test_quick_response():
    raw = (b"HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Length: 5\r\nConnection: keep-alive\r\n"
           b"Keep-Alive: timeout=5\r\nX-A: b\r\n\r\n")
    assert quick_response(raw, False) == (b"HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Length: 5\r\nX-A: b", 5, True)
    assert quick_response(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\n", False)[1:] == (5, False)
    assert quick_response(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", True)[1] == 0        # HEAD
    assert quick_response(b"HTTP/1.1 304 Not Modified\r\nETag: x\r\n\r\n", False)[1] == 0
    for raw in (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                b"HTTP/1.1 200 OK\r\n\r\n",                                  # until close
                b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n",
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n",
                b"HTTP/1.1 100 Continue\r\n\r\n",
                b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nConnection: x-hop\r\n\r\n"):
        assert quick_response(raw, False) is None
