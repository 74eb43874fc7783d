/* detection_output.c -- SSD's "DetectionOutput" (weiliu89/caffe): boxes from SSD's heads.
 *   bottoms: loc (N, P * L * 4) box offsets (L = 1 with share_location, else num_classes),
 *            conf (N, P * num_classes) class scores (after softmax), prior (1, 2, P * 4)
 *   top (1, 1, D, 7): one row per detection [image, label, score, xmin, ymin, xmax, ymax]
 * Each prior box is decoded with its variance (code_type CORNER, CENTER_SIZE or CORNER_SIZE;
 * variance_encoded_in_target skips the variance). For every image and class other than
 * background_label_id: the boxes scoring above confidence_threshold, best first (stable order),
 * at most nms_param.top_k of them, go through greedy non-maximum suppression (a box is kept
 * when its Jaccard overlap with every kept box is <= nms_threshold; with eta < 1 the threshold
 * shrinks by eta after each kept box while above 0.5). With keep_top_k, only the best
 * keep_top_k detections of an image survive. Rows are written image by image, label by label
 * (ascending), each label's boxes in order. No detection at all gives one row per image
 * [image, -1, -1, -1, -1, -1, -1], as in SSD's code. Inference only: no backward. */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "layers/layer.h"

typedef struct det_pair {
  float score;
  int idx;   /* prior */
  int label; /* for keep_top_k */
} det_pair;

typedef struct det_state {
  int num_classes, background, keep_top_k, top_k;
  bool share;
  Crema__PriorBoxParameter__CodeType code;
  bool var_in_target;
  float conf_thresh, nms_thresh, eta;
  int n, priors, loc_classes;
  float *boxes;   /* decoded (N, L, P, 4) */
  det_pair *cand; /* per class candidates (P), then all kept of an image (P * classes) */
  int *kept;      /* (classes, P) kept prior indices of the current image */
  int *n_kept;    /* per class */
  det_pair *tmp;  /* scratch of the merge sort (P * classes) */
  size_t boxes_cap, cand_cap, kept_cap, tmp_cap;
} det_state;

static int grow(void **p, size_t *cap, size_t n, size_t elem, crema_error *err) {
  if (n <= *cap) return 0;
  void *q = realloc(*p, n * elem);
  if (!q) return crema_fail(err, "out of memory");
  *p = q;
  *cap = n;
  return 0;
}

static int det_setup(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top, crema_error *err) {
  (void)bottom;
  (void)top;
  const Crema__DetectionOutputParameter *p = l->param->detection_output_param;
  if (!p || !p->has_num_classes || !p->num_classes)
    return crema_fail(err, "detection_output_param { num_classes: N } is required");
  det_state *s = calloc(1, sizeof *s);
  if (!s) return crema_fail(err, "out of memory");
  l->state = s;
  s->num_classes = (int)p->num_classes;
  s->share = p->share_location;
  s->background = p->background_label_id;
  s->code = p->code_type;
  s->var_in_target = p->variance_encoded_in_target;
  s->keep_top_k = p->keep_top_k;
  s->conf_thresh = p->has_confidence_threshold ? p->confidence_threshold : -FLT_MAX;
  s->nms_thresh = p->nms_param ? p->nms_param->nms_threshold : 0.3f;
  s->top_k = p->nms_param && p->nms_param->has_top_k ? p->nms_param->top_k : -1;
  s->eta = p->nms_param ? p->nms_param->eta : 1.0f;
  if (!(s->nms_thresh >= 0.0f)) return crema_fail(err, "nms_param nms_threshold must be >= 0");
  if (!(s->eta > 0.0f && s->eta <= 1.0f)) return crema_fail(err, "nms_param eta must be in (0, 1]");
  s->loc_classes = s->share ? 1 : s->num_classes;
  return 0;
}

