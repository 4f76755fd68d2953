/* Winograd F(2x2, 3x3) and F(4x4, 3x3) convolutions: the C reference, the device run
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

size_t det_wino_tile_stride(size_t tiles)
{
    return ocl_round_up(tiles, 128);
}

void det_wino_scratch(int m, int c, int o, int oh, int ow, int n, size_t *v, size_t *mf)
{
    size_t a2 = (size_t)(m + 2) * (m + 2);
    size_t p = det_wino_tile_stride((size_t)n * (size_t)((oh + m - 1) / m) *
                                    (size_t)((ow + m - 1) / m));
    *v = a2 * (size_t)c * p;
    *mf = a2 * (size_t)o * p;
}

/* G g of F(2x2): column j of the 3 x 3 filter g into rows of t[4]. */
static void filter2(const float g[3], float t[4])
{
    t[0] = g[0];
    t[1] = 0.5f * (g[0] + g[1] + g[2]);
    t[2] = 0.5f * (g[0] - g[1] + g[2]);
    t[3] = g[2];
}

/* G g of F(4x4), in double. */
static void filter4(const double g[3], double t[6])
{
    t[0] = g[0] / 4.0;
    t[1] = -(g[0] + g[1] + g[2]) / 6.0;
    t[2] = -(g[0] - g[1] + g[2]) / 6.0;
    t[3] = g[0] / 24.0 + g[1] / 12.0 + g[2] / 6.0;
    t[4] = g[0] / 24.0 - g[1] / 12.0 + g[2] / 6.0;
    t[5] = g[2];
}

void det_wino_filters(int m, const float *weight, int o, int c, float *u)
{
    int a = m + 2;
    for (int oc = 0; oc < o; oc++)
        for (int ic = 0; ic < c; ic++) {
            const float *g = weight + ((size_t)oc * c + ic) * 9;
            float r[DET_WINO_A_MAX * DET_WINO_A_MAX];
            if (m == 2) {
                float t[3][4], col[3], row[4];
                for (int j = 0; j < 3; j++) { /* G g: column by column */
                    col[0] = g[j], col[1] = g[3 + j], col[2] = g[6 + j];
                    filter2(col, t[j]);
                }
                for (int i = 0; i < 4; i++) { /* (G g) G^T: row by row */
                    float gi[3] = {t[0][i], t[1][i], t[2][i]};
                    filter2(gi, row);
                    for (int j = 0; j < 4; j++)
                        r[i * 4 + j] = row[j];
                }
            } else {
                double t[3][6], col[3], row[6];
                for (int j = 0; j < 3; j++) {
                    col[0] = g[j], col[1] = g[3 + j], col[2] = g[6 + j];
                    filter4(col, t[j]);
                }
                for (int i = 0; i < 6; i++) {
                    double gi[3] = {t[0][i], t[1][i], t[2][i]};
                    filter4(gi, row);
                    for (int j = 0; j < 6; j++)
                        r[i * 6 + j] = (float)row[j];
                }
            }
            for (int e = 0; e < a * a; e++)
                u[((size_t)e * c + ic) * o + oc] = r[e];
        }
}

/* B^T x of F(2x2) and of F(4x4) on one column or row x: the kernels'
 * operations (kernels/winograd.cl, WINO2_BT / WINO4_BT) in their order. */
static void bt2(const float x[4], float y[4])
{
    y[0] = x[0] - x[2];
    y[1] = x[1] + x[2];
    y[2] = x[2] - x[1];
    y[3] = x[1] - x[3];
}

static void bt4(const float x[6], float y[6])
{
    y[0] = (4.0f * x[0] - 5.0f * x[2]) + x[4];
    y[1] = (x[3] + x[4]) - 4.0f * (x[1] + x[2]);
    y[2] = (x[4] - x[3]) + 4.0f * (x[1] - x[2]);
    y[3] = (x[4] - x[2]) + 2.0f * (x[3] - x[1]);
    y[4] = (x[4] - x[2]) - 2.0f * (x[3] - x[1]);
    y[5] = (4.0f * x[1] - 5.0f * x[3]) + x[5];
}

/* A^T x of F(2x2) and F(4x4) (WINO2_AT / WINO4_AT). */
static void at2(const float x[4], float y[2])
{
    y[0] = x[0] + x[1] + x[2];
    y[1] = x[1] - x[2] - x[3];
}

static void at4(const float x[6], float y[4])
{
    float s12 = x[1] + x[2], d12 = x[1] - x[2], s34 = x[3] + x[4], d34 = x[3] - x[4];
    y[0] = (x[0] + s12) + s34;
    y[1] = d12 + 2.0f * d34;
    y[2] = s12 + 4.0f * s34;
    y[3] = (d12 + 8.0f * d34) + x[5];
}

