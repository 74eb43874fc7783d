/* Numeric flags of every tool: a negative or overflowing value is a usage error that names the
 * flag and the range, never silently ignored (--iterations=-5) or wrapped
 * (--iterations=99999999999 once became 1215752191). */
#include <check.h>
#include <limits.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "common/flags.h"
#include "data_test_util.h"
#include "support/run.h"

static int parse(const char *arg, long *iters, double *rate, crema_error *err) {
  crema_flag flags[] = {
      {"iterations", CREMA_FLAG_INT, iters, "", 0},
      {"rate", CREMA_FLAG_FLOAT, rate, "", 0},
  };
  char *argv[] = {"tool", (char *)arg};
  char *pos[1];
  int n_pos;
  return crema_flags_parse(2, argv, 1, flags, 2, pos, 1, &n_pos, err);
}

START_TEST(test_int_range_and_overflow) {
  long it = 7;
  double rate = 0;
  crema_error err;
  ck_assert_int_eq(parse("--iterations=2147483647", &it, &rate, &err), 0);
  ck_assert_int_eq(it, INT_MAX);
  ck_assert_int_eq(parse("--iterations=0", &it, &rate, &err), 0);
  ck_assert_int_eq(it, 0);
  const char *bad[] = {"--iterations=-5", "--iterations=99999999999", "--iterations=2147483648",
                       "--iterations=99999999999999999999999"};
  for (size_t i = 0; i < 4; i++) {
    it = 7;
    ck_assert_int_eq(parse(bad[i], &it, &rate, &err), -1);
    ck_assert_msg(strstr(err.msg, "--iterations must be between 0 and 2147483647") != NULL, "%s", err.msg);
    ck_assert_msg(strstr(err.msg, strchr(bad[i], '=') + 1) != NULL, "the value as given: %s", err.msg);
    ck_assert_int_eq(it, 7); /* unchanged */
  }
  ck_assert_int_eq(parse("--iterations=12abc", &it, &rate, &err), -1);
  ck_assert_msg(strstr(err.msg, "expects an integer") != NULL, "%s", err.msg);
  ck_assert_int_eq(parse("--rate=0.5", &it, &rate, &err), 0);
  ck_assert(rate == 0.5);
  ck_assert_int_eq(parse("--rate=nan", &it, &rate, &err), -1);
  ck_assert_msg(strstr(err.msg, "finite number") != NULL, "%s", err.msg);
  ck_assert_int_eq(parse("--rate=1e999", &it, &rate, &err), -1);
  /* A signed flag takes negatives, still within int. */
  long level = 0;
  crema_flag sflag[] = {{"level", CREMA_FLAG_SIGNED_INT, &level, "", 0}};
  char *argv[] = {"tool", "--level=-3", "--level=-2147483649"};
  char *pos[1];
  int n_pos;
  ck_assert_int_eq(crema_flags_parse(2, argv, 1, sflag, 1, pos, 1, &n_pos, &err), 0);
  ck_assert_int_eq(level, -3);
  ck_assert_int_eq(crema_flags_parse(3, argv, 2, sflag, 1, pos, 1, &n_pos, &err), -1);
  ck_assert_msg(strstr(err.msg, "--level must be between -2147483648 and 2147483647") != NULL, "%s", err.msg);
}
END_TEST

/* Every tool, through its front door: exit status 2 and the flag named. */
START_TEST(test_tools_refuse_bad_numbers) {
  char dir[256];
  tmp_dir(dir);
  const char *cmds[][2] = {
      {"crema train --solver=s.prototxt --iterations=-5", "--iterations must be between 0 and 2147483647"},
      {"crema train --solver=s.prototxt --iterations=99999999999", "got 99999999999"},
      {"crema train --solver=s.prototxt --seed=-1", "--seed must be between"},
      {"crema test --model=m.prototxt --iterations=-1", "--iterations must be between"},
      {"crema time --model=m.prototxt --iterations=4294967297", "--iterations must be between"},
      {"crema forward --model=m.prototxt --seed=-3", "--seed must be between"},
      {"convert_imageset --resize_width=70000 a/ b c", "--resize_width must be between 0 and 65535"},
      {"convert_imageset --max_pixels=0 a/ b c", "--max_pixels must be between 1 and"},
      {"compute_image_mean --max_pixels=-4 db", "--max_pixels must be between"},
      {"idx_to_images --images=a --labels=b --out=c --count=-2", "--count must be between"},
  };
  /* A positional number (extract_features' NUM_BATCHES) too. */
  char *out;
  ck_assert_int_eq(run_tool(dir, "extract_features w.caffemodel n.prototxt ip1 db 99999999999", &out), 1);
  ck_assert_msg(strstr(out, "num_mini_batches must be an integer between 1 and 2147483647") != NULL, "%s",
                out);
  free(out);
  for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
    char *out;
    ck_assert_msg(run_tool(dir, cmds[i][0], &out) == 2, "%s must be a usage error: %s", cmds[i][0], out);
    ck_assert_msg(strstr(out, cmds[i][1]) != NULL, "%s: expected \"%s\" in: %s", cmds[i][0], cmds[i][1], out);
    free(out);
  }
  remove_tree(dir);
}
END_TEST

int main(void) {
  Suite *s = suite_create("flags");
  TCase *tc = tcase_create("core");
  tcase_add_test(tc, test_int_range_and_overflow);
  tcase_add_test(tc, test_tools_refuse_bad_numbers);
  suite_add_tcase(s, tc);
  return test_run_suite(s);
}
