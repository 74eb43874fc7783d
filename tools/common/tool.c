#include "common/tool.h"

#include <omp.h>
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
/* Rounds an idle OpenMP worker spins before it sleeps (GOMP_SPINCOUNT): see crema_tool_init. */
#define CREMA_OMP_SPIN "10000"

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
  /* libgomp's idle workers spin for 300000 rounds after a parallel region before they sleep; OpenBLAS's own
   * threads then compete with the spinning OpenMP workers and im2col/GEMM/element-wise loops ran 5-100x
   * slower on small or shared machines (bench_conv). Never spinning (OMP_WAIT_POLICY=PASSIVE, crema's earlier
   * default) wakes a sleeping worker for every region instead, and a net runs thousands of them: on a 2-core
   * virtual machine, where a wake-up takes tens of microseconds, GoogLeNet's forward +
   * backward took 734-758 ms against 579-621 with a spin of CREMA_OMP_SPIN rounds (tens of
   * microseconds), and CaffeNet's 279-323 against 246-254. libgomp reads these when it
   * loads, so they need the re-exec too. */
  int again =
      !getenv("OMP_WAIT_POLICY") && !getenv("GOMP_SPINCOUNT") && !setenv("GOMP_SPINCOUNT", CREMA_OMP_SPIN, 1);
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
  const char *wait = getenv("OMP_WAIT_POLICY"), *spin = getenv("GOMP_SPINCOUNT");
  CREMA_INFO("OpenMP: %d threads; idle workers: OMP_WAIT_POLICY=%s, GOMP_SPINCOUNT=%s", omp_get_max_threads(),
             wait ? wait : "(unset)", spin ? spin : "(unset)");
}
