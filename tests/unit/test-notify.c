/* Unit tests of the webhook notifier (proxy/notify.c) with real sockets on
 * 127.0.0.1 and a real uv loop. The receivers are written here, on the same
 * loop: each reads a whole request (head and Content-Length body), records
 * it, and answers with a scripted reply per connection (bytes then close,
 * a close without a byte, or silence).
 *
 * Covered: URL parsing and its errors; exact request bytes and bodies, in
 * order, one connection at a time; the caller's body left untouched; retries
 * after 500 with the backoff; refused connections, failure reasons and the
 * warn line; a receiver that never answers bounded by timeout_ms without
 * holding up later notifications; bad answers; a full queue dropping its
 * oldest; stop with an attempt in flight and entries queued (ASan checks the
 * frees); start, stop, start with and without running the loop; name
 * lookups, one at a time however long the resolver takes (a stand-in
 * resolver the test answers at will), and a real one of "localhost". Counters
 * are process-wide, so tests compare deltas. Every test ends with
 * uv_loop_close() == 0; an alarm bounds each test at 60 s, and the binary
 * runs in about 4 s. */

#include <netdb.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "sw_list.h"
#include "sw_log.h"
#include "sw_notify.h"
#include "sw_test.h"
#include "sw_types.h"

/* How late a timer may fire before the test calls it wrong: generous, for
 * a loaded machine and the sanitizer build. */
#define LATE_MS 300
#define MAXREQ 128

static uv_loop_t loop;
static uv_timer_t guard;

static void on_guard(uv_timer_t *t) {}

/* Each test has its own loop. A referenced repeating timer makes every
 * UV_RUN_ONCE return within 5 ms, so run_until can check its deadline. The
 * alarm kills a test that hangs anyway (tests/run-unit then counts the
 * missing tally as a failure). */
static void loop_begin(void) {
  alarm(60);
  SW_CHECK_INT_EQ(uv_loop_init(&loop), 0);
  SW_CHECK_INT_EQ(uv_timer_init(&loop, &guard), 0);
  SW_CHECK_INT_EQ(uv_timer_start(&guard, on_guard, 5, 5), 0);
}

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

static void count_handle(uv_handle_t *h, void *arg) {
  (*(int *)arg)++;
}

/* Only the guard timer is left. */
static int only_guard(void *arg) {
  int n = 0;
  uv_walk(&loop, count_handle, &n);
  return n == 1;
}

static int handles_open(void) {
  int n = 0;
  uv_walk(&loop, count_handle, &n);
  return n;
}

/* At most *arg handles are open (closing ones count as open). */
static int handles_at_most(void *arg) {
  return handles_open() <= *(int *)arg;
}

/* Waits (bounded) for every handle but the guard to be closed, then closes
 * the loop: a handle left open is a failed check, not a hang. */
static void loop_end_at(const char *file, int line) {
  int clean = run_until(only_guard, NULL, 3000);
  SW_CHECK_AT(file, line, clean);
  uv_close((uv_handle_t *)&guard, NULL);
  if (clean)
    uv_run(&loop, UV_RUN_DEFAULT);
  else
    uv_run(&loop, UV_RUN_NOWAIT);
  SW_CHECK_INT_EQ_AT(file, line, uv_loop_close(&loop), 0);
  alarm(0);
}
#define loop_end() loop_end_at(__FILE__, __LINE__)

/* --- scripted receivers -------------------------------------------------- */

typedef enum reply_act_e {
  REPLY_SEND = 0, /* send the bytes, then close */
  REPLY_CLOSE,    /* close without a byte once the request is read */
  REPLY_SILENT,   /* read the request, never answer */
} reply_act_t;

typedef struct reply_s {
  reply_act_t act;
  const char *bytes;
} reply_t;

typedef struct srv_s {
  uv_tcp_t tcp;
  int port;
  /* Connection i gets replies[i], the last one for every later one. */
  const reply_t *replies;
  int nreplies;
  int accepted;
  int requests; /* complete requests read */
  int open;
  int busy;    /* connections accepted but neither answered nor ended */
  int overlap; /* accepts while another connection was busy */
  uint64_t accept_ms[MAXREQ];
  char *head[MAXREQ]; /* of request i, NUL-terminated */
  char *body[MAXREQ];
  sw_list_t conns;
} srv_t;

typedef struct sconn_s {
  uv_tcp_t tcp;
  uv_write_t w;
  srv_t *srv;
  sw_list_t link;
  int index;
  char buf[16384];
  size_t len;
  int answered;
  int busy;
} sconn_t;

static void sconn_idle(sconn_t *c) {
  if (c->busy) {
    c->busy = 0;
    c->srv->busy--;
  }
}

static void on_sconn_close(uv_handle_t *h) {
  sconn_t *c = sw_container_of(h, sconn_t, tcp);
  sw_list_remove(&c->link);
  c->srv->open--;
  free(c);
}

