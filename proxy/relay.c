/* Moving bytes: the one write path every connection uses, and the raw
 * tunnel after a 101. Writes go out synchronously as far as the socket
 * takes them; only the remainder is copied into a queued write, so a fast
 * peer costs no copy and a slow one costs one copy of what it has not read
 * yet. Queued bytes count against the global buffer budget; whoever reads
 * the source stops reading when the destination's queue passes its
 * high-water mark and starts again from the write callback. */
#include <stdlib.h>
#include <string.h>

#include "sw_tls.h"
#include "sw_hold.h"
#include "sw_log.h"
#include "sw_proxy.h"

typedef struct sw_wr_s {
  uv_write_t req;
  size_t len;
  char data[];
} sw_wr_t;

static void on_upconn_written(sw_upconn_t *u, int status);

static void on_write(uv_write_t *req, int status) {
  sw_wr_t *wr = sw_container_of(req, sw_wr_t, req);
  uv_stream_t *s = req->handle;
  sw_kind_t *kind = s->data;

  sw.buffered -= wr->len;
  free(wr);
  if (kind == NULL)
    return;
  if (*kind == SW_KIND_CLIENT)
    sw_client_written(sw_container_of(kind, sw_client_t, kind), status);
  else if (*kind == SW_KIND_UPCONN)
    on_upconn_written(sw_container_of(kind, sw_upconn_t, kind), status);
}

#define TLS_RECORD (16 * 1024)

int sw_tls_send(sw_tls_t *t,
                const uv_buf_t *bufs,
                unsigned n,
                int (*flush)(void *arg),
                void *arg) {
  static char stage[TLS_RECORD];
  size_t staged = 0;
  int err;

  for (unsigned i = 0; i < n; i++) {
    const char *p = bufs[i].base;
    size_t len = bufs[i].len;
    while (len > 0) {
      size_t take;
      if (staged == 0 && len >= TLS_RECORD) {
        /* A whole record straight from the caller's buffer. */
        if (sw_tls_write(t, p, TLS_RECORD) != 0)
          return UV_EPROTO;
        if ((err = flush(arg)) != 0)
          return err;
        p += TLS_RECORD;
        len -= TLS_RECORD;
        continue;
      }
      take = len < TLS_RECORD - staged ? len : TLS_RECORD - staged;
      memcpy(stage + staged, p, take);
      staged += take;
      p += take;
      len -= take;
      if (staged == TLS_RECORD) {
        if (sw_tls_write(t, stage, staged) != 0)
          return UV_EPROTO;
        staged = 0;
        if ((err = flush(arg)) != 0)
          return err;
      }
    }
  }
  if (staged > 0) {
    if (sw_tls_write(t, stage, staged) != 0)
      return UV_EPROTO;
    if ((err = flush(arg)) != 0)
      return err;
  }
  return 0;
}

int sw_stream_write(uv_stream_t *s, const uv_buf_t *bufs, unsigned n) {
  size_t total = 0, done = 0, off;
  unsigned i = 0;
  sw_wr_t *wr;
  uv_buf_t one;
  int err;

  for (unsigned k = 0; k < n; k++)
    total += bufs[k].len;
  if (total == 0)
    return 0;
  if (uv_is_closing((uv_handle_t *)s))
    return UV_ECANCELED;

  err = uv_try_write(s, bufs, n);
  if (err >= 0) {
    done = (size_t)err;
    if (done == total)
      return 0;
  } else if (err != UV_EAGAIN && err != UV_ENOSYS) {
    return err;
  }

  /* Copy what the socket did not take, skipping the bytes already sent. */
  wr = malloc(sizeof(*wr) + (total - done));
  if (wr == NULL)
    return UV_ENOMEM;
  wr->len = total - done;
  off = 0;
  for (i = 0; i < n; i++) {
    size_t len = bufs[i].len;
    const char *p = bufs[i].base;
    if (done >= len) {
      done -= len;
      continue;
    }
    p += done;
    len -= done;
    done = 0;
    memcpy(wr->data + off, p, len);
    off += len;
  }
  one = uv_buf_init(wr->data, (unsigned)wr->len);
  err = uv_write(&wr->req, s, &one, 1, on_write);
  if (err != 0) {
    free(wr);
    return err;
  }
  sw.buffered += wr->len;
  return 0;
}

