/* Verification over libpq (sw_verify.h): one read-only session that checks a
 * colour's schema requirements and reports PASS, FAIL or INCONCLUSIVE.
 *
 * This module must never block the loop: it calls no blocking libpq function
 * (no PQconnectdb, PQexec, PQgetResult while busy, PQcancel), it resolves
 * host names itself with uv_getaddrinfo, and PQfinish only ever runs on a
 * connection in non-blocking mode or not yet established, where it cannot
 * wait. It owns no policy: what a verdict means is the caller's business.
 *
 * A run goes RESOLVING -> CONNECTING -> QUERYING -> DONE. Each statement is
 * sent with PQsendQueryParams, flushed with PQflush, and its results read
 * with PQconsumeInput/PQisBusy/PQgetResult as the socket becomes readable.
 * Requirements of a kind share one statement: the lock sample first (it
 * measures the moment, so nothing should delay it), all migrations in one
 * round trip, all columns in another, then each require-query on its own.
 * Values are always separate parameters: the SQL text holds only
 * placeholders and row numbers, never a name from the configuration. */
#include "sw_verify.h"

#include <libpq-fe.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sw_buf.h"
#include "sw_list.h"

/* Type OIDs from the server's catalog (pg_type.dat); stable forever. */
#define VERIFY_BOOLOID 16
#define VERIFY_TEXTOID 25

/* Bounds on what one run may build: the SQL of a statement, the lists of
 * failures and notes, the addresses a DSN may expand to. */
#define VERIFY_SQL_MAX (1u << 20)
#define VERIFY_LIST_MAX (64u * 1024)
#define VERIFY_MAX_ADDRS 64
/* How much of a require-query's value or of an error a message quotes. */
#define VERIFY_QUOTE_MAX 80
#define VERIFY_ERROR_MAX 400

typedef enum verify_phase_e {
  VERIFY_RESOLVING = 0,
  VERIFY_CONNECTING = 1,
  VERIFY_QUERYING = 2,
  VERIFY_DONE = 3,
} verify_phase_t;

typedef enum verify_stmt_kind_e {
  VERIFY_STMT_MIGRATIONS = 0,
  VERIFY_STMT_COLUMNS = 1,
  VERIFY_STMT_QUERY = 2,
  VERIFY_STMT_LOCKS = 3,
} verify_stmt_kind_t;

/* One statement of a run. For MIGRATIONS and COLUMNS, row k (from 1) of the
 * VALUES list is requirement reqs[idx[k - 1]]; the result names missing
 * requirements by k, so messages are built from our own copies. */
typedef struct verify_stmt_s {
  verify_stmt_kind_t kind;
  char *sql; /* owned for MIGRATIONS and COLUMNS; QUERY: the requirement's
                copy; LOCKS: a constant */
  int nparams;
  const char **values;  /* owned array of pointers into the requirements */
  Oid *types;           /* owned, all text */
  size_t *idx;          /* owned, MIGRATIONS and COLUMNS */
  size_t nrows;         /* MIGRATIONS and COLUMNS */
  unsigned long number; /* QUERY: its number among the queries, from 1 */
} verify_stmt_t;

/* The socket libpq uses can change while connecting (another host, another
 * address, a retry without TLS), and a uv_poll_t is bound to one fd. So each
 * socket gets its own poll handle, allocated apart and freed in its own close
 * callback; the run counts those closes. */
typedef struct verify_poll_s {
  uv_poll_t handle;
  sw_verify_t *v;
} verify_poll_t;

/* A name lookup runs on libuv's threadpool and cannot be stopped once it has
 * started. When the run ends first, it detaches (v = NULL) and the lookup
 * frees itself when it returns; the verdict never waits for DNS. */
typedef struct verify_gai_s {
  uv_getaddrinfo_t req;
  sw_verify_t *v;
} verify_gai_t;

struct sw_verify_s {
  uv_loop_t *loop;
  uv_timer_t timer;
  verify_poll_t *poll; /* the current socket's poll, NULL when none */
  uv_os_sock_t poll_fd;
  verify_gai_t *gai; /* the lookup in flight, NULL when none */
  PGconn *conn;
  sw_verify_cb cb;
  void *data;
  verify_phase_t phase;
  int pending; /* handle closes not yet called back */
  int cancelled;
  int completed; /* every statement was sent and its answer judged */
  int flushing;  /* PQflush left output queued */
  uint64_t started_ns;
  uint64_t elapsed_ms;
  uint64_t connect_ms;
  uint64_t statement_ms;
  uint64_t lock_ms;

  char *dsn;
  sw_verify_req_t *reqs; /* deep copies */
  size_t nreqs;
  verify_stmt_t *stmts;
  size_t nstmts;
  size_t cur;    /* the statement in flight */
  PGresult *res; /* its first result */

  /* Connection targets: the DSN's hosts and ports, and the libpq lists
   * (host, hostaddr, port) that resolution builds from them. */
  char **hosts;
  size_t nhosts;
  size_t next_host;
  char **ports;
  size_t nports;
  char *user_options;
  sw_buf_t c_host;
  sw_buf_t c_addr;
  sw_buf_t c_port;
  size_t c_entries;
  sw_buf_t resolve_errors;

  /* What the run found, as "; "-separated items. The counts, not the
   * lengths, decide the verdict: an append that hit a bound must never turn
   * a failure into a pass. */
  sw_buf_t fails;
  size_t nfails;
  sw_buf_t notes;
  size_t nnotes;
  sw_buf_t fatal; /* why the run stopped early, if it did */

  /* The lock sample, when the lock statement was answered. */
  size_t nlocks; /* LOCKS requirements; they share one statement */
  int locks_checked;
  uint64_t lock_waiters;
  uint64_t lock_wait_max_ms;

  char msg[SW_VERIFY_MSG_MAX + 4];
  size_t msg_len;
};

static void on_timer(uv_timer_t *t);
static void on_poll(uv_poll_t *h, int status, int events);
static void resolve_next(sw_verify_t *v);
static void send_next(sw_verify_t *v);

/* --- small string helpers ------------------------------------------------- */

static void buf_str(sw_buf_t *b, const char *s) {
  (void)sw_buf_append(b, s, strlen(s));
}

static int is_space(char c) {
  return c == ' ' || c == '\n' || c == '\r' || c == '\t';
}

/* Appends s with control characters made visible, so that a message stays
 * one line whatever a name or a server error contains: a run of whitespace
 * that holds a line break or a tab becomes one space (libpq's messages end
 * with one and indent their hints), other control bytes become '?'. At most
 * max bytes of s are used; a longer s ends with "...". Messages are trimmed;
 * names are not (buf_name), since " auth" and "auth" are different apps. */
