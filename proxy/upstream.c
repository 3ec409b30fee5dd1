/* Upstream servers: the per-colour pools, the keep-alive connection pool of
 * each server, connecting, retries, sending a request and parsing its
 * response back to the client. Routing reads the live colour when a request
 * is complete (or must start streaming), so a flip moves the next request
 * of every connection, keep-alive ones included. This module maps upstream
 * failures to statuses: a refused or failed connect tries the colour's next
 * server, then 502; a timeout is 504; a reset before any response byte is
 * 502, after the response started it truncates the client's response. */
#include <stdlib.h>
#include <arpa/inet.h>
#include <string.h>

#include "sw_tls.h"
#include "sw_control.h"
#include "sw_hold.h"
#include "sw_log.h"
#include "sw_proxy.h"

static llhttp_settings_t resp_settings;
static int settings_ready;

static void on_up_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);
static void try_server(sw_req_t *r);
static void connect_fresh(sw_req_t *r, sw_server_t *s);
static void resp_settings_init(void);

/* --- servers and pools ---------------------------------------------------- */

static void health_stop(sw_server_t *s);

static void server_unref(sw_server_t *s) {
  if (--s->refs == 0) {
    health_stop(s);
    free(s);
  }
}

int sw_server_usable(const sw_server_t *s) {
  if (s->health_failed)
    return 0; /* checks asked for but not running: not known to be up */
  return s->health == NULL || s->health->state == SW_HEALTH_UP;
}

static void on_health(sw_health_t *h, const sw_health_result_t *r) {
  sw_server_t *s = h->data;
  sw_control_health(s, r);
  if (r->changed && r->state == SW_HEALTH_UP)
    sw_info("health", 0, "%s (%s) is up after %u passes", s->name,
            sw_colour_name(s->colour), r->passes);
  else if (r->changed)
    sw_warn("health", 0, "%s (%s) is down: %s", s->name,
            sw_colour_name(s->colour), r->reason);
}

static void health_stop(sw_server_t *s) {
  if (s->health == NULL)
    return;
  sw_health_stop(s->health, NULL);
  s->health = NULL;
}

/* (Re)starts a server's checker with the colour's current settings, keeping
 * the state it had, so that a reload does not take servers out. */
/* What a TLS connection to s checks: the upstream's tls_name, else its
 * health_host (without a port), else s's IP address. */
static void tls_names(const sw_config_t *cfg,
                      const sw_server_t *s,
                      char *name,
                      size_t namelen,
                      char *ip,
                      size_t iplen) {
  const sw_upstream_conf_t *uc = &cfg->upstream[s->colour];
  const char *n = uc->tls_name ? uc->tls_name : uc->health.host;

  name[0] = '\0';
  if (n != NULL && n[0] != '[') {
    size_t len = strcspn(n, ":");
    struct in_addr a4;
    if (len < namelen) {
      memcpy(name, n, len);
      name[len] = '\0';
    }
    /* A health_host that is an address names no host: the address is
     * checked as an IP SAN instead. */
    if (inet_pton(AF_INET, name, &a4) == 1)
      name[0] = '\0';
  }
  ip[0] = '\0';
  if (s->addr.ss_family == AF_INET6)
    (void)uv_ip6_name((const struct sockaddr_in6 *)&s->addr, ip, iplen);
  else
    (void)uv_ip4_name((const struct sockaddr_in *)&s->addr, ip, iplen);
}

static int health_start(const sw_config_t *cfg,
                        sw_server_t *s,
                        const sw_health_conf_t *hc,
                        sw_health_state_t initial) {
  char name[256], ip[64];
  sw_health_params_t p;
  sw_health_t *h;
  int err;

  if (s->health != NULL)
    initial = s->health->state;
  health_stop(s);
  s->health_failed = 0;
  if (!hc->enabled)
    return 0;
  sw_health_params_default(&p);
  p.path = hc->path;
  p.host = hc->host;
  p.status_min = hc->status_min;
  p.status_max = hc->status_max;
  p.body = hc->body;
  p.interval_ms = hc->interval_ms;
  p.timeout_ms = hc->timeout_ms;
  p.rise = hc->rise;
  p.fall = hc->fall;
  tls_names(cfg, s, name, sizeof(name), ip, sizeof(ip));
  p.tls = sw.pools[s->colour].tls;
  p.tls_name = name[0] ? name : NULL;
  p.tls_ip = ip;
  err = sw_health_new(sw.loop, (struct sockaddr *)&s->addr, s->name, &p,
                      on_health, s, &h);
  if (err == 0) {
    err = sw_health_start(h, initial);
    if (err != 0)
      sw_health_stop(h, NULL);
  }
  s->health_failed = err != 0;
  if (err != 0)
    return err;
  s->health = h;
  return 0;
}

static sw_server_t *server_new(const sw_server_conf_t *sc, sw_colour_t col) {
  sw_server_t *s = calloc(1, sizeof(*s));
  if (s == NULL)
    return NULL;
  s->addr = sc->addr;
  memcpy(s->name, sc->name, sizeof(s->name));
  s->colour = col;
  s->refs = 1;
  sw_list_init(&s->idle);
  return s;
}

static void server_close_idle(sw_server_t *s) {
  while (!sw_list_empty(&s->idle)) {
    sw_upconn_t *u = sw_container_of(s->idle.next, sw_upconn_t, link);
    sw_upconn_close(u);
  }
}

/* Applies the servers of a config: a server kept across a reload keeps its
 * pooled connections; a removed one closes its idle connections now and
 * its busy ones when their exchange ends. */
