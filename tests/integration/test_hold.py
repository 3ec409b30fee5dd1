"""The hold barrier (DESIGN §4): `switchctl hold` / `release`, the admin API's
POST /v1/hold and /v1/release, the hold's bounds (hold_max, hold_queue), and
`switchctl cutover --hold [--migrate CMD]`; real switchd, real upstreams
(tests/integration/upstream.py), real switchctl.

What a user sees is asserted: requests sent during a hold get no byte until
the release, then 200 from the live colour in the order they came; the hold
reports "quiet" only once what was in flight on the live colour finished; a
full queue answers 503 with Retry-After; a hold that reaches its max
releases itself; a client gone while held leaves the queue; SIGTERM serves
the queue before exiting 0; a cutover with a hold loses no request and
sends the held ones to green; a failed migration keeps blue live and serves
the held requests from blue; a hold that runs out during the migration, or
an operator's release, ends the cutover without a flip; a rollback's
reverse migration (rollback_migrate, against a real PostgreSQL) runs under
a hold whose requests go to blue after the flip back, or to green when it
fails. Held requests keep their bodies (buffered and streamed), upgrades
and pipelined/half-closed clients; a reload leaves a hold alone. Status
("hold") and /metrics count it all.

A client "gone" while held is one that reset its connection: a FIN alone
is a half-close, after which switchd still answers what was sent whole
(test_hold_pipelined_and_half_closed_client_answered).

The order a release dispatches in is seen at the upstream through its
connection numbers (X-Conn, /log "conn"): the upstream numbers connections
in accept order, and each released request opens its own connection (no
request went through switchd before, so no idle pooled connection exists
to be reused).

Health checks are on and fast (health_opts: 250 ms interval); /health
probes are told apart from traffic in the upstreams' /log.
"""

import hashlib
import http.client
import json
import re
import signal
import socket
import struct
import threading
import time

from harness import (MiB, SLOW, Timeout, admin_request, admin_status,
                     assert_proxy_error, health_opts, pattern_bytes, pattern_sha256,
                     switchctl, timeout, traffic, wait_for)

RISE = 2


def sections(cutover=None, watch=None):
    out = []
    for name, opts in (("cutover", cutover), ("watch", watch)):
        if opts:
            out.append(name)
            out += ["    %s %s" % kv for kv in opts.items()]
            out.append("")
    return "\n".join(out)


def start(ctx, cutover=None, watch=None, green=True):
    """switchd with blue (and green) upstreams, fast health checks, both up
    in status before it returns."""
    b = ctx.upstream("blue")
    g = ctx.upstream("green") if green else None
    cut = {"gate_timeout": "10s", "drain_timeout": "5s"}
    cut.update(cutover or {})
    sw = ctx.switchd([b], [g] if g else [], blue_opts=health_opts(RISE),
                     green_opts=health_opts(RISE) if g else None,
                     raw_extra=sections(cut, watch))
    colours = ("blue", "green") if g else ("blue",)
    wait_for(lambda: all(admin_status(sw.admin_socket)["colours"][c]["healthy"]
                         for c in colours), 5 * SLOW, what="colours up")
    return sw, b, g


def ctl(sw, *args, **kw):
    return switchctl(list(args), sock=sw.admin_socket, **kw)


def expect(r, rc, out=None, err=None):
    assert r.rc == rc, "expected exit %d: %r" % (rc, r)
    if out is not None:
        assert re.search(out, r.out, re.M), "stdout lacks %r: %r" % (out, r)
    if err is not None:
        assert re.search(err, r.err, re.M), "stderr lacks %r: %r" % (err, r)
    return r


def hold_status(sw):
    return admin_status(sw.admin_socket)["hold"]


def wait_hold(sw, pred, what, timeout_s=5.0):
    """Waits until pred(status["hold"]) holds; returns that hold object."""
    box = {}

    def ok():
        h = hold_status(sw)
        if h is not None and pred(h):
            box["h"] = h
            return True
        return False
    wait_for(ok, timeout_s * SLOW, interval=0.02, what=what)
    return box["h"]


def metric(sw, name, labels=""):
    r = admin_request(sw.admin_socket, "GET", "/metrics")
    assert r.status == 200, r
    want = name + labels
    for line in r.text().splitlines():
        if line.startswith("#"):
            continue
        k, _, v = line.rpartition(" ")
        if k == want:
            return float(v)
    raise AssertionError("no sample %s in /metrics:\n%s" % (want, r.text()))


def targets(u, prefix):
    return [e for e in traffic(u) if e["target"].startswith(prefix)]


def wait_upstream_has(u, target, timeout_s=5.0):
    wait_for(lambda: any(e["target"] == target for e in traffic(u)),
             timeout_s * SLOW, what="%s at %s" % (target, u.name))


class Held:
    """One request on its own keep-alive connection, sent now; the response
    is read later (it waits in the kernel meanwhile)."""

    def __init__(self, ctx, port, path):
        self.path = path
        self.c = ctx.client(port, timeout=10 * SLOW)
        self.t_send = time.time()
        self.c.send(b"GET %s HTTP/1.1\r\nHost: hold.test\r\n\r\n" % path.encode())

    def silent_for(self, secs):
        """True if no byte (and no close) arrives within secs."""
        try:
            d = self.c.recv_some(timeout=secs)
        except Timeout:
            return True
        if d:
            self.c.buf[:0] = d  # keep it for read()
        return False

    def read(self, timeout_s=5.0):
        r = self.c.read_response(timeout=timeout_s * SLOW)
        self.t_recv = time.time()
        return r


def send_held(ctx, sw, prefix, n, start_at=0):
    """Sends n requests (prefix/i), each on its own connection, one after
    the other, each only once switchd has queued the one before: their
    arrival order at switchd is their index order."""
    out = []
    for i in range(start_at, start_at + n):
        out.append(Held(ctx, sw.port, "%s/%d" % (prefix, i)))
        want = i + 1
        wait_hold(sw, lambda h, w=want: h["queued"] + h["gone"] >= w,
                  "request %d queued" % i)
    return out


def assert_200_from(r, name="blue"):
    assert r.status == 200 and r.body == (name + "\n").encode() and \
        r.header("X-Upstream") == name, "expected 200 from %s: %r %r" % (name, r, r.body)


class Bg(threading.Thread):
    """switchctl in a thread (for a command that waits)."""

    def __init__(self, sw, *args, **kw):
        super().__init__(daemon=True)
        self.sw, self.args, self.kw = sw, args, kw
        self.res = None
        self.exc = None
        self.start()

    def run(self):
        try:
            self.res = ctl(self.sw, *self.args, **self.kw)
        except BaseException as e:  # noqa
            self.exc = e

    def result(self, timeout_s):
        self.join(timeout_s)
        assert not self.is_alive(), "switchctl %s still running after %.0fs" % (
            " ".join(self.args), timeout_s)
        if self.exc is not None:
            raise self.exc
        return self.res


# -- 1: hold, then release ------------------------------------------------------------

