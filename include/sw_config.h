/* The configuration file: an HAProxy-like text file parsed into one plain
 * value struct. The parser does no I/O other than reading the file and never
 * touches runtime objects: applying a config is the caller's job, so a bad
 * file can be rejected while the old config keeps running.
 *
 * Syntax: a section keyword at the start of a line opens a section
 * (`global`, `client`, `listen`, `upstream blue`, `upstream green`,
 * `database`, `cutover`, `admin`); each following line is one directive and
 * its arguments; `#` starts a comment.
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

/* Longest health_path, health_host and health_body accepted: a config that
 * passes `switchd -t` must not be refused when the checks start. */
#define SW_CONFIG_HEALTH_PATH_MAX 2048
#define SW_CONFIG_HEALTH_HOST_MAX 255
#define SW_CONFIG_HEALTH_BODY_MAX 1024

/* Active health checks of one colour's servers (the health_* directives of
 * its upstream section): an HTTP GET of `path` on every server, all the time,
 * standby colour included. */
typedef struct sw_health_conf_s {
  char *path;                 /* health_path; default "/health/detailed/" */
  char *host;                 /* health_host; NULL: the server's address */
  int status_min, status_max; /* health_status; default 200..299 */
  char *body;                 /* health_body substring; NULL: not checked */
  uint64_t interval_ms;       /* health_interval; default 2 s */
  uint64_t timeout_ms;        /* health_timeout; default 1 s, < interval */
  unsigned rise, fall;        /* health_rise, health_fall; default 3, 3 */
  int enabled;                /* health on|off; default on */
} sw_health_conf_t;

typedef enum sw_require_kind_e {
  SW_REQUIRE_MIGRATION = 0, /* require_migration APP NAME: django_migrations */
  SW_REQUIRE_COLUMN,        /* require_column TABLE COLUMN: it exists */
  SW_REQUIRE_QUERY,         /* require_query "SQL": it returns true */
} sw_require_kind_t;

/* One thing a colour's code needs from the database schema. */
typedef struct sw_require_s {
  sw_require_kind_t kind;
  char *a;  /* app, table (may be schema-qualified) or the SQL */
  char *b;  /* migration name, column, or NULL for a query */
  int line; /* where it was configured */
} sw_require_t;

/* An `upstream blue` or `upstream green` section. */
typedef struct sw_upstream_conf_s {
  sw_server_conf_t *servers; /* round robin inside the colour */
  size_t nservers;
  uint64_t connect_timeout_ms;  /* connect(); default 5 s */
  uint64_t response_timeout_ms; /* no byte from the upstream; default 60 s */
  uint64_t idle_timeout_ms;     /* pooled idle connection; default 1 s */
  unsigned max_idle;            /* idle pooled connections per server; 64 */
  int line;                     /* line of the section keyword, 0 if absent */
  sw_health_conf_t health;
  sw_require_t *requires; /* in file order; checked by the verifier */
  size_t nrequires;
  /* TLS to this colour's servers (issue 5), for requests and health
   * checks alike. */
  int tls;        /* `tls on|off`; default off */
  char *tls_ca;   /* `tls_ca FILE` (PEM); NULL: the system's store */
  int tls_verify; /* `tls_verify on|off`: chain and name; default on */
  char *tls_name; /* `tls_name HOST`: SNI and the name checked; NULL:
                   * health_host when set, else the server's IP address
                   * (checked against the certificate's IP SANs), no SNI */
  int tls_line;   /* line of the `tls on` directive, 0 if absent */
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
  int tls; /* index into sw_config_t.tls of its section's TLS, or -1 */
} sw_bind_conf_t;

/* TLS of one listen section (issue 5). A listen section with at least one
 * `certificate` line serves HTTPS on all its binds. */
#define SW_TLS_CERTS_MAX 16
typedef struct sw_tls_cert_conf_s {
  char *cert; /* `certificate CERT_PEM KEY_PEM`: the chain, leaf first */
  char *key;
  char *ocsp; /* `ocsp_response FILE` after it: DER response to staple */
  int line;   /* of the certificate line */
  int ocsp_line;
} sw_tls_cert_conf_t;

typedef struct sw_tls_conf_s {
  sw_tls_cert_conf_t certs[SW_TLS_CERTS_MAX]; /* the first is the default */
  size_t ncerts;
  int min_version;    /* `tls_min_version 1.2|1.3`: 12 or 13; default 12 */
  char *ciphers;      /* `tls_ciphers` (TLS 1.2); NULL: OpenSSL's */
  char *ciphersuites; /* `tls_ciphersuites` (TLS 1.3); NULL: OpenSSL's */
  int tickets;        /* `tls_session_tickets on|off`; default on */
  uint64_t ticket_rotate_ms;     /* `tls_ticket_rotate`; default 1h */
  size_t session_cache;          /* `tls_session_cache N`; 20000; 0: off */
  uint64_t session_timeout_ms;   /* `tls_session_timeout`; default 5 min */
  uint64_t handshake_timeout_ms; /* `tls_handshake_timeout`; default 10 s */
  int line;                      /* of the listen section keyword */
} sw_tls_conf_t;

