"""The admin API: who may use it (socket mode 0600, SO_PEERCRED uid check,
TCP bearer token, open /metrics), races between operators (concurrent
cutovers, stale state versions), the event stream and the Prometheus
metrics.

The uid check needs a caller with another uid: as root the tests run clients
as `nobody` through runuser (the socket is chmod'ed 0666 for that test only,
so that the uid check, not the file mode, is what refuses). Not as root, no
other uid is available: the test then checks that its own uid is allowed and
that allow_uid naming another uid does not lock the owner out.
"""

import json
import math
import os
import re
import socket
import stat
import subprocess
import threading
import time

from harness import (health_opts, set_health, traffic, PY, SLOW, Client, admin_raw, admin_request, admin_status,
                     build_request, switchctl, switchctl_binary, switchd_env,
                     timeout, wait_for)

RISE = 2
NOBODY = "nobody"


def hopts(**over):
    return health_opts(RISE, **over)


def start(ctx, admin=None, green_opts=None, cutover=None, name="switchd"):
    """blue + green upstreams and a switchd with fast health checks. admin:
    directives of an admin section (the test's own socket is added)."""
    b = ctx.upstream("blue")
    g = ctx.upstream("green")
    extra = ["cutover"]
    for k, v in ({"gate_timeout": "20s", "drain_timeout": "5s"}
                 if cutover is None else cutover).items():
        extra.append("    %s %s" % (k, v))
    sock = None
    if admin is not None:
        sock = ctx.path("%s-admin.sock" % name)
        extra += ["", "admin", "    socket %s" % sock]
        for k, v in admin:
            extra.append("    %s %s" % (k, v))
    sw = ctx.switchd([b], [g], name=name, blue_opts=hopts(),
                     green_opts=hopts(**(green_opts or {})),
                     raw_extra="\n".join(extra) + "\n")
    if sock is not None:
        sw.admin_socket = sock
    wait_for(lambda: all(admin_status(sw.admin_socket)["colours"][c]["healthy"]
                         for c in ("blue", "green")), 5 * SLOW, what="both colours up")
    return sw, b, g


def post(sock, path, body=None, **kw):
    return admin_request(sock, "POST", path, body if body is not None else {}, **kw)


def tcp_request(port, method, path, body=None, token=None, auth=None):
    hs = [("Connection", "close")]
    if auth is not None:
        hs.append(("Authorization", auth))
    elif token is not None:
        hs.append(("Authorization", "Bearer " + token))
    data = b""
    if body is not None:
        data = json.dumps(body).encode()
        hs.append(("Content-Type", "application/json"))
    c = Client(port, timeout=5)
    try:
        c.send(build_request(method, path, hs, data, host="switchd"))
        return c.read_response(timeout=5)
    finally:
        c.close()


def wait_phase(sw, phase, timeout_s=5.0):
    wait_for(lambda: admin_status(sw.admin_socket)["phase"] == phase, timeout_s * SLOW,
             what="phase %s" % phase)


# -- the Unix socket: mode and caller uid --------------------------------------------

# A raw client for another uid: prints the status code of each request.
RAW_CLIENT = r"""
import socket, sys
sock = sys.argv[1]
for method, path, body in (("GET", "/v1/status", b""),
                           ("POST", "/v1/cutover", b'{"to":"green"}'),
                           ("POST", "/v1/abort", b"{}"),
                           ("GET", "/metrics", b"")):
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(5)
    s.connect(sock)
    try:
        s.sendall(b"%s %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                  b"Content-Length: %d\r\n\r\n%s" % (method.encode(), path.encode(),
                                                     len(body), body))
    except BrokenPipeError:
        pass  # answered and closed before the request was read; read the answer
    data = b""
    while True:
        try:
            d = s.recv(65536)
        except ConnectionResetError:
            break  # closed with our request unread: the answer came first
        if not d:
            break
        data += d
    s.close()
    print(method, path, data.split(b" ", 2)[1].decode(), flush=True)
"""


