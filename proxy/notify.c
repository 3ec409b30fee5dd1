/* Webhook notifications (see sw_notify.h for the contract). This module owns
 * the notifier's timer, the connection of the POST in flight, its DNS
 * request and the queue of serialised notifications. It must never block
 * the loop or run work inside sw_notify_send beyond serialising and queuing:
 * every connect, resolve and write starts from a loop callback, so a
 * receiver that is slow, down or silent can only delay the notifications
 * queued behind it, never a request.
 *
 * One notifier (nt_t) exists per start. sw_notify_stop detaches it from the
 * module's pointer and closes its handles; it frees itself in the last
 * close callback. Because each start allocates a fresh one, start, stop,
 * start works without running the loop in between. One uv_timer_t serves
 * three purposes, like the health checker's: the zero-delay kick that
 * starts a delivery from a loop callback, the backoff before a retry, and
 * the timeout of the attempt in flight. An attempt (nt_attempt_t) is a
 * separate allocation with its own TCP handle, so the next attempt can start
 * while the previous connection is still closing; it counts what it still
 * waits for and frees itself when that reaches 0.
 *
 * A name lookup (nt_lookup_t) belongs to no attempt and no notifier, and
 * the process has at most one outstanding: a lookup already running in
 * libuv's thread pool cannot be cancelled, and one per attempt would fill
 * the pool while a resolver does not answer (see "the name lookup" below).
 * It frees itself in its callback, so a stop never waits for it.
 *
 * A notification (nt_entry_t) holds the whole request, head and body, built
 * once by sw_notify_send. It is reference-counted: the queue or the
 * delivery holds one reference, and each attempt holds one until its
 * handle is closed, because the attempt's write request points into it
 * (a write request's buffer must outlive its callback, ECANCELED included). */
#include "sw_notify.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "sw_list.h"
#include "sw_log.h"
#include "sw_types.h"

/* Response bytes read at most while looking for the end of the status line:
 * a receiver cannot make us hold more, whatever it sends. */
#define NT_STATUS_MAX 1024
/* Room for a failure reason, NUL included. */
#define NT_REASON_MAX 160
/* An event's name is kept, cut to this, for log lines only. */
#define NT_EVENT_SHOWN 64

typedef enum nt_phase_e {
  NT_IDLE = 0, /* nothing to deliver; the timer is stopped */
  NT_WAITING,  /* the timer is armed for the next attempt (0 ms or backoff) */
  NT_SENDING,  /* an attempt is in flight; the timer is its timeout */
  NT_STOPPED,  /* stopped: handles closing or closed */
} nt_phase_t;

typedef struct nt_entry_s {
  sw_list_t link;    /* on the queue while waiting */
  unsigned refs;     /* queue or delivery, plus each attempt not yet freed */
  unsigned attempts; /* attempts started so far */
  char event[NT_EVENT_SHOWN + 1];
  size_t len; /* of req */
  char req[]; /* the request, head and body */
} nt_entry_t;

struct nt_s;

typedef struct nt_attempt_s {
  uv_tcp_t tcp;
  uv_connect_t connect;
  uv_write_t write;
  struct nt_s *nt;
  nt_entry_t *entry; /* a reference, released when the attempt is freed */
  /* What the attempt still waits for before it may be freed: its owner's
   * hold (released when the attempt ends) and the TCP handle's close. */
  unsigned pending;
  uint8_t tcp_open;  /* uv_tcp_init succeeded: one uv_close is owed */
  uint8_t resolving; /* waits for the answer of the outstanding lookup */
  uint8_t done;      /* ended: later callbacks do nothing */
  size_t got;        /* bytes of line */
  char line[NT_STATUS_MAX];
} nt_attempt_t;

typedef struct nt_s {
  uv_loop_t *loop;
  uv_timer_t timer;
  nt_phase_t phase;
  unsigned pending;      /* the timer, plus attempts not yet freed */
  sw_list_t queue;       /* nt_entry_t waiting, oldest first */
  size_t nqueued;        /* entries on queue */
  nt_entry_t *current;   /* being delivered (off the queue), or NULL */
  nt_attempt_t *attempt; /* in flight, or NULL */
  uint64_t timeout_ms;
  unsigned retries;
  int literal;                  /* the host is an address: no DNS */
  struct sockaddr_storage addr; /* when literal */
  char *host;                   /* for getaddrinfo: a name, no brackets */
  char port[8];                 /* decimal, for getaddrinfo */
  char *path;                   /* request target */
  char *host_header;            /* Host header value */
  char *shown;                  /* the URL for log lines, query elided */
  /* A lookup's answer that came after the attempt that waited for it had
   * ended, kept for the next attempt of the same notification. */
  int have_resolved;
  struct sockaddr_storage resolved;
} nt_t;

