/* The cutover driver (see sw_control.h). Owns the switch machine, its tick
 * timer, the verifications in flight, the persisted state and the admin
 * handler. It decides nothing itself: every decision is the machine's, and
 * this module only reports facts to it and performs its actions. */
#include "sw_control.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "sw_admin.h"
#include "sw_api.h"
#include "sw_log.h"
#include "sw_notify.h"
#include "sw_state.h"
#include "sw_switch.h"
#include "sw_tls.h"
#include "sw_command.h"
#include "sw_hold.h"
#include "sw_verify.h"
#include "sw_watch.h"

/* Request latency buckets of the histogram, in seconds. */
static const double buckets[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                 0.5,   1,    2.5,   5,    10};
#define NBUCKETS (sizeof(buckets) / sizeof(buckets[0]))

/* One verification run; stale runs (superseded or cancelled) are told
 * apart by their generation. */
typedef struct run_s {
  sw_colour_t colour;
  uint64_t gen;
  uint64_t started; /* loop time */
  int for_gate;
} run_t;

typedef struct verify_view_s {
  const char *status; /* "none", "running", "pass", "fail", "inconclusive" */
  char message[SW_SWITCH_MESSAGE];
  uint64_t wall_ms;
  uint64_t elapsed_ms;
} verify_view_t;

static struct {
  int started;
  sw_switch_t m;
  uv_timer_t timer;
  int timer_open;
  sw_state_t state; /* history as persisted, wall-clock times */
  uint64_t gen[SW_COLOURS];
  sw_verify_t *running[SW_COLOURS];
  verify_view_t verify[SW_COLOURS];
  unsigned fed[SW_COLOURS];  /* colour-level pass rounds told to the machine */
  int colour_up[SW_COLOURS]; /* -1 unknown */
  uint64_t hist[SW_COLOURS][NBUCKETS + 1];
  double hist_sum[SW_COLOURS];
  uint64_t hist_count[SW_COLOURS];
  char *token;
  uint64_t unrouted[6]; /* responses without an upstream, by class */
  uint64_t flip_wall;   /* wall time of the last flip, ms; 0: never */
  /* The error watch. */
  sw_watch_t w;
  int watch_ready;         /* w initialised */
  uint64_t watch_wall;     /* wall time of the flip the watch was armed at */
  uint64_t old_verify_at;  /* loop time of the next re-check of the old */
  uint64_t saved_at;       /* loop time the watch counts were last saved */
  uint64_t saved_requests; /* the watch's requests when last saved */
  /* The last finished verification of each colour ("none", "pass", "fail",
   * "inconclusive"): a rollback decides on it without waiting. */
  const char *done[SW_COLOURS];
  char done_message[SW_COLOURS][SW_SWITCH_MESSAGE];
  uint64_t done_started[SW_COLOURS]; /* when that verification started */
  /* A rollback decides only on evidence of this cutover: a verification
   * of the old colour started at or after this time (the re-check before
   * the flip, or this process's start for a resumed watch). */
  uint64_t fresh_from;
  /* A trigger fired while the old colour's evidence was still coming (its
   * verification running, its servers not yet probed since the start):
   * the rollback is decided when it comes. */
  int rollback_pending;
  char pending_rule[8];
  char pending_text[SW_WATCH_TEXT];
  uint64_t rollbacks[SW_WATCH_RULES]; /* by trigger; [0]: an operator */
  uint64_t alerts;
  sw_watch_result_t last_verdict; /* verdict NONE until one */
  uint64_t last_verdict_wall;
  /* The hold barrier. */
  int hold_open; /* sw_hold_init done */
  /* The drain's end is told from the loop turn its last request ended. */
  uv_idle_t drain_idle;
  int drain_idle_open;
  int hold_mine;        /* the machine asked for it (HOLD): its own end
                         * releases it */
  uint64_t cut_hold_ms; /* the hold a migrate cutover asked for; 0: config */
  /* Lock waits sampled while a hold runs (the migration's, mostly). */
  uv_timer_t lock_timer;
  int lock_timer_open;
  sw_verify_t *lock_run;
  uint64_t lock_gen;
  uint64_t lock_max_ms, lock_waiters_max, lock_samples, lock_failed;
  char lock_error[160];
  /* The operator's migration (reported by switchctl), for the report. */
  int migration_valid;
  int64_t migration_status;
  uint64_t migration_ms;
  /* The reverse migration of a rollback. */
  int mb_pending;   /* waiting for quiet to start it */
  int mb_running;   /* started, not finished */
  int mb_verifying; /* finished well: the old colour is being verified */
  int mb_finishing; /* the rollback that ends it is being decided */
  sw_command_t *mb_cmd;
  int mb_valid;
  int64_t mb_status;
  uint64_t mb_ms;
  int mb_timed_out;
  char mb_tail[256];
  /* Exchanges seen, and failed (5xx, cut off), for the cutover report:
   * since the start, and as they were at the last cutover request. */
  uint64_t seen, failed, seen_at_request, failed_at_request;
  uint64_t request_wall;
} ctl;

/* How often a watch's counts are written to the state file, so that a
 * restart resumes them; transitions are written at once anyway. */
#define WATCH_SAVE_MS 5000
/* The longest watch window the config accepts (168h). */
#define WINDOW_MAX_MS ((uint64_t)168 * 60 * 60 * 1000)

static void perform(sw_switch_actions_t *a);
static json_t *watch_json(void);
static void pending_rollback(void);
static void hold_for_machine(void);
static sw_switch_reason_t rollback(sw_switch_rollback_mode_t mode,
                                   const char *trigger,
                                   const char *why,
                                   char *msg,
                                   size_t msglen);
static void migrate_back_maybe_start(void);
static void announce_rollback(void);

/* The machine's and the watch's clock: loop time moved far from zero.
 * Loop time starts near 0 at boot, so a flip recorded before a reboot
 * would have no loop time of its own; 2^40 ms (35 years) of room in front
 * gives every past wall time one. */
#define CLOCK_BASE ((uint64_t)1 << 40)

static uint64_t now_ms(void) {
  return uv_now(sw.loop) + CLOCK_BASE;
}

static uint64_t wall_ms(void) {
  struct timeval tv;
  gettimeofday(&tv, NULL);
  return (uint64_t)tv.tv_sec * 1000 + (uint64_t)tv.tv_usec / 1000;
}

/* The machine runs on loop time; people and the state file want wall
 * time. */
static uint64_t to_wall(uint64_t loop_ms) {
  uint64_t now = now_ms();
  if (loop_ms == 0)
    return 0;
  return wall_ms() - (now > loop_ms ? now - loop_ms : 0);
}

static uint64_t to_loop(uint64_t wall) {
  uint64_t now = now_ms(), w = wall_ms();
  if (wall == 0)
    return 0;
  if (wall >= w)
    return now; /* now, or a clock stepped back: not in the future */
  return w - wall < now ? now - (w - wall) : 1;
}

static void params_from(const sw_config_t *cfg, sw_switch_params_t *p) {
  sw_switch_params_default(p);
  for (int c = 0; c < SW_COLOURS; c++)
    p->rise[c] = cfg->upstream[c].health.rise;
  p->gate_timeout_ms = cfg->cutover.gate_timeout_ms;
  p->drain_timeout_ms = cfg->cutover.drain_timeout_ms;
  p->watch = cfg->watch.enabled;
  for (int c = 0; c < SW_COLOURS; c++)
    p->verify_old[c] =
        cfg->upstream[c].nrequires > 0 && cfg->database.dsn != NULL;
  p->auto_window_ms = cfg->watch.auto_window_ms;
  p->rollback_migrate = cfg->cutover.rollback_migrate != NULL;
  p->manual_window_ms = cfg->watch.manual_window_ms;
}

static void watch_params_from(const sw_config_t *cfg, sw_watch_params_t *p) {
  const sw_watch_conf_t *w = &cfg->watch;

  sw_watch_params_default(p);
  p->auto_window_ms = w->auto_window_ms;
  p->manual_window_ms = w->manual_window_ms;
  p->baseline_window_ms = w->baseline_window_ms;
  p->min_requests = w->min_requests;
  p->nexclude = 0;
  for (size_t i = 0; i < w->nnot_errors && i < SW_WATCH_EXCLUDE_MAX; i++)
    p->exclude[p->nexclude++] = w->not_errors[i];
  p->r1_enabled = w->r1;
  p->max_errors = w->max_errors;
  p->alpha = w->alpha;
  p->r2_enabled = w->r2;
  p->r2_window_ms = w->ratio_window_ms;
  p->max_error_ratio = w->max_error_ratio;
  p->r3_enabled = w->r3;
  p->max_consecutive = w->max_consecutive;
  p->r4_enabled = w->r4;
}

static sw_colour_t other_colour(sw_colour_t c) {
  return c == SW_BLUE ? SW_GREEN : SW_BLUE;
}

/* The phases in which a rollback may still happen: the old colour is kept
 * ready for it. */
static int watch_phase(sw_switch_phase_t p) {
  return p == SW_SWITCH_WATCHING || p == SW_SWITCH_COMMITTED_MANUAL ||
         p == SW_SWITCH_ROLLBACK_BLOCKED || p == SW_SWITCH_ROLLBACK_MIGRATING;
}

/* Phases in which a hold the machine asked for still has a purpose. */
static int hold_phase(void) {
  return ctl.m.phase == SW_SWITCH_MIGRATING ||
         ctl.m.phase == SW_SWITCH_ROLLBACK_MIGRATING ||
         (ctl.m.phase == SW_SWITCH_RECHECKING && ctl.m.gate.migrate);
}

static int has_requirements(sw_colour_t c) {
  return sw.cfg->upstream[c].nrequires > 0 && sw.cfg->database.dsn != NULL;
}

static uint64_t colour_inflight(sw_colour_t c) {
  uint64_t n = 0;
  for (size_t i = 0; i < sw.pools[c].n; i++)
    n += sw.pools[c].servers[i]->inflight;
  return n;
}

/* --- the state file ------------------------------------------------------ */

static void persist(void) {
  const char *path = sw.cfg->cutover.state_file;
  char err[512];

  if (path == NULL)
    return;
  ctl.state.live = ctl.m.live;
  snprintf(ctl.state.phase, sizeof(ctl.state.phase), "%s",
           sw_switch_phase_name(ctl.m.phase));
  ctl.state.flip_time_ms = ctl.flip_wall;
  ctl.state.version = ctl.m.version;
  memset(&ctl.state.watch, 0, sizeof(ctl.state.watch));
  if (ctl.watch_ready && ctl.w.armed) {
    sw_state_watch_t *sw_ = &ctl.state.watch;
    sw_watch_persisted_t wp;
    sw_watch_snapshot(&ctl.w, &wp);
    sw_->present = 1;
    sw_->colour = wp.colour;
    sw_->flip_time_ms = ctl.watch_wall;
    sw_->auto_window_ms = wp.auto_window_ms;
    sw_->manual_window_ms = wp.manual_window_ms;
    sw_->ended = wp.ended;
    sw_->ended_time_ms = wp.ended ? to_wall(wp.ended_at) : 0;
    sw_->requests = wp.requests;
    sw_->errors = wp.errors;
    sw_->baseline_requests = wp.baseline_requests;
    sw_->baseline_errors = wp.baseline_errors;
    snprintf(sw_->fired, sizeof(sw_->fired), "%s",
             sw_watch_verdict_name(wp.fired));
    snprintf(sw_->rule, sizeof(sw_->rule), "%s", sw_watch_rule_name(wp.rule));
    sw_->fired_time_ms = wp.fired != SW_WATCH_NONE ? to_wall(wp.fired_at) : 0;
    snprintf(sw_->text, sizeof(sw_->text), "%.*s", (int)sizeof(sw_->text) - 1,
             ctl.w.fired.text);
    ctl.saved_requests = wp.requests;
  }
  ctl.saved_at = now_ms();
  if (sw_state_save(path, &ctl.state, err, sizeof(err)) != 0)
    sw_error("control", 0, "cannot write the state file: %s", err);
}

/* --- events and actions ------------------------------------------------- */

static json_t *event_json(const sw_switch_event_t *e) {
  return json_pack(
      "{s:I, s:I, s:s, s:s, s:s, s:s, s:s, s:s}", "time_ms",
      (json_int_t)to_wall(e->at), "version", (json_int_t)e->version, "from",
      sw_switch_phase_name(e->from), "to", sw_switch_phase_name(e->to),
      "reason", sw_switch_reason_name(e->reason), "live",
      sw_colour_name(e->live), "target", sw_colour_name(e->target), "text",
      e->text);
}

/* The transitions a webhook hears about, with the watch as it stands. */
static void notify_event(const sw_switch_event_t *e, json_t *j) {
  const char *kind = NULL;

  switch (e->reason) {
    case SW_SWITCH_R_FLIPPED:
    case SW_SWITCH_R_CONFIG:
      kind = "flip";
      break;
    case SW_SWITCH_R_ROLLBACK:
      kind = "rollback";
      break;
    case SW_SWITCH_R_ROLLBACK_BLOCKED:
      kind = "rollback_blocked";
      break;
    case SW_SWITCH_R_AUTO_WINDOW_END:
    case SW_SWITCH_R_MANUAL_WINDOW_END:
      kind = "window_end";
      break;
    case SW_SWITCH_R_COMMITTED:
      kind = "commit";
      break;
    default:
      return;
  }
  {
    json_t *body = json_deep_copy(j);
    if (body == NULL)
      return;
    json_object_set_new(body, "event", json_string(kind));
    json_object_set_new(body, "phase",
                        json_string(sw_switch_phase_name(e->to)));
    json_object_set_new(body, "watch", watch_json());
    sw_notify_send(kind, body);
    json_decref(body);
  }
}

