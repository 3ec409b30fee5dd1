/* Runtime types of the switchd data path: the process-wide state, upstream
 * servers and their pools, listeners, client connections, exchanges
 * (one request and its response) and upstream connections. Modules:
 *   listener.c  bound sockets and accept
 *   client.c    a downstream connection: request parsing, limits, timeouts
 *   upstream.c  server pools, connect, retries, response parsing
 *   relay.c     writes with backpressure, Upgrade tunnels
 *   main.c      startup, signals, reload, shutdown */
#ifndef SW_PROXY_H
#define SW_PROXY_H

#include <llhttp.h>
#include <stdint.h>
#include <uv.h>

#include "sw_buf.h"
#include "sw_config.h"
#include "sw_health.h"
#include "sw_http.h"
#include "sw_list.h"
#include "sw_timeq.h"
#include "sw_types.h"

/* The kind of object a uv handle's data points at, for uv_walk. */
typedef enum sw_kind_e {
  SW_KIND_NONE = 0,
  SW_KIND_LISTENER,
  SW_KIND_CLIENT,
  SW_KIND_UPCONN,
} sw_kind_t;

/* Timeout queues of client connections (see sw_timeq.h). */
typedef enum sw_tq_e {
  SW_TQ_HEADER = 0, /* waiting for a complete request head */
  SW_TQ_IDLE,       /* keep-alive between requests */
  SW_TQ_BODY,       /* buffering a request body: idle and rate checks */
  SW_TQ_SEND,       /* the client does not read what we write */
  SW_TQ_LINGER,     /* draining input after our last response */
  SW_TQ_TUNNEL,     /* an upgraded connection with no traffic */
  SW_TQ_HANDSHAKE,  /* an HTTPS connection before its handshake is done */
  SW_TQ_CLIENT_COUNT,
} sw_tq_t;

/* Timeout queues of upstream connections, one set per colour. */
typedef enum sw_utq_e {
  SW_UTQ_CONNECT = 0,
  SW_UTQ_RESPONSE,
  SW_UTQ_IDLE,
  SW_UTQ_COUNT,
} sw_utq_t;

/* The window over which min_send_rate is averaged. */
#define SW_RATE_WINDOW_MS 5000
/* Write-queue high-water mark when no buffering is granted. */
#define SW_STREAM_HIGH_WATER (64 * 1024)
/* Unparsed pipelined bytes kept per client before we stop reading. */
#define SW_PENDING_MAX (64 * 1024)
/* How long a closing connection drains input so our last response is not
 * destroyed by a reset. */
#define SW_LINGER_MS 2000

typedef struct sw_server_s {
  struct sockaddr_storage addr;
  char name[64];
  sw_colour_t colour;
  int refs;       /* the pool's and each upstream connection's */
  int removed;    /* no longer configured: close connections when idle */
  sw_list_t idle; /* idle sw_upconn_t, most recent at the tail */
  unsigned nidle;
  unsigned inflight;    /* exchanges bound to this server */
  unsigned tunnels;     /* of which upgraded (WebSocket) tunnels */
  sw_health_t *health;  /* active checker, NULL when checks are off */
  int health_failed;    /* checks are configured but could not start */
  uint64_t by_class[6]; /* responses by status class (0: other) */
  uint64_t errors;      /* 5xx responses */
  uint64_t requests;
} sw_server_t;

typedef struct sw_pool_s {
  sw_server_t **servers;
  size_t n;
  size_t rr;                /* next round-robin index */
  struct sw_tls_ctx_s *tls; /* the colour's `tls on`: its client context */
} sw_pool_t;

typedef struct sw_listener_s {
  uv_tcp_t tcp;
  sw_kind_t kind;
  sw_list_t link;
  char name[64];
  struct sockaddr_storage addr;
  struct sw_tls_ctx_s *tls; /* HTTPS: the context new connections get */
} sw_listener_t;

/* Client connection flags. */
#define SW_CF_CLOSING 0x01     /* uv_close called */
#define SW_CF_CLOSE_AFTER 0x02 /* close once the write queue drains */
#define SW_CF_EOF 0x04         /* the client half-closed */
#define SW_CF_READING 0x08     /* uv_read_start in effect */
#define SW_CF_LINGER 0x10      /* shut down, discarding input */
#define SW_CF_TUNNEL 0x20      /* upgraded: raw bytes both ways */
#define SW_CF_SHUTDOWN 0x40    /* uv_shutdown issued */
#define SW_CF_WAIT_DRAIN 0x80  /* next request waits for the client to read */

