/* Unit tests of TLS for client connections (proxy/tls.c). Every key,
 * certificate and OCSP response is made here, with OpenSSL's APIs, in a
 * temporary directory removed at exit: a CA, certificates for a.test
 * (SAN), *.b.test (SAN wildcard) and c.test (CN only), an expired one, one
 * not valid yet, keys that do not match (same type, other type), an
 * encrypted key, a PEM that does not parse, and an OCSP response for
 * a.test; for the client side, a certificate with the IP SAN 127.0.0.1, a
 * second CA with an a.test certificate of its own, and an empty file. A
 * real OpenSSL client SSL talks to sw_tls_t over memory BIOs, the test
 * moving bytes both ways until neither side has anything to say: no socket,
 * no network. The client side of sw_tls_t is tested against the server
 * side, both ours, the same way.
 *
 * Covered: SNI (exact, wildcard of one label, case, CN fallback, unknown and
 * absent names to the first certificate, exact before wildcard); ALPN
 * (http/1.1 chosen; h2 only or none: no ALPN and no failure); versions (a
 * TLS 1.1 client refused and counted, tls_min_version 1.3 refusing a 1.2
 * client, 1.2 and 1.3 negotiated); cipher lists; application data both ways,
 * large and in several records; session resumption by ticket (TLS 1.2 and
 * 1.3) across one ticket key rotation but not two, across certificates, and
 * by session cache without tickets, and none when both are off; OCSP
 * stapling; plain HTTP (GET and a method OpenSSL does not know), garbage, a
 * truncated ClientHello, errors that stay sticky and never leak through the
 * thread's error queue; close_notify both ways; the errors of
 * sw_tls_ctx_new, each naming the file and line; reference counting.
 *
 * Client side: the ClientHello from the first read; verification (host name,
 * IP address, unknown CA, verification off) with X509's reason; ALPN; data
 * both ways and close_notify; session resumption per server name, in a
 * bounded table; the errors of sw_tls_client_ctx_new; client handshakes
 * counted apart from the listeners'. Stats are process-wide, so tests
 * compare deltas. */

#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ocsp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "sw_config.h"
#include "sw_test.h"
#include "sw_tls.h"
#include "sw_types.h"

#define CONF "test.conf"
#define BIG (100 * 1000)

/* --- fixtures: keys, certificates and files ----------------------------- */

static struct {
  int ready;
  char dir[64];
  char ca_pem[128];
  char a_pem[128], a_key[128];
  char b_pem[128], b_key[128];
  char c_pem[128], c_key[128];
  char expired_pem[128], expired_key[128];
  char future_pem[128], future_key[128];
  char other_key[128], rsa_key[128], enc_key[128];
  char bad_pem[128], missing[128];
  char ocsp[128], bad_ocsp[128];
  char ip_pem[128], ip_key[128];     /* IP SAN 127.0.0.1, from the CA */
  char ca2_pem[128];                 /* a second CA, trusted by nobody */
  char ca2a_pem[128], ca2a_key[128]; /* a.test from the second CA */
  char empty[128];
  X509 *ca, *a, *b, *c;
  unsigned char *ocsp_der;
  int ocsp_len;
} fx;

static EVP_PKEY *ec_key(void) {
  EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
  SW_CHECK(k != NULL);
  return k;
}

static void add_ext(X509 *x, X509V3_CTX *v3, int nid, const char *value) {
  X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, v3, nid, value);
  SW_CHECK(e != NULL);
  SW_CHECK_INT_EQ(X509_add_ext(x, e, -1), 1);
  X509_EXTENSION_free(e);
}

/* A certificate for `key` valid from nb_days to na_days from now, signed by
 * the issuer (self-signed when issuer is NULL). san is an extension value
 * ("DNS:a.test") or NULL. */
static X509 *make_cert(const char *cn,
                       const char *san,
                       EVP_PKEY *key,
                       X509 *issuer,
                       EVP_PKEY *issuer_key,
                       int nb_days,
                       int na_days,
                       long serial) {
  X509 *x = X509_new();
  X509V3_CTX v3;
  X509_NAME *name;

  SW_CHECK(x != NULL);
  X509_set_version(x, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(x), serial);
  X509_time_adj_ex(X509_getm_notBefore(x), nb_days, 0, NULL);
  X509_time_adj_ex(X509_getm_notAfter(x), na_days, 0, NULL);
  X509_set_pubkey(x, key);
  name = X509_get_subject_name(x);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             (const unsigned char *)cn, -1, -1, 0);
  X509_set_issuer_name(x,
                       issuer != NULL ? X509_get_subject_name(issuer) : name);
  X509V3_set_ctx_nodb(&v3);
  X509V3_set_ctx(&v3, issuer != NULL ? issuer : x, x, NULL, NULL, 0);
  add_ext(x, &v3, NID_subject_key_identifier, "hash");
  if (issuer == NULL) {
    add_ext(x, &v3, NID_basic_constraints, "critical,CA:TRUE");
    add_ext(x, &v3, NID_key_usage, "critical,keyCertSign,cRLSign");
  } else {
    add_ext(x, &v3, NID_authority_key_identifier, "keyid:always");
    add_ext(x, &v3, NID_basic_constraints, "CA:FALSE");
    add_ext(x, &v3, NID_ext_key_usage, "serverAuth");
  }
  if (san != NULL)
    add_ext(x, &v3, NID_subject_alt_name, san);
  SW_CHECK(X509_sign(x, issuer_key != NULL ? issuer_key : key, EVP_sha256()) >
           0);
  return x;
}

static void write_certs(const char *path, X509 *leaf, X509 *chain) {
  FILE *f = fopen(path, "w");
  SW_CHECK(f != NULL);
  SW_CHECK_INT_EQ(PEM_write_X509(f, leaf), 1);
  if (chain != NULL)
    SW_CHECK_INT_EQ(PEM_write_X509(f, chain), 1);
  fclose(f);
}

static void write_key(const char *path, EVP_PKEY *key, const char *pass) {
  FILE *f = fopen(path, "w");
  SW_CHECK(f != NULL);
  if (pass != NULL)
    SW_CHECK_INT_EQ(PEM_write_PrivateKey(f, key, EVP_aes_128_cbc(),
                                         (const unsigned char *)pass,
                                         (int)strlen(pass), NULL, NULL),
                    1);
  else
    SW_CHECK_INT_EQ(PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL), 1);
  fclose(f);
}

static void write_bytes(const char *path, const void *data, size_t len) {
  FILE *f = fopen(path, "wb");
  SW_CHECK(f != NULL);
  SW_CHECK_UINT_EQ(fwrite(data, 1, len, f), len);
  fclose(f);
}

/* A good OCSP response for the a.test certificate, signed by the CA. */
static void make_ocsp(EVP_PKEY *ca_key) {
  OCSP_BASICRESP *bs = OCSP_BASICRESP_new();
  OCSP_CERTID *id = OCSP_cert_to_id(NULL, fx.a, fx.ca);
  ASN1_TIME *thisupd = X509_gmtime_adj(NULL, 0);
  ASN1_TIME *nextupd = X509_gmtime_adj(NULL, 86400);
  OCSP_RESPONSE *resp;

  SW_CHECK(OCSP_basic_add1_status(bs, id, V_OCSP_CERTSTATUS_GOOD, 0, NULL,
                                  thisupd, nextupd) != NULL);
  SW_CHECK_INT_EQ(OCSP_basic_sign(bs, fx.ca, ca_key, EVP_sha256(), NULL, 0), 1);
  resp = OCSP_response_create(OCSP_RESPONSE_STATUS_SUCCESSFUL, bs);
  SW_CHECK(resp != NULL);
  fx.ocsp_len = i2d_OCSP_RESPONSE(resp, &fx.ocsp_der);
  SW_CHECK(fx.ocsp_len > 0);
  write_bytes(fx.ocsp, fx.ocsp_der, (size_t)fx.ocsp_len);
  OCSP_RESPONSE_free(resp);
  OCSP_BASICRESP_free(bs);
  OCSP_CERTID_free(id);
  ASN1_TIME_free(thisupd);
  ASN1_TIME_free(nextupd);
}

static void fixtures_cleanup(void) {
  DIR *d;
  struct dirent *e;

  if (!fx.ready)
    return;
  d = opendir(fx.dir);
  if (d != NULL) {
    while ((e = readdir(d)) != NULL) {
      char path[512];
      if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
        continue;
      snprintf(path, sizeof(path), "%s/%s", fx.dir, e->d_name);
      unlink(path);
    }
    closedir(d);
  }
  rmdir(fx.dir);
  X509_free(fx.ca);
  X509_free(fx.a);
  X509_free(fx.b);
  X509_free(fx.c);
  OPENSSL_free(fx.ocsp_der);
  fx.ready = 0;
}

#define FX_PATH(field, name) \
  snprintf(fx.field, sizeof(fx.field), "%s/%s", fx.dir, name)

