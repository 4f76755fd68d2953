/* OpenCL inference of graph models (det_graph): the input transform, every
 * node (convolutions as im2col + CLBlast SGEMM + one epilogue kernel, or
 * the direct kernel graph_conv with the epilogue fused, whichever measured
 * faster for the node's shape and device, remembered on disk), and
 * RetinaNet's decode (sigmoid, threshold, per-level top-k by bitonic sort,
 * anchors, box decoding, clipping) and class-wise NMS (detect.cl's
 * detect_nms_* kernels), all on the device queue. Per predict the host reads
 * back the per-level candidate counts (to size the sorts and the NMS) and
 * the final detections.
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
#include "detect/graph.h"

typedef struct gnode {
    int slot;          /* activation buffer holding the output */
    size_t need;       /* floats at the largest size */
    cl_mem weight;     /* conv: shared by nodes with the same weight pointer */
    cl_mem bias;
    bool owns_weights;
    cl_kernel direct;  /* conv: graph_conv for its k and dilation, NULL when it does not apply */
    enum det_conv_path chosen;
    double direct_s, gemm_s; /* measured at creation (0: not measured) */
} gnode;

struct det_graph_engine {
    ocl_ctx *ctx;
    const det_graph *g;
    cl_context cl;
    cl_command_queue q;
    uint32_t max_w, max_h;
    gnode *nodes;
    int n_slots;
    cl_mem *slots;
    int *shape; /* c, h, w of every node for the current input (3 * n_nodes) */
    cl_mem col, gemm_tmp;
    size_t col_floats, gemm_tmp_bytes;
    cl_kernel input, im2col, epilogue, maxpool, upsample, relu;
    cl_kernel scores, pad, bitonic, decode, gather;
    cl_kernel nms_order, nms_mask, nms_select;
    size_t select_local;
    /* Decode: candidate keys per level (level l at key_base[l], a power of
     * two of room), counts, base anchors. */
    cl_mem keys, counts, anchors[DET_GRAPH_MAX_LEVELS];
    int key_base[DET_GRAPH_MAX_LEVELS], key_cap[DET_GRAPH_MAX_LEVELS];
    /* NMS of up to n_levels * topk boxes. */
    size_t nms_cap;
    cl_mem box, score, label, index, sbox, slabel, bits, removed, keep, count, out;
    /* Bench hooks: bytes of the buffers created, stage timing when on. */
    size_t device_bytes;
    det_graph_times *times;
    double tick;
    /* Convolution paths: forced (AUTO: each node's chosen), the input size
     * they were measured at, conv nodes timed at creation. */
    enum det_conv_path force;
    int meas_h, meas_w;
    int plan_h, plan_w; /* the first size the buffers were planned for */
    /* Batches: activations hold up to max_batch patches (planes c * N + n),
     * `batch` the N of the current run. */
    int max_batch, batch;
    size_t timed_nodes;
};

/* Work-group geometry of graph_conv (kernels/graph.cl). */
#define GTX 16
#define GTY 8
#define GCOB 8
#define GCIB 4

#define NMS_BLOCK 64

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
static void stamp(det_graph_engine *e, double *acc)
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

static cnp_status enqueue(det_graph_engine *e, cl_kernel k, cl_uint dims, const size_t *global,
                          const size_t *local, const char *what, cnp_err *err)
{
    return ocl_enqueue(e->q, k, dims, global, local, what, err);
}

static size_t pow2_ceil(size_t n)
{
    size_t p = 1;
    while (p < n)
        p <<= 1;
    return p;
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
                size_t cf = (size_t)n->cin * n->k * n->k * cols;
                if (cf > *col)
                    *col = cf;
                size_t tmp = 0;
                if (CLBlastSGemmTempBufferSize(CLBlastLayoutRowMajor, CLBlastTransposeNo,
                                               CLBlastTransposeNo, (size_t)n->cout, cols,
                                               (size_t)n->cin * n->k * n->k, 0,
                                               (size_t)n->cin * n->k * n->k, 0, cols, 0, cols,
                                               &e->q, &tmp) == CLBlastSuccess &&
                    tmp > e->gemm_tmp_bytes)
                    e->gemm_tmp_bytes = tmp;
            }
        }
        for (int l = 0; g->input.kind == DET_INPUT_RETINA && l < r->n_levels; l++) {
            int ci = r->cls_node[l];
            int cap = (int)pow2_ceil((size_t)c[ci] * h[ci] * w[ci]);
            if (cap > e->key_cap[l])
                e->key_cap[l] = cap;
        }
    }
    return CNP_OK;
}

/* Assigns activation slots: a node's output takes the best-fitting slot
 * whose tenant has been read for the last time before this node. Returns
 * the slot capacities (floats) in caps (n_nodes entries). */
static void plan_slots(det_graph_engine *e, size_t *caps)
{
    const det_graph *g = e->g;
    int nn = g->n_nodes;
    int *last = malloc(sizeof(int) * (size_t)nn), *tenant_last = malloc(sizeof(int) * (size_t)nn);
    for (int i = 0; i < nn; i++)
        last[i] = i;
    for (int i = 1; i < nn; i++) {
        last[g->nodes[i].in] = i;
        if (g->nodes[i].in2 >= 0)
            last[g->nodes[i].in2] = i;
    }
    for (int l = 0; g->input.kind == DET_INPUT_RETINA && l < g->retina.n_levels; l++)
        last[g->retina.cls_node[l]] = last[g->retina.box_node[l]] = nn;
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
}