static void announce(const sw_switch_event_t *e) {
  sw_state_event_t se;
  json_t *j;

  sw_info("control", 0, "%s -> %s (%s): %s", sw_switch_phase_name(e->from),
          sw_switch_phase_name(e->to), sw_switch_reason_name(e->reason),
          e->text);
  memset(&se, 0, sizeof(se));
  se.time_ms = to_wall(e->at);
  snprintf(se.from, sizeof(se.from), "%s", sw_switch_phase_name(e->from));
  snprintf(se.to, sizeof(se.to), "%s", sw_switch_phase_name(e->to));
  /* The reason's name then its text, cut to the record's size. */
  {
    int n = snprintf(se.reason, sizeof(se.reason),
                     "%s: ", sw_switch_reason_name(e->reason));
    if (n > 0 && (size_t)n < sizeof(se.reason)) {
      size_t k = strnlen(e->text, sizeof(se.reason) - (size_t)n - 1);
      /* Never cut inside a UTF-8 sequence: the state file is JSON. */
      while (k > 0 && e->text[k] != '\0' &&
             ((unsigned char)e->text[k] & 0xc0) == 0x80)
        k--;
      memcpy(se.reason + n, e->text, k);
      se.reason[n + k] = '\0';
    }
  }
  (void)sw_state_push(&ctl.state, &se);
  /* An operator's commit or a rollback ends the watch before its windows
   * do; it never reads as verified. */
  if ((e->reason == SW_SWITCH_R_ROLLBACK ||
       e->reason == SW_SWITCH_R_COMMITTED) &&
      ctl.watch_ready)
    sw_watch_end(&ctl.w, e->at);
  j = event_json(e);
  if (j != NULL) {
    sw_admin_broadcast("transition", j);
    notify_event(e, j);
    json_decref(j);
  }
}

static void after_verify(sw_colour_t c);

static void on_verify(sw_verify_t *v,
                      const sw_verify_result_t *res,
                      void *data) {
  run_t *run = data;
  sw_colour_t c = run->colour;
  sw_switch_actions_t a;
  sw_switch_verify_t r;
  json_t *j;
  (void)v;

  if (run->gen == ctl.gen[c])
    ctl.running[c] = NULL;
  if (run->gen != ctl.gen[c] || !ctl.started) {
    free(run); /* superseded or stopping: its answer is not news */
    return;
  }
  r = res->status == SW_VERIFY_PASS   ? SW_SWITCH_VERIFY_PASS
      : res->status == SW_VERIFY_FAIL ? SW_SWITCH_VERIFY_FAIL
                                      : SW_SWITCH_VERIFY_INCONCLUSIVE;
  ctl.verify[c].status = sw_verify_status_name(res->status);
  snprintf(ctl.verify[c].message, sizeof(ctl.verify[c].message), "%s",
           res->message);
  ctl.verify[c].wall_ms = wall_ms();
  ctl.verify[c].elapsed_ms = res->elapsed_ms;
  ctl.done[c] = ctl.verify[c].status;
  ctl.done_started[c] = run->started;
  snprintf(ctl.done_message[c], sizeof(ctl.done_message[c]), "%s",
           res->message);
  sw_log(res->status == SW_VERIFY_PASS ? SW_LOG_INFO : SW_LOG_WARN, "verify", 0,
         "%s: %s%s%s", sw_colour_name(c), sw_verify_status_name(res->status),
         res->message[0] ? ": " : "", res->message);
  j = json_pack("{s:s, s:s, s:s}", "colour", sw_colour_name(c), "status",
                sw_verify_status_name(res->status), "message", res->message);
  if (j != NULL) {
    sw_admin_broadcast("verify", j);
    json_decref(j);
  }
  sw_switch_on_verify(&ctl.m, now_ms(), c, r, run->started, res->message, &a);
  free(run);
  perform(&a);
  after_verify(c);
}

/* Whatever a finished verification of colour c decides beyond the
 * machine's gate: a waiting rollback, the end of a reverse migration.
 * Every way a verification ends comes here, the synchronous ones too. */
static void after_verify(sw_colour_t c) {
  pending_rollback();
  if (ctl.mb_verifying && ctl.m.phase == SW_SWITCH_ROLLBACK_MIGRATING &&
      c == other_colour(sw.live)) {
    /* After the reverse migration: the rollback flips on this answer, or
     * blocks with it. */
    char msg[SW_SWITCH_MESSAGE], trigger[16], why[SW_SWITCH_MESSAGE];
    ctl.mb_verifying = 0;
    ctl.mb_finishing = 1;
    snprintf(trigger, sizeof(trigger), "%s", ctl.m.last_rollback.trigger);
    snprintf(why, sizeof(why), "after the reverse migration (%s)",
             ctl.m.last_rollback.trigger);
    (void)rollback(ctl.m.last_rollback.mode, trigger, why, msg, sizeof(msg));
    ctl.mb_finishing = 0;
  }
}

/* Verifies colour c's schema requirements; a colour with none passes at
 * once without touching the database. */
static void start_verify(sw_colour_t c, int for_gate) {
  const sw_upstream_conf_t *uc = &sw.cfg->upstream[c];
  const sw_database_conf_t *db = &sw.cfg->database;
  sw_verify_params_t p;
  sw_verify_req_t *reqs;
  run_t *run;
  int err;

  if (ctl.running[c] != NULL)
    sw_verify_cancel(ctl.running[c]);
  ctl.running[c] = NULL;
  ctl.gen[c]++;
  if (uc->nrequires == 0 || db->dsn == NULL) {
    sw_switch_actions_t a;
    ctl.verify[c].status = "pass";
    ctl.done[c] = "pass";
    ctl.done_started[c] = now_ms();
    snprintf(ctl.verify[c].message, sizeof(ctl.verify[c].message),
             "no requirements configured");
    ctl.verify[c].wall_ms = wall_ms();
    sw_switch_on_verify(&ctl.m, now_ms(), c, SW_SWITCH_VERIFY_PASS, now_ms(),
                        "no requirements configured", &a);
    perform(&a);
    after_verify(c);
    return;
  }
  reqs = calloc(uc->nrequires, sizeof(*reqs));
  run = calloc(1, sizeof(*run));
  if (reqs == NULL || run == NULL) {
    free(reqs);
    free(run);
    return;
  }
  for (size_t i = 0; i < uc->nrequires; i++) {
    reqs[i].kind =
        uc->requires[i].kind == SW_REQUIRE_MIGRATION ? SW_VERIFY_MIGRATION
        : uc->requires[i].kind == SW_REQUIRE_COLUMN  ? SW_VERIFY_COLUMN
                                                     : SW_VERIFY_QUERY;
    reqs[i].a = uc->requires[i].a;
    reqs[i].b = uc->requires[i].b;
  }
  memset(&p, 0, sizeof(p));
  p.dsn = db->dsn;
  p.connect_timeout_ms = db->connect_timeout_ms;
  p.statement_timeout_ms = db->statement_timeout_ms;
  p.lock_timeout_ms = db->lock_timeout_ms;
  p.reqs = reqs;
  p.nreqs = uc->nrequires;
  run->colour = c;
  run->gen = ctl.gen[c];
  run->started = now_ms();
  run->for_gate = for_gate;
  ctl.verify[c].status = "running";
  err = sw_verify_start(sw.loop, &p, on_verify, run, &ctl.running[c]);
  free(reqs);
  if (err != 0) {
    sw_switch_actions_t a;
    char msg[128];
    free(run);
    ctl.running[c] = NULL;
    snprintf(msg, sizeof(msg), "cannot start: %s", uv_strerror(err));
    ctl.verify[c].status = "inconclusive";
    ctl.done[c] = "inconclusive";
    ctl.done_started[c] = now_ms();
    snprintf(ctl.done_message[c], sizeof(ctl.done_message[c]), "%s", msg);
    snprintf(ctl.verify[c].message, sizeof(ctl.verify[c].message), "%s", msg);
    sw_switch_on_verify(&ctl.m, now_ms(), c, SW_SWITCH_VERIFY_INCONCLUSIVE,
                        now_ms(), msg, &a);
    perform(&a);
    after_verify(c);
  }
}

/* One probe of every server of colour c, for the re-check before a flip. A
 * colour without checks has nothing to probe and counts as passing. */
static void probe_colour(sw_colour_t c) {
  int any = 0;
  for (size_t i = 0; i < sw.pools[c].n; i++) {
    sw_server_t *s = sw.pools[c].servers[i];
    if (s->health != NULL && sw_health_probe_now(s->health, NULL) == 0)
      any = 1;
  }
  if (!any) {
    sw_switch_actions_t a;
    uint64_t now = now_ms();
    sw_switch_on_health(&ctl.m, now, c, 1, now, "", &a);
    perform(&a);
  }
}

/* Ends the old colour's remaining exchanges at the drain deadline. */
typedef struct cancel_s {
  sw_colour_t colour;
  sw_upconn_t **list;
  size_t n, cap;
} cancel_t;

static void on_walk_cancel(uv_handle_t *h, void *arg) {
  cancel_t *k = arg;
  sw_kind_t *kind = h->data;
  sw_upconn_t *u;

  if (kind == NULL || *kind != SW_KIND_UPCONN || uv_is_closing(h))
    return;
  u = sw_container_of(kind, sw_upconn_t, kind);
  if (u->req == NULL || u->server->colour != k->colour)
    return;
  if (k->n == k->cap) {
    size_t cap = k->cap ? k->cap * 2 : 64;
    sw_upconn_t **p = realloc(k->list, cap * sizeof(*p));
    if (p == NULL)
      return;
    k->list = p;
    k->cap = cap;
  }
  k->list[k->n++] = u;
}

static uint64_t cancel_colour(sw_colour_t c) {
  cancel_t k;
  uint64_t done = 0;

  memset(&k, 0, sizeof(k));
  k.colour = c;
  uv_walk(sw.loop, on_walk_cancel, &k);
  /* Collected first, acted on after: ending one exchange closes handles
   * the walk would otherwise meet half-closed. */
  for (size_t i = 0; i < k.n; i++) {
    sw_req_t *r = k.list[i]->req;
    if (r == NULL)
      continue;
    done++;
    sw_warn("control", r->client->id,
            "drain timeout: cancelling %s %.*s on %s (%s)", r->method,
            (int)r->url_len, r->head.raw.data + r->url_off, r->server->name,
            sw_colour_name(c));
    if (r->state == SW_REQ_TUNNEL)
      sw_client_close(r->client);
    else
      sw_req_fail(r, 503);
  }
  free(k.list);
  return done;
}

static void on_tick(uv_timer_t *t);
static void watch_tick(uint64_t now);

static void arm(void) {
  sw_switch_phase_t p = ctl.m.phase;

  if (!ctl.timer_open)
    return;
  if (!ctl.m.drain.active && (p == SW_SWITCH_STEADY || p == SW_SWITCH_FINAL ||
                              p == SW_SWITCH_ROLLED_BACK)) {
    uv_timer_stop(&ctl.timer);
    return;
  }
  /* A short period: the drain's in-flight count is sampled on it, and the
   * machine's deadlines are checked. */
  if (!uv_is_active((uv_handle_t *)&ctl.timer))
    uv_timer_start(&ctl.timer, on_tick, 100, 100);
}

static void perform(sw_switch_actions_t *a) {
  if (a->flags & SW_SWITCH_ACT_FLIP) {
    sw_colour_t old = sw.live;
    /* The flip: from this assignment on, every request whose head is
     * complete goes to the new colour. */
    sw.live = a->flip_to;
    ctl.flip_wall = wall_ms();
    sw_info("control", 0, "live colour %s -> %s", sw_colour_name(old),
            sw_colour_name(sw.live));
    /* Idle connections to the old colour are of no use any more. */
    for (size_t k = 0; k < sw.pools[old].n; k++)
      while (!sw_list_empty(&sw.pools[old].servers[k]->idle))
        sw_upconn_close(sw_container_of(sw.pools[old].servers[k]->idle.next,
                                        sw_upconn_t, link));
  }
  if ((a->flags & SW_SWITCH_ACT_WATCH) && ctl.watch_ready) {
    /* Armed in the flip's turn: the first response of the new colour
     * already counts. The old colour's requirements are re-checked at
     * once, so a rollback has its answer ready. */
    (void)sw_watch_arm(&ctl.w, now_ms(), a->flip_to, ctl.m.watch_auto_ms,
                       ctl.m.watch_manual_ms);
    ctl.watch_wall = ctl.flip_wall;
    ctl.old_verify_at = now_ms();
    memset(&ctl.last_verdict, 0, sizeof(ctl.last_verdict));
  }
  /* Announced once the flip and the watch are in place, so that what the
   * events and the webhook show is the state they describe. */
  for (size_t i = 0; i < a->nevents; i++)
    announce(&a->events[i]);
  if (a->flags & SW_SWITCH_ACT_PERSIST)
    persist();
  /* Held requests go to the colour that is live now, counted by the
   * watch just armed, in the order they came; after the records above,
   * since what they cause (a trigger, a rollback) comes after them. */
  if ((a->flags & SW_SWITCH_ACT_FLIP) && sw_hold_active())
    (void)sw_hold_release(SW_HOLD_END_FLIP);
  if (a->flags & SW_SWITCH_ACT_MIGRATE_BACK) {
    ctl.mb_pending = 1; /* started once the hold below is quiet */
    ctl.mb_verifying = 0;
  }
  if (a->flags & SW_SWITCH_ACT_HOLD)
    hold_for_machine();
  /* A hold that was quiet already (an operator's) reports no QUIET. */
  if (a->flags & SW_SWITCH_ACT_MIGRATE_BACK)
    migrate_back_maybe_start();
  if ((a->flags & SW_SWITCH_ACT_WATCH) &&
      has_requirements(other_colour(a->flip_to)) &&
      ctl.running[other_colour(a->flip_to)] == NULL &&
      ctl.done_started[other_colour(a->flip_to)] < ctl.fresh_from) {
    ctl.old_verify_at = now_ms() + sw.cfg->watch.verify_interval_ms;
    start_verify(other_colour(a->flip_to), 0);
  }
  if ((a->flags & SW_SWITCH_ACT_VERIFY) &&
      ctl.m.phase == SW_SWITCH_RECHECKING && ctl.m.params.watch &&
      has_requirements(sw.live)) {
    /* The colour a rollback would go back to is verified alongside the
     * re-check: from the flip on, the answer to "may we go back?" rests on
     * this cutover's evidence only. */
    ctl.fresh_from = now_ms();
    start_verify(sw.live, 0);
  }
  if (a->flags & SW_SWITCH_ACT_VERIFY)
    start_verify(a->verify, 1);
  if (a->flags & SW_SWITCH_ACT_PROBE)
    probe_colour(a->probe);
  if (a->flags & SW_SWITCH_ACT_CANCEL_DRAIN) {
    sw_switch_actions_t b;
    uint64_t n = cancel_colour(a->cancel);
    sw_switch_on_drain_cancelled(&ctl.m, now_ms(), a->cancel, n, &b);
    perform(&b);
  }
  if (ctl.m.drain.active) {
    sw_switch_actions_t b;
    sw_switch_on_inflight(&ctl.m, now_ms(), ctl.m.drain.colour,
                          colour_inflight(ctl.m.drain.colour), &b);
    if (b.nevents > 0 || b.flags != 0)
      perform(&b);
  }
  /* A hold the machine asked for ends with its purpose: a gate that ended
   * without a flip, a rollback that blocked. The live colour gets the
   * queue. */
  if (ctl.hold_mine && sw_hold_active() && !hold_phase())
    (void)sw_hold_release(SW_HOLD_END_ABORT);
  arm();
}

