/* OpenCL inference of graph models (det_graph), in three files sharing
 * graph_engine_internal.h: this one (creation, buffers, the transform and
 * the graph's run), graph_nodes.c (each node's kernels), graph_paths.c (each
 * conv node's path) and graph_decode.c (RetinaNet's decode and the predict
 * entry points).
 *
 * The input transform, every
 * node (convolutions as im2col + CLBlast SGEMM + one epilogue kernel, the
 * direct kernels graph_conv or graph_conv_px (conv_px.c) with the epilogue
 * fused, or for 3x3 stride-1 nodes Winograd F(2x2, 3x3) (winograd.c),
 * whichever measured fastest for the node's shape, batch and device,
 * remembered on disk), and RetinaNet's decode (sigmoid, threshold,
 * per-level top-k in two launches (topk.c), anchors, box decoding,
 * clipping) and class-wise NMS (detect.cl's
 * detect_nms_* kernels), all on the device queue. Per batch of patches the
 * host waits once, for one map of all their detections: the candidate
 * counts stay on the device, read there by the top-k, decode and NMS.
 *
 * Activation buffers are planned once at creation for the largest
 * transformed size the retina allows: each node's output gets a slot that
 * is reused once every reader of its previous tenant has run. */
#include <clblast_c.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "canopy/log.h"
#include "detect/engine/graph_engine_internal.h"

static cnp_status create_buffer(det_graph_engine *e, size_t bytes, const void *host, cl_mem *out,
                                const char *what, cnp_err *err)
{
    cl_int rc;
    cl_mem_flags flags = host ? CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR : CL_MEM_READ_WRITE;
    *out = ocl_buffer_create(e->cl, flags, bytes ? bytes : 4, (void *)host, &rc);
    if (rc == CL_SUCCESS)
        e->device_bytes += bytes ? bytes : 4;
    return ocl_check(rc, what, err);
}

/* Timing on: waits for the queue and adds the seconds since the last stamp
 * to *acc (NULL: only restarts the clock). Off: nothing. */
void ge_stamp(det_graph_engine *e, double *acc)
{
    if (!e->times)
        return;
    clFinish(e->q);
    double t = cnp_now();
    if (acc)
        *acc += t - e->tick;
    e->tick = t;
}

void det_graph_engine_set_times(det_graph_engine *e, det_graph_times *t)
{
    e->times = t;
}

size_t det_graph_engine_device_bytes(const det_graph_engine *e)
{
    return e->device_bytes;
}

cnp_status ge_enqueue(det_graph_engine *e, cl_kernel k, cl_uint dims, const size_t *global,
                          const size_t *local, const char *what, cnp_err *err)
{
    return ocl_enqueue(e->q, k, dims, global, local, what, err);
}


/* ---- planning ------------------------------------------------------------ */

/* Floats of every node's output for the largest transformed sizes: every
 * padded size is at most (A, B) or (B, A) with A, B the padded min_size and
 * max_size, and shapes grow with the input. */