static void buf_text(sw_buf_t *b, const char *s, size_t max, int trim) {
  size_t n = strlen(s), i = 0, j;

  while (trim && n > 0 && is_space(s[n - 1]))
    n--;
  while (trim && i < n && is_space(s[i]))
    i++;
  for (; i < n && i < max; i++) {
    unsigned char c = (unsigned char)s[i];
    if (is_space((char)c)) {
      int ctl = 0;
      for (j = i; j < n && is_space(s[j]); j++)
        ctl |= s[j] != ' ';
      if (sw_buf_append(b, ctl ? " " : s + i, ctl ? 1 : j - i) != 0)
        return;
      i = j - 1;
      continue;
    }
    if (c < 0x20 || c == 0x7f)
      c = '?';
    if (sw_buf_append(b, &c, 1) != 0)
      return;
  }
  if (n > max)
    buf_str(b, "...");
}

static void buf_clean(sw_buf_t *b, const char *s, size_t max) {
  buf_text(b, s, max, 1);
}

static void buf_name(sw_buf_t *b, const char *s, size_t max) {
  buf_text(b, s, max, 0);
}

/* NUL-terminates b without counting the NUL; NULL when there is no room. */
static const char *buf_cstr(sw_buf_t *b) {
  if (sw_buf_reserve(b, 1) != 0)
    return NULL;
  b->data[b->len] = '\0';
  return b->data;
}

static char *dup_str(const char *s) {
  size_t n = strlen(s) + 1;
  char *d = malloc(n);
  if (d != NULL)
    memcpy(d, s, n);
  return d;
}

/* Splits a libpq comma-separated list (libpq supports no escaping in it). */
static int split_list(const char *s, char ***out, size_t *n) {
  size_t count = 1, i = 0;
  const char *p;
  char **items;

  for (p = s; *p != '\0'; p++)
    count += *p == ',';
  items = calloc(count, sizeof(*items));
  if (items == NULL)
    return UV_ENOMEM;
  for (p = s;; i++) {
    const char *end = strchr(p, ',');
    size_t len = end != NULL ? (size_t)(end - p) : strlen(p);
    items[i] = malloc(len + 1);
    if (items[i] == NULL) {
      while (i > 0)
        free(items[--i]);
      free(items);
      return UV_ENOMEM;
    }
    memcpy(items[i], p, len);
    items[i][len] = '\0';
    if (end == NULL)
      break;
    p = end + 1;
  }
  *out = items;
  *n = count;
  return 0;
}

static void free_list(char **items, size_t n) {
  size_t i;
  if (items == NULL)
    return;
  for (i = 0; i < n; i++)
    free(items[i]);
  free(items);
}

/* --- what the run found --------------------------------------------------- */

static void item_begin(sw_buf_t *b) {
  if (b->len > 0)
    buf_str(b, "; ");
}

static void add_fail(sw_verify_t *v,
                     const char *what,
                     const char *a,
                     const char *sep,
                     const char *b) {
  v->nfails++;
  item_begin(&v->fails);
  buf_str(&v->fails, what);
  buf_name(&v->fails, a, VERIFY_LIST_MAX);
  if (b != NULL) {
    buf_str(&v->fails, sep);
    buf_name(&v->fails, b, VERIFY_LIST_MAX);
  }
}

/* The text of a failed statement: the server's primary message and its
 * SQLSTATE, or libpq's own message when the error is the client's. */
static void add_result_error(sw_buf_t *b, const PGresult *res) {
  const char *primary = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
  const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);

  if (primary == NULL) {
    buf_clean(b, PQresultErrorMessage(res), VERIFY_ERROR_MAX);
    return;
  }
  buf_clean(b, primary, VERIFY_ERROR_MAX);
  if (state != NULL) {
    buf_str(b, " (SQLSTATE ");
    buf_clean(b, state, 5);
    buf_str(b, ")");
  }
}

/* Whether a failed statement says nothing about the schema, only that the
 * database could not answer now: connection exceptions (08), transaction
 * rollbacks such as deadlocks (40), insufficient resources (53), operator
 * intervention, which includes statement timeouts and shutdowns (57),
 * system errors (58), internal errors (XX), and lock waits that timed out
 * (55P03) or objects in use (55006). A lock timeout is inconclusive by the
 * same rule as a statement timeout: the database was reachable but could not
 * decide in the time allowed, and a retry may well pass. No SQLSTATE at all
 * means libpq made the error itself (a lost connection). */
static int error_is_transient(const PGresult *res) {
  const char *s = PQresultErrorField(res, PG_DIAG_SQLSTATE);

  if (s == NULL || strlen(s) != 5)
    return 1;
  return strncmp(s, "08", 2) == 0 || strncmp(s, "40", 2) == 0 ||
         strncmp(s, "53", 2) == 0 || strncmp(s, "57", 2) == 0 ||
         strncmp(s, "58", 2) == 0 || strncmp(s, "XX", 2) == 0 ||
         strcmp(s, "55P03") == 0 || strcmp(s, "55006") == 0;
}

/* --- building the statements ---------------------------------------------- */

/* Builds "PREFIX (1, $1, $2), (2, $3, $4) SUFFIX" for the requirements of
 * one kind, with their strings as parameters. */
static int build_pairs(verify_stmt_t *s,
                       const sw_verify_req_t *reqs,
                       size_t nreqs,
                       sw_verify_kind_t kind,
                       const char *prefix,
                       const char *suffix) {
  sw_buf_t sql;
  size_t i, k = 0, n = 0;
  int err = 0;

  for (i = 0; i < nreqs; i++)
    n += reqs[i].kind == kind;
  s->nrows = n;
  s->nparams = (int)(2 * n);
  s->values = calloc(2 * n, sizeof(*s->values));
  s->types = calloc(2 * n, sizeof(*s->types));
  s->idx = calloc(n, sizeof(*s->idx));
  if (s->values == NULL || s->types == NULL || s->idx == NULL)
    return UV_ENOMEM;

  sw_buf_init(&sql, VERIFY_SQL_MAX);
  err |= sw_buf_append(&sql, prefix, strlen(prefix));
  for (i = 0; i < nreqs; i++) {
    if (reqs[i].kind != kind)
      continue;
    s->idx[k] = i;
    s->values[2 * k] = reqs[i].a;
    s->values[2 * k + 1] = reqs[i].b;
    s->types[2 * k] = VERIFY_TEXTOID;
    s->types[2 * k + 1] = VERIFY_TEXTOID;
    err |= sw_buf_appendf(&sql, "%s(%zu, $%zu, $%zu)", k == 0 ? "" : ", ",
                          k + 1, 2 * k + 1, 2 * k + 2);
    k++;
  }
  err |= sw_buf_append(&sql, suffix, strlen(suffix) + 1);
  if (err != 0) {
    sw_buf_free(&sql);
    return UV_ENOMEM;
  }
  s->sql = sql.data;
  return 0;
}