static void on_tick(uv_timer_t *t) {
  sw_switch_actions_t a;
  (void)t;
  sw_switch_tick(&ctl.m, now_ms(), &a);
  perform(&a);
  watch_tick(now_ms());
}

/* --- the hold barrier ------------------------------------------------------
 */

static void on_lock_sample(sw_verify_t *v,
                           const sw_verify_result_t *res,
                           void *data) {
  uint64_t gen = (uint64_t)(uintptr_t)data;
  (void)v;
  if (gen == ctl.lock_gen)
    ctl.lock_run = NULL;
  if (!res->locks_checked) {
    if (strcmp(res->message, "cancelled") != 0) {
      ctl.lock_failed++;
      snprintf(ctl.lock_error, sizeof(ctl.lock_error), "%s", res->message);
    }
    return;
  }
  ctl.lock_samples++;
  if (res->lock_wait_max_ms > ctl.lock_max_ms)
    ctl.lock_max_ms = res->lock_wait_max_ms;
  if (res->lock_waiters > ctl.lock_waiters_max)
    ctl.lock_waiters_max = res->lock_waiters;
}

/* One sample at a time, every LOCK_SAMPLE_MS while a hold runs: the
 * longest lock wait a migration caused is in the cutover report. */
#define LOCK_SAMPLE_MS 50
#define LOCK_SAMPLE_FAST_MS 10000
#define LOCK_SAMPLE_SLOW_MS 1000

static void lock_sample(uv_timer_t *t) {
  sw_verify_params_t p;
  sw_verify_req_t req = {SW_VERIFY_LOCKS, NULL, NULL};
  const sw_database_conf_t *db = &sw.cfg->database;
  (void)t;

  if (ctl.lock_run != NULL || db->dsn == NULL || !sw_hold_active())
    return;
  /* Each sample is a session of its own: after the first seconds (a
   * migration's usual length) they come less often, so a long hold costs
   * the database a connection a second, not twenty. */
  if (uv_timer_get_repeat(&ctl.lock_timer) == LOCK_SAMPLE_MS &&
      wall_ms() - sw_hold_stats()->started >= LOCK_SAMPLE_FAST_MS)
    uv_timer_set_repeat(&ctl.lock_timer, LOCK_SAMPLE_SLOW_MS);
  memset(&p, 0, sizeof(p));
  p.dsn = db->dsn;
  p.connect_timeout_ms = db->connect_timeout_ms;
  p.statement_timeout_ms = db->statement_timeout_ms;
  p.lock_timeout_ms = db->lock_timeout_ms;
  p.reqs = &req;
  p.nreqs = 1;
  ctl.lock_gen++;
  if (sw_verify_start(sw.loop, &p, on_lock_sample,
                      (void *)(uintptr_t)ctl.lock_gen, &ctl.lock_run) != 0)
    ctl.lock_run = NULL;
}

static json_t *hold_json(void) {
  const sw_hold_stats_t *h = sw_hold_stats();
  json_t *o;

  if (!h->valid)
    return json_null();
  o = json_pack(
      "{s:b, s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I,"
      " s:s, s:s}",
      "active", h->active, "by", h->by, "started_ms", (json_int_t)h->started,
      "ended_ms", (json_int_t)h->ended, "max_ms", (json_int_t)h->max_ms,
      "queued", (json_int_t)h->depth, "peak", (json_int_t)h->peak, "held",
      (json_int_t)h->held, "released", (json_int_t)h->released, "rejected",
      (json_int_t)h->rejected, "gone", (json_int_t)h->gone, "wait_max_us",
      (json_int_t)h->wait_max_us, "wait_p99_us", (json_int_t)h->wait_p99_us,
      "inflight", (json_int_t)sw_hold_inflight(), "end",
      sw_hold_end_name(h->end), "released_to",
      h->active ? "" : sw_colour_name(h->released_to));
  if (o == NULL)
    return json_null();
  json_object_set_new(o, "tunnels",
                      json_integer((json_int_t)sw_hold_tunnels()));
  json_object_set_new(o, "quiet", json_boolean(h->quiet_ms != UINT64_MAX));
  if (h->quiet_ms != UINT64_MAX)
    json_object_set_new(o, "quiet_after_ms",
                        json_integer((json_int_t)h->quiet_ms));
  if (sw.cfg->database.dsn != NULL) {
    json_t *l = json_pack(
        "{s:I, s:I, s:I, s:I}", "max_wait_ms", (json_int_t)ctl.lock_max_ms,
        "max_waiters", (json_int_t)ctl.lock_waiters_max, "samples",
        (json_int_t)ctl.lock_samples, "failed", (json_int_t)ctl.lock_failed);
    if (l != NULL && ctl.lock_error[0])
      json_object_set_new(l, "error", json_string(ctl.lock_error));
    if (l != NULL)
      json_object_set_new(o, "locks", l);
  }
  return o;
}

static void hold_broadcast(const char *what) {
  json_t *j = hold_json();
  if (json_is_object(j)) {
    json_object_set_new(j, "event", json_string(what));
    sw_admin_broadcast("hold", j);
  }
  json_decref(j);
}

/* Starts the lock sampler with a hold (any hold: an operator's too). */
static void hold_started(void) {
  ctl.lock_max_ms = 0;
  ctl.lock_waiters_max = 0;
  ctl.lock_samples = 0;
  ctl.lock_failed = 0;
  ctl.lock_error[0] = '\0';
  if (ctl.lock_timer_open && sw.cfg->database.dsn != NULL) {
    lock_sample(&ctl.lock_timer);
    uv_timer_start(&ctl.lock_timer, lock_sample, LOCK_SAMPLE_MS,
                   LOCK_SAMPLE_MS);
  }
  hold_broadcast("started");
}

/* HOLD: the machine's gate passed for a migration, or a rollback needs
 * the reverse one. An operator's hold already running is kept (with its
 * own bound) and becomes the machine's. */
static void hold_for_machine(void) {
  char by[SW_SWITCH_WHO + 32];
  int rollback = ctl.m.phase == SW_SWITCH_ROLLBACK_MIGRATING;
  uint64_t max = rollback ? 0 : ctl.cut_hold_ms;
  int err;

  snprintf(
      by, sizeof(by), "%s to %s", rollback ? "rollback" : "cutover",
      sw_colour_name(rollback ? other_colour(sw.live) : ctl.m.gate.target));
  ctl.hold_mine = 1;
  err = sw_hold_start(max, by);
  if (err == 0 || err == UV_EBUSY) {
    if (err == 0)
      hold_started();
    return;
  }
  /* Without the hold the migration would meet live traffic: it does not
   * run, and the cutover or rollback it was for ends here. */
  ctl.hold_mine = 0;
  sw_error("control", 0, "cannot hold requests: %s", uv_strerror(err));
  if (rollback) {
    sw_switch_actions_t a;
    char text[128];
    ctl.mb_pending = 0;
    snprintf(text, sizeof(text), "cannot hold requests: %s", uv_strerror(err));
    sw_switch_rollback_migrated(&ctl.m, now_ms(), 0, text, &a);
    perform(&a);
    announce_rollback();
  } else if (ctl.m.phase == SW_SWITCH_MIGRATING) {
    sw_switch_actions_t a;
    if (sw_switch_abort(&ctl.m, now_ms(), "switchd (cannot hold requests)",
                        &a) == SW_SWITCH_R_NONE)
      perform(&a);
  }
}

static void on_migrate_back(const sw_command_result_t *r, void *data);

/* The reverse migration runs once nothing is in flight on the live
 * colour: its requests would meet the schema changing under them. */
static void migrate_back_maybe_start(void) {
  const sw_hold_stats_t *h = sw_hold_stats();
  int err;

  if (!ctl.mb_pending || ctl.m.phase != SW_SWITCH_ROLLBACK_MIGRATING ||
      !h->active || h->quiet_ms == UINT64_MAX)
    return;
  ctl.mb_pending = 0;
  err =
      sw_command_start(sw.loop, sw.cfg->cutover.rollback_migrate,
                       sw.cfg->cutover.rollback_migrate_timeout_ms,
                       "rollback_migrate", on_migrate_back, NULL, &ctl.mb_cmd);
  if (err != 0) {
    sw_switch_actions_t a;
    char text[160];
    ctl.mb_cmd = NULL;
    snprintf(text, sizeof(text), "rollback_migrate could not start: %s",
             uv_strerror(err));
    sw_switch_rollback_migrated(&ctl.m, now_ms(), 0, text, &a);
    sw_error("control", 0, "%s", ctl.m.last_rollback.message);
    perform(&a);
    announce_rollback();
    return;
  }
  ctl.mb_running = 1;
}

static void on_migrate_back(const sw_command_result_t *r, void *data) {
  sw_switch_actions_t a;
  const char *last;
  size_t n;
  (void)data;

  ctl.mb_cmd = NULL;
  ctl.mb_running = 0;
  if (!ctl.started)
    return;
  ctl.mb_valid = 1;
  ctl.mb_status = r->exit_status;
  ctl.mb_ms = r->elapsed_ms;
  ctl.mb_timed_out = r->timed_out;
  /* The last line of its output says most about a failure. */
  n = strlen(r->tail);
  while (n > 0 && r->tail[n - 1] == '\n')
    n--;
  last = r->tail + n;
  while (last > r->tail && last[-1] != '\n')
    last--;
  snprintf(ctl.mb_tail, sizeof(ctl.mb_tail), "%.*s", (int)(r->tail + n - last),
           last);
  if (ctl.m.phase != SW_SWITCH_ROLLBACK_MIGRATING)
    return;
  if (r->exit_status != 0 || r->timed_out) {
    char text[SW_SWITCH_MESSAGE];
    if (r->timed_out)
      snprintf(text, sizeof(text),
               "rollback_migrate killed after %llu ms (timeout)%s%s",
               (unsigned long long)r->elapsed_ms, ctl.mb_tail[0] ? ": " : "",
               ctl.mb_tail);
    else if (r->term_signal != 0)
      snprintf(text, sizeof(text), "rollback_migrate killed by signal %d%s%s",
               r->term_signal, ctl.mb_tail[0] ? ": " : "", ctl.mb_tail);
    else
      snprintf(text, sizeof(text),
               "rollback_migrate exited with status %lld after %llu ms%s%s",
               (long long)r->exit_status, (unsigned long long)r->elapsed_ms,
               ctl.mb_tail[0] ? ": " : "", ctl.mb_tail);
    sw_switch_rollback_migrated(&ctl.m, now_ms(), 0, text, &a);
    sw_error("control", 0, "%s", ctl.m.last_rollback.message);
    perform(&a);
    announce_rollback();
    return;
  }
  sw_info("control", 0,
          "rollback_migrate done in %llu ms: verifying %s's requirements",
          (unsigned long long)r->elapsed_ms,
          sw_colour_name(other_colour(sw.live)));
  /* The flip back waits for this verification: see on_verify. */
  ctl.mb_verifying = 1;
  start_verify(other_colour(sw.live), 0);
}

static void on_hold_event(sw_hold_event_t ev, void *data) {
  sw_switch_actions_t a;
  (void)data;

  if (!ctl.started)
    return;
  if (ev == SW_HOLD_EV_QUIET) {
    hold_broadcast("quiet");
    migrate_back_maybe_start();
    return;
  }
  /* Ended. */
  uv_timer_stop(&ctl.lock_timer);
  hold_broadcast("released");
  ctl.hold_mine = 0;
  /* It ran out: a migrate cutover that has not flipped cannot any more
   * (the held requests went to the old colour). */
  if (sw_hold_stats()->end == SW_HOLD_END_EXPIRED) {
    sw_switch_hold_expired(&ctl.m, now_ms(), &a);
    perform(&a);
  }
  /* However it ended (run out, an operator's release), a reverse
   * migration that had not started will not: nothing holds the traffic
   * off the schema any more. */
  if (ctl.mb_pending && ctl.m.phase == SW_SWITCH_ROLLBACK_MIGRATING) {
    char text[SW_SWITCH_MESSAGE];
    ctl.mb_pending = 0;
    snprintf(text, sizeof(text),
             "the hold ended (%s) before %s was quiet (%llu in flight): the "
             "reverse migration did not run",
             sw_hold_end_name(sw_hold_stats()->end), sw_colour_name(sw.live),
             (unsigned long long)sw_hold_inflight());
    sw_switch_rollback_migrated(&ctl.m, now_ms(), 0, text, &a);
    sw_error("control", 0, "%s", ctl.m.last_rollback.message);
    perform(&a);
    announce_rollback();
  }
}

/* --- the watch and rollback ------------------------------------------------
 */

/* Whether colour c's servers that count as up have been probed by this
 * process: at start every checked server counts as up until its checks
 * say otherwise, which is right for serving at once, but a rollback wants
 * evidence. */
static int colour_probed(sw_colour_t c) {
  for (size_t i = 0; i < sw.pools[c].n; i++) {
    const sw_server_t *s = sw.pools[c].servers[i];
    if (sw_server_usable(s) && (s->health == NULL || s->health->last.seq != 0))
      return 1;
  }
  return 0;
}

/* Why colour c cannot take the traffic back, in buf; NULL when it can.
 * It reads what is already known (the colour's health, the last
 * verification of its requirements started since the re-check before the
 * flip, re-checked during the window), so a rollback decides in the loop
 * turn that asked for it. *wait is set when the evidence is still coming
 * (a verification running, servers not probed yet since the start): the
 * caller may decide again when it comes. */
