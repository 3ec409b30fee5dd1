/* Unit tests of the config parser (proxy/config.c): every directive's value,
 * the defaults, every error message with its FILE:LINE, number and address
 * edge cases, trusted_proxy matching, and the example conf/switchd.conf. Run
 * from the repository root: one test loads the example from disk. */

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "sw_config.h"
#include "sw_test.h"

#define KIB 1024ull
#define MIB (1024ull * 1024)
#define GIB (1024ull * 1024 * 1024)

/* The smallest valid file: four lines, so an appended line is line 5. */
#define BASE                \
  "listen\n"                \
  "  bind 127.0.0.1:8080\n" \
  "upstream blue\n"         \
  "  server 127.0.0.1:9001\n"

/* Parses text as file "conf" and checks it succeeded; returns the config (or
 * NULL) for further checks. */
static sw_config_t *parse_ok_at(const char *file, int line, const char *text) {
  char err[256] = "";
  sw_config_t *cfg = NULL;
  int rc = sw_config_parse("conf", text, strlen(text), &cfg, err, sizeof(err));

  if (!SW_CHECK_INT_EQ_AT(file, line, rc, 0))
    printf("  error: %s\n", err);
  SW_CHECK_AT(file, line, (cfg != NULL) == (rc == 0));
  return cfg;
}
#define PARSE_OK(text) parse_ok_at(__FILE__, __LINE__, text)

/* Parses text that must be rejected and checks the whole message. */
static void parse_err_at(const char *file,
                         int line,
                         const char *text,
                         const char *want) {
  char err[256] = "";
  static sw_config_t stale;
  sw_config_t *cfg = &stale; /* a failed parse must reset it to NULL */
  int rc = sw_config_parse("conf", text, strlen(text), &cfg, err, sizeof(err));

  SW_CHECK_INT_EQ_AT(file, line, rc, SW_ECONFIG);
  SW_CHECK_AT(file, line, cfg == NULL);
  SW_CHECK_STR_EQ_AT(file, line, err, want);
  if (rc == 0)
    sw_config_free(cfg);
}
#define PARSE_ERR(text, want) parse_err_at(__FILE__, __LINE__, text, want)

static void check_v4_at(const char *file,
                        int line,
                        const struct sockaddr_storage *ss,
                        const char *ip,
                        unsigned port) {
  const struct sockaddr_in *sin = (const struct sockaddr_in *)ss;
  char text[INET_ADDRSTRLEN] = "";

  SW_CHECK_INT_EQ_AT(file, line, ss->ss_family, AF_INET);
  inet_ntop(AF_INET, &sin->sin_addr, text, sizeof(text));
  SW_CHECK_STR_EQ_AT(file, line, text, ip);
  SW_CHECK_UINT_EQ_AT(file, line, ntohs(sin->sin_port), port);
}
#define CHECK_V4(ss, ip, port) check_v4_at(__FILE__, __LINE__, ss, ip, port)

static void check_v6_at(const char *file,
                        int line,
                        const struct sockaddr_storage *ss,
                        const char *ip,
                        unsigned port) {
  const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)ss;
  char text[INET6_ADDRSTRLEN] = "";

  SW_CHECK_INT_EQ_AT(file, line, ss->ss_family, AF_INET6);
  inet_ntop(AF_INET6, &sin6->sin6_addr, text, sizeof(text));
  SW_CHECK_STR_EQ_AT(file, line, text, ip);
  SW_CHECK_UINT_EQ_AT(file, line, ntohs(sin6->sin6_port), port);
}
#define CHECK_V6(ss, ip, port) check_v6_at(__FILE__, __LINE__, ss, ip, port)

/* Every value of the watch section at its default (the section line is
 * left to the caller: the example writes the section out). */
static void check_watch_defaults(const sw_watch_conf_t *w) {
  SW_CHECK_INT_EQ(w->enabled, 1);
  SW_CHECK_UINT_EQ(w->auto_window_ms, 5 * 60 * 1000);
  SW_CHECK_UINT_EQ(w->manual_window_ms, 30 * 60 * 1000);
  SW_CHECK_UINT_EQ(w->baseline_window_ms, 10 * 60 * 1000);
  SW_CHECK_UINT_EQ(w->min_requests, 20);
  if (SW_CHECK_UINT_EQ(w->nnot_errors, 2)) {
    SW_CHECK_INT_EQ(w->not_errors[0], 501);
    SW_CHECK_INT_EQ(w->not_errors[1], 505);
  }
  SW_CHECK_INT_EQ(w->r1, 1);
  SW_CHECK_UINT_EQ(w->max_errors, 10);
  SW_CHECK(w->alpha == 0.001);
  SW_CHECK_INT_EQ(w->r2, 1);
  SW_CHECK(w->max_error_ratio == 0.5);
  SW_CHECK_UINT_EQ(w->ratio_window_ms, 10000);
  SW_CHECK_INT_EQ(w->r3, 1);
  SW_CHECK_UINT_EQ(w->max_consecutive, 5);
  SW_CHECK_INT_EQ(w->r4, 1);
  SW_CHECK_UINT_EQ(w->verify_interval_ms, 10000);
  SW_CHECK(w->notify == NULL);
  SW_CHECK_UINT_EQ(w->notify_timeout_ms, 5000);
  SW_CHECK_UINT_EQ(w->notify_retries, 3);
}

static void check_defaults_except_lists(const sw_config_t *cfg) {
  int c;

  SW_CHECK_INT_EQ(cfg->live, SW_BLUE);
  SW_CHECK_STR_EQ(cfg->error_log, "stderr");
  SW_CHECK_STR_EQ(cfg->access_log, "off");
  SW_CHECK_INT_EQ(cfg->log_level, SW_LOG_INFO);
  SW_CHECK(cfg->pid_file == NULL);
  SW_CHECK_UINT_EQ(cfg->shutdown_timeout_ms, 30000);
  SW_CHECK_UINT_EQ(cfg->buffer_budget, 256 * MIB);

  SW_CHECK_UINT_EQ(cfg->ntrusted, 0);
  SW_CHECK_UINT_EQ(cfg->header_timeout_ms, 10000);
  SW_CHECK_UINT_EQ(cfg->idle_timeout_ms, 60000);
  SW_CHECK_UINT_EQ(cfg->body_timeout_ms, 60000);
  SW_CHECK_UINT_EQ(cfg->send_timeout_ms, 60000);
  SW_CHECK_UINT_EQ(cfg->tunnel_timeout_ms, 3600000);
  SW_CHECK_UINT_EQ(cfg->min_send_rate, 1024);
  SW_CHECK_UINT_EQ(cfg->max_header_size, 16 * KIB);
  SW_CHECK_UINT_EQ(cfg->max_headers, 100);
  SW_CHECK_UINT_EQ(cfg->max_url, 8 * KIB);
  SW_CHECK_UINT_EQ(cfg->max_body, 64 * MIB);
  SW_CHECK_UINT_EQ(cfg->request_buffer, MIB);
  SW_CHECK_UINT_EQ(cfg->response_buffer, MIB);

  for (c = 0; c < SW_COLOURS; c++) {
    const sw_upstream_conf_t *up = &cfg->upstream[c];
    SW_CHECK_UINT_EQ(up->connect_timeout_ms, 5000);
    SW_CHECK_UINT_EQ(up->response_timeout_ms, 60000);
    SW_CHECK_UINT_EQ(up->idle_timeout_ms, 1000);
    SW_CHECK_UINT_EQ(up->max_idle, 64);

    SW_CHECK_STR_EQ(up->health.path, "/health/detailed/");
    SW_CHECK(up->health.host == NULL);
    SW_CHECK_INT_EQ(up->health.status_min, 200);
    SW_CHECK_INT_EQ(up->health.status_max, 299);
    SW_CHECK(up->health.body == NULL);
    SW_CHECK_UINT_EQ(up->health.interval_ms, 2000);
    SW_CHECK_UINT_EQ(up->health.timeout_ms, 1000);
    SW_CHECK_UINT_EQ(up->health.rise, 3);
    SW_CHECK_UINT_EQ(up->health.fall, 3);
    SW_CHECK_INT_EQ(up->health.enabled, 1);
    SW_CHECK_UINT_EQ(up->nrequires, 0);
    SW_CHECK(up->requires == NULL);

    SW_CHECK_INT_EQ(up->tls, 0);
    SW_CHECK(up->tls_ca == NULL);
    SW_CHECK_INT_EQ(up->tls_verify, 1);
    SW_CHECK(up->tls_name == NULL);
    SW_CHECK_INT_EQ(up->tls_line, 0);
  }

  /* The database section is optional; with no requirement, no dsn. */
  SW_CHECK(cfg->database.dsn == NULL);
  SW_CHECK_UINT_EQ(cfg->database.connect_timeout_ms, 5000);
  SW_CHECK_UINT_EQ(cfg->database.statement_timeout_ms, 5000);
  SW_CHECK_UINT_EQ(cfg->database.lock_timeout_ms, 1000);

  SW_CHECK_UINT_EQ(cfg->cutover.gate_timeout_ms, 600000);
  SW_CHECK_UINT_EQ(cfg->cutover.drain_timeout_ms, 30000);
  SW_CHECK(cfg->cutover.state_file == NULL);
  SW_CHECK_UINT_EQ(cfg->cutover.history, 50);
  /* The hold: 2 s, 2000 requests; no reverse migration, 60 s when set. */
  SW_CHECK_UINT_EQ(cfg->cutover.hold_max_ms, 2000);
  SW_CHECK_UINT_EQ(cfg->cutover.hold_queue, 2000);
  SW_CHECK(cfg->cutover.rollback_migrate == NULL);
  SW_CHECK_UINT_EQ(cfg->cutover.rollback_migrate_timeout_ms, 60000);

  check_watch_defaults(&cfg->watch);

  SW_CHECK_STR_EQ(cfg->admin.socket, "/run/switchd/admin.sock");
  SW_CHECK_STR_EQ(cfg->admin.socket, SW_CONFIG_ADMIN_SOCKET);
  SW_CHECK_UINT_EQ(cfg->admin.nallow_uids, 0);
  SW_CHECK(cfg->admin.allow_uids == NULL);
  SW_CHECK_INT_EQ(cfg->admin.has_bind, 0);
  SW_CHECK(cfg->admin.token_file == NULL);
  SW_CHECK_INT_EQ(cfg->admin.metrics_open, 0);
}

static void test_defaults(void) {
  sw_config_t *cfg = PARSE_OK(BASE);

  if (cfg == NULL)
    return;
  SW_CHECK_STR_EQ(cfg->file, "conf");
  check_defaults_except_lists(cfg);
  SW_CHECK_UINT_EQ(cfg->nbinds, 1);
  SW_CHECK_STR_EQ(cfg->binds[0].name, "127.0.0.1:8080");
  SW_CHECK_INT_EQ(cfg->binds[0].line, 2);
  CHECK_V4(&cfg->binds[0].addr, "127.0.0.1", 8080);
  SW_CHECK_INT_EQ(cfg->upstream[SW_BLUE].line, 3);
  SW_CHECK_UINT_EQ(cfg->upstream[SW_BLUE].nservers, 1);
  SW_CHECK_STR_EQ(cfg->upstream[SW_BLUE].servers[0].name, "127.0.0.1:9001");
  SW_CHECK_INT_EQ(cfg->upstream[SW_BLUE].servers[0].line, 4);
  CHECK_V4(&cfg->upstream[SW_BLUE].servers[0].addr, "127.0.0.1", 9001);
  /* The other colour may be absent entirely. */
  SW_CHECK_INT_EQ(cfg->upstream[SW_GREEN].line, 0);
  SW_CHECK_UINT_EQ(cfg->upstream[SW_GREEN].nservers, 0);
  SW_CHECK(cfg->upstream[SW_GREEN].servers == NULL);
  /* So may the new sections. */
  SW_CHECK_INT_EQ(cfg->database.line, 0);
  SW_CHECK_INT_EQ(cfg->watch.line, 0);
  sw_config_free(cfg);
}

/* Every directive, none at its default. */
static const char full_conf[] =
    "global\n"                                 /* 1 */
    "  live green\n"                           /* 2 */
    "  error_log /var/log/switchd/error.log\n" /* 3 */
    "  access_log stderr\n"                    /* 4 */
    "  log_level debug\n"                      /* 5 */
    "  pid_file \"/run/switch d.pid\"\n"       /* 6 */
    "  shutdown_timeout 45s\n"                 /* 7 */
    "  buffer_budget 1g\n"                     /* 8 */
    "listen\n"                                 /* 9 */
    "  bind 127.0.0.1:8080\n"                  /* 10 */
    "  bind [::1]:8443\n"                      /* 11 */
    "listen\n"                                 /* 12 */
    "  bind *:80\n"                            /* 13 */
    "client\n"                                 /* 14 */
    "  trusted_proxy 10.0.0.0/8\n"             /* 15 */
    "  trusted_proxy 192.168.1.7\n"            /* 16 */
    "  trusted_proxy 2001:db8::/32\n"          /* 17 */
    "  header_timeout 5s\n"                    /* 18 */
    "  idle_timeout 2m\n"                      /* 19 */
    "  body_timeout 30s\n"                     /* 20 */
    "  send_timeout 1500ms\n"                  /* 21 */
    "  tunnel_timeout 2h\n"                    /* 22 */
    "  min_send_rate 0\n"                      /* 23 */
    "  max_header_size 32k\n"                  /* 24 */
    "  max_headers 50\n"                       /* 25 */
    "  max_url 4K\n"                           /* 26 */
    "  max_body 1G\n"                          /* 27 */
    "  request_buffer 2m\n"                    /* 28 */
    "  response_buffer 512k\n"                 /* 29 */
    "upstream blue\n"                          /* 30 */
    "  server 127.0.0.1:9001\n"                /* 31 */
    "  connect_timeout 1s\n"                   /* 32 */
    "  response_timeout 90s\n"                 /* 33 */
    "  idle_timeout 500ms\n"                   /* 34 */
    "  max_idle 8\n"                           /* 35 */
    "upstream green\n"                         /* 36 */
    "  server 127.0.0.1:9101\n"                /* 37 */
    "  server [::1]:9102\n"                    /* 38 */
    "  connect_timeout 2s\n"                   /* 39 */
    "  response_timeout 120s\n"                /* 40 */
    "  idle_timeout 3s\n"                      /* 41 */
    "  max_idle 0\n";                          /* 42 */

static void test_full(void) {
  const sw_upstream_conf_t *blue, *green;
  sw_config_t *cfg = PARSE_OK(full_conf);

  if (cfg == NULL)
    return;
  SW_CHECK_INT_EQ(cfg->live, SW_GREEN);
  SW_CHECK_STR_EQ(cfg->error_log, "/var/log/switchd/error.log");
  SW_CHECK_STR_EQ(cfg->access_log, "stderr");
  SW_CHECK_INT_EQ(cfg->log_level, SW_LOG_DEBUG);
  SW_CHECK_STR_EQ(cfg->pid_file, "/run/switch d.pid");
  SW_CHECK_UINT_EQ(cfg->shutdown_timeout_ms, 45000);
  SW_CHECK_UINT_EQ(cfg->buffer_budget, GIB);

  if (SW_CHECK_UINT_EQ(cfg->nbinds, 3)) {
    SW_CHECK_STR_EQ(cfg->binds[0].name, "127.0.0.1:8080");
    SW_CHECK_INT_EQ(cfg->binds[0].line, 10);
    CHECK_V4(&cfg->binds[0].addr, "127.0.0.1", 8080);
    SW_CHECK_STR_EQ(cfg->binds[1].name, "[::1]:8443");
    SW_CHECK_INT_EQ(cfg->binds[1].line, 11);
    CHECK_V6(&cfg->binds[1].addr, "::1", 8443);
    SW_CHECK_STR_EQ(cfg->binds[2].name, "0.0.0.0:80");
    SW_CHECK_INT_EQ(cfg->binds[2].line, 13);
    CHECK_V4(&cfg->binds[2].addr, "0.0.0.0", 80);
  }

  if (SW_CHECK_UINT_EQ(cfg->ntrusted, 3)) {
    static const unsigned char ten[4] = {10, 0, 0, 0};
    static const unsigned char host[4] = {192, 168, 1, 7};
    static const unsigned char doc[16] = {0x20, 0x01, 0x0d, 0xb8};
    SW_CHECK_INT_EQ(cfg->trusted[0].family, AF_INET);
    SW_CHECK_INT_EQ(cfg->trusted[0].prefix, 8);
    SW_CHECK(memcmp(cfg->trusted[0].addr, ten, 4) == 0);
    SW_CHECK_INT_EQ(cfg->trusted[1].family, AF_INET);
    SW_CHECK_INT_EQ(cfg->trusted[1].prefix, 32);
    SW_CHECK(memcmp(cfg->trusted[1].addr, host, 4) == 0);
    SW_CHECK_INT_EQ(cfg->trusted[2].family, AF_INET6);
    SW_CHECK_INT_EQ(cfg->trusted[2].prefix, 32);
    SW_CHECK(memcmp(cfg->trusted[2].addr, doc, 16) == 0);
  }
  SW_CHECK_UINT_EQ(cfg->header_timeout_ms, 5000);
  SW_CHECK_UINT_EQ(cfg->idle_timeout_ms, 120000);
  SW_CHECK_UINT_EQ(cfg->body_timeout_ms, 30000);
  SW_CHECK_UINT_EQ(cfg->send_timeout_ms, 1500);
  SW_CHECK_UINT_EQ(cfg->tunnel_timeout_ms, 7200000);
  SW_CHECK_UINT_EQ(cfg->min_send_rate, 0);
  SW_CHECK_UINT_EQ(cfg->max_header_size, 32 * KIB);
  SW_CHECK_UINT_EQ(cfg->max_headers, 50);
  SW_CHECK_UINT_EQ(cfg->max_url, 4 * KIB);
  SW_CHECK_UINT_EQ(cfg->max_body, GIB);
  SW_CHECK_UINT_EQ(cfg->request_buffer, 2 * MIB);
  SW_CHECK_UINT_EQ(cfg->response_buffer, 512 * KIB);

  blue = &cfg->upstream[SW_BLUE];
  SW_CHECK_INT_EQ(blue->line, 30);
  if (SW_CHECK_UINT_EQ(blue->nservers, 1)) {
    SW_CHECK_STR_EQ(blue->servers[0].name, "127.0.0.1:9001");
    SW_CHECK_INT_EQ(blue->servers[0].line, 31);
    CHECK_V4(&blue->servers[0].addr, "127.0.0.1", 9001);
  }
  SW_CHECK_UINT_EQ(blue->connect_timeout_ms, 1000);
  SW_CHECK_UINT_EQ(blue->response_timeout_ms, 90000);
  SW_CHECK_UINT_EQ(blue->idle_timeout_ms, 500);
  SW_CHECK_UINT_EQ(blue->max_idle, 8);

  green = &cfg->upstream[SW_GREEN];
  SW_CHECK_INT_EQ(green->line, 36);
  if (SW_CHECK_UINT_EQ(green->nservers, 2)) {
    SW_CHECK_STR_EQ(green->servers[0].name, "127.0.0.1:9101");
    SW_CHECK_INT_EQ(green->servers[0].line, 37);
    CHECK_V4(&green->servers[0].addr, "127.0.0.1", 9101);
    SW_CHECK_STR_EQ(green->servers[1].name, "[::1]:9102");
    SW_CHECK_INT_EQ(green->servers[1].line, 38);
    CHECK_V6(&green->servers[1].addr, "::1", 9102);
  }
  SW_CHECK_UINT_EQ(green->connect_timeout_ms, 2000);
  SW_CHECK_UINT_EQ(green->response_timeout_ms, 120000);
  SW_CHECK_UINT_EQ(green->idle_timeout_ms, 3000);
  SW_CHECK_UINT_EQ(green->max_idle, 0);
  sw_config_free(cfg);
}

/* One value for a directive: with err NULL it must parse and store `want`;
 * otherwise err is the message expected after "conf:6: ". */
typedef struct value_case_s {
  const char *section;
  const char *directive;
  const char *arg;
  uint64_t want;
  const char *err;
} value_case_t;

/* The value a case set. A name used in several sections (connect_timeout)
 * is told apart by the section; upstream cases use green, which BASE leaves
 * free to open. */
static uint64_t value_of(const sw_config_t *cfg,
                         const char *section,
                         const char *directive) {
  const sw_upstream_conf_t *green = &cfg->upstream[SW_GREEN];

  if (strcmp(section, "upstream green") == 0) {
    if (strcmp(directive, "health_interval") == 0)
      return green->health.interval_ms;
    if (strcmp(directive, "health_timeout") == 0)
      return green->health.timeout_ms;
    if (strcmp(directive, "health_rise") == 0)
      return green->health.rise;
    if (strcmp(directive, "health_fall") == 0)
      return green->health.fall;
    return UINT64_MAX - 1;
  }
  if (strcmp(section, "database") == 0) {
    if (strcmp(directive, "connect_timeout") == 0)
      return cfg->database.connect_timeout_ms;
    if (strcmp(directive, "statement_timeout") == 0)
      return cfg->database.statement_timeout_ms;
    if (strcmp(directive, "lock_timeout") == 0)
      return cfg->database.lock_timeout_ms;
    return UINT64_MAX - 1;
  }
  if (strcmp(section, "watch") == 0) {
    const sw_watch_conf_t *w = &cfg->watch;
    if (strcmp(directive, "auto_window") == 0)
      return w->auto_window_ms;
    if (strcmp(directive, "manual_window") == 0)
      return w->manual_window_ms;
    if (strcmp(directive, "baseline_window") == 0)
      return w->baseline_window_ms;
    if (strcmp(directive, "min_requests") == 0)
      return w->min_requests;
    /* A trigger turned off reads as UINT64_MAX: no threshold. */
    if (strcmp(directive, "max_errors") == 0)
      return w->r1 ? w->max_errors : UINT64_MAX;
    if (strcmp(directive, "ratio_window") == 0)
      return w->ratio_window_ms;
    if (strcmp(directive, "max_consecutive") == 0)
      return w->r3 ? w->max_consecutive : UINT64_MAX;
    if (strcmp(directive, "verify_interval") == 0)
      return w->verify_interval_ms;
    if (strcmp(directive, "notify_timeout") == 0)
      return w->notify_timeout_ms;
    if (strcmp(directive, "notify_retries") == 0)
      return w->notify_retries;
    return UINT64_MAX - 1;
  }
  if (strcmp(section, "cutover") == 0) {
    if (strcmp(directive, "gate_timeout") == 0)
      return cfg->cutover.gate_timeout_ms;
    if (strcmp(directive, "drain_timeout") == 0)
      return cfg->cutover.drain_timeout_ms;
    if (strcmp(directive, "history") == 0)
      return cfg->cutover.history;
    if (strcmp(directive, "hold_max") == 0)
      return cfg->cutover.hold_max_ms;
    if (strcmp(directive, "hold_queue") == 0)
      return cfg->cutover.hold_queue;
    if (strcmp(directive, "rollback_migrate_timeout") == 0)
      return cfg->cutover.rollback_migrate_timeout_ms;
    return UINT64_MAX - 1;
  }
  if (strcmp(directive, "header_timeout") == 0)
    return cfg->header_timeout_ms;
  if (strcmp(directive, "shutdown_timeout") == 0)
    return cfg->shutdown_timeout_ms;
  if (strcmp(directive, "max_body") == 0)
    return cfg->max_body;
  if (strcmp(directive, "buffer_budget") == 0)
    return cfg->buffer_budget;
  if (strcmp(directive, "min_send_rate") == 0)
    return cfg->min_send_rate;
  if (strcmp(directive, "max_header_size") == 0)
    return cfg->max_header_size;
  if (strcmp(directive, "max_url") == 0)
    return cfg->max_url;
  if (strcmp(directive, "max_headers") == 0)
    return cfg->max_headers;
  return UINT64_MAX - 1;
}

