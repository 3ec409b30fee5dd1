"""The error watch and the automatic flip back (DESIGN §4 and §5) end to end:
real switchd, real upstreams (upstream.py, whose /control/fail makes a
colour answer 5xx at runtime), webhook receivers in the test, 127.0.0.1 only.

- Under steady load, green starting to answer 500 is rolled back to blue by a
  trigger: the clients see no more 5xx than the rule's threshold plus the
  requests in flight at that moment, green receives nothing after it, blue
  serves everything afterwards.
- 1 error in 1000 on both colours at a high rate is noise: no rollback over
  the whole automatic window, though the plain count rule would have fired.
- Five requests after the flip, all 500: R3. Green failing its health checks
  with no traffic at all: R4.
- Blue unhealthy when a trigger fires: rollback_blocked, green keeps serving,
  and an operator rolls back once blue is back.
- The window policy of POST /v1/rollback (needs_confirm, needs_force) and
  POST /v1/commit.
- A restart in the middle of the window resumes the watch with its counts and
  the time left.
- The webhook hears flip and rollback; a receiver that never answers delays
  neither requests nor the rollback.

Windows are short (auto 1-8 s); health checks, where a test needs them, run
every 200 ms. The load is plain keep-alive http.client connections, one
request at a time each, so the requests in flight at any moment are at most
the number of client threads.
"""

import http.client
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from harness import (SLOW, admin_request, admin_status, health_opts, make_config,
                     set_health, timeout, traffic, wait_for)

# The watch thresholds of the tests (the defaults of DESIGN §5 unless a test
# says otherwise).
MAX_ERRORS = 10
MAX_CONSECUTIVE = 5
MIN_REQUESTS = 20


def watch_section(**over):
    """The watch section as config text; over: directive -> value (None
    leaves the directive out)."""
    o = {"enabled": "on", "auto_window": "5s", "manual_window": "8s",
         "baseline_window": "10s", "min_requests": MIN_REQUESTS,
         "max_errors": MAX_ERRORS, "max_error_ratio": "0.5", "ratio_window": "10s",
         "max_consecutive": MAX_CONSECUTIVE, "health_trigger": "on"}
    o.update(over)
    out = ["watch"]
    for k, v in o.items():
        if v is not None:
            out.append("    %s %s" % (k, v))
    return "\n".join(out) + "\n"


def fast_health(**over):
    """Health checks for the tests that need them: a failing colour is down
    after 2 checks, 200 ms apart."""
    o = {"health_interval": "200ms", "health_timeout": "150ms", "health_fall": 2}
    o.update(over)
    return health_opts(2, **o)


def config(port, b, g, watch=None, cutover=None, health=False, state_file=None):
    cut = {"gate_timeout": "10s", "drain_timeout": "5s"}
    if state_file:
        cut["state_file"] = state_file
    cut.update(cutover or {})
    extra = ["cutover"] + ["    %s %s" % kv for kv in cut.items()] + [""]
    return make_config([port], [b], [g],
                       blue_opts=fast_health() if health else None,
                       green_opts=fast_health() if health else None,
                       raw_extra="\n".join(extra) + watch_section(**(watch or {})))


def start(ctx, watch=None, cutover=None, health=False, state_file=None):
    b = ctx.upstream("blue")
    g = ctx.upstream("green")
    port = ctx.port()
    sw = ctx.switchd(conf=config(port, b, g, watch, cutover, health, state_file),
                     port=port)
    if health:
        wait_for(lambda: all(admin_status(sw.admin_socket)["colours"][c]["healthy"]
                             for c in ("blue", "green")), 5 * SLOW,
                 what="both colours healthy")
    return sw, b, g


def fail(u, every, status=500):
    """Makes upstream u answer `status` to every `every`-th request (0: stop)."""
    r = u._get("/control/fail?status=%d&every=%d" % (status, every))
    assert r == {"fail_status": status, "fail_every": every}, r


def post(sw, path, body=None):
    return admin_request(sw.admin_socket, "POST", path, body if body is not None else {})


def status(sw):
    return admin_status(sw.admin_socket)


def cutover(sw, to="green", timeout_s=5.0):
    """POST /v1/cutover and waits for the flip; returns the status."""
    r = post(sw, "/v1/cutover", {"to": to})
    assert r.status == 202, "cutover to %s: %r %r" % (to, r, r.body)

    def flipped():
        st = status(sw)
        return st if st["live"] == to and st["phase"] == "watching" else None
    return wait_for(flipped, timeout_s * SLOW, 0.02, what="the flip to %s" % to)


