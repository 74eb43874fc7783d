/* convert_imageset end to end: generated PNG/JPEG images (colour, grey, odd sizes, a name
 * with a space, a corrupt file) and the real JPEGs in tests/data/images, converted by the
 * tool and read back with protobuf-c: keys, Datum fields, BGR channels-first pixels, skip
 * report, flags (--gray, --resize_*, --encoded, --encode_type, --shuffle/--seed,
 * --check_size), LevelDB output, and the refusals (existing output, unknown backend). */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <stb_image.h>

#include "support/run.h"
#include "data/db.h"
#include "data/convert.h"
#include "data_test_util.h"
#include "proto/crema.pb-c.h"

static char dir[256];

/* The generated folder: name, width, height, channels, jpeg? */
typedef struct gen_image {
  const char *name;
  int w, h, c, jpg;
} gen_image;
static const gen_image GEN[] = {
    {"a.png", 7, 5, 3, 0},  {"b.png", 3, 9, 1, 0}, {"c.jpg", 16, 12, 3, 1}, {"d with space.png", 4, 4, 3, 0},
    {"e.jpg", 10, 6, 1, 1},
};
static const char LIST[] = "a.png 0\nb.png 1\nc.jpg 2\nd with space.png 3\nbad.jpg 4\ne.jpg 5\n";

static void setup(void) {
  tmp_dir(dir);
  char p[512];
  for (size_t i = 0; i < sizeof GEN / sizeof GEN[0]; i++) {
    uint8_t *px = random_pixels(GEN[i].w, GEN[i].h, GEN[i].c, i + 1);
    snprintf(p, sizeof p, "%s/%s", dir, GEN[i].name);
    if (GEN[i].jpg)
      write_jpg(p, GEN[i].w, GEN[i].h, GEN[i].c, px);
    else
      write_png(p, GEN[i].w, GEN[i].h, GEN[i].c, px);
    free(px);
  }
  snprintf(p, sizeof p, "%s/bad.jpg", dir);
  write_text(p, "\xff\xd8\xff\xe0 this JPEG is truncated garbage");
  snprintf(p, sizeof p, "%s/list.txt", dir);
  write_text(p, LIST);
}

static void teardown(void) { remove_tree(dir); }

static Crema__Datum *datum_at(const db_records *r, size_t i) {
  Crema__Datum *d = crema__datum__unpack(NULL, r->value_len[i], r->values[i]);
  ck_assert_ptr_nonnull(d);
  return d;
}

/* Checks a raw datum against stb's own decode of the file (channels = 1 or 3). */
static void check_raw_pixels(const Crema__Datum *d, const char *file, int channels) {
  int w, h, n;
  uint8_t *px = stbi_load(file, &w, &h, &n, channels);
  ck_assert_ptr_nonnull(px);
  ck_assert_int_eq(d->channels, channels);
  ck_assert_int_eq(d->height, h);
  ck_assert_int_eq(d->width, w);
  ck_assert(!d->encoded);
  ck_assert_int_eq(d->data.len, (size_t)w * h * channels);
  for (int c = 0; c < channels; c++)
    for (int y = 0; y < h; y++)
      for (int x = 0; x < w; x++) {
        const int src_c = channels == 3 ? 2 - c : 0; /* BGR */
        ck_assert_int_eq(d->data.data[(c * h + y) * w + x], px[(y * w + x) * channels + src_c]);
      }
  stbi_image_free(px);
}

static int convert(const char *flags, const char *db, char **out) {
  char args[1024];
  snprintf(args, sizeof args, "convert_imageset %s '%s/' '%s/list.txt' '%s/%s'", flags, dir, dir, dir, db);
  return run_tool(dir, args, out);
}