/* The expected migrations that have no row in django_migrations. DESIGN §6
 * joins two unnested arrays; a VALUES list of parameters says the same
 * without an array literal to escape, and carries each row's number so that
 * the answer maps back to the configuration without parsing names. A missing
 * django_migrations table makes the statement fail with 42P01, which
 * judge_migrations() reads as "every migration is missing". */
static const char migrations_prefix[] = "SELECT e.i FROM (VALUES ";
static const char migrations_suffix[] =
    ") AS e(i, app, name) WHERE NOT EXISTS (SELECT 1 FROM django_migrations "
    "m WHERE m.app = e.app AND m.name = e.name) ORDER BY e.i";

/* The required columns that do not exist, and whether their table is
 * missing altogether. to_regclass() parses a possibly schema-qualified,
 * possibly quoted name under the session's search_path and yields NULL for
 * a missing table, which matches no pg_attribute row: the column is
 * missing. pg_catalog is named explicitly so that nothing on the search
 * path can stand in for it. */
static const char columns_prefix[] =
    "SELECT r.i, pg_catalog.to_regclass(r.tbl) IS NULL FROM (VALUES ";
static const char columns_suffix[] =
    ") AS r(i, tbl, col) WHERE NOT EXISTS (SELECT 1 FROM "
    "pg_catalog.pg_attribute a WHERE a.attrelid = "
    "pg_catalog.to_regclass(r.tbl) AND a.attname = r.col AND a.attnum > 0 "
    "AND NOT a.attisdropped) ORDER BY r.i";

/* The sessions waiting on a lock that another session holds, and the
 * longest of those waits in whole milliseconds, counted from the start of
 * the waiting statement: DESIGN §6's third query, reduced to one row on the
 * server. clock_timestamp() rather than DESIGN's now(), which stays frozen
 * at the start of our own transaction while the waits go on growing. Our
 * own backend is left out: it never waits here, and a sample should not
 * count the sampler. GREATEST skips a NULL query_start (such a session
 * counts, as 0 ms) and keeps a difference from going negative. */
static const char locks_sql[] =
    "SELECT pg_catalog.count(*), COALESCE(pg_catalog.max(GREATEST(0, "
    "pg_catalog.floor(1000 * EXTRACT(EPOCH FROM pg_catalog.clock_timestamp() "
    "- a.query_start)))), 0)::bigint FROM pg_catalog.pg_stat_activity a "
    "WHERE a.wait_event_type = 'Lock' AND a.pid <> pg_catalog.pg_backend_pid() "
    "AND pg_catalog.cardinality(pg_catalog.pg_blocking_pids(a.pid)) > 0";

static int build_stmts(sw_verify_t *v) {
  size_t i, nm = 0, nc = 0, nq = 0, n = 0;
  unsigned long qno = 0;
  int err;

  for (i = 0; i < v->nreqs; i++) {
    nm += v->reqs[i].kind == SW_VERIFY_MIGRATION;
    nc += v->reqs[i].kind == SW_VERIFY_COLUMN;
    nq += v->reqs[i].kind == SW_VERIFY_QUERY;
    v->nlocks += v->reqs[i].kind == SW_VERIFY_LOCKS;
  }
  v->stmts =
      calloc((v->nlocks > 0) + (nm > 0) + (nc > 0) + nq + 1, sizeof(*v->stmts));
  if (v->stmts == NULL)
    return UV_ENOMEM;
  if (v->nlocks > 0) {
    v->stmts[n].kind = VERIFY_STMT_LOCKS;
    v->stmts[n].sql = (char *)locks_sql;
    v->nstmts = ++n;
  }
  if (nm > 0) {
    v->stmts[n].kind = VERIFY_STMT_MIGRATIONS;
    v->nstmts = ++n;
    err = build_pairs(&v->stmts[n - 1], v->reqs, v->nreqs, SW_VERIFY_MIGRATION,
                      migrations_prefix, migrations_suffix);
    if (err != 0)
      return err;
  }
  if (nc > 0) {
    v->stmts[n].kind = VERIFY_STMT_COLUMNS;
    v->nstmts = ++n;
    err = build_pairs(&v->stmts[n - 1], v->reqs, v->nreqs, SW_VERIFY_COLUMN,
                      columns_prefix, columns_suffix);
    if (err != 0)
      return err;
  }
  for (i = 0; i < v->nreqs; i++) {
    if (v->reqs[i].kind != SW_VERIFY_QUERY)
      continue;
    v->stmts[n].kind = VERIFY_STMT_QUERY;
    v->stmts[n].sql = (char *)v->reqs[i].a;
    v->stmts[n].number = ++qno;
    v->nstmts = ++n;
  }
  return 0;
}

/* --- lifetime ------------------------------------------------------------- */

static void free_run(sw_verify_t *v) {
  size_t i;

  for (i = 0; i < v->nstmts; i++) {
    verify_stmt_t *s = &v->stmts[i];
    if (s->kind == VERIFY_STMT_MIGRATIONS || s->kind == VERIFY_STMT_COLUMNS)
      free(s->sql);
    free(s->values);
    free(s->types);
    free(s->idx);
  }
  free(v->stmts);
  if (v->reqs != NULL) {
    for (i = 0; i < v->nreqs; i++) {
      free((char *)v->reqs[i].a);
      free((char *)v->reqs[i].b);
    }
    free(v->reqs);
  }
  free(v->dsn);
  free_list(v->hosts, v->nhosts);
  free_list(v->ports, v->nports);
  free(v->user_options);
  sw_buf_free(&v->c_host);
  sw_buf_free(&v->c_addr);
  sw_buf_free(&v->c_port);
  sw_buf_free(&v->resolve_errors);
  sw_buf_free(&v->fails);
  sw_buf_free(&v->notes);
  sw_buf_free(&v->fatal);
  free(v);
}

/* Copies s into the result message, cutting it (at a UTF-8 character
 * boundary) with "..." when the message is full. */
static void msg_add(sw_verify_t *v, const char *s, size_t n) {
  size_t room = SW_VERIFY_MSG_MAX - v->msg_len;

  if (v->msg_len >= SW_VERIFY_MSG_MAX)
    return;
  if (n > room) {
    n = room;
    while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
      n--;
    memcpy(v->msg + v->msg_len, s, n);
    memcpy(v->msg + v->msg_len + n, "...", 4);
    v->msg_len = SW_VERIFY_MSG_MAX;
    return;
  }
  memcpy(v->msg + v->msg_len, s, n);
  v->msg_len += n;
  v->msg[v->msg_len] = '\0';
}

