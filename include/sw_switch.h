/* The cutover state machine (DESIGN §4): which colour is live, which phase
 * the switch is in, and what must happen next. This module owns those
 * decisions and nothing else. It is pure: it never does I/O, never reads a
 * clock, never touches libuv and holds no globals. The caller feeds it
 * events (a request, a health result, a verification result, an in-flight
 * count, a timer tick), each carrying the current time in ms, and performs
 * the actions it hands back (start a verification, run a probe, flip, cancel
 * a drain, persist). That keeps every rule of the cutover testable in a unit
 * test, and lets the flip happen in the same loop turn as the call that saw
 * the last piece of evidence.
 *
 * Phases:
 *
 *   steady      live colour serves; nothing in progress.
 *   gating      a cutover to the target was accepted. It passes when the
 *               target has `rise` passing health checks in a row, a
 *               verification of its schema has passed, and the live colour
 *               is healthy. The deadline, a failed or inconclusive
 *               verification, an unhealthy live colour or an operator abort
 *               end it in steady with nothing changed.
 *   rechecking  the gate passed; one more probe and one more verification of
 *               the target, both started after entering this phase, must
 *               pass before the flip. Any failure ends it like a gate.
 *   draining    flipped without a watch (params.watch off): the target is
 *               live; the old colour's in-flight requests finish, up to
 *               drain_timeout, then are cancelled. Then steady with the new
 *               live colour.
 *
 * With the error watch (params.watch, the default) the flip enters the
 * watch phases instead, and the old colour drains alongside (the drain is
 * kept in its own struct, and its end is recorded as a transition from a
 * phase to itself):
 *
 *   watching          [flip, flip + auto_window): the caller's error watch
 *                     is armed (ACT_WATCH); a trigger rolls back at once
 *                     (sw_switch_rollback, mode AUTO), as may an operator.
 *   committed_manual  [flip + auto_window, flip + manual_window): triggers
 *                     only alert; a rollback needs CONFIRM (or FORCE).
 *   final             after the manual window or an operator's commit: the
 *                     cutover stands; a rollback needs FORCE.
 *   rolled_back       the rollback flipped back. Latched: only an
 *                     operator's new cutover leaves it.
 *   rollback_blocked  a trigger fired but the old colour could not take
 *                     the traffic (down, or its schema requirements fail):
 *                     the new colour keeps serving until an operator rolls
 *                     back (once the old colour is ready) or commits.
 *
 * Across a migration the old code cannot survive (DESIGN §4, the hold):
 *
 *   migrating           a cutover requested with SW_SWITCH_REQ_MIGRATE
 *                       passed a gate of liveness only (the target's
 *                       schema is not there yet): HOLD tells the caller to
 *                       hold new requests while the operator migrates.
 *                       sw_switch_migrated(ok) goes on to rechecking (the
 *                       verification there is what admits the target) or
 *                       ends the gate (MIGRATION_FAILED); the hold running
 *                       out ends it too (HOLD_EXPIRED, inconclusive).
 *   rollback_migrating  a rollback found the old colour up but its schema
 *                       requirements failing, and the config names a
 *                       reverse migration (params.rollback_migrate):
 *                       HOLD and MIGRATE_BACK tell the caller to hold and
 *                       run it. Afterwards the caller verifies the old
 *                       colour and calls sw_switch_rollback, which flips
 *                       or blocks; sw_switch_rollback_migrated(0) blocks.
 *
 * A new cutover is accepted from steady, final and rolled_back once no
 * drain is running.
 *
 * "Aborted" is a result, not a phase: a gate that ends without flipping goes
 * back to steady, and sw_switch_t.last_gate says why. A gate that ends for
 * any reason other than its own evidence (deadline, operator, restart,
 * database unreachable) is inconclusive, never a pass: no timer ever turns
 * a gate into a flip.
 *
 * Evidence rules (what "no stale pass" means):
 *   - A pass counts only if it started at or after the point it vouches for:
 *     the request for gating, the entry into rechecking for the re-check.
 *     Every result carries the time its probe or query started.
 *     Starting in the same ms counts: the caller's clock is read once per
 *     loop turn, and work started in a turn does its I/O after that turn.
 *   - A failing health check of the target always counts (it resets the
 *     count in gating and aborts in rechecking): caution can only delay.
 *   - A failed or inconclusive verification ends the gate only if it started
 *     at or after the request: one from before may describe a schema the
 *     operator has migrated since.
 *   - Every event first checks the deadlines, so a pass that arrives after
 *     the deadline (a late tick) finds the gate already timed out.
 *
 * Times are the caller's milliseconds (uv_now() in switchd), stored as given
 * in the transition records; the caller converts them to wall-clock time
 * when it logs or persists a record.
 *
 * Usage: every call that takes `out` first clears it; the caller then
 * performs the actions in this order: FLIP (an assignment of the live
 * colour, in this loop turn), CANCEL_DRAIN (then reports the count with
 * sw_switch_on_drain_cancelled), PROBE and VERIFY (reporting their results
 * later with sw_switch_on_health and sw_switch_on_verify), and last PERSIST
 * (write the state file, which must hold the new phase); each of
 * out->events is one transition to log and append to the persisted
 * history. The caller feeds the old colour's in-flight count right after a
 * flip and whenever it changes, and calls sw_switch_tick when the time of
 * sw_switch_next_deadline() comes. */