static cnp_status make_kernels(det_graph_engine *e, cnp_err *err)
{
    struct {
        cl_kernel *k;
        const char *prog, *name;
    } want[] = {
        {&e->input, "graph", "graph_input"},     {&e->im2col, "graph", "graph_im2col"},
        {&e->epilogue, "graph", "graph_epilogue"}, {&e->maxpool, "graph", "graph_maxpool"},
        {&e->upsample, "graph", "graph_upsample_add"}, {&e->relu, "graph", "graph_relu"},
        {&e->scores, "graph", "graph_scores"},   {&e->pad, "graph", "graph_pad"},
        {&e->bitonic, "graph", "graph_bitonic"}, {&e->decode, "graph", "graph_decode"},
        {&e->gather, "graph", "graph_gather"},   {&e->nms_order, "detect", "detect_nms_order"},
        {&e->nms_mask, "detect", "detect_nms_mask"},
        {&e->nms_select, "detect", "detect_nms_select"},
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
    e->select_local = mwg >= 256 ? 256 : mwg;
    if (result == CNP_OK && mwg < NMS_BLOCK) {
        cnp_err_set(err, "graph engine: the device's work-groups (%zu) are smaller than 64", mwg);
        result = CNP_ERR_OPENCL;
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
    if (result == CNP_OK && e->gemm_tmp_bytes)
        result = create_buffer(e, e->gemm_tmp_bytes, NULL, &e->gemm_tmp, "CLBlast scratch", err);
    if (result != CNP_OK || g->input.kind != DET_INPUT_RETINA)
        return result;
    size_t keys = 0;
    for (int l = 0; l < r->n_levels; l++) {
        e->key_base[l] = (int)keys;
        keys += (size_t)e->key_cap[l];
    }
    if (result == CNP_OK)
        result = create_buffer(e, keys * sizeof(cl_ulong), NULL, &e->keys, "candidate keys", err);
    if (result == CNP_OK)
        result = create_buffer(e, sizeof(cl_int) * DET_GRAPH_MAX_LEVELS, NULL, &e->counts,
                               "candidate counts", err);
    for (int l = 0; result == CNP_OK && l < r->n_levels; l++) {
        float base[4 * DET_GRAPH_MAX_ANCHORS * DET_GRAPH_MAX_ANCHORS];
        det_retina_base_anchors(r, l, base);
        result = create_buffer(e, sizeof(float) * 4 * (size_t)r->n_sizes * r->n_ratios, base,
                               &e->anchors[l], "anchors", err);
    }
    size_t cap = (size_t)r->n_levels * (size_t)r->topk_candidates;
    e->nms_cap = cap;
    size_t words = (cap + 63) / 64;
    struct {
        cl_mem *buf;
        size_t bytes;
        const char *what;
    } want[] = {
        {&e->box, cap * sizeof(cl_float4), "NMS boxes"},
        {&e->score, cap * sizeof(cl_float), "NMS scores"},
        {&e->label, cap * sizeof(cl_int), "NMS labels"},
        {&e->index, cap * sizeof(cl_int), "NMS order"},
        {&e->sbox, cap * sizeof(cl_float4), "NMS sorted boxes"},
        {&e->slabel, cap * sizeof(cl_int), "NMS sorted labels"},
        {&e->bits, words * 64 * words * sizeof(cl_ulong), "NMS overlap mask"},
        {&e->removed, words * sizeof(cl_ulong), "NMS suppressed rows"},
        {&e->keep, cap * sizeof(cl_int), "NMS kept indices"},
        {&e->count, sizeof(cl_int), "NMS count"},
        {&e->out, (1 + 6 * (size_t)r->detections_per_img) * sizeof(float), "detections"},
    };
    for (size_t i = 0; result == CNP_OK && i < sizeof want / sizeof want[0]; i++)
        result = create_buffer(e, want[i].bytes, NULL, want[i].buf, want[i].what, err);
    return result;
}

/* ---- convolution paths ---------------------------------------------------- */

static cnp_status run_conv(det_graph_engine *e, int i, cnp_err *err);
static enum det_conv_path node_path(const det_graph_engine *e, int i);

/* The file that remembers the choice: the device (ocl_cache_file's key),
 * the measurement size and every conv node's shape there (what decides the
 * timing, not the weights). */
static void paths_file(const det_graph_engine *e, char *out, size_t len)
{
    const det_graph *g = e->g;
    int nn = g->n_nodes;
    int *c = malloc(sizeof(int) * 3 * (size_t)nn);
    int *key = malloc(sizeof(int) * (3 + 10 * (size_t)nn));
    size_t n = 0;
    cnp_err err;
    if (c && key && det_graph_ref_shapes(g, e->meas_h, e->meas_w, c, c + nn, c + 2 * nn,
                                         &err) == CNP_OK) {
        key[n++] = 1; /* format of the file */
        key[n++] = e->meas_h;
        key[n++] = e->meas_w;
        for (int i = 0; i < nn; i++) {
            const det_node *d = &g->nodes[i];
            if (d->op != DET_OP_CONV)
                continue;
            int in[] = {i, d->cin, d->cout, d->k, d->stride, d->pad, d->dilation,
                        c[nn + d->in], c[2 * nn + d->in], e->nodes[i].direct != NULL};
            memcpy(key + n, in, sizeof in);
            n += sizeof in / sizeof in[0];
        }
    }
    ocl_cache_file(e->ctx, "graph-conv-paths", key ? key : (int[]){0},
                   (key ? n : 1) * sizeof(int), out, len);
    free(c);
    free(key);
}

/* Reads the remembered choice: true when the file names a path for every
 * conv node and nothing else (lines "<node> direct|gemm <direct ms> <gemm
 * ms>", in node order). */
static bool paths_load(det_graph_engine *e, const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    const det_graph *g = e->g;
    int want = 0;
    bool ok = true;
    char line[160], name[16];
    while (ok && fgets(line, sizeof line, f)) {
        unsigned idx;
        double dm, gm;
        while (want < g->n_nodes && g->nodes[want].op != DET_OP_CONV)
            want++;
        ok = sscanf(line, "%u %15s %lf %lf", &idx, name, &dm, &gm) == 4 &&
             idx == (unsigned)want && want < g->n_nodes && dm >= 0 && gm >= 0;
        if (!ok)
            break;
        gnode *gn = &e->nodes[want];
        if (strcmp(name, "direct") == 0 && gn->direct)
            gn->chosen = DET_CONV_DIRECT;
        else if (strcmp(name, "gemm") == 0)
            gn->chosen = DET_CONV_GEMM;
        else
            ok = false;
        gn->direct_s = dm / 1e3;
        gn->gemm_s = gm / 1e3;
        want++;
    }
    fclose(f);
    while (want < g->n_nodes && g->nodes[want].op != DET_OP_CONV)
        want++;
    return ok && want == g->n_nodes;
}

/* Writes the choice (temporary file, then rename: concurrent workers never
 * read half a file). A failure only costs the next start a measurement. */
static void paths_store(const det_graph_engine *e, const char *path)
{
    char tmp[CNP_STR_LONG + 400];
    snprintf(tmp, sizeof tmp, "%s.%ld.tmp", path, (long)getpid());
    FILE *f = fopen(tmp, "w");
    if (!f)
        return;
    bool ok = true;
    for (int i = 0; i < e->g->n_nodes; i++) {
        const gnode *gn = &e->nodes[i];
        if (e->g->nodes[i].op == DET_OP_CONV)
            ok = fprintf(f, "%d %s %.6f %.6f\n", i,
                         gn->chosen == DET_CONV_DIRECT ? "direct" : "gemm", gn->direct_s * 1e3,
                         gn->gemm_s * 1e3) > 0 && ok;
    }
    if (fclose(f) != 0 || !ok || rename(tmp, path) != 0)
        remove(tmp);
}

/* Wall time of conv node i alone with `path` on the current shapes (the
 * measurement size): one warm-up run (the first use of a path compiles
 * kernels, CLBlast's at run time), then one timed run. */
static cnp_status time_node(det_graph_engine *e, int i, enum det_conv_path path,
                            double *seconds, cnp_err *err)
{
    enum det_conv_path saved = e->force;
    e->force = path;
    cnp_status result = run_conv(e, i, err);
    if (result == CNP_OK)
        result = ocl_check(clFinish(e->q), "clFinish", err);
    double t0 = cnp_now();
    if (result == CNP_OK)
        result = run_conv(e, i, err);
    if (result == CNP_OK)
        result = ocl_check(clFinish(e->q), "clFinish", err);
    *seconds = cnp_now() - t0;
    e->force = saved;
    return result;
}

/* Picks the path of every conv node: the configured one, or (auto) the
 * remembered choice, or the faster at the measurement size, then stored. */
static cnp_status choose_paths(det_graph_engine *e, enum det_conv_path configured,
                               cnp_err *err)
{
    if (configured == DET_CONV_DIRECT || configured == DET_CONV_GEMM) {
        for (int i = 0; i < e->g->n_nodes; i++)
            if (e->g->nodes[i].op == DET_OP_CONV)
                e->nodes[i].chosen = configured;
        return CNP_OK;
    }
    char file[CNP_STR_LONG + 300];
    paths_file(e, file, sizeof file);
    if (paths_load(e, file)) {
        LOG_DEBUG("detect", "graph convolution paths from %s", file);
        return CNP_OK;
    }
    const det_graph *g = e->g;
    int nn = g->n_nodes;
    cnp_status result = det_graph_ref_shapes(g, e->meas_h, e->meas_w, e->shape, e->shape + nn,
                                             e->shape + 2 * nn, err);
    e->batch = 1;
    /* Defined contents for the timing runs. */
    float zero = 0.0f;
    for (int s = 0; result == CNP_OK && s < e->n_slots; s++) {
        size_t bytes = 0;
        result = ocl_check(clGetMemObjectInfo(e->slots[s], CL_MEM_SIZE, sizeof bytes, &bytes,
                                              NULL),
                           "clGetMemObjectInfo", err);
        if (result == CNP_OK)
            result = ocl_check(clEnqueueFillBuffer(e->q, e->slots[s], &zero, sizeof zero, 0,
                                                   bytes / sizeof zero * sizeof zero, 0, NULL,
                                                   NULL),
                               "clEnqueueFillBuffer", err);
    }
    for (int i = 0; result == CNP_OK && i < nn; i++) {
        gnode *gn = &e->nodes[i];
        if (g->nodes[i].op != DET_OP_CONV) {
            continue;
        }
        gn->chosen = DET_CONV_GEMM;
        gn->direct_s = gn->gemm_s = 0;
        if (!gn->direct)
            continue;
        result = time_node(e, i, DET_CONV_GEMM, &gn->gemm_s, err);
        if (result == CNP_OK)
            result = time_node(e, i, DET_CONV_DIRECT, &gn->direct_s, err);
        if (result != CNP_OK)
            break;
        gn->chosen = gn->direct_s <= gn->gemm_s ? DET_CONV_DIRECT : DET_CONV_GEMM;
        e->timed_nodes++;
        LOG_DEBUG("detect", "graph node %s %dx%d: direct %.3f ms, gemm %.3f ms -> %s",
                  g->nodes[i].name, e->shape[nn + i], e->shape[2 * nn + i], gn->direct_s * 1e3,
                  gn->gemm_s * 1e3, gn->chosen == DET_CONV_DIRECT ? "direct" : "gemm");
    }
    if (result == CNP_OK)
        paths_store(e, file);
    return result;
}

void det_graph_engine_set_conv_path(det_graph_engine *e, enum det_conv_path path)
{
    e->force = path;
}

enum det_conv_path det_graph_engine_node_path(const det_graph_engine *e, int i,
                                              double *direct_s, double *gemm_s)
{
    if (direct_s)
        *direct_s = e->nodes[i].direct_s;
    if (gemm_s)
        *gemm_s = e->nodes[i].gemm_s;
    return node_path(e, i);
}

size_t det_graph_engine_timed_nodes(const det_graph_engine *e)
{
    return e->timed_nodes;
}

void det_graph_engine_conv_paths_file(const det_graph_engine *e, char *out, size_t len)
{
    paths_file(e, out, len);
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
    if (result == CNP_OK) {
        plan_slots(e, caps);
        /* The batch: as many patches as asked for whose activations and
         * im2col matrix fit the budget (at least one). */
        size_t per = e->col_floats, largest = e->col_floats;
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
            result = plan_sizes(e, shp, shp + nn, shp + 2 * nn, &e->col_floats, err);
        }
    }
    if (result == CNP_OK)
        result = make_kernels(e, err);
    if (result == CNP_OK)
        result = make_buffers(e, caps, err);
    if (result == CNP_OK) {
        /* The measurement size: the largest input on a GPU; on a CPU device
         * (PoCL) at most 128 x 128, where the largest would cost seconds of
         * start-up and the ranking is the same. */
        cl_device_type type = 0;
        clGetDeviceInfo(ocl_ctx_device(ctx), CL_DEVICE_TYPE, sizeof type, &type, NULL);
        int cap = (type & CL_DEVICE_TYPE_CPU) ? 128 : 1 << 30;
        e->meas_h = e->plan_h < cap ? e->plan_h : cap;
        e->meas_w = e->plan_w < cap ? e->plan_w : cap;
        result = choose_paths(e, opts->conv, err);
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

static void release_mem(cl_mem b)
{
    if (b)
        ocl_buffer_release(b);
}

void det_graph_engine_free(det_graph_engine *e)
{
    if (!e)
        return;
    if (e->q)
        clFinish(e->q);
    cl_kernel ks[] = {e->input,  e->im2col, e->epilogue, e->maxpool,   e->upsample,
                      e->relu,   e->scores, e->pad,      e->bitonic,   e->decode,
                      e->gather, e->nms_order, e->nms_mask, e->nms_select};
    for (size_t i = 0; i < sizeof ks / sizeof ks[0]; i++)
        release_kernel(ks[i]);
    for (int i = 0; e->nodes && i < e->g->n_nodes; i++)
        release_kernel(e->nodes[i].direct);
    for (int i = 0; e->nodes && i < e->g->n_nodes; i++)
        if (e->nodes[i].owns_weights) {
            release_mem(e->nodes[i].weight);
            release_mem(e->nodes[i].bias);
        }
    for (int s = 0; e->slots && s < e->n_slots; s++)
        release_mem(e->slots[s]);
    cl_mem ms[] = {e->col,    e->gemm_tmp, e->keys,    e->counts, e->box,
                   e->score,  e->label,    e->index,   e->sbox,   e->slabel,
                   e->bits,   e->removed,  e->keep,    e->count,  e->out};
    for (size_t i = 0; i < sizeof ms / sizeof ms[0]; i++)
        release_mem(ms[i]);
    for (int l = 0; l < DET_GRAPH_MAX_LEVELS; l++)
        release_mem(e->anchors[l]);
    free(e->slots);
    free(e->nodes);
    free(e->shape);
    free(e);
}

/* ---- running -------------------------------------------------------------- */

static cl_mem node_buf(const det_graph_engine *e, int i)
{
    return e->slots[e->nodes[i].slot];
}

static enum det_conv_path node_path(const det_graph_engine *e, int i)
{
    if (e->g->nodes[i].op != DET_OP_CONV)
        return DET_CONV_AUTO;
    enum det_conv_path p = e->force != DET_CONV_AUTO ? e->force : e->nodes[i].chosen;
    return p == DET_CONV_DIRECT && e->nodes[i].direct ? DET_CONV_DIRECT : DET_CONV_GEMM;
}

/* graph_conv: the whole node in one kernel. */
static cnp_status run_conv_direct(det_graph_engine *e, int i, cnp_err *err)
{
    const det_node *n = &e->g->nodes[i];
    int nn = e->g->n_nodes, *c = e->shape, *h = c + nn, *w = c + 2 * nn;
    cl_mem in = node_buf(e, n->in), out = node_buf(e, i);
    cl_mem add = n->in2 >= 0 ? node_buf(e, n->in2) : out;
    cl_int has_add = n->in2 >= 0, relu = n->act == DET_ACT_RELU, C = n->cin, H = h[n->in],
           W = w[n->in], O = n->cout, OH = h[i], OW = w[i], P = n->pad, N = e->batch;
    cnp_status result = OCL_SET_ARGS(e->nodes[i].direct, "graph_conv", err, OCL_ARG(in),
                                 OCL_ARG(e->nodes[i].weight), OCL_ARG(e->nodes[i].bias), OCL_ARG(add),
                                 OCL_ARG(has_add), OCL_ARG(relu), OCL_ARG(out), OCL_ARG(C), OCL_ARG(H), OCL_ARG(W),
                                 OCL_ARG(O), OCL_ARG(OH), OCL_ARG(OW), OCL_ARG(P), OCL_ARG(N));
    size_t global[3] = {ocl_round_up((size_t)OW, GTX), ocl_round_up((size_t)OH, GTY),
                        (size_t)(O + GCOB - 1) / GCOB * (size_t)N};
    size_t local[3] = {GTX, GTY, 1};
    if (result == CNP_OK)
        result = enqueue(e, e->nodes[i].direct, 3, global, local, "graph_conv", err);
    stamp(e, e->times ? &e->times->epilogue[i] : NULL);
    return result;
}

static cnp_status run_conv(det_graph_engine *e, int i, cnp_err *err)
{
    if (node_path(e, i) == DET_CONV_DIRECT)
        return run_conv_direct(e, i, err);
    const det_node *n = &e->g->nodes[i];
    int nn = e->g->n_nodes, *c = e->shape, *h = c + nn, *w = c + 2 * nn;
    int ih = h[n->in], iw = w[n->in], oh = h[i], ow = w[i];
    /* One SGEMM for the whole batch: [cout x kdim] x [kdim x N * oh * ow]. */
    size_t np = (size_t)oh * ow * (size_t)e->batch, kdim = (size_t)n->cin * n->k * n->k;
    cl_mem b = node_buf(e, n->in), out = node_buf(e, i);
    cnp_status result = CNP_OK;
    if (n->k != 1 || n->stride != 1 || n->pad != 0) {
        cl_int H = ih, W = iw, OH = oh, OW = ow, K = n->k, S = n->stride, P = n->pad,
               D = n->dilation, N = e->batch;
        result = OCL_SET_ARGS(e->im2col, "graph_im2col", err, OCL_ARG(b), OCL_ARG(e->col), OCL_ARG(H),
                          OCL_ARG(W), OCL_ARG(OH), OCL_ARG(OW), OCL_ARG(K), OCL_ARG(S), OCL_ARG(P), OCL_ARG(D),
                          OCL_ARG(N));
        size_t global[2] = {ocl_round_up(np, 64), kdim};
        if (result == CNP_OK)
            result = enqueue(e, e->im2col, 2, global, NULL, "graph_im2col", err);
        b = e->col;
        stamp(e, e->times ? &e->times->im2col[i] : NULL);
    }
    if (result != CNP_OK)
        return result;
    size_t need = 0;
    CLBlastStatusCode st = CLBlastSGemmTempBufferSize(
        CLBlastLayoutRowMajor, CLBlastTransposeNo, CLBlastTransposeNo, (size_t)n->cout, np, kdim,
        0, kdim, 0, np, 0, np, &e->q, &need);
    if (st == CLBlastSuccess && need <= e->gemm_tmp_bytes && e->gemm_tmp)
        st = CLBlastSgemmWithTempBuffer(CLBlastLayoutRowMajor, CLBlastTransposeNo,
                                        CLBlastTransposeNo, (size_t)n->cout, np, kdim, 1.0f,
                                        e->nodes[i].weight, 0, kdim, b, 0, np, 0.0f, out, 0, np,
                                        &e->q, NULL, e->gemm_tmp);
    else if (st == CLBlastSuccess)
        st = CLBlastSgemm(CLBlastLayoutRowMajor, CLBlastTransposeNo, CLBlastTransposeNo,
                          (size_t)n->cout, np, kdim, 1.0f, e->nodes[i].weight, 0, kdim, b, 0,
                          np, 0.0f, out, 0, np, &e->q, NULL);
    if (st != CLBlastSuccess) {
        cnp_err_set(err, "graph node %s: CLBlastSgemm(%d x %zu x %zu) failed: status %d",
                    n->name, n->cout, np, kdim, (int)st);
        return CNP_ERR_OPENCL;
    }
    stamp(e, e->times ? &e->times->gemm[i] : NULL);
    cl_mem add = n->in2 >= 0 ? node_buf(e, n->in2) : out;
    cl_int has_add = n->in2 >= 0, cn = (cl_int)np, relu = n->act == DET_ACT_RELU;
    result = OCL_SET_ARGS(e->epilogue, "graph_epilogue", err, OCL_ARG(out), OCL_ARG(e->nodes[i].bias),
                      OCL_ARG(add), OCL_ARG(has_add), OCL_ARG(cn), OCL_ARG(relu));
    size_t global[2] = {ocl_round_up(np, 64), (size_t)n->cout};
    if (result == CNP_OK)
        result = enqueue(e, e->epilogue, 2, global, NULL, "graph_epilogue", err);
    stamp(e, e->times ? &e->times->epilogue[i] : NULL);
    return result;
}

static cnp_status run_node_kernel(det_graph_engine *e, int i, cnp_err *err)
{
    const det_node *n = &e->g->nodes[i];
    int nn = e->g->n_nodes, *c = e->shape, *h = c + nn, *w = c + 2 * nn;
    cl_mem in = node_buf(e, n->in), out = node_buf(e, i);
    /* A batch's planes c * N + n are N times as many planes of one patch. */
    size_t total = (size_t)c[i] * h[i] * w[i] * (size_t)e->batch,
           global = ocl_round_up(total, 64);
    cl_int C = c[i] * e->batch, H = h[i], W = w[i];
    cnp_status result;
    switch (n->op) {
    case DET_OP_CONV:
        return run_conv(e, i, err);
    case DET_OP_MAXPOOL: {
        cl_int IH = h[n->in], IW = w[n->in], K = n->k, S = n->stride, P = n->pad;
        result = OCL_SET_ARGS(e->maxpool, "graph_maxpool", err, OCL_ARG(in), OCL_ARG(out), OCL_ARG(C),
                          OCL_ARG(IH), OCL_ARG(IW), OCL_ARG(H), OCL_ARG(W), OCL_ARG(K), OCL_ARG(S), OCL_ARG(P));
        if (result == CNP_OK)
            result = enqueue(e, e->maxpool, 1, &global, NULL, "graph_maxpool", err);
        return result;
    }
    case DET_OP_UPSAMPLE_ADD: {
        cl_mem top = node_buf(e, n->in2);
        cl_int TH = h[n->in2], TW = w[n->in2];
        result = OCL_SET_ARGS(e->upsample, "graph_upsample_add", err, OCL_ARG(in), OCL_ARG(top),
                          OCL_ARG(out), OCL_ARG(C), OCL_ARG(H), OCL_ARG(W), OCL_ARG(TH), OCL_ARG(TW));
        if (result == CNP_OK)
            result = enqueue(e, e->upsample, 1, &global, NULL, "graph_upsample_add", err);
        return result;
    }
    case DET_OP_RELU: {
        cl_int N = (cl_int)total;
        result = OCL_SET_ARGS(e->relu, "graph_relu", err, OCL_ARG(in), OCL_ARG(out), OCL_ARG(N));
        if (result == CNP_OK)
            result = enqueue(e, e->relu, 1, &global, NULL, "graph_relu", err);
        return result;
    }
    default:
        cnp_err_set(err, "graph node %s: op %d has no kernel", n->name, (int)n->op);
        return CNP_ERR_INTERNAL;
    }
}

static cnp_status run_node(det_graph_engine *e, int i, cnp_err *err)
{
    if (e->g->nodes[i].op == DET_OP_CONV)
        return run_conv(e, i, err);
    cnp_status result = run_node_kernel(e, i, err);
    stamp(e, e->times ? &e->times->other[i] : NULL);
    return result;
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

cl_mem det_graph_engine_input(const det_graph_engine *e)
{
    return node_buf(e, 0);
}

cnp_status det_graph_engine_run_raw(det_graph_engine *e, int in_h, int in_w, cl_mem *out,
                                    int *oc, int *oh, int *ow, cnp_err *err)
{
    int nn = e->g->n_nodes, last = nn - 1;
    *out = NULL;
    if (in_h < 1 || in_w < 1 || in_h > (int)e->max_h || in_w > (int)e->max_w) {
        cnp_err_set(err, "graph engine: input %dx%d is empty or larger than %ux%u", in_w, in_h,
                    e->max_w, e->max_h);
        return CNP_ERR_INVALID;
    }
    cnp_status result = set_shapes(e, in_h, in_w, err);
    e->batch = 1;
    stamp(e, NULL);
    for (int i = 1; result == CNP_OK && i <= last; i++)
        result = run_node(e, i, err);
    if (result != CNP_OK)
        return result;
    *out = node_buf(e, last);
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
        result = run_node(e, i, err);
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
static cnp_status run_graph(det_graph_engine *e, cl_mem rgba, uint32_t img_w,
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
    cl_mem in = node_buf(e, 0);
    size_t global[2] = {ocl_round_up((size_t)*pw, 16), ocl_round_up((size_t)*ph, 8)};
    size_t local[2] = {16, 8};
    stamp(e, NULL);
    for (cl_int k = 0; result == CNP_OK && k < N; k++) {
        cl_int ix = (cl_int)p[k].x0, iy = (cl_int)p[k].y0;
        result = OCL_SET_ARGS(e->input, "graph_input", err, OCL_ARG(rgba), OCL_ARG(iw), OCL_ARG(ix),
                          OCL_ARG(iy), OCL_ARG(cw), OCL_ARG(ch), OCL_ARG(crh), OCL_ARG(crw), OCL_ARG(cph),
                          OCL_ARG(cpw), OCL_ARG(mean), OCL_ARG(std), OCL_ARG(in), OCL_ARG(k), OCL_ARG(N));
        if (result == CNP_OK)
            result = enqueue(e, e->input, 2, global, local, "graph_input", err);
    }
    stamp(e, e->times ? &e->times->other[0] : NULL);
    for (int i = 1; result == CNP_OK && i <= last; i++)
        result = run_node(e, i, err);
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
    cnp_status result = run_graph(e, rgba, img_w, &win, 1, node, &rh, &rw, ph, pw, err);
    if (result != CNP_OK)
        return result;
    size_t bytes = sizeof(float) * (size_t)e->shape[node] * e->shape[nn + node] *
                   e->shape[2 * nn + node];
    *out = malloc(bytes);
    if (!*out) {
        cnp_err_set(err, "graph engine: out of memory");
        return CNP_ERR_NOMEM;
    }
    result = ocl_check(clEnqueueReadBuffer(e->q, node_buf(e, node), CL_TRUE, 0, bytes, *out, 0,
                                           NULL, NULL),
                       "reading a node's output", err);
    if (result != CNP_OK) {
        free(*out);
        *out = NULL;
    }
    return result;
}

/* Sigmoid + threshold + compaction of every level's logits of patch b of
 * the batch into keys. */
static cnp_status enqueue_scores(det_graph_engine *e, int b, cnp_err *err)
{
    const det_retina *r = &e->g->retina;
    int nn = e->g->n_nodes, *c = e->shape;
    cl_int zero = 0;
    cnp_status result = ocl_check(clEnqueueFillBuffer(e->q, e->counts, &zero, sizeof zero, 0,
                                                      sizeof(cl_int) * DET_GRAPH_MAX_LEVELS, 0,
                                                      NULL, NULL),
                                  "clEnqueueFillBuffer", err);
    for (cl_int l = 0; result == CNP_OK && l < r->n_levels; l++) {
        int ci = r->cls_node[l];
        cl_int hw = c[nn + ci] * c[2 * nn + ci], AK = c[ci], base = e->key_base[l],
               cap = e->key_cap[l];
        cl_float thr = r->score_thresh;
        cl_mem cls = node_buf(e, ci);
        cl_int cb = b, N = e->batch;
        result = OCL_SET_ARGS(e->scores, "graph_scores", err, OCL_ARG(cls), OCL_ARG(hw), OCL_ARG(AK),
                          OCL_ARG(thr), OCL_ARG(e->keys), OCL_ARG(base), OCL_ARG(e->counts), OCL_ARG(l),
                          OCL_ARG(cap), OCL_ARG(cb), OCL_ARG(N));
        size_t global = ocl_round_up((size_t)hw * AK, 64);
        if (result == CNP_OK)
            result = enqueue(e, e->scores, 1, &global, NULL, "graph_scores", err);
    }
    return result;
}

/* Sorts level l's n candidates (bitonic over the next power of two) and
 * decodes the first min(n, topk) into the NMS input at *total. */
static cnp_status enqueue_level(det_graph_engine *e, int b, int l, int n, int rh, int rw,
                                int ph, int pw, size_t *total, cnp_err *err)
{
    const det_retina *r = &e->g->retina;
    int nn = e->g->n_nodes, *c = e->shape, bi = r->box_node[l];
    cl_int base = e->key_base[l], cn = n, p2 = (cl_int)pow2_ceil((size_t)n);
    cnp_status result = OCL_SET_ARGS(e->pad, "graph_pad", err, OCL_ARG(e->keys), OCL_ARG(base), OCL_ARG(cn),
                                 OCL_ARG(p2));
    size_t gpad = ocl_round_up((size_t)(p2 - n), 64);
    if (result == CNP_OK)
        result = enqueue(e, e->pad, 1, &gpad, NULL, "graph_pad", err);
    size_t gsort = (size_t)p2;
    for (cl_int k = 2; result == CNP_OK && k <= p2; k <<= 1)
        for (cl_int j = k >> 1; result == CNP_OK && j > 0; j >>= 1) {
            result = OCL_SET_ARGS(e->bitonic, "graph_bitonic", err, OCL_ARG(e->keys), OCL_ARG(base),
                              OCL_ARG(k), OCL_ARG(j));
            if (result == CNP_OK)
                result = enqueue(e, e->bitonic, 1, &gsort, NULL, "graph_bitonic", err);
        }
    cl_int take = n < r->topk_candidates ? n : r->topk_candidates;
    cl_int hw = c[nn + bi] * c[2 * nn + bi], fw = c[2 * nn + bi], A = r->n_sizes * r->n_ratios,
           K = r->num_classes, sx = pw / c[2 * nn + bi], sy = ph / c[nn + bi], crh = rh, crw = rw,
           out0 = (cl_int)*total, pb = b, NB = e->batch;
    cl_float4 wts = {{r->box_weights[0], r->box_weights[1], r->box_weights[2],
                      r->box_weights[3]}};
    cl_float clip = r->bbox_clip;
    cl_mem reg = node_buf(e, bi);
    if (result == CNP_OK)
        result = OCL_SET_ARGS(e->decode, "graph_decode", err, OCL_ARG(e->keys), OCL_ARG(base), OCL_ARG(take),
                          OCL_ARG(reg), OCL_ARG(hw), OCL_ARG(fw), OCL_ARG(A), OCL_ARG(K), OCL_ARG(sx), OCL_ARG(sy),
                          OCL_ARG(e->anchors[l]), OCL_ARG(wts), OCL_ARG(clip), OCL_ARG(crh), OCL_ARG(crw),
                          OCL_ARG(out0), OCL_ARG(e->box), OCL_ARG(e->score), OCL_ARG(e->label), OCL_ARG(pb),
                          OCL_ARG(NB));
    size_t gdec = ocl_round_up((size_t)take, 64);
    if (result == CNP_OK)
        result = enqueue(e, e->decode, 1, &gdec, NULL, "graph_decode", err);
    *total += (size_t)take;
    return result;
}

/* Class-wise NMS of the n decoded boxes (detect.cl's kernels, the whole
 * mask in one pass: n <= levels * topk), then the gather of the kept ones. */
static cnp_status enqueue_nms(det_graph_engine *e, size_t n, float rx, float ry, cnp_err *err)
{
    const det_retina *r = &e->g->retina;
    cl_int in = (cl_int)n, ul = 1, words = (cl_int)((n + 63) / 64), row0 = 0,
           rows = words * 64, max_det = r->detections_per_img;
    cl_float iou = r->nms_thresh, crx = rx, cry = ry;
    cl_int zero = 0;
    cl_ulong zero64 = 0;
    cnp_status result = ocl_check(clEnqueueFillBuffer(e->q, e->count, &zero, sizeof zero, 0,
                                                      sizeof zero, 0, NULL, NULL),
                                  "clEnqueueFillBuffer", err);
    if (result == CNP_OK)
        result = ocl_check(clEnqueueFillBuffer(e->q, e->removed, &zero64, sizeof zero64, 0,
                                               (size_t)words * sizeof zero64, 0, NULL, NULL),
                           "clEnqueueFillBuffer", err);
    if (result == CNP_OK)
        result = OCL_SET_ARGS(e->nms_order, "detect_nms_order", err, OCL_ARG(e->box), OCL_ARG(e->score),
                          OCL_ARG(e->label), OCL_ARG(ul), OCL_ARG(in), OCL_ARG(e->index), OCL_ARG(e->sbox),
                          OCL_ARG(e->slabel));
    size_t g1 = ocl_round_up(n, NMS_BLOCK), l1 = NMS_BLOCK;
    if (result == CNP_OK)
        result = enqueue(e, e->nms_order, 1, &g1, &l1, "detect_nms_order", err);
    if (result == CNP_OK)
        result = OCL_SET_ARGS(e->nms_mask, "detect_nms_mask", err, OCL_ARG(e->sbox), OCL_ARG(e->slabel),
                          OCL_ARG(ul), OCL_ARG(in), OCL_ARG(row0), OCL_ARG(iou), OCL_ARG(words), OCL_ARG(e->bits));
    size_t g2[2] = {(size_t)words * NMS_BLOCK, (size_t)words}, l2[2] = {NMS_BLOCK, 1};
    if (result == CNP_OK)
        result = enqueue(e, e->nms_mask, 2, g2, l2, "detect_nms_mask", err);
    if (result == CNP_OK)
        result = OCL_SET_ARGS(e->nms_select, "detect_nms_select", err, OCL_ARG(e->bits), OCL_ARG(in),
                          OCL_ARG(row0), OCL_ARG(rows), OCL_ARG(words), OCL_ARG(e->removed), OCL_ARG(e->index),
                          OCL_ARG(e->keep), OCL_ARG(e->count));
    size_t g3 = e->select_local;
    if (result == CNP_OK)
        result = enqueue(e, e->nms_select, 1, &g3, &g3, "detect_nms_select", err);
    if (result == CNP_OK)
        result = OCL_SET_ARGS(e->gather, "graph_gather", err, OCL_ARG(e->box), OCL_ARG(e->score),
                          OCL_ARG(e->label), OCL_ARG(e->keep), OCL_ARG(e->count), OCL_ARG(max_det),
                          OCL_ARG(crx), OCL_ARG(cry), OCL_ARG(e->out));
    size_t g4 = ocl_round_up((size_t)max_det, 64);
    if (result == CNP_OK)
        result = enqueue(e, e->gather, 1, &g4, NULL, "graph_gather", err);
    return result;
}

/* Decode, NMS and read-back of patch b of the batch just run (its window
 * w x h, transformed to rh x rw padded to ph x pw). */
static cnp_status decode_patch(det_graph_engine *e, int b, uint32_t w, uint32_t h, int rh,
                               int rw, int ph, int pw, det_detection **out, size_t *n,
                               cnp_err *err)
{
    const det_retina *r = &e->g->retina;
    *out = NULL;
    *n = 0;
    cnp_status result = enqueue_scores(e, b, err);
    cl_int counts[DET_GRAPH_MAX_LEVELS];
    if (result == CNP_OK)
        result = ocl_check(clEnqueueReadBuffer(e->q, e->counts, CL_TRUE, 0,
                                               sizeof(cl_int) * (size_t)r->n_levels, counts, 0,
                                               NULL, NULL),
                           "reading the candidate counts", err);
    size_t total = 0;
    for (int l = 0; result == CNP_OK && l < r->n_levels; l++) {
        if (counts[l] < 0 || counts[l] > e->key_cap[l]) {
            cnp_err_set(err, "graph engine: level %d: %d candidates overflow %d", l, counts[l],
                        e->key_cap[l]);
            result = CNP_ERR_INTERNAL;
        } else if (counts[l] > 0)
            result = enqueue_level(e, b, l, counts[l], rh, rw, ph, pw, &total, err);
    }
    if (result != CNP_OK || total == 0)
        return result;
    float rx = (float)w / (float)rw, ry = (float)h / (float)rh;
    result = enqueue_nms(e, total, rx, ry, err);
    size_t most = total < (size_t)r->detections_per_img ? total : (size_t)r->detections_per_img;
    float *raw = malloc((1 + 6 * most) * sizeof *raw);
    if (!raw) {
        cnp_err_set(err, "graph engine: out of memory");
        return CNP_ERR_NOMEM;
    }
    if (result == CNP_OK)
        result = ocl_check(clEnqueueReadBuffer(e->q, e->out, CL_TRUE, 0,
                                               (1 + 6 * most) * sizeof *raw, raw, 0, NULL, NULL),
                           "reading the detections", err);
    int kept = 0;
    memcpy(&kept, &raw[0], sizeof kept);
    if (result == CNP_OK && (kept < 0 || (size_t)kept > most)) {
        cnp_err_set(err, "graph engine: NMS kept %d of %zu boxes", kept, total);
        result = CNP_ERR_INTERNAL;
    }
    if (result == CNP_OK && kept > 0) {
        *out = malloc((size_t)kept * sizeof **out);
        if (!*out) {
            cnp_err_set(err, "graph engine: out of memory");
            result = CNP_ERR_NOMEM;
        }
    }
    for (int k = 0; result == CNP_OK && k < kept; k++) {
        const float *o = raw + 1 + 6 * (size_t)k;
        int label;
        memcpy(&label, &o[5], sizeof label);
        (*out)[k] = (det_detection){o[0], o[1], o[2], o[3], o[4], label};
    }
    if (result == CNP_OK)
        *n = (size_t)kept;
    free(raw);
    return result;
}

static cnp_status predict(det_graph_engine *e, cl_mem rgba, uint32_t img_w, const det_tile *p,
                          size_t np, det_detection **out, size_t *n_out, cnp_err *err)
{
    int rh, rw, ph, pw;
    cnp_status result = run_graph(e, rgba, img_w, p, np, e->g->n_nodes - 1, &rh, &rw, &ph, &pw,
                                  err);
    for (size_t k = 0; result == CNP_OK && k < np; k++)
        result = decode_patch(e, (int)k, p[0].w, p[0].h, rh, rw, ph, pw, &out[k], &n_out[k],
                              err);
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
    stamp(e, e->times ? &e->times->post : NULL);
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
    stamp(e, e->times ? &e->times->post : NULL);
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
