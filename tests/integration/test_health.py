"""Active health checks as routing sees them: a server whose checks fail gets
no requests, it comes back after `rise` passes, no usable server is 503,
redirects are failures and never followed, health_host is the probes' Host,
servers start up at startup, a reload keeps each kept server's state, a
server added by a reload waits for `rise` passes, and `health off` sends no
probe at all.

The upstreams' /health answers what --health-status or /control/health/CODE
says; their /log marks probes with "health": true, so every test can tell
probes from client traffic.
"""

import json
import re
import threading
import time

from harness import (SLOW, Client, assert_proxy_error, make_config, timeout,
                     wait_for)

RISE = 2
FALL = 2


def hopts(**over):
    """The health directives of an upstream section: fast checks of /health."""
    o = {"health": "on", "health_path": "/health", "health_interval": "100ms",
         "health_timeout": "50ms", "health_rise": RISE, "health_fall": FALL}
    o.update(over)
    return o


def set_health(u, code):
    """Makes upstream u's /health answer `code` from now on."""
    c = Client(u.port, timeout=5)
    try:
        c.send(b"GET /control/health/%d HTTP/1.1\r\nHost: control\r\n"
               b"Connection: close\r\n\r\n" % code)
        r = c.read_response(timeout=5)
    finally:
        c.close()
    assert r.status == 200 and json.loads(r.body) == {"health_status": code}, r


def probes(u, log=None):
    return [e for e in (u.log() if log is None else log) if e.get("health")]


def traffic(u, log=None):
    return [e for e in (u.log() if log is None else log) if not e.get("health")]


def down_line(u, colour="blue"):
    return "%s (%s) is down: " % (u.addr, colour)


def up_line(u, colour="blue"):
    return "%s (%s) is up after " % (u.addr, colour)


def wait_log(sw, text, timeout_s=5.0, start=0):
    """Waits for `text` in switchd's error log after offset `start`; returns
    the line that holds it."""
    def found():
        t = sw.stderr_text()[start:]
        i = t.find(text)
        if i < 0:
            return None
        j = t.find("\n", i)
        k = t.rfind("\n", 0, i) + 1
        return t[k:j if j >= 0 else len(t)]
    return wait_for(found, timeout_s * SLOW, interval=0.02,
                    what="%r in the error log" % text)


def names(resps):
    out = {}
    for r in resps:
        out[r.body] = out.get(r.body, 0) + 1
    return out


def test_failing_server_gets_no_traffic(ctx):
    a = ctx.upstream("a")
    b = ctx.upstream("b", "--health-status", "503")
    sw = ctx.switchd([a, b], blue_opts=hopts())
    line = wait_log(sw, down_line(b))
    assert re.search(r" warn \[health\] %s \(blue\) is down: status 503$"
                     % re.escape(b.addr), line), line
    assert down_line(a) not in sw.stderr_text(), "A was taken down too"
    b_before = len(traffic(b))
    a_before = len(traffic(a))
    resps = []
    c = ctx.client(sw.port)
    for i in range(25):  # one keep-alive connection
        resps.append(c.request("GET", "/n/%d" % i))
    for i in range(25, 50):  # and a fresh connection each
        resps.append(ctx.get(sw.port, "/n/%d" % i))
    bad = [r for r in resps if r.status != 200 or r.body != b"a\n"]
    assert not bad, "%d of 50 responses not 200 from A: %r" % (len(bad), bad[:3])
    blog = b.log()
    assert len(traffic(b, blog)) == b_before == 0, \
        "B (down) received client requests: %r" % traffic(b, blog)
    paths = [e["path"] for e in traffic(a)[a_before:]]
    assert paths == ["/n/%d" % i for i in range(50)], paths
    # B is still being checked (so that it can come back), and fails.
    ps = probes(b, blog)
    assert len(ps) >= FALL and all(e["status"] == 503 for e in ps), ps
    assert down_line(b) in sw.stderr_text() and \
        sw.stderr_text().count(down_line(b)) == 1, "B's down logged more than once"


