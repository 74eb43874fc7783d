/* edit.c -- in-place edits of unpacked NetParameter messages (see edit.h). */
#include "export/edit.h"

#include <stdlib.h>
#include <string.h>

int crema_edit_set_string(char **field, const char *value) {
  char *s = strdup(value);
  if (!s) return -1;
  free(*field);
  *field = s;
  return 0;
}

void crema_edit_remove_layer(Crema__NetParameter *m, size_t i) {
  protobuf_c_message_free_unpacked(&m->layer[i]->base, NULL);
  memmove(m->layer + i, m->layer + i + 1, (m->n_layer - i - 1) * sizeof *m->layer);
  m->n_layer--;
}

Crema__LayerParameter *crema_edit_new_layer(const char *name, const char *type) {
  Crema__LayerParameter *lp = malloc(sizeof *lp);
  if (!lp) return NULL;
  crema__layer_parameter__init(lp);
  lp->name = strdup(name);
  lp->type = strdup(type);
  if (!lp->name || !lp->type) {
    protobuf_c_message_free_unpacked(&lp->base, NULL);
    return NULL;
  }
  return lp;
}

int crema_edit_append_string(char ***list, size_t *n, const char *s) {
  char **grown = realloc(*list, (*n + 1) * sizeof *grown);
  if (!grown) return -1;
  *list = grown;
  if (!(grown[*n] = strdup(s))) return -1;
  (*n)++;
  return 0;
}

void crema_edit_free_blobs(Crema__LayerParameter *lp) {
  for (size_t i = 0; i < lp->n_blobs; i++) protobuf_c_message_free_unpacked(&lp->blobs[i]->base, NULL);
  free(lp->blobs);
  lp->blobs = NULL;
  lp->n_blobs = 0;
}

void crema_edit_clear_rules(Crema__LayerParameter *lp) {
  for (size_t i = 0; i < lp->n_include; i++) protobuf_c_message_free_unpacked(&lp->include[i]->base, NULL);
  for (size_t i = 0; i < lp->n_exclude; i++) protobuf_c_message_free_unpacked(&lp->exclude[i]->base, NULL);
  free(lp->include);
  free(lp->exclude);
  lp->include = NULL;
  lp->exclude = NULL;
  lp->n_include = lp->n_exclude = 0;
  lp->has_phase = 0;
}

int crema_edit_find_layer(const Crema__NetParameter *m, const char *name) {
  for (size_t i = 0; i < m->n_layer; i++)
    if (m->layer[i]->name && !strcmp(m->layer[i]->name, name)) return (int)i;
  return -1;
}

Crema__BlobProto *crema_edit_new_blob(const int *dims, int n, const float *data, size_t count) {
  Crema__BlobProto *b = malloc(sizeof *b);
  Crema__BlobShape *s = malloc(sizeof *s);
  int64_t *d = malloc((size_t)(n > 0 ? n : 1) * sizeof *d);
  float *v = malloc((count ? count : 1) * sizeof *v);
  if (!b || !s || !d || !v) {
    free(b);
    free(s);
    free(d);
    free(v);
    return NULL;
  }
  crema__blob_proto__init(b);
  crema__blob_shape__init(s);
  for (int i = 0; i < n; i++) d[i] = dims[i];
  s->dim = d;
  s->n_dim = (size_t)n;
  b->shape = s;
  memcpy(v, data, count * sizeof *v);
  b->data = v;
  b->n_data = count;
  return b;
}

size_t crema_edit_blob_count(const Crema__BlobProto *b) { return b->n_data ? b->n_data : b->n_double_data; }

bool crema_edit_reads(const Crema__LayerParameter *lp, const char *name) {
  for (size_t i = 0; i < lp->n_bottom; i++)
    if (!strcmp(lp->bottom[i], name)) return true;
  return false;
}

bool crema_edit_writes(const Crema__LayerParameter *lp, const char *name) {
  for (size_t i = 0; i < lp->n_top; i++)
    if (!strcmp(lp->top[i], name)) return true;
  return false;
}
