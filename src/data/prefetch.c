#include "data/prefetch.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "base/mem.h"

typedef struct slot {
  float *data, *label;
  int status; /* 0 ok, -1 fill failed */
  crema_error err;
} slot;

struct crema_prefetcher {
  int n_slots;
  size_t data_count, label_count;
  uint64_t batch_records;
  crema_prefetch_fill fill;
  void *ctx;
  slot *slots;
  pthread_mutex_t mu;
  pthread_cond_t changed;
  int head, filled; /* oldest filled slot, number of filled slots */
  uint64_t next_first;
  bool stop, running, thread_done;
  pthread_t thread;
};

static void *worker(void *arg) {
  crema_prefetcher *p = arg;
  pthread_mutex_lock(&p->mu);
  for (;;) {
    while (!p->stop && p->filled == p->n_slots) pthread_cond_wait(&p->changed, &p->mu);
    if (p->stop) break;
    slot *s = &p->slots[(p->head + p->filled) % p->n_slots];
    const uint64_t first = p->next_first;
    pthread_mutex_unlock(&p->mu);
    /* The slot is free, so nobody else touches it while we fill it unlocked. */
    s->status = p->fill(p->ctx, first, s->data, s->label, &s->err);
    pthread_mutex_lock(&p->mu);
    p->filled++;
    p->next_first = first + p->batch_records;
    pthread_cond_broadcast(&p->changed);
    if (s->status) break; /* the net gets the error when it reaches this batch */
  }
  p->thread_done = true;
  pthread_cond_broadcast(&p->changed);
  pthread_mutex_unlock(&p->mu);
  return NULL;
}

static int start(crema_prefetcher *p, uint64_t first, crema_error *err) {
  p->head = p->filled = 0;
  p->next_first = first;
  p->stop = p->thread_done = false;
  if (pthread_create(&p->thread, NULL, worker, p) != 0)
    return crema_fail(err, "cannot start the prefetch thread");
  p->running = true;
  return 0;
}

static void stop(crema_prefetcher *p) {
  if (!p->running) return;
  pthread_mutex_lock(&p->mu);
  p->stop = true;
  pthread_cond_broadcast(&p->changed);
  pthread_mutex_unlock(&p->mu);
  pthread_join(p->thread, NULL);
  p->running = false;
}

int crema_prefetcher_create(int n_slots, size_t data_count, size_t label_count, uint64_t batch_records,
                            crema_prefetch_fill fill, void *ctx, uint64_t first, crema_prefetcher **out,
                            crema_error *err) {
  *out = NULL;
  if (n_slots < 1) n_slots = 1;
  crema_prefetcher *p = calloc(1, sizeof *p);
  if (!p) return crema_fail(err, "out of memory");
  p->n_slots = n_slots;
  p->data_count = data_count;
  p->label_count = label_count;
  p->batch_records = batch_records;
  p->fill = fill;
  p->ctx = ctx;
  p->slots = calloc((size_t)n_slots, sizeof *p->slots);
  pthread_mutex_init(&p->mu, NULL);
  pthread_cond_init(&p->changed, NULL);
  bool ok = p->slots != NULL;
  for (int i = 0; ok && i < n_slots; i++) {
    p->slots[i].data = crema_aligned_alloc(data_count * sizeof(float));
    p->slots[i].label = crema_aligned_alloc((label_count ? label_count : 1) * sizeof(float));
    ok = p->slots[i].data && p->slots[i].label;
  }
  if (!ok) {
    crema_prefetcher_free(p);
    return crema_fail(err, "out of memory for %d prefetch batches of %zu floats", n_slots, data_count);
  }
  if (start(p, first, err)) {
    crema_prefetcher_free(p);
    return -1;
  }
  *out = p;
  return 0;
}

int crema_prefetcher_next(crema_prefetcher *p, float *data, float *label, crema_error *err) {
  pthread_mutex_lock(&p->mu);
  while (p->filled == 0 && !p->thread_done) pthread_cond_wait(&p->changed, &p->mu);
  if (p->filled == 0) {
    pthread_mutex_unlock(&p->mu);
    return crema_fail(err, "the prefetch thread stopped after an earlier error");
  }
  slot *s = &p->slots[p->head];
  pthread_mutex_unlock(&p->mu);
  /* The head slot is ours until we release it below. */
  if (s->status) {
    *err = s->err;
    return -1; /* keep the failed slot: every later call reports the same error */
  }
  memcpy(data, s->data, p->data_count * sizeof(float));
  if (label && p->label_count) memcpy(label, s->label, p->label_count * sizeof(float));
  pthread_mutex_lock(&p->mu);
  p->head = (p->head + 1) % p->n_slots;
  p->filled--;
  pthread_cond_broadcast(&p->changed);
  pthread_mutex_unlock(&p->mu);
  return 0;
}

int crema_prefetcher_restart(crema_prefetcher *p, uint64_t first, crema_error *err) {
  stop(p);
  return start(p, first, err);
}

void crema_prefetcher_free(crema_prefetcher *p) {
  if (!p) return;
  stop(p);
  if (p->slots)
    for (int i = 0; i < p->n_slots; i++) {
      crema_aligned_free(p->slots[i].data);
      crema_aligned_free(p->slots[i].label);
    }
  free(p->slots);
  pthread_mutex_destroy(&p->mu);
  pthread_cond_destroy(&p->changed);
  free(p);
}