def wait_phase(sw, phase, timeout_s=5.0, interval=0.02):
    def at():
        st = status(sw)
        return st if st["phase"] == phase else None
    return wait_for(at, timeout_s * SLOW, interval, what="phase %s" % phase)


def metrics(sw):
    """/metrics as {'name{labels}': value}."""
    r = admin_request(sw.admin_socket, "GET", "/metrics")
    assert r.status == 200, r
    out = {}
    for line in r.text().splitlines():
        if line and not line.startswith("#"):
            k, _, v = line.rpartition(" ")
            out[k] = float(v)
    return out


def get(ctx, sw, path="/"):
    """One request on its own connection: (status, X-Upstream)."""
    r = ctx.get(sw.port, path)
    return r.status, r.header("X-Upstream")


def watch_phase_metric(sw):
    """The phase switchd_watch_phase says is current."""
    on = [k for k, v in metrics(sw).items()
          if k.startswith("switchd_watch_phase{") and v == 1]
    assert len(on) == 1, on
    return on[0].split('"')[1]


def rollbacks_total(m):
    return sum(v for k, v in m.items() if k.startswith("switchd_rollbacks_total{"))


class Load:
    """`threads` keep-alive connections (http.client), each sending GET
    /load/T/I as soon as the previous answer arrived, until stop() or
    max_seconds. Records (t_send, t_recv, status, X-Upstream, path) per
    request, and socket errors apart."""

    def __init__(self, port, threads=4, max_seconds=40.0):
        self.port = port
        self.threads = threads
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
                resp.read()
                self.records[tid].append((t_send, time.time(), resp.status,
                                          resp.getheader("X-Upstream"), path))
            except Exception as e:  # noqa: every failure is counted, none retried
                self.errors[tid].append((t_send, time.time(), path, repr(e)))
                if conn is not None:
                    conn.close()
                conn = None
        if conn is not None:
            conn.close()

    def count(self):
        return sum(len(r) for r in self.records)

    def stop(self):
        self._stop.set()
        for t in self._ts:
            t.join(15)
            assert not t.is_alive(), "a load thread is stuck"
        self.all = sorted(r for rs in self.records for r in rs)
        self.all_errors = sorted(e for es in self.errors for e in es)
        return self


class Hook:
    """A webhook receiver on 127.0.0.1: answers 200 to every POST and keeps
    the JSON bodies (with their arrival time)."""

    def __init__(self, ctx):
        self.port = ctx.port()
        self.bodies = []
        self.lock = threading.Lock()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0"))
                data = self.rfile.read(n)
                with hook.lock:
                    hook.bodies.append((time.time(), self.path,
                                        self.headers.get("Content-Type"),
                                        json.loads(data)))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def events(self):
        with self.lock:
            return [b for _, _, _, b in self.bodies]

    def wait(self, pred, timeout_s, what):
        """Waits until pred(events) holds; returns the events."""
        wait_for(lambda: pred(self.events()), timeout_s * SLOW, 0.02, what=what)
        return self.events()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class Hang:
    """A webhook receiver that accepts connections, reads what comes and
    never answers."""

    def __init__(self, ctx):
        self.port = ctx.port()
        self.ls = socket.socket()
        self.ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.ls.bind(("127.0.0.1", self.port))
        self.ls.listen(16)
        self.ls.settimeout(0.05)
        self.conns = []
        self.received = []
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self._stop.is_set():
            try:
                s, _ = self.ls.accept()
            except socket.timeout:
                pass
            else:
                s.settimeout(0)
                self.conns.append((time.time(), s))
            for _, s in self.conns:
                try:
                    d = s.recv(65536)
                    if d:
                        self.received.append(d)
                except (BlockingIOError, OSError):
                    pass

    def close(self):
        self._stop.set()
        self.thread.join(5)
        for _, s in self.conns:
            s.close()
        self.ls.close()


# -- a: the flip back under steady load ---------------------------------------------

