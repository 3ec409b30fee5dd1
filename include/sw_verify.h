/* Database verification: before green is admitted (and before a rollback to
 * blue), one read-only PostgreSQL session checks that the colour's schema
 * requirements hold: Django migrations applied, columns present, and
 * arbitrary `require-query` checks returning true. DESIGN.md §6. The same
 * session can also sample lock waits (SW_VERIFY_LOCKS), so that a migration
 * that makes sessions queue behind its locks shows in the result.
 *
 * The verdict has three values, and only PASS admits anything:
 *   PASS          every requirement was checked and holds;
 *   FAIL          at least one requirement was checked and does not hold; the
 *                 message lists each one ("missing migration app.name",
 *                 "missing column table.column", "query 2 returned false");
 *   INCONCLUSIVE  the database could not answer: unreachable, timed out, a
 *                 lock or statement timeout, cancelled. The message carries
 *                 libpq's or the server's error, or starts with "timeout".
 * Only a run that sent every statement and judged every answer can PASS. A
 * definite FAIL outranks an inconclusive event: once a migration is known to
 * be missing, losing the connection does not make that unknown, so the
 * result is FAIL and the message adds "; could not check: ..." with what
 * was not decided. sw_verify_cancel() is the exception: a cancelled run is
 * always INCONCLUSIVE "cancelled", whatever it had found.
 *
 * An error in a require-query is a FAIL naming the query and the server's
 * message, unless it says only that the database could not answer now
 * (SQLSTATE classes 08, 40, 53, 57, 58, XX and codes 55P03, 55006: lost
 * connections, deadlocks, statement and lock timeouts, shutdowns), which is
 * INCONCLUSIVE. A lock timeout is inconclusive by that rule: the database
 * answered but could not decide in the time allowed. An error in the
 * built-in migration, column or lock statement is INCONCLUSIVE (their SQL
 * is fixed, so an error there is about the database, e.g. permissions),
 * except that a missing django_migrations table means every required
 * migration is missing: FAIL.
 *
 * A lock sample is a measurement, not a requirement: it never makes a run
 * FAIL, whatever it finds. Answered, it counts as checked like any other
 * statement (a run with only LOCKS requirements is PASS, "lock waits: 2
 * sessions, longest 1350 ms"); unanswered, it makes the run INCONCLUSIVE as
 * any other statement would. Mixed with other kinds, the verdict is theirs
 * and the lock fields of the result are filled in addition.
 *
 * libpq is driven non-blocking only (PQconnectStartParams, PQconnectPoll,
 * PQsendQueryParams, PQconsumeInput, PQisBusy, PQgetResult, PQflush) under a
 * uv_poll_t on PQsocket() and one uv_timer_t. Host names are resolved with
 * uv_getaddrinfo and handed to libpq as `hostaddr`, because libpq resolves
 * names with a blocking getaddrinfo() inside PQconnectStart. Names that come
 * from a pg_service.conf file are the exception (libpq reads that file
 * itself): use host names or addresses in the DSN (or PGHOST), not
 * `service=`. With several hosts or addresses, libpq moves to the next one
 * when a connection fails, but a host that never answers uses up the whole
 * connect timeout (libpq's own connect_timeout only works when blocking).
 *
 * The session is made read-only and bounded through the startup `options`
 * parameter: default_transaction_read_only=on, statement_timeout and
 * lock_timeout (appended after any options the DSN has, so they win). The
 * read-only mode guards against mistakes in a require-query; it is not a
 * sandbox: give the verifier a role that can only read. A pooler that
 * refuses the `options` parameter (PgBouncer without
 * ignore_startup_parameters) makes every run INCONCLUSIVE with its error:
 * point the DSN at PostgreSQL itself. */
#ifndef SW_VERIFY_H
#define SW_VERIFY_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef enum sw_verify_kind_e {
  SW_VERIFY_MIGRATION = 0, /* require-migration APP NAME */
  SW_VERIFY_COLUMN = 1,    /* require-column TABLE COLUMN */
  SW_VERIFY_QUERY = 2,     /* require-query SQL */
  SW_VERIFY_LOCKS = 3,     /* sample lock waits; never fails */
} sw_verify_kind_t;

/* One requirement. Strings are copied by sw_verify_start().
 *
 * MIGRATION: `a` is the app label, `b` the migration name, both compared
 *   exactly with django_migrations.app and .name.
 * COLUMN: `a` is the table as SQL would name it, optionally schema-qualified
 *   and quoted where SQL needs quotes (unified_db_personlink,
 *   public.unified_db_personlink, "MixedCase"); it is resolved with
 *   to_regclass() under the session's search_path. `b` is the column name
 *   exactly as stored (no case folding, no quotes). A table that does not
 *   exist means the column is missing.
 * QUERY: `a` is one SQL statement, sent as is without parameters; `b` is
 *   unused. Queries are numbered from 1 in the order they appear among the
 *   QUERY requirements ("query 2" is the second require-query).
 * LOCKS: `a` and `b` are unused and may be NULL. The run samples, once,
 *   the sessions of the whole cluster that wait on a heavyweight lock held
 *   by another session (pg_stat_activity.wait_event_type = 'Lock' and
 *   pg_blocking_pids() not empty), leaving out its own. Several LOCKS
 *   requirements are allowed and share that one statement, which runs
 *   first, right after connecting, so that slow checks cannot delay the
 *   sample or use up the deadline before it. The verifier's role needs
 *   pg_read_all_stats (or to be a superuser) to see other roles' waits:
 *   without it, their wait_event_type reads as NULL and they are not
 *   counted. */
