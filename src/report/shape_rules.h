/* shape_rules.h -- the per-type shape rules behind crema_net_summarize (summary.h); internal
 * to the report module.
 *
 * A rule reads its layer's message and the shapes of its bottoms and fills the shapes of its
 * tops, the layer's parameter blob shapes (through ls) and its multiply-adds. It allocates
 * nothing that outlives the call. When it cannot work a shape out it fills `why` (through
 * crema_shape_fail) and returns -1; the summary then stops at that layer. */
#ifndef CREMA_REPORT_SHAPE_RULES_H
#define CREMA_REPORT_SHAPE_RULES_H

#include <stddef.h>

#include "report/summary.h"

typedef struct crema_shape_ctx {
  const Crema__LayerParameter *l;
  crema_layer_summary *ls; /* parameter shapes go into ls->param_shapes */
  const crema_blob_shape *const *bottom;
  int n_bottom;
  crema_blob_shape *top;
  int n_top;
  double params, macs;
  char *why;
  size_t why_size;
} crema_shape_ctx;

typedef int (*crema_shape_rule)(crema_shape_ctx *c);

/* The rule for a Caffe type string; NULL when crema has none. */
crema_shape_rule crema_shape_rule_lookup(const char *type);
/* Fills c->why with 'layer "NAME" (TYPE): <message>' and returns -1. */
int crema_shape_fail(crema_shape_ctx *c, const char *fmt, ...) CREMA_PRINTF(2, 3);

#endif
