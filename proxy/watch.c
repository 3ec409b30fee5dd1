/* The error watch: per-colour counts in rings of 1 s buckets, blue's
 * baseline before a flip, and the triggers R1..R4 (DESIGN §5). Pure: no I/O,
 * no clock, no libuv, no globals; see sw_watch.h for the rules. It must never
 * decide anything about the switch itself: it hands a verdict back and the
 * cutover machine acts on it. */
#include "sw_watch.h"

#include <errno.h>
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EMPTY_SECOND UINT64_MAX

static uint64_t ceil_seconds(uint64_t ms) {
  return ms / 1000 + (ms % 1000 != 0);
}

static int colour_valid(sw_colour_t c) {
  return c == SW_BLUE || c == SW_GREEN;
}

static sw_colour_t other_colour(sw_colour_t c) {
  return c == SW_BLUE ? SW_GREEN : SW_BLUE;
}

void sw_watch_params_default(sw_watch_params_t *p) {
  memset(p, 0, sizeof(*p));
  p->auto_window_ms = SW_WATCH_DEFAULT_AUTO_WINDOW_MS;
  p->manual_window_ms = SW_WATCH_DEFAULT_MANUAL_WINDOW_MS;
  p->baseline_window_ms = SW_WATCH_DEFAULT_BASELINE_WINDOW_MS;
  p->ring_seconds = 0;
  p->exclude[0] = 501;
  p->exclude[1] = 505;
  p->nexclude = 2;
  p->min_requests = SW_WATCH_DEFAULT_MIN_REQUESTS;
  p->r1_enabled = 1;
  p->max_errors = SW_WATCH_DEFAULT_MAX_ERRORS;
  p->alpha = SW_WATCH_DEFAULT_ALPHA;
  p->r2_enabled = 1;
  p->r2_window_ms = SW_WATCH_DEFAULT_R2_WINDOW_MS;
  p->max_error_ratio = SW_WATCH_DEFAULT_MAX_ERROR_RATIO;
  p->r3_enabled = 1;
  p->max_consecutive = SW_WATCH_DEFAULT_MAX_CONSECUTIVE;
  p->r4_enabled = 1;
}

/* The ring length p asks for, or 0 when p is invalid. */
static size_t params_ring_len(const sw_watch_params_t *p) {
  uint64_t need = ceil_seconds(p->baseline_window_ms);
  uint64_t len;

  if (ceil_seconds(p->r2_window_ms) > need)
    need = ceil_seconds(p->r2_window_ms);
  if (need > SW_WATCH_RING_MAX)
    return 0;
  if (p->ring_seconds == 0) {
    /* Covering the manual window serves status; a manual window longer
     * than the bound is not an error, it only limits what status can show. */
    len = ceil_seconds(p->manual_window_ms);
    if (len > SW_WATCH_RING_MAX)
      len = SW_WATCH_RING_MAX;
    if (len < need)
      len = need;
  } else {
    len = p->ring_seconds;
    if (len < need || len > SW_WATCH_RING_MAX)
      return 0;
  }
  return len == 0 ? 1 : (size_t)len;
}

static int params_valid(const sw_watch_params_t *p) {
  if (p->manual_window_ms < p->auto_window_ms)
    return 0;
  if (p->nexclude > SW_WATCH_EXCLUDE_MAX)
    return 0;
  /* Written as negations so that a NaN fails them. */
  if (p->r1_enabled && !(p->alpha > 0 && p->alpha <= 1))
    return 0;
  if (p->r2_enabled && (p->r2_window_ms == 0 ||
                        !(p->max_error_ratio > 0 && p->max_error_ratio <= 1)))
    return 0;
  if (p->r3_enabled && p->max_consecutive == 0)
    return 0;
  return params_ring_len(p) != 0;
}

static void ring_clear(sw_watch_bucket_t *ring, size_t len) {
  for (size_t i = 0; i < len; i++) {
    ring[i].second = EMPTY_SECOND;
    ring[i].requests = 0;
    ring[i].errors = 0;
  }
}

