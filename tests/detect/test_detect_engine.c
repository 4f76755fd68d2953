/* The OpenCL engine against the C reference: raw output tensors within
 * OUT_TOL on random images of odd sizes and on NEON crops (each convolution
 * path: direct, gemm, pixel; two models); the extracted trees (NMS included) equal on the
 * random images and, tiled, on the three NEON images, except where a
 * decision is a near-tie that float rounding may take either way, with
 * minimum numbers of trees compared (thousands in all) and at most 2 % of
 * the NEON trees excused; no stacked crowns in the shipped model's device
 * output; and the device NMS keeping exactly the reference's boxes on random
 * boxes of odd counts (labels, ties, duplicates, chunked masks) and on the
 * NEON images' crowns before NMS. */
#include <math.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "canopy/detect.h"
#include "detect/cnw_util.h"
#include "detect/detect_internal.h"
#include "detect/test_detect_common.h"

#define TINY CANOPY_SOURCE_DIR "/models/test/random-tiny.cnw"
#define OUT_TOL 1e-3  /* max abs diff of any raw output (logits) */
#define TIE_EPS 1e-4f /* score gap under which a peak decision is ambiguous (5x the
                       * largest score difference device vs reference seen) */
#define POS_TOL 0.02f /* px */
#define SCORE_TOL 1e-4f
#define THRESHOLD 0.3f

static ocl_ctx *g_ctx;

/* A second random model: k=5, partial channel blocks, a 3x3 head. */
static const tw_layer odd_layers[] = {
    {"conv", "a1", 4, 10, 5, 1, 1},  {"maxpool", NULL, 0, 0, 0, 0, 0},
    {"conv", "a2", 10, 13, 3, 3, 1}, {"maxpool", NULL, 0, 0, 0, 0, 0},
    {"conv", "a3", 13, 6, 1, 1, 1},  {"conv", "head", 6, 4, 3, 1, 0},
};

static det_model *load_random(const tw_layer *layers, int n, uint32_t seed)
{
    tw_model tm;
    tw_model_random(&tm, "odd-test", 4, layers, n, seed);
    cnp_buf b = {0};
    tw_model_write(&tm, &b);
    char path[128];
    snprintf(path, sizeof path, "/tmp/test_detect_engine.%d.cnw", (int)getpid());
    tw_write_file(path, b.data, b.len);
    cnp_buf_free(&b);
    tw_model_free(&tm);
    det_model *m = NULL;
    cnp_err err;
    REQUIRE(det_model_load(path, &m, &err) == CNP_OK);
    unlink(path);
    return m;
}

/* Pairs of crowns whose centres are closer than half the smaller radius. */
static size_t stacked_pairs(const cnp_tree *t, size_t n)
{
    size_t pairs = 0;
    for (size_t i = 0; i < n; i++)
        for (size_t j = i + 1; j < n; j++) {
            float r = fminf(t[i].radius, t[j].radius);
            float dx = t[i].x - t[j].x, dy = t[i].y - t[j].y;
            if (sqrtf(dx * dx + dy * dy) < 0.5f * r)
                pairs++;
        }
    return pairs;
}

static cl_mem upload(const cnp_image *img)
{
    cl_int rc;
    size_t bytes = (size_t)img->width * img->height * 4;
    cl_mem b = clCreateBuffer(ocl_ctx_context(g_ctx), CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR,
                              bytes ? bytes : 4, bytes ? img->rgba : (void *)"\0\0\0", &rc);
    REQUIRE(rc == CL_SUCCESS);
    return b;
}

static float sig(float v)
{
    return 1.0f / (1.0f + expf(-v));
}

typedef struct pos_list {
    float *xy;
    size_t n, cap;
} pos_list;

static void pos_add(pos_list *p, float x, float y)
{
    if (p->n == p->cap) {
        p->cap = p->cap ? 2 * p->cap : 64;
        p->xy = realloc(p->xy, p->cap * 2 * sizeof(float));
    }
    p->xy[2 * p->n] = x;
    p->xy[2 * p->n + 1] = y;
    p->n++;
}

static bool pos_near(const pos_list *p, float x, float y, float tol)
{
    for (size_t i = 0; i < p->n; i++)
        if (fabsf(p->xy[2 * i] - x) < tol && fabsf(p->xy[2 * i + 1] - y) < tol)
            return true;
    return false;
}

/* Centres of every cell whose peak decision is a near-tie, from the reference
 * tensors of the same tiles the runs use. */
