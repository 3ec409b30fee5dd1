/* The admin API transport (see sw_admin.h). Owns the admin listeners and
 * connections, request parsing and caller checks. It must never block the
 * loop beyond the one-time socket setup at start, and never let an admin
 * client grow memory without bound: requests are capped, and an event
 * stream that stops reading is dropped. */
#include "sw_admin.h"

#include <errno.h>
#include <llhttp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "sw_http.h"
#include "sw_list.h"
#include "sw_log.h"
#include "sw_types.h"

/* An event stream whose client has this much unread is dropped. */
#define SW_ADMIN_STREAM_MAX (1024 * 1024)
#define SW_ADMIN_URL_MAX 2048
/* A connection that has not sent a whole request by then is closed; event
 * streams are exempt (they are meant to stay). */
#define SW_ADMIN_REQUEST_MS 10000
/* Open admin connections at most: past it new ones are closed at once, so
 * idle callers cannot take the descriptors the proxy needs. */
#define SW_ADMIN_MAX_CONNS 256

typedef struct adm_listener_s {
  union {
    uv_pipe_t pipe;
    uv_tcp_t tcp;
  } h;
  int is_tcp;
} adm_listener_t;

typedef struct adm_conn_s {
  union {
    uv_pipe_t pipe;
    uv_tcp_t tcp;
    uv_stream_t stream;
  } h;
  sw_list_t link; /* on conns */
  llhttp_t parser;
  sw_buf_t url;
  sw_buf_t body;
  sw_buf_t auth; /* the Authorization header's value */
  int in_auth;   /* the header being parsed is Authorization */
  int is_tcp;
  int may_mutate;
  int allowed; /* the caller may use the API at all */
  int complete;
  int events; /* an open event stream */
  int closing;
  uint64_t since; /* loop time of the accept */
  char caller[96];
} adm_conn_t;

static struct {
  uv_loop_t *loop;
  adm_listener_t *unix_ls;
  adm_listener_t *tcp_ls;
  char *socket_path;
  unsigned *allow;
  size_t nallow;
  char *token;
  int metrics_open;
  sw_admin_handler handler;
  void *data;
  sw_list_t conns;
  size_t nconns;
  uv_timer_t sweep; /* closes connections past SW_ADMIN_REQUEST_MS */
  int sweep_open;
  dev_t sock_dev; /* the socket file we created, so that we only ever */
  ino_t sock_ino; /* remove our own */
  int inited;
  size_t open_handles;
} adm;

static llhttp_settings_t settings;
static char read_buf[16 * 1024];

static void on_alloc(uv_handle_t *h, size_t n, uv_buf_t *b) {
  (void)h;
  (void)n;
  *b = uv_buf_init(read_buf, sizeof(read_buf));
}

int sw_admin_token_eq(const char *given, size_t glen, const char *want) {
  size_t wlen = strlen(want);
  unsigned char diff = (unsigned char)(glen != wlen);
  /* Every byte of the expected token is looked at whatever the input, so
   * the time taken does not tell how much of a guess was right. */
  for (size_t i = 0; i < wlen; i++) {
    unsigned char g = i < glen ? (unsigned char)given[i] : 0;
    diff |= (unsigned char)(g ^ (unsigned char)want[i]);
  }
  return diff == 0 && wlen > 0;
}

/* --- connections ---------------------------------------------------------- */

static void on_conn_close(uv_handle_t *h) {
  adm_conn_t *c = sw_container_of((uv_stream_t *)h, adm_conn_t, h.stream);
  sw_buf_free(&c->url);
  sw_buf_free(&c->body);
  sw_buf_free(&c->auth);
  free(c);
  adm.open_handles--;
}

static void conn_close(adm_conn_t *c) {
  if (c->closing)
    return;
  c->closing = 1;
  sw_list_remove(&c->link);
  adm.nconns--;
  uv_close((uv_handle_t *)&c->h.stream, on_conn_close);
}

typedef struct adm_write_s {
  uv_write_t req;
  adm_conn_t *c;
  int close_after;
  char data[];
} adm_write_t;

static void on_written(uv_write_t *req, int status) {
  adm_write_t *w = sw_container_of(req, adm_write_t, req);
  adm_conn_t *c = w->c;
  int close_after = w->close_after;
  free(w);
  if (status < 0 || close_after)
    conn_close(c);
}

