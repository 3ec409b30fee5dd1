/* switchctl: the command operators and deploy scripts use to drive
 * switchd through its admin API on the Unix socket. Blocking I/O is fine
 * here: this is a short-lived client. Output is for people by default and
 * JSON with --json; the exit code says how it went (sw_api.h). */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "sw_api.h"
#include "sw_config.h"

static const char *sock_path;
static int json_out;

static void die_usage(const char *fmt, ...) {
  va_list ap;
  fprintf(stderr, "switchctl: ");
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fprintf(stderr, "\n(switchctl --help for usage)\n");
  exit(SW_EXIT_USAGE);
}

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* One request on a fresh connection. Returns the HTTP status, or -1 when
 * switchd cannot be reached; *body gets the response body (malloc'd). */
static int call(const char *method,
                const char *path,
                const char *json,
                char **body) {
  struct sockaddr_un sa;
  char head[512];
  size_t cap = 8192, len = 0;
  char *buf;
  int fd, n, status = -1;
  char *p;

  *body = NULL;
  memset(&sa, 0, sizeof(sa));
  sa.sun_family = AF_UNIX;
  if (strlen(sock_path) >= sizeof(sa.sun_path))
    return -1;
  strcpy(sa.sun_path, sock_path);
  fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
    if (fd >= 0)
      close(fd);
    return -1;
  }
  n = snprintf(head, sizeof(head),
               "%s %s HTTP/1.1\r\nHost: switchd\r\nConnection: close\r\n"
               "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
               method, path, json ? strlen(json) : 0);
  /* A failed write is not the end: switchd may have answered (403) and
   * closed before reading the request; its answer is read below. */
  if (write(fd, head, (size_t)n) == n && json != NULL)
    (void)!write(fd, json, strlen(json));
  buf = malloc(cap);
  for (;;) {
    ssize_t r;
    if (len + 1 == cap) {
      cap *= 2;
      buf = realloc(buf, cap);
    }
    r = read(fd, buf + len, cap - len - 1);
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0)
      break;
    len += (size_t)r;
  }
  close(fd);
  buf[len] = '\0';
  if (sscanf(buf, "HTTP/1.1 %d", &status) != 1) {
    free(buf);
    return -1;
  }
  p = strstr(buf, "\r\n\r\n");
  *body = strdup(p != NULL ? p + 4 : "");
  free(buf);
  return status;
}

static void unreachable(void) {
  fprintf(stderr, "switchctl: cannot reach switchd on %s: %s\n", sock_path,
          strerror(errno));
  exit(SW_EXIT_UNREACHABLE);
}

static int refused(int status, const char *body);
static int post(const char *path, json_t *req, char **body);
static json_t *answer_json(char *body);

/* GETs a JSON resource. Unreachable and refused answers end the command
 * with their exit codes; the caller only ever sees a 200's JSON. */
static json_t *get_json(const char *path, int *status) {
  char *body;
  json_t *j;
  *status = call("GET", path, NULL, &body);
  if (*status < 0)
    unreachable();
  if (*status != 200)
    exit(refused(*status, body));
  j = json_loads(body, 0, NULL);
  free(body);
  if (j == NULL) {
    fprintf(stderr, "switchctl: switchd answered something not JSON\n");
    exit(SW_EXIT_UNREACHABLE);
  }
  return j;
}

static const char *str(json_t *o, const char *k) {
  const char *s = json_string_value(json_object_get(o, k));
  return s != NULL ? s : "";
}

static long long num(json_t *o, const char *k) {
  return (long long)json_integer_value(json_object_get(o, k));
}

static double dbl(json_t *o, const char *k) {
  return json_number_value(json_object_get(o, k));
}

static int is_true(json_t *o, const char *k) {
  return json_is_true(json_object_get(o, k));
}

/* A duration for people: whole seconds when that is exact or long, else
 * tenths ("300 s", "2.5 s"). */
static const char *secs(char *buf, size_t len, long long ms) {
  if (ms % 1000 == 0 || ms >= 100000)
    snprintf(buf, len, "%lld s", ms / 1000);
  else
    snprintf(buf, len, "%.1f s", (double)ms / 1000.0);
  return buf;
}

static void print_json(json_t *j) {
  char *s = json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS);
  printf("%s\n", s ? s : "null");
  free(s);
}

static void print_colour(json_t *st, const char *c) {
  json_t *col = json_object_get(json_object_get(st, "colours"), c);
  json_t *servers = json_object_get(col, "servers");
  json_t *v = json_object_get(col, "verify");
  size_t i;
  json_t *s;

  printf(
      "  %-5s %s, %lld in flight; verify: %s%s%s\n", c,
      json_is_true(json_object_get(col, "healthy")) ? "healthy" : "UNHEALTHY",
      num(col, "inflight"), str(v, "status"), str(v, "message")[0] ? " - " : "",
      str(v, "message"));
  json_array_foreach(servers, i, s) {
    printf("        %-22s %-9s requests %lld, errors %lld%s%s\n",
           str(s, "name"), str(s, "health"), num(s, "requests"),
           num(s, "errors"),
           str(s, "last_failure")[0] ? ", last failure: " : "",
           str(s, "last_failure"));
  }
}

static int phase_is(json_t *st, const char *p) {
  return strcmp(str(st, "phase"), p) == 0;
}

/* The watch's manual window. */
static int watch_manual(json_t *w) {
  return strcmp(str(w, "phase"), "committed_manual") == 0;
}

/* One trigger's live value against its threshold, e.g. "R3 consecutive
 * 1/5"; "R3 off" when the config turned it off. k is 1..4. */
static const char *trigger_text(json_t *w, int k, char *buf, size_t len) {
  char name[4], t[32];
  json_t *r;

  snprintf(name, sizeof(name), "r%d", k);
  r = json_object_get(json_object_get(w, "triggers"), name);
  if (!is_true(r, "enabled")) {
    snprintf(buf, len, "R%d off", k);
    return buf;
  }
  switch (k) {
    case 1:
      snprintf(buf, len, "R1 errors %lld/%lld (alpha %g)", num(r, "errors"),
               num(r, "max_errors"), dbl(r, "alpha"));
      break;
    case 2: {
      long long rq = num(r, "requests"), er = num(r, "errors");
      int n = snprintf(buf, len, "R2 window %s: %lld/%lld = %.1f%% / %g%%",
                       secs(t, sizeof(t), num(r, "window_ms")), er, rq,
                       rq > 0 ? 100.0 * (double)er / (double)rq : 0.0,
                       100.0 * dbl(r, "max_error_ratio"));
      /* Below min_requests the ratio is not looked at: say so, or a
       * 3/4 = 75% would read as a trigger about to fire. */
      if (rq < num(w, "min_requests") && n > 0 && (size_t)n < len)
        snprintf(buf + n, len - (size_t)n, " (needs %lld requests)",
                 num(w, "min_requests"));
      break;
    }
    case 3:
      snprintf(buf, len, "R3 consecutive %lld/%lld", num(r, "consecutive"),
               num(r, "max_consecutive"));
      break;
    default:
      snprintf(buf, len, "R4 health %s", is_true(r, "healthy") ? "up" : "DOWN");
      break;
  }
  return buf;
}

/* Where the windows stand: "auto window 1.8 s left (of 3 s), manual window
 * 4.8 s left (of 6 s)"; the windows that ran out say so. */
static const char *windows_text(json_t *st, char *buf, size_t len) {
  json_t *w = json_object_get(st, "watch");
  const char *ph = str(w, "phase");
  char a[32], b[32], c[32], d[32];

  if (strcmp(ph, "watching") == 0)
    snprintf(buf, len,
             "auto window %s left (of %s), manual window %s left (of %s)",
             secs(a, sizeof(a), num(w, "auto_left_ms")),
             secs(b, sizeof(b), num(w, "auto_window_ms")),
             secs(c, sizeof(c), num(w, "manual_left_ms")),
             secs(d, sizeof(d), num(w, "manual_window_ms")));
  else if (watch_manual(w))
    snprintf(buf, len,
             "auto window over (%s), manual window %s left (of %s): "
             "rollback needs --confirm",
             secs(a, sizeof(a), num(w, "auto_window_ms")),
             secs(c, sizeof(c), num(w, "manual_left_ms")),
             secs(d, sizeof(d), num(w, "manual_window_ms")));
  else if (phase_is(st, "rolled_back"))
    snprintf(buf, len, "ended by the rollback");
  else if (phase_is(st, "final") &&
           num(w, "since_flip_ms") < num(w, "manual_window_ms"))
    snprintf(buf, len, "ended by a commit: rollback needs --force");
  else if (phase_is(st, "final"))
    snprintf(buf, len, "windows over: rollback needs --force");
  else
    snprintf(buf, len, "windows over");
  return buf;
}

