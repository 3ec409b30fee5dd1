"""Limits (414, 431, 413) and client timeouts (408)."""

import time

from harness import assert_proxy_error, build_request, chunked, timeout


def test_url_too_long_414(ctx):
    b = ctx.upstream("blue")
    sw = ctx.switchd([b], client={"max_url": "1k"})
    r = ctx.get(sw.port, "/" + "a" * 900)
    assert r.status == 200, "a 901-byte URL under max_url 1k got %r" % r
    c = ctx.client(sw.port)
    c.send(build_request("GET", "/" + "a" * 2000))
    assert_proxy_error(c.read_response(), 414, c)
    assert b.requests() == 1


def test_header_block_too_large_431(ctx):
    b = ctx.upstream("blue")
    sw = ctx.switchd([b], client={"max_header_size": "4k"})
    r = ctx.get(sw.port, "/", headers=[("X-Pad-%d" % i, "v" * 100) for i in range(25)])
    assert r.status == 200, "a ~3 KiB header block under 4k got %r" % r
    c = ctx.client(sw.port)
    c.try_send(build_request("GET", "/", headers=[("X-Big", "v" * 5000)]))
    assert_proxy_error(c.read_response(), 431, c)
    c = ctx.client(sw.port)
    c.try_send(build_request("GET", "/", headers=[("X-Pad-%d" % i, "v" * 100)
                                                  for i in range(50)]))
    assert_proxy_error(c.read_response(), 431, c)
    assert b.requests() == 1


def test_too_many_headers_431(ctx):
    b = ctx.upstream("blue")
    sw = ctx.switchd([b], client={"max_headers": "20"})
    r = ctx.get(sw.port, "/", headers=[("X-H%d" % i, "1") for i in range(15)])
    assert r.status == 200, "16 headers under max_headers 20 got %r" % r
    c = ctx.client(sw.port)
    c.send(build_request("GET", "/", headers=[("X-H%d" % i, "1") for i in range(30)]))
    assert_proxy_error(c.read_response(), 431, c)
    assert b.requests() == 1


def _assert_413(c):
    r = c.read_response()
    while r.status == 100:
        r = c.read_response()
    assert_proxy_error(r, 413, c, close=False)
    if r.has_token("connection", "close"):
        assert c.wait_closed(2), "413 with Connection: close but the connection stays open"


def test_body_too_large_413(ctx):
    b = ctx.upstream("blue")
    sw = ctx.switchd([b], client={"max_body": "1k"})
    c = ctx.client(sw.port)
    assert c.request("POST", "/echo", body=b"x" * 1000).json()["body_len"] == 1000
    # declared too large: answered without the body
    c = ctx.client(sw.port)
    c.send(build_request("POST", "/echo", headers=[("Content-Length", "2000")]))
    _assert_413(c)
    # chunked, found too large while reading
    c = ctx.client(sw.port)
    c.try_send(build_request("POST", "/echo", headers=[("Transfer-Encoding", "chunked")])
               + chunked(b"y" * 2000, 500))
    _assert_413(c)
    assert b.requests() == 1


def test_body_too_large_with_expect_100(ctx):
    b = ctx.upstream("blue")
    sw = ctx.switchd([b], client={"max_body": "1k"})
    c = ctx.client(sw.port)
    c.send(build_request("POST", "/echo", headers=[("Content-Length", "5000"),
                                                   ("Expect", "100-continue")]))
    r = c.read_response()
    assert r.status == 413, "Expect: 100-continue with an oversized body got %r" % r
    assert b.requests() == 0


@timeout(15)
def test_header_timeout_408(ctx):
    b = ctx.upstream("blue")
    sw = ctx.switchd([b], client={"header_timeout": "1s"})
    c = ctx.client(sw.port)
    t0 = time.time()
    c.send(b"GET / HTTP/1.1\r\nHost: x\r\n")  # no end of the header block
    r = c.read_response(timeout=5)
    dt = time.time() - t0
    assert_proxy_error(r, 408, c)
    assert 0.7 < dt < 3.5, "408 after %.2fs with header_timeout 1s" % dt
    assert b.requests() == 0


