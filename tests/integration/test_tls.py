"""HTTPS listeners (issue 5): certificates and SNI, protocol versions, ALPN,
session resumption, certificate reload, `switchd -t`, hostile handshakes,
WebSocket and large bodies over TLS.

Certificates are made at test time with the `openssl` command in the test's
folder: a test CA, server certificates signed by it, an expired one (`openssl
ca` with -startdate/-enddate in the past) and one not valid yet. Clients are
curl, `openssl s_client` and Python's ssl module, all on 127.0.0.1.
"""

import hashlib
import json
import os
import re
import socket
import ssl
import struct
import subprocess
import time

from harness import (SLOW, Client, check_config, make_config, parse_response_bytes,
                     pattern_bytes, pattern_sha256, timeout, wait_for)

CA_CNF = """\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[v3_ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[ca]
default_ca = testca
[testca]
dir = {dir}
database = {dir}/index.txt
new_certs_dir = {dir}
serial = {dir}/serial
default_md = sha256
policy = pol
unique_subject = no
copy_extensions = none
[pol]
commonName = supplied
organizationName = optional
"""

LEAF_EXT = """\
basicConstraints = CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = {san}
"""


def _run(cmd, timeout_s=30, **kw):
    p = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True,
                       timeout=timeout_s, **kw)
    if p.returncode != 0:
        raise AssertionError("%s failed (%d):\n%s%s" % (
            " ".join(cmd), p.returncode, p.stdout.decode(errors="replace"),
            p.stderr.decode(errors="replace")))
    return p.stdout.decode(errors="replace")


class Pki:
    """A test CA in ctx.dir/pki and the server certificates it signs."""

    def __init__(self, ctx):
        self.dir = ctx.path("pki")
        os.makedirs(self.dir)
        self.cnf = os.path.join(self.dir, "ca.cnf")
        with open(self.cnf, "w") as f:
            f.write(CA_CNF.format(dir=self.dir))
        with open(os.path.join(self.dir, "index.txt"), "w"):
            pass
        with open(os.path.join(self.dir, "serial"), "w") as f:
            f.write("7000\n")
        self.ca = self.p("ca.pem")
        self.ca_key = self.p("ca.key")
        _run(["openssl", "req", "-x509", "-config", self.cnf, "-extensions", "v3_ca",
              "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
              "-keyout", self.ca_key, "-out", self.ca, "-days", "3650",
              "-subj", "/CN=switchd test CA"])
        self.serial = 1000

    def p(self, name):
        return os.path.join(self.dir, name)

    def key(self, name):
        path = self.p(name + ".key")
        _run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt",
              "ec_paramgen_curve:P-256", "-out", path])
        return path

    def _csr(self, name, subj, key):
        csr = self.p(name + ".csr")
        _run(["openssl", "req", "-new", "-config", self.cnf, "-key", key,
              "-out", csr, "-subj", subj])
        ext = self.p(name + ".ext")
        return csr, ext

    def leaf(self, name, cn, sans=None, org=None, key=None, days=30):
        """A certificate for cn (subjectAltName DNS:sans, default [cn]),
        signed by the CA, with its own serial. Returns (cert, key, serial)."""
        key = key or self.key(name)
        subj = "/CN=%s" % cn + ("/O=%s" % org if org else "")
        csr, ext = self._csr(name, subj, key)
        sans = [cn] if sans is None else sans
        with open(ext, "w") as f:
            text = LEAF_EXT.format(san=",".join("DNS:%s" % s for s in sans))
            if not sans:  # CN only
                text = "\n".join(ln for ln in text.split("\n")
                                 if not ln.startswith("subjectAltName"))
            f.write(text)
        self.serial += 1
        cert = self.p(name + ".pem")
        _run(["openssl", "x509", "-req", "-in", csr, "-CA", self.ca, "-CAkey",
              self.ca_key, "-set_serial", str(self.serial), "-days", str(days),
              "-extfile", ext, "-out", cert])
        return cert, key, self.serial

    def dated(self, name, cn, start, end):
        """A CA-signed certificate valid from start to end (YYYYMMDDHHMMSSZ):
        `openssl ca` is the 3.0 CLI's way to a notAfter in the past.
        Returns (cert, key, serial)."""
        key = self.key(name)
        csr, ext = self._csr(name, "/CN=%s" % cn, key)
        with open(ext, "w") as f:
            f.write(LEAF_EXT.format(san="DNS:%s" % cn))
        cert = self.p(name + ".pem")
        _run(["openssl", "ca", "-batch", "-config", self.cnf, "-cert", self.ca,
              "-keyfile", self.ca_key, "-in", csr, "-out", cert, "-notext",
              "-startdate", start, "-enddate", end, "-extfile", ext])
        out = _run(["openssl", "x509", "-in", cert, "-noout", "-serial"])
        return cert, key, int(out.strip().split("=")[1], 16)

    def ocsp(self, name, cert):
        """A DER OCSP response about cert, signed by the CA (status unknown:
        the CA's database does not list it; a response all the same)."""
        req, resp = self.p(name + ".ocspreq"), self.p(name + ".ocsp")
        _run(["openssl", "ocsp", "-issuer", self.ca, "-cert", cert, "-no_nonce",
              "-reqout", req])
        _run(["openssl", "ocsp", "-index", self.p("index.txt"), "-rsigner", self.ca,
              "-rkey", self.ca_key, "-CA", self.ca, "-reqin", req, "-respout", resp,
              "-ndays", "1"])
        return resp

    def expired(self, name, cn="a.test"):
        return self.dated(name, cn, "20200101000000Z", "20200102000000Z")

    def not_yet_valid(self, name, cn="a.test"):
        return self.dated(name, cn, "20990101000000Z", "20991231000000Z")


def replace_file(src, dst):
    """Copies src over dst atomically (what a deploy tool does)."""
    tmp = dst + ".new"
    with open(src, "rb") as f, open(tmp, "wb") as g:
        g.write(f.read())
    os.rename(tmp, dst)


# -- config --------------------------------------------------------------------

def tls_config(port, blue, certs, tls=None, **kw):
    """make_config with `certificate` lines (and tls_* directives) in the
    listen section. certs: (cert, key) pairs, the first the default."""
    conf = make_config([port], blue, **kw)
    bind = "    bind 127.0.0.1:%d\n" % port
    assert bind in conf
    lines = ["    certificate %s %s" % (c[0], c[1]) for c in certs]
    for k, v in (tls or {}).items():
        lines.append("    %s %s" % (k, v))
    return conf.replace(bind, bind + "\n".join(lines) + "\n", 1)


def line_of(conf, text):
    """1-based number of the config line that is `text` once stripped."""
    for i, line in enumerate(conf.split("\n")):
        if line.strip() == text.strip():
            return i + 1
    raise AssertionError("no line %r in config" % text)


def start_tls(ctx, pki=None, certs=None, tls=None, upstream_args=(), **kw):
    """An upstream, a PKI with a.test and b.test, and switchd serving HTTPS
    with a.test as the default."""
    pki = pki or Pki(ctx)
    if certs is None:
        a = pki.leaf("a", "a.test")
        b = pki.leaf("b", "b.test")
        certs = [a, b]
    up = ctx.upstream("blue", *upstream_args)
    port = ctx.port()
    conf = tls_config(port, [up], certs, tls, **kw)
    sw = ctx.switchd(conf=conf, port=port)
    return pki, up, sw, certs


# -- clients -------------------------------------------------------------------

