/* python.c -- see python.h. */
#include "support/python.h"

#include <stdio.h>
#include <stdlib.h>

const char *test_find_python(const char *modules) {
  const char *candidates[3] = {getenv("CREMA_PYTHON"), "/usr/bin/python3", "python3"};
  for (int i = 0; i < 3; i++) {
    char cmd[512];
    if (!candidates[i]) continue;
    snprintf(cmd, sizeof cmd, "%s -c 'import %s' >/dev/null 2>&1", candidates[i], modules);
    if (system(cmd) == 0) return candidates[i];
  }
  return NULL;
}