def as_user(user, cmd, timeout_s=20):
    p = subprocess.run(["runuser", "-u", user, "--"] + cmd, stdin=subprocess.DEVNULL,
                       capture_output=True, timeout=timeout_s * SLOW)
    return p.returncode, p.stdout.decode(), p.stderr.decode()


@timeout(40)
def test_socket_mode_and_uid_check(ctx):
    sw, b, g = start(ctx)
    sock = sw.admin_socket
    st = os.stat(sock)
    assert stat.S_ISSOCK(st.st_mode), "not a socket: %o" % st.st_mode
    assert stat.S_IMODE(st.st_mode) == 0o600, "socket mode %o" % stat.S_IMODE(st.st_mode)
    assert st.st_uid == os.getuid()
    v0 = admin_status(sock)["version"]

    if os.getuid() != 0:
        # No other uid to be: the owner is allowed, and a config that
        # allows another uid keeps allowing the owner (the refusal of a
        # foreign uid is covered when the suite runs as root, as CI does).
        assert switchctl(["status"], sock=sock).rc == 0
        sw2, _, _ = start(ctx, admin=[("allow_uid", "65534")], name="allow")
        assert switchctl(["status"], sock=sw2.admin_socket).rc == 0
        return

    nobody_uid = int(subprocess.check_output(["id", "-u", NOBODY]).strip())
    # Open the way for `nobody`: the folder and the socket file. What must
    # refuse it now is switchd's SO_PEERCRED check alone.
    os.chmod(ctx.dir, 0o711)
    os.chmod(sock, 0o666)
    rc, out, err = as_user(NOBODY, [PY, "-c", RAW_CLIENT, sock])
    assert rc == 0, (rc, out, err)
    codes = dict(((l.split()[0], l.split()[1]), l.split()[2]) for l in out.splitlines())
    assert codes == {("GET", "/v1/status"): "403", ("POST", "/v1/cutover"): "403",
                     ("POST", "/v1/abort"): "403", ("GET", "/metrics"): "403"}, out
    # switchctl run as nobody: refused (exit 3), with the reason, every time
    # (switchd may answer before it has read the request: a few tries each).
    # Checked at the end, so that the rest of the test still runs.
    problems = []
    for args in (["cutover", "--to", "green"], ["abort"], ["check", "green"],
                 ["status"], ["watch", "--count", "1"]):
        for _ in range(5):
            ctl = switchctl(args, sock=sock, user=NOBODY)
            if not (ctl.rc == 3 and "403" in ctl.err and "uid may not use" in ctl.err):
                problems.append("switchctl %s refused with 403 must exit 3 and say "
                                "why: %r" % (" ".join(args), ctl))
                break
    # Nothing changed, and the refusals are in the audit log.
    st = admin_status(sock)
    assert st["version"] == v0 and st["phase"] == "steady" and st["live"] == "blue", st
    assert not traffic(g)
    log = sw.stderr_text()
    assert "uid %d (pid" % nobody_uid in log and "refused: uid not allowed" in log, log
    assert "cutover to green" not in log

    # With allow_uid, the same uid is let in (and may act).
    # (no chmod this time: with allow_uid switchd itself must make the
    # socket reachable for that uid.)
    sw2, _, _ = start(ctx, admin=[("allow_uid", str(nobody_uid))], name="allow")
    ctl = switchctl(["status"], sock=sw2.admin_socket, user=NOBODY)
    assert ctl.rc == 0 and ctl.out.startswith("live blue, phase steady"), ctl
    ctl = switchctl(["cutover", "--to", "green", "--wait", "--timeout", "10s"],
                    sock=sw2.admin_socket, user=NOBODY)
    assert ctl.rc == 0, ctl
    assert "uid %d (pid" % nobody_uid in sw2.stderr_text()
    assert re.search(r"\[admin\] uid %d \(pid \d+\): cutover to green: accepted" % nobody_uid,
                     sw2.stderr_text())
    assert not problems, "\n".join(problems)


