#include "common/flags.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static crema_flag *find_flag(crema_flag *flags, int n, const char *name, size_t len) {
  for (int i = 0; i < n; i++)
    if (strlen(flags[i].name) == len && !strncmp(flags[i].name, name, len)) return &flags[i];
  return NULL;
}

static int unknown_flag(crema_flag *flags, int n, const char *arg, crema_error *err) {
  char list[1024] = "";
  size_t used = 0;
  for (int i = 0; i < n && used < sizeof list; i++)
    used += (size_t)snprintf(list + used, sizeof list - used, "%s--%s", i ? ", " : "", flags[i].name);
  return crema_fail(err, "unknown flag \"%s\"; valid flags: %s", arg, n ? list : "(none)");
}

static int set_value(crema_flag *f, const char *v, crema_error *err) {
  char *end = NULL;
  errno = 0;
  switch (f->kind) {
  case CREMA_FLAG_STRING: *(const char **)f->value = v; break;
  case CREMA_FLAG_INT:
  case CREMA_FLAG_SIGNED_INT: {
    const long lo = f->kind == CREMA_FLAG_INT ? 0 : INT_MIN, hi = INT_MAX;
    long x = strtol(v, &end, 10);
    if (!*v || *end || (errno && errno != ERANGE))
      return crema_fail(err, "flag --%s expects an integer, got \"%s\"", f->name, v);
    if (errno == ERANGE || x < lo || x > hi)
      return crema_fail(err, "flag --%s must be between %ld and %ld, got %s", f->name, lo, hi, v);
    *(long *)f->value = x;
    break;
  }
  case CREMA_FLAG_FLOAT: {
    double x = strtod(v, &end);
    if (!*v || *end || errno || !isfinite(x))
      return crema_fail(err, "flag --%s expects a finite number, got \"%s\"", f->name, v);
    *(double *)f->value = x;
    break;
  }
  case CREMA_FLAG_BOOL:
    if (!strcmp(v, "true") || !strcmp(v, "1") || !strcmp(v, "yes"))
      *(bool *)f->value = true;
    else if (!strcmp(v, "false") || !strcmp(v, "0") || !strcmp(v, "no"))
      *(bool *)f->value = false;
    else
      return crema_fail(err, "flag --%s expects true or false, got \"%s\"", f->name, v);
    break;
  }
  f->seen++;
  return 0;
}

int crema_flags_parse(int argc, char **argv, int first, crema_flag *flags, int n_flags, char **pos,
                      int max_pos, int *n_pos, crema_error *err) {
  *n_pos = 0;
  bool flags_done = false;
  for (int i = first; i < argc; i++) {
    const char *a = argv[i];
    if (flags_done || a[0] != '-' || a[1] == '\0') {
      if (*n_pos >= max_pos) return crema_fail(err, "too many arguments (at \"%s\")", a);
      pos[(*n_pos)++] = argv[i];
      continue;
    }
    if (!strcmp(a, "--")) {
      flags_done = true;
      continue;
    }
    const char *name = a + (a[1] == '-' ? 2 : 1);
    if (!strcmp(name, "help") || !strcmp(name, "h")) return 1;
    const char *eq = strchr(name, '=');
    size_t len = eq ? (size_t)(eq - name) : strlen(name);
    crema_flag *f = find_flag(flags, n_flags, name, len);
    if (!f && !eq && !strncmp(name, "no", 2)) { /* --noname for booleans */
      crema_flag *g = find_flag(flags, n_flags, name + 2, len - 2);
      if (g && g->kind == CREMA_FLAG_BOOL) {
        *(bool *)g->value = false;
        g->seen++;
        continue;
      }
    }
    if (!f) return unknown_flag(flags, n_flags, a, err);
    if (eq) {
      if (set_value(f, eq + 1, err)) return -1;
    } else if (f->kind == CREMA_FLAG_BOOL) {
      *(bool *)f->value = true;
      f->seen++;
    } else {
      if (i + 1 >= argc) return crema_fail(err, "flag --%s needs a value", f->name);
      if (set_value(f, argv[++i], err)) return -1;
    }
  }
  return 0;
}

void crema_flags_print(FILE *out, const crema_flag *flags, int n_flags) {
  if (n_flags) fprintf(out, "flags:\n");
  for (int i = 0; i < n_flags; i++) {
    const crema_flag *f = &flags[i];
    char def[256] = "";
    switch (f->kind) {
    case CREMA_FLAG_STRING: {
      const char *s = *(const char *const *)f->value;
      snprintf(def, sizeof def, "\"%s\"", s ? s : "");
      break;
    }
    case CREMA_FLAG_INT:
    case CREMA_FLAG_SIGNED_INT: snprintf(def, sizeof def, "%ld", *(const long *)f->value); break;
    case CREMA_FLAG_FLOAT: snprintf(def, sizeof def, "%g", *(const double *)f->value); break;
    case CREMA_FLAG_BOOL: snprintf(def, sizeof def, "%s", *(const bool *)f->value ? "true" : "false"); break;
    }
    if (strstr(f->help, "(default")) /* the help already explains the default */
      fprintf(out, "  --%-22s %s\n", f->name, f->help);
    else
      fprintf(out, "  --%-22s %s (default: %s)\n", f->name, f->help, def);
  }
}

int crema_flags_command(int argc, char **argv, const char *usage, crema_flag *flags, int n_flags, char **pos,
                        int min_pos, int max_pos, int *n_pos) {
  crema_error err = {{0}};
  int rc = crema_flags_parse(argc, argv, 1, flags, n_flags, pos, max_pos, n_pos, &err);
  if (rc == 1) {
    fputs(usage, stdout);
    crema_flags_print(stdout, flags, n_flags);
    return 0;
  }
  if (rc == 0 && *n_pos < min_pos)
    rc = crema_fail(&err, "expected %d argument%s, got %d", min_pos, min_pos == 1 ? "" : "s", *n_pos);
  if (rc < 0) {
    fprintf(stderr, "error: %s\n", err.msg);
    fputs(usage, stderr);
    crema_flags_print(stderr, flags, n_flags);
    return 2;
  }
  return -1;
}

int crema_flags_missing(const char *what, const char *usage, const crema_flag *flags, int n_flags) {
  fprintf(stderr, "error: %s must be given\n", what);
  fputs(usage, stderr);
  crema_flags_print(stderr, flags, n_flags);
  return 2;
}

int crema_flag_check_range(const char *name, long lo, long hi, const char *usage, const crema_flag *flags,
                           int n_flags) {
  for (int i = 0; i < n_flags; i++) {
    if (strcmp(flags[i].name, name) ||
        (flags[i].kind != CREMA_FLAG_INT && flags[i].kind != CREMA_FLAG_SIGNED_INT))
      continue;
    const long v = *(const long *)flags[i].value;
    if (v >= lo && v <= hi) return 0;
    fprintf(stderr, "error: flag --%s must be between %ld and %ld, got %ld\n", name, lo, hi, v);
    fputs(usage, stderr);
    crema_flags_print(stderr, flags, n_flags);
    return 2;
  }
  return 0;
}
