"""The deployment plan's column rename, replayed with the real stack: the
reference app of examples/bm_parliament (Django 3.2, Gunicorn with 3 sync
workers, CONN_MAX_AGE 600) on a real PostgreSQL, behind switchd, under about
200 requests/s of mixed reads and writes (django_stack.Load).

- The naive order (migrate, then cut over): from the moment the rename
  commits until the flip, blue's ORM asks for a column that no longer exists
  and every request that touches the table fails with 500, while blue's
  /health/ (and /health/detailed/) keep answering 200. The test asserts that
  this happens, that every failure came from blue in that window, and that no
  acknowledged write was lost; it prints the figures.
- A compatible release (only the metadata-only migration 0023): migrate and
  cut over under the same load with zero failed requests; blue's schema
  requirements still pass after the flip, so a rollback would be possible.
"""

import re
import time

from django_stack import (MIGRATION_RELATED_NAME, MIGRATION_RENAME, NEW_COLUMN,
                          OLD_COLUMN, DjangoStack, Load, assert_no_lost_writes,
                          history_time, wait_colours_up)
from harness import SLOW, admin_status, switchctl, timeout

RATE = 200


def cutover(sw):
    return switchctl(["cutover", "--to", "green", "--wait", "--timeout", "30s"],
                     sock=sw.admin_socket, timeout=40)


def start(ctx, green_release, **sections):
    stack = DjangoStack(ctx, releases=("blue", green_release))
    blue = stack.gunicorn("blue")
    green = stack.gunicorn(green_release)
    port = ctx.port()
    sw = ctx.switchd(conf=stack.switchd_conf(port, blue.addr, green.addr,
                                             green_release=green_release, **sections),
                     port=port)
    wait_colours_up(sw)
    return stack, sw, blue, green


@timeout(60)
def test_django_naive_order(ctx):
    # Blue cannot take the traffic back once the column is renamed, so a
    # rollback would only move the failures: the watch is off.
    stack, sw, blue, green = start(ctx, "green", watch={"enabled": "off"})
    # Green's gate refuses while the schema is blue's.
    chk = switchctl(["check", "green"], sock=sw.admin_socket)
    assert chk.rc == 4 and "missing migration unified_db.%s" % MIGRATION_RENAME[1] \
        in chk.out and "missing column unified_db_personlink.%s" % NEW_COLUMN in chk.out, chk

    load = Load(sw.port, rate=RATE, stack=stack).start()
    try:
        time.sleep(2.0)
        t_mig = time.time()
        mig = stack.manage("green", "migrate")
        t_mig_end = time.time()
        # Blue's health still passes after the rename: health does not see
        # schema drift, and /health/detailed/ lists nothing pending for blue
        # (its code knows no newer migration).
        st_h, _, body_h = blue.get("/health/detailed/")
        assert st_h == 200 and b'"pending_migrations": []' in body_h, (st_h, body_h)
        ctl = cutover(sw)
        time.sleep(2.0)
    finally:
        load.stop()
    assert ctl.rc == 0 and re.search(r"verify: pass", ctl.out), ctl
    assert "Applying %s.%s... OK" % MIGRATION_RENAME in mig.out, mig.out
    assert NEW_COLUMN in stack.columns() and OLD_COLUMN not in stack.columns()

    st = admin_status(sw.admin_socket)
    assert st["live"] == "green" and st["phase"] == "steady", st
    flip = history_time(st, "flipped")
    margin = 0.25 * SLOW

    failed = load.failed()
    assert failed, "no failed request between the rename and the flip: %s" % load.summary()
    not_blue = [r for r in failed if r.release != "blue" or r.status != 500]
    assert not not_blue, "failures other than blue's 500: %r" % not_blue[:5]
    outside = [r for r in failed if not t_mig <= r.wall <= flip + margin]
    assert not outside, "failures outside [migrate start, flip]: %r (migrate %.3f, flip %.3f)" % (
        outside[:5], t_mig, flip)
    before = [r for r in load.records if r.wall < t_mig]
    assert len(before) > 100 and all(r.ok and r.release == "blue" for r in before), \
        "before the migration: %d requests, not all 2xx from blue" % len(before)
    after = [r for r in load.records if r.wall > flip + margin]
    assert len(after) > 100 and all(r.ok and r.release == "green" for r in after), \
        "after the flip: %d requests, not all 2xx from green: %r" % (
            len(after), [r for r in after if not r.ok or r.release != "green"][:5])
    acked = assert_no_lost_writes(stack, load)

    first = failed[0].wall
    window = [r for r in load.records if first <= r.wall <= flip]
    print("     naive order: %d failed requests (all blue 500s), %d of the %d sent "
          "in the %.0f ms from the first failure to the flip; migrate took %.0f ms "
          "(ended %.0f ms before the flip); %d acked writes, none lost" % (
              len(failed), len([r for r in window if not r.ok]), len(window),
              (flip - first) * 1000, mig.elapsed * 1000, (flip - t_mig_end) * 1000,
              acked))
    print("     load: %s" % load.summary())


