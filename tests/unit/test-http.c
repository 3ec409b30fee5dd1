/* Unit tests of the pure HTTP helpers (proxy/http.c). The header storage is
 * driven the way the proxy drives it: by a real llhttp parser over real
 * request bytes, cut into two or three reads at every possible offset. The
 * resulting headers must be the same whatever the cuts, and an obs-fold must
 * be refused whatever the cuts. Reads are fed two ways: each in a buffer of
 * its own, and each copied to the start of one reused buffer, which is what
 * the proxy does (proxy/main.c's sw_alloc_cb hands out one static buffer).
 * Then the same storage is called directly for its edges (limits, bytes,
 * empty names, trimming), and the token, hop-by-hop, bare-LF, reason and
 * method helpers are checked on their own. */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llhttp.h"
#include "sw_http.h"
#include "sw_test.h"
#include "sw_types.h"

/* ---- Driving sw_head_* with llhttp ----------------------------------- */

/* How reads reach the parser. */
typedef enum feed_mode_e {
  FEED_DISTINCT = 0, /* each read in its own buffer, all alive to the end */
  FEED_REUSED = 1,   /* each read copied to the start of one buffer */
} feed_mode_t;

#define FEED_MODES 2
#define MAX_CUTS 2

/* Results of a feed besides 0 and the sw_head_* error that stopped it. */
#define FEED_LLHTTP 1     /* llhttp refused the bytes by itself */
#define FEED_INCOMPLETE 2 /* the bytes ended before the end of the head */

typedef struct feed_s {
  llhttp_t parser;
  sw_head_t head;
  const char *input_start;
  const char *input_end;
  int err;          /* what the failing sw_head_* call returned */
  int headers_done; /* the head was complete */
  sw_headscan_t scan;
} feed_t;

static const char *const mode_names[FEED_MODES] = {"distinct", "reused"};

/* One buffer for every read in FEED_REUSED mode, like proxy/main.c's. */
static char reused_buf[8192];

static int on_header_field(llhttp_t *p, const char *at, size_t len) {
  feed_t *f = p->data;
  f->err = sw_head_field(&f->head, at, len);
  return f->err == 0 ? 0 : HPE_USER;
}

static int on_header_value(llhttp_t *p, const char *at, size_t len) {
  feed_t *f = p->data;
  f->err = sw_head_value(&f->head, at, len);
  return f->err == 0 ? 0 : HPE_USER;
}

static int on_header_field_complete(llhttp_t *p) {
  feed_t *f = p->data;
  f->err = sw_head_field_done(&f->head);
  return f->err == 0 ? 0 : HPE_USER;
}

static int on_header_value_complete(llhttp_t *p) {
  feed_t *f = p->data;
  sw_head_value_done(&f->head);
  return 0;
}

/* Only the head matters here: pause so a body is never parsed. */
static int on_headers_complete(llhttp_t *p) {
  feed_t *f = p->data;
  f->headers_done = 1;
  return HPE_PAUSED;
}

static const llhttp_settings_t *feed_settings(void) {
  static llhttp_settings_t s;
  static int ready;

  if (!ready) {
    llhttp_settings_init(&s);
    s.on_header_field = on_header_field;
    s.on_header_value = on_header_value;
    s.on_header_field_complete = on_header_field_complete;
    s.on_header_value_complete = on_header_value_complete;
    s.on_headers_complete = on_headers_complete;
    ready = 1;
  }
  return &s;
}

/* Parses len bytes of req cut before each of the ncuts offsets (ascending,
 * each in 1..len-1) and returns 0, an sw_head_* error, FEED_LLHTTP or
 * FEED_INCOMPLETE. The caller frees f->head. */
static int feed_run(feed_t *f,
                    const char *req,
                    size_t len,
                    const size_t *cuts,
                    size_t ncuts,
                    feed_mode_t mode,
                    size_t max_bytes,
                    uint32_t max_headers) {
  char *pieces[MAX_CUTS + 1];
  size_t npieces = 0, start = 0, k;
  int rc = 0;

  llhttp_init(&f->parser, HTTP_REQUEST, feed_settings());
  f->parser.data = f;
  sw_head_init(&f->head, max_bytes, max_headers);
  memset(&f->scan, 0, sizeof(f->scan));
  f->err = 0;
  f->headers_done = 0;
  for (k = 0; k <= ncuts && !f->headers_done; k++) {
    size_t end = k < ncuts ? cuts[k] : len;
    size_t n = end - start;
    char *buf = reused_buf;
    llhttp_errno_t e;

    if (mode == FEED_DISTINCT) {
      buf = malloc(n);
      if (buf == NULL)
        abort();
      pieces[npieces++] = buf;
    }
    memcpy(buf, req + start, n);
    f->input_start = buf;
    f->input_end = buf + n;
    /* As the proxy does: the raw bytes are scanned for bare LF and folds
     * before llhttp sees them. */
    if (sw_http_scan_head(&f->scan, buf, n) != 0) {
      rc = SW_EPARSE;
      break;
    }
    e = llhttp_execute(&f->parser, buf, n);
    /* A data callback's error is HPE_USER; a _complete callback's is
     * llhttp's HPE_CB_* of that callback. Either way f->err says why. */
    if (e != HPE_OK && e != HPE_PAUSED) {
      rc = f->err != 0 ? f->err : FEED_LLHTTP;
      break;
    }
    start = end;
  }
  if (rc == 0 && !f->headers_done)
    rc = FEED_INCOMPLETE;
  /* The head holds copies, so the reads may go (as the proxy's buffer is
   * overwritten by its next read). */
  for (k = 0; k < npieces; k++)
    free(pieces[k]);
  return rc;
}

/* The headers as text, "name: [value]" a line, to compare parses. */
static void head_dump(const sw_head_t *h, char *out, size_t size) {
  size_t used = 0;
  uint32_t i;

  out[0] = '\0';
  for (i = 0; i < h->n && used < size; i++) {
    int w = snprintf(out + used, size - used, "%.*s: [%.*s]\n",
                     (int)h->hdrs[i].name_len, sw_head_name(h, i),
                     (int)h->hdrs[i].value_len, sw_head_val(h, i));
    if (w < 0)
      break;
    used += (size_t)w;
  }
}

