#include "tensor/workspace.h"

#include <stdint.h>

#include "base/mem.h"

int crema_workspace_reserve(crema_workspace *ws, size_t floats, crema_error *err) {
  if (floats <= ws->cap) return 0;
  if (floats > SIZE_MAX / sizeof(float))
    return crema_fail(err, "a workspace of %zu floats exceeds the address space", floats);
  crema_aligned_free(ws->data);
  ws->cap = 0;
  if (!(ws->data = crema_aligned_alloc(floats * sizeof(float))))
    return crema_fail(err, "out of memory allocating a %zu-float (%.1f MB) workspace", floats,
                      (double)floats * sizeof(float) / 1048576.0);
  ws->cap = floats;
  return 0;
}

float *crema_workspace_data(const crema_workspace *ws) { return ws->data; }

size_t crema_workspace_floats(const crema_workspace *ws) { return ws->cap; }

void crema_workspace_release(crema_workspace *ws) {
  crema_aligned_free(ws->data);
  *ws = (crema_workspace){0};
}
