/* The graph engine (kernels/graph.cl + CLBlast) against the C reference:
 * every node of three small graphs on odd sizes (conv k 1/2/3/5/7, stride
 * 1/2, pad 0/1/2/3, dilation 1/2/3, residual add, 1x1 stride 2, maxpool 3/2
 * pad 1, upsample_add 13 -> 25, relu), each computed by the reference from
 * the device's own inputs so a kernel's error is not hidden by its inputs',
 * once with every conv on im2col + SGEMM, once with each direct kernel
 * (graph_conv, graph_conv_px) and once with Winograd where they apply (a
 * fourth graph for graph_conv_px's channel blocks and dilations 2 and 4,
 * a fifth for its stride 2 (7x7 stem, 3x3, 1x1 downsample) on a random
 * input and a NEON window, and graph_conv_px on a batch of two, stride 2
 * included; its stride-1 form graph_conv_pxv bit for bit against
 * det_px_vec_ref at each width); the choice of path remembered on
 * disk; the input transform on a NEON window at an odd scale; and a small
 * RetinaNet-shaped graph end to end on NEON windows (one image per path):
 * the same detections (count, IoU >= 0.99 each, or corners within 0.01 px
 * for boxes clipped to zero area, score within 1e-3, label); batches of
 * DeepForest patches against one patch at a time (bit-identical); the
 * candidate counts read on the device only (levels with no candidate, some,
 * and as many as their room) and one blocking wait per batch. `counts`
 * runs that last part alone on small sizes (the Oclgrind run,
 * tests/oclgrind). graph_im2col alone, as the GEMM path launches it, on a
 * batch of two against a C im2col bit for bit (`im2col`: that part alone,
 * the other Oclgrind run). */
#include <math.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "canopy/config.h"
#include "canopy/detect.h"
#include "canopy/image.h"
#include "detect/engine/graph_engine_internal.h"
#include "detect/graph_util.h"
#include "detect/retina_util.h"
#include "detect/patches.h"
#include "detect/test_detect_common.h"

/* Float32 sums of up to a few hundred products of O(1) values in another
 * order: a few 1e-6 of the output's magnitude; 1e-4 of it is 30x that and
 * still far below any indexing mistake (O(magnitude)). */
#define NODE_TOL 1e-4
/* The transform: a handful of float operations per value, the same order
 * on both sides; only division rounding may differ. */
#define INPUT_TOL 1e-5

static ocl_ctx *g_ctx;

static cl_mem upload(const uint8_t *rgba, uint32_t w, uint32_t h)
{
    cl_int rc;
    cl_mem b = clCreateBuffer(ocl_ctx_context(g_ctx), CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR,
                              (size_t)w * h * 4, (void *)rgba, &rc);
    REQUIRE(rc == CL_SUCCESS);
    return b;
}

static void random_rgba(uint8_t *p, size_t n, uint32_t seed)
{
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        p[i] = (uint8_t)(seed >> 24);
    }
}

static double max_abs(const float *a, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++)
        m = fmax(m, fabs(a[i]));
    return m;
}

static const char *path_name(enum det_conv_path p)
{
    return det_conv_path_name(p);
}

/* Every node of g on the device vs the reference fed the device's inputs,
 * with every conv node on `path` where it applies (DIRECT: the stride-1
 * nodes; PIXEL: every conv of these graphs, stride 1 and 2; WINOGRAD and
 * WINOGRAD4: the 3x3 stride-1 undilated ones; the others stay on GEMM). */
static void check_nodes_path(const char *name, const det_graph *g, const uint8_t *rgba,
                             uint32_t w, uint32_t h, enum det_conv_path path)
{
    cnp_err err;
    det_graph_engine *e = NULL;
    det_graph_engine_opts opts = {.conv = path};
    CHECK_FATAL(det_graph_engine_create_opts(g_ctx, g, w, h, &opts, &e, &err) == CNP_OK, "%s",
                err.msg);
    int direct_nodes = 0, stride1 = 0, convs = 0, wino_nodes = 0, wino_fit = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        const det_node *n = &g->nodes[i];
        enum det_conv_path p = det_graph_engine_node_path(e, i, NULL, NULL);
        bool fits = n->op == DET_OP_CONV && n->k == 3 && n->stride == 1 && n->dilation == 1;
        direct_nodes += p == DET_CONV_DIRECT || p == DET_CONV_PIXEL;
        wino_nodes += p == DET_CONV_WINOGRAD || p == DET_CONV_WINOGRAD4;
        wino_fit += fits;
        stride1 += n->op == DET_OP_CONV && n->stride == 1;
        convs += n->op == DET_OP_CONV;
        bool direct = (path == DET_CONV_DIRECT && n->stride == 1) ||
                      (path == DET_CONV_PIXEL && n->op == DET_OP_CONV);
        bool wino = path == DET_CONV_WINOGRAD || path == DET_CONV_WINOGRAD4;
        enum det_conv_path want = direct || (wino && fits) ? path : DET_CONV_GEMM;
        if (n->op == DET_OP_CONV && path != DET_CONV_AUTO)
            CHECK(p == want, "%s node %d runs %s", name, i, path_name(p));
    }
    if (path == DET_CONV_WINOGRAD || path == DET_CONV_WINOGRAD4)
        CHECK(wino_nodes == wino_fit, "%s: %d of %d 3x3 convs %s", name,
              wino_nodes, wino_fit, path_name(path));
    /* graph_conv applies to every stride-1 conv of these graphs,
     * graph_conv_px to every conv (strides 1 and 2). */
    if (path == DET_CONV_DIRECT)
        CHECK(direct_nodes == stride1 && stride1 > 0, "%s: %d of %d stride-1 convs direct",
              name, direct_nodes, stride1);
    if (path == DET_CONV_PIXEL)
        CHECK(direct_nodes == convs && convs > 0, "%s: %d of %d convs pixel", name,
              direct_nodes, convs);
    cl_mem buf = upload(rgba, w, h);
    int nn = g->n_nodes;
    int c[64], hh[64], ww[64];
    float *dev[64] = {0};
    int ph = 0, pw = 0;
    for (int i = 0; i < nn; i++)
        CHECK_FATAL(det_graph_engine_forward(e, buf, w, 0, 0, w, h, i, &dev[i], &ph, &pw, &err) ==
                        CNP_OK,
                    "%s node %d: %s", name, i, err.msg);
    REQUIRE(det_graph_ref_shapes(g, ph, pw, c, hh, ww, &err) == CNP_OK);
    for (int i = 1; i < nn; i++) {
        const det_node *n = &g->nodes[i];
        size_t sz = (size_t)c[i] * hh[i] * ww[i];
        float *ref = malloc(sz * sizeof *ref);
        switch (n->op) {
        case DET_OP_CONV:
            det_graph_ref_conv(n, dev[n->in], hh[n->in], ww[n->in],
                               n->in2 >= 0 ? dev[n->in2] : NULL, ref, hh[i], ww[i]);
            break;
        case DET_OP_MAXPOOL:
            det_graph_ref_maxpool(n, dev[n->in], c[i], hh[n->in], ww[n->in], ref, hh[i], ww[i]);
            break;
        case DET_OP_UPSAMPLE_ADD:
            det_graph_ref_upsample_add(dev[n->in], dev[n->in2], c[i], hh[i], ww[i], hh[n->in2],
                                       ww[n->in2], ref);
            break;
        default:
            for (size_t j = 0; j < sz; j++)
                ref[j] = fmaxf(dev[n->in][j], 0.0f);
        }
        double scale = fmax(1.0, max_abs(ref, sz)), worst = 0;
        for (size_t j = 0; j < sz; j++)
            worst = fmax(worst, fabs((double)ref[j] - dev[i][j]));
        printf("%s %s node %d (op %d k %d s %d p %d d %d) %dx%dx%d: max diff %.3g (scale "
               "%.3g)\n", name, path_name(det_graph_engine_node_path(e, i, NULL, NULL)), i,
               (int)n->op, n->k, n->stride, n->pad, n->dilation, c[i], hh[i], ww[i], worst,
               scale);
        CHECK(worst <= NODE_TOL * scale, "%s node %d: %g > %g", name, i, worst,
              NODE_TOL * scale);
        free(ref);
    }
    for (int i = 0; i < nn; i++)
        free(dev[i]);
    clReleaseMemObject(buf);
    det_graph_engine_free(e);
}

/* Every node of g on a random w x h image (seeded), by both conv paths. */
static void check_nodes(const char *name, const det_graph *g, uint32_t w, uint32_t h,
                        unsigned seed)
{
    uint8_t *rgba = malloc((size_t)w * h * 4);
    CHECK_FATAL(rgba != NULL);
    random_rgba(rgba, (size_t)w * h * 4, seed);
    check_nodes_path(name, g, rgba, w, h, DET_CONV_GEMM);
    check_nodes_path(name, g, rgba, w, h, DET_CONV_DIRECT);
    check_nodes_path(name, g, rgba, w, h, DET_CONV_WINOGRAD);
    check_nodes_path(name, g, rgba, w, h, DET_CONV_WINOGRAD4);
    check_nodes_path(name, g, rgba, w, h, DET_CONV_PIXEL);
    free(rgba);
}

