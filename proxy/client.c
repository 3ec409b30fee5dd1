/* One downstream connection. Owns the request parser, the limits a client
 * can hit (head size, header count, URL, body size, send rate, timeouts),
 * the buffering of request bodies before routing, keep-alive and
 * pipelining (one exchange at a time, later requests wait unparsed), and
 * every response the proxy writes itself. It never blocks and never
 * forwards a message it could not parse unambiguously. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "sw_tls.h"
#include "sw_control.h"
#include "sw_hold.h"
#include "sw_log.h"
#include "sw_proxy.h"

static llhttp_settings_t req_settings;
static int settings_ready;

static void on_client_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);
static void client_input(sw_client_t *c, const char *data, size_t len);
static int keep_pending(sw_client_t *c, const char *data, size_t len);
static void client_parse(sw_client_t *c, const char *data, size_t len);
static void req_free(sw_req_t *r);
static void client_continue(sw_client_t *c);

/* xorshift128+ seeded from the kernel: request ids need to be unique, not
 * secret, and must not cost a system call per request. */
static uint64_t rng_s[2];

static uint64_t rng_next(void) {
  uint64_t s1 = rng_s[0];
  const uint64_t s0 = rng_s[1];
  rng_s[0] = s0;
  s1 ^= s1 << 23;
  rng_s[1] = s1 ^ s0 ^ (s1 >> 17) ^ (s0 >> 26);
  return rng_s[1] + s0;
}

static void make_request_id(char out[33]) {
  static const char hex[] = "0123456789abcdef";
  if (rng_s[0] == 0 && rng_s[1] == 0) {
    if (getrandom(rng_s, sizeof(rng_s), 0) != sizeof(rng_s) ||
        (rng_s[0] | rng_s[1]) == 0) {
      rng_s[0] = uv_hrtime() | 1;
      rng_s[1] = (uint64_t)getpid() << 32 | 7;
    }
  }
  for (int i = 0; i < 2; i++) {
    uint64_t v = rng_next();
    for (int k = 0; k < 16; k++)
      out[i * 16 + k] = hex[(v >> (k * 4)) & 15];
  }
  out[32] = '\0';
}

int sw_client_high_water(const sw_client_t *c) {
  uint64_t rb = sw.cfg->response_buffer;
  if (sw.buffered >= sw.cfg->buffer_budget || rb < SW_STREAM_HIGH_WATER)
    return SW_STREAM_HIGH_WATER;
  return (int)rb;
}

/* The client address as text. IPv4 is formatted by hand: it is needed
 * for every request (X-Forwarded-For) and inet_ntop goes through printf. */
static void peer_text(const sw_client_t *c, char *out, size_t cap) {
  if (c->family == AF_INET && cap >= 16) {
    char *p = out;
    for (int i = 0; i < 4; i++) {
      unsigned v = c->peer[i];
      if (v >= 100)
        *p++ = (char)('0' + v / 100);
      if (v >= 10)
        *p++ = (char)('0' + v / 10 % 10);
      *p++ = (char)('0' + v % 10);
      if (i < 3)
        *p++ = '.';
    }
    *p = '\0';
    return;
  }
  if (uv_inet_ntop(c->family, c->peer, out, cap) != 0)
    snprintf(out, cap, "-");
}

/* --- closing ------------------------------------------------------------ */

static void on_client_close(uv_handle_t *h) {
  sw_client_t *c = sw_container_of(h, sw_client_t, tcp);
  if (c->tls != NULL)
    sw_tls_free(c->tls);
  free(c);
  sw.nclients--;
  sw_maybe_exit();
}

void sw_client_close(sw_client_t *c) {
  if (c->flags & SW_CF_CLOSING)
    return;
  c->flags |= SW_CF_CLOSING;
  sw_timeq_del(&c->tn);
  if (c->req != NULL) {
    if (c->req->up != NULL)
      sw_upstream_abort(c->req);
    req_free(c->req);
    c->req = NULL;
  }
  free(c->pending);
  c->pending = NULL;
  c->npending = 0;
  uv_close((uv_handle_t *)&c->tcp, on_client_close);
}

typedef struct sw_shut_s {
  uv_shutdown_t req;
  sw_client_t *c;
} sw_shut_t;

static void on_client_shutdown(uv_shutdown_t *req, int status) {
  sw_shut_t *sh = sw_container_of(req, sw_shut_t, req);
  sw_client_t *c = sh->c;
  free(sh);
  if (c->flags & SW_CF_CLOSING)
    return;
  if (status < 0 || (c->flags & SW_CF_EOF)) {
    sw_client_close(c);
    return;
  }
  /* Our last response is out and FIN sent. Read and discard what the
   * client still sends for a moment: closing with unread input would send
   * a reset that can destroy the response before the client reads it. */
  c->flags |= SW_CF_LINGER;
  sw_timeq_add(&sw.tq[SW_TQ_LINGER], &c->tn);
  if (!(c->flags & SW_CF_READING)) {
    if (uv_read_start((uv_stream_t *)&c->tcp, sw_alloc_cb, on_client_read) !=
        0) {
      sw_client_close(c);
      return;
    }
    c->flags |= SW_CF_READING;
  }
}

/* Closes the connection once everything queued has been written. */
static void close_after_write(sw_client_t *c) {
  sw_shut_t *sh;
  if (c->flags & (SW_CF_CLOSING | SW_CF_SHUTDOWN))
    return;
  c->flags |= SW_CF_SHUTDOWN | SW_CF_CLOSE_AFTER;
  free(c->pending);
  c->pending = NULL;
  c->npending = 0;
  sw_timeq_add(&sw.tq[SW_TQ_SEND], &c->tn);
  sh = malloc(sizeof(*sh));
  if (sh == NULL) {
    sw_client_close(c);
    return;
  }
  sh->c = c;
  sw_client_close_notify(c);
  if (uv_shutdown(&sh->req, (uv_stream_t *)&c->tcp, on_client_shutdown) != 0) {
    free(sh);
    sw_client_close(c);
  }
}

void sw_client_shutdown_idle(sw_client_t *c) {
  if (c->flags & SW_CF_CLOSING)
    return;
  if (c->req != NULL || (c->flags & SW_CF_SHUTDOWN))
    return;
  /* Idle: close now, unless a response is still queued to it. */
  if (uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) > 0)
    close_after_write(c);
  else
    sw_client_close(c);
}

