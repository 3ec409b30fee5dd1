"""switchctl against a real switchd: every subcommand, every documented exit
code (0 done, 1 usage, 2 unreachable, 3 refused, 4 gate failed,
5 inconclusive, 6 --timeout, 7 rolled back), --json output that parses,
--help for each subcommand; the error watch after a flip: rollback, commit,
cutover --wait/--watch, and the watch in status and the live view.
"""

import json
import re
import socket
import threading
import time

from harness import (SLOW, Client, admin_status, set_health, switchctl, timeout,
                     wait_for)

RISE = 2
SUBCOMMANDS = ("status", "cutover", "abort", "rollback", "commit", "check", "watch")


def hopts(**over):
    o = {"health": "on", "health_path": "/health", "health_interval": "250ms",
         "health_timeout": "200ms", "health_rise": RISE, "health_fall": 3}
    o.update(over)
    return o


def traffic(u):
    return [e for e in u.log() if not e.get("health")]


def start(ctx, green_opts=None, blue_opts=None, cutover=None, database=None, watch=None):
    """switchd with a blue and a green upstream, both health-checked and up.
    watch: the watch section's directives (None: its defaults, windows of
    5 and 30 minutes)."""
    b = ctx.upstream("blue")
    g = ctx.upstream("green")
    extra = []
    for name, opts in (("cutover", {"gate_timeout": "20s", "drain_timeout": "5s",
                                    **(cutover or {})}),
                       ("database", database), ("watch", watch)):
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
                 ["cutover", "--watch", "extra"],
                 ["rollback", "--confirm", "--force"], ["rollback", "--force", "--confirm"],
                 ["rollback", "-f"], ["rollback", "--bogus"], ["rollback", "extra"],
                 ["rollback", "--version", "x"], ["rollback", "--version"],
                 ["commit", "extra"], ["commit", "--confirm"], ["commit", "--version", "-1"],
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
                     r"failed,\s+5 inconclusive.*6 --timeout.*7 rolled back", r.out, re.S), r.out
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
                     ["rollback"], ["rollback", "--force"], ["commit"],
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
    # Green needs 10 passes at 250 ms: a gate lasts a few seconds. The
    # error watch is off: this is the flow without one (flip, drain,
    # steady), and a cutover back is allowed at once.
    sw, b, g = start(ctx, green_opts={"health_rise": 10}, watch={"enabled": "off"})
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
    # The cutover report comes last, on a line of its own.
    report = recs.pop()["report"]
    assert report["outcome"] == "passed" and report["exit"] == 0 and \
        report["live"] == "blue" and "flip_at_ms" in report, report
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
    report = recs.pop()["report"]
    assert report["outcome"] == "failed" and report["exit"] == 4 and \
        "flip_at_ms" not in report, report
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


# -- the error watch: rollback, commit, cutover --wait/--watch (7) --------------------

def status(sw):
    return admin_status(sw.admin_socket)


def wait_phase(sw, phase, timeout=5):
    wait_for(lambda: status(sw)["phase"] == phase, timeout * SLOW,
             what="phase %s (now %s)" % (phase, status(sw)["phase"]))


def errors(sw, n, path="/status/500"):
    """n requests the live colour answers with an error, one connection
    each."""
    for _ in range(n):
        c = Client(sw.port, timeout=5)
        try:
            assert c.request("GET", path).status == 500
        finally:
            c.close()


@timeout(30)
def test_rollback_and_commit_refused_before_any_cutover(ctx):
    sw, b, g = start(ctx)
    expect(ctl(sw, "rollback"), 3,
           err=r"^switchctl: refused \(409\): not_watching: no cutover to roll back$")
    for args in (["rollback", "--confirm"], ["rollback", "--force"]):
        expect(ctl(sw, *args), 3, err=r"refused \(409\): not_watching: ")
    j = expect(ctl(sw, "--json", "rollback"), 3).json()
    assert j["error"] == "refused" and j["reason"] == "not_watching", j
    assert j["phase"] == "steady" and j["message"], j
    expect(ctl(sw, "commit"), 3, err=r"^switchctl: refused \(409\): not_watching: ")
    j = expect(ctl(sw, "commit", "--json"), 3).json()
    assert j["reason"] == "not_watching", j
    # A stale --version is refused before anything else.
    expect(ctl(sw, "rollback", "--version", "0"), 3, err=r"refused \(409\): stale state version")
    st = status(sw)
    assert st["live"] == "blue" and st["phase"] == "steady" and st["version"] == 1, st
    assert st["watch"]["phase"] == "idle" and "rollback" not in st, st
    # Nothing to show yet: status has no watch block.
    r = expect(ctl(sw, "status"), 0)
    assert "watch of" not in r.out and "last rollback" not in r.out, r
    # --confirm and --force together: a usage error, found before connecting.
    expect(ctl(sw, "rollback", "--confirm", "--force"), 1,
           err=r"--confirm and --force are mutually exclusive")
    assert status(sw)["version"] == 1


