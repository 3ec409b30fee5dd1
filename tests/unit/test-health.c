/* Unit tests of the health checker (proxy/health.c) with real sockets on
 * 127.0.0.1 and a real uv loop. The servers are written here, on the same
 * loop: each answers a scripted reply per connection (bytes, a close
 * without answering, or silence) and records what it received. One test
 * also runs tests/integration/upstream.py as a child process, so it must run
 * from the repository root (tests/run-unit does).
 *
 * Covered: rise and fall counted exactly; flapping never changes the state;
 * refused connections, timeouts bounded by timeout_ms, redirects not
 * followed, body substrings, strict parsing of bad responses, the exact
 * request bytes and Host override, probe_now, stopping with a probe in
 * flight, from a callback and before start, and the colour helper. Every
 * test ends with uv_loop_close() == 0. Intervals are 50 ms; the binary runs
 * in a few seconds.
 *
 * Over TLS: a scripted server can speak TLS through a server-side sw_tls
 * context, with a CA and a certificate for health.test and 127.0.0.1 made
 * here with OpenSSL's APIs in a temporary directory removed at exit. Covered:
 * a probe passing with the right CA and name (SNI sent, the request exactly
 * as over plain HTTP) or IP, the checker's own reference on the context,
 * a wrong name, a wrong IP and an unknown CA failing with X509's reason,
 * a plain HTTP server, a close during the handshake and a silent server
 * (the timeout covers the handshake), responses judged as over plain HTTP,
 * a close_notify before a response, and stopping mid-handshake. */

#include <dirent.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "sw_config.h"
#include "sw_health.h"
#include "sw_list.h"
#include "sw_test.h"
#include "sw_tls.h"

/* How late a timer may fire before the test calls it wrong: generous, for
 * a loaded machine and the sanitizer build. */
#define LATE_MS 300
#define MAXR 64

static uv_loop_t loop;
static uv_timer_t guard;

static void on_guard(uv_timer_t *t) {}

/* Each test has its own loop. A referenced repeating timer makes every
 * UV_RUN_ONCE return within 5 ms, so run_until can check its deadline. */
static void loop_begin(void) {
  SW_CHECK_INT_EQ(uv_loop_init(&loop), 0);
  SW_CHECK_INT_EQ(uv_timer_init(&loop, &guard), 0);
  SW_CHECK_INT_EQ(uv_timer_start(&guard, on_guard, 5, 5), 0);
}

static void loop_end_at(const char *file, int line) {
  uv_close((uv_handle_t *)&guard, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  SW_CHECK_INT_EQ_AT(file, line, uv_loop_close(&loop), 0);
}
#define loop_end() loop_end_at(__FILE__, __LINE__)

static int run_until(int (*done)(void *), void *arg, uint64_t max_ms) {
  uint64_t end;
  uv_update_time(&loop);
  end = uv_now(&loop) + max_ms;
  while (!done(arg) && uv_now(&loop) < end)
    uv_run(&loop, UV_RUN_ONCE);
  return done(arg);
}

static int never(void *arg) {
  return 0;
}

static void run_for(uint64_t ms) {
  run_until(never, NULL, ms);
}

/* --- scripted servers ---------------------------------------------------- */

typedef enum reply_act_e {
  REPLY_SEND = 0, /* send the bytes, then close */
  REPLY_CLOSE,    /* close without a byte once the request is read */
  REPLY_SILENT,   /* read the request, never answer */
  REPLY_KEEP,     /* send the bytes, then neither send nor close */
} reply_act_t;

typedef struct reply_s {
  reply_act_t act;
  const char *bytes;
  size_t len; /* 0: strlen(bytes) */
} reply_t;

typedef struct srv_s {
  uv_tcp_t tcp;
  int port;
  /* Speak TLS with this server context; NULL: plain. */
  sw_tls_ctx_t *tls;
  /* Answer at the first bytes received, request or not, as a plain HTTP
   * server answers a TLS ClientHello with a 400. */
  int answer_any;
  int handshakes; /* TLS handshakes completed */
  int tls_errors; /* TLS connections that failed (not close_notify) */
  char sni[256];  /* SNI of the last handshake */
  /* Connection i gets replies[i], the last one for every later
   * connection; with `cycle`, replies[i % n]. */
  const reply_t *replies;
  int nreplies;
  int cycle;
  int accepted;
  int requests; /* complete request heads read */
  int eofs;     /* connections the client closed first */
  int open;
  char last_req[4096];
  size_t last_len;
  sw_list_t conns;
} srv_t;

typedef struct sconn_s {
  uv_tcp_t tcp;
  uv_write_t w;
  srv_t *srv;
  sw_list_t link;
  int index;
  char buf[4096];
  size_t len;
  int answered;
  sw_tls_t *tls; /* when the server speaks TLS */
  int handshaken;
} sconn_t;

/* Ciphertext on its way to the probe; the request owns its bytes. */
typedef struct sout_s {
  uv_write_t w;
  sconn_t *c;
  int close_after;
  char data[];
} sout_t;

static void on_sconn_close(uv_handle_t *h) {
  sconn_t *c = sw_container_of(h, sconn_t, tcp);
  sw_list_remove(&c->link);
  c->srv->open--;
  sw_tls_free(c->tls);
  free(c);
}

static void sconn_close(sconn_t *c) {
  if (!uv_is_closing((uv_handle_t *)&c->tcp))
    uv_close((uv_handle_t *)&c->tcp, on_sconn_close);
}

static void on_sent(uv_write_t *w, int status) {
  sconn_close(sw_container_of(w, sconn_t, w));
}

static void on_salloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  static char b[65536];
  buf->base = b;
  buf->len = sizeof(b);
}

static void on_stls_sent(uv_write_t *w, int status) {
  sout_t *out = sw_container_of(w, sout_t, w);
  sconn_t *c = out->c;
  int close_after = out->close_after;
  free(out);
  if (status != 0 || close_after)
    sconn_close(c);
}

/* Writes what the server's TLS has for the socket; with close_after, closes
 * the connection once it is sent. */
static void sconn_flush(sconn_t *c, int close_after) {
  size_t n = sw_tls_out_pending(c->tls);
  sout_t *out;
  uv_buf_t b;

  if (n == 0) {
    if (close_after)
      sconn_close(c);
    return;
  }
  out = malloc(sizeof(*out) + n);
  if (out == NULL)
    abort();
  out->c = c;
  out->close_after = close_after;
  b = uv_buf_init(out->data, (unsigned)sw_tls_take_out(c->tls, out->data, n));
  if (uv_write(&out->w, (uv_stream_t *)&c->tcp, &b, 1, on_stls_sent) != 0) {
    free(out);
    sconn_close(c);
  }
}

/* Sends a reply's bytes; with close_after, closes once they are sent (over
 * TLS after a close_notify). */
static void sconn_send(sconn_t *c,
                       const char *bytes,
                       size_t len,
                       int close_after) {
  if (c->tls == NULL && len == 0) {
    sconn_close(c);
    return;
  }
  if (c->tls == NULL) {
    uv_buf_t b = uv_buf_init((char *)bytes, (unsigned)len);
    if (uv_write(&c->w, (uv_stream_t *)&c->tcp, &b, 1,
                 close_after ? on_sent : NULL) != 0)
      sconn_close(c);
    return;
  }
  if (len > 0 && sw_tls_write(c->tls, bytes, len) != 0) {
    sconn_close(c);
    return;
  }
  if (close_after)
    sw_tls_shutdown(c->tls);
  sconn_flush(c, close_after);
}

/* Request bytes (plaintext over TLS): once a whole head is in (or any byte
 * with answer_any), the scripted reply. */
static void sconn_input(sconn_t *c, const char *data, size_t len) {
  srv_t *srv = c->srv;
  const reply_t *r;
  size_t take;
  int i;

  take = len < sizeof(c->buf) - c->len ? len : sizeof(c->buf) - c->len;
  memcpy(c->buf + c->len, data, take);
  c->len += take;
  if (c->answered ||
      (!srv->answer_any && memmem(c->buf, c->len, "\r\n\r\n", 4) == NULL))
    return;
  c->answered = 1;
  srv->requests++;
  memcpy(srv->last_req, c->buf, c->len);
  srv->last_len = c->len;
  i = srv->cycle                 ? c->index % srv->nreplies
      : c->index < srv->nreplies ? c->index
                                 : srv->nreplies - 1;
  r = &srv->replies[i];
  if (r->act == REPLY_CLOSE) {
    sconn_send(c, "", 0, 1);
  } else if (r->act == REPLY_SEND || r->act == REPLY_KEEP) {
    sconn_send(c, r->bytes, r->len ? r->len : strlen(r->bytes),
               r->act == REPLY_SEND);
  }
}

