/* TLS for client connections (issue 5): OpenSSL 3 over memory BIOs, so that
 * the event loop owns every byte of socket I/O and OpenSSL only transforms
 * bytes. This module knows nothing of libuv: the caller feeds it the
 * ciphertext it read, takes back the plaintext, hands it plaintext to send
 * and takes back the ciphertext to write.
 *
 * A context (sw_tls_ctx_t) is what one HTTPS listen section serves: its
 * certificates (the first is the default; the others are chosen by SNI from
 * the DNS names of their subjectAltName, or their CN when they have none),
 * minimum protocol version, cipher lists, ALPN (`http/1.1` only), session
 * cache and session tickets (keys rotated by sw_tls_ctx_rotate_tickets, the
 * previous key still accepted), and per certificate an optional OCSP
 * response to staple. Contexts are reference counted: a connection holds
 * its own, so a reload that builds new contexts leaves open connections
 * with the certificates they started with.
 *
 * Loading checks what a careless deploy gets wrong and says it in one line
 * naming the file: a PEM that does not parse, a key that does not match its
 * certificate, a certificate that has expired or is not valid yet. */
#ifndef SW_TLS_H
#define SW_TLS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "sw_config.h"

typedef struct sw_tls_ctx_s sw_tls_ctx_t;
typedef struct sw_tls_s sw_tls_t;

/* Errors of sw_tls_feed/read/write, below the project's SW_E* codes. */
#define SW_TLS_EPROTO (-30001)  /* a TLS protocol error: close */
#define SW_TLS_EHTTP (-30002)   /* plain HTTP on the TLS port: answer 400 */
#define SW_TLS_ECLOSED (-30003) /* the peer sent close_notify */
#define SW_TLS_ENOMEM (-30004)  /* no memory */
/* Client side: the server's certificate failed verification. */
#define SW_TLS_EVERIFY (-30005)

/* Counters since start, for metrics. */
typedef struct sw_tls_stats_s {
  uint64_t handshakes;      /* completed */
  uint64_t resumed;         /* of which resumed a session */
  uint64_t failed_protocol; /* handshakes that failed (bad hello, alert) */
  uint64_t failed_http;     /* plain HTTP on a TLS port */
  uint64_t failed_version;  /* the client offered only too-old versions */
  /* The client side (TLS to upstreams), apart from the listeners' above. */
  uint64_t client_handshakes;    /* completed */
  uint64_t client_resumed;       /* of which resumed a session */
  uint64_t client_failed_verify; /* the server's certificate was refused */
  uint64_t client_failed;        /* other handshake failures */
} sw_tls_stats_t;

/* Builds a context from one listen section's TLS settings. Returns 0, or
 * SW_ECONFIG with "FILE:LINE: certificate CERT: what is wrong" in err (the
 * line of the offending directive). `now_wall_s` is the wall clock in
 * seconds, for the expiry check. */
int sw_tls_ctx_new(const char *conf_file,
                   const sw_tls_conf_t *conf,
                   int64_t now_wall_s,
                   sw_tls_ctx_t **out,
                   char *err,
                   size_t errlen);
void sw_tls_ctx_ref(sw_tls_ctx_t *ctx);
void sw_tls_ctx_unref(sw_tls_ctx_t *ctx); /* frees at zero */

/* New ticket key now; the previous one still decrypts (so a rotation never
 * costs a resumption that was valid a moment ago). */
void sw_tls_ctx_rotate_tickets(sw_tls_ctx_t *ctx);

/* A reload: ctx takes over old's ticket keys and rotation clock, so that
 * sessions resumable a moment ago still are (the session cache, inside
 * OpenSSL, starts empty). */
void sw_tls_ctx_inherit_tickets(sw_tls_ctx_t *ctx, const sw_tls_ctx_t *old);

/* Rotates the ticket key when the section's tls_ticket_rotate has passed
 * since the last rotation (the first call only starts the clock). The
 * caller calls it with its clock in ms, e.g. at every accept: a context
 * nobody connects to needs no new key. */
void sw_tls_ctx_tick(sw_tls_ctx_t *ctx, uint64_t now_ms);

