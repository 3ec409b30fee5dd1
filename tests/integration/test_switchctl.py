"""switchctl against a real switchd: every subcommand, every documented exit
code (0 done, 1 usage, 2 unreachable, 3 refused, 4 gate failed,
5 inconclusive, 6 --timeout), --json output that parses, --help for each
subcommand.
"""

import json
import re
import socket
import threading
import time

from harness import (SLOW, Client, admin_status, switchctl, timeout, wait_for)

RISE = 2
SUBCOMMANDS = ("status", "cutover", "abort", "check", "watch")


def hopts(**over):
    o = {"health": "on", "health_path": "/health", "health_interval": "250ms",
         "health_timeout": "200ms", "health_rise": RISE, "health_fall": 3}
    o.update(over)
    return o


def traffic(u):
    return [e for e in u.log() if not e.get("health")]


def start(ctx, green_opts=None, blue_opts=None, cutover=None, database=None):
    b = ctx.upstream("blue")
    g = ctx.upstream("green")
    extra = []
    for name, opts in (("cutover", {"gate_timeout": "20s", "drain_timeout": "5s",
                                    **(cutover or {})}),
                       ("database", database)):
        if opts:
            extra.append(name)
            extra += ["    %s %s" % kv for kv in opts.items()]
            extra.append("")
    sw = ctx.switchd([b], [g], blue_opts=hopts(**(blue_opts or {})),
                     green_opts=hopts(**(green_opts or {})),
                     raw_extra="\n".join(extra))
    wait_for(lambda: all(admin_status(sw.admin_socket)["colours"][c]["healthy"]
                         for c in ("blue", "green")), 5 * SLOW, what="both colours up")
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


# -- 1: usage; --help ------------------------------------------------------------------

@timeout(30)
def test_usage_errors_exit_1(ctx):
    # A bad command line is exit 1 with a message, found before connecting:
    # the socket does not exist, so a connection attempt would be exit 2.
    nowhere = ctx.path("nothing-here.sock")
    problems = []
    for args in ([], ["frobnicate"], ["--bogus", "status"], ["-s"],
                 ["cutover", "--bogus"], ["cutover", "--to", "purple"],
                 ["cutover", "--timeout", "soon"], ["cutover", "--timeout", "5x"],
                 ["cutover", "--version", "abc"], ["cutover", "extra"],
                 ["check"], ["check", "purple"], ["check", "green", "extra"],
                 ["status", "extra"], ["abort", "extra"],
                 ["watch", "--count"], ["watch", "--count", "x"], ["watch", "--bogus"]):
        r = switchctl(args, sock=None if args == ["-s"] else nowhere, timeout=10)
        if r.rc != 1 or not (r.err + r.out).strip() or "cannot reach" in r.err:
            problems.append("switchctl %s: expected exit 1 and a usage message "
                            "without connecting: %r" % (" ".join(args), r))
    assert not problems, "\n".join(problems)


@timeout(30)
def test_help_for_each_subcommand(ctx):
    r = expect(switchctl(["--help"]), 0, out=r"^usage: switchctl")
    for c in SUBCOMMANDS:
        assert re.search(r"^\s+%s\b" % c, r.out, re.M), "--help does not list %s: %r" % (c, r)
    assert re.search(r"exit codes: 0 done, 1 usage, 2 unreachable, 3 refused, 4 gate "
                     r"failed,\s+5 inconclusive.*6 --timeout", r.out, re.S), r.out
    expect(switchctl(["-h"]), 0, out=r"^usage: switchctl")
    # `COMMAND --help` prints that command's usage and touches nothing:
    # run against a live switchd in the middle of a gate, which an abort
    # (or a cutover) would change.
    sw, b, g = start(ctx, green_opts={"health_rise": 100})
    expect(ctl(sw, "cutover", "--to", "green"), 0)
    v = admin_status(sw.admin_socket)["version"]
    problems = []
    for c in SUBCOMMANDS:
        for args in ([c, "--help"], ["--json", c, "--help"]):
            r = ctl(sw, *args, timeout=10)
            if r.rc != 0 or not re.search(r"^usage: switchctl %s" % c, r.out, re.M):
                problems.append("switchctl %s: expected exit 0 and 'usage: switchctl %s': %r"
                                % (" ".join(args), c, r))
    st = admin_status(sw.admin_socket)
    if st["version"] != v or st["phase"] != "gating":
        problems.append("a --help changed the state: version %d -> %d, phase %s, "
                        "last gate %r" % (v, st["version"], st["phase"], st["last_gate"]))
    assert not problems, "\n".join(problems)


# -- 2: unreachable ---------------------------------------------------------------------

