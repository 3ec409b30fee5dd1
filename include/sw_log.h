/* Logging: a leveled error log whose lines carry a module tag and a
 * connection id, and an access log of one JSON object per line. Both are
 * plain buffered stdio files reopened on SIGUSR1. The level is checked
 * before any formatting, so a disabled debug line costs one comparison. */
#ifndef SW_LOG_H
#define SW_LOG_H

#include <stdint.h>

#include "sw_config.h"

extern sw_log_level_t sw_log_level;

/* Opens (or reopens) the error and access logs named by cfg. On failure
 * returns a negative errno and leaves the previous files in place. */
int sw_log_open(const sw_config_t *cfg);
/* Reopens the files last opened, for log rotation (SIGUSR1). */
int sw_log_reopen(void);
void sw_log_close(void);
/* Flushes the access log; called from a short timer so lines reach the
 * disk within a fraction of a second without a write per request. */
void sw_log_flush(void);
/* Whether an access log is configured. */
int sw_log_access_enabled(void);

void sw_log_write(sw_log_level_t level,
                  const char *module,
                  uint64_t conn,
                  const char *fmt,
                  ...) __attribute__((format(printf, 4, 5)));

#define sw_log(level, module, conn, ...)                    \
  do {                                                      \
    if ((level) >= sw_log_level)                            \
      sw_log_write((level), (module), (conn), __VA_ARGS__); \
  } while (0)

#define sw_debug(m, c, ...) sw_log(SW_LOG_DEBUG, m, c, __VA_ARGS__)
#define sw_info(m, c, ...) sw_log(SW_LOG_INFO, m, c, __VA_ARGS__)
#define sw_warn(m, c, ...) sw_log(SW_LOG_WARN, m, c, __VA_ARGS__)
#define sw_error(m, c, ...) sw_log(SW_LOG_ERROR, m, c, __VA_ARGS__)

/* One access log record. Strings need not be NUL-terminated. */
typedef struct sw_access_s {
  const char *client;
  const char *method;
  const char *path;
  size_t path_len;
  int status;
  uint64_t bytes;
  const char *colour; /* NULL when no upstream was chosen */
  const char *server;
  double upstream_ms; /* < 0 when no upstream answered */
  double total_ms;
  const char *request_id;
  size_t request_id_len;
} sw_access_t;

void sw_log_access(const sw_access_t *a);

/* Appends s as a JSON string body (without quotes) to out, escaping as
 * needed; returns the bytes written, never more than cap. */
size_t sw_json_escape(char *out, size_t cap, const char *s, size_t len);

#endif
