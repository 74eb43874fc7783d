/* vec_math_impl.h -- the bodies of vec_math.h's functions, written once for every vector
 * width: vec_math.h includes this file once per width with
 *   VM_V, VM_I, VM_U     the float, int and unsigned vector types,
 *   VM_SPLAT, VM_SELECT  a float in every lane, a lane-wise choice (v8.h, v16.h),
 *   VM_FN(name)          the name of that width's copy (exp_v8, exp_v16, ...),
 *   VM_SCALEF(p, k)      optional: p 2^k in one instruction (AVX-512's VSCALEFPS),
 * and undefines them at its end. No include guard, on purpose. */

#define VM_ALWAYS static inline __attribute__((always_inline))

/* x = k ln2 + r with k = round(x / ln2) and |r| <= ln2 / 2 (ln2 split in two so that
 * k * LN2_HI is exact: 355/512 has 9 bits, k at most 8): returns r, k as a float in *k and as
 * an integer in *ki. k is rounded by adding 1.5 * 2^23, whose sum's low mantissa bits hold it;
 * unsigned lanes, so NaN's garbage k cannot overflow a signed int. */
VM_ALWAYS VM_V VM_FN(ln2_reduce)(VM_V x, VM_V *k, VM_U *ki) {
  const VM_V shifter = VM_SPLAT(12582912.0f);
  const VM_V t = x * VM_SPLAT(1.44269504f) + shifter;
  *k = t - shifter;
  *ki = (VM_U)t - (VM_U)shifter;
  const VM_V r = x - *k * VM_SPLAT(0.693359375f);
  return r - *k * VM_SPLAT(-2.12194440e-4f);
}

/* 1/2 + r/6 + r^2/24 + ... + r^5/5040: e^r = 1 + r + r^2 (this), by Horner's rule. */
VM_ALWAYS VM_V VM_FN(exp_series)(VM_V r) {
  VM_V q = VM_SPLAT(1.0f / 5040.0f);
  q = q * r + VM_SPLAT(1.0f / 720.0f);
  q = q * r + VM_SPLAT(1.0f / 120.0f);
  q = q * r + VM_SPLAT(1.0f / 24.0f);
  q = q * r + VM_SPLAT(1.0f / 6.0f);
  return q * r + VM_SPLAT(0.5f);
}

/* e^x: e^r by its Taylor series to r^7 (the next term is below 8e-9 relative), then scaled by
 * 2^k in two steps, 2^(k/2) and 2^(k - k/2), so every k from -150 to 128 stays a normal power
 * of two and a denormal result is rounded only by the last multiply. exp_within takes x
 * already in [-104, 88.73] (or NaN); exp clamps it there first. */
VM_ALWAYS VM_V VM_FN(exp_within)(VM_V x) {
  VM_V k;
  VM_U ki;
  const VM_V r = VM_FN(ln2_reduce)(x, &k, &ki);
  const VM_V p = (VM_FN(exp_series)(r) * r + VM_SPLAT(1.0f)) * r + VM_SPLAT(1.0f);
#ifdef VM_SCALEF
  (void)ki;
  return VM_SCALEF(p, k); /* p 2^k rounded once: the bits of the two steps below */
#else
  const VM_U k1 = (VM_U)((VM_I)ki >> 1), k2 = ki - k1;
  const VM_V s1 = (VM_V)((k1 + 127u) << 23), s2 = (VM_V)((k2 + 127u) << 23);
  return p * s1 * s2;
#endif
}

VM_ALWAYS VM_V VM_FN(exp)(VM_V x) {
  const VM_V hi = VM_SPLAT(88.73f), lo = VM_SPLAT(-104.0f);
  x = VM_SELECT(x > hi, hi, x); /* comparisons with NaN are false: NaN passes through */
  x = VM_SELECT(x < lo, lo, x);
  return VM_FN(exp_within)(x);
}

