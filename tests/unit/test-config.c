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
  }
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

static uint64_t value_of(const sw_config_t *cfg, const char *directive) {
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
      if (!SW_CHECK_UINT_EQ_AT(file, line, value_of(cfg, c->directive),
                               c->want))
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
            "in section 'listen')");
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

/* The API's edges: no error buffer, a tiny one, odd names. */
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
  if (SW_CHECK_UINT_EQ(cfg->nbinds, 1))
    SW_CHECK_STR_EQ(cfg->binds[0].name, "127.0.0.1:8080");
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
  };
  char text[16384];
  size_t n, i;
  FILE *f = fopen("conf/switchd.conf", "r");

  if (!SW_CHECK(f != NULL))
    return;
  n = fread(text, 1, sizeof(text) - 1, f);
  fclose(f);
  text[n] = '\0';
  SW_CHECK(n < sizeof(text) - 1);
  for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
    char line[64];
    snprintf(line, sizeof(line), " %s ", names[i]);
    if (!SW_CHECK_STR_CONTAINS(text, line))
      printf("  directive: %s\n", names[i]);
  }
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
             SW_TASK(test_api_edges),
             SW_TASK(test_load_example),
             SW_TASK(test_example_mentions_every_directive),
             SW_TASK(test_load_errors))