static void ambiguous_cells(const det_model *m, const cnp_image *img, int tile, int overlap,
                            pos_list *amb)
{
    det_tile *t = NULL;
    size_t nt = 0;
    cnp_err err;
    REQUIRE(det_tiles_plan(img->width, img->height, tile, overlap, m->stride, &t, &nt, &err) ==
            CNP_OK);
    for (size_t k = 0; k < nt; k++) {
        float *out = NULL;
        uint32_t oh, ow;
        REQUIRE(det_ref_forward(m, img->rgba + 4 * ((size_t)t[k].y0 * img->width + t[k].x0),
                                img->width, t[k].w, t[k].h, &out, &oh, &ow, &err) == CNP_OK);
        size_t plane = (size_t)oh * ow;
        const float *heat = out + m->out_index[DET_OUT_HEATMAP] * plane;
        for (uint32_t i = 0; i < oh; i++)
            for (uint32_t j = 0; j < ow; j++) {
                float s = sig(heat[(size_t)i * ow + j]);
                if (s < THRESHOLD - TIE_EPS)
                    continue;
                bool amb_cell = fabsf(s - THRESHOLD) < TIE_EPS;
                for (int di = -1; di <= 1; di++)
                    for (int dj = -1; dj <= 1; dj++) {
                        long ni = (long)i + di, nj = (long)j + dj;
                        if ((di || dj) && ni >= 0 && nj >= 0 && ni < oh && nj < ow &&
                            fabsf(sig(heat[(size_t)ni * ow + (size_t)nj]) - s) < TIE_EPS)
                            amb_cell = true;
                    }
                if (!amb_cell)
                    continue;
                size_t c = (size_t)i * ow + j;
                float x = (float)t[k].x0 +
                          ((float)j + 0.5f + out[m->out_index[DET_OUT_DX] * plane + c]) * 4.0f;
                float y = (float)t[k].y0 +
                          ((float)i + 0.5f + out[m->out_index[DET_OUT_DY] * plane + c]) * 4.0f;
                pos_add(amb, x, y);
            }
        free(out);
    }
    free(t);
}

/* Centres of crowns whose NMS decision is a near-tie: pairs (before NMS)
 * whose IoU is within TIE_EPS of nms_iou, or that overlap by more than it
 * with scores within SCORE_TOL (the order between them may flip). */
static void ambiguous_nms(const det_model *m, const cnp_image *img, int tile, int overlap,
                          float nms_iou, pos_list *amb)
{
    if (!(nms_iou < 1.0f))
        return;
    cnp_tree *t = NULL;
    size_t n = 0;
    cnp_err err;
    REQUIRE(det_ref_run(m, img, THRESHOLD - TIE_EPS, 1.0f, tile, overlap, &t, &n, &err) ==
            CNP_OK);
    for (size_t i = 0; i < n; i++)
        for (size_t j = i + 1; j < n; j++) {
            det_box bi = det_tree_box(&t[i]), bj = det_tree_box(&t[j]);
            double iou = det_box_iou(&bi, &bj);
            if (fabs(iou - nms_iou) < TIE_EPS ||
                (iou > nms_iou - TIE_EPS && fabsf(t[i].score - t[j].score) < SCORE_TOL)) {
                pos_add(amb, t[i].x, t[i].y);
                pos_add(amb, t[j].x, t[j].y);
            }
        }
    free(t);
}

/* Every tree of one list is in the other, both ways (centre within POS_TOL,
 * score within SCORE_TOL, radius within 0.1 %), except trees at a near-tie
 * (score within TIE_EPS of the threshold, a peak decision or an NMS
 * decision that float rounding may take either way). The counts may differ
 * by excused trees only, at least min_compared trees of each list must have
 * been compared, and at most max_excused_pct percent of each list excused. */
static void compare_trees(const det_model *m, const cnp_image *img, int tile, int overlap,
                          float nms_iou, const cnp_tree *a, size_t na, const cnp_tree *b,
                          size_t nb, size_t min_compared, size_t max_excused_pct,
                          const char *what)
{
    pos_list amb = {0};
    ambiguous_cells(m, img, tile, overlap, &amb);
    ambiguous_nms(m, img, tile, overlap, nms_iou, &amb);
    size_t compared[2] = {0, 0}, excused[2] = {0, 0};
    for (int pass = 0; pass < 2; pass++) {
        const cnp_tree *p = pass ? b : a, *q = pass ? a : b;
        size_t np = pass ? nb : na, nq = pass ? na : nb;
        for (size_t i = 0; i < np; i++) {
            if (p[i].score <= THRESHOLD + TIE_EPS || pos_near(&amb, p[i].x, p[i].y, 0.1f)) {
                excused[pass]++;
                continue;
            }
            bool found = false;
            for (size_t k = 0; k < nq && !found; k++)
                found = fabsf(p[i].x - q[k].x) < POS_TOL && fabsf(p[i].y - q[k].y) < POS_TOL &&
                        fabsf(p[i].score - q[k].score) < SCORE_TOL &&
                        fabsf(p[i].radius - q[k].radius) < 1e-3f * (1 + p[i].radius);
            CHECK_MSG(found, "%s: %s tree (%.3f, %.3f) r %.3f s %.5f has no match", what,
                      pass ? "device" : "reference", p[i].x, p[i].y, p[i].radius, p[i].score);
            compared[pass]++;
        }
    }
    size_t diff = na > nb ? na - nb : nb - na;
    CHECK_MSG(diff <= excused[0] + excused[1], "%s: %zu vs %zu trees, only %zu + %zu excused",
              what, na, nb, excused[0], excused[1]);
    CHECK_MSG(excused[0] * 100 <= na * max_excused_pct && excused[1] * 100 <= nb * max_excused_pct,
              "%s: %zu of %zu reference and %zu of %zu device trees excused as near-ties",
              what, excused[0], na, excused[1], nb);
    CHECK_MSG(compared[0] >= min_compared && compared[1] >= min_compared,
              "%s: compared %zu reference and %zu device trees, want at least %zu", what,
              compared[0], compared[1], min_compared);
    printf("%s: reference %zu, device %zu trees, %zu / %zu compared, %zu / %zu excused "
           "(%zu near-tie cells or pairs)\n",
           what, na, nb, compared[0], compared[1], excused[0], excused[1], amb.n);
    free(amb.xy);
}

