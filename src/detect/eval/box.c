/* Box models (.cnw version 2, an imported RetinaNet) behind the detector's
 * public API: the engine on the device and the C reference, each with
 * DeepForest's patches (patches.h) and the [detector] overrides. */
#include <stdlib.h>
#include <string.h>

#include "detect/classify.h"
#include "detect/detect_internal.h"
#include "detect/patches.h"

struct det_box_engine {
    det_graph graph; /* the model's graph with this run's thresholds */
    det_graph_engine *eng;
    int patch_size;
    double patch_overlap;
    float patch_iou;
    cl_mem rgba;     /* the image of the current run */
    uint32_t img_w;
};

bool det_model_has_boxes(const det_model *m)
{
    return m && det_model_graph(m) != NULL && !det_model_is_classifier(m);
}

bool det_model_is_classifier(const det_model *m)
{
    return m && det_model_graph(m) && det_model_graph(m)->input.kind == DET_INPUT_CROP;
}

const char *det_model_label(const det_model *m, int label)
{
    const det_graph *g = m ? det_model_graph(m) : NULL;
    if (!g || label < 0 || label >= g->retina.num_classes)
        return NULL;
    return g->retina.labels[label];
}

void det_model_crop_rect(const det_model *m, const cnp_tree *t, uint32_t W, uint32_t H,
                         uint32_t r[4])
{
    static const det_classifier none = {0};
    det_crop_rect(det_model_is_classifier(m) ? &det_model_graph(m)->classify : &none, t, W, H,
                  r);
}

int det_model_type_count(const det_model *m)
{
    return det_model_is_classifier(m) ? det_model_graph(m)->classify.num_classes : 0;
}

const char *det_model_type_name(const det_model *m, int k)
{
    if (k < 0 || k >= det_model_type_count(m))
        return NULL;
    return det_model_graph(m)->classify.labels[k];
}

float det_score_threshold(const det_model *m, double configured)
{
    if (configured >= 0)
        return (float)configured;
    const det_graph *g = m ? det_model_graph(m) : NULL;
    return g ? g->retina.score_thresh : (float)DET_SCORE_THRESHOLD_DEFAULT;
}

/* The model's graph with the configuration's overrides: score_threshold
 * (>= 0) for the model's score_thresh, nms_iou (>= 0) for its nms_thresh. */
static cnp_status run_graph(const det_model *m, const cnp_detector_config *dc, det_graph *out,
                            cnp_err *err)
{
    const det_graph *g = det_model_graph(m);
    if (!g) {
        cnp_err_set(err, "%s: not a box model", det_model_version(m));
        return CNP_ERR_INVALID;
    }
    *out = *g;
    if (dc->score_threshold >= 0)
        out->retina.score_thresh = (float)dc->score_threshold;
    if (dc->nms_iou >= 0)
        out->retina.nms_thresh = (float)dc->nms_iou;
    return CNP_OK;
}

cnp_status det_box_engine_create(ocl_ctx *ctx, const det_model *m,
                                 const cnp_detector_config *dc, det_box_engine **out,
                                 cnp_err *err)
{
    *out = NULL;
    det_box_engine *e = calloc(1, sizeof *e);
    if (!e) {
        cnp_err_set(err, "out of memory for the box detector");
        return CNP_ERR_NOMEM;
    }
    cnp_status result = run_graph(m, dc, &e->graph, err);
    e->patch_size = dc->patch_size;
    e->patch_overlap = dc->patch_overlap;
    e->patch_iou = (float)dc->patch_iou;
    uint32_t side = dc->patch_size > 0 ? (uint32_t)dc->patch_size : 65535u;
    /* Patches go through the network `batch` at a time where their
     * activations fit the engine's memory budget (det_patch_batch). */
    int batch = det_patch_batch(ctx, dc->patch_batch);
    det_graph_engine_opts opts = {.conv = (enum det_conv_path)dc->conv,
                                  .max_batch = dc->patch_size > 0 ? batch : 1};
    if (result == CNP_OK)
        result = det_graph_engine_create_opts(ctx, &e->graph, side, side, &opts, &e->eng, err);
    if (result != CNP_OK) {
        det_box_engine_free(e);
        return result;
    }
    *out = e;
    return CNP_OK;
}

void det_box_engine_free(det_box_engine *e)
{
    if (!e)
        return;
    det_graph_engine_free(e->eng);
    free(e);
}

cnp_status det_box_windows(const cnp_detector_config *dc, uint32_t w, uint32_t h,
                           det_tile **out, size_t *n, cnp_err *err)
{
    if (dc->patch_size <= 0) {
        cnp_err_set(err, "a %ux%u raster read in windows needs [detector] patch_size > 0 "
                         "(0 runs the whole image in one call)", w, h);
        return CNP_ERR_CONFIG;
    }
    return det_patches_plan(w, h, dc->patch_size, dc->patch_overlap, out, n, err);
}

cnp_status det_box_engine_windows(const det_box_engine *e, uint32_t w, uint32_t h,
                                  det_tile **out, size_t *n, cnp_err *err)
{
    cnp_detector_config dc = {.patch_size = e->patch_size, .patch_overlap = e->patch_overlap};
    return det_box_windows(&dc, w, h, out, n, err);
}