/* Made once per process, whichever test runs first. */
static void fixtures(void) {
  EVP_PKEY *ca_key, *a_key, *b_key, *c_key, *x_key, *f_key, *o_key, *r_key;
  EVP_PKEY *ip_key, *ca2_key, *ca2a_key;
  X509 *expired, *future, *ip, *ca2, *ca2a;
  static const char bad[] =
      "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n"
      "-----END CERTIFICATE-----\n";

  if (fx.ready)
    return;
  snprintf(fx.dir, sizeof(fx.dir), "/tmp/sw-test-tls-XXXXXX");
  if (mkdtemp(fx.dir) == NULL) {
    SW_CHECK(!"mkdtemp");
    return;
  }
  fx.ready = 1;
  atexit(fixtures_cleanup);
  FX_PATH(ca_pem, "ca.pem");
  FX_PATH(a_pem, "a.pem");
  FX_PATH(a_key, "a.key");
  FX_PATH(b_pem, "b.pem");
  FX_PATH(b_key, "b.key");
  FX_PATH(c_pem, "c.pem");
  FX_PATH(c_key, "c.key");
  FX_PATH(expired_pem, "expired.pem");
  FX_PATH(expired_key, "expired.key");
  FX_PATH(future_pem, "future.pem");
  FX_PATH(future_key, "future.key");
  FX_PATH(other_key, "other.key");
  FX_PATH(rsa_key, "rsa.key");
  FX_PATH(enc_key, "enc.key");
  FX_PATH(bad_pem, "bad.pem");
  FX_PATH(missing, "missing.pem");
  FX_PATH(ocsp, "a.ocsp");
  FX_PATH(bad_ocsp, "bad.ocsp");
  FX_PATH(ip_pem, "ip.pem");
  FX_PATH(ip_key, "ip.key");
  FX_PATH(ca2_pem, "ca2.pem");
  FX_PATH(ca2a_pem, "ca2a.pem");
  FX_PATH(ca2a_key, "ca2a.key");
  FX_PATH(empty, "empty.pem");

  ca_key = ec_key();
  a_key = ec_key();
  b_key = ec_key();
  c_key = ec_key();
  x_key = ec_key();
  f_key = ec_key();
  o_key = ec_key();
  r_key = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
  SW_CHECK(r_key != NULL);
  ip_key = ec_key();
  ca2_key = ec_key();
  ca2a_key = ec_key();

  fx.ca = make_cert("switchd test CA", NULL, ca_key, NULL, NULL, -1, 30, 1);
  fx.a = make_cert("a.test", "DNS:a.test", a_key, fx.ca, ca_key, -1, 30, 2);
  fx.b =
      make_cert("b wildcard", "DNS:*.b.test", b_key, fx.ca, ca_key, -1, 30, 3);
  fx.c = make_cert("c.test", NULL, c_key, fx.ca, ca_key, -1, 30, 4);
  expired =
      make_cert("old.test", "DNS:old.test", x_key, fx.ca, ca_key, -30, -1, 5);
  future =
      make_cert("new.test", "DNS:new.test", f_key, fx.ca, ca_key, 2, 30, 6);
  ip = make_cert("127.0.0.1", "IP:127.0.0.1", ip_key, fx.ca, ca_key, -1, 30, 8);
  ca2 = make_cert("switchd other CA", NULL, ca2_key, NULL, NULL, -1, 30, 1);
  ca2a = make_cert("a.test", "DNS:a.test", ca2a_key, ca2, ca2_key, -1, 30, 2);

  write_certs(fx.ca_pem, fx.ca, NULL);
  write_certs(fx.a_pem, fx.a, fx.ca);
  write_certs(fx.b_pem, fx.b, NULL);
  write_certs(fx.c_pem, fx.c, NULL);
  write_certs(fx.expired_pem, expired, NULL);
  write_certs(fx.future_pem, future, NULL);
  write_certs(fx.ip_pem, ip, NULL);
  write_certs(fx.ca2_pem, ca2, NULL);
  write_certs(fx.ca2a_pem, ca2a, NULL); /* no chain: the issuer is unknown */
  write_key(fx.ip_key, ip_key, NULL);
  write_key(fx.ca2a_key, ca2a_key, NULL);
  write_bytes(fx.empty, "", 0);
  write_key(fx.a_key, a_key, NULL);
  write_key(fx.b_key, b_key, NULL);
  write_key(fx.c_key, c_key, NULL);
  write_key(fx.expired_key, x_key, NULL);
  write_key(fx.future_key, f_key, NULL);
  write_key(fx.other_key, o_key, NULL);
  write_key(fx.rsa_key, r_key, NULL);
  write_key(fx.enc_key, a_key, "secret");
  write_bytes(fx.bad_pem, bad, sizeof(bad) - 1);
  write_bytes(fx.bad_ocsp, "not ocsp", 8);
  make_ocsp(ca_key);

  X509_free(expired);
  X509_free(future);
  X509_free(ip);
  X509_free(ca2);
  X509_free(ca2a);
  EVP_PKEY_free(ip_key);
  EVP_PKEY_free(ca2_key);
  EVP_PKEY_free(ca2a_key);
  EVP_PKEY_free(ca_key);
  EVP_PKEY_free(a_key);
  EVP_PKEY_free(b_key);
  EVP_PKEY_free(c_key);
  EVP_PKEY_free(x_key);
  EVP_PKEY_free(f_key);
  EVP_PKEY_free(o_key);
  EVP_PKEY_free(r_key);
}

/* --- configs and contexts ------------------------------------------------ */

/* The defaults of the config parser, for a listen section on line 2. */
static void conf_init(sw_tls_conf_t *c) {
  memset(c, 0, sizeof(*c));
  c->min_version = 12;
  c->tickets = 1;
  c->ticket_rotate_ms = 3600 * 1000;
  c->session_cache = 20000;
  c->session_timeout_ms = 300 * 1000;
  c->handshake_timeout_ms = 10 * 1000;
  c->line = 2;
}

static sw_tls_cert_conf_t *conf_add(sw_tls_conf_t *c,
                                    const char *cert,
                                    const char *key,
                                    int line) {
  sw_tls_cert_conf_t *cc = &c->certs[c->ncerts++];
  cc->cert = (char *)cert;
  cc->key = (char *)key;
  cc->line = line;
  return cc;
}

static sw_tls_ctx_t *ctx_ok_at(const char *file,
                               int line,
                               const sw_tls_conf_t *conf) {
  sw_tls_ctx_t *ctx = NULL;
  char err[512] = "";
  int rc =
      sw_tls_ctx_new(CONF, conf, (int64_t)time(NULL), &ctx, err, sizeof(err));
  if (!SW_CHECK_INT_EQ_AT(file, line, rc, 0))
    printf("  error: %s\n", err);
  SW_CHECK_AT(file, line, ctx != NULL);
  return ctx;
}
#define ctx_ok(conf) ctx_ok_at(__FILE__, __LINE__, conf)

/* The usual context: a.test (the default), *.b.test, c.test. */
static sw_tls_ctx_t *ctx_abc(void) {
  sw_tls_conf_t conf;
  conf_init(&conf);
  conf_add(&conf, fx.a_pem, fx.a_key, 3);
  conf_add(&conf, fx.b_pem, fx.b_key, 4);
  conf_add(&conf, fx.c_pem, fx.c_key, 5);
  return ctx_ok(&conf);
}

/* A client that trusts the test CA and verifies the chain, for protocol
 * versions min..max (0: OpenSSL's bound). */
static SSL_CTX *client_ctx(int min, int max) {
  SSL_CTX *c = SSL_CTX_new(TLS_client_method());

  SW_CHECK(c != NULL);
  if (max != 0 && max < TLS1_2_VERSION) {
    /* Old versions need the lowest security level to be offered at all. */
    SSL_CTX_set_security_level(c, 0);
    SW_CHECK_INT_EQ(SSL_CTX_set_cipher_list(c, "DEFAULT:@SECLEVEL=0"), 1);
  }
  SW_CHECK_INT_EQ(SSL_CTX_set_min_proto_version(c, min), 1);
  SW_CHECK_INT_EQ(SSL_CTX_set_max_proto_version(c, max), 1);
  SW_CHECK_INT_EQ(X509_STORE_add_cert(SSL_CTX_get_cert_store(c), fx.ca), 1);
  SSL_CTX_set_verify(c, SSL_VERIFY_PEER, NULL);
  return c;
}

/* --- a client and a server connection, joined by the test ---------------- */

typedef struct conn_s {
  SSL *cli;
  BIO *cin;  /* the client's input: what the server sent */
  BIO *cout; /* the client's output, for the server */
  sw_tls_t *srv;
  int srv_rc;  /* the first error sw_tls_read returned, else 0 */
  int cli_err; /* the client's SSL_get_error once it failed, else 0 */
  char cli_why[160];
  char srv_in[2 * BIG]; /* plaintext the server read */
  size_t srv_inlen;
  char cli_in[2 * BIG]; /* plaintext the client read */
  size_t cli_inlen;
} conn_t;

static conn_t *conn_new(sw_tls_ctx_t *ctx,
                        SSL_CTX *cctx,
                        const char *sni,
                        const char *alpn, /* ALPN wire form, or NULL */
                        SSL_SESSION *sess) {
  conn_t *c = calloc(1, sizeof(*c));

  SW_CHECK(c != NULL);
  c->srv = sw_tls_new(ctx);
  SW_CHECK(c->srv != NULL);
  c->cli = SSL_new(cctx);
  c->cin = BIO_new(BIO_s_mem());
  c->cout = BIO_new(BIO_s_mem());
  SW_CHECK(c->cli != NULL && c->cin != NULL && c->cout != NULL);
  BIO_set_mem_eof_return(c->cin, -1);
  BIO_set_mem_eof_return(c->cout, -1);
  SSL_set_bio(c->cli, c->cin, c->cout);
  SSL_set_connect_state(c->cli);
  if (sni != NULL)
    SW_CHECK_INT_EQ(SSL_set_tlsext_host_name(c->cli, sni), 1);
  if (alpn != NULL)
    SW_CHECK_INT_EQ(SSL_set_alpn_protos(c->cli, (const unsigned char *)alpn,
                                        (unsigned)strlen(alpn)),
                    0);
  if (sess != NULL)
    SW_CHECK_INT_EQ(SSL_set_session(c->cli, sess), 1);
  return c;
}

static void conn_free(conn_t *c) {
  SSL_free(c->cli);
  sw_tls_free(c->srv);
  free(c);
}

static void client_failed(conn_t *c, int r) {
  int e = SSL_get_error(c->cli, r);
  unsigned long code;

  if (e == SSL_ERROR_WANT_READ)
    return;
  c->cli_err = e;
  code = ERR_peek_error();
  if (code != 0)
    ERR_error_string_n(code, c->cli_why, sizeof(c->cli_why));
  /* Left in the queue on purpose: sw_tls must not mistake the client's
   * errors for its own. */
}

/* The client's turn: its handshake, then whatever it can read. */
static void client_step(conn_t *c) {
  size_t n;
  int r;

  if (c->cli_err != 0)
    return;
  if (!SSL_is_init_finished(c->cli)) {
    r = SSL_do_handshake(c->cli);
    if (r != 1) {
      client_failed(c, r);
      return;
    }
  }
  for (;;) {
    n = 0;
    r = SSL_read_ex(c->cli, c->cli_in + c->cli_inlen,
                    sizeof(c->cli_in) - c->cli_inlen, &n);
    if (r != 1) {
      client_failed(c, r);
      return;
    }
    c->cli_inlen += n;
  }
}

/* The server's turn: sw_tls_read until it needs more or fails. */
static void server_step(conn_t *c) {
  for (;;) {
    ssize_t n = sw_tls_read(c->srv, c->srv_in + c->srv_inlen,
                            sizeof(c->srv_in) - c->srv_inlen);
    if (n > 0) {
      c->srv_inlen += (size_t)n;
      continue;
    }
    if (n < 0)
      c->srv_rc = (int)n;
    return;
  }
}

/* Moves bytes both ways until neither side has anything to say. */
static void pump(conn_t *c) {
  char tmp[16384];

  for (int i = 0; i < 200; i++) {
    int moved = 0, n;
    size_t m;

    client_step(c);
    while ((n = BIO_read(c->cout, tmp, sizeof(tmp))) > 0) {
      SW_CHECK_INT_EQ(sw_tls_feed(c->srv, tmp, (size_t)n), 0);
      moved = 1;
    }
    if (c->srv_rc == 0)
      server_step(c);
    while ((m = sw_tls_take_out(c->srv, tmp, sizeof(tmp))) > 0) {
      SW_CHECK_INT_EQ(BIO_write(c->cin, tmp, (int)m), (int)m);
      moved = 1;
    }
    if (!moved)
      break;
  }
}

static int handshake_at(const char *file, int line, conn_t *c) {
  int ok;
  pump(c);
  ok = SSL_is_init_finished(c->cli) && sw_tls_handshake_done(c->srv) &&
       c->srv_rc == 0;
  if (!SW_CHECK_AT(file, line, ok))
    printf("  server rc %d (%s), client error %d (%s)\n", c->srv_rc,
           sw_tls_error(c->srv), c->cli_err, c->cli_why);
  SW_CHECK_INT_EQ_AT(file, line, SSL_get_verify_result(c->cli), X509_V_OK);
  return ok;
}
#define handshake(c) handshake_at(__FILE__, __LINE__, c)

static sw_tls_stats_t stats_now(void) {
  return *sw_tls_stats();
}

/* --- tests -----------------------------------------------------------------
 */