static cnp_status plan_sizes(det_graph_engine *e, int *c, int *h, int *w, size_t *col,
                             cnp_err *err)
{
    const det_graph *g = e->g;
    const det_retina *r = &g->retina;
    int d = r->size_divisible > 0 ? r->size_divisible : 1;
    int a = (r->min_size + d - 1) / d * d, b = (r->max_size + d - 1) / d * d;
    if (a > b)
        a = b;
    int sizes[2][2] = {{a, b}, {b, a}}, n_sizes = 2;
    if (g->input.kind == DET_INPUT_CROWN) { /* no resize: the window itself */
        sizes[0][0] = (int)e->max_h;
        sizes[0][1] = (int)e->max_w;
        n_sizes = 1;
    }
    e->plan_h = sizes[0][0];
    e->plan_w = sizes[0][1];
    *col = 1;
    for (int s = 0; s < n_sizes; s++) {
        cnp_status result = det_graph_ref_shapes(g, sizes[s][0], sizes[s][1], c, h, w, err);
        if (result != CNP_OK)
            return result;
        for (int i = 0; i < g->n_nodes; i++) {
            size_t need = (size_t)c[i] * h[i] * w[i];
            if (need > e->nodes[i].need)
                e->nodes[i].need = need;
            const det_node *n = &g->nodes[i];
            if (n->op == DET_OP_CONV) {
                size_t cols = (size_t)h[i] * w[i] * (size_t)e->max_batch;
                size_t gc = ge_gemm_cols(n, cols);
                size_t cf = (size_t)n->cin * n->k * n->k * gc;
                if (cf > *col)
                    *col = cf;
                /* Every im2col node's: a smaller input (fewer columns than
                 * planned) can need the padding the planned size did not. */
                if (ge_im2col(n) && (size_t)n->cout * gc > e->gemm_out_floats)
                    e->gemm_out_floats = (size_t)n->cout * gc;
                size_t tmp = ocl_sgemm_temp_bytes(e->q, (size_t)n->cout, gc,
                                                  (size_t)n->cin * n->k * n->k);
                if (tmp > e->gemm_tmp_bytes)
                    e->gemm_tmp_bytes = tmp;
            }
        }
        for (int l = 0; g->input.kind == DET_INPUT_RETINA && l < r->n_levels; l++) {
            int ci = r->cls_node[l];
            int cap = c[ci] * h[ci] * w[ci];
            if (cap > e->key_cap[l])
                e->key_cap[l] = cap;
        }
    }
    return CNP_OK;
}

/* Assigns activation slots: a node's output takes the best-fitting slot
 * whose tenant has been read for the last time before this node. Returns
 * the slot capacities (floats) in caps (n_nodes entries). */
static cnp_status plan_slots(det_graph_engine *e, size_t *caps, cnp_err *err)
{
    const det_graph *g = e->g;
    int nn = g->n_nodes;
    int *last = malloc(sizeof(int) * (size_t)nn), *tenant_last = malloc(sizeof(int) * (size_t)nn);
    if (!last || !tenant_last) {
        free(last);
        free(tenant_last);
        cnp_err_set(err, "graph engine: out of memory planning %d activations", nn);
        return CNP_ERR_NOMEM;
    }
    det_graph_last_use(g, g->input.kind == DET_INPUT_RETINA, last);
    e->n_slots = 0;
    for (int i = 0; i < nn; i++) {
        size_t need = e->nodes[i].need;
        int best = -1;
        for (int s = 0; s < e->n_slots; s++) {
            if (tenant_last[s] >= i)
                continue;
            if (best < 0)
                best = s;
            else {
                bool fits = caps[s] >= need, bfits = caps[best] >= need;
                if ((fits && (!bfits || caps[s] < caps[best])) ||
                    (!fits && !bfits && caps[s] > caps[best]))
                    best = s;
            }
        }
        if (best < 0) {
            best = e->n_slots++;
            caps[best] = 0;
        }
        if (caps[best] < need)
            caps[best] = need;
        tenant_last[best] = last[i];
        e->nodes[i].slot = best;
    }
    free(last);
    free(tenant_last);
    return CNP_OK;
}

static cnp_status make_kernels(det_graph_engine *e, cnp_err *err)
{
    struct {
        cl_kernel *k;
        const char *prog, *name;
    } want[] = {
        {&e->input, "graph", "graph_input"},     {&e->im2col, "graph", "graph_im2col"},
        {&e->epilogue, "graph", "graph_epilogue"}, {&e->maxpool, "graph", "graph_maxpool"},
        {&e->maxpool2, "graph", "graph_maxpool2"},
        {&e->upsample, "graph", "graph_upsample_add"}, {&e->relu, "graph", "graph_relu"},
        {&e->scores, "graph", "graph_scores"},   {&e->decode, "graph", "graph_decode"},
        {&e->gather, "graph", "graph_gather"},
    };
    cnp_status result = CNP_OK;
    for (size_t i = 0; result == CNP_OK && i < sizeof want / sizeof want[0]; i++)
        result = ocl_kernel_create(e->ctx, want[i].prog, "", want[i].name, want[i].k, err);
    size_t mwg = ocl_ctx_max_work_group(e->ctx);
    cl_ulong lmem = ocl_ctx_local_mem(e->ctx);
    for (int i = 0; result == CNP_OK && i < e->g->n_nodes; i++) {
        const det_node *n = &e->g->nodes[i];
        e->nodes[i].chosen = n->op == DET_OP_CONV ? DET_CONV_GEMM : DET_CONV_AUTO;
        if (n->op != DET_OP_CONV || n->stride != 1 || n->k > 15 || n->dilation > 8)
            continue;
        size_t span = (size_t)(n->k - 1) * n->dilation;
        size_t local = sizeof(float) * ((size_t)GCIB * (GTY + span) * (GTX + span) +
                                        (size_t)GCOB * GCIB * n->k * n->k);
        if (local > lmem || mwg < GTX * GTY)
            continue;
        char opts[64];
        snprintf(opts, sizeof opts, "-DCK=%d -DCDIL=%d", n->k, n->dilation);
        result = ocl_kernel_create(e->ctx, "graph", opts, "graph_conv", &e->nodes[i].direct,
                                   err);
    }
    return result;
}

