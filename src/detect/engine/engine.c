/* OpenCL inference of the crown detector: preprocessing, the network, and
 * decode with 3x3 peak extraction and NMS, all on the device queue. Per
 * image the host waits once, for one read of the tree count and the list
 * together (the NMS reads the count on the device); twice only when the
 * trees outgrow the NMS room reserved so far (which then grows).
 *
 * The network runs on the graph engine's layer machinery
 * (graph_engine.c): the model's layers become a det_graph of crown input
 * (stride-1 "same" convs, 2x2/2 max pools) at creation, and the graph
 * engine chooses each conv's path (its direct kernel or im2col + CLBlast
 * SGEMM) by measurement remembered on disk, sizes its buffers once for
 * the largest tile and runs the forward with the output left on the
 * device: one engine, two graphs. This file keeps the crown-specific
 * parts: the preprocessing kernel (into the graph's input buffer), tiling,
 * peak decode and NMS. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "canopy/log.h"
#include "detect/detect_internal.h"
#include "detect/engine/nms_device.h"

/* NMS room of at least this many boxes, so that typical images allocate
 * once. */
#define ENG_NMS_MIN_CAP 1024

/* The crown side of the device NMS (nms_device.c does the rest): crowns
 * into its boxes, and the kept crowns gathered into `out` for one read. */
typedef struct eng_nms {
    det_nms_device *dev;
    cl_kernel boxes, gather;
    cl_mem out;     /* kept and tree counts, then the kept crowns */
    size_t out_cap; /* crowns `out` holds */
} eng_nms;

struct det_engine {
    ocl_ctx *ctx;
    const det_model *m;
    cl_context cl;
    cl_command_queue q;
    uint32_t tile;
    int overlap;
    int batch;         /* tiles of equal size per pass through the layers */
    float threshold;
    float logit_threshold;     /* det_logit_threshold(threshold), for detect_peaks */
    size_t n_layers;
    det_graph graph;   /* the model's layers as nodes 1..n_layers (nodes owned) */
    det_graph_engine *ge;
    int *layer_w, *layer_h; /* output size of each layer at the largest tile */
    cl_kernel pre, peaks;
    cl_mem trees, count;
    size_t tree_cap;
    float nms_iou;
    eng_nms nms;
    unsigned long waits; /* blocking reads of the tree lists (tests) */
};

static cnp_status cl_ok(cl_int code, const char *what, cnp_err *err)
{
    return ocl_check(code, what, err);
}

static void base_options(const det_model *m, char *buf, size_t len)
{
    int ch[4] = {0, 0, 0, 0};
    for (int i = 0; i < m->n_channels; i++)
        ch[i] = m->channel[i];
    snprintf(buf, len,
             "-DNCH=%d -DCH0=%d -DCH1=%d -DCH2=%d -DCH3=%d -DOUT_HEAT=%d -DOUT_LR=%d "
             "-DOUT_DX=%d -DOUT_DY=%d",
             m->n_channels, ch[0], ch[1], ch[2], ch[3], m->out_index[DET_OUT_HEATMAP],
             m->out_index[DET_OUT_LOG_RADIUS], m->out_index[DET_OUT_DX],
             m->out_index[DET_OUT_DY]);
}

static cnp_status create_buffer(det_engine *e, size_t bytes, const void *host, cl_mem *out,
                                const char *what, cnp_err *err)
{
    cl_int rc;
    cl_mem_flags flags = host ? CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR : CL_MEM_READ_WRITE;
    *out = ocl_buffer_create(e->cl, flags, bytes ? bytes : 4, (void *)host, &rc);
    return cl_ok(rc, what, err);
}

static cnp_status enqueue(det_engine *e, cl_kernel k, cl_uint dims, const size_t *global,
                          const size_t *local, const char *what, cnp_err *err)
{
    return ocl_enqueue(e->q, k, dims, global, local, what, err);
}
/* Preprocessing of region (x0, y0, w, h) into window k of a batch of n in
 * the graph's input buffer. */
