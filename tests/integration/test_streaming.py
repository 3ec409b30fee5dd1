"""Streaming with bounded memory (100 MiB each way), backpressure against a
slow reader, Server-Sent Events, and WebSocket tunnels.

Memory bound (harness.RSS_BOUND_MIB): switchd's peak RSS (VmHWM, and VmRSS
sampled every 20 ms) stays under 64 MiB for the plain build and under
ASan (80 MiB) while 100 MiB pass through: a proxy holding the message whole fails."""

import re
import threading
import time

from harness import MiB, RSS_BOUND_KB, RSS_BOUND_MIB, RssSampler, build_request, \
    pattern_iter, pattern_sha256, timeout

N = 100 * MiB


def _assert_rss(sw, sampler, what):
    peak = sampler.stop()
    hwm = sw.hwm_kb() or 0
    worst = max(peak, hwm)
    print("     %s: switchd peak RSS %.1f MiB (bound %d MiB)" % (what, worst / 1024,
                                                             RSS_BOUND_MIB))
    assert worst < RSS_BOUND_KB, "%s: switchd's peak RSS %.1f MiB (sampled %.1f, " \
        "VmHWM %.1f) is over the %d MiB bound" % (what, worst / 1024, peak / 1024,
                                                  hwm / 1024, RSS_BOUND_MIB)
    return worst


@timeout(60)
def test_100mib_response_content_length(ctx):
    b = ctx.upstream("blue")
    sw = ctx.switchd([b])
    rss = RssSampler(sw.pid)
    c = ctx.client(sw.port)
    r = c.request("GET", "/bytes/%d" % N, store_body=False, timeout=50)
    assert r.status == 200 and r.body_len == N, r
    assert r.sha256 == pattern_sha256(N), "100 MiB body corrupted"
    _assert_rss(sw, rss, "100 MiB Content-Length response")
    assert c.request("GET", "/").status == 200


@timeout(60)
def test_100mib_response_chunked(ctx):
    b = ctx.upstream("blue")
    sw = ctx.switchd([b])
    rss = RssSampler(sw.pid)
    c = ctx.client(sw.port)
    r = c.request("GET", "/chunked/%d" % N, store_body=False, timeout=50)
    assert r.status == 200 and r.body_len == N, r
    assert r.sha256 == pattern_sha256(N), "100 MiB chunked body corrupted"
    _assert_rss(sw, rss, "100 MiB chunked response")
    assert c.request("GET", "/").status == 200


@timeout(60)
def test_100mib_upload_content_length(ctx):
    b = ctx.upstream("blue")
    sw = ctx.switchd([b], client={"max_body": "200m"})
    rss = RssSampler(sw.pid)
    c = ctx.client(sw.port, timeout=30)
    c.send(build_request("POST", "/echo", headers=[("Content-Length", str(N))]))
    for piece in pattern_iter(N):
        c.send(piece)
    r = c.read_response(timeout=30)
    assert r.status == 200, r
    e = r.json()
    assert e["body_len"] == N and e["body_sha256"] == pattern_sha256(N), e
    _assert_rss(sw, rss, "100 MiB Content-Length upload")


@timeout(60)
def test_100mib_upload_chunked(ctx):
    b = ctx.upstream("blue")
    sw = ctx.switchd([b], client={"max_body": "200m"})
    rss = RssSampler(sw.pid)
    c = ctx.client(sw.port, timeout=30)
    c.send(build_request("POST", "/echo", headers=[("Transfer-Encoding", "chunked")]))
    for piece in pattern_iter(N):
        c.send(b"%x\r\n%s\r\n" % (len(piece), piece))
    c.send(b"0\r\n\r\n")
    r = c.read_response(timeout=30)
    assert r.status == 200, r
    e = r.json()
    assert e["body_len"] == N and e["body_sha256"] == pattern_sha256(N), e
    _assert_rss(sw, rss, "100 MiB chunked upload")