/* Appends "SECTION\n  DIRECTIVE ARG\n" to BASE, so the directive is line 6. */
static void run_value_cases(const char *file,
                            int line,
                            const value_case_t *cases,
                            size_t n) {
  size_t i;

  for (i = 0; i < n; i++) {
    const value_case_t *c = &cases[i];
    char text[512], want[256];
    snprintf(text, sizeof(text), BASE "%s\n  %s %s\n", c->section, c->directive,
             c->arg);
    if (c->err == NULL) {
      sw_config_t *cfg = parse_ok_at(file, line, text);
      if (cfg == NULL) {
        printf("  case: %s %s\n", c->directive, c->arg);
        continue;
      }
      if (!SW_CHECK_UINT_EQ_AT(
              file, line, value_of(cfg, c->section, c->directive), c->want))
        printf("  case: %s %s\n", c->directive, c->arg);
      sw_config_free(cfg);
    } else {
      snprintf(want, sizeof(want), "conf:6: %s", c->err);
      parse_err_at(file, line, text, want);
    }
  }
}
#define RUN_VALUE_CASES(cases) \
  run_value_cases(__FILE__, __LINE__, cases, sizeof(cases) / sizeof(cases[0]))

static void test_durations(void) {
  static const value_case_t cases[] = {
      {"client", "header_timeout", "1ms", 1, NULL},
      {"client", "header_timeout", "250ms", 250, NULL},
      {"client", "header_timeout", "7", 7000, NULL},
      {"client", "header_timeout", "7s", 7000, NULL},
      {"client", "header_timeout", "3m", 180000, NULL},
      {"client", "header_timeout", "2h", 7200000, NULL},
      {"client", "header_timeout", "007s", 7000, NULL},
      {"global", "shutdown_timeout", "1h", 3600000, NULL},
      {"client", "header_timeout", "18446744073709551615ms", UINT64_MAX, NULL},
      {"client", "header_timeout", "18446744073709551616ms", 0,
       "header_timeout: value too large '18446744073709551616ms'"},
      {"client", "header_timeout", "18446744073709551615", 0,
       "header_timeout: value too large '18446744073709551615'"},
      {"client", "header_timeout", "5124095576030432h", 0,
       "header_timeout: value too large '5124095576030432h'"},
      {"client", "header_timeout", "0", 0,
       "header_timeout: must be greater than 0, got '0'"},
      {"client", "header_timeout", "0ms", 0,
       "header_timeout: must be greater than 0, got '0ms'"},
      {"client", "header_timeout", "10x", 0,
       "header_timeout: invalid duration '10x'"},
      {"client", "header_timeout", "10S", 0,
       "header_timeout: invalid duration '10S'"},
      {"client", "header_timeout", "s", 0,
       "header_timeout: invalid duration 's'"},
      {"client", "header_timeout", "-1s", 0,
       "header_timeout: invalid duration '-1s'"},
      {"client", "header_timeout", "+1s", 0,
       "header_timeout: invalid duration '+1s'"},
      {"client", "header_timeout", "1.5s", 0,
       "header_timeout: invalid duration '1.5s'"},
      {"client", "header_timeout", "1sec", 0,
       "header_timeout: invalid duration '1sec'"},
      {"client", "header_timeout", "\"\"", 0,
       "header_timeout: invalid duration ''"},
  };

  RUN_VALUE_CASES(cases);
}

static void test_sizes(void) {
  static const value_case_t cases[] = {
      {"client", "max_body", "1", 1, NULL},
      {"client", "max_body", "1k", KIB, NULL},
      {"client", "max_body", "1K", KIB, NULL},
      {"client", "max_body", "3m", 3 * MIB, NULL},
      {"client", "max_body", "3M", 3 * MIB, NULL},
      {"client", "max_body", "2g", 2 * GIB, NULL},
      {"client", "max_body", "2G", 2 * GIB, NULL},
      {"client", "max_body", "18446744073709551615", UINT64_MAX, NULL},
      {"client", "max_body", "17179869183g", 17179869183ull * GIB, NULL},
      {"client", "max_body", "17179869184g", 0,
       "max_body: value too large '17179869184g'"},
      {"client", "max_body", "18446744073709551616", 0,
       "max_body: value too large '18446744073709551616'"},
      {"client", "max_body", "99999999999999999999999k", 0,
       "max_body: value too large '99999999999999999999999k'"},
      {"client", "max_body", "0", 0,
       "max_body: must be greater than 0, got '0'"},
      {"client", "max_body", "1kb", 0, "max_body: invalid size '1kb'"},
      {"client", "max_body", "1t", 0, "max_body: invalid size '1t'"},
      {"client", "max_body", "k", 0, "max_body: invalid size 'k'"},
      {"client", "max_body", "-5", 0, "max_body: invalid size '-5'"},
      {"client", "max_body", "1 k", 0, "max_body: expected 1 argument, got 2"},
      {"client", "min_send_rate", "0", 0, NULL},
      {"client", "min_send_rate", "10", 10, NULL},
      {"client", "min_send_rate", "2k", 2048, NULL},
      {"client", "max_header_size", "1k", KIB, NULL},
      {"client", "max_header_size", "1024", KIB, NULL},
      {"client", "max_header_size", "1023", 0,
       "max_header_size: '1023' is below the minimum of 1024"},
      {"client", "max_header_size", "0", 0,
       "max_header_size: '0' is below the minimum of 1024"},
      {"client", "max_url", "2k", 2 * KIB, NULL},
      {"client", "max_url", "0", 0, "max_url: must be greater than 0, got '0'"},
      {"global", "buffer_budget", "2m", 2 * MIB, NULL},
      {"global", "buffer_budget", "0", 0,
       "buffer_budget: must be greater than 0, got '0'"},
  };

  RUN_VALUE_CASES(cases);
}

/* Plain counts take no suffix. */
static void test_counts(void) {
  static const value_case_t cases[] = {
      {"client", "max_headers", "1", 1, NULL},
      {"client", "max_headers", "250", 250, NULL},
      {"client", "max_headers", "0", 0,
       "max_headers: must be greater than 0, got '0'"},
      {"client", "max_headers", "1k", 0, "max_headers: invalid number '1k'"},
      {"client", "max_headers", "x", 0, "max_headers: invalid number 'x'"},
      {"client", "max_headers", "18446744073709551616", 0,
       "max_headers: value too large '18446744073709551616'"},
  };
  sw_config_t *cfg;

  RUN_VALUE_CASES(cases);

  /* max_idle is an unsigned: the largest value fits and one more does not. */
  cfg = PARSE_OK(BASE "  max_idle 0\n");
  if (cfg != NULL)
    SW_CHECK_UINT_EQ(cfg->upstream[SW_BLUE].max_idle, 0);
  sw_config_free(cfg);
  cfg = PARSE_OK(BASE "  max_idle 4294967295\n");
  if (cfg != NULL)
    SW_CHECK_UINT_EQ(cfg->upstream[SW_BLUE].max_idle, 4294967295u);
  sw_config_free(cfg);
  PARSE_ERR(BASE "  max_idle 4294967296\n",
            "conf:5: max_idle: value too large '4294967296'");
  PARSE_ERR(BASE "  max_idle 1s\n", "conf:5: max_idle: invalid number '1s'");
}

static void test_binds(void) {
  sw_config_t *cfg;

  cfg = PARSE_OK(
      "listen\n"
      "  bind [0:0:0:0:0:0:0:1]:81\n"
      "  bind [::]:82\n"
      "  bind [2001:DB8::0001]:83\n"
      "  bind 0.0.0.0:84\n"
      "  bind [::ffff:127.0.0.1]:85\n"
      "  bind 255.255.255.255:65535\n"
      "upstream blue\n"
      "  server 127.0.0.1:9001\n");
  if (cfg != NULL && SW_CHECK_UINT_EQ(cfg->nbinds, 6)) {
    SW_CHECK_STR_EQ(cfg->binds[0].name, "[::1]:81");
    CHECK_V6(&cfg->binds[0].addr, "::1", 81);
    SW_CHECK_STR_EQ(cfg->binds[1].name, "[::]:82");
    CHECK_V6(&cfg->binds[1].addr, "::", 82);
    SW_CHECK_STR_EQ(cfg->binds[2].name, "[2001:db8::1]:83");
    SW_CHECK_STR_EQ(cfg->binds[3].name, "0.0.0.0:84");
    SW_CHECK_STR_EQ(cfg->binds[4].name, "[::ffff:127.0.0.1]:85");
    SW_CHECK_STR_EQ(cfg->binds[5].name, "255.255.255.255:65535");
    CHECK_V4(&cfg->binds[5].addr, "255.255.255.255", 65535);
    SW_CHECK_INT_EQ(cfg->binds[5].line, 7);
  }
  sw_config_free(cfg);

#define BIND_ERR(addr)                                                     \
  PARSE_ERR(BASE "listen\n  bind " addr "\n",                              \
            "conf:6: bind: invalid address (expected IP:PORT, [IPv6]:PORT" \
            " or *:PORT) '" addr "'")
  BIND_ERR("::1:8080");
  BIND_ERR("localhost:8080");
  BIND_ERR("127.0.0.1");
  BIND_ERR("127.0.0.1:");
  BIND_ERR("127.0.0.1:0");
  BIND_ERR("127.0.0.1:65536");
  BIND_ERR("127.0.0.1:80x");
  BIND_ERR("127.0.0.1:-80");
  BIND_ERR("127.0.0.256:80");
  BIND_ERR("[::1]8080");
  BIND_ERR("[::1:8080");
  BIND_ERR("[127.0.0.1]:8080");
  BIND_ERR("[]:8080");
  BIND_ERR(":8080");
  BIND_ERR("**:8080");
  BIND_ERR("010.1.2.3:80"); /* ambiguous (octal?), so refused */
#undef BIND_ERR

  /* "*" is only for listening: a server must be somewhere to connect to. */
  PARSE_ERR(BASE "  server *:9002\n",
            "conf:5: server: invalid address (expected IP:PORT or"
            " [IPv6]:PORT) '*:9002'");
  PARSE_ERR(BASE "  server localhost:9002\n",
            "conf:5: server: invalid address (expected IP:PORT or"
            " [IPv6]:PORT) 'localhost:9002'");

  /* Duplicates compare the normalised address, across listen sections. */
  PARSE_ERR(BASE "listen\n  bind 127.0.0.1:8080\n",
            "conf:6: bind: duplicate address '127.0.0.1:8080' (already bound"
            " at line 2)");
  PARSE_ERR(BASE "listen\n  bind *:80\nlisten\n  bind 0.0.0.0:80\n",
            "conf:8: bind: duplicate address '0.0.0.0:80' (already bound at"
            " line 6)");
  PARSE_ERR(BASE "listen\n  bind [::1]:80\n  bind [0::1]:80\n",
            "conf:7: bind: duplicate address '[0::1]:80' (already bound at"
            " line 6)");
  /* The same port on another address, or another family, is fine. */
  cfg = PARSE_OK(BASE "listen\n  bind 127.0.0.2:8080\n  bind [::1]:8080\n");
  if (cfg != NULL)
    SW_CHECK_UINT_EQ(cfg->nbinds, 3);
  sw_config_free(cfg);
}

static void test_trusted_parse(void) {
  sw_config_t *cfg;

  cfg = PARSE_OK(BASE
                 "client\n"
                 "  trusted_proxy 10.1.2.3/8\n"
                 "  trusted_proxy 0.0.0.0/0\n"
                 "  trusted_proxy ::1\n"
                 "  trusted_proxy 2001:db8:ffff::/33\n"
                 "  trusted_proxy 172.16.0.0/12\n");
  if (cfg != NULL && SW_CHECK_UINT_EQ(cfg->ntrusted, 5)) {
    static const unsigned char ten[4] = {10, 0, 0, 0};
    static const unsigned char lo6[16] = {[15] = 1};
    static const unsigned char doc[16] = {0x20, 0x01, 0x0d, 0xb8, 0x80};
    static const unsigned char rfc1918[4] = {172, 16, 0, 0};
    /* Host bits past the prefix are cleared. */
    SW_CHECK(memcmp(cfg->trusted[0].addr, ten, 4) == 0);
    SW_CHECK_INT_EQ(cfg->trusted[0].prefix, 8);
    SW_CHECK_INT_EQ(cfg->trusted[1].prefix, 0);
    SW_CHECK_INT_EQ(cfg->trusted[2].family, AF_INET6);
    SW_CHECK_INT_EQ(cfg->trusted[2].prefix, 128);
    SW_CHECK(memcmp(cfg->trusted[2].addr, lo6, 16) == 0);
    SW_CHECK_INT_EQ(cfg->trusted[3].prefix, 33);
    SW_CHECK(memcmp(cfg->trusted[3].addr, doc, 16) == 0);
    SW_CHECK(memcmp(cfg->trusted[4].addr, rfc1918, 4) == 0);
  }
  sw_config_free(cfg);

#define TRUSTED_ERR(arg, what)                        \
  PARSE_ERR(BASE "client\n  trusted_proxy " arg "\n", \
            "conf:6: trusted_proxy: " what " '" arg "'")
  TRUSTED_ERR("10.0.0.0/33", "invalid prefix length");
  TRUSTED_ERR("::/129", "invalid prefix length");
  TRUSTED_ERR("10.0.0.0/", "invalid prefix length");
  TRUSTED_ERR("10.0.0.0/8x", "invalid prefix length");
  TRUSTED_ERR("10.0.0.0/-1", "invalid prefix length");
  TRUSTED_ERR("/8", "invalid address");
  TRUSTED_ERR("proxy.example", "invalid address");
  TRUSTED_ERR("10.0.0/8", "invalid address");
  TRUSTED_ERR("[::1]", "invalid address");
  TRUSTED_ERR("10.0.0.1:80", "invalid address");
#undef TRUSTED_ERR
}

static int trusted_v4(const sw_config_t *cfg, const char *ip) {
  struct sockaddr_in sin;

  memset(&sin, 0, sizeof(sin));
  sin.sin_family = AF_INET;
  sin.sin_port = htons(40000);
  if (inet_pton(AF_INET, ip, &sin.sin_addr) != 1)
    return -1;
  return sw_config_trusted(cfg, (const struct sockaddr *)&sin);
}

static int trusted_v6(const sw_config_t *cfg, const char *ip) {
  struct sockaddr_in6 sin6;

  memset(&sin6, 0, sizeof(sin6));
  sin6.sin6_family = AF_INET6;
  sin6.sin6_port = htons(40000);
  if (inet_pton(AF_INET6, ip, &sin6.sin6_addr) != 1)
    return -1;
  return sw_config_trusted(cfg, (const struct sockaddr *)&sin6);
}

static void test_trusted_match(void) {
  struct sockaddr_un sun;
  sw_config_t *cfg;

  cfg = PARSE_OK(BASE
                 "client\n"
                 "  trusted_proxy 192.168.1.7/32\n"
                 "  trusted_proxy 172.16.0.0/12\n"
                 "  trusted_proxy 10.9.9.9/31\n"
                 "  trusted_proxy 2001:db8::/32\n"
                 "  trusted_proxy fe80::1\n");
  if (cfg == NULL)
    return;
  /* /32: the one host. */
  SW_CHECK_INT_EQ(trusted_v4(cfg, "192.168.1.7"), 1);
  SW_CHECK_INT_EQ(trusted_v4(cfg, "192.168.1.6"), 0);
  SW_CHECK_INT_EQ(trusted_v4(cfg, "192.168.1.8"), 0);
  /* /12 ends mid-byte: 172.16.0.0 to 172.31.255.255. */
  SW_CHECK_INT_EQ(trusted_v4(cfg, "172.16.0.0"), 1);
  SW_CHECK_INT_EQ(trusted_v4(cfg, "172.31.255.255"), 1);
  SW_CHECK_INT_EQ(trusted_v4(cfg, "172.32.0.0"), 0);
  SW_CHECK_INT_EQ(trusted_v4(cfg, "172.15.255.255"), 0);
  /* /31 with a host bit set in the config: 10.9.9.8 and 10.9.9.9. */
  SW_CHECK_INT_EQ(trusted_v4(cfg, "10.9.9.8"), 1);
  SW_CHECK_INT_EQ(trusted_v4(cfg, "10.9.9.9"), 1);
  SW_CHECK_INT_EQ(trusted_v4(cfg, "10.9.9.10"), 0);
  SW_CHECK_INT_EQ(trusted_v4(cfg, "127.0.0.1"), 0);
  /* IPv6 ranges and hosts. */
  SW_CHECK_INT_EQ(trusted_v6(cfg, "2001:db8::1"), 1);
  SW_CHECK_INT_EQ(trusted_v6(cfg, "2001:db8:ffff:ffff::"), 1);
  SW_CHECK_INT_EQ(trusted_v6(cfg, "2001:db9::"), 0);
  SW_CHECK_INT_EQ(trusted_v6(cfg, "fe80::1"), 1);
  SW_CHECK_INT_EQ(trusted_v6(cfg, "fe80::2"), 0);
  SW_CHECK_INT_EQ(trusted_v6(cfg, "::1"), 0);
  /* A dual-stack listener sees IPv4 peers as v4-mapped IPv6. */
  SW_CHECK_INT_EQ(trusted_v6(cfg, "::ffff:192.168.1.7"), 1);
  SW_CHECK_INT_EQ(trusted_v6(cfg, "::ffff:192.168.1.8"), 0);
  /* Neither family matches the other's ranges. */
  SW_CHECK_INT_EQ(trusted_v6(cfg, "::c0a8:107"), 0); /* v4-compatible */
  /* Other families and NULLs are never trusted. */
  memset(&sun, 0, sizeof(sun));
  sun.sun_family = AF_UNIX;
  SW_CHECK_INT_EQ(sw_config_trusted(cfg, (const struct sockaddr *)&sun), 0);
  SW_CHECK_INT_EQ(sw_config_trusted(cfg, NULL), 0);
  SW_CHECK_INT_EQ(sw_config_trusted(NULL, (const struct sockaddr *)&sun), 0);
  sw_config_free(cfg);

  /* /0 matches every address of its family and no other. */
  cfg = PARSE_OK(BASE "client\n  trusted_proxy 0.0.0.0/0\n");
  if (cfg != NULL) {
    SW_CHECK_INT_EQ(trusted_v4(cfg, "1.2.3.4"), 1);
    SW_CHECK_INT_EQ(trusted_v4(cfg, "255.255.255.255"), 1);
    SW_CHECK_INT_EQ(trusted_v6(cfg, "::ffff:1.2.3.4"), 1);
    SW_CHECK_INT_EQ(trusted_v6(cfg, "2001:db8::1"), 0);
  }
  sw_config_free(cfg);
  cfg = PARSE_OK(BASE "client\n  trusted_proxy ::/0\n");
  if (cfg != NULL) {
    SW_CHECK_INT_EQ(trusted_v6(cfg, "2001:db8::1"), 1);
    SW_CHECK_INT_EQ(trusted_v6(cfg, "::"), 1);
    SW_CHECK_INT_EQ(trusted_v4(cfg, "1.2.3.4"), 0);
  }
  sw_config_free(cfg);

  /* No trusted_proxy at all: nobody is trusted. */
  cfg = PARSE_OK(BASE);
  if (cfg != NULL) {
    SW_CHECK_INT_EQ(trusted_v4(cfg, "127.0.0.1"), 0);
    SW_CHECK_INT_EQ(trusted_v6(cfg, "::1"), 0);
  }
  sw_config_free(cfg);
}

static void test_comments_and_quotes(void) {
  static const char text[] =
      "# a comment before any section\n"
      "\n"
      "   # an indented comment\n"
      "global # a comment after a section keyword\n"
      "\terror_log \"/tmp/a dir/error.log\"  # spaces inside quotes\n"
      "  access_log \"/tmp/#not-a-comment\"\n"
      "  pid_file \"/tmp/q\\\"uote\\\\d\"\n"
      "  log_level w\"ar\"n\n"
      "  shutdown_timeout 5s#glued comment\n"
      "listen\r\n"
      "  bind 127.0.0.1:8080\r\n"
      "\"upstream\" blue\n"
      "  server 127.0.0.1:9001 # the only server\n"
      "   \t  \n"
      "# trailing comment without newline";
  sw_config_t *cfg = PARSE_OK(text);

  if (cfg == NULL)
    return;
  SW_CHECK_STR_EQ(cfg->error_log, "/tmp/a dir/error.log");
  SW_CHECK_STR_EQ(cfg->access_log, "/tmp/#not-a-comment");
  SW_CHECK_STR_EQ(cfg->pid_file, "/tmp/q\"uote\\d");
  SW_CHECK_INT_EQ(cfg->log_level, SW_LOG_WARN);
  SW_CHECK_UINT_EQ(cfg->shutdown_timeout_ms, 5000);
  if (SW_CHECK_UINT_EQ(cfg->nbinds, 1))
    SW_CHECK_INT_EQ(cfg->binds[0].line, 11);
  SW_CHECK_INT_EQ(cfg->upstream[SW_BLUE].line, 12);
  sw_config_free(cfg);

  /* A section keyword may be indented; a directive need not be. */
  cfg = PARSE_OK(
      "  listen\nbind 127.0.0.1:1\n\tupstream blue\nserver "
      "127.0.0.1:2\n");
  if (cfg != NULL)
    SW_CHECK_STR_EQ(cfg->upstream[SW_BLUE].servers[0].name, "127.0.0.1:2");
  sw_config_free(cfg);

  /* A backslash outside quotes, or before another character, is literal. */
  cfg = PARSE_OK(BASE "global\n  error_log C:\\log\n  pid_file \"a\\b\"\n");
  if (cfg != NULL) {
    SW_CHECK_STR_EQ(cfg->error_log, "C:\\log");
    SW_CHECK_STR_EQ(cfg->pid_file, "a\\b");
  }
  sw_config_free(cfg);

  PARSE_ERR(BASE "global\n  pid_file \"/run/x.pid\n",
            "conf:6: unterminated quoted string");
  PARSE_ERR(BASE "global\n  pid_file /run/x\"\n",
            "conf:6: unterminated quoted string");
}

