/* Unit tests of the state file: round trip, atomic replacement, bounded
 * history, and a clear error naming the file for every kind of corruption
 * (a state file is never guessed). */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sw_state.h"
#include "sw_test.h"

static char dir[] = "/tmp/switchd-test-state.XXXXXX";
static char path[256];

static void write_file(const char *text) {
  FILE *fp = fopen(path, "w");
  if (fp == NULL)
    abort();
  fputs(text, fp);
  fclose(fp);
}

static void test_round_trip(void) {
  sw_state_t s, back;
  sw_state_event_t e;
  char err[512] = "";
  struct stat st;

  memset(&s, 0, sizeof(s));
  s.max_history = 3;
  s.live = SW_GREEN;
  snprintf(s.phase, sizeof(s.phase), "steady");
  s.flip_time_ms = 1795635979642ULL;
  s.version = 42;
  for (int i = 0; i < 5; i++) {
    memset(&e, 0, sizeof(e));
    e.time_ms = 1000 + (uint64_t)i;
    snprintf(e.from, sizeof(e.from), "gating");
    snprintf(e.to, sizeof(e.to), "rechecking");
    snprintf(e.reason, sizeof(e.reason), "step %d \"quoted\"\n", i);
    SW_CHECK_INT_EQ(sw_state_push(&s, &e), 0);
  }
  /* Only the newest max_history survive, oldest first. */
  SW_CHECK_UINT_EQ(s.nhistory, 3);
  SW_CHECK_UINT_EQ(s.history[0].time_ms, 1002);

  SW_CHECK_INT_EQ(sw_state_save(path, &s, err, sizeof(err)), 0);
  SW_CHECK_INT_EQ(stat(path, &st), 0);
  SW_CHECK_INT_EQ(st.st_mode & 0777, 0600);
  {
    char tmp[300];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    SW_CHECK_INT_EQ(access(tmp, F_OK), -1);
  }
  memset(&back, 0, sizeof(back));
  back.max_history = 10;
  SW_CHECK_INT_EQ(sw_state_load(path, &back, err, sizeof(err)), 0);
  SW_CHECK_INT_EQ(back.live, SW_GREEN);
  SW_CHECK_STR_EQ(back.phase, "steady");
  SW_CHECK_UINT_EQ(back.flip_time_ms, 1795635979642ULL);
  SW_CHECK_UINT_EQ(back.version, 42);
  SW_CHECK_UINT_EQ(back.nhistory, 3);
  SW_CHECK_STR_EQ(back.history[2].reason, "step 4 \"quoted\"\n");
  SW_CHECK_STR_EQ(back.history[0].to, "rechecking");

  /* Saving again replaces the file whole. */
  s.live = SW_BLUE;
  s.version = 43;
  SW_CHECK_INT_EQ(sw_state_save(path, &s, err, sizeof(err)), 0);
  sw_state_free(&back);
  back.max_history = 10;
  SW_CHECK_INT_EQ(sw_state_load(path, &back, err, sizeof(err)), 0);
  SW_CHECK_INT_EQ(back.live, SW_BLUE);
  SW_CHECK_UINT_EQ(back.version, 43);
  sw_state_free(&back);
  sw_state_free(&s);
}

static void test_missing_is_first_start(void) {
  sw_state_t s;
  char err[512] = "";
  memset(&s, 0, sizeof(s));
  unlink(path);
  SW_CHECK_INT_EQ(sw_state_load(path, &s, err, sizeof(err)), 1);
  SW_CHECK_UINT_EQ(s.nhistory, 0);
}

static void check_corrupt(const char *text, const char *what) {
  sw_state_t s;
  char err[512] = "";
  memset(&s, 0, sizeof(s));
  s.max_history = 4;
  write_file(text);
  SW_CHECK_INT_EQ(sw_state_load(path, &s, err, sizeof(err)), SW_ECONFIG);
  SW_CHECK_STR_CONTAINS(err, path);
  SW_CHECK_STR_CONTAINS(err, "corrupt state file");
  SW_CHECK_STR_CONTAINS(err, what);
  SW_CHECK(s.history == NULL);
}

