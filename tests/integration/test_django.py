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
