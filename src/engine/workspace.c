/* workspace.c -- the engines' shared scratch buffer (see workspace.h): one crema_workspace
 * (tensor/workspace.h) for the whole process, behind a lock and a count of its users. */
#include "engine/workspace.h"

#include <pthread.h>

#include "tensor/workspace.h"

static pthread_mutex_t ws_mutex = PTHREAD_MUTEX_INITIALIZER;
static crema_workspace ws;
static int ws_users;

int crema_engine_ws_reserve(size_t bytes, crema_error *err) {
  pthread_mutex_lock(&ws_mutex);
  int rc = crema_workspace_reserve(&ws, (bytes + sizeof(float) - 1) / sizeof(float), err);
  if (rc == 0) ws_users++;
  pthread_mutex_unlock(&ws_mutex);
  return rc;
}

void crema_engine_ws_release(void) {
  pthread_mutex_lock(&ws_mutex);
  if (--ws_users == 0) crema_workspace_release(&ws);
  pthread_mutex_unlock(&ws_mutex);
}

char *crema_engine_ws_lock(void) {
  pthread_mutex_lock(&ws_mutex);
  return (char *)crema_workspace_data(&ws);
}

void crema_engine_ws_unlock(void) { pthread_mutex_unlock(&ws_mutex); }

size_t crema_engine_ws_bytes(void) {
  pthread_mutex_lock(&ws_mutex);
  const size_t bytes = crema_workspace_floats(&ws) * sizeof(float);
  pthread_mutex_unlock(&ws_mutex);
  return bytes;
}
