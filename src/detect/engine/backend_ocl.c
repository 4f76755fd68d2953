/* The model interface's OpenCL tables (model_backend.h): the crown model on
 * det_engine, box models (imported RetinaNets) on det_box_engine. */
#include <stdlib.h>
#include <string.h>

#include "detect/model_backend.h"

/* ---- crown models ---------------------------------------------------------- */

static bool crown_accepts(const det_model *m)
{
    return !det_model_has_boxes(m) && !det_model_is_classifier(m);
}

static cnp_status crown_create(const det_model *m, ocl_ctx *dev, const cnp_detector_config *dc,
                               void **self, cnp_err *err)
{
    return det_engine_create(dev, m, dc, (det_engine **)self, err);
}

static void crown_free(void *self)
{
    det_engine_free(self);
}

static uint32_t crown_window_side(const void *self)
{
    int tile, overlap, stride;
    det_engine_tiling(self, &tile, &overlap, &stride);
    return (uint32_t)tile;
}

static cnp_status crown_plan(const void *self, uint32_t w, uint32_t h, det_tile **out,
                             size_t *n, cnp_err *err)
{
    int tile, overlap, stride;
    det_engine_tiling(self, &tile, &overlap, &stride);
    return det_tiles_plan(w, h, tile, overlap, stride, out, n, err);
}

static cnp_status crown_run(void *self, const det_pixels *patch, det_found *out, cnp_err *err)
{
    /* No NMS inside a patch: the merge suppresses across patches at once. */
    return det_engine_run_nms(self, patch->dev, patch->w, patch->h, 1.0f, &out->trees, &out->n,
                              err);
}

static float crown_merge_iou(const void *self)
{
    return det_engine_nms_iou(self);
}

/* The device NMS over the crowns' boxes (IoU and containment, as
 * det_trees_nms), then (y, x) order. */
static cnp_status crown_merge(void *self, cnp_tree *trees, size_t *n, float iou, cnp_err *err)
{
    cnp_status result = CNP_OK;
    if (*n >= 2 && iou < 1.0f) {
        det_box *boxes = malloc(*n * sizeof *boxes);
        float *scores = malloc(*n * sizeof *scores);
        uint32_t *keep = malloc(*n * sizeof *keep);
        cnp_tree *kept = malloc(*n * sizeof *kept);
        size_t nk = 0;
        if (!boxes || !scores || !keep || !kept) {
            cnp_err_set(err, "out of memory for NMS over %zu trees", *n);
            result = CNP_ERR_NOMEM;
        } else {
            for (size_t i = 0; i < *n; i++) {
                boxes[i] = det_tree_box(&trees[i]);
                scores[i] = trees[i].score;
            }
            result = det_engine_nms_contain(self, boxes, scores, NULL, *n, iou, DET_NMS_CONTAIN,
                                            keep, &nk, err);
            for (size_t i = 0; result == CNP_OK && i < nk; i++)
                kept[i] = trees[keep[i]];
            if (result == CNP_OK) {
                memcpy(trees, kept, nk * sizeof *kept);
                *n = nk;
            }
        }
        free(boxes);
        free(scores);
        free(keep);
        free(kept);
    }
    if (result == CNP_OK)
        det_trees_sort(trees, *n);
    return result;
}

static cnp_status crown_detect(void *self, const det_pixels *img, cnp_tree **trees, size_t *n,
                               cnp_err *err)
{
    return det_engine_run(self, img->dev, img->w, img->h, trees, n, err);
}

const det_backend_i det_backend_crown_ocl = {
    .name = "crown/opencl",
    .on_device = true,
    .accepts = crown_accepts,
    .create = crown_create,
    .free = crown_free,
    .window_side = crown_window_side,
    .plan = crown_plan,
    .run = crown_run,
    .merge_iou = crown_merge_iou,
    .merge = crown_merge,
    .detect = crown_detect,
};

/* ---- box models ------------------------------------------------------------- */

typedef struct box_ocl {
    det_box_engine *e;
    cnp_detector_config dc;
} box_ocl;

static bool box_accepts(const det_model *m)
{
    return det_model_has_boxes(m);
}

static cnp_status box_create(const det_model *m, ocl_ctx *dev, const cnp_detector_config *dc,
                             void **self, cnp_err *err)
{
    box_ocl *b = calloc(1, sizeof *b);
    if (!b) {
        cnp_err_set(err, "out of memory for the box detector");
        return CNP_ERR_NOMEM;
    }
    b->dc = *dc;
    cnp_status result = det_box_engine_create(dev, m, dc, &b->e, err);
    if (result != CNP_OK) {
        free(b);
        return result;
    }
    *self = b;
    return CNP_OK;
}

static void box_free(void *self)
{
    box_ocl *b = self;
    if (!b)
        return;
    det_box_engine_free(b->e);
    free(b);
}

static uint32_t box_window_side(const void *self)
{
    const box_ocl *b = self;
    return b->dc.patch_size > 0 ? (uint32_t)b->dc.patch_size : 0;
}

static cnp_status box_plan(const void *self, uint32_t w, uint32_t h, det_tile **out, size_t *n,
                           cnp_err *err)
{
    const box_ocl *b = self;
    return det_box_windows(&b->dc, w, h, out, n, err);
}

static cnp_status box_run(void *self, const det_pixels *patch, det_found *out, cnp_err *err)
{
    box_ocl *b = self;
    return det_box_engine_patch(b->e, patch->dev, patch->w, patch->h, &out->trees, &out->n,
                                err);
}

static float box_merge_iou(const void *self)
{
    const box_ocl *b = self;
    return (float)b->dc.patch_iou;
}

static cnp_status box_merge(void *self, cnp_tree *trees, size_t *n, float iou, cnp_err *err)
{
    return det_box_trees_merge(trees, n, iou, err);
}

static cnp_status box_detect(void *self, const det_pixels *img, cnp_tree **trees, size_t *n,
                             cnp_err *err)
{
    box_ocl *b = self;
    return det_box_engine_run(b->e, img->dev, img->w, img->h, trees, n, err);
}

const det_backend_i det_backend_box_ocl = {
    .name = "box/opencl",
    .on_device = true,
    .accepts = box_accepts,
    .create = box_create,
    .free = box_free,
    .window_side = box_window_side,
    .plan = box_plan,
    .run = box_run,
    .merge_iou = box_merge_iou,
    .merge = box_merge,
    .detect = box_detect,
};
