/* A small RetinaNet-shaped graph for tests (build_retina) and the
 * detection matching the engine tests share (match_count). */
#ifndef CANOPY_TEST_RETINA_UTIL_H
#define CANOPY_TEST_RETINA_UTIL_H

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#include "canopy/detect.h"
#include "detect/graph_util.h"

/* A RetinaNet-shaped graph: stem, pool, a residual block, two backbone
 * stages, an FPN top-down path, a P5 from relu(P4), shared heads on three
 * levels; 6 anchors and 2 classes. cls bias near logit(score_thresh) so
 * that hundreds of candidates pass and top-k cuts. */
static inline void build_retina(tg_graph *t)
{
    tg_init(t, 2024);
    int stem = tg_conv(t, 0, 3, 8, 3, 2, 1, 1, -1, true, 1.4f, 0.0f);
    int pool = tg_add(t, (det_node){.op = DET_OP_MAXPOOL, .in = stem, .in2 = -1, .k = 3,
                                    .stride = 2, .pad = 1, .dilation = 1});
    int proj = tg_conv(t, pool, 8, 16, 1, 1, 0, 1, -1, false, 1.0f, 0.0f);
    int c3 = tg_conv(t, pool, 8, 16, 3, 1, 1, 1, proj, true, 1.0f, 0.0f);
    int c4 = tg_conv(t, c3, 16, 16, 3, 2, 1, 1, -1, true, 1.4f, 0.0f);
    int lat4 = tg_conv(t, c4, 16, 8, 1, 1, 0, 1, -1, false, 1.0f, 0.0f);
    int lat3 = tg_conv(t, c3, 16, 8, 1, 1, 0, 1, -1, false, 1.0f, 0.0f);
    int td3 = tg_add(t, (det_node){.op = DET_OP_UPSAMPLE_ADD, .in = lat3, .in2 = lat4});
    int p3 = tg_conv(t, td3, 8, 8, 3, 1, 1, 1, -1, false, 1.0f, 0.0f);
    int p4 = tg_conv(t, lat4, 8, 8, 3, 1, 1, 1, -1, false, 1.0f, 0.0f);
    int r4 = tg_add(t, (det_node){.op = DET_OP_RELU, .in = p4, .in2 = -1});
    int p5 = tg_conv(t, r4, 8, 8, 3, 2, 1, 1, -1, false, 1.0f, 0.0f);
    int levels[3] = {p3, p4, p5};
    det_retina *r = &t->g.retina;
    tg_retina_identity(r, 1, 1);
    r->mean[0] = 0.485f, r->mean[1] = 0.456f, r->mean[2] = 0.406f;
    r->std[0] = 0.229f, r->std[1] = 0.224f, r->std[2] = 0.225f;
    r->min_size = 100;
    r->max_size = 150;
    r->size_divisible = 32;
    r->n_levels = 3;
    r->n_sizes = 2;
    r->n_ratios = 3;
    r->num_classes = 2;
    const int A = 6, K = 2;
    int cls1 = -1, cls2 = -1, box1 = -1, box2 = -1;
    for (int l = 0; l < 3; l++) {
        float s0 = 16.0f * (float)(1 << l);
        r->sizes[l][0] = s0;
        r->sizes[l][1] = s0 * 1.26f;
        r->ratios[l][0] = 0.5f;
        r->ratios[l][1] = 1.0f;
        r->ratios[l][2] = 2.0f;
        if (l == 0) {
            cls1 = tg_conv(t, levels[l], 8, 8, 3, 1, 1, 1, -1, true, 1.0f, 0.0f);
            cls2 = tg_conv(t, cls1, 8, A * K, 3, 1, 1, 1, -1, false, 1.0f, -2.5f);
            box1 = tg_conv(t, levels[l], 8, 8, 3, 1, 1, 1, -1, true, 1.0f, 0.0f);
            box2 = tg_conv(t, box1, 8, A * 4, 3, 1, 1, 1, -1, false, 0.5f, 0.0f);
            r->cls_node[l] = cls2;
            r->box_node[l] = box2;
        } else {
            int a = tg_conv_shared(t, cls1, levels[l]);
            r->cls_node[l] = tg_conv_shared(t, cls2, a);
            int b = tg_conv_shared(t, box1, levels[l]);
            r->box_node[l] = tg_conv_shared(t, box2, b);
        }
    }
    r->score_thresh = 0.05f;
    r->nms_thresh = 0.5f;
    r->topk_candidates = 120;
    r->detections_per_img = 400; /* above 3 x topk: NMS decides the count */
}

static inline int match_count(const det_detection *a, size_t na, const det_detection *b, size_t nb,
                       double *worst_score)
{
    int matched = 0;
    *worst_score = 0;
    for (size_t i = 0; i < na; i++) {
        det_box ba = {a[i].x0, a[i].y0, a[i].x1, a[i].y1};
        for (size_t j = 0; j < nb; j++) {
            det_box bb = {b[j].x0, b[j].y0, b[j].x1, b[j].y1};
            /* Boxes clipped to zero area (torchvision keeps them) have no
             * IoU: their corners must agree within 0.01 px instead. */
            bool degenerate = !(ba.x1 > ba.x0 && ba.y1 > ba.y0);
            bool same = degenerate ? fabsf(ba.x0 - bb.x0) <= 0.01f &&
                                         fabsf(ba.y0 - bb.y0) <= 0.01f &&
                                         fabsf(ba.x1 - bb.x1) <= 0.01f &&
                                         fabsf(ba.y1 - bb.y1) <= 0.01f
                                   : det_box_iou(&ba, &bb) >= 0.99;
            if (a[i].label == b[j].label && same &&
                fabsf(a[i].score - b[j].score) <= 1e-3f) {
                *worst_score = fmax(*worst_score, fabsf(a[i].score - b[j].score));
                matched++;
                break;
            }
            if (j + 1 == nb && getenv("GRAPH_TEST_VERBOSE"))
                printf("  unmatched %zu: %.2f %.2f %.2f %.2f score %.7f label %d\n", i, a[i].x0,
                       a[i].y0, a[i].x1, a[i].y1, a[i].score, a[i].label);
        }
    }
    return matched;
}

#endif