/* The running notifier; NULL when not started. */
static nt_t *nt;

/* For the life of the process, not of a notifier: metrics count up. */
static uint64_t count_sent;
static uint64_t count_failed;
static uint64_t count_dropped;

static void on_timer(uv_timer_t *t);

/* --- small helpers ------------------------------------------------------- */

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

/* Copies s into out, cut to fit. */
static void copy_text(char *out, size_t len, const char *s) {
  size_t n = strnlen(s, len - 1);
  memcpy(out, s, n);
  out[n] = '\0';
}

static char *dup_len(const char *s, size_t n) {
  char *d = malloc(n + 1);
  if (d == NULL)
    return NULL;
  memcpy(d, s, n);
  d[n] = '\0';
  return d;
}

/* Exactly one timer start per state change; uv_timer_start only fails on a
 * closing handle, and the timer is closed only by stop, after which nothing
 * arms it. */
static void timer_arm(nt_t *n, uint64_t ms) {
  (void)uv_timer_start(&n->timer, on_timer, ms, 0);
}

static void entry_unref(nt_entry_t *e) {
  if (--e->refs == 0)
    free(e);
}

/* --- the URL ------------------------------------------------------------- */

/* Whether c may appear in a host name: letters, digits, '-', '.', and '_'
 * (seen in internal names; the resolver decides whether it exists). */
static int name_char(unsigned char c) {
  return isalnum(c) || c == '-' || c == '.' || c == '_';
}

/* Parses http://HOST[:PORT][/PATH] into n. Returns 0 or SW_ECONFIG with a
 * message; UV_ENOMEM when a copy fails. */
