/* Box detectors described as a graph of layers (.cnw format version 2,
 * models/FORMAT.md): torchvision's RetinaNet (DeepForest's tree model) and
 * any network the same node types can express. Not part of the public API.
 *
 * Three parts share this header:
 *   import.c / safetensors.c  checkpoint (Hugging Face safetensors +
 *                             config.json) -> det_graph -> .cnw version 2
 *   graph.c                   the graph: lookup, shapes, det_graph_check
 *   graph_json.c              .cnw version 2 architecture JSON <-> det_graph
 *   cnw.c                     the .cnw container around it, read and
 *                             written (det_graph_write_cnw)
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

#include "canopy/detect.h"
#include "canopy/gpu.h"
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

/* What node 0 holds. RETINA: det_retina's transform of the window (3
 * channels; the engine computes it, predict decodes the heads). CROWN: a
 * crown model's preprocessed tile (the caller writes it into
 * det_graph_engine_input; channel codes enum det_channel, normalised by
 * mean / std, no resize), and only the raw forward runs
 * (det_graph_engine_run_raw); `retina` is unused. */
enum det_input_kind { DET_INPUT_RETINA = 0, DET_INPUT_CROWN = 1, DET_INPUT_CROP = 2 };

/* A tree-type classifier (DeepForest's CropModel, family "cropmodel" in
 * models/FORMAT.md): node 0 holds one tree's crop, cut and transformed by
 * these rules (kind DET_INPUT_CROP; `retina` unused); the last node's
 * num_classes x 1 x 1 output are the logits (the ResNet's global average
 * pool and fc folded into one conv), softmax, argmax and max give the type
 * and its score. Crop (BoundingBoxDataset): the box widened by `expand`
 * pixels on every side and clamped to the image, cut at (int(x0), int(y0)),
 * int(max(1, x1 - x0)) x int(max(1, y1 - y0)) pixels. Transform
 * (bounding_box_transform): RGB / 255, (x - mean) / std when normalize,
 * then resized to size x size (bilinear: torchvision's antialiased;
 * nearest: PyTorch's floor(dst * in / out) index). */
#define DET_CLASS_MAX 256
enum det_resize { DET_RESIZE_BILINEAR = 0, DET_RESIZE_NEAREST = 1 };

typedef struct det_classifier {
    int size;
    enum det_resize interp;
    bool normalize;
    float mean[3], std[3];
    int expand;
    int num_classes;
    char labels[DET_CLASS_MAX][DET_GRAPH_LABEL_MAX]; /* label_dict, by index */
} det_classifier;

typedef struct det_input {
    enum det_input_kind kind;
    int channels;                           /* CROWN: 1..4 */
    int channel[4];                         /* CROWN: enum det_channel per channel */
    float mean[4], std[4];                  /* CROWN */
} det_input;

