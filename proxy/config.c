/* The configuration parser. This module owns the text format of switchd.conf
 * and its translation into one sw_config_t value: splitting lines into
 * arguments, one table entry per directive, the defaults of DESIGN.md §9 and
 * the checks that need the whole file. It reads the file and nothing else: it
 * must never open sockets, start timers or log, because a reload parses the
 * new file while the old config keeps serving and simply drops a bad one.
 *
 * Every error is reported as "FILE:LINE: message" naming the directive, so
 * that `switchd -t` and a rejected SIGHUP tell the operator where to look. */

#include "sw_config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <libpq-fe.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/un.h>
#include <unistd.h>

#include "sw_watch.h"

/* The longest list a directive takes is not_errors, one status per slot
 * after its name; a few more slots let the "expected 1 argument, got N" and
 * "at most N statuses" messages count what was written (argc keeps counting
 * past the array). */
#define SW_CONF_MAX_ARGS (SW_CONFIG_WATCH_EXCLUDE_MAX + 4)

/* A config is a few kilobytes; refusing huge files keeps a mistaken path
 * (a log file, a device) from eating memory during a reload. */
#define SW_CONF_MAX_FILE (16u * 1024 * 1024)

#define SW_KIB 1024ull

typedef enum sw_section_e {
  SW_SECTION_NONE = 0, /* before the first section keyword */
  SW_SECTION_GLOBAL,
  SW_SECTION_CLIENT,
  SW_SECTION_LISTEN,
  SW_SECTION_UPSTREAM,
  SW_SECTION_DATABASE,
  SW_SECTION_CUTOVER,
  SW_SECTION_WATCH,
  SW_SECTION_ADMIN,
} sw_section_t;

typedef struct sw_parser_s sw_parser_t;
typedef struct sw_directive_s sw_directive_t;

/* A directive handler gets its argument (arg2 is the second one of a
 * SW_DIR_PAIR directive, NULL otherwise) and a pointer to the field it sets:
 * the table's offset applied to the section's struct (sw_config_t, the
 * sw_upstream_conf_t of the open colour, the database, cutover, watch or
 * admin struct inside sw_config_t, or for SW_DIR_TLS the open listen
 * section's sw_tls_conf_t, held by the parser). A SW_DIR_MANY handler finds
 * all of its arguments in the parser's argv and argc. */
typedef int sw_directive_fn(sw_parser_t *p,
                            const sw_directive_t *d,
                            void *field,
                            const char *arg,
                            const char *arg2);

/* Directive flags. */
#define SW_DIR_LIST 0x1u /* repeatable: each line adds to a list */
#define SW_DIR_PAIR 0x2u /* takes two arguments instead of one */
#define SW_DIR_MANY 0x4u /* takes one or more arguments */
/* Repeatable, a later line replacing the earlier one: for a list with a
 * default (not_errors), where adding to the default could never remove an
 * entry from it. */
#define SW_DIR_REPLACE 0x8u
/* A TLS directive of a listen section: its offset is into the open
 * section's sw_tls_conf_t, and it may appear once per listen section. */
#define SW_DIR_TLS 0x10u
/* A TLS setting of an upstream section (tls_ca, tls_verify, tls_name): it
 * means nothing without `tls on` in the same section, which close_upstream
 * checks when the section ends. */
#define SW_DIR_UPS_TLS 0x20u

struct sw_directive_s {
  sw_section_t section;
  const char *name;
  sw_directive_fn *handler;
  size_t offset;  /* of the field inside the section's struct */
  uint64_t min;   /* smallest number accepted by numeric handlers */
  unsigned flags; /* SW_DIR_* */
};

static sw_directive_fn set_live, set_error_log, set_log_level, set_path;
static sw_directive_fn set_duration, set_size, set_count;
static sw_directive_fn set_unsigned, add_bind, add_trusted, add_server;
static sw_directive_fn set_buffer, set_head_size;
static sw_directive_fn set_health_path, set_health_host, set_health_status;
static sw_directive_fn set_health_body, set_on_off, set_yes_no;
static sw_directive_fn add_require_migration, add_require_column;
static sw_directive_fn add_require_query, set_dsn, set_pg_duration;
static sw_directive_fn set_history, set_admin_socket, add_allow_uid;
static sw_directive_fn set_admin_bind, set_hold_max, set_hold_queue;
static sw_directive_fn set_command;
static int set_bounded_duration(sw_parser_t *p,
                                const sw_directive_t *d,
                                uint64_t *field,
                                const char *arg,
                                uint64_t max);
static sw_directive_fn set_window, set_ring_window, set_watch_timer;
static sw_directive_fn set_not_errors;
static sw_directive_fn set_max_errors, set_alpha, set_max_error_ratio;
static sw_directive_fn set_max_consecutive, set_notify, set_notify_retries;
static sw_directive_fn add_certificate, set_ocsp_response, set_tls_version;
static sw_directive_fn set_cipher_list, set_tls_day, set_handshake_timeout;
static sw_directive_fn set_session_cache, set_upstream_tls, set_tls_name;

/* Bounds that keep sizes within what the data path represents: head
 * offsets are 32-bit and a single buffer is written with one uv_buf_t. */
#define SW_MAX_BUFFER ((uint64_t)1 << 30)
#define SW_MAX_HEAD_SIZE ((uint64_t)1 << 20)

/* PostgreSQL's statement_timeout and lock_timeout are int milliseconds: a
 * larger value would only fail at the first verification. */
#define SW_MAX_PG_TIMEOUT ((uint64_t)INT32_MAX)

/* The state file is rewritten whole at every transition; a bound on the
 * history keeps that write small. */
#define SW_MAX_HISTORY 10000
#define SW_MAX_HOLD (60 * 60 * 1000ull)
#define SW_MAX_HOLD_QUEUE 1000000

/* The watch counts per second in a ring of at most SW_WATCH_RING_MAX
 * buckets; the baseline and ratio windows must fit in it, or the watch
 * would refuse the config at startup after `switchd -t` accepted it. */
#define SW_MAX_RING_WINDOW ((uint64_t)SW_WATCH_RING_MAX * 1000)

/* Windows may be short (tests run whole watches in seconds), but a window
 * of a few milliseconds would see no request at all. */
#define SW_MIN_WINDOW 100

/* R2's ratio is computed over whole seconds. */
#define SW_MIN_RATIO_WINDOW 1000

/* The automatic and manual windows end at flip time + window, computed in
 * milliseconds by the switch machine and the watch: an unbounded window
 * would wrap that sum and end the watch at once. A week is far beyond any
 * watch an operator waits through. The parser has no day suffix, so the
 * messages say 168h. */
#define SW_MAX_WATCH_WINDOW ((uint64_t)7 * 24 * 60 * 60 * 1000)

/* A verification every hour, or a webhook attempt that may take an hour,
 * is a typo rather than a choice: the watch windows are minutes long. */
#define SW_MAX_WATCH_TIMER ((uint64_t)60 * 60 * 1000)

/* Each retry of a webhook waits for notify_timeout; more than a few only
 * delays the next notification. */
#define SW_MAX_NOTIFY_RETRIES 10

/* The notifier's own bound on its URL (SW_NOTIFY_URL_MAX in sw_notify.h,
 * which pulls in libuv and jansson, so it is not included here). */
#define SW_MAX_NOTIFY_URL 2048

/* TLS session state: a ticket key or a cached session older than a day
 * weakens forward secrecy for little gain, and more than a million cached
 * sessions is memory no listener needs. A new ticket key more often than
 * every minute would make most tickets fail to resume. */
#define SW_MAX_TLS_SESSION_MS ((uint64_t)24 * 60 * 60 * 1000)
#define SW_MIN_TLS_TICKET_ROTATE ((uint64_t)60 * 1000)
#define SW_MAX_TLS_SESSION_CACHE 1000000

/* A handshake is a few round trips; five minutes is already generous for a
 * client on a bad link, and anything longer only helps slow-loris. */
#define SW_MAX_TLS_HANDSHAKE_MS ((uint64_t)5 * 60 * 1000)

/* The longest DNS name (RFC 1035: 255 bytes on the wire, 253 written out),
 * and the longest label of one. */
#define SW_MAX_DNS_NAME 253
#define SW_MAX_DNS_LABEL 63

_Static_assert(SW_CONFIG_WATCH_EXCLUDE_MAX == SW_WATCH_EXCLUDE_MAX,
               "not_errors fits the watch's exclusion list");
_Static_assert(SW_CONF_MAX_ARGS > SW_CONFIG_WATCH_EXCLUDE_MAX + 1,
               "a full not_errors line fits in argv");

#define SW_CFG(f) offsetof(sw_config_t, f)
#define SW_UPS(f) offsetof(sw_upstream_conf_t, f)
#define SW_DB(f) offsetof(sw_database_conf_t, f)
#define SW_CUT(f) offsetof(sw_cutover_conf_t, f)
#define SW_ADM(f) offsetof(sw_admin_conf_t, f)
#define SW_WCH(f) offsetof(sw_watch_conf_t, f)
#define SW_TLSC(f) offsetof(sw_tls_conf_t, f)

/* Every directive the parser accepts. A name may appear in several sections
 * (idle_timeout, bind); the lookup is by section and name. */