static int parse_url(nt_t *n, const char *url, char *err, size_t errlen) {
  const char *auth, *auth_end, *host, *host_end, *p;
  size_t url_len;
  unsigned long port = 80;
  int ipv6 = 0;
  char hostbuf[SW_NOTIFY_HOST_MAX + 1];
  size_t host_len;
  int e;

  if (url == NULL || url[0] == '\0') {
    set_err(err, errlen, "notify: no URL");
    return SW_ECONFIG;
  }
  url_len = strlen(url);
  if (url_len > SW_NOTIFY_URL_MAX) {
    set_err(err, errlen, "notify URL: longer than %d bytes", SW_NOTIFY_URL_MAX);
    return SW_ECONFIG;
  }
  /* Every byte ends up in a request line or a log line: printable ASCII
   * only, so nothing in the URL can split the request or add a header. */
  for (p = url; *p != '\0'; p++) {
    unsigned char c = (unsigned char)*p;
    if (c <= 0x20 || c >= 0x7f) {
      set_err(err, errlen,
              "notify URL \"%.128s\": spaces and control bytes are not "
              "allowed (percent-encode them)",
              url);
      return SW_ECONFIG;
    }
  }
  if (strncasecmp(url, "https://", 8) == 0) {
    set_err(err, errlen,
            "notify URL \"%.128s\": https is not supported, use http://", url);
    return SW_ECONFIG;
  }
  if (strncasecmp(url, "http://", 7) != 0) {
    set_err(err, errlen, "notify URL \"%.128s\": must start with http://HOST",
            url);
    return SW_ECONFIG;
  }
  if (strchr(url, '#') != NULL) {
    set_err(err, errlen,
            "notify URL \"%.128s\": a fragment ('#') is not "
            "allowed",
            url);
    return SW_ECONFIG;
  }
  auth = url + 7;
  auth_end = auth + strcspn(auth, "/?");
  if (memchr(auth, '@', (size_t)(auth_end - auth)) != NULL) {
    set_err(err, errlen,
            "notify URL \"%.128s\": credentials in the URL are not supported",
            url);
    return SW_ECONFIG;
  }

  /* The host: [IPv6], or everything up to ':'. */
  if (*auth == '[') {
    host = auth + 1;
    host_end = memchr(host, ']', (size_t)(auth_end - host));
    if (host_end == NULL) {
      set_err(err, errlen, "notify URL \"%.128s\": missing ']'", url);
      return SW_ECONFIG;
    }
    p = host_end + 1;
    ipv6 = 1;
  } else {
    host = auth;
    host_end = memchr(auth, ':', (size_t)(auth_end - auth));
    if (host_end == NULL)
      host_end = auth_end;
    p = host_end;
  }
  host_len = (size_t)(host_end - host);
  if (host_len == 0) {
    set_err(err, errlen, "notify URL \"%.128s\": no host", url);
    return SW_ECONFIG;
  }
  if (host_len > SW_NOTIFY_HOST_MAX) {
    set_err(err, errlen, "notify URL \"%.128s\": host longer than %d bytes",
            url, SW_NOTIFY_HOST_MAX);
    return SW_ECONFIG;
  }
  memcpy(hostbuf, host, host_len);
  hostbuf[host_len] = '\0';

  /* The port, if any: 1..65535 in decimal. */
  if (p < auth_end) {
    const char *digits = p + 1;
    if (*p != ':' || digits == auth_end || (size_t)(auth_end - digits) > 5) {
      set_err(err, errlen, "notify URL \"%.128s\": bad port", url);
      return SW_ECONFIG;
    }
    port = 0;
    for (p = digits; p < auth_end; p++) {
      if (!isdigit((unsigned char)*p)) {
        set_err(err, errlen, "notify URL \"%.128s\": bad port", url);
        return SW_ECONFIG;
      }
      port = port * 10 + (unsigned long)(*p - '0');
    }
    if (port == 0 || port > 65535) {
      set_err(err, errlen, "notify URL \"%.128s\": port out of range", url);
      return SW_ECONFIG;
    }
  }
  snprintf(n->port, sizeof(n->port), "%lu", port);

  if (ipv6) {
    e = uv_ip6_addr(hostbuf, (int)port, (struct sockaddr_in6 *)&n->addr);
    if (e != 0) {
      set_err(err, errlen, "notify URL \"%.128s\": bad IPv6 address", url);
      return SW_ECONFIG;
    }
    n->literal = 1;
  } else if (strspn(hostbuf, "0123456789.") == host_len) {
    /* All digits and dots: an IPv4 literal or a mistake, never a name
     * (getaddrinfo would read "10.1" as 10.0.0.1). */
    e = uv_ip4_addr(hostbuf, (int)port, (struct sockaddr_in *)&n->addr);
    if (e != 0) {
      set_err(err, errlen, "notify URL \"%.128s\": bad IPv4 address", url);
      return SW_ECONFIG;
    }
    n->literal = 1;
  } else {
    for (size_t i = 0; i < host_len; i++) {
      if (!name_char((unsigned char)hostbuf[i])) {
        set_err(err, errlen, "notify URL \"%.128s\": bad host name", url);
        return SW_ECONFIG;
      }
    }
  }

  /* The path: "/" by default; a bare query gets one in front. */
  if (*auth_end == '\0')
    n->path = strdup("/");
  else if (*auth_end == '?' && asprintf(&n->path, "/%s", auth_end) < 0)
    n->path = NULL;
  else if (*auth_end == '/')
    n->path = strdup(auth_end);
  n->host = dup_len(hostbuf, host_len);
  if (ipv6)
    e = asprintf(&n->host_header, "[%s]", hostbuf);
  else
    e = asprintf(&n->host_header, "%s", hostbuf);
  if (e < 0)
    n->host_header = NULL;
  if (n->host_header != NULL && port != 80) {
    char *h = NULL;
    if (asprintf(&h, "%s:%lu", n->host_header, port) < 0)
      h = NULL;
    free(n->host_header);
    n->host_header = h;
  }
  /* Log lines show the URL without its query, which often carries a
   * token. */
  if (n->path != NULL && n->host_header != NULL) {
    size_t plen = strcspn(n->path, "?");
    if (asprintf(&n->shown, "http://%s%.*s%s", n->host_header, (int)plen,
                 n->path, n->path[plen] == '?' ? "?..." : "") < 0)
      n->shown = NULL;
  }
  if (n->path == NULL || n->host == NULL || n->host_header == NULL ||
      n->shown == NULL) {
    set_err(err, errlen, "notify: out of memory");
    return UV_ENOMEM;
  }
  return 0;
}

