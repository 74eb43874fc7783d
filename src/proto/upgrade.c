/* upgrade.c -- Caffe's upgrade_proto semantics over protobuf-c messages.
 *
 * Values are moved (pointers stolen, then cleared in the source) rather than copied: the
 * messages stay freeable with protobuf_c_message_free_unpacked at every step, and a V1
 * caffemodel's blobs change owner without being copied. */
#include "proto/upgrade.h"

#include <stdlib.h>
#include <string.h>

#include "base/mem.h"

#define MEMBER(type, msg, offset) (*(type *)((char *)(msg) + (offset)))

typedef struct v1_name {
  const char *v1;   /* enum value name in V1LayerParameter.LayerType */
  const char *type; /* the LayerParameter type string */
} v1_name;

/* Caffe's UpgradeV1LayerType table. */
static const v1_name V1_TYPES[] = {
    {"NONE", ""},
    {"ABSVAL", "AbsVal"},
    {"ACCURACY", "Accuracy"},
    {"ARGMAX", "ArgMax"},
    {"BNLL", "BNLL"},
    {"CONCAT", "Concat"},
    {"CONTRASTIVE_LOSS", "ContrastiveLoss"},
    {"CONVOLUTION", "Convolution"},
    {"DECONVOLUTION", "Deconvolution"},
    {"DATA", "Data"},
    {"DROPOUT", "Dropout"},
    {"DUMMY_DATA", "DummyData"},
    {"EUCLIDEAN_LOSS", "EuclideanLoss"},
    {"ELTWISE", "Eltwise"},
    {"EXP", "Exp"},
    {"FLATTEN", "Flatten"},
    {"HDF5_DATA", "HDF5Data"},
    {"HDF5_OUTPUT", "HDF5Output"},
    {"HINGE_LOSS", "HingeLoss"},
    {"IM2COL", "Im2col"},
    {"IMAGE_DATA", "ImageData"},
    {"INFOGAIN_LOSS", "InfogainLoss"},
    {"INNER_PRODUCT", "InnerProduct"},
    {"LRN", "LRN"},
    {"MEMORY_DATA", "MemoryData"},
    {"MULTINOMIAL_LOGISTIC_LOSS", "MultinomialLogisticLoss"},
    {"MVN", "MVN"},
    {"POOLING", "Pooling"},
    {"POWER", "Power"},
    {"RELU", "ReLU"},
    {"SIGMOID", "Sigmoid"},
    {"SIGMOID_CROSS_ENTROPY_LOSS", "SigmoidCrossEntropyLoss"},
    {"SILENCE", "Silence"},
    {"SOFTMAX", "Softmax"},
    {"SOFTMAX_LOSS", "SoftmaxWithLoss"},
    {"SPLIT", "Split"},
    {"SLICE", "Slice"},
    {"TANH", "TanH"},
    {"WINDOW_DATA", "WindowData"},
    {"THRESHOLD", "Threshold"},
};

const char *crema_v1_layer_type_name(int v1_type) {
  const ProtobufCEnumValue *ev =
      protobuf_c_enum_descriptor_get_value(&crema__v1_layer_parameter__layer_type__descriptor, v1_type);
  if (!ev) return NULL;
  for (size_t i = 0; i < CREMA_ARRAY_LEN(V1_TYPES); i++)
    if (!strcmp(V1_TYPES[i].v1, ev->name)) return V1_TYPES[i].type;
  return NULL;
}

static char *dup_string(const char *s) {
  size_t n = strlen(s) + 1;
  char *d = malloc(n);
  if (d) memcpy(d, s, n);
  return d;
}

/* The sub-message field `name` of msg, created (with defaults) when absent, like protobuf's
 * mutable_xxx(). NULL when out of memory. */
static ProtobufCMessage *mutable_sub(ProtobufCMessage *msg, const char *name) {
  const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field_by_name(msg->descriptor, name);
  if (!f || f->type != PROTOBUF_C_TYPE_MESSAGE || f->label == PROTOBUF_C_LABEL_REPEATED) return NULL;
  ProtobufCMessage **slot = &MEMBER(ProtobufCMessage *, msg, f->offset);
  if (!*slot) {
    const ProtobufCMessageDescriptor *sd = f->descriptor;
    ProtobufCMessage *sub = malloc(sd->sizeof_message);
    if (!sub) return NULL;
    sd->message_init(sub);
    *slot = sub;
  }
  return *slot;
}

