/* The error watch (DESIGN §5): what each colour served and how much of it
 * failed, blue's error ratio before a flip, and the four triggers that decide
 * whether the newly live colour must be rolled back. This module owns those
 * counts and that decision and nothing else. It is pure: it never does I/O,
 * never reads a clock, never touches libuv and holds no globals. The caller
 * feeds it responses (sw_watch_observe), colour-level health
 * (sw_watch_on_health) and ticks, each with the current time in ms, and acts
 * on the verdict it hands back: FIRE means "roll back now, in this loop
 * turn", ALERT means "tell people; the operator decides".
 *
 * Counting. Per colour, a ring of 1 s buckets {requests, errors}, allocated
 * once at sw_watch_init and never grown; each bucket remembers the second it
 * holds, so a bucket left over from an earlier lap of the ring (a quiet
 * minute, a long jump of the clock) reads as empty. Totals since the flip are
 * kept apart, for the watched colour only.
 *
 * What is an error: an upstream status 500..599 that is not in the
 * exclusion list (default 501 and 505: "not implemented" and "version not
 * supported" are answers about the request, not failures of the code), and
 * the proxy's own 502, 503 or 504 when the caller attributes it to the
 * colour (connect refused, reset, timeout). 4xx are not errors; client
 * aborts are not observed at all (the caller does not call observe). Only
 * the colour that served a response counts it: blue's failures while it
 * drains never count against green.
 *
 * Windows (DESIGN §4), from the flip at sw_watch_arm:
 *
 *   watching          [flip, flip + auto_window): a trigger FIREs.
 *   committed_manual  [flip + auto_window, flip + manual_window): a trigger
 *                     only ALERTs.
 *   final             from flip + manual_window, or after sw_watch_end (an
 *                     operator's commit or rollback): nothing is evaluated.
 *
 * A trigger is latched: once a watch has fired or alerted it hands out no
 * other verdict until it is armed again. Its outcome:
 *
 *   fired         a trigger fired or alerted;
 *   unverified    the watch ended, however, with fewer than min_requests
 *                 served by the watched colour (too little traffic to say
 *                 anything);
 *   inconclusive  the watch was ended early (sw_watch_end) by something
 *                 other than its own decision: never a pass;
 *   verified      it reached the end of the manual window quietly with
 *                 enough traffic.
 *
 * Triggers, evaluated on every observation of the watched colour and on
 * sw_watch_tick; each can be turned off:
 *
 *   R1  errors since the flip > max_errors, and that many is unlikely as
 *       noise given blue's baseline ratio p0: the Poisson upper tail
 *       P(X >= errors | lambda = requests * p0) < alpha. p0 carries a
 *       Jeffreys floor, (baseline_errors + 0.5) / (baseline_requests + 1),
 *       so a clean baseline is small but not zero. A baseline of fewer than
 *       min_requests says nothing about blue's noise, and R1 is then the
 *       seed's plain count rule (errors > max_errors).
 *   R2  errors / requests over the last r2_window_ms (whole seconds,
 *       counting the current one) >= max_error_ratio, once that window
 *       holds at least min_requests.
 *   R3  max_consecutive errors in a row with no other response between.
 *   R4  the caller reports the watched colour down (fall checks in a row).
 *
 * Times are the caller's milliseconds (uv_now() in switchd). A time earlier
 * than one already seen is taken as the latest seen: the ring never goes
 * back. */
#ifndef SW_WATCH_H
#define SW_WATCH_H

#include <stddef.h>
#include <stdint.h>

#include "sw_types.h"

/* Bound on the one-line text of a verdict. */
#define SW_WATCH_TEXT 200
/* Bound on the exclusion list. */
#define SW_WATCH_EXCLUDE_MAX 16
/* Bound on the ring: one day of seconds, 1.4 MB per colour. */
#define SW_WATCH_RING_MAX (24 * 60 * 60)

