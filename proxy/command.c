/* A shell command run by switchd; see sw_command.h. */
#include "sw_command.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sw_log.h"

#define STDERR_TO_STDOUT "exec 2>&1\n"

/* How long the output may stay open after the shell exited. */
#define LINGER_MS 1000

/* A line longer than this is logged in pieces. */
#define LINE_MAX_BYTES 512

struct sw_command_s {
  uv_process_t proc;
  uv_pipe_t out;
  uv_timer_t timer;
  int open; /* handles not yet closed */
  int exited;
  int out_done;
  sw_command_result_t res;
  char tag[32];
  char line[LINE_MAX_BYTES];
  size_t nline;
  char tail[SW_COMMAND_TAIL];
  size_t ntail;
  uint64_t started;
  sw_command_cb cb;
  void *data;
};

static void tail_add(sw_command_t *c, const char *s, size_t n) {
  if (n >= sizeof(c->tail)) {
    s += n - (sizeof(c->tail) - 1);
    n = sizeof(c->tail) - 1;
  }
  if (c->ntail + n >= sizeof(c->tail)) {
    size_t drop = c->ntail + n - (sizeof(c->tail) - 1);
    memmove(c->tail, c->tail + drop, c->ntail - drop);
    c->ntail -= drop;
  }
  memcpy(c->tail + c->ntail, s, n);
  c->ntail += n;
  c->tail[c->ntail] = '\0';
}

static void flush_line(sw_command_t *c) {
  if (c->nline == 0)
    return;
  sw_info(c->tag, 0, "%.*s", (int)c->nline, c->line);
  tail_add(c, c->line, c->nline);
  tail_add(c, "\n", 1);
  c->nline = 0;
}

static void on_closed(uv_handle_t *h) {
  sw_command_t *c = h->data;
  if (--c->open > 0)
    return;
  c->res.tail = c->tail;
  if (c->cb != NULL)
    c->cb(&c->res, c->data);
  free(c);
}

static void maybe_done(sw_command_t *c) {
  if (!c->exited || !c->out_done)
    return;
  flush_line(c);
  uv_close((uv_handle_t *)&c->proc, on_closed);
  uv_close((uv_handle_t *)&c->timer, on_closed);
  uv_close((uv_handle_t *)&c->out, on_closed);
}

static void output_over(sw_command_t *c);

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  static char chunk[4096];
  (void)h;
  (void)suggested;
  *buf = uv_buf_init(chunk, sizeof(chunk));
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
  sw_command_t *c = s->data;
  if (n < 0) {
    output_over(c);
    return;
  }
  for (ssize_t i = 0; i < n; i++) {
    char ch = buf->base[i];
    if (ch == '\n') {
      flush_line(c);
      continue;
    }
    if (ch == '\r')
      continue;
    c->line[c->nline++] = (unsigned char)ch < 0x20 && ch != '\t' ? '?' : ch;
    if (c->nline == sizeof(c->line))
      flush_line(c);
  }
}

/* The output is over: what a process left behind that still holds the
 * pipe no longer counts. */
static void output_over(sw_command_t *c) {
  if (c->out_done)
    return;
  uv_read_stop((uv_stream_t *)&c->out);
  c->out_done = 1;
  maybe_done(c);
}

static void on_linger(uv_timer_t *t) {
  sw_command_t *c = t->data;
  /* The shell exited, yet something it started still holds its output:
   * the command's whole group goes. */
  sw_warn(c->tag, 0,
          "exited, but its output is still open after %d ms: "
          "killing what it left running",
          LINGER_MS);
  (void)kill(-c->proc.pid, SIGKILL);
  output_over(c);
}

