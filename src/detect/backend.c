/* The model interface's dispatcher (model_backend.h): picks a table for a
 * model and a device, and forwards each operation to it. */
#include <stdlib.h>
#include <string.h>

#include "detect/classify.h"
#include "detect/model_backend.h"

/* In order of preference for each kind of device. */
static const det_backend_i *const TABLES[] = {
    &det_backend_crown_ocl,
    &det_backend_box_ocl,
    &det_backend_classify_ocl,
    &det_backend_crown_cpu,
    &det_backend_box_cpu,
    &det_backend_classify_cpu,
};

struct det_backend {
    const det_backend_i *iface;
    void *self;
};

cnp_status det_backend_create(const det_model *m, ocl_ctx *dev, const cnp_detector_config *dc,
                              det_backend **out, cnp_err *err)
{
    *out = NULL;
    const det_backend_i *iface = NULL;
    for (size_t i = 0; !iface && i < sizeof TABLES / sizeof TABLES[0]; i++)
        if (TABLES[i]->on_device == (dev != NULL) && TABLES[i]->accepts(m))
            iface = TABLES[i];
    if (!iface) {
        cnp_err_set(err, "%s: no %s backend runs this model", det_model_version(m),
                    dev ? "OpenCL" : "CPU");
        return CNP_ERR_INVALID;
    }
    det_backend *b = calloc(1, sizeof *b);
    if (!b) {
        cnp_err_set(err, "out of memory for the %s backend", iface->name);
        return CNP_ERR_NOMEM;
    }
    b->iface = iface;
    cnp_status result = iface->create(m, dev, dc, &b->self, err);
    if (result != CNP_OK) {
        free(b);
        return result;
    }
    *out = b;
    return CNP_OK;
}

cnp_status det_backend_create_cpu(const det_model *m, const char *cache_dir,
                                  const cnp_detector_config *dc, int threads,
                                  det_backend **out, cnp_err *err)
{
    *out = NULL;
#ifdef CANOPY_HAVE_DNNL
    det_backend *b = calloc(1, sizeof *b);
    if (!b) {
        cnp_err_set(err, "out of memory for the CPU backend");
        return CNP_ERR_NOMEM;
    }
    b->iface = det_model_is_classifier(m) ? &det_backend_classify_dnnl
               : det_model_has_boxes(m)      ? &det_backend_box_dnnl
                                             : &det_backend_crown_dnnl;
    cnp_status result = det_model_is_classifier(m)
                            ? det_classify_dnnl_create(m, threads, cache_dir, &b->self, err)
                            : det_cpu_engine_create(m, dc, threads, cache_dir,
                                                    (det_cpu_engine **)&b->self, err);
    if (result != CNP_OK) {
        free(b);
        return result;
    }
    *out = b;
    return CNP_OK;
#else
    enum cnp_backend chosen;
    return det_backend_choose(CNP_BACKEND_CPU, NULL, &chosen, err);
#endif
}

void det_backend_free(det_backend *b)
{
    if (!b)
        return;
    b->iface->free(b->self);
    free(b);
}

const char *det_backend_name(const det_backend *b)
{
    return b->iface->name;
}

/* A classifier's handle takes none of the detector ops. */
static cnp_status no_op(const det_backend *b, const char *op, cnp_err *err)
{
    cnp_err_set(err, "%s: a classifier has no %s op", b->iface->name, op);
    return CNP_ERR_INVALID;
}

uint32_t det_backend_window_side(const det_backend *b)
{
    return b->iface->window_side ? b->iface->window_side(b->self) : 0;
}

cnp_status det_backend_plan(const det_backend *b, uint32_t w, uint32_t h, det_tile **out,
                            size_t *n, cnp_err *err)
{
    *out = NULL;
    *n = 0;
    if (!b->iface->plan)
        return no_op(b, "plan", err);
    return b->iface->plan(b->self, w, h, out, n, err);
}

cnp_status det_backend_run(det_backend *b, const det_pixels *patches, size_t n, det_found *out,
                           cnp_err *err)
{
    memset(out, 0, n * sizeof *out);
    if (!b->iface->run)
        return no_op(b, "run", err);
    cnp_status result = CNP_OK;
    for (size_t i = 0; result == CNP_OK && i < n; i++)
        result = b->iface->run(b->self, &patches[i], &out[i], err);
    if (result != CNP_OK)
        det_found_free(out, n);
    return result;
}

float det_backend_merge_iou(const det_backend *b)
{
    return b->iface->merge_iou ? b->iface->merge_iou(b->self) : 0;
}

cnp_status det_backend_merge(det_backend *b, cnp_tree *trees, size_t *n, float iou,
                             cnp_err *err)
{
    if (!b->iface->merge)
        return no_op(b, "merge", err);
    return b->iface->merge(b->self, trees, n, iou, err);
}

cnp_status det_backend_detect(det_backend *b, const det_pixels *img, cnp_tree **trees,
                              size_t *n, cnp_err *err)
{
    *trees = NULL;
    *n = 0;
    if (!b->iface->detect)
        return no_op(b, "detect", err);
    return b->iface->detect(b->self, img, trees, n, err);
}

cnp_status det_backend_classify(det_backend *b, const det_pixels *img, cnp_tree *trees,
                                size_t n, cnp_err *err)
{
    if (!b->iface->classify) {
        cnp_err_set(err, "%s: a detector, not a classifier", b->iface->name);
        return CNP_ERR_INVALID;
    }
    return n == 0 ? CNP_OK : b->iface->classify(b->self, img, trees, n, err);
}

void det_found_free(det_found *f, size_t n)
{
    for (size_t i = 0; f && i < n; i++) {
        free(f[i].trees);
        f[i].trees = NULL;
        f[i].n = 0;
    }
}
