/* Non-maximum suppression (src/detect/nms.c), the C reference of the device
 * NMS: hand-built boxes with known answers (greedy chains, IoU exactly at
 * the threshold, score ties, labels, touching boxes), and the crown model on
 * the three NEON images: before NMS some crowns are stacked (another crown's
 * centre closer than half the smaller radius), after it none are; and
 * (issue 22) crowns inside crowns: of such a pair only the better scored
 * stays (DET_NMS_CONTAIN), on hand-built crowns and on YELL_541000_west. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "canopy/detect.h"
#include "detect/detect_internal.h"
#include "detect/test_detect_common.h"

/* A crown (no box of its own). */
#define CROWN(cx, cy, r, s) {.x = (cx), .y = (cy), .radius = (r), .score = (s)}

/* Runs det_nms and checks the kept indices, in order, against want. */
static void expect_keep(const char *what, const det_box *b, const float *s, const int *lab,
                        size_t n, float iou, const uint32_t *want, size_t nwant)
{
    uint32_t keep[16];
    size_t nk = 99;
    cnp_err err;
    REQUIRE(n <= 16);
    CHECK_MSG(det_nms(b, s, lab, n, iou, keep, &nk, &err) == CNP_OK, "%s: %s", what, err.msg);
    bool same = nk == nwant;
    for (size_t i = 0; same && i < nk; i++)
        same = keep[i] == want[i];
    CHECK_MSG(same, "%s: kept %zu boxes, want %zu", what, nk, nwant);
}

static void test_hand_built(void)
{
    cnp_err err;
    size_t nk = 99;
    CHECK(det_nms(NULL, NULL, NULL, 0, 0.3f, NULL, &nk, &err) == CNP_OK && nk == 0);

    /* A chain, listed out of score order: box 1 (0.9) suppresses box 2
     * (IoU 1/3 > 0.3); box 0 overlaps only box 2, which is gone, and stays. */
    det_box chain[] = {{10, 0, 20, 10}, {0, 0, 10, 10}, {5, 0, 15, 10}};
    float chain_s[] = {0.7f, 0.9f, 0.8f};
    expect_keep("chain", chain, chain_s, NULL, 3, 0.3f, (uint32_t[]){1, 0}, 2);
    /* IoU([0,10], [5,15]) = 50 / 150 = 1/3: kept at 0.34, suppressed at 0.33. */
    expect_keep("chain 0.34", chain, chain_s, NULL, 3, 0.34f, (uint32_t[]){1, 2, 0}, 3);
    expect_keep("chain 0.33", chain, chain_s, NULL, 3, 0.33f, (uint32_t[]){1, 0}, 2);

    /* IoU exactly 0.5 (inter 2, union 4): suppression needs IoU > threshold. */
    det_box half[] = {{0, 0, 4, 1}, {0, 0, 2, 1}};
    float half_s[] = {0.9f, 0.5f};
    expect_keep("IoU = threshold", half, half_s, NULL, 2, 0.5f, (uint32_t[]){0, 1}, 2);
    expect_keep("IoU > threshold", half, half_s, NULL, 2, 0.49f, (uint32_t[]){0}, 1);

    /* Touching edges overlap by zero area: never suppressed, even at 0. */
    det_box touch[] = {{0, 0, 10, 10}, {10, 0, 20, 10}, {0, 10, 10, 20}};
    float touch_s[] = {0.9f, 0.8f, 0.7f};
    expect_keep("touching", touch, touch_s, NULL, 3, 0.0f, (uint32_t[]){0, 1, 2}, 3);

    /* Equal scores: the smaller y0, then x0, comes first and wins. */
    det_box tie[] = {{2, 5, 12, 15}, {1, 5, 11, 15}, {0, 6, 10, 16}};
    float tie_s[] = {0.5f, 0.5f, 0.5f};
    expect_keep("score tie", tie, tie_s, NULL, 3, 0.3f, (uint32_t[]){1}, 1);

    /* Class-wise: the same box under another label survives. */
    det_box same[] = {{0, 0, 10, 10}, {0, 0, 10, 10}, {1, 1, 11, 11}};
    float same_s[] = {0.6f, 0.9f, 0.8f};
    int labels[] = {1, 2, 2};
    expect_keep("labels", same, same_s, labels, 3, 0.5f, (uint32_t[]){1, 0}, 2);
    expect_keep("no labels", same, same_s, NULL, 3, 0.5f, (uint32_t[]){1}, 1);

    /* A small crown inside a large one: IoU = (2/10)^2 = 0.04. */
    det_box nest[] = {{0, 0, 20, 20}, {9, 9, 13, 13}};
    float nest_s[] = {0.9f, 0.8f};
    expect_keep("nested", nest, nest_s, NULL, 2, 0.03f, (uint32_t[]){0}, 1);
    expect_keep("nested kept", nest, nest_s, NULL, 2, 0.05f, (uint32_t[]){0, 1}, 2);

    /* Crowns: two concentric rings and a separate crown. */
    cnp_tree trees[] = {CROWN(50, 50, 10, 0.6f), CROWN(51, 50, 9, 0.8f), CROWN(100, 100, 5, 0.4f)};
    size_t n = 3;
    REQUIRE(det_trees_nms(trees, &n, 0.3f, &err) == CNP_OK);
    CHECK(n == 2 && trees[0].score == 0.8f && trees[1].score == 0.4f);
    n = 3;
    cnp_tree t2[] = {CROWN(50, 50, 10, 0.6f), CROWN(51, 50, 9, 0.8f), CROWN(100, 100, 5, 0.4f)};
    REQUIRE(det_trees_nms(t2, &n, 1.0f, &err) == CNP_OK);
    CHECK(n == 3 && t2[0].score == 0.6f); /* >= 1: untouched */
    det_box bx = det_tree_box(&t2[1]);
    CHECK(bx.x0 == 42 && bx.y0 == 41 && bx.x1 == 60 && bx.y1 == 59);
}