static cnp_status run_preprocess(det_engine *e, cl_mem rgba, uint32_t img_w, uint32_t x0,
                                 uint32_t y0, uint32_t w, uint32_t h, int k, int n,
                                 cnp_err *err)
{
    const det_model *m = e->m;
    cl_float4 mean = {{0, 0, 0, 0}}, inv = {{1, 1, 1, 1}};
    for (int c = 0; c < m->n_channels; c++) {
        mean.s[c] = m->mean[c];
        inv.s[c] = 1.0f / m->std[c];
    }
    cl_int iw = (cl_int)img_w, ix = (cl_int)x0, iy = (cl_int)y0, tw = (cl_int)w,
           th = (cl_int)h, bk = k, bn = n;
    cl_mem input = det_graph_engine_input(e->ge);
    cnp_status result = OCL_SET_ARGS(e->pre, "detect_preprocess", err, OCL_ARG(rgba), OCL_ARG(iw),
                     OCL_ARG(ix), OCL_ARG(iy), OCL_ARG(tw), OCL_ARG(th), OCL_ARG(input), OCL_ARG(mean),
                     OCL_ARG(inv), OCL_ARG(bk), OCL_ARG(bn));
    if (result != CNP_OK)
        return result;
    size_t global[2] = {ocl_round_up(w, 16), ocl_round_up(h, 8)};
    size_t local[2] = {16, 8};
    return enqueue(e, e->pre, 2, global, local, "detect_preprocess", err);
}

/* Runs preprocessing and the network on n regions of equal size
 * (1..e->batch) as one batch; *out is the device buffer holding the
 * output (window k's channel c at plane c * n + k, each *oh x *ow). */
static cnp_status run_network(det_engine *e, cl_mem rgba, uint32_t img_w, const det_tile *t,
                              int n, cl_mem *out, uint32_t *ow, uint32_t *oh, cnp_err *err)
{
    cnp_status result = CNP_OK;
    for (int k = 0; result == CNP_OK && k < n; k++)
        result = run_preprocess(e, rgba, img_w, t[k].x0, t[k].y0, t[0].w, t[0].h, k, n, err);
    int oc = 0, ih = 0, iw = 0;
    if (result == CNP_OK)
        result = det_graph_engine_run_raw_batch(e->ge, n, (int)t[0].h, (int)t[0].w, out, &oc,
                                                &ih, &iw, err);
    *ow = (uint32_t)iw;
    *oh = (uint32_t)ih;
    return result;
}

void det_engine_conv_paths_file(const det_engine *e, char *out, size_t len)
{
    det_graph_engine_conv_paths_file(e->ge, out, len);
}

size_t det_engine_timed_layers(const det_engine *e)
{
    return det_graph_engine_timed_nodes(e->ge);
}

/* The layers' output sizes at the largest tile, the tree list and count. */
static cnp_status size_buffers(det_engine *e, cnp_err *err)
{
    int nn = e->graph.n_nodes;
    int *c = malloc(sizeof(int) * 3 * (size_t)nn);
    e->layer_w = malloc(sizeof(int) * (size_t)nn);
    e->layer_h = malloc(sizeof(int) * (size_t)nn);
    if (!c || !e->layer_w || !e->layer_h) {
        free(c);
        cnp_err_set(err, "detector engine: out of memory");
        return CNP_ERR_NOMEM;
    }
    cnp_status result = det_graph_ref_shapes(&e->graph, (int)e->tile, (int)e->tile, c, c + nn,
                                             c + 2 * nn, err);
    for (int i = 0; result == CNP_OK && i + 1 < nn; i++) {
        e->layer_h[i] = c[nn + i + 1];
        e->layer_w[i] = c[2 * nn + i + 1];
    }
    free(c);
    if (result != CNP_OK)
        return result;
    uint32_t ow, oh;
    det_model_out_size(e->m, e->tile, e->tile, &ow, &oh);
    e->tree_cap = (size_t)ow * oh * 4 + 64;
    result = create_buffer(e, e->tree_cap * sizeof(cl_float4), NULL, &e->trees, "tree list",
                           err);
    if (result == CNP_OK)
        result = create_buffer(e, sizeof(cl_int), NULL, &e->count, "tree count", err);
    return result;
}

