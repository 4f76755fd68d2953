/* Binarization of a raster read in windows (the window stage): the global
 * histogram gathered pixel by pixel, the mask produced band by band from the
 * stored channel values (binarize.h, "streaming"). */
#include "canopy/binarize.h"

cnp_status bin_stream_init(bin_stream *s, const cnp_binarize_config *cfg, cnp_err *err)
{
    bin_params p;
    cnp_status result = bin_params_from_config(cfg, &p, err);
    if (result != CNP_OK)
        return result;
    if (p.method == CNP_BIN_ADAPTIVE) {
        cnp_err_set(err, "adaptive binarization needs the whole image: use otsu or fixed");
        return CNP_ERR_INVALID;
    }
    *s = (bin_stream){.method = p.method, .channel = p.channel, .threshold = p.threshold};
    return CNP_OK;
}

int bin_stream_threshold(const bin_stream *s)
{
    return s->method == CNP_BIN_OTSU ? bin_otsu(s->hist) : s->threshold;
}

uint64_t bin_stream_mask(int threshold, const uint8_t *pairs, size_t n, uint8_t nodata,
                         uint8_t *mask)
{
    uint64_t fg = 0;
    for (size_t i = 0; i < n; i++) {
        mask[i] = !pairs[2 * i + 1] ? nodata : (int)pairs[2 * i] > threshold ? 255 : 0;
        fg += mask[i] == 255;
    }
    return fg;
}
