/* The CPU backend's engine (dnnl_graph.h): creation, the plan cache, runs
 * of the graph, outputs read back to NCHW, and RetinaNet's predict with the
 * C reference's transform, decode and NMS. Plans live in dnnl_plan.c, the
 * C loops in dnnl_ops.c. */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "canopy/buf.h"
#include "detect/cpu/dnnl_internal.h"

cnp_status det_dnnl_graph_create(const det_graph *g, const det_dnnl_opts *opts,
                                 det_dnnl_graph **out, cnp_err *err)
{
    *out = NULL;
    /* Shapes and fields are checked per input size (det_graph_ref_shapes). */
    if (g->n_nodes < 2 || g->nodes[0].op != DET_OP_INPUT ||
        (g->input.kind == DET_INPUT_RETINA &&
         (g->retina.n_levels < 1 || g->retina.n_levels > DET_GRAPH_MAX_LEVELS))) {
        cnp_err_set(err, "CPU backend: a graph of %d nodes and %d levels: nothing to run",
                    g->n_nodes, g->retina.n_levels);
        return CNP_ERR_INVALID;
    }
    det_dnnl_graph *e = calloc(1, sizeof *e);
    if (!e) {
        cnp_err_set(err, "CPU backend: out of memory");
        return CNP_ERR_NOMEM;
    }
    e->g = g;
    if (opts)
        e->opts = *opts;
    e->threads = e->opts.threads > 0 ? e->opts.threads : omp_get_num_procs();
    e->max_batch = e->opts.max_batch > 1 ? e->opts.max_batch : 1;
    if (e->opts.choices_file)
        snprintf(e->choices_file, sizeof e->choices_file, "%s", e->opts.choices_file);
    e->opts.choices_file = NULL;
    dg_choices_load(e);
    cnp_status result = dg_check(dnnl_engine_create(&e->eng, dnnl_cpu, 0), "engine", err);
    if (result == CNP_OK)
        result = dg_check(dnnl_stream_create(&e->stream, e->eng, dnnl_stream_default_flags),
                          "stream", err);
    if (result != CNP_OK) {
        det_dnnl_graph_free(e);
        return result;
    }
    *out = e;
    return CNP_OK;
}

void det_dnnl_graph_free(det_dnnl_graph *e)
{
    if (!e)
        return;
    for (int k = 0; k < DG_MAX_PLANS; k++)
        dg_plan_free(e, e->plans[k]);
    for (size_t j = 0; j < e->n_wc; j++)
        dnnl_memory_destroy(e->wc[j].mem);
    free(e->wc);
    free(e->choices);
    free(e->arena);
    free(e->input);
    free(e->heads);
    dnnl_memory_destroy(e->scratch_mem);
    free(e->scratch);
    if (e->stream)
        dnnl_stream_destroy(e->stream);
    if (e->eng)
        dnnl_engine_destroy(e->eng);
    free(e);
}

int det_dnnl_graph_max_batch(const det_dnnl_graph *e)
{
    return e->max_batch;
}

int det_dnnl_graph_threads(const det_dnnl_graph *e)
{
    return e->threads;
}

void det_dnnl_graph_set_times(det_dnnl_graph *e, det_dnnl_times *times)
{
    e->times = times;
}

enum det_dnnl_conv det_dnnl_graph_node_conv(const det_dnnl_graph *e, int i, const char **impl)
{
    if (impl)
        *impl = "";
    if (!e->current || i < 1 || i >= e->g->n_nodes || !e->current->nodes[i].prim)
        return DET_DNNL_CONV_AUTO;
    const_dnnl_primitive_desc_t pd = NULL;
    if (impl && dnnl_primitive_get_primitive_desc(e->current->nodes[i].prim, &pd) ==
                    dnnl_success)
        dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, (void *)impl);
    return e->current->nodes[i].algo;
}

/* The plan for n x h x w: cached, or made (evicting the least recently
 * used). */
