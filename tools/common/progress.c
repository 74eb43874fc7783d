#include "common/progress.h"

#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include "base/log.h"

static double now_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void format_duration(double s, char *buf, size_t size) {
  if (s < 0 || s > 1e7) {
    snprintf(buf, size, "?");
    return;
  }
  long t = (long)(s + 0.5);
  if (t >= 3600)
    snprintf(buf, size, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
  else
    snprintf(buf, size, "%ld:%02ld", t / 60, t % 60);
}

void crema_progress_start(crema_progress *p, const char *what, const char *unit, size_t total) {
  p->what = what;
  p->unit = unit;
  p->total = total;
  p->start = now_seconds();
  p->last_draw = 0;
  p->last_step = 0;
  p->tty = isatty(STDERR_FILENO) == 1;
  p->drawn = false;
}

static void draw(crema_progress *p, size_t done, double t) {
  const double elapsed = t - p->start;
  const double rate = elapsed > 0 ? (double)done / elapsed : 0;
  char eta[32] = "?";
  if (p->total && rate > 0)
    format_duration((double)(p->total - (done < p->total ? done : p->total)) / rate, eta, sizeof eta);
  if (p->tty) {
    char bar[31];
    const int width = 30;
    int fill = p->total ? (int)((double)done / p->total * width) : 0;
    if (fill > width) fill = width;
    for (int i = 0; i < width; i++) bar[i] = i < fill ? '#' : '.';
    bar[width] = '\0';
    if (p->total)
      fprintf(stderr, "\r%s [%s] %3d%% %zu/%zu %s, %.1f/s, ETA %s  ", p->what, bar,
              (int)(100.0 * done / p->total), done, p->total, p->unit, rate, eta);
    else
      fprintf(stderr, "\r%s %zu %s, %.1f/s  ", p->what, done, p->unit, rate);
    fflush(stderr);
    p->drawn = true;
  } else {
    if (p->total)
      CREMA_INFO("%s: %zu/%zu %s (%d%%), %.1f %s/s, ETA %s", p->what, done, p->total, p->unit,
                 (int)(100.0 * done / p->total), rate, p->unit, eta);
    else
      CREMA_INFO("%s: %zu %s, %.1f %s/s", p->what, done, p->unit, rate, p->unit);
  }
}

void crema_progress_update(crema_progress *p, size_t done) {
  const double t = now_seconds();
  if (p->tty) {
    if (t - p->last_draw < 0.1) return;
    p->last_draw = t;
    draw(p, done, t);
    return;
  }
  /* Not a terminal: a line at every 10% (or every 10000 items when the total is unknown). */
  int step = p->total ? (int)(10.0 * done / p->total) : (int)(done / 10000);
  if (step > p->last_step) {
    p->last_step = step;
    if (!p->total || done < p->total) draw(p, done, t);
  }
}

double crema_progress_finish(crema_progress *p, size_t done) {
  const double t = now_seconds();
  if (p->tty) {
    draw(p, done, t);
    fputc('\n', stderr);
  } else {
    draw(p, done, t);
  }
  return t - p->start;
}