@timeout(30)
def test_hold_then_release_in_arrival_order(ctx):
    sw, b, g = start(ctx)
    assert hold_status(sw) is None, "a hold before any was asked for"
    t0 = time.time()
    r = expect(ctl(sw, "hold", "--max", "10s"), 0,
               out=r"^holding new requests \(at most 10000 ms, 0 in flight\)$")
    assert re.search(r"^quiet: nothing in flight on blue; 0 requests held$", r.out, re.M), r
    # Nothing was in flight: quiet at once.
    assert r.elapsed < 2 * SLOW, r
    h = hold_status(sw)
    assert h["active"] is True and h["quiet"] is True and h["max_ms"] == 10000 and \
        h["queued"] == 0 and h["end"] == "none", h
    assert h["started_ms"] / 1000.0 >= t0 - 1, h

    n = 5
    held = send_held(ctx, sw, "/held", n)
    t_all_queued = time.time()
    # No byte for any of them, and none reached an upstream.
    for x in held:
        assert x.silent_for(0.1), "%s answered during the hold" % x.path
    time.sleep(0.4)
    for x in held:
        assert x.silent_for(0.05), "%s answered during the hold" % x.path
    assert not targets(b, "/held") and not targets(g, "/held"), traffic(b)
    h = hold_status(sw)
    assert h["active"] and h["queued"] == n and h["held"] == n and h["peak"] == n and \
        h["released"] == 0, h
    assert metric(sw, "switchd_hold_active") == 1
    assert metric(sw, "switchd_hold_queued") == n

    t_rel = time.time()
    r = expect(ctl(sw, "release"), 0,
               out=r"^released %d requests to blue \(held \d+ ms; longest wait "
                   r"[\d.]+ ms\)$" % n)
    t_rel_done = time.time()
    resps = [x.read() for x in held]
    for x, resp in zip(held, resps):
        assert_200_from(resp)
        # Answered after the release, not before.
        assert x.t_recv >= t_rel, (x.path, x.t_recv - t_rel)

    # The order of dispatch: the upstream numbers connections as it accepts
    # them, and each released request opened its own.
    log = targets(b, "/held")
    assert len(log) == n, log
    by_conn = [e["target"] for e in sorted(log, key=lambda e: e["conn"])]
    assert by_conn == ["/held/%d" % i for i in range(n)], \
        "released out of arrival order: %r" % [(e["target"], e["conn"]) for e in log]
    conns = [int(resp.header("X-Conn")) for resp in resps]
    assert conns == sorted(conns) and len(set(conns)) == n, conns

    h = hold_status(sw)
    assert h["active"] is False and h["end"] == "release" and \
        h["released_to"] == "blue", h
    assert h["held"] == n and h["released"] == n and h["rejected"] == 0 and \
        h["gone"] == 0 and h["queued"] == 0 and h["peak"] == n, h
    assert h["ended_ms"] >= h["started_ms"], h
    # The first request waited at least from when it was seen queued to the
    # release, and not longer than it was outstanding.
    first_wait = t_rel - held[0].t_send
    lower = (t_rel - t_all_queued) * 1e6
    assert h["wait_max_us"] >= lower, (h["wait_max_us"], lower)
    assert h["wait_max_us"] <= (t_rel_done - held[0].t_send + 0.5) * 1e6, \
        (h["wait_max_us"], first_wait)
    assert 0 < h["wait_p99_us"] <= h["wait_max_us"], h
    # Traffic flows again, straight through.
    r = ctx.get(sw.port, "/after")
    assert_200_from(r)


# -- 2: the hold waits for quiet -------------------------------------------------------

@timeout(30)
def test_hold_waits_for_in_flight_to_finish(ctx):
    sw, b, g = start(ctx)
    slow = Held(ctx, sw.port, "/delay/1500")
    wait_upstream_has(b, "/delay/1500")
    # Another request during the hold (sent once switchctl has started
    # holding), while the slow one is still in flight.
    late = {}

    def send_late():
        try:
            wait_hold(sw, lambda h: h["active"], "hold active")
            late["x"] = Held(ctx, sw.port, "/late")
        except BaseException as e:  # noqa
            late["err"] = e
    t = threading.Thread(target=send_late, daemon=True)
    t.start()
    t_hold = time.time()
    r = ctl(sw, "hold", "--max", "10s")
    t_done = time.time()
    t.join(5 * SLOW)
    assert "err" not in late, late
    expect(r, 0, out=r"^holding new requests \(at most 10000 ms, 1 in flight\)$")
    assert re.search(r"^  hold: 1 in flight on blue, [01] queued$", r.out, re.M), r
    assert re.search(r"^  hold: quiet after \d+ ms \([01] queued\)$", r.out, re.M), r
    assert re.search(r"^quiet: nothing in flight on blue; \d+ requests held$", r.out, re.M), r
    # It returned only once the slow request was done (1.5 s from its send).
    remaining = 1.5 - (t_hold - slow.t_send)
    assert t_done - t_hold >= remaining - 0.1, (t_done - t_hold, remaining)
    assert t_done - slow.t_send < 1.5 + 3 * SLOW, t_done - slow.t_send
    resp = slow.read()
    assert_200_from(resp)
    h = hold_status(sw)
    assert h["active"] and h["quiet"] and h["inflight"] == 0, h
    # Quiet when the slow request ended: 1.5 s after it was sent, at least.
    assert h["quiet_after_ms"] >= (slow.t_send + 1.5 - h["started_ms"] / 1000.0) * 1000 - 20, \
        (h, slow.t_send)
    # The request sent during the hold waits for the release.
    x = late["x"]
    wait_hold(sw, lambda h: h["queued"] == 1, "/late queued")
    assert x.silent_for(0.3), "/late answered during the hold"
    assert not targets(b, "/late")
    expect(ctl(sw, "release"), 0, out=r"^released 1 request to blue")
    assert_200_from(x.read())


# -- 3: --timeout before quiet ---------------------------------------------------------

@timeout(30)
def test_hold_timeout_before_quiet_exit_6(ctx):
    sw, b, g = start(ctx)
    slow = Held(ctx, sw.port, "/delay/3000")
    wait_upstream_has(b, "/delay/3000")
    r = ctl(sw, "hold", "--max", "10s", "--timeout", "200ms")
    expect(r, 6, out=r"^not quiet after \d+ ms: 1 in flight on blue; still holding "
                     r"\(0 queued\)$")
    assert r.elapsed < 2.5, r  # well before the slow request ends
    m = re.search(r"not quiet after (\d+) ms", r.out)
    assert int(m.group(1)) >= 200, r
    # The hold goes on.
    h = hold_status(sw)
    assert h["active"] is True and h["quiet"] is False and h["inflight"] == 1 and \
        "quiet_after_ms" not in h, h
    x = Held(ctx, sw.port, "/during")
    wait_hold(sw, lambda h: h["queued"] == 1, "/during queued")
    # The slow request ends; the hold becomes quiet by itself.
    assert_200_from(slow.read())
    h = wait_hold(sw, lambda h: h["quiet"], "quiet")
    assert h["active"] and h["inflight"] == 0, h
    assert h["quiet_after_ms"] >= (slow.t_send + 3 - h["started_ms"] / 1000.0) * 1000 - 20, \
        (h, slow.t_send)
    assert x.silent_for(0.1)
    expect(ctl(sw, "release"), 0)
    assert_200_from(x.read())


