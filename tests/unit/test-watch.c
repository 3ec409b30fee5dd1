/* Unit tests of the error watch (proxy/watch.c). The watch is pure, so every
 * test drives it with explicit times and checks the verdicts it hands back:
 * the classification of a response, the Poisson tail against reference
 * values (mpmath, 40 digits) and against a direct summation, each trigger on
 * and off and at its exact threshold, the baseline and its floor, buckets
 * ageing out, the windows, the outcome, the latch and the state file.
 *
 * The standard story: blue is live and serves until T_FLIP; the flip to
 * green happens at T_FLIP. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "sw_test.h"
#include "sw_watch.h"

#define T_FLIP 100000000ull /* far from 0, so every window fits before it */
#define AUTO_MS 5000
#define MANUAL_MS 30000

#define CHECK_NEAR(a, b, rel)                               \
  do {                                                      \
    double a_ = (a), b_ = (b);                              \
    int ok_ = fabs(a_ - b_) <= (rel)*fabs(b_);              \
    if (!ok_)                                               \
      printf("  %s = %.17g, expected %.17g\n", #a, a_, b_); \
    SW_CHECK(ok_);                                          \
  } while (0)

/* Every trigger on, the defaults of DESIGN §5. */
static sw_watch_params_t test_params(void) {
  sw_watch_params_t p;

  sw_watch_params_default(&p);
  p.auto_window_ms = AUTO_MS;
  p.manual_window_ms = MANUAL_MS;
  return p;
}

static void watch_init(sw_watch_t *w, const sw_watch_params_t *p) {
  int rc = sw_watch_init(w, p);

  SW_CHECK_INT_EQ(rc, 0);
}

/* n responses of colour c with `status`, all at time now. Returns the first
 * verdict that is not NONE (and stops there), with *at its index; NONE with
 * *at = n when nothing fired. */
static sw_watch_verdict_t serve(sw_watch_t *w,
                                uint64_t now,
                                sw_colour_t c,
                                int status,
                                uint64_t n,
                                uint64_t *at,
                                sw_watch_result_t *res) {
  for (uint64_t i = 0; i < n; i++) {
    sw_watch_verdict_t v = sw_watch_observe(w, now, c, status, 0, res);
    if (v != SW_WATCH_NONE) {
      if (at != NULL)
        *at = i;
      return v;
    }
  }
  if (at != NULL)
    *at = n;
  return SW_WATCH_NONE;
}

/* Blue serves `requests` responses, `errors` of them 500, spread over the
 * minute before the flip. */
static void blue_baseline(sw_watch_t *w, uint64_t requests, uint64_t errors) {
  for (uint64_t i = 0; i < requests; i++) {
    uint64_t t = T_FLIP - 60000 + (i * 60000) / (requests ? requests : 1);
    sw_watch_observe(w, t, SW_BLUE, i < errors ? 500 : 200, 0, NULL);
  }
}

/* Whether s is printable ASCII: what a result must be to reach a log line. */
static int clean_ascii(const char *s) {
  for (; *s; s++)
    if (*s < 0x20 || *s > 0x7e)
      return 0;
  return 1;
}

/* ---- Classification ----------------------------------------------------- */

static void test_classify(void) {
  sw_watch_params_t p;

  sw_watch_params_default(&p);
  SW_CHECK_INT_EQ(sw_watch_is_error(&p, 500, 0), 1);
  SW_CHECK_INT_EQ(sw_watch_is_error(&p, 502, 0), 1);
  SW_CHECK_INT_EQ(sw_watch_is_error(&p, 599, 0), 1);
  SW_CHECK_INT_EQ(sw_watch_is_error(&p, 501, 0), 0);
  SW_CHECK_INT_EQ(sw_watch_is_error(&p, 505, 0), 0);
  SW_CHECK_INT_EQ(sw_watch_is_error(&p, 499, 0), 0);
  SW_CHECK_INT_EQ(sw_watch_is_error(&p, 600, 0), 0);
  SW_CHECK_INT_EQ(sw_watch_is_error(&p, 404, 0), 0);
  SW_CHECK_INT_EQ(sw_watch_is_error(&p, 429, 0), 0);
  SW_CHECK_INT_EQ(sw_watch_is_error(&p, 200, 0), 0);
  /* The proxy's own answers: only 502, 503 and 504 are the colour's fault. */
  SW_CHECK_INT_EQ(sw_watch_is_error(&p, 502, 1), 1);
  SW_CHECK_INT_EQ(sw_watch_is_error(&p, 503, 1), 1);
  SW_CHECK_INT_EQ(sw_watch_is_error(&p, 504, 1), 1);
  SW_CHECK_INT_EQ(sw_watch_is_error(&p, 500, 1), 0);
  SW_CHECK_INT_EQ(sw_watch_is_error(&p, 501, 1), 0);
  SW_CHECK_INT_EQ(sw_watch_is_error(&p, 400, 1), 0);
  SW_CHECK_INT_EQ(sw_watch_is_error(&p, 413, 1), 0);
  /* The exclusion list is configurable, and applies to upstreams only. */
  p.nexclude = 1;
  p.exclude[0] = 503;
  SW_CHECK_INT_EQ(sw_watch_is_error(&p, 501, 0), 1);
  SW_CHECK_INT_EQ(sw_watch_is_error(&p, 505, 0), 1);
  SW_CHECK_INT_EQ(sw_watch_is_error(&p, 503, 0), 0);
  SW_CHECK_INT_EQ(sw_watch_is_error(&p, 503, 1), 1);
  p.nexclude = 0;
  SW_CHECK_INT_EQ(sw_watch_is_error(&p, 503, 0), 1);
}

/* ---- The Poisson tail --------------------------------------------------- */

/* ln P(X >= k) by summing the pmf from k upward in log space: another
 * algorithm than the module's, for small lambda. */
static double direct_log_sf(uint64_t k, double lambda) {
  long double m = -INFINITY, sum = 0;
  uint64_t end = k + 400 + (uint64_t)(20 * lambda);

  for (uint64_t j = k; j < end; j++) {
    long double lp =
        (long double)j * logl(lambda) - lambda - lgammal((long double)j + 1);
    if (lp > m) {
      sum = sum * expl(m - lp) + 1;
      m = lp;
    } else {
      sum += expl(lp - m);
    }
  }
  return (double)(m + logl(sum));
}

static void test_poisson_reference(void) {
  /* k, lambda, ln P(X >= k), from mpmath's regularized gamma, 40 digits. */
  static const struct {
    uint64_t k;
    double lambda;
    double log_sf;
  } ref[] = {
      {11, 5.0, -4.2907048635800581},
      {11, 2.5, -9.694411930138833},
      {1, 5.0, -0.0067607494494885578},
      {5, 5.0, -0.58069974963142131},
      {20, 5.0, -14.879102532939179},
      {11, 0.5 * 50 / 1001, -58.113868283262639},
      {2100, 2000.0, -4.3024805300056729},
      {2200, 2000.0, -12.096315848624584},
      {1900, 2000.0, -0.011897108206229962},
      {1000000, 1e6, -0.69288125439969593},
      {1000000, 999999.0, -0.69367924531982797},
      {1002000, 1e6, -3.7808135355944945},
      {2000000, 1e6, -386301.84124115419},
  };

  for (size_t i = 0; i < sizeof(ref) / sizeof(ref[0]); i++) {
    double v = sw_watch_poisson_log_sf(ref[i].k, ref[i].lambda);
    CHECK_NEAR(v, ref[i].log_sf, 1e-9);
  }
}

static void test_poisson_direct(void) {
  static const double lambdas[] = {0.01, 0.3, 1.0, 2.5, 5.0, 12.0, 30.0};

  for (size_t i = 0; i < sizeof(lambdas) / sizeof(lambdas[0]); i++)
    for (uint64_t k = 1; k <= 60; k++) {
      double v = sw_watch_poisson_log_sf(k, lambdas[i]);
      double d = direct_log_sf(k, lambdas[i]);
      /* Near 1 the log is near 0: compare the probabilities there. */
      if (d > -1e-3)
        CHECK_NEAR(exp(v), exp(d), 1e-10);
      else
        CHECK_NEAR(v, d, 1e-10);
    }
}

static void test_poisson_extremes(void) {
  double v;

  SW_CHECK(sw_watch_poisson_log_sf(0, 5.0) == 0.0);
  SW_CHECK(sw_watch_poisson_log_sf(0, 0.0) == 0.0);
  SW_CHECK(isinf(sw_watch_poisson_log_sf(1, 0.0)));
  SW_CHECK(sw_watch_poisson_log_sf(1, 0.0) < 0);
  SW_CHECK(isinf(sw_watch_poisson_log_sf(3, -1.0)));
  SW_CHECK(isinf(sw_watch_poisson_log_sf(3, NAN)));
  SW_CHECK(sw_watch_poisson_log_sf(3, INFINITY) == 0.0);
  /* Far in the tail: e^-386301 underflows any double; its log does not. */
  v = sw_watch_poisson_log_sf(2000000, 1e6);
  SW_CHECK(isfinite(v));
  SW_CHECK(v < -386000);
  /* Far in the body: the tail is 1 less something that underflows. */
  v = sw_watch_poisson_log_sf(1000000, 2e6);
  SW_CHECK(isfinite(v));
  SW_CHECK(v <= 0 && v > -1e-100);
  v = sw_watch_poisson_log_sf(11, 1e9);
  SW_CHECK(isfinite(v));
  SW_CHECK(v <= 0 && v > -1e-100);
  v = sw_watch_poisson_log_sf(100000000, 1.0);
  SW_CHECK(isfinite(v));
  SW_CHECK(v < -1e9);
  /* Monotone in lambda for a fixed k, which R1's cache relies on. */
  for (uint64_t k = 11; k < 2000; k = k * 3)
    for (double l = 0.01; l < 5000; l *= 2)
      SW_CHECK(sw_watch_poisson_log_sf(k, l) <=
               sw_watch_poisson_log_sf(k, l * 2));
}

/* ---- R1 ----------------------------------------------------------------- */

/* R2 and R3 off, so that only R1 can speak. */
static sw_watch_params_t r1_params(void) {
  sw_watch_params_t p = test_params();

  p.r2_enabled = 0;
  p.r3_enabled = 0;
  return p;
}

/* Green serves `requests` responses of which `errors` are 500, the errors
 * last; returns the verdict and the index of the error that fired (1-based),
 * 0 when none. */
static sw_watch_verdict_t green_run(sw_watch_t *w,
                                    uint64_t requests,
                                    uint64_t errors,
                                    uint64_t *fired_at_error,
                                    sw_watch_result_t *res) {
  uint64_t at;
  sw_watch_verdict_t v;

  *fired_at_error = 0;
  v = serve(w, T_FLIP + 1000, SW_GREEN, 200, requests - errors, &at, res);
  if (v != SW_WATCH_NONE)
    return v;
  v = serve(w, T_FLIP + 2000, SW_GREEN, 500, errors, &at, res);
  if (v != SW_WATCH_NONE)
    *fired_at_error = at + 1;
  return v;
}

static void test_r1_clean_baseline_is_more_than_ten(void) {
  static const uint64_t totals[] = {12, 50, 100, 200, 500, 1000, 2000, 5000};
  sw_watch_params_t p = r1_params();

  for (size_t i = 0; i < sizeof(totals) / sizeof(totals[0]); i++) {
    sw_watch_t w;
    sw_watch_result_t res;
    uint64_t fired_at;
    sw_watch_verdict_t v;

    /* 11 errors: the 11th fires, whatever the traffic. */
    watch_init(&w, &p);
    blue_baseline(&w, 1000, 0);
    SW_CHECK_INT_EQ(sw_watch_arm(&w, T_FLIP, SW_GREEN, 0, 0), 0);
    SW_CHECK_UINT_EQ(w.baseline_requests, 1000);
    SW_CHECK_UINT_EQ(w.baseline_errors, 0);
    v = green_run(&w, totals[i], 11, &fired_at, &res);
    if (!SW_CHECK_INT_EQ(v, SW_WATCH_FIRE))
      printf("  at %llu requests\n", (unsigned long long)totals[i]);
    SW_CHECK_UINT_EQ(fired_at, 11);
    SW_CHECK_INT_EQ(res.rule, SW_WATCH_R1);
    SW_CHECK_UINT_EQ(res.errors, 11);
    SW_CHECK_UINT_EQ(res.requests, totals[i]);
    SW_CHECK(res.log_tail < log(1e-3));
    CHECK_NEAR(res.baseline_ratio, 0.5 / 1001, 1e-12);
    sw_watch_close(&w);

    /* 10 errors never fire, with any alpha. */
    for (int loose = 0; loose < 2; loose++) {
      sw_watch_params_t q = p;
      if (loose)
        q.alpha = 1.0;
      watch_init(&w, &q);
      blue_baseline(&w, 1000, 0);
      sw_watch_arm(&w, T_FLIP, SW_GREEN, 0, 0);
      v = green_run(&w, totals[i], 10, &fired_at, &res);
      SW_CHECK_INT_EQ(v, SW_WATCH_NONE);
      SW_CHECK_INT_EQ(sw_watch_tick(&w, T_FLIP + 3000, NULL), SW_WATCH_NONE);
      sw_watch_close(&w);
    }
  }
}

static void test_r1_noisy_baseline(void) {
  sw_watch_params_t p = r1_params();
  sw_watch_t w;
  sw_watch_result_t res;
  uint64_t fired_at;
  double p0 = 10.5 / 10001;

  /* Blue fails 0.1 %: green failing as often is noise, not a regression. */
  watch_init(&w, &p);
  blue_baseline(&w, 10000, 10);
  sw_watch_arm(&w, T_FLIP, SW_GREEN, 0, 0);
  SW_CHECK_INT_EQ(green_run(&w, 10000, 11, &fired_at, &res), SW_WATCH_NONE);
  sw_watch_close(&w);

  /* Where about 10.5 errors are expected, the count that fires is the first
   * whose tail is below alpha: 23 (P = 5.6e-4; 22 gives 1.3e-3, by mpmath).
   * The errors come last, so the k-th sees 9960 + k requests. */
  watch_init(&w, &p);
  blue_baseline(&w, 10000, 10);
  sw_watch_arm(&w, T_FLIP, SW_GREEN, 0, 0);
  {
    uint64_t k = 11;
    char want[64];
    while (sw_watch_poisson_log_sf(k, (double)(9960 + k) * p0) >= log(1e-3))
      k++;
    SW_CHECK_UINT_EQ(k, 23);
    SW_CHECK_INT_EQ(green_run(&w, 10000, 40, &fired_at, &res), SW_WATCH_FIRE);
    SW_CHECK_UINT_EQ(fired_at, k);
    SW_CHECK_UINT_EQ(res.requests, 9960 + k);
    CHECK_NEAR(res.log_tail,
               sw_watch_poisson_log_sf(k, (double)(9960 + k) * p0), 1e-12);
    snprintf(want, sizeof(want), "%u errors in %u requests", (unsigned)k,
             (unsigned)(9960 + k));
    SW_CHECK_STR_CONTAINS(res.text, want);
  }
  SW_CHECK_INT_EQ(res.rule, SW_WATCH_R1);
  SW_CHECK_UINT_EQ(res.baseline_requests, 10000);
  SW_CHECK_UINT_EQ(res.baseline_errors, 10);
  CHECK_NEAR(res.baseline_ratio, p0, 1e-12);
  SW_CHECK_STR_CONTAINS(res.text, "r1");
  SW_CHECK_STR_CONTAINS(res.text, "baseline 10/10000");
  SW_CHECK(clean_ascii(res.text));
  sw_watch_close(&w);
}

static void test_r1_no_baseline(void) {
  sw_watch_params_t p = r1_params();
  sw_watch_t w;
  sw_watch_result_t res;
  uint64_t fired_at;

  /* No traffic on blue before the flip: nothing says errors are noise, and
   * R1 is the seed's count rule. */
  watch_init(&w, &p);
  sw_watch_arm(&w, T_FLIP, SW_GREEN, 0, 0);
  SW_CHECK_INT_EQ(green_run(&w, 100000, 11, &fired_at, &res), SW_WATCH_FIRE);
  SW_CHECK_UINT_EQ(fired_at, 11);
  SW_CHECK(res.baseline_ratio == 0.0);
  SW_CHECK_STR_CONTAINS(res.text, "no baseline");
  sw_watch_close(&w);

  /* A baseline just under min_requests is no baseline either... */
  watch_init(&w, &p);
  blue_baseline(&w, 19, 19);
  sw_watch_arm(&w, T_FLIP, SW_GREEN, 0, 0);
  SW_CHECK_INT_EQ(green_run(&w, 1000, 11, &fired_at, &res), SW_WATCH_FIRE);
  sw_watch_close(&w);

  /* ...and at min_requests it is one: blue failing everything makes green's
   * 11 errors in 1000 unremarkable. */
  watch_init(&w, &p);
  blue_baseline(&w, 20, 20);
  sw_watch_arm(&w, T_FLIP, SW_GREEN, 0, 0);
  SW_CHECK_INT_EQ(green_run(&w, 1000, 11, &fired_at, &res), SW_WATCH_NONE);
  sw_watch_close(&w);
}

/* The floor: a clean baseline is small but not zero, so a clean but short
 * baseline does not make a handful of errors in heavy traffic surprising. */
static void test_r1_floor(void) {
  sw_watch_params_t p = r1_params();
  sw_watch_t w;
  uint64_t fired_at;

  /* 0 errors in 20: p0 = 0.5 / 21. 11 errors in 1000 requests (lambda 24)
   * are expected; in 50 (lambda 1.2) they are not. */
  watch_init(&w, &p);
  blue_baseline(&w, 20, 0);
  sw_watch_arm(&w, T_FLIP, SW_GREEN, 0, 0);
  SW_CHECK_INT_EQ(green_run(&w, 1000, 11, &fired_at, NULL), SW_WATCH_NONE);
  sw_watch_close(&w);
  watch_init(&w, &p);
  blue_baseline(&w, 20, 0);
  sw_watch_arm(&w, T_FLIP, SW_GREEN, 0, 0);
  SW_CHECK_INT_EQ(green_run(&w, 50, 11, &fired_at, NULL), SW_WATCH_FIRE);
  sw_watch_close(&w);
}

static void test_r1_off(void) {
  sw_watch_params_t p = r1_params();
  sw_watch_t w;
  uint64_t fired_at;

  p.r1_enabled = 0;
  watch_init(&w, &p);
  sw_watch_arm(&w, T_FLIP, SW_GREEN, 0, 0);
  SW_CHECK_INT_EQ(green_run(&w, 1000, 500, &fired_at, NULL), SW_WATCH_NONE);
  SW_CHECK_UINT_EQ(w.errors, 500);
  sw_watch_close(&w);

  /* max_errors is configurable: 0 means the first error. */
  p = r1_params();
  p.max_errors = 0;
  watch_init(&w, &p);
  sw_watch_arm(&w, T_FLIP, SW_GREEN, 0, 0);
  SW_CHECK_INT_EQ(green_run(&w, 10, 1, &fired_at, NULL), SW_WATCH_FIRE);
  SW_CHECK_UINT_EQ(fired_at, 1);
  sw_watch_close(&w);
}

/* ---- R2 ----------------------------------------------------------------- */

static sw_watch_params_t r2_params(void) {
  sw_watch_params_t p = test_params();

  p.r1_enabled = 0;
  p.r3_enabled = 0;
  /* Room for the window to slide inside the auto window. */
  p.auto_window_ms = 60000;
  p.manual_window_ms = 120000;
  return p;
}

/* n responses of green with `errors` errors spread evenly among them, the
 * last one an error when there is any. */
static sw_watch_verdict_t alternate(sw_watch_t *w,
                                    uint64_t now,
                                    uint64_t n,
                                    uint64_t errors,
                                    sw_watch_result_t *res) {
  for (uint64_t i = 0; i < n; i++) {
    int status = (i + 1) * errors / n > i * errors / n ? 500 : 200;
    sw_watch_verdict_t v = sw_watch_observe(w, now, SW_GREEN, status, 0, res);
    if (v != SW_WATCH_NONE)
      return v;
  }
  return SW_WATCH_NONE;
}

static void test_r2_threshold(void) {
  sw_watch_params_t p = r2_params();
  sw_watch_t w;
  sw_watch_result_t res;

  /* 10 of 20: exactly the ratio, exactly min_requests; the 20th (an
   * error) fires and not one before. */
  watch_init(&w, &p);
  sw_watch_arm(&w, T_FLIP, SW_GREEN, 0, 0);
  SW_CHECK_INT_EQ(alternate(&w, T_FLIP + 500, 20, 10, &res), SW_WATCH_FIRE);
  SW_CHECK_UINT_EQ(res.requests, 20);
  SW_CHECK_INT_EQ(res.rule, SW_WATCH_R2);
  SW_CHECK_UINT_EQ(res.window_requests, 20);
  SW_CHECK_UINT_EQ(res.window_errors, 10);
  SW_CHECK_UINT_EQ(res.window_ms, 10000);
  SW_CHECK_STR_CONTAINS(res.text, "10 errors in 20 requests");
  sw_watch_close(&w);

  /* 9 of 20: under the ratio. */
  watch_init(&w, &p);
  sw_watch_arm(&w, T_FLIP, SW_GREEN, 0, 0);
  SW_CHECK_INT_EQ(alternate(&w, T_FLIP + 500, 20, 9, &res), SW_WATCH_NONE);
  sw_watch_close(&w);

  /* 19 errors of 19: too few requests to judge. */
  watch_init(&w, &p);
  sw_watch_arm(&w, T_FLIP, SW_GREEN, 0, 0);
  SW_CHECK_INT_EQ(serve(&w, T_FLIP + 500, SW_GREEN, 500, 19, NULL, NULL),
                  SW_WATCH_NONE);
  SW_CHECK_INT_EQ(serve(&w, T_FLIP + 500, SW_GREEN, 500, 1, NULL, NULL),
                  SW_WATCH_FIRE);
  sw_watch_close(&w);

  /* Off: never. */
  p.r2_enabled = 0;
  watch_init(&w, &p);
  sw_watch_arm(&w, T_FLIP, SW_GREEN, 0, 0);
  SW_CHECK_INT_EQ(serve(&w, T_FLIP + 500, SW_GREEN, 500, 200, NULL, NULL),
                  SW_WATCH_NONE);
  SW_CHECK_INT_EQ(sw_watch_tick(&w, T_FLIP + 1500, NULL), SW_WATCH_NONE);
  sw_watch_close(&w);
}

static void test_r2_sliding(void) {
  sw_watch_params_t p = r2_params();
  sw_watch_t w;
  sw_watch_result_t res;
  uint64_t rq, er;

  /* Second 1: 15 successes. Second 5: 12 errors and 8 successes (12/35).
   * At second 10 the window covers seconds 1..10; at 11, 2..11, and the
   * successes of second 1 have aged out: 12/20, and a tick fires. */
  watch_init(&w, &p);
  sw_watch_arm(&w, T_FLIP, SW_GREEN, 0, 0);
  SW_CHECK_INT_EQ(serve(&w, T_FLIP + 1000, SW_GREEN, 200, 15, NULL, NULL),
                  SW_WATCH_NONE);
  SW_CHECK_INT_EQ(alternate(&w, T_FLIP + 5000, 20, 12, &res), SW_WATCH_NONE);
  sw_watch_window(&w, T_FLIP + 10999, SW_GREEN, 10000, &rq, &er);
  SW_CHECK_UINT_EQ(rq, 35);
  SW_CHECK_UINT_EQ(er, 12);
  SW_CHECK_INT_EQ(sw_watch_tick(&w, T_FLIP + 10999, &res), SW_WATCH_NONE);
  sw_watch_window(&w, T_FLIP + 11000, SW_GREEN, 10000, &rq, &er);
  SW_CHECK_UINT_EQ(rq, 20);
  SW_CHECK_UINT_EQ(er, 12);
  SW_CHECK_INT_EQ(sw_watch_tick(&w, T_FLIP + 11000, &res), SW_WATCH_FIRE);
  SW_CHECK_INT_EQ(res.rule, SW_WATCH_R2);
  SW_CHECK_UINT_EQ(res.window_requests, 20);
  SW_CHECK_UINT_EQ(res.window_errors, 12);
  SW_CHECK_UINT_EQ(res.errors, 12);
  SW_CHECK_UINT_EQ(res.requests, 35);
  sw_watch_close(&w);

  /* Errors that have left the window no longer count: 15 errors at second
   * 0 (too few to judge), then at second 10 9 errors and 11 successes. With
   * second 0 that would be 24 of 35; without, 9 of 20. Two more errors make
   * 11 of 22. */
  watch_init(&w, &p);
  sw_watch_arm(&w, T_FLIP, SW_GREEN, 0, 0);
  SW_CHECK_INT_EQ(serve(&w, T_FLIP, SW_GREEN, 500, 15, NULL, NULL),
                  SW_WATCH_NONE);
  SW_CHECK_INT_EQ(serve(&w, T_FLIP + 10000, SW_GREEN, 500, 9, NULL, NULL),
                  SW_WATCH_NONE);
  SW_CHECK_INT_EQ(serve(&w, T_FLIP + 10000, SW_GREEN, 200, 11, NULL, NULL),
                  SW_WATCH_NONE);
  SW_CHECK_INT_EQ(serve(&w, T_FLIP + 10000, SW_GREEN, 500, 1, NULL, &res),
                  SW_WATCH_NONE);
  SW_CHECK_INT_EQ(serve(&w, T_FLIP + 10000, SW_GREEN, 500, 1, NULL, &res),
                  SW_WATCH_FIRE);
  SW_CHECK_UINT_EQ(res.window_requests, 22);
  SW_CHECK_UINT_EQ(res.window_errors, 11);
  SW_CHECK_UINT_EQ(res.errors, 26);
  sw_watch_close(&w);
}

/* ---- R3 ----------------------------------------------------------------- */

static sw_watch_params_t r3_params(void) {
  sw_watch_params_t p = test_params();

  p.r1_enabled = 0;
  p.r2_enabled = 0;
  return p;
}

static void test_r3(void) {
  sw_watch_params_t p = r3_params();
  sw_watch_t w;
  sw_watch_result_t res;
  uint64_t at;

  /* Five in a row fire at the fifth. */
  watch_init(&w, &p);
  sw_watch_arm(&w, T_FLIP, SW_GREEN, 0, 0);
  SW_CHECK_INT_EQ(serve(&w, T_FLIP + 10, SW_GREEN, 500, 10, &at, &res),
                  SW_WATCH_FIRE);
  SW_CHECK_UINT_EQ(at, 4);
  SW_CHECK_INT_EQ(res.rule, SW_WATCH_R3);
  SW_CHECK_UINT_EQ(res.consecutive, 5);
  SW_CHECK_UINT_EQ(res.requests, 5);
  SW_CHECK_STR_CONTAINS(res.text, "5 errors in a row");
  sw_watch_close(&w);

  /* Four, anything that is not an error, four: never five in a row. The
   * proxy's own 502 counts as an error, a 4xx and an excluded 501 do not. */
  watch_init(&w, &p);
  sw_watch_arm(&w, T_FLIP, SW_GREEN, 0, 0);
  SW_CHECK_INT_EQ(serve(&w, T_FLIP + 10, SW_GREEN, 500, 4, NULL, NULL),
                  SW_WATCH_NONE);
  SW_CHECK_INT_EQ(sw_watch_observe(&w, T_FLIP + 10, SW_GREEN, 404, 0, NULL),
                  SW_WATCH_NONE);
  SW_CHECK_INT_EQ(serve(&w, T_FLIP + 10, SW_GREEN, 500, 4, NULL, NULL),
                  SW_WATCH_NONE);
  SW_CHECK_INT_EQ(sw_watch_observe(&w, T_FLIP + 10, SW_GREEN, 501, 0, NULL),
                  SW_WATCH_NONE);
  SW_CHECK_INT_EQ(serve(&w, T_FLIP + 10, SW_GREEN, 500, 3, NULL, NULL),
                  SW_WATCH_NONE);
  SW_CHECK_INT_EQ(sw_watch_observe(&w, T_FLIP + 10, SW_GREEN, 502, 1, NULL),
                  SW_WATCH_NONE);
  SW_CHECK_UINT_EQ(w.consecutive, 4);
  /* Blue's errors are blue's: they neither extend nor break green's run. */
  SW_CHECK_INT_EQ(serve(&w, T_FLIP + 10, SW_BLUE, 500, 10, NULL, NULL),
                  SW_WATCH_NONE);
  SW_CHECK_INT_EQ(serve(&w, T_FLIP + 10, SW_BLUE, 200, 10, NULL, NULL),
                  SW_WATCH_NONE);
  SW_CHECK_UINT_EQ(w.consecutive, 4);
  SW_CHECK_INT_EQ(sw_watch_observe(&w, T_FLIP + 10, SW_GREEN, 504, 1, &res),
                  SW_WATCH_FIRE);
  SW_CHECK_INT_EQ(res.rule, SW_WATCH_R3);
  sw_watch_close(&w);

  /* max_consecutive 1: the first error. */
  p.max_consecutive = 1;
  watch_init(&w, &p);
  sw_watch_arm(&w, T_FLIP, SW_GREEN, 0, 0);
  SW_CHECK_INT_EQ(sw_watch_observe(&w, T_FLIP + 10, SW_GREEN, 500, 0, NULL),
                  SW_WATCH_FIRE);
  sw_watch_close(&w);

  /* Off: never. */
  p.r3_enabled = 0;
  watch_init(&w, &p);
  sw_watch_arm(&w, T_FLIP, SW_GREEN, 0, 0);
  SW_CHECK_INT_EQ(serve(&w, T_FLIP + 10, SW_GREEN, 500, 100, NULL, NULL),
                  SW_WATCH_NONE);
  SW_CHECK_UINT_EQ(w.consecutive, 100);
  sw_watch_close(&w);
}

/* The low-traffic case: 5 requests, all 500, with every rule on. */
static void test_low_traffic_defaults(void) {
  sw_watch_params_t p = test_params();
  sw_watch_t w;
  sw_watch_result_t res;
  uint64_t at;

  watch_init(&w, &p);
  blue_baseline(&w, 1000, 0);
  sw_watch_arm(&w, T_FLIP, SW_GREEN, 0, 0);
  SW_CHECK_INT_EQ(serve(&w, T_FLIP + 10, SW_GREEN, 500, 5, &at, &res),
                  SW_WATCH_FIRE);
  SW_CHECK_UINT_EQ(at, 4);
  SW_CHECK_INT_EQ(res.rule, SW_WATCH_R3);
  sw_watch_close(&w);
}

/* ---- R4 ----------------------------------------------------------------- */

static void test_r4(void) {
  sw_watch_params_t p = test_params();
  sw_watch_t w;
  sw_watch_result_t res;

  watch_init(&w, &p);
  /* Not armed: nothing to roll back. */
  SW_CHECK_INT_EQ(sw_watch_on_health(&w, T_FLIP - 10, SW_GREEN, 0, &res),
                  SW_WATCH_NONE);
  sw_watch_arm(&w, T_FLIP, SW_GREEN, 0, 0);
  SW_CHECK_INT_EQ(sw_watch_on_health(&w, T_FLIP + 10, SW_GREEN, 1, &res),
                  SW_WATCH_NONE);
  SW_CHECK_INT_EQ(sw_watch_on_health(&w, T_FLIP + 10, SW_BLUE, 0, &res),
                  SW_WATCH_NONE);
  /* With no traffic at all. */
  SW_CHECK_INT_EQ(sw_watch_on_health(&w, T_FLIP + 20, SW_GREEN, 0, &res),
                  SW_WATCH_FIRE);
  SW_CHECK_INT_EQ(res.rule, SW_WATCH_R4);
  SW_CHECK_UINT_EQ(res.since_flip_ms, 20);
  SW_CHECK_UINT_EQ(res.requests, 0);
  SW_CHECK_STR_CONTAINS(res.text, "health");
  SW_CHECK_INT_EQ(sw_watch_outcome(&w, T_FLIP + 20), SW_WATCH_FIRED);
  sw_watch_close(&w);

  p.r4_enabled = 0;
  watch_init(&w, &p);
  sw_watch_arm(&w, T_FLIP, SW_GREEN, 0, 0);
  SW_CHECK_INT_EQ(sw_watch_on_health(&w, T_FLIP + 20, SW_GREEN, 0, &res),
                  SW_WATCH_NONE);
  sw_watch_close(&w);

  /* In the manual window it alerts. */
  p.r4_enabled = 1;
  watch_init(&w, &p);
  sw_watch_arm(&w, T_FLIP, SW_GREEN, 0, 0);
  SW_CHECK_INT_EQ(sw_watch_on_health(&w, T_FLIP + AUTO_MS, SW_GREEN, 0, &res),
                  SW_WATCH_ALERT);
  SW_CHECK_STR_CONTAINS(res.text, "alert");
  sw_watch_close(&w);

  /* After the manual window, nothing. */
  watch_init(&w, &p);
  sw_watch_arm(&w, T_FLIP, SW_GREEN, 0, 0);
  SW_CHECK_INT_EQ(sw_watch_on_health(&w, T_FLIP + MANUAL_MS, SW_GREEN, 0, &res),
                  SW_WATCH_NONE);
  sw_watch_close(&w);
}

/* ---- Windows, outcome, latch -------------------------------------------- */

static void test_phases(void) {
  sw_watch_params_t p = test_params();
  sw_watch_t w;

  watch_init(&w, &p);
  SW_CHECK_INT_EQ(sw_watch_phase(&w, T_FLIP), SW_WATCH_IDLE);
  SW_CHECK_UINT_EQ(sw_watch_next_deadline(&w, T_FLIP), 0);
  SW_CHECK_INT_EQ(sw_watch_outcome(&w, T_FLIP), SW_WATCH_PENDING);
  SW_CHECK_INT_EQ(sw_watch_arm(&w, T_FLIP, SW_GREEN, 0, 0), 0);
  SW_CHECK_INT_EQ(sw_watch_phase(&w, T_FLIP), SW_WATCH_WATCHING);
  SW_CHECK_INT_EQ(sw_watch_phase(&w, T_FLIP + AUTO_MS - 1), SW_WATCH_WATCHING);
  SW_CHECK_UINT_EQ(sw_watch_next_deadline(&w, T_FLIP), T_FLIP + AUTO_MS);
  SW_CHECK_INT_EQ(sw_watch_phase(&w, T_FLIP + AUTO_MS), SW_WATCH_MANUAL);
  SW_CHECK_UINT_EQ(sw_watch_next_deadline(&w, T_FLIP + AUTO_MS),
                   T_FLIP + MANUAL_MS);
  SW_CHECK_INT_EQ(sw_watch_phase(&w, T_FLIP + MANUAL_MS - 1), SW_WATCH_MANUAL);
  SW_CHECK_INT_EQ(sw_watch_phase(&w, T_FLIP + MANUAL_MS), SW_WATCH_FINAL);
  SW_CHECK_UINT_EQ(sw_watch_next_deadline(&w, T_FLIP + MANUAL_MS), 0);
  /* A time before the flip is the flip. */
  SW_CHECK_INT_EQ(sw_watch_phase(&w, T_FLIP - 5), SW_WATCH_WATCHING);

  /* The arm's windows win over the params'; a manual window shorter than
   * the auto window is the auto window. */
  sw_watch_arm(&w, T_FLIP, SW_GREEN, 1000, 3000);
  SW_CHECK_INT_EQ(sw_watch_phase(&w, T_FLIP + 999), SW_WATCH_WATCHING);
  SW_CHECK_INT_EQ(sw_watch_phase(&w, T_FLIP + 1000), SW_WATCH_MANUAL);
  SW_CHECK_INT_EQ(sw_watch_phase(&w, T_FLIP + 3000), SW_WATCH_FINAL);
  sw_watch_arm(&w, T_FLIP, SW_GREEN, 2000, 1000);
  SW_CHECK_INT_EQ(sw_watch_phase(&w, T_FLIP + 1999), SW_WATCH_WATCHING);
  SW_CHECK_INT_EQ(sw_watch_phase(&w, T_FLIP + 2000), SW_WATCH_FINAL);
  SW_CHECK_INT_EQ(sw_watch_arm(&w, T_FLIP, (sw_colour_t)7, 0, 0), SW_ECONFIG);

  /* Defaults: 5 and 30 minutes. */
  sw_watch_close(&w);
  watch_init(&w, NULL);
  sw_watch_arm(&w, T_FLIP, SW_GREEN, 0, 0);
  SW_CHECK_INT_EQ(sw_watch_phase(&w, T_FLIP + 5 * 60000 - 1),
                  SW_WATCH_WATCHING);
  SW_CHECK_INT_EQ(sw_watch_phase(&w, T_FLIP + 5 * 60000), SW_WATCH_MANUAL);
  SW_CHECK_INT_EQ(sw_watch_phase(&w, T_FLIP + 30 * 60000), SW_WATCH_FINAL);

  /* Ended early: final at once. */
  sw_watch_end(&w, T_FLIP + 10);
  SW_CHECK_INT_EQ(sw_watch_phase(&w, T_FLIP + 10), SW_WATCH_FINAL);
  SW_CHECK_UINT_EQ(w.ended_at, T_FLIP + 10);
  sw_watch_close(&w);
}

/* Triggers fire in the auto window, alert in the manual window (at exactly
 * auto_window), and are silent at exactly manual_window. */
static void test_fire_alert_by_window(void) {
  sw_watch_params_t p = r3_params();
  static const struct {
    uint64_t at;
    sw_watch_verdict_t v;
  } cases[] = {
      {0, SW_WATCH_FIRE},         {AUTO_MS - 1, SW_WATCH_FIRE},
      {AUTO_MS, SW_WATCH_ALERT},  {MANUAL_MS - 1, SW_WATCH_ALERT},
      {MANUAL_MS, SW_WATCH_NONE},
  };

  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    sw_watch_t w;
    sw_watch_result_t res;

    watch_init(&w, &p);
    sw_watch_arm(&w, T_FLIP, SW_GREEN, 0, 0);
    SW_CHECK_INT_EQ(
        serve(&w, T_FLIP + cases[i].at, SW_GREEN, 500, 5, NULL, &res),
        cases[i].v);
    SW_CHECK_INT_EQ(res.verdict, cases[i].v);
    sw_watch_close(&w);
  }
}