static void msg_str(sw_verify_t *v, const char *s) {
  msg_add(v, s, strlen(s));
}

static void msg_buf(sw_verify_t *v, const sw_buf_t *b) {
  msg_add(v, b->data != NULL ? b->data : "", b->len);
}

/* What could not be checked: why the run stopped early, if it did, then
 * the statements the database could not answer. Never empty. */
static void msg_unknown(sw_verify_t *v) {
  size_t start = v->msg_len;

  if (!v->completed) {
    if (v->fatal.len > 0)
      msg_buf(v, &v->fatal);
    else
      msg_str(v, "stopped before all checks ran");
  }
  if (v->notes.len > 0) {
    if (v->msg_len > start)
      msg_str(v, "; ");
    msg_buf(v, &v->notes);
  }
  if (v->msg_len == start)
    msg_str(v, "some checks gave no answer (details lost: out of memory)");
}

/* The verdict, from what was found; see sw_verify.h for the precedence.
 * Only a run that sent every statement and judged every answer can pass. */
static sw_verify_status_t compose(sw_verify_t *v) {
  int unknown = v->nnotes > 0 || !v->completed;

  v->msg_len = 0;
  v->msg[0] = '\0';
  if (v->cancelled) {
    msg_str(v, "cancelled");
    return SW_VERIFY_INCONCLUSIVE;
  }
  if (v->nfails > 0) {
    msg_buf(v, &v->fails);
    if (v->fails.len == 0)
      msg_str(v, "requirements not met (details lost: out of memory)");
    if (unknown) {
      msg_str(v, "; could not check: ");
      msg_unknown(v);
    }
    return SW_VERIFY_FAIL;
  }
  if (unknown) {
    msg_unknown(v);
    return SW_VERIFY_INCONCLUSIVE;
  }
  if (v->nreqs == 0) {
    msg_str(v, "connected; no requirements");
    return SW_VERIFY_PASS;
  }
  /* A lock sample is not a requirement: the count leaves it out, and a
   * pass reports what it saw. */
  if (v->nreqs > v->nlocks) {
    char tmp[64];
    size_t n = v->nreqs - v->nlocks;
    snprintf(tmp, sizeof(tmp), "%zu requirement%s met", n, n == 1 ? "" : "s");
    msg_str(v, tmp);
  }
  if (v->nlocks > 0) {
    char tmp[96];
    snprintf(tmp, sizeof(tmp), "%slock waits: %llu session%s, longest %llu ms",
             v->msg_len > 0 ? "; " : "", (unsigned long long)v->lock_waiters,
             v->lock_waiters == 1 ? "" : "s",
             (unsigned long long)v->lock_wait_max_ms);
    msg_str(v, tmp);
  }
  return SW_VERIFY_PASS;
}

/* Delivers the verdict once every handle of the run has been closed, then
 * frees the run. */
static void maybe_deliver(sw_verify_t *v) {
  sw_verify_result_t r;

  if (v->phase != VERIFY_DONE || v->pending > 0)
    return;
  memset(&r, 0, sizeof(r));
  r.status = compose(v);
  r.message = v->msg;
  r.elapsed_ms = v->elapsed_ms;
  if (v->locks_checked) {
    r.locks_checked = 1;
    r.lock_waiters = v->lock_waiters;
    r.lock_wait_max_ms = v->lock_wait_max_ms;
  }
  v->cb(v, &r, v->data);
  free_run(v);
}

static void on_timer_close(uv_handle_t *h) {
  sw_verify_t *v = sw_container_of(h, sw_verify_t, timer);
  v->pending--;
  maybe_deliver(v);
}

static void on_poll_close(uv_handle_t *h) {
  verify_poll_t *p = sw_container_of(h, verify_poll_t, handle);
  sw_verify_t *v = p->v;

  free(p);
  v->pending--;
  maybe_deliver(v);
}

/* Closes the current poll handle. uv_close() unregisters the fd at once, so
 * this must run before libpq closes that fd or opens another. */
static void close_poll(sw_verify_t *v) {
  if (v->poll == NULL)
    return;
  v->pending++;
  uv_close((uv_handle_t *)&v->poll->handle, on_poll_close);
  v->poll = NULL;
}

/* Ends the run: closes the handles, detaches a lookup in flight and finishes
 * the connection. The callback runs from the last close callback, so never
 * from inside this function. Idempotent. */
static void finish(sw_verify_t *v) {
  if (v->phase == VERIFY_DONE)
    return;
  v->phase = VERIFY_DONE;
  v->elapsed_ms = (uv_hrtime() - v->started_ns) / 1000000;
  uv_timer_stop(&v->timer);
  v->pending++;
  uv_close((uv_handle_t *)&v->timer, on_timer_close);
  close_poll(v);
  if (v->gai != NULL) {
    /* Fails harmlessly when the lookup is already running; it will then
     * free itself when it returns. */
    v->gai->v = NULL;
    (void)uv_cancel((uv_req_t *)&v->gai->req);
    v->gai = NULL;
  }
  PQclear(v->res);
  v->res = NULL;
  if (v->conn != NULL) {
    /* Non-blocking by now (or never connected): PQfinish at most queues a
     * Terminate message and closes the socket. */
    PQfinish(v->conn);
    v->conn = NULL;
  }
}

/* Stops the run for a reason that is not about the schema. */
static void fatal(sw_verify_t *v, const char *what, const char *detail) {
  sw_buf_reset(&v->fatal);
  buf_str(&v->fatal, what);
  if (detail != NULL) {
    buf_str(&v->fatal, ": ");
    buf_clean(&v->fatal, detail, VERIFY_ERROR_MAX);
  }
  finish(v);
}

static void fatal_pq(sw_verify_t *v, const char *what) {
  fatal(v, what, v->conn != NULL ? PQerrorMessage(v->conn) : NULL);
}

/* --- the socket ----------------------------------------------------------- */

/* Waits for events on libpq's current socket, moving to a new poll handle
 * when the socket changed. */
static void watch(sw_verify_t *v, int events) {
  int fd = PQsocket(v->conn);
  int err;

  if (fd < 0) {
    fatal_pq(v, "connection lost");
    return;
  }
  if (v->poll != NULL && v->poll_fd != fd)
    close_poll(v);
  if (v->poll == NULL) {
    verify_poll_t *p = malloc(sizeof(*p));
    if (p == NULL) {
      fatal(v, "out of memory", NULL);
      return;
    }
    err = uv_poll_init_socket(v->loop, &p->handle, fd);
    if (err != 0) {
      free(p);
      fatal(v, "cannot watch the database socket", uv_strerror(err));
      return;
    }
    p->v = v;
    v->poll = p;
    v->poll_fd = fd;
  }
  err = uv_poll_start(&v->poll->handle, events, on_poll);
  if (err != 0)
    fatal(v, "cannot watch the database socket", uv_strerror(err));
}