@timeout(30)
def test_hold_ends_before_quiet_exit_6(ctx):
    # The hold's max comes before the slow request ends: switchctl hold
    # (no --timeout) returns when the hold ends, exit 6, and says so.
    sw, b, g = start(ctx)
    slow = Held(ctx, sw.port, "/delay/3000")
    wait_upstream_has(b, "/delay/3000")
    # 1.5 s: room for the request below to arrive while held on a busy
    # machine; the slow request still outlasts it.
    bg = Bg(sw, "hold", "--max", "1500ms")
    wait_hold(sw, lambda h: h["active"], "hold active")
    x = Held(ctx, sw.port, "/w")
    r = bg.result(10 * SLOW)
    expect(r, 6, out=r"^the hold ended \(expired\) before it was quiet: 1 in flight on "
                     r"blue, 1 requests? released$")
    assert r.elapsed < 2.8 * SLOW, r
    assert_200_from(x.read())
    h = hold_status(sw)
    assert h["end"] == "expired" and h["quiet"] is False and h["released"] == 1, h
    assert_200_from(slow.read())


# -- 4: the hold's max -------------------------------------------------------------------

@timeout(30)
def test_hold_expires_by_itself(ctx):
    sw, b, g = start(ctx, cutover={"hold_max": "500ms"})
    expect(ctl(sw, "hold"), 0, out=r"^holding new requests \(at most 500 ms, 0 in flight\)$")
    h0 = hold_status(sw)
    t_start = h0["started_ms"] / 1000.0
    # Sent at once: they are queued well before the 500 ms are up.
    held = [Held(ctx, sw.port, "/exp/%d" % i) for i in range(3)]
    resps = [x.read(timeout_s=5) for x in held]
    for x, resp in zip(held, resps):
        assert_200_from(resp)
        # Answered at the max, not before it and not much after.
        assert x.t_recv - t_start >= 0.45, (x.path, x.t_recv - t_start)
        assert x.t_recv - t_start <= 0.5 + 1.5 * SLOW, (x.path, x.t_recv - t_start)
    h = hold_status(sw)
    assert h["active"] is False and h["end"] == "expired" and \
        h["released_to"] == "blue" and h["max_ms"] == 500, h
    assert h["held"] == 3 and h["released"] == 3 and h["queued"] == 0, h
    assert 450 <= h["ended_ms"] - h["started_ms"] <= 500 + 1500 * SLOW, h
    assert h["wait_max_us"] >= 300000, h
    assert metric(sw, "switchd_hold_expired_total") == 1
    assert metric(sw, "switchd_hold_active") == 0
    assert re.search(r"hold reached its max of 500 ms: releasing 3 requests to blue",
                     sw.stderr_text()), sw.stderr_text()
    # --max overrides the config's hold_max.
    expect(ctl(sw, "hold", "--max", "1500ms"), 0, out=r"at most 1500 ms")
    assert hold_status(sw)["max_ms"] == 1500
    x = Held(ctx, sw.port, "/exp2")
    assert x.silent_for(0.8), "released before the --max"
    assert_200_from(x.read(timeout_s=5))
    h = hold_status(sw)
    assert h["end"] == "expired" and h["released"] == 1, h
    assert metric(sw, "switchd_hold_expired_total") == 2


# -- 5: a full queue ----------------------------------------------------------------------

@timeout(30)
def test_hold_full_queue_answers_503_retry_after(ctx):
    sw, b, g = start(ctx, cutover={"hold_queue": 3})
    expect(ctl(sw, "hold", "--max", "10s"), 0)
    held = send_held(ctx, sw, "/q", 3)
    c = ctx.client(sw.port, timeout=5 * SLOW)
    t0 = time.time()
    resp = c.request("GET", "/q/3")
    assert time.time() - t0 < 2 * SLOW, "the 4th request was not refused at once"
    assert_proxy_error(resp, 503, close=False)
    ra = resp.header("Retry-After")
    assert ra is not None and re.fullmatch(r"\d+", ra) and 1 <= int(ra) <= 11, resp
    h = hold_status(sw)
    assert h["rejected"] == 1 and h["queued"] == 3 and h["held"] == 3 and \
        h["peak"] == 3, h
    assert metric(sw, "switchd_hold_rejected_total") == 1
    for x in held:
        assert x.silent_for(0.05)
    expect(ctl(sw, "release"), 0, out=r"^released 3 requests to blue")
    for x in held:
        assert_200_from(x.read())
    # The refused client's connection: closed if the 503 said so, else it
    # carries the next request.
    if resp.has_token("connection", "close"):
        assert c.wait_closed(2 * SLOW), "Connection: close but the connection stays"
    else:
        r2 = c.request("GET", "/q/after")
        assert_200_from(r2)
    h = hold_status(sw)
    assert h["held"] == 3 and h["released"] == 3 and h["rejected"] == 1 and \
        h["gone"] == 0 and h["end"] == "release", h
    assert [e["target"] for e in targets(b, "/q/")] != [] and \
        not [e for e in targets(b, "/q/3")], "the refused request reached blue"


# -- 6: a client gone while held ------------------------------------------------------------

def reset_close(c):
    """Closes with a RST (SO_LINGER 0): the client is gone for good."""
    c.s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    c.close()


@timeout(30)
def test_hold_client_gone_while_held(ctx):
    sw, b, g = start(ctx)
    expect(ctl(sw, "hold", "--max", "10s"), 0)
    held = send_held(ctx, sw, "/g", 3)
    reset_close(held[1].c)
    h = wait_hold(sw, lambda h: h["gone"] == 1, "gone == 1")
    assert h["queued"] == 2 and h["held"] == 3, h
    assert sw.alive()
    expect(ctl(sw, "release"), 0, out=r"^released 2 requests to blue")
    assert_200_from(held[0].read())
    assert_200_from(held[2].read())
    h = hold_status(sw)
    assert h["held"] == 3 and h["released"] == 2 and h["gone"] == 1 and \
        h["queued"] == 0 and h["end"] == "release", h
    got = sorted(e["target"] for e in targets(b, "/g/"))
    assert got == ["/g/0", "/g/2"], "the gone client's request went upstream: %r" % got
    # No harm done: switchd serves on.
    assert sw.alive()
    assert_200_from(ctx.get(sw.port, "/after"))


# -- 7: refusals ----------------------------------------------------------------------------