struct sw_req_s;
struct sw_upconn_s;

typedef struct sw_client_s {
  uv_tcp_t tcp;
  sw_kind_t kind;
  uint32_t flags;
  sw_tnode_t tn;
  struct sw_req_s *req; /* allocated when a request starts */
  char *pending;        /* unparsed bytes (pipelining), malloc'd */
  uint32_t npending;
  uint8_t family; /* AF_INET or AF_INET6 */
  uint8_t peer[16];
  uint64_t id;
  struct sw_tls_s *tls; /* HTTPS connections: all I/O goes through it */
} sw_client_t;

/* Exchange states. */
typedef enum sw_req_state_e {
  SW_REQ_HEAD = 0,  /* reading the request head */
  SW_REQ_BUFFERING, /* reading a body to buffer before routing */
  SW_REQ_STREAMING, /* routed; body flows to the upstream as it comes */
  SW_REQ_WAITING,   /* request sent whole; waiting for the response */
  SW_REQ_TUNNEL,    /* 101 sent; raw tunnel */
  SW_REQ_DONE,      /* response complete or failed */
} sw_req_state_t;

/* Body framings, of what we send. */
typedef enum sw_framing_e {
  SW_FRAME_NONE = 0, /* no body */
  SW_FRAME_LENGTH,   /* Content-Length */
  SW_FRAME_CHUNKED,  /* chunked, re-encoded by us */
  SW_FRAME_CLOSE,    /* delimited by closing the connection */
} sw_framing_t;

typedef struct sw_req_s {
  sw_client_t *client;
  sw_req_state_t state;
  llhttp_t parser;                 /* request parser */
  llhttp_t rparser;                /* response parser */
  sw_head_t head;                  /* request headers */
  sw_head_t rhead;                 /* response headers */
  uint32_t url_off, url_len;       /* in head.raw, before the first header */
  uint32_t reason_off, reason_len; /* in rhead.raw */
  sw_buf_t out;  /* request head as sent upstream, kept for a retry */
  sw_buf_t body; /* buffered request body */
  int error;     /* status to answer, set by a parser callback */
  const char *method;
  uint8_t http_minor;
  uint8_t keep_alive; /* the client connection may continue */
  uint8_t complete;   /* whole request read */
  uint8_t upgrade;    /* Upgrade requested */
  uint8_t expect;     /* Expect: 100-continue pending */
  uint8_t head_method;
  uint8_t resp_started;    /* response head sent to the client */
  uint8_t resp_done;       /* response fully queued to the client */
  uint8_t req_chunked_out; /* body re-encoded chunked to the upstream */
  uint8_t sent_any;        /* request bytes reached an upstream socket */
  uint8_t retried_fresh;
  uint8_t head_done;  /* the request head is complete: later header
                       * callbacks are trailers */
  uint8_t rhead_done; /* the same for the response */
  uint8_t after_1xx;  /* a 1xx just ended: rescan the next head */
  uint8_t routed;     /* a colour was chosen: its answer counts for it */
  uint8_t cut;        /* a started response ended by an upstream failure */
  uint64_t budget;    /* bytes this exchange counts in sw.buffered */
  uint64_t trailer_bytes;
  uint8_t tunnel_eof;  /* bit 0: client half-closed, bit 1: upstream */
  uint8_t need_stream; /* body too large to buffer: route and stream */
  uint8_t skip_1xx;    /* the response message parsed was a 1xx */
  uint8_t up_done;     /* the upstream response is complete */
  uint8_t extra_bytes; /* bytes followed the upstream response */
  int last_fail;       /* 502 or 504, for when no server is left */
  uint8_t chunk_check; /* a chunk just ended: check its CRLF */
  uint8_t last_chunk;  /* the chunk being parsed has size 0 */
  char tail[2];        /* last two bytes of the previous input */
  sw_headscan_t scan;  /* bare-LF and fold check of the request head */
  sw_headscan_t rscan; /* the same for the response head */
  sw_framing_t resp_framing;
  uint64_t content_length; /* declared, or UINT64_MAX */
  uint64_t body_bytes;     /* request body bytes received */
  uint64_t resp_bytes;     /* response bytes queued to the client */
  uint64_t rate_bytes;     /* body bytes in the current rate window */
  uint64_t rate_start;     /* loop time the window began */
  uint64_t last_body;      /* loop time of the last body byte */
  uint64_t t_start;        /* hrtime at the first byte */
  uint64_t t_up;           /* hrtime the request went upstream */
  uint64_t t_up_done;      /* hrtime the response completed */
  int status;              /* status sent to the client */
  sw_colour_t colour;
  sw_server_t *server; /* last server tried */
  unsigned tried;      /* servers tried for this request */
  size_t rr_first;     /* where the round robin started */
  struct sw_upconn_s *up;
  char rid[33];        /* generated X-Request-Id */
  int rid_idx;         /* incoming X-Request-Id header, or -1 */
  sw_list_t hold_link; /* on the hold barrier's queue (sw_hold.h) */
  uint64_t t_held;     /* hrtime it was queued there */
  uint32_t hold_gen;   /* which hold queued it */
} sw_req_t;