static void print_escaped(const char *s, size_t n) {
  size_t i;

  for (i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c == '\r')
      printf("\\r");
    else if (c == '\n')
      printf("\\n");
    else if (c == '\t')
      printf("\\t");
    else if (c < 0x20 || c >= 0x7f)
      printf("\\x%02x", c);
    else
      putchar(c);
  }
}

static void print_reads(const char *req,
                        size_t len,
                        const size_t *cuts,
                        size_t ncuts) {
  size_t k, start = 0;

  printf("  reads:");
  for (k = 0; k <= ncuts; k++) {
    size_t end = k < ncuts ? cuts[k] : len;
    printf(" \"");
    print_escaped(req + start, end - start);
    printf("\"");
    start = end;
  }
  printf("\n");
}

/* What one parse must give. */
typedef struct expect_s {
  int rc;           /* 0 or the error */
  const char *dump; /* the headers when rc is 0, or NULL not to check */
  size_t max_bytes;
  uint32_t max_headers;
} expect_t;

/* Parses one way and compares; prints the reads and what differed. */
static int feed_matches(const char *req,
                        size_t len,
                        const size_t *cuts,
                        size_t ncuts,
                        feed_mode_t mode,
                        const expect_t *want,
                        int verbose) {
  static char dump[8192];
  feed_t f;
  int rc = feed_run(&f, req, len, cuts, ncuts, mode, want->max_bytes,
                    want->max_headers);
  int ok = rc == want->rc;

  head_dump(&f.head, dump, sizeof(dump));
  if (ok && rc == 0 && want->dump != NULL)
    ok = strcmp(dump, want->dump) == 0;
  if (!ok && verbose) {
    printf("  %s reads: result %d, want %d\n", mode_names[mode], rc, want->rc);
    print_reads(req, len, cuts, ncuts);
    printf("  headers:\n%s", dump);
    if (want->dump != NULL && want->rc == 0)
      printf("  want:\n%s", want->dump);
  }
  sw_head_free(&f.head);
  return ok;
}

/* Parses req whole, then in ncuts + 1 reads cut at every possible set of
 * offsets, in one feed mode; counts the parses that differ from want and
 * shows the first few. One check per call. */
static void check_cuts_at(const char *file,
                          int line,
                          const char *req,
                          size_t ncuts,
                          feed_mode_t mode,
                          const expect_t *want) {
  size_t len = strlen(req), a, b, bad = 0, total = 0;
  size_t cuts[MAX_CUTS] = {0};

  if (ncuts == 0) {
    total = 1;
    bad = !feed_matches(req, len, cuts, 0, mode, want, 1);
  } else if (ncuts == 1) {
    for (a = 1; a < len; a++) {
      cuts[0] = a;
      total++;
      if (!feed_matches(req, len, cuts, 1, mode, want, bad < 3))
        bad++;
    }
  } else {
    for (a = 1; a < len; a++) {
      for (b = a + 1; b < len; b++) {
        cuts[0] = a;
        cuts[1] = b;
        total++;
        if (!feed_matches(req, len, cuts, 2, mode, want, bad < 3))
          bad++;
      }
    }
  }
  if (!SW_CHECK_UINT_EQ_AT(file, line, bad, 0)) {
    printf("  %zu of %zu parses in %zu %s reads differ, for \"", bad, total,
           ncuts + 1, mode_names[mode]);
    print_escaped(req, len);
    printf("\"\n");
  }
}

/* Every mode, one to three reads. */
static void check_all_cuts_at(const char *file,
                              int line,
                              const char *req,
                              const expect_t *want) {
  size_t ncuts;
  int mode;

  for (mode = 0; mode < FEED_MODES; mode++)
    for (ncuts = mode == 0 ? 0 : 1; ncuts <= MAX_CUTS; ncuts++)
      check_cuts_at(file, line, req, ncuts, (feed_mode_t)mode, want);
}
#define CHECK_ALL_CUTS(req, want) \
  check_all_cuts_at(__FILE__, __LINE__, req, want)

#define NO_LIMIT_BYTES (1u << 20)
#define NO_LIMIT_HEADERS 1000

/* A request with what makes header values interesting: an empty value,
 * trailing and inner whitespace, duplicates, obs-text, a Connection list
 * and the headers llhttp reads through states of their own. Its body has
 * a bare LF, which must not matter. */
static const char rich_req[] =
    "POST /path?q=1 HTTP/1.1\r\n"
    "Host: example.com\r\n"
    "Connection: keep-alive, X-Hop\r\n"
    "X-Hop: 1\r\n"
    "X-Empty:\r\n"
    "X-Trail: v1 \t \r\n"
    "X-Inner:   a  b\t c\r\n"
    "Accept: */*\r\n"
    "accept: text/html\r\n"
    "Content-Length: 5\r\n"
    "X-Obs: caf\xc3\xa9\r\n"
    "\r\n"
    "ab\ncd";

static const char rich_dump[] =
    "Host: [example.com]\n"
    "Connection: [keep-alive, X-Hop]\n"
    "X-Hop: [1]\n"
    "X-Empty: []\n"
    "X-Trail: [v1]\n"
    "X-Inner: [a  b\t c]\n"
    "Accept: [*/*]\n"
    "accept: [text/html]\n"
    "Content-Length: [5]\n"
    "X-Obs: [caf\xc3\xa9]\n";

#define RICH_HEADERS 10

static void test_head_llhttp_splits(void) {
  static const char chunked[] =
      "POST /up HTTP/1.1\r\n"
      "Transfer-Encoding: chunked\r\n"
      "Connection: Upgrade\r\n"
      "Upgrade: websocket\r\n"
      "X-Last:\r\n"
      "\r\n"
      "0\r\n\r\n";
  static const char empty_last[] =
      "GET / HTTP/1.1\r\n"
      "A: 1\r\n"
      "B:\r\n"
      "C: \t \r\n"
      "\r\n";
  expect_t want = {0, rich_dump, NO_LIMIT_BYTES, NO_LIMIT_HEADERS};

  CHECK_ALL_CUTS(rich_req, &want);

  want.dump =
      "Transfer-Encoding: [chunked]\n"
      "Connection: [Upgrade]\n"
      "Upgrade: [websocket]\n"
      "X-Last: []\n";
  CHECK_ALL_CUTS(chunked, &want);

  want.dump = "A: [1]\nB: []\nC: []\n";
  CHECK_ALL_CUTS(empty_last, &want);
}