static void on_exit_cb(uv_process_t *p, int64_t status, int sig) {
  sw_command_t *c = p->data;
  c->exited = 1;
  c->res.exit_status = sig != 0 ? -1 : status;
  c->res.term_signal = sig;
  c->res.elapsed_ms = uv_now(p->loop) - c->started;
  /* The rest of its output comes now, unless a process it left in the
   * background keeps the pipe open: that gets LINGER_MS. */
  uv_timer_stop(&c->timer);
  if (!c->out_done)
    uv_timer_start(&c->timer, on_linger, LINGER_MS, 0);
  maybe_done(c);
}

void sw_command_kill(sw_command_t *c) {
  if (c == NULL)
    return;
  /* The command ran in a session of its own: its pid is its group's, and
   * the group outlives the shell when it started something. */
  if (kill(-c->proc.pid, SIGKILL) != 0 && !c->exited)
    (void)uv_process_kill(&c->proc, SIGKILL);
  if (c->exited)
    output_over(c);
}

static void on_deadline(uv_timer_t *t) {
  sw_command_t *c = t->data;
  sw_warn(c->tag, 0, "still running after %llu ms: killed",
          (unsigned long long)(uv_now(t->loop) - c->started));
  c->res.timed_out = 1;
  sw_command_kill(c);
}

int sw_command_start(uv_loop_t *loop,
                     const char *cmd,
                     uint64_t timeout_ms,
                     const char *tag,
                     sw_command_cb cb,
                     void *data,
                     sw_command_t **out) {
  sw_command_t *c = calloc(1, sizeof(*c));
  uv_process_options_t o;
  uv_stdio_container_t stdio[3];
  char *args[4], *script;
  int err;

  if (c == NULL)
    return UV_ENOMEM;
  snprintf(c->tag, sizeof(c->tag), "%s", tag);
  c->cb = cb;
  c->data = data;
  c->started = uv_now(loop);
  err = uv_pipe_init(loop, &c->out, 0);
  if (err != 0) {
    free(c);
    return err;
  }
  c->out.data = c;
  c->open = 1;
  /* One pipe for both streams, in the order they were written: the shell
   * points its stderr at its stdout before it runs the command. */
  script = malloc(strlen(cmd) + sizeof(STDERR_TO_STDOUT));
  if (script == NULL) {
    c->cb = NULL; /* freed once the pipe is closed */
    uv_close((uv_handle_t *)&c->out, on_closed);
    return UV_ENOMEM;
  }
  strcpy(script, STDERR_TO_STDOUT);
  strcat(script, cmd);
  args[0] = "/bin/sh";
  args[1] = "-c";
  args[2] = script;
  args[3] = NULL;
  memset(&o, 0, sizeof(o));
  memset(stdio, 0, sizeof(stdio));
  stdio[0].flags = UV_IGNORE;
  stdio[1].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
  stdio[1].data.stream = (uv_stream_t *)&c->out;
  stdio[2].flags = UV_IGNORE;
  o.file = args[0];
  o.args = args;
  o.exit_cb = on_exit_cb;
  o.stdio = stdio;
  o.stdio_count = 3;
  o.flags = UV_PROCESS_DETACHED; /* setsid: its own process group */
  err = uv_spawn(loop, &c->proc, &o);
  free(script);
  c->proc.data = c;
  if (err != 0) {
    /* A failed spawn leaves its handle to be closed too; c is freed once
     * both are, without a callback. */
    c->cb = NULL;
    c->open = 2;
    uv_close((uv_handle_t *)&c->proc, on_closed);
    uv_close((uv_handle_t *)&c->out, on_closed);
    return err;
  }
  c->open = 3;
  uv_timer_init(loop, &c->timer);
  c->timer.data = c;
  if (timeout_ms > 0)
    uv_timer_start(&c->timer, on_deadline, timeout_ms, 0);
  sw_info(c->tag, 0, "started (pid %d, at most %llu ms): %s", c->proc.pid,
          (unsigned long long)timeout_ms, cmd);
  err = uv_read_start((uv_stream_t *)&c->out, on_alloc, on_read);
  if (err != 0)
    c->out_done = 1;
  if (out != NULL)
    *out = c;
  return 0;
}