static int conn_write(adm_conn_t *c,
                      const char *p,
                      size_t len,
                      int close_after) {
  adm_write_t *w;
  uv_buf_t b;
  int err;

  if (c->closing)
    return UV_ECANCELED;
  w = malloc(sizeof(*w) + len);
  if (w == NULL)
    return UV_ENOMEM;
  w->c = c;
  w->close_after = close_after;
  memcpy(w->data, p, len);
  b = uv_buf_init(w->data, (unsigned)len);
  err = uv_write(&w->req, &c->h.stream, &b, 1, on_written);
  if (err != 0) {
    free(w);
    conn_close(c);
  }
  return err;
}

static void respond(adm_conn_t *c, sw_admin_resp_t *r) {
  char head[512];
  char *body = NULL;
  const char *p;
  size_t len;
  int n;

  if (r->json != NULL) {
    body = json_dumps(r->json, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(r->json);
    r->json = NULL;
  }
  if (body != NULL) {
    p = body;
    len = strlen(body);
  } else {
    p = r->text.data != NULL ? r->text.data : "";
    len = r->text.len;
  }
  if (r->events) {
    n = snprintf(head, sizeof(head),
                 "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                 "Cache-Control: no-cache\r\nConnection: close\r\n\r\n");
    c->events = 1;
    conn_write(c, head, (size_t)n, 0);
    if (len > 0)
      conn_write(c, p, len, 0);
  } else {
    n = snprintf(head, sizeof(head),
                 "HTTP/1.1 %d %s\r\nContent-Type: %s\r\n"
                 "Content-Length: %zu\r\nConnection: close\r\n\r\n",
                 r->status, sw_http_reason(r->status),
                 r->content_type != NULL
                     ? r->content_type
                     : (body != NULL ? "application/json" : "text/plain"),
                 len + (body != NULL ? 1 : 0));
    {
      /* One write of head, body and a final newline for JSON. */
      sw_buf_t all;
      sw_buf_init(&all, (size_t)n + len + 2);
      if (sw_buf_append(&all, head, (size_t)n) == 0 &&
          sw_buf_append(&all, p, len) == 0 &&
          (body == NULL || sw_buf_append(&all, "\n", 1) == 0))
        conn_write(c, all.data, all.len, 1);
      else
        conn_close(c);
      sw_buf_free(&all);
    }
  }
  free(body);
  sw_buf_free(&r->text);
}

static void respond_error(adm_conn_t *c, int status, const char *msg) {
  sw_admin_resp_t r;
  memset(&r, 0, sizeof(r));
  r.status = status;
  r.json = json_pack("{s:s}", "error", msg);
  respond(c, &r);
}

static void dispatch(adm_conn_t *c) {
  sw_admin_req_t req;
  sw_admin_resp_t resp;
  json_error_t je;
  char *q;
  int is_metrics;

  if (sw_buf_append(&c->url, "", 1) != 0) {
    respond_error(c, 414, "the request target is too long");
    return;
  }
  memset(&req, 0, sizeof(req));
  memset(&resp, 0, sizeof(resp));
  sw_buf_init(&resp.text, 4 * 1024 * 1024);
  req.method = llhttp_method_name((llhttp_method_t)c->parser.method);
  req.path = c->url.data;
  q = strchr(c->url.data, '?');
  req.query = "";
  if (q != NULL) {
    *q = '\0';
    req.query = q + 1;
  }
  is_metrics = strcmp(req.path, "/metrics") == 0;
  if (c->is_tcp) {
    /* Over TCP the token is the caller's identity: without it only an
     * open /metrics is served. */
    const char *a = c->auth.data;
    size_t alen = c->auth.len;
    int ok = adm.token != NULL && alen > 7 &&
             sw_http_iprefix(a, alen, "bearer ") &&
             sw_admin_token_eq(a + 7, alen - 7, adm.token);
    if (!ok && !(is_metrics && adm.metrics_open)) {
      sw_warn("admin", 0, "%s: %s %s refused: missing or wrong token",
              c->caller, req.method, req.path);
      sw_buf_free(&resp.text);
      respond_error(c, 401, "a valid bearer token is required");
      return;
    }
    c->may_mutate = ok;
  }
  if (c->body.len > 0) {
    req.body = json_loadb(c->body.data, c->body.len, 0, &je);
    if (req.body == NULL || !json_is_object(req.body)) {
      char msg[256];
      snprintf(msg, sizeof(msg), "the body is not a JSON object: %s",
               req.body == NULL ? je.text : "not an object");
      json_decref(req.body);
      sw_buf_free(&resp.text);
      respond_error(c, 400, msg);
      return;
    }
  }
  req.caller = c->caller;
  req.may_mutate = c->may_mutate;
  resp.status = 200;
  adm.handler(&req, &resp, adm.data);
  json_decref(req.body);
  respond(c, &resp);
}

static int on_url(llhttp_t *p, const char *at, size_t len) {
  adm_conn_t *c = p->data;
  /* One byte stays free for the terminating NUL dispatch() adds. */
  if (len >= SW_ADMIN_URL_MAX - c->url.len)
    return -1;
  return sw_buf_append(&c->url, at, len) == 0 ? 0 : -1;
}

static int on_header_field(llhttp_t *p, const char *at, size_t len) {
  adm_conn_t *c = p->data;
  /* Header names are short; one span is enough to recognise ours. */
  c->in_auth = sw_http_ieq(at, len, "authorization");
  return 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t len) {
  adm_conn_t *c = p->data;
  if (c->in_auth && sw_buf_append(&c->auth, at, len) != 0)
    return -1;
  return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t len) {
  adm_conn_t *c = p->data;
  return sw_buf_append(&c->body, at, len) == 0 ? 0 : -1;
}

static int on_message_complete(llhttp_t *p) {
  adm_conn_t *c = p->data;
  c->complete = 1;
  return HPE_PAUSED;
}

static void on_conn_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  adm_conn_t *c = sw_container_of(s, adm_conn_t, h.stream);
  llhttp_errno_t e;

  if (nread == 0 || c->closing)
    return;
  if (nread < 0) {
    conn_close(c);
    return;
  }
  if (c->complete)
    return; /* one request per connection; an event stream sends nothing */
  e = llhttp_execute(&c->parser, buf->base, (size_t)nread);
  if (e == HPE_PAUSED && c->complete) {
    dispatch(c);
  } else if (e != HPE_OK) {
    c->complete = 1;
    respond_error(c, 400, "malformed or oversized request");
  }
}

static void on_accept(uv_stream_t *server, int status) {
  adm_listener_t *ls = server->data;
  adm_conn_t *c;
  int err;

  if (status < 0)
    return;
  c = calloc(1, sizeof(*c));
  if (c == NULL)
    return;
  c->is_tcp = ls->is_tcp;
  err = c->is_tcp ? uv_tcp_init(adm.loop, &c->h.tcp)
                  : uv_pipe_init(adm.loop, &c->h.pipe, 0);
  if (err != 0) {
    free(c);
    return;
  }
  adm.open_handles++;
  adm.nconns++;
  c->since = uv_now(adm.loop);
  sw_list_init(&c->link);
  sw_list_append(&adm.conns, &c->link);
  sw_buf_init(&c->url, SW_ADMIN_URL_MAX);
  sw_buf_init(&c->body, SW_ADMIN_MAX_BODY);
  sw_buf_init(&c->auth, 1024);
  llhttp_init(&c->parser, HTTP_REQUEST, &settings);
  c->parser.data = c;
  if (uv_accept(server, &c->h.stream) != 0 || adm.nconns > SW_ADMIN_MAX_CONNS) {
    conn_close(c);
    return;
  }
  if (c->is_tcp) {
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    char ip[64] = "?";
    if (uv_tcp_getpeername(&c->h.tcp, (struct sockaddr *)&ss, &len) == 0)
      uv_ip_name((struct sockaddr *)&ss, ip, sizeof(ip));
    snprintf(c->caller, sizeof(c->caller), "tcp %s", ip);
  } else {
    struct ucred cred;
    socklen_t clen = sizeof(cred);
    uv_os_fd_t fd;
    int allowed = 0;
    if (uv_fileno((uv_handle_t *)&c->h.pipe, &fd) != 0 ||
        getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) != 0) {
      conn_close(c);
      return;
    }
    snprintf(c->caller, sizeof(c->caller), "uid %u (pid %d)",
             (unsigned)cred.uid, (int)cred.pid);
    allowed = cred.uid == 0 || cred.uid == getuid();
    for (size_t i = 0; i < adm.nallow && !allowed; i++)
      allowed = adm.allow[i] == cred.uid;
    if (!allowed) {
      sw_warn("admin", 0, "%s refused: uid not allowed", c->caller);
      c->complete = 1;
      respond_error(c, 403, "this uid may not use the admin API");
      return;
    }
    c->may_mutate = 1;
  }
  if (uv_read_start(&c->h.stream, on_alloc, on_conn_read) != 0)
    conn_close(c);
}