static cnp_status nms_kernels(det_engine *e, const char *base, cnp_err *err)
{
    eng_nms *nm = &e->nms;
    cnp_status result = ocl_kernel_create(e->ctx, "detect", base, "detect_crown_boxes",
                                          &nm->boxes, err);
    if (result == CNP_OK)
        result = ocl_kernel_create(e->ctx, "detect", base, "detect_crown_gather", &nm->gather,
                                   err);
    if (result == CNP_OK)
        result = det_nms_device_create(e->ctx, base, &nm->dev, err);
    return result;
}

/* NMS room for n boxes (at least ENG_NMS_MIN_CAP) and `out` for as many
 * crowns as the room holds. */
static cnp_status nms_reserve(det_engine *e, size_t n, cnp_err *err)
{
    eng_nms *nm = &e->nms;
    size_t want = n > ENG_NMS_MIN_CAP ? n : ENG_NMS_MIN_CAP;
    cnp_status result = det_nms_device_reserve(nm->dev, want, err);
    size_t cap = det_nms_device_cap(nm->dev);
    if (result != CNP_OK || cap <= nm->out_cap)
        return result;
    ocl_buffer_release(nm->out);
    nm->out = NULL;
    nm->out_cap = 0;
    result = create_buffer(e, (cap + 1) * sizeof(cl_float4), NULL, &nm->out, "NMS result", err);
    if (result == CNP_OK)
        nm->out_cap = cap;
    return result;
}

cnp_status det_engine_create(ocl_ctx *ctx, const det_model *m, const cnp_detector_config *dc,
                             det_engine **out, cnp_err *err)
{
    *out = NULL;
    int stride = m->stride;
    int tile = dc->tile / stride * stride;
    if (tile <= 0 || dc->tile_overlap < 0 || dc->tile_overlap >= tile) {
        cnp_err_set(err, "[detector] tile %d / tile_overlap %d: need 0 <= overlap < tile",
                    dc->tile, dc->tile_overlap);
        return CNP_ERR_CONFIG;
    }
    det_engine *e = calloc(1, sizeof *e);
    if (!e) {
        cnp_err_set(err, "detector engine: out of memory");
        return CNP_ERR_NOMEM;
    }
    e->ctx = ctx;
    e->m = m;
    e->cl = ocl_ctx_context(ctx);
    e->q = ocl_ctx_queue(ctx);
    e->tile = (uint32_t)tile;
    e->overlap = dc->tile_overlap;
    e->threshold = det_score_threshold(m, dc->score_threshold);
    e->logit_threshold = det_logit_threshold(e->threshold);
    /* [detector] nms_iou, or the model's own value when it is negative. */
    e->nms_iou = dc->nms_iou >= 0 ? (float)dc->nms_iou : (float)det_model_nms_iou(m);
    e->n_layers = (size_t)m->n_layers;
    int rf = det_model_receptive_field(m);
    if (e->overlap < rf)
        LOG_INFO("detect",
                 "[detector] tile_overlap %d is below the receptive field (%d px) of %s: "
                 "trees within ~%d px of tile borders may differ from untiled results",
                 e->overlap, rf, m->version, (rf - e->overlap) / 2);
    char base[256];
    base_options(m, base, sizeof base);
    cnp_status result = ocl_kernel_create(ctx, "detect", base, "detect_preprocess", &e->pre, err);
    if (result == CNP_OK)
        result = ocl_kernel_create(ctx, "detect", base, "detect_peaks", &e->peaks, err);
    if (result == CNP_OK)
        result = nms_kernels(e, base, err);
    if (result == CNP_OK)
        result = det_crown_graph(m, &e->graph, err);
    /* The conv paths: configured, or measured at the largest tile (at most
     * 128 px on a CPU device) and remembered next to the kernel cache. */
    /* Tiles per batch: [detector] patch_batch, as for box models (0: 8 on
     * a GPU, 1 on a CPU device). */
    det_graph_engine_opts opts = {
        .conv = dc->conv == DET_CONV_DIRECT || dc->conv == DET_CONV_GEMM ||
                        dc->conv == DET_CONV_PIXEL
                    ? (enum det_conv_path)dc->conv
                    : DET_CONV_AUTO,
        .max_batch = (uint32_t)det_patch_batch(ctx, dc->patch_batch)};
    if (result == CNP_OK)
        result = det_graph_engine_create_opts(ctx, &e->graph, (uint32_t)tile, (uint32_t)tile,
                                              &opts, &e->ge, err);
    if (result == CNP_OK) {
        e->batch = det_graph_engine_max_batch(e->ge);
        result = size_buffers(e, err);
    }
    if (result != CNP_OK) {
        cnp_err_prefix(err, "%s", m->path);
        det_engine_free(e);
        return result;
    }
    *out = e;
    return CNP_OK;
}

