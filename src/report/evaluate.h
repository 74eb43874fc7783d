/* evaluate.h -- a classifier scored on its validation data for the report: confusion
 * matrix, per-class accuracy, and the examples it gets most confidently wrong (with their
 * images when the data set is an LMDB of Datum records).
 *
 * Builds the TEST phase of a train_val net, copies the weights, runs `iterations` batches
 * (0 = one pass over the TEST Data layer's LMDB, at most 100 batches) and reads the two
 * bottoms of the first Accuracy layer: class scores (N, K) and labels (N). Scores are turned
 * into probabilities with a softmax unless they already sum to 1. Records are matched to
 * batch rows in reading order (the TEST Data layer reads its LMDB sequentially from the
 * start, as in Caffe). The result owns everything; free with crema_evaluation_free. */
#ifndef CREMA_REPORT_EVALUATE_H
#define CREMA_REPORT_EVALUATE_H

#include <stdbool.h>
#include <stdint.h>

#include "base/error.h"
#include "data/image.h"
#include "proto/crema.pb-c.h"

#define CREMA_EVAL_MAX_WRONG 12

typedef struct crema_wrong_example {
  uint64_t record; /* index in the LMDB, in key order */
  int label, predicted;
  float confidence;  /* probability of the predicted class */
  crema_image image; /* the record's pixels (width 0 when unavailable) */
} crema_wrong_example;

typedef struct crema_evaluation {
  int classes;
  int64_t *confusion; /* classes x classes: [true][predicted] */
  int64_t samples, correct;
  int n_wrong; /* most confident first */
  crema_wrong_example wrong[CREMA_EVAL_MAX_WRONG];
} crema_evaluation;

/* `base_dir` (may be NULL): a relative data source that does not exist from the current
 * folder is looked up there too (a run folder moved elsewhere). */
int crema_evaluate(const Crema__NetParameter *train_val, const char *caffemodel, int iterations,
                   const char *base_dir, crema_evaluation *out, crema_error *err);
void crema_evaluation_free(crema_evaluation *e);

#endif
