/* Active health checks of upstream servers (see sw_health.h for the
 * contract). This module owns, per checker, one timer and the connection of
 * the probe in flight. It must never touch the proxy's globals, pools or
 * logs: results go to the owner's callback, which decides what they mean.
 *
 * One uv_timer_t serves both purposes: while idle it is armed for the next
 * probe, while probing for the probe's timeout. A probe is a separate
 * allocation with its own uv_tcp_t, so the next probe can start while the
 * previous connection is still closing; the checker counts its handles
 * that are not yet closed and frees itself, after stop, in the last close
 * callback.
 *
 * Over TLS (params.tls set) a probe also owns an sw_tls_t, created once the
 * TCP connection is up and freed with the probe. sw_tls only transforms
 * bytes: every ciphertext byte read is fed to it, every call into it is
 * followed by a flush of what it wants sent, and the request goes out
 * through it once the handshake is done. The plaintext it returns takes the
 * same path as a plain connection's bytes, so the response is judged the
 * same way; the probe's timer covers the handshake like the rest. */
#include "sw_health.h"

#include <inttypes.h>
#include <llhttp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sw_buf.h"
#include "sw_http.h"
#include "sw_list.h"
#include "sw_tls.h"

typedef struct sw_health_probe_s {
  uv_tcp_t tcp;
  uv_connect_t connect;
  uv_write_t write;
  llhttp_t parser;
  sw_headscan_t scan;
  sw_health_t *h;
  sw_tls_t *tls; /* over TLS, from the connect on; else NULL */
  uint8_t sent;  /* over TLS: the request has been handed to tls */
  uint64_t seq;
  uint64_t started_ms;
  uint64_t received; /* response bytes read */
  sw_buf_t body;     /* kept only when a substring is configured */
  size_t body_len;   /* body bytes seen, up to SW_HEALTH_BODY_MAX */
  int status;
  uint8_t done;      /* concluded: later callbacks do nothing */
  uint8_t head_done; /* the final (not 1xx) response head is complete */
  uint8_t skip_1xx;  /* the message being parsed is an interim 1xx */
  uint8_t after_1xx; /* a 1xx just ended: rescan the next head */
  uint8_t complete;  /* enough is known for a verdict */
  uint8_t truncated; /* the body went past SW_HEALTH_BODY_MAX */
} sw_health_probe_t;

static llhttp_settings_t settings;
static int settings_ready;

/* Every read callback consumes its bytes before returning, and the loop is
 * single-threaded, so one buffer serves every probe; over TLS a second one
 * holds the plaintext while the first still holds the ciphertext. */
static char read_buf[16 * 1024];
static char plain_buf[16 * 1024];

/* Ciphertext queued on the socket: the request owns its bytes and frees
 * them in its callback, whatever the status. */
typedef struct sw_health_out_s {
  uv_write_t req;
  sw_health_probe_t *p;
  char data[];
} sw_health_out_t;

static void on_timer(uv_timer_t *t);
static void settings_init(void);

/* --- parameters ---------------------------------------------------------- */

void sw_health_params_default(sw_health_params_t *p) {
  memset(p, 0, sizeof(*p));
  p->path = "/health/detailed/";
  p->host = NULL;
  p->status_min = 200;
  p->status_max = 299;
  p->body = NULL;
  p->interval_ms = 2000;
  p->timeout_ms = 1000;
  p->rise = 3;
  p->fall = 3;
}

/* Whether s is a string we can put on a request line or in a header:
 * printable ASCII only (no spaces when `spaces` is 0), so nothing a config
 * holds can split the request or smuggle a header into it. */
static int printable(const char *s, size_t max, int spaces) {
  size_t n = 0;
  for (; *s != '\0'; s++, n++) {
    unsigned char ch = (unsigned char)*s;
    if (ch <= 0x20 || ch >= 0x7f) {
      if (!(ch == ' ' && spaces))
        return 0;
    }
  }
  return n > 0 && n <= max;
}

