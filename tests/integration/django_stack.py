"""The whole Django stack of examples/bm_parliament for integration tests: a
PostgreSQL cluster, the releases of the reference app, their Gunicorns, the
switchd config that puts them behind switchd, a load generator that records
what every client saw, and the check that no acknowledged write was lost.

No test functions here; test_django.py uses it. Everything belongs to the
test's Context: the releases are built in its folder, the cluster and every
Gunicorn are stopped at its teardown.

    stack = DjangoStack(ctx)                  # Postgres, blue migrated and seeded
    blue, green = stack.gunicorn("blue"), stack.gunicorn("green")
    port = ctx.port()
    sw = ctx.switchd(conf=stack.switchd_conf(port, blue.addr, green.addr),
                     port=port)
    load = Load(port, stack=stack).start()
    stack.manage("green", "migrate")          # the column rename
    ...
    load.stop()
    assert_no_lost_writes(stack, load)

The releases are Django 3.2 under Debian's Gunicorn, run with
/usr/bin/python3: blue is the code before the seed's migrations, green the
code after them (the column of PersonLink's member renamed), green-compat a
release that only needs the metadata-only migration 0023.
"""

import collections
import http.client
import json
import os
import random
import shlex
import signal
import subprocess
import threading
import time

from harness import PY, ROOT, SLOW, admin_status, make_config, read_file, tail, \
    wait_for, wait_port

EXAMPLE = os.path.join(ROOT, "examples", "bm_parliament")
MAKE_RELEASE = os.path.join(EXAMPLE, "make-release")
GUNICORN_CONF = os.path.join(EXAMPLE, "gunicorn.conf.py")

TABLE = "unified_db_personlink"
OLD_COLUMN = "fahanie_cares_member_id"
NEW_COLUMN = "bm_parliament_member_id"

# The migrations of the seed: 0023 changes a related_name (no SQL), 0002
# renames the column. Blue's own latest migrations are the initial ones.
MIGRATION_RELATED_NAME = ("constituents", "0023_member_related_name")
MIGRATION_RENAME = ("unified_db", "0002_rename_member")
BLUE_MIGRATIONS = (("unified_db", "0001_initial"), ("constituents", "0022_initial"))

# What each release's code needs from the database: the require_* lines of
# the upstream section of the colour that runs it.
REQUIREMENTS = {
    "blue": [
        ("require_column", TABLE, OLD_COLUMN),
    ],
    "green": [
        ("require_migration",) + MIGRATION_RENAME,
        ("require_migration",) + MIGRATION_RELATED_NAME,
        ("require_column", TABLE, NEW_COLUMN),
    ],
    "green-compat": [
        ("require_migration",) + MIGRATION_RELATED_NAME,
        ("require_column", TABLE, OLD_COLUMN),
    ],
}

# Health checks of /health/ (no database: it cannot see schema drift). A
# timeout must be shorter than the interval. A probe waits in Gunicorn's
# backlog behind the requests already there: when a hold releases a hundred
# requests at once to 3 sync workers, the last probe of that burst waits
# about 200-300 ms on a quiet machine and over a second on a loaded one; a
# 200 ms timeout took blue down for a moment (its requests then got
# switchd's 503). 800 ms with fall 3 needs 3 s of no answer.
HEALTH = {"health": "on", "health_path": "/health/", "health_interval": "1s",
          "health_timeout": "800ms", "health_rise": 2, "health_fall": 3}


