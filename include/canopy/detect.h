/* Tree crown detector: the .cnw weights file (models/FORMAT.md), a plain C
 * reference forward pass, and OpenCL inference on the device.
 *
 * Both paths run the same network, the same tiling and the same decode:
 * score = sigmoid(heatmap), radius = exp(log_radius), centre from the cell
 * and its (dx, dy) offset, a 3x3 peak rule with a row-major tie rule, and
 * a score threshold. Images larger than the tile are processed in
 * overlapping tiles whose origins are multiples of the stride; each tile
 * keeps only the trees whose centre lies in the part of the image it owns
 * (the overlap is split at its middle), so a crown near a border is
 * reported once. Then greedy non-maximum suppression over the whole image
 * drops a crown whose box (centre +- radius) overlaps a higher-scoring
 * kept crown's box by IoU > nms_iou (the peak rule alone lets one crown
 * give two peaks a few cells apart: stacked rings). Trees come back sorted
 * by (y, x). */
#ifndef CANOPY_DETECT_H
#define CANOPY_DETECT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "canopy/config.h"
#include "canopy/gpu.h"
#include "canopy/image.h"
#include "canopy/status.h"

/* One detected tree: centre in continuous pixel coordinates (origin at the
 * top-left corner of the image), radius in pixels, score in [0, 1].
 *
 * Box models (RetinaNet) also give the model's own box [x0, x1) x [y0, y1)
 * and a class label (index into the model's labels); the centre is then the
 * box's centre and the radius half its mean side. The crown model leaves the
 * box zero: its box is centre +- radius (det_tree_box gives either). */
typedef struct cnp_tree {
    float x, y, radius, score;
    float x0, y0, x1, y1;
    int label;
    bool boxed; /* x0..y1 is the model's own box (box models) */
    /* The second stage (a classifier, det_backend_classify): typed when it
     * ran; type indexes its labels (det_model_type_name), type_score the
     * softmax probability of that type. */
    bool typed;
    int type;
    float type_score;
} cnp_tree;

/* ---- weights file ------------------------------------------------------ */

typedef struct det_model det_model;

/* Reads and checks a .cnw file: magic, format version, architecture JSON
 * (every layer's fields), tensor directory (names, dtype, dims against the
 * architecture, 16-byte aligned offsets inside the file, no overlaps) and the
 * CRC-32. A truncated, corrupt or mismatched file gives CNP_ERR_FORMAT with
 * "path: reason"; a missing file CNP_ERR_NOTFOUND. On success *out owns all
 * weights as host floats; free it with det_model_free. */
cnp_status det_model_load(const char *path, det_model **out, cnp_err *err);

/* Frees the model; accepts NULL. */
void det_model_free(det_model *m);

/* The architecture's "version" ("crown-1.1"): the model_version stored with
 * results. Valid while the model lives. */
const char *det_model_version(const det_model *m);

/* Output cell size in input pixels (the architecture's "stride"). */
int det_model_stride(const det_model *m);

/* Side of the receptive field of one output cell, in input pixels. Tiles
 * give untiled results near their owned borders when tile_overlap is at least
 * this (each side keeps half the overlap, the field reaches half of it). */
int det_model_receptive_field(const det_model *m);

/* IoU above which NMS suppresses the lower-scoring of two crowns, for models
 * whose architecture JSON has no "nms_iou" (models/FORMAT.md). Chosen by
 * measurement on crown-1.1's training images (tools/train/README.md,
 * "Overlap suppression"). A value >= 1 turns NMS off. */
#define DET_NMS_IOU_DEFAULT 0.3

/* Crowns only (box models keep torchvision's NMS): a crown is also
 * suppressed by a kept higher-scoring one when their boxes' intersection
 * exceeds this fraction of the smaller box's area (intersection over
 * minimum), so of a small crown inside a larger one only the better scored
 * stays, although their IoU is small (a crown of radius 23 inside one of 53
 * has IoU 0.19). Chosen by measurement on the NEON images (README, "Overlap
 * suppression"). */
