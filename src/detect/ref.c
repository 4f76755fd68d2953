/* CPU reference of the detector: direct convolution in double precision,
 * written to be obviously correct rather than fast. The OpenCL engine is held
 * equal to it by tests/detect. Tiling and decode here are shared with the
 * engine (det_tiles_plan, det_decode's rule is mirrored in detect.cl). */
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

/* "Same" convolution, stride 1, zero padding dilation*(k-1)/2, then act. */
static void conv_ref(const det_layer *l, const float *in, uint32_t w, uint32_t h, float *out,
                     double *acc)
{
    size_t plane = (size_t)w * h;
    int pad = l->dilation * (l->k / 2);
    for (int o = 0; o < l->out; o++) {
        for (size_t i = 0; i < plane; i++)
            acc[i] = l->bias[o];
        for (int c = 0; c < l->in; c++) {
            for (int ky = 0; ky < l->k; ky++) {
                for (int kx = 0; kx < l->k; kx++) {
                    double wv = l->weight[((size_t)(o * l->in + c) * l->k + ky) * l->k + kx];
                    int dy = ky * l->dilation - pad, dx = kx * l->dilation - pad;
                    /* Output pixels whose tap (x+dx, y+dy) lies inside. */
                    int y0 = dy < 0 ? -dy : 0, y1 = (int)h - (dy > 0 ? dy : 0);
                    int x0 = dx < 0 ? -dx : 0, x1 = (int)w - (dx > 0 ? dx : 0);
                    const float *src = in + c * plane;
                    for (int y = y0; y < y1; y++) {
                        const float *row = src + (size_t)(y + dy) * w + dx;
                        double *arow = acc + (size_t)y * w;
                        for (int x = x0; x < x1; x++)
                            arow[x] += wv * row[x];
                    }
                }
            }
        }
        for (size_t i = 0; i < plane; i++) {
            float v = (float)acc[i];
            out[o * plane + i] = l->relu && v < 0 ? 0.0f : v;
        }
    }
}

/* 2x2 max pool, stride 2, floor. */
static void pool_ref(int channels, const float *in, uint32_t w, uint32_t h, float *out)
{
    uint32_t ow = w / 2, oh = h / 2;
    for (int c = 0; c < channels; c++) {
        const float *src = in + (size_t)c * w * h;
        float *dst = out + (size_t)c * ow * oh;
        for (uint32_t y = 0; y < oh; y++) {
            for (uint32_t x = 0; x < ow; x++) {
                const float *p = src + (size_t)(2 * y) * w + 2 * x;
                dst[(size_t)y * ow + x] = fmaxf(fmaxf(p[0], p[1]), fmaxf(p[w], p[w + 1]));
            }
        }
    }
}

/* Largest activation (floats) any layer holds for a w x h input. */
static size_t max_activation(const det_model *m, uint32_t w, uint32_t h)
{
    size_t best = (size_t)m->n_channels * w * h;
    for (int i = 0; i < m->n_layers; i++) {
        const det_layer *l = &m->layers[i];
        if (l->type == DET_LAYER_MAXPOOL) {
            w /= 2;
            h /= 2;
        }
        size_t s = (size_t)l->out * w * h;
        if (s > best)
            best = s;
    }
    return best;
}

cnp_status det_ref_forward(const det_model *m, const uint8_t *rgba, uint32_t stride_px,
                           uint32_t w, uint32_t h, float **out, uint32_t *oh,
                           uint32_t *ow, cnp_err *err)
{
    *out = NULL;
    det_model_out_size(m, w, h, ow, oh);
    size_t cap = max_activation(m, w, h);
    float *a = malloc((cap ? cap : 1) * sizeof *a);
    float *b = malloc((cap ? cap : 1) * sizeof *b);
    size_t plane = (size_t)w * h;
    double *acc = malloc((plane ? plane : 1) * sizeof *acc);
    if (!a || !b || !acc) {
        free(a);
        free(b);
        free(acc);
        cnp_err_set(err, "detector reference: out of memory for %ux%u", w, h);
        return CNP_ERR_NOMEM;
    }
    det_crown_preprocess(m, rgba, stride_px, w, h, a);
    for (int i = 0; i < m->n_layers; i++) {
        const det_layer *l = &m->layers[i];
        if (l->type == DET_LAYER_CONV) {
            conv_ref(l, a, w, h, b, acc);
        } else {
            pool_ref(l->in, a, w, h, b);
            w /= 2;
            h /= 2;
        }
        float *t = a;
        a = b;
        b = t;
    }
    free(b);
    free(acc);
    *out = a;
    return CNP_OK;
}

