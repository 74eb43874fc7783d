/* shard.c -- the process-wide data shard (see shard.h). */
#include "data/shard.h"

static crema_data_shard g_shard = {0, 1};

void crema_data_shard_set(uint32_t index, uint32_t count) {
  if (count == 0 || index >= count) {
    index = 0;
    count = 1;
  }
  g_shard.index = index;
  g_shard.count = count;
}

crema_data_shard crema_data_shard_get(void) { return g_shard; }
