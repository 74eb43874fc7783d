/* cmd_forward.c -- `crema forward`: one forward pass of a net, NumPy arrays in and out.
 *
 *   crema forward --model NET.prototxt [--weights W.caffemodel | --random-weights]
 *                 [--phase TEST|TRAIN] [--seed N] [--input NAME=FILE.npy ...]
 *                 [--output BLOB=FILE.npy ...] [--save-weights OUT.caffemodel]
 *
 * An input of another shape than the prototxt's reshapes the net (as pycaffe's reshape does);
 * inputs not given get seeded N(0, 1) values. Without --output, each net output's shape and
 * first values are printed. --save-weights writes exactly the weights the pass used, so
 * another framework can load the same model and compare. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/log.h"
#include "base/rng.h"
#include "common/flags.h"
#include "common/npy.h"
#include "common/tool.h"
#include "crema/commands.h"
#include "net/net.h"

#define MAX_PAIRS 64

typedef struct name_file {
  char *name; /* points into argv (the '=' replaced) */
  const char *file;
} name_file;

/* Takes every --input/--output (any gflags spelling) out of argv into pairs, leaving the
 * other arguments for the flag parser. Returns -1 with a message on a malformed pair. */
static int take_pairs(int *argc, char **argv, const char *flag, name_file *pairs, int *n, crema_error *err) {
  int out = 1;
  size_t fl = strlen(flag);
  for (int i = 1; i < *argc; i++) {
    char *a = argv[i];
    const char *name = a[0] == '-' ? a + (a[1] == '-' ? 2 : 1) : NULL;
    if (!name || strncmp(name, flag, fl) || (name[fl] != '\0' && name[fl] != '=')) {
      argv[out++] = a;
      continue;
    }
    char *value;
    if (name[fl] == '=') {
      value = (char *)name + fl + 1;
    } else {
      if (i + 1 >= *argc) return crema_fail(err, "flag --%s needs a value NAME=FILE.npy", flag);
      value = argv[++i];
    }
    char *eq = strchr(value, '=');
    if (!eq || eq == value || !eq[1])
      return crema_fail(err, "flag --%s expects NAME=FILE.npy, got \"%s\"", flag, value);
    if (*n >= MAX_PAIRS) return crema_fail(err, "too many --%s flags (at most %d)", flag, MAX_PAIRS);
    *eq = '\0';
    pairs[*n].name = value;
    pairs[*n].file = eq + 1;
    (*n)++;
  }
  *argc = out;
  return 0;
}

static int parse_phase(const char *s, Crema__Phase *out, crema_error *err) {
  if (!strcasecmp(s, "TEST"))
    *out = CREMA__PHASE__TEST;
  else if (!strcasecmp(s, "TRAIN"))
    *out = CREMA__PHASE__TRAIN;
  else
    return crema_fail(err, "--phase must be TRAIN or TEST, got \"%s\"", s);
  return 0;
}

static void list_names(const crema_net *net, bool inputs, char *buf, size_t size) {
  size_t used = 0;
  int n = inputs ? crema_net_num_inputs(net) : crema_net_num_blobs(net);
  buf[0] = '\0';
  for (int i = 0; i < n && used < size; i++)
    used += (size_t)snprintf(buf + used, size - used, "%s%s", used ? ", " : "",
                             inputs ? crema_net_input_name(net, i) : crema_net_blob_name(net, i));
  if (!used) snprintf(buf, size, "(none)");
}

static int find_input(const crema_net *net, const char *name) {
  for (int i = 0; i < crema_net_num_inputs(net); i++)
    if (!strcmp(crema_net_input_name(net, i), name)) return i;
  return -1;
}

