/* onnx_builder.c -- an arena of ONNX messages and the lists of one graph (see onnx_builder.h). */
#include "export/onnx_builder.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct arena_block {
  struct arena_block *next;
  size_t used, size;
  _Alignas(16) unsigned char data[];
} arena_block;

/* A growable list of pointers. */
typedef struct ptr_list {
  void **items;
  size_t n, cap;
} ptr_list;

struct crema_onnx_builder {
  arena_block *blocks;
  Onnx__GraphProto graph;
  ptr_list nodes, inits, inputs, outputs;
};

#define BLOCK_BYTES ((size_t)64 << 10)

static void *arena_alloc(crema_onnx_builder *b, size_t n) {
  n = (n + 15) & ~(size_t)15;
  arena_block *top = b->blocks;
  if (!top || top->size - top->used < n) {
    size_t size = n > BLOCK_BYTES / 4 ? n : BLOCK_BYTES;
    arena_block *nb = malloc(sizeof *nb + size);
    if (!nb) return NULL;
    nb->used = 0;
    nb->size = size;
    if (size == n && top) { /* a big one-off: keep the current block on top for small ones */
      nb->next = top->next;
      top->next = nb;
    } else {
      nb->next = top;
      b->blocks = nb;
    }
    top = nb;
  }
  void *p = top->data + top->used;
  top->used += n;
  memset(p, 0, n);
  return p;
}

static int list_push(ptr_list *l, void *p) {
  if (!p) return -1;
  if (l->n == l->cap) {
    size_t cap = l->cap ? 2 * l->cap : 64;
    void **g = realloc(l->items, cap * sizeof *g);
    if (!g) return -1;
    l->items = g;
    l->cap = cap;
  }
  l->items[l->n++] = p;
  return 0;
}

crema_onnx_builder *crema_onnx_builder_new(void) {
  crema_onnx_builder *b = calloc(1, sizeof *b);
  if (!b) return NULL;
  onnx__graph_proto__init(&b->graph);
  return b;
}

void crema_onnx_builder_free(crema_onnx_builder *b) {
  if (!b) return;
  for (arena_block *k = b->blocks; k;) {
    arena_block *next = k->next;
    free(k);
    k = next;
  }
  free(b->nodes.items);
  free(b->inits.items);
  free(b->inputs.items);
  free(b->outputs.items);
  free(b);
}

Onnx__GraphProto *crema_onnx_builder_graph(crema_onnx_builder *b) { return &b->graph; }

void crema_onnx_builder_finish(crema_onnx_builder *b) {
  b->graph.node = (Onnx__NodeProto **)b->nodes.items;
  b->graph.n_node = b->nodes.n;
  b->graph.initializer = (Onnx__TensorProto **)b->inits.items;
  b->graph.n_initializer = b->inits.n;
  b->graph.input = (Onnx__ValueInfoProto **)b->inputs.items;
  b->graph.n_input = b->inputs.n;
  b->graph.output = (Onnx__ValueInfoProto **)b->outputs.items;
  b->graph.n_output = b->outputs.n;
}

int crema_onnx_builder_node_count(const crema_onnx_builder *b) { return (int)b->nodes.n; }

char *crema_onnx_str(crema_onnx_builder *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (n < 0) return NULL;
  char *s = arena_alloc(b, (size_t)n + 1);
  if (!s) return NULL;
  va_start(ap, fmt);
  vsnprintf(s, (size_t)n + 1, fmt, ap);
  va_end(ap);
  return s;
}

static char **str_array(crema_onnx_builder *b, int n, const char *const *in) {
  char **a = arena_alloc(b, (size_t)(n > 0 ? n : 1) * sizeof *a);
  if (!a) return NULL;
  for (int i = 0; i < n; i++)
    if (!(a[i] = crema_onnx_str(b, "%s", in[i]))) return NULL;
  return a;
}

Onnx__NodeProto *crema_onnx_node(crema_onnx_builder *b, const char *op_type, const char *name, int n_in,
                                 const char *const *in, int n_out, const char *const *out) {
  Onnx__NodeProto *n = arena_alloc(b, sizeof *n);
  if (!n) return NULL;
  onnx__node_proto__init(n);
  n->op_type = crema_onnx_str(b, "%s", op_type);
  n->name = crema_onnx_str(b, "%s", name);
  n->input = str_array(b, n_in, in);
  n->output = str_array(b, n_out, out);
  if (!n->op_type || !n->name || !n->input || !n->output) return NULL;
  n->n_input = (size_t)n_in;
  n->n_output = (size_t)n_out;
  if (list_push(&b->nodes, n)) return NULL;
  return n;
}

/* Adds an empty attribute to node n (attributes are few per node: grow by one). */
static Onnx__AttributeProto *new_attr(crema_onnx_builder *b, Onnx__NodeProto *n, const char *name,
                                      Onnx__AttributeProto__AttributeType type) {
  Onnx__AttributeProto *a = arena_alloc(b, sizeof *a);
  Onnx__AttributeProto **list = arena_alloc(b, (n->n_attribute + 1) * sizeof *list);
  if (!a || !list) return NULL;
  onnx__attribute_proto__init(a);
  if (!(a->name = crema_onnx_str(b, "%s", name))) return NULL;
  a->has_type = 1;
  a->type = type;
  if (n->n_attribute) memcpy(list, n->attribute, n->n_attribute * sizeof *list);
  list[n->n_attribute++] = a;
  n->attribute = list;
  return a;
}