@timeout(60)
def test_rollback_under_steady_load(ctx):
    threads = 4
    sw, b, g = start(ctx, watch={"auto_window": "%ds" % (8 * SLOW),
                                 "manual_window": "%ds" % (12 * SLOW)})
    load = Load(sw.port, threads)
    try:
        time.sleep(1.0)  # blue's baseline, 0 errors
        st = cutover(sw)
        assert st["watch"]["phase"] == "watching" and st["watch"]["colour"] == "green", \
            st["watch"]
        time.sleep(1.5)
        n_before_fail = load.count()
        t_fail = time.time()
        fail(g, 1)
        st = wait_phase(sw, "rolled_back", 5)
        t_seen = time.time()
        # Green's traffic as the rollback is first seen; it must never grow.
        g_at_rollback = len(traffic(g))
        time.sleep(1.5)
        g_later = len(traffic(g))
        time.sleep(0.5)
    finally:
        load.stop()

    st = status(sw)
    rb, w = st["rollback"], st["watch"]
    assert st["live"] == "blue" and st["phase"] == "rolled_back", st
    assert rb["outcome"] == "rolled_back" and rb["mode"] == "auto" and \
        rb["from"] == "green" and rb["to"] == "blue", rb
    rule = rb["trigger"]
    assert rule in ("r1", "r2", "r3"), rb
    fired = w["fired"]
    assert fired is not None and fired["rule"] == rule and fired["verdict"] == "fire" and \
        fired["colour"] == "green" and w["outcome"] == "fired", w
    # It says why: the rule, its numbers, the direction.
    assert "rolled back green -> blue" in rb["message"] and \
        ("%s: green had" % rule) in rb["message"], rb["message"]
    t_rb = rb["time_ms"] / 1000.0
    assert t_fail - 0.05 < t_rb < t_seen + 0.05, (t_fail, t_rb, t_seen)

    # What the clients saw: only 200s and green's 500s, no socket error.
    assert not load.all_errors, "socket errors: %r" % load.all_errors[:3]
    bad = [r for r in load.all if r[2] != 200 and not (r[2] == 500 and r[3] == "green")]
    assert not bad, "unexpected answers: %r" % bad[:5]
    five = [r for r in load.all if r[2] >= 500]
    # The rule fired on the very response that reached its threshold: R3 on
    # the max_consecutive-th error in a row, R1 on error max_errors + 1.
    glog = traffic(g)
    first_fail = min(e["t_done"] for e in glog if e["failed"])
    # switchd sees responses in the order they reach it, which on four
    # connections can differ from the order green finished writing them by
    # a few ms: a success green sent just before its first 500 may reach
    # switchd after it.
    interleaved = [e for e in glog if not e["failed"] and e["t_done"] > first_fail - 0.05]
    if rule == "r3":
        assert fired["consecutive"] == MAX_CONSECUTIVE, fired
        # More errors than the run only if a success broke an earlier run,
        # and at most one extra error per such success.
        assert fired["errors"] - MAX_CONSECUTIVE <= len(interleaved), (fired, interleaved)
    elif rule == "r1":
        assert fired["errors"] == MAX_ERRORS + 1, fired
    # The bound on the 5xx the clients received: the errors switchd had
    # counted when the rule fired (its threshold, checked above, plus for R3
    # the errors of a run a success broke) and what was in flight on green at
    # that moment. The response that fired belongs to a client thread with
    # nothing else in flight; the flip back happens in that loop turn, so
    # only the other threads' requests already sent to green can still fail:
    # at most one each.
    in_flight_bound = threads - 1
    bound = fired["errors"] + in_flight_bound
    assert fired["errors"] <= len(five) <= bound, (
        "clients received %d 5xx; the bound is %d (%s fired at %d errors, %d in "
        "a row, + %d in flight)" % (len(five), bound, rule, fired["errors"],
                                    fired["consecutive"], in_flight_bound))
    # Every injected failure reached a client, and nothing else failed.
    assert g.stats()["failed"] == len(five), (g.stats(), len(five))

    # Green received nothing after the rollback: its count is frozen while
    # the load goes on for 2 s more (hundreds of requests) ...
    after_seen = [r for r in load.all if r[0] > t_seen]
    assert len(after_seen) > 100, "too little load after the rollback: %d" % len(after_seen)
    assert len(glog) == g_at_rollback == g_later, (len(glog), g_at_rollback, g_later)
    # ... and by its own receive times: after the rollback moment (a few ms
    # of margin for the loop's cached clock), only the requests that were
    # already in flight at it, at most one per other client thread; none
    # after the last 5xx the clients saw.
    late = [e for e in glog if e["t_head"] > t_rb + 0.005]
    assert len(late) <= in_flight_bound, (
        "green received %d requests after the rollback: %r"
        % (len(late), [(e["target"], round(e["t_head"] - t_rb, 4)) for e in late]))
    last_5xx = max(r[1] for r in five)
    assert all(e["t_head"] <= last_5xx for e in glog), "green got a request after the last 5xx"
    # Blue serves everything afterwards.
    after = [r for r in load.all if r[0] > t_rb + 0.05]
    wrong = [r for r in after if r[2] != 200 or r[3] != "blue"]
    assert after and not wrong, "%d of %d requests after the rollback not from blue: %r" % (
        len(wrong), len(after), wrong[:3])
    # Counted in metrics.
    m = metrics(sw)
    assert m['switchd_rollbacks_total{trigger="%s"}' % rule] == 1, m
    assert rollbacks_total(m) == 1 and m["switchd_rollbacks_blocked_total"] == 0, m

    last_green = max(e["t_head"] for e in glog)
    print("     %d requests (%d before the failures); %s fired after %d errors "
          "(%d in a row; %d success(es) among the failures), %.0f ms after the "
          "failures began; clients saw %d 5xx (bound %d = %d + %d in flight); "
          "green's last request %.1f ms after the rollback; %d late" % (
              len(load.all), n_before_fail, rule, fired["errors"], fired["consecutive"],
              len(interleaved), (t_rb - t_fail) * 1000, len(five), bound,
              fired["errors"], in_flight_bound, (last_green - t_rb) * 1000, len(late)))


