/* drawing_rows.h -- the TRAIN forward passes of the layers that draw a random number per
 * element (Dropout, RReLU), on n elements with the draws of key (rng16.h: run c of
 * CREMA_RNG16_RUN elements from sixteen lane generators seeded (key, 16 c + j), element
 * 16 t + j of the run taking lane j's draw t). The layers call them with wide true: the
 * sixteen-lane copy where the CPU has AVX-512. wide false runs the eight-lane copy that CPUs
 * without it run, so tests on an AVX-512 machine check both give the same bits. */
#ifndef CREMA_LAYERS_DRAWING_ROWS_H
#define CREMA_LAYERS_DRAWING_ROWS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Dropout: keep[i] = draw >= threshold, y[i] = x[i] * (keep[i] ? scale : 0). y may be x. */
void crema_dropout_train_rows(size_t n, const float *x, float *y, uint8_t *keep, uint64_t key,
                              uint32_t threshold, float scale, bool wide);
/* RReLU: slope[i] = lower + (upper - lower) * (draw >> 8) / 2^24, y[i] = x[i] > 0 ? x[i] :
 * slope[i] * x[i]. y may be x. */
void crema_rrelu_train_rows(size_t n, const float *x, float *y, float *slope, uint64_t key, float lower,
                            float upper, bool wide);

#endif
