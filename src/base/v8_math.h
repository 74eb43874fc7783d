/* v8_math.h -- exp, expm1, tanh and the logistic sigmoid on eight floats at once, for the
 * smooth activations (Sigmoid, TanH, ELU, Swish, Exp). libm's expf is one call per element
 * and no compiler vectorises it without -ffast-math, which left these layers at 0.07-0.17 of
 * a copy's speed; these run eight lanes in registers.
 *
 * Every lane and every copy of a kernel (AVX2 or baseline, see clones.h) does the same IEEE
 * operations in the same order with no fused multiply-adds (-std=c11 turns contraction off),
 * so the bits depend on the input alone, never on the CPU, the thread count or where an
 * element sits in its blob (a blob's last n % 8 elements go through the same code:
 * load8_part in v8.h).
 *
 * Accuracy against double precision, checked once over every float of each range (the tests
 * sample 60,000 inputs): exp 1.03e-7 relative on [-87.3, 88.72], within an ulp; the sigmoid
 * 1.55e-7 on [-88, 30]; tanh 1.34e-7 on [-20, 20]; expm1 1.47e-7 on [-30, 10]. Infinities,
 * NaN and overflow behave as libm's: exp(NaN) is NaN, exp(x > 88.7228) is inf, exp(x <= -104)
 * is 0, denormal results are rounded once. */
#ifndef CREMA_BASE_V8_MATH_H
#define CREMA_BASE_V8_MATH_H

#include "base/v8.h"

typedef unsigned int u8v __attribute__((vector_size(32)));

#define V8_ALWAYS static inline __attribute__((always_inline))

/* e^x. x = k ln2 + r with k = round(x / ln2) and |r| <= ln2 / 2 (ln2 split in two so that
 * k * LN2_HI is exact: 355/512 has 9 bits, k at most 8), e^r by its Taylor series to r^7
 * (the next term is below 8e-9 relative), then scaled by 2^k in two steps, 2^(k/2) and
 * 2^(k - k/2), so every k from -150 to 128 stays a normal power of two and a denormal result
 * is rounded only by the last multiply. */
V8_ALWAYS v8 exp8(v8 x) {
  const v8 hi = v8_splat(88.73f), lo = v8_splat(-104.0f);
  x = v8_select(x > hi, hi, x); /* comparisons with NaN are false: NaN passes through */
  x = v8_select(x < lo, lo, x);
  /* round(x / ln2) by adding 1.5 * 2^23: the sum's low mantissa bits hold k */
  const v8 shifter = v8_splat(12582912.0f);
  const v8 t = x * v8_splat(1.44269504f) + shifter;
  const v8 k = t - shifter;
  v8 r = x - k * v8_splat(0.693359375f);
  r = r - k * v8_splat(-2.12194440e-4f);
  v8 p = v8_splat(1.0f / 5040.0f);
  p = p * r + v8_splat(1.0f / 720.0f);
  p = p * r + v8_splat(1.0f / 120.0f);
  p = p * r + v8_splat(1.0f / 24.0f);
  p = p * r + v8_splat(1.0f / 6.0f);
  p = p * r + v8_splat(0.5f);
  p = p * r + v8_splat(1.0f);
  p = p * r + v8_splat(1.0f);
  /* unsigned lanes: NaN's garbage k must not overflow a signed int */
  const u8v ki = (u8v)t - (u8v)shifter;
  const u8v k1 = (u8v)((i8)ki >> 1), k2 = ki - k1;
  const v8 s1 = (v8)((k1 + 127u) << 23), s2 = (v8)((k2 + 127u) << 23);
  return p * s1 * s2;
}

/* e^x - 1, accurate near 0 where exp(x) - 1 would cancel: for |x| < 1 the Taylor series to
 * x^11 (next term below 4e-9 relative), else exp(x) - 1. */
V8_ALWAYS v8 expm1_8(v8 x) {
  v8 p = v8_splat(1.0f / 39916800.0f);
  p = p * x + v8_splat(1.0f / 3628800.0f);
  p = p * x + v8_splat(1.0f / 362880.0f);
  p = p * x + v8_splat(1.0f / 40320.0f);
  p = p * x + v8_splat(1.0f / 5040.0f);
  p = p * x + v8_splat(1.0f / 720.0f);
  p = p * x + v8_splat(1.0f / 120.0f);
  p = p * x + v8_splat(1.0f / 24.0f);
  p = p * x + v8_splat(1.0f / 6.0f);
  p = p * x + v8_splat(0.5f);
  p = p * x * x + x;
  const v8 one = v8_splat(1.0f);
  const i8 small = (x < one) & (x > -one);
  return v8_select(small, p, exp8(x) - one);
}

/* 1 / (1 + e^-x): exactly 0 once e^-x overflows (x < -88.72), 1 once it is below half an ulp
 * of 1; NaN stays NaN. */
V8_ALWAYS v8 sigmoid8(v8 x) {
  const v8 one = v8_splat(1.0f);
  return one / (one + exp8(-x));
}

/* tanh. |x| <= 1: the [7/6] Pade approximant from Lambert's continued fraction,
 * x (135135 + 17325 x^2 + 378 x^4 + x^6) / (135135 + 62370 x^2 + 3150 x^4 + 28 x^6), off by
 * under 3e-12 there, written as x plus a correction (numerator minus denominator over the
 * denominator) so that the rounding errors of the quotient shrink with the correction, a third
 * of the result at most; beyond, (e - 1) / (e + 1) with e = e^2|x|, |x| clamped at 9 where
 * tanh is 1 in float, and the sign put back. NaN stays NaN. */
V8_ALWAYS v8 tanh8(v8 x) {
  const v8 one = v8_splat(1.0f), nine = v8_splat(9.0f);
  const i8 sign = (i8)x & (i8)v8_splat(-0.0f);
  v8 a = (v8)((i8)x & ~(i8)v8_splat(-0.0f));
  const v8 a2 = a * a;
  v8 q = a2 * v8_splat(-27.0f) + v8_splat(-2772.0f);
  q = q * a2 + v8_splat(-45045.0f);
  v8 den = a2 * v8_splat(28.0f) + v8_splat(3150.0f);
  den = den * a2 + v8_splat(62370.0f);
  den = den * a2 + v8_splat(135135.0f);
  const i8 far = a > one;
  a = v8_select(a > nine, nine, a);
  const v8 e = exp8(a + a);
  /* one division for both forms: the correction's or (e - 1) / (e + 1) */
  const v8 quot = v8_select(far, e - one, a * a2 * q) / v8_select(far, e + one, den);
  const v8 t = v8_select(far, quot, a + quot);
  return (v8)((i8)t | sign);
}

#undef V8_ALWAYS
#endif