static int det_reshape(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top, crema_error *err) {
  det_state *s = l->state;
  char a[256], b[256];
  if (bottom[2]->num_axes != 3 || bottom[2]->shape[1] != 2 || bottom[2]->shape[2] % 4)
    return crema_fail(err, "the priors must be (1, 2, P * 4), got %s",
                      crema_blob_shape_string(bottom[2], a, sizeof a));
  s->priors = bottom[2]->shape[2] / 4;
  s->n = crema_blob_legacy_dim(bottom[0], 0);
  if (bottom[0]->count != (size_t)s->n * s->priors * s->loc_classes * 4)
    return crema_fail(err, "loc %s does not hold %d priors x %d x 4 values per image",
                      crema_blob_shape_string(bottom[0], a, sizeof a), s->priors, s->loc_classes);
  if (bottom[1]->count != (size_t)s->n * s->priors * s->num_classes)
    return crema_fail(err, "conf %s does not hold %d priors x %d classes per image (loc is %s)",
                      crema_blob_shape_string(bottom[1], a, sizeof a), s->priors, s->num_classes,
                      crema_blob_shape_string(bottom[0], b, sizeof b));
  const size_t per_image = (size_t)s->priors * s->num_classes;
  if (grow((void **)&s->boxes, &s->boxes_cap, (size_t)s->n * s->loc_classes * s->priors * 4 + 1,
           sizeof(float), err) ||
      grow((void **)&s->cand, &s->cand_cap, per_image + 1, sizeof(det_pair), err) ||
      grow((void **)&s->kept, &s->kept_cap, per_image + 1, sizeof(int), err) ||
      grow((void **)&s->tmp, &s->tmp_cap, per_image + 1, sizeof(det_pair), err))
    return -1;
  free(s->n_kept);
  if (!(s->n_kept = calloc((size_t)s->num_classes, sizeof(int)))) return crema_fail(err, "out of memory");
  /* The most rows forward can write, so that its reshapes never allocate. */
  const size_t max_rows = (size_t)s->n * (per_image > 1 ? per_image : 1);
  if (max_rows > 0x7fffffff) return crema_fail(err, "too many possible detections");
  if (crema_blob_reshape(top[0], 4, (int[]){1, 1, (int)max_rows, 7}, err)) return -1;
  return crema_blob_reshape(top[0], 4, (int[]){1, 1, 1, 7}, err);
}

static void decode(const det_state *s, const float *prior, const float *var, const float *loc, float *out) {
  const float pw = prior[2] - prior[0], ph = prior[3] - prior[1];
  const float v0 = s->var_in_target ? 1.0f : var[0], v1 = s->var_in_target ? 1.0f : var[1],
              v2 = s->var_in_target ? 1.0f : var[2], v3 = s->var_in_target ? 1.0f : var[3];
  if (s->code == CREMA__PRIOR_BOX_PARAMETER__CODE_TYPE__CENTER_SIZE) {
    const float pcx = (prior[0] + prior[2]) / 2.0f, pcy = (prior[1] + prior[3]) / 2.0f;
    const float cx = v0 * loc[0] * pw + pcx, cy = v1 * loc[1] * ph + pcy;
    const float w = expf(v2 * loc[2]) * pw, h = expf(v3 * loc[3]) * ph;
    out[0] = cx - w / 2.0f;
    out[1] = cy - h / 2.0f;
    out[2] = cx + w / 2.0f;
    out[3] = cy + h / 2.0f;
  } else if (s->code == CREMA__PRIOR_BOX_PARAMETER__CODE_TYPE__CORNER_SIZE) {
    out[0] = prior[0] + v0 * loc[0] * pw;
    out[1] = prior[1] + v1 * loc[1] * ph;
    out[2] = prior[2] + v2 * loc[2] * pw;
    out[3] = prior[3] + v3 * loc[3] * ph;
  } else { /* CORNER */
    out[0] = prior[0] + v0 * loc[0];
    out[1] = prior[1] + v1 * loc[1];
    out[2] = prior[2] + v2 * loc[2];
    out[3] = prior[3] + v3 * loc[3];
  }
}

static float box_size(const float *b) {
  return b[2] < b[0] || b[3] < b[1] ? 0.0f : (b[2] - b[0]) * (b[3] - b[1]);
}

static float jaccard(const float *a, const float *b) {
  if (b[0] > a[2] || b[2] < a[0] || b[1] > a[3] || b[3] < a[1]) return 0.0f;
  const float ib[4] = {fmaxf(a[0], b[0]), fmaxf(a[1], b[1]), fminf(a[2], b[2]), fminf(a[3], b[3])};
  const float inter = box_size(ib);
  return inter / (box_size(a) + box_size(b) - inter);
}

/* Descending by score; equal scores keep their order (merge sort, stable). */
static void sort_desc(det_pair *v, det_pair *tmp, size_t n) {
  if (n < 2) return;
  const size_t h = n / 2;
  sort_desc(v, tmp, h);
  sort_desc(v + h, tmp, n - h);
  size_t i = 0, j = h, k = 0;
  while (i < h && j < n) tmp[k++] = v[j].score > v[i].score ? v[j++] : v[i++];
  while (i < h) tmp[k++] = v[i++];
  while (j < n) tmp[k++] = v[j++];
  memcpy(v, tmp, n * sizeof *v);
}

