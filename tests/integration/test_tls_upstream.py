"""TLS to the upstream servers (issue 5): `tls on`, `tls_ca`, `tls_verify`,
`tls_name` in `upstream blue` / `upstream green`.

The upstreams are upstream.py with --tls-cert/--tls-key (Python's ssl on the
server side, TLS 1.2+, ALPN http/1.1); their control requests (/stats, /log,
/control/...) still go in plain HTTP on the same port (upstream.py tells the
two apart by the first byte), so harness.Upstream.stats()/log(), traffic()
and set_health work unchanged. Certificates come from test_tls.Pki (the
openssl CLI in the test's folder); leaf() below adds IP subjectAltNames.

Covered: requests, keep-alive reuse, large bodies both ways; the name checked
(tls_name, health_host, else the server's IP as an IP SAN); a wrong CA and
tls_verify off; health checks over TLS; a plain-HTTP server behind `tls on`;
`switchd -t` with a tls_ca that does not load; WebSocket through a TLS
upstream; a cutover from a plain blue to a TLS green under load.
"""

import hashlib
import http.client
import os
import re
import threading
import time
import types

from harness import (SLOW, admin_status, assert_proxy_error, check_config, chunked,
                     health_opts, make_config, pattern_bytes, pattern_sha256,
                     switchctl, timeout, traffic, wait_for)
from test_tls import LEAF_EXT, Pki, _run, line_of, wait_log

# -- certificates ----------------------------------------------------------------


def leaf(pki, name, cn, sans):
    """A certificate signed by pki's CA with exactly the subjectAltNames
    `sans` (written as openssl takes them: "DNS:a.test", "IP:127.0.0.1").
    Returns (cert, key)."""
    key = pki.key(name)
    csr, ext = pki._csr(name, "/CN=%s" % cn, key)
    with open(ext, "w") as f:
        f.write(LEAF_EXT.format(san=",".join(sans)))
    pki.serial += 1
    cert = pki.p(name + ".pem")
    _run(["openssl", "x509", "-req", "-in", csr, "-CA", pki.ca, "-CAkey",
          pki.ca_key, "-set_serial", str(pki.serial), "-days", "30",
          "-extfile", ext, "-out", cert])
    return cert, key


def other_pki(ctx, tag="other"):
    """A second, unrelated CA (its own folder in the test's folder)."""
    return Pki(types.SimpleNamespace(path=lambda name: ctx.path("%s-%s" % (tag, name))))


# -- processes -------------------------------------------------------------------


def tls_upstream(ctx, name, cert, *args):
    """upstream.py speaking TLS with cert = (certificate, key)."""
    return ctx.upstream(name, "--tls-cert", cert[0], "--tls-key", cert[1], *args)


def tls_opts(ca=None, name=None, verify=None, **more):
    """The directives of an upstream section for TLS (None: left out)."""
    o = {"tls": "on", "tls_ca": ca, "tls_name": name, "tls_verify": verify}
    o.update(more)
    return o


FAST = {"connect_timeout": "2s", "response_timeout": "10s"}


def get_ok(ctx, port, path="/", body=b"blue\n"):
    r = ctx.get(port, path)
    assert r.status == 200 and r.body == body, r
    return r


def server_status(sw, colour="blue", idx=0):
    return admin_status(sw.admin_socket)["colours"][colour]["servers"][idx]


def verify_failed_line(sw, u, colour="blue"):
    """The error log line of a certificate that failed verification on u."""
    pat = r"TLS to %s \(%s\): certificate verify failed: [^\n]+" % (
        re.escape(u.addr), colour)
    m = re.search(pat, sw.stderr_text())
    return m.group(0) if m else None


def wait_verify_failed(sw, u, colour="blue"):
    return wait_for(lambda: verify_failed_line(sw, u, colour), 5 * SLOW,
                    what="'TLS to %s (%s): certificate verify failed' in the log"
                    % (u.addr, colour))


# -- a. requests, keep-alive, large bodies ---------------------------------------


