/* Data and ImageData layers end to end: images generated here, converted by crema, read
 * back through the layers with mean file, crop and mirror, and compared with tensors
 * computed here independently (every TRAIN output must be exactly one of the possible
 * crops/flips of the right image); wrap-around, labels, encoded records, two readers of one
 * data set, errors, and exact resume from a position. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support/run.h"
#include "data/convert.h"
#include "data/datum.h"
#include "data/lmdb_db.h"
#include "data/mean.h"
#include "data_test_util.h"
#include "layers/layer.h"
#include "support/textproto.h"

enum { N = 10, C = 3, H = 6, W = 8 };
static char dir[256], raw_db[300], enc_db[300], mean_path[300], list_path[300];
static uint8_t chw[N][C * H * W]; /* the images as Caffe stores them: channels-first BGR */
static float mean[C * H * W];

static void setup(void) {
  tmp_dir(dir);
  char p[512], list[2048] = "";
  for (int i = 0; i < N; i++) {
    uint8_t *px = random_pixels(W, H, C, (uint64_t)i + 1);
    for (int k = 0; k < C; k++)
      for (int j = 0; j < H * W; j++) chw[i][k * H * W + j] = px[j * C + (2 - k)];
    snprintf(p, sizeof p, "%s/img %d.png", dir, i);
    write_png(p, W, H, C, px);
    free(px);
    snprintf(list + strlen(list), sizeof list - strlen(list), "img %d.png %d\n", i, 3 * i + 1);
  }
  snprintf(list_path, sizeof list_path, "%s/list.txt", dir);
  write_text(list_path, list);
  char root[300];
  snprintf(root, sizeof root, "%s/", dir);
  snprintf(raw_db, sizeof raw_db, "%s/raw", dir);
  snprintf(enc_db, sizeof enc_db, "%s/enc", dir);
  crema_convert_options o = {.root = root, .list_file = list_path, .db_path = raw_db};
  crema_convert_result res;
  crema_error err;
  ck_assert_msg(crema_convert_imageset(&o, &res, &err) == 0, "%s", err.msg);
  o.db_path = enc_db;
  o.encoded = true;
  ck_assert_msg(crema_convert_imageset(&o, &res, &err) == 0, "%s", err.msg);
  /* The mean, computed here in double and rounded once, like the tool. */
  for (int j = 0; j < C * H * W; j++) {
    double s = 0;
    for (int i = 0; i < N; i++) s += chw[i][j];
    mean[j] = (float)(s / N);
  }
  crema_mean m = {C, H, W, mean, N};
  snprintf(mean_path, sizeof mean_path, "%s/mean.binaryproto", dir);
  ck_assert_int_eq(crema_mean_write(mean_path, &m, &err), 0);
}

static void teardown(void) { remove_tree(dir); }

typedef struct data_fixture {
  Crema__LayerParameter *param;
  crema_layer *layer;
  crema_blob *top[2];
} data_fixture;

static int open_layer(data_fixture *f, const char *text, Crema__Phase phase, uint64_t seed,
                      crema_error *err) {
  f->param = test_layer_param(text);
  f->top[0] = crema_blob_new();
  f->top[1] = crema_blob_new();
  f->layer = NULL;
  if (crema_layer_create(f->param, phase, seed, &f->layer, err)) return -1;
  return crema_layer_setup(f->layer, 0, NULL, 2, f->top, err);
}

static void close_layer(data_fixture *f) {
  crema_layer_free(f->layer);
  crema_blob_free(f->top[0]);
  crema_blob_free(f->top[1]);
  crema_message_free(f->param);
}

static void forward(data_fixture *f) {
  crema_error err;
  ck_assert_msg(crema_layer_forward(f->layer, NULL, f->top, &err) == 0, "%s", err.msg);
}

/* Expected crop (ho, wo) of image i, mirrored or not: (pixel - mean) * scale. */
static void expect2(float *out, int i, int ch, int cw, int ho, int wo, int mirror, float scale,
                    bool use_mean) {
  for (int k = 0; k < C; k++)
    for (int y = 0; y < ch; y++)
      for (int x = 0; x < cw; x++) {
        const int j = (k * H + y + ho) * W + x + wo;
        const float v = ((float)chw[i][j] - (use_mean ? mean[j] : 0.0f)) * scale;
        out[(k * ch + y) * cw + (mirror ? cw - 1 - x : x)] = v;
      }
}

