/* Tests of the verify module (proxy/verify.c) against a real PostgreSQL.
 *
 * The binary starts its own cluster with tests/pg-cluster.sh in a temporary
 * directory on a free port (so it runs from the repository root, as
 * tests/run-unit does), and creates two databases: `app`, a Django schema
 * after the seed's rename migration, and `old_app`, the same before it. Each
 * case drives a fresh uv loop until the verification's callback, asserts the
 * verdict and its message, that the callback ran exactly once, and that
 * uv_loop_close() == 0 afterwards (every handle closed).
 *
 * The cluster is stopped even when the binary fails, crashes or is killed:
 * a watchdog process in a session of its own starts it, then waits for the
 * end of a pipe only this process holds and stops it when that closes. The
 * whole binary takes about 4 s, most of it initdb, the deliberate timeouts
 * (200 to 400 ms each) and a lock wait left to grow for 300 ms.
 *
 * Setup code here uses blocking libpq calls (PQconnectdb, PQexec); the
 * module under test must not, and does not. */
#include <errno.h>
#include <fcntl.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

#include "sw_test.h"
#include "sw_verify.h"

#define CLUSTER_SCRIPT "tests/pg-cluster.sh"
/* A case that has not called back by then has hung: cancel it and fail. */
#define GUARD_MS 15000

/* Names that break naive quoting: array-literal syntax ({ } , " \), SQL
 * quotes, a NULL that an unquoted array element would turn into a null. */
#define SPECIAL_APP "we'ird\"app, {x}"
#define SPECIAL_NAME "0003_{a,b}\"q\"\\back\\slash"
/* The table as SQL names it, and the identifier it denotes: Odd "Tbl", {x}\ */
#define ODD_TABLE "\"Odd \"\"Tbl\"\", {x}\\\""
#define ODD_COLUMN "c, \"q\" {b}\\"

static char cluster_dir[64];
static int cluster_port;
static int cluster_up;
static int cluster_broken;
static int watchdog_fd = -1;
static pid_t watchdog_pid;

/* --- the cluster ---------------------------------------------------------- */

static int free_port(void) {
  struct sockaddr_in sa;
  socklen_t len = sizeof(sa);
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  int port = -1;

  memset(&sa, 0, sizeof(sa));
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
      getsockname(fd, (struct sockaddr *)&sa, &len) == 0)
    port = ntohs(sa.sin_port);
  if (fd >= 0)
    close(fd);
  return port;
}

/* A TCP socket on 127.0.0.1 that accepts connections into its backlog (the
 * kernel completes the handshake) and never answers a byte. */
static int silent_server(int *port) {
  struct sockaddr_in sa;
  socklen_t len = sizeof(sa);
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

  memset(&sa, 0, sizeof(sa));
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
      listen(fd, 16) != 0 ||
      getsockname(fd, (struct sockaddr *)&sa, &len) != 0) {
    if (fd >= 0)
      close(fd);
    return -1;
  }
  *port = ntohs(sa.sin_port);
  return fd;
}

/* Forks the watchdog, which starts the cluster and later stops it: it runs
 * `pg-cluster.sh start`, reports the exit status on a pipe, then waits for
 * the end of another pipe whose write end only this process holds, and runs
 * `pg-cluster.sh stop` when it closes: at stop_cluster() or when this
 * process ends, however it ends. Because the watchdog runs both, a stop can
 * never overtake a start that is still running. It lives in a session of
 * its own, so a signal to the test's process group (a runner's timeout,
 * Ctrl-C) leaves it to clean up. Only async-signal-safe calls in the child:
 * libuv's threadpool may be running by now. Returns the status of start. */
static int start_cluster_with_watchdog(void) {
  static char port_arg[16];
  static char *start_argv[5];
  static char *stop_argv[4];
  int death[2], report[2];
  unsigned char st = 255;
  pid_t pid;
  ssize_t n;

  snprintf(port_arg, sizeof(port_arg), "%d", cluster_port);
  start_argv[0] = CLUSTER_SCRIPT;
  start_argv[1] = "start";
  start_argv[2] = cluster_dir;
  start_argv[3] = port_arg;
  start_argv[4] = NULL;
  stop_argv[0] = CLUSTER_SCRIPT;
  stop_argv[1] = "stop";
  stop_argv[2] = cluster_dir;
  stop_argv[3] = NULL;
  /* CLOEXEC: the server must not inherit the write end of `death`, or the
   * watchdog would never see it close. */
  if (pipe2(death, O_CLOEXEC) != 0)
    return -1;
  if (pipe2(report, O_CLOEXEC) != 0) {
    close(death[0]);
    close(death[1]);
    return -1;
  }
  fflush(stdout);
  pid = fork();
  if (pid < 0) {
    close(death[0]);
    close(death[1]);
    close(report[0]);
    close(report[1]);
    return -1;
  }
  if (pid == 0) {
    struct sigaction sa;
    pid_t child;
    int status = 0;
    char c;

    setsid();
    close(death[1]);
    close(report[0]);
    child = fork();
    if (child == 0) {
      execv(CLUSTER_SCRIPT, start_argv);
      _exit(127);
    }
    while (child > 0 && waitpid(child, &status, 0) < 0 && errno == EINTR) {
    }
    st = child > 0 && WIFEXITED(status) ? (unsigned char)WEXITSTATUS(status)
                                        : 255;
    /* When the parent is gone, this write raises SIGPIPE, which must not
     * end the watchdog before its real job. */
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);
    if (write(report[1], &st, 1) != 1) {
      /* The parent is gone; the stop below still runs. */
    }
    close(report[1]);
    sa.sa_handler = SIG_DFL;
    sigaction(SIGPIPE, &sa, NULL);
    while (read(death[0], &c, 1) < 0 && errno == EINTR) {
    }
    execv(CLUSTER_SCRIPT, stop_argv);
    _exit(127);
  }
  close(death[0]);
  close(report[1]);
  watchdog_fd = death[1];
  watchdog_pid = pid;
  while ((n = read(report[0], &st, 1)) < 0 && errno == EINTR) {
  }
  close(report[0]);
  return n == 1 ? st : 255;
}