static void connected(sw_verify_t *v) {
  int err;

  if (PQsetnonblocking(v->conn, 1) != 0) {
    fatal_pq(v, "could not connect");
    return;
  }
  v->phase = VERIFY_QUERYING;
  /* From here one deadline covers all the queries (sw_verify.h). */
  err = uv_timer_start(&v->timer, on_timer,
                       v->statement_ms + SW_VERIFY_GRACE_MS, 0);
  if (err != 0) {
    fatal(v, "cannot arm the deadline", uv_strerror(err));
    return;
  }
  send_next(v);
}

static void connect_step(sw_verify_t *v) {
  switch (PQconnectPoll(v->conn)) {
    case PGRES_POLLING_READING:
      watch(v, UV_READABLE);
      return;
    case PGRES_POLLING_WRITING:
    case PGRES_POLLING_ACTIVE:
      watch(v, UV_WRITABLE);
      return;
    case PGRES_POLLING_OK:
      connected(v);
      return;
    case PGRES_POLLING_FAILED:
    default:
      if (v->resolve_errors.len > 0) {
        /* Some host names did not resolve; that belongs in the story. */
        item_begin(&v->resolve_errors);
        buf_clean(&v->resolve_errors, PQerrorMessage(v->conn),
                  VERIFY_ERROR_MAX);
        fatal(v, "could not connect", buf_cstr(&v->resolve_errors));
        return;
      }
      fatal_pq(v, "could not connect");
      return;
  }
}

/* --- judging results ------------------------------------------------------ */

static size_t row_number(const PGresult *res, int row) {
  const char *s = PQgetvalue(res, row, 0);
  char *end;
  unsigned long n = strtoul(s, &end, 10);
  return end == s || *end != '\0' ? 0 : (size_t)n;
}

static void note_error(sw_verify_t *v, const char *what, const PGresult *res) {
  v->nnotes++;
  item_begin(&v->notes);
  buf_str(&v->notes, what);
  add_result_error(&v->notes, res);
}

static void judge_migrations(sw_verify_t *v,
                             const verify_stmt_t *s,
                             const PGresult *res) {
  const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
  int row;
  size_t k;

  if (PQresultStatus(res) == PGRES_TUPLES_OK) {
    for (row = 0; row < PQntuples(res); row++) {
      k = row_number(res, row);
      if (k < 1 || k > s->nrows) {
        v->nnotes++;
        item_begin(&v->notes);
        buf_str(&v->notes, "migration check: unexpected answer");
        continue;
      }
      add_fail(v, "missing migration ", v->reqs[s->idx[k - 1]].a, ".",
               v->reqs[s->idx[k - 1]].b);
    }
    return;
  }
  if (PQresultStatus(res) == PGRES_FATAL_ERROR && state != NULL &&
      strcmp(state, "42P01") == 0) {
    /* undefined_table: Django never migrated this database, so no
     * migration has been applied. A fact about the schema, not an error. */
    v->nfails++;
    item_begin(&v->fails);
    buf_str(&v->fails, "no django_migrations table");
    for (k = 0; k < s->nrows; k++)
      add_fail(v, "missing migration ", v->reqs[s->idx[k]].a, ".",
               v->reqs[s->idx[k]].b);
    return;
  }
  /* Our own statement failed: the database could not answer (a permission,
   * a timeout); that says nothing about the migrations. */
  note_error(v, "migration check: ", res);
}

static void judge_columns(sw_verify_t *v,
                          const verify_stmt_t *s,
                          const PGresult *res) {
  int row;
  size_t k;

  if (PQresultStatus(res) != PGRES_TUPLES_OK) {
    note_error(v, "column check: ", res);
    return;
  }
  for (row = 0; row < PQntuples(res); row++) {
    const sw_verify_req_t *r;
    k = row_number(res, row);
    if (k < 1 || k > s->nrows) {
      v->nnotes++;
      item_begin(&v->notes);
      buf_str(&v->notes, "column check: unexpected answer");
      continue;
    }
    r = &v->reqs[s->idx[k - 1]];
    add_fail(v, "missing column ", r->a, ".", r->b);
    if (strcmp(PQgetvalue(res, row, 1), "t") == 0)
      buf_str(&v->fails, " (no such table)");
  }
}

/* Parses a non-negative bigint as the server prints it. */
static int parse_u64(const char *s, uint64_t *out) {
  char *end;
  unsigned long long n;

  if (s[0] < '0' || s[0] > '9')
    return -1;
  n = strtoull(s, &end, 10);
  if (*end != '\0')
    return -1;
  *out = n;
  return 0;
}

/* The lock sample: one row of two bigints. Whatever it says, nothing
 * fails; an error or an odd answer only means the sample is unknown. */
static void judge_locks(sw_verify_t *v, const PGresult *res) {
  uint64_t waiters, max_ms;

  if (PQresultStatus(res) != PGRES_TUPLES_OK) {
    note_error(v, "lock check: ", res);
    return;
  }
  if (PQntuples(res) != 1 || PQnfields(res) != 2 || PQgetisnull(res, 0, 0) ||
      PQgetisnull(res, 0, 1) || parse_u64(PQgetvalue(res, 0, 0), &waiters) ||
      parse_u64(PQgetvalue(res, 0, 1), &max_ms)) {
    v->nnotes++;
    item_begin(&v->notes);
    buf_str(&v->notes, "lock check: unexpected answer");
    return;
  }
  v->locks_checked = 1;
  v->lock_waiters = waiters;
  v->lock_wait_max_ms = max_ms;
}