@timeout(60)
def test_tls_upstream_requests_keepalive_bodies(ctx):
    pki = Pki(ctx)
    a = pki.leaf("a", "a.test")
    up = tls_upstream(ctx, "blue", a)
    sw = ctx.switchd([up], blue_opts=tls_opts(pki.ca, "a.test", **FAST))

    # One client connection, ten requests; then five more clients.
    c = ctx.client(sw.port, timeout=10)
    for i in range(10):
        r = c.request("GET", "/x/%d" % i)
        assert r.status == 200 and r.body == b"blue\n", r
        assert r.header("X-Upstream") == "blue", r
    c.close()
    for _ in range(5):
        get_ok(ctx, sw.port)

    # The upstream saw TLS with SNI a.test on every request.
    log = traffic(up)
    assert len(log) == 15, [e["target"] for e in log]
    for e in log:
        t = e.get("tls")
        assert t and t["sni"] == "a.test" and t["version"] in ("TLSv1.2", "TLSv1.3"), e
    st = up.stats()
    assert st["tls"] and st["requests"] == 15, st
    assert st["plain_refused"] == 0 and st["tls_failed"] == 0, st
    # Keep-alive to the upstream: pooled TLS connections are reused.
    assert st["connections"] < st["requests"], \
        "no reuse of TLS connections to the upstream: %r" % st
    assert len({e["conn"] for e in log}) == st["connections"], st

    # /echo over TLS: the request as switchd forwarded it.
    r = ctx.get(sw.port, "/echo")
    assert r.status == 200, r
    e = r.json()
    assert e["tls"]["sni"] == "a.test" and e["method"] == "GET", e

    c = ctx.client(sw.port, timeout=30)
    # 2 MB upload, Content-Length and chunked.
    body = os.urandom(2 * 1024 * 1024)
    r = c.request("POST", "/echo", body=body, timeout=30)
    assert r.status == 200, r
    e = r.json()
    assert e["body_len"] == len(body) and \
        e["body_sha256"] == hashlib.sha256(body).hexdigest(), \
        "2 MB upload corrupted on its way to a TLS upstream: %d bytes" % e["body_len"]
    r = c.request("POST", "/echo", headers=[("Transfer-Encoding", "chunked")],
                  body=chunked(body, 65536), timeout=30)
    assert r.status == 200, r
    e = r.json()
    assert e["body_len"] == len(body) and \
        e["body_sha256"] == hashlib.sha256(body).hexdigest(), \
        "chunked 2 MB upload corrupted: %d bytes" % e["body_len"]
    # 5 MB responses: Content-Length, chunked, and close-delimited (whose end
    # over TLS is the upstream's close_notify).
    n = 5000000
    for path in ("/bytes/%d" % n, "/chunked/%d" % n):
        r = c.request("GET", path, store_body=False, timeout=30)
        assert r.status == 200 and r.body_len == n, (path, r)
        assert r.sha256 == pattern_sha256(n), "%s corrupted over TLS" % path
    c.close()
    c = ctx.client(sw.port, timeout=30)
    r = c.request("GET", "/close-delimited/1000000", store_body=False, timeout=30)
    assert r.status == 200 and r.body_len == 1000000, r
    assert r.sha256 == pattern_sha256(1000000), "close-delimited body corrupted"
    c.close()
    get_ok(ctx, sw.port)
    assert sw.alive()


# -- b. the name checked: the server's IP address --------------------------------


def test_tls_upstream_ip_san(ctx):
    """No tls_name, no health_host: the server's IP address must be an IP SAN
    of its certificate."""
    pki = Pki(ctx)
    with_ip = leaf(pki, "ip", "ip.test", ["DNS:ip.test", "IP:127.0.0.1"])
    without_ip = leaf(pki, "noip", "a.test", ["DNS:a.test", "DNS:127.0.0.1"])

    ok = tls_upstream(ctx, "blue", with_ip)
    sw = ctx.switchd([ok], blue_opts=tls_opts(pki.ca, **FAST))
    for _ in range(3):
        get_ok(ctx, sw.port)
    log = traffic(ok)
    assert len(log) == 3 and all(e["tls"]["sni"] is None for e in log), \
        "SNI sent without a name to send: %r" % [e["tls"] for e in log]

    # A certificate with the address only as a DNS name (not an IP SAN).
    bad = tls_upstream(ctx, "blue", without_ip)
    sw2 = ctx.switchd([bad], name="switchd2", blue_opts=tls_opts(pki.ca, **FAST))
    r = ctx.get(sw2.port, "/")
    assert_proxy_error(r, 502, close=False)
    line = wait_verify_failed(sw2, bad)
    assert re.search(r"mismatch", line, re.I), "no reason in %r" % line
    assert traffic(bad) == [], "a request reached a server that failed verification"
    assert sw2.alive() and sw.alive()