# -- b: noise ---------------------------------------------------------------------------

@timeout(60)
def test_noise_does_not_roll_back(ctx):
    threads = 8
    # R1's plain count would fire at 4 errors; blue's baseline ratio (the same
    # 1 in 1000, over thousands of requests) must make green's errors, about
    # one per thousand of its requests, read as noise.
    max_errors = 3
    sw, b, g = start(ctx, watch={"auto_window": "4s", "manual_window": "30s",
                                 "max_errors": max_errors})
    fail(b, 1000)
    fail(g, 1000)
    load = Load(sw.port, threads)
    try:
        time.sleep(2.5)  # blue's baseline
        st = cutover(sw)
        n_flip = load.count()
        st = wait_phase(sw, "committed_manual", 8, 0.2)
        time.sleep(0.3)
    finally:
        load.stop()
    st = status(sw)
    w = st["watch"]
    assert st["live"] == "green" and st["phase"] == "committed_manual", st
    assert watch_phase_metric(sw) == "committed_manual"
    assert "rollback" not in st, st["rollback"]
    assert w["fired"] is None and w["outcome"] != "fired", w
    m = metrics(sw)
    assert rollbacks_total(m) == 0 and m["switchd_rollbacks_blocked_total"] == 0, m
    assert not load.all_errors, load.all_errors[:3]
    five = [r for r in load.all if r[2] != 200]
    assert all(r[2] == 500 for r in five), five[:3]
    assert len(five) == b.stats()["failed"] + g.stats()["failed"], (
        len(five), b.stats(), g.stats())
    gs = g.stats()
    print("     %d requests, %d 5xx; baseline %d/%d; green %d errors in %d "
          "requests over the auto window (%d in the watch)" % (
              len(load.all), len(five), w["baseline"]["errors"],
              w["baseline"]["requests"], gs["failed"], gs["requests"], w["requests"]))
    assert w["baseline"]["requests"] >= MIN_REQUESTS, w["baseline"]
    # The guard was really exercised: more errors than the plain count rule
    # allows, at a rate that matches blue's.
    assert w["errors"] > max_errors, (
        "only %d errors in %d requests: too little traffic to test the noise guard"
        % (w["errors"], w["requests"]))
    assert n_flip > 1000, n_flip


# -- c, d: low traffic (R3) and health (R4) ---------------------------------------------

@timeout(30)
def test_low_traffic_consecutive_errors_r3(ctx):
    sw, b, g = start(ctx)
    for _ in range(3):
        assert get(ctx, sw) == (200, "blue")
    cutover(sw)
    fail(g, 1)
    for i in range(MAX_CONSECUTIVE - 1):
        assert get(ctx, sw) == (500, "green"), i
    st = status(sw)
    assert st["phase"] == "watching" and st["live"] == "green", st
    assert st["watch"]["errors"] == MAX_CONSECUTIVE - 1 and \
        st["watch"]["triggers"]["r3"]["consecutive"] == MAX_CONSECUTIVE - 1, st["watch"]
    # The fifth error fires R3; the very next request already goes to blue.
    assert get(ctx, sw) == (500, "green")
    assert get(ctx, sw) == (200, "blue")
    st = status(sw)
    assert st["phase"] == "rolled_back" and st["live"] == "blue", st
    assert st["rollback"]["trigger"] == "r3" and st["rollback"]["outcome"] == "rolled_back", \
        st["rollback"]
    assert "%d errors in a row" % MAX_CONSECUTIVE in st["rollback"]["message"], st["rollback"]
    f = st["watch"]["fired"]
    assert f["rule"] == "r3" and f["errors"] == MAX_CONSECUTIVE and \
        f["requests"] == MAX_CONSECUTIVE and f["consecutive"] == MAX_CONSECUTIVE, f
    assert len(traffic(g)) == MAX_CONSECUTIVE and g.stats()["failed"] == MAX_CONSECUTIVE
    assert metrics(sw)['switchd_rollbacks_total{trigger="r3"}'] == 1


