/* The persisted state file (DESIGN §10): the live colour, the phase, the
 * time of the last flip, the state version and the recent history of
 * transitions, as one JSON object. Writing is atomic (a temporary file,
 * fsync, rename, fsync of the directory), so a crash leaves either the old
 * file or the new one. Reading never guesses: a file that is not exactly
 * what this module writes is an error naming the file. These calls do
 * blocking file I/O; they run only on a state transition, never on the
 * request path. */
#ifndef SW_STATE_H
#define SW_STATE_H

#include <stddef.h>
#include <stdint.h>

#include "sw_types.h"

#define SW_STATE_TEXT 160 /* bound on a stored reason */

typedef struct sw_state_event_s {
  uint64_t time_ms; /* wall clock, ms since the epoch */
  char from[24];
  char to[24];
  char reason[SW_STATE_TEXT];
} sw_state_event_t;

/* The error watch as the state file keeps it (DESIGN §10): enough to resume
 * a watch with the time it has left after a restart. Times are wall clock,
 * ms since the epoch. Written as the object "watch" only when present; a
 * file without it (older, or never flipped) loads with present = 0. */
typedef struct sw_state_watch_s {
  int present;
  sw_colour_t colour; /* the watched colour */
  uint64_t flip_time_ms;
  uint64_t auto_window_ms; /* as armed */
  uint64_t manual_window_ms;
  int ended; /* ended early (commit or rollback) */
  uint64_t ended_time_ms;
  uint64_t requests; /* the watched colour's, since the flip */
  uint64_t errors;
  uint64_t baseline_requests;
  uint64_t baseline_errors;
  char fired[16]; /* "none", "fire" or "alert" */
  char rule[8];   /* "none", "r1" .. "r4" */
  uint64_t fired_time_ms;
  char text[SW_STATE_TEXT]; /* the fired verdict's text, or "" */
} sw_state_watch_t;

typedef struct sw_state_s {
  sw_colour_t live;
  char phase[24];
  uint64_t flip_time_ms;     /* 0 when never flipped */
  uint64_t version;          /* the state version mutations must carry */
  sw_state_event_t *history; /* oldest first */
  size_t nhistory;
  size_t max_history; /* set with sw_state_set_max once history exists */
  size_t cap;         /* entries allocated */
  sw_state_watch_t watch;
} sw_state_t;

/* Writes s to path atomically. Returns 0 or a negative errno, with a
 * message naming the file in err. */
int sw_state_save(const char *path,
                  const sw_state_t *s,
                  char *err,
                  size_t errlen);

/* Reads path into s (s->max_history bounds what is kept; history is
 * allocated and freed by sw_state_free). Returns 0 when loaded, 1 when the
 * file does not exist (a first start), or SW_ECONFIG for a file that
 * cannot be read or is not a valid state file, with "PATH: reason" in
 * err. */
int sw_state_load(const char *path, sw_state_t *s, char *err, size_t errlen);

/* Changes how many transitions are kept (a reload): the oldest beyond the
 * new bound are dropped. */
void sw_state_set_max(sw_state_t *s, size_t max);

/* Appends a transition, dropping the oldest past max_history. */
int sw_state_push(sw_state_t *s, const sw_state_event_t *e);

void sw_state_free(sw_state_t *s);

#endif
