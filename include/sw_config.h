/* The configuration file: an HAProxy-like text file parsed into one plain
 * value struct. The parser does no I/O other than reading the file and never
 * touches runtime objects: applying a config is the caller's job, so a bad
 * file can be rejected while the old config keeps running.
 *
 * Syntax: a section keyword at the start of a line opens a section
 * (`global`, `client`, `listen`, `upstream blue`, `upstream green`); each
 * following line is one directive and its arguments; `#` starts a comment.
 * Durations take `ms`, `s`, `m` or `h` (a bare number is seconds); sizes take
 * `k`, `m` or `g` (binary multiples; a bare number is bytes). Every error
 * reads `FILE:LINE: message`, naming the directive. */
#ifndef SW_CONFIG_H
#define SW_CONFIG_H

#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "sw_types.h"

typedef enum sw_log_level_e {
  SW_LOG_DEBUG = 0,
  SW_LOG_INFO,
  SW_LOG_WARN,
  SW_LOG_ERROR,
} sw_log_level_t;

/* One `server HOST:PORT` line of an upstream section. */
typedef struct sw_server_conf_s {
  struct sockaddr_storage addr; /* numeric IPv4 or IPv6 address and port */
  char name[64];                /* "127.0.0.1:9001" as written, normalised */
  int line;                     /* where it was configured */
} sw_server_conf_t;

/* An `upstream blue` or `upstream green` section. */
typedef struct sw_upstream_conf_s {
  sw_server_conf_t *servers; /* round robin inside the colour */
  size_t nservers;
  uint64_t connect_timeout_ms;  /* connect(); default 5 s */
  uint64_t response_timeout_ms; /* no byte from the upstream; default 60 s */
  uint64_t idle_timeout_ms;     /* pooled idle connection; default 1 s */
  unsigned max_idle;            /* idle pooled connections per server; 64 */
  int line;                     /* line of the section keyword, 0 if absent */
} sw_upstream_conf_t;

/* A `trusted_proxy ADDR[/PREFIX]` entry. */
typedef struct sw_cidr_s {
  int family;             /* AF_INET or AF_INET6 */
  unsigned char addr[16]; /* network byte order, 4 bytes used for IPv4 */
  int prefix;             /* 0..32 or 0..128 */
} sw_cidr_t;

/* One `bind HOST:PORT` line of a listen section. */
typedef struct sw_bind_conf_s {
  struct sockaddr_storage addr;
  char name[64];
  int line;
} sw_bind_conf_t;

typedef struct sw_config_s {
  char *file; /* path it was read from */

  /* global */
  sw_colour_t live;             /* `live blue|green`; default blue */
  char *error_log;              /* path or "stderr"; default "stderr" */
  char *access_log;             /* path, "stderr" or "off"; default "off" */
  sw_log_level_t log_level;     /* debug|info|warn|error; default info */
  char *pid_file;               /* NULL when absent */
  uint64_t shutdown_timeout_ms; /* SIGTERM grace; default 30 s */
  uint64_t buffer_budget;       /* all buffered bytes; default 256 MiB */

  /* listen (several sections and several binds allowed; at least one) */
  sw_bind_conf_t *binds;
  size_t nbinds;

  /* client: limits and timeouts of downstream connections */
  sw_cidr_t *trusted;
  size_t ntrusted;
  uint64_t header_timeout_ms; /* whole header block; default 10 s -> 408 */
  uint64_t idle_timeout_ms;   /* between keep-alive requests; default 60 s */
  uint64_t body_timeout_ms;   /* no body byte; default 60 s -> 408 */
  uint64_t send_timeout_ms;   /* client reads nothing; default 60 s */
  uint64_t tunnel_timeout_ms; /* upgraded tunnel idle; default 1 h */
  uint64_t min_send_rate;   /* bytes/s over 5 s windows; default 1024; 0 off */
  size_t max_header_size;   /* default 16 KiB -> 431 */
  size_t max_headers;       /* default 100 -> 431 */
  size_t max_url;           /* default 8 KiB -> 414 */
  uint64_t max_body;        /* default 64 MiB -> 413 */
  uint64_t request_buffer;  /* default 1 MiB */
  uint64_t response_buffer; /* default 1 MiB */

  sw_upstream_conf_t upstream[SW_COLOURS];
} sw_config_t;

/* Parses `len` bytes of `text` named `file` (for messages). On success stores
 * a new config in *out and returns 0. On failure returns SW_ECONFIG and writes
 * "FILE:LINE: message" into err. */
int sw_config_parse(const char *file,
                    const char *text,
                    size_t len,
                    sw_config_t **out,
                    char *err,
                    size_t errlen);

/* Reads and parses a file; an unreadable file is an error naming it. */
int sw_config_load(const char *path,
                   sw_config_t **out,
                   char *err,
                   size_t errlen);

void sw_config_free(sw_config_t *cfg);

/* Whether a peer address is inside one of the trusted_proxy ranges. */
int sw_config_trusted(const sw_config_t *cfg, const struct sockaddr *sa);

const char *sw_colour_name(sw_colour_t c);

#endif