static cnp_status to_trees(det_detection *d, size_t n, cnp_tree **trees, size_t *nt,
                           cnp_err *err)
{
    *trees = NULL;
    *nt = 0;
    if (n == 0)
        return CNP_OK;
    cnp_tree *t = malloc(n * sizeof *t);
    if (!t) {
        cnp_err_set(err, "out of memory for %zu trees", n);
        return CNP_ERR_NOMEM;
    }
    for (size_t i = 0; i < n; i++)
        t[i] = det_detection_tree(&d[i]);
    det_trees_sort(t, n);
    *trees = t;
    *nt = n;
    return CNP_OK;
}

static cnp_status engine_patches(void *ctx, const det_tile *p, size_t np, det_detection **out,
                                 size_t *n, cnp_err *err)
{
    det_box_engine *e = ctx;
    return det_graph_engine_predict_batch(e->eng, e->rgba, e->img_w, p, np, out, n, err);
}

cnp_status det_box_engine_run(det_box_engine *e, cl_mem rgba, uint32_t w, uint32_t h,
                              cnp_tree **trees, size_t *n, cnp_err *err)
{
    det_detection *d = NULL;
    size_t nd = 0;
    cnp_status result;
    e->rgba = rgba;
    e->img_w = w;
    if (e->patch_size > 0)
        result = det_predict_tiled_batch(w, h, e->patch_size, e->patch_overlap, e->patch_iou,
                                         (size_t)det_graph_engine_max_batch(e->eng),
                                         engine_patches, e, &d, &nd, err);
    else
        result = det_graph_engine_predict(e->eng, rgba, w, 0, 0, w, h, &d, &nd, err);
    if (result == CNP_OK)
        result = to_trees(d, nd, trees, n, err);
    free(d);
    return result;
}

cnp_status det_box_engine_patch(det_box_engine *e, cl_mem rgba, uint32_t w, uint32_t h,
                                cnp_tree **trees, size_t *n, cnp_err *err)
{
    det_detection *d = NULL;
    size_t nd = 0;
    cnp_status result = det_graph_engine_predict(e->eng, rgba, w, 0, 0, w, h, &d, &nd, err);
    if (result == CNP_OK)
        result = to_trees(d, nd, trees, n, err);
    free(d);
    return result;
}

cnp_status det_box_trees_merge(cnp_tree *trees, size_t *n, float iou, cnp_err *err)
{
    if (*n < 2 || iou >= 1.0f) {
        det_trees_sort(trees, *n);
        return CNP_OK;
    }
    det_detection *d = malloc(*n * sizeof *d);
    if (!d) {
        cnp_err_set(err, "out of memory merging %zu boxes", *n);
        return CNP_ERR_NOMEM;
    }
    for (size_t i = 0; i < *n; i++)
        d[i] = (det_detection){trees[i].x0, trees[i].y0, trees[i].x1, trees[i].y1,
                               trees[i].score, trees[i].label};
    cnp_status result = det_detections_nms(d, n, iou, err);
    for (size_t i = 0; result == CNP_OK && i < *n; i++)
        trees[i] = det_detection_tree(&d[i]);
    free(d);
    if (result == CNP_OK)
        det_trees_sort(trees, *n);
    return result;
}

void det_tree_shift(cnp_tree *t, uint32_t dx, uint32_t dy)
{
    if (t->boxed) {
        det_detection d = {t->x0, t->y0, t->x1, t->y1, t->score, t->label};
        det_detections_shift(&d, 1, dx, dy);
        *t = det_detection_tree(&d);
    } else {
        t->x += (float)dx;
        t->y += (float)dy;
    }
}

/* ---- C reference ---------------------------------------------------------- */

typedef struct ref_ctx {
    const det_graph *g;
    const cnp_image *img;
} ref_ctx;

static cnp_status ref_patch(void *ctx, const det_tile *p, det_detection **out, size_t *n,
                            cnp_err *err)
{
    const ref_ctx *r = ctx;
    const uint8_t *px = r->img->rgba + 4 * ((size_t)p->y0 * r->img->width + p->x0);
    return det_retina_ref_predict(r->g, px, 4 * r->img->width, p->w, p->h, out, n, err);
}

cnp_status det_box_ref_run(const det_model *m, const cnp_detector_config *dc,
                           const cnp_image *img, cnp_tree **trees, size_t *n, cnp_err *err)
{
    det_graph g;
    cnp_status result = run_graph(m, dc, &g, err);
    if (result != CNP_OK)
        return result;
    ref_ctx r = {&g, img};
    det_detection *d = NULL;
    size_t nd = 0;
    if (dc->patch_size > 0)
        result = det_predict_tiled(img->width, img->height, dc->patch_size, dc->patch_overlap,
                                   (float)dc->patch_iou, ref_patch, &r, &d, &nd, err);
    else
        result = det_retina_ref_predict(&g, img->rgba, 4 * img->width, img->width, img->height,
                                        &d, &nd, err);
    if (result == CNP_OK)
        result = to_trees(d, nd, trees, n, err);
    free(d);
    return result;
}
