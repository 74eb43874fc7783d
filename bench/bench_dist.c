/* bench_dist.c -- data-parallel training throughput: images per second of LeNet (batch 64
 * per process) and CaffeNet (batch 16 per process) SGD training on 1 process and on 2
 * processes under mpirun, and the seconds per iteration spent in the gradient allreduce
 * that backward did not hide (with the buckets started during backward, and without).
 *
 *   bench_dist [--zoo DIR] [--lenet_iters N] [--caffenet_iters N]
 *
 * Each configuration runs in its own process(es) -- OpenBLAS and OpenMP fix their thread
 * counts when they load -- started by this program: `bench_dist --child ...` alone, or under
 * `mpirun -np 2`. The nets are the zoo's train_val nets with the Data layers replaced by a
 * DummyData layer (Gaussian images, so no disk in the loop). Every process uses 1 thread
 * unless the row says otherwise; the table names the BLAS kernel. Compare rows of one run.
 * Columns: images/s of all processes together; wall and CPU seconds per iteration (CPU of
 * rank 0's process: on a loaded machine CPU time shows the work, wall time the waiting);
 * seconds per iteration spent after backward waiting for the allreduce (exposed, i.e. not
 * overlapped) and from the first bucket's start to the last one's end; gradient MB sent. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "bench_common.h"
#include "common/tool.h"
#include "dist/dist.h"
#include "proto/io.h"
#include "proto/textformat.h"
#include "solver/solver.h"
#include "tensor/math.h"

/* The zoo net without its Data layers, behind a DummyData layer of the same tops. */
static Crema__NetParameter *dummy_net(const char *path, int batch, int c, int hw, crema_error *err) {
  Crema__NetParameter *zoo = NULL;
  if (crema_read_net_param(path, &zoo, err)) return NULL;
  size_t keep = 0;
  for (size_t i = 0; i < zoo->n_layer; i++)
    if (!zoo->layer[i]->type || strcmp(zoo->layer[i]->type, "Data"))
      zoo->layer[keep++] = zoo->layer[i];
    else
      crema_message_free(zoo->layer[i]);
  zoo->n_layer = keep;
  char *body = NULL;
  if (crema_text_print(&zoo->base, &body, err)) {
    crema_message_free(zoo);
    return NULL;
  }
  crema_message_free(zoo);
  const size_t n = strlen(body) + 1024;
  char *text = malloc(n);
  if (!text) {
    free(body);
    crema_fail(err, "out of memory");
    return NULL;
  }
  snprintf(text, n,
           "layer { name: 'data' type: 'DummyData' top: 'data' top: 'label'\n"
           "  dummy_data_param { shape { dim: %d dim: %d dim: %d dim: %d } shape { dim: %d }\n"
           "    data_filler { type: 'gaussian' std: 1 } data_filler { type: 'constant' value: 1 } } }\n%s",
           batch, c, hw, hw, batch, body);
  free(body);
  Crema__NetParameter *np = NULL;
  crema_text_parse(&crema__net_parameter__descriptor, text, strlen(text), path, (ProtobufCMessage **)&np,
                   err);
  free(text);
  return np;
}

/* CPU seconds of this process (all its threads). */
static double cpu_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* One configuration, in this process: rank 0 prints "RESULT images/s exposed-s/it
 * allreduce-s/it grad-MB kernel wall-s/it cpu-s/it". */
static int child(const char *zoo, const char *net_name, int iters, bool no_overlap) {
  crema_dist *d = NULL;
  crema_error err = {{0}};
  if (crema_dist_init(&d, &err)) bench_die("dist init", &err);
  crema_log_set_min_level(CREMA_LOG_WARNING);
  const bool lenet = !strcmp(net_name, "lenet");
  const int batch = lenet ? 64 : 16, c = lenet ? 1 : 3, hw = lenet ? 28 : 227;
  char path[1024];
  snprintf(path, sizeof path, "%s/%s", zoo,
           lenet ? "mnist/lenet_train_test.prototxt" : "bvlc_reference_caffenet/train_val.prototxt");
  Crema__NetParameter *np = dummy_net(path, batch, c, hw, &err);
  if (!np) bench_die(path, &err);
  Crema__SolverParameter sp;
  crema__solver_parameter__init(&sp);
  sp.net_param = np;
  sp.has_base_lr = 1;
  sp.base_lr = 1e-4f;
  sp.has_momentum = 1;
  sp.momentum = 0.9f;
  sp.lr_policy = "fixed";
  sp.has_max_iter = 1;
  sp.max_iter = 1 << 30;
  sp.has_snapshot_after_train = 1;
  sp.snapshot_after_train = 0;
  sp.has_random_seed = 1;
  sp.random_seed = 1;
  crema_solver_options opt;
  memset(&opt, 0, sizeof opt);
  crema_solver *s = NULL;
  if (crema_solver_create(&sp, &opt, &s, &err)) bench_die("solver", &err);
  crema_message_free(np);
  crema_dist_options dopt;
  memset(&dopt, 0, sizeof dopt);
  dopt.no_overlap = no_overlap;
  if (crema_dist_attach(d, s, &dopt, &err)) bench_die("attach", &err);
  const int warm = lenet ? 20 : 2;
  if (crema_solver_step(s, warm, &err)) bench_die("warm-up", &err);
  const crema_dist_stats before = crema_dist_get_stats(d);
  const double t0 = bench_now(), c0 = cpu_seconds();
  if (crema_solver_step(s, iters, &err)) bench_die("training", &err);
  const double t = bench_now() - t0, cpu = cpu_seconds() - c0;
  const crema_dist_stats after = crema_dist_get_stats(d);
  if (crema_dist_rank(d) == 0)
    printf("RESULT %.2f %.5f %.5f %.2f %s %.5f %.5f\n", (double)batch * crema_dist_size(d) * iters / t,
           (after.exposed_seconds - before.exposed_seconds) / iters,
           (after.total_seconds - before.total_seconds) / iters, (double)after.bytes / 1e6,
           crema_blas_corename(), t / iters, cpu / iters);
  fflush(stdout);
  crema_solver_free(s);
  crema_dist_free(d);
  return 0;
}

