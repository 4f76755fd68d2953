/* One plan of the CPU backend: every node's shape, its place in the
 * activation arena and, for convolutions, the oneDNN primitive with its
 * weights reordered into the primitive's format, all for one input size
 * and batch (dnnl_internal.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "canopy/buf.h"
#include "detect/cpu/dnnl_internal.h"

cnp_status dg_check(dnnl_status_t st, const char *what, cnp_err *err)
{
    if (st == dnnl_success)
        return CNP_OK;
    const char *why = st == dnnl_out_of_memory    ? "out of memory"
                      : st == dnnl_invalid_arguments ? "invalid arguments"
                      : st == dnnl_unimplemented    ? "no implementation for these shapes"
                                                    : "failed";
    cnp_err_set(err, "oneDNN %s: %s (status %d)", what, why, (int)st);
    return st == dnnl_out_of_memory ? CNP_ERR_NOMEM : CNP_ERR_INTERNAL;
}

/* ---- activation buffers ---------------------------------------------------- */

/* Gives every node a buffer in the arena: the best-fitting slot whose
 * tenant has had its last reader, or a new one; a conv whose residual, or
 * an upsample_add / relu whose input, is read for the last time by it
 * takes that tensor's slot (computed in place). keep_all: a slot each. */
static cnp_status plan_slots(det_dnnl_graph *e, dg_plan *p, cnp_err *err)
{
    const det_graph *g = e->g;
    int nn = g->n_nodes;
    int *last = malloc(sizeof(int) * 3 * (size_t)nn);
    size_t *cap = malloc(sizeof(size_t) * (size_t)nn);
    if (!last || !cap) {
        free(last);
        free(cap);
        cnp_err_set(err, "CPU backend: out of memory planning %d nodes", nn);
        return CNP_ERR_NOMEM;
    }
    int *slot_of = last + nn, *tenant_last = last + 2 * nn, n_slots = 0;
    det_graph_last_use(g, g->input.kind == DET_INPUT_RETINA, last);
    for (int i = 0; i < nn; i++) {
        const det_node *n = &g->nodes[i];
        size_t need = p->nodes[i].floats;
        int best = -1, reuse = -1;
        if (i > 0 && n->op == DET_OP_CONV && n->in2 > 0 && n->in2 != n->in && last[n->in2] == i)
            reuse = n->in2;
        else if (i > 0 && (n->op == DET_OP_UPSAMPLE_ADD || n->op == DET_OP_RELU) && n->in > 0 &&
                 n->in != n->in2 && last[n->in] == i)
            reuse = n->in;
        if (reuse > 0 && !e->opts.keep_all) {
            best = slot_of[reuse];
            p->nodes[i].in_place = n->op == DET_OP_CONV;
        }
        for (int s = 0; best < 0 && !e->opts.keep_all && s < n_slots; s++) {
            if (tenant_last[s] >= i)
                continue;
            bool fits = cap[s] >= need;
            if (best < 0 || (fits && (cap[best] < need || cap[s] < cap[best])) ||
                (!fits && cap[best] < need && cap[s] > cap[best]))
                best = s;
        }
        if (best < 0) {
            best = n_slots++;
            cap[best] = 0;
        }
        if (cap[best] < need)
            cap[best] = need;
        tenant_last[best] = last[i];
        slot_of[i] = best;
    }
    /* Slots laid out back to back, each 64-byte aligned (16 floats). */
    size_t *base = malloc(sizeof(size_t) * (size_t)(n_slots ? n_slots : 1));
    if (!base) {
        free(last);
        free(cap);
        cnp_err_set(err, "CPU backend: out of memory planning %d nodes", nn);
        return CNP_ERR_NOMEM;
    }
    size_t off = 0;
    for (int s = 0; s < n_slots; s++) {
        base[s] = off;
        off += (cap[s] + 15) / 16 * 16;
    }
    p->arena_floats = off;
    for (int i = 0; i < nn; i++) {
        p->nodes[i].off = base[slot_of[i]];
        p->nodes[i].alive = true;
        for (int j = i + 1; j < nn; j++)
            if (slot_of[j] == slot_of[i])
                p->nodes[i].alive = false;
    }
    free(base);
    free(last);
    free(cap);
    return CNP_OK;
}

