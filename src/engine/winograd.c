/* winograd.c -- 3x3 stride-1 convolution by Winograd's minimal filtering, F(4x4, 3x3).
 *
 * Each 4x4 block of outputs is computed from a 6x6 tile of input as
 *     Y = A^T [ (G g G^T) (.) (B^T d B) ] A
 * with 36 multiplies per input channel where direct convolution needs 144: four times fewer.
 * Summed over input channels, the element-wise product becomes, for each of the 36 tile
 * positions xi, one matrix product M[xi] = U[xi] V[xi], with U[xi] (Cy x Cx) the transformed
 * weights and V[xi] (Cx x tiles) the transformed input: 36 large GEMMs on OpenBLAS.
 *
 * The three passes are the same machinery:
 *  - forward: V = input transform of x, M = U V, y = output transform of M (+ bias);
 *  - data gradient: a 3x3 stride-1 convolution of dy with the weights rotated by 180 degrees
 *    and their channel axes swapped, padded by 2 - pad: the forward pass again, on its own
 *    plan (this is how the reference path's col2im result is defined, too);
 *  - weight gradient: since Y is linear in U, dL/dU[xi] = dM[xi] V[xi]^T with
 *    dM = A dY A^T per tile, and dL/dg = G^T (dL/dU) G.
 * Work goes in chunks of whole images so the transformed tiles stay within a budget; they
 * live in the engines' shared workspace (workspace.h) while a pass runs.
 *
 * Accuracy: the transforms' constants (1/4, 1/6, 1/24, powers of 2 up to 8) cost a few bits,
 * and the differences from direct convolution are ~1e-6 of the output's scale in fp32, the
 * price every Winograd implementation pays (cuDNN's, oneDNN's, NNPACK's). */
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "base/clones.h"
#include "base/v8.h"
#include "engine/engine.h"
#include "engine/workspace.h"
#include "tensor/math.h"

#define WG_M 4                     /* outputs per tile side */
#define WG_A 6                     /* tile side: WG_M + 3 - 1 */
#define WG_T (WG_A * WG_A)         /* positions per tile */
#define WG_CHUNK_FLOATS (1u << 22) /* transformed tiles per chunk: 16 MB for each of V and M */
/* Fewer tile-channels (or weight pairs) than this run on one thread: a parallel region costs more than it
 * saves, and far more when another process holds the other core (the barrier waits for a time slice). */
#define PAR_MIN_TILES 2048

/* The transforms (Lavin and Gray's F(4x4,3x3), interpolation points 0, +-1, +-2, infinity):
 *   B^T = | 4  0 -5  0  1  0 |    G = | 1/4     0     0 |    A^T = | 1  1  1  1  1  0 |
 *         | 0 -4 -4  1  1  0 |        | -1/6 -1/6  -1/6 |          | 0  1 -1  2 -2  0 |
 *         | 0  4 -4 -1  1  0 |        | -1/6  1/6  -1/6 |          | 0  1  1  4  4  0 |
 *         | 0 -2 -1  2  1  0 |        | 1/24 1/12   1/6 |          | 0  1 -1  8 -8  1 |
 *         | 0  2 -1 -2  1  0 |        | 1/24 -1/12  1/6 |
 *         | 0  4  0 -5  0  1 |        | 0       0     1 |
 * B^T and A^T are applied through their factorised 1-D forms (bt1, at1, a1 below). */
static const float G[WG_A][3] = {
    {1.0f / 4, 0, 0},
    {-1.0f / 6, -1.0f / 6, -1.0f / 6},
    {-1.0f / 6, 1.0f / 6, -1.0f / 6},
    {1.0f / 24, 1.0f / 12, 1.0f / 6},
    {1.0f / 24, -1.0f / 12, 1.0f / 6},
    {0, 0, 1},
};

/* One convolution x (n, cin, h, w) -> y (n, cout, ho, wo), 3x3, stride 1, padding pad_h/pad_w,
 * weights grouped `group` ways, cut into tiles of WG_M x WG_M outputs. */
typedef struct wg_plan {
  int cin, cout, group, h, w, pad_h, pad_w, ho, wo, th, tw;
  int chunk; /* images per chunk */
} wg_plan;

struct crema_winograd_conv {
  crema_im2col_geom g;
  int n, cy, group;
  bool bias;
  wg_plan fwd, bwd;          /* bwd: the data gradient as a convolution of dy */
  size_t v_floats, m_floats; /* workspace: V then M, each for the largest chunk */
  size_t pad_floats;         /* then one padded input plane per thread */
  /* then the transformed weights [xi][cout][cin / group]: U in the forward pass; in the
   * backward pass dU (the weight gradient's accumulator), then the rotated kernel's U. Only
   * the running layer needs them, so they live in the shared workspace too (CaffeNet's three
   * 3x3 layers kept 95 MB of them per net when each layer owned its copies). */
  size_t w_floats;
  int threads; /* threads the scratch was sized for (at most that many run) */
  bool ws_reserved;
};

static size_t tiles_per_image(const wg_plan *p) { return (size_t)p->th * p->tw; }