int sw_pools_apply(const sw_config_t *cfg, int first) {
  for (int col = 0; col < SW_COLOURS; col++) {
    const sw_upstream_conf_t *uc = &cfg->upstream[col];
    sw_pool_t *old = &sw.pools[col];
    sw_pool_t np;

    np.n = uc->nservers;
    np.rr = old->rr;
    np.tls = old->tls;
    np.servers = np.n > 0 ? calloc(np.n, sizeof(*np.servers)) : NULL;
    if (np.n > 0 && np.servers == NULL)
      return UV_ENOMEM;
    for (size_t i = 0; i < np.n; i++) {
      sw_server_t *found = NULL;
      for (size_t k = 0; k < old->n; k++) {
        if (old->servers[k] != NULL &&
            strcmp(old->servers[k]->name, uc->servers[i].name) == 0) {
          found = old->servers[k];
          old->servers[k] = NULL;
          break;
        }
      }
      if (found == NULL)
        found = server_new(&uc->servers[i], (sw_colour_t)col);
      if (found == NULL) {
        for (size_t k = 0; k < i; k++)
          server_unref(np.servers[k]);
        free(np.servers);
        return UV_ENOMEM;
      }
      np.servers[i] = found;
    }
    for (size_t k = 0; k < old->n; k++) {
      sw_server_t *s = old->servers[k];
      if (s == NULL)
        continue;
      s->removed = 1;
      health_stop(s);
      server_close_idle(s);
      server_unref(s);
    }
    for (size_t i = 0; i < np.n; i++) {
      int err = health_start(cfg, np.servers[i], &uc->health,
                             first ? SW_HEALTH_UP : SW_HEALTH_DOWN);
      if (err != 0)
        sw_error("health", 0, "%s: cannot start checks: %s",
                 np.servers[i]->name, uv_strerror(err));
    }
    free(old->servers);
    *old = np;
  }
  return 0;
}

int sw_pools_tls_load(const sw_config_t *cfg,
                      sw_tls_ctx_t *out[SW_COLOURS],
                      char *err,
                      size_t errlen) {
  for (int c = 0; c < SW_COLOURS; c++)
    out[c] = NULL;
  for (int c = 0; c < SW_COLOURS; c++) {
    const sw_upstream_conf_t *uc = &cfg->upstream[c];
    int e;
    if (!uc->tls)
      continue;
    e = sw_tls_client_ctx_new(cfg->file, uc->tls_line, uc->tls_ca,
                              uc->tls_verify, &out[c], err, errlen);
    if (e != 0) {
      for (int k = 0; k < c; k++)
        if (out[k] != NULL)
          sw_tls_ctx_unref(out[k]);
      out[c] = NULL;
      return e;
    }
  }
  return 0;
}

void sw_pools_tls_set(sw_tls_ctx_t *ctx[SW_COLOURS]) {
  for (int c = 0; c < SW_COLOURS; c++) {
    sw_pool_t *p = &sw.pools[c];
    /* New TLS settings (or TLS turned on or off): idle connections made
     * under the old ones close now, busy ones after their response (see
     * release), so that no request rides a connection the config no
     * longer describes. */
    if (p->tls != NULL || ctx[c] != NULL)
      for (size_t i = 0; i < p->n; i++)
        server_close_idle(p->servers[i]);
    if (p->tls != NULL)
      sw_tls_ctx_unref(p->tls);
    p->tls = ctx[c];
    ctx[c] = NULL;
  }
}

void sw_pools_stop_health(void) {
  for (int col = 0; col < SW_COLOURS; col++)
    for (size_t k = 0; k < sw.pools[col].n; k++)
      health_stop(sw.pools[col].servers[k]);
}

void sw_pools_free(void) {
  for (int col = 0; col < SW_COLOURS; col++) {
    sw_pool_t *p = &sw.pools[col];
    for (size_t k = 0; k < p->n; k++)
      server_unref(p->servers[k]);
    free(p->servers);
    p->servers = NULL;
    p->n = 0;
    if (p->tls != NULL)
      sw_tls_ctx_unref(p->tls);
    p->tls = NULL;
  }
}

void sw_upstream_close_idle(void) {
  for (int col = 0; col < SW_COLOURS; col++)
    for (size_t k = 0; k < sw.pools[col].n; k++)
      server_close_idle(sw.pools[col].servers[k]);
}

/* --- connections ---------------------------------------------------------- */

static void on_up_close(uv_handle_t *h) {
  sw_upconn_t *u = sw_container_of(h, sw_upconn_t, tcp);
  if (u->tls != NULL)
    sw_tls_free(u->tls);
  server_unref(u->server);
  free(u);
  sw.nupconns--;
  sw_maybe_exit();
}

static void unbind(sw_upconn_t *u) {
  sw_req_t *r = u->req;
  if (r == NULL)
    return;
  r->up = NULL;
  u->req = NULL;
  u->server->inflight--;
  if (r->state == SW_REQ_TUNNEL)
    u->server->tunnels--;
  if (u->server->colour != sw.live)
    sw_control_unbound(u->server);
  if (sw_hold_waiting)
    sw_hold_poke();
}

void sw_upconn_close(sw_upconn_t *u) {
  if (u->flags & SW_UF_CLOSING)
    return;
  u->flags |= SW_UF_CLOSING;
  sw_timeq_del(&u->tn);
  if (sw_list_linked(&u->link)) {
    sw_list_remove(&u->link);
    u->server->nidle--;
  }
  unbind(u);
  uv_close((uv_handle_t *)&u->tcp, on_up_close);
}

