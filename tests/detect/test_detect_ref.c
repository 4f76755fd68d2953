/* The C reference forward pass against an independent numpy implementation
 * (models/test/random-tiny.expected.json, written by
 * tools/train/make_test_model.py), and tiled against untiled processing. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "canopy/buf.h"
#include "canopy/detect.h"
#include "detect/cnw_util.h"
#include "detect/detect_internal.h"
#include "detect/test_detect_common.h"

#define TINY CANOPY_SOURCE_DIR "/models/test/random-tiny.cnw"
#define EXPECTED CANOPY_SOURCE_DIR "/models/test/random-tiny.expected.json"
/* Tolerance on raw outputs against numpy's float64 pass: our accumulation is
 * double, activations float; the file reports numpy's own float32/float64
 * difference at ~2e-6. */
#define OUT_TOL 1e-4

static cJSON *read_json(const char *path)
{
    cnp_buf b = {0};
    cnp_err err;
    REQUIRE(cnp_file_read(path, 0, &b, &err) == CNP_OK);
    cJSON *j = cJSON_ParseWithLength((const char *)b.data, b.len);
    cnp_buf_free(&b);
    REQUIRE(j != NULL);
    return j;
}

static void test_against_numpy(const det_model *m, const cnp_image *img)
{
    cJSON *ex = read_json(EXPECTED);
    const cJSON *crop = cJSON_GetObjectItem(cJSON_GetObjectItem(ex, "input"), "crop");
    int cx = cJSON_GetObjectItem(crop, "x")->valueint, cy = cJSON_GetObjectItem(crop, "y")->valueint;
    int cw = cJSON_GetObjectItem(crop, "width")->valueint;
    int ch = cJSON_GetObjectItem(crop, "height")->valueint;
    float *out = NULL;
    uint32_t oh, ow;
    cnp_err err;
    REQUIRE(det_ref_forward(m, img->rgba + 4 * ((size_t)cy * img->width + cx), img->width,
                            (uint32_t)cw, (uint32_t)ch, &out, &oh, &ow, &err) == CNP_OK);
    const cJSON *shape = cJSON_GetObjectItem(ex, "output_shape");
    CHECK(cJSON_GetArrayItem(shape, 0)->valueint == 4);
    CHECK((uint32_t)cJSON_GetArrayItem(shape, 1)->valueint == oh);
    CHECK((uint32_t)cJSON_GetArrayItem(shape, 2)->valueint == ow);
    const cJSON *o = cJSON_GetObjectItem(ex, "output");
    double maxdiff = 0;
    for (int c = 0; c < 4; c++)
        for (uint32_t i = 0; i < oh; i++)
            for (uint32_t j = 0; j < ow; j++) {
                double want = cJSON_GetArrayItem(
                    cJSON_GetArrayItem(cJSON_GetArrayItem(o, c), (int)i), (int)j)->valuedouble;
                double d = fabs(want - out[((size_t)c * oh + i) * ow + j]);
                maxdiff = d > maxdiff ? d : maxdiff;
            }
    printf("reference vs numpy: max abs diff %.3g over 4x%ux%u outputs\n", maxdiff, oh, ow);
    CHECK(maxdiff <= OUT_TOL);

    /* The decoded trees: same set (positions, radius, score). */
    float thr = (float)cJSON_GetObjectItem(ex, "score_threshold")->valuedouble;
    float own[4] = {-INFINITY, -INFINITY, INFINITY, INFINITY};
    cnp_tree *t = NULL;
    size_t n = 0, cap = 0;
    REQUIRE(det_decode(m, out, oh, ow, 0, 0, thr, own, &t, &n, &cap, &err) == CNP_OK);
    const cJSON *trees = cJSON_GetObjectItem(ex, "trees");
    CHECK_MSG((int)n == cJSON_GetArraySize(trees), "%zu trees, numpy %d", n,
              cJSON_GetArraySize(trees));
    CHECK(n > 0);
    const cJSON *it;
    cJSON_ArrayForEach(it, trees)
    {
        double x = cJSON_GetObjectItem(it, "x")->valuedouble;
        double y = cJSON_GetObjectItem(it, "y")->valuedouble;
        double r = cJSON_GetObjectItem(it, "radius")->valuedouble;
        double s = cJSON_GetObjectItem(it, "score")->valuedouble;
        bool found = false;
        for (size_t k = 0; k < n && !found; k++)
            found = fabs(t[k].x - x) < 1e-3 && fabs(t[k].y - y) < 1e-3 &&
                    fabs(t[k].radius - r) < 1e-3 * (1 + r) && fabs(t[k].score - s) < 1e-4;
        CHECK_MSG(found, "numpy tree (%.3f, %.3f) r %.3f s %.4f not found", x, y, r, s);
    }
    free(t);
    free(out);
    cJSON_Delete(ex);
}

