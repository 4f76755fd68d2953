/* Crown models (.cnw version 1) on the CPU backend: the model's layers as
 * a graph (det_crown_graph) through the oneDNN executor (dnnl_graph.h),
 * with the C reference's preprocessing, tiling, peak decode and NMS, so the
 * trees are det_ref_run's within the engine tests' bounds. Not part of any
 * API. */
#ifndef CANOPY_DETECT_CPU_DNNL_CROWN_H
#define CANOPY_DETECT_CPU_DNNL_CROWN_H

#include "canopy/config.h"
#include "canopy/detect.h"
#include "canopy/image.h"
#include "detect/cpu/dnnl_graph.h"

typedef struct det_dnnl_crown det_dnnl_crown;

/* The model m (a crown model; it must outlive the runner) with
 * det_engine_create's reading of dc: tile (a multiple of the model's
 * stride), tile_overlap, score_threshold and nms_iou (negative: the
 * model's). opts: the executor's (NULL: defaults). */
cnp_status det_dnnl_crown_create(const det_model *m, const cnp_detector_config *dc,
                                 const det_dnnl_opts *opts, det_dnnl_crown **out,
                                 cnp_err *err);

/* Frees the runner; accepts NULL. */
void det_dnnl_crown_free(det_dnnl_crown *e);

/* det_ref_forward on the CPU backend: the network's output (4 x *oh x *ow,
 * malloc'd) for the w x h region at rgba (rows stride_px pixels apart). */
cnp_status det_dnnl_crown_forward(det_dnnl_crown *e, const uint8_t *rgba, uint32_t stride_px,
                                  uint32_t w, uint32_t h, float **out, uint32_t *oh,
                                  uint32_t *ow, cnp_err *err);

/* det_engine_run on the CPU backend: the trees of img, tiled, decoded,
 * suppressed over the whole image and sorted (*trees malloc'd). */
cnp_status det_dnnl_crown_run(det_dnnl_crown *e, const cnp_image *img, cnp_tree **trees,
                              size_t *n, cnp_err *err);

/* The NMS IoU of det_dnnl_crown_run (1: none), and the tiling. */
void det_dnnl_crown_set_nms_iou(det_dnnl_crown *e, float iou);
void det_dnnl_crown_tiling(const det_dnnl_crown *e, int *tile, int *overlap, int *stride);

/* The executor (threads, per-node algorithms, timing). */
det_dnnl_graph *det_dnnl_crown_graph(det_dnnl_crown *e);

#endif
