/* test_layers_ssd.c -- SSD's inference layers (weiliu89/caffe): Permute and Normalize
 * (values and gradient checks), PriorBox (boxes and variances worked out by hand), and
 * DetectionOutput on hand-made boxes (decoding, thresholds, NMS, keep_top_k, the empty
 * result). The whole chain is compared with OpenCV's dnn in test_oracle.c. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support/run.h"
#include "layers/layer.h"
#include "support/gradcheck.h"
#include "support/layer_run.h"
#include "support/textproto.h"

START_TEST(permute_values_and_gradient) {
  crema_blob *b[] = {blob_of(4, (int[]){2, 3, 4, 5})};
  gradcheck_fill_gaussian(b[0], 1.0f, 1);
  run r;
  run_setup(&r, "name: 'p' type: 'Permute' permute_param { order: 0 order: 2 order: 3 order: 1 }", 1, b, 1);
  run_forward(&r);
  ck_assert_int_eq(r.top[0]->shape[1], 4);
  ck_assert_int_eq(r.top[0]->shape[3], 3);
  for (int n = 0; n < 2; n++)
    for (int c = 0; c < 3; c++)
      for (int h = 0; h < 4; h++)
        for (int w = 0; w < 5; w++)
          ck_assert_float_eq(r.top[0]->data[((n * 4 + h) * 5 + w) * 3 + c],
                             b[0]->data[((n * 3 + c) * 4 + h) * 5 + w]);
  run_free(&r);
  Crema__LayerParameter *p =
      test_layer_param("name: 'p' type: 'Permute' permute_param { order: 0 order: 2 order: 3 order: 1 }");
  gradcheck_layer(p, 1, b, 1, NULL, NULL);
  crema_message_free(p);
  p = test_layer_param("name: 'p' type: 'Permute' permute_param { order: 3 order: 1 }"); /* then 0, 2 */
  gradcheck_layer(p, 1, b, 1, NULL, NULL);
  crema_message_free(p);
  crema_error err;
  ck_assert_int_eq(
      run_try(&r, "name: 'p' type: 'Permute' permute_param { order: 1 order: 1 }", 1, b, 1, &err), -1);
  ck_assert_msg(strstr(err.msg, "twice"), "%s", err.msg);
  run_free(&r);
  free_blobs(1, b);
}
END_TEST

START_TEST(normalize_values_and_gradient) {
  crema_blob *b[] = {blob_of(4, (int[]){2, 3, 2, 2})};
  gradcheck_fill_gaussian(b[0], 1.0f, 2);
  for (int across = 0; across < 2; across++)
    for (int shared = 0; shared < 2; shared++) {
      char text[256];
      snprintf(text, sizeof text,
               "name: 'n' type: 'Normalize' norm_param { across_spatial: %s channel_shared: %s "
               "scale_filler { type: 'uniform' min: 1 max: 3 } }",
               across ? "true" : "false", shared ? "true" : "false");
      run r;
      run_setup(&r, text, 1, b, 1);
      ck_assert_uint_eq(r.l->blobs[0]->count, shared ? 1 : 3);
      run_forward(&r);
      for (int n = 0; n < 2; n++)
        for (int c = 0; c < 3; c++)
          for (int p = 0; p < 4; p++) {
            double sq = 1e-10;
            for (int c2 = 0; c2 < 3; c2++)
              for (int p2 = 0; p2 < 4; p2++)
                if (across || p2 == p) sq += pow(b[0]->data[(n * 3 + c2) * 4 + p2], 2);
            const double want =
                b[0]->data[(n * 3 + c) * 4 + p] / sqrt(sq) * r.l->blobs[0]->data[shared ? 0 : c];
            ck_assert_double_eq_tol(r.top[0]->data[(n * 3 + c) * 4 + p], want, 1e-5);
          }
      run_free(&r);
      Crema__LayerParameter *p = test_layer_param(text);
      gradcheck_layer(p, 1, b, 1, NULL, NULL);
      crema_message_free(p);
    }
  /* Default scale: 1 (plain L2 normalisation). */
  run r;
  run_setup(&r, "name: 'n' type: 'Normalize'", 1, b, 1);
  ck_assert_float_eq(r.l->blobs[0]->data[0], 1.0f);
  run_free(&r);
  free_blobs(1, b);
}
END_TEST

