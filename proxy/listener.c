/* Bound sockets. Owns the listening handles and keeps them in step with the
 * config: a reload binds what is new before anything else changes (so a
 * bind that fails rejects the reload), and closes what was removed.
 * Connections accepted earlier are never touched. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sw_log.h"
#include "sw_proxy.h"
#include "sw_tls.h"

static void on_connection(uv_stream_t *server, int status) {
  if (status < 0) {
    sw_warn("listener", 0, "accept failed: %s", uv_err_name(status));
    return;
  }
  sw_client_accept(server);
}

static void on_listener_close(uv_handle_t *h) {
  sw_listener_t *ls = sw_container_of(h, sw_listener_t, tcp);
  if (ls->tls != NULL)
    sw_tls_ctx_unref(ls->tls);
  free(ls);
}

/* A listener's TLS context: the new one for what it accepts next. */
static void set_tls(sw_listener_t *ls, sw_tls_ctx_t *ctx) {
  if (ctx != NULL)
    sw_tls_ctx_ref(ctx);
  if (ls->tls != NULL)
    sw_tls_ctx_unref(ls->tls);
  ls->tls = ctx;
}

int sw_listener_tls_load(const sw_config_t *cfg,
                         sw_tls_ctx_t ***out,
                         char *err,
                         size_t errlen) {
  sw_tls_ctx_t **ctxs = NULL;

  *out = NULL;
  if (cfg->ntls == 0)
    return 0;
  ctxs = calloc(cfg->ntls, sizeof(*ctxs));
  if (ctxs == NULL)
    return UV_ENOMEM;
  for (size_t i = 0; i < cfg->ntls; i++) {
    int e = sw_tls_ctx_new(cfg->file, &cfg->tls[i], (int64_t)time(NULL),
                           &ctxs[i], err, errlen);
    if (e != 0) {
      sw_listener_tls_free(cfg, ctxs);
      return e;
    }
  }
  *out = ctxs;
  return 0;
}

void sw_listener_tls_free(const sw_config_t *cfg, sw_tls_ctx_t **ctxs) {
  if (ctxs == NULL)
    return;
  for (size_t i = 0; i < cfg->ntls; i++)
    if (ctxs[i] != NULL)
      sw_tls_ctx_unref(ctxs[i]);
  free(ctxs);
}

static sw_listener_t *find(const char *name) {
  for (sw_list_t *l = sw.listeners.next; l != &sw.listeners; l = l->next) {
    sw_listener_t *ls = sw_container_of(l, sw_listener_t, link);
    if (strcmp(ls->name, name) == 0)
      return ls;
  }
  return NULL;
}

static int open_listener(const sw_bind_conf_t *b, sw_listener_t **out) {
  sw_listener_t *ls = calloc(1, sizeof(*ls));
  int err;

  if (ls == NULL)
    return UV_ENOMEM;
  err = uv_tcp_init(sw.loop, &ls->tcp);
  if (err != 0) {
    free(ls);
    return err;
  }
  ls->kind = SW_KIND_LISTENER;
  ls->tcp.data = &ls->kind;
  memcpy(ls->name, b->name, sizeof(ls->name));
  ls->addr = b->addr;
  sw_list_init(&ls->link);
  err = uv_tcp_bind(&ls->tcp, (struct sockaddr *)&b->addr, 0);
  if (err == 0)
    err = uv_listen((uv_stream_t *)&ls->tcp, 4096, on_connection);
  if (err != 0) {
    uv_close((uv_handle_t *)&ls->tcp, on_listener_close);
    return err;
  }
  *out = ls;
  return 0;
}

int sw_listener_sync(const sw_config_t *cfg, char *err, size_t errlen) {
  sw_list_t added;
  sw_tls_ctx_t **ctxs;
  int e;

  sw_list_init(&added);
  /* Certificates first: one that does not load rejects the config before
   * any socket changes. */
  e = sw_listener_tls_load(cfg, &ctxs, err, errlen);
  if (e != 0)
    return e;

  for (size_t i = 0; i < cfg->nbinds; i++) {
    sw_listener_t *ls;
    if (find(cfg->binds[i].name) != NULL)
      continue;
    e = open_listener(&cfg->binds[i], &ls);
    if (e != 0) {
      snprintf(err, errlen, "%s:%d: bind %s: %s", cfg->file, cfg->binds[i].line,
               cfg->binds[i].name, uv_strerror(e));
      /* Undo the binds of this attempt: the old set stays as it was. */
      while (!sw_list_empty(&added)) {
        sw_listener_t *a = sw_container_of(added.next, sw_listener_t, link);
        sw_list_remove(&a->link);
        uv_close((uv_handle_t *)&a->tcp, on_listener_close);
      }
      sw_listener_tls_free(cfg, ctxs);
      return e;
    }
    sw_list_append(&added, &ls->link);
  }
  /* Close what is no longer configured. */
  for (sw_list_t *l = sw.listeners.next; l != &sw.listeners;) {
    sw_listener_t *ls = sw_container_of(l, sw_listener_t, link);
    int keep = 0;
    l = l->next;
    for (size_t i = 0; i < cfg->nbinds; i++)
      if (strcmp(cfg->binds[i].name, ls->name) == 0)
        keep = 1;
    if (!keep) {
      sw_info("listener", 0, "closing %s", ls->name);
      sw_list_remove(&ls->link);
      uv_close((uv_handle_t *)&ls->tcp, on_listener_close);
    }
  }
  while (!sw_list_empty(&added)) {
    sw_listener_t *a = sw_container_of(added.next, sw_listener_t, link);
    sw_list_remove(&a->link);
    sw_list_append(&sw.listeners, &a->link);
    sw_info("listener", 0, "listening on %s", a->name);
  }
  /* Every listener gets its section's context as of this config: new
   * handshakes use the new certificates; open connections keep theirs.
   * The ticket keys carry over from the context the listener had, so a
   * reload does not cost every client a full handshake. */
  for (sw_list_t *l = sw.listeners.next; l != &sw.listeners; l = l->next) {
    sw_listener_t *ls = sw_container_of(l, sw_listener_t, link);
    for (size_t i = 0; i < cfg->nbinds; i++)
      if (strcmp(cfg->binds[i].name, ls->name) == 0) {
        int t = cfg->binds[i].tls;
        sw_tls_ctx_t *next = t >= 0 && ctxs != NULL ? ctxs[t] : NULL;
        if (next != NULL && ls->tls != NULL)
          sw_tls_ctx_inherit_tickets(next, ls->tls);
        set_tls(ls, next);
      }
  }
  sw_listener_tls_free(cfg, ctxs);
  return 0;
}

void sw_listener_close_all(void) {
  while (!sw_list_empty(&sw.listeners)) {
    sw_listener_t *ls = sw_container_of(sw.listeners.next, sw_listener_t, link);
    sw_list_remove(&ls->link);
    uv_close((uv_handle_t *)&ls->tcp, on_listener_close);
  }
}
