"""Edge cases around the main paths: clients that go away mid-request or
mid-response (no stale or leftover bytes may reach the next client), deep
pipelines, upstream responses that are informational, ambiguous or cut, and
legal syntax that must be accepted."""

import time

from harness import MiB, assert_proxy_error, build_request, pattern_bytes, pattern_iter, \
    pattern_sha256, timeout


def _seq_echo(ctx, port, seq):
    c = ctx.client(port)
    r = c.request("GET", "/echo", headers=[("X-Seq", seq)], timeout=5)
    c.close()
    assert r.status == 200, "request %s: %r" % (seq, r)
    got = [v for n, v in r.json()["headers"] if n.lower() == "x-seq"]
    assert got == [seq], "request %s got the response of %r" % (seq, got)


@timeout(15)
def test_client_abort_while_upstream_works_no_stale_response(ctx):
    b = ctx.upstream("blue")
    sw = ctx.switchd([b])
    _seq_echo(ctx, sw.port, "warm")  # one pooled upstream connection
    a = ctx.client(sw.port)
    a.send(build_request("GET", "/delay/500", headers=[("X-Seq", "aborted")]))
    time.sleep(0.1)
    a.close()
    for i in range(5):
        _seq_echo(ctx, sw.port, "early-%d" % i)
    time.sleep(0.6)  # the aborted request's response is now due
    for i in range(5):
        _seq_echo(ctx, sw.port, "late-%d" % i)


@timeout(20)
def test_client_abort_mid_response_no_leftover(ctx):
    b = ctx.upstream("blue")
    sw = ctx.switchd([b])
    for k in range(3):
        a = ctx.client(sw.port)
        a.send(build_request("GET", "/bytes/%d" % (50 * MiB)))
        got = 0
        while got < 2 * MiB:
            got += len(a.recv_some(5))
        a.close()
        for i in range(4):
            _seq_echo(ctx, sw.port, "after-%d-%d" % (k, i))
    c = ctx.client(sw.port)
    r = c.request("GET", "/bytes/%d" % MiB)
    assert r.body == pattern_bytes(MiB)


@timeout(20)
def test_client_abort_mid_upload(ctx):
    b = ctx.upstream("blue")
    sw = ctx.switchd([b], client={"request_buffer": "64k"})
    a = ctx.client(sw.port)
    a.send(build_request("POST", "/echo", headers=[("Content-Length", str(10 * MiB))]))
    sent = 0
    for piece in pattern_iter(3 * MiB):
        a.send(piece)
        sent += len(piece)
    time.sleep(0.2)
    a.close()
    time.sleep(0.2)
    for i in range(6):
        _seq_echo(ctx, sw.port, "after-upload-%d" % i)
    c = ctx.client(sw.port)
    r = c.request("POST", "/echo", body=pattern_bytes(MiB), timeout=10)
    assert r.json()["body_sha256"] == pattern_sha256(MiB)


@timeout(20)
def test_deep_pipeline(ctx):
    b = ctx.upstream("blue")
    sw = ctx.switchd([b])
    c = ctx.client(sw.port)
    reqs = []
    for i in range(100):
        if i % 3 == 0:
            reqs.append(build_request("POST", "/echo", headers=[("X-Seq", str(i))],
                                      body=b"b" * i))
        elif i % 3 == 1:
            reqs.append(build_request("GET", "/bytes/%d" % (i * 100)))
        else:
            reqs.append(build_request("GET", "/status/%d" % (200 + i % 7)))
    c.send(b"".join(reqs))
    for i in range(100):
        r = c.read_response(timeout=10)
        if i % 3 == 0:
            e = r.json()
            seq = [v for n, v in e["headers"] if n.lower() == "x-seq"]
            assert seq == [str(i)] and e["body_len"] == i, "response %d: %r" % (i, e)
        elif i % 3 == 1:
            assert r.body == pattern_bytes(i * 100), "response %d: %r" % (i, r)
        else:
            assert r.status == 200 + i % 7, "response %d: %r" % (i, r)
    assert c.request("GET", "/").status == 200


