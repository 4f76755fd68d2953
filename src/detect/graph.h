/* Box detectors described as a graph of layers (.cnw format version 2,
 * models/FORMAT.md): torchvision's RetinaNet (DeepForest's tree model) and
 * any network the same node types can express. Not part of the public API.
 *
 * Three parts share this header:
 *   import.c / safetensors.c  checkpoint (Hugging Face safetensors +
 *                             config.json) -> det_graph -> .cnw version 2
 *   graph.c                   .cnw version 2 architecture JSON <-> det_graph
 *   graph_ref.c, retina.c     the C reference: every node, the input
 *                             transform, anchors, box decoding, top-k, NMS
 *   graph_engine.c            the same on the OpenCL device
 *                             (kernels/graph.cl)
 *
 * Tensors are float32 CHW (one image) or NCHW (a batch of patches of equal
 * size), row-major, as PyTorch lays them out. */
#ifndef CANOPY_DETECT_GRAPH_H
#define CANOPY_DETECT_GRAPH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "canopy/buf.h"
#include "canopy/status.h"

#define DET_GRAPH_NAME_MAX 96
#define DET_GRAPH_MAX_NODES 1024
#define DET_GRAPH_MAX_LEVELS 8
#define DET_GRAPH_MAX_ANCHORS 8 /* sizes or aspect ratios per level */
#define DET_GRAPH_MAX_CLASSES 64
#define DET_GRAPH_LABEL_MAX 48

enum det_op {
    /* The transformed input image: 3 x H x W, normalised, resized and padded
     * (det_retina_input). Always node 0, and only there. */
    DET_OP_INPUT = 0,
    /* out = act(conv(in, weight) + bias [+ add]): any k, stride, pad,
     * dilation; groups = 1. `add` (optional) is a node of the output's
     * shape added before the activation (ResNet's residual). */
    DET_OP_CONV = 1,
    /* k x k max pool with stride and padding (padded cells never win: -inf),
     * floor mode (PyTorch's MaxPool2d, ceil_mode=False). */
    DET_OP_MAXPOOL = 2,
    /* out = in + upsample_nearest(top, size of in) (FPN's top-down path;
     * PyTorch's F.interpolate(mode="nearest") index rule). */
    DET_OP_UPSAMPLE_ADD = 3,
    /* out = max(in, 0) as a node of its own (RetinaNet's P7 = conv(relu(P6))). */
    DET_OP_RELU = 4,
};

enum det_act { DET_ACT_NONE = 0, DET_ACT_RELU = 1 };

typedef struct det_node {
    enum det_op op;
    char name[DET_GRAPH_NAME_MAX];    /* unique; what errors and timings name */
    char weights[DET_GRAPH_NAME_MAX]; /* conv: tensors <weights>.weight, <weights>.bias
                                       * (shared by nodes that run one conv on
                                       * several levels, as RetinaNet's heads) */
    int in;                           /* input node index (< this node's), -1 for INPUT */
    int in2;                          /* CONV: residual `add`; UPSAMPLE_ADD: `top`; else -1 */
    int cin, cout;                    /* CONV */
    int k, stride, pad, dilation;     /* CONV and MAXPOOL (MAXPOOL: dilation 1) */
    enum det_act act;                 /* CONV */
    const float *weight;              /* CONV: [cout][cin][k][k], batch norm folded in */
    const float *bias;                /* CONV: [cout] */
} det_node;