static int params_valid(const sw_health_params_t *p) {
  if (p->path == NULL || p->path[0] != '/' ||
      !printable(p->path, SW_HEALTH_PATH_MAX, 0))
    return 0;
  if (p->host != NULL && !printable(p->host, SW_HEALTH_HOST_MAX, 0))
    return 0;
  /* The body is matched, never sent: any bytes but NUL are allowed. */
  if (p->body != NULL &&
      (p->body[0] == '\0' || strlen(p->body) > SW_HEALTH_BODY_MATCH_MAX))
    return 0;
  /* A name to verify is a DNS name or an address: never empty, never a
   * space or a control byte. */
  if (p->tls != NULL &&
      ((p->tls_name != NULL &&
        !printable(p->tls_name, SW_HEALTH_HOST_MAX, 0)) ||
       (p->tls_ip != NULL && !printable(p->tls_ip, SW_HEALTH_HOST_MAX, 0))))
    return 0;
  if (p->status_min < 100 || p->status_max > 599 ||
      p->status_min > p->status_max)
    return 0;
  return p->interval_ms > 0 && p->timeout_ms > 0 && p->rise > 0 && p->fall > 0;
}

/* "127.0.0.1:9001" or "[::1]:9001". */
static int addr_text(const struct sockaddr *sa, char *out, size_t len) {
  char ip[64];
  int err;
  if (sa->sa_family == AF_INET) {
    const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
    err = uv_ip4_name(in, ip, sizeof(ip));
    if (err != 0)
      return err;
    snprintf(out, len, "%s:%u", ip, (unsigned)ntohs(in->sin_port));
    return 0;
  }
  if (sa->sa_family == AF_INET6) {
    const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
    err = uv_ip6_name(in6, ip, sizeof(ip));
    if (err != 0)
      return err;
    snprintf(out, len, "[%s]:%u", ip, (unsigned)ntohs(in6->sin6_port));
    return 0;
  }
  return UV_EINVAL;
}

/* Copies s into out, cut to fit: a display name may be shortened. */
static void copy_text(char *out, size_t len, const char *s) {
  size_t n = strnlen(s, len - 1);
  memcpy(out, s, n);
  out[n] = '\0';
}

static char *dup_or_null(const char *s, int *failed) {
  char *d;
  if (s == NULL)
    return NULL;
  d = strdup(s);
  if (d == NULL)
    *failed = 1;
  return d;
}

static void free_params(sw_health_t *h) {
  free((char *)h->params.path);
  free((char *)h->params.host);
  free((char *)h->params.body);
  free((char *)h->params.tls_name);
  free((char *)h->params.tls_ip);
}

/* The address part of "127.0.0.1:9001" or "[::1]:9001": what a server's
 * certificate must carry as an IP SAN when no name is configured. */
static char *addr_ip_dup(const char *text, int *failed) {
  const char *start = text;
  size_t len;
  char *d;
  if (text[0] == '[') {
    start = text + 1;
    len = strcspn(start, "]");
  } else {
    len = strcspn(text, ":");
  }
  d = strndup(start, len);
  if (d == NULL)
    *failed = 1;
  return d;
}

/* --- lifecycle ----------------------------------------------------------- */

int sw_health_new(uv_loop_t *loop,
                  const struct sockaddr *addr,
                  const char *name,
                  const sw_health_params_t *params,
                  sw_health_cb cb,
                  void *data,
                  sw_health_t **out) {
  sw_health_t *h;
  char host[SW_HEALTH_HOST_MAX + 1];
  const char *host_used;
  int failed = 0;
  int err;
  int n;

  *out = NULL;
  if (loop == NULL || addr == NULL || params == NULL || cb == NULL ||
      !params_valid(params))
    return UV_EINVAL;
  err = addr_text(addr, host, sizeof(host));
  if (err != 0)
    return err;

  h = calloc(1, sizeof(*h));
  if (h == NULL)
    return UV_ENOMEM;
  h->loop = loop;
  h->data = data;
  h->cb = cb;
  memcpy(&h->addr, addr,
         addr->sa_family == AF_INET ? sizeof(struct sockaddr_in)
                                    : sizeof(struct sockaddr_in6));
  copy_text(h->name, sizeof(h->name), name != NULL ? name : host);
  h->params = *params;
  h->params.path = dup_or_null(params->path, &failed);
  h->params.host = dup_or_null(params->host, &failed);
  h->params.body = dup_or_null(params->body, &failed);
  h->params.tls_name = NULL;
  h->params.tls_ip = NULL;
  if (params->tls != NULL) {
    h->params.tls_name = dup_or_null(params->tls_name, &failed);
    /* Neither given: the address we connect to is what the certificate
     * must prove, as for any HTTPS client given an IP. */
    h->params.tls_ip = params->tls_name == NULL && params->tls_ip == NULL
                           ? addr_ip_dup(host, &failed)
                           : dup_or_null(params->tls_ip, &failed);
  }
  host_used = h->params.host != NULL ? h->params.host : host;
  n = snprintf(NULL, 0,
               "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: switchd-health\r\n"
               "Connection: close\r\n\r\n",
               params->path, host_used);
  h->request = failed || n < 0 ? NULL : malloc((size_t)n + 1);
  if (h->request == NULL) {
    free_params(h);
    free(h);
    return UV_ENOMEM;
  }
  h->request_len = (size_t)n;
  snprintf(h->request, (size_t)n + 1,
           "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: switchd-health\r\n"
           "Connection: close\r\n\r\n",
           params->path, host_used);

  err = uv_timer_init(loop, &h->timer);
  if (err != 0) {
    free(h->request);
    free_params(h);
    free(h);
    return err;
  }
  /* Taken last: no failure path above has to give it back. */
  if (h->params.tls != NULL)
    sw_tls_ctx_ref(h->params.tls);
  h->pending = 1;
  h->phase = SW_HEALTH_IDLE;
  h->state = SW_HEALTH_DOWN;
  h->reason[0] = '\0';
  h->last.reason = h->reason;
  h->last_failure[0] = '\0';
  settings_init();
  *out = h;
  return 0;
}

