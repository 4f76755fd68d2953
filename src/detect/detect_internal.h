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
    double resolution_m; /* architecture's "resolution_m", else DET_RESOLUTION_M_DEFAULT */
    /* 1: the layer list above (crown models). 2: a box detector graph
     * (models/FORMAT.md, version 2): graph non-NULL, n_layers 0, and
     * graph_weights the one block every conv node's weight and bias point
     * into. stride, nms_iou, name and version are filled for both. */
    int format_version;
    det_graph *graph;
    float *graph_weights;
};

/* RGBA8 (rows stride_px pixels apart) -> the model's normalised CHW input
 * channels (models/FORMAT.md "Input channels"), w x h floats each. */
void det_crown_preprocess(const det_model *m, const uint8_t *rgba, uint32_t stride_px,
                          uint32_t w, uint32_t h, float *out);

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

/* Blocking reads of tree lists det_engine_run / _run_nms have made since
 * creation: one per image while its trees fit the NMS room reserved so far
 * (tests). */
unsigned long det_engine_waits(const det_engine *e);

/* det_model_load on a file image already in memory (not kept); path names
 * it in errors and in the model. Checks everything det_model_load checks. */
cnp_status det_model_parse(const void *data, size_t len, const char *path, det_model **out,
                           cnp_err *err);

/* Output size of the network for a w x h input (floor at each pool). */
void det_model_out_size(const det_model *m, uint32_t w, uint32_t h, uint32_t *ow,
                        uint32_t *oh);

/* ---- crown_graph.c ------------------------------------------------------ */

/* The model's layers as a graph of crown input: conv k odd with "same"
 * padding dilation * (k - 1) / 2 at stride 1, max pool 2x2/2 floor; weights
 * point into the model. g->nodes is calloc'd (the caller frees it). */
cnp_status det_crown_graph(const det_model *m, det_graph *g, cnp_err *err);

/* ---- crown_json.c: the .cnw version 1 architecture JSON ---------------- */

/* Parses and checks a version 1 (crown) architecture JSON of len bytes into
 * m: name, version, stride, nms_iou, input channels, the layers (m->layers
 * calloc'd and the model's, weights NULL) and out_index. Errors name path;
 * on failure m may hold some of it (det_model_free frees it). */
cnp_status det_crown_from_json(const char *path, const char *json, size_t len, det_model *m,
                               cnp_err *err);

/* ---- cnw.c: the .cnw container (models/FORMAT.md) ---------------------- */

#define DET_CNW_VERSION_LAYERS 1u /* architecture: a crown model's layer list */
#define DET_CNW_VERSION_GRAPH 2u  /* architecture: a graph (graph.h) */

/* One entry of the tensor directory: name, shape, and where its float32
 * data lies in the file image. */
typedef struct det_cnw_tensor {
    char name[DET_GRAPH_NAME_MAX + 16];
    uint32_t ndim;
    uint32_t dims[4];
    uint64_t offset, bytes;
} det_cnw_tensor;

/* A file image whose container det_cnw_open has checked. It points into
 * the image, which must outlive it; tensors is its own (det_cnw_close). */
typedef struct det_cnw {
    const uint8_t *data;
    int version;              /* DET_CNW_VERSION_LAYERS or DET_CNW_VERSION_GRAPH */
    const char *arch;         /* the architecture JSON: arch_len bytes, no NUL */
    size_t arch_len;
    det_cnw_tensor *tensors;  /* the directory, in file order */
    uint32_t n_tensors;
} det_cnw;

/* Checks the container of a file image of len bytes: magic, a version this
 * build reads, the architecture JSON's length, every directory entry
 * (printable unique names, float32, 1..4 dims, 16-byte aligned data inside
 * the body, in order, not overlapping) and the CRC-32; not the JSON, nor
 * the values. Errors name path. On failure *f holds nothing to close. */
cnp_status det_cnw_open(const char *path, const uint8_t *d, size_t len, det_cnw *f,
                        cnp_err *err);

/* Frees the directory of f; f's other fields stay as they were. */
void det_cnw_close(det_cnw *f);

/* The entry of f named name, or NULL. */
const det_cnw_tensor *det_cnw_tensor_find(const det_cnw *f, const char *name);

/* Whether t has the ndim dims; if not, err says "<path>: tensor <name> has
 * shape [..], <who> needs [..]" (who: what asks for the shape). */
bool det_cnw_tensor_shape_ok(const char *path, const det_cnw_tensor *t, uint32_t ndim,
                             const uint32_t *dims, const char *who, cnp_err *err);

/* Copies the t->bytes / 4 float32 values of t (an entry of f) to dst,
 * refusing a non-finite one ("<path>: tensor <name> holds ..."). */
cnp_status det_cnw_tensor_copy(const char *path, const det_cnw *f, const det_cnw_tensor *t,
                               float *dst, cnp_err *err);

#endif
