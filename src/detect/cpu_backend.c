/* The CPU backend behind one handle (canopy/detect.h, det_cpu_engine): a
 * crown model through dnnl_crown.c or a box model through dnnl_graph.c
 * with DeepForest's patches, and the choice of backend ([device] backend).
 * Built without oneDNN (CANOPY_WITH_DNNL off), asking for the CPU backend
 * is refused with a message saying so. */
#include <stdlib.h>
#include <string.h>

#include "canopy/detect.h"
#include "detect/detect_internal.h"
#include "detect/patches.h"
#ifdef CANOPY_HAVE_DNNL
#include <stdio.h>

#include <oneapi/dnnl/dnnl.h>

#include "canopy/cache.h"
#include "detect/cpu/dnnl_crown.h"
#include "detect/cpu/dnnl_graph.h"
#endif

const char *det_backend_kind_name(enum cnp_backend b)
{
    return b == CNP_BACKEND_CPU ? "cpu" : b == CNP_BACKEND_OPENCL ? "opencl" : "auto";
}

bool det_cpu_backend_available(void)
{
#ifdef CANOPY_HAVE_DNNL
    return true;
#else
    return false;
#endif
}

cnp_status det_backend_choose(enum cnp_backend want, ocl_ctx *ctx, enum cnp_backend *out,
                              cnp_err *err)
{
    if (want == CNP_BACKEND_CPU && !det_cpu_backend_available()) {
        cnp_err_set(err, "[device] backend = cpu: this canopy was built without oneDNN "
                         "(cmake -DCANOPY_WITH_DNNL=ON with libdnnl-dev installed)");
        return CNP_ERR_CONFIG;
    }
    if (want == CNP_BACKEND_OPENCL && !ctx) {
        cnp_err_set(err, "[device] backend = opencl: no OpenCL device");
        return CNP_ERR_CONFIG;
    }
    if (want != CNP_BACKEND_AUTO) {
        *out = want;
        return CNP_OK;
    }
    cl_device_type type = CL_DEVICE_TYPE_CPU;
    if (ctx)
        clGetDeviceInfo(ocl_ctx_device(ctx), CL_DEVICE_TYPE, sizeof type, &type, NULL);
    *out = det_cpu_backend_available() && (type & CL_DEVICE_TYPE_CPU) ? CNP_BACKEND_CPU
                                                                       : CNP_BACKEND_OPENCL;
    if (*out == CNP_BACKEND_OPENCL && !ctx) {
        cnp_err_set(err, "no OpenCL device and no CPU backend (built without oneDNN)");
        return CNP_ERR_CONFIG;
    }
    return CNP_OK;
}

#ifdef CANOPY_HAVE_DNNL

struct det_cpu_engine {
    const det_model *m;
    det_dnnl_crown *crown;  /* crown model */
    det_graph graph;        /* box model: the model's graph with dc's thresholds */
    det_dnnl_graph *box;
    int patch_size;
    double patch_overlap;
    float patch_iou, nms_iou;
    const cnp_image *img;   /* the image of the run in progress (box patches) */
};

void det_cpu_choices_file(const char *cache_dir, const det_model *m, int threads, unsigned use,
                          char *out, size_t len)
{
    char dir[CNP_STR_LONG], cpu[320], dnnl[64], hex[17];
    cnp_cache_dir(cache_dir ? cache_dir : "", dir, sizeof dir);
    cnp_cpu_identity(cpu, sizeof cpu);
    const dnnl_version_t *v = dnnl_version();
    snprintf(dnnl, sizeof dnnl, "oneDNN %d.%d.%d %s", v->major, v->minor, v->patch, v->hash);
    const char *parts[] = {"cpu backend", cpu, dnnl, det_model_version(m)};
    unsigned key[2] = {(unsigned)threads, use};
    cnp_cache_key(parts, sizeof parts / sizeof *parts, key, sizeof key, hex);
    (void)cnp_mkdir_p(dir);
    snprintf(out, len, "%s/cpu-conv-choices-%s.txt", dir, hex);
}