/* Reads the given inputs (reshaping the net when a shape differs) and fills the others. */
static int set_inputs(crema_net *net, const name_file *in, int n_in, uint64_t seed, crema_error *err) {
  bool reshape = false;
  crema_blob *tmp = crema_blob_new();
  if (!tmp) return crema_fail(err, "out of memory");
  for (int k = 0; k < n_in; k++) {
    int i = find_input(net, in[k].name);
    if (i < 0) {
      char names[1024];
      list_names(net, true, names, sizeof names);
      crema_blob_free(tmp);
      return crema_fail(err,
                        "--input %s: the net has no input named \"%s\"; its inputs (Input layer tops): %s",
                        in[k].name, in[k].name, names);
    }
    if (crema_npy_read(in[k].file, tmp, err)) {
      crema_blob_free(tmp);
      return crema_error_prefix(err, "--input %s", in[k].name);
    }
    crema_blob *b = crema_net_input(net, i);
    if (!crema_blob_same_shape(b, tmp)) {
      char s1[128], s2[128];
      CREMA_INFO("Input %s: reshaping from %s to %s (the shape of %s)", in[k].name,
                 crema_blob_shape_string(b, s1, sizeof s1), crema_blob_shape_string(tmp, s2, sizeof s2),
                 in[k].file);
      if (crema_blob_reshape_like(b, tmp, err)) {
        crema_blob_free(tmp);
        return -1;
      }
      reshape = true;
    }
    memcpy(b->data, tmp->data, b->count * sizeof(float));
  }
  crema_blob_free(tmp);
  for (int i = 0; i < crema_net_num_inputs(net); i++) {
    bool given = false;
    for (int k = 0; k < n_in; k++) given = given || !strcmp(in[k].name, crema_net_input_name(net, i));
    if (given) continue;
    crema_blob *b = crema_net_input(net, i);
    crema_rng r;
    crema_rng_seed(&r, seed, 0x1a9u + (uint64_t)i);
    for (size_t j = 0; j < b->count; j++) b->data[j] = crema_rng_gaussian(&r, 0.0f, 1.0f);
    char s[128];
    CREMA_INFO("Input %s (%s) not given: filled with N(0, 1) values (seed %llu)",
               crema_net_input_name(net, i), crema_blob_shape_string(b, s, sizeof s),
               (unsigned long long)seed);
  }
  if (reshape && crema_net_reshape(net, err)) return -1;
  return 0;
}

static void print_outputs(const crema_net *net) {
  for (int i = 0; i < crema_net_num_outputs(net); i++) {
    const crema_blob *b = crema_net_output(net, i);
    char s[128];
    printf("%s: shape %s:", crema_net_output_name(net, i), crema_blob_shape_string(b, s, sizeof s));
    size_t n = b->count < 10 ? b->count : 10;
    for (size_t j = 0; j < n; j++) printf(" %.6g", (double)b->data[j]);
    printf("%s\n", b->count > n ? " ..." : "");
  }
}

static void usage(FILE *out, const crema_flag *flags, int n_flags) {
  fprintf(
      out,
      "usage: crema forward --model NET.prototxt [--weights W.caffemodel | --random-weights]\n"
      "                     [--input NAME=FILE.npy ...] [--output BLOB=FILE.npy ...] [flags]\n"
      "One forward pass. Arrays are NumPy .npy files (float32, C order).\n"
      "  --input NAME=FILE.npy   data for the Input top NAME (repeatable); another shape reshapes the net\n"
      "  --output BLOB=FILE.npy  write blob BLOB after the pass (repeatable); without it, print outputs\n");
  crema_flags_print(out, flags, n_flags);
}