static void nt_free(nt_t *n) {
  free(n->host);
  free(n->path);
  free(n->host_header);
  free(n->shown);
  free(n);
}

/* --- lifecycle ----------------------------------------------------------- */

int sw_notify_start(uv_loop_t *loop,
                    const sw_notify_opts_t *o,
                    char *err,
                    size_t errlen) {
  nt_t *n;
  int e;

  if (nt != NULL) {
    set_err(err, errlen, "notify: already started");
    return UV_EALREADY;
  }
  if (loop == NULL || o == NULL) {
    set_err(err, errlen, "notify: no loop or options");
    return SW_ECONFIG;
  }
  if (o->timeout_ms == 0) {
    set_err(err, errlen, "notify: the timeout must be more than 0 ms");
    return SW_ECONFIG;
  }
  n = calloc(1, sizeof(*n));
  if (n == NULL) {
    set_err(err, errlen, "notify: out of memory");
    return UV_ENOMEM;
  }
  n->loop = loop;
  n->timeout_ms = o->timeout_ms;
  n->retries = o->retries;
  sw_list_init(&n->queue);
  e = parse_url(n, o->url, err, errlen);
  if (e != 0) {
    nt_free(n);
    return e;
  }
  e = uv_timer_init(loop, &n->timer);
  if (e != 0) {
    set_err(err, errlen, "notify: cannot create a timer: %s", uv_strerror(e));
    nt_free(n);
    return e;
  }
  n->pending = 1;
  n->phase = NT_IDLE;
  nt = n;
  return 0;
}

static void maybe_free(nt_t *n) {
  if (n->phase == NT_STOPPED && n->pending == 0)
    nt_free(n);
}

static void on_timer_close(uv_handle_t *handle) {
  nt_t *n = sw_container_of(handle, nt_t, timer);
  n->pending--;
  maybe_free(n);
}

/* --- attempts ------------------------------------------------------------ */

/* Releases one of the things an attempt waits for; the last frees it. The
 * caller must not touch the attempt afterwards. */
static void attempt_put(nt_attempt_t *a) {
  nt_t *n = a->nt;
  if (--a->pending > 0)
    return;
  entry_unref(a->entry);
  free(a);
  n->pending--;
  maybe_free(n);
}

static void on_attempt_close(uv_handle_t *handle) {
  attempt_put(sw_container_of(handle, nt_attempt_t, tcp));
}

/* Ends an attempt's I/O on every path: verdict, error, timeout, stop.
 * Callbacks still queued for it (connect and write with UV_ECANCELED) run
 * later and see `done`. A lookup it waited for goes on: its answer is for
 * whichever attempt comes next. */
static void attempt_abandon(nt_attempt_t *a) {
  a->done = 1;
  a->resolving = 0;
  if (a->nt->attempt == a)
    a->nt->attempt = NULL;
  if (a->tcp_open && !uv_is_closing((uv_handle_t *)&a->tcp))
    uv_close((uv_handle_t *)&a->tcp, on_attempt_close);
  attempt_put(a);
}

static uint64_t backoff_ms(unsigned failed_attempts) {
  uint64_t ms = SW_NOTIFY_BACKOFF_MS;
  for (unsigned i = 1; i < failed_attempts && ms < SW_NOTIFY_BACKOFF_MAX_MS;
       i++)
    ms *= 2;
  return ms < SW_NOTIFY_BACKOFF_MAX_MS ? ms : SW_NOTIFY_BACKOFF_MAX_MS;
}

/* The current notification is finished (delivered or given up): release
 * it and move on to the next one, from a fresh loop callback. */
static void delivery_next(nt_t *n) {
  nt_entry_t *e = n->current;
  n->current = NULL;
  n->have_resolved = 0;
  entry_unref(e);
  if (sw_list_empty(&n->queue)) {
    n->phase = NT_IDLE;
    (void)uv_timer_stop(&n->timer);
    return;
  }
  n->phase = NT_WAITING;
  timer_arm(n, 0);
}

/* An attempt of the current notification ended with ok or with a reason.
 * Runs in a loop callback, never inside a call from the owner. */