typedef struct tree_bounds {
    size_t min_compared, max_excused_pct;
} tree_bounds;

static void test_forward(det_engine *e, const det_model *m, const cnp_image *img,
                         tree_bounds tb, const char *what)
{
    cl_mem buf = upload(img);
    float *dev = NULL, *ref = NULL;
    uint32_t doh, dow, roh, row;
    cnp_err err;
    cnp_status st = det_engine_forward(e, buf, img->width, 0, 0, img->width, img->height, &dev,
                                       &doh, &dow, &err);
    CHECK_MSG(st == CNP_OK, "%s: %s", what, err.msg);
    REQUIRE(det_ref_forward(m, img->rgba, img->width, img->width, img->height, &ref, &roh,
                            &row, &err) == CNP_OK);
    CHECK(doh == roh && dow == row);
    double maxdiff = 0;
    for (size_t i = 0; st == CNP_OK && i < 4 * (size_t)roh * row; i++) {
        double d = fabs((double)dev[i] - ref[i]);
        maxdiff = d > maxdiff || isnan(d) ? d : maxdiff;
    }
    CHECK_MSG(maxdiff <= OUT_TOL, "%s: max abs diff %.3g", what, maxdiff);
    printf("%s: output 4x%ux%u, max abs diff %.3g\n", what, roh, row, maxdiff);
    free(dev);
    free(ref);

    /* Trees, untiled (the image fits the tile), NMS at the model's IoU. */
    cnp_tree *a = NULL, *b = NULL;
    size_t na = 0, nb = 0;
    float iou = (float)det_model_nms_iou(m);
    REQUIRE(det_ref_run(m, img, THRESHOLD, iou, (int)det_engine_tile(e), 64, &a, &na, &err) ==
            CNP_OK);
    st = det_engine_run(e, buf, img->width, img->height, &b, &nb, &err);
    CHECK_MSG(st == CNP_OK, "%s: %s", what, err.msg);
    compare_trees(m, img, (int)det_engine_tile(e), 64, iou, a, na, b, nb, tb.min_compared,
                  tb.max_excused_pct, what);
    free(a);
    free(b);
    clReleaseMemObject(buf);
}

/* An engine for the tests: the given tile, overlap 64, THRESHOLD; NULL
 * (with the check failed) when it cannot be made. */
static det_engine *test_engine(const det_model *m, int tile)
{
    cnp_config cfg;
    cnp_config_defaults(&cfg);
    cfg.detector.tile = tile;
    cfg.detector.tile_overlap = 64;
    cfg.detector.score_threshold = THRESHOLD;
    det_engine *e = NULL;
    cnp_err err;
    cnp_status st = det_engine_create(g_ctx, m, &cfg.detector, &e, &err);
    CHECK_MSG(st == CNP_OK, "%s", err.msg);
    return st == CNP_OK ? e : NULL;
}

/* conv = auto times both paths once per device and shapes, then reads the
 * choice back from the file next to the kernel cache: a second engine times
 * nothing and chooses alike; a damaged file means timing again. */
static void test_paths_remembered(const det_model *m)
{
    det_engine *e = test_engine(m, 128);
    if (!e)
        return;
    char file[4096];
    det_engine_conv_paths_file(e, file, sizeof file);
    det_engine_free(e);
    unlink(file);
    det_engine *a = test_engine(m, 128), *b = NULL, *c = NULL;
    if (a)
        CHECK_MSG(det_engine_timed_layers(a) > 0, "nothing timed without %s", file);
    CHECK_MSG(access(file, R_OK) == 0, "%s not written", file);
    if (a && (b = test_engine(m, 128)) != NULL) {
        CHECK_MSG(det_engine_timed_layers(b) == 0, "%zu layers timed again with %s",
                  det_engine_timed_layers(b), file);
        for (size_t i = 0; i < det_engine_layer_count(a); i++) {
            det_layer_info ia, ib;
            det_engine_layer_info(a, i, &ia);
            det_engine_layer_info(b, i, &ib);
            CHECK_MSG(ia.chosen == ib.chosen, "layer %s: %d timed, %d remembered", ia.name,
                      ia.chosen, ib.chosen);
        }
    }
    FILE *f = fopen(file, "w");
    if (f) {
        fputs("0 sideways 1 2\n", f);
        fclose(f);
    }
    if ((c = test_engine(m, 128)) != NULL)
        CHECK_MSG(det_engine_timed_layers(c) > 0, "a damaged %s was trusted", file);
    det_engine_free(a);
    det_engine_free(b);
    det_engine_free(c);
}