/* Graph A on a 37 x 29 input: the conv variants, a pool, a relu node. */
static void test_nodes_a(void)
{
    tg_graph t;
    tg_init(&t, 7);
    int a = tg_conv(&t, 0, 3, 5, 7, 2, 3, 1, -1, true, 1.5f, 0.0f);  /* 19x15 */
    int b = tg_conv(&t, a, 5, 6, 3, 1, 2, 2, -1, false, 1.0f, 0.0f); /* dilation 2 */
    int c = tg_conv(&t, b, 6, 6, 1, 1, 0, 1, b, true, 1.0f, 0.0f);   /* 1x1 + residual */
    int d = tg_conv(&t, c, 6, 7, 3, 2, 0, 1, -1, false, 1.0f, 0.0f); /* stride 2 pad 0 */
    tg_add(&t, (det_node){.op = DET_OP_MAXPOOL, .in = c, .in2 = -1, .k = 3, .stride = 2,
                          .pad = 1, .dilation = 1});
    tg_add(&t, (det_node){.op = DET_OP_RELU, .in = b, .in2 = -1});
    int f = tg_conv(&t, 0, 3, 4, 1, 2, 0, 1, -1, true, 1.0f, 0.0f); /* 1x1 stride 2 */
    tg_retina_identity(&t.g.retina, 37, 29);
    t.g.retina.num_classes = 7;
    t.g.retina.cls_node[0] = d;
    t.g.retina.box_node[0] = f;
    check_nodes("A", &t.g, 29, 37, 3);
    tg_free(&t);
}

/* Graph C on 41 x 23 for the direct kernel's edges: k 5 pad 2 with more
 * than one block of output channels (GCOB 8) and input channels not a
 * multiple of GCIB (4), k 3 dilation 3 pad 1 (output smaller than the
 * input), k 3 pad 0, k 1 with a residual, k 7 pad 3 dilation 2, a 2 x 2
 * kernel (even) with pad 1 (output larger). */
static void test_nodes_c(void)
{
    tg_graph t;
    tg_init(&t, 13);
    int a = tg_conv(&t, 0, 3, 11, 5, 1, 2, 1, -1, true, 1.2f, 0.0f);
    int b = tg_conv(&t, a, 11, 9, 3, 1, 1, 3, -1, false, 1.0f, 0.0f);
    int c = tg_conv(&t, b, 9, 5, 3, 1, 0, 1, -1, true, 1.0f, 0.0f);
    int d = tg_conv(&t, c, 5, 5, 1, 1, 0, 1, c, true, 1.0f, 0.0f);
    int f = tg_conv(&t, d, 5, 17, 7, 1, 3, 2, -1, false, 1.0f, 0.0f);
    int k2 = tg_conv(&t, f, 17, 6, 2, 1, 1, 1, -1, true, 1.0f, 0.0f);
    tg_retina_identity(&t.g.retina, 41, 23);
    t.g.retina.num_classes = 6;
    t.g.retina.cls_node[0] = k2;
    t.g.retina.box_node[0] = tg_conv(&t, 0, 3, 4, 1, 1, 0, 1, -1, false, 1.0f, 0.0f);
    check_nodes("C", &t.g, 23, 41, 9);
    tg_free(&t);
}

/* Graph D on 35 x 21 for graph_conv_px's edges: output channels not a
 * multiple of its block (20 and 13 of 16 or 32, 40 = 32 + 8, 5 of 8),
 * dilation 2 and 4 (pad 0: output smaller than the input), a residual add,
 * ReLU on and off. */
static void test_nodes_d(void)
{
    tg_graph t;
    tg_init(&t, 17);
    int a = tg_conv(&t, 0, 3, 20, 3, 1, 1, 1, -1, true, 1.2f, 0.0f);
    int b = tg_conv(&t, a, 20, 40, 3, 1, 2, 2, -1, false, 1.0f, 0.0f);
    int c = tg_conv(&t, b, 40, 40, 3, 1, 4, 4, b, true, 1.0f, 0.0f);
    int d = tg_conv(&t, c, 40, 5, 3, 1, 0, 4, -1, false, 1.0f, 0.0f);
    int f = tg_conv(&t, d, 5, 13, 1, 1, 0, 1, -1, true, 1.0f, 0.0f);
    tg_retina_identity(&t.g.retina, 35, 21);
    t.g.retina.num_classes = 13;
    t.g.retina.cls_node[0] = f;
    t.g.retina.box_node[0] = tg_conv(&t, 0, 3, 4, 1, 1, 0, 1, -1, false, 1.0f, 0.0f);
    check_nodes("D", &t.g, 21, 35, 11);
    tg_free(&t);
}

/* Graph E for graph_conv_px at stride 2 (every conv by every path, as the
 * others): ResNet's stem (7 x 7 stride 2 pad 3, 3 input channels, 20
 * output channels: a partial block of 32), its 3 x 3 stride-2 pad-1 conv
 * with the 1 x 1 stride-2 downsample as the residual (13 channels: a
 * partial 16), 3 x 3 stride 2 pad 0 and dilation 2 pad 2 (40 = 32 + 8), a
 * 5 x 5 stride 2 pad 2 of 5 channels; odd and even maps from a random
 * 33 x 45 input (stem 17 x 23, then 9 x 12, 4 x 5 and 5 x 6) and from a
 * 201 x 187 window of a NEON image. */
static void build_e(tg_graph *t, int *cls, int *box)
{
    tg_init(t, 19);
    int stem = tg_conv(t, 0, 3, 20, 7, 2, 3, 1, -1, true, 1.2f, 0.0f);
    int ds = tg_conv(t, stem, 20, 13, 1, 2, 0, 1, -1, false, 1.0f, 0.0f);
    int b = tg_conv(t, stem, 20, 13, 3, 2, 1, 1, ds, true, 1.0f, 0.0f);
    *cls = tg_conv(t, b, 13, 40, 3, 2, 0, 1, -1, false, 1.0f, 0.0f);
    tg_conv(t, b, 13, 40, 3, 2, 2, 2, -1, true, 1.0f, 0.0f);
    int f = tg_conv(t, stem, 20, 5, 5, 2, 2, 1, -1, false, 1.0f, 0.0f);
    *box = tg_conv(t, f, 5, 4, 1, 1, 0, 1, -1, false, 1.0f, 0.0f);
}

static void retina_e(tg_graph *t, int cls, int box, int h, int w)
{
    tg_retina_identity(&t->g.retina, h, w);
    t->g.retina.num_classes = 40;
    t->g.retina.cls_node[0] = cls;
    t->g.retina.box_node[0] = box;
}

static void test_nodes_e(const cnp_config *cfg, const cnp_image *img)
{
    /* A context of its own: a context holds at most 32 programs (one per
     * build options), and the graphs before this one use most of them. */
    ocl_ctx *shared = g_ctx;
    cnp_err err;
    CHECK_FATAL(ocl_ctx_create(&cfg->opencl, &g_ctx, &err) == CNP_OK, "%s", err.msg);
    tg_graph t;
    int cls, box;
    build_e(&t, &cls, &box);
    retina_e(&t, cls, box, 45, 33);
    check_nodes("E", &t.g, 33, 45, 13);
    /* A 201 x 187 window of a real image (odd sizes: stem 101 x 94). */
    enum { WW = 201, WH = 187 };
    if (img->width >= WW && img->height >= WH) {
        uint8_t *win = malloc((size_t)WW * WH * 4);
        CHECK_FATAL(win != NULL);
        for (int y = 0; y < WH; y++)
            memcpy(win + (size_t)y * WW * 4,
                   img->rgba + ((size_t)(y + img->height - WH) * img->width +
                                img->width - WW) * 4,
                   (size_t)WW * 4);
        retina_e(&t, cls, box, WH, WW);
        check_nodes_path("E-neon", &t.g, win, WW, WH, DET_CONV_GEMM);
        check_nodes_path("E-neon", &t.g, win, WW, WH, DET_CONV_PIXEL);
        free(win);
    } else {
        CHECK(false, "image %ux%u smaller than %dx%d", img->width, img->height, WW, WH);
    }
    tg_free(&t);
    ocl_ctx_free(g_ctx);
    g_ctx = shared;
}

/* graph_conv_pxv (the pixel path's stride-1 kernel) at each of its widths
 * (4, 8, 16 pixels per work-item) bit for bit against its C reference
 * det_px_vec_ref fed the device's inputs, on a w x h input: widths not a
 * multiple of the run (a partial last run; maps narrower than one run),
 * input channels 3 to 40, output channels 4, 5, 13, 16, 20 and 40 (blocks
 * of 4, 8 and 16, partial ones), k 1, 3, 5, dilations 1, 2, 4 and 8 (most
 * taps in the padding), pad 0 (output smaller than the input), a residual
 * add, ReLU on and off, the input transform's output, a stride-2 conv's
 * (which stays graph_conv_px) and a 2 x 2 pool's as inputs; and the 2 x 2
 * stride-2 pools (graph_maxpool2, odd sizes: floor) equal to
 * det_graph_ref_maxpool's. */
