"""Blue-green cutovers end to end: real switchd, real upstreams, real
switchctl and (for schema verification) a real PostgreSQL on 127.0.0.1.

- Zero failed requests across a cutover under keep-alive load, every request
  after the flip at green, slow requests in flight on blue drained with 200.
- The gate refuses (switchctl's exit code and the reason printed, traffic
  untouched on blue): green unhealthy, green never reaching rise, a missing
  migration, a missing column, PostgreSQL stopped, the live colour unhealthy.
- The drain deadline cancels and counts what is left on the old colour.
- Restart after kill -9 resumes the recorded live colour; a corrupt state
  file stops startup naming the file.

Health checks run fast (interval 100 ms, timeout 80 ms, rise 2) against the
upstreams' /health, whose answer /control/health/CODE changes at runtime;
the upstreams' /log tells probes ("health": true) from traffic.
"""

import http.client
import json
import os
import re
import signal
import subprocess
import threading
import time

from harness import (health_opts, set_health, traffic, SLOW, Client, admin_request, admin_status, make_config,
                     port_accepts, switchctl, switchctl_binary, timeout,
                     wait_for)

RISE = 2


def hopts(**over):
    return health_opts(RISE, **over)


def sections(cutover=None, database=None):
    """The cutover and database sections as config text."""
    out = []
    for name, opts in (("cutover", cutover), ("database", database)):
        if opts:
            out.append(name)
            for k, v in opts.items():
                out.append("    %s %s" % (k, v))
            out.append("")
    return "\n".join(out)


def start(ctx, blue_opts=None, green_opts=None, cutover=None, database=None,
          blue_args=(), green_args=(), port=None, name="switchd", watch=None):
    b = ctx.upstream("blue", *blue_args)
    g = ctx.upstream("green", *green_args)
    cut = {"gate_timeout": "10s", "drain_timeout": "10s"}
    cut.update(cutover or {})
    sw = ctx.switchd([b], [g], port=port, name=name,
                     blue_opts=hopts(**(blue_opts or {})),
                     green_opts=hopts(**(green_opts or {})),
                     raw_extra=sections(cut, database) + (
                         "\nwatch\n" + "".join("    %s %s\n" % kv for kv in watch.items())
                         if watch else ""))
    return sw, b, g


def wait_colours_up(sw, colours=("blue", "green"), timeout_s=5.0):
    def up():
        st = admin_status(sw.admin_socket)
        return all(st["colours"][c]["healthy"] for c in colours)
    wait_for(up, timeout_s * SLOW, what="%s healthy in status" % "+".join(colours))


def metric(sw, name, labels=""):
    """The value of one sample of /metrics (labels as written, e.g.
    '{colour="blue"}')."""
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


def event(st, reason):
    for e in st["history"]:
        if e["reason"] == reason:
            return e
    raise AssertionError("no %r transition in the history: %r" % (reason, st["history"]))


class Load:
    """A bounded load generator: `threads` keep-alive connections
    (http.client) sending GET /load/T/I as fast as they get answers, until
    stop() or `max_seconds`. Every request is recorded: send and receive
    time, status, X-Upstream, or the exception (a socket error)."""

    def __init__(self, port, threads=6, max_seconds=30.0, prefix="/load"):
        self.port = port
        self.prefix = prefix
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
            path = "%s/%d/%d" % (self.prefix, tid, i)
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
            except Exception as e:  # noqa: every failure is counted, none retried
                self.errors[tid].append((t_send, time.time(), path, repr(e)))
                if conn is not None:
                    conn.close()
                conn = None
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

    def failures(self):
        bad = [r for r in self.all if not 200 <= r[3] < 300]
        return bad, self.all_errors

    def assert_no_failures(self):
        bad, errs = self.failures()
        assert not bad and not errs, (
            "%d of %d requests failed: %d non-2xx (first %r), %d socket errors "
            "(first %r)" % (len(bad) + len(errs), len(self.all) + len(errs), len(bad),
                            bad[:3], len(errs), errs[:3]))


