/* Unit tests of the bounded buffer (proxy/buf.c): the bound holds exactly
 * (max bytes fit, max + 1 fail with SW_ELIMIT), a failed call changes
 * nothing, the allocation never passes max, and appendf, append_u64,
 * consume, reserve, reset and free do what sw_buf.h says. */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sw_buf.h"
#include "sw_test.h"
#include "sw_types.h"

/* A copy of a buffer's visible state, to show that a failed call left it
 * exactly as it was. */
typedef struct snap_s {
  char *data;
  size_t len;
  size_t cap;
  size_t max;
  char bytes[4096];
} snap_t;

static void snap_take(snap_t *s, const sw_buf_t *b) {
  s->data = b->data;
  s->len = b->len;
  s->cap = b->cap;
  s->max = b->max;
  if (b->len <= sizeof(s->bytes) && b->len > 0)
    memcpy(s->bytes, b->data, b->len);
}

static void snap_check_at(const char *file,
                          int line,
                          const snap_t *s,
                          const sw_buf_t *b) {
  SW_CHECK_AT(file, line, b->data == s->data);
  SW_CHECK_UINT_EQ_AT(file, line, b->len, s->len);
  SW_CHECK_UINT_EQ_AT(file, line, b->cap, s->cap);
  SW_CHECK_UINT_EQ_AT(file, line, b->max, s->max);
  if (b->len == s->len && s->len <= sizeof(s->bytes) && s->len > 0)
    SW_CHECK_AT(file, line, memcmp(b->data, s->bytes, s->len) == 0);
}
#define SNAP_UNCHANGED(s, b) snap_check_at(__FILE__, __LINE__, s, b)

/* Checks the buffer holds exactly the bytes of want. */
static void content_at(
    const char *file, int line, const sw_buf_t *b, const char *want, size_t n) {
  if (!SW_CHECK_UINT_EQ_AT(file, line, b->len, n))
    return;
  if (n > 0 && !SW_CHECK_AT(file, line, memcmp(b->data, want, n) == 0))
    printf("  have: \"%.*s\"\n  want: \"%.*s\"\n", (int)b->len, b->data, (int)n,
           want);
}
#define CONTENT(b, s) content_at(__FILE__, __LINE__, b, s, strlen(s))

/* The invariant every operation keeps. */
#define BOUNDED(b) SW_CHECK((b)->len <= (b)->cap && (b)->cap <= (b)->max)

static void test_init(void) {
  sw_buf_t b;

  memset(&b, 0x5a, sizeof(b));
  sw_buf_init(&b, 100);
  SW_CHECK(b.data == NULL);
  SW_CHECK_UINT_EQ(b.len, 0);
  SW_CHECK_UINT_EQ(b.cap, 0);
  SW_CHECK_UINT_EQ(b.max, 100);
  /* Nothing allocated yet: free is harmless. */
  sw_buf_free(&b);
  SW_CHECK(b.data == NULL);
}

/* The bound, byte for byte, for sizes below and above the first allocation
 * (256 bytes), filled in one append and one byte at a time. */
static void test_bound_exact(void) {
  static const size_t maxes[] = {1, 7, 255, 256, 257, 300, 1000, 4096};
  char src[4097];
  size_t i, k;

  for (i = 0; i < sizeof(src); i++)
    src[i] = (char)('a' + i % 26);

  for (i = 0; i < sizeof(maxes) / sizeof(maxes[0]); i++) {
    size_t max = maxes[i];
    sw_buf_t b;
    snap_t s;
    int ok = 1;

    /* In one append: max fits, max + 1 does not. */
    sw_buf_init(&b, max);
    SW_CHECK_INT_EQ(sw_buf_append(&b, src, max + 1), SW_ELIMIT);
    SW_CHECK(b.data == NULL);
    SW_CHECK_UINT_EQ(b.len, 0);
    SW_CHECK_INT_EQ(sw_buf_append(&b, src, max), 0);
    SW_CHECK_UINT_EQ(b.len, max);
    BOUNDED(&b);
    SW_CHECK(memcmp(b.data, src, max) == 0);
    snap_take(&s, &b);
    SW_CHECK_INT_EQ(sw_buf_append(&b, "x", 1), SW_ELIMIT);
    SNAP_UNCHANGED(&s, &b);
    /* Appending nothing to a full buffer is fine. */
    SW_CHECK_INT_EQ(sw_buf_append(&b, "x", 0), 0);
    SNAP_UNCHANGED(&s, &b);
    sw_buf_free(&b);

    /* One byte at a time: the bound and the invariant at every step. */
    sw_buf_init(&b, max);
    for (k = 0; k < max; k++) {
      if (sw_buf_append(&b, src + k, 1) != 0 || b.len != k + 1 || b.cap > max ||
          b.len > b.cap) {
        ok = 0;
        printf("  max %zu: byte %zu: len %zu cap %zu\n", max, k, b.len, b.cap);
        break;
      }
    }
    SW_CHECK(ok);
    snap_take(&s, &b);
    SW_CHECK_INT_EQ(sw_buf_append(&b, "x", 1), SW_ELIMIT);
    SNAP_UNCHANGED(&s, &b);
    SW_CHECK(b.len == max && memcmp(b.data, src, max) == 0);

    /* Partly full: exactly the room left fits, one more does not. */
    sw_buf_consume(&b, max / 2);
    snap_take(&s, &b);
    SW_CHECK_INT_EQ(sw_buf_append(&b, src, max - b.len + 1), SW_ELIMIT);
    SNAP_UNCHANGED(&s, &b);
    SW_CHECK_INT_EQ(sw_buf_append(&b, src, max - b.len), 0);
    SW_CHECK_UINT_EQ(b.len, max);
    BOUNDED(&b);
    sw_buf_free(&b);
  }
}