static void release_kernel(cl_kernel k)
{
    if (k)
        clReleaseKernel(k);
}

void det_engine_free(det_engine *e)
{
    if (!e)
        return;
    if (e->q)
        clFinish(e->q);
    det_graph_engine_free(e->ge);
    free(e->graph.nodes);
    free(e->layer_w);
    free(e->layer_h);
    release_kernel(e->pre);
    release_kernel(e->peaks);
    ocl_buffer_release(e->trees);
    ocl_buffer_release(e->count);
    release_kernel(e->nms.boxes);
    release_kernel(e->nms.gather);
    ocl_buffer_release(e->nms.out);
    det_nms_device_free(e->nms.dev);
    free(e);
}

void det_engine_set_conv_path(det_engine *e, enum det_conv_path path)
{
    det_graph_engine_set_conv_path(e->ge, path);
}

static cnp_status check_image(cl_mem rgba, uint32_t w, uint32_t h, cnp_err *err)
{
    size_t size = 0;
    cnp_status result = cl_ok(clGetMemObjectInfo(rgba, CL_MEM_SIZE, sizeof size, &size, NULL),
                              "clGetMemObjectInfo", err);
    if (result == CNP_OK && size < (size_t)w * h * 4) {
        cnp_err_set(err, "detector: image buffer of %zu bytes is smaller than %ux%u RGBA",
                    size, w, h);
        result = CNP_ERR_INVALID;
    }
    return result;
}

static cnp_status ensure_tree_cap(det_engine *e, size_t need, cnp_err *err)
{
    if (need <= e->tree_cap)
        return CNP_OK;
    ocl_buffer_release(e->trees);
    e->trees = NULL;
    e->tree_cap = need;
    return create_buffer(e, need * sizeof(cl_float4), NULL, &e->trees, "tree list", err);
}

/* Peaks of window k of a batch of n (tile t) in heads. */
static cnp_status run_peaks(det_engine *e, cl_mem heads, uint32_t ow, uint32_t oh,
                            const det_tile *t, int k, int n, cnp_err *err)
{
    cl_int ioh = (cl_int)oh, iow = (cl_int)ow, x0 = (cl_int)t->x0, y0 = (cl_int)t->y0,
           cap = (cl_int)e->tree_cap, bk = k, bn = n;
    /* The score threshold as a logit, computed here (issue 20, item 7). */
    cl_float stride = (cl_float)e->m->stride, thr = e->logit_threshold;
    cl_float4 own = {{t->own[0], t->own[1], t->own[2], t->own[3]}};
    cnp_status result = OCL_SET_ARGS(e->peaks, "detect_peaks", err, OCL_ARG(heads), OCL_ARG(ioh),
                     OCL_ARG(iow), OCL_ARG(x0), OCL_ARG(y0), OCL_ARG(stride), OCL_ARG(thr), OCL_ARG(own),
                     OCL_ARG(e->trees), OCL_ARG(e->count), OCL_ARG(cap), OCL_ARG(bk),
                     OCL_ARG(bn));
    if (result != CNP_OK)
        return result;
    size_t global[2] = {ocl_round_up(ow, 16), ocl_round_up(oh, 4)};
    size_t local[2] = {16, 4};
    return enqueue(e, e->peaks, 2, global, local, "detect_peaks", err);
}