#define DET_NMS_CONTAIN 0.8f

/* The model's NMS IoU: its architecture's "nms_iou", else
 * DET_NMS_IOU_DEFAULT. */
double det_model_nms_iou(const det_model *m);

/* The ground resolution the model was trained at, metres per pixel: its
 * architecture's "resolution_m", else DET_RESOLUTION_M_DEFAULT (NEON's
 * 0.1 m imagery, which the shipped and DeepForest's models learnt from). */
#define DET_RESOLUTION_M_DEFAULT 0.1
double det_model_resolution_m(const det_model *m);

/* Multiply-adds x 2 of one forward pass over a w x h input. */
double det_model_flops(const det_model *m, uint32_t w, uint32_t h);

/* Resolves the weights path: `configured` when it is absolute or exists
 * relative to the current directory; else, in this order, under
 * <executable's directory>/../share/canopy/ (a relocated install), under
 * CANOPY_DATADIR (compile-time: <install prefix>/share/canopy), under
 * /usr/share/canopy/, and last under the source tree (CANOPY_SOURCE_DIR,
 * compile-time), which is tried only by an executable that runs from its
 * build tree (CANOPY_BINARY_DIR), never by an installed one. A leading
 * "models/" is kept ("models/crown-1.1.cnw" ->
 * /usr/share/canopy/models/crown-1.1.cnw). Writes the first candidate that
 * exists into out (size out_len); CNP_ERR_NOTFOUND, with every candidate
 * tried in err, when none does. */
cnp_status det_model_resolve_path(const char *configured, char *out, size_t out_len,
                                  cnp_err *err);

/* ---- CPU reference ----------------------------------------------------- */

/* Runs the network and the decode in plain C on an RGBA8 image. tile <= 0
 * processes the image in one piece; otherwise tiles of `tile` pixels (rounded
 * down to a multiple of the stride) overlapping by `overlap` pixels. Then NMS
 * at nms_iou over the whole image (>= 1: none; det_model_nms_iou gives the
 * model's value). On success *trees (malloc'd, caller frees; NULL when
 * *n == 0) holds *n trees sorted by (y, x). */
cnp_status det_ref_run(const det_model *m, const cnp_image *img, float score_threshold,
                       float nms_iou, int tile, int overlap, cnp_tree **trees, size_t *n,
                       cnp_err *err);

/* Runs the network on one RGBA8 image region without tiling and returns the
 * raw output tensor (4 x oh x ow, CHW, channels in the architecture's
 * "outputs" order as the last layer produces them). *out is malloc'd (caller
 * frees); *oh / *ow may be 0. For tests that hold other paths to it. */
cnp_status det_ref_forward(const det_model *m, const uint8_t *rgba, uint32_t stride_px,
                           uint32_t w, uint32_t h, float **out, uint32_t *oh,
                           uint32_t *ow, cnp_err *err);

/* The smallest heatmap logit v whose score (det_decode's sigmoid, 1 / (1 +
 * expf(-v)) on the host) is >= threshold; NAN when none is. The device
 * compares logits with it, so which cells pass the threshold does not
 * depend on the device's exp (OpenCL does not require it correctly
 * rounded). */
float det_logit_threshold(float threshold);

/* Decodes one output tensor (as det_ref_forward returns it) of a region whose
 * top-left pixel is (x0, y0), keeping trees with score >= threshold that are
 * 3x3 peaks and whose centre lies in [own_x0, own_x1) x [own_y0, own_y1).
 * Appends to *trees / *n / *cap (realloc'd). */
cnp_status det_decode(const det_model *m, const float *out, uint32_t oh, uint32_t ow,
                      uint32_t x0, uint32_t y0, float threshold, const float own[4],
                      cnp_tree **trees, size_t *n, size_t *cap, cnp_err *err);

typedef struct det_tile {
    uint32_t x0, y0, w, h;
    float own[4];
} det_tile;