def client_context(cafile, check_hostname=True, minv=None, maxv=None):
    c = ssl.create_default_context(cafile=cafile)
    c.check_hostname = check_hostname
    c.set_alpn_protocols(["http/1.1"])
    if minv:
        c.minimum_version = minv
    if maxv:
        c.maximum_version = maxv
    return c


class TlsClient(Client):
    """harness.Client over TLS (Python's ssl): same reads with deadlines,
    same parsed responses."""

    def __init__(self, port, cafile, sni="a.test", timeout=5.0, context=None):
        self.port = port
        self.timeout = timeout
        self.buf = bytearray()
        self.eof = False
        self.reset = False
        ctx = context or client_context(cafile, check_hostname=sni is not None)
        raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            self.s = ctx.wrap_socket(raw, server_hostname=sni)
        except BaseException:
            raw.close()
            raise
        self.local = self.s.getsockname()

    def cert(self):
        return self.s.getpeercert()


def tls_client(ctx, port, cafile, **kw):
    c = TlsClient(port, cafile, **kw)
    ctx.clients.append(c)
    return c


def peer_serial(cert):
    return int(cert["serialNumber"], 16)


def peer_san(cert):
    return [v for k, v in cert.get("subjectAltName", ()) if k == "DNS"]


def peer_cn(cert):
    for rdn in cert["subject"]:
        for k, v in rdn:
            if k == "commonName":
                return v
    return None


def curl(args, timeout_s=20):
    """Runs curl; returns (exit status, stdout, stderr)."""
    p = subprocess.run(["curl", "-sS", "--http1.1", "--max-time", str(timeout_s - 5)]
                       + list(args), stdin=subprocess.DEVNULL, capture_output=True,
                       timeout=timeout_s)
    return p.returncode, p.stdout, p.stderr.decode(errors="replace")


def s_client(port, args, request=None, timeout_s=15):
    """openssl s_client to 127.0.0.1:port. With a request, it is sent after
    the handshake and s_client waits for the server's close (-ign_eof), so
    TLS 1.3 tickets arrive and -sess_out has one to write. Returns
    (exit status, stdout + stderr text)."""
    cmd = ["openssl", "s_client", "-connect", "127.0.0.1:%d" % port] + list(args)
    if request is not None:
        cmd.append("-ign_eof")
    p = subprocess.run(cmd, input=request or b"", capture_output=True,
                       timeout=timeout_s)
    return p.returncode, (p.stdout.decode(errors="replace") + "\n--- stderr ---\n"
                          + p.stderr.decode(errors="replace"))


CLOSE_REQ = b"GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n"


def https_get_ok(port, pki, path="/", sni="a.test"):
    """One request on a fresh TLS connection: must be 200 from the upstream."""
    c = TlsClient(port, pki.ca, sni=sni)
    try:
        r = c.request("GET", path, host=sni or "a.test",
                      headers=[("Connection", "close")])
    finally:
        c.close()
    assert r.status == 200, r
    return r


def client_hello(sni="a.test"):
    """The bytes of a real ClientHello (Python's OpenSSL, TLS 1.2-1.3)."""
    c = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    c.check_hostname = False
    c.verify_mode = ssl.CERT_NONE
    c.set_alpn_protocols(["http/1.1"])
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = c.wrap_bio(inc, out, server_hostname=sni)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    hello = out.read()
    assert hello[:1] == b"\x16" and len(hello) > 100, hello[:40]
    return hello


def wait_log(sw, text, count=1, timeout_s=5.0):
    wait_for(lambda: sw.stderr_text().count(text) >= count, timeout_s,
             what="%r (x%d) in switchd's log" % (text, count))


# -- 1. a request through ------------------------------------------------------

def test_tls_https_request_curl(ctx):
    """curl verifies the chain with the test CA, gets the upstream's answer;
    the upstream sees X-Forwarded-Proto: https (even when the client claims
    http). A plain listen section of the same config stays plain HTTP."""
    pki = Pki(ctx)
    a = pki.leaf("a", "a.test")
    up = ctx.upstream("blue")
    port, plain = ctx.port(), ctx.port()
    conf = tls_config(port, [up], [a], raw_extra="listen\n    bind 127.0.0.1:%d\n" % plain)
    sw = ctx.switchd(conf=conf, port=port)
    url = "https://a.test:%d/echo" % port
    rc, out, err = curl(["--cacert", pki.ca, "--resolve", "a.test:%d:127.0.0.1" % port,
                         "-H", "X-Forwarded-Proto: http",
                         "-w", "\n%{http_code} %{ssl_verify_result} %{scheme}", url])
    assert rc == 0, "curl exit %d: %s" % (rc, err)
    body, _, tail = out.rpartition(b"\n")
    assert tail.decode() == "200 0 HTTPS", "status/verify/scheme %r (%s)" % (tail, err)
    e = json.loads(body)
    assert e["name"] == "blue" and e["path"] == "/echo", e
    xfp = [v for n, v in e["headers"] if n.lower() == "x-forwarded-proto"]
    assert xfp == ["https"], "upstream saw X-Forwarded-Proto %r: %r" % (xfp, e["headers"])
    # GET / gives the upstream's body
    rc, out, err = curl(["--cacert", pki.ca, "--resolve", "a.test:%d:127.0.0.1" % port,
                         "https://a.test:%d/" % port])
    assert rc == 0 and out == b"blue\n", (rc, out, err)
    # Without the test CA the chain does not verify (so the check above is real).
    rc, out, err = curl(["--resolve", "a.test:%d:127.0.0.1" % port, url])
    assert rc == 60, "curl without the CA: exit %d (expected 60): %s" % (rc, err)
    # The plain section of the same config: HTTP, X-Forwarded-Proto http.
    c = ctx.client(plain)
    r = c.request("GET", "/echo")
    assert r.status == 200, r
    xfp = [v for n, v in r.json()["headers"] if n.lower() == "x-forwarded-proto"]
    assert xfp == ["http"], "plain listener: X-Forwarded-Proto %r" % xfp
    assert sw.alive()


# -- 2. SNI --------------------------------------------------------------------

def test_tls_sni_selects_certificate(ctx):
    pki, up, sw, (a, b) = start_tls(ctx)
    noverify = client_context(pki.ca, check_hostname=False)
    cases = [("a.test", a), ("b.test", b), ("unknown.test", a), (None, a)]
    for sni, want in cases:
        c = tls_client(ctx, sw.port, pki.ca, sni=sni, context=noverify)
        cert = c.cert()
        assert peer_serial(cert) == want[2], \
            "SNI %r: certificate serial %d (%s), expected %d" % (
                sni, peer_serial(cert), peer_san(cert), want[2])
        want_name = "b.test" if want is b else "a.test"
        assert peer_san(cert) == [want_name] and peer_cn(cert) == want_name, \
            "SNI %r: %r" % (sni, cert)
        r = c.request("GET", "/", host=sni or "a.test")
        assert r.status == 200 and r.body == b"blue\n", r
        c.close()
    # s_client agrees (a second TLS stack)
    for sni, cn in (("b.test", "b.test"), ("a.test", "a.test")):
        rc, out = s_client(sw.port, ["-servername", sni, "-CAfile", pki.ca,
                                     "-verify_return_error"])
        assert rc == 0, out
        assert re.search(r"subject=CN ?= ?%s\b" % re.escape(cn), out), \
            "s_client -servername %s:\n%s" % (sni, out)
        assert "Verify return code: 0 (ok)" in out, out