/* Crown containment (det_trees_nms, DET_NMS_CONTAIN = 0.8): IoU cannot see
 * a small crown inside a large one; intersection over the smaller box can. */
static void test_contained(void)
{
    cnp_err err;
    CHECK(DET_NMS_CONTAIN == 0.8f);
    /* The YELL pair of the issue: r 23 at (646, 406) inside r 53 at (626,
     * 410), IoU 0.19; the larger scores higher and stays. */
    cnp_tree a[] = {CROWN(626, 410, 53, 0.54f), CROWN(646, 406, 23, 0.47f),
                    CROWN(800, 800, 10, 0.3f)};
    size_t n = 3;
    REQUIRE(det_trees_nms(a, &n, 0.3f, &err) == CNP_OK);
    CHECK(n == 2 && a[0].radius == 53 && a[1].x == 800, "kept %zu", n);
    /* The smaller scores higher: it stays and the larger goes (on YELL the
     * annotated crown there is the smaller one). */
    cnp_tree b[] = {CROWN(222, 714, 21, 0.47f), CROWN(234, 714, 11, 0.51f)};
    n = 2;
    REQUIRE(det_trees_nms(b, &n, 0.3f, &err) == CNP_OK);
    CHECK(n == 1 && b[0].radius == 11, "kept %zu", n);
    /* Intersection over the smaller box: 20 x 16 / (20 x 20) = 0.8, not
     * above it: both stay; 20 x 17 / 400 = 0.85 > 0.8: one goes. */
    det_box edge[] = {{0, 0, 40, 40}, {10, 24, 30, 44}, {0, 0, 40, 40}, {10, 23, 30, 43}};
    CHECK(!det_nms_contains(&edge[0], &edge[1], DET_NMS_CONTAIN));
    CHECK(det_nms_contains(&edge[2], &edge[3], DET_NMS_CONTAIN));
    CHECK(det_nms_contains(&edge[3], &edge[2], DET_NMS_CONTAIN), "symmetric");
    CHECK(!det_nms_contains(&edge[2], &edge[3], 1.0f), ">= 1: off");
    /* Box models keep IoU-only NMS (torchvision's): det_nms keeps both. */
    float sc[] = {0.9f, 0.8f};
    expect_keep("box model nested", &edge[2], sc, NULL, 2, 0.3f, (uint32_t[]){0, 1}, 2);
}

/* Pairs of crowns one inside the other: intersection over the smaller box
 * above DET_NMS_CONTAIN. */