/* Every few seconds: a caller that has not completed its request in
 * SW_ADMIN_REQUEST_MS is cut off. */
static void on_sweep(uv_timer_t *t) {
  uint64_t now = uv_now(t->loop);
  for (sw_list_t *l = adm.conns.next; l != &adm.conns;) {
    adm_conn_t *c = sw_container_of(l, adm_conn_t, link);
    l = l->next;
    if (!c->events && !c->closing && now - c->since >= SW_ADMIN_REQUEST_MS)
      conn_close(c);
  }
}

static void on_sweep_close(uv_handle_t *h) {
  (void)h;
  adm.open_handles--;
}

/* --- listeners ------------------------------------------------------------ */

static void on_listener_close(uv_handle_t *h) {
  free(h->data);
  adm.open_handles--;
}

/* A socket file left by a previous run is removed; one that a running
 * process still answers on is not taken over. */
static int clear_stale_socket(const char *path, char *err, size_t errlen) {
  struct sockaddr_un sa;
  struct stat st;
  int fd, in_use;

  if (lstat(path, &st) != 0)
    return 0;
  if (!S_ISSOCK(st.st_mode)) {
    snprintf(err, errlen, "admin socket %s: exists and is not a socket", path);
    return UV_EEXIST;
  }
  memset(&sa, 0, sizeof(sa));
  sa.sun_family = AF_UNIX;
  snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
  fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return -errno;
  in_use = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
  close(fd);
  if (in_use) {
    snprintf(err, errlen, "admin socket %s: in use by another process", path);
    return UV_EADDRINUSE;
  }
  unlink(path);
  return 0;
}

