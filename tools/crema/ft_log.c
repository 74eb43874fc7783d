#include "crema/ft_log.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

static void write_all(int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return;
    p += w;
    n -= (size_t)w;
  }
}

static void *copy_lines(void *arg) {
  ft_log *l = arg;
  char buf[65536];
  size_t have = 0;
  for (;;) {
    ssize_t r = read(l->read_fd, buf + have, sizeof buf - have);
    if (r < 0 && errno == EINTR) continue;
    const bool eof = r <= 0;
    if (!eof) have += (size_t)r;
    /* whole lines (or everything at the end / when the buffer is full) */
    size_t done = 0;
    for (size_t i = 0; i < have; i++) {
      if (buf[i] != '\n' && !(i + 1 == have && (eof || have == sizeof buf))) continue;
      const char *line = buf + done;
      const size_t n = i + 1 - done;
      write_all(l->log_fd, line, n);
      if (l->echo_all) {
        write_all(l->saved_fd, line, n);
      } else if (line[0] == 'W' || line[0] == 'E' || !strncmp(line, "error", 5)) {
        write_all(l->saved_fd, "\r\033[K", 4);
        write_all(l->saved_fd, line, n);
      }
      done = i + 1;
    }
    memmove(buf, buf + done, have - done);
    have -= done;
    if (eof) break;
  }
  return NULL;
}

int ft_log_start(ft_log *l, const char *log_path, bool echo_all, crema_error *err) {
  memset(l, 0, sizeof *l);
  l->log_fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (l->log_fd < 0) return crema_fail(err, "cannot open the log \"%s\": %s", log_path, strerror(errno));
  int p[2];
  if (pipe(p)) {
    close(l->log_fd);
    return crema_fail(err, "cannot create a pipe for the log: %s", strerror(errno));
  }
  fflush(stderr);
  l->saved_fd = dup(STDERR_FILENO);
  l->read_fd = p[0];
  l->echo_all = echo_all;
  if (l->saved_fd < 0 || dup2(p[1], STDERR_FILENO) < 0) {
    close(p[0]);
    close(p[1]);
    close(l->log_fd);
    if (l->saved_fd >= 0) close(l->saved_fd);
    return crema_fail(err, "cannot redirect the log: %s", strerror(errno));
  }
  close(p[1]);
  setvbuf(stderr, NULL, _IOLBF, 0);
  l->user = fdopen(dup(l->saved_fd), "w");
  if (l->user) setvbuf(l->user, NULL, _IONBF, 0);
  if (pthread_create(&l->thread, NULL, copy_lines, l)) {
    dup2(l->saved_fd, STDERR_FILENO);
    close(p[0]);
    close(l->saved_fd);
    close(l->log_fd);
    if (l->user) fclose(l->user);
    return crema_fail(err, "cannot start the log thread");
  }
  l->active = true;
  return 0;
}

void ft_log_stop(ft_log *l) {
  if (!l->active) return;
  fflush(stderr);
  dup2(l->saved_fd, STDERR_FILENO); /* closes the pipe's last write end: the thread sees EOF */
  pthread_join(l->thread, NULL);
  close(l->read_fd);
  close(l->log_fd);
  close(l->saved_fd);
  if (l->user) fclose(l->user);
  l->user = NULL;
  l->active = false;
}
