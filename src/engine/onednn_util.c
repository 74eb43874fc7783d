/* onednn_util.c -- the process's oneDNN engine and stream, and layout-converting ports. */
#include "engine/onednn_util.h"

#ifdef CREMA_HAVE_ONEDNN
#include <pthread.h>
#include <stddef.h>

#include "base/mem.h"

static pthread_once_t once = PTHREAD_ONCE_INIT;
static dnnl_engine_t g_engine;
static dnnl_stream_t g_stream;

static void create_engine(void) {
  if (dnnl_engine_create(&g_engine, dnnl_cpu, 0) != dnnl_success) {
    g_engine = NULL;
    return;
  }
  if (dnnl_stream_create(&g_stream, g_engine, dnnl_stream_default_flags) != dnnl_success) {
    dnnl_engine_destroy(g_engine);
    g_engine = NULL;
    g_stream = NULL;
  }
}

dnnl_engine_t crema_dnnl_engine(void) {
  pthread_once(&once, create_engine);
  return g_engine;
}

dnnl_stream_t crema_dnnl_stream(void) {
  pthread_once(&once, create_engine);
  return g_stream;
}

static const char *status_name(dnnl_status_t s) {
  switch (s) {
  case dnnl_success: return "success";
  case dnnl_out_of_memory: return "out of memory";
  case dnnl_invalid_arguments: return "invalid arguments";
  case dnnl_unimplemented: return "no implementation for this shape";
  case dnnl_iterator_ends: return "iterator ends";
  case dnnl_runtime_error: return "runtime error";
  case dnnl_not_required: return "not required";
  default: return "unknown status";
  }
}

int crema_dnnl_check(dnnl_status_t s, const char *what, crema_error *err) {
  if (s == dnnl_success) return 0;
  crema_fail(err, "oneDNN %s: %s", what, status_name(s));
  return 1;
}

int crema_dnnl_port_init(crema_dnnl_port *p, const dnnl_memory_desc_t *user_md,
                         const dnnl_memory_desc_t *prim_md, crema_port_dir dir, size_t *offset,
                         crema_error *err) {
  dnnl_engine_t eng = crema_dnnl_engine();
  p->user = p->inner = NULL;
  p->reorder = NULL;
  p->offset = p->bytes = 0;
  if (crema_dnnl_check(dnnl_memory_create(&p->user, user_md, eng, DNNL_MEMORY_NONE), "memory", err)) return 1;
  if (dir != CREMA_PORT_OUT_ADD && dnnl_memory_desc_equal(user_md, prim_md)) return 0;
  if (crema_dnnl_check(dnnl_memory_create(&p->inner, prim_md, eng, DNNL_MEMORY_NONE), "memory", err))
    return 1;
  p->offset = *offset;
  p->bytes = (dnnl_memory_desc_get_size(prim_md) + 63) & ~(size_t)63;
  *offset += p->bytes;
  dnnl_primitive_attr_t attr = NULL;
  if (dir == CREMA_PORT_OUT_ADD) {
    dnnl_post_ops_t po = NULL;
    if (crema_dnnl_check(dnnl_primitive_attr_create(&attr), "attr", err)) return 1;
    int bad = crema_dnnl_check(dnnl_post_ops_create(&po), "post-ops", err) ||
              crema_dnnl_check(dnnl_post_ops_append_sum(po, 1.0f), "sum post-op", err) ||
              crema_dnnl_check(dnnl_primitive_attr_set_post_ops(attr, po), "attr", err);
    if (po) dnnl_post_ops_destroy(po);
    if (bad) {
      dnnl_primitive_attr_destroy(attr);
      return 1;
    }
  }
  const dnnl_memory_desc_t *from = dir == CREMA_PORT_IN ? user_md : prim_md;
  const dnnl_memory_desc_t *to = dir == CREMA_PORT_IN ? prim_md : user_md;
  dnnl_primitive_desc_t pd = NULL;
  dnnl_status_t s = dnnl_reorder_primitive_desc_create(&pd, from, eng, to, eng, attr);
  if (attr) dnnl_primitive_attr_destroy(attr);
  if (crema_dnnl_check(s, "reorder", err)) return 1;
  s = dnnl_primitive_create(&p->reorder, pd);
  dnnl_primitive_desc_destroy(pd);
  return crema_dnnl_check(s, "reorder", err);
}

dnnl_memory_t crema_dnnl_port_mem(const crema_dnnl_port *p) { return p->inner ? p->inner : p->user; }

void crema_dnnl_port_in(crema_dnnl_port *p, const float *data, char *ws) {
  dnnl_memory_set_data_handle(p->user, (void *)data);
  if (!p->reorder) return;
  dnnl_memory_set_data_handle(p->inner, ws + p->offset);
  dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, p->user}, {DNNL_ARG_TO, p->inner}};
  crema_dnnl_run(p->reorder, 2, args);
}

void crema_dnnl_port_bind(crema_dnnl_port *p, float *data, char *ws) {
  dnnl_memory_set_data_handle(p->user, data);
  if (p->inner) dnnl_memory_set_data_handle(p->inner, ws + p->offset);
}

void crema_dnnl_port_out(crema_dnnl_port *p) {
  if (!p->reorder) return;
  dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, p->inner}, {DNNL_ARG_TO, p->user}};
  crema_dnnl_run(p->reorder, 2, args);
}

void crema_dnnl_port_free(crema_dnnl_port *p) {
  if (p->reorder) dnnl_primitive_destroy(p->reorder);
  if (p->inner) dnnl_memory_destroy(p->inner);
  if (p->user) dnnl_memory_destroy(p->user);
  p->user = p->inner = NULL;
  p->reorder = NULL;
}

void crema_dnnl_run(dnnl_primitive_t prim, int nargs, const dnnl_exec_arg_t *args) {
  dnnl_stream_t s = crema_dnnl_stream();
  dnnl_primitive_execute(prim, s, nargs, args);
  dnnl_stream_wait(s);
}

const char *crema_dnnl_impl(const_dnnl_primitive_desc_t pd) {
  const char *name = NULL;
  if (dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &name) != dnnl_success || !name)
    return "unknown";
  return name;
}
#endif
