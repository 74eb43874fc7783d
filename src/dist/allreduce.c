/* allreduce.c -- making a solver data-parallel: the start-up broadcast of rank 0's weights
 * and solver state, the bucketed gradient allreduce overlapped with backward, and the stop
 * decision every rank takes.
 *
 * Buckets: the learned parameters (lr_mult != 0) in the order backward completes them --
 * a parameter's gradient is final once backward has finished the lowest layer using it --
 * are grouped into buckets of about bucket_bytes. During the last of the iter_size backward
 * passes, the net calls back after each layer; every bucket whose parameters are all final
 * is copied into its slice of one staging buffer and started with MPI_Iallreduce, and the
 * buckets in flight are polled (Open MPI progresses non-blocking collectives only inside
 * MPI calls). The solver's after_backward hook starts what is left, waits, and copies the
 * sums, divided by the number of ranks, back into the diffs. Nothing is allocated per
 * iteration. (MPI builds only; serial.c otherwise.) */
#ifdef CREMA_HAVE_MPI

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "base/mem.h"
#include "dist/dist_internal.h"

#define DEFAULT_BUCKET_BYTES ((size_t)4 << 20)

/* ---------------------------------------------------------------- buckets */

/* The lowest layer whose blobs include `blob`: backward finishes its gradient there. */
static int ready_layer(const crema_net *net, const crema_blob *blob) {
  for (int li = 0; li < crema_net_num_layers(net); li++) {
    const crema_layer *l = crema_net_layer(net, li);
    for (int b = 0; b < l->n_blobs; b++)
      if (l->blobs[b] == blob) return li;
  }
  return 0;
}

typedef struct send_param {
  int index, ready;
} send_param;

/* Latest-ready first (backward order); ties in reverse parameter order. */
static int cmp_send(const void *a, const void *b) {
  const send_param *x = a, *y = b;
  if (x->ready != y->ready) return y->ready - x->ready;
  return y->index - x->index;
}

static int plan_buckets(crema_dist *d, size_t bucket_bytes, crema_error *err) {
  const crema_net *net = d->net;
  const int np = crema_net_num_params(net);
  send_param *sp = calloc((size_t)np + 1, sizeof *sp);
  d->order = calloc((size_t)np + 1, sizeof *d->order);
  d->buckets = calloc((size_t)np + 1, sizeof *d->buckets);
  if (!sp || !d->order || !d->buckets) {
    free(sp);
    return crema_fail(err, "out of memory");
  }
  int n = 0;
  for (int i = 0; i < np; i++) {
    const crema_net_param *p = crema_net_param_at(net, i);
    if (p->lr_mult == 0.0f) {
      d->stats.params_frozen++;
      continue;
    }
    if (p->blob->count > (size_t)0x7fffffff) {
      free(sp);
      return crema_fail(err, "parameter %d of layer \"%s\" has %zu values, more than one allreduce can send",
                        p->index, crema_net_layer_name(net, p->layer), p->blob->count);
    }
    sp[n].index = i;
    sp[n].ready = ready_layer(net, p->blob);
    n++;
  }
  qsort(sp, (size_t)n, sizeof *sp, cmp_send);
  size_t offset = 0;
  for (int k = 0; k < n; k++) {
    d->order[k] = sp[k].index;
    const size_t count = crema_net_param_at(net, sp[k].index)->blob->count;
    dist_bucket *b = &d->buckets[d->n_buckets > 0 ? d->n_buckets - 1 : 0];
    const bool open =
        d->n_buckets > 0 && b->count * sizeof(float) < bucket_bytes && b->count + count <= (size_t)0x7fffffff;
    if (!open) {
      b = &d->buckets[d->n_buckets++];
      b->first = k;
      b->offset = offset;
      b->req = MPI_REQUEST_NULL;
    }
    b->n++;
    b->count += count;
    b->ready = sp[k].ready;
    offset += count;
  }
  free(sp);
  d->n_send = n;
  d->staging_count = offset;
  d->staging = crema_aligned_alloc((offset ? offset : 1) * sizeof(float));
  if (!d->staging)
    return crema_fail(err, "out of memory allocating %zu bytes of gradient buffers", offset * 4);
  d->stats.buckets = d->n_buckets;
  d->stats.params_sent = n;
  d->stats.bytes = offset * sizeof(float);
  return 0;
}