#ifndef SW_SWITCH_H
#define SW_SWITCH_H

#include <stddef.h>
#include <stdint.h>

#include "sw_types.h"

/* Bound on a transition record's text: what the state file keeps of a
 * reason (SW_STATE_TEXT), so a record persists without a second cut. */
#define SW_SWITCH_TEXT 160
/* Bound on the message of the last gate result: room for a verification
 * that lists several missing migrations. */
#define SW_SWITCH_MESSAGE 512
/* Bound on the name of whoever asked ("uid 1000 (pid 42)"). */
#define SW_SWITCH_WHO 64
/* The in-machine ring serves status and the event stream; the longer
 * history lives in the state file. */
#define SW_SWITCH_HISTORY_MAX 64
/* Transitions one call can produce: a request that finds a dead gate (1),
 * starts a new one (2) and aborts it at once because the live colour is down
 * (3). One slot to spare. */
#define SW_SWITCH_EVENTS_MAX 4

#define SW_SWITCH_DEFAULT_RISE 3
#define SW_SWITCH_DEFAULT_GATE_TIMEOUT_MS (10 * 60 * 1000)
/* The design asks for a re-check "within the last second". The probe alone
 * may take the health timeout (1 s) and runs alongside the verification, so
 * the default bound leaves 1 s for the query. */
#define SW_SWITCH_DEFAULT_RECHECK_TIMEOUT_MS 2000
#define SW_SWITCH_DEFAULT_DRAIN_TIMEOUT_MS (30 * 1000)
#define SW_SWITCH_DEFAULT_HISTORY 16
#define SW_SWITCH_DEFAULT_AUTO_WINDOW_MS (5 * 60 * 1000)
#define SW_SWITCH_DEFAULT_MANUAL_WINDOW_MS (30 * 60 * 1000)

/* The names of these values (sw_switch_phase_name) are stable: JSON, metric
 * labels and the state file use them. */
typedef enum sw_switch_phase_e {
  SW_SWITCH_STEADY = 0,
  SW_SWITCH_GATING,
  SW_SWITCH_RECHECKING,
  SW_SWITCH_DRAINING,
  /* The error watch and rollback. */
  SW_SWITCH_WATCHING,
  SW_SWITCH_COMMITTED_MANUAL,
  SW_SWITCH_FINAL,
  SW_SWITCH_ROLLED_BACK,
  SW_SWITCH_ROLLBACK_BLOCKED,
  /* Migrations under the hold barrier. */
  SW_SWITCH_MIGRATING,
  SW_SWITCH_ROLLBACK_MIGRATING,
} sw_switch_phase_t;