/* ---- remembered choices ------------------------------------------------------ */

static bool choice_add(det_dnnl_graph *e, const int *key, enum det_dnnl_conv algo)
{
    if (e->n_choices == e->cap_choices) {
        size_t cap = e->cap_choices ? 2 * e->cap_choices : 32;
        dg_choice *c = realloc(e->choices, cap * sizeof *c);
        if (!c)
            return false;
        e->choices = c;
        e->cap_choices = cap;
    }
    memcpy(e->choices[e->n_choices].key, key, sizeof e->choices[0].key);
    e->choices[e->n_choices++].algo = algo;
    return true;
}

void dg_choices_load(det_dnnl_graph *e)
{
    FILE *f = e->choices_file[0] ? fopen(e->choices_file, "r") : NULL;
    if (!f)
        return;
    int k[11], a;
    while (fscanf(f, "%d %d %d %d %d %d %d %d %d %d %d %d", &k[0], &k[1], &k[2], &k[3], &k[4],
                  &k[5], &k[6], &k[7], &k[8], &k[9], &k[10], &a) == 12 &&
           (a == DET_DNNL_CONV_DIRECT || a == DET_DNNL_CONV_WINOGRAD) &&
           choice_add(e, k, (enum det_dnnl_conv)a))
        ;
    fclose(f);
}

void dg_choices_save(det_dnnl_graph *e)
{
    if (!e->choices_file[0] || !e->choices_new)
        return;
    char tmp[sizeof e->choices_file + 32];
    snprintf(tmp, sizeof tmp, "%s.%d.tmp", e->choices_file, (int)getpid());
    FILE *f = fopen(tmp, "w");
    if (!f)
        return;
    for (size_t j = 0; j < e->n_choices; j++) {
        const int *k = e->choices[j].key;
        fprintf(f, "%d %d %d %d %d %d %d %d %d %d %d %d\n", k[0], k[1], k[2], k[3], k[4], k[5],
                k[6], k[7], k[8], k[9], k[10], (int)e->choices[j].algo);
    }
    if (fclose(f) == 0 && rename(tmp, e->choices_file) == 0)
        e->choices_new = false;
    else
        unlink(tmp);
}

/* ---- convolutions ------------------------------------------------------------ */

static int conv_pad_r(int in, int out, int k, int s, int p, int d)
{
    return (out - 1) * s + (k - 1) * d + 1 - in - p;
}