static const char *not_ready(
    sw_colour_t c, char *buf, size_t len, int *wait, int *schema) {
  const char *name = sw_colour_name(c);

  *wait = 0;
  *schema = 0;
  if (ctl.colour_up[c] <= 0) {
    snprintf(buf, len, "%s is unhealthy: %s", name,
             ctl.m.health_reason[c][0] ? ctl.m.health_reason[c]
                                       : "no server of the colour is up");
    return buf;
  }
  if (!colour_probed(c)) {
    *wait = 1;
    snprintf(buf, len, "%s has not been health-checked since the start", name);
    return buf;
  }
  if (has_requirements(c)) {
    int fresh = ctl.done[c] != NULL && ctl.done_started[c] >= ctl.fresh_from &&
                ctl.done_started[c] != 0;
    if (!fresh || strcmp(ctl.done[c], "none") == 0) {
      *wait = ctl.running[c] != NULL;
      snprintf(buf, len, "%s's schema requirements are not verified yet%s",
               name, *wait ? " (verification running)" : "");
      return buf;
    }
    if (strcmp(ctl.done[c], "pass") != 0) {
      /* A failing schema is what a reverse migration can mend; a
       * database that does not answer is not. */
      *schema = strcmp(ctl.done[c], "fail") == 0;
      snprintf(buf, len, "%s's schema requirements: %s: %s", name, ctl.done[c],
               ctl.done_message[c]);
      return buf;
    }
  }
  return NULL;
}

/* Rolls back from the live colour; the refusal reason otherwise, with the
 * reason the other colour is not ready in msg. */
static sw_switch_reason_t rollback(sw_switch_rollback_mode_t mode,
                                   const char *trigger,
                                   const char *why,
                                   char *msg,
                                   size_t msglen) {
  sw_colour_t to = other_colour(sw.live);
  sw_switch_actions_t a;
  sw_switch_reason_t r;
  int wait, schema;
  const char *nr;

  /* The reverse migration is running: the rollback is under way, and only
   * its own end (on_verify) decides it. */
  if (ctl.m.phase == SW_SWITCH_ROLLBACK_MIGRATING && !ctl.mb_finishing) {
    snprintf(msg, msglen, "the reverse migration of a rollback is running");
    return SW_SWITCH_R_IN_PROGRESS;
  }
  nr = not_ready(to, msg, msglen, &wait, &schema);

  /* An automatic rollback whose evidence is on its way waits for it
   * (bounded by the verifier's timeouts and one health interval) rather
   * than latching rollback_blocked on a guess. */
  if (nr != NULL && wait && mode == SW_SWITCH_ROLLBACK_AUTO &&
      ctl.m.phase == SW_SWITCH_WATCHING) {
    if (!ctl.rollback_pending)
      sw_warn("control", 0, "rollback to %s waits: %s", sw_colour_name(to), nr);
    ctl.rollback_pending = 1;
    snprintf(ctl.pending_rule, sizeof(ctl.pending_rule), "%s", trigger);
    snprintf(ctl.pending_text, sizeof(ctl.pending_text), "%s", why);
    return SW_SWITCH_R_NOT_READY;
  }
  ctl.rollback_pending = 0;

  if (nr != NULL && schema && sw.cfg->cutover.rollback_migrate != NULL &&
      ctl.m.phase != SW_SWITCH_ROLLBACK_MIGRATING) {
    /* The old colour is up but its schema is gone: the config's reverse
     * migration runs under a hold, then the old colour is verified again
     * and the rollback flips or blocks. */
    r = sw_switch_rollback_migrate(&ctl.m, now_ms(), mode, trigger, why, &a);
    if (r != SW_SWITCH_R_NONE) {
      perform(&a);
      return r;
    }
    sw_warn("control", 0, "%s (%s)", ctl.m.last_rollback.message, nr);
    ctl.mb_valid = 0;
    perform(&a);
    announce_rollback();
    return SW_SWITCH_R_ROLLBACK_MIGRATE;
  }
  r = sw_switch_rollback(&ctl.m, now_ms(), mode, trigger, why, nr, &a);
  if (r != SW_SWITCH_R_NONE && r != SW_SWITCH_R_ROLLBACK_BLOCKED) {
    perform(&a); /* a window that ran out on the way is still news */
    return r;
  }
  if (r == SW_SWITCH_R_NONE) {
    size_t k = 0;
    for (size_t i = 1; i < SW_WATCH_RULES; i++)
      if (strcmp(trigger, sw_watch_rule_name((sw_watch_rule_t)i)) == 0)
        k = i;
    ctl.rollbacks[k]++;
    sw_warn("control", 0, "%s", ctl.m.last_rollback.message);
  } else {
    sw_error("control", 0, "%s", ctl.m.last_rollback.message);
  }
  perform(&a);
  announce_rollback();
  return r;
}

/* The last rollback, to the admin API's event stream. */
static void announce_rollback(void) {
  {
    const sw_switch_rollback_t *rb = &ctl.m.last_rollback;
    json_t *j =
        json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "outcome",
                  rb->blocked                                   ? "blocked"
                  : ctl.m.phase == SW_SWITCH_ROLLBACK_MIGRATING ? "migrating"
                                                                : "rolled_back",
                  "mode", sw_switch_rollback_mode_name(rb->mode), "trigger",
                  rb->trigger, "from", sw_colour_name(rb->from), "to",
                  sw_colour_name(rb->to), "message", rb->message);
    if (j != NULL) {
      json_object_set_new(j, "time_ms", json_integer((json_int_t)wall_ms()));
      sw_admin_broadcast("rollback", j);
      json_decref(j);
    }
  }
}

/* The evidence a waiting rollback needed may have come. */
static void pending_rollback(void) {
  char msg[SW_SWITCH_MESSAGE], rule[8], text[SW_WATCH_TEXT];

  if (!ctl.rollback_pending)
    return;
  if (ctl.m.phase != SW_SWITCH_WATCHING) {
    ctl.rollback_pending = 0;
    return;
  }
  snprintf(rule, sizeof(rule), "%s", ctl.pending_rule);
  snprintf(text, sizeof(text), "%s", ctl.pending_text);
  (void)rollback(SW_SWITCH_ROLLBACK_AUTO, rule, text, msg, sizeof(msg));
}

static json_t *verdict_json(const sw_watch_result_t *res) {
  return json_pack(
      "{s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:f, s:I, s:I, s:I, s:I, "
      "s:s}",
      "verdict", sw_watch_verdict_name(res->verdict), "rule",
      sw_watch_rule_name(res->rule), "colour", sw_colour_name(res->colour),
      "since_flip_ms", (json_int_t)res->since_flip_ms, "errors",
      (json_int_t)res->errors, "requests", (json_int_t)res->requests,
      "baseline_errors", (json_int_t)res->baseline_errors, "baseline_requests",
      (json_int_t)res->baseline_requests, "baseline_ratio", res->baseline_ratio,
      "window_ms", (json_int_t)res->window_ms, "window_errors",
      (json_int_t)res->window_errors, "window_requests",
      (json_int_t)res->window_requests, "consecutive",
      (json_int_t)res->consecutive, "text", res->text);
}

/* A trigger fired (auto window: roll back now) or alerted (manual window:
 * people decide). */
static void on_verdict(const sw_watch_result_t *res) {
  json_t *j = verdict_json(res);
  char msg[SW_SWITCH_MESSAGE];

  ctl.last_verdict = *res;
  ctl.last_verdict_wall = wall_ms();
  if (j != NULL)
    json_object_set_new(j, "time_ms",
                        json_integer((json_int_t)ctl.last_verdict_wall));
  sw_log(SW_LOG_WARN, "watch", 0, "%s %s on %s: %s",
         sw_watch_rule_name(res->rule),
         res->verdict == SW_WATCH_FIRE ? "fired" : "alerts",
         sw_colour_name(res->colour), res->text);
  if (j != NULL) {
    sw_admin_broadcast("watch", j);
    if (res->verdict == SW_WATCH_ALERT)
      sw_notify_send("alert", j);
    json_decref(j);
  }
  if (res->verdict == SW_WATCH_FIRE) {
    sw_switch_reason_t r =
        rollback(SW_SWITCH_ROLLBACK_AUTO, sw_watch_rule_name(res->rule),
                 res->text, msg, sizeof(msg));
    if (r == SW_SWITCH_R_NONE || r == SW_SWITCH_R_ROLLBACK_BLOCKED ||
        r == SW_SWITCH_R_ROLLBACK_MIGRATE)
      return; /* its transition was written to the state file */
    if (ctl.m.phase == SW_SWITCH_ROLLBACK_MIGRATING)
      return; /* a rollback is under way already */
    if (ctl.rollback_pending) {
      persist(); /* the watch's latch */
      return;
    }
    /* The machine's window may have ended in this very turn: then the
     * trigger is an alert, as the manual window wants. */
    sw_warn("watch", 0, "no automatic rollback in phase %s (%s)",
            sw_switch_phase_name(ctl.m.phase), sw_switch_reason_name(r));
    j = verdict_json(res);
    if (j != NULL) {
      json_object_set_new(j, "verdict", json_string("alert"));
      sw_notify_send("alert", j);
      json_decref(j);
    }
  }
  ctl.alerts++;
  persist();
}

static void watch_health(sw_colour_t c, int up) {
  sw_watch_result_t res;
  if (ctl.watch_ready &&
      sw_watch_on_health(&ctl.w, now_ms(), c, up, &res) != SW_WATCH_NONE)
    on_verdict(&res);
}

/* Every tick while a rollback is possible: the watch's time-driven
 * triggers, the old colour's requirements re-checked so a rollback's
 * answer is ready, and the counts saved now and then for a restart. */
static void watch_tick(uint64_t now) {
  sw_watch_result_t res;
  sw_colour_t old = other_colour(sw.live);

  if (!ctl.watch_ready || !ctl.w.armed)
    return;
  if (sw_watch_tick(&ctl.w, now, &res) != SW_WATCH_NONE)
    on_verdict(&res);
  if (!watch_phase(ctl.m.phase))
    return;
  if (has_requirements(old) && now >= ctl.old_verify_at &&
      ctl.running[old] == NULL) {
    ctl.old_verify_at = now + sw.cfg->watch.verify_interval_ms;
    start_verify(old, 0);
  }
  if (now - ctl.saved_at >= WATCH_SAVE_MS &&
      ctl.w.requests != ctl.saved_requests)
    persist();
}

/* --- health --------------------------------------------------------------- */

void sw_control_health(sw_server_t *s, const sw_health_result_t *r) {
  sw_colour_t c = s->colour;
  sw_pool_t *pool = &sw.pools[c];
  sw_switch_actions_t a;
  uint64_t now = now_ms();
  unsigned round = ~0u;
  uint64_t oldest = now;
  int up;

  if (!ctl.started)
    return;
  /* The machine counts passes of a colour: one round is a pass of every
   * server with checks, dated by the oldest of those probes. */
  if (!r->pass) {
    ctl.fed[c] = 0;
    sw_switch_on_health(&ctl.m, now, c, 0, r->started_ms + CLOCK_BASE,
                        r->reason, &a);
    perform(&a);
  } else {
    for (size_t i = 0; i < pool->n; i++) {
      sw_health_t *h = pool->servers[i]->health;
      if (h == NULL)
        continue;
      if (h->passes < round)
        round = h->passes;
      if (h->last.started_ms + CLOCK_BASE < oldest)
        oldest = h->last.started_ms + CLOCK_BASE;
    }
    if (round != ~0u && round > ctl.fed[c]) {
      ctl.fed[c] = round;
      sw_switch_on_health(&ctl.m, now, c, 1, oldest, "", &a);
      perform(&a);
    }
  }
  up = 0;
  for (size_t i = 0; i < pool->n; i++)
    up |= sw_server_usable(pool->servers[i]);
  if (up != ctl.colour_up[c]) {
    ctl.colour_up[c] = up;
    sw_switch_on_colour_health(&ctl.m, now, c, up,
                               up ? "" : "no server of the colour is up", &a);
    perform(&a);
    watch_health(c, up);
  }
  pending_rollback();
  if (r->changed) {
    json_t *j = json_pack("{s:s, s:s, s:s, s:s}", "colour", sw_colour_name(c),
                          "server", s->name, "state",
                          sw_health_state_name(r->state), "reason", r->reason);
    if (j != NULL) {
      sw_admin_broadcast("health", j);
      json_decref(j);
    }
  }
}

/* Tells the machine how each colour stands now (at start and after a
 * reload, when servers may have come or gone). */
static void feed_colours(void) {
  int was[SW_COLOURS];

  /* Both colours' state first: a colour's news may make the watch ask
   * whether the other one can take the traffic. */
  for (int c = 0; c < SW_COLOURS; c++) {
    int up = 0;
    for (size_t i = 0; i < sw.pools[c].n; i++)
      up |= sw_server_usable(sw.pools[c].servers[i]);
    was[c] = ctl.colour_up[c];
    ctl.colour_up[c] = up;
    ctl.fed[c] = 0;
  }
  for (int c = 0; c < SW_COLOURS; c++) {
    sw_switch_actions_t a;
    int up = ctl.colour_up[c];
    sw_switch_on_colour_health(&ctl.m, now_ms(), (sw_colour_t)c, up,
                               up ? "" : "no server of the colour is up", &a);
    perform(&a);
    if (was[c] != up)
      watch_health((sw_colour_t)c, up);
  }
}

/* --- the drain ------------------------------------------------------------ */

static void on_drain_idle(uv_idle_t *t) {
  sw_switch_actions_t a;
  uv_idle_stop(t);
  if (!ctl.started || !ctl.m.drain.active)
    return;
  sw_switch_on_inflight(&ctl.m, now_ms(), ctl.m.drain.colour,
                        colour_inflight(ctl.m.drain.colour), &a);
  if (a.nevents > 0 || a.flags != 0)
    perform(&a);
}

void sw_control_unbound(const sw_server_t *s) {
  /* The 100 ms tick would see it too, up to a tick late: the drain's end
   * (and the report's "drain complete") would read late by as much. */
  if (ctl.drain_idle_open && ctl.m.drain.active &&
      s->colour == ctl.m.drain.colour && colour_inflight(s->colour) == 0)
    uv_idle_start(&ctl.drain_idle, on_drain_idle);
}