static void print_fired(json_t *f, const char *indent) {
  char t[32];
  if (!json_is_object(f))
    return;
  printf("%sfired: %s %s on %s %s after the flip: %s\n", indent, str(f, "rule"),
         str(f, "verdict"), str(f, "colour"),
         secs(t, sizeof(t), num(f, "since_flip_ms")), str(f, "text"));
}

static void print_rollback(json_t *rb) {
  if (rb == NULL)
    return;
  printf("last rollback: %s, trigger %s (%s), %s -> %s: %s\n",
         str(rb, "outcome"), str(rb, "trigger"), str(rb, "mode"),
         str(rb, "from"), str(rb, "to"), str(rb, "message"));
}

/* The error watch of the last flip, as status shows it: the windows, the
 * counts since the flip, the baseline and each trigger against its
 * threshold. Nothing while no flip was ever watched. */
static void print_watch(json_t *st) {
  json_t *w = json_object_get(st, "watch"), *b;
  char buf[256], t[32];

  if (w == NULL || strcmp(str(w, "phase"), "idle") == 0 ||
      strcmp(str(w, "phase"), "") == 0)
    return;
  b = json_object_get(w, "baseline");
  printf("watch of %s: %s, outcome %s, %s since the flip\n", str(w, "colour"),
         str(w, "phase"), str(w, "outcome"),
         secs(t, sizeof(t), num(w, "since_flip_ms")));
  printf("  %s\n", windows_text(st, buf, sizeof(buf)));
  printf("  since the flip: %lld requests, %lld errors\n", num(w, "requests"),
         num(w, "errors"));
  if (num(b, "requests") < num(w, "min_requests"))
    printf(
        "  baseline: %lld/%lld errors, too few requests (min %lld): R1 "
        "counts alone\n",
        num(b, "errors"), num(b, "requests"), num(w, "min_requests"));
  else
    printf("  baseline: %lld/%lld errors, ratio %.3g\n", num(b, "errors"),
           num(b, "requests"), dbl(b, "ratio"));
  for (int k = 1; k <= 4; k++)
    printf("  %s\n", trigger_text(w, k, buf, sizeof(buf)));
  print_fired(json_object_get(w, "fired"), "  ");
}

/* The watch in the live view: the same facts, on fewer lines. */
static void print_watch_compact(json_t *st) {
  json_t *w = json_object_get(st, "watch");
  char buf[256];

  if (w == NULL || strcmp(str(w, "phase"), "idle") == 0 ||
      strcmp(str(w, "phase"), "") == 0)
    return;
  printf("  watch %s: %s, %lld requests, %lld errors; %s\n", str(w, "colour"),
         str(w, "phase"), num(w, "requests"), num(w, "errors"),
         windows_text(st, buf, sizeof(buf)));
  printf("   ");
  for (int k = 1; k <= 4; k++)
    printf(" %s%s", trigger_text(w, k, buf, sizeof(buf)), k < 4 ? "," : "\n");
  print_fired(json_object_get(w, "fired"), "    ");
}

static int cmd_status(void) {
  int status;
  json_t *st = get_json(SW_API_STATUS, &status), *g;
  if (st == NULL)
    unreachable();
  if (json_out) {
    print_json(st);
    json_decref(st);
    return SW_EXIT_OK;
  }
  printf("live %s, phase %s, state version %lld\n", str(st, "live"),
         str(st, "phase"), num(st, "version"));
  if ((g = json_object_get(st, "gate")) != NULL)
    printf(
        "  gate to %s: %lld/%lld health passes, verified: %s, %lld ms "
        "left\n",
        str(g, "target"), num(g, "passes"), num(g, "rise"),
        json_is_true(json_object_get(g, "verified")) ? "yes" : "no",
        num(g, "deadline_in_ms"));
  if ((g = json_object_get(st, "drain")) != NULL)
    printf("  draining %s: %lld in flight, %lld ms left\n", str(g, "colour"),
           num(g, "inflight"), num(g, "deadline_in_ms"));
  print_colour(st, "blue");
  print_colour(st, "green");
  g = json_object_get(st, "last_gate");
  if (strcmp(str(g, "outcome"), "none") != 0)
    printf("last cutover: %s (%s): %s\n", str(g, "outcome"), str(g, "reason"),
           str(g, "message"));
  print_watch(st);
  print_rollback(json_object_get(st, "rollback"));
  json_decref(st);
  return SW_EXIT_OK;
}

/* A non-negative decimal number, nothing else. */
static int parse_count(const char *s, long long *out) {
  char *end;
  long long v;
  if (*s < '0' || *s > '9')
    return -1;
  errno = 0;
  v = strtoll(s, &end, 10);
  if (*end != '\0' || errno != 0)
    return -1;
  *out = v;
  return 0;
}

static int parse_duration(const char *s, uint64_t *ms) {
  char *end;
  double v = strtod(s, &end);
  if (end == s || v < 0)
    return -1;
  if (strcmp(end, "ms") == 0)
    *ms = (uint64_t)v;
  else if (strcmp(end, "s") == 0 || *end == '\0')
    *ms = (uint64_t)(v * 1000);
  else if (strcmp(end, "m") == 0)
    *ms = (uint64_t)(v * 60000);
  else
    return -1;
  return 0;
}

/* The phases a cutover reaches only through its flip. */
static int after_flip(json_t *st) {
  return phase_is(st, "draining") || phase_is(st, "watching") ||
         phase_is(st, "committed_manual") || phase_is(st, "final") ||
         phase_is(st, "rolled_back") || phase_is(st, "rollback_blocked");
}

/* A rollback (or a blocked one) ended the cutover: its message, exit 7. */
static int rolled_back(json_t *st) {
  json_t *rb = json_object_get(st, "rollback");
  if (!json_out)
    printf("%s (trigger %s): %s\n",
           strcmp(str(rb, "outcome"), "blocked") == 0 ? "rollback blocked"
                                                      : "rolled back",
           str(rb, "trigger"), str(rb, "message"));
  return SW_EXIT_ROLLED_BACK;
}

/* Follows a cutover by polling the status: prints each transition as it
 * appears, the gate's progress and the drain's, and returns the exit code
 * of the outcome. A gate that ends without flipping ends it with the gate's
 * outcome. After the flip it ends when the old colour's drain has ended
 * (the watch goes on without us), or with through_watch when the auto
 * window has: the error watch decides then, not the gate. A rollback on
 * the way is exit 7. */
