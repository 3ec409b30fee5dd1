"""What the upstream sees: hop-by-hop removal, X-Switchd-* stripping,
X-Forwarded-*, X-Request-Id, Expect: 100-continue, body reframing."""

import re

from harness import KiB, MiB, Client, build_request, chunked, pattern_bytes, pattern_iter, \
    pattern_sha256


def _vals(echo, name):
    return [v for n, v in echo["headers"] if n.lower() == name.lower()]


def _names(echo):
    return [n.lower() for n, v in echo["headers"]]


def _echo(ctx, port, headers=(), body=b"", source=None, method="POST", host="test.local"):
    c = ctx.client(port, source=source)
    r = c.request(method, "/echo", headers=list(headers), body=body, host=host)
    assert r.status == 200, r
    c.close()
    return r.json()


def test_hop_by_hop_request_headers_removed(ctx):
    b = ctx.upstream("blue")
    sw = ctx.switchd([b])
    e = _echo(ctx, sw.port, [
        ("Connection", "keep-alive, X-Hop-A, x-hop-b"),
        ("X-Hop-A", "1"), ("X-Hop-B", "2"),
        ("Keep-Alive", "timeout=5"), ("Proxy-Connection", "keep-alive"),
        ("TE", "trailers"), ("Trailer", "X-Trail"), ("Upgrade", "h2c"),
        ("X-Keep", "yes")], body=b"abc")
    names = _names(e)
    for gone in ("x-hop-a", "x-hop-b", "keep-alive", "proxy-connection", "te", "trailer",
                 "upgrade"):
        assert gone not in names, "%s forwarded: %r" % (gone, e["headers"])
    for v in _vals(e, "connection"):
        toks = {t.strip().lower() for t in v.split(",")}
        assert toks <= {"keep-alive", "close"}, "Connection forwarded as %r" % v
    assert _vals(e, "x-keep") == ["yes"], e["headers"]
    assert e["body_len"] == 3


def test_hop_by_hop_response_headers_removed(ctx):
    b = ctx.upstream("blue")
    sw = ctx.switchd([b])
    c = ctx.client(sw.port)
    r = c.request("GET", "/hop")
    assert r.status == 200 and r.body == b"hop\n", r
    for gone in ("x-hop", "keep-alive", "proxy-connection"):
        assert r.header(gone) is None, "%s reached the client: %r" % (gone, r.headers)
    for v in r.headers_all("connection"):
        toks = {t.strip().lower() for t in v.split(",")}
        assert toks <= {"keep-alive", "close"}, "Connection: %r reached the client" % v
    assert r.header("x-keep") == "yes", r.headers
    assert c.request("GET", "/").status == 200


def test_x_switchd_headers_stripped(ctx):
    b = ctx.upstream("blue")
    g = ctx.upstream("green")
    sw = ctx.switchd([b], [g])
    e = _echo(ctx, sw.port, [("X-Switchd-Colour", "green"), ("x-switchd-anything", "1"),
                             ("X-SWITCHD-UPPER", "2"), ("X-Switchdx", "keep"),
                             ("X-Switch-Foo", "keep")])
    names = _names(e)
    assert not [n for n in names if n.startswith("x-switchd-")], e["headers"]
    assert "x-switchdx" in names and "x-switch-foo" in names, e["headers"]
    assert e["name"] == "blue"


def test_x_forwarded_for_set_for_untrusted_client(ctx):
    b = ctx.upstream("blue")
    sw = ctx.switchd([b], client={"trusted_proxy": "127.0.0.2"})
    e = _echo(ctx, sw.port)
    assert _vals(e, "x-forwarded-for") == ["127.0.0.1"], e["headers"]
    # a spoofed value from an untrusted client is replaced, not appended to
    e = _echo(ctx, sw.port, [("X-Forwarded-For", "1.2.3.4")])
    assert _vals(e, "x-forwarded-for") == ["127.0.0.1"], e["headers"]


def test_x_forwarded_for_appended_for_trusted_proxy(ctx):
    b = ctx.upstream("blue")
    sw = ctx.switchd([b], client={"trusted_proxy": "127.0.0.2"})
    e = _echo(ctx, sw.port, [("X-Forwarded-For", "1.2.3.4")], source="127.0.0.2")
    assert _vals(e, "x-forwarded-for") == ["1.2.3.4, 127.0.0.2"], e["headers"]
    e = _echo(ctx, sw.port, source="127.0.0.2")
    assert _vals(e, "x-forwarded-for") == ["127.0.0.2"], e["headers"]
    # 127.0.0.1 is not trusted in this config
    e = _echo(ctx, sw.port, [("X-Forwarded-For", "1.2.3.4")], source="127.0.0.1")
    assert _vals(e, "x-forwarded-for") == ["127.0.0.1"], e["headers"]


