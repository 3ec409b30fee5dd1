"""Strict parsing: every ambiguous or malformed request gets 400 (CONNECT 405)
and the connection closed, and nothing reaches the upstream."""

from harness import assert_proxy_error, build_request


def _rejected(ctx, variants, code=400):
    """Each variant (raw bytes) on its own connection: CODE, proxy format,
    closed. Afterwards the upstream must have seen no request at all."""
    b = ctx.upstream("blue")
    sw = ctx.switchd([b])
    for raw in variants:
        c = ctx.client(sw.port)
        c.try_send(raw)
        try:
            r = c.read_response(timeout=5)
        except AssertionError as e:
            raise AssertionError("request %r: %s" % (raw, e))
        try:
            assert_proxy_error(r, code, c)
        except AssertionError as e:
            raise AssertionError("request %r: %s" % (raw, e))
        c.close()
    st = b.stats()
    assert st["requests"] == 0, "the upstream saw %d request(s): %r" % (
        st["requests"], [(e["method"], e["target"], e["headers"]) for e in b.log()])
    # and switchd still serves
    assert ctx.get(sw.port, "/").status == 200


def test_content_length_and_transfer_encoding(ctx):
    _rejected(ctx, [
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
        b"Content-Length: 5\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    ])


def test_duplicate_content_length(ctx):
    _rejected(ctx, [
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
        b"Content-Length: 5\r\n\r\nhello",
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
        b"Content-Length: 6\r\n\r\nhello!",
    ])


def test_obs_fold(ctx):
    _rejected(ctx, [
        b"GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n continued\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n\tcontinued\r\n\r\n",
    ])


def test_bare_lf(ctx):
    _rejected(ctx, [
        b"GET / HTTP/1.1\nHost: x\n\n",
        b"GET / HTTP/1.1\r\nHost: x\nX-A: 1\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n\n",
    ])


def test_missing_host_http11(ctx):
    _rejected(ctx, [b"GET / HTTP/1.1\r\n\r\n",
                    b"GET / HTTP/1.1\r\nX-A: 1\r\n\r\n"])


def test_duplicate_host(ctx):
    _rejected(ctx, [b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
                    b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n"])


def test_transfer_encoding_on_http10(ctx):
    _rejected(ctx, [
        b"POST /echo HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n0\r\n\r\n",
    ])


def test_transfer_encoding_not_chunked(ctx):
    # RFC 9112 6.3: a request whose final coding is not chunked cannot be
    # delimited; llhttp strict rejects it and so must we.
    _rejected(ctx, [
        b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\nhello",
        b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"
        b"5\r\nhello\r\n0\r\n\r\n",
    ])


def test_transfer_coding_before_chunked_501(ctx):
    # RFC 9112 6.1: a coding we do not implement is refused with 501; the
    # proxy would otherwise drop it when reframing and hand the application
    # gzip bytes as the body.
    _rejected(ctx, [
        b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
        b"5\r\nhello\r\n0\r\n\r\n",
    ], code=501)


def test_invalid_header_name(ctx):
    _rejected(ctx, [
        b"GET / HTTP/1.1\r\nHost: x\r\nX(A): 1\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nX A: 1\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nX-A : 1\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nX\x01A: 1\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\n: empty\r\n\r\n",
    ])


def test_invalid_header_value(ctx):
    _rejected(ctx, [
        b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n",
    ])


def test_invalid_chunk_size(ctx):
    _rejected(ctx, [
        b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"zz\r\nhello\r\n0\r\n\r\n",
        b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"-5\r\nhello\r\n0\r\n\r\n",
        b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"fffffffffffffffffff\r\nhello\r\n0\r\n\r\n",
    ])


def test_chunk_data_without_crlf(ctx):
    # llhttp 8 accepts chunk data that is not followed by CRLF: a smuggling
    # vector, so the proxy has to catch it.
    _rejected(ctx, [
        b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhelloXX0\r\n\r\n",
    ])


def test_request_target_not_origin_form(ctx):
    _rejected(ctx, [
        b"GET http://x/ HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET foo HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET x:80 HTTP/1.1\r\nHost: x\r\n\r\n",
    ])


def test_bad_request_line(ctx):
    _rejected(ctx, [
        b"GET / HTTP/1.1 extra\r\nHost: x\r\n\r\n",
        b"GET /a b HTTP/1.1\r\nHost: x\r\n\r\n",
        b"G@T / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET / HTTX/1.1\r\nHost: x\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40,  # TLS hello
    ])


def test_connect_405(ctx):
    _rejected(ctx, [b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"],
              code=405)


def test_asterisk_form_accepted(ctx):
    b = ctx.upstream("blue")
    sw = ctx.switchd([b])
    c = ctx.client(sw.port)
    c.send(b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n")
    r = c.read_response()
    assert r.status == 200, "OPTIONS * got %r" % r
    log = b.log()
    assert [(e["method"], e["target"]) for e in log] == [("OPTIONS", "*")], log


def test_bad_request_after_good_one_on_same_connection(ctx):
    b = ctx.upstream("blue")
    sw = ctx.switchd([b])
    c = ctx.client(sw.port)
    assert c.request("GET", "/").status == 200
    c.send(b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx")
    r = c.read_response()
    assert_proxy_error(r, 400, c)
    assert b.requests() == 1


def test_pipelined_good_then_bad(ctx):
    b = ctx.upstream("blue")
    sw = ctx.switchd([b])
    c = ctx.client(sw.port)
    c.send(build_request("GET", "/status/202") +
           b"GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n folded\r\n\r\n" +
           build_request("GET", "/status/203"))
    r = c.read_response()
    assert r.status == 202, r
    r = c.read_response()
    assert_proxy_error(r, 400, c)
    assert [e["target"] for e in b.log()] == ["/status/202"], \
        "upstream saw %r" % [e["target"] for e in b.log()]
