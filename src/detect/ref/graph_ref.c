/* The C reference of the graph's nodes (det_graph, graph.h) on CHW float
 * tensors, with PyTorch's semantics: Conv2d (groups 1), MaxPool2d (floor
 * mode, -inf padding), nearest upsampling's index rule, ReLU. Straight
 * loops in double-free float; the engine (kernels/graph.cl + CLBlast) sums
 * in another order, so tests compare within a tolerance. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "detect/graph.h"

static int conv_out(int n, int k, int s, int p, int d)
{
    int span = n + 2 * p - d * (k - 1) - 1;
    return span < 0 ? 0 : span / s + 1;
}

cnp_status det_graph_ref_shapes(const det_graph *g, int in_h, int in_w, int *c, int *h, int *w,
                                cnp_err *err)
{
    for (int i = 0; i < g->n_nodes; i++) {
        const det_node *n = &g->nodes[i];
        bool in_ok = i > 0 && n->in >= 0 && n->in < i;
        if (n->op == DET_OP_INPUT) {
            if (i != 0) {
                cnp_err_set(err, "graph node %s (%d): input node not first", n->name, i);
                return CNP_ERR_FORMAT;
            }
            c[i] = g->input.kind == DET_INPUT_CROWN ? g->input.channels : 3;
            h[i] = in_h;
            w[i] = in_w;
            continue;
        }
        if (!in_ok || (n->op != DET_OP_CONV && n->op != DET_OP_MAXPOOL &&
                       n->op != DET_OP_UPSAMPLE_ADD && n->op != DET_OP_RELU)) {
            cnp_err_set(err, "graph node %s (%d): bad op %d or input %d", n->name, i, (int)n->op,
                        n->in);
            return CNP_ERR_FORMAT;
        }
        int ic = c[n->in], ih = h[n->in], iw = w[n->in];
        bool has2 = n->in2 >= 0;
        if (has2 && n->in2 >= i) {
            cnp_err_set(err, "graph node %s (%d): second input %d is not earlier", n->name, i,
                        n->in2);
            return CNP_ERR_FORMAT;
        }
        switch (n->op) {
        case DET_OP_CONV:
            if (n->cin != ic || n->cout <= 0 || n->k <= 0 || n->stride <= 0 || n->pad < 0 ||
                n->dilation <= 0 || !n->weight || !n->bias) {
                cnp_err_set(err, "graph node %s (%d): conv %d->%d k %d s %d p %d d %d on %d "
                            "input channels", n->name, i, n->cin, n->cout, n->k, n->stride,
                            n->pad, n->dilation, ic);
                return CNP_ERR_FORMAT;
            }
            c[i] = n->cout;
            h[i] = conv_out(ih, n->k, n->stride, n->pad, n->dilation);
            w[i] = conv_out(iw, n->k, n->stride, n->pad, n->dilation);
            if (has2 && (c[n->in2] != c[i] || h[n->in2] != h[i] || w[n->in2] != w[i])) {
                cnp_err_set(err, "graph node %s (%d): residual %dx%dx%d differs from the "
                            "output %dx%dx%d", n->name, i, c[n->in2], h[n->in2], w[n->in2],
                            c[i], h[i], w[i]);
                return CNP_ERR_FORMAT;
            }
            break;
        case DET_OP_MAXPOOL:
            if (n->k <= 0 || n->stride <= 0 || n->pad < 0 || 2 * n->pad > n->k) {
                cnp_err_set(err, "graph node %s (%d): maxpool k %d s %d p %d", n->name, i, n->k,
                            n->stride, n->pad);
                return CNP_ERR_FORMAT;
            }
            c[i] = ic;
            h[i] = conv_out(ih, n->k, n->stride, n->pad, 1);
            w[i] = conv_out(iw, n->k, n->stride, n->pad, 1);
            break;
        case DET_OP_UPSAMPLE_ADD:
            if (!has2 || c[n->in2] != ic || h[n->in2] <= 0 || w[n->in2] <= 0) {
                cnp_err_set(err, "graph node %s (%d): upsample_add needs a top of %d channels",
                            n->name, i, ic);
                return CNP_ERR_FORMAT;
            }
            /* fallthrough */
        default:
            c[i] = ic;
            h[i] = ih;
            w[i] = iw;
        }
        if (h[i] <= 0 || w[i] <= 0) {
            cnp_err_set(err, "graph node %s (%d): empty output for a %dx%d input", n->name, i,
                        in_h, in_w);
            return CNP_ERR_INVALID;
        }
    }
    return CNP_OK;
}