/* Device NMS against det_nms_contain on the same boxes: the same kept
 * indices in the same order, exactly. Returns how many both kept. */
static size_t nms_compare(det_engine *e, const det_box *b, const float *sc, const int *lab,
                          size_t n, float iou, float contain, const char *what)
{
    uint32_t *ka = malloc((n ? n : 1) * sizeof *ka), *kb = malloc((n ? n : 1) * sizeof *kb);
    size_t na = 0, nb = 0;
    cnp_err err;
    REQUIRE(ka && kb);
    REQUIRE(det_nms_contain(b, sc, lab, n, iou, contain, ka, &na, &err) == CNP_OK);
    cnp_status st = det_engine_nms_contain(e, b, sc, lab, n, iou, contain, kb, &nb, &err);
    CHECK_MSG(st == CNP_OK, "%s: %s", what, err.msg);
    size_t first_diff = na < nb ? na : nb;
    for (size_t i = 0; i < first_diff; i++)
        if (ka[i] != kb[i]) {
            first_diff = i;
            break;
        }
    CHECK_MSG(st == CNP_OK && na == nb && first_diff == na,
              "%s: reference keeps %zu, device %zu of %zu, first difference at %zu", what, na,
              nb, n, first_diff);
    /* Only a test that suppresses something and keeps something says much. */
    if (n >= 8)
        CHECK_MSG(na > 0 && na < n, "%s: kept %zu of %zu", what, na, n);
    printf("%s: %zu boxes, %zu kept by both\n", what, n, na);
    free(ka);
    free(kb);
    return na;
}

/* Random clustered boxes of odd counts (across the 64-box blocks), with
 * score ties (scores on a coarse grid) and equal boxes, one class and four,
 * the whole mask at once and in chunks of 64 rows. */
static void test_nms_random(const det_model *m)
{
    static const size_t sizes[] = {1, 2, 3, 63, 64, 65, 127, 200, 1000, 2049};
    det_engine *e = test_engine(m, 128);
    if (!e)
        return;
    for (int chunked = 0; chunked < 2; chunked++) {
        det_engine_set_nms_chunk_rows(e, chunked ? 64 : 0);
        for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
            size_t n = sizes[si];
            det_box *b = malloc(n * sizeof *b);
            float *sc = malloc(n * sizeof *sc);
            int *lab = malloc(n * sizeof *lab);
            REQUIRE(b && sc && lab);
            uint32_t st = (uint32_t)(7 + n);
            /* Density: about 3 boxes per 40 x 40 cell of the area. */
            float side = 40.0f * sqrtf((float)n / 3.0f + 1.0f);
            for (size_t i = 0; i < n; i++) {
                float x = tw_randf(&st) * side, y = tw_randf(&st) * side;
                float r = 4.0f + 16.0f * tw_randf(&st);
                b[i] = (det_box){x - r, y - r, x + r, y + r};
                sc[i] = (float)(1 + (int)(tw_randf(&st) * 20)) / 20.0f;
                lab[i] = (int)(tw_rand(&st) % 4);
                if (i > 0 && tw_randf(&st) < 0.05f) { /* exact duplicates */
                    b[i] = b[i - 1];
                    sc[i] = sc[i - 1];
                }
            }
            static const float ious[] = {0.3f, 0.5f};
            for (int k = 0; k < 2; k++) {
                char what[96];
                snprintf(what, sizeof what, "NMS random n=%zu iou %.1f%s", n, ious[k],
                         chunked ? " chunked" : "");
                size_t plain = nms_compare(e, b, sc, NULL, n, ious[k], 1.0f, what);
                snprintf(what, sizeof what, "NMS random n=%zu iou %.1f labels%s", n, ious[k],
                         chunked ? " chunked" : "");
                nms_compare(e, b, sc, lab, n, ious[k], 1.0f, what);
                /* The crowns' containment test (radii 4..20: many boxes lie
                 * in larger ones), device against reference too. */
                snprintf(what, sizeof what, "NMS random n=%zu iou %.1f contain%s", n, ious[k],
                         chunked ? " chunked" : "");
                size_t contained = nms_compare(e, b, sc, NULL, n, ious[k], DET_NMS_CONTAIN, what);
                if (n >= 200)
                    CHECK(contained < plain, "%s: containment removed nothing (%zu, %zu)", what,
                          contained, plain);
                snprintf(what, sizeof what, "NMS random n=%zu iou %.1f contain labels%s", n,
                         ious[k], chunked ? " chunked" : "");
                nms_compare(e, b, sc, lab, n, ious[k], DET_NMS_CONTAIN, what);
            }
            free(b);
            free(sc);
            free(lab);
        }
    }
    cnp_err err;
    size_t nk = 7;
    CHECK(det_engine_nms(e, NULL, NULL, NULL, 0, 0.3f, NULL, &nk, &err) == CNP_OK && nk == 0);
    det_engine_free(e);
}

