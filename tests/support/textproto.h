/* textproto.h -- messages written inline as prototxt, for every test suite.
 *
 *   Crema__LayerParameter *p = test_layer_param("name: 'c' type: 'Convolution' "
 *                                                "convolution_param { num_output: 4 kernel_size: 3 }");
 *   ...
 *   crema_message_free(p);
 *
 * A parse error fails the running Check test with the parser's "file:line:col: ..." message. */
#ifndef CREMA_TESTS_TEXTPROTO_H
#define CREMA_TESTS_TEXTPROTO_H

#include "proto/crema.pb-c.h"
#include "proto/io.h"

Crema__LayerParameter *test_layer_param(const char *text);
Crema__NetParameter *test_net_param(const char *text);
Crema__SolverParameter *test_solver_param(const char *text);
/* Any message type: test_message(&crema__blob_proto__descriptor, "shape { dim: 2 } ..."). */
ProtobufCMessage *test_message(const ProtobufCMessageDescriptor *desc, const char *text);

#endif