static cnp_status plan_get(det_dnnl_graph *e, const float *input, int n, int h, int w,
                           dg_plan **out, cnp_err *err)
{
    int victim = 0;
    for (int k = 0; k < DG_MAX_PLANS; k++) {
        dg_plan *p = e->plans[k];
        if (p && p->n == n && p->h == h && p->w == w) {
            p->used = ++e->tick;
            *out = p;
            return CNP_OK;
        }
        if (!p || (e->plans[victim] && p->used < e->plans[victim]->used))
            victim = k;
    }
    if (e->current == e->plans[victim])
        e->current = NULL;
    dg_plan_free(e, e->plans[victim]);
    e->plans[victim] = NULL;
    cnp_status result = dg_plan_create(e, input, n, h, w, &e->plans[victim], err);
    if (result == CNP_OK) {
        e->plans[victim]->used = ++e->tick;
        *out = e->plans[victim];
        dg_choices_save(e);
    }
    return result;
}

static void stamp(det_dnnl_graph *e, double *t0, double *acc)
{
    if (!e->times)
        return;
    double t = cnp_now();
    if (acc)
        *acc += t - *t0;
    *t0 = t;
}

/* Node i (not a conv) as its C loop. */
static void run_loop(det_dnnl_graph *e, const dg_plan *p, int i)
{
    const det_node *n = &e->g->nodes[i];
    int nn = e->g->n_nodes, *c = p->shape, *h = c + nn, *w = c + 2 * nn;
    int nb = p->n * ((c[i] + DG_BLOCK - 1) / DG_BLOCK);
    float *out = e->arena + p->nodes[i].off;
    const float *in = e->arena + p->nodes[n->in].off;
    switch (n->op) {
    case DET_OP_MAXPOOL:
        dg_maxpool(in, out, nb, h[n->in], w[n->in], h[i], w[i], n->k, n->stride, n->pad);
        break;
    case DET_OP_RELU:
        dg_relu(in, out, p->nodes[i].floats);
        break;
    case DET_OP_UPSAMPLE_ADD:
        dg_upsample_add(in, e->arena + p->nodes[n->in2].off, out, nb, h[i], w[i], h[n->in2],
                        w[n->in2]);
        break;
    default:
        break;
    }
}

cnp_status det_dnnl_graph_run(det_dnnl_graph *e, const float *input, int n, int h, int w,
                              cnp_err *err)
{
    if (n < 1 || h < 1 || w < 1) {
        cnp_err_set(err, "CPU backend: a batch of %d inputs of %dx%d", n, w, h);
        return CNP_ERR_INVALID;
    }
    omp_set_num_threads(e->threads);
    dg_plan *p = NULL;
    e->current = NULL;
    cnp_status result = plan_get(e, input, n, h, w, &p, err);
    if (result == CNP_OK)
        result = dg_plan_bind(e, p, input, err);
    if (result != CNP_OK)
        return result;
    e->current = p;
    double t0 = cnp_now();
    if (p->in_block) {
        dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, p->in_plain}, {DNNL_ARG_TO, p->nodes[0].mem}};
        result = dg_check(dg_execute(e, p->in_block, 2, args), "input reorder", err);
    }
    for (int i = 1; result == CNP_OK && i < e->g->n_nodes; i++) {
        if (e->g->nodes[i].op == DET_OP_CONV)
            result = dg_plan_conv(e, p, i, err);
        else
            run_loop(e, p, i);
        stamp(e, &t0, e->times ? &e->times->node[i] : NULL);
    }
    if (result != CNP_OK)
        e->current = NULL;
    return result;
}

cnp_status det_dnnl_graph_output(det_dnnl_graph *e, int node, float *dst, size_t cap, int *c,
                                 int *h, int *w, cnp_err *err)
{
    dg_plan *p = e->current;
    int nn = e->g->n_nodes;
    if (!p || node < 1 || node >= nn || !p->nodes[node].alive) {
        cnp_err_set(err, "CPU backend: node %d's output is not kept (no run, no such node, or "
                    "its buffer was reused)", node);
        return CNP_ERR_INVALID;
    }
    *c = p->shape[node];
    *h = p->shape[nn + node];
    *w = p->shape[2 * nn + node];
    size_t need = (size_t)p->n * (size_t)*c * (size_t)*h * (size_t)*w;
    if (need > cap) {
        cnp_err_set(err, "CPU backend: node %d's output of %zu floats exceeds %zu", node, need,
                    cap);
        return CNP_ERR_INVALID;
    }
    dg_node *d = &p->nodes[node];
    dnnl_status_t st = dnnl_success;
    if (!d->to_plain) {
        const dnnl_memory_desc_t *from = NULL;
        dnnl_memory_desc_t to;
        dnnl_dims_t dims = {p->n, *c, *h, *w};
        st = dnnl_memory_get_memory_desc(d->mem, &from);
        if (st == dnnl_success)
            st = dnnl_memory_desc_init_by_tag(&to, 4, dims, dnnl_f32, dnnl_nchw);
        if (st == dnnl_success)
            st = dnnl_memory_create(&d->plain, &to, e->eng, DNNL_MEMORY_NONE);
        if (st == dnnl_success)
            st = dg_reorder_create(e, from, &to, &d->to_plain);
    }
    if (st == dnnl_success)
        st = dnnl_memory_set_data_handle(d->plain, dst);
    dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, d->mem}, {DNNL_ARG_TO, d->plain}};
    if (st == dnnl_success)
        st = dg_execute(e, d->to_plain, 2, args);
    return dg_check(st, "output reorder", err);
}