@timeout(15)
def test_header_timeout_slowloris(ctx):
    """Bytes keep coming, but the whole header block takes too long."""
    b = ctx.upstream("blue")
    sw = ctx.switchd([b], client={"header_timeout": "2s"})
    c = ctx.client(sw.port)
    t0 = time.time()
    c.send(b"GET / HTTP/1.1\r\nHost: x\r\n")
    closed = False
    for i in range(40):  # 8 s of one header byte every 200 ms
        if not c.try_send(b"X"):
            closed = True
            break
        if c.wait_closed(0.2):
            closed = True
            break
    dt = time.time() - t0
    assert closed, "slowloris headers still accepted after %.1fs (header_timeout 2s)" % dt
    assert dt < 5, "closed only after %.1fs" % dt
    data = bytes(c.buf)
    assert data.startswith(b"HTTP/1.1 408 "), "expected a 408 before the close, got %r" % data


@timeout(15)
def test_silent_connection_closed(ctx):
    """A connection that never sends a byte is closed (header or idle timeout)."""
    b = ctx.upstream("blue")
    sw = ctx.switchd([b], client={"header_timeout": "1s", "idle_timeout": "1s"})
    c = ctx.client(sw.port)
    assert c.wait_closed(4), "a silent connection is still open after 4s"
    data = bytes(c.buf)
    assert data == b"" or data.startswith(b"HTTP/1.1 408 "), data


@timeout(15)
def test_body_timeout_408(ctx):
    b = ctx.upstream("blue")
    sw = ctx.switchd([b], client={"body_timeout": "1s", "min_send_rate": "0"})
    c = ctx.client(sw.port)
    c.send(build_request("POST", "/echo", headers=[("Content-Length", "100")]) + b"x" * 10)
    t0 = time.time()
    r = c.read_response(timeout=6)
    dt = time.time() - t0
    assert_proxy_error(r, 408, c)
    assert 0.7 < dt < 4, "408 after %.2fs with body_timeout 1s" % dt
    assert b.requests() == 0


@timeout(25)
def test_min_send_rate_408(ctx):
    """A declared 1 MB body at ~10 bytes/s: 408 within ~10 s."""
    b = ctx.upstream("blue")
    sw = ctx.switchd([b], client={"min_send_rate": "1k", "body_timeout": "60s"})
    c = ctx.client(sw.port)
    t0 = time.time()
    c.send(build_request("POST", "/echo", headers=[("Content-Length", "1000000")]))
    got = False
    while time.time() - t0 < 16:
        if not c.try_send(b"x" * 5):
            got = True
            break
        if c.wait_closed(0.5):
            got = True
            break
    dt = time.time() - t0
    assert got, "a 10 B/s upload is still open after %.1fs" % dt
    assert dt < 12, "closed after %.1fs; min_send_rate 1k over 5 s windows" % dt
    data = bytes(c.buf)
    assert data.startswith(b"HTTP/1.1 408 "), "expected 408, got %r" % data[:200]
    assert b.requests() == 0


@timeout(15)
def test_fast_enough_upload_not_cut(ctx):
    """min_send_rate must not cut a client sending above it."""
    b = ctx.upstream("blue")
    sw = ctx.switchd([b], client={"min_send_rate": "1k"})
    c = ctx.client(sw.port)
    body = b"z" * 60000
    c.send(build_request("POST", "/echo", headers=[("Content-Length", str(len(body)))]))
    for i in range(0, len(body), 5000):  # 10 KB/s for 6 s
        c.send(body[i:i + 5000])
        time.sleep(0.5)
    r = c.read_response()
    assert r.status == 200 and r.json()["body_len"] == len(body), r