void det_wino_input_tile(int m, const float *in, int h, int w, int pad, int ty, int tx,
                         float *v)
{
    enum { A = DET_WINO_A_MAX };
    int a = m + 2;
    float d[A][A], t[A][A], x[A] = {0}, y[A] = {0};
    for (int i = 0; i < a; i++)
        for (int j = 0; j < a; j++) {
            int yy = ty * m - pad + i, xx = tx * m - pad + j;
            d[i][j] = yy >= 0 && yy < h && xx >= 0 && xx < w ? in[(size_t)yy * w + xx] : 0.0f;
        }
    for (int j = 0; j < a; j++) { /* B^T d: column by column */
        for (int i = 0; i < a; i++)
            x[i] = d[i][j];
        (m == 2 ? bt2 : bt4)(x, y);
        for (int i = 0; i < a; i++)
            t[i][j] = y[i];
    }
    for (int i = 0; i < a; i++) /* (B^T d) B: row by row */
        (m == 2 ? bt2 : bt4)(t[i], v + i * a);
}

void det_wino_output_tile(int m, const float *p, float bias, const float *add, bool relu,
                          float *out, int oh, int ow, int ty, int tx)
{
    enum { A = DET_WINO_A_MAX };
    int a = m + 2;
    float t[A][A] = {{0}}, x[A] = {0}, y[A] = {0};
    for (int j = 0; j < a; j++) { /* A^T p: column by column */
        for (int i = 0; i < a; i++)
            x[i] = p[i * a + j];
        (m == 2 ? at2 : at4)(x, y);
        for (int i = 0; i < m; i++)
            t[i][j] = y[i];
    }
    for (int i = 0; i < m; i++) { /* (A^T p) A: row by row */
        (m == 2 ? at2 : at4)(t[i], y);
        for (int j = 0; j < m; j++) {
            int yy = ty * m + i, xx = tx * m + j;
            if (yy >= oh || xx >= ow)
                continue;
            size_t at = (size_t)yy * ow + xx;
            float val = y[j] + bias;
            if (add)
                val += add[at];
            out[at] = relu && val < 0.0f ? 0.0f : val;
        }
    }
}

void det_wino_ref(int m, const float *in, const float *weight, const float *bias,
                  const float *add, bool relu, float *out, int c, int o, int n, int h, int w,
                  int pad)
{
    int a2 = (m + 2) * (m + 2), oh = h + 2 * pad - 2, ow = w + 2 * pad - 2;
    int th = (oh + m - 1) / m, tw = (ow + m - 1) / m;
    float *u = malloc(sizeof(float) * a2 * (size_t)o * c), *v = malloc(sizeof(float) * a2 * (size_t)c);
    if (!u || !v) {
        free(u);
        free(v);
        return;
    }
    det_wino_filters(m, weight, o, c, u);
    for (int b = 0; b < n; b++)
        for (int ty = 0; ty < th; ty++)
            for (int tx = 0; tx < tw; tx++) {
                for (int ic = 0; ic < c; ic++) {
                    float t[DET_WINO_A_MAX * DET_WINO_A_MAX];
                    det_wino_input_tile(m, in + ((size_t)ic * n + b) * h * w, h, w, pad, ty, tx,
                                        t);
                    for (int e = 0; e < a2; e++)
                        v[(size_t)e * c + ic] = t[e];
                }
                for (int oc = 0; oc < o; oc++) {
                    float p[DET_WINO_A_MAX * DET_WINO_A_MAX];
                    for (int e = 0; e < a2; e++) {
                        float s = 0.0f;
                        for (int ic = 0; ic < c; ic++)
                            s += u[((size_t)e * c + ic) * o + oc] * v[(size_t)e * c + ic];
                        p[e] = s;
                    }
                    size_t plane = ((size_t)oc * n + b) * oh * ow;
                    det_wino_output_tile(m, p, bias[oc], add ? add + plane : NULL, relu,
                                         out + plane, oh, ow, ty, tx);
                }
            }
    free(u);
    free(v);
}

cnp_status det_wino_init(det_wino *w, ocl_ctx *ctx, cnp_err *err)
{
    memset(w, 0, sizeof *w);
    static const char *const names[2][2] = {{"wino_input", "wino_output"},
                                            {"wino4_input", "wino4_output"}};
    cnp_status result = CNP_OK;
    for (int k = 0; result == CNP_OK && k < 2; k++) {
        result = ocl_kernel_create(ctx, "winograd", "", names[k][0], &w->input[k], err);
        if (result == CNP_OK)
            result = ocl_kernel_create(ctx, "winograd", "", names[k][1], &w->output[k], err);
    }
    return result;
}

/* New scratch is zeroed (on q, in order before any run there): the tile
 * columns past a run's tiles enter the SGEMM (their products are never
 * read), and stay finite. */