static void maybe_free(sw_health_t *h) {
  if (h->phase != SW_HEALTH_STOPPED || h->pending > 0)
    return;
  if (h->close_cb != NULL)
    h->close_cb(h);
  if (h->params.tls != NULL)
    sw_tls_ctx_unref(h->params.tls);
  free(h->request);
  free_params(h);
  free(h);
}

static void on_timer_close(uv_handle_t *handle) {
  sw_health_t *h = sw_container_of(handle, sw_health_t, timer);
  h->pending--;
  maybe_free(h);
}

static void on_probe_close(uv_handle_t *handle) {
  sw_health_probe_t *p = sw_container_of(handle, sw_health_probe_t, tcp);
  sw_health_t *h = p->h;
  sw_tls_free(p->tls);
  sw_buf_free(&p->body);
  free(p);
  h->pending--;
  maybe_free(h);
}

/* Ends a probe's connection on every path: verdict, error, timeout, stop.
 * Callbacks still queued for it (connect, write, with UV_ECANCELED) run
 * before the close callback and see `done`. */
static void probe_close(sw_health_probe_t *p) {
  p->done = 1;
  if (uv_is_closing((uv_handle_t *)&p->tcp))
    return;
  /* A TLS server is told we are leaving, so it does not log a truncated
   * connection. Best effort: the alert goes only if the socket takes it at
   * once, since the close that follows cancels anything queued. */
  if (p->tls != NULL && sw_tls_handshake_done(p->tls)) {
    char alert[256];
    size_t n;
    sw_tls_shutdown(p->tls);
    n = sw_tls_take_out(p->tls, alert, sizeof(alert));
    if (n > 0) {
      uv_buf_t b = uv_buf_init(alert, (unsigned)n);
      (void)uv_try_write((uv_stream_t *)&p->tcp, &b, 1);
    }
  }
  uv_close((uv_handle_t *)&p->tcp, on_probe_close);
}

int sw_health_start(sw_health_t *h, sw_health_state_t initial) {
  int err;
  if (h->phase == SW_HEALTH_STOPPED)
    return UV_EINVAL;
  if (h->started)
    return UV_EALREADY;
  /* A zero timeout runs the first probe on the next loop iteration, so the
   * callback never runs inside this call. */
  err = uv_timer_start(&h->timer, on_timer, 0, 0);
  if (err != 0)
    return err;
  h->started = 1;
  h->state = initial == SW_HEALTH_UP ? SW_HEALTH_UP : SW_HEALTH_DOWN;
  h->last.state = h->state;
  return 0;
}

int sw_health_probe_now(sw_health_t *h, uint64_t *seq) {
  int err;
  if (!h->started || h->phase == SW_HEALTH_STOPPED)
    return UV_EINVAL;
  if (h->phase == SW_HEALTH_PROBING) {
    if (seq != NULL)
      *seq = h->seq;
    return 0;
  }
  /* Idle: the timer moves from the next interval to now. Asking twice
   * before it fires still makes one probe. */
  err = uv_timer_start(&h->timer, on_timer, 0, 0);
  if (err != 0)
    return err;
  if (seq != NULL)
    *seq = h->seq + 1;
  return 0;
}