static void on_sread(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  static char plain[65536];
  sconn_t *c = sw_container_of(s, sconn_t, tcp);
  srv_t *srv = c->srv;

  if (uv_is_closing((uv_handle_t *)&c->tcp))
    return;
  if (nread < 0) {
    srv->eofs++;
    sconn_close(c);
    return;
  }
  if (c->tls == NULL) {
    sconn_input(c, buf->base, (size_t)nread);
    return;
  }
  if (sw_tls_feed(c->tls, buf->base, (size_t)nread) != 0) {
    sconn_close(c);
    return;
  }
  for (;;) {
    ssize_t n = sw_tls_read(c->tls, plain, sizeof(plain));
    sconn_flush(c, 0);
    if (!c->handshaken && sw_tls_handshake_done(c->tls)) {
      c->handshaken = 1;
      srv->handshakes++;
      snprintf(srv->sni, sizeof(srv->sni), "%s", sw_tls_sni(c->tls));
    }
    if (n < 0) {
      if (n != SW_TLS_ECLOSED)
        srv->tls_errors++;
      sconn_close(c);
      return;
    }
    if (n == 0)
      return;
    sconn_input(c, plain, (size_t)n);
    if (uv_is_closing((uv_handle_t *)&c->tcp))
      return;
  }
}

static void on_sconn(uv_stream_t *server, int status) {
  srv_t *srv = sw_container_of(server, srv_t, tcp);
  sconn_t *c;

  if (status != 0)
    return;
  c = calloc(1, sizeof(*c));
  if (c == NULL)
    abort();
  c->srv = srv;
  sw_list_init(&c->link);
  uv_tcp_init(&loop, &c->tcp);
  if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
    uv_close((uv_handle_t *)&c->tcp, on_sconn_close);
    srv->open++;
    sw_list_append(&srv->conns, &c->link);
    return;
  }
  c->index = srv->accepted++;
  srv->open++;
  sw_list_append(&srv->conns, &c->link);
  if (srv->tls != NULL && (c->tls = sw_tls_new(srv->tls)) == NULL)
    abort();
  uv_read_start((uv_stream_t *)&c->tcp, on_salloc, on_sread);
}

/* A server on 127.0.0.1 answering `replies`, over TLS with server context
 * `tls` unless it is NULL. */
static int srv_start_tls(srv_t *srv,
                         const reply_t *replies,
                         int n,
                         sw_tls_ctx_t *tls) {
  struct sockaddr_in a;
  struct sockaddr_storage bound;
  int len = sizeof(bound);

  memset(srv, 0, sizeof(*srv));
  srv->tls = tls;
  srv->replies = replies;
  srv->nreplies = n;
  sw_list_init(&srv->conns);
  uv_ip4_addr("127.0.0.1", 0, &a);
  if (!SW_CHECK_INT_EQ(uv_tcp_init(&loop, &srv->tcp), 0) ||
      !SW_CHECK_INT_EQ(uv_tcp_bind(&srv->tcp, (struct sockaddr *)&a, 0), 0) ||
      !SW_CHECK_INT_EQ(uv_listen((uv_stream_t *)&srv->tcp, 64, on_sconn), 0))
    return -1;
  uv_tcp_getsockname(&srv->tcp, (struct sockaddr *)&bound, &len);
  srv->port = ntohs(((struct sockaddr_in *)&bound)->sin_port);
  return 0;
}

static int srv_start(srv_t *srv, const reply_t *replies, int n) {
  return srv_start_tls(srv, replies, n, NULL);
}

static void srv_close(srv_t *srv) {
  while (!sw_list_empty(&srv->conns)) {
    sconn_t *c = sw_container_of(srv->conns.next, sconn_t, link);
    sw_list_remove(&c->link);
    sconn_close(c);
  }
  uv_close((uv_handle_t *)&srv->tcp, NULL);
}

/* A port on 127.0.0.1 with nobody listening (bound once, then closed). */
static int free_port(void) {
  uv_tcp_t t;
  struct sockaddr_in a;
  struct sockaddr_storage bound;
  int len = sizeof(bound);
  int port;

  uv_ip4_addr("127.0.0.1", 0, &a);
  uv_tcp_init(&loop, &t);
  uv_tcp_bind(&t, (struct sockaddr *)&a, 0);
  uv_tcp_getsockname(&t, (struct sockaddr *)&bound, &len);
  port = ntohs(((struct sockaddr_in *)&bound)->sin_port);
  uv_close((uv_handle_t *)&t, NULL);
  uv_run(&loop, UV_RUN_NOWAIT);
  return port;
}

/* --- checkers and what they report ---------------------------------------- */

typedef struct rec_s {
  int n;
  sw_health_result_t r[MAXR];
  char reason[MAXR][SW_HEALTH_REASON_MAX];
  uint64_t at[MAXR]; /* loop time of the callback */
  int stop_at;       /* stop from the callback at this result (0: never) */
  int stopped;       /* sw_health_stop was called */
  int after_stop;    /* callbacks after stop: must stay 0 */
  int closed;        /* close callbacks */
  /* At result `switch_at`, the server gets new replies. */
  int switch_at;
  srv_t *switch_srv;
  const reply_t *switch_to;
  int switch_n;
} rec_t;

static void on_hclosed(sw_health_t *h) {
  rec_t *rec = h->data;
  rec->closed++;
}

static void stop(sw_health_t *h) {
  rec_t *rec = h->data;
  rec->stopped = 1;
  sw_health_stop(h, on_hclosed);
}

static void on_result(sw_health_t *h, const sw_health_result_t *r) {
  rec_t *rec = h->data;

  if (rec->stopped)
    rec->after_stop++;
  if (rec->n < MAXR) {
    rec->r[rec->n] = *r;
    snprintf(rec->reason[rec->n], SW_HEALTH_REASON_MAX, "%s", r->reason);
    rec->r[rec->n].reason = rec->reason[rec->n];
    rec->at[rec->n] = uv_now(h->loop);
    rec->n++;
  }
  if (rec->switch_at != 0 && rec->n == rec->switch_at) {
    rec->switch_srv->replies = rec->switch_to;
    rec->switch_srv->nreplies = rec->switch_n;
    /* Replies are picked by connection index: restart the script. */
    rec->switch_srv->accepted = 0;
  }
  if (rec->stop_at != 0 && rec->n == rec->stop_at)
    stop(h);
}

typedef struct want_s {
  rec_t *rec;
  int n;
} want_t;

static int have_n(void *arg) {
  want_t *w = arg;
  return w->rec->n >= w->n;
}

static int wait_results(rec_t *rec, int n, uint64_t max_ms) {
  want_t w = {rec, n};
  return run_until(have_n, &w, max_ms);
}

static void fast_params(sw_health_params_t *p) {
  sw_health_params_default(p);
  p->path = "/health";
  p->interval_ms = 50;
  p->timeout_ms = 500;
  p->rise = 1;
  p->fall = 1;
}

static sw_health_t *checker_at(const char *file,
                               int line,
                               int port,
                               const sw_health_params_t *p,
                               rec_t *rec,
                               sw_health_state_t initial) {
  struct sockaddr_in a;
  sw_health_t *h = NULL;

  uv_ip4_addr("127.0.0.1", port, &a);
  if (!SW_CHECK_INT_EQ_AT(file, line,
                          sw_health_new(&loop, (struct sockaddr *)&a, NULL, p,
                                        on_result, rec, &h),
                          0))
    abort();
  SW_CHECK_INT_EQ_AT(file, line, sw_health_start(h, initial), 0);
  return h;
}
#define checker(port, p, rec, initial) \
  checker_at(__FILE__, __LINE__, port, p, rec, initial)

/* One probe against a server answering `reply` (over TLS with server
 * context `tls` unless NULL; at the first bytes with answer_any): the first
 * result is left in rec and what the server received in srv. */
static void probe_once_on(const reply_t *reply,
                          const sw_health_params_t *p,
                          rec_t *rec,
                          srv_t *srv,
                          sw_tls_ctx_t *tls,
                          int answer_any) {
  sw_health_t *h;

  memset(rec, 0, sizeof(*rec));
  loop_begin();
  if (srv_start_tls(srv, reply, 1, tls) != 0)
    abort();
  srv->answer_any = answer_any;
  h = checker(srv->port, p, rec, SW_HEALTH_DOWN);
  rec->stop_at = 1;
  SW_CHECK(wait_results(rec, 1, 3000));
  run_for(20);
  SW_CHECK_INT_EQ(rec->closed, 1);
  SW_CHECK_INT_EQ(rec->after_stop, 0);
  (void)h;
  SW_CHECK_INT_EQ(srv->open, 0);
  srv_close(srv);
  loop_end();
}