static void check_sni_at(const char *file,
                         int line,
                         sw_tls_ctx_t *ctx,
                         SSL_CTX *cctx,
                         const char *sni,
                         X509 *want) {
  conn_t *c = conn_new(ctx, cctx, sni, NULL, NULL);
  if (handshake_at(file, line, c)) {
    X509 *got = SSL_get0_peer_certificate(c->cli);
    char name[256] = "";
    if (got != NULL)
      X509_NAME_oneline(X509_get_subject_name(got), name, sizeof(name));
    if (!SW_CHECK_AT(file, line, got != NULL && X509_cmp(got, want) == 0))
      printf("  sni %s: got %s\n", sni ? sni : "(none)", name);
    SW_CHECK_STR_EQ_AT(file, line, sw_tls_sni(c->srv), sni ? sni : "");
  }
  conn_free(c);
}
#define check_sni(ctx, cctx, sni, want) \
  check_sni_at(__FILE__, __LINE__, ctx, cctx, sni, want)

static void test_sni(void) {
  sw_tls_ctx_t *ctx;
  SSL_CTX *c12, *c13;
  sw_tls_stats_t before;

  fixtures();
  ctx = ctx_abc();
  c13 = client_ctx(TLS1_3_VERSION, 0);
  c12 = client_ctx(TLS1_2_VERSION, TLS1_2_VERSION);
  before = stats_now();
  check_sni(ctx, c13, "a.test", fx.a);
  check_sni(ctx, c13, "x.b.test", fx.b);
  check_sni(ctx, c13, "X.B.Test", fx.b);
  check_sni(ctx, c13, "c.test", fx.c);     /* CN only */
  check_sni(ctx, c13, "b.test", fx.a);     /* the wildcard needs a label */
  check_sni(ctx, c13, "y.x.b.test", fx.a); /* and only one */
  check_sni(ctx, c13, "unknown.test", fx.a);
  check_sni(ctx, c13, NULL, fx.a);
  /* The same selection in TLS 1.2, where the certificate is sent in the
   * clear. */
  check_sni(ctx, c12, "x.b.test", fx.b);
  check_sni(ctx, c12, "c.test", fx.c);
  check_sni(ctx, c12, NULL, fx.a);
  SW_CHECK_UINT_EQ(stats_now().handshakes - before.handshakes, 11);
  SW_CHECK_UINT_EQ(stats_now().resumed - before.resumed, 0);
  sw_tls_ctx_unref(ctx);
  SSL_CTX_free(c13);
  SSL_CTX_free(c12);
}

/* An exact name beats a wildcard listed before it. */
static void test_sni_exact_first(void) {
  sw_tls_conf_t conf;
  sw_tls_ctx_t *ctx;
  SSL_CTX *cctx;
  X509 *x;
  EVP_PKEY *k;
  char pem[160], key[160];

  fixtures();
  snprintf(pem, sizeof(pem), "%s/xb.pem", fx.dir);
  snprintf(key, sizeof(key), "%s/xb.key", fx.dir);
  k = ec_key();
  /* Self-signed is enough: the client does not check this one's chain. */
  x = make_cert("x.b.test", "DNS:x.b.test", k, NULL, NULL, -1, 30, 7);
  write_certs(pem, x, NULL);
  write_key(key, k, NULL);
  conf_init(&conf);
  conf_add(&conf, fx.a_pem, fx.a_key, 3);
  conf_add(&conf, fx.b_pem, fx.b_key, 4);
  conf_add(&conf, pem, key, 5);
  ctx = ctx_ok(&conf);
  cctx = client_ctx(TLS1_2_VERSION, 0);
  SSL_CTX_set_verify(cctx, SSL_VERIFY_NONE, NULL);
  {
    conn_t *c = conn_new(ctx, cctx, "x.b.test", NULL, NULL);
    pump(c);
    SW_CHECK(sw_tls_handshake_done(c->srv));
    SW_CHECK(SSL_get0_peer_certificate(c->cli) != NULL &&
             X509_cmp(SSL_get0_peer_certificate(c->cli), x) == 0);
    conn_free(c);
    c = conn_new(ctx, cctx, "y.b.test", NULL, NULL);
    pump(c);
    SW_CHECK(SSL_get0_peer_certificate(c->cli) != NULL &&
             X509_cmp(SSL_get0_peer_certificate(c->cli), fx.b) == 0);
    conn_free(c);
  }
  sw_tls_ctx_unref(ctx);
  SSL_CTX_free(cctx);
  X509_free(x);
  EVP_PKEY_free(k);
}

static void check_alpn_at(const char *file,
                          int line,
                          sw_tls_ctx_t *ctx,
                          SSL_CTX *cctx,
                          const char *offer,
                          const char *want) {
  conn_t *c = conn_new(ctx, cctx, "a.test", offer, NULL);
  if (handshake_at(file, line, c)) {
    const unsigned char *p = NULL;
    unsigned len = 0;
    char got[64] = "";
    SW_CHECK_STR_EQ_AT(file, line, sw_tls_alpn(c->srv), want);
    SSL_get0_alpn_selected(c->cli, &p, &len);
    if (p != NULL && len < sizeof(got))
      memcpy(got, p, len);
    SW_CHECK_STR_EQ_AT(file, line, got, want);
  }
  conn_free(c);
}
#define check_alpn(ctx, cctx, offer, want) \
  check_alpn_at(__FILE__, __LINE__, ctx, cctx, offer, want)

static void test_alpn(void) {
  sw_tls_ctx_t *ctx;
  SSL_CTX *c13, *c12;

  fixtures();
  ctx = ctx_abc();
  c13 = client_ctx(TLS1_3_VERSION, 0);
  c12 = client_ctx(TLS1_2_VERSION, TLS1_2_VERSION);
  check_alpn(ctx, c13, "\x02h2\x08http/1.1", "http/1.1");
  check_alpn(ctx, c13, "\x08http/1.1", "http/1.1");
  check_alpn(ctx, c12, "\x08http/1.0\x08http/1.1", "http/1.1");
  check_alpn(ctx, c13, "\x02h2", ""); /* no ALPN, and no failure */
  check_alpn(ctx, c12, "\x02h2", "");
  check_alpn(ctx, c13, NULL, "");
  sw_tls_ctx_unref(ctx);
  SSL_CTX_free(c13);
  SSL_CTX_free(c12);
}

static void test_versions(void) {
  sw_tls_conf_t conf;
  sw_tls_ctx_t *ctx, *ctx13;
  SSL_CTX *c11, *c12, *c13;
  sw_tls_stats_t before;
  conn_t *c;

  fixtures();
  ctx = ctx_abc();
  conf_init(&conf);
  conf.min_version = 13;
  conf_add(&conf, fx.a_pem, fx.a_key, 3);
  conf_add(&conf, fx.b_pem, fx.b_key, 4);
  ctx13 = ctx_ok(&conf);
  c11 = client_ctx(TLS1_VERSION, TLS1_1_VERSION);
  c12 = client_ctx(TLS1_2_VERSION, TLS1_2_VERSION);
  c13 = client_ctx(TLS1_3_VERSION, 0);

  c = conn_new(ctx, c12, "a.test", NULL, NULL);
  if (handshake(c)) {
    SW_CHECK_STR_EQ(sw_tls_version(c->srv), "TLSv1.2");
    SW_CHECK(sw_tls_cipher(c->srv)[0] != '\0');
  }
  conn_free(c);
  c = conn_new(ctx, c13, "a.test", NULL, NULL);
  if (handshake(c))
    SW_CHECK_STR_EQ(sw_tls_version(c->srv), "TLSv1.3");
  conn_free(c);

  /* TLS 1.1 only: refused with a protocol_version alert, counted. */
  before = stats_now();
  c = conn_new(ctx, c11, "a.test", NULL, NULL);
  pump(c);
  SW_CHECK_INT_EQ(c->srv_rc, SW_TLS_EPROTO);
  SW_CHECK(!sw_tls_handshake_done(c->srv));
  SW_CHECK_STR_EQ(sw_tls_error(c->srv), "unsupported protocol");
  SW_CHECK(c->cli_err == SSL_ERROR_SSL);
  SW_CHECK_STR_CONTAINS(c->cli_why, "protocol version");
  SW_CHECK_UINT_EQ(stats_now().failed_version - before.failed_version, 1);
  SW_CHECK_UINT_EQ(stats_now().failed_protocol - before.failed_protocol, 0);
  SW_CHECK_UINT_EQ(stats_now().handshakes - before.handshakes, 0);
  /* Sticky: the connection stays failed. */
  SW_CHECK_INT_EQ(sw_tls_read(c->srv, c->srv_in, 10), SW_TLS_EPROTO);
  SW_CHECK_INT_EQ(sw_tls_write(c->srv, "x", 1), SW_TLS_EPROTO);
  conn_free(c);

  /* tls_min_version 1.3: a 1.2 client is refused, whichever certificate
   * its SNI names; a 1.3 client is served. */
  before = stats_now();
  c = conn_new(ctx13, c12, "x.b.test", NULL, NULL);
  pump(c);
  SW_CHECK_INT_EQ(c->srv_rc, SW_TLS_EPROTO);
  SW_CHECK_STR_EQ(sw_tls_error(c->srv), "unsupported protocol");
  SW_CHECK_UINT_EQ(stats_now().failed_version - before.failed_version, 1);
  conn_free(c);
  c = conn_new(ctx13, c13, "x.b.test", NULL, NULL);
  if (handshake(c))
    SW_CHECK_STR_EQ(sw_tls_version(c->srv), "TLSv1.3");
  conn_free(c);

  sw_tls_ctx_unref(ctx);
  sw_tls_ctx_unref(ctx13);
  SSL_CTX_free(c11);
  SSL_CTX_free(c12);
  SSL_CTX_free(c13);
}

static void test_ciphers(void) {
  sw_tls_conf_t conf;
  sw_tls_ctx_t *ctx;
  SSL_CTX *c12, *c13;
  conn_t *c;

  fixtures();
  conf_init(&conf);
  conf.ciphers = "ECDHE-ECDSA-CHACHA20-POLY1305";
  conf.ciphersuites = "TLS_CHACHA20_POLY1305_SHA256";
  conf_add(&conf, fx.a_pem, fx.a_key, 3);
  conf_add(&conf, fx.b_pem, fx.b_key, 4);
  ctx = ctx_ok(&conf);
  c12 = client_ctx(TLS1_2_VERSION, TLS1_2_VERSION);
  c13 = client_ctx(TLS1_3_VERSION, 0);
  c = conn_new(ctx, c12, "x.b.test", NULL, NULL);
  if (handshake(c))
    SW_CHECK_STR_EQ(sw_tls_cipher(c->srv), "ECDHE-ECDSA-CHACHA20-POLY1305");
  conn_free(c);
  c = conn_new(ctx, c13, "a.test", NULL, NULL);
  if (handshake(c))
    SW_CHECK_STR_EQ(sw_tls_cipher(c->srv), "TLS_CHACHA20_POLY1305_SHA256");
  conn_free(c);
  sw_tls_ctx_unref(ctx);
  SSL_CTX_free(c12);
  SSL_CTX_free(c13);
}

