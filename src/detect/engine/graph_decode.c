/* RetinaNet's decode on the device for a graph engine: sigmoid, threshold
 * and compaction per level, top-k (topk.c, two launches), anchors, box decoding and
 * clipping, class-wise NMS (detect.cl's detect_nms_* kernels), and the
 * predict entry points (one window, or a batch of equal windows). The
 * per-level candidate counts stay on the device: every launch after the
 * scores is sized from what the host knows (each level's room, top-k,
 * detections_per_img) and its kernel reads the counts there, so only the
 * final detections come back, with one wait per batch. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "canopy/log.h"
#include "detect/engine/graph_engine_internal.h"

/* Sigmoid + threshold + compaction of every level's logits of patch b of
 * the batch into its keys (at b * key_total + key_base[l]) and counts (at
 * b * GE_COUNT_STRIDE + l; zeroed by the caller). */
static cnp_status enqueue_scores(det_graph_engine *e, int b, cnp_err *err)
{
    const det_retina *r = &e->g->retina;
    int nn = e->g->n_nodes, *c = e->shape;
    cnp_status result = CNP_OK;
    for (cl_int l = 0; result == CNP_OK && l < r->n_levels; l++) {
        int ci = r->cls_node[l];
        cl_int hw = c[nn + ci] * c[2 * nn + ci], AK = c[ci],
               base = (cl_int)((size_t)b * e->key_total) + e->key_base[l], cap = e->key_cap[l],
               slot = b * GE_COUNT_STRIDE + l;
        /* score > t is score >= the next float up: the smallest logit
         * whose host sigmoid gets there (~32 sigmoids, once per level). */
        cl_float thr = det_logit_threshold(nextafterf(r->score_thresh, INFINITY));
        cl_mem cls = ge_node_buf(e, ci);
        cl_int cb = b, N = e->batch;
        result = OCL_SET_ARGS(e->scores, "graph_scores", err, OCL_ARG(cls), OCL_ARG(hw), OCL_ARG(AK),
                          OCL_ARG(thr), OCL_ARG(e->keys), OCL_ARG(base), OCL_ARG(e->counts), OCL_ARG(slot),
                          OCL_ARG(cap), OCL_ARG(cb), OCL_ARG(N));
        size_t global = ocl_round_up((size_t)hw * AK, 64);
        if (result == CNP_OK)
            result = ge_enqueue(e, e->scores, 1, &global, NULL, "graph_scores", err);
    }
    return result;
}

/* Level l's candidates (their count on the device): their top-k
 * (ascending keys: score descending, then flat index, torch.topk's order)
 * decoded into the NMS input after the earlier levels'; the last level
 * leaves the patch's box count at its counts' GE_COUNT_TOTAL. */
static cnp_status enqueue_level(det_graph_engine *e, int b, int l, int rh, int rw, int ph,
                                int pw, cnp_err *err)
{
    const det_retina *r = &e->g->retina;
    int nn = e->g->n_nodes, *c = e->shape, bi = r->box_node[l];
    cl_int base = (cl_int)((size_t)b * e->key_total) + e->key_base[l],
           cslot = b * GE_COUNT_STRIDE, lv = l, cap = e->key_cap[l], topk = r->topk_candidates,
           last = l == r->n_levels - 1, total = cslot + GE_COUNT_TOTAL;
    cnp_status result = det_topk_enqueue(e->topk, e->q, e->keys, (size_t)base, e->counts,
                                         (size_t)(cslot + l), (size_t)cap, (size_t)topk, err);
    cl_int hw = c[nn + bi] * c[2 * nn + bi], fw = c[2 * nn + bi], A = r->n_sizes * r->n_ratios,
           K = r->num_classes, sx = pw / c[2 * nn + bi], sy = ph / c[nn + bi], crh = rh, crw = rw,
           pb = b, NB = e->batch;
    cl_float4 wts = {{r->box_weights[0], r->box_weights[1], r->box_weights[2],
                      r->box_weights[3]}};
    cl_float clip = r->bbox_clip;
    cl_mem reg = ge_node_buf(e, bi);
    det_nms_io io = det_nms_device_io(e->nms);
    if (result == CNP_OK)
        result = OCL_SET_ARGS(e->decode, "graph_decode", err, OCL_ARG(e->keys), OCL_ARG(base),
                              OCL_ARG(e->counts), OCL_ARG(cslot), OCL_ARG(lv), OCL_ARG(cap),
                              OCL_ARG(topk), OCL_ARG(last), OCL_ARG(total), OCL_ARG(reg),
                              OCL_ARG(hw), OCL_ARG(fw), OCL_ARG(A), OCL_ARG(K), OCL_ARG(sx),
                              OCL_ARG(sy), OCL_ARG(e->anchors[l]), OCL_ARG(wts), OCL_ARG(clip),
                              OCL_ARG(crh), OCL_ARG(crw), OCL_ARG(io.box), OCL_ARG(io.score),
                              OCL_ARG(io.label), OCL_ARG(pb), OCL_ARG(NB));
    /* A fixed grid (the most candidates a level can give); the work-items
     * loop over the real ones. */
    size_t most = (size_t)(topk < cap ? topk : cap);
    size_t gdec = ocl_round_up(most ? most : 1, 64);
    if (result == CNP_OK)
        result = ge_enqueue(e, e->decode, 1, &gdec, NULL, "graph_decode", err);
    return result;
}

