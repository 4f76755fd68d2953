/* Winograd F(2x2, 3x3) convolutions: the C reference, the device run
 * (kernels/winograd.cl + CLBlastSgemmStridedBatched) and the graph
 * engine's use of it (winograd.h). */
#include <clblast_c.h>
#include <stdlib.h>
#include <string.h>

#include "detect/engine/graph_engine_internal.h"
#include "detect/engine/winograd.h"

bool det_wino_applies(const det_node *n)
{
    return n->op == DET_OP_CONV && n->k == 3 && n->stride == 1 && n->dilation == 1 &&
           n->pad >= 0 && n->pad <= 2;
}

void det_wino_scratch(int c, int o, int oh, int ow, int n, size_t *v, size_t *m)
{
    size_t p = (size_t)n * (size_t)((oh + 1) / 2) * (size_t)((ow + 1) / 2);
    *v = 16 * (size_t)c * p;
    *m = 16 * (size_t)o * p;
}

void det_wino_filters(const float *weight, int o, int c, float *u)
{
    for (int oc = 0; oc < o; oc++)
        for (int ic = 0; ic < c; ic++) {
            const float *g = weight + ((size_t)oc * c + ic) * 9;
            float t[4][3], r[4][4];
            for (int j = 0; j < 3; j++) { /* G g */
                t[0][j] = g[j];
                t[1][j] = 0.5f * (g[j] + g[3 + j] + g[6 + j]);
                t[2][j] = 0.5f * (g[j] - g[3 + j] + g[6 + j]);
                t[3][j] = g[6 + j];
            }
            for (int i = 0; i < 4; i++) { /* (G g) G^T */
                r[i][0] = t[i][0];
                r[i][1] = 0.5f * (t[i][0] + t[i][1] + t[i][2]);
                r[i][2] = 0.5f * (t[i][0] - t[i][1] + t[i][2]);
                r[i][3] = t[i][2];
            }
            for (int e = 0; e < 16; e++)
                u[((size_t)e * o + oc) * c + ic] = r[e / 4][e % 4];
        }
}

void det_wino_input_tile(const float *in, int h, int w, int pad, int ty, int tx, float v[16])
{
    float d[4][4];
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++) {
            int y = ty * 2 - pad + i, x = tx * 2 - pad + j;
            d[i][j] = y >= 0 && y < h && x >= 0 && x < w ? in[(size_t)y * w + x] : 0.0f;
        }
    float t[4][4];
    for (int j = 0; j < 4; j++) {
        t[0][j] = d[0][j] - d[2][j];
        t[1][j] = d[1][j] + d[2][j];
        t[2][j] = d[2][j] - d[1][j];
        t[3][j] = d[1][j] - d[3][j];
    }
    for (int i = 0; i < 4; i++) {
        v[i * 4 + 0] = t[i][0] - t[i][2];
        v[i * 4 + 1] = t[i][1] + t[i][2];
        v[i * 4 + 2] = t[i][2] - t[i][1];
        v[i * 4 + 3] = t[i][1] - t[i][3];
    }
}

void det_wino_output_tile(const float a[4][4], float bias, const float *add, bool relu,
                          float *out, int oh, int ow, int ty, int tx)
{
    float t[2][4];
    for (int j = 0; j < 4; j++) {
        t[0][j] = a[0][j] + a[1][j] + a[2][j];
        t[1][j] = a[1][j] - a[2][j] - a[3][j];
    }
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 2; j++) {
            int y = ty * 2 + i, x = tx * 2 + j;
            if (y >= oh || x >= ow)
                continue;
            float r = j == 0 ? t[i][0] + t[i][1] + t[i][2] : t[i][1] - t[i][2] - t[i][3];
            size_t at = (size_t)y * ow + x;
            float val = r + bias;
            if (add)
                val += add[at];
            out[at] = relu && val < 0.0f ? 0.0f : val;
        }
}

void det_wino_ref(const float *in, const float *weight, const float *bias, const float *add,
                  bool relu, float *out, int c, int o, int n, int h, int w, int pad)
{
    int oh = h + 2 * pad - 2, ow = w + 2 * pad - 2, th = (oh + 1) / 2, tw = (ow + 1) / 2;
    float *u = malloc(sizeof(float) * 16 * (size_t)o * c), *v = malloc(sizeof(float) * 16 * (size_t)c);
    if (!u || !v) {
        free(u);
        free(v);
        return;
    }
    det_wino_filters(weight, o, c, u);
    for (int b = 0; b < n; b++)
        for (int ty = 0; ty < th; ty++)
            for (int tx = 0; tx < tw; tx++) {
                for (int ic = 0; ic < c; ic++) {
                    float t[16];
                    det_wino_input_tile(in + ((size_t)ic * n + b) * h * w, h, w, pad, ty, tx, t);
                    for (int e = 0; e < 16; e++)
                        v[(size_t)e * c + ic] = t[e];
                }
                for (int oc = 0; oc < o; oc++) {
                    float a[4][4];
                    for (int e = 0; e < 16; e++) {
                        float s = 0.0f;
                        for (int ic = 0; ic < c; ic++)
                            s += u[((size_t)e * o + oc) * c + ic] * v[(size_t)e * c + ic];
                        a[e / 4][e % 4] = s;
                    }
                    size_t plane = ((size_t)oc * n + b) * oh * ow;
                    det_wino_output_tile(a, bias[oc], add ? add + plane : NULL, relu, out + plane,
                                         oh, ow, ty, tx);
                }
            }
    free(u);
    free(v);
}