static void probe_once(const reply_t *reply,
                       const sw_health_params_t *p,
                       rec_t *rec,
                       srv_t *srv) {
  probe_once_on(reply, p, rec, srv, NULL, 0);
}

static const char ok_200[] =
    "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";
static const char svc_503[] =
    "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 2\r\n\r\nok";

/* --- tests -----------------------------------------------------------------
 */

static void test_params(void) {
  sw_health_params_t p, bad;
  struct sockaddr_in a;
  sw_health_t *h = (sw_health_t *)&a; /* must be reset to NULL */
  rec_t rec;

  sw_health_params_default(&p);
  SW_CHECK_STR_EQ(p.path, "/health/detailed/");
  SW_CHECK(p.host == NULL);
  SW_CHECK(p.body == NULL);
  SW_CHECK_INT_EQ(p.status_min, 200);
  SW_CHECK_INT_EQ(p.status_max, 299);
  SW_CHECK_UINT_EQ(p.interval_ms, 2000);
  SW_CHECK_UINT_EQ(p.timeout_ms, 1000);
  SW_CHECK_UINT_EQ(p.rise, 3);
  SW_CHECK_UINT_EQ(p.fall, 3);

  memset(&rec, 0, sizeof(rec));
  loop_begin();
  uv_ip4_addr("127.0.0.1", 9, &a);
#define BAD(field, value)                                                   \
  do {                                                                      \
    bad = p;                                                                \
    bad.field = value;                                                      \
    SW_CHECK_INT_EQ(sw_health_new(&loop, (struct sockaddr *)&a, NULL, &bad, \
                                  on_result, &rec, &h),                     \
                    UV_EINVAL);                                             \
    SW_CHECK(h == NULL);                                                    \
  } while (0)
  BAD(path, "health");
  BAD(path, "/a b");
  BAD(path, "/a\r\nX-Evil: 1");
  BAD(path, "");
  BAD(host, "a.example\r\nX-Evil: 1");
  BAD(host, "");
  BAD(body, "");
  BAD(status_min, 300);
  BAD(status_max, 600);
  BAD(status_min, 99);
  BAD(interval_ms, 0);
  BAD(timeout_ms, 0);
  BAD(rise, 0);
  BAD(fall, 0);
#undef BAD

  /* Created, never started, stopped: closes cleanly, no result. */
  SW_CHECK_INT_EQ(sw_health_new(&loop, (struct sockaddr *)&a, "blue-1", &p,
                                on_result, &rec, &h),
                  0);
  SW_CHECK_STR_EQ(h->name, "blue-1");
  SW_CHECK_INT_EQ(h->state, SW_HEALTH_DOWN);
  SW_CHECK_INT_EQ(sw_health_probe_now(h, NULL), UV_EINVAL);
  stop(h);
  stop(h); /* idempotent */
  run_for(20);
  SW_CHECK_INT_EQ(rec.closed, 1);
  SW_CHECK_INT_EQ(rec.n, 0);
  SW_CHECK_STR_EQ(sw_health_state_name(SW_HEALTH_UP), "up");
  SW_CHECK_STR_EQ(sw_health_state_name(SW_HEALTH_DOWN), "down");
  loop_end();
}

/* Down to up after exactly `rise` passes, probes an interval apart. */
static void test_rise(void) {
  static const reply_t replies[] = {{REPLY_SEND, ok_200, 0}};
  sw_health_params_t p;
  srv_t srv;
  rec_t rec;
  sw_health_t *h;

  memset(&rec, 0, sizeof(rec));
  loop_begin();
  srv_start(&srv, replies, 1);
  fast_params(&p);
  p.rise = 3;
  p.fall = 2;
  h = checker(srv.port, &p, &rec, SW_HEALTH_DOWN);
  SW_CHECK_INT_EQ(h->state, SW_HEALTH_DOWN);
  SW_CHECK_INT_EQ(sw_health_start(h, SW_HEALTH_DOWN), UV_EALREADY);
  SW_CHECK(wait_results(&rec, 4, 3000));
  for (int i = 0; i < 4; i++) {
    SW_CHECK_UINT_EQ(rec.r[i].seq, (unsigned)i + 1);
    SW_CHECK_INT_EQ(rec.r[i].pass, 1);
    SW_CHECK_INT_EQ(rec.r[i].status, 200);
    SW_CHECK_STR_EQ(rec.r[i].reason, "");
    SW_CHECK_UINT_EQ(rec.r[i].passes, (unsigned)i + 1);
    SW_CHECK_UINT_EQ(rec.r[i].fails, 0);
    SW_CHECK_INT_EQ(rec.r[i].state, i >= 2 ? SW_HEALTH_UP : SW_HEALTH_DOWN);
    SW_CHECK_INT_EQ(rec.r[i].changed, i == 2);
    SW_CHECK(rec.r[i].wall_ms > 0);
    if (i > 0 && !SW_CHECK(rec.r[i].started_ms - rec.r[i - 1].started_ms >=
                           p.interval_ms))
      printf(
          "  probes %d and %d started %llu ms apart\n", i, i + 1,
          (unsigned long long)(rec.r[i].started_ms - rec.r[i - 1].started_ms));
  }
  SW_CHECK_INT_EQ(srv.requests, rec.n);
  SW_CHECK_UINT_EQ(h->transitions, 1);
  SW_CHECK_UINT_EQ(h->last.seq, (uint64_t)rec.n);
  SW_CHECK_INT_EQ(h->last.pass, 1);
  SW_CHECK_STR_EQ(h->last_failure, "");
  stop(h);
  run_for(20);
  SW_CHECK_INT_EQ(rec.after_stop, 0);
  SW_CHECK_INT_EQ(rec.closed, 1);
  /* Each probe was its own connection, and each was closed. */
  SW_CHECK_INT_EQ(srv.accepted, srv.requests);
  SW_CHECK_INT_EQ(srv.open, 0);
  srv_close(&srv);
  loop_end();
}

/* Up to down after exactly `fall` failures. */
static void test_fall(void) {
  static const reply_t good[] = {{REPLY_SEND, ok_200, 0}};
  static const reply_t bad[] = {{REPLY_SEND, svc_503, 0}};
  sw_health_params_t p;
  srv_t srv;
  rec_t rec;
  sw_health_t *h;

  memset(&rec, 0, sizeof(rec));
  loop_begin();
  srv_start(&srv, good, 1);
  fast_params(&p);
  p.rise = 2;
  p.fall = 3;
  /* After the second pass (up), the server starts failing. */
  rec.switch_at = 2;
  rec.switch_srv = &srv;
  rec.switch_to = bad;
  rec.switch_n = 1;
  h = checker(srv.port, &p, &rec, SW_HEALTH_DOWN);
  SW_CHECK(wait_results(&rec, 6, 3000));
  SW_CHECK_INT_EQ(rec.r[1].state, SW_HEALTH_UP);
  SW_CHECK_INT_EQ(rec.r[1].changed, 1);
  for (int i = 2; i < 6; i++) {
    SW_CHECK_INT_EQ(rec.r[i].pass, 0);
    SW_CHECK_INT_EQ(rec.r[i].status, 503);
    SW_CHECK_STR_EQ(rec.r[i].reason, "status 503");
    SW_CHECK_UINT_EQ(rec.r[i].fails, (unsigned)i - 1);
    SW_CHECK_UINT_EQ(rec.r[i].passes, 0);
    SW_CHECK_INT_EQ(rec.r[i].state, i >= 4 ? SW_HEALTH_DOWN : SW_HEALTH_UP);
    SW_CHECK_INT_EQ(rec.r[i].changed, i == 4);
  }
  SW_CHECK_UINT_EQ(h->transitions, 2);
  SW_CHECK_STR_EQ(h->last_failure, "status 503");
  SW_CHECK(h->last_failure_wall_ms > 0);
  SW_CHECK(h->failures >= 4);
  stop(h);
  run_for(20);
  SW_CHECK_INT_EQ(rec.after_stop, 0);
  srv_close(&srv);
  loop_end();
}

/* Alternating pass and fail: with rise 2 a down server never comes up, and
 * with fall 2 an up server (given as the initial state) never goes down. */