/* --- metrics -------------------------------------------------------------- */

void sw_control_observe(const sw_req_t *r) {
  sw_server_t *s = r->server;
  double secs;
  int cls;
  size_t b;

  cls = r->status / 100;
  if (cls < 1 || cls > 5)
    cls = 0;
  ctl.seen++;
  if (r->status >= 500 || r->cut)
    ctl.failed++;
  /* The watch counts what each colour answered: the upstream's status, or
   * the proxy's own when no response head came from the colour. */
  if (r->routed && r->status > 0 && ctl.watch_ready) {
    sw_watch_result_t res;
    /* A response cut off by the colour's failure carries the status it
     * began with, but the client got a broken answer: an error. */
    if (sw_watch_observe(&ctl.w, now_ms(), s != NULL ? s->colour : r->colour,
                         r->cut ? 502 : r->status, r->cut || !r->rhead_done,
                         &res) != SW_WATCH_NONE)
      on_verdict(&res);
  }
  if (s == NULL) {
    ctl.unrouted[cls]++;
    return;
  }
  s->by_class[cls]++;
  if (r->status >= 500)
    s->errors++;
  secs = (double)(uv_hrtime() - r->t_start) / 1e9;
  for (b = 0; b < NBUCKETS && secs > buckets[b]; b++)
    ;
  ctl.hist[s->colour][b]++;
  ctl.hist_sum[s->colour] += secs;
  ctl.hist_count[s->colour]++;
}

static void metric_head(sw_buf_t *b,
                        const char *name,
                        const char *type,
                        const char *help) {
  (void)sw_buf_appendf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name,
                       type);
}

static void hold_metrics(sw_buf_t *b) {
  const sw_hold_stats_t *h = sw_hold_stats();
  const sw_hold_totals_t *t = sw_hold_totals();
  const struct {
    const char *name, *type, *help;
    uint64_t v;
  } m[] = {
      {"switchd_hold_active", "gauge", "1 while new requests are held.",
       (uint64_t)h->active},
      {"switchd_hold_queued", "gauge", "Requests waiting in the hold now.",
       h->active ? h->depth : 0},
      {"switchd_holds_total", "counter", "Holds started.", t->holds},
      {"switchd_hold_requests_total", "counter", "Requests that were held.",
       t->held},
      {"switchd_hold_rejected_total", "counter",
       "Requests answered 503 because the hold queue was full.", t->rejected},
      {"switchd_hold_expired_total", "counter",
       "Holds that reached their max and released themselves.", t->expired},
      {"switchd_hold_wait_max_seconds", "gauge",
       "The longest a request of the last hold waited (microsecond "
       "resolution).",
       h->wait_max_us},
      {"switchd_hold_lock_wait_max_seconds", "gauge",
       "The longest lock wait seen in pg_stat_activity during the last hold.",
       ctl.lock_max_ms * 1000},
  };

  for (size_t i = 0; i < sizeof(m) / sizeof(m[0]); i++) {
    metric_head(b, m[i].name, m[i].type, m[i].help);
    if (strstr(m[i].name, "_seconds") != NULL)
      (void)sw_buf_appendf(b, "%s %.6f\n", m[i].name, (double)m[i].v / 1e6);
    else
      (void)sw_buf_appendf(b, "%s %llu\n", m[i].name,
                           (unsigned long long)m[i].v);
  }
  metric_head(b, "switchd_hold_seconds_total", "counter",
              "Time spent holding requests.");
  (void)sw_buf_appendf(b, "switchd_hold_seconds_total %.3f\n",
                       (double)t->held_ms / 1000.0);
}

static void metrics_text(sw_buf_t *b) {
  static const char *classes[] = {"other", "1xx", "2xx", "3xx", "4xx", "5xx"};

  metric_head(b, "switchd_live", "gauge", "1 for the live colour.");
  for (int c = 0; c < SW_COLOURS; c++)
    (void)sw_buf_appendf(b, "switchd_live{colour=\"%s\"} %d\n",
                         sw_colour_name((sw_colour_t)c), (int)sw.live == c);
  metric_head(b, "switchd_phase", "gauge", "1 for the current cutover phase.");
  for (int p = 0; p < SW_SWITCH_PHASES; p++)
    (void)sw_buf_appendf(b, "switchd_phase{phase=\"%s\"} %d\n",
                         sw_switch_phase_name((sw_switch_phase_t)p),
                         ctl.m.phase == (sw_switch_phase_t)p);
  metric_head(b, "switchd_state_version", "gauge",
              "The state version mutations must carry.");
  (void)sw_buf_appendf(b, "switchd_state_version %llu\n",
                       (unsigned long long)ctl.m.version);
  metric_head(b, "switchd_flips_total", "counter", "Flips of the live colour.");
  (void)sw_buf_appendf(b, "switchd_flips_total %llu\n",
                       (unsigned long long)ctl.m.flips);
  metric_head(b, "switchd_gates_total", "counter",
              "Cutover gates that ended, by outcome.");
  for (int o = SW_SWITCH_OUTCOME_PASSED; o <= SW_SWITCH_OUTCOME_INCONCLUSIVE;
       o++)
    (void)sw_buf_appendf(b, "switchd_gates_total{outcome=\"%s\"} %llu\n",
                         sw_switch_outcome_name((sw_switch_outcome_t)o),
                         (unsigned long long)ctl.m.gates[o]);
  metric_head(b, "switchd_drain_inflight", "gauge",
              "Requests still in flight on the colour being drained.");
  (void)sw_buf_appendf(
      b, "switchd_drain_inflight %llu\n",
      (unsigned long long)(ctl.m.drain.active
                               ? colour_inflight(ctl.m.drain.colour)
                               : 0));
  metric_head(b, "switchd_drain_cancelled_total", "counter",
              "Requests cancelled at a drain deadline.");
  (void)sw_buf_appendf(b, "switchd_drain_cancelled_total %llu\n",
                       (unsigned long long)ctl.m.drain_cancelled);
  metric_head(b, "switchd_rollbacks_total", "counter",
              "Rollbacks that flipped back, by trigger (operator: by hand).");
  for (size_t k = 0; k < SW_WATCH_RULES; k++)
    (void)sw_buf_appendf(
        b, "switchd_rollbacks_total{trigger=\"%s\"} %llu\n",
        k == 0 ? "operator" : sw_watch_rule_name((sw_watch_rule_t)k),
        (unsigned long long)ctl.rollbacks[k]);
  metric_head(b, "switchd_rollbacks_blocked_total", "counter",
              "Triggers that fired while the old colour could not take the "
              "traffic back.");
  (void)sw_buf_appendf(b, "switchd_rollbacks_blocked_total %llu\n",
                       (unsigned long long)ctl.m.rollbacks_blocked);
  hold_metrics(b);
  metric_head(b, "switchd_watch_alerts_total", "counter",
              "Triggers that alerted instead of rolling back.");
  (void)sw_buf_appendf(b, "switchd_watch_alerts_total %llu\n",
                       (unsigned long long)ctl.alerts);
  if (ctl.watch_ready) {
    uint64_t now = now_ms();
    sw_watch_phase_t wp = sw_watch_phase(&ctl.w, now);
    sw_watch_outcome_t wo = sw_watch_outcome(&ctl.w, now);
    metric_head(b, "switchd_watch_phase", "gauge",
                "1 for the error watch's current phase.");
    for (int k = SW_WATCH_IDLE; k <= SW_WATCH_FINAL; k++)
      (void)sw_buf_appendf(b, "switchd_watch_phase{phase=\"%s\"} %d\n",
                           sw_watch_phase_name((sw_watch_phase_t)k),
                           wp == (sw_watch_phase_t)k);
    metric_head(b, "switchd_watch_outcome", "gauge",
                "1 for the last watch's outcome.");
    for (int k = SW_WATCH_PENDING; k <= SW_WATCH_INCONCLUSIVE; k++)
      (void)sw_buf_appendf(b, "switchd_watch_outcome{outcome=\"%s\"} %d\n",
                           sw_watch_outcome_name((sw_watch_outcome_t)k),
                           wo == (sw_watch_outcome_t)k);
    metric_head(b, "switchd_watch_requests", "gauge",
                "Responses of the watched colour since the flip.");
    (void)sw_buf_appendf(b, "switchd_watch_requests %llu\n",
                         (unsigned long long)ctl.w.requests);
    metric_head(b, "switchd_watch_errors", "gauge",
                "Errors of the watched colour since the flip.");
    (void)sw_buf_appendf(b, "switchd_watch_errors %llu\n",
                         (unsigned long long)ctl.w.errors);
  }
  metric_head(b, "switchd_notify_total", "counter",
              "Webhook notifications, by result.");
  (void)sw_buf_appendf(b, "switchd_notify_total{result=\"sent\"} %llu\n",
                       (unsigned long long)sw_notify_sent());
  (void)sw_buf_appendf(b, "switchd_notify_total{result=\"failed\"} %llu\n",
                       (unsigned long long)sw_notify_failed());
  (void)sw_buf_appendf(b, "switchd_notify_total{result=\"dropped\"} %llu\n",
                       (unsigned long long)sw_notify_dropped());
  metric_head(b, "switchd_requests_total", "counter",
              "Responses to clients, by colour, server and status class.");
  for (int c = 0; c < SW_COLOURS; c++)
    for (size_t i = 0; i < sw.pools[c].n; i++)
      for (int k = 0; k < 6; k++)
        (void)sw_buf_appendf(
            b,
            "switchd_requests_total{colour=\"%s\",server=\"%s\",class=\"%s\"} "
            "%llu\n",
            sw_colour_name((sw_colour_t)c), sw.pools[c].servers[i]->name,
            classes[k],
            (unsigned long long)sw.pools[c].servers[i]->by_class[k]);
  /* One family at a time: the text format wants each family's samples
   * together under its own header. */
  metric_head(b, "switchd_errors_total", "counter",
              "5xx responses, the upstream's and the proxy's own.");
  for (int c = 0; c < SW_COLOURS; c++)
    for (size_t i = 0; i < sw.pools[c].n; i++)
      (void)sw_buf_appendf(b,
                           "switchd_errors_total{colour=\"%s\",server=\"%s\"} "
                           "%llu\n",
                           sw_colour_name((sw_colour_t)c),
                           sw.pools[c].servers[i]->name,
                           (unsigned long long)sw.pools[c].servers[i]->errors);
  metric_head(b, "switchd_inflight", "gauge", "Exchanges bound to a server.");
  for (int c = 0; c < SW_COLOURS; c++)
    for (size_t i = 0; i < sw.pools[c].n; i++)
      (void)sw_buf_appendf(
          b, "switchd_inflight{colour=\"%s\",server=\"%s\"} %u\n",
          sw_colour_name((sw_colour_t)c), sw.pools[c].servers[i]->name,
          sw.pools[c].servers[i]->inflight);
  metric_head(b, "switchd_server_up", "gauge",
              "1 when the server's health checks say up (or are off).");
  for (int c = 0; c < SW_COLOURS; c++)
    for (size_t i = 0; i < sw.pools[c].n; i++)
      (void)sw_buf_appendf(
          b, "switchd_server_up{colour=\"%s\",server=\"%s\"} %d\n",
          sw_colour_name((sw_colour_t)c), sw.pools[c].servers[i]->name,
          sw_server_usable(sw.pools[c].servers[i]));
  metric_head(b, "switchd_proxy_responses_total", "counter",
              "Responses the proxy made without an upstream (parse errors, "
              "limits, no healthy server), by status class.");
  for (int k = 0; k < 6; k++)
    (void)sw_buf_appendf(b,
                         "switchd_proxy_responses_total{class=\"%s\"} %llu\n",
                         classes[k], (unsigned long long)ctl.unrouted[k]);
  metric_head(b, "switchd_request_duration_seconds", "histogram",
              "Time from a request's first byte to its response's end.");
  for (int c = 0; c < SW_COLOURS; c++) {
    uint64_t cum = 0;
    const char *cn = sw_colour_name((sw_colour_t)c);
    for (size_t k = 0; k < NBUCKETS; k++) {
      cum += ctl.hist[c][k];
      (void)sw_buf_appendf(
          b,
          "switchd_request_duration_seconds_bucket{colour=\"%s\",le=\"%g\"} "
          "%llu\n",
          cn, buckets[k], (unsigned long long)cum);
    }
    cum += ctl.hist[c][NBUCKETS];
    (void)sw_buf_appendf(
        b,
        "switchd_request_duration_seconds_bucket{colour=\"%s\",le=\"+Inf\"} "
        "%llu\n",
        cn, (unsigned long long)cum);
    (void)sw_buf_appendf(
        b, "switchd_request_duration_seconds_sum{colour=\"%s\"} %.6f\n", cn,
        ctl.hist_sum[c]);
    (void)sw_buf_appendf(
        b, "switchd_request_duration_seconds_count{colour=\"%s\"} %llu\n", cn,
        (unsigned long long)ctl.hist_count[c]);
  }
  {
    const sw_tls_stats_t *t = sw_tls_stats();
    metric_head(b, "switchd_tls_handshakes_total", "counter",
                "TLS handshakes on HTTPS listeners, by result.");
    (void)sw_buf_appendf(b,
                         "switchd_tls_handshakes_total{result=\"ok\"} %llu\n",
                         (unsigned long long)(t->handshakes - t->resumed));
    (void)sw_buf_appendf(
        b, "switchd_tls_handshakes_total{result=\"resumed\"} %llu\n",
        (unsigned long long)t->resumed);
    (void)sw_buf_appendf(
        b, "switchd_tls_handshakes_total{result=\"failed\"} %llu\n",
        (unsigned long long)t->failed_protocol);
    (void)sw_buf_appendf(
        b, "switchd_tls_handshakes_total{result=\"old_version\"} %llu\n",
        (unsigned long long)t->failed_version);
    (void)sw_buf_appendf(
        b, "switchd_tls_handshakes_total{result=\"plain_http\"} %llu\n",
        (unsigned long long)t->failed_http);
    (void)sw_buf_appendf(
        b, "switchd_tls_handshakes_total{result=\"timeout\"} %llu\n",
        (unsigned long long)sw.tls_timeouts);
    metric_head(b, "switchd_tls_upstream_handshakes_total", "counter",
                "TLS handshakes with upstream servers, by result.");
    (void)sw_buf_appendf(
        b, "switchd_tls_upstream_handshakes_total{result=\"ok\"} %llu\n",
        (unsigned long long)(t->client_handshakes - t->client_resumed));
    (void)sw_buf_appendf(
        b, "switchd_tls_upstream_handshakes_total{result=\"resumed\"} %llu\n",
        (unsigned long long)t->client_resumed);
    (void)sw_buf_appendf(
        b,
        "switchd_tls_upstream_handshakes_total{result=\"failed_verify\"} "
        "%llu\n",
        (unsigned long long)t->client_failed_verify);
    (void)sw_buf_appendf(
        b, "switchd_tls_upstream_handshakes_total{result=\"failed\"} %llu\n",
        (unsigned long long)t->client_failed);
  }
  metric_head(b, "switchd_client_connections", "gauge",
              "Open client connections.");
  (void)sw_buf_appendf(b, "switchd_client_connections %llu\n",
                       (unsigned long long)sw.nclients);
  metric_head(b, "switchd_buffered_bytes", "gauge",
              "Bytes held in request buffers and write queues.");
  (void)sw_buf_appendf(b, "switchd_buffered_bytes %llu\n",
                       (unsigned long long)sw.buffered);
}