/* Class-wise NMS of patch b's decoded boxes (nms_device.c; their number at
 * its counts' GE_COUNT_TOTAL on the device, at most levels * topk, the
 * NMS's room), then the gather of the kept ones into e->out. */
static cnp_status enqueue_nms(det_graph_engine *e, int b, float rx, float ry, cnp_err *err)
{
    const det_retina *r = &e->g->retina;
    cl_int max_det = r->detections_per_img;
    cl_float crx = rx, cry = ry;
    det_nms_io io = det_nms_device_io(e->nms);
    size_t room = (size_t)r->n_levels * (size_t)r->topk_candidates;
    cnp_status result = det_nms_device_enqueue_count(
        e->nms, e->q, e->counts, (size_t)b * GE_COUNT_STRIDE + GE_COUNT_TOTAL, room,
        r->nms_thresh, 1.0f, 1, err);
    if (result == CNP_OK)
        result = OCL_SET_ARGS(e->gather, "graph_gather", err, OCL_ARG(io.box),
                              OCL_ARG(io.score), OCL_ARG(io.label), OCL_ARG(io.keep),
                              OCL_ARG(io.count), OCL_ARG(max_det), OCL_ARG(crx), OCL_ARG(cry),
                              OCL_ARG(e->out));
    size_t g4 = ocl_round_up((size_t)max_det, 64);
    if (result == CNP_OK)
        result = ge_enqueue(e, e->gather, 1, &g4, NULL, "graph_gather", err);
    return result;
}

/* Decode and NMS of patch b of the batch just run (its window transformed
 * to rh x rw padded to ph x pw; its per-level candidate counts on the
 * device), the kept detections copied to its place in e->outs (a count of
 * 0 when none). Every launch sized from the host's bounds; nothing read. */
static cnp_status enqueue_patch(det_graph_engine *e, int b, float rx, float ry, int rh, int rw,
                                int ph, int pw, cnp_err *err)
{
    const det_retina *r = &e->g->retina;
    cnp_status result = CNP_OK;
    for (int l = 0; result == CNP_OK && l < r->n_levels; l++)
        result = enqueue_level(e, b, l, rh, rw, ph, pw, err);
    if (result == CNP_OK)
        result = enqueue_nms(e, b, rx, ry, err);
    size_t bytes = (1 + 6 * (size_t)r->detections_per_img) * sizeof(float);
    if (result == CNP_OK)
        result = ocl_check(clEnqueueCopyBuffer(e->q, e->out, e->outs, 0, (size_t)b * bytes,
                                               bytes, 0, NULL, NULL),
                           "copying the detections", err);
    return result;
}

/* The detections of one patch from its place in the mapped e->outs. */
static cnp_status parse_patch(const det_graph_engine *e, const float *raw, det_detection **out,
                              size_t *n, cnp_err *err)
{
    int kept = 0;
    memcpy(&kept, &raw[0], sizeof kept);
    if (kept < 0 || kept > e->g->retina.detections_per_img) {
        cnp_err_set(err, "graph engine: NMS kept %d boxes, more than %d", kept,
                    e->g->retina.detections_per_img);
        return CNP_ERR_INTERNAL;
    }
    if (kept == 0)
        return CNP_OK;
    *out = malloc((size_t)kept * sizeof **out);
    if (!*out) {
        cnp_err_set(err, "graph engine: out of memory");
        return CNP_ERR_NOMEM;
    }
    for (int k = 0; k < kept; k++) {
        const float *o = raw + 1 + 6 * (size_t)k;
        int label;
        memcpy(&label, &o[5], sizeof label);
        (*out)[k] = (det_detection){o[0], o[1], o[2], o[3], o[4], label};
    }
    *n = (size_t)kept;
    return CNP_OK;
}

