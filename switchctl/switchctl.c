/* switchctl: the command operators and deploy scripts use to drive
 * switchd through its admin API on the Unix socket. Blocking I/O is fine
 * here: this is a short-lived client. Output is for people by default and
 * JSON with --json; the exit code says how it went (sw_api.h). */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
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

/* Follows a cutover by polling the status: prints each transition as it
 * appears, the gate's progress and the drain's, and returns the exit code
 * of the outcome. */
static int follow(uint64_t from_version, uint64_t timeout_ms) {
  uint64_t start = now_ms(), printed = from_version;
  long long last_passes = -1, last_inflight = -1;
  const char *last_verify = "";
  char verify_seen[32] = "";

  for (;;) {
    int status;
    json_t *st = get_json(SW_API_STATUS, &status), *h, *e, *g;
    size_t i;
    if (st == NULL)
      unreachable();
    h = json_object_get(st, "history");
    json_array_foreach(h, i, e) {
      if ((uint64_t)num(e, "version") > printed) {
        printed = (uint64_t)num(e, "version");
        if (json_out) {
          char *s = json_dumps(e, JSON_COMPACT | JSON_SORT_KEYS);
          printf("%s\n", s);
          free(s);
        } else {
          printf("%s -> %s: %s\n", str(e, "from"), str(e, "to"),
                 str(e, "text"));
        }
        fflush(stdout);
      }
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
    if (!json_out && (g = json_object_get(st, "drain")) != NULL &&
        num(g, "inflight") != last_inflight) {
      last_inflight = num(g, "inflight");
      printf("  drain: %lld in flight on %s\n", last_inflight,
             str(g, "colour"));
      fflush(stdout);
    }
    if (strcmp(str(st, "phase"), "steady") == 0 &&
        (uint64_t)num(st, "version") > from_version) {
      json_t *lg = json_object_get(st, "last_gate");
      const char *o = str(lg, "outcome");
      int code = strcmp(o, "passed") == 0   ? SW_EXIT_OK
                 : strcmp(o, "failed") == 0 ? SW_EXIT_GATE_FAILED
                                            : SW_EXIT_INCONCLUSIVE;
      if (!json_out)
        printf("%s: %s\n", code == SW_EXIT_OK ? "done" : o, str(lg, "message"));
      json_decref(st);
      return code;
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
    printf("%s", body);
  } else {
    fprintf(stderr, "switchctl: refused (%d): %s%s%s\n", status,
            str(j, "error"), str(j, "reason")[0] ? ": " : "", str(j, "reason"));
  }
  json_decref(j);
  return SW_EXIT_REFUSED;
}

static int cmd_cutover(int argc, char **argv) {
  static const struct option opts[] = {{"to", required_argument, 0, 't'},
                                       {"wait", no_argument, 0, 'w'},
                                       {"timeout", required_argument, 0, 'T'},
                                       {"version", required_argument, 0, 'V'},
                                       {"help", no_argument, 0, 'h'},
                                       {0, 0, 0, 0}};
  const char *to = NULL;
  int wait = 0, c, status;
  long long version = -1;
  uint64_t timeout_ms = 0;
  char req[128], *body;
  json_t *j;

  optind = 1;
  while ((c = getopt_long(argc, argv, "t:wT:V:h", opts, NULL)) != -1) {
    switch (c) {
      case 't':
        to = optarg;
        break;
      case 'w':
        wait = 1;
        break;
      case 'T':
        if (parse_duration(optarg, &timeout_ms) != 0)
          die_usage("bad --timeout '%s' (e.g. 90s, 5m)", optarg);
        break;
      case 'V':
        if (parse_count(optarg, &version) != 0)
          die_usage("bad --version '%s' (a state version number)", optarg);
        break;
      case 'h':
        printf(
            "usage: switchctl cutover [--to blue|green] [--wait] "
            "[--timeout DUR] [--version N]\n"
            "  Starts a cutover to the colour (default: the standby one).\n"
            "  --wait     follow it: health passes, verification, flip, "
            "drain\n"
            "  --timeout  give up waiting after DUR (exit 6)\n"
            "  --version  the state version you saw (stale: refused, 409)\n");
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
  if (to != NULL && version >= 0)
    snprintf(req, sizeof(req), "{\"to\":\"%s\",\"version\":%lld}", to, version);
  else if (to != NULL)
    snprintf(req, sizeof(req), "{\"to\":\"%s\"}", to);
  else if (version >= 0)
    snprintf(req, sizeof(req), "{\"version\":%lld}", version);
  else
    snprintf(req, sizeof(req), "{}");
  status = call("POST", SW_API_CUTOVER, req, &body);
  if (status < 0)
    unreachable();
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
  return follow((uint64_t)version - 1, timeout_ms);
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

/* A live view: requests/s, errors and in-flight per colour, the phase. */
static int cmd_watch(int count) {
  long long prev[2] = {-1, -1}, preverr[2] = {0, 0};
  static const char *cols[] = {"blue", "green"};
  int n = 0;

  signal(SIGINT, on_int);
  while (!stop_watch && (count <= 0 || n < count)) {
    int status;
    json_t *st = get_json(SW_API_STATUS, &status);
    if (st == NULL)
      unreachable();
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
    }
    fflush(stdout);
    json_decref(st);
    if (++n == count)
      break;
    sleep(1);
  }
  return SW_EXIT_OK;
}

static void usage(void) {
  printf(
      "usage: switchctl [-s SOCKET] [--json] COMMAND [ARGS]\n"
      "commands:\n"
      "  status                      live colour, phase, health, last "
      "cutover\n"
      "  cutover [--to C] [--wait] [--timeout DUR]\n"
      "                              start a cutover (see cutover --help)\n"
      "  abort                       abort the cutover gate in progress\n"
      "  check COLOUR                verify a colour's schema requirements "
      "now\n"
      "  watch [--count N]           live view, refreshed every second\n"
      "options:\n"
      "  -s, --socket PATH  admin socket (default $SWITCHCTL_SOCKET or %s)\n"
      "  --json             JSON output for scripts\n"
      "exit codes: 0 done, 1 usage, 2 unreachable, 3 refused, 4 gate failed,\n"
      "  5 inconclusive (e.g. database unreachable), 6 --timeout passed\n",
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
          "verification,\n  and the last cutover's outcome.\n");
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
            "per colour;\n  --count stops after N refreshes.\n");
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