/* --- TLS ------------------------------------------------------------------ */

/* Scratch buffers for TLS: the plaintext of what one read brought, and
 * ciphertext on its way to the socket. One loop, one thread: static
 * buffers cost no connection anything. Two, because handling plaintext
 * may send a response (ciphertext) while the plaintext is still in use. */
static char tls_plain[64 * 1024];
static char tls_cipher[64 * 1024];

/* Writes what TLS produced to the socket; what the socket does not take at
 * once is copied into the write queue by sw_stream_write. */
static int tls_flush(sw_client_t *c) {
  while (sw_tls_out_pending(c->tls) > 0) {
    size_t n = sw_tls_take_out(c->tls, tls_cipher, sizeof(tls_cipher));
    uv_buf_t b = uv_buf_init(tls_cipher, (unsigned)n);
    int err;
    if (n == 0)
      break;
    err = sw_stream_write((uv_stream_t *)&c->tcp, &b, 1);
    if (err != 0)
      return err;
  }
  return 0;
}

static int tls_flush_cb(void *arg) {
  return tls_flush(arg);
}

int sw_client_write(sw_client_t *c, const uv_buf_t *bufs, unsigned n) {
  if (c->flags & SW_CF_CLOSING)
    return UV_ECANCELED;
  if (c->tls == NULL)
    return sw_stream_write((uv_stream_t *)&c->tcp, bufs, n);
  return sw_tls_send(c->tls, bufs, n, tls_flush_cb, c);
}

void sw_client_close_notify(sw_client_t *c) {
  if (c->tls == NULL || (c->flags & SW_CF_CLOSING) ||
      !sw_tls_handshake_done(c->tls))
    return;
  sw_tls_shutdown(c->tls);
  (void)tls_flush(c);
}

/* Plain HTTP on an HTTPS port: a client (or a person with curl) that got
 * the scheme wrong is told so in its own language, then the connection
 * closes. */
static void tls_plain_http(sw_client_t *c) {
  static const char resp[] =
      "HTTP/1.1 400 Bad Request\r\n"
      "Content-Type: text/plain\r\n"
      "Content-Length: 41\r\n"
      "Connection: close\r\n"
      "\r\n"
      "This port expects HTTPS (TLS), not HTTP.\n";
  uv_buf_t b = uv_buf_init((char *)resp, sizeof(resp) - 1);

  sw_info("client", c->id, "plain HTTP on an HTTPS port, answering 400");
  sw_tls_free(c->tls);
  c->tls = NULL;
  if (sw_stream_write((uv_stream_t *)&c->tcp, &b, 1) != 0) {
    sw_client_close(c);
    return;
  }
  close_after_write(c);
}

static void client_eof(sw_client_t *c);

/* Ciphertext from the socket: the handshake goes on, and the plaintext it
 * yields goes where a plain connection's bytes would. */
static void tls_input(sw_client_t *c, const char *data, size_t len) {
  int was_done = sw_tls_handshake_done(c->tls);

  if (sw_tls_feed(c->tls, data, len) != 0) {
    sw_client_close(c);
    return;
  }
  for (;;) {
    ssize_t n = sw_tls_read(c->tls, tls_plain, sizeof(tls_plain));
    if (tls_flush(c) != 0) {
      sw_client_close(c);
      return;
    }
    if (!was_done && sw_tls_handshake_done(c->tls)) {
      was_done = 1;
      sw_debug("client", c->id, "TLS %s %s, ALPN '%s', SNI '%s'%s",
               sw_tls_version(c->tls), sw_tls_cipher(c->tls),
               sw_tls_alpn(c->tls), sw_tls_sni(c->tls),
               sw_tls_resumed(c->tls) ? ", resumed" : "");
      /* The first request's header timeout starts with the handshake
       * done. */
      sw_timeq_add(&sw.tq[SW_TQ_HEADER], &c->tn);
    }
    if (n > 0) {
      if (c->flags & SW_CF_TUNNEL) {
        if (c->req != NULL)
          sw_tunnel_from_client(c->req, tls_plain, (size_t)n);
      } else if (!(c->flags & SW_CF_READING) || c->npending > 0) {
        /* One read of ciphertext can hold more plaintext than one call
         * takes. When the bytes before it stopped reading (a streamed
         * body waiting for its upstream, backpressure, a full pipeline),
         * the rest waits where a plain connection's unread bytes would,
         * in order: never parsed ahead of what came first. */
        if (keep_pending(c, tls_plain, (size_t)n) != 0)
          return;
      } else {
        client_input(c, tls_plain, (size_t)n);
      }
      if (c->flags & (SW_CF_CLOSING | SW_CF_LINGER | SW_CF_SHUTDOWN))
        return;
      continue;
    }
    if (n == 0)
      return;
    if (n == SW_TLS_ECLOSED) {
      client_eof(c);
      return;
    }
    if (n == SW_TLS_EHTTP) {
      tls_plain_http(c);
      return;
    }
    if (was_done)
      sw_debug("client", c->id, "TLS error: %s", sw_tls_error(c->tls));
    else
      sw_info("client", c->id, "TLS handshake failed: %s",
              sw_tls_error(c->tls));
    sw_client_close(c);
    return;
  }
}

int sw_client_send(sw_client_t *c, const uv_buf_t *bufs, unsigned n) {
  int err;
  if (c->flags & SW_CF_CLOSING)
    return UV_ECANCELED;
  err = sw_client_write(c, bufs, n);
  if (err != 0)
    return err;
  if (uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) > 0 &&
      c->tn.q == NULL)
    sw_timeq_add(&sw.tq[SW_TQ_SEND], &c->tn);
  return 0;
}

/* --- access log and finishing an exchange ----------------------------- */

