/* onednn_util.h -- internal to src/engine: the process's oneDNN CPU engine and stream, and
 * "ports" that move an operand between crema's plain layout and the layout a primitive
 * chose. Only compiled with oneDNN. */
#ifndef CREMA_ENGINE_ONEDNN_UTIL_H
#define CREMA_ENGINE_ONEDNN_UTIL_H

#ifdef CREMA_HAVE_ONEDNN
#include <oneapi/dnnl/dnnl.h>
#include <stdbool.h>

#include "base/error.h"

/* The CPU engine and its stream, created once (NULL if oneDNN cannot run here). */
dnnl_engine_t crema_dnnl_engine(void);
dnnl_stream_t crema_dnnl_stream(void);

/* 0 when s is dnnl_success, else fills err ("oneDNN <what>: <status>") and returns 1. */
int crema_dnnl_check(dnnl_status_t s, const char *what, crema_error *err);

typedef enum { CREMA_PORT_IN, CREMA_PORT_OUT, CREMA_PORT_OUT_ADD } crema_port_dir;

/* Inner buffers live in the engines' shared workspace (engine/workspace.h). */

/* One operand of a primitive. `user` is crema's plain array (its handle is set on every
 * call, never owned); `inner` exists when the primitive wants another layout (or, for
 * CREMA_PORT_OUT_ADD, always: the primitive overwrites it, then a reorder with a sum
 * post-op adds it into the user's array). The inner buffer lives in the shared workspace at
 * `offset`. */
typedef struct crema_dnnl_port {
  dnnl_memory_t user, inner;
  dnnl_primitive_t reorder;
  size_t offset, bytes; /* inner buffer: where in the workspace, and its size */
} crema_dnnl_port;

/* Builds a port for a plain `user_md` and the primitive's `prim_md`. When it needs an inner
 * buffer, it takes `bytes` (64-aligned) at *offset of the workspace and advances *offset.
 * Returns 0, or 1 with err filled (oneDNN declined). */
int crema_dnnl_port_init(crema_dnnl_port *p, const dnnl_memory_desc_t *user_md,
                         const dnnl_memory_desc_t *prim_md, crema_port_dir dir, size_t *offset,
                         crema_error *err);
/* The memory to hand the primitive. */
dnnl_memory_t crema_dnnl_port_mem(const crema_dnnl_port *p);
/* Input: points the port at `data` (and its inner buffer into workspace `ws`) and converts
 * the data into the inner layout if there is one. */
void crema_dnnl_port_in(crema_dnnl_port *p, const float *data, char *ws);
/* Output, before the primitive runs: points the port at `data` (the primitive writes there
 * directly when there is no inner buffer) and its inner buffer into `ws`. */
void crema_dnnl_port_bind(crema_dnnl_port *p, float *data, char *ws);
/* Output, after the primitive ran: converts (or adds) the inner buffer into the user's. */
void crema_dnnl_port_out(crema_dnnl_port *p);
void crema_dnnl_port_free(crema_dnnl_port *p);

/* Runs a primitive on the stream and waits for it. */
void crema_dnnl_run(dnnl_primitive_t prim, int nargs, const dnnl_exec_arg_t *args);

/* The implementation name of a primitive descriptor ("jit:avx2", "gemm:jit", ...). */
const char *crema_dnnl_impl(const_dnnl_primitive_desc_t pd);

#endif
#endif