#define SW_SWITCH_PHASES (SW_SWITCH_ROLLBACK_MIGRATING + 1)

/* Why a request or an abort was refused, or why a transition happened. One
 * enum so that a record, a refusal and a status field share one vocabulary. */
typedef enum sw_switch_reason_e {
  SW_SWITCH_R_NONE = 0, /* accepted; or no transition yet */
  /* Refusals: nothing changed. */
  SW_SWITCH_R_INVALID,       /* the colour is neither blue nor green */
  SW_SWITCH_R_ALREADY_LIVE,  /* the target is the live colour */
  SW_SWITCH_R_IN_PROGRESS,   /* another cutover (or its drain) is running */
  SW_SWITCH_R_NO_SERVERS,    /* the target colour has no server configured */
  SW_SWITCH_R_NOT_GATING,    /* abort: no gate to abort */
  SW_SWITCH_R_WATCHING,      /* a watch runs: commit or roll back first */
  SW_SWITCH_R_NOT_WATCHING,  /* commit or rollback: nothing to act on */
  SW_SWITCH_R_NEEDS_CONFIRM, /* rollback in the manual window */
  SW_SWITCH_R_NEEDS_FORCE,   /* rollback after the windows */
  SW_SWITCH_R_ALREADY_ROLLED_BACK,
  SW_SWITCH_R_NOT_READY, /* the old colour cannot take the traffic */
  /* Transitions of a cutover that goes on. */
  SW_SWITCH_R_REQUESTED,     /* steady -> gating */
  SW_SWITCH_R_GATE_PASSED,   /* gating -> rechecking */
  SW_SWITCH_R_FLIPPED,       /* rechecking -> draining */
  SW_SWITCH_R_DRAINED,       /* draining -> steady: nothing left in flight */
  SW_SWITCH_R_DRAIN_TIMEOUT, /* draining -> steady: the rest was cancelled */
  /* Ends of a gate (gating or rechecking -> steady, nothing changed). */
  SW_SWITCH_R_OPERATOR,            /* aborted by an operator */
  SW_SWITCH_R_TIMEOUT,             /* the gate deadline was reached */
  SW_SWITCH_R_RECHECK_TIMEOUT,     /* the re-check took too long */
  SW_SWITCH_R_VERIFY_FAILED,       /* the schema lacks what the target needs */
  SW_SWITCH_R_VERIFY_INCONCLUSIVE, /* the database could not answer */
  SW_SWITCH_R_LIVE_UNHEALTHY,      /* nothing healthy to roll back to */
  SW_SWITCH_R_PROBE_FAILED,        /* the target failed a check at re-check */
  SW_SWITCH_R_RESTART,             /* the process restarted mid-cutover */
  SW_SWITCH_R_CONFIG,              /* the config file named a new live colour */
  /* The watch and rollback. */
  SW_SWITCH_R_AUTO_WINDOW_END,   /* watching -> committed_manual */
  SW_SWITCH_R_MANUAL_WINDOW_END, /* committed_manual -> final */
  SW_SWITCH_R_COMMITTED,         /* an operator's commit -> final */
  SW_SWITCH_R_ROLLBACK,          /* -> rolled_back: flipped back */
  SW_SWITCH_R_ROLLBACK_BLOCKED,  /* -> rollback_blocked */
  /* The hold barrier. */
  SW_SWITCH_R_NOT_MIGRATING,    /* migrated: no migrating phase to end */
  SW_SWITCH_R_MIGRATED,         /* migrating -> rechecking */
  SW_SWITCH_R_MIGRATION_FAILED, /* migrating -> steady: the command failed */
  SW_SWITCH_R_HOLD_EXPIRED,     /* the hold ran out before the flip */
  SW_SWITCH_R_ROLLBACK_MIGRATE, /* -> rollback_migrating */
} sw_switch_reason_t;

#define SW_SWITCH_REASONS (SW_SWITCH_R_ROLLBACK_MIGRATE + 1)