int sw_admin_start(uv_loop_t *loop,
                   const sw_admin_opts_t *o,
                   sw_admin_handler h,
                   void *data,
                   char *err,
                   size_t errlen) {
  int e;

  memset(&adm, 0, sizeof(adm));
  adm.loop = loop;
  adm.handler = h;
  adm.data = data;
  adm.metrics_open = o->metrics_open;
  sw_list_init(&adm.conns);
  adm.inited = 1;
  llhttp_settings_init(&settings);
  settings.on_url = on_url;
  settings.on_header_field = on_header_field;
  settings.on_header_value = on_header_value;
  settings.on_body = on_body;
  settings.on_message_complete = on_message_complete;
  if (o->token != NULL && (adm.token = strdup(o->token)) == NULL)
    return UV_ENOMEM;
  e = uv_timer_init(loop, &adm.sweep);
  if (e != 0)
    return e;
  adm.sweep_open = 1;
  adm.open_handles++;
  uv_unref((uv_handle_t *)&adm.sweep);
  e = uv_timer_start(&adm.sweep, on_sweep, 2000, 2000);
  if (e != 0)
    return e;
  if (o->nallow_uids > 0) {
    adm.allow = calloc(o->nallow_uids, sizeof(*adm.allow));
    if (adm.allow == NULL)
      return UV_ENOMEM;
    memcpy(adm.allow, o->allow_uids, o->nallow_uids * sizeof(*adm.allow));
    adm.nallow = o->nallow_uids;
  }

  if (o->socket_path != NULL) {
    adm_listener_t *ls = calloc(1, sizeof(*ls));
    mode_t old;
    if (ls == NULL)
      return UV_ENOMEM;
    e = clear_stale_socket(o->socket_path, err, errlen);
    if (e == 0)
      e = uv_pipe_init(loop, &ls->h.pipe, 0);
    if (e != 0) {
      if (err[0] == '\0')
        snprintf(err, errlen, "admin socket %s: %s", o->socket_path,
                 uv_strerror(e));
      free(ls);
      return e;
    }
    adm.open_handles++;
    ls->h.pipe.data = ls;
    adm.unix_ls = ls;
    /* Created with its final mode: no window where others can connect.
     * 0600 when only root and our own uid may call; with allow_uid the
     * socket must be reachable by those users, so it is 0666 and the uid
     * check (SO_PEERCRED) is what keeps everyone else out. */
    {
      char dir[sizeof(((struct sockaddr_un *)0)->sun_path)];
      char *slash;
      snprintf(dir, sizeof(dir), "%s", o->socket_path);
      slash = strrchr(dir, '/');
      if (slash != NULL && slash != dir) {
        *slash = '\0';
        if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
          snprintf(err, errlen, "admin socket %s: cannot create %s: %s",
                   o->socket_path, dir, strerror(errno));
          return -errno;
        }
      }
    }
    old = umask(o->nallow_uids > 0 ? 0111 : 0177);
    e = uv_pipe_bind(&ls->h.pipe, o->socket_path);
    umask(old);
    if (e == 0) {
      struct stat st;
      adm.socket_path = strdup(o->socket_path);
      if (lstat(o->socket_path, &st) == 0) {
        adm.sock_dev = st.st_dev;
        adm.sock_ino = st.st_ino;
      }
      e = uv_listen((uv_stream_t *)&ls->h.pipe, 64, on_accept);
    }
    if (e != 0) {
      snprintf(err, errlen, "admin socket %s: %s", o->socket_path,
               uv_strerror(e));
      return e;
    }
  }
  if (o->tcp != NULL) {
    adm_listener_t *ls = calloc(1, sizeof(*ls));
    if (ls == NULL)
      return UV_ENOMEM;
    ls->is_tcp = 1;
    e = uv_tcp_init(loop, &ls->h.tcp);
    if (e != 0) {
      free(ls);
      return e;
    }
    adm.open_handles++;
    ls->h.tcp.data = ls;
    adm.tcp_ls = ls;
    e = uv_tcp_bind(&ls->h.tcp, o->tcp, 0);
    if (e == 0)
      e = uv_listen((uv_stream_t *)&ls->h.tcp, 64, on_accept);
    if (e != 0) {
      snprintf(err, errlen, "admin listener: %s", uv_strerror(e));
      return e;
    }
  }
  return 0;
}

