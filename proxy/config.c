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
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* No directive takes more than one argument; a few more slots let the
 * "expected 1 argument, got N" message count what was written. */
#define SW_CONF_MAX_ARGS 8

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
} sw_section_t;

typedef struct sw_parser_s sw_parser_t;
typedef struct sw_directive_s sw_directive_t;

/* A directive handler gets its one argument and a pointer to the field it
 * sets: the table's offset applied to the section's struct (sw_config_t, or
 * the sw_upstream_conf_t of the open colour). */
typedef int sw_directive_fn(sw_parser_t *p,
                            const sw_directive_t *d,
                            void *field,
                            const char *arg);

struct sw_directive_s {
  sw_section_t section;
  const char *name;
  sw_directive_fn *handler;
  size_t offset;  /* of the field inside the section's struct */
  uint64_t min;   /* smallest number accepted by numeric handlers */
  int repeatable; /* bind, server, trusted_proxy: a list, not a value */
};

static sw_directive_fn set_live, set_error_log, set_log_level, set_path;
static sw_directive_fn set_duration, set_size, set_count;
static sw_directive_fn set_unsigned, add_bind, add_trusted, add_server;
static sw_directive_fn set_buffer, set_head_size;

/* Bounds that keep sizes within what the data path represents: head
 * offsets are 32-bit and a single buffer is written with one uv_buf_t. */
#define SW_MAX_BUFFER ((uint64_t)1 << 30)
#define SW_MAX_HEAD_SIZE ((uint64_t)1 << 20)

#define SW_CFG(f) offsetof(sw_config_t, f)
#define SW_UPS(f) offsetof(sw_upstream_conf_t, f)

/* Every directive the parser accepts. A name may appear in several sections
 * (idle_timeout); the lookup is by section and name. */
static const sw_directive_t sw_directives[] = {
    {SW_SECTION_GLOBAL, "live", set_live, SW_CFG(live), 0, 0},
    {SW_SECTION_GLOBAL, "error_log", set_error_log, SW_CFG(error_log), 0, 0},
    {SW_SECTION_GLOBAL, "access_log", set_path, SW_CFG(access_log), 0, 0},
    {SW_SECTION_GLOBAL, "log_level", set_log_level, SW_CFG(log_level), 0, 0},
    {SW_SECTION_GLOBAL, "pid_file", set_path, SW_CFG(pid_file), 0, 0},
    {SW_SECTION_GLOBAL, "shutdown_timeout", set_duration,
     SW_CFG(shutdown_timeout_ms), 1, 0},
    {SW_SECTION_GLOBAL, "buffer_budget", set_size, SW_CFG(buffer_budget), 1, 0},

    {SW_SECTION_LISTEN, "bind", add_bind, 0, 0, 1},

    {SW_SECTION_CLIENT, "trusted_proxy", add_trusted, 0, 0, 1},
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

    {SW_SECTION_UPSTREAM, "server", add_server, 0, 0, 1},
    {SW_SECTION_UPSTREAM, "connect_timeout", set_duration,
     SW_UPS(connect_timeout_ms), 1, 0},
    {SW_SECTION_UPSTREAM, "response_timeout", set_duration,
     SW_UPS(response_timeout_ms), 1, 0},
    {SW_SECTION_UPSTREAM, "idle_timeout", set_duration, SW_UPS(idle_timeout_ms),
     1, 0},
    /* 0 is allowed: it disables pooling for that colour. */
    {SW_SECTION_UPSTREAM, "max_idle", set_unsigned, SW_UPS(max_idle), 0, 0},
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
  /* Line where each single-valued directive was set, per colour for the
   * upstream sections (global and client use slot 0), so a repeat is an error
   * that can point at the first one. */
  int seen[SW_NDIRECTIVES][SW_COLOURS];
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
                    const char *arg) {
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
                    const char *arg) {
  if (*arg == '\0')
    return bad_value(p, d, "empty path", arg);
  return replace_string(p, field, arg);
}

/* "off" would silently become a file named off in the working directory;
 * the error log cannot be turned off, so say so. */
static int set_error_log(sw_parser_t *p,
                         const sw_directive_t *d,
                         void *field,
                         const char *arg) {
  if (strcmp(arg, "off") == 0)
    return bad_value(p, d, "cannot be turned off (use a path or stderr), got",
                     arg);
  return set_path(p, d, field, arg);
}