class Slow(threading.Thread):
    """One request on its own connection (a raw Client), in a thread."""

    def __init__(self, port, path, read_timeout=20.0):
        super().__init__(daemon=True)
        self.port = port
        self.path = path
        self.read_timeout = read_timeout
        self.resp = None
        self.error = None
        self.eof = False
        self.t_send = self.t_end = None
        self.start()

    def run(self):
        c = Client(self.port, timeout=self.read_timeout)
        self.t_send = time.time()
        try:
            c.send(b"GET %s HTTP/1.1\r\nHost: slow.test\r\n\r\n" % self.path.encode())
            self.resp = c.read_response(timeout=self.read_timeout)
        except Exception as e:  # noqa: recorded for the test to judge
            self.error = e
            self.eof = c.eof
        finally:
            self.t_end = time.time()
            c.close()

    def result(self, timeout_s):
        self.join(timeout_s)
        assert not self.is_alive(), "request %s still running after %.1fs" % (
            self.path, timeout_s)
        return self


def wait_upstream_has(u, target, n=1, timeout_s=5.0):
    """Waits until upstream u has received `n` requests for `target`."""
    def seen():
        return len([e for e in u.log() if e["target"] == target]) >= n
    wait_for(seen, timeout_s * SLOW, what="%d x %s at %s" % (n, target, u.name))


# -- zero failed requests across a cutover under load --------------------------

@timeout(60)
def test_cutover_under_load_zero_failures(ctx):
    # The Python upstreams are saturated by the load: probes get a timeout
    # they can meet (a missed probe takes blue down, and rightly so).
    slow_checks = {"health_interval": "250ms", "health_timeout": "200ms"}
    # The saturated Python upstreams can miss probes: a green that misses
    # `fall` of them in a row is down, and the watch's R4 would (rightly)
    # roll back. This test is about the cutover's failed requests, so R4 is
    # off here; test_watch.py covers R4.
    sw, b, g = start(ctx, cutover={"drain_timeout": "20s"}, blue_opts=slow_checks,
                     green_opts=slow_checks, watch={"health_trigger": "off"})
    wait_colours_up(sw)
    load = Load(sw.port, threads=6)
    try:
        time.sleep(1.0)
        # Slow requests that will be in flight on blue at the flip.
        slows = [Slow(sw.port, "/delay/3000?n=%d" % i) for i in range(3)]
        wait_upstream_has(b, "/delay/3000?n=2")
        for i in range(2):
            wait_upstream_has(b, "/delay/3000?n=%d" % i)
        ctl = switchctl(["cutover", "--to", "green", "--wait", "--timeout", "30s"],
                        sock=sw.admin_socket, timeout=40)
        t_done = time.time()
        # Load goes on after the cutover ended; all of it must reach green.
        time.sleep(1.5)
    finally:
        load.stop()
    assert ctl.rc == 0, "switchctl cutover --wait: %r" % ctl
    load.assert_no_failures()

    # With the error watch on (the default) the flip enters `watching`; the
    # drain of blue runs alongside and ends as watching -> watching.
    st = admin_status(sw.admin_socket)
    assert st["live"] == "green" and st["phase"] == "watching", st
    assert st["watch"]["phase"] == "watching" and st["watch"]["colour"] == "green", st["watch"]
    flip = event(st, "flipped")["time_ms"] / 1000.0
    drained = event(st, "drained")["time_ms"] / 1000.0
    assert st["last_gate"]["outcome"] == "passed", st["last_gate"]
    assert st["last_drain"]["reason"] == "drained" and \
        st["last_drain"]["cancelled"] == 0, st["last_drain"]
    # The drain waited for the slow requests (about 3 s after they started).
    assert drained - flip > 1.0, "drained %.3fs after the flip" % (drained - flip)

    # switchctl's progress: health passes, verification, flip, drain.
    out = ctl.out
    for want in (r"health: \d+/%d passes in a row" % RISE, r"verify: pass",
                 r"gating -> rechecking", r"rechecking -> watching: live blue -> green",
                 r"drain: [1-9]\d* in flight on blue",
                 r"watching -> watching: blue drained in \d+ ms", r"^done: "):
        assert re.search(want, out, re.M), "no %r in switchctl's output:\n%s" % (want, out)

    # The slow requests: in flight on blue at the flip, completed with 200.
    for s in slows:
        s.result(10)
        assert s.error is None, "slow request %s failed: %r" % (s.path, s.error)
        assert s.resp.status == 200 and s.resp.body == b"blue\n" and \
            s.resp.header("X-Upstream") == "blue", s.resp
        assert s.t_send < flip < s.t_end, (s.t_send, flip, s.t_end)

    # Every request is counted at exactly one upstream; after the flip only
    # at green.
    margin = 0.25 * SLOW
    blog, glog = traffic(b), traffic(g)
    bpaths = [e["target"] for e in blog if e["target"].startswith("/load/")]
    gpaths = [e["target"] for e in glog if e["target"].startswith("/load/")]
    assert len(set(bpaths)) == len(bpaths) and len(set(gpaths)) == len(gpaths), \
        "a request reached an upstream twice"
    both = set(bpaths) & set(gpaths)
    assert not both, "requests served by both colours: %r" % sorted(both)[:5]
    sent = {r[2]: r for r in load.all}
    assert set(bpaths) | set(gpaths) == set(sent), \
        "upstream logs and client records differ: %d vs %d" % (
            len(set(bpaths) | set(gpaths)), len(sent))
    late_blue = [e for e in blog if e["t_head"] > flip + margin]
    assert not late_blue, "blue received %d requests after the flip: %r" % (
        len(late_blue), [(e["target"], e["t_head"] - flip) for e in late_blue[:5]])
    after = [r for r in load.all if r[0] > flip + margin]
    wrong = [r for r in after if r[4] != "green" or r[5] != b"green\n"]
    assert after and not wrong, "%d of %d requests sent after the flip not from green: %r" % (
        len(wrong), len(after), wrong[:3])
    after_done = [r for r in load.all if r[0] > t_done]
    assert len(after_done) > 50, "too little load after the cutover: %d" % len(after_done)
    before = [r for r in load.all if r[1] < flip]
    assert len(before) > 50 and all(r[4] == "blue" for r in before), \
        "requests answered before the flip: %d, not all blue" % len(before)
    print("     load: %d requests (%d before the flip, %d after), 0 failed; "
          "flip %.2fs into the load, drain %.2fs" % (
              len(load.all), len(before), len(after), flip - load.t0, drained - flip))
    # Counted by switchd too.
    assert metric(sw, "switchd_flips_total") == 1
    assert metric(sw, "switchd_live", '{colour="green"}') == 1


