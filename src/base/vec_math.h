/* vec_math.h -- exp, expm1, tanh and the logistic sigmoid on vectors of floats, for the
 * smooth activations (Sigmoid, TanH, ELU, Swish, Exp): exp_v8 and its kin on eight lanes,
 * exp_v16 and its kin on sixteen (AVX-512 copies, v16.h). libm's expf is one call per element
 * and no compiler vectorises it without -ffast-math, which left these layers at 0.07-0.17 of
 * a copy's speed; these run in registers. Both widths come from one body (vec_math_impl.h).
 *
 * Every lane and every width does the same IEEE operations in the same order, so the bits
 * never depend on the thread count or on where an element sits in its blob (a blob's last
 * partial vector goes through the same code: load8_part in v8.h, load16_part in v16.h). The
 * one exception gives the same bits: the sixteen-lane copies scale by 2^k with VSCALEFPS, a
 * product rounded once, where the eight-lane ones build the powers of two from exponent bits
 * (exact) and multiply (checked over every float for exp).
 * Whether the multiply-adds fuse is the including file's choice (-std=c11 turns contraction
 * off): smooth_rows.c fuses them in its AVX2 and AVX-512 copies, so on CPUs with FMA the bits
 * differ from the baseline copy's, the same in both of those copies.
 *
 * Accuracy against double precision, checked once over every float of each range, unfused
 * (the tests sample 60,000 inputs, and the fused copies pass them as well): exp 1.03e-7
 * relative on [-87.3, 88.72], within an ulp; the sigmoid 1.55e-7 on [-88, 30]; tanh 1.91e-7
 * on [-20, 20] (1.87e-7 fused); expm1 1.27e-7 on [-30, 10]. Infinities,
 * NaN and overflow behave as libm's: exp(NaN) is NaN, exp(x > 88.7228) is inf, exp(x <= -104)
 * is 0, denormal results are rounded once. */
#ifndef CREMA_BASE_VEC_MATH_H
#define CREMA_BASE_VEC_MATH_H

#include "base/v16.h"
#include "base/v8.h"

typedef unsigned int u8v __attribute__((vector_size(32)));
typedef unsigned int u16v __attribute__((vector_size(64)));

#define VM_V v8
#define VM_I i8
#define VM_U u8v
#define VM_SPLAT v8_splat
#define VM_SELECT v8_select
#define VM_FN(name) name##_v8
#include "base/vec_math_impl.h"

#define VM_V v16
#define VM_I i16
#define VM_U u16v
#define VM_SPLAT v16_splat
#define VM_SELECT v16_select
#define VM_FN(name) name##_v16
#if CREMA_V16
#include <immintrin.h> /* declares the builtin below (its target pragmas register them) */
/* The sixteen-lane copies run only inside CREMA_V16_TARGET functions, where the builtin
 * behind _mm512_scalef_ps exists (the inline wrapper itself would refuse to inline into these
 * untargeted functions). On an AMD EPYC (Zen 5) it took exp of 16 floats from 3.2 to 2.5 ns,
 * one thread, in cache: the eight integer operations that build the two powers of two and
 * their two multiplies become one. */
#define VM_SCALEF(p, k)                                                                                      \
  ((v16)__builtin_ia32_scalefps512_mask((p), (k), (p), (unsigned short)-1, _MM_FROUND_CUR_DIRECTION))
#endif
#include "base/vec_math_impl.h"

#endif