START_TEST(test_generated_colour) {
  char *out;
  ck_assert_int_eq(convert("", "db", &out), 0);
  ck_assert_msg(strstr(out, "5 written, 1 skipped") != NULL, "%s", out);
  ck_assert_msg(strstr(out, "bad.jpg") != NULL, "skip report must name the file: %s", out);
  free(out);
  char p[512];
  snprintf(p, sizeof p, "%s/db", dir);
  db_records r = read_db(p);
  ck_assert_int_eq(r.n, 5);
  /* Keys keep the line index, so the skipped line 4 leaves a gap, as in Caffe. */
  const char *keys[5] = {"00000000_a.png", "00000001_b.png", "00000002_c.jpg", "00000003_d with space.png",
                         "00000005_e.jpg"};
  const int labels[5] = {0, 1, 2, 3, 5};
  const char *files[5] = {"a.png", "b.png", "c.jpg", "d with space.png", "e.jpg"};
  for (size_t i = 0; i < 5; i++) {
    ck_assert_str_eq(r.keys[i], keys[i]);
    Crema__Datum *d = datum_at(&r, i);
    ck_assert_int_eq(d->label, labels[i]);
    snprintf(p, sizeof p, "%s/%s", dir, files[i]);
    check_raw_pixels(d, p, 3); /* grey files become 3 equal channels in colour mode */
    crema__datum__free_unpacked(d, NULL);
  }
  free_db(&r);
}
END_TEST

START_TEST(test_generated_gray_resize_encoded) {
  char *out, p[512];
  ck_assert_int_eq(convert("--gray", "gray", &out), 0);
  free(out);
  snprintf(p, sizeof p, "%s/gray", dir);
  db_records r = read_db(p);
  ck_assert_int_eq(r.n, 5);
  const char *files[5] = {"a.png", "b.png", "c.jpg", "d with space.png", "e.jpg"};
  for (size_t i = 0; i < 5; i++) {
    Crema__Datum *d = datum_at(&r, i);
    snprintf(p, sizeof p, "%s/%s", dir, files[i]);
    check_raw_pixels(d, p, 1);
    crema__datum__free_unpacked(d, NULL);
  }
  free_db(&r);

  ck_assert_int_eq(convert("-resize_width=8 -resize_height=6 --check_size", "resized", &out), 0);
  free(out);
  snprintf(p, sizeof p, "%s/resized", dir);
  r = read_db(p);
  ck_assert_int_eq(r.n, 5);
  for (size_t i = 0; i < r.n; i++) {
    Crema__Datum *d = datum_at(&r, i);
    ck_assert_int_eq(d->channels, 3);
    ck_assert_int_eq(d->height, 6);
    ck_assert_int_eq(d->width, 8);
    ck_assert_int_eq(d->data.len, 3 * 6 * 8);
    crema__datum__free_unpacked(d, NULL);
  }
  free_db(&r);

  /* --encoded keeps the file's bytes when nothing needs changing... */
  ck_assert_int_eq(convert("--encoded", "enc", &out), 0);
  free(out);
  snprintf(p, sizeof p, "%s/enc", dir);
  r = read_db(p);
  ck_assert_int_eq(r.n, 5);
  Crema__Datum *d = datum_at(&r, 0);
  ck_assert(d->encoded);
  ck_assert_int_eq(d->label, 0);
  size_t len = 0;
  snprintf(p, sizeof p, "%s/a.png", dir);
  char *file = slurp(p, &len);
  ck_assert_int_eq(d->data.len, len);
  ck_assert_int_eq(memcmp(d->data.data, file, len), 0);
  free(file);
  crema__datum__free_unpacked(d, NULL);
  d = datum_at(&r, 2); /* c.jpg: JPEG kept as is */
  snprintf(p, sizeof p, "%s/c.jpg", dir);
  file = slurp(p, &len);
  ck_assert_int_eq(d->data.len, len);
  ck_assert_int_eq(memcmp(d->data.data, file, len), 0);
  free(file);
  crema__datum__free_unpacked(d, NULL);
  /* ...and re-encodes a grey file asked for in colour: a 3-channel PNG of the same pixels. */
  d = datum_at(&r, 1);
  ck_assert(d->encoded);
  int w, h, n;
  uint8_t *px = stbi_load_from_memory(d->data.data, (int)d->data.len, &w, &h, &n, 0);
  ck_assert_ptr_nonnull(px);
  ck_assert_int_eq(n, 3);
  ck_assert_int_eq(w, 3);
  ck_assert_int_eq(h, 9);
  stbi_image_free(px);
  crema__datum__free_unpacked(d, NULL);
  free_db(&r);

  /* --encode_type=jpg implies --encoded and re-encodes the PNGs as JPEG. */
  ck_assert_int_eq(convert("--encode_type=jpg", "jpg", &out), 0);
  ck_assert_ptr_nonnull(strstr(out, "assuming encoded=true"));
  free(out);
  snprintf(p, sizeof p, "%s/jpg", dir);
  r = read_db(p);
  d = datum_at(&r, 3);
  ck_assert(d->encoded);
  ck_assert_int_eq(d->data.data[0], 0xFF);
  ck_assert_int_eq(d->data.data[1], 0xD8);
  crema__datum__free_unpacked(d, NULL);
  free_db(&r);
}
END_TEST