/* Splits w x h into tiles of at most `tile` pixels a side overlapping by
 * about `overlap`, each owning the trees whose centre lies in own (the own
 * regions partition the image). tile <= 0 or an image that fits:
 * one tile. *tiles malloc'd. Shared by the reference and the engine so both
 * tile identically. */
cnp_status det_tiles_plan(uint32_t w, uint32_t h, int tile, int overlap, int stride,
                          det_tile **tiles, size_t *n, cnp_err *err);

/* Sorts trees by (y, x, score). */
void det_trees_sort(cnp_tree *trees, size_t n);

/* ---- non-maximum suppression (every model family) ------------------------ */

/* An axis-aligned box in continuous pixel coordinates, [x0, x1) x [y0, y1). */
typedef struct det_box {
    float x0, y0, x1, y1;
} det_box;

/* Whether b overlaps a by IoU > iou, computed in float with one rounding
 * per operation in a fixed sequence (the kernel's nms_overlaps does the
 * same, so both decide every pair alike). */
bool det_nms_overlaps(const det_box *a, const det_box *b, float iou);

/* Whether one of a, b lies inside the other: intersection > contain x the
 * smaller area, in the same float discipline (the kernel's nms_contains).
 * contain >= 1: never. */
bool det_nms_contains(const det_box *a, const det_box *b, float contain);

/* Greedy NMS, the C reference of the device's: boxes in the order score
 * descending, then y0, x0, y1, x1, label ascending, then index; a box is
 * kept unless an earlier kept box with the same label (labels NULL: all
 * alike) overlaps it by IoU > iou. keep (n entries, caller's) receives the
 * kept boxes' indices in that order, *n_keep their number. */
cnp_status det_nms(const det_box *boxes, const float *scores, const int *labels, size_t n,
                   float iou, uint32_t *keep, size_t *n_keep, cnp_err *err);
/* det_nms where a box is also dropped when an earlier kept box of its label
 * contains it or lies in it (det_nms_contains with contain; >= 1: det_nms). */
cnp_status det_nms_contain(const det_box *boxes, const float *scores, const int *labels,
                           size_t n, float iou, float contain, uint32_t *keep, size_t *n_keep,
                           cnp_err *err);

/* det_nms_contain's result (the same kept indices in the same order),
 * computed window by window: the boxes are sorted once, and each box is
 * tested only against the kept boxes of its window and of the eight around
 * it, in windows of side `window` or, when larger, the largest box extent
 * (the halo within which boxes can overlap). O(n log n + n x kept boxes
 * nearby) instead of O(n x all kept boxes): the merge of a raster with
 * 10^5 to 10^6 crowns. A box that is not finite makes it det_nms_contain. */
cnp_status det_nms_contain_local(const det_box *boxes, const float *scores, const int *labels,
                                 size_t n, float iou, float contain, float window,
                                 uint32_t *keep, size_t *n_keep, cnp_err *err);

/* A tree's box: the model's own box when it has one (boxed; it may have
 * zero area where torchvision clipped it to the image edge), else the
 * crown's centre +- radius. */
det_box det_tree_box(const cnp_tree *t);

/* det_nms_contain on the crowns' boxes with DET_NMS_CONTAIN, in place: the
 * first *n trees become the kept ones, in NMS order (score descending).
 * iou >= 1 or fewer than two trees: unchanged. */
cnp_status det_trees_nms(cnp_tree *trees, size_t *n, float iou, cnp_err *err);
/* det_trees_nms through det_nms_contain_local: the same trees, the same order. */
cnp_status det_trees_nms_local(cnp_tree *trees, size_t *n, float iou, cnp_err *err);

/* ---- box models (an imported RetinaNet, .cnw version 2) ------------------ */

/* Minimum score of a reported tree when [detector] score_threshold is < 0
 * ("the model's own") and the model has none: the crown models' value,
 * tuned on crown-1.1's training images. */
#define DET_SCORE_THRESHOLD_DEFAULT 0.35

/* Whether the model predicts boxes (an imported RetinaNet: det_box_engine)
 * rather than crowns (det_engine). */
