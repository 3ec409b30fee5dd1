/* switchd's entry point: the order of startup and shutdown, and signals
 * (TERM/INT graceful stop, HUP reload, USR1 reopen logs). Owns the one
 * sw_t of the process. A reload is all-or-nothing: a config that does not
 * parse or cannot be bound is rejected with its error and the running one
 * stays. At exit every handle is closed and everything freed, so the loop
 * closes cleanly and a leak checker finds nothing. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sw_tls.h"
#include "sw_control.h"
#include "sw_hold.h"
#include "sw_log.h"
#include "sw_proxy.h"

sw_t sw;

static char read_buf[64 * 1024];

void sw_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  (void)h;
  (void)suggested;
  *buf = uv_buf_init(read_buf, sizeof(read_buf));
}

uint64_t sw_next_id(void) {
  return ++sw.next_id;
}

static void apply_timeouts(const sw_config_t *cfg) {
  uint64_t body = cfg->body_timeout_ms;
  if (cfg->min_send_rate > 0 && body > SW_RATE_WINDOW_MS)
    body = SW_RATE_WINDOW_MS;
  sw.tq[SW_TQ_HEADER].duration_ms = cfg->header_timeout_ms;
  sw.tq[SW_TQ_IDLE].duration_ms = cfg->idle_timeout_ms;
  sw.tq[SW_TQ_BODY].duration_ms = body;
  sw.tq[SW_TQ_SEND].duration_ms = cfg->send_timeout_ms;
  sw.tq[SW_TQ_LINGER].duration_ms = SW_LINGER_MS;
  sw.tq[SW_TQ_TUNNEL].duration_ms = cfg->tunnel_timeout_ms;
  /* One queue for every HTTPS listener, on the shortest handshake timeout
   * of their sections; a section with a longer one keeps its connections
   * in the queue for more rounds (its timeout is rounded up to a multiple
   * of the shortest). */
  sw.tq[SW_TQ_HANDSHAKE].duration_ms = 10 * 1000;
  for (size_t i = 0; i < cfg->ntls; i++)
    if (i == 0 ||
        cfg->tls[i].handshake_timeout_ms < sw.tq[SW_TQ_HANDSHAKE].duration_ms)
      sw.tq[SW_TQ_HANDSHAKE].duration_ms = cfg->tls[i].handshake_timeout_ms;
  for (int c = 0; c < SW_COLOURS; c++) {
    const sw_upstream_conf_t *u = &cfg->upstream[c];
    sw.utq[c][SW_UTQ_CONNECT].duration_ms = u->connect_timeout_ms;
    sw.utq[c][SW_UTQ_RESPONSE].duration_ms = u->response_timeout_ms;
    sw.utq[c][SW_UTQ_IDLE].duration_ms = u->idle_timeout_ms;
  }
}

static int write_pid(const char *path) {
  FILE *fp = fopen(path, "w");
  if (fp == NULL)
    return -errno;
  fprintf(fp, "%d\n", (int)getpid());
  return fclose(fp) == 0 ? 0 : -errno;
}

/* --- shutdown ------------------------------------------------------------ */

static void on_walk_close_idle(uv_handle_t *h, void *arg) {
  sw_kind_t *kind = h->data;
  (void)arg;
  if (kind != NULL && *kind == SW_KIND_CLIENT && !uv_is_closing(h))
    sw_client_shutdown_idle(sw_container_of(kind, sw_client_t, kind));
}

static void on_walk_close_all(uv_handle_t *h, void *arg) {
  sw_kind_t *kind = h->data;
  (void)arg;
  if (kind != NULL && *kind == SW_KIND_CLIENT && !uv_is_closing(h))
    sw_client_close(sw_container_of(kind, sw_client_t, kind));
}

static void finish_shutdown(void) {
  if (sw.shutdown_started)
    return;
  sw.shutdown_started = 1;
  sw_info("main", 0, "all connections closed, exiting");
  sw_upstream_close_idle();
  sw_pools_stop_health();
  sw_control_stop();
  uv_close((uv_handle_t *)&sw.shutdown_timer, NULL);
  uv_close((uv_handle_t *)&sw.flush_timer, NULL);
  uv_close((uv_handle_t *)&sw.sig_term, NULL);
  uv_close((uv_handle_t *)&sw.sig_int, NULL);
  uv_close((uv_handle_t *)&sw.sig_hup, NULL);
  uv_close((uv_handle_t *)&sw.sig_usr1, NULL);
  for (int i = 0; i < SW_TQ_CLIENT_COUNT; i++)
    sw_timeq_close(&sw.tq[i], NULL);
  for (int c = 0; c < SW_COLOURS; c++)
    for (int k = 0; k < SW_UTQ_COUNT; k++)
      sw_timeq_close(&sw.utq[c][k], NULL);
}

