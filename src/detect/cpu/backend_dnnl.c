/* The model interface's tables on the CPU backend (model_backend.h): crown
 * and box models through det_cpu_engine (cpu_backend.c, oneDNN). They read
 * det_pixels.host; det_backend_create_cpu (backend.c) binds them. */
#include "detect/model_backend.h"

static cnp_status dnnl_create(const det_model *m, ocl_ctx *dev, const cnp_detector_config *dc,
                              void **self, cnp_err *err)
{
    (void)dev; /* device-less; det_backend_create_cpu binds these tables with a cache */
    return det_cpu_engine_create(m, dc, 0, NULL, (det_cpu_engine **)self, err);
}

static void dnnl_free(void *self)
{
    det_cpu_engine_free(self);
}

static uint32_t dnnl_window_side(const void *self)
{
    uint32_t overlap;
    int stride;
    return det_cpu_engine_window_side(self, &overlap, &stride);
}

static cnp_status dnnl_plan(const void *self, uint32_t w, uint32_t h, det_tile **out, size_t *n,
                            cnp_err *err)
{
    return det_cpu_engine_windows(self, w, h, out, n, err);
}

static cnp_image host_image(const det_pixels *in)
{
    return (cnp_image){.width = in->w, .height = in->h, .rgba = (uint8_t *)in->host};
}

static cnp_status dnnl_run(void *self, const det_pixels *patch, det_found *out, cnp_err *err)
{
    cnp_image img = host_image(patch);
    return det_cpu_engine_window(self, &img, &out->trees, &out->n, err);
}

static float dnnl_merge_iou(const void *self)
{
    return det_cpu_engine_merge_iou(self);
}

static cnp_status dnnl_merge(void *self, cnp_tree *trees, size_t *n, float iou, cnp_err *err)
{
    return det_cpu_engine_merge(self, trees, n, iou, err);
}

static cnp_status dnnl_detect(void *self, const det_pixels *in, cnp_tree **trees, size_t *n,
                              cnp_err *err)
{
    cnp_image img = host_image(in);
    return det_cpu_engine_run(self, &img, trees, n, err);
}

static bool crown_accepts(const det_model *m)
{
    return !det_model_has_boxes(m) && !det_model_is_classifier(m);
}

static bool box_accepts(const det_model *m)
{
    return det_model_has_boxes(m);
}

const det_backend_i det_backend_crown_dnnl = {
    .name = "crown/cpu-onednn",
    .on_device = false,
    .accepts = crown_accepts,
    .create = dnnl_create,
    .free = dnnl_free,
    .window_side = dnnl_window_side,
    .plan = dnnl_plan,
    .run = dnnl_run,
    .merge_iou = dnnl_merge_iou,
    .merge = dnnl_merge,
    .detect = dnnl_detect,
};

const det_backend_i det_backend_box_dnnl = {
    .name = "box/cpu-onednn",
    .on_device = false,
    .accepts = box_accepts,
    .create = dnnl_create,
    .free = dnnl_free,
    .window_side = dnnl_window_side,
    .plan = dnnl_plan,
    .run = dnnl_run,
    .merge_iou = dnnl_merge_iou,
    .merge = dnnl_merge,
    .detect = dnnl_detect,
};
