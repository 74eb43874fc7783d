/* Fuzz target: prototxt text -> NetParameter (crema's text-format parser) -> V1/V0-input
 * upgrade -> net build in the TRAIN and TEST phases (layer setup and reshape, fillers). Tensors
 * are limited to 256 MB, as a user's would be limited by the machine (fuzz_init). */
#include "fuzz_util.h"
#include "net/net.h"
#include "proto/io.h"
#include "proto/textformat.h"
#include "proto/upgrade.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fuzz_init();
  ProtobufCMessage *m = NULL;
  crema_error err;
  if (crema_text_parse(&crema__net_parameter__descriptor, (const char *)data, size, "fuzz.prototxt", &m,
                       &err))
    return 0;
  Crema__NetParameter *param = (Crema__NetParameter *)m;
  bool changed;
  if (crema_upgrade_net(param, "fuzz.prototxt", &changed, &err) == 0) {
    for (int phase = 0; phase < 2; phase++) {
      crema_net_options opt = {
          .phase = phase ? CREMA__PHASE__TEST : CREMA__PHASE__TRAIN, .seed = 1, .source = "fuzz.prototxt"};
      crema_net *net = NULL;
      if (crema_net_build(param, &opt, &net, &err) == 0) crema_net_free(net);
    }
  }
  crema_message_free(param);
  return 0;
}