static void expect(float *out, int i, int cs, int ho, int wo, int mirror, float scale, bool use_mean) {
  expect2(out, i, cs, cs, ho, wo, mirror, scale, use_mean);
}

/* Which image / crop / flip produced `item`: exactly one must match. Returns the image. */
static int identify2(const float *item, int ch, int cw, float scale, bool use_mean, int *n_matches,
                     int *mirrored) {
  float cand[C * H * W];
  int found = -1;
  *n_matches = 0;
  for (int i = 0; i < N; i++)
    for (int ho = 0; ho <= H - ch; ho++)
      for (int wo = 0; wo <= W - cw; wo++)
        for (int m = 0; m < 2; m++) {
          expect2(cand, i, ch, cw, ho, wo, m, scale, use_mean);
          if (!memcmp(cand, item, sizeof(float) * C * ch * cw)) {
            found = i;
            *mirrored = m;
            (*n_matches)++;
          }
        }
  return found;
}

static int identify(const float *item, int cs, float scale, bool use_mean, int *n_matches, int *mirrored) {
  return identify2(item, cs, cs, scale, use_mean, n_matches, mirrored);
}

static const char *data_text(char *buf, const char *db, const char *extra) {
  snprintf(buf, 3000,
           "name: 'data' type: 'Data' top: 'data' top: 'label' "
           "data_param { source: '%s' batch_size: 4 backend: LMDB } %s",
           db, extra);
  return buf;
}

START_TEST(test_train_mean_crop_mirror) {
  char text[3000], tp[512];
  snprintf(tp, sizeof tp, "transform_param { crop_size: 4 mirror: true scale: 0.5 mean_file: '%s' }",
           mean_path);
  data_fixture f;
  crema_error err;
  ck_assert_msg(open_layer(&f, data_text(text, raw_db, tp), CREMA__PHASE__TRAIN, 11, &err) == 0, "%s",
                err.msg);
  ck_assert_int_eq(f.top[0]->num_axes, 4);
  ck_assert_int_eq(f.top[0]->shape[0], 4);
  ck_assert_int_eq(f.top[0]->shape[1], C);
  ck_assert_int_eq(f.top[0]->shape[2], 4);
  ck_assert_int_eq(f.top[0]->shape[3], 4);
  ck_assert_int_eq(f.top[1]->num_axes, 1);
  ck_assert_int_eq(f.top[1]->shape[0], 4);
  int flips = 0;
  for (int b = 0; b < 5; b++) { /* 20 records over a 10-record data set: wraps twice */
    forward(&f);
    for (int i = 0; i < 4; i++) {
      const int record = (b * 4 + i) % N;
      int n, m = 0;
      int img = identify(f.top[0]->data + (size_t)i * C * 16, 4, 0.5f, true, &n, &m);
      ck_assert_int_eq(n, 1);
      ck_assert_int_eq(img, record); /* key order = list order */
      ck_assert_float_eq(f.top[1]->data[i], (float)(3 * record + 1));
      flips += m;
    }
  }
  ck_assert(flips > 0 && flips < 20);
  ck_assert_int_eq(f.layer->ops->get_position(f.layer), 20);
  close_layer(&f);
}
END_TEST

START_TEST(test_test_phase_and_encoded) {
  char text[3000], tp[512];
  snprintf(tp, sizeof tp, "transform_param { crop_size: 4 mirror: true mean_file: '%s' }", mean_path);
  data_fixture raw, enc;
  crema_error err;
  ck_assert_msg(open_layer(&raw, data_text(text, raw_db, tp), CREMA__PHASE__TEST, 5, &err) == 0, "%s",
                err.msg);
  ck_assert_msg(open_layer(&enc, data_text(text, enc_db, tp), CREMA__PHASE__TEST, 6, &err) == 0, "%s",
                err.msg);
  float want[C * 16];
  for (int b = 0; b < 3; b++) {
    forward(&raw);
    forward(&enc);
    for (int i = 0; i < 4; i++) {
      expect(want, (b * 4 + i) % N, 4, 1, 2, 0, 1.0f, true); /* centre crop, no mirror in TEST */
      ck_assert_int_eq(memcmp(raw.top[0]->data + (size_t)i * C * 16, want, sizeof want), 0);
    }
    /* PNG-encoded records decode to the same tensors. */
    ck_assert_int_eq(memcmp(raw.top[0]->data, enc.top[0]->data, sizeof(float) * raw.top[0]->count), 0);
    ck_assert_int_eq(memcmp(raw.top[1]->data, enc.top[1]->data, sizeof(float) * 4), 0);
  }
  close_layer(&raw);
  close_layer(&enc);
  /* No transform at all: the raw bytes as floats; force_gray decodes encoded records grey. */
  data_fixture g;
  ck_assert_msg(open_layer(&g, data_text(text, enc_db, "transform_param { force_gray: true }"),
                           CREMA__PHASE__TEST, 1, &err) == 0,
                "%s", err.msg);
  ck_assert_int_eq(g.top[0]->shape[1], 1);
  forward(&g);
  close_layer(&g);
}
END_TEST

