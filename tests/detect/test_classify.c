/* Tree-type classifiers: the kernels of kernels/crop.cl against their C
 * reference (src/detect/ref/classify_ref.c) on odd crop sizes at the edges
 * of a NEON image (bilinear and nearest, shrinking and enlarging, odd and
 * 224 output sides), softmax on odd class counts, and every classifier
 * table (classify/opencl, classify/cpu-onednn where built) held to the C
 * reference table on a small classifier graph: the same type (where the
 * reference's top-two margin exceeds 1e-3) and type_score within 1e-5. A
 * classifier handle refuses detector ops and a detector's the classify op. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "canopy/config.h"
#include "canopy/detect.h"
#include "canopy/gpu.h"
#include "canopy/image.h"
#include "detect/classify.h"
#include "detect/detect_internal.h"
#include "detect/graph_util.h"
#include "detect/test_detect_common.h"

#define NEON CANOPY_SOURCE_DIR "/tests/data/neon/YELL_541000_west.png"
#define CROP_TOL 1e-5f
#define SCORE_TOL 1e-5f

static ocl_ctx *g_ctx;

/* crop_resize of one rect against det_crop_transform. */
static void check_crop(const cnp_image *img, cl_mem rgba, const det_classifier *c,
                       const uint32_t r[4])
{
    cnp_err err;
    int S = c->size;
    size_t per = 3 * (size_t)S * S;
    float *ref = malloc(per * sizeof *ref), *tmp = malloc(3 * (size_t)r[3] * S * sizeof *tmp);
    float *dev = malloc(per * sizeof *dev);
    REQUIRE(ref && tmp && dev);
    det_crop_transform(c, img->rgba, img->width, r, ref, tmp);
    cl_kernel k;
    REQUIRE(ocl_kernel_create(g_ctx, "crop", "", "crop_resize", &k, &err) == CNP_OK);
    cl_context cx = ocl_ctx_context(g_ctx);
    cl_int rc;
    cl_int4 rect = {{(cl_int)r[0], (cl_int)r[1], (cl_int)r[2], (cl_int)r[3]}};
    cl_mem rb = ocl_buffer_create(cx, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, sizeof rect,
                                  &rect, &rc);
    cl_mem ob = ocl_buffer_create(cx, CL_MEM_READ_WRITE, per * sizeof(float), NULL, &rc);
    REQUIRE(rb && ob);
    cl_int iw = (cl_int)img->width, cs = S, interp = c->interp, N = 1;
    cl_float4 mean = {{c->mean[0], c->mean[1], c->mean[2], 0}};
    cl_float4 std = {{c->std[0], c->std[1], c->std[2], 1}};
    REQUIRE(OCL_SET_ARGS(k, "crop_resize", &err, OCL_ARG(rgba), OCL_ARG(iw), OCL_ARG(rb),
                         OCL_ARG(cs), OCL_ARG(interp), OCL_ARG(mean), OCL_ARG(std), OCL_ARG(ob),
                         OCL_ARG(N)) == CNP_OK);
    size_t global[3] = {(size_t)S, (size_t)S, 1};
    REQUIRE(ocl_enqueue(ocl_ctx_queue(g_ctx), k, 3, global, NULL, "crop_resize", &err) ==
            CNP_OK);
    REQUIRE(clEnqueueReadBuffer(ocl_ctx_queue(g_ctx), ob, CL_TRUE, 0, per * sizeof(float), dev,
                                0, NULL, NULL) == CL_SUCCESS);
    float worst = 0;
    for (size_t i = 0; i < per; i++)
        worst = fmaxf(worst, fabsf(dev[i] - ref[i]));
    CHECK(worst <= CROP_TOL, "crop %ux%u at (%u, %u) -> %d (%s): max |device - C| %g", r[2],
          r[3], r[0], r[1], S, c->interp == DET_RESIZE_NEAREST ? "nearest" : "bilinear",
          (double)worst);
    clReleaseKernel(k);
    ocl_buffer_release(rb);
    ocl_buffer_release(ob);
    free(ref), free(tmp), free(dev);
}

