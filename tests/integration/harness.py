"""Shared helpers of switchd's integration tests.

A test is a function `test_xxx(ctx)` in a tests/integration/test_*.py file. The
runner (run.py) gives each test a fresh Context, which owns a temporary folder
and every process the test starts; Context.teardown() stops them all, even when
the test failed, and reports what went wrong with switchd's own exit.

Everything listens on and connects to 127.0.0.1 (the trusted-proxy tests use
127.0.0.2 as a source address, which Linux allows on loopback). Every socket
operation has a deadline, so a test can fail but never hang.
"""

import atexit
import hashlib
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
PY = "/usr/bin/python3"

sys.path.insert(0, HERE)
import upstream as _up  # noqa: E402  (the pattern functions)

pattern_bytes = _up.pattern_bytes
pattern_iter = _up.pattern_iter
pattern_sha256 = _up.pattern_sha256

MiB = 1024 * 1024
KiB = 1024


def build_dir():
    b = os.environ.get("SWITCHD_BUILD", "build")
    if not os.path.isabs(b):
        b = os.path.join(ROOT, b)
    return b


def binary():
    return os.path.join(build_dir(), "switchd")


def is_asan():
    return os.path.basename(os.path.normpath(build_dir())) == "build-asan"


# Slower builds get longer waits for things that are not the behaviour under
# test (startup, exit with a leak check).
SLOW = 3.0 if is_asan() else 1.0

# The bound on switchd's memory while 100 MiB stream through it. The plain
# build must stay under 64 MiB. ASan adds shadow memory, redzones and the
# quarantine of freed blocks (quarantine_size_mb=8 below); 80 MiB still fails
# a proxy that buffers a 100 MiB message whole.
RSS_BOUND_MIB = 80 if is_asan() else 64
RSS_BOUND_KB = RSS_BOUND_MIB * 1024

SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                     "runtime error:")


def switchd_env():
    env = dict(os.environ)
    if is_asan():
        env["ASAN_OPTIONS"] = ("detect_leaks=1:abort_on_error=0:quarantine_size_mb=8"
                               ":detect_stack_use_after_return=0")
        env["UBSAN_OPTIONS"] = "print_stacktrace=1:halt_on_error=1"
        env["LSAN_OPTIONS"] = "exitcode=23"
    return env


def timeout(seconds):
    """Decorator: the runner aborts the test after `seconds` (default 30)."""
    def deco(fn):
        fn.timeout = seconds
        return fn
    return deco


class TestTimeout(Exception):
    pass


class Timeout(AssertionError):
    """A socket read did not complete before its deadline."""


class Closed(AssertionError):
    """The peer closed before what we waited for arrived."""


# -- ports ---------------------------------------------------------------------

_port_lock = threading.Lock()
_used_ports = set()
# Ports below the ephemeral range (so no client's source port collides), each
# claimed with a lock file so that two runners at once never share one.
PORT_LO, PORT_HI = 20000, 32000
PORT_LOCKS = os.path.join(tempfile.gettempdir(), "switchd-it-ports")
_claimed = []


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def _claim(p):
    """Claims port p for this process with an O_EXCL lock file."""
    os.makedirs(PORT_LOCKS, exist_ok=True)
    path = os.path.join(PORT_LOCKS, str(p))
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                with open(path) as f:
                    owner = int(f.read().strip() or "0")
            except (OSError, ValueError):
                owner = 0
            if owner == os.getpid() or (owner and _pid_alive(owner)):
                return False
            try:  # stale: its runner is gone
                os.unlink(path)
            except OSError:
                return False
            continue
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        _claimed.append(path)
        return True
    return False


@atexit.register
def _release_ports():
    for path in _claimed:
        try:
            os.unlink(path)
        except OSError:
            pass


def free_port():
    with _port_lock:
        for _ in range(5000):
            p = random.randrange(PORT_LO, PORT_HI)
            if p in _used_ports:
                continue
            s = socket.socket()
            try:
                s.bind(("127.0.0.1", p))
            except OSError:
                continue
            finally:
                s.close()
            if not _claim(p):
                continue
            _used_ports.add(p)
            return p
    raise RuntimeError("no free port")


def wait_port(port, proc=None, timeout=5.0, what="process"):
    deadline = time.time() + timeout
    while True:
        if proc is not None and proc.poll() is not None:
            raise AssertionError("%s exited with status %s before port %d accepted"
                                 % (what, proc.returncode, port))
        s = socket.socket()
        s.settimeout(0.5)
        try:
            s.connect(("127.0.0.1", port))
            return
        except OSError:
            if time.time() > deadline:
                raise AssertionError("%s: port %d does not accept after %.1fs"
                                     % (what, port, timeout))
            time.sleep(0.02)
        finally:
            s.close()