static const sw_directive_t sw_directives[] = {
    {SW_SECTION_GLOBAL, "live", set_live, SW_CFG(live), 0, 0},
    {SW_SECTION_GLOBAL, "error_log", set_error_log, SW_CFG(error_log), 0, 0},
    {SW_SECTION_GLOBAL, "access_log", set_path, SW_CFG(access_log), 0, 0},
    {SW_SECTION_GLOBAL, "log_level", set_log_level, SW_CFG(log_level), 0, 0},
    {SW_SECTION_GLOBAL, "pid_file", set_path, SW_CFG(pid_file), 0, 0},
    {SW_SECTION_GLOBAL, "shutdown_timeout", set_duration,
     SW_CFG(shutdown_timeout_ms), 1, 0},
    {SW_SECTION_GLOBAL, "buffer_budget", set_size, SW_CFG(buffer_budget), 1, 0},

    {SW_SECTION_LISTEN, "bind", add_bind, 0, 0, SW_DIR_LIST},
    /* A certificate makes the whole section HTTPS. Paths are stored as
     * written: the TLS module opens and checks them, so the parser stays
     * free of I/O. The certificate and OCSP setters get the whole struct. */
    {SW_SECTION_LISTEN, "certificate", add_certificate, 0, 0,
     SW_DIR_LIST | SW_DIR_PAIR | SW_DIR_TLS},
    {SW_SECTION_LISTEN, "ocsp_response", set_ocsp_response, 0, 0,
     SW_DIR_LIST | SW_DIR_TLS},
    {SW_SECTION_LISTEN, "tls_min_version", set_tls_version,
     SW_TLSC(min_version), 0, SW_DIR_TLS},
    {SW_SECTION_LISTEN, "tls_ciphers", set_cipher_list, SW_TLSC(ciphers), 0,
     SW_DIR_TLS},
    {SW_SECTION_LISTEN, "tls_ciphersuites", set_cipher_list,
     SW_TLSC(ciphersuites), 0, SW_DIR_TLS},
    {SW_SECTION_LISTEN, "tls_session_tickets", set_on_off, SW_TLSC(tickets), 0,
     SW_DIR_TLS},
    {SW_SECTION_LISTEN, "tls_ticket_rotate", set_tls_day,
     SW_TLSC(ticket_rotate_ms), SW_MIN_TLS_TICKET_ROTATE, SW_DIR_TLS},
    /* 0 turns the server-side session cache off. */
    {SW_SECTION_LISTEN, "tls_session_cache", set_session_cache,
     SW_TLSC(session_cache), 0, SW_DIR_TLS},
    {SW_SECTION_LISTEN, "tls_session_timeout", set_tls_day,
     SW_TLSC(session_timeout_ms), 1, SW_DIR_TLS},
    {SW_SECTION_LISTEN, "tls_handshake_timeout", set_handshake_timeout,
     SW_TLSC(handshake_timeout_ms), 1, SW_DIR_TLS},

    {SW_SECTION_CLIENT, "trusted_proxy", add_trusted, 0, 0, SW_DIR_LIST},
    {SW_SECTION_CLIENT, "header_timeout", set_duration,
     SW_CFG(header_timeout_ms), 1, 0},
    {SW_SECTION_CLIENT, "idle_timeout", set_duration, SW_CFG(idle_timeout_ms),
     1, 0},
    {SW_SECTION_CLIENT, "body_timeout", set_duration, SW_CFG(body_timeout_ms),
     1, 0},
    {SW_SECTION_CLIENT, "send_timeout", set_duration, SW_CFG(send_timeout_ms),
     1, 0},
    {SW_SECTION_CLIENT, "tunnel_timeout", set_duration,
     SW_CFG(tunnel_timeout_ms), 1, 0},
    /* 0 is how an operator turns the slow-client check off. */
    {SW_SECTION_CLIENT, "min_send_rate", set_size, SW_CFG(min_send_rate), 0, 0},
    /* Below 1 KiB ordinary browsers' request heads would be refused. */
    {SW_SECTION_CLIENT, "max_header_size", set_head_size,
     SW_CFG(max_header_size), SW_KIB, 0},
    {SW_SECTION_CLIENT, "max_headers", set_count, SW_CFG(max_headers), 1, 0},
    {SW_SECTION_CLIENT, "max_url", set_head_size, SW_CFG(max_url), 1, 0},
    {SW_SECTION_CLIENT, "max_body", set_size, SW_CFG(max_body), 1, 0},
    {SW_SECTION_CLIENT, "request_buffer", set_buffer, SW_CFG(request_buffer), 1,
     0},
    {SW_SECTION_CLIENT, "response_buffer", set_buffer, SW_CFG(response_buffer),
     1, 0},

    {SW_SECTION_UPSTREAM, "server", add_server, 0, 0, SW_DIR_LIST},
    {SW_SECTION_UPSTREAM, "connect_timeout", set_duration,
     SW_UPS(connect_timeout_ms), 1, 0},
    {SW_SECTION_UPSTREAM, "response_timeout", set_duration,
     SW_UPS(response_timeout_ms), 1, 0},
    {SW_SECTION_UPSTREAM, "idle_timeout", set_duration, SW_UPS(idle_timeout_ms),
     1, 0},
    /* 0 is allowed: it disables pooling for that colour. */
    {SW_SECTION_UPSTREAM, "max_idle", set_unsigned, SW_UPS(max_idle), 0, 0},
    {SW_SECTION_UPSTREAM, "health", set_on_off, SW_UPS(health.enabled), 0, 0},
    {SW_SECTION_UPSTREAM, "health_path", set_health_path, SW_UPS(health.path),
     0, 0},
    {SW_SECTION_UPSTREAM, "health_host", set_health_host, SW_UPS(health.host),
     0, 0},
    /* Sets status_min and status_max, so it gets the whole health struct. */
    {SW_SECTION_UPSTREAM, "health_status", set_health_status, SW_UPS(health), 0,
     0},
    {SW_SECTION_UPSTREAM, "health_body", set_health_body, SW_UPS(health.body),
     0, 0},
    {SW_SECTION_UPSTREAM, "health_interval", set_duration,
     SW_UPS(health.interval_ms), 1, 0},
    {SW_SECTION_UPSTREAM, "health_timeout", set_duration,
     SW_UPS(health.timeout_ms), 1, 0},
    {SW_SECTION_UPSTREAM, "health_rise", set_unsigned, SW_UPS(health.rise), 1,
     0},
    {SW_SECTION_UPSTREAM, "health_fall", set_unsigned, SW_UPS(health.fall), 1,
     0},
    {SW_SECTION_UPSTREAM, "require_migration", add_require_migration, 0, 0,
     SW_DIR_LIST | SW_DIR_PAIR},
    {SW_SECTION_UPSTREAM, "require_column", add_require_column, 0, 0,
     SW_DIR_LIST | SW_DIR_PAIR},
    {SW_SECTION_UPSTREAM, "require_query", add_require_query, 0, 0,
     SW_DIR_LIST},
    /* TLS to the colour's servers: `tls` sets tls_line too, so it gets the
     * whole struct. The CA path is stored as written, like the listen
     * sections' files: the TLS module loads it. */
    {SW_SECTION_UPSTREAM, "tls", set_upstream_tls, 0, 0, 0},
    {SW_SECTION_UPSTREAM, "tls_ca", set_path, SW_UPS(tls_ca), 0,
     SW_DIR_UPS_TLS},
    {SW_SECTION_UPSTREAM, "tls_verify", set_on_off, SW_UPS(tls_verify), 0,
     SW_DIR_UPS_TLS},
    {SW_SECTION_UPSTREAM, "tls_name", set_tls_name, SW_UPS(tls_name), 0,
     SW_DIR_UPS_TLS},

    {SW_SECTION_DATABASE, "dsn", set_dsn, SW_DB(dsn), 0, 0},
    {SW_SECTION_DATABASE, "connect_timeout", set_duration,
     SW_DB(connect_timeout_ms), 1, 0},
    {SW_SECTION_DATABASE, "statement_timeout", set_pg_duration,
     SW_DB(statement_timeout_ms), 1, 0},
    {SW_SECTION_DATABASE, "lock_timeout", set_pg_duration,
     SW_DB(lock_timeout_ms), 1, 0},

    {SW_SECTION_CUTOVER, "gate_timeout", set_duration, SW_CUT(gate_timeout_ms),
     1, 0},
    {SW_SECTION_CUTOVER, "drain_timeout", set_duration,
     SW_CUT(drain_timeout_ms), 1, 0},
    {SW_SECTION_CUTOVER, "state_file", set_path, SW_CUT(state_file), 0, 0},
    /* 0 keeps no past transitions: status shows only the current one. */
    {SW_SECTION_CUTOVER, "history", set_history, SW_CUT(history), 0, 0},
    {SW_SECTION_CUTOVER, "hold_max", set_hold_max, SW_CUT(hold_max_ms), 1, 0},
    {SW_SECTION_CUTOVER, "hold_queue", set_hold_queue, SW_CUT(hold_queue), 1,
     0},
    {SW_SECTION_CUTOVER, "rollback_migrate", set_command,
     SW_CUT(rollback_migrate), 0, 0},
    {SW_SECTION_CUTOVER, "rollback_migrate_timeout", set_duration,
     SW_CUT(rollback_migrate_timeout_ms), 1, 0},

    {SW_SECTION_WATCH, "enabled", set_on_off, SW_WCH(enabled), 0, 0},
    {SW_SECTION_WATCH, "auto_window", set_window, SW_WCH(auto_window_ms),
     SW_MIN_WINDOW, 0},
    {SW_SECTION_WATCH, "manual_window", set_window, SW_WCH(manual_window_ms),
     SW_MIN_WINDOW, 0},
    {SW_SECTION_WATCH, "baseline_window", set_ring_window,
     SW_WCH(baseline_window_ms), SW_MIN_WINDOW, 0},
    {SW_SECTION_WATCH, "min_requests", set_count, SW_WCH(min_requests), 1, 0},
    /* Sets the list and its length, so it gets the whole watch struct. */
    {SW_SECTION_WATCH, "not_errors", set_not_errors, 0, 0,
     SW_DIR_MANY | SW_DIR_REPLACE},
    /* The trigger setters set a flag and a threshold: the whole struct. */
    {SW_SECTION_WATCH, "max_errors", set_max_errors, 0, 0, 0},
    {SW_SECTION_WATCH, "alpha", set_alpha, SW_WCH(alpha), 0, 0},
    {SW_SECTION_WATCH, "max_error_ratio", set_max_error_ratio, 0, 0, 0},
    {SW_SECTION_WATCH, "ratio_window", set_ring_window, SW_WCH(ratio_window_ms),
     SW_MIN_RATIO_WINDOW, 0},
    {SW_SECTION_WATCH, "max_consecutive", set_max_consecutive, 0, 1, 0},
    {SW_SECTION_WATCH, "health_trigger", set_on_off, SW_WCH(r4), 0, 0},
    {SW_SECTION_WATCH, "verify_interval", set_watch_timer,
     SW_WCH(verify_interval_ms), 1, 0},
    {SW_SECTION_WATCH, "notify", set_notify, SW_WCH(notify), 0, 0},
    {SW_SECTION_WATCH, "notify_timeout", set_watch_timer,
     SW_WCH(notify_timeout_ms), 1, 0},
    {SW_SECTION_WATCH, "notify_retries", set_notify_retries,
     SW_WCH(notify_retries), 0, 0},

    {SW_SECTION_ADMIN, "socket", set_admin_socket, SW_ADM(socket), 0, 0},
    {SW_SECTION_ADMIN, "allow_uid", add_allow_uid, 0, 0, SW_DIR_LIST},
    /* At most one TCP listener: it is an operator's door, not a service. */
    {SW_SECTION_ADMIN, "bind", set_admin_bind, 0, 0, 0},
    {SW_SECTION_ADMIN, "token_file", set_path, SW_ADM(token_file), 0, 0},
    {SW_SECTION_ADMIN, "metrics_open", set_yes_no, SW_ADM(metrics_open), 0, 0},
};

#define SW_NDIRECTIVES (sizeof(sw_directives) / sizeof(sw_directives[0]))

struct sw_parser_s {
  const char *file;
  int line;
  sw_section_t section;
  sw_colour_t colour; /* of the open upstream section */
  sw_config_t *cfg;
  char *err;
  size_t errlen;
  /* The line being parsed, split, for SW_DIR_MANY handlers. argc counts
   * every argument written; argv holds the first SW_CONF_MAX_ARGS. */
  char **argv;
  int argc;
  /* Line where each single-valued directive was set, per colour for the
   * upstream sections (global and client use slot 0), so a repeat is an error
   * that can point at the first one. The TLS directives' lines are cleared
   * at each listen section: they are set once per section. */
  int seen[SW_NDIRECTIVES][SW_COLOURS];
  /* The open listen section. Its TLS settings are gathered here, owned by
   * the parser, and become an entry of cfg->tls when the section ends, only
   * if it has a certificate; its binds are those from listen_first_bind on,
   * so binds written before the first certificate line are HTTPS too. */
  size_t listen_first_bind;
  sw_tls_conf_t tls;
  int tls_first_line; /* the section's first TLS directive, 0 if none */
  const char *tls_first_name;
  int ocsp_orphan_line; /* first ocsp_response before any certificate */
};

