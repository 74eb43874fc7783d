/* crema.h -- crema's C API: run and finetune Caffe models inside your own program.
 *
 *   crema_model *m;
 *   if (crema_model_load_run("run/export", &m) != CREMA_OK) {      deploy + weights + preprocess
 *     fprintf(stderr, "error: %s\n", crema_last_error());
 *     return 1;
 *   }
 *   crema_class top[5];
 *   int n;
 *   if (crema_model_classify_file(m, "cat.jpg", 5, top, &n) == CREMA_OK)
 *     for (int i = 0; i < n; i++) printf("%.4f %s\n", top[i].prob, top[i].label);
 *   crema_model_free(m);
 *
 * Build with `pkg-config --cflags --libs crema`, or in CMake with find_package(crema) and
 * target_link_libraries(app PRIVATE crema::crema).
 *
 * Guarantees
 * - Errors: every function that can fail returns a crema_status (CREMA_OK = 0). The library
 *   never exits, aborts or prints errors. crema_strerror(status) names the kind of failure;
 *   crema_last_error() gives the sentence for the last failure on the calling thread (what,
 *   where -- file:line:col, layer, blob -- and what to do).
 * - Ownership: every object made by a *_load / *_create function is freed by the matching
 *   *_free (NULL is accepted). Strings and arrays returned by the library are borrowed: they
 *   stay valid until the object they came from is freed (blob data: until the next reshape).
 *   The library copies what it is given; the caller keeps ownership of its arguments.
 * - Threads: the library has no hidden shared state apart from the log settings (level and
 *   callback). A crema_model or crema_trainer may be used by one thread at a time; different
 *   objects may be used from different threads at the same time (several models and trainers
 *   on several threads). Only crema_trainer_request may be called from another thread (or a
 *   signal handler) while the trainer runs. Callbacks run on the thread that called
 *   crema_trainer_run.
 * - Stability: within a major version (the soname's number) functions and enum values are
 *   only added, none is removed or changes meaning, and the structs (crema_class,
 *   crema_param_info, crema_train_options, crema_train_callbacks) keep their layout: a new
 *   option comes as a new function. Zero-initialise crema_train_options: zero means "default"
 *   for every field.
 * - Logging: the library writes Caffe/glog-style progress lines on stderr (what `crema
 *   train` prints); crema_set_log_level turns them down or off, crema_set_log_callback sends
 *   them elsewhere. */
#ifndef CREMA_CREMA_H
#define CREMA_CREMA_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define CREMA_API __attribute__((visibility("default")))
#else
#define CREMA_API
#endif

#define CREMA_API_VERSION_MAJOR 0
#define CREMA_API_VERSION_MINOR 1
/* Most axes a blob can have. */
#define CREMA_MAX_DIMS 8

/* ------------------------------------------------------------------ status, errors, log */

typedef enum crema_status {
  CREMA_OK = 0,
  CREMA_ERR_ARGUMENT = 1,  /* a NULL pointer, a negative size, an index out of range */
  CREMA_ERR_IO = 2,        /* a file or folder cannot be read or written */
  CREMA_ERR_FORMAT = 3,    /* a prototxt, caffemodel, solver or image is malformed or unsupported */
  CREMA_ERR_NOT_FOUND = 4, /* no input, blob or layer of that name */
  CREMA_ERR_SHAPE = 5,     /* sizes do not agree (input data, weights, image vs. input) */
  CREMA_ERR_MEMORY = 6,    /* out of memory */
  CREMA_ERR_RUNTIME = 7    /* a layer failed while running, or training diverged (NaN/Inf) */
} crema_status;

/* A short fixed description of a status ("file cannot be read or written", ...); never NULL,
 * static storage. Unknown values give "unknown status". */
CREMA_API const char *crema_strerror(crema_status status);

/* The message of the last failing call on the calling thread (thread-local storage), e.g.
 * `lenet.prototxt:12:5: unknown field "num_ouput" in convolution_param`. Successful calls
 * leave it unchanged. "" before any failure. Valid until the next failing call on the thread. */
CREMA_API const char *crema_last_error(void);

/* The library's version, e.g. "0.1.0" (static storage). */
CREMA_API const char *crema_version(void);

/* Log lines on stderr: 0 = information and up (default), 1 = warnings and errors, 2 = errors,
 * 3 = nothing. Process-wide: set it before starting threads that use the library. */