def port_accepts(port, timeout=0.5):
    s = socket.socket()
    s.settimeout(timeout)
    try:
        s.connect(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


# -- processes -----------------------------------------------------------------

def read_file(path):
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def tail(text, n=40):
    return "\n".join(text.splitlines()[-n:])


def proc_status(pid, key):
    """A field of /proc/PID/status in KiB (VmRSS, VmHWM), or None."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


class RssSampler:
    """Samples a process's VmRSS every `interval` seconds in a thread."""

    def __init__(self, pid, interval=0.02):
        self.pid = pid
        self.interval = interval
        self.max_kb = 0
        self.samples = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self):
        while not self._stop.is_set():
            v = proc_status(self.pid, "VmRSS")
            if v is not None:
                self.max_kb = max(self.max_kb, v)
                self.samples += 1
            self._stop.wait(self.interval)

    def stop(self):
        self._stop.set()
        self._t.join(2)
        return self.max_kb


class Upstream:
    """tests/integration/upstream.py in its own process."""

    def __init__(self, ctx, name, port=None, args=()):
        self.ctx = ctx
        self.name = name
        self.port = port or free_port()
        self.addr = "127.0.0.1:%d" % self.port
        self.args = list(args)
        self.proc = None
        self.start()

    def start(self):
        log = os.path.join(self.ctx.dir, "upstream-%s-%d.log" % (self.name, self.port))
        self.logfile = log
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(
                [PY, os.path.join(HERE, "upstream.py"), "--port", str(self.port),
                 "--name", self.name] + self.args,
                stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                start_new_session=True)
        mark = "listening on 127.0.0.1:%d" % self.port
        deadline = time.time() + 10
        while mark not in read_file(log):
            if self.proc.poll() is not None:
                raise AssertionError("upstream %s exited with status %s:\n%s" % (
                    self.name, self.proc.returncode, tail(read_file(log), 10)))
            if time.time() > deadline:
                raise AssertionError("upstream %s not listening after 10s" % self.name)
            time.sleep(0.02)
        return self

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                pass

    def _get(self, path):
        c = Client(self.port, timeout=5)
        try:
            c.send(b"GET %s HTTP/1.1\r\nHost: control\r\nConnection: close\r\n\r\n"
                   % path.encode())
            r = c.read_response(timeout=5)
        finally:
            c.close()
        assert r.status == 200, "upstream control %s: %r" % (path, r.status)
        return json.loads(r.body)

    def stats(self):
        return self._get("/stats")

    def log(self):
        return self._get("/log")

    def requests(self):
        return self.stats()["requests"]


class Gunicorn:
    """Real Gunicorn serving wsgi_app.py."""

    def __init__(self, ctx, name, worker="sync", threads=1, workers=2, port=None):
        self.ctx = ctx
        self.name = name
        self.port = port or free_port()
        self.addr = "127.0.0.1:%d" % self.port
        self.logfile = os.path.join(ctx.dir, "gunicorn-%s.log" % name)
        cmd = [PY, "-m", "gunicorn", "--bind", self.addr, "--workers", str(workers),
               "--worker-class", worker, "--chdir", HERE, "--env",
               "APP_NAME=%s" % name, "--log-level", "warning",
               "--graceful-timeout", "2", "--timeout", "30"]
        if worker == "gthread":
            cmd += ["--threads", str(threads), "--keep-alive", "5"]
        cmd.append("wsgi_app:app")
        env = dict(os.environ)
        env.pop("PYTHONPATH", None)
        with open(self.logfile, "ab") as out:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=out, start_new_session=True, env=env)
        wait_port(self.port, self.proc, 20, "gunicorn %s" % name)

    def stop(self):
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except OSError:
                pass
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # stray workers
        except OSError:
            pass