def test_tls_upstream_name_from_health_host(ctx):
    """Without tls_name, health_host (its port left out) is the name checked
    and sent as SNI; with neither matching, hostname mismatch."""
    pki = Pki(ctx)
    a = pki.leaf("a", "a.test")
    up = tls_upstream(ctx, "blue", a)
    sw = ctx.switchd([up], blue_opts=tls_opts(pki.ca, health_host="a.test:8443",
                                              **FAST))
    get_ok(ctx, sw.port)
    assert traffic(up)[0]["tls"]["sni"] == "a.test", traffic(up)
    # health_host b.test: the certificate (a.test only) does not match.
    sw2 = ctx.switchd([up], name="switchd2",
                      blue_opts=tls_opts(pki.ca, health_host="b.test", **FAST))
    assert_proxy_error(ctx.get(sw2.port, "/"), 502, close=False)
    line = wait_verify_failed(sw2, up)
    assert "hostname mismatch" in line, line
    # tls_name wins over health_host.
    sw3 = ctx.switchd([up], name="switchd3",
                      blue_opts=tls_opts(pki.ca, "a.test", health_host="b.test", **FAST))
    get_ok(ctx, sw3.port)


# -- c. the wrong CA, tls_verify off ---------------------------------------------


def test_tls_upstream_wrong_ca(ctx):
    pki = Pki(ctx)
    other = other_pki(ctx)
    # Two servers with certificates the configured CA did not sign: both are
    # tried, then 502.
    u1 = tls_upstream(ctx, "blue", pki.leaf("a1", "a.test")[:2])
    u2 = tls_upstream(ctx, "blue", pki.leaf("a2", "a.test")[:2])
    sw = ctx.switchd([u1, u2], blue_opts=tls_opts(other.ca, "a.test", **FAST))
    r = ctx.get(sw.port, "/")
    assert_proxy_error(r, 502, close=False)
    for u in (u1, u2):
        line = wait_verify_failed(sw, u)
        assert re.search(r"certificate verify failed: .*(issuer|self.signed|"
                         r"unable to get)", line), line
        assert traffic(u) == [], "%s got a request: %r" % (u.name, traffic(u))
    # The upstreams saw their handshakes refused (an alert from switchd).
    wait_for(lambda: u1.stats()["tls_failed"] >= 1 and u2.stats()["tls_failed"] >= 1,
             5, what="the refused handshakes at the upstreams")
    assert sw.alive()

    # tls_verify off: the same wrong CA, and the requests go through.
    sw2 = ctx.switchd([u1, u2], name="switchd2",
                      blue_opts=tls_opts(other.ca, "a.test", "off", **FAST))
    for _ in range(4):
        get_ok(ctx, sw2.port)
    assert len(traffic(u1)) + len(traffic(u2)) == 4
    # A certificate for another name and a self-signed one pass as well.
    self_signed = other.leaf("x", "x.test")[:2]
    u3 = tls_upstream(ctx, "blue", self_signed)
    sw3 = ctx.switchd([u3], name="switchd3", blue_opts=tls_opts(verify="off", **FAST))
    get_ok(ctx, sw3.port)
    assert "certificate verify failed" not in sw2.stderr_text() + sw3.stderr_text()


# -- d. health checks over TLS ---------------------------------------------------


