/* TLS for client connections and to upstream servers (sw_tls.h): OpenSSL 3
 * over a pair of memory BIOs per connection. This module owns the SSL_CTXs
 * of each HTTPS listen section (one per certificate, so that SNI picks a
 * whole context and the OCSP response that goes with it), the session ticket
 * keys they share, the client SSL_CTX of each upstream that speaks TLS with
 * the sessions it keeps per server name, and the per-connection SSL objects.
 * It must never touch a socket or the event loop: bytes come in through
 * sw_tls_feed and leave through sw_tls_take_out.
 *
 * Every call into OpenSSL starts with an empty error queue and leaves it
 * empty, because the queue belongs to the thread, not to a connection: an
 * error left behind would be read as the next connection's failure. */
#include "sw_tls.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/bio.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ocsp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "sw_types.h"

/* An OCSP response is a few kilobytes; anything near this is not one. */
#define SW_TLS_OCSP_MAX (1024 * 1024)

/* The session id context: resumption is only offered within one context,
 * and every SSL_CTX of one sw_tls_ctx_t must have the same one so that
 * switching certificates by SNI keeps the session usable. */
static const unsigned char sw_tls_sid_ctx[] = "switchd";

/* The one protocol we speak, in ALPN's wire form for comparisons. */
static const unsigned char sw_tls_h11[] = "http/1.1";
#define SW_TLS_H11_LEN 8
/* The same as a client's ALPN list: one length-prefixed name. */
static const unsigned char sw_tls_h11_offer[] = "\x08http/1.1";

/* Client sessions kept per context: one per server name (or address), the
 * oldest replaced when full. An upstream section names a few servers, so
 * this is room to spare, and a bound on what a flood of names could cost. */
#define SW_TLS_SESSIONS_MAX 64

static sw_tls_stats_t sw_tls_counters;

/* One session ticket key: the name the ticket carries, the AES-256-CBC key
 * that encrypts it and the HMAC-SHA256 key that authenticates it. */
typedef struct sw_tls_ticket_key_s {
  unsigned char name[16];
  unsigned char aes[32];
  unsigned char hmac[32];
} sw_tls_ticket_key_t;

/* One certificate of a context: its own SSL_CTX, the names SNI matches
 * against (lower case; "*.example.com" for a wildcard), and the OCSP
 * response to staple, if any. */
typedef struct sw_tls_cert_s {
  SSL_CTX *ssl_ctx;
  char **names;
  size_t nnames;
  unsigned char *ocsp;
  size_t ocsp_len;
} sw_tls_cert_t;

/* The last session a server gave a client context, for the next connection
 * to the same server; `peer` is "h:" and the host name, or "i:" and the
 * address, so that a session verified for one never serves the other. */
typedef struct sw_tls_session_s {
  char *peer;        /* NULL: a free slot */
  SSL_SESSION *sess; /* one reference, ours */
  uint64_t stored;   /* when, in ctx->session_seq, for replacing the oldest */
} sw_tls_session_t;

struct sw_tls_ctx_s {
  int refs;
  int client; /* made by sw_tls_client_ctx_new: certs[0] is its SSL_CTX */
  int verify; /* client: the server's certificate is checked */
  sw_tls_cert_t certs[SW_TLS_CERTS_MAX]; /* the first is the default */
  size_t ncerts;
  sw_tls_ticket_key_t keys[2]; /* [0] encrypts; [1] (previous) decrypts */
  int has_previous;
  uint64_t rotate_ms;    /* tls_ticket_rotate */
  uint64_t handshake_ms; /* tls_handshake_timeout */
  uint64_t rotated_at;   /* the caller's time of the last rotation; 0: none */
  sw_tls_session_t sessions[SW_TLS_SESSIONS_MAX]; /* client only */
  uint64_t session_seq;
};

struct sw_tls_s {
  sw_tls_ctx_t *ctx;
  SSL *ssl;
  int client;           /* we connect (sw_tls_new_client) */
  char *peer;           /* client: the session table's key for this server */
  BIO *rbio;            /* ciphertext in; owned by ssl */
  BIO *wbio;            /* ciphertext out; owned by ssl */
  int done;             /* handshake completed */
  uint64_t accepted_at; /* the caller's time, for the handshake timeout */
  int fatal;            /* a sticky SW_TLS_E* once the connection is unusable */
  /* The first bytes the client sent, to recognise plain HTTP with a method
   * OpenSSL does not know (it only spots GET, POST, HEAD, PUT, CONNECT). */
  unsigned char head[8];
  size_t headlen;
  char err[160];
};

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...) {
  va_list ap;
  if (err == NULL || errlen == 0)
    return;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
}

/* The reason of the oldest error in the thread's queue, for a message; the
 * queue is left as it is. */
static void ssl_reason(char *buf, size_t len) {
  unsigned long e = ERR_peek_error();
  const char *r;

  if (e == 0) {
    snprintf(buf, len, "unknown error");
    return;
  }
  r = ERR_reason_error_string(e);
  if (r != NULL)
    snprintf(buf, len, "%s", r);
  else
    ERR_error_string_n(e, buf, len);
}

/* --- loading ----------------------------------------------------------- */

/* Keys are never encrypted in our deploys, and nothing may ever prompt on
 * a terminal: an encrypted key fails to load with a message instead. */
static int on_passphrase(char *buf, int size, int rwflag, void *u) {
  return -1;
}

static void format_time(const ASN1_TIME *t, char *buf, size_t len) {
  struct tm tm;
  if (ASN1_TIME_to_tm(t, &tm) != 1 ||
      strftime(buf, len, "%Y-%m-%d %H:%M:%S UTC", &tm) == 0)
    snprintf(buf, len, "(unreadable date)");
}

