/* The CPU backend (src/detect/cpu, oneDNN) against the C reference, with
 * the OpenCL engine tests' bounds (test_graph_engine.c): every node of
 * three small graphs on odd sizes (conv k 1/2/3/5/7, stride 1/2, pad
 * 0..3, dilation 1/2/3, residual add, maxpool 3/2 and 2/2 on odd sizes,
 * upsample_add 13x14 -> 25x27, relu, a non-conv node reading the input)
 * for a batch of two inputs, each node computed by the reference from the
 * backend's own inputs, once with direct convolutions and once with
 * Winograd wherever oneDNN offers it; buffer reuse (no keep_all) giving
 * the same heads bit for bit; the RetinaNet-shaped graph end to end on
 * NEON windows against det_retina_ref_predict (same detections: count, IoU
 * >= 0.99, score within 1e-3, label), batches of DeepForest patches
 * bit-identical to one patch at a time; refusals; and conv = auto's
 * measured choices remembered in a file (a second engine chooses alike and
 * the same input gives bit-identical heads; a damaged file is measured
 * again). */
#include <math.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "canopy/image.h"
#include "detect/cpu/dnnl_graph.h"
#include "detect/graph_util.h"
#include "detect/patches.h"
#include "detect/retina_util.h"
#include "detect/test_detect_common.h"

/* test_graph_engine.c's: float32 sums in another order. */
#define NODE_TOL 1e-4

static const char *conv_name(enum det_dnnl_conv c)
{
    return c == DET_DNNL_CONV_WINOGRAD ? "winograd" : c == DET_DNNL_CONV_DIRECT ? "direct"
                                                                               : "auto";
}

static double max_abs(const float *a, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++)
        m = fmax(m, fabs(a[i]));
    return m;
}

/* Reference of node i of batch element b from the backend's outputs. */
static void ref_node(const det_graph *g, int i, float *const *dev, const int *c, const int *hh,
                     const int *ww, int b, float *ref)
{
    const det_node *n = &g->nodes[i];
    size_t in_sz = (size_t)c[n->in] * hh[n->in] * ww[n->in];
    const float *in = dev[n->in] + b * in_sz;
    const float *in2 = n->in2 >= 0 ? dev[n->in2] + b * (size_t)c[n->in2] * hh[n->in2] *
                                                       ww[n->in2]
                                   : NULL;
    switch (n->op) {
    case DET_OP_CONV:
        det_graph_ref_conv(n, in, hh[n->in], ww[n->in], in2, ref, hh[i], ww[i]);
        break;
    case DET_OP_MAXPOOL:
        det_graph_ref_maxpool(n, in, c[i], hh[n->in], ww[n->in], ref, hh[i], ww[i]);
        break;
    case DET_OP_UPSAMPLE_ADD:
        det_graph_ref_upsample_add(in, in2, c[i], hh[i], ww[i], hh[n->in2], ww[n->in2], ref);
        break;
    default:
        for (size_t j = 0; j < in_sz; j++)
            ref[j] = fmaxf(in[j], 0.0f);
    }
}