static sw_timeq_t *utq(const sw_upconn_t *u, sw_utq_t k) {
  return &sw.utq[u->server->colour][k];
}

static void bind_req(sw_upconn_t *u, sw_req_t *r) {
  u->req = r;
  r->up = u;
  r->server = u->server;
  u->server->inflight++;
  u->server->requests++;
  u->flags &= ~SW_UF_GOT_BYTES;
  if (r->t_up == 0)
    r->t_up = uv_hrtime();
}

static int start_read(sw_upconn_t *u) {
  int err;
  if (u->flags & SW_UF_READING)
    return 0;
  err = uv_read_start((uv_stream_t *)&u->tcp, sw_alloc_cb, on_up_read);
  if (err == 0)
    u->flags |= SW_UF_READING;
  return err;
}

/* Returns a finished connection to its server's idle pool, or closes it. */
static void release(sw_upconn_t *u, int reusable) {
  sw_server_t *s = u->server;
  sw_tls_ctx_t *want = sw.pools[s->colour].tls;
  unbind(u);
  /* A connection made under TLS settings a reload replaced is not kept. */
  if ((u->tls == NULL) != (want == NULL) ||
      (u->tls != NULL && sw_tls_ctx_of(u->tls) != want))
    reusable = 0;
  if (!reusable || s->removed || sw.stopping ||
      sw.cfg->upstream[s->colour].max_idle == 0) {
    sw_upconn_close(u);
    return;
  }
  u->flags |= SW_UF_REUSED;
  u->flags &= ~SW_UF_PAUSED;
  if (start_read(u) != 0) {
    sw_upconn_close(u);
    return;
  }
  sw_list_append(&s->idle, &u->link);
  s->nidle++;
  sw_timeq_add(utq(u, SW_UTQ_IDLE), &u->tn);
  if (s->nidle > sw.cfg->upstream[s->colour].max_idle)
    sw_upconn_close(sw_container_of(s->idle.next, sw_upconn_t, link));
}

/* --- sending -------------------------------------------------------------- */

/* Scratch for TLS to upstreams: plaintext of one read, ciphertext on its
 * way out. Static, like the read buffer: one loop, one thread. */
static char up_plain[64 * 1024];
static char up_cipher[64 * 1024];

static int up_tls_flush(sw_upconn_t *u) {
  while (sw_tls_out_pending(u->tls) > 0) {
    size_t n = sw_tls_take_out(u->tls, up_cipher, sizeof(up_cipher));
    uv_buf_t b = uv_buf_init(up_cipher, (unsigned)n);
    int err;
    if (n == 0)
      break;
    err = sw_stream_write((uv_stream_t *)&u->tcp, &b, 1);
    if (err != 0)
      return err;
  }
  return 0;
}

static int up_tls_flush_cb(void *arg) {
  return up_tls_flush(arg);
}

int sw_upconn_write(sw_upconn_t *u, const uv_buf_t *bufs, unsigned n) {
  if (u->tls == NULL)
    return sw_stream_write((uv_stream_t *)&u->tcp, bufs, n);
  if (uv_is_closing((uv_handle_t *)&u->tcp))
    return UV_ECANCELED;
  return sw_tls_send(u->tls, bufs, n, up_tls_flush_cb, u);
}

void sw_upconn_close_notify(sw_upconn_t *u) {
  if (u->tls == NULL || (u->flags & SW_UF_CLOSING) ||
      !sw_tls_handshake_done(u->tls))
    return;
  sw_tls_shutdown(u->tls);
  (void)up_tls_flush(u);
}

static int write_upstream(sw_upconn_t *u, const uv_buf_t *bufs, unsigned n) {
  int err = sw_upconn_write(u, bufs, n);
  if (err == 0 && u->req != NULL)
    u->req->sent_any = 1;
  return err;
}

/* Sends the request head and whatever body is held. A streamed request
 * then lets the client side read the rest of its body. */
static void send_request(sw_upconn_t *u) {
  sw_req_t *r = u->req;
  uv_buf_t bufs[4];
  unsigned n = 0;
  char chunk[32];
  int err;

  sw_timeq_add(utq(u, SW_UTQ_RESPONSE), &u->tn);
  bufs[n++] = uv_buf_init(r->out.data, (unsigned)r->out.len);
  if (r->body.len > 0) {
    if (r->req_chunked_out) {
      int cl = snprintf(chunk, sizeof(chunk), "%zx\r\n", r->body.len);
      bufs[n++] = uv_buf_init(chunk, (unsigned)cl);
      bufs[n++] = uv_buf_init(r->body.data, (unsigned)r->body.len);
      bufs[n++] = uv_buf_init("\r\n", 2);
    } else {
      bufs[n++] = uv_buf_init(r->body.data, (unsigned)r->body.len);
    }
  }
  err = write_upstream(u, bufs, n);
  if (err != 0) {
    sw_upconn_t *dead = u;
    sw_debug("upstream", u->id, "write failed: %s", uv_err_name(err));
    unbind(dead);
    sw_upconn_close(dead);
    if (!r->sent_any) {
      try_server(r);
      return;
    }
    sw_req_fail(r, 502);
    return;
  }
  if (r->state == SW_REQ_STREAMING) {
    /* What was buffered is now on its way; the rest streams. A retry is
     * no longer possible once body bytes are not kept. */
    sw_req_release_body(r);
    sw_client_resume_body(r);
  }
}