static void test_crops(const cnp_image *img, cl_mem rgba)
{
    const uint32_t W = img->width, H = img->height;
    const uint32_t rects[][4] = {
        {0, 0, 1, 1},          {W - 3, H - 7, 3, 7},   {0, 100, 13, 5},
        {W - 223, 5, 223, 224}, {17, H - 300, 225, 300}, {100, 200, 500, 17},
        {W - 41, 0, 41, 112},   {3, 3, 448, 224},
    };
    const int sizes[] = {37, 224};
    for (int interp = 0; interp < 2; interp++)
        for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++)
            for (size_t i = 0; i < sizeof rects / sizeof rects[0]; i++) {
                det_classifier c = {.size = sizes[s], .interp = (enum det_resize)interp,
                                    .normalize = true,
                                    .mean = {0.485f, 0.456f, 0.406f},
                                    .std = {0.229f, 0.224f, 0.225f}};
                check_crop(img, rgba, &c, rects[i]);
            }
}

/* crop_softmax on N crops of K logits against det_class_softmax. */
static void test_softmax(int K, int N)
{
    cnp_err err;
    uint32_t seed = (uint32_t)(K * 31 + N);
    float *logits = malloc((size_t)K * N * sizeof *logits);
    REQUIRE(logits);
    for (int i = 0; i < K * N; i++)
        logits[i] = 4.0f * tg_rand(&seed);
    if (K > 1)
        logits[N] = logits[0]; /* a tie in crop 0: the first index wins */
    cl_kernel k;
    REQUIRE(ocl_kernel_create(g_ctx, "crop", "", "crop_softmax", &k, &err) == CNP_OK);
    cl_context cx = ocl_ctx_context(g_ctx);
    cl_int rc;
    cl_mem lb = ocl_buffer_create(cx, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR,
                                  (size_t)K * N * sizeof(float), logits, &rc);
    cl_mem tb = ocl_buffer_create(cx, CL_MEM_WRITE_ONLY, (size_t)N * sizeof(cl_int), NULL, &rc);
    cl_mem sb = ocl_buffer_create(cx, CL_MEM_WRITE_ONLY, (size_t)N * sizeof(float), NULL, &rc);
    REQUIRE(lb && tb && sb);
    cl_int ck = K, cn = N;
    REQUIRE(OCL_SET_ARGS(k, "crop_softmax", &err, OCL_ARG(lb), OCL_ARG(ck), OCL_ARG(cn),
                         OCL_ARG(tb), OCL_ARG(sb)) == CNP_OK);
    size_t g = (size_t)N;
    REQUIRE(ocl_enqueue(ocl_ctx_queue(g_ctx), k, 1, &g, NULL, "crop_softmax", &err) == CNP_OK);
    cl_int *types = malloc((size_t)N * sizeof *types);
    float *scores = malloc((size_t)N * sizeof *scores), *one = malloc((size_t)K * sizeof *one);
    REQUIRE(types && scores && one);
    clEnqueueReadBuffer(ocl_ctx_queue(g_ctx), tb, CL_TRUE, 0, g * sizeof *types, types, 0, NULL,
                        NULL);
    clEnqueueReadBuffer(ocl_ctx_queue(g_ctx), sb, CL_TRUE, 0, g * sizeof *scores, scores, 0,
                        NULL, NULL);
    for (int n = 0; n < N; n++) {
        for (int c = 0; c < K; c++)
            one[c] = logits[c * N + n];
        int t;
        float s;
        det_class_softmax(one, K, &t, &s);
        CHECK(types[n] == t && fabsf(scores[n] - s) <= 1e-6f,
              "softmax K=%d crop %d: device %d %.7f, C %d %.7f", K, n, types[n],
              (double)scores[n], t, (double)s);
    }
    clReleaseKernel(k);
    ocl_buffer_release(lb), ocl_buffer_release(tb), ocl_buffer_release(sb);
    free(logits), free(types), free(scores), free(one);
}