@timeout(45)
def test_tls_upstream_health_checks(ctx):
    pki = Pki(ctx)
    a = pki.leaf("a", "a.test")
    up = tls_upstream(ctx, "blue", a)
    hopts = health_opts(2, health_interval="200ms", health_timeout="150ms")

    sw = ctx.switchd([up], blue_opts=tls_opts(pki.ca, "a.test", **FAST, **hopts))

    def state(s):
        st = admin_status(s.admin_socket)["colours"]["blue"]
        return st["healthy"], st["servers"][0]

    wait_for(lambda: state(sw)[0] and state(sw)[1]["health"] == "up"
             and state(sw)[1]["passes"] >= 2, 5 * SLOW, what="blue healthy over TLS")
    probes = [e for e in up.log() if e["health"]]
    assert probes and all(e["tls"] and e["tls"]["sni"] == "a.test" for e in probes), \
        probes[:3]
    assert up.stats()["plain_refused"] == 0
    get_ok(ctx, sw.port)

    # A name the certificate does not carry: every probe fails the handshake.
    sw2 = ctx.switchd([up], name="switchd2",
                      blue_opts=tls_opts(pki.ca, "b.test", **FAST, **hopts))

    def down():
        healthy, s = state(sw2)
        return not healthy and s["health"] == "down" and s["last_failure"]
    wait_for(down, 5 * SLOW, what="blue down with tls_name b.test")
    _, s = state(sw2)
    assert s["last_failure"].startswith("tls:"), s
    assert re.search(r"mismatch|verify", s["last_failure"]), s
    # The first colour stays up meanwhile.
    assert state(sw)[0]


# -- e. a plain-HTTP server behind `tls on` --------------------------------------


@timeout(45)
def test_tls_upstream_plain_http_server(ctx):
    """A plain server that answers the ClientHello with an HTTP 400 (as
    nginx does): the handshake fails, 502, the probes fail with tls:, and
    switchd goes on (a TLS upstream next to it still serves)."""
    pki = Pki(ctx)
    plain = ctx.upstream("blue", "--reject-tls")
    hopts = health_opts(2, health_interval="200ms", health_timeout="150ms")
    sw = ctx.switchd([plain], blue_opts=tls_opts(pki.ca, "a.test", **FAST, **hopts))
    t0 = time.time()
    r = ctx.get(sw.port, "/")
    assert_proxy_error(r, 502, close=False)
    assert time.time() - t0 < 1.5 * SLOW, "502 after %.1fs" % (time.time() - t0)
    wait_log(sw, "TLS handshake with %s (blue) failed" % plain.addr)
    assert plain.stats()["requests"] == 0 and plain.stats()["tls_rejected"] >= 1

    def down():
        s = server_status(sw)
        return s["health"] == "down" and s["last_failure"]
    wait_for(down, 5 * SLOW, what="the plain server down")
    s = server_status(sw)
    assert s["last_failure"].startswith("tls:"), s
    assert not admin_status(sw.admin_socket)["colours"]["blue"]["healthy"]
    # No server of the live colour up: 503 (switchd(8), Routing).
    for _ in range(3):
        assert_proxy_error(ctx.get(sw.port, "/"), 503, close=False)
    assert plain.stats()["requests"] == 0
    assert sw.alive()


@timeout(45)
def test_tls_upstream_silent_plain_server(ctx):
    """A plain server that waits for a request head after the ClientHello
    (upstream.py without --reject-tls): the handshake never ends, the
    connect timeout (which covers the handshake) fails the request, the
    probes fail, switchd goes on."""
    pki = Pki(ctx)
    plain = ctx.upstream("blue")
    hopts = health_opts(2, health_interval="200ms", health_timeout="150ms")
    sw = ctx.switchd([plain], blue_opts=tls_opts(
        pki.ca, "a.test", connect_timeout="1s", **hopts))
    t0 = time.time()
    r = ctx.get(sw.port, "/")
    took = time.time() - t0
    # connect_timeout: "then the next server of the colour is tried, else
    # 504"; the handshake is part of connecting (upstream.c, sw_upstream_expire).
    assert_proxy_error(r, 504, close=False)
    assert 0.8 < took < 4 * SLOW, "answered after %.1fs" % took
    wait_log(sw, "connect timeout on %s (blue)" % plain.addr)
    assert plain.stats()["requests"] == 0
    wait_for(lambda: server_status(sw)["health"] == "down", 5 * SLOW,
             what="the silent plain server down")
    assert server_status(sw)["last_failure"], server_status(sw)
    assert sw.alive()


# -- f. switchd -t with a tls_ca that does not load ------------------------------


