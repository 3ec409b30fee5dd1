/* Active health checks. One sw_health_t checks one upstream server for as
 * long as it runs: every interval it opens a fresh TCP connection (never a
 * pooled one, so each probe tests that the server still accepts
 * connections), sends
 *
 *   GET PATH HTTP/1.1\r\nHost: HOST\r\nUser-Agent: switchd-health\r\n
 *   Connection: close\r\n\r\n
 *
 * and judges the response: a probe passes iff the status is within
 * [status_min, status_max] and, when a body substring is configured, the
 * first SW_HEALTH_BODY_MAX bytes of the body contain it. Redirects are never
 * followed: a 3xx outside the accepted range is a failure like any other.
 * The response is parsed by llhttp as strictly as the proxy parses upstream
 * responses, so a server passes only if the proxy could use its answers.
 *
 * Rise and fall: the state starts down (unknown is down) unless start is
 * given another initial state; `rise` passes in a row make a down server up,
 * `fall` failures in a row make an up server down. The owner's callback
 * runs after every probe, not only on a change, so a cutover gate can count
 * consecutive passes from the moment it was asked.
 *
 * The module owns its sockets and its timer and nothing else: it never
 * touches the proxy's pools or globals (the owner applies results) and it
 * logs nothing (the owner logs transitions with the reason it is given). */
#ifndef SW_HEALTH_H
#define SW_HEALTH_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

/* Response bytes read at most, per part: a server cannot make a probe hold
 * more memory than this whatever it sends. */
#define SW_HEALTH_HEAD_MAX (64 * 1024)
#define SW_HEALTH_BODY_MAX (64 * 1024)
/* The same, as text for failure reasons. */
#define SW_HEALTH_HEAD_MAX_TEXT "65536"
#define SW_HEALTH_BODY_MAX_TEXT "65536"
/* Bounds on the configured strings (a Host name is at most 255 bytes). */
#define SW_HEALTH_PATH_MAX 2048
#define SW_HEALTH_HOST_MAX 255
#define SW_HEALTH_BODY_MATCH_MAX 1024
/* Room for a failure reason, NUL included. */
#define SW_HEALTH_REASON_MAX 160

typedef enum sw_health_state_e {
  SW_HEALTH_DOWN = 0,
  SW_HEALTH_UP,
} sw_health_state_t;

/* Where a checker is in its cycle. */
typedef enum sw_health_phase_e {
  SW_HEALTH_IDLE = 0, /* created, or waiting for the next probe */
  SW_HEALTH_PROBING,  /* a probe is in flight */
  SW_HEALTH_STOPPED,  /* stopped: handles closing or closed */
} sw_health_phase_t;

/* What to check and how often. sw_health_new copies the strings. */
typedef struct sw_health_params_s {
  const char *path; /* request target, starting with '/' */
  const char *host; /* Host header; NULL: the server's address text,
                     * "127.0.0.1:9001" or "[::1]:9001" */
  int status_min;   /* accepted statuses, inclusive; 200..299 by default */
  int status_max;
  const char *body;     /* substring the body must contain; NULL: none */
  uint64_t interval_ms; /* from the start of one probe to the next */
  uint64_t timeout_ms;  /* a whole probe: connect, send, response */
  unsigned rise;        /* passes in a row that make a server up */
  unsigned fall;        /* failures in a row that make a server down */
  /* TLS to the server (the upstream's `tls on`): each probe is a TLS
   * connection made with this client context (sw_tls_client_ctx_new; the
   * checker holds a reference), checking tls_name when set, else tls_ip.
   * NULL: plain HTTP. A verification failure fails the probe with the
   * reason, e.g. "tls: certificate verify failed: hostname mismatch". */
  struct sw_tls_ctx_s *tls;
  const char *tls_name;
  const char *tls_ip;
} sw_health_params_t;

/* The outcome of one probe, as given to the callback and kept as `last`. */
typedef struct sw_health_result_s {
  uint64_t seq;       /* the probe's number, from 1; 0: none finished yet */
  int pass;           /* 1 if the probe passed */
  int status;         /* HTTP status received, 0 if none */
  const char *reason; /* "" on a pass, else why it failed, e.g.
                       * "connect: ECONNREFUSED"; valid until the next
                       * result or the checker is freed */
  unsigned passes;    /* consecutive passes, this probe included */
  unsigned fails;     /* consecutive failures, this probe included */
  sw_health_state_t state; /* the state after this probe */
  int changed;             /* this probe changed the state */
  uint64_t started_ms;     /* loop time (uv_now) the probe started */
  uint64_t duration_ms;    /* from start to verdict */
  uint64_t wall_ms;        /* wall-clock time of the verdict, ms since
                            * the epoch, for status and metrics */
} sw_health_result_t;

