/* Fuzz target: .solverstate bytes -> crema_solver_restore into a small Adam solver (history
 * shapes, crema's resume fields: RNG states, reader positions, loss window, early stopping). */
#include "fuzz_util.h"
#include "proto/textformat.h"
#include "solver/solver.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char SOLVER[] =
    "net_param { name: 'n'"
    "  layer { name: 'data' type: 'DummyData' top: 'data' top: 'label'"
    "    dummy_data_param { shape { dim: 2 dim: 3 } shape { dim: 2 } } }"
    "  layer { name: 'ip' type: 'InnerProduct' bottom: 'data' top: 'ip'"
    "    inner_product_param { num_output: 2 weight_filler { type: 'xavier' } } }"
    "  layer { name: 'drop' type: 'Dropout' bottom: 'ip' top: 'ip' }"
    "  layer { name: 'loss' type: 'SoftmaxWithLoss' bottom: 'ip' bottom: 'label' top: 'loss' } }"
    "type: 'Adam' base_lr: 0.01 lr_policy: 'fixed' random_seed: 1 max_iter: 10 average_loss: 4 "
    "snapshot_prefix: '/tmp/crema-fuzz-snap'"
    " test_iter: 1 test_interval: 5 early_stopping { metric: 'loss' mode: MINIMIZE patience: 2 }";

static crema_solver *solver(void) {
  static crema_solver *s;
  if (!s) {
    ProtobufCMessage *m = NULL;
    crema_error err;
    if (crema_text_parse(&crema__solver_parameter__descriptor, SOLVER, sizeof SOLVER - 1, "solver", &m, &err))
      return NULL;
    crema_solver_options opt = {0};
    if (crema_solver_create((Crema__SolverParameter *)m, &opt, &s, &err)) s = NULL;
    protobuf_c_message_free_unpacked(m, NULL);
  }
  return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fuzz_init();
  if (!solver()) return 0;
  const char *path = fuzz_write_temp(data, size, ".solverstate");
  crema_error err;
  if (path) (void)crema_solver_restore(solver(), path, &err);
  return 0;
}