# -- the gate refuses ----------------------------------------------------------

def refused_cutover(ctx, sw, b, g, rc, reason, texts, outcome, load_ok=True):
    """Runs `switchctl cutover --to green --wait` under light load and checks
    that it ended with exit code rc, the gate's reason in status and every
    regex of `texts` in switchctl's output, with nothing changed: live blue,
    no flip, no client request at green, no failed request (load_ok)."""
    v0 = admin_status(sw.admin_socket)["version"]
    load = Load(sw.port, threads=2)
    try:
        ctl = switchctl(["cutover", "--to", "green", "--wait", "--timeout", "30s"],
                        sock=sw.admin_socket, timeout=40)
        time.sleep(0.3)
    finally:
        load.stop()
    assert ctl.rc == rc, "expected exit %d: %r" % (rc, ctl)
    for t in texts:
        assert re.search(t, ctl.out + ctl.err, re.M), "no %r in switchctl's output: %r" % (t, ctl)
    st = admin_status(sw.admin_socket)
    assert st["live"] == "blue" and st["phase"] == "steady", st
    assert st["version"] > v0
    lg = st["last_gate"]
    assert lg["outcome"] == outcome and lg["reason"] == reason and \
        lg["target"] == "green", lg
    assert not [e for e in st["history"] if e["reason"] == "flipped"], st["history"]
    assert metric(sw, "switchd_flips_total") == 0
    assert metric(sw, "switchd_live", '{colour="blue"}') == 1
    assert metric(sw, "switchd_gates_total", '{outcome="%s"}' % outcome) == 1
    gt = traffic(g)
    assert not gt, "green received client requests: %r" % gt[:3]
    if load_ok:
        load.assert_no_failures()
        assert len(load.all) > 10
        assert all(r[4] == "blue" for r in load.all), "a response not from blue"
    # Traffic still goes to blue afterwards.
    r = ctx.get(sw.port, "/after")
    if load_ok:
        assert r.status == 200 and r.header("X-Upstream") == "blue", r
    return ctl, st, load