static char *lower_dup(const unsigned char *s, size_t len) {
  char *d = malloc(len + 1);
  if (d == NULL)
    return NULL;
  for (size_t i = 0; i < len; i++) {
    unsigned char c = s[i];
    d[i] = (char)(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
  }
  d[len] = '\0';
  return d;
}

static int add_name(sw_tls_cert_t *c, const unsigned char *s, size_t len) {
  char **names;
  char *d;

  /* A name with a NUL inside could never equal an SNI name honestly. */
  if (len == 0 || memchr(s, '\0', len) != NULL)
    return 0;
  names = realloc(c->names, (c->nnames + 1) * sizeof(*names));
  if (names == NULL)
    return -ENOMEM;
  c->names = names;
  d = lower_dup(s, len);
  if (d == NULL)
    return -ENOMEM;
  c->names[c->nnames++] = d;
  return 0;
}

/* The names SNI selects this certificate by: its subjectAltName DNS
 * entries, or the subject CN when it has none (as browsers no longer do,
 * but a CN-only certificate still deserves to be found by its name). */
static int collect_names(sw_tls_cert_t *c, X509 *leaf) {
  GENERAL_NAMES *sans;
  int err = 0;

  sans = X509_get_ext_d2i(leaf, NID_subject_alt_name, NULL, NULL);
  if (sans != NULL) {
    for (int i = 0; i < sk_GENERAL_NAME_num(sans) && err == 0; i++) {
      const GENERAL_NAME *g = sk_GENERAL_NAME_value(sans, i);
      if (g->type == GEN_DNS)
        err = add_name(c, ASN1_STRING_get0_data(g->d.dNSName),
                       (size_t)ASN1_STRING_length(g->d.dNSName));
    }
    GENERAL_NAMES_free(sans);
  }
  if (err == 0 && c->nnames == 0) {
    X509_NAME *subj = X509_get_subject_name(leaf);
    int idx = -1, last = -1;
    while ((idx = X509_NAME_get_index_by_NID(subj, NID_commonName, idx)) >= 0)
      last = idx;
    if (last >= 0) {
      unsigned char *utf8 = NULL;
      X509_NAME_ENTRY *e = X509_NAME_get_entry(subj, last);
      int n = ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(e));
      if (n > 0)
        err = add_name(c, utf8, (size_t)n);
      OPENSSL_free(utf8);
    }
  }
  ERR_clear_error();
  return err;
}

/* Reads a whole (small) file. 0, or an errno value; EFBIG when larger than
 * max. */
static int read_file(const char *path,
                     size_t max,
                     unsigned char **out,
                     size_t *outlen) {
  FILE *f = fopen(path, "rb");
  unsigned char *data = NULL;
  size_t len = 0, cap = 0;
  int err = 0;

  if (f == NULL)
    return errno;
  for (;;) {
    size_t n;
    if (len == cap) {
      unsigned char *p;
      if (cap >= max) {
        err = EFBIG;
        break;
      }
      cap = cap == 0 ? 4096 : cap * 2;
      p = realloc(data, cap);
      if (p == NULL) {
        err = ENOMEM;
        break;
      }
      data = p;
    }
    n = fread(data + len, 1, cap - len, f);
    len += n;
    if (n == 0) {
      if (ferror(f))
        err = EIO;
      break;
    }
  }
  fclose(f);
  if (err == 0 && len > max)
    err = EFBIG;
  if (err != 0) {
    free(data);
    return err;
  }
  *out = data;
  *outlen = len;
  return 0;
}

static int load_ocsp(sw_tls_cert_t *c,
                     const char *conf_file,
                     const sw_tls_cert_conf_t *cc,
                     char *err,
                     size_t errlen) {
  const unsigned char *p;
  OCSP_RESPONSE *resp;
  int e;

  e = read_file(cc->ocsp, SW_TLS_OCSP_MAX, &c->ocsp, &c->ocsp_len);
  if (e != 0) {
    set_err(err, errlen,
            "%s:%d: certificate %s: cannot read the OCSP response %s: %s",
            conf_file, cc->ocsp_line, cc->cert, cc->ocsp,
            e == EFBIG ? "too large" : strerror(e));
    return SW_ECONFIG;
  }
  /* Only a response that parses is worth stapling: a client that gets a
   * garbled one may refuse the connection. */
  p = c->ocsp;
  resp = c->ocsp_len > 0 && c->ocsp_len <= LONG_MAX
             ? d2i_OCSP_RESPONSE(NULL, &p, (long)c->ocsp_len)
             : NULL;
  if (resp == NULL || p != c->ocsp + c->ocsp_len) {
    OCSP_RESPONSE_free(resp);
    ERR_clear_error();
    set_err(err, errlen, "%s:%d: certificate %s: %s is not a DER OCSP response",
            conf_file, cc->ocsp_line, cc->cert, cc->ocsp);
    return SW_ECONFIG;
  }
  OCSP_RESPONSE_free(resp);
  return 0;
}

/* The leaf's validity against the wall clock: a certificate outside it
 * would be refused by every client, so the deploy is refused instead. */
static int check_dates(X509 *leaf,
                       int64_t now_wall_s,
                       const char *conf_file,
                       const sw_tls_cert_conf_t *cc,
                       char *err,
                       size_t errlen) {
  time_t now = (time_t)now_wall_s;
  const ASN1_TIME *nb = X509_get0_notBefore(leaf);
  const ASN1_TIME *na = X509_get0_notAfter(leaf);
  char date[64];
  int c;

  c = X509_cmp_time(na, &now);
  if (c == 0) {
    set_err(err, errlen, "%s:%d: certificate %s: its notAfter date is invalid",
            conf_file, cc->line, cc->cert);
    return SW_ECONFIG;
  }
  if (c < 0) {
    format_time(na, date, sizeof(date));
    set_err(err, errlen, "%s:%d: certificate %s: expired on %s", conf_file,
            cc->line, cc->cert, date);
    return SW_ECONFIG;
  }
  c = X509_cmp_time(nb, &now);
  if (c == 0) {
    set_err(err, errlen, "%s:%d: certificate %s: its notBefore date is invalid",
            conf_file, cc->line, cc->cert);
    return SW_ECONFIG;
  }
  if (c > 0) {
    format_time(nb, date, sizeof(date));
    set_err(err, errlen, "%s:%d: certificate %s: not valid before %s",
            conf_file, cc->line, cc->cert, date);
    return SW_ECONFIG;
  }
  return 0;
}

/* The certificate chain and its key, checked the way a careless deploy
 * gets them wrong. */
