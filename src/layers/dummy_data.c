/* DummyData: tops filled by dummy_data_param.data_filler (none = constant 0; one for every top;
 * or one per top), shaped by `shape` (one for all or one per top) or by the legacy
 * num/channels/height/width lists (each one value for all or one per top; 4-d tops).
 * As in Caffe, tops with a constant filler are filled once at setup and never again; the
 * others are refilled on every forward pass from the layer's seeded RNG. No backward. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "layers/layer.h"
#include "tensor/filler.h"

typedef struct dummy_state {
  int n_fillers;                               /* 0, 1 or n_top */
  const Crema__FillerParameter *const *filler; /* borrowed from the layer parameter */
} dummy_state;

static const Crema__FillerParameter *top_filler(const dummy_state *s, int t) {
  if (s->n_fillers == 0) return NULL; /* constant 0 */
  return s->filler[s->n_fillers == 1 ? 0 : t];
}

static bool is_constant(const Crema__FillerParameter *f) {
  return !f || !f->type || !strcmp(f->type, "constant");
}

/* One legacy dim list: `n` values, used as value[0] for every top or value[t]. */
static int legacy_dim(const uint32_t *v, size_t n, int t, int n_top, const char *what, int *out,
                      crema_error *err) {
  if (n != 1 && n != (size_t)n_top)
    return crema_fail(err, "dummy_data_param has %zu %s values for %d tops; give one, or one per top", n,
                      what, n_top);
  uint32_t d = v[n == 1 ? 0 : t];
  if (d > INT32_MAX) return crema_fail(err, "dummy_data_param %s %u is too large", what, d);
  *out = (int)d;
  return 0;
}

static int dummy_setup(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top, crema_error *err) {
  (void)bottom;
  const Crema__DummyDataParameter *dp = l->param->dummy_data_param;
  static const Crema__DummyDataParameter empty = CREMA__DUMMY_DATA_PARAMETER__INIT;
  if (!dp) dp = &empty;
  const int n_top = l->n_top;
  dummy_state *s = calloc(1, sizeof *s);
  if (!s) return crema_fail(err, "out of memory");
  l->state = s;
  if (dp->n_data_filler > 1 && dp->n_data_filler != (size_t)n_top)
    return crema_fail(err,
                      "dummy_data_param has %zu data_filler entries for %d tops; give 0, 1 or one per top",
                      dp->n_data_filler, n_top);
  s->n_fillers = (int)dp->n_data_filler;
  s->filler = (const Crema__FillerParameter *const *)dp->data_filler;

  const bool legacy = dp->n_num || dp->n_channels || dp->n_height || dp->n_width;
  if (legacy && dp->n_shape)
    return crema_fail(
        err, "dummy_data_param gives both shape and the legacy num/channels/height/width; use shape");
  if (!legacy && dp->n_shape != 1 && dp->n_shape != (size_t)n_top)
    return crema_fail(err, "dummy_data_param has %zu shape entries for %d tops; give one, or one per top",
                      dp->n_shape, n_top);
  for (int t = 0; t < n_top; t++) {
    int dims[CREMA_MAX_AXES], n = 0;
    if (legacy) {
      if (legacy_dim(dp->num, dp->n_num, t, n_top, "num", &dims[0], err) ||
          legacy_dim(dp->channels, dp->n_channels, t, n_top, "channels", &dims[1], err) ||
          legacy_dim(dp->height, dp->n_height, t, n_top, "height", &dims[2], err) ||
          legacy_dim(dp->width, dp->n_width, t, n_top, "width", &dims[3], err))
        return -1;
      n = 4;
    } else {
      const Crema__BlobShape *bs = dp->shape[dp->n_shape == 1 ? 0 : t];
      if (bs->n_dim > CREMA_MAX_AXES)
        return crema_fail(err, "dummy_data_param shape has %zu dims; crema supports at most %d", bs->n_dim,
                          CREMA_MAX_AXES);
      for (size_t i = 0; i < bs->n_dim; i++) {
        if (bs->dim[i] < 0 || bs->dim[i] > INT32_MAX)
          return crema_fail(err, "dummy_data_param shape dim %zu is %lld; dims must be between 0 and 2^31-1",
                            i, (long long)bs->dim[i]);
        dims[n++] = (int)bs->dim[i];
      }
    }
    if (crema_blob_reshape(top[t], n, dims, err)) return -1;
    /* As in Caffe, only constant tops are filled now, once and for good; the others are
     * drawn by every forward pass. A bad filler (unknown type, impossible shape) is still
     * reported here rather than mid-training. */
    const Crema__FillerParameter *f = top_filler(s, t);
    if (is_constant(f) ? crema_fill(top[t], f, &l->rng, err) : crema_filler_check(top[t], f, err))
      return crema_error_prefix(err, "dummy_data_param data_filler for top %d", t);
  }
  return 0;
}

static int dummy_forward(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top,
                         crema_error *err) {
  (void)bottom;
  const dummy_state *s = l->state;
  for (int t = 0; t < l->n_top; t++) {
    const Crema__FillerParameter *f = top_filler(s, t);
    if (!is_constant(f) && crema_fill(top[t], f, &l->rng, err)) return -1;
  }
  return 0;
}

static void dummy_free(crema_layer *l) { free(l->state); }

static bool dummy_refills_top(const crema_layer *l, int t) { return !is_constant(top_filler(l->state, t)); }

const crema_layer_ops crema_dummy_data_ops = {
    .type = "DummyData",
    .min_bottoms = 0,
    .max_bottoms = 0,
    .min_tops = 1,
    .max_tops = -1,
    .setup = dummy_setup,
    .forward = dummy_forward,
    .free_state = dummy_free,
    .refills_top = dummy_refills_top,
};