int crema_cmd_forward(int argc, char **argv) {
  crema_tool_init(argc + 1, argv - 1); /* argv is main's argv + 1 */
  const char *model = NULL, *weights = NULL, *phase_name = "TEST", *save = NULL;
  bool random_weights = false;
  long seed = 1;
  crema_flag flags[] = {
      {"model", CREMA_FLAG_STRING, &model, "the net prototxt (required)", 0},
      {"weights", CREMA_FLAG_STRING, &weights, "caffemodel to copy weights from, by layer name", 0},
      {"random-weights", CREMA_FLAG_BOOL, &random_weights,
       "seeded weights that keep activations in range (for deploy nets without fillers)", 0},
      {"phase", CREMA_FLAG_STRING, &phase_name, "TEST or TRAIN", 0},
      {"seed", CREMA_FLAG_INT, &seed, "seed for fillers, random weights and inputs not given", 0},
      {"save-weights", CREMA_FLAG_STRING, &save, "write the weights used to this caffemodel", 0},
  };
  const int n_flags = (int)(sizeof flags / sizeof flags[0]);
  name_file inputs[MAX_PAIRS], outputs[MAX_PAIRS];
  int n_in = 0, n_out = 0;
  crema_error err;
  if (take_pairs(&argc, argv, "input", inputs, &n_in, &err) ||
      take_pairs(&argc, argv, "output", outputs, &n_out, &err)) {
    fprintf(stderr, "error: %s\n", err.msg);
    return 2;
  }
  char *pos[4];
  int n_pos = 0;
  int rc = crema_flags_parse(argc, argv, 1, flags, n_flags, pos, 4, &n_pos, &err);
  if (rc == 1) {
    usage(stdout, flags, n_flags);
    return 0;
  }
  if (rc) {
    fprintf(stderr, "error: %s\n", err.msg);
    return 2;
  }
  if (n_pos) {
    fprintf(stderr, "error: unexpected argument \"%s\"\n", pos[0]);
    return 2;
  }
  if (!model) {
    fprintf(stderr, "error: --model is required\n");
    usage(stderr, flags, n_flags);
    return 2;
  }
  if (weights && random_weights) {
    fprintf(stderr, "error: give --weights or --random-weights, not both\n");
    return 2;
  }
  crema_net_options opt = {0};
  if (parse_phase(phase_name, &opt.phase, &err)) {
    fprintf(stderr, "error: %s\n", err.msg);
    return 2;
  }
  opt.seed = (uint64_t)seed;
  opt.source = model;
  crema_tool_log_blas();

  crema_net *net = NULL;
  int status = 1;
  if (crema_net_load(model, &opt, &net, &err)) goto fail;
  if (weights && crema_net_copy_trained_layers_from_file(net, weights, &err)) goto fail;
  if (random_weights) {
    crema_net_fill_random_weights(net, (uint64_t)seed);
    CREMA_INFO("Filled every parameter with random weights (seed %ld)", seed);
  }
  if (set_inputs(net, inputs, n_in, (uint64_t)seed, &err)) goto fail;
  float loss = 0.0f;
  if (crema_net_forward(net, &loss, &err)) goto fail;
  bool has_loss = false;
  for (int i = 0; i < crema_net_num_blobs(net); i++)
    has_loss = has_loss || crema_net_blob_loss_weight(net, i) != 0.0f;
  if (has_loss) CREMA_INFO("Loss: %g", (double)loss);
  for (int k = 0; k < n_out; k++) {
    const crema_blob *b = crema_net_blob_by_name(net, outputs[k].name);
    if (!b) {
      char names[2048];
      list_names(net, false, names, sizeof names);
      crema_fail(&err, "--output %s: the net has no blob named \"%s\"; its blobs: %s", outputs[k].name,
                 outputs[k].name, names);
      goto fail;
    }
    if (crema_npy_write(outputs[k].file, b, &err)) goto fail;
    char s[128];
    CREMA_INFO("Wrote %s (%s) to %s", outputs[k].name, crema_blob_shape_string(b, s, sizeof s),
               outputs[k].file);
  }
  if (!n_out) print_outputs(net);
  if (save) {
    if (crema_net_save_weights(net, save, &err)) goto fail;
    CREMA_INFO("Saved the weights to %s", save);
  }
  status = 0;
fail:
  if (status) fprintf(stderr, "error: %s\n", err.msg);
  crema_net_free(net);
  return status;
}
