/* The hold barrier (DESIGN §4): for a migration the old code cannot
 * survive, new requests stop being sent upstream and wait in a queue, in
 * arrival order, until the barrier is released: to the live colour of that
 * moment, which after a flip is the new one. Meanwhile the requests already
 * in flight on the live colour finish, and the barrier reports the moment
 * none is left ("quiet"): the schema can change with nobody using it.
 *
 * Bounds: a hold lasts at most its max (hold_max unless the caller gives
 * another), then releases itself to the live colour, so the proxy never
 * holds forever; it queues at most the config's hold_queue requests, and a
 * request past that is answered 503 with Retry-After at once. A client that
 * goes away while held leaves the queue. Held clients see latency, not
 * errors: a released request is dispatched exactly as it would have been,
 * so its retries, timeouts and the watch's counting are the usual ones.
 *
 * One hold at a time. The module keeps the figures of the hold in progress
 * and of the last one ended (requests held, released, rejected, gone, the
 * deepest queue, the time until quiet, the added latency of released
 * requests: max and p99), for status, metrics and the cutover report. */
#ifndef SW_HOLD_H
#define SW_HOLD_H

#include <stdint.h>

#include "sw_proxy.h"

/* Why a hold ended (stable names: JSON, logs and metrics use them). */
typedef enum sw_hold_end_e {
  SW_HOLD_END_NONE = 0,
  SW_HOLD_END_RELEASE,  /* an operator's release */
  SW_HOLD_END_FLIP,     /* a cutover or rollback flipped: to the new colour */
  SW_HOLD_END_ABORT,    /* the cutover it was for ended without a flip */
  SW_HOLD_END_EXPIRED,  /* it reached its max */
  SW_HOLD_END_SHUTDOWN, /* switchd is stopping: the queue is served first */
} sw_hold_end_t;

/* What happened; the caller (control.c) tells operators. */
typedef enum sw_hold_event_e {
  SW_HOLD_EV_QUIET = 0, /* the live colour has nothing in flight */
  SW_HOLD_EV_ENDED,     /* released (stats.end says why) */
} sw_hold_event_t;

#define SW_HOLD_BY 64

typedef struct sw_hold_stats_s {
  int valid;            /* a hold has started */
  int active;           /* this one is still holding */
  uint64_t started;     /* wall-clock ms */
  uint64_t ended;       /* wall-clock ms; 0 while active */
  uint64_t max_ms;      /* its bound */
  uint64_t quiet_ms;    /* from the start to quiet; UINT64_MAX: not yet */
  uint64_t held;        /* requests queued */
  uint64_t released;    /* dispatched at the end */
  uint64_t gone;        /* the client went away while held */
  uint64_t rejected;    /* answered 503: the queue was full */
  uint64_t depth;       /* queued now */
  uint64_t peak;        /* deepest the queue was */
  uint64_t wait_max_us; /* added latency of released requests */
  uint64_t wait_p99_us;
  sw_hold_end_t end;
  sw_colour_t released_to;
  char by[SW_HOLD_BY]; /* who or what started it */
} sw_hold_stats_t;

/* Totals since the start, for metrics. */
typedef struct sw_hold_totals_s {
  uint64_t holds;
  uint64_t held;
  uint64_t rejected;
  uint64_t expired;
  uint64_t held_ms; /* time spent holding */
} sw_hold_totals_t;

typedef void (*sw_hold_cb)(sw_hold_event_t ev, void *data);

/* Once at startup: the timer on sw.loop, and who hears of events. */
int sw_hold_init(sw_hold_cb cb, void *data);
/* At shutdown: releases a hold in progress (SHUTDOWN) and closes the
 * timer. */
void sw_hold_close(void);

/* Starts holding new requests for at most max_ms (0: the config's
 * hold_max). Returns 0, or UV_EBUSY when a hold is in progress. When the
 * live colour is already quiet, QUIET is reported from the loop, after this
 * returns. */
int sw_hold_start(uint64_t max_ms, const char *by);
/* Ends the hold: every queued request is dispatched, in arrival order, to
 * the live colour. Returns 0, or UV_ENOENT when nothing is held. */
int sw_hold_release(sw_hold_end_t why);
int sw_hold_active(void);
/* The live colour's requests in flight (what quiet waits for), leaving
 * out upgraded tunnels (WebSocket), which sw_hold_tunnels counts: they
 * live as long as their clients like, and are reported, not waited for. */
uint64_t sw_hold_inflight(void);
uint64_t sw_hold_tunnels(void);
const sw_hold_stats_t *sw_hold_stats(void);
const sw_hold_totals_t *sw_hold_totals(void);
/* "release", "flip", "abort", "expired", "shutdown"; "none". */
const char *sw_hold_end_name(sw_hold_end_t e);

/* The data path. sw_hold_admit is called where a request would be sent
 * upstream: 1 when the hold took it (queued, or answered 503), 0 to go on.
 * sw_hold_forget when an exchange is freed while queued. sw_hold_poke when
 * a request of some colour stops being in flight, while sw_hold_waiting. */
extern int sw_hold_waiting;
int sw_hold_admit(sw_req_t *r);
void sw_hold_forget(sw_req_t *r);
void sw_hold_poke(void);

#endif