/* The position alone determines every later batch. */
static void resume_check(const char *layer_text, uint64_t seed) {
  data_fixture a, b;
  crema_error err;
  ck_assert_msg(open_layer(&a, layer_text, CREMA__PHASE__TRAIN, seed, &err) == 0, "%s", err.msg);
  for (int i = 0; i < 3; i++) forward(&a);
  const uint64_t pos = a.layer->ops->get_position(a.layer);
  const size_t count = a.top[0]->count;
  float *later = malloc(sizeof(float) * count * 2), *labels = malloc(sizeof(float) * 8);
  for (int i = 0; i < 2; i++) {
    forward(&a);
    memcpy(later + i * count, a.top[0]->data, sizeof(float) * count);
    memcpy(labels + i * 4, a.top[1]->data, sizeof(float) * 4);
  }
  ck_assert_msg(open_layer(&b, layer_text, CREMA__PHASE__TRAIN, seed, &err) == 0, "%s", err.msg);
  forward(&b); /* consume something first: set_position must also discard prefetched batches */
  ck_assert_msg(b.layer->ops->set_position(b.layer, pos, &err) == 0, "%s", err.msg);
  ck_assert_int_eq(b.layer->ops->get_position(b.layer), pos);
  for (int i = 0; i < 2; i++) {
    forward(&b);
    ck_assert_int_eq(memcmp(b.top[0]->data, later + i * count, sizeof(float) * count), 0);
    ck_assert_int_eq(memcmp(b.top[1]->data, labels + i * 4, sizeof(float) * 4), 0);
  }
  /* And going back on the first layer too. */
  ck_assert_int_eq(a.layer->ops->set_position(a.layer, pos, &err), 0);
  forward(&a);
  ck_assert_int_eq(memcmp(a.top[0]->data, later, sizeof(float) * count), 0);
  free(later);
  free(labels);
  close_layer(&a);
  close_layer(&b);
}

START_TEST(test_resume_data) {
  char text[3000], tp[512];
  snprintf(tp, sizeof tp,
           "transform_param { crop_size: 5 mirror: true mean_file: '%s' augment { max_rotation: 10 "
           "brightness: 0.2 } "
           "}",
           mean_path);
  resume_check(data_text(text, raw_db, tp), 1234);
}
END_TEST

START_TEST(test_resume_image_data_shuffle) {
  char text[3000];
  snprintf(text, sizeof text,
           "name: 'data' type: 'ImageData' top: 'data' top: 'label' image_data_param { source: '%s' "
           "root_folder: '%s/' batch_size: 4 shuffle: true } transform_param { crop_size: 5 mirror: true }",
           list_path, dir);
  resume_check(text, 99);
}
END_TEST

