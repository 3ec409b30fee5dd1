/* Unit tests of the cutover state machine (proxy/switch.c). The machine is
 * pure, so every test drives it with explicit times and checks the actions
 * it hands back. test_matrix applies every event to every phase the machine
 * can be in (ignored events included) and checks the phase, the return
 * code, the actions, the transitions and the version; the other tests walk
 * through the rules one at a time: fresh evidence only, the gate's three
 * conditions, deadlines, the re-check, the drain, restore, the ring and the
 * bounds on stored text. Those run with the error watch off (test_params),
 * where a flip drains and ends in steady.
 *
 * The watch tests turn it on with short windows (watch_params): the flip
 * into watching, the windows, rollback (automatic, blocked, and which mode
 * may act in which phase), commit, what a watch refuses, and restore;
 * test_watch_matrix applies every event of the first matrix to each watch
 * phase.
 *
 * The hold tests (setup_migrate, setup_rollback_migrating): a cutover with
 * SW_SWITCH_REQ_MIGRATE gates on liveness only, holds in migrating and
 * re-checks after the migration; a rollback may run the reverse migration
 * first (rollback_migrating) and then flips or blocks; test_hold_matrix
 * applies every event of the first matrix to both phases.
 *
 * The standard story: blue is live; green is requested at T_REQ and flips
 * at T_FLIP. */
#include <stdio.h>
#include <string.h>

#include "sw_switch.h"
#include "sw_test.h"

#define T_INIT 1000
#define T_REQ 2000
#define GATE_MS 60000
#define RECHECK_MS 2000
#define DRAIN_MS 30000
#define FAR 1000000000ull /* past every deadline */

static sw_switch_params_t test_params(void) {
  sw_switch_params_t p;

  sw_switch_params_default(&p);
  p.rise[SW_BLUE] = 3;
  p.rise[SW_GREEN] = 3;
  p.gate_timeout_ms = GATE_MS;
  p.recheck_timeout_ms = RECHECK_MS;
  p.drain_timeout_ms = DRAIN_MS;
  p.history = 8;
  /* The gate and drain tests follow a flip without the error watch: the
   * drain then ends the cutover in steady. watch_params() turns it on. */
  p.watch = 0;
  return p;
}

/* Whether s is valid UTF-8 with no control characters: what a record must
 * be to reach a JSON log line. */
static int clean_utf8(const char *s) {
  const unsigned char *p = (const unsigned char *)s;

  while (*p) {
    int n = *p < 0x80             ? 1
            : (*p & 0xe0) == 0xc0 ? 2
            : (*p & 0xf0) == 0xe0 ? 3
            : (*p & 0xf8) == 0xf0 ? 4
                                  : 0;
    if (n == 0 || (n == 1 && (*p < 0x20 || *p == 0x7f)))
      return 0;
    for (int i = 1; i < n; i++)
      if ((p[i] & 0xc0) != 0x80)
        return 0;
    p += n;
  }
  return 1;
}

static const sw_switch_event_t *last_event(const sw_switch_actions_t *a) {
  return a->nevents > 0 ? &a->events[a->nevents - 1] : NULL;
}

/* Checks that a produced one transition with this reason into `to`. */
static void check_transition_at(const char *file,
                                int line,
                                const sw_switch_t *s,
                                const sw_switch_actions_t *a,
                                sw_switch_phase_t from,
                                sw_switch_phase_t to,
                                sw_switch_reason_t reason) {
  const sw_switch_event_t *ev = last_event(a);

  SW_CHECK_UINT_EQ_AT(file, line, a->nevents, 1);
  if (!SW_CHECK_AT(file, line, ev != NULL))
    return;
  SW_CHECK_STR_EQ_AT(file, line, sw_switch_phase_name(ev->from),
                     sw_switch_phase_name(from));
  SW_CHECK_STR_EQ_AT(file, line, sw_switch_phase_name(ev->to),
                     sw_switch_phase_name(to));
  SW_CHECK_STR_EQ_AT(file, line, sw_switch_reason_name(ev->reason),
                     sw_switch_reason_name(reason));
  SW_CHECK_STR_EQ_AT(file, line, sw_switch_phase_name(s->phase),
                     sw_switch_phase_name(to));
  SW_CHECK_UINT_EQ_AT(file, line, ev->version, s->version);
  SW_CHECK_AT(file, line, (a->flags & SW_SWITCH_ACT_PERSIST) != 0);
  SW_CHECK_AT(file, line, clean_utf8(ev->text));
}
#define CHECK_TRANSITION(s, a, from, to, reason) \
  check_transition_at(__FILE__, __LINE__, s, a, from, to, reason)

#define CHECK_PHASE(s, p) \
  SW_CHECK_STR_EQ(sw_switch_phase_name((s)->phase), sw_switch_phase_name(p))

/* Feeds n fresh passes of colour c, one every 100 ms from *now. */
static void passes(sw_switch_t *s,
                   uint64_t *now,
                   sw_colour_t c,
                   int n,
                   sw_switch_actions_t *a) {
  for (int i = 0; i < n; i++) {
    *now += 100;
    sw_switch_on_health(s, *now, c, 1, *now, "", a);
  }
}

/* Puts s into `phase` with blue live and a cutover to green on its way,
 * under params p; a holds the actions of the last call (the flip's, for
 * draining or watching). Returns the time the phase was entered; `now` for
 * events comes after it. */
static uint64_t setup_with(sw_switch_t *s,
                           sw_switch_phase_t phase,
                           const sw_switch_params_t *p,
                           sw_switch_actions_t *a) {
  uint64_t now = T_INIT;

  sw_switch_init(s, SW_BLUE, p);
  sw_switch_on_colour_health(s, now, SW_BLUE, 1, "", a);
  sw_switch_on_colour_health(s, now, SW_GREEN, 1, "", a);
  if (phase == SW_SWITCH_STEADY)
    return now;

  now = T_REQ;
  sw_switch_request(s, now, SW_GREEN, 2, "test", a);
  if (phase == SW_SWITCH_GATING)
    return now;

  passes(s, &now, SW_GREEN, 3, a); /* 2100, 2200, 2300 */
  now += 100;
  sw_switch_on_verify(s, now, SW_GREEN, SW_SWITCH_VERIFY_PASS, T_REQ, "", a);
  if (phase == SW_SWITCH_RECHECKING)
    return now; /* 2400 */

  now += 100;
  sw_switch_on_health(s, now, SW_GREEN, 1, now - 50, "", a);
  now += 100;
  sw_switch_on_verify(s, now, SW_GREEN, SW_SWITCH_VERIFY_PASS, now - 150, "",
                      a);
  return now; /* 2600: draining, or watching with the watch on */
}

/* The same with test_params(): the flip ends in draining. */
static uint64_t setup(sw_switch_t *s, sw_switch_phase_t phase) {
  sw_switch_params_t p = test_params();
  sw_switch_actions_t a;

  return setup_with(s, phase, &p, &a);
}

/* ---- the phase x event matrix ---- */

typedef enum ev_e {
  EV_REQUEST_GREEN = 0,
  EV_REQUEST_BLUE,
  EV_REQUEST_NO_SERVERS,
  EV_REQUEST_INVALID,
  EV_ABORT,
  EV_HEALTH_GREEN_PASS,
  EV_HEALTH_GREEN_STALE_PASS,
  EV_HEALTH_GREEN_FAIL,
  EV_HEALTH_BLUE_PASS,
  EV_HEALTH_BLUE_FAIL,
  EV_COLOUR_BLUE_UP,
  EV_COLOUR_BLUE_DOWN,
  EV_COLOUR_GREEN_UP,
  EV_COLOUR_GREEN_DOWN,
  EV_VERIFY_GREEN_PASS,
  EV_VERIFY_GREEN_FAIL,
  EV_VERIFY_GREEN_INCONCLUSIVE,
  EV_VERIFY_GREEN_STALE_FAIL,
  EV_VERIFY_BLUE_FAIL,
  EV_INFLIGHT_BLUE_0,
  EV_INFLIGHT_BLUE_5,
  EV_INFLIGHT_GREEN_0,
  EV_DRAIN_CANCELLED_BLUE,
  EV_TICK,
  EV_TICK_DEADLINE,
  EV_COUNT
} ev_t;

static const char *const ev_names[EV_COUNT] = {
    "request green",
    "request blue",
    "request, no servers",
    "request colour 7",
    "abort",
    "health green pass",
    "health green stale",
    "health green fail",
    "health blue pass",
    "health blue fail",
    "colour blue up",
    "colour blue down",
    "colour green up",
    "colour green down",
    "verify green pass",
    "verify green fail",
    "verify green inconc",
    "verify green stale fail",
    "verify blue fail",
    "inflight blue 0",
    "inflight blue 5",
    "inflight green 0",
    "drain cancelled",
    "tick",
    "tick past deadlines",
};

/* Applies ev at now; returns what request/abort returned, else -1. */
static int apply(sw_switch_t *s,
                 ev_t ev,
                 uint64_t now,
                 sw_switch_actions_t *a) {
  switch (ev) {
    case EV_REQUEST_GREEN:
      return (int)sw_switch_request(s, now, SW_GREEN, 2, "m", a);
    case EV_REQUEST_BLUE:
      return (int)sw_switch_request(s, now, SW_BLUE, 2, "m", a);
    case EV_REQUEST_NO_SERVERS:
      return (int)sw_switch_request(s, now, SW_GREEN, 0, "m", a);
    case EV_REQUEST_INVALID:
      return (int)sw_switch_request(s, now, (sw_colour_t)7, 2, "m", a);
    case EV_ABORT:
      return (int)sw_switch_abort(s, now, "m", a);
    case EV_HEALTH_GREEN_PASS:
      sw_switch_on_health(s, now, SW_GREEN, 1, now, "", a);
      break;
    case EV_HEALTH_GREEN_STALE_PASS:
      sw_switch_on_health(s, now, SW_GREEN, 1, T_REQ - 500, "", a);
      break;
    case EV_HEALTH_GREEN_FAIL:
      sw_switch_on_health(s, now, SW_GREEN, 0, now, "HTTP 503", a);
      break;
    case EV_HEALTH_BLUE_PASS:
      sw_switch_on_health(s, now, SW_BLUE, 1, now, "", a);
      break;
    case EV_HEALTH_BLUE_FAIL:
      sw_switch_on_health(s, now, SW_BLUE, 0, now, "HTTP 500", a);
      break;
    case EV_COLOUR_BLUE_UP:
      sw_switch_on_colour_health(s, now, SW_BLUE, 1, "", a);
      break;
    case EV_COLOUR_BLUE_DOWN:
      sw_switch_on_colour_health(s, now, SW_BLUE, 0, "3 checks failed", a);
      break;
    case EV_COLOUR_GREEN_UP:
      sw_switch_on_colour_health(s, now, SW_GREEN, 1, "", a);
      break;
    case EV_COLOUR_GREEN_DOWN:
      sw_switch_on_colour_health(s, now, SW_GREEN, 0, "3 checks failed", a);
      break;
    case EV_VERIFY_GREEN_PASS:
      sw_switch_on_verify(s, now, SW_GREEN, SW_SWITCH_VERIFY_PASS, now, "", a);
      break;
    case EV_VERIFY_GREEN_FAIL:
      sw_switch_on_verify(s, now, SW_GREEN, SW_SWITCH_VERIFY_FAIL, now,
                          "missing migration shop.0042_rename", a);
      break;
    case EV_VERIFY_GREEN_INCONCLUSIVE:
      sw_switch_on_verify(s, now, SW_GREEN, SW_SWITCH_VERIFY_INCONCLUSIVE, now,
                          "connection refused", a);
      break;
    case EV_VERIFY_GREEN_STALE_FAIL:
      sw_switch_on_verify(s, now, SW_GREEN, SW_SWITCH_VERIFY_FAIL, T_REQ - 500,
                          "missing migration shop.0042_rename", a);
      break;
    case EV_VERIFY_BLUE_FAIL:
      sw_switch_on_verify(s, now, SW_BLUE, SW_SWITCH_VERIFY_FAIL, now,
                          "missing column", a);
      break;
    case EV_INFLIGHT_BLUE_0:
      sw_switch_on_inflight(s, now, SW_BLUE, 0, a);
      break;
    case EV_INFLIGHT_BLUE_5:
      sw_switch_on_inflight(s, now, SW_BLUE, 5, a);
      break;
    case EV_INFLIGHT_GREEN_0:
      sw_switch_on_inflight(s, now, SW_GREEN, 0, a);
      break;
    case EV_DRAIN_CANCELLED_BLUE:
      sw_switch_on_drain_cancelled(s, now, SW_BLUE, 4, a);
      break;
    case EV_TICK:
      sw_switch_tick(s, now, a);
      break;
    case EV_TICK_DEADLINE:
      sw_switch_tick(s, FAR, a);
      break;
    case EV_COUNT:
      break;
  }
  return -1;
}

typedef struct want_s {
  sw_switch_phase_t phase;   /* after the event */
  int ret;                   /* request/abort's return; -1 for other events */
  unsigned flags;            /* exact action bits */
  sw_switch_reason_t reason; /* of the one transition; NONE: no transition */
} want_t;

#define PERSIST SW_SWITCH_ACT_PERSIST
#define IGN(ph) \
  { ph, -1, 0, SW_SWITCH_R_NONE }