static int follow(uint64_t from_version,
                  uint64_t timeout_ms,
                  int through_watch) {
  uint64_t start = now_ms(), printed = from_version, flip_version = 0;
  uint64_t last_watch_line = 0;
  long long last_passes = -1, last_inflight = -1, last_errors = -1;
  const char *last_verify = "";
  char verify_seen[32] = "";
  int drained = 0, saw_drain = 0, fired_printed = 0;

  for (;;) {
    int status;
    json_t *st = get_json(SW_API_STATUS, &status), *h, *e, *g, *w;
    size_t i;
    if (st == NULL)
      unreachable();
    h = json_object_get(st, "history");
    json_array_foreach(h, i, e) {
      uint64_t v = (uint64_t)num(e, "version");
      if (v <= printed)
        continue;
      printed = v;
      /* The flip is recorded once; the drain's end is a transition of its
       * own (from a phase to itself while the watch runs). */
      if (strcmp(str(e, "reason"), "flipped") == 0)
        flip_version = v;
      else if (flip_version != 0 &&
               (strcmp(str(e, "reason"), "drained") == 0 ||
                strcmp(str(e, "reason"), "drain_timeout") == 0))
        drained = 1;
      if (json_out) {
        char *s = json_dumps(e, JSON_COMPACT | JSON_SORT_KEYS);
        printf("%s\n", s);
        free(s);
      } else {
        printf("%s -> %s: %s\n", str(e, "from"), str(e, "to"), str(e, "text"));
      }
      fflush(stdout);
    }
    if (!json_out && (g = json_object_get(st, "gate")) != NULL) {
      json_t *v = json_object_get(
          json_object_get(json_object_get(st, "colours"), str(g, "target")),
          "verify");
      if (num(g, "passes") != last_passes) {
        last_passes = num(g, "passes");
        printf("  health: %lld/%lld passes in a row\n", last_passes,
               num(g, "rise"));
      }
      last_verify = str(v, "status");
      if (strcmp(last_verify, verify_seen) != 0 &&
          strcmp(last_verify, "running") != 0) {
        snprintf(verify_seen, sizeof(verify_seen), "%s", last_verify);
        printf("  verify: %s%s%s\n", last_verify,
               str(v, "message")[0] ? " - " : "", str(v, "message"));
      }
      fflush(stdout);
    }
    if ((g = json_object_get(st, "drain")) != NULL) {
      if (flip_version != 0 || after_flip(st))
        saw_drain = 1;
      if (!json_out && num(g, "inflight") != last_inflight) {
        last_inflight = num(g, "inflight");
        printf("  drain: %lld in flight on %s\n", last_inflight,
               str(g, "colour"));
        fflush(stdout);
      }
    } else if (saw_drain) {
      drained = 1; /* seen running after the flip, gone now */
    }
    w = json_object_get(st, "watch");
    if ((uint64_t)num(st, "version") > from_version) {
      int flipped = flip_version != 0 || after_flip(st);
      json_t *lg = json_object_get(st, "last_gate");
      int watching =
          strcmp(str(w, "phase"), "watching") == 0 || watch_manual(w);

      if (!json_out && flipped && !fired_printed &&
          json_is_object(json_object_get(w, "fired"))) {
        fired_printed = 1;
        print_fired(json_object_get(w, "fired"), "  watch ");
        fflush(stdout);
      }
      if (phase_is(st, "rolled_back") || phase_is(st, "rollback_blocked")) {
        int code = rolled_back(st);
        json_decref(st);
        return code;
      }
      /* Without history (cutover history 0) the drain's end shows only in
       * last_drain; its time is taken from the loop's clock, the flip's
       * from the wall, so a drain that ended in the flip's own turn may
       * read a few ms earlier. */
      if (flipped && flip_version == 0 && !drained &&
          json_object_get(st, "drain") == NULL &&
          json_object_get(st, "last_drain") != NULL &&
          num(json_object_get(st, "last_drain"), "time_ms") + 50 >=
              num(st, "flip_time_ms"))
        drained = 1;
      if (phase_is(st, "steady") ||
          (flipped && !through_watch && (drained || phase_is(st, "final"))) ||
          (flipped && through_watch &&
           (phase_is(st, "committed_manual") || phase_is(st, "final")))) {
        const char *o = str(lg, "outcome");
        int code = strcmp(o, "passed") == 0   ? SW_EXIT_OK
                   : strcmp(o, "failed") == 0 ? SW_EXIT_GATE_FAILED
                                              : SW_EXIT_INCONCLUSIVE;
        /* With --watch the watch's verdict decides: a trigger that only
         * alerted (the auto window ended in the same moment) rolled
         * nothing back, yet the flip is not good either. */
        if (code == SW_EXIT_OK && through_watch && !phase_is(st, "steady") &&
            json_is_object(json_object_get(w, "fired")))
          code = SW_EXIT_GATE_FAILED;
        if (!json_out) {
          char a[32], b[32];
          printf("%s: %s\n", code == SW_EXIT_OK ? "done" : o,
                 str(lg, "message"));
          if (code == SW_EXIT_OK && !through_watch && watching)
            printf(
                "watching %s: auto window %s, manual window %s; `switchctl "
                "watch` follows it\n",
                str(w, "colour"), secs(a, sizeof(a), num(w, "auto_window_ms")),
                secs(b, sizeof(b), num(w, "manual_window_ms")));
          else if (through_watch && !phase_is(st, "steady"))
            printf("watch of %s: %s, %s (%lld requests, %lld errors)\n",
                   str(w, "colour"),
                   phase_is(st, "final") ? "final" : "auto window over",
                   json_is_object(json_object_get(w, "fired"))
                       ? "a trigger alerted: see switchctl status"
                       : "no trigger fired",
                   num(w, "requests"), num(w, "errors"));
        }
        json_decref(st);
        return code;
      }
      /* Waiting through the auto window: the counts now and then, and at
       * once when the errors move. */
      if (!json_out && flipped && through_watch && watching &&
          (num(w, "errors") != last_errors ||
           now_ms() - last_watch_line >= 10000)) {
        char a[32];
        last_errors = num(w, "errors");
        last_watch_line = now_ms();
        printf("  watch: %lld requests, %lld errors; auto window %s left\n",
               num(w, "requests"), last_errors,
               secs(a, sizeof(a), num(w, "auto_left_ms")));
        fflush(stdout);
      }
    }
    json_decref(st);
    if (timeout_ms > 0 && now_ms() - start > timeout_ms) {
      fprintf(stderr, "switchctl: still in progress after --timeout\n");
      return SW_EXIT_TIMEOUT;
    }
    usleep(100 * 1000);
  }
}

static int refused(int status, const char *body) {
  json_t *j = json_loads(body, 0, NULL);
  if (json_out) {
    /* On a line of its own: --json output is read line by line. */
    printf("%s\n", body);
  } else if (str(j, "reason")[0] && str(j, "message")[0]) {
    /* A refusal that explains itself (rollback, commit): the reason for
     * scripts, the sentence for people. */
    fprintf(stderr, "switchctl: refused (%d): %s: %s\n", status,
            str(j, "reason"), str(j, "message"));
  } else {
    fprintf(stderr, "switchctl: refused (%d): %s%s%s\n", status,
            str(j, "error"), str(j, "reason")[0] ? ": " : "", str(j, "reason"));
    if (strcmp(str(j, "reason"), "watching") == 0)
      fprintf(stderr,
              "switchctl: the last flip is being watched: `switchctl commit` "
              "or `switchctl rollback` first\n");
  }
  json_decref(j);
  return SW_EXIT_REFUSED;
}

/* --- the hold barrier and the cutover report ---------------------------- */

/* Waits (polling every 10 ms) until the hold is quiet, or it ended, or
 * `until` (monotonic ms, 0: no limit) passed. Returns 1 quiet, 0 not
 * quiet yet, -1 the hold is over. */
static int wait_quiet(uint64_t until, int verbose) {
  long long last_inflight = -1;
  for (;;) {
    int status;
    json_t *st = get_json(SW_API_STATUS, &status), *h;
    int rc;
    if (st == NULL)
      unreachable();
    h = json_object_get(st, "hold");
    if (!is_true(h, "active"))
      rc = -1;
    else if (is_true(h, "quiet"))
      rc = 1;
    else
      rc = 0;
    if (rc == 0 && verbose && !json_out &&
        num(h, "inflight") != last_inflight) {
      last_inflight = num(h, "inflight");
      printf("  hold: %lld in flight on %s, %lld queued\n", last_inflight,
             str(st, "live"), num(h, "queued"));
      fflush(stdout);
    }
    if (rc != 0 || (until != 0 && now_ms() >= until)) {
      if (rc == 1 && verbose && !json_out) {
        printf("  hold: quiet after %lld ms (%lld queued)\n",
               num(h, "quiet_after_ms"), num(h, "queued"));
        fflush(stdout);
      }
      json_decref(st);
      return rc;
    }
    json_decref(st);
    usleep(10 * 1000);
  }
}