@timeout(30)
def test_green_health_failure_without_traffic_r4(ctx):
    sw, b, g = start(ctx, health=True)
    cutover(sw)
    time.sleep(0.3)
    assert status(sw)["phase"] == "watching"
    t0 = time.time()
    set_health(g, 503)
    st = wait_phase(sw, "rolled_back", 5)
    dt = time.time() - t0
    assert st["live"] == "blue", st
    rb = st["rollback"]
    assert rb["trigger"] == "r4" and rb["outcome"] == "rolled_back" and rb["to"] == "blue", rb
    assert "failed its health checks" in rb["message"], rb
    f = st["watch"]["fired"]
    assert f["rule"] == "r4" and f["requests"] == 0 and f["errors"] == 0, f
    assert not st["watch"]["triggers"]["r4"]["healthy"], st["watch"]["triggers"]
    # fall = 2 checks 200 ms apart, each with a 150 ms timeout.
    assert dt < 2.0 * SLOW, "R4 took %.2fs" % dt
    assert traffic(g) == [] and traffic(b) == []
    m = metrics(sw)
    assert m['switchd_rollbacks_total{trigger="r4"}'] == 1 and rollbacks_total(m) == 1, m
    assert get(ctx, sw) == (200, "blue")


# -- e: blue unhealthy when a trigger fires --------------------------------------------

@timeout(40)
def test_rollback_blocked_when_blue_unhealthy(ctx):
    sw, b, g = start(ctx, health=True)
    cutover(sw)
    set_health(b, 503)
    wait_for(lambda: not status(sw)["colours"]["blue"]["healthy"], 5 * SLOW,
             what="blue down")
    fail(g, 1)
    for i in range(MAX_CONSECUTIVE):
        assert get(ctx, sw) == (500, "green"), i
    st = status(sw)
    assert st["phase"] == "rollback_blocked" and st["live"] == "green", st
    rb = st["rollback"]
    assert rb["outcome"] == "blocked" and rb["trigger"] == "r3" and \
        rb["from"] == "green" and rb["to"] == "blue", rb
    assert "blue is unhealthy" in rb["message"], rb["message"]
    m = metrics(sw)
    assert m["switchd_rollbacks_blocked_total"] == 1 and rollbacks_total(m) == 0, m
    # Traffic stays on green: never into a broken pool.
    assert get(ctx, sw) == (500, "green")
    fail(g, 0)
    for _ in range(5):
        assert get(ctx, sw) == (200, "green")
    assert traffic(b) == []
    # An operator cannot roll back while blue is down ...
    r = post(sw, "/v1/rollback")
    assert r.status == 409 and r.json()["reason"] == "not_ready" and \
        "blue is unhealthy" in r.json()["message"], (r, r.body)
    assert status(sw)["live"] == "green"
    # ... and can once it is back; nothing rolled back by itself meanwhile.
    set_health(b, 200)
    wait_for(lambda: status(sw)["colours"]["blue"]["healthy"], 5 * SLOW, what="blue up")
    st = status(sw)
    assert st["phase"] == "rollback_blocked" and st["live"] == "green", st
    r = post(sw, "/v1/rollback")
    assert r.status == 200 and r.json()["live"] == "blue", (r, r.body)
    assert get(ctx, sw) == (200, "blue")
    m = metrics(sw)
    assert m["switchd_rollbacks_blocked_total"] == 1 and \
        m['switchd_rollbacks_total{trigger="operator"}'] == 1, m


# -- f: the window policy of the API ---------------------------------------------------

