/* det_graph itself: node lookup, the shape of every node for an input size,
 * and det_graph_check, which holds a graph to the rules of models/FORMAT.md
 * (references, op fields, retina fields, head channels) whoever built it.
 * The architecture JSON is graph_json.c's; the .cnw container around it,
 * cnw.c's. */
#include "detect/graph.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *op_names[] = {
    [DET_OP_INPUT] = "input",
    [DET_OP_CONV] = "conv",
    [DET_OP_MAXPOOL] = "maxpool",
    [DET_OP_UPSAMPLE_ADD] = "upsample_add",
    [DET_OP_RELU] = "relu",
};

const char *det_graph_op_name(enum det_op op)
{
    return (unsigned)op < sizeof op_names / sizeof op_names[0] ? op_names[op] : "?";
}

int det_graph_find(const det_graph *g, const char *name)
{
    for (int i = 0; i < g->n_nodes; i++)
        if (strcmp(g->nodes[i].name, name) == 0)
            return i;
    return -1;
}

void det_graph_last_use(const det_graph *g, bool keep_heads, int *last)
{
    int nn = g->n_nodes;
    for (int i = 0; i < nn; i++)
        last[i] = i;
    for (int i = 1; i < nn; i++) {
        last[g->nodes[i].in] = i;
        if (g->nodes[i].in2 >= 0)
            last[g->nodes[i].in2] = i;
    }
    for (int l = 0; keep_heads && l < g->retina.n_levels; l++)
        last[g->retina.cls_node[l]] = last[g->retina.box_node[l]] = nn;
}

void det_graph_free(det_graph *g)
{
    if (!g)
        return;
    free(g->nodes);
    free(g);
}

/* ---- shapes ------------------------------------------------------------ */

/* floor((n + 2p - d(k-1) - 1) / s) + 1, or 0 when the window does not fit. */
static int window_out(int n, int k, int s, int p, int d)
{
    long num = (long)n + 2L * p - (long)d * (k - 1) - 1;
    return num < 0 ? 0 : (int)(num / s + 1);
}

static bool ref_ok(int ref, int i)
{
    return ref >= 0 && ref < i;
}

cnp_status det_graph_shapes(const det_graph *g, int in_h, int in_w, int *c, int *h, int *w,
                            cnp_err *err)
{
    for (int i = 0; i < g->n_nodes; i++) {
        const det_node *n = &g->nodes[i];
        if (n->op == DET_OP_INPUT) {
            if (i != 0) {
                cnp_err_set(err, "node %s: input node must be node 0", n->name);
                return CNP_ERR_FORMAT;
            }
            c[i] = 3, h[i] = in_h, w[i] = in_w;
            continue;
        }
        if (!ref_ok(n->in, i)) {
            cnp_err_set(err, "node %s: input %d is not an earlier node", n->name, n->in);
            return CNP_ERR_FORMAT;
        }
        int a = n->in;
        switch (n->op) {
        case DET_OP_CONV:
            if (n->cin != c[a]) {
                cnp_err_set(err, "node %s: cin %d, but %s has %d channels", n->name, n->cin,
                            g->nodes[a].name, c[a]);
                return CNP_ERR_FORMAT;
            }
            c[i] = n->cout;
            h[i] = window_out(h[a], n->k, n->stride, n->pad, n->dilation);
            w[i] = window_out(w[a], n->k, n->stride, n->pad, n->dilation);
            break;
        case DET_OP_MAXPOOL:
            c[i] = c[a];
            h[i] = window_out(h[a], n->k, n->stride, n->pad, 1);
            w[i] = window_out(w[a], n->k, n->stride, n->pad, 1);
            break;
        case DET_OP_UPSAMPLE_ADD:
            if (!ref_ok(n->in2, i)) {
                cnp_err_set(err, "node %s: top %d is not an earlier node", n->name, n->in2);
                return CNP_ERR_FORMAT;
            }
            if (c[n->in2] != c[a]) {
                cnp_err_set(err, "node %s: top %s has %d channels, input %s has %d", n->name,
                            g->nodes[n->in2].name, c[n->in2], g->nodes[a].name, c[a]);
                return CNP_ERR_FORMAT;
            }
            c[i] = c[a], h[i] = h[a], w[i] = w[a];
            break;
        case DET_OP_RELU: c[i] = c[a], h[i] = h[a], w[i] = w[a]; break;
        default:
            cnp_err_set(err, "node %s: unknown op %d", n->name, (int)n->op);
            return CNP_ERR_FORMAT;
        }
        if (h[i] < 1 || w[i] < 1) {
            cnp_err_set(err, "node %s: empty output for a %dx%d input (%s is %dx%d)", n->name,
                        in_h, in_w, g->nodes[a].name, h[a], w[a]);
            return CNP_ERR_FORMAT;
        }
        if (n->op == DET_OP_CONV && n->in2 >= 0) {
            int b = n->in2;
            if (!ref_ok(b, i) || c[b] != c[i] || h[b] != h[i] || w[b] != w[i]) {
                cnp_err_set(err, "node %s: add %s is %dx%dx%d, the output %dx%dx%d", n->name,
                            ref_ok(b, i) ? g->nodes[b].name : "?", ref_ok(b, i) ? c[b] : 0,
                            ref_ok(b, i) ? h[b] : 0, ref_ok(b, i) ? w[b] : 0, c[i], h[i],
                            w[i]);
                return CNP_ERR_FORMAT;
            }
        }
    }
    return CNP_OK;
}