/* The crowns of the NEON images before NMS (C reference, a low threshold
 * for many of them): device and reference NMS keep the same set. */
static void test_nms_neon(const det_model *m)
{
    static const char *images[] = {"OSBS_029", "SOAP_061", "YELL_541000_west"};
    det_engine *e = test_engine(m, 128);
    if (!e)
        return;
    cnp_err err;
    for (int i = 0; i < 3; i++) {
        char path[512];
        snprintf(path, sizeof path, "%s/%s.png", CANOPY_NEON_DIR, images[i]);
        cnp_image img = {0};
        REQUIRE(img_png_read_file(path, 0, &img, &err) == CNP_OK);
        cnp_tree *t = NULL;
        size_t n = 0;
        REQUIRE(det_ref_run(m, &img, 0.1f, 1.0f, 0, 0, &t, &n, &err) == CNP_OK);
        det_box *b = malloc((n ? n : 1) * sizeof *b);
        float *sc = malloc((n ? n : 1) * sizeof *sc);
        REQUIRE(b && sc);
        for (size_t k = 0; k < n; k++) {
            b[k] = det_tree_box(&t[k]);
            sc[k] = t[k].score;
        }
        CHECK_MSG(n >= 40, "%s: only %zu crowns at threshold 0.1", images[i], n);
        char what[96];
        snprintf(what, sizeof what, "NMS %s %s iou %.2f", det_model_version(m), images[i],
                 det_model_nms_iou(m));
        nms_compare(e, b, sc, NULL, n, (float)det_model_nms_iou(m), 1.0f, what);
        snprintf(what, sizeof what, "NMS %s %s iou %.2f contain %.2f", det_model_version(m),
                 images[i], det_model_nms_iou(m), DET_NMS_CONTAIN);
        nms_compare(e, b, sc, NULL, n, (float)det_model_nms_iou(m), DET_NMS_CONTAIN, what);
        free(b);
        free(sc);
        free(t);
        cnp_image_free(&img);
    }
    det_engine_free(e);
}

/* tb: per size, the bounds of the tree comparison. */
static void test_model_sizes(const det_model *m, const char *name, const tree_bounds tb[5])
{
    static const uint32_t sizes[][2] = {{1, 1}, {5, 7}, {37, 53}, {129, 257}, {320, 96}};
    det_engine *e = test_engine(m, 320);
    if (!e)
        return;
    for (size_t l = 0; l < det_engine_layer_count(e); l++) {
        det_layer_info li;
        det_engine_layer_info(e, l, &li);
        if (li.is_conv)
            printf("%s %s: direct %.2f ms, gemm %.2f ms -> %s\n", name, li.name,
                   li.direct_s * 1e3, li.gemm_s * 1e3,
                   li.chosen == DET_CONV_DIRECT ? "direct" : "gemm");
    }
    static const enum det_conv_path paths[] = {DET_CONV_DIRECT, DET_CONV_GEMM, DET_CONV_PIXEL};
    static const char *pname[] = {"direct", "gemm", "pixel"};
    for (int p = 0; p < 3; p++) {
        det_engine_set_conv_path(e, paths[p]);
        for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
            cnp_image img = {0};
            tw_image_random(&img, sizes[s][0], sizes[s][1], (uint32_t)(100 + s));
            char what[128];
            snprintf(what, sizeof what, "%s %s %ux%u", name, pname[p], sizes[s][0],
                     sizes[s][1]);
            test_forward(e, m, &img, tb[s], what);
            cnp_image_free(&img);
        }
    }
    det_engine_free(e);
}

/* min_compared: trees each list must have compared per image; check_stacked:
 * no two device crowns closer than half the smaller radius. */
