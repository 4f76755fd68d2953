/* det_model: a .cnw file (models/FORMAT.md) made into a model. The
 * container is checked by cnw.c and the architecture parsed by
 * crown_json.c (version 1, a crown model's layer list) or graph_json.c
 * (version 2, a graph); here the architecture is bound to its tensors,
 * checked against the shapes it needs. Then what a loaded model answers:
 * output size, FLOPs, receptive field. Where a configured model file lies
 * is model_path.c's. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "canopy/buf.h"
#include "detect/detect_internal.h"

#define CNW_MAX_FILE ((size_t)1 << 30)

/* ---- tensors against the architecture ---------------------------------- */

static cnp_status bind_tensor(const char *path, const det_cnw *f, const char *layer,
                              const char *suffix, uint32_t ndim, const uint32_t *dims,
                              float **out, cnp_err *err)
{
    char name[DET_NAME_MAX + 16];
    snprintf(name, sizeof name, "%s.%s", layer, suffix);
    const det_cnw_tensor *t = det_cnw_tensor_find(f, name);
    if (!t) {
        cnp_err_set(err, "%s: tensor %s is missing", path, name);
        return CNP_ERR_FORMAT;
    }
    if (!det_cnw_tensor_shape_ok(path, t, ndim, dims, "the architecture", err))
        return CNP_ERR_FORMAT;
    *out = malloc((size_t)(t->bytes / 4) * sizeof **out);
    if (!*out) {
        cnp_err_set(err, "%s: out of memory", path);
        return CNP_ERR_NOMEM;
    }
    return det_cnw_tensor_copy(path, f, t, *out, err);
}

static cnp_status bind_tensors(const char *path, const det_cnw *f, det_model *m,
                               cnp_err *err)
{
    for (int i = 0; i < m->n_layers; i++) {
        det_layer *l = &m->layers[i];
        if (l->type != DET_LAYER_CONV)
            continue;
        uint32_t wd[4] = {(uint32_t)l->out, (uint32_t)l->in, (uint32_t)l->k,
                          (uint32_t)l->k};
        uint32_t bd[1] = {(uint32_t)l->out};
        cnp_status result = bind_tensor(path, f, l->name, "weight", 4, wd, &l->weight, err);
        if (result == CNP_OK)
            result = bind_tensor(path, f, l->name, "bias", 1, bd, &l->bias, err);
        if (result != CNP_OK)
            return result;
    }
    return CNP_OK;
}

/* ---- version 2: the graph's tensors ------------------------------------ */

/* The directory entry named <weights>.<suffix>, checked against dims; NULL
 * with err set when it is missing or of another shape. */
static const det_cnw_tensor *graph_tensor(const char *path, const det_cnw *f,
                                          const det_node *n, const char *suffix,
                                          uint32_t ndim, const uint32_t *dims, cnp_err *err)
{
    char name[DET_GRAPH_NAME_MAX + 16], who[DET_GRAPH_NAME_MAX + 8];
    snprintf(name, sizeof name, "%s.%s", n->weights, suffix);
    snprintf(who, sizeof who, "node %s", n->name);
    const det_cnw_tensor *t = det_cnw_tensor_find(f, name);
    if (!t) {
        cnp_err_set(err, "%s: tensor %s (node %s) is missing", path, name, n->name);
        return NULL;
    }
    return det_cnw_tensor_shape_ok(path, t, ndim, dims, who, err) ? t : NULL;
}

/* Shapes of every node of m->graph for a w x h input, in one malloc'd
 * block (c, then h, then w); NULL when the input is too small or memory
 * short. */
static int *graph_shapes(const det_model *m, uint32_t w, uint32_t h)
{
    const det_graph *g = m->graph;
    int *s = malloc(3 * (size_t)g->n_nodes * sizeof *s);
    cnp_err err = {{0}};
    if (s && (w > INT_MAX || h > INT_MAX ||
              det_graph_shapes(g, (int)h, (int)w, s, s + g->n_nodes, s + 2 * g->n_nodes,
                               &err) != CNP_OK)) {
        free(s);
        return NULL;
    }
    return s;
}

/* What version 1's fields mean for a graph: stride, the input pixels per
 * cell of the finest level (the first); nms_iou, the postprocess's. */
static void graph_summary(det_model *m)
{
    if (m->graph->input.kind == DET_INPUT_CROP) { /* a classifier: no cells */
        m->stride = 1;
        return;
    }
    const det_retina *r = &m->graph->retina;
    int side = (r->min_size + r->size_divisible - 1) / r->size_divisible * r->size_divisible;
    int *s = graph_shapes(m, (uint32_t)side, (uint32_t)side);
    int oh = s ? s[m->graph->n_nodes + r->cls_node[0]] : 0;
    m->stride = oh > 0 ? (side + oh / 2) / oh : 1;
    m->nms_iou = r->nms_thresh;
    free(s);
}

/* Binds every conv node of m->graph to its tensors, copied into one block
 * (m->graph_weights); nodes sharing a `weights` name share the floats. */