/* The `database` section: how the verifier reaches PostgreSQL. */
typedef struct sw_database_conf_s {
  char *dsn; /* libpq connection string or URI; NULL when absent */
  uint64_t connect_timeout_ms;   /* default 5 s */
  uint64_t statement_timeout_ms; /* default 5 s; at most INT32_MAX ms */
  uint64_t lock_timeout_ms;      /* default 1 s; at most INT32_MAX ms */
  int line;                      /* line of the section keyword, 0 if absent */
} sw_database_conf_t;

/* The `cutover` section. */
typedef struct sw_cutover_conf_s {
  uint64_t gate_timeout_ms;  /* gating deadline, then aborted; default 10 min */
  uint64_t drain_timeout_ms; /* old colour's in-flight requests; default 30 s */
  char *state_file;          /* NULL: no persistence */
  unsigned history;          /* past transitions kept; default 50 */
  /* The hold barrier (DESIGN §4): how long requests may be held, and how
   * many; past the count new requests get 503 with Retry-After. */
  uint64_t hold_max_ms; /* default 2 s */
  size_t hold_queue;    /* default 2000 */
  /* The reverse migration an automatic rollback runs inside a hold when
   * the old colour's schema requirements fail (`/bin/sh -c`); NULL: none,
   * such a rollback is blocked. Config only: never set over the API. */
  char *rollback_migrate;
  uint64_t rollback_migrate_timeout_ms; /* then killed; default 60 s */
} sw_cutover_conf_t;

/* The `watch` section (DESIGN §4, §5): the error watch armed at every
 * flip, the rollback windows, and who is told. Every trigger can be turned
 * off with `off` in place of its threshold. */
#define SW_CONFIG_WATCH_EXCLUDE_MAX 16
typedef struct sw_watch_conf_s {
  int enabled;                 /* `enabled on|off`; default on */
  uint64_t auto_window_ms;     /* `auto_window`; default 5 min */
  uint64_t manual_window_ms;   /* `manual_window`, from the flip; 30 min;
                                * must be >= auto_window */
  uint64_t baseline_window_ms; /* `baseline_window`; default 10 min */
  uint64_t min_requests;       /* `min_requests`; default 20 */
  int not_errors[SW_CONFIG_WATCH_EXCLUDE_MAX]; /* `not_errors 501 505`: */
  size_t nnot_errors; /* statuses 500..599 only; default 501 505 */
  int r1;             /* `max_errors N|off`; default on, 10 */
  uint64_t max_errors;
  double alpha;                /* `alpha`; in (0, 1]; default 0.001 */
  int r2;                      /* `max_error_ratio R|off`; default on */
  double max_error_ratio;      /* in (0, 1]; "50%" or "0.5"; default 0.5 */
  uint64_t ratio_window_ms;    /* `ratio_window`; default 10 s, >= 1 s */
  int r3;                      /* `max_consecutive N|off`; default on, 5 */
  uint64_t max_consecutive;    /* >= 1 */
  int r4;                      /* `health_trigger on|off`; default on */
  uint64_t verify_interval_ms; /* `verify_interval`: how often the old
                                * colour's requirements are re-checked while
                                * a rollback is possible; default 10 s */
  char *notify;                /* `notify URL` (http://HOST:PORT/PATH); NULL */
  uint64_t notify_timeout_ms;  /* `notify_timeout`; default 5 s */
  unsigned notify_retries;     /* `notify_retries`; default 3 */
  int line;                    /* line of the section keyword, 0 if absent */
} sw_watch_conf_t;

/* The admin API's default Unix socket, for switchd and switchctl alike. */
#define SW_CONFIG_ADMIN_SOCKET "/run/switchd/admin.sock"

/* The `admin` section. Root and the uid switchd runs as may always use the
 * socket; allow_uids adds others. */
typedef struct sw_admin_conf_s {
  char *socket;         /* default SW_CONFIG_ADMIN_SOCKET; NULL: `socket off` */
  unsigned *allow_uids; /* allow_uid lines, in file order */
  size_t nallow_uids;
  int has_bind;        /* a TCP listener is configured in `bind` */
  sw_bind_conf_t bind; /* numeric HOST:PORT as for listen binds */
  char *token_file;    /* bearer token for TCP mutations; NULL when absent */
  int metrics_open;    /* GET /metrics over TCP needs no token; default no */
} sw_admin_conf_t;

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
  sw_tls_conf_t *tls; /* one per listen section with certificates */
  size_t ntls;

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

  sw_database_conf_t database;
  sw_cutover_conf_t cutover;
  sw_watch_conf_t watch;
  sw_admin_conf_t admin;
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
