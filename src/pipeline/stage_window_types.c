/* Stage: device, in windows (stage_window.c), the second stage: each tree
 * of a raster processed in windows gets its type from the crop the whole
 * raster would give (det_model_crop_rect in raster coordinates). Trees are
 * classified window by window, each in the first window of the plan that
 * holds its whole crop; a crop no window holds (wider than the windows'
 * overlap) is read alone. */
#include <stdlib.h>
#include <string.h>

#include "pipeline/pl_internal.h"

/* Classifies the trees idx[0..m) (indices into trees) from window t. */
static cnp_status classify_in(pl_ctx *x, pl_item *it, const det_tile *t, uint8_t *rgba,
                              cnp_tree *trees, const size_t *idx, size_t m, uint32_t W,
                              uint32_t H, cnp_tree *tmp, cnp_err *err)
{
    cnp_status result = img_raster_read(it->raster, t->x0, t->y0, t->w, t->h, rgba, NULL, err);
    for (size_t k = 0; k < m; k++)
        tmp[k] = trees[idx[k]];
    if (result == CNP_OK)
        result = pipe_device_classify(x->dev, rgba, t, W, H, tmp, m, err);
    for (size_t k = 0; result == CNP_OK && k < m; k++)
        trees[idx[k]] = tmp[k];
    return result;
}

static bool holds(const det_tile *t, const uint32_t r[4])
{
    return r[0] >= t->x0 && r[1] >= t->y0 && r[0] + r[2] <= t->x0 + t->w &&
           r[1] + r[3] <= t->y0 + t->h;
}

cnp_status stage_window_types(pl_ctx *x, pl_item *it, cnp_tree *trees, size_t n, uint32_t W,
                              uint32_t H, cnp_err *err)
{
    const det_model *cls = pipe_device_classifier(x->dev);
    if (!cls || n == 0)
        return CNP_OK;
    det_tile *tiles = NULL;
    size_t nt = 0, max = 0;
    cnp_status result = stage_window_plan(x, W, H, &tiles, &nt, &max, err);
    if (result != CNP_OK)
        return result;
    uint32_t (*rect)[4] = malloc(n * sizeof *rect);
    size_t *idx = malloc(n * sizeof *idx);
    cnp_tree *tmp = malloc(n * sizeof *tmp);
    bool *done = calloc(n, sizeof *done);
    uint8_t *rgba = malloc(4 * (max ? max : 1));
    if (!rect || !idx || !tmp || !done || !rgba) {
        cnp_err_set(err, "%s: out of memory for tree types", it->name);
        result = CNP_ERR_NOMEM;
    }
    for (size_t i = 0; result == CNP_OK && i < n; i++)
        det_model_crop_rect(cls, &trees[i], W, H, rect[i]);
    for (size_t w = 0; result == CNP_OK && w < nt; w++) {
        size_t m = 0;
        for (size_t i = 0; i < n; i++)
            if (!done[i] && holds(&tiles[w], rect[i]))
                idx[m++] = i, done[i] = true;
        if (m)
            result = classify_in(x, it, &tiles[w], rgba, trees, idx, m, W, H, tmp, err);
    }
    for (size_t i = 0; result == CNP_OK && i < n; i++) {
        if (done[i])
            continue;
        det_tile own = {.x0 = rect[i][0], .y0 = rect[i][1], .w = rect[i][2], .h = rect[i][3]};
        uint8_t *px = (size_t)own.w * own.h <= max ? rgba : malloc(4 * (size_t)own.w * own.h);
        if (!px) {
            cnp_err_set(err, "%s: out of memory for a %ux%u crop", it->name, own.w, own.h);
            result = CNP_ERR_NOMEM;
            break;
        }
        idx[0] = i;
        result = classify_in(x, it, &own, px, trees, idx, 1, W, H, tmp, err);
        if (px != rgba)
            free(px);
    }
    free(rect), free(idx), free(tmp), free(done), free(rgba), free(tiles);
    return result;
}