static void test_errors(void) {
  /* Sections. */
  PARSE_ERR("frontend web\n", "conf:1: unknown section keyword 'frontend'");
  PARSE_ERR("# c\nbind 127.0.0.1:80\n",
            "conf:2: directive 'bind' outside any section");
  PARSE_ERR("upstream red\n",
            "conf:1: upstream: unknown colour 'red' (expected blue or green)");
  PARSE_ERR("upstream Blue\n",
            "conf:1: upstream: unknown colour 'Blue' (expected blue or green)");
  PARSE_ERR("upstream\n",
            "conf:1: upstream: expected a colour (blue or green)");
  PARSE_ERR("upstream blue green\n",
            "conf:1: upstream: expected 1 argument, got 2");
  PARSE_ERR(BASE "upstream blue\n",
            "conf:5: duplicate section 'upstream blue' (first at line 3)");
  PARSE_ERR(BASE "upstream green\nupstream green\n",
            "conf:6: duplicate section 'upstream green' (first at line 5)");
  PARSE_ERR(BASE "global all\n",
            "conf:5: global: expected no arguments, got 1");
  PARSE_ERR(BASE "client x y\n",
            "conf:5: client: expected no arguments, got 2");
  PARSE_ERR(BASE "listen 80\n", "conf:5: listen: expected no arguments, got 1");

  /* Unknown directives name the section; a directive from another section
   * says where it belongs. */
  PARSE_ERR(BASE "listen\n  bnd 127.0.0.1:81\n",
            "conf:6: unknown directive 'bnd' in section 'listen'");
  PARSE_ERR(BASE "  bnd 127.0.0.1:81\n",
            "conf:5: unknown directive 'bnd' in section 'upstream blue'");
  PARSE_ERR(BASE "client\n  bind 127.0.0.1:81\n",
            "conf:6: unknown directive 'bind' in section 'client' (it belongs "
            "in section 'listen' or 'admin')");
  PARSE_ERR(BASE "global\n  server 127.0.0.1:81\n",
            "conf:6: unknown directive 'server' in section 'global' (it "
            "belongs in section 'upstream')");
  PARSE_ERR(BASE "upstream green\n  header_timeout 1s\n",
            "conf:6: unknown directive 'header_timeout' in section 'upstream "
            "green' (it belongs in section 'client')");
  PARSE_ERR(BASE "global\n  Live blue\n",
            "conf:6: unknown directive 'Live' in section 'global'");

  /* Argument counts. */
  PARSE_ERR(BASE "client\n  header_timeout\n",
            "conf:6: header_timeout: expected 1 argument, got 0");
  PARSE_ERR(BASE "client\n  header_timeout 1s 2s\n",
            "conf:6: header_timeout: expected 1 argument, got 2");
  PARSE_ERR(BASE "  server\n", "conf:5: server: expected 1 argument, got 0");
  PARSE_ERR(BASE "listen\n  bind a b c d e f g h i j\n",
            "conf:6: bind: expected 1 argument, got 10");

  /* Bad values name the directive and quote the value. */
  PARSE_ERR(BASE "client\n  header_timeout 10x\n",
            "conf:6: header_timeout: invalid duration '10x'");
  PARSE_ERR(BASE "global\n  live purple\n",
            "conf:6: live: expected blue or green, got 'purple'");
  PARSE_ERR(BASE "global\n  log_level verbose\n",
            "conf:6: log_level: expected debug, info, warn or error, got "
            "'verbose'");
  PARSE_ERR(BASE "global\n  error_log off\n",
            "conf:6: error_log: cannot be turned off (use a path or stderr), "
            "got 'off'");
  PARSE_ERR(BASE "global\n  pid_file \"\"\n",
            "conf:6: pid_file: empty path ''");
  PARSE_ERR(BASE "global\n  access_log \"\"\n",
            "conf:6: access_log: empty path ''");

  /* Single-valued directives: once per file, once per upstream colour. */
  PARSE_ERR(BASE "client\n  header_timeout 1s\n  header_timeout 2s\n",
            "conf:7: duplicate directive 'header_timeout' (first set at line "
            "6)");
  PARSE_ERR(BASE "client\n  max_url 1k\nclient\n  max_url 2k\n",
            "conf:8: duplicate directive 'max_url' (first set at line 6)");
  PARSE_ERR("global\n  live blue\nglobal\n  live blue\n",
            "conf:4: duplicate directive 'live' (first set at line 2)");
  PARSE_ERR(BASE "  max_idle 1\n  max_idle 1\n",
            "conf:6: duplicate directive 'max_idle' (first set at line 5)");
  PARSE_ERR(BASE
            "  idle_timeout 1s\nclient\n  idle_timeout 1s\n"
            "  idle_timeout 2s\n",
            "conf:8: duplicate directive 'idle_timeout' (first set at line "
            "7)");

  /* Other line-level errors. */
  {
    static const char nul[] = BASE "global\n  live b\0lue\n";
    char err[128] = "";
    sw_config_t *cfg = NULL;
    SW_CHECK_INT_EQ(
        sw_config_parse("conf", nul, sizeof(nul) - 1, &cfg, err, sizeof(err)),
        SW_ECONFIG);
    SW_CHECK(cfg == NULL);
    SW_CHECK_STR_EQ(err, "conf:6: NUL byte in line");
  }
}

static void test_validation(void) {
  sw_config_t *cfg;

  /* No bind: the end of the file, whether or not it ends in a newline. */
  PARSE_ERR("upstream blue\n  server 127.0.0.1:1\n",
            "conf:2: no bind: at least one 'listen' section with a 'bind' is "
            "required");
  PARSE_ERR("upstream blue\n  server 127.0.0.1:1\n# end",
            "conf:3: no bind: at least one 'listen' section with a 'bind' is "
            "required");
  PARSE_ERR("listen\nupstream blue\n  server 127.0.0.1:1\n",
            "conf:3: no bind: at least one 'listen' section with a 'bind' is "
            "required");
  PARSE_ERR("",
            "conf:1: no bind: at least one 'listen' section with a 'bind' "
            "is required");

  /* The live colour needs a server: point at `live`, else at the section,
   * else at the end of the file. */
  PARSE_ERR(BASE "global\n  live green\nupstream green\n",
            "conf:6: live: colour 'green' has no server (add a 'server' to "
            "section 'upstream green')");
  PARSE_ERR(
      "listen\n  bind 127.0.0.1:1\nupstream blue\n  max_idle 1\n"
      "upstream green\n  server 127.0.0.1:2\n",
      "conf:3: live: colour 'blue' has no server (add a 'server' to "
      "section 'upstream blue')");
  PARSE_ERR(
      "listen\n  bind 127.0.0.1:1\nupstream green\n"
      "  server 127.0.0.1:2\n",
      "conf:4: live: colour 'blue' has no server (add a 'server' to "
      "section 'upstream blue')");
  /* ...but the colour that is not live may be empty or absent. */
  cfg = PARSE_OK(BASE "upstream green\n");
  if (cfg != NULL)
    SW_CHECK_INT_EQ(cfg->upstream[SW_GREEN].line, 5);
  sw_config_free(cfg);
  cfg = PARSE_OK(
      "listen\n  bind 127.0.0.1:1\nglobal\n  live green\n"
      "upstream green\n  server 127.0.0.1:2\nupstream blue\n");
  if (cfg != NULL)
    SW_CHECK_INT_EQ(cfg->live, SW_GREEN);
  sw_config_free(cfg);

  /* Buffers must fit the budget; point at the buffer, else at the budget. */
  PARSE_ERR(BASE "client\n  request_buffer 2m\nglobal\n  buffer_budget 1m\n",
            "conf:6: request_buffer: 2097152 bytes is larger than "
            "buffer_budget (1048576 bytes)");
  PARSE_ERR(BASE "client\n  response_buffer 300m\n",
            "conf:6: response_buffer: 314572800 bytes is larger than "
            "buffer_budget (268435456 bytes)");
  PARSE_ERR(BASE "global\n  buffer_budget 512k\n",
            "conf:6: request_buffer: 1048576 bytes is larger than "
            "buffer_budget (524288 bytes)");
  cfg = PARSE_OK(BASE "global\n  buffer_budget 1m\n");
  if (cfg != NULL)
    SW_CHECK_UINT_EQ(cfg->buffer_budget, MIB);
  sw_config_free(cfg);

  PARSE_ERR(BASE "client\n  max_header_size 512\n",
            "conf:6: max_header_size: '512' is below the minimum of 1024");
}

/* Every directive of the control plane (health, requirements, database,
 * cutover, admin), none at its default; blue keeps most health defaults so
 * that the colours are seen to be independent. */
static const char full_control_conf[] =
    "listen\n"                                           /* 1 */
    "  bind 127.0.0.1:8080\n"                            /* 2 */
    "upstream green\n"                                   /* 3 */
    "  server 127.0.0.1:9101\n"                          /* 4 */
    "  health off\n"                                     /* 5 */
    "  health_path \"/healthz?full=1\"\n"                /* 6 */
    "  health_host app.example.com:8000\n"               /* 7 */
    "  health_status 200-204\n"                          /* 8 */
    "  health_body \"\\\"status\\\": \\\"ok\\\"\"\n"     /* 9 */
    "  health_interval 10s\n"                            /* 10 */
    "  health_timeout 2500ms\n"                          /* 11 */
    "  health_rise 2\n"                                  /* 12 */
    "  health_fall 5\n"                                  /* 13 */
    "  require_migration accounts 0042_rename_email\n"   /* 14 */
    "  require_column public.accounts_user email_addr\n" /* 15 */
    "  require_query \"SELECT count(*) > 0 FROM t\"\n"   /* 16 */
    "  require_migration billing 0007_invoice\n"         /* 17 */
    "upstream blue\n"                                    /* 18 */
    "  server 127.0.0.1:9001\n"                          /* 19 */
    "  health_status 204\n"                              /* 20 */
    "  require_column billing.invoice total\n"           /* 21 */
    "database\n"                                         /* 22 */
    "  dsn \"host=127.0.0.1 port=5432 dbname=app\"\n"    /* 23 */
    "  connect_timeout 3s\n"                             /* 24 */
    "  statement_timeout 2s\n"                           /* 25 */
    "  lock_timeout 500ms\n"                             /* 26 */
    "cutover\n"                                          /* 27 */
    "  gate_timeout 5m\n"                                /* 28 */
    "  drain_timeout 45s\n"                              /* 29 */
    "  state_file /var/lib/switchd/state.json\n"         /* 30 */
    "  history 200\n"                                    /* 31 */
    "admin\n"                                            /* 32 */
    "  socket /tmp/switchd.sock\n"                       /* 33 */
    "  allow_uid 1000\n"                                 /* 34 */
    "  allow_uid 0\n"                                    /* 35 */
    "  allow_uid 4294967294\n"                           /* 36 */
    "  bind [::1]:9900\n"                                /* 37 */
    "  token_file /etc/switchd/token\n"                  /* 38 */
    "  metrics_open yes\n";                              /* 39 */

static void check_require_at(const char *file,
                             int line,
                             const sw_require_t *r,
                             sw_require_kind_t kind,
                             const char *a,
                             const char *b,
                             int at) {
  SW_CHECK_INT_EQ_AT(file, line, r->kind, kind);
  SW_CHECK_STR_EQ_AT(file, line, r->a, a);
  SW_CHECK_STR_EQ_AT(file, line, r->b, b);
  SW_CHECK_INT_EQ_AT(file, line, r->line, at);
}
#define CHECK_REQUIRE(r, kind, a, b, at) \
  check_require_at(__FILE__, __LINE__, r, kind, a, b, at)

static void test_full_control(void) {
  const sw_upstream_conf_t *blue, *green;
  sw_config_t *cfg = PARSE_OK(full_control_conf);

  if (cfg == NULL)
    return;
  green = &cfg->upstream[SW_GREEN];
  SW_CHECK_INT_EQ(green->health.enabled, 0);
  SW_CHECK_STR_EQ(green->health.path, "/healthz?full=1");
  SW_CHECK_STR_EQ(green->health.host, "app.example.com:8000");
  SW_CHECK_INT_EQ(green->health.status_min, 200);
  SW_CHECK_INT_EQ(green->health.status_max, 204);
  SW_CHECK_STR_EQ(green->health.body, "\"status\": \"ok\"");
  SW_CHECK_UINT_EQ(green->health.interval_ms, 10000);
  SW_CHECK_UINT_EQ(green->health.timeout_ms, 2500);
  SW_CHECK_UINT_EQ(green->health.rise, 2);
  SW_CHECK_UINT_EQ(green->health.fall, 5);
  /* Requirements keep their order, kinds and lines. */
  if (SW_CHECK_UINT_EQ(green->nrequires, 4)) {
    CHECK_REQUIRE(&green->requires[0], SW_REQUIRE_MIGRATION, "accounts",
                  "0042_rename_email", 14);
    CHECK_REQUIRE(&green->requires[1], SW_REQUIRE_COLUMN,
                  "public.accounts_user", "email_addr", 15);
    CHECK_REQUIRE(&green->requires[2], SW_REQUIRE_QUERY,
                  "SELECT count(*) > 0 FROM t", NULL, 16);
    CHECK_REQUIRE(&green->requires[3], SW_REQUIRE_MIGRATION, "billing",
                  "0007_invoice", 17);
  }

  blue = &cfg->upstream[SW_BLUE];
  SW_CHECK_INT_EQ(blue->health.enabled, 1);
  SW_CHECK_STR_EQ(blue->health.path, "/health/detailed/");
  SW_CHECK(blue->health.host == NULL);
  SW_CHECK_INT_EQ(blue->health.status_min, 204);
  SW_CHECK_INT_EQ(blue->health.status_max, 204);
  SW_CHECK(blue->health.body == NULL);
  SW_CHECK_UINT_EQ(blue->health.interval_ms, 2000);
  SW_CHECK_UINT_EQ(blue->health.timeout_ms, 1000);
  SW_CHECK_UINT_EQ(blue->health.rise, 3);
  SW_CHECK_UINT_EQ(blue->health.fall, 3);
  if (SW_CHECK_UINT_EQ(blue->nrequires, 1))
    CHECK_REQUIRE(&blue->requires[0], SW_REQUIRE_COLUMN, "billing.invoice",
                  "total", 21);

  SW_CHECK_STR_EQ(cfg->database.dsn, "host=127.0.0.1 port=5432 dbname=app");
  SW_CHECK_UINT_EQ(cfg->database.connect_timeout_ms, 3000);
  SW_CHECK_UINT_EQ(cfg->database.statement_timeout_ms, 2000);
  SW_CHECK_UINT_EQ(cfg->database.lock_timeout_ms, 500);
  SW_CHECK_INT_EQ(cfg->database.line, 22);

  SW_CHECK_UINT_EQ(cfg->cutover.gate_timeout_ms, 300000);
  SW_CHECK_UINT_EQ(cfg->cutover.drain_timeout_ms, 45000);
  SW_CHECK_STR_EQ(cfg->cutover.state_file, "/var/lib/switchd/state.json");
  SW_CHECK_UINT_EQ(cfg->cutover.history, 200);

  SW_CHECK_STR_EQ(cfg->admin.socket, "/tmp/switchd.sock");
  if (SW_CHECK_UINT_EQ(cfg->admin.nallow_uids, 3)) {
    SW_CHECK_UINT_EQ(cfg->admin.allow_uids[0], 1000);
    SW_CHECK_UINT_EQ(cfg->admin.allow_uids[1], 0);
    SW_CHECK_UINT_EQ(cfg->admin.allow_uids[2], 4294967294u);
  }
  SW_CHECK_INT_EQ(cfg->admin.has_bind, 1);
  SW_CHECK_STR_EQ(cfg->admin.bind.name, "[::1]:9900");
  SW_CHECK_INT_EQ(cfg->admin.bind.line, 37);
  CHECK_V6(&cfg->admin.bind.addr, "::1", 9900);
  SW_CHECK_STR_EQ(cfg->admin.token_file, "/etc/switchd/token");
  SW_CHECK_INT_EQ(cfg->admin.metrics_open, 1);
  /* The listen bind is not the admin one: same name, other section. */
  if (SW_CHECK_UINT_EQ(cfg->nbinds, 1))
    SW_CHECK_STR_EQ(cfg->binds[0].name, "127.0.0.1:8080");
  sw_config_free(cfg);
}

static void test_control_values(void) {
  static const value_case_t cases[] = {
      {"upstream green", "health_interval", "5s", 5000, NULL},
      {"upstream green", "health_interval", "1001ms", 1001, NULL},
      {"upstream green", "health_interval", "0", 0,
       "health_interval: must be greater than 0, got '0'"},
      {"upstream green", "health_interval", "2x", 0,
       "health_interval: invalid duration '2x'"},
      /* The default timeout (1s) must stay below the interval. */
      {"upstream green", "health_interval", "1s", 0,
       "health_interval: 1000ms must be greater than health_timeout "
       "(1000ms)"},
      {"upstream green", "health_interval", "500ms", 0,
       "health_interval: 500ms must be greater than health_timeout "
       "(1000ms)"},
      {"upstream green", "health_timeout", "1999ms", 1999, NULL},
      {"upstream green", "health_timeout", "1ms", 1, NULL},
      {"upstream green", "health_timeout", "2s", 0,
       "health_timeout: 2000ms must be less than health_interval (2000ms)"},
      {"upstream green", "health_timeout", "1m", 0,
       "health_timeout: 60000ms must be less than health_interval "
       "(2000ms)"},
      {"upstream green", "health_timeout", "0ms", 0,
       "health_timeout: must be greater than 0, got '0ms'"},
      {"upstream green", "health_rise", "1", 1, NULL},
      {"upstream green", "health_rise", "10", 10, NULL},
      {"upstream green", "health_rise", "0", 0,
       "health_rise: must be greater than 0, got '0'"},
      {"upstream green", "health_rise", "3s", 0,
       "health_rise: invalid number '3s'"},
      {"upstream green", "health_rise", "4294967296", 0,
       "health_rise: value too large '4294967296'"},
      {"upstream green", "health_fall", "1", 1, NULL},
      {"upstream green", "health_fall", "0", 0,
       "health_fall: must be greater than 0, got '0'"},
      {"upstream green", "health_fall", "-1", 0,
       "health_fall: invalid number '-1'"},
      {"database", "connect_timeout", "10s", 10000, NULL},
      {"database", "connect_timeout", "0", 0,
       "connect_timeout: must be greater than 0, got '0'"},
      {"database", "statement_timeout", "30s", 30000, NULL},
      /* PostgreSQL's timeouts are int milliseconds. */
      {"database", "statement_timeout", "2147483647ms", 2147483647, NULL},
      {"database", "statement_timeout", "2147483648ms", 0,
       "statement_timeout: value too large '2147483648ms'"},
      {"database", "statement_timeout", "597h", 0,
       "statement_timeout: value too large '597h'"},
      {"database", "statement_timeout", "0s", 0,
       "statement_timeout: must be greater than 0, got '0s'"},
      {"database", "lock_timeout", "250ms", 250, NULL},
      {"database", "lock_timeout", "596h", 2145600000, NULL},
      {"database", "lock_timeout", "0", 0,
       "lock_timeout: must be greater than 0, got '0'"},
      {"database", "lock_timeout", "1 s", 0,
       "lock_timeout: expected 1 argument, got 2"},
      {"cutover", "gate_timeout", "30m", 1800000, NULL},
      {"cutover", "gate_timeout", "1h", 3600000, NULL},
      {"cutover", "gate_timeout", "0", 0,
       "gate_timeout: must be greater than 0, got '0'"},
      {"cutover", "drain_timeout", "5s", 5000, NULL},
      {"cutover", "drain_timeout", "forever", 0,
       "drain_timeout: invalid duration 'forever'"},
      {"cutover", "history", "0", 0, NULL},
      {"cutover", "history", "1", 1, NULL},
      {"cutover", "history", "10000", 10000, NULL},
      {"cutover", "history", "10001", 0, "history: value too large '10001'"},
      {"cutover", "history", "1k", 0, "history: invalid number '1k'"},
  };

  RUN_VALUE_CASES(cases);
}

/* The hold barrier's directives: how long and how many requests a hold
 * may keep, and the reverse migration a rollback may run under one. */