def test_upstream_informational_response(ctx):
    b = ctx.upstream("blue")
    sw = ctx.switchd([b])
    c = ctx.client(sw.port)
    c.send(build_request("GET", "/early-hints"))
    r = c.read_response()
    if r.status == 103:
        r = c.read_response()
    assert r.status == 200 and r.body == b"blue\n", r
    r = c.request("GET", "/")
    assert r.status == 200 and r.body == b"blue\n", \
        "the request after a 103 got %r" % r


def test_upstream_ambiguous_framing_not_forwarded(ctx):
    b = ctx.upstream("blue")
    sw = ctx.switchd([b])
    c = ctx.client(sw.port)
    r = c.request("GET", "/bad-framing")
    if r.status == 502:
        assert_proxy_error(r, 502, close=False)
    else:
        assert r.status == 200 and r.body == b"hello", r
        assert not (r.header("content-length") and r.header("transfer-encoding")), \
            "a response with both Content-Length and Transfer-Encoding was forwarded: %r" % r


def test_upstream_closes_in_headers_502(ctx):
    b = ctx.upstream("blue")
    sw = ctx.switchd([b])
    c = ctx.client(sw.port)
    r = c.request("GET", "/half-head")
    assert_proxy_error(r, 502, close=False)


@timeout(15)
def test_upstream_short_body_truncates_and_closes(ctx):
    b = ctx.upstream("blue")
    sw = ctx.switchd([b])
    c = ctx.client(sw.port)
    r = c.request("GET", "/short-body", allow_incomplete=True, timeout=5)
    assert r.status == 200 and not r.complete and r.body_len == 1000, r
    assert c.eof


@timeout(15)
def test_upstream_truncated_chunked_not_completed(ctx):
    """An upstream that dies inside a chunked body: the client must not get a
    terminating 0-chunk that would make the truncated body look complete."""
    b = ctx.upstream("blue")
    sw = ctx.switchd([b])
    c = ctx.client(sw.port)
    r = c.request("GET", "/chunked-truncated", allow_incomplete=True, timeout=5)
    assert r.status == 200, r
    assert not r.complete, "the truncated chunked response was completed: %r" % r
    assert r.body == pattern_bytes(3000)[:r.body_len]
    assert c.eof


def test_expect_100_on_http10_gets_no_interim(ctx):
    b = ctx.upstream("blue")
    sw = ctx.switchd([b])
    c = ctx.client(sw.port)
    c.send(b"POST /echo HTTP/1.0\r\nHost: x\r\nContent-Length: 5\r\n"
           b"Expect: 100-continue\r\n\r\nhello")
    r = c.read_response()
    assert r.status == 200, "an HTTP/1.0 client got %r (no 1xx for 1.0, RFC 9110 15.2)" % r
    assert r.json()["body_len"] == 5


def test_chunk_extensions_and_trailers_accepted(ctx):
    b = ctx.upstream("blue")
    sw = ctx.switchd([b])
    c = ctx.client(sw.port)
    c.send(build_request("POST", "/echo", headers=[("Transfer-Encoding", "chunked")]) +
           b"5;name=value\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\n")
    r = c.read_response()
    assert r.status == 200, r
    e = r.json()
    assert e["body_len"] == 11, e
    assert c.request("GET", "/").status == 200


def test_bad_content_length_values(ctx):
    from test_strict import _rejected
    _rejected(ctx, [
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\nhello",
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5,5\r\n\r\nhello",
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\nhello",
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999\r\n\r\n",
        b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    ])


def test_head_of_chunked_response(ctx):
    b = ctx.upstream("blue")
    sw = ctx.switchd([b])
    c = ctx.client(sw.port)
    r = c.request("HEAD", "/chunked/5000")
    assert r.status == 200, r
    r = c.request("GET", "/")
    assert r.status == 200 and r.body == b"blue\n", "request after HEAD got %r" % r