@timeout(60)
def test_slow_reader_backpressure(ctx):
    """The client reads 100 MiB slowly for 3 s: switchd must stop reading from
    the upstream rather than buffer, then deliver everything intact."""
    b = ctx.upstream("blue")
    sw = ctx.switchd([b])
    rss = RssSampler(sw.pid)
    c = ctx.client(sw.port, rcvbuf=65536, timeout=30)
    slow_until = time.time() + 3
    state = {"checked": False, "upstream_done": None, "rss_slow": 0, "got_slow": 0}

    def on_body(data):
        if time.time() < slow_until:
            state["got_slow"] += len(data)
            time.sleep(0.05)
        elif not state["checked"]:
            state["checked"] = True
            state["rss_slow"] = rss.max_kb
            state["upstream_done"] = any(e["t_done"] for e in b.log())

    c.send(build_request("GET", "/bytes/%d" % N))
    r = c.read_response(store_body=False, on_body=on_body, timeout=50)
    assert r.body_len == N and r.sha256 == pattern_sha256(N), r
    assert state["checked"], "the response ended during the slow phase"
    assert state["upstream_done"] is False, \
        "the upstream finished sending 100 MiB while the client had read only " \
        "%.1f MiB: no backpressure" % (state["got_slow"] / MiB)
    assert state["rss_slow"] < RSS_BOUND_KB, \
        "RSS %.1f MiB during the slow read" % (state["rss_slow"] / 1024)
    _assert_rss(sw, rss, "slow reader")


@timeout(20)
def test_sse_streams_events_as_produced(ctx):
    b = ctx.upstream("blue")
    sw = ctx.switchd([b])
    c = ctx.client(sw.port)
    arrivals = {}
    produced = {}
    pending = bytearray()

    def on_body(data):
        now = time.time()
        pending.extend(data)
        for m in re.finditer(rb"data: (\d+) ([0-9.]+)\n\n", bytes(pending)):
            i = int(m.group(1))
            if i not in arrivals:
                arrivals[i] = now
                produced[i] = float(m.group(2))

    t0 = time.time()
    r = c.request("GET", "/sse?n=10&interval=100", on_body=on_body, timeout=10)
    assert r.status == 200 and r.header("content-type") == "text/event-stream", r
    assert sorted(arrivals) == list(range(10)), "events seen: %s" % sorted(arrivals)
    assert arrivals[0] < produced[9] - 0.5, \
        "the first event arrived %.2fs after the request, the last was produced at " \
        "%.2fs: the stream was buffered" % (arrivals[0] - t0, produced[9] - t0)
    lag = max(arrivals[i] - produced[i] for i in range(10))
    assert lag < 0.3, "an event took %.2fs to get through" % lag