static void test_pixel_vec(uint32_t w, uint32_t h)
{
    tg_graph t;
    tg_init(&t, 31);
    int a = tg_conv(&t, 0, 3, 20, 3, 1, 1, 1, -1, true, 1.2f, 0.0f);
    int b = tg_conv(&t, a, 20, 16, 5, 1, 2, 1, -1, false, 1.0f, 0.0f);
    int c = tg_conv(&t, b, 16, 16, 3, 1, 8, 8, b, true, 1.0f, 0.0f);
    int d = tg_conv(&t, c, 16, 40, 3, 1, 2, 2, -1, true, 1.0f, 0.0f);
    int s2 = tg_conv(&t, d, 40, 5, 3, 2, 1, 1, -1, false, 1.0f, 0.0f);
    int f = tg_conv(&t, s2, 5, 13, 3, 1, 4, 4, -1, false, 1.0f, 0.0f);
    tg_conv(&t, d, 40, 5, 3, 1, 0, 1, -1, true, 1.0f, 0.0f);
    tg_conv(&t, c, 16, 4, 1, 1, 0, 1, -1, false, 1.0f, 0.0f);
    int pa = tg_add(&t, (det_node){.op = DET_OP_MAXPOOL, .in = a, .in2 = -1, .k = 2,
                                   .stride = 2, .dilation = 1});
    tg_conv(&t, pa, 20, 5, 3, 1, 1, 1, -1, true, 1.0f, 0.0f);
    tg_add(&t, (det_node){.op = DET_OP_MAXPOOL, .in = f, .in2 = -1, .k = 2, .stride = 2,
                          .dilation = 1});
    tg_retina_identity(&t.g.retina, (int)h, (int)w);
    t.g.retina.num_classes = 13;
    t.g.retina.cls_node[0] = f;
    t.g.retina.box_node[0] = tg_conv(&t, 0, 3, 4, 1, 1, 0, 1, -1, false, 1.0f, 0.0f);
    uint8_t *rgba = malloc((size_t)w * h * 4);
    CHECK_FATAL(rgba != NULL);
    random_rgba(rgba, (size_t)w * h * 4, 41);
    cl_mem buf = upload(rgba, w, h);
    const int widths[] = {4, 8, 16};
    for (size_t k = 0; k < sizeof widths / sizeof widths[0]; k++) {
        cnp_err err;
        det_graph_engine *e = NULL;
        det_graph_engine_opts opts = {.conv = DET_CONV_PIXEL, .px_width = widths[k]};
        CHECK_FATAL(det_graph_engine_create_opts(g_ctx, &t.g, w, h, &opts, &e, &err) == CNP_OK,
                    "%s", err.msg);
        int nn = t.g.n_nodes, ch[64], hh[64], ww[64], ph = 0, pw = 0;
        float *dev[64] = {0};
        for (int i = 0; i < nn; i++)
            CHECK_FATAL(det_graph_engine_forward(e, buf, w, 0, 0, w, h, i, &dev[i], &ph, &pw,
                                                 &err) == CNP_OK,
                        "node %d: %s", i, err.msg);
        REQUIRE(det_graph_ref_shapes(&t.g, ph, pw, ch, hh, ww, &err) == CNP_OK);
        int vec = 0;
        for (int i = 1; i < nn; i++) {
            const det_node *n = &t.g.nodes[i];
            if (n->op == DET_OP_MAXPOOL) { /* graph_maxpool2 */
                size_t sz = (size_t)ch[i] * hh[i] * ww[i], bad = 0;
                float *ref = malloc((sz ? sz : 1) * sizeof *ref);
                CHECK_FATAL(ref != NULL);
                det_graph_ref_maxpool(n, dev[n->in], ch[i], hh[n->in], ww[n->in], ref, hh[i],
                                      ww[i]);
                for (size_t j = 0; j < sz; j++)
                    bad += ref[j] != dev[i][j];
                printf("graph_maxpool2 node %d %dx%dx%d: %zu differ\n", i, ch[i], hh[i], ww[i],
                       bad);
                CHECK(bad == 0, "maxpool node %d: %zu of %zu values differ", i, bad, sz);
                free(ref);
                continue;
            }
            if (!det_px_vec_applies(n))
                continue;
            vec++;
            CHECK(e->nodes[i].px_vw == widths[k], "node %d: width %d", i, e->nodes[i].px_vw);
            size_t sz = (size_t)ch[i] * hh[i] * ww[i], bad = 0;
            float *ref = malloc(sz * sizeof *ref);
            CHECK_FATAL(ref != NULL);
            det_px_vec_ref(n, dev[n->in], hh[n->in], ww[n->in], n->in2 >= 0 ? dev[n->in2] : NULL,
                           ref, hh[i], ww[i]);
            for (size_t j = 0; j < sz; j++)
                bad += memcmp(&ref[j], &dev[i][j], sizeof ref[j]) != 0;
            printf("graph_conv_pxv width %d node %d (k %d p %d d %d) %dx%dx%d: %zu differ\n",
                   widths[k], i, n->k, n->pad, n->dilation, ch[i], hh[i], ww[i], bad);
            CHECK(bad == 0, "width %d node %d: %zu of %zu values differ", widths[k], i, bad, sz);
            free(ref);
        }
        CHECK(vec == 9, "%d of 9 stride-1 convs on graph_conv_pxv", vec);
        CHECK(e->nodes[s2].px && e->nodes[s2].px_vw == 0, "the stride-2 conv on graph_conv_px");
        for (int i = 0; i < nn; i++)
            free(dev[i]);
        det_graph_engine_free(e);
    }
    clReleaseMemObject(buf);
    free(rgba);
    tg_free(&t);
}

/* graph_conv_px on a batch of two 37 x 53 inputs (planes c * 2 + n): the
 * 7 x 7 stride-2 stem, graph D's convs (cout 20, 40, 5: partial blocks;
 * dilation 2 and 4; a residual; ReLU on and off), a 3 x 3 stride-2 conv
 * with a 1 x 1 stride-2 residual (19 x 27 -> 10 x 14); each patch's output
 * equals the reference
 * run on that patch alone within NODE_TOL (channel c of patch n at plane
 * c * 2 + n: a mixed-up patch index is O(1) off). */
static void test_pixel_batch(void)
{
    enum { H = 53, W = 37, NB = 2 };
    tg_graph t;
    tg_init(&t, 23);
    int a = tg_conv(&t, 0, 3, 20, 7, 2, 3, 1, -1, true, 1.2f, 0.0f);
    int b = tg_conv(&t, a, 20, 40, 3, 1, 2, 2, -1, false, 1.0f, 0.0f);
    int c = tg_conv(&t, b, 40, 40, 3, 1, 4, 4, b, true, 1.0f, 0.0f);
    int ds = tg_conv(&t, c, 40, 13, 1, 2, 0, 1, -1, false, 1.0f, 0.0f);
    int d = tg_conv(&t, c, 40, 13, 3, 2, 1, 1, ds, true, 1.0f, 0.0f);
    int box = tg_conv(&t, 0, 3, 4, 1, 1, 0, 1, -1, false, 1.0f, 0.0f);
    int last = tg_conv(&t, d, 13, 5, 3, 1, 1, 4, -1, false, 1.0f, 0.0f);
    tg_retina_identity(&t.g.retina, H, W);
    t.g.retina.num_classes = 5; /* heads the engine checks, unused by a raw run */
    t.g.retina.cls_node[0] = last;
    t.g.retina.box_node[0] = box;
    cnp_err err;
    det_graph_engine *e = NULL;
    det_graph_engine_opts opts = {.conv = DET_CONV_PIXEL, .max_batch = NB};
    CHECK_FATAL(det_graph_engine_create_opts(g_ctx, &t.g, W, H, &opts, &e, &err) == CNP_OK, "%s",
                err.msg);
    CHECK_FATAL(det_graph_engine_max_batch(e) == NB, "batch %d", det_graph_engine_max_batch(e));
    for (int i = 1; i < t.g.n_nodes; i++)
        CHECK(det_graph_engine_node_path(e, i, NULL, NULL) == DET_CONV_PIXEL, "node %d: %s", i,
              path_name(det_graph_engine_node_path(e, i, NULL, NULL)));
    size_t plane = (size_t)H * W;
    float *in = malloc(sizeof(float) * 3 * NB * plane), *one = malloc(sizeof(float) * 3 * plane);
    CHECK_FATAL(in && one);
    uint32_t seed = 5;
    for (size_t j = 0; j < 3 * NB * plane; j++)
        in[j] = tg_rand(&seed);
    cl_command_queue q = ocl_ctx_queue(g_ctx);
    REQUIRE(clEnqueueWriteBuffer(q, det_graph_engine_input(e), CL_TRUE, 0,
                                 sizeof(float) * 3 * NB * plane, in, 0, NULL, NULL) == CL_SUCCESS);
    cl_mem out = NULL;
    int oc = 0, oh = 0, ow = 0;
    CHECK_FATAL(det_graph_engine_run_raw_batch(e, NB, H, W, &out, &oc, &oh, &ow, &err) == CNP_OK,
                "%s", err.msg);
    size_t op = (size_t)oh * ow;
    float *dev = malloc(sizeof(float) * (size_t)oc * NB * op);
    CHECK_FATAL(dev != NULL);
    REQUIRE(clEnqueueReadBuffer(q, out, CL_TRUE, 0, sizeof(float) * (size_t)oc * NB * op, dev, 0,
                                NULL, NULL) == CL_SUCCESS);
    for (int n = 0; n < NB; n++) {
        for (int ch = 0; ch < 3; ch++)
            memcpy(one + ch * plane, in + ((size_t)ch * NB + n) * plane, sizeof(float) * plane);
        float *ref = NULL;
        int rc = 0, rh = 0, rw = 0;
        REQUIRE(det_graph_ref_run_raw(&t.g, one, H, W, &ref, &rc, &rh, &rw, &err) == CNP_OK);
        CHECK_FATAL(rc == oc && rh == oh && rw == ow, "shape %dx%dx%d vs %dx%dx%d", rc, rh, rw,
                    oc, oh, ow);
        double scale = fmax(1.0, max_abs(ref, (size_t)rc * op)), worst = 0;
        for (int ch = 0; ch < oc; ch++)
            for (size_t j = 0; j < op; j++)
                worst = fmax(worst, fabs((double)ref[(size_t)ch * op + j] -
                                         dev[((size_t)ch * NB + n) * op + j]));
        printf("pixel batch of %d, patch %d: %dx%dx%d, max diff %.3g (scale %.3g)\n", NB, n, oc,
               oh, ow, worst, scale);
        CHECK(worst <= NODE_TOL * scale, "pixel batch patch %d: %g", n, worst);
        free(ref);
    }
    free(dev);
    free(in);
    free(one);
    det_graph_engine_free(e);
    tg_free(&t);
}