static void key_order(const char *db, char names[6][64], size_t *n) {
  char p[512];
  snprintf(p, sizeof p, "%s/%s", dir, db);
  db_records r = read_db(p);
  *n = r.n;
  for (size_t i = 0; i < r.n; i++) {
    /* Keys are "%08zu_<name>" with the index after shuffling. */
    ck_assert_int_eq(r.keys[i][8], '_');
    snprintf(names[i], 64, "%s", r.keys[i] + 9);
  }
  free_db(&r);
}

START_TEST(test_shuffle_check_size_refusals) {
  char *out, a[6][64], b[6][64], c[6][64];
  size_t na, nb, nc;
  ck_assert_int_eq(convert("--shuffle --seed=3", "s1", &out), 0);
  free(out);
  ck_assert_int_eq(convert("--shuffle --seed=3", "s2", &out), 0);
  free(out);
  ck_assert_int_eq(convert("--shuffle --seed=4", "s3", &out), 0);
  free(out);
  key_order("s1", a, &na);
  key_order("s2", b, &nb);
  key_order("s3", c, &nc);
  ck_assert_int_eq(na, 5);
  ck_assert_int_eq(nb, 5);
  int same_as_other_seed = 1, same_as_unshuffled = 1;
  const char *plain[5] = {"a.png", "b.png", "c.jpg", "d with space.png", "e.jpg"};
  for (size_t i = 0; i < 5; i++) {
    ck_assert_str_eq(a[i], b[i]); /* same seed, same order */
    same_as_other_seed &= !strcmp(a[i], c[i]);
    same_as_unshuffled &= !strcmp(a[i], plain[i]);
  }
  ck_assert(!same_as_other_seed || !same_as_unshuffled);

  /* --check_size with images of different sizes: an error naming the file, no output left. */
  ck_assert_int_ne(convert("--check_size", "checked", &out), 0);
  ck_assert_msg(strstr(out, "error:") && strstr(out, "b.png") && strstr(out, "check_size"), "%s", out);
  free(out);
  char p[512];
  struct stat st;
  snprintf(p, sizeof p, "%s/checked", dir);
  ck_assert_int_ne(stat(p, &st), 0);

  /* An existing output is refused and left alone. */
  ck_assert_int_eq(convert("", "exists", &out), 0);
  free(out);
  ck_assert_int_ne(convert("", "exists", &out), 0);
  ck_assert_msg(strstr(out, "already exists") != NULL, "%s", out);
  free(out);
  snprintf(p, sizeof p, "%s/exists", dir);
  db_records r = read_db(p);
  ck_assert_int_eq(r.n, 5);
  free_db(&r);

  /* LevelDB (Caffe's other backend): the same records under the same keys. */
  if (crema_leveldb_available()) {
    ck_assert_int_eq(convert("--backend=leveldb", "ldb", &out), 0);
    free(out);
    snprintf(p, sizeof p, "%s/ldb", dir);
    crema_db *ldb = NULL;
    crema_error lerr;
    ck_assert_msg(crema_db_open(p, CREMA_DB_AUTO, &ldb, &lerr) == 0, "%s", lerr.msg);
    ck_assert_uint_eq(crema_db_count(ldb), 5);
    crema_db_close(ldb);
  }
  ck_assert_int_ne(convert("--backend=rocksdb", "rdb", &out), 0);
  ck_assert_msg(strstr(out, "use lmdb or leveldb") != NULL, "%s", out);
  free(out);
  snprintf(p, sizeof p, "%s/rdb", dir);
  ck_assert_int_ne(stat(p, &st), 0);

  /* A root folder without its trailing '/': a warning, then "none could be read", no output. */
  char args[1024];
  snprintf(args, sizeof args, "convert_imageset '%s' '%s/list.txt' '%s/noslash'", dir, dir, dir);
  ck_assert_int_ne(run_tool(dir, args, &out), 0);
  ck_assert_msg(strstr(out, "no trailing '/'") && strstr(out, "none of the 6 images could be read"), "%s",
                out);
  free(out);
  snprintf(p, sizeof p, "%s/noslash", dir);
  ck_assert_int_ne(stat(p, &st), 0);

  /* Usage errors. */
  ck_assert_int_ne(run_tool(dir, "convert_imageset onlyone", &out), 0);
  ck_assert_ptr_nonnull(strstr(out, "Usage"));
  free(out);
  ck_assert_int_ne(run_tool(dir, "convert_imageset --bogus a b c", &out), 0);
  ck_assert_ptr_nonnull(strstr(out, "unknown flag"));
  free(out);
}
END_TEST