class DjangoGunicorn:
    """One release of the app under Gunicorn (the example's gunicorn.conf.py:
    3 sync workers) on a free port, in its own process group."""

    def __init__(self, stack, release, port=None):
        ctx = stack.ctx
        self.stack = stack
        self.release = release
        self.name = release
        self.port = port or ctx.port()
        self.addr = "127.0.0.1:%d" % self.port
        self.logfile = os.path.join(ctx.dir, "gunicorn-%s-%d.log" % (release, self.port))
        env = stack.env(release)
        env["BMP_BIND"] = self.addr
        env["BMP_LOG_LEVEL"] = "warning"
        with open(self.logfile, "ab") as out:
            self.proc = subprocess.Popen(
                [PY, "-m", "gunicorn", "-c", GUNICORN_CONF],
                cwd=stack.dirs[release], env=env, stdin=subprocess.DEVNULL,
                stdout=out, stderr=out, start_new_session=True)
        # Registered before the wait, so that teardown stops it even when it
        # never comes up.
        ctx.gunicorns.append(self)
        wait_port(self.port, self.proc, 30 * SLOW, "gunicorn %s" % release)
        wait_for(self._healthy, 30 * SLOW, 0.1,
                 what="gunicorn %s answering /health/" % release)

    def _healthy(self):
        if self.proc.poll() is not None:
            raise AssertionError("gunicorn %s exited with status %s:\n%s" % (
                self.release, self.proc.returncode, tail(read_file(self.logfile), 20)))
        try:
            status, headers, _ = http_get(self.port, "/health/")
        except (OSError, http.client.HTTPException):
            return False
        return status == 200 and headers.get("x-release") == self.release

    def get(self, path):
        """GET straight to this Gunicorn: (status, headers, body)."""
        return http_get(self.port, path)

    def log(self):
        return read_file(self.logfile)

    def stop(self):
        """SIGTERM to the process group (the master and its workers), then
        SIGKILL to whatever is left."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except OSError:
                pass
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except OSError:
            pass
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            pass


def http_get(port, path, timeout=10):
    """One GET on a fresh connection: (status, lower-case headers, body)."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("GET", path, headers={"Host": "bmp.test"})
        r = c.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        c.close()


