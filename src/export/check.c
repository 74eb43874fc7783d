/* check.c -- two models, one random input: how far apart are their outputs? Used by
 * `crema export` to show that folding kept the outputs, and by the tests. */
#include <math.h>
#include <string.h>

#include "base/rng.h"
#include "export/export.h"
#include "net/net.h"

static int build(const Crema__NetParameter *m, crema_net **net, crema_error *err) {
  crema_net_options o = {.phase = CREMA__PHASE__TEST, .seed = 1, .source = "exported net"};
  if (crema_net_build(m, &o, net, err)) return -1;
  if (crema_net_copy_trained_layers(*net, m, err)) {
    crema_net_free(*net);
    *net = NULL;
    return -1;
  }
  return 0;
}

int crema_export_compare(const Crema__NetParameter *a, const Crema__NetParameter *b, uint64_t seed,
                         double *max_rel, crema_error *err) {
  crema_net *na = NULL, *nb = NULL;
  int rc = -1;
  *max_rel = 0.0;
  if (build(a, &na, err) || build(b, &nb, err)) goto done;
  if (crema_net_num_inputs(na) != crema_net_num_inputs(nb)) {
    crema_fail(err, "the two nets have %d and %d inputs", crema_net_num_inputs(na), crema_net_num_inputs(nb));
    goto done;
  }
  for (int i = 0; i < crema_net_num_inputs(na); i++) {
    crema_blob *x = crema_net_input(na, i), *y = crema_net_input(nb, i);
    if (x->count != y->count) {
      crema_fail(err, "input %s has %zu values in one net and %zu in the other", crema_net_input_name(na, i),
                 x->count, y->count);
      goto done;
    }
    crema_rng r;
    crema_rng_seed(&r, seed, (uint64_t)i);
    for (size_t k = 0; k < x->count; k++) x->data[k] = y->data[k] = crema_rng_gaussian(&r, 0.0f, 1.0f);
  }
  if (crema_net_forward(na, NULL, err) || crema_net_forward(nb, NULL, err)) goto done;
  /* every blob both nets name alike: folding renames a layer's top to the name the folded
   * chain ended in, so equal names hold equal values */
  int compared = 0;
  for (int i = 0; i < crema_net_num_blobs(na); i++) {
    const crema_blob *x = crema_net_blob(na, i);
    const crema_blob *y = crema_net_blob_by_name(nb, crema_net_blob_name(na, i));
    if (!y || y->count != x->count || !x->count) continue;
    double big = 0.0, worst = 0.0;
    for (size_t k = 0; k < x->count; k++) {
      big = fmax(big, fabs(x->data[k]));
      worst = fmax(worst, fabs((double)x->data[k] - (double)y->data[k]));
    }
    double rel = big > 0.0 ? worst / big : worst;
    if (!isfinite(rel)) rel = INFINITY;
    if (rel > *max_rel) *max_rel = rel;
    compared++;
  }
  if (!compared) {
    crema_fail(err, "the two nets have no blob in common to compare");
    goto done;
  }
  rc = 0;
done:
  crema_net_free(na);
  crema_net_free(nb);
  return rc;
}