bool det_model_has_boxes(const det_model *m);

/* Whether the model is a tree-type classifier (DeepForest's CropModel,
 * imported: det_backend_classify) rather than a detector. */
bool det_model_is_classifier(const det_model *m);

/* The name of a box model's class `label` ("Tree"); NULL for crown models
 * or a label out of range. */
const char *det_model_label(const det_model *m, int label);

/* The score threshold a run applies: `configured` when >= 0, else the
 * model's own (a box model's score_thresh; DET_SCORE_THRESHOLD_DEFAULT for
 * crown models). */
float det_score_threshold(const det_model *m, double configured);

/* The device engine of a box model. [detector] score_threshold and nms_iou
 * (>= 0) replace the model's score_thresh and nms_thresh; patch_size,
 * patch_overlap and patch_iou select DeepForest's tiling (patch_size 0: the
 * whole image in one call, torchvision's model(image)). */
typedef struct det_box_engine det_box_engine;
cnp_status det_box_engine_create(ocl_ctx *ctx, const det_model *m,
                                 const cnp_detector_config *dc, det_box_engine **out,
                                 cnp_err *err);
void det_box_engine_free(det_box_engine *e);
/* The patches of a w x h image (DeepForest's plan), for rasters read in
 * windows; a configuration error with patch_size 0. */
cnp_status det_box_engine_windows(const det_box_engine *e, uint32_t w, uint32_t h,
                                  det_tile **out, size_t *n, cnp_err *err);

/* The same plan from [detector] patch_size and patch_overlap alone (the CPU
 * backend's). */
cnp_status det_box_windows(const cnp_detector_config *dc, uint32_t w, uint32_t h,
                           det_tile **out, size_t *n, cnp_err *err);

/* Trees of a w x h RGBA8 image on the device, as DeepForest's predict_tile
 * (or one call with patch_size 0). *trees malloc'd, sorted by (y, x). */
cnp_status det_box_engine_run(det_box_engine *e, cl_mem rgba, uint32_t w, uint32_t h,
                              cnp_tree **trees, size_t *n, cnp_err *err);

/* One patch (a w x h image on the device) alone: its trees in its own
 * coordinates, not merged. For windowed rasters: shift each with
 * det_tree_shift, then det_box_trees_merge over all patches. */
cnp_status det_box_engine_patch(det_box_engine *e, cl_mem rgba, uint32_t w, uint32_t h,
                                 cnp_tree **trees, size_t *n, cnp_err *err);

/* Moves a tree by (dx, dy): a box model's box as DeepForest's
 * translate_predictions (shift, truncate to whole pixels), a crown's centre. */
void det_tree_shift(cnp_tree *t, uint32_t dx, uint32_t dy);

/* DeepForest's mosaic: class-agnostic NMS at iou over boxes of all patches,
 * in place, then sorted by (y, x). */
cnp_status det_box_trees_merge(cnp_tree *trees, size_t *n, float iou, cnp_err *err);

/* The C reference of det_box_engine_run on a host image. */
cnp_status det_box_ref_run(const det_model *m, const cnp_detector_config *dc,
                           const cnp_image *img, cnp_tree **trees, size_t *n, cnp_err *err);

/* ---- OpenCL engine ----------------------------------------------------- */

/* An engine owns its device buffers and enqueues on the context's queue:
 * use one engine from one thread at a time. */
typedef struct det_engine det_engine;

enum det_conv_path {
    DET_CONV_AUTO = 0,   /* measured at creation, faster one per layer */
    DET_CONV_DIRECT = 1, /* local-memory tiled direct convolution kernel */
    DET_CONV_GEMM = 2,   /* im2col + CLBlast SGEMM */
    DET_CONV_WINOGRAD = 3, /* Winograd F(2x2, 3x3): 3x3 stride-1 convs of box models */
    DET_CONV_PIXEL = 4,  /* direct kernel, a work-item per pixel: narrow convs, any stride */
    DET_CONV_WINOGRAD4 = 5, /* Winograd F(4x4, 3x3): the same convs, 4x fewer multiplications */
    DET_CONV_PATHS       /* not a path: the size of an array indexed by the path */
};

