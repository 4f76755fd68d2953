/* Running one node of a graph engine: a conv by its path (im2col + CLBlast
 * SGEMM + the epilogue kernel, the direct kernels graph_conv or
 * graph_conv_px (conv_px.c), Winograd F(2x2) or F(4x4) (winograd.c)) and the other ops'
 * kernels (max pool, upsample-add, ReLU). Shares graph_engine_internal.h
 * with graph_engine.c, which plans the buffers and runs the graph. */
#include <clblast_c.h>

#include "detect/engine/conv_px.h"
#include "detect/engine/graph_engine_internal.h"

/* graph_conv: the whole node in one kernel. */
static cnp_status run_conv_direct(det_graph_engine *e, int i, cnp_err *err)
{
    const det_node *n = &e->g->nodes[i];
    int nn = e->g->n_nodes, *c = e->shape, *h = c + nn, *w = c + 2 * nn;
    cl_mem in = ge_node_buf(e, n->in), out = ge_node_buf(e, i);
    cl_mem add = n->in2 >= 0 ? ge_node_buf(e, n->in2) : out;
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
        result = ge_enqueue(e, e->nodes[i].direct, 3, global, local, "graph_conv", err);
    ge_stamp(e, e->times ? &e->times->epilogue[i] : NULL);
    return result;
}

cnp_status ge_run_conv(det_graph_engine *e, int i, cnp_err *err)
{
    enum det_conv_path path = ge_node_path(e, i);
    if (path == DET_CONV_PIXEL)
        return ge_run_conv_px(e, i, err);
    if (path == DET_CONV_DIRECT)
        return run_conv_direct(e, i, err);
    if (path == DET_CONV_WINOGRAD || path == DET_CONV_WINOGRAD4)
        return ge_run_conv_wino(e, i, path == DET_CONV_WINOGRAD ? 2 : 4, err);
    const det_node *n = &e->g->nodes[i];
    int nn = e->g->n_nodes, *c = e->shape, *h = c + nn, *w = c + 2 * nn;
    int ih = h[n->in], iw = w[n->in], oh = h[i], ow = w[i];
    /* One SGEMM for the whole batch: [cout x kdim] x [kdim x N * oh * ow],
     * columns padded to gc (ge_gemm_cols) where an im2col matrix is made. */
    size_t np = (size_t)oh * ow * (size_t)e->batch, kdim = (size_t)n->cin * n->k * n->k;
    size_t gc = ge_gemm_cols(n, np);
    cl_mem b = ge_node_buf(e, n->in), out = ge_node_buf(e, i);
    cl_mem c_out = gc == np ? out : e->gemm_out;
    cnp_status result = CNP_OK;
    if (gc != np && (size_t)n->cout * gc > e->gemm_out_floats) {
        cnp_err_set(err, "graph node %s: SGEMM output of %d x %zu outgrows its %zu floats",
                    n->name, n->cout, gc, e->gemm_out_floats);
        return CNP_ERR_INVALID;
    }
    if (ge_im2col(n)) {
        cl_int H = ih, W = iw, OH = oh, OW = ow, K = n->k, S = n->stride, P = n->pad,
               D = n->dilation, N = e->batch, T = (cl_int)gc;
        result = OCL_SET_ARGS(e->im2col, "graph_im2col", err, OCL_ARG(b), OCL_ARG(e->col), OCL_ARG(H),
                          OCL_ARG(W), OCL_ARG(OH), OCL_ARG(OW), OCL_ARG(K), OCL_ARG(S), OCL_ARG(P), OCL_ARG(D),
                          OCL_ARG(N), OCL_ARG(T));
        /* graph.cl's IM2COL_RUN (8) columns per work-item, all taps of one channel. */
        size_t global[3] = {ocl_round_up(((size_t)ow + 7) / 8, 8), (size_t)oh * (size_t)e->batch,
                            (size_t)n->cin};
        if (result == CNP_OK)
            result = ge_enqueue(e, e->im2col, 3, global, NULL, "graph_im2col", err);
        b = e->col;
        ge_stamp(e, e->times ? &e->times->im2col[i] : NULL);
    }
    if (result != CNP_OK)
        return result;
    size_t need = ocl_sgemm_temp_bytes(e->q, (size_t)n->cout, gc, kdim);
    int st = ocl_sgemm(e->q, (size_t)n->cout, gc, kdim, e->nodes[i].weight, b, c_out,
                       need <= e->gemm_tmp_bytes ? e->gemm_tmp : NULL);
    if (st != CLBlastSuccess) {
        cnp_err_set(err, "graph node %s: CLBlastSgemm(%d x %zu x %zu) failed: status %d",
                    n->name, n->cout, np, kdim, st);
        return CNP_ERR_OPENCL;
    }
    ge_stamp(e, e->times ? &e->times->gemm[i] : NULL);
    cl_mem add = n->in2 >= 0 ? ge_node_buf(e, n->in2) : out;
    cl_int has_add = n->in2 >= 0, cn = (cl_int)np, ld = (cl_int)gc, relu = n->act == DET_ACT_RELU;
    result = OCL_SET_ARGS(e->epilogue, "graph_epilogue", err, OCL_ARG(c_out), OCL_ARG(ld),
                          OCL_ARG(out), OCL_ARG(e->nodes[i].bias), OCL_ARG(add),
                          OCL_ARG(has_add), OCL_ARG(cn), OCL_ARG(relu));
    size_t global[2] = {ocl_round_up(np, 64), (size_t)n->cout};
    if (result == CNP_OK)
        result = ge_enqueue(e, e->epilogue, 2, global, NULL, "graph_epilogue", err);
    ge_stamp(e, e->times ? &e->times->epilogue[i] : NULL);
    return result;
}

