"""Buffering for Gunicorn: small request bodies are read whole before an
upstream is chosen; small responses are read whole so the upstream is free at
once; larger ones stream."""

import time

from harness import KiB, MiB, build_request, make_config, pattern_bytes, pattern_sha256, \
    timeout, wait_for


def _slow_upload(c, body, pieces=16, duration=2.0, during=None):
    """Sends headers then the body in `pieces` over `duration` seconds;
    calls during() once half way. Returns the time the last byte was sent."""
    c.send(build_request("POST", "/echo", headers=[("Content-Length", str(len(body)))]))
    step = len(body) // pieces
    for i in range(pieces):
        time.sleep(duration / pieces)
        end = len(body) if i == pieces - 1 else (i + 1) * step
        c.send(body[i * step:end])
        if during and i == pieces // 2:
            during()
    return time.time()


@timeout(20)
def test_slow_upload_reaches_upstream_only_when_complete(ctx):
    b = ctx.upstream("blue")
    sw = ctx.switchd([b])
    c = ctx.client(sw.port)
    body = pattern_bytes(64 * KiB)
    t_last = _slow_upload(c, body)
    r = c.read_response()
    assert r.status == 200 and r.json()["body_sha256"] == pattern_sha256(64 * KiB), r
    (e,) = b.log()
    assert e["t_head"] >= t_last - 0.05, \
        "the upstream got the request head %.2fs before the client finished its body" \
        % (t_last - e["t_head"])


@timeout(20)
def test_slow_upload_routed_by_state_when_complete(ctx):
    """A flip to green during a slow upload: the request lands on green."""
    b = ctx.upstream("blue")
    g = ctx.upstream("green")
    sw = ctx.switchd([b], [g])
    c = ctx.client(sw.port)
    flip = make_config([sw.port], [b], [g], live="green")
    body = pattern_bytes(64 * KiB)
    _slow_upload(c, body, during=lambda: sw.reload(flip, settle=0))
    r = c.read_response()
    assert r.status == 200, r
    e = r.json()
    assert e["name"] == "green", "a slow upload completed after the flip went to %s" \
        % e["name"]
    assert e["body_sha256"] == pattern_sha256(64 * KiB)
    assert b.requests() == 0


@timeout(20)
def test_response_buffered_frees_sync_worker(ctx):
    """A Gunicorn-sync-like upstream (one request at a time, close after each)
    answers 512 KiB to a client that does not read: switchd must take the
    whole response so the worker is free for the next client."""
    b = ctx.upstream("blue", "--serial", "--sndbuf", "16384")
    sw = ctx.switchd([b])
    slow = ctx.client(sw.port, rcvbuf=4096)
    n = 512 * KiB
    slow.send(build_request("GET", "/bytes/%d" % n))
    wait_for(lambda: any(e["t_done"] for e in b.log()), 5,
             what="the upstream to finish sending 512 KiB to a client that is not reading")
    t0 = time.time()
    r = ctx.get(sw.port, "/", timeout=5)
    assert r.status == 200 and r.body == b"blue\n", r
    assert time.time() - t0 < 2
    r = slow.read_response(store_body=False)
    assert r.body_len == n and r.sha256 == pattern_sha256(n), r


@timeout(20)
def test_response_buffered_frees_pooled_connection(ctx):
    """Same with a keep-alive upstream: the upstream finishes promptly and the
    next request reuses the same upstream connection."""
    b = ctx.upstream("blue", "--sndbuf", "16384")
    sw = ctx.switchd([b])
    slow = ctx.client(sw.port, rcvbuf=4096)
    n = 512 * KiB
    slow.send(build_request("GET", "/bytes/%d" % n))
    wait_for(lambda: any(e["t_done"] for e in b.log()), 5,
             what="the upstream to finish sending 512 KiB to a client that is not reading")
    r = ctx.get(sw.port, "/", timeout=5)
    assert r.status == 200, r
    log = b.log()
    assert len(log) == 2 and log[0]["conn"] == log[1]["conn"], \
        "the second request did not reuse the upstream connection: %r" % \
        [(e["target"], e["conn"]) for e in log]
    r = slow.read_response(store_body=False)
    assert r.body_len == n and r.sha256 == pattern_sha256(n), r


@timeout(20)
def test_large_body_streams_before_complete(ctx):
    """A body over request_buffer is streamed: the upstream sees the request
    before the client has sent all of it."""
    b = ctx.upstream("blue")
    sw = ctx.switchd([b], client={"request_buffer": "64k"})
    c = ctx.client(sw.port)
    n = 1 * MiB
    body = pattern_bytes(n)
    c.send(build_request("POST", "/echo", headers=[("Content-Length", str(n))]))
    c.send(body[:256 * KiB])
    wait_for(lambda: b.log(), 5,
             what="the upstream to see a request whose body is larger than request_buffer")
    c.send(body[256 * KiB:])
    e = c.read_response().json()
    assert e["body_len"] == n and e["body_sha256"] == pattern_sha256(n), e


@timeout(20)
def test_response_buffer_larger_than_kernel_buffers(ctx):
    """The 512 KiB case above fits in loopback socket buffers, so even a plain
    byte pipe passes it. 6 MiB under response_buffer 8m does not fit (a pipe
    was measured stuck at 6 MiB): only a proxy that buffers frees the worker."""
    b = ctx.upstream("blue", "--serial", "--sndbuf", "16384")
    sw = ctx.switchd([b], client={"response_buffer": "8m"})
    slow = ctx.client(sw.port, rcvbuf=4096)
    n = 6 * MiB
    slow.send(build_request("GET", "/bytes/%d" % n))
    wait_for(lambda: any(e["t_done"] for e in b.log()), 5,
             what="the upstream to finish sending 6 MiB to a client that is not reading")
    r = ctx.get(sw.port, "/", timeout=5)
    assert r.status == 200 and r.body == b"blue\n", r
    r = slow.read_response(store_body=False, timeout=20)
    assert r.body_len == n and r.sha256 == pattern_sha256(n), r