/* The limits hold at their exact values whatever the cuts. */
static void test_head_llhttp_limits(void) {
  expect_t want = {0, rich_dump, NO_LIMIT_BYTES, RICH_HEADERS};
  feed_t f;
  size_t raw;

  CHECK_ALL_CUTS(rich_req, &want);
  want.max_headers = RICH_HEADERS - 1;
  want.rc = SW_ELIMIT;
  CHECK_ALL_CUTS(rich_req, &want);

  /* The byte bound counts names and values as received. */
  SW_CHECK_INT_EQ(feed_run(&f, rich_req, strlen(rich_req), NULL, 0,
                           FEED_DISTINCT, NO_LIMIT_BYTES, NO_LIMIT_HEADERS),
                  0);
  raw = f.head.raw.len;
  sw_head_free(&f.head);
  want.rc = 0;
  want.max_headers = NO_LIMIT_HEADERS;
  want.max_bytes = raw;
  CHECK_ALL_CUTS(rich_req, &want);
  want.max_bytes = raw - 1;
  want.rc = SW_ELIMIT;
  CHECK_ALL_CUTS(rich_req, &want);
}

/* More headers than the first allocation holds (16), at the count limit. */
static void test_head_llhttp_many(void) {
  static char req[4096];
  static char dump[4096];
  size_t used, dused = 0;
  expect_t want = {0, dump, NO_LIMIT_BYTES, 40};
  int i;
  feed_t f;

  used = (size_t)snprintf(req, sizeof(req), "GET / HTTP/1.1\r\n");
  for (i = 0; i < 40; i++) {
    used += (size_t)snprintf(req + used, sizeof(req) - used,
                             "X-H%02d: value %d\r\n", i, i);
    dused += (size_t)snprintf(dump + dused, sizeof(dump) - dused,
                              "X-H%02d: [value %d]\n", i, i);
  }
  snprintf(req + used, sizeof(req) - used, "\r\n");

  check_cuts_at(__FILE__, __LINE__, req, 0, FEED_DISTINCT, &want);
  check_cuts_at(__FILE__, __LINE__, req, 1, FEED_DISTINCT, &want);
  check_cuts_at(__FILE__, __LINE__, req, 1, FEED_REUSED, &want);
  want.max_headers = 39;
  want.rc = SW_ELIMIT;
  check_cuts_at(__FILE__, __LINE__, req, 1, FEED_REUSED, &want);

  /* sw_http_find on a real parse. */
  if (SW_CHECK_INT_EQ(feed_run(&f, req, strlen(req), NULL, 0, FEED_DISTINCT,
                               NO_LIMIT_BYTES, 40),
                      0)) {
    int count = -1;
    SW_CHECK_UINT_EQ(f.head.n, 40);
    SW_CHECK_INT_EQ(sw_http_find(&f.head, "x-h39", &count), 39);
    SW_CHECK_INT_EQ(count, 1);
  }
  sw_head_free(&f.head);
}

/* Empty names and bytes outside tchar in a name, as llhttp hands them
 * over, are refused by sw_head_* whatever the cuts. */
static void test_head_llhttp_bad_names(void) {
  expect_t want = {SW_EPARSE, NULL, NO_LIMIT_BYTES, NO_LIMIT_HEADERS};

  CHECK_ALL_CUTS("GET / HTTP/1.1\r\n: b\r\nHost: x\r\n\r\n", &want);
  CHECK_ALL_CUTS("GET / HTTP/1.1\r\nHost: x\r\n: b\r\n\r\n", &want);
  CHECK_ALL_CUTS("GET / HTTP/1.1\r\nHost: x\r\n:\r\n\r\n", &want);
  /* llhttp 8 accepts a space before the colon as part of the name. */
  CHECK_ALL_CUTS("GET / HTTP/1.1\r\nHost : x\r\n\r\n", &want);
}

/* Folded requests whose folded line has a value before the fold. */
static const char *const folds[] = {
    "GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n continued\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n\tcontinued\r\n\r\n",
    "GET / HTTP/1.1\r\nX-A: 1\r\n \r\nHost: x\r\n\r\n",
    "GET / HTTP/1.1\r\nX-A: a b \r\n  c\r\n d\r\nHost: x\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    "GET / HTTP/1.1\r\nX: 1\r\n 2\r\n\r\n",
};

/* An obs-fold is refused however the request is cut, when each read has
 * a buffer of its own. */
static void test_head_fold_splits(void) {
  expect_t want = {SW_EPARSE, NULL, NO_LIMIT_BYTES, NO_LIMIT_HEADERS};
  size_t i, ncuts;

  for (i = 0; i < 4; i++)
    for (ncuts = 0; ncuts <= MAX_CUTS; ncuts++)
      check_cuts_at(__FILE__, __LINE__, folds[i], ncuts, FEED_DISTINCT, &want);
  /* The fold in the second request of a pipeline is not in the first
   * head, which parses fine. */
  want.rc = 0;
  want.dump = "Host: [x]\n";
  check_cuts_at(__FILE__, __LINE__, folds[4], 0, FEED_DISTINCT, &want);
}

/* The same with every read landing at the start of one buffer, as in the
 * proxy. Two reads suffice for most cuts; the three-read cuts are where a
 * fold's span can start at the very address the previous value span ended
 * at in an earlier read. */
static void test_head_fold_reused_read_buffer(void) {
  expect_t want = {SW_EPARSE, NULL, NO_LIMIT_BYTES, NO_LIMIT_HEADERS};
  size_t i, ncuts;

  for (i = 0; i < 4; i++)
    for (ncuts = 1; ncuts <= MAX_CUTS; ncuts++)
      check_cuts_at(__FILE__, __LINE__, folds[i], ncuts, FEED_REUSED, &want);

  /* The smallest case, spelled out: "X-A: 1" | "\r\n" | " b\r\n\r\n". */
  {
    static const char req[] = "GET / HTTP/1.1\r\nX-A: 1\r\n b\r\n\r\n";
    size_t cuts[2] = {22, 24};
    SW_CHECK(feed_matches(req, strlen(req), cuts, 2, FEED_REUSED, &want, 1));
  }
}

/* A fold of a line whose value is empty: llhttp reports the continuation
 * as the header's only value span, exactly as for "X-A: continued". */
