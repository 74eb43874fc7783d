/* fc_stream.c -- a fully connected layer on a small batch, streaming its weights.
 *
 * With a batch of m <= 16 rows, every product of the layer is a matrix-vector product in
 * disguise: each weight is used m times per pass, so the time is that of moving W (CaffeNet's
 * fc6: 151 MB) through memory. A general GEMM packs W into its own blocked copy first, which
 * reads it and writes it again. Here each pass reads W (and dW) in long runs along its rows,
 * at memory speed, with the m rows of x, y or dx in cache:
 *
 *   forward          y = x W^T + b   two rows of W at a time against up to six rows of x
 *                                    (twelve dot products in registers), rows over threads;
 *   data gradient    dx = dy W       six rows of W at a time, a slice of 256 columns at a
 *                                    time, for two rows of dx (in L1) at a time; columns over
 *                                    threads, so every thread streams its half of each row;
 *   weight gradient  dW += dy^T x    six rows by 16 columns of dW in registers, updated by
 *                                    every row of x; rows over threads. When the caller
 *                                    marks dW zero, dW = dy^T x and dW is never read.
 *
 * Each pass prefetches ahead along the rows it streams (the forward pass 3 KB ahead into L2,
 * once per line; the others 2 KB ahead into L1), and reads x from a copy whose rows are spread
 * over the L1 sets (spread_rows). Measured on fc6 at batch 10 (AMD EPYC, AVX2, OpenBLAS
 * Haswell; bench_fc, idle): forward 20 ms on one thread against OpenBLAS's 46, data gradient
 * 25 against 30, weight gradient 27 against 29; on two threads 13 / 14 / 17 ms against
 * 40 / 33 / 20. At batch 1 all three run at memory speed. On an AVX-512 EPYC the forward
 * pass's new prefetch took it from 19-20.5 ms to 14-14.6 (one thread, builds alternating).
 * From batch 8 on, CPUs with AVX-512 run the forward pass and the data gradient on 16-wide
 * copies (two rows of W against ten rows of x; ten rows of dx by 32 columns against 128 rows
 * of W): fc6 at batch 10 on one thread of an AVX-512 EPYC, forward 11.5-11.7 -> 9.4-10.0 ms,
 * data gradient 12.9-13.1 -> 7.9-8.0 (a read of W: 5.0-5.3). Later (on Zen 5, a read of W
 * 3.6 ms): the 16-wide forward pass reads x from a panel and in slices that stay in L1 (see
 * pack_panel and forward_pairs_wide), its sums taken slice by slice: with W in cache it ran at
 * 95-100 GFLOP/s, bound by reading ten rows of x from L2 for every two rows of W, and now at
 * 136-152; fc6 at batch 10, one thread, 8.9-9.7 -> 7.8-8.5 ms (two threads 4.7-5.0 ->
 * 4.5-4.6). The 16-wide data gradient prefetches 1 KB ahead into L2 instead of 256 bytes
 * into L1: 7.3 -> 5.6 ms on one thread (two threads unchanged at 4.0).
 *
 * Every sum runs in a fixed order whatever the thread count (each output belongs to one
 * thread, which adds in k, slice or row order), so the bits are the same on 1 or 16 threads; they
 * differ from the reference GEMM's in the last places. The file is built with
 * -ffp-contract=fast: on CPUs with FMA the multiply-adds fuse. */
#include <omp.h>
#include <stddef.h>
#include <string.h>

#include "base/v16.h"
#include "base/v8.h"
#include "engine/engine.h"

/* Each kernel has two copies: one built for AVX2 + FMA (8-wide fused multiply-adds, one-step
 * broadcasts), chosen at run time when the CPU has them, and one for any CPU. The kernel
 * bodies are always inlined into both, so each copy is compiled for its own target. */