static void test_flapping(void) {
  static const reply_t flap[] = {{REPLY_SEND, ok_200, 0},
                                 {REPLY_SEND, svc_503, 0}};
  sw_health_params_t p;
  srv_t s1, s2;
  rec_t down, up;
  sw_health_t *h1, *h2;

  memset(&down, 0, sizeof(down));
  memset(&up, 0, sizeof(up));
  loop_begin();
  srv_start(&s1, flap, 2);
  srv_start(&s2, flap, 2);
  s1.cycle = s2.cycle = 1;
  fast_params(&p);
  p.rise = 2;
  p.fall = 2;
  h1 = checker(s1.port, &p, &down, SW_HEALTH_DOWN);
  h2 = checker(s2.port, &p, &up, SW_HEALTH_UP);
  SW_CHECK_INT_EQ(h2->state, SW_HEALTH_UP);
  SW_CHECK(wait_results(&down, 10, 4000));
  SW_CHECK(wait_results(&up, 10, 4000));
  for (int i = 0; i < 10; i++) {
    SW_CHECK_INT_EQ(down.r[i].pass, i % 2 == 0);
    SW_CHECK_INT_EQ(down.r[i].state, SW_HEALTH_DOWN);
    SW_CHECK_INT_EQ(down.r[i].changed, 0);
    SW_CHECK(down.r[i].passes <= 1);
    SW_CHECK_INT_EQ(up.r[i].state, SW_HEALTH_UP);
    SW_CHECK_INT_EQ(up.r[i].changed, 0);
    SW_CHECK(up.r[i].fails <= 1);
  }
  SW_CHECK_UINT_EQ(h1->transitions, 0);
  SW_CHECK_UINT_EQ(h2->transitions, 0);
  stop(h1);
  stop(h2);
  run_for(20);
  SW_CHECK_INT_EQ(down.after_stop + up.after_stop, 0);
  srv_close(&s1);
  srv_close(&s2);
  loop_end();
}

static void test_refused(void) {
  sw_health_params_t p;
  rec_t rec;
  sw_health_t *h;
  int port;

  memset(&rec, 0, sizeof(rec));
  loop_begin();
  port = free_port();
  fast_params(&p);
  p.fall = 2;
  h = checker(port, &p, &rec, SW_HEALTH_UP);
  SW_CHECK(wait_results(&rec, 2, 3000));
  SW_CHECK_INT_EQ(rec.r[0].pass, 0);
  SW_CHECK_INT_EQ(rec.r[0].status, 0);
  SW_CHECK_STR_EQ(rec.r[0].reason, "connect: ECONNREFUSED");
  SW_CHECK_INT_EQ(rec.r[0].state, SW_HEALTH_UP);
  SW_CHECK_INT_EQ(rec.r[1].state, SW_HEALTH_DOWN);
  SW_CHECK_INT_EQ(rec.r[1].changed, 1);
  SW_CHECK(rec.r[0].duration_ms < LATE_MS);
  stop(h);
  run_for(20);
  SW_CHECK_INT_EQ(rec.after_stop, 0);
  loop_end();
}

/* A server that accepts and never answers: the probe fails at timeout_ms,
 * not before and not much after, and its connection is closed. */
static void test_timeout(void) {
  static const reply_t silent[] = {{REPLY_SILENT, NULL, 0}};
  sw_health_params_t p;
  srv_t srv;
  rec_t rec;
  sw_health_t *h;

  memset(&rec, 0, sizeof(rec));
  loop_begin();
  srv_start(&srv, silent, 1);
  fast_params(&p);
  p.timeout_ms = 150;
  h = checker(srv.port, &p, &rec, SW_HEALTH_DOWN);
  SW_CHECK(wait_results(&rec, 2, 3000));
  for (int i = 0; i < 2; i++) {
    SW_CHECK_STR_EQ(rec.r[i].reason, "timeout after 150 ms");
    SW_CHECK_INT_EQ(rec.r[i].status, 0);
    if (!SW_CHECK(rec.r[i].duration_ms >= 150 &&
                  rec.r[i].duration_ms < 150 + LATE_MS))
      printf("  duration %llu ms\n", (unsigned long long)rec.r[i].duration_ms);
    SW_CHECK(rec.at[i] - rec.r[i].started_ms < 150 + LATE_MS);
  }
  /* The interval (50 ms) is shorter than the timeout: the next probe
   * starts when the last one ends, never while it runs. */
  SW_CHECK(rec.r[1].started_ms >= rec.r[0].started_ms + 150);
  SW_CHECK_INT_EQ(srv.requests, 2);
  run_for(20);
  SW_CHECK(srv.eofs >= 2); /* both timed-out connections were closed */
  stop(h);
  run_for(20);
  SW_CHECK_INT_EQ(rec.after_stop, 0);
  srv_close(&srv);
  loop_end();
}

/* A 302 is a failure that names the reason, and its Location is never
 * contacted; accepted as configured (status_max 399) it passes, still
 * without following. */
static void test_redirect(void) {
  static const reply_t target[] = {{REPLY_SEND, ok_200, 0}};
  static char found[256];
  static reply_t redirect[] = {{REPLY_SEND, found, 0}};
  sw_health_params_t p;
  srv_t a, b;
  rec_t r1, r2;
  sw_health_t *h1, *h2;

  memset(&r1, 0, sizeof(r1));
  memset(&r2, 0, sizeof(r2));
  loop_begin();
  srv_start(&b, target, 1);
  snprintf(found, sizeof(found),
           "HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:%d/health\r\n"
           "Content-Length: 0\r\n\r\n",
           b.port);
  srv_start(&a, redirect, 1);
  fast_params(&p);
  h1 = checker(a.port, &p, &r1, SW_HEALTH_DOWN);
  p.status_max = 399;
  h2 = checker(a.port, &p, &r2, SW_HEALTH_DOWN);
  SW_CHECK(wait_results(&r1, 3, 3000));
  SW_CHECK(wait_results(&r2, 3, 3000));
  for (int i = 0; i < 3; i++) {
    SW_CHECK_INT_EQ(r1.r[i].pass, 0);
    SW_CHECK_INT_EQ(r1.r[i].status, 302);
    SW_CHECK_STR_EQ(r1.r[i].reason, "status 302 (redirects are not followed)");
    SW_CHECK_INT_EQ(r2.r[i].pass, 1);
    SW_CHECK_INT_EQ(r2.r[i].status, 302);
  }
  SW_CHECK_INT_EQ(b.accepted, 0);
  stop(h1);
  stop(h2);
  run_for(20);
  SW_CHECK_INT_EQ(b.accepted, 0);
  srv_close(&a);
  srv_close(&b);
  loop_end();
}

static void check_once_at(const char *file,
                          int line,
                          const char *response,
                          size_t len,
                          const char *body,
                          int pass,
                          const char *reason) {
  reply_t reply[1] = {{REPLY_SEND, response, len}};
  sw_health_params_t p;
  srv_t srv;
  rec_t rec;

  fast_params(&p);
  p.body = body;
  probe_once(reply, &p, &rec, &srv);
  if (!SW_CHECK_INT_EQ_AT(file, line, rec.n, 1))
    return;
  SW_CHECK_INT_EQ_AT(file, line, rec.r[0].pass, pass);
  SW_CHECK_STR_EQ_AT(file, line, rec.r[0].reason, reason);
}
#define check_once(response, body, pass, reason) \
  check_once_at(__FILE__, __LINE__, response, 0, body, pass, reason)

static void test_body(void) {
  static char big[70000 + 200];
  int n;

  check_once("HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nall ok here", "ok",
             1, "");
  check_once("HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nfine", "ok", 0,
             "body does not contain \"ok\"");
  check_once("HTTP/1.1 204 No Content\r\n\r\n", "ok", 0,
             "body does not contain \"ok\"");
  check_once("HTTP/1.1 204 No Content\r\n\r\n", NULL, 1, "");
  /* The body is matched across chunk boundaries. */
  check_once(
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
      "1\r\no\r\n1\r\nk\r\n0\r\n\r\n",
      "ok", 1, "");
  /* A body delimited by the close. */
  check_once("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nstatus: ok", "ok", 1,
             "");
  /* A good body does not save a bad status. */
  check_once(svc_503, "ok", 0, "status 503");
  check_once(
      "HTTP/1.1 200 OK\r\nContent-Length: 18\r\n\r\n"
      "{\"db\": \"ok\", \"x\":1}",
      "\"db\": \"ok\"", 1, "");

  /* Only the first SW_HEALTH_BODY_MAX bytes are read. */
  n = snprintf(big, sizeof(big),
               "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", 70000 + 2);
  memset(big + n, 'x', 70000);
  memcpy(big + n + 70000, "ok", 2);
  check_once_at(__FILE__, __LINE__, big, (size_t)n + 70002, "ok", 0,
                "body does not contain \"ok\" (in the first 65536 bytes)");
  memcpy(big + n + 1000, "ok", 2);
  check_once_at(__FILE__, __LINE__, big, (size_t)n + 70002, "ok", 1, "");
}