typedef struct det_graph {
    int n_nodes;
    det_node *nodes;
    det_retina retina;
    det_input input; /* zero: RETINA */
    det_classifier classify; /* input.kind CROP */
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

/* ---- C reference (graph_ref.c, retina.c) ------------------------------- */

/* Output shape of every node for a transformed input of in_h x in_w, checked
 * (channels, residual and top shapes, positive sizes); the reference's own
 * shape walk, the same rules as det_graph_shapes. */
cnp_status det_graph_ref_shapes(const det_graph *g, int in_h, int in_w, int *c, int *h, int *w,
                                cnp_err *err);

/* One node on CHW float tensors (out of shape oc x oh x ow as the node's
 * shape rule gives). conv: add is the residual (NULL when in2 < 0);
 * upsample_add: in (c x h x w) + nearest(top, c x th x tw). */
void det_graph_ref_conv(const det_node *n, const float *in, int h, int w, const float *add,
                        float *out, int oh, int ow);
void det_graph_ref_maxpool(const det_node *n, const float *in, int c, int h, int w, float *out,
                           int oh, int ow);
void det_graph_ref_upsample_add(const float *in, const float *top, int c, int h, int w, int th,
                                int tw, float *out);

/* The input transform of an h x w RGBA8 image (rows stride_bytes apart):
 * *out (malloc'd, 3 x ph x pw, caller frees) with the resized (rh, rw) and
 * padded (ph, pw) sizes. */
cnp_status det_retina_input(const det_retina *r, const uint8_t *rgba, uint32_t stride_bytes,
                            uint32_t w, uint32_t h, float **out, int *rh, int *rw, int *ph,
                            int *pw, cnp_err *err);

/* Runs the graph on a transformed input (3 x h x w) and returns the
 * outputs of the heads: cls[l], box[l] (malloc'd, caller frees each) of
 * level l, with their feature sizes fh[l] x fw[l]. Intermediate tensors
 * are freed after their last use. */
cnp_status det_graph_ref_forward(const det_graph *g, const float *input, int h, int w,
                                 float **cls, float **box, int *fh, int *fw, cnp_err *err);

/* Runs the graph (any input kind) on an input of input channels x h x w and
 * returns its last node's output (*out malloc'd, *oc x *oh x *ow): the raw
 * forward, the CPU twin of det_graph_engine_run_raw. The crown model's
 * reference (ref.c) is this on det_crown_graph. */
cnp_status det_graph_ref_run_raw(const det_graph *g, const float *input, int h, int w,
                                 float **out, int *oc, int *oh, int *ow, cnp_err *err);

/* torchvision's postprocess_detections + transform.postprocess on the head
 * outputs: per level sigmoid, > score_thresh, top-k, anchors, decode, clip
 * to rh x rw; class-wise NMS over all levels; the first detections_per_img;
 * boxes scaled to the original orig_h x orig_w. *out malloc'd (NULL when
 * *n == 0), in NMS order (score descending). */
cnp_status det_retina_ref_postprocess(const det_graph *g, float *const *cls, float *const *box,
                                      const int *fh, const int *fw, int rh, int rw, int ph,
                                      int pw, int orig_h, int orig_w, det_detection **out,
                                      size_t *n, cnp_err *err);

/* Base anchors of level l (A = n_ratios * n_sizes boxes x0 y0 x1 y1,
 * AnchorGenerator.generate_anchors in float32 with round-half-even). */
void det_retina_base_anchors(const det_retina *r, int l, float *anchors);

/* One torchvision model(image) call on an h x w RGBA8 image (rows
 * stride_bytes apart): transform, graph, postprocess. Detections in the
 * image's pixel coordinates, score descending. */
cnp_status det_retina_ref_predict(const det_graph *g, const uint8_t *rgba, uint32_t stride_bytes,
                                  uint32_t w, uint32_t h, det_detection **out, size_t *n,
                                  cnp_err *err);

/* ---- OpenCL engine (graph_engine.c, kernels/graph.cl) -------------------- */

typedef struct det_graph_engine det_graph_engine;

/* Builds the kernels, uploads the weights and sizes every device buffer once
 * for windows of at most max_w x max_h (any transformed size the retina's
 * min_size / max_size allow). g, its weights and ctx must outlive the
 * engine. */
cnp_status det_graph_engine_create(ocl_ctx *ctx, const det_graph *g, uint32_t max_w,
                                   uint32_t max_h, det_graph_engine **out, cnp_err *err);

/* det_retina_ref_predict of the w x h window at (x0, y0) of an RGBA8 image
 * img_w pixels wide already on the device. Detections (malloc'd, NULL when
 * *n == 0) in window coordinates, score descending. */
cnp_status det_graph_engine_predict(det_graph_engine *e, cl_mem rgba, uint32_t img_w,
                                    uint32_t x0, uint32_t y0, uint32_t w, uint32_t h,
                                    det_detection **out, size_t *n, cnp_err *err);

/* det_graph_engine_predict of n windows of equal size w x h at
 * (patches[i].x0, patches[i].y0) (their w and h must equal the first's),
 * max_batch of them at a time through every layer together: their
 * activations side by side (planes c * N + i), one im2col + one SGEMM per
 * conv for the batch. out[i] / n_out[i]: patch i's detections (malloc'd,
 * NULL when 0) in patch coordinates, the same as det_graph_engine_predict
 * gives for that window alone. On failure every out[i] is NULL. */
cnp_status det_graph_engine_predict_batch(det_graph_engine *e, cl_mem rgba, uint32_t img_w,
                                          const det_tile *patches, size_t n,
                                          det_detection **out, size_t *n_out, cnp_err *err);

/* Patches one batch holds (>= 1). */
int det_graph_engine_max_batch(const det_graph_engine *e);

/* Runs the transform and the graph only and reads node `node`'s output back
 * (malloc'd, c x h x w as det_graph_ref_shapes gives for the transformed
 * size *ph x *pw). For tests. */
cnp_status det_graph_engine_forward(det_graph_engine *e, cl_mem rgba, uint32_t img_w,
                                    uint32_t x0, uint32_t y0, uint32_t w, uint32_t h, int node,
                                    float **out, int *ph, int *pw, cnp_err *err);

/* Frees device buffers and kernels; accepts NULL. */
void det_graph_engine_free(det_graph_engine *e);

/* Creation options (det_graph_engine_create: all zero). */
typedef struct det_graph_engine_opts {
    /* Convolution path per conv node: DET_CONV_AUTO measures both where the
     * direct kernel applies (stride 1, its local memory fits) once at a
     * measurement size (the largest input on a GPU, at most 128 x 128 on a
     * CPU device) and remembers the choice in a file next to the kernel
     * cache (det_graph_engine_conv_paths_file): later engines on the same
     * device and node shapes time nothing. DIRECT / GEMM / WINOGRAD /
     * PIXEL force a path (GEMM where the forced one does not apply). */
    enum det_conv_path conv;
    /* Patches per det_graph_engine_predict_batch call (0 or 1: one): the
     * activations and the im2col matrix are sized for that many, limited
     * so that they fit batch_bytes (0: an eighth of the device's global
     * memory, at least 1 GiB) and the device's largest allocation;
     * det_graph_engine_max_batch says how many fitted. */
    uint32_t max_batch;
    size_t batch_bytes;
    /* Pixels per work-item of the pixel path's stride-1 kernel,
     * graph_conv_pxv (4, 8 or 16; tests); 0: 16 on a CPU device, 4 on
     * others. */
    int px_width;
} det_graph_engine_opts;

/* Windows per batch for [detector] patch_batch = asked (box models'
 * patches, the crown model's tiles): asked when > 0, else DET_GRAPH_BATCH
 * on a GPU and 1 on a CPU device, where batches measured slower (0.86x on
 * PoCL: CLBlast is compute-bound at one patch and a larger im2col matrix
 * only adds memory traffic). */
#define DET_GRAPH_BATCH 8
int det_patch_batch(ocl_ctx *ctx, int asked);

cnp_status det_graph_engine_create_opts(ocl_ctx *ctx, const det_graph *g, uint32_t max_w,
                                        uint32_t max_h, const det_graph_engine_opts *opts,
                                        det_graph_engine **out, cnp_err *err);

/* Forces one path for every conv node from now on (DET_CONV_AUTO: back to
 * the chosen one). */
void det_graph_engine_set_conv_path(det_graph_engine *e, enum det_conv_path path);

/* Path node i runs with now (DET_CONV_AUTO for non-conv nodes), and the
 * seconds each path took at the measurement size (0 when not measured). */
enum det_conv_path det_graph_engine_node_path(const det_graph_engine *e, int i,
                                              double *direct_s, double *gemm_s);

/* Conv nodes timed at creation (0 when the choice was read back or forced). */
size_t det_graph_engine_timed_nodes(const det_graph_engine *e);

/* Distinct conv shapes timed again at the plan size after a reduced-size
 * measurement (a CPU device), among the paths close enough there to rank
 * (det_graph_paths_refine_set: bits 1 << DET_CONV_* of the paths in `has`,
 * GEMM always among them, from their seconds s[DET_CONV_*]). */
size_t det_graph_engine_refined_shapes(const det_graph_engine *e);
unsigned det_graph_paths_refine_set(const double s[DET_CONV_PATHS], unsigned has);

/* The file that remembers the choice for this device, graph shapes and
 * measurement size. */
void det_graph_engine_conv_paths_file(const det_graph_engine *e, char *out, size_t len);

/* ---- bench hooks (bench/bench_retina.c) ---------------------------------- */

/* Seconds per stage of the predicts run while timing is on, added up: the
 * host clock read after a clFinish at the end of every stage, so stages do
 * not overlap (a timed predict is slower by those synchronisations). Arrays
 * of n_nodes entries: im2col, gemm (CLBlast) and epilogue of conv nodes
 * on the GEMM path (direct path: the whole graph_conv kernel in epilogue);
 * other: the kernel of a non-conv node (node 0: the input transform).
 * post: scores, top-k sorts, decode, NMS and the read-backs. */
typedef struct det_graph_times {
    double *im2col, *gemm, *epilogue, *other;
    double post;
} det_graph_times;

/* Timing on (later predicts add to *t, which must outlive them) or off
 * (NULL). Behaviour and results are unchanged either way. */
void det_graph_engine_set_times(det_graph_engine *e, det_graph_times *t);

/* ---- raw forward (crown graphs; any graph) -------------------------------- */

/* Node 0's device buffer: the caller enqueues the input there (channels x
 * in_h x in_w floats, CHW) before det_graph_engine_run_raw. */
cl_mem det_graph_engine_input(const det_graph_engine *e);

/* Enqueues nodes 1..last on an in_h x in_w input already in
 * det_graph_engine_input (at most the engine's max size); nothing is read
 * back. *out: the buffer that holds the last node's output (valid until
 * the next run), *oc x *oh x *ow its shape. */
cnp_status det_graph_engine_run_raw(det_graph_engine *e, int in_h, int in_w, cl_mem *out,
                                    int *oc, int *oh, int *ow, cnp_err *err);

/* det_graph_engine_run_raw of a batch of n inputs (1..max_batch) laid
 * out as the batch's planes c * n + i in det_graph_engine_input; the
 * output likewise (planes c * n + i of *oh x *ow). */
cnp_status det_graph_engine_run_raw_batch(det_graph_engine *e, int n, int in_h, int in_w,
                                          cl_mem *out, int *oc, int *oh, int *ow, cnp_err *err);

/* Median wall time of `repeats` runs (clFinish each, after a warm-up) of
 * node i alone with `path` (conv nodes; others ignore it) on an in_h x
 * in_w input. For the bench. */
cnp_status det_graph_engine_time_node(det_graph_engine *e, int i, enum det_conv_path path,
                                      int repeats, int in_h, int in_w, double *seconds,
                                      cnp_err *err);

/* Bytes of every device buffer the engine allocated: weights, activation
 * slots, im2col matrix, CLBlast scratch, decode and NMS buffers (not the
 * caller's image, nor what CLBlast allocates internally). */
size_t det_graph_engine_device_bytes(const det_graph_engine *e);

/* Blocking reads and maps the predict entry points have made since
 * creation: one per batch of patches (tests). */
unsigned long det_graph_engine_waits(const det_graph_engine *e);

/* ---- graph.c: the graph, its shapes and its validation ----------------- */

/* Index of the node named name, or -1. */
int det_graph_find(const det_graph *g, const char *name);

/* The op's name in the architecture JSON ("conv", ...), or "?". */
const char *det_graph_op_name(enum det_op op);

/* Fills last[i] (n_nodes entries) with the index of the last node that
 * reads node i's output, i itself when none does; with keep_heads, the
 * retina heads' outputs are read after the graph (n_nodes). For freeing or
 * reusing a tensor once its last reader has run. */
void det_graph_last_use(const det_graph *g, bool keep_heads, int *last);

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

/* ---- classifier_json.c: the classifier's part of that JSON --------------- */

struct cJSON;

/* g->classify as the architecture's "classifier" object (owned by root). */
void det_classifier_to_json(const det_graph *g, struct cJSON *root);

/* Reads root's "classifier" object into g->classify and sets the input
 * kind CROP; errors name path. */
cnp_status det_classifier_from_json(const char *path, const struct cJSON *root, det_graph *g,
                                    cnp_err *err);

/* det_graph_check's part for a classifier: the rules' ranges, labels, and
 * the last node a conv of num_classes channels giving 1 x 1 at size x size. */
cnp_status det_classifier_check(const det_graph *g, const char *what, cnp_err *err);

/* ---- graph_json.c: the .cnw version 2 architecture JSON ---------------- */

/* The field readers of the architecture readers (graph_json.c's,
 * crown_json.c's and classifier_json.c's). det_json_int: o[key], a whole
 * number in lo..hi, into *v. det_json_str: o[key], a string of 1..cap-1
 * bytes, into dst; det_json_string the same for the item it itself (an
 * array's element). Else false, the output untouched. det_json_floats: a,
 * an array of n finite numbers (each > 0 when positive), into v; else false,
 * v possibly part written. */
struct cJSON;
bool det_json_int(const struct cJSON *o, const char *key, int lo, int hi, int *v);
bool det_json_str(const struct cJSON *o, const char *key, char *dst, size_t cap);
bool det_json_string(const struct cJSON *it, char *dst, size_t cap);
bool det_json_floats(const struct cJSON *a, float *v, int n, bool positive);

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

/* ---- cnw.c: the .cnw version 2 container ------------------------------ */

/* Writes g as a whole .cnw version 2 file image into out (appended): the
 * container of version 1, the architecture JSON of det_graph_to_json, one
 * tensor pair <weights>.weight [cout][cin][k][k] and <weights>.bias [cout]
 * per distinct `weights` name, from the nodes' pointers. */
cnp_status det_graph_write_cnw(const det_graph *g, const char *name, const char *version,
                               cnp_buf *out, cnp_err *err);

#endif