static void test_latch(void) {
  sw_watch_params_t p = test_params();
  sw_watch_t w;
  sw_watch_result_t res;

  watch_init(&w, &p);
  sw_watch_arm(&w, T_FLIP, SW_GREEN, 0, 0);
  SW_CHECK_INT_EQ(serve(&w, T_FLIP + 10, SW_GREEN, 500, 5, NULL, &res),
                  SW_WATCH_FIRE);
  /* Every further trigger is silent; counting goes on. */
  SW_CHECK_INT_EQ(serve(&w, T_FLIP + 20, SW_GREEN, 500, 50, NULL, &res),
                  SW_WATCH_NONE);
  SW_CHECK_INT_EQ(res.verdict, SW_WATCH_NONE);
  SW_CHECK_INT_EQ(sw_watch_on_health(&w, T_FLIP + 30, SW_GREEN, 0, &res),
                  SW_WATCH_NONE);
  SW_CHECK_INT_EQ(sw_watch_tick(&w, T_FLIP + 40, &res), SW_WATCH_NONE);
  SW_CHECK_INT_EQ(sw_watch_tick(&w, T_FLIP + AUTO_MS, &res), SW_WATCH_NONE);
  SW_CHECK_UINT_EQ(w.errors, 55);
  /* The first verdict stays on record. */
  SW_CHECK_INT_EQ(w.fired.verdict, SW_WATCH_FIRE);
  SW_CHECK_INT_EQ(w.fired.rule, SW_WATCH_R3);
  SW_CHECK_UINT_EQ(w.fired.errors, 5);
  SW_CHECK_INT_EQ(sw_watch_outcome(&w, T_FLIP + MANUAL_MS), SW_WATCH_FIRED);
  /* Arming again (a new flip, to blue) clears the latch and the counts. */
  sw_watch_arm(&w, T_FLIP + 1000, SW_BLUE, 0, 0);
  SW_CHECK_INT_EQ(w.fired.verdict, SW_WATCH_NONE);
  SW_CHECK_UINT_EQ(w.errors, 0);
  SW_CHECK_INT_EQ(w.colour, SW_BLUE);
  /* Green's errors before this flip are green's baseline now. */
  SW_CHECK_UINT_EQ(w.baseline_errors, 55);
  SW_CHECK_UINT_EQ(w.baseline_requests, 55);
  SW_CHECK_INT_EQ(serve(&w, T_FLIP + 1010, SW_BLUE, 500, 5, NULL, &res),
                  SW_WATCH_FIRE);
  SW_CHECK_INT_EQ(res.colour, SW_BLUE);
  SW_CHECK_STR_CONTAINS(res.text, "blue");
  sw_watch_close(&w);
}

