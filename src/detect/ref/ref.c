/* CPU reference of the crown detector: the preprocessing and the decode in
 * plain C around the network run as a graph on graph_ref.c (det_crown_graph:
 * the graph the device engine runs too), the one CPU reference of every
 * op. Written to be obviously correct rather than fast. The OpenCL engine is
 * held equal to it by tests/detect. The tiling is the engine's (det_tiles_plan,
 * tiles.c); det_decode's rule is mirrored in detect.cl. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "detect/detect_internal.h"

/* RGBA8 -> normalized CHW channels (models/FORMAT.md "Input channels"). */
void det_crown_preprocess(const det_model *m, const uint8_t *rgba, uint32_t stride_px,
                          uint32_t w, uint32_t h, float *out)
{
    size_t plane = (size_t)w * h;
    for (uint32_t y = 0; y < h; y++) {
        for (uint32_t x = 0; x < w; x++) {
            const uint8_t *p = rgba + 4 * ((size_t)y * stride_px + x);
            float r = p[0] / 255.0f, g = p[1] / 255.0f, b = p[2] / 255.0f;
            float v[4] = {r, g, b, 2.0f * g - r - b};
            for (int c = 0; c < m->n_channels; c++)
                out[c * plane + (size_t)y * w + x] =
                    (v[m->channel[c]] - m->mean[c]) / m->std[c];
        }
    }
}

cnp_status det_ref_forward(const det_model *m, const uint8_t *rgba, uint32_t stride_px,
                           uint32_t w, uint32_t h, float **out, uint32_t *oh,
                           uint32_t *ow, cnp_err *err)
{
    *out = NULL;
    det_model_out_size(m, w, h, ow, oh);
    if (*ow == 0 || *oh == 0) {
        /* Too small for one output cell: an empty output, no network. */
        *out = malloc(sizeof **out);
        if (!*out) {
            cnp_err_set(err, "detector reference: out of memory");
            return CNP_ERR_NOMEM;
        }
        return CNP_OK;
    }
    det_graph g;
    float *in = malloc((size_t)m->n_channels * w * h * sizeof *in);
    cnp_status result = in ? det_crown_graph(m, &g, err) : CNP_ERR_NOMEM;
    if (!in) {
        cnp_err_set(err, "detector reference: out of memory for %ux%u", w, h);
        return result;
    }
    if (result == CNP_OK) {
        det_crown_preprocess(m, rgba, stride_px, w, h, in);
        int oc = 0, gh = 0, gw = 0;
        result = det_graph_ref_run_raw(&g, in, (int)h, (int)w, out, &oc, &gh, &gw, err);
        if (result == CNP_OK && (oc != 4 || (uint32_t)gh != *oh || (uint32_t)gw != *ow)) {
            cnp_err_set(err, "%s: graph output %dx%dx%d, expected 4x%ux%u", m->version, oc,
                        gh, gw, *oh, *ow);
            free(*out);
            *out = NULL;
            result = CNP_ERR_INTERNAL;
        }
        free(g.nodes);
    }
    free(in);
    return result;
}

static float sigmoidf(float v)
{
    return 1.0f / (1.0f + expf(-v));
}

/* Floats in their numeric order as unsigned keys (NaN excluded). */
static uint32_t float_key(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u & 0x80000000u ? ~u : u | 0x80000000u;
}

static float key_float(uint32_t k)
{
    uint32_t u = k & 0x80000000u ? k & 0x7fffffffu : ~k;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

float det_logit_threshold(float threshold)
{
    /* sigmoidf is non-decreasing: bisect over the floats from -inf to +inf
     * for the first one whose score passes. */
    uint32_t lo = float_key(-INFINITY), hi = float_key(INFINITY);
    if (!(sigmoidf(INFINITY) >= threshold))
        return NAN; /* nothing passes (a NaN threshold included) */
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (sigmoidf(key_float(mid)) >= threshold)
            hi = mid;
        else
            lo = mid + 1;
    }
    return key_float(lo);
}

