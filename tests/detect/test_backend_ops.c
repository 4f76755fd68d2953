/* One op-test harness for the model interface (ggml's test-backend-ops):
 * every operation of every device table (src/detect/model_backend.h) is
 * run next to the CPU table of the same model kind on odd sizes, and the
 * results must agree:
 *
 *   window_side, plan  identical;
 *   run                one patch's trees: the same trees (position 0.05 px,
 *                      score 1e-3, radius 1e-3 relative), near-ties at the
 *                      score threshold excepted;
 *   merge              identical kept trees, at several IoUs given as the
 *                      argument (also >= 1: none), on the same input;
 *   detect             the whole image, as run.
 *
 * Models: the crown model models/test/random-tiny.cnw and a small box model
 * (a one-level RetinaNet graph with seeded weights). A new table (a
 * classifier, a oneDNN CPU backend) joins by adding its model to MODELS. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "canopy/config.h"
#include "canopy/detect.h"
#include "canopy/gpu.h"
#include "detect/cnw_util.h"
#include "detect/detect_internal.h"
#include "detect/graph_util.h"
#include "detect/test_detect_common.h"

#define TINY CANOPY_SOURCE_DIR "/models/test/random-tiny.cnw"
#define POS_TOL 0.05f
#define SCORE_TOL 1e-3f

static ocl_ctx *g_ctx;

/* A box model around an in-memory graph (never det_model_free'd). */
static void box_model(tg_graph *t, det_model *m)
{
    tg_init(t, 4242);
    int stem = tg_conv(t, 0, 3, 8, 3, 2, 1, 1, -1, true, 1.4f, 0.0f);
    int pool = tg_add(t, (det_node){.op = DET_OP_MAXPOOL, .in = stem, .in2 = -1, .k = 3,
                                    .stride = 2, .pad = 1, .dilation = 1});
    int lat = tg_conv(t, pool, 8, 8, 1, 1, 0, 1, -1, false, 1.0f, 0.0f);
    int r = tg_add(t, (det_node){.op = DET_OP_RELU, .in = lat, .in2 = -1});
    det_retina *rt = &t->g.retina;
    tg_retina_identity(rt, 64, 64);
    rt->min_size = 64;
    rt->max_size = 96;
    rt->size_divisible = 32;
    rt->cls_node[0] = tg_conv(t, r, 8, 1, 3, 1, 1, 1, -1, false, 1.0f, -1.0f);
    rt->box_node[0] = tg_conv(t, r, 8, 4, 3, 1, 1, 1, -1, false, 0.5f, 0.0f);
    rt->score_thresh = 0.3f;
    rt->topk_candidates = 200;
    rt->detections_per_img = 100;
    memset(m, 0, sizeof *m);
    snprintf(m->version, sizeof m->version, "box-test");
    m->format_version = 2;
    m->stride = 4;
    m->nms_iou = 0.5;
    m->graph = &t->g;
}

static bool near_tie(const cnp_tree *t, float threshold)
{
    return fabsf(t->score - threshold) < SCORE_TOL;
}

static bool same_tree(const cnp_tree *a, const cnp_tree *b)
{
    if (a->boxed != b->boxed || a->label != b->label || fabsf(a->score - b->score) > SCORE_TOL)
        return false;
    if (a->boxed)
        return fabsf(a->x0 - b->x0) < POS_TOL && fabsf(a->y0 - b->y0) < POS_TOL &&
               fabsf(a->x1 - b->x1) < POS_TOL && fabsf(a->y1 - b->y1) < POS_TOL;
    return fabsf(a->x - b->x) < POS_TOL && fabsf(a->y - b->y) < POS_TOL &&
           fabsf(a->radius - b->radius) < 1e-3f * (1 + a->radius);
}