def test_recovered_server_gets_traffic_after_rise(ctx):
    a = ctx.upstream("a")
    b = ctx.upstream("b", "--health-status", "503")
    sw = ctx.switchd([a, b], blue_opts=hopts())
    wait_log(sw, down_line(b))
    mark = len(sw.stderr_text())
    t_fixed = time.time()
    set_health(b, 200)
    # Requests go on while B rises: until it is up, all must go to A.
    c = ctx.client(sw.port)
    deadline = time.time() + 5 * SLOW
    while True:
        r = c.request("GET", "/rising")
        assert r.status == 200, r
        if r.body == b"b\n":
            break
        assert r.body == b"a\n", r
        assert time.time() < deadline, "B never received traffic after recovering"
        time.sleep(0.01)
    line = wait_log(sw, up_line(b), start=mark)
    assert line.endswith("is up after %d passes" % RISE), line
    blog = b.log()
    first = traffic(b, blog)[0]
    # Every probe before the fix answered 503, so the 200s are passes after it.
    assert all(e["status"] == 503 for e in probes(b, blog) if e["t_done"] < t_fixed)
    passed = [e for e in probes(b, blog)
              if e["status"] == 200 and e["t_done"] <= first["t_head"]]
    assert len(passed) >= RISE, (
        "B got traffic after %d passing probes (rise %d): probes %r"
        % (len(passed), RISE, [(e["t_head"], e["status"]) for e in probes(b, blog)]))
    # Both up: round robin alternates.
    got = names(c.request("GET", "/rr") for _ in range(10))
    assert got == {b"a\n": 5, b"b\n": 5}, got


def test_all_down_is_503_then_recovers(ctx):
    a = ctx.upstream("a")
    b = ctx.upstream("b")
    sw = ctx.switchd([a, b], blue_opts=hopts())
    c = ctx.client(sw.port)
    assert c.request("GET", "/").status == 200
    set_health(a, 500)
    set_health(b, 503)
    wait_log(sw, down_line(a))
    wait_log(sw, down_line(b))
    a_before, b_before = len(traffic(a)), len(traffic(b))
    for i in range(5):
        r = c.request("GET", "/none/%d" % i)
        assert_proxy_error(r, 503, close=False)
        r = ctx.get(sw.port, "/fresh/%d" % i)
        assert_proxy_error(r, 503, close=False)
    assert len(traffic(a)) == a_before and len(traffic(b)) == b_before, \
        "a down server received a request: %r %r" % (traffic(a)[a_before:],
                                                    traffic(b)[b_before:])
    mark = len(sw.stderr_text())
    set_health(b, 200)
    wait_log(sw, up_line(b), start=mark)
    # The connection that saw the 503s carries on.
    for i in range(6):
        r = c.request("GET", "/back/%d" % i)
        assert r.status == 200 and r.body == b"b\n", r
    assert len(traffic(a)) == a_before, "A (still down) received a request"


def test_redirect_is_down_and_never_followed(ctx):
    a = ctx.upstream("a")
    target = ctx.upstream("target")
    b = ctx.upstream("b", "--health-status", "302", "--health-location",
                     "http://127.0.0.1:%d/health" % target.port)
    b2 = ctx.upstream("b2", "--health-status", "301")  # Location: /health-moved
    sw = ctx.switchd([a, b, b2], blue_opts=hopts())
    line = wait_log(sw, down_line(b))
    assert line.endswith("status 302 (redirects are not followed)"), line
    line = wait_log(sw, down_line(b2))
    assert line.endswith("status 301 (redirects are not followed)"), line
    for i in range(12):
        r = ctx.get(sw.port, "/r/%d" % i)
        assert r.status == 200 and r.body == b"a\n", r
    time.sleep(0.3)  # a few more probes
    for u, code in ((b, 302), (b2, 301)):
        log = u.log()
        assert not traffic(u, log), "%s: followed or routed to: %r" % (u.name, traffic(u, log))
        ps = probes(u, log)
        assert len(ps) >= FALL + 2 and all(e["status"] == code for e in ps), ps
    assert target.log() == [], "the Location was followed: %r" % target.log()
    st = target.stats()  # "connections" leaves out our own control requests
    assert st["connections"] == 0 and st["health_connections"] == 0, st


