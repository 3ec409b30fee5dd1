"""Config check, routing, keep-alive, pipelining, HTTP/1.0, pooling, framing."""

import time

from harness import (Client, assert_proxy_error, build_request, check_config,
                     make_config, pattern_bytes, timeout)


# -- switchd -t ----------------------------------------------------------------

def test_check_config_ok(ctx):
    conf = make_config([ctx.port()], ["127.0.0.1:%d" % ctx.port()],
                       ["127.0.0.1:%d" % ctx.port()],
                       client={"header_timeout": "10s", "max_body": "64m",
                               "min_send_rate": "1k", "trusted_proxy": "127.0.0.2"},
                       blue_opts={"connect_timeout": "5s", "response_timeout": "60s",
                                  "idle_timeout": "1s"})
    rc, out, err, path = check_config(ctx, conf)
    assert rc == 0, "switchd -t exited %d: %s" % (rc, err)
    assert out.strip() == "%s: ok" % path, "stdout %r" % out


def test_check_config_unknown_directive(ctx):
    conf = make_config([ctx.port()], ["127.0.0.1:%d" % ctx.port()])
    lines = conf.split("\n")
    at = lines.index("listen") + 1
    lines.insert(at, "    frobnicate yes")
    rc, out, err, path = check_config(ctx, "\n".join(lines))
    assert rc == 1, "switchd -t accepted an unknown directive (exit %d)" % rc
    assert "%s:%d:" % (path, at + 1) in err, \
        "stderr does not name %s:%d: %r" % (path, at + 1, err)
    assert "ok" not in out


def test_check_config_bad_value_names_line(ctx):
    conf = make_config([ctx.port()], ["127.0.0.1:%d" % ctx.port()],
                       client={"header_timeout": "banana"})
    lineno = conf.split("\n").index("    header_timeout banana") + 1
    rc, out, err, path = check_config(ctx, conf)
    assert rc == 1, "exit %d for header_timeout banana" % rc
    assert "%s:%d:" % (path, lineno) in err, "stderr %r" % err


def test_check_config_missing_file(ctx):
    import subprocess
    from harness import binary, switchd_env
    missing = ctx.path("nope.conf")
    p = subprocess.run([binary(), "-t", "-c", missing], capture_output=True,
                       env=switchd_env(), timeout=20)
    assert p.returncode == 1, "exit %d" % p.returncode
    assert missing in p.stderr.decode(), "stderr %r" % p.stderr


# -- routing -------------------------------------------------------------------

def test_get_root(ctx):
    b = ctx.upstream("blue")
    sw = ctx.switchd([b])
    r = ctx.get(sw.port, "/")
    assert r.status == 200, r
    assert r.body == b"blue\n", r.body
    assert r.header("x-upstream") == "blue"


def test_live_green(ctx):
    b = ctx.upstream("blue")
    g = ctx.upstream("green")
    sw = ctx.switchd([b], [g], live="green")
    for _ in range(3):
        r = ctx.get(sw.port, "/")
        assert r.status == 200 and r.body == b"green\n", r
    assert b.requests() == 0


def test_round_robin(ctx):
    b1 = ctx.upstream("blue1")
    b2 = ctx.upstream("blue2")
    sw = ctx.switchd([b1, b2])
    names = [ctx.get(sw.port, "/").header("x-upstream") for _ in range(6)]
    assert sorted(names) == ["blue1"] * 3 + ["blue2"] * 3, names
    for a, b in zip(names, names[1:]):
        assert a != b, "not round robin: %s" % names


def test_round_robin_on_one_connection(ctx):
    b1 = ctx.upstream("blue1")
    b2 = ctx.upstream("blue2")
    sw = ctx.switchd([b1, b2])
    c = ctx.client(sw.port)
    names = [c.request("GET", "/").header("x-upstream") for _ in range(4)]
    assert sorted(names) == ["blue1", "blue1", "blue2", "blue2"], names


# -- keep-alive and pipelining -------------------------------------------------

def test_keepalive_several_requests(ctx):
    b = ctx.upstream("blue")
    sw = ctx.switchd([b])
    c = ctx.client(sw.port)
    for i in range(10):
        r = c.request("POST", "/echo", body=b"x" * i)
        assert r.status == 200, r
        assert r.json()["body_len"] == i
        assert not r.has_token("connection", "close"), r
    r = c.request("GET", "/bytes/1000")
    assert r.body == pattern_bytes(1000)


def test_pipelined_requests_in_order(ctx):
    b = ctx.upstream("blue")
    sw = ctx.switchd([b])
    c = ctx.client(sw.port)
    data = (build_request("GET", "/delay/300") +
            build_request("GET", "/status/201") +
            build_request("GET", "/bytes/20000") +
            build_request("POST", "/echo", body=b"hello pipeline") +
            build_request("HEAD", "/bytes/5000") +
            build_request("GET", "/"))
    c.send(data)  # one write
    r = c.read_response()
    assert r.status == 200 and r.body == b"blue\n", r
    r = c.read_response()
    assert r.status == 201 and r.body == b"blue 201\n", r
    r = c.read_response()
    assert r.status == 200 and r.body == pattern_bytes(20000), r
    r = c.read_response()
    assert r.status == 200 and r.json()["body_len"] == 14, r
    r = c.read_response(head=True)
    assert r.status == 200 and r.header("content-length") == "5000", r
    r = c.read_response()
    assert r.status == 200 and r.body == b"blue\n", r
    assert not c.wait_closed(0.3), "connection closed after pipelined requests"
    assert c.buf == b"", "extra bytes: %r" % bytes(c.buf[:200])