@timeout(45)
def test_manual_rollback_window_policy(ctx):
    sw, b, g = start(ctx, watch={"auto_window": "1s", "manual_window": "%ds" % (3 + SLOW)})
    # In the manual window: --confirm needed.
    cutover(sw)
    wait_phase(sw, "committed_manual", 3)
    assert watch_phase_metric(sw) == "committed_manual"
    r = post(sw, "/v1/rollback")
    assert r.status == 409 and r.json()["reason"] == "needs_confirm", (r, r.body)
    assert "--confirm" in r.json()["message"], r.body
    assert get(ctx, sw) == (200, "green")
    r = post(sw, "/v1/rollback", {"mode": "confirm"})
    assert r.status == 200 and r.json()["rolled_back"] and r.json()["live"] == "blue" and \
        r.json()["phase"] == "rolled_back", (r, r.body)
    assert get(ctx, sw) == (200, "blue")
    st = status(sw)
    assert st["rollback"]["mode"] == "confirm" and st["rollback"]["trigger"] == "operator", \
        st["rollback"]
    r = post(sw, "/v1/rollback", {"mode": "force"})
    assert r.status == 409 and r.json()["reason"] == "already_rolled_back", (r, r.body)

    # After the manual window: --force needed.
    wait_for(lambda: post(sw, "/v1/cutover", {"to": "green"}).status == 202, 5 * SLOW,
             0.1, what="a new cutover accepted after the rollback")
    wait_phase(sw, "watching", 3)
    st = wait_phase(sw, "final", 3 + SLOW + 3, 0.1)
    assert st["watch"]["phase"] == "final", st["watch"]
    assert watch_phase_metric(sw) == "final"
    for body in ({}, {"mode": "confirm"}):
        r = post(sw, "/v1/rollback", body)
        assert r.status == 409 and r.json()["reason"] == "needs_force", (body, r, r.body)
    assert "--force" in r.json()["message"], r.body
    assert get(ctx, sw) == (200, "green")
    r = post(sw, "/v1/rollback", {"mode": "force"})
    assert r.status == 200 and r.json()["live"] == "blue", (r, r.body)
    assert get(ctx, sw) == (200, "blue")
    assert status(sw)["rollback"]["mode"] == "force"
    r = post(sw, "/v1/rollback", {"mode": "sideways"})
    assert r.status == 400, (r, r.body)
    assert metrics(sw)['switchd_rollbacks_total{trigger="operator"}'] == 2


# -- g: restart in the middle of the window ----------------------------------------------

@timeout(60)
def test_restart_resumes_watch(ctx):
    auto_s = 8 * SLOW
    b = ctx.upstream("blue")
    g = ctx.upstream("green")
    port = ctx.port()
    # R1 alone, as a plain count (no blue traffic: no baseline), so the
    # count kept across the restart decides when it fires.
    conf = config(port, b, g, watch={"auto_window": "%ds" % auto_s,
                                     "manual_window": "%ds" % (2 * auto_s),
                                     "max_errors": 5, "max_consecutive": "off",
                                     "max_error_ratio": "off"},
                  state_file=ctx.path("state.json"))
    sw = ctx.switchd(conf=conf, port=port)
    st = cutover(sw)
    flip_ms = st["watch"]["flip_time_ms"]
    for _ in range(10):
        assert get(ctx, sw) == (200, "green")
    fail(g, 1)
    for _ in range(3):
        assert get(ctx, sw) == (500, "green")
    w = status(sw)["watch"]
    assert (w["phase"], w["requests"], w["errors"]) == ("watching", 13, 3), w

    sw.stop()
    time.sleep(0.3)
    sw2 = ctx.switchd(conf=conf, port=port, name="switchd2")
    st = status(sw2)
    w = st["watch"]
    since = time.time() * 1000 - flip_ms
    assert st["live"] == "green" and st["phase"] == "watching", st
    assert w["phase"] == "watching" and w["colour"] == "green", w
    assert (w["requests"], w["errors"]) == (13, 3), w
    assert w["flip_time_ms"] == flip_ms, (w["flip_time_ms"], flip_ms)
    assert 0 < w["auto_left_ms"] < auto_s * 1000 and \
        abs(w["auto_left_ms"] - (auto_s * 1000 - since)) < 300, (w["auto_left_ms"], since)
    assert "watch of green resumed" in sw2.stderr_text()
    # Errors 4 and 5 are not more than max_errors; the sixth fires R1.
    for _ in range(2):
        assert get(ctx, sw2) == (500, "green")
    assert status(sw2)["phase"] == "watching"
    assert get(ctx, sw2) == (500, "green")
    assert get(ctx, sw2) == (200, "blue")
    st = status(sw2)
    assert st["phase"] == "rolled_back" and st["live"] == "blue", st
    assert st["rollback"]["trigger"] == "r1", st["rollback"]
    f = st["watch"]["fired"]
    assert f["rule"] == "r1" and f["errors"] == 6 and f["requests"] == 16, f
    assert "6 errors in 16 requests" in st["rollback"]["message"], st["rollback"]


# -- h: the webhook ------------------------------------------------------------------------