static void check_data_at(const char *file, int line, SSL_CTX *cctx) {
  sw_tls_ctx_t *ctx = ctx_abc();
  conn_t *c = conn_new(ctx, cctx, "a.test", "\x08http/1.1", NULL);
  static char big[BIG];
  size_t n = 0;

  for (size_t i = 0; i < sizeof(big); i++)
    big[i] = (char)('a' + i % 26);
  /* Before the handshake, writing is refused. */
  SW_CHECK_INT_EQ_AT(file, line, sw_tls_write(c->srv, "x", 1), SW_TLS_EPROTO);
  SW_CHECK_STR_EQ_AT(file, line, sw_tls_version(c->srv), "");
  if (!handshake_at(file, line, c)) {
    conn_free(c);
    sw_tls_ctx_unref(ctx);
    return;
  }
  /* Client to server: a request, then a big body in many records, all
   * read in one pass of sw_tls_read calls. */
  SW_CHECK_AT(file, line,
              SSL_write_ex(c->cli, "GET / HTTP/1.1\r\n\r\n", 18, &n) == 1);
  SW_CHECK_AT(file, line, SSL_write_ex(c->cli, big, sizeof(big), &n) == 1);
  pump(c);
  SW_CHECK_UINT_EQ_AT(file, line, c->srv_inlen, 18 + sizeof(big));
  SW_CHECK_AT(file, line,
              memcmp(c->srv_in, "GET / HTTP/1.1\r\n\r\n", 18) == 0 &&
                  memcmp(c->srv_in + 18, big, sizeof(big)) == 0);
  /* Server to client. */
  SW_CHECK_INT_EQ_AT(file, line,
                     sw_tls_write(c->srv, "HTTP/1.1 200 OK\r\n", 17), 0);
  SW_CHECK_INT_EQ_AT(file, line, sw_tls_write(c->srv, big, sizeof(big)), 0);
  SW_CHECK_INT_EQ_AT(file, line, sw_tls_write(c->srv, "", 0), 0);
  SW_CHECK_AT(file, line, sw_tls_out_pending(c->srv) > sizeof(big));
  pump(c);
  SW_CHECK_UINT_EQ_AT(file, line, sw_tls_out_pending(c->srv), 0);
  SW_CHECK_UINT_EQ_AT(file, line, c->cli_inlen, 17 + sizeof(big));
  SW_CHECK_AT(file, line,
              memcmp(c->cli_in, "HTTP/1.1 200 OK\r\n", 17) == 0 &&
                  memcmp(c->cli_in + 17, big, sizeof(big)) == 0);
  /* A small buffer gets the plaintext piece by piece. */
  {
    char tmp[5];
    char got[16] = "";
    size_t len = 0;
    ssize_t r;
    SW_CHECK_AT(file, line, SSL_write_ex(c->cli, "0123456789", 10, &n) == 1);
    while ((r = BIO_read(c->cout, c->srv_in, sizeof(c->srv_in))) > 0)
      sw_tls_feed(c->srv, c->srv_in, (size_t)r);
    while ((r = sw_tls_read(c->srv, tmp, sizeof(tmp))) > 0 &&
           len + (size_t)r < sizeof(got)) {
      memcpy(got + len, tmp, (size_t)r);
      len += (size_t)r;
    }
    SW_CHECK_INT_EQ_AT(file, line, r, 0);
    SW_CHECK_STR_EQ_AT(file, line, got, "0123456789");
  }
  conn_free(c);
  sw_tls_ctx_unref(ctx);
}

static void test_data(void) {
  SSL_CTX *c12, *c13;
  fixtures();
  c12 = client_ctx(TLS1_2_VERSION, TLS1_2_VERSION);
  c13 = client_ctx(TLS1_3_VERSION, 0);
  check_data_at(__FILE__, __LINE__, c12);
  check_data_at(__FILE__, __LINE__, c13);
  SSL_CTX_free(c12);
  SSL_CTX_free(c13);
}

/* A handshake that may resume `sess`; returns the new session (for the
 * next one) and stores whether it resumed. */
static SSL_SESSION *connect_at(const char *file,
                               int line,
                               sw_tls_ctx_t *ctx,
                               SSL_CTX *cctx,
                               const char *sni,
                               SSL_SESSION *sess,
                               int *resumed) {
  conn_t *c = conn_new(ctx, cctx, sni, NULL, sess);
  SSL_SESSION *out = NULL;

  *resumed = -1;
  if (handshake_at(file, line, c)) {
    *resumed = sw_tls_resumed(c->srv);
    SW_CHECK_INT_EQ_AT(file, line, SSL_session_reused(c->cli), *resumed);
    /* A client freed without close_notify marks its session unusable. */
    SW_CHECK_INT_EQ_AT(file, line, SSL_shutdown(c->cli), 0);
    out = SSL_get1_session(c->cli);
  }
  conn_free(c);
  return out;
}
#define connect(ctx, cctx, sni, sess, resumed) \
  connect_at(__FILE__, __LINE__, ctx, cctx, sni, sess, resumed)

static void check_tickets_at(const char *file, int line, SSL_CTX *cctx) {
  sw_tls_ctx_t *ctx = ctx_abc();
  sw_tls_stats_t before = stats_now();
  SSL_SESSION *s0, *s;
  int resumed;

  s0 = connect_at(file, line, ctx, cctx, "a.test", NULL, &resumed);
  SW_CHECK_INT_EQ_AT(file, line, resumed, 0);
  if (!SW_CHECK_AT(file, line, s0 != NULL && SSL_SESSION_is_resumable(s0))) {
    SSL_SESSION_free(s0);
    sw_tls_ctx_unref(ctx);
    return;
  }
  SW_CHECK_AT(file, line, SSL_SESSION_has_ticket(s0));
  s = connect_at(file, line, ctx, cctx, "a.test", s0, &resumed);
  SW_CHECK_INT_EQ_AT(file, line, resumed, 1);
  SSL_SESSION_free(s);
  /* Another certificate chosen by SNI: the same keys, so it resumes. */
  s = connect_at(file, line, ctx, cctx, "x.b.test", s0, &resumed);
  SW_CHECK_INT_EQ_AT(file, line, resumed, 1);
  SSL_SESSION_free(s);
  /* One rotation: the old key still decrypts. */
  sw_tls_ctx_rotate_tickets(ctx);
  s = connect_at(file, line, ctx, cctx, "a.test", s0, &resumed);
  SW_CHECK_INT_EQ_AT(file, line, resumed, 1);
  /* The ticket renewed then is under the new key: it survives the next
   * rotation, when s0's does not. */
  sw_tls_ctx_rotate_tickets(ctx);
  {
    SSL_SESSION *s2 = connect_at(file, line, ctx, cctx, "a.test", s0, &resumed);
    SW_CHECK_INT_EQ_AT(file, line, resumed, 0);
    SSL_SESSION_free(s2);
  }
  if (s != NULL) {
    SSL_SESSION *s3 = connect_at(file, line, ctx, cctx, "a.test", s, &resumed);
    SW_CHECK_INT_EQ_AT(file, line, resumed, 1);
    SSL_SESSION_free(s3);
  }
  SSL_SESSION_free(s);
  SW_CHECK_UINT_EQ_AT(file, line, stats_now().handshakes - before.handshakes,
                      6);
  SW_CHECK_UINT_EQ_AT(file, line, stats_now().resumed - before.resumed, 4);
  SSL_SESSION_free(s0);
  sw_tls_ctx_unref(ctx);
}

static void test_tickets(void) {
  SSL_CTX *c12, *c13;
  fixtures();
  c12 = client_ctx(TLS1_2_VERSION, TLS1_2_VERSION);
  c13 = client_ctx(TLS1_3_VERSION, 0);
  check_tickets_at(__FILE__, __LINE__, c12);
  check_tickets_at(__FILE__, __LINE__, c13);
  SSL_CTX_free(c12);
  SSL_CTX_free(c13);
}

/* Tickets off: the session cache alone resumes; both off: nothing does. A
 * ticket from another context (other keys) is simply not accepted. */
static void test_session_cache(void) {
  sw_tls_conf_t conf;
  sw_tls_ctx_t *cache_only, *none, *other, *other2;
  SSL_CTX *cc[2];
  int resumed;

  fixtures();
  conf_init(&conf);
  conf.tickets = 0;
  conf_add(&conf, fx.a_pem, fx.a_key, 3);
  conf_add(&conf, fx.b_pem, fx.b_key, 4);
  cache_only = ctx_ok(&conf);
  conf.session_cache = 0;
  none = ctx_ok(&conf);
  other = ctx_abc();
  other2 = ctx_abc();
  cc[0] = client_ctx(TLS1_2_VERSION, TLS1_2_VERSION);
  cc[1] = client_ctx(TLS1_3_VERSION, 0);
  for (int i = 0; i < 2; i++) {
    SSL_SESSION *s0, *s;

    s0 = connect(cache_only, cc[i], "a.test", NULL, &resumed);
    SW_CHECK_INT_EQ(resumed, 0);
    /* TLS 1.3 without tickets still sends one: the cache entry's name. */
    SW_CHECK(s0 != NULL && SSL_SESSION_has_ticket(s0) == (i == 1));
    s = connect(cache_only, cc[i], "a.test", s0, &resumed);
    SW_CHECK_INT_EQ(resumed, 1);
    SSL_SESSION_free(s);
    SSL_SESSION_free(s0);

    s0 = connect(none, cc[i], "a.test", NULL, &resumed);
    SW_CHECK_INT_EQ(resumed, 0);
    if (s0 != NULL) {
      s = connect(none, cc[i], "a.test", s0, &resumed);
      SW_CHECK_INT_EQ(resumed, 0);
      SSL_SESSION_free(s);
      SSL_SESSION_free(s0);
    }

    s0 = connect(other, cc[i], "a.test", NULL, &resumed);
    s = connect(other2, cc[i], "a.test", s0, &resumed);
    SW_CHECK_INT_EQ(resumed, 0);
    SSL_SESSION_free(s);
    SSL_SESSION_free(s0);
  }
  sw_tls_ctx_unref(cache_only);
  sw_tls_ctx_unref(none);
  sw_tls_ctx_unref(other);
  sw_tls_ctx_unref(other2);
  SSL_CTX_free(cc[0]);
  SSL_CTX_free(cc[1]);
}

static void check_ocsp_at(const char *file,
                          int line,
                          sw_tls_ctx_t *ctx,
                          SSL_CTX *cctx,
                          const char *sni,
                          int ask,
                          int want_len) {
  conn_t *c = conn_new(ctx, cctx, sni, NULL, NULL);
  const unsigned char *p = NULL;
  long len;

  if (ask)
    SW_CHECK_AT(
        file, line,
        SSL_set_tlsext_status_type(c->cli, TLSEXT_STATUSTYPE_ocsp) == 1);
  if (handshake_at(file, line, c)) {
    len = SSL_get_tlsext_status_ocsp_resp(c->cli, &p);
    SW_CHECK_INT_EQ_AT(file, line, len, want_len);
    if (want_len > 0 && len == want_len)
      SW_CHECK_AT(file, line, memcmp(p, fx.ocsp_der, (size_t)len) == 0);
  }
  conn_free(c);
}

static void test_ocsp(void) {
  sw_tls_conf_t conf;
  sw_tls_ctx_t *ctx;
  SSL_CTX *cc[2];

  fixtures();
  conf_init(&conf);
  conf_add(&conf, fx.a_pem, fx.a_key, 3)->ocsp = fx.ocsp;
  conf.certs[0].ocsp_line = 4;
  conf_add(&conf, fx.b_pem, fx.b_key, 5);
  ctx = ctx_ok(&conf);
  cc[0] = client_ctx(TLS1_2_VERSION, TLS1_2_VERSION);
  cc[1] = client_ctx(TLS1_3_VERSION, 0);
  for (int i = 0; i < 2; i++) {
    check_ocsp_at(__FILE__, __LINE__, ctx, cc[i], "a.test", 1, fx.ocsp_len);
    check_ocsp_at(__FILE__, __LINE__, ctx, cc[i], NULL, 1, fx.ocsp_len);
    /* The wildcard certificate has no response; a client that does not ask
     * gets none. */
    check_ocsp_at(__FILE__, __LINE__, ctx, cc[i], "x.b.test", 1, -1);
    check_ocsp_at(__FILE__, __LINE__, ctx, cc[i], "a.test", 0, -1);
  }
  sw_tls_ctx_unref(ctx);
  SSL_CTX_free(cc[0]);
  SSL_CTX_free(cc[1]);
}

