/* The cutover state machine; see sw_switch.h for the phases and the evidence
 * rules. This file owns the decisions only: it never does I/O, never reads a
 * clock and keeps no state outside the sw_switch_t it is handed, so the
 * same sequence of events always gives the same actions. Text that comes
 * from outside (probe reasons, libpq errors, who asked) is copied into
 * bounded arrays as one line of valid UTF-8, because it ends up in JSON and
 * log lines. */
#include "sw_switch.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const char *const phase_names[SW_SWITCH_PHASES] = {
    [SW_SWITCH_STEADY] = "steady",
    [SW_SWITCH_GATING] = "gating",
    [SW_SWITCH_RECHECKING] = "rechecking",
    [SW_SWITCH_DRAINING] = "draining",
    [SW_SWITCH_WATCHING] = "watching",
    [SW_SWITCH_COMMITTED_MANUAL] = "committed_manual",
    [SW_SWITCH_FINAL] = "final",
    [SW_SWITCH_ROLLED_BACK] = "rolled_back",
    [SW_SWITCH_ROLLBACK_BLOCKED] = "rollback_blocked",
    [SW_SWITCH_MIGRATING] = "migrating",
    [SW_SWITCH_ROLLBACK_MIGRATING] = "rollback_migrating",
};

static const char *const reason_names[SW_SWITCH_REASONS] = {
    [SW_SWITCH_R_NONE] = "none",
    [SW_SWITCH_R_INVALID] = "invalid",
    [SW_SWITCH_R_ALREADY_LIVE] = "already_live",
    [SW_SWITCH_R_IN_PROGRESS] = "in_progress",
    [SW_SWITCH_R_NO_SERVERS] = "no_servers",
    [SW_SWITCH_R_NOT_GATING] = "not_gating",
    [SW_SWITCH_R_REQUESTED] = "requested",
    [SW_SWITCH_R_GATE_PASSED] = "gate_passed",
    [SW_SWITCH_R_FLIPPED] = "flipped",
    [SW_SWITCH_R_DRAINED] = "drained",
    [SW_SWITCH_R_DRAIN_TIMEOUT] = "drain_timeout",
    [SW_SWITCH_R_OPERATOR] = "operator",
    [SW_SWITCH_R_TIMEOUT] = "timeout",
    [SW_SWITCH_R_RECHECK_TIMEOUT] = "recheck_timeout",
    [SW_SWITCH_R_VERIFY_FAILED] = "verify_failed",
    [SW_SWITCH_R_VERIFY_INCONCLUSIVE] = "verify_inconclusive",
    [SW_SWITCH_R_LIVE_UNHEALTHY] = "live_unhealthy",
    [SW_SWITCH_R_PROBE_FAILED] = "probe_failed",
    [SW_SWITCH_R_RESTART] = "restart",
    [SW_SWITCH_R_CONFIG] = "config",
    [SW_SWITCH_R_WATCHING] = "watching",
    [SW_SWITCH_R_NOT_WATCHING] = "not_watching",
    [SW_SWITCH_R_NEEDS_CONFIRM] = "needs_confirm",
    [SW_SWITCH_R_NEEDS_FORCE] = "needs_force",
    [SW_SWITCH_R_ALREADY_ROLLED_BACK] = "already_rolled_back",
    [SW_SWITCH_R_NOT_READY] = "not_ready",
    [SW_SWITCH_R_AUTO_WINDOW_END] = "auto_window_end",
    [SW_SWITCH_R_MANUAL_WINDOW_END] = "manual_window_end",
    [SW_SWITCH_R_COMMITTED] = "committed",
    [SW_SWITCH_R_ROLLBACK] = "rollback",
    [SW_SWITCH_R_ROLLBACK_BLOCKED] = "rollback_blocked",
    [SW_SWITCH_R_NOT_MIGRATING] = "not_migrating",
    [SW_SWITCH_R_MIGRATED] = "migrated",
    [SW_SWITCH_R_MIGRATION_FAILED] = "migration_failed",
    [SW_SWITCH_R_HOLD_EXPIRED] = "hold_expired",
    [SW_SWITCH_R_ROLLBACK_MIGRATE] = "rollback_migrate",
};

/* The machine's own colour names, so that a pure module does not pull in
 * the config parser for two words. */
static const char *colour_name(sw_colour_t c) {
  return c == SW_GREEN ? "green" : c == SW_BLUE ? "blue" : "unknown";
}

static int colour_valid(sw_colour_t c) {
  return c == SW_BLUE || c == SW_GREEN;
}

static sw_colour_t other_colour(sw_colour_t c) {
  return c == SW_BLUE ? SW_GREEN : SW_BLUE;
}

/* Length of the UTF-8 sequence at p: 1-4 when valid, 0 when invalid, -1
 * when the string ends inside it (a cut made by a truncating printf). The
 * ranges are those of RFC 3629: no overlongs, no surrogates, nothing past
 * U+10FFFF, because a JSON encoder rejects all of them. */
static int utf8_len(const unsigned char *p) {
  unsigned char c = p[0];
  unsigned char lo = 0x80, hi = 0xbf;
  int n;

  if (c < 0x80)
    return 1;
  if (c >= 0xc2 && c <= 0xdf)
    n = 2;
  else if (c >= 0xe0 && c <= 0xef)
    n = 3;
  else if (c >= 0xf0 && c <= 0xf4)
    n = 4;
  else
    return 0;
  if (c == 0xe0)
    lo = 0xa0;
  else if (c == 0xed)
    hi = 0x9f;
  else if (c == 0xf0)
    lo = 0x90;
  else if (c == 0xf4)
    hi = 0x8f;
  for (int i = 1; i < n; i++) {
    if (p[i] == '\0')
      return -1;
    if (p[i] < (i == 1 ? lo : 0x80) || p[i] > (i == 1 ? hi : 0xbf))
      return 0;
  }
  return n;
}

/* Copies src into dst (cap bytes, cap >= 4) as one line of valid UTF-8:
 * control characters become spaces, invalid bytes '?', trailing spaces go,
 * and a text that does not fit ends in "..." cut at a character boundary.
 * libpq's messages end in a newline and may be in the server's encoding;
 * neither may reach a JSON log line as is. */
static void text_copy(char *dst, size_t cap, const char *src) {
  const unsigned char *p = (const unsigned char *)(src ? src : "");
  size_t len = 0, room = cap - 1;

  while (*p != '\0') {
    int n = utf8_len(p);
    if (n < 0)
      break;
    if (len + (size_t)(n > 0 ? n : 1) > room) {
      /* Cut: make room for the marker at a character boundary. */
      while (len > 0 && len + 3 > room) {
        len--;
        while (len > 0 && ((unsigned char)dst[len] & 0xc0) == 0x80)
          len--;
      }
      memcpy(dst + len, "...", 3);
      len += 3;
      break;
    }
    if (n == 0) {
      dst[len++] = '?';
      p++;
    } else if (n == 1) {
      dst[len++] = (*p < 0x20 || *p == 0x7f) ? ' ' : (char)*p;
      p++;
    } else {
      memcpy(dst + len, p, (size_t)n);
      len += (size_t)n;
      p += n;
    }
  }
  while (len > 0 && dst[len - 1] == ' ')
    len--;
  dst[len] = '\0';
}