static void test_corrupt_files(void) {
  static const char ok_tail[] =
      "\"phase\":\"steady\",\"flip_time_ms\":0,\"version\":1,\"history\":[]}";
  char buf[512];

  check_corrupt("", "line");
  check_corrupt("{\"format\":1,\"live\":\"gre", "line");
  check_corrupt("[1,2]", "not a JSON object");
  snprintf(buf, sizeof(buf), "{\"format\":2,\"live\":\"blue\",%s", ok_tail);
  check_corrupt(buf, "unknown format");
  snprintf(buf, sizeof(buf), "{\"format\":1,\"live\":\"red\",%s", ok_tail);
  check_corrupt(buf, "\"live\"");
  check_corrupt(
      "{\"format\":1,\"live\":\"blue\",\"phase\":\"steady\","
      "\"flip_time_ms\":-5,\"version\":1,\"history\":[]}",
      "flip_time_ms");
  check_corrupt(
      "{\"format\":1,\"live\":\"blue\",\"phase\":\"steady\","
      "\"flip_time_ms\":0,\"version\":1,\"history\":{}}",
      "history");
  check_corrupt(
      "{\"format\":1,\"live\":\"blue\",\"phase\":\"steady\","
      "\"flip_time_ms\":0,\"version\":1,\"history\":[{\"to\":1}]}",
      "history entry");
  check_corrupt("{\"format\":1,\"format\":1}", "line");
}

static void fill_watch(sw_state_watch_t *w) {
  memset(w, 0, sizeof(*w));
  w->present = 1;
  w->colour = SW_GREEN;
  w->flip_time_ms = 1795635979642ULL;
  w->auto_window_ms = 300000;
  w->manual_window_ms = 1800000;
  w->ended = 1;
  w->ended_time_ms = 1795635999642ULL;
  w->requests = 12345;
  w->errors = 67;
  w->baseline_requests = 98765;
  w->baseline_errors = 43;
  snprintf(w->fired, sizeof(w->fired), "alert");
  snprintf(w->rule, sizeof(w->rule), "r3");
  w->fired_time_ms = 1795635989642ULL;
  /* The longest text that fits, with characters JSON must escape. */
  memset(w->text, 'x', SW_STATE_TEXT - 1);
  memcpy(w->text, "5xx \"rate\"\n", 12);
  w->text[SW_STATE_TEXT - 1] = '\0';
}

static void test_watch_round_trip(void) {
  sw_state_t s, back;
  char err[512] = "";

  memset(&s, 0, sizeof(s));
  snprintf(s.phase, sizeof(s.phase), "watching");
  s.live = SW_GREEN;
  fill_watch(&s.watch);
  SW_CHECK_INT_EQ(sw_state_save(path, &s, err, sizeof(err)), 0);
  memset(&back, 0xff, sizeof(back));
  back.max_history = 4;
  SW_CHECK_INT_EQ(sw_state_load(path, &back, err, sizeof(err)), 0);
  SW_CHECK_INT_EQ(back.watch.present, 1);
  SW_CHECK_INT_EQ(back.watch.colour, SW_GREEN);
  SW_CHECK_UINT_EQ(back.watch.flip_time_ms, 1795635979642ULL);
  SW_CHECK_UINT_EQ(back.watch.auto_window_ms, 300000);
  SW_CHECK_UINT_EQ(back.watch.manual_window_ms, 1800000);
  SW_CHECK_INT_EQ(back.watch.ended, 1);
  SW_CHECK_UINT_EQ(back.watch.ended_time_ms, 1795635999642ULL);
  SW_CHECK_UINT_EQ(back.watch.requests, 12345);
  SW_CHECK_UINT_EQ(back.watch.errors, 67);
  SW_CHECK_UINT_EQ(back.watch.baseline_requests, 98765);
  SW_CHECK_UINT_EQ(back.watch.baseline_errors, 43);
  SW_CHECK_STR_EQ(back.watch.fired, "alert");
  SW_CHECK_STR_EQ(back.watch.rule, "r3");
  SW_CHECK_UINT_EQ(back.watch.fired_time_ms, 1795635989642ULL);
  SW_CHECK_STR_EQ(back.watch.text, s.watch.text);
  sw_state_free(&back);

  /* The other values of each field: blue, not ended, nothing fired. */
  s.watch.colour = SW_BLUE;
  s.watch.ended = 0;
  s.watch.ended_time_ms = 0;
  snprintf(s.watch.fired, sizeof(s.watch.fired), "none");
  snprintf(s.watch.rule, sizeof(s.watch.rule), "none");
  s.watch.fired_time_ms = 0;
  s.watch.text[0] = '\0';
  SW_CHECK_INT_EQ(sw_state_save(path, &s, err, sizeof(err)), 0);
  back.max_history = 4;
  SW_CHECK_INT_EQ(sw_state_load(path, &back, err, sizeof(err)), 0);
  SW_CHECK_INT_EQ(back.watch.present, 1);
  SW_CHECK_INT_EQ(back.watch.colour, SW_BLUE);
  SW_CHECK_INT_EQ(back.watch.ended, 0);
  SW_CHECK_UINT_EQ(back.watch.ended_time_ms, 0);
  SW_CHECK_STR_EQ(back.watch.fired, "none");
  SW_CHECK_STR_EQ(back.watch.rule, "none");
  SW_CHECK_STR_EQ(back.watch.text, "");
  sw_state_free(&back);
  sw_state_free(&s);
}