/* e^x - 1, accurate near 0 where exp(x) - 1 would cancel: x = k ln2 + r (x clamped
 * to [-30, 88.73]: below -17.4 the result is -1 in float, above 88.7228 it overflows),
 * e^r - 1 = r + r^2 (1/2 + r/6 + ... + r^5/5040) (the next term below 1.5e-8 of it), and
 * e^x - 1 = 2^k (e^r - 1) + 2^k - 1 = 2 (h (e^r - 1) + h - 1/2) with h = 2^(k-1), which keeps
 * 2^128 (k = 128 near the top) out of the sum. For k = 0, r is x and the result is the
 * polynomial itself. One path for every lane: the Taylor series to x^11 beside a whole exp,
 * both computed for every lane and one chosen, had taken 4.0 ns per sixteen floats where this
 * takes 2.5 (Zen 5, in cache); worst error over every float of [-30, 10] 1.18e-7 relative
 * (fused multiply-adds; 1.12e-7 before). */
VM_ALWAYS VM_V VM_FN(expm1)(VM_V x) {
  const VM_V hi = VM_SPLAT(88.73f), lo = VM_SPLAT(-30.0f), half = VM_SPLAT(0.5f);
  x = VM_SELECT(x > hi, hi, x); /* NaN passes through */
  x = VM_SELECT(x < lo, lo, x);
  VM_V k;
  VM_U ki;
  const VM_V r = VM_FN(ln2_reduce)(x, &k, &ki);
  const VM_V p = VM_FN(exp_series)(r) * (r * r) + r;
#ifdef VM_SCALEF
  (void)ki;
  const VM_V h = VM_SCALEF(half, k); /* 2^(k-1), exact: k - 1 is in [-45, 127] */
#else
  const VM_V h = (VM_V)((ki + 126u) << 23);
#endif
  return (h * p + (h - half)) * VM_SPLAT(2.0f);
}

/* 1 / (1 + e^-x): exactly 0 once e^-x overflows (x < -88.72), 1 once it is below half an ulp
 * of 1; NaN stays NaN. */
VM_ALWAYS VM_V VM_FN(sigmoid)(VM_V x) {
  const VM_V one = VM_SPLAT(1.0f);
  return one / (one + VM_FN(exp)(-x));
}

/* tanh(|x|) = e / (e + 2) with e = e^2|x| - 1 (expm1's steps, without its clamps: |x| is
 * clamped at 9, where tanh is 1 in float), and the sign put back. expm1 keeps e accurate near
 * 0, where 1 - 2 / (e^2|x| + 1) would cancel, so one formula serves every lane. A [7/6] Pade
 * approximant for |x| <= 1 beside exp's (e - 1) / (e + 1) beyond, both computed for every
 * lane and one chosen, took 1.35 times as long over 6.4 M floats (bench_elementwise TanH,
 * Zen 5, one thread) for an error of 1.34e-7 relative where this has 1.91e-7 (1.87e-7 with
 * fused multiply-adds; every float of [-20, 20]). NaN stays NaN. */
VM_ALWAYS VM_V VM_FN(tanh)(VM_V x) {
  const VM_V two = VM_SPLAT(2.0f), nine = VM_SPLAT(9.0f), half = VM_SPLAT(0.5f);
  const VM_I sign = (VM_I)x & (VM_I)VM_SPLAT(-0.0f);
  VM_V a = (VM_V)((VM_I)x & ~(VM_I)VM_SPLAT(-0.0f));
  a = VM_SELECT(a > nine, nine, a); /* NaN passes through */
  VM_V k;
  VM_U ki;
  const VM_V r = VM_FN(ln2_reduce)(a + a, &k, &ki);
  const VM_V p = VM_FN(exp_series)(r) * (r * r) + r;
#ifdef VM_SCALEF
  (void)ki;
  const VM_V h = VM_SCALEF(half, k); /* 2^(k-1), exact: k is in [0, 26] */
#else
  const VM_V h = (VM_V)((ki + 126u) << 23);
#endif
  const VM_V e = (h * p + (h - half)) * two;
  const VM_V t = e / (e + two);
  return (VM_V)((VM_I)t | sign);
}

#undef VM_ALWAYS
#undef VM_V
#undef VM_I
#undef VM_U
#undef VM_SPLAT
#undef VM_SELECT
#undef VM_FN
#undef VM_SCALEF