CREMA_API void crema_set_log_level(int level);
/* Sends log lines to fn instead of stderr (NULL: back to stderr). fn gets the severity (0 info,
 * 1 warning, 2 error) and the whole line without its newline, on whichever thread logged it
 * (so it must be thread-safe when several objects run at once). Process-wide, like the level. */
CREMA_API void crema_set_log_callback(void (*fn)(void *user, int level, const char *line), void *user);

/* ------------------------------------------------------------------ models (nets) */

typedef struct crema_model crema_model;

typedef enum crema_phase { CREMA_PHASE_TEST = 0, CREMA_PHASE_TRAIN = 1 } crema_phase;

/* Loads a net from a prototxt file (text, or binary NetParameter; old V1 nets are upgraded)
 * and, when weights is not NULL, copies the weights of a caffemodel into it by layer name
 * (Caffe's CopyTrainedLayersFrom: layers missing from the file keep their fillers; a shape
 * mismatch is CREMA_ERR_SHAPE and names the layer). The phase picks the layers (include /
 * exclude rules) and their behaviour (Dropout, BatchNorm). Data layers read their sources when
 * built. On failure *out is NULL. Free with crema_model_free. */
CREMA_API crema_status crema_model_load(const char *prototxt_path, const char *weights_path,
                                        crema_phase phase, crema_model **out);
/* The same from prototxt text held in memory (NUL-terminated). Errors name "<string>". */
CREMA_API crema_status crema_model_load_string(const char *prototxt_text, const char *weights_path,
                                               crema_phase phase, crema_model **out);
/* Loads an exported run folder (what `crema export` and `crema finetune` write), TEST phase:
 * the net is deploy.prototxt (else the folder's only .prototxt other than preprocess,
 * solver and train_val files); the weights are weights.caffemodel, model.caffemodel or
 * best.caffemodel, else the folder's only .caffemodel; preprocess.prototxt and labels.txt
 * are read when present (see crema_model_load_preprocess / crema_model_load_labels). */
CREMA_API crema_status crema_model_load_run(const char *run_dir, crema_model **out);
/* Copies more weights by layer name (several files apply in order). */
CREMA_API crema_status crema_model_load_weights(crema_model *m, const char *caffemodel_path);
/* Writes the model's weights as a caffemodel (temporary file + rename: never half-written). */
CREMA_API crema_status crema_model_save_weights(const crema_model *m, const char *caffemodel_path);
CREMA_API void crema_model_free(crema_model *m);

/* Inputs are the tops of Input layers; outputs are the blobs no layer consumes. Names are
 * borrowed; an index out of range gives NULL. */
CREMA_API int crema_model_num_inputs(const crema_model *m);
CREMA_API const char *crema_model_input_name(const crema_model *m, int i);
CREMA_API int crema_model_num_outputs(const crema_model *m);
CREMA_API const char *crema_model_output_name(const crema_model *m, int i);
/* Layers as built (Caffe's inserted Split layers included), with their type strings. */
CREMA_API int crema_model_num_layers(const crema_model *m);
CREMA_API const char *crema_model_layer_name(const crema_model *m, int i);
CREMA_API const char *crema_model_layer_type(const crema_model *m, int i);
/* Every blob of the net (inputs, activations, outputs). */
CREMA_API int crema_model_num_blobs(const crema_model *m);
CREMA_API const char *crema_model_blob_name(const crema_model *m, int i);

/* A blob's shape: *ndim axes written to dims (CREMA_MAX_DIMS entries at most). */
CREMA_API crema_status crema_model_blob_shape(const crema_model *m, const char *blob, int *ndim,
                                              int dims[CREMA_MAX_DIMS]);
/* A blob's values (row-major, float32) and element count. The pointer is borrowed and valid
 * until the next reshape or crema_model_free; a forward pass overwrites the values. */
CREMA_API crema_status crema_model_blob_data(const crema_model *m, const char *blob, const float **data,
                                             size_t *count);

/* Parameter blobs, layer by layer in net order (weights, bias, BatchNorm statistics...). A blob
 * shared between layers (ParamSpec name) is listed at each. `data` is writable: changing it
 * changes the model. */
