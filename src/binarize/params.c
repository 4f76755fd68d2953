/* What the device binarizer, its CPU reference and the windowed stream share:
 * the checked parameters and Otsu's threshold of a histogram. */
#include "canopy/binarize.h"

cnp_status bin_params_from_config(const cnp_binarize_config *cfg, bin_params *out,
                                  cnp_err *err)
{
    out->method = cfg->method;
    out->channel = cfg->channel;
    out->threshold = cfg->threshold;
    out->window = cfg->window;
    out->offset = cfg->offset;
    if (out->window < 3 || out->window > 255 || out->window % 2 == 0) {
        cnp_err_set(err, "[binarize] window: %d must be odd, between 3 and 255", out->window);
        return CNP_ERR_CONFIG;
    }
    if (out->threshold < 0 || out->threshold > 255) {
        cnp_err_set(err, "[binarize] threshold: %d is out of range [0, 255]", out->threshold);
        return CNP_ERR_CONFIG;
    }
    return CNP_OK;
}

int bin_otsu(const uint32_t hist[256])
{
    uint64_t n = 0, total = 0;
    for (int t = 0; t < 256; t++) {
        n += hist[t];
        total += (uint64_t)t * hist[t];
    }
    uint64_t w0 = 0, s0 = 0;
    double best = -1.0;
    int best_t = 0;
    for (int t = 0; t < 256; t++) {
        w0 += hist[t];
        s0 += (uint64_t)t * hist[t];
        uint64_t w1 = n - w0;
        if (w0 == 0 || w1 == 0)
            continue;
        double d = (double)w0 * (double)total - (double)n * (double)s0;
        double var = d * d / ((double)w0 * (double)w1);
        if (var > best) {
            best = var;
            best_t = t;
        }
    }
    return best_t;
}
