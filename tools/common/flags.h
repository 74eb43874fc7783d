/* flags.h -- command-line flags spelled the way Caffe's gflags spells them, so existing
 * Caffe scripts run with only the binary name changed:
 *   -name=value   --name=value   --name value   -name value
 *   booleans: --name, --name=true|false|1|0, --noname
 * Anything not starting with '-' is a positional argument ("-" alone too); "--" ends flags.
 * An unknown flag is an error that lists the valid ones. */
#ifndef CREMA_TOOLS_FLAGS_H
#define CREMA_TOOLS_FLAGS_H

#include <stdbool.h>
#include <stdio.h>

#include "base/error.h"

/* CREMA_FLAG_INT values must lie in 0..INT_MAX (counts, sizes, iterations, seeds): a negative
 * or overflowing value is an error naming the flag and the range, never ignored or wrapped.
 * CREMA_FLAG_SIGNED_INT is the same over INT_MIN..INT_MAX, for the rare flag that may be
 * negative. Tools narrow a range further with crema_flag_check_range. Both store a long.
 * CREMA_FLAG_FLOAT values must be finite. */
typedef enum {
  CREMA_FLAG_STRING,
  CREMA_FLAG_INT,
  CREMA_FLAG_FLOAT,
  CREMA_FLAG_BOOL,
  CREMA_FLAG_SIGNED_INT
} crema_flag_kind;

typedef struct crema_flag {
  const char *name;
  crema_flag_kind kind;
  void *value; /* const char **, long * (both INT kinds), double *, bool * -- holds the default on entry */
  const char *help;
  /* Set by the parser: how many times the flag was given (repeatable string flags keep the
   * last value; tools that accept repeats read argv themselves or use CREMA_FLAG_LIST). */
  int seen;
} crema_flag;

/* Parses argv[first..argc). Positionals are stored in pos (capacity max_pos) and counted in
 * *n_pos. Returns 0, 1 when --help/-help/-h was given (caller prints usage), or -1 with err. */
int crema_flags_parse(int argc, char **argv, int first, crema_flag *flags, int n_flags, char **pos,
                      int max_pos, int *n_pos, crema_error *err);
/* The front door of every tool: parses argv[1..], and
 *  - on --help prints `usage` and the flags on stdout and returns 0;
 *  - on a bad flag, or a positional count outside [min_pos, max_pos], prints "error: ..."
 *    and the usage on stderr and returns 2;
 *  - otherwise returns -1: the tool goes on with pos[0..*n_pos).
 * `usage` is the text above the flag list (it should end with a blank line). */
int crema_flags_command(int argc, char **argv, const char *usage, crema_flag *flags, int n_flags, char **pos,
                        int min_pos, int max_pos, int *n_pos);

/* For a required flag the user left out: prints "error: <what> must be given" and the usage on
 * stderr; returns 2 (the usage-error exit status). */
int crema_flags_missing(const char *what, const char *usage, const crema_flag *flags, int n_flags);

/* For a tool whose flag `name` (an INT flag in flags) has a narrower range than 0..INT_MAX:
 * returns 0 when its value is in [lo, hi], else prints "error: flag --name must be between lo
 * and hi, got v" and the usage on stderr and returns 2 (the usage-error exit status). */
int crema_flag_check_range(const char *name, long lo, long hi, const char *usage, const crema_flag *flags,
                           int n_flags);

/* Prints "flags:" and one line per flag with its default. */
void crema_flags_print(FILE *out, const crema_flag *flags, int n_flags);

#endif
