/* The bounded byte buffer: a growable array with a hard cap. Appending past
 * the cap fails with SW_ELIMIT and leaves the buffer unchanged, so every
 * buffer a peer can grow has a bound. */
#ifndef SW_BUF_H
#define SW_BUF_H

#include <stddef.h>

typedef struct sw_buf_s {
  char *data;
  size_t len;
  size_t cap; /* allocated */
  size_t max; /* hard bound on len */
} sw_buf_t;

#include <stdint.h>
#include <string.h>

void sw_buf_init(sw_buf_t *b, size_t max);
/* The slow path of sw_buf_append: grows the allocation. */
int sw_buf_append_grow(sw_buf_t *b, const void *data, size_t len);

/* Returns 0, SW_ELIMIT when len would pass max, or UV_ENOMEM. Inline
 * because building every message head is a series of small appends. */
static inline int sw_buf_append(sw_buf_t *b, const void *data, size_t len) {
  if (len <= b->cap - b->len) {
    if (len > 0)
      memcpy(b->data + b->len, data, len);
    b->len += len;
    return 0;
  }
  return sw_buf_append_grow(b, data, len);
}

/* Appends the decimal text of v. */
int sw_buf_append_u64(sw_buf_t *b, uint64_t v);
int sw_buf_appendf(sw_buf_t *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Makes room for n more bytes without changing len. */
int sw_buf_reserve(sw_buf_t *b, size_t n);
/* Drops the first n bytes. */
void sw_buf_consume(sw_buf_t *b, size_t n);
void sw_buf_reset(sw_buf_t *b);
void sw_buf_free(sw_buf_t *b);

#endif
