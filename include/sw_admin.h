/* The admin API transport: HTTP/1.1 with JSON bodies on a Unix socket
 * (created mode 0600; every caller's uid is read with SO_PEERCRED and must
 * be allowed) and optionally on a TCP listener, where mutating calls need
 * the bearer token (compared in constant time) and /metrics may be open.
 * This module parses requests (llhttp, bounded), authenticates callers and
 * writes responses; what a resource does is the handler's business, so the
 * transport never touches the cutover state. One request per connection,
 * except the server-sent events stream, which stays open. */
#ifndef SW_ADMIN_H
#define SW_ADMIN_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "sw_buf.h"

#define SW_ADMIN_MAX_BODY (64 * 1024)

typedef struct sw_admin_req_s {
  const char *method; /* "GET", "POST" */
  const char *path;   /* without the query string */
  const char *query;  /* after '?', or "" */
  json_t *body;       /* parsed JSON object, or NULL when there was none */
  const char *caller; /* for the audit log: "uid 1000 (pid 42)" or "tcp ..." */
  int may_mutate;     /* the caller is allowed to change state */
} sw_admin_req_t;

typedef struct sw_admin_resp_s {
  int status;
  json_t *json;  /* the body as JSON (owned; freed after writing), or */
  sw_buf_t text; /* a text body (for /metrics) */
  const char *content_type;
  int events; /* keep the connection open as an event stream */
} sw_admin_resp_t;

typedef void (*sw_admin_handler)(const sw_admin_req_t *req,
                                 sw_admin_resp_t *resp,
                                 void *data);

typedef struct sw_admin_opts_s {
  const char *socket_path; /* NULL: no Unix socket */
  const unsigned *allow_uids;
  size_t nallow_uids;
  const struct sockaddr *tcp; /* NULL: no TCP listener */
  const char *token;          /* bearer token for TCP mutations */
  int metrics_open;           /* GET /metrics over TCP needs no token */
} sw_admin_opts_t;

/* Starts listening. Returns 0 or a negative error with a message in err. */
int sw_admin_start(uv_loop_t *loop,
                   const sw_admin_opts_t *o,
                   sw_admin_handler h,
                   void *data,
                   char *err,
                   size_t errlen);
/* Sends one server-sent event to every open event stream. */
void sw_admin_broadcast(const char *event, json_t *data);
/* Closes the listeners and every admin connection (event streams too). */
void sw_admin_stop(void);
/* Whether any admin handle is still open (for the exit condition). */
int sw_admin_active(void);

/* Constant-time comparison of a presented token with the expected one. */
int sw_admin_token_eq(const char *given, size_t glen, const char *want);

#endif