static void disarm(sw_watch_t *w) {
  w->armed = 0;
  w->colour = SW_BLUE;
  w->flip_at = 0;
  w->auto_window_ms = 0;
  w->manual_window_ms = 0;
  w->ended = 0;
  w->ended_at = 0;
  w->requests = 0;
  w->errors = 0;
  w->consecutive = 0;
  w->r1_checked = 0;
  w->baseline_requests = 0;
  w->baseline_errors = 0;
  memset(&w->fired, 0, sizeof(w->fired));
}

int sw_watch_init(sw_watch_t *w, const sw_watch_params_t *p) {
  sw_watch_params_t def;
  size_t len;

  memset(w, 0, sizeof(*w));
  if (p == NULL) {
    sw_watch_params_default(&def);
    p = &def;
  }
  if (!params_valid(p))
    return SW_ECONFIG;
  len = params_ring_len(p);
  w->params = *p;
  w->ring_len = len;
  for (int c = 0; c < SW_COLOURS; c++) {
    w->ring[c] = malloc(len * sizeof(*w->ring[c]));
    if (w->ring[c] == NULL) {
      sw_watch_close(w);
      return -ENOMEM;
    }
    ring_clear(w->ring[c], len);
  }
  disarm(w);
  return 0;
}

int sw_watch_set_params(sw_watch_t *w, const sw_watch_params_t *p) {
  sw_watch_params_t q = *p;
  size_t len;

  if (!params_valid(&q))
    return SW_ECONFIG;
  len = params_ring_len(&q);
  if (len > w->ring_len) {
    sw_watch_bucket_t *fresh[SW_COLOURS] = {NULL, NULL};
    for (int c = 0; c < SW_COLOURS; c++) {
      fresh[c] = malloc(len * sizeof(*fresh[c]));
      if (fresh[c] == NULL) {
        free(fresh[0]);
        free(fresh[1]);
        return -ENOMEM;
      }
      ring_clear(fresh[c], len);
      /* A bucket's place is its second modulo the length: moved over one
       * by one, each lands where the longer ring looks for it. When the new
       * length is not a multiple of the old, two seconds a multiple of the
       * new length apart (the older left over from an earlier lap) share a
       * place, in whatever order the old ring holds them: the newer one
       * stays, or a recent second would be lost. */
      for (size_t i = 0; i < w->ring_len; i++) {
        const sw_watch_bucket_t *b = &w->ring[c][i];
        sw_watch_bucket_t *to;

        if (b->second == EMPTY_SECOND)
          continue;
        to = &fresh[c][b->second % len];
        if (to->second == EMPTY_SECOND || to->second < b->second)
          *to = *b;
      }
    }
    for (int c = 0; c < SW_COLOURS; c++) {
      free(w->ring[c]);
      w->ring[c] = fresh[c];
    }
    w->ring_len = len;
  }
  q.ring_seconds = w->ring_len;
  w->params = q;
  return 0;
}

void sw_watch_close(sw_watch_t *w) {
  for (int c = 0; c < SW_COLOURS; c++) {
    free(w->ring[c]);
    w->ring[c] = NULL;
  }
  w->ring_len = 0;
}

int sw_watch_is_error(const sw_watch_params_t *p,
                      int status,
                      int proxy_generated) {
  if (proxy_generated)
    return status == 502 || status == 503 || status == 504;
  if (status < 500 || status > 599)
    return 0;
  for (size_t i = 0; i < p->nexclude && i < SW_WATCH_EXCLUDE_MAX; i++)
    if (p->exclude[i] == status)
      return 0;
  return 1;
}

/* ---- The Poisson tail ---------------------------------------------------
 *
 * P(X >= k) for X ~ Poisson(lambda) equals the regularized lower incomplete
 * gamma function P(k, lambda). Below lambda = k + 1 the tail is small and the
 * series converges quickly; it is summed relative to its first term, so only
 * the prefactor is exponential and it stays a logarithm. Above, the
 * continued fraction for the upper function Q converges quickly and the tail
 * is near 1, where log1p(-Q) is exact enough. Both need about sqrt(k)
 * iterations when lambda is close to k; the bound leaves a wide margin. */

