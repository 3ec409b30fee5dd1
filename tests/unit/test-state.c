/* Unit tests of the state file: round trip, atomic replacement, bounded
 * history, and a clear error naming the file for every kind of corruption
 * (a state file is never guessed). */
#include <errno.h>
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
  test_unwritable();
  rc = sw_test_report();
  unlink(path);
  rmdir(dir);
  return rc;
}
