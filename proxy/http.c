/* HTTP helpers without I/O: header storage filled by llhttp callbacks,
 * token-list and hop-by-hop tests, reason phrases. Everything that decides
 * what a header means lives here so that client and upstream agree. */
#include "sw_http.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <uv.h>

#include "sw_types.h"

/* RFC 9110 tchar: the only bytes allowed in a header name. */
static const unsigned char tchar[256] = {
    ['!'] = 1, ['#'] = 1, ['$'] = 1, ['%'] = 1, ['&'] = 1, ['\''] = 1,
    ['*'] = 1, ['+'] = 1, ['-'] = 1, ['.'] = 1, ['^'] = 1, ['_'] = 1,
    ['`'] = 1, ['|'] = 1, ['~'] = 1, ['0'] = 1, ['1'] = 1, ['2'] = 1,
    ['3'] = 1, ['4'] = 1, ['5'] = 1, ['6'] = 1, ['7'] = 1, ['8'] = 1,
    ['9'] = 1, ['A'] = 1, ['B'] = 1, ['C'] = 1, ['D'] = 1, ['E'] = 1,
    ['F'] = 1, ['G'] = 1, ['H'] = 1, ['I'] = 1, ['J'] = 1, ['K'] = 1,
    ['L'] = 1, ['M'] = 1, ['N'] = 1, ['O'] = 1, ['P'] = 1, ['Q'] = 1,
    ['R'] = 1, ['S'] = 1, ['T'] = 1, ['U'] = 1, ['V'] = 1, ['W'] = 1,
    ['X'] = 1, ['Y'] = 1, ['Z'] = 1, ['a'] = 1, ['b'] = 1, ['c'] = 1,
    ['d'] = 1, ['e'] = 1, ['f'] = 1, ['g'] = 1, ['h'] = 1, ['i'] = 1,
    ['j'] = 1, ['k'] = 1, ['l'] = 1, ['m'] = 1, ['n'] = 1, ['o'] = 1,
    ['p'] = 1, ['q'] = 1, ['r'] = 1, ['s'] = 1, ['t'] = 1, ['u'] = 1,
    ['v'] = 1, ['w'] = 1, ['x'] = 1, ['y'] = 1, ['z'] = 1,
};

void sw_head_init(sw_head_t *h, size_t max_bytes, uint32_t max_headers) {
  sw_buf_init(&h->raw, max_bytes);
  h->hdrs = NULL;
  h->n = 0;
  h->cap = 0;
  h->max = max_headers;
  h->in_value = 0;
  h->value_end = NULL;
}

void sw_head_reset(sw_head_t *h) {
  sw_buf_reset(&h->raw);
  h->n = 0;
  h->in_value = 0;
  h->value_end = NULL;
}

void sw_head_free(sw_head_t *h) {
  sw_buf_free(&h->raw);
  free(h->hdrs);
  h->hdrs = NULL;
  h->n = 0;
  h->cap = 0;
}

int sw_head_field(sw_head_t *h, const char *at, size_t len) {
  int err;

  for (size_t i = 0; i < len; i++)
    if (!tchar[(unsigned char)at[i]])
      return SW_EPARSE;
  if (h->n == 0 || h->in_value) {
    if (h->n == h->max)
      return SW_ELIMIT;
    if (h->n == h->cap) {
      uint32_t cap = h->cap == 0 ? 16 : h->cap * 2;
      sw_hdr_t *p;
      if (cap > h->max)
        cap = h->max;
      p = realloc(h->hdrs, cap * sizeof(*p));
      if (p == NULL)
        return UV_ENOMEM;
      h->hdrs = p;
      h->cap = cap;
    }
    h->hdrs[h->n].name_off = (uint32_t)h->raw.len;
    h->hdrs[h->n].name_len = 0;
    h->hdrs[h->n].value_off = (uint32_t)h->raw.len;
    h->hdrs[h->n].value_len = 0;
    h->n++;
    h->in_value = 0;
    h->value_end = NULL;
  }
  err = sw_buf_append(&h->raw, at, len);
  if (err != 0)
    return err;
  h->hdrs[h->n - 1].name_len += (uint32_t)len;
  h->hdrs[h->n - 1].value_off = (uint32_t)h->raw.len;
  return 0;
}