cnp_status det_wino_init(det_wino *w, ocl_ctx *ctx, cnp_err *err)
{
    memset(w, 0, sizeof *w);
    cnp_status result = ocl_kernel_create(ctx, "winograd", "", "wino_input", &w->input, err);
    if (result == CNP_OK)
        result = ocl_kernel_create(ctx, "winograd", "", "wino_output", &w->output, err);
    return result;
}

cnp_status det_wino_reserve(det_wino *w, cl_context cl, size_t v, size_t m, cnp_err *err)
{
    cl_int rc = CL_SUCCESS;
    if (v > w->v_floats) {
        ocl_buffer_release(w->v);
        w->v = ocl_buffer_create(cl, CL_MEM_READ_WRITE, v * sizeof(float), NULL, &rc);
        w->v_floats = rc == CL_SUCCESS ? v : 0;
        if (rc != CL_SUCCESS)
            return ocl_check(rc, "Winograd transformed inputs", err);
    }
    if (m > w->m_floats) {
        ocl_buffer_release(w->m);
        w->m = ocl_buffer_create(cl, CL_MEM_READ_WRITE, m * sizeof(float), NULL, &rc);
        w->m_floats = rc == CL_SUCCESS ? m : 0;
    }
    return ocl_check(rc, "Winograd products", err);
}

void det_wino_release(det_wino *w)
{
    if (w->input)
        clReleaseKernel(w->input);
    if (w->output)
        clReleaseKernel(w->output);
    ocl_buffer_release(w->v);
    ocl_buffer_release(w->m);
    memset(w, 0, sizeof *w);
}

cnp_status det_wino_upload(cl_context cl, const float *weight, int o, int c, cl_mem *u,
                           cnp_err *err)
{
    size_t bytes = sizeof(float) * 16 * (size_t)o * c;
    float *host = malloc(bytes);
    if (!host) {
        cnp_err_set(err, "out of memory transforming %d x %d filters", o, c);
        return CNP_ERR_NOMEM;
    }
    det_wino_filters(weight, o, c, host);
    cl_int rc;
    *u = ocl_buffer_create(cl, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, bytes, host, &rc);
    free(host);
    return ocl_check(rc, "Winograd filters", err);
}

cnp_status det_wino_run(det_wino *w, cl_command_queue q, cl_mem in, cl_mem u, cl_mem bias,
                        cl_mem add, bool relu, cl_mem out, int c, int o, int n, int h, int wd,
                        int pad, cnp_err *err)
{
    cl_int C = c, O = o, N = n, H = h, W = wd, P = pad, OH = h + 2 * pad - 2,
           OW = wd + 2 * pad - 2, TH = (OH + 1) / 2, TW = (OW + 1) / 2;
    size_t tiles = (size_t)N * TH * TW, need_v, need_m;
    /* The kernels' work-items: runs of WINO_RUN (8) consecutive tiles of a tile row. */
    size_t runs = (size_t)N * TH * ((TW + 7) / 8);
    det_wino_scratch(c, o, OH, OW, n, &need_v, &need_m);
    if (OH < 1 || OW < 1 || need_v > w->v_floats || need_m > w->m_floats) {
        cnp_err_set(err, "Winograd %d -> %d channels on %d x %dx%d (pad %d): scratch of %zu + "
                    "%zu floats, has %zu + %zu", c, o, n, wd, h, pad, need_v, need_m,
                    w->v_floats, w->m_floats);
        return CNP_ERR_INVALID;
    }
    cnp_status result = OCL_SET_ARGS(w->input, "wino_input", err, OCL_ARG(in), OCL_ARG(w->v),
                                     OCL_ARG(C), OCL_ARG(N), OCL_ARG(H), OCL_ARG(W), OCL_ARG(P),
                                     OCL_ARG(TH), OCL_ARG(TW));
    size_t gin[2] = {ocl_round_up(runs, 64), (size_t)c};
    if (result == CNP_OK)
        result = ocl_enqueue(q, w->input, 2, gin, NULL, "wino_input", err);
    if (result != CNP_OK)
        return result;
    CLBlastStatusCode st = CLBlastSgemmStridedBatched(
        CLBlastLayoutRowMajor, CLBlastTransposeNo, CLBlastTransposeNo, (size_t)o, tiles,
        (size_t)c, 1.0f, u, 0, (size_t)c, (size_t)o * c, w->v, 0, tiles, (size_t)c * tiles,
        0.0f, w->m, 0, tiles, (size_t)o * tiles, 16, &q, NULL);
    if (st != CLBlastSuccess) {
        cnp_err_set(err, "Winograd: CLBlastSgemmStridedBatched(16 x %d x %zu x %d) failed: "
                    "status %d", o, tiles, c, (int)st);
        return CNP_ERR_OPENCL;
    }
    cl_int has_add = add != NULL, r = relu;
    cl_mem a = add ? add : out;
    result = OCL_SET_ARGS(w->output, "wino_output", err, OCL_ARG(w->m), OCL_ARG(bias),
                          OCL_ARG(a), OCL_ARG(has_add), OCL_ARG(r), OCL_ARG(out), OCL_ARG(O),
                          OCL_ARG(N), OCL_ARG(OH), OCL_ARG(OW), OCL_ARG(TH), OCL_ARG(TW));
    size_t gout[2] = {ocl_round_up(runs, 64), (size_t)o};
    if (result == CNP_OK)
        result = ocl_enqueue(q, w->output, 2, gout, NULL, "wino_output", err);
    return result;
}