class DjangoStack:
    """PostgreSQL plus the releases of the reference app, blue's schema
    migrated and seeded."""

    def __init__(self, ctx, releases=("blue", "green"), members=20, links=5):
        self.ctx = ctx
        self.releases = tuple(releases)
        self.servers = {}
        self.timings = {}
        self.pg = ctx.postgres(schema=None)
        self.dirs = {}
        for r in ("blue",) + tuple(x for x in self.releases if x != "blue"):
            d = ctx.path("release-" + r)
            p = subprocess.run([MAKE_RELEASE, r, d], stdin=subprocess.DEVNULL,
                               capture_output=True, timeout=30)
            if p.returncode != 0:
                raise AssertionError("make-release %s failed (%d): %s" % (
                    r, p.returncode, p.stderr.decode(errors="replace")))
            self.dirs[r] = d
        p = self.manage("blue", "migrate")
        self.timings["migrate blue"] = p.elapsed
        self.manage("blue", "seed", "--members", str(members), "--links", str(links))
        rows = self.sql("SELECT id, user_id FROM constituents_bmparliamentmember "
                        "ORDER BY id")
        pairs = [line.split("|") for line in rows.split()]
        self.member_ids = [int(m) for m, _ in pairs]
        self.user_ids = [int(u) for _, u in pairs]
        self.tokens = self.sql("SELECT token FROM %s ORDER BY id" % TABLE).split()
        assert len(self.member_ids) == members and len(self.tokens) == members * links, \
            (len(self.member_ids), len(self.tokens))

    # -- the releases ---------------------------------------------------------

    def db_env(self):
        """The BMP_DB_* variables that point a release at the cluster."""
        return {"BMP_DB_HOST": "127.0.0.1", "BMP_DB_PORT": str(self.pg.port),
                "BMP_DB_NAME": "postgres", "BMP_DB_USER": "postgres"}

    def fail_file(self, release):
        return self.ctx.path("fail-" + release)

    def env(self, release):
        e = dict(os.environ)
        e.pop("PYTHONPATH", None)
        e.pop("DJANGO_SETTINGS_MODULE", None)
        e.update(self.db_env())
        e["BMP_RELEASE"] = release
        e["BMP_FAIL_FILE"] = self.fail_file(release)
        return e

    def manage(self, release, *args, check=True, timeout=60):
        """Runs `manage.py ARGS` of a release; returns the CompletedProcess
        (with .elapsed in seconds), raising with its output on a failure
        unless check=False."""
        t0 = time.monotonic()
        p = subprocess.run([PY, "manage.py"] + list(args), cwd=self.dirs[release],
                           env=self.env(release), stdin=subprocess.DEVNULL,
                           capture_output=True, timeout=timeout * SLOW)
        p.elapsed = time.monotonic() - t0
        p.out = p.stdout.decode("utf-8", "replace")
        p.err = p.stderr.decode("utf-8", "replace")
        if check and p.returncode != 0:
            raise AssertionError("manage.py %s (%s) failed with status %d:\n%s%s" % (
                " ".join(args), release, p.returncode, p.out, tail(p.err, 30)))
        return p

    def _cmd(self, release, args):
        env = " ".join("%s=%s" % (k, shlex.quote(v)) for k, v in
                       sorted(self.db_env().items()))
        return "%s %s manage.py %s" % (env, PY, " ".join(shlex.quote(a) for a in args))

    def migrate_cmd(self, release):
        """A shell command that migrates the database to `release`'s schema
        (for `switchctl cutover --migrate CMD` or sh -c)."""
        return "cd %s && %s" % (shlex.quote(self.dirs[release]),
                                self._cmd(release, ["migrate"]))

    def reverse_migrate_cmd(self, release="green"):
        """A shell command that takes the schema back to blue's with the
        newer release's code (the rollback of the deployment plan)."""
        steps = [self._cmd(release, ["migrate", app, name]) for app, name in BLUE_MIGRATIONS]
        return "cd %s && %s" % (shlex.quote(self.dirs[release]), " && ".join(steps))

    def gunicorn(self, release):
        """Starts Gunicorn for a release; returns it (.port, .addr, .stop())."""
        g = DjangoGunicorn(self, release)
        self.servers[release] = g
        return g

    def break_release(self, release):
        """From the next request on, the release's data views answer 500."""
        with open(self.fail_file(release), "w"):
            pass

    def fix_release(self, release):
        try:
            os.unlink(self.fail_file(release))
        except FileNotFoundError:
            pass

    def sql(self, text):
        return self.pg.sql(text)

    def columns(self, table=TABLE):
        return self.sql("SELECT attname FROM pg_attribute WHERE attrelid = '%s'::regclass "
                        "AND attnum > 0 AND NOT attisdropped ORDER BY attnum" % table).split()

    def applied(self, app):
        return self.sql("SELECT name FROM django_migrations WHERE app = '%s' ORDER BY id"
                        % app).split()

    # -- switchd ----------------------------------------------------------------

    def switchd_conf(self, port, blue_addr, green_addr, green_release=None,
                     blue_release="blue", health=None, **extra_sections):
        """switchd's config for the stack: upstream blue and green with health
        checks of /health/ and the require_* lines of the releases they run,
        the database section with the cluster's dsn, and a cutover section.
        extra_sections: name -> {directive: value} (a list value writes the
        directive once per item), merged over the defaults; e.g.
        watch={"enabled": "off"}."""
        if green_release is None:
            green_release = next((r for r in self.releases if r != "blue"), "green")
        sections = {
            "database": {"dsn": '"%s"' % self.pg.dsn, "connect_timeout": "2s"},
            "cutover": {"gate_timeout": "20s", "drain_timeout": "10s"},
        }
        for name, opts in extra_sections.items():
            sections.setdefault(name, {}).update(opts or {})
        out = []
        for colour, addr, release in (("blue", blue_addr, blue_release),
                                      ("green", green_addr, green_release)):
            out.append("upstream %s    # release %s" % (colour, release))
            out.append("    server %s" % getattr(addr, "addr", addr))
            h = dict(HEALTH)
            h.update(health or {})
            out += ["    %s %s" % kv for kv in h.items() if kv[1] is not None]
            out += ["    %s" % " ".join(req) for req in REQUIREMENTS[release]]
            out.append("")
        for name, opts in sections.items():
            out.append(name)
            for k, v in opts.items():
                for one in (v if isinstance(v, (list, tuple)) else [v]):
                    if one is not None:
                        out.append("    %s %s" % (k, one))
            out.append("")
        # make_config writes the global and listen sections; the upstream
        # sections come from here, with their repeated require_* lines.
        return make_config([port], (), raw_extra="\n".join(out))

    def switchd(self, blue="blue", green=None, **extra_sections):
        """Starts Gunicorn for both releases (unless running) and switchd in
        front of them; waits until both colours are healthy. Returns the
        Switchd."""
        green = green or next((r for r in self.releases if r != "blue"), "green")
        for r in (blue, green):
            if r not in self.servers:
                self.gunicorn(r)
        port = self.ctx.port()
        sw = self.ctx.switchd(conf=self.switchd_conf(
            port, self.servers[blue].addr, self.servers[green].addr,
            green_release=green, blue_release=blue, **extra_sections), port=port)
        wait_colours_up(sw)
        return sw