static void plan_init(wg_plan *p, int n, int cin, int cout, int group, int h, int w, int pad_h, int pad_w) {
  p->cin = cin;
  p->cout = cout;
  p->group = group;
  p->h = h;
  p->w = w;
  p->pad_h = pad_h;
  p->pad_w = pad_w;
  p->ho = h + 2 * pad_h - 2;
  p->wo = w + 2 * pad_w - 2;
  p->th = (p->ho + WG_M - 1) / WG_M;
  p->tw = (p->wo + WG_M - 1) / WG_M;
  const size_t per_image = (size_t)WG_T * (size_t)(cin > cout ? cin : cout) * tiles_per_image(p);
  size_t chunk = WG_CHUNK_FLOATS / (per_image ? per_image : 1);
  if (chunk < 1) chunk = 1;
  if (chunk > (size_t)n) chunk = (size_t)n;
  p->chunk = (int)chunk;
}

/* ---- the transforms
 *
 * A plane's tiles are transformed 8 at a time, one tile per lane of a vector of 8 floats
 * (GCC's vector extension: two SSE operations on the baseline build, one AVX operation in
 * the AVX2 clone of the hot functions, chosen by CPU feature when the program starts). Each tile's patch is
 * gathered into its lane, then the 1-D transforms, written out with their constants folded
 * (the usual F(4,3) factorisation), run on rows and columns of the 6x6 block of vectors.
 * V and M keep tiles contiguous, so results are stored a vector at a time. */
/* v8, i8 (a comparison's lanes), load8 and v8_splat come from base/v8.h */
/* v8 values never cross a non-inlined call boundary's ABI in a way that matters: every
 * function taking or returning one is static to this file, and the two that return one are
 * always inlined (without optimisation a plain `inline` stays a call, compiled for the
 * baseline target, whose v8 result the AVX2 clone then read from the wrong registers: a
 * Debug build crashed in transform_weights). */
#pragma GCC diagnostic ignored "-Wpsabi"
#define LANES 8
/* Tiles (and kernels) per block buffer: see transform_input and transform_weights. */
#define BLK 256

#define HOT CREMA_CLONES

/* Eight whole tiles side by side in one tile row (the common case) need no gather lane by
 * lane: their row i is one run of 32 floats (plus 2 more in the input), tile l's column j at
 * 4l + j. Filling the lanes one float at a time cost a store per float and a stalled vector
 * load (store forwarding fails) per row of 8. */
#define SHUF V8_SHUF /* base/v8.h */

/* out[j] = {r[j], r[4 + j], ..., r[28 + j]} for j = 0..3: a four-way deinterleave. */
static inline void deal4(const float *r, v8 out[4]) {
  const v8 a = load8(r), b = load8(r + 8), c = load8(r + 16), d = load8(r + 24);
  const v8 ab02 = SHUF(a, b, 0, 4, 8, 12, 2, 6, 10, 14), ab13 = SHUF(a, b, 1, 5, 9, 13, 3, 7, 11, 15),
           cd02 = SHUF(c, d, 0, 4, 8, 12, 2, 6, 10, 14), cd13 = SHUF(c, d, 1, 5, 9, 13, 3, 7, 11, 15);
  out[0] = SHUF(ab02, cd02, 0, 1, 2, 3, 8, 9, 10, 11);
  out[1] = SHUF(ab13, cd13, 0, 1, 2, 3, 8, 9, 10, 11);
  out[2] = SHUF(ab02, cd02, 4, 5, 6, 7, 12, 13, 14, 15);
  out[3] = SHUF(ab13, cd13, 4, 5, 6, 7, 12, 13, 14, 15);
}

/* r[4l + j] = in[j][l]: the inverse of deal4. */
static inline void weave4(const v8 in[4], float *r) {
  const v8 lo02 = SHUF(in[0], in[2], 0, 1, 2, 3, 8, 9, 10, 11),
           hi02 = SHUF(in[0], in[2], 4, 5, 6, 7, 12, 13, 14, 15),
           lo13 = SHUF(in[1], in[3], 0, 1, 2, 3, 8, 9, 10, 11),
           hi13 = SHUF(in[1], in[3], 4, 5, 6, 7, 12, 13, 14, 15);
  /* lo02 = {c0 of tiles 0-3, c2 of tiles 0-3}; tile l's four values interleave c0..c3 */
  const v8 a = SHUF(lo02, lo13, 0, 8, 4, 12, 1, 9, 5, 13), b = SHUF(lo02, lo13, 2, 10, 6, 14, 3, 11, 7, 15),
           c = SHUF(hi02, hi13, 0, 8, 4, 12, 1, 9, 5, 13), d = SHUF(hi02, hi13, 2, 10, 6, 14, 3, 11, 7, 15);
  memcpy(r, &a, sizeof a);
  memcpy(r + 8, &b, sizeof b);
  memcpy(r + 16, &c, sizeof c);
  memcpy(r + 24, &d, sizeof d);
}

/* The 6x6 input patches of eight tiles side by side, from their top-left corner src in a
 * padded plane of row stride wp: d[i * 6 + j] lane l = src[i * wp + 4l + j]. Columns 4 and
 * 5 of tile l are columns 0 and 1 of tile l + 1, and the last tile's are floats 32, 33. */
static inline void gather_row_of_tiles(const float *src, int wp, v8 d[WG_T]) {
  for (int i = 0; i < WG_A; i++) {
    const float *r = src + (size_t)i * wp;
    v8 c[4];
    deal4(r, c);
    d[i * WG_A + 0] = c[0];
    d[i * WG_A + 1] = c[1];
    d[i * WG_A + 2] = c[2];
    d[i * WG_A + 3] = c[3];
    d[i * WG_A + 4] = SHUF(c[0], (v8){r[32]}, 1, 2, 3, 4, 5, 6, 7, 8);
    d[i * WG_A + 5] = SHUF(c[1], (v8){r[33]}, 1, 2, 3, 4, 5, 6, 7, 8);
  }
}