/* Moves the singular scalar or string field `name` from src to dst if src has it (Caffe's
 * `if (src.has_x()) { dst.set_x(src.x()); src.clear_x(); }`). Both messages must have the
 * field with the same type. Returns whether src had it. */
static bool move_field(ProtobufCMessage *dst, ProtobufCMessage *src, const char *name) {
  const ProtobufCFieldDescriptor *fs = protobuf_c_message_descriptor_get_field_by_name(src->descriptor, name);
  const ProtobufCFieldDescriptor *fd = protobuf_c_message_descriptor_get_field_by_name(dst->descriptor, name);
  if (!fs || !fd || fs->type != fd->type) return false;
  if (fs->type == PROTOBUF_C_TYPE_STRING) {
    char **ps = &MEMBER(char *, src, fs->offset);
    char **pd = &MEMBER(char *, dst, fd->offset);
    if (!*ps || *ps == fs->default_value) return false;
    if (*pd && *pd != fd->default_value) free(*pd);
    *pd = *ps;
    *ps = (char *)fs->default_value;
    return true;
  }
  protobuf_c_boolean *hs = &MEMBER(protobuf_c_boolean, src, fs->quantifier_offset);
  if (!*hs) return false;
  size_t size = fs->type == PROTOBUF_C_TYPE_DOUBLE || fs->type == PROTOBUF_C_TYPE_INT64 ||
                        fs->type == PROTOBUF_C_TYPE_UINT64 || fs->type == PROTOBUF_C_TYPE_SINT64 ||
                        fs->type == PROTOBUF_C_TYPE_FIXED64 || fs->type == PROTOBUF_C_TYPE_SFIXED64
                    ? 8
                    : 4;
  memcpy((char *)dst + fd->offset, (char *)src + fs->offset, size);
  MEMBER(protobuf_c_boolean, dst, fd->quantifier_offset) = 1;
  /* Restore the default value in src as clear_x() does. */
  if (fs->default_value)
    memcpy((char *)src + fs->offset, fs->default_value, size);
  else
    memset((char *)src + fs->offset, 0, size);
  *hs = 0;
  return true;
}

static const char *const TRANSFORM_FIELDS[] = {"scale", "mean_file", "crop_size", "mirror"};

/* The data-layer sub-parameter that holds legacy transform fields, for V1 layer types. */
static const char *v1_data_param_name(int type) {
  if (type == CREMA__V1_LAYER_PARAMETER__LAYER_TYPE__DATA) return "data_param";
  if (type == CREMA__V1_LAYER_PARAMETER__LAYER_TYPE__IMAGE_DATA) return "image_data_param";
  if (type == CREMA__V1_LAYER_PARAMETER__LAYER_TYPE__WINDOW_DATA) return "window_data_param";
  return NULL;
}

/* Caffe's NetNeedsDataUpgrade. */
static bool needs_data_upgrade(const Crema__NetParameter *net) {
  for (size_t i = 0; i < net->n_layers; i++) {
    const char *pname = v1_data_param_name(net->layers[i]->type);
    if (!pname) continue;
    ProtobufCMessage *l = &net->layers[i]->base;
    const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field_by_name(l->descriptor, pname);
    const ProtobufCMessage *sub = MEMBER(ProtobufCMessage *, l, f->offset);
    if (!sub) continue;
    for (size_t k = 0; k < CREMA_ARRAY_LEN(TRANSFORM_FIELDS); k++) {
      const ProtobufCFieldDescriptor *tf =
          protobuf_c_message_descriptor_get_field_by_name(sub->descriptor, TRANSFORM_FIELDS[k]);
      if (tf->type == PROTOBUF_C_TYPE_STRING) {
        const char *s = MEMBER(const char *, sub, tf->offset);
        if (s && s != tf->default_value) return true;
      } else if (MEMBER(protobuf_c_boolean, sub, tf->quantifier_offset)) {
        return true;
      }
    }
  }
  return false;
}

/* Caffe's UpgradeNetDataTransformation: every V1 data layer gets its (possibly new, empty)
 * data parameter and transform_param, and the legacy fields move across. */
