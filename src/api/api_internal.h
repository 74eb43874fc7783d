/* api_internal.h -- what the public API's files share: the model struct and the helpers that
 * turn an internal crema_error into a public status + thread-local message.
 *
 * The API module only wraps the library: every public function checks its arguments, calls
 * the internal modules (net, solver, data) and translates their -1 + message into a
 * crema_status. Nothing here prints, exits or keeps global state (the last error is
 * thread-local). */
#ifndef CREMA_API_API_INTERNAL_H
#define CREMA_API_API_INTERNAL_H

#include "base/error.h"
#include "crema/crema.h"
#include "data/preprocess.h"
#include "net/net.h"
#include "proto/crema.pb-c.h"

/* One parameter blob of the model: layer index and blob index within it. */
typedef struct api_param_ref {
  int layer, index;
} api_param_ref;

struct crema_model {
  crema_net *net;
  api_param_ref *params;
  int n_params;
  /* Preprocessing: as loaded from preprocess.prototxt (NULL = none), and the one derived
   * from it for the first input's current shape (channels forced to the input's, a resize
   * added when the file stores none), rebuilt when that shape changes. */
  crema_preprocess *stored;
  crema_preprocess *pp;
  int pp_c, pp_h, pp_w;
  char **labels;
  int n_labels;
  /* The net runs BatchNorm and Scale folded into copies of the convolutions' weights
   * (crema_net_fuse): a snapshot of the parameters. Once crema_model_param has handed out a
   * writable pointer, every forward re-reads them (behind a pointer: that call takes a const
   * model, and only this flag changes). */
  bool *params_lent;
};

/* Records err's message (or "" when err is NULL) as the thread's last error; returns s. */
crema_status api_fail(crema_status s, const crema_error *err);
/* Records a formatted message as the thread's last error; returns s. */
crema_status api_failf(crema_status s, const char *fmt, ...) CREMA_PRINTF(2, 3);

/* Lists the model's parameter blobs into m->params (called after the net is built). */
crema_status api_model_index_params(crema_model *m);

#endif
