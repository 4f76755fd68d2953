/* graph_conv_px for the graph engine (conv_px.h). */
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
    for (int i = 0; result == CNP_OK && i < g->n_nodes; i++) {
        const det_node *n = &g->nodes[i];
        gnode *gn = &e->nodes[i];
        if (!det_px_applies(n))
            continue;
        int cob = det_px_cob(n->cout);
        char opts[80];
        snprintf(opts, sizeof opts, "-DCK=%d -DCS=%d -DCDIL=%d -DPCOB=%d", n->k, n->stride,
                 n->dilation, cob);
        result = ocl_kernel_create(e->ctx, "graph", opts, "graph_conv_px", &gn->px, err);
        if (result != CNP_OK)
            break;
        gn->px_cob = cob;
        if (gn->owns_weights) {
            result = upload(e, n, cob, &gn->px_w, err);
            continue;
        }
        for (int j = 0; j < i; j++)
            if (e->nodes[j].owns_weights && e->nodes[j].weight == gn->weight)
                gn->px_w = e->nodes[j].px_w;
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
    size_t lx = PX_LOCAL;
    size_t global[3] = {ocl_round_up((size_t)OW, lx), (size_t)OH,
                        (size_t)((O + gn->px_cob - 1) / gn->px_cob) * (size_t)N};
    size_t local[3] = {lx, 1, 1};
    if (result == CNP_OK)
        result = ge_enqueue(e, gn->px, 3, global, local, "graph_conv_px", err);
    ge_stamp(e, e->times ? &e->times->epilogue[i] : NULL);
    return result;
}

void ge_px_free(det_graph_engine *e)
{
    for (int i = 0; e->nodes && i < e->g->n_nodes; i++) {
        if (e->nodes[i].px)
            clReleaseKernel(e->nodes[i].px);
        if (e->nodes[i].owns_weights)
            ocl_buffer_release(e->nodes[i].px_w);
    }
}
