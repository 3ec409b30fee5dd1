/* FIFO timeout queues, one uv_timer_t each; see sw_timeq.h for why. This
 * module owns only the ordering of nodes and the timer: what expiry means is
 * the owner's callback. */
#include "sw_timeq.h"

#include "sw_list.h"

static void on_timer(uv_timer_t *t);

int sw_timeq_init(uv_loop_t *loop,
                  sw_timeq_t *q,
                  uint64_t duration_ms,
                  sw_timeq_cb expire) {
  int err = uv_timer_init(loop, &q->timer);
  if (err != 0)
    return err;
  q->head.prev = &q->head;
  q->head.next = &q->head;
  q->head.q = NULL;
  q->duration_ms = duration_ms;
  q->expire = expire;
  q->armed_for = 0;
  /* Timeout timers alone must not keep the loop alive at shutdown. */
  uv_unref((uv_handle_t *)&q->timer);
  return 0;
}

void sw_timeq_close(sw_timeq_t *q, uv_close_cb cb) {
  while (q->head.next != &q->head)
    sw_timeq_del(q->head.next);
  if (!uv_is_closing((uv_handle_t *)&q->timer))
    uv_close((uv_handle_t *)&q->timer, cb);
}

void sw_tnode_init(sw_tnode_t *n) {
  n->prev = n;
  n->next = n;
  n->q = NULL;
  n->deadline = 0;
}

static void arm(sw_timeq_t *q, uint64_t now) {
  uint64_t when = q->head.next->deadline;
  if (q->armed_for != 0 && q->armed_for <= when)
    return;
  q->armed_for = when;
  uv_timer_start(&q->timer, on_timer, when > now ? when - now : 0, 0);
}

void sw_timeq_add(sw_timeq_t *q, sw_tnode_t *n) {
  uint64_t now = uv_now(q->timer.loop);
  sw_timeq_del(n);
  n->deadline = now + q->duration_ms;
  n->q = q;
  n->prev = q->head.prev;
  n->next = &q->head;
  q->head.prev->next = n;
  q->head.prev = n;
  if (q->armed_for == 0)
    arm(q, now);
}

void sw_timeq_del(sw_tnode_t *n) {
  if (n->q == NULL)
    return;
  n->prev->next = n->next;
  n->next->prev = n->prev;
  n->prev = n;
  n->next = n;
  n->q = NULL;
}

static void on_timer(uv_timer_t *t) {
  sw_timeq_t *q = sw_container_of(t, sw_timeq_t, timer);
  uint64_t now = uv_now(t->loop);

  q->armed_for = 0;
  /* A callback may add nodes back at the tail with a later deadline; the
   * walk stops at the first node not yet due, so it terminates. */
  while (q->head.next != &q->head && q->head.next->deadline <= now) {
    sw_tnode_t *n = q->head.next;
    sw_timeq_del(n);
    q->expire(n);
  }
  if (q->head.next != &q->head)
    arm(q, now);
}