/* Feeds bytes to a fresh connection and returns what sw_tls_read says. */
static int feed_read_at(const char *file,
                        int line,
                        sw_tls_ctx_t *ctx,
                        const char *data,
                        size_t len,
                        const char *why) {
  sw_tls_t *t = sw_tls_new(ctx);
  char buf[64];
  ssize_t r;

  SW_CHECK_AT(file, line, t != NULL);
  if (t == NULL)
    return 1;
  SW_CHECK_INT_EQ_AT(file, line, sw_tls_feed(t, data, len), 0);
  r = sw_tls_read(t, buf, sizeof(buf));
  if (why != NULL)
    SW_CHECK_STR_EQ_AT(file, line, sw_tls_error(t), why);
  SW_CHECK_AT(file, line, !sw_tls_handshake_done(t));
  /* Sticky, and nothing left in the thread's error queue. */
  SW_CHECK_INT_EQ_AT(file, line, sw_tls_read(t, buf, sizeof(buf)), r);
  SW_CHECK_UINT_EQ_AT(file, line, ERR_peek_error(), 0);
  sw_tls_free(t);
  return (int)r;
}
#define feed_read(ctx, s, why) \
  feed_read_at(__FILE__, __LINE__, ctx, s, sizeof(s) - 1, why)

static void test_bad_input(void) {
  sw_tls_ctx_t *ctx;
  sw_tls_stats_t before;

  fixtures();
  ctx = ctx_abc();
  before = stats_now();
  SW_CHECK_INT_EQ(feed_read(ctx, "GET / HTTP/1.1\r\n\r\n", "http request"),
                  SW_TLS_EHTTP);
  SW_CHECK_INT_EQ(
      feed_read(ctx, "POST /x HTTP/1.1\r\nHost: a\r\n\r\n", "http request"),
      SW_TLS_EHTTP);
  SW_CHECK_INT_EQ(feed_read(ctx, "CONNECT a.test:443 HTTP/1.1\r\n\r\n",
                            "https proxy request"),
                  SW_TLS_EHTTP);
  /* Methods OpenSSL does not know are recognised too. */
  SW_CHECK_INT_EQ(feed_read(ctx, "DELETE /x HTTP/1.1\r\n\r\n", NULL),
                  SW_TLS_EHTTP);
  SW_CHECK_INT_EQ(feed_read(ctx, "OPTIONS * HTTP/1.1\r\n\r\n", NULL),
                  SW_TLS_EHTTP);
  SW_CHECK_UINT_EQ(stats_now().failed_http - before.failed_http, 5);
  /* Too short to tell yet. */
  SW_CHECK_INT_EQ(feed_read(ctx, "GET", ""), 0);

  before = stats_now();
  SW_CHECK_INT_EQ(feed_read(ctx, "\x01\x02\x03\x04\x05\x06\x07\x08",
                            "wrong version number"),
                  SW_TLS_EPROTO);
  SW_CHECK_INT_EQ(feed_read(ctx, "get / http/1.1\r\n", "wrong version number"),
                  SW_TLS_EPROTO);
  /* A handshake record whose message is nonsense. */
  SW_CHECK_INT_EQ(feed_read(ctx, "\x16\x03\x01\x00\x04\xff\xff\xff\xff", NULL),
                  SW_TLS_EPROTO);
  /* An alert record instead of a ClientHello. */
  SW_CHECK_INT_EQ(feed_read(ctx, "\x15\x03\x01\x00\x02\x02\x28", NULL),
                  SW_TLS_EPROTO);
  SW_CHECK_UINT_EQ(stats_now().failed_protocol - before.failed_protocol, 4);
  SW_CHECK_UINT_EQ(stats_now().failed_version - before.failed_version, 0);
  SW_CHECK_UINT_EQ(stats_now().failed_http - before.failed_http, 0);
  sw_tls_ctx_unref(ctx);
}

/* A ClientHello that arrives in pieces, with a stray error in the thread's
 * queue that must not be taken for this connection's. */
static void test_truncated_hello(void) {
  sw_tls_ctx_t *ctx;
  SSL_CTX *cctx;
  conn_t *c;
  char hello[4096], buf[64];
  int len;

  fixtures();
  ctx = ctx_abc();
  cctx = client_ctx(TLS1_2_VERSION, 0);
  c = conn_new(ctx, cctx, "a.test", "\x08http/1.1", NULL);
  SW_CHECK_INT_EQ(SSL_do_handshake(c->cli), -1);
  ERR_clear_error();
  len = BIO_read(c->cout, hello, sizeof(hello));
  SW_CHECK(len > 100);
  if (len > 100) {
    SW_CHECK_INT_EQ(sw_tls_feed(c->srv, hello, 3), 0);
    ERR_raise(ERR_LIB_SSL, SSL_R_HTTP_REQUEST);
    SW_CHECK_INT_EQ(sw_tls_read(c->srv, buf, sizeof(buf)), 0);
    SW_CHECK_INT_EQ(sw_tls_feed(c->srv, hello + 3, (size_t)len / 2 - 3), 0);
    ERR_raise(ERR_LIB_SSL, SSL_R_WRONG_VERSION_NUMBER);
    SW_CHECK_INT_EQ(sw_tls_read(c->srv, buf, sizeof(buf)), 0);
    SW_CHECK_UINT_EQ(sw_tls_out_pending(c->srv), 0);
    SW_CHECK(!sw_tls_handshake_done(c->srv));
    SW_CHECK_UINT_EQ(ERR_peek_error(), 0);
    SW_CHECK_INT_EQ(
        sw_tls_feed(c->srv, hello + len / 2, (size_t)(len - len / 2)), 0);
    SW_CHECK_INT_EQ(sw_tls_read(c->srv, buf, sizeof(buf)), 0);
    SW_CHECK(sw_tls_out_pending(c->srv) > 0);
    if (handshake(c))
      SW_CHECK_STR_EQ(sw_tls_alpn(c->srv), "http/1.1");
  }
  conn_free(c);
  sw_tls_ctx_unref(ctx);
  SSL_CTX_free(cctx);
}

static void check_close_at(const char *file, int line, SSL_CTX *cctx) {
  sw_tls_ctx_t *ctx = ctx_abc();
  conn_t *c;
  size_t n;

  /* The client's close_notify, after data in the same flight: the data
   * first, then SW_TLS_ECLOSED; the server may still answer and close. */
  c = conn_new(ctx, cctx, "a.test", NULL, NULL);
  if (handshake_at(file, line, c)) {
    SW_CHECK_AT(file, line, SSL_write_ex(c->cli, "bye", 3, &n) == 1);
    SW_CHECK_INT_EQ_AT(file, line, SSL_shutdown(c->cli), 0);
    pump(c);
    SW_CHECK_UINT_EQ_AT(file, line, c->srv_inlen, 3);
    SW_CHECK_INT_EQ_AT(file, line, c->srv_rc, SW_TLS_ECLOSED);
    SW_CHECK_STR_EQ_AT(file, line, sw_tls_error(c->srv), "close_notify");
    SW_CHECK_INT_EQ_AT(file, line, sw_tls_write(c->srv, "ok", 2), 0);
    sw_tls_shutdown(c->srv);
    pump(c);
    SW_CHECK_UINT_EQ_AT(file, line, c->cli_inlen, 2);
    SW_CHECK_INT_EQ_AT(file, line, c->cli_err, SSL_ERROR_ZERO_RETURN);
  }
  conn_free(c);

  /* The server closes first: the client sees close_notify; writing after
   * it is an error. */
  c = conn_new(ctx, cctx, "a.test", NULL, NULL);
  if (handshake_at(file, line, c)) {
    sw_tls_shutdown(c->srv);
    SW_CHECK_AT(file, line, sw_tls_out_pending(c->srv) > 0);
    pump(c);
    SW_CHECK_INT_EQ_AT(file, line, c->cli_err, SSL_ERROR_ZERO_RETURN);
    SW_CHECK_AT(file, line, sw_tls_write(c->srv, "x", 1) < 0);
    SW_CHECK_UINT_EQ_AT(file, line, ERR_peek_error(), 0);
  }
  conn_free(c);

  /* Before the handshake, shutdown queues nothing. */
  c = conn_new(ctx, cctx, "a.test", NULL, NULL);
  sw_tls_shutdown(c->srv);
  SW_CHECK_UINT_EQ_AT(file, line, sw_tls_out_pending(c->srv), 0);
  conn_free(c);
  sw_tls_ctx_unref(ctx);
}

static void test_close_notify(void) {
  SSL_CTX *c12, *c13;
  fixtures();
  c12 = client_ctx(TLS1_2_VERSION, TLS1_2_VERSION);
  c13 = client_ctx(TLS1_3_VERSION, 0);
  check_close_at(__FILE__, __LINE__, c12);
  check_close_at(__FILE__, __LINE__, c13);
  SSL_CTX_free(c12);
  SSL_CTX_free(c13);
}

static void ctx_err_at(const char *file,
                       int line,
                       const sw_tls_conf_t *conf,
                       int64_t now,
                       const char *want1,
                       const char *want2) {
  sw_tls_ctx_t *ctx = (sw_tls_ctx_t *)&ctx;
  char err[512] = "";

  SW_CHECK_INT_EQ_AT(file, line,
                     sw_tls_ctx_new(CONF, conf, now, &ctx, err, sizeof(err)),
                     SW_ECONFIG);
  SW_CHECK_AT(file, line, ctx == NULL);
  SW_CHECK_STR_CONTAINS_AT(file, line, err, want1);
  if (want2 != NULL)
    SW_CHECK_STR_CONTAINS_AT(file, line, err, want2);
  SW_CHECK_UINT_EQ_AT(file, line, ERR_peek_error(), 0);
}

/* One certificate (at line 7) after a good one (line 3). */
static void one_err_at(const char *file,
                       int line,
                       const char *cert,
                       const char *key,
                       const char *want1,
                       const char *want2) {
  sw_tls_conf_t conf;
  conf_init(&conf);
  conf_add(&conf, fx.a_pem, fx.a_key, 3);
  conf_add(&conf, cert, key, 7);
  ctx_err_at(file, line, &conf, (int64_t)time(NULL), want1, want2);
}
#define one_err(cert, key, w1, w2) \
  one_err_at(__FILE__, __LINE__, cert, key, w1, w2)