static int conf_error(sw_parser_t *p, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Writes "FILE:LINE: message" and returns SW_ECONFIG, so that every error
 * path is one `return conf_error(...)`. */
static int conf_error(sw_parser_t *p, int line, const char *fmt, ...) {
  va_list ap;
  int n;

  if (p->err == NULL || p->errlen == 0)
    return SW_ECONFIG;
  n = snprintf(p->err, p->errlen, "%s:%d: ", p->file, line);
  if (n >= 0 && (size_t)n < p->errlen) {
    va_start(ap, fmt);
    vsnprintf(p->err + n, p->errlen - (size_t)n, fmt, ap);
    va_end(ap);
  }
  return SW_ECONFIG;
}

static int bad_value(sw_parser_t *p,
                     const sw_directive_t *d,
                     const char *what,
                     const char *arg) {
  return conf_error(p, p->line, "%s: %s '%s'", d->name, what, arg);
}

static int out_of_memory(sw_parser_t *p) {
  return conf_error(p, p->line, "out of memory");
}

static const char *section_name(sw_section_t s, sw_colour_t colour) {
  switch (s) {
    case SW_SECTION_GLOBAL:
      return "global";
    case SW_SECTION_CLIENT:
      return "client";
    case SW_SECTION_LISTEN:
      return "listen";
    case SW_SECTION_UPSTREAM:
      return colour == SW_BLUE ? "upstream blue" : "upstream green";
    case SW_SECTION_DATABASE:
      return "database";
    case SW_SECTION_CUTOVER:
      return "cutover";
    case SW_SECTION_WATCH:
      return "watch";
    case SW_SECTION_ADMIN:
      return "admin";
    case SW_SECTION_NONE:
      break;
  }
  return "none";
}

/* Digits only: no sign, no spaces, no 0x, so that "-1" or "1e3" is an error
 * rather than a surprise. Stops at the first non-digit and leaves *end there
 * for the caller's suffix. */
static int parse_digits(const char *s, uint64_t *out, const char **end) {
  uint64_t v = 0;
  const char *c = s;

  for (; *c >= '0' && *c <= '9'; c++) {
    unsigned digit = (unsigned)(*c - '0');
    if (v > (UINT64_MAX - digit) / 10)
      return -ERANGE;
    v = v * 10 + digit;
  }
  if (c == s)
    return -EINVAL;
  *out = v;
  *end = c;
  return 0;
}

/* Shared by the numeric setters: a number that overflowed or is below the
 * table's minimum gets a message that says which. */
static int check_range(sw_parser_t *p,
                       const sw_directive_t *d,
                       const char *what,
                       const char *arg,
                       int rc,
                       uint64_t v,
                       uint64_t max) {
  if (rc == -ERANGE || (rc == 0 && v > max))
    return bad_value(p, d, "value too large", arg);
  if (rc != 0)
    return bad_value(p, d, what, arg);
  if (v < d->min) {
    if (d->min == 1)
      return bad_value(p, d, "must be greater than 0, got", arg);
    return conf_error(p, p->line, "%s: '%s' is below the minimum of %llu",
                      d->name, arg, (unsigned long long)d->min);
  }
  return 0;
}

/* "250ms", "10s", "5m", "1h" or a bare number of seconds, in milliseconds. */
static int parse_duration(const char *s, uint64_t *ms) {
  uint64_t v, mult;
  const char *suffix;
  int rc;

  rc = parse_digits(s, &v, &suffix);
  if (rc != 0)
    return rc;
  if (strcmp(suffix, "ms") == 0)
    mult = 1;
  else if (strcmp(suffix, "s") == 0 || *suffix == '\0')
    mult = 1000;
  else if (strcmp(suffix, "m") == 0)
    mult = 60 * 1000;
  else if (strcmp(suffix, "h") == 0)
    mult = 60 * 60 * 1000;
  else
    return -EINVAL;
  if (v > UINT64_MAX / mult)
    return -ERANGE;
  *ms = v * mult;
  return 0;
}

/* "512", "16k", "1m", "2G": binary multiples, case-insensitive. */
static int parse_size(const char *s, uint64_t *bytes) {
  uint64_t v, mult;
  const char *suffix;
  int rc;

  rc = parse_digits(s, &v, &suffix);
  if (rc != 0)
    return rc;
  if (*suffix == '\0')
    mult = 1;
  else if (suffix[1] != '\0')
    return -EINVAL;
  else if (*suffix == 'k' || *suffix == 'K')
    mult = SW_KIB;
  else if (*suffix == 'm' || *suffix == 'M')
    mult = SW_KIB * SW_KIB;
  else if (*suffix == 'g' || *suffix == 'G')
    mult = SW_KIB * SW_KIB * SW_KIB;
  else
    return -EINVAL;
  if (v > UINT64_MAX / mult)
    return -ERANGE;
  *bytes = v * mult;
  return 0;
}

static int parse_count(const char *s, uint64_t *n) {
  const char *end;
  int rc;

  rc = parse_digits(s, n, &end);
  if (rc == 0 && *end != '\0')
    return -EINVAL;
  return rc;
}

/* Numeric HOST:PORT: "127.0.0.1:8080", "[::1]:8080", or "*:8080" (0.0.0.0)
 * when `any` allows it. No names: resolving them would make parsing block
 * and a reload depend on DNS. Fills addr and the normalised name. */
static int parse_hostport(const char *s,
                          int any,
                          struct sockaddr_storage *addr,
                          char *name,
                          size_t namelen) {
  char host[INET6_ADDRSTRLEN];
  char text[INET6_ADDRSTRLEN];
  const char *colon, *hstart;
  size_t hlen;
  uint64_t port;
  int v6;

  if (s[0] == '[') {
    const char *rbracket = strchr(s, ']');
    if (rbracket == NULL || rbracket[1] != ':')
      return -EINVAL;
    hstart = s + 1;
    hlen = (size_t)(rbracket - hstart);
    colon = rbracket + 1;
    v6 = 1;
  } else {
    colon = strrchr(s, ':');
    if (colon == NULL)
      return -EINVAL;
    hstart = s;
    hlen = (size_t)(colon - s);
    v6 = 0;
  }
  if (hlen == 0 || hlen >= sizeof(host))
    return -EINVAL;
  memcpy(host, hstart, hlen);
  host[hlen] = '\0';
  if (parse_count(colon + 1, &port) != 0 || port == 0 || port > 65535)
    return -EINVAL;

  memset(addr, 0, sizeof(*addr));
  if (v6) {
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)addr;
    sin6->sin6_family = AF_INET6;
    sin6->sin6_port = htons((uint16_t)port);
    if (inet_pton(AF_INET6, host, &sin6->sin6_addr) != 1)
      return -EINVAL;
    inet_ntop(AF_INET6, &sin6->sin6_addr, text, sizeof(text));
    snprintf(name, namelen, "[%s]:%u", text, (unsigned)port);
  } else {
    struct sockaddr_in *sin = (struct sockaddr_in *)addr;
    sin->sin_family = AF_INET;
    sin->sin_port = htons((uint16_t)port);
    if (any && strcmp(host, "*") == 0)
      sin->sin_addr.s_addr = htonl(INADDR_ANY);
    else if (inet_pton(AF_INET, host, &sin->sin_addr) != 1)
      return -EINVAL;
    inet_ntop(AF_INET, &sin->sin_addr, text, sizeof(text));
    snprintf(name, namelen, "%s:%u", text, (unsigned)port);
  }
  return 0;
}

/* Appends one zeroed element to a growable array and returns it. Lists are a
 * handful of entries, so growing one at a time costs nothing. */
static void *grow(void **array, size_t *n, size_t size) {
  char *a = realloc(*array, (*n + 1) * size);

  if (a == NULL)
    return NULL;
  *array = a;
  memset(a + *n * size, 0, size);
  return a + (*n)++ * size;
}

static int set_live(sw_parser_t *p,
                    const sw_directive_t *d,
                    void *field,
                    const char *arg,
                    const char *arg2) {
  sw_colour_t *live = field;

  if (strcmp(arg, "blue") == 0)
    *live = SW_BLUE;
  else if (strcmp(arg, "green") == 0)
    *live = SW_GREEN;
  else
    return bad_value(p, d, "expected blue or green, got", arg);
  return 0;
}

static int replace_string(sw_parser_t *p, char **field, const char *arg) {
  char *copy = strdup(arg);

  if (copy == NULL)
    return out_of_memory(p);
  free(*field);
  *field = copy;
  return 0;
}

static int set_path(sw_parser_t *p,
                    const sw_directive_t *d,
                    void *field,
                    const char *arg,
                    const char *arg2) {
  if (*arg == '\0')
    return bad_value(p, d, "empty path", arg);
  return replace_string(p, field, arg);
}

/* "off" would silently become a file named off in the working directory;
 * the error log cannot be turned off, so say so. */
static int set_error_log(sw_parser_t *p,
                         const sw_directive_t *d,
                         void *field,
                         const char *arg,
                         const char *arg2) {
  if (strcmp(arg, "off") == 0)
    return bad_value(p, d, "cannot be turned off (use a path or stderr), got",
                     arg);
  return set_path(p, d, field, arg, NULL);
}

static int set_log_level(sw_parser_t *p,
                         const sw_directive_t *d,
                         void *field,
                         const char *arg,
                         const char *arg2) {
  /* In the order of sw_log_level_t, so the index is the level. */
  static const char *const names[] = {"debug", "info", "warn", "error"};
  sw_log_level_t *level = field;
  size_t i;

  for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
    if (strcmp(arg, names[i]) == 0) {
      *level = (sw_log_level_t)i;
      return 0;
    }
  }
  return bad_value(p, d, "expected debug, info, warn or error, got", arg);
}

/* How a numeric directive is read and stored: the parser of its syntax,
 * the message for a value it cannot read, the largest value allowed and
 * the width of the field it sets. */
typedef struct sw_num_kind_s {
  int (*parse)(const char *s, uint64_t *v);
  const char *invalid;
  uint64_t max;
  size_t width; /* sizeof the field: 8 (uint64_t or size_t) or unsigned */
} sw_num_kind_t;

static int set_number(const sw_num_kind_t *k,
                      sw_parser_t *p,
                      const sw_directive_t *d,
                      void *field,
                      const char *arg) {
  uint64_t v = 0;
  int rc = k->parse(arg, &v);

  rc = check_range(p, d, k->invalid, arg, rc, v, k->max);
  if (rc != 0)
    return rc;
  if (k->width == sizeof(unsigned))
    *(unsigned *)field = (unsigned)v;
  else
    *(uint64_t *)field = v;
  return 0;
}

/* sizeof(size_t) == sizeof(uint64_t) on every platform switchd builds on,
 * so size_t fields are stored through the 8-byte path. */
_Static_assert(sizeof(size_t) == sizeof(uint64_t), "64-bit size_t");

static const sw_num_kind_t num_duration = {parse_duration, "invalid duration",
                                           UINT64_MAX, 8};
static const sw_num_kind_t num_size = {parse_size, "invalid size", UINT64_MAX,
                                       8};
static const sw_num_kind_t num_buffer = {parse_size, "invalid size",
                                         SW_MAX_BUFFER, 8};
static const sw_num_kind_t num_head = {parse_size, "invalid size",
                                       SW_MAX_HEAD_SIZE, 8};
static const sw_num_kind_t num_count = {parse_count, "invalid number", SIZE_MAX,
                                        8};
static const sw_num_kind_t num_unsigned = {parse_count, "invalid number",
                                           UINT_MAX, sizeof(unsigned)};
static const sw_num_kind_t num_hold_queue = {parse_count, "invalid number",
                                             SW_MAX_HOLD_QUEUE, sizeof(size_t)};

#define SW_NUMBER_SETTER(name, kind)                                    \
  static int name(sw_parser_t *p, const sw_directive_t *d, void *field, \
                  const char *arg, const char *arg2) {                  \
    (void)arg2;                                                         \
    return set_number(&kind, p, d, field, arg);                         \
  }

SW_NUMBER_SETTER(set_duration, num_duration)
SW_NUMBER_SETTER(set_size, num_size)
SW_NUMBER_SETTER(set_buffer, num_buffer)
SW_NUMBER_SETTER(set_head_size, num_head)
SW_NUMBER_SETTER(set_count, num_count)
SW_NUMBER_SETTER(set_unsigned, num_unsigned)
SW_NUMBER_SETTER(set_hold_queue, num_hold_queue)

static int add_bind(sw_parser_t *p,
                    const sw_directive_t *d,
                    void *field,
                    const char *arg,
                    const char *arg2) {
  sw_config_t *cfg = field;
  sw_bind_conf_t b, *slot;
  size_t i;

  memset(&b, 0, sizeof(b));
  if (parse_hostport(arg, 1, &b.addr, b.name, sizeof(b.name)) != 0)
    return bad_value(p, d,
                     "invalid address (expected IP:PORT, [IPv6]:PORT"
                     " or *:PORT)",
                     arg);
  /* Compare normalised names so that "*:80" and "0.0.0.0:80" collide here
   * rather than as EADDRINUSE at startup. */
  for (i = 0; i < cfg->nbinds; i++) {
    if (strcmp(cfg->binds[i].name, b.name) == 0)
      return conf_error(p, p->line,
                        "bind: duplicate address '%s' (already bound at line"
                        " %d)",
                        arg, cfg->binds[i].line);
  }
  slot = grow((void **)&cfg->binds, &cfg->nbinds, sizeof(*slot));
  if (slot == NULL)
    return out_of_memory(p);
  b.line = p->line;
  /* Whether the section is HTTPS is known only at its end (close_listen). */
  b.tls = -1;
  *slot = b;
  return 0;
}

static int add_server(sw_parser_t *p,
                      const sw_directive_t *d,
                      void *field,
                      const char *arg,
                      const char *arg2) {
  sw_upstream_conf_t *up = field;
  sw_server_conf_t s, *slot;

  memset(&s, 0, sizeof(s));
  if (parse_hostport(arg, 0, &s.addr, s.name, sizeof(s.name)) != 0)
    return bad_value(p, d, "invalid address (expected IP:PORT or [IPv6]:PORT)",
                     arg);
  slot = grow((void **)&up->servers, &up->nservers, sizeof(*slot));
  if (slot == NULL)
    return out_of_memory(p);
  s.line = p->line;
  *slot = s;
  return 0;
}

/* Clears the bits past the prefix so that matching is a plain comparison of
 * the leading bits and "10.1.2.3/8" means what the operator meant. */
static void mask_host_bits(unsigned char *addr, int prefix, int bytes) {
  int i;

  for (i = 0; i < bytes; i++) {
    int keep = prefix - i * 8;
    if (keep >= 8)
      continue;
    addr[i] &= keep <= 0 ? 0 : (unsigned char)(0xff << (8 - keep));
  }
}

static int add_trusted(sw_parser_t *p,
                       const sw_directive_t *d,
                       void *field,
                       const char *arg,
                       const char *arg2) {
  sw_config_t *cfg = field;
  char host[INET6_ADDRSTRLEN];
  const char *slash = strchr(arg, '/');
  size_t hlen = slash ? (size_t)(slash - arg) : strlen(arg);
  sw_cidr_t c, *slot;
  int max;

  memset(&c, 0, sizeof(c));
  if (hlen == 0 || hlen >= sizeof(host))
    return bad_value(p, d, "invalid address", arg);
  memcpy(host, arg, hlen);
  host[hlen] = '\0';
  if (inet_pton(AF_INET, host, c.addr) == 1) {
    c.family = AF_INET;
    max = 32;
  } else if (inet_pton(AF_INET6, host, c.addr) == 1) {
    c.family = AF_INET6;
    max = 128;
  } else {
    return bad_value(p, d, "invalid address", arg);
  }
  c.prefix = max;
  if (slash != NULL) {
    uint64_t prefix;
    if (parse_count(slash + 1, &prefix) != 0 || prefix > (uint64_t)max)
      return bad_value(p, d, "invalid prefix length", arg);
    c.prefix = (int)prefix;
  }
  mask_host_bits(c.addr, c.prefix, max / 8);
  slot = grow((void **)&cfg->trusted, &cfg->ntrusted, sizeof(*slot));
  if (slot == NULL)
    return out_of_memory(p);
  *slot = c;
  return 0;
}

/* The value is not quoted back: it would fill the message. */
static int too_long(sw_parser_t *p, const sw_directive_t *d, size_t max) {
  return conf_error(p, p->line, "%s: longer than %zu bytes", d->name, max);
}

