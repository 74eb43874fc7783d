/* net_memory.c -- activation gradients that share storage (crema_net_share_diffs).
 *
 * In a training step an activation blob's diff is written by the backward of the layer that
 * consumes it (after split insertion a blob has one consumer; in-place layers after it read
 * and rewrite it) and read for the last time by the backward of the layer that produced it.
 * Until the next step's backward writes it again nothing in a solver's run reads it. So with
 * the layers numbered in net order, blob b's diff is needed only while backward runs the
 * layers lo(b)..hi(b) that list b as a bottom or a top, and blobs whose ranges do not meet
 * can keep their diffs in one buffer. GoogLeNet at batch 32 holds 1.3 GB of activation diffs
 * of which about 150 MB are live at any one time.
 *
 * A blob shares only when every backward pass writes its whole diff before anything reads
 * it. These keep a diff of their own:
 *  - a blob whose diff some layer reads before any layer wrote it in that pass: the top of a
 *    layer whose consumers take no gradient, or an output nobody consumes, reads as zero
 *    (calloc'd, never written), as in Caffe, and must stay zero;
 *  - loss tops, whose diffs crema_net_seed_loss_diffs sets before backward starts;
 *  - blobs no backward touches (data, labels, a frozen head's input): calloc'd and never
 *    written, they take no memory anyway.
 * A layer counts as writing bottom j when it needs backward, propagates to j and computes
 * that gradient at all (never_written below lists the inputs crema's layers skip).
 *
 * Buffers are assigned greedily by size: blobs in decreasing size each go to the smallest
 * buffer none of whose blobs' ranges meet theirs, else to a new buffer of their size. Every
 * buffer starts 64-byte aligned like a blob's own diff, so vectorised loops split the same way
 * and results are the same bits as without sharing. */
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

typedef struct diff_range {
  int blob, lo, hi; /* the layers lo..hi list the blob */
  size_t count;
} diff_range;

/* Larger first; equal sizes in net order, so a buffer's ranges mostly arrive in order. */
static int by_size(const void *a, const void *b) {
  const diff_range *x = a, *y = b;
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
static int assign(const diff_range *ranges, int n, plan_buffer **out, int *n_out, int *buffer_of) {
  plan_buffer *plan = calloc((size_t)n + 1, sizeof *plan);
  if (!plan) return -1;
  int n_plan = 0;
  for (int i = 0; i < n; i++) {
    const diff_range *r = &ranges[i];
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

/* The blobs that may share, with their ranges; *n_out of them, sorted by_size. */
static diff_range *shareable(const crema_net *net, int *n_out) {
  unsigned char *first = malloc((size_t)net->n_blobs + 1);
  diff_range *r = malloc(((size_t)net->n_blobs + 1) * sizeof *r);
  int *lo = malloc(((size_t)net->n_blobs + 1) * sizeof *lo),
      *hi = malloc(((size_t)net->n_blobs + 1) * sizeof *hi);
  if (!first || !r || !lo || !hi) {
    free(first);
    free(r);
    free(lo);
    free(hi);
    return NULL;
  }
  first_access(net, first);
  for (int b = 0; b < net->n_blobs; b++) lo[b] = hi[b] = -1;
  for (int li = 0; li < net->n_layers; li++) {
    const net_layer *L = &net->layers[li];
    for (int k = 0; k < L->n_bottom + L->n_top; k++) {
      const int b = k < L->n_bottom ? L->bottom_ids[k] : L->top_ids[k - L->n_bottom];
      if (lo[b] < 0) lo[b] = li;
      hi[b] = li;
    }
  }
  int n = 0;
  for (int b = 0; b < net->n_blobs; b++) {
    const crema_blob *blob = net->blobs[b];
    if (first[b] != WRITTEN_FIRST || net->blob_loss_weight[b] != 0.0f || blob->count == 0 ||
        blob->diff_borrowed)
      continue;
    r[n++] = (diff_range){b, lo[b], hi[b], blob->count};
  }
  free(first);
  free(lo);
  free(hi);
  qsort(r, (size_t)n, sizeof *r, by_size);
  *n_out = n;
  return r;
}

int crema_net_share_diffs(crema_net *net, crema_error *err) {
  if (net->diffs_shared) return 0;
  int n = 0, n_plan = 0;
  diff_range *ranges = shareable(net, &n);
  int *buffer_of = ranges ? malloc(((size_t)n + 1) * sizeof *buffer_of) : NULL;
  plan_buffer *plan = NULL;
  if (!ranges || !buffer_of || assign(ranges, n, &plan, &n_plan, buffer_of)) {
    free(ranges);
    free(buffer_of);
    return crema_fail(err, "out of memory planning the diffs of net %s", crema_net_name(net));
  }
  int rc = 0;
  net->diff_buffers = calloc((size_t)n_plan + 1, sizeof *net->diff_buffers);
  net->diff_buffer_count = calloc((size_t)n_plan + 1, sizeof *net->diff_buffer_count);
  if (!net->diff_buffers || !net->diff_buffer_count)
    rc = crema_fail(err, "out of memory planning the diffs of net %s", crema_net_name(net));
  for (int k = 0; k < n_plan && !rc; k++) {
    net->diff_buffer_count[k] = plan[k].count;
    net->n_diff_buffers = k + 1;
    if (!(net->diff_buffers[k] = crema_blob_buffer_alloc(plan[k].count, err))) rc = -1;
  }
  if (rc) {
    crema_net_free_diff_buffers(net); /* no blob borrowed one yet */
  } else {
    /* Every blob fits its buffer by construction: this cannot fail. */
    for (int i = 0; i < n && !rc; i++)
      rc = crema_blob_borrow_diff(net->blobs[ranges[i].blob], net->diff_buffers[buffer_of[i]],
                                  net->diff_buffer_count[buffer_of[i]], err);
    net->diffs_shared = true;
  }
  for (int k = 0; k < n_plan; k++) free(plan[k].range);
  free(plan);
  free(ranges);
  free(buffer_of);
  return rc ? crema_error_prefix(err, "sharing the diffs of net %s", crema_net_name(net)) : 0;
}

size_t crema_net_diff_bytes(const crema_net *net) {
  size_t bytes = 0;
  for (int b = 0; b < net->n_blobs; b++)
    if (!net->blobs[b]->diff_borrowed) bytes += net->blobs[b]->capacity * sizeof(float);
  for (int k = 0; k < net->n_diff_buffers; k++) bytes += net->diff_buffer_count[k] * sizeof(float);
  return bytes;
}

void crema_net_free_diff_buffers(crema_net *net) {
  for (int k = 0; k < net->n_diff_buffers; k++)
    crema_blob_buffer_free(net->diff_buffers[k], net->diff_buffer_count[k]);
  free(net->diff_buffers);
  free(net->diff_buffer_count);
  net->diff_buffers = NULL;
  net->diff_buffer_count = NULL;
  net->n_diff_buffers = 0;
}
