/* Timeout queues. Every connection needs a timeout, but a uv_timer_t per
 * connection costs 152 bytes and a heap operation per reset. All timeouts of
 * one kind share one duration, so a node appended at the tail always expires
 * after the nodes before it: each kind is a FIFO list driven by a single
 * uv_timer_t armed for its head. Adding, resetting and removing a node are
 * O(1). When a reload changes a duration, nodes already queued keep their
 * deadlines and may fire up to one old duration late; that is accepted. */
#ifndef SW_TIMEQ_H
#define SW_TIMEQ_H

#include <stdint.h>
#include <uv.h>

struct sw_timeq_s;

typedef struct sw_tnode_s {
  struct sw_tnode_s *prev;
  struct sw_tnode_s *next;
  struct sw_timeq_s *q; /* NULL when not queued */
  uint64_t deadline;    /* loop time in ms */
} sw_tnode_t;

typedef void (*sw_timeq_cb)(sw_tnode_t *node);

typedef struct sw_timeq_s {
  uv_timer_t timer;
  sw_tnode_t head; /* sentinel */
  uint64_t duration_ms;
  sw_timeq_cb expire;
  uint64_t armed_for; /* deadline the timer is armed for, 0 if idle */
} sw_timeq_t;

int sw_timeq_init(uv_loop_t *loop,
                  sw_timeq_t *q,
                  uint64_t duration_ms,
                  sw_timeq_cb expire);
/* Stops the queue and closes its timer; nodes still queued are unlinked
 * without being expired. */
void sw_timeq_close(sw_timeq_t *q, uv_close_cb cb);

void sw_tnode_init(sw_tnode_t *n);
/* Puts n at the tail of q with a deadline of now + q's duration, removing it
 * from whatever queue it was on. */
void sw_timeq_add(sw_timeq_t *q, sw_tnode_t *n);
void sw_timeq_del(sw_tnode_t *n);

#endif
