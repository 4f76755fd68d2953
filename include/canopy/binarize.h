/* Binarization: a channel (luma or excess green) thresholded by Otsu, a fixed
 * value or a local mean. Foreground (vegetation / bright) is value > threshold.
 *
 * The OpenCL engine and the CPU reference produce bit-identical masks,
 * thresholds and foreground counts. */
#ifndef CANOPY_BINARIZE_H
#define CANOPY_BINARIZE_H

#include <stdint.h>

#include <CL/cl.h>

#include "canopy/config.h"
#include "canopy/gpu.h"
#include "canopy/image.h"
#include "canopy/status.h"

typedef struct bin_params {
    enum cnp_bin_method method;
    enum cnp_bin_channel channel;
    int threshold; /* fixed */
    int window;    /* adaptive: odd, 3..255 */
    int offset;    /* adaptive */
} bin_params;

typedef struct bin_result {
    int threshold;       /* otsu/fixed: the threshold used; adaptive: -1 */
    uint64_t foreground; /* pixels in the mask */
    double canopy_cover; /* foreground / pixels */
} bin_result;

/* Copies the [binarize] section; fails on an even or out-of-range window. */
cnp_status bin_params_from_config(const cnp_binarize_config *cfg, bin_params *out,
                                  cnp_err *err);

/* Channel value of one RGBA pixel, 0..255 (the formula both paths share). */
uint8_t bin_channel_value(const uint8_t *rgba, enum cnp_bin_channel channel);

/* Otsu's threshold of a 256-bin histogram (class 0 is v <= t; ties to the
 * smallest t; 0 for a histogram with a single occupied bin). */
int bin_otsu(const uint32_t hist[256]);

/* CPU reference. mask: width*height bytes, 255 foreground, 0 background. */
cnp_status bin_ref_run(const bin_params *p, const cnp_image *img, uint8_t *mask,
                       bin_result *res, cnp_err *err);

typedef struct bin_engine bin_engine;

cnp_status bin_engine_create(ocl_ctx *ctx, const bin_params *p, bin_engine **out, cnp_err *err);
void bin_engine_free(bin_engine *e);

/* Binarizes the RGBA8 image in device buffer `rgba` (width*height*4 bytes).
 * Device buffers grow to the largest image seen and are reused. Enqueues all
 * kernels and the read of the mask and the scalars into host memory `mask`,
 * then waits once. Returns only once the context's queue is finished, on
 * failure too: nothing it enqueued (nor a non-blocking upload of `rgba` the
 * caller enqueued before on the same queue) is still pending. On failure err
 * names the first OpenCL call that failed and its own error code. */
cnp_status bin_engine_run(bin_engine *e, cl_mem rgba, uint32_t width, uint32_t height,
                          uint8_t *mask, bin_result *res, cnp_err *err);

/* Convenience: uploads img, then bin_engine_run. */
cnp_status bin_engine_run_image(bin_engine *e, const cnp_image *img, uint8_t *mask,
                                bin_result *res, cnp_err *err);

#endif
