/* Fuzz target: binary caffemodel bytes -> NetParameter (protobuf-c) -> upgrade (V1 layers,
 * legacy blob shapes) -> build the net it describes and copy its weights into it, then copy
 * them into a fixed LeNet too (what `crema train --weights` does with a user's file). */
#include "fuzz_util.h"
#include "net/net.h"
#include "proto/io.h"
#include "proto/upgrade.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static crema_net *lenet(void) {
  static crema_net *net;
  if (!net) {
    crema_net_options opt = {.phase = CREMA__PHASE__TEST, .seed = 1};
    crema_error err;
    if (crema_net_load(CREMA_SOURCE_DIR "/tests/data/lenet/lenet_mnist_deploy.prototxt", &opt, &net, &err))
      net = NULL;
  }
  return net;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fuzz_init();
  Crema__NetParameter *param = crema__net_parameter__unpack(NULL, size, data);
  if (!param) return 0;
  crema_error err;
  bool changed;
  if (crema_upgrade_net(param, "fuzz.caffemodel", &changed, &err) == 0) {
    crema_net_options opt = {.phase = CREMA__PHASE__TEST, .seed = 1, .source = "fuzz.caffemodel"};
    crema_net *net = NULL;
    if (crema_net_build(param, &opt, &net, &err) == 0) {
      (void)crema_net_copy_trained_layers(net, param, &err);
      crema_net_free(net);
    }
    if (lenet()) (void)crema_net_copy_trained_layers(lenet(), param, &err);
  }
  crema_message_free(param);
  return 0;
}