void sw_maybe_exit(void) {
  if (sw.stopping && sw.nclients == 0)
    finish_shutdown();
}

static void on_shutdown_timer(uv_timer_t *t) {
  (void)t;
  sw_warn("main", 0, "shutdown timeout: closing %llu connections",
          (unsigned long long)sw.nclients);
  uv_walk(sw.loop, on_walk_close_all, NULL);
}

static void begin_stop(void) {
  if (sw.stopping)
    return;
  sw.stopping = 1;
  sw_info("main", 0, "stopping: %llu connections open",
          (unsigned long long)sw.nclients);
  sw_listener_close_all();
  /* Held requests are served first: a stop never turns a hold into
   * errors. */
  (void)sw_hold_release(SW_HOLD_END_SHUTDOWN);
  /* Idle clients go now; busy ones answer with Connection: close and are
   * closed after their response (see sw_req_finished). */
  uv_walk(sw.loop, on_walk_close_idle, NULL);
  uv_timer_start(&sw.shutdown_timer, on_shutdown_timer,
                 sw.cfg->shutdown_timeout_ms, 0);
  sw_maybe_exit();
}

/* --- signals ------------------------------------------------------------- */

static void free_upstream_tls(struct sw_tls_ctx_s *utls[SW_COLOURS]) {
  for (int c = 0; c < SW_COLOURS; c++)
    if (utls[c] != NULL)
      sw_tls_ctx_unref(utls[c]);
}

static void reload(void) {
  struct sw_tls_ctx_s *utls[SW_COLOURS];
  sw_config_t *cfg;
  char err[1024];
  int e;

  e = sw_config_load(sw.config_path, &cfg, err, sizeof(err));
  if (e != 0) {
    sw_error("main", 0, "reload rejected, keeping the running config: %s", err);
    return;
  }
  /* Upstream TLS first: a tls_ca that does not load rejects the config
   * before any socket changes. */
  e = sw_pools_tls_load(cfg, utls, err, sizeof(err));
  if (e != 0) {
    sw_error("main", 0, "reload rejected, keeping the running config: %s", err);
    sw_config_free(cfg);
    return;
  }
  e = sw_listener_sync(cfg, err, sizeof(err));
  if (e != 0) {
    sw_error("main", 0, "reload rejected, keeping the running config: %s", err);
    free_upstream_tls(utls);
    sw_config_free(cfg);
    return;
  }
  sw_pools_tls_set(utls);
  e = sw_log_open(cfg);
  if (e != 0)
    sw_error("main", 0, "reload: cannot open logs (%s); keeping the old ones",
             uv_strerror(e));
  e = sw_pools_apply(cfg, 0);
  if (e != 0) {
    sw_error("main", 0, "reload: %s", uv_strerror(e));
    sw_config_free(cfg);
    return;
  }
  apply_timeouts(cfg);
  {
    sw_config_t *old = sw.cfg;
    sw.cfg = cfg;
    /* The control module decides what a changed `live` means. */
    sw_control_reload(old);
    sw_config_free(old);
  }
  sw_info("main", 0, "reloaded %s", cfg->file);
}

static void on_signal(uv_signal_t *h, int signum) {
  (void)h;
  switch (signum) {
    case SIGTERM:
    case SIGINT:
      begin_stop();
      break;
    case SIGHUP:
      if (!sw.stopping)
        reload();
      break;
    case SIGUSR1: {
      int e = sw_log_reopen();
      if (e != 0)
        sw_error("main", 0, "cannot reopen logs: %s", uv_strerror(e));
      else
        sw_info("main", 0, "logs reopened");
      break;
    }
  }
}

static void on_flush_timer(uv_timer_t *t) {
  (void)t;
  sw_log_flush();
}

static int start_signal(uv_signal_t *h, int signum) {
  int e = uv_signal_init(sw.loop, h);
  if (e != 0)
    return e;
  e = uv_signal_start(h, on_signal, signum);
  uv_unref((uv_handle_t *)h);
  return e;
}

static void usage(void) {
  fprintf(stderr,
          "usage: switchd -c FILE [-t]\n"
          "  -c FILE  configuration file\n"
          "  -t       check the configuration and exit (0 valid, 1 not)\n"
          "  -v       print the version\n");
}