static void test_outcome(void) {
  sw_watch_params_t p = test_params();
  sw_watch_t w;

  /* Exactly min_requests, quiet to the end: verified. */
  watch_init(&w, &p);
  sw_watch_arm(&w, T_FLIP, SW_GREEN, 0, 0);
  serve(&w, T_FLIP + 100, SW_GREEN, 200, 20, NULL, NULL);
  SW_CHECK_INT_EQ(sw_watch_outcome(&w, T_FLIP + AUTO_MS), SW_WATCH_PENDING);
  SW_CHECK_INT_EQ(sw_watch_outcome(&w, T_FLIP + MANUAL_MS - 1),
                  SW_WATCH_PENDING);
  SW_CHECK_INT_EQ(sw_watch_outcome(&w, T_FLIP + MANUAL_MS), SW_WATCH_VERIFIED);
  sw_watch_close(&w);

  /* One fewer: unverified, never verified. Blue's traffic and green's
   * traffic after the watch do not make up for it. */
  watch_init(&w, &p);
  sw_watch_arm(&w, T_FLIP, SW_GREEN, 0, 0);
  serve(&w, T_FLIP + 100, SW_GREEN, 200, 19, NULL, NULL);
  serve(&w, T_FLIP + 100, SW_BLUE, 200, 100, NULL, NULL);
  serve(&w, T_FLIP + MANUAL_MS, SW_GREEN, 200, 100, NULL, NULL);
  SW_CHECK_UINT_EQ(w.requests, 19);
  SW_CHECK_INT_EQ(sw_watch_outcome(&w, T_FLIP + MANUAL_MS),
                  SW_WATCH_UNVERIFIED);
  sw_watch_close(&w);

  /* No traffic at all: unverified. */
  watch_init(&w, &p);
  sw_watch_arm(&w, T_FLIP, SW_GREEN, 0, 0);
  SW_CHECK_INT_EQ(sw_watch_outcome(&w, T_FLIP + MANUAL_MS),
                  SW_WATCH_UNVERIFIED);
  sw_watch_close(&w);

  /* Ended early with enough traffic: inconclusive, never verified. */
  watch_init(&w, &p);
  sw_watch_arm(&w, T_FLIP, SW_GREEN, 0, 0);
  serve(&w, T_FLIP + 100, SW_GREEN, 200, 100, NULL, NULL);
  sw_watch_end(&w, T_FLIP + 200);
  SW_CHECK_INT_EQ(sw_watch_outcome(&w, T_FLIP + 200), SW_WATCH_INCONCLUSIVE);
  /* The totals stop with the watch; so do the triggers. */
  SW_CHECK_INT_EQ(serve(&w, T_FLIP + 300, SW_GREEN, 500, 50, NULL, NULL),
                  SW_WATCH_NONE);
  SW_CHECK_UINT_EQ(w.requests, 100);
  SW_CHECK_INT_EQ(sw_watch_outcome(&w, T_FLIP + MANUAL_MS),
                  SW_WATCH_INCONCLUSIVE);
  sw_watch_close(&w);

  /* Ended early with too little: unverified. */
  watch_init(&w, &p);
  sw_watch_arm(&w, T_FLIP, SW_GREEN, 0, 0);
  serve(&w, T_FLIP + 100, SW_GREEN, 200, 3, NULL, NULL);
  sw_watch_end(&w, T_FLIP + 200);
  SW_CHECK_INT_EQ(sw_watch_outcome(&w, T_FLIP + 200), SW_WATCH_UNVERIFIED);
  sw_watch_close(&w);

  /* An alert in the manual window is not a pass. */
  p.r1_enabled = 0;
  watch_init(&w, &p);
  sw_watch_arm(&w, T_FLIP, SW_GREEN, 0, 0);
  serve(&w, T_FLIP + 100, SW_GREEN, 200, 100, NULL, NULL);
  SW_CHECK_INT_EQ(serve(&w, T_FLIP + AUTO_MS, SW_GREEN, 500, 5, NULL, NULL),
                  SW_WATCH_ALERT);
  SW_CHECK_INT_EQ(sw_watch_outcome(&w, T_FLIP + MANUAL_MS), SW_WATCH_FIRED);
  sw_watch_close(&w);
}

