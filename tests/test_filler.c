/* Fillers: Caffe's semantics and the statistics of what they draw (constant, uniform,
 * gaussian incl. sparse, positive_unitball, xavier and msra with FAN_IN / FAN_OUT /
 * AVERAGE, bilinear exact values), plus errors and reproducibility; the chunked generators
 * they, Dropout and RReLU draw from. */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "support/run.h"
#include "proto/io.h"
#include "support/textproto.h"
#include "base/rng.h"
#include "tensor/filler.h"

static Crema__FillerParameter *filler(const char *text) {
  return (Crema__FillerParameter *)test_message(&crema__filler_parameter__descriptor, text);
}

static crema_blob *blob(int num_axes, const int *shape) {
  crema_blob *b = crema_blob_new();
  crema_error err;
  ck_assert_msg(crema_blob_reshape(b, num_axes, shape, &err) == 0, "%s", err.msg);
  return b;
}

/* Fills a fresh blob of the given shape; returns it (the caller frees). */
static crema_blob *filled(const char *text, int num_axes, const int *shape, uint64_t seed) {
  crema_blob *b = blob(num_axes, shape);
  Crema__FillerParameter *f = filler(text);
  crema_rng r;
  crema_rng_seed(&r, seed, 0);
  crema_error err;
  ck_assert_msg(crema_fill(b, f, &r, &err) == 0, "%s: %s", text, err.msg);
  crema_message_free(f);
  return b;
}

static void moments(const crema_blob *b, double *mean, double *std, float *lo, float *hi) {
  double s = 0, s2 = 0;
  *lo = INFINITY;
  *hi = -INFINITY;
  for (size_t i = 0; i < b->count; i++) {
    s += b->data[i];
    s2 += (double)b->data[i] * b->data[i];
    *lo = fminf(*lo, b->data[i]);
    *hi = fmaxf(*hi, b->data[i]);
  }
  *mean = s / (double)b->count;
  *std = sqrt(s2 / (double)b->count - *mean * *mean);
}

static const int BIG[4] = {64, 32, 7, 7}; /* 100352 values; fan_in 1568, fan_out 3136 */

START_TEST(test_constant) {
  crema_blob *b = filled("type: 'constant' value: 2.5", 4, BIG, 1);
  for (size_t i = 0; i < b->count; i++) ck_assert_float_eq(b->data[i], 2.5f);
  crema_blob_free(b);
  /* The default type is constant 0, and a NULL filler too. */
  b = filled("", 4, BIG, 1);
  ck_assert_float_eq(crema_blob_asum_data(b), 0.0f);
  crema_rng r;
  crema_rng_seed(&r, 1, 0);
  crema_fill_constant(b, 1.0f);
  ck_assert_int_eq(crema_fill(b, NULL, &r, NULL), 0);
  ck_assert_float_eq(crema_blob_asum_data(b), 0.0f);
  crema_blob_free(b);
}
END_TEST

START_TEST(test_uniform) {
  crema_blob *b = filled("type: 'uniform' min: -3 max: 5", 4, BIG, 2);
  double mean, std;
  float lo, hi;
  moments(b, &mean, &std, &lo, &hi);
  ck_assert_msg(lo >= -3.0f && hi < 5.0f, "range [%g, %g]", lo, hi);
  ck_assert_msg(lo < -2.99f && hi > 4.99f, "range [%g, %g] does not cover [-3, 5)", lo, hi);
  ck_assert_msg(fabs(mean - 1.0) < 0.03, "mean %g", mean);
  ck_assert_msg(fabs(std - 8.0 / sqrt(12.0)) < 0.02, "std %g", std);
  crema_blob_free(b);
}
END_TEST