void sw_health_stop(sw_health_t *h, sw_health_close_cb close_cb) {
  if (h->phase == SW_HEALTH_STOPPED)
    return;
  h->phase = SW_HEALTH_STOPPED;
  h->close_cb = close_cb;
  if (h->probe != NULL) {
    probe_close(h->probe);
    h->probe = NULL;
  }
  uv_close((uv_handle_t *)&h->timer, on_timer_close);
}

int sw_health_any_up(sw_health_t *const *hs, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (hs[i] != NULL && hs[i]->state == SW_HEALTH_UP)
      return 1;
  return 0;
}

const char *sw_health_state_name(sw_health_state_t s) {
  return s == SW_HEALTH_UP ? "up" : "down";
}

/* --- verdicts ------------------------------------------------------------ */

/* Records a probe's outcome, applies rise and fall, arms the timer for the
 * next probe and tells the owner. The checker is idle again before the
 * callback runs, so the callback may ask for a probe or stop. */
static void conclude(sw_health_t *h,
                     uint64_t seq,
                     uint64_t started_ms,
                     int pass,
                     int status,
                     const char *reason) {
  uint64_t now = uv_now(h->loop);
  uint64_t due = started_ms + h->params.interval_ms;
  sw_health_result_t *r = &h->last;
  uv_timeval64_t tv;
  int changed = 0;

  h->phase = SW_HEALTH_IDLE;
  h->probe = NULL;
  /* Intervals run from start to start, so a slow server is not probed
   * less often; a probe that outlasts the interval is followed at once. The
   * timer only fails on a closing handle, and stop is the only closer. */
  (void)uv_timer_start(&h->timer, on_timer, due > now ? due - now : 0, 0);

  h->probes++;
  if (pass) {
    h->passes++;
    h->fails = 0;
    if (h->state == SW_HEALTH_DOWN && h->passes >= h->params.rise) {
      h->state = SW_HEALTH_UP;
      changed = 1;
    }
    h->reason[0] = '\0';
  } else {
    h->failures++;
    h->fails++;
    h->passes = 0;
    if (h->state == SW_HEALTH_UP && h->fails >= h->params.fall) {
      h->state = SW_HEALTH_DOWN;
      changed = 1;
    }
    snprintf(h->reason, sizeof(h->reason), "%s", reason);
  }
  if (changed)
    h->transitions++;

  r->seq = seq;
  r->pass = pass;
  r->status = status;
  r->reason = h->reason;
  r->passes = h->passes;
  r->fails = h->fails;
  r->state = h->state;
  r->changed = changed;
  r->started_ms = started_ms;
  r->duration_ms = now >= started_ms ? now - started_ms : 0;
  r->wall_ms = 0;
  if (uv_gettimeofday(&tv) == 0)
    r->wall_ms = (uint64_t)tv.tv_sec * 1000 + (uint64_t)tv.tv_usec / 1000;
  if (!pass) {
    memcpy(h->last_failure, h->reason, sizeof(h->last_failure));
    h->last_failure_wall_ms = r->wall_ms;
  }
  h->cb(h, r);
}