/* Responses the proxy would refuse fail, each with its own reason. */
static void test_invalid(void) {
  static char huge[SW_HEALTH_HEAD_MAX + 1024];
  static const reply_t closes[] = {{REPLY_CLOSE, NULL, 0}};
  static const reply_t stall_503[] = {
      {REPLY_KEEP, "HTTP/1.1 503 Busy\r\nContent-Length: 1000\r\n\r\npartial",
       0}};
  static const reply_t stall_200[] = {
      {REPLY_KEEP, "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nok", 0}};
  sw_health_params_t p;
  srv_t srv;
  rec_t rec;
  int n;

  check_once("hello, this is not HTTP\r\n\r\n", NULL, 0,
             "invalid response: Expected HTTP/");
  check_once("HTTP/1.1 200 OK\r\nContent-Le", NULL, 0,
             "closed before the response was complete");
  check_once("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nok", NULL, 0,
             "closed before the response was complete");
  check_once("HTTP/1.1 200 OK\nContent-Length: 2\n\nok", NULL, 0,
             "invalid response: bare LF or folded header line");
  check_once(
      "HTTP/1.1 200 OK\r\nX-A: 1\r\n folded\r\nContent-Length: 0\r\n\r\n", NULL,
      0, "invalid response: bare LF or folded header line");
  check_once(
      "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked"
      "\r\n\r\nok",
      NULL, 0,
      "invalid response: Content-Length can't be present with "
      "Transfer-Encoding");
  /* Interim responses are skipped; the final one is judged. */
  check_once(
      "HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n"
      "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
      "ok", 1, "");
  check_once(
      "HTTP/1.1 100 Continue\r\n\r\n"
      "HTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n",
      NULL, 0, "status 503");

  /* A head that never ends is cut at SW_HEALTH_HEAD_MAX. */
  n = snprintf(huge, sizeof(huge), "HTTP/1.1 200 OK\r\nX-Big: ");
  memset(huge + n, 'a', sizeof(huge) - (size_t)n);
  check_once_at(__FILE__, __LINE__, huge, sizeof(huge), NULL, 0,
                "invalid response: head over 65536 bytes");

  fast_params(&p);
  probe_once(closes, &p, &rec, &srv);
  SW_CHECK_STR_EQ(rec.r[0].reason, "closed before response");
  SW_CHECK_INT_EQ(rec.r[0].status, 0);

  /* A failing status is judged from the head: a body that stalls does not
   * turn it into a timeout. */
  probe_once(stall_503, &p, &rec, &srv);
  SW_CHECK_STR_EQ(rec.r[0].reason, "status 503");
  SW_CHECK(rec.r[0].duration_ms < p.timeout_ms);
  /* A passing status with a stalled body is a timeout. */
  probe_once(stall_200, &p, &rec, &srv);
  SW_CHECK_STR_EQ(rec.r[0].reason, "timeout after 500 ms");
  SW_CHECK_INT_EQ(rec.r[0].status, 200);
}

/* The exact request bytes: path, Host (default and override), User-Agent,
 * Connection: close. */
static void test_request(void) {
  static const reply_t replies[] = {{REPLY_SEND, ok_200, 0}};
  sw_health_params_t p;
  srv_t srv;
  rec_t rec;
  char want[512];

  fast_params(&p);
  p.path = "/health/detailed/?from=switchd";
  p.host = "app.example.com";
  probe_once(replies, &p, &rec, &srv);
  SW_CHECK_INT_EQ(rec.r[0].pass, 1);
  srv.last_req[srv.last_len < sizeof(srv.last_req) ? srv.last_len
                                                   : sizeof(srv.last_req) - 1] =
      '\0';
  SW_CHECK_STR_EQ(srv.last_req,
                  "GET /health/detailed/?from=switchd HTTP/1.1\r\n"
                  "Host: app.example.com\r\n"
                  "User-Agent: switchd-health\r\n"
                  "Connection: close\r\n\r\n");
  SW_CHECK_INT_EQ(srv.accepted, 1);

  fast_params(&p);
  probe_once(replies, &p, &rec, &srv);
  srv.last_req[srv.last_len < sizeof(srv.last_req) ? srv.last_len
                                                   : sizeof(srv.last_req) - 1] =
      '\0';
  snprintf(want, sizeof(want),
           "GET /health HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
           "User-Agent: switchd-health\r\nConnection: close\r\n\r\n",
           srv.port);
  SW_CHECK_STR_EQ(srv.last_req, want);
}

static int srv_has_request(void *arg) {
  return ((srv_t *)arg)->requests >= 1;
}

/* probe_now runs a fresh probe at once, counts toward rise, and never runs
 * a second probe while one is in flight. */
static void test_probe_now(void) {
  static const reply_t good[] = {{REPLY_SEND, ok_200, 0}};
  static const reply_t silent[] = {{REPLY_SILENT, NULL, 0}};
  sw_health_params_t p;
  srv_t srv, quiet;
  rec_t rec, rq;
  sw_health_t *h, *hq;
  uint64_t seq = 0, seq2 = 0, asked;

  memset(&rec, 0, sizeof(rec));
  memset(&rq, 0, sizeof(rq));
  loop_begin();
  srv_start(&srv, good, 1);
  srv_start(&quiet, silent, 1);
  fast_params(&p);
  p.interval_ms = 10000;
  p.rise = 2;
  h = checker(srv.port, &p, &rec, SW_HEALTH_DOWN);
  SW_CHECK(wait_results(&rec, 1, 3000));
  SW_CHECK_INT_EQ(rec.r[0].state, SW_HEALTH_DOWN);

  /* Idle: a new probe, numbered next; asking twice makes one probe. */
  SW_CHECK_INT_EQ(sw_health_probe_now(h, &seq), 0);
  SW_CHECK_INT_EQ(sw_health_probe_now(h, &seq2), 0);
  SW_CHECK_UINT_EQ(seq, 2);
  SW_CHECK_UINT_EQ(seq2, 2);
  asked = uv_now(&loop);
  SW_CHECK(wait_results(&rec, 2, 3000));
  SW_CHECK_UINT_EQ(rec.r[1].seq, 2);
  SW_CHECK(rec.at[1] - asked < LATE_MS);
  SW_CHECK(rec.r[1].started_ms >= asked);
  /* The extra probe counted: rise 2 reached. */
  SW_CHECK_INT_EQ(rec.r[1].state, SW_HEALTH_UP);
  SW_CHECK_INT_EQ(rec.r[1].changed, 1);
  run_for(100);
  SW_CHECK_INT_EQ(rec.n, 2);
  SW_CHECK_INT_EQ(srv.accepted, 2);

  /* In flight: the answer is the running probe's result, no second one. */
  p.timeout_ms = 200;
  hq = checker(quiet.port, &p, &rq, SW_HEALTH_DOWN);
  SW_CHECK(run_until(srv_has_request, &quiet, 3000));
  SW_CHECK_INT_EQ(hq->phase, SW_HEALTH_PROBING);
  SW_CHECK_INT_EQ(sw_health_probe_now(hq, &seq), 0);
  SW_CHECK_UINT_EQ(seq, 1);
  SW_CHECK(wait_results(&rq, 1, 3000));
  SW_CHECK_UINT_EQ(rq.r[0].seq, 1);
  SW_CHECK_STR_EQ(rq.r[0].reason, "timeout after 200 ms");
  run_for(100);
  SW_CHECK_INT_EQ(rq.n, 1);
  SW_CHECK_INT_EQ(quiet.accepted, 1);

  stop(h);
  stop(hq);
  SW_CHECK_INT_EQ(sw_health_probe_now(h, NULL), UV_EINVAL);
  run_for(20);
  SW_CHECK_INT_EQ(rec.after_stop + rq.after_stop, 0);
  srv_close(&srv);
  srv_close(&quiet);
  loop_end();
}

/* Stop with a probe in flight: its connection closes, no callback comes,
 * the close callback runs once and the loop closes clean. Also stopping
 * from inside the callback. */