# -- TCP: bearer token -----------------------------------------------------------

TOKEN = "s3cr3t-token-0123456789abcdef-XYZ"


@timeout(40)
def test_tcp_token_required_for_mutations(ctx):
    port = ctx.port()
    tok = ctx.path("token")
    with open(tok, "w") as f:
        f.write(TOKEN + "\n")
    os.chmod(tok, 0o600)
    sw, b, g = start(ctx, admin=[("bind", "127.0.0.1:%d" % port), ("token_file", tok)])
    v0 = admin_status(sw.admin_socket)["version"]

    wrong = [None, "", "Bearer", "Bearer ", "Bearer " + TOKEN[:-1],
             "Bearer " + TOKEN + "x", "Bearer " + TOKEN[:-1] + "y",
             "Basic " + TOKEN, TOKEN, "Bearer " + TOKEN.upper(),
             "Bearer " + TOKEN.replace("-", "_")]
    for auth in wrong:
        for method, path, body in (("POST", "/v1/cutover", {"to": "green"}),
                                   ("POST", "/v1/abort", {}),
                                   ("POST", "/v1/check", {"colour": "green"}),
                                   ("GET", "/metrics", None)):
            r = tcp_request(port, method, path, body, auth=auth)
            assert r.status == 401, "%s %s with Authorization %r: %r" % (
                method, path, auth, r)
            assert "token" in r.json()["error"], r.body
    st = admin_status(sw.admin_socket)
    assert st["version"] == v0 and st["phase"] == "steady" and st["live"] == "blue", st
    assert st["colours"]["green"]["verify"]["status"] == "none", st["colours"]["green"]
    assert not traffic(g)
    assert "tcp 127.0.0.1: POST /v1/cutover refused: missing or wrong token" in \
        sw.stderr_text()

    # The right token works (the scheme's case does not matter).
    r = tcp_request(port, "GET", "/v1/status", token=TOKEN)
    assert r.status == 200 and r.json()["version"] == v0, r
    r = tcp_request(port, "GET", "/metrics", token=TOKEN)
    assert r.status == 200 and "switchd_live" in r.text(), r
    r = tcp_request(port, "POST", "/v1/cutover", {"to": "green"}, auth="bearer " + TOKEN)
    assert r.status == 202 and r.json()["accepted"] is True, (r, r.body)
    wait_for(lambda: admin_status(sw.admin_socket)["live"] == "green", 10 * SLOW,
             what="live green")
    assert ctx.get(sw.port, "/").header("X-Upstream") == "green"
    assert re.search(r"\[admin\] tcp 127\.0\.0\.1: cutover to green: accepted",
                     sw.stderr_text())


@timeout(40)
def test_tcp_metrics_open(ctx):
    port = ctx.port()
    tok = ctx.path("token")
    with open(tok, "w") as f:
        f.write(TOKEN)
    sw, b, g = start(ctx, admin=[("bind", "127.0.0.1:%d" % port), ("token_file", tok),
                                 ("metrics_open", "yes")])
    v0 = admin_status(sw.admin_socket)["version"]
    r = tcp_request(port, "GET", "/metrics")
    assert r.status == 200 and "switchd_live" in r.text(), r
    assert r.header("content-type", "").startswith("text/plain"), r
    # Only /metrics is open.
    assert tcp_request(port, "POST", "/v1/cutover", {"to": "green"}).status == 401
    assert tcp_request(port, "POST", "/v1/cutover", {"to": "green"},
                       token="wrong-token-0123456789").status == 401
    # A wrong token on the open /metrics does not get it more than no token.
    assert tcp_request(port, "GET", "/metrics", auth="Bearer nope").status == 200
    st = admin_status(sw.admin_socket)
    assert st["version"] == v0 and st["phase"] == "steady", st


# -- races between operators ------------------------------------------------------