static uint64_t iter_bound(double a, double x) {
  return 1000 + (uint64_t)(50.0 * sqrt(a + x));
}

double sw_watch_poisson_log_sf(uint64_t k, double lambda) {
  double a = (double)k;
  double x = lambda;
  double prefix;
  uint64_t max_iter;

  if (k == 0)
    return 0.0;
  if (!(x > 0))
    return -INFINITY;
  if (isinf(x))
    return 0.0;
  max_iter = iter_bound(a, x);
  /* ln(x^a e^-x / Gamma(a)), shared by both branches. */
  prefix = a * log(x) - x - lgamma(a);
  if (x < a + 1) {
    double ap = a, del = 1.0 / a, sum = del;
    uint64_t i;

    for (i = 0; i < max_iter; i++) {
      ap += 1.0;
      del *= x / ap;
      sum += del;
      if (del < sum * DBL_EPSILON)
        break;
    }
    /* A partial sum understates the tail, which could fire a rollback on
     * noise; a series that did not converge answers "not unlikely". */
    if (i == max_iter)
      return 0.0;
    return prefix + log(sum);
  } else {
    const double tiny = DBL_MIN / DBL_EPSILON;
    double b = x + 1.0 - a, c = 1.0 / tiny, d = 1.0 / b, h = d;
    double log_q;
    uint64_t i;

    for (i = 1; i <= max_iter; i++) {
      double an = -(double)i * ((double)i - a);
      double del;

      b += 2.0;
      d = an * d + b;
      if (fabs(d) < tiny)
        d = tiny;
      c = b + an / c;
      if (fabs(c) < tiny)
        c = tiny;
      d = 1.0 / d;
      del = d * c;
      h *= del;
      if (fabs(del - 1.0) < DBL_EPSILON)
        break;
    }
    if (i > max_iter)
      return 0.0;
    log_q = prefix + log(h);
    if (log_q >= 0)
      return -INFINITY;
    return log1p(-exp(log_q));
  }
}

/* ---- Counting ----------------------------------------------------------- */

static void ring_sum(const sw_watch_t *w,
                     sw_colour_t c,
                     uint64_t now,
                     uint64_t window_ms,
                     uint64_t *requests,
                     uint64_t *errors) {
  uint64_t sec = now / 1000;
  uint64_t n = ceil_seconds(window_ms);
  uint64_t rq = 0, er = 0;

  if (n > w->ring_len)
    n = w->ring_len;
  if (n > sec + 1)
    n = sec + 1;
  if (w->ring[c] != NULL) {
    for (uint64_t i = 0; i < n; i++) {
      uint64_t s = sec - i;
      const sw_watch_bucket_t *b = &w->ring[c][s % w->ring_len];
      /* A bucket from an earlier lap of the ring holds another second. */
      if (b->second == s) {
        rq += b->requests;
        er += b->errors;
      }
    }
  }
  *requests = rq;
  *errors = er;
}

void sw_watch_window(const sw_watch_t *w,
                     uint64_t now,
                     sw_colour_t c,
                     uint64_t window_ms,
                     uint64_t *requests,
                     uint64_t *errors) {
  *requests = 0;
  *errors = 0;
  if (colour_valid(c))
    ring_sum(w, c, now, window_ms, requests, errors);
}

void sw_watch_baseline(const sw_watch_t *w,
                       uint64_t now,
                       sw_colour_t c,
                       uint64_t *requests,
                       uint64_t *errors) {
  sw_watch_window(w, now, c, w->params.baseline_window_ms, requests, errors);
}