static void test_stop(void) {
  static const reply_t silent[] = {{REPLY_SILENT, NULL, 0}};
  static const reply_t good[] = {{REPLY_SEND, ok_200, 0}};
  sw_health_params_t p;
  srv_t srv, s2;
  rec_t rec, r2;
  sw_health_t *h;

  memset(&rec, 0, sizeof(rec));
  memset(&r2, 0, sizeof(r2));
  loop_begin();
  srv_start(&srv, silent, 1);
  srv_start(&s2, good, 1);
  fast_params(&p);
  p.timeout_ms = 100;
  h = checker(srv.port, &p, &rec, SW_HEALTH_DOWN);
  SW_CHECK(run_until(srv_has_request, &srv, 3000));
  SW_CHECK_INT_EQ(h->phase, SW_HEALTH_PROBING);
  stop(h);
  run_for(300); /* past the timeout the probe had */
  SW_CHECK_INT_EQ(rec.n, 0);
  SW_CHECK_INT_EQ(rec.closed, 1);
  SW_CHECK_INT_EQ(srv.eofs, 1);
  SW_CHECK_INT_EQ(srv.accepted, 1);

  r2.stop_at = 1;
  (void)checker(s2.port, &p, &r2, SW_HEALTH_DOWN);
  run_for(300);
  SW_CHECK_INT_EQ(r2.n, 1);
  SW_CHECK_INT_EQ(r2.closed, 1);
  SW_CHECK_INT_EQ(r2.after_stop, 0);
  SW_CHECK_INT_EQ(s2.accepted, 1);
  srv_close(&srv);
  srv_close(&s2);
  loop_end();
}

/* A colour is healthy iff one of its servers is up. */
static void test_any_up(void) {
  static const reply_t good[] = {{REPLY_SEND, ok_200, 0}};
  sw_health_params_t p;
  srv_t srv;
  rec_t ra, rb;
  sw_health_t *hs[2];
  sw_health_t *with_null[2];
  int port;

  memset(&ra, 0, sizeof(ra));
  memset(&rb, 0, sizeof(rb));
  loop_begin();
  srv_start(&srv, good, 1);
  port = free_port();
  fast_params(&p);
  hs[0] = checker(srv.port, &p, &ra, SW_HEALTH_DOWN);
  hs[1] = checker(port, &p, &rb, SW_HEALTH_DOWN);
  SW_CHECK_INT_EQ(sw_health_any_up(hs, 2), 0); /* unknown is down */
  SW_CHECK(wait_results(&ra, 1, 3000));
  SW_CHECK(wait_results(&rb, 1, 3000));
  SW_CHECK_INT_EQ(hs[0]->state, SW_HEALTH_UP);
  SW_CHECK_INT_EQ(hs[1]->state, SW_HEALTH_DOWN);
  SW_CHECK_INT_EQ(sw_health_any_up(hs, 2), 1);
  SW_CHECK_INT_EQ(sw_health_any_up(hs + 1, 1), 0);
  SW_CHECK_INT_EQ(sw_health_any_up(hs, 0), 0);
  with_null[0] = NULL;
  with_null[1] = hs[0];
  SW_CHECK_INT_EQ(sw_health_any_up(with_null, 2), 1);
  stop(hs[0]);
  stop(hs[1]);
  run_for(20);
  srv_close(&srv);
  loop_end();
}

/* --- over TLS --------------------------------------------------------------
 */

#define TLS_CONF "test.conf"

/* Made once per process by the first TLS test, removed at exit: a CA the
 * probes trust, another they do not know, and a certificate for health.test
 * and 127.0.0.1 issued by the first (served without its chain, so a client
 * that does not trust the CA cannot find an issuer). */
static struct {
  int ready;
  char dir[64];
  char ca[128];
  char other_ca[128];
  char leaf[128];
  char leaf_key[128];
} fx;

static void fx_cleanup(void) {
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
  fx.ready = 0;
}

static void add_ext(X509 *x, X509V3_CTX *v3, int nid, const char *value) {
  X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, v3, nid, value);
  if (!SW_CHECK(e != NULL))
    return;
  SW_CHECK_INT_EQ(X509_add_ext(x, e, -1), 1);
  X509_EXTENSION_free(e);
}

/* A certificate valid from yesterday for 30 days: a CA when issuer is NULL
 * (self-signed), else a server certificate with subjectAltName san. */
static X509 *make_cert(const char *cn,
                       const char *san,
                       EVP_PKEY *key,
                       X509 *issuer,
                       EVP_PKEY *issuer_key,
                       long serial) {
  X509 *x = X509_new();
  X509V3_CTX v3;
  X509_NAME *name;

  if (x == NULL)
    abort();
  X509_set_version(x, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(x), serial);
  X509_time_adj_ex(X509_getm_notBefore(x), -1, 0, NULL);
  X509_time_adj_ex(X509_getm_notAfter(x), 30, 0, NULL);
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
    add_ext(x, &v3, NID_subject_alt_name, san);
  }
  SW_CHECK(X509_sign(x, issuer_key != NULL ? issuer_key : key, EVP_sha256()) >
           0);
  return x;
}

static void write_cert(const char *path, X509 *x) {
  FILE *f = fopen(path, "w");
  if (!SW_CHECK(f != NULL))
    return;
  SW_CHECK_INT_EQ(PEM_write_X509(f, x), 1);
  fclose(f);
}

static void write_key(const char *path, EVP_PKEY *key) {
  FILE *f = fopen(path, "w");
  if (!SW_CHECK(f != NULL))
    return;
  SW_CHECK_INT_EQ(PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL), 1);
  fclose(f);
}

static void fixtures(void) {
  EVP_PKEY *ca_key, *other_key, *leaf_key;
  X509 *ca, *other, *leaf;

  if (fx.ready)
    return;
  snprintf(fx.dir, sizeof(fx.dir), "/tmp/sw-test-health-XXXXXX");
  if (mkdtemp(fx.dir) == NULL)
    abort();
  fx.ready = 1;
  atexit(fx_cleanup);
  snprintf(fx.ca, sizeof(fx.ca), "%s/ca.pem", fx.dir);
  snprintf(fx.other_ca, sizeof(fx.other_ca), "%s/other-ca.pem", fx.dir);
  snprintf(fx.leaf, sizeof(fx.leaf), "%s/health.pem", fx.dir);
  snprintf(fx.leaf_key, sizeof(fx.leaf_key), "%s/health.key", fx.dir);

  ca_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
  other_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
  leaf_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
  if (ca_key == NULL || other_key == NULL || leaf_key == NULL)
    abort();
  ca = make_cert("switchd health test CA", NULL, ca_key, NULL, NULL, 1);
  other = make_cert("some other CA", NULL, other_key, NULL, NULL, 2);
  leaf = make_cert("health.test", "DNS:health.test,IP:127.0.0.1", leaf_key, ca,
                   ca_key, 3);
  write_cert(fx.ca, ca);
  write_cert(fx.other_ca, other);
  write_cert(fx.leaf, leaf);
  write_key(fx.leaf_key, leaf_key);
  X509_free(ca);
  X509_free(other);
  X509_free(leaf);
  EVP_PKEY_free(ca_key);
  EVP_PKEY_free(other_key);
  EVP_PKEY_free(leaf_key);
}

/* The server's context: health.test's certificate, the config defaults. */
static sw_tls_ctx_t *server_ctx(void) {
  sw_tls_conf_t conf;
  sw_tls_ctx_t *ctx = NULL;
  char err[512] = "";

  fixtures();
  memset(&conf, 0, sizeof(conf));
  conf.certs[0].cert = fx.leaf;
  conf.certs[0].key = fx.leaf_key;
  conf.certs[0].line = 3;
  conf.ncerts = 1;
  conf.min_version = 12;
  conf.tickets = 1;
  conf.ticket_rotate_ms = 3600 * 1000;
  conf.session_cache = 20000;
  conf.session_timeout_ms = 300 * 1000;
  conf.handshake_timeout_ms = 10 * 1000;
  conf.line = 2;
  if (!SW_CHECK_INT_EQ(sw_tls_ctx_new(TLS_CONF, &conf, (int64_t)time(NULL),
                                      &ctx, err, sizeof(err)),
                       0)) {
    printf("  error: %s\n", err);
    abort();
  }
  return ctx;
}

/* A probe's context, trusting ca_file. */
static sw_tls_ctx_t *client_ctx(const char *ca_file) {
  sw_tls_ctx_t *ctx = NULL;
  char err[512] = "";

  fixtures();
  if (!SW_CHECK_INT_EQ(sw_tls_client_ctx_new(TLS_CONF, 7, ca_file, 1, &ctx, err,
                                             sizeof(err)),
                       0)) {
    printf("  error: %s\n", err);
    abort();
  }
  return ctx;
}