static int load_cert(sw_tls_cert_t *c,
                     const char *conf_file,
                     const sw_tls_cert_conf_t *cc,
                     int64_t now_wall_s,
                     char *err,
                     size_t errlen) {
  char why[128];
  FILE *f;
  EVP_PKEY *pkey;
  X509 *leaf;
  int e;

  /* fopen first: "No such file or directory" says more than OpenSSL's
   * "system lib". */
  f = fopen(cc->cert, "r");
  if (f == NULL) {
    set_err(err, errlen, "%s:%d: certificate %s: cannot read it: %s", conf_file,
            cc->line, cc->cert, strerror(errno));
    return SW_ECONFIG;
  }
  fclose(f);
  ERR_clear_error();
  if (SSL_CTX_use_certificate_chain_file(c->ssl_ctx, cc->cert) != 1) {
    ssl_reason(why, sizeof(why));
    ERR_clear_error();
    set_err(err, errlen,
            "%s:%d: certificate %s: not a PEM certificate chain (%s)",
            conf_file, cc->line, cc->cert, why);
    return SW_ECONFIG;
  }
  leaf = SSL_CTX_get0_certificate(c->ssl_ctx);
  if (leaf == NULL) {
    set_err(err, errlen, "%s:%d: certificate %s: no certificate in it",
            conf_file, cc->line, cc->cert);
    return SW_ECONFIG;
  }

  f = fopen(cc->key, "r");
  if (f == NULL) {
    set_err(err, errlen, "%s:%d: certificate %s: cannot read the key %s: %s",
            conf_file, cc->line, cc->cert, cc->key, strerror(errno));
    return SW_ECONFIG;
  }
  pkey = PEM_read_PrivateKey(f, NULL, on_passphrase, NULL);
  fclose(f);
  if (pkey == NULL) {
    ssl_reason(why, sizeof(why));
    ERR_clear_error();
    set_err(err, errlen,
            "%s:%d: certificate %s: the key %s is not an unencrypted PEM "
            "private key (%s)",
            conf_file, cc->line, cc->cert, cc->key, why);
    return SW_ECONFIG;
  }
  /* Checked before SSL_CTX_use_PrivateKey, which would either say "key
   * values mismatch" or, for a key of another type, store it beside the
   * certificate without a word. */
  if (X509_check_private_key(leaf, pkey) != 1 ||
      SSL_CTX_use_PrivateKey(c->ssl_ctx, pkey) != 1 ||
      SSL_CTX_check_private_key(c->ssl_ctx) != 1) {
    EVP_PKEY_free(pkey);
    ERR_clear_error();
    set_err(err, errlen, "%s:%d: certificate %s: the key %s does not match it",
            conf_file, cc->line, cc->cert, cc->key);
    return SW_ECONFIG;
  }
  EVP_PKEY_free(pkey);

  e = check_dates(leaf, now_wall_s, conf_file, cc, err, errlen);
  if (e != 0)
    return e;
  e = collect_names(c, leaf);
  if (e != 0) {
    set_err(err, errlen, "%s:%d: certificate %s: out of memory", conf_file,
            cc->line, cc->cert);
    return SW_ECONFIG;
  }
  if (cc->ocsp != NULL)
    return load_ocsp(c, conf_file, cc, err, errlen);
  return 0;
}

/* --- OpenSSL callbacks ------------------------------------------------- */

static int name_matches(const char *pattern, const char *sni, int wildcard) {
  const char *dot;
  if (!wildcard)
    return strcasecmp(pattern, sni) == 0;
  /* "*.example.com" stands for exactly one non-empty label. */
  if (pattern[0] != '*' || pattern[1] != '.')
    return 0;
  dot = strchr(sni, '.');
  return dot != NULL && dot != sni && strcasecmp(dot, pattern + 1) == 0;
}

/* The certificate for an SNI name: an exact name wins over a wildcard
 * whatever the order of the certificates, and no match is the first. */
static size_t pick_cert(const sw_tls_ctx_t *ctx, const char *sni) {
  if (sni == NULL || sni[0] == '\0')
    return 0;
  for (int wildcard = 0; wildcard <= 1; wildcard++)
    for (size_t i = 0; i < ctx->ncerts; i++)
      for (size_t j = 0; j < ctx->certs[i].nnames; j++)
        if (name_matches(ctx->certs[i].names[j], sni, wildcard))
          return i;
  return 0;
}

static int on_servername(SSL *ssl, int *alert, void *arg) {
  sw_tls_ctx_t *ctx = arg;
  const char *sni = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
  SSL_CTX *want = ctx->certs[pick_cert(ctx, sni)].ssl_ctx;

  if (SSL_get_SSL_CTX(ssl) != want && SSL_set_SSL_CTX(ssl, want) != want) {
    *alert = SSL_AD_INTERNAL_ERROR;
    return SSL_TLSEXT_ERR_ALERT_FATAL;
  }
  return SSL_TLSEXT_ERR_OK;
}

/* http/1.1 when the client offers it; otherwise no ALPN at all, so that a
 * client offering only h2 still gets a connection (and may speak
 * HTTP/1.1 anyway) instead of a no_application_protocol alert. */
static int on_alpn(SSL *ssl,
                   const unsigned char **out,
                   unsigned char *outlen,
                   const unsigned char *in,
                   unsigned int inlen,
                   void *arg) {
  unsigned int i = 0;
  while (i < inlen) {
    unsigned int n = in[i];
    if (n > inlen - i - 1)
      break;
    if (n == SW_TLS_H11_LEN && memcmp(in + i + 1, sw_tls_h11, n) == 0) {
      *out = sw_tls_h11;
      *outlen = SW_TLS_H11_LEN;
      return SSL_TLSEXT_ERR_OK;
    }
    i += 1 + n;
  }
  return SSL_TLSEXT_ERR_NOACK;
}

/* Staples the certificate's OCSP response; OpenSSL only calls this when
 * the client asked for one. It takes ownership of the copy. */
static int on_status(SSL *ssl, void *arg) {
  const sw_tls_cert_t *c = arg;
  unsigned char *copy;

  if (c->ocsp == NULL ||
      SSL_get_tlsext_status_type(ssl) != TLSEXT_STATUSTYPE_ocsp)
    return SSL_TLSEXT_ERR_NOACK;
  copy = OPENSSL_memdup(c->ocsp, c->ocsp_len);
  if (copy == NULL)
    return SSL_TLSEXT_ERR_NOACK;
  if (SSL_set_tlsext_status_ocsp_resp(ssl, copy, (long)c->ocsp_len) != 1) {
    OPENSSL_free(copy);
    return SSL_TLSEXT_ERR_NOACK;
  }
  return SSL_TLSEXT_ERR_OK;
}