/* Every tree of a (near-ties aside) has its twin in b. */
static size_t unmatched(const cnp_tree *a, size_t na, const cnp_tree *b, size_t nb,
                        float threshold)
{
    size_t miss = 0;
    for (size_t i = 0; i < na; i++) {
        if (near_tie(&a[i], threshold))
            continue;
        bool found = false;
        for (size_t j = 0; j < nb && !found; j++)
            found = same_tree(&a[i], &b[j]);
        miss += !found;
    }
    return miss;
}

static void check_same_trees(const char *what, const char *model, const cnp_tree *dev,
                             size_t nd, const cnp_tree *cpu, size_t nc, float threshold)
{
    size_t a = unmatched(dev, nd, cpu, nc, threshold), b = unmatched(cpu, nc, dev, nd, threshold);
    CHECK(a == 0 && b == 0, "%s %s: device %zu trees (%zu without a CPU twin), CPU %zu (%zu "
                            "without a device twin)", model, what, nd, a, nc, b);
}

static cl_mem upload(const cnp_image *img)
{
    cl_int rc;
    size_t bytes = 4 * (size_t)img->width * img->height;
    cl_mem m = ocl_buffer_create(ocl_ctx_context(g_ctx), CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR,
                                 bytes, img->rgba, &rc);
    REQUIRE(rc == CL_SUCCESS && m);
    return m;
}