static void test_neon(const det_model *m, const char *name, const size_t min_compared[3],
                      bool check_stacked)
{
    static const char *images[] = {"OSBS_029", "SOAP_061", "YELL_541000_west"};
    det_engine *e = test_engine(m, 256);
    if (!e)
        return;
    cnp_err err;
    cnp_status st;
    for (int i = 0; i < 3; i++) {
        char path[512];
        snprintf(path, sizeof path, "%s/%s.png", CANOPY_NEON_DIR, images[i]);
        cnp_image img = {0};
        REQUIRE(img_png_read_file(path, 0, &img, &err) == CNP_OK);
        cl_mem buf = upload(&img);
        /* Raw outputs on a 256 x 256 region away from the corner, both paths. */
        uint32_t x0 = img.width - 256 - 8, y0 = 12;
        float *ref = NULL;
        uint32_t roh, row;
        REQUIRE(det_ref_forward(m, img.rgba + 4 * ((size_t)y0 * img.width + x0), img.width, 256,
                                256, &ref, &roh, &row, &err) == CNP_OK);
        static const enum det_conv_path paths[] = {DET_CONV_DIRECT, DET_CONV_GEMM,
                                                   DET_CONV_PIXEL};
        for (int pi = 0; pi < 3; pi++) {
            enum det_conv_path p = paths[pi];
            det_engine_set_conv_path(e, p);
            float *dev = NULL;
            uint32_t doh = 0, dow = 0;
            st = det_engine_forward(e, buf, img.width, x0, y0, 256, 256, &dev, &doh, &dow, &err);
            CHECK_MSG(st == CNP_OK, "%s", err.msg);
            double maxdiff = 0;
            for (size_t k = 0; st == CNP_OK && k < 4 * (size_t)roh * row; k++) {
                double d = fabs((double)dev[k] - ref[k]);
                maxdiff = d > maxdiff || isnan(d) ? d : maxdiff;
            }
            CHECK(doh == roh && dow == row);
            CHECK_MSG(maxdiff <= OUT_TOL, "%s %s: max abs diff %.3g", name, images[i], maxdiff);
            printf("%s %s %s: output 4x%ux%u, max abs diff %.3g\n", name, images[i],
                   p == DET_CONV_DIRECT ? "direct" : p == DET_CONV_GEMM ? "gemm" : "pixel", roh,
                   row, maxdiff);
            free(dev);
        }
        free(ref);
        det_engine_set_conv_path(e, DET_CONV_AUTO);
        cnp_tree *a = NULL, *b = NULL;
        size_t na = 0, nb = 0;
        float iou = (float)det_model_nms_iou(m);
        REQUIRE(det_ref_run(m, &img, THRESHOLD, iou, 256, 64, &a, &na, &err) == CNP_OK);
        st = det_engine_run(e, buf, img.width, img.height, &b, &nb, &err);
        CHECK_MSG(st == CNP_OK, "%s", err.msg);
        char what[128];
        snprintf(what, sizeof what, "%s %s (tile 256)", name, images[i]);
        compare_trees(m, &img, 256, 64, iou, a, na, b, nb, min_compared[i], 2, what);
        if (check_stacked) {
            size_t pairs = stacked_pairs(b, nb);
            CHECK_MSG(pairs == 0, "%s: %zu device crowns stacked on others", what, pairs);
        }
        free(a);
        free(b);
        clReleaseMemObject(buf);
        cnp_image_free(&img);
    }
    det_engine_free(e);
}

/* Tiles as batches: the same image with patch_batch 1, 3 and 4 (tile 128,
 * so that interior, edge and corner tiles of several sizes fill batches
 * and leave remainders) gives exactly the same trees, bit for bit, on each
 * conv path. (conv = auto chooses each node's path by timing at the
 * engine's batch, so engines of different batches may choose differently,
 * as engines on different devices do: that is compared to the reference
 * within bounds by test_neon, not bit for bit.) */
static void test_batch(const det_model *m, const char *name, size_t min_trees)
{
    static const char *images[] = {"OSBS_029", "YELL_541000_west"};
    static const int batches[] = {1, 3, 4};
    det_engine *e[3] = {NULL, NULL, NULL};
    cnp_config cfg;
    cnp_config_defaults(&cfg);
    cfg.detector.tile = 128;
    cfg.detector.tile_overlap = 40;
    cfg.detector.score_threshold = THRESHOLD;
    cnp_err err;
    for (int b = 0; b < 3; b++) {
        cfg.detector.patch_batch = batches[b];
        cnp_status st = det_engine_create(g_ctx, m, &cfg.detector, &e[b], &err);
        CHECK_MSG(st == CNP_OK, "%s", err.msg);
        REQUIRE(st == CNP_OK);
        CHECK_MSG(det_engine_batch(e[b]) == batches[b], "%s: batch %d of %d", name,
                  det_engine_batch(e[b]), batches[b]);
    }
    for (int i = 0; i < 2; i++) {
        char path[512];
        snprintf(path, sizeof path, "%s/%s.png", CANOPY_NEON_DIR, images[i]);
        cnp_image img = {0};
        REQUIRE(img_png_read_file(path, 0, &img, &err) == CNP_OK);
        cl_mem buf = upload(&img);
        for (int p = DET_CONV_DIRECT; p <= DET_CONV_PIXEL; p++) {
            cnp_tree *t[3] = {NULL, NULL, NULL};
            size_t n[3] = {0, 0, 0};
            for (int b = 0; b < 3; b++) {
                det_engine_set_conv_path(e[b], (enum det_conv_path)p);
                cnp_status st = det_engine_run(e[b], buf, img.width, img.height, &t[b], &n[b],
                                               &err);
                CHECK_MSG(st == CNP_OK, "%s", err.msg);
            }
            for (int b = 1; b < 3; b++)
                CHECK_MSG(n[b] == n[0] && (n[0] == 0 || memcmp(t[b], t[0], n[0] * sizeof
                                                               *t[0]) == 0),
                          "%s %s path %d: batch %d gives %zu trees, batch 1 %zu (or differ)",
                          name, images[i], p, batches[b], n[b], n[0]);
            CHECK_MSG(n[0] >= min_trees, "%s %s: only %zu trees", name, images[i], n[0]);
            printf("%s %s path %d: %zu trees, identical at batch 1, 3, 4\n", name, images[i], p,
                   n[0]);
            for (int b = 0; b < 3; b++)
                free(t[b]);
        }
        clReleaseMemObject(buf);
        cnp_image_free(&img);
    }
    for (int b = 0; b < 3; b++)
        det_engine_free(e[b]);
}