/* The 6x6 patches of eight tiles anywhere in one padded plane (src[l] their top-left
 * corners), for planes too narrow for eight tiles in a row (14x14 and 13x13 planes have four):
 * each patch row is loaded as one vector of 8 floats (two past the patch, inside the plane's
 * slack) and the eight tiles' rows are transposed, 8 x 8, so that d[i * 6 + j] lane l =
 * src[l][i * wp + j]. Filling the lanes a float at a time cost 36 stores per tile and a
 * stalled vector load (store forwarding fails) per position. */
static inline void gather_tiles_transposed(const float *const src[LANES], int wp, v8 d[WG_T]) {
  for (int i = 0; i < WG_A; i++) {
    v8 a[LANES];
    for (int l = 0; l < LANES; l++) a[l] = load8(src[l] + (size_t)i * wp);
    v8 t[LANES], u[LANES];
    for (int l = 0; l < LANES; l += 2) {
      t[l] = SHUF(a[l], a[l + 1], 0, 8, 1, 9, 4, 12, 5, 13);       /* unpack low */
      t[l + 1] = SHUF(a[l], a[l + 1], 2, 10, 3, 11, 6, 14, 7, 15); /* unpack high */
    }
    for (int l = 0; l < LANES; l += 4) {
      u[l] = SHUF(t[l], t[l + 2], 0, 1, 8, 9, 4, 5, 12, 13);
      u[l + 1] = SHUF(t[l], t[l + 2], 2, 3, 10, 11, 6, 7, 14, 15);
      u[l + 2] = SHUF(t[l + 1], t[l + 3], 0, 1, 8, 9, 4, 5, 12, 13);
      u[l + 3] = SHUF(t[l + 1], t[l + 3], 2, 3, 10, 11, 6, 7, 14, 15);
    }
    /* u[j] (j < 4) holds column j of tiles 0-3 in its low half, column j + 4 in its high half;
     * u[4 + j] the same for tiles 4-7 */
    for (int j = 0; j < 4; j++) d[i * WG_A + j] = SHUF(u[j], u[4 + j], 0, 1, 2, 3, 8, 9, 10, 11);
    for (int j = 4; j < WG_A; j++) d[i * WG_A + j] = SHUF(u[j - 4], u[j], 4, 5, 6, 7, 12, 13, 14, 15);
  }
}

/* r = B^T d for 6 values at stride s of d and r. */
static inline void bt1(const v8 *d, v8 *r, int s) {
  const v8 four = v8_splat(4.0f), five = v8_splat(5.0f), two = v8_splat(2.0f);
  const v8 d0 = d[0], d1 = d[s], d2 = d[2 * s], d3 = d[3 * s], d4 = d[4 * s], d5 = d[5 * s];
  const v8 a = d4 - four * d2, b = d3 - four * d1, c = d4 - d2, e = two * (d3 - d1);
  r[0] = four * d0 - five * d2 + d4;
  r[s] = a + b;
  r[2 * s] = a - b;
  r[3 * s] = c + e;
  r[4 * s] = c - e;
  r[5 * s] = four * d1 - five * d3 + d5;
}

/* o = A^T m: 4 values from 6, at strides sm and so. */
static inline void at1(const v8 *m, int sm, v8 *o, int so) {
  const v8 s12 = m[sm] + m[2 * sm], d12 = m[sm] - m[2 * sm], s34 = m[3 * sm] + m[4 * sm],
           d34 = m[3 * sm] - m[4 * sm];
  o[0] = m[0] + s12 + s34;
  o[so] = d12 + v8_splat(2.0f) * d34;
  o[2 * so] = s12 + v8_splat(4.0f) * s34;
  o[3 * so] = d12 + v8_splat(8.0f) * d34 + m[5 * sm];
}

/* r = A g: 6 values from 4 (the adjoint of at1), at strides sg and sr. */
static inline void a1(const v8 *g, int sg, v8 *r, int sr) {
  const v8 e = g[0] + g[2 * sg], o = g[sg] + g[3 * sg];
  const v8 e2 = g[0] + v8_splat(4.0f) * g[2 * sg], o2 = v8_splat(2.0f) * g[sg] + v8_splat(8.0f) * g[3 * sg];
  r[0] = g[0];
  r[sr] = e + o;
  r[2 * sr] = e - o;
  r[3 * sr] = e2 + o2;
  r[4 * sr] = e2 - o2;
  r[5 * sr] = g[3 * sg];
}

/* ---- the passes */

/* u = G g G^T for eight kernels at once, one per lane. */
static inline void tf_weight8(const v8 g[9], v8 u[WG_T]) {
  v8 t[WG_A][3];
  for (int i = 0; i < WG_A; i++)
    for (int j = 0; j < 3; j++) t[i][j] = g[j] * G[i][0] + g[3 + j] * G[i][1] + g[6 + j] * G[i][2];
  for (int i = 0; i < WG_A; i++)
    for (int j = 0; j < WG_A; j++)
      u[i * WG_A + j] = t[i][0] * G[j][0] + t[i][1] * G[j][1] + t[i][2] * G[j][2];
}