/* The primitive descriptor of conv node i with algorithm alg. */
static dnnl_status_t conv_desc(det_dnnl_graph *e, const dg_plan *p, int i, dnnl_alg_kind_t alg,
                               dnnl_primitive_desc_t *pd)
{
    const det_node *n = &e->g->nodes[i];
    int nn = e->g->n_nodes, *c = p->shape, *h = c + nn, *w = c + 2 * nn;
    dnnl_memory_desc_t src, wei, bias, dst;
    dnnl_dims_t sd = {p->n, n->cin, h[n->in], w[n->in]}, wd = {n->cout, n->cin, n->k, n->k},
                bd = {n->cout}, dd = {p->n, n->cout, h[i], w[i]};
    dnnl_dims_t strides = {n->stride, n->stride}, dil = {n->dilation - 1, n->dilation - 1},
                pl = {n->pad, n->pad},
                pr = {conv_pad_r(h[n->in], h[i], n->k, n->stride, n->pad, n->dilation),
                      conv_pad_r(w[n->in], w[i], n->k, n->stride, n->pad, n->dilation)};
    dnnl_status_t st = dnnl_memory_desc_init_by_tag(&src, 4, sd, dnnl_f32,
                                                    n->in == 0 ? dnnl_nchw : dnnl_nChw16c);
    if (st == dnnl_success)
        st = dnnl_memory_desc_init_by_tag(&wei, 4, wd, dnnl_f32, dnnl_format_tag_any);
    if (st == dnnl_success)
        st = dnnl_memory_desc_init_by_tag(&bias, 1, bd, dnnl_f32, dnnl_x);
    if (st == dnnl_success)
        st = dnnl_memory_desc_init_by_tag(&dst, 4, dd, dnnl_f32, dnnl_nChw16c);
    dnnl_convolution_desc_t cd;
    if (st == dnnl_success)
        st = dnnl_dilated_convolution_forward_desc_init(&cd, dnnl_forward_inference, alg, &src,
                                                        &wei, &bias, &dst, strides, dil, pl, pr);
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t po = NULL;
    if (st == dnnl_success)
        st = dg_attr_create(&attr);
    if (st == dnnl_success)
        st = dnnl_post_ops_create(&po);
    /* The residual first (dst already holds it), then the activation:
     * act(conv + bias + add), graph.h's order. */
    if (st == dnnl_success && n->in2 >= 0)
        st = dnnl_post_ops_append_sum(po, 1.0f);
    if (st == dnnl_success && n->act == DET_ACT_RELU)
        st = dnnl_post_ops_append_eltwise(po, 1.0f, dnnl_eltwise_relu, 0.0f, 0.0f);
    if (st == dnnl_success)
        st = dnnl_primitive_attr_set_post_ops(attr, po);
    if (st == dnnl_success)
        st = dnnl_primitive_desc_create(pd, &cd, attr, e->eng, NULL);
    if (st == dnnl_success && (st = dg_scratch_fit(e, *pd)) != dnnl_success) {
        dnnl_primitive_desc_destroy(*pd);
        *pd = NULL;
    }
    dnnl_post_ops_destroy(po);
    dnnl_primitive_attr_destroy(attr);
    return st;
}

/* The weights of node i in format md, reordered once and cached by source
 * pointer and format (nodes sharing weights share them). */
static cnp_status weights_for(det_dnnl_graph *e, const det_node *n, const dnnl_memory_desc_t *md,
                              dnnl_memory_t *out, cnp_err *err)
{
    for (size_t j = 0; j < e->n_wc; j++)
        if (e->wc[j].src == n->weight && dnnl_memory_desc_equal(&e->wc[j].md, md)) {
            *out = e->wc[j].mem;
            return CNP_OK;
        }
    if (e->n_wc == e->cap_wc) {
        size_t cap = e->cap_wc ? 2 * e->cap_wc : 64;
        dg_weights *wc = realloc(e->wc, cap * sizeof *wc);
        if (!wc) {
            cnp_err_set(err, "CPU backend: out of memory for the weights of %s", n->name);
            return CNP_ERR_NOMEM;
        }
        e->wc = wc;
        e->cap_wc = cap;
    }
    dnnl_memory_desc_t plain_md;
    dnnl_dims_t wd = {n->cout, n->cin, n->k, n->k};
    dnnl_memory_t plain = NULL, mem = NULL;
    dnnl_primitive_t r = NULL;
    dnnl_status_t st = dnnl_memory_desc_init_by_tag(&plain_md, 4, wd, dnnl_f32, dnnl_oihw);
    if (st == dnnl_success)
        st = dnnl_memory_create(&plain, &plain_md, e->eng, (void *)n->weight);
    if (st == dnnl_success)
        st = dnnl_memory_create(&mem, md, e->eng, DNNL_MEMORY_ALLOCATE);
    if (st == dnnl_success)
        st = dg_reorder_create(e, &plain_md, md, &r);
    dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, plain}, {DNNL_ARG_TO, mem}};
    if (st == dnnl_success)
        st = dg_execute(e, r, 2, args);
    dnnl_primitive_destroy(r);
    dnnl_memory_destroy(plain);
    if (st != dnnl_success) {
        dnnl_memory_destroy(mem);
        cnp_status result = dg_check(st, "weights reorder", err);
        cnp_err_prefix(err, "node %s", n->name);
        return result;
    }
    e->wc[e->n_wc++] = (dg_weights){.src = n->weight, .md = *md, .mem = mem};
    *out = mem;
    return CNP_OK;
}