# -- 3. protocol versions ------------------------------------------------------

def test_tls_old_versions_refused(ctx):
    pki, up, sw, _ = start_tls(ctx)
    for flag, name in (("-tls1", "TLSv1"), ("-tls1_1", "TLSv1.1")):
        # SECLEVEL=0: the client itself would refuse these versions otherwise.
        rc, out = s_client(sw.port, [flag, "-cipher", "DEFAULT@SECLEVEL=0",
                                     "-servername", "a.test"])
        assert rc != 0, "%s handshake accepted:\n%s" % (name, out)
        assert not re.search(r"^New, TLSv", out, re.M), out
        # The refusal is the server's (its alert), not the client's own.
        assert "alert protocol version" in out, out
    # TLS 1.2 and 1.3 are accepted by default.
    for flag, name in (("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")):
        rc, out = s_client(sw.port, [flag, "-servername", "a.test", "-CAfile", pki.ca],
                           request=CLOSE_REQ)
        assert rc == 0, "%s refused:\n%s" % (name, out)
        assert re.search(r"^New, %s," % re.escape(name), out, re.M), out
        assert "HTTP/1.1 200 OK" in out, out
    assert sw.alive()
    https_get_ok(sw.port, pki)


def test_tls_min_version_13(ctx):
    pki, up, sw, _ = start_tls(ctx, tls={"tls_min_version": "1.3"})
    rc, out = s_client(sw.port, ["-tls1_2", "-servername", "a.test"])
    assert rc != 0, "TLS 1.2 accepted with tls_min_version 1.3:\n%s" % out
    assert not re.search(r"^New, TLSv1\.2", out, re.M), out
    # Python's ssl, capped at 1.2, is refused too.
    try:
        c = TlsClient(sw.port, pki.ca, context=client_context(
            pki.ca, maxv=ssl.TLSVersion.TLSv1_2))
        c.close()
        raise AssertionError("a TLS 1.2-only client completed a handshake")
    except ssl.SSLError:
        pass
    rc, out = s_client(sw.port, ["-tls1_3", "-servername", "a.test", "-CAfile", pki.ca],
                       request=CLOSE_REQ)
    assert rc == 0 and re.search(r"^New, TLSv1\.3,", out, re.M), out
    assert "HTTP/1.1 200 OK" in out, out


# -- 4. ALPN -------------------------------------------------------------------

def test_tls_alpn_http11(ctx):
    pki, up, sw, _ = start_tls(ctx)
    rc, out = s_client(sw.port, ["-alpn", "http/1.1", "-servername", "a.test"])
    assert rc == 0, out
    assert "ALPN protocol: http/1.1" in out, out
    # A client that offers h2 first still gets http/1.1, the only one served.
    c = tls_client(ctx, sw.port, pki.ca)
    assert c.s.selected_alpn_protocol() == "http/1.1", c.s.selected_alpn_protocol()
    r = c.request("GET", "/")
    assert r.status == 200, r
    cx = client_context(pki.ca)
    cx.set_alpn_protocols(["h2", "http/1.1"])
    c2 = tls_client(ctx, sw.port, pki.ca, context=cx)
    assert c2.s.selected_alpn_protocol() == "http/1.1", c2.s.selected_alpn_protocol()
    assert c2.request("GET", "/").status == 200


# -- 5. session resumption -----------------------------------------------------

def _resume(ctx, sw, pki, version, tag):
    """Two s_client connections, the second with the first's session.
    Returns (first output, second output)."""
    sess = ctx.path("sess-%s-%s.pem" % (tag, version))
    base = ["-%s" % version, "-servername", "a.test", "-CAfile", pki.ca]
    rc, out1 = s_client(sw.port, base + ["-sess_out", sess], request=CLOSE_REQ)
    assert rc == 0 and "HTTP/1.1 200 OK" in out1, out1
    assert re.search(r"^New, ", out1, re.M), out1
    assert os.path.exists(sess) and os.path.getsize(sess) > 0, \
        "s_client wrote no session (%s):\n%s" % (version, out1)
    rc, out2 = s_client(sw.port, base + ["-sess_in", sess], request=CLOSE_REQ)
    assert rc == 0 and "HTTP/1.1 200 OK" in out2, out2
    return out1, out2


def test_tls_session_resumption_tickets(ctx):
    pki, up, sw, _ = start_tls(ctx, tls={"tls_session_tickets": "on"})
    for v in ("tls1_3", "tls1_2"):
        out1, out2 = _resume(ctx, sw, pki, v, "tickets")
        assert re.search(r"^Reused, ", out2, re.M), \
            "%s with tickets: not resumed:\n%s" % (v, out2)
    out1, _ = _resume(ctx, sw, pki, "tls1_2", "tickets2")
    assert "TLS session ticket lifetime hint" in out1, \
        "tickets on, yet no TLS 1.2 ticket:\n%s" % out1


def test_tls_session_ticket_survives_reload(ctx):
    """A SIGHUP builds new TLS contexts; the ticket keys carry over, so a
    session from before the reload still resumes after it."""
    pki, up, sw, _ = start_tls(ctx, tls={"tls_session_tickets": "on",
                                         "tls_session_cache": "0"})
    for v in ("tls1_3", "tls1_2"):
        sess = ctx.path("sess-reload-%s.pem" % v)
        base = ["-%s" % v, "-servername", "a.test", "-CAfile", pki.ca]
        rc, out1 = s_client(sw.port, base + ["-sess_out", sess], request=CLOSE_REQ)
        assert rc == 0 and re.search(r"^New, ", out1, re.M), out1
        n = sw.stderr_text().count("reloaded")
        sw.reload(open(sw.conf_path).read())
        wait_for(lambda: sw.stderr_text().count("reloaded") > n, 5 * SLOW,
                 what="the reload")
        rc, out2 = s_client(sw.port, base + ["-sess_in", sess], request=CLOSE_REQ)
        assert rc == 0 and "HTTP/1.1 200 OK" in out2, out2
        assert re.search(r"^Reused, ", out2, re.M), \
            "%s: the session from before the reload did not resume:\n%s" % (v, out2)


def test_tls_session_resumption_cache_without_tickets(ctx):
    pki, up, sw, _ = start_tls(ctx, tls={"tls_session_tickets": "off",
                                         "tls_session_cache": "1000"})
    for v in ("tls1_3", "tls1_2"):
        out1, out2 = _resume(ctx, sw, pki, v, "cache")
        assert re.search(r"^Reused, ", out2, re.M), \
            "%s with the session cache: not resumed:\n%s" % (v, out2)
        if v == "tls1_2":
            assert "TLS session ticket lifetime hint" not in out1, \
                "tls_session_tickets off, yet a TLS 1.2 ticket was issued:\n%s" % out1


def test_tls_no_resumption_without_tickets_or_cache(ctx):
    """The control for the two above: with neither, nothing is resumed."""
    pki, up, sw, _ = start_tls(ctx, tls={"tls_session_tickets": "off",
                                         "tls_session_cache": "0"})
    for v in ("tls1_2", "tls1_3"):
        sess = ctx.path("sess-none-%s.pem" % v)
        base = ["-%s" % v, "-servername", "a.test", "-CAfile", pki.ca]
        rc, out1 = s_client(sw.port, base + ["-sess_out", sess], request=CLOSE_REQ)
        assert rc == 0 and "HTTP/1.1 200 OK" in out1, out1
        if not os.path.exists(sess):
            continue  # no session to offer at all: nothing to resume
        rc, out2 = s_client(sw.port, base + ["-sess_in", sess], request=CLOSE_REQ)
        assert rc == 0 and "HTTP/1.1 200 OK" in out2, out2
        assert not re.search(r"^Reused, ", out2, re.M), \
            "%s resumed with tickets off and no cache:\n%s" % (v, out2)