static void test_cutover_hold(void) {
  static const value_case_t cases[] = {
      {"cutover", "hold_max", "2s", 2000, NULL},
      {"cutover", "hold_max", "1ms", 1, NULL},
      {"cutover", "hold_max", "500ms", 500, NULL},
      {"cutover", "hold_max", "30", 30000, NULL},
      {"cutover", "hold_max", "1h", 3600000, NULL},
      {"cutover", "hold_max", "60m", 3600000, NULL},
      {"cutover", "hold_max", "3600s", 3600000, NULL},
      {"cutover", "hold_max", "0", 0,
       "hold_max: must be greater than 0, got '0'"},
      {"cutover", "hold_max", "0ms", 0,
       "hold_max: must be greater than 0, got '0ms'"},
      {"cutover", "hold_max", "3600001ms", 0,
       "hold_max: must be at most 1h, got '3600001ms'"},
      {"cutover", "hold_max", "61m", 0,
       "hold_max: must be at most 1h, got '61m'"},
      {"cutover", "hold_max", "2h", 0,
       "hold_max: must be at most 1h, got '2h'"},
      {"cutover", "hold_max", "99999999999999999999", 0,
       "hold_max: value too large '99999999999999999999'"},
      {"cutover", "hold_max", "2x", 0, "hold_max: invalid duration '2x'"},
      {"cutover", "hold_max", "-1s", 0, "hold_max: invalid duration '-1s'"},
      {"cutover", "hold_max", "1 s", 0, "hold_max: expected 1 argument, got 2"},
      {"cutover", "hold_queue", "1", 1, NULL},
      {"cutover", "hold_queue", "2000", 2000, NULL},
      {"cutover", "hold_queue", "1000000", 1000000, NULL},
      {"cutover", "hold_queue", "0", 0,
       "hold_queue: must be greater than 0, got '0'"},
      {"cutover", "hold_queue", "1000001", 0,
       "hold_queue: value too large '1000001'"},
      {"cutover", "hold_queue", "99999999999999999999", 0,
       "hold_queue: value too large '99999999999999999999'"},
      {"cutover", "hold_queue", "1k", 0, "hold_queue: invalid number '1k'"},
      {"cutover", "hold_queue", "-1", 0, "hold_queue: invalid number '-1'"},
      {"cutover", "rollback_migrate_timeout", "60s", 60000, NULL},
      {"cutover", "rollback_migrate_timeout", "5m", 300000, NULL},
      {"cutover", "rollback_migrate_timeout", "250ms", 250, NULL},
      {"cutover", "rollback_migrate_timeout", "0", 0,
       "rollback_migrate_timeout: must be greater than 0, got '0'"},
      {"cutover", "rollback_migrate_timeout", "soon", 0,
       "rollback_migrate_timeout: invalid duration 'soon'"},
  };
  sw_config_t *cfg;

  RUN_VALUE_CASES(cases);

  /* All four together, in a repeated section, leave the rest alone. */
  cfg = PARSE_OK(BASE
                 "cutover\n"
                 "  hold_max 5s\n"
                 "  hold_queue 10\n"
                 "cutover\n"
                 "  rollback_migrate \"./manage.py migrate shop 0041\"\n"
                 "  rollback_migrate_timeout 2m\n");
  if (cfg != NULL) {
    SW_CHECK_UINT_EQ(cfg->cutover.hold_max_ms, 5000);
    SW_CHECK_UINT_EQ(cfg->cutover.hold_queue, 10);
    SW_CHECK_STR_EQ(cfg->cutover.rollback_migrate,
                    "./manage.py migrate shop 0041");
    SW_CHECK_UINT_EQ(cfg->cutover.rollback_migrate_timeout_ms, 120000);
    SW_CHECK_UINT_EQ(cfg->cutover.gate_timeout_ms, 600000);
    SW_CHECK_UINT_EQ(cfg->cutover.history, 50);
  }
  sw_config_free(cfg);

  /* The command is kept as written, for /bin/sh -c: spaces, shell
   * operators, '#' and escaped quotes inside the quotes. */
  cfg = PARSE_OK(BASE
                 "cutover\n"
                 "  rollback_migrate \"cd /srv/app  &&  ./manage.py migrate "
                 "shop 0041 --noinput 2>&1 | tee -a /tmp/m#1.log; echo "
                 "\\\"done\\\"\"  # the way back\n");
  if (cfg != NULL)
    SW_CHECK_STR_EQ(cfg->cutover.rollback_migrate,
                    "cd /srv/app  &&  ./manage.py migrate shop 0041 "
                    "--noinput 2>&1 | tee -a /tmp/m#1.log; echo \"done\"");
  sw_config_free(cfg);
  /* A single word needs no quotes. */
  cfg = PARSE_OK(BASE "cutover\n  rollback_migrate /usr/local/bin/unmigrate\n");
  if (cfg != NULL)
    SW_CHECK_STR_EQ(cfg->cutover.rollback_migrate, "/usr/local/bin/unmigrate");
  sw_config_free(cfg);

  /* An empty command, a command in pieces, none at all. */
  PARSE_ERR(BASE "cutover\n  rollback_migrate \"\"\n",
            "conf:6: rollback_migrate: empty command ''");
  PARSE_ERR(BASE "cutover\n  rollback_migrate ./manage.py migrate shop 0041\n",
            "conf:6: rollback_migrate: expected 1 argument, got 4");
  PARSE_ERR(BASE "cutover\n  rollback_migrate\n",
            "conf:6: rollback_migrate: expected 1 argument, got 0");
  /* Once per file, like every directive. */
  PARSE_ERR(BASE
            "cutover\n  rollback_migrate a\ncutover\n"
            "  rollback_migrate b\n",
            "conf:8: duplicate directive 'rollback_migrate' (first set at "
            "line 6)");
  PARSE_ERR(BASE "cutover\n  hold_max 1s\n  hold_max 2s\n",
            "conf:7: duplicate directive 'hold_max' (first set at line 6)");
  PARSE_ERR(BASE "cutover\n  hold_queue 1\n  hold_queue 2\n",
            "conf:7: duplicate directive 'hold_queue' (first set at line 6)");
  /* They belong in cutover. */
  PARSE_ERR(BASE "  hold_max 5s\n",
            "conf:5: unknown directive 'hold_max' in section 'upstream blue' "
            "(it belongs in section 'cutover')");
  PARSE_ERR(BASE "watch\n  rollback_migrate x\n",
            "conf:6: unknown directive 'rollback_migrate' in section 'watch' "
            "(it belongs in section 'cutover')");
}

/* health_status forms, and the statuses a check may never pass on. */
static void test_health_status(void) {
  static const struct {
    const char *arg;
    int lo, hi;
    const char *err; /* after "conf:6: health_status: " */
  } cases[] = {
      {"200", 200, 200, NULL},
      {"204", 204, 204, NULL},
      {"2xx", 200, 299, NULL},
      {"2XX", 200, 299, NULL},
      {"4xx", 400, 499, NULL},
      {"5xx", 500, 599, NULL},
      {"200-204", 200, 204, NULL},
      {"200-299", 200, 299, NULL},
      {"200-200", 200, 200, NULL},
      {"299", 299, 299, NULL},
      {"400-599", 400, 599, NULL},
      {"299-200", 0, 0, "empty range '299-200'"},
      {"3xx", 0, 0, "redirects (3xx) always fail a check, got '3xx'"},
      {"301", 0, 0, "redirects (3xx) always fail a check, got '301'"},
      {"200-300", 0, 0, "redirects (3xx) always fail a check, got '200-300'"},
      {"200-499", 0, 0, "redirects (3xx) always fail a check, got '200-499'"},
      {"399-400", 0, 0, "redirects (3xx) always fail a check, got '399-400'"},
      {"1xx", 0, 0, "statuses must be from 200 to 599, got '1xx'"},
      {"101", 0, 0, "statuses must be from 200 to 599, got '101'"},
      {"199-200", 0, 0, "statuses must be from 200 to 599, got '199-200'"},
      {"600", 0, 0, "statuses must be from 200 to 599, got '600'"},
      {"500-600", 0, 0, "statuses must be from 200 to 599, got '500-600'"},
      {"9xx", 0, 0, "statuses must be from 200 to 599, got '9xx'"},
      {"0", 0, 0, "statuses must be from 200 to 599, got '0'"},
#define SYNTAX \
  "expected a status (200), a range (200-299) or a class (2xx), got "
      {"ok", 0, 0, SYNTAX "'ok'"},
      {"2x", 0, 0, SYNTAX "'2x'"},
      {"2xxx", 0, 0, SYNTAX "'2xxx'"},
      {"0xx", 0, 0, SYNTAX "'0xx'"},
      {"x2x", 0, 0, SYNTAX "'x2x'"},
      {"200-", 0, 0, SYNTAX "'200-'"},
      {"-200", 0, 0, SYNTAX "'-200'"},
      {"200-299-300", 0, 0, SYNTAX "'200-299-300'"},
      {"2xx-4xx", 0, 0, SYNTAX "'2xx-4xx'"},
      {"200,204", 0, 0, SYNTAX "'200,204'"},
      {"1000", 0, 0, SYNTAX "'1000'"},
      {"99999999999999999999", 0, 0, SYNTAX "'99999999999999999999'"},
      {"\"\"", 0, 0, SYNTAX "''"},
#undef SYNTAX
  };
  size_t i;

  for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    char text[512], want[256];
    snprintf(text, sizeof(text), BASE "upstream green\n  health_status %s\n",
             cases[i].arg);
    if (cases[i].err == NULL) {
      sw_config_t *cfg = PARSE_OK(text);
      if (cfg == NULL)
        continue;
      if (!SW_CHECK_INT_EQ(cfg->upstream[SW_GREEN].health.status_min,
                           cases[i].lo) ||
          !SW_CHECK_INT_EQ(cfg->upstream[SW_GREEN].health.status_max,
                           cases[i].hi))
        printf("  case: %s\n", cases[i].arg);
      /* The other colour keeps the default. */
      SW_CHECK_INT_EQ(cfg->upstream[SW_BLUE].health.status_max, 299);
      sw_config_free(cfg);
    } else {
      snprintf(want, sizeof(want), "conf:6: health_status: %s", cases[i].err);
      PARSE_ERR(text, want);
    }
  }
  PARSE_ERR(BASE "  health_status 200 - 299\n",
            "conf:5: health_status: expected 1 argument, got 3");
}

static void test_health(void) {
  sw_config_t *cfg;

  cfg = PARSE_OK(BASE
                 "  health_path /\n"
                 "  health_host \"[::1]:8000\"\n"
                 "  health on\n"
                 "  health_body ok\n");
  if (cfg != NULL) {
    const sw_health_conf_t *h = &cfg->upstream[SW_BLUE].health;
    SW_CHECK_STR_EQ(h->path, "/");
    SW_CHECK_STR_EQ(h->host, "[::1]:8000");
    SW_CHECK_INT_EQ(h->enabled, 1);
    SW_CHECK_STR_EQ(h->body, "ok");
  }
  sw_config_free(cfg);
  cfg = PARSE_OK(BASE "  health_path \"/health/?verbose=1&x=%20\"\n");
  if (cfg != NULL)
    SW_CHECK_STR_EQ(cfg->upstream[SW_BLUE].health.path,
                    "/health/?verbose=1&x=%20");
  sw_config_free(cfg);

  /* The path is written into a request line as is. */
  PARSE_ERR(BASE "  health_path health/\n",
            "conf:5: health_path: must start with '/', got 'health/'");
  PARSE_ERR(BASE "  health_path http://app/health/\n",
            "conf:5: health_path: must start with '/', got "
            "'http://app/health/'");
  PARSE_ERR(BASE "  health_path \"\"\n",
            "conf:5: health_path: must start with '/', got ''");
  PARSE_ERR(BASE "  health_path \"/a b\"\n",
            "conf:5: health_path: invalid character in path '/a b'");
  PARSE_ERR(BASE "  health_path \"/a#b\"\n",
            "conf:5: health_path: invalid character in path '/a#b'");
  PARSE_ERR(BASE "  health_path \"/a\tb\"\n",
            "conf:5: health_path: invalid character in path '/a\tb'");
  PARSE_ERR(BASE "  health_path \"/caf\xc3\xa9\"\n",
            "conf:5: health_path: invalid character in path '/caf\xc3\xa9'");

  /* The Host header must stay one header. */
  PARSE_ERR(BASE "  health_host \"\"\n", "conf:5: health_host: empty host ''");
  PARSE_ERR(BASE "  health_host \"a b\"\n",
            "conf:5: health_host: invalid host 'a b'");
  PARSE_ERR(BASE "  health_host \"a\rX-Evil: 1\"\n",
            "conf:5: health_host: invalid host 'a\rX-Evil: 1'");
  PARSE_ERR(BASE "  health_host app/x\n",
            "conf:5: health_host: invalid host 'app/x'");
  PARSE_ERR(BASE "  health_host user@app\n",
            "conf:5: health_host: invalid host 'user@app'");

  PARSE_ERR(BASE "  health_body \"\"\n", "conf:5: health_body: empty value ''");

  /* Lengths the checker accepts, and one byte more. */
  {
    static const struct {
      const char *name;
      size_t max;
      char first;
    } limits[] = {
        {"health_path", SW_CONFIG_HEALTH_PATH_MAX, '/'},
        {"health_host", SW_CONFIG_HEALTH_HOST_MAX, 'h'},
        {"health_body", SW_CONFIG_HEALTH_BODY_MAX, 'b'},
    };
    static char text[8192], value[4096];
    char want[128];
    size_t i;

    for (i = 0; i < sizeof(limits) / sizeof(limits[0]); i++) {
      memset(value, 'a', limits[i].max + 1);
      value[0] = limits[i].first;
      value[limits[i].max] = '\0';
      snprintf(text, sizeof(text), BASE "  %s %s\n", limits[i].name, value);
      cfg = PARSE_OK(text);
      sw_config_free(cfg);
      value[limits[i].max] = 'a';
      value[limits[i].max + 1] = '\0';
      snprintf(text, sizeof(text), BASE "  %s %s\n", limits[i].name, value);
      snprintf(want, sizeof(want), "conf:5: %s: longer than %zu bytes",
               limits[i].name, limits[i].max);
      PARSE_ERR(text, want);
    }
  }
  PARSE_ERR(BASE "  health yes\n",
            "conf:5: health: expected on or off, got 'yes'");
  PARSE_ERR(BASE "  health On\n",
            "conf:5: health: expected on or off, got 'On'");
  PARSE_ERR(BASE "  health\n", "conf:5: health: expected 1 argument, got 0");
  PARSE_ERR(BASE "  health off\n  health on\n",
            "conf:6: duplicate directive 'health' (first set at line 5)");

  /* The timeout/interval check is per colour and points at what was
   * written: the timeout when both were, the section never. */
  PARSE_ERR(BASE "  health_timeout 3s\n",
            "conf:5: health_timeout: 3000ms must be less than "
            "health_interval (2000ms)");
  PARSE_ERR(BASE "  health_interval 5s\n  health_timeout 5s\n",
            "conf:6: health_timeout: 5000ms must be less than "
            "health_interval (5000ms)");
  PARSE_ERR(BASE "  health_timeout 5s\n  health_interval 5s\n",
            "conf:5: health_timeout: 5000ms must be less than "
            "health_interval (5000ms)");
  /* ...even with checks off: the values are still contradictory. */
  PARSE_ERR(BASE "upstream green\n  health off\n  health_interval 1s\n",
            "conf:7: health_interval: 1000ms must be greater than "
            "health_timeout (1000ms)");
  cfg = PARSE_OK(BASE
                 "  health_interval 500ms\n  health_timeout 499ms\n"
                 "upstream green\n  health_interval 20s\n"
                 "  health_timeout 10s\n");
  if (cfg != NULL) {
    SW_CHECK_UINT_EQ(cfg->upstream[SW_BLUE].health.interval_ms, 500);
    SW_CHECK_UINT_EQ(cfg->upstream[SW_BLUE].health.timeout_ms, 499);
    SW_CHECK_UINT_EQ(cfg->upstream[SW_GREEN].health.interval_ms, 20000);
    SW_CHECK_UINT_EQ(cfg->upstream[SW_GREEN].health.timeout_ms, 10000);
  }
  sw_config_free(cfg);
  /* Each colour may set each health directive once. */
  cfg = PARSE_OK(BASE "  health_rise 1\nupstream green\n  health_rise 7\n");
  if (cfg != NULL) {
    SW_CHECK_UINT_EQ(cfg->upstream[SW_BLUE].health.rise, 1);
    SW_CHECK_UINT_EQ(cfg->upstream[SW_GREEN].health.rise, 7);
  }
  sw_config_free(cfg);
  PARSE_ERR(BASE "  health_path /a\n  health_path /b\n",
            "conf:6: duplicate directive 'health_path' (first set at line "
            "5)");
}

#define DB "database\n  dsn \"dbname=app\"\n"

static void test_requires(void) {
  sw_config_t *cfg;

  /* Arity: migrations and columns are pairs, a query is one string. */
  PARSE_ERR(BASE "  require_migration accounts\n",
            "conf:5: require_migration: expected 2 arguments, got 1");
  PARSE_ERR(BASE "  require_migration\n",
            "conf:5: require_migration: expected 2 arguments, got 0");
  PARSE_ERR(BASE "  require_migration a b c\n",
            "conf:5: require_migration: expected 2 arguments, got 3");
  PARSE_ERR(BASE "  require_column users\n",
            "conf:5: require_column: expected 2 arguments, got 1");
  PARSE_ERR(BASE "  require_column a b c d e f g h i j\n",
            "conf:5: require_column: expected 2 arguments, got 10");
  PARSE_ERR(BASE "  require_query SELECT true\n",
            "conf:5: require_query: expected 1 argument, got 2");
  PARSE_ERR(BASE "  require_query\n",
            "conf:5: require_query: expected 1 argument, got 0");
  PARSE_ERR(BASE "  require_migration \"\" 0001_initial\n",
            "conf:5: require_migration: empty value ''");
  PARSE_ERR(BASE "  require_migration accounts \"\"\n",
            "conf:5: require_migration: empty value ''");
  PARSE_ERR(BASE "  require_column users \"\"\n",
            "conf:5: require_column: empty value ''");
  PARSE_ERR(BASE "  require_query \"\"\n",
            "conf:5: require_query: empty value ''");
  /* Requirements belong to a colour. */
  PARSE_ERR(BASE "client\n  require_query \"SELECT true\"\n",
            "conf:6: unknown directive 'require_query' in section 'client' "
            "(it belongs in section 'upstream')");

  /* A requirement needs a database; the first require line of the file is
   * the one named, whichever colour it is in. */
  PARSE_ERR(BASE "  require_column users email\n",
            "conf:5: require_column: no database to check it against (add a "
            "'database' section with a 'dsn')");
  PARSE_ERR(BASE "  require_column users email\ndatabase\n  lock_timeout 2s\n",
            "conf:5: require_column: no database to check it against (add a "
            "'database' section with a 'dsn')");
  PARSE_ERR(
      "listen\n  bind 127.0.0.1:1\n"
      "upstream green\n  require_query \"SELECT true\"\n"
      "upstream blue\n  server 127.0.0.1:2\n  require_migration a b\n",
      "conf:4: require_query: no database to check it against (add a "
      "'database' section with a 'dsn')");
  PARSE_ERR(BASE
            "  require_migration a 0001\n"
            "upstream green\n  require_column t c\n",
            "conf:5: require_migration: no database to check it against (add "
            "a 'database' section with a 'dsn')");

  /* With a database anywhere in the file, both colours' lists parse, in
   * order, and a query keeps its quotes and semicolons. */
  cfg = PARSE_OK(BASE
                 "  require_query \"SELECT EXISTS (SELECT 1 FROM "
                 "flyway_schema_history WHERE version = '42' AND success)\"\n"
                 "  require_column \"\\\"Mixed\\\".\\\"Case\\\"\" col\n"
                 "upstream green\n"
                 "  require_migration auth 0012_alter_user_first_name\n" DB);
  if (cfg != NULL) {
    const sw_upstream_conf_t *blue = &cfg->upstream[SW_BLUE];
    const sw_upstream_conf_t *green = &cfg->upstream[SW_GREEN];
    if (SW_CHECK_UINT_EQ(blue->nrequires, 2)) {
      CHECK_REQUIRE(&blue->requires[0], SW_REQUIRE_QUERY,
                    "SELECT EXISTS (SELECT 1 FROM flyway_schema_history "
                    "WHERE version = '42' AND success)",
                    NULL, 5);
      CHECK_REQUIRE(&blue->requires[1], SW_REQUIRE_COLUMN, "\"Mixed\".\"Case\"",
                    "col", 6);
    }
    if (SW_CHECK_UINT_EQ(green->nrequires, 1))
      CHECK_REQUIRE(&green->requires[0], SW_REQUIRE_MIGRATION, "auth",
                    "0012_alter_user_first_name", 8);
    SW_CHECK_STR_EQ(cfg->database.dsn, "dbname=app");
    SW_CHECK_INT_EQ(cfg->database.line, 9);
  }
  sw_config_free(cfg);

  /* Repeatable, and the same requirement twice is harmless. */
  cfg = PARSE_OK(BASE DB
                 "upstream green\n"
                 "  require_migration a 1\n  require_migration a 1\n");
  if (cfg != NULL)
    SW_CHECK_UINT_EQ(cfg->upstream[SW_GREEN].nrequires, 2);
  sw_config_free(cfg);
}

static void test_database(void) {
  char text[512], err[256] = "";
  sw_config_t *cfg = NULL;
  int rc;

  /* Both libpq forms. */
  cfg = PARSE_OK(BASE
                 "database\n"
                 "  dsn \"postgresql://switchd@127.0.0.1:5432/app?"
                 "application_name=switchd\"\n");
  if (cfg != NULL) {
    SW_CHECK_STR_EQ(cfg->database.dsn,
                    "postgresql://switchd@127.0.0.1:5432/app?"
                    "application_name=switchd");
    SW_CHECK_INT_EQ(cfg->database.line, 5);
    SW_CHECK_UINT_EQ(cfg->database.connect_timeout_ms, 5000);
  }
  sw_config_free(cfg);
  cfg = PARSE_OK(BASE "database\n  dsn \"host=/run/postgresql dbname=app\"\n");
  if (cfg != NULL)
    SW_CHECK_STR_EQ(cfg->database.dsn, "host=/run/postgresql dbname=app");
  sw_config_free(cfg);
  /* Timeouts alone are fine: the dsn is only needed by requirements. */
  cfg = PARSE_OK(BASE "database\n  statement_timeout 10s\n");
  if (cfg != NULL) {
    SW_CHECK(cfg->database.dsn == NULL);
    SW_CHECK_UINT_EQ(cfg->database.statement_timeout_ms, 10000);
  }
  sw_config_free(cfg);

  /* libpq's parser finds syntax errors; its message is kept, the string
   * (which may hold a password) is never quoted back. */
  snprintf(text, sizeof(text), "%s",
           BASE "database\n  dsn \"password=s3cret port\"\n");
  rc = sw_config_parse("conf", text, strlen(text), &cfg, err, sizeof(err));
  SW_CHECK_INT_EQ(rc, SW_ECONFIG);
  SW_CHECK(cfg == NULL);
  SW_CHECK(strncmp(err, "conf:6: dsn: invalid connection string: ",
                   strlen("conf:6: dsn: invalid connection string: ")) == 0);
  SW_CHECK_STR_CONTAINS(err, "port");
  SW_CHECK(strstr(err, "s3cret") == NULL);
  SW_CHECK(strchr(err, '\n') == NULL);
  if (rc == 0)
    sw_config_free(cfg);
  rc = sw_config_parse("conf", BASE "database\n  dsn \"nosuchkey=1\"\n",
                       strlen(BASE "database\n  dsn \"nosuchkey=1\"\n"), &cfg,
                       err, sizeof(err));
  SW_CHECK_INT_EQ(rc, SW_ECONFIG);
  SW_CHECK_STR_CONTAINS(err, "conf:6: dsn: invalid connection string: ");
  SW_CHECK_STR_CONTAINS(err, "nosuchkey");
  rc = sw_config_parse("conf", BASE "database\n  dsn postgresql://[::1\n",
                       strlen(BASE "database\n  dsn postgresql://[::1\n"), &cfg,
                       err, sizeof(err));
  SW_CHECK_INT_EQ(rc, SW_ECONFIG);
  SW_CHECK_STR_CONTAINS(err, "conf:6: dsn: invalid connection string: ");
  PARSE_ERR(BASE "database\n  dsn \"\"\n",
            "conf:6: dsn: empty connection string");
  PARSE_ERR(BASE "database\n  dsn a=1 b=2\n",
            "conf:6: dsn: expected 1 argument, got 2");
  PARSE_ERR(BASE "database\n  dsn dbname=a\n  dsn dbname=b\n",
            "conf:7: duplicate directive 'dsn' (first set at line 6)");

  /* One database section at most, and no arguments to it. */
  PARSE_ERR(BASE "database\n  dsn dbname=a\ndatabase\n",
            "conf:7: duplicate section 'database' (first at line 5)");
  PARSE_ERR(BASE "database\ncutover\ndatabase\n",
            "conf:7: duplicate section 'database' (first at line 5)");
  PARSE_ERR(BASE "database main\n",
            "conf:5: database: expected no arguments, got 1");
}