/* The measurement key of conv node i: its shape, batch and post-ops. */
static void choice_key(const det_dnnl_graph *e, const dg_plan *p, int i, int *key)
{
    const det_node *n = &e->g->nodes[i];
    int nn = e->g->n_nodes;
    int k[11] = {n->cin, n->cout, n->k, n->stride, n->pad, p->n, p->shape[nn + n->in],
                 p->shape[2 * nn + n->in], n->in2 >= 0, n->act, n->in == 0};
    memcpy(key, k, sizeof k);
}

/* Makes the primitive of conv node i with pd (taking it), its weights and
 * bias memories. */
static cnp_status conv_make(det_dnnl_graph *e, dg_plan *p, int i, dnnl_primitive_desc_t pd,
                            cnp_err *err)
{
    const det_node *n = &e->g->nodes[i];
    dg_node *d = &p->nodes[i];
    dnnl_memory_desc_t bmd;
    dnnl_dims_t bd = {n->cout};
    cnp_status result = weights_for(e, n, dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md,
                                                                       0),
                                    &d->wmem, err);
    dnnl_status_t st = dnnl_success;
    if (result == CNP_OK)
        st = dnnl_primitive_create(&d->prim, pd);
    if (st == dnnl_success && result == CNP_OK)
        st = dnnl_memory_desc_init_by_tag(&bmd, 1, bd, dnnl_f32, dnnl_x);
    if (st == dnnl_success && result == CNP_OK)
        st = dnnl_memory_create(&d->bias, &bmd, e->eng, (void *)n->bias);
    dnnl_primitive_desc_destroy(pd);
    if (result == CNP_OK && st != dnnl_success) {
        result = dg_check(st, "convolution", err);
        cnp_err_prefix(err, "node %s", n->name);
    }
    return result;
}

/* Seconds of one run of conv node i as made (after a warm-up run). */
static double conv_seconds(det_dnnl_graph *e, dg_plan *p, int i, cnp_err *err, cnp_status *res)
{
    double best = 0;
    for (int r = 0; r < 2 && *res == CNP_OK; r++) {
        double t0 = cnp_now();
        *res = dg_plan_conv(e, p, i, err);
        best = cnp_now() - t0;
    }
    return best;
}

static void conv_drop(dg_node *d)
{
    dnnl_primitive_destroy(d->prim);
    dnnl_memory_destroy(d->bias);
    d->prim = NULL;
    d->bias = NULL;
}

/* The primitive of conv node i: Winograd for 3x3 stride-1 undilated
 * convolutions where oneDNN offers it and (auto) it ran faster than the
 * direct one at this shape, measured once per shape; else direct. */