/* dg = G^T dU G (the adjoint of tf_weight8) for eight kernels at once. */
static inline void tf_weight_adjoint8(const v8 du[WG_T], v8 dg[9]) {
  v8 t[3][WG_A];
  for (int i = 0; i < 3; i++)
    for (int j = 0; j < WG_A; j++) {
      v8 s = {0};
      for (int k = 0; k < WG_A; k++) s += du[k * WG_A + j] * G[k][i];
      t[i][j] = s;
    }
  for (int i = 0; i < 3; i++)
    for (int j = 0; j < 3; j++) {
      v8 s = {0};
      for (int k = 0; k < WG_A; k++) s += t[i][k] * G[k][j];
      dg[i * 3 + j] = s;
    }
}

/* U[xi][co][ci] from weights w (cout, cin / group, 3, 3); with `rotate`, from the weights of
 * the data-gradient convolution: w'(ci, co_local) = w(co, ci_local) rotated by 180 degrees,
 * per group (so cout and cin are the data-gradient plan's). Kernels k = co * (cin/group) + ci
 * go eight at a time, one per lane, into a block buffer of BLK per position that is then
 * stored as 36 runs: a kernel at a time, with 36 scattered scalar stores each, this took 7% of
 * CaffeNet's training time on one thread (it runs twice per iteration for each 3x3 layer). */
HOT static void transform_weights(const wg_plan *p, const float *w, bool rotate, float *u) {
  const int kg = p->cin / p->group, mg = p->cout / p->group;
  const size_t plane = (size_t)p->cout * kg, blocks = (plane + BLK - 1) / BLK;
#pragma omp parallel for schedule(static) if (plane > PAR_MIN_TILES)
  for (size_t blk = 0; blk < blocks; blk++) {
    const size_t k0 = blk * BLK;
    const int nk = plane - k0 < BLK ? (int)(plane - k0) : BLK;
    float buf[WG_T][BLK] __attribute__((aligned(32)));
    for (int q = 0; q < nk; q += LANES) {
      float d[9][LANES] = {{0}};
      for (int l = 0; l < LANES && q + l < nk; l++) {
        const size_t k = k0 + (size_t)(q + l);
        if (!rotate) {
          for (int a = 0; a < 9; a++) d[a][l] = w[k * 9 + (size_t)a];
        } else {
          /* the forward weights are (cin_fwd = p->cout, cout_fwd = p->cin): element
           * (gr*kg + ci, co - gr*mg) of them, i.e. forward output gr*kg + ci, input co - gr*mg */
          const int co = (int)(k / (size_t)kg), ci = (int)(k % (size_t)kg), gr = co / mg;
          const float *src = w + ((size_t)(gr * kg + ci) * mg + (co - gr * mg)) * 9;
          for (int a = 0; a < 9; a++) d[a][l] = src[8 - a]; /* (2 - row) * 3 + (2 - col) */
        }
      }
      v8 g[9], t[WG_T];
      for (int a = 0; a < 9; a++) g[a] = load8(d[a]);
      tf_weight8(g, t);
      for (int xi = 0; xi < WG_T; xi++) memcpy(&buf[xi][q], &t[xi], sizeof t[xi]);
    }
    for (int xi = 0; xi < WG_T; xi++)
      memcpy(u + (size_t)xi * plane + k0, buf[xi], (size_t)nk * sizeof(float));
  }
}

/* dw (cout * cin/group kernels of 9) += G^T dU G, from dU[xi][kernel] (plane kernels per
 * position), eight kernels at a time. */
HOT static void add_weight_gradient(size_t plane, const float *du, float *dw) {
  const size_t blocks = (plane + LANES - 1) / LANES;
#pragma omp parallel for schedule(static) if (plane > PAR_MIN_TILES)
  for (size_t b = 0; b < blocks; b++) {
    const size_t k0 = b * LANES;
    const int nl = plane - k0 < LANES ? (int)(plane - k0) : LANES;
    v8 t[WG_T], g[9];
    for (int xi = 0; xi < WG_T; xi++) {
      float in[LANES] = {0};
      memcpy(in, du + (size_t)xi * plane + k0, (size_t)nl * sizeof(float));
      t[xi] = load8(in);
    }
    tf_weight_adjoint8(t, g);
    float o[9][LANES];
    for (int a = 0; a < 9; a++) memcpy(o[a], &g[a], sizeof o[a]);
    float *d = dw + k0 * 9; /* the eight kernels' 72 gradients are one run */
    for (int l = 0; l < nl; l++)
      for (int a = 0; a < 9; a++) d[l * 9 + a] += o[a][l]; /* parameter diffs accumulate */
  }
}

/* Tiles go through a block buffer of BLK tiles per transform position: V and M keep each
 * (position, channel) row contiguous across the chunk's images, so a channel's tiles of all
 * images are one run, and the block is stored (or loaded) with one 1 KB copy per position.
 * Writing the 36 positions of every 8 tiles straight to V cost 3-4x the arithmetic: 36
 * scattered write streams. */

/* Walks the tiles of one channel across the chunk's images in V's order (image, tile row,
 * tile column) without a division per tile. */
typedef struct tile_cursor {
  const wg_plan *p;
  size_t plane;         /* image * channels + ch */
  int channels, y0, x0; /* top-left output of the current tile */
} tile_cursor;