/* Tiles cover the image, origins are multiples of the stride, and the owned
 * regions partition the plane. */
static void test_plan(void)
{
    det_tile *t = NULL;
    size_t n = 0;
    cnp_err err;
    REQUIRE(det_tiles_plan(700, 1035, 256, 64, 4, &t, &n, &err) == CNP_OK);
    /* step 192: x origins 0,192,384,576 (576+256 >= 700); y 0..960 (6 tiles). */
    CHECK(n == 4 * 6);
    for (size_t i = 0; i < n; i++) {
        CHECK(t[i].x0 % 4 == 0 && t[i].y0 % 4 == 0);
        CHECK(t[i].x0 + t[i].w <= 700 && t[i].y0 + t[i].h <= 1035);
        CHECK(t[i].w <= 256 && t[i].h <= 256);
    }
    CHECK(t[3].x0 == 576 && t[3].w == 124);
    CHECK(t[0].own[2] == 192 + 32.0f && t[1].own[0] == 224.0f);
    CHECK(t[23].y0 == 960 && t[23].h == 75);
    for (int y = 0; y < 1035; y += 7)
        for (int x = 0; x < 700; x += 5) {
            int owners = 0;
            for (size_t i = 0; i < n; i++)
                owners += x >= t[i].own[0] && x < t[i].own[2] && y >= t[i].own[1] &&
                          y < t[i].own[3];
            CHECK(owners == 1);
        }
    free(t);
    REQUIRE(det_tiles_plan(100, 50, 256, 64, 4, &t, &n, &err) == CNP_OK);
    CHECK(n == 1 && t[0].w == 100 && t[0].h == 50 && isinf(t[0].own[0]));
    free(t);
    CHECK(det_tiles_plan(100, 50, 64, 64, 4, &t, &n, &err) == CNP_ERR_CONFIG);
}

static float border_distance(float v, const float *b, int nb)
{
    float d = INFINITY;
    for (int i = 0; i < nb; i++)
        d = fminf(d, fabsf(v - b[i]));
    return d;
}

/* Tile 128 with overlap 64 against untiled: identical trees except within
 * MARGIN px of an ownership boundary. The random model's receptive field is
 * 46 px; its untrained (dx, dy) offsets move a centre up to a few cells from
 * the cell that produced it, hence 24 px rather than the ~8 a trained model
 * needs. */
static void test_tiling(const det_model *m, const cnp_image *img, const char *name)
{
#define MARGIN 24.0f
    cnp_err err;
    cnp_tree *a = NULL, *b = NULL;
    size_t na = 0, nb = 0;
    REQUIRE(det_ref_run(m, img, 0.3f, 1.0f, 0, 0, &a, &na, &err) == CNP_OK);
    REQUIRE(det_ref_run(m, img, 0.3f, 1.0f, 128, 64, &b, &nb, &err) == CNP_OK);
    det_tile *t = NULL;
    size_t nt = 0;
    REQUIRE(det_tiles_plan(img->width, img->height, 128, 64, 4, &t, &nt, &err) == CNP_OK);
    /* Ownership boundaries: x from the first tile row, y from the first column. */
    float bounds[64], ybounds[64];
    int nbd = 0, nyb = 0;
    for (size_t i = 0; i < nt; i++) {
        if (t[i].y0 == 0 && isfinite(t[i].own[2]) && nbd < 64)
            bounds[nbd++] = t[i].own[2];
        if (t[i].x0 == 0 && isfinite(t[i].own[3]) && nyb < 64)
            ybounds[nyb++] = t[i].own[3];
    }
    size_t compared = 0;
    for (int pass = 0; pass < 2; pass++) {
        const cnp_tree *p = pass ? b : a, *q = pass ? a : b;
        size_t np = pass ? nb : na, nq = pass ? na : nb;
        for (size_t i = 0; i < np; i++) {
            if (border_distance(p[i].x, bounds, nbd) < MARGIN ||
                border_distance(p[i].y, ybounds, nyb) < MARGIN)
                continue;
            bool found = false;
            for (size_t k = 0; k < nq && !found; k++)
                found = fabsf(p[i].x - q[k].x) < 1e-3f && fabsf(p[i].y - q[k].y) < 1e-3f &&
                        fabsf(p[i].score - q[k].score) < 1e-5f;
            CHECK_MSG(found, "%s: %s tree (%.2f, %.2f) missing from the %s run", name,
                      pass ? "tiled" : "untiled", p[i].x, p[i].y, pass ? "untiled" : "tiled");
            compared++;
        }
    }
    /* No duplicates across borders: every untiled tree matches at most one
     * tiled tree. */
    for (size_t i = 0; i < na; i++) {
        int same = 0;
        for (size_t k = 0; k < nb; k++)
            same += fabsf(a[i].x - b[k].x) < 1e-3f && fabsf(a[i].y - b[k].y) < 1e-3f;
        CHECK_MSG(same <= 1, "%s: tree (%.2f, %.2f) reported %d times", name, a[i].x, a[i].y,
                  same);
    }
    printf("%s: %zu untiled / %zu tiled trees, %zu compared away from borders\n", name, na,
           nb, compared);
    CHECK(compared > 20);
    free(t);
    free(a);
    free(b);
}