int sw_upstream_body(sw_req_t *r, const char *data, size_t len, int last) {
  uv_buf_t bufs[4];
  unsigned n = 0;
  char chunk[32];

  if (r->up == NULL)
    return UV_ECANCELED;
  if (len > 0) {
    if (r->req_chunked_out) {
      int cl = snprintf(chunk, sizeof(chunk), "%zx\r\n", len);
      bufs[n++] = uv_buf_init(chunk, (unsigned)cl);
      bufs[n++] = uv_buf_init((char *)data, (unsigned)len);
      bufs[n++] = uv_buf_init("\r\n", 2);
    } else {
      bufs[n++] = uv_buf_init((char *)data, (unsigned)len);
    }
  }
  if (last && r->req_chunked_out)
    bufs[n++] = uv_buf_init("0\r\n\r\n", 5);
  if (n == 0)
    return 0;
  sw_timeq_add(utq(r->up, SW_UTQ_RESPONSE), &r->up->tn);
  return write_upstream(r->up, bufs, n);
}

/* --- choosing a server ------------------------------------------------- */

static void on_connect(uv_connect_t *req, int status) {
  sw_upconn_t *u = sw_container_of(req, sw_upconn_t, connect);
  sw_req_t *r = u->req;

  if (u->flags & SW_UF_CLOSING || r == NULL)
    return;
  if (status < 0) {
    sw_warn("upstream", r->client->id, "connect to %s (%s) failed: %s",
            u->server->name, sw_colour_name(u->server->colour),
            uv_err_name(status));
    unbind(u);
    sw_upconn_close(u);
    r->last_fail = status == UV_ETIMEDOUT ? 504 : 502;
    try_server(r);
    return;
  }
  u->flags |= SW_UF_CONNECTED;
  if (start_read(u) != 0) {
    unbind(u);
    sw_upconn_close(u);
    r->last_fail = 502;
    try_server(r);
    return;
  }
  if (sw.pools[u->server->colour].tls != NULL) {
    /* TLS: the request goes once the handshake is done; the connect
     * timeout keeps running until then. */
    char name[256], ip[64];
    tls_names(sw.cfg, u->server, name, sizeof(name), ip, sizeof(ip));
    u->tls = sw_tls_new_client(sw.pools[u->server->colour].tls,
                               name[0] ? name : NULL, ip);
    if (u->tls == NULL || sw_tls_read(u->tls, up_plain, sizeof(up_plain)) < 0 ||
        up_tls_flush(u) != 0) {
      unbind(u);
      sw_upconn_close(u);
      r->last_fail = 502;
      try_server(r);
      return;
    }
    u->flags |= SW_UF_HANDSHAKE;
    return;
  }
  send_request(u);
}

/* Opens a new connection to s for r. Returns 0, or an error after which r
 * is untouched and still needs a server. */
static int open_conn(sw_req_t *r, sw_server_t *s) {
  sw_upconn_t *u = calloc(1, sizeof(*u));
  int err;

  if (u == NULL)
    return UV_ENOMEM;
  err = uv_tcp_init(sw.loop, &u->tcp);
  if (err != 0) {
    free(u);
    return err;
  }
  sw.nupconns++;
  u->kind = SW_KIND_UPCONN;
  u->tcp.data = &u->kind;
  u->server = s;
  s->refs++;
  u->id = sw_next_id();
  sw_tnode_init(&u->tn);
  sw_list_init(&u->link);
  uv_tcp_nodelay(&u->tcp, 1);
  bind_req(u, r);
  err = uv_tcp_connect(&u->connect, &u->tcp, (struct sockaddr *)&s->addr,
                       on_connect);
  if (err != 0) {
    unbind(u);
    sw_upconn_close(u);
    return err;
  }
  sw_timeq_add(utq(u, SW_UTQ_CONNECT), &u->tn);
  return 0;
}

static void connect_fresh(sw_req_t *r, sw_server_t *s) {
  int err = open_conn(r, s);
  if (err != 0) {
    sw_warn("upstream", r->client->id, "connect to %s failed: %s", s->name,
            uv_err_name(err));
    r->last_fail = 502;
    try_server(r);
  }
}

/* Tries the next server of the request's colour that it has not tried. */
static void try_server(sw_req_t *r) {
  sw_pool_t *pool = &sw.pools[r->colour];
  sw_server_t *s;

  /* Servers whose checks say down are skipped; when no server was even
   * tried, there is no healthy server to send to: 503. */
  do {
    if (r->tried >= pool->n) {
      sw_req_fail(r, r->last_fail ? r->last_fail : 503);
      return;
    }
    s = pool->servers[(r->rr_first + r->tried) % pool->n];
    r->tried++;
  } while (!sw_server_usable(s));
  r->server = s;
  if (!sw_list_empty(&s->idle)) {
    /* The most recently used connection is the least likely to have been
     * closed by the server's keep-alive timeout. */
    sw_upconn_t *u = sw_container_of(s->idle.prev, sw_upconn_t, link);
    sw_list_remove(&u->link);
    s->nidle--;
    sw_timeq_del(&u->tn);
    bind_req(u, r);
    send_request(u);
    return;
  }
  connect_fresh(r, s);
}