class Switchd:
    """One switchd process with its config file in the test's folder."""

    def __init__(self, ctx, conf, name="switchd", port=None):
        self.ctx = ctx
        self.name = name
        self.port = port
        self.conf_path = os.path.join(ctx.dir, name + ".conf")
        self.stderr_path = os.path.join(ctx.dir, name + ".stderr")
        self.stdout_path = os.path.join(ctx.dir, name + ".stdout")
        self.write_config(conf)
        self.stopped = False
        self.checked = False
        self.exit_status = None
        with open(self.stderr_path, "ab") as err, open(self.stdout_path, "ab") as out:
            self.proc = subprocess.Popen([binary(), "-c", self.conf_path],
                                         stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=err, env=switchd_env(),
                                         start_new_session=True)
        self.pid = self.proc.pid
        if port is not None:
            try:
                wait_port(port, self.proc, 10 * SLOW, "switchd")
            except AssertionError as e:
                raise AssertionError("%s\n--- switchd stderr ---\n%s"
                                     % (e, tail(self.stderr_text())))

    def write_config(self, conf):
        # Every instance gets its own admin socket in the test's folder
        # unless the test configures the admin section itself: the default
        # under /run would be shared by every switchd of the run.
        if not re.search(r"^\s*admin\s*$", conf, re.M):
            self.admin_socket = os.path.join(
                self.ctx.dir, "%s-%d.sock" % (self.name, os.getpid()))
            conf = conf + "\nadmin\n    socket %s\n" % self.admin_socket
        tmp = self.conf_path + ".tmp"
        with open(tmp, "w") as f:
            f.write(conf)
        os.rename(tmp, self.conf_path)

    def signal(self, sig):
        self.proc.send_signal(sig)

    def reload(self, conf=None, settle=0.5):
        """Rewrites the config (if given), sends SIGHUP and lets it apply."""
        if conf is not None:
            self.write_config(conf)
        self.signal(signal.SIGHUP)
        time.sleep(settle)
        assert self.proc.poll() is None, "switchd exited on SIGHUP (status %s)" % \
            self.proc.returncode

    def stderr_text(self):
        return read_file(self.stderr_path)

    def rss_kb(self):
        return proc_status(self.pid, "VmRSS")

    def hwm_kb(self):
        return proc_status(self.pid, "VmHWM")

    def alive(self):
        return self.proc.poll() is None

    def wait_exit(self, timeout):
        """Waits for the exit; returns the status or None on timeout."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def check_sanitizers(self):
        if self.checked:
            return
        self.checked = True
        text = self.stderr_text()
        for m in SANITIZER_MARKERS:
            if m in text:
                raise AssertionError("sanitizer report in switchd's stderr (%r):\n%s"
                                     % (m, tail(text, 60)))

    def assert_exited_ok(self, timeout=None):
        """After a SIGTERM already sent: the exit must be 0 within timeout."""
        timeout = (timeout if timeout is not None else 5) * SLOW
        rc = self.wait_exit(timeout)
        self.stopped = True
        if rc is None:
            self.proc.kill()
            self.proc.wait(5)
            self.exit_status = "killed"
            raise AssertionError("switchd did not exit within %.1fs of SIGTERM" % timeout)
        self.exit_status = rc
        self.check_sanitizers()
        if rc != 0:
            raise AssertionError("switchd exited with status %d after SIGTERM "
                                 "(a sanitizer/leak report makes it nonzero)" % rc)

    def stop(self, timeout=None):
        """SIGTERM; asserts exit status 0 within a few seconds."""
        if self.stopped:
            self.check_sanitizers()
            return
        if self.proc.poll() is not None:
            self.stopped = True
            self.exit_status = self.proc.returncode
            self.check_sanitizers()
            raise AssertionError("switchd had already exited with status %d"
                                 % self.proc.returncode)
        self.signal(signal.SIGTERM)
        self.assert_exited_ok(timeout)


def check_config(ctx, conf, name="check"):
    """Runs `switchd -t -c FILE`; returns (status, stdout, stderr, path)."""
    path = os.path.join(ctx.dir, name + ".conf")
    with open(path, "w") as f:
        f.write(conf)
    p = subprocess.run([binary(), "-t", "-c", path], stdin=subprocess.DEVNULL,
                       capture_output=True, env=switchd_env(), timeout=10 * SLOW)
    out = p.stdout.decode("utf-8", "replace")
    err = p.stderr.decode("utf-8", "replace")
    for m in SANITIZER_MARKERS:
        if m in err:
            raise AssertionError("sanitizer report from switchd -t:\n%s" % err)
    return p.returncode, out, err, path


# -- config --------------------------------------------------------------------

def make_config(binds, blue, green=(), live="blue", global_=None, client=None,
                blue_opts=None, green_opts=None, raw_extra=""):
    """A config file. binds: ports or "host:port" strings; blue/green: lists
    of "127.0.0.1:P" (or objects with .addr); *_opts: directive -> value;
    a value of None leaves the directive out (its default applies)."""
    g = {"live": live, "error_log": "stderr", "access_log": "off",
         "log_level": "info", "shutdown_timeout": "5s"}
    g.update(global_ or {})
    out = ["# written by tests/integration", "global"]
    for k, v in g.items():
        if v is not None:
            out.append("    %s %s" % (k, v))
    out.append("")
    out.append("listen")
    for b in binds:
        out.append("    bind %s" % (b if isinstance(b, str) else "127.0.0.1:%d" % b))
    out.append("")
    if client:
        out.append("client")
        for k, v in client.items():
            if v is None:
                continue
            for one in (v if isinstance(v, (list, tuple)) else [v]):
                out.append("    %s %s" % (k, one))
        out.append("")
    for colour, servers, opts in (("blue", blue, blue_opts), ("green", green, green_opts)):
        if not servers:
            continue
        out.append("upstream %s" % colour)
        for s in servers:
            out.append("    server %s" % (getattr(s, "addr", s)))
        # Active health checks are off unless a test asks for them: their
        # probes would show up in the upstreams' request counts.
        o = {"health": "off"}
        o.update(opts or {})
        for k, v in o.items():
            if v is not None:
                out.append("    %s %s" % (k, v))
        out.append("")
    out.append(raw_extra)
    return "\n".join(out) + "\n"


# -- the client ----------------------------------------------------------------

class Response:
    def __init__(self):
        self.version = None
        self.status = None
        self.reason = None
        self.headers = []
        self.raw_head = b""
        self.body = b""
        self.body_len = 0
        self.sha = hashlib.sha256()
        self.complete = False
        self.framing = None
        self.reset = False

    @property
    def sha256(self):
        return self.sha.hexdigest()

    def header(self, name, default=None):
        name = name.lower()
        for n, v in self.headers:
            if n.lower() == name:
                return v
        return default

    def headers_all(self, name):
        name = name.lower()
        return [v for n, v in self.headers if n.lower() == name]

    def has_token(self, name, token):
        toks = []
        for v in self.headers_all(name):
            toks += [t.strip().lower() for t in v.split(",")]
        return token.lower() in toks

    def json(self):
        return json.loads(self.body)

    def text(self):
        return self.body.decode("latin-1")

    def __repr__(self):
        return "<Response %s %s %r body_len=%d complete=%s head=%r>" % (
            self.status, self.reason, self.headers, self.body_len, self.complete,
            self.raw_head[:300])


class Client:
    """A raw TCP client: exact bytes out, parsed responses in, deadlines on
    every read."""

    def __init__(self, port, source=None, timeout=5.0, rcvbuf=None, host="127.0.0.1"):
        self.port = port
        self.timeout = timeout
        self.buf = bytearray()
        self.eof = False
        self.reset = False
        self.s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        if source:
            self.s.bind((source, 0))
        self.s.settimeout(timeout)
        self.s.connect((host, port))
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.local = self.s.getsockname()

    def send(self, data):
        if isinstance(data, str):
            data = data.encode("latin-1")
        self.s.settimeout(self.timeout)
        self.s.sendall(data)

    def try_send(self, data):
        """send() that reports a peer reset instead of raising."""
        try:
            self.send(data)
            return True
        except (BrokenPipeError, ConnectionResetError):
            return False

    def shutdown_write(self):
        self.s.shutdown(socket.SHUT_WR)

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass

    def _recv(self, deadline, size=262144):
        """Appends what arrives to buf; returns False at EOF. Raises Timeout."""
        if self.eof:
            return False
        left = deadline - time.time()
        if left <= 0:
            raise Timeout("no data from port %d before the deadline" % self.port)
        self.s.settimeout(left)
        try:
            d = self.s.recv(size)
        except socket.timeout:
            raise Timeout("no data from port %d before the deadline (have %d bytes: %r)"
                          % (self.port, len(self.buf), bytes(self.buf[:200])))
        except ConnectionResetError:
            self.reset = True
            self.eof = True
            return False
        if not d:
            self.eof = True
            return False
        self.buf += d
        return True

    def recv_some(self, timeout=None):
        """Whatever arrives next (b'' at EOF)."""
        deadline = time.time() + (timeout or self.timeout)
        if not self.buf:
            self._recv(deadline)
        d = bytes(self.buf)
        self.buf.clear()
        return d

    def recv_exact(self, n, timeout=None):
        deadline = time.time() + (timeout or self.timeout)
        while len(self.buf) < n:
            if not self._recv(deadline):
                raise Closed("closed after %d of %d bytes" % (len(self.buf), n))
        d = bytes(self.buf[:n])
        del self.buf[:n]
        return d

    def read_until_close(self, timeout=None):
        deadline = time.time() + (timeout or self.timeout)
        while self._recv(deadline):
            pass
        d = bytes(self.buf)
        self.buf.clear()
        return d

    def wait_closed(self, timeout=2.0):
        """True if the peer closes (EOF or reset) within timeout; data that
        arrives meanwhile is kept in self.buf."""
        deadline = time.time() + timeout
        try:
            while self._recv(deadline):
                pass
            return True
        except Timeout:
            return False

    def _line(self, deadline):
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                line = bytes(self.buf[:i])
                del self.buf[:i + 2]
                return line
            if not self._recv(deadline):
                raise Closed("closed in the middle of a line")

    def read_response(self, timeout=None, head=False, store_body=True,
                      allow_incomplete=False, on_body=None):
        """Reads one response. head=True for a HEAD request. With
        allow_incomplete, an EOF in the body returns the partial response
        (complete=False) instead of raising."""
        deadline = time.time() + (timeout or self.timeout)
        r = Response()
        while True:
            i = self.buf.find(b"\r\n\r\n")
            if i >= 0:
                break
            if not self._recv(deadline):
                if self.buf:
                    raise Closed("closed in a response head: %r" % bytes(self.buf[:500]))
                raise Closed("connection closed%s before any response byte" %
                             (" (reset)" if self.reset else ""))
        r.raw_head = bytes(self.buf[:i + 4])
        del self.buf[:i + 4]
        lines = r.raw_head[:-4].decode("latin-1").split("\r\n")
        m = re.match(r"^HTTP/(\d\.\d) (\d{3})(?: (.*))?$", lines[0])
        if not m:
            raise AssertionError("bad status line %r" % lines[0])
        r.version = "HTTP/" + m.group(1)
        r.status = int(m.group(2))
        r.reason = m.group(3) or ""
        for line in lines[1:]:
            if ":" not in line:
                raise AssertionError("bad header line %r in %r" % (line, r.raw_head))
            n, v = line.split(":", 1)
            r.headers.append((n, v.strip()))

        def take(data):
            r.body_len += len(data)
            r.sha.update(data)
            if store_body:
                r.body += data
            if on_body:
                on_body(data)

        def eof_in_body():
            r.reset = self.reset
            if allow_incomplete:
                return r
            raise Closed("connection closed in the body after %d bytes: %r"
                         % (r.body_len, r))

        te = r.header("transfer-encoding")
        cl = r.header("content-length")
        if head or r.status < 200 or r.status in (204, 304):
            r.framing = "none"
        elif te is not None and te.lower().split(",")[-1].strip() == "chunked":
            r.framing = "chunked"
            while True:
                try:
                    line = self._line(deadline)
                except Closed:
                    return eof_in_body()
                size = int(line.split(b";")[0].strip(), 16)
                if size == 0:
                    while True:
                        try:
                            if self._line(deadline) == b"":
                                break
                        except Closed:
                            return eof_in_body()
                    break
                left = size
                while left:
                    if not self.buf and not self._recv(deadline):
                        return eof_in_body()
                    n = min(left, len(self.buf))
                    take(bytes(self.buf[:n]))
                    del self.buf[:n]
                    left -= n
                try:
                    if self._line(deadline) != b"":
                        raise AssertionError("bad chunk terminator")
                except Closed:
                    return eof_in_body()
        elif cl is not None:
            r.framing = "content-length"
            left = int(cl)
            while left:
                if not self.buf and not self._recv(deadline):
                    return eof_in_body()
                n = min(left, len(self.buf))
                take(bytes(self.buf[:n]))
                del self.buf[:n]
                left -= n
        else:
            r.framing = "close"
            while True:
                if self.buf:
                    take(bytes(self.buf))
                    self.buf.clear()
                if not self._recv(deadline):
                    break
        r.complete = True
        return r

    def request(self, method="GET", path="/", headers=None, body=b"", version="HTTP/1.1",
                host="test.local", timeout=None, **kw):
        self.send(build_request(method, path, headers, body, version, host))
        return self.read_response(timeout=timeout, head=(method == "HEAD"), **kw)


def build_request(method="GET", path="/", headers=None, body=b"", version="HTTP/1.1",
                  host="test.local"):
    if isinstance(headers, dict):
        headers = list(headers.items())
    headers = list(headers or [])
    lines = ["%s %s %s" % (method, path, version)]
    if host is not None:
        lines.append("Host: %s" % host)
    names = {n.lower() for n, _ in headers}
    for n, v in headers:
        lines.append("%s: %s" % (n, v))
    if isinstance(body, str):
        body = body.encode()
    if body and "content-length" not in names and "transfer-encoding" not in names:
        lines.append("Content-Length: %d" % len(body))
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def chunked(data, size=4096):
    out = bytearray()
    for i in range(0, len(data), size):
        c = data[i:i + size]
        out += b"%x\r\n" % len(c) + c + b"\r\n"
    return bytes(out + b"0\r\n\r\n")


# -- assertions ----------------------------------------------------------------

REASON_PHRASES = {
    400: ("Bad Request",),
    405: ("Method Not Allowed",),
    408: ("Request Timeout", "Request Time-out"),
    413: ("Content Too Large", "Payload Too Large", "Request Entity Too Large"),
    414: ("URI Too Long", "Request-URI Too Long", "Request-URI Too Large"),
    431: ("Request Header Fields Too Large",),
    502: ("Bad Gateway",),
    503: ("Service Unavailable",),
    504: ("Gateway Timeout", "Gateway Time-out"),
}


def assert_proxy_error(resp, code, client=None, close=True, close_within=2.0):
    """A response made by switchd itself: status line, text/plain,
    Content-Length, body "CODE Reason\\n", and (if close) Connection: close and
    the connection really closed."""
    assert resp.status == code, "expected %d, got %r" % (code, resp)
    assert resp.reason in REASON_PHRASES.get(code, (resp.reason,)), \
        "unexpected reason phrase %r for %d" % (resp.reason, code)
    ct = resp.header("content-type", "")
    assert ct.split(";")[0].strip() == "text/plain", "Content-Type %r: %r" % (ct, resp)
    assert resp.header("content-length") is not None, "no Content-Length: %r" % resp
    expect = ("%d %s\n" % (code, resp.reason)).encode()
    assert resp.body == expect, "body %r, expected %r" % (resp.body, expect)
    if close:
        assert resp.has_token("connection", "close"), "no Connection: close: %r" % resp
        if client is not None:
            assert client.wait_closed(close_within), \
                "connection still open %.1fs after %d" % (close_within, code)


def wait_for(pred, timeout, interval=0.05, what="condition"):
    deadline = time.time() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.time() > deadline:
            raise AssertionError("timed out after %.1fs waiting for %s" % (timeout, what))
        time.sleep(interval)


def parallel(fn, args_list, timeout=30):
    """Runs fn(*args) in one thread each; returns the results in order,
    re-raising the first exception."""
    results = [None] * len(args_list)
    errors = [None] * len(args_list)

    def run(i, a):
        try:
            results[i] = fn(*a)
        except BaseException as e:  # noqa
            errors[i] = e

    ts = [threading.Thread(target=run, args=(i, a), daemon=True)
          for i, a in enumerate(args_list)]
    for t in ts:
        t.start()
    deadline = time.time() + timeout
    for t in ts:
        t.join(max(0.0, deadline - time.time()))
        if t.is_alive():
            raise AssertionError("a parallel worker did not finish within %ds" % timeout)
    for e in errors:
        if e is not None:
            raise e
    return results


# -- PostgreSQL, the admin API and switchctl ------------------------------------

PG_CLUSTER = os.path.join(ROOT, "tests", "pg-cluster.sh")

# The schema every test cluster starts with: Django's bookkeeping table with
# two applied migrations of app unified_db, and the table they made.
PG_SCHEMA = """
CREATE TABLE django_migrations (
    id serial PRIMARY KEY,
    app varchar(255) NOT NULL,
    name varchar(255) NOT NULL,
    applied timestamptz NOT NULL DEFAULT now());
