/* Unit tests of the timeout queues (proxy/timeq.c) on a real libuv loop:
 * nodes expire in FIFO order and never before their deadline, deleting a
 * node stops its expiry, adding again moves it to the tail with a new
 * deadline, callbacks may add, delete and close, and closing leaves
 * uv_loop_close() == 0. Durations are 10 to 50 ms; the whole binary runs in
 * well under two seconds. */

#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <uv.h>

#include "sw_list.h"
#include "sw_test.h"
#include "sw_timeq.h"

/* How late an expiry may be before the test calls it wrong: generous, for
 * a loaded machine and the sanitizer build. */
#define LATE_MS 300

/* A queued thing with a record of its expiries. */
typedef struct item_s {
  sw_tnode_t node;
  int id;
  int fired;
  int queue_no;        /* which queue's callback expired it */
  uint64_t deadline;   /* node.deadline when it was last added */
  uint64_t fired_at;   /* loop time of the last expiry */
  uint64_t first_at;   /* loop time of the first expiry */
  int readd;           /* times the callback adds it back */
  sw_timeq_t *readd_q; /* ...to this queue */
  sw_tnode_t *del;     /* a node the callback deletes */
  sw_timeq_t *close_q; /* a queue the callback closes */
} item_t;

/* The loop of the running test and the ids in the order they expired. */
static uv_loop_t *test_loop;
static int order[64];
static int norder;
static int closed;

static void on_closed(uv_handle_t *h) {
  closed++;
}

static void on_expire_common(sw_tnode_t *n, int queue_no) {
  item_t *it = sw_container_of(n, item_t, node);

  SW_CHECK(n->q == NULL);
  it->fired++;
  it->queue_no = queue_no;
  it->fired_at = uv_now(test_loop);
  if (it->fired == 1)
    it->first_at = it->fired_at;
  if (norder < (int)(sizeof(order) / sizeof(order[0])))
    order[norder++] = it->id;
  if (it->del != NULL)
    sw_timeq_del(it->del);
  if (it->close_q != NULL)
    sw_timeq_close(it->close_q, on_closed);
  if (it->readd > 0) {
    it->readd--;
    sw_timeq_add(it->readd_q, n);
    it->deadline = n->deadline;
  }
}

static void on_expire(sw_tnode_t *n) {
  on_expire_common(n, 1);
}

static void on_expire_second(sw_tnode_t *n) {
  on_expire_common(n, 2);
}

static void on_guard(uv_timer_t *t) {}

/* Runs the loop for about ms. Timeout timers are unreferenced and do not
 * keep a loop alive, so a referenced timer of our own does. */
static void run_for(uv_loop_t *loop, uint64_t ms) {
  uv_timer_t guard;

  if (!SW_CHECK_INT_EQ(uv_timer_init(loop, &guard), 0))
    return;
  SW_CHECK_INT_EQ(uv_timer_start(&guard, on_guard, ms, 0), 0);
  uv_run(loop, UV_RUN_DEFAULT);
  uv_close((uv_handle_t *)&guard, NULL);
  uv_run(loop, UV_RUN_DEFAULT);
}

static void start(uv_loop_t *loop) {
  SW_CHECK_INT_EQ(uv_loop_init(loop), 0);
  test_loop = loop;
  norder = 0;
  closed = 0;
}

static void item_init(item_t *it, int id) {
  memset(it, 0, sizeof(*it));
  it->id = id;
  sw_tnode_init(&it->node);
}

/* Adds and checks the deadline is the loop's now plus the duration. */
static void add_at(const char *file, int line, sw_timeq_t *q, item_t *it) {
  uint64_t now = uv_now(q->timer.loop);

  sw_timeq_add(q, &it->node);
  SW_CHECK_AT(file, line, it->node.q == q);
  SW_CHECK_UINT_EQ_AT(file, line, it->node.deadline, now + q->duration_ms);
  it->deadline = it->node.deadline;
}
#define ADD(q, it) add_at(__FILE__, __LINE__, q, it)

/* Checks an item expired exactly `times` times, the last time no earlier
 * than its deadline and not much later. */