void sw_upstream_dispatch(sw_req_t *r) {
  sw_pool_t *pool;
  sw_framing_t framing = SW_FRAME_NONE;
  uint64_t length = 0;

  if (sw_hold_admit(r))
    return; /* held, or refused by a full hold queue */
  resp_settings_init();
  r->colour = sw.live;
  r->routed = 1;
  pool = &sw.pools[r->colour];
  if (r->state == SW_REQ_STREAMING) {
    if (r->content_length != UINT64_MAX) {
      framing = SW_FRAME_LENGTH;
      length = r->content_length;
    } else {
      framing = SW_FRAME_CHUNKED;
      r->req_chunked_out = 1;
    }
  } else if (r->body.len > 0 || r->content_length != UINT64_MAX ||
             (r->parser.flags & F_CHUNKED)) {
    framing = SW_FRAME_LENGTH;
    length = r->body.len;
  }
  if (sw_req_build_head(r, framing, length) != 0) {
    sw_req_fail(r, 431);
    return;
  }
  if (pool->n == 0) {
    sw_req_fail(r, 503);
    return;
  }
  r->rr_first = pool->rr++ % pool->n;
  r->tried = 0;
  try_server(r);
}

void sw_upstream_abort(sw_req_t *r) {
  sw_upconn_t *u = r->up;
  if (u == NULL)
    return;
  unbind(u);
  sw_upconn_close(u);
}

void sw_upstream_resume(sw_req_t *r) {
  sw_upconn_t *u = r->up;
  if (u == NULL || !(u->flags & SW_UF_PAUSED))
    return;
  u->flags &= ~SW_UF_PAUSED;
  if (start_read(u) != 0)
    sw_req_fail(r, 502);
}

void sw_upstream_expire(sw_tnode_t *n) {
  sw_upconn_t *u = sw_container_of(n, sw_upconn_t, tn);
  sw_req_t *r = u->req;
  int connecting =
      !(u->flags & SW_UF_CONNECTED) || (u->flags & SW_UF_HANDSHAKE);

  if (r == NULL) {
    sw_upconn_close(u); /* idle too long */
    return;
  }
  sw_warn("upstream", r->client->id, "%s timeout on %s (%s)",
          connecting ? "connect" : "response", u->server->name,
          sw_colour_name(u->server->colour));
  unbind(u);
  sw_upconn_close(u);
  if (connecting) {
    r->last_fail = 504;
    try_server(r);
    return;
  }
  sw_req_fail(r, 504);
}

/* --- the response ------------------------------------------------------- */

/* What one read produced for the client: the head (once) and body spans
 * pointing into the read buffer, gathered into one write. */
#define SW_SEGS 64
static struct {
  uv_buf_t segs[SW_SEGS];
  unsigned n;
  size_t body_len;
  int has_head;
  sw_buf_t head;
} out;

static int flush_out(sw_req_t *r, int last) {
  uv_buf_t bufs[SW_SEGS + 4];
  unsigned n = 0;
  char chunk[32];
  int chunked = r->resp_framing == SW_FRAME_CHUNKED;
  int err;

  if (out.has_head)
    bufs[n++] = uv_buf_init(out.head.data, (unsigned)out.head.len);
  if (out.body_len > 0 && chunked) {
    int cl = snprintf(chunk, sizeof(chunk), "%zx\r\n", out.body_len);
    bufs[n++] = uv_buf_init(chunk, (unsigned)cl);
  }
  for (unsigned i = 0; i < out.n; i++)
    bufs[n++] = out.segs[i];
  if (out.body_len > 0 && chunked)
    bufs[n++] = uv_buf_init("\r\n", 2);
  if (last && chunked)
    bufs[n++] = uv_buf_init("0\r\n\r\n", 5);
  for (unsigned i = 0; i < n; i++)
    r->resp_bytes += bufs[i].len;
  err = n > 0 ? sw_client_send(r->client, bufs, n) : 0;
  out.n = 0;
  out.body_len = 0;
  out.has_head = 0;
  sw_buf_reset(&out.head);
  return err;
}

static int resp_error(sw_req_t *r) {
  r->error = 502;
  return HPE_USER;
}

static int on_status(llhttp_t *p, const char *at, size_t len) {
  sw_req_t *r = p->data;
  if (r->reason_len == 0)
    r->reason_off = (uint32_t)r->rhead.raw.len;
  if (sw_buf_append(&r->rhead.raw, at, len) != 0)
    return resp_error(r);
  r->reason_len += (uint32_t)len;
  return 0;
}

/* Response trailers are dropped (the Trailer header was not forwarded
 * either) and only counted against the response head bound. */
static int rtrailer(sw_req_t *r, size_t len) {
  r->trailer_bytes += len + 4;
  return r->trailer_bytes > r->rhead.raw.max ? resp_error(r) : 0;
}

static int on_rheader_field(llhttp_t *p, const char *at, size_t len) {
  sw_req_t *r = p->data;
  if (r->rhead_done)
    return rtrailer(r, len);
  return sw_head_field(&r->rhead, at, len) == 0 ? 0 : resp_error(r);
}

static int on_rheader_value(llhttp_t *p, const char *at, size_t len) {
  sw_req_t *r = p->data;
  if (r->rhead_done)
    return rtrailer(r, len);
  return sw_head_value(&r->rhead, at, len) == 0 ? 0 : resp_error(r);
}

static int on_rheader_field_complete(llhttp_t *p) {
  sw_req_t *r = p->data;
  if (r->rhead_done)
    return 0;
  return sw_head_field_done(&r->rhead) == 0 ? 0 : resp_error(r);
}

static int on_rheader_value_complete(llhttp_t *p) {
  sw_req_t *r = p->data;
  if (r->rhead_done)
    return 0;
  sw_head_value_done(&r->rhead);
  return 0;
}

