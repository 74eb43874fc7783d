/* strip.c -- crema's own fields (numbered >= 1000) out of any message, for BVLC Caffe. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/io.h"
#include "recipe/recipe.h"

#define CREMA_FIRST_OWN_FIELD 1000

static void *member(const ProtobufCMessage *m, unsigned offset) { return (char *)m + offset; }

static size_t *count_of(const ProtobufCMessage *m, const ProtobufCFieldDescriptor *f) {
  return member(m, f->quantifier_offset);
}

/* Resets one field to "not set". */
static void clear_field(ProtobufCMessage *m, const ProtobufCFieldDescriptor *f) {
  void *p = member(m, f->offset);
  if (f->label == PROTOBUF_C_LABEL_REPEATED) {
    size_t *n = count_of(m, f);
    void **arr = *(void ***)p;
    if (f->type == PROTOBUF_C_TYPE_MESSAGE || f->type == PROTOBUF_C_TYPE_STRING)
      for (size_t i = 0; i < *n; i++) {
        if (f->type == PROTOBUF_C_TYPE_MESSAGE)
          crema_message_free(arr[i]);
        else
          free(arr[i]);
      }
    else if (f->type == PROTOBUF_C_TYPE_BYTES)
      for (size_t i = 0; i < *n; i++) free(((ProtobufCBinaryData *)(void *)arr)[i].data);
    free(arr);
    *(void **)p = NULL;
    *n = 0;
    return;
  }
  switch (f->type) {
  case PROTOBUF_C_TYPE_MESSAGE:
    crema_message_free(*(ProtobufCMessage **)p);
    *(ProtobufCMessage **)p = NULL;
    return;
  case PROTOBUF_C_TYPE_STRING:
    if (*(char **)p != f->default_value) free(*(char **)p);
    *(char **)p = (char *)f->default_value;
    return;
  case PROTOBUF_C_TYPE_BYTES: {
    ProtobufCBinaryData *b = p;
    const ProtobufCBinaryData *d = f->default_value;
    if (!d || b->data != d->data) free(b->data);
    b->data = d ? d->data : NULL;
    b->len = d ? d->len : 0;
    *(protobuf_c_boolean *)member(m, f->quantifier_offset) = 0;
    return;
  }
  default:
    if (f->quantifier_offset) *(protobuf_c_boolean *)member(m, f->quantifier_offset) = 0;
    return;
  }
}

void crema_recipe_strip_crema_fields(ProtobufCMessage *m) {
  if (!m) return;
  const ProtobufCMessageDescriptor *d = m->descriptor;
  for (unsigned i = 0; i < d->n_fields; i++) {
    const ProtobufCFieldDescriptor *f = &d->fields[i];
    if (f->id >= CREMA_FIRST_OWN_FIELD) {
      clear_field(m, f);
    } else if (f->type == PROTOBUF_C_TYPE_MESSAGE) {
      void *p = member(m, f->offset);
      if (f->label == PROTOBUF_C_LABEL_REPEATED) {
        ProtobufCMessage **arr = *(ProtobufCMessage ***)p;
        for (size_t k = 0; k < *count_of(m, f); k++) crema_recipe_strip_crema_fields(arr[k]);
      } else {
        crema_recipe_strip_crema_fields(*(ProtobufCMessage **)p);
      }
    }
  }
}

/* Whether field f of m is set. */
static bool is_set(const ProtobufCMessage *m, const ProtobufCFieldDescriptor *f) {
  const void *p = member(m, f->offset);
  if (f->label == PROTOBUF_C_LABEL_REPEATED) return *count_of(m, f) > 0;
  if (f->type == PROTOBUF_C_TYPE_MESSAGE) return *(ProtobufCMessage *const *)p != NULL;
  if (f->type == PROTOBUF_C_TYPE_STRING) {
    const char *s = *(char *const *)p;
    return s && s != f->default_value;
  }
  return f->quantifier_offset && *(const protobuf_c_boolean *)member(m, f->quantifier_offset);
}

bool crema_recipe_has_crema_fields(const ProtobufCMessage *m, char *where, size_t where_size) {
  if (!m) return false;
  const ProtobufCMessageDescriptor *d = m->descriptor;
  for (unsigned i = 0; i < d->n_fields; i++) {
    const ProtobufCFieldDescriptor *f = &d->fields[i];
    if (!is_set(m, f)) continue;
    if (f->id >= CREMA_FIRST_OWN_FIELD) {
      if (where) snprintf(where, where_size, "%s.%s", d->short_name, f->name);
      return true;
    }
    if (f->type != PROTOBUF_C_TYPE_MESSAGE) continue;
    const void *p = member(m, f->offset);
    if (f->label == PROTOBUF_C_LABEL_REPEATED) {
      ProtobufCMessage *const *arr = *(ProtobufCMessage *const *const *)p;
      for (size_t k = 0; k < *count_of(m, f); k++)
        if (crema_recipe_has_crema_fields(arr[k], where, where_size)) return true;
    } else if (crema_recipe_has_crema_fields(*(ProtobufCMessage *const *)p, where, where_size)) {
      return true;
    }
  }
  return false;
}