def test_x_forwarded_proto_and_host(ctx):
    b = ctx.upstream("blue")
    sw = ctx.switchd([b])
    e = _echo(ctx, sw.port, [("X-Forwarded-Proto", "https"),
                             ("X-Forwarded-Host", "evil.example")],
              host="example.test:8080")
    assert _vals(e, "x-forwarded-proto") == ["http"], e["headers"]
    assert _vals(e, "x-forwarded-host") == ["example.test:8080"], e["headers"]
    assert _vals(e, "host") == ["example.test:8080"], e["headers"]


def test_x_request_id_added_and_kept(ctx):
    b = ctx.upstream("blue")
    sw = ctx.switchd([b])
    ids = set()
    for _ in range(3):
        e = _echo(ctx, sw.port)
        v = _vals(e, "x-request-id")
        assert len(v) == 1 and re.fullmatch(r"[0-9a-f]{32}", v[0]), e["headers"]
        ids.add(v[0])
    assert len(ids) == 3, "request ids repeat: %r" % ids
    e = _echo(ctx, sw.port, [("X-Request-Id", "abc-123")])
    assert _vals(e, "x-request-id") == ["abc-123"], e["headers"]


def test_expect_100_continue(ctx):
    b = ctx.upstream("blue")
    sw = ctx.switchd([b])
    c = ctx.client(sw.port)
    c.send(build_request("POST", "/echo", headers=[("Content-Length", "5"),
                                                   ("Expect", "100-continue")]))
    r = c.read_response(timeout=3)
    assert r.status == 100 and r.version == "HTTP/1.1" and r.reason == "Continue", r
    assert r.raw_head == b"HTTP/1.1 100 Continue\r\n\r\n", r.raw_head
    c.send(b"hello")
    r = c.read_response()
    assert r.status == 200, r
    e = r.json()
    assert e["body_len"] == 5
    assert "expect" not in _names(e), e["headers"]
    # the connection goes on
    assert c.request("GET", "/").status == 200


def test_small_chunked_body_reframed_with_content_length(ctx):
    b = ctx.upstream("blue")
    sw = ctx.switchd([b])
    body = pattern_bytes(100 * KiB)
    c = ctx.client(sw.port)
    r = c.request("POST", "/echo", headers=[("Transfer-Encoding", "chunked")],
                  body=chunked(body, 7000))
    e = r.json()
    assert e["body_len"] == len(body) and e["body_sha256"] == pattern_sha256(len(body))
    assert e["framing"] == "content-length", e["raw_head"]
    assert _vals(e, "content-length") == [str(len(body))], e["headers"]
    assert "transfer-encoding" not in _names(e), e["headers"]


def test_large_chunked_body_streams_chunked(ctx):
    b = ctx.upstream("blue")
    sw = ctx.switchd([b], client={"request_buffer": "64k"})
    n = 2 * MiB
    c = ctx.client(sw.port)
    c.send(build_request("POST", "/echo", headers=[("Transfer-Encoding", "chunked")]))
    for piece in pattern_iter(n, 30000):
        c.send(b"%x\r\n%s\r\n" % (len(piece), piece))
    c.send(b"0\r\n\r\n")
    e = c.read_response().json()
    assert e["body_len"] == n and e["body_sha256"] == pattern_sha256(n), e
    assert e["framing"] == "chunked", e["raw_head"]
    assert "content-length" not in _names(e), e["headers"]


def test_large_content_length_body_keeps_length(ctx):
    b = ctx.upstream("blue")
    sw = ctx.switchd([b], client={"request_buffer": "64k"})
    n = 2 * MiB
    c = ctx.client(sw.port)
    c.send(build_request("POST", "/echo", headers=[("Content-Length", str(n))]))
    for piece in pattern_iter(n):
        c.send(piece)
    e = c.read_response().json()
    assert e["body_len"] == n and e["body_sha256"] == pattern_sha256(n), e
    assert e["framing"] == "content-length", e["raw_head"]


def test_get_without_body_has_no_body_framing(ctx):
    b = ctx.upstream("blue")
    sw = ctx.switchd([b])
    e = _echo(ctx, sw.port, method="GET")
    assert e["body_len"] == 0
    names = _names(e)
    assert "transfer-encoding" not in names, e["headers"]
    assert _vals(e, "content-length") in ([], ["0"]), e["headers"]


def test_trusted_proxy_cidr(ctx):
    b = ctx.upstream("blue")
    sw = ctx.switchd([b], client={"trusted_proxy": "127.0.0.0/30"})
    c = Client(sw.port, source="127.0.0.3")
    ctx.clients.append(c)
    r = c.request("POST", "/echo", headers=[("X-Forwarded-For", "10.9.8.7")])
    assert _vals(r.json(), "x-forwarded-for") == ["10.9.8.7, 127.0.0.3"], r.json()["headers"]