/* NMS of the crowns in e->trees (their number on the device, in e->count,
 * the launches sized for `room` of them: nms->out and the NMS hold that
 * many), on the device: their boxes, the device NMS (nms_device.c), and a
 * gather of the kept crowns into nm->out (kept and tree counts first, then
 * the crowns). Without NMS (iou >= 1) only the gather, of every crown. */
static cnp_status crown_enqueue(det_engine *e, size_t room, float iou, cnp_err *err)
{
    eng_nms *nm = &e->nms;
    cl_int croom = (cl_int)room, slot = 0, all = !(iou < 1.0f);
    size_t global = ocl_round_up(room < 65536 ? room : 65536, 64);
    det_nms_io io = det_nms_device_io(nm->dev);
    cnp_status result = CNP_OK;
    if (!all) {
        result = OCL_SET_ARGS(nm->boxes, "detect_crown_boxes", err, OCL_ARG(e->trees),
                              OCL_ARG(e->count), OCL_ARG(slot), OCL_ARG(croom), OCL_ARG(io.box),
                              OCL_ARG(io.score));
        if (result == CNP_OK)
            result = enqueue(e, nm->boxes, 1, &global, NULL, "detect_crown_boxes", err);
        if (result == CNP_OK)
            result = det_nms_device_enqueue_count(nm->dev, e->q, e->count, 0, room, iou,
                                                  DET_NMS_CONTAIN, 0, err);
    }
    if (result == CNP_OK)
        result = OCL_SET_ARGS(nm->gather, "detect_crown_gather", err, OCL_ARG(e->trees),
                              OCL_ARG(io.keep), OCL_ARG(io.count), OCL_ARG(e->count),
                              OCL_ARG(croom), OCL_ARG(all), OCL_ARG(nm->out));
    if (result == CNP_OK)
        result = enqueue(e, nm->gather, 1, &global, NULL, "detect_crown_gather", err);
    return result;
}

/* Enqueues the NMS (or the gather alone) for `room` crowns and reads
 * nm->out back: one wait. *total: the device's tree count; *kept: the
 * crowns in raw[1 ..] when *total <= room. */
static cnp_status crown_pass(det_engine *e, size_t room, float iou, cl_float4 *raw,
                             cl_int *total, cl_int *kept, cnp_err *err)
{
    cnp_status result = crown_enqueue(e, room, iou, err);
    if (result == CNP_OK) {
        result = cl_ok(clEnqueueReadBuffer(e->q, e->nms.out, CL_TRUE, 0,
                                           (room + 1) * sizeof *raw, raw, 0, NULL, NULL),
                       "reading the tree list", err);
        e->waits++;
    }
    memcpy(kept, &raw[0].s[0], sizeof *kept);
    memcpy(total, &raw[0].s[1], sizeof *total);
    return result;
}

/* The trees after NMS at iou on the device (none when iou >= 1), with one
 * read: the NMS and gather run at a fixed size, the room reserved so far
 * (at least ENG_NMS_MIN_CAP, at most the tree list), and read the tree
 * count on the device; the read brings the counts and the list together.
 * More trees than that room: the room grows to them and the pass runs
 * again (a second read). */