INSERT INTO django_migrations (app, name) VALUES
    ('unified_db', '0001_initial'),
    ('unified_db', '0002_personlink');
CREATE TABLE unified_db_personlink (
    id serial PRIMARY KEY,
    person_id integer NOT NULL,
    url text NOT NULL);
"""


def _psql_binary():
    p = shutil.which("psql")
    if p:
        return p
    for d in sorted(os.listdir("/usr/lib/postgresql"), reverse=True):
        c = os.path.join("/usr/lib/postgresql", d, "bin", "psql")
        if os.access(c, os.X_OK):
            return c
    raise AssertionError("no psql (install Debian's postgresql package)")


class Postgres:
    """A throwaway PostgreSQL cluster (tests/pg-cluster.sh) on a free port of
    127.0.0.1 with PG_SCHEMA loaded; `dsn` is what switchd's database section
    takes. Its folder is its own under /tmp (the test's folder is mode 0700,
    closed to the postgres user the server runs as under root)."""

    def __init__(self, ctx, schema=PG_SCHEMA):
        self.ctx = ctx
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="swpg-", dir="/tmp")
        self.running = False
        self.dsn = ("host=127.0.0.1 port=%d user=postgres dbname=postgres"
                    % self.port)
        p = subprocess.run(["bash", PG_CLUSTER, "start", self.dir, str(self.port)],
                           stdin=subprocess.DEVNULL, capture_output=True,
                           timeout=60)
        if p.returncode != 0:
            raise AssertionError("pg-cluster.sh start failed (%d):\n%s%s" % (
                p.returncode, p.stdout.decode(errors="replace"),
                p.stderr.decode(errors="replace")))
        self.running = True
        if schema:
            self.sql(schema)

    def sql(self, text):
        """Runs SQL with psql; returns its unaligned, tuples-only output."""
        p = subprocess.run(
            [_psql_binary(), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
             "-d", self.dsn, "-c", text],
            stdin=subprocess.DEVNULL, capture_output=True, timeout=30)
        if p.returncode != 0:
            raise AssertionError("psql failed (%d): %s" % (
                p.returncode, p.stderr.decode(errors="replace")))
        return p.stdout.decode()

    def stop(self):
        """Stops the server and removes its folder (idempotent)."""
        if not os.path.isdir(self.dir):
            self.running = False
            return
        p = subprocess.run(["bash", PG_CLUSTER, "stop", self.dir],
                           stdin=subprocess.DEVNULL, capture_output=True,
                           timeout=90)
        self.running = False
        if p.returncode != 0:
            raise AssertionError("pg-cluster.sh stop failed (%d): %s" % (
                p.returncode, p.stderr.decode(errors="replace")))


def switchctl_binary():
    """switchctl of the build under test (the plain one if that build has
    none)."""
    p = os.path.join(build_dir(), "switchctl")
    if os.access(p, os.X_OK):
        return p
    return os.path.join(ROOT, "build", "switchctl")


_shared_ctl = None


def shared_switchctl():
    """A copy of switchctl that any user can run: the checkout (and so the
    build folder) may sit in a folder only its owner can enter, as a fresh
    CI clone under mktemp does."""
    global _shared_ctl
    if _shared_ctl is None or not os.path.exists(_shared_ctl):
        d = tempfile.mkdtemp(prefix="switchd-ctl-")
        os.chmod(d, 0o755)
        _shared_ctl = os.path.join(d, "switchctl")
        shutil.copy2(switchctl_binary(), _shared_ctl)
        os.chmod(_shared_ctl, 0o755)
        atexit.register(shutil.rmtree, d, True)
    return _shared_ctl


class CtlResult:
    def __init__(self, args, rc, out, err, elapsed):
        self.args = args
        self.rc = rc
        self.out = out
        self.err = err
        self.elapsed = elapsed

    def json(self):
        return json.loads(self.out)

    def json_lines(self):
        return [json.loads(line) for line in self.out.splitlines() if line.strip()]

    def __repr__(self):
        return "<switchctl %s: exit %s after %.2fs\n--- stdout ---\n%s--- stderr ---\n%s>" % (
            " ".join(self.args), self.rc, self.elapsed, self.out, self.err)


def switchctl(args, sock=None, timeout=30, user=None, env=None):
    """Runs switchctl (with `-s sock` first when given); returns a CtlResult.
    user: run it as that user through runuser (the caller must be root)."""
    cmd = [switchctl_binary() if user is None else shared_switchctl()]
    if sock is not None:
        cmd += ["-s", sock]
    cmd += list(args)
    if user is not None:
        cmd = ["runuser", "-u", user, "--"] + cmd
    e = switchd_env()
    e.pop("SWITCHCTL_SOCKET", None)
    e.update(env or {})
    t0 = time.time()
    p = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True,
                       env=e, timeout=timeout * SLOW)
    r = CtlResult(list(args), p.returncode, p.stdout.decode("utf-8", "replace"),
                  p.stderr.decode("utf-8", "replace"), time.time() - t0)
    for m in SANITIZER_MARKERS:
        if m in r.err:
            raise AssertionError("sanitizer report from switchctl: %r" % r)
    return r


def admin_raw(sock, data, timeout=5.0):
    """Sends bytes on a fresh connection to the admin Unix socket and returns
    everything until the close, parsed as one Response."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(sock)
        s.sendall(data)
        buf = bytearray()
        deadline = time.time() + timeout
        while True:
            s.settimeout(max(0.01, deadline - time.time()))
            try:
                d = s.recv(65536)
            except socket.timeout:
                raise Timeout("admin socket %s: no close within %.1fs (have %r)"
                              % (sock, timeout, bytes(buf[:300])))
            except ConnectionResetError:
                break  # closed with part of the request unread, after answering
            if not d:
                break
            buf += d
    finally:
        s.close()
    return parse_response_bytes(bytes(buf))


