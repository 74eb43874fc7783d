/* Failing cleanly: a full disk says so with the path, a file size limit (SIGXFSZ) is reported
 * like a full disk, SIGTERM stops training like SIGINT, the temp files of killed runs are
 * removed by the next run writing there, and `crema forward` with an input too big for memory
 * fails at reshape naming the layer before computing anything. */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/fs.h"
#include "common/npy.h"
#include "data_test_util.h"
#include "support/run.h"

static char dir[256];

static void setup(void) { tmp_dir(dir); }
static void teardown(void) { remove_tree(dir); }

static bool exists(const char *name) {
  char p[1024];
  struct stat st;
  snprintf(p, sizeof p, "%s/%s", dir, name);
  return stat(p, &st) == 0;
}

/* Runs a shell command line with stdout+stderr captured into *out (caller frees); returns its
 * exit status. */
static int sh_run(const char *cmd, char **out) {
  char full[8192], log[300];
  snprintf(log, sizeof log, "%s/sh-output.txt", dir);
  snprintf(full, sizeof full, "CREMA_NO_REEXEC=1; export CREMA_NO_REEXEC; ( %s ) > '%s' 2>&1", cmd, log);
  int st = system(full);
  *out = slurp(log, NULL);
  ck_assert_ptr_nonnull(*out);
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* A pid that belonged to a process which has exited (and been reaped). */
static long dead_pid(void) {
  pid_t pid = fork();
  ck_assert_int_ge(pid, 0);
  if (pid == 0) _exit(0);
  ck_assert_int_eq(waitpid(pid, NULL, 0), pid);
  return (long)pid;
}

/* Some small PNGs and a list file for convert_imageset. */
static void write_images(int n, int side) {
  char p[512], list[1 << 14] = "";
  size_t used = 0;
  for (int i = 0; i < n; i++) {
    uint8_t *px = random_pixels(side, side, 3, (uint64_t)i);
    snprintf(p, sizeof p, "%s/im%d.png", dir, i);
    write_png(p, side, side, 3, px);
    free(px);
    used += (size_t)snprintf(list + used, sizeof list - used, "im%d.png %d\n", i, i % 3);
  }
  snprintf(p, sizeof p, "%s/list.txt", dir);
  write_text(p, list);
}

START_TEST(test_reasons) {
  char buf[512];
  ck_assert_ptr_nonnull(
      strstr(crema_io_reason(ENOSPC, "/data/x.caffemodel", buf, sizeof buf),
             "no space left on device (the file system holding \"/data/x.caffemodel\" is full)"));
  ck_assert_ptr_nonnull(strstr(crema_io_reason(EFBIG, "x", buf, sizeof buf), "file size limit (ulimit -f)"));
  ck_assert_str_eq(crema_io_reason(EACCES, "x", buf, sizeof buf), strerror(EACCES));
}
END_TEST

START_TEST(test_stale_temps_removed_by_next_run) {
  const long dead = dead_pid();
  char p[512];
  /* Leftovers of a killed run: a snapshot's temp file and a partial data set... */
  snprintf(p, sizeof p, "%s/snap_iter_100.caffemodel.tmp.%ld.0", dir, dead);
  write_text(p, "half a snapshot");
  snprintf(p, sizeof p, "%s/db.partial-%ld", dir, dead);
  ck_assert_int_eq(mkdir(p, 0775), 0);
  snprintf(p, sizeof p, "%s/db.partial-%ld/data.mdb", dir, dead);
  write_text(p, "half a data set");
  /* ...and files that must stay: a live process's temp file (pid 1 always runs), a name
   * that only looks alike, and another data set's partial folder. */
  snprintf(p, sizeof p, "%s/other.tmp.1.0", dir);
  write_text(p, "live");
  write_text(strcat(strcpy(p, dir), "/notes.tmp.txt"), "keep");
  snprintf(p, sizeof p, "%s/otherdb.partial-%ld", dir, dead);
  ck_assert_int_eq(mkdir(p, 0775), 0);

  /* The next run that writes a file there (crema upgrade) removes the dead run's temp file. */
  char *out, args[1024];
  snprintf(args, sizeof args,
           "crema upgrade '%s/tests/data/lenet/lenet_mnist_deploy.prototxt' '%s/up.prototxt'",
           CREMA_SOURCE_DIR, dir);
  ck_assert_int_eq(run_tool(dir, args, &out), 0);
  ck_assert_msg(strstr(out, "no longer running") != NULL, "%s", out);
  free(out);
  snprintf(p, sizeof p, "snap_iter_100.caffemodel.tmp.%ld.0", dead);
  ck_assert_msg(!exists(p), "the dead run's temp file must be removed");
  ck_assert(exists("other.tmp.1.0"));
  ck_assert(exists("notes.tmp.txt"));
  ck_assert(exists("up.prototxt"));

  /* convert_imageset to db removes db.partial-<dead pid>, not otherdb's. */
  write_images(2, 8);
  snprintf(args, sizeof args, "convert_imageset '%s/' '%s/list.txt' '%s/db'", dir, dir, dir);
  ck_assert_int_eq(run_tool(dir, args, &out), 0);
  free(out);
  snprintf(p, sizeof p, "db.partial-%ld", dead);
  ck_assert_msg(!exists(p), "the dead run's partial data set must be removed");
  snprintf(p, sizeof p, "otherdb.partial-%ld", dead);
  ck_assert(exists(p));
  ck_assert(exists("db"));
}
END_TEST

/* Runs cmd inside a private mount namespace with a 256 KiB tmpfs on DIR/full. Returns false
 * when this machine cannot do that (no unshare, no user namespaces): the caller then skips. */
static bool run_on_full_disk(const char *cmd, char **out, int *status) {
  char probe[512];
  snprintf(probe, sizeof probe, "unshare -rm sh -c 'mount -t tmpfs -o size=256k tmpfs %s' >/dev/null 2>&1",
           dir);
  if (system(probe) != 0) return false;
  char full[1024], wrapped[4096];
  snprintf(full, sizeof full, "%s/full", dir);
  ck_assert(mkdir(full, 0777) == 0 || errno == EEXIST);
  snprintf(wrapped, sizeof wrapped,
           "unshare -rm sh -c 'mount -t tmpfs -o size=256k tmpfs %s && %s; echo status=$?; ls -a %s'", full,
           cmd, full);
  *status = sh_run(wrapped, out);
  return true;
}

START_TEST(test_full_disk) {
  write_images(30, 96); /* 30 x 27 KB raw records: more than 256 KiB */
  char cmd[2048], *out;
  int st;
  snprintf(cmd, sizeof cmd, "%s/convert_imageset %s/ %s/list.txt %s/full/db", CREMA_BIN_DIR, dir, dir, dir);
  if (!run_on_full_disk(cmd, &out, &st)) {
    fprintf(stderr, "test_full_disk: skipped, this machine cannot mount a small tmpfs (unshare -rm)\n");
    return;
  }
  ck_assert_int_eq(st, 0);
  ck_assert_msg(strstr(out, "status=1") != NULL, "%s", out);
  ck_assert_msg(strstr(out, "no space left on device") != NULL, "%s", out);
  ck_assert_msg(strstr(out, "/full/db") != NULL, "the error names the path: %s", out);
  ck_assert_msg(strstr(strstr(out, "status=1"), "partial-") == NULL, "no partial data set is left: %s", out);
  free(out);
  /* A file (crema upgrade to text, via the atomic writer) on a disk filled up first. */
  snprintf(cmd, sizeof cmd,
           "head -c 300000 /dev/zero > %s/full/filler 2>/dev/null; %s/crema upgrade "
           "%s/tests/data/lenet/lenet_mnist_iter_10000.caffemodel %s/full/w.prototxt",
           dir, CREMA_BIN_DIR, CREMA_SOURCE_DIR, dir);
  ck_assert(run_on_full_disk(cmd, &out, &st));
  ck_assert_msg(strstr(out, "status=1") != NULL, "%s", out);
  ck_assert_msg(strstr(out, "full/w.prototxt: write failed: no space left on device") != NULL, "%s", out);
  ck_assert_msg(strstr(strstr(out, "status=1"), ".tmp.") == NULL, "no temp file is left: %s", out);
  free(out);
}
END_TEST

START_TEST(test_file_size_limit) {
  write_images(24, 64); /* 24 x 12 KB raw records: past 100 KiB (dash) or 200 KiB (bash) */
  char cmd[2048], *out;
  /* ulimit -f counts 512-byte blocks in dash: 200 = 100 KiB. The signal must not kill the tool. */
  snprintf(cmd, sizeof cmd, "ulimit -f 200; %s/convert_imageset %s/ %s/list.txt %s/db; echo status=$?",
           CREMA_BIN_DIR, dir, dir, dir);
  ck_assert_int_eq(sh_run(cmd, &out), 0);
  ck_assert_msg(strstr(out, "status=1") != NULL, "%s", out);
  ck_assert_msg(strstr(out, "file size limit (ulimit -f)") != NULL, "%s", out);
  free(out);
  ck_assert(!exists("db"));
  char p[64];
  snprintf(p, sizeof p, "db.partial-");
  DIR *d = opendir(dir);
  for (struct dirent *e; (e = readdir(d));)
    ck_assert_msg(strncmp(e->d_name, p, strlen(p)), "%s left", e->d_name);
  closedir(d);
}
END_TEST

START_TEST(test_sigterm_stops_training_like_sigint) {
  char solver[512], cmd[2048], *out;
  snprintf(solver, sizeof solver, "%s/solver.prototxt", dir);
  FILE *f = fopen(solver, "w");
  ck_assert_ptr_nonnull(f);
  fprintf(f,
          "net_param { name: 'n' layer { name: 'data' type: 'DummyData' top: 'data' top: 'label'"
          "  dummy_data_param { shape { dim: 4 dim: 5 } shape { dim: 4 } } }"
          " layer { name: 'ip' type: 'InnerProduct' bottom: 'data' top: 'ip'"
          "  inner_product_param { num_output: 2 weight_filler { type: 'xavier' } } }"
          " layer { name: 'loss' type: 'SoftmaxWithLoss' bottom: 'ip' bottom: 'label' top: 'loss' } }\n"
          "base_lr: 0.01 lr_policy: 'fixed' max_iter: 100000000 display: 0 random_seed: 1 "
          "snapshot_prefix: '%s/term'\n",
          dir);
  fclose(f);
  snprintf(cmd, sizeof cmd, "%s/crema train --solver=%s & pid=$!; sleep %s; kill -TERM $pid; wait $pid",
           CREMA_BIN_DIR, solver, getenv("CREMA_SANITIZED") ? "3" : "1");
  ck_assert_int_eq(sh_run(cmd, &out), 0);
  const char *term = strstr(out, "SIGTERM received");
  ck_assert_msg(term && strstr(term, "Snapshotting solver state") &&
                    strstr(term, "Optimization stopped early."),
                "%s", out);
  free(out);
}
END_TEST

START_TEST(test_forward_too_big_fails_at_reshape) {
  /* 1 x 1 x 1000 x 1000 into LeNet: conv1's top alone needs 151 MB, over a 64 MB limit. */
  char npy[512], outp[512], args[2048], *out;
  snprintf(npy, sizeof npy, "%s/big.npy", dir);
  snprintf(outp, sizeof outp, "%s/prob.npy", dir);
  crema_blob *b = crema_blob_new();
  crema_error err;
  ck_assert_int_eq(crema_blob_reshape4(b, 1, 1, 1000, 1000, &err), 0);
  ck_assert_int_eq(crema_npy_write(npy, b, &err), 0);
  crema_blob_free(b);
  snprintf(args, sizeof args,
           "crema forward --model '%s/tests/data/lenet/lenet_mnist_deploy.prototxt' --random-weights --input "
           "data='%s' --output prob='%s'",
           CREMA_SOURCE_DIR, npy, outp);
  char env_args[2300];
  snprintf(env_args, sizeof env_args, "CREMA_MAX_MEMORY_MB=64 %s/%s", CREMA_BIN_DIR, args);
  ck_assert_int_eq(sh_run(env_args, &out), 1);
  ck_assert_msg(strstr(out, "reshape: layer \"conv1\" (Convolution)") != NULL, "%s", out);
  ck_assert_msg(strstr(out, "more than the memory limit of 64.0 MB") != NULL, "%s", out);
  ck_assert_msg(strstr(out, "19840320 floats") != NULL, "%s", out); /* 20 x 996 x 996 */
  free(out);
  ck_assert(!exists("prob.npy"));
}
END_TEST

int main(void) {
  Suite *s = suite_create("fail_clean");
  TCase *tc = tcase_create("core");
  tcase_set_timeout(tc, 300);
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_add_test(tc, test_reasons);
  tcase_add_test(tc, test_stale_temps_removed_by_next_run);
  tcase_add_test(tc, test_full_disk);
  tcase_add_test(tc, test_file_size_limit);
  tcase_add_test(tc, test_sigterm_stops_training_like_sigint);
  tcase_add_test(tc, test_forward_too_big_fails_at_reshape);
  suite_add_tcase(s, tc);
  return test_run_suite(s);
}