static void test_head_fold_after_empty_value(void) {
  expect_t want = {SW_EPARSE, NULL, NO_LIMIT_BYTES, NO_LIMIT_HEADERS};

  check_all_cuts_at(__FILE__, __LINE__,
                    "GET / HTTP/1.1\r\nHost: x\r\nX-A:\r\n continued\r\n\r\n",
                    &want);
  check_all_cuts_at(__FILE__, __LINE__,
                    "GET / HTTP/1.1\r\nHost: x\r\nX-A: \r\n\tcontinued\r\n\r\n",
                    &want);
}

/* ---- sw_head_* called directly --------------------------------------- */

/* Passes a value span that is a whole read of its own. */
static int value_read(sw_head_t *h, const char *v) {
  size_t n = strlen(v);
  return sw_head_value(h, v, n);
}

/* Adds a complete header in one span each, as from one read. */
static int add_header(sw_head_t *h, const char *name, const char *value) {
  int err = sw_head_field(h, name, strlen(name));

  if (err == 0)
    err = sw_head_field_done(h);
  if (err == 0 && value[0] != '\0')
    err = value_read(h, value);
  if (err == 0)
    sw_head_value_done(h);
  return err;
}

static void header_is_at(const char *file,
                         int line,
                         const sw_head_t *h,
                         uint32_t i,
                         const char *name,
                         const char *value) {
  char have[256];

  if (!SW_CHECK_AT(file, line, i < h->n))
    return;
  snprintf(have, sizeof(have), "%.*s: %.*s", (int)h->hdrs[i].name_len,
           sw_head_name(h, i), (int)h->hdrs[i].value_len, sw_head_val(h, i));
  {
    char want[256];
    snprintf(want, sizeof(want), "%s: %s", name, value);
    SW_CHECK_STR_EQ_AT(file, line, have, want);
  }
}
#define HEADER_IS(h, i, name, value) \
  header_is_at(__FILE__, __LINE__, h, i, name, value)

static void test_head_direct_spans(void) {
  sw_head_t h;
  char in1[16], in2[16];

  sw_head_init(&h, 1024, 10);
  SW_CHECK_UINT_EQ(h.n, 0);

  /* A name split across two reads, then a value split across two reads:
   * the second span starts its read and the first ended its own. */
  memcpy(in1, "Ho", 2);
  memcpy(in2, "st", 2);
  SW_CHECK_INT_EQ(sw_head_field(&h, in1, 2), 0);
  SW_CHECK_INT_EQ(sw_head_field(&h, in2, 2), 0);
  SW_CHECK_INT_EQ(sw_head_field_done(&h), 0);
  memcpy(in1, "xxexam", 6);
  memcpy(in2, "ple.com\r\n", 9);
  SW_CHECK_INT_EQ(sw_head_value(&h, in1 + 2, 4), 0);
  SW_CHECK_INT_EQ(sw_head_value(&h, in2, 7), 0);
  sw_head_value_done(&h);
  SW_CHECK_UINT_EQ(h.n, 1);
  HEADER_IS(&h, 0, "Host", "example.com");

  /* A span that continues exactly where the last ended is one value. */
  {
    static const char v[] = "abcdef";
    SW_CHECK_INT_EQ(sw_head_field(&h, "X", 1), 0);
    SW_CHECK_INT_EQ(sw_head_field_done(&h), 0);
    SW_CHECK_INT_EQ(sw_head_value(&h, v, 3), 0);
    SW_CHECK_INT_EQ(sw_head_value(&h, v + 3, 3), 0);
    sw_head_value_done(&h);
    HEADER_IS(&h, 1, "X", "abcdef");
  }

  sw_head_free(&h);
}

static void test_head_direct_names(void) {
  sw_head_t h;
  static const char *const bad_names[] = {
      "X A", "X:",  "X\t", "\x01X", "X\x7f", "caf\xc3\xa9", "X\"", "(X)", "X/Y",
      "X@Y", "[X]", "X{",  "X=1",   "X;",    "X,Y",         "X?",  "X\\",
  };
  size_t i;

  /* A name made only of tchar is fine, every tchar at once. */
  sw_head_init(&h, 1024, 10);
  SW_CHECK_INT_EQ(add_header(&h, "!#$%&'*+-.^_`|~09AZaz", "v"), 0);
  HEADER_IS(&h, 0, "!#$%&'*+-.^_`|~09AZaz", "v");
  sw_head_free(&h);

  for (i = 0; i < sizeof(bad_names) / sizeof(bad_names[0]); i++) {
    sw_head_init(&h, 1024, 10);
    if (!SW_CHECK_INT_EQ(sw_head_field(&h, bad_names[i], strlen(bad_names[i])),
                         SW_EPARSE))
      printf("  name: \"%s\"\n", bad_names[i]);
    sw_head_free(&h);
  }

  /* An empty name: before any header, as an empty span, after a complete
   * header, and with the value that follows it. */
  sw_head_init(&h, 1024, 10);
  SW_CHECK_INT_EQ(sw_head_field_done(&h), SW_EPARSE);
  SW_CHECK_INT_EQ(value_read(&h, "v"), SW_EPARSE);
  SW_CHECK_INT_EQ(sw_head_field(&h, "", 0), 0);
  SW_CHECK_INT_EQ(sw_head_field_done(&h), SW_EPARSE);
  sw_head_reset(&h);
  SW_CHECK_INT_EQ(add_header(&h, "A", "1"), 0);
  SW_CHECK_INT_EQ(sw_head_field_done(&h), SW_EPARSE);
  SW_CHECK_INT_EQ(value_read(&h, "v"), SW_EPARSE);
  /* Ending a name twice (no value between) is refused too. */
  sw_head_reset(&h);
  SW_CHECK_INT_EQ(sw_head_field(&h, "A", 1), 0);
  SW_CHECK_INT_EQ(sw_head_field_done(&h), 0);
  SW_CHECK_INT_EQ(value_read(&h, "1"), 0);
  SW_CHECK_INT_EQ(sw_head_field_done(&h), SW_EPARSE);
  sw_head_free(&h);
}