cnp_status det_cpu_engine_create(const det_model *m, const cnp_detector_config *dc,
                                 int threads, const char *cache_dir, det_cpu_engine **out,
                                 cnp_err *err)
{
    *out = NULL;
    det_cpu_engine *e = calloc(1, sizeof *e);
    if (!e) {
        cnp_err_set(err, "CPU backend: out of memory");
        return CNP_ERR_NOMEM;
    }
    e->m = m;
    e->patch_size = dc->patch_size;
    e->patch_overlap = dc->patch_overlap;
    e->patch_iou = (float)dc->patch_iou;
    /* The measured Winograd / direct choices, remembered in the cache
     * directory per CPU, model and thread count (with or without an OpenCL
     * driver), so that every run after the first chooses alike (and the
     * same image gives the same boxes). */
    char file[CNP_STR_LONG + 64] = "";
    if (cache_dir)
        det_cpu_choices_file(cache_dir, m, threads, 0, file, sizeof file);
    det_dnnl_opts opts = {.threads = threads, .choices_file = file[0] ? file : NULL};
    cnp_status result;
    const det_graph *g = det_model_graph(m);
    if (g) {
        /* box.c's overrides: score_threshold and nms_iou (>= 0) replace the
         * model's. Patches one at a time: a batch measured no faster here. */
        e->graph = *g;
        if (dc->score_threshold >= 0)
            e->graph.retina.score_thresh = (float)dc->score_threshold;
        if (dc->nms_iou >= 0)
            e->graph.retina.nms_thresh = (float)dc->nms_iou;
        result = det_dnnl_graph_create(&e->graph, &opts, &e->box, err);
    } else {
        e->nms_iou = dc->nms_iou >= 0 ? (float)dc->nms_iou : (float)det_model_nms_iou(m);
        result = det_dnnl_crown_create(m, dc, &opts, &e->crown, err);
    }
    if (result != CNP_OK) {
        det_cpu_engine_free(e);
        return result;
    }
    *out = e;
    return CNP_OK;
}

void det_cpu_engine_free(det_cpu_engine *e)
{
    if (!e)
        return;
    det_dnnl_crown_free(e->crown);
    det_dnnl_graph_free(e->box);
    free(e);
}

int det_cpu_engine_threads(const det_cpu_engine *e)
{
    return det_dnnl_graph_threads(e->box ? e->box : det_dnnl_crown_graph(e->crown));
}

static cnp_status patch_batch(void *ctx, const det_tile *p, size_t np, det_detection **out,
                              size_t *n, cnp_err *err)
{
    det_cpu_engine *e = ctx;
    return det_dnnl_graph_predict_batch(e->box, e->img->rgba, e->img->width, e->img->height, p,
                                        np, out, n, err);
}

static cnp_status to_trees(det_detection *d, size_t nd, cnp_tree **trees, size_t *n,
                           cnp_err *err)
{
    *trees = NULL;
    *n = 0;
    if (nd == 0)
        return CNP_OK;
    *trees = malloc(nd * sizeof **trees);
    if (!*trees) {
        cnp_err_set(err, "out of memory for %zu trees", nd);
        return CNP_ERR_NOMEM;
    }
    for (size_t i = 0; i < nd; i++)
        (*trees)[i] = det_detection_tree(&d[i]);
    det_trees_sort(*trees, nd);
    *n = nd;
    return CNP_OK;
}

/* A box model on img: DeepForest's patches (patch_size > 0) or one call. */
static cnp_status box_run(det_cpu_engine *e, const cnp_image *img, bool tiled, cnp_tree **trees,
                          size_t *n, cnp_err *err)
{
    det_detection *d = NULL;
    size_t nd = 0;
    det_tile whole = {.x0 = 0, .y0 = 0, .w = img->width, .h = img->height};
    e->img = img;
    cnp_status result =
        tiled ? det_predict_tiled_batch(img->width, img->height, e->patch_size,
                                        e->patch_overlap, e->patch_iou, 1, patch_batch, e, &d,
                                        &nd, err)
              : patch_batch(e, &whole, 1, &d, &nd, err);
    e->img = NULL;
    if (result == CNP_OK)
        result = to_trees(d, nd, trees, n, err);
    free(d);
    return result;
}

cnp_status det_cpu_engine_run(det_cpu_engine *e, const cnp_image *img, cnp_tree **trees,
                              size_t *n, cnp_err *err)
{
    if (e->box)
        return box_run(e, img, e->patch_size > 0, trees, n, err);
    return det_dnnl_crown_run(e->crown, img, trees, n, err);
}