static void log_access(sw_req_t *r) {
  sw_access_t a;
  char client[64];
  uint64_t now = uv_hrtime();
  const char *rid = r->rid;
  size_t rid_len = strlen(r->rid);

  sw_control_observe(r);
  if (!sw_log_access_enabled())
    return;
  peer_text(r->client, client, sizeof(client));
  if (r->rid_idx >= 0) {
    rid = sw_head_val(&r->head, (uint32_t)r->rid_idx);
    rid_len = r->head.hdrs[r->rid_idx].value_len;
  }
  a.client = client;
  a.method = r->method != NULL ? r->method : "-";
  a.path = r->url_len > 0 ? r->head.raw.data + r->url_off : "";
  a.path_len = r->url_len;
  a.status = r->status;
  a.bytes = r->resp_bytes;
  a.colour = r->server != NULL ? sw_colour_name(r->colour) : NULL;
  a.server = r->server != NULL ? r->server->name : NULL;
  a.upstream_ms = r->t_up != 0 && r->t_up_done >= r->t_up
                      ? (double)(r->t_up_done - r->t_up) / 1e6
                      : -1;
  a.total_ms = (double)(now - r->t_start) / 1e6;
  a.request_id = rid;
  a.request_id_len = rid_len;
  sw_log_access(&a);
}

/* Freed exchanges are kept for reuse with their head buffers, which
 * saves several allocations per request. The cache is small and the body
 * buffer is never kept, so it holds little memory. */
#define SW_REQ_CACHE 32
static sw_req_t *req_cache[SW_REQ_CACHE];
static int req_cached;

void sw_req_release_body(sw_req_t *r) {
  sw.buffered -= r->budget;
  r->budget = 0;
  sw_buf_free(&r->body);
}

static void req_free(sw_req_t *r) {
  sw_hold_forget(r);
  sw_req_release_body(r);
  if (req_cached < SW_REQ_CACHE && !sw.stopping) {
    req_cache[req_cached++] = r;
    return;
  }
  sw_head_free(&r->head);
  sw_head_free(&r->rhead);
  sw_buf_free(&r->out);
  free(r);
}

void sw_client_cache_free(void) {
  while (req_cached > 0) {
    sw_req_t *r = req_cache[--req_cached];
    sw_head_free(&r->head);
    sw_head_free(&r->rhead);
    sw_buf_free(&r->out);
    free(r);
  }
}

/* A zeroed exchange, reusing a cached one's allocations when it can. */
static sw_req_t *req_alloc(void) {
  sw_req_t *r;
  sw_head_t head, rhead;
  sw_buf_t outb;

  if (req_cached == 0)
    return calloc(1, sizeof(sw_req_t));
  r = req_cache[--req_cached];
  head = r->head;
  rhead = r->rhead;
  outb = r->out;
  memset(r, 0, sizeof(*r));
  r->head = head;
  r->rhead = rhead;
  r->out = outb;
  return r;
}

static void start_reading(sw_client_t *c) {
  if (c->flags & (SW_CF_READING | SW_CF_CLOSING | SW_CF_EOF))
    return;
  if (uv_read_start((uv_stream_t *)&c->tcp, sw_alloc_cb, on_client_read) == 0)
    c->flags |= SW_CF_READING;
}

static void stop_reading(sw_client_t *c) {
  if (!(c->flags & SW_CF_READING))
    return;
  uv_read_stop((uv_stream_t *)&c->tcp);
  c->flags &= ~SW_CF_READING;
}

/* The response of the current exchange is fully queued: log it, then
 * either close the connection or go on with the next request. */
void sw_req_finished(sw_req_t *r) {
  sw_client_t *c = r->client;
  int keep = r->keep_alive && !sw.stopping;

  r->state = SW_REQ_DONE;
  log_access(r);
  req_free(r);
  c->req = NULL;
  if (!keep) {
    close_after_write(c);
    return;
  }
  client_continue(c);
}

/* Between exchanges: start the next pipelined request, or wait idle. A
 * client that does not read its responses gets no new one until it does,
 * so pipelining cannot grow the write queue without bound. */
static void client_continue(sw_client_t *c) {
  size_t queued = uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp);
  char *pending = c->pending;
  uint32_t npending = c->npending;

  if (queued > (size_t)sw_client_high_water(c)) {
    c->flags |= SW_CF_WAIT_DRAIN;
    stop_reading(c);
    sw_timeq_add(&sw.tq[SW_TQ_SEND], &c->tn);
    return;
  }
  c->flags &= ~SW_CF_WAIT_DRAIN;
  sw_timeq_add(&sw.tq[queued > 0 ? SW_TQ_SEND : SW_TQ_IDLE], &c->tn);
  if (npending == 0) {
    if (c->flags & SW_CF_EOF)
      close_after_write(c);
    else
      start_reading(c);
    return;
  }
  /* Pipelined bytes that arrived during the exchange start the next. */
  c->pending = NULL;
  c->npending = 0;
  start_reading(c);
  client_input(c, pending, npending);
  free(pending);
  /* The next exchange put the bytes after it back as pending. */
  if (!(c->flags & SW_CF_CLOSING) && c->npending > SW_PENDING_MAX)
    stop_reading(c);
  /* After the client's EOF nothing more will come: a request the pending
   * bytes did not complete never will. */
  if ((c->flags & (SW_CF_EOF | SW_CF_CLOSING | SW_CF_SHUTDOWN)) == SW_CF_EOF &&
      c->req != NULL &&
      (c->req->state == SW_REQ_HEAD || c->req->state == SW_REQ_BUFFERING))
    sw_client_close(c);
}

void sw_client_written(sw_client_t *c, int status) {
  size_t queued;
  size_t hw;
  sw_req_t *r = c->req;

  if (c->flags & SW_CF_CLOSING)
    return;
  if (status < 0) {
    sw_debug("client", c->id, "write failed: %s", uv_err_name(status));
    sw_client_close(c);
    return;
  }
  queued = uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp);
  if (c->flags & SW_CF_TUNNEL) {
    if (r != NULL)
      sw_tunnel_written((uv_stream_t *)&c->tcp);
    return;
  }
  hw = (size_t)sw_client_high_water(c);
  if (c->flags & SW_CF_WAIT_DRAIN) {
    if (queued < hw)
      client_continue(c);
    else
      sw_timeq_add(&sw.tq[SW_TQ_SEND], &c->tn);
    return;
  }
  if (c->tn.q == &sw.tq[SW_TQ_SEND]) {
    /* Progress resets the send timeout; an empty queue ends it, and an
     * idle keep-alive connection goes back to the idle timeout. */
    if (queued > 0 || (c->flags & SW_CF_SHUTDOWN))
      sw_timeq_add(&sw.tq[SW_TQ_SEND], &c->tn);
    else if (r == NULL)
      sw_timeq_add(&sw.tq[SW_TQ_IDLE], &c->tn);
    else
      sw_timeq_del(&c->tn);
  }
  if (r != NULL && r->up != NULL && queued < hw)
    sw_upstream_resume(r);
}