/* A paths file as written since format 5 (a line per conv node, in node
 * order: "<node> direct|gemm|winograd|pixel|winograd4 <direct ms> <gemm ms>
 * <winograd ms> <pixel ms> <winograd4 ms>") is read as it stands: the paths it names where
 * the node has them (every other node `a` chose a direct kernel for is
 * named gemm here) and its times, nothing timed. */
static void check_paths_file_format(const det_graph *g, const det_graph_engine *a,
                                    const char *file)
{
    enum det_conv_path *want = calloc((size_t)g->n_nodes, sizeof *want);
    FILE *f = fopen(file, "w");
    CHECK_FATAL(want && f, "%s", file);
    int other = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        if (g->nodes[i].op != DET_OP_CONV)
            continue;
        want[i] = det_graph_engine_node_path(a, i, NULL, NULL);
        if (want[i] != DET_CONV_GEMM && other++ % 2)
            want[i] = DET_CONV_GEMM;
        fprintf(f, "%d %s %.6f %.6f %.6f %.6f %.6f\n", i, path_name(want[i]), 1.25 + i, 2.5 + i,
                3.75, 5.0, 6.25);
    }
    fclose(f);
    det_graph_engine *d = NULL;
    cnp_err err;
    det_graph_engine_opts opts = {.conv = DET_CONV_AUTO};
    CHECK_FATAL(det_graph_engine_create_opts(g_ctx, g, 200, 200, &opts, &d, &err) == CNP_OK,
                "%s", err.msg);
    CHECK(det_graph_engine_timed_nodes(d) == 0, "%zu nodes timed with a written %s",
          det_graph_engine_timed_nodes(d), file);
    for (int i = 0; i < g->n_nodes; i++) {
        if (g->nodes[i].op != DET_OP_CONV)
            continue;
        double ds = -1, gs = -1;
        enum det_conv_path p = det_graph_engine_node_path(d, i, &ds, &gs);
        CHECK(p == want[i] && fabs(ds - (1.25 + i) / 1e3) < 1e-12 &&
                  fabs(gs - (2.5 + i) / 1e3) < 1e-12,
              "node %d: %s, direct %g s, gemm %g s read; %s, %g s, %g s written", i,
              path_name(p), ds, gs, path_name(want[i]), (1.25 + i) / 1e3, (2.5 + i) / 1e3);
    }
    printf("a written paths file: %d direct choices named gemm\n", other / 2);
    det_graph_engine_free(d);
    free(want);
}

/* conv = auto times the paths of every conv with more than im2col + SGEMM
 * (stride 1; stride 2 for graph_conv_px) once per device and shapes, then
 * reads the choice back from the file next to the kernel
 * cache: a second engine times nothing and chooses alike; a damaged file
 * means timing again. */
static void test_paths_remembered(void)
{
    tg_graph t;
    build_retina(&t);
    cnp_err err;
    det_graph_engine *a = NULL, *b = NULL, *c = NULL;
    det_graph_engine_opts opts = {.conv = DET_CONV_AUTO};
    CHECK_FATAL(det_graph_engine_create_opts(g_ctx, &t.g, 200, 200, &opts, &a, &err) == CNP_OK,
                "%s", err.msg);
    char file[4096];
    det_graph_engine_conv_paths_file(a, file, sizeof file);
    det_graph_engine_free(a);
    /* Under the cache directory the run set, never the user's ~/.cache
     * (before: the test built its configuration from defaults alone). */
    const char *cache = getenv("CANOPY_OPENCL_CACHE_DIR");
    if (cache && cache[0])
        CHECK(strncmp(file, cache, strlen(cache)) == 0 && file[strlen(cache)] == '/',
              "%s is not under CANOPY_OPENCL_CACHE_DIR=%s", file, cache);
    unlink(file);
    int timed = 0, stride2 = 0;
    for (int i = 0; i < t.g.n_nodes; i++) {
        const det_node *n = &t.g.nodes[i];
        timed += n->op == DET_OP_CONV && (n->stride == 1 || det_px_applies(n));
        stride2 += n->op == DET_OP_CONV && n->stride == 2 && det_px_applies(n);
    }
    CHECK(stride2 > 0, "no stride-2 conv for the pixel path");
    CHECK_FATAL(det_graph_engine_create_opts(g_ctx, &t.g, 200, 200, &opts, &a, &err) == CNP_OK,
                "%s", err.msg);
    CHECK(det_graph_engine_timed_nodes(a) == (size_t)timed, "%zu of %d nodes timed without %s",
          det_graph_engine_timed_nodes(a), timed, file);
    CHECK(access(file, R_OK) == 0, "%s not written", file);
    CHECK_FATAL(det_graph_engine_create_opts(g_ctx, &t.g, 200, 200, &opts, &b, &err) == CNP_OK,
                "%s", err.msg);
    CHECK(det_graph_engine_timed_nodes(b) == 0, "%zu nodes timed again with %s",
          det_graph_engine_timed_nodes(b), file);
    /* A CPU device measures at 128 x 128 and times the close paths again
     * at the plan size, 200 x 200 here: at most once per distinct shape,
     * never when the choice is read back. */
    CHECK(det_graph_engine_refined_shapes(a) <= (size_t)timed, "%zu shapes refined of %d",
          det_graph_engine_refined_shapes(a), timed);
    CHECK(det_graph_engine_refined_shapes(b) == 0, "%zu shapes refined again with %s",
          det_graph_engine_refined_shapes(b), file);
    /* Refined at the plan size, the convs of one shape share one path. */
    cl_device_type type = 0;
    clGetDeviceInfo(ocl_ctx_device(g_ctx), CL_DEVICE_TYPE, sizeof type, &type, NULL);
    int nn = t.g.n_nodes, twins = 0;
    int *shp = malloc(sizeof *shp * 3 * (size_t)nn);
    CHECK_FATAL(shp && det_graph_ref_shapes(&t.g, 200, 200, shp, shp + nn, shp + 2 * nn,
                                            &err) == CNP_OK);
    for (int i = 0; (type & CL_DEVICE_TYPE_CPU) && i < nn; i++)
        for (int j = i + 1; j < nn; j++) {
            const det_node *x = &t.g.nodes[i], *y = &t.g.nodes[j];
            if (x->op != DET_OP_CONV || y->op != DET_OP_CONV || x->cin != y->cin ||
                x->cout != y->cout || x->k != y->k || x->stride != y->stride ||
                x->pad != y->pad || x->dilation != y->dilation ||
                shp[nn + x->in] != shp[nn + y->in] || shp[2 * nn + x->in] != shp[2 * nn + y->in])
                continue;
            twins++;
            enum det_conv_path px = det_graph_engine_node_path(a, i, NULL, NULL),
                               py = det_graph_engine_node_path(a, j, NULL, NULL);
            CHECK(px == py, "nodes %d and %d of one shape: %s and %s", i, j, path_name(px),
                  path_name(py));
        }
    CHECK(!(type & CL_DEVICE_TYPE_CPU) || twins > 0, "no two convs of one shape in the graph");
    free(shp);
    int direct = 0, pixel2 = 0;
    for (int i = 0; i < t.g.n_nodes; i++) {
        double da, ga, db, gb;
        enum det_conv_path pa = det_graph_engine_node_path(a, i, &da, &ga);
        enum det_conv_path pb = det_graph_engine_node_path(b, i, &db, &gb);
        direct += pa == DET_CONV_DIRECT;
        CHECK(pa == pb, "node %d: %s timed, %s remembered", i, path_name(pa), path_name(pb));
        if (t.g.nodes[i].op == DET_OP_CONV && t.g.nodes[i].stride == 1)
            CHECK(da > 0 && ga > 0 && fabs(da - db) < 1e-8 && fabs(ga - gb) < 1e-8,
                  "node %d: times %g/%g timed, %g/%g remembered", i, da, ga, db, gb);
        else if (t.g.nodes[i].op == DET_OP_CONV && det_px_applies(&t.g.nodes[i]))
            CHECK(ga > 0 && fabs(ga - gb) < 1e-8 && (pa == DET_CONV_GEMM || pa == DET_CONV_PIXEL),
                  "stride-2 node %d: %s, gemm %g timed, %g remembered", i, path_name(pa), ga,
                  gb);
        pixel2 += t.g.nodes[i].op == DET_OP_CONV && t.g.nodes[i].stride == 2 &&
                  pa == DET_CONV_PIXEL;
    }
    printf("paths remembered in %s: %d of %d timed convs direct, %d of %d stride-2 pixel\n",
           file, direct, timed, pixel2, stride2);
    check_paths_file_format(&t.g, a, file);
    FILE *f = fopen(file, "w");
    if (f) {
        fputs("1 sideways 1 2\n", f);
        fclose(f);
    }
    CHECK_FATAL(det_graph_engine_create_opts(g_ctx, &t.g, 200, 200, &opts, &c, &err) == CNP_OK,
                "%s", err.msg);
    CHECK(det_graph_engine_timed_nodes(c) == (size_t)timed, "a damaged %s was trusted", file);
    det_graph_engine_free(a);
    det_graph_engine_free(b);
    det_graph_engine_free(c);
    tg_free(&t);
}