@timeout(30)
def test_unreachable_exit_2(ctx):
    missing = ctx.path("missing.sock")
    plain = ctx.path("plain-file")
    open(plain, "w").close()
    stale = ctx.path("stale.sock")
    s = socket.socket(socket.AF_UNIX)
    s.bind(stale)
    s.close()  # a socket file nobody listens on
    for path in (missing, plain, stale):
        for args in (["status"], ["--json", "status"], ["cutover", "--to", "green"],
                     ["cutover", "--wait"], ["abort"], ["check", "green"],
                     ["watch", "--count", "1"]):
            r = switchctl(args, sock=path)
            assert r.rc == 2, "switchctl -s %s %s: %r" % (path, " ".join(args), r)
            assert "cannot reach switchd on %s" % path in r.err, r
    # The socket also comes from $SWITCHCTL_SOCKET.
    r = switchctl(["status"], env={"SWITCHCTL_SOCKET": missing})
    assert r.rc == 2 and missing in r.err, r


# -- 0 and 3: status, cutover, abort, check, refused -------------------------------

@timeout(40)
def test_status_and_json(ctx):
    sw, b, g = start(ctx)
    r = expect(ctl(sw, "status"), 0, out=r"^live blue, phase steady, state version 1$")
    assert re.search(r"^  blue  healthy, 0 in flight; verify: none", r.out, re.M), r
    assert re.search(r"^\s+%s\s+up\s+requests 0, errors 0" % re.escape(g.addr), r.out,
                     re.M), r
    for args in (["--json", "status"], ["status", "--json"]):
        j = expect(ctl(sw, *args), 0).json()
        assert j["live"] == "blue" and j["phase"] == "steady" and j["version"] == 1, j
        assert j["colours"]["green"]["servers"][0]["name"] == g.addr, j
    for i in range(3):
        ctx.get(sw.port, "/x")
    j = ctl(sw, "--json", "status").json()
    assert j["colours"]["blue"]["servers"][0]["requests"] == 3, j


@timeout(60)
def test_cutover_abort_refused_and_timeout(ctx):
    # Green needs 10 passes at 100 ms: a gate lasts about a second.
    sw, b, g = start(ctx, green_opts={"health_rise": 10})
    # Refused (3): the live colour; nothing to abort; the JSON of a refusal.
    expect(ctl(sw, "cutover", "--to", "blue"), 3,
           err=r"refused \(409\): refused: already_live")
    j = expect(ctl(sw, "--json", "cutover", "--to", "blue"), 3).json()
    assert j["reason"] == "already_live" and j["error"] == "refused", j
    expect(ctl(sw, "abort"), 3, err=r"refused \(409\): refused: not_gating")
    v = admin_status(sw.admin_socket)["version"]
    expect(ctl(sw, "cutover", "--to", "green", "--version", str(v - 1)), 3,
           err=r"refused \(409\): stale state version")
    assert admin_status(sw.admin_socket)["phase"] == "steady"

    # Accepted (0), then refused while it runs, then aborted (0).
    r = expect(ctl(sw, "cutover", "--to", "green", "--version", str(v)), 0,
               out=r"^cutover to green accepted \(state version %d\)$" % (v + 1))
    expect(ctl(sw, "cutover", "--to", "green"), 3, err=r"refused \(409\): refused: in_progress")
    expect(ctl(sw, "check", "green"), 3, err=r"refused \(409\)")
    r = expect(ctl(sw, "abort"), 0)
    assert json.loads(r.out)["aborted"] is True, r
    st = admin_status(sw.admin_socket)
    assert st["phase"] == "steady" and st["last_gate"]["reason"] == "operator", st

    # --json cutover without --wait: the answer as JSON.
    j = expect(ctl(sw, "--json", "cutover", "--to", "green"), 0).json()
    assert j["accepted"] is True and j["to"] == "green" and j["phase"] == "gating", j
    j = json.loads(expect(ctl(sw, "abort", "--json"), 0).out)
    assert j["aborted"] is True, j

    # --timeout (6): the gate needs about a second, we wait 300 ms.
    t0 = time.time()
    r = expect(ctl(sw, "cutover", "--to", "green", "--wait", "--timeout", "300ms"), 6,
               err=r"still in progress after --timeout")
    assert time.time() - t0 < 3 * SLOW, r
    assert "cutover to green accepted" in r.out and "steady -> gating" in r.out, r
    st = admin_status(sw.admin_socket)
    assert st["phase"] in ("gating", "rechecking"), st
    expect(ctl(sw, "abort"), 0)
    assert ctx.get(sw.port, "/").header("X-Upstream") == "blue"

    # --wait to the end (0), human progress.
    r = expect(ctl(sw, "cutover", "--to", "green", "--wait", "--timeout", "20s"), 0,
               out=r"^done: green passed the gate and the re-check; live blue -> green$")
    for want in (r"^  health: \d+/10 passes in a row$", r"^  verify: pass",
                 r"^gating -> rechecking: ", r"^rechecking -> draining: live blue -> green",
                 r"^draining -> steady: blue drained"):
        assert re.search(want, r.out, re.M), "no %r: %r" % (want, r)
    assert ctx.get(sw.port, "/").header("X-Upstream") == "green"

    # --json --wait: one JSON record per transition, back to blue (the
    # default target is the standby colour).
    r = expect(ctl(sw, "--json", "cutover", "--wait", "--timeout", "20s"), 0)
    recs = r.json_lines()
    assert [x["reason"] for x in recs] == ["requested", "gate_passed", "flipped",
                                           "drained"], recs
    assert all(x["target"] == "blue" for x in recs), recs
    assert admin_status(sw.admin_socket)["live"] == "blue"