@timeout(30)
def test_hold_twice_and_release_nothing_refused(ctx):
    sw, b, g = start(ctx)
    # Nothing held: release is refused (3), in switchctl and in the API.
    expect(ctl(sw, "release"), 3, err=r"refused \(409\): refused: not_held")
    a = admin_request(sw.admin_socket, "POST", "/v1/release", body={})
    assert a.status == 409 and a.json()["reason"] == "not_held", (a, a.body)
    # Bad bounds.
    for bad in (0, -5, "2s", 3600001):
        a = admin_request(sw.admin_socket, "POST", "/v1/hold", body={"max_ms": bad})
        assert a.status == 400, "max_ms %r: %r %r" % (bad, a, a.body)
    expect(ctl(sw, "hold", "--max", "0"), 1)
    expect(ctl(sw, "hold", "--max", "soon"), 1)
    assert hold_status(sw) is None
    # The API: one hold at a time.
    a = admin_request(sw.admin_socket, "POST", "/v1/hold", body={"max_ms": 10000})
    assert a.status == 200, (a, a.body)
    j = a.json()
    assert j["holding"] is True and j["hold"]["active"] is True and \
        j["hold"]["max_ms"] == 10000, j
    a = admin_request(sw.admin_socket, "POST", "/v1/hold", body={"max_ms": 5000})
    assert a.status == 409 and a.json()["reason"] == "held", (a, a.body)
    expect(ctl(sw, "hold"), 3, err=r"refused \(409\): refused: held")
    j = expect(ctl(sw, "--json", "hold"), 3).json()
    assert j["reason"] == "held", j
    # The first hold is untouched.
    h = hold_status(sw)
    assert h["active"] and h["max_ms"] == 10000, h
    x = Held(ctx, sw.port, "/r")
    wait_hold(sw, lambda h: h["queued"] == 1, "queued")
    a = admin_request(sw.admin_socket, "POST", "/v1/release", body={})
    assert a.status == 200, (a, a.body)
    j = a.json()
    assert j["released"] is True and j["live"] == "blue" and \
        j["hold"]["end"] == "release" and j["hold"]["released"] == 1, j
    assert_200_from(x.read())
    # Released: nothing held any more.
    expect(ctl(sw, "release"), 3, err=r"not_held")
    # And a new hold may start.
    j = expect(ctl(sw, "--json", "hold", "--max", "5s"), 0).json()
    assert j["active"] is True and j["quiet"] is True, j
    j = expect(ctl(sw, "--json", "release"), 0).json()
    assert j["released"] is True and j["hold"]["end"] == "release", j
    assert metric(sw, "switchd_holds_total") == 2


# -- 8: SIGTERM during a hold ---------------------------------------------------------------

@timeout(30)
def test_hold_sigterm_serves_the_queue_then_exits_0(ctx):
    sw, b, g = start(ctx)
    expect(ctl(sw, "hold", "--max", "10s"), 0)
    held = send_held(ctx, sw, "/t", 3)
    t0 = time.time()
    sw.signal(signal.SIGTERM)
    for x in held:
        resp = x.read(timeout_s=5)
        assert_200_from(resp)
        assert resp.has_token("connection", "close"), resp
        assert x.c.wait_closed(2 * SLOW), "connection open after the stop's response"
    # Served at the stop, not at the hold's max.
    assert time.time() - t0 < 3 * SLOW, time.time() - t0
    sw.assert_exited_ok()
    assert sorted(e["target"] for e in targets(b, "/t/")) == ["/t/0", "/t/1", "/t/2"]
    err = sw.stderr_text()
    assert re.search(r"released after \d+ ms \(shutdown\) to blue: 3 requests held", err), err


# -- 9: cutover --hold ----------------------------------------------------------------------

class Load:
    """`threads` keep-alive connections (http.client) sending GET
    /load/T/I as fast as answers come, until stop(); each request is
    recorded: (send time, receive time, path, status, X-Upstream, body), or
    the exception."""

    def __init__(self, port, threads=3, max_seconds=25.0):
        self.port = port
        self.max_seconds = max_seconds
        self._stop = threading.Event()
        self.records = [[] for _ in range(threads)]
        self.errors = [[] for _ in range(threads)]
        self._ts = [threading.Thread(target=self._run, args=(i,), daemon=True)
                    for i in range(threads)]
        self.t0 = time.time()
        for t in self._ts:
            t.start()

    def _run(self, tid):
        deadline = self.t0 + self.max_seconds
        conn = None
        i = 0
        while not self._stop.is_set() and time.time() < deadline:
            path = "/load/%d/%d" % (tid, i)
            i += 1
            t_send = time.time()
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                conn.request("GET", path, headers={"Host": "load.test"})
                resp = conn.getresponse()
                body = resp.read()
                self.records[tid].append((t_send, time.time(), path, resp.status,
                                          resp.getheader("X-Upstream"), body))
            except Exception as e:  # noqa: counted, never retried
                self.errors[tid].append((t_send, time.time(), path, repr(e)))
                if conn is not None:
                    conn.close()
                conn = None
            time.sleep(0.005)
        if conn is not None:
            conn.close()

    def stop(self):
        self._stop.set()
        for t in self._ts:
            t.join(15)
            assert not t.is_alive(), "a load thread is stuck"
        self.all = sorted(r for rs in self.records for r in rs)
        self.all_errors = sorted(e for es in self.errors for e in es)
        return self

    def assert_no_failures(self):
        bad = [r for r in self.all if not 200 <= r[3] < 300]
        assert not bad and not self.all_errors, (
            "%d of %d requests failed: non-2xx %r, socket errors %r" % (
                len(bad) + len(self.all_errors), len(self.all) + len(self.all_errors),
                bad[:3], self.all_errors[:3]))


def event(st, reason):
    for e in st["history"]:
        if e["reason"] == reason:
            return e
    raise AssertionError("no %r transition in the history: %r" % (reason, st["history"]))