/* det_graph_paths_refine_set on the seconds of each path and the paths
 * the node has besides GEMM (bits 1 << DET_CONV_*). */
static unsigned refine_set(double direct, double gemm, double wino, double pixel, unsigned has)
{
    double s[DET_CONV_PATHS] = {[DET_CONV_DIRECT] = direct, [DET_CONV_GEMM] = gemm,
                                [DET_CONV_WINOGRAD] = wino, [DET_CONV_PIXEL] = pixel};
    return det_graph_paths_refine_set(s, has);
}

/* Which paths a reduced-size measurement leaves to time again at the plan
 * size: those within 3x of the fastest, only paths the node has. */
static void test_refine_set(void)
{
    const unsigned D = 1u << DET_CONV_DIRECT, G = 1u << DET_CONV_GEMM,
                   W = 1u << DET_CONV_WINOGRAD, P = 1u << DET_CONV_PIXEL;
    /* RetinaNet's P3 head conv at 128 x 128 on PoCL: gemm 10, winograd 19,
     * direct 100 ms. */
    CHECK(refine_set(0.100, 0.010, 0.019, 0.0, D | W) == (G | W), "P3 head");
    CHECK(refine_set(0.0289, 0.0114, 0.0107, 0.0, D | W) == (D | G | W), "all within 3x");
    CHECK(refine_set(0.030, 0.010, 0.031, 0.0, D | W) == (D | G), "3x inclusive, 3.1x out");
    CHECK(refine_set(0.001, 0.010, 0.002, 0.0, D | W) == (D | W), "gemm 10x the fastest is out");
    CHECK(refine_set(0.001, 0.010, 0.020, 0.0, W) == (G | W),
          "a path the node lacks is never timed, whatever its time");
    CHECK(refine_set(0.0, 0.010, 0.0, 0.0, 0) == G, "gemm alone");
    CHECK(refine_set(0.0, 0.010, 0.0, 0.0, G) == G, "gemm alone, named");
    /* The crown model's 32 -> 32 convs at 128 x 128 on PoCL: gemm 3x the
     * pixel kernel. */
    CHECK(refine_set(0.0075, 0.0075, 0.0, 0.0025, D | P) == (D | G | P), "pixel within 3x");
    CHECK(refine_set(0.030, 0.010, 0.0, 0.001, D | P) == P, "pixel alone");
    CHECK(refine_set(0.030, 0.010, 0.0, 0.001, D) == (D | G), "no pixel kernel");
}

/* Graph B on 25 x 27: maxpool on odd sizes, upsample_add 13x14 -> 25x27. */
static void test_nodes_b(void)
{
    tg_graph t;
    tg_init(&t, 11);
    int a = tg_conv(&t, 0, 3, 4, 3, 1, 1, 1, -1, true, 1.0f, 0.0f);
    int b = tg_conv(&t, a, 4, 4, 3, 2, 1, 1, -1, false, 1.0f, 0.0f); /* 13x14 */
    tg_add(&t, (det_node){.op = DET_OP_UPSAMPLE_ADD, .in = a, .in2 = b});
    tg_add(&t, (det_node){.op = DET_OP_MAXPOOL, .in = a, .in2 = -1, .k = 3, .stride = 2,
                          .pad = 1, .dilation = 1});
    tg_add(&t, (det_node){.op = DET_OP_MAXPOOL, .in = b, .in2 = -1, .k = 2, .stride = 2,
                          .pad = 0, .dilation = 1});
    tg_retina_identity(&t.g.retina, 25, 27);
    t.g.retina.num_classes = 4;
    t.g.retina.cls_node[0] = a;
    t.g.retina.box_node[0] = a;
    check_nodes("B", &t.g, 27, 25, 5);
    tg_free(&t);
}

/* A window smaller than the engine's plan on the GEMM path: the planned
 * 32 x 64 input gives the stride-2 conv 16 x 32 = 512 columns, a multiple
 * of 128 (no padding there), a 40 x 32 window 16 x 20 = 320, padded to 384
 * (ge_gemm_cols): its SGEMM output scratch must be there all the same (it
 * was not: "SGEMM output ... outgrows"), and the result equal the
 * reference fed the device's input. */
static void test_smaller_window(void)
{
    tg_graph t;
    tg_init(&t, 3);
    int a = tg_conv(&t, 0, 3, 5, 3, 2, 1, 1, -1, true, 1.0f, 0.0f);
    int b = tg_conv(&t, 0, 3, 4, 3, 2, 1, 1, -1, false, 1.0f, 0.0f);
    tg_retina_identity(&t.g.retina, 32, 64);
    t.g.retina.cls_node[0] = a;
    t.g.retina.box_node[0] = b;
    t.g.retina.num_classes = 5;
    const uint32_t W = 64, H = 32, w = 40, h = 32;
    uint8_t *rgba = malloc((size_t)W * H * 4);
    REQUIRE(rgba);
    random_rgba(rgba, (size_t)W * H * 4, 31);
    cl_mem buf = upload(rgba, W, H);
    cnp_err err;
    det_graph_engine *e = NULL;
    det_graph_engine_opts opts = {.conv = DET_CONV_GEMM};
    CHECK_FATAL(det_graph_engine_create_opts(g_ctx, &t.g, W, H, &opts, &e, &err) == CNP_OK, "%s",
                err.msg);
    float *in = NULL, *dev = NULL;
    int ph = 0, pw = 0;
    CHECK_FATAL(det_graph_engine_forward(e, buf, W, 0, 0, w, h, 0, &in, &ph, &pw, &err) == CNP_OK,
                "%s", err.msg);
    CHECK_FATAL(det_graph_engine_forward(e, buf, W, 0, 0, w, h, a, &dev, &ph, &pw, &err) ==
                    CNP_OK,
                "window %ux%u: %s", w, h, err.msg);
    int c[3], hh[3], ww[3];
    REQUIRE(det_graph_ref_shapes(&t.g, ph, pw, c, hh, ww, &err) == CNP_OK);
    CHECK(hh[a] * ww[a] == 320, "%d x %d", hh[a], ww[a]);
    size_t sz = (size_t)c[a] * hh[a] * ww[a];
    float *ref = malloc(sz * sizeof *ref);
    REQUIRE(ref);
    det_graph_ref_conv(&t.g.nodes[a], in, hh[0], ww[0], NULL, ref, hh[a], ww[a]);
    double scale = fmax(1.0, max_abs(ref, sz)), worst = 0;
    for (size_t j = 0; j < sz; j++)
        worst = fmax(worst, fabs((double)ref[j] - dev[j]));
    printf("smaller window %ux%u on a %ux%u plan: conv %dx%dx%d, max diff %.3g\n", w, h, W, H,
           c[a], hh[a], ww[a], worst);
    CHECK(worst <= NODE_TOL * scale, "smaller window: %g", worst);
    free(ref);
    free(in);
    free(dev);
    free(rgba);
    clReleaseMemObject(buf);
    det_graph_engine_free(e);
    tg_free(&t);
}

static void load_neon(const char *name, cnp_image *img)
{
    char path[1024];
    cnp_err err;
    snprintf(path, sizeof path, "%s/%s.png", CANOPY_NEON_DIR, name);
    CHECK_FATAL(img_png_read_file(path, 0, img, &err) == CNP_OK, "%s", err.msg);
}

/* The transform of a 123 x 97 window at (31, 17) at scale 1.5447 (odd),
 * padded to 32, on the device vs det_retina_input. */
static void test_input(const cnp_image *img)
{
    tg_graph t;
    tg_init(&t, 1);
    int a = tg_conv(&t, 0, 3, 4, 1, 1, 0, 1, -1, false, 1.0f, 0.0f);
    det_retina *r = &t.g.retina;
    tg_retina_identity(r, 1, 1);
    r->mean[0] = 0.485f, r->mean[1] = 0.456f, r->mean[2] = 0.406f;
    r->std[0] = 0.229f, r->std[1] = 0.224f, r->std[2] = 0.225f;
    r->min_size = 150;
    r->max_size = 190;
    r->size_divisible = 32;
    r->cls_node[0] = r->box_node[0] = a;
    r->num_classes = 4;
    uint32_t x0 = 31, y0 = 17, w = 123, h = 97;
    cnp_err err;
    det_graph_engine *e = NULL;
    CHECK_FATAL(det_graph_engine_create(g_ctx, &t.g, w, h, &e, &err) == CNP_OK, "%s", err.msg);
    cl_mem buf = upload(img->rgba, img->width, img->height);
    float *dev = NULL, *ref = NULL;
    int ph, pw, rh, rw, rph, rpw;
    CHECK_FATAL(det_graph_engine_forward(e, buf, img->width, x0, y0, w, h, 0, &dev, &ph, &pw,
                                         &err) == CNP_OK, "%s", err.msg);
    REQUIRE(det_retina_input(r, img->rgba + ((size_t)y0 * img->width + x0) * 4, img->width * 4,
                             w, h, &ref, &rh, &rw, &rph, &rpw, &err) == CNP_OK);
    CHECK(rh == 149 && rw == 190 && ph == 160 && pw == 192 && rph == ph && rpw == pw,
          "sizes %dx%d -> %dx%d / %dx%d", rh, rw, ph, pw, rph, rpw);
    size_t sz = 3 * (size_t)ph * pw;
    double worst = 0;
    size_t pad_nonzero = 0;
    for (size_t i = 0; i < sz; i++) {
        worst = fmax(worst, fabs((double)ref[i] - dev[i]));
        size_t y = i / pw % ph, x = i % pw;
        if ((y >= (size_t)rh || x >= (size_t)rw) && dev[i] != 0.0f)
            pad_nonzero++;
    }
    printf("input transform 123x97 -> %dx%d (pad %dx%d): max diff %.3g\n", rw, rh, pw, ph, worst);
    CHECK(worst <= INPUT_TOL * fmax(1.0, max_abs(ref, sz)), "max diff %g", worst);
    CHECK(pad_nonzero == 0, "%zu padding values are not zero", pad_nonzero);
    free(dev);
    free(ref);
    clReleaseMemObject(buf);
    det_graph_engine_free(e);
    tg_free(&t);
}

