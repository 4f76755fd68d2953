/* The GEMMs a model's engine runs per image (im2col + SGEMM for every
 * convolution), for `canopy tune`. */
#ifndef CANOPY_DETECT_GEMM_SHAPES_H
#define CANOPY_DETECT_GEMM_SHAPES_H

#include "canopy/config.h"
#include "canopy/detect.h"
#include "gpu/tune.h"

/* Adds m's GEMM shapes to out[0..*n) (equal shapes counted once, with
 * their count), at the size the engine runs: box models one patch of
 * [detector] patch_size (0: min_size) as the model transforms it, `batch`
 * patches at a time; crown models a [detector] tile. */
cnp_status det_model_gemm_shapes(const det_model *m, const cnp_detector_config *dc, int batch,
                                 ocl_gemm_shape *out, size_t cap, size_t *n, cnp_err *err);

#endif