/* ---- Counting and the ring ---------------------------------------------- */

static void test_counting(void) {
  sw_watch_params_t p = test_params();
  sw_watch_t w;
  uint64_t rq, er;

  watch_init(&w, &p);
  /* Green served before the flip (a previous watch's stragglers): not
   * counted against this watch, not even in the flip's second. */
  serve(&w, T_FLIP - 10, SW_GREEN, 500, 3, NULL, NULL);
  sw_watch_arm(&w, T_FLIP, SW_GREEN, 0, 0);
  sw_watch_window(&w, T_FLIP, SW_GREEN, 10000, &rq, &er);
  SW_CHECK_UINT_EQ(rq, 0);
  SW_CHECK_UINT_EQ(w.consecutive, 0);
  /* Blue's failures while it drains are blue's. */
  serve(&w, T_FLIP + 10, SW_BLUE, 500, 40, NULL, NULL);
  SW_CHECK_UINT_EQ(w.requests, 0);
  SW_CHECK_UINT_EQ(w.errors, 0);
  sw_watch_window(&w, T_FLIP + 10, SW_BLUE, 10000, &rq, &er);
  SW_CHECK_UINT_EQ(rq, 40);
  SW_CHECK_UINT_EQ(er, 40);
  serve(&w, T_FLIP + 10, SW_GREEN, 200, 7, NULL, NULL);
  serve(&w, T_FLIP + 10, SW_GREEN, 404, 2, NULL, NULL);
  serve(&w, T_FLIP + 10, SW_GREEN, 503, 2, NULL, NULL);
  serve(&w, T_FLIP + 10, SW_GREEN, 505, 1, NULL, NULL);
  SW_CHECK_UINT_EQ(w.requests, 12);
  SW_CHECK_UINT_EQ(w.errors, 2);
  /* An invalid colour is ignored. */
  SW_CHECK_INT_EQ(
      sw_watch_observe(&w, T_FLIP + 10, (sw_colour_t)5, 500, 0, NULL),
      SW_WATCH_NONE);
  SW_CHECK_UINT_EQ(w.requests, 12);
  sw_watch_close(&w);
}