static int ticket_key_init(const sw_tls_ticket_key_t *k,
                           unsigned char *iv,
                           EVP_CIPHER_CTX *cctx,
                           EVP_MAC_CTX *hctx,
                           int enc) {
  static char digest[] = "SHA256";
  OSSL_PARAM params[3];

  params[0] = OSSL_PARAM_construct_octet_string(
      OSSL_MAC_PARAM_KEY, (void *)k->hmac, sizeof(k->hmac));
  params[1] =
      OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0);
  params[2] = OSSL_PARAM_construct_end();
  if (EVP_MAC_CTX_set_params(hctx, params) != 1)
    return -1;
  if (enc)
    return EVP_EncryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, k->aes, iv) == 1
               ? 0
               : -1;
  return EVP_DecryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, k->aes, iv) == 1
             ? 0
             : -1;
}

/* Session tickets under switchd's keys, shared by every SSL_CTX of the
 * context. A ticket under the previous key is accepted and renewed (2), so
 * a rotation costs no client its resumption; an unknown name means a full
 * handshake (0), never a failure. In TLS 1.3 every resumption is renewed,
 * as OpenSSL does with its own keys: clients use a TLS 1.3 ticket once
 * (RFC 8446, C.4), and without a new one their next connection would be a
 * full handshake. */
static int on_ticket_key(SSL *ssl,
                         unsigned char key_name[16],
                         unsigned char *iv,
                         EVP_CIPHER_CTX *cctx,
                         EVP_MAC_CTX *hctx,
                         int enc) {
  const sw_tls_ctx_t *ctx = SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
  const sw_tls_ticket_key_t *k;

  if (ctx == NULL)
    return -1;
  if (enc) {
    k = &ctx->keys[0];
    if (RAND_bytes(iv, EVP_CIPHER_get_iv_length(EVP_aes_256_cbc())) != 1)
      return -1;
    memcpy(key_name, k->name, sizeof(k->name));
    return ticket_key_init(k, iv, cctx, hctx, 1) == 0 ? 1 : -1;
  }
  if (memcmp(key_name, ctx->keys[0].name, sizeof(ctx->keys[0].name)) == 0) {
    if (ticket_key_init(&ctx->keys[0], iv, cctx, hctx, 0) != 0)
      return -1;
    return SSL_version(ssl) >= TLS1_3_VERSION ? 2 : 1;
  }
  if (ctx->has_previous &&
      memcmp(key_name, ctx->keys[1].name, sizeof(ctx->keys[1].name)) == 0)
    return ticket_key_init(&ctx->keys[1], iv, cctx, hctx, 0) == 0 ? 2 : -1;
  return 0;
}

static int new_ticket_key(sw_tls_ticket_key_t *k) {
  if (RAND_bytes(k->name, sizeof(k->name)) != 1 ||
      RAND_bytes(k->aes, sizeof(k->aes)) != 1 ||
      RAND_bytes(k->hmac, sizeof(k->hmac)) != 1) {
    ERR_clear_error();
    return -1;
  }
  return 0;
}

/* --- contexts ---------------------------------------------------------- */

/* What every SSL_CTX of a context has in common: the same protocol
 * settings, callbacks, session settings and ticket keys, so that a
 * connection that SNI moved to another certificate behaves the same and
 * its session resumes whichever certificate it is shown next time. */
static int configure(sw_tls_ctx_t *ctx,
                     sw_tls_cert_t *c,
                     const char *conf_file,
                     const sw_tls_conf_t *conf,
                     char *err,
                     size_t errlen) {
  SSL_CTX *s = c->ssl_ctx;
  char why[128];
  long secs;
  uint64_t opts = SSL_OP_NO_RENEGOTIATION;

  if (!conf->tickets)
    opts |= SSL_OP_NO_TICKET;
  SSL_CTX_set_options(s, opts);
  SSL_CTX_set_mode(s, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_RELEASE_BUFFERS);
  SSL_CTX_set_default_passwd_cb(s, on_passphrase);
  SSL_CTX_set_app_data(s, ctx);

  if (SSL_CTX_set_min_proto_version(
          s, conf->min_version == 13 ? TLS1_3_VERSION : TLS1_2_VERSION) != 1) {
    ERR_clear_error();
    set_err(err, errlen, "%s:%d: cannot set the minimum TLS version", conf_file,
            conf->line);
    return SW_ECONFIG;
  }
  if (conf->ciphers != NULL && SSL_CTX_set_cipher_list(s, conf->ciphers) != 1) {
    ssl_reason(why, sizeof(why));
    ERR_clear_error();
    set_err(err, errlen, "%s:%d: tls_ciphers \"%s\": %s", conf_file, conf->line,
            conf->ciphers, why);
    return SW_ECONFIG;
  }
  if (conf->ciphersuites != NULL &&
      SSL_CTX_set_ciphersuites(s, conf->ciphersuites) != 1) {
    ssl_reason(why, sizeof(why));
    ERR_clear_error();
    set_err(err, errlen, "%s:%d: tls_ciphersuites \"%s\": %s", conf_file,
            conf->line, conf->ciphersuites, why);
    return SW_ECONFIG;
  }

  if (SSL_CTX_set_session_id_context(s, sw_tls_sid_ctx,
                                     sizeof(sw_tls_sid_ctx) - 1) != 1)
    goto nomem;
  if (conf->session_cache > 0) {
    SSL_CTX_set_session_cache_mode(s, SSL_SESS_CACHE_SERVER);
    SSL_CTX_sess_set_cache_size(s, conf->session_cache > LONG_MAX
                                       ? LONG_MAX
                                       : (long)conf->session_cache);
  } else {
    SSL_CTX_set_session_cache_mode(s, SSL_SESS_CACHE_OFF);
    /* Without tickets, a TLS 1.3 ticket would only name a cache entry that
     * does not exist: send none. */
    if (!conf->tickets && SSL_CTX_set_num_tickets(s, 0) != 1)
      goto nomem;
  }
  secs = (long)((conf->session_timeout_ms + 999) / 1000);
  SSL_CTX_set_timeout(s, secs > 0 ? secs : 1);
  if (conf->tickets &&
      SSL_CTX_set_tlsext_ticket_key_evp_cb(s, on_ticket_key) != 1)
    goto nomem;

  SSL_CTX_set_tlsext_servername_callback(s, on_servername);
  SSL_CTX_set_tlsext_servername_arg(s, ctx);
  SSL_CTX_set_alpn_select_cb(s, on_alpn, NULL);
  if (c->ocsp != NULL) {
    SSL_CTX_set_tlsext_status_cb(s, on_status);
    SSL_CTX_set_tlsext_status_arg(s, c);
  }
  return 0;

nomem:
  ERR_clear_error();
  set_err(err, errlen, "%s:%d: cannot set up TLS: out of memory", conf_file,
          conf->line);
  return SW_ECONFIG;
}

