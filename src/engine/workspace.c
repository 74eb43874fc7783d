/* workspace.c -- the engines' shared scratch buffer (see workspace.h). */
#include "engine/workspace.h"

#include <pthread.h>

#include "base/mem.h"

static pthread_mutex_t ws_mutex = PTHREAD_MUTEX_INITIALIZER;
static char *ws_base;
static size_t ws_size;
static int ws_users;

int crema_engine_ws_reserve(size_t bytes, crema_error *err) {
  pthread_mutex_lock(&ws_mutex);
  if (bytes > ws_size) {
    char *p = crema_aligned_alloc(bytes);
    if (!p) {
      pthread_mutex_unlock(&ws_mutex);
      return crema_fail(err, "out of memory allocating a %zu-byte engine workspace", bytes);
    }
    crema_aligned_free(ws_base);
    ws_base = p;
    ws_size = bytes;
  }
  ws_users++;
  pthread_mutex_unlock(&ws_mutex);
  return 0;
}

void crema_engine_ws_release(void) {
  pthread_mutex_lock(&ws_mutex);
  if (--ws_users == 0) {
    crema_aligned_free(ws_base);
    ws_base = NULL;
    ws_size = 0;
  }
  pthread_mutex_unlock(&ws_mutex);
}

char *crema_engine_ws_lock(void) {
  pthread_mutex_lock(&ws_mutex);
  return ws_base;
}

void crema_engine_ws_unlock(void) { pthread_mutex_unlock(&ws_mutex); }