/* --- status and the admin API --------------------------------------------- */

static json_t *colour_json(sw_colour_t c) {
  json_t *servers = json_array();
  json_t *o;

  for (size_t i = 0; i < sw.pools[c].n; i++) {
    sw_server_t *s = sw.pools[c].servers[i];
    json_t *j =
        json_pack("{s:s, s:s, s:I, s:I, s:I}", "name", s->name, "health",
                  s->health == NULL ? "unchecked"
                                    : sw_health_state_name(s->health->state),
                  "inflight", (json_int_t)s->inflight, "requests",
                  (json_int_t)s->requests, "errors", (json_int_t)s->errors);
    if (j != NULL && s->health != NULL) {
      json_object_set_new(j, "last_failure",
                          json_string(s->health->last_failure));
      json_object_set_new(j, "passes", json_integer(s->health->passes));
      json_object_set_new(j, "fails", json_integer(s->health->fails));
    }
    json_array_append_new(servers, j);
  }
  o = json_pack(
      "{s:b, s:I, s:o, s:{s:s, s:s, s:I}}", "healthy", ctl.colour_up[c] > 0,
      "inflight", (json_int_t)colour_inflight(c), "servers", servers, "verify",
      "status", ctl.verify[c].status, "message", ctl.verify[c].message,
      "time_ms", (json_int_t)ctl.verify[c].wall_ms);
  return o;
}

/* The watch as status, switchctl watch and the webhook show it: the live
 * count against each threshold, the baseline, the time left. */
static json_t *watch_json(void) {
  const sw_watch_t *w = &ctl.w;
  const sw_watch_params_t *p = &w->params;
  uint64_t now = now_ms();
  uint64_t since, wreq = 0, werr = 0;
  uint64_t auto_end, manual_end;
  double p0;
  json_t *o;

  if (!ctl.watch_ready)
    return json_pack("{s:s, s:b}", "phase", "idle", "enabled", 0);
  since = w->armed && now > w->flip_at ? now - w->flip_at : 0;
  auto_end = w->flip_at + w->auto_window_ms;
  manual_end = w->flip_at + w->manual_window_ms;
  if (w->armed)
    sw_watch_window(w, now, w->colour, p->r2_window_ms, &wreq, &werr);
  p0 = (double)(w->baseline_errors * 2 + 1) /
       (double)(w->baseline_requests * 2 + 2);
  o = json_pack(
      "{s:b, s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, "
      "s:{s:I, s:I, s:f}}",
      "enabled", sw.cfg->watch.enabled, "phase",
      sw_watch_phase_name(sw_watch_phase(w, now)), "outcome",
      sw_watch_outcome_name(sw_watch_outcome(w, now)), "colour",
      sw_colour_name(w->colour), "flip_time_ms",
      (json_int_t)(w->armed ? ctl.watch_wall : 0), "since_flip_ms",
      (json_int_t)since, "auto_window_ms", (json_int_t)w->auto_window_ms,
      "manual_window_ms", (json_int_t)w->manual_window_ms, "auto_left_ms",
      (json_int_t)(w->armed && !w->ended && auto_end > now ? auto_end - now
                                                           : 0),
      "manual_left_ms",
      (json_int_t)(w->armed && !w->ended && manual_end > now ? manual_end - now
                                                             : 0),
      "requests", (json_int_t)w->requests, "errors", (json_int_t)w->errors,
      "min_requests", (json_int_t)p->min_requests, "baseline", "requests",
      (json_int_t)w->baseline_requests, "errors",
      (json_int_t)w->baseline_errors, "ratio", w->armed ? p0 : 0.0);
  if (o == NULL)
    return NULL;
  json_object_set_new(
      o, "triggers",
      json_pack("{s:{s:b, s:I, s:I, s:f}, s:{s:b, s:I, s:I, s:I, s:f}, "
                "s:{s:b, s:I, s:I}, s:{s:b, s:b}}",
                "r1", "enabled", p->r1_enabled, "errors", (json_int_t)w->errors,
                "max_errors", (json_int_t)p->max_errors, "alpha", p->alpha,
                "r2", "enabled", p->r2_enabled, "window_ms",
                (json_int_t)p->r2_window_ms, "requests", (json_int_t)wreq,
                "errors", (json_int_t)werr, "max_error_ratio",
                p->max_error_ratio, "r3", "enabled", p->r3_enabled,
                "consecutive", (json_int_t)w->consecutive, "max_consecutive",
                (json_int_t)p->max_consecutive, "r4", "enabled", p->r4_enabled,
                "healthy", ctl.colour_up[w->colour] > 0));
  if (ctl.last_verdict.verdict != SW_WATCH_NONE) {
    json_t *f = verdict_json(&ctl.last_verdict);
    if (f != NULL)
      json_object_set_new(f, "time_ms",
                          json_integer((json_int_t)ctl.last_verdict_wall));
    json_object_set_new(o, "fired", f != NULL ? f : json_null());
  } else {
    json_object_set_new(o, "fired", json_null());
  }
  return o;
}

static json_t *status_json(void) {
  json_t *o, *hist = json_array();
  uint64_t now = now_ms();

  for (size_t i = 0; i < sw_switch_history_count(&ctl.m); i++)
    json_array_append_new(hist, event_json(sw_switch_history_at(&ctl.m, i)));
  o = json_pack(
      "{s:I, s:s, s:s, s:I, s:o, s:o, s:o}", "version",
      (json_int_t)ctl.m.version, "live", sw_colour_name(sw.live), "phase",
      sw_switch_phase_name(ctl.m.phase), "flip_time_ms",
      (json_int_t)ctl.flip_wall, "colours",
      json_pack("{s:o, s:o}", "blue", colour_json(SW_BLUE), "green",
                colour_json(SW_GREEN)),
      "history", hist, "last_gate",
      json_pack("{s:s, s:s, s:s, s:s, s:I}", "outcome",
                sw_switch_outcome_name(ctl.m.last_gate.outcome), "reason",
                sw_switch_reason_name(ctl.m.last_gate.reason), "target",
                sw_colour_name(ctl.m.last_gate.target), "message",
                ctl.m.last_gate.message, "time_ms",
                (json_int_t)to_wall(ctl.m.last_gate.at)));
  if (o == NULL)
    return NULL;
  json_object_set_new(o, "hold", hold_json());
  if (ctl.request_wall != 0) {
    /* What the cutover report's totals are made of. */
    json_t *c = json_pack(
        "{s:I, s:I, s:I}", "requested_ms", (json_int_t)ctl.request_wall,
        "requests", (json_int_t)(ctl.seen - ctl.seen_at_request), "failed",
        (json_int_t)(ctl.failed - ctl.failed_at_request));
    if (c != NULL && ctl.migration_valid)
      json_object_set_new(c, "migration",
                          json_pack("{s:I, s:I}", "exit_status",
                                    (json_int_t)ctl.migration_status, "ms",
                                    (json_int_t)ctl.migration_ms));
    if (c != NULL)
      json_object_set_new(o, "cutover", c);
  }
  if (sw.cfg->cutover.rollback_migrate != NULL) {
    json_t *m = json_pack("{s:b, s:b}", "configured", 1, "running",
                          ctl.mb_running || ctl.mb_pending);
    if (m != NULL && ctl.mb_valid) {
      json_object_set_new(m, "exit_status", json_integer(ctl.mb_status));
      json_object_set_new(m, "ms", json_integer((json_int_t)ctl.mb_ms));
      json_object_set_new(m, "timed_out", json_boolean(ctl.mb_timed_out));
      json_object_set_new(m, "last_output", json_string(ctl.mb_tail));
    }
    if (m != NULL)
      json_object_set_new(o, "rollback_migrate", m);
  }
  if (ctl.m.phase == SW_SWITCH_GATING || ctl.m.phase == SW_SWITCH_RECHECKING ||
      ctl.m.phase == SW_SWITCH_MIGRATING) {
    const sw_switch_gate_t *g = &ctl.m.gate;
    json_object_set_new(
        o, "gate",
        json_pack("{s:s, s:I, s:I, s:b, s:I, s:s, s:s}", "target",
                  sw_colour_name(g->target), "passes", (json_int_t)g->passes,
                  "rise", (json_int_t)g->rise, "verified", g->verified,
                  "deadline_in_ms",
                  (json_int_t)(g->deadline > now ? g->deadline - now : 0),
                  "who", g->who, "last_failure", g->last_failure));
    json_object_set_new(json_object_get(o, "gate"), "migrate",
                        json_boolean(g->migrate));
  }
  if (ctl.m.drain.active) {
    const sw_switch_drain_t *d = &ctl.m.drain;
    json_object_set_new(
        o, "drain",
        json_pack("{s:s, s:I, s:I}", "colour", sw_colour_name(d->colour),
                  "inflight", (json_int_t)colour_inflight(d->colour),
                  "deadline_in_ms",
                  (json_int_t)(d->deadline > now ? d->deadline - now : 0)));
  }
  json_object_set_new(o, "watch", watch_json());
  if (ctl.m.last_rollback.valid) {
    const sw_switch_rollback_t *rb = &ctl.m.last_rollback;
    json_object_set_new(
        o, "rollback",
        json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:I}", "outcome",
                  rb->blocked                                   ? "blocked"
                  : ctl.m.phase == SW_SWITCH_ROLLBACK_MIGRATING ? "migrating"
                                                                : "rolled_back",
                  "mode", sw_switch_rollback_mode_name(rb->mode), "trigger",
                  rb->trigger, "from", sw_colour_name(rb->from), "to",
                  sw_colour_name(rb->to), "message", rb->message, "time_ms",
                  (json_int_t)to_wall(rb->at)));
  }
  if (ctl.m.last_drain.valid)
    json_object_set_new(
        o, "last_drain",
        json_pack("{s:s, s:s, s:I, s:I}", "colour",
                  sw_colour_name(ctl.m.last_drain.colour), "reason",
                  sw_switch_reason_name(ctl.m.last_drain.reason), "cancelled",
                  (json_int_t)ctl.m.last_drain.cancelled, "time_ms",
                  (json_int_t)to_wall(ctl.m.last_drain.ended_at)));
  return o;
}

static int colour_arg(json_t *body,
                      const char *key,
                      sw_colour_t dflt,
                      sw_colour_t *out) {
  const char *s = json_string_value(json_object_get(body, key));
  if (s == NULL) {
    *out = dflt;
    return json_object_get(body, key) == NULL ? 0 : -1;
  }
  if (strcmp(s, "blue") == 0)
    *out = SW_BLUE;
  else if (strcmp(s, "green") == 0)
    *out = SW_GREEN;
  else
    return -1;
  return 0;
}

/* A mutation names the state version it saw; a stale one is refused so
 * that two operators cannot act on different pictures. */
static int stale(const sw_admin_req_t *q, sw_admin_resp_t *resp) {
  json_t *v = q->body != NULL ? json_object_get(q->body, "version") : NULL;
  if (v == NULL)
    return 0;
  if (!json_is_integer(v)) {
    resp->status = 400;
    resp->json = json_pack("{s:s}", "error", "version must be a number");
    return 1;
  }
  if ((uint64_t)json_integer_value(v) != ctl.m.version) {
    resp->status = 409;
    resp->json = json_pack("{s:s, s:I}", "error",
                           "stale state version: read the status again",
                           "version", (json_int_t)ctl.m.version);
    return 1;
  }
  return 0;
}

/* An optional duration in ms, 1 ms to an hour; 0 when absent. */
static int duration_arg(json_t *body, const char *key, uint64_t *out) {
  json_t *v = body != NULL ? json_object_get(body, key) : NULL;
  *out = 0;
  if (v == NULL)
    return 0;
  if (!json_is_integer(v) || json_integer_value(v) < 1 ||
      json_integer_value(v) > 3600000)
    return -1;
  *out = (uint64_t)json_integer_value(v);
  return 0;
}