def simultaneous_posts(sock, bodies):
    """Sends POST /v1/cutover with each body on its own connection, all
    connected first, then written as close together as threads allow."""
    conns = []
    for _ in bodies:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(5)
        s.connect(sock)
        conns.append(s)
    barrier = threading.Barrier(len(bodies))
    results = [None] * len(bodies)

    def go(i):
        data = json.dumps(bodies[i]).encode()
        req = build_request("POST", "/v1/cutover",
                            [("Connection", "close"), ("Content-Type", "application/json")],
                            data, host="switchd")
        barrier.wait(5)
        conns[i].sendall(req)
        buf = b""
        while True:
            d = conns[i].recv(65536)
            if not d:
                break
            buf += d
        conns[i].close()
        results[i] = buf

    ts = [threading.Thread(target=go, args=(i,), daemon=True) for i in range(len(bodies))]
    for t in ts:
        t.start()
    for t in ts:
        t.join(10)
        assert not t.is_alive()
    out = []
    for raw in results:
        head, _, body = raw.partition(b"\r\n\r\n")
        out.append((int(head.split(b" ")[1]), json.loads(body)))
    return out


@timeout(40)
def test_concurrent_cutovers_one_wins(ctx):
    # Green needs 10 passes (about 1 s): the gate is still running while the
    # other requests arrive.
    sw, b, g = start(ctx, green_opts={"health_rise": 10})
    sock = sw.admin_socket
    for round_ in range(2):
        v = admin_status(sock)["version"]
        # Round 0: 8 operators without a version; round 1: two operators who
        # both read version v.
        bodies = ([{"to": "green"}] * 8 if round_ == 0
                  else [{"to": "green", "version": v}] * 2)
        res = simultaneous_posts(sock, bodies)
        codes = sorted(c for c, _ in res)
        assert codes == [202] + [409] * (len(bodies) - 1), res
        for c, j in res:
            if c == 409:
                assert j.get("reason") == "in_progress" or "stale" in j.get("error", ""), j
        st = admin_status(sock)
        assert st["phase"] == "gating" and st["version"] == v + 1, st
        assert len([e for e in st["history"] if e["reason"] == "requested"]) == round_ + 1
        r = post(sock, "/v1/abort", {"version": st["version"]})
        assert r.status == 200 and r.json()["aborted"] is True, (r, r.body)
        assert admin_status(sock)["phase"] == "steady"
    # Two switchctl processes at once: one exit 0, the other 3 (refused).
    ps = [subprocess.Popen([switchctl_binary(), "-s", sock,
                            "cutover", "--to", "green"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           env=switchd_env())
          for _ in range(2)]
    outs = [p.communicate(timeout=10 * SLOW) for p in ps]
    rcs = sorted(p.returncode for p in ps)
    assert rcs == [0, 3], (rcs, outs)
    assert any(b"refused (409)" in e for _, e in outs), outs
    assert admin_status(sock)["live"] == "blue"
    assert not traffic(g)


@timeout(30)
def test_stale_version_conflict(ctx):
    sw, b, g = start(ctx, green_opts={"health_rise": 10})
    sock = sw.admin_socket
    v = admin_status(sock)["version"]
    for stale in (v - 1, v + 1, 0):
        r = post(sock, "/v1/cutover", {"to": "green", "version": stale})
        assert r.status == 409, (stale, r, r.body)
        j = r.json()
        assert "stale" in j["error"] and j["version"] == v, j
    r = post(sock, "/v1/cutover", {"to": "green", "version": "7"})
    assert r.status == 400, (r, r.body)
    st = admin_status(sock)
    assert st["version"] == v and st["phase"] == "steady", st
    r = post(sock, "/v1/cutover", {"to": "green", "version": v})
    assert r.status == 202 and r.json()["version"] == v + 1, (r, r.body)
    # The abort too carries the version it read.
    r = post(sock, "/v1/abort", {"version": v})
    assert r.status == 409 and admin_status(sock)["phase"] == "gating", (r, r.body)
    r = post(sock, "/v1/abort", {"version": v + 1})
    assert r.status == 200, (r, r.body)
    st = admin_status(sock)
    assert st["phase"] == "steady" and st["last_gate"]["reason"] == "operator", st
    assert re.search(r"\[admin\] uid \d+ \(pid \d+\): abort: done", sw.stderr_text())


@timeout(30)
def test_api_errors(ctx):
    sw, b, g = start(ctx)
    sock = sw.admin_socket
    v = admin_status(sock)["version"]
    cases = [
        (admin_request(sock, "GET", "/v1/cutover"), 405),
        (admin_request(sock, "GET", "/v1/nope"), 404),
        (admin_request(sock, "POST", "/v1/cutover", "{not json"), 400),
        (admin_request(sock, "POST", "/v1/cutover", "[1, 2]"), 400),
        (post(sock, "/v1/cutover", {"to": "purple"}), 400),
        (post(sock, "/v1/cutover", {"to": "blue"}), 409),
        (post(sock, "/v1/abort"), 409),
        (post(sock, "/v1/check", {"colour": "purple"}), 400),
        (admin_raw(sock, b"GARBAGE\r\n\r\n"), 400),
        (post(sock, "/v1/status"), 405),
        (post(sock, "/metrics"), 405),
    ]
    for r, want in cases:
        assert r.status == want, "expected %d: %r %r" % (want, r, r.body)
        assert r.header("content-type") == "application/json", r
        assert "error" in r.json(), r.body
    assert cases[5][0].json()["reason"] == "already_live"
    assert cases[6][0].json()["reason"] == "not_gating"
    st = admin_status(sock)
    assert st["version"] == v and st["phase"] == "steady", st
    r = post(sock, "/v1/check", {"colour": "green"})
    assert r.status == 202 and r.json() == {"started": True, "colour": "green"}, r.body


# -- the event stream ----------------------------------------------------------------

class EventStream:
    """GET /v1/events on the admin socket; events() parses what arrives."""

    def __init__(self, sock):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.settimeout(5)
        self.s.connect(sock)
        self.s.sendall(b"GET /v1/events HTTP/1.1\r\nHost: switchd\r\n\r\n")
        self.buf = b""
        self.head = None
        self.got = []

    def _read(self, deadline):
        self.s.settimeout(max(0.01, deadline - time.time()))
        try:
            d = self.s.recv(65536)
        except socket.timeout:
            return False
        if not d:
            raise AssertionError("the event stream closed")
        self.buf += d
        return True

    def wait(self, pred, timeout_s):
        """Reads events until pred(list of all events) holds."""
        deadline = time.time() + timeout_s
        while True:
            if self.head is None and b"\r\n\r\n" in self.buf:
                self.head, _, self.buf = self.buf.partition(b"\r\n\r\n")
            if self.head is not None:
                while b"\n\n" in self.buf:
                    block, _, self.buf = self.buf.partition(b"\n\n")
                    ev = {"event": "message", "data": []}
                    for line in block.decode().split("\n"):
                        k, _, v = line.partition(":")
                        v = v[1:] if v.startswith(" ") else v
                        if k == "data":
                            ev["data"].append(v)
                        elif k:
                            ev[k] = v
                    ev["data"] = json.loads("\n".join(ev["data"]))
                    self.got.append(ev)
                if pred(self.got):
                    return self.got
            if time.time() > deadline:
                raise AssertionError("timed out waiting on the event stream; got %r"
                                     % self.got)
            self._read(deadline)

    def close(self):
        self.s.close()


@timeout(40)
def test_events_stream_each_transition(ctx):
    sw, b, g = start(ctx)
    sock = sw.admin_socket
    streams = [EventStream(sock), EventStream(sock)]
    try:
        for es in streams:
            es.wait(lambda evs: len(evs) >= 1, 5 * SLOW)
            head = es.head.decode("latin-1")
            assert head.startswith("HTTP/1.1 200") and \
                "Content-Type: text/event-stream" in head, head
            first = es.got[0]
            assert first["event"] == "status" and first["data"]["live"] == "blue", first
        v0 = admin_status(sock)["version"]
        ctl = switchctl(["cutover", "--to", "green", "--wait", "--timeout", "20s"], sock=sock)
        assert ctl.rc == 0, ctl
        st = admin_status(sock)
        n = st["version"] - v0
        assert n == 4, st["history"]

        def transitions(evs):
            return [e["data"] for e in evs if e["event"] == "transition"]
        for es in streams:
            es.wait(lambda evs: len(transitions(evs)) >= n, 5 * SLOW)
            ts = transitions(es.got)
            assert [(t["from"], t["to"], t["reason"]) for t in ts] == [
                ("steady", "gating", "requested"),
                ("gating", "rechecking", "gate_passed"),
                ("rechecking", "watching", "flipped"),
                ("watching", "watching", "drained")], ts
            assert [t["version"] for t in ts] == list(range(v0 + 1, v0 + 5)), ts
            # The same records as the status history (times are converted
            # from loop time at each use: a millisecond apart at most).
            hist = [h for h in st["history"] if h["version"] > v0]
            strip = [lambda x: {k: v for k, v in x.items() if k != "time_ms"}][0]
            assert [strip(t) for t in ts] == [strip(h) for h in hist], (ts, hist)
            for t, h in zip(ts, hist):
                assert abs(t["time_ms"] - h["time_ms"]) <= 2, (t, h)
            assert ts[2]["live"] == "green" and ts[0]["live"] == "blue"
        # While the watch runs a new cutover is refused; a commit ends the
        # watch (a transition), then an aborted gate is transitions too.
        r = post(sock, "/v1/cutover", {"to": "blue"})
        assert r.status == 409 and r.json()["reason"] == "watching", r
        r = post(sock, "/v1/commit")
        assert r.status == 200, r
        r = post(sock, "/v1/cutover", {"to": "blue"})
        assert r.status == 202
        r = post(sock, "/v1/abort")
        assert r.status == 200
        for es in streams:
            es.wait(lambda evs: len(transitions(evs)) >= n + 3, 5 * SLOW)
            ts = transitions(es.got)[n:]
            assert [(t["from"], t["to"], t["reason"]) for t in ts] == [
                ("watching", "final", "committed"),
                ("final", "gating", "requested"),
                ("gating", "steady", "operator")], ts
    finally:
        for es in streams:
            es.close()
    # switchd is still fine with the streams gone.
    assert admin_status(sock)["live"] == "green"


# -- metrics -------------------------------------------------------------------------

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)( -?\d+)?$')
LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"\s*(,|$)')