static cnp_status conv_plan(det_dnnl_graph *e, dg_plan *p, int i, cnp_err *err)
{
    const det_node *n = &e->g->nodes[i];
    dg_node *d = &p->nodes[i];
    dnnl_primitive_desc_t wpd = NULL, dpd = NULL;
    bool wino_shape = n->k == 3 && n->stride == 1 && n->dilation == 1;
    if (wino_shape && e->opts.conv != DET_DNNL_CONV_DIRECT &&
        conv_desc(e, p, i, dnnl_convolution_winograd, &wpd) != dnnl_success)
        wpd = NULL;
    if (!wpd || e->opts.conv == DET_DNNL_CONV_AUTO) {
        cnp_status result = dg_check(conv_desc(e, p, i, dnnl_convolution_direct, &dpd),
                                     "convolution", err);
        if (result != CNP_OK) {
            dnnl_primitive_desc_destroy(wpd);
            cnp_err_prefix(err, "node %s", n->name);
            return result;
        }
    }
    if (!wpd || !dpd) { /* one candidate */
        d->algo = wpd ? DET_DNNL_CONV_WINOGRAD : DET_DNNL_CONV_DIRECT;
        return conv_make(e, p, i, wpd ? wpd : dpd, err);
    }
    int key[11];
    choice_key(e, p, i, key);
    for (size_t j = 0; j < e->n_choices; j++)
        if (!memcmp(e->choices[j].key, key, sizeof key)) {
            bool wino = e->choices[j].algo == DET_DNNL_CONV_WINOGRAD;
            dnnl_primitive_desc_destroy(wino ? dpd : wpd);
            d->algo = e->choices[j].algo;
            return conv_make(e, p, i, wino ? wpd : dpd, err);
        }
    cnp_status result = conv_make(e, p, i, wpd, err);
    double ws = result == CNP_OK ? conv_seconds(e, p, i, err, &result) : 0;
    conv_drop(d);
    if (result == CNP_OK)
        result = conv_make(e, p, i, dpd, err);
    else
        dnnl_primitive_desc_destroy(dpd);
    double ds = result == CNP_OK ? conv_seconds(e, p, i, err, &result) : 0;
    if (result != CNP_OK)
        return result;
    d->algo = ws < ds ? DET_DNNL_CONV_WINOGRAD : DET_DNNL_CONV_DIRECT;
    if (!choice_add(e, key, d->algo)) {
        cnp_err_set(err, "CPU backend: out of memory");
        return CNP_ERR_NOMEM;
    }
    e->choices_new = true;
    if (d->algo == DET_DNNL_CONV_DIRECT)
        return CNP_OK;
    conv_drop(d);
    result = dg_check(conv_desc(e, p, i, dnnl_convolution_winograd, &wpd), "convolution", err);
    return result == CNP_OK ? conv_make(e, p, i, wpd, err) : result;
}

/* ---- the plan ---------------------------------------------------------------- */

static cnp_status blocked_mem(det_dnnl_graph *e, int n, int c, int h, int w, dnnl_format_tag_t tag,
                              dnnl_memory_t *out, cnp_err *err)
{
    dnnl_memory_desc_t md;
    dnnl_dims_t dims = {n, c, h, w};
    dnnl_status_t st = dnnl_memory_desc_init_by_tag(&md, 4, dims, dnnl_f32, tag);
    if (st == dnnl_success)
        st = dnnl_memory_create(out, &md, e->eng, DNNL_MEMORY_NONE);
    return dg_check(st, "memory", err);
}

/* The arena at least as large as p needs (contents zero when grown). */
static cnp_status arena_reserve(det_dnnl_graph *e, size_t floats, cnp_err *err)
{
    if (floats <= e->arena_floats)
        return CNP_OK;
    free(e->arena);
    e->arena_floats = 0;
    size_t bytes = (floats * sizeof(float) + 63) / 64 * 64;
    e->arena = aligned_alloc(64, bytes);
    if (!e->arena) {
        cnp_err_set(err, "CPU backend: out of memory for %zu MiB of activations", bytes >> 20);
        return CNP_ERR_NOMEM;
    }
    memset(e->arena, 0, bytes);
    e->arena_floats = floats;
    return CNP_OK;
}