/* Writes a response the proxy makes itself. */
static void send_status(
    sw_client_t *c, sw_req_t *r, int status, int keep, const char *extra) {
  char buf[512];
  const char *reason = sw_http_reason(status);
  int body_len = snprintf(NULL, 0, "%d %s\n", status, reason);
  int n =
      snprintf(buf, sizeof(buf),
               "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\n"
               "Content-Length: %d\r\n%s%s\r\n%d %s\n",
               status, reason, body_len, keep ? "" : "Connection: close\r\n",
               extra ? extra : "", status, reason);
  uv_buf_t b = uv_buf_init(buf, (unsigned)n);
  if (r != NULL) {
    r->status = status;
    r->resp_bytes += (uint64_t)n;
  }
  (void)sw_client_send(c, &b, 1);
}

/* Ends the exchange with a status of the proxy's own. A response already
 * started cannot be replaced: the client connection is closed instead, so
 * the client sees a truncated message, never a second status line. */
static void req_fail(sw_req_t *r, int status, const char *extra);

void sw_req_fail(sw_req_t *r, int status) {
  req_fail(r, status, NULL);
}

void sw_req_fail_retry(sw_req_t *r, int status, uint64_t seconds) {
  char extra[48];
  snprintf(extra, sizeof(extra), "Retry-After: %llu\r\n",
           (unsigned long long)seconds);
  req_fail(r, status, extra);
}

static void req_fail(sw_req_t *r, int status, const char *extra) {
  sw_client_t *c = r->client;
  int keep;

  if (r->up != NULL)
    sw_upstream_abort(r);
  if (r->resp_started) {
    r->keep_alive = 0;
    if (r->status == 0)
      r->status = status;
    r->cut = status >= 500;
    log_access(r);
    req_free(r);
    c->req = NULL;
    sw_client_close(c);
    return;
  }
  /* After an upstream failure the request was read whole, so the client
   * connection can carry on; after a client error it cannot. */
  keep = r->keep_alive && r->complete && status >= 500 && !r->upgrade &&
         !sw.stopping && !((c->flags & SW_CF_EOF) && c->npending == 0);
  r->keep_alive = (uint8_t)keep;
  send_status(c, r, status, keep, extra);
  r->resp_started = 1;
  sw_req_finished(r);
}

/* A request the client got wrong: answer, then close. Nothing of it was
 * forwarded, or what was forwarded is abandoned. */
static void client_error(sw_client_t *c, int status) {
  sw_req_t *r = c->req;
  if (r == NULL) {
    send_status(c, NULL, status, 0, NULL);
    close_after_write(c);
    return;
  }
  r->keep_alive = 0;
  r->complete = 0;
  sw_debug("client", c->id, "answering %d", status);
  sw_req_fail(r, status);
}

/* --- accepting ----------------------------------------------------------- */

void sw_client_accept(uv_stream_t *server) {
  sw_listener_t *ls = sw_container_of(server, sw_listener_t, tcp);
  sw_client_t *c = calloc(1, sizeof(*c));
  struct sockaddr_storage ss;
  int len = sizeof(ss);

  if (c == NULL)
    return;
  if (uv_tcp_init(sw.loop, &c->tcp) != 0) {
    free(c);
    return;
  }
  sw.nclients++;
  c->kind = SW_KIND_CLIENT;
  c->tcp.data = &c->kind;
  c->id = sw_next_id();
  sw_tnode_init(&c->tn);
  if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
    sw_client_close(c);
    return;
  }
  if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) == 0) {
    c->family = (uint8_t)ss.ss_family;
    if (ss.ss_family == AF_INET)
      memcpy(c->peer, &((struct sockaddr_in *)&ss)->sin_addr, 4);
    else if (ss.ss_family == AF_INET6)
      memcpy(c->peer, &((struct sockaddr_in6 *)&ss)->sin6_addr, 16);
  }
  uv_tcp_nodelay(&c->tcp, 1);
  if (sw.stopping) {
    sw_client_close(c);
    return;
  }
  if (ls->tls != NULL) {
    /* The context as the listener has it now: a reload gives later
     * connections new certificates and leaves this one its own. */
    sw_tls_ctx_tick(ls->tls, uv_now(sw.loop));
    c->tls = sw_tls_new(ls->tls);
    if (c->tls == NULL) {
      sw_client_close(c);
      return;
    }
    sw_tls_set_accepted(c->tls, uv_now(sw.loop));
  }
  start_reading(c);
  /* A new connection gets the handshake timeout (HTTPS), then the header
   * timeout for its first request. */
  sw_timeq_add(&sw.tq[c->tls != NULL ? SW_TQ_HANDSHAKE : SW_TQ_HEADER], &c->tn);
}

/* --- timeouts ------------------------------------------------------------ */