static void ring_add(sw_watch_t *w, sw_colour_t c, uint64_t now, int error) {
  uint64_t sec = now / 1000;
  sw_watch_bucket_t *b;

  if (w->ring[c] == NULL)
    return;
  b = &w->ring[c][sec % w->ring_len];
  if (b->second != sec) {
    b->second = sec;
    b->requests = 0;
    b->errors = 0;
  }
  /* Four billion responses in one second will not happen; saturate rather
   * than wrap if it ever does. */
  if (b->requests < UINT32_MAX)
    b->requests++;
  if (error && b->errors < UINT32_MAX)
    b->errors++;
}

/* ---- Windows ------------------------------------------------------------ */

sw_watch_phase_t sw_watch_phase(const sw_watch_t *w, uint64_t now) {
  uint64_t elapsed;

  if (!w->armed)
    return SW_WATCH_IDLE;
  if (w->ended)
    return SW_WATCH_FINAL;
  elapsed = now > w->flip_at ? now - w->flip_at : 0;
  if (elapsed < w->auto_window_ms)
    return SW_WATCH_WATCHING;
  if (elapsed < w->manual_window_ms)
    return SW_WATCH_MANUAL;
  return SW_WATCH_FINAL;
}

uint64_t sw_watch_next_deadline(const sw_watch_t *w, uint64_t now) {
  switch (sw_watch_phase(w, now)) {
    case SW_WATCH_WATCHING:
      return w->flip_at + w->auto_window_ms;
    case SW_WATCH_MANUAL:
      return w->flip_at + w->manual_window_ms;
    default:
      return 0;
  }
}

sw_watch_outcome_t sw_watch_outcome(const sw_watch_t *w, uint64_t now) {
  if (!w->armed)
    return SW_WATCH_PENDING;
  if (w->fired.verdict != SW_WATCH_NONE)
    return SW_WATCH_FIRED;
  if (sw_watch_phase(w, now) != SW_WATCH_FINAL)
    return SW_WATCH_PENDING;
  /* Too little traffic says nothing, however the watch ended. */
  if (w->requests < w->params.min_requests)
    return SW_WATCH_UNVERIFIED;
  if (w->ended)
    return SW_WATCH_INCONCLUSIVE;
  return SW_WATCH_VERIFIED;
}

int sw_watch_arm(sw_watch_t *w,
                 uint64_t now,
                 sw_colour_t colour,
                 uint64_t auto_window_ms,
                 uint64_t manual_window_ms) {
  uint64_t rq, er;

  if (!colour_valid(colour))
    return SW_ECONFIG;
  if (now < w->last_now)
    now = w->last_now;
  w->last_now = now;
  /* The baseline is read before anything is reset: it is the old live
   * colour's last baseline_window up to this moment. */
  sw_watch_baseline(w, now, other_colour(colour), &rq, &er);
  disarm(w);
  if (w->ring[colour] != NULL)
    ring_clear(w->ring[colour], w->ring_len);
  w->armed = 1;
  w->colour = colour;
  w->flip_at = now;
  w->auto_window_ms =
      auto_window_ms ? auto_window_ms : w->params.auto_window_ms;
  w->manual_window_ms =
      manual_window_ms ? manual_window_ms : w->params.manual_window_ms;
  if (w->manual_window_ms < w->auto_window_ms)
    w->manual_window_ms = w->auto_window_ms;
  w->baseline_requests = rq;
  w->baseline_errors = er;
  return 0;
}

void sw_watch_end(sw_watch_t *w, uint64_t now) {
  if (!w->armed || w->ended)
    return;
  if (now < w->last_now)
    now = w->last_now;
  w->last_now = now;
  w->ended = 1;
  w->ended_at = now;
}

/* ---- Triggers ----------------------------------------------------------- */

static int have_baseline(const sw_watch_t *w) {
  return w->baseline_requests > 0 &&
         w->baseline_requests >= w->params.min_requests;
}

/* p0 with its Jeffreys floor: half an error added to the baseline, so that a
 * clean baseline gives a small ratio rather than zero, which would make any
 * error at all infinitely surprising. */