static cnp_status bind_graph(const char *path, const det_cnw *f, det_model *m, cnp_err *err)
{
    det_graph *g = m->graph;
    const det_cnw_tensor **wt = calloc(2 * (size_t)g->n_nodes, sizeof *wt);
    if (!wt) {
        cnp_err_set(err, "%s: out of memory", path);
        return CNP_ERR_NOMEM;
    }
    cnp_status result = CNP_ERR_FORMAT;
    uint64_t total = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        const det_node *n = &g->nodes[i];
        if (n->op != DET_OP_CONV)
            continue;
        uint32_t wd[4] = {(uint32_t)n->cout, (uint32_t)n->cin, (uint32_t)n->k, (uint32_t)n->k};
        uint32_t bd[1] = {(uint32_t)n->cout};
        wt[2 * i] = graph_tensor(path, f, n, "weight", 4, wd, err);
        wt[2 * i + 1] = wt[2 * i] ? graph_tensor(path, f, n, "bias", 1, bd, err) : NULL;
        if (!wt[2 * i + 1])
            goto out;
        bool first = true;
        for (int j = 0; j < i && first; j++)
            first = wt[2 * j] != wt[2 * i];
        if (first)
            total += (wt[2 * i]->bytes + wt[2 * i + 1]->bytes) / 4;
    }
    m->graph_weights = malloc((size_t)(total ? total : 1) * sizeof(float));
    if (!m->graph_weights) {
        cnp_err_set(err, "%s: out of memory", path);
        result = CNP_ERR_NOMEM;
        goto out;
    }
    float *next = m->graph_weights;
    for (int i = 0; i < g->n_nodes; i++) {
        det_node *n = &g->nodes[i];
        if (n->op != DET_OP_CONV)
            continue;
        int j = 0;
        while (j < i && wt[2 * j] != wt[2 * i])
            j++;
        if (j < i) { /* shared with an earlier node */
            n->weight = g->nodes[j].weight;
            n->bias = g->nodes[j].bias;
            continue;
        }
        n->weight = next;
        if ((result = det_cnw_tensor_copy(path, f, wt[2 * i], next, err)) != CNP_OK)
            goto out;
        next += wt[2 * i]->bytes / 4;
        n->bias = next;
        if ((result = det_cnw_tensor_copy(path, f, wt[2 * i + 1], next, err)) != CNP_OK)
            goto out;
        next += wt[2 * i + 1]->bytes / 4;
    }
    graph_summary(m);
    result = CNP_OK;
out:
    free(wt);
    return result;
}

/* ---- public ------------------------------------------------------------ */

/* The optional "resolution_m" of either architecture (FORMAT.md). */
static cnp_status parse_resolution(const char *path, const char *arch, size_t len, det_model *m,
                                   cnp_err *err)
{
    cJSON *root = cJSON_ParseWithLength(arch, len);
    const cJSON *res = cJSON_GetObjectItemCaseSensitive(root, "resolution_m");
    cnp_status result = CNP_OK;
    m->resolution_m = DET_RESOLUTION_M_DEFAULT;
    if (res && (!cJSON_IsNumber(res) || !(res->valuedouble > 0 && res->valuedouble <= 1000))) {
        cnp_err_set(err, "%s: architecture: resolution_m must be metres per pixel in (0, 1000]",
                    path);
        result = CNP_ERR_FORMAT;
    } else if (res) {
        m->resolution_m = res->valuedouble;
    }
    cJSON_Delete(root);
    return result;
}

/* The model of a file image: the container (det_cnw_open), then the
 * architecture of its version bound to its tensors. */
static cnp_status parse_file(const char *path, const uint8_t *d, size_t len, det_model *m,
                             cnp_err *err)
{
    det_cnw f;
    cnp_status result = det_cnw_open(path, d, len, &f, err);
    if (result != CNP_OK)
        return result;
    m->format_version = f.version;
    if (f.version == DET_CNW_VERSION_GRAPH) {
        result = det_graph_from_json(path, f.arch, f.arch_len, &m->graph, m->name,
                                     sizeof m->name, m->version, sizeof m->version, err);
        if (result == CNP_OK)
            result = bind_graph(path, &f, m, err);
    } else {
        result = det_crown_from_json(path, f.arch, f.arch_len, m, err);
        if (result == CNP_OK)
            result = bind_tensors(path, &f, m, err);
    }
    if (result == CNP_OK)
        result = parse_resolution(path, (const char *)f.arch, f.arch_len, m, err);
    det_cnw_close(&f);
    return result;
}

cnp_status det_model_parse(const void *data, size_t len, const char *path, det_model **out,
                           cnp_err *err)
{
    *out = NULL;
    det_model *m = calloc(1, sizeof *m);
    if (!m) {
        cnp_err_set(err, "%s: out of memory", path);
        return CNP_ERR_NOMEM;
    }
    snprintf(m->path, sizeof m->path, "%s", path);
    /* No data at all reads as an empty file. */
    static const uint8_t empty[1];
    cnp_status result = parse_file(path, data ? data : empty, data ? len : 0, m, err);
    if (result != CNP_OK) {
        det_model_free(m);
        return result;
    }
    *out = m;
    return CNP_OK;
}

