/* The hold barrier; see sw_hold.h. The queue is the list of held
 * exchanges, linked through sw_req_t.hold_link in arrival order; each
 * exchange keeps its parsed request and buffered body, so a release is a
 * plain dispatch. */
#include "sw_hold.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "sw_log.h"

static const char *const end_names[] = {
    [SW_HOLD_END_NONE] = "none",       [SW_HOLD_END_RELEASE] = "release",
    [SW_HOLD_END_FLIP] = "flip",       [SW_HOLD_END_ABORT] = "abort",
    [SW_HOLD_END_EXPIRED] = "expired", [SW_HOLD_END_SHUTDOWN] = "shutdown",
};

int sw_hold_waiting;

static struct {
  int open; /* the timer is initialised */
  uv_timer_t timer;
  uv_idle_t quiet_check; /* reports QUIET from the loop, never re-entrant */
  sw_hold_cb cb;
  void *data;
  sw_list_t queue;
  uint32_t gen;      /* +1 at every start and release */
  size_t cap;        /* the queue's bound, captured at the start */
  uint64_t start_hr; /* hrtime at the start */
  uint32_t *waits;   /* µs each released request waited, cap entries */
  size_t nwaits;
  sw_hold_stats_t st;
  sw_hold_totals_t tot;
} h;

const char *sw_hold_end_name(sw_hold_end_t e) {
  if ((unsigned)e >= sizeof(end_names) / sizeof(end_names[0]))
    return "unknown";
  return end_names[e];
}

static uint64_t wall_ms(void) {
  struct timeval tv;
  gettimeofday(&tv, NULL);
  return (uint64_t)tv.tv_sec * 1000 + (uint64_t)tv.tv_usec / 1000;
}

uint64_t sw_hold_inflight(void) {
  const sw_pool_t *pool = &sw.pools[sw.live];
  uint64_t n = 0;
  /* Upgraded tunnels (WebSocket) are left out: they last as long as
   * their clients like, and a migration waiting on them would wait for
   * hold_max every time. sw_hold_tunnels says how many there are. */
  for (size_t i = 0; i < pool->n; i++)
    n += pool->servers[i]->inflight - pool->servers[i]->tunnels;
  return n;
}

uint64_t sw_hold_tunnels(void) {
  const sw_pool_t *pool = &sw.pools[sw.live];
  uint64_t n = 0;
  for (size_t i = 0; i < pool->n; i++)
    n += pool->servers[i]->tunnels;
  return n;
}

static void on_quiet_check(uv_idle_t *t) {
  (void)t;
  uv_idle_stop(&h.quiet_check);
  if (!h.st.active || h.st.quiet_ms != UINT64_MAX || sw_hold_inflight() > 0)
    return;
  h.st.quiet_ms = (uv_hrtime() - h.start_hr) / 1000000;
  sw_hold_waiting = 0;
  sw_info("hold", 0, "quiet after %llu ms: nothing in flight on %s",
          (unsigned long long)h.st.quiet_ms, sw_colour_name(sw.live));
  if (h.cb != NULL)
    h.cb(SW_HOLD_EV_QUIET, h.data);
}

void sw_hold_poke(void) {
  /* Called from deep inside the data path (an upstream connection being
   * unbound): the news is delivered from the loop instead. */
  if (h.st.active && h.open && sw_hold_inflight() == 0)
    uv_idle_start(&h.quiet_check, on_quiet_check);
}

static void on_expire(uv_timer_t *t) {
  (void)t;
  if (!h.st.active)
    return;
  sw_warn("hold", 0,
          "hold reached its max of %llu ms: releasing %llu request%s to %s",
          (unsigned long long)h.st.max_ms, (unsigned long long)h.st.depth,
          h.st.depth == 1 ? "" : "s", sw_colour_name(sw.live));
  h.tot.expired++;
  (void)sw_hold_release(SW_HOLD_END_EXPIRED);
}

int sw_hold_init(sw_hold_cb cb, void *data) {
  int err;
  memset(&h, 0, sizeof(h));
  sw_list_init(&h.queue);
  h.cb = cb;
  h.data = data;
  err = uv_timer_init(sw.loop, &h.timer);
  if (err != 0)
    return err;
  err = uv_idle_init(sw.loop, &h.quiet_check);
  if (err != 0) {
    uv_close((uv_handle_t *)&h.timer, NULL);
    return err;
  }
  h.open = 1;
  return 0;
}

void sw_hold_close(void) {
  if (!h.open)
    return;
  if (h.st.active)
    (void)sw_hold_release(SW_HOLD_END_SHUTDOWN);
  h.open = 0;
  uv_close((uv_handle_t *)&h.timer, NULL);
  uv_close((uv_handle_t *)&h.quiet_check, NULL);
  free(h.waits);
  h.waits = NULL;
}

int sw_hold_active(void) {
  return h.st.active;
}

const sw_hold_stats_t *sw_hold_stats(void) {
  return &h.st;
}

const sw_hold_totals_t *sw_hold_totals(void) {
  return &h.tot;
}

