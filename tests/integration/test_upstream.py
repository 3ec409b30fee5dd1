"""Upstream failures: refused, timeouts, resets and stalls, the idle-close
race on pooled connections, and what may and may not be retried."""

import socket
import time

from harness import assert_proxy_error, build_request, timeout, wait_for


def _blackhole(ctx):
    """A port whose accept queue is full: SYNs are dropped, connect() hangs."""
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(0)
    port = ls.getsockname()[1]
    keep = [ls]
    for _ in range(3):
        s = socket.socket()
        s.setblocking(False)
        try:
            s.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        keep.append(s)
    time.sleep(0.1)
    probe = socket.socket()
    probe.settimeout(0.5)
    try:
        probe.connect(("127.0.0.1", port))
        raise AssertionError("could not make a blackhole port")
    except socket.timeout:
        pass
    finally:
        probe.close()
    ctx.blackhole_sockets = keep
    return port


def test_refused_server_retried_on_other_server(ctx):
    refused = "127.0.0.1:%d" % ctx.port()  # nothing listens there
    b2 = ctx.upstream("blue2")
    sw = ctx.switchd([refused, b2])
    c = ctx.client(sw.port)
    for i in range(10):
        r = c.request("GET", "/")
        assert r.status == 200 and r.body == b"blue2\n", "request %d: %r" % (i, r)
    for i in range(6):
        r = ctx.get(sw.port, "/")
        assert r.status == 200 and r.body == b"blue2\n", "request %d: %r" % (i, r)
    # a POST is retried too: nothing reached the refused server
    r = c.request("POST", "/echo", body=b"once")
    assert r.status == 200 and r.json()["body_len"] == 4, r
    assert b2.requests() == 17


def test_all_servers_refused_502(ctx):
    p1, p2 = ctx.port(), ctx.port()
    g = ctx.upstream("green")
    sw = ctx.switchd(["127.0.0.1:%d" % p1, "127.0.0.1:%d" % p2], [g])
    c = ctx.client(sw.port)
    t0 = time.time()
    r = c.request("GET", "/")
    assert_proxy_error(r, 502, c, close=False)
    if r.has_token("connection", "close"):
        assert c.wait_closed(2)
    assert time.time() - t0 < 3
    assert g.requests() == 0, "a refused blue request went to green"


def test_server_dies_requests_move_to_other(ctx):
    b1 = ctx.upstream("blue1")
    b2 = ctx.upstream("blue2")
    sw = ctx.switchd([b1, b2])
    for _ in range(4):
        assert ctx.get(sw.port, "/").status == 200
    b1.stop()
    for i in range(8):
        r = ctx.get(sw.port, "/")
        assert r.status == 200 and r.body == b"blue2\n", "request %d after blue1 died: %r" \
            % (i, r)


@timeout(15)
def test_response_timeout_504(ctx):
    b = ctx.upstream("blue")
    sw = ctx.switchd([b], blue_opts={"response_timeout": "1s"})
    c = ctx.client(sw.port)
    t0 = time.time()
    r = c.request("GET", "/stall", timeout=6)
    dt = time.time() - t0
    assert_proxy_error(r, 504, c, close=False)
    assert 0.8 < dt < 3.5, "504 after %.2fs with response_timeout 1s" % dt
    # a slow but in-time answer is not a timeout
    c = ctx.client(sw.port)
    r = c.request("GET", "/delay/500")
    assert r.status == 200, r


@timeout(15)
def test_connect_timeout_504(ctx):
    port = _blackhole(ctx)
    sw = ctx.switchd(["127.0.0.1:%d" % port], blue_opts={"connect_timeout": "1s"})
    c = ctx.client(sw.port)
    t0 = time.time()
    r = c.request("GET", "/", timeout=8)
    dt = time.time() - t0
    assert_proxy_error(r, 504, c, close=False)
    assert 0.8 < dt < 4, "504 after %.2fs with connect_timeout 1s" % dt


@timeout(15)
def test_reset_mid_response_truncates_and_closes(ctx):
    b = ctx.upstream("blue")
    sw = ctx.switchd([b])
    c = ctx.client(sw.port)
    r = c.request("GET", "/reset-mid", allow_incomplete=True, timeout=5)
    assert r.status == 200, r
    assert not r.complete, "the response looked complete: %r" % r
    assert r.body_len < 1000000
    assert b"HTTP/1." not in r.body, "a second status line inside the body"
    assert c.eof, "connection not closed"
    assert ctx.get(sw.port, "/").status == 200


@timeout(15)
def test_stall_mid_response_truncates_and_closes(ctx):
    b = ctx.upstream("blue")
    sw = ctx.switchd([b], blue_opts={"response_timeout": "1s"})
    c = ctx.client(sw.port)
    t0 = time.time()
    r = c.request("GET", "/stall-mid", allow_incomplete=True, timeout=6)
    dt = time.time() - t0
    assert r.status == 200 and not r.complete, r
    assert r.body_len == 100000, "got %d of the 100000 bytes sent" % r.body_len
    assert b"HTTP/1." not in r.body
    assert dt < 4, "closed after %.2fs" % dt


