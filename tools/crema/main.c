/* main.c -- `crema COMMAND [FLAGS]`: dispatch to the subcommands, usage, --version. */
#include <stdio.h>
#include <string.h>

#include "crema/commands.h"

typedef struct command {
  const char *name;
  int (*run)(int argc, char **argv);
  const char *summary;
} command;

static const command COMMANDS[] = {
    /* rows: {"name", crema_cmd_name, "one-line summary"}, in the order `crema --help` lists them */
    {"train", crema_cmd_train, "train or finetune a net with a solver (Caffe's caffe train)"},
    {"test", crema_cmd_test, "score a trained net: averaged outputs, confusion matrix"},
    {"forward", crema_cmd_forward, "one forward pass: .npy inputs in, .npy blobs out"},
    {"time", crema_cmd_time, "per-layer forward/backward timings (Caffe's caffe time)"},
    {"info", crema_cmd_info, "what a Caffe file is and what it holds (net, solver, caffemodel, ...)"},
    {"upgrade", crema_cmd_upgrade, "legacy nets/solvers to the current format; prototxt <-> binary"},
    {"finetune", crema_cmd_finetune, "finetune a model on an image folder, into a run folder"},
    {"classify", crema_cmd_classify, "top-K classes of images with a finetuned or any Caffe classifier"},
    {"export", crema_cmd_export, "a snapshot as files to deploy: deploy net, folded BatchNorm, ONNX"},
    {"plot", crema_cmd_plot, "training curves from metrics CSVs and logs (crema's or Caffe's), SVG or PNG"},
    {"lr-find", crema_cmd_lr_find,
     "learning-rate range test: loss against an exponential lr ramp, a suggested rate"},
    {"report", crema_cmd_report, "one self-contained HTML page about a run: curves, confusion matrix, costs"},
    {NULL, NULL, NULL},
};

static void usage(FILE *out) {
  fprintf(out,
          "crema %s -- Caffe-compatible finetuning on the CPU\n\n"
          "usage: crema COMMAND [FLAGS]   (crema COMMAND --help for its flags)\n\ncommands:\n",
          CREMA_VERSION);
  for (size_t i = 0; COMMANDS[i].name; i++)
    fprintf(out, "  %-10s %s\n", COMMANDS[i].name, COMMANDS[i].summary);
}

int main(int argc, char **argv) {
  if (argc < 2) {
    usage(stderr);
    return 2;
  }
  const char *cmd = argv[1];
  if (!strcmp(cmd, "--help") || !strcmp(cmd, "-help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
    usage(stdout);
    return 0;
  }
  if (!strcmp(cmd, "--version") || !strcmp(cmd, "-version") || !strcmp(cmd, "version")) {
    printf("crema %s\n", CREMA_VERSION);
    return 0;
  }
  for (size_t i = 0; COMMANDS[i].name; i++)
    if (!strcmp(cmd, COMMANDS[i].name)) return COMMANDS[i].run(argc - 1, argv + 1);
  fprintf(stderr, "error: unknown command \"%s\"; valid commands:", cmd);
  for (size_t i = 0; COMMANDS[i].name; i++) fprintf(stderr, "%s %s", i ? "," : "", COMMANDS[i].name);
  fprintf(stderr, "\n");
  return 2;
}
