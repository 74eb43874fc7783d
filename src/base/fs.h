/* fs.h -- what the file system did, said plainly, and the leftovers of killed runs.
 *
 * crema writes every output beside its final name first ("<path>.tmp.<pid>.<k>" for files,
 * "<db>.partial-<pid>" for data sets) and renames it into place. A run killed with SIGKILL
 * (or by the OOM killer) cannot remove its temp file; the next run writing to the same folder
 * does, once the process that made it is gone. */
#ifndef CREMA_BASE_FS_H
#define CREMA_BASE_FS_H

#include <stddef.h>

/* A readable reason for a failed write to path with errno e, into buf (returned):
 *   ENOSPC, or EIO on a file system with no free space left -> "no space left on device
 *   (the file system holding "<path>" is full)" (LMDB reports a short write as EIO);
 *   EFBIG, or EIO under a file size limit -> "file too large: the file size limit (ulimit -f)
 *   of N bytes was reached";
 *   EDQUOT -> "disk quota exceeded"; anything else: strerror(e). */
const char *crema_io_reason(int e, const char *path, char *buf, size_t size);

/* Removes, in the folder that holds `path`, the temp files crema's writers leave when killed:
 * "*.tmp.<pid>.<k>" files, and "<basename of path>.partial-<pid>" data-set folders, when no
 * process <pid> exists any more. Logs each removal. Returns how many were removed. */
int crema_remove_stale_temps(const char *path);

#endif