def test_health_host_is_probe_host(ctx):
    b = ctx.upstream("b")
    g = ctx.upstream("g")
    sw = ctx.switchd([b], [g], blue_opts=hopts(health_host="app.example"),
                     green_opts=hopts(health_path="/health?x=1"))
    wait_for(lambda: len(probes(b)) >= 3 and len(probes(g)) >= 3, 5 * SLOW,
             what="probes of both colours")
    for e in probes(b):
        hs = e["headers"]
        hosts = [v for n, v in hs if n.lower() == "host"]
        assert hosts == ["app.example"], hs
        assert e["method"] == "GET" and e["target"] == "/health" and \
            e["version"] == "HTTP/1.1", e
        assert ["User-Agent", "switchd-health"] in hs and ["Connection", "close"] in hs, hs
    # Without health_host, the Host is the server's address; the green
    # (not live) colour is checked too, with its own path.
    for e in probes(g):
        hosts = [v for n, v in e["headers"] if n.lower() == "host"]
        assert hosts == [g.addr], e["headers"]
        assert e["target"] == "/health?x=1", e
    # Client requests keep their own Host.
    r = ctx.get(sw.port, "/echo", host="client.example")
    hosts = [v for n, v in r.json()["headers"] if n.lower() == "host"]
    assert hosts == ["client.example"], r.json()["headers"]


def test_startup_servers_start_up(ctx):
    a = ctx.upstream("a")
    b = ctx.upstream("b")
    # A long interval and rise 3: no probe can have passed `rise` before the
    # first request, which the harness sends as soon as the port accepts.
    port = ctx.port()
    conf = make_config([port], [a, b], blue_opts=hopts(
        health_interval="10s", health_timeout="1s", health_rise=3))
    sw = ctx.switchd(conf=conf, port=port)
    c = ctx.client(sw.port)
    r1 = c.request("GET", "/first")
    r2 = ctx.get(sw.port, "/second")
    assert r1.status == 200 and r1.body in (b"a\n", b"b\n"), r1
    assert r2.status == 200 and r2.body in (b"a\n", b"b\n") and r2.body != r1.body, \
        "both servers are usable from the start: %r %r" % (r1, r2)
    for u in (a, b):
        assert len(probes(u)) <= 1, "more probes than expected: %r" % probes(u)
    assert "is up after" not in sw.stderr_text()


class Hammer:
    """Sends requests in a loop on a keep-alive connection (and a fresh
    connection every few) until stopped; records every response."""

    def __init__(self, ctx, port):
        self.ctx = ctx
        self.port = port
        self.results = []  # (t_sent, status, body)
        self.error = None
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self):
        try:
            c = Client(self.port, timeout=5)
            i = 0
            while not self._stop.is_set():
                t = time.time()
                if i % 5 == 4:
                    f = Client(self.port, timeout=5)
                    try:
                        r = f.request("GET", "/h/%d" % i)
                    finally:
                        f.close()
                else:
                    r = c.request("GET", "/h/%d" % i)
                self.results.append((t, r.status, r.body))
                i += 1
                time.sleep(0.005)
            c.close()
        except BaseException as e:  # noqa
            self.error = e

    def stop(self):
        self._stop.set()
        self._t.join(10)
        assert not self._t.is_alive(), "the request loop hung"
        if self.error is not None:
            raise self.error
        return self.results


@timeout(40)
def test_reload_keeps_health_states(ctx):
    a = ctx.upstream("a")
    b = ctx.upstream("b", "--health-status", "503")
    c3 = ctx.upstream("c")
    port = ctx.port()

    def conf(shutdown="5s"):
        return make_config([port], [a, b, c3], blue_opts=hopts(),
                           global_={"shutdown_timeout": shutdown})

    sw = ctx.switchd(conf=conf(), port=port)
    wait_log(sw, down_line(b))
    b_before = len(traffic(b))
    h = Hammer(ctx, port)
    time.sleep(0.3)
    sw.reload()  # the same file
    time.sleep(0.3)
    sw.reload(conf(shutdown="6s"))  # an unrelated directive changed
    time.sleep(0.5)
    res = h.stop()
    assert len(res) > 30, "too few requests: %d" % len(res)
    bad = [x for x in res if x[1] != 200 or x[2] not in (b"a\n", b"c\n")]
    assert not bad, "%d of %d requests failed or went to B across the reloads: %r" % (
        len(bad), len(res), bad[:5])
    got = {body: sum(1 for x in res if x[2] == body) for body in (b"a\n", b"c\n")}
    assert got[b"a\n"] and got[b"c\n"], got
    blog = b.log()
    assert len(traffic(b, blog)) == b_before == 0, traffic(b, blog)
    err = sw.stderr_text()
    assert up_line(b) not in err, "B came up though its checks fail"
    assert err.count(down_line(b)) == 1, "B's state changed across the reloads"
    assert down_line(a) not in err and down_line(c3) not in err, \
        "a healthy server was taken down by a reload"
    # B is still checked after the reloads: probes keep arriving.
    n = len(probes(b, blog))
    wait_for(lambda: len(probes(b)) >= n + 2, 3 * SLOW, what="probes of B after reload")
    # And a fixed B still rises (its checker was not lost in the reload).
    set_health(b, 200)
    wait_log(sw, up_line(b))
    got = names(ctx.get(port, "/after") for _ in range(6))
    assert got.get(b"b\n"), got