/* Closes the probe's connection and concludes it. */
static void probe_end(sw_health_probe_t *p, int pass, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void probe_end(sw_health_probe_t *p, int pass, const char *fmt, ...) {
  sw_health_t *h = p->h;
  char reason[SW_HEALTH_REASON_MAX];
  va_list ap;

  va_start(ap, fmt);
  vsnprintf(reason, sizeof(reason), fmt, ap);
  va_end(ap);
  probe_close(p);
  conclude(h, p->seq, p->started_ms, pass, p->status, reason);
}

static int status_ok(const sw_health_t *h, int status) {
  return status >= h->params.status_min && status <= h->params.status_max;
}

/* The verdict on a probe whose response told us enough: a status outside
 * the range, a body complete or read up to the bound. */
static void judge(sw_health_probe_t *p) {
  sw_health_t *h = p->h;
  const char *want = h->params.body;

  if (!status_ok(h, p->status)) {
    if (p->status >= 300 && p->status < 400)
      probe_end(p, 0, "status %d (redirects are not followed)", p->status);
    else
      probe_end(p, 0, "status %d", p->status);
    return;
  }
  /* memmem's pointers must not be NULL, even with a length of 0. */
  if (want != NULL &&
      (p->body.len == 0 ||
       memmem(p->body.data, p->body.len, want, strlen(want)) == NULL)) {
    /* A long substring is shortened so the reason keeps its end. */
    probe_end(p, 0, "body does not contain \"%.64s%s\"%s", want,
              strlen(want) > 64 ? "..." : "",
              p->truncated ? " (in the first " SW_HEALTH_BODY_MAX_TEXT " bytes)"
                           : "");
    return;
  }
  probe_end(p, 1, "%s", "");
}

/* --- the response -------------------------------------------------------- */

static int on_headers_complete(llhttp_t *parser) {
  sw_health_probe_t *p = parser->data;
  int status = parser->status_code;

  if (status >= 100 && status < 200 && status != 101) {
    /* An interim response (100 Continue, 103 Early Hints): the final one
     * follows on the same connection. */
    p->skip_1xx = 1;
    return 0;
  }
  p->head_done = 1;
  p->status = status;
  if (!status_ok(p->h, status)) {
    /* The body cannot change the verdict: do not wait for it. */
    p->complete = 1;
    return HPE_PAUSED;
  }
  return 0;
}

static int on_body(llhttp_t *parser, const char *at, size_t len) {
  sw_health_probe_t *p = parser->data;
  size_t room = SW_HEALTH_BODY_MAX - p->body_len;
  size_t take = len < room ? len : room;

  if (p->h->params.body != NULL && take > 0 &&
      sw_buf_append(&p->body, at, take) != 0) {
    /* Only an allocation failure gets here (the bound is ours): judge on
     * what is held. */
    p->truncated = 1;
    p->complete = 1;
    return HPE_PAUSED;
  }
  p->body_len += take;
  if (len > room) {
    p->truncated = 1;
    p->complete = 1;
    return HPE_PAUSED;
  }
  return 0;
}

static int on_message_complete(llhttp_t *parser) {
  sw_health_probe_t *p = parser->data;
  if (p->skip_1xx) {
    p->skip_1xx = 0;
    p->after_1xx = 1;
    return HPE_PAUSED;
  }
  p->complete = 1;
  return HPE_PAUSED;
}

static void settings_init(void) {
  if (settings_ready)
    return;
  settings_ready = 1;
  llhttp_settings_init(&settings);
  settings.on_headers_complete = on_headers_complete;
  settings.on_body = on_body;
  settings.on_message_complete = on_message_complete;
}

static void on_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf) {
  buf->base = read_buf;
  buf->len = sizeof(read_buf);
}

/* The connection ended (EOF) before a verdict. A response delimited by the
 * close is complete now; anything else was cut short. */
static void on_eof(sw_health_probe_t *p) {
  if (p->received == 0) {
    probe_end(p, 0, "closed before response");
    return;
  }
  /* For a close-delimited body this calls on_message_complete; its return
   * value adds nothing to the `complete` flag. */
  (void)llhttp_finish(&p->parser);
  if (p->complete) {
    judge(p);
    return;
  }
  probe_end(p, 0, "closed before the response was complete");
}

/* Response bytes (plaintext over TLS), as many as arrived: parsed and judged
 * once they tell enough. The probe may be concluded on return (`done`). */
static void on_response_bytes(sw_health_probe_t *p,
                              const char *data,
                              size_t len) {
  llhttp_errno_t err = HPE_OK;
  size_t off = 0;

  p->received += (uint64_t)len;
  for (;;) {
    /* The raw head bytes are checked before llhttp sees them, as the proxy
     * checks upstream responses: a server whose answers the proxy would
     * refuse must not pass. After a 1xx the next head is checked from
     * where it starts. */
    if (!p->scan.done &&
        sw_http_scan_head(&p->scan, data + off, len - off) != 0) {
      probe_end(p, 0, "invalid response: bare LF or folded header line");
      return;
    }
    err = llhttp_execute(&p->parser, data + off, len - off);
    if (err != HPE_PAUSED || !p->after_1xx)
      break;
    p->after_1xx = 0;
    memset(&p->scan, 0, sizeof(p->scan));
    off = (size_t)(llhttp_get_error_pos(&p->parser) - data);
    llhttp_resume(&p->parser);
  }
  if (p->complete) {
    judge(p);
    return;
  }
  if (err != HPE_OK) {
    probe_end(p, 0, "invalid response: %s",
              llhttp_get_error_reason(&p->parser));
    return;
  }
  if (!p->head_done && p->received > SW_HEALTH_HEAD_MAX) {
    probe_end(p, 0,
              "invalid response: head over " SW_HEALTH_HEAD_MAX_TEXT " bytes");
    return;
  }
}