void sw_admin_broadcast(const char *event, json_t *data) {
  char *text;
  sw_buf_t b;

  if (!adm.inited)
    return;
  text = json_dumps(data, JSON_COMPACT | JSON_SORT_KEYS);
  if (text == NULL)
    return;
  sw_buf_init(&b, strlen(text) + strlen(event) + 32);
  if (sw_buf_appendf(&b, "event: %s\n", event) == 0 &&
      sw_buf_append(&b, "data: ", 6) == 0 &&
      sw_buf_append(&b, text, strlen(text)) == 0 &&
      sw_buf_append(&b, "\n\n", 2) == 0) {
    for (sw_list_t *l = adm.conns.next; l != &adm.conns;) {
      adm_conn_t *c = sw_container_of(l, adm_conn_t, link);
      l = l->next;
      if (!c->events || c->closing)
        continue;
      if (uv_stream_get_write_queue_size(&c->h.stream) > SW_ADMIN_STREAM_MAX)
        conn_close(c); /* a stream nobody reads is not buffered forever */
      else
        conn_write(c, b.data, b.len, 0);
    }
  }
  sw_buf_free(&b);
  free(text);
}

void sw_admin_stop(void) {
  if (!adm.inited)
    return;
  while (!sw_list_empty(&adm.conns))
    conn_close(sw_container_of(adm.conns.next, adm_conn_t, link));
  if (adm.sweep_open) {
    adm.sweep_open = 0;
    uv_close((uv_handle_t *)&adm.sweep, on_sweep_close);
  }
  if (adm.unix_ls != NULL) {
    uv_close((uv_handle_t *)&adm.unix_ls->h.pipe, on_listener_close);
    adm.unix_ls = NULL;
  }
  if (adm.tcp_ls != NULL) {
    uv_close((uv_handle_t *)&adm.tcp_ls->h.tcp, on_listener_close);
    adm.tcp_ls = NULL;
  }
  if (adm.socket_path != NULL) {
    /* Only our own socket: another switchd may have taken the path over
     * after ours was removed. */
    struct stat st;
    if (lstat(adm.socket_path, &st) == 0 && S_ISSOCK(st.st_mode) &&
        st.st_dev == adm.sock_dev && st.st_ino == adm.sock_ino)
      unlink(adm.socket_path);
  }
  free(adm.socket_path);
  free(adm.token);
  free(adm.allow);
  adm.socket_path = NULL;
  adm.token = NULL;
  adm.allow = NULL;
  adm.inited = 0;
}

int sw_admin_active(void) {
  return adm.open_handles > 0;
}