def wait_colours_up(sw, colours=("blue", "green"), timeout_s=10.0):
    def up():
        st = admin_status(sw.admin_socket)
        return all(st["colours"][c]["healthy"] for c in colours)
    wait_for(up, timeout_s * SLOW, what="%s healthy in status" % "+".join(colours))


def history_time(st, reason):
    """The wall-clock time (seconds) of the first transition `reason` in a
    status document's history ("flipped", "drained", ...)."""
    for e in st["history"]:
        if e["reason"] == reason:
            return e["time_ms"] / 1000.0
    raise AssertionError("no %r transition in the history: %r" % (reason, st["history"]))


# -- load -------------------------------------------------------------------------

class Record:
    """One request as the client saw it. t: time.monotonic() at the send,
    wall: time.time() at the send (to compare with switchd's history),
    latency in seconds; status None and error set for a socket error."""

    __slots__ = ("t", "wall", "latency", "method", "path", "status", "error",
                 "release", "token", "thread")

    def __init__(self, **kw):
        for k in self.__slots__:
            setattr(self, k, kw.get(k))

    @property
    def ok(self):
        return self.error is None and self.status is not None and 200 <= self.status < 300

    def __repr__(self):
        return "<%s %s -> %s%s from %s at %.3f (%.1f ms)>" % (
            self.method, self.path, self.status,
            " (%s)" % self.error if self.error else "", self.release, self.wall,
            (self.latency or 0) * 1000)