/* Builds the response head for the client: the upstream's status and
 * end-to-end headers, our framing and our connection handling. */
static int build_response_head(sw_req_t *r, int status) {
  sw_head_t *h = &r->rhead;
  sw_buf_t *b = &out.head;
  int err = 0;

  sw_conn_tokens_t listed;

  sw_buf_reset(b);
  err |= sw_buf_append(b, "HTTP/1.1 ", 9);
  err |= sw_buf_append_u64(b, (uint64_t)status);
  err |= sw_buf_append(b, " ", 1);
  if (r->reason_len > 0)
    err |= sw_buf_append(b, h->raw.data + r->reason_off, r->reason_len);
  else
    err |= sw_buf_append(b, sw_http_reason(status),
                         strlen(sw_http_reason(status)));
  err |= sw_buf_append(b, "\r\n", 2);
  sw_http_conn_tokens(h, &listed);
  for (uint32_t i = 0; i < h->n; i++) {
    const char *name = sw_head_name(h, i);
    size_t nlen = h->hdrs[i].name_len;
    if (status == 101 && (sw_http_ieq(name, nlen, "upgrade") ||
                          sw_http_ieq(name, nlen, "connection"))) {
      /* Tunnelling: the handshake headers pass through. */
    } else if (sw_http_is_hop(name, nlen) ||
               sw_http_conn_listed(h, &listed, name, nlen) ||
               (sw_http_ieq(name, nlen, "content-length") &&
                r->resp_framing != SW_FRAME_NONE)) {
      continue;
    }
    err |= sw_buf_append(b, name, nlen);
    err |= sw_buf_append(b, ": ", 2);
    err |= sw_buf_append(b, sw_head_val(h, i), h->hdrs[i].value_len);
    err |= sw_buf_append(b, "\r\n", 2);
  }
  if (r->resp_framing == SW_FRAME_LENGTH) {
    err |= sw_buf_append(b, "Content-Length: ", 16);
    err |= sw_buf_append_u64(b, r->rparser.content_length);
    err |= sw_buf_append(b, "\r\n", 2);
  } else if (r->resp_framing == SW_FRAME_CHUNKED)
    err |= sw_buf_append(b, "Transfer-Encoding: chunked\r\n", 28);
  if (status != 101) {
    if (!r->keep_alive)
      err |= sw_buf_append(b, "Connection: close\r\n", 19);
    else if (r->http_minor == 0)
      err |= sw_buf_append(b, "Connection: keep-alive\r\n", 24);
  }
  err |= sw_buf_append(b, "\r\n", 2);
  return err;
}

static int on_rheaders_complete(llhttp_t *p) {
  sw_req_t *r = p->data;
  int status = p->status_code;
  int no_body;

  if (status >= 100 && status < 200 && status != 101) {
    /* Interim responses are ours to absorb: we answered any Expect. */
    r->skip_1xx = 1;
    return 0;
  }
  if (status == 101 && !r->upgrade)
    return resp_error(r);
  no_body = r->head_method || status == 204 || status == 304 || status == 101;
  if (status == 101) {
    r->resp_framing = SW_FRAME_NONE;
  } else if (no_body) {
    r->resp_framing = SW_FRAME_NONE;
  } else if (p->flags & F_CONTENT_LENGTH) {
    r->resp_framing = SW_FRAME_LENGTH;
  } else {
    /* Chunked, or delimited by the upstream closing: re-encode chunked for
     * HTTP/1.1 clients, close-delimit for HTTP/1.0 ones. */
    r->resp_framing = r->http_minor == 1 ? SW_FRAME_CHUNKED : SW_FRAME_CLOSE;
  }
  /* The client connection cannot go on after a close-delimited response,
   * during shutdown, after an upgrade attempt, or when the response came
   * before the request was read whole (the rest of its body would be
   * taken for the next request). */
  if (r->resp_framing == SW_FRAME_CLOSE || sw.stopping || r->upgrade ||
      !r->complete ||
      ((r->client->flags & SW_CF_EOF) && r->client->npending == 0))
    r->keep_alive = 0;
  r->rhead_done = 1;
  r->status = status;
  if (build_response_head(r, status) != 0)
    return resp_error(r);
  out.has_head = 1;
  r->resp_started = 1;
  /* For HEAD, llhttp must not expect the body the headers describe. */
  return r->head_method ? 1 : 0;
}

static int on_rbody(llhttp_t *p, const char *at, size_t len) {
  sw_req_t *r = p->data;
  if (out.n == SW_SEGS && flush_out(r, 0) != 0)
    return resp_error(r);
  out.segs[out.n++] = uv_buf_init((char *)at, (unsigned)len);
  out.body_len += len;
  return 0;
}

static int on_rmessage_complete(llhttp_t *p) {
  sw_req_t *r = p->data;
  if (r->skip_1xx) {
    r->skip_1xx = 0;
    r->rhead_done = 0;
    sw_head_reset(&r->rhead);
    r->reason_len = 0;
    r->after_1xx = 1;
    return HPE_PAUSED;
  }
  /* After a 101 llhttp stops by itself with HPE_PAUSED_UPGRADE. */
  if (p->upgrade)
    return 0;
  r->up_done = 1;
  return HPE_PAUSED;
}