/* The path's name in [detector] conv, the paths file and the logs
 * ("direct", ..., "winograd4"; "auto" for DET_CONV_AUTO or out of range). */
const char *det_conv_path_name(enum det_conv_path p);

/* Builds the kernels, uploads the weights and sizes every device buffer once
 * for the largest tile (tile, tile_overlap, score_threshold of `dc`; NMS at
 * the model's det_model_nms_iou). conv = auto then times both convolution
 * paths per layer (at the largest tile on a GPU, at 128 px on a CPU device)
 * and keeps the faster; direct or gemm forces one. The model must outlive
 * the engine; ctx too; dc is read during the call only. */
cnp_status det_engine_create(ocl_ctx *ctx, const det_model *m, const cnp_detector_config *dc,
                             det_engine **out, cnp_err *err);

/* The NMS IoU det_engine_run applies ([detector] nms_iou, else the
 * model's); det_engine_run_nms takes another as an argument. */
float det_engine_nms_iou(const det_engine *e);
/* The tiling the engine applies to an image (for det_tiles_plan). */
void det_engine_tiling(const det_engine *e, int *tile, int *overlap, int *stride);

/* Frees device buffers and kernels; accepts NULL. */
void det_engine_free(det_engine *e);

/* Conv layers whose path was timed at creation: 0 when the choice came from
 * the file remembered next to the kernel cache (or conv was forced). */
size_t det_engine_timed_layers(const det_engine *e);
/* The file the auto choice is remembered in (for tests and operators). */
void det_engine_conv_paths_file(const det_engine *e, char *out, size_t len);

/* Forces one convolution path for every conv layer (tests, bench);
 * DET_CONV_AUTO restores the measured choice. */
void det_engine_set_conv_path(det_engine *e, enum det_conv_path path);

/* Detects trees in an RGBA8 image already on the device (w * h * 4 bytes,
 * row-major, rows packed). Everything runs on the device queue, NMS
 * included; the host reads back only the tree count (to size the NMS
 * launches) and the final tree list. *trees (malloc'd, caller frees; NULL
 * when *n == 0) sorted by (y, x). */
cnp_status det_engine_run(det_engine *e, cl_mem rgba, uint32_t w, uint32_t h,
                          cnp_tree **trees, size_t *n, cnp_err *err);

/* det_engine_run with NMS at nms_iou (>= 1: none) instead of the engine's
 * own: the trees of a patch that a later merge suppresses across patches. */
cnp_status det_engine_run_nms(det_engine *e, cl_mem rgba, uint32_t w, uint32_t h,
                              float nms_iou, cnp_tree **trees, size_t *n, cnp_err *err);

/* Runs the device NMS alone on boxes from the host (labels NULL: one
 * class), with the semantics of det_nms: keep (n entries, caller's) receives
 * the kept indices in NMS order, *n_keep their number. For box models'
 * decoders and for tests. */
cnp_status det_engine_nms(det_engine *e, const det_box *boxes, const float *scores,
                          const int *labels, size_t n, float iou, uint32_t *keep,
                          size_t *n_keep, cnp_err *err);
/* det_engine_nms with det_nms_contain's semantics (crowns: DET_NMS_CONTAIN). */
cnp_status det_engine_nms_contain(det_engine *e, const det_box *boxes, const float *scores,
                                  const int *labels, size_t n, float iou, float contain,
                                  uint32_t *keep, size_t *n_keep, cnp_err *err);

/* Runs the network alone (no decode) on the w x h region at (x0, y0) of the
 * device image (w, h at most the tile) and reads the output tensor back
 * (4 x oh x ow, malloc'd, caller frees). For tests. */
cnp_status det_engine_forward(det_engine *e, cl_mem rgba, uint32_t img_w, uint32_t x0,
                              uint32_t y0, uint32_t w, uint32_t h, float **out,
                              uint32_t *oh, uint32_t *ow, cnp_err *err);