#define SW_WATCH_DEFAULT_AUTO_WINDOW_MS (5 * 60 * 1000)
#define SW_WATCH_DEFAULT_MANUAL_WINDOW_MS (30 * 60 * 1000)
#define SW_WATCH_DEFAULT_BASELINE_WINDOW_MS (10 * 60 * 1000)
#define SW_WATCH_DEFAULT_MIN_REQUESTS 20
#define SW_WATCH_DEFAULT_MAX_ERRORS 10
#define SW_WATCH_DEFAULT_ALPHA 1e-3
#define SW_WATCH_DEFAULT_R2_WINDOW_MS (10 * 1000)
#define SW_WATCH_DEFAULT_MAX_ERROR_RATIO 0.5
#define SW_WATCH_DEFAULT_MAX_CONSECUTIVE 5

/* The names of these values (sw_watch_*_name) are stable: JSON, metric
 * labels and the state file use them. */
typedef enum sw_watch_phase_e {
  SW_WATCH_IDLE = 0, /* never armed */
  SW_WATCH_WATCHING, /* auto window: triggers fire */
  SW_WATCH_MANUAL,   /* manual window: triggers alert */
  SW_WATCH_FINAL,    /* windows over, or ended early */
} sw_watch_phase_t;

typedef enum sw_watch_rule_e {
  SW_WATCH_RULE_NONE = 0,
  SW_WATCH_R1, /* errors since the flip, guarded against noise */
  SW_WATCH_R2, /* error ratio over a sliding window */
  SW_WATCH_R3, /* consecutive errors */
  SW_WATCH_R4, /* health */
} sw_watch_rule_t;

#define SW_WATCH_RULES (SW_WATCH_R4 + 1)

typedef enum sw_watch_verdict_e {
  SW_WATCH_NONE = 0, /* nothing to do */
  SW_WATCH_FIRE,     /* roll back now (auto window) */
  SW_WATCH_ALERT,    /* tell people; rollback needs an operator */
} sw_watch_verdict_t;

typedef enum sw_watch_outcome_e {
  SW_WATCH_PENDING = 0, /* not armed, or still running quietly */
  SW_WATCH_VERIFIED,
  SW_WATCH_UNVERIFIED,
  SW_WATCH_FIRED,
  SW_WATCH_INCONCLUSIVE,
} sw_watch_outcome_t;

typedef struct sw_watch_params_s {
  uint64_t auto_window_ms;
  uint64_t manual_window_ms; /* counted from the flip; >= auto_window_ms */
  uint64_t baseline_window_ms;
  /* Buckets per colour. 0: enough for the longest window (manual, baseline
   * or R2), rounded up to whole seconds. Never more than SW_WATCH_RING_MAX,
   * never fewer than the baseline and R2 windows need. */
  size_t ring_seconds;
  /* Upstream statuses in 500..599 that are not errors. */
  int exclude[SW_WATCH_EXCLUDE_MAX];
  size_t nexclude;
  /* Traffic a watch needs to be verified; also what R2's window and R1's
   * baseline need before they mean anything. */
  uint64_t min_requests;
  int r1_enabled;
  uint64_t max_errors;
  double alpha; /* in (0, 1] */
  int r2_enabled;
  uint64_t r2_window_ms;
  double max_error_ratio; /* in (0, 1] */
  int r3_enabled;
  uint64_t max_consecutive; /* >= 1 */
  int r4_enabled;
} sw_watch_params_t;

/* One second of one colour. */
typedef struct sw_watch_bucket_s {
  uint64_t second; /* now / 1000 of what it counts; UINT64_MAX: never used */
  uint32_t requests;
  uint32_t errors;
} sw_watch_bucket_t;

/* A verdict and the numbers behind it, for the log, status, metrics and the
 * webhook. The counts are the watched colour's at the time of the verdict. */