# -- 6. reload -----------------------------------------------------------------

@timeout(45)
def test_tls_reload_certificates(ctx):
    pki = Pki(ctx)
    a1 = pki.leaf("a1", "a.test", org="first")
    live_cert, live_key = pki.p("live.pem"), pki.p("live.key")
    replace_file(a1[0], live_cert)
    replace_file(a1[1], live_key)
    _, up, sw, _ = start_tls(ctx, pki=pki, certs=[(live_cert, live_key)],
                             client={"idle_timeout": "30s"})
    cert_line = line_of(sw_conf(sw), "certificate %s %s" % (live_cert, live_key))

    old = tls_client(ctx, sw.port, pki.ca)
    assert peer_serial(old.cert()) == a1[2]
    r = old.request("GET", "/")
    assert r.status == 200 and r.body == b"blue\n", r

    # A new certificate in the same files, then SIGHUP.
    a2 = pki.leaf("a2", "a.test", org="second")
    replace_file(a2[0], live_cert)
    replace_file(a2[1], live_key)
    sw.reload(settle=0)
    wait_log(sw, "reloaded ")
    r = old.request("GET", "/")
    assert r.status == 200 and r.body == b"blue\n", \
        "the open connection after the reload: %r" % r
    assert peer_serial(old.cert()) == a1[2]
    new = tls_client(ctx, sw.port, pki.ca)
    got = new.cert()
    assert peer_serial(got) == a2[2], "after reload: serial %d, expected the new %d" % (
        peer_serial(got), a2[2])
    assert ("organizationName", "second") in [x for rdn in got["subject"] for x in rdn], got
    assert new.request("GET", "/").status == 200
    new.close()

    # A key that does not match: the reload is rejected, a2 stays.
    other_key = pki.key("other")
    a3 = pki.leaf("a3", "a.test", org="third")
    replace_file(a3[0], live_cert)
    replace_file(other_key, live_key)
    rejected = "reload rejected"
    sw.reload(settle=0)
    wait_log(sw, rejected, 1)
    text = sw.stderr_text()
    line = [ln for ln in text.splitlines() if rejected in ln][-1]
    assert "%s:%d: certificate" % (sw.conf_path, cert_line) in line, \
        "mismatched key: no FILE:LINE: certificate in %r" % line
    assert re.search(r"match", line, re.I), "mismatched key: reason not given: %r" % line
    c = tls_client(ctx, sw.port, pki.ca)
    assert peer_serial(c.cert()) == a2[2], \
        "after a rejected reload: serial %d, expected the previous %d" % (
            peer_serial(c.cert()), a2[2])
    assert c.request("GET", "/").status == 200
    c.close()

    # An expired certificate (with its own key): rejected too.
    ex = pki.expired("expired")
    replace_file(ex[0], live_cert)
    replace_file(ex[1], live_key)
    sw.reload(settle=0)
    wait_log(sw, rejected, 2)
    line = [ln for ln in sw.stderr_text().splitlines() if rejected in ln][-1]
    assert "%s:%d: certificate" % (sw.conf_path, cert_line) in line, \
        "expired: no FILE:LINE: certificate in %r" % line
    assert re.search(r"expire", line, re.I), "expired: reason not given: %r" % line
    c = tls_client(ctx, sw.port, pki.ca)
    assert peer_serial(c.cert()) == a2[2], \
        "after a rejected reload: serial %d, expected %d" % (peer_serial(c.cert()), a2[2])
    assert c.request("GET", "/").status == 200
    c.close()
    # The first connection lived through all of it.
    r = old.request("GET", "/")
    assert r.status == 200 and r.body == b"blue\n", r
    assert sw.alive()


def sw_conf(sw):
    with open(sw.conf_path) as f:
        return f.read()


# -- 7. switchd -t -------------------------------------------------------------

def test_tls_check_config_certificates(ctx):
    pki = Pki(ctx)
    a = pki.leaf("a", "a.test")
    b = pki.leaf("b", "b.test")
    up = "127.0.0.1:%d" % ctx.port()
    port = ctx.port()

    rc, out, err, path = check_config(ctx, tls_config(port, [up], [a, b]), name="good")
    assert rc == 0, "good certificates: exit %d: %s" % (rc, err)
    assert out.strip() == "%s: ok" % path, out

    other_key = pki.key("other")
    expired = pki.expired("expired")
    future = pki.not_yet_valid("future")
    missing = pki.p("missing.pem")
    missing_key = pki.p("missing.key")
    cases = [
        # (name, certificate lines, the bad one's index, file named, reason)
        ("mismatch", [(a[0], other_key)], 0, a[0], r"match"),
        ("expired", [expired], 0, expired[0], r"expire"),
        ("future", [future], 0, future[0], r"not (yet )?valid|not before|future"),
        ("missing-cert", [(missing, a[1])], 0, missing, r"."),
        ("missing-key", [(a[0], missing_key)], 0, missing_key, r"."),
        ("second-bad", [a, (b[0], a[1])], 1, b[0], r"match"),
    ]
    for name, certs, bad, named, reason in cases:
        conf = tls_config(port, [up], certs)
        rc, out, err, path = check_config(ctx, conf, name=name)
        lineno = line_of(conf, "certificate %s %s" % (certs[bad][0], certs[bad][1]))
        assert rc == 1, "%s: switchd -t exited %d: %r %r" % (name, rc, out, err)
        assert "ok" not in out, "%s: %r" % (name, out)
        assert "%s:%d:" % (path, lineno) in err, \
            "%s: stderr does not name %s:%d: %r" % (name, path, lineno, err)
        assert "certificate" in err, "%s: %r" % (name, err)
        assert named in err, "%s: stderr does not name %s: %r" % (name, named, err)
        assert re.search(reason, err, re.I), "%s: no reason in %r" % (name, err)


# -- 8. hostile and broken clients ---------------------------------------------

def test_tls_plain_http_gets_400(ctx):
    pki, up, sw, _ = start_tls(ctx)
    for req in (b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n",
                b"POST /echo HTTP/1.1\r\nHost: a.test\r\nContent-Length: 5\r\n\r\nhello",
                b"HEAD / HTTP/1.1\r\nHost: a.test\r\n\r\n",
                b"OPTIONS * HTTP/1.1\r\nHost: a.test\r\n\r\n",
                b"DELETE /x HTTP/1.1\r\nHost: a.test\r\n\r\n",
                b"PATCH /x HTTP/1.1\r\nHost: a.test\r\nContent-Length: 0\r\n\r\n",
                b"CONNECT a.test:443 HTTP/1.1\r\nHost: a.test:443\r\n\r\n",
                b"GET / HTTP/1.0\r\n\r\n",
                (b"G", b"ET / HTTP/1.1\r\nHost: a.test\r\n\r\n"),
                (b"DEL", b"ETE / HTTP/1.1\r\nHost: a.test\r\n\r\n")):
        c = ctx.client(sw.port)
        if isinstance(req, tuple):  # the request line cut in two writes
            c.send(req[0])
            time.sleep(0.2)
            c.send(req[1])
        else:
            c.send(req)
        t0 = time.time()
        raw = c.read_until_close(timeout=5)
        assert time.time() - t0 < 3, "closed only after %.1fs" % (time.time() - t0)
        assert raw.startswith(b"HTTP/1.1 400 Bad Request\r\n"), (req, raw[:300])
        r = parse_response_bytes(raw)  # exactly one response: body = Content-Length
        assert r.header("content-length") is not None, r
        ct = r.header("content-type", "")
        assert ct.split(";")[0].strip() == "text/plain", r
        assert r.has_token("connection", "close"), r
        assert b"\x15\x03" not in raw and b"\x16\x03" not in raw, raw
        c.close()
    assert up.requests() == 0, "plain HTTP on the HTTPS port reached the upstream"
    https_get_ok(sw.port, pki)


