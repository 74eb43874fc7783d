#include "base/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static crema_log_level min_level = CREMA_LOG_INFO;
static crema_log_sink sink;
static void *sink_ctx;

void crema_log_set_sink(crema_log_sink fn, void *ctx) {
  sink = fn;
  sink_ctx = ctx;
}

void crema_log_set_min_level(crema_log_level level) { min_level = level; }
crema_log_level crema_log_min_level(void) { return min_level; }

void crema_log_write(crema_log_level level, const char *file, int line, const char *fmt, ...) {
  if (level < min_level) return;
  static const char severity[] = {'I', 'W', 'E'};
  struct timeval tv;
  gettimeofday(&tv, NULL);
  struct tm tm;
  localtime_r(&tv.tv_sec, &tm);
  const char *base = strrchr(file, '/');
  base = base ? base + 1 : file;
  char msg[4096];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (sink) {
    char full[4352];
    snprintf(full, sizeof full, "%c%02d%02d %02d:%02d:%02d.%06ld %5d %s:%d] %s", severity[level],
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (long)tv.tv_usec, (int)getpid(),
             base, line, msg);
    sink(sink_ctx, level, full);
    return;
  }
  /* One fprintf per line so lines from different threads do not interleave. */
  fprintf(stderr, "%c%02d%02d %02d:%02d:%02d.%06ld %5d %s:%d] %s\n", severity[level], tm.tm_mon + 1,
          tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (long)tv.tv_usec, (int)getpid(), base, line, msg);
}