@timeout(60)
def test_django_compatible(ctx):
    stack, sw, blue, green = start(ctx, "green-compat")
    # Before its migration the compatible release is refused too.
    chk = switchctl(["check", "green"], sock=sw.admin_socket)
    assert chk.rc == 4 and "missing migration constituents.%s" % MIGRATION_RELATED_NAME[1] \
        in chk.out, chk

    load = Load(sw.port, rate=RATE, stack=stack).start()
    try:
        time.sleep(1.5)
        # 0023 only changes a related_name: no SQL, blue keeps working.
        mig = stack.manage("green-compat", "migrate")
        time.sleep(0.5)
        ctl = cutover(sw)
        time.sleep(2.0)
    finally:
        load.stop()
    assert ctl.rc == 0 and re.search(r"verify: pass", ctl.out), ctl
    assert "Applying %s.%s... OK" % MIGRATION_RELATED_NAME in mig.out, mig.out
    assert "unified_db" not in mig.out.split("Running migrations:")[-1], mig.out
    assert OLD_COLUMN in stack.columns()

    failed = load.failed()
    assert not failed, "%d failed requests: %r\n%s" % (len(failed), failed[:5], load.summary())
    st = admin_status(sw.admin_socket)
    assert st["live"] == "green" and st["phase"] == "watching", st
    flip = history_time(st, "flipped")
    margin = 0.25 * SLOW
    before = [r for r in load.records if r.wall < flip]
    after = [r for r in load.records if r.wall > flip + margin]
    assert len(before) > 100 and all(r.release == "blue" for r in before), \
        "requests before the flip not all from blue: %r" % \
        [r for r in before if r.release != "blue"][:5]
    assert len(after) > 100 and all(r.release == "green-compat" for r in after), \
        "requests after the flip not all from green-compat: %r" % \
        [r for r in after if r.release != "green-compat"][:5]

    # Blue's schema requirements still hold: the flip could be rolled back.
    chk = switchctl(["check", "blue"], sock=sw.admin_socket)
    assert chk.rc == 0 and re.search(r"verify: pass - 1 requirement met", chk.out), chk
    acked = assert_no_lost_writes(stack, load)
    print("     compatible: 0 failed; migrate took %.0f ms; %d acked writes, none lost"
          % (mig.elapsed * 1000, acked))
    print("     load: %s" % load.summary())


def held_cutover(sw, stack, hold="2s", extra=()):
    return switchctl(["cutover", "--to", "green", "--hold", hold, "--migrate",
                      stack.migrate_cmd("green"), "--timeout", "30s"] + list(extra),
                     sock=sw.admin_socket, timeout=45)


@timeout(90)
def test_django_hold_migrate(ctx):
    """B, the hold: `switchctl cutover --to green --hold 2s --migrate CMD`
    under load: zero failed requests, the held requests' added latency and
    the longest lock wait reported, no lost write."""
    stack, sw, blue, green = start(ctx, "green")
    # Enough threads that held requests do not slow the arrivals: the
    # clients keep coming at the rate while the first ones wait.
    load = Load(sw.port, rate=RATE, stack=stack, threads=128).start()
    try:
        time.sleep(2.0)
        ctl = held_cutover(sw, stack)
        time.sleep(2.0)
    finally:
        load.stop()
    assert ctl.rc == 0, ctl
    assert "Applying %s.%s... OK" % MIGRATION_RENAME in ctl.out, ctl.out
    assert NEW_COLUMN in stack.columns() and OLD_COLUMN not in stack.columns()
    failed = load.failed()
    assert not failed, "%d failed requests: %r\n%s" % (len(failed), failed[:5], load.summary())
    st = admin_status(sw.admin_socket)
    assert st["live"] == "green" and st["phase"] == "watching", st
    h = st["hold"]
    assert h["end"] == "flip" and h["released_to"] == "green", h
    assert h["held"] > 0 and h["released"] == h["held"] and h["rejected"] == 0, h
    # Every request after the flip at green, every one before it at blue.
    flip = history_time(st, "flipped")
    assert all(r.release == "blue" for r in load.records if r.wall < h["started_ms"] / 1000.0 - 0.05)
    assert all(r.release == "green" for r in load.records if r.wall > flip + 0.25 * SLOW)
    m = re.search(r"hold released\s+\+[\d.]+ s  flip: (\d+) held, (\d+) released to green, "
                  r"0 rejected \(503\); added latency max ([\d.]+) ms, p99 ([\d.]+) ms", ctl.out)
    assert m, ctl.out
    lock = re.search(r"longest lock wait\s+(\d+) ms \((\d+) samples", ctl.out)
    assert lock and int(lock.group(2)) > 0, ctl.out
    tot = re.search(r"totals\s+(\d+) requests, 0 failed", ctl.out)
    assert tot, ctl.out
    acked = assert_no_lost_writes(stack, load)
    print("     hold: %s held, added latency max %s ms p99 %s ms, longest lock wait "
          "%s ms (%s samples); %d acked writes, none lost" % (
              m.group(1), m.group(3), m.group(4), lock.group(1), lock.group(2), acked))
    print("     load: %s" % load.summary())
    print("     report:\n" + "\n".join("       " + l for l in ctl.out.splitlines()
                                        if l.startswith("  ") or l.startswith("cutover report")))