static int upgrade_data_transform(Crema__NetParameter *net, const char *src, crema_error *err) {
  for (size_t i = 0; i < net->n_layers; i++) {
    const char *pname = v1_data_param_name(net->layers[i]->type);
    if (!pname) continue;
    ProtobufCMessage *l = &net->layers[i]->base;
    ProtobufCMessage *sub = mutable_sub(l, pname);
    ProtobufCMessage *tp = mutable_sub(l, "transform_param");
    if (!sub || !tp) return crema_fail(err, "%s: out of memory upgrading the net", src);
    for (size_t k = 0; k < CREMA_ARRAY_LEN(TRANSFORM_FIELDS); k++) move_field(tp, sub, TRANSFORM_FIELDS[k]);
  }
  return 0;
}

/* Grows p->param to at least n entries (Caffe's `while (param_size() <= i) add_param();`). */
static Crema__ParamSpec *param_at(Crema__LayerParameter *p, size_t i) {
  if (p->n_param <= i) {
    Crema__ParamSpec **grown = realloc(p->param, (i + 1) * sizeof *grown);
    if (!grown) return NULL;
    p->param = grown;
    while (p->n_param <= i) {
      Crema__ParamSpec *ps = malloc(sizeof *ps);
      if (!ps) return NULL;
      crema__param_spec__init(ps);
      p->param[p->n_param++] = ps;
    }
  }
  return p->param[i];
}

#define STEAL_ARRAY(dst, src, field)                                                                         \
  do {                                                                                                       \
    (dst)->n_##field = (src)->n_##field;                                                                     \
    (dst)->field = (src)->field;                                                                             \
    (src)->n_##field = 0;                                                                                    \
    (src)->field = NULL;                                                                                     \
  } while (0)

/* Caffe's UpgradeV1LayerParameter, moving out of v1 into the fresh layer p. */
static int upgrade_v1_layer(Crema__V1LayerParameter *v1, Crema__LayerParameter *p, const char *src,
                            crema_error *err) {
  STEAL_ARRAY(p, v1, bottom);
  STEAL_ARRAY(p, v1, top);
  if (v1->name) {
    p->name = v1->name;
    v1->name = NULL;
  }
  STEAL_ARRAY(p, v1, include);
  STEAL_ARRAY(p, v1, exclude);
  if (v1->has_type) {
    const char *t = crema_v1_layer_type_name(v1->type);
    if (!t)
      return crema_fail(err, "%s: layer \"%s\" has V1 layer type %d, which Caffe never defined", src,
                        p->name ? p->name : "", (int)v1->type);
    p->type = dup_string(t);
    if (!p->type) return crema_fail(err, "%s: out of memory upgrading the net", src);
  }
  STEAL_ARRAY(p, v1, blobs);
  for (size_t i = 0; i < v1->n_param; i++) {
    Crema__ParamSpec *ps = param_at(p, i);
    if (!ps) return crema_fail(err, "%s: out of memory upgrading the net", src);
    free(ps->name);
    ps->name = v1->param[i];
    v1->param[i] = NULL;
  }
  for (size_t i = 0; i < v1->n_blob_share_mode; i++) {
    Crema__ParamSpec *ps = param_at(p, i);
    if (!ps) return crema_fail(err, "%s: out of memory upgrading the net", src);
    ps->has_share_mode = 1;
    ps->share_mode = v1->blob_share_mode[i] == CREMA__V1_LAYER_PARAMETER__DIM_CHECK_MODE__PERMISSIVE
                         ? CREMA__PARAM_SPEC__DIM_CHECK_MODE__PERMISSIVE
                         : CREMA__PARAM_SPEC__DIM_CHECK_MODE__STRICT;
  }
  for (size_t i = 0; i < v1->n_blobs_lr; i++) {
    Crema__ParamSpec *ps = param_at(p, i);
    if (!ps) return crema_fail(err, "%s: out of memory upgrading the net", src);
    ps->has_lr_mult = 1;
    ps->lr_mult = v1->blobs_lr[i];
  }
  for (size_t i = 0; i < v1->n_weight_decay; i++) {
    Crema__ParamSpec *ps = param_at(p, i);
    if (!ps) return crema_fail(err, "%s: out of memory upgrading the net", src);
    ps->has_decay_mult = 1;
    ps->decay_mult = v1->weight_decay[i];
  }
  STEAL_ARRAY(p, v1, loss_weight);
  /* Every singular sub-message (convolution_param, ..., transform_param, loss_param) has
   * the same name and type in both messages: move them by name. */
  const ProtobufCMessageDescriptor *vd = v1->base.descriptor;
  for (unsigned i = 0; i < vd->n_fields; i++) {
    const ProtobufCFieldDescriptor *f = &vd->fields[i];
    if (f->type != PROTOBUF_C_TYPE_MESSAGE || f->label == PROTOBUF_C_LABEL_REPEATED) continue;
    ProtobufCMessage **from = &MEMBER(ProtobufCMessage *, v1, f->offset);
    if (!*from) continue;
    const ProtobufCFieldDescriptor *g =
        protobuf_c_message_descriptor_get_field_by_name(p->base.descriptor, f->name);
    if (!g || g->descriptor != f->descriptor) continue;
    ProtobufCMessage **to = &MEMBER(ProtobufCMessage *, p, g->offset);
    if (*to) protobuf_c_message_free_unpacked(*to, NULL);
    *to = *from;
    *from = NULL;
  }
  return 0;
}