int sw_head_value(sw_head_t *h, const char *at, size_t len) {
  int err;

  /* A value with no name before it: an empty header name. Folded lines
   * are caught on the raw bytes by sw_http_scan_head. */
  if (h->n == 0 || (h->in_value && h->value_end == NULL))
    return SW_EPARSE;
  for (size_t i = 0; i < len; i++) {
    unsigned char ch = (unsigned char)at[i];
    if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
      return SW_EPARSE;
  }
  if (!h->in_value) {
    h->in_value = 1;
    h->hdrs[h->n - 1].value_off = (uint32_t)h->raw.len;
  }
  err = sw_buf_append(&h->raw, at, len);
  if (err != 0)
    return err;
  h->hdrs[h->n - 1].value_len += (uint32_t)len;
  h->value_end = at + len;
  return 0;
}

int sw_head_field_done(sw_head_t *h) {
  if (h->n == 0 || h->in_value || h->hdrs[h->n - 1].name_len == 0)
    return SW_EPARSE;
  return 0;
}

void sw_head_value_done(sw_head_t *h) {
  sw_hdr_t *hd;
  if (h->n == 0)
    return;
  hd = &h->hdrs[h->n - 1];
  while (hd->value_len > 0) {
    char ch = h->raw.data[hd->value_off + hd->value_len - 1];
    if (ch != ' ' && ch != '\t')
      break;
    hd->value_len--;
  }
  /* An empty value still ends the header: the next name starts anew. */
  h->in_value = 1;
  h->value_end = NULL;
}

int sw_http_ieq(const char *s, size_t len, const char *lit) {
  for (size_t i = 0; i < len; i++) {
    unsigned char a = (unsigned char)s[i], b = (unsigned char)lit[i];
    if (b == 0)
      return 0;
    if (a >= 'A' && a <= 'Z')
      a |= 0x20;
    if (a != b)
      return 0;
  }
  return lit[len] == 0;
}

int sw_http_iprefix(const char *s, size_t len, const char *lit) {
  size_t n = strlen(lit);
  return len >= n && strncasecmp(s, lit, n) == 0;
}

int sw_http_list_has(const char *list, size_t len, const char *token) {
  size_t i = 0;
  while (i < len) {
    size_t start, end;
    while (i < len && (list[i] == ' ' || list[i] == '\t' || list[i] == ','))
      i++;
    start = i;
    while (i < len && list[i] != ',')
      i++;
    end = i;
    while (end > start && (list[end - 1] == ' ' || list[end - 1] == '\t'))
      end--;
    if (end > start && sw_http_ieq(list + start, end - start, token))
      return 1;
  }
  return 0;
}

int sw_http_is_hop(const char *name, size_t len) {
  /* Dispatch on length first: this runs for every header of every
   * message, and most names are not hop-by-hop. */
  switch (len) {
    case 2:
      return sw_http_ieq(name, len, "te");
    case 7:
      return sw_http_ieq(name, len, "trailer") ||
             sw_http_ieq(name, len, "upgrade");
    case 10:
      return sw_http_ieq(name, len, "connection") ||
             sw_http_ieq(name, len, "keep-alive");
    case 16:
      return sw_http_ieq(name, len, "proxy-connection");
    case 17:
      return sw_http_ieq(name, len, "transfer-encoding");
    default:
      return 0;
  }
}

int sw_http_connection_lists(const sw_head_t *h, const char *name, size_t len) {
  char tok[128];
  if (len >= sizeof(tok))
    return 0;
  for (size_t i = 0; i < len; i++)
    tok[i] =
        (char)(name[i] >= 'A' && name[i] <= 'Z' ? name[i] | 0x20 : name[i]);
  tok[len] = '\0';
  for (uint32_t i = 0; i < h->n; i++) {
    if (sw_http_ieq(sw_head_name(h, i), h->hdrs[i].name_len, "connection") &&
        sw_http_list_has(sw_head_val(h, i), h->hdrs[i].value_len, tok))
      return 1;
  }
  return 0;
}