static void test_baseline_window(void) {
  sw_watch_params_t p = test_params();
  sw_watch_t w;
  uint64_t rq, er;

  /* 10 minutes: whole seconds counting the flip's own, so blue's second
   * 600 s before the flip's is out and 599 s before is in. */
  watch_init(&w, &p);
  SW_CHECK_UINT_EQ(w.ring_len, 600); /* 30 s manual, 600 s baseline */
  serve(&w, T_FLIP - 700000, SW_BLUE, 500, 5, NULL, NULL);
  serve(&w, T_FLIP - 600000, SW_BLUE, 500, 4, NULL, NULL);
  serve(&w, T_FLIP - 599000, SW_BLUE, 500, 3, NULL, NULL);
  serve(&w, T_FLIP - 1, SW_BLUE, 200, 10, NULL, NULL);
  serve(&w, T_FLIP, SW_BLUE, 200, 1, NULL, NULL);
  sw_watch_baseline(&w, T_FLIP, SW_BLUE, &rq, &er);
  SW_CHECK_UINT_EQ(rq, 14);
  SW_CHECK_UINT_EQ(er, 3);
  sw_watch_arm(&w, T_FLIP, SW_GREEN, 0, 0);
  SW_CHECK_UINT_EQ(w.baseline_requests, 14);
  SW_CHECK_UINT_EQ(w.baseline_errors, 3);
  /* Blue's traffic after the flip does not move the baseline. */
  serve(&w, T_FLIP + 10, SW_BLUE, 500, 100, NULL, NULL);
  SW_CHECK_UINT_EQ(w.baseline_errors, 3);
  sw_watch_close(&w);

  /* The default ring covers the manual window: 1800 buckets. */
  watch_init(&w, NULL);
  SW_CHECK_UINT_EQ(w.ring_len, 1800);
  sw_watch_close(&w);
}

