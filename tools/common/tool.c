#include "common/tool.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "base/log.h"
#include "tensor/blob.h"
#include "tensor/math.h"

/* log2 of the cycles an idle OpenBLAS worker spins before it sleeps (see crema_tool_init). */
#define CREMA_BLAS_SPIN "16"

static const char *best_coretype(void) {
#if defined(__x86_64__) && defined(__GNUC__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq"))
    return "SkylakeX";
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return "Haswell";
#endif
  return NULL;
}

void crema_tool_init(int argc, char **argv) {
  (void)argc;
  /* Past the file size limit (ulimit -f) a write fails with EFBIG, reported like a full disk,
   * instead of the signal killing the tool with a half-written temp file. */
  signal(SIGXFSZ, SIG_IGN);
  /* A memory limit for tensors (see crema_blob_set_memory_limit), e.g. to share a machine. */
  const char *mb = getenv("CREMA_MAX_MEMORY_MB");
  if (mb && atol(mb) > 0) crema_blob_set_memory_limit((size_t)atol(mb) << 20);
  if (getenv("CREMA_NO_REEXEC")) return;
  /* libgomp spin-waits between parallel regions by default; OpenBLAS's own threads then
   * compete with the spinning OpenMP workers and im2col/GEMM/element-wise loops run 5-100x
   * slower on small or shared machines (bench_conv). Sleep-waiting costs microseconds.
   * libgomp reads this when it loads, so it needs the re-exec too. */
  int again = !getenv("OMP_WAIT_POLICY") && !setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
  /* OpenBLAS's idle workers spin for 2^28 cycles (about 0.1 s) after each call before they
   * sleep, so between two GEMMs one of them holds a core the OpenMP loops and engines running
   * next need (whole nets ran 10-25% slower on 2 cores). 2^CREMA_BLAS_SPIN cycles keep
   * back-to-back GEMMs warm. Read when OpenBLAS loads, so it needs the re-exec too. */
  if (!getenv("OPENBLAS_THREAD_TIMEOUT")) again |= !setenv("OPENBLAS_THREAD_TIMEOUT", CREMA_BLAS_SPIN, 1);
  const char *core = getenv("OPENBLAS_CORETYPE") ? NULL : best_coretype();
  const char *loaded = crema_blas_corename();
  if (core && !(loaded && !strcasecmp(loaded, core))) again |= !setenv("OPENBLAS_CORETYPE", core, 1);
  if (!again) return;
  setenv("CREMA_NO_REEXEC", "1", 1); /* re-exec at most once */
  execv("/proc/self/exe", argv);
  /* exec failed: carry on with the kernel we have. */
}

void crema_tool_log_blas(void) {
  const char *env = getenv("OPENBLAS_CORETYPE");
  CREMA_INFO("BLAS: OpenBLAS kernel %s, %d threads%s%s", crema_blas_corename(), crema_blas_threads(),
             env ? ", OPENBLAS_CORETYPE=" : "", env ? env : "");
}