@timeout(45)
def test_hold_cutover_under_load_zero_failures(ctx):
    sw, b, g = start(ctx)
    load = Load(sw.port, threads=3)
    try:
        time.sleep(0.8)
        r = ctl(sw, "cutover", "--to", "green", "--hold", "2s", "--timeout", "20s",
                timeout=40)
        time.sleep(1.0)
    finally:
        load.stop()
    expect(r, 0)
    load.assert_no_failures()
    out = r.out
    for want in (r"^cutover to green accepted", r"^  hold: quiet: nothing in flight$",
                 r"^cutover report$",
                 r"^  hold started\s+\+\d+\.\d+ s  \(at most 2000 ms\)$",
                 r"^  flip\s+\+\d+\.\d+ s$",
                 r"^  hold released\s+\+\d+\.\d+ s  flip: (\d+) held, \1 released to green, "
                 r"0 rejected \(503\); added latency max [\d.]+ ms, p99 [\d.]+ ms$",
                 r"^  totals\s+\d+ requests, 0 failed",
                 r"^  now\s+\S+, live green$"):
        assert re.search(want, out, re.M), "no %r in switchctl's output:\n%s" % (want, out)
    assert "$ " not in out and "migration" not in out.split("cutover report")[1], out

    st = admin_status(sw.admin_socket)
    assert st["live"] == "green", st
    h = st["hold"]
    assert h["active"] is False and h["end"] == "flip" and h["released_to"] == "green", h
    assert h["held"] == h["released"] and h["rejected"] == 0 and h["gone"] == 0, h
    flip = event(st, "flipped")["time_ms"] / 1000.0
    hold_start = h["started_ms"] / 1000.0
    assert hold_start <= flip + 0.01 and h["ended_ms"] / 1000.0 >= flip - 0.01, (h, flip)
    margin = 0.25 * SLOW
    # Every request sent after the flip was served by green; so was every
    # one sent during the hold (held, then released to green).
    after = [x for x in load.all if x[0] > flip + margin]
    wrong = [x for x in after if x[4] != "green" or x[5] != b"green\n"]
    assert after and not wrong, "%d of %d requests after the flip not from green: %r" % (
        len(wrong), len(after), wrong[:3])
    during = [x for x in load.all if hold_start + margin < x[0] < flip]
    assert all(x[4] == "green" for x in during), \
        "held requests answered by blue: %r" % [x for x in during if x[4] != "green"][:3]
    before = [x for x in load.all if x[1] < hold_start]
    assert len(before) > 10 and all(x[4] == "blue" for x in before), len(before)
    # No request reached blue once the hold started, nor both colours.
    late_blue = [e for e in targets(b, "/load/") if e["t_head"] > hold_start + margin]
    assert not late_blue, late_blue[:3]
    bp = {e["target"] for e in targets(b, "/load/")}
    gp = {e["target"] for e in targets(g, "/load/")}
    assert not bp & gp and bp | gp == {x[2] for x in load.all}, "requests lost or doubled"
    c = st["cutover"]
    assert c["failed"] == 0, c
    print("     load: %d requests, %d held for %.1f ms at most, 0 failed" % (
        len(load.all), h["held"], h["wait_max_us"] / 1000.0))


@timeout(45)
def test_hold_cutover_failed_migration_stays_blue(ctx):
    sw, b, g = start(ctx)
    go = ctx.path("go")
    # The migration fails (exit 3) once the test has held requests queued:
    # it waits for a file (10 s at most) first.
    cmd = ("i=0; while [ ! -e %s ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done; "
           "echo migration failing >&2; exit 3" % go)
    bg = Bg(sw, "cutover", "--to", "green", "--hold", "5s", "--migrate", cmd,
            "--timeout", "20s", timeout=40)
    wait_for(lambda: admin_status(sw.admin_socket)["phase"] == "migrating" and
             admin_status(sw.admin_socket)["hold"]["quiet"], 10 * SLOW, interval=0.02,
             what="migrating, quiet")
    held = send_held(ctx, sw, "/m", 3)
    for x in held:
        assert x.silent_for(0.05)
    open(go, "w").close()
    r = bg.result(30 * SLOW)
    out = r.out + r.err
    for want in (r"^\$ ", r"^  migration: exit status 3 after [\d.]+ s$",
                 r"migration for green failed: the migration command failed",
                 r"^cutover report$", r"^  migration\s+[\d.]+ s, exit status 3$",
                 r"^  hold released\s+\+\d+\.\d+ s  abort: 3 held, 3 released to blue",
                 r"^  now\s+steady, live blue$"):
        assert re.search(want, out, re.M), "no %r in switchctl's output:\n%s" % (want, out)
    for x in held:
        assert_200_from(x.read())
    st = admin_status(sw.admin_socket)
    assert st["live"] == "blue" and st["phase"] == "steady", st
    assert st["last_gate"]["reason"] == "migration_failed", st["last_gate"]
    assert not [e for e in st["history"] if e["reason"] == "flipped"], st["history"]
    assert metric(sw, "switchd_flips_total") == 0
    h = st["hold"]
    assert h["active"] is False and h["end"] == "abort" and h["released_to"] == "blue" and \
        h["held"] == 3 and h["released"] == 3, h
    assert not traffic(g), "green received client requests: %r" % traffic(g)[:3]
    assert sorted(e["target"] for e in targets(b, "/m/")) == ["/m/0", "/m/1", "/m/2"]
    assert_200_from(ctx.get(sw.port, "/after"))
    # A failed migration is the gate's own answer, "failed": exit 4 (as
    # `cutover --help` documents), the outcome in status and /metrics.
    assert st["last_gate"]["outcome"] == "failed", st["last_gate"]
    assert metric(sw, "switchd_gates_total", '{outcome="failed"}') == 1
    assert re.search(r"^failed: migration for green failed", r.out, re.M), r
    expect(r, 4)


# -- 10: metrics -------------------------------------------------------------------------------

@timeout(30)
def test_hold_metrics_count_holds_and_requests(ctx):
    sw, b, g = start(ctx)
    names = ("switchd_hold_active", "switchd_hold_queued", "switchd_holds_total",
             "switchd_hold_requests_total", "switchd_hold_rejected_total",
             "switchd_hold_expired_total", "switchd_hold_wait_max_seconds",
             "switchd_hold_lock_wait_max_seconds", "switchd_hold_seconds_total")
    for n in names:
        assert metric(sw, n) == 0, n
    text = admin_request(sw.admin_socket, "GET", "/metrics").text()
    for n, t in (("switchd_hold_active", "gauge"), ("switchd_holds_total", "counter"),
                 ("switchd_hold_requests_total", "counter"),
                 ("switchd_hold_seconds_total", "counter")):
        assert "# TYPE %s %s" % (n, t) in text, n
    # A first hold: 2 requests, released by hand after about 0.3 s.
    expect(ctl(sw, "hold", "--max", "10s"), 0)
    held = send_held(ctx, sw, "/a", 2)
    assert metric(sw, "switchd_hold_active") == 1
    assert metric(sw, "switchd_hold_queued") == 2
    time.sleep(0.3)
    expect(ctl(sw, "release"), 0)
    for x in held:
        assert_200_from(x.read())
    w1 = metric(sw, "switchd_hold_wait_max_seconds")
    assert w1 >= 0.3, w1
    assert abs(w1 - hold_status(sw)["wait_max_us"] / 1e6) < 1e-5
    # A second one: 3 requests, expired after 400 ms.
    expect(ctl(sw, "hold", "--max", "400ms"), 0)
    held = [Held(ctx, sw.port, "/b/%d" % i) for i in range(3)]
    for x in held:
        assert_200_from(x.read())
    assert metric(sw, "switchd_holds_total") == 2
    assert metric(sw, "switchd_hold_requests_total") == 5
    assert metric(sw, "switchd_hold_expired_total") == 1
    assert metric(sw, "switchd_hold_rejected_total") == 0
    assert metric(sw, "switchd_hold_active") == 0
    assert metric(sw, "switchd_hold_queued") == 0
    assert metric(sw, "switchd_hold_lock_wait_max_seconds") == 0
    # The last hold's longest wait: under its 400 ms max.
    w2 = metric(sw, "switchd_hold_wait_max_seconds")
    assert 0 < w2 <= 0.4 + 0.3 * SLOW, w2
    secs = metric(sw, "switchd_hold_seconds_total")
    assert 0.3 + 0.35 <= secs <= 0.3 + 0.4 + 5 * SLOW, secs


