/* The tiling plan of crown models (det_tiles_plan) and the order trees are
 * reported in (det_trees_sort): production code shared by the device
 * engine, the CPU reference and the windowed raster stage. */
#include <math.h>
#include <stdlib.h>

#include "canopy/detect.h"

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