def _ws_request(path="/ws"):
    return build_request("GET", path, headers=[
        ("Connection", "Upgrade"), ("Upgrade", "websocket"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ("Sec-WebSocket-Version", "13")])


@timeout(30)
def test_websocket_tunnel(ctx):
    b = ctx.upstream("blue")
    sw = ctx.switchd([b])
    c = ctx.client(sw.port)
    c.send(_ws_request())
    r = c.read_response()
    assert r.status == 101, r
    assert r.header("upgrade", "").lower() == "websocket", r
    assert r.has_token("connection", "upgrade"), r
    assert r.header("sec-websocket-accept") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", r
    (e,) = b.log()
    up_headers = {n.lower(): v for n, v in e["headers"]}
    assert up_headers.get("upgrade", "").lower() == "websocket", e["headers"]
    assert "upgrade" in up_headers.get("connection", "").lower(), e["headers"]
    # small messages, both ways, in turn
    for msg in (b"hello", b"\x81\x05world", bytes(range(256)), b"HTTP/1.1 200 OK\r\n\r\n"):
        c.send(msg)
        assert c.recv_exact(len(msg), timeout=3) == msg
    # 4 MiB while reading concurrently
    big = b"".join(pattern_iter(4 * MiB))
    t = threading.Thread(target=c.send, args=(big,), daemon=True)
    t.start()
    got = c.recv_exact(len(big), timeout=20)
    t.join(5)
    assert got == big, "4 MiB through the tunnel came back different"
    c.close()
    # switchd still serves
    assert ctx.get(sw.port, "/").status == 200


@timeout(20)
def test_websocket_tunnel_closed_by_upstream(ctx):
    b = ctx.upstream("blue")
    sw = ctx.switchd([b])
    c = ctx.client(sw.port)
    c.send(_ws_request())
    assert c.read_response().status == 101
    c.send(b"ping")
    assert c.recv_exact(4) == b"ping"
    b.stop()  # the upstream goes away: the client's tunnel must end
    assert c.wait_closed(3), "the tunnel stayed open after the upstream closed"


@timeout(30)
def test_send_timeout_closes_client_that_never_reads(ctx):
    """A client that stops reading a 100 MiB response is closed after
    send_timeout, and switchd's memory stays bounded meanwhile."""
    b = ctx.upstream("blue")
    sw = ctx.switchd([b], client={"send_timeout": "1s"})
    rss = RssSampler(sw.pid)
    c = ctx.client(sw.port, rcvbuf=65536, timeout=20)
    c.send(build_request("GET", "/bytes/%d" % N))
    time.sleep(4)
    r = c.read_response(store_body=False, allow_incomplete=True, timeout=20)
    assert r.status == 200, r
    assert not r.complete and r.body_len < N, \
        "a client that read nothing for 4s (send_timeout 1s) still got the whole body"
    _assert_rss(sw, rss, "client that never reads")
    assert ctx.get(sw.port, "/").status == 200


@timeout(20)
def test_websocket_early_data(ctx):
    """Bytes sent right behind the upgrade request belong to the tunnel."""
    b = ctx.upstream("blue")
    sw = ctx.switchd([b])
    c = ctx.client(sw.port)
    c.send(_ws_request() + b"early-bytes")
    r = c.read_response()
    assert r.status == 101, r
    assert c.recv_exact(11, timeout=3) == b"early-bytes"
    c.send(b"later")
    assert c.recv_exact(5, timeout=3) == b"later"


@timeout(20)
def test_upgrade_refused_by_upstream_stays_http(ctx):
    b = ctx.upstream("blue")
    sw = ctx.switchd([b])
    c = ctx.client(sw.port)
    c.send(_ws_request("/status/403"))
    r = c.read_response()
    assert r.status == 403 and r.body == b"blue 403\n", r
    if not r.has_token("connection", "close"):
        r = c.request("GET", "/")
        assert r.status == 200 and r.body == b"blue\n", \
            "after a refused upgrade the connection is not HTTP any more: %r" % r


@timeout(40)
def test_concurrent_streams_bounded_memory(ctx):
    """16 clients each ask for 16 MiB and read nothing for 2 s, then read it
    all: memory is bounded per connection, not per byte in flight."""
    b = ctx.upstream("blue")
    sw = ctx.switchd([b])
    rss = RssSampler(sw.pid)
    n = 16 * MiB
    cs = [ctx.client(sw.port, rcvbuf=65536, timeout=30) for _ in range(16)]
    for c in cs:
        c.send(build_request("GET", "/bytes/%d" % n))
    time.sleep(2)
    for c in cs:
        r = c.read_response(store_body=False, timeout=30)
        assert r.body_len == n and r.sha256 == pattern_sha256(n), r
    _assert_rss(sw, rss, "16 concurrent 16 MiB responses")


@timeout(60)
def test_upload_backpressure_slow_upstream(ctx):
    """The upstream leaves a 100 MiB upload unread for 3 s: switchd must stop
    reading from the client instead of buffering it."""
    b = ctx.upstream("blue")
    sw = ctx.switchd([b], client={"max_body": "200m"})
    rss = RssSampler(sw.pid)
    c = ctx.client(sw.port, timeout=30)
    sent = [0]

    def upload():
        c.send(build_request("POST", "/echo?wait=3000",
                             headers=[("Content-Length", str(N))]))
        for piece in pattern_iter(N):
            c.send(piece)
            sent[0] += len(piece)

    t = threading.Thread(target=upload, daemon=True)
    t.start()
    time.sleep(2.5)
    at_stall = sent[0]
    rss_stall = rss.max_kb
    t.join(40)
    assert not t.is_alive(), "upload did not finish"
    r = c.read_response(timeout=30)
    e = r.json()
    assert e["body_len"] == N and e["body_sha256"] == pattern_sha256(N), e
    assert at_stall < N / 2, "the client sent %.1f MiB while the upstream read " \
        "nothing: no backpressure" % (at_stall / MiB)
    assert rss_stall < RSS_BOUND_KB, "RSS %.1f MiB while the upstream stalled" \
        % (rss_stall / 1024)
    _assert_rss(sw, rss, "100 MiB upload to a stalled upstream")