# -- more: the hold and the cutover's other endings ------------------------------------------

def wait_migrating_quiet(sw):
    def ok():
        st = admin_status(sw.admin_socket)
        return st["phase"] == "migrating" and st["hold"] and st["hold"]["quiet"]
    wait_for(ok, 10 * SLOW, interval=0.02, what="migrating, quiet")


def wait_file_cmd(path, then):
    """A shell command that waits (10 s at most) for `path`, then runs `then`."""
    return ("i=0; while [ ! -e %s ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done; %s"
            % (path, then))


@timeout(40)
def test_hold_cutover_hold_runs_out_during_migration(ctx):
    # The migration outlasts the hold: the held requests go to blue at the
    # hold's max, the cutover does not happen, and switchctl says so.
    sw, b, g = start(ctx)
    go = ctx.path("go")
    bg = Bg(sw, "cutover", "--to", "green", "--hold", "700ms", "--migrate",
            wait_file_cmd(go, "exit 0"), "--timeout", "20s", timeout=40)
    wait_migrating_quiet(sw)
    h0 = hold_status(sw)
    held = [Held(ctx, sw.port, "/x/%d" % i) for i in range(2)]
    for x in held:
        resp = x.read(timeout_s=5)
        assert_200_from(resp)
        assert x.t_recv - h0["started_ms"] / 1000.0 >= 0.6, x.t_recv
    st = wait_for(lambda: (lambda s: s if s["phase"] == "steady" else None)(
        admin_status(sw.admin_socket)), 5 * SLOW, what="steady")
    assert st["live"] == "blue", st
    lg = st["last_gate"]
    assert lg["reason"] == "hold_expired" and lg["target"] == "green", lg
    assert "the hold ran out" in lg["message"], lg
    h = st["hold"]
    assert h["end"] == "expired" and h["released_to"] == "blue" and h["released"] == 2, h
    open(go, "w").close()  # the migration ends after the fact
    r = bg.result(20 * SLOW)
    assert r.rc not in (0, 4), "a cutover whose hold ran out: %r" % r
    print("     switchctl cutover: exit %d" % r.rc)
    assert re.search(r"the hold ran out during migrating: held requests went to blue; "
                     r"the cutover to green did not happen", r.out + r.err), r
    assert re.search(r"^  now\s+steady, live blue$", r.out, re.M), r
    assert metric(sw, "switchd_hold_expired_total") == 1
    assert metric(sw, "switchd_flips_total") == 0
    assert not traffic(g), traffic(g)[:3]
    assert_200_from(ctx.get(sw.port, "/after"))
    # Ended by something other than its own evidence: inconclusive (DESIGN
    # §4: "inconclusive, never a pass"), in status and /metrics.
    assert lg["outcome"] == "inconclusive", lg
    assert metric(sw, "switchd_gates_total", '{outcome="inconclusive"}') == 1


@timeout(40)
def test_hold_release_during_cutover_migration_ends_it(ctx):
    # An operator's release of a migrate cutover's hold: the held requests
    # go to blue and the cutover ends without a flip.
    sw, b, g = start(ctx)
    go = ctx.path("go")
    bg = Bg(sw, "cutover", "--to", "green", "--hold", "10s", "--migrate",
            wait_file_cmd(go, "exit 0"), "--timeout", "20s", timeout=40)
    wait_migrating_quiet(sw)
    held = send_held(ctx, sw, "/o", 2)
    expect(ctl(sw, "release"), 0, out=r"^released 2 requests to blue")
    for x in held:
        assert_200_from(x.read())
    st = admin_status(sw.admin_socket)
    assert st["live"] == "blue" and st["phase"] == "steady", st
    assert st["last_gate"]["reason"] == "operator" and \
        st["last_gate"]["outcome"] == "inconclusive", st["last_gate"]
    h = st["hold"]
    assert h["active"] is False and h["released_to"] == "blue" and \
        h["end"] in ("release", "abort"), h
    open(go, "w").close()
    r = bg.result(20 * SLOW)
    assert r.rc not in (0, 4), r
    print("     switchctl cutover: exit %d; hold end %s" % (r.rc, h["end"]))
    assert re.search(r"^  now\s+steady, live blue$", r.out, re.M), r
    assert not traffic(g)
    assert_200_from(ctx.get(sw.port, "/after"))


def json_stream(text):
    dec = json.JSONDecoder()
    out, i = [], 0
    while True:
        while i < len(text) and text[i].isspace():
            i += 1
        if i >= len(text):
            return out
        o, i = dec.raw_decode(text, i)
        out.append(o)


@timeout(40)
def test_hold_cutover_json_report(ctx):
    sw, b, g = start(ctx)
    go = ctx.path("go")
    bg = Bg(sw, "--json", "cutover", "--to", "green", "--hold", "5s", "--migrate",
            wait_file_cmd(go, "echo migrated; exit 0"), "--timeout", "20s", timeout=40)
    wait_migrating_quiet(sw)
    held = send_held(ctx, sw, "/j", 2)
    time.sleep(0.2)
    open(go, "w").close()
    r = bg.result(30 * SLOW)
    expect(r, 0)
    for x in held:
        assert_200_from(x.read(), "green")
    # stdout stays JSON: the migration's output went to stderr.
    assert "migrated" in r.err and "migrated\n" not in r.out, r
    objs = json_stream(r.out)
    reports = [o["report"] for o in objs if "report" in o]
    assert len(reports) == 1 and "report" in objs[-1], objs
    rep = reports[0]
    assert rep["exit"] == 0 and rep["outcome"] == "passed" and rep["live"] == "green" and \
        rep["failed"] == 0, rep
    assert rep["migration_exit_status"] == 0 and rep["migration_ms"] >= 150, rep
    for k in ("gate_passed_at_ms", "migrated_at_ms", "flip_at_ms", "hold_started_at_ms",
              "hold_ended_at_ms"):
        assert isinstance(rep.get(k), int) and rep[k] >= 0, (k, rep)
    # In order (each time is from its own clock reading: a few ms of slack).
    seq = ["gate_passed_at_ms", "hold_started_at_ms", "migrated_at_ms", "flip_at_ms",
           "hold_ended_at_ms"]
    for a, b_ in zip(seq, seq[1:]):
        assert rep[a] <= rep[b_] + 5, (a, b_, rep)
    assert rep["migrated_at_ms"] - rep["hold_started_at_ms"] >= 150, rep
    h = rep["hold"]
    assert h["end"] == "flip" and h["released_to"] == "green" and h["held"] == 2 and \
        h["released"] == 2 and h["wait_max_us"] >= 150000, h


# -- more: what a held request carries ------------------------------------------------------