def test_client_connection_close(ctx):
    b = ctx.upstream("blue")
    sw = ctx.switchd([b])
    c = ctx.client(sw.port)
    r = c.request("GET", "/", headers=[("Connection", "close")])
    assert r.status == 200 and r.body == b"blue\n", r
    assert r.has_token("connection", "close"), r
    assert c.wait_closed(2), "Connection: close from the client: connection left open"


def test_http10_closes(ctx):
    b = ctx.upstream("blue")
    sw = ctx.switchd([b])
    c = ctx.client(sw.port)
    c.send(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
    r = c.read_response()
    assert r.status == 200 and r.body == b"blue\n", r
    assert c.wait_closed(2), "HTTP/1.0 without keep-alive: connection left open"


def test_http10_without_host_accepted(ctx):
    b = ctx.upstream("blue")
    sw = ctx.switchd([b])
    c = ctx.client(sw.port)
    c.send(b"GET / HTTP/1.0\r\n\r\n")
    r = c.read_response()
    assert r.status == 200 and r.body == b"blue\n", r


def test_http10_keepalive(ctx):
    b = ctx.upstream("blue")
    sw = ctx.switchd([b])
    c = ctx.client(sw.port)
    for i in range(3):
        c.send(b"GET / HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n\r\n")
        r = c.read_response()
        assert r.status == 200 and r.body == b"blue\n", r
        assert r.framing == "content-length", r
        assert not r.has_token("connection", "close"), r
    assert not c.wait_closed(0.3)


def test_http10_client_never_gets_chunked(ctx):
    b = ctx.upstream("blue")
    sw = ctx.switchd([b])
    c = ctx.client(sw.port)
    c.send(b"GET /chunked/5000 HTTP/1.0\r\nHost: x\r\n\r\n")
    r = c.read_response()
    assert r.framing != "chunked", "chunked sent to an HTTP/1.0 client: %r" % r
    assert r.body == pattern_bytes(5000)


def test_idle_client_closed_after_idle_timeout(ctx):
    b = ctx.upstream("blue")
    sw = ctx.switchd([b], client={"idle_timeout": "1s"})
    c = ctx.client(sw.port)
    assert c.request("GET", "/").status == 200
    t0 = time.time()
    assert c.wait_closed(4), "idle connection still open 4s after its last response"
    dt = time.time() - t0
    assert dt > 0.6, "closed after %.2fs, idle_timeout is 1s" % dt
    assert c.buf == b"", "bytes sent on idle close: %r" % bytes(c.buf)


def test_upstream_pool_reuses_connections(ctx):
    b = ctx.upstream("blue")
    sw = ctx.switchd([b])
    for i in range(20):
        assert ctx.get(sw.port, "/").status == 200
    c = ctx.client(sw.port)
    for i in range(20):
        assert c.request("GET", "/").status == 200
    st = b.stats()
    assert st["requests"] == 40, st
    assert st["connections"] <= 3, "40 sequential requests used %d upstream " \
        "connections: %s" % (st["connections"], st)


# -- statuses and framing ------------------------------------------------------

def test_status_passthrough(ctx):
    b = ctx.upstream("blue")
    sw = ctx.switchd([b])
    c = ctx.client(sw.port)
    for code in (201, 404, 500, 503):
        r = c.request("GET", "/status/%d" % code)
        assert r.status == code and r.body == b"blue %d\n" % code, r
    for code in (204, 304):
        r = c.request("GET", "/status/%d" % code)
        assert r.status == code and r.body == b"", r
    r = c.request("GET", "/")
    assert r.status == 200 and r.body == b"blue\n"


def test_head_request(ctx):
    b = ctx.upstream("blue")
    sw = ctx.switchd([b])
    c = ctx.client(sw.port)
    r = c.request("HEAD", "/bytes/100000")
    assert r.status == 200 and r.header("content-length") == "100000", r
    r = c.request("GET", "/")
    assert r.status == 200 and r.body == b"blue\n", \
        "request after HEAD got %r (was a body expected after HEAD?)" % r


def test_chunked_response_passthrough(ctx):
    b = ctx.upstream("blue")
    sw = ctx.switchd([b])
    c = ctx.client(sw.port)
    for n in (1, 1000, 300000, 3 * 1024 * 1024):
        r = c.request("GET", "/chunked/%d" % n)
        assert r.status == 200 and r.body_len == n, r
        assert r.body == pattern_bytes(n)
    assert c.request("GET", "/").body == b"blue\n"


def test_close_delimited_response(ctx):
    """An upstream response delimited by its close: the client gets it whole,
    and either the connection ends with it or it was reframed and goes on."""
    b = ctx.upstream("blue")
    sw = ctx.switchd([b])
    for n in (0, 5000, 3 * 1024 * 1024):
        c = ctx.client(sw.port)
        r = c.request("GET", "/close-delimited/%d" % n)
        assert r.status == 200 and r.body_len == n, r
        assert r.body == pattern_bytes(n)
        if r.framing == "close":
            assert c.eof
        else:
            r = c.request("GET", "/")
            assert r.status == 200 and r.body == b"blue\n", r
        c.close()


@timeout(20)
def test_many_connections(ctx):
    b1 = ctx.upstream("blue1")
    b2 = ctx.upstream("blue2")
    sw = ctx.switchd([b1, b2])
    clients = [Client(sw.port) for _ in range(200)]
    ctx.clients.extend(clients)
    for c in clients:
        c.send(build_request("GET", "/"))
    seen = set()
    for c in clients:
        r = c.read_response()
        assert r.status == 200, r
        seen.add(r.body)
    assert seen == {b"blue1\n", b"blue2\n"}, seen