def test_upstream_closes_before_response_502(ctx):
    b = ctx.upstream("blue")
    sw = ctx.switchd([b])
    for path in ("/drop", "/reset", "/garbage"):
        c = ctx.client(sw.port)
        r = c.request("GET", path, timeout=5)
        assert_proxy_error(r, 502, c, close=False)
        c.close()
    # GETs may be retried once, never more
    assert b.requests() <= 6, b.stats()


def test_post_not_replayed_when_upstream_drops(ctx):
    b = ctx.upstream("blue")
    sw = ctx.switchd([b])
    c = ctx.client(sw.port)
    r = c.request("POST", "/drop", body=b"payload")
    assert_proxy_error(r, 502, c, close=False)
    assert b.requests() == 1, "a POST that reached the upstream was replayed: %r" \
        % b.stats()


@timeout(20)
def test_upstream_closes_after_each_response_gets_succeed(ctx):
    """The upstream closes every connection right after its response, without
    announcing it: every GET still succeeds."""
    b = ctx.upstream("blue", "--close-after", "1")
    sw = ctx.switchd([b])
    c = ctx.client(sw.port)
    for i in range(20):
        r = c.request("GET", "/")
        assert r.status == 200 and r.body == b"blue\n", "request %d: %r" % (i, r)
        if i % 2:
            time.sleep(0.05)
    c.send(b"".join(build_request("GET", "/status/%d" % (200 + i)) for i in range(5)))
    for i in range(5):
        assert c.read_response().status == 200 + i


@timeout(20)
def test_idle_close_race_get_retried(ctx):
    """Each pooled upstream connection serves one response, then the upstream
    reads the next request and closes without a byte (the idle-close race):
    an idempotent request is retried once on a fresh connection."""
    b = ctx.upstream("blue", "--drop-after", "1")
    sw = ctx.switchd([b])
    c = ctx.client(sw.port)
    for i in range(12):
        r = c.request("GET", "/", timeout=5)
        assert r.status == 200 and r.body == b"blue\n", "request %d: %r" % (i, r)
    for i in range(6):
        r = c.request("HEAD", "/")
        assert r.status == 200, r
    st = b.stats()
    assert st["dropped"] >= 1, "the race never happened (no pooled connection was " \
        "reused): %r" % st
    assert st["responses"] == 18, st


@timeout(20)
def test_idle_close_race_post_never_replayed(ctx):
    b = ctx.upstream("blue", "--drop-after", "1")
    sw = ctx.switchd([b])
    c = ctx.client(sw.port)
    statuses = []
    for i in range(10):
        if c.eof:
            c = ctx.client(sw.port)
        r = c.request("POST", "/echo", headers=[("X-Seq", str(i))], body=b"post %d" % i,
                      timeout=5)
        assert r.status in (200, 502), "POST %d: %r" % (i, r)
        statuses.append(r.status)
        if r.has_token("connection", "close"):
            c.wait_closed(2)
    seen = {}
    for e in b.log():
        seq = [v for n, v in e["headers"] if n.lower() == "x-seq"]
        seen.setdefault(seq[0], []).append(e["dropped"])
    replayed = {k: v for k, v in seen.items() if len(v) > 1}
    assert not replayed, "POSTs sent to the upstream more than once: %r" % replayed
    assert 200 in statuses, statuses
    for i, st in enumerate(statuses):
        dropped = seen.get(str(i), [False])[0]
        assert (st == 502) == dropped, "POST %d: status %d, dropped by upstream %s" \
            % (i, st, dropped)


@timeout(15)
def test_upstream_idle_connections_closed_after_idle_timeout(ctx):
    b = ctx.upstream("blue")
    sw = ctx.switchd([b], blue_opts={"idle_timeout": "1s"})
    for _ in range(3):
        assert ctx.get(sw.port, "/").status == 200
    assert b.stats()["open"] >= 1
    wait_for(lambda: b.stats()["open"] == 0, 4,
             what="switchd to close its idle pooled upstream connection (idle_timeout 1s)")


def test_upstream_500_is_passed_through(ctx):
    b = ctx.upstream("blue")
    sw = ctx.switchd([b])
    r = ctx.get(sw.port, "/status/502")
    assert r.status == 502 and r.body == b"blue 502\n", \
        "the upstream's own 502 was not passed through: %r" % r


@timeout(20)
def test_502_with_large_body_in_flight_keeps_framing(ctx):
    """All servers refused while a large body (over request_buffer) is still
    coming: after the 502 the body's bytes must never be read as requests."""
    import threading
    from harness import MiB, pattern_iter
    sw = ctx.switchd(["127.0.0.1:%d" % ctx.port()], client={"request_buffer": "64k"})
    c = ctx.client(sw.port)
    n = 4 * MiB

    def upload():
        c.try_send(build_request("POST", "/echo", headers=[("Content-Length", str(n))]))
        for piece in pattern_iter(n):
            if not c.try_send(piece):
                return

    t = threading.Thread(target=upload, daemon=True)
    t.start()
    r = c.read_response(timeout=10)
    assert_proxy_error(r, 502, close=False)
    t.join(10)
    if not r.has_token("connection", "close"):
        r = c.request("GET", "/", timeout=5)
        assert r.status == 502, "the request after the 502 got %r" % r
    else:
        assert c.wait_closed(3)