void sw_client_expire(sw_tnode_t *n) {
  sw_client_t *c = sw_container_of(n, sw_client_t, tn);
  sw_req_t *r = c->req;
  uint64_t now = uv_now(sw.loop);
  uint64_t elapsed, rate;

  if (c->flags & SW_CF_CLOSING)
    return;
  if (c->tls != NULL && !sw_tls_handshake_done(c->tls)) {
    /* The queue runs on the shortest section's timeout; a connection of a
     * section that allows longer waits another round. */
    if (!sw_tls_handshake_expired(c->tls, now)) {
      sw_timeq_add(&sw.tq[SW_TQ_HANDSHAKE], &c->tn);
      return;
    }
    sw.tls_timeouts++;
    sw_info("client", c->id, "TLS handshake timeout, closing");
    sw_client_close(c);
    return;
  }
  if (c->flags & (SW_CF_LINGER | SW_CF_SHUTDOWN | SW_CF_TUNNEL) || r == NULL) {
    /* Idle keep-alive, a finished linger, a stuck final write, an idle
     * tunnel or a connection that never sent a byte: close quietly. */
    sw_client_close(c);
    return;
  }
  if (r->state == SW_REQ_HEAD) {
    sw_info("client", c->id, "header timeout, answering 408");
    client_error(c, 408);
    return;
  }
  if (r->state != SW_REQ_BUFFERING && r->state != SW_REQ_STREAMING) {
    /* The send timeout: the client has not read our response for too
     * long. Nothing can be answered any more. */
    sw_info("client", c->id, "send timeout, closing");
    sw_client_close(c);
    return;
  }
  /* Reading a body: it must keep coming, and at min_send_rate. */
  elapsed = now - r->rate_start;
  rate = sw.cfg->min_send_rate;
  if (now - r->last_body >= sw.cfg->body_timeout_ms) {
    sw_info("client", c->id, "body timeout, answering 408");
    client_error(c, 408);
    return;
  }
  if (rate > 0 && elapsed > 0 && r->rate_bytes * 1000 < rate * elapsed) {
    sw_info("client", c->id,
            "body slower than min_send_rate (%llu bytes in %llu ms), "
            "answering 408",
            (unsigned long long)r->rate_bytes, (unsigned long long)elapsed);
    client_error(c, 408);
    return;
  }
  r->rate_bytes = 0;
  r->rate_start = now;
  sw_timeq_add(&sw.tq[SW_TQ_BODY], &c->tn);
}

/* --- reading ------------------------------------------------------------- */

/* The client closed its sending half (a FIN, or TLS's close_notify). */
static void client_eof(sw_client_t *c) {
  sw_req_t *r = c->req;

  c->flags |= SW_CF_EOF;
  if (c->flags & SW_CF_TUNNEL && r != NULL) {
    sw_tunnel_eof(r, 1);
    return;
  }
  /* A half-closed client still gets what is queued for it and the
   * responses to the requests it sent whole; a request cut short is
   * abandoned. */
  if (r == NULL) {
    if (!(c->flags & SW_CF_WAIT_DRAIN))
      close_after_write(c);
  } else if (r->state == SW_REQ_HEAD || r->state == SW_REQ_BUFFERING ||
             r->state == SW_REQ_STREAMING) {
    sw_client_close(c);
  }
}

static void on_client_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  sw_client_t *c = sw_container_of(s, sw_client_t, tcp);
  sw_req_t *r = c->req;

  if (nread == 0)
    return;
  if (c->flags & SW_CF_CLOSING)
    return;
  if (nread < 0) {
    stop_reading(c);
    if (c->flags & SW_CF_LINGER) {
      sw_client_close(c);
      return;
    }
    if (nread != UV_EOF) {
      sw_debug("client", c->id, "read error: %s", uv_err_name((int)nread));
      sw_client_close(c);
      return;
    }
    client_eof(c);
    return;
  }
  if (c->flags & (SW_CF_LINGER | SW_CF_SHUTDOWN))
    return; /* closing: what the client still sends is discarded */
  if (c->tls != NULL) {
    tls_input(c, buf->base, (size_t)nread);
    return;
  }
  if (c->flags & SW_CF_TUNNEL) {
    if (r != NULL)
      sw_tunnel_from_client(r, buf->base, (size_t)nread);
    return;
  }
  client_input(c, buf->base, (size_t)nread);
}

/* Keeps bytes read for later, after those already kept. Past the bound,
 * reading stops: the bytes already read are kept (at most one read more
 * than the bound), the rest waits in the kernel. Returns 0, or -1 when the
 * connection was closed (no memory). */
static int keep_pending(sw_client_t *c, const char *data, size_t len) {
  char *p;

  if (c->npending + len > SW_PENDING_MAX)
    stop_reading(c);
  p = realloc(c->pending, c->npending + len);
  if (p == NULL) {
    sw_client_close(c);
    return -1;
  }
  memcpy(p + c->npending, data, len);
  c->pending = p;
  c->npending += (uint32_t)len;
  return 0;
}

static void client_input(sw_client_t *c, const char *data, size_t len) {
  sw_req_t *r = c->req;

  if (r != NULL && r->state != SW_REQ_HEAD && r->state != SW_REQ_BUFFERING &&
      r->state != SW_REQ_STREAMING) {
    /* An exchange is in progress: keep later bytes for when it ends. */
    (void)keep_pending(c, data, len);
    return;
  }
  client_parse(c, data, len);
}

void sw_client_resume_body(sw_req_t *r) {
  sw_client_t *c = r->client;
  char *pending = c->pending;
  uint32_t npending = c->npending;

  if (c->flags & (SW_CF_CLOSING | SW_CF_TUNNEL)) {
    if (c->flags & SW_CF_TUNNEL)
      start_reading(c);
    return;
  }
  if (r->state != SW_REQ_STREAMING || r->up == NULL)
    return;
  if (uv_stream_get_write_queue_size((uv_stream_t *)&r->up->tcp) >=
      SW_STREAM_HIGH_WATER)
    return;
  if (!(c->flags & SW_CF_READING)) {
    r->rate_start = uv_now(sw.loop);
    r->rate_bytes = 0;
    r->last_body = r->rate_start;
    sw_timeq_add(&sw.tq[SW_TQ_BODY], &c->tn);
  }
  start_reading(c);
  if (npending > 0) {
    c->pending = NULL;
    c->npending = 0;
    client_parse(c, pending, npending);
    free(pending);
    if (!(c->flags & SW_CF_CLOSING) && c->npending > SW_PENDING_MAX)
      stop_reading(c);
  }
}

static sw_req_t *req_new(sw_client_t *c) {
  sw_req_t *r = req_alloc();
  const sw_config_t *cfg = sw.cfg;
  if (r == NULL)
    return NULL;
  r->client = c;
  r->state = SW_REQ_HEAD;
  llhttp_init(&r->parser, HTTP_REQUEST, &req_settings);
  r->parser.data = r;
  /* The URL is stored in the same bounded area as the headers, so the
   * bound is the sum; each limit is checked on its own as it grows. The
   * bounds are set anew because a reload may have changed them. */
  if (r->head.raw.max == 0) {
    sw_head_init(&r->head, 0, 0);
    sw_head_init(&r->rhead, 0, 0);
    sw_buf_init(&r->out, 0);
  }
  sw_head_reset(&r->head);
  sw_head_reset(&r->rhead);
  sw_buf_reset(&r->out);
  r->head.raw.max = cfg->max_header_size + cfg->max_url;
  r->head.max = (uint32_t)cfg->max_headers;
  r->rhead.raw.max = 64 * 1024;
  r->rhead.max = 256;
  r->out.max = cfg->max_header_size + cfg->max_url + 4096;
  sw_buf_init(&r->body, cfg->request_buffer + 2 * 64 * 1024);
  r->content_length = UINT64_MAX;
  r->rid_idx = -1;
  r->t_start = uv_hrtime();
  return r;
}