START_TEST(test_image_data_layer) {
  char text[3000];
  snprintf(text, sizeof text,
           "name: 'data' type: 'ImageData' top: 'data' top: 'label' image_data_param { source: '%s' "
           "root_folder: '%s/' batch_size: 5 shuffle: true }",
           list_path, dir);
  data_fixture f;
  crema_error err;
  ck_assert_msg(open_layer(&f, text, CREMA__PHASE__TEST, 3, &err) == 0, "%s", err.msg);
  ck_assert_int_eq(f.top[0]->shape[2], H);
  int order[2][N];
  for (int epoch = 0; epoch < 2; epoch++) {
    int seen[N] = {0};
    for (int b = 0; b < 2; b++) {
      forward(&f);
      for (int i = 0; i < 5; i++) {
        int n, m = -1;
        const int img = identify2(f.top[0]->data + (size_t)i * C * H * W, H, W, 1.0f, false, &n, &m);
        ck_assert_int_ge(img, 0);
        ck_assert_int_eq(m, 0);
        ck_assert_float_eq(f.top[1]->data[i], (float)(3 * img + 1));
        seen[img]++;
        order[epoch][b * 5 + i] = img;
      }
    }
    for (int i = 0; i < N; i++) ck_assert_int_eq(seen[i], 1); /* each epoch is a permutation */
  }
  ck_assert_int_ne(memcmp(order[0], order[1], sizeof order[0]), 0); /* reshuffled every epoch */
  close_layer(&f);
  /* Resizing: new_height / new_width. */
  snprintf(text, sizeof text,
           "name: 'data' type: 'ImageData' top: 'data' top: 'label' image_data_param { source: '%s' "
           "root_folder: '%s/' batch_size: 2 new_height: 9 new_width: 11 is_color: false }",
           list_path, dir);
  ck_assert_msg(open_layer(&f, text, CREMA__PHASE__TRAIN, 3, &err) == 0, "%s", err.msg);
  ck_assert_int_eq(f.top[0]->shape[1], 1);
  ck_assert_int_eq(f.top[0]->shape[2], 9);
  ck_assert_int_eq(f.top[0]->shape[3], 11);
  forward(&f);
  close_layer(&f);
  /* A missing image is reported by forward, naming the file. */
  char bad_list[300];
  snprintf(bad_list, sizeof bad_list, "%s/bad.txt", dir);
  write_text(bad_list, "img 0.png 1\nimg 1.png 2\nmissing.png 3\nimg 2.png 4\n");
  snprintf(text, sizeof text,
           "name: 'data' type: 'ImageData' top: 'data' top: 'label' image_data_param { source: '%s' "
           "root_folder: '%s/' batch_size: 4 }",
           bad_list, dir);
  ck_assert_msg(open_layer(&f, text, CREMA__PHASE__TRAIN, 3, &err) == 0, "%s", err.msg);
  ck_assert_int_eq(crema_layer_forward(f.layer, NULL, f.top, &err), -1);
  ck_assert_msg(strstr(err.msg, "missing.png") != NULL, "%s", err.msg);
  close_layer(&f);
}
END_TEST

/* Records holding float_data (as extract_features writes them) come through as floats. */
START_TEST(test_float_records) {
  char path[300], text[3000];
  snprintf(path, sizeof path, "%s/floats", dir);
  crema_lmdb_writer *w;
  crema_error err;
  ck_assert_int_eq(crema_lmdb_create(path, 0, &w, &err), 0);
  crema_bytes rec = {0};
  for (int i = 0; i < 6; i++) {
    float f[5];
    for (int j = 0; j < 5; j++) f[j] = (float)i - 0.25f * (float)j;
    Crema__Datum d = CREMA__DATUM__INIT;
    d.has_channels = d.has_height = d.has_width = d.has_label = 1;
    d.channels = 5;
    d.height = d.width = 1;
    d.label = 100 + i;
    d.n_float_data = 5;
    d.float_data = f;
    ck_assert_int_eq(crema_datum_serialize(&d, &rec, &err), 0);
    char key[16];
    int kl = snprintf(key, sizeof key, "%010d", i);
    ck_assert_int_eq(crema_lmdb_put(w, key, (size_t)kl, rec.data, rec.len, &err), 0);
  }
  crema_bytes_free(&rec);
  ck_assert_int_eq(crema_lmdb_writer_close(w, &err), 0);
  data_fixture f;
  ck_assert_msg(open_layer(&f, data_text(text, path, "transform_param { scale: 2 mean_value: 1 }"),
                           CREMA__PHASE__TRAIN, 1, &err) == 0,
                "%s", err.msg);
  ck_assert_int_eq(f.top[0]->shape[1], 5);
  ck_assert_int_eq(f.top[0]->shape[2], 1);
  forward(&f);
  forward(&f); /* records 4, 5, 0, 1 */
  const int rec_of[4] = {4, 5, 0, 1};
  for (int i = 0; i < 4; i++) {
    ck_assert_float_eq(f.top[1]->data[i], (float)(100 + rec_of[i]));
    for (int j = 0; j < 5; j++)
      ck_assert_float_eq(f.top[0]->data[i * 5 + j], ((float)rec_of[i] - 0.25f * (float)j - 1.0f) * 2.0f);
  }
  close_layer(&f);
}
END_TEST