/* ---- RetinaNet ------------------------------------------------------------- */

cnp_status dg_reserve(float **buf, size_t *have, size_t floats, cnp_err *err)
{
    if (floats <= *have)
        return CNP_OK;
    free(*buf);
    *have = 0;
    *buf = malloc(floats * sizeof(float));
    if (!*buf) {
        cnp_err_set(err, "CPU backend: out of memory for %zu floats", floats);
        return CNP_ERR_NOMEM;
    }
    *have = floats;
    return CNP_OK;
}

/* The transform of every window into e->input (windows in parallel). */
static cnp_status transform(det_dnnl_graph *e, const uint8_t *rgba, uint32_t img_w,
                            const det_tile *p, size_t np, int ph, int pw, cnp_err *err)
{
    const det_retina *r = &e->g->retina;
    size_t per = 3 * (size_t)ph * pw;
    cnp_status result = dg_reserve(&e->input, &e->input_floats, per * np, err);
    if (result != CNP_OK)
        return result;
    int bad = -1;
    cnp_err first;
#pragma omp parallel for schedule(dynamic, 1)
    for (size_t k = 0; k < np; k++) {
        float *t = NULL;
        int rh, rw, h2, w2;
        cnp_err ek;
        const uint8_t *px = rgba + 4 * ((size_t)p[k].y0 * img_w + p[k].x0);
        if (det_retina_input(r, px, 4 * img_w, p[k].w, p[k].h, &t, &rh, &rw, &h2, &w2, &ek) ==
            CNP_OK)
            memcpy(e->input + k * per, t, per * sizeof(float));
        else
#pragma omp critical
            if (bad < 0) {
                bad = (int)k;
                first = ek;
            }
        free(t);
    }
    if (bad >= 0) {
        *err = first;
        return CNP_ERR_INVALID;
    }
    return CNP_OK;
}

/* The heads of every level to NCHW in e->heads: cls[l] / box[l] point at
 * level l's (all windows, back to back). */
static cnp_status read_heads(det_dnnl_graph *e, int np, float **cls, float **box, int *fh,
                             int *fw, int *cc, int *bc, cnp_err *err)
{
    const det_retina *r = &e->g->retina;
    const dg_plan *p = e->current;
    int nn = e->g->n_nodes;
    size_t total = 0;
    for (int l = 0; l < r->n_levels; l++) {
        int ci = r->cls_node[l], bi = r->box_node[l];
        total += (size_t)np * (size_t)(p->shape[ci] + p->shape[bi]) * p->shape[nn + ci] *
                 p->shape[2 * nn + ci];
    }
    cnp_status result = dg_reserve(&e->heads, &e->heads_floats, total, err);
    size_t off = 0;
    for (int l = 0; result == CNP_OK && l < r->n_levels; l++) {
        int h2, w2;
        cls[l] = e->heads + off;
        result = det_dnnl_graph_output(e, r->cls_node[l], cls[l], total - off, &cc[l], &fh[l],
                                       &fw[l], err);
        off += (size_t)np * cc[l] * fh[l] * fw[l];
        box[l] = e->heads + off;
        if (result == CNP_OK)
            result = det_dnnl_graph_output(e, r->box_node[l], box[l], total - off, &bc[l], &h2,
                                           &w2, err);
        off += (size_t)np * bc[l] * h2 * w2;
        if (result == CNP_OK && (h2 != fh[l] || w2 != fw[l])) {
            cnp_err_set(err, "CPU backend: level %d heads differ in size", l);
            result = CNP_ERR_FORMAT;
        }
    }
    return result;
}