void det_graph_ref_conv(const det_node *n, const float *in, int h, int w, const float *add,
                        float *out, int oh, int ow)
{
    int k = n->k, s = n->stride, p = n->pad, d = n->dilation;
    size_t plane = (size_t)oh * ow;
    for (int co = 0; co < n->cout; co++) {
        float *o = out + (size_t)co * plane;
        for (size_t i = 0; i < plane; i++)
            o[i] = 0.0f;
        for (int ci = 0; ci < n->cin; ci++) {
            const float *src = in + (size_t)ci * h * w;
            const float *wt = n->weight + ((size_t)co * n->cin + ci) * k * k;
            for (int ky = 0; ky < k; ky++)
                for (int kx = 0; kx < k; kx++) {
                    float wv = wt[ky * k + kx];
                    for (int y = 0; y < oh; y++) {
                        int iy = y * s - p + ky * d;
                        if (iy < 0 || iy >= h)
                            continue;
                        for (int x = 0; x < ow; x++) {
                            int ix = x * s - p + kx * d;
                            if (ix >= 0 && ix < w)
                                o[(size_t)y * ow + x] += wv * src[(size_t)iy * w + ix];
                        }
                    }
                }
        }
        for (size_t i = 0; i < plane; i++) {
            float v = o[i] + n->bias[co];
            if (add)
                v += add[(size_t)co * plane + i];
            o[i] = n->act == DET_ACT_RELU && v < 0.0f ? 0.0f : v;
        }
    }
}

void det_graph_ref_maxpool(const det_node *n, const float *in, int c, int h, int w, float *out,
                           int oh, int ow)
{
    for (int ch = 0; ch < c; ch++)
        for (int y = 0; y < oh; y++)
            for (int x = 0; x < ow; x++) {
                float m = -INFINITY;
                for (int ky = 0; ky < n->k; ky++)
                    for (int kx = 0; kx < n->k; kx++) {
                        int iy = y * n->stride - n->pad + ky, ix = x * n->stride - n->pad + kx;
                        if (iy >= 0 && iy < h && ix >= 0 && ix < w)
                            m = fmaxf(m, in[((size_t)ch * h + iy) * w + ix]);
                    }
                out[((size_t)ch * oh + y) * ow + x] = m;
            }
}

/* ATen's nearest rule: src = min(floor(dst * (float)in / out), in - 1). */
static int nearest_src(int dst, int in, int out)
{
    float scale = (float)in / (float)out;
    int s = (int)floorf((float)dst * scale);
    return s < in - 1 ? s : in - 1;
}

void det_graph_ref_upsample_add(const float *in, const float *top, int c, int h, int w, int th,
                                int tw, float *out)
{
    for (int ch = 0; ch < c; ch++)
        for (int y = 0; y < h; y++) {
            int sy = nearest_src(y, th, h);
            for (int x = 0; x < w; x++) {
                int sx = nearest_src(x, tw, w);
                size_t i = ((size_t)ch * h + y) * w + x;
                out[i] = in[i] + top[((size_t)ch * th + sy) * tw + sx];
            }
        }
}

/* Shapes and tensors of every node of g on a transformed input: c, hh, ww
 * (n_nodes each) and t[i] for the nodes whose last use (last[i], n_nodes:
 * kept) is not passed; the rest freed on the way. On failure the caller
 * still frees every t[i]. */