typedef struct sw_verify_req_s {
  sw_verify_kind_t kind;
  const char *a;
  const char *b;
} sw_verify_req_t;

/* Defaults used when a timeout below is 0 (0 never means "no limit": every
 * run is bounded). */
#define SW_VERIFY_DEFAULT_CONNECT_MS 5000
#define SW_VERIFY_DEFAULT_STATEMENT_MS 5000
#define SW_VERIFY_DEFAULT_LOCK_MS 1000
/* Slack the client allows past statement_timeout, so that the server's own
 * "canceling statement due to statement timeout" normally arrives first and
 * the result names it. */
#define SW_VERIFY_GRACE_MS 500
/* At most this many requirements of each kind: the migration and column
 * checks send two parameters per requirement in one statement, and the
 * protocol allows 65535. */
#define SW_VERIFY_MAX_REQS 10000

/* The deadline. connect_timeout_ms bounds everything up to a usable session:
 * name resolution, TCP connect, TLS, authentication. Then one deadline of
 * statement_timeout_ms + SW_VERIFY_GRACE_MS bounds all the queries together
 * on the client, while the server bounds each statement by
 * statement_timeout_ms and each lock wait by lock_timeout_ms. A run therefore
 * ends within connect_timeout_ms + statement_timeout_ms + SW_VERIFY_GRACE_MS
 * (plus event loop latency). */
typedef struct sw_verify_params_s {
  const char *dsn; /* libpq conninfo string or URI; copied */
  uint64_t connect_timeout_ms;
  uint64_t statement_timeout_ms;
  uint64_t lock_timeout_ms;
  const sw_verify_req_t *reqs; /* copied */
  size_t nreqs;
} sw_verify_params_t;

typedef enum sw_verify_status_e {
  SW_VERIFY_PASS = 0,
  SW_VERIFY_FAIL = 1,
  SW_VERIFY_INCONCLUSIVE = 2,
} sw_verify_status_t;

typedef struct sw_verify_result_s {
  sw_verify_status_t status;
  /* One line, never NULL, valid only during the callback. At most
   * SW_VERIFY_MSG_MAX bytes plus a final "..." when a long list was cut. */
  const char *message;
  uint64_t elapsed_ms; /* from sw_verify_start() to the verdict */
  /* The lock sample (LOCKS requirements), whatever the verdict. All zero
   * unless locks_checked. */
  int locks_checked;         /* 1 when the lock statement was answered */
  uint64_t lock_wait_max_ms; /* longest wait, clock_timestamp() - query_start;
                                0 when no session waits */
  uint64_t lock_waiters;     /* sessions waiting on a lock */
} sw_verify_result_t;

#define SW_VERIFY_MSG_MAX 4096

typedef struct sw_verify_s sw_verify_t;

/* Called exactly once per successful sw_verify_start(), never from inside
 * sw_verify_start() or sw_verify_cancel(), always from the event loop. When
 * it runs, the run's handles are closed and its connection finished; `v` is
 * freed as soon as the callback returns, so forget it there. */
typedef void (*sw_verify_cb)(sw_verify_t *v,
                             const sw_verify_result_t *result,
                             void *data);

/* Starts one verification on loop. Everything in p is copied. Returns 0 and
 * sets *out (when out is not NULL), or a negative UV_E* error (UV_EINVAL for
 * bad parameters: a NULL string where one is needed, an unknown kind, too
 * many requirements; UV_ENOMEM) in which case nothing was started and cb
 * will not run. Any problem with the database itself, an unparsable DSN
 * included, is reported through cb as INCONCLUSIVE. */
int sw_verify_start(uv_loop_t *loop,
                    const sw_verify_params_t *p,
                    sw_verify_cb cb,
                    void *data,
                    sw_verify_t **out);

/* Stops a run: the connection is closed at once, and the callback still
 * fires, later, from the loop, with INCONCLUSIVE "cancelled". It fires so
 * that every start has exactly one callback: the owner frees its context in
 * one place, and a gate waiting on the run reads "cancelled" as
 * inconclusive, never as a pass. Calling it again, or after the run has
 * reached its verdict but before the callback, is harmless (the callback
 * then reports "cancelled"). It must not be called from the callback or
 * after it: v is gone by then.
 *
 * One thing can outlive the callback: a host-name lookup already running on
 * libuv's threadpool cannot be stopped. It frees itself when it returns, and
 * keeps the loop alive until then; the verdict never waits for it. */
void sw_verify_cancel(sw_verify_t *v);

/* "pass", "fail", "inconclusive". */
const char *sw_verify_status_name(sw_verify_status_t s);

#endif
