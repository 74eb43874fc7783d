/* test_dist.c -- data-parallel training under mpirun (src/dist), end to end through
 * `crema train`:
 *  - `mpirun -np N` with batch B gives the weights of one process with iter_size N and
 *    batch B (same data order) to float rounding, for N = 2 and 3, with Data (LMDB) and
 *    ImageData (shuffled list) layers;
 *  - only rank 0 tests and snapshots; a snapshot records the rank count; resuming on the
 *    same rank count continues exactly, on one process with iter_size 2 to float rounding;
 *  - SIGINT to rank 0, or rank 0's early stopping, stops every rank at one iteration;
 *  - Dropout draws differ per rank yet resume exactly;
 *  - an error on one rank, a rank killed, or a rank stuck (--dist_timeout) stops the whole
 *    job naming the rank.
 *
 * Data: 256 Fashion-MNIST images (package dataset-fashion-mnist, as test_train.c). Skipped,
 * with the reason printed, when this build has no MPI or mpirun is missing. */
#include <check.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "dist/dist.h"
#include "proto/io.h"
#include "solver/solver.h"
#include "support/run.h"

static char dir[256];
static char out[1 << 16];

/* mpirun as root (CI), more ranks than cores, one OpenMP/OpenBLAS thread per rank, no
 * single-copy shared memory (containers often forbid process_vm_readv). Under
 * sanitizers (CREMA_SANITIZED=1) `mpirun_extra` turns LeakSanitizer off in the ranks only. */
/* The equivalence checks run the reference engine (CREMA_ENGINE=caffe) in every process: with
 * the oneDNN engine, -np 3 and iter_size 3 were measured 1e-4 apart after 6 steps (its
 * convolution kernels do not promise the reference's summation order), which hides whether
 * the data-parallel sums themselves are right. */
#define MPIRUN                                                                                               \
  "mpirun --allow-run-as-root --oversubscribe --mca btl_vader_single_copy_mechanism none -x "                \
  "OMP_NUM_THREADS=1 -x OMP_WAIT_POLICY=PASSIVE -x CREMA_ENGINE=caffe %s"
static const char *mpirun_extra = "";