int sw_hold_start(uint64_t max_ms, const char *by) {
  size_t cap = sw.cfg->cutover.hold_queue;
  uint32_t *waits;

  if (!h.open)
    return UV_EINVAL;
  if (h.st.active)
    return UV_EBUSY;
  if (sw.stopping)
    return UV_ECANCELED; /* nothing new waits on a stopping proxy */
  if (max_ms == 0)
    max_ms = sw.cfg->cutover.hold_max_ms;
  waits = malloc((cap > 0 ? cap : 1) * sizeof(*waits));
  if (waits == NULL)
    return UV_ENOMEM;
  free(h.waits);
  h.waits = waits;
  h.nwaits = 0;
  h.cap = cap;
  memset(&h.st, 0, sizeof(h.st));
  h.st.valid = 1;
  h.st.active = 1;
  h.st.started = wall_ms();
  h.st.max_ms = max_ms;
  h.st.quiet_ms = UINT64_MAX;
  h.st.released_to = sw.live;
  snprintf(h.st.by, sizeof(h.st.by), "%s", by ? by : "operator");
  h.start_hr = uv_hrtime();
  h.gen++;
  h.tot.holds++;
  sw_hold_waiting = 1;
  uv_timer_start(&h.timer, on_expire, max_ms, 0);
  sw_info("hold", 0,
          "holding new requests (at most %llu ms, %zu queued) for %s; %llu in "
          "flight on %s",
          (unsigned long long)max_ms, cap, h.st.by,
          (unsigned long long)sw_hold_inflight(), sw_colour_name(sw.live));
  uv_idle_start(&h.quiet_check, on_quiet_check);
  return 0;
}

static int cmp_u32(const void *a, const void *b) {
  uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
  return x < y ? -1 : x > y;
}

int sw_hold_release(sw_hold_end_t why) {
  uint64_t held_ms, now = uv_hrtime();
  sw_list_t out;

  if (!h.st.active)
    return UV_ENOENT;
  h.st.active = 0;
  sw_hold_waiting = 0;
  uv_timer_stop(&h.timer);
  uv_idle_stop(&h.quiet_check);
  h.st.end = why;
  h.st.released_to = sw.live;
  /* The queue moves out and this hold's books close before any request
   * goes upstream: a dispatch can fail at once, and what that causes (a
   * trigger, a rollback, a new hold) must find this hold over. A request
   * dispatched after a new hold began is held again, by that one. */
  sw_list_init(&out);
  while (!sw_list_empty(&h.queue)) {
    sw_req_t *r = sw_container_of(h.queue.next, sw_req_t, hold_link);
    uint64_t us = (now - r->t_held) / 1000;
    sw_list_remove(&r->hold_link);
    sw_list_append(&out, &r->hold_link);
    h.st.released++;
    if (us > h.st.wait_max_us)
      h.st.wait_max_us = us;
    if (h.nwaits < h.cap)
      h.waits[h.nwaits++] = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
  }
  h.st.depth = 0;
  h.gen++; /* what is on `out` belongs to no hold */
  if (h.nwaits > 0) {
    /* The nearest-rank 99th percentile. */
    size_t k = (h.nwaits * 99 + 99) / 100;
    qsort(h.waits, h.nwaits, sizeof(*h.waits), cmp_u32);
    h.st.wait_p99_us = h.waits[(k > 0 ? k : 1) - 1];
  }
  held_ms = (now - h.start_hr) / 1000000;
  h.tot.held_ms += held_ms;
  h.st.ended = wall_ms();
  sw_log(why == SW_HOLD_END_EXPIRED ? SW_LOG_WARN : SW_LOG_INFO, "hold", 0,
         "released after %llu ms (%s) to %s: %llu request%s held, longest "
         "wait %llu ms, %llu rejected, %llu gone",
         (unsigned long long)held_ms, sw_hold_end_name(why),
         sw_colour_name(sw.live), (unsigned long long)h.st.released,
         h.st.released == 1 ? "" : "s",
         (unsigned long long)(h.st.wait_max_us / 1000),
         (unsigned long long)h.st.rejected, (unsigned long long)h.st.gone);
  if (h.cb != NULL)
    h.cb(SW_HOLD_EV_ENDED, h.data);
  while (!sw_list_empty(&out)) {
    sw_req_t *r = sw_container_of(out.next, sw_req_t, hold_link);
    sw_list_remove(&r->hold_link);
    sw_upstream_dispatch(r);
  }
  return 0;
}

int sw_hold_admit(sw_req_t *r) {
  if (!h.st.active)
    return 0;
  if (h.st.depth >= h.cap) {
    h.st.rejected++;
    h.tot.rejected++;
    sw_info("hold", r->client->id, "hold queue full (%zu): 503", h.cap);
    sw_req_fail_retry(r, 503, 1 + h.st.max_ms / 1000);
    return 1;
  }
  r->t_held = uv_hrtime();
  r->hold_gen = h.gen;
  sw_list_append(&h.queue, &r->hold_link);
  h.st.held++;
  h.tot.held++;
  h.st.depth++;
  if (h.st.depth > h.st.peak)
    h.st.peak = h.st.depth;
  return 1;
}

void sw_hold_forget(sw_req_t *r) {
  if (!sw_list_linked(&r->hold_link))
    return;
  sw_list_remove(&r->hold_link);
  /* Off a released queue (being dispatched) it no longer counts. */
  if (h.st.active && r->hold_gen == h.gen) {
    h.st.depth--;
    h.st.gone++;
  }
}