# -- 4 and 5: the gate's own answer, and no answer -------------------------------------

@timeout(60)
def test_check_and_gate_exit_codes_with_postgres(ctx):
    pg = ctx.postgres()
    sw, b, g = start(
        ctx, database={"dsn": '"%s"' % pg.dsn, "connect_timeout": "2s"},
        blue_opts={"require_migration": "unified_db 0002_personlink"},
        green_opts={"require_migration": "unified_db 0003_add_nickname",
                    "require_column": "unified_db_personlink nickname"})
    # 0: blue's requirement is met.
    expect(ctl(sw, "check", "blue"), 0, out=r"^  blue  healthy.*verify: pass - 1 requirement met")
    j = expect(ctl(sw, "--json", "check", "blue"), 0).json()
    assert j["verify"]["status"] == "pass", j
    # 4: green's are not, and the output says which.
    expect(ctl(sw, "check", "green"), 4,
           out=r"verify: fail - missing migration unified_db\.0003_add_nickname; "
               r"missing column unified_db_personlink\.nickname")
    j = expect(ctl(sw, "check", "green", "--json"), 4).json()
    assert j["verify"]["status"] == "fail" and "0003_add_nickname" in j["verify"]["message"], j
    expect(ctl(sw, "cutover", "--to", "green", "--wait", "--timeout", "20s"), 4,
           out=r"^failed: green verification failed: missing migration")
    recs = expect(ctl(sw, "--json", "cutover", "--to", "green", "--wait", "--timeout", "20s"),
                  4).json_lines()
    assert recs[-1]["reason"] == "verify_failed" and recs[-1]["to"] == "steady", recs
    # Fixed schema: 0.
    pg.sql("INSERT INTO django_migrations (app, name) VALUES ('unified_db', '0003_add_nickname');"
           "ALTER TABLE unified_db_personlink ADD COLUMN nickname text")
    expect(ctl(sw, "check", "green"), 0, out=r"verify: pass - 2 requirements met")
    # 5: the database is gone.
    pg.stop()
    expect(ctl(sw, "check", "green"), 5, out=r"verify: inconclusive - could not connect")
    j = expect(ctl(sw, "--json", "check", "blue"), 5).json()
    assert j["verify"]["status"] == "inconclusive", j
    expect(ctl(sw, "cutover", "--to", "green", "--wait", "--timeout", "20s"), 5,
           out=r"^inconclusive: green verification inconclusive")
    st = admin_status(sw.admin_socket)
    assert st["live"] == "blue" and not traffic(g), st


@timeout(40)
def test_check_without_requirements(ctx):
    sw, b, g = start(ctx)
    r = expect(ctl(sw, "check", "green"), 0,
               out=r"^  green healthy.*verify: pass - no requirements configured")
    assert re.search(r"^\s+%s\s+up" % re.escape(g.addr), r.out, re.M), r


@timeout(40)
def test_gate_timeout_exit_5(ctx):
    sw, b, g = start(ctx, cutover={"gate_timeout": "1s"}, green_opts={"health_rise": 100})
    expect(ctl(sw, "cutover", "--to", "green", "--wait", "--timeout", "20s"), 5,
           out=r"^inconclusive: gate deadline reached after \d+ ms: green had \d+ of "
               r"100 health passes")
    assert admin_status(sw.admin_socket)["last_gate"]["outcome"] == "inconclusive"


# -- watch --------------------------------------------------------------------------------

@timeout(40)
def test_watch(ctx):
    sw, b, g = start(ctx)
    stop = threading.Event()

    def load():
        c = Client(sw.port, timeout=5)
        try:
            while not stop.is_set():
                c.request("GET", "/w")
                time.sleep(0.01)
        finally:
            c.close()
    t = threading.Thread(target=load, daemon=True)
    t.start()
    try:
        time.sleep(0.3)
        r = expect(ctl(sw, "watch", "--count", "3", timeout=20), 0)
        rj = expect(ctl(sw, "--json", "watch", "--count", "2", timeout=20), 0)
    finally:
        stop.set()
        t.join(5)
    frames = re.findall(r"^live blue, phase steady, version \d+$", r.out, re.M)
    assert len(frames) == 3, r
    rates = [int(x) for x in re.findall(r"^  blue\s+(\d+) req/s", r.out, re.M)]
    assert len(rates) == 3 and rates[0] == 0 and rates[1] > 5 and rates[2] > 5, r
    assert len(re.findall(r"^  green\s+0 req/s\s+0 errors/s\s+0 in flight\s+healthy$",
                          r.out, re.M)) == 3, r
    assert 1.5 <= r.elapsed, "3 frames came faster than once a second: %r" % r
    recs = rj.json_lines()
    assert len(recs) == 2 and all(x["live"] == "blue" for x in recs), rj
    assert recs[1]["colours"]["blue"]["servers"][0]["requests"] > \
        recs[0]["colours"]["blue"]["servers"][0]["requests"], rj