@timeout(30)
def test_hold_request_bodies_survive_the_hold(ctx):
    sw, b, g = start(ctx)
    expect(ctl(sw, "hold", "--max", "10s"), 0)
    small = b"held body " * 100
    c1 = ctx.client(sw.port, timeout=10 * SLOW)
    c1.send(b"POST /echo HTTP/1.1\r\nHost: hold.test\r\nContent-Length: %d\r\n\r\n"
            % len(small) + small)
    wait_hold(sw, lambda h: h["queued"] == 1, "small POST queued")
    # A body too big to buffer (request_buffer 1 MiB): routed at its head,
    # streamed once released.
    n = 3 * MiB
    big = pattern_bytes(n)
    c2 = ctx.client(sw.port, timeout=10 * SLOW)
    sent = {}

    def send_big():
        try:
            c2.send(b"POST /echo HTTP/1.1\r\nHost: hold.test\r\nContent-Length: %d\r\n\r\n"
                    % n + big)
            sent["ok"] = True
        except BaseException as e:  # noqa
            sent["err"] = e
    t = threading.Thread(target=send_big, daemon=True)
    t.start()
    wait_hold(sw, lambda h: h["queued"] == 2, "big POST queued")
    time.sleep(0.3)
    assert not traffic(b), "a held request reached blue: %r" % traffic(b)[:2]
    expect(ctl(sw, "release"), 0, out=r"^released 2 requests to blue")
    r1 = c1.read_response(timeout=5 * SLOW)
    assert r1.status == 200, r1
    j = r1.json()
    assert j["name"] == "blue" and j["body_len"] == len(small), j
    assert j["body_sha256"] == hashlib.sha256(small).hexdigest(), j
    t.join(15 * SLOW)
    assert sent.get("ok"), sent
    r2 = c2.read_response(timeout=15 * SLOW)
    assert r2.status == 200, r2
    j = r2.json()
    assert j["name"] == "blue" and j["body_len"] == n and \
        j["body_sha256"] == pattern_sha256(n), {k: j[k] for k in ("body_len", "name")}
    h = hold_status(sw)
    assert h["held"] == 2 and h["released"] == 2 and h["gone"] == 0, h


@timeout(30)
def test_hold_pipelined_and_half_closed_client_answered(ctx):
    # Two pipelined requests, then the client half-closes (FIN): the first
    # is held, the second waits behind it on its connection; both are
    # answered in order after the release (a half-closed client still gets
    # the answers to what it sent whole).
    sw, b, g = start(ctx)
    expect(ctl(sw, "hold", "--max", "10s"), 0)
    c = ctx.client(sw.port, timeout=10 * SLOW)
    c.send(b"GET /p/0 HTTP/1.1\r\nHost: hold.test\r\n\r\n"
           b"GET /p/1 HTTP/1.1\r\nHost: hold.test\r\n\r\n")
    c.shutdown_write()
    wait_hold(sw, lambda h: h["queued"] == 1, "first queued")
    time.sleep(0.3)
    h = hold_status(sw)
    assert h["queued"] == 1 and h["held"] == 1 and h["gone"] == 0, h
    expect(ctl(sw, "release"), 0, out=r"^released 1 request to blue")
    r0 = c.read_response(timeout=5 * SLOW)
    r1 = c.read_response(timeout=5 * SLOW)
    assert_200_from(r0)
    assert_200_from(r1)
    assert c.wait_closed(3 * SLOW), "not closed after the half-closed client's answers"
    assert [e["target"] for e in targets(b, "/p/")] == ["/p/0", "/p/1"]


@timeout(30)
def test_hold_survives_reload(ctx):
    # A SIGHUP during a hold: the hold and its queue go on; the new
    # hold_queue applies to the next hold.
    sw, b, g = start(ctx, cutover={"hold_queue": 5})
    expect(ctl(sw, "hold", "--max", "10s"), 0)
    held = send_held(ctx, sw, "/h", 2)
    conf = open(sw.conf_path).read()
    assert "hold_queue 5" in conf
    sw.reload(conf.replace("hold_queue 5", "hold_queue 1"))
    h = hold_status(sw)
    assert h["active"] and h["queued"] == 2, h
    held += send_held(ctx, sw, "/h", 1, start_at=2)
    for x in held:
        assert x.silent_for(0.05)
    expect(ctl(sw, "release"), 0, out=r"^released 3 requests to blue")
    for x in held:
        assert_200_from(x.read())
    # The next hold has the reloaded bound: the 2nd request is refused.
    expect(ctl(sw, "hold", "--max", "10s"), 0)
    x = send_held(ctx, sw, "/h2", 1)[0]
    r = ctx.get(sw.port, "/h2/over")
    assert_proxy_error(r, 503, close=False)
    assert r.header("Retry-After") is not None, r
    expect(ctl(sw, "release"), 0)
    assert_200_from(x.read())


# -- more: the rollback's reverse migration runs under a hold ------------------------------

def rollback_setup(ctx, script_body):
    """PostgreSQL with blue's column `url`; green requires `link`. A held
    cutover renames url -> link and flips to green; the config's
    rollback_migrate runs `script_body` (a shell script, with $DSN set)."""
    pg = ctx.postgres()
    script = ctx.path("rollback.sh")
    with open(script, "w") as f:
        f.write("DSN='%s'\n%s\n" % (pg.dsn, script_body))
    b = ctx.upstream("blue")
    g = ctx.upstream("green")
    bo = health_opts(RISE, require_column="unified_db_personlink url")
    go = health_opts(RISE, require_column="unified_db_personlink link")
    extra = sections({"gate_timeout": "10s", "drain_timeout": "5s", "hold_max": "10s",
                      "rollback_migrate": '"sh %s"' % script,
                      "rollback_migrate_timeout": "15s"},
                     {"auto_window": "60s", "manual_window": "120s"})
    extra += '\ndatabase\n    dsn "%s"\n    connect_timeout 2s\n' % pg.dsn
    sw = ctx.switchd([b], [g], blue_opts=bo, green_opts=go, raw_extra=extra)
    wait_for(lambda: all(admin_status(sw.admin_socket)["colours"][c]["healthy"]
                         for c in ("blue", "green")), 5 * SLOW, what="colours up")
    psql = ("psql -X -q -v ON_ERROR_STOP=1 -d '%s' -c 'ALTER TABLE unified_db_personlink "
            "RENAME COLUMN url TO link'" % pg.dsn)
    r = ctl(sw, "cutover", "--to", "green", "--hold", "5s", "--migrate", psql,
            "--timeout", "20s", timeout=40)
    expect(r, 0, out=r"^  now\s+watching, live green$")
    assert_200_from(ctx.get(sw.port, "/fwd"), "green")
    return pg, sw, b, g


REVERSE = ("i=0; while [ ! -e \"$GO\" ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done\n"
           "psql -X -q -v ON_ERROR_STOP=1 -d \"$DSN\" "
           "-c 'ALTER TABLE unified_db_personlink RENAME COLUMN link TO url'\n")