def parse_labels(text, line):
    out = {}
    pos = 0
    while pos < len(text):
        m = LABEL.match(text, pos)
        assert m, "bad labels in %r" % line
        assert m.group(1) not in out, "duplicate label in %r" % line
        out[m.group(1)] = m.group(2)
        pos = m.end()
    return out


def parse_value(v, line):
    if v in ("+Inf", "Inf"):
        return math.inf
    if v == "-Inf":
        return -math.inf
    if v == "NaN":
        return math.nan
    try:
        return float(v)
    except ValueError:
        raise AssertionError("bad value in %r" % line)


def family_of(name, types):
    if name in types:
        return name
    for suf in ("_bucket", "_sum", "_count"):
        if name.endswith(suf) and types.get(name[:-len(suf)]) in ("histogram", "summary"):
            if suf == "_bucket" and types[name[:-len(suf)]] != "histogram":
                break
            return name[:-len(suf)]
    return None


def parse_exposition(text, grouped=True):
    """Parses Prometheus text format 0.0.4 strictly. Returns (types, samples)
    with samples a list of (name, labels dict, value). With grouped, also
    requires every family's lines to be one contiguous group."""
    assert text.endswith("\n"), "the exposition does not end with a newline"
    types, helps, samples = {}, {}, []
    order = []  # families in the order their lines appear
    for line in text.split("\n")[:-1]:
        if line == "":
            continue
        if line.startswith("#"):
            parts = line.split(None, 3)
            if len(parts) >= 2 and parts[1] in ("TYPE", "HELP"):
                assert len(parts) >= 3, "bad %s line %r" % (parts[1], line)
                name = parts[2]
                assert re.match(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$", name), line
                if parts[1] == "TYPE":
                    assert len(parts) == 4 and parts[3] in (
                        "counter", "gauge", "histogram", "summary", "untyped"), line
                    assert name not in types, "second TYPE line for %s" % name
                    assert not any(family_of(s[0], {name: parts[3]}) == name
                                   for s in samples), "TYPE of %s after its samples" % name
                    types[name] = parts[3]
                else:
                    assert name not in helps, "second HELP line for %s" % name
                    helps[name] = parts[3] if len(parts) > 3 else ""
                fam = name
            else:
                continue
        else:
            m = SAMPLE.match(line)
            assert m, "not a sample line: %r" % line
            labels = parse_labels(m.group(3) or "", line)
            value = parse_value(m.group(4), line)
            fam = family_of(m.group(1), types)
            assert fam is not None, "sample %r has no TYPE line before it" % line
            samples.append((m.group(1), labels, value))
        if not order or order[-1] != fam:
            if grouped:
                assert fam not in order, (
                    "the lines of metric family %s are not one group: %r comes after "
                    "lines of %s" % (fam, line, order[-1]))
            order.append(fam)
    for name, t in types.items():
        if t == "counter":
            assert name.endswith("_total"), "counter %s without _total" % name
        assert any(family_of(s[0], types) == name for s in samples) or t != "histogram", \
            "histogram %s without samples" % name
    return types, samples


def values(samples, name, **labels):
    return [v for n, l, v in samples if n == name and
            all(l.get(k) == w for k, w in labels.items())]


def check_histogram(samples, name):
    series = {}
    for n, l, v in samples:
        if n == name + "_bucket":
            key = tuple(sorted((k, w) for k, w in l.items() if k != "le"))
            series.setdefault(key, []).append((parse_value(l["le"], n), v))
    assert series, "no %s_bucket samples" % name
    for key, buckets in series.items():
        les = [le for le, _ in buckets]
        assert les == sorted(les) and les[-1] == math.inf, (key, les)
        counts = [c for _, c in buckets]
        assert counts == sorted(counts), "buckets of %s%r not cumulative: %r" % (
            name, key, counts)
        lab = dict(key)
        cnt = values(samples, name + "_count", **lab)
        sm = values(samples, name + "_sum", **lab)
        assert len(cnt) == 1 and cnt[0] == counts[-1], (key, cnt, counts)
        assert len(sm) == 1 and sm[0] >= 0, (key, sm)
    return series


REQUIRED = {"switchd_live": "gauge", "switchd_phase": "gauge",
            "switchd_flips_total": "counter", "switchd_requests_total": "counter",
            "switchd_request_duration_seconds": "histogram",
            "switchd_server_up": "gauge"}


def get_metrics(sock):
    r = admin_request(sock, "GET", "/metrics")
    assert r.status == 200, r
    ct = r.header("content-type", "")
    assert ct.startswith("text/plain") and "version=0.0.4" in ct, ct
    return r.text()


@timeout(40)
def test_metrics_exposition(ctx):
    sw, b, g = start(ctx)
    sock = sw.admin_socket
    for i in range(20):
        assert ctx.get(sw.port, "/m/%d" % i).status == 200
    assert ctx.get(sw.port, "/status/503").status == 503
    assert ctx.get(sw.port, "/status/404").status == 404
    text = get_metrics(sock)
    types, samples = parse_exposition(text, grouped=False)
    for name, t in REQUIRED.items():
        assert types.get(name) == t, "%s: TYPE %r, expected %s" % (name, types.get(name), t)
    assert values(samples, "switchd_live", colour="blue") == [1]
    assert values(samples, "switchd_live", colour="green") == [0]
    assert values(samples, "switchd_phase", phase="steady") == [1]
    assert sum(values(samples, "switchd_phase")) == 1
    assert values(samples, "switchd_flips_total") == [0]
    assert values(samples, "switchd_requests_total", colour="blue", server=b.addr,
                  **{"class": "2xx"}) == [20]
    assert values(samples, "switchd_requests_total", colour="blue", server=b.addr,
                  **{"class": "5xx"}) == [1]
    assert values(samples, "switchd_requests_total", colour="blue", server=b.addr,
                  **{"class": "4xx"}) == [1]
    assert values(samples, "switchd_server_up", colour="blue", server=b.addr) == [1]
    assert values(samples, "switchd_server_up", colour="green", server=g.addr) == [1]
    hist = check_histogram(samples, "switchd_request_duration_seconds")
    assert values(samples, "switchd_request_duration_seconds_count", colour="blue") == [22]
    assert len(hist[(("colour", "blue"),)]) >= 5

    ctl = switchctl(["cutover", "--to", "green", "--wait", "--timeout", "20s"], sock=sock)
    assert ctl.rc == 0, ctl
    for i in range(5):
        assert ctx.get(sw.port, "/m2/%d" % i).header("X-Upstream") == "green"
    types, samples = parse_exposition(get_metrics(sock), grouped=False)
    assert values(samples, "switchd_live", colour="green") == [1]
    assert values(samples, "switchd_live", colour="blue") == [0]
    assert values(samples, "switchd_flips_total") == [1]
    assert values(samples, "switchd_phase", phase="watching") == [1]
    assert values(samples, "switchd_watch_phase", phase="watching") == [1]
    assert values(samples, "switchd_requests_total", colour="green", server=g.addr,
                  **{"class": "2xx"}) == [5]
    assert values(samples, "switchd_request_duration_seconds_count", colour="green") == [5]
    check_histogram(samples, "switchd_request_duration_seconds")
    # A server that goes down shows it.
    set_health(b, 503)
    wait_for(lambda: values(parse_exposition(get_metrics(sock), grouped=False)[1],
                            "switchd_server_up", colour="blue", server=b.addr) == [0],
             5 * SLOW, what="switchd_server_up of blue 0")


@timeout(20)
def test_metrics_families_are_grouped(ctx):
    # Text format 0.0.4: "All lines for a given metric must be provided as
    # one single group, with the optional HELP and TYPE lines first."
    sw, b, g = start(ctx)
    parse_exposition(get_metrics(sw.admin_socket), grouped=True)


# -- idle admin callers ----------------------------------------------------------

@timeout(40)
def test_idle_admin_connections_are_cut_off(ctx):
    """A caller that connects and never completes a request is closed after
    about 10 s (so idle callers cannot hold descriptors for ever); an event
    stream is not, and requests keep being served meanwhile."""
    sw, b, g = start(ctx)
    sock = sw.admin_socket

    def connect():
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(20)
        s.connect(sock)
        return s

    idle = connect()
    partial = connect()
    partial.sendall(b"GET /v1/status HTTP/1.1\r\nHost: x\r\n")
    events = connect()
    events.sendall(b"GET /v1/events HTTP/1.1\r\nHost: x\r\n\r\n")
    head = events.recv(65536)
    assert head.startswith(b"HTTP/1.1 200"), head
    t0 = time.time()
    for s in (idle, partial):
        data = s.recv(65536)  # blocks until switchd closes it
        waited = time.time() - t0
        assert data == b"", data
        assert 8.0 <= waited <= 15.0, "closed after %.1f s" % waited
    # The stream is still open and still gets events.
    events.settimeout(0.5)
    try:
        more = events.recv(65536)
        assert more != b"", "the event stream was closed"
    except socket.timeout:
        pass
    assert admin_status(sock)["phase"] == "steady"
    for s in (idle, partial, events):
        s.close()