void sw_http_conn_tokens(const sw_head_t *h, sw_conn_tokens_t *out) {
  out->n = 0;
  out->overflow = 0;
  for (uint32_t i = 0; i < h->n; i++) {
    const char *v;
    uint32_t len, k = 0;
    if (!sw_http_ieq(sw_head_name(h, i), h->hdrs[i].name_len, "connection"))
      continue;
    v = sw_head_val(h, i);
    len = h->hdrs[i].value_len;
    while (k < len) {
      uint32_t start, end;
      while (k < len && (v[k] == ' ' || v[k] == '\t' || v[k] == ','))
        k++;
      start = k;
      while (k < len && v[k] != ',')
        k++;
      end = k;
      while (end > start && (v[end - 1] == ' ' || v[end - 1] == '\t'))
        end--;
      if (end == start || sw_http_is_hop(v + start, end - start) ||
          sw_http_ieq(v + start, end - start, "close"))
        continue;
      if (out->n == SW_CONN_TOKENS) {
        out->overflow = 1;
        return;
      }
      out->t[out->n].off = h->hdrs[i].value_off + start;
      out->t[out->n].len = end - start;
      out->n++;
    }
  }
}

int sw_http_conn_listed(const sw_head_t *h,
                        const sw_conn_tokens_t *t,
                        const char *name,
                        size_t len) {
  if (t->overflow)
    return sw_http_connection_lists(h, name, len);
  for (uint32_t i = 0; i < t->n; i++)
    if (t->t[i].len == len &&
        strncasecmp(h->raw.data + t->t[i].off, name, len) == 0)
      return 1;
  return 0;
}

int sw_http_find(const sw_head_t *h, const char *name, int *count) {
  int first = -1, n = 0;
  for (uint32_t i = 0; i < h->n; i++) {
    if (sw_http_ieq(sw_head_name(h, i), h->hdrs[i].name_len, name)) {
      if (first < 0)
        first = (int)i;
      n++;
    }
  }
  if (count != NULL)
    *count = n;
  return first;
}

int sw_http_scan_head(sw_headscan_t *st, const char *p, size_t len) {
  for (size_t i = 0; i < len && !st->done; i++) {
    uint8_t b = (uint8_t)p[i];
    if ((b == ' ' || b == '\t') && st->prev == '\n' && st->text) {
      /* A line starting with whitespace: an obs-fold (RFC 9112 5.2). */
      return SW_EPARSE;
    }
    if (b == '\n') {
      if (st->prev != '\r')
        return SW_EPARSE;
      /* Empty lines before the request line are allowed and skipped. */
      if (st->text && ++st->nl == 2)
        st->done = 1;
    } else if (b != '\r') {
      st->nl = 0;
      st->text = 1;
    }
    st->prev = b;
  }
  return 0;
}

const char *sw_http_reason(int status) {
  switch (status) {
    case 100:
      return "Continue";
    case 101:
      return "Switching Protocols";
    case 200:
      return "OK";
    case 201:
      return "Created";
    case 202:
      return "Accepted";
    case 204:
      return "No Content";
    case 206:
      return "Partial Content";
    case 301:
      return "Moved Permanently";
    case 302:
      return "Found";
    case 303:
      return "See Other";
    case 304:
      return "Not Modified";
    case 307:
      return "Temporary Redirect";
    case 308:
      return "Permanent Redirect";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 409:
      return "Conflict";
    case 411:
      return "Length Required";
    case 413:
      return "Content Too Large";
    case 414:
      return "URI Too Long";
    case 417:
      return "Expectation Failed";
    case 429:
      return "Too Many Requests";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 501:
      return "Not Implemented";
    case 502:
      return "Bad Gateway";
    case 503:
      return "Service Unavailable";
    case 504:
      return "Gateway Timeout";
    case 505:
      return "HTTP Version Not Supported";
    default:
      return "Unknown";
  }
}

int sw_http_idempotent(const char *method) {
  static const char *const ok[] = {"GET",     "HEAD",  "PUT", "DELETE",
                                   "OPTIONS", "TRACE", NULL};
  for (int i = 0; ok[i] != NULL; i++)
    if (strcmp(method, ok[i]) == 0)
      return 1;
  return 0;
}
