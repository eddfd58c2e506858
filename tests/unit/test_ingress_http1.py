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
    method, path, head, host, keep, length = quick_request(
        b"GET /a?b=1 HTTP/1.1\r\nHost: Foo.Example:8080\r\nConnection: close\r\nAccept: */*\r\n\r\n")
    assert (method, path, host, keep, length) == (b"GET", b"/a", b"Foo.Example:8080", False, 0)
    assert head == b"GET /a?b=1 HTTP/1.1\r\nHost: Foo.Example:8080\r\nAccept: */*\r\n"
    _, path, head, _, keep, length = quick_request(
        b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\nconnection: Keep-Alive\r\n\r\n")
    assert keep and length == 3 and path == b"/" and head == b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\n"


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
    b"GET / HTTP/1.1\r\nHost: x\nTransfer-Encoding: chunked\r\n\r\n",    # a bare LF hiding a field
    b"GET / HTTP/1.1\r\nHost: x\rTransfer-Encoding: chunked\r\n\r\n",    # a bare CR
    b"GET / HTTP/1.1\r\nHost: x\r\n: nameless\r\n\r\n",
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
                b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nConnection: x-hop\r\n\r\n",
                b"HTTP/1.1 200 OK\r\nContent-Length: 1\nTransfer-Encoding: chunked\r\n\r\n"):
        assert quick_response(raw, False) is None


def test_stray_cr_or_lf_in_a_head_is_refused():
    for raw in (b"GET / HTTP/1.1\r\nHost: x\nTransfer-Encoding: chunked\r\n\r\n",
                b"GET / HTTP/1.1\r\nHost: x\rX: y\r\n\r\n"):
        with pytest.raises(BadMessage):
            parse_head(raw)


def test_line_verdicts_are_memoized_without_changing_answers(monkeypatch):
    """The fast parsers remember each line's verdict: asking twice answers the same, a response's
    lines never stand for a request's, and the memos stay bounded whatever clients send."""
    from ketch.ingress import http1
    request = b"GET /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\nAccept: */*\r\n\r\n"
    response = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\nX: y\r\n\r\n"
    for _ in range(2):
        assert quick_request(request) == (b"GET", b"/x", b"GET /x HTTP/1.1\r\nHost: a\r\nAccept: */*\r\n", b"a",
                                          False, 0)
        assert quick_response(response, False) == (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX: y", 2, False)
    # Keep-Alive is hop-by-hop in a response (dropped) but makes a request take the general path.
    assert quick_response(b"HTTP/1.1 200 OK\r\nKeep-Alive: timeout=5\r\nContent-Length: 0\r\n\r\n", False)[0] == \
        b"HTTP/1.1 200 OK\r\nContent-Length: 0"
    assert quick_request(b"GET / HTTP/1.1\r\nHost: a\r\nKeep-Alive: timeout=5\r\n\r\n") is None
    monkeypatch.setattr(http1, "MEMO_LINES", 8)
    for i in range(50):
        assert quick_request(b"GET / HTTP/1.1\r\nHost: a\r\nX-N: %d\r\n\r\n" % i)[3] == b"a"
    assert len(http1._request_lines) <= 8
    long_line = b"X-Long: " + b"v" * http1.MEMO_LINE_MAX
    assert quick_request(b"GET / HTTP/1.1\r\nHost: a\r\n" + long_line + b"\r\n\r\n") is not None
    assert long_line not in http1._request_lines


def test_nul_in_a_head_is_refused():
    raw = b"GET / HTTP/1.1\r\nHost: x\r\nX: a\0b\r\n\r\n"
    assert quick_request(raw) is None
    assert quick_response(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX: a\0b\r\n\r\n", False) is None
    with pytest.raises(BadMessage):
        parse_head(raw)
    assert quick_response(b"HTTP/1.1 200 OK\r\nContent-Length: 1\nX: y\r\n\r\n", False) is None   # bare LF


@pytest.mark.parametrize("size", [b"0x4", b"+4", b"-1", b"4_0", b" 4", b"", b"1" * 17, b"4\n"])
async def test_chunk_sizes_are_parsed_strictly(size):
    import asyncio
    from ketch.ingress.http1 import copy_body

    class Sink:
        def write(self, data):
            pass

        async def drain(self):
            pass
    reader = asyncio.StreamReader()
    reader.feed_data(size + b"\r\nabcd\r\n0\r\n\r\n")
    reader.feed_eof()
    with pytest.raises(BadMessage) as e:
        await copy_body(reader, Sink(), CHUNKED, 0, False)
    assert e.value.status == 400


async def test_good_chunks_and_a_too_long_chunk_line():
    import asyncio
    from ketch.ingress.http1 import copy_body
    out = []

    class Sink:
        def write(self, data):
            out.append(data)

        async def drain(self):
            pass
    reader = asyncio.StreamReader()
    reader.feed_data(b"4;a=b\r\nabcd\r\nA \r\n0123456789\r\n0\r\nTrailer: x\r\n\r\n")
    reader.feed_eof()
    await copy_body(reader, Sink(), CHUNKED, 0, False)
    assert b"".join(out) == b"abcd0123456789"
    reader = asyncio.StreamReader(limit=1024)
    reader.feed_data(b"4;" + b"e" * 5000)
    with pytest.raises(BadMessage):
        await copy_body(reader, Sink(), CHUNKED, 0, False)