/* Refusals: bad tiling configuration, a buffer smaller than the image, a
 * region outside it. */
static void test_refusals(const det_model *m)
{
    cnp_config cfg;
    cnp_config_defaults(&cfg);
    cfg.detector.tile = 128;
    cfg.detector.tile_overlap = 128;
    det_engine *e = NULL;
    cnp_err err;
    CHECK(det_engine_create(g_ctx, m, &cfg.detector, &e, &err) == CNP_ERR_CONFIG && e == NULL);
    cfg.detector.tile_overlap = 32;
    cfg.detector.conv = DET_CONV_DIRECT; /* forced: no measurement */
    REQUIRE(det_engine_create(g_ctx, m, &cfg.detector, &e, &err) == CNP_OK);
    det_layer_info li;
    det_engine_layer_info(e, 0, &li);
    CHECK(li.is_conv && li.chosen == DET_CONV_DIRECT && li.gemm_s == 0);
    cnp_image img = {0};
    tw_image_random(&img, 16, 16, 1);
    cl_mem buf = upload(&img);
    cnp_tree *t = NULL;
    size_t n = 0;
    CHECK(det_engine_run(e, buf, 17, 16, &t, &n, &err) == CNP_ERR_INVALID);
    CHECK_MSG(strstr(err.msg, "smaller than 17x16") != NULL, "%s", err.msg);
    float *out = NULL;
    uint32_t oh, ow;
    CHECK(det_engine_forward(e, buf, 16, 8, 0, 12, 12, &out, &oh, &ow, &err) ==
          CNP_ERR_INVALID);
    CHECK(det_engine_forward(e, buf, 16, 0, 8, 12, 12, &out, &oh, &ow, &err) ==
          CNP_ERR_INVALID);
    CHECK(det_engine_run(e, buf, 16, 16, &t, &n, &err) == CNP_OK);
    free(t);
    clReleaseMemObject(buf);
    cnp_image_free(&img);
    det_engine_free(e);
}

/* One blocking read per image (det_engine_waits): the NMS reads the tree
 * count on the device, and the count and the list come back together. The
 * crown model with NMS and without (iou 1) on a NEON image, and on a black
 * image (no tree); the random tiny model's thousands of peaks outgrow the
 * NMS room of a new engine: two reads the first time (the room grows to
 * them), then one, with the same trees. */