/* ---- validation -------------------------------------------------------- */

static bool str_ok(const char *s, size_t cap)
{
    return s[0] != '\0' && memchr(s, '\0', cap) != NULL;
}

static cnp_status check_node(const det_graph *g, int i, const char *what, cnp_err *err)
{
    const det_node *n = &g->nodes[i];
    if (!str_ok(n->name, sizeof n->name)) {
        cnp_err_set(err, "%s: node %d has no name", what, i);
        return CNP_ERR_FORMAT;
    }
    if ((i == 0) != (n->op == DET_OP_INPUT)) {
        cnp_err_set(err, "%s: node %s: node 0, and only node 0, is the input", what, n->name);
        return CNP_ERR_FORMAT;
    }
    for (int j = 0; j < i; j++) {
        if (strcmp(g->nodes[j].name, n->name) == 0) {
            cnp_err_set(err, "%s: node %s named twice", what, n->name);
            return CNP_ERR_FORMAT;
        }
    }
    bool ok = true;
    switch (n->op) {
    case DET_OP_INPUT: ok = n->in == -1 && n->in2 == -1; break;
    case DET_OP_CONV:
        ok = n->cin >= 1 && n->cin <= 65536 && n->cout >= 1 && n->cout <= 65536 &&
             n->k >= 1 && n->k <= 31 && n->stride >= 1 && n->stride <= 16 &&
             n->dilation >= 1 && n->dilation <= 64 && n->pad >= 0 &&
             n->pad <= n->dilation * (n->k - 1) &&
             (n->act == DET_ACT_NONE || n->act == DET_ACT_RELU) &&
             str_ok(n->weights, sizeof n->weights) && (n->in2 == -1 || ref_ok(n->in2, i));
        break;
    case DET_OP_MAXPOOL:
        ok = n->k >= 1 && n->k <= 31 && n->stride >= 1 && n->stride <= 16 && n->pad >= 0 &&
             n->pad <= n->k / 2 && n->in2 == -1;
        break;
    case DET_OP_UPSAMPLE_ADD: ok = ref_ok(n->in2, i); break;
    case DET_OP_RELU: ok = n->in2 == -1; break;
    default: ok = false;
    }
    if (!ok || (i > 0 && !ref_ok(n->in, i))) {
        cnp_err_set(err,
                    "%s: node %s: fields out of range for op %s (references must name "
                    "earlier nodes; conv: k 1..31, stride 1..16, dilation 1..64, pad "
                    "0..d(k-1); maxpool: pad <= k/2)",
                    what, n->name, det_graph_op_name(n->op));
        return CNP_ERR_FORMAT;
    }
    if (n->op == DET_OP_CONV) {
        for (int j = 1; j < i; j++) {
            const det_node *o = &g->nodes[j];
            if (o->op == DET_OP_CONV && strcmp(o->weights, n->weights) == 0 &&
                (o->cin != n->cin || o->cout != n->cout || o->k != n->k)) {
                cnp_err_set(err, "%s: node %s: weights %s shared with node %s of another shape",
                            what, n->name, n->weights, o->name);
                return CNP_ERR_FORMAT;
            }
        }
    }
    return CNP_OK;
}

static bool pos_finite(double v)
{
    return isfinite(v) && v > 0;
}