static void test_ctx_errors(void) {
  sw_tls_conf_t conf;
  char want[512];
  time_t now = time(NULL);

  fixtures();
  snprintf(want, sizeof(want),
           "test.conf:7: certificate %s: the key %s does not match it",
           fx.a_pem, fx.other_key);
  one_err(fx.a_pem, fx.other_key, want, NULL);
  snprintf(want, sizeof(want),
           "test.conf:7: certificate %s: the key %s does not match it",
           fx.b_pem, fx.rsa_key);
  one_err(fx.b_pem, fx.rsa_key, want, NULL);

  snprintf(want, sizeof(want), "test.conf:7: certificate %s: expired on ",
           fx.expired_pem);
  one_err(fx.expired_pem, fx.expired_key, want, " UTC");
  snprintf(want, sizeof(want), "test.conf:7: certificate %s: not valid before ",
           fx.future_pem);
  one_err(fx.future_pem, fx.future_key, want, " UTC");

  snprintf(want, sizeof(want),
           "test.conf:7: certificate %s: cannot read it: No such file or "
           "directory",
           fx.missing);
  one_err(fx.missing, fx.a_key, want, NULL);
  snprintf(want, sizeof(want),
           "test.conf:7: certificate %s: cannot read the key %s: No such "
           "file or directory",
           fx.a_pem, fx.missing);
  one_err(fx.a_pem, fx.missing, want, NULL);
  snprintf(want, sizeof(want),
           "test.conf:7: certificate %s: not a PEM certificate chain",
           fx.bad_pem);
  one_err(fx.bad_pem, fx.a_key, want, NULL);
  snprintf(want, sizeof(want),
           "test.conf:7: certificate %s: not a PEM certificate chain",
           fx.a_key);
  one_err(fx.a_key, fx.a_key, want, NULL);
  snprintf(want, sizeof(want),
           "test.conf:7: certificate %s: the key %s is not an unencrypted "
           "PEM private key",
           fx.a_pem, fx.enc_key);
  one_err(fx.a_pem, fx.enc_key, want, NULL);

  /* The clock is the caller's. */
  conf_init(&conf);
  conf_add(&conf, fx.a_pem, fx.a_key, 5);
  snprintf(want, sizeof(want), "test.conf:5: certificate %s: expired on ",
           fx.a_pem);
  ctx_err_at(__FILE__, __LINE__, &conf, (int64_t)now + 365 * 86400, want, NULL);
  snprintf(want, sizeof(want), "test.conf:5: certificate %s: not valid before ",
           fx.a_pem);
  ctx_err_at(__FILE__, __LINE__, &conf, (int64_t)now - 365 * 86400, want, NULL);

  /* Cipher lists are the listen section's (line 2). */
  conf.ciphers = "NO-SUCH-CIPHER";
  ctx_err_at(__FILE__, __LINE__, &conf, now,
             "test.conf:2: tls_ciphers \"NO-SUCH-CIPHER\": ", "no cipher");
  conf.ciphers = NULL;
  conf.ciphersuites = "TLS_NO_SUCH_SUITE";
  ctx_err_at(__FILE__, __LINE__, &conf, now,
             "test.conf:2: tls_ciphersuites \"TLS_NO_SUCH_SUITE\": ", NULL);
  conf.ciphersuites = NULL;

  /* OCSP responses: the ocsp_response line. */
  conf.certs[0].ocsp = fx.missing;
  conf.certs[0].ocsp_line = 6;
  snprintf(want, sizeof(want),
           "test.conf:6: certificate %s: cannot read the OCSP response %s: "
           "No such file or directory",
           fx.a_pem, fx.missing);
  ctx_err_at(__FILE__, __LINE__, &conf, now, want, NULL);
  conf.certs[0].ocsp = fx.bad_ocsp;
  snprintf(want, sizeof(want),
           "test.conf:6: certificate %s: %s is not a DER OCSP response",
           fx.a_pem, fx.bad_ocsp);
  ctx_err_at(__FILE__, __LINE__, &conf, now, want, NULL);

  conf_init(&conf);
  ctx_err_at(__FILE__, __LINE__, &conf, now, "test.conf:2: ", "certificate");
}

/* A connection keeps its context alive after the listener let it go. */
static void test_refcount(void) {
  sw_tls_ctx_t *ctx;
  SSL_CTX *cctx;
  conn_t *c;

  fixtures();
  ctx = ctx_abc();
  cctx = client_ctx(TLS1_2_VERSION, 0);
  sw_tls_ctx_ref(ctx);
  sw_tls_ctx_unref(ctx);
  c = conn_new(ctx, cctx, "x.b.test", NULL, NULL);
  sw_tls_ctx_unref(ctx);
  sw_tls_ctx_rotate_tickets(ctx); /* still alive: c holds it */
  if (handshake(c))
    SW_CHECK_STR_EQ(sw_tls_sni(c->srv), "x.b.test");
  conn_free(c);
  sw_tls_ctx_unref(NULL);
  sw_tls_free(NULL);
  SSL_CTX_free(cctx);
}

/* --- the client side, against our own server side ------------------------ */

/* A server context with one certificate. */
static sw_tls_ctx_t *ctx_one(const char *pem, const char *key) {
  sw_tls_conf_t conf;
  conf_init(&conf);
  conf_add(&conf, pem, key, 3);
  return ctx_ok(&conf);
}

static sw_tls_ctx_t *cctx_ok_at(const char *file,
                                int line,
                                const char *ca,
                                int verify) {
  sw_tls_ctx_t *ctx = NULL;
  char err[512] = "";
  int rc = sw_tls_client_ctx_new(CONF, 9, ca, verify, &ctx, err, sizeof(err));
  if (!SW_CHECK_INT_EQ_AT(file, line, rc, 0))
    printf("  error: %s\n", err);
  SW_CHECK_AT(file, line, ctx != NULL);
  SW_CHECK_UINT_EQ_AT(file, line, ERR_peek_error(), 0);
  return ctx;
}
#define cctx_ok(ca, verify) cctx_ok_at(__FILE__, __LINE__, ca, verify)

/* Two of our connections, a client and a server, joined by the test. */
typedef struct pair_s {
  sw_tls_t *cli, *srv;
  int cli_rc, srv_rc; /* the first error sw_tls_read returned, else 0 */
  char cli_in[2 * BIG], srv_in[2 * BIG]; /* plaintext each side read */
  size_t cli_inlen, srv_inlen;
} pair_t;

static pair_t *pair_new_at(const char *file,
                           int line,
                           sw_tls_ctx_t *cctx,
                           sw_tls_ctx_t *sctx,
                           const char *name,
                           const char *ip) {
  pair_t *p = calloc(1, sizeof(*p));

  SW_CHECK_AT(file, line, p != NULL);
  p->cli = sw_tls_new_client(cctx, name, ip);
  p->srv = sw_tls_new(sctx);
  SW_CHECK_AT(file, line, p->cli != NULL && p->srv != NULL);
  return p;
}
#define pair_new(cctx, sctx, name, ip) \
  pair_new_at(__FILE__, __LINE__, cctx, sctx, name, ip)

static void pair_free(pair_t *p) {
  sw_tls_free(p->cli);
  sw_tls_free(p->srv);
  free(p);
}

/* One side's turn: sw_tls_read until it needs more or fails. */
static void side_step(sw_tls_t *t, char *in, size_t *inlen, int *rc) {
  if (*rc != 0)
    return;
  for (;;) {
    ssize_t n = sw_tls_read(t, in + *inlen, 2 * BIG - *inlen);
    if (n > 0) {
      *inlen += (size_t)n;
      continue;
    }
    if (n < 0)
      *rc = (int)n;
    return;
  }
}

/* Moves one side's output into the other's input; whether it moved any. */
static int shuttle(sw_tls_t *from, sw_tls_t *to) {
  char tmp[16384];
  size_t n;
  int moved = 0;

  while ((n = sw_tls_take_out(from, tmp, sizeof(tmp))) > 0) {
    SW_CHECK_INT_EQ(sw_tls_feed(to, tmp, n), 0);
    moved = 1;
  }
  return moved;
}

/* Until neither side has anything to say. A failed side's last output (its
 * alert) still goes across. */
static void pair_pump(pair_t *p) {
  for (int i = 0; i < 200; i++) {
    int moved;
    side_step(p->cli, p->cli_in, &p->cli_inlen, &p->cli_rc);
    moved = shuttle(p->cli, p->srv);
    side_step(p->srv, p->srv_in, &p->srv_inlen, &p->srv_rc);
    moved |= shuttle(p->srv, p->cli);
    if (!moved)
      break;
  }
}

static int pair_handshake_at(const char *file, int line, pair_t *p) {
  int ok;
  pair_pump(p);
  ok = sw_tls_handshake_done(p->cli) && sw_tls_handshake_done(p->srv) &&
       p->cli_rc == 0 && p->srv_rc == 0;
  if (!SW_CHECK_AT(file, line, ok))
    printf("  client rc %d (%s), server rc %d (%s)\n", p->cli_rc,
           sw_tls_error(p->cli), p->srv_rc, sw_tls_error(p->srv));
  SW_CHECK_UINT_EQ_AT(file, line, ERR_peek_error(), 0);
  return ok;
}
#define pair_handshake(p) pair_handshake_at(__FILE__, __LINE__, p)

/* A connection whose handshake must fail on the client with `why` in its
 * error; the server sees the client's alert. */
static void client_refuses_at(const char *file,
                              int line,
                              sw_tls_ctx_t *cctx,
                              sw_tls_ctx_t *sctx,
                              const char *name,
                              const char *ip,
                              const char *why) {
  pair_t *p = pair_new_at(file, line, cctx, sctx, name, ip);
  sw_tls_stats_t before = stats_now();
  char buf[16];

  pair_pump(p);
  SW_CHECK_INT_EQ_AT(file, line, p->cli_rc, SW_TLS_EVERIFY);
  SW_CHECK_STR_CONTAINS_AT(file, line, sw_tls_error(p->cli),
                           "certificate verify failed: ");
  SW_CHECK_STR_CONTAINS_AT(file, line, sw_tls_error(p->cli), why);
  SW_CHECK_AT(file, line, !sw_tls_handshake_done(p->cli));
  SW_CHECK_INT_EQ_AT(file, line, p->srv_rc, SW_TLS_EPROTO);
  SW_CHECK_AT(file, line, !sw_tls_handshake_done(p->srv));
  /* Sticky, and nothing left in the thread's error queue. */
  SW_CHECK_INT_EQ_AT(file, line, sw_tls_read(p->cli, buf, sizeof(buf)),
                     SW_TLS_EVERIFY);
  SW_CHECK_INT_EQ_AT(file, line, sw_tls_write(p->cli, "x", 1), SW_TLS_EVERIFY);
  SW_CHECK_UINT_EQ_AT(file, line, ERR_peek_error(), 0);
  SW_CHECK_UINT_EQ_AT(
      file, line,
      stats_now().client_failed_verify - before.client_failed_verify, 1);
  SW_CHECK_UINT_EQ_AT(file, line,
                      stats_now().client_failed - before.client_failed, 0);
  SW_CHECK_UINT_EQ_AT(
      file, line, stats_now().client_handshakes - before.client_handshakes, 0);
  pair_free(p);
}
#define client_refuses(cctx, sctx, name, ip, why) \
  client_refuses_at(__FILE__, __LINE__, cctx, sctx, name, ip, why)

/* The handshake, ALPN, SNI and data both ways; the client's handshake is
 * counted apart from the listener's. */