@timeout(30)
def test_webhook_flip_and_rollback(ctx):
    hook = Hook(ctx)
    try:
        sw, b, g = start(ctx, watch={"notify": "http://127.0.0.1:%d/hook?x=1" % hook.port,
                                     "notify_timeout": "1s", "notify_retries": 1})
        cutover(sw)
        evs = hook.wait(lambda e: any(x["event"] == "flip" for x in e), 3, "the flip event")
        flip = [x for x in evs if x["event"] == "flip"][0]
        assert flip["live"] == "green" and flip["phase"] == "watching" and \
            flip["reason"] == "flipped", flip
        fail(g, 1)
        for _ in range(MAX_CONSECUTIVE):
            assert get(ctx, sw) == (500, "green")
        evs = hook.wait(lambda e: any(x["event"] == "rollback" for x in e), 3,
                        "the rollback event")
        rb = [x for x in evs if x["event"] == "rollback"][0]
        assert rb["live"] == "blue" and rb["phase"] == "rolled_back", rb
        assert rb["watch"]["fired"]["rule"] == "r3", rb["watch"]
        assert [x["event"] for x in evs] == ["flip", "rollback"], evs
        with hook.lock:
            paths = {p for _, p, _, _ in hook.bodies}
            types = {t for _, _, t, _ in hook.bodies}
        assert paths == {"/hook?x=1"} and types == {"application/json"}, (paths, types)
        wait_for(lambda: metrics(sw)['switchd_notify_total{result="sent"}'] == 2, 3 * SLOW,
                 what="2 notifications counted as sent")
        # The watch each body carries is the one the event started: the
        # flip's is green's, armed at the flip, not the idle one before it.
        fw = flip["watch"]
        assert (fw["phase"], fw["colour"], fw["flip_time_ms"] > 0) == \
            ("watching", "green", True), "the flip notification's watch: %r" % fw
    finally:
        hook.close()