static cnp_status read_trees(det_engine *e, float iou, cnp_tree **trees, size_t *n,
                             cnp_err *err)
{
    cnp_status result = nms_reserve(e, 0, err);
    size_t cap = det_nms_device_cap(e->nms.dev);
    size_t room = cap < e->tree_cap ? cap : e->tree_cap;
    cl_float4 *raw = result == CNP_OK ? malloc((room + 1) * sizeof *raw) : NULL;
    if (result == CNP_OK && !raw) {
        cnp_err_set(err, "detector: out of memory for %zu trees", room);
        result = CNP_ERR_NOMEM;
    }
    cl_int total = 0, kept = 0;
    if (result == CNP_OK)
        result = crown_pass(e, room, iou, raw, &total, &kept, err);
    if (result == CNP_OK && (total < 0 || (size_t)total > e->tree_cap)) {
        cnp_err_set(err, "detector: %d trees overflow the list of %zu", total, e->tree_cap);
        result = CNP_ERR_INTERNAL;
    }
    if (result == CNP_OK && (size_t)total > room) { /* past the room: again, sized */
        room = (size_t)total;
        result = nms_reserve(e, room, err);
        cl_float4 *more = result == CNP_OK ? realloc(raw, (room + 1) * sizeof *raw) : NULL;
        if (result == CNP_OK && !more) {
            cnp_err_set(err, "detector: out of memory for %zu trees", room);
            result = CNP_ERR_NOMEM;
        }
        raw = more ? more : raw;
        if (result == CNP_OK)
            result = crown_pass(e, room, iou, raw, &total, &kept, err);
    }
    if (result == CNP_OK && (kept < (total > 0) || kept > total)) {
        cnp_err_set(err, "detector NMS: kept %d of %d trees", kept, total);
        result = CNP_ERR_INTERNAL;
    }
    size_t nt = result == CNP_OK ? (size_t)kept : 0;
    cnp_tree *out = nt ? malloc(nt * sizeof *out) : NULL;
    if (nt && !out) {
        cnp_err_set(err, "detector: out of memory for %zu trees", nt);
        result = CNP_ERR_NOMEM;
    }
    for (size_t i = 0; result == CNP_OK && i < nt; i++)
        out[i] = (cnp_tree){.x = raw[1 + i].s[0], .y = raw[1 + i].s[1],
                            .radius = raw[1 + i].s[2], .score = raw[1 + i].s[3]};
    free(raw);
    if (result != CNP_OK || nt == 0) {
        free(out);
        return result;
    }
    det_trees_sort(out, nt);
    *trees = out;
    *n = nt;
    return CNP_OK;
}

unsigned long det_engine_waits(const det_engine *e)
{
    return e->waits;
}

cnp_status det_engine_nms(det_engine *e, const det_box *boxes, const float *scores,
                          const int *labels, size_t n, float iou, uint32_t *keep,
                          size_t *n_keep, cnp_err *err)
{
    return det_engine_nms_contain(e, boxes, scores, labels, n, iou, 1.0f, keep, n_keep, err);
}

cnp_status det_engine_nms_contain(det_engine *e, const det_box *boxes, const float *scores,
                                  const int *labels, size_t n, float iou, float contain,
                                  uint32_t *keep, size_t *n_keep, cnp_err *err)
{
    *n_keep = 0;
    if (n == 0)
        return CNP_OK;
    if (n > INT32_MAX / 2) {
        cnp_err_set(err, "detector NMS: %zu boxes is more than supported", n);
        return CNP_ERR_INVALID;
    }
    cl_float4 *b4 = malloc(n * sizeof *b4);
    cl_int *idx = malloc(n * sizeof *idx);
    if (!b4 || !idx) {
        free(b4);
        free(idx);
        cnp_err_set(err, "detector NMS: out of memory for %zu boxes", n);
        return CNP_ERR_NOMEM;
    }
    for (size_t i = 0; i < n; i++)
        b4[i] = (cl_float4){{boxes[i].x0, boxes[i].y0, boxes[i].x1, boxes[i].y1}};
    cnp_status result = nms_reserve(e, n, err);
    det_nms_io io = det_nms_device_io(e->nms.dev);
    if (result == CNP_OK)
        result = cl_ok(clEnqueueWriteBuffer(e->q, io.box, CL_TRUE, 0, n * sizeof *b4, b4, 0,
                                            NULL, NULL),
                       "uploading NMS boxes", err);
    if (result == CNP_OK)
        result = cl_ok(clEnqueueWriteBuffer(e->q, io.score, CL_TRUE, 0, n * sizeof *scores,
                                            scores, 0, NULL, NULL),
                       "uploading NMS scores", err);
    if (result == CNP_OK && labels)
        result = cl_ok(clEnqueueWriteBuffer(e->q, io.label, CL_TRUE, 0, n * sizeof *labels,
                                            labels, 0, NULL, NULL),
                       "uploading NMS labels", err);
    if (result == CNP_OK)
        result = det_nms_device_enqueue(e->nms.dev, e->q, n, iou, contain, labels != NULL, err);
    cl_int kept = 0;
    if (result == CNP_OK)
        result = cl_ok(clEnqueueReadBuffer(e->q, io.count, CL_TRUE, 0, sizeof kept, &kept, 0,
                                           NULL, NULL),
                       "reading the NMS count", err);
    if (result == CNP_OK && (kept < 0 || (size_t)kept > n)) {
        cnp_err_set(err, "detector NMS: kept %d of %zu boxes", kept, n);
        result = CNP_ERR_INTERNAL;
    }
    if (result == CNP_OK && kept > 0)
        result = cl_ok(clEnqueueReadBuffer(e->q, io.keep, CL_TRUE, 0, (size_t)kept * sizeof *idx,
                                           idx, 0, NULL, NULL),
                       "reading the NMS result", err);
    for (cl_int k = 0; result == CNP_OK && k < kept; k++)
        keep[k] = (uint32_t)idx[k];
    if (result == CNP_OK)
        *n_keep = (size_t)kept;
    free(b4);
    free(idx);
    return result;
}

