/* Crown models on the CPU backend (dnnl_crown.h). */
#include <stdlib.h>

#include "detect/cpu/dnnl_crown.h"
#include "detect/cpu/dnnl_internal.h"
#include "detect/detect_internal.h"

struct det_dnnl_crown {
    const det_model *m;
    det_graph graph;
    det_dnnl_graph *g;
    int tile, overlap;
    float threshold, nms_iou;
    float *input, *output;
    size_t input_floats, output_floats;
};

cnp_status det_dnnl_crown_create(const det_model *m, const cnp_detector_config *dc,
                                 const det_dnnl_opts *opts, det_dnnl_crown **out,
                                 cnp_err *err)
{
    *out = NULL;
    int tile = dc->tile / m->stride * m->stride;
    if (tile <= 0 || dc->tile_overlap < 0 || dc->tile_overlap >= tile) {
        cnp_err_set(err, "[detector] tile %d / tile_overlap %d: need 0 <= overlap < tile",
                    dc->tile, dc->tile_overlap);
        return CNP_ERR_CONFIG;
    }
    det_dnnl_crown *e = calloc(1, sizeof *e);
    if (!e) {
        cnp_err_set(err, "CPU backend: out of memory");
        return CNP_ERR_NOMEM;
    }
    e->m = m;
    e->tile = tile;
    e->overlap = dc->tile_overlap;
    e->threshold = det_score_threshold(m, dc->score_threshold);
    e->nms_iou = dc->nms_iou >= 0 ? (float)dc->nms_iou : (float)det_model_nms_iou(m);
    cnp_status result = det_crown_graph(m, &e->graph, err);
    if (result == CNP_OK)
        result = det_dnnl_graph_create(&e->graph, opts, &e->g, err);
    if (result != CNP_OK) {
        cnp_err_prefix(err, "%s", m->path);
        det_dnnl_crown_free(e);
        return result;
    }
    *out = e;
    return CNP_OK;
}

void det_dnnl_crown_free(det_dnnl_crown *e)
{
    if (!e)
        return;
    det_dnnl_graph_free(e->g);
    free(e->graph.nodes);
    free(e->input);
    free(e->output);
    free(e);
}

det_dnnl_graph *det_dnnl_crown_graph(det_dnnl_crown *e)
{
    return e->g;
}

void det_dnnl_crown_set_nms_iou(det_dnnl_crown *e, float iou)
{
    e->nms_iou = iou;
}

void det_dnnl_crown_tiling(const det_dnnl_crown *e, int *tile, int *overlap, int *stride)
{
    *tile = e->tile;
    *overlap = e->overlap;
    *stride = e->m->stride;
}

/* The network on one region; e->output holds 4 x *oh x *ow after it. */
static cnp_status forward(det_dnnl_crown *e, const uint8_t *rgba, uint32_t stride_px,
                          uint32_t w, uint32_t h, uint32_t *oh, uint32_t *ow, cnp_err *err)
{
    const det_model *m = e->m;
    det_model_out_size(m, w, h, ow, oh);
    size_t out_floats = 4 * (size_t)*ow * *oh;
    cnp_status result = dg_reserve(&e->input, &e->input_floats, (size_t)m->n_channels * w * h, err);
    if (result == CNP_OK)
        result = dg_reserve(&e->output, &e->output_floats, out_floats ? out_floats : 1, err);
    if (result != CNP_OK || out_floats == 0)
        return result;
    det_crown_preprocess(m, rgba, stride_px, w, h, e->input);
    result = det_dnnl_graph_run(e->g, e->input, 1, (int)h, (int)w, err);
    int c, fh, fw;
    if (result == CNP_OK)
        result = det_dnnl_graph_output(e->g, e->graph.n_nodes - 1, e->output, e->output_floats,
                                       &c, &fh, &fw, err);
    if (result == CNP_OK && (c != 4 || fh != (int)*oh || fw != (int)*ow)) {
        cnp_err_set(err, "%s: network output %dx%dx%d, expected 4x%ux%u", m->path, c, fh, fw,
                    *oh, *ow);
        result = CNP_ERR_INTERNAL;
    }
    return result;
}

cnp_status det_dnnl_crown_forward(det_dnnl_crown *e, const uint8_t *rgba, uint32_t stride_px,
                                  uint32_t w, uint32_t h, float **out, uint32_t *oh,
                                  uint32_t *ow, cnp_err *err)
{
    *out = NULL;
    cnp_status result = forward(e, rgba, stride_px, w, h, oh, ow, err);
    size_t floats = 4 * (size_t)*oh * *ow;
    if (result == CNP_OK && floats) {
        *out = malloc(floats * sizeof(float));
        if (!*out) {
            cnp_err_set(err, "CPU backend: out of memory");
            return CNP_ERR_NOMEM;
        }
        for (size_t i = 0; i < floats; i++)
            (*out)[i] = e->output[i];
    }
    return result;
}

cnp_status det_dnnl_crown_run(det_dnnl_crown *e, const cnp_image *img, cnp_tree **trees,
                              size_t *n, cnp_err *err)
{
    *trees = NULL;
    *n = 0;
    det_tile *tiles = NULL;
    size_t nt = 0, cap = 0;
    cnp_status result = det_tiles_plan(img->width, img->height, e->tile, e->overlap,
                                       e->m->stride, &tiles, &nt, err);
    for (size_t i = 0; result == CNP_OK && i < nt; i++) {
        const det_tile *t = &tiles[i];
        uint32_t oh = 0, ow = 0;
        result = forward(e, img->rgba + 4 * ((size_t)t->y0 * img->width + t->x0), img->width,
                         t->w, t->h, &oh, &ow, err);
        if (result == CNP_OK && oh && ow)
            result = det_decode(e->m, e->output, oh, ow, t->x0, t->y0, e->threshold, t->own,
                                trees, n, &cap, err);
    }
    free(tiles);
    /* Over the whole image, after the tiles, as det_ref_run and the engine. */
    if (result == CNP_OK)
        result = det_trees_nms(*trees, n, e->nms_iou, err);
    if (result != CNP_OK) {
        free(*trees);
        *trees = NULL;
        *n = 0;
        return result;
    }
    det_trees_sort(*trees, *n);
    return CNP_OK;
}