/* Lengths near SIZE_MAX must not wrap around the bound check. */
static void test_bound_overflow(void) {
  /* Volatile so the compiler cannot see a constant huge memcpy bound in the
   * inline fast path and refuse to build. */
  volatile size_t huge = SIZE_MAX;
  sw_buf_t b;
  snap_t s;

  sw_buf_init(&b, 64);
  SW_CHECK_INT_EQ(sw_buf_append(&b, "0123456789", 10), 0);
  snap_take(&s, &b);
  SW_CHECK_INT_EQ(sw_buf_reserve(&b, SIZE_MAX), SW_ELIMIT);
  SW_CHECK_INT_EQ(sw_buf_reserve(&b, SIZE_MAX - 5), SW_ELIMIT);
  SW_CHECK_INT_EQ(sw_buf_append(&b, "x", huge), SW_ELIMIT);
  SW_CHECK_INT_EQ(sw_buf_append(&b, "x", huge - 9), SW_ELIMIT);
  SNAP_UNCHANGED(&s, &b);
  CONTENT(&b, "0123456789");
  sw_buf_free(&b);

  /* A buffer of max 0 holds nothing, but appending nothing succeeds. */
  sw_buf_init(&b, 0);
  SW_CHECK_INT_EQ(sw_buf_append(&b, "x", 1), SW_ELIMIT);
  SW_CHECK_INT_EQ(sw_buf_append(&b, NULL, 0), 0);
  SW_CHECK_INT_EQ(sw_buf_reserve(&b, 0), 0);
  SW_CHECK_INT_EQ(sw_buf_reserve(&b, 1), SW_ELIMIT);
  SW_CHECK_UINT_EQ(b.len, 0);
  SW_CHECK_UINT_EQ(b.cap, 0);
  sw_buf_free(&b);
}

/* Growth keeps the bytes and never allocates past max. */
static void test_growth(void) {
  sw_buf_t b;
  char chunk[1000];
  size_t total = 0, i;
  int ok = 1;

  sw_buf_init(&b, 100000);
  for (i = 0; total + sizeof(chunk) <= 100000; i++) {
    memset(chunk, (int)('A' + i % 26), sizeof(chunk));
    if (sw_buf_append(&b, chunk, sizeof(chunk)) != 0 || b.cap > b.max) {
      ok = 0;
      break;
    }
    total += sizeof(chunk);
  }
  SW_CHECK(ok);
  SW_CHECK_UINT_EQ(b.len, 100000);
  SW_CHECK_UINT_EQ(b.cap, 100000);
  for (i = 0; i < b.len; i++) {
    if (b.data[i] != (char)('A' + (i / sizeof(chunk)) % 26)) {
      ok = 0;
      printf("  byte %zu is '%c'\n", i, b.data[i]);
      break;
    }
  }
  SW_CHECK(ok);
  SW_CHECK_INT_EQ(sw_buf_append(&b, "x", 1), SW_ELIMIT);
  sw_buf_free(&b);
}

