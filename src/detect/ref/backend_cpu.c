/* The model interface's CPU tables (model_backend.h): the C references of
 * the crown model (det_ref_run) and of box models (det_box_ref_run), the
 * backend every device table is held to (tests/detect/test_backend_ops.c).
 * They read det_pixels.host. */
#include <stdlib.h>

#include "detect/model_backend.h"

typedef struct cpu_model {
    const det_model *m;
    cnp_detector_config dc;
    float threshold, nms_iou; /* crown models */
} cpu_model;

static cnp_status cpu_create(const det_model *m, const cnp_detector_config *dc, void **self,
                             cnp_err *err)
{
    cpu_model *c = calloc(1, sizeof *c);
    if (!c) {
        cnp_err_set(err, "out of memory for the CPU backend");
        return CNP_ERR_NOMEM;
    }
    c->m = m;
    c->dc = *dc;
    c->threshold = det_score_threshold(m, dc->score_threshold);
    c->nms_iou = dc->nms_iou >= 0 ? (float)dc->nms_iou : (float)det_model_nms_iou(m);
    *self = c;
    return CNP_OK;
}

static void cpu_free(void *self)
{
    free(self);
}

/* The host pixels of an input as the references take them. */
static cnp_image host_image(const det_pixels *in)
{
    return (cnp_image){.width = in->w, .height = in->h, .rgba = (uint8_t *)in->host};
}

/* ---- crown models ---------------------------------------------------------- */

static bool crown_accepts(const det_model *m)
{
    return !det_model_has_boxes(m) && !det_model_is_classifier(m);
}

static cnp_status crown_create(const det_model *m, ocl_ctx *dev, const cnp_detector_config *dc,
                               void **self, cnp_err *err)
{
    int stride = det_model_stride(m), tile = dc->tile / stride * stride;
    if (tile <= 0 || dc->tile_overlap < 0 || dc->tile_overlap >= tile) {
        cnp_err_set(err, "[detector] tile %d / tile_overlap %d: need 0 <= overlap < tile",
                    dc->tile, dc->tile_overlap);
        return CNP_ERR_CONFIG;
    }
    cnp_status result = cpu_create(m, dc, self, err);
    if (result == CNP_OK)
        ((cpu_model *)*self)->dc.tile = tile;
    return result;
}

static uint32_t crown_window_side(const void *self)
{
    const cpu_model *c = self;
    return (uint32_t)c->dc.tile;
}

static cnp_status crown_plan(const void *self, uint32_t w, uint32_t h, det_tile **out,
                             size_t *n, cnp_err *err)
{
    const cpu_model *c = self;
    return det_tiles_plan(w, h, c->dc.tile, c->dc.tile_overlap, det_model_stride(c->m), out, n,
                          err);
}

static cnp_status crown_run(void *self, const det_pixels *patch, det_found *out, cnp_err *err)
{
    const cpu_model *c = self;
    cnp_image img = host_image(patch);
    return det_ref_run(c->m, &img, c->threshold, 1.0f, c->dc.tile, c->dc.tile_overlap,
                       &out->trees, &out->n, err);
}

static float crown_merge_iou(const void *self)
{
    const cpu_model *c = self;
    return c->nms_iou;
}

static cnp_status crown_merge(void *self, cnp_tree *trees, size_t *n, float iou, cnp_err *err)
{
    cnp_status result = det_trees_nms(trees, n, iou, err);
    if (result == CNP_OK)
        det_trees_sort(trees, *n);
    return result;
}

static cnp_status crown_detect(void *self, const det_pixels *in, cnp_tree **trees, size_t *n,
                               cnp_err *err)
{
    const cpu_model *c = self;
    cnp_image img = host_image(in);
    return det_ref_run(c->m, &img, c->threshold, c->nms_iou, c->dc.tile, c->dc.tile_overlap,
                       trees, n, err);
}

const det_backend_i det_backend_crown_cpu = {
    .name = "crown/cpu",
    .on_device = false,
    .accepts = crown_accepts,
    .create = crown_create,
    .free = cpu_free,
    .window_side = crown_window_side,
    .plan = crown_plan,
    .run = crown_run,
    .merge_iou = crown_merge_iou,
    .merge = crown_merge,
    .detect = crown_detect,
};

/* ---- box models ------------------------------------------------------------- */

static bool box_accepts(const det_model *m)
{
    return det_model_has_boxes(m);
}

static cnp_status box_create(const det_model *m, ocl_ctx *dev, const cnp_detector_config *dc,
                             void **self, cnp_err *err)
{
    return cpu_create(m, dc, self, err);
}

static uint32_t box_window_side(const void *self)
{
    const cpu_model *c = self;
    return c->dc.patch_size > 0 ? (uint32_t)c->dc.patch_size : 0;
}

static cnp_status box_plan(const void *self, uint32_t w, uint32_t h, det_tile **out, size_t *n,
                           cnp_err *err)
{
    const cpu_model *c = self;
    return det_box_windows(&c->dc, w, h, out, n, err);
}

static cnp_status box_run(void *self, const det_pixels *patch, det_found *out, cnp_err *err)
{
    const cpu_model *c = self;
    cnp_detector_config one = c->dc;
    one.patch_size = 0; /* the patch as one image */
    cnp_image img = host_image(patch);
    return det_box_ref_run(c->m, &one, &img, &out->trees, &out->n, err);
}

static float box_merge_iou(const void *self)
{
    const cpu_model *c = self;
    return (float)c->dc.patch_iou;
}

static cnp_status box_merge(void *self, cnp_tree *trees, size_t *n, float iou, cnp_err *err)
{
    return det_box_trees_merge(trees, n, iou, err);
}

static cnp_status box_detect(void *self, const det_pixels *in, cnp_tree **trees, size_t *n,
                             cnp_err *err)
{
    const cpu_model *c = self;
    cnp_image img = host_image(in);
    return det_box_ref_run(c->m, &c->dc, &img, trees, n, err);
}

const det_backend_i det_backend_box_cpu = {
    .name = "box/cpu",
    .on_device = false,
    .accepts = box_accepts,
    .create = box_create,
    .free = cpu_free,
    .window_side = box_window_side,
    .plan = box_plan,
    .run = box_run,
    .merge_iou = box_merge_iou,
    .merge = box_merge,
    .detect = box_detect,
};