static cl_mem zeroed(cl_context cl, cl_command_queue q, size_t floats, cl_int *rc)
{
    float zero = 0.0f;
    cl_mem b = ocl_buffer_create(cl, CL_MEM_READ_WRITE, floats * sizeof(float), NULL, rc);
    if (*rc == CL_SUCCESS)
        *rc = clEnqueueFillBuffer(q, b, &zero, sizeof zero, 0, floats * sizeof(float), 0, NULL,
                                  NULL);
    if (*rc != CL_SUCCESS) {
        ocl_buffer_release(b);
        b = NULL;
    }
    return b;
}

cnp_status det_wino_reserve(det_wino *w, cl_context cl, cl_command_queue q, size_t v, size_t m,
                           cnp_err *err)
{
    cl_int rc = CL_SUCCESS;
    if (v > w->v_floats) {
        ocl_buffer_release(w->v);
        w->v = zeroed(cl, q, v, &rc);
        w->v_floats = rc == CL_SUCCESS ? v : 0;
        if (rc != CL_SUCCESS)
            return ocl_check(rc, "Winograd transformed inputs", err);
    }
    if (m > w->m_floats) {
        ocl_buffer_release(w->m);
        w->m = zeroed(cl, q, m, &rc);
        w->m_floats = rc == CL_SUCCESS ? m : 0;
    }
    return ocl_check(rc, "Winograd products", err);
}

void det_wino_release(det_wino *w)
{
    for (int k = 0; k < 2; k++) {
        if (w->input[k])
            clReleaseKernel(w->input[k]);
        if (w->output[k])
            clReleaseKernel(w->output[k]);
    }
    ocl_buffer_release(w->v);
    ocl_buffer_release(w->m);
    memset(w, 0, sizeof *w);
}

cnp_status det_wino_upload(cl_context cl, int m, const float *weight, int o, int c, cl_mem *u,
                           cnp_err *err)
{
    size_t bytes = sizeof(float) * (size_t)(m + 2) * (m + 2) * (size_t)o * c;
    float *host = malloc(bytes);
    if (!host) {
        cnp_err_set(err, "out of memory transforming %d x %d filters", o, c);
        return CNP_ERR_NOMEM;
    }
    det_wino_filters(m, weight, o, c, host);
    cl_int rc;
    *u = ocl_buffer_create(cl, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, bytes, host, &rc);
    free(host);
    return ocl_check(rc, "Winograd filters", err);
}