static void test_retina(const cnp_image *img, const char *name, enum det_conv_path path)
{
    tg_graph t;
    build_retina(&t);
    cnp_err err;
    det_graph_engine *e = NULL;
    det_graph_engine_opts opts = {.conv = path};
    CHECK_FATAL(det_graph_engine_create_opts(g_ctx, &t.g, 200, 200, &opts, &e, &err) == CNP_OK,
                "%s", err.msg);
    cl_mem buf = upload(img->rgba, img->width, img->height);
    /* Windows of odd sizes and scales (up and down), one at the corner. */
    static const uint32_t win[][4] = {
        {37, 51, 97, 80}, {0, 0, 200, 133}, {250, 301, 150, 99}, {11, 200, 61, 77}};
    for (size_t k = 0; k < sizeof win / sizeof win[0]; k++) {
        uint32_t x0 = win[k][0], y0 = win[k][1], w = win[k][2], h = win[k][3];
        det_detection *dd = NULL, *rd = NULL;
        size_t nd = 0, nr = 0;
        double t0 = cnp_now();
        CHECK_FATAL(det_graph_engine_predict(e, buf, img->width, x0, y0, w, h, &dd, &nd,
                                             &err) == CNP_OK, "%s", err.msg);
        double t1 = cnp_now();
        REQUIRE(det_retina_ref_predict(&t.g, img->rgba + ((size_t)y0 * img->width + x0) * 4,
                                       img->width * 4, w, h, &rd, &nr, &err) == CNP_OK);
        double t2 = cnp_now();
        double ws = 0;
        int m = match_count(rd, nr, dd, nd, &ws);
        printf("%s (%s) %ux%u at (%u, %u): reference %zu, device %zu detections, %d matched "
               "(worst score diff %.2g); device %.1f ms, reference %.1f ms\n",
               name, path_name(path), w, h, x0, y0, nr, nd, m, ws, (t1 - t0) * 1e3, (t2 - t1) * 1e3);
        CHECK(nr >= 20, "%s window %zu: only %zu reference detections", name, k, nr);
        CHECK(nd == nr && (size_t)m == nr, "%s window %zu: %zu vs %zu, %d matched", name, k, nd,
              nr, m);
        for (size_t i = 0; i < nd; i++)
            CHECK(dd[i].x0 >= 0 && dd[i].y0 >= 0 && dd[i].x1 <= (float)w + 1e-3f &&
                      dd[i].y1 <= (float)h + 1e-3f && (i == 0 || dd[i].score <= dd[i - 1].score),
                  "%s window %zu detection %zu out of the window or order", name, k, i);
        free(dd);
        free(rd);
    }
    /* Refusals: a window larger than the engine's, or outside the image. */
    det_detection *dd = NULL;
    size_t nd = 0;
    CHECK(det_graph_engine_predict(e, buf, img->width, 0, 0, 201, 50, &dd, &nd, &err) ==
          CNP_ERR_INVALID);
    CHECK(det_graph_engine_predict(e, buf, img->width, img->width - 10, 0, 20, 20, &dd, &nd,
                                   &err) == CNP_ERR_INVALID);
    clReleaseMemObject(buf);
    det_graph_engine_free(e);
    tg_free(&t);
}

typedef struct one_ctx {
    det_graph_engine *e;
    cl_mem buf;
    uint32_t img_w;
} one_ctx;

static cnp_status one_patch(void *ctx, const det_tile *p, det_detection **out, size_t *n,
                            cnp_err *err)
{
    one_ctx *c = ctx;
    return det_graph_engine_predict(c->e, c->buf, c->img_w, p->x0, p->y0, p->w, p->h, out, n,
                                    err);
}

static cnp_status batch_patches(void *ctx, const det_tile *p, size_t np, det_detection **out,
                                size_t *n, cnp_err *err)
{
    one_ctx *c = ctx;
    return det_graph_engine_predict_batch(c->e, c->buf, c->img_w, p, np, out, n, err);
}

/* Batched and single detections agree: bit for bit on the direct path,
 * whose kernel computes each output the same way whatever the batch; within
 * BATCH_TOL (relative, at least 1e-4 absolute) on the GEMM path, because
 * CLBlast picks its kernels by matrix size, and a batch's larger GEMM may sum
 * in another order on a GPU (PoCL happens to give equal bits). */
#define BATCH_TOL 1e-4f

static bool close_enough(float a, float b)
{
    return fabsf(a - b) <= BATCH_TOL * fmaxf(1.0f, fmaxf(fabsf(a), fabsf(b)));
}

static bool same_detections(const det_detection *a, size_t na, const det_detection *b,
                            size_t nb, enum det_conv_path path)
{
    if (na != nb)
        return false;
    if (path != DET_CONV_GEMM)
        return na == 0 || memcmp(a, b, na * sizeof *a) == 0;
    for (size_t i = 0; i < na; i++)
        if (a[i].label != b[i].label || !close_enough(a[i].x0, b[i].x0) ||
            !close_enough(a[i].y0, b[i].y0) || !close_enough(a[i].x1, b[i].x1) ||
            !close_enough(a[i].y1, b[i].y1) || !close_enough(a[i].score, b[i].score))
            return false;
    return true;
}

/* Batches: DeepForest's patches of a NEON image (120 px, overlap 0.05: 16
 * or more patches of 120 x 120, scaled to 100 x 100 and padded to 128)
 * through an engine of batch 3 (full batches and a last one of one) give the
 * same detections per patch and after the mosaic as one patch at a time
 * (same_detections: exact on the direct path, within BATCH_TOL on GEMM); a
 * batch of unequal windows is refused. */
static void test_batch(const cnp_image *img, const char *name, enum det_conv_path path)
{
    tg_graph t;
    build_retina(&t);
    cnp_err err;
    det_graph_engine *e1 = NULL, *eb = NULL;
    det_graph_engine_opts o1 = {.conv = path}, ob = {.conv = path, .max_batch = 3};
    CHECK_FATAL(det_graph_engine_create_opts(g_ctx, &t.g, 120, 120, &o1, &e1, &err) == CNP_OK,
                "%s", err.msg);
    CHECK_FATAL(det_graph_engine_create_opts(g_ctx, &t.g, 120, 120, &ob, &eb, &err) == CNP_OK,
                "%s", err.msg);
    CHECK(det_graph_engine_max_batch(e1) == 1 && det_graph_engine_max_batch(eb) == 3,
          "batches %d, %d", det_graph_engine_max_batch(e1), det_graph_engine_max_batch(eb));
    cl_mem buf = upload(img->rgba, img->width, img->height);
    one_ctx c1 = {e1, buf, img->width}, cb = {eb, buf, img->width};
    det_tile *pl = NULL;
    size_t np = 0;
    REQUIRE(det_patches_plan(img->width, img->height, 120, 0.05, &pl, &np, &err) == CNP_OK);
    CHECK(np >= 16 && np % 3 != 0, "%zu patches", np);
    det_detection **bo = calloc(np, sizeof *bo);
    size_t *bn = calloc(np, sizeof *bn), per_total = 0;
    /* Twice: the first run compiles what the batch's sizes need. */
    CHECK_FATAL(det_graph_engine_predict_batch(eb, buf, img->width, pl, np, bo, bn, &err) ==
                    CNP_OK, "%s", err.msg);
    for (size_t k = 0; k < np; k++)
        free(bo[k]);
    double t0 = cnp_now();
    CHECK_FATAL(det_graph_engine_predict_batch(eb, buf, img->width, pl, np, bo, bn, &err) ==
                    CNP_OK, "%s", err.msg);
    double t1 = cnp_now();
    size_t same = 0;
    for (size_t k = 0; k < np; k++) {
        det_detection *d = NULL;
        size_t nd = 0;
        REQUIRE(one_patch(&c1, &pl[k], &d, &nd, &err) == CNP_OK);
        bool eq = same_detections(d, nd, bo[k], bn[k], path);
        same += eq;
        CHECK(eq, "%s (%s) patch %zu at (%u, %u): %zu one at a time, %zu batched, %s", name,
              path_name(path), k, pl[k].x0, pl[k].y0, nd, bn[k],
              nd == bn[k] ? "values differ" : "counts differ");
        per_total += nd;
        free(d);
        free(bo[k]);
    }
    double t2 = cnp_now();
    det_detection *da = NULL, *db = NULL;
    size_t na = 0, nb = 0;
    REQUIRE(det_predict_tiled(img->width, img->height, 120, 0.05, 0.15f, one_patch, &c1, &da,
                              &na, &err) == CNP_OK);
    REQUIRE(det_predict_tiled_batch(img->width, img->height, 120, 0.05, 0.15f, 3,
                                    batch_patches, &cb, &db, &nb, &err) == CNP_OK);
    printf("%s (%s): %zu patches, %zu of them equal batched, %zu detections before and %zu "
           "after the mosaic; batched %.1f ms, one at a time %.1f ms\n", name, path_name(path),
           np, same, per_total, na, (t1 - t0) * 1e3, (t2 - t1) * 1e3);
    CHECK(per_total >= 16 * 20, "only %zu detections", per_total);
    CHECK(na > 0 && same_detections(da, na, db, nb, path),
          "%s (%s): mosaic %zu one at a time, %zu batched", name, path_name(path), na, nb);
    /* Unequal windows in one batch. */
    det_tile bad[2] = {pl[0], pl[1]};
    bad[1].w -= 1;
    CHECK(det_graph_engine_predict_batch(eb, buf, img->width, bad, 2, bo, bn, &err) ==
              CNP_ERR_INVALID && bo[0] == NULL && bo[1] == NULL,
          "unequal windows in one batch accepted");
    free(da);
    free(db);
    free(bo);
    free(bn);
    free(pl);
    clReleaseMemObject(buf);
    det_graph_engine_free(e1);
    det_graph_engine_free(eb);
    tg_free(&t);
}