static void test_ring_expiry(void) {
  sw_watch_params_t p = test_params();
  sw_watch_t w;
  uint64_t rq, er;
  uint64_t t0 = T_FLIP + 1234;

  p.ring_seconds = 700;
  watch_init(&w, &p);
  SW_CHECK_UINT_EQ(w.ring_len, 700);
  serve(&w, t0, SW_BLUE, 500, 5, NULL, NULL);
  sw_watch_window(&w, t0, SW_BLUE, 1000, &rq, &er);
  SW_CHECK_UINT_EQ(rq, 5);
  /* Exactly one lap later the same bucket holds another second: the old
   * count must not show, in the window or mixed into the new one. */
  sw_watch_window(&w, t0 + 700000, SW_BLUE, 1000, &rq, &er);
  SW_CHECK_UINT_EQ(rq, 0);
  serve(&w, t0 + 700000, SW_BLUE, 200, 2, NULL, NULL);
  sw_watch_window(&w, t0 + 700000, SW_BLUE, 600000, &rq, &er);
  SW_CHECK_UINT_EQ(rq, 2);
  SW_CHECK_UINT_EQ(er, 0);
  /* A jump of many laps. */
  serve(&w, t0 + 700000 * 50 + 17, SW_BLUE, 500, 1, NULL, NULL);
  sw_watch_window(&w, t0 + 700000 * 50 + 17, SW_BLUE, 600000, &rq, &er);
  SW_CHECK_UINT_EQ(rq, 1);
  SW_CHECK_UINT_EQ(er, 1);
  /* A window longer than the ring is the ring. */
  sw_watch_window(&w, t0 + 700000 * 50 + 17, SW_BLUE, 1000000000, &rq, &er);
  SW_CHECK_UINT_EQ(rq, 1);
  /* A time that goes back is the latest seen: no bucket is rewound. */
  serve(&w, t0, SW_BLUE, 200, 4, NULL, NULL);
  sw_watch_window(&w, t0 + 700000 * 50 + 17, SW_BLUE, 1000, &rq, &er);
  SW_CHECK_UINT_EQ(rq, 5);
  sw_watch_close(&w);

  /* Near time 0 the window does not reach before second 0. */
  watch_init(&w, &p);
  serve(&w, 5, SW_BLUE, 200, 3, NULL, NULL);
  sw_watch_window(&w, 5, SW_BLUE, 600000, &rq, &er);
  SW_CHECK_UINT_EQ(rq, 3);
  sw_watch_close(&w);
}