static void ctx_free(sw_tls_ctx_t *ctx) {
  for (size_t i = 0; i < SW_TLS_SESSIONS_MAX; i++) {
    SSL_SESSION_free(ctx->sessions[i].sess);
    free(ctx->sessions[i].peer);
  }
  for (size_t i = 0; i < ctx->ncerts; i++) {
    sw_tls_cert_t *c = &ctx->certs[i];
    SSL_CTX_free(c->ssl_ctx);
    for (size_t j = 0; j < c->nnames; j++)
      free(c->names[j]);
    free(c->names);
    free(c->ocsp);
  }
  OPENSSL_cleanse(ctx->keys, sizeof(ctx->keys));
  free(ctx);
}

int sw_tls_ctx_new(const char *conf_file,
                   const sw_tls_conf_t *conf,
                   int64_t now_wall_s,
                   sw_tls_ctx_t **out,
                   char *err,
                   size_t errlen) {
  sw_tls_ctx_t *ctx;
  int e = 0;

  *out = NULL;
  if (conf_file == NULL)
    conf_file = "(config)";
  if (conf->ncerts == 0 || conf->ncerts > SW_TLS_CERTS_MAX) {
    set_err(err, errlen,
            "%s:%d: a TLS listen section needs 1 to %d "
            "certificates",
            conf_file, conf->line, SW_TLS_CERTS_MAX);
    return SW_ECONFIG;
  }
  ctx = calloc(1, sizeof(*ctx));
  if (ctx == NULL) {
    set_err(err, errlen, "%s:%d: out of memory", conf_file, conf->line);
    return SW_ECONFIG;
  }
  ctx->refs = 1;
  ctx->rotate_ms = conf->ticket_rotate_ms;
  ctx->handshake_ms = conf->handshake_timeout_ms;
  ERR_clear_error();
  if (new_ticket_key(&ctx->keys[0]) != 0) {
    free(ctx);
    set_err(err, errlen, "%s:%d: cannot make a session ticket key", conf_file,
            conf->line);
    return SW_ECONFIG;
  }

  for (size_t i = 0; i < conf->ncerts && e == 0; i++) {
    sw_tls_cert_t *c = &ctx->certs[i];
    const sw_tls_cert_conf_t *cc = &conf->certs[i];

    c->ssl_ctx = SSL_CTX_new(TLS_server_method());
    if (c->ssl_ctx == NULL) {
      ERR_clear_error();
      set_err(err, errlen, "%s:%d: certificate %s: cannot create an SSL_CTX",
              conf_file, cc->line, cc->cert);
      e = SW_ECONFIG;
      break;
    }
    ctx->ncerts++;
    e = load_cert(c, conf_file, cc, now_wall_s, err, errlen);
    if (e == 0)
      e = configure(ctx, c, conf_file, conf, err, errlen);
  }
  ERR_clear_error();
  if (e != 0) {
    ctx_free(ctx);
    return e;
  }
  *out = ctx;
  return 0;
}

/* --- client contexts ---------------------------------------------------- */

static sw_tls_session_t *session_find(sw_tls_ctx_t *ctx, const char *peer) {
  for (size_t i = 0; i < SW_TLS_SESSIONS_MAX; i++)
    if (ctx->sessions[i].peer != NULL &&
        strcmp(ctx->sessions[i].peer, peer) == 0)
      return &ctx->sessions[i];
  return NULL;
}

/* Keeps `sess` (whose reference the caller hands over) as the one to offer
 * the next time we connect to `peer`. 0, or -1 when out of memory (the
 * reference is then the caller's still). */
static int session_store(sw_tls_ctx_t *ctx,
                         const char *peer,
                         SSL_SESSION *sess) {
  sw_tls_session_t *e = session_find(ctx, peer);

  if (e == NULL) {
    char *copy = strdup(peer);
    if (copy == NULL)
      return -1;
    /* A free slot, else the oldest: a server we have not talked to for a
     * while is the one that loses its resumption. */
    e = &ctx->sessions[0];
    for (size_t i = 0; i < SW_TLS_SESSIONS_MAX && e->peer != NULL; i++)
      if (ctx->sessions[i].peer == NULL || ctx->sessions[i].stored < e->stored)
        e = &ctx->sessions[i];
    free(e->peer);
    e->peer = copy;
  }
  SSL_SESSION_free(e->sess);
  e->sess = sess;
  e->stored = ++ctx->session_seq;
  return 0;
}

/* A server gave us a session (TLS 1.2: at the end of the handshake; TLS
 * 1.3: in each NewSessionTicket after it): the latest replaces the one kept
 * for this server. Returning 1 keeps OpenSSL's reference. */
static int on_new_session(SSL *ssl, SSL_SESSION *sess) {
  sw_tls_t *t = SSL_get_app_data(ssl);

  if (t == NULL || t->peer == NULL || !SSL_SESSION_is_resumable(sess))
    return 0;
  return session_store(t->ctx, t->peer, sess) == 0 ? 1 : 0;
}

static int has_certificate(X509_STORE *store) {
  int n = sk_X509_OBJECT_num(X509_STORE_get0_objects(store));
  for (int i = 0; i < n; i++) {
    X509_OBJECT *o = sk_X509_OBJECT_value(X509_STORE_get0_objects(store), i);
    if (X509_OBJECT_get_type(o) == X509_LU_X509)
      return 1;
  }
  return 0;
}

/* The CA file, read the way a careless deploy gets it wrong: missing,
 * unreadable, empty or not PEM. */