typedef struct sw_watch_result_s {
  sw_watch_verdict_t verdict;
  sw_watch_rule_t rule;
  sw_colour_t colour; /* the watched colour */
  uint64_t at;        /* the caller's time of the verdict, ms */
  uint64_t since_flip_ms;
  uint64_t errors; /* since the flip */
  uint64_t requests;
  uint64_t baseline_errors;
  uint64_t baseline_requests;
  double baseline_ratio; /* p0 as R1 used it (floored); 0 with no baseline */
  double log_tail;       /* R1: ln P(X >= errors); 0 when not computed */
  uint64_t window_ms;    /* R2's window */
  uint64_t window_errors;
  uint64_t window_requests;
  uint64_t consecutive;
  char text[SW_WATCH_TEXT]; /* one line of ASCII, for people */
} sw_watch_result_t;

/* What the state file keeps, so that a restarted switchd resumes the watch
 * with the time it has left. The R2 window and the R3 run are not kept:
 * they describe the last seconds, which a restart interrupts anyway. */
typedef struct sw_watch_persisted_s {
  int armed;
  sw_colour_t colour; /* the watched colour */
  uint64_t flip_at;
  uint64_t auto_window_ms; /* as armed; 0: the params' */
  uint64_t manual_window_ms;
  int ended; /* ended early by sw_watch_end */
  uint64_t ended_at;
  uint64_t requests; /* the watched colour's, since the flip */
  uint64_t errors;
  uint64_t baseline_requests;
  uint64_t baseline_errors;
  sw_watch_verdict_t fired; /* NONE, FIRE or ALERT */
  sw_watch_rule_t rule;
  uint64_t fired_at;
} sw_watch_persisted_t;

/* The watch. A plain struct the caller embeds; every field is readable
 * (status and metrics read them), and only sw_watch_* calls change them. */
typedef struct sw_watch_s {
  sw_watch_params_t params;
  size_t ring_len;
  sw_watch_bucket_t *ring[SW_COLOURS]; /* ring_len each */
  uint64_t last_now;                   /* the latest time seen */
  int armed;
  sw_colour_t colour;
  uint64_t flip_at;
  uint64_t auto_window_ms; /* as armed */
  uint64_t manual_window_ms;
  int ended; /* ended early by sw_watch_end */
  uint64_t ended_at;
  uint64_t requests; /* the watched colour's, since the flip */
  uint64_t errors;
  uint64_t consecutive;
  /* R1's verdict depends only on the error count once armed (more requests
   * only make errors less surprising), so it is computed again only when
   * the count has moved past the one last found unsurprising. */
  uint64_t r1_checked;
  uint64_t baseline_requests;
  uint64_t baseline_errors;
  sw_watch_result_t fired; /* verdict NONE until a trigger fires */
} sw_watch_t;

/* Fills p with the defaults of DESIGN §5. */
void sw_watch_params_default(sw_watch_params_t *p);

/* Checks p and allocates the rings. Returns 0, SW_ECONFIG when p is
 * invalid (nothing allocated), or -ENOMEM (UV_ENOMEM). Pair with
 * sw_watch_close. p NULL: the defaults. */
int sw_watch_init(sw_watch_t *w, const sw_watch_params_t *p);

/* A reload: new thresholds and windows for what comes next (a running
 * watch keeps the windows it was armed with). A ring too short for the new
 * windows is rebuilt longer, keeping every second it holds. Returns 0,
 * SW_ECONFIG (nothing changed) or -ENOMEM (nothing changed). */
int sw_watch_set_params(sw_watch_t *w, const sw_watch_params_t *p);

/* Frees the rings; idempotent. */
void sw_watch_close(sw_watch_t *w);

/* Whether status is an error under p (the classification above). */
int sw_watch_is_error(const sw_watch_params_t *p,
                      int status,
                      int proxy_generated);