/* A reload that grows the ring keeps every recent second. The ring of 600
 * holds, besides the last 51 seconds, 51 older seconds from an earlier lap
 * that a quiet spell left in place: exactly 1000 s older, so in a ring of
 * 1000 each shares its place with a recent one, and sits later in the old
 * ring. Moved over in index order, the older ones used to overwrite the
 * recent ones; the newer second must win. */
static void test_ring_grow(void) {
  sw_watch_params_t p = test_params();
  sw_watch_t w;
  uint64_t rq, er;
  /* The last second served: 100 modulo 600, so the recent seconds sit at
   * places 50..100 of the old ring and the older ones at 150..200. */
  uint64_t last = 100300;
  uint64_t now = last * 1000 + 500;

  p.ring_seconds = 600;
  watch_init(&w, &p);
  SW_CHECK_UINT_EQ(last % 600, 100);
  for (uint64_t s = last - 1050; s <= last - 1000; s++)
    serve(&w, s * 1000, SW_BLUE, 500, 5, NULL, NULL);
  for (uint64_t s = last - 50; s <= last; s++) {
    serve(&w, s * 1000 + 10, SW_BLUE, 200, 1, NULL, NULL);
    serve(&w, s * 1000 + 20, SW_BLUE, 503, 1, NULL, NULL);
  }
  sw_watch_window(&w, now, SW_BLUE, 51000, &rq, &er);
  SW_CHECK_UINT_EQ(rq, 102);
  SW_CHECK_UINT_EQ(er, 51);

  p.ring_seconds = 1000; /* not a multiple of 600 */
  SW_CHECK_INT_EQ(sw_watch_set_params(&w, &p), 0);
  SW_CHECK_UINT_EQ(w.ring_len, 1000);
  sw_watch_window(&w, now, SW_BLUE, 51000, &rq, &er);
  SW_CHECK_UINT_EQ(rq, 102);
  SW_CHECK_UINT_EQ(er, 51);
  /* The whole ring: the older seconds are 1000 s back, just out of it. */
  sw_watch_window(&w, now, SW_BLUE, 1000000, &rq, &er);
  SW_CHECK_UINT_EQ(rq, 102);
  SW_CHECK_UINT_EQ(er, 51);
  sw_watch_baseline(&w, now, SW_BLUE, &rq, &er);
  SW_CHECK_UINT_EQ(rq, 102);
  SW_CHECK_UINT_EQ(er, 51);
  /* Second by second, each recent one is where the longer ring looks. */
  for (uint64_t s = last - 50; s <= last; s++) {
    sw_watch_window(&w, s * 1000 + 999, SW_BLUE, 1000, &rq, &er);
    if (!SW_CHECK_UINT_EQ(rq, 2)) {
      printf("  second %llu\n", (unsigned long long)s);
      break;
    }
  }
  /* The flip takes the baseline the grown ring holds. */
  sw_watch_arm(&w, now, SW_GREEN, 0, 0);
  SW_CHECK_UINT_EQ(w.baseline_requests, 102);
  SW_CHECK_UINT_EQ(w.baseline_errors, 51);
  /* Green, never served, reads as empty after the move. */
  sw_watch_window(&w, now, SW_GREEN, 1000000, &rq, &er);
  SW_CHECK_UINT_EQ(rq, 0);
  sw_watch_close(&w);
}

/* ---- Persistence -------------------------------------------------------- */

static void test_snapshot_round_trip(void) {
  sw_watch_params_t p = r1_params();
  sw_watch_t w, r;
  sw_watch_persisted_t st, st2;
  sw_watch_result_t res;
  uint64_t restart = T_FLIP + 2000;

  watch_init(&w, &p);
  blue_baseline(&w, 1000, 0);
  sw_watch_arm(&w, T_FLIP, SW_GREEN, 0, 0);
  serve(&w, T_FLIP + 100, SW_GREEN, 200, 300, NULL, NULL);
  serve(&w, T_FLIP + 100, SW_GREEN, 500, 10, NULL, NULL);
  sw_watch_snapshot(&w, &st);
  SW_CHECK_INT_EQ(st.armed, 1);
  SW_CHECK_INT_EQ(st.colour, SW_GREEN);
  SW_CHECK_UINT_EQ(st.flip_at, T_FLIP);
  SW_CHECK_UINT_EQ(st.requests, 310);
  SW_CHECK_UINT_EQ(st.errors, 10);
  SW_CHECK_UINT_EQ(st.baseline_requests, 1000);
  SW_CHECK_UINT_EQ(st.baseline_errors, 0);
  SW_CHECK_INT_EQ(st.fired, SW_WATCH_NONE);
  sw_watch_close(&w);

  /* A new process: the windows continue from the flip, and one more error
   * is the eleventh. */
  watch_init(&r, &p);
  SW_CHECK_INT_EQ(sw_watch_restore(&r, restart, &st), 0);
  sw_watch_snapshot(&r, &st2);
  SW_CHECK(memcmp(&st, &st2, sizeof(st)) == 0);
  SW_CHECK_INT_EQ(sw_watch_phase(&r, restart), SW_WATCH_WATCHING);
  SW_CHECK_INT_EQ(sw_watch_phase(&r, T_FLIP + AUTO_MS), SW_WATCH_MANUAL);
  SW_CHECK_UINT_EQ(sw_watch_next_deadline(&r, restart), T_FLIP + AUTO_MS);
  SW_CHECK_INT_EQ(sw_watch_observe(&r, restart, SW_GREEN, 500, 0, &res),
                  SW_WATCH_FIRE);
  SW_CHECK_INT_EQ(res.rule, SW_WATCH_R1);
  SW_CHECK_UINT_EQ(res.errors, 11);
  SW_CHECK_UINT_EQ(res.requests, 311);

  /* The latch persists too. */
  sw_watch_snapshot(&r, &st);
  SW_CHECK_INT_EQ(st.fired, SW_WATCH_FIRE);
  SW_CHECK_INT_EQ(st.rule, SW_WATCH_R1);
  SW_CHECK_UINT_EQ(st.fired_at, restart);
  sw_watch_close(&r);
  watch_init(&r, &p);
  SW_CHECK_INT_EQ(sw_watch_restore(&r, restart + 10, &st), 0);
  SW_CHECK_INT_EQ(sw_watch_outcome(&r, restart + 10), SW_WATCH_FIRED);
  SW_CHECK_INT_EQ(serve(&r, restart + 10, SW_GREEN, 500, 20, NULL, NULL),
                  SW_WATCH_NONE);
  SW_CHECK_STR_CONTAINS(r.fired.text, "r1");
  sw_watch_snapshot(&r, &st2);
  SW_CHECK_INT_EQ(st2.fired, SW_WATCH_FIRE);
  SW_CHECK_UINT_EQ(st2.fired_at, restart);
  sw_watch_close(&r);

  /* Restored after the windows: final, and the outcome is known. */
  st.fired = SW_WATCH_NONE;
  st.rule = SW_WATCH_RULE_NONE;
  watch_init(&r, &p);
  SW_CHECK_INT_EQ(sw_watch_restore(&r, T_FLIP + MANUAL_MS, &st), 0);
  SW_CHECK_INT_EQ(sw_watch_phase(&r, T_FLIP + MANUAL_MS), SW_WATCH_FINAL);
  SW_CHECK_INT_EQ(sw_watch_outcome(&r, T_FLIP + MANUAL_MS), SW_WATCH_VERIFIED);
  sw_watch_close(&r);

  /* An idle watch round-trips as idle. */
  watch_init(&w, &p);
  sw_watch_snapshot(&w, &st);
  SW_CHECK_INT_EQ(st.armed, 0);
  watch_init(&r, &p);
  SW_CHECK_INT_EQ(sw_watch_restore(&r, T_FLIP, &st), 0);
  SW_CHECK_INT_EQ(sw_watch_phase(&r, T_FLIP), SW_WATCH_IDLE);
  sw_watch_close(&r);
  sw_watch_close(&w);
}