/* det_decode's score of a logit. */
static float score_of(float v)
{
    return 1.0f / (1.0f + expf(-v));
}

/* det_logit_threshold: a logit passes it exactly when its score passes the
 * score threshold (every float within 4096 ulps of it checked), so the
 * device, comparing logits, decides as det_decode does whatever its exp. */
static void test_logit_threshold(void)
{
    static const float thr[] = {0.35f, 0.5f, 0.01f, 0.99f, 1e-30f, 0.9999999f, 1e-7f};
    for (size_t i = 0; i < sizeof thr / sizeof thr[0]; i++) {
        float v = det_logit_threshold(thr[i]);
        CHECK(isfinite(v), "threshold %g: logit %g", thr[i], v);
        float lo = v;
        for (int k = 0; k < 4096; k++)
            lo = nextafterf(lo, -INFINITY);
        int bad = 0;
        for (float x = lo; x <= v + 4096 * fabsf(v - nextafterf(v, INFINITY)) + 1e-30f;
             x = nextafterf(x, INFINITY))
            bad += (x >= v) != (score_of(x) >= thr[i]);
        CHECK(bad == 0, "threshold %g: %d logits decided otherwise than their scores", thr[i],
              bad);
        CHECK(score_of(v) >= thr[i] && !(score_of(nextafterf(v, -INFINITY)) >= thr[i]),
              "threshold %g: logit %.9g is not the first that passes", thr[i], v);
    }
    CHECK(det_logit_threshold(0.0f) == -INFINITY, "threshold 0: %g", det_logit_threshold(0.0f));
    CHECK(isnan(det_logit_threshold(1.5f)) && isnan(det_logit_threshold(NAN)),
          "thresholds no score reaches");
}

int main(void)
{
    test_logit_threshold();
    det_model *m = NULL;
    cnp_err err;
    if (det_model_load(TINY, &m, &err) != CNP_OK) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    cnp_image img = {0};
    REQUIRE(img_png_read_file(CANOPY_NEON_DIR "/OSBS_029.png", 0, &img, &err) == CNP_OK);
    test_against_numpy(m, &img);
    test_plan();
    test_tiling(m, &img, "OSBS_029");
    cnp_image_free(&img);
    REQUIRE(img_png_read_file(CANOPY_NEON_DIR "/YELL_541000_west.png", 0, &img, &err) ==
            CNP_OK);
    test_tiling(m, &img, "YELL_541000_west");
    cnp_image_free(&img);
    /* Degenerate sizes: nothing to find, no crash. */
    cnp_tree *t = NULL;
    size_t n = 7;
    tw_image_random(&img, 3, 2, 5);
    CHECK(det_ref_run(m, &img, 0.0f, 1.0f, 128, 64, &t, &n, &err) == CNP_OK && n == 0 && !t);
    cnp_image_free(&img);
    det_model_free(m);
    return test_result("test_detect_ref");
}