/* Upstream connection flags. */
#define SW_UF_CONNECTED 0x01
#define SW_UF_CLOSING 0x02
#define SW_UF_READING 0x04
#define SW_UF_REUSED 0x08    /* served a request before this one */
#define SW_UF_GOT_BYTES 0x10 /* a response byte arrived for this request */
#define SW_UF_PAUSED 0x20    /* reads stopped by backpressure */
#define SW_UF_HANDSHAKE 0x40 /* TLS: connected, handshake not done yet */

typedef struct sw_upconn_s {
  uv_tcp_t tcp;
  sw_kind_t kind;
  uint32_t flags;
  uv_connect_t connect;
  sw_tnode_t tn;
  sw_list_t link; /* on the server's idle list */
  sw_server_t *server;
  sw_req_t *req;
  uint64_t id;
  struct sw_tls_s *tls; /* the colour's `tls on`: all I/O goes through it */
} sw_upconn_t;

typedef struct sw_s {
  uv_loop_t *loop;
  sw_config_t *cfg;
  const char *config_path;
  sw_colour_t live;
  sw_pool_t pools[SW_COLOURS];
  sw_list_t listeners;
  sw_timeq_t tq[SW_TQ_CLIENT_COUNT];
  sw_timeq_t utq[SW_COLOURS][SW_UTQ_COUNT];
  uv_signal_t sig_term, sig_int, sig_hup, sig_usr1;
  uv_timer_t shutdown_timer;
  uv_timer_t flush_timer;
  uint64_t nclients;
  uint64_t nupconns;
  uint64_t buffered;     /* bytes in write queues and request buffers */
  uint64_t tls_timeouts; /* HTTPS connections closed mid-handshake */
  uint64_t next_id;
  int stopping;
  int shutdown_started;
} sw_t;

extern sw_t sw;

/* listener.c */
int sw_listener_sync(const sw_config_t *cfg, char *err, size_t errlen);
/* Loads the TLS contexts of cfg's HTTPS listen sections (one per entry of
 * cfg->tls; *out NULL when there is none), as sw_listener_sync does before
 * it binds and `switchd -t` does to check certificates. Returns 0 or
 * SW_ECONFIG with "FILE:LINE: ..." in err. */
int sw_listener_tls_load(const sw_config_t *cfg,
                         struct sw_tls_ctx_s ***out,
                         char *err,
                         size_t errlen);
void sw_listener_tls_free(const sw_config_t *cfg, struct sw_tls_ctx_s **ctxs);
void sw_listener_close_all(void);

/* client.c */
void sw_client_accept(uv_stream_t *server);
void sw_client_shutdown_idle(sw_client_t *c);
void sw_client_close(sw_client_t *c);
/* Frees the cache of exchange objects, at exit. */
void sw_client_cache_free(void);
void sw_client_expire(sw_tnode_t *n);
/* Called by upstream.c: */
int sw_client_send(sw_client_t *c, const uv_buf_t *bufs, unsigned n);
/* Writes to the client's socket through its TLS when it has one, without
 * touching its timeouts (the tunnel's path). */