/* C im2col of N patches (input planes c * N + b), graph_im2col's layout:
 * col[(c * K + ky) * K + kx][b * OH * OW + oy * OW + ox], rows of T floats,
 * 0 outside the input; the columns past N * OH * OW are left alone. */
static void ref_im2col(const float *in, int C, int N, int H, int W, int K, int S, int P, int D,
                       int OH, int OW, size_t T, float *col)
{
    for (int c = 0; c < C; c++)
        for (int ky = 0; ky < K; ky++)
            for (int kx = 0; kx < K; kx++)
                for (int b = 0; b < N; b++)
                    for (int oy = 0; oy < OH; oy++)
                        for (int ox = 0; ox < OW; ox++) {
                            int iy = oy * S - P + ky * D, ix = ox * S - P + kx * D;
                            float v = 0.0f;
                            if (iy >= 0 && iy < H && ix >= 0 && ix < W)
                                v = in[(((size_t)c * N + b) * H + iy) * W + ix];
                            col[(((size_t)c * K + ky) * K + kx) * T + (size_t)b * OH * OW +
                                (size_t)oy * OW + ox] = v;
                        }
}

/* graph_im2col as the GEMM path launches it (ge_run_conv), on a batch of
 * two, bit for bit against ref_im2col, and nothing written past the
 * matrix: odd sizes, stride 2 and 3, dilation 2 and 3, K 1 (stride 2), 2, 3,
 * 5, 7, padding wider than the input (pad 5 on a 5 x 4 plane), widths
 * below and above graph_im2col's run of 8 columns (4, 8, 10, 12, 15, 29)
 * with short last runs. Each conv's input buffer holds random values
 * written here (distinct, signed), not the graph's activations. */
static void test_im2col(void)
{
    tg_graph t;
    tg_init(&t, 21);
    int a = tg_conv(&t, 0, 3, 5, 7, 2, 3, 1, -1, false, 1.0f, 0.0f); /* 19x15 */
    int b = tg_conv(&t, a, 5, 6, 3, 2, 1, 1, -1, false, 1.0f, 0.0f); /* 10x8 */
    int c = tg_conv(&t, b, 6, 4, 3, 2, 1, 1, -1, false, 1.0f, 0.0f); /* 5x4 */
    tg_conv(&t, c, 4, 3, 5, 1, 5, 1, -1, false, 1.0f, 0.0f);         /* pad 5 > 4: 11x10 */
    tg_conv(&t, a, 5, 4, 3, 1, 2, 2, -1, false, 1.0f, 0.0f);         /* dilation 2: 19x15 */
    tg_conv(&t, 0, 3, 4, 3, 1, 1, 1, -1, false, 1.0f, 0.0f);         /* 37x29 */
    tg_conv(&t, 0, 3, 2, 1, 2, 0, 1, -1, false, 1.0f, 0.0f);         /* 1x1 stride 2 */
    tg_conv(&t, b, 6, 3, 3, 1, 3, 3, -1, false, 1.0f, 0.0f);         /* dilation 3: 10x8 */
    tg_conv(&t, 0, 3, 2, 3, 3, 5, 2, -1, false, 1.0f, 0.0f);         /* stride 3: 15x12 */
    tg_conv(&t, a, 5, 3, 2, 2, 1, 1, -1, false, 1.0f, 0.0f);         /* K 2: 10x8 */
    tg_retina_identity(&t.g.retina, 37, 29);
    t.g.retina.num_classes = 5;
    t.g.retina.cls_node[0] = a;
    t.g.retina.box_node[0] = c;
    const det_graph *g = &t.g;
    uint32_t w = 29, h = 37;
    cnp_err err;
    det_graph_engine *e = NULL;
    det_graph_engine_opts opts = {.conv = DET_CONV_GEMM, .max_batch = 2};
    CHECK_FATAL(det_graph_engine_create_opts(g_ctx, g, w, h, &opts, &e, &err) == CNP_OK, "%s",
                err.msg);
    CHECK_FATAL(e->max_batch == 2, "batch of %d", e->max_batch);
    uint8_t *rgba = malloc((size_t)w * h * 4);
    REQUIRE(rgba);
    random_rgba(rgba, (size_t)w * h * 4, 5);
    cl_mem buf = upload(rgba, w, h);
    float *out = NULL;
    int ph = 0, pw = 0, nn = g->n_nodes, *sc = e->shape, *sh = sc + nn, *sw = sc + 2 * nn;
    /* The shapes of every node (e->shape), then batches of two. */
    CHECK_FATAL(det_graph_engine_forward(e, buf, w, 0, 0, w, h, nn - 1, &out, &ph, &pw, &err) ==
                    CNP_OK, "%s", err.msg);
    free(out);
    const int N = 2;
    e->batch = N;
    float *col = malloc(e->col_floats * sizeof *col), *ref = malloc(e->col_floats * sizeof *ref);
    REQUIRE(col && ref);
    uint32_t seed = 77;
    int tested = 0;
    for (int i = 1; i < nn; i++) {
        const det_node *n = &g->nodes[i];
        if (n->op != DET_OP_CONV)
            continue;
        int C = sc[n->in], H = sh[n->in], W = sw[n->in], OH = sh[i], OW = sw[i];
        size_t np = (size_t)N * OH * OW, T = ge_gemm_cols(n, np);
        size_t nin = (size_t)C * N * H * W, ncol = (size_t)C * n->k * n->k * T;
        REQUIRE(ncol <= e->col_floats && C == n->cin);
        float *in = malloc(nin * sizeof *in);
        REQUIRE(in);
        for (size_t j = 0; j < nin; j++) /* distinct values, both signs */
            in[j] = (float)(j + 1) * (tg_rand(&seed) < 0.0f ? -1.0f : 1.0f);
        const float sentinel = -7777.0f;
        REQUIRE(clEnqueueWriteBuffer(e->q, ge_node_buf(e, n->in), CL_TRUE, 0, nin * sizeof *in,
                                     in, 0, NULL, NULL) == CL_SUCCESS);
        for (size_t j = 0; j < e->col_floats; j++)
            col[j] = sentinel;
        REQUIRE(clEnqueueWriteBuffer(e->q, e->col, CL_TRUE, 0, e->col_floats * sizeof *col, col, 0,
                                     NULL, NULL) == CL_SUCCESS);
        CHECK_FATAL(ge_run_conv(e, i, &err) == CNP_OK, "node %d: %s", i, err.msg);
        REQUIRE(clEnqueueReadBuffer(e->q, e->col, CL_TRUE, 0, e->col_floats * sizeof *col, col, 0,
                                    NULL, NULL) == CL_SUCCESS);
        for (size_t j = 0; j < ncol; j++)
            ref[j] = sentinel;
        ref_im2col(in, C, N, H, W, n->k, n->stride, n->pad, n->dilation, OH, OW, T, ref);
        /* Every column of every row bit for bit (the padding columns past np
         * untouched: still the sentinel), nothing past the matrix. */
        size_t bad = ncol, past = 0;
        for (size_t j = 0; j < ncol && bad == ncol; j++)
            if (memcmp(&col[j], &ref[j], sizeof *col) != 0)
                bad = j;
        for (size_t j = ncol; j < e->col_floats; j++)
            past += col[j] != sentinel;
        bool runs = n->k != 1 || n->stride != 1 || n->pad != 0;
        printf("im2col node %d: %d x %d x %d, k %d s %d p %d d %d, batch %d -> %d x %d: %s\n", i,
               C, H, W, n->k, n->stride, n->pad, n->dilation, N, OH, OW,
               !runs ? "no im2col" : bad == ncol && !past ? "exact" : "DIFFERS");
        if (runs) {
            CHECK(bad == ncol, "node %d: column %zu is %g, reference %g", i, bad,
                  bad < ncol ? col[bad] : 0.0, bad < ncol ? ref[bad] : 0.0);
            CHECK(past == 0, "node %d: %zu floats written past the %zu of the matrix", i, past,
                  ncol);
            tested++;
        }
        free(in);
    }
    CHECK(tested == nn - 1, "%d of %d convs through im2col", tested, nn - 1);
    e->batch = 1;
    free(col);
    free(ref);
    free(rgba);
    clReleaseMemObject(buf);
    det_graph_engine_free(e);
    tg_free(&t);
}