/* One TLS probe: the server speaks TLS with `sctx` (plain when NULL), the
 * probe trusts ca_file and checks name, else ip. */
static void tls_probe_once(const reply_t *reply,
                           sw_tls_ctx_t *sctx,
                           int answer_any,
                           const char *ca_file,
                           const char *name,
                           const char *ip,
                           rec_t *rec,
                           srv_t *srv) {
  sw_health_params_t p;
  sw_tls_ctx_t *cctx = client_ctx(ca_file);

  fast_params(&p);
  p.timeout_ms = 300;
  p.tls = cctx;
  p.tls_name = name;
  p.tls_ip = ip;
  p.body = "ok";
  probe_once_on(reply, &p, rec, srv, sctx, answer_any);
  sw_tls_ctx_unref(cctx);
}

/* Passes with the right CA and name, probe after probe, each on its own
 * TLS connection that ends cleanly; the checker holds its own reference on
 * the context, so the owner may drop its own at once. */
static void test_tls_pass(void) {
  static const reply_t replies[] = {{REPLY_SEND, ok_200, 0}};
  sw_tls_ctx_t *sctx = server_ctx();
  sw_tls_ctx_t *cctx = client_ctx(fx.ca);
  sw_health_params_t p;
  srv_t srv;
  rec_t rec;
  sw_health_t *h;
  char want[512];

  memset(&rec, 0, sizeof(rec));
  loop_begin();
  srv_start_tls(&srv, replies, 1, sctx);
  fast_params(&p);
  p.rise = 2;
  p.body = "ok";
  p.tls = cctx;
  p.tls_name = "health.test";
  h = checker(srv.port, &p, &rec, SW_HEALTH_DOWN);
  sw_tls_ctx_unref(cctx);
  SW_CHECK(wait_results(&rec, 3, 3000));
  for (int i = 0; i < 3; i++) {
    if (!SW_CHECK_STR_EQ(rec.r[i].reason, ""))
      continue;
    SW_CHECK_INT_EQ(rec.r[i].pass, 1);
    SW_CHECK_INT_EQ(rec.r[i].status, 200);
  }
  SW_CHECK_INT_EQ(h->state, SW_HEALTH_UP);
  stop(h);
  run_for(50);
  SW_CHECK_INT_EQ(rec.closed, 1);
  SW_CHECK_INT_EQ(rec.after_stop, 0);
  SW_CHECK(srv.handshakes >= 3);
  SW_CHECK_INT_EQ(srv.handshakes, srv.accepted);
  SW_CHECK_INT_EQ(srv.requests, srv.accepted);
  SW_CHECK_INT_EQ(srv.tls_errors, 0);
  SW_CHECK_INT_EQ(srv.open, 0);
  SW_CHECK_STR_EQ(srv.sni, "health.test");
  /* The request is the same bytes as over plain HTTP. */
  srv.last_req[srv.last_len < sizeof(srv.last_req) ? srv.last_len
                                                   : sizeof(srv.last_req) - 1] =
      '\0';
  snprintf(want, sizeof(want),
           "GET /health HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
           "User-Agent: switchd-health\r\nConnection: close\r\n\r\n",
           srv.port);
  SW_CHECK_STR_EQ(srv.last_req, want);
  srv_close(&srv);
  loop_end();
  sw_tls_ctx_unref(sctx);
}

/* Without a name the certificate must carry the IP: the one given, or the
 * address probed when none is. */
static void test_tls_ip(void) {
  static const reply_t replies[] = {{REPLY_SEND, ok_200, 0}};
  sw_tls_ctx_t *sctx = server_ctx();
  srv_t srv;
  rec_t rec;

  tls_probe_once(replies, sctx, 0, fx.ca, NULL, "127.0.0.1", &rec, &srv);
  SW_CHECK_STR_EQ(rec.r[0].reason, "");
  SW_CHECK_INT_EQ(rec.r[0].pass, 1);
  SW_CHECK_STR_EQ(srv.sni, "");

  tls_probe_once(replies, sctx, 0, fx.ca, NULL, NULL, &rec, &srv);
  SW_CHECK_STR_EQ(rec.r[0].reason, "");
  SW_CHECK_INT_EQ(rec.r[0].pass, 1);

  tls_probe_once(replies, sctx, 0, fx.ca, NULL, "127.0.0.2", &rec, &srv);
  SW_CHECK_INT_EQ(rec.r[0].pass, 0);
  SW_CHECK_STR_CONTAINS(rec.r[0].reason, "tls: certificate verify failed: ");
  SW_CHECK_STR_CONTAINS(rec.r[0].reason, "mismatch");
  SW_CHECK_INT_EQ(srv.requests, 0);
  sw_tls_ctx_unref(sctx);
}

/* Verification failures fail the probe with X509's reason, and no request
 * is sent to a server that could not prove who it is. */
static void test_tls_verify(void) {
  static const reply_t replies[] = {{REPLY_SEND, ok_200, 0}};
  sw_tls_ctx_t *sctx = server_ctx();
  srv_t srv;
  rec_t rec;

  tls_probe_once(replies, sctx, 0, fx.ca, "other.test", NULL, &rec, &srv);
  SW_CHECK_INT_EQ(rec.r[0].pass, 0);
  SW_CHECK_INT_EQ(rec.r[0].status, 0);
  SW_CHECK_STR_EQ(rec.r[0].reason,
                  "tls: certificate verify failed: hostname mismatch");
  SW_CHECK_INT_EQ(srv.requests, 0);
  SW_CHECK_INT_EQ(srv.handshakes, 0);

  tls_probe_once(replies, sctx, 0, fx.other_ca, "health.test", NULL, &rec,
                 &srv);
  SW_CHECK_INT_EQ(rec.r[0].pass, 0);
  SW_CHECK_STR_EQ(rec.r[0].reason,
                  "tls: certificate verify failed: unable to get local issuer "
                  "certificate");
  SW_CHECK_INT_EQ(srv.requests, 0);
  SW_CHECK_INT_EQ(srv.handshakes, 0);
  sw_tls_ctx_unref(sctx);
}

/* A server that does not speak TLS: a plain HTTP answer to the ClientHello
 * is a TLS error, a close a failed handshake, silence a timeout. */
static void test_tls_plain_server(void) {
  static const reply_t bad_request[] = {
      {REPLY_SEND,
       "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n"
       "Connection: close\r\n\r\n",
       0}};
  static const reply_t closes[] = {{REPLY_CLOSE, NULL, 0}};
  static const reply_t silent[] = {{REPLY_SILENT, NULL, 0}};
  srv_t srv;
  rec_t rec;

  tls_probe_once(bad_request, NULL, 1, fx.ca, "health.test", NULL, &rec, &srv);
  SW_CHECK_INT_EQ(rec.r[0].pass, 0);
  SW_CHECK_INT_EQ(rec.r[0].status, 0);
  if (!SW_CHECK(strncmp(rec.r[0].reason, "tls: ", 5) == 0 &&
                strlen(rec.r[0].reason) > 5))
    printf("  reason: \"%s\"\n", rec.r[0].reason);
  SW_CHECK_INT_EQ(srv.accepted, 1);

  tls_probe_once(closes, NULL, 1, fx.ca, "health.test", NULL, &rec, &srv);
  SW_CHECK_STR_EQ(rec.r[0].reason,
                  "tls: connection closed during the handshake");

  /* The timeout bounds the handshake too. */
  tls_probe_once(silent, NULL, 1, fx.ca, "health.test", NULL, &rec, &srv);
  SW_CHECK_STR_EQ(rec.r[0].reason, "timeout after 300 ms");
  SW_CHECK_INT_EQ(srv.accepted, 1);
}

