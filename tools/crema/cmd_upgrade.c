/* cmd_upgrade.c -- `crema upgrade IN OUT`: legacy Caffe nets and solvers to the current
 * format, and text <-> binary, like Caffe's upgrade_net_proto_text / _binary and
 * upgrade_solver_proto_text in one command. */
#include <stdio.h>
#include <string.h>

#include "common/flags.h"
#include "crema/commands.h"
#include "proto/hdf5_io.h"
#include "proto/io.h"
#include "proto/raw_blobs.h"
#include "proto/upgrade.h"

static const char USAGE[] =
    "usage: crema upgrade IN OUT [--type=net|solver] [--format=text|binary] [--fp16]\n\n"
    "Reads a net (prototxt or caffemodel) or a solver (prototxt), upgrades legacy forms\n"
    "(V1 'layers', enum layer types, blobs_lr/weight_decay, data-layer transform fields,\n"
    "input/input_dim, solver_type) as Caffe does, and writes OUT: as text when OUT ends in\n"
    ".prototxt, .pbtxt or .txt, otherwise binary. Net or solver is detected from the content.\n"
    "A caffemodel named *.h5 is read or written in Caffe's HDF5 layout (data/<layer>/<i>), so\n"
    "this also converts between .caffemodel and .caffemodel.h5. Half-precision blobs (NVIDIA\n"
    "Caffe's raw_data FLOAT16) are read as floats; --fp16 writes every blob that way instead,\n"
    "halving the file (OpenCV's dnn and NVIDIA Caffe read it; BVLC Caffe does not).\n\n";

/* Reads IN as a net or a solver: the forced kind, or the one that parses (net first). */
static int read_in(const char *path, const char *type, ProtobufCMessage **out, bool *is_net,
                   crema_error *err) {
  crema_error net_err = {{0}}, solver_err = {{0}};
  if (crema_hdf5_is_h5_name(path) && strcmp(type, "solver")) { /* a .caffemodel.h5 */
    *is_net = true;
    return crema_hdf5_read_net(path, (Crema__NetParameter **)out, err);
  }
  if (strcmp(type, "solver") && !crema_read_message(path, &crema__net_parameter__descriptor, out, &net_err)) {
    const Crema__NetParameter *n = (const Crema__NetParameter *)*out;
    /* A solver file read as a net parses only if it has no solver fields; an empty-looking
     * "net" is more likely a solver, so try that too before settling. */
    if (n->n_layer || n->n_layers || n->n_input || !strcmp(type, "net")) {
      *is_net = true;
      return 0;
    }
    crema_message_free(*out);
    *out = NULL;
  }
  if (strcmp(type, "net") &&
      !crema_read_message(path, &crema__solver_parameter__descriptor, out, &solver_err)) {
    *is_net = false;
    return 0;
  }
  if (!strcmp(type, "solver") || (net_err.msg[0] == '\0' && solver_err.msg[0])) {
    *err = solver_err;
  } else if (net_err.msg[0]) {
    *err = net_err;
  } else {
    crema_fail(err, "%s: holds neither layers nor solver settings", path);
  }
  return -1;
}

int crema_cmd_upgrade(int argc, char **argv) {
  const char *type = "", *format = "";
  bool fp16 = false;
  crema_flag flags[] = {
      {"fp16", CREMA_FLAG_BOOL, &fp16, "store the blobs as half precision (raw_data FLOAT16)", 0},
      {"type", CREMA_FLAG_STRING, &type, "treat IN as a net or a solver (default: detect)", 0},
      {"format", CREMA_FLAG_STRING, &format, "write OUT as text or binary (default: by OUT's extension)", 0},
  };
  char *pos[2];
  int n_pos = 0;
  int rc =
      crema_flags_command(argc, argv, USAGE, flags, (int)(sizeof flags / sizeof flags[0]), pos, 2, 2, &n_pos);
  if (rc >= 0) return rc;
  if (*type && strcmp(type, "net") && strcmp(type, "solver")) {
    fprintf(stderr, "error: --type=%s: use net or solver\n", type);
    return 2;
  }
  if (*format && strcmp(format, "text") && strcmp(format, "binary")) {
    fprintf(stderr, "error: --format=%s: use text or binary\n", format);
    return 2;
  }
  const char *in = pos[0], *out = pos[1];
  crema_error err = {{0}};
  ProtobufCMessage *m = NULL;
  bool is_net = true, changed = false;
  if (read_in(in, type, &m, &is_net, &err)) {
    fprintf(stderr, "error: %s\n", err.msg);
    return 1;
  }
  if (is_net && !(rc = crema_net_decode_raw_blobs((Crema__NetParameter *)m, &err)))
    rc = crema_upgrade_net((Crema__NetParameter *)m, in, &changed, &err);
  else
    rc = crema_upgrade_solver((Crema__SolverParameter *)m, &changed, &err);
  if (rc) {
    fprintf(stderr, "error: %s%s%s\n", is_net ? "" : in, is_net ? "" : ": ", err.msg);
    crema_message_free(m);
    return 1;
  }
  if (fp16 && !is_net) {
    fprintf(stderr, "error: --fp16 applies to nets with weights (caffemodels), and %s is a solver\n", in);
    crema_message_free(m);
    return 2;
  }
  if (fp16 && crema_net_encode_fp16((Crema__NetParameter *)m, &err)) {
    fprintf(stderr, "error: %s\n", err.msg);
    crema_message_free(m);
    return 1;
  }
  bool text = *format ? !strcmp(format, "text") : crema_path_is_text(out);
  const bool h5 = is_net && !*format && crema_hdf5_is_h5_name(out);
  if (h5)
    rc = crema_hdf5_write_net(out, (const Crema__NetParameter *)m, &err);
  else
    rc = text ? crema_write_text_message(out, m, &err) : crema_write_binary_message(out, m, &err);
  crema_message_free(m);
  if (rc) {
    fprintf(stderr, "error: %s\n", err.msg);
    return 1;
  }
  printf("%s: %s %s; wrote %s (%s)\n", in, is_net ? "net" : "solver",
         changed ? "upgraded to the current format" : "already in the current format", out,
         h5     ? "HDF5"
         : text ? "text"
                : "binary");
  return 0;
}