static void sconn_close(sconn_t *c) {
  sconn_idle(c);
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

/* The request is complete once the head and Content-Length bytes of body
 * are in; returns the body's offset or 0. */
static size_t request_complete(sconn_t *c) {
  const char *end = memmem(c->buf, c->len, "\r\n\r\n", 4);
  const char *cl;
  size_t head_len;
  unsigned long n;

  if (end == NULL)
    return 0;
  head_len = (size_t)(end - c->buf) + 4;
  cl = memmem(c->buf, head_len, "\r\nContent-Length: ", 18);
  if (cl == NULL)
    return head_len;
  n = strtoul(cl + 18, NULL, 10);
  return c->len >= head_len + n ? head_len : 0;
}

static void on_sread(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  sconn_t *c = sw_container_of(s, sconn_t, tcp);
  srv_t *srv = c->srv;
  const reply_t *r;
  size_t take, body_at;
  int i;

  if (nread < 0) {
    sconn_close(c);
    return;
  }
  take = (size_t)nread < sizeof(c->buf) - 1 - c->len
             ? (size_t)nread
             : sizeof(c->buf) - 1 - c->len;
  memcpy(c->buf + c->len, buf->base, take);
  c->len += take;
  c->buf[c->len] = '\0';
  if (c->answered || (body_at = request_complete(c)) == 0)
    return;
  c->answered = 1;
  if (srv->requests < MAXREQ) {
    srv->head[srv->requests] = strndup(c->buf, body_at);
    srv->body[srv->requests] = strdup(c->buf + body_at);
  }
  srv->requests++;
  i = c->index < srv->nreplies ? c->index : srv->nreplies - 1;
  r = &srv->replies[i];
  if (r->act == REPLY_CLOSE) {
    sconn_close(c);
  } else if (r->act == REPLY_SEND) {
    uv_buf_t b = uv_buf_init((char *)r->bytes, (unsigned)strlen(r->bytes));
    sconn_idle(c);
    if (uv_write(&c->w, s, &b, 1, on_sent) != 0)
      sconn_close(c);
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
  srv->open++;
  sw_list_append(&srv->conns, &c->link);
  if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
    uv_close((uv_handle_t *)&c->tcp, on_sconn_close);
    return;
  }
  if (srv->busy > 0)
    srv->overlap++;
  c->busy = 1;
  srv->busy++;
  uv_update_time(&loop);
  if (srv->accepted < MAXREQ)
    srv->accept_ms[srv->accepted] = uv_now(&loop);
  c->index = srv->accepted++;
  uv_read_start((uv_stream_t *)&c->tcp, on_salloc, on_sread);
}

/* A receiver on ip (an IPv4 or IPv6 literal), on a port the kernel picks. */
static int srv_start_on(srv_t *srv,
                        const reply_t *replies,
                        int n,
                        const char *ip) {
  struct sockaddr_storage a, bound;
  int len = sizeof(bound);

  memset(srv, 0, sizeof(*srv));
  srv->replies = replies;
  srv->nreplies = n;
  sw_list_init(&srv->conns);
  if (strchr(ip, ':') != NULL)
    uv_ip6_addr(ip, 0, (struct sockaddr_in6 *)&a);
  else
    uv_ip4_addr(ip, 0, (struct sockaddr_in *)&a);
  if (!SW_CHECK_INT_EQ(uv_tcp_init(&loop, &srv->tcp), 0) ||
      !SW_CHECK_INT_EQ(uv_tcp_bind(&srv->tcp, (struct sockaddr *)&a, 0), 0) ||
      !SW_CHECK_INT_EQ(uv_listen((uv_stream_t *)&srv->tcp, 64, on_sconn), 0))
    abort();
  uv_tcp_getsockname(&srv->tcp, (struct sockaddr *)&bound, &len);
  if (bound.ss_family == AF_INET6)
    srv->port = ntohs(((struct sockaddr_in6 *)&bound)->sin6_port);
  else
    srv->port = ntohs(((struct sockaddr_in *)&bound)->sin_port);
  return 0;
}

static int srv_start(srv_t *srv, const reply_t *replies, int n) {
  return srv_start_on(srv, replies, n, "127.0.0.1");
}

static void srv_close(srv_t *srv) {
  while (!sw_list_empty(&srv->conns)) {
    sconn_t *c = sw_container_of(srv->conns.next, sconn_t, link);
    sw_list_remove(&c->link);
    sconn_close(c);
  }
  uv_close((uv_handle_t *)&srv->tcp, NULL);
  for (int i = 0; i < MAXREQ; i++) {
    free(srv->head[i]);
    free(srv->body[i]);
  }
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

/* --- the notifier -------------------------------------------------------- */

/* Counter values at a test's start; the counters are process-wide. */
typedef struct base_s {
  uint64_t sent, failed, dropped;
} base_t;

static base_t base_now(void) {
  base_t b = {sw_notify_sent(), sw_notify_failed(), sw_notify_dropped()};
  return b;
}

typedef struct want_s {
  base_t base;
  uint64_t sent, failed; /* deltas to wait for */
} want_t;

static int have(void *arg) {
  want_t *w = arg;
  return sw_notify_sent() - w->base.sent >= w->sent &&
         sw_notify_failed() - w->base.failed >= w->failed;
}

static int wait_counts(base_t b, uint64_t sent, uint64_t failed, uint64_t ms) {
  want_t w = {b, sent, failed};
  return run_until(have, &w, ms);
}

static int start_host_at(const char *file,
                         int line,
                         const char *host,
                         int port,
                         const char *path,
                         uint64_t timeout_ms,
                         unsigned retries) {
  char url[128];
  char err[256] = "";
  sw_notify_opts_t o = {url, timeout_ms, retries};
  int rc;

  snprintf(url, sizeof(url), "http://%s:%d%s", host, port, path);
  rc = sw_notify_start(&loop, &o, err, sizeof(err));
  if (!SW_CHECK_INT_EQ_AT(file, line, rc, 0))
    printf("  err: %s\n", err);
  return rc;
}
#define start(port, path, timeout_ms, retries)                           \
  start_host_at(__FILE__, __LINE__, "127.0.0.1", port, path, timeout_ms, \
                retries)
#define start_host(host, port, path, timeout_ms, retries) \
  start_host_at(__FILE__, __LINE__, host, port, path, timeout_ms, retries)

/* Sends {"seq": seq} as event `event`. */
static void send_seq(const char *event, int seq) {
  json_t *b = json_pack("{s:i}", "seq", seq);
  sw_notify_send(event, b);
  json_decref(b);
}

/* The "event" member of a received body, checked to be valid JSON. */
static void check_event_at(const char *file,
                           int line,
                           const char *body,
                           const char *event) {
  json_error_t jerr;
  json_t *doc = body != NULL ? json_loads(body, 0, &jerr) : NULL;
  json_t *ev = json_object_get(doc, "event");

  if (!SW_CHECK_AT(file, line, doc != NULL && json_is_object(doc)))
    printf("  body: %s\n", body != NULL ? body : "(none)");
  SW_CHECK_STR_EQ_AT(file, line, json_string_value(ev), event);
  json_decref(doc);
}
#define check_event(body, event) check_event_at(__FILE__, __LINE__, body, event)

/* --- stderr capture, to check log lines ---------------------------------- */

typedef struct capture_s {
  int saved;
  char path[64];
} capture_t;

static void capture_begin(capture_t *c) {
  int fd;
  fflush(stderr);
  snprintf(c->path, sizeof(c->path), "/tmp/test-notify-XXXXXX");
  fd = mkstemp(c->path);
  if (fd < 0)
    abort();
  c->saved = dup(2);
  dup2(fd, 2);
  close(fd);
}

/* Restores stderr and returns what was written (to free), echoed to
 * stdout so a failure shows it. */
static char *capture_end(capture_t *c) {
  FILE *fp;
  char *text;
  long n;

  fflush(stderr);
  dup2(c->saved, 2);
  close(c->saved);
  fp = fopen(c->path, "r");
  if (fp == NULL)
    abort();
  fseek(fp, 0, SEEK_END);
  n = ftell(fp);
  fseek(fp, 0, SEEK_SET);
  text = calloc(1, (size_t)n + 1);
  if (text == NULL || fread(text, 1, (size_t)n, fp) != (size_t)n)
    abort();
  fclose(fp);
  unlink(c->path);
  printf("%s", text);
  return text;
}

static const reply_t ok_200[] = {
    {REPLY_SEND, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"}};

/* --- tests ---------------------------------------------------------------
 */

/* URLs accepted and refused; start twice; the counters untouched. */
static void test_url(void) {
  static const char *const good[] = {
      "http://127.0.0.1",
      "http://127.0.0.1:8080/hooks/switchd",
      "HTTP://10.0.0.1:80/a?token=x&b=%20",
      "http://[::1]:9000/x",
      "http://[fe80::1]",
      "http://hooks.example.com/switchd",
      "http://hooks-1.internal:65535?x=1",
  };
  static const char *const bad[] = {
      "",
      "127.0.0.1:80/x",
      "https://hooks.example.com/",
      "ftp://hooks.example.com/",
      "http://",
      "http:///path",
      "http://:80/",
      "http://127.0.0.1:/x",
      "http://127.0.0.1:0/x",
      "http://127.0.0.1:65536/x",
      "http://127.0.0.1:80x/x",
      "http://127.0.0.1:123456/x",
      "http://1.2.3/x",
      "http://300.1.1.1/x",
      "http://[::1/x",
      "http://[::g]/x",
      "http://[::1]x/",
      "http://user:pw@example.com/",
      "http://example.com/a#frag",
      "http://exa mple.com/",
      "http://example.com/a b",
      "http://example.com/a\r\nX-Evil: 1",
      "http://ex!ample.com/",
  };
  base_t b = base_now();
  sw_notify_opts_t o = {NULL, 1000, 3};
  char err[256];

  loop_begin();
  /* Not started: a no-op, nothing counted. */
  sw_notify_send("flip", NULL);
  sw_notify_stop();
  err[0] = '\0';
  SW_CHECK_INT_EQ(sw_notify_start(&loop, &o, err, sizeof(err)), SW_ECONFIG);
  SW_CHECK_STR_CONTAINS(err, "no URL");
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    o.url = bad[i];
    err[0] = '\0';
    if (!SW_CHECK_INT_EQ(sw_notify_start(&loop, &o, err, sizeof(err)),
                         SW_ECONFIG))
      printf("  url: \"%s\"\n", bad[i]);
    else if (!SW_CHECK(err[0] != '\0'))
      printf("  url: \"%s\" gave no message\n", bad[i]);
    sw_notify_stop();
  }
  o.url = "https://x.example/";
  SW_CHECK_INT_EQ(sw_notify_start(&loop, &o, err, sizeof(err)), SW_ECONFIG);
  SW_CHECK_STR_CONTAINS(err, "https is not supported");
  /* A NULL err is allowed when errlen is 0. */
  SW_CHECK_INT_EQ(sw_notify_start(&loop, &o, NULL, 0), SW_ECONFIG);
  o.url = "http://127.0.0.1/";
  o.timeout_ms = 0;
  SW_CHECK_INT_EQ(sw_notify_start(&loop, &o, err, sizeof(err)), SW_ECONFIG);
  SW_CHECK_STR_CONTAINS(err, "timeout");
  o.timeout_ms = 1000;

  for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
    o.url = good[i];
    err[0] = '\0';
    if (!SW_CHECK_INT_EQ(sw_notify_start(&loop, &o, err, sizeof(err)), 0))
      printf("  url: \"%s\": %s\n", good[i], err);
    sw_notify_stop();
    sw_notify_stop(); /* idempotent */
  }
  o.url = "http://127.0.0.1:9/";
  SW_CHECK_INT_EQ(sw_notify_start(&loop, &o, err, sizeof(err)), 0);
  SW_CHECK_INT_EQ(sw_notify_start(&loop, &o, err, sizeof(err)), UV_EALREADY);
  SW_CHECK_STR_CONTAINS(err, "already started");
  sw_notify_stop();
  loop_end();
  SW_CHECK_UINT_EQ(sw_notify_sent() - b.sent, 0);
  SW_CHECK_UINT_EQ(sw_notify_failed() - b.failed, 0);
  SW_CHECK_UINT_EQ(sw_notify_dropped() - b.dropped, 0);
}

/* A 200 receiver gets the exact requests, bodies in order, one connection
 * at a time; the caller's body is borrowed, never changed. */
static void test_order(void) {
  base_t b = base_now();
  srv_t srv;
  json_t *body, *own;
  char want[512];
  size_t blen;

  loop_begin();
  srv_start(&srv, ok_200, 1);
  start(srv.port, "/hooks/switchd?k=1", 2000, 0);

  /* No body: {"event": E}. */
  sw_notify_send("flip", NULL);
  /* A body without "event": it is added, the caller's object untouched. */
  body = json_pack("{s:s, s:i, s:[s]}", "to", "green", "seq", 2, "servers",
                   "127.0.0.1:9001");
  sw_notify_send("rollback", body);
  SW_CHECK(json_object_get(body, "event") == NULL);
  SW_CHECK_UINT_EQ(json_object_size(body), 3);
  /* Changing it after the call changes nothing that is sent. */
  json_object_set_new(body, "to", json_string("blue"));
  /* A body with its own "event" keeps it. */
  own = json_pack("{s:s, s:s}", "event", "custom", "why", "a \"quoted\"\nline");
  sw_notify_send("alert", own);
  json_decref(own);
  send_seq("watch_end", 4);
  /* Nothing happens inside send: delivery starts from the loop. */
  SW_CHECK_INT_EQ(srv.accepted, 0);
  SW_CHECK_UINT_EQ(sw_notify_sent() - b.sent, 0);

  SW_CHECK(wait_counts(b, 4, 0, 3000));
  SW_CHECK_UINT_EQ(sw_notify_sent() - b.sent, 4);
  SW_CHECK_UINT_EQ(sw_notify_failed() - b.failed, 0);
  SW_CHECK_UINT_EQ(sw_notify_dropped() - b.dropped, 0);
  run_for(20);
  SW_CHECK_INT_EQ(srv.requests, 4);
  SW_CHECK_INT_EQ(srv.accepted, 4);
  SW_CHECK_INT_EQ(srv.overlap, 0);
  check_event(srv.body[0], "flip");
  check_event(srv.body[1], "rollback");
  check_event(srv.body[2], "custom");
  check_event(srv.body[3], "watch_end");
  /* Exact bytes: "event" first, then the caller's members in order. */
  SW_CHECK_STR_EQ(srv.body[0], "{\"event\":\"flip\"}");
  SW_CHECK_STR_EQ(srv.body[1],
                  "{\"event\":\"rollback\",\"to\":\"green\",\"seq\":2,"
                  "\"servers\":[\"127.0.0.1:9001\"]}");
  SW_CHECK_STR_EQ(srv.body[2],
                  "{\"event\":\"custom\",\"why\":\"a \\\"quoted\\\"\\nline\"}");
  SW_CHECK_STR_EQ(srv.body[3], "{\"event\":\"watch_end\",\"seq\":4}");
  blen = srv.body[1] != NULL ? strlen(srv.body[1]) : 0;
  snprintf(want, sizeof(want),
           "POST /hooks/switchd?k=1 HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
           "Content-Type: application/json\r\nContent-Length: %zu\r\n"
           "Connection: close\r\nUser-Agent: switchd\r\n\r\n",
           srv.port, blen);
  SW_CHECK_STR_EQ(srv.head[1], want);
  json_decref(body);

  sw_notify_stop();
  SW_CHECK_UINT_EQ(sw_notify_dropped() - b.dropped, 0);
  run_for(20);
  SW_CHECK_INT_EQ(srv.open, 0);
  srv_close(&srv);
  loop_end();
}

/* 500 twice then 200, retries 3: the third attempt delivers, after waits of
 * 250 and 500 ms. */
static void test_retry_500(void) {
  static const reply_t replies[] = {
      {REPLY_SEND, "HTTP/1.1 500 Internal Server Error\r\n\r\n"},
      {REPLY_SEND, "HTTP/1.1 500 Internal Server Error\r\n\r\n"},
      {REPLY_SEND, "HTTP/1.1 202 Accepted\r\n\r\n"},
  };
  base_t b = base_now();
  srv_t srv;
  capture_t cap;
  char *log;
  uint64_t gap1, gap2;

  loop_begin();
  srv_start(&srv, replies, 3);
  start(srv.port, "/", 2000, 3);
  capture_begin(&cap);
  send_seq("flip", 1);
  SW_CHECK(wait_counts(b, 1, 0, 4000));
  log = capture_end(&cap);
  SW_CHECK_UINT_EQ(sw_notify_sent() - b.sent, 1);
  SW_CHECK_UINT_EQ(sw_notify_failed() - b.failed, 0);
  SW_CHECK_INT_EQ(srv.accepted, 3);
  SW_CHECK_INT_EQ(srv.requests, 3);
  for (int i = 0; i < 3 && i < srv.requests; i++) {
    check_event(srv.body[i], "flip");
    SW_CHECK_STR_EQ(srv.body[i], "{\"event\":\"flip\",\"seq\":1}");
  }
  gap1 = srv.accept_ms[1] - srv.accept_ms[0];
  gap2 = srv.accept_ms[2] - srv.accept_ms[1];
  if (!SW_CHECK(gap1 >= 249 && gap1 < 250 + LATE_MS) ||
      !SW_CHECK(gap2 >= 499 && gap2 < 500 + LATE_MS))
    printf("  gaps: %llu ms, %llu ms\n", (unsigned long long)gap1,
           (unsigned long long)gap2);
  SW_CHECK_STR_CONTAINS(log, "attempt 1 failed: status 500; retrying in 250");
  SW_CHECK_STR_CONTAINS(log, "attempt 2 failed: status 500; retrying in 500");
  SW_CHECK(strstr(log, " warn ") == NULL);
  free(log);
  sw_notify_stop();
  srv_close(&srv);
  loop_end();
}

/* Refused, retries 1: two attempts a backoff apart, then failed, with the
 * reason in the warn line; the queue moves on. */
static void test_refused(void) {
  base_t b = base_now();
  capture_t cap;
  char *log;
  char want[160];
  uint64_t t0, dt;
  int port;

  loop_begin();
  port = free_port();
  start(port, "/hook", 1000, 1);
  capture_begin(&cap);
  uv_update_time(&loop);
  t0 = uv_now(&loop);
  sw_notify_send("rollback_blocked", NULL);
  SW_CHECK(wait_counts(b, 0, 1, 3000));
  dt = uv_now(&loop) - t0;
  log = capture_end(&cap);
  SW_CHECK_UINT_EQ(sw_notify_failed() - b.failed, 1);
  SW_CHECK_UINT_EQ(sw_notify_sent() - b.sent, 0);
  if (!SW_CHECK(dt >= 249 && dt < 250 + LATE_MS))
    printf("  failed after %llu ms\n", (unsigned long long)dt);
  snprintf(want, sizeof(want),
           "warn [notify] POST http://127.0.0.1:%d/hook failed after 2 "
           "attempts: connection refused (event \"rollback_blocked\")",
           port);
  SW_CHECK_STR_CONTAINS(log, want);
  SW_CHECK_STR_CONTAINS(log, "attempt 1 failed: connection refused");
  free(log);

  /* With retries 0, one attempt and no backoff. */
  sw_notify_stop();
  start(port, "/hook", 1000, 0);
  b = base_now();
  t0 = uv_now(&loop);
  sw_notify_send("alert", NULL);
  sw_notify_send("alert", NULL);
  SW_CHECK(wait_counts(b, 0, 2, 3000));
  SW_CHECK(uv_now(&loop) - t0 < LATE_MS);
  sw_notify_stop();
  SW_CHECK_UINT_EQ(sw_notify_dropped() - b.dropped, 0);
  loop_end();
}

/* A receiver that accepts, reads and never answers: the attempt times out
 * after timeout_ms, counts as failed, and the next notification still goes
 * out (to a later connection that is answered). */
static void test_timeout(void) {
  static const reply_t replies[] = {
      {REPLY_SILENT, NULL},
      {REPLY_SEND, "HTTP/1.0 204 No Content\r\n\r\n"},
  };
  base_t b = base_now();
  srv_t srv;
  capture_t cap;
  char *log;
  uint64_t t0, dt;

  loop_begin();
  srv_start(&srv, replies, 2);
  start(srv.port, "/", 200, 0);
  capture_begin(&cap);
  uv_update_time(&loop);
  t0 = uv_now(&loop);
  sw_notify_send("flip", NULL);
  sw_notify_send("watch_end", NULL);
  SW_CHECK(wait_counts(b, 0, 1, 3000));
  dt = uv_now(&loop) - t0;
  if (!SW_CHECK(dt >= 199 && dt < 200 + LATE_MS))
    printf("  timed out after %llu ms\n", (unsigned long long)dt);
  SW_CHECK(wait_counts(b, 1, 1, 3000));
  log = capture_end(&cap);
  SW_CHECK_UINT_EQ(sw_notify_failed() - b.failed, 1);
  SW_CHECK_UINT_EQ(sw_notify_sent() - b.sent, 1);
  SW_CHECK_INT_EQ(srv.requests, 2);
  check_event(srv.body[0], "flip");
  check_event(srv.body[1], "watch_end");
  SW_CHECK_STR_CONTAINS(log, "failed after 1 attempt: timeout after 200 ms");
  free(log);
  sw_notify_stop();
  run_for(20);
  /* Our side closed the silent connection; the receiver saw it end. */
  SW_CHECK_INT_EQ(srv.open, 0);
  srv_close(&srv);
  loop_end();
}

/* Answers that are not a 2xx status line fail; a 2xx after them works. */
static void test_bad_answers(void) {
  static const reply_t replies[] = {
      {REPLY_CLOSE, NULL},
      {REPLY_SEND, "hello there\r\n\r\n"},
      {REPLY_SEND, "HTTP/1.1 302 Found\r\nLocation: /x\r\n\r\n"},
      {REPLY_SEND, "HTTP/1.1 200"}, /* then closed: no line end */
      {REPLY_SEND, "HTTP/1.1 201 Created\n\n"},
  };
  base_t b = base_now();
  srv_t srv;
  capture_t cap;
  char *log;

  loop_begin();
  srv_start(&srv, replies, 5);
  start(srv.port, "/", 1000, 0);
  capture_begin(&cap);
  for (int i = 0; i < 5; i++)
    send_seq("alert", i);
  SW_CHECK(wait_counts(b, 1, 4, 3000));
  log = capture_end(&cap);
  SW_CHECK_UINT_EQ(sw_notify_failed() - b.failed, 4);
  SW_CHECK_UINT_EQ(sw_notify_sent() - b.sent, 1);
  SW_CHECK_STR_CONTAINS(log, "connection closed before the status line");
  SW_CHECK_STR_CONTAINS(log, "invalid response: no HTTP/1.x status line");
  SW_CHECK_STR_CONTAINS(log, "status 302");
  sw_notify_stop();
  free(log);
  srv_close(&srv);
  loop_end();
}

/* 67 sends before the loop runs: the 3 oldest are dropped, the other 64
 * arrive in order. */
static void test_queue_full(void) {
  base_t b = base_now();
  int total = SW_NOTIFY_QUEUE_MAX + 3;
  srv_t srv;
  capture_t cap;
  char *log;

  loop_begin();
  srv_start(&srv, ok_200, 1);
  start(srv.port, "/", 2000, 0);
  capture_begin(&cap);
  for (int i = 0; i < total; i++)
    send_seq("alert", i);
  log = capture_end(&cap);
  SW_CHECK_UINT_EQ(sw_notify_dropped() - b.dropped, 3);
  SW_CHECK_STR_CONTAINS(log, "queue full (64 waiting): dropped the oldest");
  free(log);
  SW_CHECK(wait_counts(b, SW_NOTIFY_QUEUE_MAX, 0, 10000));
  run_for(20);
  SW_CHECK_UINT_EQ(sw_notify_sent() - b.sent, SW_NOTIFY_QUEUE_MAX);
  SW_CHECK_INT_EQ(srv.requests, SW_NOTIFY_QUEUE_MAX);
  SW_CHECK_INT_EQ(srv.overlap, 0);
  for (int i = 0; i < srv.requests && i < SW_NOTIFY_QUEUE_MAX; i++) {
    char want[64];
    snprintf(want, sizeof(want), "{\"event\":\"alert\",\"seq\":%d}", i + 3);
    if (!SW_CHECK_STR_EQ(srv.body[i], want))
      break;
  }
  sw_notify_stop();
  srv_close(&srv);
  loop_end();
}

/* Stop with one attempt in flight (to a silent receiver) and entries queued:
 * all dropped and counted, every handle closed, memory freed (ASan); then
 * a new start on the same loop delivers. */
static void test_stop_queued(void) {
  static const reply_t replies[] = {{REPLY_SILENT, NULL}};
  base_t b = base_now();
  srv_t srv, srv2;
  capture_t cap;
  char *log;
  json_t *big;

  loop_begin();
  srv_start(&srv, replies, 1);
  start(srv.port, "/", 5000, 5);
  for (int i = 0; i < 10; i++)
    send_seq("alert", i);
  /* A larger body too, so a leak would show in ASan's report. */
  big = json_object();
  for (int i = 0; i < 200; i++) {
    char k[16];
    snprintf(k, sizeof(k), "k%d", i);
    json_object_set_new(big, k, json_string("some value to hold"));
  }
  sw_notify_send("watch_end", big);
  json_decref(big);
  run_for(100);
  SW_CHECK_INT_EQ(srv.requests, 1);
  capture_begin(&cap);
  sw_notify_stop();
  log = capture_end(&cap);
  SW_CHECK_UINT_EQ(sw_notify_dropped() - b.dropped, 11);
  SW_CHECK_UINT_EQ(sw_notify_sent() - b.sent, 0);
  SW_CHECK_UINT_EQ(sw_notify_failed() - b.failed, 0);
  SW_CHECK_STR_CONTAINS(log, "info [notify] stopped: dropped 11 undelivered");
  free(log);
  /* Stopped: send is a no-op. */
  sw_notify_send("flip", NULL);
  SW_CHECK_UINT_EQ(sw_notify_dropped() - b.dropped, 11);
  run_for(50);
  SW_CHECK_INT_EQ(srv.open, 0);
  SW_CHECK_INT_EQ(srv.accepted, 1);

  /* Start again: a fresh notifier on the same loop. */
  srv_start(&srv2, ok_200, 1);
  start(srv2.port, "/", 2000, 0);
  sw_notify_send("flip", NULL);
  SW_CHECK(wait_counts(b, 1, 0, 3000));
  sw_notify_stop();
  srv_close(&srv);
  srv_close(&srv2);
  loop_end();
}

/* Start, send, stop, start, stop without running the loop in between, and
 * stop while the first attempt is only scheduled: all closes cleanly. */
static void test_restart(void) {
  base_t b = base_now();
  capture_t cap;
  char *log;

  loop_begin();
  capture_begin(&cap);
  start(9, "/a", 1000, 0);
  sw_notify_send("flip", NULL);
  sw_notify_stop();
  start(9, "/b", 1000, 0);
  sw_notify_send("flip", NULL);
  sw_notify_send("flip", NULL);
  sw_notify_stop();
  start(9, "/c", 1000, 0);
  sw_notify_stop();
  log = capture_end(&cap);
  SW_CHECK_UINT_EQ(sw_notify_dropped() - b.dropped, 3);
  SW_CHECK_STR_CONTAINS(log, "dropped 1 undelivered notification to");
  SW_CHECK_STR_CONTAINS(log, "dropped 2 undelivered notifications to");
  free(log);
  loop_end();
}

/* Bodies send refuses: counted as dropped, nothing queued. */
static void test_bad_body(void) {
  base_t b = base_now();
  capture_t cap;
  char *log;
  json_t *arr = json_array();
  json_t *obj = json_object();

  loop_begin();
  start(9, "/", 1000, 0);
  capture_begin(&cap);
  sw_notify_send("alert", arr);
  sw_notify_send(NULL, obj);
  log = capture_end(&cap);
  SW_CHECK_UINT_EQ(sw_notify_dropped() - b.dropped, 2);
  SW_CHECK_STR_CONTAINS(log, "the body is not a JSON object");
  SW_CHECK_STR_CONTAINS(log, "no event name");
  free(log);
  sw_notify_stop();
  /* Nothing was queued: stop dropped nothing more. */
  SW_CHECK_UINT_EQ(sw_notify_dropped() - b.dropped, 2);
  json_decref(arr);
  json_decref(obj);
  loop_end();
}

/* --- name lookups ---------------------------------------------------------
 *
 * A lookup stuck on an unreachable resolver runs for 10-30 s in libuv's
 * thread pool and cannot be cancelled there. The slow resolver stands for
 * one: each lookup goes through the real uv_getaddrinfo for 127.0.0.1 (a
 * literal, so no DNS is asked and libuv knows the request, as uv_cancel
 * needs), and its answer is then held until the test hands it over with
 * slow_answer. The notifier cannot tell it from a lookup still running. */

#define SLOW_MAX 16

typedef struct slow_s {
  uv_getaddrinfo_t *req;
  uv_getaddrinfo_cb cb; /* the notifier's */
  int back;             /* the real lookup has returned */
  int status;           /* its answer, held */
  struct addrinfo *res;
  int answered; /* handed over to cb */
} slow_t;

static slow_t slow[SLOW_MAX];
static int slow_started;
static int slow_outstanding;
static int slow_outstanding_max;
static char slow_node[SW_NOTIFY_HOST_MAX + 1];

static void slow_reset(void) {
  memset(slow, 0, sizeof(slow));
  slow_started = 0;
  slow_outstanding = 0;
  slow_outstanding_max = 0;
  slow_node[0] = '\0';
}

static void on_slow_back(uv_getaddrinfo_t *req,
                         int status,
                         struct addrinfo *res) {
  for (int i = 0; i < slow_started; i++) {
    if (slow[i].req == req && !slow[i].back) {
      slow[i].back = 1;
      slow[i].status = status;
      slow[i].res = res;
      return;
    }
  }
  uv_freeaddrinfo(res);
}

static int slow_resolver(uv_loop_t *l,
                         uv_getaddrinfo_t *req,
                         uv_getaddrinfo_cb cb,
                         const char *node,
                         const char *service,
                         const struct addrinfo *hints) {
  slow_t *s;
  int e;

  if (slow_started == SLOW_MAX)
    return UV_ENOMEM;
  e = uv_getaddrinfo(l, req, on_slow_back, "127.0.0.1", service, hints);
  if (e != 0)
    return e;
  s = &slow[slow_started++];
  memset(s, 0, sizeof(*s));
  s->req = req;
  s->cb = cb;
  snprintf(slow_node, sizeof(slow_node), "%s", node);
  if (++slow_outstanding > slow_outstanding_max)
    slow_outstanding_max = slow_outstanding;
  return 0;
}

static int slow_back(void *arg) {
  return slow[*(int *)arg].back;
}

/* Hands lookup i its answer (ok), or a resolver failure. */
static void slow_answer(int i, int ok) {
  slow_t *s = &slow[i];

  if (!SW_CHECK(i < slow_started && !s->answered))
    return;
  SW_CHECK(run_until(slow_back, &i, 2000));
  s->answered = 1;
  slow_outstanding--;
  if (ok) {
    s->cb(s->req, s->status, s->res);
  } else {
    uv_freeaddrinfo(s->res);
    s->cb(s->req, UV_EAI_AGAIN, NULL);
  }
}

/* Answers every lookup still held, so nothing is left behind. */
static void slow_finish(void) {
  for (int i = 0; i < slow_started; i++)
    if (!slow[i].answered)
      slow_answer(i, 0);
  sw_notify_set_resolver(NULL);
}

/* An attempt that times out while its lookup is still running leaves the
 * lookup to the next attempt: with the resolver stuck for longer than two
 * attempts, only one lookup is ever outstanding, and its late answer is
 * used by the attempt that waits for it, or kept for the retry when it
 * comes during the backoff. A failed answer fails the attempt waiting for
 * it, and the retry resolves again. */
static void test_slow_lookup(void) {
  base_t b = base_now();
  srv_t srv;
  capture_t cap;
  char *log;

  loop_begin();
  slow_reset();
  sw_notify_set_resolver(slow_resolver);
  srv_start(&srv, ok_200, 1);
  start_host("hook.invalid", srv.port, "/", 500, 3);
  capture_begin(&cap);
  sw_notify_send("flip", NULL);
  /* Attempt 1 runs 0-500 ms and times out; attempt 2 runs 750-1250 ms. */
  run_for(1000);
  SW_CHECK_INT_EQ(slow_started, 1);
  SW_CHECK_INT_EQ(slow_outstanding_max, 1);
  SW_CHECK_STR_EQ(slow_node, "hook.invalid");
  SW_CHECK_INT_EQ(srv.accepted, 0);
  /* The answer comes while attempt 2 waits: it connects at once. */
  slow_answer(0, 1);
  SW_CHECK(wait_counts(b, 1, 0, 200));
  SW_CHECK_UINT_EQ(sw_notify_sent() - b.sent, 1);
  SW_CHECK_INT_EQ(srv.requests, 1);

  /* The next notification resolves afresh; a failed answer fails the
   * attempt, and the retry resolves again. */
  sw_notify_send("watch_end", NULL);
  run_for(100);
  SW_CHECK_INT_EQ(slow_started, 2);
  slow_answer(1, 0);
  run_for(400);
  SW_CHECK_INT_EQ(slow_started, 3);
  SW_CHECK_INT_EQ(slow_outstanding_max, 1);
  slow_answer(2, 1);
  SW_CHECK(wait_counts(b, 2, 0, 1000));

  /* An answer that comes during the backoff, after the attempt that waited
   * for it timed out, serves the retry: no second lookup. */
  sw_notify_send("alert", NULL);
  run_for(600);
  SW_CHECK_INT_EQ(slow_started, 4);
  slow_answer(3, 1);
  SW_CHECK(wait_counts(b, 3, 0, 1000));
  SW_CHECK_INT_EQ(slow_started, 4);
  log = capture_end(&cap);
  SW_CHECK_STR_CONTAINS(log, "attempt 1 failed: timeout after 500 ms");
  SW_CHECK_STR_CONTAINS(log,
                        "attempt 1 failed: resolve hook.invalid: temporary "
                        "failure");
  free(log);
  SW_CHECK_INT_EQ(srv.requests, 3);
  SW_CHECK_INT_EQ(slow_outstanding_max, 1);
  sw_notify_stop();
  slow_finish();
  srv_close(&srv);
  loop_end();
}

/* Stop with a lookup outstanding: the notifier's handles close at once,
 * without waiting for the lookup. A notifier started next waits for that
 * lookup instead of starting a second one, and uses its answer (same host
 * and port). A lookup that returns after the last stop frees what it holds
 * (ASan checks). */
static void test_slow_lookup_stop(void) {
  base_t b = base_now();
  srv_t srv;
  capture_t cap;
  char *log;
  int first = 0;
  int before;

  loop_begin();
  slow_reset();
  sw_notify_set_resolver(slow_resolver);
  srv_start(&srv, ok_200, 1);
  before = handles_open();
  capture_begin(&cap);
  start_host("hook.invalid", srv.port, "/", 5000, 0);
  sw_notify_send("flip", NULL);
  SW_CHECK(run_until(slow_back, &first, 2000));
  sw_notify_stop();
  SW_CHECK(run_until(handles_at_most, &before, 1000));
  SW_CHECK_UINT_EQ(sw_notify_dropped() - b.dropped, 1);

  start_host("hook.invalid", srv.port, "/", 5000, 0);
  sw_notify_send("rollback", NULL);
  run_for(100);
  SW_CHECK_INT_EQ(slow_started, 1);
  slow_answer(0, 1);
  SW_CHECK(wait_counts(b, 1, 0, 2000));
  SW_CHECK_INT_EQ(srv.requests, 1);
  check_event(srv.body[0], "rollback");

  /* Stopped for good while a lookup runs; it returns later. */
  sw_notify_send("watch_end", NULL);
  run_for(50);
  SW_CHECK_INT_EQ(slow_started, 2);
  sw_notify_stop();
  SW_CHECK(run_until(handles_at_most, &before, 1000));
  slow_answer(1, 1);
  log = capture_end(&cap);
  free(log);
  SW_CHECK_INT_EQ(slow_outstanding_max, 1);
  SW_CHECK_INT_EQ(srv.requests, 1);
  slow_finish();
  srv_close(&srv);
  loop_end();
}

/* A name resolved by the real uv_getaddrinfo: "localhost" (from /etc/hosts,
 * no DNS server needed), the receiver on its first address. */
static void test_name(void) {
  base_t b = base_now();
  struct addrinfo hints, *res = NULL;
  char ip[64] = "";
  srv_t srv;

  memset(&hints, 0, sizeof(hints));
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_protocol = IPPROTO_TCP;
  if (!SW_CHECK_INT_EQ(getaddrinfo("localhost", NULL, &hints, &res), 0))
    return;
  if (res->ai_family == AF_INET6)
    uv_ip6_name((struct sockaddr_in6 *)res->ai_addr, ip, sizeof(ip));
  else
    uv_ip4_name((struct sockaddr_in *)res->ai_addr, ip, sizeof(ip));
  freeaddrinfo(res);

  loop_begin();
  srv_start_on(&srv, ok_200, 1, ip);
  start_host("localhost", srv.port, "/hook", 2000, 0);
  sw_notify_send("flip", NULL);
  sw_notify_send("watch_end", NULL);
  SW_CHECK(wait_counts(b, 2, 0, 3000));
  SW_CHECK_INT_EQ(srv.requests, 2);
  check_event(srv.body[0], "flip");
  check_event(srv.body[1], "watch_end");
  SW_CHECK_STR_CONTAINS(srv.head[0], "Host: localhost:");
  sw_notify_stop();
  srv_close(&srv);
  loop_end();
}

SW_TEST_MAIN(SW_TASK(test_url),
             SW_TASK(test_order),
             SW_TASK(test_retry_500),
             SW_TASK(test_refused),
             SW_TASK(test_timeout),
             SW_TASK(test_bad_answers),
             SW_TASK(test_queue_full),
             SW_TASK(test_stop_queued),
             SW_TASK(test_restart),
             SW_TASK(test_bad_body),
             SW_TASK(test_slow_lookup),
             SW_TASK(test_slow_lookup_stop),
             SW_TASK(test_name))