START_TEST(prior_box_values) {
  crema_blob *b[] = {blob_of(4, (int[]){1, 4, 2, 3}), blob_of(4, (int[]){1, 3, 20, 30})};
  run r;
  run_setup(
      &r,
      "name: 'pb' type: 'PriorBox' prior_box_param { min_size: 4 max_size: 9 aspect_ratio: 2 flip: true "
      "variance: 0.1 variance: 0.1 variance: 0.2 variance: 0.2 }",
      2, b, 1);
  run_forward(&r);
  /* 2 x 3 positions, priors: 1 (min) + 1 (max) + 2 (ratios 2, 1/2) = 4. */
  ck_assert_int_eq(r.top[0]->shape[2], 2 * 3 * 4 * 4);
  /* Position (h 1, w 2): step 10 = 20 / 2 = 30 / 3, center (25, 15). */
  const float *box = r.top[0]->data + ((1 * 3 + 2) * 4) * 4;
  const float want[4][4] = {
      {23.0f / 30, 13.0f / 20, 27.0f / 30, 17.0f / 20},
      {(25 - 3.0f) / 30, (15 - 3.0f) / 20, (25 + 3.0f) / 30, (15 + 3.0f) / 20},
      {(25 - 2 * sqrtf(2)) / 30, (15 - sqrtf(2)) / 20, (25 + 2 * sqrtf(2)) / 30, (15 + sqrtf(2)) / 20},
      {(25 - sqrtf(2)) / 30, (15 - 2 * sqrtf(2)) / 20, (25 + sqrtf(2)) / 30, (15 + 2 * sqrtf(2)) / 20}};
  for (int k = 0; k < 4; k++)
    for (int j = 0; j < 4; j++) ck_assert_float_eq_tol(box[k * 4 + j], want[k][j], 1e-6f);
  const float *var = r.top[0]->data + 2 * 3 * 4 * 4;
  ck_assert_float_eq(var[0], 0.1f);
  ck_assert_float_eq(var[3], 0.2f);
  ck_assert_float_eq(var[7], 0.2f);
  run_free(&r);
  /* clip, explicit step and image size */
  run_setup(&r,
            "name: 'pb' type: 'PriorBox' prior_box_param { min_size: 30 clip: true step: 8 img_size: 16 }", 2,
            b, 1);
  run_forward(&r);
  for (size_t i = 0; i < r.top[0]->count / 2; i++)
    ck_assert(r.top[0]->data[i] >= 0.0f && r.top[0]->data[i] <= 1.0f);
  ck_assert_float_eq(r.top[0]->data[0], 0.0f);
  ck_assert_float_eq(r.top[0]->data[2], 1.0f); /* (4 + 15) / 16, clipped */
  run_free(&r);
  free_blobs(2, b);
}
END_TEST