static void test_no_watch(void) {
  sw_state_t s, back;
  char err[512] = "";
  json_t *root;

  /* A file written before watches were kept. */
  write_file(
      "{\"format\":1,\"live\":\"blue\",\"phase\":\"steady\","
      "\"flip_time_ms\":0,\"version\":1,\"history\":[]}");
  memset(&back, 0xff, sizeof(back));
  back.max_history = 4;
  SW_CHECK_INT_EQ(sw_state_load(path, &back, err, sizeof(err)), 0);
  SW_CHECK_INT_EQ(back.watch.present, 0);
  sw_state_free(&back);

  /* No watch is saved as no key at all, even with stale fields. */
  memset(&s, 0, sizeof(s));
  snprintf(s.phase, sizeof(s.phase), "steady");
  fill_watch(&s.watch);
  s.watch.present = 0;
  SW_CHECK_INT_EQ(sw_state_save(path, &s, err, sizeof(err)), 0);
  root = json_load_file(path, 0, NULL);
  SW_CHECK(root != NULL);
  SW_CHECK(json_object_get(root, "watch") == NULL);
  json_decref(root);
  back.max_history = 4;
  SW_CHECK_INT_EQ(sw_state_load(path, &back, err, sizeof(err)), 0);
  SW_CHECK_INT_EQ(back.watch.present, 0);
  sw_state_free(&back);
}

/* A valid state file with a full watch, as jansson objects, for the
 * malformed cases to break one key at a time. */
static json_t *watch_file_json(void) {
  sw_state_t s;
  char err[512] = "";
  json_t *root;

  memset(&s, 0, sizeof(s));
  snprintf(s.phase, sizeof(s.phase), "watching");
  fill_watch(&s.watch);
  if (sw_state_save(path, &s, err, sizeof(err)) != 0)
    abort();
  root = json_load_file(path, 0, NULL);
  if (root == NULL || !json_is_object(json_object_get(root, "watch")))
    abort();
  return root;
}

/* Sets watch.key to v (or deletes it when v is NULL), writes the file and
 * expects a load to fail with the file and "watch.KEY" in the message. */
static void check_bad_watch(const char *key, json_t *v, const char *what) {
  json_t *root = watch_file_json();
  json_t *w = json_object_get(root, "watch");
  sw_state_t s;
  char err[512] = "", needle[64];

  if (v == NULL)
    json_object_del(w, key);
  else
    json_object_set_new(w, key, v);
  if (json_dump_file(root, path, 0) != 0)
    abort();
  json_decref(root);
  memset(&s, 0, sizeof(s));
  s.max_history = 4;
  SW_CHECK_INT_EQ(sw_state_load(path, &s, err, sizeof(err)), SW_ECONFIG);
  SW_CHECK_STR_CONTAINS(err, path);
  snprintf(needle, sizeof(needle), "corrupt state file: watch.%s ", key);
  if (!SW_CHECK_STR_CONTAINS(err, needle))
    printf("  (watch.%s %s)\n", key, what);
  SW_CHECK_STR_CONTAINS(err, what);
  SW_CHECK_INT_EQ(s.watch.present, 0);
  SW_CHECK(s.history == NULL);
}