/* Who asks for a rollback, which decides where it is allowed. */
typedef enum sw_switch_rollback_mode_e {
  SW_SWITCH_ROLLBACK_AUTO = 0, /* a trigger fired: watching only */
  SW_SWITCH_ROLLBACK_MANUAL,   /* an operator: watching, and rollback_blocked
                                * within the auto window */
  SW_SWITCH_ROLLBACK_CONFIRM,  /* --confirm: also committed_manual, and
                                * rollback_blocked within the manual window */
  SW_SWITCH_ROLLBACK_FORCE,    /* --force: also final and after a flip */
} sw_switch_rollback_mode_t;

/* How a gate ended. */
typedef enum sw_switch_outcome_e {
  SW_SWITCH_OUTCOME_NONE = 0,     /* no gate has ended yet */
  SW_SWITCH_OUTCOME_PASSED,       /* it flipped */
  SW_SWITCH_OUTCOME_FAILED,       /* its own evidence said no */
  SW_SWITCH_OUTCOME_INCONCLUSIVE, /* ended by something else; never a pass */
} sw_switch_outcome_t;

/* The colour-level health the caller derives from its checks. */
typedef enum sw_switch_health_e {
  SW_SWITCH_HEALTH_UNKNOWN = 0, /* no verdict yet: a gate waits for one */
  SW_SWITCH_HEALTH_UP,
  SW_SWITCH_HEALTH_DOWN,
} sw_switch_health_t;

/* A verification result, as the verifier reports it. */
typedef enum sw_switch_verify_e {
  SW_SWITCH_VERIFY_PASS = 0,
  SW_SWITCH_VERIFY_FAIL,         /* the message lists what is missing */
  SW_SWITCH_VERIFY_INCONCLUSIVE, /* unreachable or timed out: libpq's error */
} sw_switch_verify_t;

/* Actions, as bits of sw_switch_actions_t.flags; the colour each one is
 * about is in the field of the same name. */
#define SW_SWITCH_ACT_VERIFY (1u << 0) /* verify `verify`'s schema needs */
#define SW_SWITCH_ACT_PROBE (1u << 1)  /* run one health probe of `probe` */
#define SW_SWITCH_ACT_FLIP (1u << 2)   /* live = flip_to, in this loop turn */
#define SW_SWITCH_ACT_CANCEL_DRAIN (1u << 3) /* cancel `cancel`'s in-flight */
#define SW_SWITCH_ACT_PERSIST (1u << 4)      /* write the state file */
/* Arm the error watch on flip_to, with the machine's watch_auto_ms and
 * watch_manual_ms windows from flip_at. */
#define SW_SWITCH_ACT_WATCH (1u << 5)
/* Hold new requests (sw_hold_start): a migration is about to run. */
#define SW_SWITCH_ACT_HOLD (1u << 6)
/* Run the config's rollback_migrate command, then report it with
 * sw_switch_rollback_migrated or (after verifying) sw_switch_rollback. */
#define SW_SWITCH_ACT_MIGRATE_BACK (1u << 7)

/* Flags of sw_switch_request_ex. */
#define SW_SWITCH_REQ_MIGRATE 0x1u /* gate on liveness, then migrating */

/* One transition: what the caller logs and keeps in the history. */
typedef struct sw_switch_event_s {
  uint64_t at;      /* the caller's time of the transition, ms */
  uint64_t version; /* the state version after it */
  sw_switch_phase_t from;
  sw_switch_phase_t to;
  sw_switch_reason_t reason;
  sw_colour_t live;          /* the live colour after it */
  sw_colour_t target;        /* the colour the cutover was about */
  char text[SW_SWITCH_TEXT]; /* one line of valid UTF-8, for people */
} sw_switch_event_t;

