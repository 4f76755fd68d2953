/* DeepForest's tiled prediction (predict_tile) for box models: the patch
 * plan of the slidingwindow package and the mosaic of the patches' boxes.
 * Shared by the C reference, the engine's callers and the pipeline, so all
 * cut and merge alike. Not part of the public API.
 *
 * The rules (DeepForest 2.x, src/deepforest/predict.py and the
 * slidingwindow package it calls; tools/deepforest/README.md):
 *   - patch side per axis: min(patch_size, image side); overlap per axis
 *     floor(side * patch_overlap) (double); step = side - overlap;
 *   - offsets 0, step, 2*step, ... up to image - side, plus image - side
 *     itself when the last one falls short: the last patch is flush with
 *     the right / bottom edge;
 *   - patches in x-major order (every y offset of the first x offset first);
 *   - each patch predicted alone (the model's own transform, NMS and
 *     detections_per_img), its boxes shifted by the patch origin in double
 *     and truncated to whole pixels (pandas astype(int));
 *   - then class-agnostic NMS over all patches' boxes at patch_iou
 *     (torchvision.ops.nms; a single box skips it). */
#ifndef CANOPY_DETECT_PATCHES_H
#define CANOPY_DETECT_PATCHES_H

#include <stddef.h>
#include <stdint.h>

#include "canopy/detect.h"
#include "detect/graph.h"

/* DeepForest's predict_tile defaults. */
#define DET_PATCH_SIZE_DEFAULT 400
#define DET_PATCH_OVERLAP_DEFAULT 0.05
#define DET_PATCH_IOU_DEFAULT 0.15

/* The patches of a w x h image, in DeepForest's order. A patch's `own` is
 * its share of the image's pixels (overlaps split at their middle: the
 * shares partition the image), for callers that take each pixel once (the
 * windowed mask); its boxes are all kept and merged by the mosaic NMS.
 * patch_size must be >= 1, overlap in [0, 1). *out malloc'd. */
cnp_status det_patches_plan(uint32_t w, uint32_t h, int patch_size, double overlap,
                            det_tile **out, size_t *n, cnp_err *err);

/* Predicts one patch: detections in the patch's own coordinates
 * (*out malloc'd, may be NULL when *n == 0). */
typedef cnp_status (*det_patch_fn)(void *ctx, const det_tile *patch, det_detection **out,
                                   size_t *n, cnp_err *err);

/* DeepForest's predict_tile over a w x h image: plans the patches, calls fn
 * for each, shifts and truncates the boxes and merges them by NMS at iou
 * (>= 1: no merge). *out (malloc'd; NULL when *n == 0) in NMS order, score
 * descending. */
cnp_status det_predict_tiled(uint32_t w, uint32_t h, int patch_size, double overlap, float iou,
                             det_patch_fn fn, void *ctx, det_detection **out, size_t *n,
                             cnp_err *err);

/* Predicts n patches of equal size together: out[i] / n_out[i] patch i's
 * detections in its own coordinates (malloc'd, may be NULL when 0). */
typedef cnp_status (*det_patch_batch_fn)(void *ctx, const det_tile *patches, size_t n,
                                         det_detection **out, size_t *n_out, cnp_err *err);

/* det_predict_tiled with the patches predicted `batch` at a time (the
 * plan's patches all have one size); the shift, truncation and merge are
 * the same, in the same patch order, so the result is the same as
 * det_predict_tiled's when fn gives each patch what the one-patch function
 * would. */
cnp_status det_predict_tiled_batch(uint32_t w, uint32_t h, int patch_size, double overlap,
                                   float iou, size_t batch, det_patch_batch_fn fn, void *ctx,
                                   det_detection **out, size_t *n, cnp_err *err);

/* Shifts one patch's detections by (dx, dy) and truncates them to whole
 * pixels as DeepForest's translate_predictions does. */
void det_detections_shift(det_detection *d, size_t n, uint32_t dx, uint32_t dy);

/* Class-agnostic NMS of detections in place (det_nms order); iou >= 1 or
 * fewer than two: unchanged. */
cnp_status det_detections_nms(det_detection *d, size_t *n, float iou, cnp_err *err);

/* A box model's detection as a tree: box, label, score; centre = the box's
 * centre, radius = half its mean side. */
cnp_tree det_detection_tree(const det_detection *d);

#endif