static void delivery_end(nt_t *n, int ok, const char *reason) {
  nt_entry_t *e = n->current;

  if (ok) {
    count_sent++;
    sw_debug("notify", 0, "POST %s (event \"%s\") delivered after %u attempt%s",
             n->shown, e->event, e->attempts, e->attempts == 1 ? "" : "s");
    delivery_next(n);
    return;
  }
  if (e->attempts <= n->retries) {
    uint64_t wait = backoff_ms(e->attempts);
    sw_info("notify", 0,
            "POST %s (event \"%s\") attempt %u failed: %s; retrying in "
            "%" PRIu64 " ms",
            n->shown, e->event, e->attempts, reason, wait);
    n->phase = NT_WAITING;
    timer_arm(n, wait);
    return;
  }
  count_failed++;
  sw_warn("notify", 0, "POST %s failed after %u attempt%s: %s (event \"%s\")",
          n->shown, e->attempts, e->attempts == 1 ? "" : "s", reason, e->event);
  delivery_next(n);
}

static void attempt_end(nt_attempt_t *a, int ok, const char *reason) {
  nt_t *n = a->nt;
  attempt_abandon(a);
  delivery_end(n, ok, reason);
}

static void attempt_fail(nt_attempt_t *a, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void attempt_fail(nt_attempt_t *a, const char *fmt, ...) {
  char reason[NT_REASON_MAX];
  va_list ap;

  va_start(ap, fmt);
  vsnprintf(reason, sizeof(reason), fmt, ap);
  va_end(ap);
  attempt_end(a, 0, reason);
}

/* The status line is complete (it ends at line[len - 1] == '\n'): 2xx is a
 * delivery, anything else a failure. Only "HTTP/1.x DDD" followed by a
 * space or the line's end is a status line. */
static void judge_status(nt_attempt_t *a, size_t len) {
  const char *l = a->line;
  int status;

  if (len < 13 || memcmp(l, "HTTP/1.", 7) != 0 ||
      !isdigit((unsigned char)l[7]) || l[8] != ' ' ||
      !isdigit((unsigned char)l[9]) || !isdigit((unsigned char)l[10]) ||
      !isdigit((unsigned char)l[11]) ||
      (l[12] != ' ' && l[12] != '\r' && l[12] != '\n')) {
    attempt_fail(a, "invalid response: no HTTP/1.x status line");
    return;
  }
  status = (l[9] - '0') * 100 + (l[10] - '0') * 10 + (l[11] - '0');
  if (status >= 200 && status <= 299) {
    attempt_end(a, 1, "");
    return;
  }
  attempt_fail(a, "status %d", status);
}

static void on_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf) {
  nt_attempt_t *a = sw_container_of(handle, nt_attempt_t, tcp);
  /* Reads land in the attempt's own line buffer; on_read ends the attempt
   * before it is full, so the length is never 0. */
  buf->base = a->line + a->got;
  buf->len = sizeof(a->line) - a->got;
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  nt_attempt_t *a = sw_container_of(s, nt_attempt_t, tcp);
  const char *nl;

  if (a->done || nread == 0)
    return;
  if (nread == UV_EOF) {
    attempt_fail(a, "connection closed before the status line");
    return;
  }
  if (nread < 0) {
    attempt_fail(a, "%s", uv_strerror((int)nread));
    return;
  }
  a->got += (size_t)nread;
  nl = memchr(a->line, '\n', a->got);
  if (nl != NULL) {
    judge_status(a, (size_t)(nl - a->line) + 1);
    return;
  }
  if (a->got == sizeof(a->line))
    attempt_fail(a, "invalid response: no status line in %d bytes",
                 NT_STATUS_MAX);
}

static void on_write(uv_write_t *req, int status) {
  nt_attempt_t *a = sw_container_of(req, nt_attempt_t, write);
  /* The buffer is the entry's, which the attempt holds a reference to until
   * its handle is closed: nothing to free here, on any status. */
  if (a->done || status == 0)
    return;
  attempt_fail(a, "send: %s", uv_strerror(status));
}