typedef struct sw_switch_actions_s {
  unsigned flags; /* SW_SWITCH_ACT_* */
  sw_colour_t verify;
  sw_colour_t probe;
  sw_colour_t flip_to;
  sw_colour_t cancel;
  size_t nevents;
  sw_switch_event_t events[SW_SWITCH_EVENTS_MAX]; /* oldest first */
} sw_switch_actions_t;

typedef struct sw_switch_params_s {
  /* Passing checks in a row the target needs, per colour because each
   * upstream section has its own health_rise. 0 counts as 1: a gate always
   * needs at least one fresh pass. */
  unsigned rise[SW_COLOURS];
  uint64_t gate_timeout_ms;
  uint64_t recheck_timeout_ms; /* 0: bounded by the gate deadline only */
  uint64_t drain_timeout_ms;
  size_t history; /* transitions kept in the ring; at most HISTORY_MAX */
  int watch;      /* a flip arms the watch: the watch phases */
  /* With the watch on, a flip away from a colour that has schema
   * requirements waits until a verification of it, started at the
   * re-check, has finished (whatever its result): that answer is what an
   * automatic rollback decides on, so it must be there at the flip. The
   * caller starts it along with the re-check's VERIFY. */
  int verify_old[SW_COLOURS];
  uint64_t auto_window_ms;
  uint64_t manual_window_ms; /* from the flip; below auto: taken as auto */
  /* A reverse migration is configured: a rollback blocked only by the old
   * colour's schema runs it (rollback_migrating) instead of blocking. */
  int rollback_migrate;
} sw_switch_params_t;

/* What the state file records of the machine (DESIGN §10). */
typedef struct sw_switch_persisted_s {
  sw_colour_t live;
  sw_switch_phase_t phase;
  uint64_t flip_at; /* 0 when never flipped */
  uint64_t version;
  uint64_t auto_window_ms; /* the watch's, as armed; 0: the params' */
  uint64_t manual_window_ms;
} sw_switch_persisted_t;

/* The gate in progress (gating and rechecking). */
typedef struct sw_switch_gate_s {
  sw_colour_t target;
  uint64_t requested_at;
  uint64_t deadline;
  unsigned rise;       /* captured at the request: a reload does not move it */
  unsigned passes;     /* fresh passes in a row */
  int verified;        /* a fresh verification passed */
  uint64_t recheck_at; /* when rechecking began */
  uint64_t recheck_deadline;
  int probe_ok;          /* the re-check probe passed */
  int recheck_verified;  /* the re-check verification passed */
  int old_checked;       /* the live colour's verification finished */
  int migrate;           /* SW_SWITCH_REQ_MIGRATE: liveness, then migrating */
  uint64_t migrating_at; /* when migrating began */
  char who[SW_SWITCH_WHO];
  char last_failure[SW_SWITCH_TEXT]; /* the target's, for the deadline text */
} sw_switch_gate_t;

/* The drain in progress. Kept apart from the phase because with the error
 * watch the old colour drains while the new one is watched. */
typedef struct sw_switch_drain_s {
  int active;
  sw_colour_t colour; /* the old colour */
  uint64_t started_at;
  uint64_t deadline;
  uint64_t inflight; /* as last fed; meaningful once inflight_known */
  int inflight_known;
  int cancel_sent; /* CANCEL_DRAIN was handed out; waiting for the count */
} sw_switch_drain_t;

/* How the last gate ended, for status and switchctl's exit code. */
typedef struct sw_switch_result_s {
  sw_switch_outcome_t outcome;
  sw_switch_reason_t reason;
  sw_colour_t target;
  uint64_t at;
  char message[SW_SWITCH_MESSAGE];
} sw_switch_result_t;

/* How the last drain ended. */
typedef struct sw_switch_drain_result_s {
  int valid; /* a drain has ended */
  sw_colour_t colour;
  sw_switch_reason_t reason; /* DRAINED, DRAIN_TIMEOUT or RESTART */
  uint64_t started_at;
  uint64_t ended_at;
  uint64_t cancelled; /* requests cancelled at the drain deadline */
} sw_switch_drain_result_t;