int main(int argc, char **argv) {
  const char *path = NULL;
  int check = 0, opt, e, code = 0;
  char err[1024] = "";
  sw_config_t *cfg;

  while ((opt = getopt(argc, argv, "c:tvh")) != -1) {
    switch (opt) {
      case 'c':
        path = optarg;
        break;
      case 't':
        check = 1;
        break;
      case 'v':
        printf("switchd %s\n", SW_VERSION);
        return 0;
      default:
        usage();
        return 2;
    }
  }
  if (path == NULL || optind != argc) {
    usage();
    return 2;
  }
  if (sw_config_load(path, &cfg, err, sizeof(err)) != 0) {
    fprintf(stderr, "%s\n", err);
    return 1;
  }
  if (check) {
    /* The certificates too: a key that does not match, an expired
     * certificate or a bad cipher list is found now, not at startup. */
    struct sw_tls_ctx_s **ctxs, *utls[SW_COLOURS];
    if (sw_listener_tls_load(cfg, &ctxs, err, sizeof(err)) != 0) {
      fprintf(stderr, "%s\n", err);
      sw_config_free(cfg);
      return 1;
    }
    sw_listener_tls_free(cfg, ctxs);
    if (sw_pools_tls_load(cfg, utls, err, sizeof(err)) != 0) {
      fprintf(stderr, "%s\n", err);
      sw_config_free(cfg);
      return 1;
    }
    free_upstream_tls(utls);
    printf("%s: ok\n", path);
    sw_config_free(cfg);
    return 0;
  }
  signal(SIGPIPE, SIG_IGN);

  sw.loop = uv_default_loop();
  sw.cfg = cfg;
  sw.config_path = path;
  sw.live = cfg->live;
  sw_list_init(&sw.listeners);
  e = sw_log_open(cfg);
  if (e != 0) {
    fprintf(stderr, "%s: cannot open logs: %s\n", path, uv_strerror(e));
    sw_config_free(cfg);
    return 1;
  }
  /* These only fail on exhausted resources; startup then stops at once,
   * before anything was served. */
  for (int i = 0; i < SW_TQ_CLIENT_COUNT && e == 0; i++)
    e = sw_timeq_init(sw.loop, &sw.tq[i], 1000, sw_client_expire);
  for (int c = 0; c < SW_COLOURS && e == 0; c++)
    for (int k = 0; k < SW_UTQ_COUNT && e == 0; k++)
      e = sw_timeq_init(sw.loop, &sw.utq[c][k], 1000, sw_upstream_expire);
  if (e == 0)
    e = uv_timer_init(sw.loop, &sw.shutdown_timer);
  if (e == 0)
    e = uv_timer_init(sw.loop, &sw.flush_timer);
  if (e == 0)
    e = uv_timer_start(&sw.flush_timer, on_flush_timer, 200, 200);
  if (e == 0)
    e = start_signal(&sw.sig_term, SIGTERM);
  if (e == 0)
    e = start_signal(&sw.sig_int, SIGINT);
  if (e == 0)
    e = start_signal(&sw.sig_hup, SIGHUP);
  if (e == 0)
    e = start_signal(&sw.sig_usr1, SIGUSR1);
  if (e != 0) {
    fprintf(stderr, "switchd: cannot set up the event loop: %s\n",
            uv_strerror(e));
    return 1;
  }
  uv_unref((uv_handle_t *)&sw.flush_timer);
  apply_timeouts(cfg);

  {
    struct sw_tls_ctx_s *utls[SW_COLOURS];
    if (sw_pools_tls_load(cfg, utls, err, sizeof(err)) != 0)
      code = 1; /* err names the tls_ca that did not load */
    else
      sw_pools_tls_set(utls);
  }
  if (code != 0) {
    /* reported below */
  } else if (sw_pools_apply(cfg, 1) != 0) {
    snprintf(err, sizeof(err), "%s: out of memory", path);
    code = 1;
  } else if (sw_control_start(err, sizeof(err)) != 0) {
    code = 1;
  } else if (sw_listener_sync(cfg, err, sizeof(err)) != 0) {
    code = 1;
  }
  if (code != 0) {
    fprintf(stderr, "%s\n", err);
    sw.stopping = 1;
    finish_shutdown();
  } else {
    if (cfg->pid_file != NULL && (e = write_pid(cfg->pid_file)) != 0)
      sw_warn("main", 0, "cannot write %s: %s", cfg->pid_file, uv_strerror(e));
    sw_info("main", 0, "switchd %s started, live colour %s", SW_VERSION,
            sw_colour_name(sw.live));
  }

  uv_run(sw.loop, UV_RUN_DEFAULT);
  sw_pools_free();
  sw_client_cache_free();
  e = uv_loop_close(sw.loop);
  if (e != 0) {
    sw_error("main", 0, "loop did not close cleanly: %s", uv_err_name(e));
    code = 1;
  }
  if (sw.cfg->pid_file != NULL && code == 0)
    unlink(sw.cfg->pid_file);
  sw_config_free(sw.cfg);
  sw_log_close();
  return code;
}