/* ---- the graph engine's use ---------------------------------------------- */

cnp_status ge_wino_prepare(det_graph_engine *e, cnp_err *err)
{
    const det_graph *g = e->g;
    int nn = g->n_nodes, any = 0;
    for (int i = 0; i < nn; i++)
        any += det_wino_applies(&g->nodes[i]);
    if (!any)
        return CNP_OK;
    cnp_status result = det_wino_init(&e->wino, e->ctx, err);
    for (int i = 0; result == CNP_OK && i < nn; i++) {
        const det_node *n = &g->nodes[i];
        gnode *gn = &e->nodes[i];
        if (!det_wino_applies(n))
            continue;
        if (gn->owns_weights) {
            result = det_wino_upload(e->cl, n->weight, n->cout, n->cin, &gn->wino_u, err);
            if (result == CNP_OK)
                e->device_bytes += sizeof(float) * 16 * (size_t)n->cout * n->cin;
        } else
            for (int j = 0; j < i; j++)
                if (e->nodes[j].owns_weights && e->nodes[j].weight == gn->weight)
                    gn->wino_u = e->nodes[j].wino_u;
    }
    /* Scratch for the planned sizes (both orientations of a retina's). */
    int *s = malloc(sizeof(int) * 3 * (size_t)nn);
    if (!s && result == CNP_OK) {
        cnp_err_set(err, "graph engine: out of memory");
        result = CNP_ERR_NOMEM;
    }
    size_t v = 0, m = 0;
    int sizes[2][2] = {{e->plan_h, e->plan_w}, {e->plan_w, e->plan_h}};
    for (int k = 0; result == CNP_OK && k < (g->input.kind == DET_INPUT_RETINA ? 2 : 1); k++) {
        result = det_graph_ref_shapes(g, sizes[k][0], sizes[k][1], s, s + nn, s + 2 * nn, err);
        for (int i = 0; result == CNP_OK && i < nn; i++) {
            if (!e->nodes[i].wino_u)
                continue;
            size_t nv, nm;
            det_wino_scratch(g->nodes[i].cin, g->nodes[i].cout, s[nn + i], s[2 * nn + i],
                             e->max_batch, &nv, &nm);
            v = nv > v ? nv : v;
            m = nm > m ? nm : m;
        }
    }
    free(s);
    if (result == CNP_OK)
        result = det_wino_reserve(&e->wino, e->cl, v, m, err);
    if (result == CNP_OK)
        e->device_bytes += (v + m) * sizeof(float);
    return result;
}

cnp_status ge_run_conv_wino(det_graph_engine *e, int i, cnp_err *err)
{
    const det_node *n = &e->g->nodes[i];
    int nn = e->g->n_nodes, *h = e->shape + nn, *w = e->shape + 2 * nn;
    cnp_status result = det_wino_run(&e->wino, e->q, ge_node_buf(e, n->in), e->nodes[i].wino_u,
                                     e->nodes[i].bias, n->in2 >= 0 ? ge_node_buf(e, n->in2) : NULL,
                                     n->act == DET_ACT_RELU, ge_node_buf(e, i), n->cin, n->cout,
                                     e->batch, h[n->in], w[n->in], n->pad, err);
    ge_stamp(e, e->times ? &e->times->gemm[i] : NULL);
    return result;
}

void ge_wino_free(det_graph_engine *e)
{
    for (int i = 0; e->nodes && i < e->g->n_nodes; i++)
        if (e->nodes[i].owns_weights)
            ocl_buffer_release(e->nodes[i].wino_u);
    det_wino_release(&e->wino);
}