static void fired_at(const char *file, int line, const item_t *it, int times) {
  if (!SW_CHECK_INT_EQ_AT(file, line, it->fired, times) || times == 0)
    return;
  if (!SW_CHECK_AT(file, line, it->fired_at >= it->deadline) ||
      !SW_CHECK_AT(file, line, it->fired_at < it->deadline + LATE_MS))
    printf("  item %d: deadline %" PRIu64 ", expired at %" PRIu64 "\n", it->id,
           it->deadline, it->fired_at);
}
#define FIRED(it, times) fired_at(__FILE__, __LINE__, it, times)

static void order_is_at(const char *file, int line, const int *want, int n) {
  int i, same = norder == n;

  for (i = 0; same && i < n; i++)
    same = order[i] == want[i];
  if (!SW_CHECK_AT(file, line, same)) {
    printf("  order:");
    for (i = 0; i < norder; i++)
      printf(" %d", order[i]);
    printf("\n  want: ");
    for (i = 0; i < n; i++)
      printf(" %d", want[i]);
    printf("\n");
  }
}
#define ORDER(...)                                        \
  do {                                                    \
    static const int want_[] = {__VA_ARGS__};             \
    order_is_at(__FILE__, __LINE__, want_,                \
                (int)(sizeof(want_) / sizeof(want_[0]))); \
  } while (0)

/* Closes the queues, runs the loop so the close callbacks run, and checks
 * nothing is left open. */
static void finish(uv_loop_t *loop, sw_timeq_t *q1, sw_timeq_t *q2) {
  int want = closed + (q1 != NULL) + (q2 != NULL);

  if (q1 != NULL)
    sw_timeq_close(q1, on_closed);
  if (q2 != NULL)
    sw_timeq_close(q2, on_closed);
  uv_run(loop, UV_RUN_DEFAULT);
  SW_CHECK_INT_EQ(closed, want);
  SW_CHECK_INT_EQ(uv_loop_close(loop), 0);
}

static void test_expire_in_order(void) {
  uv_loop_t loop;
  sw_timeq_t q;
  item_t it[6];
  int i;

  start(&loop);
  SW_CHECK_INT_EQ(sw_timeq_init(&loop, &q, 20, on_expire), 0);
  for (i = 0; i < 6; i++)
    item_init(&it[i], i);

  /* Three nodes added at once share a deadline and expire in order. */
  uv_update_time(&loop);
  ADD(&q, &it[0]);
  ADD(&q, &it[1]);
  ADD(&q, &it[2]);
  run_for(&loop, 10);
  SW_CHECK_INT_EQ(norder, 0);
  run_for(&loop, 40);
  FIRED(&it[0], 1);
  FIRED(&it[1], 1);
  FIRED(&it[2], 1);
  ORDER(0, 1, 2);
  SW_CHECK(q.head.next == &q.head);

  /* Staggered nodes each wait their own full duration. */
  norder = 0;
  ADD(&q, &it[3]);
  run_for(&loop, 5);
  ADD(&q, &it[4]);
  run_for(&loop, 5);
  ADD(&q, &it[5]);
  run_for(&loop, 50);
  FIRED(&it[3], 1);
  FIRED(&it[4], 1);
  FIRED(&it[5], 1);
  ORDER(3, 4, 5);
  SW_CHECK(it[4].fired_at >= it[3].fired_at);
  SW_CHECK(it[5].fired_at >= it[4].fired_at);

  /* An emptied queue arms again for the next node. */
  norder = 0;
  ADD(&q, &it[0]);
  run_for(&loop, 40);
  FIRED(&it[0], 2);
  ORDER(0);
  finish(&loop, &q, NULL);
}