typedef struct sw_health_s sw_health_t;
struct sw_health_probe_s;

/* Runs after every probe, in a loop callback (never inside a call into this
 * module). It may call sw_health_probe_now and sw_health_stop. */
typedef void (*sw_health_cb)(sw_health_t *h, const sw_health_result_t *r);
/* Runs once every handle of a stopped checker is closed, just before its
 * memory is freed. */
typedef void (*sw_health_close_cb)(sw_health_t *h);

/* Fields are read-only outside proxy/health.c. */
struct sw_health_s {
  uv_timer_t timer; /* idle: the next probe; probing: the probe's timeout */
  uv_loop_t *loop;
  void *data; /* the owner's */
  struct sockaddr_storage addr;
  char name[64];             /* for display, e.g. "127.0.0.1:9001" */
  sw_health_params_t params; /* strings point at copies we own */
  char *request;             /* the probe request, built once */
  size_t request_len;
  sw_health_cb cb;
  sw_health_close_cb close_cb;
  sw_health_phase_t phase;
  int started;
  struct sw_health_probe_s *probe; /* in flight, or NULL */
  unsigned pending;                /* handles not yet closed */

  sw_health_state_t state;
  unsigned passes; /* consecutive */
  unsigned fails;  /* consecutive */
  uint64_t seq;    /* probes started */
  uint64_t probes; /* probes finished */
  uint64_t failures;
  uint64_t transitions; /* state changes */

  sw_health_result_t last; /* last.seq == 0 until a probe finishes */
  char reason[SW_HEALTH_REASON_MAX];
  /* The last failure survives later passes, for status pages. */
  char last_failure[SW_HEALTH_REASON_MAX]; /* "" if none yet */
  uint64_t last_failure_wall_ms;
};

/* Fills the defaults: GET /health/detailed/, Host from the address, 2xx,
 * no body match, every 2 s, timeout 1 s, rise 3, fall 3. */
void sw_health_params_default(sw_health_params_t *p);

/* Validates params and creates a checker for the server at addr (IPv4 or
 * IPv6), idle until sw_health_start. name may be NULL (the address text is
 * used). Returns 0 and *out, or UV_EINVAL (a bad parameter: a path not
 * starting with '/' or holding spaces or control bytes, a bad Host, an
 * empty status range, a zero interval, timeout, rise or fall) or
 * UV_ENOMEM. */
int sw_health_new(uv_loop_t *loop,
                  const struct sockaddr *addr,
                  const char *name,
                  const sw_health_params_t *params,
                  sw_health_cb cb,
                  void *data,
                  sw_health_t **out);

/* Starts checking with the given initial state; the first probe runs on the
 * next loop iteration. A running checker's timer keeps the loop alive:
 * the owner stops every checker at shutdown. Returns 0, UV_EALREADY if started,
 * UV_EINVAL if stopped. */
int sw_health_start(sw_health_t *h, sw_health_state_t initial);

/* Asks for a probe now, outside the interval. It counts toward rise and fall
 * like any other. Never two probes at once: if one is in flight, its result
 * is the answer. *seq (if seq is not NULL) gets the number of the probe
 * whose result answers: wait for a result with r->seq >= *seq. Returns 0,
 * or UV_EINVAL if not started or stopped. */
int sw_health_probe_now(sw_health_t *h, uint64_t *seq);

/* Stops checking: an in-flight probe is abandoned (its connection closed)
 * and no callback runs after this call. close_cb (may be NULL) runs once
 * every handle is closed; the memory is freed after it. Idempotent: a
 * second call does nothing. */
void sw_health_stop(sw_health_t *h, sw_health_close_cb close_cb);

/* A colour is healthy iff at least one of its servers is up. NULL entries
 * are skipped; n == 0 is unhealthy. */
int sw_health_any_up(sw_health_t *const *hs, size_t n);

/* "up" or "down". */
const char *sw_health_state_name(sw_health_state_t s);

#endif