static void on_connect(uv_connect_t *req, int status) {
  nt_attempt_t *a = sw_container_of(req, nt_attempt_t, connect);
  uv_buf_t b;
  int e;

  if (a->done)
    return;
  if (status < 0) {
    attempt_fail(a, "%s", uv_strerror(status));
    return;
  }
  /* Reading starts first, so an early answer (a 4xx before the body is
   * sent) is seen even if the write then fails. */
  e = uv_read_start((uv_stream_t *)&a->tcp, on_alloc, on_read);
  if (e != 0) {
    attempt_fail(a, "read: %s", uv_strerror(e));
    return;
  }
  b = uv_buf_init(a->entry->req, (unsigned)a->entry->len);
  e = uv_write(&a->write, (uv_stream_t *)&a->tcp, &b, 1, on_write);
  if (e != 0)
    attempt_fail(a, "send: %s", uv_strerror(e));
}

static void attempt_connect(nt_attempt_t *a, const struct sockaddr *addr) {
  int e = uv_tcp_init(a->nt->loop, &a->tcp);
  if (e != 0) {
    attempt_fail(a, "socket: %s", uv_strerror(e));
    return;
  }
  a->tcp_open = 1;
  a->pending++;
  e = uv_tcp_connect(&a->connect, &a->tcp, addr, on_connect);
  if (e != 0)
    attempt_fail(a, "%s", uv_strerror(e));
}

/* --- the name lookup ----------------------------------------------------- */

/* A lookup runs in libuv's thread pool (4 threads unless UV_THREADPOOL_SIZE
 * says otherwise), which it shares with every other lookup of the process,
 * the verifier's among them. Once running it cannot be cancelled, and
 * against a resolver that does not answer it holds its thread for the
 * resolver's own timeout, 10-30 s: far longer than an attempt. Starting one
 * per attempt, 250 ms apart, would fill the pool and starve the others. So
 * at most one lookup is outstanding in the process. It belongs to no
 * attempt and no notifier: an attempt that needs an address while it runs
 * waits for it (within its own timeout), and when it returns its answer
 * goes to the running notifier if that asked the same question. */
typedef struct nt_lookup_s {
  uv_getaddrinfo_t req;
  char port[8];
  char host[]; /* as asked, to match the answer to the notifier */
} nt_lookup_t;

/* The lookup outstanding, or NULL. */
static nt_lookup_t *lookup;

/* What starts a lookup: uv_getaddrinfo, or a test's stand-in. */
static sw_notify_resolver_fn resolver = uv_getaddrinfo;

static void on_resolved(uv_getaddrinfo_t *req,
                        int status,
                        struct addrinfo *res);

/* Starts the lookup of n's host and port. Returns 0, or a negative UV_E*
 * with nothing outstanding. */
static int lookup_start(nt_t *n) {
  size_t len = strlen(n->host);
  nt_lookup_t *l = malloc(sizeof(*l) + len + 1);
  struct addrinfo hints;
  int e;

  if (l == NULL)
    return UV_ENOMEM;
  memcpy(l->host, n->host, len + 1);
  memcpy(l->port, n->port, sizeof(l->port));
  memset(&hints, 0, sizeof(hints));
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_protocol = IPPROTO_TCP;
  e = resolver(n->loop, &l->req, on_resolved, l->host, l->port, &hints);
  if (e != 0) {
    free(l);
    return e;
  }
  lookup = l;
  return 0;
}

/* Finds an address for attempt a: an answer kept from a lookup that came
 * late, or the answer of the outstanding lookup, started now if there is
 * none. Names are resolved at every attempt that has no kept answer, so a
 * receiver that moves is found again. */
static void attempt_resolve(nt_attempt_t *a) {
  nt_t *n = a->nt;
  int e;

  if (n->have_resolved) {
    n->have_resolved = 0;
    attempt_connect(a, (const struct sockaddr *)&n->resolved);
    return;
  }
  a->resolving = 1;
  if (lookup != NULL) {
    sw_debug("notify", 0,
             "POST %s (event \"%s\") attempt %u waits for the lookup "
             "already running",
             n->shown, a->entry->event, a->entry->attempts);
    return;
  }
  e = lookup_start(n);
  if (e != 0) {
    a->resolving = 0;
    attempt_fail(a, "resolve %s: %s", n->host, uv_strerror(e));
  }
}

/* The lookup returned. It frees what it owns (itself and the answer) and
 * touches a notifier only through the module's pointer, since the one that
 * started it may be gone. */