@timeout(40)
def test_cutover_wait_ends_after_the_flip_while_the_watch_runs(ctx):
    # Windows far longer than the test: --wait must not wait for them.
    sw, b, g = start(ctx, cutover={"drain_timeout": "10s"},
                     watch={"auto_window": "60s", "manual_window": "120s"})
    # A slow request on blue is in flight at the flip: the wait ends when
    # blue has drained, not at the flip.
    slow = {}
    t = threading.Thread(target=lambda: slow.setdefault("r", ctx.get(sw.port, "/delay/1500")))
    t.start()
    time.sleep(0.2)
    t0 = time.time()
    r = expect(ctl(sw, "cutover", "--to", "green", "--wait", "--timeout", "20s"), 0)
    took = time.time() - t0
    t.join(10)
    assert slow["r"].status == 200 and slow["r"].header("X-Upstream") == "blue", slow
    lines = r.out.splitlines()
    # The cutover report ends the output; what came before it is the
    # follow's.
    assert "cutover report" in lines, r
    lines = lines[:lines.index("cutover report")]
    assert lines[-2] == "done: green passed the gate and the re-check; live blue -> green", r
    assert lines[-1] == ("watching green: auto window 60 s, manual window 120 s; "
                         "`switchctl watch` follows it"), r
    for want in (r"^rechecking -> watching: live blue -> green; draining blue",
                 r"^  drain: 1 in flight on blue$", r"^watching -> watching: blue drained in \d+ ms$"):
        assert re.search(want, r.out, re.M), "no %r: %r" % (want, r)
    assert took < 15 * SLOW, r
    st = status(sw)
    assert st["phase"] == "watching" and st["live"] == "green", st
    assert "drain" not in st and st["last_drain"]["reason"] == "drained", st
    assert st["watch"]["phase"] == "watching" and st["watch"]["auto_left_ms"] > 40000, st
    assert ctx.get(sw.port, "/").header("X-Upstream") == "green"
    # While it is watched a new cutover is refused, with the way out.
    expect(ctl(sw, "cutover", "--to", "blue"), 3,
           err=r"refused \(409\): refused: watching\n.*switchctl commit.*switchctl rollback")
    # --json --wait: transition records, the drain's end last, then the
    # report.
    expect(ctl(sw, "commit"), 0)
    recs = expect(ctl(sw, "--json", "cutover", "--wait", "--timeout", "20s"), 0).json_lines()
    report = recs.pop()["report"]
    assert report["phase"] == "watching" and report["failed"] == 0, report
    assert [x["reason"] for x in recs] == ["requested", "gate_passed", "flipped",
                                           "drained"], recs
    assert recs[2]["to"] == "watching" and recs[3]["to"] == "watching", recs
    assert status(sw)["live"] == "blue"


@timeout(40)
def test_rollback_while_watching(ctx):
    sw, b, g = start(ctx, watch={"auto_window": "30s", "manual_window": "60s"})
    expect(ctl(sw, "cutover", "--wait", "--timeout", "20s"), 0, out=r"^watching green: ")
    assert ctx.get(sw.port, "/").header("X-Upstream") == "green"
    before = len(traffic(b))
    r = expect(ctl(sw, "rollback"), 0,
               out=r"^rolled back green -> blue \(manual\): requested by uid \d+")
    assert re.search(r"^live blue, phase rolled_back, state version \d+$", r.out, re.M), r
    st = status(sw)
    assert st["live"] == "blue" and st["phase"] == "rolled_back", st
    assert st["rollback"]["outcome"] == "rolled_back" and st["rollback"]["mode"] == "manual", st
    assert st["rollback"]["trigger"] == "operator", st
    # Requests go to blue again, at once.
    for _ in range(5):
        assert ctx.get(sw.port, "/").header("X-Upstream") == "blue"
    assert len(traffic(b)) == before + 5, traffic(b)
    # Once is enough.
    expect(ctl(sw, "rollback"), 3, err=r"refused \(409\): already_rolled_back: ")
    expect(ctl(sw, "rollback", "--force"), 3, err=r"refused \(409\): already_rolled_back: ")
    r = expect(ctl(sw, "status"), 0, out=r"^live blue, phase rolled_back")
    assert re.search(r"^watch of green: final, outcome \w+, .*\n  ended by the rollback$",
                     r.out, re.M), r
    assert re.search(r"^last rollback: rolled_back, trigger operator \(manual\), "
                     r"green -> blue: rolled back green -> blue \(manual\)", r.out, re.M), r
    # From rolled_back a new cutover may start; --json rollback is the answer.
    expect(ctl(sw, "cutover", "--wait", "--timeout", "20s"), 0)
    j = expect(ctl(sw, "--json", "rollback"), 0).json()
    assert j["rolled_back"] is True and j["live"] == "blue" and j["phase"] == "rolled_back", j


