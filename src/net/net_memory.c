/* net_memory.c -- activations that share storage when their lifetimes do not overlap:
 * gradients in a training net (crema_net_share_diffs), values in a forward-only net
 * (crema_net_share_activations).
 *
 * Number the layers in net order. Blob b is listed (as a bottom or a top) by the layers
 * lo(b)..hi(b): its producer, in-place layers, its consumer (after split insertion a blob
 * has one consumer, a Split when several layers read it). Forward writes b's data at lo(b)
 * and reads it for the last time at hi(b); backward writes b's diff at hi(b) and reads it for
 * the last time at lo(b). Blobs whose ranges do not meet can therefore keep their data (in a
 * net that only runs forward) or their diffs (in a net that only a training loop runs) in
 * one buffer, provided nothing reads them outside the pass. GoogLeNet at batch 32 holds
 * 1.3 GB of activation diffs of which about 150 MB are live at any one time; its test net at
 * batch 50 holds 1.3 GB of activations.
 *
 * Diffs. A blob shares only when every backward pass writes its whole diff before anything
 * reads it. These keep a diff of their own:
 *  - a blob whose diff some layer reads before any layer wrote it in that pass: the top of a
 *    layer whose consumers take no gradient, or an output nobody consumes, reads as zero
 *    (calloc'd, never written), as in Caffe, and must stay zero;
 *  - loss tops, whose diffs crema_net_seed_loss_diffs sets before backward starts;
 *  - blobs no backward touches (data, labels, a frozen head's input): calloc'd and never
 *    written, they take no memory anyway.
 * A layer counts as writing bottom j when it needs backward, propagates to j and computes
 * that gradient at all (never_written below lists the inputs crema's layers skip).
 *
 * Data. A blob shares when its producer writes it on every forward pass and nobody reads it
 * after the pass. These keep their own: the net's outputs and loss tops (the caller reads
 * them), the tops of layers without bottoms (Input tops are the caller's to fill, DummyData
 * fills its constant tops only once), and Split tops that borrow their bottom's data (the
 * bottom's range then reaches to their consumers).
 *
 * Buffers are assigned greedily by size: blobs in decreasing size each go to the smallest
 * buffer none of whose blobs' ranges meet theirs, else to a new buffer of their size. Every
 * buffer starts 64-byte aligned like a blob's own, so vectorised loops split the same way and
 * results are the same bits as without sharing. */
#include <stdlib.h>
#include <string.h>

#include "net/net.h"
#include "net/net_internal.h"

/* Bottoms a layer type never computes a gradient for, even when asked to: the labels of loss
 * layers (Caffe refuses those), indices, sequence-continuation flags, a Filter's selector, a
 * Crop's reference. Their diffs stay as they were, so they must not share. */
static bool never_written(const crema_layer *l, int j, int n_bottom) {
  const char *t = l->ops->type;
  if (!strcmp(t, "EuclideanLoss")) return false;
  if (!strcmp(t, "ContrastiveLoss")) return j == 2;
  if (l->ops->is_loss) return j >= 1;
  if (!strcmp(t, "Embed")) return true;
  if (!strcmp(t, "BatchReindex") || !strcmp(t, "Crop") || !strcmp(t, "LSTM") || !strcmp(t, "RNN"))
    return j == 1;
  if (!strcmp(t, "LSTMUnit")) return j == 2;
  if (!strcmp(t, "Filter")) return j == n_bottom - 1;
  return false;
}

enum { UNTOUCHED, WRITTEN_FIRST, READ_FIRST };

/* For every blob, what backward does to its diff first: walking the layers from the last,
 * each layer that runs backward reads its tops' diffs, then writes its bottoms' diffs (an
 * in-place blob is both: read first). first[b] gets UNTOUCHED, WRITTEN_FIRST or READ_FIRST. */
static void first_access(const crema_net *net, unsigned char *first) {
  memset(first, UNTOUCHED, (size_t)net->n_blobs);
  for (int li = net->n_layers - 1; li >= 0; li--) {
    const net_layer *L = &net->layers[li];
    if (!L->need_backward || !L->layer->ops->backward) continue;
    for (int j = 0; j < L->n_top; j++)
      if (first[L->top_ids[j]] == UNTOUCHED) first[L->top_ids[j]] = READ_FIRST;
    for (int j = 0; j < L->n_bottom; j++)
      if (L->bottom_need_backward[j] && !never_written(L->layer, j, L->n_bottom) &&
          first[L->bottom_ids[j]] == UNTOUCHED)
        first[L->bottom_ids[j]] = WRITTEN_FIRST;
  }
}

typedef struct blob_range {
  int blob, lo, hi; /* the layers lo..hi list the blob */
  size_t count;
} blob_range;

/* Larger first; equal sizes in net order, so a buffer's ranges mostly arrive in order. */
static int by_size(const void *a, const void *b) {
  const blob_range *x = a, *y = b;
  if (x->count != y->count) return x->count < y->count ? 1 : -1;
  return (x->lo > y->lo) - (x->lo < y->lo);
}