/* Per-layer information for benchmarks and logs. */
typedef struct det_layer_info {
    const char *name;          /* "c1", or "pool" */
    int is_conv;
    int in, out, k, dilation;
    uint32_t out_w, out_h;     /* at the largest tile */
    double flops;              /* at the largest tile */
    enum det_conv_path chosen; /* after measurement */
    double direct_s, gemm_s;   /* measured at creation, 0 for pools / when forced */
} det_layer_info;

size_t det_engine_layer_count(const det_engine *e);
void det_engine_layer_info(const det_engine *e, size_t i, det_layer_info *info);

/* Times layer i alone (median of `repeats` runs, clFinish each) with the
 * given path on the largest-tile buffers; pools ignore the path. */
cnp_status det_engine_time_layer(det_engine *e, size_t i, enum det_conv_path path,
                                 int repeats, double *seconds, cnp_err *err);

/* The largest tile side the engine was sized for. */
uint32_t det_engine_tile(const det_engine *e);
/* Tiles of equal size that go through the layers together ([detector]
 * patch_batch, as many as fit the device's memory budget). */
int det_engine_batch(const det_engine *e);

/* ---- one model interface: a loaded model on a backend -------------------
 *
 * What the pipeline holds: a model (crown or box, later classifiers) bound to
 * a backend (the OpenCL device, or the CPU reference), behind one table of
 * operations (src/detect/model_backend.h). The caller never names the model
 * kind nor an engine function. */

typedef struct det_backend det_backend;

/* An RGBA8 image (rows packed, w * h * 4 bytes) as a backend reads it: a
 * device backend reads dev (on its context's queue), the CPU backend host;
 * a caller that may hold either kind fills both. */
typedef struct det_pixels {
    uint32_t w, h;
    const uint8_t *host;
    cl_mem dev;
    /* Classifiers only: these pixels are the window at (x0, y0) of a
     * full_w x full_h raster (full_w 0: the whole image); trees are in the
     * raster's coordinates and their crops inside the window. */
    uint32_t x0, y0, full_w, full_h;
} det_pixels;

/* The trees one patch gave, in the patch's own coordinates, not merged. */
typedef struct det_found {
    cnp_tree *trees; /* malloc'd; NULL when n == 0 */
    size_t n;
} det_found;

/* Binds model m (which must outlive the handle) to the OpenCL context dev,
 * or to the CPU reference when dev is NULL, with [detector] dc (read during
 * the call only): the first backend table that takes this model on this
 * kind of device. */
cnp_status det_backend_create(const det_model *m, ocl_ctx *dev, const cnp_detector_config *dc,
                              det_backend **out, cnp_err *err);
/* Frees the handle; accepts NULL. */
void det_backend_free(det_backend *b);
/* "crown/opencl", "box/cpu", ...: the table's name (logs, tests). */
const char *det_backend_name(const det_backend *b);
/* Side of the windows a raster too large to hold is read in (the model's
 * tile or patch); 0 when the model has none (patch_size 0). */
uint32_t det_backend_window_side(const det_backend *b);
/* The windows of a w x h image (det_tile: region and the part it owns),
 * identical on every backend of a model. *out malloc'd. */
cnp_status det_backend_plan(const det_backend *b, uint32_t w, uint32_t h, det_tile **out,
                            size_t *n, cnp_err *err);
/* Runs the model on a batch of n patches (each its own image): out[i] gets
 * patch i's trees in its coordinates, unmerged (shift each with
 * det_tree_shift, keep a crown in the tile owning its centre, then merge).
 * On failure every out[i] is empty. */
cnp_status det_backend_run(det_backend *b, const det_pixels *patches, size_t n, det_found *out,
                           cnp_err *err);
/* The IoU the model merges patches at ([detector] nms_iou or the model's for
 * crowns, patch_iou for box models). */