static int sh(const char *cmd) {
  int st = system(cmd);
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* Runs cmd in dir with stdout+stderr into <dir>/run.log, and the log's last 64 KiB into
 * `out`; returns its exit status. */
static int run(const char *cmd) {
  char full[4096], log[512];
  snprintf(log, sizeof log, "%s/run.log", dir);
  snprintf(full, sizeof full, "cd %s && (%s) > %s 2>&1", dir, cmd, log);
  const int rc = sh(full);
  out[0] = '\0';
  FILE *f = fopen(log, "r");
  if (f) {
    fseek(f, 0, SEEK_END);
    const long size = ftell(f);
    fseek(f, size > (long)sizeof out - 1 ? size - (long)sizeof out + 1 : 0, SEEK_SET);
    const size_t n = fread(out, 1, sizeof out - 1, f);
    out[n] = '\0';
    fclose(f);
  }
  return rc;
}

static const char *tail(void) {
  size_t n = strlen(out);
  return n > 3000 ? out + n - 3000 : out;
}

static int prepare(void) {
  const char *fm = getenv("CREMA_FASHION_DIR");
  if (!fm) fm = "/usr/share/datasets/fashion-mnist";
  snprintf(dir, sizeof dir, "/tmp/crema_dist_XXXXXX");
  if (!mkdtemp(dir)) return -1;
  char cmd[4096];
  snprintf(cmd, sizeof cmd,
           "set -e; cd %s; B=%s;"
           "$B/idx_to_images --images=%s/train-images-idx3-ubyte.gz --labels=%s/train-labels-idx1-ubyte.gz "
           "  --out=png --count=256 --prefix=train >/dev/null;"
           "$B/convert_imageset --gray png/ png/list.txt lmdb >/dev/null 2>&1",
           dir, CREMA_BIN_DIR, fm, fm);
  if (sh(cmd)) {
    fprintf(stderr, "test_dist: preparing the data in %s failed (Fashion-MNIST in %s?)\n", dir, fm);
    return -1;
  }
  return 0;
}

/* LeNet on 28x28 grey images from a Data or ImageData layer, batch 16, plus a test net;
 * with Dropout after ip1 when `dropout`. */
static void write_net_dropout(const char *name, bool image_data, bool dropout) {
  char path[512];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  FILE *f = fopen(path, "w");
  ck_assert_ptr_nonnull(f);
  if (image_data)
    fprintf(f,
            "layer { name: 'd' type: 'ImageData' top: 'data' top: 'label' include { phase: TRAIN }\n"
            "  transform_param { scale: 0.00390625 mirror: true }\n"
            "  image_data_param { source: '%s/png/list.txt' root_folder: '%s/png/' batch_size: 16 is_color: "
            "false "
            "shuffle: true } }\n",
            dir, dir);
  else
    fprintf(f,
            "layer { name: 'd' type: 'Data' top: 'data' top: 'label' include { phase: TRAIN }\n"
            "  transform_param { scale: 0.00390625 }\n"
            "  data_param { source: '%s/lmdb' batch_size: 16 } }\n",
            dir);
  fprintf(
      f,
      "layer { name: 'd' type: 'Data' top: 'data' top: 'label' include { phase: TEST }\n"
      "  transform_param { scale: 0.00390625 } data_param { source: '%s/lmdb' batch_size: 32 } }\n"
      "layer { name: 'conv1' type: 'Convolution' bottom: 'data' top: 'conv1'\n"
      "  convolution_param { num_output: 8 kernel_size: 5 weight_filler { type: 'xavier' } } }\n"
      "layer { name: 'pool1' type: 'Pooling' bottom: 'conv1' top: 'pool1'\n"
      "  pooling_param { pool: MAX kernel_size: 2 stride: 2 } }\n"
      "layer { name: 'conv2' type: 'Convolution' bottom: 'pool1' top: 'conv2'\n"
      "  convolution_param { num_output: 16 kernel_size: 5 weight_filler { type: 'xavier' } } }\n"
      "layer { name: 'pool2' type: 'Pooling' bottom: 'conv2' top: 'pool2'\n"
      "  pooling_param { pool: MAX kernel_size: 2 stride: 2 } }\n"
      "layer { name: 'ip1' type: 'InnerProduct' bottom: 'pool2' top: 'ip1'\n"
      "  inner_product_param { num_output: 64 weight_filler { type: 'xavier' } } }\n"
      "layer { name: 'relu1' type: 'ReLU' bottom: 'ip1' top: 'ip1' }\n"
      "%s"
      "layer { name: 'ip2' type: 'InnerProduct' bottom: 'ip1' top: 'ip2'\n"
      "  inner_product_param { num_output: 10 weight_filler { type: 'xavier' } } }\n"
      "layer { name: 'acc' type: 'Accuracy' bottom: 'ip2' bottom: 'label' top: 'accuracy' include { phase: "
      "TEST } }\n"
      "layer { name: 'loss' type: 'SoftmaxWithLoss' bottom: 'ip2' bottom: 'label' top: 'loss' }\n",
      dir,
      dropout ? "layer { name: 'drop1' type: 'Dropout' bottom: 'ip1' top: 'ip1' dropout_param { "
                "dropout_ratio: 0.5 } }\n"
              : "");
  fclose(f);
}

static void write_net(const char *name, bool image_data) { write_net_dropout(name, image_data, false); }

/* <dir>/<name>.prototxt: `iters` iterations of SGD with momentum on `net`, iter_size k,
 * snapshots every `snap` iterations (0 = only after training) under prefix <name>. */
static void write_solver(const char *name, const char *net, int iters, int k, int snap) {
  char path[512];
  snprintf(path, sizeof path, "%s/%s.prototxt", dir, name);
  FILE *f = fopen(path, "w");
  ck_assert_ptr_nonnull(f);
  fprintf(f,
          "net: '%s/%s'\ntest_iter: 2\ntest_interval: 3\nbase_lr: 0.05\nmomentum: 0.9\nweight_decay: 0.0005\n"
          "lr_policy: 'step'\ngamma: 0.5\nstepsize: 4\nmax_iter: %d\niter_size: %d\ndisplay: 1\n"
          "snapshot: %d\nsnapshot_prefix: '%s/%s'\nrandom_seed: 5\n",
          dir, net, iters, k, snap, dir, name);
  fclose(f);
}

/* Runs `crema train` on <name>.prototxt on np processes (np 0: without mpirun). */
static void train(const char *name, int np, const char *flags) {
  char cmd[2048];
  if (np > 0)
    snprintf(cmd, sizeof cmd, MPIRUN " -np %d %s/crema train --solver=%s.prototxt %s", mpirun_extra, np,
             CREMA_BIN_DIR, name, flags);
  else
    snprintf(cmd, sizeof cmd, "OMP_NUM_THREADS=1 CREMA_ENGINE=caffe %s/crema train --solver=%s.prototxt %s",
             CREMA_BIN_DIR, name, flags);
  const int rc = run(cmd);
  ck_assert_msg(rc == 0, "%s failed (%d):\n%s", cmd, rc, tail());
}

static int count(const char *text, const char *needle) {
  int n = 0;
  for (const char *p = strstr(text, needle); p; p = strstr(p + 1, needle)) n++;
  return n;
}

/* Every parameter value of a caffemodel, in order. Caller frees. */
static float *weights(const char *name, size_t *n) {
  char path[512];
  snprintf(path, sizeof path, "%s/%s.caffemodel", dir, name);
  Crema__NetParameter *np = NULL;
  crema_error err = {{0}};
  ck_assert_msg(
      !crema_read_binary_message(path, &crema__net_parameter__descriptor, (ProtobufCMessage **)&np, &err),
      "%s", err.msg);
  size_t total = 0;
  for (size_t l = 0; l < np->n_layer; l++)
    for (size_t b = 0; b < np->layer[l]->n_blobs; b++) total += np->layer[l]->blobs[b]->n_data;
  float *w = malloc((total ? total : 1) * sizeof *w);
  ck_assert_ptr_nonnull(w);
  size_t k = 0;
  for (size_t l = 0; l < np->n_layer; l++)
    for (size_t b = 0; b < np->layer[l]->n_blobs; b++) {
      memcpy(w + k, np->layer[l]->blobs[b]->data, np->layer[l]->blobs[b]->n_data * sizeof *w);
      k += np->layer[l]->blobs[b]->n_data;
    }
  crema_message_free(np);
  *n = total;
  return w;
}

/* Largest |a - b| over the two caffemodels' parameters, relative to the largest |a|. */
static double rel_diff(const char *a, const char *b) {
  size_t na, nb;
  float *x = weights(a, &na), *y = weights(b, &nb);
  ck_assert_uint_eq(na, nb);
  ck_assert_uint_gt(na, 1000);
  double d = 0.0, m = 0.0;
  for (size_t i = 0; i < na; i++) {
    d = fmax(d, fabs((double)x[i] - y[i]));
    m = fmax(m, fabs((double)x[i]));
  }
  free(x);
  free(y);
  return d / m;
}

#define TOL 2e-5 /* float rounding of a different summation order, over 6 momentum steps */

static bool have_mpi(void) {
  if (!crema_dist_available()) {
    fprintf(stderr,
            "test_dist: skipped: this build has no MPI (apt-get install libopenmpi-dev openmpi-bin)\n");
    return false;
  }
  if (sh("command -v mpirun >/dev/null 2>&1")) {
    fprintf(stderr, "test_dist: skipped: mpirun not found (apt-get install openmpi-bin)\n");
    return false;
  }
  return true;
}

/* -np n, batch 16, against one process with iter_size n (and against iter_size 1, which
 * must differ by far more than rounding, or the comparison proves nothing). */
static void check_equivalence(int n, bool image_data) {
  if (!have_mpi()) return;
  const char *net = image_data ? "net_image.prototxt" : "net_lmdb.prototxt";
  write_net(net, image_data);
  char one[64], many[64], plain[64], m1[96], m2[96], m3[96];
  snprintf(one, sizeof one, "one_k%d_%d", n, image_data);
  snprintf(many, sizeof many, "np%d_%d", n, image_data);
  snprintf(plain, sizeof plain, "plain_%d_%d", n, image_data);
  write_solver(one, net, 6, n, 0);
  write_solver(many, net, 6, 1, 0);
  write_solver(plain, net, 6, 1, 0);
  train(one, 0, "");
  train(many, n, "");
  /* Rank 0 alone tests (iterations 0, 3, 6) and logs. */
  ck_assert_int_eq(count(out, "Testing net (#0)"), 3);
  ck_assert_msg(strstr(out, "Data-parallel: "), "%s", tail());
  train(plain, 0, "");
  snprintf(m1, sizeof m1, "%s_iter_6", one);
  snprintf(m2, sizeof m2, "%s_iter_6", many);
  snprintf(m3, sizeof m3, "%s_iter_6", plain);
  const double same = rel_diff(m1, m2), other = rel_diff(m1, m3);
  fprintf(stderr,
          "test_dist: np=%d %s: max relative weight difference %.3g against iter_size %d, %.3g against "
          "iter_size 1\n",
          n, image_data ? "ImageData" : "Data", same, n, other);
  ck_assert_msg(same <= TOL, "np=%d differs from iter_size %d by %g (> %g)", n, n, same, TOL);
  ck_assert_msg(other > 100 * TOL, "iter_size 1 differs by only %g: the comparison cannot fail", other);
}

START_TEST(test_np2_equals_iter_size_2) { check_equivalence(2, false); }
END_TEST

START_TEST(test_np3_equals_iter_size_3) { check_equivalence(3, false); }
END_TEST

START_TEST(test_np2_image_data_shuffled) { check_equivalence(2, true); }
END_TEST

START_TEST(test_snapshot_and_resume) {
  if (!have_mpi()) return;
  write_net("net_lmdb.prototxt", false);
  write_solver("full", "net_lmdb.prototxt", 6, 1, 3);
  train("full", 2, "");
  /* Snapshots at 3 and 6 (rank 0 only: one set of files, no temporaries left). */
  char path[512];
  snprintf(path, sizeof path, "%s/full_iter_3.solverstate", dir);
  crema_error err = {{0}};
  ck_assert_int_eq(crema_solverstate_ranks(path, &err), 2);
  ck_assert_int_eq(run("ls | grep -c -e '\\.tmp' -e 'crema-probe' || true"), 0);
  ck_assert_msg(atoi(out) == 0, "temporary files left: %s", out);
  /* Same rank count: exactly the uninterrupted run. */
  write_solver("again", "net_lmdb.prototxt", 6, 1, 3);
  train("again", 2, "--snapshot=full_iter_3.solverstate");
  ck_assert_msg(strstr(out, "as many as now"), "%s", tail());
  ck_assert_double_eq(rel_diff("full_iter_6", "again_iter_6"), 0.0);
  /* One process with iter_size 2 from the same snapshot: the same to float rounding. */
  write_solver("single", "net_lmdb.prototxt", 6, 2, 3);
  train("single", 0, "--snapshot=full_iter_3.solverstate");
  ck_assert_msg(strstr(out, "written by 2 processes, resuming on 1"), "%s", tail());
  const double d = rel_diff("full_iter_6", "single_iter_6");
  ck_assert_msg(d <= TOL, "resumed on one process: %g", d);
  /* Three ranks from a two-rank snapshot: allowed, and says what changes. */
  write_solver("three", "net_lmdb.prototxt", 6, 1, 3);
  train("three", 3, "--snapshot=full_iter_3.solverstate");
  ck_assert_msg(strstr(out, "written by 2 processes, resuming on 3"), "%s", tail());
  snprintf(path, sizeof path, "%s/three_iter_6.solverstate", dir);
  ck_assert_int_eq(crema_solverstate_ranks(path, &err), 3);
}
END_TEST

/* Dropout draws differ per rank but derive from one common state per iteration, so a
 * resume is still exact. */
START_TEST(test_dropout_resume_exact) {
  if (!have_mpi()) return;
  write_net_dropout("net_drop.prototxt", false, true);
  write_solver("dfull", "net_drop.prototxt", 6, 1, 3);
  train("dfull", 2, "");
  write_solver("dagain", "net_drop.prototxt", 6, 1, 3);
  train("dagain", 2, "--snapshot=dfull_iter_3.solverstate");
  ck_assert_double_eq(rel_diff("dfull_iter_6", "dagain_iter_6"), 0.0);
  /* And the masks matter: without Dropout the weights differ. */
  write_net("net_lmdb.prototxt", false);
  write_solver("dnone", "net_lmdb.prototxt", 6, 1, 3);
  train("dnone", 2, "");
  ck_assert_double_gt(rel_diff("dfull_iter_6", "dnone_iter_6"), 1e-3);
}
END_TEST

/* SIGINT to rank 0 (Ctrl-C on mpirun kills every rank, Open MPI's behaviour): every rank
 * stops at the same iteration, rank 0 snapshots, the job exits 0. */
START_TEST(test_sigint_to_rank0_stops_all) {
  if (!have_mpi()) return;
  write_net("net_lmdb.prototxt", false);
  write_solver("sig", "net_lmdb.prototxt", 100000, 1, 0);
  char path[512];
  snprintf(path, sizeof path, "%s/sig.sh", dir);
  FILE *f = fopen(path, "w");
  ck_assert_ptr_nonnull(f);
  fprintf(f,
          "timeout 120 " MPIRUN " -np 2 %s/crema train --solver=sig.prototxt > sig.log 2>&1 &\n"
          "m=$!\n"
          "for i in $(seq 1 300); do\n"
          "  p=$(grep -m1 ' Iteration 2 ' sig.log | awk '{print $3}')\n"
          "  [ -n \"$p\" ] && break\n"
          "  sleep 0.2\n"
          "done\n"
          "kill -INT $p\n"
          "wait $m\n",
          mpirun_extra, CREMA_BIN_DIR);
  fclose(f);
  const int rc = run("sh sig.sh; s=$?; cat sig.log; exit $s");
  ck_assert_msg(rc == 0, "exit status %d:\n%s", rc, tail());
  ck_assert_msg(strstr(out, "SIGINT received") && strstr(out, "rank 1: stopping with rank 0") &&
                    strstr(out, "Optimization stopped early"),
                "%s", tail());
  ck_assert_int_eq(run("ls sig_iter_*.solverstate | wc -l"), 0);
  ck_assert_int_eq(atoi(out), 1);
}
END_TEST

/* Early stopping is decided by rank 0's test round; every rank stops with it. */
START_TEST(test_early_stopping_stops_all) {
  if (!have_mpi()) return;
  write_net("net_lmdb.prototxt", false);
  write_solver("es", "net_lmdb.prototxt", 100000, 1, 0);
  char path[512];
  snprintf(path, sizeof path, "%s/es.prototxt", dir);
  FILE *f = fopen(path, "a");
  ck_assert_ptr_nonnull(f);
  /* No accuracy improves by 1: the second test round (iteration 3) stops. */
  fprintf(f, "early_stopping { metric: 'accuracy' mode: MAXIMIZE patience: 1 min_delta: 1 }\n");
  fclose(f);
  train("es", 2, "");
  ck_assert_msg(strstr(out, "Early stopping at iteration 3") && strstr(out, "rank 1: stopping with rank 0"),
                "%s", tail());
}
END_TEST

START_TEST(test_error_on_one_rank_stops_all) {
  if (!have_mpi()) return;
  write_net("net_lmdb.prototxt", false);
  write_solver("good", "net_lmdb.prototxt", 2000, 1, 0);
  /* Rank 1 gets a solver whose net file does not exist. */
  char cmd[2048];
  snprintf(cmd, sizeof cmd,
           "sed 's#net_lmdb.prototxt#missing.prototxt#' good.prototxt > bad.prototxt && "
           "timeout 120 " MPIRUN " -np 1 %s/crema train --solver=good.prototxt : -np 1 %s/crema train "
           "--solver=bad.prototxt",
           mpirun_extra, CREMA_BIN_DIR, CREMA_BIN_DIR);
  const time_t t0 = time(NULL);
  const int rc = run(cmd);
  ck_assert_msg(rc != 0 && rc != 124, "exit status %d:\n%s", rc, tail());
  ck_assert_msg(strstr(out, "error: rank 1 of 2 (") && strstr(out, "missing.prototxt"), "%s", tail());
  ck_assert_msg(time(NULL) - t0 < 60, "took %ld s", (long)(time(NULL) - t0));
}
END_TEST

START_TEST(test_killed_rank_stops_all) {
  if (!have_mpi()) return;
  write_net("net_lmdb.prototxt", false);
  write_solver("long", "net_lmdb.prototxt", 100000, 1, 0);
  /* Rank 1 is killed 3 s in, while both ranks train. */
  char cmd[2048];
  snprintf(cmd, sizeof cmd,
           "timeout 120 " MPIRUN
           " -np 2 sh -c 'if [ \"$OMPI_COMM_WORLD_RANK\" = 1 ]; then (sleep 3; kill -9 $$) & "
           "fi; exec %s/crema train --solver=long.prototxt'",
           mpirun_extra, CREMA_BIN_DIR);
  const time_t t0 = time(NULL);
  const int rc = run(cmd);
  ck_assert_msg(rc != 0 && rc != 124, "exit status %d (124: hung until the timeout):\n%s", rc, tail());
  ck_assert_msg(strstr(out, "rank 1"), "the rank is not named:\n%s", tail());
  ck_assert_msg(time(NULL) - t0 < 60, "took %ld s", (long)(time(NULL) - t0));
}
END_TEST

/* A rank that stops responding (SIGSTOP) without dying: the others give up after
 * --dist_timeout seconds with an error, and the abort ends the job. */
START_TEST(test_stuck_rank_times_out) {
  if (!have_mpi()) return;
  write_net("net_lmdb.prototxt", false);
  write_solver("stuck", "net_lmdb.prototxt", 100000, 1, 0);
  char cmd[2048];
  snprintf(cmd, sizeof cmd,
           "timeout 120 " MPIRUN
           " -np 2 sh -c 'if [ \"$OMPI_COMM_WORLD_RANK\" = 1 ]; then (sleep 3; kill -STOP $$) & "
           "fi; exec %s/crema train --solver=stuck.prototxt --dist_timeout=5'",
           mpirun_extra, CREMA_BIN_DIR);
  const time_t t0 = time(NULL);
  const int rc = run(cmd);
  ck_assert_msg(rc != 0 && rc != 124, "exit status %d (124: hung until the timeout):\n%s", rc, tail());
  ck_assert_msg(strstr(out, "error: rank 0 of 2") && strstr(out, "made no progress for 5 s"), "%s", tail());
  ck_assert_msg(time(NULL) - t0 < 60, "took %ld s", (long)(time(NULL) - t0));
}
END_TEST

int main(void) {
  if (getenv("CREMA_SANITIZED")) {
    /* Open MPI leaves allocations of its dlopen-ed components (unloaded by MPI_Finalize, so
     * their stacks show as <unknown module> and cannot be suppressed by name). Ranks keep
     * ASan and UBSan; leaks of crema's own code are checked by the one-process runs here
     * and by every other suite. */
    fprintf(stderr, "test_dist: sanitized build: LeakSanitizer off inside mpirun ranks (Open MPI's own "
                    "allocations); ASan and UBSan stay on\n");
    mpirun_extra = "-x ASAN_OPTIONS=detect_leaks=0:abort_on_error=1";
  }
  if (prepare()) return EXIT_FAILURE;
  Suite *s = suite_create("dist");
  TCase *tc = tcase_create("mpirun");
  tcase_set_timeout(tc, 600);
  tcase_add_test(tc, test_np2_equals_iter_size_2);
  tcase_add_test(tc, test_np3_equals_iter_size_3);
  tcase_add_test(tc, test_np2_image_data_shuffled);
  tcase_add_test(tc, test_snapshot_and_resume);
  tcase_add_test(tc, test_dropout_resume_exact);
  tcase_add_test(tc, test_sigint_to_rank0_stops_all);
  tcase_add_test(tc, test_early_stopping_stops_all);
  tcase_add_test(tc, test_error_on_one_rank_stops_all);
  tcase_add_test(tc, test_killed_rank_stops_all);
  tcase_add_test(tc, test_stuck_rank_times_out);
  suite_add_tcase(s, tc);
  const int rc = test_run_suite(s);
  char cmd[512];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  if (sh(cmd)) fprintf(stderr, "cannot remove %s\n", dir);
  return rc;
}
