/* The production C path of binarization, for machines without an OpenCL
 * device: the integer formulas of kernels/binarize.cl and bin_ref_run
 * (binarize_ref.c), so thresholds, masks and counts are bit-identical, but
 * written for speed:
 *
 *   otsu / fixed  one pass over the pixels writes the channel value into the
 *                 mask buffer and counts a histogram per block (no extra
 *                 image-sized buffer), then the mask is thresholded in place;
 *   adaptive      box sums from running column sums over a band of rows and a
 *                 prefix along each row: O(width) scratch per band instead of
 *                 the reference's 8-byte-per-pixel integral image.
 *
 * Blocks and bands are split across OpenMP threads where canopy is built with
 * OpenMP (the oneDNN backend links it); without it the loops run serially. */
#include <stdlib.h>
#include <string.h>

#include "canopy/binarize.h"

#ifdef _OPENMP
#define PARALLEL_FOR _Pragma("omp parallel for schedule(dynamic, 1)")
#else
#define PARALLEL_FOR
#endif

enum {
    BLOCK = 1 << 16, /* pixels per histogram / threshold block */
    BAND = 128,      /* rows per adaptive band */
};

/* Channel values of n pixels into value[], counted into hist unless NULL
 * (alpha-0 pixels, nodata, stay out of the histogram as in the reference). */
static void channel_block(const uint8_t *rgba, size_t n, enum cnp_bin_channel ch,
                          uint8_t *value, uint32_t *hist)
{
    if (!hist) {
        for (size_t i = 0; i < n; i++)
            value[i] = bin_channel_value(rgba + 4 * i, ch);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        const uint8_t *p = rgba + 4 * i;
        uint8_t v = bin_channel_value(p, ch);
        value[i] = v;
        hist[v] += p[3] != 0;
    }
}

static uint64_t threshold_block(uint8_t *mask, size_t n, int thr)
{
    uint64_t fg = 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t on = mask[i] > thr;
        mask[i] = (uint8_t)-on;
        fg += on;
    }
    return fg;
}

static cnp_status run_global(const bin_params *p, const uint8_t *rgba, size_t n, uint8_t *mask,
                             bin_result *res, cnp_err *err)
{
    long nb = (long)((n + BLOCK - 1) / BLOCK);
    uint32_t(*hists)[256] = calloc((size_t)nb, sizeof *hists);
    uint64_t *fgs = calloc((size_t)nb, sizeof *fgs);
    if (!hists || !fgs) {
        free(hists);
        free(fgs);
        cnp_err_set(err, "out of memory for the histograms of %zu pixels", n);
        return CNP_ERR_NOMEM;
    }
    PARALLEL_FOR
    for (long b = 0; b < nb; b++) {
        size_t i0 = (size_t)b * BLOCK, len = n - i0 < BLOCK ? n - i0 : BLOCK;
        channel_block(rgba + 4 * i0, len, p->channel, mask + i0, hists[b]);
    }
    uint32_t hist[256] = {0};
    for (long b = 0; b < nb; b++)
        for (int v = 0; v < 256; v++)
            hist[v] += hists[b][v];
    int thr = p->method == CNP_BIN_OTSU ? bin_otsu(hist) : p->threshold;
    PARALLEL_FOR
    for (long b = 0; b < nb; b++) {
        size_t i0 = (size_t)b * BLOCK, len = n - i0 < BLOCK ? n - i0 : BLOCK;
        fgs[b] = threshold_block(mask + i0, len, thr);
    }
    res->threshold = thr;
    res->foreground = 0;
    for (long b = 0; b < nb; b++)
        res->foreground += fgs[b];
    free(hists);
    free(fgs);
    return CNP_OK;
}

/* Adds (sign 1) or removes (sign -1) row y of value into the column sums. */
static void col_update(uint32_t *col, const uint8_t *row, uint32_t w, int sign)
{
    if (sign > 0)
        for (uint32_t x = 0; x < w; x++)
            col[x] += row[x];
    else
        for (uint32_t x = 0; x < w; x++)
            col[x] -= row[x];
}

/* Rows y0..y1-1 of the adaptive mask; scratch holds 2 * (w + 1) words.
 * Returns the band's foreground. Sums stay below 255 * 255^2 < 2^32. */