float det_backend_merge_iou(const det_backend *b);
/* NMS over trees of every patch at iou (>= 1: none), in place, then sorted
 * by (y, x). */
cnp_status det_backend_merge(det_backend *b, cnp_tree *trees, size_t *n, float iou,
                             cnp_err *err);
/* The whole image: plan, run, merge as one (on the device without host round
 * trips where the backend can). *trees malloc'd, sorted by (y, x). */
cnp_status det_backend_detect(det_backend *b, const det_pixels *img, cnp_tree **trees,
                              size_t *n, cnp_err *err);
/* Classifiers (det_model_is_classifier): each of the n trees of img gets
 * its type and type_score (typed set) from the crop of its box x0..y1 (for
 * crown models: centre +/- radius) cut, resized and normalised by the
 * model's rules (models/FORMAT.md, "cropmodel"). A detector's handle
 * refuses (CNP_ERR_INVALID). */
cnp_status det_backend_classify(det_backend *b, const det_pixels *img, cnp_tree *trees,
                                size_t n, cnp_err *err);

/* A classifier's crop of tree t in a W x H image, {x, y, w, h} (DeepForest's
 * BoundingBoxDataset rule with the model's expand); for a detector, the
 * clipped box truncated alike. */
void det_model_crop_rect(const det_model *m, const cnp_tree *t, uint32_t W, uint32_t H,
                         uint32_t r[4]);

/* A classifier's number of types and the name of type k (NULL out of
 * range or for a detector). */
int det_model_type_count(const det_model *m);
const char *det_model_type_name(const det_model *m, int k);

/* Frees the n results of det_backend_run and empties them. */
void det_found_free(det_found *f, size_t n);

/* ---- evaluation ------------------------------------------------------- */

/* precision = matched / predictions (1 when there are no predictions: no
 * false positives), recall = matched / annotations (1 when there are none),
 * f1 their harmonic mean (0 when both are 0). */
typedef struct det_match_stats {
    size_t predictions, annotations, matched;
    double precision, recall, f1;
    long count_error; /* predictions - annotations */
} det_match_stats;

/* Intersection over union of two boxes (0 when both are empty). */
double det_box_iou(const det_box *a, const det_box *b);

/* Matches predictions one-to-one to annotations: predictions in order of
 * score descending (ties: lower index first), each takes the unused
 * annotation of highest IoU (ties: lower index) when that IoU >= min_iou. */
void det_match(const cnp_tree *pred, size_t n_pred, const det_box *truth, size_t n_truth,
               double min_iou, det_match_stats *out);
/* det_match that also gives, for each prediction i, the annotation it
 * matched in pair[i] (SIZE_MAX: none); pair holds n_pred entries or is NULL. */
void det_match_pairs(const cnp_tree *pred, size_t n_pred, const det_box *truth, size_t n_truth,
                     double min_iou, size_t *pair, det_match_stats *out);

/* Fills precision, recall, f1 and count_error from the three counts. */
void det_match_stats_finish(det_match_stats *s);

/* Reads one annotation CSV (image_path,xmin,ymin,xmax,ymax,label; xmax and
 * ymax inclusive pixel indices, so the box is [xmin, xmax+1) x
 * [ymin, ymax+1)) and returns the boxes whose image_path equals `image`
 * (NULL: all rows). *boxes malloc'd, caller frees. */
cnp_status det_annotations_read(const char *csv_path, const char *image, det_box **boxes,
                                size_t *n, cnp_err *err);
/* The tree type of each row det_annotations_read returns for `image`, as an
 * index into classifier cls's types (det_model_type_name; -1: the row's type
 * is empty): the `type` column, else the `label` column when every label of
 * the file names one of cls's types (DeepForest's annotations keep the class
 * in `label`). *types NULL and *n 0 when the file has no such column. A type
 * that is not one of cls's is refused naming file, line and value.
 * *types malloc'd, caller frees. */
cnp_status det_annotations_types(const char *csv_path, const char *image, const det_model *cls,
                                 int **types, size_t *n, cnp_err *err);