static inline tile_cursor cursor_start(const wg_plan *p, int ch, int channels) {
  tile_cursor t = {p, (size_t)ch, channels, 0, 0};
  return t;
}

static inline void cursor_next(tile_cursor *t) {
  t->x0 += WG_M;
  if (t->x0 < t->p->tw * WG_M) return;
  t->x0 = 0;
  t->y0 += WG_M;
  if (t->y0 < t->p->th * WG_M) return;
  t->y0 = 0;
  t->plane += (size_t)t->channels;
}

/* Tiles from the cursor's to the end of its plane, the cursor's own included. */
static inline int tiles_left_in_plane(const tile_cursor *t) {
  return t->p->th * t->p->tw - (t->y0 / WG_M * t->p->tw + t->x0 / WG_M);
}

/* The plane zero-padded to whole tiles: (th*4 + 2) x (tw*4 + 2), the input at (pad_h, pad_w),
 * so every tile's 6x6 patch is read without a bounds test. */
static size_t padded_floats(const wg_plan *p) {
  return ((size_t)p->th * WG_M + 2) * ((size_t)p->tw * WG_M + 2);
}

static void pad_plane(const wg_plan *p, const float *plane, float *out) {
  const int hp = p->th * WG_M + 2, wp = p->tw * WG_M + 2;
  for (int y = 0; y < hp; y++) {
    float *row = out + (size_t)y * wp;
    const int yy = y - p->pad_h;
    if (yy < 0 || yy >= p->h) {
      memset(row, 0, (size_t)wp * sizeof(float));
      continue;
    }
    memset(row, 0, (size_t)p->pad_w * sizeof(float));
    memcpy(row + p->pad_w, plane + (size_t)yy * p->w, (size_t)p->w * sizeof(float));
    memset(row + p->pad_w + p->w, 0, (size_t)(wp - p->pad_w - p->w) * sizeof(float));
  }
}

/* V[xi][c][tile] for images [0, nb) of x (already offset to the chunk's first image).
 * `scratch` holds `threads` padded planes. */
HOT static void transform_input(const wg_plan *p, const float *x, int nb, float *v, float *scratch,
                                int threads) {
  const size_t ptiles = tiles_per_image(p) * nb, hw = (size_t)p->h * p->w, padded = padded_floats(p);
  const int wp = p->tw * WG_M + 2;
#pragma omp parallel for schedule(static) num_threads(threads) if (ptiles * p->cin > PAR_MIN_TILES)
  for (int c = 0; c < p->cin; c++) {
    float buf[WG_T][BLK] __attribute__((aligned(32)));
    float *pl = scratch + (size_t)omp_get_thread_num() * padded;
    size_t have = (size_t)-1; /* the plane now in pl */
    tile_cursor t = cursor_start(p, c, p->cin);
    for (size_t q0 = 0; q0 < ptiles; q0 += BLK) {
      const int nq = ptiles - q0 < BLK ? (int)(ptiles - q0) : BLK;
      for (int qq = 0; qq < nq; qq += LANES) {
        v8 dv[WG_T], tt[WG_T];
        if (qq + LANES <= nq && t.x0 + WG_M * LANES <= p->tw * WG_M) { /* eight tiles in one row */
          if (t.plane != have) {
            pad_plane(p, x + t.plane * hw, pl);
            have = t.plane;
          }
          gather_row_of_tiles(pl + (size_t)t.y0 * wp + t.x0, wp, dv);
          for (int l = 0; l < LANES; l++) cursor_next(&t);
        } else if (qq + LANES <= nq && tiles_left_in_plane(&t) >= LANES) { /* eight tiles, one plane */
          if (t.plane != have) {
            pad_plane(p, x + t.plane * hw, pl);
            have = t.plane;
          }
          const float *src[LANES];
          for (int l = 0; l < LANES; l++, cursor_next(&t)) src[l] = pl + (size_t)t.y0 * wp + t.x0;
          gather_tiles_transposed(src, wp, dv);
        } else {
          float d[WG_T][LANES];
          if (nq - qq < LANES) memset(d, 0, sizeof d); /* lanes past the end stay defined */
          for (int l = 0; l < LANES && qq + l < nq; l++, cursor_next(&t)) {
            if (t.plane != have) {
              pad_plane(p, x + t.plane * hw, pl);
              have = t.plane;
            }
            const float *src = pl + (size_t)t.y0 * wp + t.x0;
            for (int i = 0; i < WG_A; i++)
              for (int j = 0; j < WG_A; j++) d[i * WG_A + j][l] = src[(size_t)i * wp + j];
          }
          for (int k = 0; k < WG_T; k++) dv[k] = load8(d[k]);
        }
        for (int j = 0; j < WG_A; j++) bt1(dv + j, tt + j, WG_A);            /* columns: B^T d */
        for (int i = 0; i < WG_A; i++) bt1(tt + i * WG_A, dv + i * WG_A, 1); /* rows: (B^T d) B */
        for (int k = 0; k < WG_T; k++) memcpy(&buf[k][qq], &dv[k], sizeof dv[k]);
      }
      for (int k = 0; k < WG_T; k++)
        memcpy(v + ((size_t)k * p->cin + c) * ptiles + q0, buf[k], (size_t)nq * sizeof(float));
    }
  }
}

/* M[xi] = U[xi] V[xi] for every transform position xi and group: 36 * group products of one
 * shape, the (xi, group) pairs at equal strides in U, V and M. */
