/* engine.c -- which engine a layer runs: the process-wide default, the CREMA_ENGINE
 * environment variable and the layer's own `engine` field. */
#include "engine/engine.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>

#ifdef CREMA_HAVE_ONEDNN
#include <oneapi/dnnl/dnnl.h>
#endif

static pthread_once_t env_once = PTHREAD_ONCE_INIT;
static bool default_onednn = true;
static bool env_forced_caffe = false;

static void read_env(void) {
  const char *v = getenv("CREMA_ENGINE");
  if (v && (!strcasecmp(v, "caffe") || !strcasecmp(v, "reference"))) {
    default_onednn = false;
    env_forced_caffe = true;
  }
}

bool crema_engine_have_onednn(void) {
#ifdef CREMA_HAVE_ONEDNN
  return true;
#else
  return false;
#endif
}

const char *crema_engine_describe(void) {
  static char buf[160];
  pthread_once(&env_once, read_env);
#ifdef CREMA_HAVE_ONEDNN
  const dnnl_version_t *v = dnnl_version();
  snprintf(buf, sizeof buf, "oneDNN %d.%d.%d (%s)", v->major, v->minor, v->patch,
           default_onednn     ? "default engine"
           : env_forced_caffe ? "disabled: CREMA_ENGINE=caffe"
                              : "disabled: reference path chosen");
#else
  snprintf(buf, sizeof buf, "reference only (built without oneDNN: apt-get install libdnnl-dev)");
#endif
  return buf;
}

void crema_engine_set_default(bool use_onednn) {
  pthread_once(&env_once, read_env);
  default_onednn = use_onednn;
  env_forced_caffe = false;
}

bool crema_engine_get_default(void) {
  pthread_once(&env_once, read_env);
  return default_onednn && crema_engine_have_onednn();
}

bool crema_engine_wanted(int proto_engine) {
  if (proto_engine == 1) return false; /* CAFFE: the reference path, always */
  return crema_engine_get_default();
}
