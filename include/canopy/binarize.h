/* Binarization: a channel (luma or excess green) thresholded by Otsu, a fixed
 * value or a local mean. Foreground (vegetation / bright) is value > threshold.
 *
 * The OpenCL engine and the CPU reference produce bit-identical masks,
 * thresholds and foreground counts. */
#ifndef CANOPY_BINARIZE_H
#define CANOPY_BINARIZE_H

#include <stdbool.h>
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

/* Channel value of one RGBA pixel, 0..255 (the formula every path shares;
 * kernels/binarize.cl computes the same). Inline: the C paths call it per
 * pixel. */
static inline uint8_t bin_channel_value(const uint8_t *p, enum cnp_bin_channel channel)
{
    if (channel == CNP_CH_LUMA)
        return (uint8_t)((299u * p[0] + 587u * p[1] + 114u * p[2] + 500u) / 1000u);
    int exg = 2 * (int)p[1] - (int)p[0] - (int)p[2] + 510;
    return (uint8_t)((exg * 255 + 510) / 1020);
}

/* Otsu's threshold of a 256-bin histogram (class 0 is v <= t; ties to the
 * smallest t; 0 for a histogram with a single occupied bin). */
int bin_otsu(const uint32_t hist[256]);

/* CPU reference. mask: width*height bytes, 255 foreground, 0 background. */
cnp_status bin_ref_run(const bin_params *p, const cnp_image *img, uint8_t *mask,
                       bin_result *res, cnp_err *err);

/* The production C path (binarize_cpu.c) of a machine without an OpenCL
 * device: rgba is width*height RGBA8 pixels in host memory; results are
 * bit-identical to bin_ref_run's (and the device's), on OpenMP threads. */
cnp_status bin_cpu_run(const bin_params *p, const uint8_t *rgba, uint32_t width, uint32_t height,
                       uint8_t *mask, bin_result *res, cnp_err *err);

/* ---- streaming: a raster too large to hold, binarized window by window ---
 *
 * Pass 1 feeds every pixel once (any order) through bin_stream_put, which
 * counts the histogram and the nodata pixels and gives the pixel's stored
 * form (value, valid); the caller keeps those pairs (on disk). Then
 * bin_stream_threshold gives the global threshold (Otsu of the whole
 * histogram, or the fixed one), and pass 2 turns stored pairs into mask
 * rows with bin_stream_mask. The result equals bin_ref_run's (and the
 * device's) on the whole image with nodata left out; adaptive thresholds
 * need the neighbourhood and are not streamed (bin_stream_init refuses). */
typedef struct bin_stream {
    enum cnp_bin_method method;
    enum cnp_bin_channel channel;
    int threshold;       /* fixed */
    uint32_t hist[256];  /* valid pixels' values */
    uint64_t nodata;     /* pixels with alpha 0 */
} bin_stream;

/* Starts a stream for the [binarize] section: CNP_ERR_INVALID for the
 * adaptive method, CNP_ERR_CONFIG as bin_params_from_config. */
cnp_status bin_stream_init(bin_stream *s, const cnp_binarize_config *cfg, cnp_err *err);

/* Counts one RGBA pixel and writes its stored form: out[0] the channel
 * value, out[1] 1 when valid (alpha != 0), else 0. */
static inline void bin_stream_put(bin_stream *s, const uint8_t *rgba, uint8_t out[2])
{
    uint8_t v = bin_channel_value(rgba, s->channel);
    bool valid = rgba[3] != 0;
    if (valid)
        s->hist[v]++;
    else
        s->nodata++;
    out[0] = v;
    out[1] = valid;
}

/* The threshold of everything put so far: Otsu's or the fixed one. */
int bin_stream_threshold(const bin_stream *s);

/* Mask bytes of n stored pairs: 255 foreground (valid and value >
 * threshold), 0 background, `nodata` where the pixel was not valid (0 makes
 * nodata background; the window stage passes IMG_MASK_NODATA). Returns how
 * many are foreground. */
uint64_t bin_stream_mask(int threshold, const uint8_t *pairs, size_t n, uint8_t nodata,
                         uint8_t *mask);

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