static void judge_query(sw_verify_t *v, const verify_stmt_t *s, PGresult *res) {
  char head[48];
  char tmp[64];
  sw_buf_t *b;

  snprintf(head, sizeof(head), "query %lu ", s->number);
  switch (PQresultStatus(res)) {
    case PGRES_TUPLES_OK:
      if (PQnfields(res) >= 1 && PQntuples(res) == 1 &&
          !PQgetisnull(res, 0, 0) && PQftype(res, 0) == VERIFY_BOOLOID &&
          strcmp(PQgetvalue(res, 0, 0), "t") == 0)
        return;
      v->nfails++;
      b = &v->fails;
      item_begin(b);
      buf_str(b, head);
      if (PQnfields(res) < 1) {
        buf_str(b, "returned no columns");
      } else if (PQntuples(res) == 0) {
        buf_str(b, "returned no rows");
      } else if (PQntuples(res) > 1) {
        snprintf(tmp, sizeof(tmp), "returned %d rows, not one", PQntuples(res));
        buf_str(b, tmp);
      } else if (PQgetisnull(res, 0, 0)) {
        buf_str(b, "returned NULL");
      } else if (PQftype(res, 0) != VERIFY_BOOLOID) {
        buf_str(b, "returned '");
        buf_name(b, PQgetvalue(res, 0, 0), VERIFY_QUOTE_MAX);
        buf_str(b, "', not a boolean");
      } else {
        buf_str(b, "returned false");
      }
      return;
    case PGRES_COMMAND_OK:
      v->nfails++;
      item_begin(&v->fails);
      buf_str(&v->fails, head);
      buf_str(&v->fails, "returned no rows (");
      buf_clean(&v->fails, PQcmdStatus(res), VERIFY_QUOTE_MAX);
      buf_str(&v->fails, ")");
      return;
    case PGRES_EMPTY_QUERY:
      v->nfails++;
      item_begin(&v->fails);
      buf_str(&v->fails, head);
      buf_str(&v->fails, "is empty");
      return;
    case PGRES_FATAL_ERROR:
      if (error_is_transient(res)) {
        snprintf(tmp, sizeof(tmp), "query %lu: ", s->number);
        note_error(v, tmp, res);
        return;
      }
      v->nfails++;
      item_begin(&v->fails);
      buf_str(&v->fails, head);
      buf_str(&v->fails, "failed: ");
      add_result_error(&v->fails, res);
      return;
    default:
      v->nnotes++;
      item_begin(&v->notes);
      buf_str(&v->notes, head);
      buf_str(&v->notes, "gave an unexpected result: ");
      buf_str(&v->notes, PQresStatus(PQresultStatus(res)));
      return;
  }
}

/* --- the queries ---------------------------------------------------------- */

static void flush_and_wait(sw_verify_t *v) {
  int r = PQflush(v->conn);

  if (r < 0) {
    fatal_pq(v, "connection lost");
    return;
  }
  v->flushing = r == 1;
  /* Libpq's rule: while output is queued, wait for either direction; the
   * server may need us to read before it reads more. */
  watch(v, r == 1 ? UV_READABLE | UV_WRITABLE : UV_READABLE);
}

static void send_next(sw_verify_t *v) {
  const verify_stmt_t *s;

  if (v->cur == v->nstmts) {
    v->completed = 1;
    finish(v);
    return;
  }
  s = &v->stmts[v->cur];
  if (!PQsendQueryParams(v->conn, s->sql, s->nparams, s->types, s->values, NULL,
                         NULL, 0)) {
    fatal_pq(v, "connection lost");
    return;
  }
  flush_and_wait(v);
}

static void statement_done(sw_verify_t *v) {
  const verify_stmt_t *s = &v->stmts[v->cur];
  PGresult *res = v->res;

  v->res = NULL;
  if (PQstatus(v->conn) == CONNECTION_BAD || res == NULL) {
    PQclear(res);
    fatal_pq(v, "connection lost");
    return;
  }
  switch (s->kind) {
    case VERIFY_STMT_MIGRATIONS:
      judge_migrations(v, s, res);
      break;
    case VERIFY_STMT_COLUMNS:
      judge_columns(v, s, res);
      break;
    case VERIFY_STMT_QUERY:
      judge_query(v, s, res);
      break;
    case VERIFY_STMT_LOCKS:
      judge_locks(v, res);
      break;
  }
  PQclear(res);
  v->cur++;
  send_next(v);
}

static void query_step(sw_verify_t *v, int events) {
  PGresult *res;
  int r;

  if ((events & UV_READABLE) && !PQconsumeInput(v->conn)) {
    fatal_pq(v, "connection lost");
    return;
  }
  if (v->flushing) {
    r = PQflush(v->conn);
    if (r < 0) {
      fatal_pq(v, "connection lost");
      return;
    }
    if (r == 1) {
      watch(v, UV_READABLE | UV_WRITABLE);
      return;
    }
    v->flushing = 0;
  }
  /* PQgetResult only blocks while PQisBusy: never call it then. */
  while (!PQisBusy(v->conn)) {
    ExecStatusType st;
    res = PQgetResult(v->conn);
    if (res == NULL) {
      statement_done(v);
      return;
    }
    st = PQresultStatus(res);
    if (st == PGRES_COPY_IN || st == PGRES_COPY_OUT || st == PGRES_COPY_BOTH) {
      /* The connection is now in COPY mode, which no check needs; leaving
       * it cleanly would mean streaming the data, so end the run. */
      char tmp[80];
      PQclear(res);
      snprintf(tmp, sizeof(tmp),
               "query %lu started a COPY, which verification refuses",
               v->stmts[v->cur].number);
      v->nfails++;
      item_begin(&v->fails);
      buf_str(&v->fails, tmp);
      fatal(v, "the checks after it did not run", NULL);
      return;
    }
    if (v->res == NULL)
      v->res = res;
    else
      PQclear(res);
  }
  watch(v, UV_READABLE);
}

static void on_poll(uv_poll_t *h, int status, int events) {
  verify_poll_t *p = sw_container_of(h, verify_poll_t, handle);
  sw_verify_t *v = p->v;

  /* Stopped while libpq runs, so that the fd is not registered with the
   * loop if libpq closes it or replaces it with another socket. */
  uv_poll_stop(h);
  /* libuv reports a socket error (a refused connect) as a status; libpq
   * reads the error itself from the socket, and may go on to another
   * address, so let it look. */
  if (status < 0)
    events = UV_READABLE | UV_WRITABLE;
  if (v->phase == VERIFY_CONNECTING)
    connect_step(v);
  else if (v->phase == VERIFY_QUERYING)
    query_step(v, events);
}

static void on_timer(uv_timer_t *t) {
  sw_verify_t *v = sw_container_of(t, sw_verify_t, timer);
  char tmp[96];

  if (v->phase == VERIFY_QUERYING)
    snprintf(tmp, sizeof(tmp), "timeout after %llu ms waiting for the queries",
             (unsigned long long)(v->statement_ms + SW_VERIFY_GRACE_MS));
  else
    snprintf(tmp, sizeof(tmp), "timeout after %llu ms connecting",
             (unsigned long long)v->connect_ms);
  fatal(v, tmp, NULL);
}

/* --- connecting ----------------------------------------------------------- */

static void on_notice(void *arg, const PGresult *res) {
  /* Notices (from a require-query, say) would go to stderr by default. */
}