/* Caffe's UpgradeV1Net. */
static int upgrade_v1_net(Crema__NetParameter *net, const char *src, crema_error *err) {
  if (net->n_layer > 0)
    return crema_fail(err,
                      "%s: refusing to upgrade an inconsistent net: it has both 'layer' and 'layers' "
                      "fields; use only 'layer'",
                      src);
  Crema__LayerParameter **out = calloc(net->n_layers, sizeof *out);
  if (!out) return crema_fail(err, "%s: out of memory upgrading the net", src);
  net->layer = out;
  for (size_t i = 0; i < net->n_layers; i++) {
    Crema__LayerParameter *p = malloc(sizeof *p);
    if (!p) return crema_fail(err, "%s: out of memory upgrading the net", src);
    crema__layer_parameter__init(p);
    out[net->n_layer++] = p;
    if (upgrade_v1_layer(net->layers[i], p, src, err)) return -1;
  }
  for (size_t i = 0; i < net->n_layers; i++) protobuf_c_message_free_unpacked(&net->layers[i]->base, NULL);
  free(net->layers);
  net->layers = NULL;
  net->n_layers = 0;
  return 0;
}

/* Caffe's UpgradeNetInput: input + input_dim/input_shape -> an Input layer placed first. */
static int upgrade_input(Crema__NetParameter *net, const char *src, crema_error *err) {
  bool has_shape = net->n_input_shape > 0, has_dim = net->n_input_dim > 0;
  if (has_shape && net->n_input_shape != net->n_input)
    return crema_fail(err, "%s: the net has %zu inputs but %zu input_shape entries; give one shape per input",
                      src, net->n_input, net->n_input_shape);
  if (!has_shape && has_dim && net->n_input_dim != 4 * net->n_input)
    return crema_fail(err, "%s: the net has %zu inputs but %zu input_dim values; give 4 dims per input", src,
                      net->n_input, net->n_input_dim);
  if (has_shape || has_dim) {
    Crema__LayerParameter **grown = realloc(net->layer, (net->n_layer + 1) * sizeof *grown);
    if (!grown) return crema_fail(err, "%s: out of memory upgrading the net", src);
    net->layer = grown;
    Crema__LayerParameter *p = malloc(sizeof *p);
    if (!p) return crema_fail(err, "%s: out of memory upgrading the net", src);
    crema__layer_parameter__init(p);
    memmove(net->layer + 1, net->layer, net->n_layer * sizeof *net->layer);
    net->layer[0] = p;
    net->n_layer++;
    p->name = dup_string("input");
    p->type = dup_string("Input");
    Crema__InputParameter *ip = malloc(sizeof *ip);
    if (ip) crema__input_parameter__init(ip);
    p->input_param = ip;
    if (!p->name || !p->type || !ip) return crema_fail(err, "%s: out of memory upgrading the net", src);
    p->n_top = net->n_input;
    p->top = net->input;
    net->n_input = 0;
    net->input = NULL;
    if (has_shape) {
      ip->n_shape = net->n_input_shape;
      ip->shape = net->input_shape;
      net->n_input_shape = 0;
      net->input_shape = NULL;
    } else {
      ip->shape = calloc(p->n_top ? p->n_top : 1, sizeof *ip->shape);
      if (!ip->shape) return crema_fail(err, "%s: out of memory upgrading the net", src);
      for (size_t i = 0; i < p->n_top; i++) {
        Crema__BlobShape *s = malloc(sizeof *s);
        int64_t *dims = malloc(4 * sizeof *dims);
        if (!s || !dims) {
          free(s);
          free(dims);
          return crema_fail(err, "%s: out of memory upgrading the net", src);
        }
        crema__blob_shape__init(s);
        for (int j = 0; j < 4; j++) dims[j] = net->input_dim[4 * i + (size_t)j];
        s->n_dim = 4;
        s->dim = dims;
        ip->shape[ip->n_shape++] = s;
      }
    }
  }
  for (size_t i = 0; i < net->n_input; i++) free(net->input[i]);
  free(net->input);
  net->input = NULL;
  net->n_input = 0;
  for (size_t i = 0; i < net->n_input_shape; i++)
    protobuf_c_message_free_unpacked(&net->input_shape[i]->base, NULL);
  free(net->input_shape);
  net->input_shape = NULL;
  net->n_input_shape = 0;
  free(net->input_dim);
  net->input_dim = NULL;
  net->n_input_dim = 0;
  return 0;
}

