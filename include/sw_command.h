/* A shell command run by switchd itself: the reverse migration of a
 * rollback (cutover section, rollback_migrate). It runs as `/bin/sh -c
 * CMD` in a session of its own, with stdin from /dev/null; each line of its
 * output (stdout and stderr together) is logged at info level under the
 * caller's tag, and the last lines are kept for the result. A deadline
 * kills its whole process group. The callback fires exactly once per
 * successful start, from the loop, after the process has exited and every
 * handle is closed. */
#ifndef SW_COMMAND_H
#define SW_COMMAND_H

#include <stdint.h>
#include <uv.h>

/* Bytes of output kept for the result (the end of it). */
#define SW_COMMAND_TAIL 1024

typedef struct sw_command_s sw_command_t;

typedef struct sw_command_result_s {
  int64_t exit_status; /* -1 when killed by a signal */
  int term_signal;     /* 0 when it exited */
  int timed_out;       /* killed at the deadline */
  uint64_t elapsed_ms;
  const char *tail; /* the end of its output, one line per line; valid
                     * only during the callback */
} sw_command_result_t;

typedef void (*sw_command_cb)(const sw_command_result_t *r, void *data);

/* Starts cmd. Returns 0, or a negative UV_E* error (the spawn failed;
 * the callback will not run). */
int sw_command_start(uv_loop_t *loop,
                     const char *cmd,
                     uint64_t timeout_ms,
                     const char *tag,
                     sw_command_cb cb,
                     void *data,
                     sw_command_t **out);
/* Kills the process group now (at shutdown); the callback still fires. */
void sw_command_kill(sw_command_t *c);

#endif