/* printf into a bounded, cleaned text. The scratch buffer is larger than
 * any text we keep, so the cut (with its "...") happens in text_copy. */
static void text_printf(char *dst, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void text_printf(char *dst, size_t cap, const char *fmt, ...) {
  char scratch[SW_SWITCH_MESSAGE * 2 + 1];
  va_list ap;

  va_start(ap, fmt);
  vsnprintf(scratch, sizeof(scratch), fmt, ap);
  va_end(ap);
  text_copy(dst, cap, scratch);
}

static void actions_clear(sw_switch_actions_t *out) {
  out->flags = 0;
  out->verify = SW_BLUE;
  out->probe = SW_BLUE;
  out->flip_to = SW_BLUE;
  out->cancel = SW_BLUE;
  out->nevents = 0;
}

static void history_push(sw_switch_t *s, const sw_switch_event_t *ev) {
  size_t cap = s->params.history;

  if (cap == 0)
    return;
  if (s->nhistory == cap) {
    /* Transitions are a handful per deploy: moving the ring's contents
     * keeps it oldest-first and indexable without a head pointer. */
    memmove(&s->history[0], &s->history[1], (cap - 1) * sizeof(s->history[0]));
    s->nhistory--;
  }
  s->history[s->nhistory++] = *ev;
}

/* Moves to phase `to`, bumps the version, and records why: in the ring and
 * in out, with PERSIST so the state file never lags a transition. The
 * caller of this function sets s->live first when the transition is a
 * flip, so the record carries the new live colour. */
static void transition(sw_switch_t *s,
                       uint64_t now,
                       sw_switch_phase_t to,
                       sw_switch_reason_t reason,
                       sw_colour_t target,
                       const char *text,
                       sw_switch_actions_t *out) {
  sw_switch_event_t ev;

  memset(&ev, 0, sizeof(ev));
  ev.at = now;
  ev.from = s->phase;
  ev.to = to;
  ev.reason = reason;
  ev.target = target;
  s->phase = to;
  s->version++;
  ev.version = s->version;
  ev.live = s->live;
  text_copy(ev.text, sizeof(ev.text), text);
  history_push(s, &ev);
  if (out->nevents < SW_SWITCH_EVENTS_MAX)
    out->events[out->nevents++] = ev;
  out->flags |= SW_SWITCH_ACT_PERSIST;
}

/* Ends the gate without flipping: nothing about the traffic changes, and
 * last_gate keeps the full message for status. */
static void gate_end(sw_switch_t *s,
                     uint64_t now,
                     sw_switch_reason_t reason,
                     const char *message,
                     sw_switch_actions_t *out) {
  sw_switch_result_t *r = &s->last_gate;
  sw_colour_t target = s->gate.target;

  r->outcome = sw_switch_reason_outcome(reason);
  r->reason = reason;
  r->target = target;
  r->at = now;
  text_copy(r->message, sizeof(r->message), message);
  s->gates[r->outcome]++;
  memset(&s->gate, 0, sizeof(s->gate));
  transition(s, now, SW_SWITCH_STEADY, reason, target, r->message, out);
}

/* The deadline text says what was still missing, so that "timeout" tells
 * the operator which condition to look at. */
static void gate_timeout(sw_switch_t *s,
                         uint64_t now,
                         sw_switch_actions_t *out) {
  const sw_switch_gate_t *g = &s->gate;
  sw_colour_t live = s->live;
  char msg[SW_SWITCH_MESSAGE];

  if (s->phase == SW_SWITCH_MIGRATING) {
    text_printf(msg, sizeof(msg),
                "gate deadline reached while waiting for the migration to %s",
                colour_name(g->target));
  } else if (s->phase == SW_SWITCH_RECHECKING) {
    text_printf(msg, sizeof(msg),
                "gate deadline reached during the re-check of %s: probe %s, "
                "verification %s",
                colour_name(g->target), g->probe_ok ? "passed" : "pending",
                g->recheck_verified ? "passed" : "pending");
  } else {
    text_printf(
        msg, sizeof(msg),
        "gate deadline reached after %llu ms: %s had %u of %u health passes%s"
        "%s%s, verification %s, live %s %s",
        (unsigned long long)(now - g->requested_at), colour_name(g->target),
        g->passes, g->rise, g->last_failure[0] ? " (last failure: " : "",
        g->last_failure, g->last_failure[0] ? ")" : "",
        g->migrate    ? "not needed (migration)"
        : g->verified ? "passed"
                      : "pending",
        colour_name(live), sw_switch_health_name(s->health[live]));
  }
  gate_end(s, now, SW_SWITCH_R_TIMEOUT, msg, out);
}

static void check_windows(sw_switch_t *s,
                          uint64_t now,
                          sw_switch_actions_t *out);

/* Every event runs this first. A gate past its deadline ends as a timeout
 * before the event is looked at, so late evidence cannot pass it; a drain
 * past its deadline asks for the cancellation until the count comes back.
 * Returns 1 when it ended a gate. */
static int check_deadlines(sw_switch_t *s,
                           uint64_t now,
                           sw_switch_actions_t *out) {
  const sw_switch_gate_t *g = &s->gate;

  switch (s->phase) {
    case SW_SWITCH_GATING:
    case SW_SWITCH_MIGRATING:
      if (now >= g->deadline) {
        gate_timeout(s, now, out);
        return 1;
      }
      break;
    case SW_SWITCH_RECHECKING:
      if (now >= g->deadline) {
        gate_timeout(s, now, out);
        return 1;
      }
      if (now >= g->recheck_deadline) {
        char msg[SW_SWITCH_MESSAGE];
        text_printf(msg, sizeof(msg),
                    "re-check of %s took longer than %llu ms: probe %s, "
                    "verification %s",
                    colour_name(g->target),
                    (unsigned long long)(g->recheck_deadline - g->recheck_at),
                    g->probe_ok ? "passed" : "pending",
                    g->recheck_verified ? "passed" : "pending");
        gate_end(s, now, SW_SWITCH_R_RECHECK_TIMEOUT, msg, out);
        return 1;
      }
      break;
    default:
      break;
  }
  if (s->drain.active && now >= s->drain.deadline) {
    s->drain.cancel_sent = 1;
    out->flags |= SW_SWITCH_ACT_CANCEL_DRAIN;
    out->cancel = s->drain.colour;
  }
  check_windows(s, now, out);
  return 0;
}

/* The watch windows run out one after the other; a restart after a long
 * stop passes both in one call. */
static void check_windows(sw_switch_t *s,
                          uint64_t now,
                          sw_switch_actions_t *out) {
  if (s->phase == SW_SWITCH_WATCHING && now >= s->flip_at + s->watch_auto_ms) {
    char text[SW_SWITCH_TEXT];
    text_printf(text, sizeof(text),
                "auto window of %llu ms over: triggers on %s only alert now",
                (unsigned long long)s->watch_auto_ms, colour_name(s->live));
    transition(s, now, SW_SWITCH_COMMITTED_MANUAL, SW_SWITCH_R_AUTO_WINDOW_END,
               s->live, text, out);
  }
  if (s->phase == SW_SWITCH_COMMITTED_MANUAL &&
      now >= s->flip_at + s->watch_manual_ms) {
    char text[SW_SWITCH_TEXT];
    text_printf(text, sizeof(text),
                "manual window of %llu ms over: %s stands; rollback needs "
                "--force",
                (unsigned long long)s->watch_manual_ms, colour_name(s->live));
    transition(s, now, SW_SWITCH_FINAL, SW_SWITCH_R_MANUAL_WINDOW_END, s->live,
               text, out);
  }
}

/* Gating -> rechecking once every condition holds. Evidence gathered so far
 * is spent: the re-check needs its own, started from now. */
static void recheck_start(sw_switch_t *s,
                          uint64_t now,
                          sw_switch_reason_t reason,
                          const char *text,
                          sw_switch_actions_t *out) {
  sw_switch_gate_t *g = &s->gate;
  uint64_t bound = s->params.recheck_timeout_ms;

  g->recheck_at = now;
  g->recheck_deadline = g->deadline;
  if (bound > 0 && now + bound < g->deadline)
    g->recheck_deadline = now + bound;
  g->probe_ok = 0;
  g->recheck_verified = 0;
  g->old_checked = 0;
  out->flags |= SW_SWITCH_ACT_PROBE | SW_SWITCH_ACT_VERIFY;
  out->probe = g->target;
  out->verify = g->target;
  transition(s, now, SW_SWITCH_RECHECKING, reason, g->target, text, out);
}

static void gate_try_pass(sw_switch_t *s,
                          uint64_t now,
                          sw_switch_actions_t *out) {
  sw_switch_gate_t *g = &s->gate;
  char text[SW_SWITCH_TEXT];

  if (s->phase != SW_SWITCH_GATING || g->passes < g->rise ||
      (!g->verified && !g->migrate) ||
      s->health[s->live] != SW_SWITCH_HEALTH_UP)
    return;
  if (g->migrate) {
    /* Liveness only: the schema the target needs comes with the
     * migration, which runs under the hold from here. */
    g->migrating_at = now;
    out->flags |= SW_SWITCH_ACT_HOLD;
    text_printf(text, sizeof(text),
                "%s passed %u health checks in a row; live %s healthy; "
                "holding new requests for the migration",
                colour_name(g->target), g->passes, colour_name(s->live));
    transition(s, now, SW_SWITCH_MIGRATING, SW_SWITCH_R_GATE_PASSED, g->target,
               text, out);
    return;
  }
  text_printf(text, sizeof(text),
              "%s passed %u health checks in a row and verification; live %s "
              "healthy; re-checking",
              colour_name(g->target), g->passes, colour_name(s->live));
  recheck_start(s, now, SW_SWITCH_R_GATE_PASSED, text, out);
}

/* Rechecking -> draining: the flip. The live colour changes here, in the
 * call that saw the last piece of evidence, and FLIP tells the caller to do
 * the same before it returns to the loop. */
static void recheck_try_flip(sw_switch_t *s,
                             uint64_t now,
                             sw_switch_actions_t *out) {
  sw_switch_gate_t *g = &s->gate;
  sw_colour_t old = s->live, target = g->target;
  char text[SW_SWITCH_TEXT];

  /* After a migration the old colour may well be down (its code meets a
   * schema it does not know): the only way left is forward, so a migrate
   * gate's flip does not wait for it. */
  if (s->phase != SW_SWITCH_RECHECKING || !g->probe_ok ||
      !g->recheck_verified ||
      (s->health[old] != SW_SWITCH_HEALTH_UP && !g->migrate))
    return;
  if (s->params.watch && s->params.verify_old[old] && !g->old_checked)
    return;
  s->last_gate.outcome = SW_SWITCH_OUTCOME_PASSED;
  s->last_gate.reason = SW_SWITCH_R_FLIPPED;
  s->last_gate.target = target;
  s->last_gate.at = now;
  text_printf(s->last_gate.message, sizeof(s->last_gate.message),
              "%s passed the gate and the re-check; live %s -> %s",
              colour_name(target), colour_name(old), colour_name(target));
  s->gates[SW_SWITCH_OUTCOME_PASSED]++;
  memset(&s->gate, 0, sizeof(s->gate));

  s->live = target;
  s->flip_at = now;
  s->flips++;
  memset(&s->drain, 0, sizeof(s->drain));
  s->drain.active = 1;
  s->drain.colour = old;
  s->drain.started_at = now;
  s->drain.deadline = now + s->params.drain_timeout_ms;
  out->flags |= SW_SWITCH_ACT_FLIP;
  out->flip_to = target;
  if (!s->params.watch) {
    text_printf(text, sizeof(text),
                "live %s -> %s; draining %s (up to %llu ms)", colour_name(old),
                colour_name(target), colour_name(old),
                (unsigned long long)s->params.drain_timeout_ms);
    transition(s, now, SW_SWITCH_DRAINING, SW_SWITCH_R_FLIPPED, target, text,
               out);
    return;
  }
  s->watch_auto_ms = s->params.auto_window_ms;
  s->watch_manual_ms = s->params.manual_window_ms > s->watch_auto_ms
                           ? s->params.manual_window_ms
                           : s->watch_auto_ms;
  out->flags |= SW_SWITCH_ACT_WATCH;
  text_printf(text, sizeof(text),
              "live %s -> %s; draining %s (up to %llu ms); watching %s "
              "(auto %llu ms, manual %llu ms)",
              colour_name(old), colour_name(target), colour_name(old),
              (unsigned long long)s->params.drain_timeout_ms,
              colour_name(target), (unsigned long long)s->watch_auto_ms,
              (unsigned long long)s->watch_manual_ms);
  transition(s, now, SW_SWITCH_WATCHING, SW_SWITCH_R_FLIPPED, target, text,
             out);
}

static void drain_end(sw_switch_t *s,
                      uint64_t now,
                      sw_switch_reason_t reason,
                      uint64_t cancelled,
                      sw_switch_actions_t *out) {
  sw_switch_drain_result_t *r = &s->last_drain;
  const sw_switch_drain_t *d = &s->drain;
  char text[SW_SWITCH_TEXT];

  r->valid = 1;
  r->colour = d->colour;
  r->reason = reason;
  r->started_at = d->started_at;
  r->ended_at = now;
  r->cancelled = cancelled;
  s->drain_cancelled += cancelled;
  if (reason == SW_SWITCH_R_DRAINED)
    text_printf(text, sizeof(text), "%s drained in %llu ms",
                colour_name(d->colour),
                (unsigned long long)(now - d->started_at));
  else
    text_printf(text, sizeof(text),
                "%s drain timed out after %llu ms: %llu request%s cancelled",
                colour_name(d->colour),
                (unsigned long long)(now - d->started_at),
                (unsigned long long)cancelled, cancelled == 1 ? "" : "s");
  memset(&s->drain, 0, sizeof(s->drain));
  /* The cutover was about the colour that is live now. Without a watch the
   * drain was the last step; with one, the phase stays and the record
   * reads from it to itself. */
  transition(s, now,
             s->phase == SW_SWITCH_DRAINING ? SW_SWITCH_STEADY : s->phase,
             reason, s->live, text, out);
}

/* Where a new cutover (or a config switch) may start. */
static sw_switch_reason_t may_switch(const sw_switch_t *s) {
  switch (s->phase) {
    case SW_SWITCH_STEADY:
    case SW_SWITCH_FINAL:
    case SW_SWITCH_ROLLED_BACK:
      return s->drain.active ? SW_SWITCH_R_IN_PROGRESS : SW_SWITCH_R_NONE;
    case SW_SWITCH_WATCHING:
    case SW_SWITCH_COMMITTED_MANUAL:
    case SW_SWITCH_ROLLBACK_BLOCKED:
      return SW_SWITCH_R_WATCHING;
    default:
      return SW_SWITCH_R_IN_PROGRESS;
  }
}

static int gate_running(const sw_switch_t *s) {
  return s->phase == SW_SWITCH_GATING || s->phase == SW_SWITCH_RECHECKING ||
         s->phase == SW_SWITCH_MIGRATING;
}

void sw_switch_params_default(sw_switch_params_t *p) {
  memset(p, 0, sizeof(*p));
  p->rise[SW_BLUE] = SW_SWITCH_DEFAULT_RISE;
  p->rise[SW_GREEN] = SW_SWITCH_DEFAULT_RISE;
  p->gate_timeout_ms = SW_SWITCH_DEFAULT_GATE_TIMEOUT_MS;
  p->recheck_timeout_ms = SW_SWITCH_DEFAULT_RECHECK_TIMEOUT_MS;
  p->drain_timeout_ms = SW_SWITCH_DEFAULT_DRAIN_TIMEOUT_MS;
  p->history = SW_SWITCH_DEFAULT_HISTORY;
  p->watch = 1;
  p->auto_window_ms = SW_SWITCH_DEFAULT_AUTO_WINDOW_MS;
  p->manual_window_ms = SW_SWITCH_DEFAULT_MANUAL_WINDOW_MS;
}

void sw_switch_set_params(sw_switch_t *s, const sw_switch_params_t *p) {
  sw_switch_params_t d;

  if (p == NULL) {
    sw_switch_params_default(&d);
    p = &d;
  }
  s->params = *p;
  if (s->params.history > SW_SWITCH_HISTORY_MAX)
    s->params.history = SW_SWITCH_HISTORY_MAX;
  if (s->nhistory > s->params.history) {
    size_t drop = s->nhistory - s->params.history;
    memmove(&s->history[0], &s->history[drop],
            s->params.history * sizeof(s->history[0]));
    s->nhistory = s->params.history;
  }
}

void sw_switch_init(sw_switch_t *s,
                    sw_colour_t live,
                    const sw_switch_params_t *p) {
  memset(s, 0, sizeof(*s));
  s->phase = SW_SWITCH_STEADY;
  s->live = live;
  /* 0 stays free to mean "no version" in a client's request. */
  s->version = 1;
  sw_switch_set_params(s, p);
}

int sw_switch_restore(sw_switch_t *s,
                      uint64_t now,
                      const sw_switch_params_t *p,
                      const sw_switch_persisted_t *st,
                      sw_switch_actions_t *out) {
  sw_colour_t live = st->live, other = other_colour(st->live);
  char text[SW_SWITCH_TEXT];

  actions_clear(out);
  if (!colour_valid(st->live) || (unsigned)st->phase >= SW_SWITCH_PHASES)
    return SW_ECONFIG;
  sw_switch_init(s, live, p);
  if (st->version > s->version)
    s->version = st->version;
  s->flip_at = st->flip_at;
  if (st->phase == SW_SWITCH_STEADY)
    return 0;

  /* The record must read "from gating", so the machine briefly holds the
   * recorded phase; nothing can observe it in between. */
  s->phase = st->phase;
  switch (st->phase) {
    case SW_SWITCH_GATING:
    case SW_SWITCH_RECHECKING:
    case SW_SWITCH_MIGRATING:
      s->gate.target = other;
      text_printf(text, sizeof(text),
                  "restart during %s: the gate to %s ended inconclusive; "
                  "live %s",
                  phase_names[st->phase], colour_name(other),
                  colour_name(live));
      gate_end(s, now, SW_SWITCH_R_RESTART, text, out);
      break;
    case SW_SWITCH_DRAINING:
      s->last_drain.valid = 1;
      s->last_drain.colour = other;
      s->last_drain.reason = SW_SWITCH_R_RESTART;
      s->last_drain.started_at = st->flip_at;
      s->last_drain.ended_at = now;
      text_printf(text, sizeof(text),
                  "restart during the drain of %s: its requests ended with "
                  "the process; live %s",
                  colour_name(other), colour_name(live));
      transition(s, now, SW_SWITCH_STEADY, SW_SWITCH_R_RESTART, live, text,
                 out);
      break;
    case SW_SWITCH_WATCHING:
    case SW_SWITCH_COMMITTED_MANUAL:
    case SW_SWITCH_ROLLBACK_BLOCKED:
    case SW_SWITCH_ROLLBACK_MIGRATING:
      /* The windows go on from the flip; the old colour's drain, if any
       * was left, ended with the process. */
      s->watch_auto_ms =
          st->auto_window_ms ? st->auto_window_ms : s->params.auto_window_ms;
      s->watch_manual_ms = st->manual_window_ms ? st->manual_window_ms
                                                : s->params.manual_window_ms;
      if (s->watch_manual_ms < s->watch_auto_ms)
        s->watch_manual_ms = s->watch_auto_ms;
      if (st->phase == SW_SWITCH_ROLLBACK_MIGRATING) {
        /* Whether the reverse migration finished is not known: nobody
         * flips into a schema nobody checked. */
        sw_switch_rollback_t *rb = &s->last_rollback;
        rb->valid = 1;
        rb->blocked = 1;
        rb->from = live;
        rb->to = other;
        rb->at = now;
        text_copy(rb->trigger, sizeof(rb->trigger), "restart");
        s->rollbacks_blocked++;
        text_printf(rb->message, sizeof(rb->message),
                    "restart during the reverse migration: rollback to %s "
                    "blocked until an operator checks its schema; %s keeps "
                    "serving",
                    colour_name(other), colour_name(live));
        transition(s, now, SW_SWITCH_ROLLBACK_BLOCKED, SW_SWITCH_R_RESTART,
                   other, rb->message, out);
        break;
      }
      check_deadlines(s, now, out);
      break;
    default:
      /* final and rolled_back resume as they were. */
      s->watch_auto_ms = st->auto_window_ms;
      s->watch_manual_ms = st->manual_window_ms;
      break;
  }
  return 0;
}

void sw_switch_snapshot(const sw_switch_t *s, sw_switch_persisted_t *st) {
  st->live = s->live;
  st->phase = s->phase;
  st->flip_at = s->flip_at;
  st->version = s->version;
  st->auto_window_ms = s->watch_auto_ms;
  st->manual_window_ms = s->watch_manual_ms;
}

sw_switch_reason_t sw_switch_request(sw_switch_t *s,
                                     uint64_t now,
                                     sw_colour_t target,
                                     size_t target_servers,
                                     const char *who,
                                     sw_switch_actions_t *out) {
  return sw_switch_request_ex(s, now, target, target_servers, who, 0, out);
}

sw_switch_reason_t sw_switch_request_ex(sw_switch_t *s,
                                        uint64_t now,
                                        sw_colour_t target,
                                        size_t target_servers,
                                        const char *who,
                                        unsigned flags,
                                        sw_switch_actions_t *out) {
  sw_switch_gate_t *g = &s->gate;
  sw_switch_reason_t why;
  unsigned rise;
  char text[SW_SWITCH_TEXT];

  actions_clear(out);
  if (!colour_valid(target))
    return SW_SWITCH_R_INVALID;
  check_deadlines(s, now, out);
  why = may_switch(s);
  if (why != SW_SWITCH_R_NONE)
    return why;
  if (target == s->live)
    return SW_SWITCH_R_ALREADY_LIVE;
  if (target_servers == 0)
    return SW_SWITCH_R_NO_SERVERS;

  rise = s->params.rise[target] > 0 ? s->params.rise[target] : 1;
  memset(g, 0, sizeof(*g));
  g->target = target;
  g->requested_at = now;
  g->deadline = now + s->params.gate_timeout_ms;
  g->rise = rise;
  text_copy(g->who, sizeof(g->who), who ? who : "operator");
  g->migrate = (flags & SW_SWITCH_REQ_MIGRATE) != 0;
  if (!g->migrate) {
    out->flags |= SW_SWITCH_ACT_VERIFY;
    out->verify = target;
  }
  text_printf(text, sizeof(text),
              "cutover to %s requested by %s (rise %u, gate timeout %llu "
              "ms%s)",
              colour_name(target), g->who, rise,
              (unsigned long long)s->params.gate_timeout_ms,
              g->migrate ? ", with a migration under the hold" : "");
  transition(s, now, SW_SWITCH_GATING, SW_SWITCH_R_REQUESTED, target, text,
             out);

  /* A live colour already known to be down would leave nothing to roll back
   * to: the gate ends now rather than waiting out its deadline. The request
   * itself was valid, so it is accepted and its result says why it ended. */
  if (s->health[s->live] == SW_SWITCH_HEALTH_DOWN) {
    char msg[SW_SWITCH_MESSAGE];
    text_printf(msg, sizeof(msg), "live %s is unhealthy: %s",
                colour_name(s->live),
                s->health_reason[s->live][0] ? s->health_reason[s->live]
                                             : "no reason given");
    gate_end(s, now, SW_SWITCH_R_LIVE_UNHEALTHY, msg, out);
  }
  return SW_SWITCH_R_NONE;
}

sw_switch_reason_t sw_switch_set_live(sw_switch_t *s,
                                      uint64_t now,
                                      sw_colour_t live,
                                      sw_switch_actions_t *out) {
  char msg[SW_SWITCH_TEXT];
  sw_switch_reason_t why;

  actions_clear(out);
  if (live != SW_BLUE && live != SW_GREEN)
    return SW_SWITCH_R_INVALID;
  why = may_switch(s);
  if (why != SW_SWITCH_R_NONE)
    return why;
  if (live == s->live)
    return SW_SWITCH_R_ALREADY_LIVE;
  s->live = live;
  s->flip_at = now;
  s->flips++;
  text_printf(msg, sizeof(msg), "live set to %s by a config reload",
              colour_name(live));
  transition(s, now, SW_SWITCH_STEADY, SW_SWITCH_R_CONFIG, live, msg, out);
  out->flags |= SW_SWITCH_ACT_FLIP;
  out->flip_to = live;
  return SW_SWITCH_R_NONE;
}

sw_switch_reason_t sw_switch_abort(sw_switch_t *s,
                                   uint64_t now,
                                   const char *who,
                                   sw_switch_actions_t *out) {
  char name[SW_SWITCH_WHO], msg[SW_SWITCH_MESSAGE];

  actions_clear(out);
  /* A gate already past its deadline ended by itself: the record says
   * timeout, not operator. */
  if (check_deadlines(s, now, out) || !gate_running(s))
    return SW_SWITCH_R_NOT_GATING;
  text_copy(name, sizeof(name), who ? who : "operator");
  text_printf(msg, sizeof(msg), "gate to %s aborted by %s during %s",
              colour_name(s->gate.target), name, phase_names[s->phase]);
  gate_end(s, now, SW_SWITCH_R_OPERATOR, msg, out);
  return SW_SWITCH_R_NONE;
}

/* Whether `mode` may roll back from the current phase; the refusal when
 * not. */
static sw_switch_reason_t rollback_allowed(const sw_switch_t *s,
                                           uint64_t now,
                                           sw_switch_rollback_mode_t mode) {
  switch (s->phase) {
    case SW_SWITCH_GATING:
    case SW_SWITCH_RECHECKING:
      return SW_SWITCH_R_IN_PROGRESS;
    case SW_SWITCH_ROLLED_BACK:
      return SW_SWITCH_R_ALREADY_ROLLED_BACK;
    case SW_SWITCH_WATCHING:
    case SW_SWITCH_ROLLBACK_MIGRATING: /* allowed when it began */
      return SW_SWITCH_R_NONE;
    case SW_SWITCH_MIGRATING:
      return SW_SWITCH_R_IN_PROGRESS;
    case SW_SWITCH_ROLLBACK_BLOCKED:
      /* The windows no longer move the phase, but they still say how
       * sure an operator must be to flip back by hand. */
      if (mode == SW_SWITCH_ROLLBACK_AUTO)
        return SW_SWITCH_R_NOT_WATCHING;
      if (now >= s->flip_at + s->watch_manual_ms)
        return mode == SW_SWITCH_ROLLBACK_FORCE ? SW_SWITCH_R_NONE
                                                : SW_SWITCH_R_NEEDS_FORCE;
      if (now >= s->flip_at + s->watch_auto_ms)
        return mode >= SW_SWITCH_ROLLBACK_CONFIRM ? SW_SWITCH_R_NONE
                                                  : SW_SWITCH_R_NEEDS_CONFIRM;
      return SW_SWITCH_R_NONE;
    case SW_SWITCH_COMMITTED_MANUAL:
      return mode >= SW_SWITCH_ROLLBACK_CONFIRM ? SW_SWITCH_R_NONE
                                                : SW_SWITCH_R_NEEDS_CONFIRM;
    default:
      /* final, and steady or draining: only a flip can be undone. */
      if (s->flip_at == 0 && s->flips == 0)
        return SW_SWITCH_R_NOT_WATCHING;
      if (mode == SW_SWITCH_ROLLBACK_AUTO)
        return SW_SWITCH_R_NOT_WATCHING;
      return mode == SW_SWITCH_ROLLBACK_FORCE ? SW_SWITCH_R_NONE
                                              : SW_SWITCH_R_NEEDS_FORCE;
  }
}

/* A rollback that began with the reverse migration cannot flip. */
static void migrate_back_blocked(sw_switch_t *s,
                                 uint64_t now,
                                 const char *text,
                                 sw_switch_actions_t *out) {
  sw_switch_rollback_t *rb = &s->last_rollback;
  sw_colour_t from = s->live, to = other_colour(s->live);

  rb->blocked = 1;
  rb->from = from;
  rb->to = to;
  rb->at = now;
  text_printf(rb->message, sizeof(rb->message),
              "rollback to %s blocked: %s; %s keeps serving", colour_name(to),
              text && text[0] ? text : "the reverse migration failed",
              colour_name(from));
  s->rollbacks_blocked++;
  transition(s, now, SW_SWITCH_ROLLBACK_BLOCKED, SW_SWITCH_R_ROLLBACK_BLOCKED,
             to, rb->message, out);
}

sw_switch_reason_t sw_switch_rollback(sw_switch_t *s,
                                      uint64_t now,
                                      sw_switch_rollback_mode_t mode,
                                      const char *trigger,
                                      const char *why,
                                      const char *not_ready,
                                      sw_switch_actions_t *out) {
  sw_switch_rollback_t *rb = &s->last_rollback;
  sw_colour_t from = s->live, to = other_colour(s->live);
  sw_switch_reason_t refused;
  char text[SW_SWITCH_TEXT];

  actions_clear(out);
  check_deadlines(s, now, out);
  /* The colour going live again may be past its drain deadline: its
   * requests are live traffic again, never cancelled. */
  if ((out->flags & SW_SWITCH_ACT_CANCEL_DRAIN) && out->cancel == to)
    out->flags &= ~SW_SWITCH_ACT_CANCEL_DRAIN;
  refused = rollback_allowed(s, now, mode);
  if (refused != SW_SWITCH_R_NONE)
    return refused;
  if (s->phase == SW_SWITCH_ROLLBACK_MIGRATING) {
    /* The end of a rollback that began with the reverse migration: it
     * flips or blocks, as the automatic one does, in the mode it began
     * with. */
    mode = rb->mode;
    if (not_ready != NULL) {
      migrate_back_blocked(s, now, not_ready, out);
      return SW_SWITCH_R_ROLLBACK_BLOCKED;
    }
  } else if (not_ready != NULL && mode != SW_SWITCH_ROLLBACK_AUTO) {
    return SW_SWITCH_R_NOT_READY;
  }

  memset(rb, 0, sizeof(*rb));
  rb->valid = 1;
  rb->mode = mode;
  rb->from = from;
  rb->to = to;
  rb->at = now;
  text_copy(rb->trigger, sizeof(rb->trigger), trigger ? trigger : "operator");
  if (not_ready != NULL) {
    /* Never into a broken pool: the new colour keeps the traffic, and
     * the phase says so until an operator acts. */
    rb->blocked = 1;
    text_printf(rb->message, sizeof(rb->message),
                "rollback to %s blocked: %s; %s keeps serving (%s)",
                colour_name(to), not_ready, colour_name(from),
                why ? why : rb->trigger);
    s->rollbacks_blocked++;
    if (s->phase != SW_SWITCH_ROLLBACK_BLOCKED)
      transition(s, now, SW_SWITCH_ROLLBACK_BLOCKED,
                 SW_SWITCH_R_ROLLBACK_BLOCKED, to, rb->message, out);
    return SW_SWITCH_R_ROLLBACK_BLOCKED;
  }
  text_printf(rb->message, sizeof(rb->message), "rolled back %s -> %s (%s): %s",
              colour_name(from), colour_name(to),
              sw_switch_rollback_mode_name(mode), why ? why : rb->trigger);
  /* The flip back. The colour rolled back to may still be draining from
   * the flip: it is live again, so its requests simply go on. */
  s->live = to;
  s->flip_at = now;
  s->flips++;
  s->rollbacks++;
  memset(&s->drain, 0, sizeof(s->drain));
  s->drain.active = 1;
  s->drain.colour = from;
  s->drain.started_at = now;
  s->drain.deadline = now + s->params.drain_timeout_ms;
  out->flags |= SW_SWITCH_ACT_FLIP;
  out->flip_to = to;
  text_printf(text, sizeof(text), "%s; draining %s", rb->message,
              colour_name(from));
  transition(s, now, SW_SWITCH_ROLLED_BACK, SW_SWITCH_R_ROLLBACK, to, text,
             out);
  return SW_SWITCH_R_NONE;
}

sw_switch_reason_t sw_switch_migrated(sw_switch_t *s,
                                      uint64_t now,
                                      int ok,
                                      const char *text,
                                      sw_switch_actions_t *out) {
  sw_switch_gate_t *g = &s->gate;
  char msg[SW_SWITCH_MESSAGE];

  actions_clear(out);
  if (check_deadlines(s, now, out) || s->phase != SW_SWITCH_MIGRATING)
    return SW_SWITCH_R_NOT_MIGRATING;
  if (!ok) {
    text_printf(msg, sizeof(msg), "migration for %s failed: %s",
                colour_name(g->target),
                text && text[0] ? text : "no detail given");
    gate_end(s, now, SW_SWITCH_R_MIGRATION_FAILED, msg, out);
    return SW_SWITCH_R_NONE;
  }
  text_printf(
      msg, sizeof(msg), "migration for %s done after %llu ms%s%s; re-checking",
      colour_name(g->target), (unsigned long long)(now - g->migrating_at),
      text && text[0] ? ": " : "", text ? text : "");
  recheck_start(s, now, SW_SWITCH_R_MIGRATED, msg, out);
  return SW_SWITCH_R_NONE;
}

void sw_switch_hold_expired(sw_switch_t *s,
                            uint64_t now,
                            sw_switch_actions_t *out) {
  char msg[SW_SWITCH_MESSAGE];

  actions_clear(out);
  if (check_deadlines(s, now, out) || !gate_running(s) || !s->gate.migrate)
    return;
  text_printf(msg, sizeof(msg),
              "the hold ran out during %s: held requests went to %s; the "
              "cutover to %s did not happen",
              phase_names[s->phase], colour_name(s->live),
              colour_name(s->gate.target));
  gate_end(s, now, SW_SWITCH_R_HOLD_EXPIRED, msg, out);
}

sw_switch_reason_t sw_switch_rollback_migrate(sw_switch_t *s,
                                              uint64_t now,
                                              sw_switch_rollback_mode_t mode,
                                              const char *trigger,
                                              const char *why,
                                              sw_switch_actions_t *out) {
  sw_switch_rollback_t *rb = &s->last_rollback;
  sw_colour_t from = s->live, to = other_colour(s->live);
  sw_switch_reason_t refused;
  char text[SW_SWITCH_TEXT];

  actions_clear(out);
  check_deadlines(s, now, out);
  if ((out->flags & SW_SWITCH_ACT_CANCEL_DRAIN) && out->cancel == to)
    out->flags &= ~SW_SWITCH_ACT_CANCEL_DRAIN;
  if (s->phase == SW_SWITCH_ROLLBACK_MIGRATING)
    return SW_SWITCH_R_IN_PROGRESS;
  refused = rollback_allowed(s, now, mode);
  if (refused != SW_SWITCH_R_NONE)
    return refused;
  if (!s->params.rollback_migrate)
    return SW_SWITCH_R_NOT_READY;
  memset(rb, 0, sizeof(*rb));
  rb->valid = 1;
  rb->mode = mode;
  rb->from = from;
  rb->to = to;
  rb->at = now;
  text_copy(rb->trigger, sizeof(rb->trigger), trigger ? trigger : "operator");
  text_printf(rb->message, sizeof(rb->message),
              "rollback to %s (%s): running the reverse migration under the "
              "hold first (%s)",
              colour_name(to), sw_switch_rollback_mode_name(mode),
              why ? why : rb->trigger);
  out->flags |= SW_SWITCH_ACT_HOLD | SW_SWITCH_ACT_MIGRATE_BACK;
  text_copy(text, sizeof(text), rb->message);
  transition(s, now, SW_SWITCH_ROLLBACK_MIGRATING, SW_SWITCH_R_ROLLBACK_MIGRATE,
             to, text, out);
  return SW_SWITCH_R_NONE;
}

void sw_switch_rollback_migrated(sw_switch_t *s,
                                 uint64_t now,
                                 int ok,
                                 const char *text,
                                 sw_switch_actions_t *out) {
  actions_clear(out);
  if (s->phase == SW_SWITCH_ROLLBACK_MIGRATING && !ok)
    migrate_back_blocked(s, now, text, out);
}

sw_switch_reason_t sw_switch_commit(sw_switch_t *s,
                                    uint64_t now,
                                    const char *who,
                                    sw_switch_actions_t *out) {
  char name[SW_SWITCH_WHO], text[SW_SWITCH_TEXT];

  actions_clear(out);
  check_deadlines(s, now, out);
  if (s->phase != SW_SWITCH_WATCHING &&
      s->phase != SW_SWITCH_COMMITTED_MANUAL &&
      s->phase != SW_SWITCH_ROLLBACK_BLOCKED)
    return SW_SWITCH_R_NOT_WATCHING;
  text_copy(name, sizeof(name), who ? who : "operator");
  text_printf(text, sizeof(text), "%s committed by %s during %s",
              colour_name(s->live), name, phase_names[s->phase]);
  transition(s, now, SW_SWITCH_FINAL, SW_SWITCH_R_COMMITTED, s->live, text,
             out);
  return SW_SWITCH_R_NONE;
}

void sw_switch_on_health(sw_switch_t *s,
                         uint64_t now,
                         sw_colour_t c,
                         int pass,
                         uint64_t started_at,
                         const char *reason,
                         sw_switch_actions_t *out) {
  sw_switch_gate_t *g = &s->gate;

  actions_clear(out);
  if (check_deadlines(s, now, out) || !gate_running(s) || c != g->target)
    return;

  if (s->phase == SW_SWITCH_GATING) {
    if (!pass) {
      g->passes = 0;
      text_copy(g->last_failure, sizeof(g->last_failure),
                reason && reason[0] ? reason : "failed");
    } else if (started_at >= g->requested_at) {
      g->passes++;
      gate_try_pass(s, now, out);
    }
    return;
  }
  /* While the migration runs the target's health says little (it may be
   * failing on the schema it waits for): the re-check after it decides. */
  if (s->phase == SW_SWITCH_MIGRATING)
    return;

  /* Rechecking. */
  if (!pass) {
    char msg[SW_SWITCH_MESSAGE];
    text_printf(msg, sizeof(msg),
                "%s failed a health check at the re-check: %s",
                colour_name(g->target),
                reason && reason[0] ? reason : "no reason given");
    gate_end(s, now, SW_SWITCH_R_PROBE_FAILED, msg, out);
  } else if (started_at >= g->recheck_at) {
    g->probe_ok = 1;
    recheck_try_flip(s, now, out);
  }
}

void sw_switch_on_colour_health(sw_switch_t *s,
                                uint64_t now,
                                sw_colour_t c,
                                int healthy,
                                const char *reason,
                                sw_switch_actions_t *out) {
  actions_clear(out);
  if (!colour_valid(c))
    return;
  /* The colour's state is kept in every phase: the next request needs it. */
  s->health[c] = healthy ? SW_SWITCH_HEALTH_UP : SW_SWITCH_HEALTH_DOWN;
  text_copy(s->health_reason[c], sizeof(s->health_reason[c]),
            healthy ? "" : reason);
  if (check_deadlines(s, now, out) || !gate_running(s) || c != s->live ||
      s->phase == SW_SWITCH_MIGRATING ||
      (s->phase == SW_SWITCH_RECHECKING && s->gate.migrate))
    return;
  if (!healthy) {
    char msg[SW_SWITCH_MESSAGE];
    text_printf(msg, sizeof(msg), "live %s became unhealthy: %s",
                colour_name(c),
                reason && reason[0] ? reason : "no reason given");
    gate_end(s, now, SW_SWITCH_R_LIVE_UNHEALTHY, msg, out);
    return;
  }
  gate_try_pass(s, now, out);
  recheck_try_flip(s, now, out);
}

void sw_switch_on_verify(sw_switch_t *s,
                         uint64_t now,
                         sw_colour_t c,
                         sw_switch_verify_t result,
                         uint64_t started_at,
                         const char *message,
                         sw_switch_actions_t *out) {
  sw_switch_gate_t *g = &s->gate;
  char msg[SW_SWITCH_MESSAGE];
  const char *detail = message && message[0] ? message : "no detail given";

  actions_clear(out);
  if (check_deadlines(s, now, out) || !gate_running(s))
    return;
  /* The live colour's answer, for a rollback: any result will do. */
  if (c == s->live && c != g->target) {
    if (s->phase == SW_SWITCH_RECHECKING && started_at >= g->recheck_at) {
      g->old_checked = 1;
      recheck_try_flip(s, now, out);
    }
    return;
  }
  if (c != g->target)
    return;
  /* A verification from before the request says nothing about the schema
   * the operator asked about, whichever way it went; before a migration
   * has run, the target's schema is not expected to be there yet. */
  if (started_at < g->requested_at || s->phase == SW_SWITCH_MIGRATING ||
      (g->migrate && s->phase == SW_SWITCH_GATING))
    return;

  switch (result) {
    case SW_SWITCH_VERIFY_PASS:
      if (s->phase == SW_SWITCH_GATING) {
        g->verified = 1;
        gate_try_pass(s, now, out);
      } else if (started_at >= g->recheck_at) {
        g->recheck_verified = 1;
        recheck_try_flip(s, now, out);
      }
      return;
    case SW_SWITCH_VERIFY_FAIL:
      text_printf(msg, sizeof(msg), "%s verification failed: %s",
                  colour_name(c), detail);
      gate_end(s, now, SW_SWITCH_R_VERIFY_FAILED, msg, out);
      return;
    case SW_SWITCH_VERIFY_INCONCLUSIVE:
      break;
  }
  /* Inconclusive, and any value the verifier should never send: both end
   * the gate, neither may ever count as a pass. */
  text_printf(msg, sizeof(msg), "%s verification inconclusive: %s",
              colour_name(c), detail);
  gate_end(s, now, SW_SWITCH_R_VERIFY_INCONCLUSIVE, msg, out);
}

void sw_switch_on_inflight(sw_switch_t *s,
                           uint64_t now,
                           sw_colour_t c,
                           uint64_t inflight,
                           sw_switch_actions_t *out) {
  sw_switch_drain_t *d = &s->drain;

  actions_clear(out);
  check_windows(s, now, out);
  /* The last request finishing counts even after the deadline: nothing
   * was cancelled, so the drain is complete, not timed out. */
  if (d->active && c == d->colour) {
    d->inflight = inflight;
    d->inflight_known = 1;
    if (inflight == 0) {
      drain_end(s, now, SW_SWITCH_R_DRAINED, 0, out);
      return;
    }
  }
  check_deadlines(s, now, out);
}

void sw_switch_on_drain_cancelled(sw_switch_t *s,
                                  uint64_t now,
                                  sw_colour_t c,
                                  uint64_t cancelled,
                                  sw_switch_actions_t *out) {
  actions_clear(out);
  if (!s->drain.active || !s->drain.cancel_sent || c != s->drain.colour)
    return;
  drain_end(s, now, SW_SWITCH_R_DRAIN_TIMEOUT, cancelled, out);
}

void sw_switch_tick(sw_switch_t *s, uint64_t now, sw_switch_actions_t *out) {
  actions_clear(out);
  check_deadlines(s, now, out);
}

static uint64_t earliest(uint64_t a, uint64_t b) {
  return a == 0 ? b : b == 0 ? a : a < b ? a : b;
}

uint64_t sw_switch_next_deadline(const sw_switch_t *s) {
  uint64_t t = s->drain.active ? s->drain.deadline : 0;

  switch (s->phase) {
    case SW_SWITCH_GATING:
    case SW_SWITCH_MIGRATING:
      return earliest(t, s->gate.deadline);
    case SW_SWITCH_RECHECKING:
      return earliest(t, earliest(s->gate.recheck_deadline, s->gate.deadline));
    case SW_SWITCH_WATCHING:
      return earliest(t, s->flip_at + s->watch_auto_ms);
    case SW_SWITCH_COMMITTED_MANUAL:
      return earliest(t, s->flip_at + s->watch_manual_ms);
    default:
      return t;
  }
}

uint64_t sw_switch_version(const sw_switch_t *s) {
  return s->version;
}

size_t sw_switch_history_count(const sw_switch_t *s) {
  return s->nhistory;
}

const sw_switch_event_t *sw_switch_history_at(const sw_switch_t *s, size_t i) {
  return i < s->nhistory ? &s->history[i] : NULL;
}

const char *sw_switch_phase_name(sw_switch_phase_t p) {
  return (unsigned)p < SW_SWITCH_PHASES ? phase_names[p] : "unknown";
}

const char *sw_switch_reason_name(sw_switch_reason_t r) {
  return (unsigned)r < SW_SWITCH_REASONS ? reason_names[r] : "unknown";
}

const char *sw_switch_outcome_name(sw_switch_outcome_t o) {
  switch (o) {
    case SW_SWITCH_OUTCOME_NONE:
      return "none";
    case SW_SWITCH_OUTCOME_PASSED:
      return "passed";
    case SW_SWITCH_OUTCOME_FAILED:
      return "failed";
    case SW_SWITCH_OUTCOME_INCONCLUSIVE:
      return "inconclusive";
  }
  return "unknown";
}

const char *sw_switch_health_name(sw_switch_health_t h) {
  switch (h) {
    case SW_SWITCH_HEALTH_UNKNOWN:
      return "unknown";
    case SW_SWITCH_HEALTH_UP:
      return "healthy";
    case SW_SWITCH_HEALTH_DOWN:
      return "unhealthy";
  }
  return "unknown";
}

const char *sw_switch_rollback_mode_name(sw_switch_rollback_mode_t m) {
  switch (m) {
    case SW_SWITCH_ROLLBACK_AUTO:
      return "auto";
    case SW_SWITCH_ROLLBACK_MANUAL:
      return "manual";
    case SW_SWITCH_ROLLBACK_CONFIRM:
      return "confirm";
    case SW_SWITCH_ROLLBACK_FORCE:
      return "force";
  }
  return "unknown";
}

const char *sw_switch_action_name(unsigned action) {
  switch (action) {
    case SW_SWITCH_ACT_VERIFY:
      return "verify";
    case SW_SWITCH_ACT_PROBE:
      return "probe";
    case SW_SWITCH_ACT_FLIP:
      return "flip";
    case SW_SWITCH_ACT_CANCEL_DRAIN:
      return "cancel_drain";
    case SW_SWITCH_ACT_PERSIST:
      return "persist";
    case SW_SWITCH_ACT_WATCH:
      return "watch";
    case SW_SWITCH_ACT_HOLD:
      return "hold";
    case SW_SWITCH_ACT_MIGRATE_BACK:
      return "migrate_back";
  }
  return "unknown";
}

int sw_switch_phase_parse(const char *name, sw_switch_phase_t *p) {
  for (unsigned i = 0; name != NULL && i < SW_SWITCH_PHASES; i++) {
    if (strcmp(name, phase_names[i]) == 0) {
      *p = (sw_switch_phase_t)i;
      return 0;
    }
  }
  return SW_EPARSE;
}

sw_switch_outcome_t sw_switch_reason_outcome(sw_switch_reason_t r) {
  switch (r) {
    case SW_SWITCH_R_FLIPPED:
      return SW_SWITCH_OUTCOME_PASSED;
    /* The gate's own evidence said no. */
    case SW_SWITCH_R_VERIFY_FAILED:
    case SW_SWITCH_R_LIVE_UNHEALTHY:
    case SW_SWITCH_R_PROBE_FAILED:
    case SW_SWITCH_R_MIGRATION_FAILED:
      return SW_SWITCH_OUTCOME_FAILED;
    /* Ended by something other than its evidence: never a pass. */
    case SW_SWITCH_R_OPERATOR:
    case SW_SWITCH_R_TIMEOUT:
    case SW_SWITCH_R_RECHECK_TIMEOUT:
    case SW_SWITCH_R_VERIFY_INCONCLUSIVE:
    case SW_SWITCH_R_RESTART:
    case SW_SWITCH_R_HOLD_EXPIRED:
      return SW_SWITCH_OUTCOME_INCONCLUSIVE;
    default:
      return SW_SWITCH_OUTCOME_NONE;
  }
}