@timeout(40)
def test_reload_added_server_waits_for_rise(ctx):
    rise = 3
    a = ctx.upstream("a")
    b = ctx.upstream("b")  # healthy, added by the reload
    bad = ctx.upstream("bad", "--health-status", "503")  # unhealthy, added too
    port = ctx.port()
    # 200 ms between probes: rise 3 leaves a window of 400 ms or more after
    # the reload in which B must get nothing.
    ho = hopts(health_rise=rise, health_interval="200ms", health_timeout="100ms")
    sw = ctx.switchd(conf=make_config([port], [a], blue_opts=ho), port=port)
    h = Hammer(ctx, port)
    time.sleep(0.3)
    mark = len(sw.stderr_text())
    t_reload = time.time()
    sw.reload(make_config([port], [a, b, bad], blue_opts=ho), settle=0)
    line = wait_log(sw, up_line(b), start=mark)
    assert line.endswith("is up after %d passes" % rise), line
    wait_for(lambda: traffic(b), 3 * SLOW, what="traffic to B after it rose")
    time.sleep(0.3)
    res = h.stop()
    failed = [x for x in res if x[1] != 200]
    assert not failed, failed[:5]
    blog = b.log()
    first = traffic(b, blog)[0]
    passed = [e for e in probes(b, blog) if e["status"] == 200 and
              e["t_done"] is not None and e["t_done"] <= first["t_head"]]
    assert len(passed) >= rise, (
        "B got traffic after only %d passing probes (rise %d): probes %r, first "
        "request at %r" % (len(passed), rise,
                           [(e["t_head"], e["t_done"]) for e in probes(b, blog)],
                           first["t_head"]))
    # Requests answered between the reload and B's rise went to A: the window
    # is real, not empty.
    early = [x for x in res if t_reload < x[0] < first["t_head"] - 0.1]
    assert early and all(x[2] == b"a\n" for x in early), early[:5]
    assert not traffic(bad), "the unhealthy added server received %r" % traffic(bad)
    assert up_line(bad) not in sw.stderr_text()


def test_health_off_sends_no_probes(ctx):
    b = ctx.upstream("b", "--health-status", "503")
    g = ctx.upstream("g")
    # Blue: every health directive set but `health off`; green: on, so the
    # checks of the process are running.
    sw = ctx.switchd([b], [g], blue_opts=hopts(health="off"), green_opts=hopts())
    wait_for(lambda: len(probes(g)) >= 5, 5 * SLOW, what="probes of green")
    time.sleep(0.3)
    assert probes(b) == [], "probes reached a server with health off: %r" % probes(b)
    st = b.stats()
    assert st["health"] == 0 and st["health_connections"] == 0, st
    assert st["connections"] == 0, "connections to B with no client request: %r" % st
    # Its /health fails, but with checks off the server is used.
    for i in range(3):
        r = ctx.get(sw.port, "/off/%d" % i)
        assert r.status == 200 and r.body == b"b\n", r
    assert "[health]" not in "\n".join(
        ln for ln in sw.stderr_text().splitlines() if b.addr in ln)
    # The default written by the harness (`health off`, nothing else) too.
    b2 = ctx.upstream("b2")
    sw2 = ctx.switchd([b2], name="switchd2")
    assert ctx.get(sw2.port, "/").body == b"b2\n"
    time.sleep(0.5)
    assert probes(b2) == [] and b2.stats()["health"] == 0, b2.stats()