static cnp_status run_nodes(const det_graph *g, const float *input, int h, int w,
                            const int *last, int *c, int *hh, int *ww, float **t, cnp_err *err)
{
    int nn = g->n_nodes;
    cnp_status result = det_graph_ref_shapes(g, h, w, c, hh, ww, err);
    if (result != CNP_OK)
        return result;
    for (int i = 0; i < nn; i++) {
        const det_node *n = &g->nodes[i];
        size_t sz = (size_t)c[i] * hh[i] * ww[i];
        t[i] = malloc(sz * sizeof(float));
        if (!t[i]) {
            cnp_err_set(err, "graph reference: out of memory for node %s", n->name);
            return CNP_ERR_NOMEM;
        }
        const float *a = i ? t[n->in] : NULL, *b = i && n->in2 >= 0 ? t[n->in2] : NULL;
        switch (n->op) {
        case DET_OP_INPUT:
            memcpy(t[i], input, sz * sizeof(float));
            break;
        case DET_OP_CONV:
            det_graph_ref_conv(n, a, hh[n->in], ww[n->in], b, t[i], hh[i], ww[i]);
            break;
        case DET_OP_MAXPOOL:
            det_graph_ref_maxpool(n, a, c[i], hh[n->in], ww[n->in], t[i], hh[i], ww[i]);
            break;
        case DET_OP_UPSAMPLE_ADD:
            det_graph_ref_upsample_add(a, b, c[i], hh[i], ww[i], hh[n->in2], ww[n->in2], t[i]);
            break;
        case DET_OP_RELU:
            for (size_t j = 0; j < sz; j++)
                t[i][j] = a[j] < 0.0f ? 0.0f : a[j];
            break;
        }
        for (int j = 0; j < i; j++)
            if (t[j] && last[j] == i) {
                free(t[j]);
                t[j] = NULL;
            }
    }
    return CNP_OK;
}

cnp_status det_graph_ref_run_raw(const det_graph *g, const float *input, int h, int w,
                                 float **out, int *oc, int *oh, int *ow, cnp_err *err)
{
    *out = NULL;
    int nn = g->n_nodes;
    int *c = malloc(sizeof(int) * 4 * (size_t)nn);
    float **t = calloc((size_t)nn, sizeof *t);
    cnp_status result = CNP_ERR_NOMEM;
    if (!c || !t) {
        cnp_err_set(err, "graph reference: out of memory");
        goto out;
    }
    int *hh = c + nn, *ww = c + 2 * nn, *last = c + 3 * nn;
    /* Last node reading each tensor; the graph's output lives to the end. */
    det_graph_last_use(g, false, last);
    last[nn - 1] = nn;
    if ((result = run_nodes(g, input, h, w, last, c, hh, ww, t, err)) == CNP_OK) {
        *out = t[nn - 1];
        t[nn - 1] = NULL;
        *oc = c[nn - 1];
        *oh = hh[nn - 1];
        *ow = ww[nn - 1];
    }
out:
    for (int i = 0; t && i < nn; i++)
        free(t[i]);
    free(t);
    free(c);
    return result;
}

cnp_status det_graph_ref_forward(const det_graph *g, const float *input, int h, int w,
                                 float **cls, float **box, int *fh, int *fw, cnp_err *err)
{
    const det_retina *r = &g->retina;
    int nn = g->n_nodes;
    int *c = malloc(sizeof(int) * 4 * (size_t)nn);
    float **t = calloc((size_t)nn, sizeof *t);
    if (!c || !t) {
        free(c);
        free(t);
        cnp_err_set(err, "graph reference: out of memory");
        return CNP_ERR_NOMEM;
    }
    int *hh = c + nn, *ww = c + 2 * nn, *last = c + 3 * nn;
    /* Last node reading each tensor; head outputs live to the end. */
    det_graph_last_use(g, true, last);
    cnp_status result = run_nodes(g, input, h, w, last, c, hh, ww, t, err);
    if (result != CNP_OK)
        goto out;
    for (int l = 0; l < r->n_levels; l++) {
        int ci = r->cls_node[l], bi = r->box_node[l];
        if (hh[ci] != hh[bi] || ww[ci] != ww[bi]) {
            cnp_err_set(err, "graph reference: level %d heads %s and %s differ in size", l,
                        g->nodes[ci].name, g->nodes[bi].name);
            result = CNP_ERR_FORMAT;
            goto out;
        }
        fh[l] = hh[ci];
        fw[l] = ww[ci];
    }
    for (int l = 0; l < r->n_levels; l++) {
        cls[l] = t[r->cls_node[l]];
        box[l] = t[r->box_node[l]];
        t[r->cls_node[l]] = t[r->box_node[l]] = NULL;
        if (r->cls_node[l] == r->box_node[l]) /* not expected; keep ownership single */
            box[l] = NULL;
    }
out:
    for (int i = 0; i < nn; i++)
        free(t[i]);
    free(t);
    free(c);
    return result;
}