@timeout(60)
def test_rollback_needs_confirm_then_force(ctx):
    sw, b, g = start(ctx, watch={"auto_window": "1s", "manual_window": "4s"})
    expect(ctl(sw, "cutover", "--wait", "--timeout", "20s"), 0)
    # The manual window: a plain rollback is refused; --confirm rolls back.
    wait_phase(sw, "committed_manual")
    r = expect(ctl(sw, "status"), 0)
    assert re.search(r"^  auto window over \(1 s\), manual window [\d.]+ s left \(of 4 s\): "
                     r"rollback needs --confirm$", r.out, re.M), r
    expect(ctl(sw, "rollback"), 3,
           err=r"^switchctl: refused \(409\): needs_confirm: the automatic window is over")
    assert status(sw)["live"] == "green"
    expect(ctl(sw, "rollback", "--confirm"), 0, out=r"^rolled back green -> blue \(confirm\)")
    assert status(sw)["live"] == "blue"
    assert ctx.get(sw.port, "/").header("X-Upstream") == "blue"

    # After both windows: --confirm is not enough; --force rolls back.
    expect(ctl(sw, "cutover", "--wait", "--timeout", "20s"), 0)
    wait_phase(sw, "final", timeout=8)
    for args in (["rollback"], ["rollback", "--confirm"]):
        expect(ctl(sw, *args), 3, err=r"^switchctl: refused \(409\): needs_force: ")
    assert status(sw)["live"] == "green"
    expect(ctl(sw, "rollback", "--force"), 0, out=r"^rolled back green -> blue \(force\)")
    st = status(sw)
    assert st["live"] == "blue" and st["rollback"]["mode"] == "force", st
    assert ctx.get(sw.port, "/").header("X-Upstream") == "blue"


@timeout(40)
def test_commit_then_a_new_cutover(ctx):
    sw, b, g = start(ctx, watch={"auto_window": "30s", "manual_window": "60s"})
    expect(ctl(sw, "cutover", "--wait", "--timeout", "20s"), 0)
    v = status(sw)["version"]
    expect(ctl(sw, "commit", "--version", str(v - 1)), 3, err=r"refused \(409\): stale state version")
    expect(ctl(sw, "commit", "--version", str(v)), 0,
           out=r"^committed: green stands \(phase final, state version %d\)$" % (v + 1))
    st = status(sw)
    assert st["phase"] == "final" and st["live"] == "green", st
    assert st["watch"]["phase"] == "final", st
    r = expect(ctl(sw, "status"), 0)
    assert re.search(r"^  ended by a commit: rollback needs --force$", r.out, re.M), r
    expect(ctl(sw, "commit"), 3, err=r"refused \(409\): not_watching: ")
    expect(ctl(sw, "rollback", "--confirm"), 3, err=r"refused \(409\): needs_force: ")
    # The watch is over: a new cutover is accepted, and followed.
    expect(ctl(sw, "cutover", "--wait", "--timeout", "20s"), 0,
           out=r"^final -> gating: cutover to blue requested")
    st = status(sw)
    assert st["live"] == "blue" and st["phase"] == "watching", st
    j = expect(ctl(sw, "--json", "commit"), 0).json()
    assert j["committed"] is True and j["live"] == "blue" and j["phase"] == "final", j