class Load:
    """Open-loop-ish load on switchd: `threads` threads, each with one
    keep-alive http.client connection, together sending about `rate`
    requests per second on a fixed schedule (a thread that falls behind sends
    at once, and skips the slots that are more than a second late rather than
    bursting). The mix: `write_ratio` of POST /links/ with unique tokens, the
    rest spread evenly over GET /links/?member=ID, GET /links/TOKEN/ (a seeded
    token or one this thread wrote) and GET /members/USER_ID/.

    Every request is recorded (see Record). A connection error is a failed
    request: the connection is dropped and the next request opens a new one;
    nothing is retried. Stops after `duration` seconds (if given) or at
    stop(), and in any case after max_seconds."""

    def __init__(self, port, rate=200, duration=None, threads=8, write_ratio=0.3,
                 stack=None, members=None, users=None, tokens=None, max_seconds=60.0,
                 seed=None):
        self.port = port
        self.rate = float(rate)
        self.duration = duration
        self.nthreads = threads
        self.write_ratio = write_ratio
        self.max_seconds = max_seconds
        self.members = list(members or (stack.member_ids if stack else range(1, 21)))
        self.users = list(users or (stack.user_ids if stack else range(1, 21)))
        self.tokens = list(tokens or (stack.tokens if stack else
                                      ["seed-%03d-%02d" % (m, n) for m in range(1, 21)
                                       for n in range(1, 6)]))
        self.rng_seed = seed if seed is not None else random.randrange(1 << 30)
        self.tag = "%06x" % random.randrange(1 << 24)
        self._stop = threading.Event()
        self._per_thread = [[] for _ in range(threads)]
        self.skipped = 0
        self._lock = threading.Lock()
        self._ts = []
        self.records = []
        self.t0 = self.t_end = None

    def start(self):
        self.t0 = time.monotonic()
        self._ts = [threading.Thread(target=self._run, args=(i,), daemon=True)
                    for i in range(self.nthreads)]
        for t in self._ts:
            t.start()
        return self

    def _pick(self, rng, tid, i, mine):
        x = rng.random()
        if x < self.write_ratio:
            token = "L%s-%d-%d" % (self.tag, tid, i)
            body = json.dumps({"member": rng.choice(self.members), "token": token,
                               "note": "load %d/%d" % (tid, i)})
            return "POST", "/links/", body, token
        k = int((x - self.write_ratio) / (1.0 - self.write_ratio) * 3)
        if k == 0:
            return "GET", "/links/?member=%d" % rng.choice(self.members), None, None
        if k == 1:
            pool = self.tokens if not mine or rng.random() < 0.5 else mine
            return "GET", "/links/%s/" % rng.choice(pool), None, None
        return "GET", "/members/%d/" % rng.choice(self.users), None, None

    def _run(self, tid):
        rng = random.Random(self.rng_seed * 1000 + tid)
        out = self._per_thread[tid]
        interval = self.nthreads / self.rate
        next_t = self.t0 + interval * tid / self.nthreads
        end = self.t0 + min(self.duration or self.max_seconds, self.max_seconds)
        mine = []
        conn = None
        i = 0
        while not self._stop.is_set():
            now = time.monotonic()
            if now < next_t:
                if self._stop.wait(next_t - now):
                    break
                now = time.monotonic()
            if now >= end:
                break
            late = now - next_t
            if late > 1.0:
                n = int(late / interval)
                with self._lock:
                    self.skipped += n
                next_t += n * interval
            next_t += interval
            method, path, body, token = self._pick(rng, tid, i, mine)
            i += 1
            rec = Record(t=time.monotonic(), wall=time.time(), method=method, path=path,
                         thread=tid)
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                headers = {"Host": "bmp.test"}
                if body is not None:
                    headers["Content-Type"] = "application/json"
                conn.request(method, path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                rec.latency = time.monotonic() - rec.t
                rec.status = resp.status
                rec.release = resp.getheader("X-Release")
                if method == "POST" and resp.status == 201:
                    got = json.loads(data)["token"]
                    assert got == token, (got, token)
                    rec.token = token
                    mine.append(token)
            except Exception as e:  # noqa: every failure is recorded, none retried
                rec.latency = time.monotonic() - rec.t
                rec.error = "%s: %s" % (type(e).__name__, e)
                if conn is not None:
                    conn.close()
                conn = None
            out.append(rec)
        if conn is not None:
            conn.close()

    def stop(self):
        """Stops the threads (the request in progress finishes) and returns
        self, with .records sorted by send time."""
        self._stop.set()
        for t in self._ts:
            t.join(15)
            assert not t.is_alive(), "a load thread is stuck"
        self.t_end = time.monotonic()
        self.records = sorted((r for rs in self._per_thread for r in rs),
                              key=lambda r: r.t)
        return self

    def wait(self):
        """With a duration: waits until the load ended by itself; returns
        stop()."""
        for t in self._ts:
            t.join(self.max_seconds + 15)
        return self.stop()

    # -- results ------------------------------------------------------------------

    def failed(self):
        """Socket errors and responses other than 2xx: the load only asks for
        things that exist, so a 404 is a failure too."""
        return [r for r in self.records if not r.ok]

    def by_release(self):
        return collections.Counter(r.release for r in self.records)

    def acked_tokens(self):
        return [r.token for r in self.records if r.token]

    def achieved_rate(self):
        if len(self.records) < 2:
            return 0.0
        span = self.records[-1].t - self.records[0].t
        return (len(self.records) - 1) / span if span > 0 else 0.0

    def latency_ms(self, q):
        lat = sorted(r.latency for r in self.records if r.latency is not None)
        if not lat:
            return 0.0
        return lat[min(len(lat) - 1, int(q * len(lat)))] * 1000

    def summary(self):
        f = self.failed()
        return ("%d requests at %.0f/s (asked %.0f/s, %d slots skipped), %d failed, "
                "%d acked writes, by release %s, latency p50 %.1f ms p99 %.1f ms" % (
                    len(self.records), self.achieved_rate(), self.rate, self.skipped,
                    len(f), len(self.acked_tokens()), dict(self.by_release()),
                    self.latency_ms(0.5), self.latency_ms(0.99)))


def assert_no_lost_writes(stack, load):
    """Every write the load saw acknowledged (201) is a row of the table."""
    acked = set(load.acked_tokens())
    present = set(stack.sql("SELECT token FROM %s" % TABLE).split())
    lost = sorted(acked - present)
    assert not lost, "%d of %d acknowledged writes are not in %s: %r" % (
        len(lost), len(acked), TABLE, lost[:10])
    return len(acked)