static cnp_status make_buffers(det_graph_engine *e, const size_t *caps, cnp_err *err)
{
    const det_graph *g = e->g;
    const det_retina *r = &g->retina;
    cnp_status result = CNP_OK;
    e->slots = calloc((size_t)e->n_slots, sizeof *e->slots);
    if (!e->slots) {
        cnp_err_set(err, "graph engine: out of memory");
        return CNP_ERR_NOMEM;
    }
    for (int s = 0; result == CNP_OK && s < e->n_slots; s++)
        result = create_buffer(e, caps[s] * (size_t)e->max_batch * sizeof(float), NULL,
                               &e->slots[s], "activations", err);
    for (int i = 0; result == CNP_OK && i < g->n_nodes; i++) {
        const det_node *n = &g->nodes[i];
        if (n->op != DET_OP_CONV)
            continue;
        for (int j = 0; j < i; j++)
            if (g->nodes[j].op == DET_OP_CONV && g->nodes[j].weight == n->weight &&
                g->nodes[j].bias == n->bias) {
                e->nodes[i].weight = e->nodes[j].weight;
                e->nodes[i].bias = e->nodes[j].bias;
                break;
            }
        if (e->nodes[i].weight)
            continue;
        e->nodes[i].owns_weights = true;
        size_t wb = sizeof(float) * (size_t)n->cout * n->cin * n->k * n->k;
        result = create_buffer(e, wb, n->weight, &e->nodes[i].weight, "conv weights", err);
        if (result == CNP_OK)
            result = create_buffer(e, sizeof(float) * (size_t)n->cout, n->bias,
                                   &e->nodes[i].bias, "conv bias", err);
    }
    if (result == CNP_OK)
        result = create_buffer(e, e->col_floats * sizeof(float), NULL, &e->col, "im2col matrix",
                               err);
    /* Zeroed once: the padding columns of the im2col matrix (ge_gemm_cols)
     * enter the SGEMM, whose products there are never read; they stay
     * finite (other nodes' columns at worst). */
    float zero = 0.0f;
    if (result == CNP_OK)
        result = ocl_check(clEnqueueFillBuffer(e->q, e->col, &zero, sizeof zero, 0,
                                               e->col_floats * sizeof(float), 0, NULL, NULL),
                           "clEnqueueFillBuffer", err);
    if (result == CNP_OK && e->gemm_tmp_bytes)
        result = create_buffer(e, e->gemm_tmp_bytes, NULL, &e->gemm_tmp, "CLBlast scratch", err);
    if (result == CNP_OK && e->gemm_out_floats)
        result = create_buffer(e, e->gemm_out_floats * sizeof(float), NULL, &e->gemm_out,
                               "SGEMM output", err);
    if (result != CNP_OK || g->input.kind != DET_INPUT_RETINA)
        return result;
    size_t keys = 0, most = 0;
    for (int l = 0; l < r->n_levels; l++) {
        e->key_base[l] = (int)keys;
        keys += (size_t)e->key_cap[l];
        most = (size_t)e->key_cap[l] > most ? (size_t)e->key_cap[l] : most;
    }
    e->key_total = keys;
    if (keys * (size_t)e->max_batch > INT32_MAX) { /* the kernels index keys with int */
        cnp_err_set(err, "graph engine: %zu candidate keys per patch for a batch of %d exceed "
                         "the kernels' int indices",
                    keys, e->max_batch);
        return CNP_ERR_LIMIT;
    }
    result = det_topk_create(e->ctx, most, (size_t)r->topk_candidates, &e->topk, err);
    if (result == CNP_OK)
        e->device_bytes += det_topk_bytes(e->topk);
    /* Keys and counts of every patch of a batch: the decode of the whole
     * batch reads its counts on the device. */
    if (result == CNP_OK)
        result = create_buffer(e, keys * (size_t)e->max_batch * sizeof(cl_ulong), NULL, &e->keys,
                               "candidate keys", err);
    if (result == CNP_OK)
        result = create_buffer(e, sizeof(cl_int) * GE_COUNT_STRIDE * (size_t)e->max_batch,
                               NULL, &e->counts, "candidate counts", err);
    for (int l = 0; result == CNP_OK && l < r->n_levels; l++) {
        float base[4 * DET_GRAPH_MAX_ANCHORS * DET_GRAPH_MAX_ANCHORS];
        det_retina_base_anchors(r, l, base);
        result = create_buffer(e, sizeof(float) * 4 * (size_t)r->n_sizes * r->n_ratios, base,
                               &e->anchors[l], "anchors", err);
    }
    if (result == CNP_OK)
        result = det_nms_device_create(e->ctx, "", &e->nms, err);
    if (result == CNP_OK)
        result = det_nms_device_reserve(e->nms, (size_t)r->n_levels * r->topk_candidates, err);
    if (result == CNP_OK)
        e->device_bytes += det_nms_device_bytes(e->nms);
    if (result == CNP_OK)
        result = create_buffer(e, (1 + 6 * (size_t)r->detections_per_img) * sizeof(float), NULL,
                               &e->out, "detections", err);
    /* The batch's detections, copied from `out` per patch on the device and
     * read with one map at the end: host memory the device writes directly
     * (pinned on a GPU). */
    size_t ob = (1 + 6 * (size_t)r->detections_per_img) * sizeof(float) * (size_t)e->max_batch;
    cl_int rc = CL_SUCCESS;
    if (result == CNP_OK)
        e->outs = ocl_buffer_create(e->cl, CL_MEM_READ_WRITE | CL_MEM_ALLOC_HOST_PTR, ob, NULL,
                                    &rc);
    if (result == CNP_OK && (result = ocl_check(rc, "batch detections", err)) == CNP_OK)
        e->device_bytes += ob;
    return result;
}