static void test_head_direct_values(void) {
  static const struct {
    const char *in;
    const char *out;
  } trims[] = {
      {"v", "v"},
      {"v ", "v"},
      {"v\t", "v"},
      {"v \t \t", "v"},
      {"a b", "a b"},
      {"a \t b  ", "a \t b"},
      {" ", ""},
      {"\t \t", ""},
      {"caf\xc3\xa9 ", "caf\xc3\xa9"},
      {"\x80\xff", "\x80\xff"},
      {"x\"y\\z", "x\"y\\z"},
  };
  static const char *const bad_values[] = {
      "a\x01", "\x00", "a\rb", "a\nb", "\x1f", "a\x7f", "\x1b[0m",
  };
  sw_head_t h;
  size_t i;

  for (i = 0; i < sizeof(trims) / sizeof(trims[0]); i++) {
    sw_head_init(&h, 1024, 10);
    SW_CHECK_INT_EQ(add_header(&h, "X", trims[i].in), 0);
    HEADER_IS(&h, 0, "X", trims[i].out);
    sw_head_free(&h);
  }

  /* Trimming sees the whole value, not the last span. */
  sw_head_init(&h, 1024, 10);
  {
    static const char v1[] = "a ";
    static const char v2[] = " \t";
    SW_CHECK_INT_EQ(sw_head_field(&h, "X", 1), 0);
    SW_CHECK_INT_EQ(sw_head_field_done(&h), 0);
    SW_CHECK_INT_EQ(sw_head_value(&h, v1, 2), 0);
    SW_CHECK_INT_EQ(sw_head_value(&h, v2, 2), 0);
    sw_head_value_done(&h);
    HEADER_IS(&h, 0, "X", "a");
  }
  /* An empty value, then another header: each keeps its own bytes. */
  SW_CHECK_INT_EQ(add_header(&h, "Empty", ""), 0);
  SW_CHECK_INT_EQ(add_header(&h, "Next", "n"), 0);
  HEADER_IS(&h, 1, "Empty", "");
  HEADER_IS(&h, 2, "Next", "n");
  /* value_done with nothing stored does nothing. */
  sw_head_free(&h);
  sw_head_init(&h, 1024, 10);
  sw_head_value_done(&h);
  SW_CHECK_UINT_EQ(h.n, 0);
  sw_head_free(&h);

  /* Control bytes other than tab are refused, NUL included. */
  for (i = 0; i < sizeof(bad_values) / sizeof(bad_values[0]); i++) {
    const char *v = bad_values[i];
    size_t n = v[0] == '\0' ? 1 : strlen(v);
    sw_head_init(&h, 1024, 10);
    SW_CHECK_INT_EQ(sw_head_field(&h, "X", 1), 0);
    SW_CHECK_INT_EQ(sw_head_field_done(&h), 0);
    if (!SW_CHECK_INT_EQ(sw_head_value(&h, v, n), SW_EPARSE)) {
      printf("  value: \"");
      print_escaped(v, n);
      printf("\"\n");
    }
    sw_head_free(&h);
  }
}

static void test_head_direct_limits(void) {
  sw_head_t h;
  char name[8];
  uint32_t i;
  int ok = 1;

  /* The count: max headers fit, the next name is SW_ELIMIT. */
  sw_head_init(&h, 1024, 3);
  SW_CHECK_INT_EQ(add_header(&h, "A", "1"), 0);
  SW_CHECK_INT_EQ(add_header(&h, "B", "2"), 0);
  SW_CHECK_INT_EQ(add_header(&h, "C", "3"), 0);
  SW_CHECK_INT_EQ(sw_head_field(&h, "D", 1), SW_ELIMIT);
  SW_CHECK_UINT_EQ(h.n, 3);
  HEADER_IS(&h, 2, "C", "3");
  sw_head_free(&h);

  sw_head_init(&h, 1024, 0);
  SW_CHECK_INT_EQ(sw_head_field(&h, "A", 1), SW_ELIMIT);
  SW_CHECK_UINT_EQ(h.n, 0);
  sw_head_free(&h);

  /* Past the first allocation of the index, up to a limit that is not a
   * power of two; every header survives the reallocations. */
  sw_head_init(&h, 4096, 37);
  for (i = 0; i < 37 && ok; i++) {
    snprintf(name, sizeof(name), "H%u", i);
    ok = add_header(&h, name, name) == 0;
  }
  SW_CHECK(ok);
  SW_CHECK_UINT_EQ(h.n, 37);
  SW_CHECK(h.cap <= 37);
  SW_CHECK_INT_EQ(sw_head_field(&h, "X", 1), SW_ELIMIT);
  for (i = 0; i < 37; i++) {
    snprintf(name, sizeof(name), "H%u", i);
    HEADER_IS(&h, i, name, name);
  }
  sw_head_free(&h);

  /* The bytes: names and values count; exactly max fits. "Ab" + "cd" +
   * "E" + "fgh" = 8 bytes. */
  sw_head_init(&h, 8, 10);
  SW_CHECK_INT_EQ(add_header(&h, "Ab", "cd"), 0);
  SW_CHECK_INT_EQ(add_header(&h, "E", "fgh"), 0);
  SW_CHECK_UINT_EQ(h.raw.len, 8);
  SW_CHECK_INT_EQ(sw_head_field(&h, "F", 1), SW_ELIMIT);
  SW_CHECK_UINT_EQ(h.raw.len, 8);
  HEADER_IS(&h, 0, "Ab", "cd");
  HEADER_IS(&h, 1, "E", "fgh");
  sw_head_free(&h);

  /* ...and one byte over, in a value, stores none of it. */
  sw_head_init(&h, 8, 10);
  SW_CHECK_INT_EQ(add_header(&h, "Ab", "cd"), 0);
  SW_CHECK_INT_EQ(sw_head_field(&h, "E", 1), 0);
  SW_CHECK_INT_EQ(sw_head_field_done(&h), 0);
  SW_CHECK_INT_EQ(value_read(&h, "fghi"), SW_ELIMIT);
  SW_CHECK_UINT_EQ(h.raw.len, 5);
  SW_CHECK_UINT_EQ(h.hdrs[1].value_len, 0);
  HEADER_IS(&h, 0, "Ab", "cd");
  sw_head_free(&h);

  /* ...and in a name. */
  sw_head_init(&h, 3, 10);
  SW_CHECK_INT_EQ(sw_head_field(&h, "Abcd", 4), SW_ELIMIT);
  SW_CHECK_UINT_EQ(h.raw.len, 0);
  sw_head_free(&h);
}