@timeout(40)
def test_gate_green_unhealthy_times_out_inconclusive(ctx):
    sw, b, g = start(ctx, cutover={"gate_timeout": "2s"},
                     green_args=("--health-status", "503"))
    wait_colours_up(sw, ("blue",))
    wait_for(lambda: not admin_status(sw.admin_socket)["colours"]["green"]["healthy"],
             5 * SLOW, what="green unhealthy")
    t0 = time.time()
    ctl, st, _ = refused_cutover(
        ctx, sw, b, g, 5, "timeout",
        [r"gate deadline reached after \d+ ms: green had 0 of %d health passes" % RISE,
         r"last failure: [^)]*503", r"^inconclusive: ", r"gating -> steady"],
        "inconclusive")
    # The deadline, not earlier and not much later; a timeout is never a pass.
    assert 1.8 <= time.time() - t0 <= 2 + 6 * SLOW, time.time() - t0


@timeout(40)
def test_gate_green_never_reaches_rise(ctx):
    # Green passes every check, but the gate wants 50 in a row at 100 ms
    # intervals and ends after 2 s: passes seen, never enough.
    sw, b, g = start(ctx, cutover={"gate_timeout": "2s"},
                     green_opts={"health_rise": 50})
    wait_colours_up(sw)
    ctl, st, _ = refused_cutover(
        ctx, sw, b, g, 5, "timeout",
        [r"green had \d+ of 50 health passes", r"verification passed",
         r"^inconclusive: "],
        "inconclusive")
    m = re.search(r"green had (\d+) of 50 health passes", st["last_gate"]["message"])
    assert m and 1 <= int(m.group(1)) < 50, st["last_gate"]
    assert re.search(r"health: [1-9]\d*/50 passes in a row", ctl.out), ctl


@timeout(40)
def test_gate_missing_migration_fails(ctx):
    pg = ctx.postgres()
    sw, b, g = start(
        ctx, database={"dsn": '"%s"' % pg.dsn, "connect_timeout": "2s"},
        green_opts={"require_migration": "unified_db 0002_personlink\n"
                    "    require_migration unified_db 0003_add_nickname"})
    wait_colours_up(sw)
    ctl, st, _ = refused_cutover(
        ctx, sw, b, g, 4, "verify_failed",
        [r"missing migration unified_db\.0003_add_nickname", r"^failed: "], "failed")
    msg = st["last_gate"]["message"]
    assert "unified_db.0003_add_nickname" in msg and "0002_personlink" not in msg, msg
    assert st["colours"]["green"]["verify"]["status"] == "fail", st["colours"]["green"]
    # Once the migration is applied the same cutover goes through.
    pg.sql("INSERT INTO django_migrations (app, name) "
           "VALUES ('unified_db', '0003_add_nickname')")
    ok = switchctl(["cutover", "--to", "green", "--wait", "--timeout", "20s"],
                   sock=sw.admin_socket, timeout=30)
    assert ok.rc == 0 and "verify: pass" in ok.out, ok
    assert ctx.get(sw.port, "/").header("X-Upstream") == "green"


@timeout(40)
def test_gate_missing_column_fails(ctx):
    pg = ctx.postgres()
    sw, b, g = start(
        ctx, database={"dsn": '"%s"' % pg.dsn, "connect_timeout": "2s"},
        green_opts={"require_column": "unified_db_personlink url\n"
                    "    require_column unified_db_personlink nickname"})
    wait_colours_up(sw)
    ctl, st, _ = refused_cutover(
        ctx, sw, b, g, 4, "verify_failed",
        [r"missing column unified_db_personlink\.nickname", r"^failed: "], "failed")
    msg = st["last_gate"]["message"]
    assert "unified_db_personlink.nickname" in msg and ".url" not in msg, msg


@timeout(40)
def test_gate_postgres_stopped_inconclusive(ctx):
    pg = ctx.postgres()
    sw, b, g = start(
        ctx, database={"dsn": '"%s"' % pg.dsn, "connect_timeout": "2s"},
        green_opts={"require_migration": "unified_db 0002_personlink",
                    "require_column": "unified_db_personlink url"})
    wait_colours_up(sw)
    # With the database up, green's requirements are met.
    chk = switchctl(["check", "green"], sock=sw.admin_socket)
    assert chk.rc == 0 and "2 requirements met" in chk.out, chk
    pg.stop()
    ctl, st, _ = refused_cutover(
        ctx, sw, b, g, 5, "verify_inconclusive",
        [r"^inconclusive: green verification inconclusive: could not connect"],
        "inconclusive")
    msg = st["last_gate"]["message"]
    assert re.search(r"(?i)connection refused|could not connect|server", msg), msg
    assert st["colours"]["green"]["verify"]["status"] == "inconclusive"