/* One response served by colour c, upstream status or (proxy_generated)
 * the proxy's own answer caused by c. Counts it and, when c is the watched
 * colour, evaluates the triggers. Returns the verdict; out (may be NULL)
 * gets the result, verdict NONE when nothing fired. */
sw_watch_verdict_t sw_watch_observe(sw_watch_t *w,
                                    uint64_t now,
                                    sw_colour_t c,
                                    int status,
                                    int proxy_generated,
                                    sw_watch_result_t *out);

/* Colour c became healthy or unhealthy (rise/fall applied by the caller).
 * The watched colour going down is R4. */
sw_watch_verdict_t sw_watch_on_health(sw_watch_t *w,
                                      uint64_t now,
                                      sw_colour_t c,
                                      int healthy,
                                      sw_watch_result_t *out);

/* Time passes: evaluates the triggers again (R2's window slides). */
sw_watch_verdict_t sw_watch_tick(sw_watch_t *w,
                                 uint64_t now,
                                 sw_watch_result_t *out);

/* Colour c's requests and errors over the baseline window ending now: what
 * sw_watch_arm will take as the baseline if the flip happens now. */
void sw_watch_baseline(const sw_watch_t *w,
                       uint64_t now,
                       sw_colour_t c,
                       uint64_t *requests,
                       uint64_t *errors);

/* The flip to `colour` happened now: takes the other colour's baseline,
 * clears the watched colour's ring (what it served before the flip never
 * counts), resets totals and the latch, and starts the windows. Zero
 * windows keep the params' (the defaults: 5 and 30 min); a manual window
 * shorter than the auto window is taken as equal to it. Returns 0 or
 * SW_ECONFIG for a colour that does not exist. */
int sw_watch_arm(sw_watch_t *w,
                 uint64_t now,
                 sw_colour_t colour,
                 uint64_t auto_window_ms,
                 uint64_t manual_window_ms);

/* Ends the watch early (an operator's commit or rollback): phase final. */
void sw_watch_end(sw_watch_t *w, uint64_t now);

sw_watch_phase_t sw_watch_phase(const sw_watch_t *w, uint64_t now);
sw_watch_outcome_t sw_watch_outcome(const sw_watch_t *w, uint64_t now);

/* The next time the phase changes by itself, to arm a timer for; 0 when
 * none. */
uint64_t sw_watch_next_deadline(const sw_watch_t *w, uint64_t now);

/* Requests and errors of colour c over the last window_ms (whole seconds,
 * the current one included), never before the flip for the watched colour. */
void sw_watch_window(const sw_watch_t *w,
                     uint64_t now,
                     sw_colour_t c,
                     uint64_t window_ms,
                     uint64_t *requests,
                     uint64_t *errors);

void sw_watch_snapshot(const sw_watch_t *w, sw_watch_persisted_t *st);

/* Resumes a watch from what the state file recorded, into a watch fresh
 * from sw_watch_init: the windows continue from the recorded flip time,
 * with the recorded totals, baseline and latch. Returns 0, or SW_ECONFIG
 * when st holds a colour, verdict or rule that does not exist, or a flip
 * after now (the caller reports the file as corrupt). */
int sw_watch_restore(sw_watch_t *w,
                     uint64_t now,
                     const sw_watch_persisted_t *st);

/* ln P(X >= k) for X ~ Poisson(lambda): the regularized lower incomplete
 * gamma function P(k, lambda), computed in log space so that it neither
 * underflows nor loses the tail for large expected counts. 0 for k = 0;
 * -INFINITY for lambda = 0 and k > 0. */
double sw_watch_poisson_log_sf(uint64_t k, double lambda);

/* Stable lowercase names; "unknown" for a value out of range. */
const char *sw_watch_phase_name(sw_watch_phase_t p);
const char *sw_watch_rule_name(sw_watch_rule_t r);
const char *sw_watch_verdict_name(sw_watch_verdict_t v);
const char *sw_watch_outcome_name(sw_watch_outcome_t o);

#endif
