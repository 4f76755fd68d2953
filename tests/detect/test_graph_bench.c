/* The graph engine's bench hooks (det_graph_engine_set_times,
 * det_graph_engine_device_bytes) on a small RetinaNet-shaped graph over a
 * NEON window: timing on gives bit-identical detections; it fills exactly
 * the stages each node has (GEMM path: im2col only for convs that need one,
 * gemm and epilogue for every one; direct path: the fused kernel in
 * epilogue only; "other" for the input and non-conv nodes, post);
 * timing off leaves the struct alone; the device bytes cover the weights
 * and the activations and do not grow with predicts. No speed is checked. */
#include <string.h>

#include "canopy/config.h"
#include "canopy/detect.h"
#include "canopy/image.h"
#include "detect/graph_util.h"
#include "detect/test_detect_common.h"

/* stem 3x3/2, maxpool, 1x1 (no im2col), relu, heads 3x3: one level. */
static void build(tg_graph *t)
{
    tg_init(t, 77);
    int stem = tg_conv(t, 0, 3, 8, 3, 2, 1, 1, -1, true, 1.4f, 0.0f);
    int pool = tg_add(t, (det_node){.op = DET_OP_MAXPOOL, .in = stem, .in2 = -1, .k = 3,
                                    .stride = 2, .pad = 1, .dilation = 1});
    int lat = tg_conv(t, pool, 8, 8, 1, 1, 0, 1, -1, false, 1.0f, 0.0f);
    int r = tg_add(t, (det_node){.op = DET_OP_RELU, .in = lat, .in2 = -1});
    det_retina *rt = &t->g.retina;
    tg_retina_identity(rt, 96, 96);
    rt->min_size = 96;
    rt->max_size = 160;
    rt->size_divisible = 32;
    rt->cls_node[0] = tg_conv(t, r, 8, 1, 3, 1, 1, 1, -1, false, 1.0f, -1.0f);
    rt->box_node[0] = tg_conv(t, r, 8, 4, 3, 1, 1, 1, -1, false, 0.5f, 0.0f);
    rt->topk_candidates = 200;
    rt->detections_per_img = 100;
}

static size_t weight_bytes(const det_graph *g)
{
    size_t b = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        const det_node *n = &g->nodes[i];
        if (n->op == DET_OP_CONV)
            b += sizeof(float) * ((size_t)n->cout * n->cin * n->k * n->k + n->cout);
    }
    return b;
}

int main(void)
{
    cnp_config cfg;
    cnp_err err;
    ocl_ctx *ctx = NULL;
    test_ocl_start(&cfg, &ctx);
    cnp_image img = {0};
    char path[1024];
    snprintf(path, sizeof path, "%s/OSBS_029.png", CANOPY_NEON_DIR);
    CHECK_FATAL(img_png_read_file(path, 0, &img, &err) == CNP_OK, "%s", err.msg);
    tg_graph t;
    build(&t);
    const det_graph *g = &t.g;
    int nn = g->n_nodes;
    det_graph_engine *e = NULL;
    CHECK_FATAL(det_graph_engine_create(ctx, g, 200, 200, &e, &err) == CNP_OK, "%s", err.msg);
    cl_int rc;
    cl_mem buf = clCreateBuffer(ocl_ctx_context(ctx), CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR,
                                (size_t)img.width * img.height * 4, img.rgba, &rc);
    REQUIRE(rc == CL_SUCCESS);

    /* Device bytes: weights plus at least the input's 3 x 128 x 160 (the
     * largest padded transform: 96 -> 96 x 160 -> padded 96 x 160 or
     * 160 x 96) and the stem's output. */
    size_t bytes = det_graph_engine_device_bytes(e), wb = weight_bytes(g);
    size_t act = sizeof(float) * (3 * 96 * 160 + 8 * 48 * 80);
    printf("device bytes %zu, weights %zu\n", bytes, wb);
    CHECK(bytes >= wb + act, "device bytes %zu < weights %zu + activations %zu", bytes, wb, act);

    det_detection *d0 = NULL, *d1 = NULL;
    size_t n0 = 0, n1 = 0;
    CHECK_FATAL(det_graph_engine_predict(e, buf, img.width, 13, 29, 150, 97, &d0, &n0, &err) ==
                    CNP_OK, "%s", err.msg);
    CHECK(n0 > 5, "only %zu detections", n0);

    double *a = calloc(4 * (size_t)nn, sizeof *a);
    REQUIRE(a != NULL);
    det_graph_times tm = {a, a + nn, a + 2 * nn, a + 3 * nn, 0};
    det_graph_engine_set_times(e, &tm);
    CHECK_FATAL(det_graph_engine_predict(e, buf, img.width, 13, 29, 150, 97, &d1, &n1, &err) ==
                    CNP_OK, "%s", err.msg);
    det_graph_engine_set_times(e, NULL);
    CHECK(n1 == n0 && (n0 == 0 || memcmp(d0, d1, n0 * sizeof *d0) == 0),
          "timing changed the detections: %zu vs %zu", n1, n0);
    for (int i = 0; i < nn; i++) {
        const det_node *n = &g->nodes[i];
        bool conv = n->op == DET_OP_CONV;
        /* Winograd runs as one stamp under gemm: its transforms, batched
         * products and the output transform with bias and ReLU fused. */
        int cpath = conv ? det_graph_engine_node_path(e, i, NULL, NULL) : DET_CONV_AUTO;
        bool wino = cpath == DET_CONV_WINOGRAD;
        bool gemm = cpath == DET_CONV_GEMM || wino;
        bool col = cpath == DET_CONV_GEMM && (n->k != 1 || n->stride != 1 || n->pad != 0);
        CHECK((tm.im2col[i] > 0) == col, "node %s: im2col %g", n->name, tm.im2col[i]);
        CHECK((tm.gemm[i] > 0) == gemm && (tm.epilogue[i] > 0) == (conv && !wino),
              "node %s: gemm %g, epilogue %g", n->name, tm.gemm[i], tm.epilogue[i]);
        CHECK((tm.other[i] > 0) == !conv, "node %s: other %g", n->name, tm.other[i]);
    }
    CHECK(tm.post > 0, "post %g", tm.post);

    /* Off again: a predict leaves the struct as it was. */
    double *copy = malloc(4 * (size_t)nn * sizeof *copy);
    REQUIRE(copy != NULL);
    memcpy(copy, a, 4 * (size_t)nn * sizeof *copy);
    double post = tm.post;
    free(d1);
    d1 = NULL;
    CHECK_FATAL(det_graph_engine_predict(e, buf, img.width, 0, 0, 200, 180, &d1, &n1, &err) ==
                    CNP_OK, "%s", err.msg);
    CHECK(memcmp(copy, a, 4 * (size_t)nn * sizeof *copy) == 0 && tm.post == post,
          "timing off still wrote times");
    CHECK(det_graph_engine_device_bytes(e) == bytes, "device bytes grew to %zu from %zu",
          det_graph_engine_device_bytes(e), bytes);

    free(copy);
    free(a);
    free(d0);
    free(d1);
    clReleaseMemObject(buf);
    det_graph_engine_free(e);
    tg_free(&t);
    cnp_image_free(&img);
    ocl_ctx_free(ctx);
    return test_result("test_graph_bench");
}