/* Decode and NMS of every window (in parallel). */
static cnp_status postprocess(det_dnnl_graph *e, size_t np, float **cls, float **box,
                              const int *fh, const int *fw, const int *cc, const int *bc,
                              int rh, int rw, int ph, int pw, uint32_t h, uint32_t w,
                              det_detection **out, size_t *n_out, cnp_err *err)
{
    const det_retina *r = &e->g->retina;
    int bad = -1;
    cnp_status bad_result = CNP_OK;
    cnp_err first;
#pragma omp parallel for schedule(dynamic, 1)
    for (size_t k = 0; k < np; k++) {
        float *kc[DET_GRAPH_MAX_LEVELS], *kb[DET_GRAPH_MAX_LEVELS];
        for (int l = 0; l < r->n_levels; l++) {
            size_t plane = (size_t)fh[l] * fw[l];
            kc[l] = cls[l] + k * cc[l] * plane;
            kb[l] = box[l] + k * bc[l] * plane;
        }
        cnp_err ek;
        cnp_status rk = det_retina_ref_postprocess(e->g, kc, kb, fh, fw, rh, rw, ph, pw, (int)h,
                                                   (int)w, &out[k], &n_out[k], &ek);
        if (rk != CNP_OK)
#pragma omp critical
            if (bad < 0) {
                bad = (int)k;
                bad_result = rk;
                first = ek;
            }
    }
    if (bad >= 0)
        *err = first;
    return bad_result;
}

cnp_status det_dnnl_graph_predict_batch(det_dnnl_graph *e, const uint8_t *rgba, uint32_t img_w,
                                        uint32_t img_h, const det_tile *p, size_t np,
                                        det_detection **out, size_t *n_out, cnp_err *err)
{
    const det_graph *g = e->g;
    for (size_t k = 0; k < np; k++) {
        out[k] = NULL;
        n_out[k] = 0;
    }
    if (g->input.kind != DET_INPUT_RETINA) {
        cnp_err_set(err, "CPU backend: a crown graph runs through det_dnnl_graph_run");
        return CNP_ERR_INVALID;
    }
    if (np < 1 || np > (size_t)e->max_batch) {
        cnp_err_set(err, "CPU backend: a batch of %zu windows (1..%d)", np, e->max_batch);
        return CNP_ERR_INVALID;
    }
    uint32_t w = p[0].w, h = p[0].h;
    for (size_t k = 0; k < np; k++)
        if (p[k].w != w || p[k].h != h || w == 0 || h == 0 || p[k].x0 + w > img_w ||
            p[k].y0 + h > img_h || p[k].x0 + w < w || p[k].y0 + h < h) {
            cnp_err_set(err, "CPU backend: window %ux%u at (%u, %u) is empty, not the batch's "
                        "%ux%u or outside the %ux%u image", p[k].w, p[k].h, p[k].x0, p[k].y0,
                        w, h, img_w, img_h);
            return CNP_ERR_INVALID;
        }
    int rh, rw, ph, pw;
    det_retina_input_size(&g->retina, (int)h, (int)w, &rh, &rw, &ph, &pw);
    omp_set_num_threads(e->threads);
    double t0 = cnp_now();
    cnp_status result = transform(e, rgba, img_w, p, np, ph, pw, err);
    stamp(e, &t0, e->times ? &e->times->node[0] : NULL);
    if (result == CNP_OK)
        result = det_dnnl_graph_run(e, e->input, (int)np, ph, pw, err);
    t0 = cnp_now();
    float *cls[DET_GRAPH_MAX_LEVELS], *box[DET_GRAPH_MAX_LEVELS];
    int fh[DET_GRAPH_MAX_LEVELS], fw[DET_GRAPH_MAX_LEVELS], cc[DET_GRAPH_MAX_LEVELS],
        bc[DET_GRAPH_MAX_LEVELS];
    if (result == CNP_OK)
        result = read_heads(e, (int)np, cls, box, fh, fw, cc, bc, err);
    if (result == CNP_OK)
        result = postprocess(e, np, cls, box, fh, fw, cc, bc, rh, rw, ph, pw, h, w, out, n_out,
                             err);
    stamp(e, &t0, e->times ? &e->times->post : NULL);
    if (result != CNP_OK)
        for (size_t k = 0; k < np; k++) {
            free(out[k]);
            out[k] = NULL;
            n_out[k] = 0;
        }
    return result;
}
