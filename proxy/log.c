/* The error log and the access log. Owns the two FILE streams and their
 * names; never blocks on anything but the local file system, and never
 * formats a line whose level is filtered out. */
#include "sw_log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

sw_log_level_t sw_log_level = SW_LOG_INFO;

static FILE *error_fp;
static FILE *access_fp;
static char *error_path;  /* NULL means stderr */
static char *access_path; /* NULL means none or stderr, see access_stderr */
static int access_stderr;

static const char *level_names[] = {"debug", "info", "warn", "error"};

static int open_file(const char *path, FILE **out) {
  FILE *fp = fopen(path, "a");
  if (fp == NULL)
    return -errno;
  setvbuf(fp, NULL, _IOFBF, 64 * 1024);
  *out = fp;
  return 0;
}

static void close_file(FILE *fp) {
  if (fp != NULL && fp != stderr)
    fclose(fp);
}

int sw_log_open(const sw_config_t *cfg) {
  FILE *efp = stderr;
  FILE *afp = NULL;
  int err;
  int want_access = strcmp(cfg->access_log, "off") != 0;
  int a_stderr = strcmp(cfg->access_log, "stderr") == 0;

  if (strcmp(cfg->error_log, "stderr") != 0) {
    err = open_file(cfg->error_log, &efp);
    if (err != 0)
      return err;
  }
  if (want_access && !a_stderr) {
    err = open_file(cfg->access_log, &afp);
    if (err != 0) {
      close_file(efp);
      return err;
    }
  } else if (a_stderr) {
    afp = stderr;
  }

  if (access_fp != NULL)
    fflush(access_fp);
  close_file(error_fp);
  close_file(access_fp);
  free(error_path);
  free(access_path);
  error_fp = efp;
  access_fp = afp;
  access_stderr = a_stderr;
  error_path = efp == stderr ? NULL : strdup(cfg->error_log);
  access_path = (afp == NULL || a_stderr) ? NULL : strdup(cfg->access_log);
  sw_log_level = cfg->log_level;
  return 0;
}

int sw_log_reopen(void) {
  FILE *fp = NULL;
  int err;

  if (error_path != NULL) {
    err = open_file(error_path, &fp);
    if (err != 0)
      return err;
    fclose(error_fp);
    error_fp = fp;
  }
  if (access_path != NULL) {
    err = open_file(access_path, &fp);
    if (err != 0)
      return err;
    fclose(access_fp);
    access_fp = fp;
  }
  return 0;
}

void sw_log_close(void) {
  if (access_fp != NULL)
    fflush(access_fp);
  if (error_fp != NULL)
    fflush(error_fp);
  close_file(error_fp);
  close_file(access_fp);
  error_fp = NULL;
  access_fp = NULL;
  free(error_path);
  free(access_path);
  error_path = NULL;
  access_path = NULL;
}

void sw_log_flush(void) {
  if (access_fp != NULL)
    fflush(access_fp);
  if (error_fp != NULL)
    fflush(error_fp);
}

int sw_log_access_enabled(void) {
  return access_fp != NULL;
}

/* Formats the wall clock as an ISO 8601 UTC time with milliseconds. The
 * date part is cached per second because most lines share it. */
static void format_time(char *out, size_t cap) {
  static time_t cached_sec = -1;
  static char cached[32];
  struct timeval tv;
  struct tm tm;

  gettimeofday(&tv, NULL);
  if (tv.tv_sec != cached_sec) {
    gmtime_r(&tv.tv_sec, &tm);
    strftime(cached, sizeof(cached), "%Y-%m-%dT%H:%M:%S", &tm);
    cached_sec = tv.tv_sec;
  }
  snprintf(out, cap, "%s.%03dZ", cached, (int)(tv.tv_usec / 1000));
}

void sw_log_write(sw_log_level_t level,
                  const char *module,
                  uint64_t conn,
                  const char *fmt,
                  ...) {
  FILE *fp = error_fp != NULL ? error_fp : stderr;
  char ts[48];
  va_list ap;

  format_time(ts, sizeof(ts));
  if (conn != 0)
    fprintf(fp, "%s %s [%s] #%llu ", ts, level_names[level], module,
            (unsigned long long)conn);
  else
    fprintf(fp, "%s %s [%s] ", ts, level_names[level], module);
  va_start(ap, fmt);
  vfprintf(fp, fmt, ap);
  va_end(ap);
  fputc('\n', fp);
  /* Errors and warnings are rare and wanted at once; info lines are
   * flushed by the periodic flush. */
  if (level >= SW_LOG_WARN || fp == stderr)
    fflush(fp);
}

size_t sw_json_escape(char *out, size_t cap, const char *s, size_t len) {
  static const char hex[] = "0123456789abcdef";
  size_t o = 0;

  for (size_t i = 0; i < len; i++) {
    unsigned char ch = (unsigned char)s[i];
    if (ch == '"' || ch == '\\') {
      if (o + 2 > cap)
        break;
      out[o++] = '\\';
      out[o++] = (char)ch;
    } else if (ch < 0x20 || ch >= 0x7f) {
      /* Bytes outside printable ASCII are escaped one by one, so the log
       * stays valid JSON whatever a client put in its request line. */
      if (o + 6 > cap)
        break;
      out[o++] = '\\';
      out[o++] = 'u';
      out[o++] = '0';
      out[o++] = '0';
      out[o++] = hex[ch >> 4];
      out[o++] = hex[ch & 15];
    } else {
      if (o + 1 > cap)
        break;
      out[o++] = (char)ch;
    }
  }
  return o;
}

void sw_log_access(const sw_access_t *a) {
  char line[4096 + 2048];
  char ts[48];
  char path[4096];
  char rid[256];
  char method[64];
  size_t plen, rlen, mlen;
  int n;

  if (access_fp == NULL)
    return;
  format_time(ts, sizeof(ts));
  plen = sw_json_escape(path, sizeof(path), a->path, a->path_len);
  rlen = sw_json_escape(rid, sizeof(rid), a->request_id, a->request_id_len);
  mlen = sw_json_escape(method, sizeof(method), a->method, strlen(a->method));
  n = snprintf(line, sizeof(line),
               "{\"time\":\"%s\",\"client\":\"%s\",\"method\":\"%.*s\","
               "\"path\":\"%.*s\",\"status\":%d,\"bytes\":%llu,",
               ts, a->client, (int)mlen, method, (int)plen, path, a->status,
               (unsigned long long)a->bytes);
  if (n < 0 || (size_t)n >= sizeof(line))
    return;
  if (a->colour != NULL)
    n += snprintf(line + n, sizeof(line) - n,
                  "\"colour\":\"%s\",\"server\":\"%s\",", a->colour, a->server);
  else
    n += snprintf(line + n, sizeof(line) - n,
                  "\"colour\":null,\"server\":null,");
  if (a->upstream_ms >= 0)
    n += snprintf(line + n, sizeof(line) - n, "\"upstream_ms\":%.3f,",
                  a->upstream_ms);
  else
    n += snprintf(line + n, sizeof(line) - n, "\"upstream_ms\":null,");
  n += snprintf(line + n, sizeof(line) - n,
                "\"total_ms\":%.3f,\"request_id\":\"%.*s\"}\n", a->total_ms,
                (int)rlen, rid);
  if (n < 0 || (size_t)n >= sizeof(line))
    return;
  fwrite(line, 1, (size_t)n, access_fp);
  if (access_stderr)
    fflush(access_fp);
}