static void on_resolved(uv_getaddrinfo_t *req,
                        int status,
                        struct addrinfo *res) {
  nt_lookup_t *l = sw_container_of(req, nt_lookup_t, req);
  nt_t *n = nt;
  nt_attempt_t *a = NULL;
  int ours;

  lookup = NULL;
  /* The answer is the running notifier's when it asked the same question
   * (a notifier started after a stop may have); a lookup cancelled by a
   * stop answers nothing. */
  ours = n != NULL && !n->literal && status != UV_EAI_CANCELED &&
         strcmp(l->host, n->host) == 0 && strcmp(l->port, n->port) == 0;
  free(l);
  if (n != NULL && n->attempt != NULL && n->attempt->resolving) {
    a = n->attempt;
    a->resolving = 0;
  }
  if (a != NULL && !ours) {
    attempt_resolve(a);
  } else if (a != NULL) {
    if (status < 0 || res == NULL)
      attempt_fail(a, "resolve %s: %s", n->host,
                   uv_strerror(status < 0 ? status : UV_EAI_NONAME));
    else
      attempt_connect(a, res->ai_addr);
  } else if (ours && n->current != NULL && status == 0 && res != NULL &&
             res->ai_addrlen <= sizeof(n->resolved)) {
    /* The attempt that waited for it timed out; the retry uses it rather
     * than wait as long again. */
    memcpy(&n->resolved, res->ai_addr, res->ai_addrlen);
    n->have_resolved = 1;
  }
  uv_freeaddrinfo(res);
}

/* --- starting an attempt ------------------------------------------------- */

/* Starts an attempt of the current notification, or of the next one in the
 * queue. Runs from the timer callback; failures before there is anything to
 * wait for end the attempt at once, which arms the backoff. */
static void attempt_start(nt_t *n) {
  nt_attempt_t *a;
  nt_entry_t *e = n->current;

  if (e == NULL) {
    if (sw_list_empty(&n->queue)) {
      n->phase = NT_IDLE;
      return;
    }
    e = sw_container_of(n->queue.next, nt_entry_t, link);
    sw_list_remove(&e->link);
    n->nqueued--;
    n->current = e;
  }
  e->attempts++;
  n->phase = NT_SENDING;
  /* The timeout bounds the whole attempt: lookup, connect, send and the
   * wait for the status line. */
  timer_arm(n, n->timeout_ms);

  a = calloc(1, sizeof(*a));
  if (a == NULL) {
    delivery_end(n, 0, "out of memory");
    return;
  }
  a->nt = n;
  a->entry = e;
  e->refs++;
  a->pending = 1; /* the hold released by attempt_abandon */
  n->pending++;
  n->attempt = a;

  if (n->literal)
    attempt_connect(a, (const struct sockaddr *)&n->addr);
  else
    attempt_resolve(a);
}

static void on_timer(uv_timer_t *t) {
  nt_t *n = sw_container_of(t, nt_t, timer);

  if (n->phase == NT_SENDING) {
    nt_attempt_t *a = n->attempt;
    if (a != NULL && a->resolving)
      attempt_fail(a, "timeout after %" PRIu64 " ms resolving %s",
                   n->timeout_ms, n->host);
    else if (a != NULL)
      attempt_fail(a, "timeout after %" PRIu64 " ms", n->timeout_ms);
    return;
  }
  if (n->phase == NT_WAITING)
    attempt_start(n);
}

/* --- the owner's calls --------------------------------------------------- */

/* The compact JSON text of body with "event" added when absent, or NULL. A
 * new object is built so the caller's is never modified; "event" comes
 * first so a reader sees it at once. */
static char *serialise(const char *event, json_t *body) {
  json_t *doc;
  char *text;

  if (body != NULL && json_object_get(body, "event") != NULL) {
    doc = json_incref(body);
  } else {
    doc = json_object();
    if (doc == NULL ||
        json_object_set_new(doc, "event", json_string(event)) != 0 ||
        (body != NULL && json_object_update(doc, body) != 0)) {
      json_decref(doc);
      return NULL;
    }
  }
  text = json_dumps(doc, JSON_COMPACT);
  json_decref(doc);
  return text;
}

