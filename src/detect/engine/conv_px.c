/* graph_conv_px and graph_conv_pxv for the graph engine (conv_px.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "detect/engine/conv_px.h"
#include "detect/engine/graph_engine_internal.h"

/* Work-items along x per work-group. */
#define PX_LOCAL 64

bool det_px_applies(const det_node *n)
{
    return n->op == DET_OP_CONV && n->stride >= 1 && n->stride <= 16 && n->k >= 1 && n->k <= 15 &&
           n->dilation >= 1 && n->dilation <= 16 && n->pad >= 0;
}

int det_px_cob(int o)
{
    return o <= 8 ? 8 : o <= 16 ? 16 : 32;
}

bool det_px_vec_applies(const det_node *n)
{
    return det_px_applies(n) && n->stride == 1;
}

int det_px_vec_cob(int o)
{
    return o <= 4 ? 4 : o <= 8 ? 8 : 16;
}

void det_px_vec_ref(const det_node *n, const float *in, int h, int w, const float *add,
                    float *out, int oh, int ow)
{
    int k = n->k, d = n->dilation, p = n->pad;
    for (int oc = 0; oc < n->cout; oc++)
        for (int y = 0; y < oh; y++)
            for (int x = 0; x < ow; x++) {
                float acc = 0.0f;
                for (int c = 0; c < n->cin; c++) {
                    const float *wp = n->weight + ((size_t)oc * n->cin + c) * k * k;
                    for (int ky = 0; ky < k; ky++) {
                        int iy = y - p + ky * d;
                        if (iy < 0 || iy >= h)
                            continue;
                        for (int kx = 0; kx < k; kx++) {
                            int ix = x - p + kx * d;
                            float v = ix >= 0 && ix < w ? in[((size_t)c * h + iy) * w + ix] : 0.0f;
                            acc = fmaf(wp[ky * k + kx], v, acc);
                        }
                    }
                }
                size_t at = ((size_t)oc * oh + y) * ow + x;
                float s = acc + n->bias[oc];
                if (add)
                    s = s + add[at];
                out[at] = n->act == DET_ACT_RELU && s < 0.0f ? 0.0f : s;
            }
}

/* graph_conv_pxv's pixels per work-item on e's device: the engine's option,
 * else 16 on a CPU device (a float16 is one AVX-512 register: PoCL keeps
 * PCOB of them as accumulators) and 4 elsewhere (a GPU's work-item holds
 * 4 * PCOB accumulators in registers; its SIMD is across work-items). */
static int vec_width(const det_graph_engine *e)
{
    if (e->px_width == 4 || e->px_width == 8 || e->px_width == 16)
        return e->px_width;
    cl_device_type type = 0;
    clGetDeviceInfo(ocl_ctx_device(e->ctx), CL_DEVICE_TYPE, sizeof type, &type, NULL);
    return (type & CL_DEVICE_TYPE_CPU) ? 16 : 4;
}

size_t det_px_weight_floats(int o, int c, int k, int cob)
{
    return (size_t)((o + cob - 1) / cob) * cob * (size_t)c * k * k;
}

void det_px_weights(const float *weight, int o, int c, int k, int cob, float *out)
{
    size_t kk = (size_t)k * k;
    memset(out, 0, sizeof(float) * det_px_weight_floats(o, c, k, cob));
    for (int oc = 0; oc < o; oc++)
        for (int ic = 0; ic < c; ic++)
            for (size_t t = 0; t < kk; t++)
                out[(((size_t)(oc / cob) * c + ic) * kk + t) * cob + oc % cob] =
                    weight[((size_t)oc * c + ic) * kk + t];
}

static cnp_status upload(det_graph_engine *e, const det_node *n, int cob, cl_mem *out,
                         cnp_err *err)
{
    size_t nf = det_px_weight_floats(n->cout, n->cin, n->k, cob);
    float *w = malloc(sizeof(float) * (nf ? nf : 1));
    if (!w) {
        cnp_err_set(err, "graph engine: out of memory");
        return CNP_ERR_NOMEM;
    }
    det_px_weights(n->weight, n->cout, n->cin, n->k, cob, w);
    cl_int rc;
    *out = ocl_buffer_create(e->cl, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, sizeof(float) * nf,
                             w, &rc);
    free(w);
    if (rc == CL_SUCCESS)
        e->device_bytes += sizeof(float) * nf;
    return ocl_check(rc, "conv_px weights", err);
}