int sw_client_write(sw_client_t *c, const uv_buf_t *bufs, unsigned n);
/* Before a half-close of an HTTPS client: its close_notify. */
void sw_client_close_notify(sw_client_t *c);
void sw_req_fail(sw_req_t *r, int status);
/* The same with a Retry-After of `seconds` (a 503 of a full hold queue). */
void sw_req_fail_retry(sw_req_t *r, int status, uint64_t seconds);
void sw_req_finished(sw_req_t *r);
void sw_req_start_tunnel(sw_req_t *r, const char *rest, size_t len);
int sw_client_high_water(const sw_client_t *c);
/* Frees a buffered request body and returns its share of the budget. */
void sw_req_release_body(sw_req_t *r);
/* Builds r->out, the request head for the upstream, for a body framing. */
int sw_req_build_head(sw_req_t *r, sw_framing_t framing, uint64_t length);
void sw_client_resume_body(sw_req_t *r);
/* The client's write queue moved (called by relay.c's write callback). */
void sw_client_written(sw_client_t *c, int status);

/* upstream.c */
/* Applies a config's servers. At startup (first) servers are taken as up
 * until their checks say otherwise, so a restart serves at once; a server
 * added by a reload gets traffic once it has passed `rise` checks. */
int sw_pools_apply(const sw_config_t *cfg, int first);
/* The client TLS contexts of cfg's colours with `tls on` (NULL for the
 * others), loaded before anything changes so that a bad tls_ca rejects the
 * config; sw_pools_tls_set hands them to the pools (taking the caller's
 * references) before sw_pools_apply. */
int sw_pools_tls_load(const sw_config_t *cfg,
                      struct sw_tls_ctx_s *out[SW_COLOURS],
                      char *err,
                      size_t errlen);
void sw_pools_tls_set(struct sw_tls_ctx_s *ctx[SW_COLOURS]);
/* Writes to an upstream connection, through its TLS when it has one. */
int sw_upconn_write(sw_upconn_t *u, const uv_buf_t *bufs, unsigned n);
/* Before a half-close of a TLS upstream connection: its close_notify. */
void sw_upconn_close_notify(sw_upconn_t *u);
/* Stops every health checker (at shutdown; their timers keep the loop
 * running). */
void sw_pools_stop_health(void);
void sw_pools_free(void);
/* Whether a server may get requests: unchecked, or checked and up. */
int sw_server_usable(const sw_server_t *s);
void sw_upstream_dispatch(sw_req_t *r);
/* Streams request body bytes to the upstream (framing added here). */
int sw_upstream_body(sw_req_t *r, const char *data, size_t len, int last);
void sw_upstream_abort(sw_req_t *r);
void sw_upstream_resume(sw_req_t *r);
void sw_upstream_expire(sw_tnode_t *n);
void sw_upstream_close_idle(void);
void sw_upconn_close(sw_upconn_t *u);

/* relay.c */
/* Writes bufs to a stream: synchronously as far as the socket takes, the
 * rest copied into one queued write counted against the buffer budget.
 * Returns 0 or a negative libuv error. */
int sw_stream_write(uv_stream_t *s, const uv_buf_t *bufs, unsigned n);
/* Encrypts bufs into t as TLS records of at most 16 KiB, calling
 * flush(arg) after each record: small pieces (a chunk-size line, a CRLF)
 * share a record, and the TLS output never holds more than one record, so
 * a large response never grows OpenSSL's buffers to its size. Returns 0,
 * UV_EPROTO or flush's error. */
int sw_tls_send(struct sw_tls_s *t,
                const uv_buf_t *bufs,
                unsigned n,
                int (*flush)(void *arg),
                void *arg);
/* Tunnel bytes from one side of an upgraded exchange to the other. */
void sw_tunnel_start(sw_req_t *r);
void sw_tunnel_from_client(sw_req_t *r, const char *data, size_t len);
void sw_tunnel_from_upstream(sw_req_t *r, const char *data, size_t len);
void sw_tunnel_eof(sw_req_t *r, int from_client);
void sw_tunnel_written(uv_stream_t *s);

/* main.c */
void sw_maybe_exit(void);
uint64_t sw_next_id(void);
/* The shared read buffer: every read callback consumes or copies its bytes
 * before returning, so one buffer serves every connection. */
void sw_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf);

#endif