static int cmd_hold(int argc, char **argv) {
  uint64_t max_ms = 0, timeout_ms = 0, start;
  char *body;
  json_t *req, *j, *h;
  int status, rc;

  for (int k = 1; k < argc; k++) {
    if (strcmp(argv[k], "--help") == 0) {
      printf(
          "usage: switchctl hold [--max DUR] [--timeout DUR]\n"
          "  Stops sending new requests upstream: they wait in switchd, in "
          "arrival order,\n  at most DUR (default: the config's hold_max, "
          "2s), then go to the live\n  colour by themselves. Returns once "
          "nothing is in flight on the live\n  colour (exit 0), or after "
          "--timeout with what is still in flight (exit 6,\n  the hold "
          "goes on). `switchctl release` or a cutover's flip ends it.\n");
      return SW_EXIT_OK;
    }
    if (strcmp(argv[k], "--max") == 0 && k + 1 < argc) {
      if (parse_duration(argv[++k], &max_ms) != 0 || max_ms == 0)
        die_usage("bad --max '%s' (e.g. 2s, 500ms)", argv[k]);
      continue;
    }
    if (strcmp(argv[k], "--timeout") == 0 && k + 1 < argc) {
      if (parse_duration(argv[++k], &timeout_ms) != 0)
        die_usage("bad --timeout '%s' (e.g. 2s)", argv[k]);
      continue;
    }
    die_usage("hold: bad argument '%s'", argv[k]);
  }
  req = json_object();
  if (max_ms > 0)
    json_object_set_new(req, "max_ms", json_integer((json_int_t)max_ms));
  status = post(SW_API_HOLD, req, &body);
  json_decref(req);
  if (status != 200) {
    rc = refused(status, body);
    free(body);
    return rc;
  }
  j = answer_json(body);
  h = json_object_get(j, "hold");
  if (!json_out)
    printf("holding new requests (at most %lld ms, %lld in flight)\n",
           num(h, "max_ms"), num(h, "inflight"));
  fflush(stdout);
  start = now_ms();
  rc = wait_quiet(timeout_ms > 0 ? start + timeout_ms : 0, 1);
  json_decref(j);
  {
    json_t *st = get_json(SW_API_STATUS, &status);
    if (st == NULL)
      unreachable();
    h = json_object_get(st, "hold");
    if (json_out)
      print_json(h);
    else if (rc == 1)
      printf("quiet: nothing in flight on %s; %lld requests held\n",
             str(st, "live"), num(h, "queued"));
    else if (rc == 0)
      printf(
          "not quiet after %lld ms: %lld in flight on %s; still holding "
          "(%lld queued)\n",
          (long long)(now_ms() - start), num(h, "inflight"), str(st, "live"),
          num(h, "queued"));
    else
      printf(
          "the hold ended (%s) before it was quiet: %lld in flight on "
          "%s, %lld requests released\n",
          str(h, "end"), num(h, "inflight"), str(st, "live"),
          num(h, "released"));
    json_decref(st);
  }
  return rc == 1 ? SW_EXIT_OK : SW_EXIT_TIMEOUT;
}

static int cmd_release(int argc, char **argv) {
  char *body;
  json_t *req, *j, *h;
  int status, rc;

  if (argc > 1 && strcmp(argv[1], "--help") == 0) {
    printf(
        "usage: switchctl release\n"
        "  Ends the hold: the held requests go to the live colour, in "
        "arrival order.\n  Exit 3 when nothing is held.\n");
    return SW_EXIT_OK;
  }
  if (argc > 1)
    die_usage("release: unexpected argument '%s'", argv[1]);
  req = json_object();
  status = post(SW_API_RELEASE, req, &body);
  json_decref(req);
  if (status != 200) {
    rc = refused(status, body);
    free(body);
    return rc;
  }
  j = answer_json(body);
  h = json_object_get(j, "hold");
  if (json_out)
    print_json(j);
  else
    printf(
        "released %lld request%s to %s (held %lld ms; longest wait %.1f "
        "ms)\n",
        num(h, "released"), num(h, "released") == 1 ? "" : "s", str(j, "live"),
        num(h, "ended_ms") - num(h, "started_ms"),
        (double)num(h, "wait_max_us") / 1000.0);
  json_decref(j);
  return SW_EXIT_OK;
}

/* Runs the operator's migration here, its output shown (on stderr with
 * --json, so stdout stays JSON). Returns its exit status (128 + signal
 * when killed, 127 when it could not start) and its duration. */
static int run_migration(const char *cmd, uint64_t *ms) {
  uint64_t start = now_ms();
  int st;
  pid_t pid;

  fflush(stdout);
  pid = fork();
  if (pid < 0) {
    *ms = 0;
    return 127;
  }
  if (pid == 0) {
    if (json_out)
      dup2(2, 1);
    execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
    _exit(127);
  }
  while (waitpid(pid, &st, 0) < 0)
    if (errno != EINTR) {
      *ms = now_ms() - start;
      return 127;
    }
  *ms = now_ms() - start;
  if (WIFEXITED(st))
    return WEXITSTATUS(st);
  return 128 + WTERMSIG(st);
}

/* The time of the first transition since `from` with this reason, as ms
 * from t0; -1 when none. */
static long long event_at(json_t *hist,
                          uint64_t from,
                          const char *reason,
                          long long t0,
                          const char **text) {
  size_t i;
  json_t *e;
  json_array_foreach(hist, i, e) {
    if ((uint64_t)num(e, "version") <= from ||
        strcmp(str(e, "reason"), reason) != 0)
      continue;
    if (text != NULL)
      *text = str(e, "text");
    return num(e, "time_ms") - t0;
  }
  return -1;
}

/* The report at the end of `cutover --wait`: a timeline from the request
 * and the totals, from switchd's status. */
static void print_report(uint64_t from_version,
                         long long migrate_ms,
                         int migrate_status,
                         int code) {
  int status;
  json_t *st = get_json(SW_API_STATUS, &status);
  json_t *hist, *h, *c, *w, *locks, *r;
  long long t0, at;
  const char *text = "";
  char a[32];

  if (st == NULL)
    unreachable();
  hist = json_object_get(st, "history");
  h = json_object_get(st, "hold");
  c = json_object_get(st, "cutover");
  w = json_object_get(st, "watch");
  locks = json_object_get(h, "locks");
  t0 = num(c, "requested_ms");
  r = json_object();
  json_object_set_new(r, "requested_ms", json_integer(t0));
  json_object_set_new(
      r, "outcome",
      json_string(str(json_object_get(st, "last_gate"), "outcome")));
  json_object_set_new(r, "exit", json_integer(code));
#define AT(key, reason)                                   \
  do {                                                    \
    at = event_at(hist, from_version, reason, t0, &text); \
    if (at >= 0)                                          \
      json_object_set_new(r, key, json_integer(at));      \
  } while (0)
  AT("gate_passed_at_ms", "gate_passed");
  AT("migrated_at_ms", "migrated");
  AT("flip_at_ms", "flipped");
  AT("drained_at_ms", "drained");
  AT("rollback_at_ms", "rollback");
#undef AT
  if (json_is_object(h) && num(h, "started_ms") >= t0) {
    json_object_set_new(r, "hold_started_at_ms",
                        json_integer(num(h, "started_ms") - t0));
    if (num(h, "ended_ms") > 0)
      json_object_set_new(r, "hold_ended_at_ms",
                          json_integer(num(h, "ended_ms") - t0));
    json_object_set(r, "hold", h);
  }
  if (migrate_ms >= 0) {
    json_object_set_new(r, "migration_ms", json_integer(migrate_ms));
    json_object_set_new(r, "migration_exit_status",
                        json_integer(migrate_status));
  }
  if (json_is_object(locks)) {
    json_object_set_new(r, "lock_wait_max_ms",
                        json_integer(num(locks, "max_wait_ms")));
  }
  json_object_set_new(r, "requests", json_integer(num(c, "requests")));
  json_object_set_new(r, "failed", json_integer(num(c, "failed")));
  json_object_set_new(r, "phase", json_string(str(st, "phase")));
  json_object_set_new(r, "live", json_string(str(st, "live")));
  if (json_is_object(w))
    json_object_set(r, "watch", w);
  if (json_out) {
    /* One line, like the transitions before it: a script reads the
     * output line by line, the report last. */
    json_t *o = json_pack("{s:o}", "report", r);
    char *txt = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
    printf("%s\n", txt != NULL ? txt : "{}");
    free(txt);
    json_decref(o);
    json_decref(st);
    return;
  }
  printf("cutover report\n");
  printf("  %-18s %s\n", "requested", "+0.000 s");
#define LINE(label, key, extra)                                               \
  do {                                                                        \
    json_t *v_ = json_object_get(r, key);                                     \
    if (v_ != NULL)                                                           \
      printf("  %-18s +%.3f s%s%s\n", label,                                  \
             (double)json_integer_value(v_) / 1000.0, (extra)[0] ? "  " : "", \
             extra);                                                          \
  } while (0)
  LINE("gate passed", "gate_passed_at_ms", "");
  if (json_object_get(r, "hold") != NULL) {
    char buf[96];
    snprintf(buf, sizeof(buf), "(at most %lld ms)", num(h, "max_ms"));
    LINE("hold started", "hold_started_at_ms", buf);
    if (is_true(h, "quiet"))
      printf("  %-18s +%.3f s\n", "quiet",
             (double)(num(h, "started_ms") - t0 + num(h, "quiet_after_ms")) /
                 1000.0);
  }
  if (migrate_ms >= 0)
    printf("  %-18s %.3f s, exit status %d\n", "migration",
           (double)migrate_ms / 1000.0, migrate_status);
  if (json_is_object(locks))
    printf("  %-18s %lld ms (%lld samples of pg_stat_activity%s)\n",
           "longest lock wait", num(locks, "max_wait_ms"),
           num(locks, "samples"),
           num(locks, "failed") > 0 ? ", some failed" : "");
  LINE("flip", "flip_at_ms", "");
  if (json_object_get(r, "hold") != NULL && num(h, "ended_ms") > 0) {
    char buf[200];
    snprintf(buf, sizeof(buf),
             "%s: %lld held, %lld released to %s, %lld rejected (503); "
             "added latency max %.1f ms, p99 %.1f ms",
             str(h, "end"), num(h, "held"), num(h, "released"),
             str(h, "released_to"), num(h, "rejected"),
             (double)num(h, "wait_max_us") / 1000.0,
             (double)num(h, "wait_p99_us") / 1000.0);
    LINE("hold released", "hold_ended_at_ms", buf);
  }
  LINE("drain complete", "drained_at_ms", "");
  LINE("rolled back", "rollback_at_ms", "");
  if (json_is_object(w) && str(w, "colour")[0] &&
      (strcmp(str(w, "phase"), "watching") == 0 || watch_manual(w)))
    printf("  %-18s %s %s, auto window %s left\n", "watch", str(w, "phase"),
           str(w, "colour"), secs(a, sizeof(a), num(w, "auto_left_ms")));
  printf("  %-18s %lld requests, %lld failed (5xx or cut off)\n", "totals",
         num(c, "requests"), num(c, "failed"));
  printf("  %-18s %s, live %s\n", "now", str(st, "phase"), str(st, "live"));
#undef LINE
  json_decref(r);
  json_decref(st);
}