/* A small classifier graph: conv 3->8 3x3/2 + ReLU, conv 8->8 3x3/2 + the
 * residual-free ReLU, then the folded fc (a k x k conv to K logits). */
static void classifier_model(tg_graph *t, det_model *m, int size, enum det_resize interp,
                             int expand, int K)
{
    tg_init(t, 2121);
    int a = tg_conv(t, 0, 3, 8, 3, 2, 1, 1, -1, true, 1.4f, 0.0f);
    int b = tg_conv(t, a, 8, 8, 3, 2, 1, 1, -1, true, 1.4f, 0.0f);
    int fm = ((size + 1) / 2 + 1) / 2;
    tg_conv(t, b, 8, K, fm, 1, 0, 1, -1, false, 3.0f, 0.0f);
    det_graph *g = &t->g;
    for (int i = 1; i < g->n_nodes; i++)
        snprintf(t->nodes[i].weights, sizeof t->nodes[i].weights, "w%d", i);
    g->input.kind = DET_INPUT_CROP;
    det_classifier *c = &g->classify;
    *c = (det_classifier){.size = size, .interp = interp, .normalize = true,
                          .mean = {0.485f, 0.456f, 0.406f}, .std = {0.229f, 0.224f, 0.225f},
                          .expand = expand, .num_classes = K};
    for (int k = 0; k < K; k++)
        snprintf(c->labels[k], sizeof c->labels[k], "type%d", k);
    cnp_err err;
    CHECK(det_graph_check(g, "classifier", &err) == CNP_OK, "graph check: %s", err.msg);
    memset(m, 0, sizeof *m);
    snprintf(m->version, sizeof m->version, "classify-test");
    m->format_version = 2;
    m->stride = 1;
    m->graph = g;
}

/* Trees at the image's edges, tiny and large, crowns and boxes. */
static size_t make_trees(uint32_t W, uint32_t H, cnp_tree *t)
{
    size_t n = 0;
    uint32_t seed = 77;
    for (int i = 0; i < 40; i++) {
        float x = (0.5f + 0.5f * tg_rand(&seed)) * (float)W;
        float y = (0.5f + 0.5f * tg_rand(&seed)) * (float)H;
        float r = 2.0f + 60.0f * (0.5f + 0.5f * tg_rand(&seed));
        t[n++] = (cnp_tree){.x = x, .y = y, .radius = r, .score = 0.9f};
    }
    const float boxes[][4] = {{0, 0, 0.4f, 0.7f},     {-5, -5, 30.5f, 20.25f},
                              {(float)W - 10, (float)H - 3, (float)W + 8, (float)H},
                              {10.7f, 20.2f, 300.9f, 250.1f}, {5, 7, 5, 7}};
    for (size_t i = 0; i < sizeof boxes / sizeof boxes[0]; i++)
        t[n++] = (cnp_tree){.x0 = boxes[i][0], .y0 = boxes[i][1], .x1 = boxes[i][2],
                            .y1 = boxes[i][3], .boxed = true, .score = 0.8f};
    return n;
}

static void check_table(const char *what, det_backend *b, det_backend *ref,
                        const det_pixels *px, const cnp_tree *trees, size_t n)
{
    cnp_err err;
    cnp_tree *a = malloc(n * sizeof *a), *r = malloc(n * sizeof *r);
    REQUIRE(a && r);
    memcpy(a, trees, n * sizeof *a);
    memcpy(r, trees, n * sizeof *r);
    CHECK(det_backend_classify(ref, px, r, n, &err) == CNP_OK, "%s: reference: %s", what,
          err.msg);
    CHECK(det_backend_classify(b, px, a, n, &err) == CNP_OK, "%s: %s", what, err.msg);
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        bool ok = a[i].typed && r[i].typed && fabsf(a[i].type_score - r[i].type_score) <= SCORE_TOL;
        if (ok && a[i].type != r[i].type)
            ok = fabsf(a[i].type_score - r[i].type_score) <= SCORE_TOL &&
                 r[i].type_score < 0.5f + 1e-3f; /* a near-tie of two */
        if (!ok && bad++ < 5)
            fprintf(stderr, "%s: tree %zu: type %d %.7f, reference %d %.7f\n", what, i,
                    a[i].type, (double)a[i].type_score, r[i].type, (double)r[i].type_score);
    }
    CHECK(bad == 0, "%s: %zu of %zu trees differ from the C reference", what, bad, n);
    printf("%s: %zu trees against %s\n", det_backend_name(b), n, det_backend_name(ref));
    free(a), free(r);
}