static size_t nested_pairs(const cnp_tree *t, size_t n)
{
    size_t pairs = 0;
    for (size_t i = 0; i < n; i++)
        for (size_t j = i + 1; j < n; j++) {
            det_box a = det_tree_box(&t[i]), b = det_tree_box(&t[j]);
            pairs += det_nms_contains(&a, &b, DET_NMS_CONTAIN);
        }
    return pairs;
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

/* det_nms_contain_local keeps what det_nms_contain keeps, in the same
 * order, whatever the window side. */
static void expect_same_keep(const char *what, const det_box *b, const float *s,
                             const int *lab, size_t n, float iou, float contain, float window)
{
    uint32_t *k1 = malloc((n ? n : 1) * sizeof *k1), *k2 = malloc((n ? n : 1) * sizeof *k2);
    size_t n1 = 0, n2 = 0;
    cnp_err err;
    REQUIRE(k1 && k2);
    CHECK(det_nms_contain(b, s, lab, n, iou, contain, k1, &n1, &err) == CNP_OK, "%s", err.msg);
    CHECK(det_nms_contain_local(b, s, lab, n, iou, contain, window, k2, &n2, &err) == CNP_OK,
          "%s", err.msg);
    CHECK(n1 == n2 && (n1 == 0 || !memcmp(k1, k2, n1 * sizeof *k1)),
          "%s (iou %.2f, contain %.2f, window %.0f): windowed NMS kept %zu, global %zu", what,
          iou, contain, window, n2, n1);
    free(k1);
    free(k2);
}

/* Crowns as the windowed raster merges them: det_trees_nms_local against
 * det_trees_nms, tree for tree; and the boxes at small windows. */
static void expect_local_equal(const char *what, const cnp_tree *t, size_t n, float iou)
{
    cnp_tree *a = malloc((n ? n : 1) * sizeof *a), *b = malloc((n ? n : 1) * sizeof *b);
    det_box *boxes = malloc((n ? n : 1) * sizeof *boxes);
    float *scores = malloc((n ? n : 1) * sizeof *scores);
    REQUIRE(a && b && boxes && scores);
    memcpy(a, t, n * sizeof *a);
    memcpy(b, t, n * sizeof *b);
    size_t na = n, nb = n;
    cnp_err err;
    CHECK(det_trees_nms(a, &na, iou, &err) == CNP_OK && det_trees_nms_local(b, &nb, iou, &err) ==
          CNP_OK, "%s", err.msg);
    CHECK(na == nb && !memcmp(a, b, na * sizeof *a), "%s: windowed merge %zu trees, global %zu",
          what, nb, na);
    for (size_t i = 0; i < n; i++) {
        boxes[i] = det_tree_box(&t[i]);
        scores[i] = t[i].score;
    }
    static const float windows[] = {0.0f, 16.0f, 64.0f, 256.0f};
    for (size_t w = 0; w < sizeof windows / sizeof windows[0]; w++)
        expect_same_keep(what, boxes, scores, NULL, n, iou, DET_NMS_CONTAIN, windows[w]);
    free(a);
    free(b);
    free(boxes);
    free(scores);
}

/* A fixed sequence (64-bit LCG, high bits). */
static uint32_t lcg(uint64_t *st)
{
    *st = *st * 6364136223846793005ULL + 1442695040888963407ULL;
    return (uint32_t)(*st >> 33);
}

/* Dense synthetic cases for the windowed NMS: long greedy chains across
 * many windows, clusters, score ties, labels, one huge box among small
 * ones, a box that is not finite. */
static void test_local_dense(void)
{
    enum { N = 6000 };
    det_box *b = malloc(N * sizeof *b);
    float *s = malloc(N * sizeof *s);
    int *lab = malloc(N * sizeof *lab);
    REQUIRE(b && s && lab);
    /* A chain of 2000 boxes, each overlapping the next by half, scores
     * falling: greedy keeps every other one, decided box by box from the
     * first across the whole row. */
    for (int i = 0; i < 2000; i++) {
        b[i] = (det_box){(float)i * 5.0f, 0.0f, (float)i * 5.0f + 10.0f, 10.0f};
        s[i] = 1.0f - (float)i * 1e-4f;
    }
    expect_same_keep("chain", b, s, NULL, 2000, 0.3f, 1.0f, 0.0f);
    expect_same_keep("chain", b, s, NULL, 2000, 0.3f, 1.0f, 12.0f);
    /* The same chain, scores rising: the last box starts it. */
    for (int i = 0; i < 2000; i++)
        s[i] = (float)i * 1e-4f;
    expect_same_keep("rising chain", b, s, NULL, 2000, 0.3f, 1.0f, 0.0f);
    uint64_t st = 12345;
    static const float ious[] = {0.0f, 0.3f, 0.5f};
    for (int round = 0; round < 6; round++) {
        /* Crowns of radius 1..13 in a 600 x 400 field, a third of them in
         * tight clusters; scores on a 0.01 grid (many ties). */
        for (int i = 0; i < N; i++) {
            float cx, cy;
            if (i % 3 == 0) {
                float kx = (float)(i % 37) * 16.0f, ky = (float)(i % 23) * 17.0f;
                cx = kx + (float)(lcg(&st) % 600) / 100.0f;
                cy = ky + (float)(lcg(&st) % 600) / 100.0f;
            } else {
                cx = (float)(lcg(&st) % 60000) / 100.0f;
                cy = (float)(lcg(&st) % 40000) / 100.0f;
            }
            float r = 1.0f + (float)(lcg(&st) % 1200) / 100.0f;
            b[i] = (det_box){cx - r, cy - r, cx + r, cy + r};
            s[i] = (float)(lcg(&st) % 100) / 100.0f;
            lab[i] = (int)(lcg(&st) % 3);
        }
        if (round == 4)
            b[17] = (det_box){-50.0f, -50.0f, 700.0f, 500.0f}; /* one huge box */
        if (round == 5)
            b[29].x1 = NAN; /* not finite: the plain scan */
        for (size_t k = 0; k < sizeof ious / sizeof ious[0]; k++) {
            expect_same_keep("dense", b, s, NULL, N, ious[k], DET_NMS_CONTAIN, 0.0f);
            expect_same_keep("dense", b, s, NULL, N, ious[k], 1.0f, 5.0f);
            expect_same_keep("dense labels", b, s, lab, N, ious[k], DET_NMS_CONTAIN, 40.0f);
        }
    }
    /* Crowns as trees, through det_trees_nms_local. */
    cnp_tree *t = malloc(N * sizeof *t);
    REQUIRE(t);
    for (int i = 0; i < N; i++) {
        float r = (b[i].x1 - b[i].x0) / 2.0f;
        t[i] = (cnp_tree)CROWN(b[i].x0 + r, b[i].y0 + r, isfinite(r) ? r : 3.0f, s[i]);
    }
    expect_local_equal("dense trees", t, N, 0.3f);
    free(t);
    free(b);
    free(s);
    free(lab);
}

/* The shipped model at its defaults on the NEON images. */
static void test_neon_stacked(void)
{
    static const char *images[] = {"OSBS_029", "SOAP_061", "YELL_541000_west"};
    cnp_config cfg;
    cnp_config_defaults(&cfg);
    char path[2048];
    cnp_err err;
    REQUIRE(det_model_resolve_path(cfg.detector.model, path, sizeof path, &err) == CNP_OK);
    det_model *m = NULL;
    REQUIRE(det_model_load(path, &m, &err) == CNP_OK);
    float iou = (float)det_model_nms_iou(m), thr = det_score_threshold(m, cfg.detector.score_threshold);
    CHECK(iou > 0.0f && iou < 1.0f);
    size_t before_all = 0;
    for (int i = 0; i < 3; i++) {
        char png[512];
        snprintf(png, sizeof png, "%s/%s.png", CANOPY_NEON_DIR, images[i]);
        cnp_image img = {0};
        REQUIRE(img_png_read_file(png, 0, &img, &err) == CNP_OK);
        cnp_tree *t = NULL;
        size_t n = 0;
        REQUIRE(det_ref_run(m, &img, thr, 1.0f, cfg.detector.tile, cfg.detector.tile_overlap,
                            &t, &n, &err) == CNP_OK);
        size_t before = stacked_pairs(t, n), n0 = n, nested0 = nested_pairs(t, n);
        expect_local_equal(images[i], t, n, iou);
        REQUIRE(det_trees_nms(t, &n, iou, &err) == CNP_OK);
        size_t after = stacked_pairs(t, n), nested = nested_pairs(t, n);
        /* Before containment: YELL kept (646, 406, r 23) inside (626, 410,
         * r 53) and (222, 714, r 21) over (234, 714, r 11). */
        CHECK(nested == 0, "%s: %zu crowns inside crowns after NMS (%zu before)", images[i],
              nested, nested0);
        if (strcmp(images[i], "YELL_541000_west") == 0) {
            bool big = false, small = false, left_big = false, left_small = false;
            for (size_t k = 0; k < n; k++) {
                big |= fabsf(t[k].x - 626) < 2 && fabsf(t[k].y - 410) < 2;
                small |= fabsf(t[k].x - 646) < 2 && fabsf(t[k].y - 406) < 2;
                left_big |= fabsf(t[k].x - 222) < 2 && fabsf(t[k].y - 714) < 2;
                left_small |= fabsf(t[k].x - 234) < 2 && fabsf(t[k].y - 714) < 2;
            }
            CHECK(big && !small && !left_big && left_small,
                  "YELL pairs: %d %d %d %d", big, small, left_big, left_small);
        }
        printf("%s %s: %zu crowns, %zu stacked pairs; after NMS at %.2f: %zu crowns, %zu "
               "stacked\n",
               det_model_version(m), images[i], n0, before, iou, n, after);
        CHECK_MSG(after == 0, "%s: %zu stacked pairs after NMS", images[i], after);
        CHECK(n < n0 && n > n0 / 2);
        before_all += before;
        free(t);
        cnp_image_free(&img);
    }
    /* The test has teeth: without NMS the model stacks crowns. */
    CHECK_MSG(before_all >= 10, "only %zu stacked pairs without NMS", before_all);
    det_model_free(m);
}

int main(void)
{
    test_hand_built();
    test_contained();
    test_local_dense();
    test_neon_stacked();
    return test_result("test_detect_nms");
}