static double baseline_ratio(const sw_watch_t *w) {
  return ((double)w->baseline_errors + 0.5) /
         ((double)w->baseline_requests + 1.0);
}

static double r1_log_tail(const sw_watch_t *w) {
  return sw_watch_poisson_log_sf(w->errors,
                                 (double)w->requests * baseline_ratio(w));
}

static int r1_holds(sw_watch_t *w) {
  const sw_watch_params_t *p = &w->params;

  if (!p->r1_enabled || w->errors <= p->max_errors)
    return 0;
  /* Without a baseline there is no evidence of noise: the seed's rule. */
  if (!have_baseline(w))
    return 1;
  if (w->errors <= w->r1_checked)
    return 0;
  if (r1_log_tail(w) < log(p->alpha))
    return 1;
  w->r1_checked = w->errors;
  return 0;
}

static int r2_holds(const sw_watch_t *w, uint64_t now) {
  const sw_watch_params_t *p = &w->params;
  uint64_t rq, er;

  if (!p->r2_enabled)
    return 0;
  ring_sum(w, w->colour, now, p->r2_window_ms, &rq, &er);
  if (rq == 0 || rq < p->min_requests)
    return 0;
  return (double)er >= p->max_error_ratio * (double)rq;
}

static int r3_holds(const sw_watch_t *w) {
  return w->params.r3_enabled && w->consecutive >= w->params.max_consecutive;
}

static void result_clear(sw_watch_result_t *out) {
  if (out != NULL)
    memset(out, 0, sizeof(*out));
}

/* Latches the verdict for rule r and describes it. */
static sw_watch_verdict_t fire(sw_watch_t *w,
                               uint64_t now,
                               sw_watch_rule_t r,
                               sw_watch_result_t *out) {
  sw_watch_result_t *f = &w->fired;
  const sw_watch_params_t *p = &w->params;
  const char *what = sw_watch_phase(w, now) == SW_WATCH_WATCHING
                         ? "rollback"
                         : "alert (manual window)";
  const char *colour_name = w->colour == SW_BLUE ? "blue" : "green";

  memset(f, 0, sizeof(*f));
  f->verdict = sw_watch_phase(w, now) == SW_WATCH_WATCHING ? SW_WATCH_FIRE
                                                           : SW_WATCH_ALERT;
  f->rule = r;
  f->colour = w->colour;
  f->at = now;
  f->since_flip_ms = now - w->flip_at;
  f->errors = w->errors;
  f->requests = w->requests;
  f->baseline_errors = w->baseline_errors;
  f->baseline_requests = w->baseline_requests;
  if (have_baseline(w)) {
    f->baseline_ratio = baseline_ratio(w);
    f->log_tail = r1_log_tail(w);
  }
  f->window_ms = p->r2_window_ms;
  ring_sum(w, w->colour, now, p->r2_window_ms, &f->window_requests,
           &f->window_errors);
  f->consecutive = w->consecutive;

  switch (r) {
    case SW_WATCH_R1:
      if (have_baseline(w))
        snprintf(f->text, sizeof(f->text),
                 "%s: r1: %s had %" PRIu64 " errors in %" PRIu64
                 " requests since the flip (> %" PRIu64 "); baseline %" PRIu64
                 "/%" PRIu64 ", P(noise) = %.3g < %g",
                 what, colour_name, f->errors, f->requests, p->max_errors,
                 f->baseline_errors, f->baseline_requests, exp(f->log_tail),
                 p->alpha);
      else
        snprintf(f->text, sizeof(f->text),
                 "%s: r1: %s had %" PRIu64 " errors in %" PRIu64
                 " requests since the flip (> %" PRIu64
                 "); no baseline (%" PRIu64 " requests)",
                 what, colour_name, f->errors, f->requests, p->max_errors,
                 f->baseline_requests);
      break;
    case SW_WATCH_R2:
      snprintf(f->text, sizeof(f->text),
               "%s: r2: %s had %" PRIu64 " errors in %" PRIu64
               " requests over the last %" PRIu64 " ms (ratio >= %g)",
               what, colour_name, f->window_errors, f->window_requests,
               f->window_ms, p->max_error_ratio);
      break;
    case SW_WATCH_R3:
      snprintf(f->text, sizeof(f->text),
               "%s: r3: %s had %" PRIu64 " errors in a row (>= %" PRIu64 ")",
               what, colour_name, f->consecutive, p->max_consecutive);
      break;
    default:
      snprintf(f->text, sizeof(f->text),
               "%s: r4: %s failed its health checks (%" PRIu64
               " errors in %" PRIu64 " requests since the flip)",
               what, colour_name, f->errors, f->requests);
      break;
  }
  if (out != NULL)
    *out = *f;
  return f->verdict;
}