static void test_client_handshake(void) {
  sw_tls_ctx_t *cctx, *sctx;
  sw_tls_stats_t before;
  static char big[BIG];
  char buf[64];
  pair_t *p;

  fixtures();
  for (size_t i = 0; i < sizeof(big); i++)
    big[i] = (char)('A' + i % 26);
  cctx = cctx_ok(fx.ca_pem, 1);
  sctx = ctx_abc();
  before = stats_now();
  p = pair_new(cctx, sctx, "a.test", NULL);
  /* Nothing fed: the first read makes the ClientHello. */
  SW_CHECK_UINT_EQ(sw_tls_out_pending(p->cli), 0);
  SW_CHECK_INT_EQ(sw_tls_read(p->cli, buf, sizeof(buf)), 0);
  SW_CHECK(sw_tls_out_pending(p->cli) > 0);
  SW_CHECK(!sw_tls_handshake_done(p->cli));
  SW_CHECK_INT_EQ(sw_tls_write(p->cli, "x", 1), SW_TLS_EPROTO);
  if (pair_handshake(p)) {
    SW_CHECK_STR_EQ(sw_tls_alpn(p->cli), "http/1.1");
    SW_CHECK_STR_EQ(sw_tls_alpn(p->srv), "http/1.1");
    SW_CHECK_STR_EQ(sw_tls_sni(p->srv), "a.test");
    SW_CHECK_STR_EQ(sw_tls_sni(p->cli), "a.test");
    SW_CHECK_STR_EQ(sw_tls_version(p->cli), "TLSv1.3");
    SW_CHECK_STR_EQ(sw_tls_version(p->srv), "TLSv1.3");
    SW_CHECK(sw_tls_cipher(p->cli)[0] != '\0');
    SW_CHECK_INT_EQ(sw_tls_resumed(p->cli), 0);

    SW_CHECK_INT_EQ(sw_tls_write(p->cli, "GET / HTTP/1.1\r\n\r\n", 18), 0);
    SW_CHECK_INT_EQ(sw_tls_write(p->cli, big, sizeof(big)), 0);
    pair_pump(p);
    SW_CHECK_UINT_EQ(p->srv_inlen, 18 + sizeof(big));
    SW_CHECK(memcmp(p->srv_in, "GET / HTTP/1.1\r\n\r\n", 18) == 0 &&
             memcmp(p->srv_in + 18, big, sizeof(big)) == 0);
    SW_CHECK_INT_EQ(sw_tls_write(p->srv, "HTTP/1.1 200 OK\r\n", 17), 0);
    SW_CHECK_INT_EQ(sw_tls_write(p->srv, big, sizeof(big)), 0);
    pair_pump(p);
    SW_CHECK_UINT_EQ(p->cli_inlen, 17 + sizeof(big));
    SW_CHECK(memcmp(p->cli_in, "HTTP/1.1 200 OK\r\n", 17) == 0 &&
             memcmp(p->cli_in + 17, big, sizeof(big)) == 0);

    /* The client closes: the server sees close_notify and may answer. */
    sw_tls_shutdown(p->cli);
    SW_CHECK(sw_tls_out_pending(p->cli) > 0);
    pair_pump(p);
    SW_CHECK_INT_EQ(p->srv_rc, SW_TLS_ECLOSED);
    sw_tls_shutdown(p->srv);
    pair_pump(p);
    SW_CHECK_INT_EQ(p->cli_rc, SW_TLS_ECLOSED);
    SW_CHECK_STR_EQ(sw_tls_error(p->cli), "close_notify");
  }
  SW_CHECK_UINT_EQ(stats_now().client_handshakes - before.client_handshakes, 1);
  SW_CHECK_UINT_EQ(stats_now().handshakes - before.handshakes, 1);
  SW_CHECK_UINT_EQ(stats_now().failed_protocol - before.failed_protocol, 0);
  pair_free(p);

  /* Contexts of the other side are refused. */
  SW_CHECK(sw_tls_new(cctx) == NULL);
  SW_CHECK(sw_tls_new_client(sctx, "a.test", NULL) == NULL);
  SW_CHECK(sw_tls_new_client(cctx, NULL, "not an address") == NULL);
  SW_CHECK_UINT_EQ(ERR_peek_error(), 0);

  /* A connection keeps its client context alive. */
  p = pair_new(cctx, sctx, "a.test", NULL);
  sw_tls_ctx_unref(cctx);
  pair_handshake(p);
  pair_free(p);
  sw_tls_ctx_unref(sctx);
}

static void test_client_verify(void) {
  sw_tls_ctx_t *cctx, *cctx2, *noverify, *sctx, *sctx2;
  pair_t *p;

  fixtures();
  cctx = cctx_ok(fx.ca_pem, 1);
  cctx2 = cctx_ok(fx.ca2_pem, 1); /* trusts only the second CA */
  noverify = cctx_ok(NULL, 0);
  sctx = ctx_abc();
  sctx2 = ctx_one(fx.ca2a_pem, fx.ca2a_key); /* a.test from the second CA */

  /* The certificate the server picks is a.test's, whatever we asked. */
  client_refuses(cctx, sctx, "wrong.test", NULL, "hostname mismatch");
  client_refuses(cctx, sctx, "b.test", NULL, "hostname mismatch");
  /* Right name, unknown issuer. */
  client_refuses(cctx, sctx2, "a.test", NULL,
                 "unable to get local issuer certificate");
  /* A chain that ends in a root we do not trust. */
  client_refuses(cctx2, sctx, "a.test", NULL,
                 "self-signed certificate in certificate chain");
  /* Wildcards match one label. */
  p = pair_new(cctx, sctx, "x.b.test", NULL);
  pair_handshake(p);
  pair_free(p);
  client_refuses(cctx, sctx, "y.x.b.test", NULL, "hostname mismatch");

  /* Verification off: any name, any issuer. */
  p = pair_new(noverify, sctx, "wrong.test", NULL);
  pair_handshake(p);
  pair_free(p);
  p = pair_new(noverify, sctx2, "a.test", NULL);
  pair_handshake(p);
  pair_free(p);
  p = pair_new(noverify, sctx2, NULL, "127.0.0.1");
  pair_handshake(p);
  pair_free(p);

  sw_tls_ctx_unref(cctx);
  sw_tls_ctx_unref(cctx2);
  sw_tls_ctx_unref(noverify);
  sw_tls_ctx_unref(sctx);
  sw_tls_ctx_unref(sctx2);
}

/* An upstream named by its address: the certificate must carry it as an IP
 * SAN, and no SNI is sent. */
static void test_client_ip(void) {
  sw_tls_ctx_t *cctx, *sctx_ip, *sctx;
  pair_t *p;

  fixtures();
  cctx = cctx_ok(fx.ca_pem, 1);
  sctx_ip = ctx_one(fx.ip_pem, fx.ip_key);
  sctx = ctx_abc();
  p = pair_new(cctx, sctx_ip, NULL, "127.0.0.1");
  if (pair_handshake(p)) {
    SW_CHECK_STR_EQ(sw_tls_sni(p->srv), "");
    SW_CHECK_STR_EQ(sw_tls_alpn(p->srv), "http/1.1");
  }
  pair_free(p);
  client_refuses(cctx, sctx, NULL, "127.0.0.1", "IP address mismatch");
  client_refuses(cctx, sctx_ip, NULL, "127.0.0.2", "IP address mismatch");
  client_refuses(cctx, sctx_ip, NULL, "::1", "IP address mismatch");
  /* A name is checked as a name. */
  client_refuses(cctx, sctx_ip, "a.test", NULL, "hostname mismatch");
  sw_tls_ctx_unref(cctx);
  sw_tls_ctx_unref(sctx_ip);
  sw_tls_ctx_unref(sctx);
}

/* One connection to name (or ip) that must succeed; whether it resumed (the
 * two sides agreeing), or -1 when it failed. */
static int client_connect_at(const char *file,
                             int line,
                             sw_tls_ctx_t *cctx,
                             sw_tls_ctx_t *sctx,
                             const char *name,
                             const char *ip) {
  pair_t *p = pair_new_at(file, line, cctx, sctx, name, ip);
  int resumed = -1;

  if (pair_handshake_at(file, line, p)) {
    resumed = sw_tls_resumed(p->srv);
    SW_CHECK_INT_EQ_AT(file, line, sw_tls_resumed(p->cli), resumed);
    /* Some data, so that a TLS 1.3 ticket sent after the handshake reaches
     * the client whatever the order of the flights. */
    SW_CHECK_INT_EQ_AT(file, line, sw_tls_write(p->srv, "hi", 2), 0);
    pair_pump(p);
    SW_CHECK_UINT_EQ_AT(file, line, p->cli_inlen, 2);
  }
  pair_free(p);
  return resumed;
}
#define client_connect(cctx, sctx, name, ip) \
  client_connect_at(__FILE__, __LINE__, cctx, sctx, name, ip)

static void test_client_resume(void) {
  sw_tls_ctx_t *cctx, *cctx2, *sctx, *sctx_ip, *sctx_other;
  sw_tls_stats_t before;
  char name[64];

  fixtures();
  cctx = cctx_ok(fx.ca_pem, 1);
  cctx2 = cctx_ok(fx.ca_pem, 1);
  sctx = ctx_abc();
  sctx_ip = ctx_one(fx.ip_pem, fx.ip_key);
  sctx_other = ctx_abc(); /* other ticket keys */
  before = stats_now();
  SW_CHECK_INT_EQ(client_connect(cctx, sctx, "a.test", NULL), 0);
  SW_CHECK_INT_EQ(client_connect(cctx, sctx, "a.test", NULL), 1);
  /* The session a resumption brought replaces the one it used. */
  SW_CHECK_INT_EQ(client_connect(cctx, sctx, "a.test", NULL), 1);
  SW_CHECK_UINT_EQ(stats_now().client_handshakes - before.client_handshakes, 3);
  SW_CHECK_UINT_EQ(stats_now().client_resumed - before.client_resumed, 2);
  SW_CHECK_UINT_EQ(stats_now().handshakes - before.handshakes, 3);
  SW_CHECK_UINT_EQ(stats_now().resumed - before.resumed, 2);

  /* Sessions are per name, per address and per context. */
  SW_CHECK_INT_EQ(client_connect(cctx, sctx, "x.b.test", NULL), 0);
  SW_CHECK_INT_EQ(client_connect(cctx, sctx, "x.b.test", NULL), 1);
  SW_CHECK_INT_EQ(client_connect(cctx, sctx, "a.test", NULL), 1);
  SW_CHECK_INT_EQ(client_connect(cctx2, sctx, "a.test", NULL), 0);
  SW_CHECK_INT_EQ(client_connect(cctx, sctx_ip, NULL, "127.0.0.1"), 0);
  SW_CHECK_INT_EQ(client_connect(cctx, sctx_ip, NULL, "127.0.0.1"), 1);

  /* A server that does not take our session back: a full handshake, whose
   * session is kept instead. */
  SW_CHECK_INT_EQ(client_connect(cctx, sctx_other, "a.test", NULL), 0);
  SW_CHECK_INT_EQ(client_connect(cctx, sctx_other, "a.test", NULL), 1);
  SW_CHECK_INT_EQ(client_connect(cctx, sctx, "a.test", NULL), 0);

  /* A session is never offered for a name it was not verified for: a
   * failed verification leaves nothing behind to resume. */
  client_refuses(cctx, sctx, "wrong.test", NULL, "hostname mismatch");
  client_refuses(cctx, sctx, "wrong.test", NULL, "hostname mismatch");

  /* The table is bounded: 64 more names push a.test's session out, and the
   * newest ones stay. */
  SW_CHECK_INT_EQ(client_connect(cctx, sctx, "a.test", NULL), 1);
  for (int i = 0; i < 64; i++) {
    snprintf(name, sizeof(name), "n%d.b.test", i);
    SW_CHECK_INT_EQ(client_connect(cctx, sctx, name, NULL), 0);
  }
  SW_CHECK_INT_EQ(client_connect(cctx, sctx, "a.test", NULL), 0);
  SW_CHECK_INT_EQ(client_connect(cctx, sctx, "n63.b.test", NULL), 1);
  /* a.test took the oldest slot (n0's). */
  SW_CHECK_INT_EQ(client_connect(cctx, sctx, "n0.b.test", NULL), 0);
  SW_CHECK_INT_EQ(client_connect(cctx, sctx, "n2.b.test", NULL), 1);

  /* Freeing the contexts with sessions inside leaks nothing (ASan). */
  sw_tls_ctx_unref(cctx);
  sw_tls_ctx_unref(cctx2);
  sw_tls_ctx_unref(sctx);
  sw_tls_ctx_unref(sctx_ip);
  sw_tls_ctx_unref(sctx_other);
}