static void check_ops(const char *name, const det_model *m, const cnp_detector_config *dc,
                      float threshold)
{
    cnp_err err;
    det_backend *dev = NULL, *cpu = NULL;
    CHECK_FATAL(det_backend_create(m, g_ctx, dc, &dev, &err) == CNP_OK, "%s: %s", name, err.msg);
    CHECK_FATAL(det_backend_create(m, NULL, dc, &cpu, &err) == CNP_OK, "%s: %s", name, err.msg);
    printf("%s: %s against %s\n", name, det_backend_name(dev), det_backend_name(cpu));
    CHECK(strstr(det_backend_name(dev), "/opencl") && strstr(det_backend_name(cpu), "/cpu"));
    CHECK(det_backend_window_side(dev) == det_backend_window_side(cpu), "%s: window side", name);
    CHECK(det_backend_merge_iou(dev) == det_backend_merge_iou(cpu), "%s: merge IoU", name);

    static const uint32_t SIZES[][2] = {{97, 61}, {131, 77}, {45, 113}};
    for (size_t s = 0; s < sizeof SIZES / sizeof SIZES[0]; s++) {
        uint32_t w = SIZES[s][0], h = SIZES[s][1];
        cnp_image img;
        tw_image_random(&img, w, h, 1000u + (uint32_t)s);
        cl_mem buf = upload(&img);
        det_pixels in = {.w = w, .h = h, .host = img.rgba, .dev = buf};
        char what[64];

        /* plan */
        det_tile *td = NULL, *tc = NULL;
        size_t nd = 0, nc = 0;
        CHECK_FATAL(det_backend_plan(dev, w, h, &td, &nd, &err) == CNP_OK, "%s", err.msg);
        CHECK_FATAL(det_backend_plan(cpu, w, h, &tc, &nc, &err) == CNP_OK, "%s", err.msg);
        CHECK(nd == nc && nd > 1 && memcmp(td, tc, nd * sizeof *td) == 0,
              "%s %ux%u: plans differ (%zu / %zu windows)", name, w, h, nd, nc);

        /* run: every window as its own patch image; gather for merge */
        cnp_tree *all = NULL;
        size_t nall = 0;
        for (size_t i = 0; i < nc; i++) {
            cnp_image p;
            REQUIRE(cnp_image_alloc(&p, tc[i].w, tc[i].h, &err) == CNP_OK);
            for (uint32_t y = 0; y < p.height; y++)
                memcpy(p.rgba + 4 * (size_t)y * p.width,
                       img.rgba + 4 * ((size_t)(tc[i].y0 + y) * w + tc[i].x0), 4 * (size_t)p.width);
            cl_mem pb = upload(&p);
            det_pixels pin = {.w = p.width, .h = p.height, .host = p.rgba, .dev = pb};
            det_found fd = {0}, fc = {0};
            CHECK_FATAL(det_backend_run(dev, &pin, 1, &fd, &err) == CNP_OK, "%s", err.msg);
            CHECK_FATAL(det_backend_run(cpu, &pin, 1, &fc, &err) == CNP_OK, "%s", err.msg);
            snprintf(what, sizeof what, "run %ux%u window %zu", w, h, i);
            check_same_trees(what, name, fd.trees, fd.n, fc.trees, fc.n, threshold);
            all = realloc(all, (nall + fc.n + 1) * sizeof *all);
            REQUIRE(all);
            for (size_t k = 0; k < fc.n; k++) {
                cnp_tree t = fc.trees[k];
                det_tree_shift(&t, tc[i].x0, tc[i].y0);
                all[nall++] = t;
            }
            det_found_free(&fd, 1);
            det_found_free(&fc, 1);
            ocl_buffer_release(pb);
            cnp_image_free(&p);
        }

        /* merge: the same input, the IoU as the argument */
        const float ious[] = {0.15f, 0.3f, 0.5f, det_backend_merge_iou(cpu), 1.0f};
        for (size_t k = 0; k < sizeof ious / sizeof ious[0]; k++) {
            cnp_tree *a = malloc((nall + 1) * sizeof *a), *b = malloc((nall + 1) * sizeof *b);
            REQUIRE(a && b);
            memcpy(a, all, nall * sizeof *a);
            memcpy(b, all, nall * sizeof *b);
            size_t na = nall, nb = nall;
            CHECK_FATAL(det_backend_merge(dev, a, &na, ious[k], &err) == CNP_OK, "%s", err.msg);
            CHECK_FATAL(det_backend_merge(cpu, b, &nb, ious[k], &err) == CNP_OK, "%s", err.msg);
            CHECK(na == nb && memcmp(a, b, na * sizeof *a) == 0,
                  "%s %ux%u merge at %.2f: device kept %zu, CPU %zu of %zu", name, w, h,
                  (double)ious[k], na, nb, nall);
            CHECK(ious[k] < 1.0f || na == nall, "%s: merge at 1 dropped trees", name);
            free(a);
            free(b);
        }

        /* detect: the whole image */
        cnp_tree *a = NULL, *b = NULL;
        size_t na = 0, nb = 0;
        CHECK_FATAL(det_backend_detect(dev, &in, &a, &na, &err) == CNP_OK, "%s", err.msg);
        CHECK_FATAL(det_backend_detect(cpu, &in, &b, &nb, &err) == CNP_OK, "%s", err.msg);
        snprintf(what, sizeof what, "detect %ux%u", w, h);
        check_same_trees(what, name, a, na, b, nb, threshold);
        printf("  %ux%u: %zu windows, %zu trees before merge, %zu after detect\n", w, h, nc,
               nall, nb);
        free(a);
        free(b);
        free(all);
        free(td);
        free(tc);
        ocl_buffer_release(buf);
        cnp_image_free(&img);
    }
    det_backend_free(dev);
    det_backend_free(cpu);
}

int main(void)
{
    cnp_config cfg;
    cnp_err err;
    test_ocl_start(&cfg, &g_ctx);

    det_model *crown = NULL;
    REQUIRE(det_model_load(TINY, &crown, &err) == CNP_OK);
    cnp_detector_config dc = cfg.detector;
    dc.tile = 48;
    dc.tile_overlap = 16;
    dc.score_threshold = 0.5;
    check_ops("crown", crown, &dc, det_score_threshold(crown, dc.score_threshold));

    tg_graph t;
    det_model box;
    box_model(&t, &box);
    dc = cfg.detector;
    dc.patch_size = 40;
    dc.patch_overlap = 0.15;
    dc.patch_iou = 0.2;
    check_ops("box", &box, &dc, det_score_threshold(&box, dc.score_threshold));

    tg_free(&t);
    det_model_free(crown);
    ocl_ctx_free(g_ctx);
    return test_result("test_backend_ops");
}