/* Whether triggers are evaluated now: armed, in a window, not latched. */
static int live(const sw_watch_t *w, uint64_t now) {
  sw_watch_phase_t ph = sw_watch_phase(w, now);

  return (ph == SW_WATCH_WATCHING || ph == SW_WATCH_MANUAL) &&
         w->fired.verdict == SW_WATCH_NONE;
}

static sw_watch_verdict_t evaluate(sw_watch_t *w,
                                   uint64_t now,
                                   sw_watch_result_t *out) {
  if (!live(w, now))
    return SW_WATCH_NONE;
  if (r1_holds(w))
    return fire(w, now, SW_WATCH_R1, out);
  if (r2_holds(w, now))
    return fire(w, now, SW_WATCH_R2, out);
  if (r3_holds(w))
    return fire(w, now, SW_WATCH_R3, out);
  return SW_WATCH_NONE;
}

sw_watch_verdict_t sw_watch_observe(sw_watch_t *w,
                                    uint64_t now,
                                    sw_colour_t c,
                                    int status,
                                    int proxy_generated,
                                    sw_watch_result_t *out) {
  int error;
  sw_watch_phase_t ph;

  result_clear(out);
  if (!colour_valid(c))
    return SW_WATCH_NONE;
  if (now < w->last_now)
    now = w->last_now;
  w->last_now = now;
  error = sw_watch_is_error(&w->params, status, proxy_generated);
  ring_add(w, c, now, error);
  if (!w->armed || c != w->colour)
    return SW_WATCH_NONE;
  /* Totals are the watch's: they stop when it ends. */
  ph = sw_watch_phase(w, now);
  if (ph != SW_WATCH_WATCHING && ph != SW_WATCH_MANUAL)
    return SW_WATCH_NONE;
  w->requests++;
  if (error) {
    w->errors++;
    w->consecutive++;
  } else {
    w->consecutive = 0;
  }
  return evaluate(w, now, out);
}

sw_watch_verdict_t sw_watch_on_health(sw_watch_t *w,
                                      uint64_t now,
                                      sw_colour_t c,
                                      int healthy,
                                      sw_watch_result_t *out) {
  result_clear(out);
  if (now < w->last_now)
    now = w->last_now;
  w->last_now = now;
  if (healthy || !w->armed || c != w->colour || !w->params.r4_enabled ||
      !live(w, now))
    return SW_WATCH_NONE;
  return fire(w, now, SW_WATCH_R4, out);
}

sw_watch_verdict_t sw_watch_tick(sw_watch_t *w,
                                 uint64_t now,
                                 sw_watch_result_t *out) {
  result_clear(out);
  if (now < w->last_now)
    now = w->last_now;
  w->last_now = now;
  return evaluate(w, now, out);
}

/* ---- Persistence -------------------------------------------------------- */

void sw_watch_snapshot(const sw_watch_t *w, sw_watch_persisted_t *st) {
  memset(st, 0, sizeof(*st));
  st->armed = w->armed;
  st->colour = w->colour;
  st->flip_at = w->flip_at;
  st->auto_window_ms = w->auto_window_ms;
  st->manual_window_ms = w->manual_window_ms;
  st->ended = w->ended;
  st->ended_at = w->ended_at;
  st->requests = w->requests;
  st->errors = w->errors;
  st->baseline_requests = w->baseline_requests;
  st->baseline_errors = w->baseline_errors;
  st->fired = w->fired.verdict;
  st->rule = w->fired.rule;
  st->fired_at = w->fired.at;
}