/* A byte that may not appear in a request line or a header value we write:
 * controls, space, DEL and anything outside ASCII. */
static int is_unsafe_byte(char c) {
  unsigned char u = (unsigned char)c;
  return u <= 0x20 || u >= 0x7f;
}

/* The path goes into the health check's request line as written, so it must
 * be an origin-form target: a '/' and no byte that would split the line. A
 * fragment is never sent on the wire, so '#' is refused as a likely typo. */
static int set_health_path(sw_parser_t *p,
                           const sw_directive_t *d,
                           void *field,
                           const char *arg,
                           const char *arg2) {
  const char *c;

  if (arg[0] != '/')
    return bad_value(p, d, "must start with '/', got", arg);
  if (strlen(arg) > SW_CONFIG_HEALTH_PATH_MAX)
    return too_long(p, d, SW_CONFIG_HEALTH_PATH_MAX);
  for (c = arg; *c != '\0'; c++) {
    if (is_unsafe_byte(*c) || *c == '#')
      return bad_value(p, d, "invalid character in path", arg);
  }
  return replace_string(p, field, arg);
}

/* A Host header value: a name or address with an optional port. Anything
 * that could end the header or smuggle a second one is refused. */
static int set_health_host(sw_parser_t *p,
                           const sw_directive_t *d,
                           void *field,
                           const char *arg,
                           const char *arg2) {
  const char *c;

  if (*arg == '\0')
    return bad_value(p, d, "empty host", arg);
  if (strlen(arg) > SW_CONFIG_HEALTH_HOST_MAX)
    return too_long(p, d, SW_CONFIG_HEALTH_HOST_MAX);
  for (c = arg; *c != '\0'; c++) {
    if (is_unsafe_byte(*c) || strchr("/?#@\\\"", *c) != NULL)
      return bad_value(p, d, "invalid host", arg);
  }
  return replace_string(p, field, arg);
}

/* "200", "200-299" or "2xx" into an inclusive range. Only the syntax is
 * checked here; the caller checks the range. */
static int parse_status_range(const char *s, int *lo, int *hi) {
  uint64_t a, b;
  const char *end;

  if (s[0] >= '1' && s[0] <= '9' && (s[1] == 'x' || s[1] == 'X') &&
      (s[2] == 'x' || s[2] == 'X') && s[3] == '\0') {
    *lo = (s[0] - '0') * 100;
    *hi = *lo + 99;
    return 0;
  }
  if (parse_digits(s, &a, &end) != 0)
    return -EINVAL;
  b = a;
  if (*end == '-' && parse_digits(end + 1, &b, &end) != 0)
    return -EINVAL;
  if (*end != '\0')
    return -EINVAL;
  if (a > 999 || b > 999)
    return -ERANGE;
  *lo = (int)a;
  *hi = (int)b;
  return 0;
}

static int set_health_status(sw_parser_t *p,
                             const sw_directive_t *d,
                             void *field,
                             const char *arg,
                             const char *arg2) {
  sw_health_conf_t *h = field;
  int lo, hi;

  if (parse_status_range(arg, &lo, &hi) != 0)
    return bad_value(p, d,
                     "expected a status (200), a range (200-299) or a class "
                     "(2xx), got",
                     arg);
  /* 1xx is never a final status, so a check could not end on one. */
  if (lo < 200 || hi > 599)
    return bad_value(p, d, "statuses must be from 200 to 599, got", arg);
  if (lo > hi)
    return bad_value(p, d, "empty range", arg);
  /* Redirects are failures and are never followed: a health page that
   * redirects (to a login page, to add a slash) is not the page configured.
   * A range that let a 3xx pass would hide exactly that, so it is refused
   * here rather than left to the checker. */
  if (lo <= 399 && hi >= 300)
    return bad_value(p, d, "redirects (3xx) always fail a check, got", arg);
  h->status_min = lo;
  h->status_max = hi;
  return 0;
}

/* The body substring is matched, never sent, so any byte is fine; only its
 * length is bounded, by what the checker keeps to match against. */
static int set_health_body(sw_parser_t *p,
                           const sw_directive_t *d,
                           void *field,
                           const char *arg,
                           const char *arg2) {
  if (*arg == '\0')
    return bad_value(p, d, "empty value", arg);
  if (strlen(arg) > SW_CONFIG_HEALTH_BODY_MAX)
    return too_long(p, d, SW_CONFIG_HEALTH_BODY_MAX);
  return replace_string(p, field, arg);
}

static int set_on_off(sw_parser_t *p,
                      const sw_directive_t *d,
                      void *field,
                      const char *arg,
                      const char *arg2) {
  if (strcmp(arg, "on") == 0)
    *(int *)field = 1;
  else if (strcmp(arg, "off") == 0)
    *(int *)field = 0;
  else
    return bad_value(p, d, "expected on or off, got", arg);
  return 0;
}

static int set_yes_no(sw_parser_t *p,
                      const sw_directive_t *d,
                      void *field,
                      const char *arg,
                      const char *arg2) {
  if (strcmp(arg, "yes") == 0)
    *(int *)field = 1;
  else if (strcmp(arg, "no") == 0)
    *(int *)field = 0;
  else
    return bad_value(p, d, "expected yes or no, got", arg);
  return 0;
}

/* Appends one requirement to the open colour's list, in file order. */
static int add_require(sw_parser_t *p,
                       const sw_directive_t *d,
                       sw_upstream_conf_t *up,
                       sw_require_kind_t kind,
                       const char *a,
                       const char *b) {
  sw_require_t r, *slot;

  if (*a == '\0')
    return bad_value(p, d, "empty value", a);
  if (b != NULL && *b == '\0')
    return bad_value(p, d, "empty value", b);
  memset(&r, 0, sizeof(r));
  r.kind = kind;
  r.line = p->line;
  r.a = strdup(a);
  r.b = b != NULL ? strdup(b) : NULL;
  if (r.a == NULL || (b != NULL && r.b == NULL)) {
    free(r.a);
    free(r.b);
    return out_of_memory(p);
  }
  slot = grow((void **)&up->requires, &up->nrequires, sizeof(*slot));
  if (slot == NULL) {
    free(r.a);
    free(r.b);
    return out_of_memory(p);
  }
  *slot = r;
  return 0;
}

static int add_require_migration(sw_parser_t *p,
                                 const sw_directive_t *d,
                                 void *field,
                                 const char *arg,
                                 const char *arg2) {
  return add_require(p, d, field, SW_REQUIRE_MIGRATION, arg, arg2);
}

/* The table may be schema-qualified ("billing.invoice"): the verifier
 * resolves it with to_regclass, which takes the same spelling as SQL. */
static int add_require_column(sw_parser_t *p,
                              const sw_directive_t *d,
                              void *field,
                              const char *arg,
                              const char *arg2) {
  return add_require(p, d, field, SW_REQUIRE_COLUMN, arg, arg2);
}

static int add_require_query(sw_parser_t *p,
                             const sw_directive_t *d,
                             void *field,
                             const char *arg,
                             const char *arg2) {
  return add_require(p, d, field, SW_REQUIRE_QUERY, arg, NULL);
}

/* libpq's own parser checks the syntax now, so a typo is found by
 * `switchd -t` rather than at the first cutover. It only parses: no
 * environment, service file or network is consulted. The string is never
 * quoted back, because it may hold a password. */
static int set_dsn(sw_parser_t *p,
                   const sw_directive_t *d,
                   void *field,
                   const char *arg,
                   const char *arg2) {
  PQconninfoOption *opts;
  char *msg = NULL;
  size_t len;
  int rc;

  if (*arg == '\0')
    return conf_error(p, p->line, "dsn: empty connection string");
  opts = PQconninfoParse(arg, &msg);
  if (opts == NULL) {
    if (msg == NULL)
      return out_of_memory(p);
    /* libpq ends its messages with a newline. */
    len = strlen(msg);
    while (len > 0 && (msg[len - 1] == '\n' || msg[len - 1] == '\r'))
      msg[--len] = '\0';
    rc = conf_error(p, p->line, "dsn: invalid connection string: %s", msg);
    PQfreemem(msg);
    return rc;
  }
  PQconninfoFree(opts);
  return replace_string(p, field, arg);
}

static int set_pg_duration(sw_parser_t *p,
                           const sw_directive_t *d,
                           void *field,
                           const char *arg,
                           const char *arg2) {
  uint64_t v = 0;
  int rc = parse_duration(arg, &v);

  rc = check_range(p, d, "invalid duration", arg, rc, v, SW_MAX_PG_TIMEOUT);
  if (rc == 0)
    *(uint64_t *)field = v;
  return rc;
}

static int set_history(sw_parser_t *p,
                       const sw_directive_t *d,
                       void *field,
                       const char *arg,
                       const char *arg2) {
  uint64_t v = 0;
  int rc = parse_count(arg, &v);

  rc = check_range(p, d, "invalid number", arg, rc, v, SW_MAX_HISTORY);
  if (rc == 0)
    *(unsigned *)field = (unsigned)v;
  return rc;
}

/* A hold keeps clients waiting: at most an hour, and a queue of at most a
 * million requests (each holds a parsed request and its buffered body; see
 * num_hold_queue). */
static int set_hold_max(sw_parser_t *p,
                        const sw_directive_t *d,
                        void *field,
                        const char *arg,
                        const char *arg2) {
  return set_bounded_duration(p, d, field, arg, SW_MAX_HOLD);
}

/* A shell command line, run with /bin/sh -c as switchd's user. */
static int set_command(sw_parser_t *p,
                       const sw_directive_t *d,
                       void *field,
                       const char *arg,
                       const char *arg2) {
  if (*arg == '\0')
    return bad_value(p, d, "empty command", arg);
  return replace_string(p, field, arg);
}

/* "off" turns the socket off (NULL). A path longer than sun_path would only
 * fail at bind(), after the old socket was gone, so it is refused here. */
static int set_admin_socket(sw_parser_t *p,
                            const sw_directive_t *d,
                            void *field,
                            const char *arg,
                            const char *arg2) {
  char **socket_path = field;
  size_t max = sizeof(((struct sockaddr_un *)NULL)->sun_path) - 1;

  if (strcmp(arg, "off") == 0) {
    free(*socket_path);
    *socket_path = NULL;
    return 0;
  }
  if (*arg == '\0')
    return bad_value(p, d, "empty path", arg);
  if (strlen(arg) > max)
    return conf_error(p, p->line, "%s: path longer than %zu bytes '%s'",
                      d->name, max, arg);
  return replace_string(p, field, arg);
}

/* Numeric only: looking a name up would make parsing depend on NSS (LDAP,
 * a slow directory) and a reload on its mood. (uid_t)-1 is no one. */
static int add_allow_uid(sw_parser_t *p,
                         const sw_directive_t *d,
                         void *field,
                         const char *arg,
                         const char *arg2) {
  sw_admin_conf_t *admin = field;
  unsigned *slot;
  uint64_t v = 0;
  int rc = parse_count(arg, &v);

  rc = check_range(p, d, "expected a numeric uid, got", arg, rc, v,
                   (uint64_t)UINT32_MAX - 1);
  if (rc != 0)
    return rc;
  slot = grow((void **)&admin->allow_uids, &admin->nallow_uids, sizeof(*slot));
  if (slot == NULL)
    return out_of_memory(p);
  *slot = (unsigned)v;
  return 0;
}

static int set_admin_bind(sw_parser_t *p,
                          const sw_directive_t *d,
                          void *field,
                          const char *arg,
                          const char *arg2) {
  sw_admin_conf_t *admin = field;
  sw_bind_conf_t b;

  memset(&b, 0, sizeof(b));
  if (parse_hostport(arg, 1, &b.addr, b.name, sizeof(b.name)) != 0)
    return bad_value(p, d,
                     "invalid address (expected IP:PORT, [IPv6]:PORT"
                     " or *:PORT)",
                     arg);
  b.line = p->line;
  b.tls = -1; /* the admin API has no TLS */
  admin->bind = b;
  admin->has_bind = 1;
  return 0;
}

/* "100ms", "10s", "24h": a duration in the largest unit that divides it, for
 * messages about limits. */
static const char *format_duration(uint64_t ms, char *buf, size_t len) {
  if (ms != 0 && ms % (60 * 60 * 1000) == 0)
    snprintf(buf, len, "%lluh", (unsigned long long)(ms / (60 * 60 * 1000)));
  else if (ms != 0 && ms % (60 * 1000) == 0)
    snprintf(buf, len, "%llum", (unsigned long long)(ms / (60 * 1000)));
  else if (ms != 0 && ms % 1000 == 0)
    snprintf(buf, len, "%llus", (unsigned long long)(ms / 1000));
  else
    snprintf(buf, len, "%llums", (unsigned long long)ms);
  return buf;
}

/* A duration from the table's minimum (in ms) to max, with messages that
 * quote both limits in the unit an operator writes. */
