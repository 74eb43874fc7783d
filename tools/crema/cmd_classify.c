/* cmd_classify.c -- `crema classify`: top-K classes with probabilities for images.
 *
 *   crema classify --run RUN_DIR [--top 5] [--oversample] [--json] IMAGE... | --list FILE
 *   crema classify --model DEPLOY --weights W [--labels L] [--preprocess P | Caffe's classifier
 *                  flags: --images_dim, --mean_file, --mean_value, --raw_scale, --input_scale,
 *                  --channel_swap] ...
 *
 * Images are decoded and preprocessed on all cores (OpenMP), a batch at a time, then run
 * through the net in one forward pass per batch. With --oversample each image is 10 crops
 * whose probabilities are averaged (Caffe's classifier.py). An image that cannot be read is
 * reported and skipped; the exit status is then 1. */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/log.h"
#include "common/flags.h"
#include "common/tool.h"
#include "crema/commands.h"
#include "crema/ft_data.h"
#include "crema/ft_train.h"
#include "data/preprocess.h"
#include "net/net.h"
#include "proto/io.h"

typedef struct cl_flags {
  const char *run, *model, *weights, *labels, *preprocess, *list;
  const char *images_dim, *mean_file, *mean_value, *channel_swap;
  double raw_scale, input_scale;
  long top, batch;
  bool oversample, json, center_only;
} cl_flags;

/* A preprocessing from Caffe's classifier flags, for a net with input c x h x w. */
static int preprocess_from_flags(const cl_flags *f, int c, int h, int w, crema_preprocess **out,
                                 crema_error *err) {
  Crema__TransformationParameter t = CREMA__TRANSFORMATION_PARAMETER__INIT;
  int rh = h, rw = w;
  if (f->images_dim && sscanf(f->images_dim, "%d,%d", &rh, &rw) != 2)
    return crema_fail(err, "--images_dim %s: give HEIGHT,WIDTH (e.g. 256,256)", f->images_dim);
  if (rh < h || rw < w)
    return crema_fail(err, "--images_dim %dx%d is smaller than the net's %dx%d input", rh, rw, h, w);
  if (h != w && (rh != h || rw != w))
    return crema_fail(err, "the net's input is not square (%dx%d): --images_dim must equal it", h, w);
  t.has_resize_height = t.has_resize_width = 1;
  t.resize_height = (uint32_t)rh;
  t.resize_width = (uint32_t)rw;
  if (rh != h || rw != w) {
    t.has_crop_size = 1;
    t.crop_size = (uint32_t)h;
  }
  if (!(f->raw_scale > 0)) return crema_fail(err, "--raw_scale must be > 0");
  /* Caffe's classifier: ((pixel / 255) * raw_scale - mean) * input_scale, with 8-bit pixels:
   * (pixel - mean * 255 / raw_scale) * (raw_scale / 255 * input_scale). */
  const float k = (float)(f->raw_scale / 255.0);
  t.has_scale = 1;
  t.scale = (float)(k * f->input_scale);
  float mv[3];
  if (f->mean_value) {
    const int n = sscanf(f->mean_value, "%f,%f,%f", &mv[0], &mv[1], &mv[2]);
    if (n != 1 && n != c) return crema_fail(err, "--mean_value %s: give 1 or %d values", f->mean_value, c);
    for (int i = 0; i < n; i++) mv[i] /= k;
    t.mean_value = mv;
    t.n_mean_value = (size_t)n;
  }
  if (f->mean_file) {
    if (fabs(f->raw_scale - 255.0) > 1e-6)
      return crema_fail(err, "--mean_file needs --raw_scale 255 (the mean file is in 0-255 pixel units)");
    t.mean_file = (char *)f->mean_file;
  }
  if (f->channel_swap) {
    if (!strcmp(f->channel_swap, "0,1,2")) {
      t.has_channel_order = 1;
      t.channel_order = CREMA__TRANSFORMATION_PARAMETER__CHANNEL_ORDER__RGB;
    } else if (strcmp(f->channel_swap, "2,1,0")) {
      return crema_fail(err,
                        "--channel_swap %s: crema supports 2,1,0 (BGR nets, Caffe's) and 0,1,2 (RGB nets)",
                        f->channel_swap);
    }
  }
  t.has_force_gray = c == 1;
  t.force_gray = c == 1;
  t.has_force_color = c == 3;
  t.force_color = c == 3;
  return crema_preprocess_create(&t, NULL, out, err);
}