cnp_status det_cpu_engine_window(det_cpu_engine *e, const cnp_image *win, cnp_tree **trees,
                                 size_t *n, cnp_err *err)
{
    if (e->box)
        return box_run(e, win, false, trees, n, err);
    /* Crowns of one window unsuppressed: the NMS runs over all windows. */
    det_dnnl_crown_set_nms_iou(e->crown, 1.0f);
    cnp_status result = det_dnnl_crown_run(e->crown, win, trees, n, err);
    det_dnnl_crown_set_nms_iou(e->crown, e->nms_iou);
    return result;
}

float det_cpu_engine_merge_iou(const det_cpu_engine *e)
{
    return e->box ? e->patch_iou : e->nms_iou;
}

cnp_status det_cpu_engine_merge(det_cpu_engine *e, cnp_tree *trees, size_t *n, float iou,
                                cnp_err *err)
{
    if (e->box)
        return det_box_trees_merge(trees, n, iou, err);
    cnp_status result = det_trees_nms(trees, n, iou, err);
    if (result == CNP_OK)
        det_trees_sort(trees, *n);
    return result;
}

uint32_t det_cpu_engine_window_side(const det_cpu_engine *e, uint32_t *overlap, int *stride)
{
    if (e->box) {
        *overlap = 0;
        *stride = 1;
        return e->patch_size > 0 ? (uint32_t)e->patch_size : 0;
    }
    int tile, ov;
    det_dnnl_crown_tiling(e->crown, &tile, &ov, stride);
    *overlap = (uint32_t)ov;
    return (uint32_t)tile;
}

cnp_status det_cpu_engine_windows(const det_cpu_engine *e, uint32_t w, uint32_t h,
                                  det_tile **out, size_t *n, cnp_err *err)
{
    if (e->box) {
        if (e->patch_size <= 0) {
            cnp_err_set(err, "a %ux%u raster read in windows needs [detector] patch_size > 0 "
                             "(0 runs the whole image in one call)", w, h);
            return CNP_ERR_CONFIG;
        }
        return det_patches_plan(w, h, e->patch_size, e->patch_overlap, out, n, err);
    }
    int tile, overlap, stride;
    det_dnnl_crown_tiling(e->crown, &tile, &overlap, &stride);
    return det_tiles_plan(w, h, tile, overlap, stride, out, n, err);
}

#else /* no oneDNN: det_cpu_engine_create refuses, nothing else is reached */

static cnp_status not_built(cnp_err *err)
{
    return det_backend_choose(CNP_BACKEND_CPU, NULL, &(enum cnp_backend){0}, err);
}

cnp_status det_cpu_engine_create(const det_model *m, const cnp_detector_config *dc,
                                 int threads, const char *cache_dir, det_cpu_engine **out,
                                 cnp_err *err)
{
    *out = NULL;
    return not_built(err);
}

void det_cpu_engine_free(det_cpu_engine *e)
{
}

int det_cpu_engine_threads(const det_cpu_engine *e)
{
    return 0;
}

cnp_status det_cpu_engine_run(det_cpu_engine *e, const cnp_image *img, cnp_tree **trees,
                              size_t *n, cnp_err *err)
{
    return not_built(err);
}

cnp_status det_cpu_engine_window(det_cpu_engine *e, const cnp_image *win, cnp_tree **trees,
                                 size_t *n, cnp_err *err)
{
    return not_built(err);
}

float det_cpu_engine_merge_iou(const det_cpu_engine *e)
{
    return 1.0f;
}

cnp_status det_cpu_engine_merge(det_cpu_engine *e, cnp_tree *trees, size_t *n, float iou,
                                cnp_err *err)
{
    return not_built(err);
}

uint32_t det_cpu_engine_window_side(const det_cpu_engine *e, uint32_t *overlap, int *stride)
{
    *overlap = 0;
    *stride = 1;
    return 0;
}

cnp_status det_cpu_engine_windows(const det_cpu_engine *e, uint32_t w, uint32_t h,
                                  det_tile **out, size_t *n, cnp_err *err)
{
    return not_built(err);
}

#endif