static void multiply(const wg_plan *p, const float *u, const float *v, float *m, int nb) {
  const int kg = p->cin / p->group, mg = p->cout / p->group;
  const size_t ptiles = tiles_per_image(p) * nb;
  const crema_gemm_batch b = {.m = mg,
                              .n = (int)ptiles,
                              .k = kg,
                              .alpha = 1.0f,
                              .beta = 0.0f,
                              .a = u,
                              .lda = kg,
                              .stride_a = (size_t)mg * kg,
                              .b = v,
                              .ldb = (int)ptiles,
                              .stride_b = (size_t)kg * ptiles,
                              .c = m,
                              .ldc = (int)ptiles,
                              .stride_c = (size_t)mg * ptiles,
                              .count = WG_T * p->group};
  crema_gemm_batch_run(&b);
}

/* y (images [0, nb), overwritten) from M, plus bias[co] when bias is not NULL, through act. */
HOT static void transform_output(const wg_plan *p, const float *m, const float *bias, crema_act act, float *y,
                                 int nb) {
  const size_t ptiles = tiles_per_image(p) * nb, hw = (size_t)p->ho * p->wo;
#pragma omp parallel for schedule(static) if (ptiles * p->cout > PAR_MIN_TILES)
  for (int co = 0; co < p->cout; co++) {
    const float add = bias ? bias[co] : 0.0f;
    float buf[WG_T][BLK] __attribute__((aligned(32)));
    tile_cursor t = cursor_start(p, co, p->cout);
    for (size_t q0 = 0; q0 < ptiles; q0 += BLK) {
      const int nq = ptiles - q0 < BLK ? (int)(ptiles - q0) : BLK;
      for (int k = 0; k < WG_T; k++) {
        memcpy(buf[k], m + ((size_t)k * p->cout + co) * ptiles + q0, (size_t)nq * sizeof(float));
        memset(buf[k] + nq, 0, (size_t)((LANES - nq % LANES) % LANES) * sizeof(float));
      }
      for (int qq = 0; qq < nq; qq += LANES) {
        v8 mm[WG_T], h[WG_A * WG_M], ov[WG_M * WG_M];
        for (int k = 0; k < WG_T; k++) mm[k] = load8(&buf[k][qq]);
        for (int i = 0; i < WG_A; i++) at1(mm + i * WG_A, 1, h + i * WG_M, 1); /* rows: M A */
        for (int j = 0; j < WG_M; j++) at1(h + j, WG_M, ov + j, WG_M);         /* columns: A^T (M A) */
        for (int k = 0; k < WG_M * WG_M; k++) ov[k] += v8_splat(add);
        if (act.relu) /* relu.c's select, eight lanes at a time */
          for (int k = 0; k < WG_M * WG_M; k++) {
            const i8 pos = ov[k] > v8_splat(0.0f);
            ov[k] = v8_select(pos, ov[k], ov[k] * v8_splat(act.slope));
          }
        if (qq + LANES <= nq && t.x0 + WG_M * LANES <= p->wo && t.y0 + WG_M <= p->ho) {
          /* eight whole tiles side by side: each output row is one run of 32 floats */
          float *dst = y + t.plane * hw + (size_t)t.y0 * p->wo + t.x0;
          for (int i = 0; i < WG_M; i++) weave4(ov + i * WG_M, dst + (size_t)i * p->wo);
          for (int l = 0; l < LANES; l++) cursor_next(&t);
          continue;
        }
        float o[WG_M * WG_M][LANES];
        for (int k = 0; k < WG_M * WG_M; k++) memcpy(o[k], &ov[k], sizeof o[k]);
        for (int l = 0; l < LANES && qq + l < nq; l++, cursor_next(&t)) {
          const int ny = p->ho - t.y0 < WG_M ? p->ho - t.y0 : WG_M,
                    nx = p->wo - t.x0 < WG_M ? p->wo - t.x0 : WG_M;
          float *dst = y + t.plane * hw + (size_t)t.y0 * p->wo + t.x0;
          if (ny == WG_M && nx == WG_M) { /* a whole tile: four 4-float rows */
            for (int i = 0; i < WG_M; i++) {
              const float row[WG_M] = {o[i * WG_M][l], o[i * WG_M + 1][l], o[i * WG_M + 2][l],
                                       o[i * WG_M + 3][l]};
              memcpy(dst + (size_t)i * p->wo, row, sizeof row);
            }
            continue;
          }
          for (int i = 0; i < ny; i++)
            for (int j = 0; j < nx; j++) dst[(size_t)i * p->wo + j] = o[i * WG_M + j][l];
        }
      }
    }
  }
}

