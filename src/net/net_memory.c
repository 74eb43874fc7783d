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
 * them), the tops of layers without bottoms unless the layer refills them on every pass
 * (Input tops are the caller's to fill, DummyData fills its constant tops only once; Data
 * layers copy in each batch), and Split tops that borrow their bottom's data (the bottom's
 * range then reaches to their consumers).
 *
 * The blobs that share get slices of one arena, placed greedily by size (place below). Every
 * slice starts 64-byte aligned like a blob's own buffer, so vectorised loops split the same
 * way and results are the same bits as without sharing. */
#include <stdint.h>
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

/* Whether blob b, first listed by layer L, is written whole by L's every forward: a top of a
 * layer with bottoms, or of a data layer that refills it (crema_layer_ops.refills_top). */
static bool refilled(const net_layer *L, int b) {
  if (L->n_bottom > 0) return true;
  const crema_layer *l = L->layer;
  for (int j = 0; j < L->n_top; j++)
    if (L->top_ids[j] == b) return l->ops->refills_top && l->ops->refills_top(l, j);
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

/* A blob to place in the arena: needed while the layers lo..hi run. count is rounded up to
 * whole 64-byte lines, so every blob starts as aligned as a buffer of its own would. */
typedef struct placement {
  int blob, lo, hi;
  size_t count, offset;
} placement;

enum { LINE = 16 }; /* floats per 64 bytes */

/* Larger first; equal sizes in net order. */
static int by_size(const void *a, const void *b) {
  const placement *x = a, *y = b;
  if (x->count != y->count) return x->count < y->count ? 1 : -1;
  return (x->lo > y->lo) - (x->lo < y->lo);
}

static int by_offset(const void *a, const void *b) {
  const placement *x = *(const placement *const *)a, *y = *(const placement *const *)b;
  return (x->offset > y->offset) - (x->offset < y->offset);
}

/* Greedy by size (as TensorFlow Lite's arena planner): each blob, largest first, goes into the
 * smallest gap left between the blobs placed before it whose ranges meet its own, or after
 * the last of them. *total gets the arena's size in floats. -1 when out of memory. Quadratic
 * in the blobs at worst: a net of 10^4 blobs plans in well under a second. */
static int place(placement *p, int n, size_t *total) {
  const placement **meet = malloc(((size_t)n + 1) * sizeof *meet);
  if (!meet) return -1;
  *total = 0;
  for (int i = 0; i < n; i++) {
    int k = 0;
    for (int j = 0; j < i; j++)
      if (p[j].lo <= p[i].hi && p[j].hi >= p[i].lo) meet[k++] = &p[j];
    qsort(meet, (size_t)k, sizeof *meet, by_offset);
    size_t end = 0, best = SIZE_MAX, best_gap = SIZE_MAX;
    for (int j = 0; j < k; j++) {
      if (meet[j]->offset >= end + p[i].count && meet[j]->offset - end < best_gap) {
        best_gap = meet[j]->offset - end;
        best = end;
      }
      if (meet[j]->offset + meet[j]->count > end) end = meet[j]->offset + meet[j]->count;
    }
    p[i].offset = best != SIZE_MAX ? best : end;
    if (p[i].offset + p[i].count > *total) *total = p[i].offset + p[i].count;
  }
  free(meet);
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

/* Moves the net's diff arena to a buffer of `count` floats: the blobs that borrow slices of
 * it keep their offsets. Only before the arena is lent to another net. */
static int grow_diff_arena(crema_net *net, size_t count, crema_error *err) {
  net_arena *a = &net->diffs;
  float *buf = crema_blob_buffer_alloc(count, err);
  if (!buf) return -1;
  int rc = 0;
  for (int b = 0; b < net->n_blobs && !rc; b++) {
    crema_blob *x = net->blobs[b];
    if (x->diff_borrowed && x->diff >= a->buf && x->diff < a->buf + a->count)
      rc = crema_blob_borrow_diff(x, buf + (x->diff - a->buf), x->diff_capacity, err);
  }
  crema_blob_buffer_free(a->buf, a->count);
  a->buf = buf;
  a->count = count;
  return rc;
}

/* Places the blobs with chosen[b] set, each needed while the layers lo[b]..hi[b] run, in one
 * arena and lends the blobs their slices (for their data, or their diffs). With a lender,
 * the arena is the lender's activation-gradient arena, grown to fit unless another net
 * borrows it already (a net it does not fit then gets an arena of its own). */
static int share(crema_net *net, const bool *chosen, const int *lo, const int *hi, bool data,
                 net_arena *arena, crema_net *lender, crema_error *err) {
  placement *p = malloc(((size_t)net->n_blobs + 1) * sizeof *p);
  if (!p) return crema_fail(err, "out of memory");
  int n = 0;
  for (int b = 0; b < net->n_blobs; b++)
    if (chosen[b] && net->blobs[b]->count)
      p[n++] = (placement){b, lo[b], hi[b], (net->blobs[b]->count + LINE - 1) / LINE * LINE, 0};
  qsort(p, (size_t)n, sizeof *p, by_size);
  size_t total = 0;
  if (place(p, n, &total)) {
    free(p);
    return crema_fail(err, "out of memory");
  }
  int rc = 0;
  net_arena *from = lender ? &lender->diffs : NULL;
  if (from && from->count < total && from->n_borrowers == 0) rc = grow_diff_arena(lender, total, err);
  if (!rc && from && from->count >= total) {
    *arena = (net_arena){from->buf, from->count, true, 0};
    from->n_borrowers++;
  } else if (!rc && (arena->buf = crema_blob_buffer_alloc(total, err))) {
    arena->count = total;
  } else {
    rc = -1;
  }
  /* Every blob fits its slice by construction: this cannot fail. */
  for (int i = 0; i < n && !rc; i++) {
    crema_blob *b = net->blobs[p[i].blob];
    float *slice = arena->buf + p[i].offset;
    rc = data ? crema_blob_borrow_data(b, slice, p[i].count, err)
              : crema_blob_borrow_diff(b, slice, p[i].count, err);
  }
  free(p);
  return rc;
}

int crema_net_share_diffs(crema_net *net, crema_error *err) {
  if (net->diffs.buf) return 0; /* planned already */
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
    /* a layer whose backward runs inside an earlier one's (a Split summed by the Eltwise
     * before it) reads its tops' diffs at that layer's turn */
    for (int li = 0; li < net->n_layers; li++) {
      const int h = crema_net_backward_fused_into(net, li);
      for (int j = 0; h >= 0 && j < net->layers[li].n_top; j++)
        if (h < lo[net->layers[li].top_ids[j]]) lo[net->layers[li].top_ids[j]] = h;
    }
    for (int b = 0; b < net->n_blobs; b++)
      ok[b] = first[b] == WRITTEN_FIRST && net->blob_loss_weight[b] == 0.0f && !net->blobs[b]->diff_borrowed;
    rc = share(net, ok, lo, hi, false, &net->diffs, NULL, err);
  }
  free(first);
  free(ok);
  free(lo);
  free(hi);
  return rc ? crema_error_prefix(err, "sharing the diffs of net %s", crema_net_name(net)) : 0;
}

int crema_net_share_activations(crema_net *net, crema_net *lender, crema_error *err) {
  /* the caller promises forward only: the layers may skip their backward-only state */
  for (int i = 0; i < net->n_layers; i++) net->layers[i].layer->forward_only = true;
  if (net->activations.buf) return 0; /* planned already */
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
      kept[b] = kept[b] || net->blob_loss_weight[b] != 0.0f || lo[b] < 0 || !refilled(&net->layers[lo[b]], b);
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
    rc = share(net, ok, lo, hi, true, &net->activations, lender, err);
  }
  /* The Split tops follow their bottoms into the arena now, not at the next forward. */
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

size_t crema_net_diff_bytes(const crema_net *net) {
  size_t bytes = net->diffs.count * sizeof(float);
  for (int b = 0; b < net->n_blobs; b++)
    if (!net->blobs[b]->diff_borrowed) bytes += net->blobs[b]->capacity * sizeof(float);
  return bytes;
}

size_t crema_net_data_bytes(const crema_net *net) {
  size_t bytes = net->activations.lent ? 0 : net->activations.count * sizeof(float);
  for (int b = 0; b < net->n_blobs; b++)
    if (!net->blobs[b]->data_borrowed && !net->blobs[b]->data_of)
      bytes += net->blobs[b]->capacity * sizeof(float);
  return bytes;
}

void crema_net_free_arena(net_arena *arena) {
  if (!arena->lent) crema_blob_buffer_free(arena->buf, arena->count);
  *arena = (net_arena){0};
}