def parse_response_bytes(raw):
    """One complete HTTP/1.1 response (as read until the close)."""
    i = raw.find(b"\r\n\r\n")
    if i < 0:
        raise AssertionError("no complete response head in %r" % raw[:500])
    r = Response()
    r.raw_head = raw[:i + 4]
    lines = raw[:i].decode("latin-1").split("\r\n")
    m = re.match(r"^HTTP/(\d\.\d) (\d{3})(?: (.*))?$", lines[0])
    if not m:
        raise AssertionError("bad status line %r" % lines[0])
    r.version = "HTTP/" + m.group(1)
    r.status = int(m.group(2))
    r.reason = m.group(3) or ""
    for line in lines[1:]:
        n, v = line.split(":", 1)
        r.headers.append((n, v.strip()))
    r.body = raw[i + 4:]
    cl = r.header("content-length")
    if cl is not None:
        assert len(r.body) == int(cl), "body of %d bytes, Content-Length %s: %r" % (
            len(r.body), cl, raw[:500])
    r.body_len = len(r.body)
    r.complete = True
    return r


def admin_request(sock, method, path, body=None, headers=None, timeout=5.0):
    """One admin API request over the Unix socket; returns the Response
    (r.json() for the body)."""
    if body is not None and not isinstance(body, (bytes, str)):
        body = json.dumps(body)
    if isinstance(body, str):
        body = body.encode()
    hs = [("Connection", "close")]
    if body is not None:
        hs.append(("Content-Type", "application/json"))
        hs.append(("Content-Length", str(len(body))))
    hs += list(headers or [])
    return admin_raw(sock, build_request(method, path, hs, body or b"",
                                         host="switchd"), timeout)