/* The last rollback, for status. */
typedef struct sw_switch_rollback_s {
  int valid;
  int blocked; /* the phase became rollback_blocked instead */
  sw_switch_rollback_mode_t mode;
  sw_colour_t from; /* the colour rolled back from */
  sw_colour_t to;
  uint64_t at;
  char trigger[16];                /* "r1" .. "r4", "operator" */
  char message[SW_SWITCH_MESSAGE]; /* why, and why blocked */
} sw_switch_rollback_t;

/* The machine. A plain struct the caller embeds; every field is readable
 * (status and metrics read them), and only sw_switch_* calls change them. */
typedef struct sw_switch_s {
  sw_switch_params_t params;
  sw_switch_phase_t phase;
  sw_colour_t live;
  uint64_t version; /* +1 on every change of phase or live colour */
  uint64_t flip_at; /* time of the last flip; 0 when never flipped */
  sw_switch_health_t health[SW_COLOURS];
  char health_reason[SW_COLOURS][SW_SWITCH_TEXT];
  sw_switch_gate_t gate;
  sw_switch_drain_t drain;
  sw_switch_result_t last_gate;
  sw_switch_drain_result_t last_drain;
  /* The watch windows of the last flip, as armed. */
  uint64_t watch_auto_ms;
  uint64_t watch_manual_ms;
  sw_switch_rollback_t last_rollback;
  /* Counters for metrics, since the machine was initialised. */
  uint64_t flips;
  uint64_t gates[SW_SWITCH_OUTCOME_INCONCLUSIVE + 1]; /* by outcome */
  uint64_t drain_cancelled;                           /* requests, total */
  uint64_t rollbacks;                                 /* flips back */
  uint64_t rollbacks_blocked; /* triggers that found no way back */
  /* Recent transitions, oldest first. */
  sw_switch_event_t history[SW_SWITCH_HISTORY_MAX];
  size_t nhistory;
} sw_switch_t;

/* Fills p with the defaults of DESIGN §9. */
void sw_switch_params_default(sw_switch_params_t *p);

/* Starts steady with `live` (a valid colour) and version 1. p NULL: the
 * defaults. */
void sw_switch_init(sw_switch_t *s,
                    sw_colour_t live,
                    const sw_switch_params_t *p);

/* Starts from what the state file recorded. A gate in progress is restored
 * as steady with the recorded live colour, its result inconclusive (reason
 * RESTART); a drain is restored as steady too (the old colour's requests
 * died with the process). The watch phases resume with their windows
 * counted from the recorded flip (whatever ran out while the process was
 * down moves on at once, in this call); final, rolled_back and
 * rollback_blocked resume as they were. The version continues from the recorded
 * one. Returns 0, or SW_ECONFIG when st holds a colour or phase that does not
 * exist (the caller reports the file as corrupt). */
int sw_switch_restore(sw_switch_t *s,
                      uint64_t now,
                      const sw_switch_params_t *p,
                      const sw_switch_persisted_t *st,
                      sw_switch_actions_t *out);

/* What to persist. */
void sw_switch_snapshot(const sw_switch_t *s, sw_switch_persisted_t *st);

/* A reload: new values apply to the next gate or drain; the running ones
 * keep the rise and deadlines they started with. A smaller history drops
 * the oldest records. */
void sw_switch_set_params(sw_switch_t *s, const sw_switch_params_t *p);

/* A cutover to `target`, which has `target_servers` servers configured;
 * `who` names the caller for the record (NULL: "operator"). Returns
 * SW_SWITCH_R_NONE when accepted (phase gating, VERIFY of the target in
 * out), else the refusal: INVALID, IN_PROGRESS, ALREADY_LIVE or NO_SERVERS,
 * with nothing changed. An accepted gate whose live colour is already known
 * to be down ends at once (LIVE_UNHEALTHY), in the same call. */
sw_switch_reason_t sw_switch_request(sw_switch_t *s,
                                     uint64_t now,
                                     sw_colour_t target,
                                     size_t target_servers,
                                     const char *who,
                                     sw_switch_actions_t *out);