static void test_head_reset_free(void) {
  sw_head_t h;

  sw_head_init(&h, 1024, 10);
  SW_CHECK_INT_EQ(add_header(&h, "A", "1"), 0);
  SW_CHECK_INT_EQ(sw_head_field(&h, "B", 1), 0);
  sw_head_reset(&h);
  SW_CHECK_UINT_EQ(h.n, 0);
  SW_CHECK_UINT_EQ(h.raw.len, 0);
  /* A reset head starts afresh: no header to put a value in. */
  SW_CHECK_INT_EQ(value_read(&h, "v"), SW_EPARSE);
  SW_CHECK_INT_EQ(add_header(&h, "C", "3"), 0);
  SW_CHECK_UINT_EQ(h.n, 1);
  HEADER_IS(&h, 0, "C", "3");

  sw_head_free(&h);
  SW_CHECK(h.hdrs == NULL);
  SW_CHECK(h.raw.data == NULL);
  SW_CHECK_UINT_EQ(h.n, 0);
  SW_CHECK_UINT_EQ(h.cap, 0);
  /* Freeing twice is harmless. */
  sw_head_free(&h);
  SW_CHECK(h.hdrs == NULL);
}

/* ---- Token and name helpers ------------------------------------------ */

static void test_ieq_iprefix(void) {
  SW_CHECK(sw_http_ieq("Connection", 10, "connection"));
  SW_CHECK(sw_http_ieq("CONNECTION", 10, "connection"));
  SW_CHECK(sw_http_ieq("connection", 10, "connection"));
  SW_CHECK(!sw_http_ieq("Connectio", 9, "connection"));
  SW_CHECK(!sw_http_ieq("Connections", 11, "connection"));
  SW_CHECK(!sw_http_ieq("Connectiom", 10, "connection"));
  /* Only len bytes count. */
  SW_CHECK(sw_http_ieq("TE-extra", 2, "te"));
  SW_CHECK(!sw_http_ieq("TE-extra", 3, "te"));
  SW_CHECK(sw_http_ieq("", 0, ""));
  SW_CHECK(!sw_http_ieq("x", 0, "x"));
  SW_CHECK(!sw_http_ieq("x", 1, ""));
  /* Case folding is ASCII letters only: '[' is not '{'. */
  SW_CHECK(!sw_http_ieq("[", 1, "{"));
  SW_CHECK(!sw_http_ieq("\xc3\x89", 2, "\xc3\xa9"));
  SW_CHECK(sw_http_ieq("X-A_1", 5, "x-a_1"));

  SW_CHECK(sw_http_iprefix("Upgrade, close", 14, "upgrade"));
  SW_CHECK(sw_http_iprefix("UPGRADE", 7, "upgrade"));
  SW_CHECK(!sw_http_iprefix("UPGRAD", 6, "upgrade"));
  SW_CHECK(!sw_http_iprefix("Upgrade", 6, "upgrade"));
  SW_CHECK(sw_http_iprefix("anything", 8, ""));
  SW_CHECK(sw_http_iprefix("", 0, ""));
  SW_CHECK(!sw_http_iprefix("bytes=0-", 8, "bytes=1"));
}

static void test_list_has(void) {
  static const char l1[] = "keep-alive, Upgrade";
  static const char l2[] = " ,\t, upgrade \t,";
  static const char l3[] = "close,TE , x-hop";

  SW_CHECK(sw_http_list_has(l1, strlen(l1), "keep-alive"));
  SW_CHECK(sw_http_list_has(l1, strlen(l1), "upgrade"));
  SW_CHECK(!sw_http_list_has(l1, strlen(l1), "close"));
  SW_CHECK(sw_http_list_has(l2, strlen(l2), "upgrade"));
  SW_CHECK(sw_http_list_has(l3, strlen(l3), "close"));
  SW_CHECK(sw_http_list_has(l3, strlen(l3), "te"));
  SW_CHECK(sw_http_list_has(l3, strlen(l3), "x-hop"));
  /* Whole tokens only. */
  SW_CHECK(!sw_http_list_has(l1, strlen(l1), "keep"));
  SW_CHECK(!sw_http_list_has(l1, strlen(l1), "alive"));
  SW_CHECK(!sw_http_list_has(l1, strlen(l1), "upgrades"));
  SW_CHECK(!sw_http_list_has("chunked gzip", 12, "chunked"));
  SW_CHECK(!sw_http_list_has("gzip, chunkedx", 14, "chunked"));
  SW_CHECK(sw_http_list_has("gzip,chunked", 12, "chunked"));
  /* Only len bytes count. */
  SW_CHECK(!sw_http_list_has(l1, 10, "upgrade"));
  SW_CHECK(sw_http_list_has(l1, 10, "keep-alive"));
  SW_CHECK(!sw_http_list_has(l1, 9, "keep-alive"));
  /* Empty lists and empty elements. */
  SW_CHECK(!sw_http_list_has("", 0, "close"));
  SW_CHECK(!sw_http_list_has(" , ,, ", 6, "close"));
  SW_CHECK(!sw_http_list_has(",,", 2, ""));
}

static void test_is_hop(void) {
  static const char *const hop[] = {
      "Connection", "keep-alive",        "PROXY-CONNECTION", "TE",
      "Trailer",    "Transfer-Encoding", "upgrade",
  };
  static const char *const not_hop[] = {
      "Host",
      "Content-Length",
      "Trailers",
      "Upgrade-Insecure",
      "Keep-Alive2",
      "TEE",
      "T",
      "",
      "X-Connection",
      "Transfer-Encodin",
      "Proxy-Authorization",
  };
  size_t i;

  for (i = 0; i < sizeof(hop) / sizeof(hop[0]); i++)
    if (!SW_CHECK(sw_http_is_hop(hop[i], strlen(hop[i]))))
      printf("  name: %s\n", hop[i]);
  for (i = 0; i < sizeof(not_hop) / sizeof(not_hop[0]); i++)
    if (!SW_CHECK(!sw_http_is_hop(not_hop[i], strlen(not_hop[i]))))
      printf("  name: %s\n", not_hop[i]);
  /* Only len bytes count. */
  SW_CHECK(sw_http_is_hop("TE: trailers", 2));
  SW_CHECK(!sw_http_is_hop("Upgrade", 6));
}