static int load_ca(SSL_CTX *s,
                   const char *conf_file,
                   int line,
                   const char *ca_file,
                   char *err,
                   size_t errlen) {
  unsigned long code;
  char why[128];
  FILE *f;
  int c, e;

  /* A byte read first: "No such file or directory", "Is a directory" or
   * "empty" say more than OpenSSL's "system lib". */
  f = fopen(ca_file, "r");
  if (f == NULL) {
    set_err(err, errlen, "%s:%d: tls_ca %s: cannot read it: %s", conf_file,
            line, ca_file, strerror(errno));
    return SW_ECONFIG;
  }
  errno = 0;
  c = getc(f);
  e = ferror(f) ? errno : 0;
  fclose(f);
  if (c == EOF) {
    if (e != 0)
      set_err(err, errlen, "%s:%d: tls_ca %s: cannot read it: %s", conf_file,
              line, ca_file, strerror(e));
    else
      set_err(err, errlen, "%s:%d: tls_ca %s: the file is empty", conf_file,
              line, ca_file);
    return SW_ECONFIG;
  }
  ERR_clear_error();
  if (SSL_CTX_load_verify_locations(s, ca_file, NULL) != 1) {
    code = ERR_peek_error();
    ssl_reason(why, sizeof(why));
    ERR_clear_error();
    if (ERR_GET_LIB(code) == ERR_LIB_X509 &&
        ERR_GET_REASON(code) == X509_R_NO_CERTIFICATE_OR_CRL_FOUND)
      set_err(err, errlen, "%s:%d: tls_ca %s: no PEM certificate in it",
              conf_file, line, ca_file);
    else
      set_err(err, errlen,
              "%s:%d: tls_ca %s: not a PEM file of certificates (%s)",
              conf_file, line, ca_file, why);
    return SW_ECONFIG;
  }
  /* A file that loaded nothing but CRLs would make every server fail
   * verification. */
  if (!has_certificate(SSL_CTX_get_cert_store(s))) {
    set_err(err, errlen, "%s:%d: tls_ca %s: no PEM certificate in it",
            conf_file, line, ca_file);
    return SW_ECONFIG;
  }
  return 0;
}

int sw_tls_client_ctx_new(const char *conf_file,
                          int line,
                          const char *ca_file,
                          int verify,
                          sw_tls_ctx_t **out,
                          char *err,
                          size_t errlen) {
  sw_tls_ctx_t *ctx;
  SSL_CTX *s;
  int e = 0;

  *out = NULL;
  if (conf_file == NULL)
    conf_file = "(config)";
  ctx = calloc(1, sizeof(*ctx));
  if (ctx == NULL) {
    set_err(err, errlen, "%s:%d: out of memory", conf_file, line);
    return SW_ECONFIG;
  }
  ctx->refs = 1;
  ctx->client = 1;
  ctx->verify = verify != 0;
  /* tls_handshake_timeout is a listener's: an upstream connection has its
   * own connect and I/O timeouts, so this one never expires. */
  ctx->handshake_ms = UINT64_MAX;
  ERR_clear_error();
  s = SSL_CTX_new(TLS_client_method());
  if (s == NULL) {
    ERR_clear_error();
    free(ctx);
    set_err(err, errlen, "%s:%d: cannot create an SSL_CTX", conf_file, line);
    return SW_ECONFIG;
  }
  ctx->certs[0].ssl_ctx = s;
  ctx->ncerts = 1;

  SSL_CTX_set_options(s, SSL_OP_NO_RENEGOTIATION);
  SSL_CTX_set_mode(s, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_RELEASE_BUFFERS);
  SSL_CTX_set_default_passwd_cb(s, on_passphrase);
  SSL_CTX_set_app_data(s, ctx);
  SSL_CTX_set_verify(s, verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, NULL);
  if (SSL_CTX_set_min_proto_version(s, TLS1_2_VERSION) != 1) {
    set_err(err, errlen, "%s:%d: cannot set the minimum TLS version", conf_file,
            line);
    e = SW_ECONFIG;
  }
  /* Our own store of sessions, keyed by server: OpenSSL's internal cache
   * is keyed by session id, which a client cannot look up by server. */
  if (e == 0) {
    SSL_CTX_set_session_cache_mode(
        s, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(s, on_new_session);
    /* Inverted: 0 is success. */
    if (SSL_CTX_set_alpn_protos(s, sw_tls_h11_offer,
                                sizeof(sw_tls_h11_offer) - 1) != 0) {
      set_err(err, errlen, "%s:%d: cannot set up TLS: out of memory", conf_file,
              line);
      e = SW_ECONFIG;
    }
  }
  if (e == 0 && ca_file != NULL)
    e = load_ca(s, conf_file, line, ca_file, err, errlen);
  else if (e == 0 && verify && SSL_CTX_set_default_verify_paths(s) != 1) {
    set_err(err, errlen,
            "%s:%d: tls_ca (the system's): cannot load the default CA paths",
            conf_file, line);
    e = SW_ECONFIG;
  }
  ERR_clear_error();
  if (e != 0) {
    ctx_free(ctx);
    return e;
  }
  *out = ctx;
  return 0;
}

void sw_tls_ctx_ref(sw_tls_ctx_t *ctx) {
  ctx->refs++;
}

void sw_tls_ctx_unref(sw_tls_ctx_t *ctx) {
  if (ctx == NULL)
    return;
  if (--ctx->refs == 0)
    ctx_free(ctx);
}

void sw_tls_ctx_rotate_tickets(sw_tls_ctx_t *ctx) {
  sw_tls_ticket_key_t k;

  /* When the random generator fails, the current key stays: an old key is
   * better than a predictable one. */
  if (new_ticket_key(&k) != 0)
    return;
  ctx->keys[1] = ctx->keys[0];
  ctx->keys[0] = k;
  ctx->has_previous = 1;
  OPENSSL_cleanse(&k, sizeof(k));
}

void sw_tls_set_accepted(sw_tls_t *t, uint64_t now_ms) {
  t->accepted_at = now_ms;
}

int sw_tls_handshake_expired(const sw_tls_t *t, uint64_t now_ms) {
  return now_ms - t->accepted_at >= t->ctx->handshake_ms;
}

void sw_tls_ctx_inherit_tickets(sw_tls_ctx_t *ctx, const sw_tls_ctx_t *old) {
  if (ctx == old || old->client || ctx->client)
    return;
  ctx->keys[0] = old->keys[0];
  ctx->keys[1] = old->keys[1];
  ctx->has_previous = old->has_previous;
  ctx->rotated_at = old->rotated_at;
}

void sw_tls_ctx_tick(sw_tls_ctx_t *ctx, uint64_t now_ms) {
  if (ctx->rotated_at == 0) {
    ctx->rotated_at = now_ms;
    return;
  }
  if (ctx->rotate_ms > 0 && now_ms - ctx->rotated_at >= ctx->rotate_ms) {
    sw_tls_ctx_rotate_tickets(ctx);
    ctx->rotated_at = now_ms;
  }
}

/* --- connections ------------------------------------------------------- */

/* What both sides have in common: an SSL over two memory BIOs, holding a
 * reference to ctx. */
static sw_tls_t *conn_new(sw_tls_ctx_t *ctx) {
  sw_tls_t *t = calloc(1, sizeof(*t));

  if (t == NULL)
    return NULL;
  ERR_clear_error();
  t->ssl = SSL_new(ctx->certs[0].ssl_ctx);
  t->rbio = BIO_new(BIO_s_mem());
  t->wbio = BIO_new(BIO_s_mem());
  if (t->ssl == NULL || t->rbio == NULL || t->wbio == NULL) {
    BIO_free(t->rbio);
    BIO_free(t->wbio);
    SSL_free(t->ssl);
    free(t);
    ERR_clear_error();
    return NULL;
  }
  /* An empty input BIO means "more to come", never end of file. */
  BIO_set_mem_eof_return(t->rbio, -1);
  BIO_set_mem_eof_return(t->wbio, -1);
  SSL_set_bio(t->ssl, t->rbio, t->wbio);
  SSL_set_app_data(t->ssl, t);
  t->ctx = ctx;
  sw_tls_ctx_ref(ctx);
  return t;
}

sw_tls_t *sw_tls_new(sw_tls_ctx_t *ctx) {
  sw_tls_t *t;

  if (ctx->client)
    return NULL;
  t = conn_new(ctx);
  if (t != NULL)
    SSL_set_accept_state(t->ssl);
  return t;
}

/* The server's identity the certificate must prove, and the session kept
 * for that identity, if any. 0, or -1 (a name too long for SNI, an address
 * that does not parse, no memory). */
static int client_setup(sw_tls_t *t, const char *name, const char *ip) {
  sw_tls_session_t *e;
  const char *id;
  char kind;
  size_t len;

  if (name != NULL) {
    /* Partial wildcards ("a*.example.com") are a relic no CA issues now. */
    SSL_set_hostflags(t->ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    if (SSL_set_tlsext_host_name(t->ssl, name) != 1 ||
        SSL_set1_host(t->ssl, name) != 1)
      return -1;
  } else if (ip != NULL) {
    if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(t->ssl), ip) != 1)
      return -1;
  }
  /* The table's key: the kind of identity, then the identity. */
  id = name != NULL ? name : ip != NULL ? ip : "";
  kind = name != NULL ? 'h' : ip != NULL ? 'i' : '-';
  len = strlen(id) + 3;
  t->peer = malloc(len);
  if (t->peer == NULL)
    return -1;
  snprintf(t->peer, len, "%c:%s", kind, id);

  /* A session the server would not take back any more (or that a failed
   * connection spoiled) is only a wasted offer: forget it. */
  e = session_find(t->ctx, t->peer);
  if (e != NULL && !SSL_SESSION_is_resumable(e->sess)) {
    SSL_SESSION_free(e->sess);
    free(e->peer);
    memset(e, 0, sizeof(*e));
    e = NULL;
  }
  if (e != NULL && SSL_set_session(t->ssl, e->sess) != 1)
    return -1;
  return 0;
}