static void test_restore_rejects(void) {
  sw_watch_params_t p = test_params();
  sw_watch_t w;
  sw_watch_persisted_t good, st;

  watch_init(&w, &p);
  sw_watch_arm(&w, T_FLIP, SW_GREEN, 0, 0);
  sw_watch_snapshot(&w, &good);
  sw_watch_close(&w);

  watch_init(&w, &p);
  st = good;
  st.colour = (sw_colour_t)3;
  SW_CHECK_INT_EQ(sw_watch_restore(&w, T_FLIP, &st), SW_ECONFIG);
  st = good;
  st.flip_at = T_FLIP + 1;
  SW_CHECK_INT_EQ(sw_watch_restore(&w, T_FLIP, &st), SW_ECONFIG);
  st = good;
  st.fired = SW_WATCH_FIRE;
  SW_CHECK_INT_EQ(sw_watch_restore(&w, T_FLIP, &st), SW_ECONFIG);
  st = good;
  st.fired = (sw_watch_verdict_t)9;
  st.rule = SW_WATCH_R1;
  SW_CHECK_INT_EQ(sw_watch_restore(&w, T_FLIP, &st), SW_ECONFIG);
  st = good;
  st.fired = SW_WATCH_FIRE;
  st.rule = (sw_watch_rule_t)9;
  SW_CHECK_INT_EQ(sw_watch_restore(&w, T_FLIP, &st), SW_ECONFIG);
  st = good;
  st.errors = 1;
  SW_CHECK_INT_EQ(sw_watch_restore(&w, T_FLIP, &st), SW_ECONFIG);
  /* Nothing was changed by the refusals. */
  SW_CHECK_INT_EQ(sw_watch_phase(&w, T_FLIP), SW_WATCH_IDLE);
  SW_CHECK_INT_EQ(sw_watch_restore(&w, T_FLIP, &good), 0);
  SW_CHECK_INT_EQ(sw_watch_phase(&w, T_FLIP), SW_WATCH_WATCHING);
  sw_watch_close(&w);
}

/* ---- Params and names --------------------------------------------------- */

static void test_params_validation(void) {
  sw_watch_params_t p;
  sw_watch_t w;

#define EXPECT_BAD(stmt)                                \
  do {                                                  \
    p = test_params();                                  \
    stmt;                                               \
    SW_CHECK_INT_EQ(sw_watch_init(&w, &p), SW_ECONFIG); \
    SW_CHECK(w.ring[0] == NULL && w.ring[1] == NULL);   \
  } while (0)

  EXPECT_BAD(p.manual_window_ms = p.auto_window_ms - 1);
  EXPECT_BAD(p.nexclude = SW_WATCH_EXCLUDE_MAX + 1);
  EXPECT_BAD(p.alpha = 0);
  EXPECT_BAD(p.alpha = 1.5);
  EXPECT_BAD(p.alpha = NAN);
  EXPECT_BAD(p.max_error_ratio = 0);
  EXPECT_BAD(p.max_error_ratio = NAN);
  EXPECT_BAD(p.r2_window_ms = 0);
  EXPECT_BAD(p.max_consecutive = 0);
  EXPECT_BAD(p.ring_seconds = 599); /* the baseline needs 600 */
  EXPECT_BAD(p.ring_seconds = SW_WATCH_RING_MAX + 1);
  EXPECT_BAD(p.baseline_window_ms = (uint64_t)SW_WATCH_RING_MAX * 1000 + 1);
#undef EXPECT_BAD

  /* A rule that is off needs no valid threshold. */
  p = test_params();
  p.r2_enabled = 0;
  p.max_error_ratio = 0;
  p.r3_enabled = 0;
  p.max_consecutive = 0;
  p.r1_enabled = 0;
  p.alpha = 0;
  SW_CHECK_INT_EQ(sw_watch_init(&w, &p), 0);
  sw_watch_close(&w);
  sw_watch_close(&w); /* idempotent */

  /* A manual window longer than the bound is kept; the ring is bounded. */
  p = test_params();
  p.manual_window_ms = 48ull * 3600 * 1000;
  SW_CHECK_INT_EQ(sw_watch_init(&w, &p), 0);
  SW_CHECK_UINT_EQ(w.ring_len, SW_WATCH_RING_MAX);
  sw_watch_arm(&w, T_FLIP, SW_GREEN, 0, 0);
  SW_CHECK_INT_EQ(sw_watch_phase(&w, T_FLIP + 47ull * 3600 * 1000),
                  SW_WATCH_MANUAL);
  sw_watch_close(&w);
}

static void test_names(void) {
  SW_CHECK_STR_EQ(sw_watch_phase_name(SW_WATCH_IDLE), "idle");
  SW_CHECK_STR_EQ(sw_watch_phase_name(SW_WATCH_WATCHING), "watching");
  SW_CHECK_STR_EQ(sw_watch_phase_name(SW_WATCH_MANUAL), "committed_manual");
  SW_CHECK_STR_EQ(sw_watch_phase_name(SW_WATCH_FINAL), "final");
  SW_CHECK_STR_EQ(sw_watch_phase_name((sw_watch_phase_t)99), "unknown");
  SW_CHECK_STR_EQ(sw_watch_rule_name(SW_WATCH_R1), "r1");
  SW_CHECK_STR_EQ(sw_watch_rule_name(SW_WATCH_R4), "r4");
  SW_CHECK_STR_EQ(sw_watch_rule_name((sw_watch_rule_t)99), "unknown");
  SW_CHECK_STR_EQ(sw_watch_verdict_name(SW_WATCH_FIRE), "fire");
  SW_CHECK_STR_EQ(sw_watch_verdict_name(SW_WATCH_ALERT), "alert");
  SW_CHECK_STR_EQ(sw_watch_outcome_name(SW_WATCH_VERIFIED), "verified");
  SW_CHECK_STR_EQ(sw_watch_outcome_name(SW_WATCH_UNVERIFIED), "unverified");
  SW_CHECK_STR_EQ(sw_watch_outcome_name(SW_WATCH_INCONCLUSIVE), "inconclusive");
  SW_CHECK_STR_EQ(sw_watch_outcome_name((sw_watch_outcome_t)99), "unknown");
}

/* Every verdict's text is one clean line, even with the largest numbers. */
static void test_text(void) {
  sw_watch_params_t p = test_params();
  sw_watch_persisted_t st;
  sw_watch_t w;
  sw_watch_result_t res;

  p.max_errors = UINT64_MAX - 1;
  p.r2_enabled = 0;
  p.r3_enabled = 0;
  watch_init(&w, &p);
  memset(&st, 0, sizeof(st));
  st.armed = 1;
  st.colour = SW_GREEN;
  st.flip_at = T_FLIP;
  st.requests = UINT64_MAX - 1;
  st.errors = UINT64_MAX - 1;
  st.baseline_requests = UINT64_MAX;
  st.baseline_errors = 0;
  SW_CHECK_INT_EQ(sw_watch_restore(&w, T_FLIP, &st), 0);
  SW_CHECK_INT_EQ(sw_watch_observe(&w, T_FLIP, SW_GREEN, 500, 0, &res),
                  SW_WATCH_FIRE);
  SW_CHECK(clean_ascii(res.text));
  SW_CHECK(strlen(res.text) < SW_WATCH_TEXT);
  SW_CHECK_STR_CONTAINS(res.text, "r1");
  sw_watch_close(&w);
}

SW_TEST_MAIN(SW_TASK(test_classify),
             SW_TASK(test_poisson_reference),
             SW_TASK(test_poisson_direct),
             SW_TASK(test_poisson_extremes),
             SW_TASK(test_r1_clean_baseline_is_more_than_ten),
             SW_TASK(test_r1_noisy_baseline),
             SW_TASK(test_r1_no_baseline),
             SW_TASK(test_r1_floor),
             SW_TASK(test_r1_off),
             SW_TASK(test_r2_threshold),
             SW_TASK(test_r2_sliding),
             SW_TASK(test_r3),
             SW_TASK(test_low_traffic_defaults),
             SW_TASK(test_r4),
             SW_TASK(test_phases),
             SW_TASK(test_fire_alert_by_window),
             SW_TASK(test_latch),
             SW_TASK(test_outcome),
             SW_TASK(test_counting),
             SW_TASK(test_baseline_window),
             SW_TASK(test_ring_expiry),
             SW_TASK(test_ring_grow),
             SW_TASK(test_snapshot_round_trip),
             SW_TASK(test_restore_rejects),
             SW_TASK(test_params_validation),
             SW_TASK(test_names),
             SW_TASK(test_text))