static void test_cutover_and_admin_sections(void) {
  char text[512], path[160];
  sw_config_t *cfg;

  PARSE_ERR(BASE "cutover now\n",
            "conf:5: cutover: expected no arguments, got 1");
  PARSE_ERR(BASE "admin x y\n", "conf:5: admin: expected no arguments, got 2");
  /* Like global and client, these sections may repeat; each directive is
   * still once per file. */
  cfg = PARSE_OK(BASE
                 "cutover\n  gate_timeout 1m\ncutover\n  drain_timeout 1s\n"
                 "admin\n  allow_uid 7\nadmin\n  allow_uid 8\n");
  if (cfg != NULL) {
    SW_CHECK_UINT_EQ(cfg->cutover.gate_timeout_ms, 60000);
    SW_CHECK_UINT_EQ(cfg->cutover.drain_timeout_ms, 1000);
    if (SW_CHECK_UINT_EQ(cfg->admin.nallow_uids, 2)) {
      SW_CHECK_UINT_EQ(cfg->admin.allow_uids[0], 7);
      SW_CHECK_UINT_EQ(cfg->admin.allow_uids[1], 8);
    }
  }
  sw_config_free(cfg);
  PARSE_ERR(BASE "cutover\n  history 1\ncutover\n  history 2\n",
            "conf:8: duplicate directive 'history' (first set at line 6)");
  PARSE_ERR(BASE "cutover\n  state_file \"\"\n",
            "conf:6: state_file: empty path ''");
  cfg = PARSE_OK(BASE "cutover\n  state_file \"/var/lib/switch d/state\"\n");
  if (cfg != NULL)
    SW_CHECK_STR_EQ(cfg->cutover.state_file, "/var/lib/switch d/state");
  sw_config_free(cfg);

  /* socket: a path, or off (NULL). */
  cfg = PARSE_OK(BASE "admin\n  socket off\n");
  if (cfg != NULL)
    SW_CHECK(cfg->admin.socket == NULL);
  sw_config_free(cfg);
  cfg = PARSE_OK(BASE "admin\n  socket ./admin.sock\n");
  if (cfg != NULL)
    SW_CHECK_STR_EQ(cfg->admin.socket, "./admin.sock");
  sw_config_free(cfg);
  PARSE_ERR(BASE "admin\n  socket \"\"\n", "conf:6: socket: empty path ''");
  PARSE_ERR(BASE "admin\n  socket off\n  socket /tmp/a\n",
            "conf:7: duplicate directive 'socket' (first set at line 6)");
  /* sun_path holds 107 bytes and the terminator. */
  memset(path, 'a', sizeof(path));
  path[0] = '/';
  path[107] = '\0';
  snprintf(text, sizeof(text), BASE "admin\n  socket %s\n", path);
  cfg = PARSE_OK(text);
  if (cfg != NULL)
    SW_CHECK_UINT_EQ(strlen(cfg->admin.socket), 107);
  sw_config_free(cfg);
  path[107] = 'a';
  path[108] = '\0';
  snprintf(text, sizeof(text), BASE "admin\n  socket %s\n", path);
  {
    char want[256];
    snprintf(want, sizeof(want),
             "conf:6: socket: path longer than 107 bytes '%s'", path);
    PARSE_ERR(text, want);
  }

  /* allow_uid: numeric uids only. */
  PARSE_ERR(BASE "admin\n  allow_uid root\n",
            "conf:6: allow_uid: expected a numeric uid, got 'root'");
  PARSE_ERR(BASE "admin\n  allow_uid -1\n",
            "conf:6: allow_uid: expected a numeric uid, got '-1'");
  PARSE_ERR(BASE "admin\n  allow_uid 4294967295\n",
            "conf:6: allow_uid: value too large '4294967295'");
  PARSE_ERR(BASE "admin\n  allow_uid 1000 1001\n",
            "conf:6: allow_uid: expected 1 argument, got 2");

  /* bind: one TCP listener, with a token file, not on a proxy port. */
  cfg = PARSE_OK(BASE
                 "admin\n  token_file /etc/switchd/token\n"
                 "  bind *:9900\n");
  if (cfg != NULL) {
    SW_CHECK_INT_EQ(cfg->admin.has_bind, 1);
    SW_CHECK_STR_EQ(cfg->admin.bind.name, "0.0.0.0:9900");
    SW_CHECK_INT_EQ(cfg->admin.bind.line, 7);
    CHECK_V4(&cfg->admin.bind.addr, "0.0.0.0", 9900);
    SW_CHECK_STR_EQ(cfg->admin.token_file, "/etc/switchd/token");
    SW_CHECK_INT_EQ(cfg->admin.metrics_open, 0);
    SW_CHECK_UINT_EQ(cfg->nbinds, 1);
  }
  sw_config_free(cfg);
  PARSE_ERR(BASE "admin\n  bind 127.0.0.1:9900\n",
            "conf:6: bind: the admin TCP listener needs a 'token_file' "
            "(bearer token for mutating calls)");
  PARSE_ERR(BASE "admin\n  bind 127.0.0.1:9900\n  metrics_open yes\n",
            "conf:6: bind: the admin TCP listener needs a 'token_file' "
            "(bearer token for mutating calls)");
  PARSE_ERR(BASE
            "admin\n  token_file /t\n  bind 127.0.0.1:9900\n"
            "  bind 127.0.0.1:9901\n",
            "conf:8: duplicate directive 'bind' (first set at line 7)");
  PARSE_ERR(BASE "admin\n  token_file /t\n  bind 127.0.0.1:8080\n",
            "conf:7: bind: admin address '127.0.0.1:8080' is also a listen "
            "bind (line 2)");
  PARSE_ERR("admin\n  token_file /t\n  bind *:80\n" BASE
            "listen\n"
            "  bind 0.0.0.0:80\n",
            "conf:3: bind: admin address '0.0.0.0:80' is also a listen bind "
            "(line 9)");
  PARSE_ERR(BASE "admin\n  bind localhost:9900\n",
            "conf:6: bind: invalid address (expected IP:PORT, [IPv6]:PORT or "
            "*:PORT) 'localhost:9900'");
  PARSE_ERR(BASE "admin\n  token_file \"\"\n",
            "conf:6: token_file: empty path ''");
  /* A token file without a TCP listener is unused but harmless. */
  cfg = PARSE_OK(BASE "admin\n  token_file /t\n  metrics_open no\n");
  if (cfg != NULL) {
    SW_CHECK_INT_EQ(cfg->admin.has_bind, 0);
    SW_CHECK_STR_EQ(cfg->admin.token_file, "/t");
  }
  sw_config_free(cfg);
  PARSE_ERR(BASE "admin\n  metrics_open on\n",
            "conf:6: metrics_open: expected yes or no, got 'on'");
  PARSE_ERR(BASE "admin\n  metrics_open true\n",
            "conf:6: metrics_open: expected yes or no, got 'true'");
}

/* Names shared by sections are found by section; a misplaced one names
 * every section it belongs in. */
static void test_control_sections_errors(void) {
  PARSE_ERR(BASE "cutover\n  connect_timeout 1s\n",
            "conf:6: unknown directive 'connect_timeout' in section 'cutover' "
            "(it belongs in section 'upstream' or 'database')");
  PARSE_ERR(BASE "global\n  idle_timeout 1s\n",
            "conf:6: unknown directive 'idle_timeout' in section 'global' (it "
            "belongs in section 'client' or 'upstream')");
  PARSE_ERR(BASE "admin\n  dsn dbname=a\n",
            "conf:6: unknown directive 'dsn' in section 'admin' (it belongs "
            "in section 'database')");
  PARSE_ERR(BASE "database\n  history 5\n",
            "conf:6: unknown directive 'history' in section 'database' (it "
            "belongs in section 'cutover')");
  PARSE_ERR(BASE "client\n  health_rise 2\n",
            "conf:6: unknown directive 'health_rise' in section 'client' (it "
            "belongs in section 'upstream')");
  PARSE_ERR(BASE "listen\n  socket /tmp/s\n",
            "conf:6: unknown directive 'socket' in section 'listen' (it "
            "belongs in section 'admin')");
  PARSE_ERR(BASE "admin\n  sokcet /tmp/s\n",
            "conf:6: unknown directive 'sokcet' in section 'admin'");
  PARSE_ERR("dsn dbname=a\n", "conf:1: directive 'dsn' outside any section");
  PARSE_ERR("Database\n", "conf:1: unknown section keyword 'Database'");
  /* A section's directives do not leak into the next one. */
  PARSE_ERR(BASE "database\n  dsn dbname=a\nadmin\n  lock_timeout 1s\n",
            "conf:8: unknown directive 'lock_timeout' in section 'admin' (it "
            "belongs in section 'database')");
}

/* The API's edges: no error buffer, a tiny one, odd names. */
/* Every directive of the watch section, none at its default. */
static const char watch_conf[] = BASE                          /* 1-4 */
    "watch\n"                                                  /* 5 */
    "  enabled off\n"                                          /* 6 */
    "  auto_window 250ms\n"                                    /* 7 */
    "  manual_window 2m\n"                                     /* 8 */
    "  baseline_window 1h\n"                                   /* 9 */
    "  min_requests 100\n"                                     /* 10 */
    "  not_errors 500 599 503\n"                               /* 11 */
    "  max_errors 0\n"                                         /* 12 */
    "  alpha 1e-4\n"                                           /* 13 */
    "  max_error_ratio 25%\n"                                  /* 14 */
    "  ratio_window 30s\n"                                     /* 15 */
    "  max_consecutive 1\n"                                    /* 16 */
    "  health_trigger off\n"                                   /* 17 */
    "  verify_interval 500ms\n"                                /* 18 */
    "  notify \"http://hooks.example.com:8080/sw?team=web\"\n" /* 19 */
    "  notify_timeout 1500ms\n"                                /* 20 */
    "  notify_retries 0\n";                                    /* 21 */

static void test_watch_full(void) {
  const sw_watch_conf_t *w;
  sw_config_t *cfg = PARSE_OK(watch_conf);

  if (cfg == NULL)
    return;
  w = &cfg->watch;
  SW_CHECK_INT_EQ(w->line, 5);
  SW_CHECK_INT_EQ(w->enabled, 0);
  SW_CHECK_UINT_EQ(w->auto_window_ms, 250);
  SW_CHECK_UINT_EQ(w->manual_window_ms, 120000);
  SW_CHECK_UINT_EQ(w->baseline_window_ms, 3600000);
  SW_CHECK_UINT_EQ(w->min_requests, 100);
  if (SW_CHECK_UINT_EQ(w->nnot_errors, 3)) {
    SW_CHECK_INT_EQ(w->not_errors[0], 500);
    SW_CHECK_INT_EQ(w->not_errors[1], 599);
    SW_CHECK_INT_EQ(w->not_errors[2], 503);
  }
  SW_CHECK_INT_EQ(w->r1, 1);
  SW_CHECK_UINT_EQ(w->max_errors, 0);
  SW_CHECK(w->alpha == 1e-4);
  SW_CHECK_INT_EQ(w->r2, 1);
  SW_CHECK(w->max_error_ratio == 0.25);
  SW_CHECK_UINT_EQ(w->ratio_window_ms, 30000);
  SW_CHECK_INT_EQ(w->r3, 1);
  SW_CHECK_UINT_EQ(w->max_consecutive, 1);
  SW_CHECK_INT_EQ(w->r4, 0);
  SW_CHECK_UINT_EQ(w->verify_interval_ms, 500);
  SW_CHECK_STR_EQ(w->notify, "http://hooks.example.com:8080/sw?team=web");
  SW_CHECK_UINT_EQ(w->notify_timeout_ms, 1500);
  SW_CHECK_UINT_EQ(w->notify_retries, 0);
  /* The other sections are untouched by it. */
  SW_CHECK_UINT_EQ(cfg->upstream[SW_BLUE].nservers, 1);
  SW_CHECK_UINT_EQ(cfg->nbinds, 1);
  SW_CHECK_UINT_EQ(cfg->cutover.gate_timeout_ms, 600000);
  SW_CHECK_INT_EQ(cfg->database.line, 0);
  sw_config_free(cfg);

  /* An empty section is every default, and says it was written. */
  cfg = PARSE_OK(BASE "watch\n");
  if (cfg != NULL) {
    SW_CHECK_INT_EQ(cfg->watch.line, 5);
    check_watch_defaults(&cfg->watch);
    sw_config_free(cfg);
  }

  /* The longest watch: both windows a week, the timers an hour; one
   * millisecond more is refused at its own line. */
  cfg = PARSE_OK(BASE
                 "watch\n"
                 "  auto_window 168h\n"
                 "  manual_window 604800000ms\n"
                 "  verify_interval 60m\n"
                 "  notify_timeout 3600s\n");
  if (cfg != NULL) {
    SW_CHECK_UINT_EQ(cfg->watch.auto_window_ms, 7ull * 24 * 3600 * 1000);
    SW_CHECK_UINT_EQ(cfg->watch.manual_window_ms, 7ull * 24 * 3600 * 1000);
    SW_CHECK_UINT_EQ(cfg->watch.verify_interval_ms, 3600 * 1000);
    SW_CHECK_UINT_EQ(cfg->watch.notify_timeout_ms, 3600 * 1000);
    sw_config_free(cfg);
  }
  PARSE_ERR(BASE "watch\n  auto_window 168h\n  manual_window 604800001ms\n",
            "conf:7: manual_window: must be at most 168h, got '604800001ms'");
  PARSE_ERR(BASE "watch\n  auto_window 7d\n",
            "conf:6: auto_window: invalid duration '7d'");
}

/* Every trigger turned off: the flag clears and the threshold keeps its
 * default, so turning one back on is one line. */
static void test_watch_off(void) {
  const sw_watch_conf_t *w;
  sw_config_t *cfg = PARSE_OK(BASE
                              "watch\n"
                              "  enabled off\n"
                              "  max_errors off\n"
                              "  max_error_ratio off\n"
                              "  max_consecutive off\n"
                              "  health_trigger off\n");

  if (cfg == NULL)
    return;
  w = &cfg->watch;
  SW_CHECK_INT_EQ(w->enabled, 0);
  SW_CHECK_INT_EQ(w->r1, 0);
  SW_CHECK_UINT_EQ(w->max_errors, 10);
  SW_CHECK_INT_EQ(w->r2, 0);
  SW_CHECK(w->max_error_ratio == 0.5);
  SW_CHECK_INT_EQ(w->r3, 0);
  SW_CHECK_UINT_EQ(w->max_consecutive, 5);
  SW_CHECK_INT_EQ(w->r4, 0);
  /* alpha belongs to R1 but is still read and checked. */
  SW_CHECK(w->alpha == 0.001);
  sw_config_free(cfg);

  cfg = PARSE_OK(BASE "watch\n  enabled on\n  health_trigger on\n");
  if (cfg != NULL) {
    SW_CHECK_INT_EQ(cfg->watch.enabled, 1);
    SW_CHECK_INT_EQ(cfg->watch.r4, 1);
    sw_config_free(cfg);
  }
  PARSE_ERR(BASE "watch\n  enabled yes\n",
            "conf:6: enabled: expected on or off, got 'yes'");
  PARSE_ERR(BASE "watch\n  health_trigger 1\n",
            "conf:6: health_trigger: expected on or off, got '1'");
}

static void test_watch_values(void) {
  static const value_case_t cases[] = {
      {"watch", "auto_window", "100ms", 100, NULL},
      {"watch", "auto_window", "90s", 90000, NULL},
      /* Equal to the default manual window is allowed. */
      {"watch", "auto_window", "30m", 1800000, NULL},
      {"watch", "auto_window", "99ms", 0,
       "auto_window: must be at least 100ms, got '99ms'"},
      {"watch", "auto_window", "0", 0,
       "auto_window: must be greater than 0, got '0'"},
      {"watch", "auto_window", "5x", 0, "auto_window: invalid duration '5x'"},
      {"watch", "auto_window", "18446744073709551616ms", 0,
       "auto_window: value too large '18446744073709551616ms'"},
      /* At most a week (168h, there is no day suffix): flip time + window
       * must not wrap. */
      {"watch", "auto_window", "169h", 0,
       "auto_window: must be at most 168h, got '169h'"},
      {"watch", "auto_window", "604800001ms", 0,
       "auto_window: must be at most 168h, got '604800001ms'"},
      {"watch", "auto_window", "18446744073709551615ms", 0,
       "auto_window: must be at most 168h, got '18446744073709551615ms'"},
      {"watch", "manual_window", "5m", 300000, NULL},
      {"watch", "manual_window", "48h", 172800000, NULL},
      {"watch", "manual_window", "168h", 604800000, NULL},
      {"watch", "manual_window", "604800000ms", 604800000, NULL},
      {"watch", "manual_window", "10080m", 604800000, NULL},
      {"watch", "manual_window", "604801", 0,
       "manual_window: must be at most 168h, got '604801'"},
      {"watch", "manual_window", "18446744073709551615ms", 0,
       "manual_window: must be at most 168h, got '18446744073709551615ms'"},
      {"watch", "manual_window", "0s", 0,
       "manual_window: must be greater than 0, got '0s'"},
      {"watch", "manual_window", "1s", 0,
       "manual_window: 1000ms must not be shorter than auto_window "
       "(300000ms)"},
      {"watch", "baseline_window", "100ms", 100, NULL},
      {"watch", "baseline_window", "24h", 86400000, NULL},
      {"watch", "baseline_window", "25h", 0,
       "baseline_window: must be at most 24h, got '25h'"},
      {"watch", "baseline_window", "50ms", 0,
       "baseline_window: must be at least 100ms, got '50ms'"},
      {"watch", "ratio_window", "1s", 1000, NULL},
      {"watch", "ratio_window", "1m", 60000, NULL},
      {"watch", "ratio_window", "999ms", 0,
       "ratio_window: must be at least 1s, got '999ms'"},
      {"watch", "ratio_window", "0", 0,
       "ratio_window: must be greater than 0, got '0'"},
      {"watch", "ratio_window", "86400001ms", 0,
       "ratio_window: must be at most 24h, got '86400001ms'"},
      {"watch", "min_requests", "1", 1, NULL},
      {"watch", "min_requests", "100000", 100000, NULL},
      {"watch", "min_requests", "0", 0,
       "min_requests: must be greater than 0, got '0'"},
      {"watch", "min_requests", "many", 0,
       "min_requests: invalid number 'many'"},
      {"watch", "max_errors", "0", 0, NULL},
      {"watch", "max_errors", "25", 25, NULL},
      {"watch", "max_errors", "off", UINT64_MAX, NULL},
      {"watch", "max_errors", "-1", 0,
       "max_errors: expected a number or off, got '-1'"},
      {"watch", "max_errors", "on", 0,
       "max_errors: expected a number or off, got 'on'"},
      {"watch", "max_errors", "18446744073709551616", 0,
       "max_errors: value too large '18446744073709551616'"},
      {"watch", "max_consecutive", "1", 1, NULL},
      {"watch", "max_consecutive", "50", 50, NULL},
      {"watch", "max_consecutive", "off", UINT64_MAX, NULL},
      {"watch", "max_consecutive", "0", 0,
       "max_consecutive: must be greater than 0, got '0'"},
      {"watch", "max_consecutive", "5x", 0,
       "max_consecutive: expected a number or off, got '5x'"},
      {"watch", "verify_interval", "1ms", 1, NULL},
      {"watch", "verify_interval", "1m", 60000, NULL},
      {"watch", "verify_interval", "0", 0,
       "verify_interval: must be greater than 0, got '0'"},
      {"watch", "verify_interval", "off", 0,
       "verify_interval: invalid duration 'off'"},
      /* At most an hour. */
      {"watch", "verify_interval", "1h", 3600000, NULL},
      {"watch", "verify_interval", "3600001ms", 0,
       "verify_interval: must be at most 1h, got '3600001ms'"},
      {"watch", "verify_interval", "61m", 0,
       "verify_interval: must be at most 1h, got '61m'"},
      {"watch", "verify_interval", "18446744073709551615ms", 0,
       "verify_interval: must be at most 1h, got '18446744073709551615ms'"},
      {"watch", "verify_interval", "18446744073709551616ms", 0,
       "verify_interval: value too large '18446744073709551616ms'"},
      {"watch", "notify_timeout", "2s", 2000, NULL},
      {"watch", "notify_timeout", "0ms", 0,
       "notify_timeout: must be greater than 0, got '0ms'"},
      {"watch", "notify_timeout", "1ms", 1, NULL},
      {"watch", "notify_timeout", "3600", 3600000, NULL},
      {"watch", "notify_timeout", "3601", 0,
       "notify_timeout: must be at most 1h, got '3601'"},
      {"watch", "notify_timeout", "2h", 0,
       "notify_timeout: must be at most 1h, got '2h'"},
      {"watch", "notify_retries", "0", 0, NULL},
      {"watch", "notify_retries", "10", 10, NULL},
      {"watch", "notify_retries", "11", 0,
       "notify_retries: must be at most 10, got '11'"},
      {"watch", "notify_retries", "-1", 0,
       "notify_retries: invalid number '-1'"},
      {"watch", "notify_retries", "3 5", 0,
       "notify_retries: expected 1 argument, got 2"},
  };

  RUN_VALUE_CASES(cases);
}

/* A decimal directive's value: with err NULL it must parse to `want`
 * exactly; otherwise err is the message expected after "conf:6: ". */
typedef struct decimal_case_s {
  const char *directive;
  const char *arg;
  double want;
  const char *err;
} decimal_case_t;