/* A head with two Connection headers and a duplicate. */
static void build_conn_head(sw_head_t *h) {
  sw_head_init(h, 4096, 20);
  SW_CHECK_INT_EQ(add_header(h, "Host", "example.com"), 0);
  SW_CHECK_INT_EQ(add_header(h, "Connection", "keep-alive, X-Hop"), 0);
  SW_CHECK_INT_EQ(add_header(h, "X-Hop", "1"), 0);
  SW_CHECK_INT_EQ(add_header(h, "connection", "Upgrade ,close"), 0);
  SW_CHECK_INT_EQ(add_header(h, "Accept", "*/*"), 0);
  SW_CHECK_INT_EQ(add_header(h, "ACCEPT", "text/html"), 0);
  SW_CHECK_INT_EQ(add_header(h, "accept", "x/y"), 0);
}

static void test_connection_lists(void) {
  sw_head_t h;
  char name[200];

  build_conn_head(&h);
  SW_CHECK(sw_http_connection_lists(&h, "X-Hop", 5));
  SW_CHECK(sw_http_connection_lists(&h, "x-hop", 5));
  SW_CHECK(sw_http_connection_lists(&h, "keep-alive", 10));
  SW_CHECK(sw_http_connection_lists(&h, "Upgrade", 7));
  SW_CHECK(sw_http_connection_lists(&h, "CLOSE", 5));
  SW_CHECK(!sw_http_connection_lists(&h, "Host", 4));
  SW_CHECK(!sw_http_connection_lists(&h, "X-Ho", 4));
  SW_CHECK(!sw_http_connection_lists(&h, "Connection", 10));
  sw_head_free(&h);

  /* No Connection header lists nothing. */
  sw_head_init(&h, 1024, 10);
  SW_CHECK_INT_EQ(add_header(&h, "X-Hop", "1"), 0);
  SW_CHECK(!sw_http_connection_lists(&h, "X-Hop", 5));
  sw_head_free(&h);

  /* A long listed name (127 bytes). */
  memset(name, 'n', sizeof(name));
  name[0] = 'X';
  name[127] = '\0';
  sw_head_init(&h, 4096, 10);
  SW_CHECK_INT_EQ(add_header(&h, "Connection", name), 0);
  SW_CHECK(sw_http_connection_lists(&h, name, 127));
  sw_head_free(&h);
}

/* The precomputed form must agree with sw_http_connection_lists for every
 * name that is not already hop-by-hop, with and without overflow. */
static void test_conn_tokens(void) {
  static const char *const names[] = {
      "X-Hop",  "x-hop", "X-HOP", "Host", "Accept", "X-Ho",
      "X-Hop2", "T1",    "t8",    "T9",   "t10",    "Other",
  };
  sw_conn_tokens_t t;
  sw_head_t h;
  size_t i;

  build_conn_head(&h);
  sw_http_conn_tokens(&h, &t);
  SW_CHECK(!t.overflow);
  SW_CHECK_UINT_EQ(t.n, 1);
  for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
    size_t n = strlen(names[i]);
    if (!SW_CHECK_INT_EQ(sw_http_conn_listed(&h, &t, names[i], n),
                         sw_http_connection_lists(&h, names[i], n)))
      printf("  name: %s\n", names[i]);
  }
  sw_head_free(&h);

  /* More tokens than the table holds. */
  sw_head_init(&h, 4096, 20);
  SW_CHECK_INT_EQ(
      add_header(&h, "Connection", "t1, t2, t3, t4, t5, t6, t7, t8, T9, t10"),
      0);
  SW_CHECK_INT_EQ(add_header(&h, "Connection", "x-hop"), 0);
  sw_http_conn_tokens(&h, &t);
  SW_CHECK(t.overflow);
  for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
    size_t n = strlen(names[i]);
    if (!SW_CHECK_INT_EQ(sw_http_conn_listed(&h, &t, names[i], n),
                         sw_http_connection_lists(&h, names[i], n)))
      printf("  name: %s\n", names[i]);
  }
  SW_CHECK(sw_http_conn_listed(&h, &t, "T10", 3));
  SW_CHECK(sw_http_conn_listed(&h, &t, "x-hop", 5));
  sw_head_free(&h);
}

static void test_find(void) {
  sw_head_t h;
  int count = -1;

  build_conn_head(&h);
  SW_CHECK_INT_EQ(sw_http_find(&h, "host", &count), 0);
  SW_CHECK_INT_EQ(count, 1);
  SW_CHECK_INT_EQ(sw_http_find(&h, "accept", &count), 4);
  SW_CHECK_INT_EQ(count, 3);
  SW_CHECK_INT_EQ(sw_http_find(&h, "connection", &count), 1);
  SW_CHECK_INT_EQ(count, 2);
  SW_CHECK_INT_EQ(sw_http_find(&h, "content-length", &count), -1);
  SW_CHECK_INT_EQ(count, 0);
  SW_CHECK_INT_EQ(sw_http_find(&h, "x-h", &count), -1);
  SW_CHECK_INT_EQ(count, 0);
  /* The count is optional. */
  SW_CHECK_INT_EQ(sw_http_find(&h, "x-hop", NULL), 2);
  sw_head_free(&h);

  sw_head_init(&h, 16, 4);
  SW_CHECK_INT_EQ(sw_http_find(&h, "host", &count), -1);
  SW_CHECK_INT_EQ(count, 0);
  sw_head_free(&h);
}

/* ---- sw_http_scan_head ----------------------------------------------- */

/* Scans req in one read and in two and three reads cut everywhere; every
 * way must give want_rc, and done == want_done when it succeeds. */
static void scan_at(
    const char *file, int line, const char *req, int want_rc, int want_done) {
  size_t len = strlen(req), a, b, bad = 0, total = 0;

  for (a = 0; a <= len; a++) {
    for (b = a; b <= len; b++) {
      sw_headscan_t st;
      int rc;

      memset(&st, 0, sizeof(st));
      rc = sw_http_scan_head(&st, req, a);
      if (rc == 0)
        rc = sw_http_scan_head(&st, req + a, b - a);
      if (rc == 0)
        rc = sw_http_scan_head(&st, req + b, len - b);
      total++;
      if (rc != want_rc || (rc == 0 && st.done != want_done)) {
        if (bad++ < 3) {
          size_t cuts[2] = {a, b};
          printf("  result %d done %d, want %d done %d\n", rc, st.done, want_rc,
                 want_done);
          print_reads(req, len, cuts, 2);
        }
      }
    }
  }
  if (!SW_CHECK_UINT_EQ_AT(file, line, bad, 0)) {
    printf("  %zu of %zu scans differ, for \"", bad, total);
    print_escaped(req, len);
    printf("\"\n");
  }
}
#define SCAN(req, rc, done) scan_at(__FILE__, __LINE__, req, rc, done)