static void cutover(const sw_admin_req_t *q, sw_admin_resp_t *resp) {
  sw_colour_t to;
  sw_switch_actions_t a;
  sw_switch_reason_t why;
  uint64_t hold_ms;
  int migrate;

  if (colour_arg(q->body, "to", sw.live == SW_BLUE ? SW_GREEN : SW_BLUE, &to) !=
      0) {
    resp->status = 400;
    resp->json = json_pack("{s:s}", "error", "\"to\" must be blue or green");
    return;
  }
  if (stale(q, resp))
    return;
  if (json_object_get(q->body, "migrate") != NULL &&
      !json_is_boolean(json_object_get(q->body, "migrate"))) {
    resp->status = 400;
    resp->json =
        json_pack("{s:s}", "error", "\"migrate\" must be true or false");
    return;
  }
  migrate = json_is_true(json_object_get(q->body, "migrate"));
  if (duration_arg(q->body, "hold_ms", &hold_ms) != 0) {
    resp->status = 400;
    resp->json = json_pack("{s:s}", "error",
                           "\"hold_ms\" must be a number of ms from 1 to "
                           "3600000");
    return;
  }
  why = sw_switch_request_ex(&ctl.m, now_ms(), to, sw.pools[to].n, q->caller,
                             migrate ? SW_SWITCH_REQ_MIGRATE : 0, &a);
  sw_info("admin", 0, "%s: cutover to %s: %s", q->caller, sw_colour_name(to),
          why == SW_SWITCH_R_NONE ? "accepted" : sw_switch_reason_name(why));
  if (why != SW_SWITCH_R_NONE) {
    perform(&a); /* a deadline passed on the way is still news */
    resp->status = why == SW_SWITCH_R_IN_PROGRESS ||
                           why == SW_SWITCH_R_ALREADY_LIVE ||
                           why == SW_SWITCH_R_WATCHING
                       ? 409
                       : 400;
    resp->json = json_pack("{s:s, s:s, s:I}", "error", "refused", "reason",
                           sw_switch_reason_name(why), "version",
                           (json_int_t)ctl.m.version);
    return;
  }
  ctl.fed[to] = 0;
  ctl.cut_hold_ms = hold_ms;
  ctl.migration_valid = 0;
  ctl.seen_at_request = ctl.seen;
  ctl.failed_at_request = ctl.failed;
  ctl.request_wall = wall_ms();
  perform(&a);
  resp->status = 202;
  resp->json = json_pack(
      "{s:b, s:s, s:s, s:I}", "accepted", 1, "to", sw_colour_name(to), "phase",
      sw_switch_phase_name(ctl.m.phase), "version", (json_int_t)ctl.m.version);
  /* Health checks already passing count only from now: the machine wants
   * fresh passes; a colour without checks passes at once. */
  {
    int checked = 0;
    for (size_t i = 0; i < sw.pools[to].n; i++)
      checked |= sw.pools[to].servers[i]->health != NULL;
    if (!checked)
      for (unsigned k = 0;
           k < ctl.m.gate.rise && ctl.m.phase == SW_SWITCH_GATING; k++) {
        uint64_t now = now_ms();
        sw_switch_on_health(&ctl.m, now, to, 1, now, "", &a);
        perform(&a);
      }
  }
}

static const char *refusal_text(sw_switch_reason_t why) {
  switch (why) {
    case SW_SWITCH_R_NEEDS_CONFIRM:
      return "the automatic window is over: roll back with --confirm";
    case SW_SWITCH_R_NEEDS_FORCE:
      return "the rollback window is over (forward fix only): --force "
             "overrides";
    case SW_SWITCH_R_IN_PROGRESS:
      return ctl.m.phase == SW_SWITCH_ROLLBACK_MIGRATING
                 ? "a rollback is under way: the reverse migration is running"
                 : "a cutover gate is running: abort it instead";
    case SW_SWITCH_R_ALREADY_ROLLED_BACK:
      return "already rolled back";
    case SW_SWITCH_R_NOT_WATCHING:
      return "no cutover to roll back";
    default:
      return sw_switch_reason_name(why);
  }
}

static void rollback_api(const sw_admin_req_t *q, sw_admin_resp_t *resp) {
  sw_switch_rollback_mode_t mode = SW_SWITCH_ROLLBACK_MANUAL;
  json_t *m = q->body != NULL ? json_object_get(q->body, "mode") : NULL;
  char why[SW_SWITCH_WHO + 32], msg[SW_SWITCH_MESSAGE];
  sw_switch_reason_t r;

  if (m != NULL) {
    const char *v = json_string_value(m);
    if (v != NULL && strcmp(v, "confirm") == 0)
      mode = SW_SWITCH_ROLLBACK_CONFIRM;
    else if (v != NULL && strcmp(v, "force") == 0)
      mode = SW_SWITCH_ROLLBACK_FORCE;
    else if (v == NULL || strcmp(v, "plain") != 0) {
      resp->status = 400;
      resp->json = json_pack("{s:s}", "error",
                             "\"mode\" must be \"confirm\" or \"force\"");
      return;
    }
  }
  if (stale(q, resp))
    return;
  snprintf(why, sizeof(why), "requested by %s", q->caller);
  msg[0] = '\0';
  r = rollback(mode, "operator", why, msg, sizeof(msg));
  sw_info("admin", 0, "%s: rollback (%s): %s", q->caller,
          sw_switch_rollback_mode_name(mode),
          r == SW_SWITCH_R_NONE ? "done" : sw_switch_reason_name(r));
  if (r == SW_SWITCH_R_ROLLBACK_MIGRATE) {
    resp->status = 202;
    resp->json = json_pack("{s:b, s:b, s:s, s:s, s:s, s:I}", "rolled_back", 0,
                           "migrating", 1, "live", sw_colour_name(sw.live),
                           "phase", sw_switch_phase_name(ctl.m.phase),
                           "message", ctl.m.last_rollback.message, "version",
                           (json_int_t)ctl.m.version);
    return;
  }
  if (r != SW_SWITCH_R_NONE) {
    resp->status = 409;
    resp->json = json_pack("{s:s, s:s, s:s, s:s, s:I}", "error", "refused",
                           "reason", sw_switch_reason_name(r), "message",
                           r == SW_SWITCH_R_NOT_READY ? msg : refusal_text(r),
                           "phase", sw_switch_phase_name(ctl.m.phase),
                           "version", (json_int_t)ctl.m.version);
    return;
  }
  resp->json = json_pack("{s:b, s:s, s:s, s:s, s:I}", "rolled_back", 1, "live",
                         sw_colour_name(sw.live), "phase",
                         sw_switch_phase_name(ctl.m.phase), "message",
                         ctl.m.last_rollback.message, "version",
                         (json_int_t)ctl.m.version);
}

static void hold_api(const sw_admin_req_t *q, sw_admin_resp_t *resp) {
  uint64_t max;
  int err;

  if (duration_arg(q->body, "max_ms", &max) != 0) {
    resp->status = 400;
    resp->json = json_pack("{s:s}", "error",
                           "\"max_ms\" must be a number of ms from 1 to "
                           "3600000");
    return;
  }
  if (stale(q, resp))
    return;
  err = sw_hold_start(max, q->caller);
  sw_info("admin", 0, "%s: hold: %s", q->caller,
          err == 0 ? "holding" : uv_strerror(err));
  if (err != 0) {
    resp->status = err == UV_EBUSY ? 409 : 500;
    resp->json = json_pack("{s:s, s:s}", "error", "refused", "reason",
                           err == UV_EBUSY ? "held" : uv_strerror(err));
    return;
  }
  hold_started();
  resp->json = json_pack("{s:b, s:o}", "holding", 1, "hold", hold_json());
}

static void release_api(const sw_admin_req_t *q, sw_admin_resp_t *resp) {
  int mine;

  if (stale(q, resp))
    return;
  if (!sw_hold_active()) {
    resp->status = 409;
    resp->json =
        json_pack("{s:s, s:s}", "error", "refused", "reason", "not_held");
    return;
  }
  sw_info("admin", 0, "%s: release to %s", q->caller, sw_colour_name(sw.live));
  mine = ctl.hold_mine && ctl.m.phase == SW_SWITCH_MIGRATING;
  (void)sw_hold_release(SW_HOLD_END_RELEASE);
  if (mine) {
    /* The hold was a migrate cutover's: releasing it ends that cutover. */
    sw_switch_actions_t a;
    if (sw_switch_abort(&ctl.m, now_ms(), q->caller, &a) == SW_SWITCH_R_NONE)
      perform(&a);
  }
  resp->json = json_pack("{s:b, s:s, s:o}", "released", 1, "live",
                         sw_colour_name(sw.live), "hold", hold_json());
}

/* switchctl ran the operator's migration: its result moves a migrate
 * cutover on (or ends it), and its figures go in the report. */
static void migrated_api(const sw_admin_req_t *q, sw_admin_resp_t *resp) {
  json_t *ok = q->body != NULL ? json_object_get(q->body, "ok") : NULL;
  json_t *st = q->body != NULL ? json_object_get(q->body, "exit_status") : NULL;
  json_t *ms = q->body != NULL ? json_object_get(q->body, "ms") : NULL;
  const char *text = q->body != NULL
                         ? json_string_value(json_object_get(q->body, "text"))
                         : NULL;
  sw_switch_actions_t a;
  sw_switch_reason_t why;

  if (!json_is_boolean(ok) || (st != NULL && !json_is_integer(st)) ||
      (ms != NULL && !json_is_integer(ms))) {
    resp->status = 400;
    resp->json = json_pack("{s:s}", "error",
                           "\"ok\" (true or false) is required; "
                           "\"exit_status\" and \"ms\" are numbers");
    return;
  }
  if (stale(q, resp))
    return;
  why = sw_switch_migrated(&ctl.m, now_ms(), json_is_true(ok), text, &a);
  sw_info("admin", 0, "%s: migration %s: %s", q->caller,
          json_is_true(ok) ? "done" : "failed",
          why == SW_SWITCH_R_NONE ? "accepted" : sw_switch_reason_name(why));
  if (why != SW_SWITCH_R_NONE) {
    perform(&a);
    resp->status = 409;
    resp->json = json_pack("{s:s, s:s, s:s}", "error", "refused", "reason",
                           sw_switch_reason_name(why), "phase",
                           sw_switch_phase_name(ctl.m.phase));
    return;
  }
  ctl.migration_valid = 1;
  ctl.migration_status = st != NULL ? json_integer_value(st) : 0;
  ctl.migration_ms = ms != NULL ? (uint64_t)json_integer_value(ms) : 0;
  perform(&a);
  resp->json = json_pack("{s:b, s:s, s:I}", "accepted", 1, "phase",
                         sw_switch_phase_name(ctl.m.phase), "version",
                         (json_int_t)ctl.m.version);
}

static void on_admin(const sw_admin_req_t *q,
                     sw_admin_resp_t *resp,
                     void *data) {
  int get = strcmp(q->method, "GET") == 0;
  int post = strcmp(q->method, "POST") == 0;
  (void)data;

  if ((strcmp(q->path, SW_API_STATUS) == 0 ||
       strcmp(q->path, SW_API_METRICS) == 0 ||
       strcmp(q->path, SW_API_EVENTS) == 0) &&
      !get) {
    resp->status = 405;
    resp->json = json_pack("{s:s}", "error", "use GET");
    return;
  }
  if (strcmp(q->path, SW_API_STATUS) == 0 && get) {
    resp->json = status_json();
    return;
  }
  if (strcmp(q->path, SW_API_METRICS) == 0 && get) {
    metrics_text(&resp->text);
    resp->content_type = "text/plain; version=0.0.4";
    return;
  }
  if (strcmp(q->path, SW_API_EVENTS) == 0 && get) {
    json_t *st = status_json();
    char *text = st != NULL ? json_dumps(st, JSON_COMPACT) : NULL;
    resp->events = 1;
    if (text != NULL)
      (void)sw_buf_appendf(&resp->text, "%s", "event: status\ndata: ");
    if (text != NULL && sw_buf_append(&resp->text, text, strlen(text)) == 0)
      (void)sw_buf_append(&resp->text, "\n\n", 2);
    free(text);
    json_decref(st);
    return;
  }
  if (strcmp(q->path, SW_API_CUTOVER) == 0 ||
      strcmp(q->path, SW_API_ABORT) == 0 ||
      strcmp(q->path, SW_API_CHECK) == 0 ||
      strcmp(q->path, SW_API_ROLLBACK) == 0 ||
      strcmp(q->path, SW_API_HOLD) == 0 ||
      strcmp(q->path, SW_API_RELEASE) == 0 ||
      strcmp(q->path, SW_API_MIGRATED) == 0 ||
      strcmp(q->path, SW_API_COMMIT) == 0) {
    if (!post) {
      resp->status = 405;
      resp->json = json_pack("{s:s}", "error", "use POST");
      return;
    }
    if (!q->may_mutate) {
      resp->status = 403;
      resp->json = json_pack("{s:s}", "error", "not allowed to change state");
      return;
    }
  }
  if (strcmp(q->path, SW_API_CUTOVER) == 0) {
    cutover(q, resp);
    return;
  }
  if (strcmp(q->path, SW_API_ROLLBACK) == 0) {
    rollback_api(q, resp);
    return;
  }
  if (strcmp(q->path, SW_API_HOLD) == 0) {
    hold_api(q, resp);
    return;
  }
  if (strcmp(q->path, SW_API_RELEASE) == 0) {
    release_api(q, resp);
    return;
  }
  if (strcmp(q->path, SW_API_MIGRATED) == 0) {
    migrated_api(q, resp);
    return;
  }
  if (strcmp(q->path, SW_API_COMMIT) == 0) {
    sw_switch_actions_t a;
    sw_switch_reason_t why;
    if (stale(q, resp))
      return;
    why = sw_switch_commit(&ctl.m, now_ms(), q->caller, &a);
    sw_info("admin", 0, "%s: commit: %s", q->caller,
            why == SW_SWITCH_R_NONE ? "done" : sw_switch_reason_name(why));
    if (why != SW_SWITCH_R_NONE) {
      perform(&a);
      resp->status = 409;
      resp->json = json_pack("{s:s, s:s, s:s, s:I}", "error", "refused",
                             "reason", sw_switch_reason_name(why), "message",
                             "no watch is running: nothing to commit",
                             "version", (json_int_t)ctl.m.version);
      return;
    }
    perform(&a);
    resp->json = json_pack("{s:b, s:s, s:s, s:I}", "committed", 1, "live",
                           sw_colour_name(sw.live), "phase",
                           sw_switch_phase_name(ctl.m.phase), "version",
                           (json_int_t)ctl.m.version);
    return;
  }
  if (strcmp(q->path, SW_API_ABORT) == 0) {
    sw_switch_actions_t a;
    sw_switch_reason_t why;
    if (stale(q, resp))
      return;
    why = sw_switch_abort(&ctl.m, now_ms(), q->caller, &a);
    sw_info("admin", 0, "%s: abort: %s", q->caller,
            why == SW_SWITCH_R_NONE ? "done" : sw_switch_reason_name(why));
    if (why != SW_SWITCH_R_NONE) {
      resp->status = 409;
      resp->json = json_pack("{s:s, s:s}", "error", "refused", "reason",
                             sw_switch_reason_name(why));
      return;
    }
    perform(&a);
    resp->json = json_pack("{s:b, s:I}", "aborted", 1, "version",
                           (json_int_t)ctl.m.version);
    return;
  }
  if (strcmp(q->path, SW_API_CHECK) == 0) {
    sw_colour_t c;
    if (colour_arg(q->body, "colour", sw.live, &c) != 0) {
      resp->status = 400;
      resp->json =
          json_pack("{s:s}", "error", "\"colour\" must be blue or green");
      return;
    }
    sw_info("admin", 0, "%s: check %s", q->caller, sw_colour_name(c));
    if ((ctl.m.phase == SW_SWITCH_GATING ||
         ctl.m.phase == SW_SWITCH_RECHECKING) &&
        ctl.m.gate.target == c) {
      resp->status = 409;
      resp->json =
          json_pack("{s:s}", "error", "a cutover is verifying this colour now");
      return;
    }
    start_verify(c, 0);
    for (size_t i = 0; i < sw.pools[c].n; i++)
      if (sw.pools[c].servers[i]->health != NULL)
        (void)sw_health_probe_now(sw.pools[c].servers[i]->health, NULL);
    resp->status = 202;
    resp->json =
        json_pack("{s:b, s:s}", "started", 1, "colour", sw_colour_name(c));
    return;
  }
  resp->status = 404;
  resp->json = json_pack("{s:s}", "error", "no such resource");
}

