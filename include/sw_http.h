/* Pure HTTP helpers shared by the client and upstream sides: header
 * storage, token lists, hop-by-hop names, reason phrases. No I/O here, so
 * everything in this module is unit-tested alone. */
#ifndef SW_HTTP_H
#define SW_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include "sw_buf.h"

/* One header as offsets into the head's raw storage (offsets survive the
 * storage being reallocated while it grows). */
typedef struct sw_hdr_s {
  uint32_t name_off;
  uint32_t name_len;
  uint32_t value_off;
  uint32_t value_len;
} sw_hdr_t;

/* A parsed message head: the raw bytes of the names and values, and the
 * header index. Bounded by the raw buffer's max and by max_headers. */
typedef struct sw_head_s {
  sw_buf_t raw;
  sw_hdr_t *hdrs;
  uint32_t n;
  uint32_t cap;
  uint32_t max;          /* header count limit */
  uint8_t in_value;      /* the last callback was a value */
  const char *value_end; /* end of the last value span seen, NULL after
                          * the value ended */
} sw_head_t;

void sw_head_init(sw_head_t *h, size_t max_bytes, uint32_t max_headers);
void sw_head_reset(sw_head_t *h);
void sw_head_free(sw_head_t *h);
/* Parser callback helpers. Return 0, SW_ELIMIT (too large or too many) or
 * SW_EPARSE (invalid byte in a name or value, a value without a name).
 * Folded lines are found by sw_http_scan_head on the raw bytes. */
int sw_head_field(sw_head_t *h, const char *at, size_t len);
int sw_head_value(sw_head_t *h, const char *at, size_t len);
/* Ends the current name; an empty name is SW_EPARSE. */
int sw_head_field_done(sw_head_t *h);
/* Ends the current value (trims trailing whitespace). */
void sw_head_value_done(sw_head_t *h);

static inline const char *sw_head_name(const sw_head_t *h, uint32_t i) {
  return h->raw.data + h->hdrs[i].name_off;
}
static inline const char *sw_head_val(const sw_head_t *h, uint32_t i) {
  return h->raw.data + h->hdrs[i].value_off;
}

/* Case-insensitive comparison of a counted string with a lower-case
 * literal. */
int sw_http_ieq(const char *s, size_t len, const char *lit);
/* Case-insensitive prefix test. */
int sw_http_iprefix(const char *s, size_t len, const char *lit);
/* Whether a comma-separated list contains a lower-case token. */
int sw_http_list_has(const char *list, size_t len, const char *token);
/* Whether name is one of the fixed hop-by-hop headers. */
int sw_http_is_hop(const char *name, size_t len);
/* Whether name is listed by any Connection header of h. */
int sw_http_connection_lists(const sw_head_t *h, const char *name, size_t len);
/* The names listed by a head's Connection headers that are not hop-by-hop
 * already: computed once per message so that filtering its headers is one
 * pass, not a pass per header. */
#define SW_CONN_TOKENS 8
typedef struct sw_conn_tokens_s {
  uint32_t n;
  uint8_t overflow; /* more than SW_CONN_TOKENS: fall back to the slow test */
  struct {
    uint32_t off, len; /* in the head's raw storage */
  } t[SW_CONN_TOKENS];
} sw_conn_tokens_t;

void sw_http_conn_tokens(const sw_head_t *h, sw_conn_tokens_t *out);
/* Whether a header name must be dropped because Connection lists it. */
int sw_http_conn_listed(const sw_head_t *h,
                        const sw_conn_tokens_t *t,
                        const char *name,
                        size_t len);

/* Index of the first header named `name`, or -1; *count gets how many. */
int sw_http_find(const sw_head_t *h, const char *name, int *count);

/* Scans a message head for bare LF line ends and folded lines, which
 * llhttp 8 tolerates in places. It works on the raw bytes, so it does not
 * matter how the head was split across reads. State carries across reads;
 * zero it for each message. */
typedef struct sw_headscan_s {
  uint8_t prev; /* last byte seen */
  uint8_t nl;   /* line ends in a row */
  uint8_t text; /* a byte other than CR or LF was seen */
  uint8_t done; /* the blank line ending the head was seen */
} sw_headscan_t;

/* Returns SW_EPARSE on a bare LF or an obs-fold, else 0. Stops at the end
 * of the head. */
int sw_http_scan_head(sw_headscan_t *st, const char *p, size_t len);

const char *sw_http_reason(int status);
/* Whether a request method may be replayed (RFC 9110 idempotent methods). */
int sw_http_idempotent(const char *method);

#endif