/* Once the handshake is done, the response is judged as over plain HTTP. */
static void test_tls_response(void) {
  static const reply_t busy[] = {{REPLY_SEND, svc_503, 0}};
  static const reply_t closes[] = {{REPLY_CLOSE, NULL, 0}};
  static const reply_t silent[] = {{REPLY_SILENT, NULL, 0}};
  static const reply_t by_close[] = {
      {REPLY_SEND, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nstatus: ok",
       0}};
  static const reply_t cut[] = {
      {REPLY_SEND, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nok", 0}};
  static const reply_t no_body[] = {
      {REPLY_SEND, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nfine", 0}};
  sw_tls_ctx_t *sctx = server_ctx();
  srv_t srv;
  rec_t rec;

  tls_probe_once(busy, sctx, 0, fx.ca, "health.test", NULL, &rec, &srv);
  SW_CHECK_STR_EQ(rec.r[0].reason, "status 503");
  SW_CHECK_INT_EQ(rec.r[0].status, 503);
  /* A close_notify before any response. */
  tls_probe_once(closes, sctx, 0, fx.ca, "health.test", NULL, &rec, &srv);
  SW_CHECK_STR_EQ(rec.r[0].reason, "closed before response");
  SW_CHECK_INT_EQ(srv.requests, 1);
  /* A body delimited by the close (close_notify, then FIN). */
  tls_probe_once(by_close, sctx, 0, fx.ca, "health.test", NULL, &rec, &srv);
  SW_CHECK_STR_EQ(rec.r[0].reason, "");
  SW_CHECK_INT_EQ(rec.r[0].pass, 1);
  tls_probe_once(cut, sctx, 0, fx.ca, "health.test", NULL, &rec, &srv);
  SW_CHECK_STR_EQ(rec.r[0].reason, "closed before the response was complete");
  tls_probe_once(no_body, sctx, 0, fx.ca, "health.test", NULL, &rec, &srv);
  SW_CHECK_STR_EQ(rec.r[0].reason, "body does not contain \"ok\"");
  tls_probe_once(silent, sctx, 0, fx.ca, "health.test", NULL, &rec, &srv);
  SW_CHECK_STR_EQ(rec.r[0].reason, "timeout after 300 ms");
  SW_CHECK_INT_EQ(srv.handshakes, 1);
  sw_tls_ctx_unref(sctx);
}

/* Bad names to verify are refused; stopping mid-handshake closes cleanly
 * with no callback. */
static void test_tls_params_and_stop(void) {
  static const reply_t silent[] = {{REPLY_SILENT, NULL, 0}};
  sw_tls_ctx_t *cctx = client_ctx(fx.ca);
  sw_health_params_t p;
  struct sockaddr_in a;
  sw_health_t *h = NULL;
  srv_t srv;
  rec_t rec;

  memset(&rec, 0, sizeof(rec));
  loop_begin();
  uv_ip4_addr("127.0.0.1", 9, &a);
  fast_params(&p);
  p.tls = cctx;
  p.tls_name = "";
  SW_CHECK_INT_EQ(sw_health_new(&loop, (struct sockaddr *)&a, NULL, &p,
                                on_result, &rec, &h),
                  UV_EINVAL);
  p.tls_name = "a b.test";
  SW_CHECK_INT_EQ(sw_health_new(&loop, (struct sockaddr *)&a, NULL, &p,
                                on_result, &rec, &h),
                  UV_EINVAL);
  p.tls_name = NULL;
  p.tls_ip = "127.0.0.1\n";
  SW_CHECK_INT_EQ(sw_health_new(&loop, (struct sockaddr *)&a, NULL, &p,
                                on_result, &rec, &h),
                  UV_EINVAL);
  SW_CHECK(h == NULL);

  /* A server that accepts and never answers the ClientHello. */
  srv_start(&srv, silent, 1);
  srv.answer_any = 1;
  p.tls_name = "health.test";
  p.tls_ip = NULL;
  h = checker(srv.port, &p, &rec, SW_HEALTH_DOWN);
  SW_CHECK(run_until(srv_has_request, &srv, 3000));
  SW_CHECK_INT_EQ(h->phase, SW_HEALTH_PROBING);
  stop(h);
  run_for(100);
  SW_CHECK_INT_EQ(rec.n, 0);
  SW_CHECK_INT_EQ(rec.closed, 1);
  SW_CHECK_INT_EQ(srv.eofs, 1);
  SW_CHECK_INT_EQ(srv.open, 0);
  srv_close(&srv);
  loop_end();
  sw_tls_ctx_unref(cctx);
}

/* --- against tests/integration/upstream.py ------------------------------ */

typedef struct child_s {
  uv_process_t proc;
  int exited;
} child_t;

static void on_child_exit(uv_process_t *proc, int64_t status, int sig) {
  child_t *c = sw_container_of(proc, child_t, proc);
  c->exited = 1;
}

static int is_exited(void *arg) {
  return ((child_t *)arg)->exited;
}

static int is_up(void *arg) {
  return ((sw_health_t *)arg)->state == SW_HEALTH_UP;
}

typedef struct py_case_s {
  const char *path;
  const char *host;
  const char *body;
  int pass;
  const char *reason;
  rec_t rec;
  sw_health_t *h;
  int base;
} py_case_t;

static void test_python_upstream(void) {
  py_case_t cases[] = {
      {.path = "/status/200", .pass = 1, .reason = ""},
      {.path = "/status/503", .reason = "status 503"},
      {.path = "/status/302",
       .reason = "status 302 (redirects are not followed)"},
      {.path = "/drop", .reason = "closed before response"},
      /* The Host override arrives: /echo lists the headers received. */
      {.path = "/echo",
       .host = "app.example.com",
       .body = "[\"Host\", \"app.example.com\"]",
       .pass = 1,
       .reason = ""},
      {.path = "/",
       .body = "green",
       .reason = "body does not contain \"green\""},
  };
  size_t ncases = sizeof(cases) / sizeof(cases[0]);
  uv_process_options_t opts;
  uv_stdio_container_t stdio[3];
  char port_text[16];
  char *args[] = {"/usr/bin/python3",
                  "tests/integration/upstream.py",
                  "--port",
                  port_text,
                  "--name",
                  "blue",
                  NULL};
  child_t child;
  sw_health_params_t p;
  int port;

  memset(&child, 0, sizeof(child));
  loop_begin();
  port = free_port();
  snprintf(port_text, sizeof(port_text), "%d", port);
  memset(&opts, 0, sizeof(opts));
  memset(stdio, 0, sizeof(stdio));
  stdio[0].flags = UV_IGNORE;
  stdio[1].flags = UV_IGNORE;
  stdio[2].flags = UV_INHERIT_FD;
  stdio[2].data.fd = 2;
  opts.file = args[0];
  opts.args = args;
  opts.exit_cb = on_child_exit;
  opts.stdio = stdio;
  opts.stdio_count = 3;
  if (!SW_CHECK_INT_EQ(uv_spawn(&loop, &child.proc, &opts), 0)) {
    loop_end();
    return;
  }

  for (size_t i = 0; i < ncases; i++) {
    fast_params(&p);
    p.path = cases[i].path;
    p.host = cases[i].host;
    p.body = cases[i].body;
    p.rise = 2;
    memset(&cases[i].rec, 0, sizeof(cases[i].rec));
    cases[i].h = checker(port, &p, &cases[i].rec, SW_HEALTH_DOWN);
  }
  /* Until the child listens, probes are refused: wait for the first one to
   * come up, then for one more result of every checker. */
  SW_CHECK(run_until(is_up, cases[0].h, 10000));
  for (size_t i = 0; i < ncases; i++)
    cases[i].base = cases[i].rec.n;
  for (size_t i = 0; i < ncases; i++) {
    rec_t *r = &cases[i].rec;
    if (!SW_CHECK(wait_results(r, cases[i].base + 1, 3000)))
      continue;
    if (!SW_CHECK_INT_EQ(r->r[r->n - 1].pass, cases[i].pass) ||
        !SW_CHECK_STR_EQ(r->r[r->n - 1].reason, cases[i].reason))
      printf("  case %s\n", cases[i].path);
  }
  for (size_t i = 0; i < ncases; i++)
    stop(cases[i].h);
  uv_process_kill(&child.proc, SIGTERM);
  SW_CHECK(run_until(is_exited, &child, 5000));
  uv_close((uv_handle_t *)&child.proc, NULL);
  run_for(20);
  for (size_t i = 0; i < ncases; i++) {
    SW_CHECK_INT_EQ(cases[i].rec.closed, 1);
    SW_CHECK_INT_EQ(cases[i].rec.after_stop, 0);
  }
  loop_end();
}

SW_TEST_MAIN(SW_TASK(test_params),
             SW_TASK(test_rise),
             SW_TASK(test_fall),
             SW_TASK(test_flapping),
             SW_TASK(test_refused),
             SW_TASK(test_timeout),
             SW_TASK(test_redirect),
             SW_TASK(test_body),
             SW_TASK(test_invalid),
             SW_TASK(test_request),
             SW_TASK(test_probe_now),
             SW_TASK(test_stop),
             SW_TASK(test_any_up),
             SW_TASK(test_tls_pass),
             SW_TASK(test_tls_ip),
             SW_TASK(test_tls_verify),
             SW_TASK(test_tls_plain_server),
             SW_TASK(test_tls_response),
             SW_TASK(test_tls_params_and_stop),
             SW_TASK(test_python_upstream))