static void connect_start(sw_verify_t *v, int resolved) {
  const char *keys[8];
  const char *vals[8];
  sw_buf_t options;
  int n = 0, i;

  if (resolved && v->c_entries == 0) {
    fatal(v, "could not connect", buf_cstr(&v->resolve_errors));
    return;
  }
  /* Ours come after the DSN's own options, and the server applies -c
   * settings in order, so the DSN cannot turn read-only off by mistake. */
  sw_buf_init(&options, 4096 + strlen(v->user_options));
  buf_str(&options, v->user_options);
  if (sw_buf_appendf(&options,
                     "%s-c default_transaction_read_only=on "
                     "-c statement_timeout=%llu -c lock_timeout=%llu",
                     options.len > 0 ? " " : "",
                     (unsigned long long)v->statement_ms,
                     (unsigned long long)v->lock_ms) != 0) {
    sw_buf_free(&options);
    fatal(v, "out of memory", NULL);
    return;
  }

  /* Entries after the expanded dsn override what it says. */
  keys[n] = "fallback_application_name";
  vals[n++] = "switchd-verify";
  keys[n] = "dbname";
  vals[n++] = v->dsn;
  if (resolved) {
    keys[n] = "host";
    vals[n++] = buf_cstr(&v->c_host);
    keys[n] = "hostaddr";
    vals[n++] = buf_cstr(&v->c_addr);
    if (v->c_port.len > 0) {
      keys[n] = "port";
      vals[n++] = buf_cstr(&v->c_port);
    }
  }
  keys[n] = "options";
  vals[n++] = buf_cstr(&options);
  keys[n] = "client_encoding";
  vals[n++] = "UTF8";
  keys[n] = NULL;
  vals[n] = NULL;
  for (i = 0; i < n; i++) {
    if (vals[i] == NULL) {
      sw_buf_free(&options);
      fatal(v, "out of memory", NULL);
      return;
    }
  }

  v->conn = PQconnectStartParams(keys, vals, 1);
  sw_buf_free(&options);
  if (v->conn == NULL) {
    fatal(v, "out of memory", NULL);
    return;
  }
  PQsetNoticeReceiver(v->conn, on_notice, NULL);
  if (PQstatus(v->conn) == CONNECTION_BAD) {
    fatal_pq(v, "could not connect");
    return;
  }
  v->phase = VERIFY_CONNECTING;
  /* Libpq's rule: after PQconnectStart, act as if PQconnectPoll had asked
   * to wait for the socket to become writable. */
  watch(v, UV_WRITABLE);
}

/* The port for host i: libpq pairs a list of ports with the hosts, or
 * applies a single port to all of them. */
static const char *port_for(const sw_verify_t *v, size_t i) {
  if (v->nports == 0)
    return NULL;
  return v->nports == 1 ? v->ports[0] : v->ports[i];
}

static void add_target(sw_verify_t *v,
                       const char *host,
                       const char *addr,
                       const char *port) {
  const char *sep = v->c_entries > 0 ? "," : "";
  int err = 0;

  if (v->c_entries >= VERIFY_MAX_ADDRS)
    return;
  err |= sw_buf_appendf(&v->c_host, "%s", sep);
  err |= sw_buf_append(&v->c_host, host, strlen(host));
  err |= sw_buf_appendf(&v->c_addr, "%s%s", sep, addr);
  /* A single port already applies to every entry. */
  if (v->nports > 1) {
    err |= sw_buf_appendf(&v->c_port, "%s", sep);
    err |= sw_buf_append(&v->c_port, port, strlen(port));
  }
  if (err == 0)
    v->c_entries++;
}

static int is_numeric_host(const char *h) {
  unsigned char a[16];
  return uv_inet_pton(AF_INET, h, a) == 0 || uv_inet_pton(AF_INET6, h, a) == 0;
}

static void on_resolved(uv_getaddrinfo_t *req,
                        int status,
                        struct addrinfo *ai) {
  verify_gai_t *g = sw_container_of(req, verify_gai_t, req);
  sw_verify_t *v = g->v;
  struct addrinfo *p;
  const char *host;

  free(g);
  if (v == NULL) {
    uv_freeaddrinfo(ai);
    return;
  }
  v->gai = NULL;
  host = v->hosts[v->next_host];
  if (status < 0) {
    item_begin(&v->resolve_errors);
    buf_str(&v->resolve_errors, "could not resolve \"");
    buf_name(&v->resolve_errors, host, VERIFY_QUOTE_MAX);
    buf_str(&v->resolve_errors, "\": ");
    buf_str(&v->resolve_errors, uv_strerror(status));
  }
  for (p = ai; status == 0 && p != NULL; p = p->ai_next) {
    char ip[64];
    int err = UV_EAI_FAMILY;
    if (p->ai_family == AF_INET)
      err = uv_ip4_name((const struct sockaddr_in *)p->ai_addr, ip, sizeof(ip));
    else if (p->ai_family == AF_INET6)
      err =
          uv_ip6_name((const struct sockaddr_in6 *)p->ai_addr, ip, sizeof(ip));
    if (err == 0)
      add_target(v, host, ip, port_for(v, v->next_host));
  }
  uv_freeaddrinfo(ai);
  v->next_host++;
  resolve_next(v);
}

/* Resolves the DSN's host names one after the other; libpq then gets every
 * address as its own host/hostaddr entry and tries them in order, as it
 * would have after its own lookup. Socket paths and numeric addresses need
 * no lookup. */
static void resolve_next(sw_verify_t *v) {
  struct addrinfo hints;
  int err;

  while (v->next_host < v->nhosts) {
    const char *h = v->hosts[v->next_host];
    const char *port = port_for(v, v->next_host);
    verify_gai_t *g;

    if (h[0] == '\0' || h[0] == '/' || h[0] == '@') {
      add_target(v, h, "", port);
      v->next_host++;
      continue;
    }
    if (is_numeric_host(h)) {
      add_target(v, h, h, port);
      v->next_host++;
      continue;
    }
    g = malloc(sizeof(*g));
    if (g == NULL) {
      fatal(v, "out of memory", NULL);
      return;
    }
    g->v = v;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    err = uv_getaddrinfo(v->loop, &g->req, on_resolved, h, NULL, &hints);
    if (err != 0) {
      free(g);
      item_begin(&v->resolve_errors);
      buf_str(&v->resolve_errors, "could not resolve \"");
      buf_name(&v->resolve_errors, h, VERIFY_QUOTE_MAX);
      buf_str(&v->resolve_errors, "\": ");
      buf_str(&v->resolve_errors, uv_strerror(err));
      v->next_host++;
      continue;
    }
    v->gai = g;
    return;
  }
  connect_start(v, 1);
}

static const char *conninfo_value(const PQconninfoOption *opts,
                                  const char *key,
                                  const char *env) {
  const PQconninfoOption *o;

  for (o = opts; o->keyword != NULL; o++)
    if (strcmp(o->keyword, key) == 0 && o->val != NULL && o->val[0] != '\0')
      return o->val;
  /* libpq falls back to these variables; so must we, to see the same
   * hosts it would connect to. */
  return getenv(env);
}