def test_tls_upstream_check_config_tls_ca(ctx):
    pki = Pki(ctx)
    up = "127.0.0.1:%d" % ctx.port()
    port = ctx.port()
    good = make_config([port], [up], blue_opts=tls_opts(pki.ca, "a.test"))
    rc, out, err, path = check_config(ctx, good, name="good")
    assert rc == 0 and out.strip() == "%s: ok" % path, (rc, out, err)

    missing = pki.p("missing-ca.pem")
    not_pem = pki.p("not-pem.txt")
    with open(not_pem, "w") as f:
        f.write("this is not a certificate\n")
    empty = pki.p("empty.pem")
    open(empty, "w").close()
    for name, ca in (("missing", missing), ("not-pem", not_pem), ("empty", empty)):
        conf = make_config([port], [up], blue_opts=tls_opts(ca, "a.test"))
        rc, out, err, path = check_config(ctx, conf, name=name)
        assert rc == 1, "%s: switchd -t exited %d: %r %r" % (name, rc, out, err)
        assert "ok" not in out, (name, out)
        # The line is the one of `tls on` (switchd.conf(5)).
        where = "%s:%d: tls_ca %s" % (path, line_of(conf, "tls on"), ca)
        assert where in err, "%s: stderr does not say %r: %r" % (name, where, err)

    # Green too.
    conf = make_config([port], [up], [up], green_opts=tls_opts(missing, "a.test"))
    rc, out, err, path = check_config(ctx, conf, name="green")
    assert rc == 1 and missing in err, (rc, out, err)
    assert err.count("%s:%d: tls_ca" % (path, line_of(conf, "tls on"))) == 1, err


def test_tls_upstream_reload_with_missing_tls_ca(ctx):
    """A reload whose tls_ca does not load is rejected: the old TLS settings
    go on serving."""
    pki = Pki(ctx)
    up = tls_upstream(ctx, "blue", pki.leaf("a", "a.test")[:2])
    sw = ctx.switchd([up], blue_opts=tls_opts(pki.ca, "a.test", **FAST))
    get_ok(ctx, sw.port)
    missing = pki.p("gone.pem")
    bad = make_config([sw.port], [up], blue_opts=tls_opts(missing, "a.test", **FAST))
    sw.reload(bad)
    assert sw.alive()
    wait_log(sw, "%s:%d: tls_ca %s" % (sw.conf_path, line_of(bad, "tls on"), missing))
    for _ in range(3):
        get_ok(ctx, sw.port)
    assert "certificate verify failed" not in sw.stderr_text()


@timeout(45)
def test_tls_upstream_reload_retires_pooled_connections(ctx):
    """A reload that turns TLS on for a colour: the plain connection pooled
    before it is not reused (the config now says TLS), so the request that
    follows speaks TLS, and a plain server answers it with a failed
    handshake (502); turned off again, plain requests work."""
    pki = Pki(ctx)
    plain = ctx.upstream("blue", "--reject-tls")
    sw = ctx.switchd([plain], blue_opts=dict(FAST))
    for _ in range(2):
        get_ok(ctx, sw.port)
    assert plain.stats()["connections"] == 1
    sw.reload(make_config([sw.port], [plain],
                          blue_opts=tls_opts(pki.ca, "a.test", **FAST)))
    wait_log(sw, "reloaded")
    r = ctx.get(sw.port, "/")
    assert_proxy_error(r, 502, close=False)
    wait_log(sw, "TLS handshake with %s (blue) failed" % plain.addr)
    assert plain.stats()["requests"] == 2
    sw.reload(make_config([sw.port], [plain], blue_opts=dict(FAST)))
    wait_for(lambda: sw.stderr_text().count("reloaded") >= 2, 5 * SLOW,
             what="the second reload")
    get_ok(ctx, sw.port)
    assert plain.stats()["requests"] == 3


# -- g. WebSocket through a TLS upstream -----------------------------------------


