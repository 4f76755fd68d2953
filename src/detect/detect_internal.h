/* Parsed network shared by the detector's reader, reference, engine and
 * bench. Not part of the public API. */
#ifndef CANOPY_DETECT_INTERNAL_H
#define CANOPY_DETECT_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "canopy/detect.h"
#include "detect/graph.h"

#define DET_MAX_CHANNELS 4
#define DET_NAME_MAX 64

enum det_layer_type { DET_LAYER_CONV = 0, DET_LAYER_MAXPOOL = 1 };

/* Input channel codes: what the preprocessing computes from RGBA8. */
enum det_channel { DET_CH_R = 0, DET_CH_G = 1, DET_CH_B = 2, DET_CH_EXG = 3 };

typedef struct det_layer {
    enum det_layer_type type;
    char name[DET_NAME_MAX];
    int in, out, k, dilation;
    bool relu;
    float *weight; /* [out][in][k][k], owned by the model */
    float *bias;   /* [out] */
} det_layer;

struct det_model {
    char path[1024];
    char name[DET_NAME_MAX];
    char version[DET_NAME_MAX];
    int stride;
    int n_channels;
    int channel[DET_MAX_CHANNELS]; /* enum det_channel per input channel */
    float mean[DET_MAX_CHANNELS];
    float std[DET_MAX_CHANNELS];
    int n_layers;
    det_layer *layers;
    /* Index of heatmap, log_radius, dx, dy in the last layer's channels. */
    int out_index[4];
    double nms_iou; /* architecture's "nms_iou", else DET_NMS_IOU_DEFAULT */
    /* 1: the layer list above (crown models). 2: a box detector graph
     * (models/FORMAT.md, version 2): graph non-NULL, n_layers 0, and
     * graph_weights the one block every conv node's weight and bias point
     * into. stride, nms_iou, name and version are filled for both. */
    int format_version;
    det_graph *graph;
    float *graph_weights;
};

/* The model's graph (format version 2), or NULL for a version 1 model.
 * Valid while the model lives. */
const det_graph *det_model_graph(const det_model *m);

enum { DET_OUT_HEATMAP = 0, DET_OUT_LOG_RADIUS = 1, DET_OUT_DX = 2, DET_OUT_DY = 3 };

/* One tile of the tiling plan: region [x0, x0+w) x [y0, y0+h) of the image,
 * and the part it owns, own = {x_lo, y_lo, x_hi, y_hi} (centres in
 * [x_lo, x_hi) x [y_lo, y_hi) are this tile's). */
/* Rows of the NMS overlap mask computed and consumed per pass (a multiple of
 * 64; 0 restores the default, sized by bytes). For tests of the chunking. */
void det_engine_set_nms_chunk_rows(det_engine *e, uint32_t rows);

/* det_model_load on a file image already in memory (not kept); path names
 * it in errors and in the model. Checks everything det_model_load checks. */
cnp_status det_model_parse(const void *data, size_t len, const char *path, det_model **out,
                           cnp_err *err);

/* Output size of the network for a w x h input (floor at each pool). */
void det_model_out_size(const det_model *m, uint32_t w, uint32_t h, uint32_t *ow,
                        uint32_t *oh);

#endif