static int http_error(sw_req_t *r, int status) {
  r->error = status;
  return HPE_USER;
}

/* llhttp callbacks of the request parser. They record and decide; they
 * never free anything or call into the upstream, which happens after
 * llhttp_execute returns. */
static int on_url(llhttp_t *p, const char *at, size_t len) {
  sw_req_t *r = p->data;
  if (r->url_len + len > sw.cfg->max_url)
    return http_error(r, 414);
  if (r->url_len == 0)
    r->url_off = (uint32_t)r->head.raw.len;
  if (sw_buf_append(&r->head.raw, at, len) != 0)
    return http_error(r, 414);
  r->url_len += (uint32_t)len;
  return 0;
}

static size_t head_bytes(const sw_req_t *r) {
  return r->head.raw.len - r->url_len + 4 * r->head.n;
}

/* Trailers of a chunked body come through the header callbacks after the
 * head. They are not forwarded (they would reach the application as
 * headers nobody checked), only counted against the head size limit. */
static int trailer(sw_req_t *r, size_t len) {
  r->trailer_bytes += len + 4;
  return r->trailer_bytes > sw.cfg->max_header_size ? http_error(r, 431) : 0;
}

static int on_header_field(llhttp_t *p, const char *at, size_t len) {
  sw_req_t *r = p->data;
  int err;
  if (r->head_done)
    return trailer(r, len);
  err = sw_head_field(&r->head, at, len);
  if (err == SW_ELIMIT || head_bytes(r) > sw.cfg->max_header_size)
    return http_error(r, 431);
  if (err != 0)
    return http_error(r, 400);
  return 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t len) {
  sw_req_t *r = p->data;
  int err;
  if (r->head_done)
    return trailer(r, len);
  err = sw_head_value(&r->head, at, len);
  if (err == SW_ELIMIT || head_bytes(r) > sw.cfg->max_header_size)
    return http_error(r, 431);
  if (err != 0)
    return http_error(r, 400);
  return 0;
}

static int on_header_field_complete(llhttp_t *p) {
  sw_req_t *r = p->data;
  if (r->head_done)
    return 0;
  return sw_head_field_done(&r->head) == 0 ? 0 : http_error(r, 400);
}

static int on_header_value_complete(llhttp_t *p) {
  sw_req_t *r = p->data;
  if (r->head_done)
    return 0;
  sw_head_value_done(&r->head);
  return 0;
}

static int on_headers_complete(llhttp_t *p) {
  sw_req_t *r = p->data;
  sw_client_t *c = r->client;
  const sw_config_t *cfg = sw.cfg;
  const char *url = r->head.raw.data + r->url_off;
  int nhost = 0, nte = 0, idx = -1;

  r->head_done = 1;
  r->method = llhttp_method_name((llhttp_method_t)p->method);
  r->http_minor = p->http_minor;
  if (p->http_major != 1 || p->http_minor > 1)
    return http_error(r, 505);
  if (p->method == HTTP_CONNECT)
    return http_error(r, 405);
  /* Only origin-form, and asterisk-form for OPTIONS: an absolute URL would
   * let the request line and Host disagree about the target. */
  if (r->url_len == 0 || !(url[0] == '/' || (r->url_len == 1 && url[0] == '*' &&
                                             p->method == HTTP_OPTIONS)))
    return http_error(r, 400);
  /* One pass over the headers for the few this proxy acts on. */
  for (uint32_t i = 0; i < r->head.n; i++) {
    const char *name = sw_head_name(&r->head, i);
    uint32_t nlen = r->head.hdrs[i].name_len;
    switch (nlen) {
      case 4:
        if (sw_http_ieq(name, nlen, "host"))
          nhost++;
        break;
      case 6:
        if (idx < 0 && sw_http_ieq(name, nlen, "expect"))
          idx = (int)i;
        break;
      case 12:
        if (r->rid_idx < 0 && sw_http_ieq(name, nlen, "x-request-id") &&
            r->head.hdrs[i].value_len > 0)
          r->rid_idx = (int)i;
        break;
      case 17:
        if (sw_http_ieq(name, nlen, "transfer-encoding")) {
          /* Only chunked alone. Without chunked last the body cannot be
           * delimited (400, RFC 9112 6.3); another coding before it would
           * be dropped by our reframing and reach the application as if
           * it were the body, so it is refused as not implemented. */
          const char *v = sw_head_val(&r->head, i);
          uint32_t vlen = r->head.hdrs[i].value_len, k = vlen;
          if (!sw_http_ieq(v, vlen, "chunked")) {
            while (k > 0 && v[k - 1] != ',' && v[k - 1] != ' ')
              k--;
            return http_error(
                r, sw_http_ieq(v + k, vlen - k, "chunked") ? 501 : 400);
          }
          nte++;
        }
        break;
    }
  }
  if (nhost > 1 || (nhost == 0 && p->http_minor == 1))
    return http_error(r, 400);
  if (nte > 1 || (nte > 0 && p->http_minor == 0))
    return http_error(r, 400);
  if (r->rid_idx < 0)
    make_request_id(r->rid);
  r->keep_alive = (uint8_t)llhttp_should_keep_alive(p);
  r->head_method = p->method == HTTP_HEAD;
  r->upgrade = p->upgrade;

  if (p->flags & F_CONTENT_LENGTH)
    r->content_length = p->content_length;
  if (r->content_length != UINT64_MAX && r->content_length > cfg->max_body)
    return http_error(r, 413);

  if (idx >= 0) {
    if (!sw_http_ieq(sw_head_val(&r->head, (uint32_t)idx),
                     r->head.hdrs[idx].value_len, "100-continue"))
      return http_error(r, 417);
    if (p->http_minor == 1 &&
        ((p->flags & F_CHUNKED) ||
         (r->content_length != UINT64_MAX && r->content_length > 0))) {
      static char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
      uv_buf_t b = uv_buf_init(cont, sizeof(cont) - 1);
      (void)sw_client_send(c, &b, 1);
    }
  }

  /* Decide how the body travels. A body that fits the request buffer (and
   * the global budget) is read whole before an upstream is chosen, so a
   * slow upload never holds an application worker. */
  if ((p->flags & F_CHUNKED) ||
      (r->content_length != UINT64_MAX && r->content_length > 0)) {
    /* Reserve what the body will take now, so that many heads arriving
     * together cannot all pass the budget test and then overcommit it. */
    uint64_t want = cfg->request_buffer;
    if (r->content_length != UINT64_MAX && r->content_length < want)
      want = r->content_length;
    r->state = SW_REQ_BUFFERING;
    if (sw.buffered + want > cfg->buffer_budget ||
        (r->content_length != UINT64_MAX &&
         r->content_length > cfg->request_buffer)) {
      r->need_stream = 1;
    } else {
      r->budget = want;
      sw.buffered += want;
    }
    r->rate_start = uv_now(sw.loop);
    r->last_body = r->rate_start;
    sw_timeq_add(&sw.tq[SW_TQ_BODY], &c->tn);
  } else {
    sw_timeq_del(&c->tn);
  }
  return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t len) {
  sw_req_t *r = p->data;
  int err;

  r->body_bytes += len;
  r->rate_bytes += len;
  r->last_body = uv_now(sw.loop);
  if (r->body_bytes > sw.cfg->max_body)
    return http_error(r, 413);
  if (r->state == SW_REQ_STREAMING)
    return sw_upstream_body(r, at, len, 0) == 0 ? 0 : http_error(r, 502);
  /* Buffering; one read past the buffer's size is allowed so the switch to
   * streaming happens after this read, outside the parser. The head
   * reserved the expected size in the budget; growth past it counts too. */
  err = sw_buf_append(&r->body, at, len);
  if (r->body.cap > r->budget) {
    sw.buffered += r->body.cap - r->budget;
    r->budget = r->body.cap;
  }
  if (err != 0)
    return http_error(r, 413);
  if (r->body.len > sw.cfg->request_buffer)
    r->need_stream = 1;
  return 0;
}