/* A buffer being planned: the disjoint ranges of its blobs, sorted. */
typedef struct plan_buffer {
  size_t count;
  int n, cap;
  int (*range)[2];
} plan_buffer;

/* Where [lo, hi] would go in p's sorted ranges, or -1 when it meets one of them. */
static int free_slot(const plan_buffer *p, int lo, int hi) {
  int a = 0, b = p->n; /* first range ending at or after lo */
  while (a < b) {
    const int m = (a + b) / 2;
    if (p->range[m][1] < lo)
      a = m + 1;
    else
      b = m;
  }
  return a < p->n && p->range[a][0] <= hi ? -1 : a;
}

static int insert_range(plan_buffer *p, int at, int lo, int hi) {
  if (p->n == p->cap) {
    const int cap = p->cap ? 2 * p->cap : 8;
    int(*r)[2] = realloc(p->range, (size_t)cap * sizeof *r);
    if (!r) return -1;
    p->range = r;
    p->cap = cap;
  }
  memmove(p->range + at + 1, p->range + at, (size_t)(p->n - at) * sizeof *p->range);
  p->range[at][0] = lo;
  p->range[at][1] = hi;
  p->n++;
  return 0;
}

/* Gives each range a buffer (buffer_of[i] for ranges[i]); *n_out buffers, sized in
 * plan[k].count. ranges must be sorted by_size. */
static int assign(const blob_range *ranges, int n, plan_buffer **out, int *n_out, int *buffer_of) {
  plan_buffer *plan = calloc((size_t)n + 1, sizeof *plan);
  if (!plan) return -1;
  int n_plan = 0;
  for (int i = 0; i < n; i++) {
    const blob_range *r = &ranges[i];
    int best = -1, at = 0;
    for (int k = 0; k < n_plan; k++) {
      if (best >= 0 && plan[k].count >= plan[best].count) continue;
      const int slot = free_slot(&plan[k], r->lo, r->hi);
      if (slot >= 0) {
        best = k;
        at = slot;
      }
    }
    if (best < 0) { /* sizes arrive in decreasing order: a new buffer is this blob's size */
      best = n_plan++;
      plan[best].count = r->count;
    }
    if (insert_range(&plan[best], at, r->lo, r->hi)) {
      for (int k = 0; k < n_plan; k++) free(plan[k].range);
      free(plan);
      return -1;
    }
    buffer_of[i] = best;
  }
  *out = plan;
  *n_out = n_plan;
  return 0;
}

/* The layers lo[b]..hi[b] that list blob b (-1 when none). */
static void listed_by(const crema_net *net, int *lo, int *hi) {
  for (int b = 0; b < net->n_blobs; b++) lo[b] = hi[b] = -1;
  for (int li = 0; li < net->n_layers; li++) {
    const net_layer *L = &net->layers[li];
    for (int k = 0; k < L->n_bottom + L->n_top; k++) {
      const int b = k < L->n_bottom ? L->bottom_ids[k] : L->top_ids[k - L->n_bottom];
      if (lo[b] < 0) lo[b] = li;
      hi[b] = li;
    }
  }
}

/* Plans buffers for the blobs with chosen[b] set, each needed while the layers lo[b]..hi[b]
 * run, allocates them into *set and lends them out (to the blobs' data, or diffs). */
static int share(crema_net *net, const bool *chosen, const int *lo, const int *hi, bool data,
                 net_buffers *set, crema_error *err) {
  blob_range *ranges = malloc(((size_t)net->n_blobs + 1) * sizeof *ranges);
  int *buffer_of = malloc(((size_t)net->n_blobs + 1) * sizeof *buffer_of);
  int n = 0, n_plan = 0;
  plan_buffer *plan = NULL;
  if (ranges && buffer_of) {
    for (int b = 0; b < net->n_blobs; b++)
      if (chosen[b] && net->blobs[b]->count)
        ranges[n++] = (blob_range){b, lo[b], hi[b], net->blobs[b]->count};
    qsort(ranges, (size_t)n, sizeof *ranges, by_size);
  }
  if (!ranges || !buffer_of || assign(ranges, n, &plan, &n_plan, buffer_of)) {
    free(ranges);
    free(buffer_of);
    return crema_fail(err, "out of memory");
  }
  int rc = 0;
  set->buf = calloc((size_t)n_plan + 1, sizeof *set->buf);
  set->count = calloc((size_t)n_plan + 1, sizeof *set->count);
  if (!set->buf || !set->count) rc = crema_fail(err, "out of memory");
  for (int k = 0; k < n_plan && !rc; k++) {
    set->count[k] = plan[k].count;
    set->n = k + 1;
    if (!(set->buf[k] = crema_blob_buffer_alloc(plan[k].count, err))) rc = -1;
  }
  if (rc) {
    crema_net_free_buffers(set); /* no blob borrowed one yet */
  } else {
    /* Every blob fits its buffer by construction: this cannot fail. */
    for (int i = 0; i < n && !rc; i++) {
      crema_blob *b = net->blobs[ranges[i].blob];
      float *buf = set->buf[buffer_of[i]];
      const size_t count = set->count[buffer_of[i]];
      rc = data ? crema_blob_borrow_data(b, buf, count, err) : crema_blob_borrow_diff(b, buf, count, err);
    }
  }
  for (int k = 0; k < n_plan; k++) free(plan[k].range);
  free(plan);
  free(ranges);
  free(buffer_of);
  return rc;
}