static void test_waits(const det_model *crown, const det_model *tiny)
{
    cnp_err err;
    cnp_image img = {0}, black = {0};
    char path[512];
    snprintf(path, sizeof path, "%s/YELL_541000_west.png", CANOPY_NEON_DIR);
    REQUIRE(img_png_read_file(path, 0, &img, &err) == CNP_OK);
    tw_image_random(&black, 200, 150, 1);
    memset(black.rgba, 0, (size_t)200 * 150 * 4);
    for (size_t i = 3; i < (size_t)200 * 150 * 4; i += 4)
        black.rgba[i] = 255;
    cl_mem buf = upload(&img), bbuf = upload(&black);
    det_engine *e = test_engine(crown, 128), *t = test_engine(tiny, 128);
    cnp_tree *a = NULL, *b = NULL;
    size_t na = 0, nb = 0;
    unsigned long w0;
    if (e) {
        w0 = det_engine_waits(e);
        CHECK_MSG(det_engine_run(e, buf, img.width, img.height, &a, &na, &err) == CNP_OK, "%s",
                  err.msg);
        CHECK_MSG(det_engine_waits(e) == w0 + 1 && na > 0, "crown: %lu reads, %zu trees",
                  det_engine_waits(e) - w0, na);
        w0 = det_engine_waits(e);
        CHECK_MSG(det_engine_run_nms(e, buf, img.width, img.height, 1.0f, &b, &nb, &err) ==
                      CNP_OK, "%s", err.msg);
        CHECK_MSG(det_engine_waits(e) == w0 + 1 && nb > na, "crown without NMS: %lu reads, %zu "
                  "trees (%zu after NMS)", det_engine_waits(e) - w0, nb, na);
        printf("waits: crown %zu trees, %zu before NMS, one read each\n", na, nb);
        free(a);
        free(b);
        a = b = NULL;
        w0 = det_engine_waits(e);
        CHECK_MSG(det_engine_run(e, bbuf, black.width, black.height, &a, &na, &err) == CNP_OK,
                  "%s", err.msg);
        CHECK_MSG(det_engine_waits(e) == w0 + 1 && na == 0 && a == NULL,
                  "crown on black: %lu reads, %zu trees", det_engine_waits(e) - w0, na);
    }
    if (t) {
        w0 = det_engine_waits(t);
        CHECK_MSG(det_engine_run_nms(t, buf, img.width, img.height, 1.0f, &a, &na, &err) ==
                      CNP_OK, "%s", err.msg);
        CHECK_MSG(na > 2048 && det_engine_waits(t) == w0 + 2,
                  "tiny: %zu trees past a new engine's room in %lu reads, not 2", na,
                  det_engine_waits(t) - w0);
        w0 = det_engine_waits(t);
        CHECK_MSG(det_engine_run_nms(t, buf, img.width, img.height, 1.0f, &b, &nb, &err) ==
                      CNP_OK, "%s", err.msg);
        CHECK_MSG(det_engine_waits(t) == w0 + 1 && nb == na &&
                      memcmp(a, b, na * sizeof *a) == 0,
                  "tiny again: %lu reads, %zu trees, %zu the first time (or differ)",
                  det_engine_waits(t) - w0, nb, na);
        free(b);
        b = NULL;
        w0 = det_engine_waits(t);
        CHECK_MSG(det_engine_run(t, buf, img.width, img.height, &b, &nb, &err) == CNP_OK, "%s",
                  err.msg);
        CHECK_MSG(det_engine_waits(t) == w0 + 1 && nb > 0 && nb < na,
                  "tiny with NMS: %lu reads, %zu of %zu trees", det_engine_waits(t) - w0, nb, na);
        printf("waits: tiny %zu trees before NMS (two reads, then one), %zu after\n", na, nb);
    }
    free(a);
    free(b);
    det_engine_free(e);
    det_engine_free(t);
    clReleaseMemObject(buf);
    clReleaseMemObject(bbuf);
    cnp_image_free(&img);
    cnp_image_free(&black);
}

int main(void)
{
    cnp_config cfg;
    cnp_err err;
    test_ocl_start(&cfg, &g_ctx);
    det_model *tiny = NULL;
    REQUIRE(det_model_load(TINY, &tiny, &err) == CNP_OK);
    det_model *odd = load_random(odd_layers, 6, 99);
    test_refusals(tiny);
    /* The shipped model (committed in models/): many real crowns. */
    char path[2048];
    REQUIRE(det_model_resolve_path(cfg.detector.model, path, sizeof path, &err) == CNP_OK);
    det_model *crown = NULL;
    REQUIRE(det_model_load(path, &crown, &err) == CNP_OK);
    test_waits(crown, tiny);
    test_paths_remembered(odd);
    /* Minimum trees compared per case (what each case gives, less a margin,
     * so that a run comparing almost nothing fails) and the most that may be
     * excused as near-ties. On noise the random tiny model's heatmap is
     * nearly flat, so nearly all its peaks are near-ties there: those sizes
     * hold the raw outputs together, and its trees are compared on the NEON
     * images (thousands) below. */
    static const tree_bounds tiny_sizes[5] = {{0, 0}, {0, 0}, {0, 100}, {0, 100}, {0, 100}};
    static const tree_bounds odd_sizes[5] = {{0, 0}, {0, 0}, {3, 0}, {10, 10}, {2, 34}};
    test_model_sizes(tiny, "tiny", tiny_sizes);
    test_model_sizes(odd, "odd", odd_sizes);
    static const size_t tiny_neon[3] = {900, 850, 3600};
    test_neon(tiny, "tiny", tiny_neon, false);
    static const size_t crown_neon[3] = {65, 40, 190};
    test_neon(crown, det_model_version(crown), crown_neon, true);
    test_batch(crown, det_model_version(crown), 40);
    test_batch(odd, "odd", 1);
    test_nms_random(tiny);
    test_nms_neon(crown);
    det_model_free(crown);
    det_model_free(odd);
    det_model_free(tiny);
    ocl_ctx_free(g_ctx);
    return test_result("test_detect_engine");
}
