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
    test_neon_stacked();
    return test_result("test_detect_nms");
}