typedef struct config {
  const char *label;
  int np, threads;
  bool no_overlap;
} config;

int main(int argc, char **argv) {
  crema_tool_init(argc, argv);
  /* default: tests/data/zoo next to this file's folder */
  char zoo_buf[1024];
  snprintf(zoo_buf, sizeof zoo_buf, "%s", __FILE__);
  char *slash = strrchr(zoo_buf, '/');
  if (slash) *slash = '\0';
  slash = strrchr(zoo_buf, '/');
  if (slash) *slash = '\0';
  strncat(zoo_buf, "/tests/data/zoo", sizeof zoo_buf - strlen(zoo_buf) - 1);
  const char *zoo = zoo_buf;
  int lenet_iters = 200, caffenet_iters = 6;
  const char *child_net = NULL;
  bool no_overlap = false;
  int child_iters = 0;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--zoo") && i + 1 < argc)
      zoo = argv[++i];
    else if (!strcmp(argv[i], "--lenet_iters") && i + 1 < argc)
      lenet_iters = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--caffenet_iters") && i + 1 < argc)
      caffenet_iters = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--child") && i + 2 < argc) {
      child_net = argv[++i];
      child_iters = atoi(argv[++i]);
    } else if (!strcmp(argv[i], "--no_overlap"))
      no_overlap = true;
    else {
      fprintf(stderr, "usage: bench_dist [--zoo DIR] [--lenet_iters N] [--caffenet_iters N]\n");
      return 2;
    }
  }
  if (child_net) return child(zoo, child_net, child_iters, no_overlap);
  if (!crema_dist_available()) {
    fprintf(stderr, "bench_dist: this build has no MPI (apt-get install libopenmpi-dev openmpi-bin)\n");
    return 1;
  }
  const config configs[] = {
      {"np=1, 1 thread", 1, 1, false},
      {"np=1, 2 threads", 1, 2, false},
      {"np=2, 1 thread each, overlapped", 2, 1, false},
      {"np=2, 1 thread each, after backward", 2, 1, true},
  };
  const char *nets[] = {"lenet", "caffenet"};
  printf("bench_dist: SGD training, DummyData input; LeNet batch 64 and CaffeNet batch 16 per process\n");
  printf("%-9s %-36s %10s %9s %8s %8s %13s %14s %8s\n", "net", "run", "images/s", "speed-up", "s/it",
         "cpu s/it", "exposed s/it", "allreduce s/it", "grad MB");
  for (int n = 0; n < 2; n++) {
    double base = 0;
    for (size_t k = 0; k < sizeof configs / sizeof configs[0]; k++) {
      const config *c = &configs[k];
      const int iters = n == 0 ? lenet_iters : caffenet_iters;
      char cmd[4096];
      if (c->np == 1)
        snprintf(cmd, sizeof cmd, "OMP_NUM_THREADS=%d OMP_WAIT_POLICY=PASSIVE %s --zoo %s --child %s %d",
                 c->threads, argv[0], zoo, nets[n], iters);
      else
        snprintf(cmd, sizeof cmd,
                 "mpirun --allow-run-as-root --oversubscribe -np %d -x OMP_NUM_THREADS=%d -x "
                 "OMP_WAIT_POLICY=PASSIVE "
                 "%s --zoo %s --child %s %d%s",
                 c->np, c->threads, argv[0], zoo, nets[n], iters, c->no_overlap ? " --no_overlap" : "");
      FILE *p = popen(cmd, "r");
      char line[512], kernel[64] = "?";
      double ips = 0, exposed = 0, total = 0, mb = 0, wall = 0, cpu = 0;
      bool got = false;
      while (p && fgets(line, sizeof line, p))
        if (sscanf(line, "RESULT %lf %lf %lf %lf %63s %lf %lf", &ips, &exposed, &total, &mb, kernel, &wall,
                   &cpu) == 7)
          got = true;
      if (p) pclose(p);
      if (!got) {
        fprintf(stderr, "bench_dist: %s failed\n", cmd);
        return 1;
      }
      if (k == 0) base = ips;
      printf("%-9s %-36s %10.1f %8.2fx %8.3f %8.3f %13.4f %14.4f %8.2f  (%s)\n", nets[n], c->label, ips,
             ips / base, wall, cpu, exposed, total, mb, kernel);
      fflush(stdout);
    }
  }
  return 0;
}