/* --- TLS ----------------------------------------------------------------- */

/* Fails the probe with a TLS error: "tls: " and sw_tls's own words, which
 * for a verification failure are X509's ("certificate verify failed:
 * hostname mismatch"). */
static void tls_fail(sw_health_probe_t *p, int err) {
  const char *why = sw_tls_error(p->tls);
  if (why[0] == '\0')
    why = err == SW_TLS_ENOMEM    ? "out of memory"
          : err == SW_TLS_EVERIFY ? "certificate verify failed"
                                  : "protocol error";
  probe_end(p, 0, "tls: %s", why);
}

static void on_tls_write(uv_write_t *req, int status) {
  sw_health_out_t *out = sw_container_of(req, sw_health_out_t, req);
  sw_health_probe_t *p = out->p;
  /* Cancelled writes run before the probe's close callback, so p is still
   * there; the buffer is freed on every status. */
  free(out);
  if (p->done || status == 0)
    return;
  probe_end(p, 0, "write: %s", uv_err_name(status));
}

/* Sends whatever sw_tls has for the socket: what the socket takes at once,
 * the rest queued in a request that owns a copy. Returns 0, or concludes
 * the probe and returns nonzero. */
static int tls_flush(sw_health_probe_t *p) {
  while (sw_tls_out_pending(p->tls) > 0) {
    size_t pending = sw_tls_out_pending(p->tls);
    sw_health_out_t *out = malloc(sizeof(*out) + pending);
    size_t n, sent = 0;
    uv_buf_t b;
    int err;

    if (out == NULL) {
      probe_end(p, 0, "out of memory");
      return -1;
    }
    n = sw_tls_take_out(p->tls, out->data, pending);
    if (n == 0) {
      /* Cannot happen with bytes pending; never spin if it does. */
      free(out);
      break;
    }
    b = uv_buf_init(out->data, (unsigned)n);
    err = uv_try_write((uv_stream_t *)&p->tcp, &b, 1);
    if (err >= 0)
      sent = (size_t)err;
    else if (err != UV_EAGAIN) {
      free(out);
      probe_end(p, 0, "write: %s", uv_err_name(err));
      return -1;
    }
    if (sent == n) {
      free(out);
      continue;
    }
    out->p = p;
    b = uv_buf_init(out->data + sent, (unsigned)(n - sent));
    err = uv_write(&out->req, (uv_stream_t *)&p->tcp, &b, 1, on_tls_write);
    if (err != 0) {
      free(out);
      probe_end(p, 0, "write: %s", uv_err_name(err));
      return -1;
    }
  }
  return 0;
}

/* Runs the TLS connection as far as the bytes fed allow: the handshake,
 * then the request once it is done, then the response's plaintext. Every
 * call into sw_tls is followed by a flush, so a handshake message never
 * waits. A close_notify ends the response like an EOF. */
static void tls_pump(sw_health_probe_t *p) {
  for (;;) {
    ssize_t n = sw_tls_read(p->tls, plain_buf, sizeof(plain_buf));
    int err;

    if (tls_flush(p) != 0)
      return;
    if (n == SW_TLS_ECLOSED) {
      on_eof(p);
      return;
    }
    if (n < 0) {
      tls_fail(p, (int)n);
      return;
    }
    if (!p->sent && sw_tls_handshake_done(p->tls)) {
      p->sent = 1;
      err = sw_tls_write(p->tls, p->h->request, p->h->request_len);
      if (err != 0) {
        tls_fail(p, err);
        return;
      }
      if (tls_flush(p) != 0)
        return;
    }
    if (n == 0)
      return;
    on_response_bytes(p, plain_buf, (size_t)n);
    if (p->done)
      return;
  }
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  sw_health_probe_t *p = sw_container_of(s, sw_health_probe_t, tcp);
  int err;

  if (p->done || nread == 0)
    return;
  if (nread == UV_EOF) {
    /* Over TLS, a server that hangs up mid-handshake never got as far as
     * HTTP: say so rather than blame the response. */
    if (p->tls != NULL && !sw_tls_handshake_done(p->tls))
      probe_end(p, 0, "tls: connection closed during the handshake");
    else
      on_eof(p);
    return;
  }
  if (nread < 0) {
    probe_end(p, 0, "read: %s", uv_err_name((int)nread));
    return;
  }
  if (p->tls == NULL) {
    on_response_bytes(p, buf->base, (size_t)nread);
    return;
  }
  err = sw_tls_feed(p->tls, buf->base, (size_t)nread);
  if (err != 0) {
    tls_fail(p, err);
    return;
  }
  tls_pump(p);
}