int crema_net_share_diffs(crema_net *net, crema_error *err) {
  if (net->diffs.buf) return 0;
  const size_t nb = (size_t)net->n_blobs + 1;
  unsigned char *first = malloc(nb);
  bool *ok = malloc(nb * sizeof *ok);
  int *lo = malloc(nb * sizeof *lo), *hi = malloc(nb * sizeof *hi);
  int rc = 0;
  if (!first || !ok || !lo || !hi) {
    rc = crema_fail(err, "out of memory");
  } else {
    first_access(net, first);
    listed_by(net, lo, hi);
    for (int b = 0; b < net->n_blobs; b++)
      ok[b] = first[b] == WRITTEN_FIRST && net->blob_loss_weight[b] == 0.0f && !net->blobs[b]->diff_borrowed;
    rc = share(net, ok, lo, hi, false, &net->diffs, err);
  }
  free(first);
  free(ok);
  free(lo);
  free(hi);
  return rc ? crema_error_prefix(err, "sharing the diffs of net %s", crema_net_name(net)) : 0;
}

int crema_net_share_activations(crema_net *net, crema_error *err) {
  if (net->activations.buf) return 0;
  const size_t nb = (size_t)net->n_blobs + 1;
  bool *ok = malloc(nb * sizeof *ok), *kept = calloc(nb, sizeof *kept);
  int *lo = malloc(nb * sizeof *lo), *hi = malloc(nb * sizeof *hi);
  int rc = 0;
  if (!ok || !kept || !lo || !hi) {
    rc = crema_fail(err, "out of memory");
  } else {
    listed_by(net, lo, hi);
    /* Read after the pass, or not written by a layer on every pass. */
    for (int i = 0; i < net->n_outputs; i++) kept[net->output_ids[i]] = true;
    for (int i = 0; i < net->n_inputs; i++) kept[net->input_ids[i]] = true;
    for (int b = 0; b < net->n_blobs; b++)
      kept[b] = kept[b] || net->blob_loss_weight[b] != 0.0f || lo[b] < 0 || net->layers[lo[b]].n_bottom == 0;
    /* A Split's tops read its bottom's buffer: the bottom lives as long as they do, and is
     * kept when one of them is (a Split top never feeds another Split). */
    for (int li = 0; li < net->n_layers; li++) {
      const net_layer *L = &net->layers[li];
      if (!L->shares_data) continue;
      const int src = L->bottom_ids[0];
      for (int j = 0; j < L->n_top; j++) {
        const int t = L->top_ids[j];
        if (hi[t] > hi[src]) hi[src] = hi[t];
        kept[src] = kept[src] || kept[t];
      }
    }
    for (int b = 0; b < net->n_blobs; b++)
      ok[b] = !kept[b] && !net->blobs[b]->data_of && !net->blobs[b]->data_borrowed;
    rc = share(net, ok, lo, hi, true, &net->activations, err);
  }
  /* The Split tops follow their bottoms into the buffers now, not at the next forward. */
  for (int li = 0; li < net->n_layers && !rc; li++) {
    const net_layer *L = &net->layers[li];
    for (int j = 0; L->shares_data && j < L->n_top && !rc; j++)
      rc = crema_blob_share_data(L->tops[j], L->bottoms[0], err);
  }
  free(ok);
  free(kept);
  free(lo);
  free(hi);
  return rc ? crema_error_prefix(err, "sharing the activations of net %s", crema_net_name(net)) : 0;
}

static size_t buffer_bytes(const net_buffers *set) {
  size_t bytes = 0;
  for (int k = 0; k < set->n; k++) bytes += set->count[k] * sizeof(float);
  return bytes;
}

size_t crema_net_diff_bytes(const crema_net *net) {
  size_t bytes = buffer_bytes(&net->diffs);
  for (int b = 0; b < net->n_blobs; b++)
    if (!net->blobs[b]->diff_borrowed) bytes += net->blobs[b]->capacity * sizeof(float);
  return bytes;
}

size_t crema_net_data_bytes(const crema_net *net) {
  size_t bytes = buffer_bytes(&net->activations);
  for (int b = 0; b < net->n_blobs; b++)
    if (!net->blobs[b]->data_borrowed && !net->blobs[b]->data_of)
      bytes += net->blobs[b]->capacity * sizeof(float);
  return bytes;
}

void crema_net_free_buffers(net_buffers *set) {
  for (int k = 0; k < set->n; k++) crema_blob_buffer_free(set->buf[k], set->count[k]);
  free(set->buf);
  free(set->count);
  *set = (net_buffers){0};
}