void sw_notify_send(const char *event, json_t *body) {
  nt_t *n = nt;
  nt_entry_t *e;
  char *text;
  size_t body_len;
  int head_len;

  if (n == NULL)
    return;
  if (event == NULL || (body != NULL && !json_is_object(body))) {
    count_dropped++;
    sw_warn("notify", 0, "not sent (event \"%s\"): %s",
            event != NULL ? event : "(none)",
            event == NULL ? "no event name" : "the body is not a JSON object");
    return;
  }
  text = serialise(event, body);
  if (text == NULL) {
    count_dropped++;
    sw_warn("notify", 0,
            "not sent (event \"%s\"): cannot serialise the body "
            "(out of memory, or a NaN or non-UTF-8 value)",
            event);
    return;
  }
  body_len = strlen(text);
  head_len = snprintf(NULL, 0,
                      "POST %s HTTP/1.1\r\nHost: %s\r\n"
                      "Content-Type: application/json\r\n"
                      "Content-Length: %zu\r\nConnection: close\r\n"
                      "User-Agent: switchd\r\n\r\n",
                      n->path, n->host_header, body_len);
  e = head_len < 0 ? NULL
                   : malloc(sizeof(*e) + (size_t)head_len + body_len + 1);
  if (e == NULL) {
    free(text);
    count_dropped++;
    sw_warn("notify", 0, "not sent (event \"%s\"): out of memory", event);
    return;
  }
  memset(e, 0, sizeof(*e));
  sw_list_init(&e->link);
  e->refs = 1;
  copy_text(e->event, sizeof(e->event), event);
  snprintf(e->req, (size_t)head_len + 1,
           "POST %s HTTP/1.1\r\nHost: %s\r\n"
           "Content-Type: application/json\r\n"
           "Content-Length: %zu\r\nConnection: close\r\n"
           "User-Agent: switchd\r\n\r\n",
           n->path, n->host_header, body_len);
  memcpy(e->req + head_len, text, body_len + 1);
  e->len = (size_t)head_len + body_len;
  free(text);

  /* A full queue loses its oldest entry: the newest events describe the
   * state the receiver most needs to know. */
  if (n->nqueued >= SW_NOTIFY_QUEUE_MAX) {
    nt_entry_t *old = sw_container_of(n->queue.next, nt_entry_t, link);
    sw_list_remove(&old->link);
    n->nqueued--;
    count_dropped++;
    sw_warn("notify", 0,
            "queue full (%d waiting): dropped the oldest notification "
            "(event \"%s\") to %s",
            SW_NOTIFY_QUEUE_MAX, old->event, n->shown);
    entry_unref(old);
  }
  sw_list_append(&n->queue, &e->link);
  n->nqueued++;
  /* Delivery starts from the timer, never here: this call only queues. */
  if (n->phase == NT_IDLE) {
    n->phase = NT_WAITING;
    timer_arm(n, 0);
  }
}

void sw_notify_stop(void) {
  nt_t *n = nt;
  size_t lost;

  if (n == NULL)
    return;
  nt = NULL;
  lost = n->nqueued + (n->current != NULL ? 1 : 0);
  n->phase = NT_STOPPED;
  if (n->attempt != NULL)
    attempt_abandon(n->attempt);
  /* A lookup still queued in the thread pool is cancelled and returns at
   * once; one already running cannot be, and libuv keeps the loop alive
   * until it returns. Either way it frees only itself and its answer, and
   * this notifier does not wait for it. */
  if (lookup != NULL)
    (void)uv_cancel((uv_req_t *)&lookup->req);
  if (n->current != NULL) {
    entry_unref(n->current);
    n->current = NULL;
  }
  while (!sw_list_empty(&n->queue)) {
    nt_entry_t *e = sw_container_of(n->queue.next, nt_entry_t, link);
    sw_list_remove(&e->link);
    entry_unref(e);
  }
  n->nqueued = 0;
  count_dropped += lost;
  if (lost > 0)
    sw_info("notify", 0,
            "stopped: dropped %zu undelivered notification%s to %s", lost,
            lost == 1 ? "" : "s", n->shown);
  uv_close((uv_handle_t *)&n->timer, on_timer_close);
}

uint64_t sw_notify_sent(void) {
  return count_sent;
}

uint64_t sw_notify_failed(void) {
  return count_failed;
}

uint64_t sw_notify_dropped(void) {
  return count_dropped;
}

void sw_notify_set_resolver(sw_notify_resolver_fn fn) {
  resolver = fn != NULL ? fn : uv_getaddrinfo;
}