/* dM[xi][co][tile] = A dY A^T for images [0, nb) of dy (outputs beyond the edge are 0). */
HOT static void transform_output_grad(const wg_plan *p, const float *dy, float *dm, int nb) {
  const size_t ptiles = tiles_per_image(p) * nb, hw = (size_t)p->ho * p->wo;
#pragma omp parallel for schedule(static) if (ptiles * p->cout > PAR_MIN_TILES)
  for (int co = 0; co < p->cout; co++) {
    float buf[WG_T][BLK] __attribute__((aligned(32)));
    tile_cursor t = cursor_start(p, co, p->cout);
    for (size_t q0 = 0; q0 < ptiles; q0 += BLK) {
      const int nq = ptiles - q0 < BLK ? (int)(ptiles - q0) : BLK;
      for (int qq = 0; qq < nq; qq += LANES) {
        v8 g[WG_M * WG_M], h[WG_M * WG_A], r[WG_T];
        if (qq + LANES <= nq && t.x0 + WG_M * LANES <= p->wo && t.y0 + WG_M <= p->ho) {
          /* eight whole tiles side by side: each row of dy is one run of 32 floats */
          const float *src = dy + t.plane * hw + (size_t)t.y0 * p->wo + t.x0;
          for (int i = 0; i < WG_M; i++) deal4(src + (size_t)i * p->wo, g + i * WG_M);
          for (int l = 0; l < LANES; l++) cursor_next(&t);
        } else {
          float d[WG_M * WG_M][LANES] = {{0}};
          for (int l = 0; l < LANES && qq + l < nq; l++, cursor_next(&t)) {
            const int ny = p->ho - t.y0 < WG_M ? p->ho - t.y0 : WG_M,
                      nx = p->wo - t.x0 < WG_M ? p->wo - t.x0 : WG_M;
            const float *src = dy + t.plane * hw + (size_t)t.y0 * p->wo + t.x0;
            for (int i = 0; i < ny; i++)
              for (int j = 0; j < nx; j++) d[i * WG_M + j][l] = src[(size_t)i * p->wo + j];
          }
          for (int k = 0; k < WG_M * WG_M; k++) g[k] = load8(d[k]);
        }
        for (int i = 0; i < WG_M; i++) a1(g + i * WG_M, 1, h + i * WG_A, 1); /* rows: dY A^T */
        for (int j = 0; j < WG_A; j++) a1(h + j, WG_A, r + j, WG_A);         /* columns: A (dY A^T) */
        for (int k = 0; k < WG_T; k++) memcpy(&buf[k][qq], &r[k], sizeof r[k]);
      }
      for (int k = 0; k < WG_T; k++)
        memcpy(dm + ((size_t)k * p->cout + co) * ptiles + q0, buf[k], (size_t)nq * sizeof(float));
    }
  }
}

/* One whole convolution on plan p with transformed weights u: y = conv(x) (+ bias). */
static void run_plan(const wg_plan *p, int n, const float *u, const float *x, const float *bias,
                     crema_act act, float *y, float *v, float *m, float *scratch, int threads) {
  const size_t x_image = (size_t)p->cin * p->h * p->w, y_image = (size_t)p->cout * p->ho * p->wo;
  for (int b0 = 0; b0 < n; b0 += p->chunk) {
    const int nb = n - b0 < p->chunk ? n - b0 : p->chunk;
    transform_input(p, x + (size_t)b0 * x_image, nb, v, scratch, threads);
    multiply(p, u, v, m, nb);
    transform_output(p, m, bias, act, y + (size_t)b0 * y_image, nb);
  }
}

/* ---- public */

bool crema_winograd_conv_suits(const crema_im2col_geom *g, int n, int cy, int group) {
  if (g->kernel_h != 3 || g->kernel_w != 3 || g->stride_h != 1 || g->stride_w != 1 || g->dilation_h != 1 ||
      g->dilation_w != 1)
    return false;
  if (g->pad_h > 2 || g->pad_w > 2 || group < 1 || g->channels % group || cy % group) return false;
  /* Few channels per group: the GEMMs are too thin to pay for the transforms. */
  if (g->channels / group < CREMA_WINOGRAD_MIN_CHANNELS || cy / group < CREMA_WINOGRAD_MIN_CHANNELS)
    return false;
  /* Few tiles in the whole batch: the 36 GEMMs are too narrow (ResNet-50's 7x7 layers at
   * batch 10 have 40 tiles and ran at a third of the reference's speed; see engine.h). */
  const long tiles = (long)n * ((g->out_h + WG_M - 1) / WG_M) * ((g->out_w + WG_M - 1) / WG_M);
  return g->out_h >= WG_M && g->out_w >= WG_M && tiles >= CREMA_WINOGRAD_MIN_TILES;
}