static int set_log_level(sw_parser_t *p,
                         const sw_directive_t *d,
                         void *field,
                         const char *arg) {
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

static int set_duration(sw_parser_t *p,
                        const sw_directive_t *d,
                        void *field,
                        const char *arg) {
  uint64_t v = 0;
  int rc = parse_duration(arg, &v);

  rc = check_range(p, d, "invalid duration", arg, rc, v, UINT64_MAX);
  if (rc == 0)
    *(uint64_t *)field = v;
  return rc;
}

static int set_size(sw_parser_t *p,
                    const sw_directive_t *d,
                    void *field,
                    const char *arg) {
  uint64_t v = 0;
  int rc = parse_size(arg, &v);

  rc = check_range(p, d, "invalid size", arg, rc, v, UINT64_MAX);
  if (rc == 0)
    *(uint64_t *)field = v;
  return rc;
}

static int set_buffer(sw_parser_t *p,
                      const sw_directive_t *d,
                      void *field,
                      const char *arg) {
  uint64_t v = 0;
  int rc = parse_size(arg, &v);

  rc = check_range(p, d, "invalid size", arg, rc, v, SW_MAX_BUFFER);
  if (rc == 0)
    *(uint64_t *)field = v;
  return rc;
}

static int set_head_size(sw_parser_t *p,
                         const sw_directive_t *d,
                         void *field,
                         const char *arg) {
  uint64_t v = 0;
  int rc = parse_size(arg, &v);

  rc = check_range(p, d, "invalid size", arg, rc, v, SW_MAX_HEAD_SIZE);
  if (rc == 0)
    *(size_t *)field = (size_t)v;
  return rc;
}

static int set_count(sw_parser_t *p,
                     const sw_directive_t *d,
                     void *field,
                     const char *arg) {
  uint64_t v = 0;
  int rc = parse_count(arg, &v);

  rc = check_range(p, d, "invalid number", arg, rc, v, SIZE_MAX);
  if (rc == 0)
    *(size_t *)field = (size_t)v;
  return rc;
}

static int set_unsigned(sw_parser_t *p,
                        const sw_directive_t *d,
                        void *field,
                        const char *arg) {
  uint64_t v = 0;
  int rc = parse_count(arg, &v);

  rc = check_range(p, d, "invalid number", arg, rc, v, UINT_MAX);
  if (rc == 0)
    *(unsigned *)field = (unsigned)v;
  return rc;
}

static int add_bind(sw_parser_t *p,
                    const sw_directive_t *d,
                    void *field,
                    const char *arg) {
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
  *slot = b;
  return 0;
}

static int add_server(sw_parser_t *p,
                      const sw_directive_t *d,
                      void *field,
                      const char *arg) {
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
                       const char *arg) {
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

static int open_section(sw_parser_t *p,
                        sw_section_t section,
                        char **argv,
                        int argc) {
  sw_upstream_conf_t *up;
  sw_colour_t colour;

  if (section != SW_SECTION_UPSTREAM) {
    if (argc != 1)
      return conf_error(p, p->line, "%s: expected no arguments, got %d",
                        argv[0], argc - 1);
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

static int parse_directive(sw_parser_t *p, char **argv, int argc) {
  const sw_directive_t *d = NULL;
  const sw_directive_t *elsewhere;
  char *base;
  int slot, *seen;

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
    if (elsewhere != NULL)
      return conf_error(p, p->line,
                        "unknown directive '%s' in section '%s' (it belongs "
                        "in section '%s')",
                        argv[0], section_name(p->section, p->colour),
                        elsewhere->section == SW_SECTION_UPSTREAM
                            ? "upstream"
                            : section_name(elsewhere->section, SW_BLUE));
    return conf_error(p, p->line, "unknown directive '%s' in section '%s'",
                      argv[0], section_name(p->section, p->colour));
  }
  if (argc != 2)
    return conf_error(p, p->line, "%s: expected 1 argument, got %d", d->name,
                      argc - 1);

  slot = d->section == SW_SECTION_UPSTREAM ? (int)p->colour : 0;
  seen = &p->seen[d - sw_directives][slot];
  if (!d->repeatable && *seen != 0)
    return conf_error(p, p->line,
                      "duplicate directive '%s' (first set at line %d)",
                      d->name, *seen);
  *seen = p->line;

  if (d->section == SW_SECTION_UPSTREAM)
    base = (char *)&p->cfg->upstream[p->colour];
  else
    base = (char *)p->cfg;
  return d->handler(p, d, base + d->offset, argv[1]);
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

/* Checks that need the whole file. Each points at the line most likely to
 * need editing, falling back to the end of the file. */
static int validate(sw_parser_t *p, int eof_line) {
  const sw_config_t *cfg = p->cfg;
  const sw_upstream_conf_t *live = &cfg->upstream[cfg->live];
  const char *colour = sw_colour_name(cfg->live);
  int line;

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
  return 0;
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
    cfg->upstream[c].connect_timeout_ms = 5 * 1000;
    cfg->upstream[c].response_timeout_ms = 60 * 1000;
    cfg->upstream[c].idle_timeout_ms = 1000;
    cfg->upstream[c].max_idle = 64;
  }

  if (cfg->file == NULL || cfg->error_log == NULL || cfg->access_log == NULL)
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
  /* An empty file still has a line 1 to point at. */
  if (rc == 0)
    rc = validate(&p, p.line > 0 ? p.line : 1);

  if (rc == 0)
    *out = p.cfg;
  else
    sw_config_free(p.cfg);
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
  int c;

  if (cfg == NULL)
    return;
  free(cfg->file);
  free(cfg->error_log);
  free(cfg->access_log);
  free(cfg->pid_file);
  free(cfg->binds);
  free(cfg->trusted);
  for (c = 0; c < SW_COLOURS; c++)
    free(cfg->upstream[c].servers);
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