/* The real photographs (one grey, one with a space in its name). */
START_TEST(test_real_jpegs) {
  char p[512], *out, args[1024];
  snprintf(p, sizeof p, "%s/real.txt", dir);
  write_text(p, "cat.jpg 0\ncat gray.jpg 1\nfish-bike.jpg 2\n");
  const char *variants[4] = {"", "--resize_width=64 --resize_height=48", "--gray", "--encoded"};
  for (int v = 0; v < 4; v++) {
    snprintf(args, sizeof args, "convert_imageset %s '%s/images/' '%s/real.txt' '%s/real%d'", variants[v],
             CREMA_TEST_DATA, dir, dir, v);
    ck_assert_int_eq(run_tool(dir, args, &out), 0);
    ck_assert_msg(strstr(out, "3 written, 0 skipped") != NULL, "%s", out);
    free(out);
    snprintf(p, sizeof p, "%s/real%d", dir, v);
    db_records r = read_db(p);
    ck_assert_int_eq(r.n, 3);
    ck_assert_str_eq(r.keys[1], "00000001_cat gray.jpg");
    for (size_t i = 0; i < 3; i++) {
      Crema__Datum *d = datum_at(&r, i);
      ck_assert_int_eq(d->label, (int)i);
      if (v == 3) {
        ck_assert(d->encoded);
        const char *names[3] = {"cat.jpg", "cat gray.jpg", "fish-bike.jpg"};
        size_t len = 0;
        snprintf(p, sizeof p, "%s/images/%s", CREMA_TEST_DATA, names[i]);
        char *file = slurp(p, &len);
        if (i == 1) {
          /* A grey file in a colour data set is re-encoded (same type) as colour, so that
           * every record decodes to 3 channels; colour files keep their bytes. */
          int w, h, n;
          uint8_t *px = stbi_load_from_memory(d->data.data, (int)d->data.len, &w, &h, &n, 0);
          ck_assert_ptr_nonnull(px);
          ck_assert_int_eq(n, 3);
          ck_assert_int_eq(w, 480);
          ck_assert_int_eq(d->data.data[1], 0xD8); /* still a JPEG */
          stbi_image_free(px);
        } else {
          ck_assert_int_eq(d->data.len, len);
          ck_assert_int_eq(memcmp(d->data.data, file, len), 0);
        }
        free(file);
      } else {
        ck_assert_int_eq(d->channels, v == 2 ? 1 : 3);
        ck_assert_int_eq(d->width, v == 1 ? 64 : i == 2 ? 481 : 480);
        ck_assert_int_eq(d->height, v == 1 ? 48 : i == 2 ? 323 : 360);
        ck_assert_int_eq(d->data.len, (size_t)d->channels * d->height * d->width);
      }
      crema__datum__free_unpacked(d, NULL);
    }
    free_db(&r);
  }
}
END_TEST