static int start_bucket(crema_dist *d, int bi, crema_error *err) {
  dist_bucket *b = &d->buckets[bi];
  float *dst = d->staging + b->offset;
  for (int k = b->first; k < b->first + b->n; k++) {
    const crema_blob *blob = crema_net_param_at(d->net, d->order[k])->blob;
    memcpy(dst, blob->diff, blob->count * sizeof(float));
    dst += blob->count;
  }
  if (bi == 0) d->t_first_start = crema_dist_now();
  int rc = MPI_Iallreduce(MPI_IN_PLACE, d->staging + b->offset, (int)b->count, MPI_FLOAT, MPI_SUM, d->comm,
                          &b->req);
  if (rc != MPI_SUCCESS) {
    char text[MPI_MAX_ERROR_STRING + 32];
    crema_dist_mpi_error(rc, text, sizeof text);
    return crema_fail(err, "starting the allreduce of gradient bucket %d failed: %s", bi, text);
  }
  return 0;
}

/* The net's per-layer backward callback: start the buckets that became final. */
static void on_layer_backward(void *ctx, int layer) {
  crema_dist *d = ctx;
  if (layer == d->top_layer) d->pass++;
  if (!d->overlap || d->failed || d->pass < d->iter_size) return;
  while (d->next < d->n_buckets && d->buckets[d->next].ready >= layer) {
    if (start_bucket(d, d->next, &d->pending)) {
      d->failed = true;
      return;
    }
    d->next++;
  }
  /* Progress the buckets in flight (a test, not a wait). */
  if (d->next > 0) {
    int done = 0;
    for (int i = 0; i < d->next; i++) {
      if (d->buckets[i].req == MPI_REQUEST_NULL) continue;
      MPI_Test(&d->buckets[i].req, &done, MPI_STATUS_IGNORE);
      if (!done) break;
    }
  }
}

/* The solver's after_backward hook: finish the exchange and write the mean gradient. */
static int after_backward(void *ctx, crema_solver *s, crema_error *err) {
  (void)s;
  crema_dist *d = ctx;
  d->pass = 0;
  if (d->failed) {
    *err = d->pending;
    return -1;
  }
  const double t0 = crema_dist_now();
  for (; d->next < d->n_buckets; d->next++)
    if (start_bucket(d, d->next, err)) return -1;
  d->next = 0;
  for (int i = 0; i < d->n_buckets; i++) {
    char what[96];
    snprintf(what, sizeof what, "the gradient allreduce (bucket %d of %d)", i + 1, d->n_buckets);
    if (crema_dist_wait(d, 1, &d->buckets[i].req, true, what, err)) return -1;
  }
  const double t_done = crema_dist_now();
  const float scale = 1.0f / (float)d->size;
  const float *src = d->staging;
  for (int k = 0; k < d->n_send; k++) {
    crema_blob *blob = crema_net_param_at(d->net, d->order[k])->blob;
    float *diff = blob->diff;
    for (size_t j = 0; j < blob->count; j++) diff[j] = src[j] * scale;
    src += blob->count;
  }
  const double t1 = crema_dist_now();
  d->stats.iterations++;
  d->stats.exposed_seconds += t1 - t0;
  if (d->n_buckets) d->stats.total_seconds += t_done - d->t_first_start;
  return 0;
}

/* The solver's agree_stop hook: rank 0 decides. Called before the forward passes (then,
 * unless stopping, the layers switch to this rank's random streams) and after the update. */
static int agree_stop(void *ctx, crema_solver *s, bool *stop, crema_error *err) {
  (void)s;
  crema_dist *d = ctx;
  int v = *stop;
  if (crema_dist_bcast(d, &v, sizeof v, "the stop decision", err)) return -1;
  if (v && !*stop && d->rank != 0) CREMA_WARN("rank %d: stopping with rank 0", d->rank);
  *stop = v != 0;
  const bool before_forward = !d->after_update;
  d->after_update = false;
  if (before_forward && !*stop) crema_dist_rng_split(d);
  return 0;
}

/* The solver's on_iteration hook (after the update, before a snapshot): back to the
 * common random state. */
static void on_iteration(void *ctx, const crema_solver *s, int iter, float loss, float lr) {
  (void)s;
  (void)iter;
  (void)loss;
  (void)lr;
  crema_dist *d = ctx;
  crema_dist_rng_join(d);
  d->after_update = true;
}

