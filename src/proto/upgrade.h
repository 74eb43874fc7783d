/* upgrade.h -- legacy Caffe nets and solvers brought to the current format, as Caffe's
 * upgrade_proto.cpp does on load:
 *   - V1 nets (`layers { type: CONVOLUTION blobs_lr: 1 ... }`) -> `layer { type: "Convolution"
 *     param { lr_mult: 1 } ... }`, every sub-parameter, blob, rule and loss weight moved over;
 *   - V1 data layers' scale/mean_file/crop_size/mirror -> transform_param;
 *   - legacy net inputs (input + input_dim/input_shape) -> an "Input" layer named "input",
 *     placed first;
 *   - BatchNorm layers declaring the 3 old ParamSpecs get lr_mult 0 and decay_mult 0;
 *   - solver_type (enum) -> type (string).
 * V0 nets (the pre-2014 format) are refused with an error saying how to convert them.
 * Blob data is moved, not copied, so upgrading a large V1 caffemodel costs no memory. */
#ifndef CREMA_PROTO_UPGRADE_H
#define CREMA_PROTO_UPGRADE_H

#include <stdbool.h>

#include "base/error.h"
#include "proto/crema.pb-c.h"

/* Upgrades net in place. source names the net in errors (a path, or NULL). *changed tells
 * whether anything changed (may be NULL). On failure the net may be partly upgraded but is
 * still a valid, freeable message. */
int crema_upgrade_net(Crema__NetParameter *net, const char *source, bool *changed, crema_error *err);

/* solver_type enum -> type string ("SGD", "Nesterov", "AdaGrad", "RMSProp", "AdaDelta",
 * "Adam"). Giving both solver_type and type is an error, as in Caffe. */
int crema_upgrade_solver(Crema__SolverParameter *s, bool *changed, crema_error *err);

/* Caffe's layer type string for a V1 enum value ("SOFTMAX_LOSS" -> "SoftmaxWithLoss");
 * NULL for a value Caffe never defined. NONE maps to "". */
const char *crema_v1_layer_type_name(int v1_type);

#endif