cnp_status ge_px_prepare(det_graph_engine *e, cnp_err *err)
{
    const det_graph *g = e->g;
    cnp_status result = CNP_OK;
    if (ocl_ctx_max_work_group(e->ctx) < PX_LOCAL)
        return CNP_OK;
    int vw = vec_width(e);
    for (int i = 0; result == CNP_OK && i < g->n_nodes; i++) {
        const det_node *n = &g->nodes[i];
        gnode *gn = &e->nodes[i];
        if (!det_px_applies(n))
            continue;
        bool vec = det_px_vec_applies(n);
        int cob = vec ? det_px_vec_cob(n->cout) : det_px_cob(n->cout);
        char opts[80];
        if (vec)
            snprintf(opts, sizeof opts, "-DCK=%d -DCDIL=%d -DPCOB=%d -DPXV=%d", n->k,
                     n->dilation, cob, vw);
        else
            snprintf(opts, sizeof opts, "-DCK=%d -DCS=%d -DCDIL=%d -DPCOB=%d", n->k, n->stride,
                     n->dilation, cob);
        result = ocl_kernel_create(e->ctx, "graph", opts, vec ? "graph_conv_pxv" : "graph_conv_px",
                                   &gn->px, err);
        if (result != CNP_OK)
            break;
        gn->px_cob = cob;
        gn->px_vw = vec ? vw : 0;
        /* The re-laid weights of an earlier node with the same weights and
         * blocks (shared heads), else this node's own. */
        for (int j = 0; j < i && !gn->px_w; j++)
            if (e->nodes[j].px_owns && e->nodes[j].weight == gn->weight &&
                e->nodes[j].px_cob == cob)
                gn->px_w = e->nodes[j].px_w;
        if (!gn->px_w) {
            result = upload(e, n, cob, &gn->px_w, err);
            gn->px_owns = result == CNP_OK;
        }
    }
    return result;
}

cnp_status ge_run_conv_px(det_graph_engine *e, int i, cnp_err *err)
{
    const det_node *n = &e->g->nodes[i];
    gnode *gn = &e->nodes[i];
    int nn = e->g->n_nodes, *h = e->shape + nn, *w = e->shape + 2 * nn;
    cl_mem in = ge_node_buf(e, n->in), out = ge_node_buf(e, i);
    cl_mem add = n->in2 >= 0 ? ge_node_buf(e, n->in2) : out;
    cl_int has_add = n->in2 >= 0, relu = n->act == DET_ACT_RELU, C = n->cin, H = h[n->in],
           W = w[n->in], O = n->cout, OH = h[i], OW = w[i], P = n->pad, N = e->batch;
    cnp_status result = OCL_SET_ARGS(gn->px, "graph_conv_px", err, OCL_ARG(in), OCL_ARG(gn->px_w),
                                     OCL_ARG(gn->bias), OCL_ARG(add), OCL_ARG(has_add),
                                     OCL_ARG(relu), OCL_ARG(out), OCL_ARG(C), OCL_ARG(H),
                                     OCL_ARG(W), OCL_ARG(O), OCL_ARG(OH), OCL_ARG(OW), OCL_ARG(P),
                                     OCL_ARG(N));
    size_t lx = PX_LOCAL, blocks = (size_t)((O + gn->px_cob - 1) / gn->px_cob) * (size_t)N;
    if (result == CNP_OK && gn->px_vw) {
        size_t runs = (size_t)((OW + gn->px_vw - 1) / gn->px_vw) * (size_t)OH;
        size_t global[2] = {ocl_round_up(runs, lx), blocks}, local[2] = {lx, 1};
        result = ge_enqueue(e, gn->px, 2, global, local, "graph_conv_pxv", err);
    } else if (result == CNP_OK) {
        size_t global[3] = {ocl_round_up((size_t)OW, lx), (size_t)OH, blocks};
        size_t local[3] = {lx, 1, 1};
        result = ge_enqueue(e, gn->px, 3, global, local, "graph_conv_px", err);
    }
    ge_stamp(e, e->times ? &e->times->epilogue[i] : NULL);
    return result;
}

void ge_px_free(det_graph_engine *e)
{
    for (int i = 0; e->nodes && i < e->g->n_nodes; i++) {
        if (e->nodes[i].px)
            clReleaseKernel(e->nodes[i].px);
        if (e->nodes[i].px_owns)
            ocl_buffer_release(e->nodes[i].px_w);
    }
}