static int det_forward(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top, crema_error *err) {
  det_state *s = l->state;
  const int P = s->priors, C = s->num_classes, L = s->loc_classes;
  const float *prior = bottom[2]->data, *var = bottom[2]->data + (size_t)P * 4;
  for (int i = 0; i < s->n; i++)
    for (int p = 0; p < P; p++)
      for (int c = 0; c < L; c++)
        decode(s, prior + (size_t)p * 4, var + (size_t)p * 4,
               bottom[0]->data + (((size_t)i * P + p) * L + c) * 4,
               s->boxes + (((size_t)i * L + c) * P + p) * 4);
  det_pair *tmp = s->tmp;
  size_t n_rows = 0;
  for (int i = 0; i < s->n; i++) {
    int total = 0;
    for (int c = 0; c < C; c++) {
      s->n_kept[c] = 0;
      if (c == s->background) continue;
      const float *conf = bottom[1]->data + (size_t)i * P * C;
      const float *bx = s->boxes + ((size_t)i * L + (s->share ? 0 : c)) * P * 4;
      size_t nc = 0;
      for (int p = 0; p < P; p++)
        if (conf[(size_t)p * C + c] > s->conf_thresh)
          s->cand[nc++] = (det_pair){conf[(size_t)p * C + c], p, c};
      sort_desc(s->cand, tmp, nc);
      if (s->top_k > -1 && nc > (size_t)s->top_k) nc = (size_t)s->top_k;
      int *kept = s->kept + (size_t)c * P;
      float thr = s->nms_thresh;
      for (size_t k = 0; k < nc; k++) {
        const int idx = s->cand[k].idx;
        bool keep = true;
        for (int j = 0; j < s->n_kept[c] && keep; j++)
          keep = jaccard(bx + (size_t)idx * 4, bx + (size_t)kept[j] * 4) <= thr;
        if (!keep) continue;
        kept[s->n_kept[c]++] = idx;
        if (s->eta < 1.0f && thr > 0.5f) thr *= s->eta;
      }
      total += s->n_kept[c];
    }
    if (s->keep_top_k > -1 && total > s->keep_top_k) {
      /* Best keep_top_k of the image, then per label in score order. */
      const float *conf = bottom[1]->data + (size_t)i * P * C;
      size_t m = 0;
      for (int c = 0; c < C; c++)
        for (int j = 0; j < s->n_kept[c]; j++) {
          const int idx = s->kept[(size_t)c * P + j];
          s->cand[m++] = (det_pair){conf[(size_t)idx * C + c], idx, c};
        }
      sort_desc(s->cand, tmp, m);
      for (int c = 0; c < C; c++) s->n_kept[c] = 0;
      for (int k = 0; k < s->keep_top_k; k++) {
        const int c = s->cand[k].label;
        s->kept[(size_t)c * P + s->n_kept[c]++] = s->cand[k].idx;
      }
    }
    /* Rows of this image go to the top directly (reshaped at the end; the capacity holds the
     * most rows possible). */
    for (int c = 0; c < C; c++)
      for (int j = 0; j < s->n_kept[c]; j++) {
        const int idx = s->kept[(size_t)c * P + j];
        const float *b = s->boxes + (((size_t)i * L + (s->share ? 0 : c)) * P + idx) * 4;
        float *r = top[0]->data + n_rows * 7;
        r[0] = (float)i;
        r[1] = (float)c;
        r[2] = bottom[1]->data[((size_t)i * P + idx) * C + c];
        r[3] = b[0];
        r[4] = b[1];
        r[5] = b[2];
        r[6] = b[3];
        n_rows++;
      }
  }
  if (n_rows == 0) {
    for (int i = 0; i < s->n; i++) {
      float *r = top[0]->data + (size_t)i * 7;
      for (int k = 0; k < 7; k++) r[k] = -1.0f;
      r[0] = (float)i;
    }
    n_rows = (size_t)s->n;
  }
  return crema_blob_reshape(top[0], 4, (int[]){1, 1, (int)n_rows, 7}, err);
}

static void det_free(crema_layer *l) {
  det_state *s = l->state;
  if (!s) return;
  free(s->boxes);
  free(s->cand);
  free(s->kept);
  free(s->n_kept);
  free(s->tmp);
  free(s);
}

const crema_layer_ops crema_detection_output_ops = {
    .type = "DetectionOutput",
    .min_bottoms = 3,
    .max_bottoms = 3,
    .min_tops = 1,
    .max_tops = 1,
    .setup = det_setup,
    .reshape = det_reshape,
    .forward = det_forward,
    .free_state = det_free,
};