static int on_chunk_header(llhttp_t *p) {
  sw_req_t *r = p->data;
  r->last_chunk = p->content_length == 0;
  return 0;
}

static int on_chunk_complete(llhttp_t *p) {
  sw_req_t *r = p->data;
  if (r->last_chunk)
    return 0;
  r->chunk_check = 1;
  return HPE_PAUSED;
}

static int on_message_complete(llhttp_t *p) {
  sw_req_t *r = p->data;
  r->complete = 1;
  return HPE_PAUSED;
}

static void settings_init(void) {
  llhttp_settings_init(&req_settings);
  req_settings.on_url = on_url;
  req_settings.on_header_field = on_header_field;
  req_settings.on_header_value = on_header_value;
  req_settings.on_header_field_complete = on_header_field_complete;
  req_settings.on_header_value_complete = on_header_value_complete;
  req_settings.on_headers_complete = on_headers_complete;
  req_settings.on_body = on_body;
  req_settings.on_message_complete = on_message_complete;
  req_settings.on_chunk_header = on_chunk_header;
  req_settings.on_chunk_complete = on_chunk_complete;
  settings_ready = 1;
}

/* Parses client bytes for the current request and acts on the result. */
static void client_parse(sw_client_t *c, const char *data, size_t len) {
  sw_req_t *r = c->req;
  llhttp_errno_t err;
  size_t used;

  if (!settings_ready)
    settings_init();
  if (r == NULL) {
    r = req_new(c);
    if (r == NULL) {
      sw_client_close(c);
      return;
    }
    c->req = r;
    sw_timeq_add(&sw.tq[SW_TQ_HEADER], &c->tn);
  }
  if (r->state == SW_REQ_HEAD && sw_http_scan_head(&r->scan, data, len) != 0) {
    sw_info("client", c->id, "bad request: bare LF in the head");
    client_error(c, 400);
    return;
  }
  for (size_t off = 0;;) {
    err = llhttp_execute(&r->parser, data + off, len - off);
    used =
        err == HPE_OK ? len : (size_t)(llhttp_get_error_pos(&r->parser) - data);
    if (used > len)
      used = len;
    if (err != HPE_PAUSED || !r->chunk_check)
      break;
    /* llhttp 8 does not insist on CRLF after chunk data; we do, since a
     * framing two parsers read differently is how requests are smuggled. */
    r->chunk_check = 0;
    {
      char b1 = used >= 2   ? data[used - 2]
                : used == 1 ? r->tail[1]
                            : r->tail[0];
      char b2 = used >= 1 ? data[used - 1] : r->tail[1];
      if (b1 != '\r' || b2 != '\n') {
        sw_info("client", c->id, "bad request: chunk data not ended by CRLF");
        client_error(c, 400);
        return;
      }
    }
    llhttp_resume(&r->parser);
    off = used;
  }
  if (len >= 2) {
    r->tail[0] = data[len - 2];
    r->tail[1] = data[len - 1];
  } else if (len == 1) {
    r->tail[0] = r->tail[1];
    r->tail[1] = data[0];
  }

  if (err == HPE_PAUSED || err == HPE_PAUSED_UPGRADE) {
    /* The request is complete; bytes after it wait for the next exchange
     * (or, after an upgrade, for the tunnel). */
    if (used < len) {
      c->pending = malloc(len - used);
      if (c->pending == NULL) {
        sw_client_close(c);
        return;
      }
      memcpy(c->pending, data + used, len - used);
      c->npending = (uint32_t)(len - used);
    }
    sw_timeq_del(&c->tn);
    if (r->upgrade)
      stop_reading(c);
    if (r->state == SW_REQ_STREAMING) {
      r->state = SW_REQ_WAITING;
      if (sw_upstream_body(r, NULL, 0, 1) != 0)
        sw_req_fail(r, 502);
      return;
    }
    r->state = SW_REQ_WAITING;
    sw_upstream_dispatch(r);
    return;
  }
  if (r->error != 0) {
    /* A callback refused the request with a status of its own. */
    client_error(c, r->error);
    return;
  }
  if (err != HPE_OK) {
    sw_info("client", c->id, "bad request: %s (%s)", llhttp_errno_name(err),
            llhttp_get_error_reason(&r->parser));
    client_error(c, 400);
    return;
  }
  if (r->state == SW_REQ_BUFFERING && r->need_stream) {
    /* Too big to buffer: route now and stream; reading resumes once the
     * upstream has the head and what was buffered. */
    r->state = SW_REQ_STREAMING;
    stop_reading(c);
    sw_timeq_del(&c->tn);
    sw_upstream_dispatch(r);
    return;
  }
  if (r->state == SW_REQ_STREAMING && r->up != NULL &&
      uv_stream_get_write_queue_size((uv_stream_t *)&r->up->tcp) >=
          SW_STREAM_HIGH_WATER) {
    /* Backpressure: the upstream is slower than the client. */
    stop_reading(c);
    sw_timeq_del(&c->tn);
  }
}