def test_tls_upstream_websocket(ctx):
    pki = Pki(ctx)
    up = tls_upstream(ctx, "blue", pki.leaf("a", "a.test")[:2])
    sw = ctx.switchd([up], blue_opts=tls_opts(pki.ca, "a.test", **FAST))
    c = ctx.client(sw.port, timeout=10)
    c.send(b"GET /ws HTTP/1.1\r\nHost: a.test\r\nUpgrade: websocket\r\n"
           b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
           b"Sec-WebSocket-Version: 13\r\n\r\n")
    r = c.read_response()
    assert r.status == 101, r
    assert r.header("sec-websocket-accept") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", r
    for n in (1, 100, 16384, 16385, 300000):
        data = pattern_bytes(n)
        c.send(data)
        back = c.recv_exact(n, timeout=10)
        assert back == data, "echo of %d bytes differs" % n
    ws = [e for e in traffic(up) if e["path"] == "/ws"]
    assert len(ws) == 1 and ws[0]["status"] == 101 and ws[0]["tls"]["sni"] == "a.test", ws
    # The client's close ends the tunnel both ways.
    c.shutdown_write()
    assert c.wait_closed(5), "tunnel still open 5 s after the client's FIN"
    wait_for(lambda: up.stats()["open"] == 0, 5, what="the upstream's side closed")
    get_ok(ctx, sw.port)
    assert sw.alive()


# -- h. a cutover from a plain blue to a TLS green -------------------------------


class PacedLoad:
    """Light load: `threads` keep-alive connections (http.client), each
    sending GET /load/T/I with a pause between answers, until stop() or
    max_seconds. Records (t_send, t_recv, path, status, X-Upstream, body);
    exceptions are recorded as errors, never retried."""

    def __init__(self, port, threads=3, pause=0.005, max_seconds=30.0):
        self.port = port
        self.pause = pause
        self.deadline = time.time() + max_seconds
        self._stop = threading.Event()
        self.records = [[] for _ in range(threads)]
        self.errors = [[] for _ in range(threads)]
        self._ts = [threading.Thread(target=self._run, args=(i,), daemon=True)
                    for i in range(threads)]
        for t in self._ts:
            t.start()

    def _run(self, tid):
        conn = None
        i = 0
        while not self._stop.is_set() and time.time() < self.deadline:
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
            except Exception as e:  # noqa: every failure is counted
                self.errors[tid].append((t_send, time.time(), path, repr(e)))
                if conn is not None:
                    conn.close()
                conn = None
            self._stop.wait(self.pause)
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
            "%d of %d requests failed: %d non-2xx (first %r), %d errors (first %r)"
            % (len(bad) + len(self.all_errors), len(self.all) + len(self.all_errors),
               len(bad), bad[:3], len(self.all_errors), self.all_errors[:3]))



@timeout(60)
def test_tls_upstream_cutover_plain_to_tls(ctx):
    from test_cutover import wait_colours_up

    pki = Pki(ctx)
    blue = ctx.upstream("blue")
    green = tls_upstream(ctx, "green", pki.leaf("g", "green.test")[:2])
    hopts = health_opts(2, health_interval="250ms", health_timeout="200ms")
    sw = ctx.switchd([blue], [green], blue_opts=dict(hopts, **FAST),
                     green_opts=tls_opts(pki.ca, "green.test", **FAST, **hopts),
                     raw_extra="cutover\n    gate_timeout 10s\n    drain_timeout 10s\n")
    wait_colours_up(sw)
    load = PacedLoad(sw.port, threads=3, pause=0.005)
    try:
        time.sleep(1.0)
        ctl = switchctl(["cutover", "--to", "green", "--wait", "--timeout", "30s"],
                        sock=sw.admin_socket, timeout=40)
        t_done = time.time()
        time.sleep(1.5)
    finally:
        load.stop()
    assert ctl.rc == 0, "switchctl cutover --wait: %r" % ctl
    load.assert_no_failures()
    st = admin_status(sw.admin_socket)
    assert st["live"] == "green", st

    recs = load.all
    assert len(recs) > 100, len(recs)
    assert recs and recs[0][4] == "blue", recs[:1]
    after = [r for r in recs if r[0] > t_done + 0.25 * SLOW]
    assert after, "no load after the cutover"
    assert all(r[4] == "green" and r[5] == b"green\n" for r in after), \
        [r for r in after if r[4] != "green"][:3]
    glog = [e for e in traffic(green) if e["target"].startswith("/load/")]
    assert len(glog) >= len(after), (len(glog), len(after))
    assert all(e["tls"]["sni"] == "green.test" for e in glog), glog[:2]
    # Green serves on its own afterwards.
    get_ok(ctx, sw.port, body=b"green\n")
    assert green.stats()["plain_refused"] == 0