@timeout(40)
def test_webhook_that_never_answers_delays_nothing(ctx):
    threads = 4
    notify_timeout = 2.0
    hang = Hang(ctx)
    try:
        sw, b, g = start(ctx, watch={"notify": "http://127.0.0.1:%d/" % hang.port,
                                     "notify_timeout": "%dms" % (notify_timeout * 1000),
                                     "notify_retries": 2,
                                     "auto_window": "%ds" % (8 * SLOW),
                                     "manual_window": "%ds" % (12 * SLOW)})
        load = Load(sw.port, threads)
        try:
            time.sleep(0.5)
            t_flip0 = time.time()
            cutover(sw)
            wait_for(lambda: hang.conns, 2 * SLOW, 0.02, what="the notifier connecting")
            time.sleep(0.5)
            # The flip's notification hangs; green starts failing.
            t_fail = time.time()
            fail(g, 1)
            st = wait_phase(sw, "rolled_back", 3)
            t_seen = time.time()
            time.sleep(1.0)
        finally:
            load.stop()
        assert hang.conns and b"POST / HTTP/1.1" in hang.received[0], hang.received[:1]
        rb = st["rollback"]
        t_rb = rb["time_ms"] / 1000.0
        assert rb["outcome"] == "rolled_back" and rb["trigger"] in ("r1", "r2", "r3"), rb
        # At once: not after a notification's timeout.
        assert t_rb - t_fail < 0.5 * SLOW and t_seen - t_fail < notify_timeout, (
            "the rollback came %.0f ms after the failures began (seen after %.0f ms)"
            % ((t_rb - t_fail) * 1000, (t_seen - t_fail) * 1000))
        five = [r for r in load.all if r[2] >= 500]
        assert len(five) <= MAX_CONSECUTIVE + MAX_ERRORS + threads, len(five)
        assert not load.all_errors, load.all_errors[:3]
        # Requests kept flowing with normal latency while the notifier hung:
        # none waited anywhere near the notification timeout.
        during = [r for r in load.all if r[0] > t_flip0]
        lat = sorted(r[1] - r[0] for r in during)
        assert len(during) > 200, len(during)
        assert lat[-1] < notify_timeout / 2, "a request took %.3fs while the webhook hung" % lat[-1]
        gaps = []
        for rs in load.records:
            ts = [r[1] for r in rs if r[0] > t_flip0]
            gaps += [y - x for x, y in zip(ts, ts[1:])]
        assert max(gaps) < notify_timeout / 2, "a client waited %.3fs" % max(gaps)
        print("     %d requests during the hang, latency p50 %.1f ms, max %.1f ms; "
              "rollback %.0f ms after the failures, %d 5xx" % (
                  len(during), lat[len(lat) // 2] * 1000, lat[-1] * 1000,
                  (t_rb - t_fail) * 1000, len(five)))
    finally:
        hang.close()


# -- i: commit ------------------------------------------------------------------------------

@timeout(30)
def test_commit_ends_watch_then_new_cutover(ctx):
    sw, b, g = start(ctx)
    cutover(sw)
    for _ in range(3):
        assert get(ctx, sw) == (200, "green")
    r = post(sw, "/v1/commit")
    assert r.status == 200 and r.json()["committed"] and r.json()["phase"] == "final" and \
        r.json()["live"] == "green", (r, r.body)
    st = status(sw)
    w = st["watch"]
    assert st["phase"] == "final" and st["live"] == "green", st
    assert w["phase"] == "final" and w["fired"] is None and \
        w["outcome"] in ("inconclusive", "unverified"), w
    assert w["auto_left_ms"] == 0 and w["manual_left_ms"] == 0, w
    # The watch is over: errors now roll nothing back.
    fail(g, 1)
    for _ in range(MAX_CONSECUTIVE + 1):
        assert get(ctx, sw) == (500, "green")
    st = status(sw)
    assert st["phase"] == "final" and st["live"] == "green" and "rollback" not in st, st
    r = post(sw, "/v1/commit")
    assert r.status == 409 and r.json()["reason"] == "not_watching", (r, r.body)
    # A new cutover is accepted from final, and flips.
    st = cutover(sw, to="blue")
    assert st["watch"]["colour"] == "blue" and st["watch"]["phase"] == "watching", st["watch"]
    assert get(ctx, sw) == (200, "blue")
    assert rollbacks_total(metrics(sw)) == 0


@timeout(60)
def test_rollback_checks_blue_schema(ctx):
    """A rollback goes only into a blue whose schema requirements still
    pass, on evidence of this cutover: blue is verified at the re-check
    before the flip (so a trigger right after the flip has its answer) and
    every verify_interval during the window (so a later migration that
    broke blue blocks the rollback, with the reason)."""
    pg = ctx.postgres()
    b = ctx.upstream("blue")
    g = ctx.upstream("green")
    port = ctx.port()
    extra = ("database\n    dsn \"%s\"\n    connect_timeout 2s\n\n"
             "cutover\n    gate_timeout 10s\n    drain_timeout 5s\n\n" % pg.dsn) + \
        watch_section(auto_window="20s", manual_window="30s", verify_interval="200ms")
    conf = make_config([port], [b], [g], raw_extra=extra,
                       blue_opts={"require_column": "unified_db_personlink url"})
    sw = ctx.switchd(conf=conf, port=port)

    # 1. Blue's schema is fine: a trigger at once after the flip rolls back
    # in the turn of the fifth error.
    cutover(sw)
    fail(g, 1)
    for i in range(MAX_CONSECUTIVE):
        assert get(ctx, sw) == (500, "green"), i
    assert get(ctx, sw) == (200, "blue")
    st = status(sw)
    assert st["phase"] == "rolled_back" and st["rollback"]["outcome"] == "rolled_back", st
    assert st["colours"]["blue"]["verify"]["status"] == "pass", st["colours"]["blue"]

    # 2. A migration blue cannot survive runs after the next flip: the
    # re-check during the window sees it and the rollback is blocked.
    wait_for(lambda: "drain" not in status(sw), 5 * SLOW, what="green drained")
    fail(g, 0)
    cutover(sw)
    pg.sql("ALTER TABLE unified_db_personlink RENAME COLUMN url TO link")
    wait_for(lambda: status(sw)["colours"]["blue"]["verify"]["status"] == "fail",
             5 * SLOW, what="blue's re-check to fail")
    fail(g, 1)
    for i in range(MAX_CONSECUTIVE):
        assert get(ctx, sw) == (500, "green"), i
    st = status(sw)
    assert st["phase"] == "rollback_blocked" and st["live"] == "green", st
    rb = st["rollback"]
    assert rb["outcome"] == "blocked" and rb["trigger"] == "r3", rb
    assert "missing column unified_db_personlink.url" in rb["message"], rb
    assert get(ctx, sw)[1] == "green"
    r = post(sw, "/v1/rollback")
    assert r.status == 409 and r.json()["reason"] == "not_ready" and \
        "unified_db_personlink.url" in r.json()["message"], (r, r.body)

    # 3. The column is back: the next re-check passes and the operator's
    # rollback goes through.
    pg.sql("ALTER TABLE unified_db_personlink RENAME COLUMN link TO url")
    wait_for(lambda: status(sw)["colours"]["blue"]["verify"]["status"] == "pass",
             5 * SLOW, what="blue's re-check to pass")
    r = post(sw, "/v1/rollback")
    assert r.status == 200 and r.json()["live"] == "blue", (r, r.body)
    assert get(ctx, sw) == (200, "blue")