/* --- sending ------------------------------------------------------------- */

static void on_write(uv_write_t *req, int status) {
  sw_health_probe_t *p = sw_container_of(req, sw_health_probe_t, write);
  /* The request buffer is the checker's and outlives every probe: there is
   * nothing to free here, on any status. */
  if (p->done || status == 0)
    return;
  probe_end(p, 0, "write: %s", uv_err_name(status));
}

static void on_connect(uv_connect_t *req, int status) {
  sw_health_probe_t *p = sw_container_of(req, sw_health_probe_t, connect);
  sw_health_t *h = p->h;
  uv_buf_t b;
  int err;

  if (p->done)
    return;
  if (status < 0) {
    probe_end(p, 0, "connect: %s", uv_err_name(status));
    return;
  }
  err = uv_read_start((uv_stream_t *)&p->tcp, on_alloc, on_read);
  if (err != 0) {
    probe_end(p, 0, "read: %s", uv_err_name(err));
    return;
  }
  if (h->params.tls != NULL) {
    /* The first read with nothing fed makes the ClientHello; the request
     * waits for the handshake (tls_pump). */
    p->tls =
        sw_tls_new_client(h->params.tls, h->params.tls_name, h->params.tls_ip);
    if (p->tls == NULL) {
      probe_end(p, 0, "tls: out of memory");
      return;
    }
    tls_pump(p);
    return;
  }
  b = uv_buf_init(h->request, (unsigned)h->request_len);
  err = uv_write(&p->write, (uv_stream_t *)&p->tcp, &b, 1, on_write);
  if (err != 0)
    probe_end(p, 0, "write: %s", uv_err_name(err));
}

/* Starts a probe on a new connection. Failures that happen before there is
 * anything to wait for conclude at once (we are in the timer callback,
 * never in a call from the owner). */
static void probe_start(sw_health_t *h) {
  sw_health_probe_t *p;
  uint64_t now = uv_now(h->loop);
  uint64_t seq = ++h->seq;
  int err;

  p = calloc(1, sizeof(*p));
  if (p == NULL) {
    conclude(h, seq, now, 0, 0, "out of memory");
    return;
  }
  err = uv_tcp_init(h->loop, &p->tcp);
  if (err != 0) {
    char reason[SW_HEALTH_REASON_MAX];
    free(p);
    snprintf(reason, sizeof(reason), "socket: %s", uv_err_name(err));
    conclude(h, seq, now, 0, 0, reason);
    return;
  }
  h->pending++;
  p->h = h;
  p->seq = seq;
  p->started_ms = now;
  sw_buf_init(&p->body, SW_HEALTH_BODY_MAX);
  llhttp_init(&p->parser, HTTP_RESPONSE, &settings);
  p->parser.data = p;
  h->phase = SW_HEALTH_PROBING;
  h->probe = p;

  err = uv_tcp_connect(&p->connect, &p->tcp, (struct sockaddr *)&h->addr,
                       on_connect);
  if (err != 0) {
    probe_end(p, 0, "connect: %s", uv_err_name(err));
    return;
  }
  /* The timeout bounds the whole probe, connect included. */
  err = uv_timer_start(&h->timer, on_timer, h->params.timeout_ms, 0);
  if (err != 0)
    probe_end(p, 0, "timer: %s", uv_err_name(err));
}

static void on_timer(uv_timer_t *t) {
  sw_health_t *h = sw_container_of(t, sw_health_t, timer);

  if (h->phase == SW_HEALTH_PROBING) {
    probe_end(h->probe, 0, "timeout after %" PRIu64 " ms",
              h->params.timeout_ms);
    return;
  }
  if (h->phase == SW_HEALTH_IDLE)
    probe_start(h);
}