static void json_string(FILE *o, const char *s) {
  fputc('"', o);
  for (; *s; s++) {
    const unsigned char ch = (unsigned char)*s;
    if (ch == '"' || ch == '\\')
      fprintf(o, "\\%c", ch);
    else if (ch < 0x20)
      fprintf(o, "\\u%04x", ch);
    else
      fputc(ch, o);
  }
  fputc('"', o);
}

/* Reads an image list: one path per line; a trailing " <integer>" label is dropped. */
static int read_list(const char *path, char ***out, int *n, crema_error *err) {
  if (ft_read_labels(path, out, n, err)) return -1;
  int k = 0;
  for (int i = 0; i < *n; i++) {
    char *s = (*out)[i], *sp = strrchr(s, ' ');
    if (sp && sp[1]) {
      char *end;
      strtol(sp + 1, &end, 10);
      if (!*end) *sp = '\0';
    }
    if (*s)
      (*out)[k++] = s;
    else
      free(s);
  }
  *n = k;
  return 0;
}

/* Indices of the k largest of v[0..n) (ties: lower index first). */
static void top_k(const float *v, int n, int k, int *idx) {
  for (int i = 0; i < k; i++) idx[i] = -1;
  for (int i = 0; i < n; i++) {
    int pos = k;
    while (pos > 0 && (idx[pos - 1] < 0 || v[i] > v[idx[pos - 1]])) pos--;
    if (pos >= k) continue;
    memmove(idx + pos + 1, idx + pos, sizeof(int) * (size_t)(k - pos - 1));
    idx[pos] = i;
  }
}