/* `cutover --hold/--migrate`: the gate of liveness, the hold, the
 * migration here, then the re-check and the flip in switchd. */
static int cutover_migrate(uint64_t version,
                           const char *migrate,
                           uint64_t timeout_ms,
                           int through_watch) {
  uint64_t start = now_ms(), printed = version, ms = 0;
  long long last_passes = -1;
  int mstatus = 0, status, code;
  json_t *req, *j;
  char *body;

  /* Until the hold is quiet: the gate's progress, or its end. */
  for (;;) {
    json_t *st = get_json(SW_API_STATUS, &status), *g, *e, *hist;
    size_t i;
    int quiet, ended;
    if (st == NULL)
      unreachable();
    hist = json_object_get(st, "history");
    json_array_foreach(hist, i, e) {
      if ((uint64_t)num(e, "version") <= printed)
        continue;
      printed = (uint64_t)num(e, "version");
      if (json_out) {
        char *txt = json_dumps(e, JSON_COMPACT | JSON_SORT_KEYS);
        printf("%s\n", txt);
        free(txt);
      } else {
        printf("%s -> %s: %s\n", str(e, "from"), str(e, "to"), str(e, "text"));
      }
    }
    g = json_object_get(st, "gate");
    if (!json_out && g != NULL && num(g, "passes") != last_passes &&
        phase_is(st, "gating")) {
      last_passes = num(g, "passes");
      printf("  health: %lld/%lld passes in a row\n", last_passes,
             num(g, "rise"));
    }
    fflush(stdout);
    quiet = phase_is(st, "migrating") &&
            is_true(json_object_get(st, "hold"), "quiet");
    ended = !phase_is(st, "gating") && !phase_is(st, "migrating");
    json_decref(st);
    if (quiet)
      break;
    if (ended) {
      code = follow(version, timeout_ms, through_watch);
      print_report(version, -1, 0, code);
      return code;
    }
    if (timeout_ms > 0 && now_ms() - start > timeout_ms) {
      fprintf(stderr, "switchctl: still in progress after --timeout\n");
      return SW_EXIT_TIMEOUT;
    }
    usleep(10 * 1000);
  }
  if (!json_out) {
    printf("  hold: quiet: nothing in flight%s\n",
           migrate != NULL ? "; migrating" : "");
    fflush(stdout);
  }
  if (migrate != NULL) {
    if (!json_out) {
      printf("$ %s\n", migrate);
      fflush(stdout);
    }
    mstatus = run_migration(migrate, &ms);
    if (!json_out)
      printf("  migration: exit status %d after %.3f s\n", mstatus,
             (double)ms / 1000.0);
  }
  req = json_pack("{s:b, s:i, s:I, s:s}", "ok", mstatus == 0, "exit_status",
                  mstatus, "ms", (json_int_t)ms, "text",
                  mstatus == 0 ? "" : "the migration command failed");
  status = post(SW_API_MIGRATED, req, &body);
  json_decref(req);
  if (status != 200) {
    /* The hold ran out meanwhile (or an operator aborted): the gate has
     * ended, and its outcome (inconclusive) is the exit code. */
    (void)refused(status, body);
    free(body);
    code = follow(printed, timeout_ms, 0);
    print_report(version, migrate != NULL ? (long long)ms : -1, mstatus, code);
    return code;
  }
  j = answer_json(body);
  json_decref(j);
  code = follow(printed, timeout_ms, through_watch);
  if (mstatus != 0 && code == SW_EXIT_OK)
    code = SW_EXIT_GATE_FAILED;
  print_report(version, migrate != NULL ? (long long)ms : -1, mstatus, code);
  return code;
}