/* A plain OpenSSL server for what ours never does: TLS 1.2 at most, with
 * tickets or only session ids. */
static SSL_CTX *server12(int tickets) {
  SSL_CTX *s = SSL_CTX_new(TLS_server_method());

  SW_CHECK(s != NULL);
  SW_CHECK_INT_EQ(SSL_CTX_use_certificate_chain_file(s, fx.a_pem), 1);
  SW_CHECK_INT_EQ(SSL_CTX_use_PrivateKey_file(s, fx.a_key, SSL_FILETYPE_PEM),
                  1);
  SW_CHECK_INT_EQ(SSL_CTX_set_max_proto_version(s, TLS1_2_VERSION), 1);
  SW_CHECK_INT_EQ(
      SSL_CTX_set_session_id_context(s, (const unsigned char *)"t", 1), 1);
  if (!tickets)
    SSL_CTX_set_options(s, SSL_OP_NO_TICKET);
  return s;
}

/* Our client against that server: sw_tls_read's result once neither side
 * has anything to say (0: the handshake is done), and whether it resumed. */
static int connect12_at(const char *file,
                        int line,
                        sw_tls_ctx_t *cctx,
                        SSL_CTX *sctx,
                        const char *name,
                        int *resumed) {
  sw_tls_t *cli = sw_tls_new_client(cctx, name, NULL);
  SSL *srv = SSL_new(sctx);
  BIO *sin = BIO_new(BIO_s_mem()), *sout = BIO_new(BIO_s_mem());
  char tmp[16384];
  int rc = 0;

  *resumed = -1;
  SW_CHECK_AT(file, line,
              cli != NULL && srv != NULL && sin != NULL && sout != NULL);
  BIO_set_mem_eof_return(sin, -1);
  BIO_set_mem_eof_return(sout, -1);
  SSL_set_bio(srv, sin, sout);
  SSL_set_accept_state(srv);
  for (int i = 0; i < 50; i++) {
    int moved = 0, n;
    size_t m;
    if (rc == 0) {
      ssize_t r = sw_tls_read(cli, tmp, sizeof(tmp));
      if (r < 0)
        rc = (int)r;
    }
    while ((m = sw_tls_take_out(cli, tmp, sizeof(tmp))) > 0) {
      SW_CHECK_INT_EQ_AT(file, line, BIO_write(sin, tmp, (int)m), (int)m);
      moved = 1;
    }
    (void)SSL_do_handshake(srv);
    ERR_clear_error(); /* the server's, not ours */
    while ((n = BIO_read(sout, tmp, sizeof(tmp))) > 0) {
      SW_CHECK_INT_EQ_AT(file, line, sw_tls_feed(cli, tmp, (size_t)n), 0);
      moved = 1;
    }
    if (!moved)
      break;
  }
  if (rc == 0 &&
      SW_CHECK_AT(file, line,
                  sw_tls_handshake_done(cli) && SSL_is_init_finished(srv))) {
    SW_CHECK_STR_EQ_AT(file, line, sw_tls_version(cli), "TLSv1.2");
    SW_CHECK_STR_EQ_AT(file, line, sw_tls_alpn(cli), ""); /* none chosen */
    *resumed = sw_tls_resumed(cli);
    SW_CHECK_INT_EQ_AT(file, line, SSL_session_reused(srv), *resumed);
    /* Keeps the session in the server's cache. */
    SSL_set_shutdown(srv, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
  }
  SW_CHECK_UINT_EQ_AT(file, line, ERR_peek_error(), 0);
  SSL_free(srv);
  sw_tls_free(cli);
  return rc;
}
#define connect12(cctx, sctx, name, resumed) \
  connect12_at(__FILE__, __LINE__, cctx, sctx, name, resumed)

/* TLS 1.2, where the session comes at the end of the handshake (by ticket
 * or by id) and is used again and again. */
static void test_client_tls12(void) {
  sw_tls_ctx_t *cctx;
  SSL_CTX *sctx[2];
  int resumed;

  fixtures();
  cctx = cctx_ok(fx.ca_pem, 1);
  sctx[0] = server12(1);
  sctx[1] = server12(0);
  for (int i = 0; i < 2; i++) {
    SW_CHECK_INT_EQ(connect12(cctx, sctx[i], "a.test", &resumed), 0);
    SW_CHECK_INT_EQ(resumed, 0);
    SW_CHECK_INT_EQ(connect12(cctx, sctx[i], "a.test", &resumed), 0);
    SW_CHECK_INT_EQ(resumed, 1);
    SW_CHECK_INT_EQ(connect12(cctx, sctx[i], "a.test", &resumed), 0);
    SW_CHECK_INT_EQ(resumed, 1);
  }
  SW_CHECK_INT_EQ(connect12(cctx, sctx[0], "wrong.test", &resumed),
                  SW_TLS_EVERIFY);
  SW_CHECK_INT_EQ(resumed, -1);
  sw_tls_ctx_unref(cctx);
  SSL_CTX_free(sctx[0]);
  SSL_CTX_free(sctx[1]);
}

/* Other handshake failures are not verification failures. */
static void test_client_errors(void) {
  sw_tls_ctx_t *cctx, *noverify, *sctx;
  sw_tls_stats_t before;
  sw_tls_t *t;
  char buf[64];

  fixtures();
  cctx = cctx_ok(fx.ca_pem, 1);
  noverify = cctx_ok(NULL, 0);
  before = stats_now();
  /* A plain HTTP server answering our ClientHello. */
  t = sw_tls_new_client(cctx, "a.test", NULL);
  SW_CHECK(t != NULL);
  SW_CHECK_INT_EQ(sw_tls_read(t, buf, sizeof(buf)), 0);
  SW_CHECK_INT_EQ(sw_tls_feed(t, "HTTP/1.1 400 Bad Request\r\n\r\n", 28), 0);
  SW_CHECK_INT_EQ(sw_tls_read(t, buf, sizeof(buf)), SW_TLS_EPROTO);
  SW_CHECK_STR_EQ(sw_tls_error(t), "wrong version number");
  SW_CHECK_UINT_EQ(ERR_peek_error(), 0);
  sw_tls_free(t);
  /* The same without verification, where X509's result is irrelevant. */
  t = sw_tls_new_client(noverify, "a.test", NULL);
  SW_CHECK(t != NULL);
  SW_CHECK_INT_EQ(sw_tls_read(t, buf, sizeof(buf)), 0);
  SW_CHECK_INT_EQ(sw_tls_feed(t, "\x15\x03\x03\x00\x02\x02\x28", 7), 0);
  SW_CHECK_INT_EQ(sw_tls_read(t, buf, sizeof(buf)), SW_TLS_EPROTO);
  SW_CHECK_UINT_EQ(ERR_peek_error(), 0);
  sw_tls_free(t);
  SW_CHECK_UINT_EQ(stats_now().client_failed - before.client_failed, 2);
  SW_CHECK_UINT_EQ(stats_now().failed_protocol - before.failed_protocol, 0);
  SW_CHECK_UINT_EQ(stats_now().failed_http - before.failed_http, 0);

  /* A server that only speaks TLS 1.3 still serves our client. */
  {
    sw_tls_conf_t conf;
    pair_t *p;
    conf_init(&conf);
    conf.min_version = 13;
    conf_add(&conf, fx.a_pem, fx.a_key, 3);
    sctx = ctx_ok(&conf);
    p = pair_new(cctx, sctx, "a.test", NULL);
    pair_handshake(p);
    pair_free(p);
    sw_tls_ctx_unref(sctx);
  }
  sw_tls_ctx_unref(cctx);
  sw_tls_ctx_unref(noverify);
}

static void cctx_err_at(const char *file,
                        int line,
                        const char *ca,
                        const char *want1,
                        const char *want2) {
  sw_tls_ctx_t *ctx = (sw_tls_ctx_t *)&ctx;
  char err[512] = "";

  SW_CHECK_INT_EQ_AT(
      file, line, sw_tls_client_ctx_new(CONF, 9, ca, 1, &ctx, err, sizeof(err)),
      SW_ECONFIG);
  SW_CHECK_AT(file, line, ctx == NULL);
  SW_CHECK_STR_CONTAINS_AT(file, line, err, want1);
  if (want2 != NULL)
    SW_CHECK_STR_CONTAINS_AT(file, line, err, want2);
  SW_CHECK_UINT_EQ_AT(file, line, ERR_peek_error(), 0);
}
#define cctx_err(ca, w1, w2) cctx_err_at(__FILE__, __LINE__, ca, w1, w2)

static void test_client_ctx_errors(void) {
  sw_tls_ctx_t *ctx;
  char want[512];

  fixtures();
  snprintf(want, sizeof(want),
           "test.conf:9: tls_ca %s: cannot read it: No such file or directory",
           fx.missing);
  cctx_err(fx.missing, want, NULL);
  snprintf(want, sizeof(want), "test.conf:9: tls_ca %s: the file is empty",
           fx.empty);
  cctx_err(fx.empty, want, NULL);
  snprintf(want, sizeof(want),
           "test.conf:9: tls_ca %s: not a PEM file of certificates (",
           fx.bad_pem);
  cctx_err(fx.bad_pem, want, NULL);
  snprintf(want, sizeof(want),
           "test.conf:9: tls_ca %s: no PEM certificate in it", fx.a_key);
  cctx_err(fx.a_key, want, NULL);
  snprintf(want, sizeof(want),
           "test.conf:9: tls_ca %s: cannot read it: Is a directory", fx.dir);
  cctx_err(fx.dir, want, NULL);

  /* The system's store, with or without verification; a chain file. */
  ctx = cctx_ok(NULL, 1);
  sw_tls_ctx_unref(ctx);
  ctx = cctx_ok(fx.a_pem, 1);
  sw_tls_ctx_unref(ctx);
  /* No file name for the message: still one line. */
  {
    char err[256] = "";
    ctx = NULL;
    SW_CHECK_INT_EQ(
        sw_tls_client_ctx_new(NULL, 4, fx.empty, 1, &ctx, err, sizeof(err)),
        SW_ECONFIG);
    SW_CHECK_STR_CONTAINS(err, "(config):4: tls_ca ");
  }
}

SW_TEST_MAIN(SW_TASK(test_sni),
             SW_TASK(test_sni_exact_first),
             SW_TASK(test_alpn),
             SW_TASK(test_versions),
             SW_TASK(test_ciphers),
             SW_TASK(test_data),
             SW_TASK(test_tickets),
             SW_TASK(test_session_cache),
             SW_TASK(test_ocsp),
             SW_TASK(test_bad_input),
             SW_TASK(test_truncated_hello),
             SW_TASK(test_close_notify),
             SW_TASK(test_ctx_errors),
             SW_TASK(test_refcount),
             SW_TASK(test_client_handshake),
             SW_TASK(test_client_verify),
             SW_TASK(test_client_ip),
             SW_TASK(test_client_resume),
             SW_TASK(test_client_tls12),
             SW_TASK(test_client_errors),
             SW_TASK(test_client_ctx_errors))
