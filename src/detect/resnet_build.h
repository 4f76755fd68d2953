/* The graph builder shared by the checkpoint importers (import.c: the
 * RetinaNet detector; import_crop.c: DeepForest's CropModel classifiers):
 * tensors read from a safetensors file, batch norm folded into the conv
 * before it, and torchvision's ResNet body (Bottleneck or BasicBlock blocks,
 * counted from the keys) as graph nodes. Not part of the public API. */
#ifndef CANOPY_DETECT_RESNET_BUILD_H
#define CANOPY_DETECT_RESNET_BUILD_H

#include <stdbool.h>
#include <stdint.h>

#include "canopy/status.h"
#include "detect/graph.h"
#include "detect/safetensors.h"

/* Weight blocks an import owns (each malloc'd; det_blocks_free). */
typedef struct det_blocks {
    float **v;
    int n;
} det_blocks;

void det_blocks_free(det_blocks *b);

/* An import: the graph, the weights it points into, name and version. */
struct det_import {
    det_graph g;
    det_blocks blocks;
    char name[64];
    char version[64];
};

/* import_crop.c: builds im from a CropModel directory's safetensors file
 * (st_path) and config.json (cfg_path); version as det_import_load's. */
cnp_status det_import_crop(const char *st_path, const char *cfg_path, const char *version,
                           struct det_import *im, cnp_err *err);

/* Sets im->version: version when given (refused when too long), else
 * "<stem>-<revision>": config_revision, else the safetensors metadata's
 * "revision", else the first 12 hex digits of the file's SHA-256. */
cnp_status det_import_set_version(struct det_import *im, const char *version,
                                  const st_file *st, const char *config_revision,
                                  const char *stem, cnp_err *err);

/* Whether config.json at path has a "cropmodel" section (a CropModel). */
bool det_import_is_crop(const char *cfg_path);

/* The builder: the checkpoint, the graph under construction (nodes
 * calloc'd for DET_GRAPH_MAX_NODES) and each node's channel count. pre is
 * the body's key prefix ("backbone.body." for RetinaNet, "" for a
 * classifier); what names the expected checkpoint in "missing" errors. */
typedef struct det_builder {
    st_file *st;
    const char *path;
    const char *pre;
    const char *what;
    const char *shown; /* prefix errors show before a missing key ("model.") */
    det_graph *g;
    det_blocks *blocks;
    int c[DET_GRAPH_MAX_NODES];
    cnp_err *err;
} det_builder;

/* The checkpoint's tensor for a key, with or without the "model." prefix
 * (DeepForest's legacy RetinaNet keys, a CropModel's LightningModule keys). */
const st_tensor *det_build_find(const det_builder *b, const char *key);

/* Reads key as doubles, checking its shape against want (ndim entries;
 * -1 = any, filled in from the tensor), refusing non-finite values.
 * *out malloc'd. */
cnp_status det_build_fetch(det_builder *b, const char *key, int ndim, int64_t *want,
                           double **out);

/* A float block of n values owned by b->blocks, or NULL (out of memory). */
float *det_build_keep(det_builder *b, size_t n);

/* Appends a node (fields zero but op, name, in, in2, dilation 1); its
 * channel count is in's (3 for the input). Returns its index or -1. */
int det_build_node(det_builder *b, enum det_op op, const char *name, int in, int in2);

/* A conv spec: module path of the conv (weights key stem), optional batch
 * norm module path, whether the conv has a bias, the graph's weights name,
 * kernel and stride (padding k/2). */
typedef struct det_conv_spec {
    const char *conv;
    const char *bn;
    bool has_bias;
    const char *weights;
    int k, stride;
    enum det_act act;
} det_conv_spec;

/* Adds conv node `name` on node in (residual add, -1 for none), reading and
 * folding its tensors (BatchNorm eps 1e-5, in double); cout from the tensor,
 * cin checked against in's channels. Returns its index or -1. */
int det_build_conv(det_builder *b, const char *name, int in, int add, const det_conv_spec *s);

/* The ResNet body on node 0: conv1 + bn1 + relu, maxpool, layer1..4 of
 * Bottleneck blocks (conv3 present) or BasicBlocks. c_out[0..2] receive the
 * outputs of layer2..4 (C3, C4, C5). */
bool det_build_resnet_body(det_builder *b, int c_out[3]);

#endif