static int set_bounded_duration(sw_parser_t *p,
                                const sw_directive_t *d,
                                uint64_t *field,
                                const char *arg,
                                uint64_t max) {
  char limit[32];
  uint64_t v = 0;
  int rc = parse_duration(arg, &v);

  if (rc == -ERANGE)
    return bad_value(p, d, "value too large", arg);
  if (rc != 0)
    return bad_value(p, d, "invalid duration", arg);
  if (v == 0)
    return bad_value(p, d, "must be greater than 0, got", arg);
  if (v < d->min)
    return conf_error(p, p->line, "%s: must be at least %s, got '%s'", d->name,
                      format_duration(d->min, limit, sizeof(limit)), arg);
  if (v > max)
    return conf_error(p, p->line, "%s: must be at most %s, got '%s'", d->name,
                      format_duration(max, limit, sizeof(limit)), arg);
  *field = v;
  return 0;
}

/* The automatic and manual windows: timers, no per-second state, so only
 * the bound that keeps flip time + window from wrapping. */
static int set_window(sw_parser_t *p,
                      const sw_directive_t *d,
                      void *field,
                      const char *arg,
                      const char *arg2) {
  return set_bounded_duration(p, d, field, arg, SW_MAX_WATCH_WINDOW);
}

/* verify_interval and notify_timeout: from 1ms to an hour. */
static int set_watch_timer(sw_parser_t *p,
                           const sw_directive_t *d,
                           void *field,
                           const char *arg,
                           const char *arg2) {
  return set_bounded_duration(p, d, field, arg, SW_MAX_WATCH_TIMER);
}

/* The baseline and ratio windows are read from the watch's per-second ring. */
static int set_ring_window(sw_parser_t *p,
                           const sw_directive_t *d,
                           void *field,
                           const char *arg,
                           const char *arg2) {
  return set_bounded_duration(p, d, field, arg, SW_MAX_RING_WINDOW);
}

/* Upstream statuses that are answers about the request rather than failures
 * of the code. Only 5xx can be errors in the first place, so anything else
 * here is a misunderstanding worth an error. A repeated line replaces the
 * list (the default 501 505 included), so the list is built aside and
 * stored only once every status was read. */
static int set_not_errors(sw_parser_t *p,
                          const sw_directive_t *d,
                          void *field,
                          const char *arg,
                          const char *arg2) {
  sw_watch_conf_t *w = field;
  int list[SW_CONFIG_WATCH_EXCLUDE_MAX];
  size_t n = (size_t)(p->argc - 1), i, j;

  if (n > SW_CONFIG_WATCH_EXCLUDE_MAX)
    return conf_error(p, p->line, "%s: at most %d statuses, got %zu", d->name,
                      SW_CONFIG_WATCH_EXCLUDE_MAX, n);
  for (i = 0; i < n; i++) {
    const char *s = p->argv[i + 1];
    uint64_t v = 0;
    if (parse_count(s, &v) != 0 || v < 500 || v > 599)
      return bad_value(p, d, "expected a status from 500 to 599, got", s);
    for (j = 0; j < i; j++) {
      if (list[j] == (int)v)
        return bad_value(p, d, "status listed twice", s);
    }
    list[i] = (int)v;
  }
  memcpy(w->not_errors, list, n * sizeof(list[0]));
  w->nnot_errors = n;
  return 0;
}

/* "off" turns a trigger off; anything else is its threshold, a count from
 * the table's minimum up. */
static int set_trigger_count(sw_parser_t *p,
                             const sw_directive_t *d,
                             int *enabled,
                             uint64_t *field,
                             const char *arg) {
  uint64_t v = 0;
  int rc;

  if (strcmp(arg, "off") == 0) {
    *enabled = 0;
    return 0;
  }
  rc = parse_count(arg, &v);
  rc = check_range(p, d, "expected a number or off, got", arg, rc, v,
                   UINT64_MAX);
  if (rc != 0)
    return rc;
  *enabled = 1;
  *field = v;
  return 0;
}

/* R1: 0 is allowed, "any error at all", still guarded by alpha. */
static int set_max_errors(sw_parser_t *p,
                          const sw_directive_t *d,
                          void *field,
                          const char *arg,
                          const char *arg2) {
  sw_watch_conf_t *w = field;

  return set_trigger_count(p, d, &w->r1, &w->max_errors, arg);
}

/* R3: the table's minimum of 1, since 0 errors in a row is every moment. */
static int set_max_consecutive(sw_parser_t *p,
                               const sw_directive_t *d,
                               void *field,
                               const char *arg,
                               const char *arg2) {
  sw_watch_conf_t *w = field;

  return set_trigger_count(p, d, &w->r3, &w->max_consecutive, arg);
}

/* A plain decimal: "0.001", ".5", "5", "1e-3", "2.5E-2", and with
 * allow_percent "50%" or "12.5%". No sign, no hex, no inf or nan, and no
 * locale: strtod would read "0,5" in some and "0x1p-3" in all. The digits
 * become an integer mantissa and a power of ten, and a negative power is a
 * division by an exact power of ten, so "0.001" and "1e-3" are both the
 * double nearest to 1/1000. */
static int parse_decimal(const char *s, int allow_percent, double *out) {
  /* 10^0 .. 10^22 are exact doubles, and so are their products by 10. */
  static const int exact_pow10 = 22;
  uint64_t mantissa = 0;
  long exp10 = 0;
  int digits = 0, significant = 0;
  const char *c = s;
  double v, scale;

  /* Beyond 15 significant digits the mantissa would no longer be exact;
   * the digits dropped only move the power of ten. */
  for (; *c >= '0' && *c <= '9'; c++, digits++) {
    if (significant < 15) {
      mantissa = mantissa * 10 + (uint64_t)(*c - '0');
      significant += mantissa != 0;
    } else {
      exp10++;
    }
  }
  if (*c == '.') {
    for (c++; *c >= '0' && *c <= '9'; c++, digits++) {
      if (significant < 15) {
        mantissa = mantissa * 10 + (uint64_t)(*c - '0');
        significant += mantissa != 0;
        exp10--;
      }
    }
  }
  if (digits == 0)
    return -EINVAL;
  if (*c == 'e' || *c == 'E') {
    long e = 0;
    int negative = 0;
    c++;
    if (*c == '+' || *c == '-')
      negative = *c++ == '-';
    if (*c < '0' || *c > '9')
      return -EINVAL;
    /* Past a thousand the value is 0 or infinite either way. */
    for (; *c >= '0' && *c <= '9'; c++)
      e = e < 1000 ? e * 10 + (*c - '0') : e;
    exp10 += negative ? -e : e;
  }
  if (allow_percent && *c == '%') {
    exp10 -= 2;
    c++;
  }
  if (*c != '\0')
    return -EINVAL;
  /* "0e999" is 0, not 0 times infinity. */
  if (mantissa == 0)
    exp10 = 0;

  v = (double)mantissa;
  scale = 1;
  if (exp10 < 0) {
    long k;
    for (k = 0; k < -exp10 && k < exact_pow10; k++)
      scale *= 10;
    v /= scale;
    if (-exp10 > exact_pow10)
      v /= pow(10, (double)(-exp10 - exact_pow10));
  } else if (exp10 > 0) {
    v *= pow(10, (double)exp10);
  }
  *out = v;
  return 0;
}

/* R1's significance level: how unlikely the errors must be as noise. */
static int set_alpha(sw_parser_t *p,
                     const sw_directive_t *d,
                     void *field,
                     const char *arg,
                     const char *arg2) {
  double v = 0;

  if (parse_decimal(arg, 0, &v) != 0)
    return bad_value(p, d, "expected a number such as 0.001 or 1e-3, got", arg);
  /* Written as a negation so that anything odd fails it. */
  if (!(v > 0 && v <= 1))
    return bad_value(p, d, "must be greater than 0 and at most 1, got", arg);
  *(double *)field = v;
  return 0;
}

/* R2's threshold: a fraction of the window's requests, "0.5" or "50%". */
static int set_max_error_ratio(sw_parser_t *p,
                               const sw_directive_t *d,
                               void *field,
                               const char *arg,
                               const char *arg2) {
  sw_watch_conf_t *w = field;
  double v = 0;

  if (strcmp(arg, "off") == 0) {
    w->r2 = 0;
    return 0;
  }
  if (parse_decimal(arg, 1, &v) != 0)
    return bad_value(p, d, "expected a ratio (0.5 or 50%) or off, got", arg);
  if (!(v > 0 && v <= 1))
    return bad_value(p, d, "must be greater than 0 and at most 1 (100%), got",
                     arg);
  w->r2 = 1;
  w->max_error_ratio = v;
  return 0;
}

/* A host name: dot-separated labels of letters, digits, '_' (seen in
 * internal names) and inner hyphens. A last label of digits only is how an
 * IPv4 address looks, so such a name must be one ("10.0.0.256" is a typo,
 * not a host name). */
static int valid_url_host(const char *host, size_t len) {
  char v4[INET_ADDRSTRLEN];
  struct in_addr addr;
  size_t i, label = 0;
  int all_digits = 1;

  if (len == 0 || len > 253)
    return 0;
  for (i = 0; i < len; i++) {
    char c = host[i];
    if (c == '.') {
      if (label == 0 || host[i - 1] == '-')
        return 0;
      label = 0;
      all_digits = 1;
      continue;
    }
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
          (c >= '0' && c <= '9') || c == '-' || c == '_'))
      return 0;
    if ((c == '-' && label == 0) || ++label > 63)
      return 0;
    if (c < '0' || c > '9')
      all_digits = 0;
  }
  if (label == 0 || host[len - 1] == '-')
    return 0;
  if (!all_digits)
    return 1;
  if (len >= sizeof(v4))
    return 0;
  memcpy(v4, host, len);
  v4[len] = '\0';
  return inet_pton(AF_INET, v4, &addr) == 1;
}

/* "http://HOST[:PORT][/PATH][?QUERY]": the webhook the watch posts its
 * events to. Only checked here, and stored as written: the notifier parses
 * it again when it starts, so nothing accepted here may be refused there
 * (see sw_notify.h). No user info, no fragment, no byte that would split
 * the request line. */
static int set_notify(sw_parser_t *p,
                      const sw_directive_t *d,
                      void *field,
                      const char *arg,
                      const char *arg2) {
  static const char scheme[] = "http://";
  const char *host, *end, *c;
  size_t hlen;

  if (strncasecmp(arg, "https://", 8) == 0)
    return bad_value(p, d,
                     "TLS notifications are not supported yet (use an "
                     "http:// URL), got",
                     arg);
  if (strncasecmp(arg, scheme, sizeof(scheme) - 1) != 0)
    return bad_value(p, d, "expected an http:// URL, got", arg);
  if (strlen(arg) > SW_MAX_NOTIFY_URL)
    return too_long(p, d, SW_MAX_NOTIFY_URL);

  host = arg + sizeof(scheme) - 1;
  end = host + strcspn(host, "/?");
  if (host[0] == '[') {
    char v6[INET6_ADDRSTRLEN];
    struct in6_addr addr;
    const char *rbracket = memchr(host, ']', (size_t)(end - host));
    hlen = rbracket ? (size_t)(rbracket - host - 1) : 0;
    if (hlen == 0 || hlen >= sizeof(v6))
      return bad_value(p, d, "invalid host in URL", arg);
    memcpy(v6, host + 1, hlen);
    v6[hlen] = '\0';
    if (inet_pton(AF_INET6, v6, &addr) != 1)
      return bad_value(p, d, "invalid host in URL", arg);
    c = rbracket + 1;
  } else {
    const char *colon = memchr(host, ':', (size_t)(end - host));
    c = colon ? colon : end;
    if (!valid_url_host(host, (size_t)(c - host)))
      return bad_value(p, d, "invalid host in URL", arg);
  }
  if (c < end) {
    char port[6];
    uint64_t v = 0;
    size_t plen = (size_t)(end - c - 1);
    /* At most five digits, "00080" included, as the notifier reads it. */
    if (*c != ':' || plen == 0 || plen >= sizeof(port))
      return bad_value(p, d, "invalid port in URL", arg);
    memcpy(port, c + 1, plen);
    port[plen] = '\0';
    if (parse_count(port, &v) != 0 || v == 0 || v > 65535)
      return bad_value(p, d, "invalid port in URL", arg);
  }
  for (c = end; *c != '\0'; c++) {
    if (is_unsafe_byte(*c) || *c == '#')
      return bad_value(p, d, "invalid character in URL path", arg);
  }
  return replace_string(p, field, arg);
}

static int set_notify_retries(sw_parser_t *p,
                              const sw_directive_t *d,
                              void *field,
                              const char *arg,
                              const char *arg2) {
  uint64_t v = 0;

  if (parse_count(arg, &v) != 0)
    return bad_value(p, d, "invalid number", arg);
  if (v > SW_MAX_NOTIFY_RETRIES)
    return conf_error(p, p->line, "%s: must be at most %d, got '%s'", d->name,
                      SW_MAX_NOTIFY_RETRIES, arg);
  *(unsigned *)field = (unsigned)v;
  return 0;
}