static cnp_status run_node_kernel(det_graph_engine *e, int i, cnp_err *err)
{
    const det_node *n = &e->g->nodes[i];
    int nn = e->g->n_nodes, *c = e->shape, *h = c + nn, *w = c + 2 * nn;
    cl_mem in = ge_node_buf(e, n->in), out = ge_node_buf(e, i);
    /* A batch's planes c * N + n are N times as many planes of one patch. */
    size_t total = (size_t)c[i] * h[i] * w[i] * (size_t)e->batch,
           global = ocl_round_up(total, 64);
    cl_int C = c[i] * e->batch, H = h[i], W = w[i];
    cnp_status result;
    switch (n->op) {
    case DET_OP_CONV:
        return ge_run_conv(e, i, err);
    case DET_OP_MAXPOOL: {
        cl_int IH = h[n->in], IW = w[n->in], K = n->k, S = n->stride, P = n->pad;
        if (K == 2 && S == 2 && P == 0 && ocl_ctx_max_work_group(e->ctx) >= 64) {
            size_t runs = (size_t)((W + 7) / 8) * (size_t)H;
            size_t g2[2] = {ocl_round_up(runs, 64), (size_t)C}, l2[2] = {64, 1};
            result = OCL_SET_ARGS(e->maxpool2, "graph_maxpool2", err, OCL_ARG(in), OCL_ARG(out),
                                  OCL_ARG(IH), OCL_ARG(IW), OCL_ARG(H), OCL_ARG(W));
            if (result == CNP_OK)
                result = ge_enqueue(e, e->maxpool2, 2, g2, l2, "graph_maxpool2", err);
            return result;
        }
        result = OCL_SET_ARGS(e->maxpool, "graph_maxpool", err, OCL_ARG(in), OCL_ARG(out), OCL_ARG(C),
                          OCL_ARG(IH), OCL_ARG(IW), OCL_ARG(H), OCL_ARG(W), OCL_ARG(K), OCL_ARG(S), OCL_ARG(P));
        if (result == CNP_OK)
            result = ge_enqueue(e, e->maxpool, 1, &global, NULL, "graph_maxpool", err);
        return result;
    }
    case DET_OP_UPSAMPLE_ADD: {
        cl_mem top = ge_node_buf(e, n->in2);
        cl_int TH = h[n->in2], TW = w[n->in2];
        /* The nearest rule's scales, divided here (item 7 of issue 20). */
        cl_float2 scale = {{(float)TW / (float)W, (float)TH / (float)H}};
        result = OCL_SET_ARGS(e->upsample, "graph_upsample_add", err, OCL_ARG(in), OCL_ARG(top),
                          OCL_ARG(out), OCL_ARG(C), OCL_ARG(H), OCL_ARG(W), OCL_ARG(TH), OCL_ARG(TW),
                          OCL_ARG(scale));
        if (result == CNP_OK)
            result = ge_enqueue(e, e->upsample, 1, &global, NULL, "graph_upsample_add", err);
        return result;
    }
    case DET_OP_RELU: {
        cl_int N = (cl_int)total;
        result = OCL_SET_ARGS(e->relu, "graph_relu", err, OCL_ARG(in), OCL_ARG(out), OCL_ARG(N));
        if (result == CNP_OK)
            result = ge_enqueue(e, e->relu, 1, &global, NULL, "graph_relu", err);
        return result;
    }
    default:
        cnp_err_set(err, "graph node %s: op %d has no kernel", n->name, (int)n->op);
        return CNP_ERR_INTERNAL;
    }
}

cnp_status ge_run_node(det_graph_engine *e, int i, cnp_err *err)
{
    if (e->g->nodes[i].op == DET_OP_CONV)
        return ge_run_conv(e, i, err);
    cnp_status result = run_node_kernel(e, i, err);
    ge_stamp(e, e->times ? &e->times->other[i] : NULL);
    return result;
}