static cnp_status check_retina(const det_graph *g, const char *what, cnp_err *err)
{
    const det_retina *r = &g->retina;
    for (int i = 0; i < 3; i++) {
        if (!isfinite(r->mean[i]) || !pos_finite(r->std[i])) {
            cnp_err_set(err, "%s: input mean/std %d invalid (std must be > 0)", what, i);
            return CNP_ERR_FORMAT;
        }
    }
    if (r->min_size < 1 || r->min_size > 8192 || r->max_size < r->min_size ||
        r->max_size > 16384 || r->size_divisible < 1 || r->size_divisible > 256) {
        cnp_err_set(err,
                    "%s: input sizes invalid (1 <= min_size <= max_size <= 16384, "
                    "size_divisible 1..256)",
                    what);
        return CNP_ERR_FORMAT;
    }
    if (r->n_levels < 1 || r->n_levels > DET_GRAPH_MAX_LEVELS || r->n_sizes < 1 ||
        r->n_sizes > DET_GRAPH_MAX_ANCHORS || r->n_ratios < 1 ||
        r->n_ratios > DET_GRAPH_MAX_ANCHORS) {
        cnp_err_set(err, "%s: anchors: 1..%d levels of 1..%d sizes and ratios", what,
                    DET_GRAPH_MAX_LEVELS, DET_GRAPH_MAX_ANCHORS);
        return CNP_ERR_FORMAT;
    }
    for (int l = 0; l < r->n_levels; l++) {
        for (int k = 0; k < r->n_sizes; k++) {
            if (!pos_finite(r->sizes[l][k])) {
                cnp_err_set(err, "%s: anchors: level %d size %d must be > 0", what, l, k);
                return CNP_ERR_FORMAT;
            }
        }
        for (int k = 0; k < r->n_ratios; k++) {
            if (!pos_finite(r->ratios[l][k])) {
                cnp_err_set(err, "%s: anchors: level %d aspect ratio %d must be > 0", what, l,
                            k);
                return CNP_ERR_FORMAT;
            }
        }
    }
    for (int k = 0; k < 4; k++) {
        if (!pos_finite(r->box_weights[k])) {
            cnp_err_set(err, "%s: box_coder weights must be > 0", what);
            return CNP_ERR_FORMAT;
        }
    }
    if (!pos_finite(r->bbox_clip) || !(r->score_thresh >= 0 && r->score_thresh <= 1) ||
        !(r->nms_thresh > 0 && r->nms_thresh <= 1) || r->topk_candidates < 1 ||
        r->topk_candidates > 1000000 || r->detections_per_img < 1 ||
        r->detections_per_img > 1000000) {
        cnp_err_set(err,
                    "%s: box_coder clip must be > 0; postprocess needs score_thresh in "
                    "[0, 1], nms_thresh in (0, 1], topk_candidates and detections_per_img "
                    ">= 1",
                    what);
        return CNP_ERR_FORMAT;
    }
    if (r->num_classes < 1 || r->num_classes > DET_GRAPH_MAX_CLASSES) {
        cnp_err_set(err, "%s: num_classes %d out of range 1..%d", what, r->num_classes,
                    DET_GRAPH_MAX_CLASSES);
        return CNP_ERR_FORMAT;
    }
    for (int k = 0; k < r->num_classes; k++) {
        if (!str_ok(r->labels[k], sizeof r->labels[k])) {
            cnp_err_set(err, "%s: label %d missing or too long", what, k);
            return CNP_ERR_FORMAT;
        }
    }
    return CNP_OK;
}

/* The heads: conv nodes of A*K and A*4 channels, both of a level's one size. */
static cnp_status check_levels(const det_graph *g, const int *c, const int *h, const int *w,
                               const char *what, cnp_err *err)
{
    const det_retina *r = &g->retina;
    int a = r->n_sizes * r->n_ratios;
    for (int l = 0; l < r->n_levels; l++) {
        int cls = r->cls_node[l], box = r->box_node[l];
        if (cls < 1 || cls >= g->n_nodes || box < 1 || box >= g->n_nodes ||
            g->nodes[cls].op != DET_OP_CONV || g->nodes[box].op != DET_OP_CONV) {
            cnp_err_set(err, "%s: level %d: cls and box must name conv nodes", what, l);
            return CNP_ERR_FORMAT;
        }
        if (c[cls] != a * r->num_classes || c[box] != a * 4) {
            cnp_err_set(err,
                        "%s: level %d: node %s has %d channels, node %s %d; %d anchors of %d "
                        "classes need %d and %d",
                        what, l, g->nodes[cls].name, c[cls], g->nodes[box].name, c[box], a,
                        r->num_classes, a * r->num_classes, a * 4);
            return CNP_ERR_FORMAT;
        }
        if (h[cls] != h[box] || w[cls] != w[box]) {
            cnp_err_set(err, "%s: level %d: nodes %s and %s differ in size", what, l,
                        g->nodes[cls].name, g->nodes[box].name);
            return CNP_ERR_FORMAT;
        }
    }
    return CNP_OK;
}

cnp_status det_graph_check(const det_graph *g, const char *what, cnp_err *err)
{
    if (g->n_nodes < 2 || g->n_nodes > DET_GRAPH_MAX_NODES || !g->nodes) {
        cnp_err_set(err, "%s: graph of %d nodes (2..%d)", what, g->n_nodes,
                    DET_GRAPH_MAX_NODES);
        return CNP_ERR_FORMAT;
    }
    cnp_status result;
    for (int i = 0; i < g->n_nodes; i++)
        if ((result = check_node(g, i, what, err)) != CNP_OK)
            return result;
    if (g->input.kind == DET_INPUT_CROP)
        return det_classifier_check(g, what, err);
    if ((result = check_retina(g, what, err)) != CNP_OK)
        return result;
    int *s = malloc(3 * (size_t)g->n_nodes * sizeof *s);
    if (!s) {
        cnp_err_set(err, "%s: out of memory", what);
        return CNP_ERR_NOMEM;
    }
    int d = g->retina.size_divisible;
    int side = (g->retina.min_size + d - 1) / d * d;
    int *c = s, *h = s + g->n_nodes, *w = s + 2 * g->n_nodes;
    result = det_graph_shapes(g, side, side, c, h, w, err);
    if (result != CNP_OK)
        cnp_err_prefix(err, "%s: input %dx%d", what, side, side);
    else
        result = check_levels(g, c, h, w, what, err);
    free(s);
    return result;
}