/* --- request head for the upstream ------------------------------------- */

static int append_header(sw_buf_t *b,
                         const char *name,
                         size_t nlen,
                         const char *value,
                         size_t vlen) {
  int err = sw_buf_append(b, name, nlen);
  if (err == 0)
    err = sw_buf_append(b, ": ", 2);
  if (err == 0)
    err = sw_buf_append(b, value, vlen);
  if (err == 0)
    err = sw_buf_append(b, "\r\n", 2);
  return err;
}

/* Builds the request head sent upstream into r->out: hop-by-hop headers
 * removed, the proxy's own namespace stripped, forwarding headers set and
 * the body reframed. `framing` is how the body will be sent. */
int sw_req_build_head(sw_req_t *r, sw_framing_t framing, uint64_t length) {
  sw_head_t *h = &r->head;
  sw_buf_t *b = &r->out;
  sw_client_t *c = r->client;
  struct sockaddr_storage ss;
  int trusted, err = 0, host = -1, xfp = -1, xfh = -1;
  sw_conn_tokens_t listed;
  char peer[64];
  sw_buf_t xff;

  sw_buf_reset(b);
  peer_text(c, peer, sizeof(peer));
  memset(&ss, 0, sizeof(ss));
  ss.ss_family = c->family;
  if (c->family == AF_INET)
    memcpy(&((struct sockaddr_in *)&ss)->sin_addr, c->peer, 4);
  else
    memcpy(&((struct sockaddr_in6 *)&ss)->sin6_addr, c->peer, 16);
  trusted = sw_config_trusted(sw.cfg, (struct sockaddr *)&ss);
  sw_buf_init(&xff, 8192);

  err |= sw_buf_append(b, r->method, strlen(r->method));
  err |= sw_buf_append(b, " ", 1);
  err |= sw_buf_append(b, h->raw.data + r->url_off, r->url_len);
  err |= sw_buf_append(b, " HTTP/1.1\r\n", 11);
  sw_http_conn_tokens(h, &listed);
  for (uint32_t i = 0; i < h->n; i++) {
    const char *name = sw_head_name(h, i);
    size_t nlen = h->hdrs[i].name_len;
    const char *val = sw_head_val(h, i);
    size_t vlen = h->hdrs[i].value_len;

    if (sw_http_is_hop(name, nlen) ||
        sw_http_conn_listed(h, &listed, name, nlen) ||
        sw_http_ieq(name, nlen, "content-length") ||
        sw_http_ieq(name, nlen, "expect") ||
        sw_http_iprefix(name, nlen, "x-switchd-"))
      continue;
    if (sw_http_ieq(name, nlen, "x-forwarded-for")) {
      /* Only a trusted proxy may tell us who the client was. */
      if (trusted) {
        if (xff.len > 0)
          (void)sw_buf_append(&xff, ", ", 2);
        (void)sw_buf_append(&xff, val, vlen);
      }
      continue;
    }
    if (sw_http_ieq(name, nlen, "x-forwarded-proto")) {
      if (trusted && xfp < 0) {
        xfp = (int)i;
        err |= append_header(b, name, nlen, val, vlen);
      }
      continue;
    }
    if (sw_http_ieq(name, nlen, "x-forwarded-host")) {
      if (trusted && xfh < 0) {
        xfh = (int)i;
        err |= append_header(b, name, nlen, val, vlen);
      }
      continue;
    }
    if (sw_http_ieq(name, nlen, "host"))
      host = (int)i;
    err |= append_header(b, name, nlen, val, vlen);
  }
  if (xff.len > 0)
    (void)sw_buf_append(&xff, ", ", 2);
  (void)sw_buf_append(&xff, peer, strlen(peer));
  err |= append_header(b, "X-Forwarded-For", 15, xff.data, xff.len);
  sw_buf_free(&xff);
  if (xfp < 0)
    err |= r->client->tls != NULL
               ? sw_buf_append(b, "X-Forwarded-Proto: https\r\n", 26)
               : sw_buf_append(b, "X-Forwarded-Proto: http\r\n", 25);
  if (xfh < 0 && host >= 0)
    err |=
        append_header(b, "X-Forwarded-Host", 16, sw_head_val(h, (uint32_t)host),
                      h->hdrs[host].value_len);
  if (r->rid_idx < 0)
    err |= append_header(b, "X-Request-Id", 12, r->rid, 32);
  if (r->upgrade) {
    int u = sw_http_find(h, "upgrade", NULL);
    err |= sw_buf_append(b, "Connection: upgrade\r\n", 21);
    if (u >= 0)
      err |= append_header(b, "Upgrade", 7, sw_head_val(h, (uint32_t)u),
                           h->hdrs[u].value_len);
  }
  if (framing == SW_FRAME_LENGTH) {
    err |= sw_buf_append(b, "Content-Length: ", 16);
    err |= sw_buf_append_u64(b, length);
    err |= sw_buf_append(b, "\r\n", 2);
  } else if (framing == SW_FRAME_CHUNKED)
    err |= sw_buf_append(b, "Transfer-Encoding: chunked\r\n", 28);
  err |= sw_buf_append(b, "\r\n", 2);
  return err != 0 ? SW_ELIMIT : 0;
}