static void test_scan_head(void) {
  SCAN("GET / HTTP/1.1\r\nHost: x\r\n\r\n", 0, 1);
  SCAN("GET / HTTP/1.1\r\n\r\n", 0, 1);
  /* Empty lines before the request line are skipped, not the end. */
  SCAN("\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n", 0, 1);
  SCAN("\r\n\r\n\r\n", 0, 0);
  /* An incomplete head is fine so far. */
  SCAN("GET / HTTP/1.1\r\nHost: x\r\n", 0, 0);
  SCAN("GET / HTTP/1.1\r\nHost: x\r", 0, 0);
  SCAN("", 0, 0);
  /* After the head, bare LFs are body bytes (or the next request's). */
  SCAN("POST / HTTP/1.1\r\nContent-Length: 9\r\n\r\nab\ncd\n\nx", 0, 1);
  SCAN("GET / HTTP/1.1\r\n\r\n\n", 0, 1);
  SCAN("GET / HTTP/1.1\r\n\r\nGET / HTTP/1.1\nHost: y\n\n", 0, 1);

  /* A bare LF anywhere in the head. */
  SCAN("GET / HTTP/1.1\nHost: x\n\n", SW_EPARSE, 0);
  SCAN("GET / HTTP/1.1\r\nHost: x\nX-A: 1\r\n\r\n", SW_EPARSE, 0);
  SCAN("GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n\n", SW_EPARSE, 0);
  SCAN("GET / HTTP/1.1\r\nHost: x\r\n\n", SW_EPARSE, 0);
  SCAN("\nGET / HTTP/1.1\r\n\r\n", SW_EPARSE, 0);
  SCAN("\r\n\nGET / HTTP/1.1\r\n\r\n", SW_EPARSE, 0);
  SCAN("GET / HTTP/1.1\r\nX: a\n\r\n\r\n", SW_EPARSE, 0);

  /* The state carries across calls: a CR ending one read pairs with a LF
   * starting the next, and a read after the end is ignored. */
  {
    sw_headscan_t st;
    memset(&st, 0, sizeof(st));
    SW_CHECK_INT_EQ(sw_http_scan_head(&st, "GET / HTTP/1.1\r", 15), 0);
    SW_CHECK_INT_EQ(sw_http_scan_head(&st, "\n", 1), 0);
    SW_CHECK_INT_EQ(sw_http_scan_head(&st, "\r\n", 2), 0);
    SW_CHECK_INT_EQ(st.done, 1);
    SW_CHECK_INT_EQ(sw_http_scan_head(&st, "\n\n\n", 3), 0);
    memset(&st, 0, sizeof(st));
    SW_CHECK_INT_EQ(sw_http_scan_head(&st, "GET / HTTP/1.1", 14), 0);
    SW_CHECK_INT_EQ(sw_http_scan_head(&st, "\n", 1), SW_EPARSE);
  }
}

/* ---- Reasons and methods --------------------------------------------- */

static void test_reason(void) {
  static const struct {
    int status;
    const char *reason;
  } cases[] = {
      {100, "Continue"},
      {101, "Switching Protocols"},
      {200, "OK"},
      {204, "No Content"},
      {304, "Not Modified"},
      {400, "Bad Request"},
      {404, "Not Found"},
      {408, "Request Timeout"},
      {411, "Length Required"},
      {413, "Content Too Large"},
      {414, "URI Too Long"},
      {417, "Expectation Failed"},
      {431, "Request Header Fields Too Large"},
      {500, "Internal Server Error"},
      {501, "Not Implemented"},
      {502, "Bad Gateway"},
      {503, "Service Unavailable"},
      {504, "Gateway Timeout"},
      {505, "HTTP Version Not Supported"},
      {0, "Unknown"},
      {-1, "Unknown"},
      {299, "Unknown"},
      {999, "Unknown"},
  };
  size_t i;

  for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
    if (!SW_CHECK_STR_EQ(sw_http_reason(cases[i].status), cases[i].reason))
      printf("  status: %d\n", cases[i].status);
}

static void test_idempotent(void) {
  static const char *const yes[] = {"GET",    "HEAD",    "PUT",
                                    "DELETE", "OPTIONS", "TRACE"};
  static const char *const no[] = {"POST", "PATCH", "CONNECT", "get",
                                   "GETS", "GE",    "",        "PROPFIND"};
  size_t i;

  for (i = 0; i < sizeof(yes) / sizeof(yes[0]); i++)
    if (!SW_CHECK(sw_http_idempotent(yes[i])))
      printf("  method: %s\n", yes[i]);
  for (i = 0; i < sizeof(no) / sizeof(no[0]); i++)
    if (!SW_CHECK(!sw_http_idempotent(no[i])))
      printf("  method: %s\n", no[i]);
}

SW_TEST_MAIN(SW_TASK(test_head_llhttp_splits),
             SW_TASK(test_head_llhttp_limits),
             SW_TASK(test_head_llhttp_many),
             SW_TASK(test_head_llhttp_bad_names),
             SW_TASK(test_head_fold_splits),
             SW_TASK(test_head_fold_reused_read_buffer),
             SW_TASK(test_head_fold_after_empty_value),
             SW_TASK(test_head_direct_spans),
             SW_TASK(test_head_direct_names),
             SW_TASK(test_head_direct_values),
             SW_TASK(test_head_direct_limits),
             SW_TASK(test_head_reset_free),
             SW_TASK(test_ieq_iprefix),
             SW_TASK(test_list_has),
             SW_TASK(test_is_hop),
             SW_TASK(test_connection_lists),
             SW_TASK(test_conn_tokens),
             SW_TASK(test_find),
             SW_TASK(test_scan_head),
             SW_TASK(test_reason),
             SW_TASK(test_idempotent))