static void test_reserve(void) {
  sw_buf_t b;
  snap_t s;
  char *before;

  sw_buf_init(&b, 1000);
  SW_CHECK_INT_EQ(sw_buf_append(&b, "abc", 3), 0);
  SW_CHECK_INT_EQ(sw_buf_reserve(&b, 500), 0);
  SW_CHECK_UINT_EQ(b.len, 3);
  SW_CHECK(b.cap >= 503);
  BOUNDED(&b);
  CONTENT(&b, "abc");

  /* Appends within the reserved room do not move the data. */
  before = b.data;
  {
    char fill[500];
    memset(fill, 'z', sizeof(fill));
    SW_CHECK_INT_EQ(sw_buf_append(&b, fill, sizeof(fill)), 0);
  }
  SW_CHECK(b.data == before);
  SW_CHECK_UINT_EQ(b.len, 503);

  /* Exactly the room left up to max, then one more. */
  SW_CHECK_INT_EQ(sw_buf_reserve(&b, 497), 0);
  SW_CHECK_UINT_EQ(b.cap, 1000);
  snap_take(&s, &b);
  SW_CHECK_INT_EQ(sw_buf_reserve(&b, 498), SW_ELIMIT);
  SNAP_UNCHANGED(&s, &b);
  SW_CHECK_INT_EQ(sw_buf_reserve(&b, 0), 0);
  SNAP_UNCHANGED(&s, &b);
  sw_buf_free(&b);

  /* A small max caps the first allocation too. */
  sw_buf_init(&b, 10);
  SW_CHECK_INT_EQ(sw_buf_reserve(&b, 4), 0);
  SW_CHECK(b.cap >= 4 && b.cap <= 10);
  SW_CHECK_UINT_EQ(b.len, 0);
  SW_CHECK_INT_EQ(sw_buf_reserve(&b, 11), SW_ELIMIT);
  sw_buf_free(&b);

  /* A buffer whose max was lowered below its length takes nothing more. */
  sw_buf_init(&b, 100);
  SW_CHECK_INT_EQ(sw_buf_append(&b, "hello", 5), 0);
  b.max = 3;
  SW_CHECK_INT_EQ(sw_buf_reserve(&b, 0), SW_ELIMIT);
  SW_CHECK_INT_EQ(sw_buf_reserve(&b, 1), SW_ELIMIT);
  SW_CHECK_UINT_EQ(b.len, 5);
  sw_buf_free(&b);
}

static void test_appendf(void) {
  sw_buf_t b;
  snap_t s;
  char big[600];
  int rc;

  sw_buf_init(&b, 64);
  SW_CHECK_INT_EQ(sw_buf_appendf(&b, "HTTP/1.1 %d %s\r\n", 502, "Bad Gateway"),
                  0);
  CONTENT(&b, "HTTP/1.1 502 Bad Gateway\r\n");
  SW_CHECK_INT_EQ(sw_buf_appendf(&b, "%s", ""), 0);
  CONTENT(&b, "HTTP/1.1 502 Bad Gateway\r\n");
  SW_CHECK_INT_EQ(sw_buf_appendf(&b, "Content-Length: %llu\r\n", 12345ull), 0);
  CONTENT(&b, "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 12345\r\n");
  SW_CHECK_UINT_EQ(b.len, 49);

  /* 15 bytes of room: 15 fit, 16 do not and change nothing. */
  snap_take(&s, &b);
  SW_CHECK_INT_EQ(sw_buf_appendf(&b, "%016d", 7), SW_ELIMIT);
  SNAP_UNCHANGED(&s, &b);
  SW_CHECK_INT_EQ(sw_buf_appendf(&b, "%015d", 7), 0);
  SW_CHECK_UINT_EQ(b.len, 64);
  SW_CHECK(memcmp(b.data + 49, "000000000000007", 15) == 0);
  sw_buf_free(&b);

  /* Long output into a roomy buffer: either all of it or, if appendf has a
   * bound of its own, SW_ELIMIT with nothing changed; never a truncation. */
  memset(big, 'q', sizeof(big) - 1);
  big[sizeof(big) - 1] = '\0';
  sw_buf_init(&b, 4096);
  SW_CHECK_INT_EQ(sw_buf_append(&b, "<", 1), 0);
  snap_take(&s, &b);
  rc = sw_buf_appendf(&b, "%s", big);
  if (rc == 0) {
    SW_CHECK_UINT_EQ(b.len, 1 + strlen(big));
    SW_CHECK(memcmp(b.data + 1, big, strlen(big)) == 0);
  } else {
    SW_CHECK_INT_EQ(rc, SW_ELIMIT);
    SNAP_UNCHANGED(&s, &b);
  }
  sw_buf_free(&b);
}