def test_tls_garbage_closed(ctx):
    pki, up, sw, _ = start_tls(ctx)
    hello = client_hello()
    for junk in (b"\x00\x01\x02\xff" * 64,
                 b"\x16\x03\x01\x00\x10" + b"\xee" * 16,          # a bad handshake
                 b"\x17\x03\x03\x00\x20" + b"\xaa" * 32,          # app data first
                 hello[:43] + b"\xff" + hello[44:],   # session id of 255 bytes
                 b"\x16\x03\x01\xff\xff" + b"\x01" * 300):        # record too long
        c = ctx.client(sw.port)
        c.send(junk)
        assert c.wait_closed(3), "connection open 3s after %r" % junk[:12]
        assert not bytes(c.buf).startswith(b"HTTP/"), bytes(c.buf)[:200]
        c.close()
        assert sw.alive()
    https_get_ok(sw.port, pki)
    assert up.requests() == 1


@timeout(40)
def test_tls_stalled_handshakes_time_out(ctx):
    pki, up, sw, _ = start_tls(ctx, tls={"tls_handshake_timeout": "1s"},
                               client={"header_timeout": "20s", "idle_timeout": "30s"})
    hello = client_hello()
    stalls = [("nothing sent", b""), ("20 bytes of a ClientHello", hello[:20]),
              ("a whole ClientHello, no Finished", hello)]
    clients = []
    for what, data in stalls:
        c = ctx.client(sw.port)
        if data:
            c.send(data)
        clients.append((what, c, time.time()))
    for what, c, t0 in clients:
        assert c.wait_closed(6), "%s: connection open 6s later (handshake timeout 1s)" % what
        dt = time.time() - t0
        assert 0.6 < dt < 4.0, "%s: closed after %.2fs, handshake timeout 1s" % (what, dt)
        assert not bytes(c.buf).startswith(b"HTTP/"), (what, bytes(c.buf)[:200])
    # A completed handshake is not under the handshake timeout: the first
    # request may come later (header_timeout 20s governs).
    c = tls_client(ctx, sw.port, pki.ca)
    time.sleep(2.0)
    r = c.request("GET", "/")
    assert r.status == 200 and r.body == b"blue\n", \
        "request 2s after a completed handshake (tls_handshake_timeout 1s): %r" % r
    assert sw.alive()
    https_get_ok(sw.port, pki)