sw_tls_t *sw_tls_new_client(sw_tls_ctx_t *ctx,
                            const char *name,
                            const char *ip) {
  sw_tls_t *t;

  if (!ctx->client)
    return NULL;
  t = conn_new(ctx);
  if (t == NULL)
    return NULL;
  t->client = 1;
  SSL_set_connect_state(t->ssl);
  if (client_setup(t, name, ip) != 0) {
    ERR_clear_error();
    sw_tls_free(t);
    return NULL;
  }
  return t;
}

void sw_tls_free(sw_tls_t *t) {
  if (t == NULL)
    return;
  /* SSL_free drops the session from the cache (and, on the client side,
   * marks it not resumable) unless a shutdown was recorded, and most peers
   * just close the socket: a connection that completed its handshake and
   * never failed keeps its session resumable. (A fatal error has already
   * removed it.) */
  if (t->done && t->fatal == 0)
    SSL_set_shutdown(t->ssl, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
  SSL_free(t->ssl);
  sw_tls_ctx_unref(t->ctx);
  free(t->peer);
  free(t);
}

int sw_tls_feed(sw_tls_t *t, const char *data, size_t len) {
  if (t->headlen < sizeof(t->head)) {
    size_t n = sizeof(t->head) - t->headlen;
    if (n > len)
      n = len;
    memcpy(t->head + t->headlen, data, n);
    t->headlen += n;
  }
  while (len > 0) {
    int n = len > INT_MAX ? INT_MAX : (int)len;
    int w;
    ERR_clear_error();
    w = BIO_write(t->rbio, data, n);
    if (w <= 0) {
      ERR_clear_error();
      return SW_TLS_ENOMEM;
    }
    data += w;
    len -= (size_t)w;
  }
  return 0;
}

/* Whether the client's first bytes read like an HTTP request line: an
 * upper-case token and a space (or the token up to where it was cut). */
static int looks_like_http(const sw_tls_t *t) {
  size_t i = 0;
  while (i < t->headlen && t->head[i] >= 'A' && t->head[i] <= 'Z')
    i++;
  return i >= 3 && (i == t->headlen || t->head[i] == ' ');
}

static int is_version_reason(int reason) {
  return reason == SSL_R_UNSUPPORTED_PROTOCOL ||
         reason == SSL_R_VERSION_TOO_LOW;
}

/* Counts a handshake that failed with `result`: the listeners' counters
 * by reason, the client side's apart. */
static void count_failure(const sw_tls_t *t, int result, int lib, int reason) {
  if (t->done)
    return;
  if (t->client) {
    if (result == SW_TLS_EVERIFY)
      sw_tls_counters.client_failed_verify++;
    else
      sw_tls_counters.client_failed++;
  } else if (result == SW_TLS_EHTTP) {
    sw_tls_counters.failed_http++;
  } else if (lib == ERR_LIB_SSL && is_version_reason(reason)) {
    sw_tls_counters.failed_version++;
  } else {
    sw_tls_counters.failed_protocol++;
  }
}

/* Turns a failed SSL call into our return value, keeps its reason for
 * sw_tls_error, counts a failed handshake and leaves the error queue
 * empty. 0 means "more input needed". */
static int map_error(sw_tls_t *t, int ret) {
  int e = SSL_get_error(t->ssl, ret);
  unsigned long code;
  int reason, lib, result;
  long vr;

  switch (e) {
    case SSL_ERROR_WANT_READ:
    case SSL_ERROR_WANT_WRITE:
      ERR_clear_error();
      return 0;
    case SSL_ERROR_ZERO_RETURN:
      ERR_clear_error();
      snprintf(t->err, sizeof(t->err), "close_notify");
      return SW_TLS_ECLOSED;
    case SSL_ERROR_SSL:
      break;
    default:
      ERR_clear_error();
      snprintf(t->err, sizeof(t->err), "%s",
               e == SSL_ERROR_SYSCALL ? "unexpected end of input"
                                      : "unexpected TLS state");
      t->fatal = SW_TLS_EPROTO;
      count_failure(t, SW_TLS_EPROTO, 0, 0);
      return SW_TLS_EPROTO;
  }

  /* A client whose check of the server's certificate failed: X509's
   * reason says more than the SSL library's "certificate verify failed".
   * Without verification the result is only informative, and a failure
   * is something else. */
  vr = SSL_get_verify_result(t->ssl);
  if (t->client && !t->done && t->ctx->verify && vr != X509_V_OK) {
    ERR_clear_error();
    snprintf(t->err, sizeof(t->err), "certificate verify failed: %s",
             X509_verify_cert_error_string(vr));
    t->fatal = SW_TLS_EVERIFY;
    count_failure(t, SW_TLS_EVERIFY, 0, 0);
    return SW_TLS_EVERIFY;
  }

  code = ERR_peek_error();
  lib = ERR_GET_LIB(code);
  reason = ERR_GET_REASON(code);
  ssl_reason(t->err, sizeof(t->err));
  ERR_clear_error();

  result = SW_TLS_EPROTO;
  if (code != 0 && (reason == ERR_R_MALLOC_FAILURE))
    result = SW_TLS_ENOMEM;
  else if (!t->done && !t->client && lib == ERR_LIB_SSL &&
           (reason == SSL_R_HTTP_REQUEST ||
            reason == SSL_R_HTTPS_PROXY_REQUEST ||
            (reason == SSL_R_WRONG_VERSION_NUMBER && looks_like_http(t))))
    result = SW_TLS_EHTTP;
  t->fatal = result;
  count_failure(t, result, lib, reason);
  return result;
}

ssize_t sw_tls_read(sw_tls_t *t, char *buf, size_t cap) {
  size_t total = 0;
  int r;

  if (t->fatal != 0)
    return t->fatal;
  if (!t->done) {
    ERR_clear_error();
    r = SSL_do_handshake(t->ssl);
    if (r != 1)
      return map_error(t, r);
    t->done = 1;
    if (t->client) {
      sw_tls_counters.client_handshakes++;
      if (SSL_session_reused(t->ssl))
        sw_tls_counters.client_resumed++;
    } else {
      sw_tls_counters.handshakes++;
      if (SSL_session_reused(t->ssl))
        sw_tls_counters.resumed++;
    }
  }
  /* Fill buf from as many records as the input holds: fewer, larger
   * reads for the caller. An error after some bytes waits for the next
   * call (close_notify repeats by itself; the rest is kept in fatal). */
  while (total < cap) {
    size_t n = 0;
    ERR_clear_error();
    r = SSL_read_ex(t->ssl, buf + total, cap - total, &n);
    if (r == 1 && n > 0) {
      total += n;
      continue;
    }
    if (r == 1)
      break;
    r = map_error(t, r);
    if (total > 0 || r == 0)
      break;
    return r;
  }
  if (total > SSIZE_MAX)
    total = SSIZE_MAX;
  return (ssize_t)total;
}

int sw_tls_write(sw_tls_t *t, const char *data, size_t len) {
  if (t->fatal != 0)
    return t->fatal;
  if (!t->done) {
    snprintf(t->err, sizeof(t->err), "write before the handshake is done");
    return SW_TLS_EPROTO;
  }
  while (len > 0) {
    size_t n = 0;
    int r;
    ERR_clear_error();
    r = SSL_write_ex(t->ssl, data, len, &n);
    if (r != 1) {
      r = map_error(t, r);
      /* A memory BIO never fills, so "want" cannot be a way out here. */
      if (r == 0 || r == SW_TLS_ECLOSED) {
        snprintf(t->err, sizeof(t->err), "write failed");
        t->fatal = SW_TLS_EPROTO;
        r = SW_TLS_EPROTO;
      }
      return r;
    }
    data += n;
    len -= n;
  }
  return 0;
}

void sw_tls_shutdown(sw_tls_t *t) {
  if (!t->done || t->fatal != 0)
    return;
  ERR_clear_error();
  (void)SSL_shutdown(t->ssl);
  ERR_clear_error();
}

size_t sw_tls_out_pending(const sw_tls_t *t) {
  return BIO_ctrl_pending(t->wbio);
}

size_t sw_tls_take_out(sw_tls_t *t, char *buf, size_t cap) {
  int n;
  if (cap == 0)
    return 0;
  n = BIO_read(t->wbio, buf, cap > INT_MAX ? INT_MAX : (int)cap);
  return n > 0 ? (size_t)n : 0;
}

int sw_tls_input_pending(const sw_tls_t *t) {
  return SSL_has_pending(t->ssl) || BIO_ctrl_pending(t->rbio) > 0 ||
         (SSL_get_shutdown(t->ssl) & SSL_RECEIVED_SHUTDOWN) != 0;
}

sw_tls_ctx_t *sw_tls_ctx_of(const sw_tls_t *t) {
  return t->ctx;
}

int sw_tls_handshake_done(const sw_tls_t *t) {
  return t->done;
}

const char *sw_tls_version(const sw_tls_t *t) {
  return t->done ? SSL_get_version(t->ssl) : "";
}

const char *sw_tls_cipher(const sw_tls_t *t) {
  const char *c = t->done ? SSL_get_cipher_name(t->ssl) : NULL;
  return c != NULL ? c : "";
}

const char *sw_tls_alpn(const sw_tls_t *t) {
  const unsigned char *p = NULL;
  unsigned int len = 0;
  if (!t->done)
    return "";
  SSL_get0_alpn_selected(t->ssl, &p, &len);
  return len == SW_TLS_H11_LEN && memcmp(p, sw_tls_h11, len) == 0
             ? (const char *)sw_tls_h11
             : "";
}

const char *sw_tls_sni(const sw_tls_t *t) {
  const char *s = SSL_get_servername(t->ssl, TLSEXT_NAMETYPE_host_name);
  return s != NULL ? s : "";
}

int sw_tls_resumed(const sw_tls_t *t) {
  return t->done && SSL_session_reused(t->ssl);
}

const char *sw_tls_error(const sw_tls_t *t) {
  return t->err;
}

const sw_tls_stats_t *sw_tls_stats(void) {
  return &sw_tls_counters;
}