static void test_del(void) {
  uv_loop_t loop;
  sw_timeq_t q;
  item_t a, b, c, lone;

  start(&loop);
  SW_CHECK_INT_EQ(sw_timeq_init(&loop, &q, 20, on_expire), 0);
  item_init(&a, 1);
  item_init(&b, 2);
  item_init(&c, 3);
  item_init(&lone, 4);

  /* Deleting a node that was never queued, or twice, does nothing. */
  sw_timeq_del(&lone.node);
  SW_CHECK(lone.node.q == NULL);

  uv_update_time(&loop);
  ADD(&q, &a);
  ADD(&q, &b);
  ADD(&q, &c);
  sw_timeq_del(&b.node);
  SW_CHECK(b.node.q == NULL);
  SW_CHECK(b.node.next == &b.node && b.node.prev == &b.node);
  sw_timeq_del(&b.node);
  SW_CHECK(a.node.next == &c.node && c.node.prev == &a.node);
  run_for(&loop, 40);
  FIRED(&a, 1);
  FIRED(&b, 0);
  FIRED(&c, 1);
  ORDER(1, 3);

  /* Deleting the head the timer is armed for: the next node still waits
   * for its own deadline, not the deleted one's. */
  norder = 0;
  ADD(&q, &a);
  run_for(&loop, 10);
  ADD(&q, &b);
  sw_timeq_del(&a.node);
  run_for(&loop, 50);
  SW_CHECK_INT_EQ(a.fired, 1); /* only the expiry from before */
  FIRED(&b, 1);
  ORDER(2);

  /* Deleting every node: nothing expires. */
  norder = 0;
  ADD(&q, &a);
  ADD(&q, &b);
  sw_timeq_del(&b.node);
  sw_timeq_del(&a.node);
  SW_CHECK(q.head.next == &q.head && q.head.prev == &q.head);
  run_for(&loop, 40);
  SW_CHECK_INT_EQ(norder, 0);
  finish(&loop, &q, NULL);
}

static void test_readd(void) {
  uv_loop_t loop;
  sw_timeq_t q;
  item_t a, b, c;
  int i;

  start(&loop);
  SW_CHECK_INT_EQ(sw_timeq_init(&loop, &q, 50, on_expire), 0);
  item_init(&a, 1);
  item_init(&b, 2);
  item_init(&c, 3);

  /* Adding a queued node again moves it behind the others. */
  uv_update_time(&loop);
  ADD(&q, &a);
  ADD(&q, &b);
  run_for(&loop, 10);
  ADD(&q, &a);
  SW_CHECK(q.head.next == &b.node && q.head.prev == &a.node);
  SW_CHECK(a.node.deadline > b.node.deadline);
  run_for(&loop, 80);
  FIRED(&a, 1);
  FIRED(&b, 1);
  ORDER(2, 1);

  /* A node kept busy, added again before each expiry, never expires; once
   * left alone it expires a full duration after the last add. */
  norder = 0;
  ADD(&q, &c);
  for (i = 0; i < 4; i++) {
    run_for(&loop, 10);
    ADD(&q, &c);
  }
  SW_CHECK_INT_EQ(c.fired, 0);
  run_for(&loop, 80);
  FIRED(&c, 1);
  ORDER(3);
  finish(&loop, &q, NULL);
}

/* A node moved from one queue to another leaves the first and expires on
 * the second's schedule and callback. */
static void test_move_between_queues(void) {
  uv_loop_t loop;
  sw_timeq_t slow, fast;
  item_t a, b;

  start(&loop);
  SW_CHECK_INT_EQ(sw_timeq_init(&loop, &slow, 50, on_expire), 0);
  SW_CHECK_INT_EQ(sw_timeq_init(&loop, &fast, 10, on_expire_second), 0);
  item_init(&a, 1);
  item_init(&b, 2);

  uv_update_time(&loop);
  ADD(&slow, &a);
  ADD(&slow, &b);
  ADD(&fast, &a);
  SW_CHECK(slow.head.next == &b.node && b.node.next == &slow.head);
  SW_CHECK(fast.head.next == &a.node && a.node.next == &fast.head);
  run_for(&loop, 30);
  FIRED(&a, 1);
  SW_CHECK_INT_EQ(a.queue_no, 2);
  SW_CHECK_INT_EQ(b.fired, 0);
  run_for(&loop, 40);
  FIRED(&a, 1);
  FIRED(&b, 1);
  SW_CHECK_INT_EQ(b.queue_no, 1);
  ORDER(1, 2);
  finish(&loop, &slow, &fast);
}