int crema_onnx_attr_int(crema_onnx_builder *b, Onnx__NodeProto *n, const char *name, int64_t v) {
  Onnx__AttributeProto *a = new_attr(b, n, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT);
  if (!a) return -1;
  a->has_i = 1;
  a->i = v;
  return 0;
}

int crema_onnx_attr_float(crema_onnx_builder *b, Onnx__NodeProto *n, const char *name, float v) {
  Onnx__AttributeProto *a = new_attr(b, n, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT);
  if (!a) return -1;
  a->has_f = 1;
  a->f = v;
  return 0;
}

int crema_onnx_attr_ints(crema_onnx_builder *b, Onnx__NodeProto *n, const char *name, int count,
                         const int64_t *v) {
  Onnx__AttributeProto *a = new_attr(b, n, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS);
  int64_t *vals = arena_alloc(b, (size_t)(count > 0 ? count : 1) * sizeof *vals);
  if (!a || !vals) return -1;
  memcpy(vals, v, (size_t)count * sizeof *vals);
  a->ints = vals;
  a->n_ints = (size_t)count;
  return 0;
}

static Onnx__TensorProto *new_tensor(crema_onnx_builder *b, const char *name, int n_dims, const int64_t *dims,
                                     int type) {
  Onnx__TensorProto *t = arena_alloc(b, sizeof *t);
  int64_t *d = arena_alloc(b, (size_t)(n_dims > 0 ? n_dims : 1) * sizeof *d);
  if (!t || !d) return NULL;
  onnx__tensor_proto__init(t);
  if (!(t->name = crema_onnx_str(b, "%s", name))) return NULL;
  if (n_dims > 0) memcpy(d, dims, (size_t)n_dims * sizeof *d);
  t->dims = d;
  t->n_dims = (size_t)n_dims;
  t->has_data_type = 1;
  t->data_type = type;
  return t;
}

/* Tensor bytes are stored as raw_data, which ONNX defines as little-endian: crema runs on
 * little-endian machines (x86-64, arm64), where the float array is those bytes. */
const char *crema_onnx_init_float(crema_onnx_builder *b, const char *name, int n_dims, const int64_t *dims,
                                  const float *data, size_t count, bool copy) {
  Onnx__TensorProto *t = new_tensor(b, name, n_dims, dims, ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT);
  if (!t) return NULL;
  const float *src = data;
  if (copy) {
    float *c = arena_alloc(b, (count ? count : 1) * sizeof *c);
    if (!c) return NULL;
    memcpy(c, data, count * sizeof *c);
    src = c;
  }
  t->has_raw_data = 1;
  t->raw_data.len = count * sizeof(float);
  t->raw_data.data = (uint8_t *)src;
  if (list_push(&b->inits, t)) return NULL;
  return t->name;
}

const char *crema_onnx_init_int64(crema_onnx_builder *b, const char *name, int n_dims, const int64_t *dims,
                                  const int64_t *data, size_t count) {
  Onnx__TensorProto *t = new_tensor(b, name, n_dims, dims, ONNX__TENSOR_PROTO__DATA_TYPE__INT64);
  int64_t *v = t ? arena_alloc(b, (count ? count : 1) * sizeof *v) : NULL;
  if (!v) return NULL;
  memcpy(v, data, count * sizeof *v);
  t->int64_data = v;
  t->n_int64_data = count;
  if (list_push(&b->inits, t)) return NULL;
  return t->name;
}

float *crema_onnx_floats(crema_onnx_builder *b, size_t count) {
  return arena_alloc(b, (count ? count : 1) * sizeof(float));
}

int crema_onnx_graph_io(crema_onnx_builder *b, bool input, const char *name, int n_dims, const int *dims) {
  Onnx__ValueInfoProto *v = arena_alloc(b, sizeof *v);
  Onnx__TypeProto *type = arena_alloc(b, sizeof *type);
  Onnx__TypeProto__Tensor *tt = arena_alloc(b, sizeof *tt);
  Onnx__TensorShapeProto *shape = arena_alloc(b, sizeof *shape);
  Onnx__TensorShapeProto__Dimension **dl = arena_alloc(b, (size_t)(n_dims > 0 ? n_dims : 1) * sizeof *dl);
  if (!v || !type || !tt || !shape || !dl) return -1;
  onnx__value_info_proto__init(v);
  onnx__type_proto__init(type);
  onnx__type_proto__tensor__init(tt);
  onnx__tensor_shape_proto__init(shape);
  for (int i = 0; i < n_dims; i++) {
    Onnx__TensorShapeProto__Dimension *d = arena_alloc(b, sizeof *d);
    if (!d) return -1;
    onnx__tensor_shape_proto__dimension__init(d);
    d->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
    d->dim_value = dims[i];
    dl[i] = d;
  }
  shape->dim = dl;
  shape->n_dim = (size_t)n_dims;
  tt->has_elem_type = 1;
  tt->elem_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
  tt->shape = shape;
  type->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
  type->tensor_type = tt;
  if (!(v->name = crema_onnx_str(b, "%s", name))) return -1;
  v->type = type;
  return list_push(input ? &b->inputs : &b->outputs, v);
}