static void resp_settings_init(void) {
  if (settings_ready)
    return;
  settings_ready = 1;
  sw_buf_init(&out.head, 128 * 1024);
  llhttp_settings_init(&resp_settings);
  resp_settings.on_status = on_status;
  resp_settings.on_header_field = on_rheader_field;
  resp_settings.on_header_value = on_rheader_value;
  resp_settings.on_header_field_complete = on_rheader_field_complete;
  resp_settings.on_header_value_complete = on_rheader_value_complete;
  resp_settings.on_headers_complete = on_rheaders_complete;
  resp_settings.on_body = on_rbody;
  resp_settings.on_message_complete = on_rmessage_complete;
}

/* The upstream failed before finishing its response. */
static void upstream_failed(sw_upconn_t *u, sw_req_t *r, int err) {
  int fresh_retry = !(u->flags & SW_UF_GOT_BYTES) &&
                    (u->flags & SW_UF_REUSED) && !r->retried_fresh &&
                    r->state == SW_REQ_WAITING && !r->need_stream &&
                    sw_http_idempotent(r->method);
  sw_server_t *s = u->server;

  sw_info("upstream", r->client->id, "%s (%s) failed: %s%s", s->name,
          sw_colour_name(s->colour), uv_err_name(err),
          fresh_retry ? ", retrying on a fresh connection" : "");
  unbind(u);
  sw_upconn_close(u);
  if (fresh_retry) {
    /* A pooled connection the server closed as we reused it: the request
     * never reached the application, and it is safe to send again. */
    r->retried_fresh = 1;
    r->sent_any = 0;
    memset(&r->rscan, 0, sizeof(r->rscan));
    llhttp_init(&r->rparser, HTTP_RESPONSE, &resp_settings);
    r->rparser.data = r;
    connect_fresh(r, s);
    return;
  }
  sw_req_fail(r, 502);
}

static void response_done(sw_upconn_t *u, sw_req_t *r) {
  /* Reusable only when the upstream saw the whole request: an early
   * response leaves body bytes the next request would be parsed from. */
  /* Over TLS, bytes still held in the TLS layer after the response (or a
   * close_notify) are what extra_bytes is for a plain connection. */
  int reusable = llhttp_should_keep_alive(&r->rparser) && !r->extra_bytes &&
                 r->resp_framing != SW_FRAME_CLOSE &&
                 r->state == SW_REQ_WAITING &&
                 uv_stream_get_write_queue_size((uv_stream_t *)&u->tcp) == 0 &&
                 (u->tls == NULL || !sw_tls_input_pending(u->tls));
  r->t_up_done = uv_hrtime();
  release(u, reusable);
  sw_req_finished(r);
}

/* What the connection brought: nread bytes of plaintext at base, or (nread
 * < 0) its end or an error. */
static void up_input(sw_upconn_t *u, ssize_t nread, const char *base) {
  uv_stream_t *s = (uv_stream_t *)&u->tcp;
  sw_req_t *r = u->req;
  llhttp_errno_t err;
  size_t used;

  if (nread == 0 || (u->flags & SW_UF_CLOSING))
    return;
  if (r == NULL) {
    /* Idle in the pool: the server closed it, or sent bytes nobody asked
     * for. Either way the connection is done. */
    sw_upconn_close(u);
    return;
  }
  if (r->state == SW_REQ_TUNNEL) {
    if (nread < 0) {
      if (nread == UV_EOF) {
        uv_read_stop(s);
        u->flags &= ~SW_UF_READING;
        sw_tunnel_eof(r, 0);
      } else {
        sw_client_close(r->client);
      }
      return;
    }
    sw_tunnel_from_upstream(r, base, (size_t)nread);
    return;
  }
  if (nread < 0) {
    if (nread == UV_EOF && r->resp_started &&
        !(r->rparser.flags & (F_CONTENT_LENGTH | F_CHUNKED)))
      (void)llhttp_finish(&r->rparser);
    if (nread == UV_EOF && r->up_done) {
      /* A response delimited by the connection closing ends here. */
      if (flush_out(r, 1) != 0) {
        sw_req_fail(r, 502);
        return;
      }
      r->extra_bytes = 1;
      response_done(u, r);
      return;
    }
    upstream_failed(u, r, (int)nread);
    return;
  }

  u->flags |= SW_UF_GOT_BYTES;
  sw_timeq_add(utq(u, SW_UTQ_RESPONSE), &u->tn);
  if (r->rparser.data != r) {
    llhttp_init(&r->rparser, HTTP_RESPONSE, &resp_settings);
    r->rparser.data = r;
  }
  for (size_t off = 0;;) {
    /* The raw head bytes are checked before llhttp sees them; after an
     * interim (1xx) response the next head is checked from where it
     * starts. */
    if (!r->rscan.done &&
        sw_http_scan_head(&r->rscan, base + off, (size_t)nread - off) != 0) {
      sw_warn("upstream", r->client->id,
              "bad response from %s: bare LF or folded header line",
              u->server->name);
      unbind(u);
      sw_upconn_close(u);
      sw_req_fail(r, 502);
      return;
    }
    err = llhttp_execute(&r->rparser, base + off, (size_t)nread - off);
    used = err == HPE_OK ? (size_t)nread
                         : (size_t)(llhttp_get_error_pos(&r->rparser) - base);
    if (err != HPE_PAUSED || !r->after_1xx)
      break;
    r->after_1xx = 0;
    memset(&r->rscan, 0, sizeof(r->rscan));
    llhttp_resume(&r->rparser);
    off = used;
  }

  if (err == HPE_PAUSED_UPGRADE) {
    /* 101: the head goes to the client, then both sides tunnel. Either
     * write below can end the exchange, so check before each step. */
    sw_client_t *c = r->client;
    if (flush_out(r, 0) != 0) {
      sw_req_fail(r, 502);
      return;
    }
    r->t_up_done = uv_hrtime();
    sw_tunnel_start(r);
    if (used < (size_t)nread)
      sw_tunnel_from_upstream(r, base + used, (size_t)nread - used);
    if ((c->flags & SW_CF_CLOSING) || c->req != r)
      return;
    if (c->npending > 0 && r->up != NULL) {
      char *early = c->pending;
      uint32_t nearly = c->npending;
      c->pending = NULL;
      c->npending = 0;
      sw_tunnel_from_client(r, early, nearly);
      free(early);
      if ((c->flags & SW_CF_CLOSING) || c->req != r)
        return;
    }
    sw_client_resume_body(r);
    return;
  }
  if (err != HPE_OK && err != HPE_PAUSED) {
    /* A head built during this read has not reached the client: the
     * client can still get a clean 502 instead of a truncated response. */
    if (out.has_head)
      r->resp_started = 0;
    out.n = 0;
    out.body_len = 0;
    out.has_head = 0;
    sw_buf_reset(&out.head);
    sw_warn("upstream", r->client->id, "bad response from %s: %s",
            u->server->name,
            r->error != 0 ? "invalid or oversized head"
                          : llhttp_get_error_reason(&r->rparser));
    unbind(u);
    sw_upconn_close(u);
    sw_req_fail(r, 502);
    return;
  }
  if (r->up_done && used < (size_t)nread)
    r->extra_bytes = 1;
  if (flush_out(r, r->up_done) != 0) {
    sw_client_close(r->client);
    return;
  }
  if (r->up_done) {
    response_done(u, r);
    return;
  }
  if (uv_stream_get_write_queue_size((uv_stream_t *)&r->client->tcp) >
      (size_t)sw_client_high_water(r->client)) {
    /* Backpressure: the client reads slower than the upstream sends. */
    uv_read_stop(s);
    u->flags &= ~SW_UF_READING;
    u->flags |= SW_UF_PAUSED;
  }
}