typedef struct crema_param_info {
  const char *layer; /* owning layer's name (borrowed) */
  int index;         /* blob index within the layer (0 = weights, 1 = bias, ...) */
  int ndim;
  int dims[CREMA_MAX_DIMS];
  size_t count;
  float *data;
} crema_param_info;
CREMA_API int crema_model_num_params(const crema_model *m);
CREMA_API crema_status crema_model_param(const crema_model *m, int i, crema_param_info *info);

/* Gives input `input` a new shape (e.g. another batch size or image size) and reshapes every
 * layer, as pycaffe's reshape + net.reshape(). Fails with CREMA_ERR_SHAPE when a layer cannot
 * take it (e.g. an InnerProduct whose input size would change). */
CREMA_API crema_status crema_model_reshape_input(crema_model *m, const char *input, int ndim,
                                                 const int *dims);
/* Copies count floats into input `input`; count must equal the input's element count. */
CREMA_API crema_status crema_model_set_input(crema_model *m, const char *input, const float *data,
                                             size_t count);

/* Runs every layer. */
CREMA_API crema_status crema_model_forward(crema_model *m);
/* Runs the layers from the first up to `name`: a layer name (that layer included), or else a
 * blob name (up to the last layer that writes the blob; in-place layers after it included). */
CREMA_API crema_status crema_model_forward_to(crema_model *m, const char *name);

/* ------------------------------------------------------------------ classification helpers */

typedef enum crema_pixel_format {
  CREMA_PIXEL_FORMAT_GRAY = 1, /* one byte per pixel */
  CREMA_PIXEL_FORMAT_RGB = 2,  /* three bytes per pixel, red first (most image libraries) */
  CREMA_PIXEL_FORMAT_BGR = 3,  /* three bytes per pixel, blue first (OpenCV) */
  CREMA_PIXEL_FORMAT_RGBA = 4, /* four bytes per pixel, alpha ignored */
  CREMA_PIXEL_FORMAT_BGRA = 5
} crema_pixel_format;

/* Sets how images become the first input: a text-format Caffe TransformationParameter
 * (`preprocess.prototxt`, as `crema finetune` and `crema export` write it: scale, mean_file
 * (relative to the file's folder) or mean_value, crop_size, plus crema's resize_height,
 * resize_width and channel_order). An image is converted to the input's channel count (grey
 * or colour), resized (bilinear, OpenCV's INTER_LINEAR rule) to resize_height x resize_width
 * -- or, when the file stores no size, to the mean file's size when cropping, else to the
 * input's size --, laid out channels-first in channel_order (BGR, Caffe's, by default), the
 * mean subtracted, scaled, and centre-cropped to crop_size: the input the TEST-phase data
 * layer gave the net in training. Without a preprocess file: resized to the input's size,
 * BGR, no mean, scale 1. */
CREMA_API crema_status crema_model_load_preprocess(crema_model *m, const char *preprocess_path);
/* Class names, one per line (line i = class i), for crema_class.label. */
CREMA_API crema_status crema_model_load_labels(crema_model *m, const char *labels_path);
CREMA_API int crema_model_num_labels(const crema_model *m);
CREMA_API const char *crema_model_label(const crema_model *m, int i); /* NULL when absent */

/* Preprocesses an 8-bit image of any size into item `item` of the batch of the first input.
 * `stride` is the bytes from one row to the next (0 = width * bytes per pixel). */
CREMA_API crema_status crema_model_set_input_image(crema_model *m, int item, const uint8_t *pixels, int width,
                                                   int height, size_t stride, crema_pixel_format format);
/* The same from an image file (JPEG, PNG, BMP, GIF, TGA, PNM). */
CREMA_API crema_status crema_model_set_input_image_file(crema_model *m, int item, const char *path);

typedef struct crema_class {
  int index;         /* class index */
  float prob;        /* the output's value (a probability after a Softmax) */
  const char *label; /* from labels.txt, or NULL (borrowed from the model) */
} crema_class;

/* The k best classes of batch item `item` of the output `output` (NULL = "prob" when the net
 * has it, else the first output), best first. *n gets min(k, classes). */
CREMA_API crema_status crema_model_top_k(const crema_model *m, const char *output, int item, int k,
                                         crema_class *out, int *n);
