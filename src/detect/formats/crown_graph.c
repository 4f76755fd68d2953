/* A crown model (.cnw version 1: a layer list) as a graph of crown input
 * (graph.h): the one form both the device engine (engine.c) and the CPU
 * reference (ref.c on graph_ref.c) run. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "detect/detect_internal.h"

cnp_status det_crown_graph(const det_model *m, det_graph *g, cnp_err *err)
{
    memset(g, 0, sizeof *g);
    g->n_nodes = m->n_layers + 1;
    g->nodes = calloc((size_t)g->n_nodes, sizeof *g->nodes);
    if (!g->nodes) {
        cnp_err_set(err, "%s: out of memory for its graph", m->version);
        return CNP_ERR_NOMEM;
    }
    g->nodes[0] = (det_node){.op = DET_OP_INPUT, .name = "input", .in = -1, .in2 = -1};
    for (int i = 0; i < m->n_layers; i++) {
        const det_layer *l = &m->layers[i];
        det_node *n = &g->nodes[i + 1];
        if (l->type == DET_LAYER_MAXPOOL)
            *n = (det_node){.op = DET_OP_MAXPOOL, .in = i, .in2 = -1, .k = 2, .stride = 2,
                            .pad = 0, .dilation = 1};
        else
            *n = (det_node){.op = DET_OP_CONV, .in = i, .in2 = -1, .cin = l->in,
                            .cout = l->out, .k = l->k, .stride = 1,
                            .pad = l->dilation * (l->k - 1) / 2, .dilation = l->dilation,
                            .act = l->relu ? DET_ACT_RELU : DET_ACT_NONE, .weight = l->weight,
                            .bias = l->bias};
        snprintf(n->name, sizeof n->name, "%s", l->name);
        snprintf(n->weights, sizeof n->weights, "%s", l->name);
    }
    g->input.kind = DET_INPUT_CROWN;
    g->input.channels = m->n_channels;
    for (int c = 0; c < m->n_channels && c < 4; c++) {
        g->input.channel[c] = m->channel[c];
        g->input.mean[c] = m->mean[c];
        g->input.std[c] = m->std[c];
    }
    return CNP_OK;
}