@timeout(60)
def test_cutover_wait_exits_7_on_a_rollback(ctx):
    # --wait is still following blue's drain (a slow request) when an
    # operator rolls back: exit 7 with the rollback's message.
    sw, b, g = start(ctx, cutover={"drain_timeout": "20s"},
                     watch={"auto_window": "30s", "manual_window": "60s"})
    slow = threading.Thread(target=lambda: ctx.get(sw.port, "/delay/4000", timeout=10))
    slow.start()
    time.sleep(0.2)
    res = {}
    t = threading.Thread(target=lambda: res.setdefault(
        "r", ctl(sw, "cutover", "--wait", "--timeout", "30s")))
    t.start()
    wait_phase(sw, "watching")
    assert "drain" in status(sw)
    expect(ctl(sw, "rollback"), 0)
    t.join(20 * SLOW)
    r = expect(res["r"], 7,
               out=r"^rolled back \(trigger operator\): rolled back green -> blue \(manual\)")
    assert "done:" not in r.out, r
    slow.join(10)


@timeout(60)
def test_cutover_watch_waits_through_the_auto_window(ctx):
    # An automatic rollback (R3, three errors in a row) is exit 7 with the
    # trigger; a quiet auto window is exit 0, after the window.
    sw, b, g = start(ctx, watch={"auto_window": "2s", "manual_window": "4s",
                                 "max_consecutive": 3})
    res = {}
    t = threading.Thread(target=lambda: res.setdefault(
        "r", ctl(sw, "cutover", "--watch", "--timeout", "30s")))
    t.start()
    wait_phase(sw, "watching")
    errors(sw, 3)
    t.join(20 * SLOW)
    r = expect(res["r"], 7, out=r"^rolled back \(trigger r3\): rolled back green -> blue \(auto\)")
    assert re.search(r"^  watch fired: r3 fire on green ", r.out, re.M), r
    st = status(sw)
    assert st["live"] == "blue" and st["rollback"]["trigger"] == "r3", st

    t0 = time.time()
    r = expect(ctl(sw, "cutover", "--watch", "--timeout", "30s"), 0,
               out=r"^watch of green: auto window over, no trigger fired \(\d+ requests, 0 errors\)$")
    assert time.time() - t0 >= 1.8, "--watch returned before the 2 s auto window: %r" % r
    assert re.search(r"^watching -> committed_manual: auto window of 2000 ms over", r.out, re.M), r
    assert re.search(r"^done: green passed the gate", r.out, re.M), r
    # --timeout still bounds --watch.
    expect(ctl(sw, "commit"), 0)
    expect(ctl(sw, "cutover", "--watch", "--timeout", "1s"), 6,
           err=r"still in progress after --timeout")


@timeout(40)
def test_status_shows_the_watch_against_its_thresholds(ctx):
    sw, b, g = start(ctx, watch={"auto_window": "30s", "manual_window": "60s",
                                 "min_requests": 5, "max_errors": 7, "alpha": "0.01",
                                 "max_error_ratio": "60%", "ratio_window": "5s",
                                 "max_consecutive": 4, "health_trigger": "off"})
    for _ in range(10):
        ctx.get(sw.port, "/")  # blue's baseline: 0 errors in 10
    expect(ctl(sw, "cutover", "--wait", "--timeout", "20s"), 0)
    errors(sw, 2)
    for _ in range(10):
        ctx.get(sw.port, "/")
    r = expect(ctl(sw, "status"), 0, out=r"^live green, phase watching")
    for want in (r"^watch of green: watching, outcome pending, [\d.]+ s since the flip$",
                 r"^  auto window [\d.]+ s left \(of 30 s\), manual window [\d.]+ s left "
                 r"\(of 60 s\)$",
                 r"^  since the flip: 12 requests, 2 errors$",
                 r"^  baseline: 0/10 errors, ratio 0\.0455$",
                 r"^  R1 errors 2/7 \(alpha 0\.01\)$",
                 r"^  R2 window 5 s: 2/12 = 16\.7% / 60%$",
                 r"^  R3 consecutive 0/4$",
                 r"^  R4 off$"):
        assert re.search(want, r.out, re.M), "status lacks %r: %r" % (want, r)
    assert "fired:" not in r.out and "last rollback" not in r.out, r
    # --json is the raw document.
    j = expect(ctl(sw, "--json", "status"), 0).json()
    assert j["watch"]["triggers"]["r3"]["max_consecutive"] == 4, j["watch"]
    # Four errors in a row: R3 fires and rolls back; status says which and why.
    errors(sw, 4)
    wait_phase(sw, "rolled_back")
    r = expect(ctl(sw, "status"), 0, out=r"^live blue, phase rolled_back")
    for want in (r"^watch of green: final, outcome fired, ",
                 r"^  R3 consecutive 4/4$",
                 r"^  fired: r3 fire on green [\d.]+ s after the flip: .*4 errors in a row",
                 r"^last rollback: rolled_back, trigger r3 \(auto\), green -> blue: "
                 r"rolled back green -> blue \(auto\)"):
        assert re.search(want, r.out, re.M), "status lacks %r: %r" % (want, r)