@timeout(40)
def test_gate_live_unhealthy(ctx):
    sw, b, g = start(ctx, green_opts={"health_rise": 50},
                     cutover={"gate_timeout": "20s"})
    wait_colours_up(sw)
    # 1. Blue (live) already down when the cutover is asked for: the gate
    # ends at once. Blue has no server up, so switchd itself answers 503
    # meanwhile (nothing else to send traffic to); none may reach green.
    set_health(b, 503)
    wait_for(lambda: not admin_status(sw.admin_socket)["colours"]["blue"]["healthy"],
             5 * SLOW, what="blue unhealthy")
    t0 = time.time()
    ctl, st, load = refused_cutover(
        ctx, sw, b, g, 4, "live_unhealthy",
        [r"live blue is unhealthy", r"^failed: "], "failed", load_ok=False)
    assert time.time() - t0 < 3 * SLOW, "the gate did not end at once"
    bad, errs = load.failures()
    assert not errs, "socket errors: %r" % errs[:3]
    assert all(r[3] == 503 and r[4] is None for r in bad), \
        "responses other than switchd's own 503: %r" % [r for r in bad if r[3] != 503][:3]
    # 2. Blue healthy again; it goes down during the gate (green needs 50
    # passes, so the gate is still waiting): the gate ends, failed.
    set_health(b, 200)
    wait_colours_up(sw, ("blue",))
    assert ctx.get(sw.port, "/").header("X-Upstream") == "blue"
    p = subprocess.Popen(
        [switchctl_binary(), "-s", sw.admin_socket,
         "cutover", "--to", "green", "--wait", "--timeout", "30s"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    try:
        wait_for(lambda: admin_status(sw.admin_socket)["phase"] == "gating", 5 * SLOW,
                 what="gating")
        set_health(b, 503)
        out, err = p.communicate(timeout=15 * SLOW)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(5)
    out = out.decode()
    assert p.returncode == 4, "exit %s: %s %s" % (p.returncode, out, err)
    assert re.search(r"^failed: live blue became unhealthy", out, re.M), out
    st = admin_status(sw.admin_socket)
    assert st["live"] == "blue" and st["last_gate"]["reason"] == "live_unhealthy", st
    assert not traffic(g), "green received client requests"


# -- drain timeout ---------------------------------------------------------------

@timeout(40)
def test_drain_timeout_cancels_and_counts(ctx):
    # The watch off: the flip's phase is `draining`, then `steady`.
    sw, b, g = start(ctx, cutover={"drain_timeout": "1s"}, watch={"enabled": "off"})
    wait_colours_up(sw)
    slow = Slow(sw.port, "/delay/5000")
    wait_upstream_has(b, "/delay/5000")
    ctl = switchctl(["cutover", "--to", "green", "--wait", "--timeout", "20s"],
                    sock=sw.admin_socket, timeout=30)
    assert ctl.rc == 0, ctl
    assert re.search(r"blue drain timed out after \d+ ms: 1 request cancelled", ctl.out), ctl
    slow.result(10)
    st = admin_status(sw.admin_socket)
    flip = event(st, "flipped")["time_ms"] / 1000.0
    # Cancelled at the deadline (1 s after the flip), not after 5 s.
    assert slow.t_end - flip < 1 + 2 * SLOW and slow.t_end - slow.t_send < 4.5, \
        (slow.t_end - flip, slow.t_end - slow.t_send)
    if slow.error is None:
        assert slow.resp.status == 503, "the cancelled request got %r" % slow.resp
    else:
        assert slow.eof, "cancelled request: %r" % slow.error
    ld = st["last_drain"]
    assert ld["reason"] == "drain_timeout" and ld["cancelled"] == 1 and \
        ld["colour"] == "blue", ld
    assert st["live"] == "green" and st["phase"] == "steady", st
    assert metric(sw, "switchd_drain_cancelled_total") == 1
    assert "drain timeout: cancelling GET /delay/5000" in sw.stderr_text()
    r = ctx.get(sw.port, "/after")
    assert r.status == 200 and r.header("X-Upstream") == "green", r


# -- restart -----------------------------------------------------------------------

def kill9(sw):
    sw.proc.send_signal(signal.SIGKILL)
    sw.proc.wait(5)
    sw.stopped = True
    sw.exit_status = sw.proc.returncode


@timeout(50)
def test_restart_keeps_green_live(ctx):
    state = ctx.path("state.json")
    sw, b, g = start(ctx, cutover={"state_file": state})
    wait_colours_up(sw)
    ctl = switchctl(["cutover", "--to", "green", "--wait", "--timeout", "20s"],
                    sock=sw.admin_socket, timeout=30)
    assert ctl.rc == 0, ctl
    v = admin_status(sw.admin_socket)["version"]
    with open(state) as f:
        saved = json.load(f)
    assert saved["live"] == "green" and saved["phase"] == "watching", saved
    assert saved["watch"]["colour"] == "green", saved
    assert oct(os.stat(state).st_mode & 0o777) == oct(0o600)
    kill9(sw)
    # The same config (it says live blue), the same port.
    conf = open(sw.conf_path).read()
    assert re.search(r"^\s*live blue$", conf, re.M)
    sw2 = ctx.switchd(conf=conf, port=sw.port, name="switchd2")
    sw2.admin_socket = sw.admin_socket  # the same config file names it
    # The watch resumes where it was (the default windows have minutes left).
    st = admin_status(sw2.admin_socket)
    assert st["live"] == "green" and st["phase"] == "watching", st
    assert st["watch"]["phase"] == "watching" and \
        0 < st["watch"]["auto_left_ms"] < 300000, st["watch"]
    assert st["version"] >= v, (st["version"], v)
    assert "restored from %s: live green" % state in sw2.stderr_text()
    n0 = len(traffic(g))
    for i in range(10):
        r = ctx.get(sw2.port, "/r/%d" % i)
        assert r.status == 200 and r.header("X-Upstream") == "green", r
    assert len(traffic(g)) == n0 + 10
    assert not [e for e in traffic(b) if e["target"].startswith("/r/")]
    out = switchctl(["status"], sock=sw2.admin_socket)
    assert out.rc == 0 and out.out.startswith("live green, phase watching"), out


@timeout(50)
def test_restart_mid_gate_is_inconclusive(ctx):
    state = ctx.path("state.json")
    sw, b, g = start(ctx, cutover={"state_file": state, "gate_timeout": "30s"},
                     green_opts={"health_rise": 50})
    wait_colours_up(sw)
    r = switchctl(["cutover", "--to", "green"], sock=sw.admin_socket)
    assert r.rc == 0, r
    wait_for(lambda: json.load(open(state))["phase"] == "gating", 3 * SLOW,
             what="gating in the state file")
    kill9(sw)
    sw2 = ctx.switchd(conf=open(sw.conf_path).read(), port=sw.port, name="switchd2")
    sw2.admin_socket = sw.admin_socket
    st = admin_status(sw2.admin_socket)
    assert st["live"] == "blue" and st["phase"] == "steady", st
    assert st["last_gate"]["outcome"] == "inconclusive" and \
        st["last_gate"]["reason"] == "restart", st["last_gate"]
    assert ctx.get(sw2.port, "/").header("X-Upstream") == "blue"
    assert json.load(open(state))["phase"] == "steady"


@timeout(40)
def test_corrupt_state_file_stops_startup(ctx):
    b = ctx.upstream("blue")
    g = ctx.upstream("green")
    state = ctx.path("state.json")
    for i, text in enumerate(('{"format": 1, "live": "gre',
                              '{"format": 1, "live": "purple", "phase": "steady", '
                              '"flip_time_ms": 0, "version": 3, "history": []}',
                              '{"format": 1, "live": "green", "phase": "sideways", '
                              '"flip_time_ms": 0, "version": 3, "history": []}')):
        with open(state, "w") as f:
            f.write(text)
        port = ctx.port()
        conf = make_config([port], [b], [g], raw_extra=sections(
            {"state_file": state}))
        sw = ctx.switchd(conf=conf, port=None, name="corrupt%d" % i)
        rc = sw.wait_exit(10 * SLOW)
        sw.stopped = True
        sw.exit_status = rc
        assert rc == 1, "switchd with a corrupt state file (%r): exit %r\n%s" % (
            text, rc, sw.stderr_text())
        err = sw.stderr_text()
        assert state in err and "corrupt" in err, "stderr does not name %s: %r" % (state, err)
        assert not port_accepts(port)
        assert open(state).read() == text, "the corrupt file was changed"