/* The distinct image_path values of an annotation CSV, in order of first
 * appearance. *names is a malloc'd array of malloc'd strings; free with
 * det_names_free. */
cnp_status det_annotations_images(const char *csv_path, char ***names, size_t *n,
                                  cnp_err *err);
void det_names_free(char **names, size_t n);


/* ---- the CPU backend ([device] backend; src/detect/cpu_backend.c) -------- */

/* "auto", "opencl" or "cpu". */
const char *det_backend_kind_name(enum cnp_backend b);

/* Whether this build has the CPU backend (oneDNN, CANOPY_WITH_DNNL). */
bool det_cpu_backend_available(void);

/* Resolves [device] backend: auto is cpu where the OpenCL device (ctx; NULL:
 * none) is a CPU or there is none and the CPU backend is built, else opencl.
 * Refuses cpu without the CPU backend and opencl (or auto) without a device. */
cnp_status det_backend_choose(enum cnp_backend want, ocl_ctx *ctx, enum cnp_backend *out,
                              cnp_err *err);

/* A crown or box model on the host (oneDNN), with det_engine_create's and
 * det_box_engine_create's reading of dc; threads 0: every core. cache_dir:
 * where the measured convolution choices are remembered ([opencl]
 * cache_dir; "": the default cache directory, cache.h; NULL: nowhere,
 * measured at every start). m must outlive it. */
typedef struct det_cpu_engine det_cpu_engine;
cnp_status det_cpu_engine_create(const det_model *m, const cnp_detector_config *dc,
                                 int threads, const char *cache_dir, det_cpu_engine **out,
                                 cnp_err *err);
void det_cpu_engine_free(det_cpu_engine *e);
int det_cpu_engine_threads(const det_cpu_engine *e);
/* det_engine_run / det_box_engine_run of a host image. */
cnp_status det_cpu_engine_run(det_cpu_engine *e, const cnp_image *img, cnp_tree **trees,
                              size_t *n, cnp_err *err);
/* One window of a raster read in windows, unmerged (crowns: no NMS; box
 * models: the window as one patch), in window coordinates. */
cnp_status det_cpu_engine_window(det_cpu_engine *e, const cnp_image *win, cnp_tree **trees,
                                 size_t *n, cnp_err *err);
/* The merge over all windows' trees at iou: the crown NMS or the patches'
 * NMS; det_cpu_engine_merge_iou: the model's ([detector] nms_iou or the
 * model's for crowns, patch_iou for box models). */
float det_cpu_engine_merge_iou(const det_cpu_engine *e);
cnp_status det_cpu_engine_merge(det_cpu_engine *e, cnp_tree *trees, size_t *n, float iou,
                                cnp_err *err);

/* The model interface on the CPU backend: det_backend_create's handle with
 * the oneDNN tables (cpu/backend_dnnl.c) instead of the C reference's;
 * cache_dir as det_cpu_engine_create's; threads 0: every core. */
cnp_status det_backend_create_cpu(const det_model *m, const char *cache_dir,
                                  const cnp_detector_config *dc, int threads,
                                  det_backend **out, cnp_err *err);
/* The file under cache_dir (see det_cpu_engine_create; "" when NULL) that
 * remembers the CPU backend's measured convolution choices for model m on
 * `threads` threads (0: every core): keyed by this machine's CPU
 * (cnp_cpu_identity), oneDNN's version, the model, the threads and `use`
 * (the detector 0, the classifier 1). Creates the directory. */
void det_cpu_choices_file(const char *cache_dir, const det_model *m, int threads, unsigned use,
                          char *out, size_t len);
/* The window side (tile or patch size; 0: a box model's whole image) and
 * the windows of a w x h raster. */
uint32_t det_cpu_engine_window_side(const det_cpu_engine *e, uint32_t *overlap, int *stride);
cnp_status det_cpu_engine_windows(const det_cpu_engine *e, uint32_t w, uint32_t h,
                                  det_tile **out, size_t *n, cnp_err *err);

#endif