static void test_watch_malformed(void) {
  static const char *const keys[] = {
      "colour",           "flip_time_ms", "auto_window_ms",
      "manual_window_ms", "ended",        "ended_time_ms",
      "requests",         "errors",       "baseline_requests",
      "baseline_errors",  "fired",        "rule",
      "fired_time_ms",    "text",
  };
  static const char *const nums[] = {
      "flip_time_ms",      "auto_window_ms",  "manual_window_ms",
      "ended_time_ms",     "requests",        "errors",
      "baseline_requests", "baseline_errors", "fired_time_ms",
  };
  char longtext[SW_STATE_TEXT + 1];

  /* Every key is required, and none accepts an object. */
  for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
    check_bad_watch(keys[i], NULL, "is missing");
    check_bad_watch(keys[i], json_object(), "is not");
  }
  /* Numbers: not strings, reals, booleans or negative. */
  for (size_t i = 0; i < sizeof(nums) / sizeof(nums[0]); i++) {
    check_bad_watch(nums[i], json_string("5"), "non-negative integer");
    check_bad_watch(nums[i], json_real(1.5), "non-negative integer");
    check_bad_watch(nums[i], json_true(), "non-negative integer");
    check_bad_watch(nums[i], json_integer(-1), "non-negative integer");
  }
  check_bad_watch("colour", json_string("red"), "blue or green");
  check_bad_watch("colour", json_string("Blue"), "blue or green");
  check_bad_watch("colour", json_integer(1), "blue or green");
  check_bad_watch("ended", json_integer(1), "true or false");
  check_bad_watch("ended", json_string("true"), "true or false");
  check_bad_watch("fired", json_string("fired"), "none, fire or alert");
  check_bad_watch("fired", json_null(), "none, fire or alert");
  check_bad_watch("rule", json_string("r5"), "r4");
  check_bad_watch("rule", json_string("r0"), "r4");
  check_bad_watch("rule", json_string(""), "r4");
  check_bad_watch("rule", json_string("rule r1"), "r4");
  check_bad_watch("rule", json_integer(1), "r4");
  check_bad_watch("text", json_integer(1), "not a string");
  check_bad_watch("text", json_null(), "not a string");
  memset(longtext, 'y', SW_STATE_TEXT);
  longtext[SW_STATE_TEXT] = '\0';
  check_bad_watch("text", json_string(longtext), "too long");

  /* "watch" itself must be an object. */
  check_corrupt(
      "{\"format\":1,\"live\":\"blue\",\"phase\":\"steady\","
      "\"flip_time_ms\":0,\"version\":1,\"history\":[],\"watch\":[]}",
      "watch is not an object");
  check_corrupt(
      "{\"format\":1,\"live\":\"blue\",\"phase\":\"steady\","
      "\"flip_time_ms\":0,\"version\":1,\"history\":[],"
      "\"watch\":null}",
      "watch is not an object");
}

/* Unknown keys inside "watch" are ignored, as unknown top-level keys are. */
static void test_watch_unknown_key(void) {
  json_t *root = watch_file_json();
  sw_state_t s;
  char err[512] = "";

  json_object_set_new(json_object_get(root, "watch"), "later", json_true());
  json_object_set_new(root, "later", json_true());
  if (json_dump_file(root, path, 0) != 0)
    abort();
  json_decref(root);
  memset(&s, 0, sizeof(s));
  s.max_history = 4;
  SW_CHECK_INT_EQ(sw_state_load(path, &s, err, sizeof(err)), 0);
  SW_CHECK_INT_EQ(s.watch.present, 1);
  SW_CHECK_STR_EQ(s.watch.rule, "r3");
  sw_state_free(&s);
}

static void test_unwritable(void) {
  sw_state_t s;
  char err[512] = "";
  memset(&s, 0, sizeof(s));
  snprintf(s.phase, sizeof(s.phase), "steady");
  SW_CHECK(sw_state_save("/nonexistent-dir/state.json", &s, err, sizeof(err)) <
           0);
  SW_CHECK_STR_CONTAINS(err, "/nonexistent-dir/state.json");
}

int main(void) {
  int rc;
  if (mkdtemp(dir) == NULL)
    return 2;
  snprintf(path, sizeof(path), "%s/state.json", dir);
  test_round_trip();
  test_missing_is_first_start();
  test_corrupt_files();
  test_watch_round_trip();
  test_no_watch();
  test_watch_malformed();
  test_watch_unknown_key();
  test_unwritable();
  rc = sw_test_report();
  unlink(path);
  rmdir(dir);
  return rc;
}