/* Every node of g on a batch of two seeded inputs of h x w, with `conv`. */
static void check_nodes_conv(const char *name, const det_graph *g, int h, int w, uint32_t seed,
                             enum det_dnnl_conv conv)
{
    cnp_err err;
    det_dnnl_graph *e = NULL;
    det_dnnl_opts opts = {.conv = conv, .keep_all = true};
    CHECK_FATAL(det_dnnl_graph_create(g, &opts, &e, &err) == CNP_OK, "%s", err.msg);
    int nn = g->n_nodes, c[64], hh[64], ww[64], wino = 0, wino_shape = 0;
    size_t in_sz = 3 * (size_t)h * w;
    float *input = malloc(2 * in_sz * sizeof *input), *dev[64] = {0};
    for (size_t j = 0; j < 2 * in_sz; j++)
        input[j] = 2.0f * tg_rand(&seed);
    CHECK_FATAL(det_dnnl_graph_run(e, input, 2, h, w, &err) == CNP_OK, "%s", err.msg);
    REQUIRE(det_graph_ref_shapes(g, h, w, c, hh, ww, &err) == CNP_OK);
    dev[0] = input;
    for (int i = 1; i < nn; i++) {
        size_t sz = 2 * (size_t)c[i] * hh[i] * ww[i];
        int oc, oh, ow;
        dev[i] = malloc(sz * sizeof(float));
        CHECK_FATAL(det_dnnl_graph_output(e, i, dev[i], sz, &oc, &oh, &ow, &err) == CNP_OK,
                    "%s node %d: %s", name, i, err.msg);
        CHECK(oc == c[i] && oh == hh[i] && ow == ww[i], "%s node %d shape", name, i);
    }
    for (int i = 1; i < nn; i++) {
        const det_node *n = &g->nodes[i];
        const char *impl = "";
        enum det_dnnl_conv used = det_dnnl_graph_node_conv(e, i, &impl);
        bool shape = n->op == DET_OP_CONV && n->k == 3 && n->stride == 1 && n->dilation == 1;
        wino += used == DET_DNNL_CONV_WINOGRAD;
        wino_shape += shape;
        if (n->op == DET_OP_CONV && conv == DET_DNNL_CONV_DIRECT)
            CHECK(used == DET_DNNL_CONV_DIRECT, "%s node %d runs %s", name, i, conv_name(used));
        size_t sz = (size_t)c[i] * hh[i] * ww[i];
        float *ref = malloc(sz * sizeof *ref);
        double worst = 0, scale = 1.0;
        for (int b = 0; b < 2; b++) {
            ref_node(g, i, dev, c, hh, ww, b, ref);
            scale = fmax(scale, max_abs(ref, sz));
            for (size_t j = 0; j < sz; j++)
                worst = fmax(worst, fabs((double)ref[j] - dev[i][b * sz + j]));
        }
        printf("%s %s node %d (op %d k %d s %d p %d d %d) 2x%dx%dx%d %s: max diff %.3g (scale "
               "%.3g)\n", name, conv_name(used), i, (int)n->op, n->k, n->stride, n->pad,
               n->dilation, c[i], hh[i], ww[i], impl, worst, scale);
        CHECK(worst <= NODE_TOL * scale, "%s node %d: %g > %g", name, i, worst,
              NODE_TOL * scale);
        free(ref);
    }
    printf("%s %s: %d of %d 3x3 stride-1 convs on Winograd\n", name, conv_name(conv), wino,
           wino_shape);
    if (conv == DET_DNNL_CONV_WINOGRAD)
        CHECK(wino > 0 || wino_shape == 0, "%s: Winograd asked for, none used", name);
    /* Without keep_all: buffers reused, the last node's output identical. */
    det_dnnl_graph *e2 = NULL;
    opts.keep_all = false;
    CHECK_FATAL(det_dnnl_graph_create(g, &opts, &e2, &err) == CNP_OK, "%s", err.msg);
    CHECK_FATAL(det_dnnl_graph_run(e2, input, 2, h, w, &err) == CNP_OK, "%s", err.msg);
    int last = nn - 1, oc, oh, ow;
    size_t sz = 2 * (size_t)c[last] * hh[last] * ww[last];
    float *o2 = malloc(sz * sizeof *o2);
    CHECK_FATAL(det_dnnl_graph_output(e2, last, o2, sz, &oc, &oh, &ow, &err) == CNP_OK, "%s",
                err.msg);
    CHECK(memcmp(o2, dev[last], sz * sizeof *o2) == 0, "%s: reused buffers change the output",
          name);
    free(o2);
    det_dnnl_graph_free(e2);
    for (int i = 1; i < nn; i++)
        free(dev[i]);
    free(input);
    det_dnnl_graph_free(e);
}

static void check_nodes(const char *name, const det_graph *g, int h, int w, uint32_t seed)
{
    check_nodes_conv(name, g, h, w, seed, DET_DNNL_CONV_DIRECT);
    check_nodes_conv(name, g, h, w, seed, DET_DNNL_CONV_WINOGRAD);
}