int crema_cmd_classify(int argc, char **argv) {
  crema_tool_init(argc + 1, argv - 1);
  cl_flags f;
  memset(&f, 0, sizeof f);
  f.top = 5;
  f.batch = 16;
  f.raw_scale = 255;
  f.input_scale = 1;
  crema_flag flags[] = {
      {"run", CREMA_FLAG_STRING, &f.run,
       "a crema finetune run folder (model, weights, labels, preprocessing)", 0},
      {"model", CREMA_FLAG_STRING, &f.model, "deploy prototxt (without --run)", 0},
      {"weights", CREMA_FLAG_STRING, &f.weights, "caffemodel (without --run)", 0},
      {"labels", CREMA_FLAG_STRING, &f.labels, "class names, one per line (default: indices)", 0},
      {"preprocess", CREMA_FLAG_STRING, &f.preprocess, "preprocess.prototxt (instead of the flags below)", 0},
      {"images_dim", CREMA_FLAG_STRING, &f.images_dim,
       "resize to H,W before the centre crop (default: input)", 0},
      {"mean_file", CREMA_FLAG_STRING, &f.mean_file, "mean .binaryproto (0-255 units)", 0},
      {"mean_value", CREMA_FLAG_STRING, &f.mean_value, "mean per channel, B,G,R", 0},
      {"raw_scale", CREMA_FLAG_FLOAT, &f.raw_scale, "pixels in [0, 1] are multiplied by this first", 0},
      {"input_scale", CREMA_FLAG_FLOAT, &f.input_scale, "multiply after the mean", 0},
      {"channel_swap", CREMA_FLAG_STRING, &f.channel_swap, "2,1,0 for BGR nets (Caffe's), 0,1,2 for RGB nets",
       0},
      {"center_only", CREMA_FLAG_BOOL, &f.center_only, "Caffe's flag; the centre crop is the default", 0},
      {"oversample", CREMA_FLAG_BOOL, &f.oversample, "average 10 crops (corners, centre, mirrored)", 0},
      {"top", CREMA_FLAG_INT, &f.top, "how many classes to print per image", 0},
      {"json", CREMA_FLAG_BOOL, &f.json, "one JSON object per image on stdout", 0},
      {"list", CREMA_FLAG_STRING, &f.list, "file with one image path per line", 0},
      {"batch", CREMA_FLAG_INT, &f.batch, "images per forward pass", 0},
  };
  const int n_flags = (int)(sizeof flags / sizeof flags[0]);
  static const char usage[] =
      "usage: crema classify (--run RUN_DIR | --model DEPLOY --weights W) [flags] IMAGE... | --list FILE\n\n";
  enum { MAX_POS = 4096 };
  char **pos = malloc(sizeof(char *) * MAX_POS);
  if (!pos) return 1;
  int n_pos = 0;
  int rc = crema_flags_command(argc, argv, usage, flags, n_flags, pos, 0, MAX_POS, &n_pos);
  if (rc >= 0) {
    free(pos);
    return rc;
  }
  if (!f.run && (!f.model || !f.weights)) {
    free(pos);
    return crema_flags_missing("--run RUN_DIR, or --model and --weights,", usage, flags, n_flags);
  }
  if ((n_pos == 0) == (f.list == NULL)) {
    free(pos);
    fprintf(stderr, "error: give images on the command line or --list FILE (one of the two)\n");
    return 2;
  }
  if (f.top <= 0 || f.batch <= 0 || f.batch > 4096) {
    free(pos);
    fprintf(stderr, "error: --top must be > 0 and --batch in 1..4096\n");
    return 2;
  }
  crema_log_set_min_level(CREMA_LOG_WARNING); /* building a net logs every layer */
  crema_error err = {{0}};
  char model[PATH_MAX], weights[PATH_MAX], labels[PATH_MAX], pre[PATH_MAX];
  char **images = pos, **listed = NULL, **names = NULL;
  int n_images = n_pos, n_listed = 0, n_names = 0, status = 0;
  crema_net *net = NULL;
  crema_preprocess *pp = NULL;
  float *input = NULL, *avg = NULL;
  int *ok = NULL, *idx = NULL;
  crema_error *errs = NULL;
  if (f.run) {
    snprintf(model, sizeof model, "%s/deploy.prototxt", f.run);
    snprintf(weights, sizeof weights, "%s/best.caffemodel", f.run);
    if (access(weights, R_OK)) {
      /* no best yet (e.g. interrupted before the first test): the newest snapshot */
      char cwd[PATH_MAX];
      if (getcwd(cwd, sizeof cwd) && chdir(f.run) == 0) {
        char *s = ft_newest_snapshot();
        if (s) {
          snprintf(weights, sizeof weights, "%s/%.*s.caffemodel", f.run,
                   (int)(strlen(s) - strlen(".solverstate")), s);
          free(s);
        }
        if (chdir(cwd)) status = 1;
      }
    }
    snprintf(labels, sizeof labels, "%s/labels.txt", f.run);
    snprintf(pre, sizeof pre, "%s/preprocess.prototxt", f.run);
  } else {
    snprintf(model, sizeof model, "%s", f.model);
    snprintf(weights, sizeof weights, "%s", f.weights);
    snprintf(labels, sizeof labels, "%s", f.labels ? f.labels : "");
    snprintf(pre, sizeof pre, "%s", f.preprocess ? f.preprocess : "");
  }
  if (f.list) {
    if (read_list(f.list, &listed, &n_listed, &err)) goto fail;
    images = listed;
    n_images = n_listed;
    if (!n_images) {
      crema_fail(&err, "%s lists no images", f.list);
      goto fail;
    }
  }
  if (labels[0] && ft_read_labels(labels, &names, &n_names, &err)) goto fail;
  crema_net_options no = {.phase = CREMA__PHASE__TEST, .seed = 1, .source = model};
  /* forward only: BatchNorm, Scale and ReLUs run inside the convolutions */
  if (crema_net_load(model, &no, &net, &err) || crema_net_copy_trained_layers_from_file(net, weights, &err) ||
      crema_net_fuse(net, true, &err))
    goto fail;
  if (crema_net_num_inputs(net) < 1 || crema_net_num_outputs(net) < 1) {
    crema_fail(&err, "%s: a deploy net needs an Input layer and an output", model);
    goto fail;
  }
  crema_blob *in = crema_net_input(net, 0);
  if (in->num_axes != 4) {
    crema_fail(&err, "%s: the input \"%s\" is not 4-d (N, C, H, W)", model, crema_net_input_name(net, 0));
    goto fail;
  }
  const int c = in->shape[1], h = in->shape[2], w = in->shape[3];
  if (pre[0] ? crema_preprocess_load(pre, &pp, &err) : preprocess_from_flags(&f, c, h, w, &pp, &err))
    goto fail;
  if (f.oversample && !crema_preprocess_param(pp)->crop_size) {
    crema_fail(&err,
               "--oversample takes 10 crops, but this model's preprocessing has no crop (its images are used "
               "whole); leave --oversample out");
    goto fail;
  }
  const int crops = f.oversample ? CREMA_OVERSAMPLE_CROPS : 1;
  const int batch = (int)(f.batch < n_images ? f.batch : n_images);
  const size_t per = (size_t)c * h * w;
  input = malloc(sizeof(float) * per * (size_t)crops * (size_t)batch);
  ok = calloc((size_t)batch, sizeof *ok);
  errs = calloc((size_t)batch, sizeof *errs);
  if (!input || !ok || !errs) {
    crema_fail(&err, "out of memory for a batch of %d images", batch);
    goto fail;
  }
  if (crema_blob_reshape4(in, batch * crops, c, h, w, &err) || crema_net_reshape(net, &err)) goto fail;
  const crema_blob *out = crema_net_output(net, 0);
  const int n_cls = (int)(out->count / (size_t)(batch * crops));
  const int k = (int)(f.top < n_cls ? f.top : n_cls);
  avg = malloc(sizeof(float) * (size_t)n_cls);
  idx = malloc(sizeof(int) * (size_t)k);
  if (!avg || !idx) {
    crema_fail(&err, "out of memory");
    goto fail;
  }
  if (names && n_names != n_cls)
    CREMA_WARN("%s has %d names but the net has %d outputs", labels, n_names, n_cls);
  for (int b0 = 0; b0 < n_images; b0 += batch) {
    const int nb = n_images - b0 < batch ? n_images - b0 : batch;
#pragma omp parallel for schedule(dynamic, 1)
    for (int i = 0; i < nb; i++) {
      int oc, oh, ow;
      crema_image img;
      ok[i] = 0;
      if (crema_image_decode_file(images[b0 + i], crema_preprocess_decode_mode(pp), &img, &errs[i])) continue;
      if (crema_preprocess_shape(pp, img.channels, img.height, img.width, &oc, &oh, &ow, &errs[i]) == 0) {
        if (oc != c || oh != h || ow != w)
          crema_fail(&errs[i], "%s: preprocessed to %d x %d x %d but the net takes %d x %d x %d",
                     images[b0 + i], oc, oh, ow, c, h, w);
        else if (crema_preprocess_image(pp, &img, f.oversample, input + (size_t)i * crops * per, per * crops,
                                        &errs[i]) == 0)
          ok[i] = 1;
        else
          crema_error_prefix(&errs[i], "%s", images[b0 + i]);
      }
      crema_image_free(&img);
    }
    memcpy(in->data, input, sizeof(float) * per * (size_t)crops * (size_t)nb);
    if (nb < batch)
      memset(in->data + per * crops * nb, 0, sizeof(float) * per * crops * (size_t)(batch - nb));
    if (crema_net_forward(net, NULL, &err)) goto fail;
    for (int i = 0; i < nb; i++) {
      if (!ok[i]) {
        fprintf(stderr, "error: %s\n", errs[i].msg);
        status = 1;
        continue;
      }
      for (int j = 0; j < n_cls; j++) {
        double s = 0;
        for (int r = 0; r < crops; r++) s += out->data[((size_t)i * crops + r) * n_cls + j];
        avg[j] = (float)(s / crops);
      }
      top_k(avg, n_cls, k, idx);
      if (f.json) {
        printf("{\"image\": ");
        json_string(stdout, images[b0 + i]);
        printf(", \"top\": [");
        for (int r = 0; r < k; r++) {
          printf("%s{\"index\": %d, \"label\": ", r ? ", " : "", idx[r]);
          char num[16];
          snprintf(num, sizeof num, "%d", idx[r]);
          json_string(stdout, names && idx[r] < n_names ? names[idx[r]] : num);
          printf(", \"prob\": %.6g}", avg[idx[r]]);
        }
        printf("]}\n");
      } else {
        printf("%s\n", images[b0 + i]);
        for (int r = 0; r < k; r++) {
          if (names && idx[r] < n_names)
            printf("  %.4f  %s\n", avg[idx[r]], names[idx[r]]);
          else
            printf("  %.4f  %d\n", avg[idx[r]], idx[r]);
        }
      }
    }
    fflush(stdout);
  }
  goto done;
fail:
  fprintf(stderr, "error: %s\n", err.msg);
  status = 1;
done:
  crema_net_free(net);
  crema_preprocess_free(pp);
  free(input);
  free(avg);
  free(idx);
  free(ok);
  free(errs);
  ft_free_labels(names, n_names);
  ft_free_labels(listed, n_listed);
  free(pos);
  return status;
}
