/* Checkpoint import: a torchvision RetinaNet (ResNet-FPN, as DeepForest's
 * RetinaNetHub publishes it on Hugging Face: model.safetensors +
 * config.json) into a det_graph with batch norm folded into the convs, and
 * from there into a .cnw version 2 file (models/FORMAT.md). Not part of the
 * public API; `canopy model import` is its command. */
#ifndef CANOPY_DETECT_IMPORT_H
#define CANOPY_DETECT_IMPORT_H

#include <stddef.h>

#include "canopy/status.h"
#include "detect/graph.h"

typedef struct det_import det_import;

/* Reads src, a directory holding model.safetensors and config.json, or a
 * .safetensors file with config.json beside it, and builds the graph of
 * torchvision's retinanet_resnet50_fpn from the tensors present: ResNet
 * blocks counted from the keys, every channel count from the tensor shapes
 * (and checked against the tensor it feeds), FrozenBatchNorm2d folded into
 * the preceding conv in double precision (eps 1e-5), heads shared across
 * P3..P7. Keys may carry DeepForest's legacy "model." prefix; FPN and head
 * keys may be in torchvision's older or newer layout. version (NULL: derived,
 * see FORMAT.md) becomes the model version. A checkpoint of another
 * architecture, a missing or mis-shaped tensor, a truncated file or a bad
 * config.json is refused naming the file, the tensor and the reason.
 * *out: det_import_free. */
cnp_status det_import_load(const char *src, const char *version, det_import **out,
                           cnp_err *err);

/* The imported graph; conv nodes point into the import's weights. */
const det_graph *det_import_graph(const det_import *im);

/* The model version: the one given, else "deepforest-tree-<revision>". */
const char *det_import_version(const det_import *im);

/* Writes the import as a .cnw version 2 file to path (atomically). */
cnp_status det_import_write(const det_import *im, const char *path, cnp_err *err);

/* Frees the import and its weights; accepts NULL. */
void det_import_free(det_import *im);

#endif