cnp_status det_graph_engine_create(ocl_ctx *ctx, const det_graph *g, uint32_t max_w,
                                   uint32_t max_h, det_graph_engine **out, cnp_err *err)
{
    det_graph_engine_opts opts = {.conv = DET_CONV_AUTO};
    return det_graph_engine_create_opts(ctx, g, max_w, max_h, &opts, out, err);
}

cnp_status det_graph_engine_create_opts(ocl_ctx *ctx, const det_graph *g, uint32_t max_w,
                                        uint32_t max_h, const det_graph_engine_opts *opts,
                                        det_graph_engine **out, cnp_err *err)
{
    *out = NULL;
    const det_retina *r = &g->retina;
    bool retina = g->input.kind == DET_INPUT_RETINA;
    if (!retina && (g->input.kind != DET_INPUT_CROWN || g->input.channels < 1 ||
                    g->input.channels > 4 || g->n_nodes < 2 || max_w == 0 || max_h == 0)) {
        cnp_err_set(err, "graph engine: input kind %d with %d channels, %d nodes, window "
                    "%ux%u: nothing to run", (int)g->input.kind, g->input.channels, g->n_nodes,
                    max_w, max_h);
        return CNP_ERR_INVALID;
    }
    if (retina && (g->n_nodes < 1 || r->n_levels < 1 || r->n_levels > DET_GRAPH_MAX_LEVELS ||
                   r->num_classes < 1 || r->topk_candidates < 1 ||
                   r->detections_per_img < 1 || r->n_sizes < 1 || r->n_ratios < 1 ||
                   max_w == 0 || max_h == 0)) {
        cnp_err_set(err, "graph engine: %d nodes, %d levels, %d classes, top-k %d, %d "
                    "detections, %dx%d anchors, window %ux%u: nothing to run", g->n_nodes,
                    r->n_levels, r->num_classes, r->topk_candidates, r->detections_per_img,
                    r->n_sizes, r->n_ratios, max_w, max_h);
        return CNP_ERR_INVALID;
    }
    det_graph_engine *e = calloc(1, sizeof *e);
    size_t nn = (size_t)g->n_nodes;
    int *shp = e ? malloc(sizeof(int) * 3 * nn) : NULL;
    size_t *caps = e ? calloc(nn, sizeof *caps) : NULL;
    if (e)
        e->nodes = calloc(nn, sizeof *e->nodes);
    if (!e || !shp || !caps || !e->nodes) {
        if (e)
            free(e->nodes);
        free(e);
        free(shp);
        free(caps);
        cnp_err_set(err, "graph engine: out of memory");
        return CNP_ERR_NOMEM;
    }
    e->ctx = ctx;
    e->g = g;
    e->cl = ocl_ctx_context(ctx);
    e->q = ocl_ctx_queue(ctx);
    e->max_w = max_w;
    e->max_h = max_h;
    e->shape = shp;
    e->max_batch = e->batch = 1;
    e->px_width = opts->px_width;
    cnp_status result = plan_sizes(e, shp, shp + nn, shp + 2 * nn, &e->col_floats, err);
    for (int l = 0; retina && result == CNP_OK && l < r->n_levels; l++) {
        int A = r->n_sizes * r->n_ratios, ci = r->cls_node[l], bi = r->box_node[l];
        if (ci <= 0 || ci >= g->n_nodes || bi <= 0 || bi >= g->n_nodes ||
            shp[ci] != A * r->num_classes || shp[bi] != A * 4) {
            cnp_err_set(err, "graph engine: level %d heads (nodes %d, %d) need %d and %d "
                        "channels", l, ci, bi, A * r->num_classes, A * 4);
            result = CNP_ERR_FORMAT;
        }
    }
    if (result == CNP_OK)
        result = plan_slots(e, caps, err);
    if (result == CNP_OK) {
        /* The batch: as many patches as asked for whose activations and
         * im2col matrix fit the budget (at least one). */
        size_t per = e->col_floats + e->gemm_out_floats, largest = e->col_floats;
        for (int s = 0; s < e->n_slots; s++) {
            per += caps[s];
            largest = caps[s] > largest ? caps[s] : largest;
        }
        per *= sizeof(float);
        largest *= sizeof(float);
        cl_ulong global = 0, max_alloc = 0;
        clGetDeviceInfo(ocl_ctx_device(ctx), CL_DEVICE_GLOBAL_MEM_SIZE, sizeof global, &global,
                        NULL);
        clGetDeviceInfo(ocl_ctx_device(ctx), CL_DEVICE_MAX_MEM_ALLOC_SIZE, sizeof max_alloc,
                        &max_alloc, NULL);
        size_t budget = opts->batch_bytes;
        if (!budget) /* an eighth of the device's memory, at least 1 GiB */
            budget = global / 8 > ((cl_ulong)1 << 30) ? (size_t)(global / 8) : (size_t)1 << 30;
        size_t want = opts->max_batch > 1 ? opts->max_batch : 1;
        size_t fit = budget / (per ? per : 1);
        if (max_alloc && largest && max_alloc / largest < fit) /* one buffer's limit */
            fit = (size_t)(max_alloc / largest);
        e->max_batch = (int)(want < fit ? want : fit > 0 ? fit : 1);
        if (e->max_batch > 1) { /* again, for the batch's im2col and CLBlast scratch */
            e->gemm_tmp_bytes = 0;
            e->gemm_out_floats = 0;
            result = plan_sizes(e, shp, shp + nn, shp + 2 * nn, &e->col_floats, err);
        }
    }
    if (result == CNP_OK)
        result = make_kernels(e, err);
    if (result == CNP_OK)
        result = make_buffers(e, caps, err);
    if (result == CNP_OK)
        result = ge_wino_prepare(e, err);
    if (result == CNP_OK)
        result = ge_px_prepare(e, err);
    if (result == CNP_OK) {
        /* The measurement size: the largest input on a GPU; on a CPU device
         * (PoCL) at most 128 x 128, where the largest would cost seconds of
         * start-up and the ranking is the same. */
        cl_device_type type = 0;
        clGetDeviceInfo(ocl_ctx_device(ctx), CL_DEVICE_TYPE, sizeof type, &type, NULL);
        int cap = (type & CL_DEVICE_TYPE_CPU) ? 128 : 1 << 30;
        e->meas_h = e->plan_h < cap ? e->plan_h : cap;
        e->meas_w = e->plan_w < cap ? e->plan_w : cap;
        result = ge_choose_paths(e, opts->conv, err);
    }
    free(caps);
    if (result != CNP_OK) {
        det_graph_engine_free(e);
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

void det_graph_engine_free(det_graph_engine *e)
{
    if (!e)
        return;
    if (e->q)
        clFinish(e->q);
    cl_kernel ks[] = {e->input,    e->im2col,   e->epilogue, e->maxpool, e->maxpool2,
                      e->upsample, e->relu,     e->scores,   e->decode,  e->gather};
    for (size_t i = 0; i < sizeof ks / sizeof ks[0]; i++)
        release_kernel(ks[i]);
    for (int i = 0; e->nodes && i < e->g->n_nodes; i++)
        release_kernel(e->nodes[i].direct);
    ge_wino_free(e);
    ge_px_free(e);
    for (int i = 0; e->nodes && i < e->g->n_nodes; i++)
        if (e->nodes[i].owns_weights) {
            ocl_buffer_release(e->nodes[i].weight);
            ocl_buffer_release(e->nodes[i].bias);
        }
    for (int s = 0; e->slots && s < e->n_slots; s++)
        ocl_buffer_release(e->slots[s]);
    cl_mem ms[] = {e->col, e->gemm_tmp, e->gemm_out, e->keys, e->counts, e->out, e->outs};
    for (size_t i = 0; i < sizeof ms / sizeof ms[0]; i++)
        ocl_buffer_release(ms[i]);
    for (int l = 0; l < DET_GRAPH_MAX_LEVELS; l++)
        ocl_buffer_release(e->anchors[l]);
    det_nms_device_free(e->nms);
    det_topk_free(e->topk);
    free(e->slots);
    free(e->nodes);
    free(e->shape);
    free(e);
}

/* ---- running -------------------------------------------------------------- */

cl_mem ge_node_buf(const det_graph_engine *e, int i)
{
    return e->slots[e->nodes[i].slot];
}

enum det_conv_path ge_node_path(const det_graph_engine *e, int i)
{
    if (e->g->nodes[i].op != DET_OP_CONV)
        return DET_CONV_AUTO;
    enum det_conv_path p = e->force != DET_CONV_AUTO ? e->force : e->nodes[i].chosen;
    return ge_path_applies(&e->nodes[i], p) ? p : DET_CONV_GEMM;
}

/* Every node's shape for an in_h x in_w input into e->shape, checked
 * against the buffers. */
static cnp_status set_shapes(det_graph_engine *e, int in_h, int in_w, cnp_err *err)
{
    const det_graph *g = e->g;
    int nn = g->n_nodes, *c = e->shape;
    cnp_status result = det_graph_ref_shapes(g, in_h, in_w, c, c + nn, c + 2 * nn, err);
    for (int i = 0; result == CNP_OK && i < nn; i++)
        if ((size_t)c[i] * c[nn + i] * c[2 * nn + i] > e->nodes[i].need) {
            cnp_err_set(err, "graph engine: node %s outgrows its buffer at %dx%d",
                        g->nodes[i].name, in_w, in_h);
            result = CNP_ERR_INVALID;
        }
    return result;
}

int det_patch_batch(ocl_ctx *ctx, int asked)
{
    if (asked > 0)
        return asked;
    cl_device_type type = 0;
    clGetDeviceInfo(ocl_ctx_device(ctx), CL_DEVICE_TYPE, sizeof type, &type, NULL);
    return (type & CL_DEVICE_TYPE_CPU) ? 1 : DET_GRAPH_BATCH;
}

cl_mem det_graph_engine_input(const det_graph_engine *e)
{
    return ge_node_buf(e, 0);
}

cnp_status det_graph_engine_run_raw(det_graph_engine *e, int in_h, int in_w, cl_mem *out,
                                    int *oc, int *oh, int *ow, cnp_err *err)
{
    return det_graph_engine_run_raw_batch(e, 1, in_h, in_w, out, oc, oh, ow, err);
}

cnp_status det_graph_engine_run_raw_batch(det_graph_engine *e, int n, int in_h, int in_w,
                                          cl_mem *out, int *oc, int *oh, int *ow, cnp_err *err)
{
    int nn = e->g->n_nodes, last = nn - 1;
    *out = NULL;
    if (in_h < 1 || in_w < 1 || in_h > (int)e->max_h || in_w > (int)e->max_w || n < 1 ||
        n > e->max_batch) {
        cnp_err_set(err, "graph engine: input %dx%d x%d is empty or larger than %ux%u x%d", in_w,
                    in_h, n, e->max_w, e->max_h, e->max_batch);
        return CNP_ERR_INVALID;
    }
    cnp_status result = set_shapes(e, in_h, in_w, err);
    e->batch = n;
    ge_stamp(e, NULL);
    for (int i = 1; result == CNP_OK && i <= last; i++)
        result = ge_run_node(e, i, err);
    if (result != CNP_OK)
        return result;
    *out = ge_node_buf(e, last);
    *oc = e->shape[last];
    *oh = e->shape[nn + last];
    *ow = e->shape[2 * nn + last];
    return CNP_OK;
}

cnp_status det_graph_engine_time_node(det_graph_engine *e, int i, enum det_conv_path path,
                                      int repeats, int in_h, int in_w, double *seconds,
                                      cnp_err *err)
{
    double t[16];
    repeats = repeats < 1 ? 1 : repeats > 16 ? 16 : repeats;
    if (i < 1 || i >= e->g->n_nodes) {
        cnp_err_set(err, "graph engine: no node %d to time", i);
        return CNP_ERR_INVALID;
    }
    enum det_conv_path saved = e->force;
    e->force = path;
    cnp_status result = set_shapes(e, in_h, in_w, err);
    e->batch = 1;
    for (int r = -1; result == CNP_OK && r < repeats; r++) { /* r = -1: warm-up */
        double t0 = cnp_now();
        result = ge_run_node(e, i, err);
        if (result == CNP_OK)
            result = ocl_check(clFinish(e->q), "clFinish", err);
        if (r >= 0)
            t[r] = cnp_now() - t0;
    }
    e->force = saved;
    if (result != CNP_OK)
        return result;
    for (int a = 1; a < repeats; a++)
        for (int b = a; b > 0 && t[b] < t[b - 1]; b--) {
            double x = t[b];
            t[b] = t[b - 1];
            t[b - 1] = x;
        }
    *seconds = t[repeats / 2];
    return CNP_OK;
}

/* Transform and nodes 0..last on the np windows (equal sizes) as one
 * batch; *rh.. the transformed sizes. */
cnp_status ge_run_graph(det_graph_engine *e, cl_mem rgba, uint32_t img_w,
                            const det_tile *p, size_t np, int last, int *rh, int *rw, int *ph,
                            int *pw, cnp_err *err)
{
    const det_graph *g = e->g;
    const det_retina *r = &g->retina;
    if (g->input.kind != DET_INPUT_RETINA) {
        cnp_err_set(err, "graph engine: a crown graph runs through det_graph_engine_run_raw");
        return CNP_ERR_INVALID;
    }
    if (np < 1 || np > (size_t)e->max_batch) {
        cnp_err_set(err, "graph engine: a batch of %zu windows (1..%d)", np, e->max_batch);
        return CNP_ERR_INVALID;
    }
    size_t size = 0;
    cnp_status result = ocl_check(clGetMemObjectInfo(rgba, CL_MEM_SIZE, sizeof size, &size, NULL),
                                  "clGetMemObjectInfo", err);
    if (result != CNP_OK)
        return result;
    uint32_t w = p[0].w, h = p[0].h;
    for (size_t k = 0; k < np; k++) {
        uint32_t x0 = p[k].x0, y0 = p[k].y0;
        if (p[k].w != w || p[k].h != h || w == 0 || h == 0 || w > e->max_w || h > e->max_h ||
            x0 + w > img_w || ((size_t)y0 + h) * img_w * 4 > size) {
            cnp_err_set(err, "graph engine: window %ux%u at (%u, %u) is empty, larger than "
                        "%ux%u, not the batch's %ux%u or outside the %zu-byte image %u wide",
                        p[k].w, p[k].h, x0, y0, e->max_w, e->max_h, w, h, size, img_w);
            return CNP_ERR_INVALID;
        }
    }
    det_retina_input_size(r, (int)h, (int)w, rh, rw, ph, pw);
    result = set_shapes(e, *ph, *pw, err);
    if (result != CNP_OK)
        return result;
    e->batch = (int)np;
    cl_float4 mean = {{r->mean[0], r->mean[1], r->mean[2], 0}},
              std = {{r->std[0], r->std[1], r->std[2], 1}};
    cl_int iw = (cl_int)img_w, cw = (cl_int)w, ch = (cl_int)h, crh = *rh, crw = *rw,
           cph = *ph, cpw = *pw, N = (cl_int)np;
    /* The resize's scales, divided here as retina.c's bilinear_axis does. */
    cl_float2 scale = {{(float)cw / (float)crw, (float)ch / (float)crh}};
    cl_mem in = ge_node_buf(e, 0);
    size_t global[2] = {ocl_round_up((size_t)*pw, 16), ocl_round_up((size_t)*ph, 8)};
    size_t local[2] = {16, 8};
    ge_stamp(e, NULL);
    for (cl_int k = 0; result == CNP_OK && k < N; k++) {
        cl_int ix = (cl_int)p[k].x0, iy = (cl_int)p[k].y0;
        result = OCL_SET_ARGS(e->input, "graph_input", err, OCL_ARG(rgba), OCL_ARG(iw), OCL_ARG(ix),
                          OCL_ARG(iy), OCL_ARG(cw), OCL_ARG(ch), OCL_ARG(crh), OCL_ARG(crw), OCL_ARG(cph),
                          OCL_ARG(cpw), OCL_ARG(mean), OCL_ARG(std), OCL_ARG(in), OCL_ARG(k), OCL_ARG(N),
                          OCL_ARG(scale));
        if (result == CNP_OK)
            result = ge_enqueue(e, e->input, 2, global, local, "graph_input", err);
    }
    ge_stamp(e, e->times ? &e->times->other[0] : NULL);
    for (int i = 1; result == CNP_OK && i <= last; i++)
        result = ge_run_node(e, i, err);
    return result;
}

cnp_status det_graph_engine_forward(det_graph_engine *e, cl_mem rgba, uint32_t img_w,
                                    uint32_t x0, uint32_t y0, uint32_t w, uint32_t h, int node,
                                    float **out, int *ph, int *pw, cnp_err *err)
{
    *out = NULL;
    int rh, rw, nn = e->g->n_nodes;
    if (node < 0 || node >= nn) {
        cnp_err_set(err, "graph engine: no node %d", node);
        return CNP_ERR_INVALID;
    }
    det_tile win = {.x0 = x0, .y0 = y0, .w = w, .h = h};
    cnp_status result = ge_run_graph(e, rgba, img_w, &win, 1, node, &rh, &rw, ph, pw, err);
    if (result != CNP_OK)
        return result;
    size_t bytes = sizeof(float) * (size_t)e->shape[node] * e->shape[nn + node] *
                   e->shape[2 * nn + node];
    *out = malloc(bytes);
    if (!*out) {
        cnp_err_set(err, "graph engine: out of memory");
        return CNP_ERR_NOMEM;
    }
    result = ocl_check(clEnqueueReadBuffer(e->q, ge_node_buf(e, node), CL_TRUE, 0, bytes, *out, 0,
                                           NULL, NULL),
                       "reading a node's output", err);
    if (result != CNP_OK) {
        free(*out);
        *out = NULL;
    }
    return result;
}