static int cmd_cutover(int argc, char **argv) {
  static const struct option opts[] = {{"to", required_argument, 0, 't'},
                                       {"wait", no_argument, 0, 'w'},
                                       {"watch", no_argument, 0, 'W'},
                                       {"timeout", required_argument, 0, 'T'},
                                       {"version", required_argument, 0, 'V'},
                                       {"hold", required_argument, 0, 'H'},
                                       {"migrate", required_argument, 0, 'M'},
                                       {"help", no_argument, 0, 'h'},
                                       {0, 0, 0, 0}};
  const char *to = NULL, *migrate = NULL;
  int wait = 0, through_watch = 0, c, status, held = 0;
  long long version = -1;
  uint64_t timeout_ms = 0, hold_ms = 0;
  char *body;
  json_t *j, *req;

  optind = 1;
  while ((c = getopt_long(argc, argv, "t:wT:V:h", opts, NULL)) != -1) {
    switch (c) {
      case 't':
        to = optarg;
        break;
      case 'w':
        wait = 1;
        break;
      case 'W':
        wait = through_watch = 1;
        break;
      case 'T':
        if (parse_duration(optarg, &timeout_ms) != 0)
          die_usage("bad --timeout '%s' (e.g. 90s, 5m)", optarg);
        break;
      case 'V':
        if (parse_count(optarg, &version) != 0)
          die_usage("bad --version '%s' (a state version number)", optarg);
        break;
      case 'H':
        if (parse_duration(optarg, &hold_ms) != 0 || hold_ms == 0 ||
            hold_ms > 3600000)
          die_usage("bad --hold '%s' (e.g. 2s; at most 1h)", optarg);
        held = 1;
        break;
      case 'M':
        if (optarg[0] == '\0')
          die_usage("--migrate needs a command");
        migrate = optarg;
        held = 1;
        break;
      case 'h':
        printf(
            "usage: switchctl cutover [--to blue|green] [--wait] [--watch] "
            "[--timeout DUR]\n"
            "                         [--hold DUR] [--migrate CMD] "
            "[--version N]\n"
            "  Starts a cutover to the colour (default: the standby one).\n"
            "  --wait     follow it: health passes, verification, flip, "
            "drain;\n"
            "             exit 0 once the old colour has drained (the error "
            "watch\n"
            "             goes on), 4 or 5 when the gate said no, 7 when "
            "rolled back\n"
            "  --watch    --wait, then wait through the watch's auto window "
            "too:\n"
            "             exit 0 when it ends with no trigger fired, 7 when "
            "rolled back\n"
            "  --timeout  give up waiting after DUR (exit 6)\n"
            "  --hold     gate on health only, then hold new requests (at "
            "most DUR;\n"
            "             default hold_max) until nothing is in flight, "
            "re-check\n"
            "             (verification included), flip and send the held "
            "requests\n"
            "             to the new colour; implies --wait\n"
            "  --migrate  with the hold quiet, run CMD here (sh -c, output "
            "shown);\n"
            "             a failure ends the cutover (exit 4), the held "
            "requests go\n"
            "             to the old colour; implies --hold\n"
            "  --version  the state version you saw (stale: refused, 409)\n"
            "  With --wait a cutover report ends the output (--json: one "
            "object).\n");
        return SW_EXIT_OK;
      default:
        die_usage("cutover: unknown option");
    }
  }
  if (optind < argc)
    die_usage("cutover: unexpected argument '%s'", argv[optind]);
  if (to != NULL && strcmp(to, "blue") != 0 && strcmp(to, "green") != 0)
    die_usage("--to must be blue or green");
  if (version < 0) {
    /* The mutation carries the state version this command saw, so that a
     * change made by someone else in between is refused (409), not
     * overridden. */
    json_t *st = get_json(SW_API_STATUS, &status);
    if (st == NULL)
      unreachable();
    version = num(st, "version");
    json_decref(st);
  }
  req = json_object();
  if (to != NULL)
    json_object_set_new(req, "to", json_string(to));
  if (version >= 0)
    json_object_set_new(req, "version", json_integer(version));
  if (held) {
    json_object_set_new(req, "migrate", json_true());
    if (hold_ms > 0)
      json_object_set_new(req, "hold_ms", json_integer((json_int_t)hold_ms));
    wait = 1;
  }
  status = post(SW_API_CUTOVER, req, &body);
  json_decref(req);
  if (status != 202) {
    int rc = refused(status, body);
    free(body);
    return rc;
  }
  j = json_loads(body, 0, NULL);
  free(body);
  if (!json_out || !wait) {
    if (json_out)
      print_json(j);
    else
      printf("cutover to %s accepted (state version %lld)\n", str(j, "to"),
             num(j, "version"));
  }
  version = num(j, "version");
  json_decref(j);
  if (!wait)
    return SW_EXIT_OK;
  /* The request's own transition is version N; follow from before it. */
  if (held)
    return cutover_migrate((uint64_t)version - 1, migrate, timeout_ms,
                           through_watch);
  {
    int code = follow((uint64_t)version - 1, timeout_ms, through_watch);
    if (code != SW_EXIT_TIMEOUT)
      print_report((uint64_t)version - 1, -1, 0, code);
    return code;
  }
}

/* A POST of a JSON body built here; returns the HTTP status and the body
 * (malloc'd). Unreachable ends the command. */
static int post(const char *path, json_t *req, char **body) {
  char *text = json_dumps(req, JSON_COMPACT);
  int status = call("POST", path, text != NULL ? text : "{}", body);
  free(text);
  if (status < 0)
    unreachable();
  return status;
}

/* A 200's body as JSON; anything else ends the command with exit 2. */
static json_t *answer_json(char *body) {
  json_t *j = json_loads(body, 0, NULL);
  free(body);
  if (j == NULL) {
    fprintf(stderr, "switchctl: switchd answered something not JSON\n");
    exit(SW_EXIT_UNREACHABLE);
  }
  return j;
}

static int cmd_rollback(int argc, char **argv) {
  /* --confirm and --force have no short forms: a stray "-f" must not
   * force a rollback past the windows. */
  static const struct option opts[] = {{"confirm", no_argument, 0, 'c'},
                                       {"force", no_argument, 0, 'f'},
                                       {"version", required_argument, 0, 'V'},
                                       {"help", no_argument, 0, 'h'},
                                       {0, 0, 0, 0}};
  const char *mode = NULL;
  long long version = -1;
  int c, status;
  char *body;
  json_t *req, *j;

  optind = 1;
  while ((c = getopt_long(argc, argv, "V:h", opts, NULL)) != -1) {
    switch (c) {
      case 'c':
      case 'f':
        if (mode != NULL && strcmp(mode, c == 'c' ? "confirm" : "force") != 0)
          die_usage("rollback: --confirm and --force are mutually exclusive");
        mode = c == 'c' ? "confirm" : "force";
        break;
      case 'V':
        if (parse_count(optarg, &version) != 0)
          die_usage("bad --version '%s' (a state version number)", optarg);
        break;
      case 'h':
        printf(
            "usage: switchctl rollback [--confirm | --force] [--version N]\n"
            "  Flips back to the colour that was live before the last flip; "
            "the\n"
            "  colour rolled back from drains. Refused (exit 3) when the old "
            "colour\n"
            "  cannot take the traffic, and:\n"
            "  --confirm  needed in the manual window (after the auto "
            "window)\n"
            "  --force    needed once the windows are over or after a "
            "commit\n"
            "  --version  the state version you saw (stale: refused, 409)\n"
            "  Exit 0 rolled back, 3 refused.\n");
        return SW_EXIT_OK;
      default:
        die_usage("rollback: unknown option");
    }
  }
  if (optind < argc)
    die_usage("rollback: unexpected argument '%s'", argv[optind]);
  /* No version unless given: a rollback is often urgent, and a drain that
   * ends in between (a new state version) must not refuse it. */
  req = json_object();
  if (mode != NULL)
    json_object_set_new(req, "mode", json_string(mode));
  if (version >= 0)
    json_object_set_new(req, "version", json_integer(version));
  status = post(SW_API_ROLLBACK, req, &body);
  json_decref(req);
  if (status == 202) {
    /* The old colour's schema needs the reverse migration first: switchd
     * runs it under a hold, then flips (or blocks); status follows it. */
    j = answer_json(body);
    if (json_out)
      print_json(j);
    else
      printf("%s\nlive %s, phase %s; `switchctl status` shows how it ends\n",
             str(j, "message"), str(j, "live"), str(j, "phase"));
    json_decref(j);
    return SW_EXIT_OK;
  }
  if (status != 200) {
    int rc = refused(status, body);
    free(body);
    return rc;
  }
  j = answer_json(body);
  if (json_out) {
    print_json(j);
  } else {
    printf("%s\n", str(j, "message"));
    printf("live %s, phase %s, state version %lld\n", str(j, "live"),
           str(j, "phase"), num(j, "version"));
  }
  json_decref(j);
  return SW_EXIT_OK;
}

static int cmd_commit(int argc, char **argv) {
  static const struct option opts[] = {{"version", required_argument, 0, 'V'},
                                       {"help", no_argument, 0, 'h'},
                                       {0, 0, 0, 0}};
  long long version = -1;
  int c, status;
  char *body;
  json_t *req, *j;

  optind = 1;
  while ((c = getopt_long(argc, argv, "V:h", opts, NULL)) != -1) {
    switch (c) {
      case 'V':
        if (parse_count(optarg, &version) != 0)
          die_usage("bad --version '%s' (a state version number)", optarg);
        break;
      case 'h':
        printf(
            "usage: switchctl commit [--version N]\n"
            "  Ends the error watch of the last flip: the cutover stands "
            "(phase\n"
            "  final), a new cutover may start, and a rollback needs "
            "--force.\n"
            "  --version  the state version you saw (stale: refused, 409)\n"
            "  Exit 0 committed, 3 refused (no watch is running).\n");
        return SW_EXIT_OK;
      default:
        die_usage("commit: unknown option");
    }
  }
  if (optind < argc)
    die_usage("commit: unexpected argument '%s'", argv[optind]);
  req = json_object();
  if (version >= 0)
    json_object_set_new(req, "version", json_integer(version));
  status = post(SW_API_COMMIT, req, &body);
  json_decref(req);
  if (status != 200) {
    int rc = refused(status, body);
    free(body);
    return rc;
  }
  j = answer_json(body);
  if (json_out)
    print_json(j);
  else
    printf("committed: %s stands (phase %s, state version %lld)\n",
           str(j, "live"), str(j, "phase"), num(j, "version"));
  json_decref(j);
  return SW_EXIT_OK;
}