cnp_status det_model_load(const char *path, det_model **out, cnp_err *err)
{
    *out = NULL;
    cnp_buf file = {0};
    cnp_status result = cnp_file_read(path, CNW_MAX_FILE, &file, err);
    if (result == CNP_OK)
        result = det_model_parse(file.data, file.len, path, out, err);
    cnp_buf_free(&file);
    return result;
}

void det_model_free(det_model *m)
{
    if (!m)
        return;
    det_graph_free(m->graph);
    free(m->graph_weights);
    for (int i = 0; i < m->n_layers; i++) {
        free(m->layers[i].weight);
        free(m->layers[i].bias);
    }
    free(m->layers);
    free(m);
}

const char *det_model_version(const det_model *m)
{
    return m->version;
}

double det_model_nms_iou(const det_model *m)
{
    return m->nms_iou;
}

double det_model_resolution_m(const det_model *m)
{
    return m->resolution_m;
}

int det_model_stride(const det_model *m)
{
    return m->stride;
}

const det_graph *det_model_graph(const det_model *m)
{
    return m->graph;
}

void det_model_out_size(const det_model *m, uint32_t w, uint32_t h, uint32_t *ow,
                        uint32_t *oh)
{
    if (m->graph) { /* the finest level's cells */
        int *s = graph_shapes(m, w, h);
        int cls = m->graph->retina.cls_node[0], n = m->graph->n_nodes;
        *oh = s ? (uint32_t)s[n + cls] : 0;
        *ow = s ? (uint32_t)s[2 * n + cls] : 0;
        free(s);
        return;
    }
    for (int i = 0; i < m->n_layers; i++) {
        if (m->layers[i].type == DET_LAYER_MAXPOOL) {
            w /= 2;
            h /= 2;
        }
    }
    *ow = w;
    *oh = h;
}

double det_model_flops(const det_model *m, uint32_t w, uint32_t h)
{
    double total = 0;
    if (m->graph) {
        const det_graph *g = m->graph;
        int *s = graph_shapes(m, w, h);
        for (int i = 0; s && i < g->n_nodes; i++) {
            const det_node *n = &g->nodes[i];
            if (n->op == DET_OP_CONV)
                total += 2.0 * n->cin * n->cout * n->k * n->k * (double)s[g->n_nodes + i] *
                         s[2 * g->n_nodes + i];
        }
        free(s);
        return total;
    }
    for (int i = 0; i < m->n_layers; i++) {
        const det_layer *l = &m->layers[i];
        if (l->type == DET_LAYER_MAXPOOL) {
            w /= 2;
            h /= 2;
        } else {
            total += 2.0 * l->in * l->out * l->k * l->k * (double)w * h;
        }
    }
    return total;
}

/* Version 2: the largest receptive field of a head output, propagated
 * through the graph (an add or upsample_add takes the larger of its two
 * inputs' fields). */
static int graph_receptive_field(const det_graph *g)
{
    long *rf = malloc(2 * (size_t)g->n_nodes * sizeof *rf);
    if (!rf)
        return INT_MAX;
    long *jump = rf + g->n_nodes, best = 1;
    for (int i = 0; i < g->n_nodes; i++) {
        const det_node *n = &g->nodes[i];
        rf[i] = 1, jump[i] = 1;
        if (n->op == DET_OP_INPUT)
            continue;
        rf[i] = rf[n->in], jump[i] = jump[n->in];
        if (n->op == DET_OP_CONV || n->op == DET_OP_MAXPOOL) {
            int d = n->op == DET_OP_CONV ? n->dilation : 1;
            rf[i] += (long)(n->k - 1) * d * jump[i];
            jump[i] *= n->stride;
        }
        if (n->in2 >= 0 && rf[n->in2] > rf[i])
            rf[i] = rf[n->in2];
        if (rf[i] > (1L << 24)) /* past any image; stop growing */
            rf[i] = 1L << 24;
        if (jump[i] > (1L << 24))
            jump[i] = 1L << 24;
    }
    for (int l = 0; l < g->retina.n_levels; l++) {
        if (rf[g->retina.cls_node[l]] > best)
            best = rf[g->retina.cls_node[l]];
        if (rf[g->retina.box_node[l]] > best)
            best = rf[g->retina.box_node[l]];
    }
    free(rf);
    return (int)best;
}

int det_model_receptive_field(const det_model *m)
{
    if (m->graph)
        return graph_receptive_field(m->graph);
    int rf = 1, jump = 1;
    for (int i = 0; i < m->n_layers; i++) {
        const det_layer *l = &m->layers[i];
        if (l->type == DET_LAYER_MAXPOOL) {
            rf += jump;
            jump *= 2;
        } else {
            rf += (l->k - 1) * l->dilation * jump;
        }
    }
    return rf;
}
