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

typedef enum { CREMA_FLAG_STRING, CREMA_FLAG_INT, CREMA_FLAG_FLOAT, CREMA_FLAG_BOOL } crema_flag_kind;

typedef struct crema_flag {
  const char *name;
  crema_flag_kind kind;
  void *value; /* const char **, long *, double *, bool * -- holds the default on entry */
  const char *help;
  /* Set by the parser: how many times the flag was given (repeatable string flags keep the
   * last value; tools that accept repeats read argv themselves or use CREMA_FLAG_LIST). */
  int seen;
} crema_flag;

/* Parses argv[first..argc). Positionals are stored in pos (capacity max_pos) and counted in
 * *n_pos. Returns 0, 1 when --help/-help/-h was given (caller prints usage), or -1 with err. */
int crema_flags_parse(int argc, char **argv, int first, crema_flag *flags, int n_flags, char **pos,
                      int max_pos, int *n_pos, crema_error *err);
/* Prints "flags:" and one line per flag with its default. */
void crema_flags_print(FILE *out, const crema_flag *flags, int n_flags);

#endif