static int cmd_simple_post(const char *path, const char *req) {
  char *body;
  int status = call("POST", path, req, &body), rc = SW_EXIT_OK;
  if (status < 0)
    unreachable();
  if (status >= 400)
    rc = refused(status, body);
  else
    printf("%s", body);
  free(body);
  return rc;
}

/* Verifies a colour now and prints the result when it arrives. */
static int cmd_check(const char *colour) {
  char req[64], *body;
  int status, rc;
  uint64_t start = now_ms();

  snprintf(req, sizeof(req), "{\"colour\":\"%s\"}", colour);
  status = call("POST", SW_API_CHECK, req, &body);
  if (status < 0)
    unreachable();
  if (status != 202) {
    rc = refused(status, body);
    free(body);
    return rc;
  }
  free(body);
  for (;;) {
    json_t *st = get_json(SW_API_STATUS, &status), *col, *v;
    if (st == NULL)
      unreachable();
    col = json_object_get(json_object_get(st, "colours"), colour);
    v = json_object_get(col, "verify");
    if (strcmp(str(v, "status"), "running") != 0 &&
        strcmp(str(v, "status"), "none") != 0) {
      const char *s = str(v, "status");
      rc = strcmp(s, "pass") == 0   ? SW_EXIT_OK
           : strcmp(s, "fail") == 0 ? SW_EXIT_GATE_FAILED
                                    : SW_EXIT_INCONCLUSIVE;
      if (json_out) {
        print_json(col);
      } else {
        print_colour(st, colour);
      }
      json_decref(st);
      return rc;
    }
    json_decref(st);
    if (now_ms() - start > 60000)
      return SW_EXIT_TIMEOUT;
    usleep(100 * 1000);
  }
}

static volatile sig_atomic_t stop_watch;
static void on_int(int sig) {
  (void)sig;
  stop_watch = 1;
}

/* The admin event stream, read alongside the live view's polling: the
 * watch's verdicts and the rollbacks come as they happen, between two
 * refreshes. A plain blocking client would stall the view, so the socket is
 * non-blocking and polled until the next refresh is due. */
typedef struct events_s {
  int fd;       /* -1: not connected */
  int disabled; /* switchd refused the stream: do not ask again */
  int head_done;
  char *buf;
  size_t len, cap;
} events_t;

/* Bound on one event: the first one is the whole status document. */
#define EVENTS_MAX (1024 * 1024)
/* Lines of recent events kept under a terminal's view, which each refresh
 * clears. */
#define EVENTS_SHOWN 6

static char shown[EVENTS_SHOWN][1024];
static size_t nshown;

static void events_close(events_t *ev) {
  if (ev->fd >= 0)
    close(ev->fd);
  ev->fd = -1;
  ev->len = 0;
  ev->head_done = 0;
}