/* --- lifecycle ------------------------------------------------------------ */

static int notify_start(const sw_config_t *cfg, char *err, size_t errlen) {
  sw_notify_opts_t o;

  if (cfg->watch.notify == NULL)
    return 0;
  memset(&o, 0, sizeof(o));
  o.url = cfg->watch.notify;
  o.timeout_ms = cfg->watch.notify_timeout_ms;
  o.retries = cfg->watch.notify_retries;
  return sw_notify_start(sw.loop, &o, err, errlen);
}

static int read_token(const char *path, char **out, char *err, size_t errlen) {
  FILE *fp = fopen(path, "r");
  char buf[512];
  size_t n;

  if (fp == NULL) {
    snprintf(err, errlen, "%s: cannot read the admin token: %s", path,
             strerror(errno));
    return SW_ECONFIG;
  }
  n = fread(buf, 1, sizeof(buf) - 1, fp);
  fclose(fp);
  buf[n] = '\0';
  while (n > 0 &&
         (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' '))
    buf[--n] = '\0';
  if (n < 16) {
    snprintf(err, errlen, "%s: the admin token must be at least 16 bytes",
             path);
    return SW_ECONFIG;
  }
  *out = strdup(buf);
  return *out != NULL ? 0 : UV_ENOMEM;
}

/* Resumes the watch the state file recorded, with the time it has left. */
static int restore_watch(const sw_state_watch_t *sv) {
  sw_watch_persisted_t wp;
  uint64_t now = now_ms();
  int v = -1, r = -1;

  for (int k = SW_WATCH_NONE; k <= SW_WATCH_ALERT; k++)
    if (strcmp(sv->fired, sw_watch_verdict_name((sw_watch_verdict_t)k)) == 0)
      v = k;
  for (int k = SW_WATCH_RULE_NONE; k < SW_WATCH_RULES; k++)
    if (strcmp(sv->rule, sw_watch_rule_name((sw_watch_rule_t)k)) == 0)
      r = k;
  /* The config caps windows at a week; a file that says more was not
   * written by us (and would wrap the machine's deadlines). */
  if (v < 0 || r < 0 || sv->auto_window_ms > WINDOW_MAX_MS ||
      sv->manual_window_ms > WINDOW_MAX_MS)
    return SW_ECONFIG;
  memset(&wp, 0, sizeof(wp));
  wp.armed = 1;
  wp.colour = sv->colour;
  wp.flip_at = to_loop(sv->flip_time_ms);
  wp.auto_window_ms = sv->auto_window_ms;
  wp.manual_window_ms = sv->manual_window_ms;
  wp.ended = sv->ended;
  wp.ended_at = sv->ended ? to_loop(sv->ended_time_ms) : 0;
  wp.requests = sv->requests;
  wp.errors = sv->errors;
  wp.baseline_requests = sv->baseline_requests;
  wp.baseline_errors = sv->baseline_errors;
  wp.fired = (sw_watch_verdict_t)v;
  wp.rule = (sw_watch_rule_t)r;
  wp.fired_at = wp.fired != SW_WATCH_NONE ? to_loop(sv->fired_time_ms) : 0;
  if (wp.flip_at > now)
    wp.flip_at = now;
  if (wp.ended_at > now)
    wp.ended_at = now;
  if (wp.fired_at > now)
    wp.fired_at = now;
  if (sw_watch_restore(&ctl.w, now, &wp) != 0)
    return SW_ECONFIG;
  ctl.watch_wall = sv->flip_time_ms;
  ctl.saved_requests = sv->requests;
  /* Only this process's evidence about the old colour counts, and it is
   * gathered at once (the first tick verifies it). */
  ctl.fresh_from = now;
  ctl.old_verify_at = 0;
  if (wp.fired != SW_WATCH_NONE) {
    ctl.last_verdict = ctl.w.fired;
    ctl.last_verdict.verdict = wp.fired;
    ctl.last_verdict.rule = wp.rule;
    snprintf(ctl.last_verdict.text, sizeof(ctl.last_verdict.text), "%s",
             sv->text);
    ctl.last_verdict_wall = sv->fired_time_ms;
  }
  sw_info("control", 0,
          "watch of %s resumed: %llu ms since the flip, %llu requests, %llu "
          "errors",
          sw_colour_name(sv->colour), (unsigned long long)(now - wp.flip_at),
          (unsigned long long)sv->requests, (unsigned long long)sv->errors);
  return 0;
}

int sw_control_start(char *err, size_t errlen) {
  const sw_config_t *cfg = sw.cfg;
  sw_switch_params_t p;
  sw_admin_opts_t ao;
  int e;

  memset(&ctl, 0, sizeof(ctl));
  for (int c = 0; c < SW_COLOURS; c++) {
    ctl.verify[c].status = "none";
    ctl.colour_up[c] = -1;
  }
  params_from(cfg, &p);
  sw_switch_init(&ctl.m, sw.live, &p);
  ctl.state.max_history = cfg->cutover.history;
  {
    sw_watch_params_t wp;
    watch_params_from(cfg, &wp);
    e = sw_watch_init(&ctl.w, &wp);
    if (e != 0) {
      snprintf(err, errlen, "%s: the watch section is not usable: %s",
               cfg->file, e == SW_ECONFIG ? "invalid thresholds" : "no memory");
      return e == SW_ECONFIG ? SW_ECONFIG : UV_ENOMEM;
    }
    ctl.watch_ready = 1;
  }
  if (cfg->cutover.state_file != NULL) {
    sw_state_t st;
    memset(&st, 0, sizeof(st));
    st.max_history = cfg->cutover.history;
    e = sw_state_load(cfg->cutover.state_file, &st, err, errlen);
    if (e < 0)
      return e;
    if (e == 0) {
      sw_switch_persisted_t ps;
      sw_switch_actions_t a;
      ps.live = st.live;
      ps.flip_at =
          to_loop(st.watch.present ? st.watch.flip_time_ms : st.flip_time_ms);
      ps.version = st.version;
      ps.auto_window_ms = st.watch.present ? st.watch.auto_window_ms : 0;
      ps.manual_window_ms = st.watch.present ? st.watch.manual_window_ms : 0;
      if (sw_switch_phase_parse(st.phase, &ps.phase) != 0 ||
          sw_switch_restore(&ctl.m, now_ms(), &p, &ps, &a) != 0) {
        snprintf(err, errlen, "%s: corrupt state file: unknown phase '%s'",
                 cfg->cutover.state_file, st.phase);
        sw_state_free(&st);
        return SW_ECONFIG;
      }
      if (st.watch.present && restore_watch(&st.watch) != 0) {
        snprintf(err, errlen,
                 "%s: corrupt state file: the watch record "
                 "does not fit (colour, verdict, rule, window or a flip in the "
                 "future)",
                 cfg->cutover.state_file);
        sw_state_free(&st);
        return SW_ECONFIG;
      }
      ctl.state = st;
      /* The flip's wall time is kept as recorded: loop time starts at
       * boot, so a flip older than the uptime has no loop time. */
      ctl.flip_wall = st.flip_time_ms;
      ctl.state.max_history = cfg->cutover.history;
      sw.live = ctl.m.live;
      sw_info("control", 0, "restored from %s: live %s, version %llu",
              cfg->cutover.state_file, sw_colour_name(sw.live),
              (unsigned long long)ctl.m.version);
      ctl.started = 1;
      for (size_t i = 0; i < a.nevents; i++)
        announce(&a.events[i]);
      if (a.flags & SW_SWITCH_ACT_PERSIST)
        persist();
    }
  }
  ctl.started = 1;
  e = uv_timer_init(sw.loop, &ctl.timer);
  if (e != 0) {
    snprintf(err, errlen, "cannot create a timer: %s", uv_strerror(e));
    return e;
  }
  ctl.timer_open = 1;
  e = uv_timer_init(sw.loop, &ctl.lock_timer);
  if (e == 0) {
    ctl.lock_timer_open = 1;
    e = sw_hold_init(on_hold_event, NULL);
  }
  if (e == 0) {
    e = uv_idle_init(sw.loop, &ctl.drain_idle);
    ctl.drain_idle_open = e == 0;
  }
  if (e != 0) {
    snprintf(err, errlen, "cannot create a timer: %s", uv_strerror(e));
    return e;
  }
  ctl.hold_open = 1;

  memset(&ao, 0, sizeof(ao));
  ao.socket_path = cfg->admin.socket;
  ao.allow_uids = cfg->admin.allow_uids;
  ao.nallow_uids = cfg->admin.nallow_uids;
  ao.metrics_open = cfg->admin.metrics_open;
  if (cfg->admin.has_bind) {
    e = read_token(cfg->admin.token_file, &ctl.token, err, errlen);
    if (e != 0)
      return e;
    ao.tcp = (const struct sockaddr *)&cfg->admin.bind.addr;
    ao.token = ctl.token;
  }
  err[0] = '\0';
  e = sw_admin_start(sw.loop, &ao, on_admin, NULL, err, errlen);
  if (e != 0)
    return e;
  e = notify_start(cfg, err, errlen);
  if (e != 0)
    return e;
  feed_colours();
  arm();
  return 0;
}

void sw_control_reload(const sw_config_t *old_cfg) {
  sw_switch_params_t p;
  sw_switch_actions_t a;

  if (!ctl.started)
    return;
  params_from(sw.cfg, &p);
  sw_switch_set_params(&ctl.m, &p);
  sw_state_set_max(&ctl.state, sw.cfg->cutover.history);
  {
    sw_watch_params_t wp;
    const sw_watch_conf_t *nw = &sw.cfg->watch, *ow = &old_cfg->watch;
    char err[256];
    watch_params_from(sw.cfg, &wp);
    if (sw_watch_set_params(&ctl.w, &wp) != 0)
      sw_error("control", 0,
               "the new watch thresholds are not usable: the "
               "old ones stay");
    if ((nw->notify == NULL) != (ow->notify == NULL) ||
        (nw->notify != NULL && strcmp(nw->notify, ow->notify) != 0) ||
        nw->notify_timeout_ms != ow->notify_timeout_ms ||
        nw->notify_retries != ow->notify_retries) {
      sw_notify_stop();
      if (notify_start(sw.cfg, err, sizeof(err)) != 0)
        sw_error("control", 0, "notify: %s", err);
    }
  }
  if (sw.cfg->live != old_cfg->live) {
    sw_switch_reason_t why;
    int usable = 0;
    for (size_t i = 0; i < sw.pools[sw.cfg->live].n; i++)
      usable |= sw_server_usable(sw.pools[sw.cfg->live].servers[i]);
    /* A file edit is an operator's immediate switch, without a gate; it
     * still never switches to a colour with no server able to serve. */
    if (!usable) {
      sw_error("control", 0,
               "the config names live %s, but no %s server is up: not "
               "switched",
               sw_colour_name(sw.cfg->live), sw_colour_name(sw.cfg->live));
      feed_colours();
      return;
    }
    why = sw_switch_set_live(&ctl.m, now_ms(), sw.cfg->live, &a);
    if (why == SW_SWITCH_R_NONE)
      perform(&a);
    else if (why == SW_SWITCH_R_IN_PROGRESS || why == SW_SWITCH_R_WATCHING)
      sw_warn("control", 0,
              "the config names live %s, but a cutover %s: ignored",
              sw_colour_name(sw.cfg->live),
              why == SW_SWITCH_R_WATCHING
                  ? "is being watched (commit or roll back first)"
                  : "is running");
  }
  feed_colours();
}

void sw_control_stop(void) {
  if (!ctl.started)
    return;
  /* The watch's counts as they are at the exit, for the next start. */
  if (ctl.watch_ready && ctl.w.armed && watch_phase(ctl.m.phase))
    persist();
  ctl.started = 0;
  for (int c = 0; c < SW_COLOURS; c++) {
    if (ctl.running[c] != NULL)
      sw_verify_cancel(ctl.running[c]);
    ctl.running[c] = NULL;
  }
  if (ctl.timer_open) {
    ctl.timer_open = 0;
    uv_close((uv_handle_t *)&ctl.timer, NULL);
  }
  if (ctl.hold_open) {
    ctl.hold_open = 0;
    sw_hold_close();
  }
  if (ctl.lock_timer_open) {
    ctl.lock_timer_open = 0;
    uv_close((uv_handle_t *)&ctl.lock_timer, NULL);
  }
  if (ctl.drain_idle_open) {
    ctl.drain_idle_open = 0;
    uv_close((uv_handle_t *)&ctl.drain_idle, NULL);
  }
  if (ctl.lock_run != NULL)
    sw_verify_cancel(ctl.lock_run);
  ctl.lock_run = NULL;
  sw_command_kill(ctl.mb_cmd);
  ctl.mb_cmd = NULL;
  sw_admin_stop();
  sw_notify_stop();
  sw_watch_close(&ctl.w);
  ctl.watch_ready = 0;
  sw_state_free(&ctl.state);
  free(ctl.token);
  ctl.token = NULL;
}
