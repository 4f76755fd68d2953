/* DeepForest's tiled prediction (src/detect/patches.c): the patch plan
 * against the slidingwindow package's (expected rectangles printed by
 * slidingwindow.generateForSize 0.9 for the same sizes), the shift and
 * truncation of DeepForest's translate_predictions, and the mosaic NMS over
 * patches with a fake model whose boxes are known. */
#include <string.h>

#include "detect/patches.h"
#include "testutil.h"

typedef struct rect {
    uint32_t x, y, w, h;
} rect;

static void expect_plan(uint32_t w, uint32_t h, int p, double o, const rect *want, size_t nw)
{
    det_tile *t = NULL;
    size_t n = 0;
    cnp_err err;
    CHECK(det_patches_plan(w, h, p, o, &t, &n, &err) == CNP_OK, "%s", err.msg);
    CHECK(n == nw, "%ux%u patch %d overlap %g: %zu patches, want %zu", w, h, p, o, n, nw);
    for (size_t i = 0; i < n && i < nw; i++) {
        CHECK(t[i].x0 == want[i].x && t[i].y0 == want[i].y && t[i].w == want[i].w &&
                  t[i].h == want[i].h,
              "%ux%u patch %zu: (%u,%u,%u,%u), want (%u,%u,%u,%u)", w, h, i, t[i].x0, t[i].y0,
              t[i].w, t[i].h, want[i].x, want[i].y, want[i].w, want[i].h);
        CHECK(t[i].own[0] >= (float)t[i].x0 && t[i].own[2] <= (float)(t[i].x0 + t[i].w) &&
                  t[i].own[1] >= (float)t[i].y0 && t[i].own[3] <= (float)(t[i].y0 + t[i].h),
              "%ux%u patch %zu owns outside itself", w, h, i);
    }
    /* The shares partition the image: every pixel owned exactly once. */
    unsigned char *cover = calloc((size_t)w * h, 1);
    for (size_t i = 0; cover && i < n; i++)
        for (uint32_t y = (uint32_t)t[i].own[1]; y < (uint32_t)t[i].own[3]; y++)
            for (uint32_t x = (uint32_t)t[i].own[0]; x < (uint32_t)t[i].own[2]; x++)
                cover[(size_t)y * w + x]++;
    size_t bad = 0;
    for (size_t p2 = 0; cover && p2 < (size_t)w * h; p2++)
        bad += cover[p2] != 1;
    CHECK(cover && bad == 0, "%ux%u: %zu pixels not owned exactly once", w, h, bad);
    free(cover);
    free(t);
}

static void test_plan(void)
{
    const rect a[] = {{0, 0, 400, 400},   {0, 300, 400, 400}, {380, 0, 400, 400},
                      {380, 300, 400, 400}, {600, 0, 400, 400}, {600, 300, 400, 400}};
    expect_plan(1000, 700, 400, 0.05, a, 6);
    const rect b[] = {{0, 0, 400, 400}};
    expect_plan(400, 400, 400, 0.05, b, 1);
    const rect c[] = {{0, 0, 250, 130}};
    expect_plan(250, 130, 400, 0.05, c, 1);
    const rect d[] = {{0, 0, 400, 400},   {0, 1, 400, 400},   {300, 0, 400, 400},
                      {300, 1, 400, 400}, {401, 0, 400, 400}, {401, 1, 400, 400}};
    expect_plan(801, 401, 400, 0.25, d, 6);
    const rect e[] = {{0, 0, 400, 400},   {0, 400, 400, 400},   {0, 800, 400, 400},
                      {400, 0, 400, 400}, {400, 400, 400, 400}, {400, 800, 400, 400},
                      {800, 0, 400, 400}, {800, 400, 400, 400}, {800, 800, 400, 400}};
    expect_plan(1200, 1200, 400, 0.0, e, 9);
    det_tile *t = NULL;
    size_t n = 0;
    cnp_err err;
    CHECK(det_patches_plan(100, 100, 0, 0.05, &t, &n, &err) == CNP_ERR_INVALID);
    CHECK(det_patches_plan(100, 100, 400, 1.0, &t, &n, &err) == CNP_ERR_INVALID);
    CHECK(det_patches_plan(0, 100, 400, 0.05, &t, &n, &err) == CNP_OK && n == 0);
}