def broken_green(ctx, rollback_migrate):
    """A held cutover to green, then green's views start failing."""
    cut = {"hold_max": "4s"}
    if rollback_migrate:
        cut["rollback_migrate"] = None  # filled in below, once the stack exists
    stack = DjangoStack(ctx, releases=("blue", "green"))
    blue = stack.gunicorn("blue")
    green = stack.gunicorn("green")
    if rollback_migrate:
        cut["rollback_migrate"] = '"%s"' % stack.reverse_migrate_cmd("green").replace('"', '\\"')
    port = ctx.port()
    sw = ctx.switchd(conf=stack.switchd_conf(port, blue.addr, green.addr,
                                             green_release="green", cutover=cut),
                     port=port)
    wait_colours_up(sw)
    load = Load(sw.port, rate=RATE, stack=stack, threads=128).start()
    try:
        time.sleep(1.5)
        ctl = held_cutover(sw, stack, hold="4s")
        assert ctl.rc == 0, ctl
        time.sleep(1.0)
        t_break = time.time()
        stack.break_release("green")
        def settled():
            st = admin_status(sw.admin_socket)
            return st["phase"] in ("rolled_back", "rollback_blocked") and st
        st = wait_for_value(settled, 20 * SLOW)
        time.sleep(1.5)
    finally:
        load.stop()
    return stack, sw, load, st, t_break


def wait_for_value(fn, timeout_s, interval=0.05):
    end = time.time() + timeout_s
    while time.time() < end:
        v = fn()
        if v:
            return v
        time.sleep(interval)
    raise AssertionError("not settled within %.1f s" % timeout_s)


@timeout(120)
def test_django_broken_green_rollback_migrate(ctx):
    """C with rollback_migrate: green breaks after the flip, R3 fires, the
    reverse migration runs inside a hold, blue is verified and serves again."""
    stack, sw, load, st, t_break = broken_green(ctx, True)
    assert st["phase"] == "rolled_back" and st["live"] == "blue", st
    assert OLD_COLUMN in stack.columns() and NEW_COLUMN not in stack.columns()
    rm = st["rollback_migrate"]
    assert rm["exit_status"] == 0 and not rm["timed_out"], rm
    h = st["hold"]
    assert h["by"] == "rollback to blue" and h["end"] == "flip" and h["released_to"] == "blue", h
    rb_at = history_time(st, "rollback")
    # Failures: green's own 500s from the break until the trigger (plus what
    # was in flight), never anything after the flip back.
    failed = load.failed()
    late = [r for r in failed if r.wall > rb_at + 0.25 * SLOW]
    assert not late, "failures after the rollback: %r" % late[:5]
    assert all(r.release == "green" and r.status == 500 for r in failed), failed[:5]
    after = [r for r in load.records if r.wall > rb_at + 0.25 * SLOW]
    assert len(after) > 50 and all(r.ok and r.release == "blue" for r in after), \
        [r for r in after if not r.ok or r.release != "blue"][:5]
    errors_at_trigger = st["watch"]["fired"]["errors"]
    assert len(failed) <= errors_at_trigger + 64, (len(failed), errors_at_trigger)
    acked = assert_no_lost_writes(stack, load)
    print("     broken green: %d failed (watch counted %d at the trigger), reverse "
          "migration %d ms, %d held during it (max wait %.0f ms), rollback %.0f ms "
          "after the break; %d acked writes, none lost" % (
              len(failed), errors_at_trigger, rm["ms"], h["held"],
              h["wait_max_us"] / 1000.0, (rb_at - t_break) * 1000, acked))


@timeout(120)
def test_django_broken_green_blocked(ctx):
    """C without rollback_migrate: blue's schema is gone, so the rollback is
    blocked and green keeps serving."""
    stack, sw, load, st, t_break = broken_green(ctx, False)
    assert st["phase"] == "rollback_blocked" and st["live"] == "green", st
    assert "missing column unified_db_personlink.%s" % OLD_COLUMN in st["rollback"]["message"], st["rollback"]
    assert NEW_COLUMN in stack.columns()
    blocked_at = history_time(st, "rollback_blocked")
    late = [r for r in load.records if r.wall > blocked_at + 0.1]
    assert len(late) > 50 and all(r.release == "green" for r in late), late[:5]
    assert_no_lost_writes(stack, load)