cnp_status dg_plan_create(det_dnnl_graph *e, const float *input, int n, int h, int w,
                          dg_plan **out, cnp_err *err)
{
    const det_graph *g = e->g;
    int nn = g->n_nodes;
    *out = NULL;
    dg_plan *p = calloc(1, sizeof *p);
    if (p) {
        p->shape = malloc(sizeof(int) * 3 * (size_t)nn);
        p->nodes = calloc((size_t)nn, sizeof *p->nodes);
    }
    if (!p || !p->shape || !p->nodes) {
        dg_plan_free(e, p);
        cnp_err_set(err, "CPU backend: out of memory");
        return CNP_ERR_NOMEM;
    }
    p->n = n;
    p->h = h;
    p->w = w;
    int *c = p->shape, *hh = c + nn, *ww = c + 2 * nn;
    cnp_status result = det_graph_ref_shapes(g, h, w, c, hh, ww, err);
    bool block_input = false;
    for (int i = 1; result == CNP_OK && i < nn; i++) {
        const det_node *nd = &g->nodes[i];
        if (nd->in2 == 0) {
            cnp_err_set(err, "CPU backend: node %s reads the input as its second operand",
                        nd->name);
            result = CNP_ERR_FORMAT;
        }
        block_input |= nd->in == 0 && nd->op != DET_OP_CONV;
    }
    for (int i = 0; result == CNP_OK && i < nn; i++) {
        p->nodes[i].floats = i == 0 && !block_input ? 0 : dg_blocked_floats(n, c[i], hh[i], ww[i]);
        result = blocked_mem(e, n, c[i], hh[i], ww[i], dnnl_nChw16c, &p->nodes[i].mem, err);
    }
    if (result == CNP_OK)
        result = blocked_mem(e, n, c[0], h, w, dnnl_nchw, &p->in_plain, err);
    if (result == CNP_OK && block_input) {
        const dnnl_memory_desc_t *from = NULL, *to = NULL;
        dnnl_memory_get_memory_desc(p->in_plain, &from);
        dnnl_memory_get_memory_desc(p->nodes[0].mem, &to);
        dnnl_status_t st = dg_reorder_create(e, from, to, &p->in_block);
        result = dg_check(st, "input reorder", err);
    }
    if (result == CNP_OK)
        result = plan_slots(e, p, err);
    if (result == CNP_OK)
        result = arena_reserve(e, p->arena_floats, err);
    /* The convolutions last: measuring runs them on the arena. */
    if (result == CNP_OK)
        result = dg_plan_bind(e, p, input, err);
    for (int i = 1; result == CNP_OK && i < nn; i++)
        if (g->nodes[i].op == DET_OP_CONV)
            result = conv_plan(e, p, i, err);
    if (result != CNP_OK) {
        dg_plan_free(e, p);
        return result;
    }
    *out = p;
    return CNP_OK;
}

void dg_plan_free(const det_dnnl_graph *e, dg_plan *p)
{
    if (!p)
        return;
    for (int i = 0; p->nodes && i < e->g->n_nodes; i++) {
        conv_drop(&p->nodes[i]);
        dnnl_memory_destroy(p->nodes[i].mem);
        dnnl_primitive_destroy(p->nodes[i].to_plain);
        dnnl_memory_destroy(p->nodes[i].plain);
    }
    dnnl_memory_destroy(p->in_plain);
    dnnl_primitive_destroy(p->in_block);
    free(p->nodes);
    free(p->shape);
    free(p);
}

cnp_status dg_plan_bind(det_dnnl_graph *e, dg_plan *p, const float *input, cnp_err *err)
{
    dnnl_status_t st = dnnl_memory_set_data_handle(p->in_plain, (void *)input);
    for (int i = 0; st == dnnl_success && i < e->g->n_nodes; i++)
        st = dnnl_memory_set_data_handle(p->nodes[i].mem, e->arena + p->nodes[i].off);
    return dg_check(st, "memory", err);
}

cnp_status dg_plan_conv(det_dnnl_graph *e, dg_plan *p, int i, cnp_err *err)
{
    const det_node *n = &e->g->nodes[i];
    dg_node *d = &p->nodes[i];
    if (n->in2 >= 0 && !d->in_place)
        memcpy(e->arena + d->off, e->arena + p->nodes[n->in2].off, d->floats * sizeof(float));
    dnnl_exec_arg_t args[4] = {
        {DNNL_ARG_SRC, n->in == 0 ? p->in_plain : p->nodes[n->in].mem},
        {DNNL_ARG_WEIGHTS, d->wmem},
        {DNNL_ARG_BIAS, d->bias},
        {DNNL_ARG_DST, d->mem},
    };
    cnp_status result = dg_check(dg_execute(e, d->prim, 4, args), "convolution", err);
    if (result != CNP_OK)
        cnp_err_prefix(err, "node %s", n->name);
    return result;
}