static void test_shift(void)
{
    det_detection d[] = {{10.9f, 20.2f, 30.99f, 40.5f, 0.5f, 0},
                         {0.f, 0.3f, 399.7f, 1.f, 0.7f, 0}};
    det_detections_shift(d, 2, 380, 300);
    CHECK(d[0].x0 == 390 && d[0].y0 == 320 && d[0].x1 == 410 && d[0].y1 == 340,
          "(%g %g %g %g)", d[0].x0, d[0].y0, d[0].x1, d[0].y1);
    CHECK(d[1].x0 == 380 && d[1].y0 == 300 && d[1].x1 == 779 && d[1].y1 == 301);
}

/* A fake model: one tree at image (390.5, 200.5), 16 px wide, seen by every
 * patch that contains it whole, scored by the patch's x offset; one tree per patch at
 * the patch's centre. */
static cnp_status fake_patch(void *ctx, const det_tile *p, det_detection **out, size_t *n,
                             cnp_err *err)
{
    (void)err;
    int *calls = ctx;
    (*calls)++;
    det_detection *d = calloc(2, sizeof *d);
    if (!d)
        return CNP_ERR_NOMEM;
    size_t k = 0;
    float cx = (float)p->w / 2, cy = (float)p->h / 2;
    d[k++] = (det_detection){cx - 5.5f, cy - 5.5f, cx + 5.5f, cy + 5.5f, 0.5f, 0};
    float tx = 390.5f - (float)p->x0, ty = 200.5f - (float)p->y0;
    if (tx - 8 >= 0 && tx + 8 <= (float)p->w && ty - 8 >= 0 && ty + 8 <= (float)p->h)
        d[k++] = (det_detection){tx - 8, ty - 8, tx + 8, ty + 8,
                                 0.6f + (float)p->x0 / 10000.0f, 0};
    *out = d;
    *n = k;
    return CNP_OK;
}

static void test_tiled(void)
{
    int calls = 0;
    det_detection *d = NULL;
    size_t n = 0;
    cnp_err err;
    /* 1000 x 700: 6 patches; the tree at x 390 is whole in the patches at
     * x 0 (0..400) and x 380 (380..780): merged into the one of x 380. */
    CHECK(det_predict_tiled(1000, 700, 400, 0.05, 0.15f, fake_patch, &calls, &d, &n, &err) ==
              CNP_OK,
          "%s", err.msg);
    CHECK(calls == 6, "%d patch calls", calls);
    CHECK(n == 7, "%zu boxes after the mosaic, want 6 centres + 1 tree", n);
    if (n == 7) {
        CHECK(d[0].score > 0.6f && d[0].x0 == 382 && d[0].y0 == 192 && d[0].x1 == 398,
              "first box (%g %g %g %g) score %g", d[0].x0, d[0].y0, d[0].x1, d[0].y1,
              d[0].score);
        for (size_t i = 1; i < n; i++)
            CHECK(d[i].score == 0.5f && d[i].x1 - d[i].x0 == 11, "box %zu", i);
    }
    free(d);
    /* iou 1: no merge, both copies of the tree stay. */
    calls = 0;
    CHECK(det_predict_tiled(1000, 700, 400, 0.05, 1.0f, fake_patch, &calls, &d, &n, &err) ==
          CNP_OK);
    CHECK(n == 8, "%zu boxes without the mosaic NMS", n);
    free(d);
    cnp_tree t = det_detection_tree(&(det_detection){10, 20, 30, 60, 0.9f, 2});
    CHECK(t.x == 20 && t.y == 40 && t.radius == 15 && t.label == 2 && t.x1 == 30);
    det_box b = det_tree_box(&t);
    CHECK(b.x0 == 10 && b.y1 == 60);
}

int main(void)
{
    test_plan();
    test_shift();
    test_tiled();
    return TEST_RESULT();
}
