/* The GEMM shapes of a model's convolutions as its engine runs them. */
#include <stdlib.h>

#include "detect/detect_internal.h"
#include "detect/gemm_shapes.h"

static cnp_status add_shape(size_t m, size_t n, size_t k, ocl_gemm_shape *out, size_t cap,
                            size_t *count, cnp_err *err)
{
    for (size_t i = 0; i < *count; i++)
        if (out[i].m == m && out[i].n == n && out[i].k == k) {
            out[i].count++;
            return CNP_OK;
        }
    if (*count == cap) {
        cnp_err_set(err, "more than %zu distinct GEMM shapes", cap);
        return CNP_ERR_LIMIT;
    }
    out[(*count)++] = (ocl_gemm_shape){.m = m, .n = n, .k = k, .count = 1};
    return CNP_OK;
}

cnp_status det_model_gemm_shapes(const det_model *m, const cnp_detector_config *dc, int batch,
                                 ocl_gemm_shape *out, size_t cap, size_t *n, cnp_err *err)
{
    size_t nb = batch > 0 ? (size_t)batch : 1;
    cnp_status result = CNP_OK;
    if (!m->graph) {
        size_t w = (size_t)dc->tile, h = (size_t)dc->tile;
        for (int i = 0; result == CNP_OK && i < m->n_layers; i++) {
            const det_layer *l = &m->layers[i];
            if (l->type == DET_LAYER_MAXPOOL) {
                w /= 2;
                h /= 2;
            } else
                result = add_shape((size_t)l->out, w * h * nb, (size_t)l->in * l->k * l->k, out,
                                   cap, n, err);
        }
        return result;
    }
    const det_graph *g = m->graph;
    int side = dc->patch_size > 0 ? dc->patch_size : g->retina.min_size, rh, rw, ph, pw;
    det_retina_input_size(&g->retina, side, side, &rh, &rw, &ph, &pw);
    int nn = g->n_nodes, *s = malloc(sizeof(int) * 3 * (size_t)nn);
    if (!s) {
        cnp_err_set(err, "out of memory for %d graph nodes", nn);
        return CNP_ERR_NOMEM;
    }
    result = det_graph_ref_shapes(g, ph, pw, s, s + nn, s + 2 * nn, err);
    for (int i = 0; result == CNP_OK && i < nn; i++) {
        const det_node *d = &g->nodes[i];
        if (d->op == DET_OP_CONV)
            result = add_shape((size_t)d->cout, (size_t)s[nn + i] * s[2 * nn + i] * nb,
                               (size_t)d->cin * d->k * d->k, out, cap, n, err);
    }
    free(s);
    return result;
}