/* Three priors, two classes + background; CORNER code with zero offsets leaves the boxes. */
START_TEST(detection_output_nms) {
  const float priors[] = {0.1f, 0.1f, 0.5f, 0.5f, 0.12f, 0.1f, 0.52f, 0.5f, 0.6f, 0.6f, 0.9f, 0.9f,
                          0.1f, 0.1f, 0.2f, 0.2f, 0.1f,  0.1f, 0.2f,  0.2f, 0.1f, 0.1f, 0.2f, 0.2f};
  /* conf (1, 3 priors x 3 classes): prior 0 and 1 overlap (IoU 0.9); class 1 likes both. */
  const float conf[] = {0.1f, 0.8f, 0.1f, 0.2f, 0.7f, 0.1f, 0.3f, 0.1f, 0.6f};
  crema_blob *b[] = {blob_of(2, (int[]){1, 12}), blob_vals(2, (int[]){1, 9}, conf),
                     blob_vals(3, (int[]){1, 2, 12}, priors)};
  run r;
  run_setup(&r,
            "name: 'd' type: 'DetectionOutput' detection_output_param { num_classes: 3 code_type: CORNER "
            "nms_param { nms_threshold: 0.5 } confidence_threshold: 0.3 }",
            3, b, 1);
  run_forward(&r);
  /* class 1: prior 0 (0.8) kept, prior 1 (0.7) suppressed; class 2: prior 2 (0.6). */
  ck_assert_int_eq(r.top[0]->shape[2], 2);
  const float want[2][7] = {{0, 1, 0.8f, 0.1f, 0.1f, 0.5f, 0.5f}, {0, 2, 0.6f, 0.6f, 0.6f, 0.9f, 0.9f}};
  for (int i = 0; i < 2; i++)
    for (int k = 0; k < 7; k++) ck_assert_float_eq_tol(r.top[0]->data[i * 7 + k], want[i][k], 1e-6f);
  run_free(&r);
  /* A lax NMS keeps both; keep_top_k 2 then drops the weakest of the three (0.6). */
  run_setup(&r,
            "name: 'd' type: 'DetectionOutput' detection_output_param { num_classes: 3 code_type: CORNER "
            "nms_param { nms_threshold: 0.95 } keep_top_k: 2 }",
            3, b, 1);
  run_forward(&r);
  ck_assert_int_eq(r.top[0]->shape[2], 2);
  ck_assert_float_eq(r.top[0]->data[2], 0.8f);
  ck_assert_float_eq(r.top[0]->data[9], 0.7f);
  run_free(&r);
  /* CENTER_SIZE with variance: loc (0.5, 0, 0, 0) moves prior 2 right by 0.1 * 0.5 * width. */
  b[0]->data[8] = 0.5f;
  run_setup(
      &r,
      "name: 'd' type: 'DetectionOutput' detection_output_param { num_classes: 3 code_type: CENTER_SIZE "
      "confidence_threshold: 0.5 }",
      3, b, 1);
  run_forward(&r);
  ck_assert_int_eq(r.top[0]->shape[2], 2); /* the default NMS threshold 0.3 drops prior 1 */
  ck_assert_float_eq_tol(r.top[0]->data[1 * 7 + 3], 0.6f + 0.1f * 0.5f * 0.3f, 1e-6f);
  run_free(&r);
  /* Nothing above the threshold: one row of -1 per image. */
  run_setup(&r,
            "name: 'd' type: 'DetectionOutput' detection_output_param { num_classes: 3 confidence_threshold: "
            "0.99 }",
            3, b, 1);
  run_forward(&r);
  ck_assert_int_eq(r.top[0]->shape[2], 1);
  ck_assert_float_eq(r.top[0]->data[0], 0.0f);
  ck_assert_float_eq(r.top[0]->data[1], -1.0f);
  run_free(&r);
  crema_error err;
  ck_assert_int_eq(run_try(&r, "name: 'd' type: 'DetectionOutput' detection_output_param { num_classes: 4 }",
                           3, b, 1, &err),
                   -1);
  ck_assert_msg(strstr(err.msg, "4 classes"), "%s", err.msg);
  run_free(&r);
  free_blobs(3, b);
}
END_TEST

int main(void) {
  Suite *s = suite_create("layers_ssd");
  TCase *tc = tcase_create("core");
  tcase_add_test(tc, permute_values_and_gradient);
  tcase_add_test(tc, normalize_values_and_gradient);
  tcase_add_test(tc, prior_box_values);
  tcase_add_test(tc, detection_output_nms);
  suite_add_tcase(s, tc);
  return test_run_suite(s);
}