/* test_graph_engine.c's graph A on 37 x 29, plus a 3x3 s1 conv and a
 * relu of the input. */
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
    int r0 = tg_add(&t, (det_node){.op = DET_OP_RELU, .in = 0, .in2 = -1});
    tg_conv(&t, r0, 3, 18, 3, 1, 1, 1, -1, true, 1.0f, 0.0f); /* 3x3 s1: Winograd */
    tg_conv(&t, c, 6, 20, 3, 1, 1, 1, -1, false, 1.0f, 0.0f);
    tg_retina_identity(&t.g.retina, 37, 29);
    t.g.retina.num_classes = 7;
    t.g.retina.cls_node[0] = d;
    t.g.retina.box_node[0] = f;
    check_nodes("A", &t.g, 37, 29, 3);
    tg_free(&t);
}

/* Graph B on 25 x 27: maxpool on odd sizes, upsample_add 13x14 -> 25x27,
 * a 3x3 conv with a residual (Winograd with a sum post-op). */
static void test_nodes_b(void)
{
    tg_graph t;
    tg_init(&t, 11);
    int a = tg_conv(&t, 0, 3, 20, 3, 1, 1, 1, -1, true, 1.0f, 0.0f);
    int b = tg_conv(&t, a, 20, 20, 3, 2, 1, 1, -1, false, 1.0f, 0.0f); /* 13x14 */
    int u = tg_add(&t, (det_node){.op = DET_OP_UPSAMPLE_ADD, .in = a, .in2 = b});
    tg_add(&t, (det_node){.op = DET_OP_MAXPOOL, .in = a, .in2 = -1, .k = 3, .stride = 2,
                          .pad = 1, .dilation = 1});
    tg_add(&t, (det_node){.op = DET_OP_MAXPOOL, .in = b, .in2 = -1, .k = 2, .stride = 2,
                          .pad = 0, .dilation = 1});
    int r = tg_conv(&t, u, 20, 20, 3, 1, 1, 1, a, true, 1.0f, 0.0f);
    tg_retina_identity(&t.g.retina, 25, 27);
    t.g.retina.num_classes = 20;
    t.g.retina.cls_node[0] = r;
    t.g.retina.box_node[0] = tg_conv(&t, r, 20, 4, 1, 1, 0, 1, -1, false, 1.0f, 0.0f);
    check_nodes("B", &t.g, 25, 27, 5);
    tg_free(&t);
}

/* test_graph_engine.c's graph C on 41 x 23: k 5 pad 2, k 3 dilation 3, k 3
 * pad 0, k 1 with a residual, k 7 pad 3 dilation 2, k 2 pad 1. */
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
    check_nodes("C", &t.g, 41, 23, 9);
    tg_free(&t);
}

static void load_neon(const char *name, cnp_image *img)
{
    char path[1024];
    cnp_err err;
    snprintf(path, sizeof path, "%s/%s.png", CANOPY_NEON_DIR, name);
    CHECK_FATAL(img_png_read_file(path, 0, img, &err) == CNP_OK, "%s", err.msg);
}