START_TEST(test_two_readers_and_errors) {
  char text[3000];
  data_fixture a, b;
  crema_error err;
  ck_assert_int_eq(open_layer(&a, data_text(text, raw_db, ""), CREMA__PHASE__TRAIN, 1, &err), 0);
  ck_assert_int_eq(open_layer(&b, data_text(text, raw_db, ""), CREMA__PHASE__TRAIN, 2, &err), 0);
  for (int i = 0; i < 4; i++) {
    forward(&a);
    forward(&b);
    ck_assert_int_eq(memcmp(a.top[0]->data, b.top[0]->data, sizeof(float) * a.top[0]->count), 0);
  }
  close_layer(&a);
  close_layer(&b);
  /* rand_skip: a seeded number of records skipped at the start. */
  ck_assert_int_eq(open_layer(&a, data_text(text, raw_db, ""), CREMA__PHASE__TRAIN, 1, &err), 0);
  snprintf(text, sizeof text,
           "name: 'data' type: 'Data' top: 'data' data_param { source: '%s' batch_size: 4 backend: LMDB "
           "rand_skip: 1000 }",
           raw_db);
  data_fixture s;
  s.param = test_layer_param(text);
  s.top[0] = crema_blob_new();
  s.top[1] = NULL;
  ck_assert_int_eq(crema_layer_create(s.param, CREMA__PHASE__TRAIN, 8, &s.layer, &err), 0);
  ck_assert_msg(crema_layer_setup(s.layer, 0, NULL, 1, s.top, &err) == 0, "%s", err.msg);
  ck_assert_int_eq(crema_layer_forward(s.layer, NULL, s.top, &err), 0);
  forward(&a);
  int skipped = -1; /* find which record the skipped layer started at */
  for (int k = 0; k < N && skipped < 0; k++) {
    int same = 1;
    for (size_t j = 0; j < (size_t)C * H * W; j++) same &= s.top[0]->data[j] == (float)chw[k][j];
    if (same) skipped = k;
  }
  ck_assert_int_ge(skipped, 0);
  crema_layer_free(s.layer);
  crema_blob_free(s.top[0]);
  crema_message_free(s.param);
  close_layer(&a);

  /* backend: LEVELDB on an LMDB fails naming LevelDB; a missing source names the path. */
  snprintf(text, sizeof text,
           "name: 'd' type: 'Data' top: 'data' top: 'label' data_param { source: '%s' batch_size: 4 backend: "
           "LEVELDB }",
           raw_db);
  ck_assert_int_eq(open_layer(&a, text, CREMA__PHASE__TRAIN, 1, &err), -1);
  ck_assert_msg(strstr(err.msg, "LevelDB") && strstr(err.msg, "\"d\""), "%s", err.msg);
  close_layer(&a);
  char missing[300];
  snprintf(missing, sizeof missing, "%s/no_such_db", dir);
  ck_assert_int_eq(open_layer(&a, data_text(text, missing, ""), CREMA__PHASE__TRAIN, 1, &err), -1);
  ck_assert_msg(strstr(err.msg, "no_such_db") && strstr(err.msg, "does not exist"), "%s", err.msg);
  close_layer(&a);
  ck_assert_int_eq(open_layer(&a, data_text(text, raw_db, "transform_param { crop_size: 7 }"),
                              CREMA__PHASE__TRAIN, 1, &err),
                   -1);
  ck_assert_msg(strstr(err.msg, "crop_size 7"), "%s", err.msg);
  close_layer(&a);
}
END_TEST

int main(void) {
  Suite *s = suite_create("data_layer");
  TCase *tc = tcase_create("core");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_add_test(tc, test_train_mean_crop_mirror);
  tcase_add_test(tc, test_test_phase_and_encoded);
  tcase_add_test(tc, test_resume_data);
  tcase_add_test(tc, test_resume_image_data_shuffle);
  tcase_add_test(tc, test_image_data_layer);
  tcase_add_test(tc, test_two_readers_and_errors);
  tcase_add_test(tc, test_float_records);
  suite_add_tcase(s, tc);
  return test_run_suite(s);
}
