/* fs.c -- readable write failures and cleanup of temp files of dead processes (see fs.h). */
#include "base/fs.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "base/log.h"

/* The folder holding path, into dir. */
static void folder_of(const char *path, char *dir, size_t size) {
  snprintf(dir, size, "%s", path);
  size_t n = strlen(dir);
  while (n > 1 && dir[n - 1] == '/') dir[--n] = '\0'; /* "db/" names the folder db */
  char *slash = strrchr(dir, '/');
  if (!slash)
    snprintf(dir, size, ".");
  else if (slash == dir)
    dir[1] = '\0';
  else
    *slash = '\0';
}

static bool file_system_full(const char *path) {
  char dir[4096];
  struct statvfs vfs;
  if (statvfs(path, &vfs) != 0) {
    folder_of(path, dir, sizeof dir);
    if (statvfs(dir, &vfs) != 0) return false;
  }
  /* Less than 64 KiB left counts as full: a short write stops at the last free block. */
  return (unsigned long long)vfs.f_bavail * vfs.f_frsize < 65536;
}

const char *crema_io_reason(int e, const char *path, char *buf, size_t size) {
  struct rlimit rl;
  const bool fsize_limited = getrlimit(RLIMIT_FSIZE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY;
  if (e == ENOSPC || (e == EIO && file_system_full(path)))
    snprintf(buf, size, "no space left on device (the file system holding \"%s\" is full)", path);
  else if (e == EFBIG || (e == EIO && fsize_limited))
    snprintf(buf, size, "file too large: the file size limit (ulimit -f) of %llu bytes was reached",
             fsize_limited ? (unsigned long long)rl.rlim_cur : 0ULL);
#ifdef EDQUOT
  else if (e == EDQUOT)
    snprintf(buf, size, "disk quota exceeded");
#endif
  else
    snprintf(buf, size, "%s", strerror(e));
  return buf;
}

/* The pid in "<...>.tmp.<pid>.<k>" or "<base>.partial-<pid>", or 0 when name is neither. */
static long temp_owner(const char *name, const char *partial_prefix) {
  const size_t pl = strlen(partial_prefix);
  char *end;
  if (pl && !strncmp(name, partial_prefix, pl)) {
    long pid = strtol(name + pl, &end, 10);
    return name[pl] >= '0' && name[pl] <= '9' && !*end ? pid : 0;
  }
  const char *t = strstr(name, ".tmp.");
  for (; t; t = strstr(t + 1, ".tmp.")) {
    const char *p = t + 5;
    if (*p < '0' || *p > '9') continue;
    long pid = strtol(p, &end, 10);
    if (*end != '.' || end[1] < '0' || end[1] > '9') continue;
    strtol(end + 1, &end, 10);
    if (!*end) return pid;
  }
  return 0;
}

static void remove_entry(const char *p) {
  struct stat st;
  if (lstat(p, &st) != 0) return;
  if (!S_ISDIR(st.st_mode)) {
    unlink(p);
    return;
  }
  DIR *d = opendir(p); /* a partial LMDB folder: data.mdb and lock.mdb */
  if (d) {
    const struct dirent *e;
    while ((e = readdir(d))) {
      if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
      char q[8192];
      if (snprintf(q, sizeof q, "%s/%s", p, e->d_name) < (int)sizeof q) unlink(q);
    }
    closedir(d);
  }
  rmdir(p);
}

int crema_remove_stale_temps(const char *path) {
  char dir[4096], base[1024], prefix[1100];
  folder_of(path, dir, sizeof dir);
  snprintf(base, sizeof base, "%s", path);
  size_t n = strlen(base);
  while (n > 1 && base[n - 1] == '/') base[--n] = '\0';
  const char *slash = strrchr(base, '/');
  snprintf(prefix, sizeof prefix, "%s.partial-", slash ? slash + 1 : base);
  DIR *d = opendir(dir);
  if (!d) return 0;
  int removed = 0;
  const struct dirent *e;
  while ((e = readdir(d))) {
    const long pid = temp_owner(e->d_name, prefix);
    if (pid <= 0 || pid == (long)getpid()) continue;
    if (kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue; /* alive (or not ours to judge) */
    char p[8192];
    if (snprintf(p, sizeof p, "%s/%s", dir, e->d_name) >= (int)sizeof p) continue;
    remove_entry(p);
    CREMA_INFO("Removed %s, left by process %ld, which is no longer running", p, pid);
    removed++;
  }
  closedir(d);
  return removed;
}
