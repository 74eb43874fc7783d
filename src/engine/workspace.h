/* workspace.h -- internal to src/engine: the scratch buffer every engine layer of the process
 * shares.
 *
 * Converted operands (oneDNN's blocked copies, Winograd's transformed tiles) live only while
 * one layer runs, so all engine layers keep them in one buffer sized for the largest layer
 * instead of each owning copies of its activations: peak memory stays near the reference
 * path's. A layer reserves its size when it is created (grow-only while any user exists;
 * freed when the last user releases) and holds the lock while it runs, so nets in different
 * threads stay correct (their engine calls take turns). */
#ifndef CREMA_ENGINE_WORKSPACE_H
#define CREMA_ENGINE_WORKSPACE_H

#include <stddef.h>

#include "base/error.h"

int crema_engine_ws_reserve(size_t bytes, crema_error *err);
void crema_engine_ws_release(void);
/* Locks the workspace and returns its base (64-byte aligned); unlock when done. */
char *crema_engine_ws_lock(void);
void crema_engine_ws_unlock(void);
/* Bytes the workspace holds now (for memory reports). */
size_t crema_engine_ws_bytes(void);

#endif
