/* textproto.c -- see textproto.h. */
#include "support/textproto.h"

#include <check.h>
#include <string.h>

#include "proto/textformat.h"

ProtobufCMessage *test_message(const ProtobufCMessageDescriptor *desc, const char *text) {
  ProtobufCMessage *msg = NULL;
  crema_error err = {{0}};
  if (crema_text_parse(desc, text, strlen(text), "<test text>", &msg, &err))
    ck_abort_msg("cannot parse %s text: %s", desc->short_name, err.msg);
  return msg;
}

Crema__LayerParameter *test_layer_param(const char *text) {
  return (Crema__LayerParameter *)test_message(&crema__layer_parameter__descriptor, text);
}

Crema__NetParameter *test_net_param(const char *text) {
  return (Crema__NetParameter *)test_message(&crema__net_parameter__descriptor, text);
}

Crema__SolverParameter *test_solver_param(const char *text) {
  return (Crema__SolverParameter *)test_message(&crema__solver_parameter__descriptor, text);
}