static uint64_t adaptive_band(const uint8_t *value, uint32_t w, uint32_t h, int r, int offset,
                              uint32_t y0, uint32_t y1, uint32_t *scratch, uint8_t *mask)
{
    uint32_t *col = scratch, *pre = scratch + w + 1;
    uint64_t fg = 0;
    memset(col, 0, w * sizeof *col);
    int ya = (int)y0 - r < 0 ? 0 : (int)y0 - r;
    int yb = (int)y0 + r > (int)h - 1 ? (int)h - 1 : (int)y0 + r;
    for (int y = ya; y <= yb; y++)
        col_update(col, value + (size_t)y * w, w, 1);
    for (uint32_t y = y0; y < y1; y++) {
        pre[0] = 0;
        for (uint32_t x = 0; x < w; x++)
            pre[x + 1] = pre[x] + col[x];
        long long rows = (long long)yb - ya + 1;
        const uint8_t *v = value + (size_t)y * w;
        uint8_t *m = mask + (size_t)y * w;
        for (int x = 0; x < (int)w; x++) {
            int xa = x - r < 0 ? 0 : x - r;
            int xb = x + r > (int)w - 1 ? (int)w - 1 : x + r;
            long long sum = pre[xb + 1] - pre[xa];
            bool on = ((long long)v[x] + offset) * ((xb - xa + 1) * rows) > sum;
            m[x] = on ? 255 : 0;
            fg += on;
        }
        /* The window of row y + 1: one row in at the bottom, one out at the top. */
        if ((int)y + r + 1 <= (int)h - 1)
            col_update(col, value + (size_t)(y + r + 1) * w, w, 1);
        if ((int)y - r >= 0)
            col_update(col, value + (size_t)(y - r) * w, w, -1);
        ya = (int)y + 1 - r < 0 ? 0 : (int)y + 1 - r;
        yb = (int)y + 1 + r > (int)h - 1 ? (int)h - 1 : (int)y + 1 + r;
    }
    return fg;
}

static cnp_status run_adaptive(const bin_params *p, const uint8_t *rgba, uint32_t w, uint32_t h,
                               uint8_t *mask, bin_result *res, cnp_err *err)
{
    size_t n = (size_t)w * h;
    long nbands = (long)((h + BAND - 1) / BAND);
    uint8_t *value = malloc(n);
    uint32_t *scratch = malloc((size_t)nbands * 2 * ((size_t)w + 1) * sizeof *scratch);
    uint64_t *fgs = calloc((size_t)nbands, sizeof *fgs);
    if (!value || !scratch || !fgs) {
        free(value);
        free(scratch);
        free(fgs);
        cnp_err_set(err, "out of memory binarizing a %ux%u image", w, h);
        return CNP_ERR_NOMEM;
    }
    PARALLEL_FOR
    for (long b = 0; b < nbands; b++) {
        size_t i0 = (size_t)b * BAND * w, len = n - i0 < (size_t)BAND * w ? n - i0 : (size_t)BAND * w;
        channel_block(rgba + 4 * i0, len, p->channel, value + i0, NULL);
    }
    PARALLEL_FOR
    for (long b = 0; b < nbands; b++) {
        uint32_t y0 = (uint32_t)b * BAND, y1 = y0 + BAND < h ? y0 + BAND : h;
        fgs[b] = adaptive_band(value, w, h, p->window / 2, p->offset, y0, y1,
                               scratch + (size_t)b * 2 * ((size_t)w + 1), mask);
    }
    res->threshold = -1;
    res->foreground = 0;
    for (long b = 0; b < nbands; b++)
        res->foreground += fgs[b];
    free(value);
    free(scratch);
    free(fgs);
    return CNP_OK;
}

cnp_status bin_cpu_run(const bin_params *p, const uint8_t *rgba, uint32_t width, uint32_t height,
                       uint8_t *mask, bin_result *res, cnp_err *err)
{
    size_t n = (size_t)width * height;
    memset(res, 0, sizeof *res);
    if (n == 0) {
        res->threshold = p->method == CNP_BIN_ADAPTIVE ? -1 :
                         p->method == CNP_BIN_FIXED ? p->threshold : 0;
        return CNP_OK;
    }
    cnp_status result = p->method == CNP_BIN_ADAPTIVE
                            ? run_adaptive(p, rgba, width, height, mask, res, err)
                            : run_global(p, rgba, n, mask, res, err);
    if (result == CNP_OK)
        res->canopy_cover = (double)res->foreground / (double)n;
    return result;
}