/* The same with flags: SW_SWITCH_REQ_MIGRATE gates on liveness only (rise
 * passes, the live colour healthy; no verification: the target's schema
 * comes with the migration), then moves to migrating with HOLD. */
sw_switch_reason_t sw_switch_request_ex(sw_switch_t *s,
                                        uint64_t now,
                                        sw_colour_t target,
                                        size_t target_servers,
                                        const char *who,
                                        unsigned flags,
                                        sw_switch_actions_t *out);

/* The operator's migration finished (ok: exit status 0), in migrating:
 * rechecking with PROBE and VERIFY, or the gate ends (MIGRATION_FAILED,
 * `text` says why). Returns NOT_MIGRATING elsewhere. */
sw_switch_reason_t sw_switch_migrated(sw_switch_t *s,
                                      uint64_t now,
                                      int ok,
                                      const char *text,
                                      sw_switch_actions_t *out);

/* The hold ran out (released to the live colour) while a migrate cutover
 * had not flipped: the gate ends, inconclusive (HOLD_EXPIRED). Nothing
 * elsewhere. */
void sw_switch_hold_expired(sw_switch_t *s,
                            uint64_t now,
                            sw_switch_actions_t *out);

/* A rollback that must first run the reverse migration: allowed where
 * sw_switch_rollback with `mode` would be and params.rollback_migrate is
 * set; phase rollback_migrating with HOLD and MIGRATE_BACK. Returns NONE,
 * or the refusal (NOT_READY when no reverse migration is configured). */
sw_switch_reason_t sw_switch_rollback_migrate(sw_switch_t *s,
                                              uint64_t now,
                                              sw_switch_rollback_mode_t mode,
                                              const char *trigger,
                                              const char *why,
                                              sw_switch_actions_t *out);

/* The reverse migration failed (ok 0: `text` says how): rollback_blocked.
 * With ok 1 nothing changes: the caller verifies and calls
 * sw_switch_rollback. */
void sw_switch_rollback_migrated(sw_switch_t *s,
                                 uint64_t now,
                                 int ok,
                                 const char *text,
                                 sw_switch_actions_t *out);

/* The operator changed `live` in the config file and reloaded: an
 * immediate switch without a gate, accepted only where a cutover would be
 * (returns IN_PROGRESS or WATCHING otherwise, ALREADY_LIVE when nothing
 * changes). Recorded with reason CONFIG, with FLIP and PERSIST in out; no drain
 * is tracked. */
sw_switch_reason_t sw_switch_set_live(sw_switch_t *s,
                                      uint64_t now,
                                      sw_colour_t live,
                                      sw_switch_actions_t *out);

/* An operator abort of the gate in progress (gating or rechecking): result
 * inconclusive, reason OPERATOR. Returns SW_SWITCH_R_NONE, or NOT_GATING
 * when there is no gate (after the flip, the way back is a rollback). */
sw_switch_reason_t sw_switch_abort(sw_switch_t *s,
                                   uint64_t now,
                                   const char *who,
                                   sw_switch_actions_t *out);

/* A rollback: live goes back to the other colour in this call (FLIP), the
 * colour rolled back from drains, and the phase becomes rolled_back. Where
 * a mode may act is listed with sw_switch_rollback_mode_t; elsewhere the
 * refusal is NEEDS_CONFIRM, NEEDS_FORCE, IN_PROGRESS (a gate runs: abort
 * it), ALREADY_ROLLED_BACK or NOT_WATCHING (never flipped). `not_ready`,
 * NULL when the other colour can take the traffic, says why it cannot:
 * then an AUTO rollback moves to rollback_blocked (returning
 * ROLLBACK_BLOCKED) and any other is refused with NOT_READY, nothing
 * changed. `trigger` ("r1".."r4", "operator") and `why` are recorded in
 * last_rollback and the transition. Returns SW_SWITCH_R_NONE when it
 * flipped. */
