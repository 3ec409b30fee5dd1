/* Webhook notifications. When switchd flips, rolls back, blocks a rollback,
 * raises an alert or ends a watch window, the owner calls sw_notify_send and
 * this module POSTs a JSON body to the one configured URL:
 *
 *   POST PATH HTTP/1.1\r\nHost: HOST[:PORT]\r\n
 *   Content-Type: application/json\r\nContent-Length: N\r\n
 *   Connection: close\r\nUser-Agent: switchd\r\n\r\nBODY
 *
 * Delivery is asynchronous and in order: one POST is in flight at a time,
 * each on a fresh connection, and the rest wait in a FIFO queue of at most
 * SW_NOTIFY_QUEUE_MAX entries. A POST succeeds when a 2xx status line
 * arrives; the module reads nothing after the status line and closes.
 * Anything else (a refused or reset connection, a DNS failure, a timeout, a
 * status other than 2xx, a malformed status line) fails the attempt, which is
 * retried after a backoff of 250 ms, doubling, capped at 5 s, up to
 * `retries` more times; then the notification is counted as failed and
 * logged at warn with the reason.
 *
 * sw_notify_send never blocks and never delays a request: it serialises the
 * body and queues it; connecting, resolving and sending all happen in later
 * loop callbacks. A receiver that accepts and never answers holds up only
 * the notifications behind it, and each of its attempts for at most
 * timeout_ms.
 *
 * Host names are looked up in libuv's thread pool, which the process
 * shares, and a lookup already running there cannot be cancelled. So at
 * most one lookup is outstanding at any time: an attempt that times out
 * while resolving leaves its lookup running, and the next attempt waits for
 * it (and connects to its answer) instead of starting another. A lookup
 * that returns after the attempt waiting for it ended is kept for the next
 * attempt of the same notification.
 *
 * The state is module-static: one notifier per process, started and
 * stopped by the owner (start, stop, start again is allowed, with or without
 * running the loop in between). Logging uses module "notify", connection 0. */
#ifndef SW_NOTIFY_H
#define SW_NOTIFY_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

/* Notifications waiting behind the one being delivered, at most. When the
 * queue is full the oldest waiting one is dropped (counted, logged at warn)
 * so that the newest events, which describe the current state, get out. */
#define SW_NOTIFY_QUEUE_MAX 64

/* Retry backoff: the first wait, and the cap of the doubling. */
#define SW_NOTIFY_BACKOFF_MS 250
#define SW_NOTIFY_BACKOFF_MAX_MS 5000

/* Bounds on the URL as a whole, and on a name's length. */
#define SW_NOTIFY_URL_MAX 2048
#define SW_NOTIFY_HOST_MAX 253

/* What sw_notify_start needs. sw_notify_start copies what it keeps. */
typedef struct sw_notify_opts_s {
  const char *url;     /* http://HOST[:PORT][/PATH]; HOST an IPv4 literal,
                        * [IPv6] or a name (resolved with uv_getaddrinfo for
                        * each attempt, the first address used); PORT
                        * defaults to 80, PATH to "/" and may carry a query;
                        * no https, credentials or fragment */
  uint64_t timeout_ms; /* per attempt: resolve + connect + send + response
                        * head up to the status line; must be > 0 */
  unsigned retries;    /* further attempts after a failed one */
} sw_notify_opts_t;

/* Parses and checks o and starts the notifier on loop; nothing is sent until
 * sw_notify_send. Returns 0; SW_ECONFIG with a message in err (a NULL or
 * malformed URL, a scheme other than http, a bad host or port, a path with
 * spaces or control bytes, a zero timeout); UV_EALREADY if already started
 * (stop first); UV_ENOMEM or another negative UV_E* error from libuv. On
 * any error nothing is left open. err may be NULL when errlen is 0. */
int sw_notify_start(uv_loop_t *loop,
                    const sw_notify_opts_t *o,
                    char *err,
                    size_t errlen);

/* Queues one POST of body with "event": event added when body has no
 * "event" member. body is borrowed and never modified: it is serialised
 * (json_dumps, compact) before this returns, so the caller may change or
 * free it at once. body may be NULL (the POST is {"event": event}); a body
 * that is not an object, a NULL event or a body json_dumps refuses is
 * logged at warn and counted as dropped. Never blocks, never calls back into
 * the caller, never fails visibly: a notification that cannot be delivered
 * is logged and counted. A no-op when the notifier is not started. */
void sw_notify_send(const char *event, json_t *body);

/* Stops the notifier: the POST in flight is abandoned, every handle is
 * closed and queued notifications are dropped (counted as dropped and
 * logged at info with their count). Memory is freed in the close
 * callbacks, so the loop must run afterwards for it to be released; a new
 * sw_notify_start may come before that. A name lookup still queued is
 * cancelled; one already running cannot be: the notifier does not wait for
 * it, but libuv keeps the loop alive until it returns (at most the
 * resolver's own timeout), when it frees itself and its answer. A notifier
 * started meanwhile waits for that lookup too, and uses its answer if it
 * asked for the same host and port. Idempotent; a no-op when not
 * started. */
void sw_notify_stop(void);

/* Counters for metrics, for the life of the process (they survive stop and
 * start). Every call of sw_notify_send while started ends in exactly one of
 * them: sent (a 2xx came back), failed (its last attempt failed) or dropped
 * (refused by sw_notify_send, pushed out of a full queue, or undelivered at
 * stop). */
uint64_t sw_notify_sent(void);
uint64_t sw_notify_failed(void);
uint64_t sw_notify_dropped(void);

/* For tests only: what starts a name lookup. It has uv_getaddrinfo's contract:
 * it returns 0 and cb runs once, later, from the loop, or it returns an
 * error and cb never runs. req must be a request libuv knows (submitted
 * through uv_getaddrinfo, even with another callback), because stop calls
 * uv_cancel on it. */
typedef int (*sw_notify_resolver_fn)(uv_loop_t *loop,
                                     uv_getaddrinfo_t *req,
                                     uv_getaddrinfo_cb cb,
                                     const char *node,
                                     const char *service,
                                     const struct addrinfo *hints);

/* For tests only: replaces uv_getaddrinfo with fn for later lookups; NULL puts
 * uv_getaddrinfo back. */
void sw_notify_set_resolver(sw_notify_resolver_fn fn);

#endif