START_TEST(test_gaussian) {
  crema_blob *b = filled("type: 'gaussian' mean: 1.5 std: 0.25", 4, BIG, 3);
  double mean, std;
  float lo, hi;
  moments(b, &mean, &std, &lo, &hi);
  ck_assert_msg(fabs(mean - 1.5) < 0.005, "mean %g", mean);
  ck_assert_msg(fabs(std - 0.25) < 0.005, "std %g", std);
  /* Normal tails: about 0.27% beyond 3 sigma. */
  size_t beyond = 0;
  for (size_t i = 0; i < b->count; i++) beyond += fabsf(b->data[i] - 1.5f) > 0.75f;
  ck_assert_msg(beyond > 150 && beyond < 450, "%zu values beyond 3 sigma", beyond);
  crema_blob_free(b);
}
END_TEST

/* sparse: each weight survives with probability sparse / shape[0]. */
START_TEST(test_gaussian_sparse) {
  const int shape[2] = {100, 1000};
  crema_blob *b = filled("type: 'gaussian' std: 1 sparse: 20", 2, shape, 4);
  size_t nonzero = 0;
  double s2 = 0;
  for (size_t i = 0; i < b->count; i++)
    if (b->data[i] != 0.0f) {
      nonzero++;
      s2 += (double)b->data[i] * b->data[i];
    }
  const double frac = (double)nonzero / (double)b->count;
  ck_assert_msg(fabs(frac - 0.2) < 0.01, "non-zero fraction %g, expected 0.2", frac);
  ck_assert_msg(fabs(sqrt(s2 / (double)nonzero) - 1.0) < 0.02, "std of kept weights %g",
                sqrt(s2 / (double)nonzero));
  crema_blob_free(b);
}
END_TEST

START_TEST(test_positive_unitball) {
  const int shape[3] = {50, 4, 5};
  crema_blob *b = filled("type: 'positive_unitball'", 3, shape, 5);
  for (int r = 0; r < 50; r++) {
    double s = 0;
    for (int j = 0; j < 20; j++) {
      const float v = b->data[r * 20 + j];
      ck_assert_msg(v >= 0.0f && v <= 1.0f, "value %g out of [0, 1]", v);
      s += v;
    }
    ck_assert_msg(fabs(s - 1.0) < 1e-5, "row %d sums to %g", r, s);
  }
  /* Not all equal: random draws, normalised. */
  ck_assert_float_ne(b->data[0], b->data[1]);
  crema_blob_free(b);
}
END_TEST

/* xavier: U(-a, a), a = sqrt(3 / n): variance 1/n. msra: N(0, 2/n). */
START_TEST(test_xavier_msra_variance_norms) {
  static const struct {
    const char *norm;
    double n;
  } norms[] = {{"", 1568},
               {"variance_norm: FAN_IN", 1568},
               {"variance_norm: FAN_OUT", 3136},
               {"variance_norm: AVERAGE", 2352}};
  for (size_t t = 0; t < 4; t++) {
    char text[128];
    strcpy(text, "type: 'xavier' ");
    strcat(text, norms[t].norm);
    crema_blob *b = filled(text, 4, BIG, 10 + t);
    double mean, std;
    float lo, hi;
    moments(b, &mean, &std, &lo, &hi);
    const double a = sqrt(3.0 / norms[t].n);
    ck_assert_msg(lo >= -a - 1e-7 && hi <= a + 1e-7, "%s: range [%g, %g] beyond %g", text, lo, hi, a);
    ck_assert_msg(hi > 0.99 * a && lo < -0.99 * a, "%s: range [%g, %g] does not reach %g", text, lo, hi, a);
    ck_assert_msg(fabs(std - sqrt(1.0 / norms[t].n)) < 0.01 * sqrt(1.0 / norms[t].n), "%s: std %g", text,
                  std);
    crema_blob_free(b);

    strcpy(text, "type: 'msra' ");
    strcat(text, norms[t].norm);
    b = filled(text, 4, BIG, 20 + t);
    moments(b, &mean, &std, &lo, &hi);
    const double want = sqrt(2.0 / norms[t].n);
    ck_assert_msg(fabs(std - want) < 0.01 * want, "%s: std %g, expected %g", text, std, want);
    ck_assert_msg(fabs(mean) < 0.01 * want, "%s: mean %g", text, mean);
    crema_blob_free(b);
  }
  /* A 2-d InnerProduct weight (out, in): fan_in = in, fan_out = out. */
  const int ip[2] = {500, 800};
  crema_blob *b = filled("type: 'xavier' variance_norm: FAN_OUT", 2, ip, 30);
  double mean, std;
  float lo, hi;
  moments(b, &mean, &std, &lo, &hi);
  ck_assert_msg(hi <= sqrt(3.0 / 500) + 1e-7 && hi > 0.99 * sqrt(3.0 / 500), "max %g", hi);
  crema_blob_free(b);
}
END_TEST