/* Reads the DSN's targets and either starts resolving them or, when no name
 * needs a lookup (hostaddr given, no host, socket paths only), connects. */
static void begin(sw_verify_t *v) {
  PQconninfoOption *opts;
  char *errmsg = NULL;
  const char *host, *hostaddr, *port, *options;

  opts = PQconninfoParse(v->dsn, &errmsg);
  if (opts == NULL) {
    fatal(v, "invalid dsn", errmsg != NULL ? errmsg : "out of memory");
    PQfreemem(errmsg);
    return;
  }
  host = conninfo_value(opts, "host", "PGHOST");
  hostaddr = conninfo_value(opts, "hostaddr", "PGHOSTADDR");
  port = conninfo_value(opts, "port", "PGPORT");
  options = conninfo_value(opts, "options", "PGOPTIONS");
  v->user_options = dup_str(options != NULL ? options : "");
  if (v->user_options == NULL ||
      (host != NULL && split_list(host, &v->hosts, &v->nhosts) != 0) ||
      (port != NULL && split_list(port, &v->ports, &v->nports) != 0)) {
    PQconninfoFree(opts);
    fatal(v, "out of memory", NULL);
    return;
  }
  PQconninfoFree(opts);

  /* With hostaddr libpq does no lookup; with no host it uses a socket. A
   * port list that does not pair with the hosts is libpq's to reject. */
  if ((hostaddr != NULL && hostaddr[0] != '\0') || v->nhosts == 0 ||
      (v->nports > 1 && v->nports != v->nhosts)) {
    connect_start(v, 0);
    return;
  }
  resolve_next(v);
}

/* --- public --------------------------------------------------------------- */

static int copy_params(sw_verify_t *v, const sw_verify_params_t *p) {
  size_t i;

  v->dsn = dup_str(p->dsn);
  if (v->dsn == NULL)
    return UV_ENOMEM;
  if (p->nreqs > 0) {
    v->reqs = calloc(p->nreqs, sizeof(*v->reqs));
    if (v->reqs == NULL)
      return UV_ENOMEM;
    v->nreqs = p->nreqs;
  }
  for (i = 0; i < p->nreqs; i++) {
    sw_verify_kind_t kind = p->reqs[i].kind;
    v->reqs[i].kind = kind;
    /* A LOCKS requirement has no strings; whatever it carries is ignored. */
    if (kind == SW_VERIFY_LOCKS)
      continue;
    v->reqs[i].a = dup_str(p->reqs[i].a);
    v->reqs[i].b = kind == SW_VERIFY_QUERY ? NULL : dup_str(p->reqs[i].b);
    if (v->reqs[i].a == NULL ||
        (kind != SW_VERIFY_QUERY && v->reqs[i].b == NULL))
      return UV_ENOMEM;
  }
  return build_stmts(v);
}

static int valid_params(const sw_verify_params_t *p) {
  size_t i, n[4] = {0, 0, 0, 0};

  if (p->dsn == NULL || (p->nreqs > 0 && p->reqs == NULL))
    return 0;
  for (i = 0; i < p->nreqs; i++) {
    const sw_verify_req_t *r = &p->reqs[i];
    if (r->kind != SW_VERIFY_MIGRATION && r->kind != SW_VERIFY_COLUMN &&
        r->kind != SW_VERIFY_QUERY && r->kind != SW_VERIFY_LOCKS)
      return 0;
    if (r->kind != SW_VERIFY_LOCKS &&
        (r->a == NULL || (r->kind != SW_VERIFY_QUERY && r->b == NULL)))
      return 0;
    if (++n[r->kind] > SW_VERIFY_MAX_REQS)
      return 0;
  }
  return 1;
}

int sw_verify_start(uv_loop_t *loop,
                    const sw_verify_params_t *p,
                    sw_verify_cb cb,
                    void *data,
                    sw_verify_t **out) {
  sw_verify_t *v;
  int err;

  if (loop == NULL || p == NULL || cb == NULL || !valid_params(p))
    return UV_EINVAL;
  v = calloc(1, sizeof(*v));
  if (v == NULL)
    return UV_ENOMEM;
  sw_buf_init(&v->c_host, VERIFY_LIST_MAX);
  sw_buf_init(&v->c_addr, VERIFY_LIST_MAX);
  sw_buf_init(&v->c_port, VERIFY_LIST_MAX);
  sw_buf_init(&v->resolve_errors, VERIFY_LIST_MAX);
  sw_buf_init(&v->fails, VERIFY_LIST_MAX);
  sw_buf_init(&v->notes, VERIFY_LIST_MAX);
  sw_buf_init(&v->fatal, VERIFY_LIST_MAX);
  err = copy_params(v, p);
  if (err == 0)
    err = uv_timer_init(loop, &v->timer);
  if (err != 0) {
    free_run(v);
    return err;
  }
  v->loop = loop;
  v->cb = cb;
  v->data = data;
  v->phase = VERIFY_RESOLVING;
  v->connect_ms = p->connect_timeout_ms > 0 ? p->connect_timeout_ms
                                            : SW_VERIFY_DEFAULT_CONNECT_MS;
  v->statement_ms = p->statement_timeout_ms > 0
                        ? p->statement_timeout_ms
                        : SW_VERIFY_DEFAULT_STATEMENT_MS;
  v->lock_ms =
      p->lock_timeout_ms > 0 ? p->lock_timeout_ms : SW_VERIFY_DEFAULT_LOCK_MS;
  /* The server takes these as an int of milliseconds. */
  if (v->statement_ms > INT_MAX)
    v->statement_ms = INT_MAX;
  if (v->lock_ms > INT_MAX)
    v->lock_ms = INT_MAX;
  v->started_ns = uv_hrtime();
  if (out != NULL)
    *out = v;

  /* The loop's clock is the time its current turn began, which may be long
   * ago when a caller did slow work first; the deadline counts from now. */
  uv_update_time(loop);
  err = uv_timer_start(&v->timer, on_timer, v->connect_ms, 0);
  if (err != 0) {
    fatal(v, "cannot arm the deadline", uv_strerror(err));
    return 0;
  }
  begin(v);
  return 0;
}

void sw_verify_cancel(sw_verify_t *v) {
  if (v == NULL)
    return;
  v->cancelled = 1;
  finish(v);
}

const char *sw_verify_status_name(sw_verify_status_t s) {
  switch (s) {
    case SW_VERIFY_PASS:
      return "pass";
    case SW_VERIFY_FAIL:
      return "fail";
    case SW_VERIFY_INCONCLUSIVE:
      return "inconclusive";
  }
  return "unknown";
}
