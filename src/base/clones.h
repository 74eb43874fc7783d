/* clones.h -- CREMA_CLONES marks a hot function that gcc compiles three times: for AVX-512
 * (x86-64-v4: 16-wide vectors where gcc vectorises a loop itself, 8-wide v8 code with
 * AVX-512's extra registers and instructions), for AVX2 + FMA (x86-64-v3, 8-wide vectors) and
 * for any x86-64 CPU (the baseline's 4-wide SSE2); the copy that runs is chosen by CPU
 * feature when the program starts. A build for one CPU only would lose the baseline; a
 * baseline build alone runs 4 lanes on an AVX2 machine. Functions with an OpenMP region keep
 * the choice in their outlined bodies. CREMA_NO_CLONES (or another compiler or CPU) leaves
 * one plain copy. Every copy does the same operations per element in the same order (no
 * contraction under -std=c11, no reassociation), so they give the same bits.
 * The AVX-512 copy (AMD EPYC, Zen 5, one thread, best of two alternating runs per layer):
 * GoogLeNet's LRN forward 4.1 -> 3.2 ms and backward 9.2 -> 8.1, whole nets 0.98-0.99 of
 * their time (GoogLeNet, ResNet-50, CaffeNet: the convolutions' backward 0.97-0.98, the
 * column matrix and partial-sum passes); element-wise layers unchanged, bound by memory.
 * Static functions only: gcc 12 exports a cloned function's dispatcher (an ifunc) and its
 * resolver from a shared library even under hidden visibility, so libcrema.so would leak
 * them (scripts/test_install.sh checks the exports). An entry point of another file calls a
 * static cloned body instead. */
#ifndef CREMA_BASE_CLONES_H
#define CREMA_BASE_CLONES_H

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && !defined(CREMA_NO_CLONES)
#define CREMA_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define CREMA_CLONES
#endif

#endif