/* Several chunks (the pipeline writes one while decoding the next): order, keys, labels and
 * skips must come out exactly as with one chunk. */
START_TEST(test_many_lines_in_order) {
  const char *names[6] = {"a.png", "b.png", "c.jpg", "d with space.png", "bad.jpg", "e.jpg"};
  char *list = malloc(200 * 40), p[512];
  size_t used = 0;
  for (int i = 0; i < 200; i++)
    used += (size_t)snprintf(list + used, 200 * 40 - used, "%s %d\n", names[i % 6], i);
  snprintf(p, sizeof p, "%s/list.txt", dir);
  write_text(p, list);
  free(list);
  char *out;
  ck_assert_int_eq(convert("--gray", "many", &out), 0);
  ck_assert_msg(strstr(out, "167 written, 33 skipped") != NULL, "%.400s", out);
  /* Not a terminal: plain progress lines at 10% steps, ending at 100%. */
  ck_assert_msg(strstr(out, "convert_imageset: 200/200 images (100%)") != NULL, "%.400s", out);
  free(out);
  snprintf(p, sizeof p, "%s/many", dir);
  db_records r = read_db(p);
  ck_assert_int_eq(r.n, 167);
  size_t k = 0;
  for (int i = 0; i < 200; i++) {
    if (i % 6 == 4) continue; /* bad.jpg */
    char key[64];
    snprintf(key, sizeof key, "%08d_%s", i, names[i % 6]);
    ck_assert_str_eq(r.keys[k], key);
    Crema__Datum *d = datum_at(&r, k);
    ck_assert_int_eq(d->label, i);
    ck_assert_int_eq(d->channels, 1);
    crema__datum__free_unpacked(d, NULL);
    k++;
  }
  free_db(&r);
}
END_TEST

/* The library entry point: a tiny initial map must grow and lose nothing. */
START_TEST(test_map_growth) {
  char list[512], db[512];
  snprintf(list, sizeof list, "%s/real.txt", dir);
  write_text(list, "cat.jpg 0\ncat gray.jpg 1\nfish-bike.jpg 2\ncat.jpg 3\n");
  snprintf(db, sizeof db, "%s/grown", dir);
  crema_convert_options o = {
      .root = CREMA_TEST_DATA "/images/", .list_file = list, .db_path = db, .initial_map_bytes = 32 << 10};
  crema_convert_result res;
  crema_error err;
  ck_assert_msg(crema_convert_imageset(&o, &res, &err) == 0, "%s", err.msg);
  ck_assert_int_eq(res.written, 4);
  ck_assert_int_ge(res.map_growths, 5);
  db_records r = read_db(db);
  ck_assert_int_eq(r.n, 4);
  Crema__Datum *d = datum_at(&r, 3);
  ck_assert_int_eq(d->data.len, 3 * 360 * 480);
  crema__datum__free_unpacked(d, NULL);
  free_db(&r);
  /* A list line without a label is an error naming the file and line. */
  write_text(list, "cat.jpg 0\nno_label_here\n");
  snprintf(db, sizeof db, "%s/nolabel", dir);
  ck_assert_int_eq(crema_convert_imageset(&o, &res, &err), -1);
  ck_assert_msg(strstr(err.msg, "real.txt:2") != NULL, "%s", err.msg);
}
END_TEST

int main(void) {
  Suite *s = suite_create("convert_imageset");
  TCase *tc = tcase_create("core");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_add_test(tc, test_generated_colour);
  tcase_add_test(tc, test_generated_gray_resize_encoded);
  tcase_add_test(tc, test_shuffle_check_size_refusals);
  tcase_add_test(tc, test_real_jpegs);
  tcase_add_test(tc, test_map_growth);
  tcase_add_test(tc, test_many_lines_in_order);
  suite_add_tcase(s, tc);
  return test_run_suite(s);
}