int crema_winograd_conv_create(const crema_im2col_geom *g, int n, int cy, int group, bool bias,
                               crema_winograd_conv **out, crema_error *err) {
  *out = NULL;
  if (n < 1 || !crema_winograd_conv_suits(g, n, cy, group)) {
    crema_fail(err,
               "Winograd F(4x4,3x3) needs a 3x3 stride-1 undilated kernel, pad <= 2, >= %d channels and "
               ">= %d tiles",
               CREMA_WINOGRAD_MIN_CHANNELS, CREMA_WINOGRAD_MIN_TILES);
    return 1;
  }
  crema_winograd_conv *c = calloc(1, sizeof *c);
  if (!c) return crema_fail(err, "out of memory"), -1;
  c->g = *g;
  c->n = n;
  c->cy = cy;
  c->group = group;
  c->bias = bias;
  plan_init(&c->fwd, n, g->channels, cy, group, g->height, g->width, g->pad_h, g->pad_w);
  plan_init(&c->bwd, n, cy, g->channels, group, g->out_h, g->out_w, 2 - g->pad_h, 2 - g->pad_w);
  c->w_floats = (size_t)WG_T * cy * (g->channels / group);
  /* V holds the chunk's transformed input (or, in the weight gradient, x's), M the products
   * (or dy's transform); each plan's chunk keeps both within WG_CHUNK_FLOATS-ish. */
  const wg_plan *ps[2] = {&c->fwd, &c->bwd};
  for (int i = 0; i < 2; i++) {
    const size_t tiles = tiles_per_image(ps[i]) * ps[i]->chunk;
    const size_t v = (size_t)WG_T * ps[i]->cin * tiles, m = (size_t)WG_T * ps[i]->cout * tiles;
    if (v > c->v_floats) c->v_floats = v;
    if (m > c->m_floats) c->m_floats = m;
  }
  /* The weight gradient pairs the forward plan's V (x) with dM (dy) per chunk. */
  const size_t fwd_tiles = tiles_per_image(&c->fwd) * c->fwd.chunk;
  if ((size_t)WG_T * cy * fwd_tiles > c->m_floats) c->m_floats = (size_t)WG_T * cy * fwd_tiles;
  c->threads = omp_get_max_threads();
  c->pad_floats =
      padded_floats(&c->fwd) > padded_floats(&c->bwd) ? padded_floats(&c->fwd) : padded_floats(&c->bwd);
  /* + 8: gather_tiles_transposed reads two floats past a row's last tile, even on the last row */
  c->pad_floats = (c->pad_floats + 8 + 15) & ~(size_t)15;
  if (crema_engine_ws_reserve(
          (c->v_floats + c->m_floats + c->pad_floats * c->threads + c->w_floats + 48) * sizeof(float), err)) {
    crema_winograd_conv_free(c);
    return crema_fail(err, "out of memory for Winograd buffers"), -1;
  }
  c->ws_reserved = true;
  *out = c;
  return 0;
}

bool crema_winograd_conv_matches(const crema_winograd_conv *c, const crema_im2col_geom *g, int n, int cy,
                                 int group, bool bias) {
  return c && !memcmp(&c->g, g, sizeof *g) && c->n == n && c->cy == cy && c->group == group &&
         c->bias == bias;
}

static float *ws_floats(char *base, size_t offset_floats) {
  /* the workspace base is 64-byte aligned; keep M on a cache line too */
  return (float *)(void *)base + ((offset_floats + 15) & ~(size_t)15);
}

static float *scratch_of(const crema_winograd_conv *c, char *base) {
  return ws_floats(base, ((c->v_floats + 15) & ~(size_t)15) + c->m_floats);
}

static float *weights_of(const crema_winograd_conv *c, char *base) {
  return scratch_of(c, base) + c->pad_floats * c->threads; /* pad_floats is a multiple of 16 */
}

void crema_winograd_conv_forward(crema_winograd_conv *c, const float *x, const float *w, const float *bias,
                                 crema_act act, float *y) {
  char *ws = crema_engine_ws_lock();
  float *u = weights_of(c, ws);
  transform_weights(&c->fwd, w, false, u);
  run_plan(&c->fwd, c->n, u, x, c->bias ? bias : NULL, act, y, ws_floats(ws, 0), ws_floats(ws, c->v_floats),
           scratch_of(c, ws), c->threads);
  crema_engine_ws_unlock();
}

void crema_winograd_conv_backward(crema_winograd_conv *c, const float *x, const float *dy, const float *w,
                                  float *dw, float *dx) {
  char *ws = crema_engine_ws_lock();
  float *v = ws_floats(ws, 0), *m = ws_floats(ws, c->v_floats), *scratch = scratch_of(c, ws),
        *u = weights_of(c, ws); /* dU first, then the rotated kernel's U */
  if (dw) {
    const wg_plan *p = &c->fwd;
    const int kg = p->cin / p->group, mg = p->cout / p->group;
    const size_t x_image = (size_t)p->cin * p->h * p->w, y_image = (size_t)p->cout * p->ho * p->wo;
    for (int b0 = 0; b0 < c->n; b0 += p->chunk) {
      const int nb = c->n - b0 < p->chunk ? c->n - b0 : p->chunk;
      const size_t ptiles = tiles_per_image(p) * nb;
      transform_input(p, x + (size_t)b0 * x_image, nb, v, scratch, c->threads);
      transform_output_grad(p, dy + (size_t)b0 * y_image, m, nb);
      /* dU[xi] (+)= dM[xi] V[xi]^T per group: each product owns its slice of du */
      const crema_gemm_batch b = {.trans_b = true,
                                  .m = mg,
                                  .n = kg,
                                  .k = (int)ptiles,
                                  .alpha = 1.0f,
                                  .beta = b0 == 0 ? 0.0f : 1.0f,
                                  .a = m,
                                  .lda = (int)ptiles,
                                  .stride_a = (size_t)mg * ptiles,
                                  .b = v,
                                  .ldb = (int)ptiles,
                                  .stride_b = (size_t)kg * ptiles,
                                  .c = u,
                                  .ldc = kg,
                                  .stride_c = (size_t)mg * kg,
                                  .count = WG_T * p->group};
      crema_gemm_batch_run(&b);
    }
    add_weight_gradient((size_t)p->cout * kg, u, dw);
  }
  if (dx) {
    transform_weights(&c->bwd, w, true, u);
    run_plan(&c->bwd, c->n, u, dy, NULL, (crema_act){0}, dx, v, m, scratch, c->threads);
  }
  crema_engine_ws_unlock();
}

void crema_winograd_conv_free(crema_winograd_conv *c) {
  if (!c) return;
  if (c->ws_reserved) crema_engine_ws_release();
  free(c);
}