/* Callbacks that act on the queue while it walks the due nodes. */
static void test_callbacks(void) {
  uv_loop_t loop;
  sw_timeq_t q;
  item_t self, other, a, b, c;
  int i;

  start(&loop);
  SW_CHECK_INT_EQ(sw_timeq_init(&loop, &q, 15, on_expire), 0);
  item_init(&self, 1);
  item_init(&other, 2);

  /* A callback that adds its own node back: it expires again a duration
   * later each time, and the node behind it still expires once. */
  self.readd = 3;
  self.readd_q = &q;
  uv_update_time(&loop);
  ADD(&q, &self);
  ADD(&q, &other);
  run_for(&loop, 150);
  FIRED(&self, 4);
  FIRED(&other, 1);
  SW_CHECK(self.fired_at >= self.first_at + 3 * 15);
  SW_CHECK_INT_EQ(norder, 5);
  if (norder == 5) {
    SW_CHECK_INT_EQ(order[0], 1);
    SW_CHECK_INT_EQ(order[1], 2);
    for (i = 2; i < 5; i++)
      SW_CHECK_INT_EQ(order[i], 1);
  }
  SW_CHECK(self.node.q == NULL);

  /* A callback that deletes the next due node stops its expiry. */
  norder = 0;
  item_init(&a, 3);
  item_init(&b, 4);
  item_init(&c, 5);
  a.del = &b.node;
  ADD(&q, &a);
  ADD(&q, &b);
  ADD(&q, &c);
  run_for(&loop, 50);
  FIRED(&a, 1);
  FIRED(&b, 0);
  FIRED(&c, 1);
  ORDER(3, 5);

  /* A callback that closes its own queue: the rest are unlinked, not
   * expired, and the loop still closes cleanly. */
  norder = 0;
  item_init(&a, 6);
  item_init(&b, 7);
  a.close_q = &q;
  ADD(&q, &a);
  ADD(&q, &b);
  run_for(&loop, 50);
  FIRED(&a, 1);
  FIRED(&b, 0);
  SW_CHECK(b.node.q == NULL);
  ORDER(6);
  SW_CHECK_INT_EQ(closed, 1);
  /* Closing again is harmless and does not call back twice. */
  sw_timeq_close(&q, on_closed);
  uv_run(&loop, UV_RUN_DEFAULT);
  SW_CHECK_INT_EQ(closed, 1);
  SW_CHECK_INT_EQ(uv_loop_close(&loop), 0);
}

static void test_close(void) {
  uv_loop_t loop;
  sw_timeq_t q;
  item_t a, b;

  start(&loop);
  SW_CHECK_INT_EQ(sw_timeq_init(&loop, &q, 10, on_expire), 0);
  item_init(&a, 1);
  item_init(&b, 2);
  uv_update_time(&loop);
  ADD(&q, &a);
  ADD(&q, &b);
  sw_timeq_close(&q, on_closed);
  SW_CHECK(a.node.q == NULL && b.node.q == NULL);
  SW_CHECK(a.node.next == &a.node && b.node.next == &b.node);
  SW_CHECK(q.head.next == &q.head);
  /* A second close before the first completes changes nothing. */
  sw_timeq_close(&q, on_closed);
  uv_run(&loop, UV_RUN_DEFAULT);
  SW_CHECK_INT_EQ(closed, 1);
  SW_CHECK_INT_EQ(norder, 0);
  SW_CHECK_INT_EQ(uv_loop_close(&loop), 0);

  /* A queue that was never used closes cleanly too. */
  start(&loop);
  SW_CHECK_INT_EQ(sw_timeq_init(&loop, &q, 10, on_expire), 0);
  finish(&loop, &q, NULL);
}

/* Pending timeouts alone do not keep a loop running: shutdown must not
 * wait for idle connections' timers. */
static void test_unref(void) {
  uv_loop_t loop;
  sw_timeq_t q;
  item_t a;

  start(&loop);
  SW_CHECK_INT_EQ(sw_timeq_init(&loop, &q, 30, on_expire), 0);
  item_init(&a, 1);
  uv_update_time(&loop);
  ADD(&q, &a);
  SW_CHECK_INT_EQ(uv_run(&loop, UV_RUN_DEFAULT), 0);
  SW_CHECK_INT_EQ(a.fired, 0);
  SW_CHECK(a.node.q == &q);
  finish(&loop, &q, NULL);
  SW_CHECK(a.node.q == NULL);
}

SW_TEST_MAIN(SW_TASK(test_expire_in_order),
             SW_TASK(test_del),
             SW_TASK(test_readd),
             SW_TASK(test_move_between_queues),
             SW_TASK(test_callbacks),
             SW_TASK(test_close),
             SW_TASK(test_unref))