#define REFUSE(ph, r) \
  { ph, SW_SWITCH_R_##r, 0, SW_SWITCH_R_NONE }
#define TO(ph, r) \
  { ph, -1, PERSIST, SW_SWITCH_R_##r }

#define ST SW_SWITCH_STEADY
#define GA SW_SWITCH_GATING
#define RE SW_SWITCH_RECHECKING
#define DR SW_SWITCH_DRAINING

/* What each event does in each phase. Events that leave the phase and the
 * version alone are the ignored ones: they are listed as deliberately as
 * the others. */
static const want_t matrix[4][EV_COUNT] = {
    [SW_SWITCH_STEADY] =
        {
            [EV_REQUEST_GREEN] = {GA, SW_SWITCH_R_NONE,
                                  SW_SWITCH_ACT_VERIFY | PERSIST,
                                  SW_SWITCH_R_REQUESTED},
            [EV_REQUEST_BLUE] = REFUSE(ST, ALREADY_LIVE),
            [EV_REQUEST_NO_SERVERS] = REFUSE(ST, NO_SERVERS),
            [EV_REQUEST_INVALID] = REFUSE(ST, INVALID),
            [EV_ABORT] = REFUSE(ST, NOT_GATING),
            [EV_HEALTH_GREEN_PASS] = IGN(ST),
            [EV_HEALTH_GREEN_STALE_PASS] = IGN(ST),
            [EV_HEALTH_GREEN_FAIL] = IGN(ST),
            [EV_HEALTH_BLUE_PASS] = IGN(ST),
            [EV_HEALTH_BLUE_FAIL] = IGN(ST),
            [EV_COLOUR_BLUE_UP] = IGN(ST),
            [EV_COLOUR_BLUE_DOWN] = IGN(ST),
            [EV_COLOUR_GREEN_UP] = IGN(ST),
            [EV_COLOUR_GREEN_DOWN] = IGN(ST),
            [EV_VERIFY_GREEN_PASS] = IGN(ST),
            [EV_VERIFY_GREEN_FAIL] = IGN(ST),
            [EV_VERIFY_GREEN_INCONCLUSIVE] = IGN(ST),
            [EV_VERIFY_GREEN_STALE_FAIL] = IGN(ST),
            [EV_VERIFY_BLUE_FAIL] = IGN(ST),
            [EV_INFLIGHT_BLUE_0] = IGN(ST),
            [EV_INFLIGHT_BLUE_5] = IGN(ST),
            [EV_INFLIGHT_GREEN_0] = IGN(ST),
            [EV_DRAIN_CANCELLED_BLUE] = IGN(ST),
            [EV_TICK] = IGN(ST),
            [EV_TICK_DEADLINE] = IGN(ST),
        },
    [SW_SWITCH_GATING] =
        {
            [EV_REQUEST_GREEN] = REFUSE(GA, IN_PROGRESS),
            [EV_REQUEST_BLUE] = REFUSE(GA, IN_PROGRESS),
            [EV_REQUEST_NO_SERVERS] = REFUSE(GA, IN_PROGRESS),
            [EV_REQUEST_INVALID] = REFUSE(GA, INVALID),
            [EV_ABORT] = {ST, SW_SWITCH_R_NONE, PERSIST, SW_SWITCH_R_OPERATOR},
            [EV_HEALTH_GREEN_PASS] = IGN(GA),
            [EV_HEALTH_GREEN_STALE_PASS] = IGN(GA),
            [EV_HEALTH_GREEN_FAIL] = IGN(GA),
            [EV_HEALTH_BLUE_PASS] = IGN(GA),
            [EV_HEALTH_BLUE_FAIL] = IGN(GA),
            [EV_COLOUR_BLUE_UP] = IGN(GA),
            [EV_COLOUR_BLUE_DOWN] = TO(ST, LIVE_UNHEALTHY),
            [EV_COLOUR_GREEN_UP] = IGN(GA),
            [EV_COLOUR_GREEN_DOWN] = IGN(GA),
            [EV_VERIFY_GREEN_PASS] = IGN(GA),
            [EV_VERIFY_GREEN_FAIL] = TO(ST, VERIFY_FAILED),
            [EV_VERIFY_GREEN_INCONCLUSIVE] = TO(ST, VERIFY_INCONCLUSIVE),
            [EV_VERIFY_GREEN_STALE_FAIL] = IGN(GA),
            [EV_VERIFY_BLUE_FAIL] = IGN(GA),
            [EV_INFLIGHT_BLUE_0] = IGN(GA),
            [EV_INFLIGHT_BLUE_5] = IGN(GA),
            [EV_INFLIGHT_GREEN_0] = IGN(GA),
            [EV_DRAIN_CANCELLED_BLUE] = IGN(GA),
            [EV_TICK] = IGN(GA),
            [EV_TICK_DEADLINE] = TO(ST, TIMEOUT),
        },
    [SW_SWITCH_RECHECKING] =
        {
            [EV_REQUEST_GREEN] = REFUSE(RE, IN_PROGRESS),
            [EV_REQUEST_BLUE] = REFUSE(RE, IN_PROGRESS),
            [EV_REQUEST_NO_SERVERS] = REFUSE(RE, IN_PROGRESS),
            [EV_REQUEST_INVALID] = REFUSE(RE, INVALID),
            [EV_ABORT] = {ST, SW_SWITCH_R_NONE, PERSIST, SW_SWITCH_R_OPERATOR},
            [EV_HEALTH_GREEN_PASS] = IGN(RE),
            [EV_HEALTH_GREEN_STALE_PASS] = IGN(RE),
            [EV_HEALTH_GREEN_FAIL] = TO(ST, PROBE_FAILED),
            [EV_HEALTH_BLUE_PASS] = IGN(RE),
            [EV_HEALTH_BLUE_FAIL] = IGN(RE),
            [EV_COLOUR_BLUE_UP] = IGN(RE),
            [EV_COLOUR_BLUE_DOWN] = TO(ST, LIVE_UNHEALTHY),
            [EV_COLOUR_GREEN_UP] = IGN(RE),
            [EV_COLOUR_GREEN_DOWN] = IGN(RE),
            [EV_VERIFY_GREEN_PASS] = IGN(RE),
            [EV_VERIFY_GREEN_FAIL] = TO(ST, VERIFY_FAILED),
            [EV_VERIFY_GREEN_INCONCLUSIVE] = TO(ST, VERIFY_INCONCLUSIVE),
            [EV_VERIFY_GREEN_STALE_FAIL] = IGN(RE),
            [EV_VERIFY_BLUE_FAIL] = IGN(RE),
            [EV_INFLIGHT_BLUE_0] = IGN(RE),
            [EV_INFLIGHT_BLUE_5] = IGN(RE),
            [EV_INFLIGHT_GREEN_0] = IGN(RE),
            [EV_DRAIN_CANCELLED_BLUE] = IGN(RE),
            [EV_TICK] = IGN(RE),
            [EV_TICK_DEADLINE] = TO(ST, TIMEOUT),
        },
    [SW_SWITCH_DRAINING] =
        {
            [EV_REQUEST_GREEN] = REFUSE(DR, IN_PROGRESS),
            [EV_REQUEST_BLUE] = REFUSE(DR, IN_PROGRESS),
            [EV_REQUEST_NO_SERVERS] = REFUSE(DR, IN_PROGRESS),
            [EV_REQUEST_INVALID] = REFUSE(DR, INVALID),
            [EV_ABORT] = REFUSE(DR, NOT_GATING),
            [EV_HEALTH_GREEN_PASS] = IGN(DR),
            [EV_HEALTH_GREEN_STALE_PASS] = IGN(DR),
            [EV_HEALTH_GREEN_FAIL] = IGN(DR),
            [EV_HEALTH_BLUE_PASS] = IGN(DR),
            [EV_HEALTH_BLUE_FAIL] = IGN(DR),
            [EV_COLOUR_BLUE_UP] = IGN(DR),
            [EV_COLOUR_BLUE_DOWN] = IGN(DR),
            [EV_COLOUR_GREEN_UP] = IGN(DR),
            [EV_COLOUR_GREEN_DOWN] = IGN(DR),
            [EV_VERIFY_GREEN_PASS] = IGN(DR),
            [EV_VERIFY_GREEN_FAIL] = IGN(DR),
            [EV_VERIFY_GREEN_INCONCLUSIVE] = IGN(DR),
            [EV_VERIFY_GREEN_STALE_FAIL] = IGN(DR),
            [EV_VERIFY_BLUE_FAIL] = IGN(DR),
            [EV_INFLIGHT_BLUE_0] = TO(ST, DRAINED),
            [EV_INFLIGHT_BLUE_5] = IGN(DR),
            [EV_INFLIGHT_GREEN_0] = IGN(DR),
            [EV_DRAIN_CANCELLED_BLUE] = IGN(DR),
            [EV_TICK] = IGN(DR),
            /* The drain deadline asks for the cancellation; the phase ends
             * when the count comes back. */
            [EV_TICK_DEADLINE] = {DR, -1, SW_SWITCH_ACT_CANCEL_DRAIN,
                                  SW_SWITCH_R_NONE},
        },
};

static void test_matrix(void) {
  for (int ph = 0; ph < 4; ph++) {
    for (int ev = 0; ev < EV_COUNT; ev++) {
      const want_t *w = &matrix[ph][ev];
      sw_switch_t s;
      sw_switch_actions_t a;
      uint64_t now = setup(&s, (sw_switch_phase_t)ph) + 100;
      uint64_t version = s.version;
      sw_colour_t live = s.live;
      size_t nhistory = s.nhistory;
      int ret, ok = 1;

      CHECK_PHASE(&s, (sw_switch_phase_t)ph);
      ret = apply(&s, (ev_t)ev, now, &a);
      ok &= SW_CHECK_STR_EQ(sw_switch_phase_name(s.phase),
                            sw_switch_phase_name(w->phase));
      ok &= SW_CHECK_INT_EQ(ret, w->ret);
      ok &= SW_CHECK_UINT_EQ(a.flags, w->flags);
      /* No cell of the matrix flips: the flip needs two fresh passes. */
      ok &= SW_CHECK_INT_EQ(s.live, live);
      if (w->reason == SW_SWITCH_R_NONE) {
        ok &= SW_CHECK_UINT_EQ(a.nevents, 0);
        ok &= SW_CHECK_UINT_EQ(s.version, version);
        ok &= SW_CHECK_UINT_EQ(s.nhistory, nhistory);
      } else {
        ok &= SW_CHECK_UINT_EQ(a.nevents, 1);
        ok &= SW_CHECK_UINT_EQ(s.version, version + 1);
        if (a.nevents == 1) {
          ok &= SW_CHECK_INT_EQ(a.events[0].from, ph);
          ok &= SW_CHECK_INT_EQ(a.events[0].to, w->phase);
          ok &= SW_CHECK_STR_EQ(sw_switch_reason_name(a.events[0].reason),
                                sw_switch_reason_name(w->reason));
          ok &= SW_CHECK_UINT_EQ(a.events[0].version, s.version);
          ok &= SW_CHECK_UINT_EQ(a.events[0].at,
                                 ev == EV_TICK_DEADLINE ? FAR : now);
        }
        if (s.phase == SW_SWITCH_STEADY && ph != SW_SWITCH_DRAINING) {
          /* A gate that ended: the result says why, the gate is cleared. */
          ok &= SW_CHECK_INT_EQ(s.last_gate.reason, w->reason);
          ok &= SW_CHECK_INT_EQ(s.gate.passes, 0);
          ok &= SW_CHECK_UINT_EQ(sw_switch_next_deadline(&s), 0);
        }
      }
      if (!ok)
        printf("  in phase %s, event '%s'\n",
               sw_switch_phase_name((sw_switch_phase_t)ph), ev_names[ev]);
    }
  }
}

/* ---- the rules, one at a time ---- */

static void test_names(void) {
  static const char *const phases[] = {"steady",
                                       "gating",
                                       "rechecking",
                                       "draining",
                                       "watching",
                                       "committed_manual",
                                       "final",
                                       "rolled_back",
                                       "rollback_blocked",
                                       "migrating",
                                       "rollback_migrating"};
  /* In enum order: refusals, the cutover, the ends of a gate, the watch. */
  static const char *const reasons[] = {"none",
                                        "invalid",
                                        "already_live",
                                        "in_progress",
                                        "no_servers",
                                        "not_gating",
                                        "watching",
                                        "not_watching",
                                        "needs_confirm",
                                        "needs_force",
                                        "already_rolled_back",
                                        "not_ready",
                                        "requested",
                                        "gate_passed",
                                        "flipped",
                                        "drained",
                                        "drain_timeout",
                                        "operator",
                                        "timeout",
                                        "recheck_timeout",
                                        "verify_failed",
                                        "verify_inconclusive",
                                        "live_unhealthy",
                                        "probe_failed",
                                        "restart",
                                        "config",
                                        "auto_window_end",
                                        "manual_window_end",
                                        "committed",
                                        "rollback",
                                        "rollback_blocked",
                                        "not_migrating",
                                        "migrated",
                                        "migration_failed",
                                        "hold_expired",
                                        "rollback_migrate"};
  sw_switch_phase_t p;

  SW_CHECK_UINT_EQ(sizeof(phases) / sizeof(phases[0]), SW_SWITCH_PHASES);
  SW_CHECK_UINT_EQ(sizeof(reasons) / sizeof(reasons[0]), SW_SWITCH_REASONS);
  for (int i = 0; i < SW_SWITCH_PHASES; i++) {
    SW_CHECK_STR_EQ(sw_switch_phase_name((sw_switch_phase_t)i), phases[i]);
    p = SW_SWITCH_STEADY;
    SW_CHECK_INT_EQ(sw_switch_phase_parse(phases[i], &p), 0);
    SW_CHECK_INT_EQ(p, i);
  }
  for (int i = 0; i < SW_SWITCH_REASONS; i++)
    SW_CHECK_STR_EQ(sw_switch_reason_name((sw_switch_reason_t)i), reasons[i]);
  SW_CHECK_STR_EQ(sw_switch_phase_name((sw_switch_phase_t)99), "unknown");
  SW_CHECK_STR_EQ(sw_switch_reason_name((sw_switch_reason_t)99), "unknown");
  p = SW_SWITCH_GATING;
  SW_CHECK_INT_EQ(sw_switch_phase_parse("Steady", &p), SW_EPARSE);
  SW_CHECK_INT_EQ(sw_switch_phase_parse("aborted", &p), SW_EPARSE);
  SW_CHECK_INT_EQ(sw_switch_phase_parse("", &p), SW_EPARSE);
  SW_CHECK_INT_EQ(sw_switch_phase_parse(NULL, &p), SW_EPARSE);
  SW_CHECK_INT_EQ(p, SW_SWITCH_GATING); /* untouched on failure */

  SW_CHECK_STR_EQ(sw_switch_outcome_name(SW_SWITCH_OUTCOME_NONE), "none");
  SW_CHECK_STR_EQ(sw_switch_outcome_name(SW_SWITCH_OUTCOME_PASSED), "passed");
  SW_CHECK_STR_EQ(sw_switch_outcome_name(SW_SWITCH_OUTCOME_FAILED), "failed");
  SW_CHECK_STR_EQ(sw_switch_outcome_name(SW_SWITCH_OUTCOME_INCONCLUSIVE),
                  "inconclusive");
  SW_CHECK_STR_EQ(sw_switch_outcome_name((sw_switch_outcome_t)9), "unknown");
  SW_CHECK_STR_EQ(sw_switch_health_name(SW_SWITCH_HEALTH_UNKNOWN), "unknown");
  SW_CHECK_STR_EQ(sw_switch_health_name(SW_SWITCH_HEALTH_UP), "healthy");
  SW_CHECK_STR_EQ(sw_switch_health_name(SW_SWITCH_HEALTH_DOWN), "unhealthy");
  SW_CHECK_STR_EQ(sw_switch_rollback_mode_name(SW_SWITCH_ROLLBACK_AUTO),
                  "auto");
  SW_CHECK_STR_EQ(sw_switch_rollback_mode_name(SW_SWITCH_ROLLBACK_MANUAL),
                  "manual");
  SW_CHECK_STR_EQ(sw_switch_rollback_mode_name(SW_SWITCH_ROLLBACK_CONFIRM),
                  "confirm");
  SW_CHECK_STR_EQ(sw_switch_rollback_mode_name(SW_SWITCH_ROLLBACK_FORCE),
                  "force");
  SW_CHECK_STR_EQ(sw_switch_rollback_mode_name((sw_switch_rollback_mode_t)9),
                  "unknown");
  SW_CHECK_STR_EQ(sw_switch_action_name(SW_SWITCH_ACT_VERIFY), "verify");
  SW_CHECK_STR_EQ(sw_switch_action_name(SW_SWITCH_ACT_PROBE), "probe");
  SW_CHECK_STR_EQ(sw_switch_action_name(SW_SWITCH_ACT_FLIP), "flip");
  SW_CHECK_STR_EQ(sw_switch_action_name(SW_SWITCH_ACT_CANCEL_DRAIN),
                  "cancel_drain");
  SW_CHECK_STR_EQ(sw_switch_action_name(SW_SWITCH_ACT_PERSIST), "persist");
  SW_CHECK_STR_EQ(sw_switch_action_name(SW_SWITCH_ACT_WATCH), "watch");
  SW_CHECK_STR_EQ(sw_switch_action_name(0), "unknown");
  SW_CHECK_STR_EQ(
      sw_switch_action_name(SW_SWITCH_ACT_FLIP | SW_SWITCH_ACT_PERSIST),
      "unknown");

  /* Failed: the gate's own evidence. Inconclusive: anything else. */
  SW_CHECK_INT_EQ(sw_switch_reason_outcome(SW_SWITCH_R_FLIPPED),
                  SW_SWITCH_OUTCOME_PASSED);
  SW_CHECK_INT_EQ(sw_switch_reason_outcome(SW_SWITCH_R_VERIFY_FAILED),
                  SW_SWITCH_OUTCOME_FAILED);
  SW_CHECK_INT_EQ(sw_switch_reason_outcome(SW_SWITCH_R_LIVE_UNHEALTHY),
                  SW_SWITCH_OUTCOME_FAILED);
  SW_CHECK_INT_EQ(sw_switch_reason_outcome(SW_SWITCH_R_PROBE_FAILED),
                  SW_SWITCH_OUTCOME_FAILED);
  SW_CHECK_INT_EQ(sw_switch_reason_outcome(SW_SWITCH_R_OPERATOR),
                  SW_SWITCH_OUTCOME_INCONCLUSIVE);
  SW_CHECK_INT_EQ(sw_switch_reason_outcome(SW_SWITCH_R_TIMEOUT),
                  SW_SWITCH_OUTCOME_INCONCLUSIVE);
  SW_CHECK_INT_EQ(sw_switch_reason_outcome(SW_SWITCH_R_RECHECK_TIMEOUT),
                  SW_SWITCH_OUTCOME_INCONCLUSIVE);
  SW_CHECK_INT_EQ(sw_switch_reason_outcome(SW_SWITCH_R_VERIFY_INCONCLUSIVE),
                  SW_SWITCH_OUTCOME_INCONCLUSIVE);
  SW_CHECK_INT_EQ(sw_switch_reason_outcome(SW_SWITCH_R_RESTART),
                  SW_SWITCH_OUTCOME_INCONCLUSIVE);
  SW_CHECK_INT_EQ(sw_switch_reason_outcome(SW_SWITCH_R_IN_PROGRESS),
                  SW_SWITCH_OUTCOME_NONE);
  /* The watch's transitions are not ends of a gate. */
  SW_CHECK_INT_EQ(sw_switch_reason_outcome(SW_SWITCH_R_ROLLBACK),
                  SW_SWITCH_OUTCOME_NONE);
  SW_CHECK_INT_EQ(sw_switch_reason_outcome(SW_SWITCH_R_AUTO_WINDOW_END),
                  SW_SWITCH_OUTCOME_NONE);
}

static void test_init(void) {
  sw_switch_params_t p;
  sw_switch_t s;
  sw_switch_persisted_t st;

  sw_switch_params_default(&p);
  SW_CHECK_UINT_EQ(p.rise[SW_BLUE], 3);
  SW_CHECK_UINT_EQ(p.rise[SW_GREEN], 3);
  SW_CHECK_UINT_EQ(p.gate_timeout_ms, 600000);
  SW_CHECK_UINT_EQ(p.recheck_timeout_ms, 2000);
  SW_CHECK_UINT_EQ(p.drain_timeout_ms, 30000);
  SW_CHECK_UINT_EQ(p.history, SW_SWITCH_DEFAULT_HISTORY);
  /* The error watch is on by default: 5 min auto, 30 min manual. */
  SW_CHECK_INT_EQ(p.watch, 1);
  SW_CHECK_UINT_EQ(p.auto_window_ms, 300000);
  SW_CHECK_UINT_EQ(p.manual_window_ms, 1800000);

  sw_switch_init(&s, SW_GREEN, NULL);
  CHECK_PHASE(&s, SW_SWITCH_STEADY);
  SW_CHECK_INT_EQ(s.live, SW_GREEN);
  SW_CHECK_UINT_EQ(sw_switch_version(&s), 1);
  SW_CHECK_UINT_EQ(s.flip_at, 0);
  SW_CHECK_UINT_EQ(s.params.gate_timeout_ms, 600000);
  SW_CHECK_INT_EQ(s.health[SW_BLUE], SW_SWITCH_HEALTH_UNKNOWN);
  SW_CHECK_INT_EQ(s.health[SW_GREEN], SW_SWITCH_HEALTH_UNKNOWN);
  SW_CHECK_INT_EQ(s.last_gate.outcome, SW_SWITCH_OUTCOME_NONE);
  SW_CHECK_INT_EQ(s.last_drain.valid, 0);
  SW_CHECK_UINT_EQ(sw_switch_history_count(&s), 0);
  SW_CHECK(sw_switch_history_at(&s, 0) == NULL);
  SW_CHECK_UINT_EQ(sw_switch_next_deadline(&s), 0);

  sw_switch_snapshot(&s, &st);
  SW_CHECK_INT_EQ(st.live, SW_GREEN);
  SW_CHECK_INT_EQ(st.phase, SW_SWITCH_STEADY);
  SW_CHECK_UINT_EQ(st.flip_at, 0);
  SW_CHECK_UINT_EQ(st.version, 1);
  SW_CHECK_UINT_EQ(st.auto_window_ms, 0);
  SW_CHECK_UINT_EQ(st.manual_window_ms, 0);
  SW_CHECK_INT_EQ(s.last_rollback.valid, 0);
  SW_CHECK_UINT_EQ(s.rollbacks, 0);
  SW_CHECK_UINT_EQ(s.rollbacks_blocked, 0);

  /* The ring is bounded whatever the caller asks for. */
  p.history = 100000;
  sw_switch_init(&s, SW_BLUE, &p);
  SW_CHECK_UINT_EQ(s.params.history, SW_SWITCH_HISTORY_MAX);
}

/* The whole story, action by action. */
static void test_full_cutover(void) {
  sw_switch_t s;
  sw_switch_actions_t a;
  sw_switch_persisted_t st;
  const sw_switch_event_t *ev;
  uint64_t now;

  setup(&s, SW_SWITCH_STEADY);
  SW_CHECK_UINT_EQ(s.version, 1);

  /* The request: gating, a deadline, and a verification to start. */
  now = T_REQ;
  SW_CHECK_INT_EQ(sw_switch_request(&s, now, SW_GREEN, 2, "uid 1000", &a),
                  SW_SWITCH_R_NONE);
  CHECK_TRANSITION(&s, &a, SW_SWITCH_STEADY, SW_SWITCH_GATING,
                   SW_SWITCH_R_REQUESTED);
  SW_CHECK_UINT_EQ(a.flags, SW_SWITCH_ACT_VERIFY | SW_SWITCH_ACT_PERSIST);
  SW_CHECK_INT_EQ(a.verify, SW_GREEN);
  SW_CHECK_INT_EQ(a.events[0].target, SW_GREEN);
  SW_CHECK_INT_EQ(a.events[0].live, SW_BLUE);
  SW_CHECK_STR_EQ(a.events[0].text,
                  "cutover to green requested by uid 1000 (rise 3, gate "
                  "timeout 60000 ms)");
  SW_CHECK_UINT_EQ(s.version, 2);
  SW_CHECK_UINT_EQ(s.gate.requested_at, T_REQ);
  SW_CHECK_UINT_EQ(s.gate.deadline, T_REQ + GATE_MS);
  SW_CHECK_UINT_EQ(s.gate.passes, 0);
  SW_CHECK_UINT_EQ(s.gate.rise, 3);
  SW_CHECK_STR_EQ(s.gate.who, "uid 1000");
  SW_CHECK_UINT_EQ(sw_switch_next_deadline(&s), T_REQ + GATE_MS);

  /* Three passes and a verification: nothing until the last arrives. */
  passes(&s, &now, SW_GREEN, 2, &a);
  SW_CHECK_UINT_EQ(s.gate.passes, 2);
  SW_CHECK_UINT_EQ(a.flags, 0);
  now += 100;
  sw_switch_on_verify(&s, now, SW_GREEN, SW_SWITCH_VERIFY_PASS, T_REQ, "", &a);
  SW_CHECK_INT_EQ(s.gate.verified, 1);
  SW_CHECK_UINT_EQ(a.flags, 0);
  CHECK_PHASE(&s, SW_SWITCH_GATING);
  passes(&s, &now, SW_GREEN, 1, &a); /* 2400 */
  CHECK_TRANSITION(&s, &a, SW_SWITCH_GATING, SW_SWITCH_RECHECKING,
                   SW_SWITCH_R_GATE_PASSED);
  SW_CHECK_UINT_EQ(a.flags, SW_SWITCH_ACT_PROBE | SW_SWITCH_ACT_VERIFY |
                                SW_SWITCH_ACT_PERSIST);
  SW_CHECK_INT_EQ(a.probe, SW_GREEN);
  SW_CHECK_INT_EQ(a.verify, SW_GREEN);
  SW_CHECK_STR_EQ(a.events[0].text,
                  "green passed 3 health checks in a row and verification; "
                  "live blue healthy; re-checking");
  SW_CHECK_UINT_EQ(s.version, 3);
  SW_CHECK_UINT_EQ(s.gate.recheck_at, 2400);
  SW_CHECK_UINT_EQ(s.gate.recheck_deadline, 2400 + RECHECK_MS);
  SW_CHECK_UINT_EQ(sw_switch_next_deadline(&s), 2400 + RECHECK_MS);
  SW_CHECK_INT_EQ(s.live, SW_BLUE);

  /* The re-check: the verification first, then the probe flips. */
  sw_switch_on_verify(&s, 2450, SW_GREEN, SW_SWITCH_VERIFY_PASS, 2400, "", &a);
  SW_CHECK_UINT_EQ(a.flags, 0);
  SW_CHECK_INT_EQ(s.gate.recheck_verified, 1);
  sw_switch_on_health(&s, 2500, SW_GREEN, 1, 2400, "", &a);
  CHECK_TRANSITION(&s, &a, SW_SWITCH_RECHECKING, SW_SWITCH_DRAINING,
                   SW_SWITCH_R_FLIPPED);
  SW_CHECK_UINT_EQ(a.flags, SW_SWITCH_ACT_FLIP | SW_SWITCH_ACT_PERSIST);
  SW_CHECK_INT_EQ(a.flip_to, SW_GREEN);
  SW_CHECK_INT_EQ(a.events[0].live, SW_GREEN);
  SW_CHECK_STR_EQ(a.events[0].text,
                  "live blue -> green; draining blue (up to 30000 ms)");
  SW_CHECK_INT_EQ(s.live, SW_GREEN);
  SW_CHECK_UINT_EQ(s.version, 4);
  SW_CHECK_UINT_EQ(s.flip_at, 2500);
  SW_CHECK_UINT_EQ(s.flips, 1);
  SW_CHECK_INT_EQ(s.last_gate.outcome, SW_SWITCH_OUTCOME_PASSED);
  SW_CHECK_INT_EQ(s.last_gate.reason, SW_SWITCH_R_FLIPPED);
  SW_CHECK_UINT_EQ(s.gates[SW_SWITCH_OUTCOME_PASSED], 1);
  SW_CHECK_INT_EQ(s.drain.active, 1);
  SW_CHECK_INT_EQ(s.drain.colour, SW_BLUE);
  SW_CHECK_UINT_EQ(s.drain.deadline, 2500 + DRAIN_MS);
  SW_CHECK_INT_EQ(s.drain.inflight_known, 0);
  SW_CHECK_UINT_EQ(sw_switch_next_deadline(&s), 2500 + DRAIN_MS);
  sw_switch_snapshot(&s, &st);
  SW_CHECK_INT_EQ(st.live, SW_GREEN);
  SW_CHECK_INT_EQ(st.phase, SW_SWITCH_DRAINING);
  SW_CHECK_UINT_EQ(st.flip_at, 2500);
  SW_CHECK_UINT_EQ(st.version, 4);

  /* The drain's progress is visible, then it completes. */
  sw_switch_on_inflight(&s, 2500, SW_BLUE, 3, &a);
  SW_CHECK_UINT_EQ(a.flags, 0);
  SW_CHECK_UINT_EQ(s.drain.inflight, 3);
  SW_CHECK_INT_EQ(s.drain.inflight_known, 1);
  sw_switch_on_inflight(&s, 3000, SW_BLUE, 1, &a);
  SW_CHECK_UINT_EQ(s.drain.inflight, 1);
  sw_switch_on_inflight(&s, 3000, SW_GREEN, 0, &a); /* the new colour */
  CHECK_PHASE(&s, SW_SWITCH_DRAINING);
  sw_switch_on_inflight(&s, 4000, SW_BLUE, 0, &a);
  CHECK_TRANSITION(&s, &a, SW_SWITCH_DRAINING, SW_SWITCH_STEADY,
                   SW_SWITCH_R_DRAINED);
  SW_CHECK_STR_EQ(a.events[0].text, "blue drained in 1500 ms");
  SW_CHECK_UINT_EQ(a.flags, SW_SWITCH_ACT_PERSIST);
  SW_CHECK_INT_EQ(s.live, SW_GREEN);
  SW_CHECK_UINT_EQ(s.version, 5);
  SW_CHECK_INT_EQ(s.drain.active, 0);
  SW_CHECK_INT_EQ(s.last_drain.valid, 1);
  SW_CHECK_INT_EQ(s.last_drain.colour, SW_BLUE);
  SW_CHECK_INT_EQ(s.last_drain.reason, SW_SWITCH_R_DRAINED);
  SW_CHECK_UINT_EQ(s.last_drain.started_at, 2500);
  SW_CHECK_UINT_EQ(s.last_drain.ended_at, 4000);
  SW_CHECK_UINT_EQ(s.last_drain.cancelled, 0);
  SW_CHECK_UINT_EQ(sw_switch_next_deadline(&s), 0);

  /* Four transitions in the ring, oldest first. */
  SW_CHECK_UINT_EQ(sw_switch_history_count(&s), 4);
  ev = sw_switch_history_at(&s, 0);
  if (SW_CHECK(ev != NULL)) {
    SW_CHECK_INT_EQ(ev->reason, SW_SWITCH_R_REQUESTED);
    SW_CHECK_UINT_EQ(ev->at, T_REQ);
    SW_CHECK_UINT_EQ(ev->version, 2);
  }
  ev = sw_switch_history_at(&s, 3);
  if (SW_CHECK(ev != NULL)) {
    SW_CHECK_INT_EQ(ev->reason, SW_SWITCH_R_DRAINED);
    SW_CHECK_INT_EQ(ev->from, SW_SWITCH_DRAINING);
    SW_CHECK_INT_EQ(ev->to, SW_SWITCH_STEADY);
    SW_CHECK_UINT_EQ(ev->version, 5);
  }
  SW_CHECK(sw_switch_history_at(&s, 4) == NULL);

  /* And back: green is live, blue is the target, with blue's rise. */
  s.params.rise[SW_BLUE] = 1;
  SW_CHECK_INT_EQ(sw_switch_request(&s, 5000, SW_GREEN, 2, NULL, &a),
                  SW_SWITCH_R_ALREADY_LIVE);
  SW_CHECK_INT_EQ(sw_switch_request(&s, 5000, SW_BLUE, 1, NULL, &a),
                  SW_SWITCH_R_NONE);
  SW_CHECK_INT_EQ(a.verify, SW_BLUE);
  SW_CHECK_STR_CONTAINS(a.events[0].text, "requested by operator (rise 1,");
  sw_switch_on_verify(&s, 5100, SW_BLUE, SW_SWITCH_VERIFY_PASS, 5000, "", &a);
  sw_switch_on_health(&s, 5200, SW_BLUE, 1, 5100, "", &a);
  CHECK_PHASE(&s, SW_SWITCH_RECHECKING);
  SW_CHECK_INT_EQ(a.probe, SW_BLUE);
  sw_switch_on_health(&s, 5300, SW_BLUE, 1, 5200, "", &a);
  sw_switch_on_verify(&s, 5300, SW_BLUE, SW_SWITCH_VERIFY_PASS, 5200, "", &a);
  SW_CHECK_UINT_EQ(a.flags, SW_SWITCH_ACT_FLIP | SW_SWITCH_ACT_PERSIST);
  SW_CHECK_INT_EQ(a.flip_to, SW_BLUE);
  SW_CHECK_INT_EQ(s.live, SW_BLUE);
  SW_CHECK_INT_EQ(s.drain.colour, SW_GREEN);
  SW_CHECK_UINT_EQ(s.flips, 2);
}

/* Only passes that started after the request count. */
static void test_stale_pass_never_counts(void) {
  sw_switch_t s;
  sw_switch_actions_t a;

  setup(&s, SW_SWITCH_GATING);
  sw_switch_on_verify(&s, 2050, SW_GREEN, SW_SWITCH_VERIFY_PASS, T_REQ, "", &a);
  /* Checks that started before the request finish after it: not counted. */
  for (int i = 1; i <= 5; i++)
    sw_switch_on_health(&s, T_REQ + (uint64_t)i, SW_GREEN, 1, T_REQ - 1, "",
                        &a);
  SW_CHECK_UINT_EQ(s.gate.passes, 0);
  CHECK_PHASE(&s, SW_SWITCH_GATING);
  /* One that started in the request's own ms (the same loop turn) counts. */
  sw_switch_on_health(&s, 2100, SW_GREEN, 1, T_REQ, "", &a);
  SW_CHECK_UINT_EQ(s.gate.passes, 1);
  sw_switch_on_health(&s, 2200, SW_GREEN, 1, 2150, "", &a);
  SW_CHECK_UINT_EQ(s.gate.passes, 2);
  CHECK_PHASE(&s, SW_SWITCH_GATING);
  sw_switch_on_health(&s, 2300, SW_GREEN, 1, 2250, "", &a);
  CHECK_TRANSITION(&s, &a, SW_SWITCH_GATING, SW_SWITCH_RECHECKING,
                   SW_SWITCH_R_GATE_PASSED);

  /* A verification from before the request does not count either. */
  setup(&s, SW_SWITCH_GATING);
  sw_switch_on_verify(&s, 2050, SW_GREEN, SW_SWITCH_VERIFY_PASS, T_REQ - 1, "",
                      &a);
  SW_CHECK_INT_EQ(s.gate.verified, 0);
  for (int i = 1; i <= 3; i++)
    sw_switch_on_health(&s, 2100 + (uint64_t)i, SW_GREEN, 1, 2100, "", &a);
  SW_CHECK_UINT_EQ(s.gate.passes, 3);
  CHECK_PHASE(&s, SW_SWITCH_GATING);
  sw_switch_on_verify(&s, 2300, SW_GREEN, SW_SWITCH_VERIFY_PASS, 2200, "", &a);
  CHECK_PHASE(&s, SW_SWITCH_RECHECKING);

  /* A verification of the other colour does not stand in for the target. */
  setup(&s, SW_SWITCH_GATING);
  sw_switch_on_verify(&s, 2050, SW_BLUE, SW_SWITCH_VERIFY_PASS, T_REQ, "", &a);
  SW_CHECK_INT_EQ(s.gate.verified, 0);
  /* Nor do the other colour's health passes. */
  for (int i = 1; i <= 3; i++)
    sw_switch_on_health(&s, 2100 + (uint64_t)i, SW_BLUE, 1, 2100, "", &a);
  SW_CHECK_UINT_EQ(s.gate.passes, 0);
}

/* A failing check resets the count; it does not end the gate. */
static void test_fail_resets_count(void) {
  sw_switch_t s;
  sw_switch_actions_t a;
  uint64_t now = T_REQ;

  setup(&s, SW_SWITCH_GATING);
  sw_switch_on_verify(&s, 2010, SW_GREEN, SW_SWITCH_VERIFY_PASS, T_REQ, "", &a);
  passes(&s, &now, SW_GREEN, 2, &a);
  SW_CHECK_UINT_EQ(s.gate.passes, 2);
  sw_switch_on_health(&s, 2300, SW_GREEN, 0, 2250,
                      "HTTP 503 from 10.0.0.2:8000", &a);
  SW_CHECK_UINT_EQ(s.gate.passes, 0);
  SW_CHECK_UINT_EQ(a.flags, 0);
  CHECK_PHASE(&s, SW_SWITCH_GATING);
  SW_CHECK_STR_EQ(s.gate.last_failure, "HTTP 503 from 10.0.0.2:8000");
  /* Even a failure that started before the request resets: caution only
   * delays. */
  now = 2300;
  passes(&s, &now, SW_GREEN, 2, &a);
  sw_switch_on_health(&s, 2600, SW_GREEN, 0, T_REQ - 100, NULL, &a);
  SW_CHECK_UINT_EQ(s.gate.passes, 0);
  SW_CHECK_STR_EQ(s.gate.last_failure, "failed");
  now = 2600;
  passes(&s, &now, SW_GREEN, 2, &a);
  CHECK_PHASE(&s, SW_SWITCH_GATING);
  passes(&s, &now, SW_GREEN, 1, &a);
  CHECK_PHASE(&s, SW_SWITCH_RECHECKING);

  /* The deadline message names what was missing and the last failure. */
  setup(&s, SW_SWITCH_GATING);
  now = T_REQ;
  passes(&s, &now, SW_GREEN, 1, &a);
  sw_switch_on_health(&s, 2200, SW_GREEN, 0, 2150, "connect refused", &a);
  now = 2200;
  passes(&s, &now, SW_GREEN, 1, &a);
  sw_switch_tick(&s, T_REQ + GATE_MS, &a);
  CHECK_TRANSITION(&s, &a, SW_SWITCH_GATING, SW_SWITCH_STEADY,
                   SW_SWITCH_R_TIMEOUT);
  SW_CHECK_STR_EQ(s.last_gate.message,
                  "gate deadline reached after 60000 ms: green had 1 of 3 "
                  "health passes (last failure: connect refused), "
                  "verification pending, live blue healthy");
  SW_CHECK_INT_EQ(s.last_gate.outcome, SW_SWITCH_OUTCOME_INCONCLUSIVE);
  SW_CHECK_INT_EQ(s.last_gate.target, SW_GREEN);
  SW_CHECK_UINT_EQ(s.last_gate.at, T_REQ + GATE_MS);
  SW_CHECK_UINT_EQ(s.gates[SW_SWITCH_OUTCOME_INCONCLUSIVE], 1);
  SW_CHECK_INT_EQ(s.live, SW_BLUE);
}

/* The gate needs all three: rise, verification, a healthy live colour. */
static void test_gate_needs_all_three(void) {
  sw_switch_params_t p = test_params();
  sw_switch_t s;
  sw_switch_actions_t a;
  uint64_t now = T_REQ;

  /* The live colour's health not known yet: the gate waits for it. */
  sw_switch_init(&s, SW_BLUE, &p);
  SW_CHECK_INT_EQ(sw_switch_request(&s, T_REQ, SW_GREEN, 1, "t", &a),
                  SW_SWITCH_R_NONE);
  CHECK_PHASE(&s, SW_SWITCH_GATING);
  passes(&s, &now, SW_GREEN, 5, &a);
  sw_switch_on_verify(&s, 2600, SW_GREEN, SW_SWITCH_VERIFY_PASS, T_REQ, "", &a);
  CHECK_PHASE(&s, SW_SWITCH_GATING);
  /* Green's own colour-level state does not stand in for blue's. */
  sw_switch_on_colour_health(&s, 2700, SW_GREEN, 1, "", &a);
  CHECK_PHASE(&s, SW_SWITCH_GATING);
  sw_switch_on_colour_health(&s, 2800, SW_BLUE, 1, "", &a);
  CHECK_TRANSITION(&s, &a, SW_SWITCH_GATING, SW_SWITCH_RECHECKING,
                   SW_SWITCH_R_GATE_PASSED);
  SW_CHECK_STR_CONTAINS(a.events[0].text, "passed 5 health checks");

  /* Verification last. */
  setup(&s, SW_SWITCH_GATING);
  now = T_REQ;
  passes(&s, &now, SW_GREEN, 3, &a);
  CHECK_PHASE(&s, SW_SWITCH_GATING);
  sw_switch_on_verify(&s, 2400, SW_GREEN, SW_SWITCH_VERIFY_PASS, 2000, "", &a);
  CHECK_PHASE(&s, SW_SWITCH_RECHECKING);

  /* Timeout with verification passed but rise not reached: the deadline
   * text says so; the live colour unknown shows as such. */
  sw_switch_init(&s, SW_BLUE, &p);
  sw_switch_request(&s, T_REQ, SW_GREEN, 1, "t", &a);
  sw_switch_on_verify(&s, 2100, SW_GREEN, SW_SWITCH_VERIFY_PASS, T_REQ, "", &a);
  sw_switch_tick(&s, T_REQ + GATE_MS + 5, &a);
  SW_CHECK_STR_EQ(s.last_gate.message,
                  "gate deadline reached after 60005 ms: green had 0 of 3 "
                  "health passes, verification passed, live blue unknown");
}

/* A timer never turns a gate into a pass; inconclusive is never a pass. */
static void test_no_pass_by_timer(void) {
  sw_switch_t s;
  sw_switch_actions_t a;
  uint64_t now = T_REQ;

  /* The deadline is exact: one ms before it nothing happens. */
  setup(&s, SW_SWITCH_GATING);
  sw_switch_tick(&s, T_REQ + GATE_MS - 1, &a);
  SW_CHECK_UINT_EQ(a.flags, 0);
  CHECK_PHASE(&s, SW_SWITCH_GATING);
  sw_switch_tick(&s, T_REQ + GATE_MS, &a);
  CHECK_TRANSITION(&s, &a, SW_SWITCH_GATING, SW_SWITCH_STEADY,
                   SW_SWITCH_R_TIMEOUT);
  SW_CHECK_INT_EQ(a.flags & SW_SWITCH_ACT_FLIP, 0);

  /* The last piece of evidence arrives at the deadline, before the tick
   * does: the gate has timed out, the evidence is too late. */
  setup(&s, SW_SWITCH_GATING);
  passes(&s, &now, SW_GREEN, 3, &a);
  sw_switch_on_verify(&s, T_REQ + GATE_MS, SW_GREEN, SW_SWITCH_VERIFY_PASS,
                      T_REQ + 10, "", &a);
  CHECK_TRANSITION(&s, &a, SW_SWITCH_GATING, SW_SWITCH_STEADY,
                   SW_SWITCH_R_TIMEOUT);
  SW_CHECK_INT_EQ(s.live, SW_BLUE);
  SW_CHECK_INT_EQ(s.last_gate.outcome, SW_SWITCH_OUTCOME_INCONCLUSIVE);
  /* And evidence after the gate ended does nothing. */
  sw_switch_on_health(&s, T_REQ + GATE_MS + 1, SW_GREEN, 1, T_REQ + GATE_MS, "",
                      &a);
  sw_switch_on_verify(&s, T_REQ + GATE_MS + 1, SW_GREEN, SW_SWITCH_VERIFY_PASS,
                      T_REQ + GATE_MS, "", &a);
  SW_CHECK_UINT_EQ(a.flags, 0);
  CHECK_PHASE(&s, SW_SWITCH_STEADY);

  /* Inconclusive ends the gate with the libpq error, even when every other
   * condition holds. */
  setup(&s, SW_SWITCH_GATING);
  now = T_REQ;
  passes(&s, &now, SW_GREEN, 3, &a);
  sw_switch_on_verify(&s, 2400, SW_GREEN, SW_SWITCH_VERIFY_INCONCLUSIVE, 2000,
                      "could not connect to server: Connection refused\n"
                      "\tIs the server running on host \"db\"?\n",
                      &a);
  CHECK_TRANSITION(&s, &a, SW_SWITCH_GATING, SW_SWITCH_STEADY,
                   SW_SWITCH_R_VERIFY_INCONCLUSIVE);
  SW_CHECK_STR_EQ(s.last_gate.message,
                  "green verification inconclusive: could not connect to "
                  "server: Connection refused  Is the server running on host "
                  "\"db\"?");
  SW_CHECK_INT_EQ(s.last_gate.outcome, SW_SWITCH_OUTCOME_INCONCLUSIVE);
  SW_CHECK_INT_EQ(s.live, SW_BLUE);

  /* A verdict the verifier should never send is inconclusive too. */
  setup(&s, SW_SWITCH_GATING);
  sw_switch_on_verify(&s, 2100, SW_GREEN, (sw_switch_verify_t)42, 2000, NULL,
                      &a);
  CHECK_TRANSITION(&s, &a, SW_SWITCH_GATING, SW_SWITCH_STEADY,
                   SW_SWITCH_R_VERIFY_INCONCLUSIVE);
  SW_CHECK_STR_EQ(s.last_gate.message,
                  "green verification inconclusive: no detail given");
}

static void test_verify_fail(void) {
  sw_switch_t s;
  sw_switch_actions_t a;

  setup(&s, SW_SWITCH_GATING);
  sw_switch_on_verify(&s, 2100, SW_GREEN, SW_SWITCH_VERIFY_FAIL, 2000,
                      "missing migrations: shop.0042_rename, "
                      "auth.0013_alter; missing column shop_order.total",
                      &a);
  CHECK_TRANSITION(&s, &a, SW_SWITCH_GATING, SW_SWITCH_STEADY,
                   SW_SWITCH_R_VERIFY_FAILED);
  SW_CHECK_STR_EQ(s.last_gate.message,
                  "green verification failed: missing migrations: "
                  "shop.0042_rename, auth.0013_alter; missing column "
                  "shop_order.total");
  SW_CHECK_INT_EQ(s.last_gate.outcome, SW_SWITCH_OUTCOME_FAILED);
  SW_CHECK_INT_EQ(s.last_gate.reason, SW_SWITCH_R_VERIFY_FAILED);
  SW_CHECK_UINT_EQ(s.gates[SW_SWITCH_OUTCOME_FAILED], 1);
  SW_CHECK_INT_EQ(s.live, SW_BLUE);
  SW_CHECK_UINT_EQ(s.version, 3);
  SW_CHECK_UINT_EQ(sw_switch_next_deadline(&s), 0);
  /* The record's text is the message, cut to what a record keeps. */
  SW_CHECK_STR_CONTAINS(a.events[0].text, "shop.0042_rename");

  /* A new request after a failed gate starts from nothing. */
  SW_CHECK_INT_EQ(sw_switch_request(&s, 3000, SW_GREEN, 2, "t", &a),
                  SW_SWITCH_R_NONE);
  SW_CHECK_UINT_EQ(s.gate.passes, 0);
  SW_CHECK_INT_EQ(s.gate.verified, 0);
  SW_CHECK_UINT_EQ(s.gate.requested_at, 3000);
}

/* The live colour unhealthy ends the gate with its own reason. */
static void test_live_unhealthy(void) {
  sw_switch_t s;
  sw_switch_actions_t a;

  setup(&s, SW_SWITCH_GATING);
  sw_switch_on_colour_health(&s, 2100, SW_BLUE, 0, "0 of 2 servers up", &a);
  CHECK_TRANSITION(&s, &a, SW_SWITCH_GATING, SW_SWITCH_STEADY,
                   SW_SWITCH_R_LIVE_UNHEALTHY);
  SW_CHECK_STR_EQ(s.last_gate.message,
                  "live blue became unhealthy: 0 of 2 servers up");
  SW_CHECK_INT_EQ(s.last_gate.outcome, SW_SWITCH_OUTCOME_FAILED);
  SW_CHECK_INT_EQ(s.health[SW_BLUE], SW_SWITCH_HEALTH_DOWN);
  SW_CHECK_STR_EQ(s.health_reason[SW_BLUE], "0 of 2 servers up");

  /* Already known down at the request: accepted, then ended in the same
   * call, two transitions. */
  SW_CHECK_INT_EQ(sw_switch_request(&s, 3000, SW_GREEN, 2, "t", &a),
                  SW_SWITCH_R_NONE);
  SW_CHECK_UINT_EQ(a.nevents, 2);
  SW_CHECK_INT_EQ(a.events[0].reason, SW_SWITCH_R_REQUESTED);
  SW_CHECK_INT_EQ(a.events[1].reason, SW_SWITCH_R_LIVE_UNHEALTHY);
  SW_CHECK_INT_EQ(a.events[1].from, SW_SWITCH_GATING);
  SW_CHECK_INT_EQ(a.events[1].to, SW_SWITCH_STEADY);
  SW_CHECK_UINT_EQ(a.events[1].version, a.events[0].version + 1);
  SW_CHECK_UINT_EQ(a.flags, SW_SWITCH_ACT_VERIFY | SW_SWITCH_ACT_PERSIST);
  SW_CHECK_STR_EQ(s.last_gate.message,
                  "live blue is unhealthy: 0 of 2 servers up");
  CHECK_PHASE(&s, SW_SWITCH_STEADY);

  /* Healthy again: the health reason is cleared and a gate can run. */
  sw_switch_on_colour_health(&s, 3100, SW_BLUE, 1, "ignored", &a);
  SW_CHECK_STR_EQ(s.health_reason[SW_BLUE], "");
  SW_CHECK_INT_EQ(sw_switch_request(&s, 3200, SW_GREEN, 2, "t", &a),
                  SW_SWITCH_R_NONE);
  CHECK_PHASE(&s, SW_SWITCH_GATING);

  /* Down without a reason. */
  sw_switch_on_colour_health(&s, 3300, SW_BLUE, 0, NULL, &a);
  SW_CHECK_STR_EQ(s.last_gate.message,
                  "live blue became unhealthy: no reason given");

  /* In rechecking, too. */
  setup(&s, SW_SWITCH_RECHECKING);
  sw_switch_on_health(&s, 2450, SW_GREEN, 1, 2400, "", &a);
  sw_switch_on_colour_health(&s, 2460, SW_BLUE, 0, "fall 3", &a);
  CHECK_TRANSITION(&s, &a, SW_SWITCH_RECHECKING, SW_SWITCH_STEADY,
                   SW_SWITCH_R_LIVE_UNHEALTHY);
  sw_switch_on_verify(&s, 2470, SW_GREEN, SW_SWITCH_VERIFY_PASS, 2400, "", &a);
  SW_CHECK_UINT_EQ(a.flags, 0);
  SW_CHECK_INT_EQ(s.live, SW_BLUE);
}

/* Refusals change nothing, and say which rule refused. */
static void test_refusals(void) {
  sw_switch_t s;
  sw_switch_actions_t a;
  uint64_t v;

  setup(&s, SW_SWITCH_STEADY);
  v = s.version;
  SW_CHECK_INT_EQ(sw_switch_request(&s, 1100, SW_BLUE, 2, "t", &a),
                  SW_SWITCH_R_ALREADY_LIVE);
  SW_CHECK_INT_EQ(sw_switch_request(&s, 1100, SW_GREEN, 0, "t", &a),
                  SW_SWITCH_R_NO_SERVERS);
  SW_CHECK_INT_EQ(sw_switch_request(&s, 1100, (sw_colour_t)-1, 2, "t", &a),
                  SW_SWITCH_R_INVALID);
  SW_CHECK_INT_EQ(sw_switch_abort(&s, 1100, "t", &a), SW_SWITCH_R_NOT_GATING);
  SW_CHECK_UINT_EQ(s.version, v);
  SW_CHECK_UINT_EQ(s.nhistory, 0);
  SW_CHECK_UINT_EQ(a.flags, 0);
  /* The target being live wins over it having no servers. */
  SW_CHECK_INT_EQ(sw_switch_request(&s, 1100, SW_BLUE, 0, "t", &a),
                  SW_SWITCH_R_ALREADY_LIVE);

  /* Two requests in a row: exactly one proceeds. */
  SW_CHECK_INT_EQ(sw_switch_request(&s, 1200, SW_GREEN, 2, "first", &a),
                  SW_SWITCH_R_NONE);
  SW_CHECK_INT_EQ(sw_switch_request(&s, 1200, SW_GREEN, 2, "second", &a),
                  SW_SWITCH_R_IN_PROGRESS);
  SW_CHECK_UINT_EQ(a.nevents, 0);
  SW_CHECK_STR_EQ(s.gate.who, "first");
  SW_CHECK_UINT_EQ(s.gate.requested_at, 1200);

  /* A request that finds a gate past its deadline: the old one ends as a
   * timeout, the new one starts. */
  SW_CHECK_INT_EQ(
      sw_switch_request(&s, 1200 + GATE_MS, SW_GREEN, 2, "third", &a),
      SW_SWITCH_R_NONE);
  SW_CHECK_UINT_EQ(a.nevents, 2);
  SW_CHECK_INT_EQ(a.events[0].reason, SW_SWITCH_R_TIMEOUT);
  SW_CHECK_INT_EQ(a.events[1].reason, SW_SWITCH_R_REQUESTED);
  SW_CHECK_STR_EQ(s.gate.who, "third");
  SW_CHECK_UINT_EQ(s.gate.deadline, 1200 + 2 * GATE_MS);
}

static void test_abort(void) {
  sw_switch_t s;
  sw_switch_actions_t a;

  setup(&s, SW_SWITCH_GATING);
  SW_CHECK_INT_EQ(sw_switch_abort(&s, 2100, "uid 1000 (pid 42)", &a),
                  SW_SWITCH_R_NONE);
  CHECK_TRANSITION(&s, &a, SW_SWITCH_GATING, SW_SWITCH_STEADY,
                   SW_SWITCH_R_OPERATOR);
  SW_CHECK_STR_EQ(s.last_gate.message,
                  "gate to green aborted by uid 1000 (pid 42) during gating");
  SW_CHECK_INT_EQ(s.last_gate.outcome, SW_SWITCH_OUTCOME_INCONCLUSIVE);
  SW_CHECK_INT_EQ(s.last_gate.reason, SW_SWITCH_R_OPERATOR);
  SW_CHECK_INT_EQ(sw_switch_abort(&s, 2200, "again", &a),
                  SW_SWITCH_R_NOT_GATING);
  SW_CHECK_UINT_EQ(a.nevents, 0);

  setup(&s, SW_SWITCH_RECHECKING);
  SW_CHECK_INT_EQ(sw_switch_abort(&s, 2500, NULL, &a), SW_SWITCH_R_NONE);
  SW_CHECK_STR_EQ(s.last_gate.message,
                  "gate to green aborted by operator during rechecking");
  SW_CHECK_INT_EQ(s.live, SW_BLUE);

  /* Past the deadline the gate ended by itself: the record says timeout,
   * and the abort finds nothing to abort. */
  setup(&s, SW_SWITCH_GATING);
  SW_CHECK_INT_EQ(sw_switch_abort(&s, T_REQ + GATE_MS, "late", &a),
                  SW_SWITCH_R_NOT_GATING);
  CHECK_TRANSITION(&s, &a, SW_SWITCH_GATING, SW_SWITCH_STEADY,
                   SW_SWITCH_R_TIMEOUT);

  /* A drain cannot be aborted: the flip is done. */
  setup(&s, SW_SWITCH_DRAINING);
  SW_CHECK_INT_EQ(sw_switch_abort(&s, 2700, "t", &a), SW_SWITCH_R_NOT_GATING);
  CHECK_PHASE(&s, SW_SWITCH_DRAINING);
  SW_CHECK_INT_EQ(s.live, SW_GREEN);
}

/* The re-check needs its own evidence, started after it began. */
static void test_recheck_freshness(void) {
  sw_switch_t s;
  sw_switch_actions_t a;

  setup(&s, SW_SWITCH_RECHECKING); /* recheck_at 2400 */
  /* Passes that started during gating are not fresh for the re-check. */
  sw_switch_on_health(&s, 2450, SW_GREEN, 1, 2399, "", &a);
  sw_switch_on_verify(&s, 2450, SW_GREEN, SW_SWITCH_VERIFY_PASS, 2399, "", &a);
  SW_CHECK_INT_EQ(s.gate.probe_ok, 0);
  SW_CHECK_INT_EQ(s.gate.recheck_verified, 0);
  SW_CHECK_UINT_EQ(a.flags, 0);
  /* Fresh ones, probe first: the verification flips. */
  sw_switch_on_health(&s, 2500, SW_GREEN, 1, 2400, "", &a);
  SW_CHECK_INT_EQ(s.gate.probe_ok, 1);
  CHECK_PHASE(&s, SW_SWITCH_RECHECKING);
  sw_switch_on_verify(&s, 2600, SW_GREEN, SW_SWITCH_VERIFY_PASS, 2400, "", &a);
  CHECK_TRANSITION(&s, &a, SW_SWITCH_RECHECKING, SW_SWITCH_DRAINING,
                   SW_SWITCH_R_FLIPPED);
  SW_CHECK_UINT_EQ(a.flags, SW_SWITCH_ACT_FLIP | SW_SWITCH_ACT_PERSIST);
  SW_CHECK_UINT_EQ(s.flip_at, 2600);

  /* A failure from during the gate, reported at the re-check, aborts. */
  setup(&s, SW_SWITCH_RECHECKING);
  sw_switch_on_verify(&s, 2450, SW_GREEN, SW_SWITCH_VERIFY_FAIL, 2100,
                      "missing column shop_order.total", &a);
  CHECK_TRANSITION(&s, &a, SW_SWITCH_RECHECKING, SW_SWITCH_STEADY,
                   SW_SWITCH_R_VERIFY_FAILED);
  /* One from before the request does not. */
  setup(&s, SW_SWITCH_RECHECKING);
  sw_switch_on_verify(&s, 2450, SW_GREEN, SW_SWITCH_VERIFY_INCONCLUSIVE,
                      T_REQ - 1, "timeout", &a);
  CHECK_PHASE(&s, SW_SWITCH_RECHECKING);
  /* Any failing check of the target aborts, with the probe's reason. */
  sw_switch_on_health(&s, 2460, SW_GREEN, 0, 2300, "HTTP 502", &a);
  CHECK_TRANSITION(&s, &a, SW_SWITCH_RECHECKING, SW_SWITCH_STEADY,
                   SW_SWITCH_R_PROBE_FAILED);
  SW_CHECK_STR_EQ(s.last_gate.message,
                  "green failed a health check at the re-check: HTTP 502");
  SW_CHECK_INT_EQ(s.last_gate.outcome, SW_SWITCH_OUTCOME_FAILED);
  SW_CHECK_INT_EQ(s.live, SW_BLUE);
  SW_CHECK_INT_EQ(s.drain.active, 0);
}

/* The re-check is bounded by its own timeout and by the gate deadline. */
static void test_recheck_timeout(void) {
  sw_switch_params_t p = test_params();
  sw_switch_t s;
  sw_switch_actions_t a;
  uint64_t now = T_REQ;

  setup(&s, SW_SWITCH_RECHECKING);
  sw_switch_on_health(&s, 2500, SW_GREEN, 1, 2400, "", &a);
  sw_switch_tick(&s, 2400 + RECHECK_MS - 1, &a);
  CHECK_PHASE(&s, SW_SWITCH_RECHECKING);
  /* The verification passes exactly at the bound: too late. */
  sw_switch_on_verify(&s, 2400 + RECHECK_MS, SW_GREEN, SW_SWITCH_VERIFY_PASS,
                      2400, "", &a);
  CHECK_TRANSITION(&s, &a, SW_SWITCH_RECHECKING, SW_SWITCH_STEADY,
                   SW_SWITCH_R_RECHECK_TIMEOUT);
  SW_CHECK_STR_EQ(s.last_gate.message,
                  "re-check of green took longer than 2000 ms: probe passed, "
                  "verification pending");
  SW_CHECK_INT_EQ(s.last_gate.outcome, SW_SWITCH_OUTCOME_INCONCLUSIVE);
  SW_CHECK_INT_EQ(s.live, SW_BLUE);

  /* Near the gate deadline, the gate deadline bounds the re-check. */
  sw_switch_init(&s, SW_BLUE, &p);
  sw_switch_on_colour_health(&s, T_INIT, SW_BLUE, 1, "", &a);
  sw_switch_request(&s, T_REQ, SW_GREEN, 1, "t", &a);
  now = T_REQ + GATE_MS - 600;
  passes(&s, &now, SW_GREEN, 3, &a);
  sw_switch_on_verify(&s, now, SW_GREEN, SW_SWITCH_VERIFY_PASS, T_REQ, "", &a);
  CHECK_PHASE(&s, SW_SWITCH_RECHECKING);
  SW_CHECK_UINT_EQ(s.gate.recheck_deadline, T_REQ + GATE_MS);
  SW_CHECK_UINT_EQ(sw_switch_next_deadline(&s), T_REQ + GATE_MS);
  sw_switch_tick(&s, T_REQ + GATE_MS, &a);
  CHECK_TRANSITION(&s, &a, SW_SWITCH_RECHECKING, SW_SWITCH_STEADY,
                   SW_SWITCH_R_TIMEOUT);
  SW_CHECK_STR_EQ(s.last_gate.message,
                  "gate deadline reached during the re-check of green: probe "
                  "pending, verification pending");

  /* A bound of 0 leaves the gate deadline alone in charge. */
  p.recheck_timeout_ms = 0;
  sw_switch_init(&s, SW_BLUE, &p);
  sw_switch_on_colour_health(&s, T_INIT, SW_BLUE, 1, "", &a);
  sw_switch_request(&s, T_REQ, SW_GREEN, 1, "t", &a);
  now = T_REQ;
  passes(&s, &now, SW_GREEN, 3, &a);
  sw_switch_on_verify(&s, now, SW_GREEN, SW_SWITCH_VERIFY_PASS, T_REQ, "", &a);
  SW_CHECK_UINT_EQ(s.gate.recheck_deadline, T_REQ + GATE_MS);
  sw_switch_tick(&s, T_REQ + GATE_MS - 1, &a);
  CHECK_PHASE(&s, SW_SWITCH_RECHECKING);
}

/* At the drain deadline the caller cancels what is left and says how many. */
static void test_drain_timeout(void) {
  sw_switch_t s;
  sw_switch_actions_t a;
  uint64_t deadline;

  setup(&s, SW_SWITCH_DRAINING); /* flipped at 2600 */
  deadline = 2600 + DRAIN_MS;
  sw_switch_on_inflight(&s, 2700, SW_BLUE, 3, &a);
  sw_switch_tick(&s, deadline - 1, &a);
  SW_CHECK_UINT_EQ(a.flags, 0);
  /* The report of a cancellation nobody asked for is ignored. */
  sw_switch_on_drain_cancelled(&s, deadline - 1, SW_BLUE, 3, &a);
  CHECK_PHASE(&s, SW_SWITCH_DRAINING);
  SW_CHECK_UINT_EQ(a.flags, 0);

  sw_switch_tick(&s, deadline, &a);
  SW_CHECK_UINT_EQ(a.flags, SW_SWITCH_ACT_CANCEL_DRAIN);
  SW_CHECK_INT_EQ(a.cancel, SW_BLUE);
  SW_CHECK_UINT_EQ(a.nevents, 0);
  CHECK_PHASE(&s, SW_SWITCH_DRAINING);
  SW_CHECK_INT_EQ(s.drain.cancel_sent, 1);
  /* Asked again until the count comes back, by any event. */
  sw_switch_tick(&s, deadline + 5, &a);
  SW_CHECK_UINT_EQ(a.flags, SW_SWITCH_ACT_CANCEL_DRAIN);
  sw_switch_on_inflight(&s, deadline + 6, SW_BLUE, 2, &a);
  SW_CHECK_UINT_EQ(a.flags, SW_SWITCH_ACT_CANCEL_DRAIN);
  /* The count for the wrong colour is ignored. */
  sw_switch_on_drain_cancelled(&s, deadline + 7, SW_GREEN, 2, &a);
  CHECK_PHASE(&s, SW_SWITCH_DRAINING);
  sw_switch_on_drain_cancelled(&s, deadline + 7, SW_BLUE, 2, &a);
  CHECK_TRANSITION(&s, &a, SW_SWITCH_DRAINING, SW_SWITCH_STEADY,
                   SW_SWITCH_R_DRAIN_TIMEOUT);
  SW_CHECK_STR_EQ(a.events[0].text,
                  "blue drain timed out after 30007 ms: 2 requests cancelled");
  SW_CHECK_INT_EQ(a.events[0].live, SW_GREEN);
  SW_CHECK_INT_EQ(s.live, SW_GREEN);
  SW_CHECK_INT_EQ(s.last_drain.reason, SW_SWITCH_R_DRAIN_TIMEOUT);
  SW_CHECK_UINT_EQ(s.last_drain.cancelled, 2);
  SW_CHECK_UINT_EQ(s.drain_cancelled, 2);
  SW_CHECK_INT_EQ(s.drain.active, 0);
  /* A late second report changes nothing. */
  sw_switch_on_drain_cancelled(&s, deadline + 8, SW_BLUE, 2, &a);
  SW_CHECK_UINT_EQ(a.flags, 0);
  SW_CHECK_UINT_EQ(s.drain_cancelled, 2);

  /* One request cancelled: singular. */
  setup(&s, SW_SWITCH_DRAINING);
  sw_switch_tick(&s, deadline, &a);
  sw_switch_on_drain_cancelled(&s, deadline, SW_BLUE, 1, &a);
  SW_CHECK_STR_EQ(a.events[0].text,
                  "blue drain timed out after 30000 ms: 1 request cancelled");

  /* The last request finishing after the deadline, before the count: the
   * drain completed, nothing was cancelled. */
  setup(&s, SW_SWITCH_DRAINING);
  sw_switch_tick(&s, deadline, &a);
  sw_switch_on_inflight(&s, deadline + 1, SW_BLUE, 0, &a);
  CHECK_TRANSITION(&s, &a, SW_SWITCH_DRAINING, SW_SWITCH_STEADY,
                   SW_SWITCH_R_DRAINED);
  SW_CHECK_INT_EQ(a.flags & SW_SWITCH_ACT_CANCEL_DRAIN, 0);
  SW_CHECK_UINT_EQ(s.last_drain.cancelled, 0);
  sw_switch_on_drain_cancelled(&s, deadline + 2, SW_BLUE, 0, &a);
  SW_CHECK_UINT_EQ(a.nevents, 0);

  /* A drain timeout of 0 cancels at the first event. */
  {
    sw_switch_params_t p = test_params();
    p.drain_timeout_ms = 0;
    setup(&s, SW_SWITCH_RECHECKING);
    sw_switch_set_params(&s, &p);
    sw_switch_on_health(&s, 2500, SW_GREEN, 1, 2400, "", &a);
    sw_switch_on_verify(&s, 2500, SW_GREEN, SW_SWITCH_VERIFY_PASS, 2400, "",
                        &a);
    CHECK_PHASE(&s, SW_SWITCH_DRAINING);
    sw_switch_on_inflight(&s, 2500, SW_BLUE, 7, &a);
    SW_CHECK_UINT_EQ(a.flags, SW_SWITCH_ACT_CANCEL_DRAIN);
  }
}

/* Restart: a gate is never resumed as a pass, a drain is over. */
static void test_restore(void) {
  sw_switch_params_t p = test_params();
  sw_switch_persisted_t st;
  sw_switch_t s;
  sw_switch_actions_t a;

  /* No watch windows recorded: these phases never read them. */
  memset(&st, 0, sizeof(st));
  st.live = SW_GREEN;
  st.phase = SW_SWITCH_STEADY;
  st.flip_at = 1234;
  st.version = 7;
  SW_CHECK_INT_EQ(sw_switch_restore(&s, 5000, &p, &st, &a), 0);
  CHECK_PHASE(&s, SW_SWITCH_STEADY);
  SW_CHECK_INT_EQ(s.live, SW_GREEN);
  SW_CHECK_UINT_EQ(s.version, 7);
  SW_CHECK_UINT_EQ(s.flip_at, 1234);
  SW_CHECK_UINT_EQ(a.flags, 0);
  SW_CHECK_UINT_EQ(a.nevents, 0);
  SW_CHECK_INT_EQ(s.health[SW_GREEN], SW_SWITCH_HEALTH_UNKNOWN);

  /* Gating and rechecking: steady, with the recorded live colour. */
  for (int ph = SW_SWITCH_GATING; ph <= SW_SWITCH_RECHECKING; ph++) {
    st.live = SW_BLUE;
    st.phase = (sw_switch_phase_t)ph;
    st.flip_at = 0;
    st.version = 7;
    SW_CHECK_INT_EQ(sw_switch_restore(&s, 5000, &p, &st, &a), 0);
    CHECK_TRANSITION(&s, &a, (sw_switch_phase_t)ph, SW_SWITCH_STEADY,
                     SW_SWITCH_R_RESTART);
    SW_CHECK_INT_EQ(s.live, SW_BLUE);
    SW_CHECK_UINT_EQ(s.version, 8);
    SW_CHECK_INT_EQ(a.flags & SW_SWITCH_ACT_FLIP, 0);
    SW_CHECK_INT_EQ(s.last_gate.outcome, SW_SWITCH_OUTCOME_INCONCLUSIVE);
    SW_CHECK_INT_EQ(s.last_gate.reason, SW_SWITCH_R_RESTART);
    SW_CHECK_INT_EQ(s.last_gate.target, SW_GREEN);
    SW_CHECK_UINT_EQ(s.last_gate.at, 5000);
    SW_CHECK_STR_CONTAINS(s.last_gate.message,
                          "the gate to green ended inconclusive; live blue");
    SW_CHECK_UINT_EQ(sw_switch_history_count(&s), 1);
    SW_CHECK_UINT_EQ(sw_switch_next_deadline(&s), 0);
  }

  /* Draining: steady with the new colour; the old one's drain is over. */
  st.live = SW_GREEN;
  st.phase = SW_SWITCH_DRAINING;
  st.flip_at = 4000;
  st.version = 0; /* a file without a version: start from 1 */
  SW_CHECK_INT_EQ(sw_switch_restore(&s, 5000, &p, &st, &a), 0);
  CHECK_TRANSITION(&s, &a, SW_SWITCH_DRAINING, SW_SWITCH_STEADY,
                   SW_SWITCH_R_RESTART);
  SW_CHECK_STR_EQ(a.events[0].text,
                  "restart during the drain of blue: its requests ended with "
                  "the process; live green");
  SW_CHECK_INT_EQ(s.live, SW_GREEN);
  SW_CHECK_UINT_EQ(s.version, 2);
  SW_CHECK_UINT_EQ(s.flip_at, 4000);
  SW_CHECK_INT_EQ(s.drain.active, 0);
  SW_CHECK_INT_EQ(s.last_drain.valid, 1);
  SW_CHECK_INT_EQ(s.last_drain.colour, SW_BLUE);
  SW_CHECK_INT_EQ(s.last_drain.reason, SW_SWITCH_R_RESTART);
  SW_CHECK_INT_EQ(s.last_gate.outcome, SW_SWITCH_OUTCOME_NONE);
  /* And it runs: a cutover back to blue is accepted. */
  SW_CHECK_INT_EQ(sw_switch_request(&s, 5100, SW_BLUE, 1, "t", &a),
                  SW_SWITCH_R_NONE);

  /* The watch phases resume: test_restore_watch. */

  /* Values that do not exist: the caller reports a corrupt file. */
  st.live = (sw_colour_t)2;
  st.phase = SW_SWITCH_STEADY;
  SW_CHECK_INT_EQ(sw_switch_restore(&s, 5000, &p, &st, &a), SW_ECONFIG);
  SW_CHECK_UINT_EQ(a.flags, 0);
  st.live = SW_BLUE;
  st.phase = (sw_switch_phase_t)SW_SWITCH_PHASES;
  SW_CHECK_INT_EQ(sw_switch_restore(&s, 5000, &p, &st, &a), SW_ECONFIG);

  /* Snapshot and restore round trip in steady. */
  setup(&s, SW_SWITCH_DRAINING);
  sw_switch_on_inflight(&s, 2700, SW_BLUE, 0, &a);
  sw_switch_snapshot(&s, &st);
  {
    sw_switch_t back;
    SW_CHECK_INT_EQ(sw_switch_restore(&back, 9000, &p, &st, &a), 0);
    SW_CHECK_INT_EQ(back.live, SW_GREEN);
    SW_CHECK_UINT_EQ(back.version, s.version);
    SW_CHECK_UINT_EQ(back.flip_at, s.flip_at);
    SW_CHECK_UINT_EQ(a.nevents, 0);
  }
}

static void test_history_ring(void) {
  sw_switch_params_t p = test_params();
  sw_switch_t s;
  sw_switch_actions_t a;

  p.history = 3;
  sw_switch_init(&s, SW_BLUE, &p);
  /* Ten transitions: request and abort, five times. */
  for (uint64_t i = 0; i < 5; i++) {
    sw_switch_request(&s, 100 * i, SW_GREEN, 1, "t", &a);
    sw_switch_abort(&s, 100 * i + 50, "t", &a);
  }
  SW_CHECK_UINT_EQ(s.version, 11);
  SW_CHECK_UINT_EQ(sw_switch_history_count(&s), 3);
  SW_CHECK_UINT_EQ(sw_switch_history_at(&s, 0)->at, 350);
  SW_CHECK_INT_EQ(sw_switch_history_at(&s, 0)->reason, SW_SWITCH_R_OPERATOR);
  SW_CHECK_UINT_EQ(sw_switch_history_at(&s, 1)->at, 400);
  SW_CHECK_UINT_EQ(sw_switch_history_at(&s, 2)->at, 450);
  SW_CHECK_UINT_EQ(sw_switch_history_at(&s, 2)->version, 11);
  SW_CHECK(sw_switch_history_at(&s, 3) == NULL);
  SW_CHECK_UINT_EQ(s.gates[SW_SWITCH_OUTCOME_INCONCLUSIVE], 5);

  /* A reload to a smaller ring keeps the newest. */
  p.history = 1;
  sw_switch_set_params(&s, &p);
  SW_CHECK_UINT_EQ(sw_switch_history_count(&s), 1);
  SW_CHECK_UINT_EQ(sw_switch_history_at(&s, 0)->at, 450);

  /* No ring at all: the caller still gets every record. */
  p.history = 0;
  sw_switch_set_params(&s, &p);
  SW_CHECK_UINT_EQ(sw_switch_history_count(&s), 0);
  sw_switch_request(&s, 1000, SW_GREEN, 1, "t", &a);
  SW_CHECK_UINT_EQ(a.nevents, 1);
  SW_CHECK_UINT_EQ(sw_switch_history_count(&s), 0);
  SW_CHECK(sw_switch_history_at(&s, 0) == NULL);
}

/* A reload applies to the next gate; the running gate keeps its rise and
 * deadline. rise 0 counts as 1: a verification alone never passes. */
static void test_params_reload_and_rise(void) {
  sw_switch_params_t p = test_params();
  sw_switch_t s;
  sw_switch_actions_t a;

  setup(&s, SW_SWITCH_GATING);
  p.rise[SW_GREEN] = 1;
  p.gate_timeout_ms = 5;
  sw_switch_set_params(&s, &p);
  SW_CHECK_UINT_EQ(s.gate.rise, 3);
  SW_CHECK_UINT_EQ(s.gate.deadline, T_REQ + GATE_MS);
  sw_switch_tick(&s, T_REQ + 10, &a);
  CHECK_PHASE(&s, SW_SWITCH_GATING);
  sw_switch_abort(&s, T_REQ + 20, "t", &a);
  sw_switch_request(&s, 3000, SW_GREEN, 1, "t", &a);
  SW_CHECK_UINT_EQ(s.gate.rise, 1);
  SW_CHECK_UINT_EQ(s.gate.deadline, 3005);

  p = test_params();
  p.rise[SW_GREEN] = 0;
  sw_switch_init(&s, SW_BLUE, &p);
  sw_switch_on_colour_health(&s, 0, SW_BLUE, 1, "", &a);
  sw_switch_request(&s, T_REQ, SW_GREEN, 1, "t", &a);
  SW_CHECK_UINT_EQ(s.gate.rise, 1);
  sw_switch_on_verify(&s, 2100, SW_GREEN, SW_SWITCH_VERIFY_PASS, T_REQ, "", &a);
  CHECK_PHASE(&s, SW_SWITCH_GATING);
  sw_switch_on_health(&s, 2200, SW_GREEN, 1, 2100, "", &a);
  CHECK_PHASE(&s, SW_SWITCH_RECHECKING);
}

/* Outside text is stored bounded, as one line of valid UTF-8. */
static void test_text_bounds(void) {
  sw_switch_t s;
  sw_switch_actions_t a;
  char big[2000];
  size_t n;

  /* Far too long: cut with "...", within the bounds. */
  memset(big, 'x', sizeof(big) - 1);
  big[sizeof(big) - 1] = '\0';
  setup(&s, SW_SWITCH_GATING);
  sw_switch_on_verify(&s, 2100, SW_GREEN, SW_SWITCH_VERIFY_FAIL, 2000, big, &a);
  n = strlen(s.last_gate.message);
  SW_CHECK_UINT_EQ(n, SW_SWITCH_MESSAGE - 1);
  SW_CHECK_STR_EQ(s.last_gate.message + n - 4, "x...");
  SW_CHECK_UINT_EQ(strlen(a.events[0].text), SW_SWITCH_TEXT - 1);
  SW_CHECK_STR_EQ(a.events[0].text + SW_SWITCH_TEXT - 4, "...");

  /* Multibyte characters are never split, at either bound. */
  big[0] = '\0';
  for (int i = 0; i < 400; i++)
    strcat(big, "\xc3\xa9"); /* é */
  setup(&s, SW_SWITCH_GATING);
  sw_switch_on_verify(&s, 2100, SW_GREEN, SW_SWITCH_VERIFY_FAIL, 2000, big, &a);
  SW_CHECK(clean_utf8(s.last_gate.message));
  SW_CHECK(clean_utf8(a.events[0].text));
  SW_CHECK(strlen(s.last_gate.message) < SW_SWITCH_MESSAGE);
  SW_CHECK(strlen(a.events[0].text) < SW_SWITCH_TEXT);
  n = strlen(a.events[0].text);
  SW_CHECK_STR_EQ(a.events[0].text + n - 5, "\xc3\xa9...");

  /* Control characters become spaces, invalid bytes '?', trailing blanks
   * go; overlong forms and surrogates are invalid. */
  setup(&s, SW_SWITCH_GATING);
  sw_switch_on_verify(&s, 2100, SW_GREEN, SW_SWITCH_VERIFY_FAIL, 2000,
                      "a\tb\r\nc\x7f"
                      "d\xff"
                      "e\xc0\xaf"
                      "f\xed\xa0\x80"
                      "g\xe2\x82\xac\xf0\x9f\x98\x80 \n\n",
                      &a);
  SW_CHECK_STR_EQ(s.last_gate.message,
                  "green verification failed: a b  c d?e??f???g\xe2\x82\xac"
                  "\xf0\x9f\x98\x80");
  /* A sequence cut by the end of the string is dropped. */
  setup(&s, SW_SWITCH_GATING);
  sw_switch_on_verify(&s, 2100, SW_GREEN, SW_SWITCH_VERIFY_FAIL, 2000,
                      "ok \xe2\x82", &a);
  SW_CHECK_STR_EQ(s.last_gate.message, "green verification failed: ok");

  /* A long caller name is bounded too. */
  memset(big, 'w', 300);
  big[300] = '\0';
  setup(&s, SW_SWITCH_STEADY);
  sw_switch_request(&s, 1100, SW_GREEN, 1, big, &a);
  SW_CHECK_UINT_EQ(strlen(s.gate.who), SW_SWITCH_WHO - 1);
  SW_CHECK(clean_utf8(a.events[0].text));

  /* A health failure reason, kept for the deadline message. */
  sw_switch_on_health(&s, 1200, SW_GREEN, 0, 1150, big, &a);
  SW_CHECK_UINT_EQ(strlen(s.gate.last_failure), SW_SWITCH_TEXT - 1);
  sw_switch_on_colour_health(&s, 1300, SW_GREEN, 0, big, &a);
  SW_CHECK_UINT_EQ(strlen(s.health_reason[SW_GREEN]), SW_SWITCH_TEXT - 1);
}

/* The caller's actions struct is cleared by every call. */
static void test_actions_cleared(void) {
  sw_switch_t s;
  sw_switch_actions_t a;

  setup(&s, SW_SWITCH_STEADY);
  memset(&a, 0xff, sizeof(a));
  sw_switch_tick(&s, 1100, &a);
  SW_CHECK_UINT_EQ(a.flags, 0);
  SW_CHECK_UINT_EQ(a.nevents, 0);
  memset(&a, 0xff, sizeof(a));
  SW_CHECK_INT_EQ(sw_switch_request(&s, 1100, SW_BLUE, 1, "t", &a),
                  SW_SWITCH_R_ALREADY_LIVE);
  SW_CHECK_UINT_EQ(a.flags, 0);
  SW_CHECK_UINT_EQ(a.nevents, 0);
}

/* A config reload naming another live colour switches at once while
 * steady, and is refused during a cutover. */
static void test_set_live(void) {
  sw_switch_t s;
  sw_switch_actions_t out;
  uint64_t v;

  sw_switch_init(&s, SW_BLUE, NULL);
  v = sw_switch_version(&s);
  SW_CHECK_INT_EQ(sw_switch_set_live(&s, 10, SW_BLUE, &out),
                  SW_SWITCH_R_ALREADY_LIVE);
  SW_CHECK_UINT_EQ(out.flags, 0);
  SW_CHECK_INT_EQ(sw_switch_set_live(&s, 20, SW_GREEN, &out), SW_SWITCH_R_NONE);
  SW_CHECK_INT_EQ(s.live, SW_GREEN);
  SW_CHECK_INT_EQ(s.phase, SW_SWITCH_STEADY);
  SW_CHECK_UINT_EQ(sw_switch_version(&s), v + 1);
  SW_CHECK(out.flags & SW_SWITCH_ACT_FLIP);
  SW_CHECK(out.flags & SW_SWITCH_ACT_PERSIST);
  SW_CHECK_INT_EQ(out.flip_to, SW_GREEN);
  SW_CHECK_UINT_EQ(out.nevents, 1);
  SW_CHECK_INT_EQ(out.events[0].reason, SW_SWITCH_R_CONFIG);
  SW_CHECK_UINT_EQ(s.flip_at, 20);
  /* During a gate the file cannot override the cutover. */
  SW_CHECK_INT_EQ(sw_switch_request(&s, 30, SW_BLUE, 1, "t", &out),
                  SW_SWITCH_R_NONE);
  SW_CHECK_INT_EQ(sw_switch_set_live(&s, 40, SW_BLUE, &out),
                  SW_SWITCH_R_IN_PROGRESS);
  SW_CHECK_INT_EQ(s.live, SW_GREEN);
  SW_CHECK_INT_EQ(sw_switch_set_live(&s, 40, (sw_colour_t)7, &out),
                  SW_SWITCH_R_INVALID);
}

/* ---- the error watch and rollback ---- */

#define AUTO_MS 1000
#define MANUAL_MS 3000
#define T_FLIP 2600 /* when setup_with flips */

/* test_params() with the watch on and short windows. */
static sw_switch_params_t watch_params(void) {
  sw_switch_params_t p = test_params();

  p.watch = 1;
  p.auto_window_ms = AUTO_MS;
  p.manual_window_ms = MANUAL_MS;
  return p;
}

/* Flips to green at T_FLIP with the watch on, then puts s into `phase`, one
 * of the watch phases, with every drain over, so that only the phase's own
 * rules are in play. Returns the time it got there. */
static uint64_t setup_watch(sw_switch_t *s, sw_switch_phase_t phase) {
  sw_switch_params_t p = watch_params();
  sw_switch_actions_t a;
  uint64_t now;

  setup_with(s, SW_SWITCH_WATCHING, &p, &a);
  now = T_FLIP + 50;
  sw_switch_on_inflight(s, now, SW_BLUE, 0, &a);
  switch (phase) {
    case SW_SWITCH_COMMITTED_MANUAL:
      now = T_FLIP + AUTO_MS;
      sw_switch_tick(s, now, &a);
      break;
    case SW_SWITCH_FINAL:
      now = T_FLIP + MANUAL_MS;
      sw_switch_tick(s, now, &a);
      break;
    case SW_SWITCH_ROLLED_BACK:
      now = T_FLIP + 100;
      sw_switch_rollback(s, now, SW_SWITCH_ROLLBACK_AUTO, "r1", "test", NULL,
                         &a);
      now += 50;
      sw_switch_on_inflight(s, now, SW_GREEN, 0, &a);
      break;
    case SW_SWITCH_ROLLBACK_BLOCKED:
      now = T_FLIP + 100;
      sw_switch_rollback(s, now, SW_SWITCH_ROLLBACK_AUTO, "r1", "test",
                         "blue down", &a);
      break;
    default:
      break;
  }
  return now;
}

/* Checks that a rollback is refused with `want` and changes nothing. The
 * caller picks a time at which no deadline is due. */
static void check_rollback_refused_at(const char *file,
                                      int line,
                                      sw_switch_t *s,
                                      uint64_t now,
                                      sw_switch_rollback_mode_t mode,
                                      const char *not_ready,
                                      sw_switch_reason_t want) {
  sw_switch_phase_t phase = s->phase;
  sw_colour_t live = s->live;
  uint64_t version = s->version, flips = s->flips;
  uint64_t rollbacks = s->rollbacks, blocked = s->rollbacks_blocked;
  sw_switch_actions_t a;
  sw_switch_reason_t r;

  r = sw_switch_rollback(s, now, mode, "t", "test", not_ready, &a);
  SW_CHECK_STR_EQ_AT(file, line, sw_switch_reason_name(r),
                     sw_switch_reason_name(want));
  SW_CHECK_STR_EQ_AT(file, line, sw_switch_phase_name(s->phase),
                     sw_switch_phase_name(phase));
  SW_CHECK_INT_EQ_AT(file, line, s->live, live);
  SW_CHECK_UINT_EQ_AT(file, line, s->version, version);
  SW_CHECK_UINT_EQ_AT(file, line, s->flips, flips);
  SW_CHECK_UINT_EQ_AT(file, line, s->rollbacks, rollbacks);
  SW_CHECK_UINT_EQ_AT(file, line, s->rollbacks_blocked, blocked);
  SW_CHECK_UINT_EQ_AT(file, line, a.flags, 0);
  SW_CHECK_UINT_EQ_AT(file, line, a.nevents, 0);
}
#define CHECK_ROLLBACK_REFUSED(s, now, mode, not_ready, want) \
  check_rollback_refused_at(__FILE__, __LINE__, s, now, mode, not_ready, want)

/* The watch phases against every event of the gate's matrix. Green is live
 * after the flip (blue after the rollback), and no drain runs. Besides the
 * events of the first matrix, only rollback, commit and windows move a
 * watch phase; a timer past both windows may produce two transitions. */
typedef struct watch_want_s {
  sw_switch_phase_t phase;
  int ret;
  unsigned flags;
  size_t nevents;
  sw_switch_reason_t reason; /* of the last transition */
} watch_want_t;

#define W_IGN(ph) \
  { ph, -1, 0, 0, SW_SWITCH_R_NONE }
#define W_REFUSE(ph, r) \
  { ph, SW_SWITCH_R_##r, 0, 0, SW_SWITCH_R_NONE }
#define W_REQUESTED                                          \
  {                                                          \
    GA, SW_SWITCH_R_NONE, SW_SWITCH_ACT_VERIFY | PERSIST, 1, \
        SW_SWITCH_R_REQUESTED                                \
  }
/* The events no watch phase reacts to: health, verifications, in-flight
 * counts with no drain, a tick with no deadline due. */
#define W_IGNORED(ph)                                                          \
  [EV_HEALTH_GREEN_PASS] = W_IGN(ph),                                          \
  [EV_HEALTH_GREEN_STALE_PASS] = W_IGN(ph),                                    \
  [EV_HEALTH_GREEN_FAIL] = W_IGN(ph), [EV_HEALTH_BLUE_PASS] = W_IGN(ph),       \
  [EV_HEALTH_BLUE_FAIL] = W_IGN(ph), [EV_COLOUR_BLUE_UP] = W_IGN(ph),          \
  [EV_COLOUR_BLUE_DOWN] = W_IGN(ph), [EV_COLOUR_GREEN_UP] = W_IGN(ph),         \
  [EV_COLOUR_GREEN_DOWN] = W_IGN(ph), [EV_VERIFY_GREEN_PASS] = W_IGN(ph),      \
  [EV_VERIFY_GREEN_FAIL] = W_IGN(ph),                                          \
  [EV_VERIFY_GREEN_INCONCLUSIVE] = W_IGN(ph),                                  \
  [EV_VERIFY_GREEN_STALE_FAIL] = W_IGN(ph), [EV_VERIFY_BLUE_FAIL] = W_IGN(ph), \
  [EV_INFLIGHT_BLUE_0] = W_IGN(ph), [EV_INFLIGHT_BLUE_5] = W_IGN(ph),          \
  [EV_INFLIGHT_GREEN_0] = W_IGN(ph), [EV_DRAIN_CANCELLED_BLUE] = W_IGN(ph),    \
  [EV_TICK] = W_IGN(ph)

#define WA SW_SWITCH_WATCHING
#define CM SW_SWITCH_COMMITTED_MANUAL
#define FI SW_SWITCH_FINAL
#define RO SW_SWITCH_ROLLED_BACK
#define RB SW_SWITCH_ROLLBACK_BLOCKED
#define WATCH_PHASES 5

static const watch_want_t watch_matrix[WATCH_PHASES][EV_COUNT] = {
    [WA - WA] =
        {
            [EV_REQUEST_GREEN] = W_REFUSE(WA, WATCHING),
            [EV_REQUEST_BLUE] = W_REFUSE(WA, WATCHING),
            [EV_REQUEST_NO_SERVERS] = W_REFUSE(WA, WATCHING),
            [EV_REQUEST_INVALID] = W_REFUSE(WA, INVALID),
            [EV_ABORT] = W_REFUSE(WA, NOT_GATING),
            W_IGNORED(WA),
            [EV_TICK_DEADLINE] = {FI, -1, PERSIST, 2,
                                  SW_SWITCH_R_MANUAL_WINDOW_END},
        },
    [CM - WA] =
        {
            [EV_REQUEST_GREEN] = W_REFUSE(CM, WATCHING),
            [EV_REQUEST_BLUE] = W_REFUSE(CM, WATCHING),
            [EV_REQUEST_NO_SERVERS] = W_REFUSE(CM, WATCHING),
            [EV_REQUEST_INVALID] = W_REFUSE(CM, INVALID),
            [EV_ABORT] = W_REFUSE(CM, NOT_GATING),
            W_IGNORED(CM),
            [EV_TICK_DEADLINE] = {FI, -1, PERSIST, 1,
                                  SW_SWITCH_R_MANUAL_WINDOW_END},
        },
    [FI - WA] =
        {
            [EV_REQUEST_GREEN] = W_REFUSE(FI, ALREADY_LIVE),
            [EV_REQUEST_BLUE] = W_REQUESTED,
            [EV_REQUEST_NO_SERVERS] = W_REFUSE(FI, ALREADY_LIVE),
            [EV_REQUEST_INVALID] = W_REFUSE(FI, INVALID),
            [EV_ABORT] = W_REFUSE(FI, NOT_GATING),
            W_IGNORED(FI),
            [EV_TICK_DEADLINE] = W_IGN(FI),
        },
    /* Blue is live again. */
    [RO - WA] =
        {
            [EV_REQUEST_GREEN] = W_REQUESTED,
            [EV_REQUEST_BLUE] = W_REFUSE(RO, ALREADY_LIVE),
            [EV_REQUEST_NO_SERVERS] = W_REFUSE(RO, NO_SERVERS),
            [EV_REQUEST_INVALID] = W_REFUSE(RO, INVALID),
            [EV_ABORT] = W_REFUSE(RO, NOT_GATING),
            W_IGNORED(RO),
            [EV_TICK_DEADLINE] = W_IGN(RO),
        },
    /* Waits for an operator: no window moves it on. */
    [RB - WA] =
        {
            [EV_REQUEST_GREEN] = W_REFUSE(RB, WATCHING),
            [EV_REQUEST_BLUE] = W_REFUSE(RB, WATCHING),
            [EV_REQUEST_NO_SERVERS] = W_REFUSE(RB, WATCHING),
            [EV_REQUEST_INVALID] = W_REFUSE(RB, INVALID),
            [EV_ABORT] = W_REFUSE(RB, NOT_GATING),
            W_IGNORED(RB),
            [EV_TICK_DEADLINE] = W_IGN(RB),
        },
};

static void test_watch_matrix(void) {
  for (int i = 0; i < WATCH_PHASES; i++) {
    sw_switch_phase_t ph = (sw_switch_phase_t)(WA + i);
    for (int ev = 0; ev < EV_COUNT; ev++) {
      const watch_want_t *w = &watch_matrix[i][ev];
      sw_switch_t s;
      sw_switch_actions_t a;
      uint64_t now = setup_watch(&s, ph) + 100;
      uint64_t version = s.version;
      sw_colour_t live = s.live;
      size_t nhistory = s.nhistory;
      int ret, ok = 1;

      CHECK_PHASE(&s, ph);
      ok &= SW_CHECK_INT_EQ(s.drain.active, 0);
      ret = apply(&s, (ev_t)ev, now, &a);
      ok &= SW_CHECK_STR_EQ(sw_switch_phase_name(s.phase),
                            sw_switch_phase_name(w->phase));
      ok &= SW_CHECK_INT_EQ(ret, w->ret);
      ok &= SW_CHECK_UINT_EQ(a.flags, w->flags);
      ok &= SW_CHECK_INT_EQ(s.live, live);
      ok &= SW_CHECK_UINT_EQ(a.nevents, w->nevents);
      ok &= SW_CHECK_UINT_EQ(s.version, version + w->nevents);
      ok &= SW_CHECK_UINT_EQ(s.nhistory, nhistory + w->nevents);
      if (w->nevents > 0 && a.nevents == w->nevents) {
        const sw_switch_event_t *last = &a.events[a.nevents - 1];
        ok &= SW_CHECK_INT_EQ(a.events[0].from, ph);
        ok &= SW_CHECK_INT_EQ(last->to, w->phase);
        ok &= SW_CHECK_STR_EQ(sw_switch_reason_name(last->reason),
                              sw_switch_reason_name(w->reason));
        ok &= SW_CHECK_UINT_EQ(last->version, s.version);
        ok &= SW_CHECK_UINT_EQ(last->at, ev == EV_TICK_DEADLINE ? FAR : now);
      }
      if (!ok)
        printf("  in phase %s, event '%s'\n", sw_switch_phase_name(ph),
               ev_names[ev]);
    }
  }
}

/* The flip with the watch on: watching, the watch armed, the old colour
 * draining alongside; the drain's end is a record from watching to itself. */
static void test_watch_flip(void) {
  sw_switch_params_t p = watch_params();
  sw_switch_persisted_t st;
  sw_switch_t s;
  sw_switch_actions_t a;
  uint64_t v;

  SW_CHECK_UINT_EQ(setup_with(&s, SW_SWITCH_WATCHING, &p, &a), T_FLIP);
  CHECK_TRANSITION(&s, &a, SW_SWITCH_RECHECKING, SW_SWITCH_WATCHING,
                   SW_SWITCH_R_FLIPPED);
  SW_CHECK_UINT_EQ(a.flags, SW_SWITCH_ACT_FLIP | SW_SWITCH_ACT_WATCH |
                                SW_SWITCH_ACT_PERSIST);
  SW_CHECK_INT_EQ(a.flip_to, SW_GREEN);
  SW_CHECK_INT_EQ(a.events[0].live, SW_GREEN);
  SW_CHECK_INT_EQ(a.events[0].target, SW_GREEN);
  SW_CHECK_STR_EQ(a.events[0].text,
                  "live blue -> green; draining blue (up to 30000 ms); "
                  "watching green (auto 1000 ms, manual 3000 ms)");
  SW_CHECK_INT_EQ(s.live, SW_GREEN);
  SW_CHECK_UINT_EQ(s.flip_at, T_FLIP);
  SW_CHECK_UINT_EQ(s.flips, 1);
  SW_CHECK_INT_EQ(s.last_gate.outcome, SW_SWITCH_OUTCOME_PASSED);
  SW_CHECK_INT_EQ(s.last_gate.reason, SW_SWITCH_R_FLIPPED);
  SW_CHECK_UINT_EQ(s.watch_auto_ms, AUTO_MS);
  SW_CHECK_UINT_EQ(s.watch_manual_ms, MANUAL_MS);
  SW_CHECK_INT_EQ(s.drain.active, 1);
  SW_CHECK_INT_EQ(s.drain.colour, SW_BLUE);
  SW_CHECK_UINT_EQ(s.drain.started_at, T_FLIP);
  SW_CHECK_UINT_EQ(s.drain.deadline, T_FLIP + DRAIN_MS);
  /* The auto window ends before the drain deadline. */
  SW_CHECK_UINT_EQ(sw_switch_next_deadline(&s), T_FLIP + AUTO_MS);
  SW_CHECK_INT_EQ(s.last_rollback.valid, 0);
  sw_switch_snapshot(&s, &st);
  SW_CHECK_INT_EQ(st.live, SW_GREEN);
  SW_CHECK_INT_EQ(st.phase, SW_SWITCH_WATCHING);
  SW_CHECK_UINT_EQ(st.flip_at, T_FLIP);
  SW_CHECK_UINT_EQ(st.version, s.version);
  SW_CHECK_UINT_EQ(st.auto_window_ms, AUTO_MS);
  SW_CHECK_UINT_EQ(st.manual_window_ms, MANUAL_MS);

  /* The drain's progress, then its end: the phase stays. */
  v = s.version;
  sw_switch_on_inflight(&s, T_FLIP + 100, SW_BLUE, 2, &a);
  SW_CHECK_UINT_EQ(a.flags, 0);
  SW_CHECK_UINT_EQ(s.drain.inflight, 2);
  SW_CHECK_INT_EQ(s.drain.inflight_known, 1);
  sw_switch_on_inflight(&s, T_FLIP + 200, SW_GREEN, 0, &a); /* the new one */
  SW_CHECK_UINT_EQ(a.nevents, 0);
  SW_CHECK_INT_EQ(s.drain.active, 1);
  sw_switch_on_inflight(&s, T_FLIP + 400, SW_BLUE, 0, &a);
  CHECK_TRANSITION(&s, &a, SW_SWITCH_WATCHING, SW_SWITCH_WATCHING,
                   SW_SWITCH_R_DRAINED);
  SW_CHECK_UINT_EQ(a.flags, SW_SWITCH_ACT_PERSIST);
  SW_CHECK_STR_EQ(a.events[0].text, "blue drained in 400 ms");
  SW_CHECK_INT_EQ(a.events[0].live, SW_GREEN);
  SW_CHECK_UINT_EQ(s.version, v + 1);
  SW_CHECK_INT_EQ(s.live, SW_GREEN);
  SW_CHECK_INT_EQ(s.drain.active, 0);
  SW_CHECK_INT_EQ(s.last_drain.valid, 1);
  SW_CHECK_INT_EQ(s.last_drain.colour, SW_BLUE);
  SW_CHECK_INT_EQ(s.last_drain.reason, SW_SWITCH_R_DRAINED);
  SW_CHECK_UINT_EQ(s.last_drain.started_at, T_FLIP);
  SW_CHECK_UINT_EQ(s.last_drain.ended_at, T_FLIP + 400);
  SW_CHECK_UINT_EQ(sw_switch_next_deadline(&s), T_FLIP + AUTO_MS);
  /* No gate to abort: after the flip the way back is a rollback. */
  SW_CHECK_INT_EQ(sw_switch_abort(&s, T_FLIP + 500, "t", &a),
                  SW_SWITCH_R_NOT_GATING);
  CHECK_PHASE(&s, SW_SWITCH_WATCHING);

  /* A drain deadline before the auto window: cancelled in watching too. */
  p.drain_timeout_ms = 500;
  setup_with(&s, SW_SWITCH_WATCHING, &p, &a);
  SW_CHECK_UINT_EQ(sw_switch_next_deadline(&s), T_FLIP + 500);
  sw_switch_on_inflight(&s, T_FLIP + 100, SW_BLUE, 3, &a);
  sw_switch_tick(&s, T_FLIP + 499, &a);
  SW_CHECK_UINT_EQ(a.flags, 0);
  sw_switch_tick(&s, T_FLIP + 500, &a);
  SW_CHECK_UINT_EQ(a.flags, SW_SWITCH_ACT_CANCEL_DRAIN);
  SW_CHECK_INT_EQ(a.cancel, SW_BLUE);
  SW_CHECK_UINT_EQ(a.nevents, 0);
  CHECK_PHASE(&s, SW_SWITCH_WATCHING);
  SW_CHECK_INT_EQ(s.drain.cancel_sent, 1);
  sw_switch_on_drain_cancelled(&s, T_FLIP + 510, SW_BLUE, 3, &a);
  CHECK_TRANSITION(&s, &a, SW_SWITCH_WATCHING, SW_SWITCH_WATCHING,
                   SW_SWITCH_R_DRAIN_TIMEOUT);
  SW_CHECK_STR_EQ(a.events[0].text,
                  "blue drain timed out after 510 ms: 3 requests cancelled");
  SW_CHECK_UINT_EQ(s.drain_cancelled, 3);
  SW_CHECK_INT_EQ(s.last_drain.reason, SW_SWITCH_R_DRAIN_TIMEOUT);
  SW_CHECK_INT_EQ(s.live, SW_GREEN);
  SW_CHECK_UINT_EQ(sw_switch_next_deadline(&s), T_FLIP + AUTO_MS);
}

/* The windows run out one after the other, each with its record. */
static void test_watch_windows(void) {
  sw_switch_params_t p = watch_params();
  sw_switch_t s;
  sw_switch_actions_t a;
  uint64_t v;

  setup_with(&s, SW_SWITCH_WATCHING, &p, &a);
  v = s.version;
  sw_switch_tick(&s, T_FLIP + AUTO_MS - 1, &a);
  SW_CHECK_UINT_EQ(a.flags, 0);
  CHECK_PHASE(&s, SW_SWITCH_WATCHING);
  sw_switch_tick(&s, T_FLIP + AUTO_MS, &a);
  CHECK_TRANSITION(&s, &a, SW_SWITCH_WATCHING, SW_SWITCH_COMMITTED_MANUAL,
                   SW_SWITCH_R_AUTO_WINDOW_END);
  SW_CHECK_UINT_EQ(a.flags, SW_SWITCH_ACT_PERSIST);
  SW_CHECK_UINT_EQ(a.events[0].at, T_FLIP + AUTO_MS);
  SW_CHECK_INT_EQ(a.events[0].live, SW_GREEN);
  SW_CHECK_INT_EQ(a.events[0].target, SW_GREEN);
  SW_CHECK_STR_EQ(a.events[0].text,
                  "auto window of 1000 ms over: triggers on green only alert "
                  "now");
  SW_CHECK_UINT_EQ(s.version, v + 1);
  SW_CHECK_INT_EQ(s.live, SW_GREEN);
  SW_CHECK_UINT_EQ(sw_switch_next_deadline(&s), T_FLIP + MANUAL_MS);
  sw_switch_tick(&s, T_FLIP + MANUAL_MS - 1, &a);
  SW_CHECK_UINT_EQ(a.flags, 0);
  sw_switch_tick(&s, T_FLIP + MANUAL_MS, &a);
  CHECK_TRANSITION(&s, &a, SW_SWITCH_COMMITTED_MANUAL, SW_SWITCH_FINAL,
                   SW_SWITCH_R_MANUAL_WINDOW_END);
  SW_CHECK_STR_EQ(a.events[0].text,
                  "manual window of 3000 ms over: green stands; rollback "
                  "needs --force");
  SW_CHECK_UINT_EQ(s.version, v + 2);
  SW_CHECK_INT_EQ(s.live, SW_GREEN);
  /* Only the old colour's drain is left, then nothing. */
  SW_CHECK_UINT_EQ(sw_switch_next_deadline(&s), T_FLIP + DRAIN_MS);
  sw_switch_on_inflight(&s, T_FLIP + MANUAL_MS + 1, SW_BLUE, 0, &a);
  CHECK_TRANSITION(&s, &a, SW_SWITCH_FINAL, SW_SWITCH_FINAL,
                   SW_SWITCH_R_DRAINED);
  SW_CHECK_UINT_EQ(sw_switch_next_deadline(&s), 0);
  sw_switch_tick(&s, FAR, &a);
  SW_CHECK_UINT_EQ(a.flags, 0);
  CHECK_PHASE(&s, SW_SWITCH_FINAL);

  /* One late tick passes both windows, in order. */
  setup_with(&s, SW_SWITCH_WATCHING, &p, &a);
  v = s.version;
  sw_switch_tick(&s, T_FLIP + MANUAL_MS + 500, &a);
  SW_CHECK_UINT_EQ(a.flags, SW_SWITCH_ACT_PERSIST);
  if (SW_CHECK_UINT_EQ(a.nevents, 2)) {
    SW_CHECK_INT_EQ(a.events[0].from, SW_SWITCH_WATCHING);
    SW_CHECK_INT_EQ(a.events[0].to, SW_SWITCH_COMMITTED_MANUAL);
    SW_CHECK_INT_EQ(a.events[0].reason, SW_SWITCH_R_AUTO_WINDOW_END);
    SW_CHECK_UINT_EQ(a.events[0].version, v + 1);
    SW_CHECK_UINT_EQ(a.events[0].at, T_FLIP + MANUAL_MS + 500);
    SW_CHECK_INT_EQ(a.events[1].from, SW_SWITCH_COMMITTED_MANUAL);
    SW_CHECK_INT_EQ(a.events[1].to, SW_SWITCH_FINAL);
    SW_CHECK_INT_EQ(a.events[1].reason, SW_SWITCH_R_MANUAL_WINDOW_END);
    SW_CHECK_UINT_EQ(a.events[1].version, v + 2);
  }
  CHECK_PHASE(&s, SW_SWITCH_FINAL);
  SW_CHECK_UINT_EQ(s.version, v + 2);
  SW_CHECK_INT_EQ(sw_switch_history_at(&s, s.nhistory - 1)->reason,
                  SW_SWITCH_R_MANUAL_WINDOW_END);
  SW_CHECK_INT_EQ(sw_switch_history_at(&s, s.nhistory - 2)->reason,
                  SW_SWITCH_R_AUTO_WINDOW_END);

  /* Past the drain deadline as well: the cancellation and both records. */
  setup_with(&s, SW_SWITCH_WATCHING, &p, &a);
  sw_switch_tick(&s, T_FLIP + DRAIN_MS, &a);
  SW_CHECK_UINT_EQ(a.flags, SW_SWITCH_ACT_CANCEL_DRAIN | SW_SWITCH_ACT_PERSIST);
  SW_CHECK_INT_EQ(a.cancel, SW_BLUE);
  SW_CHECK_UINT_EQ(a.nevents, 2);
  CHECK_PHASE(&s, SW_SWITCH_FINAL);

  /* The drain deadline is the next one while it comes first. */
  p.drain_timeout_ms = 500;
  setup_with(&s, SW_SWITCH_WATCHING, &p, &a);
  SW_CHECK_UINT_EQ(sw_switch_next_deadline(&s), T_FLIP + 500);
  sw_switch_on_inflight(&s, T_FLIP + 300, SW_BLUE, 0, &a);
  SW_CHECK_UINT_EQ(sw_switch_next_deadline(&s), T_FLIP + AUTO_MS);
  /* In committed_manual too. */
  p.drain_timeout_ms = 2000;
  setup_with(&s, SW_SWITCH_WATCHING, &p, &a);
  sw_switch_tick(&s, T_FLIP + AUTO_MS, &a);
  CHECK_PHASE(&s, SW_SWITCH_COMMITTED_MANUAL);
  SW_CHECK_UINT_EQ(sw_switch_next_deadline(&s), T_FLIP + 2000);

  /* A manual window below the auto one is taken as the auto one: both end
   * together. */
  p = watch_params();
  p.auto_window_ms = 2000;
  p.manual_window_ms = 1000;
  setup_with(&s, SW_SWITCH_WATCHING, &p, &a);
  SW_CHECK_STR_CONTAINS(a.events[0].text, "(auto 2000 ms, manual 2000 ms)");
  SW_CHECK_UINT_EQ(s.watch_manual_ms, 2000);
  sw_switch_tick(&s, T_FLIP + 1999, &a);
  CHECK_PHASE(&s, SW_SWITCH_WATCHING);
  sw_switch_tick(&s, T_FLIP + 2000, &a);
  SW_CHECK_UINT_EQ(a.nevents, 2);
  CHECK_PHASE(&s, SW_SWITCH_FINAL);

  /* A reload applies to the next watch; the running one keeps its
   * windows. */
  p = watch_params();
  setup_with(&s, SW_SWITCH_WATCHING, &p, &a);
  p.auto_window_ms = 60000;
  p.manual_window_ms = 120000;
  sw_switch_set_params(&s, &p);
  SW_CHECK_UINT_EQ(s.watch_auto_ms, AUTO_MS);
  SW_CHECK_UINT_EQ(s.watch_manual_ms, MANUAL_MS);
  SW_CHECK_UINT_EQ(sw_switch_next_deadline(&s), T_FLIP + AUTO_MS);
  sw_switch_tick(&s, T_FLIP + AUTO_MS, &a);
  CHECK_PHASE(&s, SW_SWITCH_COMMITTED_MANUAL);
}

/* A trigger in the auto window flips back in the same call. */
static void test_rollback_auto(void) {
  sw_switch_params_t p = watch_params();
  sw_switch_t s;
  sw_switch_actions_t a;
  uint64_t v, now = T_FLIP + 200;

  setup_with(&s, SW_SWITCH_WATCHING, &p, &a);
  sw_switch_on_inflight(&s, T_FLIP + 100, SW_BLUE, 4, &a);
  v = s.version;
  SW_CHECK_INT_EQ(sw_switch_rollback(&s, now, SW_SWITCH_ROLLBACK_AUTO, "r1",
                                     "5xx ratio 12% over 60 s", NULL, &a),
                  SW_SWITCH_R_NONE);
  CHECK_TRANSITION(&s, &a, SW_SWITCH_WATCHING, SW_SWITCH_ROLLED_BACK,
                   SW_SWITCH_R_ROLLBACK);
  SW_CHECK_UINT_EQ(a.flags, SW_SWITCH_ACT_FLIP | SW_SWITCH_ACT_PERSIST);
  SW_CHECK_INT_EQ(a.flip_to, SW_BLUE);
  SW_CHECK_INT_EQ(a.events[0].live, SW_BLUE);
  SW_CHECK_INT_EQ(a.events[0].target, SW_BLUE);
  SW_CHECK_UINT_EQ(a.events[0].at, now);
  SW_CHECK_STR_EQ(a.events[0].text,
                  "rolled back green -> blue (auto): 5xx ratio 12% over 60 s; "
                  "draining green");
  SW_CHECK_INT_EQ(s.live, SW_BLUE);
  SW_CHECK_UINT_EQ(s.version, v + 1);
  SW_CHECK_UINT_EQ(s.flip_at, now);
  SW_CHECK_UINT_EQ(s.flips, 2);
  SW_CHECK_UINT_EQ(s.rollbacks, 1);
  SW_CHECK_UINT_EQ(s.rollbacks_blocked, 0);
  /* The colour rolled back from drains. */
  SW_CHECK_INT_EQ(s.drain.active, 1);
  SW_CHECK_INT_EQ(s.drain.colour, SW_GREEN);
  SW_CHECK_UINT_EQ(s.drain.started_at, now);
  SW_CHECK_UINT_EQ(s.drain.deadline, now + DRAIN_MS);
  SW_CHECK_INT_EQ(s.drain.inflight_known, 0);
  SW_CHECK_INT_EQ(s.drain.cancel_sent, 0);
  SW_CHECK_INT_EQ(s.last_rollback.valid, 1);
  SW_CHECK_INT_EQ(s.last_rollback.blocked, 0);
  SW_CHECK_INT_EQ(s.last_rollback.mode, SW_SWITCH_ROLLBACK_AUTO);
  SW_CHECK_INT_EQ(s.last_rollback.from, SW_GREEN);
  SW_CHECK_INT_EQ(s.last_rollback.to, SW_BLUE);
  SW_CHECK_UINT_EQ(s.last_rollback.at, now);
  SW_CHECK_STR_EQ(s.last_rollback.trigger, "r1");
  SW_CHECK_STR_EQ(s.last_rollback.message,
                  "rolled back green -> blue (auto): 5xx ratio 12% over 60 s");
  /* No window in rolled_back: only the drain's deadline. */
  SW_CHECK_UINT_EQ(sw_switch_next_deadline(&s), now + DRAIN_MS);

  /* Blue is live again: its requests go on and are no drain any more. */
  sw_switch_on_inflight(&s, now + 100, SW_BLUE, 0, &a);
  SW_CHECK_UINT_EQ(a.flags, 0);
  SW_CHECK_UINT_EQ(s.version, v + 1);
  /* The windows no longer apply, and the phase is latched. */
  sw_switch_tick(&s, T_FLIP + MANUAL_MS + 1, &a);
  SW_CHECK_UINT_EQ(a.nevents, 0);
  CHECK_PHASE(&s, SW_SWITCH_ROLLED_BACK);
  CHECK_ROLLBACK_REFUSED(&s, T_FLIP + MANUAL_MS + 2, SW_SWITCH_ROLLBACK_FORCE,
                         NULL, SW_SWITCH_R_ALREADY_ROLLED_BACK);
  SW_CHECK_INT_EQ(sw_switch_commit(&s, T_FLIP + MANUAL_MS + 2, "t", &a),
                  SW_SWITCH_R_NOT_WATCHING);
  SW_CHECK_UINT_EQ(a.nevents, 0);
  /* The drain of green ends from rolled_back to itself. */
  sw_switch_on_inflight(&s, now + 3800, SW_GREEN, 0, &a);
  CHECK_TRANSITION(&s, &a, SW_SWITCH_ROLLED_BACK, SW_SWITCH_ROLLED_BACK,
                   SW_SWITCH_R_DRAINED);
  SW_CHECK_STR_EQ(a.events[0].text, "green drained in 3800 ms");
  SW_CHECK_INT_EQ(s.live, SW_BLUE);

  /* An operator's rollback without a trigger or a reason. */
  setup_with(&s, SW_SWITCH_WATCHING, &p, &a);
  SW_CHECK_INT_EQ(sw_switch_rollback(&s, now, SW_SWITCH_ROLLBACK_MANUAL, NULL,
                                     NULL, NULL, &a),
                  SW_SWITCH_R_NONE);
  SW_CHECK_STR_EQ(s.last_rollback.trigger, "operator");
  SW_CHECK_INT_EQ(s.last_rollback.mode, SW_SWITCH_ROLLBACK_MANUAL);
  SW_CHECK_STR_EQ(s.last_rollback.message,
                  "rolled back green -> blue (manual): operator");
  SW_CHECK(clean_utf8(a.events[0].text));
}

/* A trigger that finds the old colour unable to take the traffic: the new
 * colour keeps serving until an operator acts. */
/* With verify_old, the flip waits for the live colour's verification
 * started at the re-check (any result): a rollback needs that answer. An
 * older one does not count. */
static void test_flip_waits_for_old_verify(void) {
  sw_switch_params_t p = watch_params();
  sw_switch_t s;
  sw_switch_actions_t a;
  uint64_t now;

  p.verify_old[SW_BLUE] = 1;
  now = setup_with(&s, SW_SWITCH_RECHECKING, &p, &a); /* 2400 */
  sw_switch_on_health(&s, now + 50, SW_GREEN, 1, now + 10, "", &a);
  sw_switch_on_verify(&s, now + 60, SW_GREEN, SW_SWITCH_VERIFY_PASS, now + 10,
                      "", &a);
  CHECK_PHASE(&s, SW_SWITCH_RECHECKING);
  SW_CHECK_INT_EQ(s.live, SW_BLUE);
  SW_CHECK_UINT_EQ(a.flags & SW_SWITCH_ACT_FLIP, 0);
  /* Blue's answer from before the re-check is stale. */
  sw_switch_on_verify(&s, now + 70, SW_BLUE, SW_SWITCH_VERIFY_PASS, now - 1, "",
                      &a);
  CHECK_PHASE(&s, SW_SWITCH_RECHECKING);
  /* A fresh one, even a failing one, lets the flip happen. */
  sw_switch_on_verify(&s, now + 80, SW_BLUE, SW_SWITCH_VERIFY_FAIL, now,
                      "missing column t.c", &a);
  CHECK_PHASE(&s, SW_SWITCH_WATCHING);
  SW_CHECK_INT_EQ(s.live, SW_GREEN);
  SW_CHECK_UINT_EQ(a.flags & SW_SWITCH_ACT_FLIP, SW_SWITCH_ACT_FLIP);
}

/* A blocked rollback keeps the window policy for an operator: plain in the
 * auto window, --confirm in the manual one, --force after it. */
static void test_rollback_blocked_windows(void) {
  sw_switch_params_t p = watch_params();
  sw_switch_t s;
  sw_switch_actions_t a;

  setup_with(&s, SW_SWITCH_WATCHING, &p, &a);
  SW_CHECK_INT_EQ(sw_switch_rollback(&s, T_FLIP + 100, SW_SWITCH_ROLLBACK_AUTO,
                                     "r3", "5 in a row", "blue down", &a),
                  SW_SWITCH_R_ROLLBACK_BLOCKED);
  CHECK_ROLLBACK_REFUSED(&s, T_FLIP + AUTO_MS, SW_SWITCH_ROLLBACK_MANUAL, NULL,
                         SW_SWITCH_R_NEEDS_CONFIRM);
  CHECK_ROLLBACK_REFUSED(&s, T_FLIP + MANUAL_MS, SW_SWITCH_ROLLBACK_CONFIRM,
                         NULL, SW_SWITCH_R_NEEDS_FORCE);
  SW_CHECK_INT_EQ(
      sw_switch_rollback(&s, T_FLIP + MANUAL_MS - 1, SW_SWITCH_ROLLBACK_CONFIRM,
                         NULL, "blue fixed", NULL, &a),
      SW_SWITCH_R_NONE);
  SW_CHECK_INT_EQ(s.live, SW_BLUE);
  CHECK_PHASE(&s, SW_SWITCH_ROLLED_BACK);
}

static void test_rollback_blocked(void) {
  sw_switch_params_t p = watch_params();
  sw_switch_t s;
  sw_switch_actions_t a;
  uint64_t v, now = T_FLIP + 200;

  setup_with(&s, SW_SWITCH_WATCHING, &p, &a);
  v = s.version;
  SW_CHECK_INT_EQ(sw_switch_rollback(&s, now, SW_SWITCH_ROLLBACK_AUTO, "r2",
                                     "p99 latency 2.1 s over 60 s",
                                     "blue down: 0 of 2 servers up", &a),
                  SW_SWITCH_R_ROLLBACK_BLOCKED);
  CHECK_TRANSITION(&s, &a, SW_SWITCH_WATCHING, SW_SWITCH_ROLLBACK_BLOCKED,
                   SW_SWITCH_R_ROLLBACK_BLOCKED);
  SW_CHECK_UINT_EQ(a.flags, SW_SWITCH_ACT_PERSIST);
  SW_CHECK_INT_EQ(a.events[0].live, SW_GREEN);
  SW_CHECK_STR_CONTAINS(a.events[0].text, "blue down: 0 of 2 servers up");
  SW_CHECK_INT_EQ(s.live, SW_GREEN);
  SW_CHECK_UINT_EQ(s.version, v + 1);
  SW_CHECK_UINT_EQ(s.flip_at, T_FLIP);
  SW_CHECK_UINT_EQ(s.flips, 1);
  SW_CHECK_UINT_EQ(s.rollbacks, 0);
  SW_CHECK_UINT_EQ(s.rollbacks_blocked, 1);
  SW_CHECK_INT_EQ(s.last_rollback.valid, 1);
  SW_CHECK_INT_EQ(s.last_rollback.blocked, 1);
  SW_CHECK_INT_EQ(s.last_rollback.mode, SW_SWITCH_ROLLBACK_AUTO);
  SW_CHECK_INT_EQ(s.last_rollback.from, SW_GREEN);
  SW_CHECK_INT_EQ(s.last_rollback.to, SW_BLUE);
  SW_CHECK_UINT_EQ(s.last_rollback.at, now);
  SW_CHECK_STR_EQ(s.last_rollback.trigger, "r2");
  SW_CHECK_STR_EQ(s.last_rollback.message,
                  "rollback to blue blocked: blue down: 0 of 2 servers up; "
                  "green keeps serving (p99 latency 2.1 s over 60 s)");
  /* The old colour's drain goes on. */
  SW_CHECK_INT_EQ(s.drain.active, 1);
  SW_CHECK_INT_EQ(s.drain.colour, SW_BLUE);
  /* No window moves it on. */
  SW_CHECK_UINT_EQ(sw_switch_next_deadline(&s), T_FLIP + DRAIN_MS);
  sw_switch_tick(&s, T_FLIP + MANUAL_MS + 1, &a);
  SW_CHECK_UINT_EQ(a.nevents, 0);
  CHECK_PHASE(&s, SW_SWITCH_ROLLBACK_BLOCKED);

  /* A second trigger: AUTO acts in watching only. */
  CHECK_ROLLBACK_REFUSED(&s, now + 100, SW_SWITCH_ROLLBACK_AUTO,
                         "blue down: 0 of 2 servers up",
                         SW_SWITCH_R_NOT_WATCHING);
  /* An operator, while blue is still not ready: refused, whatever the
   * mode. */
  CHECK_ROLLBACK_REFUSED(&s, now + 200, SW_SWITCH_ROLLBACK_MANUAL,
                         "blue down: 0 of 2 servers up", SW_SWITCH_R_NOT_READY);
  CHECK_ROLLBACK_REFUSED(&s, now + 200, SW_SWITCH_ROLLBACK_CONFIRM, "blue down",
                         SW_SWITCH_R_NOT_READY);
  CHECK_ROLLBACK_REFUSED(&s, now + 200, SW_SWITCH_ROLLBACK_FORCE, "blue down",
                         SW_SWITCH_R_NOT_READY);
  SW_CHECK_INT_EQ(s.last_rollback.blocked, 1);
  SW_CHECK_STR_EQ(s.last_rollback.trigger, "r2");

  /* Blue is ready: the operator's rollback flips. */
  v = s.version;
  SW_CHECK_INT_EQ(sw_switch_rollback(&s, now + 300, SW_SWITCH_ROLLBACK_MANUAL,
                                     NULL, "blue fixed", NULL, &a),
                  SW_SWITCH_R_NONE);
  CHECK_TRANSITION(&s, &a, SW_SWITCH_ROLLBACK_BLOCKED, SW_SWITCH_ROLLED_BACK,
                   SW_SWITCH_R_ROLLBACK);
  SW_CHECK_UINT_EQ(a.flags, SW_SWITCH_ACT_FLIP | SW_SWITCH_ACT_PERSIST);
  SW_CHECK_INT_EQ(a.flip_to, SW_BLUE);
  SW_CHECK_INT_EQ(s.live, SW_BLUE);
  SW_CHECK_UINT_EQ(s.version, v + 1);
  SW_CHECK_UINT_EQ(s.flips, 2);
  SW_CHECK_UINT_EQ(s.rollbacks, 1);
  SW_CHECK_UINT_EQ(s.rollbacks_blocked, 1);
  SW_CHECK_INT_EQ(s.last_rollback.blocked, 0);
  SW_CHECK_INT_EQ(s.last_rollback.mode, SW_SWITCH_ROLLBACK_MANUAL);
  SW_CHECK_STR_EQ(s.last_rollback.trigger, "operator");
  SW_CHECK_STR_EQ(s.last_rollback.message,
                  "rolled back green -> blue (manual): blue fixed");
  SW_CHECK_INT_EQ(s.drain.colour, SW_GREEN);
}

/* Where each mode may roll back: the table of sw_switch_rollback_mode_t. */
static void test_rollback_policy(void) {
  static const sw_switch_rollback_mode_t modes[4] = {
      SW_SWITCH_ROLLBACK_AUTO, SW_SWITCH_ROLLBACK_MANUAL,
      SW_SWITCH_ROLLBACK_CONFIRM, SW_SWITCH_ROLLBACK_FORCE};
  /* After a watched flip, by mode in the order above. */
  static const struct {
    sw_switch_phase_t phase;
    sw_switch_reason_t want[4];
  } watched[] = {
      {WA,
       {SW_SWITCH_R_NONE, SW_SWITCH_R_NONE, SW_SWITCH_R_NONE,
        SW_SWITCH_R_NONE}},
      {CM,
       {SW_SWITCH_R_NEEDS_CONFIRM, SW_SWITCH_R_NEEDS_CONFIRM, SW_SWITCH_R_NONE,
        SW_SWITCH_R_NONE}},
      {FI,
       {SW_SWITCH_R_NOT_WATCHING, SW_SWITCH_R_NEEDS_FORCE,
        SW_SWITCH_R_NEEDS_FORCE, SW_SWITCH_R_NONE}},
      {RO,
       {SW_SWITCH_R_ALREADY_ROLLED_BACK, SW_SWITCH_R_ALREADY_ROLLED_BACK,
        SW_SWITCH_R_ALREADY_ROLLED_BACK, SW_SWITCH_R_ALREADY_ROLLED_BACK}},
      {RB,
       {SW_SWITCH_R_NOT_WATCHING, SW_SWITCH_R_NONE, SW_SWITCH_R_NONE,
        SW_SWITCH_R_NONE}},
  };
  /* Without the watch (test_params): a gate cannot be rolled back, a
   * machine that never flipped has nothing to roll back, and a flip
   * without a watch needs FORCE. */
  static const struct {
    sw_switch_phase_t phase;
    int flipped; /* steady after a drained flip */
    sw_switch_reason_t want[4];
  } unwatched[] = {
      {ST,
       0,
       {SW_SWITCH_R_NOT_WATCHING, SW_SWITCH_R_NOT_WATCHING,
        SW_SWITCH_R_NOT_WATCHING, SW_SWITCH_R_NOT_WATCHING}},
      {GA,
       0,
       {SW_SWITCH_R_IN_PROGRESS, SW_SWITCH_R_IN_PROGRESS,
        SW_SWITCH_R_IN_PROGRESS, SW_SWITCH_R_IN_PROGRESS}},
      {RE,
       0,
       {SW_SWITCH_R_IN_PROGRESS, SW_SWITCH_R_IN_PROGRESS,
        SW_SWITCH_R_IN_PROGRESS, SW_SWITCH_R_IN_PROGRESS}},
      {DR,
       0,
       {SW_SWITCH_R_NOT_WATCHING, SW_SWITCH_R_NEEDS_FORCE,
        SW_SWITCH_R_NEEDS_FORCE, SW_SWITCH_R_NONE}},
      {ST,
       1,
       {SW_SWITCH_R_NOT_WATCHING, SW_SWITCH_R_NEEDS_FORCE,
        SW_SWITCH_R_NEEDS_FORCE, SW_SWITCH_R_NONE}},
  };
  sw_switch_t s;
  sw_switch_actions_t a;

  for (size_t i = 0; i < sizeof(watched) / sizeof(watched[0]); i++) {
    for (int m = 0; m < 4; m++) {
      uint64_t now = setup_watch(&s, watched[i].phase) + 100;
      sw_colour_t live = s.live;
      int failed = 0;

      if (watched[i].want[m] != SW_SWITCH_R_NONE) {
        CHECK_ROLLBACK_REFUSED(&s, now, modes[m], NULL, watched[i].want[m]);
      } else {
        failed |= !SW_CHECK_INT_EQ(
            sw_switch_rollback(&s, now, modes[m], "t", "test", NULL, &a),
            SW_SWITCH_R_NONE);
        CHECK_TRANSITION(&s, &a, watched[i].phase, SW_SWITCH_ROLLED_BACK,
                         SW_SWITCH_R_ROLLBACK);
        failed |= !SW_CHECK_UINT_EQ(a.flags,
                                    SW_SWITCH_ACT_FLIP | SW_SWITCH_ACT_PERSIST);
        failed |=
            !SW_CHECK_INT_EQ(s.live, live == SW_BLUE ? SW_GREEN : SW_BLUE);
        failed |= !SW_CHECK_INT_EQ(s.last_rollback.mode, modes[m]);
      }
      if (failed)
        printf("  in phase %s, mode %s\n",
               sw_switch_phase_name(watched[i].phase),
               sw_switch_rollback_mode_name(modes[m]));
    }
  }

  for (size_t i = 0; i < sizeof(unwatched) / sizeof(unwatched[0]); i++) {
    for (int m = 0; m < 4; m++) {
      sw_switch_phase_t ph = unwatched[i].phase;
      uint64_t now;

      if (unwatched[i].flipped) {
        setup(&s, SW_SWITCH_DRAINING);
        sw_switch_on_inflight(&s, 2700, SW_BLUE, 0, &a);
        now = 2800;
      } else {
        now = setup(&s, ph) + 100;
      }
      CHECK_PHASE(&s, ph);
      if (unwatched[i].want[m] != SW_SWITCH_R_NONE) {
        CHECK_ROLLBACK_REFUSED(&s, now, modes[m], NULL, unwatched[i].want[m]);
        continue;
      }
      SW_CHECK_INT_EQ(
          sw_switch_rollback(&s, now, modes[m], "t", "test", NULL, &a),
          SW_SWITCH_R_NONE);
      CHECK_TRANSITION(&s, &a, ph, SW_SWITCH_ROLLED_BACK, SW_SWITCH_R_ROLLBACK);
      SW_CHECK_INT_EQ(s.live, SW_BLUE);
      SW_CHECK_INT_EQ(s.drain.colour, SW_GREEN);
    }
  }
  /* The machine's defaults (the watch on), never flipped. */
  sw_switch_init(&s, SW_BLUE, NULL);
  CHECK_ROLLBACK_REFUSED(&s, 100, SW_SWITCH_ROLLBACK_FORCE, NULL,
                         SW_SWITCH_R_NOT_WATCHING);

  /* A trigger at the very end of the auto window finds committed_manual:
   * the window's record comes first, then the refusal. */
  setup_watch(&s, SW_SWITCH_WATCHING);
  SW_CHECK_INT_EQ(
      sw_switch_rollback(&s, T_FLIP + AUTO_MS, SW_SWITCH_ROLLBACK_AUTO, "r1",
                         "test", NULL, &a),
      SW_SWITCH_R_NEEDS_CONFIRM);
  CHECK_TRANSITION(&s, &a, SW_SWITCH_WATCHING, SW_SWITCH_COMMITTED_MANUAL,
                   SW_SWITCH_R_AUTO_WINDOW_END);
  SW_CHECK_INT_EQ(a.flags & SW_SWITCH_ACT_FLIP, 0);
  SW_CHECK_INT_EQ(s.live, SW_GREEN);
  SW_CHECK_UINT_EQ(s.rollbacks, 0);
  /* The blocked path is refused outside watching too: a trigger in the
   * manual window only alerts. */
  CHECK_ROLLBACK_REFUSED(&s, T_FLIP + AUTO_MS + 1, SW_SWITCH_ROLLBACK_AUTO,
                         "blue down", SW_SWITCH_R_NEEDS_CONFIRM);
  SW_CHECK_UINT_EQ(s.rollbacks_blocked, 0);
}

/* An operator's commit ends the watch without touching the traffic. */
static void test_commit(void) {
  sw_switch_params_t p = watch_params();
  sw_switch_t s;
  sw_switch_actions_t a;
  uint64_t v, now;

  setup_with(&s, SW_SWITCH_WATCHING, &p, &a);
  v = s.version;
  SW_CHECK_INT_EQ(sw_switch_commit(&s, T_FLIP + 100, "uid 1000 (pid 42)", &a),
                  SW_SWITCH_R_NONE);
  CHECK_TRANSITION(&s, &a, SW_SWITCH_WATCHING, SW_SWITCH_FINAL,
                   SW_SWITCH_R_COMMITTED);
  SW_CHECK_UINT_EQ(a.flags, SW_SWITCH_ACT_PERSIST);
  SW_CHECK_STR_EQ(a.events[0].text,
                  "green committed by uid 1000 (pid 42) during watching");
  SW_CHECK_INT_EQ(a.events[0].live, SW_GREEN);
  SW_CHECK_INT_EQ(s.live, SW_GREEN);
  SW_CHECK_UINT_EQ(s.version, v + 1);
  SW_CHECK_UINT_EQ(s.flips, 1);
  SW_CHECK_UINT_EQ(s.flip_at, T_FLIP);
  /* The drain goes on; the windows are over. */
  SW_CHECK_INT_EQ(s.drain.active, 1);
  SW_CHECK_UINT_EQ(sw_switch_next_deadline(&s), T_FLIP + DRAIN_MS);
  sw_switch_tick(&s, T_FLIP + MANUAL_MS, &a);
  SW_CHECK_UINT_EQ(a.nevents, 0);
  CHECK_PHASE(&s, SW_SWITCH_FINAL);
  v = s.version;
  SW_CHECK_INT_EQ(sw_switch_commit(&s, T_FLIP + MANUAL_MS, "t", &a),
                  SW_SWITCH_R_NOT_WATCHING);
  SW_CHECK_UINT_EQ(a.flags, 0);
  SW_CHECK_UINT_EQ(s.version, v);

  /* In committed_manual. */
  now = setup_watch(&s, SW_SWITCH_COMMITTED_MANUAL) + 100;
  SW_CHECK_INT_EQ(sw_switch_commit(&s, now, NULL, &a), SW_SWITCH_R_NONE);
  CHECK_TRANSITION(&s, &a, SW_SWITCH_COMMITTED_MANUAL, SW_SWITCH_FINAL,
                   SW_SWITCH_R_COMMITTED);
  SW_CHECK_STR_EQ(a.events[0].text,
                  "green committed by operator during committed_manual");
  SW_CHECK_UINT_EQ(sw_switch_next_deadline(&s), 0);

  /* In rollback_blocked: the new colour stays, and the way back now needs
   * FORCE. */
  now = setup_watch(&s, SW_SWITCH_ROLLBACK_BLOCKED) + 100;
  SW_CHECK_INT_EQ(sw_switch_commit(&s, now, "t", &a), SW_SWITCH_R_NONE);
  CHECK_TRANSITION(&s, &a, SW_SWITCH_ROLLBACK_BLOCKED, SW_SWITCH_FINAL,
                   SW_SWITCH_R_COMMITTED);
  SW_CHECK_UINT_EQ(a.flags, SW_SWITCH_ACT_PERSIST);
  SW_CHECK_STR_CONTAINS(a.events[0].text, "during rollback_blocked");
  SW_CHECK_INT_EQ(s.live, SW_GREEN);
  CHECK_ROLLBACK_REFUSED(&s, now + 100, SW_SWITCH_ROLLBACK_MANUAL, NULL,
                         SW_SWITCH_R_NEEDS_FORCE);

  /* At the end of the manual window the window got there first. */
  setup_watch(&s, SW_SWITCH_COMMITTED_MANUAL);
  SW_CHECK_INT_EQ(sw_switch_commit(&s, T_FLIP + MANUAL_MS, "t", &a),
                  SW_SWITCH_R_NOT_WATCHING);
  CHECK_TRANSITION(&s, &a, SW_SWITCH_COMMITTED_MANUAL, SW_SWITCH_FINAL,
                   SW_SWITCH_R_MANUAL_WINDOW_END);

  /* Nothing to commit elsewhere. */
  {
    static const sw_switch_phase_t watched[] = {FI, RO};
    static const sw_switch_phase_t unwatched[] = {ST, GA, RE, DR};

    for (size_t i = 0; i < 2; i++) {
      now = setup_watch(&s, watched[i]) + 100;
      v = s.version;
      SW_CHECK_INT_EQ(sw_switch_commit(&s, now, "t", &a),
                      SW_SWITCH_R_NOT_WATCHING);
      SW_CHECK_UINT_EQ(a.flags, 0);
      SW_CHECK_UINT_EQ(s.version, v);
      CHECK_PHASE(&s, watched[i]);
    }
    for (size_t i = 0; i < 4; i++) {
      now = setup(&s, unwatched[i]) + 100;
      v = s.version;
      SW_CHECK_INT_EQ(sw_switch_commit(&s, now, "t", &a),
                      SW_SWITCH_R_NOT_WATCHING);
      SW_CHECK_UINT_EQ(a.flags, 0);
      SW_CHECK_UINT_EQ(s.version, v);
      CHECK_PHASE(&s, unwatched[i]);
    }
  }
}

/* A new cutover, or a config switch, waits for the watch to end and for
 * the drain to finish. */
static void test_watch_refuses_cutover(void) {
  static const sw_switch_phase_t watching[] = {WA, CM, RB};
  sw_switch_params_t p = watch_params();
  sw_switch_t s;
  sw_switch_actions_t a;
  uint64_t v, now;

  for (size_t i = 0; i < 3; i++) {
    now = setup_watch(&s, watching[i]) + 100;
    v = s.version;
    SW_CHECK_INT_EQ(sw_switch_request(&s, now, SW_BLUE, 2, "t", &a),
                    SW_SWITCH_R_WATCHING);
    SW_CHECK_INT_EQ(sw_switch_request(&s, now, SW_GREEN, 2, "t", &a),
                    SW_SWITCH_R_WATCHING);
    SW_CHECK_INT_EQ(sw_switch_set_live(&s, now, SW_BLUE, &a),
                    SW_SWITCH_R_WATCHING);
    SW_CHECK_UINT_EQ(a.flags, 0);
    SW_CHECK_UINT_EQ(s.version, v);
    SW_CHECK_INT_EQ(s.live, SW_GREEN);
    CHECK_PHASE(&s, watching[i]);
  }
  /* The watch is the reason even while the old colour drains. */
  setup_with(&s, SW_SWITCH_WATCHING, &p, &a);
  SW_CHECK_INT_EQ(sw_switch_request(&s, T_FLIP + 100, SW_BLUE, 2, "t", &a),
                  SW_SWITCH_R_WATCHING);

  /* Final, with the old colour still draining: in progress until it
   * ends. */
  sw_switch_commit(&s, T_FLIP + 100, "t", &a);
  CHECK_PHASE(&s, SW_SWITCH_FINAL);
  SW_CHECK_INT_EQ(sw_switch_request(&s, T_FLIP + 200, SW_BLUE, 2, "t", &a),
                  SW_SWITCH_R_IN_PROGRESS);
  SW_CHECK_INT_EQ(sw_switch_set_live(&s, T_FLIP + 200, SW_BLUE, &a),
                  SW_SWITCH_R_IN_PROGRESS);
  SW_CHECK_UINT_EQ(a.flags, 0);
  sw_switch_on_inflight(&s, T_FLIP + 300, SW_BLUE, 0, &a);
  CHECK_TRANSITION(&s, &a, SW_SWITCH_FINAL, SW_SWITCH_FINAL,
                   SW_SWITCH_R_DRAINED);
  SW_CHECK_INT_EQ(sw_switch_request(&s, T_FLIP + 400, SW_BLUE, 2, "t", &a),
                  SW_SWITCH_R_NONE);
  CHECK_TRANSITION(&s, &a, SW_SWITCH_FINAL, SW_SWITCH_GATING,
                   SW_SWITCH_R_REQUESTED);
  SW_CHECK_UINT_EQ(a.flags, SW_SWITCH_ACT_VERIFY | SW_SWITCH_ACT_PERSIST);
  SW_CHECK_INT_EQ(s.gate.target, SW_BLUE);

  /* Rolled back, while the colour rolled back from drains: in progress
   * too, then accepted. */
  setup_with(&s, SW_SWITCH_WATCHING, &p, &a);
  sw_switch_rollback(&s, T_FLIP + 100, SW_SWITCH_ROLLBACK_AUTO, "r1", "t", NULL,
                     &a);
  CHECK_PHASE(&s, SW_SWITCH_ROLLED_BACK);
  SW_CHECK_INT_EQ(sw_switch_request(&s, T_FLIP + 200, SW_GREEN, 2, "t", &a),
                  SW_SWITCH_R_IN_PROGRESS);
  SW_CHECK_INT_EQ(sw_switch_request(&s, T_FLIP + 200, SW_BLUE, 2, "t", &a),
                  SW_SWITCH_R_IN_PROGRESS);
  SW_CHECK_INT_EQ(sw_switch_set_live(&s, T_FLIP + 200, SW_GREEN, &a),
                  SW_SWITCH_R_IN_PROGRESS);
  SW_CHECK_UINT_EQ(a.flags, 0);
  SW_CHECK_INT_EQ(s.live, SW_BLUE);
  sw_switch_on_inflight(&s, T_FLIP + 300, SW_GREEN, 0, &a);
  SW_CHECK_INT_EQ(sw_switch_request(&s, T_FLIP + 400, SW_GREEN, 2, "t", &a),
                  SW_SWITCH_R_NONE);
  CHECK_TRANSITION(&s, &a, SW_SWITCH_ROLLED_BACK, SW_SWITCH_GATING,
                   SW_SWITCH_R_REQUESTED);

  /* A config switch from final and from rolled_back: steady, no watch. */
  now = setup_watch(&s, SW_SWITCH_FINAL) + 100;
  SW_CHECK_INT_EQ(sw_switch_set_live(&s, now, SW_BLUE, &a), SW_SWITCH_R_NONE);
  CHECK_TRANSITION(&s, &a, SW_SWITCH_FINAL, SW_SWITCH_STEADY,
                   SW_SWITCH_R_CONFIG);
  SW_CHECK_UINT_EQ(a.flags, SW_SWITCH_ACT_FLIP | SW_SWITCH_ACT_PERSIST);
  SW_CHECK_INT_EQ(a.flip_to, SW_BLUE);
  SW_CHECK_INT_EQ(s.live, SW_BLUE);
  now = setup_watch(&s, SW_SWITCH_ROLLED_BACK) + 100;
  SW_CHECK_INT_EQ(sw_switch_set_live(&s, now, SW_BLUE, &a),
                  SW_SWITCH_R_ALREADY_LIVE);
  SW_CHECK_INT_EQ(sw_switch_set_live(&s, now, SW_GREEN, &a), SW_SWITCH_R_NONE);
  CHECK_TRANSITION(&s, &a, SW_SWITCH_ROLLED_BACK, SW_SWITCH_STEADY,
                   SW_SWITCH_R_CONFIG);
  SW_CHECK_INT_EQ(s.live, SW_GREEN);

  /* A cutover from final flips into a new watch, with new windows. */
  now = setup_watch(&s, SW_SWITCH_FINAL);
  p.auto_window_ms = 4000;
  p.manual_window_ms = 8000;
  p.rise[SW_BLUE] = 1;
  sw_switch_set_params(&s, &p);
  sw_switch_request(&s, now + 100, SW_BLUE, 2, "t", &a);
  sw_switch_on_verify(&s, now + 200, SW_BLUE, SW_SWITCH_VERIFY_PASS, now + 100,
                      "", &a);
  sw_switch_on_health(&s, now + 300, SW_BLUE, 1, now + 200, "", &a);
  CHECK_PHASE(&s, SW_SWITCH_RECHECKING);
  sw_switch_on_health(&s, now + 400, SW_BLUE, 1, now + 300, "", &a);
  sw_switch_on_verify(&s, now + 500, SW_BLUE, SW_SWITCH_VERIFY_PASS, now + 300,
                      "", &a);
  CHECK_TRANSITION(&s, &a, SW_SWITCH_RECHECKING, SW_SWITCH_WATCHING,
                   SW_SWITCH_R_FLIPPED);
  SW_CHECK_UINT_EQ(a.flags, SW_SWITCH_ACT_FLIP | SW_SWITCH_ACT_WATCH |
                                SW_SWITCH_ACT_PERSIST);
  SW_CHECK_INT_EQ(s.live, SW_BLUE);
  SW_CHECK_UINT_EQ(s.flip_at, now + 500);
  SW_CHECK_UINT_EQ(s.flips, 2);
  SW_CHECK_UINT_EQ(s.watch_auto_ms, 4000);
  SW_CHECK_UINT_EQ(sw_switch_next_deadline(&s), now + 500 + 4000);
}

/* A restart resumes the watch from the recorded flip. */
static void test_restore_watch(void) {
  sw_switch_params_t p = watch_params(), other = watch_params();
  sw_switch_persisted_t st;
  sw_switch_t s;
  sw_switch_actions_t a;

  memset(&st, 0, sizeof(st));
  st.live = SW_GREEN;
  st.phase = SW_SWITCH_WATCHING;
  st.flip_at = 10000;
  st.version = 9;
  st.auto_window_ms = AUTO_MS;
  st.manual_window_ms = MANUAL_MS;

  /* Inside the auto window: watching, with what is left of it. */
  SW_CHECK_INT_EQ(sw_switch_restore(&s, 10400, &p, &st, &a), 0);
  CHECK_PHASE(&s, SW_SWITCH_WATCHING);
  SW_CHECK_UINT_EQ(a.flags, 0);
  SW_CHECK_UINT_EQ(a.nevents, 0);
  SW_CHECK_INT_EQ(s.live, SW_GREEN);
  SW_CHECK_UINT_EQ(s.version, 9);
  SW_CHECK_UINT_EQ(s.flip_at, 10000);
  SW_CHECK_UINT_EQ(s.watch_auto_ms, AUTO_MS);
  SW_CHECK_UINT_EQ(s.watch_manual_ms, MANUAL_MS);
  SW_CHECK_INT_EQ(s.drain.active, 0);
  SW_CHECK_UINT_EQ(sw_switch_next_deadline(&s), 11000);
  sw_switch_tick(&s, 10999, &a);
  SW_CHECK_UINT_EQ(a.flags, 0);
  sw_switch_tick(&s, 11000, &a);
  CHECK_TRANSITION(&s, &a, SW_SWITCH_WATCHING, SW_SWITCH_COMMITTED_MANUAL,
                   SW_SWITCH_R_AUTO_WINDOW_END);
  SW_CHECK_UINT_EQ(s.version, 10);
  /* A trigger in the resumed window still rolls back. */
  sw_switch_restore(&s, 10400, &p, &st, &a);
  SW_CHECK_INT_EQ(sw_switch_rollback(&s, 10500, SW_SWITCH_ROLLBACK_AUTO, "r3",
                                     "test", NULL, &a),
                  SW_SWITCH_R_NONE);
  SW_CHECK_INT_EQ(s.live, SW_BLUE);
  SW_CHECK_INT_EQ(s.drain.colour, SW_GREEN);
  CHECK_PHASE(&s, SW_SWITCH_ROLLED_BACK);

  /* The windows as armed hold, whatever the params say now; a file
   * without them takes the params'; a manual window below the auto one is
   * taken as the auto one. */
  other.auto_window_ms = 60000;
  other.manual_window_ms = 120000;
  sw_switch_restore(&s, 10400, &other, &st, &a);
  SW_CHECK_UINT_EQ(s.watch_auto_ms, AUTO_MS);
  SW_CHECK_UINT_EQ(sw_switch_next_deadline(&s), 11000);
  st.auto_window_ms = 0;
  st.manual_window_ms = 0;
  sw_switch_restore(&s, 10400, &other, &st, &a);
  SW_CHECK_UINT_EQ(s.watch_auto_ms, 60000);
  SW_CHECK_UINT_EQ(s.watch_manual_ms, 120000);
  SW_CHECK_UINT_EQ(sw_switch_next_deadline(&s), 70000);
  st.auto_window_ms = 2000;
  st.manual_window_ms = 500;
  sw_switch_restore(&s, 10400, &p, &st, &a);
  SW_CHECK_UINT_EQ(s.watch_manual_ms, 2000);
  st.auto_window_ms = AUTO_MS;
  st.manual_window_ms = MANUAL_MS;

  /* The auto window ran out while the process was down: committed_manual,
   * in the restore call. */
  SW_CHECK_INT_EQ(sw_switch_restore(&s, 11500, &p, &st, &a), 0);
  CHECK_TRANSITION(&s, &a, SW_SWITCH_WATCHING, SW_SWITCH_COMMITTED_MANUAL,
                   SW_SWITCH_R_AUTO_WINDOW_END);
  SW_CHECK_UINT_EQ(a.flags, SW_SWITCH_ACT_PERSIST);
  SW_CHECK_UINT_EQ(a.events[0].at, 11500);
  SW_CHECK_INT_EQ(a.events[0].live, SW_GREEN);
  SW_CHECK_UINT_EQ(s.version, 10);
  SW_CHECK_INT_EQ(s.live, SW_GREEN);
  SW_CHECK_UINT_EQ(sw_switch_next_deadline(&s), 13000);
  SW_CHECK_UINT_EQ(sw_switch_history_count(&s), 1);

  /* Both ran out: final, two records in order. */
  SW_CHECK_INT_EQ(sw_switch_restore(&s, 20000, &p, &st, &a), 0);
  CHECK_PHASE(&s, SW_SWITCH_FINAL);
  if (SW_CHECK_UINT_EQ(a.nevents, 2)) {
    SW_CHECK_INT_EQ(a.events[0].reason, SW_SWITCH_R_AUTO_WINDOW_END);
    SW_CHECK_UINT_EQ(a.events[0].version, 10);
    SW_CHECK_INT_EQ(a.events[1].reason, SW_SWITCH_R_MANUAL_WINDOW_END);
    SW_CHECK_INT_EQ(a.events[1].from, SW_SWITCH_COMMITTED_MANUAL);
    SW_CHECK_INT_EQ(a.events[1].to, SW_SWITCH_FINAL);
    SW_CHECK_UINT_EQ(a.events[1].version, 11);
  }
  SW_CHECK_UINT_EQ(s.version, 11);
  SW_CHECK_INT_EQ(s.live, SW_GREEN);
  SW_CHECK_UINT_EQ(sw_switch_next_deadline(&s), 0);

  /* committed_manual resumes with what is left of the manual window. */
  st.phase = SW_SWITCH_COMMITTED_MANUAL;
  SW_CHECK_INT_EQ(sw_switch_restore(&s, 12000, &p, &st, &a), 0);
  CHECK_PHASE(&s, SW_SWITCH_COMMITTED_MANUAL);
  SW_CHECK_UINT_EQ(a.nevents, 0);
  SW_CHECK_UINT_EQ(sw_switch_next_deadline(&s), 13000);
  SW_CHECK_INT_EQ(sw_switch_restore(&s, 13000, &p, &st, &a), 0);
  CHECK_TRANSITION(&s, &a, SW_SWITCH_COMMITTED_MANUAL, SW_SWITCH_FINAL,
                   SW_SWITCH_R_MANUAL_WINDOW_END);

  /* final, rolled_back and rollback_blocked resume as they were, with no
   * event, whatever the time. */
  st.phase = SW_SWITCH_FINAL;
  SW_CHECK_INT_EQ(sw_switch_restore(&s, 50000, &p, &st, &a), 0);
  CHECK_PHASE(&s, SW_SWITCH_FINAL);
  SW_CHECK_UINT_EQ(a.flags, 0);
  SW_CHECK_UINT_EQ(a.nevents, 0);
  SW_CHECK_UINT_EQ(s.version, 9);
  SW_CHECK_INT_EQ(s.live, SW_GREEN);
  SW_CHECK_UINT_EQ(s.watch_auto_ms, AUTO_MS);
  SW_CHECK_UINT_EQ(s.watch_manual_ms, MANUAL_MS);
  SW_CHECK_UINT_EQ(sw_switch_next_deadline(&s), 0);
  SW_CHECK_INT_EQ(sw_switch_request(&s, 50100, SW_BLUE, 1, "t", &a),
                  SW_SWITCH_R_NONE);

  st.phase = SW_SWITCH_ROLLED_BACK;
  st.live = SW_BLUE;
  SW_CHECK_INT_EQ(sw_switch_restore(&s, 50000, &p, &st, &a), 0);
  CHECK_PHASE(&s, SW_SWITCH_ROLLED_BACK);
  SW_CHECK_UINT_EQ(a.flags, 0);
  SW_CHECK_UINT_EQ(a.nevents, 0);
  SW_CHECK_INT_EQ(s.live, SW_BLUE);
  SW_CHECK_UINT_EQ(s.version, 9);
  SW_CHECK_INT_EQ(s.drain.active, 0);
  SW_CHECK_UINT_EQ(sw_switch_next_deadline(&s), 0);
  CHECK_ROLLBACK_REFUSED(&s, 50050, SW_SWITCH_ROLLBACK_FORCE, NULL,
                         SW_SWITCH_R_ALREADY_ROLLED_BACK);
  /* The drain died with the process: a new cutover is accepted. */
  SW_CHECK_INT_EQ(sw_switch_request(&s, 50100, SW_GREEN, 1, "t", &a),
                  SW_SWITCH_R_NONE);

  st.phase = SW_SWITCH_ROLLBACK_BLOCKED;
  st.live = SW_GREEN;
  SW_CHECK_INT_EQ(sw_switch_restore(&s, 50000, &p, &st, &a), 0);
  CHECK_PHASE(&s, SW_SWITCH_ROLLBACK_BLOCKED);
  SW_CHECK_UINT_EQ(a.flags, 0);
  SW_CHECK_UINT_EQ(a.nevents, 0);
  SW_CHECK_INT_EQ(s.live, SW_GREEN);
  SW_CHECK_INT_EQ(sw_switch_request(&s, 50050, SW_BLUE, 1, "t", &a),
                  SW_SWITCH_R_WATCHING);
  /* Long past its windows, a blocked rollback needs --force by hand. */
  SW_CHECK_INT_EQ(sw_switch_rollback(&s, 50100, SW_SWITCH_ROLLBACK_MANUAL, NULL,
                                     "blue fixed", NULL, &a),
                  SW_SWITCH_R_NEEDS_FORCE);
  SW_CHECK_INT_EQ(sw_switch_rollback(&s, 50100, SW_SWITCH_ROLLBACK_CONFIRM,
                                     NULL, "blue fixed", NULL, &a),
                  SW_SWITCH_R_NEEDS_FORCE);
  SW_CHECK_INT_EQ(s.live, SW_GREEN);
  SW_CHECK_INT_EQ(sw_switch_rollback(&s, 50100, SW_SWITCH_ROLLBACK_FORCE, NULL,
                                     "blue fixed", NULL, &a),
                  SW_SWITCH_R_NONE);
  SW_CHECK_INT_EQ(s.live, SW_BLUE);

  /* The snapshot carries the windows, and a round trip resumes the
   * watch. */
  setup_with(&s, SW_SWITCH_WATCHING, &p, &a);
  sw_switch_snapshot(&s, &st);
  SW_CHECK_INT_EQ(st.phase, SW_SWITCH_WATCHING);
  SW_CHECK_INT_EQ(st.live, SW_GREEN);
  SW_CHECK_UINT_EQ(st.flip_at, T_FLIP);
  SW_CHECK_UINT_EQ(st.auto_window_ms, AUTO_MS);
  SW_CHECK_UINT_EQ(st.manual_window_ms, MANUAL_MS);
  {
    sw_switch_t back;
    SW_CHECK_INT_EQ(sw_switch_restore(&back, T_FLIP + 500, NULL, &st, &a), 0);
    CHECK_PHASE(&back, SW_SWITCH_WATCHING);
    SW_CHECK_UINT_EQ(back.version, s.version);
    SW_CHECK_UINT_EQ(back.watch_auto_ms, AUTO_MS);
    SW_CHECK_UINT_EQ(sw_switch_next_deadline(&back), T_FLIP + AUTO_MS);
    SW_CHECK_UINT_EQ(a.nevents, 0);
  }
  setup_watch(&s, SW_SWITCH_ROLLED_BACK);
  sw_switch_snapshot(&s, &st);
  SW_CHECK_INT_EQ(st.phase, SW_SWITCH_ROLLED_BACK);
  SW_CHECK_INT_EQ(st.live, SW_BLUE);
  SW_CHECK_UINT_EQ(st.flip_at, T_FLIP + 100);
  SW_CHECK_UINT_EQ(st.auto_window_ms, AUTO_MS);
  SW_CHECK_UINT_EQ(st.manual_window_ms, MANUAL_MS);
}

/* ---- the hold barrier: migrating and rollback_migrating ---- */

#define MI SW_SWITCH_MIGRATING
#define RM SW_SWITCH_ROLLBACK_MIGRATING
#define T_MIGRATE 2300  /* the third pass: the liveness gate passes */
#define T_MIGRATED 3300 /* sw_switch_migrated(ok) in setup_migrate_with */
#define HOLD_FLAGS (SW_SWITCH_ACT_HOLD | SW_SWITCH_ACT_MIGRATE_BACK)

static const sw_switch_rollback_mode_t all_modes[4] = {
    SW_SWITCH_ROLLBACK_AUTO, SW_SWITCH_ROLLBACK_MANUAL,
    SW_SWITCH_ROLLBACK_CONFIRM, SW_SWITCH_ROLLBACK_FORCE};

/* Puts s into `phase` of a cutover to green requested at T_REQ with
 * SW_SWITCH_REQ_MIGRATE, under params p: gating, migrating (from
 * T_MIGRATE) or rechecking (from T_MIGRATED). Blue is live, both colours
 * healthy. Returns the time the phase was entered. */
static uint64_t setup_migrate_with(sw_switch_t *s,
                                   sw_switch_phase_t phase,
                                   const sw_switch_params_t *p,
                                   sw_switch_actions_t *a) {
  uint64_t now = T_INIT;

  sw_switch_init(s, SW_BLUE, p);
  sw_switch_on_colour_health(s, now, SW_BLUE, 1, "", a);
  sw_switch_on_colour_health(s, now, SW_GREEN, 1, "", a);
  now = T_REQ;
  sw_switch_request_ex(s, now, SW_GREEN, 2, "test", SW_SWITCH_REQ_MIGRATE, a);
  if (phase == SW_SWITCH_GATING)
    return now;
  passes(s, &now, SW_GREEN, 3, a); /* 2100, 2200, 2300 */
  if (phase == SW_SWITCH_MIGRATING)
    return now;
  now = T_MIGRATED;
  sw_switch_migrated(s, now, 1, "", a);
  return now;
}

/* The same with test_params(): a flip drains. */
static uint64_t setup_migrate(sw_switch_t *s, sw_switch_phase_t phase) {
  sw_switch_params_t p = test_params();
  sw_switch_actions_t a;

  return setup_migrate_with(s, phase, &p, &a);
}

/* Turns the reverse migration on in s's params, as a reload would. */
static void enable_rollback_migrate(sw_switch_t *s) {
  sw_switch_params_t p = s->params;

  p.rollback_migrate = 1;
  sw_switch_set_params(s, &p);
}

/* Puts s into rollback_migrating: setup_watch(from), the reverse
 * migration configured, and sw_switch_rollback_migrate(mode, "r4") 100 ms
 * later. Returns that time. */
static uint64_t setup_rollback_migrating(sw_switch_t *s,
                                         sw_switch_phase_t from,
                                         sw_switch_rollback_mode_t mode) {
  sw_switch_actions_t a;
  uint64_t now = setup_watch(s, from) + 100;

  enable_rollback_migrate(s);
  sw_switch_rollback_migrate(s, now, mode, "r4", "schema check failed", &a);
  return now;
}

/* Checks that the last call changed nothing of what `before` holds and
 * asked for nothing. */
static void check_unchanged_at(const char *file,
                               int line,
                               const sw_switch_t *s,
                               const sw_switch_t *before,
                               const sw_switch_actions_t *a) {
  SW_CHECK_STR_EQ_AT(file, line, sw_switch_phase_name(s->phase),
                     sw_switch_phase_name(before->phase));
  SW_CHECK_INT_EQ_AT(file, line, s->live, before->live);
  SW_CHECK_UINT_EQ_AT(file, line, s->version, before->version);
  SW_CHECK_UINT_EQ_AT(file, line, s->nhistory, before->nhistory);
  SW_CHECK_UINT_EQ_AT(file, line, s->flips, before->flips);
  SW_CHECK_UINT_EQ_AT(file, line, s->rollbacks_blocked,
                      before->rollbacks_blocked);
  SW_CHECK_INT_EQ_AT(file, line, s->last_gate.outcome,
                     before->last_gate.outcome);
  SW_CHECK_UINT_EQ_AT(file, line, a->flags, 0);
  SW_CHECK_UINT_EQ_AT(file, line, a->nevents, 0);
}
#define CHECK_UNCHANGED(s, before, a) \
  check_unchanged_at(__FILE__, __LINE__, s, before, a)

/* A migrate cutover gates on liveness only: rise fresh passes of the
 * target and a healthy live colour. No verification is asked for at the
 * request, and none counts, whatever its result, before the migration. */
static void test_migrate_gate(void) {
  sw_switch_params_t p = test_params();
  sw_switch_t s, before;
  sw_switch_actions_t a;
  uint64_t now;

  setup(&s, SW_SWITCH_STEADY);
  now = T_REQ;
  SW_CHECK_INT_EQ(sw_switch_request_ex(&s, now, SW_GREEN, 2, "uid 1000",
                                       SW_SWITCH_REQ_MIGRATE, &a),
                  SW_SWITCH_R_NONE);
  CHECK_TRANSITION(&s, &a, SW_SWITCH_STEADY, SW_SWITCH_GATING,
                   SW_SWITCH_R_REQUESTED);
  SW_CHECK_UINT_EQ(a.flags, SW_SWITCH_ACT_PERSIST); /* no VERIFY */
  SW_CHECK_STR_EQ(a.events[0].text,
                  "cutover to green requested by uid 1000 (rise 3, gate "
                  "timeout 60000 ms, with a migration under the hold)");
  SW_CHECK_INT_EQ(s.gate.migrate, 1);
  SW_CHECK_UINT_EQ(s.gate.deadline, T_REQ + GATE_MS);
  SW_CHECK_UINT_EQ(sw_switch_next_deadline(&s), T_REQ + GATE_MS);
  /* Without the flag, the request is the plain one. */
  {
    sw_switch_t plain;
    setup(&plain, SW_SWITCH_STEADY);
    SW_CHECK_INT_EQ(sw_switch_request_ex(&plain, now, SW_GREEN, 2, "t", 0, &a),
                    SW_SWITCH_R_NONE);
    SW_CHECK_UINT_EQ(a.flags, SW_SWITCH_ACT_VERIFY | SW_SWITCH_ACT_PERSIST);
    SW_CHECK_INT_EQ(plain.gate.migrate, 0);
  }

  /* The target's schema is not there yet: its verification neither ends
   * the gate (fail, inconclusive) nor counts (pass). */
  before = s;
  sw_switch_on_verify(&s, now + 10, SW_GREEN, SW_SWITCH_VERIFY_FAIL, now,
                      "missing migration shop.0042_rename", &a);
  CHECK_UNCHANGED(&s, &before, &a);
  sw_switch_on_verify(&s, now + 20, SW_GREEN, SW_SWITCH_VERIFY_INCONCLUSIVE,
                      now, "connection refused", &a);
  CHECK_UNCHANGED(&s, &before, &a);
  sw_switch_on_verify(&s, now + 30, SW_GREEN, SW_SWITCH_VERIFY_PASS, now, "",
                      &a);
  CHECK_UNCHANGED(&s, &before, &a);
  SW_CHECK_INT_EQ(s.gate.verified, 0);

  /* rise - 1 passes are not enough. */
  passes(&s, &now, SW_GREEN, 2, &a); /* 2100, 2200 */
  CHECK_PHASE(&s, SW_SWITCH_GATING);
  SW_CHECK_UINT_EQ(s.gate.passes, 2);
  SW_CHECK_UINT_EQ(a.nevents, 0);
  /* The third: migrating, with HOLD, and still no verification. */
  passes(&s, &now, SW_GREEN, 1, &a); /* 2300 */
  CHECK_TRANSITION(&s, &a, SW_SWITCH_GATING, SW_SWITCH_MIGRATING,
                   SW_SWITCH_R_GATE_PASSED);
  SW_CHECK_UINT_EQ(a.flags, SW_SWITCH_ACT_HOLD | SW_SWITCH_ACT_PERSIST);
  SW_CHECK_STR_EQ(a.events[0].text,
                  "green passed 3 health checks in a row; live blue healthy; "
                  "holding new requests for the migration");
  SW_CHECK_INT_EQ(a.events[0].target, SW_GREEN);
  SW_CHECK_INT_EQ(a.events[0].live, SW_BLUE);
  SW_CHECK_UINT_EQ(a.events[0].at, T_MIGRATE);
  SW_CHECK_INT_EQ(s.live, SW_BLUE);
  SW_CHECK_UINT_EQ(s.flips, 0);
  SW_CHECK_UINT_EQ(s.gate.migrating_at, T_MIGRATE);
  SW_CHECK_INT_EQ(s.gate.migrate, 1);
  SW_CHECK_INT_EQ(s.gate.target, SW_GREEN);
  SW_CHECK_INT_EQ(s.last_gate.outcome, SW_SWITCH_OUTCOME_NONE);

  /* The live colour's health is the other condition: with blue not known
   * yet, any number of passes waits for it. */
  sw_switch_init(&s, SW_BLUE, &p);
  now = T_REQ;
  SW_CHECK_INT_EQ(sw_switch_request_ex(&s, now, SW_GREEN, 1, NULL,
                                       SW_SWITCH_REQ_MIGRATE, &a),
                  SW_SWITCH_R_NONE);
  passes(&s, &now, SW_GREEN, 5, &a);
  CHECK_PHASE(&s, SW_SWITCH_GATING);
  SW_CHECK_UINT_EQ(s.gate.passes, 5);
  sw_switch_on_colour_health(&s, now + 10, SW_BLUE, 1, "", &a);
  CHECK_TRANSITION(&s, &a, SW_SWITCH_GATING, SW_SWITCH_MIGRATING,
                   SW_SWITCH_R_GATE_PASSED);
  SW_CHECK_UINT_EQ(a.flags, SW_SWITCH_ACT_HOLD | SW_SWITCH_ACT_PERSIST);
  SW_CHECK_UINT_EQ(s.gate.migrating_at, now + 10);

  /* Before the gate passes, the usual liveness rules hold: stale passes do
   * not count, a failure resets the count, the live colour going down ends
   * the gate. */
  setup_migrate(&s, SW_SWITCH_GATING);
  now = T_REQ;
  sw_switch_on_health(&s, now + 50, SW_GREEN, 1, T_REQ - 1, "", &a);
  SW_CHECK_UINT_EQ(s.gate.passes, 0);
  passes(&s, &now, SW_GREEN, 2, &a); /* 2100, 2200 */
  sw_switch_on_health(&s, now + 50, SW_GREEN, 0, now + 50, "HTTP 503", &a);
  SW_CHECK_UINT_EQ(s.gate.passes, 0);
  CHECK_PHASE(&s, SW_SWITCH_GATING);
  sw_switch_on_colour_health(&s, now + 60, SW_BLUE, 0, "3 checks failed", &a);
  CHECK_TRANSITION(&s, &a, SW_SWITCH_GATING, SW_SWITCH_STEADY,
                   SW_SWITCH_R_LIVE_UNHEALTHY);
  SW_CHECK_UINT_EQ(a.flags & SW_SWITCH_ACT_HOLD, 0);

  /* A live colour already down ends it in the request, without a hold. */
  setup(&s, SW_SWITCH_STEADY);
  sw_switch_on_colour_health(&s, 1500, SW_BLUE, 0, "blue down", &a);
  SW_CHECK_INT_EQ(sw_switch_request_ex(&s, T_REQ, SW_GREEN, 2, "t",
                                       SW_SWITCH_REQ_MIGRATE, &a),
                  SW_SWITCH_R_NONE);
  CHECK_PHASE(&s, SW_SWITCH_STEADY);
  SW_CHECK_UINT_EQ(a.nevents, 2);
  SW_CHECK_INT_EQ(s.last_gate.reason, SW_SWITCH_R_LIVE_UNHEALTHY);
  SW_CHECK_UINT_EQ(a.flags & SW_SWITCH_ACT_HOLD, 0);
}

/* One phase against every event of the first matrix. */
static void run_row_at(const char *file,
                       int line,
                       sw_switch_phase_t ph,
                       const want_t *row,
                       uint64_t (*enter)(sw_switch_t *s)) {
  for (int ev = 0; ev < EV_COUNT; ev++) {
    const want_t *w = &row[ev];
    sw_switch_t s;
    sw_switch_actions_t a;
    uint64_t now = enter(&s) + 100;
    uint64_t version = s.version;
    sw_colour_t live = s.live;
    size_t nhistory = s.nhistory;
    int ret, ok = 1;

    SW_CHECK_STR_EQ_AT(file, line, sw_switch_phase_name(s.phase),
                       sw_switch_phase_name(ph));
    ret = apply(&s, (ev_t)ev, now, &a);
    ok &= SW_CHECK_STR_EQ_AT(file, line, sw_switch_phase_name(s.phase),
                             sw_switch_phase_name(w->phase));
    ok &= SW_CHECK_INT_EQ_AT(file, line, ret, w->ret);
    ok &= SW_CHECK_UINT_EQ_AT(file, line, a.flags, w->flags);
    ok &= SW_CHECK_INT_EQ_AT(file, line, s.live, live);
    if (w->reason == SW_SWITCH_R_NONE) {
      ok &= SW_CHECK_UINT_EQ_AT(file, line, a.nevents, 0);
      ok &= SW_CHECK_UINT_EQ_AT(file, line, s.version, version);
      ok &= SW_CHECK_UINT_EQ_AT(file, line, s.nhistory, nhistory);
    } else {
      ok &= SW_CHECK_UINT_EQ_AT(file, line, a.nevents, 1);
      ok &= SW_CHECK_UINT_EQ_AT(file, line, s.version, version + 1);
      if (a.nevents == 1) {
        ok &= SW_CHECK_INT_EQ_AT(file, line, a.events[0].from, ph);
        ok &= SW_CHECK_STR_EQ_AT(file, line,
                                 sw_switch_reason_name(a.events[0].reason),
                                 sw_switch_reason_name(w->reason));
      }
      if (s.phase == SW_SWITCH_STEADY) {
        ok &= SW_CHECK_INT_EQ_AT(file, line, s.last_gate.reason, w->reason);
        ok &= SW_CHECK_INT_EQ_AT(file, line, s.gate.migrate, 0);
        ok &= SW_CHECK_UINT_EQ_AT(file, line, sw_switch_next_deadline(&s), 0);
      }
    }
    if (!ok)
      printf("  in phase %s, event '%s'\n", sw_switch_phase_name(ph),
             ev_names[ev]);
  }
}
#define RUN_ROW(ph, row, enter) run_row_at(__FILE__, __LINE__, ph, row, enter)

static uint64_t enter_migrating(sw_switch_t *s) {
  return setup_migrate(s, SW_SWITCH_MIGRATING);
}

static uint64_t enter_rollback_migrating(sw_switch_t *s) {
  return setup_rollback_migrating(s, SW_SWITCH_WATCHING,
                                  SW_SWITCH_ROLLBACK_AUTO);
}

/* The events the hold phases ignore: health of either colour, any
 * verification, in-flight counts with no drain, a tick with nothing due. */
#define H_IGNORED(ph)                                                         \
  [EV_HEALTH_GREEN_PASS] = IGN(ph), [EV_HEALTH_GREEN_STALE_PASS] = IGN(ph),   \
  [EV_HEALTH_GREEN_FAIL] = IGN(ph), [EV_HEALTH_BLUE_PASS] = IGN(ph),          \
  [EV_HEALTH_BLUE_FAIL] = IGN(ph), [EV_COLOUR_BLUE_UP] = IGN(ph),             \
  [EV_COLOUR_BLUE_DOWN] = IGN(ph), [EV_COLOUR_GREEN_UP] = IGN(ph),            \
  [EV_COLOUR_GREEN_DOWN] = IGN(ph), [EV_VERIFY_GREEN_PASS] = IGN(ph),         \
  [EV_VERIFY_GREEN_FAIL] = IGN(ph), [EV_VERIFY_GREEN_INCONCLUSIVE] = IGN(ph), \
  [EV_VERIFY_GREEN_STALE_FAIL] = IGN(ph), [EV_VERIFY_BLUE_FAIL] = IGN(ph),    \
  [EV_INFLIGHT_BLUE_0] = IGN(ph), [EV_INFLIGHT_BLUE_5] = IGN(ph),             \
  [EV_INFLIGHT_GREEN_0] = IGN(ph), [EV_DRAIN_CANCELLED_BLUE] = IGN(ph),       \
  [EV_TICK] = IGN(ph)

/* Migrating: the migration decides, not the health of either colour (the
 * target may fail on the schema it waits for, the live colour on the one
 * being replaced) nor a verification. Only the gate deadline and an abort
 * end it, and no other cutover may start. */
static const want_t migrating_row[EV_COUNT] = {
    [EV_REQUEST_GREEN] = REFUSE(MI, IN_PROGRESS),
    [EV_REQUEST_BLUE] = REFUSE(MI, IN_PROGRESS),
    [EV_REQUEST_NO_SERVERS] = REFUSE(MI, IN_PROGRESS),
    [EV_REQUEST_INVALID] = REFUSE(MI, INVALID),
    [EV_ABORT] = {ST, SW_SWITCH_R_NONE, PERSIST, SW_SWITCH_R_OPERATOR},
    H_IGNORED(MI),
    [EV_TICK_DEADLINE] = TO(ST, TIMEOUT),
};

/* Rollback_migrating (green live, no drain left): waits for the reverse
 * migration; no event of the first matrix moves it, not even the time. */
static const want_t rollback_migrating_row[EV_COUNT] = {
    [EV_REQUEST_GREEN] = REFUSE(RM, IN_PROGRESS),
    [EV_REQUEST_BLUE] = REFUSE(RM, IN_PROGRESS),
    [EV_REQUEST_NO_SERVERS] = REFUSE(RM, IN_PROGRESS),
    [EV_REQUEST_INVALID] = REFUSE(RM, INVALID),
    [EV_ABORT] = REFUSE(RM, NOT_GATING),
    H_IGNORED(RM),
    [EV_TICK_DEADLINE] = IGN(RM),
};

static void test_hold_matrix(void) {
  sw_switch_t s;
  sw_switch_actions_t a;
  uint64_t now;

  RUN_ROW(MI, migrating_row, enter_migrating);
  RUN_ROW(RM, rollback_migrating_row, enter_rollback_migrating);

  /* Ignored by the gate, but kept: the re-check and the next request read
   * the colours' health. */
  now = setup_migrate(&s, SW_SWITCH_MIGRATING) + 100;
  sw_switch_on_colour_health(&s, now, SW_BLUE, 0, "HTTP 500", &a);
  sw_switch_on_colour_health(&s, now, SW_GREEN, 0, "HTTP 500", &a);
  sw_switch_on_health(&s, now, SW_GREEN, 0, now, "HTTP 500", &a);
  CHECK_PHASE(&s, SW_SWITCH_MIGRATING);
  SW_CHECK_UINT_EQ(a.nevents, 0);
  SW_CHECK_INT_EQ(s.health[SW_BLUE], SW_SWITCH_HEALTH_DOWN);
  SW_CHECK_INT_EQ(s.health[SW_GREEN], SW_SWITCH_HEALTH_DOWN);
  SW_CHECK_STR_EQ(s.health_reason[SW_BLUE], "HTTP 500");
}

/* The migration done: rechecking, with a probe and a verification of the
 * target started from now; the verification is what admits it. Then the
 * flip as after any gate. */
static void test_migrated(void) {
  sw_switch_t s;
  sw_switch_actions_t a;
  uint64_t now;

  setup_migrate(&s, SW_SWITCH_MIGRATING);
  now = T_MIGRATED;
  SW_CHECK_INT_EQ(
      sw_switch_migrated(&s, now, 1, "applied shop.0042_rename", &a),
      SW_SWITCH_R_NONE);
  CHECK_TRANSITION(&s, &a, SW_SWITCH_MIGRATING, SW_SWITCH_RECHECKING,
                   SW_SWITCH_R_MIGRATED);
  SW_CHECK_UINT_EQ(a.flags, SW_SWITCH_ACT_PROBE | SW_SWITCH_ACT_VERIFY |
                                SW_SWITCH_ACT_PERSIST);
  SW_CHECK_INT_EQ(a.probe, SW_GREEN);
  SW_CHECK_INT_EQ(a.verify, SW_GREEN);
  SW_CHECK_INT_EQ(a.events[0].target, SW_GREEN);
  SW_CHECK_STR_EQ(a.events[0].text,
                  "migration for green done after 1000 ms: applied "
                  "shop.0042_rename; re-checking");
  SW_CHECK_INT_EQ(s.live, SW_BLUE);
  SW_CHECK_UINT_EQ(s.gate.recheck_at, now);
  SW_CHECK_UINT_EQ(s.gate.recheck_deadline, now + RECHECK_MS);
  SW_CHECK_UINT_EQ(sw_switch_next_deadline(&s), now + RECHECK_MS);

  /* Evidence from before the migration ended does not count. */
  sw_switch_on_health(&s, now + 10, SW_GREEN, 1, now - 1, "", &a);
  sw_switch_on_verify(&s, now + 20, SW_GREEN, SW_SWITCH_VERIFY_PASS, now - 1,
                      "", &a);
  CHECK_PHASE(&s, SW_SWITCH_RECHECKING);
  SW_CHECK_INT_EQ(s.gate.probe_ok, 0);
  SW_CHECK_INT_EQ(s.gate.recheck_verified, 0);
  /* Fresh evidence flips. */
  sw_switch_on_health(&s, now + 30, SW_GREEN, 1, now, "", &a);
  CHECK_PHASE(&s, SW_SWITCH_RECHECKING);
  sw_switch_on_verify(&s, now + 40, SW_GREEN, SW_SWITCH_VERIFY_PASS, now, "",
                      &a);
  CHECK_TRANSITION(&s, &a, SW_SWITCH_RECHECKING, SW_SWITCH_DRAINING,
                   SW_SWITCH_R_FLIPPED);
  SW_CHECK_UINT_EQ(a.flags, SW_SWITCH_ACT_FLIP | SW_SWITCH_ACT_PERSIST);
  SW_CHECK_INT_EQ(a.flip_to, SW_GREEN);
  SW_CHECK_INT_EQ(s.live, SW_GREEN);
  SW_CHECK_UINT_EQ(s.flip_at, now + 40);
  SW_CHECK_UINT_EQ(s.flips, 1);
  SW_CHECK_INT_EQ(s.last_gate.outcome, SW_SWITCH_OUTCOME_PASSED);
  SW_CHECK_INT_EQ(s.last_gate.reason, SW_SWITCH_R_FLIPPED);
  SW_CHECK_UINT_EQ(s.gates[SW_SWITCH_OUTCOME_PASSED], 1);
  SW_CHECK_INT_EQ(s.drain.active, 1);
  SW_CHECK_INT_EQ(s.drain.colour, SW_BLUE);
  SW_CHECK_INT_EQ(s.gate.migrate, 0);

  /* Without a text the record says only what happened. */
  setup_migrate(&s, SW_SWITCH_MIGRATING);
  sw_switch_migrated(&s, T_MIGRATED, 1, NULL, &a);
  if (SW_CHECK_UINT_EQ(a.nevents, 1))
    SW_CHECK_STR_EQ(a.events[0].text,
                    "migration for green done after 1000 ms; re-checking");

  /* After the migration the target's verification counts again, and a
   * failure of it or of the probe ends the gate like any re-check. */
  setup_migrate(&s, SW_SWITCH_RECHECKING);
  sw_switch_on_verify(&s, T_MIGRATED + 10, SW_GREEN, SW_SWITCH_VERIFY_FAIL,
                      T_MIGRATED, "missing column shop_item.title", &a);
  CHECK_TRANSITION(&s, &a, SW_SWITCH_RECHECKING, SW_SWITCH_STEADY,
                   SW_SWITCH_R_VERIFY_FAILED);
  SW_CHECK_INT_EQ(s.last_gate.outcome, SW_SWITCH_OUTCOME_FAILED);
  SW_CHECK_STR_CONTAINS(s.last_gate.message, "missing column shop_item.title");
  SW_CHECK_INT_EQ(s.live, SW_BLUE);
  setup_migrate(&s, SW_SWITCH_RECHECKING);
  sw_switch_on_verify(&s, T_MIGRATED + 10, SW_GREEN,
                      SW_SWITCH_VERIFY_INCONCLUSIVE, T_MIGRATED,
                      "connection refused", &a);
  CHECK_TRANSITION(&s, &a, SW_SWITCH_RECHECKING, SW_SWITCH_STEADY,
                   SW_SWITCH_R_VERIFY_INCONCLUSIVE);
  setup_migrate(&s, SW_SWITCH_RECHECKING);
  sw_switch_on_health(&s, T_MIGRATED + 10, SW_GREEN, 0, T_MIGRATED + 10,
                      "HTTP 500", &a);
  CHECK_TRANSITION(&s, &a, SW_SWITCH_RECHECKING, SW_SWITCH_STEADY,
                   SW_SWITCH_R_PROBE_FAILED);
  setup_migrate(&s, SW_SWITCH_RECHECKING);
  sw_switch_tick(&s, T_MIGRATED + RECHECK_MS - 1, &a);
  SW_CHECK_UINT_EQ(a.nevents, 0);
  sw_switch_tick(&s, T_MIGRATED + RECHECK_MS, &a);
  CHECK_TRANSITION(&s, &a, SW_SWITCH_RECHECKING, SW_SWITCH_STEADY,
                   SW_SWITCH_R_RECHECK_TIMEOUT);
}

/* The migration may take the old colour down (its code meets a schema it
 * does not know): in a migrate gate neither the flip nor the re-check
 * waits for the old colour's health; forward is the only way left. */
static void test_migrated_old_colour_down(void) {
  sw_switch_t s;
  sw_switch_actions_t a;
  uint64_t now = T_MIGRATED;

  setup_migrate(&s, SW_SWITCH_MIGRATING);
  sw_switch_on_colour_health(&s, now - 10, SW_BLUE, 0, "timeout", &a);
  CHECK_PHASE(&s, SW_SWITCH_MIGRATING);
  sw_switch_migrated(&s, now, 1, NULL, &a);
  CHECK_PHASE(&s, SW_SWITCH_RECHECKING);
  sw_switch_on_health(&s, now + 10, SW_GREEN, 1, now, "", &a);
  sw_switch_on_verify(&s, now + 20, SW_GREEN, SW_SWITCH_VERIFY_PASS, now, "",
                      &a);
  CHECK_TRANSITION(&s, &a, SW_SWITCH_RECHECKING, SW_SWITCH_DRAINING,
                   SW_SWITCH_R_FLIPPED);
  SW_CHECK_INT_EQ(s.live, SW_GREEN);

  /* Down during the re-check: the gate goes on, and flips. */
  setup_migrate(&s, SW_SWITCH_RECHECKING);
  sw_switch_on_colour_health(&s, T_MIGRATED + 5, SW_BLUE, 0, "HTTP 500", &a);
  CHECK_PHASE(&s, SW_SWITCH_RECHECKING);
  sw_switch_on_health(&s, T_MIGRATED + 10, SW_GREEN, 1, T_MIGRATED, "", &a);
  sw_switch_on_verify(&s, T_MIGRATED + 20, SW_GREEN, SW_SWITCH_VERIFY_PASS,
                      T_MIGRATED, "", &a);
  CHECK_PHASE(&s, SW_SWITCH_DRAINING);
  SW_CHECK_INT_EQ(s.live, SW_GREEN);

  /* A plain gate still ends when the live colour goes down. */
  {
    sw_switch_t p;
    sw_switch_init(&p, SW_BLUE, NULL);
    sw_switch_on_colour_health(&p, 1, SW_BLUE, 1, "", &a);
    sw_switch_request(&p, 10, SW_GREEN, 1, NULL, &a);
    sw_switch_on_colour_health(&p, 20, SW_BLUE, 0, "timeout", &a);
    CHECK_TRANSITION(&p, &a, SW_SWITCH_GATING, SW_SWITCH_STEADY,
                     SW_SWITCH_R_LIVE_UNHEALTHY);
  }
}

/* With the watch on and the old colour's requirements to check, the flip
 * after a migration waits for that answer too, and arms the watch. */
static void test_migrated_watch(void) {
  sw_switch_params_t p = watch_params();
  sw_switch_t s;
  sw_switch_actions_t a;
  uint64_t now;

  p.verify_old[SW_BLUE] = 1;
  now = setup_migrate_with(&s, SW_SWITCH_RECHECKING, &p, &a);
  CHECK_PHASE(&s, SW_SWITCH_RECHECKING);
  SW_CHECK_UINT_EQ(a.flags, SW_SWITCH_ACT_PROBE | SW_SWITCH_ACT_VERIFY |
                                SW_SWITCH_ACT_PERSIST);
  sw_switch_on_health(&s, now + 10, SW_GREEN, 1, now, "", &a);
  sw_switch_on_verify(&s, now + 20, SW_GREEN, SW_SWITCH_VERIFY_PASS, now, "",
                      &a);
  CHECK_PHASE(&s, SW_SWITCH_RECHECKING);
  SW_CHECK_INT_EQ(s.live, SW_BLUE);
  /* Blue's answer, failing as it may after the migration: the flip. */
  sw_switch_on_verify(&s, now + 30, SW_BLUE, SW_SWITCH_VERIFY_FAIL, now,
                      "missing column shop_item.name", &a);
  CHECK_TRANSITION(&s, &a, SW_SWITCH_RECHECKING, SW_SWITCH_WATCHING,
                   SW_SWITCH_R_FLIPPED);
  SW_CHECK_UINT_EQ(a.flags, SW_SWITCH_ACT_FLIP | SW_SWITCH_ACT_WATCH |
                                SW_SWITCH_ACT_PERSIST);
  SW_CHECK_INT_EQ(a.flip_to, SW_GREEN);
  SW_CHECK_INT_EQ(s.live, SW_GREEN);
  SW_CHECK_UINT_EQ(s.flip_at, now + 30);
  SW_CHECK_UINT_EQ(s.watch_auto_ms, AUTO_MS);
  SW_CHECK_UINT_EQ(s.watch_manual_ms, MANUAL_MS);
  SW_CHECK_INT_EQ(s.drain.colour, SW_BLUE);
  SW_CHECK_UINT_EQ(sw_switch_next_deadline(&s), now + 30 + AUTO_MS);
  SW_CHECK_INT_EQ(s.last_gate.outcome, SW_SWITCH_OUTCOME_PASSED);
}

/* The migration failed: the gate ends with nothing changed, its own
 * evidence having said no. */
static void test_migration_failed(void) {
  sw_switch_t s;
  sw_switch_actions_t a;
  uint64_t v;

  setup_migrate(&s, SW_SWITCH_MIGRATING);
  v = s.version;
  SW_CHECK_INT_EQ(sw_switch_migrated(&s, T_MIGRATED, 0,
                                     "exit status 1: relation \"shop_item\" "
                                     "does not exist",
                                     &a),
                  SW_SWITCH_R_NONE);
  CHECK_TRANSITION(&s, &a, SW_SWITCH_MIGRATING, SW_SWITCH_STEADY,
                   SW_SWITCH_R_MIGRATION_FAILED);
  SW_CHECK_UINT_EQ(a.flags, SW_SWITCH_ACT_PERSIST);
  SW_CHECK_UINT_EQ(s.version, v + 1);
  SW_CHECK_INT_EQ(s.live, SW_BLUE);
  SW_CHECK_UINT_EQ(s.flips, 0);
  SW_CHECK_STR_EQ(sw_switch_outcome_name(s.last_gate.outcome), "failed");
  SW_CHECK_INT_EQ(s.last_gate.reason, SW_SWITCH_R_MIGRATION_FAILED);
  SW_CHECK_INT_EQ(s.last_gate.target, SW_GREEN);
  SW_CHECK_UINT_EQ(s.last_gate.at, T_MIGRATED);
  SW_CHECK_STR_EQ(s.last_gate.message,
                  "migration for green failed: exit status 1: relation "
                  "\"shop_item\" does not exist");
  SW_CHECK_STR_CONTAINS(a.events[0].text, "relation \"shop_item\"");
  SW_CHECK_UINT_EQ(s.gates[SW_SWITCH_OUTCOME_FAILED], 1);
  SW_CHECK_UINT_EQ(s.gates[SW_SWITCH_OUTCOME_NONE], 0);
  SW_CHECK_INT_EQ(sw_switch_reason_outcome(SW_SWITCH_R_MIGRATION_FAILED),
                  SW_SWITCH_OUTCOME_FAILED);
  SW_CHECK_INT_EQ(s.gate.migrate, 0);
  SW_CHECK_UINT_EQ(sw_switch_next_deadline(&s), 0);
  /* A new cutover may start at once. */
  SW_CHECK_INT_EQ(sw_switch_request_ex(&s, T_MIGRATED + 10, SW_GREEN, 2, "t",
                                       SW_SWITCH_REQ_MIGRATE, &a),
                  SW_SWITCH_R_NONE);

  setup_migrate(&s, SW_SWITCH_MIGRATING);
  sw_switch_migrated(&s, T_MIGRATED, 0, "", &a);
  SW_CHECK_STR_EQ(s.last_gate.message,
                  "migration for green failed: no detail given");
  setup_migrate(&s, SW_SWITCH_MIGRATING);
  sw_switch_migrated(&s, T_MIGRATED, 0, NULL, &a);
  SW_CHECK_STR_EQ(s.last_gate.message,
                  "migration for green failed: no detail given");
}

/* A migration reported anywhere but in migrating: NOT_MIGRATING, and
 * nothing changes, whatever it says. */
static void test_migrated_elsewhere(void) {
  static const struct {
    const char *what;
    sw_switch_phase_t phase;
  } where[] = {
      {"steady", ST},      {"plain gating", GA},     {"plain rechecking", RE},
      {"draining", DR},    {"migrate gating", GA},   {"migrate rechecking", RE},
      {"watching", WA},    {"committed_manual", CM}, {"final", FI},
      {"rolled_back", RO}, {"rollback_blocked", RB}, {"rollback_migrating", RM},
  };
  sw_switch_t s, before;
  sw_switch_actions_t a;

  for (size_t i = 0; i < sizeof(where) / sizeof(where[0]); i++) {
    for (int ok = 0; ok <= 1; ok++) {
      uint64_t now;
      sw_switch_reason_t r;
      unsigned long failed = sw_test_counts.failed;

      if (i < 4)
        now = setup(&s, where[i].phase);
      else if (i < 6)
        now = setup_migrate(&s, where[i].phase);
      else if (where[i].phase == RM)
        now = setup_rollback_migrating(&s, WA, SW_SWITCH_ROLLBACK_AUTO);
      else
        now = setup_watch(&s, where[i].phase);
      now += 100;
      CHECK_PHASE(&s, where[i].phase);
      before = s;
      r = sw_switch_migrated(&s, now, ok, "done", &a);
      SW_CHECK_STR_EQ(sw_switch_reason_name(r),
                      sw_switch_reason_name(SW_SWITCH_R_NOT_MIGRATING));
      CHECK_UNCHANGED(&s, &before, &a);
      if (sw_test_counts.failed != failed)
        printf("  in %s, ok %d\n", where[i].what, ok);
    }
  }

  /* Past the gate deadline the gate has timed out: the migration finds
   * nothing to end, and nothing is re-checked. */
  setup_migrate(&s, SW_SWITCH_MIGRATING);
  SW_CHECK_INT_EQ(sw_switch_migrated(&s, T_REQ + GATE_MS, 1, "", &a),
                  SW_SWITCH_R_NOT_MIGRATING);
  CHECK_TRANSITION(&s, &a, SW_SWITCH_MIGRATING, SW_SWITCH_STEADY,
                   SW_SWITCH_R_TIMEOUT);
  SW_CHECK_UINT_EQ(a.flags, SW_SWITCH_ACT_PERSIST);
  /* And a second report after the first: the gate has moved on. */
  setup_migrate(&s, SW_SWITCH_MIGRATING);
  sw_switch_migrated(&s, T_MIGRATED, 1, "", &a);
  before = s;
  SW_CHECK_INT_EQ(sw_switch_migrated(&s, T_MIGRATED + 10, 0, "late", &a),
                  SW_SWITCH_R_NOT_MIGRATING);
  CHECK_UNCHANGED(&s, &before, &a);
}

/* The hold ran out before a migrate cutover flipped: the held requests
 * went to the live colour, so the gate ends, inconclusive. Elsewhere the
 * machine has nothing to do with it. */
static void test_hold_expired(void) {
  static const struct {
    const char *what;
    sw_switch_phase_t phase;
  } elsewhere[] = {
      {"steady", ST},
      {"plain gating", GA},
      {"plain rechecking", RE},
      {"draining", DR},
      {"watching", WA},
      {"committed_manual", CM},
      {"final", FI},
      {"rolled_back", RO},
      {"rollback_blocked", RB},
      {"rollback_migrating", RM},
  };
  sw_switch_t s, before;
  sw_switch_actions_t a;
  uint64_t now;

  now = setup_migrate(&s, SW_SWITCH_MIGRATING) + 500;
  sw_switch_hold_expired(&s, now, &a);
  CHECK_TRANSITION(&s, &a, SW_SWITCH_MIGRATING, SW_SWITCH_STEADY,
                   SW_SWITCH_R_HOLD_EXPIRED);
  SW_CHECK_UINT_EQ(a.flags, SW_SWITCH_ACT_PERSIST);
  SW_CHECK_INT_EQ(s.live, SW_BLUE);
  SW_CHECK_STR_EQ(sw_switch_outcome_name(s.last_gate.outcome), "inconclusive");
  SW_CHECK_INT_EQ(s.last_gate.reason, SW_SWITCH_R_HOLD_EXPIRED);
  SW_CHECK_INT_EQ(s.last_gate.target, SW_GREEN);
  SW_CHECK_UINT_EQ(s.last_gate.at, now);
  SW_CHECK_STR_EQ(s.last_gate.message,
                  "the hold ran out during migrating: held requests went to "
                  "blue; the cutover to green did not happen");
  SW_CHECK_UINT_EQ(s.gates[SW_SWITCH_OUTCOME_INCONCLUSIVE], 1);
  SW_CHECK_UINT_EQ(s.gates[SW_SWITCH_OUTCOME_NONE], 0);
  SW_CHECK_INT_EQ(sw_switch_reason_outcome(SW_SWITCH_R_HOLD_EXPIRED),
                  SW_SWITCH_OUTCOME_INCONCLUSIVE);
  SW_CHECK_UINT_EQ(sw_switch_next_deadline(&s), 0);

  /* In the re-check after the migration: the same. */
  now = setup_migrate(&s, SW_SWITCH_RECHECKING) + 10;
  sw_switch_hold_expired(&s, now, &a);
  CHECK_TRANSITION(&s, &a, SW_SWITCH_RECHECKING, SW_SWITCH_STEADY,
                   SW_SWITCH_R_HOLD_EXPIRED);
  SW_CHECK_UINT_EQ(a.flags, SW_SWITCH_ACT_PERSIST);
  SW_CHECK_INT_EQ(s.live, SW_BLUE);
  SW_CHECK_STR_EQ(sw_switch_outcome_name(s.last_gate.outcome), "inconclusive");
  SW_CHECK_STR_CONTAINS(s.last_gate.message,
                        "the hold ran out during rechecking");
  /* A late re-check answer finds no gate. */
  before = s;
  sw_switch_on_verify(&s, now + 10, SW_GREEN, SW_SWITCH_VERIFY_PASS, now - 10,
                      "", &a);
  CHECK_UNCHANGED(&s, &before, &a);

  /* Past the gate deadline the record says timeout, not hold_expired. */
  setup_migrate(&s, SW_SWITCH_MIGRATING);
  sw_switch_hold_expired(&s, T_REQ + GATE_MS, &a);
  CHECK_TRANSITION(&s, &a, SW_SWITCH_MIGRATING, SW_SWITCH_STEADY,
                   SW_SWITCH_R_TIMEOUT);

  for (size_t i = 0; i < sizeof(elsewhere) / sizeof(elsewhere[0]); i++) {
    sw_switch_phase_t ph = elsewhere[i].phase;
    unsigned long failed = sw_test_counts.failed;

    if (ph == RM)
      now = setup_rollback_migrating(&s, WA, SW_SWITCH_ROLLBACK_AUTO);
    else if (ph <= DR)
      now = setup(&s, ph);
    else
      now = setup_watch(&s, ph);
    now += 100;
    CHECK_PHASE(&s, ph);
    before = s;
    sw_switch_hold_expired(&s, now, &a);
    CHECK_UNCHANGED(&s, &before, &a);
    if (sw_test_counts.failed != failed)
      printf("  in %s\n", elsewhere[i].what);
  }
}

/* Migrating is a gate: an operator may abort it, its deadline ends it
 * with a message that names the migration, and nothing else may start. */
static void test_migrating_abort_and_deadline(void) {
  sw_switch_t s, before;
  sw_switch_actions_t a;
  uint64_t now;

  now = setup_migrate(&s, SW_SWITCH_MIGRATING) + 100;
  SW_CHECK_UINT_EQ(sw_switch_next_deadline(&s), T_REQ + GATE_MS);
  SW_CHECK_INT_EQ(sw_switch_abort(&s, now, "uid 1000 (pid 42)", &a),
                  SW_SWITCH_R_NONE);
  CHECK_TRANSITION(&s, &a, SW_SWITCH_MIGRATING, SW_SWITCH_STEADY,
                   SW_SWITCH_R_OPERATOR);
  SW_CHECK_UINT_EQ(a.flags, SW_SWITCH_ACT_PERSIST);
  SW_CHECK_STR_EQ(s.last_gate.message,
                  "gate to green aborted by uid 1000 (pid 42) during "
                  "migrating");
  SW_CHECK_INT_EQ(s.last_gate.outcome, SW_SWITCH_OUTCOME_INCONCLUSIVE);
  SW_CHECK_INT_EQ(s.live, SW_BLUE);
  SW_CHECK_UINT_EQ(sw_switch_next_deadline(&s), 0);
  SW_CHECK_INT_EQ(sw_switch_abort(&s, now + 10, "again", &a),
                  SW_SWITCH_R_NOT_GATING);

  /* The gate deadline, with the migration still running. */
  setup_migrate(&s, SW_SWITCH_MIGRATING);
  sw_switch_tick(&s, T_REQ + GATE_MS - 1, &a);
  SW_CHECK_UINT_EQ(a.nevents, 0);
  CHECK_PHASE(&s, SW_SWITCH_MIGRATING);
  sw_switch_tick(&s, T_REQ + GATE_MS, &a);
  CHECK_TRANSITION(&s, &a, SW_SWITCH_MIGRATING, SW_SWITCH_STEADY,
                   SW_SWITCH_R_TIMEOUT);
  SW_CHECK_UINT_EQ(a.flags, SW_SWITCH_ACT_PERSIST);
  SW_CHECK_STR_EQ(s.last_gate.message,
                  "gate deadline reached while waiting for the migration to "
                  "green");
  SW_CHECK_INT_EQ(s.last_gate.outcome, SW_SWITCH_OUTCOME_INCONCLUSIVE);
  SW_CHECK_INT_EQ(s.live, SW_BLUE);
  SW_CHECK_UINT_EQ(sw_switch_next_deadline(&s), 0);
  /* The deadline was fixed at the request: a reload does not move it. */
  setup_migrate(&s, SW_SWITCH_MIGRATING);
  {
    sw_switch_params_t p = test_params();
    p.gate_timeout_ms = 10 * GATE_MS;
    sw_switch_set_params(&s, &p);
  }
  SW_CHECK_UINT_EQ(sw_switch_next_deadline(&s), T_REQ + GATE_MS);

  /* Nothing else may start while it runs. */
  now = setup_migrate(&s, SW_SWITCH_MIGRATING) + 100;
  enable_rollback_migrate(&s);
  before = s;
  SW_CHECK_INT_EQ(sw_switch_request(&s, now, SW_GREEN, 2, "t", &a),
                  SW_SWITCH_R_IN_PROGRESS);
  CHECK_UNCHANGED(&s, &before, &a);
  SW_CHECK_INT_EQ(sw_switch_request_ex(&s, now, SW_GREEN, 2, "t",
                                       SW_SWITCH_REQ_MIGRATE, &a),
                  SW_SWITCH_R_IN_PROGRESS);
  CHECK_UNCHANGED(&s, &before, &a);
  SW_CHECK_INT_EQ(sw_switch_set_live(&s, now, SW_GREEN, &a),
                  SW_SWITCH_R_IN_PROGRESS);
  CHECK_UNCHANGED(&s, &before, &a);
  SW_CHECK_INT_EQ(sw_switch_commit(&s, now, "t", &a), SW_SWITCH_R_NOT_WATCHING);
  CHECK_UNCHANGED(&s, &before, &a);
  for (int m = 0; m < 4; m++) {
    CHECK_ROLLBACK_REFUSED(&s, now, all_modes[m], NULL,
                           SW_SWITCH_R_IN_PROGRESS);
    CHECK_ROLLBACK_REFUSED(&s, now, all_modes[m], "green down",
                           SW_SWITCH_R_IN_PROGRESS);
    SW_CHECK_INT_EQ(
        sw_switch_rollback_migrate(&s, now, all_modes[m], "t", "test", &a),
        SW_SWITCH_R_IN_PROGRESS);
    CHECK_UNCHANGED(&s, &before, &a);
  }
  sw_switch_rollback_migrated(&s, now, 0, "failed", &a);
  CHECK_UNCHANGED(&s, &before, &a);
  SW_CHECK_INT_EQ(s.last_rollback.valid, 0);
  SW_CHECK_INT_EQ(s.gate.migrate, 1);
  SW_CHECK_UINT_EQ(s.gate.migrating_at, T_MIGRATE);
}

/* A rollback that must first run the reverse migration. */
static void test_rollback_migrate(void) {
  sw_switch_t s, before;
  sw_switch_actions_t a;
  uint64_t v, now;

  /* Not configured: NOT_READY, nothing changed. */
  now = setup_watch(&s, SW_SWITCH_WATCHING) + 100;
  SW_CHECK_INT_EQ(s.params.rollback_migrate, 0);
  before = s;
  SW_CHECK_INT_EQ(sw_switch_rollback_migrate(&s, now, SW_SWITCH_ROLLBACK_AUTO,
                                             "r4", "schema check failed", &a),
                  SW_SWITCH_R_NOT_READY);
  CHECK_UNCHANGED(&s, &before, &a);
  SW_CHECK_INT_EQ(s.last_rollback.valid, 0);

  /* Configured: rollback_migrating, with HOLD and MIGRATE_BACK; the
   * traffic stays where it is. */
  enable_rollback_migrate(&s);
  v = s.version;
  SW_CHECK_INT_EQ(sw_switch_rollback_migrate(&s, now, SW_SWITCH_ROLLBACK_AUTO,
                                             "r4", "schema check failed", &a),
                  SW_SWITCH_R_NONE);
  CHECK_TRANSITION(&s, &a, SW_SWITCH_WATCHING, SW_SWITCH_ROLLBACK_MIGRATING,
                   SW_SWITCH_R_ROLLBACK_MIGRATE);
  SW_CHECK_UINT_EQ(a.flags, HOLD_FLAGS | SW_SWITCH_ACT_PERSIST);
  SW_CHECK_UINT_EQ(s.version, v + 1);
  SW_CHECK_INT_EQ(a.events[0].target, SW_BLUE);
  SW_CHECK_INT_EQ(a.events[0].live, SW_GREEN);
  SW_CHECK_STR_EQ(a.events[0].text,
                  "rollback to blue (auto): running the reverse migration "
                  "under the hold first (schema check failed)");
  SW_CHECK_INT_EQ(s.live, SW_GREEN);
  SW_CHECK_UINT_EQ(s.flips, 1);
  SW_CHECK_UINT_EQ(s.flip_at, T_FLIP);
  SW_CHECK_UINT_EQ(s.rollbacks, 0);
  SW_CHECK_UINT_EQ(s.rollbacks_blocked, 0);
  SW_CHECK_INT_EQ(s.last_rollback.valid, 1);
  SW_CHECK_INT_EQ(s.last_rollback.blocked, 0);
  SW_CHECK_INT_EQ(s.last_rollback.mode, SW_SWITCH_ROLLBACK_AUTO);
  SW_CHECK_INT_EQ(s.last_rollback.from, SW_GREEN);
  SW_CHECK_INT_EQ(s.last_rollback.to, SW_BLUE);
  SW_CHECK_UINT_EQ(s.last_rollback.at, now);
  SW_CHECK_STR_EQ(s.last_rollback.trigger, "r4");
  SW_CHECK_STR_EQ(s.last_rollback.message, a.events[0].text);
  /* No window moves it on: nothing is due. */
  SW_CHECK_UINT_EQ(sw_switch_next_deadline(&s), 0);

  /* A second one, in any mode: in progress. */
  before = s;
  for (int m = 0; m < 4; m++) {
    SW_CHECK_INT_EQ(sw_switch_rollback_migrate(&s, now + 10, all_modes[m], "r1",
                                               "again", &a),
                    SW_SWITCH_R_IN_PROGRESS);
    CHECK_UNCHANGED(&s, &before, &a);
  }
  SW_CHECK_STR_EQ(s.last_rollback.trigger, "r4");
  /* Nor may a commit, an abort, a new cutover, the windows, the hold
   * running out or a successful reverse migration move it. */
  SW_CHECK_INT_EQ(sw_switch_commit(&s, now + 20, "uid 1000", &a),
                  SW_SWITCH_R_NOT_WATCHING);
  CHECK_UNCHANGED(&s, &before, &a);
  SW_CHECK_INT_EQ(sw_switch_abort(&s, now + 20, "uid 1000", &a),
                  SW_SWITCH_R_NOT_GATING);
  CHECK_UNCHANGED(&s, &before, &a);
  SW_CHECK_INT_EQ(sw_switch_request(&s, now + 20, SW_BLUE, 2, "t", &a),
                  SW_SWITCH_R_IN_PROGRESS);
  CHECK_UNCHANGED(&s, &before, &a);
  SW_CHECK_INT_EQ(sw_switch_set_live(&s, now + 20, SW_BLUE, &a),
                  SW_SWITCH_R_IN_PROGRESS);
  CHECK_UNCHANGED(&s, &before, &a);
  sw_switch_tick(&s, T_FLIP + AUTO_MS, &a);
  CHECK_UNCHANGED(&s, &before, &a);
  sw_switch_tick(&s, T_FLIP + MANUAL_MS + 1, &a);
  CHECK_UNCHANGED(&s, &before, &a);
  sw_switch_tick(&s, FAR, &a);
  CHECK_UNCHANGED(&s, &before, &a);
  sw_switch_hold_expired(&s, FAR, &a);
  CHECK_UNCHANGED(&s, &before, &a);
  sw_switch_rollback_migrated(&s, FAR, 1, "done", &a);
  CHECK_UNCHANGED(&s, &before, &a);
  SW_CHECK_INT_EQ(s.last_rollback.blocked, 0);

  /* The reverse migration failed: blocked; green serves on. */
  v = s.version;
  sw_switch_rollback_migrated(
      &s, FAR + 10, 0, "exit status 2: migration shop.0042 is irreversible",
      &a);
  CHECK_TRANSITION(&s, &a, SW_SWITCH_ROLLBACK_MIGRATING,
                   SW_SWITCH_ROLLBACK_BLOCKED, SW_SWITCH_R_ROLLBACK_BLOCKED);
  SW_CHECK_UINT_EQ(a.flags, SW_SWITCH_ACT_PERSIST);
  SW_CHECK_UINT_EQ(s.version, v + 1);
  SW_CHECK_INT_EQ(a.events[0].target, SW_BLUE);
  SW_CHECK_INT_EQ(a.events[0].live, SW_GREEN);
  SW_CHECK_STR_CONTAINS(a.events[0].text, "shop.0042 is irreversible");
  SW_CHECK_INT_EQ(s.live, SW_GREEN);
  SW_CHECK_UINT_EQ(s.flips, 1);
  SW_CHECK_UINT_EQ(s.rollbacks, 0);
  SW_CHECK_UINT_EQ(s.rollbacks_blocked, 1);
  SW_CHECK_INT_EQ(s.last_rollback.valid, 1);
  SW_CHECK_INT_EQ(s.last_rollback.blocked, 1);
  SW_CHECK_INT_EQ(s.last_rollback.mode, SW_SWITCH_ROLLBACK_AUTO);
  SW_CHECK_INT_EQ(s.last_rollback.from, SW_GREEN);
  SW_CHECK_INT_EQ(s.last_rollback.to, SW_BLUE);
  SW_CHECK_UINT_EQ(s.last_rollback.at, FAR + 10);
  SW_CHECK_STR_EQ(s.last_rollback.trigger, "r4");
  SW_CHECK_STR_EQ(s.last_rollback.message,
                  "rollback to blue blocked: exit status 2: migration "
                  "shop.0042 is irreversible; green keeps serving");
  /* Once blocked, it reports nothing more. */
  before = s;
  sw_switch_rollback_migrated(&s, FAR + 20, 0, "again", &a);
  CHECK_UNCHANGED(&s, &before, &a);

  /* Without a text. */
  now = setup_rollback_migrating(&s, WA, SW_SWITCH_ROLLBACK_MANUAL);
  sw_switch_rollback_migrated(&s, now + 10, 0, NULL, &a);
  CHECK_PHASE(&s, SW_SWITCH_ROLLBACK_BLOCKED);
  SW_CHECK_STR_EQ(s.last_rollback.message,
                  "rollback to blue blocked: the reverse migration failed; "
                  "green keeps serving");
  SW_CHECK_INT_EQ(s.last_rollback.mode, SW_SWITCH_ROLLBACK_MANUAL);

  /* Outside rollback_migrating a report changes nothing. */
  now = setup_watch(&s, SW_SWITCH_WATCHING) + 100;
  before = s;
  sw_switch_rollback_migrated(&s, now, 0, "failed", &a);
  CHECK_UNCHANGED(&s, &before, &a);
  SW_CHECK_INT_EQ(s.last_rollback.valid, 0);
}

/* The end of the reverse migration: the caller verifies the old colour
 * and calls sw_switch_rollback, which flips or blocks, in the mode the
 * rollback began with. */
static void test_rollback_migrate_end(void) {
  sw_switch_t s;
  sw_switch_actions_t a;
  uint64_t now;

  /* Ready: the flip back, recorded as the automatic rollback it began as,
   * though an operator's call ended it. */
  now = setup_rollback_migrating(&s, WA, SW_SWITCH_ROLLBACK_AUTO) + 500;
  CHECK_PHASE(&s, SW_SWITCH_ROLLBACK_MIGRATING);
  SW_CHECK_INT_EQ(sw_switch_rollback(&s, now, SW_SWITCH_ROLLBACK_MANUAL, "r4",
                                     "schema check failed", NULL, &a),
                  SW_SWITCH_R_NONE);
  CHECK_TRANSITION(&s, &a, SW_SWITCH_ROLLBACK_MIGRATING, SW_SWITCH_ROLLED_BACK,
                   SW_SWITCH_R_ROLLBACK);
  SW_CHECK_UINT_EQ(a.flags, SW_SWITCH_ACT_FLIP | SW_SWITCH_ACT_PERSIST);
  SW_CHECK_INT_EQ(a.flip_to, SW_BLUE);
  SW_CHECK_INT_EQ(a.events[0].live, SW_BLUE);
  SW_CHECK_INT_EQ(s.live, SW_BLUE);
  SW_CHECK_UINT_EQ(s.flip_at, now);
  SW_CHECK_UINT_EQ(s.flips, 2);
  SW_CHECK_UINT_EQ(s.rollbacks, 1);
  SW_CHECK_UINT_EQ(s.rollbacks_blocked, 0);
  SW_CHECK_INT_EQ(s.last_rollback.valid, 1);
  SW_CHECK_INT_EQ(s.last_rollback.blocked, 0);
  SW_CHECK_STR_EQ(sw_switch_rollback_mode_name(s.last_rollback.mode), "auto");
  SW_CHECK_INT_EQ(s.last_rollback.from, SW_GREEN);
  SW_CHECK_INT_EQ(s.last_rollback.to, SW_BLUE);
  SW_CHECK_STR_EQ(s.last_rollback.trigger, "r4");
  SW_CHECK_STR_EQ(s.last_rollback.message,
                  "rolled back green -> blue (auto): schema check failed");
  SW_CHECK_INT_EQ(s.drain.active, 1);
  SW_CHECK_INT_EQ(s.drain.colour, SW_GREEN);
  SW_CHECK_UINT_EQ(s.drain.deadline, now + DRAIN_MS);
  CHECK_ROLLBACK_REFUSED(&s, now + 10, SW_SWITCH_ROLLBACK_FORCE, NULL,
                         SW_SWITCH_R_ALREADY_ROLLED_BACK);

  /* Whatever mode the end is called with: begun with --confirm in the
   * manual window, recorded as confirm; and long after the windows, when
   * the same call made from committed_manual would need --force. */
  now = setup_rollback_migrating(&s, CM, SW_SWITCH_ROLLBACK_CONFIRM);
  for (int m = 0; m < 4; m++) {
    sw_switch_t t = s;
    SW_CHECK_INT_EQ(sw_switch_rollback(&t, T_FLIP + MANUAL_MS + 1, all_modes[m],
                                       "operator", "by hand", NULL, &a),
                    SW_SWITCH_R_NONE);
    CHECK_PHASE(&t, SW_SWITCH_ROLLED_BACK);
    SW_CHECK_INT_EQ(t.live, SW_BLUE);
    SW_CHECK_STR_EQ(sw_switch_rollback_mode_name(t.last_rollback.mode),
                    "confirm");
  }

  /* Still not ready after it: blocked, for any mode (elsewhere an
   * operator's rollback to a colour not ready is refused with
   * NOT_READY). */
  for (int m = 0; m < 4; m++) {
    now = setup_rollback_migrating(&s, WA, SW_SWITCH_ROLLBACK_MANUAL) + 500;
    SW_CHECK_INT_EQ(
        sw_switch_rollback(&s, now, all_modes[m], "operator", "by hand",
                           "blue: missing column shop_item.name", &a),
        SW_SWITCH_R_ROLLBACK_BLOCKED);
    CHECK_TRANSITION(&s, &a, SW_SWITCH_ROLLBACK_MIGRATING,
                     SW_SWITCH_ROLLBACK_BLOCKED, SW_SWITCH_R_ROLLBACK_BLOCKED);
    SW_CHECK_UINT_EQ(a.flags, SW_SWITCH_ACT_PERSIST);
    SW_CHECK_INT_EQ(s.live, SW_GREEN);
    SW_CHECK_UINT_EQ(s.flips, 1);
    SW_CHECK_UINT_EQ(s.rollbacks, 0);
    SW_CHECK_UINT_EQ(s.rollbacks_blocked, 1);
    SW_CHECK_INT_EQ(s.last_rollback.blocked, 1);
    SW_CHECK_INT_EQ(s.last_rollback.mode, SW_SWITCH_ROLLBACK_MANUAL);
    SW_CHECK_STR_CONTAINS(s.last_rollback.message,
                          "blue: missing column shop_item.name");
    SW_CHECK_STR_CONTAINS(s.last_rollback.message, "green keeps serving");
  }
  /* From there, the operator's way out as after any blocked rollback. */
  SW_CHECK_INT_EQ(sw_switch_commit(&s, now + 10, "uid 1000", &a),
                  SW_SWITCH_R_NONE);
  CHECK_PHASE(&s, SW_SWITCH_FINAL);
}

/* rollback_migrate is allowed exactly where sw_switch_rollback with the
 * same mode would be; where it is, without params.rollback_migrate it is
 * refused with NOT_READY. */
static void test_rollback_migrate_policy(void) {
  static const struct {
    sw_switch_phase_t phase;
    int watch;   /* setup_watch, else setup (no watch) */
    int flipped; /* steady after a drained flip */
    sw_switch_reason_t want[4];
  } table[] = {
      {WA,
       1,
       0,
       {SW_SWITCH_R_NONE, SW_SWITCH_R_NONE, SW_SWITCH_R_NONE,
        SW_SWITCH_R_NONE}},
      {CM,
       1,
       0,
       {SW_SWITCH_R_NEEDS_CONFIRM, SW_SWITCH_R_NEEDS_CONFIRM, SW_SWITCH_R_NONE,
        SW_SWITCH_R_NONE}},
      {FI,
       1,
       0,
       {SW_SWITCH_R_NOT_WATCHING, SW_SWITCH_R_NEEDS_FORCE,
        SW_SWITCH_R_NEEDS_FORCE, SW_SWITCH_R_NONE}},
      {RO,
       1,
       0,
       {SW_SWITCH_R_ALREADY_ROLLED_BACK, SW_SWITCH_R_ALREADY_ROLLED_BACK,
        SW_SWITCH_R_ALREADY_ROLLED_BACK, SW_SWITCH_R_ALREADY_ROLLED_BACK}},
      {RB,
       1,
       0,
       {SW_SWITCH_R_NOT_WATCHING, SW_SWITCH_R_NONE, SW_SWITCH_R_NONE,
        SW_SWITCH_R_NONE}},
      {ST,
       0,
       0,
       {SW_SWITCH_R_NOT_WATCHING, SW_SWITCH_R_NOT_WATCHING,
        SW_SWITCH_R_NOT_WATCHING, SW_SWITCH_R_NOT_WATCHING}},
      {GA,
       0,
       0,
       {SW_SWITCH_R_IN_PROGRESS, SW_SWITCH_R_IN_PROGRESS,
        SW_SWITCH_R_IN_PROGRESS, SW_SWITCH_R_IN_PROGRESS}},
      {RE,
       0,
       0,
       {SW_SWITCH_R_IN_PROGRESS, SW_SWITCH_R_IN_PROGRESS,
        SW_SWITCH_R_IN_PROGRESS, SW_SWITCH_R_IN_PROGRESS}},
      {DR,
       0,
       0,
       {SW_SWITCH_R_NOT_WATCHING, SW_SWITCH_R_NEEDS_FORCE,
        SW_SWITCH_R_NEEDS_FORCE, SW_SWITCH_R_NONE}},
      {ST,
       0,
       1,
       {SW_SWITCH_R_NOT_WATCHING, SW_SWITCH_R_NEEDS_FORCE,
        SW_SWITCH_R_NEEDS_FORCE, SW_SWITCH_R_NONE}},
  };
  sw_switch_t s, before;
  sw_switch_actions_t a;

  for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
    for (int m = 0; m < 4; m++) {
      for (int configured = 0; configured <= 1; configured++) {
        sw_switch_phase_t ph = table[i].phase;
        sw_switch_reason_t want = table[i].want[m];
        unsigned long failed = sw_test_counts.failed;
        sw_switch_reason_t r;
        uint64_t now;

        if (table[i].watch) {
          now = setup_watch(&s, ph) + 100;
        } else if (table[i].flipped) {
          sw_switch_actions_t b;
          setup(&s, SW_SWITCH_DRAINING);
          sw_switch_on_inflight(&s, 2700, SW_BLUE, 0, &b);
          now = 2800;
        } else {
          now = setup(&s, ph) + 100;
        }
        CHECK_PHASE(&s, ph);
        if (configured)
          enable_rollback_migrate(&s);
        else if (want == SW_SWITCH_R_NONE)
          want = SW_SWITCH_R_NOT_READY;
        before = s;
        r = sw_switch_rollback_migrate(&s, now, all_modes[m], "t", "test", &a);
        SW_CHECK_STR_EQ(sw_switch_reason_name(r), sw_switch_reason_name(want));
        if (want != SW_SWITCH_R_NONE) {
          CHECK_UNCHANGED(&s, &before, &a);
        } else {
          CHECK_TRANSITION(&s, &a, ph, SW_SWITCH_ROLLBACK_MIGRATING,
                           SW_SWITCH_R_ROLLBACK_MIGRATE);
          SW_CHECK_UINT_EQ(a.flags & ~SW_SWITCH_ACT_CANCEL_DRAIN,
                           HOLD_FLAGS | SW_SWITCH_ACT_PERSIST);
          SW_CHECK_INT_EQ(s.live, before.live);
          SW_CHECK_INT_EQ(s.last_rollback.mode, all_modes[m]);
          SW_CHECK_INT_EQ(s.last_rollback.blocked, 0);
          SW_CHECK_INT_EQ(s.last_rollback.to,
                          before.live == SW_BLUE ? SW_GREEN : SW_BLUE);
          SW_CHECK_STR_EQ(s.last_rollback.trigger, "t");
          /* And its end flips back, as the same rollback would have. */
          SW_CHECK_INT_EQ(sw_switch_rollback(&s, now + 10, all_modes[m], "t",
                                             "test", NULL, &a),
                          SW_SWITCH_R_NONE);
          CHECK_PHASE(&s, SW_SWITCH_ROLLED_BACK);
          SW_CHECK_INT_EQ(s.live, before.live == SW_BLUE ? SW_GREEN : SW_BLUE);
        }
        if (sw_test_counts.failed != failed)
          printf("  in phase %s%s, mode %s, %sconfigured\n",
                 sw_switch_phase_name(ph), table[i].flipped ? " (flipped)" : "",
                 sw_switch_rollback_mode_name(all_modes[m]),
                 configured ? "" : "not ");
      }
    }
  }

  /* Migrating is a gate: in progress. */
  {
    uint64_t now = setup_migrate(&s, SW_SWITCH_MIGRATING) + 100;
    enable_rollback_migrate(&s);
    before = s;
    SW_CHECK_INT_EQ(sw_switch_rollback_migrate(
                        &s, now, SW_SWITCH_ROLLBACK_FORCE, "t", "test", &a),
                    SW_SWITCH_R_IN_PROGRESS);
    CHECK_UNCHANGED(&s, &before, &a);
  }

  /* Begun in the flip's drain: the colour going live again is never told
   * to cancel its requests, even past the drain deadline. */
  {
    sw_switch_params_t p = watch_params();
    p.rollback_migrate = 1;
    setup_with(&s, SW_SWITCH_WATCHING, &p, &a);
    SW_CHECK_INT_EQ(s.drain.active, 1);
    SW_CHECK_INT_EQ(
        sw_switch_rollback_migrate(&s, T_FLIP + 100, SW_SWITCH_ROLLBACK_AUTO,
                                   "r1", "test", &a),
        SW_SWITCH_R_NONE);
    SW_CHECK_UINT_EQ(sw_switch_next_deadline(&s), T_FLIP + DRAIN_MS);
  }
}

/* A restart in either hold phase: nothing is resumed on a guess. */
static void test_restore_hold(void) {
  sw_switch_params_t p = watch_params();
  sw_switch_persisted_t st;
  sw_switch_t s;
  sw_switch_actions_t a;
  sw_switch_phase_t parsed;

  /* Migrating: the gate ended inconclusive; the hold died with the
   * process; blue, still live, serves. */
  memset(&st, 0, sizeof(st));
  st.live = SW_BLUE;
  st.phase = SW_SWITCH_MIGRATING;
  st.version = 7;
  SW_CHECK_INT_EQ(sw_switch_restore(&s, 5000, &p, &st, &a), 0);
  CHECK_TRANSITION(&s, &a, SW_SWITCH_MIGRATING, SW_SWITCH_STEADY,
                   SW_SWITCH_R_RESTART);
  SW_CHECK_UINT_EQ(a.flags, SW_SWITCH_ACT_PERSIST);
  SW_CHECK_INT_EQ(s.live, SW_BLUE);
  SW_CHECK_UINT_EQ(s.version, 8);
  SW_CHECK_INT_EQ(s.last_gate.outcome, SW_SWITCH_OUTCOME_INCONCLUSIVE);
  SW_CHECK_INT_EQ(s.last_gate.reason, SW_SWITCH_R_RESTART);
  SW_CHECK_INT_EQ(s.last_gate.target, SW_GREEN);
  SW_CHECK_STR_EQ(s.last_gate.message,
                  "restart during migrating: the gate to green ended "
                  "inconclusive; live blue");
  SW_CHECK_INT_EQ(s.gate.migrate, 0);
  SW_CHECK_UINT_EQ(sw_switch_next_deadline(&s), 0);
  SW_CHECK_INT_EQ(sw_switch_migrated(&s, 5100, 1, "", &a),
                  SW_SWITCH_R_NOT_MIGRATING);
  SW_CHECK_INT_EQ(sw_switch_request_ex(&s, 5100, SW_GREEN, 2, "t",
                                       SW_SWITCH_REQ_MIGRATE, &a),
                  SW_SWITCH_R_NONE);

  /* Rollback_migrating: whether the reverse migration ran is unknown, so
   * the rollback is blocked until an operator acts. */
  st.live = SW_GREEN;
  st.phase = SW_SWITCH_ROLLBACK_MIGRATING;
  st.flip_at = 10000;
  st.version = 9;
  st.auto_window_ms = AUTO_MS;
  st.manual_window_ms = MANUAL_MS;
  SW_CHECK_INT_EQ(sw_switch_restore(&s, 10400, &p, &st, &a), 0);
  CHECK_TRANSITION(&s, &a, SW_SWITCH_ROLLBACK_MIGRATING,
                   SW_SWITCH_ROLLBACK_BLOCKED, SW_SWITCH_R_RESTART);
  SW_CHECK_UINT_EQ(a.flags, SW_SWITCH_ACT_PERSIST);
  SW_CHECK_INT_EQ(a.events[0].target, SW_BLUE);
  SW_CHECK_INT_EQ(a.events[0].live, SW_GREEN);
  SW_CHECK_INT_EQ(s.live, SW_GREEN);
  SW_CHECK_UINT_EQ(s.version, 10);
  SW_CHECK_UINT_EQ(s.flip_at, 10000);
  SW_CHECK_UINT_EQ(s.watch_auto_ms, AUTO_MS);
  SW_CHECK_UINT_EQ(s.watch_manual_ms, MANUAL_MS);
  SW_CHECK_INT_EQ(s.last_rollback.valid, 1);
  SW_CHECK_INT_EQ(s.last_rollback.blocked, 1);
  SW_CHECK_INT_EQ(s.last_rollback.from, SW_GREEN);
  SW_CHECK_INT_EQ(s.last_rollback.to, SW_BLUE);
  SW_CHECK_UINT_EQ(s.last_rollback.at, 10400);
  SW_CHECK_STR_EQ(s.last_rollback.trigger, "restart");
  SW_CHECK_STR_EQ(s.last_rollback.message,
                  "restart during the reverse migration: rollback to blue "
                  "blocked until an operator checks its schema; green keeps "
                  "serving");
  SW_CHECK_STR_EQ(a.events[0].text, s.last_rollback.message);
  SW_CHECK_INT_EQ(s.drain.active, 0);
  SW_CHECK_UINT_EQ(sw_switch_next_deadline(&s), 0);
  sw_switch_tick(&s, FAR, &a);
  SW_CHECK_UINT_EQ(a.nevents, 0);
  CHECK_PHASE(&s, SW_SWITCH_ROLLBACK_BLOCKED);
  /* The operator's way back keeps the window policy of a blocked
   * rollback: plain within the auto window. */
  SW_CHECK_INT_EQ(sw_switch_rollback(&s, 10500, SW_SWITCH_ROLLBACK_MANUAL, NULL,
                                     "blue migrated back by hand", NULL, &a),
                  SW_SWITCH_R_NONE);
  CHECK_PHASE(&s, SW_SWITCH_ROLLED_BACK);
  SW_CHECK_INT_EQ(s.live, SW_BLUE);
  /* Restored at the same time or long after: the same, no window
   * transition on the way. */
  SW_CHECK_INT_EQ(sw_switch_restore(&s, 50000, &p, &st, &a), 0);
  CHECK_TRANSITION(&s, &a, SW_SWITCH_ROLLBACK_MIGRATING,
                   SW_SWITCH_ROLLBACK_BLOCKED, SW_SWITCH_R_RESTART);
  SW_CHECK_INT_EQ(sw_switch_rollback(&s, 50100, SW_SWITCH_ROLLBACK_CONFIRM,
                                     NULL, "by hand", NULL, &a),
                  SW_SWITCH_R_NEEDS_FORCE);
  SW_CHECK_INT_EQ(sw_switch_commit(&s, 50100, "t", &a), SW_SWITCH_R_NONE);

  /* A snapshot names either phase, and the name parses back. */
  setup_migrate(&s, SW_SWITCH_MIGRATING);
  sw_switch_snapshot(&s, &st);
  SW_CHECK_INT_EQ(st.phase, SW_SWITCH_MIGRATING);
  SW_CHECK_INT_EQ(st.live, SW_BLUE);
  SW_CHECK_STR_EQ(sw_switch_phase_name(st.phase), "migrating");
  parsed = SW_SWITCH_STEADY;
  SW_CHECK_INT_EQ(sw_switch_phase_parse("migrating", &parsed), 0);
  SW_CHECK_INT_EQ(parsed, SW_SWITCH_MIGRATING);
  {
    sw_switch_t back;
    SW_CHECK_INT_EQ(sw_switch_restore(&back, 9000, NULL, &st, &a), 0);
    CHECK_TRANSITION(&back, &a, SW_SWITCH_MIGRATING, SW_SWITCH_STEADY,
                     SW_SWITCH_R_RESTART);
    SW_CHECK_UINT_EQ(back.version, s.version + 1);
  }
  setup_rollback_migrating(&s, WA, SW_SWITCH_ROLLBACK_AUTO);
  sw_switch_snapshot(&s, &st);
  SW_CHECK_INT_EQ(st.phase, SW_SWITCH_ROLLBACK_MIGRATING);
  SW_CHECK_INT_EQ(st.live, SW_GREEN);
  SW_CHECK_UINT_EQ(st.flip_at, T_FLIP);
  SW_CHECK_UINT_EQ(st.auto_window_ms, AUTO_MS);
  SW_CHECK_UINT_EQ(st.manual_window_ms, MANUAL_MS);
  SW_CHECK_STR_EQ(sw_switch_phase_name(st.phase), "rollback_migrating");
  parsed = SW_SWITCH_STEADY;
  SW_CHECK_INT_EQ(sw_switch_phase_parse("rollback_migrating", &parsed), 0);
  SW_CHECK_INT_EQ(parsed, SW_SWITCH_ROLLBACK_MIGRATING);
  {
    sw_switch_t back;
    SW_CHECK_INT_EQ(sw_switch_restore(&back, T_FLIP + 500, NULL, &st, &a), 0);
    CHECK_TRANSITION(&back, &a, SW_SWITCH_ROLLBACK_MIGRATING,
                     SW_SWITCH_ROLLBACK_BLOCKED, SW_SWITCH_R_RESTART);
    SW_CHECK_INT_EQ(back.live, SW_GREEN);
  }
  SW_CHECK_INT_EQ(sw_switch_phase_parse("Migrating", &parsed), SW_EPARSE);
  SW_CHECK_INT_EQ(sw_switch_phase_parse("rollback-migrating", &parsed),
                  SW_EPARSE);
  SW_CHECK_INT_EQ(parsed, SW_SWITCH_ROLLBACK_MIGRATING);
}

SW_TEST_MAIN(SW_TASK(test_set_live),
             SW_TASK(test_names),
             SW_TASK(test_init),
             SW_TASK(test_matrix),
             SW_TASK(test_full_cutover),
             SW_TASK(test_stale_pass_never_counts),
             SW_TASK(test_fail_resets_count),
             SW_TASK(test_gate_needs_all_three),
             SW_TASK(test_no_pass_by_timer),
             SW_TASK(test_verify_fail),
             SW_TASK(test_live_unhealthy),
             SW_TASK(test_refusals),
             SW_TASK(test_abort),
             SW_TASK(test_recheck_freshness),
             SW_TASK(test_recheck_timeout),
             SW_TASK(test_drain_timeout),
             SW_TASK(test_restore),
             SW_TASK(test_history_ring),
             SW_TASK(test_params_reload_and_rise),
             SW_TASK(test_text_bounds),
             SW_TASK(test_actions_cleared),
             SW_TASK(test_watch_matrix),
             SW_TASK(test_watch_flip),
             SW_TASK(test_watch_windows),
             SW_TASK(test_rollback_auto),
             SW_TASK(test_rollback_blocked),
             SW_TASK(test_rollback_blocked_windows),
             SW_TASK(test_flip_waits_for_old_verify),
             SW_TASK(test_rollback_policy),
             SW_TASK(test_commit),
             SW_TASK(test_watch_refuses_cutover),
             SW_TASK(test_restore_watch),
             SW_TASK(test_migrate_gate),
             SW_TASK(test_hold_matrix),
             SW_TASK(test_migrated),
             SW_TASK(test_migrated_old_colour_down),
             SW_TASK(test_migrated_watch),
             SW_TASK(test_migration_failed),
             SW_TASK(test_migrated_elsewhere),
             SW_TASK(test_hold_expired),
             SW_TASK(test_migrating_abort_and_deadline),
             SW_TASK(test_rollback_migrate),
             SW_TASK(test_rollback_migrate_end),
             SW_TASK(test_rollback_migrate_policy),
             SW_TASK(test_restore_hold))
