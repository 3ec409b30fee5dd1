#!/usr/bin/python3
"""The live demo of switchd, run by `make demo`: the deployment plan's
column rename, end to end, on this machine.

- A PostgreSQL cluster in a temporary directory (tests/pg-cluster.sh), the
  reference app of examples/bm_parliament migrated to the blue release and
  seeded, blue and green under Gunicorn (3 sync workers each, the app's
  gunicorn.conf.py), and switchd in front of them with health checks,
  schema requirements per colour, the error watch, and a rollback_migrate
  command (the reverse migration).
- About 200 requests/s of mixed reads and writes through switchd.
- `switchctl cutover --to green --hold 2s --migrate 'python3 manage.py
  migrate'`: the gate on green's health, the hold (new requests wait in
  switchd), the rename while nothing is in flight, the verification, the
  flip, the held requests released to green; then its cutover report.
- Green "breaks" (its views start answering 500): the error watch fires,
  switchd holds the requests again, runs the reverse migration, verifies
  blue's schema and flips back to blue.
- The figures: requests, failed requests during the cutover (must be 0),
  the 500s clients got from the broken green (bounded by the trigger and
  what was in flight), writes acknowledged and found in the database (none
  may be lost). Exit status 1 when a check fails.

It reuses the integration tests' harness (tests/integration/harness.py and
django_stack.py), so the demo and the tests run the same stack. Every
process it starts is stopped on the way out. SWITCHD_BUILD picks the build
(default build/).
"""

import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))

import harness  # noqa: E402
from django_stack import DjangoStack, Load, assert_no_lost_writes, \
    wait_colours_up  # noqa: E402

RATE = 200


def say(text):
    print(text, flush=True)


def status(sw):
    return harness.admin_status(sw.admin_socket)


def run_demo(ctx):
    ok = True
    say("== starting PostgreSQL, blue and green (Gunicorn), switchd")
    stack = DjangoStack(ctx, releases=("blue", "green"))
    blue = stack.gunicorn("blue")
    green = stack.gunicorn("green")
    port = ctx.port()
    back = stack.reverse_migrate_cmd("green").replace('"', '\\"')
    conf = stack.switchd_conf(port, blue.addr, green.addr, green_release="green",
                              cutover={"hold_max": "4s",
                                       "rollback_migrate": '"%s"' % back})
    sw = ctx.switchd(conf=conf, port=port)
    wait_colours_up(sw)
    ctl = [harness.switchctl_binary(), "-s", sw.admin_socket]
    say("   switchd on 127.0.0.1:%d, blue %s, green %s, config %s"
        % (port, blue.addr, green.addr, sw.conf_path))
    say("== load: about %d requests/s of reads and writes through switchd" % RATE)
    load = Load(sw.port, rate=RATE, stack=stack, threads=128).start()
    try:
        time.sleep(2.0)
        cmd = ctl + ["cutover", "--to", "green", "--hold", "2s", "--migrate",
                     stack.migrate_cmd("green"), "--timeout", "60s"]
        say("== switchctl cutover --to green --hold 2s --migrate 'python3 "
            "manage.py migrate'")
        t_cut = time.time()
        rc = subprocess.call(cmd, stdin=subprocess.DEVNULL)
        t_cut_end = time.time()
        if rc != 0:
            say("!! switchctl cutover exited %d" % rc)
            ok = False
        time.sleep(2.0)
        say("== green breaks: its views answer 500 from now on")
        t_break = time.time()
        stack.break_release("green")
        deadline = time.time() + 30
        st = status(sw)
        while st["phase"] not in ("rolled_back", "rollback_blocked") and \
                time.time() < deadline:
            time.sleep(0.05)
            st = status(sw)
        time.sleep(1.5)
    finally:
        load.stop()
    st = status(sw)
    rb = st.get("rollback") or {}
    rm = st.get("rollback_migrate") or {}
    h = st.get("hold") or {}
    say("   %s" % rb.get("message", "no rollback"))
    if rm.get("exit_status") is not None:
        say("   reverse migration: exit status %s after %s ms; %s requests held "
            "meanwhile (longest wait %.0f ms), released to %s"
            % (rm["exit_status"], rm["ms"], h.get("held"),
               h.get("wait_max_us", 0) / 1000.0, h.get("released_to")))
    say("   phase %s, live %s" % (st["phase"], st["live"]))
    if st["phase"] != "rolled_back" or st["live"] != "blue":
        say("!! expected a rollback to blue")
        ok = False

    failed = load.failed()
    during = [r for r in failed if t_cut <= r.wall <= t_cut_end + 1.0]
    # Requests in flight when the release broke fail too: counted from a
    # second before.
    broken = [r for r in failed if r.wall >= t_break - 1.0]
    if os.environ.get("DEMO_DEBUG"):
        for r in failed:
            say("   failed: %r status %s error %s at break%+.3f s" % (
                r, r.status, getattr(r, "error", None), r.wall - t_break))
    other = [r for r in failed if r not in during and r not in broken]
    fired = (st.get("watch") or {}).get("fired") or {}
    acked = assert_no_lost_writes(stack, load)
    say("== figures")
    say("   %s" % load.summary())
    say("   failed during the held cutover: %d (must be 0)" % len(during))
    say("   500s from the broken green before switchd flipped back: %d (the "
        "watch counted %s when %s fired)" % (len(broken), fired.get("errors"),
                                            fired.get("rule")))
    say("   writes acknowledged: %d, all found in the database" % acked)
    if during or other:
        say("!! failed requests outside the broken release: %r"
            % (during + other)[:5])
        ok = False
    return ok


def main():
    ctx = harness.Context("demo")
    ok = False
    try:
        ok = run_demo(ctx)
    except AssertionError as e:
        say("!! %s" % e)
        say(ctx.report())
    finally:
        errors = ctx.teardown()
        for e in errors:
            say("!! %s" % e)
            ok = False
        ctx.cleanup(keep=not ok)
    say("demo %s" % ("passed" if ok else "FAILED (files kept in %s)" % ctx.dir))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