float det_engine_nms_iou(const det_engine *e)
{
    return e->nms_iou;
}

void det_engine_tiling(const det_engine *e, int *tile, int *overlap, int *stride)
{
    *tile = (int)e->tile;
    *overlap = e->overlap;
    *stride = e->m->stride;
}

void det_engine_set_nms_chunk_rows(det_engine *e, uint32_t rows)
{
    det_nms_device_set_chunk_rows(e->nms.dev, rows);
}

cnp_status det_engine_run(det_engine *e, cl_mem rgba, uint32_t w, uint32_t h,
                          cnp_tree **trees, size_t *n, cnp_err *err)
{
    return det_engine_run_nms(e, rgba, w, h, e->nms_iou, trees, n, err);
}

cnp_status det_engine_run_nms(det_engine *e, cl_mem rgba, uint32_t w, uint32_t h,
                              float nms_iou, cnp_tree **trees, size_t *n, cnp_err *err)
{
    *trees = NULL;
    *n = 0;
    det_tile *tiles = NULL;
    size_t nt = 0;
    cnp_status result = check_image(rgba, w, h, err);
    if (result == CNP_OK)
        result = det_tiles_plan(w, h, (int)e->tile, e->overlap, e->m->stride, &tiles, &nt, err);
    if (result != CNP_OK)
        return result;
    /* Every cell of every tile could at most be one tree. */
    size_t need = 0;
    for (size_t i = 0; i < nt; i++) {
        uint32_t ow, oh;
        det_model_out_size(e->m, tiles[i].w, tiles[i].h, &ow, &oh);
        need += (size_t)ow * oh;
    }
    result = ensure_tree_cap(e, need, err);
    cl_int zero = 0;
    if (result == CNP_OK)
        result = cl_ok(clEnqueueFillBuffer(e->q, e->count, &zero, sizeof zero, 0, sizeof zero,
                                           0, NULL, NULL),
                       "clEnqueueFillBuffer", err);
    /* Tiles of equal size (the interior's, then each edge's) go through
     * the layers e->batch at a time. Edge tiles are not padded to the full
     * size: the layers' "same" padding would then see the padded pixels'
     * activations instead of zeros, and the owned region's outputs would
     * change. Trees are sorted after the NMS, so the order is free. */
    det_tile *batch = result == CNP_OK ? malloc(sizeof *batch * (size_t)e->batch) : NULL;
    bool *done = result == CNP_OK ? calloc(nt ? nt : 1, sizeof *done) : NULL;
    if (result == CNP_OK && (!batch || !done)) {
        cnp_err_set(err, "detector: out of memory for a batch of %d tiles", e->batch);
        result = CNP_ERR_NOMEM;
    }
    for (size_t i = 0; result == CNP_OK && i < nt; i++) {
        uint32_t ow, oh;
        det_model_out_size(e->m, tiles[i].w, tiles[i].h, &ow, &oh);
        if (done[i] || ow == 0 || oh == 0)
            continue;
        int nb = 0;
        for (size_t j = i; j < nt && nb < e->batch; j++)
            if (!done[j] && tiles[j].w == tiles[i].w && tiles[j].h == tiles[i].h) {
                done[j] = true;
                batch[nb++] = tiles[j];
            }
        cl_mem heads = NULL;
        result = run_network(e, rgba, w, batch, nb, &heads, &ow, &oh, err);
        for (int k = 0; result == CNP_OK && k < nb; k++)
            result = run_peaks(e, heads, ow, oh, &batch[k], k, nb, err);
    }
    free(batch);
    free(done);
    free(tiles);
    if (result == CNP_OK)
        result = read_trees(e, nms_iou, trees, n, err);
    return result;
}