/* The np windows (equal sizes) as one batch: the layers, every patch's
 * scores, top-k, decode and NMS (the candidate counts read on the device
 * only), and one map of all their detections: one wait per batch whatever
 * its size. */
static cnp_status predict(det_graph_engine *e, cl_mem rgba, uint32_t img_w, const det_tile *p,
                          size_t np, det_detection **out, size_t *n_out, cnp_err *err)
{
    int rh, rw, ph, pw;
    cnp_status result = ge_run_graph(e, rgba, img_w, p, np, e->g->n_nodes - 1, &rh, &rw, &ph, &pw,
                                  err);
    size_t nc = np * GE_COUNT_STRIDE;
    cl_int zero = 0;
    if (result == CNP_OK)
        result = ocl_check(clEnqueueFillBuffer(e->q, e->counts, &zero, sizeof zero, 0,
                                               nc * sizeof zero, 0, NULL, NULL),
                           "clEnqueueFillBuffer", err);
    for (size_t k = 0; result == CNP_OK && k < np; k++)
        result = enqueue_scores(e, (int)k, err);
    float rx = (float)p[0].w / (float)rw, ry = (float)p[0].h / (float)rh;
    for (size_t k = 0; result == CNP_OK && k < np; k++)
        result = enqueue_patch(e, (int)k, rx, ry, rh, rw, ph, pw, err);
    size_t stride = 1 + 6 * (size_t)e->g->retina.detections_per_img;
    float *raw = NULL;
    cl_int rc = CL_SUCCESS;
    if (result == CNP_OK) {
        raw = clEnqueueMapBuffer(e->q, e->outs, CL_TRUE, CL_MAP_READ, 0,
                                 np * stride * sizeof *raw, 0, NULL, NULL, &rc);
        e->waits++;
        result = ocl_check(rc, "reading the detections", err);
    }
    for (size_t k = 0; result == CNP_OK && raw && k < np; k++)
        result = parse_patch(e, raw + k * stride, &out[k], &n_out[k], err);
    if (raw)
        clEnqueueUnmapMemObject(e->q, e->outs, raw, 0, NULL, NULL);
    return result;
}

cnp_status det_graph_engine_predict(det_graph_engine *e, cl_mem rgba, uint32_t img_w,
                                    uint32_t x0, uint32_t y0, uint32_t w, uint32_t h,
                                    det_detection **out, size_t *n, cnp_err *err)
{
    det_tile win = {.x0 = x0, .y0 = y0, .w = w, .h = h};
    *out = NULL;
    *n = 0;
    cnp_status result = predict(e, rgba, img_w, &win, 1, out, n, err);
    ge_stamp(e, e->times ? &e->times->post : NULL);
    return result;
}

cnp_status det_graph_engine_predict_batch(det_graph_engine *e, cl_mem rgba, uint32_t img_w,
                                          const det_tile *patches, size_t n,
                                          det_detection **out, size_t *n_out, cnp_err *err)
{
    for (size_t k = 0; k < n; k++) {
        out[k] = NULL;
        n_out[k] = 0;
    }
    cnp_status result = CNP_OK;
    for (size_t k0 = 0; result == CNP_OK && k0 < n; k0 += (size_t)e->max_batch) {
        size_t nb = n - k0 < (size_t)e->max_batch ? n - k0 : (size_t)e->max_batch;
        result = predict(e, rgba, img_w, patches + k0, nb, out + k0, n_out + k0, err);
    }
    ge_stamp(e, e->times ? &e->times->post : NULL);
    if (result != CNP_OK)
        for (size_t k = 0; k < n; k++) {
            free(out[k]);
            out[k] = NULL;
            n_out[k] = 0;
        }
    return result;
}

int det_graph_engine_max_batch(const det_graph_engine *e)
{
    return e->max_batch;
}

unsigned long det_graph_engine_waits(const det_graph_engine *e)
{
    return e->waits;
}
