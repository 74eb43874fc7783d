/* log.h -- Caffe/glog-style log lines on stderr.
 *
 *   I1126 09:30:00.123456 12345 solver.c:120] Iteration 100, loss = 0.31
 *
 * The layout matches glog (severity + MMDD, time with microseconds, thread id, file:line)
 * so Caffe's parse_log.py, plot_training_log.py and users' own scripts read crema logs.
 * Logging is the one process-wide setting in the library: a minimum severity that tools set
 * from the command line (default INFO) -- like glog's --minloglevel. */
#ifndef CREMA_BASE_LOG_H
#define CREMA_BASE_LOG_H

#include "base/error.h"

typedef enum { CREMA_LOG_INFO = 0, CREMA_LOG_WARNING = 1, CREMA_LOG_ERROR = 2 } crema_log_level;

/* Where lines go instead of stderr (the embedding API's log callback): fn gets each whole
 * line, without its newline, on the thread that logged it. NULL restores stderr. Like the
 * level, a process-wide setting made before threads start. */
typedef void (*crema_log_sink)(void *ctx, crema_log_level level, const char *line);
void crema_log_set_sink(crema_log_sink fn, void *ctx);

void crema_log_set_min_level(crema_log_level level);
crema_log_level crema_log_min_level(void);
void crema_log_write(crema_log_level level, const char *file, int line, const char *fmt, ...)
    CREMA_PRINTF(4, 5);

#define CREMA_INFO(...) crema_log_write(CREMA_LOG_INFO, __FILE__, __LINE__, __VA_ARGS__)
#define CREMA_WARN(...) crema_log_write(CREMA_LOG_WARNING, __FILE__, __LINE__, __VA_ARGS__)
#define CREMA_ERROR_LOG(...) crema_log_write(CREMA_LOG_ERROR, __FILE__, __LINE__, __VA_ARGS__)

#endif
