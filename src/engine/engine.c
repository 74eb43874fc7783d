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
static bool default_fast = true;
static bool use_winograd = true, use_onednn = true;
static bool env_forced_caffe = false;

static void read_env(void) {
  const char *v = getenv("CREMA_ENGINE");
  if (!v) return;
  if (!strcasecmp(v, "caffe") || !strcasecmp(v, "reference")) {
    default_fast = false;
    env_forced_caffe = true;
  } else if (!strcasecmp(v, "onednn")) {
    use_winograd = false;
  } else if (!strcasecmp(v, "winograd")) {
    use_onednn = false;
  }
}

bool crema_engine_have_onednn(void) {
#ifdef CREMA_HAVE_ONEDNN
  return true;
#else
  return false;
#endif
}

bool crema_engine_onednn_avx512(void) {
#ifdef CREMA_HAVE_ONEDNN
  const dnnl_cpu_isa_t isa = dnnl_get_effective_cpu_isa();
  return (isa & dnnl_cpu_isa_avx512_core) == dnnl_cpu_isa_avx512_core;
#else
  return false;
#endif
}

const char *crema_engine_describe(void) {
  static char buf[160];
  pthread_once(&env_once, read_env);
#ifdef CREMA_HAVE_ONEDNN
  const dnnl_version_t *v = dnnl_version();
  snprintf(buf, sizeof buf, "oneDNN %d.%d.%d %s, Winograd F(4x4,3x3) %s", v->major, v->minor, v->patch,
           !default_fast ? "off"
           : use_onednn  ? "on"
                         : "off (CREMA_ENGINE=winograd)",
           !default_fast  ? (env_forced_caffe ? "off (CREMA_ENGINE=caffe)" : "off (reference path chosen)")
           : use_winograd ? "on"
                          : "off (CREMA_ENGINE=onednn)");
#else
  snprintf(buf, sizeof buf, "Winograd F(4x4,3x3) %s; built without oneDNN (apt-get install libdnnl-dev)",
           !default_fast  ? (env_forced_caffe ? "off (CREMA_ENGINE=caffe)" : "off (reference path chosen)")
           : use_winograd ? "on"
                          : "off (CREMA_ENGINE=onednn)");
#endif
  return buf;
}

void crema_engine_set_default(bool use_fast) {
  pthread_once(&env_once, read_env);
  default_fast = use_fast;
  env_forced_caffe = false;
}

bool crema_engine_get_default(void) {
  pthread_once(&env_once, read_env);
  return default_fast;
}

void crema_engine_set_winograd(bool on) {
  pthread_once(&env_once, read_env);
  use_winograd = on;
}

bool crema_engine_onednn_wanted(int proto_engine) {
  if (proto_engine == 1) return false; /* CAFFE: the reference path, always */
  return crema_engine_get_default() && use_onednn && crema_engine_have_onednn();
}

bool crema_engine_winograd_wanted(int proto_engine) {
  if (proto_engine == 1) return false;
  return crema_engine_get_default() && use_winograd;
}