static void on_upconn_written(sw_upconn_t *u, int status) {
  sw_req_t *r = u->req;
  size_t queued;

  if (u->flags & SW_UF_CLOSING || r == NULL)
    return;
  if (status < 0) {
    /* The read side sees the same failure and decides what it means for
     * the request; a write error alone does not lose the response. */
    sw_debug("upstream", u->id, "write failed: %s", uv_err_name(status));
    return;
  }
  queued = uv_stream_get_write_queue_size((uv_stream_t *)&u->tcp);
  if (r->state == SW_REQ_TUNNEL) {
    sw_tunnel_written((uv_stream_t *)&u->tcp);
    return;
  }
  if (r->state == SW_REQ_STREAMING && queued < SW_STREAM_HIGH_WATER)
    sw_client_resume_body(r);
}

/* Tunnel: after the 101 both connections carry raw bytes. Each side reads
 * while the other side's write queue is under the high-water mark. */
void sw_tunnel_start(sw_req_t *r) {
  sw_client_t *c = r->client;
  r->state = SW_REQ_TUNNEL;
  c->flags |= SW_CF_TUNNEL;
  r->up->server->tunnels++;
  sw_timeq_add(&sw.tq[SW_TQ_TUNNEL], &c->tn);
  sw_timeq_del(&r->up->tn);
  /* A tunnel does not keep a hold from being quiet: the hold may be it. */
  if (sw_hold_waiting)
    sw_hold_poke();
}

static void tunnel_close(sw_req_t *r) {
  sw_client_close(r->client);
}

void sw_tunnel_from_client(sw_req_t *r, const char *data, size_t len) {
  uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
  uv_stream_t *dst;
  if (r->up == NULL) {
    tunnel_close(r);
    return;
  }
  dst = (uv_stream_t *)&r->up->tcp;
  sw_timeq_add(&sw.tq[SW_TQ_TUNNEL], &r->client->tn);
  if (sw_upconn_write(r->up, &b, 1) != 0) {
    tunnel_close(r);
    return;
  }
  if (uv_stream_get_write_queue_size(dst) > SW_STREAM_HIGH_WATER) {
    uv_read_stop((uv_stream_t *)&r->client->tcp);
    r->client->flags &= ~SW_CF_READING;
  }
}

void sw_tunnel_from_upstream(sw_req_t *r, const char *data, size_t len) {
  uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
  uv_stream_t *dst = (uv_stream_t *)&r->client->tcp;
  sw_timeq_add(&sw.tq[SW_TQ_TUNNEL], &r->client->tn);
  if (sw_client_write(r->client, &b, 1) != 0) {
    tunnel_close(r);
    return;
  }
  if (uv_stream_get_write_queue_size(dst) > SW_STREAM_HIGH_WATER) {
    uv_read_stop((uv_stream_t *)&r->up->tcp);
    r->up->flags |= SW_UF_PAUSED;
    r->up->flags &= ~SW_UF_READING;
  }
}

typedef struct sw_shut_s {
  uv_shutdown_t req;
} sw_shut_t;

static void on_tunnel_shutdown(uv_shutdown_t *req, int status) {
  free(sw_container_of(req, sw_shut_t, req));
}

/* One side closed its sending half: pass the half-close on, and close both
 * when both halves are done. */
void sw_tunnel_eof(sw_req_t *r, int from_client) {
  uv_stream_t *dst;
  sw_shut_t *sh;
  if (r->up == NULL) {
    tunnel_close(r);
    return;
  }
  /* Once per direction: TLS's close_notify and the FIN after it are one
   * end of that direction. */
  if (r->tunnel_eof & (from_client ? 1 : 2))
    return;
  r->tunnel_eof |= from_client ? 1 : 2;
  if (r->tunnel_eof == 3) {
    tunnel_close(r);
    return;
  }
  dst =
      from_client ? (uv_stream_t *)&r->up->tcp : (uv_stream_t *)&r->client->tcp;
  if (!from_client)
    sw_client_close_notify(r->client);
  else
    sw_upconn_close_notify(r->up);
  sh = malloc(sizeof(*sh));
  if (sh == NULL || uv_shutdown(&sh->req, dst, on_tunnel_shutdown) != 0) {
    free(sh);
    tunnel_close(r);
  }
}

void sw_tunnel_written(uv_stream_t *s) {
  sw_kind_t *kind = s->data;
  sw_req_t *r;

  if (*kind == SW_KIND_CLIENT) {
    sw_client_t *c = sw_container_of(kind, sw_client_t, kind);
    r = c->req;
    if (r == NULL || r->up == NULL)
      return;
    if (uv_stream_get_write_queue_size(s) < SW_STREAM_HIGH_WATER)
      sw_upstream_resume(r);
  } else {
    sw_upconn_t *u = sw_container_of(kind, sw_upconn_t, kind);
    r = u->req;
    if (r == NULL)
      return;
    if (uv_stream_get_write_queue_size(s) < SW_STREAM_HIGH_WATER &&
        !(r->client->flags & SW_CF_READING))
      sw_client_resume_body(r);
  }
}