def admin_status(sock):
    r = admin_request(sock, "GET", "/v1/status")
    assert r.status == 200, "GET /v1/status: %r %r" % (r, r.body)
    return r.json()


# -- the per-test context ------------------------------------------------------

class Context:
    def __init__(self, name):
        self.name = name
        self.dir = tempfile.mkdtemp(prefix="switchd-it-%s-" % name)
        self.upstreams = []
        self.switchds = []
        self.gunicorns = []
        self.clients = []
        self.failed = False

    # processes
    def port(self):
        return free_port()

    def upstream(self, name="blue", *args, port=None):
        u = Upstream(self, name, port=port, args=args)
        self.upstreams.append(u)
        return u

    def gunicorn(self, name, worker="sync", threads=1, workers=2):
        g = Gunicorn(self, name, worker=worker, threads=threads, workers=workers)
        self.gunicorns.append(g)
        return g

    def config(self, port=None, blue=(), **kw):
        return make_config([port] if port else [], blue, **kw)

    def switchd(self, blue=(), green=(), conf=None, port=None, name="switchd", **kw):
        """Starts switchd. Either a whole `conf` (then give `port` to wait on),
        or make_config keywords with one bind on a fresh port."""
        if conf is None:
            port = port or free_port()
            conf = make_config([port], blue, green, **kw)
        s = Switchd(self, conf, name=name, port=port)
        self.switchds.append(s)
        return s

    def client(self, port, **kw):
        c = Client(port, **kw)
        self.clients.append(c)
        return c

    def postgres(self, schema=PG_SCHEMA):
        """A PostgreSQL cluster for this test (see Postgres), stopped and
        removed at teardown."""
        pg = Postgres(self, schema)
        if not hasattr(self, "pg_clusters"):
            self.pg_clusters = []
        self.pg_clusters.append(pg)
        return pg

    def get(self, port, path="/", **kw):
        """One request on a fresh connection, closed afterwards."""
        c = self.client(port)
        try:
            return c.request("GET", path, **kw)
        finally:
            c.close()

    def path(self, name):
        return os.path.join(self.dir, name)

    # teardown
    def teardown(self):
        """Stops everything. Returns a list of error strings about switchd's
        own exit (status, sanitizers)."""
        errors = []
        for c in self.clients:
            c.close()
        for s in getattr(self, "blackhole_sockets", []):
            s.close()
        for s in self.switchds:
            try:
                s.stop()
            except AssertionError as e:
                errors.append("%s: %s" % (s.name, e))
            except Exception as e:  # noqa
                errors.append("%s: stop failed: %r" % (s.name, e))
            finally:
                if s.proc.poll() is None:
                    s.proc.kill()
                    s.proc.wait(5)
        for u in self.upstreams:
            u.stop()
        for g in self.gunicorns:
            g.stop()
        for pg in getattr(self, "pg_clusters", []):
            try:
                pg.stop()
            except Exception as e:  # noqa
                errors.append("postgres: %s" % e)
        return errors

    def report(self):
        """Diagnostics printed for a failed test."""
        out = []
        for s in self.switchds:
            out.append("--- %s stderr (tail, exit %s) ---\n%s" % (
                s.name, s.exit_status if s.exit_status is not None else s.proc.poll(),
                tail(s.stderr_text(), 40)))
        for u in self.upstreams:
            t = read_file(u.logfile)
            if len(t.splitlines()) > 1:
                out.append("--- upstream %s log (tail) ---\n%s" % (u.name, tail(t, 15)))
        for g in self.gunicorns:
            t = read_file(g.logfile)
            if t.strip():
                out.append("--- gunicorn %s log (tail) ---\n%s" % (g.name, tail(t, 15)))
        return "\n".join(out)

    def cleanup(self, keep=False):
        if not keep:
            shutil.rmtree(self.dir, ignore_errors=True)


# -- health checks in tests ------------------------------------------------------

def health_opts(rise=2, **over):
    """Health directives of an upstream section: fast checks of /health
    (answered by upstream.py, switchable with set_health)."""
    o = {"health": "on", "health_path": "/health", "health_interval": "250ms",
         "health_timeout": "200ms", "health_rise": rise, "health_fall": 3}
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


def traffic(u):
    """The requests upstream u saw, health probes left out."""
    return [e for e in u.log() if not e.get("health")]