sw_switch_reason_t sw_switch_rollback(sw_switch_t *s,
                                      uint64_t now,
                                      sw_switch_rollback_mode_t mode,
                                      const char *trigger,
                                      const char *why,
                                      const char *not_ready,
                                      sw_switch_actions_t *out);

/* An operator's commit: the watch ends, the cutover stands (final).
 * Accepted in watching, committed_manual and rollback_blocked; else
 * NOT_WATCHING. */
sw_switch_reason_t sw_switch_commit(sw_switch_t *s,
                                    uint64_t now,
                                    const char *who,
                                    sw_switch_actions_t *out);

/* One health result of colour c (the caller's colour-level view of a round
 * of checks): pass or not, the time the check started, and why it failed. */
void sw_switch_on_health(sw_switch_t *s,
                         uint64_t now,
                         sw_colour_t c,
                         int pass,
                         uint64_t started_at,
                         const char *reason,
                         sw_switch_actions_t *out);

/* Colour c became healthy or unhealthy (rise/fall applied by the caller). */
void sw_switch_on_colour_health(sw_switch_t *s,
                                uint64_t now,
                                sw_colour_t c,
                                int healthy,
                                const char *reason,
                                sw_switch_actions_t *out);

/* A verification of colour c's requirements, started at started_at. */
void sw_switch_on_verify(sw_switch_t *s,
                         uint64_t now,
                         sw_colour_t c,
                         sw_switch_verify_t result,
                         uint64_t started_at,
                         const char *message,
                         sw_switch_actions_t *out);

/* Colour c has `inflight` requests in flight. */
void sw_switch_on_inflight(sw_switch_t *s,
                           uint64_t now,
                           sw_colour_t c,
                           uint64_t inflight,
                           sw_switch_actions_t *out);

/* The caller performed CANCEL_DRAIN on colour c and cancelled `cancelled`
 * requests: the drain ends (DRAIN_TIMEOUT) and the count is recorded.
 * Ignored unless CANCEL_DRAIN was handed out for this drain. */
void sw_switch_on_drain_cancelled(sw_switch_t *s,
                                  uint64_t now,
                                  sw_colour_t c,
                                  uint64_t cancelled,
                                  sw_switch_actions_t *out);

/* Time passes: ends what is past its deadline. A drain past its deadline
 * hands out CANCEL_DRAIN on every call until the count is reported. */
void sw_switch_tick(sw_switch_t *s, uint64_t now, sw_switch_actions_t *out);

/* The earliest deadline in force, to arm one timer for; 0 when none. */
uint64_t sw_switch_next_deadline(const sw_switch_t *s);

uint64_t sw_switch_version(const sw_switch_t *s);

/* The ring of recent transitions: i = 0 is the oldest; NULL past the end. */
size_t sw_switch_history_count(const sw_switch_t *s);
const sw_switch_event_t *sw_switch_history_at(const sw_switch_t *s, size_t i);

/* Stable lowercase names ("steady", "gating", "rechecking", "draining";
 * "operator", "timeout", ...); "unknown" for a value out of range. */
const char *sw_switch_phase_name(sw_switch_phase_t p);
const char *sw_switch_reason_name(sw_switch_reason_t r);
const char *sw_switch_outcome_name(sw_switch_outcome_t o);
const char *sw_switch_health_name(sw_switch_health_t h);
const char *sw_switch_rollback_mode_name(sw_switch_rollback_mode_t m);
/* The name of one SW_SWITCH_ACT_* bit ("verify", "probe", "flip",
 * "cancel_drain", "persist", "watch"). */
const char *sw_switch_action_name(unsigned action);

/* Parses a phase name, as read back from the state file. Returns 0 or
 * SW_EPARSE. */
int sw_switch_phase_parse(const char *name, sw_switch_phase_t *p);

/* How a gate that ended for reason r is classed. */
sw_switch_outcome_t sw_switch_reason_outcome(sw_switch_reason_t r);

#endif