static void test_append_u64(void) {
  static const struct {
    uint64_t v;
    const char *text;
  } cases[] = {
      {0, "0"},
      {7, "7"},
      {10, "10"},
      {1234567890ull, "1234567890"},
      {UINT64_MAX, "18446744073709551615"},
  };
  sw_buf_t b;
  snap_t s;
  size_t i;

  for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    sw_buf_init(&b, 64);
    SW_CHECK_INT_EQ(sw_buf_append(&b, "n=", 2), 0);
    SW_CHECK_INT_EQ(sw_buf_append_u64(&b, cases[i].v), 0);
    SW_CHECK_UINT_EQ(b.len, 2 + strlen(cases[i].text));
    if (b.len == 2 + strlen(cases[i].text))
      SW_CHECK(memcmp(b.data + 2, cases[i].text, b.len - 2) == 0);
    sw_buf_free(&b);
  }

  /* Three bytes of room: "999" fits, "1000" does not. */
  sw_buf_init(&b, 5);
  SW_CHECK_INT_EQ(sw_buf_append(&b, "n=", 2), 0);
  snap_take(&s, &b);
  SW_CHECK_INT_EQ(sw_buf_append_u64(&b, 1000), SW_ELIMIT);
  SNAP_UNCHANGED(&s, &b);
  SW_CHECK_INT_EQ(sw_buf_append_u64(&b, 999), 0);
  CONTENT(&b, "n=999");
  sw_buf_free(&b);
}

static void test_consume(void) {
  sw_buf_t b;
  size_t cap;

  sw_buf_init(&b, 64);
  SW_CHECK_INT_EQ(sw_buf_append(&b, "0123456789", 10), 0);
  cap = b.cap;
  sw_buf_consume(&b, 0);
  CONTENT(&b, "0123456789");
  sw_buf_consume(&b, 3);
  CONTENT(&b, "3456789");
  sw_buf_consume(&b, 6);
  CONTENT(&b, "9");
  sw_buf_consume(&b, 1);
  SW_CHECK_UINT_EQ(b.len, 0);
  SW_CHECK_UINT_EQ(b.cap, cap);

  /* More than there is empties the buffer. */
  SW_CHECK_INT_EQ(sw_buf_append(&b, "abc", 3), 0);
  sw_buf_consume(&b, 1000);
  SW_CHECK_UINT_EQ(b.len, 0);
  sw_buf_consume(&b, 1);
  SW_CHECK_UINT_EQ(b.len, 0);

  /* Consuming frees room under the bound. */
  {
    char fill[64];
    memset(fill, 'f', sizeof(fill));
    SW_CHECK_INT_EQ(sw_buf_append(&b, fill, 64), 0);
    SW_CHECK_INT_EQ(sw_buf_append(&b, "g", 1), SW_ELIMIT);
    sw_buf_consume(&b, 60);
    SW_CHECK_INT_EQ(sw_buf_append(&b, "ghij", 4), 0);
    CONTENT(&b, "ffffghij");
    SW_CHECK_INT_EQ(sw_buf_append(&b, fill, 57), SW_ELIMIT);
    SW_CHECK_INT_EQ(sw_buf_append(&b, fill, 56), 0);
    SW_CHECK_UINT_EQ(b.len, 64);
    BOUNDED(&b);
  }
  sw_buf_free(&b);
}

static void test_reset_and_free(void) {
  sw_buf_t b;
  char *data;
  size_t cap;

  sw_buf_init(&b, 300);
  SW_CHECK_INT_EQ(sw_buf_append(&b, "keep the allocation", 19), 0);
  data = b.data;
  cap = b.cap;
  sw_buf_reset(&b);
  SW_CHECK_UINT_EQ(b.len, 0);
  SW_CHECK(b.data == data);
  SW_CHECK_UINT_EQ(b.cap, cap);
  SW_CHECK_UINT_EQ(b.max, 300);
  SW_CHECK_INT_EQ(sw_buf_append(&b, "again", 5), 0);
  CONTENT(&b, "again");
  SW_CHECK(b.data == data);

  sw_buf_free(&b);
  SW_CHECK(b.data == NULL);
  SW_CHECK_UINT_EQ(b.len, 0);
  SW_CHECK_UINT_EQ(b.cap, 0);
  SW_CHECK_UINT_EQ(b.max, 300);
  /* Freeing twice is harmless and a freed buffer can be used again, with
   * the same bound. */
  sw_buf_free(&b);
  SW_CHECK(b.data == NULL);
  SW_CHECK_INT_EQ(sw_buf_append(&b, "reborn", 6), 0);
  CONTENT(&b, "reborn");
  BOUNDED(&b);
  sw_buf_free(&b);
}

SW_TEST_MAIN(SW_TASK(test_init),
             SW_TASK(test_bound_exact),
             SW_TASK(test_bound_overflow),
             SW_TASK(test_growth),
             SW_TASK(test_reserve),
             SW_TASK(test_appendf),
             SW_TASK(test_append_u64),
             SW_TASK(test_consume),
             SW_TASK(test_reset_and_free))