static void test_watch_decimals(void) {
  static const decimal_case_t cases[] = {
      {"alpha", "0.001", 0.001, NULL},
      {"alpha", "1e-3", 0.001, NULL},
      {"alpha", "1E-3", 0.001, NULL},
      {"alpha", "0.1e-2", 0.001, NULL},
      {"alpha", "0.05", 0.05, NULL},
      {"alpha", ".5", 0.5, NULL},
      {"alpha", "5e-1", 0.5, NULL},
      {"alpha", "1", 1, NULL},
      {"alpha", "1.000", 1, NULL},
      {"alpha", "100e-2", 1, NULL},
      {"alpha", "0.0000000000000000000001", 1e-22, NULL},
      {"alpha", "0", 0, "alpha: must be greater than 0 and at most 1, got '0'"},
      {"alpha", "0e999", 0,
       "alpha: must be greater than 0 and at most 1, got '0e999'"},
      {"alpha", "1.5", 0,
       "alpha: must be greater than 0 and at most 1, got '1.5'"},
      {"alpha", "1e999", 0,
       "alpha: must be greater than 0 and at most 1, got '1e999'"},
      {"alpha", "-0.1", 0,
       "alpha: expected a number such as 0.001 or 1e-3, got '-0.1'"},
      {"alpha", "0,001", 0,
       "alpha: expected a number such as 0.001 or 1e-3, got '0,001'"},
      {"alpha", "nan", 0,
       "alpha: expected a number such as 0.001 or 1e-3, got 'nan'"},
      {"alpha", "inf", 0,
       "alpha: expected a number such as 0.001 or 1e-3, got 'inf'"},
      {"alpha", "0x1p-3", 0,
       "alpha: expected a number such as 0.001 or 1e-3, got '0x1p-3'"},
      {"alpha", "1e", 0,
       "alpha: expected a number such as 0.001 or 1e-3, got '1e'"},
      {"alpha", ".", 0,
       "alpha: expected a number such as 0.001 or 1e-3, got '.'"},
      {"alpha", "e-3", 0,
       "alpha: expected a number such as 0.001 or 1e-3, got 'e-3'"},
      {"alpha", "0.1%", 0,
       "alpha: expected a number such as 0.001 or 1e-3, got '0.1%'"},
      {"alpha", "\"\"", 0,
       "alpha: expected a number such as 0.001 or 1e-3, got ''"},
      {"max_error_ratio", "0.5", 0.5, NULL},
      {"max_error_ratio", "50%", 0.5, NULL},
      {"max_error_ratio", "12.5%", 0.125, NULL},
      {"max_error_ratio", "100%", 1, NULL},
      {"max_error_ratio", "1", 1, NULL},
      {"max_error_ratio", "0.01", 0.01, NULL},
      {"max_error_ratio", "1%", 0.01, NULL},
      {"max_error_ratio", "0%", 0,
       "max_error_ratio: must be greater than 0 and at most 1 (100%), got "
       "'0%'"},
      {"max_error_ratio", "150%", 0,
       "max_error_ratio: must be greater than 0 and at most 1 (100%), got "
       "'150%'"},
      {"max_error_ratio", "1.01", 0,
       "max_error_ratio: must be greater than 0 and at most 1 (100%), got "
       "'1.01'"},
      {"max_error_ratio", "%", 0,
       "max_error_ratio: expected a ratio (0.5 or 50%) or off, got '%'"},
      {"max_error_ratio", "50%%", 0,
       "max_error_ratio: expected a ratio (0.5 or 50%) or off, got '50%%'"},
      {"max_error_ratio", "half", 0,
       "max_error_ratio: expected a ratio (0.5 or 50%) or off, got 'half'"},
      {"max_error_ratio", "50 %", 0,
       "max_error_ratio: expected 1 argument, got 2"},
  };
  size_t i;

  for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    const decimal_case_t *c = &cases[i];
    char text[512], want[256];
    snprintf(text, sizeof(text), BASE "watch\n  %s %s\n", c->directive, c->arg);
    if (c->err == NULL) {
      sw_config_t *cfg = PARSE_OK(text);
      double got;
      if (cfg == NULL) {
        printf("  case: %s %s\n", c->directive, c->arg);
        continue;
      }
      got = strcmp(c->directive, "alpha") == 0 ? cfg->watch.alpha
                                               : cfg->watch.max_error_ratio;
      if (!SW_CHECK(got == c->want))
        printf("  case: %s %s: got %.17g, want %.17g\n", c->directive, c->arg,
               got, c->want);
      sw_config_free(cfg);
    } else {
      snprintf(want, sizeof(want), "conf:6: %s", c->err);
      PARSE_ERR(text, want);
    }
  }
}

static void test_watch_not_errors(void) {
  char text[512];
  sw_config_t *cfg;
  int i;

  cfg = PARSE_OK(BASE "watch\n  not_errors 503\n");
  if (cfg != NULL) {
    if (SW_CHECK_UINT_EQ(cfg->watch.nnot_errors, 1))
      SW_CHECK_INT_EQ(cfg->watch.not_errors[0], 503);
    sw_config_free(cfg);
  }
  /* A repeated line replaces the list, the default's included. */
  cfg = PARSE_OK(BASE "watch\n  not_errors 502\n  not_errors 504 501\n");
  if (cfg != NULL) {
    if (SW_CHECK_UINT_EQ(cfg->watch.nnot_errors, 2)) {
      SW_CHECK_INT_EQ(cfg->watch.not_errors[0], 504);
      SW_CHECK_INT_EQ(cfg->watch.not_errors[1], 501);
    }
    sw_config_free(cfg);
  }
  /* SW_CONFIG_WATCH_EXCLUDE_MAX statuses fit; one more does not. */
  snprintf(text, sizeof(text), BASE "watch\n  not_errors");
  for (i = 0; i < SW_CONFIG_WATCH_EXCLUDE_MAX; i++)
    snprintf(text + strlen(text), sizeof(text) - strlen(text), " %d", 500 + i);
  snprintf(text + strlen(text), sizeof(text) - strlen(text), "\n");
  cfg = PARSE_OK(text);
  if (cfg != NULL) {
    if (SW_CHECK_UINT_EQ(cfg->watch.nnot_errors, SW_CONFIG_WATCH_EXCLUDE_MAX)) {
      SW_CHECK_INT_EQ(cfg->watch.not_errors[0], 500);
      SW_CHECK_INT_EQ(cfg->watch.not_errors[15], 515);
    }
    sw_config_free(cfg);
  }
  text[strlen(text) - 1] = '\0';
  snprintf(text + strlen(text), sizeof(text) - strlen(text), " 599\n");
  PARSE_ERR(text, "conf:6: not_errors: at most 16 statuses, got 17");
  /* More than the argument array holds is still counted. */
  snprintf(text, sizeof(text), BASE "watch\n  not_errors");
  for (i = 0; i < 30; i++)
    snprintf(text + strlen(text), sizeof(text) - strlen(text), " %d", 500 + i);
  snprintf(text + strlen(text), sizeof(text) - strlen(text), "\n");
  PARSE_ERR(text, "conf:6: not_errors: at most 16 statuses, got 30");

  PARSE_ERR(BASE "watch\n  not_errors\n",
            "conf:6: not_errors: expected at least 1 argument, got 0");
  PARSE_ERR(BASE "watch\n  not_errors 404\n",
            "conf:6: not_errors: expected a status from 500 to 599, got "
            "'404'");
  PARSE_ERR(BASE "watch\n  not_errors 501 600\n",
            "conf:6: not_errors: expected a status from 500 to 599, got "
            "'600'");
  PARSE_ERR(BASE "watch\n  not_errors 499\n",
            "conf:6: not_errors: expected a status from 500 to 599, got "
            "'499'");
  PARSE_ERR(BASE "watch\n  not_errors 5xx\n",
            "conf:6: not_errors: expected a status from 500 to 599, got "
            "'5xx'");
  PARSE_ERR(BASE "watch\n  not_errors 501 off\n",
            "conf:6: not_errors: expected a status from 500 to 599, got "
            "'off'");
  PARSE_ERR(BASE "watch\n  not_errors 501 505 501\n",
            "conf:6: not_errors: status listed twice '501'");
  /* An error on a repeated line names that line. */
  PARSE_ERR(BASE "watch\n  not_errors 502\n  not_errors 302\n",
            "conf:7: not_errors: expected a status from 500 to 599, got "
            "'302'");
}

static void test_watch_notify(void) {
  static const char *const good[] = {
      "http://127.0.0.1:9000/hook",
      "http://[::1]:8080/x",
      "http://[2001:db8::1]/a/b",
      "http://hooks.example.com/services/T0/B1?x=1&y=2",
      "http://localhost",
      "http://localhost:80",
      "http://localhost/",
      "HTTP://Example.COM/Upper",
      "http://a-b.c9.example/",
      "http://10.0.0.1",
      "http://internal_host.local:00080/x",
      "http://h?token=abc",
      "http://h:8080?token=abc",
  };
  static const struct {
    const char *arg;
    const char *err;
  } bad[] = {
      {"https://hooks.slack.com/x",
       "notify: TLS notifications are not supported yet (use an http:// "
       "URL), got 'https://hooks.slack.com/x'"},
      {"HTTPS://h/",
       "notify: TLS notifications are not supported yet (use an http:// "
       "URL), got 'HTTPS://h/'"},
      {"ftp://h/", "notify: expected an http:// URL, got 'ftp://h/'"},
      {"hooks.example.com",
       "notify: expected an http:// URL, got "
       "'hooks.example.com'"},
      {"\"\"", "notify: expected an http:// URL, got ''"},
      {"http://", "notify: invalid host in URL 'http://'"},
      {"http:///x", "notify: invalid host in URL 'http:///x'"},
      {"http://user@h/", "notify: invalid host in URL 'http://user@h/'"},
      {"http://-a.com/", "notify: invalid host in URL 'http://-a.com/'"},
      {"http://a-.com/", "notify: invalid host in URL 'http://a-.com/'"},
      {"http://a..b/", "notify: invalid host in URL 'http://a..b/'"},
      {"http://h x/", "notify: expected 1 argument, got 2"},
      {"http://h%x/", "notify: invalid host in URL 'http://h%x/'"},
      {"http://a.1/", "notify: invalid host in URL 'http://a.1/'"},
      {"http://h:000080/", "notify: invalid port in URL 'http://h:000080/'"},
      {"http://10.0.0.256/",
       "notify: invalid host in URL 'http://10.0.0.256/'"},
      {"http://10.0.1/", "notify: invalid host in URL 'http://10.0.1/'"},
      {"http://[::1/", "notify: invalid host in URL 'http://[::1/'"},
      {"http://[]/", "notify: invalid host in URL 'http://[]/'"},
      {"http://[xyz]/", "notify: invalid host in URL 'http://[xyz]/'"},
      {"http://::1/", "notify: invalid host in URL 'http://::1/'"},
      {"http://h:0/", "notify: invalid port in URL 'http://h:0/'"},
      {"http://h:65536/", "notify: invalid port in URL 'http://h:65536/'"},
      {"http://h:/", "notify: invalid port in URL 'http://h:/'"},
      {"http://h:80x/", "notify: invalid port in URL 'http://h:80x/'"},
      {"http://h:1:2/", "notify: invalid port in URL 'http://h:1:2/'"},
      {"http://[::1]x/", "notify: invalid port in URL 'http://[::1]x/'"},
      {"\"http://h/a b\"",
       "notify: invalid character in URL path 'http://h/a b'"},
      {"\"http://h/a#top\"",
       "notify: invalid character in URL path 'http://h/a#top'"},
      {"http://h/x y", "notify: expected 1 argument, got 2"},
  };
  char text[4096], want[512];
  sw_config_t *cfg;
  size_t i;

  for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
    snprintf(text, sizeof(text), BASE "watch\n  notify %s\n", good[i]);
    cfg = PARSE_OK(text);
    if (cfg == NULL) {
      printf("  case: %s\n", good[i]);
      continue;
    }
    /* Stored as written. */
    SW_CHECK_STR_EQ(cfg->watch.notify, good[i]);
    sw_config_free(cfg);
  }
  for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    snprintf(text, sizeof(text), BASE "watch\n  notify %s\n", bad[i].arg);
    snprintf(want, sizeof(want), "conf:6: %s", bad[i].err);
    PARSE_ERR(text, want);
  }

  /* 2048 bytes fit; one more does not, and is not quoted back. */
  snprintf(text, sizeof(text), BASE "watch\n  notify http://h/");
  memset(text + strlen(text), 'a', 2048 - strlen("http://h/"));
  text[strlen(BASE "watch\n  notify ") + 2048] = '\0';
  strcat(text, "\n");
  cfg = PARSE_OK(text);
  if (cfg != NULL) {
    SW_CHECK_UINT_EQ(strlen(cfg->watch.notify), 2048);
    sw_config_free(cfg);
  }
  text[strlen(text) - 1] = '\0';
  strcat(text, "a\n");
  PARSE_ERR(text, "conf:6: notify: longer than 2048 bytes");

  PARSE_ERR(BASE "watch\n  notify http://a/\n  notify http://b/\n",
            "conf:7: duplicate directive 'notify' (first set at line 6)");
}

static void test_watch_section(void) {
  sw_config_t *cfg;

  /* One watch section at most, and no arguments to it. */
  PARSE_ERR(BASE "watch\n  enabled on\nwatch\n",
            "conf:7: duplicate section 'watch' (first at line 5)");
  PARSE_ERR(BASE "watch\ncutover\nwatch\n",
            "conf:7: duplicate section 'watch' (first at line 5)");
  PARSE_ERR(BASE "watch now\n", "conf:5: watch: expected no arguments, got 1");
  PARSE_ERR(BASE "watch\n  alpha 0.01\n  alpha 0.02\n",
            "conf:7: duplicate directive 'alpha' (first set at line 6)");

  /* The manual window is counted from the flip: never shorter than the
   * automatic one. Checked once the whole file is read, so the order of the
   * two lines does not matter. */
  PARSE_ERR(BASE "watch\n  auto_window 10m\n  manual_window 5m\n",
            "conf:7: manual_window: 300000ms must not be shorter than "
            "auto_window (600000ms)");
  PARSE_ERR(BASE "watch\n  manual_window 1m\n  auto_window 2m\n",
            "conf:6: manual_window: 60000ms must not be shorter than "
            "auto_window (120000ms)");
  PARSE_ERR(BASE "watch\n  enabled off\n  auto_window 31m\n",
            "conf:5: watch: auto_window (1860000ms) is longer than the "
            "default manual_window (1800000ms); set manual_window");
  cfg = PARSE_OK(BASE "watch\n  auto_window 10m\n  manual_window 10m\n");
  if (cfg != NULL) {
    SW_CHECK_UINT_EQ(cfg->watch.auto_window_ms, 600000);
    SW_CHECK_UINT_EQ(cfg->watch.manual_window_ms, 600000);
    sw_config_free(cfg);
  }
  cfg = PARSE_OK(BASE "watch\n  auto_window 40m\n  manual_window 2h\n");
  if (cfg != NULL) {
    SW_CHECK_UINT_EQ(cfg->watch.auto_window_ms, 2400000);
    SW_CHECK_UINT_EQ(cfg->watch.manual_window_ms, 7200000);
    sw_config_free(cfg);
  }

  /* Its directives belong to it alone, and it takes no one else's. */
  PARSE_ERR(BASE "cutover\n  auto_window 5m\n",
            "conf:6: unknown directive 'auto_window' in section 'cutover' "
            "(it belongs in section 'watch')");
  PARSE_ERR(BASE "watch\n  history 5\n",
            "conf:6: unknown directive 'history' in section 'watch' (it "
            "belongs in section 'cutover')");
  PARSE_ERR(BASE "watch\n  health off\n",
            "conf:6: unknown directive 'health' in section 'watch' (it "
            "belongs in section 'upstream')");
  PARSE_ERR(BASE "watch\n  rollback auto\n",
            "conf:6: unknown directive 'rollback' in section 'watch'");
  PARSE_ERR("not_errors 501\n" BASE,
            "conf:1: directive 'not_errors' outside any section");
}

/* Every TLS value of a listen section at its default (sw_config.h). */
static void check_tls_defaults_at(const char *file,
                                  int line,
                                  const sw_tls_conf_t *t) {
  SW_CHECK_INT_EQ_AT(file, line, t->min_version, 12);
  SW_CHECK_AT(file, line, t->ciphers == NULL);
  SW_CHECK_AT(file, line, t->ciphersuites == NULL);
  SW_CHECK_INT_EQ_AT(file, line, t->tickets, 1);
  SW_CHECK_UINT_EQ_AT(file, line, t->ticket_rotate_ms, 60 * 60 * 1000);
  SW_CHECK_UINT_EQ_AT(file, line, t->session_cache, 20000);
  SW_CHECK_UINT_EQ_AT(file, line, t->session_timeout_ms, 5 * 60 * 1000);
  SW_CHECK_UINT_EQ_AT(file, line, t->handshake_timeout_ms, 10 * 1000);
}
#define CHECK_TLS_DEFAULTS(t) check_tls_defaults_at(__FILE__, __LINE__, t)

static void test_tls_defaults(void) {
  sw_config_t *cfg;

  /* No certificate anywhere: no TLS entry, and no bind points at one. */
  cfg = PARSE_OK(BASE
                 "admin\n"
                 "  bind 127.0.0.1:9900\n"
                 "  token_file /etc/switchd/admin.token\n");
  if (cfg != NULL) {
    SW_CHECK_UINT_EQ(cfg->ntls, 0);
    SW_CHECK(cfg->tls == NULL);
    if (SW_CHECK_UINT_EQ(cfg->nbinds, 1))
      SW_CHECK_INT_EQ(cfg->binds[0].tls, -1);
    SW_CHECK_INT_EQ(cfg->admin.bind.tls, -1);
  }
  sw_config_free(cfg);
  cfg = PARSE_OK(BASE);
  if (cfg != NULL)
    SW_CHECK_INT_EQ(cfg->admin.bind.tls, -1);
  sw_config_free(cfg);

  /* One certificate, as the last line of the file. */
  cfg = PARSE_OK(BASE
                 "listen\n"                /* 5 */
                 "  bind 127.0.0.1:8443\n" /* 6 */
                 "  certificate site.pem site.key\n" /* 7 */);
  if (cfg == NULL)
    return;
  if (SW_CHECK_UINT_EQ(cfg->ntls, 1)) {
    const sw_tls_conf_t *t = &cfg->tls[0];
    SW_CHECK_INT_EQ(t->line, 5);
    if (SW_CHECK_UINT_EQ(t->ncerts, 1)) {
      SW_CHECK_STR_EQ(t->certs[0].cert, "site.pem");
      SW_CHECK_STR_EQ(t->certs[0].key, "site.key");
      SW_CHECK(t->certs[0].ocsp == NULL);
      SW_CHECK_INT_EQ(t->certs[0].line, 7);
      SW_CHECK_INT_EQ(t->certs[0].ocsp_line, 0);
    }
    CHECK_TLS_DEFAULTS(t);
  }
  if (SW_CHECK_UINT_EQ(cfg->nbinds, 2)) {
    SW_CHECK_INT_EQ(cfg->binds[0].tls, -1);
    SW_CHECK_INT_EQ(cfg->binds[1].tls, 0);
  }
  sw_config_free(cfg);
}

/* Every TLS directive, none at its default, with three certificates (one
 * with an OCSP response) and a bind on each side of them. */
static const char tls_full_conf[] = BASE            /* 1-4 */
    "listen\n"                                      /* 5 */
    "  bind *:443\n"                                /* 6 */
    "  certificate /etc/tls/a.pem /etc/tls/a.key\n" /* 7 */
    "  ocsp_response /etc/tls/a.ocsp\n"             /* 8 */
    "  certificate \"certs/b c.pem\" certs/b.key\n" /* 9 */
    "  tls_min_version 1.3\n"                       /* 10 */
    "  tls_ciphers ECDHE+AESGCM:!aNULL\n"           /* 11 */
    "  tls_ciphersuites TLS_AES_256_GCM_SHA384\n"   /* 12 */
    "  tls_session_tickets off\n"                   /* 13 */
    "  tls_ticket_rotate 30m\n"                     /* 14 */
    "  tls_session_cache 0\n"                       /* 15 */
    "  tls_session_timeout 24h\n"                   /* 16 */
    "  tls_handshake_timeout 5m\n"                  /* 17 */
    "  certificate ../c.pem ../c.key # relative\n"  /* 18 */
    "  bind [::]:443\n";                            /* 19 */

static void test_tls_full(void) {
  const sw_tls_conf_t *t;
  sw_config_t *cfg = PARSE_OK(tls_full_conf);

  if (cfg == NULL || !SW_CHECK_UINT_EQ(cfg->ntls, 1)) {
    sw_config_free(cfg);
    return;
  }
  t = &cfg->tls[0];
  SW_CHECK_INT_EQ(t->line, 5);
  if (SW_CHECK_UINT_EQ(t->ncerts, 3)) {
    SW_CHECK_STR_EQ(t->certs[0].cert, "/etc/tls/a.pem");
    SW_CHECK_STR_EQ(t->certs[0].key, "/etc/tls/a.key");
    SW_CHECK_STR_EQ(t->certs[0].ocsp, "/etc/tls/a.ocsp");
    SW_CHECK_INT_EQ(t->certs[0].line, 7);
    SW_CHECK_INT_EQ(t->certs[0].ocsp_line, 8);
    SW_CHECK_STR_EQ(t->certs[1].cert, "certs/b c.pem");
    SW_CHECK_STR_EQ(t->certs[1].key, "certs/b.key");
    SW_CHECK(t->certs[1].ocsp == NULL);
    SW_CHECK_INT_EQ(t->certs[1].line, 9);
    SW_CHECK_INT_EQ(t->certs[1].ocsp_line, 0);
    /* Paths are stored as written, relative ones included. */
    SW_CHECK_STR_EQ(t->certs[2].cert, "../c.pem");
    SW_CHECK_STR_EQ(t->certs[2].key, "../c.key");
    SW_CHECK_INT_EQ(t->certs[2].line, 18);
  }
  SW_CHECK_INT_EQ(t->min_version, 13);
  SW_CHECK_STR_EQ(t->ciphers, "ECDHE+AESGCM:!aNULL");
  SW_CHECK_STR_EQ(t->ciphersuites, "TLS_AES_256_GCM_SHA384");
  SW_CHECK_INT_EQ(t->tickets, 0);
  SW_CHECK_UINT_EQ(t->ticket_rotate_ms, 30 * 60 * 1000);
  SW_CHECK_UINT_EQ(t->session_cache, 0);
  SW_CHECK_UINT_EQ(t->session_timeout_ms, 24 * 60 * 60 * 1000);
  SW_CHECK_UINT_EQ(t->handshake_timeout_ms, 5 * 60 * 1000);
  if (SW_CHECK_UINT_EQ(cfg->nbinds, 3)) {
    SW_CHECK_INT_EQ(cfg->binds[0].tls, -1);
    SW_CHECK_STR_EQ(cfg->binds[1].name, "0.0.0.0:443");
    SW_CHECK_INT_EQ(cfg->binds[1].tls, 0);
    SW_CHECK_STR_EQ(cfg->binds[2].name, "[::]:443");
    SW_CHECK_INT_EQ(cfg->binds[2].tls, 0);
  }
  sw_config_free(cfg);

  /* An OCSP response belongs to the nearest certificate line above it,
   * other directives in between or not; the other certificates may have
   * their own. */
  cfg = PARSE_OK(BASE
                 "listen\n"                    /* 5 */
                 "  bind 127.0.0.1:8443\n"     /* 6 */
                 "  certificate a.pem a.key\n" /* 7 */
                 "  certificate b.pem b.key\n" /* 8 */
                 "  tls_min_version 1.2\n"     /* 9 */
                 "  ocsp_response b.der\n"     /* 10 */
                 "  certificate c.pem c.key\n" /* 11 */
                 "  ocsp_response c.der\n" /* 12 */);
  if (cfg != NULL && SW_CHECK_UINT_EQ(cfg->ntls, 1) &&
      SW_CHECK_UINT_EQ(cfg->tls[0].ncerts, 3)) {
    t = &cfg->tls[0];
    SW_CHECK(t->certs[0].ocsp == NULL);
    SW_CHECK_STR_EQ(t->certs[1].ocsp, "b.der");
    SW_CHECK_INT_EQ(t->certs[1].ocsp_line, 10);
    SW_CHECK_STR_EQ(t->certs[2].ocsp, "c.der");
    SW_CHECK_INT_EQ(t->certs[2].ocsp_line, 12);
    SW_CHECK_INT_EQ(t->min_version, 12);
  }
  sw_config_free(cfg);
}

/* Each listen section is its own TLS entry, or plain; every bind of a TLS
 * section is HTTPS, whether written before or after its certificates. */