/* The detection part of a RetinaNet (torchvision's semantics). */
typedef struct det_retina {
    /* Input transform (torchvision GeneralizedRCNNTransform): RGB / 255,
     * then (x - mean) / std per channel, then bilinear resize by
     * scale = min(min_size / min(h, w), max_size / max(h, w)) to
     * floor(h * scale) x floor(w * scale) (align_corners = false), then zero
     * padding on the bottom and right to a multiple of size_divisible. */
    float mean[3], std[3];
    int min_size, max_size, size_divisible;
    /* Anchors per level: sizes x aspect ratios, torchvision's
     * AnchorGenerator order (ratio-major, then size). */
    int n_levels;
    int n_sizes, n_ratios; /* the same on every level */
    float sizes[DET_GRAPH_MAX_LEVELS][DET_GRAPH_MAX_ANCHORS];
    float ratios[DET_GRAPH_MAX_LEVELS][DET_GRAPH_MAX_ANCHORS];
    /* Head outputs per level: node indices. cls: A*K channels, box: A*4. */
    int cls_node[DET_GRAPH_MAX_LEVELS];
    int box_node[DET_GRAPH_MAX_LEVELS];
    /* BoxCoder. */
    float box_weights[4];
    float bbox_clip; /* log(1000 / 16) in torchvision */
    /* postprocess_detections. */
    float score_thresh, nms_thresh;
    int topk_candidates, detections_per_img;
    int num_classes;
    char labels[DET_GRAPH_MAX_CLASSES][DET_GRAPH_LABEL_MAX]; /* label_dict, by index */
} det_retina;

typedef struct det_graph {
    int n_nodes;
    det_node *nodes;
    det_retina retina;
} det_graph;

/* One detection of a box model, in the pixel coordinates of the image (or
 * window) it was computed for: box [x0, x1) x [y0, y1), score in (0, 1],
 * label index into det_retina.labels. */
typedef struct det_detection {
    float x0, y0, x1, y1, score;
    int label;
} det_detection;

/* Output shape of node i for an input of h x w (after the transform), from
 * the shapes of its inputs. c/h/w arrays hold every node's, filled in order. */
cnp_status det_graph_shapes(const det_graph *g, int in_h, int in_w, int *c, int *h, int *w,
                            cnp_err *err);

/* The transformed input size for an h x w image: the resized size (rh, rw)
 * and the padded size (ph, pw). */
void det_retina_input_size(const det_retina *r, int h, int w, int *rh, int *rw, int *ph,
                           int *pw);

/* ---- graph.c: validation and the .cnw version 2 architecture JSON ------ */

/* Index of the node named name, or -1. */
int det_graph_find(const det_graph *g, const char *name);

/* Frees the node array and g (not the weights the nodes point to: their
 * owner frees those); accepts NULL. */
void det_graph_free(det_graph *g);

/* Checks g whole: node 0 is the only INPUT, every reference points to an
 * earlier node, op fields in range, shared `weights` names used by convs of
 * one shape, the retina fields (levels, anchors, labels, thresholds) and,
 * through det_graph_shapes at a nominal input (min_size rounded up to
 * size_divisible, square), every channel count and residual shape; the
 * head nodes have A*K (cls) and A*4 (box) channels, A = n_sizes * n_ratios.
 * Weight pointers are not looked at. Errors: "<what>: node <name>: ...",
 * what being a file name or any caller's label. */
cnp_status det_graph_check(const det_graph *g, const char *what, cnp_err *err);

/* The architecture JSON of a version 2 .cnw (models/FORMAT.md) for g, with
 * the model's name and version. *json is malloc'd (caller frees). */
cnp_status det_graph_to_json(const det_graph *g, const char *name, const char *version,
                             char **json, cnp_err *err);

/* Parses and checks (det_graph_check) a version 2 architecture JSON; path
 * names the file in errors. On success *out (det_graph_free) has every
 * node's fields, weight pointers NULL; name and version receive the
 * model's (caps of at least 2 bytes). */
cnp_status det_graph_from_json(const char *path, const char *json, size_t len,
                               det_graph **out, char *name, size_t name_cap, char *version,
                               size_t version_cap, cnp_err *err);

/* Writes g as a whole .cnw version 2 file image into out (appended): the
 * container of version 1, the architecture JSON of det_graph_to_json, one
 * tensor pair <weights>.weight [cout][cin][k][k] and <weights>.bias [cout]
 * per distinct `weights` name, from the nodes' pointers. */
cnp_status det_graph_write_cnw(const det_graph *g, const char *name, const char *version,
                               cnp_buf *out, cnp_err *err);

#endif