/* A TLS handshake with the server failed: like a failed connect, the next
 * server of the colour is tried. A certificate that does not verify is
 * said loudly: it is a configuration error, not a blip. */
static void up_handshake_failed(sw_upconn_t *u, ssize_t why) {
  sw_req_t *r = u->req;

  if (r == NULL) {
    sw_upconn_close(u);
    return;
  }
  if (why == SW_TLS_EVERIFY)
    sw_error("upstream", r->client->id, "TLS to %s (%s): %s", u->server->name,
             sw_colour_name(u->server->colour), sw_tls_error(u->tls));
  else
    sw_warn("upstream", r->client->id, "TLS handshake with %s (%s) failed: %s",
            u->server->name, sw_colour_name(u->server->colour),
            why == UV_EOF ? "connection closed" : sw_tls_error(u->tls));
  unbind(u);
  sw_upconn_close(u);
  r->last_fail = 502;
  try_server(r);
}

/* Ciphertext from a TLS upstream: the handshake goes on (then the request
 * goes), and plaintext goes where a plain connection's bytes would. */
static void up_tls_input(sw_upconn_t *u, const char *data, size_t len) {
  if (sw_tls_feed(u->tls, data, len) != 0) {
    if (u->flags & SW_UF_HANDSHAKE)
      up_handshake_failed(u, SW_TLS_ENOMEM);
    else
      up_input(u, UV_ENOMEM, NULL);
    return;
  }
  for (;;) {
    ssize_t n = sw_tls_read(u->tls, up_plain, sizeof(up_plain));
    if (up_tls_flush(u) != 0) {
      if (u->flags & SW_UF_HANDSHAKE)
        up_handshake_failed(u, UV_EPIPE);
      else
        up_input(u, UV_EPIPE, NULL);
      return;
    }
    if ((u->flags & SW_UF_HANDSHAKE) && sw_tls_handshake_done(u->tls)) {
      u->flags &= ~SW_UF_HANDSHAKE;
      if (u->req != NULL)
        send_request(u);
      if (u->flags & SW_UF_CLOSING)
        return;
    }
    if (n > 0) {
      sw_req_t *r0 = u->req;
      if (r0 == NULL) {
        /* Idle in the pool: application bytes nobody asked for. */
        sw_upconn_close(u);
        return;
      }
      up_input(u, n, up_plain);
      if ((u->flags & SW_UF_CLOSING) || u->req != r0)
        return;
      continue;
    }
    if (n == 0)
      return; /* more input needed (or only TLS records, e.g. tickets) */
    if (u->flags & SW_UF_HANDSHAKE) {
      up_handshake_failed(u, n);
      return;
    }
    up_input(u, n == SW_TLS_ECLOSED ? UV_EOF : UV_EPROTO, NULL);
    return;
  }
}

static void on_up_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  sw_upconn_t *u = sw_container_of(s, sw_upconn_t, tcp);

  if (nread == 0 || (u->flags & SW_UF_CLOSING))
    return;
  if (u->tls == NULL) {
    up_input(u, nread, buf->base);
    return;
  }
  if (nread < 0) {
    if (u->flags & SW_UF_HANDSHAKE)
      up_handshake_failed(u, UV_EOF);
    else
      up_input(u, nread, NULL);
    return;
  }
  up_tls_input(u, buf->base, (size_t)nread);
}