/* The engine's per-level candidate counts of patch b, as the device left
 * them (tests only: a read of its buffer). */
static void read_counts(det_graph_engine *e, int b, cl_int *counts)
{
    REQUIRE(clEnqueueReadBuffer(e->q, e->counts, CL_TRUE,
                                (size_t)b * GE_COUNT_STRIDE * sizeof *counts,
                                GE_COUNT_STRIDE * sizeof *counts, counts, 0, NULL,
                                NULL) == CL_SUCCESS);
}

/* The candidate counts stay on the device: score thresholds that leave
 * every level no candidate (1), some (0.05, top-k cutting), all of them
 * (0: on a window filling the largest size each level's count is its room,
 * key_cap), a level below top-k beside an empty one (0.5, 0.95) and a
 * single candidate (just below the best score) give the reference's
 * detections, and the patch's NMS count is the sum of min(count, top-k). Every predict waits once
 * (det_graph_engine_waits), and predict_batch once per batch, with the
 * same detections as one window at a time (the direct path: bit for bit).
 * small: a smaller transform (64 x 64) for a simulator. */
static void test_device_counts(const uint8_t *rgba, uint32_t img_w, uint32_t img_h, bool small)
{
    tg_graph t;
    build_retina(&t);
    det_retina *r = &t.g.retina;
    if (small) {
        r->min_size = 40;
        r->max_size = 60;
    }
    /* A window the transform keeps at scale 1 and pads to the largest size. */
    uint32_t w = small ? 60 : 150, h = small ? 40 : 100;
    REQUIRE(img_w >= w + 20 && img_h >= h + 20);
    cnp_err err;
    det_graph_engine *e = NULL;
    det_graph_engine_opts opts = {.conv = DET_CONV_DIRECT, .max_batch = 2};
    CHECK_FATAL(det_graph_engine_create_opts(g_ctx, &t.g, w, h, &opts, &e, &err) == CNP_OK,
                "%s", err.msg);
    cl_mem buf = upload(rgba, img_w, img_h);
    /* The last: just below the best score, a single candidate. */
    float threshs[] = {1.0f, 0.05f, 0.0f, 0.5f, 0.95f, 0.0f}, top = 0.0f;
    for (int ti = 0; ti < 6; ti++) {
        if (ti == 5)
            threshs[ti] = nextafterf(top, 0.0f);
        r->score_thresh = threshs[ti];
        det_detection *dd = NULL, *rd = NULL;
        size_t nd = 0, nr = 0;
        unsigned long w0 = det_graph_engine_waits(e);
        CHECK_FATAL(det_graph_engine_predict(e, buf, img_w, 7, 5, w, h, &dd, &nd, &err) ==
                        CNP_OK, "%s", err.msg);
        CHECK(det_graph_engine_waits(e) == w0 + 1, "threshold %g: %lu blocking waits, not 1",
              threshs[ti], det_graph_engine_waits(e) - w0);
        REQUIRE(det_retina_ref_predict(&t.g, rgba + ((size_t)5 * img_w + 7) * 4, img_w * 4, w, h,
                                       &rd, &nr, &err) == CNP_OK);
        cl_int c[GE_COUNT_STRIDE];
        read_counts(e, 0, c);
        int sum = 0, full = 0, none = 0, cut = 0, below = 0;
        for (int l = 0; l < r->n_levels; l++) {
            sum += c[l] < r->topk_candidates ? c[l] : r->topk_candidates;
            full += c[l] == e->key_cap[l];
            none += c[l] == 0;
            cut += c[l] > r->topk_candidates;
            below += c[l] > 0 && c[l] < r->topk_candidates;
        }
        double ws = 0;
        int m = match_count(rd, nr, dd, nd, &ws);
        printf("threshold %.9g: counts %d %d %d (rooms %d %d %d), NMS count %d; reference %zu, "
               "device %zu detections, %d matched\n", threshs[ti], c[0], c[1], c[2],
               e->key_cap[0], e->key_cap[1], e->key_cap[2], c[GE_COUNT_TOTAL], nr, nd, m);
        CHECK(c[GE_COUNT_TOTAL] == sum, "threshold %g: NMS count %d, levels give %d",
              threshs[ti], c[GE_COUNT_TOTAL], sum);
        if (ti == 0)
            CHECK(none == r->n_levels && nd == 0 && nr == 0, "threshold 1: %d empty levels, %zu "
                  "detections", none, nd);
        if (ti == 1)
            CHECK(cut > 0 && full < r->n_levels && nr > 0, "threshold 0.05: %d levels cut, %d "
                  "full, %zu detections", cut, full, nr);
        if (ti == 2)
            CHECK(full == r->n_levels, "threshold 0: %d of %d levels at their room", full,
                  r->n_levels);
        if (ti == 2 && nd > 0)
            top = dd[0].score;
        if (ti == 4)
            CHECK(none > 0 && below > 0, "threshold 0.95: counts %d %d %d, none below top-k "
                  "beside an empty level", c[0], c[1], c[2]);
        if (ti == 5)
            CHECK(sum == 1 && nd == 1, "threshold below the best score: %d candidates, %zu "
                  "detections", sum, nd);
        CHECK(nd == nr && (size_t)m == nr, "threshold %g: %zu vs %zu, %d matched", threshs[ti],
              nd, nr, m);
        free(dd);
        free(rd);
    }
    /* Five windows in batches of 2, 2 and 1: three waits. */
    r->score_thresh = 0.05f;
    det_tile p[5];
    for (int k = 0; k < 5; k++)
        p[k] = (det_tile){.x0 = (uint32_t)(3 * k), .y0 = (uint32_t)(4 * k), .w = w, .h = h};
    det_detection *bo[5] = {NULL}, *so[5] = {NULL};
    size_t bn[5] = {0}, sn[5] = {0};
    unsigned long w0 = det_graph_engine_waits(e);
    CHECK_FATAL(det_graph_engine_predict_batch(e, buf, img_w, p, 5, bo, bn, &err) == CNP_OK,
                "%s", err.msg);
    CHECK(det_graph_engine_waits(e) == w0 + 3, "5 windows in batches of 2: %lu waits, not 3",
          det_graph_engine_waits(e) - w0);
    for (int k = 0; k < 5; k++) {
        CHECK_FATAL(det_graph_engine_predict(e, buf, img_w, p[k].x0, p[k].y0, w, h, &so[k],
                                             &sn[k], &err) == CNP_OK, "%s", err.msg);
        CHECK(sn[k] == bn[k] && (sn[k] == 0 || memcmp(so[k], bo[k], sn[k] * sizeof *so[k]) == 0),
              "window %d: %zu one at a time, %zu batched (or differ)", k, sn[k], bn[k]);
        free(so[k]);
        free(bo[k]);
    }
    clReleaseMemObject(buf);
    det_graph_engine_free(e);
    tg_free(&t);
}

int main(int argc, char **argv)
{
    cnp_config cfg;
    test_ocl_start(&cfg, &g_ctx);
    printf("device: %s\n", ocl_ctx_description(g_ctx));
    if (argc > 1 && strcmp(argv[1], "im2col") == 0) { /* for Oclgrind */
        test_im2col();
        ocl_ctx_free(g_ctx);
        return test_result("test_graph_engine im2col");
    }
    if (argc > 1 && strcmp(argv[1], "pxv") == 0) { /* small, for Oclgrind */
        test_pixel_vec(21, 9);
        ocl_ctx_free(g_ctx);
        return test_result("test_graph_engine pxv");
    }
    if (argc > 1 && strcmp(argv[1], "counts") == 0) { /* small, for Oclgrind */
        uint32_t w = 90, h = 70;
        uint8_t *rgba = malloc((size_t)w * h * 4);
        REQUIRE(rgba);
        random_rgba(rgba, (size_t)w * h * 4, 99);
        test_device_counts(rgba, w, h, true);
        free(rgba);
        ocl_ctx_free(g_ctx);
        return test_result("test_graph_engine counts");
    }
    test_im2col();
    test_nodes_a();
    test_nodes_b();
    test_smaller_window();
    test_nodes_c();
    test_nodes_d();
    test_pixel_batch();
    test_pixel_vec(37, 29);
    test_pixel_vec(3, 5);
    test_refine_set();
    test_paths_remembered();
    cnp_image osbs = {0}, yell = {0};
    load_neon("OSBS_029", &osbs);
    load_neon("YELL_541000_west", &yell);
    test_input(&osbs);
    test_nodes_e(&cfg, &yell);
    /* The direct kernel where it applies, then CLBlast for every conv. */
    test_retina(&osbs, "OSBS_029", DET_CONV_DIRECT);
    test_retina(&yell, "YELL_541000_west", DET_CONV_GEMM);
    test_retina(&osbs, "OSBS_029", DET_CONV_WINOGRAD); /* its 3x3 stride-1 convs */
    test_retina(&yell, "YELL_541000_west", DET_CONV_WINOGRAD4);
    test_retina(&yell, "YELL_541000_west", DET_CONV_PIXEL);
    test_batch(&osbs, "OSBS_029", DET_CONV_DIRECT);
    test_batch(&yell, "YELL_541000_west", DET_CONV_GEMM);
    test_batch(&yell, "YELL_541000_west", DET_CONV_PIXEL);
    test_device_counts(osbs.rgba, osbs.width, osbs.height, false);
    cnp_image_free(&osbs);
    cnp_image_free(&yell);
    ocl_ctx_free(g_ctx);
    return test_result("test_graph_engine");
}