@timeout(60)
def test_hold_rollback_migrate_runs_under_a_hold(ctx):
    go = ctx.path("go")
    pg, sw, b, g = rollback_setup(ctx, "GO='%s'\n%s" % (go, REVERSE))
    # In a thread: switchctl may answer at once or follow the rollback.
    bg = Bg(sw, "rollback", timeout=40)
    wait_for(lambda: admin_status(sw.admin_socket)["phase"] == "rollback_migrating",
             5 * SLOW, interval=0.02, what="rollback_migrating")
    st = admin_status(sw.admin_socket)
    assert st["live"] == "green", st
    h = wait_hold(sw, lambda h: h["active"] and h["quiet"], "the rollback's hold quiet")
    assert h["by"] == "rollback to blue" and h["max_ms"] == 10000, h
    held = send_held(ctx, sw, "/rb", 3)
    for x in held:
        assert x.silent_for(0.05)
    open(go, "w").close()
    for x in held:
        assert_200_from(x.read(timeout_s=10))
    st = wait_for(lambda: (lambda s: s if s["phase"] == "rolled_back" else None)(
        admin_status(sw.admin_socket)), 10 * SLOW, what="rolled_back")
    assert st["live"] == "blue", st
    h = st["hold"]
    assert h["end"] == "flip" and h["released_to"] == "blue" and h["held"] == 3 and \
        h["released"] == 3, h
    rm = st["rollback_migrate"]
    assert rm["exit_status"] == 0 and not rm["timed_out"], rm
    assert pg.sql("SELECT column_name FROM information_schema.columns WHERE "
                  "table_name = 'unified_db_personlink' AND column_name IN "
                  "('url', 'link')").split() == ["url"]
    assert not targets(g, "/rb/"), "held requests reached green"
    assert_200_from(ctx.get(sw.port, "/after"))
    # switchctl rollback started it: a reverse migration under way (switchd
    # answers 202, "migrating") is not a refusal; it ended rolled back.
    r = bg.result(20 * SLOW)
    assert "refused" not in r.err, "switchctl rollback: %r" % r
    assert r.rc == 0, "switchctl rollback: %r" % r


@timeout(60)
def test_hold_rollback_migrate_fails_held_go_to_green(ctx):
    go = ctx.path("go")
    pg, sw, b, g = rollback_setup(
        ctx, "GO='%s'\ni=0; while [ ! -e \"$GO\" ] && [ $i -lt 200 ]; do sleep 0.05; "
             "i=$((i+1)); done\necho reverse migration broke >&2\nexit 9\n" % go)
    bg = Bg(sw, "rollback", timeout=40)
    wait_hold(sw, lambda h: h["active"] and h["quiet"] and h["by"] == "rollback to blue",
              "the rollback's hold quiet")
    held = send_held(ctx, sw, "/rf", 2)
    open(go, "w").close()
    # The reverse migration failed: blue cannot take the traffic; the held
    # requests go to green, which stays live.
    for x in held:
        assert_200_from(x.read(timeout_s=10), "green")
    st = wait_for(lambda: (lambda s: s if s["phase"] == "rollback_blocked" else None)(
        admin_status(sw.admin_socket)), 10 * SLOW, what="rollback_blocked")
    assert st["live"] == "green", st
    h = st["hold"]
    assert h["active"] is False and h["released_to"] == "green" and h["released"] == 2 \
        and h["end"] == "abort", h
    rm = st["rollback_migrate"]
    assert rm["exit_status"] == 9, rm
    assert "rollback_migrate exited with status 9" in st["rollback"]["message"], st["rollback"]
    assert not targets(b, "/rf/")
    assert_200_from(ctx.get(sw.port, "/after"), "green")
    # Whatever switchctl reports, the start of the reverse migration was not
    # a refusal.
    r = bg.result(20 * SLOW)
    assert "refused (202)" not in r.err, "switchctl rollback: %r" % r


@timeout(30)
def test_hold_websocket_upgrade_held_then_tunnels(ctx):
    sw, b, g = start(ctx)
    expect(ctl(sw, "hold", "--max", "10s"), 0)
    c = ctx.client(sw.port, timeout=5 * SLOW)
    c.send(b"GET /ws HTTP/1.1\r\nHost: hold.test\r\nUpgrade: websocket\r\n"
           b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
           b"Sec-WebSocket-Version: 13\r\n\r\n")
    wait_hold(sw, lambda h: h["queued"] == 1, "upgrade queued")
    try:
        d = c.recv_some(timeout=0.3)
        assert False, "answered during the hold: %r" % d
    except Timeout:
        pass
    expect(ctl(sw, "release"), 0, out=r"^released 1 request to blue")
    r = c.read_response(timeout=5 * SLOW)
    assert r.status == 101 and r.header("X-Upstream") == "blue", r
    c.send(b"ping through the tunnel")
    assert c.recv_exact(len(b"ping through the tunnel"), timeout=5 * SLOW) == \
        b"ping through the tunnel"
    c.close()
    assert_200_from(ctx.get(sw.port, "/after"))


@timeout(60)
def test_hold_rollback_migrate_background_child_does_not_hang(ctx):
    """A reverse migration that leaves a process in the background holding
    its output: switchd takes the shell's exit as the end (after a short
    grace, killing what was left), the rollback goes on, and SIGTERM still
    exits at once."""
    go = ctx.path("go")
    pg, sw, b, g = rollback_setup(ctx, "GO='%s'\n%s\nsleep 60 &\nexit 0\n" % (go, REVERSE))
    open(go, "w").close()
    t0 = time.time()
    bg = Bg(sw, "rollback", timeout=40)
    st = wait_for(lambda: (lambda s: s if s["phase"] == "rolled_back" else None)(
        admin_status(sw.admin_socket)), 10 * SLOW, what="rolled_back")
    took = time.time() - t0
    assert st["live"] == "blue" and st["rollback_migrate"]["exit_status"] == 0, st
    assert took < 5 * SLOW, "the rollback waited %.1f s for the background child" % took
    bg.result(20 * SLOW)
    assert "killing what it left running" in sw.stderr_text()
    t1 = time.time()
    sw.stop(timeout=10 * SLOW)
    assert time.time() - t1 < 5 * SLOW


@timeout(30)
def test_hold_quiet_with_a_websocket_open(ctx):
    """An open WebSocket tunnel on the live colour does not keep a hold from
    being quiet (it may last for hours); status counts it apart."""
    sw, b, g = start(ctx)
    c = ctx.client(sw.port, timeout=5 * SLOW)
    c.send(b"GET /ws HTTP/1.1\r\nHost: hold.test\r\nUpgrade: websocket\r\n"
           b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
           b"Sec-WebSocket-Version: 13\r\n\r\n")
    r = c.read_response(timeout=5 * SLOW)
    assert r.status == 101, r
    r = expect(ctl(sw, "hold", "--max", "10s", "--timeout", "3s"), 0, out=r"^quiet")
    h = admin_status(sw.admin_socket)["hold"]
    assert h["active"] and h["quiet"] and h["inflight"] == 0 and h["tunnels"] == 1, h
    # The tunnel still carries bytes while the hold is on.
    c.send(b"still open")
    assert c.recv_exact(len(b"still open"), timeout=5 * SLOW) == b"still open"
    expect(ctl(sw, "release"), 0)
    c.close()