def test_tls_client_closes_mid_handshake(ctx):
    pki, up, sw, _ = start_tls(ctx)
    hello = client_hello()
    for how in ("fin-partial", "fin-after-serverhello", "rst-after-serverhello",
                "rst-partial", "fin-at-once"):
        s = socket.create_connection(("127.0.0.1", sw.port), timeout=5)
        if how.endswith("partial"):
            s.sendall(hello[:len(hello) // 2])
            time.sleep(0.1)
        elif how.endswith("serverhello"):
            s.sendall(hello)
            d = s.recv(65536)
            assert d[:1] == b"\x16", "%s: no ServerHello: %r" % (how, d[:40])
        if how.startswith("rst"):
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
        time.sleep(0.1)
        assert sw.alive(), "switchd died after %s" % how
    # Many at once, to shake out use-after-free in the close paths.
    socks = []
    for i in range(30):
        s = socket.create_connection(("127.0.0.1", sw.port), timeout=5)
        s.sendall(hello if i % 2 else hello[:30])
        if i % 3 == 0:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        socks.append(s)
    for s in socks:
        s.close()
    time.sleep(0.3)
    assert sw.alive()
    for _ in range(3):
        https_get_ok(sw.port, pki)
    assert up.requests() == 3


# -- 9. WebSocket --------------------------------------------------------------

def test_tls_websocket_both_ways(ctx):
    pki, up, sw, _ = start_tls(ctx)
    c = tls_client(ctx, sw.port, pki.ca)
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
    # The client's close_notify ends the tunnel: the upstream sees the end,
    # closes, and switchd closes the client's side with its own close_notify.
    c.s.settimeout(5)
    raw = c.s.unwrap()
    raw.close()
    https_get_ok(sw.port, pki)
    assert sw.alive()


# -- 10. large bodies ----------------------------------------------------------

@timeout(60)
def test_tls_large_bodies(ctx):
    pki, up, sw, _ = start_tls(ctx)
    n = 5000000
    c = tls_client(ctx, sw.port, pki.ca, timeout=30)
    r = c.request("GET", "/bytes/%d" % n, store_body=False, timeout=30)
    assert r.status == 200 and r.body_len == n, r
    assert r.sha256 == pattern_sha256(n), "5 MB response corrupted over TLS"
    body = os.urandom(2 * 1024 * 1024)
    r = c.request("POST", "/echo", body=body, timeout=30)
    assert r.status == 200, r
    e = r.json()
    assert e["body_len"] == len(body), e["body_len"]
    assert e["body_sha256"] == hashlib.sha256(body).hexdigest(), "2 MB upload corrupted"
    r = c.request("GET", "/")
    assert r.status == 200 and r.body == b"blue\n", r
    # curl, another TLS stack, the same 5 MB.
    out = ctx.path("big.bin")
    rc, so, err = curl(["--cacert", pki.ca, "--resolve", "a.test:%d:127.0.0.1" % sw.port,
                        "-o", out, "-w", "%{http_code} %{size_download}",
                        "https://a.test:%d/bytes/%d" % (sw.port, n)], timeout_s=40)
    assert rc == 0 and so == b"200 %d" % n, (rc, so, err)
    h = hashlib.sha256()
    with open(out, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    assert h.hexdigest() == pattern_sha256(n), "curl's 5 MB differs"
    up_file = ctx.path("up.bin")
    with open(up_file, "wb") as f:
        f.write(body)
    rc, so, err = curl(["--cacert", pki.ca, "--resolve", "a.test:%d:127.0.0.1" % sw.port,
                        "--data-binary", "@" + up_file, "-H",
                        "Content-Type: application/octet-stream",
                        "https://a.test:%d/echo" % sw.port], timeout_s=40)
    assert rc == 0, (rc, err)
    e = json.loads(so)
    assert e["body_len"] == len(body) and \
        e["body_sha256"] == hashlib.sha256(body).hexdigest(), e["body_len"]


# -- more: sections, binds, ciphers, OCSP, close_notify, memory ----------------

def test_tls_sni_cn_only_and_case(ctx):
    """A certificate without subjectAltName is chosen by its CN; SNI names
    match whatever their case (DNS names are case-insensitive)."""
    pki = Pki(ctx)
    a = pki.leaf("a", "a.test")
    c_only = pki.leaf("c", "c.test", sans=[])
    _, up, sw, _ = start_tls(ctx, pki=pki, certs=[a, c_only])
    noverify = client_context(pki.ca, check_hostname=False)
    c = tls_client(ctx, sw.port, pki.ca, sni="c.test", context=noverify)
    assert peer_serial(c.cert()) == c_only[2], "SNI c.test (CN only): %r" % c.cert()
    assert c.request("GET", "/", host="c.test").status == 200
    c.close()
    rc, out = s_client(sw.port, ["-servername", "C.Test"])
    assert rc == 0 and re.search(r"subject=CN ?= ?c\.test\b", out), \
        "SNI C.Test did not get c.test:\n%s" % out


def test_tls_all_binds_of_the_section(ctx):
    """Binds written before and after the certificate are all HTTPS; a
    second HTTPS section has its own default certificate."""
    pki = Pki(ctx)
    a = pki.leaf("a", "a.test")
    b = pki.leaf("b", "b.test")
    up = ctx.upstream("blue")
    p1, p2, p3 = ctx.port(), ctx.port(), ctx.port()
    conf = tls_config(p1, [up], [a], raw_extra=(
        "listen\n    bind 127.0.0.1:%d\n    certificate %s %s\n" % (p3, b[0], b[1])))
    conf = conf.replace("    certificate %s %s\n" % (a[0], a[1]),
                        "    certificate %s %s\n    bind 127.0.0.1:%d\n" % (a[0], a[1], p2), 1)
    sw = ctx.switchd(conf=conf, port=p1)
    noverify = client_context(pki.ca, check_hostname=False)
    for port, want in ((p1, a), (p2, a), (p3, b)):
        c = tls_client(ctx, port, pki.ca, sni=None, context=noverify)
        assert peer_serial(c.cert()) == want[2], \
            "port %d: serial %d, expected %d" % (port, peer_serial(c.cert()), want[2])
        r = c.request("GET", "/echo")
        assert r.status == 200, r
        xfp = [v for n, v in r.json()["headers"] if n.lower() == "x-forwarded-proto"]
        assert xfp == ["https"], (port, xfp)
        c.close()
    assert sw.alive()


@timeout(40)
def test_tls_handshake_timeout_per_section(ctx):
    """Each HTTPS section has its own tls_handshake_timeout."""
    pki = Pki(ctx)
    a = pki.leaf("a", "a.test")
    up = ctx.upstream("blue")
    fast, slow = ctx.port(), ctx.port()
    conf = tls_config(fast, [up], [a], tls={"tls_handshake_timeout": "1s"},
                      client={"header_timeout": "20s"},
                      raw_extra="listen\n    bind 127.0.0.1:%d\n    certificate %s %s\n"
                                "    tls_handshake_timeout 5s\n" % (slow, a[0], a[1]))
    sw = ctx.switchd(conf=conf, port=fast)
    hello = client_hello()
    cf, cs = ctx.client(fast), ctx.client(slow)
    t0 = time.time()
    cf.send(hello[:20])
    cs.send(hello[:20])
    assert cf.wait_closed(4), "1s section: open after 4s"
    dt = time.time() - t0
    assert 0.6 < dt < 3.5, "1s section: closed after %.2fs" % dt
    assert not cs.wait_closed(max(0.1, 3.5 - (time.time() - t0))), \
        "5s section: closed after %.2fs (tls_handshake_timeout 5s there; the other " \
        "section's 1s applied)" % (time.time() - t0)
    assert cs.wait_closed(5), "5s section: still open after 8.5s"
    dt = time.time() - t0
    assert 4.0 < dt < 8.0, "5s section: closed after %.2fs" % dt
    assert sw.alive()


def test_tls_ciphers_and_ciphersuites(ctx):
    pki, up, sw, _ = start_tls(ctx, tls={
        "tls_ciphers": "ECDHE-ECDSA-AES128-GCM-SHA256",
        "tls_ciphersuites": "TLS_CHACHA20_POLY1305_SHA256"})
    rc, out = s_client(sw.port, ["-tls1_2", "-servername", "a.test"], request=CLOSE_REQ)
    assert rc == 0 and re.search(r"^New, TLSv1\.2, Cipher is ECDHE-ECDSA-AES128-GCM-SHA256$",
                                 out, re.M), out
    rc, out = s_client(sw.port, ["-tls1_2", "-servername", "a.test", "-cipher",
                                 "ECDHE-ECDSA-AES256-GCM-SHA384"])
    assert rc != 0 and not re.search(r"^New, TLSv", out, re.M), \
        "a cipher outside tls_ciphers was accepted:\n%s" % out
    rc, out = s_client(sw.port, ["-tls1_3", "-servername", "a.test"], request=CLOSE_REQ)
    assert rc == 0 and re.search(r"^New, TLSv1\.3, Cipher is TLS_CHACHA20_POLY1305_SHA256$",
                                 out, re.M), out
    # A cipher list OpenSSL does not know is a config error.
    port = ctx.port()
    a = (pki.p("a.pem"), pki.p("a.key"))
    conf = tls_config(port, ["127.0.0.1:%d" % ctx.port()], [a],
                      tls={"tls_ciphers": "NO-SUCH-CIPHER"})
    rc, out, err, path = check_config(ctx, conf, name="badcipher")
    assert rc == 1 and "%s:" % path in err, (rc, out, err)


def test_tls_ocsp_stapling(ctx):
    pki = Pki(ctx)
    a = pki.leaf("a", "a.test")
    b = pki.leaf("b", "b.test")
    resp = pki.ocsp("a", a[0])
    up = ctx.upstream("blue")
    port = ctx.port()
    conf = tls_config(port, [up], [a, b])
    conf = conf.replace("    certificate %s %s\n" % (a[0], a[1]),
                        "    certificate %s %s\n    ocsp_response %s\n" % (a[0], a[1], resp), 1)
    sw = ctx.switchd(conf=conf, port=port)
    rc, out = s_client(sw.port, ["-status", "-servername", "a.test"])
    assert rc == 0, out
    assert "OCSP Response Status: successful" in out, "no staple for a.test:\n%s" % out
    assert re.search(r"Serial Number: 0*%X\b" % a[2], out), out
    rc, out = s_client(sw.port, ["-status", "-servername", "b.test"])
    assert rc == 0 and "OCSP response: no response sent" in out, \
        "b.test has no ocsp_response:\n%s" % out


def test_tls_close_notify_and_close_delimited(ctx):
    """switchd ends its TLS connections with close_notify, so a body that ends
    with the connection is not mistaken for a truncation (curl with OpenSSL
    3 reports an unexpected EOF otherwise); the client's close_notify is
    answered."""
    pki, up, sw, _ = start_tls(ctx, client={"idle_timeout": "1s"})
    for path, n in (("/close-delimited/5000", 5000), ("/bytes/3000", 3000)):
        rc, out, err = curl(["--cacert", pki.ca,
                             "--resolve", "a.test:%d:127.0.0.1" % sw.port,
                             "-H", "Connection: close", "https://a.test:%d%s" % (sw.port, path)])
        assert rc == 0, "curl %s: exit %d: %s" % (path, rc, err)
        assert out == pattern_bytes(n), "curl %s: %d bytes" % (path, len(out))

    def strict():
        cx = client_context(pki.ca)
        raw = socket.create_connection(("127.0.0.1", sw.port), timeout=5)
        s = cx.wrap_socket(raw, server_hostname="a.test", suppress_ragged_eofs=False)
        return s

    def read_to_eof(s, what):
        buf = b""
        while True:
            try:
                d = s.recv(65536)
            except ssl.SSLEOFError as e:
                raise AssertionError("%s: TCP close without close_notify (%s)" % (what, e))
            if not d:
                return buf
            buf += d

    # Connection: close from the client.
    s = strict()
    s.sendall(b"GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n")
    data = read_to_eof(s, "Connection: close")
    assert data.startswith(b"HTTP/1.1 200") and data.endswith(b"blue\n"), data
    s.close()
    # The idle timeout.
    s = strict()
    s.sendall(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
    s.settimeout(5)
    data = read_to_eof(s, "idle timeout")
    assert data.startswith(b"HTTP/1.1 200") and data.endswith(b"blue\n"), data
    s.close()
    # The client's close_notify is answered with switchd's.
    s = strict()
    s.sendall(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
    got = b""
    while not got.endswith(b"blue\n"):
        got += s.recv(65536)
    s.settimeout(3)
    raw = s.unwrap()  # sends close_notify, waits for the peer's
    raw.close()
    assert sw.alive()


def test_tls_pipelined_and_fragmented_requests(ctx):
    pki, up, sw, _ = start_tls(ctx)
    c = tls_client(ctx, sw.port, pki.ca)
    reqs = [b"GET /delay/200 HTTP/1.1\r\nHost: a.test\r\n\r\n",
            b"POST /echo HTTP/1.1\r\nHost: a.test\r\nContent-Length: 5\r\n\r\nhello",
            b"GET /bytes/70000 HTTP/1.1\r\nHost: a.test\r\n\r\n",
            b"GET /status/201 HTTP/1.1\r\nHost: a.test\r\n\r\n"]
    c.send(b"".join(reqs))  # one TLS record
    r = c.read_response()
    assert r.status == 200 and r.body == b"blue\n", r
    r = c.read_response()
    assert r.status == 200 and r.json()["body_len"] == 5, r
    r = c.read_response()
    assert r.status == 200 and r.body == pattern_bytes(70000), r
    r = c.read_response()
    assert r.status == 201, r
    # One request a byte per TLS record.
    for b in b"POST /echo HTTP/1.1\r\nHost: a.test\r\nContent-Length: 3\r\n\r\nabc":
        c.send(bytes([b]))
    r = c.read_response()
    assert r.status == 200 and r.json()["body_len"] == 3, r
    assert not c.wait_closed(0.3)


@timeout(90)
def test_tls_100mib_response_bounded_memory(ctx):
    from harness import MiB, RSS_BOUND_KB, RSS_BOUND_MIB, RssSampler
    n = 100 * MiB
    pki, up, sw, _ = start_tls(ctx)
    rss = RssSampler(sw.pid)
    c = tls_client(ctx, sw.port, pki.ca, timeout=60)
    r = c.request("GET", "/bytes/%d" % n, store_body=False, timeout=70)
    assert r.status == 200 and r.body_len == n, r
    assert r.sha256 == pattern_sha256(n), "100 MiB over TLS corrupted"
    peak = max(rss.stop(), sw.hwm_kb() or 0)
    assert peak < RSS_BOUND_KB, "peak RSS %.1f MiB over the %d MiB bound" % (
        peak / 1024, RSS_BOUND_MIB)
    assert c.request("GET", "/").status == 200


@timeout(90)
def test_tls_slow_reader_backpressure(ctx):
    """A TLS client reading 100 MiB slowly: switchd must stop reading from the
    upstream rather than encrypt everything into its write queue."""
    from harness import MiB, RSS_BOUND_KB, RssSampler
    n = 100 * MiB
    pki, up, sw, _ = start_tls(ctx)
    rss = RssSampler(sw.pid)
    raw_rcvbuf = 65536
    cx = client_context(pki.ca)
    raw = socket.socket()
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, raw_rcvbuf)
    raw.settimeout(60)
    raw.connect(("127.0.0.1", sw.port))
    c = TlsClient.__new__(TlsClient)
    c.port, c.timeout, c.buf, c.eof, c.reset = sw.port, 60, bytearray(), False, False
    c.s = cx.wrap_socket(raw, server_hostname="a.test")
    ctx.clients.append(c)
    slow_until = time.time() + 3
    state = {"checked": False, "upstream_done": None, "rss_slow": 0, "got_slow": 0}

    def on_body(data):
        if time.time() < slow_until:
            state["got_slow"] += len(data)
            time.sleep(0.05)
        elif not state["checked"]:
            state["checked"] = True
            state["rss_slow"] = rss.max_kb
            state["upstream_done"] = any(e["t_done"] for e in up.log())

    c.send(b"GET /bytes/%d HTTP/1.1\r\nHost: a.test\r\n\r\n" % n)
    r = c.read_response(store_body=False, on_body=on_body, timeout=70)
    assert r.body_len == n and r.sha256 == pattern_sha256(n), r
    assert state["checked"], "the response ended during the slow phase"
    assert state["upstream_done"] is False, \
        "the upstream finished 100 MiB while the TLS client had read %.1f MiB: " \
        "no backpressure" % (state["got_slow"] / MiB)
    assert state["rss_slow"] < RSS_BOUND_KB, "RSS %.1f MiB during the slow read" % (
        state["rss_slow"] / 1024)


@timeout(90)
def test_tls_100mib_upload_bounded_memory(ctx):
    from harness import MiB, RSS_BOUND_KB, RSS_BOUND_MIB, RssSampler, pattern_iter
    n = 100 * MiB
    pki, up, sw, _ = start_tls(ctx, client={"max_body": "200m"})
    rss = RssSampler(sw.pid)
    c = tls_client(ctx, sw.port, pki.ca, timeout=60)
    c.send(b"POST /echo HTTP/1.1\r\nHost: a.test\r\nContent-Length: %d\r\n\r\n" % n)
    for piece in pattern_iter(n):
        c.send(piece)
    r = c.read_response(timeout=60)
    assert r.status == 200, r
    e = r.json()
    assert e["body_len"] == n and e["body_sha256"] == pattern_sha256(n), e
    peak = max(rss.stop(), sw.hwm_kb() or 0)
    assert peak < RSS_BOUND_KB, "peak RSS %.1f MiB over the %d MiB bound" % (
        peak / 1024, RSS_BOUND_MIB)


@timeout(20)
def test_tls_session_timeout(ctx):
    """tls_session_timeout 1s: a session resumes at once, not 2.5 s later,
    whether it is in a ticket or in the cache."""
    pki = Pki(ctx)
    a = pki.leaf("a", "a.test")
    for tag, tls in (("tickets", {"tls_session_tickets": "on"}),
                     ("cache", {"tls_session_tickets": "off", "tls_session_cache": "100"})):
        tls = dict(tls, tls_session_timeout="1s")
        up = ctx.upstream("blue-" + tag)
        port = ctx.port()
        sw = ctx.switchd(conf=tls_config(port, [up], [a], tls), port=port, name="sw-" + tag)
        for v in ("tls1_2", "tls1_3"):
            sess = ctx.path("sess-%s-%s.pem" % (tag, v))
            base = ["-%s" % v, "-servername", "a.test", "-CAfile", pki.ca]
            rc, out1 = s_client(port, base + ["-sess_out", sess], request=CLOSE_REQ)
            assert rc == 0 and os.path.exists(sess), out1
            rc, out2 = s_client(port, base + ["-sess_in", sess], request=CLOSE_REQ)
            assert rc == 0 and re.search(r"^Reused, ", out2, re.M), \
                "%s %s: not resumed at once:\n%s" % (tag, v, out2)
            time.sleep(2.5)
            rc, out3 = s_client(port, base + ["-sess_in", sess], request=CLOSE_REQ)
            assert rc == 0 and "HTTP/1.1 200 OK" in out3, out3
            assert not re.search(r"^Reused, ", out3, re.M), \
                "%s %s: resumed 2.5s later with tls_session_timeout 1s:\n%s" % (
                    tag, v, out3)
        assert sw.alive()


@timeout(20)
def test_tls_sigterm(ctx):
    """SIGTERM: idle TLS clients and handshakes in progress are closed at
    once, a request in flight over TLS is answered (Connection: close),
    and switchd exits 0 promptly."""
    import signal
    pki, up, sw, _ = start_tls(ctx)
    idle = [tls_client(ctx, sw.port, pki.ca) for _ in range(3)]
    for c in idle:
        assert c.request("GET", "/").status == 200
    hello = client_hello()
    shaking = ctx.client(sw.port)
    shaking.send(hello[:20])
    never = ctx.client(sw.port)
    busy = tls_client(ctx, sw.port, pki.ca)
    busy.send(b"GET /delay/700 HTTP/1.1\r\nHost: a.test\r\n\r\n")
    time.sleep(0.2)
    t0 = time.time()
    sw.signal(signal.SIGTERM)
    for what, c in [("idle", x) for x in idle] + [("handshaking", shaking),
                                                  ("silent", never)]:
        assert c.wait_closed(1.5), "%s TLS client not closed on SIGTERM" % what
        assert c.buf == b"", "bytes to an idle %s client: %r" % (what, bytes(c.buf))
    r = busy.read_response(timeout=3)
    assert r.status == 200 and r.body == b"blue\n", r
    assert r.has_token("connection", "close"), r
    assert busy.wait_closed(2)
    busy.close()
    sw.assert_exited_ok(3)
    assert time.time() - t0 < 2.5 * SLOW, "exit %.1fs after SIGTERM" % (time.time() - t0)


def test_tls_reload_adds_and_removes_https(ctx):
    """A reload that puts a certificate into a plain section makes its bind
    HTTPS for new connections; taking it out makes it plain again."""
    pki = Pki(ctx)
    a = pki.leaf("a", "a.test")
    up = ctx.upstream("blue")
    port = ctx.port()
    plain_conf = make_config([port], [up])
    sw = ctx.switchd(conf=plain_conf, port=port)
    assert ctx.get(port, "/").status == 200
    keep = ctx.client(port)
    assert keep.request("GET", "/").status == 200
    sw.reload(tls_config(port, [up], [a]), settle=0)
    wait_log(sw, "reloaded ", 1)
    c = tls_client(ctx, port, pki.ca)
    assert peer_serial(c.cert()) == a[2]
    r = c.request("GET", "/echo")
    assert r.status == 200, r
    assert [v for n, v in r.json()["headers"] if n.lower() == "x-forwarded-proto"] == \
        ["https"], r.json()["headers"]
    c.close()
    # The plain keep-alive connection opened before stays plain.
    r = keep.request("GET", "/")
    assert r.status == 200 and r.body == b"blue\n", r
    sw.reload(plain_conf, settle=0)
    wait_log(sw, "reloaded ", 2)
    r = ctx.get(port, "/echo")
    assert r.status == 200, r
    assert [v for n, v in r.json()["headers"] if n.lower() == "x-forwarded-proto"] == \
        ["http"], r.json()["headers"]
    assert sw.alive()


class _BioHandshake:
    """A TLS client driven by hand over a raw socket (Python's MemoryBIO), so
    a test can stop between the handshake's flights."""

    def __init__(self, port, cafile, sni="a.test"):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.inc, self.out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.obj = client_context(cafile).wrap_bio(self.inc, self.out,
                                                   server_hostname=sni)

    def flush(self):
        d = self.out.read()
        if d:
            self.s.sendall(d)

    def step(self):
        """Runs the handshake as far as it goes; True when done."""
        try:
            self.obj.do_handshake()
            self.flush()
            return True
        except ssl.SSLWantReadError:
            self.flush()
            return False

    def feed(self):
        d = self.s.recv(65536)
        if not d:
            raise AssertionError("server closed during the handshake")
        self.inc.write(d)

    def finish(self):
        deadline = time.time() + 5
        while not self.step():
            assert time.time() < deadline, "handshake did not finish"
            self.feed()

    def request(self, raw, until):
        """Sends raw; reads until the plaintext ends with `until`."""
        self.obj.write(raw)
        self.flush()
        got = b""
        deadline = time.time() + 5
        while not got.endswith(until):
            assert time.time() < deadline, "no response: %r" % got
            self.feed()
            try:
                while True:
                    got += self.obj.read(65536)
            except ssl.SSLWantReadError:
                pass
        return got


def test_tls_handshake_spanning_a_reload(ctx):
    """A handshake that began before a reload finishes with the certificate
    it started with; the next connection gets the new one."""
    pki = Pki(ctx)
    a1 = pki.leaf("a1", "a.test", org="first")
    live_cert, live_key = pki.p("live.pem"), pki.p("live.key")
    replace_file(a1[0], live_cert)
    replace_file(a1[1], live_key)
    _, up, sw, _ = start_tls(ctx, pki=pki, certs=[(live_cert, live_key)])
    hs = [_BioHandshake(sw.port, pki.ca) for _ in range(2)]
    hs[0].step()                 # ClientHello sent, nothing read back
    hs[1].step()
    time.sleep(0.2)
    hs[1].feed()                 # the server's first flight read
    hs[1].step()                 # and the client's Finished sent (TLS 1.3)
    a2 = pki.leaf("a2", "a.test", org="second")
    replace_file(a2[0], live_cert)
    replace_file(a2[1], live_key)
    sw.reload(settle=0)
    wait_log(sw, "reloaded ")
    hs.append(_BioHandshake(sw.port, pki.ca))  # a connection after the reload
    hs[2].step()
    for i, h in enumerate(hs):
        h.finish()
        want = a2 if i == 2 else a1
        serial = peer_serial(h.obj.getpeercert())
        assert serial == want[2], "handshake %d: serial %d, expected %d" % (
            i, serial, want[2])
        got = h.request(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n", b"\r\n\r\nblue\n")
        assert got.startswith(b"HTTP/1.1 200") and got.endswith(b"blue\n"), got
        h.s.close()
    assert sw.alive()


@timeout(60)
def test_tls_many_concurrent_clients(ctx):
    from harness import parallel
    pki, up, sw, (a, b) = start_tls(ctx)
    noverify = client_context(pki.ca, check_hostname=False)

    def one(i):
        sni = ("a.test", "b.test", None)[i % 3]
        c = TlsClient(sw.port, pki.ca, sni=sni, context=noverify, timeout=20)
        try:
            want = b if sni == "b.test" else a
            assert peer_serial(c.cert()) == want[2], (i, sni)
            for j in range(3):
                body = b"%d-%d" % (i, j) * (j * 1000 + 1)
                r = c.request("POST", "/echo", body=body, timeout=20)
                assert r.status == 200, r
                e = r.json()
                assert e["body_sha256"] == hashlib.sha256(body).hexdigest(), (i, j)
            r = c.request("GET", "/bytes/200000", timeout=20)
            assert r.body == pattern_bytes(200000), (i, r)
        finally:
            c.close()
        return True

    assert all(parallel(one, [(i,) for i in range(90)], timeout=50))
    assert sw.alive()
    https_get_ok(sw.port, pki)