/* One image file in, top k out: sets the batch size to 1, preprocesses, runs the net. */
CREMA_API crema_status crema_model_classify_file(crema_model *m, const char *image_path, int k,
                                                 crema_class *out, int *n);

/* Caffe's oversampling (classifier.py): the four corner crops and the centre crop of the
 * resized image, and the same five mirrored, run as one batch of 10 (the batch size is set to
 * 10); the output averaged over the ten is ranked. Needs a preprocess file with crop_size. */
CREMA_API crema_status crema_model_classify_file_oversample(crema_model *m, const char *image_path, int k,
                                                            crema_class *out, int *n);

/* ------------------------------------------------------------------ training */

typedef struct crema_trainer crema_trainer;

/* What a callback (or crema_trainer_request) asks the training loop to do. */
typedef enum crema_action {
  CREMA_CONTINUE = 0,
  CREMA_STOP = 1,    /* stop after this iteration (a snapshot is written unless the solver's
                        snapshot_after_train is false); crema_trainer_run then returns CREMA_OK */
  CREMA_SNAPSHOT = 2 /* write <prefix>_iter_N.caffemodel + .solverstate now and carry on */
} crema_action;

typedef struct crema_train_callbacks {
  void *user; /* passed back to the callbacks */
  /* After each iteration's update: the iteration just trained, its smoothed loss and rate. */
  crema_action (*on_iteration)(void *user, int iter, float loss, float lr);
  /* After each test round: the test outputs of test net 0 (names borrowed for the call). */
  crema_action (*on_test)(void *user, int iter, int n, const char *const *names, const float *values);
} crema_train_callbacks;

typedef struct crema_train_options {
  const char *weights; /* caffemodel(s) to finetune from, comma-separated, by layer name; or NULL */
  const char *resume;  /* a .solverstate to resume from exactly; or NULL. Not with weights. */
  int max_iter;        /* > 0: overrides the solver's max_iter */
  int has_seed;        /* non-zero: seed overrides the solver's random_seed */
  int64_t seed;
  crema_train_callbacks callbacks;
  /* Layers to freeze (lr_mult 0; BatchNorm keeps its statistics), comma-separated: exact
   * names or prefixes ending in '*' (e.g. "conv1,conv2" or "conv*"); NULL = none. A pattern
   * that matches no layer is an error. */
  const char *freeze;
} crema_train_options;

/* Reads a solver prototxt (its net paths are relative to the working directory, as in Caffe),
 * builds the train and test nets, checks every setting and that the snapshot folder is
 * writable, then loads opt->weights or opt->resume. opt may be NULL (all defaults). Free with
 * crema_trainer_free. */
CREMA_API crema_status crema_trainer_create(const char *solver_path, const crema_train_options *opt,
                                            crema_trainer **out);
/* Trains to max_iter (or until a stop request or early stopping), snapshotting as the solver
 * says, then runs the final test. Returns CREMA_ERR_RUNTIME when the loss or a gradient
 * becomes NaN/Inf (the message names the iteration and layer); the last snapshot stays. May
 * be called again after a stop to continue. */
CREMA_API crema_status crema_trainer_run(crema_trainer *t);
/* Asks the running loop to stop or snapshot at the next iteration (or test batch). Safe from
 * any thread and from a signal handler. */
CREMA_API void crema_trainer_request(crema_trainer *t, crema_action action);
/* Writes a snapshot now (when not running). */
CREMA_API crema_status crema_trainer_snapshot(crema_trainer *t);
/* The train net's weights as a caffemodel (temporary file + rename). */
CREMA_API crema_status crema_trainer_save_weights(const crema_trainer *t, const char *caffemodel_path);
/* Iterations done so far; whether the last run stopped early (request or early stopping). */
CREMA_API int crema_trainer_iter(const crema_trainer *t);
CREMA_API int crema_trainer_stopped_early(const crema_trainer *t);
/* The last test round's value of test-net-0 output `name` (e.g. "accuracy"). */
CREMA_API crema_status crema_trainer_test_value(const crema_trainer *t, const char *name, float *value);
/* Where snapshots go: <prefix>_iter_N.caffemodel (borrowed). */
CREMA_API const char *crema_trainer_snapshot_prefix(const crema_trainer *t);
CREMA_API void crema_trainer_free(crema_trainer *t);

#ifdef __cplusplus
}
#endif

#endif
