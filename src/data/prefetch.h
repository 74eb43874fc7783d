/* prefetch.h -- a background thread that fills batches ahead of the net.
 *
 * A ring of n_slots batch buffers (data + label floats). The thread calls fill() for the
 * batches starting at records first, first + batch, first + 2 * batch, ... while a slot is
 * free; crema_prefetcher_next hands the oldest filled batch to the net by copying it into
 * the tops and frees the slot. So the net only waits when decoding is slower than compute.
 *
 * All randomness of a batch must depend only on its record indices (the data layers seed
 * per record), so restarting the thread at any record (crema_prefetcher_restart, used for
 * an exact resume) reproduces the same batches. Buffers are allocated once, at creation. */
#ifndef CREMA_DATA_PREFETCH_H
#define CREMA_DATA_PREFETCH_H

#include <stddef.h>
#include <stdint.h>

#include "base/error.h"

/* Fills one batch whose first record has index `first` (counted from the layer's start).
 * Runs on the prefetch thread. Returns 0, or -1 with err filled (the error is handed to the
 * net by the crema_prefetcher_next that reaches this batch; the thread then stops). */
typedef int (*crema_prefetch_fill)(void *ctx, uint64_t first, float *data, float *label, crema_error *err);

typedef struct crema_prefetcher crema_prefetcher;

/* Allocates n_slots buffers of data_count and label_count floats and starts the thread at
 * record `first`. The caller frees with crema_prefetcher_free (which joins the thread). */
int crema_prefetcher_create(int n_slots, size_t data_count, size_t label_count, uint64_t batch_records,
                            crema_prefetch_fill fill, void *ctx, uint64_t first, crema_prefetcher **out,
                            crema_error *err);
/* Waits for the next batch and copies it into data / label (label may be NULL). */
int crema_prefetcher_next(crema_prefetcher *p, float *data, float *label, crema_error *err);
/* Stops the thread, drops the queued batches and starts again at record `first`. */
int crema_prefetcher_restart(crema_prefetcher *p, uint64_t first, crema_error *err);
/* Stops and joins the thread and frees everything. */
void crema_prefetcher_free(crema_prefetcher *p);

#endif
