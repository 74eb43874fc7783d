/* smooth_rows_impl.h -- the body of smooth_rows.c's loop, written once for every vector
 * width: smooth_rows.c includes this file once per width with
 *   SR_NAME, SR_ATTR           the copy's name and its attributes (target, clones),
 *   SR_V, SR_W                 the vector type and its lanes,
 *   SR_LOAD, SR_STORE          load8_part / store8_part or their v16 kin,
 *   SR_SPLAT, SR_SELECT, SR_FN as vec_math_impl.h's VM_ macros,
 * and undefines them at its end. No include guard, on purpose. */

SR_ATTR static void SR_NAME(crema_smooth_fn f, size_t n, const float *x, float a, float b, float *y,
                            float *s) {
  const SR_V va = SR_SPLAT(a), vb = SR_SPLAT(b), zero = {0};
  switch (f) {
  case CREMA_SMOOTH_SIGMOID:
#pragma omp parallel for if (n > CREMA_PAR_MIN) schedule(static)
    for (size_t i = 0; i < n; i += SR_W) SR_STORE(y + i, SR_FN(sigmoid)(SR_LOAD(x + i, n - i)), n - i);
    break;
  case CREMA_SMOOTH_TANH:
#pragma omp parallel for if (n > CREMA_PAR_MIN) schedule(static)
    for (size_t i = 0; i < n; i += SR_W) SR_STORE(y + i, SR_FN(tanh)(SR_LOAD(x + i, n - i)), n - i);
    break;
  case CREMA_SMOOTH_EXP:
#pragma omp parallel for if (n > CREMA_PAR_MIN) schedule(static)
    for (size_t i = 0; i < n; i += SR_W) SR_STORE(y + i, vb * SR_FN(exp)(va * SR_LOAD(x + i, n - i)), n - i);
    break;
  case CREMA_SMOOTH_ELU:
#pragma omp parallel for if (n > CREMA_PAR_MIN) schedule(static)
    for (size_t i = 0; i < n; i += SR_W) {
      const SR_V v = SR_LOAD(x + i, n - i);
      SR_STORE(y + i, SR_SELECT(v > zero, v, va * SR_FN(expm1)(v)), n - i);
    }
    break;
  case CREMA_SMOOTH_SWISH:
#pragma omp parallel for if (n > CREMA_PAR_MIN) schedule(static)
    for (size_t i = 0; i < n; i += SR_W) {
      const SR_V v = SR_LOAD(x + i, n - i), sg = SR_FN(sigmoid)(va * v);
      SR_STORE(s + i, sg, n - i);
      SR_STORE(y + i, v * sg, n - i);
    }
    break;
  }
}

#undef SR_NAME
#undef SR_ATTR
#undef SR_V
#undef SR_W
#undef SR_LOAD
#undef SR_STORE
#undef SR_SPLAT
#undef SR_SELECT
#undef SR_FN
