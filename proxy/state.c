/* The state file: serialise with jansson, write atomically, parse strictly.
 * Owns nothing but the file; what the state means is the switch module's
 * business. */
#include "sw_state.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <libgen.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SW_STATE_FORMAT 1

static int write_all(int fd, const char *p, size_t len) {
  while (len > 0) {
    ssize_t n = write(fd, p, len);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      return -errno;
    }
    p += n;
    len -= (size_t)n;
  }
  return 0;
}

static const char *const fired_names[] = {"none", "fire", "alert", NULL};
static const char *const rule_names[] = {"none", "r1", "r2", "r3", "r4", NULL};

static json_t *watch_to_json(const sw_state_watch_t *w) {
  return json_pack(
      "{s:s, s:I, s:I, s:I, s:b, s:I, s:I, s:I, s:I, s:I, s:s, s:s, s:I, "
      "s:s}",
      "colour", w->colour == SW_GREEN ? "green" : "blue", "flip_time_ms",
      (json_int_t)w->flip_time_ms, "auto_window_ms",
      (json_int_t)w->auto_window_ms, "manual_window_ms",
      (json_int_t)w->manual_window_ms, "ended", w->ended, "ended_time_ms",
      (json_int_t)w->ended_time_ms, "requests", (json_int_t)w->requests,
      "errors", (json_int_t)w->errors, "baseline_requests",
      (json_int_t)w->baseline_requests, "baseline_errors",
      (json_int_t)w->baseline_errors, "fired", w->fired, "rule", w->rule,
      "fired_time_ms", (json_int_t)w->fired_time_ms, "text", w->text);
}

static json_t *to_json(const sw_state_t *s) {
  json_t *hist = json_array();
  json_t *root;

  if (hist == NULL)
    return NULL;
  for (size_t i = 0; i < s->nhistory; i++) {
    const sw_state_event_t *e = &s->history[i];
    json_t *o =
        json_pack("{s:I, s:s, s:s, s:s}", "time_ms", (json_int_t)e->time_ms,
                  "from", e->from, "to", e->to, "reason", e->reason);
    if (o == NULL || json_array_append_new(hist, o) != 0) {
      json_decref(hist);
      return NULL;
    }
  }
  root = json_pack("{s:i, s:s, s:s, s:I, s:I, s:o}", "format", SW_STATE_FORMAT,
                   "live", s->live == SW_GREEN ? "green" : "blue", "phase",
                   s->phase, "flip_time_ms", (json_int_t)s->flip_time_ms,
                   "version", (json_int_t)s->version, "history", hist);
  /* No "watch" key at all when there is no watch, so that the file reads
   * the same as one written before watches were kept. */
  if (root != NULL && s->watch.present) {
    json_t *w = watch_to_json(&s->watch);
    if (w == NULL || json_object_set_new(root, "watch", w) != 0) {
      json_decref(root);
      return NULL;
    }
  }
  return root;
}

int sw_state_save(const char *path,
                  const sw_state_t *s,
                  char *err,
                  size_t errlen) {
  char tmp[4096], dir[4096];
  json_t *root = to_json(s);
  char *text;
  int fd, rc;

  if (root == NULL) {
    snprintf(err, errlen, "%s: out of memory", path);
    return -ENOMEM;
  }
  text = json_dumps(root, JSON_INDENT(2) | JSON_SORT_KEYS);
  json_decref(root);
  if (text == NULL) {
    snprintf(err, errlen, "%s: out of memory", path);
    return -ENOMEM;
  }
  if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= sizeof(tmp)) {
    free(text);
    snprintf(err, errlen, "%s: path too long", path);
    return -ENAMETOOLONG;
  }
  fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) {
    rc = -errno;
    free(text);
    snprintf(err, errlen, "%s: %s", tmp, strerror(-rc));
    return rc;
  }
  rc = write_all(fd, text, strlen(text));
  if (rc == 0)
    rc = write_all(fd, "\n", 1);
  free(text);
  /* The data must be on disk before the rename makes it the state. */
  if (rc == 0 && fsync(fd) != 0)
    rc = -errno;
  if (close(fd) != 0 && rc == 0)
    rc = -errno;
  if (rc == 0 && rename(tmp, path) != 0)
    rc = -errno;
  if (rc != 0) {
    unlink(tmp);
    snprintf(err, errlen, "%s: %s", path, strerror(-rc));
    return rc;
  }
  /* And the rename itself must survive a crash. */
  snprintf(dir, sizeof(dir), "%s", path);
  fd = open(dirname(dir), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) {
    if (fsync(fd) != 0)
      rc = -errno;
    close(fd);
  }
  if (rc != 0)
    snprintf(err, errlen, "%s: fsync of its directory: %s", path,
             strerror(-rc));
  return rc;
}

static int bad(const char *path, char *err, size_t errlen, const char *what) {
  snprintf(err, errlen, "%s: corrupt state file: %s", path, what);
  return SW_ECONFIG;
}