@timeout(40)
def test_watch_view_shows_the_watch_and_its_events(ctx):
    sw, b, g = start(ctx, watch={"auto_window": "30s", "manual_window": "60s",
                                 "max_consecutive": 3})
    expect(ctl(sw, "cutover", "--wait", "--timeout", "20s"), 0)
    res = {}
    t = threading.Thread(target=lambda: res.setdefault("r", ctl(sw, "watch", "--count", "3")))
    tj = threading.Thread(target=lambda: res.setdefault(
        "j", ctl(sw, "--json", "watch", "--count", "3")))
    t.start()
    tj.start()
    time.sleep(0.5)
    errors(sw, 3)  # R3 fires: an automatic rollback
    t.join(20 * SLOW)
    tj.join(20 * SLOW)
    r = expect(res["r"], 0)
    assert re.search(r"^  watch green: watching, 0 requests, 0 errors; auto window [\d.]+ s "
                     r"left \(of 30 s\), manual window [\d.]+ s left \(of 60 s\)$", r.out, re.M), r
    assert re.search(r"^    R1 errors 0/10 \(alpha 0\.001\), R2 window 10 s: 0/0 = 0\.0% / 50% "
                     r"\(needs 20 requests\), R3 consecutive 0/3, R4 health up$", r.out, re.M), r
    assert re.search(r"^\d\d:\d\d:\d\d watch: r3 fire on green [\d.]+ s after the flip: ",
                     r.out, re.M), r
    assert re.search(r"^\d\d:\d\d:\d\d rollback: rolled_back, trigger r3 \(auto\): "
                     r"rolled back green -> blue", r.out, re.M), r
    assert re.search(r"^live blue, phase rolled_back", r.out, re.M), r
    assert re.search(r"^  watch green: final, 3 requests, 3 errors; ended by the rollback$",
                     r.out, re.M), r
    recs = expect(res["j"], 0).json_lines()
    events = [x for x in recs if "event" in x]
    assert [x["event"] for x in events] == ["watch", "rollback"], recs
    assert events[0]["data"]["rule"] == "r3" and events[0]["data"]["verdict"] == "fire", events
    assert events[1]["data"]["outcome"] == "rolled_back", events
    assert len([x for x in recs if "live" in x]) == 3, recs


@timeout(60)
def test_blocked_rollback_exits_7_and_refuses_until_blue_is_up(ctx):
    # Blue goes down while green is watched; then green fails (R3): the
    # automatic rollback is blocked, green keeps serving, --watch says so
    # (7), a rollback by hand is refused with why, and a commit ends it.
    sw, b, g = start(ctx, watch={"auto_window": "30s", "manual_window": "60s",
                                 "max_consecutive": 3})
    res = {}
    t = threading.Thread(target=lambda: res.setdefault(
        "r", ctl(sw, "cutover", "--watch", "--timeout", "40s")))
    t.start()
    wait_phase(sw, "watching")
    set_health(b, 500)
    wait_for(lambda: not status(sw)["colours"]["blue"]["healthy"], 5 * SLOW, what="blue down")
    errors(sw, 3)
    t.join(20 * SLOW)
    r = expect(res["r"], 7, out=r"^rollback blocked \(trigger r3\): rollback to blue blocked: "
                                r"blue is unhealthy")
    st = status(sw)
    assert st["phase"] == "rollback_blocked" and st["live"] == "green", st
    assert st["rollback"]["outcome"] == "blocked", st
    r = expect(ctl(sw, "status"), 0)
    assert re.search(r"^last rollback: blocked, trigger r3 \(auto\), green -> blue: ", r.out,
                     re.M), r
    expect(ctl(sw, "rollback"), 3,
           err=r"^switchctl: refused \(409\): not_ready: blue is unhealthy")
    j = expect(ctl(sw, "--json", "rollback", "--force"), 3).json()
    assert j["reason"] == "not_ready" and j["phase"] == "rollback_blocked", j
    assert ctx.get(sw.port, "/").header("X-Upstream") == "green"
    expect(ctl(sw, "commit"), 0, out=r"^committed: green stands \(phase final")