static void test_tls_sections(void) {
  sw_config_t *cfg;
  static const int want[] = {-1, 0, 0, -1, 1, 1, 1, -1};
  size_t i;

  cfg = PARSE_OK(BASE                          /* 1-4: bind 0 */
                 "listen\n"                    /* 5 */
                 "  bind 127.0.0.1:8443\n"     /* 6: bind 1 */
                 "  certificate a.pem a.key\n" /* 7 */
                 "  tls_min_version 1.3\n"     /* 8 */
                 "  bind 127.0.0.2:8443\n"     /* 9: bind 2 */
                 "listen\n"                    /* 10 */
                 "  bind 127.0.0.1:8081\n"     /* 11: bind 3 */
                 "listen\n"                    /* 12 */
                 "  bind [::1]:9443\n"         /* 13: bind 4 */
                 "  tls_ciphers HIGH\n"        /* 14 */
                 "  bind [::2]:9443\n"         /* 15: bind 5 */
                 "  certificate c.pem c.key\n" /* 16 */
                 "  certificate d.pem d.key\n" /* 17 */
                 "  bind [::3]:9443\n"         /* 18: bind 6 */
                 "client\n"                    /* 19 */
                 "  max_headers 50\n"          /* 20 */
                 "listen\n"                    /* 21 */
                 "  bind 127.0.0.1:8082\n" /* 22: bind 7 */);
  if (cfg == NULL)
    return;
  if (SW_CHECK_UINT_EQ(cfg->nbinds, 8)) {
    for (i = 0; i < 8; i++) {
      if (!SW_CHECK_INT_EQ(cfg->binds[i].tls, want[i]))
        printf("  bind %zu (%s)\n", i, cfg->binds[i].name);
    }
  }
  if (SW_CHECK_UINT_EQ(cfg->ntls, 2)) {
    const sw_tls_conf_t *a = &cfg->tls[0], *b = &cfg->tls[1];
    SW_CHECK_INT_EQ(a->line, 5);
    SW_CHECK_UINT_EQ(a->ncerts, 1);
    SW_CHECK_INT_EQ(a->min_version, 13);
    SW_CHECK(a->ciphers == NULL);
    /* The second section starts from the defaults, not from the first. */
    SW_CHECK_INT_EQ(b->line, 12);
    if (SW_CHECK_UINT_EQ(b->ncerts, 2)) {
      SW_CHECK_STR_EQ(b->certs[0].cert, "c.pem");
      SW_CHECK_STR_EQ(b->certs[1].cert, "d.pem");
      SW_CHECK_INT_EQ(b->certs[1].line, 17);
    }
    SW_CHECK_INT_EQ(b->min_version, 12);
    SW_CHECK_STR_EQ(b->ciphers, "HIGH");
  }
  sw_config_free(cfg);

  /* A single-valued TLS directive may appear once per listen section, so
   * two HTTPS sections may each set it. */
  cfg = PARSE_OK(BASE
                 "listen\n  bind 127.0.0.1:1\n  certificate a b\n"
                 "  tls_session_cache 5\n"
                 "listen\n  bind 127.0.0.1:2\n  certificate c d\n"
                 "  tls_session_cache 6\n");
  if (cfg != NULL && SW_CHECK_UINT_EQ(cfg->ntls, 2)) {
    SW_CHECK_UINT_EQ(cfg->tls[0].session_cache, 5);
    SW_CHECK_UINT_EQ(cfg->tls[1].session_cache, 6);
    SW_CHECK_INT_EQ(cfg->binds[1].tls, 0);
    SW_CHECK_INT_EQ(cfg->binds[2].tls, 1);
  }
  sw_config_free(cfg);

  /* The first listen section of the file may be the HTTPS one. */
  cfg = PARSE_OK(
      "listen\n  certificate a b\n  bind *:443\n"
      "upstream blue\n  server 127.0.0.1:9001\n"
      "listen\n  bind *:80\n");
  if (cfg != NULL && SW_CHECK_UINT_EQ(cfg->nbinds, 2)) {
    SW_CHECK_INT_EQ(cfg->binds[0].tls, 0);
    SW_CHECK_INT_EQ(cfg->binds[1].tls, -1);
    SW_CHECK_UINT_EQ(cfg->ntls, 1);
  }
  sw_config_free(cfg);
}

/* The TLS value a case set, in the only TLS entry. */
static uint64_t tls_value_of(const sw_tls_conf_t *t, const char *directive) {
  if (strcmp(directive, "tls_min_version") == 0)
    return (uint64_t)t->min_version;
  if (strcmp(directive, "tls_session_tickets") == 0)
    return (uint64_t)t->tickets;
  if (strcmp(directive, "tls_ticket_rotate") == 0)
    return t->ticket_rotate_ms;
  if (strcmp(directive, "tls_session_cache") == 0)
    return t->session_cache;
  if (strcmp(directive, "tls_session_timeout") == 0)
    return t->session_timeout_ms;
  if (strcmp(directive, "tls_handshake_timeout") == 0)
    return t->handshake_timeout_ms;
  return UINT64_MAX - 1;
}

/* Appends an HTTPS listen section to BASE with the directive as line 8. */
static void test_tls_values(void) {
  static const value_case_t cases[] = {
      {"listen", "tls_min_version", "1.2", 12, NULL},
      {"listen", "tls_min_version", "1.3", 13, NULL},
      {"listen", "tls_min_version", "1.1", 0,
       "tls_min_version: expected 1.2 or 1.3, got '1.1'"},
      {"listen", "tls_min_version", "1.0", 0,
       "tls_min_version: expected 1.2 or 1.3, got '1.0'"},
      {"listen", "tls_min_version", "TLSv1.3", 0,
       "tls_min_version: expected 1.2 or 1.3, got 'TLSv1.3'"},
      {"listen", "tls_min_version", "13", 0,
       "tls_min_version: expected 1.2 or 1.3, got '13'"},
      {"listen", "tls_session_tickets", "on", 1, NULL},
      {"listen", "tls_session_tickets", "off", 0, NULL},
      {"listen", "tls_session_tickets", "no", 0,
       "tls_session_tickets: expected on or off, got 'no'"},
      {"listen", "tls_ticket_rotate", "1m", 60000, NULL},
      {"listen", "tls_ticket_rotate", "60s", 60000, NULL},
      {"listen", "tls_ticket_rotate", "24h", 86400000, NULL},
      {"listen", "tls_ticket_rotate", "59s", 0,
       "tls_ticket_rotate: must be at least 1m, got '59s'"},
      {"listen", "tls_ticket_rotate", "0", 0,
       "tls_ticket_rotate: must be greater than 0, got '0'"},
      {"listen", "tls_ticket_rotate", "25h", 0,
       "tls_ticket_rotate: must be at most 24h, got '25h'"},
      {"listen", "tls_ticket_rotate", "1441m", 0,
       "tls_ticket_rotate: must be at most 24h, got '1441m'"},
      {"listen", "tls_ticket_rotate", "1d", 0,
       "tls_ticket_rotate: invalid duration '1d'"},
      {"listen", "tls_session_cache", "0", 0, NULL},
      {"listen", "tls_session_cache", "1", 1, NULL},
      {"listen", "tls_session_cache", "1000000", 1000000, NULL},
      {"listen", "tls_session_cache", "1000001", 0,
       "tls_session_cache: must be at most 1000000, got '1000001'"},
      {"listen", "tls_session_cache", "18446744073709551616", 0,
       "tls_session_cache: must be at most 1000000, got "
       "'18446744073709551616'"},
      {"listen", "tls_session_cache", "20k", 0,
       "tls_session_cache: invalid number '20k'"},
      {"listen", "tls_session_cache", "off", 0,
       "tls_session_cache: invalid number 'off'"},
      {"listen", "tls_session_timeout", "1ms", 1, NULL},
      {"listen", "tls_session_timeout", "300", 300000, NULL},
      {"listen", "tls_session_timeout", "24h", 86400000, NULL},
      {"listen", "tls_session_timeout", "86400001ms", 0,
       "tls_session_timeout: must be at most 24h, got '86400001ms'"},
      {"listen", "tls_session_timeout", "0s", 0,
       "tls_session_timeout: must be greater than 0, got '0s'"},
      {"listen", "tls_handshake_timeout", "250ms", 250, NULL},
      {"listen", "tls_handshake_timeout", "5m", 300000, NULL},
      {"listen", "tls_handshake_timeout", "301s", 0,
       "tls_handshake_timeout: must be at most 5m, got '301s'"},
      {"listen", "tls_handshake_timeout", "0", 0,
       "tls_handshake_timeout: must be greater than 0, got '0'"},
      {"listen", "tls_handshake_timeout", "-1s", 0,
       "tls_handshake_timeout: invalid duration '-1s'"},
      {"listen", "tls_ciphers", "\"\"", 0, "tls_ciphers: empty value ''"},
      {"listen", "tls_ciphersuites", "\"\"", 0,
       "tls_ciphersuites: empty value ''"},
      {"listen", "tls_ciphers", "HIGH MEDIUM", 0,
       "tls_ciphers: expected 1 argument, got 2"},
  };
  size_t i;

  for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    const value_case_t *c = &cases[i];
    char text[512], want[256];
    snprintf(text, sizeof(text),
             BASE "listen\n  bind 127.0.0.1:8443\n  certificate a b\n  %s %s\n",
             c->directive, c->arg);
    if (c->err == NULL) {
      sw_config_t *cfg = PARSE_OK(text);
      if (cfg == NULL || !SW_CHECK_UINT_EQ(cfg->ntls, 1) ||
          !SW_CHECK_UINT_EQ(tls_value_of(&cfg->tls[0], c->directive), c->want))
        printf("  case: %s %s\n", c->directive, c->arg);
      sw_config_free(cfg);
    } else {
      snprintf(want, sizeof(want), "conf:8: %s", c->err);
      PARSE_ERR(text, want);
    }
  }
}

static void test_tls_errors(void) {
  char text[2048];
  size_t len;
  int i;

  /* A TLS directive in a section without a certificate is reported when
   * the section ends (at the next section or the end of the file), at the
   * first such line. */
  PARSE_ERR(BASE "listen\n  bind 127.0.0.1:8443\n  tls_min_version 1.3\n",
            "conf:7: tls_min_version: this listen section has no "
            "certificate");
  PARSE_ERR(BASE
            "listen\n"
            "  tls_session_cache 0\n"
            "  tls_ciphers HIGH\n"
            "  bind 127.0.0.1:8443\n"
            "client\n"
            "  max_headers 5\n",
            "conf:6: tls_session_cache: this listen section has no "
            "certificate");
  PARSE_ERR(
      "listen\n"
      "  bind 127.0.0.1:8080\n"
      "  tls_handshake_timeout 5s\n"
      "upstream blue\n"
      "  server 127.0.0.1:9001\n",
      "conf:3: tls_handshake_timeout: this listen section has no "
      "certificate");
  /* Another section's certificate does not count. */
  PARSE_ERR(BASE
            "listen\n  bind 127.0.0.1:8443\n  certificate a b\n"
            "listen\n  bind 127.0.0.1:8444\n  tls_session_tickets off\n",
            "conf:10: tls_session_tickets: this listen section has no "
            "certificate");
  PARSE_ERR(BASE "listen\n  bind 127.0.0.1:8443\n  ocsp_response a.der\n",
            "conf:7: ocsp_response: this listen section has no certificate");
  PARSE_ERR(BASE
            "listen\n  bind 127.0.0.1:8443\n  tls_ticket_rotate 2h\n"
            "  ocsp_response a.der\n",
            "conf:7: tls_ticket_rotate: this listen section has no "
            "certificate");

  /* An OCSP response needs the certificate above it, and only one. */
  PARSE_ERR(BASE
            "listen\n  bind 127.0.0.1:8443\n  ocsp_response a.der\n"
            "  certificate a b\n",
            "conf:7: ocsp_response: no certificate line before it (it "
            "applies to the certificate just above it)");
  PARSE_ERR(BASE
            "listen\n"                 /* 5 */
            "  certificate a b\n"      /* 6 */
            "  ocsp_response a.der\n"  /* 7 */
            "  tls_min_version 1.3\n"  /* 8 */
            "  ocsp_response b.der\n", /* 9 */
            "conf:9: ocsp_response: the certificate of line 6 already has "
            "one (line 7)");
  PARSE_ERR(BASE "listen\n  certificate a b\n  ocsp_response \"\"\n",
            "conf:7: ocsp_response: empty path ''");
  PARSE_ERR(BASE "listen\n  certificate a b\n  ocsp_response a b\n",
            "conf:7: ocsp_response: expected 1 argument, got 2");

  /* certificate CERT KEY: two non-empty paths. */
  PARSE_ERR(BASE "listen\n  certificate a.pem\n",
            "conf:6: certificate: expected 2 arguments, got 1");
  PARSE_ERR(BASE "listen\n  certificate a.pem a.key extra\n",
            "conf:6: certificate: expected 2 arguments, got 3");
  PARSE_ERR(BASE "listen\n  certificate \"\" a.key\n",
            "conf:6: certificate: empty path ''");
  PARSE_ERR(BASE "listen\n  certificate a.pem \"\"\n",
            "conf:6: certificate: empty path ''");

  /* At most SW_TLS_CERTS_MAX certificates per section. */
  len = (size_t)snprintf(text, sizeof(text), BASE "listen\n  bind *:443\n");
  for (i = 0; i < SW_TLS_CERTS_MAX; i++)
    len += (size_t)snprintf(text + len, sizeof(text) - len,
                            "  certificate %d.pem %d.key\n", i, i);
  {
    sw_config_t *cfg = PARSE_OK(text);
    if (cfg != NULL && SW_CHECK_UINT_EQ(cfg->ntls, 1))
      SW_CHECK_UINT_EQ(cfg->tls[0].ncerts, SW_TLS_CERTS_MAX);
    sw_config_free(cfg);
  }
  snprintf(text + len, sizeof(text) - len, "  certificate x.pem x.key\n");
  PARSE_ERR(text, "conf:23: certificate: at most 16 per listen section");

  /* Single-valued within a section; the error frees what was gathered. */
  PARSE_ERR(BASE
            "listen\n  certificate a b\n  ocsp_response a.der\n"
            "  tls_ciphers HIGH\n  tls_ciphersuites TLS_AES_128_GCM_SHA256\n"
            "  tls_ciphers MEDIUM\n",
            "conf:10: duplicate directive 'tls_ciphers' (first set at line "
            "8)");
  PARSE_ERR(BASE
            "listen\n  bind *:443\n  certificate a b\n  bind *:80\n"
            "  tls_min_version 1.2\n  tls_min_version 1.3\n",
            "conf:10: duplicate directive 'tls_min_version' (first set at "
            "line 9)");

  /* A section with certificates and no bind would serve nothing. */
  PARSE_ERR(BASE "listen\n  certificate a b\nclient\n  max_headers 5\n",
            "conf:5: listen: this section has a certificate but no bind");
  PARSE_ERR(BASE "listen\n  certificate a b\n",
            "conf:5: listen: this section has a certificate but no bind");

  /* The TLS directives belong in listen sections only. */
  PARSE_ERR(BASE "client\n  certificate a b\n",
            "conf:6: unknown directive 'certificate' in section 'client' (it "
            "belongs in section 'listen')");
  PARSE_ERR(BASE "admin\n  tls_min_version 1.3\n",
            "conf:6: unknown directive 'tls_min_version' in section 'admin' "
            "(it belongs in section 'listen')");
  PARSE_ERR("certificate a b\n" BASE,
            "conf:1: directive 'certificate' outside any section");

  /* An error inside an HTTPS section, after its settings were gathered,
   * is reported as it is met. */
  PARSE_ERR(BASE
            "listen\n  certificate a b\n  tls_ciphers HIGH\n"
            "  bind 127.0.0.1:8080\n",
            "conf:8: bind: duplicate address '127.0.0.1:8080' (already bound "
            "at line 2)");
}

/* TLS to the upstreams: every directive in both colours, none at its
 * default except where a section shows the default written out. */
static void test_upstream_tls_full(void) {
  const sw_upstream_conf_t *b, *g;
  sw_config_t *cfg;

  cfg = PARSE_OK(BASE                                      /* 1-4 */
                 "  tls_name app.internal.example.com\n"   /* 5 */
                 "  tls on\n"                              /* 6 */
                 "  tls_ca /etc/switchd/upstream-ca.pem\n" /* 7 */
                 "  tls_verify on\n"                       /* 8 */
                 "upstream green\n"                        /* 9 */
                 "  server 127.0.0.1:9101\n"               /* 10 */
                 "  tls_verify off\n"                      /* 11 */
                 "  tls_ca \"certs/green ca.pem\"\n"       /* 12 */
                 "  tls on # verification off: tests only\n" /* 13 */);
  if (cfg == NULL)
    return;
  b = &cfg->upstream[SW_BLUE];
  SW_CHECK_INT_EQ(b->tls, 1);
  SW_CHECK_INT_EQ(b->tls_line, 6);
  SW_CHECK_STR_EQ(b->tls_ca, "/etc/switchd/upstream-ca.pem");
  SW_CHECK_INT_EQ(b->tls_verify, 1);
  SW_CHECK_STR_EQ(b->tls_name, "app.internal.example.com");
  /* Paths are stored as written, relative ones included. */
  g = &cfg->upstream[SW_GREEN];
  SW_CHECK_INT_EQ(g->tls, 1);
  SW_CHECK_INT_EQ(g->tls_line, 13);
  SW_CHECK_STR_EQ(g->tls_ca, "certs/green ca.pem");
  SW_CHECK_INT_EQ(g->tls_verify, 0);
  SW_CHECK(g->tls_name == NULL);
  sw_config_free(cfg);

  /* `tls on` alone: the system's store, verification on, and the name
   * left to health_host or the server's address. The other colour stays
   * plain. */
  cfg = PARSE_OK(BASE "  tls on\nupstream green\n  server 127.0.0.1:9101\n");
  if (cfg != NULL) {
    b = &cfg->upstream[SW_BLUE];
    SW_CHECK_INT_EQ(b->tls, 1);
    SW_CHECK_INT_EQ(b->tls_line, 5);
    SW_CHECK(b->tls_ca == NULL);
    SW_CHECK_INT_EQ(b->tls_verify, 1);
    SW_CHECK(b->tls_name == NULL);
    g = &cfg->upstream[SW_GREEN];
    SW_CHECK_INT_EQ(g->tls, 0);
    SW_CHECK_INT_EQ(g->tls_line, 0);
  }
  sw_config_free(cfg);

  /* `tls off` written out is the default, and has no tls line. */
  cfg = PARSE_OK(BASE "  tls off\n");
  if (cfg != NULL) {
    SW_CHECK_INT_EQ(cfg->upstream[SW_BLUE].tls, 0);
    SW_CHECK_INT_EQ(cfg->upstream[SW_BLUE].tls_line, 0);
  }
  sw_config_free(cfg);
}

/* Appends `tls on` (or, for `tls` itself, another directive) and the
 * directive to BASE's upstream blue, the directive as line 6; checks the
 * string or on/off stored, or the error. */
static void test_upstream_tls_values(void) {
  static const struct {
    const char *directive, *arg, *want, *err;
  } cases[] = {
      {"tls", "on", "1", NULL},
      {"tls", "yes", NULL, "tls: expected on or off, got 'yes'"},
      {"tls", "ON", NULL, "tls: expected on or off, got 'ON'"},
      {"tls", "on off", NULL, "tls: expected 1 argument, got 2"},
      {"tls_verify", "on", "1", NULL},
      {"tls_verify", "off", "0", NULL},
      {"tls_verify", "no", NULL, "tls_verify: expected on or off, got 'no'"},
      {"tls_ca", "ca.pem", "ca.pem", NULL},
      {"tls_ca", "\"/etc/ssl/my ca.pem\"", "/etc/ssl/my ca.pem", NULL},
      {"tls_ca", "\"\"", NULL, "tls_ca: empty path ''"},
      {"tls_ca", "a.pem b.pem", NULL, "tls_ca: expected 1 argument, got 2"},
      /* DNS names, stored as written. */
      {"tls_name", "app.example.com", "app.example.com", NULL},
      {"tls_name", "App-1.Example.COM", "App-1.Example.COM", NULL},
      {"tls_name", "localhost", "localhost", NULL},
      {"tls_name", "a", "a", NULL},
      {"tls_name", "xn--bcher-kva.example", "xn--bcher-kva.example", NULL},
      {"tls_name", "1e100.net", "1e100.net", NULL},
      {"tls_name", "10.0.0.1.nip.io", "10.0.0.1.nip.io", NULL},
      {"tls_name", "a--b.example", "a--b.example", NULL},
      {"tls_name", "\"\"", NULL, "tls_name: empty host name ''"},
      {"tls_name", "a_b.example", NULL,
       "tls_name: invalid host name 'a_b.example'"},
      {"tls_name", "*.example.com", NULL,
       "tls_name: invalid host name '*.example.com'"},
      {"tls_name", "app.example.com:443", NULL,
       "tls_name: invalid host name 'app.example.com:443'"},
      {"tls_name", "-app.example", NULL,
       "tls_name: invalid host name '-app.example'"},
      {"tls_name", "app-.example", NULL,
       "tls_name: invalid host name 'app-.example'"},
      {"tls_name", "app.example-", NULL,
       "tls_name: invalid host name 'app.example-'"},
      {"tls_name", "a..b", NULL, "tls_name: invalid host name 'a..b'"},
      {"tls_name", ".a", NULL, "tls_name: invalid host name '.a'"},
      {"tls_name", ".", NULL, "tls_name: invalid host name '.'"},
      {"tls_name", "a..", NULL, "tls_name: invalid host name 'a..'"},
      {"tls_name", "\"a b\"", NULL, "tls_name: invalid host name 'a b'"},
      {"tls_name", "caf\xc3\xa9.example", NULL,
       "tls_name: invalid host name 'caf\xc3\xa9.example'"},
      {"tls_name", "https://app.example", NULL,
       "tls_name: invalid host name 'https://app.example'"},
      {"tls_name", "app.example.com.", NULL,
       "tls_name: 'app.example.com.' ends with a dot (write the name "
       "without it)"},
      /* Addresses: leaving tls_name out is how one is checked. */
      {"tls_name", "10.0.0.1", NULL,
       "tls_name: '10.0.0.1' is an IP address, not a host name (leave "
       "tls_name out to check the server's IP address against the "
       "certificate's IP SANs)"},
      {"tls_name", "2001:db8::1", NULL,
       "tls_name: '2001:db8::1' is an IP address, not a host name (leave "
       "tls_name out to check the server's IP address against the "
       "certificate's IP SANs)"},
      {"tls_name", "[::1]", NULL,
       "tls_name: '[::1]' is an IP address, not a host name (leave "
       "tls_name out to check the server's IP address against the "
       "certificate's IP SANs)"},
      {"tls_name", "::ffff:10.0.0.1", NULL,
       "tls_name: '::ffff:10.0.0.1' is an IP address, not a host name "
       "(leave tls_name out to check the server's IP address against the "
       "certificate's IP SANs)"},
      /* A numeric last label is an IPv4 address or a typo of one. */
      {"tls_name", "10.0.0.256", NULL,
       "tls_name: invalid host name '10.0.0.256'"},
      {"tls_name", "123", NULL, "tls_name: invalid host name '123'"},
      {"tls_name", "app.123", NULL, "tls_name: invalid host name 'app.123'"},
  };
  size_t i;

  for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    char text[512], want[256];
    snprintf(text, sizeof(text), BASE "  %s\n  %s %s\n",
             strcmp(cases[i].directive, "tls") == 0 ? "max_idle 1" : "tls on",
             cases[i].directive, cases[i].arg);
    if (cases[i].err == NULL) {
      sw_config_t *cfg = PARSE_OK(text);
      const sw_upstream_conf_t *up;
      char got[64] = "";
      if (cfg == NULL) {
        printf("  case: %s %s\n", cases[i].directive, cases[i].arg);
        continue;
      }
      up = &cfg->upstream[SW_BLUE];
      if (strcmp(cases[i].directive, "tls") == 0)
        snprintf(got, sizeof(got), "%d", up->tls);
      else if (strcmp(cases[i].directive, "tls_verify") == 0)
        snprintf(got, sizeof(got), "%d", up->tls_verify);
      else if (strcmp(cases[i].directive, "tls_ca") == 0)
        snprintf(got, sizeof(got), "%s", up->tls_ca ? up->tls_ca : "(null)");
      else
        snprintf(got, sizeof(got), "%s",
                 up->tls_name ? up->tls_name : "(null)");
      if (!SW_CHECK_STR_EQ(got, cases[i].want))
        printf("  case: %s %s\n", cases[i].directive, cases[i].arg);
      sw_config_free(cfg);
    } else {
      snprintf(want, sizeof(want), "conf:6: %s", cases[i].err);
      PARSE_ERR(text, want);
    }
  }
}

