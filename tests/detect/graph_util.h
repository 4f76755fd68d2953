/* Building det_graph values in memory for tests: nodes appended in order,
 * seeded uniform weights. */
#ifndef CANOPY_TEST_GRAPH_UTIL_H
#define CANOPY_TEST_GRAPH_UTIL_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "detect/graph.h"

typedef struct tg_graph {
    det_graph g;
    det_node nodes[64];
    float *owned[64];
    int n_owned;
    uint32_t seed;
} tg_graph;

static inline float tg_rand(uint32_t *s)
{
    *s = *s * 1664525u + 1013904223u;
    return (float)((*s >> 8) & 0xffffff) / (float)0x1000000 * 2.0f - 1.0f;
}

static inline void tg_init(tg_graph *t, uint32_t seed)
{
    memset(t, 0, sizeof *t);
    t->seed = seed;
    t->g.nodes = t->nodes;
    t->nodes[0] = (det_node){.op = DET_OP_INPUT, .name = "input", .in = -1, .in2 = -1};
    t->g.n_nodes = 1;
}

static inline int tg_add(tg_graph *t, det_node n)
{
    int i = t->g.n_nodes++;
    snprintf(n.name, sizeof n.name, "n%d", i);
    t->nodes[i] = n;
    return i;
}

/* A conv with weights uniform in +-gain * sqrt(3 / fan_in) and biases
 * uniform in bias0 +- 0.1. */
static inline int tg_conv(tg_graph *t, int in, int cin, int cout, int k, int s, int p, int d,
                          int add, bool relu, float gain, float bias0)
{
    size_t nw = (size_t)cout * cin * k * k;
    float *w = malloc(nw * sizeof *w), *b = malloc((size_t)cout * sizeof *b);
    float a = gain * sqrtf(3.0f / (float)(cin * k * k));
    for (size_t i = 0; i < nw; i++)
        w[i] = a * tg_rand(&t->seed);
    for (int i = 0; i < cout; i++)
        b[i] = bias0 + 0.1f * tg_rand(&t->seed);
    t->owned[t->n_owned++] = w;
    t->owned[t->n_owned++] = b;
    return tg_add(t, (det_node){.op = DET_OP_CONV, .in = in, .in2 = add, .cin = cin,
                                .cout = cout, .k = k, .stride = s, .pad = p, .dilation = d,
                                .act = relu ? DET_ACT_RELU : DET_ACT_NONE, .weight = w,
                                .bias = b});
}

/* The same conv weights on another input (shared heads). */
static inline int tg_conv_shared(tg_graph *t, int like, int in)
{
    det_node n = t->nodes[like];
    n.in = in;
    return tg_add(t, n);
}

static inline void tg_free(tg_graph *t)
{
    for (int i = 0; i < t->n_owned; i++)
        free(t->owned[i]);
}

/* A retina with scale 1 (min_size / max_size the image's) and no padding,
 * one anchor, for node-by-node tests. */
static inline void tg_retina_identity(det_retina *r, int h, int w)
{
    memset(r, 0, sizeof *r);
    for (int c = 0; c < 3; c++) {
        r->mean[c] = 0.45f;
        r->std[c] = 0.225f;
    }
    r->min_size = h < w ? h : w;
    r->max_size = h < w ? w : h;
    r->size_divisible = 1;
    r->n_levels = 1;
    r->n_sizes = r->n_ratios = 1;
    r->sizes[0][0] = 8;
    r->ratios[0][0] = 1;
    r->box_weights[0] = r->box_weights[1] = r->box_weights[2] = r->box_weights[3] = 1;
    r->bbox_clip = logf(1000.0f / 16.0f);
    r->score_thresh = 0.05f;
    r->nms_thresh = 0.5f;
    r->topk_candidates = 10;
    r->detections_per_img = 10;
    r->num_classes = 1;
}

#endif
