/* bench_px_stride: the stride-2 convs of torchvision's ResNet50 (RetinaNet's
 * backbone at DeepForest's 800 x 800) and FPN on the OpenCL device, each
 * alone on the graph engine, by im2col + SGEMM (the path they had before
 * graph_conv_px took strides other than 1) and by graph_conv_px; rounds of
 * both in turn (a shared machine: load affects both alike), the median of
 * the rounds' medians; two stride-1 convs of the same output sizes for
 * reference. Weights random (timing only). CLBlast as configured: set
 * CANOPY_OPENCL_TUNING_FILE to a `canopy tune` file for tuned SGEMM.
 *
 *   bench_px_stride [ROUNDS [REPEATS [LAYER-NAME-SUBSTRING]]]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../tests/detect/graph_util.h"
#include "canopy/config.h"
#include "canopy/gpu.h"
#include "detect/graph.h"

typedef struct layer {
    const char *name;
    int cin, cout, k, s, p, in;
} layer;

static const layer LAYERS[] = {
    {"stem 7x7 s2 3->64", 3, 64, 7, 2, 3, 800},
    {"layer2.0.conv2 3x3 s2 128", 128, 128, 3, 2, 1, 200},
    {"layer3.0.conv2 3x3 s2 256", 256, 256, 3, 2, 1, 100},
    {"layer4.0.conv2 3x3 s2 512", 512, 512, 3, 2, 1, 50},
    {"layer2.0.downsample 1x1 s2 256->512", 256, 512, 1, 2, 0, 200},
    {"layer3.0.downsample 1x1 s2 512->1024", 512, 1024, 1, 2, 0, 100},
    {"layer4.0.downsample 1x1 s2 1024->2048", 1024, 2048, 1, 2, 0, 50},
    {"fpn p6 3x3 s2 2048->256", 2048, 256, 3, 2, 1, 25},
    {"fpn p7 3x3 s2 256->256", 256, 256, 3, 2, 1, 13},
    /* Stride-1 references of the same output sizes. */
    {"ref s1 7x7 3->64", 3, 64, 7, 1, 3, 400},
    {"ref s1 3x3 128", 128, 128, 3, 1, 1, 100},
};

int main(int argc, char **argv)
{
    int rounds = argc > 1 ? atoi(argv[1]) : 3, repeats = argc > 2 ? atoi(argv[2]) : 3;
    const char *only = argc > 3 ? argv[3] : NULL;
    if (rounds < 1 || rounds > 32)
        rounds = 3;
    cnp_config cfg;
    cnp_err err;
    ocl_ctx *ctx = NULL;
    if (cnp_config_load(&cfg, NULL, &err) != CNP_OK || ocl_ctx_create(&cfg.opencl, &ctx, &err))
        return fprintf(stderr, "%s\n", err.msg), 1;
    printf("device: %s; %d rounds of %d runs each, median of the rounds' medians\n",
           ocl_ctx_description(ctx), rounds, repeats);
    printf("%-40s %9s %11s %11s %7s %9s\n", "layer", "out", "gemm ms", "pixel ms", "g/p",
           "px GF/s");
    for (size_t l = 0; l < sizeof LAYERS / sizeof LAYERS[0]; l++) {
        const layer *L = &LAYERS[l];
        if (only && !strstr(L->name, only))
            continue;
        tg_graph t;
        tg_init(&t, 7);
        int src = L->cin == 3 ? 0 : tg_conv(&t, 0, 3, L->cin, 1, 1, 0, 1, -1, true, 1, 0);
        int node = tg_conv(&t, src, L->cin, L->cout, L->k, L->s, L->p, 1, -1, true, 1, 0);
        int box = tg_conv(&t, node, L->cout, 4, 1, 1, 0, 1, -1, false, 1, 0);
        tg_retina_identity(&t.g.retina, L->in, L->in);
        t.g.retina.num_classes = L->cout;
        t.g.retina.cls_node[0] = node;
        t.g.retina.box_node[0] = box;
        det_graph_engine *e = NULL;
        det_graph_engine_opts opts = {.conv = DET_CONV_GEMM, .max_batch = 1};
        if (det_graph_engine_create_opts(ctx, &t.g, (uint32_t)L->in, (uint32_t)L->in, &opts, &e,
                                         &err) != CNP_OK) {
            fprintf(stderr, "%s: %s\n", L->name, err.msg);
            tg_free(&t);
            continue;
        }
        double g[32], p[32];
        cnp_status st = CNP_OK;
        for (int r = 0; st == CNP_OK && r < rounds; r++) {
            st = det_graph_engine_time_node(e, node, DET_CONV_GEMM, repeats, L->in, L->in, &g[r],
                                            &err);
            if (st == CNP_OK)
                st = det_graph_engine_time_node(e, node, DET_CONV_PIXEL, repeats, L->in, L->in,
                                                &p[r], &err);
        }
        if (st != CNP_OK) {
            fprintf(stderr, "%s: %s\n", L->name, err.msg);
        } else {
            double gm = cnp_median(g, rounds), pm = cnp_median(p, rounds);
            int o = (L->in + 2 * L->p - L->k) / L->s + 1;
            double flop = 2.0 * o * o * L->cout * L->cin * L->k * L->k;
            printf("%-40s %4dx%-4d %11.2f %11.2f %7.2f %9.1f\n", L->name, o, o,
                   gm * 1e3, pm * 1e3, gm / pm, flop / pm * 1e-9);
            fflush(stdout);
        }
        det_graph_engine_free(e);
        tg_free(&t);
    }
    ocl_ctx_free(ctx);
    return 0;
}
