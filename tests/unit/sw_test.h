/* A tiny test harness for switchd's C unit tests. Each test case is a plain
 * function; SW_TEST_MAIN lists them, runs them in order and ends with the
 * line "N passed, N failed" that tests/run-unit sums. Checks count every
 * assertion and print file:line and both values when one fails, so a failure
 * in CI can be read without a debugger. A check that fails does not stop the
 * test: the next checks still run and report.
 *
 * Usage:
 *   static void test_defaults(void) { SW_CHECK_INT_EQ(f(), 3); }
 *   SW_TEST_MAIN(SW_TASK(test_defaults), SW_TASK(test_errors))
 *
 * `test-x NAME` runs only the task called NAME. Include this header from one
 * file per binary: the counters live in it. */
#ifndef SW_TEST_H
#define SW_TEST_H

#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

typedef struct sw_test_task_s {
  const char *name;
  void (*fn)(void);
} sw_test_task_t;

typedef struct sw_test_counts_s {
  unsigned long passed;
  unsigned long failed;
} sw_test_counts_t;

/* The only state of the harness; one test binary is one translation unit. */
static sw_test_counts_t sw_test_counts;

#define SW_TEST_UNUSED __attribute__((unused))

static SW_TEST_UNUSED int sw_test_result(int ok) {
  if (ok)
    sw_test_counts.passed++;
  else
    sw_test_counts.failed++;
  return ok;
}

static SW_TEST_UNUSED int sw_test_check(const char *file,
                                        int line,
                                        int ok,
                                        const char *expr) {
  if (!ok)
    printf("%s:%d: check failed: %s\n", file, line, expr);
  return sw_test_result(ok);
}

static SW_TEST_UNUSED int sw_test_int_eq(const char *file,
                                         int line,
                                         intmax_t a,
                                         intmax_t b,
                                         const char *ea,
                                         const char *eb) {
  if (a != b)
    printf("%s:%d: check failed: %s == %s\n  left:  %" PRIdMAX
           "\n  right: %" PRIdMAX "\n",
           file, line, ea, eb, a, b);
  return sw_test_result(a == b);
}

static SW_TEST_UNUSED int sw_test_uint_eq(const char *file,
                                          int line,
                                          uintmax_t a,
                                          uintmax_t b,
                                          const char *ea,
                                          const char *eb) {
  if (a != b)
    printf("%s:%d: check failed: %s == %s\n  left:  %" PRIuMAX
           "\n  right: %" PRIuMAX "\n",
           file, line, ea, eb, a, b);
  return sw_test_result(a == b);
}

static SW_TEST_UNUSED int sw_test_str_eq(const char *file,
                                         int line,
                                         const char *a,
                                         const char *b,
                                         const char *ea,
                                         const char *eb) {
  int ok = (a == NULL || b == NULL) ? a == b : strcmp(a, b) == 0;

  if (!ok)
    printf("%s:%d: check failed: %s == %s\n  left:  \"%s\"\n  right: \"%s\"\n",
           file, line, ea, eb, a ? a : "(null)", b ? b : "(null)");
  return sw_test_result(ok);
}

static SW_TEST_UNUSED int sw_test_str_contains(const char *file,
                                               int line,
                                               const char *hay,
                                               const char *needle,
                                               const char *eh,
                                               const char *en) {
  int ok = hay != NULL && needle != NULL && strstr(hay, needle) != NULL;
  /* A whole file as the haystack would bury the needle: show its start. */
  int shown = hay != NULL && strlen(hay) > 300 ? 300 : -1;

  if (!ok)
    printf(
        "%s:%d: check failed: %s contains %s\n  haystack: \"%.*s\"%s\n"
        "  needle:   \"%s\"\n",
        file, line, eh, en, shown, hay ? hay : "(null)", shown < 0 ? "" : "...",
        needle ? needle : "(null)");
  return sw_test_result(ok);
}

/* Each macro evaluates its arguments once and yields 1 when the check held,
 * so a test can skip checks that would only repeat a failure. The _AT forms
 * take the location explicitly, for helpers that check on a caller's behalf. */
#define SW_CHECK_AT(file, line, cond) \
  sw_test_check((file), (line), !!(cond), #cond)
#define SW_CHECK(cond) SW_CHECK_AT(__FILE__, __LINE__, cond)

#define SW_CHECK_INT_EQ_AT(file, line, a, b) \
  sw_test_int_eq((file), (line), (intmax_t)(a), (intmax_t)(b), #a, #b)
#define SW_CHECK_INT_EQ(a, b) SW_CHECK_INT_EQ_AT(__FILE__, __LINE__, a, b)

#define SW_CHECK_UINT_EQ_AT(file, line, a, b) \
  sw_test_uint_eq((file), (line), (uintmax_t)(a), (uintmax_t)(b), #a, #b)
#define SW_CHECK_UINT_EQ(a, b) SW_CHECK_UINT_EQ_AT(__FILE__, __LINE__, a, b)

#define SW_CHECK_STR_EQ_AT(file, line, a, b) \
  sw_test_str_eq((file), (line), (a), (b), #a, #b)
#define SW_CHECK_STR_EQ(a, b) SW_CHECK_STR_EQ_AT(__FILE__, __LINE__, a, b)

#define SW_CHECK_STR_CONTAINS_AT(file, line, hay, needle) \
  sw_test_str_contains((file), (line), (hay), (needle), #hay, #needle)
#define SW_CHECK_STR_CONTAINS(hay, needle) \
  SW_CHECK_STR_CONTAINS_AT(__FILE__, __LINE__, hay, needle)

#define SW_TASK(fn) \
  { #fn, fn }

/* Prints the closing line and returns the exit status: nonzero if any check
 * failed. */
static SW_TEST_UNUSED int sw_test_report(void) {
  printf("%lu passed, %lu failed\n", sw_test_counts.passed,
         sw_test_counts.failed);
  fflush(stdout);
  return sw_test_counts.failed != 0;
}

/* Runs the tasks in order (or only the one named `only`) and reports. A name
 * that matches nothing is a failure, so a typo cannot pass silently. */
static SW_TEST_UNUSED int sw_test_run(const sw_test_task_t *tasks,
                                      const char *only) {
  const sw_test_task_t *t;
  int ran = 0;

  for (t = tasks; t->name != NULL; t++) {
    unsigned long failed_before = sw_test_counts.failed;
    if (only != NULL && strcmp(only, t->name) != 0)
      continue;
    printf("-- %s\n", t->name);
    fflush(stdout);
    t->fn();
    ran++;
    printf("%s %s\n", sw_test_counts.failed == failed_before ? "ok" : "FAIL",
           t->name);
    fflush(stdout);
  }
  if (only != NULL && ran == 0) {
    printf("no test named '%s'\n", only);
    sw_test_counts.failed++;
  }
  return sw_test_report();
}

#define SW_TEST_MAIN(...)                                                      \
  int main(int argc, char **argv) {                                            \
    static const sw_test_task_t sw_test_tasks[] = {__VA_ARGS__, {NULL, NULL}}; \
    return sw_test_run(sw_test_tasks, argc > 1 ? argv[1] : NULL);              \
  }

#endif