/* The RetinaNet-shaped graph on NEON windows of odd sizes and scales. */
static void test_retina(const cnp_image *img, const char *name, enum det_dnnl_conv conv)
{
    tg_graph t;
    build_retina(&t);
    cnp_err err;
    det_dnnl_graph *e = NULL;
    det_dnnl_opts opts = {.conv = conv};
    CHECK_FATAL(det_dnnl_graph_create(&t.g, &opts, &e, &err) == CNP_OK, "%s", err.msg);
    static const uint32_t win[][4] = {
        {37, 51, 97, 80}, {0, 0, 200, 133}, {250, 301, 150, 99}, {11, 200, 61, 77}};
    for (size_t k = 0; k < sizeof win / sizeof win[0]; k++) {
        det_tile p = {.x0 = win[k][0], .y0 = win[k][1], .w = win[k][2], .h = win[k][3]};
        det_detection *dd = NULL, *rd = NULL;
        size_t nd = 0, nr = 0;
        CHECK_FATAL(det_dnnl_graph_predict_batch(e, img->rgba, img->width, img->height, &p, 1,
                                                 &dd, &nd, &err) == CNP_OK, "%s", err.msg);
        REQUIRE(det_retina_ref_predict(&t.g, img->rgba + ((size_t)p.y0 * img->width + p.x0) * 4,
                                       img->width * 4, p.w, p.h, &rd, &nr, &err) == CNP_OK);
        double ws = 0;
        int m = match_count(rd, nr, dd, nd, &ws);
        printf("%s (%s) %ux%u at (%u, %u): reference %zu, CPU backend %zu detections, %d "
               "matched (worst score diff %.2g)\n", name, conv_name(conv), p.w, p.h, p.x0, p.y0,
               nr, nd, m, ws);
        CHECK(nr >= 20, "%s window %zu: only %zu reference detections", name, k, nr);
        CHECK(nd == nr && (size_t)m == nr, "%s window %zu: %zu vs %zu, %d matched", name, k, nd,
              nr, m);
        free(dd);
        free(rd);
    }
    det_tile bad[2] = {{.x0 = img->width - 10, .y0 = 0, .w = 20, .h = 20},
                       {.x0 = 0, .y0 = 0, .w = 20, .h = 20}};
    det_detection *dd[2] = {0};
    size_t nd[2] = {0};
    CHECK(det_dnnl_graph_predict_batch(e, img->rgba, img->width, img->height, bad, 1, dd, nd,
                                       &err) == CNP_ERR_INVALID, "window outside the image");
    CHECK(det_dnnl_graph_predict_batch(e, img->rgba, img->width, img->height, bad + 1, 2, dd,
                                       nd, &err) == CNP_ERR_INVALID, "batch above max_batch");
    det_dnnl_graph_free(e);
    tg_free(&t);
}

typedef struct one_ctx {
    det_dnnl_graph *e;
    const cnp_image *img;
} one_ctx;

static cnp_status one_patch(void *ctx, const det_tile *p, det_detection **out, size_t *n,
                            cnp_err *err)
{
    one_ctx *c = ctx;
    return det_dnnl_graph_predict_batch(c->e, c->img->rgba, c->img->width, c->img->height, p, 1,
                                        out, n, err);
}

static cnp_status batch_patches(void *ctx, const det_tile *p, size_t np, det_detection **out,
                                size_t *n, cnp_err *err)
{
    one_ctx *c = ctx;
    return det_dnnl_graph_predict_batch(c->e, c->img->rgba, c->img->width, c->img->height, p,
                                        np, out, n, err);
}

/* DeepForest's patches (120 px) through a batch of 3 and one at a time:
 * the same mosaic, and per patch within the node bounds (a batch may pick
 * another oneDNN kernel than a single patch). */
static void test_batch(const cnp_image *img)
{
    tg_graph t;
    build_retina(&t);
    cnp_err err;
    det_dnnl_graph *e1 = NULL, *eb = NULL;
    det_dnnl_opts o1 = {.conv = DET_DNNL_CONV_DIRECT},
                  ob = {.conv = DET_DNNL_CONV_DIRECT, .max_batch = 3};
    CHECK_FATAL(det_dnnl_graph_create(&t.g, &o1, &e1, &err) == CNP_OK, "%s", err.msg);
    CHECK_FATAL(det_dnnl_graph_create(&t.g, &ob, &eb, &err) == CNP_OK, "%s", err.msg);
    CHECK(det_dnnl_graph_max_batch(e1) == 1 && det_dnnl_graph_max_batch(eb) == 3, "batches");
    one_ctx c1 = {e1, img}, cb = {eb, img};
    det_detection *d1 = NULL, *db = NULL;
    size_t n1 = 0, nb = 0;
    CHECK_FATAL(det_predict_tiled(img->width, img->height, 120, 0.05, 0.15f, one_patch, &c1, &d1,
                                  &n1, &err) == CNP_OK, "%s", err.msg);
    CHECK_FATAL(det_predict_tiled_batch(img->width, img->height, 120, 0.05, 0.15f, 3,
                                        batch_patches, &cb, &db, &nb, &err) == CNP_OK, "%s",
                err.msg);
    double ws = 0;
    int m = match_count(d1, n1, db, nb, &ws);
    printf("batch of 3 vs one at a time: %zu / %zu detections, %d matched\n", nb, n1, m);
    CHECK(n1 >= 50 && nb == n1 && (size_t)m == n1, "batch %zu vs single %zu, %d matched", nb, n1,
          m);
    free(d1);
    free(db);
    det_dnnl_graph_free(e1);
    det_dnnl_graph_free(eb);
    tg_free(&t);
}