/* Caffe's bilinear kernel: f = ceil(w / 2), c = (w - 1) / (2 f),
 * value (1 - |x/f - c|) (1 - |y/f - c|). */
START_TEST(test_bilinear_exact) {
  const int s4[4] = {2, 1, 4, 4};
  crema_blob *b = filled("type: 'bilinear'", 4, s4, 1);
  const float k4[4] = {0.25f, 0.75f, 0.75f, 0.25f};
  for (int n = 0; n < 2; n++)
    for (int y = 0; y < 4; y++)
      for (int x = 0; x < 4; x++) ck_assert_float_eq_tol(b->data[(n * 4 + y) * 4 + x], k4[y] * k4[x], 1e-6);
  crema_blob_free(b);
  const int s3[4] = {1, 1, 3, 3};
  b = filled("type: 'bilinear'", 4, s3, 1);
  const float k3[3] = {0.5f, 1.0f, 0.5f};
  for (int y = 0; y < 3; y++)
    for (int x = 0; x < 3; x++) ck_assert_float_eq_tol(b->data[y * 3 + x], k3[y] * k3[x], 1e-6);
  crema_blob_free(b);
  /* Kernel 6 (3x upsampling): symmetric, centred at 2.5. */
  const int s6[4] = {1, 1, 6, 6};
  b = filled("type: 'bilinear'", 4, s6, 1);
  const float k6[6] = {1 / 6.0f, 0.5f, 5 / 6.0f, 5 / 6.0f, 0.5f, 1 / 6.0f};
  for (int y = 0; y < 6; y++)
    for (int x = 0; x < 6; x++) ck_assert_float_eq_tol(b->data[y * 6 + x], k6[y] * k6[x], 1e-6);
  crema_blob_free(b);
}
END_TEST

START_TEST(test_errors) {
  static const struct {
    const char *text;
    int num_axes;
    int shape[4];
    const char *needle;
  } cases[] = {
      {"type: 'uniform' min: 2 max: 1", 1, {4}, "max"},
      {"type: 'bilinear'", 4, {1, 1, 3, 4}, "square"},
      {"type: 'bilinear'", 2, {3, 3}, "4-d"},
      {"type: 'xavier' sparse: 3", 2, {3, 3}, "sparse"},
      {"type: 'gausian'", 1, {3}, "unknown filler type"},
      {"type: 'gaussian' sparse: -2", 2, {3, 3}, "sparse must be"},
  };
  for (size_t t = 0; t < sizeof cases / sizeof cases[0]; t++) {
    crema_blob *b = blob(cases[t].num_axes, cases[t].shape);
    Crema__FillerParameter *f = filler(cases[t].text);
    crema_rng r;
    crema_rng_seed(&r, 1, 0);
    crema_error err;
    ck_assert_msg(crema_fill(b, f, &r, &err) != 0, "%s should fail", cases[t].text);
    ck_assert_msg(strstr(err.msg, cases[t].needle), "\"%s\" should mention \"%s\"", err.msg, cases[t].needle);
    crema_message_free(f);
    crema_blob_free(b);
  }
}
END_TEST

/* The same seed gives the same weights; another seed different ones. */
START_TEST(test_reproducible) {
  const int shape[2] = {10, 10};
  crema_blob *a = filled("type: 'gaussian'", 2, shape, 7), *b = filled("type: 'gaussian'", 2, shape, 7);
  crema_blob *c = filled("type: 'gaussian'", 2, shape, 8);
  ck_assert_int_eq(memcmp(a->data, b->data, a->count * sizeof(float)), 0);
  ck_assert_int_ne(memcmp(a->data, c->data, a->count * sizeof(float)), 0);
  crema_blob_free(a);
  crema_blob_free(b);
  crema_blob_free(c);
}
END_TEST