static void test_tables(const cnp_image *img, cl_mem rgba)
{
    cnp_err err;
    cnp_config cfg;
    cnp_config_defaults(&cfg);
    cnp_tree trees[64];
    size_t n = make_trees(img->width, img->height, trees);
    det_pixels px = {.w = img->width, .h = img->height, .host = img->rgba, .dev = rgba};
    const struct {
        int size;
        enum det_resize interp;
        int expand, K;
    } cases[] = {{33, DET_RESIZE_BILINEAR, 0, 3}, {64, DET_RESIZE_NEAREST, 5, 5}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        tg_graph t;
        det_model m;
        classifier_model(&t, &m, cases[c].size, cases[c].interp, cases[c].expand, cases[c].K);
        CHECK(det_model_is_classifier(&m) && !det_model_has_boxes(&m), "classifier kind");
        CHECK(det_model_type_count(&m) == cases[c].K &&
                  strcmp(det_model_type_name(&m, 1), "type1") == 0 &&
                  !det_model_type_name(&m, cases[c].K),
              "type names");
        det_backend *ref = NULL, *dev = NULL, *cpu = NULL;
        REQUIRE(det_backend_create(&m, NULL, &cfg.detector, &ref, &err) == CNP_OK);
        CHECK(strcmp(det_backend_name(ref), "classify/cpu") == 0, "reference table: %s",
              det_backend_name(ref));
        if (det_backend_create(&m, g_ctx, &cfg.detector, &dev, &err) == CNP_OK)
            check_table("opencl", dev, ref, &px, trees, n);
        else
            CHECK(false, "classify/opencl: %s", err.msg);
#ifdef CANOPY_HAVE_DNNL
        if (det_backend_create_cpu(&m, NULL, &cfg.detector, 2, &cpu, &err) == CNP_OK)
            check_table("onednn", cpu, ref, &px, trees, n);
        else
            CHECK(false, "classify/cpu-onednn: %s", err.msg);
#endif
        /* A classifier takes no detector op. */
        det_tile *tiles = NULL;
        size_t nt = 0;
        cnp_tree *found = NULL;
        CHECK(det_backend_plan(ref, 64, 64, &tiles, &nt, &err) == CNP_ERR_INVALID &&
                  det_backend_detect(ref, &px, &found, &nt, &err) == CNP_ERR_INVALID &&
                  det_backend_window_side(ref) == 0,
              "a classifier refuses detector ops");
        det_backend_free(dev);
        det_backend_free(cpu);
        det_backend_free(ref);
        tg_free(&t);
    }
}

int main(void)
{
    cnp_config cfg;
    cnp_err err;
    test_ocl_start(&cfg, &g_ctx);
    cnp_image img = {0};
    REQUIRE(img_png_read_file(NEON, 0, &img, &err) == CNP_OK);
    cl_int rc;
    cl_mem rgba = ocl_buffer_create(ocl_ctx_context(g_ctx),
                                    CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR,
                                    (size_t)img.width * img.height * 4, img.rgba, &rc);
    REQUIRE(rgba);
    test_crops(&img, rgba);
    test_softmax(1, 3);
    test_softmax(3, 17);
    test_softmax(7, 5);
    test_tables(&img, rgba);
    ocl_buffer_release(rgba);
    cnp_image_free(&img);
    ocl_ctx_free(g_ctx);
    return test_result("test_classify");
}