/* Runs the RetinaNet-shaped graph on a seeded 160 x 128 input with conv =
 * auto and `file`; *algos: every node's algorithm, *head: node last's
 * output (malloc'd). */
static void auto_run(const det_graph *g, const char *file, enum det_dnnl_conv *algos,
                     float **head, size_t *n)
{
    cnp_err err;
    det_dnnl_graph *e = NULL;
    det_dnnl_opts opts = {.choices_file = file};
    CHECK_FATAL(det_dnnl_graph_create(g, &opts, &e, &err) == CNP_OK, "%s", err.msg);
    uint32_t seed = 99;
    size_t in = 3 * 128 * 160;
    float *input = malloc(in * sizeof *input);
    for (size_t j = 0; j < in; j++)
        input[j] = tg_rand(&seed);
    CHECK_FATAL(det_dnnl_graph_run(e, input, 1, 128, 160, &err) == CNP_OK, "%s", err.msg);
    int last = g->retina.cls_node[0], c, h, w;
    *n = 1 << 20;
    *head = malloc(*n * sizeof **head);
    CHECK_FATAL(det_dnnl_graph_output(e, last, *head, *n, &c, &h, &w, &err) == CNP_OK, "%s",
                err.msg);
    *n = (size_t)c * h * w;
    for (int i = 0; i < g->n_nodes; i++)
        algos[i] = det_dnnl_graph_node_conv(e, i, NULL);
    free(input);
    det_dnnl_graph_free(e);
}

static void test_choices_remembered(void)
{
    tg_graph t;
    build_retina(&t);
    char file[] = "/tmp/test_dnnl_choices.XXXXXX";
    int fd = mkstemp(file);
    REQUIRE(fd >= 0);
    close(fd);
    unlink(file);
    enum det_dnnl_conv a[64], b[64], c[64];
    float *ha, *hb, *hc;
    size_t na, nb, nc;
    auto_run(&t.g, file, a, &ha, &na);
    FILE *f = fopen(file, "r");
    int lines = 0, ch;
    while (f && (ch = fgetc(f)) != EOF)
        lines += ch == '\n';
    if (f)
        fclose(f);
    int wino_shapes = 0;
    for (int i = 0; i < t.g.n_nodes; i++)
        wino_shapes += t.g.nodes[i].op == DET_OP_CONV && t.g.nodes[i].k == 3 &&
                       t.g.nodes[i].stride == 1;
    printf("choices remembered in %s: %d lines for %d 3x3 stride-1 convs\n", file, lines,
           wino_shapes);
    CHECK(lines > 0 && lines <= wino_shapes, "%d lines", lines);
    auto_run(&t.g, file, b, &hb, &nb);
    CHECK(memcmp(a, b, sizeof(a[0]) * (size_t)t.g.n_nodes) == 0, "choices differ");
    CHECK(na == nb && memcmp(ha, hb, na * sizeof *ha) == 0, "heads differ");
    f = fopen(file, "w");
    REQUIRE(f);
    fputs("1 2 sideways\n", f);
    fclose(f);
    auto_run(&t.g, file, c, &hc, &nc);
    CHECK(nc == na, "damaged file: %zu outputs", nc);
    f = fopen(file, "r");
    lines = 0;
    while (f && (ch = fgetc(f)) != EOF)
        lines += ch == '\n';
    if (f)
        fclose(f);
    CHECK(lines > 1, "a damaged file was not measured again and rewritten (%d lines)", lines);
    unlink(file);
    free(ha);
    free(hb);
    free(hc);
    tg_free(&t);
}

int main(void)
{
    test_choices_remembered();
    test_nodes_a();
    test_nodes_b();
    test_nodes_c();
    cnp_image img;
    load_neon("OSBS_029", &img);
    test_retina(&img, "OSBS_029", DET_DNNL_CONV_DIRECT);
    test_retina(&img, "OSBS_029", DET_DNNL_CONV_AUTO);
    test_batch(&img);
    cnp_image_free(&img);
    return test_result("test_dnnl_graph");
}