static int copy_text(char *dst, size_t cap, json_t *v) {
  const char *s = json_string_value(v);
  if (s == NULL || strlen(s) >= cap)
    return -1;
  memcpy(dst, s, strlen(s) + 1);
  return 0;
}

static int bad_watch(const char *path,
                     char *err,
                     size_t errlen,
                     const char *key,
                     const char *what) {
  snprintf(err, errlen, "%s: corrupt state file: watch.%s %s", path, key, what);
  return SW_ECONFIG;
}

/* Every key of "watch" is required: a watch resumed with a guessed field
 * would judge the wrong window or the wrong counts. */
static int watch_uint(const char *path,
                      char *err,
                      size_t errlen,
                      json_t *o,
                      const char *key,
                      uint64_t *out) {
  json_t *v = json_object_get(o, key);
  if (v == NULL)
    return bad_watch(path, err, errlen, key, "is missing");
  if (!json_is_integer(v) || json_integer_value(v) < 0)
    return bad_watch(path, err, errlen, key, "is not a non-negative integer");
  *out = (uint64_t)json_integer_value(v);
  return 0;
}

static int watch_name(const char *path,
                      char *err,
                      size_t errlen,
                      json_t *o,
                      const char *key,
                      const char *const *names,
                      const char *expect,
                      char *dst,
                      size_t cap) {
  json_t *v = json_object_get(o, key);
  const char *s = json_string_value(v);
  if (v == NULL)
    return bad_watch(path, err, errlen, key, "is missing");
  for (size_t i = 0; s != NULL && names[i] != NULL; i++) {
    if (strcmp(s, names[i]) == 0 && strlen(s) < cap) {
      memcpy(dst, s, strlen(s) + 1);
      return 0;
    }
  }
  return bad_watch(path, err, errlen, key, expect);
}

static int load_watch(const char *path,
                      char *err,
                      size_t errlen,
                      json_t *o,
                      sw_state_watch_t *w) {
  static const struct {
    const char *key;
    size_t off;
  } nums[] = {
      {"flip_time_ms", offsetof(sw_state_watch_t, flip_time_ms)},
      {"auto_window_ms", offsetof(sw_state_watch_t, auto_window_ms)},
      {"manual_window_ms", offsetof(sw_state_watch_t, manual_window_ms)},
      {"ended_time_ms", offsetof(sw_state_watch_t, ended_time_ms)},
      {"requests", offsetof(sw_state_watch_t, requests)},
      {"errors", offsetof(sw_state_watch_t, errors)},
      {"baseline_requests", offsetof(sw_state_watch_t, baseline_requests)},
      {"baseline_errors", offsetof(sw_state_watch_t, baseline_errors)},
      {"fired_time_ms", offsetof(sw_state_watch_t, fired_time_ms)},
  };
  json_t *v;
  const char *c;
  int rc;

  memset(w, 0, sizeof(*w));
  if (!json_is_object(o)) {
    snprintf(err, errlen, "%s: corrupt state file: watch is not an object",
             path);
    return SW_ECONFIG;
  }
  v = json_object_get(o, "colour");
  c = json_string_value(v);
  if (v == NULL)
    return bad_watch(path, err, errlen, "colour", "is missing");
  if (c != NULL && strcmp(c, "blue") == 0)
    w->colour = SW_BLUE;
  else if (c != NULL && strcmp(c, "green") == 0)
    w->colour = SW_GREEN;
  else
    return bad_watch(path, err, errlen, "colour", "is not blue or green");
  for (size_t i = 0; i < sizeof(nums) / sizeof(nums[0]); i++) {
    rc = watch_uint(path, err, errlen, o, nums[i].key,
                    (uint64_t *)((char *)w + nums[i].off));
    if (rc != 0)
      return rc;
  }
  v = json_object_get(o, "ended");
  if (v == NULL)
    return bad_watch(path, err, errlen, "ended", "is missing");
  if (!json_is_boolean(v))
    return bad_watch(path, err, errlen, "ended", "is not true or false");
  w->ended = json_is_true(v);
  rc = watch_name(path, err, errlen, o, "fired", fired_names,
                  "is not none, fire or alert", w->fired, sizeof(w->fired));
  if (rc != 0)
    return rc;
  rc = watch_name(path, err, errlen, o, "rule", rule_names,
                  "is not none, r1, r2, r3 or r4", w->rule, sizeof(w->rule));
  if (rc != 0)
    return rc;
  v = json_object_get(o, "text");
  if (v == NULL)
    return bad_watch(path, err, errlen, "text", "is missing");
  if (!json_is_string(v))
    return bad_watch(path, err, errlen, "text", "is not a string");
  /* The file is loaded without JSON_ALLOW_NUL, so strlen is the length. */
  if (strlen(json_string_value(v)) >= sizeof(w->text))
    return bad_watch(path, err, errlen, "text", "is too long");
  memcpy(w->text, json_string_value(v), strlen(json_string_value(v)) + 1);
  w->present = 1;
  return 0;
}