/* Stops the cluster through the watchdog and waits until it is gone. */
static int stop_cluster(void) {
  int status = 0;

  if (watchdog_fd < 0)
    return 0;
  close(watchdog_fd);
  watchdog_fd = -1;
  fflush(stdout);
  while (waitpid(watchdog_pid, &status, 0) < 0 && errno == EINTR) {
  }
  cluster_up = 0;
  return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

static void stop_cluster_at_exit(void) {
  (void)stop_cluster();
}

static PGconn *db_connect(const char *db) {
  char conninfo[256];
  PGconn *c;

  snprintf(conninfo, sizeof(conninfo),
           "host=127.0.0.1 port=%d user=postgres dbname=%s connect_timeout=10",
           cluster_port, db);
  c = PQconnectdb(conninfo);
  if (PQstatus(c) != CONNECTION_OK) {
    printf("setup: cannot connect to %s: %s", db, PQerrorMessage(c));
    PQfinish(c);
    return NULL;
  }
  return c;
}

static int db_exec(PGconn *c, const char *sql) {
  PGresult *r = PQexec(c, sql);
  int ok = PQresultStatus(r) == PGRES_COMMAND_OK ||
           PQresultStatus(r) == PGRES_TUPLES_OK;
  if (!ok)
    printf("setup: %s\n  failed: %s", sql, PQresultErrorMessage(r));
  PQclear(r);
  return ok ? 0 : -1;
}

static int db_exec2(PGconn *c, const char *sql, const char *a, const char *b) {
  const char *vals[2] = {a, b};
  PGresult *r = PQexecParams(c, sql, 2, NULL, vals, NULL, NULL, 0);
  int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
  if (!ok)
    printf("setup: %s\n  failed: %s", sql, PQresultErrorMessage(r));
  PQclear(r);
  return ok ? 0 : -1;
}

static const char *const app_schema[] = {
    "CREATE TABLE django_migrations (id serial PRIMARY KEY, app text NOT NULL,"
    " name text NOT NULL, applied timestamptz NOT NULL DEFAULT now())",
    "INSERT INTO django_migrations (app, name) VALUES"
    " ('unified_db', '0001_initial'), ('unified_db', '0002_rename_member'),"
    " ('auth', '0001_initial')",
    "CREATE TABLE unified_db_personlink (id serial PRIMARY KEY,"
    " person_id integer, bm_parliament_member integer, legacy integer)",
    /* A dropped column stays in pg_attribute, marked attisdropped. */
    "ALTER TABLE unified_db_personlink DROP COLUMN legacy",
    "CREATE SCHEMA other",
    "CREATE TABLE other.things (x integer)",
    "CREATE TABLE locked_table (id integer)",
    "CREATE TABLE " ODD_TABLE " (\"c, \"\"q\"\" {b}\\\" integer)",
    NULL,
};

/* Blue's schema, before the rename migration. */
static const char *const old_app_schema[] = {
    "CREATE TABLE django_migrations (id serial PRIMARY KEY, app text NOT NULL,"
    " name text NOT NULL, applied timestamptz NOT NULL DEFAULT now())",
    "INSERT INTO django_migrations (app, name) VALUES"
    " ('unified_db', '0001_initial')",
    "CREATE TABLE unified_db_personlink (id serial PRIMARY KEY,"
    " person_id integer, parliament_member integer)",
    NULL,
};

static int setup_databases(void) {
  PGconn *c;
  const char *const *sql;
  int err = 0;

  if ((c = db_connect("postgres")) == NULL)
    return -1;
  err |= db_exec(c, "CREATE DATABASE app");
  err |= db_exec(c, "CREATE DATABASE old_app");
  PQfinish(c);
  if (err != 0 || (c = db_connect("app")) == NULL)
    return -1;
  for (sql = app_schema; *sql != NULL; sql++)
    err |= db_exec(c, *sql);
  err |=
      db_exec2(c, "INSERT INTO django_migrations (app, name) VALUES ($1, $2)",
               SPECIAL_APP, SPECIAL_NAME);
  err |=
      db_exec2(c, "INSERT INTO django_migrations (app, name) VALUES ($1, $2)",
               "NULL", "{}");
  PQfinish(c);
  if (err != 0 || (c = db_connect("old_app")) == NULL)
    return -1;
  for (sql = old_app_schema; *sql != NULL; sql++)
    err |= db_exec(c, *sql);
  PQfinish(c);
  return err;
}

/* Starts the cluster once (again after a case stopped it); returns 0 when
 * it is up with its databases. */
static int ensure_cluster(void) {
  static int registered;
  int err;

  if (cluster_up)
    return 0;
  if (cluster_broken)
    return -1;
  cluster_broken = 1;
  if (access(CLUSTER_SCRIPT, X_OK) != 0) {
    printf("setup: %s not found: run from the repository root\n",
           CLUSTER_SCRIPT);
    return -1;
  }
  snprintf(cluster_dir, sizeof(cluster_dir), "/tmp/switchd-verify-XXXXXX");
  if (mkdtemp(cluster_dir) == NULL) {
    printf("setup: mkdtemp: %s\n", strerror(errno));
    return -1;
  }
  cluster_port = free_port();
  if (cluster_port < 0) {
    printf("setup: no free port\n");
    rmdir(cluster_dir);
    return -1;
  }
  if (!registered) {
    atexit(stop_cluster_at_exit);
    registered = 1;
  }
  err = start_cluster_with_watchdog();
  if (err != 0) {
    printf("setup: '%s start %s %d' failed (status %d)\n", CLUSTER_SCRIPT,
           cluster_dir, cluster_port, err);
    stop_cluster();
    rmdir(cluster_dir);
    return -1;
  }
  cluster_up = 1;
  if (setup_databases() != 0) {
    stop_cluster();
    return -1;
  }
  cluster_broken = 0;
  return 0;
}

/* --- running one verification --------------------------------------------- */

typedef struct run_s {
  sw_verify_t *v;
  int calls;
  int wrong_handle;
  sw_verify_status_t status;
  char message[SW_VERIFY_MSG_MAX + 8];
  uint64_t elapsed_ms;
  uint64_t wall_ms;
  int locks_checked;
  uint64_t lock_waiters;
  uint64_t lock_wait_max_ms;
  uv_timer_t guard;
  /* Optional: at `at_ms`, cancel (when cancel) or call hook. */
  uv_timer_t at;
  int at_ms;
  int cancel;
  void (*hook)(struct run_s *run);
} run_t;

static void on_guard(uv_timer_t *t) {
  run_t *run = t->data;
  printf("case hung for %d ms: cancelling\n", GUARD_MS);
  SW_CHECK(run->calls > 0);
  if (run->calls == 0)
    sw_verify_cancel(run->v);
}

static void on_at(uv_timer_t *t) {
  run_t *run = t->data;
  if (run->calls > 0)
    return;
  if (run->cancel)
    sw_verify_cancel(run->v);
  if (run->hook != NULL)
    run->hook(run);
}

static void on_result(sw_verify_t *v, const sw_verify_result_t *r, void *data) {
  run_t *run = data;

  run->calls++;
  run->wrong_handle |= v != run->v;
  run->status = r->status;
  snprintf(run->message, sizeof(run->message), "%s", r->message);
  run->elapsed_ms = r->elapsed_ms;
  run->locks_checked = r->locks_checked;
  run->lock_waiters = r->lock_waiters;
  run->lock_wait_max_ms = r->lock_wait_max_ms;
  uv_close((uv_handle_t *)&run->guard, NULL);
  if (run->at_ms >= 0)
    uv_close((uv_handle_t *)&run->at, NULL);
}

/* Runs one verification on a fresh loop until its callback. run->at_ms says
 * when to cancel it or call run->hook: -1 never, 0 right after
 * sw_verify_start(), > 0 after that many ms. */
static void run_verify_at(const char *file,
                          int line,
                          const sw_verify_params_t *p,
                          run_t *run) {
  uv_loop_t loop;
  uint64_t t0;
  int err;

  SW_CHECK_INT_EQ_AT(file, line, uv_loop_init(&loop), 0);
  uv_timer_init(&loop, &run->guard);
  run->guard.data = run;
  uv_timer_start(&run->guard, on_guard, GUARD_MS, 0);
  if (run->at_ms >= 0) {
    uv_timer_init(&loop, &run->at);
    run->at.data = run;
  }
  t0 = uv_hrtime();
  err = sw_verify_start(&loop, p, on_result, run, &run->v);
  SW_CHECK_INT_EQ_AT(file, line, err, 0);
  if (err != 0) {
    uv_close((uv_handle_t *)&run->guard, NULL);
    if (run->at_ms >= 0)
      uv_close((uv_handle_t *)&run->at, NULL);
  } else if (run->at_ms == 0) {
    on_at(&run->at);
  } else if (run->at_ms > 0) {
    uv_timer_start(&run->at, on_at, (uint64_t)run->at_ms, 0);
  }
  uv_run(&loop, UV_RUN_DEFAULT);
  run->wall_ms = (uv_hrtime() - t0) / 1000000;
  SW_CHECK_INT_EQ_AT(file, line, run->calls, err == 0 ? 1 : 0);
  SW_CHECK_AT(file, line, !run->wrong_handle);
  SW_CHECK_INT_EQ_AT(file, line, uv_loop_close(&loop), 0);
  printf("  %s after %llu ms: %s\n", sw_verify_status_name(run->status),
         (unsigned long long)run->elapsed_ms, run->message);
}

#define RUN(p, run) run_verify_at(__FILE__, __LINE__, (p), (run))

static void run_init(run_t *run) {
  memset(run, 0, sizeof(*run));
  run->at_ms = -1;
  run->status = (sw_verify_status_t)-1;
}

#define M(app, name) \
  { SW_VERIFY_MIGRATION, (app), (name) }
#define C(table, column) \
  { SW_VERIFY_COLUMN, (table), (column) }
#define Q(sql) \
  { SW_VERIFY_QUERY, (sql), NULL }
#define L() \
  { SW_VERIFY_LOCKS, NULL, NULL }
#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static char dsn_buf[4][256];

/* A DSN for database db of the test cluster (over TCP). */
static const char *dsn(const char *db) {
  static int next;
  char *d = dsn_buf[next++ % 4];
  snprintf(d, sizeof(dsn_buf[0]),
           "host=127.0.0.1 port=%d user=postgres dbname=%s", cluster_port, db);
  return d;
}

static sw_verify_params_t params(const char *d,
                                 const sw_verify_req_t *reqs,
                                 size_t n) {
  sw_verify_params_t p;
  memset(&p, 0, sizeof(p));
  p.dsn = d;
  p.connect_timeout_ms = 3000;
  p.statement_timeout_ms = 3000;
  p.lock_timeout_ms = 500;
  p.reqs = reqs;
  p.nreqs = n;
  return p;
}

#define NEED_CLUSTER()                    \
  do {                                    \
    if (!SW_CHECK(ensure_cluster() == 0)) \
      return;                             \
  } while (0)

/* --- cases ---------------------------------------------------------------- */

static void test_pass_all(void) {
  static const sw_verify_req_t reqs[] = {
      M("unified_db", "0001_initial"),
      M("unified_db", "0002_rename_member"),
      M("auth", "0001_initial"),
      M(SPECIAL_APP, SPECIAL_NAME),
      M("NULL", "{}"),
      C("unified_db_personlink", "bm_parliament_member"),
      C("public.unified_db_personlink", "id"),
      C("other.things", "x"),
      C(ODD_TABLE, ODD_COLUMN),
      Q("SELECT true"),
      Q("SELECT count(*) = 5 FROM django_migrations"),
      Q("SELECT true, 'only the first column counts'"),
      /* The session is what the module promises. */
      Q("SELECT current_setting('transaction_read_only') = 'on'"),
      Q("SELECT current_setting('statement_timeout') = '3s'"
        " AND current_setting('lock_timeout') = '500ms'"),
      Q("SELECT current_setting('application_name') = 'switchd-verify'"),
  };
  sw_verify_params_t p;
  run_t run;

  NEED_CLUSTER();
  p = params(dsn("app"), reqs, COUNT(reqs));
  run_init(&run);
  RUN(&p, &run);
  SW_CHECK_INT_EQ(run.status, SW_VERIFY_PASS);
  SW_CHECK_STR_EQ(run.message, "15 requirements met");
}

static void test_no_requirements(void) {
  sw_verify_params_t p;
  run_t run;

  NEED_CLUSTER();
  p = params(dsn("app"), NULL, 0);
  run_init(&run);
  RUN(&p, &run);
  SW_CHECK_INT_EQ(run.status, SW_VERIFY_PASS);
  SW_CHECK_STR_EQ(run.message, "connected; no requirements");
}

static void test_missing_migration(void) {
  static const sw_verify_req_t reqs[] = {
      M("unified_db", "0001_initial"),
      M("unified_db", "0003_next"),
      M("auth", "0001_initial"),
      M("other_app", "0001_initial"),
  };
  sw_verify_params_t p;
  run_t run;

  NEED_CLUSTER();
  p = params(dsn("app"), reqs, COUNT(reqs));
  run_init(&run);
  RUN(&p, &run);
  SW_CHECK_INT_EQ(run.status, SW_VERIFY_FAIL);
  SW_CHECK_STR_EQ(run.message,
                  "missing migration unified_db.0003_next; "
                  "missing migration other_app.0001_initial");
}

static void test_missing_column(void) {
  static const sw_verify_req_t reqs[] = {
      C("unified_db_personlink", "person_id"),
      C("unified_db_personlink", "nickname"),
      C("unified_db_personlink", "legacy"), /* dropped */
      C("nope_table", "id"),
      C("other.unified_db_personlink", "id"),
      C("unified_db_personlink", "ID"), /* columns are exact, not folded */
      C("other.things", "x"),
  };
  sw_verify_params_t p;
  run_t run;

  NEED_CLUSTER();
  p = params(dsn("app"), reqs, COUNT(reqs));
  run_init(&run);
  RUN(&p, &run);
  SW_CHECK_INT_EQ(run.status, SW_VERIFY_FAIL);
  SW_CHECK_STR_EQ(run.message,
                  "missing column unified_db_personlink.nickname; "
                  "missing column unified_db_personlink.legacy; "
                  "missing column nope_table.id (no such table); "
                  "missing column other.unified_db_personlink.id (no such "
                  "table); "
                  "missing column unified_db_personlink.ID");
}

static void test_queries(void) {
  static const sw_verify_req_t reqs[] = {
      Q("SELECT true"),
      Q("SELECT false"),
      Q("SELECT true WHERE false"),
      Q("SELECT * FROM nonexistent_table"),
      Q("SELECT 1"),
      Q("SELECT NULL::boolean"),
      Q("SELECT true FROM generate_series(1, 3)"),
      Q("INSERT INTO locked_table VALUES (1)"),
      Q("SELECT true; SELECT true"),
      Q(""),
      Q("SET work_mem = '8MB'"),
      Q("SELECT 'true'"),
  };
  sw_verify_params_t p;
  run_t run;

  NEED_CLUSTER();
  p = params(dsn("app"), reqs, COUNT(reqs));
  run_init(&run);
  RUN(&p, &run);
  SW_CHECK_INT_EQ(run.status, SW_VERIFY_FAIL);
  SW_CHECK_STR_EQ(
      run.message,
      "query 2 returned false; "
      "query 3 returned no rows; "
      "query 4 failed: relation \"nonexistent_table\" does not exist "
      "(SQLSTATE 42P01); "
      "query 5 returned '1', not a boolean; "
      "query 6 returned NULL; "
      "query 7 returned 3 rows, not one; "
      "query 8 failed: cannot execute INSERT in a read-only transaction "
      "(SQLSTATE 25006); "
      "query 9 failed: cannot insert multiple commands into a prepared "
      "statement (SQLSTATE 42601); "
      "query 10 is empty; "
      "query 11 returned no rows (SET); "
      "query 12 returned 'true', not a boolean");
}

/* COPY would put the session in a mode no check needs: the run ends. */
static void test_copy_refused(void) {
  static const sw_verify_req_t reqs[] = {
      Q("SELECT true"),
      Q("COPY (SELECT 1 FROM generate_series(1, 100000)) TO STDOUT"),
      Q("SELECT true"),
  };
  sw_verify_params_t p;
  run_t run;

  NEED_CLUSTER();
  p = params(dsn("app"), reqs, COUNT(reqs));
  run_init(&run);
  RUN(&p, &run);
  SW_CHECK_INT_EQ(run.status, SW_VERIFY_FAIL);
  SW_CHECK_STR_EQ(run.message,
                  "query 2 started a COPY, which verification refuses; could "
                  "not check: the checks after it did not run");
}

/* The example of the brief, against blue's schema before the rename. */
static void test_old_schema(void) {
  static const sw_verify_req_t reqs[] = {
      M("unified_db", "0001_initial"),
      M("unified_db", "0002_rename_member"),
      C("unified_db_personlink", "bm_parliament_member"),
      C("unified_db_personlink", "parliament_member"),
      Q("SELECT true"),
      Q("SELECT EXISTS (SELECT 1 FROM information_schema.columns"
        " WHERE table_name = 'unified_db_personlink'"
        " AND column_name = 'bm_parliament_member')"),
  };
  sw_verify_params_t p;
  run_t run;

  NEED_CLUSTER();
  p = params(dsn("old_app"), reqs, COUNT(reqs));
  run_init(&run);
  RUN(&p, &run);
  SW_CHECK_INT_EQ(run.status, SW_VERIFY_FAIL);
  SW_CHECK_STR_EQ(run.message,
                  "missing migration unified_db.0002_rename_member; "
                  "missing column unified_db_personlink.bm_parliament_member; "
                  "query 2 returned false");
}

static void test_no_migrations_table(void) {
  static const sw_verify_req_t reqs[] = {
      M("unified_db", "0001_initial"),
      M(SPECIAL_APP, SPECIAL_NAME),
      C("pg_catalog.pg_class", "relname"),
  };
  sw_verify_params_t p;
  run_t run;

  NEED_CLUSTER();
  p = params(dsn("postgres"), reqs, COUNT(reqs));
  run_init(&run);
  RUN(&p, &run);
  SW_CHECK_INT_EQ(run.status, SW_VERIFY_FAIL);
  SW_CHECK_STR_EQ(run.message,
                  "no django_migrations table; "
                  "missing migration unified_db.0001_initial; "
                  "missing migration " SPECIAL_APP "." SPECIAL_NAME);
}

static void test_special_names(void) {
  static const sw_verify_req_t present[] = {
      M(SPECIAL_APP, SPECIAL_NAME),
      M("NULL", "{}"),
      C(ODD_TABLE, ODD_COLUMN),
  };
  static const sw_verify_req_t missing[] = {
      M("o'k", "0009_\"}{,\\"),
      M(SPECIAL_APP, "0003_{a,b}"), /* a prefix of a real name */
      M("NULL", "NULL"),
      M(" auth", "0001_initial"), /* no trimming */
      C(ODD_TABLE, "c, \"q\" {b}"),
      C(ODD_TABLE, ODD_COLUMN),
  };
  sw_verify_params_t p;
  run_t run;

  NEED_CLUSTER();
  p = params(dsn("app"), present, COUNT(present));
  run_init(&run);
  RUN(&p, &run);
  SW_CHECK_INT_EQ(run.status, SW_VERIFY_PASS);

  p = params(dsn("app"), missing, COUNT(missing));
  run_init(&run);
  RUN(&p, &run);
  SW_CHECK_INT_EQ(run.status, SW_VERIFY_FAIL);
  SW_CHECK_STR_EQ(run.message,
                  "missing migration o'k.0009_\"}{,\\; "
                  "missing migration " SPECIAL_APP
                  ".0003_{a,b}; "
                  "missing migration NULL.NULL; "
                  "missing migration  auth.0001_initial; "
                  "missing column " ODD_TABLE ".c, \"q\" {b}");
}

/* Many requirements in one statement each, and a message that is cut. */
static void test_many_requirements(void) {
  enum { N = 2000 };
  static const char prefix[] =
      "missing migration unified_db.0001_missing; "
      "missing migration unified_db.0003_missing; ";
  static sw_verify_req_t reqs[N + 1];
  static char names[N][32];
  sw_verify_params_t p;
  run_t run;
  size_t len;
  int i;

  NEED_CLUSTER();
  for (i = 0; i < N; i++) {
    snprintf(names[i], sizeof(names[i]), "%04d_missing", i);
    reqs[i].kind = i % 2 ? SW_VERIFY_MIGRATION : SW_VERIFY_COLUMN;
    reqs[i].a = i % 2 ? "unified_db" : "unified_db_personlink";
    reqs[i].b = names[i];
  }
  reqs[N].kind = SW_VERIFY_MIGRATION;
  reqs[N].a = "auth";
  reqs[N].b = "0001_initial";
  p = params(dsn("app"), reqs, N + 1);
  run_init(&run);
  RUN(&p, &run);
  SW_CHECK_INT_EQ(run.status, SW_VERIFY_FAIL);
  len = strlen(run.message);
  SW_CHECK(len <= SW_VERIFY_MSG_MAX + 3);
  SW_CHECK(len >= 3 && strcmp(run.message + len - 3, "...") == 0);
  run.message[strlen(prefix)] = '\0';
  SW_CHECK_STR_EQ(run.message, prefix);
}

/* A lock timeout is INCONCLUSIVE, not FAIL: the database answered, but it
 * could not decide within the time allowed; the same query may pass a
 * moment later, and nothing is known to be missing. Alongside a definite
 * failure, the verdict is FAIL and the message names both. */
static void test_lock_timeout(void) {
  static const sw_verify_req_t reqs[] = {
      Q("SELECT count(*) >= 0 FROM locked_table"),
  };
  static const sw_verify_req_t reqs2[] = {
      M("unified_db", "0009_missing"),
      Q("SELECT count(*) >= 0 FROM locked_table"),
      C("unified_db_personlink", "id"),
  };
  sw_verify_params_t p;
  run_t run;
  PGconn *holder;

  NEED_CLUSTER();
  holder = db_connect("app");
  if (!SW_CHECK(holder != NULL))
    return;
  SW_CHECK_INT_EQ(db_exec(holder, "BEGIN"), 0);
  SW_CHECK_INT_EQ(
      db_exec(holder, "LOCK TABLE locked_table IN ACCESS EXCLUSIVE MODE"), 0);

  p = params(dsn("app"), reqs, COUNT(reqs));
  p.lock_timeout_ms = 200;
  run_init(&run);
  RUN(&p, &run);
  SW_CHECK_INT_EQ(run.status, SW_VERIFY_INCONCLUSIVE);
  SW_CHECK_STR_EQ(run.message,
                  "query 1: canceling statement due to lock timeout "
                  "(SQLSTATE 55P03)");
  SW_CHECK(run.elapsed_ms >= 200 && run.elapsed_ms < 2000);

  p = params(dsn("app"), reqs2, COUNT(reqs2));
  p.lock_timeout_ms = 200;
  run_init(&run);
  RUN(&p, &run);
  SW_CHECK_INT_EQ(run.status, SW_VERIFY_FAIL);
  SW_CHECK_STR_EQ(run.message,
                  "missing migration unified_db.0009_missing; could not "
                  "check: query 1: canceling statement due to lock timeout "
                  "(SQLSTATE 55P03)");

  SW_CHECK_INT_EQ(db_exec(holder, "ROLLBACK"), 0);
  PQfinish(holder);
}

/* A lock sample on a quiet cluster: checked, nobody waiting. Several LOCKS
 * requirements share one statement; strings on one are ignored. Next to
 * other requirements the sample is not counted as one, and a run without
 * LOCKS leaves the lock fields at zero. */
static void test_locks_idle(void) {
  static const sw_verify_req_t only[] = {
      L(),
      {SW_VERIFY_LOCKS, "ignored", NULL},
  };
  static const sw_verify_req_t mixed[] = {
      M("unified_db", "0001_initial"),
      L(),
      C("unified_db_personlink", "id"),
  };
  static const sw_verify_req_t none[] = {M("unified_db", "0001_initial")};
  sw_verify_params_t p;
  run_t run;

  NEED_CLUSTER();
  p = params(dsn("app"), only, COUNT(only));
  run_init(&run);
  RUN(&p, &run);
  SW_CHECK_INT_EQ(run.status, SW_VERIFY_PASS);
  SW_CHECK_STR_EQ(run.message, "lock waits: 0 sessions, longest 0 ms");
  SW_CHECK_INT_EQ(run.locks_checked, 1);
  SW_CHECK_UINT_EQ(run.lock_waiters, 0);
  SW_CHECK_UINT_EQ(run.lock_wait_max_ms, 0);

  p = params(dsn("app"), mixed, COUNT(mixed));
  run_init(&run);
  RUN(&p, &run);
  SW_CHECK_INT_EQ(run.status, SW_VERIFY_PASS);
  SW_CHECK_STR_EQ(run.message,
                  "2 requirements met; lock waits: 0 sessions, longest 0 ms");
  SW_CHECK_INT_EQ(run.locks_checked, 1);
  SW_CHECK_UINT_EQ(run.lock_waiters, 0);

  p = params(dsn("app"), none, COUNT(none));
  run_init(&run);
  run.locks_checked = -1;
  RUN(&p, &run);
  SW_CHECK_INT_EQ(run.status, SW_VERIFY_PASS);
  SW_CHECK_STR_EQ(run.message, "1 requirement met");
  SW_CHECK_INT_EQ(run.locks_checked, 0);
}

/* Waits, up to 5 s, until backend pid waits on a lock (seen from observer,
 * whose every statement reads fresh activity outside a transaction). */
static int wait_until_blocked(PGconn *observer, int pid) {
  char sql[160];
  int i;

  snprintf(sql, sizeof(sql),
           "SELECT 1 FROM pg_stat_activity WHERE pid = %d"
           " AND wait_event_type = 'Lock'",
           pid);
  for (i = 0; i < 500; i++) {
    PGresult *r = PQexec(observer, sql);
    int found = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1;
    PQclear(r);
    if (found)
      return 0;
    usleep(10000);
  }
  return -1;
}

/* One session holds an ACCESS EXCLUSIVE lock in an open transaction, and
 * another has been blocked behind it on a SELECT for about 300 ms. The
 * sample sees the waiter and a wait of at least 200 ms. Mixed with other
 * kinds, the verdict is theirs, and the lock fields are still filled: the
 * sample runs first, before a require-query that then times out on the
 * same lock. Every session is bounded (the waiter's statement_timeout, the
 * verifier's lock_timeout) and closed before the test returns. */
static void test_locks_waiting(void) {
  static const sw_verify_req_t only[] = {L()};
  static const sw_verify_req_t mixed[] = {
      M("unified_db", "0009_missing"),
      Q("SELECT count(*) >= 0 FROM locked_table"),
      L(),
  };
  sw_verify_params_t p;
  run_t run;
  PGconn *holder = NULL, *waiter = NULL, *observer = NULL;
  PGresult *r;
  uint64_t sent_ns, waited_ms;
  int sent = 0;

  NEED_CLUSTER();
  holder = db_connect("app");
  waiter = db_connect("app");
  observer = db_connect("app");
  if (!SW_CHECK(holder != NULL && waiter != NULL && observer != NULL))
    goto done;
  if (!SW_CHECK_INT_EQ(db_exec(waiter, "SET statement_timeout = '10s'"), 0) ||
      !SW_CHECK_INT_EQ(db_exec(holder, "BEGIN"), 0) ||
      !SW_CHECK_INT_EQ(
          db_exec(holder, "LOCK TABLE locked_table IN ACCESS EXCLUSIVE MODE"),
          0))
    goto done;
  /* Blocking mode: PQsendQuery returns once the query is on the wire. */
  sent_ns = uv_hrtime();
  sent = PQsendQuery(waiter, "SELECT * FROM locked_table");
  if (!SW_CHECK(sent) ||
      !SW_CHECK_INT_EQ(wait_until_blocked(observer, PQbackendPID(waiter)), 0))
    goto done;
  waited_ms = (uv_hrtime() - sent_ns) / 1000000;
  if (waited_ms < 300)
    usleep((useconds_t)(300 - waited_ms) * 1000);

  p = params(dsn("app"), only, COUNT(only));
  run_init(&run);
  RUN(&p, &run);
  SW_CHECK_INT_EQ(run.status, SW_VERIFY_PASS);
  SW_CHECK_STR_CONTAINS(run.message, "lock waits: 1 session, longest ");
  SW_CHECK_INT_EQ(run.locks_checked, 1);
  SW_CHECK(run.lock_waiters >= 1);
  SW_CHECK(run.lock_wait_max_ms >= 200 && run.lock_wait_max_ms < 10000);
  printf("  lock_waiters=%llu lock_wait_max_ms=%llu\n",
         (unsigned long long)run.lock_waiters,
         (unsigned long long)run.lock_wait_max_ms);

  p = params(dsn("app"), mixed, COUNT(mixed));
  p.lock_timeout_ms = 200;
  run_init(&run);
  RUN(&p, &run);
  SW_CHECK_INT_EQ(run.status, SW_VERIFY_FAIL);
  SW_CHECK_STR_EQ(run.message,
                  "missing migration unified_db.0009_missing; could not "
                  "check: query 1: canceling statement due to lock timeout "
                  "(SQLSTATE 55P03)");
  SW_CHECK_INT_EQ(run.locks_checked, 1);
  SW_CHECK(run.lock_waiters >= 1);
  SW_CHECK(run.lock_wait_max_ms >= 200 && run.lock_wait_max_ms < 10000);

done:
  if (holder != NULL)
    (void)db_exec(holder, "ROLLBACK");
  if (sent) {
    /* The lock is gone: the waiter's SELECT completes at once. */
    while ((r = PQgetResult(waiter)) != NULL) {
      SW_CHECK_INT_EQ(PQresultStatus(r), PGRES_TUPLES_OK);
      PQclear(r);
    }
  }
  PQfinish(holder);
  PQfinish(waiter);
  PQfinish(observer);
}

/* No database to ask: inconclusive, and no sample. */
static void test_locks_unreachable(void) {
  static const sw_verify_req_t reqs[] = {L()};
  sw_verify_params_t p;
  run_t run;
  char d[128];

  snprintf(d, sizeof(d), "host=127.0.0.1 port=%d user=postgres dbname=app",
           free_port());
  p = params(d, reqs, COUNT(reqs));
  run_init(&run);
  run.locks_checked = -1;
  run.lock_waiters = 7;
  run.lock_wait_max_ms = 7;
  RUN(&p, &run);
  SW_CHECK_INT_EQ(run.status, SW_VERIFY_INCONCLUSIVE);
  SW_CHECK_STR_CONTAINS(run.message, "could not connect: ");
  SW_CHECK_INT_EQ(run.locks_checked, 0);
  SW_CHECK_UINT_EQ(run.lock_waiters, 0);
  SW_CHECK_UINT_EQ(run.lock_wait_max_ms, 0);
}

static void test_statement_timeout(void) {
  static const sw_verify_req_t reqs[] = {
      Q("SELECT pg_sleep(5) IS NOT NULL"),
  };
  sw_verify_params_t p;
  run_t run;

  NEED_CLUSTER();
  p = params(dsn("app"), reqs, COUNT(reqs));
  p.statement_timeout_ms = 300;
  run_init(&run);
  RUN(&p, &run);
  SW_CHECK_INT_EQ(run.status, SW_VERIFY_INCONCLUSIVE);
  SW_CHECK_STR_EQ(run.message,
                  "query 1: canceling statement due to statement timeout "
                  "(SQLSTATE 57014)");
  SW_CHECK(run.elapsed_ms >= 300 && run.elapsed_ms < 300 + SW_VERIFY_GRACE_MS);
}

/* A server that accepts TCP connections and never says a word: only the
 * module's own deadline can end this. */
static void test_silent_server_timeout(void) {
  sw_verify_params_t p;
  run_t run;
  char d[128];
  int port, fd;

  fd = silent_server(&port);
  if (!SW_CHECK(fd >= 0))
    return;
  snprintf(d, sizeof(d), "host=127.0.0.1 port=%d user=postgres dbname=app",
           port);
  p = params(d, NULL, 0);
  p.connect_timeout_ms = 400;
  run_init(&run);
  RUN(&p, &run);
  SW_CHECK_INT_EQ(run.status, SW_VERIFY_INCONCLUSIVE);
  SW_CHECK_STR_EQ(run.message, "timeout after 400 ms connecting");
  SW_CHECK(run.elapsed_ms >= 399 && run.elapsed_ms < 1000);
  SW_CHECK(run.wall_ms < 1000);
  close(fd);
}

static void test_cancel(void) {
  static const sw_verify_req_t reqs[] = {M("unified_db", "0001_initial")};
  sw_verify_params_t p;
  run_t run;
  char d[128];
  int port, fd;

  fd = silent_server(&port);
  if (!SW_CHECK(fd >= 0))
    return;
  snprintf(d, sizeof(d), "host=127.0.0.1 port=%d user=postgres dbname=app",
           port);
  p = params(d, reqs, COUNT(reqs));

  /* While libpq waits for the server. */
  run_init(&run);
  run.at_ms = 100;
  run.cancel = 1;
  RUN(&p, &run);
  SW_CHECK_INT_EQ(run.status, SW_VERIFY_INCONCLUSIVE);
  SW_CHECK_STR_EQ(run.message, "cancelled");
  SW_CHECK(run.elapsed_ms >= 99 && run.elapsed_ms < 1000);

  /* Right after start: the callback still comes later, from the loop. */
  run_init(&run);
  run.at_ms = 0;
  run.cancel = 1;
  RUN(&p, &run);
  SW_CHECK_INT_EQ(run.status, SW_VERIFY_INCONCLUSIVE);
  SW_CHECK_STR_EQ(run.message, "cancelled");
  close(fd);

  /* While a host name is being resolved on the threadpool. */
  NEED_CLUSTER();
  snprintf(d, sizeof(d), "host=localhost port=%d user=postgres dbname=app",
           cluster_port);
  p = params(d, reqs, COUNT(reqs));
  run_init(&run);
  run.at_ms = 0;
  run.cancel = 1;
  RUN(&p, &run);
  SW_CHECK_INT_EQ(run.status, SW_VERIFY_INCONCLUSIVE);
  SW_CHECK_STR_EQ(run.message, "cancelled");
}

/* Connecting by name, by socket directory, and through a refused address
 * first: libpq's socket changes during the connect and the module follows
 * it to the new one. */
static void test_connect_paths(void) {
  static const sw_verify_req_t reqs[] = {M("unified_db", "0001_initial")};
  sw_verify_params_t p;
  run_t run;
  char d[256];
  int dead;

  NEED_CLUSTER();
  dead = free_port();

  snprintf(d, sizeof(d), "host=localhost port=%d user=postgres dbname=app",
           cluster_port);
  p = params(d, reqs, COUNT(reqs));
  run_init(&run);
  RUN(&p, &run);
  SW_CHECK_INT_EQ(run.status, SW_VERIFY_PASS);

  snprintf(d, sizeof(d), "host=%s port=%d user=postgres dbname=app",
           cluster_dir, cluster_port);
  p = params(d, reqs, COUNT(reqs));
  run_init(&run);
  RUN(&p, &run);
  SW_CHECK_INT_EQ(run.status, SW_VERIFY_PASS);

  snprintf(d, sizeof(d),
           "postgresql://postgres@127.0.0.1:%d,127.0.0.1:%d/app"
           "?application_name=mine",
           dead, cluster_port);
  p = params(d, reqs, COUNT(reqs));
  run_init(&run);
  RUN(&p, &run);
  SW_CHECK_INT_EQ(run.status, SW_VERIFY_PASS);

  snprintf(d, sizeof(d), "host=127.0.0.1 port=%d user=postgres dbname=app",
           dead);
  p = params(d, reqs, COUNT(reqs));
  run_init(&run);
  RUN(&p, &run);
  SW_CHECK_INT_EQ(run.status, SW_VERIFY_INCONCLUSIVE);
  SW_CHECK_STR_CONTAINS(run.message, "could not connect: ");
  SW_CHECK_STR_CONTAINS(run.message, "Connection refused");
  SW_CHECK(strchr(run.message, '\n') == NULL);

  /* A database that does not exist is not a schema fact either. */
  p = params(dsn("no_such_db"), reqs, COUNT(reqs));
  run_init(&run);
  RUN(&p, &run);
  SW_CHECK_INT_EQ(run.status, SW_VERIFY_INCONCLUSIVE);
  SW_CHECK_STR_CONTAINS(run.message, "database \"no_such_db\" does not exist");
}

static void test_bad_input(void) {
  static const sw_verify_req_t bad_kind[] = {
      {(sw_verify_kind_t)7, "a", "b"},
  };
  static const sw_verify_req_t null_name[] = {M("app", NULL)};
  sw_verify_params_t p;
  sw_verify_t *v = NULL;
  uv_loop_t loop;
  run_t run;

  SW_CHECK_INT_EQ(uv_loop_init(&loop), 0);
  p = params(NULL, NULL, 0);
  SW_CHECK_INT_EQ(sw_verify_start(&loop, &p, on_result, &run, &v), UV_EINVAL);
  p = params("", bad_kind, 1);
  SW_CHECK_INT_EQ(sw_verify_start(&loop, &p, on_result, &run, &v), UV_EINVAL);
  p = params("", null_name, 1);
  SW_CHECK_INT_EQ(sw_verify_start(&loop, &p, on_result, &run, &v), UV_EINVAL);
  p = params("", NULL, 0);
  SW_CHECK_INT_EQ(sw_verify_start(&loop, &p, NULL, &run, &v), UV_EINVAL);
  SW_CHECK(v == NULL);
  SW_CHECK_INT_EQ(uv_run(&loop, UV_RUN_DEFAULT), 0);
  SW_CHECK_INT_EQ(uv_loop_close(&loop), 0);

  /* A DSN libpq cannot parse: inconclusive, through the callback. */
  p = params("host=127.0.0.1 bogus_option=1", NULL, 0);
  run_init(&run);
  RUN(&p, &run);
  SW_CHECK_INT_EQ(run.status, SW_VERIFY_INCONCLUSIVE);
  SW_CHECK_STR_CONTAINS(run.message, "invalid dsn: ");
  SW_CHECK_STR_CONTAINS(run.message, "bogus_option");
}

static void terminate_verifier(run_t *run) {
  PGconn *c = db_connect("postgres");
  if (!SW_CHECK(c != NULL))
    return;
  SW_CHECK_INT_EQ(db_exec(c,
                          "SELECT pg_terminate_backend(pid) FROM "
                          "pg_stat_activity WHERE application_name = "
                          "'switchd-verify'"),
                  0);
  PQfinish(c);
}

/* The server ends the session in the middle of a query. */
static void test_connection_killed(void) {
  static const sw_verify_req_t reqs[] = {
      Q("SELECT pg_sleep(5) IS NOT NULL"),
      Q("SELECT true"),
  };
  sw_verify_params_t p;
  run_t run;

  NEED_CLUSTER();
  p = params(dsn("app"), reqs, COUNT(reqs));
  run_init(&run);
  run.at_ms = 300;
  run.hook = terminate_verifier;
  RUN(&p, &run);
  SW_CHECK_INT_EQ(run.status, SW_VERIFY_INCONCLUSIVE);
  SW_CHECK_STR_CONTAINS(run.message,
                        "terminating connection due to "
                        "administrator command");
  SW_CHECK(run.elapsed_ms < 2000);
}

/* The database is stopped: unreachable is inconclusive, never a failure. */
static void test_database_stopped(void) {
  static const sw_verify_req_t reqs[] = {M("unified_db", "0001_initial")};
  sw_verify_params_t p;
  run_t run;

  NEED_CLUSTER();
  SW_CHECK_INT_EQ(stop_cluster(), 0);
  p = params(dsn("app"), reqs, COUNT(reqs));
  run_init(&run);
  RUN(&p, &run);
  SW_CHECK_INT_EQ(run.status, SW_VERIFY_INCONCLUSIVE);
  SW_CHECK_STR_CONTAINS(run.message, "could not connect: ");
  SW_CHECK_STR_CONTAINS(run.message, "Connection refused");
}

static void test_teardown(void) {
  SW_CHECK_INT_EQ(stop_cluster(), 0);
  SW_CHECK(access(cluster_dir, F_OK) != 0);
}

SW_TEST_MAIN(SW_TASK(test_pass_all),
             SW_TASK(test_no_requirements),
             SW_TASK(test_missing_migration),
             SW_TASK(test_missing_column),
             SW_TASK(test_queries),
             SW_TASK(test_copy_refused),
             SW_TASK(test_old_schema),
             SW_TASK(test_no_migrations_table),
             SW_TASK(test_special_names),
             SW_TASK(test_many_requirements),
             SW_TASK(test_lock_timeout),
             SW_TASK(test_locks_idle),
             SW_TASK(test_locks_waiting),
             SW_TASK(test_locks_unreachable),
             SW_TASK(test_statement_timeout),
             SW_TASK(test_silent_server_timeout),
             SW_TASK(test_cancel),
             SW_TASK(test_connect_paths),
             SW_TASK(test_bad_input),
             SW_TASK(test_connection_killed),
             SW_TASK(test_database_stopped),
             SW_TASK(test_teardown))