cnp_status det_engine_forward(det_engine *e, cl_mem rgba, uint32_t img_w, uint32_t x0,
                              uint32_t y0, uint32_t w, uint32_t h, float **out, uint32_t *oh,
                              uint32_t *ow, cnp_err *err)
{
    *out = NULL;
    *ow = *oh = 0;
    if (w > e->tile || h > e->tile || x0 + w > img_w) {
        cnp_err_set(err, "detector: region %ux%u at (%u, %u) exceeds the tile %u or the image",
                    w, h, x0, y0, e->tile);
        return CNP_ERR_INVALID;
    }
    cnp_status result = check_image(rgba, img_w, y0 + h, err);
    if (result != CNP_OK)
        return result;
    uint32_t fw, fh;
    det_model_out_size(e->m, w, h, &fw, &fh);
    if (fw == 0 || fh == 0)
        return CNP_OK;
    cl_mem heads = NULL;
    det_tile t = {.x0 = x0, .y0 = y0, .w = w, .h = h};
    result = run_network(e, rgba, img_w, &t, 1, &heads, ow, oh, err);
    if (result != CNP_OK)
        return result;
    size_t bytes = sizeof(float) * 4 * (size_t)*ow * *oh;
    *out = malloc(bytes);
    if (!*out) {
        cnp_err_set(err, "detector: out of memory");
        return CNP_ERR_NOMEM;
    }
    result = cl_ok(clEnqueueReadBuffer(e->q, heads, CL_TRUE, 0, bytes, *out, 0, NULL,
                                       NULL),
                   "reading the output tensor", err);
    if (result != CNP_OK) {
        free(*out);
        *out = NULL;
    }
    return result;
}

size_t det_engine_layer_count(const det_engine *e)
{
    return e->n_layers;
}

void det_engine_layer_info(const det_engine *e, size_t i, det_layer_info *info)
{
    const det_layer *l = &e->m->layers[i];
    bool conv = l->type == DET_LAYER_CONV;
    double direct_s = 0, gemm_s = 0;
    enum det_conv_path chosen = det_graph_engine_node_path(e->ge, (int)i + 1, &direct_s,
                                                           &gemm_s);
    int ow = e->layer_w[i], oh = e->layer_h[i];
    *info = (det_layer_info){
        .name = l->name,
        .is_conv = conv,
        .in = l->in,
        .out = l->out,
        .k = conv ? l->k : 2,
        .dilation = conv ? l->dilation : 1,
        .out_w = (uint32_t)ow,
        .out_h = (uint32_t)oh,
        .flops = conv ? 2.0 * l->in * l->out * l->k * l->k * (double)ow * oh
                      : (double)l->in * ow * oh * 3,
        .chosen = conv ? chosen : DET_CONV_AUTO,
        .direct_s = direct_s,
        .gemm_s = gemm_s,
    };
}

cnp_status det_engine_time_layer(det_engine *e, size_t i, enum det_conv_path path,
                                 int repeats, double *seconds, cnp_err *err)
{
    if (path == DET_CONV_AUTO)
        path = det_graph_engine_node_path(e->ge, (int)i + 1, NULL, NULL);
    return det_graph_engine_time_node(e->ge, (int)i + 1, path, repeats, (int)e->tile,
                                      (int)e->tile, seconds, err);
}

uint32_t det_engine_tile(const det_engine *e)
{
    return e->tile;
}

int det_engine_batch(const det_engine *e)
{
    return e->batch;
}
