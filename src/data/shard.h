/* shard.h -- which share of a training data set this process reads (data-parallel training).
 *
 * Record g of a data set (in its read order: LMDB key order, or an ImageData list in file or
 * shuffled order) belongs to shard g mod count. Data layers built in the TRAIN phase read
 * the process-wide shard at setup and then read only their records: local record j is
 * global record j * count + index. Their positions (what snapshots record) stay in records
 * of the whole data set, so a run resumes on any number of processes at the same record.
 *
 * This is a process-wide setting, like the log level: src/dist sets it once, before any
 * net is built, and nothing else changes it. The default is shard 0 of 1 (every record). */
#ifndef CREMA_DATA_SHARD_H
#define CREMA_DATA_SHARD_H

#include <stdint.h>

typedef struct crema_data_shard {
  uint32_t index, count; /* 0 <= index < count */
} crema_data_shard;

/* Sets the shard for data layers set up from now on; count 0 or index >= count resets it
 * to 0 of 1. */
void crema_data_shard_set(uint32_t index, uint32_t count);
/* The current shard (0 of 1 unless set). */
crema_data_shard crema_data_shard_get(void);

/* Global record index of this shard's local record j. */
static inline uint64_t crema_data_shard_record(crema_data_shard sh, uint64_t j) {
  return j * sh.count + sh.index;
}

#endif