static void events_open(events_t *ev) {
  static const char req[] =
      "GET " SW_API_EVENTS " HTTP/1.1\r\nHost: switchd\r\n\r\n";
  struct sockaddr_un sa;

  if (ev->fd >= 0 || ev->disabled || strlen(sock_path) >= sizeof(sa.sun_path))
    return;
  memset(&sa, 0, sizeof(sa));
  sa.sun_family = AF_UNIX;
  strcpy(sa.sun_path, sock_path);
  ev->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (ev->fd < 0)
    return;
  if (connect(ev->fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
      write(ev->fd, req, sizeof(req) - 1) != (ssize_t)(sizeof(req) - 1) ||
      fcntl(ev->fd, F_SETFL, fcntl(ev->fd, F_GETFL) | O_NONBLOCK) != 0) {
    events_close(ev);
    return;
  }
}

static void event_line(const char *line) {
  printf("%s\n", line);
  if (isatty(1)) {
    if (nshown == EVENTS_SHOWN) {
      memmove(shown[0], shown[1], sizeof(shown[0]) * (EVENTS_SHOWN - 1));
      nshown--;
    }
    snprintf(shown[nshown++], sizeof(shown[0]), "%s", line);
  }
}

/* One event of the stream: the watch's verdicts and the rollbacks are
 * printed, the rest is what the next refresh shows anyway. */
static void on_event(const char *name, const char *data) {
  char line[1024], at[16], t[32];
  time_t now = time(NULL);
  struct tm tm;
  json_t *j;

  if (strcmp(name, "watch") != 0 && strcmp(name, "rollback") != 0)
    return;
  j = json_loads(data, 0, NULL);
  if (j == NULL)
    return;
  if (json_out) {
    json_t *o = json_pack("{s:s, s:O}", "event", name, "data", j);
    char *s = o != NULL ? json_dumps(o, JSON_COMPACT) : NULL;
    if (s != NULL)
      printf("%s\n", s);
    free(s);
    json_decref(o);
  } else {
    localtime_r(&now, &tm);
    strftime(at, sizeof(at), "%H:%M:%S", &tm);
    if (strcmp(name, "watch") == 0)
      snprintf(line, sizeof(line),
               "%s watch: %s %s on %s %s after the flip: %s", at,
               str(j, "rule"), str(j, "verdict"), str(j, "colour"),
               secs(t, sizeof(t), num(j, "since_flip_ms")), str(j, "text"));
    else
      snprintf(line, sizeof(line), "%s rollback: %s, trigger %s (%s): %s", at,
               str(j, "outcome"), str(j, "trigger"), str(j, "mode"),
               str(j, "message"));
    event_line(line);
  }
  fflush(stdout);
  json_decref(j);
}

/* Splits what arrived into events ("event: NAME\ndata: JSON\n\n"). */
static void events_parse(events_t *ev) {
  char *p = ev->buf, *end = ev->buf + ev->len, *sep;

  if (!ev->head_done) {
    int code = 0;
    sep = memmem(p, ev->len, "\r\n\r\n", 4);
    if (sep == NULL)
      return;
    if (sscanf(p, "HTTP/1.1 %d", &code) != 1 || code != 200) {
      ev->disabled = 1;
      events_close(ev);
      return;
    }
    ev->head_done = 1;
    p = sep + 4;
  }
  while ((sep = memmem(p, (size_t)(end - p), "\n\n", 2)) != NULL) {
    char name[32] = "", *data = NULL;
    *sep = '\0';
    for (char *l = p, *nl; l != NULL && *l != '\0'; l = nl) {
      nl = strchr(l, '\n');
      if (nl != NULL)
        *nl++ = '\0';
      if (strncmp(l, "event: ", 7) == 0)
        snprintf(name, sizeof(name), "%s", l + 7);
      else if (strncmp(l, "data: ", 6) == 0)
        data = l + 6;
    }
    if (name[0] && data != NULL)
      on_event(name, data);
    p = sep + 2;
  }
  ev->len = (size_t)(end - p);
  memmove(ev->buf, p, ev->len);
}

/* Reads the stream until `until` (now_ms() time) or an interrupt. Without a
 * stream, just waits. */
static void events_wait(events_t *ev, uint64_t until) {
  while (!stop_watch) {
    uint64_t now = now_ms();
    struct pollfd pfd;
    ssize_t r;

    if (now >= until)
      return;
    if (ev->fd < 0) {
      usleep((useconds_t)((until - now) * 1000));
      continue;
    }
    pfd.fd = ev->fd;
    pfd.events = POLLIN;
    if (poll(&pfd, 1, (int)(until - now)) <= 0)
      continue; /* timeout, or EINTR: the loop checks both */
    if (ev->cap - ev->len < 4096) {
      size_t cap = ev->cap ? ev->cap * 2 : 16384;
      char *nb = cap <= EVENTS_MAX * 2 ? realloc(ev->buf, cap) : NULL;
      if (nb == NULL) {
        events_close(ev); /* an event past any bound: give the stream up */
        continue;
      }
      ev->buf = nb;
      ev->cap = cap;
    }
    r = read(ev->fd, ev->buf + ev->len, ev->cap - ev->len);
    if (r < 0 && (errno == EINTR || errno == EAGAIN))
      continue;
    if (r <= 0) {
      events_close(ev); /* switchd went away or cut us off: retried later */
      continue;
    }
    ev->len += (size_t)r;
    events_parse(ev);
  }
}

/* A live view: requests/s, errors and in-flight per colour, the phase, the
 * error watch against its thresholds; the watch's verdicts and rollbacks as
 * they come. */
static int cmd_watch(int count) {
  long long prev[2] = {-1, -1}, preverr[2] = {0, 0};
  static const char *cols[] = {"blue", "green"};
  events_t ev;
  int n = 0;

  memset(&ev, 0, sizeof(ev));
  ev.fd = -1;
  signal(SIGINT, on_int);
  while (!stop_watch && (count <= 0 || n < count)) {
    int status;
    uint64_t frame = now_ms();
    json_t *st = get_json(SW_API_STATUS, &status);
    if (st == NULL)
      unreachable();
    /* After the first status, so that an unreachable switchd is reported
     * by it; reconnected on each refresh if the stream was lost. */
    events_open(&ev);
    if (json_out) {
      char *s = json_dumps(st, JSON_COMPACT | JSON_SORT_KEYS);
      printf("%s\n", s);
      free(s);
    } else {
      if (isatty(1))
        printf("\033[H\033[2J");
      printf("live %s, phase %s, version %lld\n", str(st, "live"),
             str(st, "phase"), num(st, "version"));
      for (int c = 0; c < 2; c++) {
        json_t *col = json_object_get(json_object_get(st, "colours"), cols[c]);
        json_t *s;
        size_t i;
        long long req = 0, err = 0;
        json_array_foreach(json_object_get(col, "servers"), i, s) {
          req += num(s, "requests");
          err += num(s, "errors");
        }
        printf("  %-5s %6lld req/s %5lld errors/s %4lld in flight  %s\n",
               cols[c], prev[c] < 0 ? 0 : req - prev[c],
               prev[c] < 0 ? 0 : err - preverr[c], num(col, "inflight"),
               json_is_true(json_object_get(col, "healthy")) ? "healthy"
                                                             : "UNHEALTHY");
        prev[c] = req;
        preverr[c] = err;
      }
      print_watch_compact(st);
      if (json_object_get(st, "rollback") != NULL) {
        printf("  ");
        print_rollback(json_object_get(st, "rollback"));
      }
      for (size_t i = 0; i < nshown; i++)
        printf("%s\n", shown[i]);
    }
    fflush(stdout);
    json_decref(st);
    if (++n == count)
      break;
    events_wait(&ev, frame + 1000);
  }
  events_close(&ev);
  free(ev.buf);
  return SW_EXIT_OK;
}

static void usage(void) {
  printf(
      "usage: switchctl [-s SOCKET] [--json] COMMAND [ARGS]\n"
      "commands:\n"
      "  status                      live colour, phase, health, last "
      "cutover, watch\n"
      "  cutover [--to C] [--wait] [--watch] [--timeout DUR] [--hold DUR]\n"
      "          [--migrate CMD]\n"
      "                              start a cutover (see cutover --help)\n"
      "  abort                       abort the cutover gate in progress\n"
      "  rollback [--confirm|--force] [--version N]\n"
      "                              flip back to the old colour (see "
      "rollback --help)\n"
      "  commit [--version N]        end the error watch: the cutover "
      "stands\n"
      "  hold [--max DUR]            hold new requests until nothing is in "
      "flight\n"
      "  release                     send the held requests to the live "
      "colour\n"
      "  check COLOUR                verify a colour's schema requirements "
      "now\n"
      "  watch [--count N]           live view, refreshed every second\n"
      "options:\n"
      "  -s, --socket PATH  admin socket (default $SWITCHCTL_SOCKET or %s)\n"
      "  --json             JSON output for scripts\n"
      "exit codes: 0 done, 1 usage, 2 unreachable, 3 refused, 4 gate failed,\n"
      "  5 inconclusive (e.g. database unreachable), 6 --timeout passed,\n"
      "  7 rolled back (or the rollback was blocked)\n",
      SW_CONFIG_ADMIN_SOCKET);
}

int main(int argc, char **argv) {
  int i = 1;
  const char *cmd;

  /* A switchd that answers and closes before reading all we wrote must not
   * kill us: the answer is still there to read. */
  signal(SIGPIPE, SIG_IGN);
  sock_path = getenv("SWITCHCTL_SOCKET");
  if (sock_path == NULL)
    sock_path = SW_CONFIG_ADMIN_SOCKET;
  /* Global options come before the command. */
  while (i < argc && argv[i][0] == '-') {
    if ((strcmp(argv[i], "-s") == 0 || strcmp(argv[i], "--socket") == 0) &&
        i + 1 < argc) {
      sock_path = argv[i + 1];
      i += 2;
    } else if (strcmp(argv[i], "--json") == 0) {
      json_out = 1;
      i++;
    } else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
      usage();
      return SW_EXIT_OK;
    } else {
      die_usage("unknown option '%s'", argv[i]);
    }
  }
  if (i >= argc)
    die_usage("no command");
  cmd = argv[i];
  /* --json may also follow the command. */
  for (int k = i + 1; k < argc; k++)
    if (strcmp(argv[k], "--json") == 0) {
      json_out = 1;
      for (int m = k; m < argc - 1; m++)
        argv[m] = argv[m + 1];
      argc--;
      k--;
    }
  if (i + 1 < argc && strcmp(argv[i + 1], "--help") == 0 &&
      (strcmp(cmd, "status") == 0 || strcmp(cmd, "abort") == 0)) {
    if (strcmp(cmd, "status") == 0)
      printf(
          "usage: switchctl status [--json]\n"
          "  The live colour, the phase, each colour's health and "
          "verification,\n  the last cutover's outcome, the error watch "
          "of the last flip (windows,\n  counts, each trigger against its "
          "threshold) and the last rollback.\n");
    else
      printf(
          "usage: switchctl abort\n"
          "  Aborts the cutover gate in progress; nothing changes.\n"
          "  Exit 3 when there is no gate to abort.\n");
    return SW_EXIT_OK;
  }
  if (strcmp(cmd, "status") == 0 || strcmp(cmd, "abort") == 0) {
    if (i + 1 < argc)
      die_usage("%s: unexpected argument '%s'", cmd, argv[i + 1]);
    return strcmp(cmd, "status") == 0 ? cmd_status()
                                      : cmd_simple_post(SW_API_ABORT, "{}");
  }
  if (strcmp(cmd, "cutover") == 0)
    return cmd_cutover(argc - i, argv + i);
  if (strcmp(cmd, "rollback") == 0)
    return cmd_rollback(argc - i, argv + i);
  if (strcmp(cmd, "commit") == 0)
    return cmd_commit(argc - i, argv + i);
  if (strcmp(cmd, "hold") == 0)
    return cmd_hold(argc - i, argv + i);
  if (strcmp(cmd, "release") == 0)
    return cmd_release(argc - i, argv + i);
  if (strcmp(cmd, "check") == 0) {
    static const char help[] =
        "usage: switchctl check blue|green\n"
        "  Verifies the colour's schema requirements and probes its "
        "servers.\n"
        "  Exit 0 pass, 4 fail, 5 inconclusive.\n";
    if (i + 1 < argc && strcmp(argv[i + 1], "--help") == 0) {
      printf("%s", help);
      return SW_EXIT_OK;
    }
    if (i + 1 >= argc)
      die_usage("check: which colour? (blue or green)");
    if (i + 2 < argc)
      die_usage("check: unexpected argument '%s'", argv[i + 2]);
    if (strcmp(argv[i + 1], "blue") != 0 && strcmp(argv[i + 1], "green") != 0)
      die_usage("check: the colour must be blue or green");
    return cmd_check(argv[i + 1]);
  }
  if (strcmp(cmd, "watch") == 0) {
    long long count = 0;
    for (int k = i + 1; k < argc; k++) {
      if (strcmp(argv[k], "--help") == 0) {
        printf(
            "usage: switchctl watch [--count N]\n"
            "  Refreshes every second: requests/s, errors/s and in-flight "
            "per colour,\n  the error watch's counts against its "
            "thresholds and the time left in its\n  windows; prints the "
            "watch's verdicts and rollbacks as they happen.\n"
            "  --count stops after N refreshes.\n");
        return SW_EXIT_OK;
      }
      if (strcmp(argv[k], "--count") == 0 && k + 1 < argc &&
          parse_count(argv[k + 1], &count) == 0 && count > 0) {
        k++;
        continue;
      }
      die_usage("watch: bad argument '%s'", argv[k]);
    }
    return cmd_watch((int)count);
  }
  die_usage("unknown command '%s'", cmd);
  return SW_EXIT_USAGE;
}