#define INLINE static inline __attribute__((always_inline))
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && !defined(CREMA_NO_CLONES)
#define FAST_TARGET __attribute__((target("avx2,fma")))
#define WIDE_TARGET __attribute__((target("avx512f,fma")))
#define HAVE_WIDE 1
static bool cpu_fast(void) { return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"); }
static bool cpu_wide(void) { return __builtin_cpu_supports("avx512f"); }
#else
#define FAST_TARGET
#define HAVE_WIDE 0
static bool cpu_fast(void) { return false; }
static bool cpu_wide(void) { return false; }
#endif
#define TWIN(name, params, args)                                                                             \
  FAST_TARGET static void name##_fast params { name args; }                                                  \
  static void name##_any params { name args; }

INLINE v8 zero8(void) {
  const v8 z = {0};
  return z;
}

/* Broadcasts are written as scalar * vector inside the kernels: gcc then emits one
 * vbroadcastss, where a {s, s, ...} literal in an inlined helper was built lane by lane. */

INLINE float hsum(v8 v) { return ((v[0] + v[4]) + (v[1] + v[5])) + ((v[2] + v[6]) + (v[3] + v[7])); }

/* The forward pass and the data gradient have a third copy for CPUs with AVX-512, on
 * 16-wide vectors (v16) with twice as many registers: more of x or dx stays in registers
 * per row of W read (below). Its sums run in another order than the 8-wide copies', so an
 * AVX-512 machine gives other bits than an AVX2 one (each the same on any thread count). */
#if HAVE_WIDE
INLINE float hsum16(v16 v) {
  v8 lo, hi;
  memcpy(&lo, &v, sizeof lo);
  memcpy(&hi, (const char *)&v + sizeof lo, sizeof hi);
  return hsum(lo + hi);
}
#endif

/* Images per group in the AVX-512 copies: two rows of W by ten rows of x (forward) or ten
 * rows of dx by 32 columns (data gradient) are 20 of the 32 vector registers. Larger
 * batches go in balanced groups (16 = 8 + 8). */
#define WIDE_GROUP 10

/* Smaller batches keep the 8-wide copies even with AVX-512: there the passes already run
 * near memory speed, and the data gradient's runs of 128 bytes per row (below) read W
 * slower than the 8-wide copy's long runs. fc6 on one thread, 8-wide / 16-wide, ms:
 * forward at batch 1, 2, 4, 6, 10: 5.8 / 5.9, 6.1 / 5.7, 7.5 / 6.8, 7.9 / 8.4, 11.6 / 9.6;
 * data gradient 4.2 / 6.3, 4.3 / 7.3, 5.6 / 6.9, 7.7 / 7.1, 13.0 / 8.0. */
#define WIDE_MIN_BATCH 8

/* Fewer weights than this and the layer is small enough for the reference GEMM. */
#define MIN_WEIGHTS (1 << 16)

bool crema_fc_stream_suits(int m, int n, int k) {
  return m >= 1 && m <= CREMA_FC_STREAM_MAX_BATCH && n >= 1 && k >= 8 && (long)n * k >= MIN_WEIGHTS;
}

/* The rows of x go to scratch with a stride of an odd number of 64-byte lines. With k a
 * multiple of 1024 (CaffeNet's 9216 and 4096), rows k floats apart fall in one set of the
 * 8-way L1 cache, and the ten rows a tile reads at a time evicted each other on every pass:
 * the weight gradient ran at a third of memory speed. Returns the stride. */
static int spread_rows(int m, int k, const float *x, float *scratch) {
  const int ld = crema_fc_stream_stride(k);
  for (int b = 0; b < m; b++) memcpy(scratch + (size_t)b * ld, x + (size_t)b * k, sizeof(float) * (size_t)k);
  return ld;
}

int crema_fc_stream_stride(int k) {
  const int ld = (k + 15) & ~15;
  return (ld / 16) % 2 ? ld : ld + 16;
}

size_t crema_fc_stream_scratch_floats(int m, int k) { return (size_t)m * crema_fc_stream_stride(k); }

/* ---- forward ---- */

/* One row of x against rows o, o+1 of W (o+1 only when two): s0 and s1, the sums over the
 * first kv columns, plus the columns from kv on one by one, plus the bias, into yr[o..]. */
INLINE void forward_finish(float s0, float s1, bool two, int kv, int k, const float *w0, const float *w1,
                           const float *xr, const float *bias, float *yr, int o) {
  for (int t = kv; t < k; t++) {
    s0 += w0[t] * xr[t];
    s1 += w1[t] * xr[t];
  }
  yr[o] = s0 + (bias ? bias[o] : 0.0f);
  if (two) yr[o + 1] = s1 + (bias ? bias[o + 1] : 0.0f);
}

#define FWD_AHEAD 768  /* floats: how far ahead along each row of W the prefetch reaches */
#define FWD_LOCALITY 1 /* __builtin_prefetch's locality: 1 fetches into L2, not L1 */

/* Eight columns from j: a0[b] += w0[j..] * x_b[j..], a1[b] likewise with w1. */
INLINE void forward_step(int B, const float *w0, const float *w1, const float *const *xb, int j, v8 *a0,
                         v8 *a1) {
  const v8 v0 = load8(w0), v1 = load8(w1);
  v8 xv[6];
#pragma GCC unroll 6
  for (int b = 0; b < 6; b++)
    if (b < B) xv[b] = load8(xb[b] + j);
#pragma GCC unroll 6
  for (int b = 0; b < 6; b++)
    if (b < B) {
      a0[b] += v0 * xv[b];
      a1[b] += v1 * xv[b];
    }
}

/* y[b][o..o+1] for the B (1..6) rows of x from b0: two rows of W against B rows of x, twelve
 * accumulators at most. A last odd row of W (two == false) reads row o twice and drops it. */
INLINE void forward_tile(int B, bool two, int n, int k, int ldx, const float *x, const float *w,
                         const float *bias, float *y, int o, int b0) {
  const float *w0 = w + (size_t)o * k, *w1 = two ? w0 + k : w0;
  const float *xb[6];
  v8 a0[6], a1[6];
#pragma GCC unroll 6
  for (int b = 0; b < 6; b++) {
    xb[b] = x + (size_t)(b0 + (b < B ? b : 0)) * ldx;
    a0[b] = a1[b] = zero8();
  }
  const int kv = k & ~7;
  int j = 0;
  for (; j + 16 <= kv; j += 16) {
    /* one prefetch per 64-byte line of each row, into L2: one every 32 bytes, into L1, kept
     * the pass at 19-20.5 ms for fc6 at batch 10 on one thread (now 14-14.6) */
    __builtin_prefetch(w0 + j + FWD_AHEAD, 0, FWD_LOCALITY);
    __builtin_prefetch(w1 + j + FWD_AHEAD, 0, FWD_LOCALITY);
    forward_step(B, w0 + j, w1 + j, xb, j, a0, a1);
    forward_step(B, w0 + j + 8, w1 + j + 8, xb, j + 8, a0, a1);
  }
  if (j < kv) forward_step(B, w0 + j, w1 + j, xb, j, a0, a1);
#pragma GCC unroll 6
  for (int b = 0; b < 6; b++)
    if (b < B) {
      forward_finish(hsum(a0[b]), hsum(a1[b]), two, kv, k, w0, w1, xb[b], bias, y + (size_t)(b0 + b) * n, o);
    }
}

/* Rows o, o+1 of W (o+1 only when two) against every row of x, in groups of at most six. */
INLINE void forward_pair(int m, bool two, int n, int k, int ldx, const float *x, const float *w,
                         const float *bias, float *y, int o) {
  const int groups = (m + 5) / 6;
  for (int g = 0, b0 = 0; g < groups; g++) {
    const int B = (m - b0 + groups - g - 1) / (groups - g); /* balanced: 10 rows go 5 + 5 */
    switch (B) {
#define CASE(c)                                                                                              \
  case c:                                                                                                    \
    two ? forward_tile(c, true, n, k, ldx, x, w, bias, y, o, b0)                                             \
        : forward_tile(c, false, n, k, ldx, x, w, bias, y, o, b0);                                           \
    break;
      CASE(1) CASE(2) CASE(3) CASE(4) CASE(5) CASE(6)
#undef CASE
    }
    b0 += B;
  }
}

TWIN(forward_pair,
     (int m, bool two, int n, int k, int ldx, const float *x, const float *w, const float *bias, float *y,
      int o),
     (m, two, n, k, ldx, x, w, bias, y, o))

#if HAVE_WIDE
/* The AVX-512 forward pass reads x from a panel: its first kv = k & ~15 columns in blocks of
 * 16, each block holding all m rows' 16 floats one after another (row b of block jb at
 * panel + (jb * m + b) * 16). A step of the tile then reads one run of m * 64 bytes at fixed
 * offsets from one pointer, where ten rows 36 KB apart took ten pointers (more than the
 * registers: two of them were reloaded from the stack every step). */
static void pack_panel(int m, int k, const float *x, float *panel) {
  const int kv = k & ~15;
  for (int jb = 0; jb < kv / 16; jb++)
    for (int b = 0; b < m; b++)
      memcpy(panel + ((size_t)jb * m + b) * 16, x + (size_t)b * k + (size_t)jb * 16, 64);
}

/* The AVX-512 forward tile: rows o, o+1 of W (o+1 only when two) against B (1..10) rows of
 * x from b0, over columns [j0, j1) of the panel, 16 a step. Each x vector is loaded once into
 * a register and used twice (the empty asm keeps gcc from folding it into both multiply-adds
 * as two loads). The slice's sums are added to y (first: written), and with the last slice
 * the columns from kv on, one by one, and the bias. The W rows eight pairs on are prefetched
 * into L1 at the same columns, for the tiles of the slice that read them next (two pairs on:
 * 7.2 ms for fc6 at batch 10 on one thread, four: 6.5, eight: 6.4; into L2: 6.6-6.9). */
INLINE void wide_forward_tile(int B, bool two, int m, int n, int k, const float *panel, const float *x,
                              const float *w, const float *bias, float *y, int o, int b0, int j0, int j1) {
  const float *w0 = w + (size_t)o * k, *w1 = two ? w0 + k : w0;
  v16 a0[WIDE_GROUP], a1[WIDE_GROUP];
#pragma GCC unroll 10
  for (int b = 0; b < WIDE_GROUP; b++) a0[b] = a1[b] = (v16){0};
  const int kv = k & ~15;
  const float *p = panel + ((size_t)(j0 / 16) * m + b0) * 16;
  const size_t ahead = 16 * (size_t)k;
  for (int j = j0; j < j1; j += 16, p += (size_t)m * 16) {
    __builtin_prefetch(w0 + ahead + j, 0, 3);
    __builtin_prefetch(w0 + ahead + k + j, 0, 3);
    const v16 v0 = load16(w0 + j), v1 = load16(w1 + j);
#pragma GCC unroll 10
    for (int b = 0; b < WIDE_GROUP; b++)
      if (b < B) {
        v16 xv = load16(p + (size_t)b * 16);
        __asm__("" : "+v"(xv));
        a0[b] += v0 * xv;
        a1[b] += v1 * xv;
      }
  }
#pragma GCC unroll 10
  for (int b = 0; b < WIDE_GROUP; b++)
    if (b < B) {
      float *yr = y + (size_t)(b0 + b) * n;
      float s0 = hsum16(a0[b]), s1 = hsum16(a1[b]);
      if (j0 > 0) {
        s0 = yr[o] + s0;
        if (two) s1 = yr[o + 1] + s1;
      }
      if (j1 == kv) {
        forward_finish(s0, s1, two, kv, k, w0, w1, x + (size_t)(b0 + b) * k, bias, yr, o);
      } else {
        yr[o] = s0;
        if (two) yr[o + 1] = s1;
      }
    }
}

/* Columns of x per slice: the panel's slice (m rows) stays in L1 (24 KB of its 48) while the
 * thread's rows of W pass over it. */
static int wide_slice(int m) {
  const int c = 6144 / m & ~15;
  return c < 256 ? 256 : c;
}

WIDE_TARGET static void forward_pairs_wide(int m, int n, int k, const float *panel, const float *x,
                                           const float *w, const float *bias, float *y, int p0, int p1) {
  const int groups = (m + WIDE_GROUP - 1) / WIDE_GROUP, kv = k & ~15, slice = wide_slice(m);
  for (int j0 = 0; j0 < kv || j0 == 0; j0 += slice) {
    const int j1 = kv - j0 < slice ? kv : j0 + slice;
    for (int p = p0; p < p1; p++) {
      const int o = 2 * p;
      const bool two = o + 1 < n;
      for (int g = 0, b0 = 0; g < groups; g++) {
        const int B = (m - b0 + groups - g - 1) / (groups - g);
        switch (B) {
#define CASE(c)                                                                                              \
  case c:                                                                                                    \
    two ? wide_forward_tile(c, true, m, n, k, panel, x, w, bias, y, o, b0, j0, j1)                           \
        : wide_forward_tile(c, false, m, n, k, panel, x, w, bias, y, o, b0, j0, j1);                         \
    break;
          CASE(1) CASE(2) CASE(3) CASE(4) CASE(5) CASE(6) CASE(7) CASE(8) CASE(9) CASE(10)
#undef CASE
        }
        b0 += B;
      }
    }
    if (j1 == kv) break;
  }
}
#endif

void crema_fc_stream_forward(int m, int n, int k, const float *x, const float *w, const float *bias, float *y,
                             float *scratch) {
  const int pairs = (n + 1) / 2;
#if HAVE_WIDE
  if (m >= WIDE_MIN_BATCH && cpu_wide()) {
    pack_panel(m, k, x, scratch);
    /* each thread its own run of pairs, slice by slice (the same split on any thread count
     * gives each output the same sums) */
#pragma omp parallel
    {
      const int t = omp_get_thread_num(), nt = omp_get_num_threads();
      forward_pairs_wide(m, n, k, scratch, x, w, bias, y, (int)((long)pairs * t / nt),
                         (int)((long)pairs * (t + 1) / nt));
    }
    return;
  }
#endif
  const int ldx = spread_rows(m, k, x, scratch);
  const bool fast = cpu_fast();
#pragma omp parallel for schedule(static)
  for (int p = 0; p < pairs; p++) {
    if (fast)
      forward_pair_fast(m, 2 * p + 1 < n, n, k, ldx, scratch, w, bias, y, 2 * p);
    else
      forward_pair_any(m, 2 * p + 1 < n, n, k, ldx, scratch, w, bias, y, 2 * p);
  }
}

/* ---- data gradient ---- */

#define DX_ROWS 6    /* rows of W per block: their dy values stay in registers */
#define DX_SLICE 256 /* columns per slice: two rows of dx and the W block's slice fit in L1 */

/* dx[b0 (+1)][c0..c1) += sum over the R rows o0.. of dy[b][o] W[o][c0..c1); c1 - c0 a
 * multiple of 8. The first block (first) writes instead of adding. */
INLINE void dx_slice(int R, bool pair, bool first, int n, int k, const float *dy, const float *w, float *dx,
                     int o0, int b0, int c0, int c1) {
  float d0[DX_ROWS], d1[DX_ROWS];
  const float *wr[DX_ROWS];
#pragma GCC unroll 6
  for (int r = 0; r < DX_ROWS; r++) {
    const int o = o0 + (r < R ? r : 0); /* rows past R are never read */
    d0[r] = dy[(size_t)b0 * n + o];
    d1[r] = dy[(size_t)(pair ? b0 + 1 : b0) * n + o];
    wr[r] = w + (size_t)o * k;
  }
  float *x0 = dx + (size_t)b0 * k, *x1 = pair ? x0 + k : x0;
  for (int j = c0; j < c1; j += 8) {
    v8 a0 = first ? zero8() : load8(x0 + j), a1 = first || !pair ? zero8() : load8(x1 + j);
#pragma GCC unroll 6
    for (int r = 0; r < DX_ROWS; r++)
      if (r < R) {
        __builtin_prefetch(wr[r] + j + DX_SLICE, 0, 3); /* the next slice of the row */
        const v8 v = load8(wr[r] + j);
        a0 += d0[r] * v;
        if (pair) a1 += d1[r] * v;
      }
    store8(x0 + j, a0);
    if (pair) store8(x1 + j, a1);
  }
}

/* One block of R rows of W over the columns [j0, j1) (a multiple of 8 wide), slice by slice,
 * each slice for every pair of dx rows. */
INLINE void dx_block(int R, int m, int n, int k, const float *dy, const float *w, float *dx, int o0, int j0,
                     int j1) {
  const bool first = o0 == 0;
  for (int c0 = j0; c0 < j1; c0 += DX_SLICE) {
    const int c1 = c0 + DX_SLICE < j1 ? c0 + DX_SLICE : j1;
    for (int b = 0; b + 1 < m; b += 2)
      first ? dx_slice(R, true, true, n, k, dy, w, dx, o0, b, c0, c1)
            : dx_slice(R, true, false, n, k, dy, w, dx, o0, b, c0, c1);
    if (m & 1)
      first ? dx_slice(R, false, true, n, k, dy, w, dx, o0, m - 1, c0, c1)
            : dx_slice(R, false, false, n, k, dy, w, dx, o0, m - 1, c0, c1);
  }
}

INLINE void dx_columns(int m, int n, int k, const float *dy, const float *w, float *dx, int j0, int j1) {
  for (int o0 = 0; o0 < n; o0 += DX_ROWS) {
    switch (n - o0 < DX_ROWS ? n - o0 : DX_ROWS) {
#define CASE(c)                                                                                              \
  case c: dx_block(c, m, n, k, dy, w, dx, o0, j0, j1); break;
      CASE(1) CASE(2) CASE(3) CASE(4) CASE(5) CASE(6)
#undef CASE
    }
  }
}

TWIN(dx_columns, (int m, int n, int k, const float *dy, const float *w, float *dx, int j0, int j1),
     (m, n, k, dy, w, dx, j0, j1))

#if HAVE_WIDE
#define DXW_ROWS 128  /* rows of W per block: between blocks the sums go through dx */
#define DXW_COLS 32   /* columns per tile: two vectors for each of up to ten rows of dx */
#define DXW_AHEAD 256 /* floats: how far ahead along each row the prefetch reaches */

/* The AVX-512 data gradient: dx[b0 .. b0+B)[j0 .. j1) (j1 - j0 a multiple of 32) from every
 * row of W, 128 rows at a time. The tile (B rows of dx by 32 columns) stays in registers
 * while a block's rows go by, each row's 32 weights read once for all B rows of dx with
 * dy[b][o] broadcast; then it is added to dx (written by the first block). Each block reads
 * 128 runs of 128 bytes from 128 rows at once, more streams than the hardware prefetcher
 * follows, so each run prefetches its row 1 KB ahead into L2 (256 bytes ahead into L1, the
 * next run only: 7.1-7.3 ms on one thread of a Zen 5 EPYC; 1 KB into L2: 5.4-5.6; 2 KB:
 * 6.3; 4 KB: 8.3). On fc6 at batch 10, one thread of an
 * AVX-512 EPYC (modelled outside crema): 7.7 ms against the 8-wide copy's 13.3, a read of W
 * taking 4.3; without the prefetch 12.2. */
INLINE void wide_dx_group(int B, int n, int k, const float *dy, const float *w, float *dx, int b0, int j0,
                          int j1) {
  for (int o0 = 0; o0 < n; o0 += DXW_ROWS) {
    const int o1 = o0 + DXW_ROWS < n ? o0 + DXW_ROWS : n;
    for (int j = j0; j < j1; j += DXW_COLS) {
      v16 a0[WIDE_GROUP], a1[WIDE_GROUP];
#pragma GCC unroll 10
      for (int b = 0; b < WIDE_GROUP; b++) a0[b] = a1[b] = (v16){0};
      for (int o = o0; o < o1; o++) {
        const float *wr = w + (size_t)o * k + j, *d = dy + (size_t)b0 * n + o;
        __builtin_prefetch(wr + DXW_AHEAD, 0, 1);
        __builtin_prefetch(wr + DXW_AHEAD + 16, 0, 1);
        const v16 v0 = load16(wr), v1 = load16(wr + 16);
#pragma GCC unroll 10
        for (int b = 0; b < WIDE_GROUP; b++)
          if (b < B) {
            const float db = d[(size_t)b * n];
            a0[b] += db * v0;
            a1[b] += db * v1;
          }
      }
#pragma GCC unroll 10
      for (int b = 0; b < WIDE_GROUP; b++)
        if (b < B) {
          float *r = dx + (size_t)(b0 + b) * k + j;
          store16(r, o0 == 0 ? a0[b] : load16(r) + a0[b]);
          store16(r + 16, o0 == 0 ? a1[b] : load16(r + 16) + a1[b]);
        }
    }
  }
}

WIDE_TARGET static void dx_columns_wide(int m, int n, int k, const float *dy, const float *w, float *dx,
                                        int j0, int j1) {
  const int groups = (m + WIDE_GROUP - 1) / WIDE_GROUP;
  for (int g = 0, b0 = 0; g < groups; g++) {
    const int B = (m - b0 + groups - g - 1) / (groups - g);
    switch (B) {
#define CASE(c)                                                                                              \
  case c: wide_dx_group(c, n, k, dy, w, dx, b0, j0, j1); break;
      CASE(1) CASE(2) CASE(3) CASE(4) CASE(5) CASE(6) CASE(7) CASE(8) CASE(9) CASE(10)
#undef CASE
    }
    b0 += B;
  }
}
#else
static void dx_columns_wide(int m, int n, int k, const float *dy, const float *w, float *dx, int j0, int j1) {
  dx_columns_any(m, n, k, dy, w, dx, j0, j1);
}
#endif

void crema_fc_stream_backward_data(int m, int n, int k, const float *dy, const float *w, float *dx) {
  const bool wide = m >= WIDE_MIN_BATCH && cpu_wide(), fast = cpu_fast();
  const int step = wide ? 32 : 8, vecs = k / step, kv = vecs * step;
#pragma omp parallel
  {
    /* a contiguous run of columns per thread, in whole tiles */
    const int t = omp_get_thread_num(), nt = omp_get_num_threads();
    const int j0 = (int)((long)vecs * t / nt) * step, j1 = (int)((long)vecs * (t + 1) / nt) * step;
    if (j1 > j0 && wide)
      dx_columns_wide(m, n, k, dy, w, dx, j0, j1);
    else if (j1 > j0 && fast)
      dx_columns_fast(m, n, k, dy, w, dx, j0, j1);
    else if (j1 > j0)
      dx_columns_any(m, n, k, dy, w, dx, j0, j1);
  }
  for (int b = 0; b < m; b++) /* the last k % step columns, in row order */
    for (int j = kv; j < k; j++) {
      float s = 0.0f;
      for (int o = 0; o < n; o++) s += dy[(size_t)b * n + o] * w[(size_t)o * k + j];
      dx[(size_t)b * k + j] = s;
    }
}

/* ---- weight gradient ---- */

/* Six rows by 16 columns of dW in registers. Fewer rows per tile ran slower while dW streamed
 * from memory (two rows by 40 columns: 50 ms for fc6 at batch 10 on one thread, four by 24:
 * 39, six by 16: 40), and so did no prefetch: the hardware's own did not keep six rows' reads
 * and writes in flight (six by 16 with 2 KB of prefetch ahead: 31 ms, OpenBLAS 30). */
#define DW_ROWS 6
#define DW_VECS 2
#define DW_AHEAD 512 /* floats: how far ahead along each row the prefetch reaches */

/* dW[o..o+R)[j..j+8V) += sum over b of dy[b][o+r] x[b][j..] (= with ovw: dW not read). */
INLINE void dw_tile(int R, int V, bool ovw, int m, int n, int k, int ldx, const float *dy, const float *x,
                    float *dw, int o, int j) {
  v8 a[DW_ROWS][DW_VECS];
#pragma GCC unroll 6
  for (int r = 0; r < DW_ROWS; r++)
    if (r < R) {
      float *row = dw + (size_t)(o + r) * k + j;
      if (!ovw) __builtin_prefetch(row + DW_AHEAD, 1, 3);
#pragma GCC unroll 2
      for (int v = 0; v < DW_VECS; v++)
        if (v < V) a[r][v] = ovw ? zero8() : load8(row + 8 * v);
    }
  for (int b = 0; b < m; b++) {
    const float *xr = x + (size_t)b * ldx + j, *d = dy + (size_t)b * n + o;
    v8 xv[DW_VECS];
#pragma GCC unroll 2
    for (int v = 0; v < DW_VECS; v++) xv[v] = v < V ? load8(xr + 8 * v) : zero8();
#pragma GCC unroll 6
    for (int r = 0; r < DW_ROWS; r++)
      if (r < R) {
        const float dr = d[r];
#pragma GCC unroll 2
        for (int v = 0; v < DW_VECS; v++)
          if (v < V) a[r][v] += dr * xv[v];
      }
  }
#pragma GCC unroll 6
  for (int r = 0; r < DW_ROWS; r++)
#pragma GCC unroll 2
    for (int v = 0; v < DW_VECS; v++)
      if (r < R && v < V) store8(dw + (size_t)(o + r) * k + j + 8 * v, a[r][v]);
}

/* Rows [o, o+R) of dW across all k columns: 16 at a time, then 8, then one by one. */
INLINE void dw_rows(int R, bool ovw, int m, int n, int k, int ldx, const float *dy, const float *x, float *dw,
                    int o) {
  int j = 0;
  for (; j + 8 * DW_VECS <= k; j += 8 * DW_VECS) dw_tile(R, DW_VECS, ovw, m, n, k, ldx, dy, x, dw, o, j);
  for (; j + 8 <= k; j += 8) dw_tile(R, 1, ovw, m, n, k, ldx, dy, x, dw, o, j);
  for (; j < k; j++)
    for (int r = 0; r < R; r++) {
      float s = ovw ? 0.0f : dw[(size_t)(o + r) * k + j];
      for (int b = 0; b < m; b++) s += dy[(size_t)b * n + o + r] * x[(size_t)b * ldx + j];
      dw[(size_t)(o + r) * k + j] = s;
    }
}

/* Six rows from o, or the last few one at a time. */
INLINE void dw_block(bool ovw, int m, int n, int k, int ldx, const float *dy, const float *x, float *dw,
                     int o) {
  /* ovw as a constant in each call: with it a run-time value, fc6's overwrite pass took
   * 15-20 ms instead of 14.3-15.2 (one thread) */
  if (n - o >= DW_ROWS)
    ovw ? dw_rows(DW_ROWS, true, m, n, k, ldx, dy, x, dw, o)
        : dw_rows(DW_ROWS, false, m, n, k, ldx, dy, x, dw, o);
  else
    for (int r = o; r < n; r++)
      ovw ? dw_rows(1, true, m, n, k, ldx, dy, x, dw, r) : dw_rows(1, false, m, n, k, ldx, dy, x, dw, r);
}

TWIN(dw_block, (bool ovw, int m, int n, int k, int ldx, const float *dy, const float *x, float *dw, int o),
     (ovw, m, n, k, ldx, dy, x, dw, o))

void crema_fc_stream_backward_weights(int m, int n, int k, const float *dy, const float *x, float *dw,
                                      bool overwrite, float *scratch) {
  const int ldx = spread_rows(m, k, x, scratch);
  const int blocks = (n + DW_ROWS - 1) / DW_ROWS;
  const bool fast = cpu_fast();
#pragma omp parallel for schedule(static)
  for (int i = 0; i < blocks; i++) {
    if (fast)
      dw_block_fast(overwrite, m, n, k, ldx, dy, scratch, dw, i * DW_ROWS);
    else
      dw_block_any(overwrite, m, n, k, ldx, dy, scratch, dw, i * DW_ROWS);
  }
}