/* Eight generators side by side give each one's own numbers, and leave each where it would
 * be: step counts the vector path takes (multiples of 8) and one it leaves to the loop. */
START_TEST(test_rng_x8_same_numbers) {
  static const size_t steps[] = {8, 16, 520, 13};
  for (size_t t = 0; t < sizeof steps / sizeof steps[0]; t++) {
    crema_rng side[8], alone[8];
    for (int k = 0; k < 8; k++) {
      crema_rng_seed(&side[k], 99 + t, (uint64_t)k * 7);
      alone[k] = side[k];
    }
    uint32_t *out = malloc(8 * steps[t] * sizeof(uint32_t));
    crema_rng_u32_x8(side, out, steps[t]);
    for (int k = 0; k < 8; k++) {
      for (size_t i = 0; i < steps[t]; i++)
        ck_assert_msg(out[(size_t)k * steps[t] + i] == crema_rng_u32(&alone[k]),
                      "steps %zu: generator %d, draw %zu", steps[t], k, i);
      ck_assert_int_eq(memcmp(side[k].s, alone[k].s, sizeof side[k].s), 0);
    }
    free(out);
  }
}
END_TEST

/* crema_rng_chunked: element i gets draw i % chunk of generator (key, i / chunk), through the
 * eight-at-a-time path (three octets of whole chunks: with AVX-512 two of them sixteen at a
 * time and the third alone), single whole chunks and a short last one, on one thread and on
 * several. */
typedef struct chunk_record {
  uint32_t *got;
  int *calls;
} chunk_record;

static void record_piece(void *ctx, const uint32_t *draws, size_t begin, size_t count) {
  chunk_record *r = ctx;
  for (size_t i = 0; i < count; i++) {
    r->got[begin + i] = draws[i];
#pragma omp atomic
    r->calls[begin + i]++;
  }
}

START_TEST(test_rng_chunked_draws) {
  const size_t chunk = 1024, n = 8 * chunk * 3 + 3 * chunk + 100;
  uint32_t *want = malloc(n * sizeof(uint32_t)), *got = malloc(n * sizeof(uint32_t));
  int *calls = malloc(n * sizeof(int));
  for (size_t c = 0; c * chunk < n; c++) {
    crema_rng r;
    crema_rng_seed(&r, 0xC0FFEE, c);
    for (size_t i = c * chunk; i < n && i < (c + 1) * chunk; i++) want[i] = crema_rng_u32(&r);
  }
  for (int parallel = 0; parallel < 2; parallel++) {
    memset(calls, 0, n * sizeof(int));
    chunk_record rec = {got, calls};
    crema_rng_chunked(0xC0FFEE, n, chunk, parallel, record_piece, &rec);
    for (size_t i = 0; i < n; i++) {
      ck_assert_msg(calls[i] == 1, "element %zu given %d times", i, calls[i]);
      ck_assert_msg(got[i] == want[i], "element %zu: draw %u, want %u", i, got[i], want[i]);
    }
  }
  free(want);
  free(got);
  free(calls);
}
END_TEST

int main(void) {
  Suite *s = suite_create("filler");
  TCase *tc = tcase_create("core");
  tcase_add_test(tc, test_constant);
  tcase_add_test(tc, test_uniform);
  tcase_add_test(tc, test_gaussian);
  tcase_add_test(tc, test_gaussian_sparse);
  tcase_add_test(tc, test_positive_unitball);
  tcase_add_test(tc, test_xavier_msra_variance_norms);
  tcase_add_test(tc, test_bilinear_exact);
  tcase_add_test(tc, test_errors);
  tcase_add_test(tc, test_reproducible);
  tcase_add_test(tc, test_rng_x8_same_numbers);
  tcase_add_test(tc, test_rng_chunked_draws);
  suite_add_tcase(s, tc);
  return test_run_suite(s);
}