/* A connection's TLS state, server side, holding a reference to ctx. NULL
 * when out of memory. */
sw_tls_t *sw_tls_new(sw_tls_ctx_t *ctx);
void sw_tls_free(sw_tls_t *t);

/* The handshake timeout of the connection's section: the caller records
 * when it accepted the connection, and asks whether its section's
 * tls_handshake_timeout has passed since. */
void sw_tls_set_accepted(sw_tls_t *t, uint64_t now_ms);
int sw_tls_handshake_expired(const sw_tls_t *t, uint64_t now_ms);

/* Ciphertext read from the socket. 0, or SW_TLS_ENOMEM. */
int sw_tls_feed(sw_tls_t *t, const char *data, size_t len);

/* Runs the handshake as far as the fed bytes allow and reads plaintext into
 * buf. Returns the number of plaintext bytes (> 0), 0 when more input is
 * needed (after the handshake, or during it: check sw_tls_out_pending for
 * bytes to send either way), or a negative SW_TLS_E* error. */
ssize_t sw_tls_read(sw_tls_t *t, char *buf, size_t cap);

/* Encrypts plaintext into the output. Only after the handshake is done.
 * 0 or a negative SW_TLS_E* error. */
int sw_tls_write(sw_tls_t *t, const char *data, size_t len);

/* Queues a close_notify alert in the output. */
void sw_tls_shutdown(sw_tls_t *t);

/* Ciphertext waiting to go to the socket, and taking it: copies up to cap
 * bytes into buf and returns how many. */
size_t sw_tls_out_pending(const sw_tls_t *t);
size_t sw_tls_take_out(sw_tls_t *t, char *buf, size_t cap);

int sw_tls_handshake_done(const sw_tls_t *t);
/* The context the connection was made with. */
sw_tls_ctx_t *sw_tls_ctx_of(const sw_tls_t *t);
/* Whether input is held that no sw_tls_read has returned yet (a record
 * read but not yet returned, ciphertext fed but not processed) or the
 * peer sent close_notify: a connection in that state must not be reused
 * for another exchange. */
int sw_tls_input_pending(const sw_tls_t *t);
/* After the handshake: the negotiated protocol ("TLSv1.3"), cipher, ALPN
 * ("http/1.1" or ""), SNI name ("" when none), whether resumed. */
const char *sw_tls_version(const sw_tls_t *t);
const char *sw_tls_cipher(const sw_tls_t *t);
const char *sw_tls_alpn(const sw_tls_t *t);
const char *sw_tls_sni(const sw_tls_t *t);
int sw_tls_resumed(const sw_tls_t *t);

/* Why the last call failed, one line ("wrong version number", "http
 * request", ...), for the log. */
const char *sw_tls_error(const sw_tls_t *t);

/* --- Client side: TLS to upstream servers -------------------------------
 *
 * A client context verifies servers against ca_file (PEM; NULL: OpenSSL's
 * default paths, the system store) unless verify is 0, with TLS 1.2 as the
 * minimum and ALPN http/1.1 offered. Returns 0 or SW_ECONFIG with
 * "FILE:LINE: tls_ca FILE: why" in err (line: the upstream's tls line). */
int sw_tls_client_ctx_new(const char *conf_file,
                          int line,
                          const char *ca_file,
                          int verify,
                          sw_tls_ctx_t **out,
                          char *err,
                          size_t errlen);

/* A connection to a server: `name`, when not NULL, is sent as SNI and is
 * the host name the certificate must carry; else `ip` (text form) is the
 * address it must carry as an IP SAN. The first sw_tls_read (with nothing
 * fed) produces the ClientHello in the output. A verification failure is
 * SW_TLS_EVERIFY from sw_tls_read, with X509's reason in sw_tls_error
 * ("certificate verify failed: self-signed certificate", "hostname
 * mismatch", ...). Sessions are resumed per context and name when the
 * server allows it. */
sw_tls_t *sw_tls_new_client(sw_tls_ctx_t *ctx,
                            const char *name,
                            const char *ip);

/* The process-wide counters. */
const sw_tls_stats_t *sw_tls_stats(void);

#endif