/* ---------------------------------------------------------------- start-up broadcast */

static int bcast_weights(crema_dist *d, crema_error *err) {
  const crema_net *net = d->net;
  for (int li = 0; li < crema_net_num_layers(net); li++) {
    const crema_layer *l = crema_net_layer(net, li);
    for (int b = 0; b < l->n_blobs; b++) {
      if (l->blob_shared[b]) continue;
      char what[256];
      snprintf(what, sizeof what, "the weights of layer \"%s\"", crema_net_layer_name(net, li));
      if (crema_dist_bcast(d, l->blobs[b]->data, l->blobs[b]->count * sizeof(float), what, err)) return -1;
    }
  }
  return 0;
}

static int bcast_state(crema_dist *d, crema_solver *s, crema_error *err) {
  uint8_t *buf = NULL;
  size_t len = 0;
  if (d->rank == 0 && crema_solver_state_pack(s, &buf, &len, err)) return -1;
  uint64_t n = len;
  int rc = crema_dist_bcast(d, &n, sizeof n, "the solver state size", err);
  if (!rc && d->rank != 0 && !(buf = malloc(n ? n : 1))) rc = crema_fail(err, "out of memory");
  if (!rc) rc = crema_dist_bcast(d, buf, n, "the solver state", err);
  if (!rc && d->rank != 0) rc = crema_solver_state_unpack(s, buf, n, err);
  free(buf);
  return rc;
}

int crema_dist_attach(crema_dist *d, crema_solver *s, const crema_dist_options *opt, crema_error *err) {
  crema_dist_options none;
  memset(&none, 0, sizeof none);
  if (!opt) opt = &none;
  if (crema_dist_rank(d) == 0 && opt->snapshot &&
      crema_dist_note_resume(crema_dist_size(d), s, opt->snapshot, err))
    return -1;
  if (!d || d->size == 1) return 0;
  if (opt->timeout_s > 0) d->timeout_s = opt->timeout_s;
  d->solver = s;
  d->net = crema_solver_net(s);
  d->overlap = !opt->no_overlap;
  d->iter_size = crema_solver_param(s)->iter_size > 0 ? crema_solver_param(s)->iter_size : 1;
  d->top_layer = crema_net_num_layers(d->net) - 1;
  /* Every rank reaches here or the job is stopped by the failing rank's abort. */
  if (bcast_weights(d, err) || bcast_state(d, s, err)) return -1;
  if (plan_buckets(d, opt->bucket_bytes ? opt->bucket_bytes : DEFAULT_BUCKET_BYTES, err)) return -1;
  if (crema_dist_rng_init(d, err)) return -1;
  crema_solver_set_ranks(s, d->rank, d->size);
  crema_solver_hooks h;
  memset(&h, 0, sizeof h);
  h.ctx = d;
  h.after_backward = after_backward;
  h.agree_stop = agree_stop;
  h.on_iteration = on_iteration;
  if (crema_solver_add_hooks(s, &h, err)) return -1;
  crema_net_set_backward_callback(d->net, on_layer_backward, d);
  const Crema__SolverParameter *p = crema_solver_param(s);
  CREMA_INFO("Data-parallel: %d ranks x iter_size %d; gradients of %d parameters (%.2f MB) summed in %d "
             "bucket(s)%s; %d frozen parameter(s) not sent",
             d->size, p->iter_size, d->stats.params_sent, (double)d->stats.bytes / 1e6, d->n_buckets,
             d->overlap ? " started during backward" : " after backward", d->stats.params_frozen);
  return 0;
}

crema_dist_stats crema_dist_get_stats(const crema_dist *d) {
  crema_dist_stats st;
  memset(&st, 0, sizeof st);
  if (d) st = d->stats;
  return st;
}

void crema_dist_log_stats(const crema_dist *d) {
  if (!d || d->size == 1 || d->stats.iterations == 0) return;
  const double it = d->stats.iterations;
  CREMA_INFO("Gradient allreduce: %.2f MB per iteration; %.4f s per iteration waited for after backward "
             "(not overlapped), %.4f s from first bucket start to last bucket end",
             (double)d->stats.bytes / 1e6, d->stats.exposed_seconds / it, d->stats.total_seconds / it);
}

#endif