int sw_watch_restore(sw_watch_t *w,
                     uint64_t now,
                     const sw_watch_persisted_t *st) {
  sw_watch_result_t *f = &w->fired;

  if (!st->armed) {
    disarm(w);
    return 0;
  }
  if (!colour_valid(st->colour) || st->flip_at > now ||
      (unsigned)st->fired > SW_WATCH_ALERT ||
      (unsigned)st->rule >= SW_WATCH_RULES ||
      (st->fired != SW_WATCH_NONE) != (st->rule != SW_WATCH_RULE_NONE) ||
      st->errors > st->requests || st->baseline_errors > st->baseline_requests)
    return SW_ECONFIG;
  disarm(w);
  if (now > w->last_now)
    w->last_now = now;
  w->armed = 1;
  w->colour = st->colour;
  w->flip_at = st->flip_at;
  w->auto_window_ms =
      st->auto_window_ms ? st->auto_window_ms : w->params.auto_window_ms;
  w->manual_window_ms =
      st->manual_window_ms ? st->manual_window_ms : w->params.manual_window_ms;
  if (w->manual_window_ms < w->auto_window_ms)
    w->manual_window_ms = w->auto_window_ms;
  w->ended = st->ended != 0;
  w->ended_at = st->ended_at;
  w->requests = st->requests;
  w->errors = st->errors;
  w->baseline_requests = st->baseline_requests;
  w->baseline_errors = st->baseline_errors;
  if (st->fired != SW_WATCH_NONE) {
    /* The latch survives; the numbers behind it are in the log. */
    f->verdict = st->fired;
    f->rule = st->rule;
    f->colour = st->colour;
    f->at = st->fired_at;
    f->since_flip_ms =
        st->fired_at > st->flip_at ? st->fired_at - st->flip_at : 0;
    f->errors = st->errors;
    f->requests = st->requests;
    f->baseline_errors = st->baseline_errors;
    f->baseline_requests = st->baseline_requests;
    snprintf(f->text, sizeof(f->text), "%s: %s (restored)",
             sw_watch_verdict_name(st->fired), sw_watch_rule_name(st->rule));
  }
  return 0;
}

/* ---- Names -------------------------------------------------------------- */

const char *sw_watch_phase_name(sw_watch_phase_t p) {
  switch (p) {
    case SW_WATCH_IDLE:
      return "idle";
    case SW_WATCH_WATCHING:
      return "watching";
    case SW_WATCH_MANUAL:
      return "committed_manual";
    case SW_WATCH_FINAL:
      return "final";
  }
  return "unknown";
}

const char *sw_watch_rule_name(sw_watch_rule_t r) {
  switch (r) {
    case SW_WATCH_RULE_NONE:
      return "none";
    case SW_WATCH_R1:
      return "r1";
    case SW_WATCH_R2:
      return "r2";
    case SW_WATCH_R3:
      return "r3";
    case SW_WATCH_R4:
      return "r4";
  }
  return "unknown";
}

const char *sw_watch_verdict_name(sw_watch_verdict_t v) {
  switch (v) {
    case SW_WATCH_NONE:
      return "none";
    case SW_WATCH_FIRE:
      return "fire";
    case SW_WATCH_ALERT:
      return "alert";
  }
  return "unknown";
}

const char *sw_watch_outcome_name(sw_watch_outcome_t o) {
  switch (o) {
    case SW_WATCH_PENDING:
      return "pending";
    case SW_WATCH_VERIFIED:
      return "verified";
    case SW_WATCH_UNVERIFIED:
      return "unverified";
    case SW_WATCH_FIRED:
      return "fired";
    case SW_WATCH_INCONCLUSIVE:
      return "inconclusive";
  }
  return "unknown";
}