cnp_status det_decode(const det_model *m, const float *out, uint32_t oh, uint32_t ow,
                      uint32_t x0, uint32_t y0, float threshold, const float own[4],
                      cnp_tree **trees, size_t *n, size_t *cap, cnp_err *err)
{
    size_t plane = (size_t)ow * oh;
    const float *heat = out + m->out_index[DET_OUT_HEATMAP] * plane;
    const float *lr = out + m->out_index[DET_OUT_LOG_RADIUS] * plane;
    const float *dxs = out + m->out_index[DET_OUT_DX] * plane;
    const float *dys = out + m->out_index[DET_OUT_DY] * plane;
    float s = (float)m->stride;
    for (uint32_t i = 0; i < oh; i++) {
        for (uint32_t j = 0; j < ow; j++) {
            float score = sigmoidf(heat[(size_t)i * ow + j]);
            if (!(score >= threshold))
                continue;
            /* Peak: > every neighbour before it in row-major order, >= every
             * neighbour after it (the first of equal maxima wins). */
            bool peak = true;
            for (int di = -1; di <= 1 && peak; di++) {
                for (int dj = -1; dj <= 1 && peak; dj++) {
                    long ni = (long)i + di, nj = (long)j + dj;
                    if ((di == 0 && dj == 0) || ni < 0 || nj < 0 || ni >= oh || nj >= ow)
                        continue;
                    float ns = sigmoidf(heat[(size_t)ni * ow + (size_t)nj]);
                    bool before = di < 0 || (di == 0 && dj < 0);
                    peak = before ? score > ns : score >= ns;
                }
            }
            if (!peak)
                continue;
            size_t k = (size_t)i * ow + j;
            float x = (float)x0 + ((float)j + 0.5f + dxs[k]) * s;
            float y = (float)y0 + ((float)i + 0.5f + dys[k]) * s;
            if (x < own[0] || y < own[1] || x >= own[2] || y >= own[3])
                continue;
            if (*n == *cap) {
                size_t nc = *cap ? 2 * *cap : 64;
                cnp_tree *t = realloc(*trees, nc * sizeof *t);
                if (!t) {
                    cnp_err_set(err, "detector decode: out of memory");
                    return CNP_ERR_NOMEM;
                }
                *trees = t;
                *cap = nc;
            }
            (*trees)[(*n)++] = (cnp_tree){.x = x, .y = y, .radius = expf(lr[k]), .score = score};
        }
    }
    return CNP_OK;
}

cnp_status det_ref_run(const det_model *m, const cnp_image *img, float score_threshold,
                       float nms_iou, int tile, int overlap, cnp_tree **trees, size_t *n,
                       cnp_err *err)
{
    *trees = NULL;
    *n = 0;
    det_tile *tiles = NULL;
    size_t nt = 0, cap = 0;
    cnp_status result =
        det_tiles_plan(img->width, img->height, tile, overlap, m->stride, &tiles, &nt, err);
    for (size_t i = 0; result == CNP_OK && i < nt; i++) {
        const det_tile *t = &tiles[i];
        float *out = NULL;
        uint32_t oh, ow;
        result = det_ref_forward(m, img->rgba + 4 * ((size_t)t->y0 * img->width + t->x0),
                                 img->width, t->w, t->h, &out, &oh, &ow, err);
        if (result == CNP_OK)
            result = det_decode(m, out, oh, ow, t->x0, t->y0, score_threshold, t->own,
                                trees, n, &cap, err);
        free(out);
    }
    free(tiles);
    /* Over the whole image, after the tiles: crowns of neighbouring tiles
     * suppress each other as in untiled processing. */
    if (result == CNP_OK)
        result = det_trees_nms(*trees, n, nms_iou, err);
    if (result != CNP_OK) {
        free(*trees);
        *trees = NULL;
        *n = 0;
        return result;
    }
    det_trees_sort(*trees, *n);
    return CNP_OK;
}