int sw_state_load(const char *path, sw_state_t *s, char *err, size_t errlen) {
  json_error_t je;
  json_t *root, *v, *hist;
  size_t max = s->max_history;
  const char *live;
  struct stat st;
  int rc = 0;

  if (stat(path, &st) != 0) {
    if (errno == ENOENT)
      return 1;
    snprintf(err, errlen, "%s: cannot read: %s", path, strerror(errno));
    return SW_ECONFIG;
  }
  root = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
  if (root == NULL) {
    snprintf(err, errlen, "%s: corrupt state file: line %d: %s", path, je.line,
             je.text);
    return SW_ECONFIG;
  }
  memset(s, 0, sizeof(*s));
  s->max_history = max;
  if (!json_is_object(root))
    rc = bad(path, err, errlen, "not a JSON object");
  else if (json_integer_value(json_object_get(root, "format")) !=
           SW_STATE_FORMAT)
    rc = bad(path, err, errlen, "unknown format");
  if (rc == 0) {
    live = json_string_value(json_object_get(root, "live"));
    if (live != NULL && strcmp(live, "blue") == 0)
      s->live = SW_BLUE;
    else if (live != NULL && strcmp(live, "green") == 0)
      s->live = SW_GREEN;
    else
      rc = bad(path, err, errlen, "\"live\" is not blue or green");
  }
  if (rc == 0 &&
      copy_text(s->phase, sizeof(s->phase), json_object_get(root, "phase")))
    rc = bad(path, err, errlen, "\"phase\" missing or too long");
  if (rc == 0) {
    v = json_object_get(root, "flip_time_ms");
    if (!json_is_integer(v) || json_integer_value(v) < 0)
      rc = bad(path, err, errlen, "\"flip_time_ms\" is not a time");
    else
      s->flip_time_ms = (uint64_t)json_integer_value(v);
  }
  if (rc == 0) {
    v = json_object_get(root, "version");
    if (!json_is_integer(v) || json_integer_value(v) < 0)
      rc = bad(path, err, errlen, "\"version\" is not a number");
    else
      s->version = (uint64_t)json_integer_value(v);
  }
  /* Files written before watches were kept have no "watch": no watch. */
  if (rc == 0 && (v = json_object_get(root, "watch")) != NULL) {
    sw_state_watch_t w;
    rc = load_watch(path, err, errlen, v, &w);
    if (rc == 0)
      s->watch = w;
  }
  hist = rc == 0 ? json_object_get(root, "history") : NULL;
  if (rc == 0 && !json_is_array(hist))
    rc = bad(path, err, errlen, "\"history\" is not a list");
  for (size_t i = 0; rc == 0 && i < json_array_size(hist); i++) {
    json_t *o = json_array_get(hist, i);
    sw_state_event_t e;
    v = json_object_get(o, "time_ms");
    if (!json_is_object(o) || !json_is_integer(v) ||
        copy_text(e.from, sizeof(e.from), json_object_get(o, "from")) ||
        copy_text(e.to, sizeof(e.to), json_object_get(o, "to")) ||
        copy_text(e.reason, sizeof(e.reason), json_object_get(o, "reason"))) {
      rc = bad(path, err, errlen, "a history entry is malformed");
      break;
    }
    e.time_ms = (uint64_t)json_integer_value(v);
    if (sw_state_push(s, &e) != 0) {
      snprintf(err, errlen, "%s: out of memory", path);
      rc = SW_ECONFIG;
    }
  }
  json_decref(root);
  if (rc != 0)
    sw_state_free(s);
  return rc;
}

void sw_state_set_max(sw_state_t *s, size_t max) {
  if (s->nhistory > max) {
    memmove(s->history, s->history + (s->nhistory - max),
            max * sizeof(*s->history));
    s->nhistory = max;
  }
  s->max_history = max;
}

int sw_state_push(sw_state_t *s, const sw_state_event_t *e) {
  if (s->max_history == 0)
    return 0;
  if (s->cap < s->max_history) {
    /* Grown to the bound in force, which a reload may have raised. */
    sw_state_event_t *h = realloc(s->history, s->max_history * sizeof(*h));
    if (h == NULL)
      return -ENOMEM;
    s->history = h;
    s->cap = s->max_history;
  }
  while (s->nhistory >= s->max_history) {
    memmove(s->history, s->history + 1,
            (s->nhistory - 1) * sizeof(*s->history));
    s->nhistory--;
  }
  s->history[s->nhistory++] = *e;
  return 0;
}

void sw_state_free(sw_state_t *s) {
  free(s->history);
  s->history = NULL;
  s->nhistory = 0;
  s->cap = 0;
}