/* `certificate CERT_PEM KEY_PEM`: one more certificate for SNI, the first
 * being the default. Only the syntax is checked: the TLS module loads the
 * files, matches the key and refuses an expired certificate, and relative
 * paths are kept relative because resolving them is I/O too. */
static int add_certificate(sw_parser_t *p,
                           const sw_directive_t *d,
                           void *field,
                           const char *arg,
                           const char *arg2) {
  sw_tls_conf_t *tls = field;
  sw_tls_cert_conf_t *cert;

  /* An ocsp_response above the first certificate belongs to none; now that
   * the section has a certificate, that is the mistake to report. */
  if (p->ocsp_orphan_line != 0)
    return conf_error(p, p->ocsp_orphan_line,
                      "ocsp_response: no certificate line before it (it "
                      "applies to the certificate just above it)");
  if (tls->ncerts == SW_TLS_CERTS_MAX)
    return conf_error(p, p->line, "%s: at most %d per listen section", d->name,
                      SW_TLS_CERTS_MAX);
  if (*arg == '\0' || *arg2 == '\0')
    return bad_value(p, d, "empty path", *arg == '\0' ? arg : arg2);
  cert = &tls->certs[tls->ncerts];
  cert->cert = strdup(arg);
  cert->key = strdup(arg2);
  if (cert->cert == NULL || cert->key == NULL) {
    free(cert->cert);
    free(cert->key);
    memset(cert, 0, sizeof(*cert));
    return out_of_memory(p);
  }
  cert->line = p->line;
  tls->ncerts++;
  return 0;
}

/* `ocsp_response FILE`: the DER response stapled for the certificate line
 * just above it. */
static int set_ocsp_response(sw_parser_t *p,
                             const sw_directive_t *d,
                             void *field,
                             const char *arg,
                             const char *arg2) {
  sw_tls_conf_t *tls = field;
  sw_tls_cert_conf_t *cert;

  if (*arg == '\0')
    return bad_value(p, d, "empty path", arg);
  /* Whether this is a response above the first certificate or a TLS line
   * in a section with no certificate at all is known only later: the first
   * certificate line or the end of the section reports it. */
  if (tls->ncerts == 0) {
    if (p->ocsp_orphan_line == 0)
      p->ocsp_orphan_line = p->line;
    return 0;
  }
  cert = &tls->certs[tls->ncerts - 1];
  if (cert->ocsp != NULL)
    return conf_error(p, p->line,
                      "%s: the certificate of line %d already has one (line "
                      "%d)",
                      d->name, cert->line, cert->ocsp_line);
  cert->ocsp = strdup(arg);
  if (cert->ocsp == NULL)
    return out_of_memory(p);
  cert->ocsp_line = p->line;
  return 0;
}

/* "1.2" or "1.3", stored as 12 or 13. Older versions are broken and are
 * not offered at all. */
static int set_tls_version(sw_parser_t *p,
                           const sw_directive_t *d,
                           void *field,
                           const char *arg,
                           const char *arg2) {
  if (strcmp(arg, "1.2") == 0)
    *(int *)field = 12;
  else if (strcmp(arg, "1.3") == 0)
    *(int *)field = 13;
  else
    return bad_value(p, d, "expected 1.2 or 1.3, got", arg);
  return 0;
}

/* An OpenSSL cipher list, handed to OpenSSL as written: its own parser is
 * the only judge of the names, and the TLS module reports what it refuses. */
static int set_cipher_list(sw_parser_t *p,
                           const sw_directive_t *d,
                           void *field,
                           const char *arg,
                           const char *arg2) {
  if (*arg == '\0')
    return bad_value(p, d, "empty value", arg);
  return replace_string(p, field, arg);
}

/* tls_ticket_rotate and tls_session_timeout: up to a day. */
static int set_tls_day(sw_parser_t *p,
                       const sw_directive_t *d,
                       void *field,
                       const char *arg,
                       const char *arg2) {
  return set_bounded_duration(p, d, field, arg, SW_MAX_TLS_SESSION_MS);
}

static int set_handshake_timeout(sw_parser_t *p,
                                 const sw_directive_t *d,
                                 void *field,
                                 const char *arg,
                                 const char *arg2) {
  return set_bounded_duration(p, d, field, arg, SW_MAX_TLS_HANDSHAKE_MS);
}

static int set_session_cache(sw_parser_t *p,
                             const sw_directive_t *d,
                             void *field,
                             const char *arg,
                             const char *arg2) {
  uint64_t v = 0;
  int rc = parse_count(arg, &v);

  if (rc != 0 && rc != -ERANGE)
    return bad_value(p, d, "invalid number", arg);
  if (rc == -ERANGE || v > SW_MAX_TLS_SESSION_CACHE)
    return conf_error(p, p->line, "%s: must be at most %d, got '%s'", d->name,
                      SW_MAX_TLS_SESSION_CACHE, arg);
  *(size_t *)field = (size_t)v;
  return 0;
}

/* `tls on|off` of an upstream section. The line of `tls on` is kept: the
 * TLS module reports a CA file it cannot load there. */
static int set_upstream_tls(sw_parser_t *p,
                            const sw_directive_t *d,
                            void *field,
                            const char *arg,
                            const char *arg2) {
  sw_upstream_conf_t *up = field;
  int rc = set_on_off(p, d, &up->tls, arg, NULL);

  if (rc == 0)
    up->tls_line = up->tls ? p->line : 0;
  return rc;
}

/* `tls_name HOST`: sent as SNI and looked for among the DNS names of the
 * server's certificate, so it must be a DNS name as certificates carry
 * them: dot-separated labels of letters, digits and inner hyphens, without
 * the trailing dot of a fully qualified name, which SNI never carries. An
 * IP address is refused rather than sent: SNI cannot carry one, and
 * checking a server's address is what leaving tls_name out already does. A
 * last label of digits only is how an IPv4 address looks (no top-level
 * domain is numeric), so "10.0.0.256" is a typo, not a name. */
static int set_tls_name(sw_parser_t *p,
                        const sw_directive_t *d,
                        void *field,
                        const char *arg,
                        const char *arg2) {
  unsigned char addr[sizeof(struct in6_addr)];
  char ip[INET6_ADDRSTRLEN] = "";
  size_t len = strlen(arg), i, label = 0;
  int all_digits = 1;

  if (len == 0)
    return bad_value(p, d, "empty host name", arg);
  if (len > SW_MAX_DNS_NAME)
    return too_long(p, d, SW_MAX_DNS_NAME);
  /* Bracketed as in a server address, or bare. */
  if (len > 2 && arg[0] == '[' && arg[len - 1] == ']' && len - 2 < sizeof(ip))
    memcpy(ip, arg + 1, len - 2);
  else if (len < sizeof(ip))
    memcpy(ip, arg, len + 1);
  if (inet_pton(AF_INET, ip, addr) == 1 || inet_pton(AF_INET6, ip, addr) == 1)
    return conf_error(p, p->line,
                      "%s: '%s' is an IP address, not a host name (leave "
                      "tls_name out to check the server's IP address "
                      "against the certificate's IP SANs)",
                      d->name, arg);
  if (len > 1 && arg[len - 1] == '.' && arg[len - 2] != '.')
    return conf_error(p, p->line,
                      "%s: '%s' ends with a dot (write the name without it)",
                      d->name, arg);
  for (i = 0; i < len; i++) {
    char c = arg[i];
    if (c == '.') {
      if (label == 0 || arg[i - 1] == '-')
        return bad_value(p, d, "invalid host name", arg);
      label = 0;
      all_digits = 1;
      continue;
    }
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
          (c >= '0' && c <= '9') || c == '-'))
      return bad_value(p, d, "invalid host name", arg);
    if ((c == '-' && label == 0) || ++label > SW_MAX_DNS_LABEL)
      return bad_value(p, d, "invalid host name", arg);
    if (c < '0' || c > '9')
      all_digits = 0;
  }
  if (label == 0 || arg[len - 1] == '-' || all_digits)
    return bad_value(p, d, "invalid host name", arg);
  return replace_string(p, field, arg);
}