int crema_upgrade_net(Crema__NetParameter *net, const char *source, bool *changed, crema_error *err) {
  const char *src = source ? source : "net";
  bool dummy;
  if (!changed) changed = &dummy;
  *changed = false;
  for (size_t i = 0; i < net->n_layers; i++)
    if (net->layers[i]->has_layer)
      return crema_fail(err,
                        "%s: the net uses the V0 layer format, which crema does not read; upgrade it "
                        "with Caffe's upgrade_net_proto_text (or upgrade_net_proto_binary) first",
                        src);
  if (needs_data_upgrade(net)) {
    if (upgrade_data_transform(net, src, err)) return -1;
    *changed = true;
  }
  if (net->n_layers > 0) {
    if (upgrade_v1_net(net, src, err)) return -1;
    *changed = true;
  }
  if (net->n_input > 0) {
    if (upgrade_input(net, src, err)) return -1;
    *changed = true;
  }
  /* Caffe's UpgradeNetBatchNorm: old BatchNorm definitions declared three ParamSpecs for
   * the mean, variance and bias-correction blobs; they must not learn, so their lr_mult and
   * decay_mult become 0 (other settings stay). */
  for (size_t i = 0; i < net->n_layer; i++) {
    Crema__LayerParameter *p = net->layer[i];
    if (!p->type || strcmp(p->type, "BatchNorm") || p->n_param != 3) continue;
    for (size_t k = 0; k < p->n_param; k++) {
      Crema__ParamSpec *ps = p->param[k];
      if (!ps->has_lr_mult || ps->lr_mult != 0.0f || !ps->has_decay_mult || ps->decay_mult != 0.0f)
        *changed = true;
      ps->has_lr_mult = ps->has_decay_mult = 1;
      ps->lr_mult = ps->decay_mult = 0.0f;
    }
  }
  return 0;
}

int crema_upgrade_solver(Crema__SolverParameter *s, bool *changed, crema_error *err) {
  bool dummy;
  if (!changed) changed = &dummy;
  *changed = false;
  if (!s->has_solver_type) return 0;
  const ProtobufCFieldDescriptor *tf =
      protobuf_c_message_descriptor_get_field_by_name(&crema__solver_parameter__descriptor, "type");
  bool has_type = s->type && s->type != tf->default_value;
  if (has_type)
    return crema_fail(err, "cannot upgrade the solver: it gives both the old solver_type (enum) and the new "
                           "type (string); keep only type");
  const char *t = NULL;
  switch (s->solver_type) {
  case CREMA__SOLVER_PARAMETER__SOLVER_TYPE__SGD: t = "SGD"; break;
  case CREMA__SOLVER_PARAMETER__SOLVER_TYPE__NESTEROV: t = "Nesterov"; break;
  case CREMA__SOLVER_PARAMETER__SOLVER_TYPE__ADAGRAD: t = "AdaGrad"; break;
  case CREMA__SOLVER_PARAMETER__SOLVER_TYPE__RMSPROP: t = "RMSProp"; break;
  case CREMA__SOLVER_PARAMETER__SOLVER_TYPE__ADADELTA: t = "AdaDelta"; break;
  case CREMA__SOLVER_PARAMETER__SOLVER_TYPE__ADAM: t = "Adam"; break;
  default: return crema_fail(err, "cannot upgrade the solver: unknown solver_type %d", (int)s->solver_type);
  }
  char *copy = dup_string(t);
  if (!copy) return crema_fail(err, "out of memory upgrading the solver");
  if (s->type && s->type != tf->default_value) free(s->type);
  s->type = copy;
  s->has_solver_type = 0;
  s->solver_type = CREMA__SOLVER_PARAMETER__SOLVER_TYPE__SGD;
  *changed = true;
  return 0;
}