static float sigmoidf(float v)
{
    return 1.0f / (1.0f + expf(-v));
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

/* Tile origins along one axis: multiples of `step`; the last tile ends at
 * the edge (it may be shorter). Ownership boundaries sit in the middle of
 * each overlap. */
static size_t axis_plan(uint32_t len, uint32_t tile, uint32_t step, uint32_t *org,
                        uint32_t *size, float *lo, float *hi, size_t max)
{
    size_t n = 0;
    for (uint32_t o = 0;; o += step) {
        if (n == max)
            break;
        org[n] = o;
        size[n] = len - o < tile ? len - o : tile;
        n++;
        if (o + tile >= len)
            break;
    }
    for (size_t i = 0; i < n; i++) {
        lo[i] = i == 0 ? -INFINITY : hi[i - 1];
        hi[i] = i + 1 == n ? INFINITY
                           : (float)org[i + 1] + (float)(org[i] + size[i] - org[i + 1]) / 2.0f;
    }
    return n;
}

cnp_status det_tiles_plan(uint32_t w, uint32_t h, int tile, int overlap, int stride,
                          det_tile **tiles, size_t *n, cnp_err *err)
{
    *tiles = NULL;
    *n = 0;
    uint32_t t = tile > 0 ? (uint32_t)(tile / stride * stride) : 0;
    if (tile > 0 && (overlap < 0 || t == 0 || (uint32_t)overlap >= t)) {
        cnp_err_set(err, "[detector] tile %d / tile_overlap %d: need 0 <= overlap < tile",
                    tile, overlap);
        return CNP_ERR_CONFIG;
    }
    uint32_t tw = t && w > t ? t : w, th = t && h > t ? t : h;
    /* Step: tile - overlap rounded down to the stride, at least one stride. */
    uint32_t step = t ? (t - (uint32_t)overlap) / (uint32_t)stride * (uint32_t)stride : 0;
    if (t && step == 0)
        step = (uint32_t)stride;
    size_t maxx = tw && w > tw ? (w - tw + step - 1) / step + 1 : 1;
    size_t maxy = th && h > th ? (h - th + step - 1) / step + 1 : 1;
    uint32_t *ox = malloc(maxx * sizeof *ox), *sx = malloc(maxx * sizeof *sx);
    uint32_t *oy = malloc(maxy * sizeof *oy), *sy = malloc(maxy * sizeof *sy);
    float *lx = malloc(maxx * sizeof *lx), *hx = malloc(maxx * sizeof *hx);
    float *ly = malloc(maxy * sizeof *ly), *hy = malloc(maxy * sizeof *hy);
    det_tile *out = malloc(maxx * maxy * sizeof *out);
    cnp_status result = CNP_OK;
    if (!ox || !sx || !oy || !sy || !lx || !hx || !ly || !hy || !out) {
        cnp_err_set(err, "detector tiling: out of memory");
        result = CNP_ERR_NOMEM;
        free(out);
        goto out;
    }
    size_t nx = axis_plan(w, tw ? tw : 1, step ? step : 1, ox, sx, lx, hx, maxx);
    size_t ny = axis_plan(h, th ? th : 1, step ? step : 1, oy, sy, ly, hy, maxy);
    for (size_t j = 0; j < ny; j++)
        for (size_t i = 0; i < nx; i++)
            out[j * nx + i] = (det_tile){ox[i], oy[j], sx[i], sy[j],
                                         {lx[i], ly[j], hx[i], hy[j]}};
    *tiles = out;
    *n = nx * ny;
out:
    free(ox);
    free(sx);
    free(oy);
    free(sy);
    free(lx);
    free(hx);
    free(ly);
    free(hy);
    return result;
}

static int tree_cmp(const void *pa, const void *pb)
{
    const cnp_tree *a = pa, *b = pb;
    if (a->y != b->y)
        return a->y < b->y ? -1 : 1;
    if (a->x != b->x)
        return a->x < b->x ? -1 : 1;
    if (a->score != b->score)
        return a->score < b->score ? -1 : 1;
    return 0;
}

void det_trees_sort(cnp_tree *trees, size_t n)
{
    if (n > 1)
        qsort(trees, n, sizeof *trees, tree_cmp);
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
