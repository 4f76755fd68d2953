/* CPU reference of kernels/binarize.cl: the same integer formulas and the same
 * correctly rounded double arithmetic, in plain C. */
#include <stdlib.h>
#include <string.h>

#include "canopy/binarize.h"

static uint64_t mask_global(const uint8_t *value, size_t n, int thr, uint8_t *mask)
{
    uint64_t fg = 0;
    for (size_t i = 0; i < n; i++) {
        mask[i] = value[i] > thr ? 255 : 0;
        fg += value[i] > thr;
    }
    return fg;
}

/* Box sums with the window clipped to the image, via an integral image. */
static uint64_t mask_adaptive(const uint8_t *value, uint32_t w, uint32_t h, int r, int offset,
                              uint8_t *mask, cnp_err *err, bool *ok)
{
    size_t iw = (size_t)w + 1;
    uint64_t *ii = calloc(iw * ((size_t)h + 1), sizeof *ii);
    uint64_t fg = 0;
    *ok = ii != NULL;
    if (!ii) {
        cnp_err_set(err, "out of memory for a %ux%u integral image", w, h);
        return 0;
    }
    for (uint32_t y = 0; y < h; y++) {
        uint64_t row = 0;
        for (uint32_t x = 0; x < w; x++) {
            row += value[(size_t)y * w + x];
            ii[(y + 1) * iw + x + 1] = ii[y * iw + x + 1] + row;
        }
    }
    for (int y = 0; y < (int)h; y++) {
        int ya = y - r < 0 ? 0 : y - r;
        int yb = y + r > (int)h - 1 ? (int)h - 1 : y + r;
        for (int x = 0; x < (int)w; x++) {
            int xa = x - r < 0 ? 0 : x - r;
            int xb = x + r > (int)w - 1 ? (int)w - 1 : x + r;
            uint64_t sum = ii[(size_t)(yb + 1) * iw + (size_t)xb + 1] - ii[(size_t)ya * iw + (size_t)xb + 1] -
                           ii[(size_t)(yb + 1) * iw + (size_t)xa] + ii[(size_t)ya * iw + (size_t)xa];
            long long count = (long long)(xb - xa + 1) * (yb - ya + 1);
            long long lhs = ((long long)value[(size_t)y * w + x] + offset) * count;
            bool on = lhs > (long long)sum;
            mask[(size_t)y * w + x] = on ? 255 : 0;
            fg += on;
        }
    }
    free(ii);
    return fg;
}

cnp_status bin_ref_run(const bin_params *p, const cnp_image *img, uint8_t *mask,
                       bin_result *res, cnp_err *err)
{
    size_t n = (size_t)img->width * img->height;
    uint8_t *value = malloc(n ? n : 1);
    uint32_t hist[256] = {0};
    if (!value) {
        cnp_err_set(err, "out of memory for a %ux%u channel", img->width, img->height);
        return CNP_ERR_NOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        value[i] = bin_channel_value(img->rgba + 4 * i, p->channel);
        if (img->rgba[4 * i + 3]) /* nodata (alpha 0) stays out of the threshold */
            hist[value[i]]++;
    }
    res->threshold = -1;
    if (p->method == CNP_BIN_ADAPTIVE) {
        bool ok;
        res->foreground = mask_adaptive(value, img->width, img->height, p->window / 2,
                                        p->offset, mask, err, &ok);
        if (!ok) {
            free(value);
            return CNP_ERR_NOMEM;
        }
    } else {
        res->threshold = p->method == CNP_BIN_OTSU ? bin_otsu(hist) : p->threshold;
        res->foreground = mask_global(value, n, res->threshold, mask);
    }
    res->canopy_cover = n ? (double)res->foreground / (double)n : 0.0;
    free(value);
    return CNP_OK;
}
