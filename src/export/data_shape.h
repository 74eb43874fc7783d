/* data_shape.h -- the (N, C, H, W) a data layer feeds its net, for a deploy net's Input. */
#ifndef CREMA_EXPORT_DATA_SHAPE_H
#define CREMA_EXPORT_DATA_SHAPE_H

#include "base/error.h"
#include "proto/crema.pb-c.h"

/* shape = (batch or 1, channels, height, width) of what the data layer lp delivers: crop size
 * when transform_param crops, else the image size (MemoryData and DummyData: from their
 * parameters; Data: the first LMDB record, decoded when encoded; ImageData: new_height and
 * new_width, else its first image). force_gray / force_color set the channels. Errors name
 * the layer and what could not be read. */
int crema_data_layer_shape(const Crema__LayerParameter *lp, int batch, int shape[4], crema_error *err);

#endif