/* \r counts as blank so that files saved with CRLF endings parse. */
static int is_blank(char c) {
  return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

/* Splits one line into arguments: whitespace separates them, `#` outside
 * quotes ends the line, and double quotes group (with \" and \\ as the only
 * escapes). `out` has room for len + 1 bytes, which always suffices because
 * every argument but the last is followed by at least one separator. */
static int split_line(sw_parser_t *p,
                      const char *s,
                      size_t len,
                      char *out,
                      char **argv,
                      int *argc) {
  size_t r = 0, w = 0;
  int n = 0;

  for (;;) {
    char *arg = out + w;
    int quoted = 0;

    while (r < len && is_blank(s[r]))
      r++;
    if (r == len || s[r] == '#')
      break;
    while (r < len) {
      char c = s[r];
      if (!quoted && (is_blank(c) || c == '#'))
        break;
      r++;
      if (c == '"') {
        quoted = !quoted;
        continue;
      }
      if (quoted && c == '\\' && r < len && (s[r] == '"' || s[r] == '\\'))
        c = s[r++];
      out[w++] = c;
    }
    if (quoted)
      return conf_error(p, p->line, "unterminated quoted string");
    out[w++] = '\0';
    if (n < SW_CONF_MAX_ARGS)
      argv[n] = arg;
    n++;
  }
  *argc = n;
  return 0;
}

/* SW_SECTION_NONE finds the name in any section: the error path uses it to
 * tell "in the wrong section" from "no such directive". */
static const sw_directive_t *find_directive(sw_section_t section,
                                            const char *name) {
  size_t i;

  for (i = 0; i < SW_NDIRECTIVES; i++) {
    const sw_directive_t *d = &sw_directives[i];
    if ((section == SW_SECTION_NONE || d->section == section) &&
        strcmp(d->name, name) == 0)
      return d;
  }
  return NULL;
}

/* Frees what one listen section's TLS settings own and zeroes them. */
static void tls_conf_clear(sw_tls_conf_t *tls) {
  size_t i;

  for (i = 0; i < tls->ncerts; i++) {
    free(tls->certs[i].cert);
    free(tls->certs[i].key);
    free(tls->certs[i].ocsp);
  }
  free(tls->ciphers);
  free(tls->ciphersuites);
  memset(tls, 0, sizeof(*tls));
}

/* A new listen section: its binds start here and its TLS settings start
 * from the defaults of sw_tls_conf_t, whatever an earlier section set. */
static void open_listen(sw_parser_t *p) {
  sw_tls_conf_t *tls = &p->tls;
  size_t i;

  tls_conf_clear(tls);
  tls->min_version = 12;
  tls->tickets = 1;
  tls->ticket_rotate_ms = 60 * 60 * 1000;
  tls->session_cache = 20000;
  tls->session_timeout_ms = 5 * 60 * 1000;
  tls->handshake_timeout_ms = 10 * 1000;
  tls->line = p->line;
  p->listen_first_bind = p->cfg->nbinds;
  p->tls_first_line = 0;
  p->tls_first_name = NULL;
  p->ocsp_orphan_line = 0;
  for (i = 0; i < SW_NDIRECTIVES; i++) {
    if (sw_directives[i].flags & SW_DIR_TLS)
      p->seen[i][0] = 0;
  }
}

/* Ends the open listen section, at the next section keyword or the end of
 * the file. With a certificate, its TLS settings become the next entry of
 * cfg->tls and every bind of the section points at it, whether written
 * before or after the certificates; without one, its binds are plain HTTP
 * and a TLS directive is a mistake (a forgotten or misplaced certificate)
 * that would otherwise silently serve HTTP. */
static int close_listen(sw_parser_t *p) {
  sw_config_t *cfg = p->cfg;
  sw_tls_conf_t *slot;
  int index = -1;
  size_t i;

  if (p->tls.ncerts == 0 && p->tls_first_line != 0)
    return conf_error(p, p->tls_first_line,
                      "%s: this listen section has no certificate",
                      p->tls_first_name);
  if (p->tls.ncerts > 0) {
    /* Certificates nothing serves are a bind put in the wrong section. */
    if (cfg->nbinds == p->listen_first_bind)
      return conf_error(p, p->tls.line,
                        "listen: this section has a certificate but no bind");
    slot = grow((void **)&cfg->tls, &cfg->ntls, sizeof(*slot));
    if (slot == NULL)
      return out_of_memory(p);
    /* The strings move to cfg. */
    *slot = p->tls;
    memset(&p->tls, 0, sizeof(p->tls));
    index = (int)(cfg->ntls - 1);
  }
  for (i = p->listen_first_bind; i < cfg->nbinds; i++)
    cfg->binds[i].tls = index;
  return 0;
}

/* Ends the open upstream section. tls_ca, tls_verify and tls_name without
 * `tls on` would be ignored and the colour spoken to in plain HTTP, which
 * whoever wrote them did not mean; the first of them is reported, whether
 * `tls` was left out, set off, or is simply not written yet. The lines come
 * from seen[], which is per colour, and each colour has one section. */
static int close_upstream(sw_parser_t *p) {
  const sw_directive_t *first = NULL;
  int line = 0;
  size_t i;

  if (p->cfg->upstream[p->colour].tls)
    return 0;
  for (i = 0; i < SW_NDIRECTIVES; i++) {
    int at = p->seen[i][p->colour];
    if ((sw_directives[i].flags & SW_DIR_UPS_TLS) && at != 0 &&
        (line == 0 || at < line)) {
      line = at;
      first = &sw_directives[i];
    }
  }
  if (first != NULL)
    return conf_error(p, line, "%s: this upstream has no `tls on`",
                      first->name);
  return 0;
}

/* Ends the open section, at the next section keyword or the end of the
 * file: the checks that need a whole section. */
static int close_section(sw_parser_t *p) {
  if (p->section == SW_SECTION_LISTEN)
    return close_listen(p);
  if (p->section == SW_SECTION_UPSTREAM)
    return close_upstream(p);
  return 0;
}

static int open_section(sw_parser_t *p,
                        sw_section_t section,
                        char **argv,
                        int argc) {
  sw_upstream_conf_t *up;
  sw_colour_t colour;
  int rc;

  rc = close_section(p);
  if (rc != 0)
    return rc;
  if (section != SW_SECTION_UPSTREAM) {
    if (argc != 1)
      return conf_error(p, p->line, "%s: expected no arguments, got %d",
                        argv[0], argc - 1);
    if (section == SW_SECTION_LISTEN)
      open_listen(p);
    /* Two database sections would read as two databases; the verifier
     * checks one. Two watch sections would read as two watches; there is
     * one per flip. */
    if (section == SW_SECTION_DATABASE || section == SW_SECTION_WATCH) {
      int *first = section == SW_SECTION_DATABASE ? &p->cfg->database.line
                                                  : &p->cfg->watch.line;
      if (*first != 0)
        return conf_error(p, p->line,
                          "duplicate section '%s' (first at line %d)", argv[0],
                          *first);
      *first = p->line;
    }
    p->section = section;
    return 0;
  }
  if (argc == 1)
    return conf_error(p, p->line,
                      "upstream: expected a colour (blue or green)");
  if (argc != 2)
    return conf_error(p, p->line, "upstream: expected 1 argument, got %d",
                      argc - 1);
  if (strcmp(argv[1], "blue") == 0)
    colour = SW_BLUE;
  else if (strcmp(argv[1], "green") == 0)
    colour = SW_GREEN;
  else
    return conf_error(p, p->line,
                      "upstream: unknown colour '%s' (expected blue or green)",
                      argv[1]);
  up = &p->cfg->upstream[colour];
  if (up->line != 0)
    return conf_error(p, p->line,
                      "duplicate section 'upstream %s' (first at line %d)",
                      argv[1], up->line);
  up->line = p->line;
  p->section = section;
  p->colour = colour;
  return 0;
}

/* Where a directive's fields live for the open section. */
static char *section_base(sw_parser_t *p, sw_section_t section) {
  switch (section) {
    case SW_SECTION_UPSTREAM:
      return (char *)&p->cfg->upstream[p->colour];
    case SW_SECTION_DATABASE:
      return (char *)&p->cfg->database;
    case SW_SECTION_CUTOVER:
      return (char *)&p->cfg->cutover;
    case SW_SECTION_WATCH:
      return (char *)&p->cfg->watch;
    case SW_SECTION_ADMIN:
      return (char *)&p->cfg->admin;
    case SW_SECTION_NONE:
    case SW_SECTION_GLOBAL:
    case SW_SECTION_CLIENT:
    case SW_SECTION_LISTEN:
      break;
  }
  return (char *)p->cfg;
}

/* "'listen'" or "'listen' or 'admin'": every section that has a directive
 * of this name, in table order, for the wrong-section hint. */
static void sections_with(const char *name, char *out, size_t outlen) {
  const char *found[SW_NDIRECTIVES];
  size_t n = 0, i, j, len = 0;

  for (i = 0; i < SW_NDIRECTIVES; i++) {
    const sw_directive_t *d = &sw_directives[i];
    if (strcmp(d->name, name) == 0)
      found[n++] = d->section == SW_SECTION_UPSTREAM
                       ? "upstream"
                       : section_name(d->section, SW_BLUE);
  }
  out[0] = '\0';
  for (j = 0; j < n && len < outlen; j++) {
    const char *sep = j == 0 ? "" : j + 1 == n ? " or " : ", ";
    int w = snprintf(out + len, outlen - len, "%s'%s'", sep, found[j]);
    if (w < 0)
      break;
    len += (size_t)w;
  }
}

static int parse_directive(sw_parser_t *p, char **argv, int argc) {
  const sw_directive_t *d = NULL;
  const sw_directive_t *elsewhere;
  char where[128];
  int slot, *seen, nargs;

  if (p->section != SW_SECTION_NONE)
    d = find_directive(p->section, argv[0]);
  if (d == NULL) {
    /* Before the first section a word is either a directive written too
     * early or a section keyword we do not know; say which. */
    elsewhere = find_directive(SW_SECTION_NONE, argv[0]);
    if (p->section == SW_SECTION_NONE && elsewhere != NULL)
      return conf_error(p, p->line, "directive '%s' outside any section",
                        argv[0]);
    if (p->section == SW_SECTION_NONE)
      return conf_error(p, p->line, "unknown section keyword '%s'", argv[0]);
    /* A directive in the wrong section is the likeliest typo of all; the
     * hint saves a trip to the documentation. */
    if (elsewhere != NULL) {
      sections_with(argv[0], where, sizeof(where));
      return conf_error(p, p->line,
                        "unknown directive '%s' in section '%s' (it belongs "
                        "in section %s)",
                        argv[0], section_name(p->section, p->colour), where);
    }
    return conf_error(p, p->line, "unknown directive '%s' in section '%s'",
                      argv[0], section_name(p->section, p->colour));
  }
  nargs = (d->flags & SW_DIR_PAIR) ? 2 : 1;
  if (d->flags & SW_DIR_MANY) {
    if (argc < 2)
      return conf_error(p, p->line, "%s: expected at least 1 argument, got 0",
                        d->name);
  } else if (argc != nargs + 1) {
    return conf_error(p, p->line, "%s: expected %d argument%s, got %d", d->name,
                      nargs, nargs == 1 ? "" : "s", argc - 1);
  }
  p->argv = argv;
  p->argc = argc;

  slot = d->section == SW_SECTION_UPSTREAM ? (int)p->colour : 0;
  seen = &p->seen[d - sw_directives][slot];
  if (!(d->flags & (SW_DIR_LIST | SW_DIR_REPLACE)) && *seen != 0)
    return conf_error(p, p->line,
                      "duplicate directive '%s' (first set at line %d)",
                      d->name, *seen);
  *seen = p->line;

  if (d->flags & SW_DIR_TLS) {
    /* Kept for close_listen, which needs the first of them when the
     * section turns out to have no certificate. */
    if (p->tls_first_line == 0) {
      p->tls_first_line = p->line;
      p->tls_first_name = d->name;
    }
    return d->handler(p, d, (char *)&p->tls + d->offset, argv[1],
                      nargs == 2 ? argv[2] : NULL);
  }
  return d->handler(p, d, section_base(p, d->section) + d->offset, argv[1],
                    nargs == 2 ? argv[2] : NULL);
}

static int parse_line(sw_parser_t *p, const char *s, size_t len, char *buf) {
  char *argv[SW_CONF_MAX_ARGS];
  int argc = 0, rc;

  if (memchr(s, '\0', len) != NULL)
    return conf_error(p, p->line, "NUL byte in line");
  rc = split_line(p, s, len, buf, argv, &argc);
  if (rc != 0 || argc == 0)
    return rc;

  if (strcmp(argv[0], "global") == 0)
    return open_section(p, SW_SECTION_GLOBAL, argv, argc);
  if (strcmp(argv[0], "client") == 0)
    return open_section(p, SW_SECTION_CLIENT, argv, argc);
  if (strcmp(argv[0], "listen") == 0)
    return open_section(p, SW_SECTION_LISTEN, argv, argc);
  if (strcmp(argv[0], "upstream") == 0)
    return open_section(p, SW_SECTION_UPSTREAM, argv, argc);
  if (strcmp(argv[0], "database") == 0)
    return open_section(p, SW_SECTION_DATABASE, argv, argc);
  if (strcmp(argv[0], "cutover") == 0)
    return open_section(p, SW_SECTION_CUTOVER, argv, argc);
  if (strcmp(argv[0], "watch") == 0)
    return open_section(p, SW_SECTION_WATCH, argv, argc);
  if (strcmp(argv[0], "admin") == 0)
    return open_section(p, SW_SECTION_ADMIN, argv, argc);
  return parse_directive(p, argv, argc);
}

/* The line a single-valued directive was set on, or 0. */
static int seen_line(const sw_parser_t *p,
                     sw_section_t section,
                     const char *name,
                     int slot) {
  const sw_directive_t *d = find_directive(section, name);

  return d ? p->seen[d - sw_directives][slot] : 0;
}

/* A probe that may take as long as the interval would overlap the next one
 * and a slow server would be probed twice at once. Points at whichever of
 * the two was written (timeout first), else at the section. */
static int validate_health(sw_parser_t *p) {
  int c;

  for (c = 0; c < SW_COLOURS; c++) {
    const sw_health_conf_t *h = &p->cfg->upstream[c].health;
    int tline = seen_line(p, SW_SECTION_UPSTREAM, "health_timeout", c);
    int iline = seen_line(p, SW_SECTION_UPSTREAM, "health_interval", c);

    if (h->timeout_ms < h->interval_ms)
      continue;
    if (tline != 0)
      return conf_error(p, tline,
                        "health_timeout: %llums must be less than "
                        "health_interval (%llums)",
                        (unsigned long long)h->timeout_ms,
                        (unsigned long long)h->interval_ms);
    /* Only the interval was written: the default timeout is what clashes. */
    return conf_error(p, iline ? iline : p->cfg->upstream[c].line,
                      "health_interval: %llums must be greater than "
                      "health_timeout (%llums)",
                      (unsigned long long)h->interval_ms,
                      (unsigned long long)h->timeout_ms);
  }
  return 0;
}

static const char *require_name(sw_require_kind_t kind) {
  switch (kind) {
    case SW_REQUIRE_MIGRATION:
      return "require_migration";
    case SW_REQUIRE_COLUMN:
      return "require_column";
    case SW_REQUIRE_QUERY:
      return "require_query";
  }
  return "require";
}

/* A requirement needs a database to be checked against; without one every
 * cutover would be inconclusive, which is better said now. Points at the
 * first require line of the file, whichever colour it is in. */
static int validate_database(sw_parser_t *p) {
  const sw_config_t *cfg = p->cfg;
  const sw_require_t *first = NULL;
  int c;

  if (cfg->database.dsn != NULL)
    return 0;
  for (c = 0; c < SW_COLOURS; c++) {
    const sw_upstream_conf_t *up = &cfg->upstream[c];
    if (up->nrequires > 0 &&
        (first == NULL || up->requires[0].line < first->line))
    first = &up->requires[0];
  }
  if (first != NULL)
    return conf_error(p, first->line,
                      "%s: no database to check it against (add a "
                      "'database' section with a 'dsn')",
                      require_name(first->kind));
  return 0;
}

/* The manual window is counted from the flip, so one shorter than the
 * automatic window would end before it. Points at manual_window when it was
 * written, else at the section that set auto_window. */
static int validate_watch(sw_parser_t *p) {
  const sw_watch_conf_t *w = &p->cfg->watch;
  int line = seen_line(p, SW_SECTION_WATCH, "manual_window", 0);

  if (w->manual_window_ms >= w->auto_window_ms)
    return 0;
  if (line != 0)
    return conf_error(p, line,
                      "manual_window: %llums must not be shorter than "
                      "auto_window (%llums)",
                      (unsigned long long)w->manual_window_ms,
                      (unsigned long long)w->auto_window_ms);
  /* Only auto_window was written: the default manual window is what
   * clashes, and the section is where to add one. */
  return conf_error(p, w->line,
                    "watch: auto_window (%llums) is longer than the default "
                    "manual_window (%llums); set manual_window",
                    (unsigned long long)w->auto_window_ms,
                    (unsigned long long)w->manual_window_ms);
}

static int validate_admin(sw_parser_t *p) {
  const sw_admin_conf_t *admin = &p->cfg->admin;
  size_t i;

  if (!admin->has_bind)
    return 0;
  /* Over TCP the peer's uid is unknown: the token is the only thing that
   * tells an operator from anyone who can reach the port. */
  if (admin->token_file == NULL)
    return conf_error(p, admin->bind.line,
                      "bind: the admin TCP listener needs a 'token_file' "
                      "(bearer token for mutating calls)");
  /* Compared as normalised names, like two listen binds. */
  for (i = 0; i < p->cfg->nbinds; i++) {
    const sw_bind_conf_t *b = &p->cfg->binds[i];
    if (strcmp(b->name, admin->bind.name) == 0)
      return conf_error(p, admin->bind.line,
                        "bind: admin address '%s' is also a listen bind "
                        "(line %d)",
                        admin->bind.name, b->line);
  }
  return 0;
}

/* Checks that need the whole file. Each points at the line most likely to
 * need editing, falling back to the end of the file. */
static int validate(sw_parser_t *p, int eof_line) {
  const sw_config_t *cfg = p->cfg;
  const sw_upstream_conf_t *live = &cfg->upstream[cfg->live];
  const char *colour = sw_colour_name(cfg->live);
  int line, rc;

  if (cfg->nbinds == 0)
    return conf_error(p, eof_line,
                      "no bind: at least one 'listen' section with a 'bind' "
                      "is required");

  if (live->nservers == 0) {
    line = seen_line(p, SW_SECTION_GLOBAL, "live", 0);
    if (line == 0)
      line = live->line ? live->line : eof_line;
    return conf_error(p, line,
                      "live: colour '%s' has no server (add a 'server' to "
                      "section 'upstream %s')",
                      colour, colour);
  }

  /* One request or response buffer larger than the whole budget could never
   * be filled, so every large body would fail at runtime instead of here. */
  if (cfg->request_buffer > cfg->buffer_budget ||
      cfg->response_buffer > cfg->buffer_budget) {
    const char *name = cfg->request_buffer > cfg->buffer_budget
                           ? "request_buffer"
                           : "response_buffer";
    uint64_t v = cfg->request_buffer > cfg->buffer_budget
                     ? cfg->request_buffer
                     : cfg->response_buffer;
    line = seen_line(p, SW_SECTION_CLIENT, name, 0);
    if (line == 0)
      line = seen_line(p, SW_SECTION_GLOBAL, "buffer_budget", 0);
    if (line == 0)
      line = eof_line;
    return conf_error(p, line,
                      "%s: %llu bytes is larger than buffer_budget (%llu "
                      "bytes)",
                      name, (unsigned long long)v,
                      (unsigned long long)cfg->buffer_budget);
  }

  /* max_header_size >= 1 KiB is the table's minimum, checked where the
   * value is read so the message can quote it. */
  rc = validate_health(p);
  if (rc == 0)
    rc = validate_database(p);
  if (rc == 0)
    rc = validate_watch(p);
  if (rc == 0)
    rc = validate_admin(p);
  return rc;
}

static int set_defaults(sw_config_t *cfg, const char *file) {
  int c;

  cfg->file = strdup(file);
  cfg->live = SW_BLUE;
  cfg->error_log = strdup("stderr");
  cfg->access_log = strdup("off");
  cfg->log_level = SW_LOG_INFO;
  cfg->pid_file = NULL;
  cfg->shutdown_timeout_ms = 30 * 1000;
  cfg->buffer_budget = 256 * SW_KIB * SW_KIB;

  cfg->header_timeout_ms = 10 * 1000;
  cfg->idle_timeout_ms = 60 * 1000;
  cfg->body_timeout_ms = 60 * 1000;
  cfg->send_timeout_ms = 60 * 1000;
  cfg->tunnel_timeout_ms = 60 * 60 * 1000;
  cfg->min_send_rate = SW_KIB;
  cfg->max_header_size = 16 * SW_KIB;
  cfg->max_headers = 100;
  cfg->max_url = 8 * SW_KIB;
  cfg->max_body = 64 * SW_KIB * SW_KIB;
  cfg->request_buffer = SW_KIB * SW_KIB;
  cfg->response_buffer = SW_KIB * SW_KIB;

  for (c = 0; c < SW_COLOURS; c++) {
    sw_upstream_conf_t *up = &cfg->upstream[c];
    up->connect_timeout_ms = 5 * 1000;
    up->response_timeout_ms = 60 * 1000;
    up->idle_timeout_ms = 1000;
    up->max_idle = 64;
    /* Plain HTTP unless `tls on`; with it, verified by default. */
    up->tls = 0;
    up->tls_ca = NULL;
    up->tls_verify = 1;
    up->tls_name = NULL;
    up->tls_line = 0;

    /* The seed's detailed health endpoint; its thresholds are DESIGN §9's. */
    up->health.path = strdup("/health/detailed/");
    up->health.host = NULL;
    up->health.status_min = 200;
    up->health.status_max = 299;
    up->health.body = NULL;
    up->health.interval_ms = 2 * 1000;
    up->health.timeout_ms = 1000;
    up->health.rise = 3;
    up->health.fall = 3;
    up->health.enabled = 1;
    if (up->health.path == NULL)
      return -ENOMEM;
  }

  cfg->database.dsn = NULL;
  cfg->database.connect_timeout_ms = 5 * 1000;
  cfg->database.statement_timeout_ms = 5 * 1000;
  cfg->database.lock_timeout_ms = 1000;

  cfg->cutover.gate_timeout_ms = 10 * 60 * 1000;
  cfg->cutover.drain_timeout_ms = 30 * 1000;
  cfg->cutover.state_file = NULL;
  cfg->cutover.history = 50;
  cfg->cutover.hold_max_ms = 2 * 1000;
  cfg->cutover.hold_queue = 2000;
  cfg->cutover.rollback_migrate = NULL;
  cfg->cutover.rollback_migrate_timeout_ms = 60 * 1000;

  /* DESIGN §4 and §5, the same values as sw_watch_params_default. */
  cfg->watch.enabled = 1;
  cfg->watch.auto_window_ms = SW_WATCH_DEFAULT_AUTO_WINDOW_MS;
  cfg->watch.manual_window_ms = SW_WATCH_DEFAULT_MANUAL_WINDOW_MS;
  cfg->watch.baseline_window_ms = SW_WATCH_DEFAULT_BASELINE_WINDOW_MS;
  cfg->watch.min_requests = SW_WATCH_DEFAULT_MIN_REQUESTS;
  cfg->watch.not_errors[0] = 501;
  cfg->watch.not_errors[1] = 505;
  cfg->watch.nnot_errors = 2;
  cfg->watch.r1 = 1;
  cfg->watch.max_errors = SW_WATCH_DEFAULT_MAX_ERRORS;
  cfg->watch.alpha = SW_WATCH_DEFAULT_ALPHA;
  cfg->watch.r2 = 1;
  cfg->watch.max_error_ratio = SW_WATCH_DEFAULT_MAX_ERROR_RATIO;
  cfg->watch.ratio_window_ms = SW_WATCH_DEFAULT_R2_WINDOW_MS;
  cfg->watch.r3 = 1;
  cfg->watch.max_consecutive = SW_WATCH_DEFAULT_MAX_CONSECUTIVE;
  cfg->watch.r4 = 1;
  cfg->watch.verify_interval_ms = 10 * 1000;
  cfg->watch.notify = NULL;
  cfg->watch.notify_timeout_ms = 5 * 1000;
  cfg->watch.notify_retries = 3;

  cfg->admin.socket = strdup(SW_CONFIG_ADMIN_SOCKET);
  cfg->admin.token_file = NULL;
  cfg->admin.metrics_open = 0;
  cfg->admin.bind.tls = -1;

  if (cfg->file == NULL || cfg->error_log == NULL || cfg->access_log == NULL ||
      cfg->admin.socket == NULL)
    return -ENOMEM;
  return 0;
}

int sw_config_parse(const char *file,
                    const char *text,
                    size_t len,
                    sw_config_t **out,
                    char *err,
                    size_t errlen) {
  sw_parser_t p;
  const char *pos, *end;
  char *buf;
  int rc = 0;

  *out = NULL;
  if (err != NULL && errlen > 0)
    err[0] = '\0';
  if (file == NULL)
    file = "(config)";
  if (text == NULL)
    len = 0;
  pos = text ? text : "";
  end = pos + len;

  memset(&p, 0, sizeof(p));
  p.file = file;
  p.err = err;
  p.errlen = errlen;
  /* One scratch buffer for the arguments of every line: no line is longer
   * than the text. */
  buf = malloc(len + 1);
  p.cfg = calloc(1, sizeof(*p.cfg));
  if (buf == NULL || p.cfg == NULL || set_defaults(p.cfg, file) != 0)
    rc = out_of_memory(&p);

  while (rc == 0 && pos < end) {
    const char *nl = memchr(pos, '\n', (size_t)(end - pos));
    const char *eol = nl ? nl : end;
    p.line++;
    rc = parse_line(&p, pos, (size_t)(eol - pos), buf);
    pos = nl ? nl + 1 : end;
  }
  if (rc == 0)
    rc = close_section(&p);
  /* An empty file still has a line 1 to point at. */
  if (rc == 0)
    rc = validate(&p, p.line > 0 ? p.line : 1);

  if (rc == 0)
    *out = p.cfg;
  else
    sw_config_free(p.cfg);
  /* Set only when the parse stopped inside a listen section. */
  tls_conf_clear(&p.tls);
  free(buf);
  return rc;
}

int sw_config_load(const char *path,
                   sw_config_t **out,
                   char *err,
                   size_t errlen) {
  char *text = NULL;
  size_t len = 0, cap = 0;
  int fd, rc, error = 0;

  *out = NULL;
  fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    error = errno;
  while (fd >= 0 && error == 0) {
    ssize_t n;
    if (len == cap) {
      char *bigger;
      if (cap >= SW_CONF_MAX_FILE) {
        error = EFBIG;
        break;
      }
      cap = cap ? cap * 2 : 4096;
      bigger = realloc(text, cap);
      if (bigger == NULL) {
        error = ENOMEM;
        break;
      }
      text = bigger;
    }
    n = read(fd, text + len, cap - len);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      error = errno;
    else if (n == 0)
      break;
    else
      len += (size_t)n;
  }
  if (fd >= 0)
    close(fd);
  if (error != 0) {
    if (err != NULL && errlen > 0)
      snprintf(err, errlen, "%s: cannot read: %s", path, strerror(error));
    free(text);
    return SW_ECONFIG;
  }

  rc = sw_config_parse(path, text ? text : "", len, out, err, errlen);
  free(text);
  return rc;
}

void sw_config_free(sw_config_t *cfg) {
  size_t i;
  int c;

  if (cfg == NULL)
    return;
  free(cfg->file);
  free(cfg->error_log);
  free(cfg->access_log);
  free(cfg->pid_file);
  free(cfg->binds);
  for (i = 0; i < cfg->ntls; i++)
    tls_conf_clear(&cfg->tls[i]);
  free(cfg->tls);
  free(cfg->trusted);
  for (c = 0; c < SW_COLOURS; c++) {
    sw_upstream_conf_t *up = &cfg->upstream[c];
    free(up->servers);
    free(up->health.path);
    free(up->health.host);
    free(up->health.body);
    for (i = 0; i < up->nrequires; i++) {
      free(up->requires[i].a);
      free(up->requires[i].b);
    }
    free(up->requires);
    free(up->tls_ca);
    free(up->tls_name);
  }
  free(cfg->database.dsn);
  free(cfg->cutover.state_file);
  free(cfg->cutover.rollback_migrate);
  free(cfg->watch.notify);
  free(cfg->admin.socket);
  free(cfg->admin.allow_uids);
  free(cfg->admin.token_file);
  free(cfg);
}

/* Whether the first `prefix` bits of a and b agree. */
static int prefix_match(const unsigned char *a,
                        const unsigned char *b,
                        int prefix) {
  int whole = prefix / 8, rest = prefix % 8;
  unsigned char mask;

  if (memcmp(a, b, (size_t)whole) != 0)
    return 0;
  if (rest == 0)
    return 1;
  mask = (unsigned char)(0xff << (8 - rest));
  return (a[whole] & mask) == (b[whole] & mask);
}

int sw_config_trusted(const sw_config_t *cfg, const struct sockaddr *sa) {
  const unsigned char *v4 = NULL, *v6 = NULL;
  size_t i;

  if (cfg == NULL || sa == NULL)
    return 0;
  if (sa->sa_family == AF_INET) {
    v4 = (const unsigned char *)&((const struct sockaddr_in *)sa)->sin_addr;
  } else if (sa->sa_family == AF_INET6) {
    const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
    v6 = a->s6_addr;
    /* A dual-stack listener reports IPv4 peers as ::ffff:a.b.c.d; they must
     * still match the IPv4 ranges the operator wrote. */
    if (IN6_IS_ADDR_V4MAPPED(a))
      v4 = a->s6_addr + 12;
  } else {
    return 0;
  }

  for (i = 0; i < cfg->ntrusted; i++) {
    const sw_cidr_t *c = &cfg->trusted[i];
    if (c->family == AF_INET && v4 != NULL &&
        prefix_match(c->addr, v4, c->prefix))
      return 1;
    if (c->family == AF_INET6 && v6 != NULL &&
        prefix_match(c->addr, v6, c->prefix))
      return 1;
  }
  return 0;
}

const char *sw_colour_name(sw_colour_t c) {
  switch (c) {
    case SW_BLUE:
      return "blue";
    case SW_GREEN:
      return "green";
  }
  return "unknown";
}