/* The limits of a DNS name: labels of at most 63 bytes, 253 in all. */
static void test_upstream_tls_name_length(void) {
  char name[300], text[512], want[sizeof(name) + 64];
  sw_config_t *cfg;
  size_t i;

  /* 63 + 1 + 63 + 1 + 63 + 1 + 61 = 253. */
  memset(name, 'a', sizeof(name));
  name[63] = name[127] = name[191] = '.';
  name[253] = '\0';
  snprintf(text, sizeof(text), BASE "  tls on\n  tls_name %s\n", name);
  cfg = PARSE_OK(text);
  if (cfg != NULL)
    SW_CHECK_UINT_EQ(strlen(cfg->upstream[SW_BLUE].tls_name), 253);
  sw_config_free(cfg);

  name[253] = 'a';
  name[254] = '\0';
  snprintf(text, sizeof(text), BASE "  tls on\n  tls_name %s\n", name);
  PARSE_ERR(text, "conf:6: tls_name: longer than 253 bytes");

  /* A 64-byte label. */
  for (i = 0; i < 64; i++)
    name[i] = 'b';
  memcpy(name + 64, ".example", 9);
  snprintf(text, sizeof(text), BASE "  tls on\n  tls_name %s\n", name);
  snprintf(want, sizeof(want), "conf:6: tls_name: invalid host name '%s'",
           name);
  PARSE_ERR(text, want);
  /* One byte fewer is a label. */
  memcpy(name + 63, ".example", 9);
  snprintf(text, sizeof(text), BASE "  tls on\n  tls_name %s\n", name);
  cfg = PARSE_OK(text);
  sw_config_free(cfg);
}

static void test_upstream_tls_errors(void) {
  /* tls_ca, tls_verify and tls_name need `tls on` in the same section:
   * reported when the section ends (at the next section or the end of the
   * file), at the first of them. */
  PARSE_ERR(BASE "  tls_ca ca.pem\n",
            "conf:5: tls_ca: this upstream has no `tls on`");
  PARSE_ERR(BASE "  tls_verify off\n",
            "conf:5: tls_verify: this upstream has no `tls on`");
  PARSE_ERR(BASE "  tls_name app.example.com\n",
            "conf:5: tls_name: this upstream has no `tls on`");
  PARSE_ERR(BASE
            "  max_idle 8\n"           /* 5 */
            "  tls_name app.example\n" /* 6 */
            "  tls_verify on\n"        /* 7 */
            "  tls_ca ca.pem\n"        /* 8 */
            "client\n"                 /* 9 */
            "  max_headers nope\n",    /* 10 */
            "conf:6: tls_name: this upstream has no `tls on`");
  PARSE_ERR(BASE "  tls off\n  tls_ca ca.pem\n",
            "conf:6: tls_ca: this upstream has no `tls on`");
  PARSE_ERR(BASE "  tls_verify off\n  tls off\n",
            "conf:5: tls_verify: this upstream has no `tls on`");
  /* Each colour on its own: blue's `tls on` is not green's. */
  PARSE_ERR(BASE
            "  tls on\n"                /* 5 */
            "upstream green\n"          /* 6 */
            "  server 127.0.0.1:9101\n" /* 7 */
            "  tls_ca ca.pem\n"         /* 8 */
            "listen\n"                  /* 9 */
            "  bind 127.0.0.1:8081\n",  /* 10 */
            "conf:8: tls_ca: this upstream has no `tls on`");
  PARSE_ERR(
      "upstream green\n"
      "  tls_verify off\n"
      "upstream blue\n"
      "  server 127.0.0.1:9001\n"
      "  tls on\n"
      "listen\n"
      "  bind 127.0.0.1:8080\n",
      "conf:2: tls_verify: this upstream has no `tls on`");
  /* `tls on` may come after the settings it enables. */
  {
    sw_config_t *cfg = PARSE_OK(BASE "  tls_ca ca.pem\n  tls on\n");
    if (cfg != NULL) {
      SW_CHECK_STR_EQ(cfg->upstream[SW_BLUE].tls_ca, "ca.pem");
      SW_CHECK_INT_EQ(cfg->upstream[SW_BLUE].tls_line, 6);
    }
    sw_config_free(cfg);
  }

  /* Once per upstream section; the error frees what was set. */
  PARSE_ERR(BASE "  tls on\n  tls off\n",
            "conf:6: duplicate directive 'tls' (first set at line 5)");
  PARSE_ERR(BASE "  tls on\n  tls_ca a.pem\n  tls_ca b.pem\n",
            "conf:7: duplicate directive 'tls_ca' (first set at line 6)");
  PARSE_ERR(BASE "  tls on\n  tls_name a.example\n  tls_name b.example\n",
            "conf:7: duplicate directive 'tls_name' (first set at line 6)");
  PARSE_ERR(BASE "  tls on\n  tls_verify on\n  tls_verify on\n",
            "conf:7: duplicate directive 'tls_verify' (first set at line 6)");
  PARSE_ERR(BASE
            "  tls on\n  tls_ca a.pem\n  tls_name a.example\n"
            "  max_idle x\n",
            "conf:8: max_idle: invalid number 'x'");

  /* They belong in upstream sections only. */
  PARSE_ERR(BASE "listen\n  bind 127.0.0.1:8443\n  tls on\n",
            "conf:7: unknown directive 'tls' in section 'listen' (it belongs "
            "in section 'upstream')");
  PARSE_ERR(BASE "client\n  tls_ca ca.pem\n",
            "conf:6: unknown directive 'tls_ca' in section 'client' (it "
            "belongs in section 'upstream')");
  PARSE_ERR(BASE "  tls_min_version 1.3\n",
            "conf:5: unknown directive 'tls_min_version' in section "
            "'upstream blue' (it belongs in section 'listen')");
  PARSE_ERR("tls on\n" BASE, "conf:1: directive 'tls' outside any section");
}

static void test_api_edges(void) {
  char small[12];
  sw_config_t *cfg = NULL;
  int rc;

  rc = sw_config_parse("conf", "nope\n", 5, &cfg, NULL, 0);
  SW_CHECK_INT_EQ(rc, SW_ECONFIG);
  SW_CHECK(cfg == NULL);

  memset(small, 'x', sizeof(small));
  rc = sw_config_parse("conf", "nope\n", 5, &cfg, small, sizeof(small));
  SW_CHECK_INT_EQ(rc, SW_ECONFIG);
  SW_CHECK_STR_EQ(small, "conf:1: unk");

  rc = sw_config_parse("conf", "nope\n", 5, &cfg, small, 1);
  SW_CHECK_STR_EQ(small, "");

  /* Only `len` bytes count, not the terminator. */
  rc = sw_config_parse("conf", BASE "garbage", sizeof(BASE) - 1, &cfg, small,
                       sizeof(small));
  SW_CHECK_INT_EQ(rc, 0);
  sw_config_free(cfg);

  SW_CHECK_STR_EQ(sw_colour_name(SW_BLUE), "blue");
  SW_CHECK_STR_EQ(sw_colour_name(SW_GREEN), "green");
  SW_CHECK_STR_EQ(sw_colour_name((sw_colour_t)7), "unknown");
  sw_config_free(NULL);
}

static void test_load_example(void) {
  char err[256] = "";
  sw_config_t *cfg = NULL;
  const sw_upstream_conf_t *up;
  int rc;

  rc = sw_config_load("conf/switchd.conf", &cfg, err, sizeof(err));
  if (!SW_CHECK_INT_EQ(rc, 0) || cfg == NULL) {
    printf("  error: %s\n", err);
    return;
  }
  SW_CHECK_STR_EQ(cfg->file, "conf/switchd.conf");
  /* The example documents the defaults: every value must be one. */
  check_defaults_except_lists(cfg);
  if (SW_CHECK_UINT_EQ(cfg->nbinds, 1)) {
    SW_CHECK_STR_EQ(cfg->binds[0].name, "127.0.0.1:8080");
    SW_CHECK_INT_EQ(cfg->binds[0].tls, -1);
  }
  /* The HTTPS section is commented out: its files do not exist. */
  SW_CHECK_UINT_EQ(cfg->ntls, 0);
  up = &cfg->upstream[SW_BLUE];
  if (SW_CHECK_UINT_EQ(up->nservers, 2)) {
    SW_CHECK_STR_EQ(up->servers[0].name, "127.0.0.1:9001");
    SW_CHECK_STR_EQ(up->servers[1].name, "127.0.0.1:9002");
  }
  up = &cfg->upstream[SW_GREEN];
  if (SW_CHECK_UINT_EQ(up->nservers, 2)) {
    SW_CHECK_STR_EQ(up->servers[0].name, "127.0.0.1:9101");
    SW_CHECK_STR_EQ(up->servers[1].name, "127.0.0.1:9102");
  }
  /* The control-plane sections are written out, at their defaults, with
   * the optional values (dsn, state_file, bind...) commented out. */
  SW_CHECK(cfg->database.line != 0);
  SW_CHECK(cfg->watch.line != 0);
  sw_config_free(cfg);
}

/* The example is the reference: it must mention every directive. */
static void test_example_mentions_every_directive(void) {
  static const char *const names[] = {
      "live",
      "error_log",
      "access_log",
      "log_level",
      "pid_file",
      "shutdown_timeout",
      "buffer_budget",
      "bind",
      "trusted_proxy",
      "header_timeout",
      "idle_timeout",
      "body_timeout",
      "send_timeout",
      "tunnel_timeout",
      "min_send_rate",
      "max_header_size",
      "max_headers",
      "max_url",
      "max_body",
      "request_buffer",
      "response_buffer",
      "server",
      "connect_timeout",
      "response_timeout",
      "max_idle",
      "health",
      "health_path",
      "health_host",
      "health_status",
      "health_body",
      "health_interval",
      "health_timeout",
      "health_rise",
      "health_fall",
      "require_migration",
      "require_column",
      "require_query",
      "dsn",
      "statement_timeout",
      "lock_timeout",
      "gate_timeout",
      "drain_timeout",
      "state_file",
      "history",
      "hold_max",
      "hold_queue",
      "rollback_migrate",
      "rollback_migrate_timeout",
      "socket",
      "allow_uid",
      "token_file",
      "metrics_open",
      "enabled",
      "auto_window",
      "manual_window",
      "baseline_window",
      "min_requests",
      "not_errors",
      "max_errors",
      "alpha",
      "max_error_ratio",
      "ratio_window",
      "max_consecutive",
      "health_trigger",
      "verify_interval",
      "notify",
      "notify_timeout",
      "notify_retries",
      "certificate",
      "ocsp_response",
      "tls_min_version",
      "tls_ciphers",
      "tls_ciphersuites",
      "tls_session_tickets",
      "tls_ticket_rotate",
      "tls_session_cache",
      "tls_session_timeout",
      "tls_handshake_timeout",
      "tls",
      "tls_ca",
      "tls_verify",
      "tls_name",
  };
  static const char *const sections[] = {
      "global",   "listen",  "client", "upstream blue", "upstream green",
      "database", "cutover", "watch",  "admin",
  };
  static char text[65536];
  size_t n, i;
  FILE *f = fopen("conf/switchd.conf", "r");

  if (!SW_CHECK(f != NULL))
    return;
  n = fread(text, 1, sizeof(text) - 1, f);
  fclose(f);
  text[n] = '\0';
  SW_CHECK(n < sizeof(text) - 1);
  /* As a directive line, set or commented out, not just in prose. */
  for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
    char set[64], commented[64];
    snprintf(set, sizeof(set), "\n  %s ", names[i]);
    snprintf(commented, sizeof(commented), "\n  # %s ", names[i]);
    if (!SW_CHECK(strstr(text, set) != NULL || strstr(text, commented) != NULL))
      printf("  directive: %s\n", names[i]);
  }
  for (i = 0; i < sizeof(sections) / sizeof(sections[0]); i++) {
    char line[64];
    snprintf(line, sizeof(line), "\n%s\n", sections[i]);
    if (!SW_CHECK_STR_CONTAINS(text, line))
      printf("  section: %s\n", sections[i]);
  }
}

/* The example's HTTPS section is commented out (its files do not exist);
 * uncommented, it must parse, and every value it shows must be the
 * default. Only its directive lines are uncommented, not its prose. */
static void test_example_tls_section(void) {
  static const char *const directives[] = {
      "bind",
      "certificate",
      "ocsp_response",
      "tls_min_version",
      "tls_ciphers",
      "tls_ciphersuites",
      "tls_session_tickets",
      "tls_ticket_rotate",
      "tls_session_cache",
      "tls_session_timeout",
      "tls_handshake_timeout",
  };
  static char text[65536], out[65536];
  size_t n, w = 0, i;
  char *line, *next, *start;
  int in_section = 0, uncommented = 0;
  sw_config_t *cfg;
  FILE *f = fopen("conf/switchd.conf", "r");

  if (!SW_CHECK(f != NULL))
    return;
  n = fread(text, 1, sizeof(text) - 1, f);
  fclose(f);
  text[n] = '\0';
  for (line = text; *line != '\0'; line = next) {
    next = strchr(line, '\n');
    next = next ? next + 1 : line + strlen(line);
    start = line;
    if (strncmp(line, "# listen\n", 9) == 0) {
      in_section = 1;
      start = line + 2;
    } else if (in_section && strncmp(line, "  # ", 4) == 0) {
      for (i = 0; i < sizeof(directives) / sizeof(directives[0]); i++) {
        size_t len = strlen(directives[i]);
        if (strncmp(line + 4, directives[i], len) == 0 && line[4 + len] == ' ')
          break;
      }
      if (i < sizeof(directives) / sizeof(directives[0])) {
        memcpy(out + w, "  ", 2);
        w += 2;
        start = line + 4;
        uncommented++;
      }
    } else if (in_section && line[0] == '\n') {
      in_section = 0;
    }
    memcpy(out + w, start, (size_t)(next - start));
    w += (size_t)(next - start);
  }
  out[w] = '\0';
  SW_CHECK_INT_EQ(uncommented, 12);

  cfg = PARSE_OK(out);
  if (cfg == NULL)
    return;
  if (SW_CHECK_UINT_EQ(cfg->nbinds, 2)) {
    SW_CHECK_INT_EQ(cfg->binds[0].tls, -1);
    SW_CHECK_STR_EQ(cfg->binds[1].name, "0.0.0.0:443");
    SW_CHECK_INT_EQ(cfg->binds[1].tls, 0);
  }
  if (SW_CHECK_UINT_EQ(cfg->ntls, 1)) {
    const sw_tls_conf_t *t = &cfg->tls[0];
    sw_tls_conf_t defaults = *t;
    if (SW_CHECK_UINT_EQ(t->ncerts, 2)) {
      SW_CHECK(t->certs[0].ocsp != NULL);
      SW_CHECK(t->certs[1].ocsp == NULL);
    }
    /* The cipher lists have no default of their own (OpenSSL's): the
     * example shows a value. */
    SW_CHECK(t->ciphers != NULL && t->ciphersuites != NULL);
    defaults.ciphers = NULL;
    defaults.ciphersuites = NULL;
    CHECK_TLS_DEFAULTS(&defaults);
  }
  sw_config_free(cfg);
}

/* The example's upstream TLS lines are commented out (`tls off` is the
 * default, and the others need `tls on`); uncommented with `tls on`, they
 * must parse, and tls_verify must show its default. */
static void test_example_upstream_tls(void) {
  static const char *const directives[] = {"tls", "tls_ca", "tls_verify",
                                           "tls_name"};
  static char text[65536], out[65536];
  size_t n, w = 0, i;
  char *line, *next, *start;
  int uncommented = 0, tls_line = 0, lineno = 0;
  sw_config_t *cfg;
  FILE *f = fopen("conf/switchd.conf", "r");

  if (!SW_CHECK(f != NULL))
    return;
  n = fread(text, 1, sizeof(text) - 1, f);
  fclose(f);
  text[n] = '\0';
  for (line = text; *line != '\0'; line = next) {
    next = strchr(line, '\n');
    next = next ? next + 1 : line + strlen(line);
    start = line;
    lineno++;
    for (i = 0; i < sizeof(directives) / sizeof(directives[0]); i++) {
      size_t len = strlen(directives[i]);
      if (strncmp(line, "  # ", 4) == 0 &&
          strncmp(line + 4, directives[i], len) == 0 && line[4 + len] == ' ')
        break;
    }
    if (i < sizeof(directives) / sizeof(directives[0])) {
      start = line + 4;
      memcpy(out + w, "  ", 2);
      w += 2;
      uncommented++;
      if (strncmp(start, "tls off\n", 8) == 0) {
        memcpy(out + w, "tls on\n", 7);
        w += 7;
        tls_line = lineno;
        continue;
      }
    }
    memcpy(out + w, start, (size_t)(next - start));
    w += (size_t)(next - start);
  }
  out[w] = '\0';
  /* In upstream blue only; green says it takes the same directives. */
  SW_CHECK_INT_EQ(uncommented, 4);

  cfg = PARSE_OK(out);
  if (cfg == NULL)
    return;
  {
    const sw_upstream_conf_t *up = &cfg->upstream[SW_BLUE];
    SW_CHECK_INT_EQ(up->tls, 1);
    SW_CHECK_INT_EQ(up->tls_line, tls_line);
    SW_CHECK(up->tls_ca != NULL);
    SW_CHECK_INT_EQ(up->tls_verify, 1);
    SW_CHECK(up->tls_name != NULL);
    SW_CHECK_INT_EQ(cfg->upstream[SW_GREEN].tls, 0);
  }
  sw_config_free(cfg);
}

static void test_load_errors(void) {
  char path[] = "/tmp/sw-test-config-XXXXXX";
  char err[256] = "";
  char want[512];
  sw_config_t *cfg = NULL;
  int fd, rc;

  rc = sw_config_load("/nonexistent/switchd.conf", &cfg, err, sizeof(err));
  SW_CHECK_INT_EQ(rc, SW_ECONFIG);
  SW_CHECK(cfg == NULL);
  SW_CHECK_STR_EQ(err,
                  "/nonexistent/switchd.conf: cannot read: No such file or "
                  "directory");

  rc = sw_config_load("conf", &cfg, err, sizeof(err));
  SW_CHECK_INT_EQ(rc, SW_ECONFIG);
  SW_CHECK_STR_EQ(err, "conf: cannot read: Is a directory");

  /* Errors in a loaded file carry its path. */
  fd = mkstemp(path);
  if (!SW_CHECK(fd >= 0))
    return;
  {
    static const char bad[] = BASE "client\n  max_url big\n";
    SW_CHECK(write(fd, bad, strlen(bad)) == (ssize_t)strlen(bad));
    close(fd);
  }
  rc = sw_config_load(path, &cfg, err, sizeof(err));
  SW_CHECK_INT_EQ(rc, SW_ECONFIG);
  snprintf(want, sizeof(want), "%s:6: max_url: invalid size 'big'", path);
  SW_CHECK_STR_EQ(err, want);

  /* An empty file reads fine and fails validation. */
  fd = open(path, O_WRONLY | O_TRUNC);
  if (fd >= 0)
    close(fd);
  rc = sw_config_load(path, &cfg, err, sizeof(err));
  SW_CHECK_INT_EQ(rc, SW_ECONFIG);
  snprintf(want, sizeof(want),
           "%s:1: no bind: at least one 'listen' section with a 'bind' is "
           "required",
           path);
  SW_CHECK_STR_EQ(err, want);
  unlink(path);
}

SW_TEST_MAIN(SW_TASK(test_defaults),
             SW_TASK(test_full),
             SW_TASK(test_durations),
             SW_TASK(test_sizes),
             SW_TASK(test_counts),
             SW_TASK(test_binds),
             SW_TASK(test_trusted_parse),
             SW_TASK(test_trusted_match),
             SW_TASK(test_comments_and_quotes),
             SW_TASK(test_errors),
             SW_TASK(test_validation),
             SW_TASK(test_full_control),
             SW_TASK(test_control_values),
             SW_TASK(test_cutover_hold),
             SW_TASK(test_health_status),
             SW_TASK(test_health),
             SW_TASK(test_requires),
             SW_TASK(test_database),
             SW_TASK(test_cutover_and_admin_sections),
             SW_TASK(test_control_sections_errors),
             SW_TASK(test_watch_full),
             SW_TASK(test_watch_off),
             SW_TASK(test_watch_values),
             SW_TASK(test_watch_decimals),
             SW_TASK(test_watch_not_errors),
             SW_TASK(test_watch_notify),
             SW_TASK(test_watch_section),
             SW_TASK(test_tls_defaults),
             SW_TASK(test_tls_full),
             SW_TASK(test_tls_sections),
             SW_TASK(test_tls_values),
             SW_TASK(test_tls_errors),
             SW_TASK(test_upstream_tls_full),
             SW_TASK(test_upstream_tls_values),
             SW_TASK(test_upstream_tls_name_length),
             SW_TASK(test_upstream_tls_errors),
             SW_TASK(test_api_edges),
             SW_TASK(test_load_example),
             SW_TASK(test_example_mentions_every_directive),
             SW_TASK(test_example_tls_section),
             SW_TASK(test_example_upstream_tls),
             SW_TASK(test_load_errors))