cnp_status det_wino_run(det_wino *w, int m, cl_command_queue q, cl_mem in, cl_mem u, cl_mem bias,
                        cl_mem add, bool relu, cl_mem out, int c, int o, int n, int h, int wd,
                        int pad, cnp_err *err)
{
    cl_int C = c, O = o, N = n, H = h, W = wd, P = pad, OH = h + 2 * pad - 2,
           OW = wd + 2 * pad - 2, TH = (OH + m - 1) / m, TW = (OW + m - 1) / m;
    size_t need_v, need_m, a2 = (size_t)(m + 2) * (m + 2);
    size_t ps = det_wino_tile_stride((size_t)N * TH * TW);
    cl_int PS = (cl_int)ps;
    /* The kernels' work-items: runs of consecutive tiles of a tile row,
     * WINO_RUN (8) for F(2x2), WINO4_RUN (4) for F(4x4). */
    int run = m == 2 ? 8 : 4, k = m == 4;
    size_t runs = (size_t)N * TH * ((TW + run - 1) / run);
    det_wino_scratch(m, c, o, OH, OW, n, &need_v, &need_m);
    if ((m != 2 && m != 4) || OH < 1 || OW < 1 || need_v > w->v_floats ||
        need_m > w->m_floats) {
        cnp_err_set(err, "Winograd F(%dx%d) %d -> %d channels on %d x %dx%d (pad %d): scratch of "
                    "%zu + %zu floats, has %zu + %zu", m, m, c, o, n, wd, h, pad, need_v, need_m,
                    w->v_floats, w->m_floats);
        return CNP_ERR_INVALID;
    }
    const char *kin = k ? "wino4_input" : "wino_input", *kout = k ? "wino4_output" : "wino_output";
    cnp_status result = OCL_SET_ARGS(w->input[k], kin, err, OCL_ARG(in), OCL_ARG(w->v),
                                     OCL_ARG(C), OCL_ARG(N), OCL_ARG(H), OCL_ARG(W), OCL_ARG(P),
                                     OCL_ARG(TH), OCL_ARG(TW), OCL_ARG(PS));
    size_t gin[2] = {ocl_round_up(runs, 64), (size_t)c};
    if (result == CNP_OK)
        result = ocl_enqueue(q, w->input[k], 2, gin, NULL, kin, err);
    if (result != CNP_OK)
        return result;
    /* M[e]^T (ps x o) = V[e]^T (ps x c) U[e] (c x o), column-major. */
    int st = ocl_sgemm_batched_xgemm(q, ps, (size_t)o, (size_t)c, w->v, ps, (size_t)c * ps, u,
                                     (size_t)o, (size_t)c * o, w->m, ps, (size_t)o * ps, a2);
    if (st != CLBlastSuccess) {
        cnp_err_set(err, "Winograd: CLBlastSgemmStridedBatched(%zu x %zu x %d x %d) failed: "
                    "status %d", a2, ps, o, c, st);
        return CNP_ERR_OPENCL;
    }
    cl_int has_add = add != NULL, r = relu;
    cl_mem a = add ? add : out;
    result = OCL_SET_ARGS(w->output[k], kout, err, OCL_ARG(w->m), OCL_ARG(bias),
                          OCL_ARG(a), OCL_ARG(has_add), OCL_ARG(r), OCL_ARG(out), OCL_ARG(O),
                          OCL_ARG(N), OCL_ARG(OH), OCL_ARG(OW), OCL_ARG(TH), OCL_ARG(TW),
                          OCL_ARG(PS));
    size_t gout[2] = {ocl_round_up(runs, 64), (size_t)o};
    if (result == CNP_OK)
        result = ocl_enqueue(q, w->output[k], 2, gout, NULL, kout, err);
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
        for (int k = 0; result == CNP_OK && k < 2; k++) {
            int m = k ? 4 : 2;
            if (gn->owns_weights) {
                result = det_wino_upload(e->cl, m, n->weight, n->cout, n->cin, &gn->wino_u[k],
                                         err);
                if (result == CNP_OK)
                    e->device_bytes +=
                        sizeof(float) * (size_t)(m + 2) * (m + 2) * (size_t)n->cout * n->cin;
            } else
                for (int j = 0; j < i; j++)
                    if (e->nodes[j].owns_weights && e->nodes[j].weight == gn->weight)
                        gn->wino_u[k] = e->nodes[j].wino_u[k];
        }
    }
    /* Scratch for the planned sizes (both orientations of a retina's), the
     * larger of the two tile sizes' (F(2x2)'s: 4 floats per pixel against
     * F(4x4)'s 2.25). */
    int *s = malloc(sizeof(int) * 3 * (size_t)nn);
    if (!s && result == CNP_OK) {
        cnp_err_set(err, "graph engine: out of memory");
        result = CNP_ERR_NOMEM;
    }
    size_t v = 0, m = 0;
    int sizes[2][2] = {{e->plan_h, e->plan_w}, {e->plan_w, e->plan_h}};
    for (int k = 0; result == CNP_OK && k < (g->input.kind == DET_INPUT_RETINA ? 2 : 1); k++) {
        result = det_graph_ref_shapes(g, sizes[k][0], sizes[k][1], s, s + nn, s + 2 * nn, err);
        for (int i = 0; result == CNP_OK && i < nn; i++)
            for (int t = 2; t <= 4 && e->nodes[i].wino_u[0]; t += 2) {
                size_t nv, nm;
                det_wino_scratch(t, g->nodes[i].cin, g->nodes[i].cout, s[nn + i], s[2 * nn + i],
                                 e->max_batch, &nv, &nm);
                v = nv > v ? nv : v;
                m = nm > m ? nm : m;
            }
    }
    free(s);
    if (result == CNP_OK)
        result = det_wino_reserve(&e->wino, e->cl, e->q, v, m, err);
    if (result == CNP_OK)
        e->device_bytes += (v + m) * sizeof(float);
    return result;
}

cnp_status ge_run_conv_wino(det_graph_engine *e, int i, int m, cnp_err *err)
{
    const det_node *n = &e->g->nodes[i];
    int nn = e->g->n_nodes, *h = e->shape + nn, *w = e->shape + 2 * nn;
    cnp_status result = det_wino_run(&e->wino, m, e->q, ge_node_buf(e, n->in),
                                     e->nodes[i].wino_u[m == 4], e->nodes[i].bias,
                                     n->in2 >= 0 ? ge_node_buf(e, n->in2) : NULL,
                                     n->act == DET_ACT_RELU, ge_node_buf(e, i), n->cin, n->cout,
                                     e->batch, h[n->in], w[n->in], n->pad, err);
    ge_stamp(e, e->times ? &e->times->gemm[i] : NULL);
    return result;
}

void ge_wino_free(det_graph_engine *e)
{
    for (int i = 0; e->nodes && i < e->g->n_nodes; i++)
        if (e->nodes[i].owns_weights)
            for (int k = 0; k < 2; k++)
                ocl_buffer_release(e->nodes[i].wino_u[k]);
    det_wino_release(&e->wino);
}
