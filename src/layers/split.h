/* split.h -- what the net tells a Split layer beyond the vtable. */
#ifndef CREMA_LAYERS_SPLIT_H
#define CREMA_LAYERS_SPLIT_H

#include <stdbool.h>

#include "layers/layer.h"

/* By default every top of a Split shares its bottom's data (no copy, as Caffe's SplitLayer).
 * A top that a later layer overwrites in place must have its own copy, or the other
 * consumers would read the overwritten values: the net marks such a top with copy = true.
 * Takes effect at the layer's next reshape. l must be a Split layer; t < l->n_top. */
void crema_split_set_copy(crema_layer *l, int t, bool copy);

#endif
