/* The bounded buffer of sw_buf.h. Growth doubles the allocation up to the
 * cap so appends are amortised O(1); nothing here ever exceeds max. */
#include "sw_buf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "sw_types.h"

void sw_buf_init(sw_buf_t *b, size_t max) {
  b->data = NULL;
  b->len = 0;
  b->cap = 0;
  b->max = max;
}

int sw_buf_reserve(sw_buf_t *b, size_t n) {
  size_t want, cap;
  char *p;

  if (n > b->max - b->len || b->len > b->max)
    return SW_ELIMIT;
  want = b->len + n;
  if (want <= b->cap)
    return 0;
  cap = b->cap < 256 ? 256 : b->cap;
  while (cap < want)
    cap *= 2;
  if (cap > b->max)
    cap = b->max;
  p = realloc(b->data, cap);
  if (p == NULL)
    return UV_ENOMEM;
  b->data = p;
  b->cap = cap;
  return 0;
}

int sw_buf_append_grow(sw_buf_t *b, const void *data, size_t len) {
  int err;
  if (len == 0)
    return 0;
  err = sw_buf_reserve(b, len);
  if (err != 0)
    return err;
  memcpy(b->data + b->len, data, len);
  b->len += len;
  return 0;
}

int sw_buf_append_u64(sw_buf_t *b, uint64_t v) {
  char tmp[24];
  int i = sizeof(tmp);
  do {
    tmp[--i] = (char)('0' + v % 10);
    v /= 10;
  } while (v != 0);
  return sw_buf_append(b, tmp + i, sizeof(tmp) - (size_t)i);
}

int sw_buf_appendf(sw_buf_t *b, const char *fmt, ...) {
  char tmp[512];
  va_list ap;
  int n;

  va_start(ap, fmt);
  n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
  va_end(ap);
  if (n < 0)
    return UV_EINVAL;
  if ((size_t)n >= sizeof(tmp))
    return SW_ELIMIT;
  return sw_buf_append(b, tmp, (size_t)n);
}

void sw_buf_consume(sw_buf_t *b, size_t n) {
  if (n >= b->len) {
    b->len = 0;
    return;
  }
  memmove(b->data, b->data + n, b->len - n);
  b->len -= n;
}

void sw_buf_reset(sw_buf_t *b) {
  b->len = 0;
}

void sw_buf_free(sw_buf_t *b) {
  free(b->data);
  b->data = NULL;
  b->len = 0;
  b->cap = 0;
}
