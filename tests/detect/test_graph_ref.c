/* The RetinaNet reference's fixed points against values torchvision 0.20
 * computes (printed from AnchorGenerator, BoxCoder and
 * GeneralizedRCNNTransform): base anchors (round half to even), the
 * transform's sizes, one decoded, clipped and rescaled box through
 * det_retina_ref_postprocess, thresholding and class-wise NMS. */
#include <math.h>
#include <string.h>

#include "detect/graph_util.h"
#include "detect/test_detect_common.h"

static void test_anchors(void)
{
    det_retina r;
    tg_retina_identity(&r, 1, 1);
    r.n_sizes = 1;
    r.n_ratios = 3;
    r.sizes[0][0] = 32;
    r.ratios[0][0] = 0.5f, r.ratios[0][1] = 1.0f, r.ratios[0][2] = 2.0f;
    float a[12];
    det_retina_base_anchors(&r, 0, a);
    static const float want[12] = {-23, -11, 23, 11, -16, -16, 16, 16, -11, -23, 11, 23};
    for (int i = 0; i < 12; i++)
        CHECK(a[i] == want[i], "anchor value %d: %g, torchvision %g", i, a[i], want[i]);
    /* Sizes 1, 3, 5: halves 0.5, 1.5, 2.5 round to even: 0, 2, 2. */
    r.n_sizes = 3;
    r.n_ratios = 1;
    r.sizes[0][0] = 1, r.sizes[0][1] = 3, r.sizes[0][2] = 5;
    r.ratios[0][0] = 1.0f;
    det_retina_base_anchors(&r, 0, a);
    CHECK(a[2] == 0 && a[6] == 2 && a[10] == 2 && a[4] == -2, "%g %g %g", a[2], a[6], a[10]);
}

static void test_sizes(void)
{
    det_retina r;
    tg_retina_identity(&r, 1, 1);
    r.min_size = 800, r.max_size = 1333, r.size_divisible = 32;
    int rh, rw, ph, pw;
    det_retina_input_size(&r, 400, 400, &rh, &rw, &ph, &pw);
    CHECK(rh == 800 && rw == 800 && ph == 800 && pw == 800);
    det_retina_input_size(&r, 1035, 700, &rh, &rw, &ph, &pw);
    CHECK(rh == 1182 && rw == 800 && ph == 1184 && pw == 800, "%d %d %d %d", rh, rw, ph, pw);
    det_retina_input_size(&r, 100, 1000, &rh, &rw, &ph, &pw); /* max_size bound */
    CHECK(rh == 133 && rw == 1333 && ph == 160 && pw == 1344, "%d %d %d %d", rh, rw, ph, pw);
    /* Printed by torchvision 0.20's GeneralizedRCNNTransform(256, 512) in eager
     * mode: the scale is a double (in float32, 0.64 gives 255). */
    r.min_size = 256, r.max_size = 512;
    det_retina_input_size(&r, 400, 400, &rh, &rw, &ph, &pw);
    CHECK(rh == 256 && rw == 256 && ph == 256 && pw == 256, "%d %d %d %d", rh, rw, ph, pw);
    det_retina_input_size(&r, 180, 700, &rh, &rw, &ph, &pw);
    CHECK(rh == 131 && rw == 512 && ph == 160 && pw == 512, "%d %d %d %d", rh, rw, ph, pw);
}

/* One level of 2 x 2 cells, one anchor [-16, -8, 16, 8] (size 22.627417,
 * ratio 0.5), stride 26 (52 / 2): cell (1, 1)'s anchor is [10, 18, 42, 34].
 * Deltas (0.1, -0.2, 0.3, 0.4) decode to torchvision's
 * [7.602258682, 10.865401268, 50.797744751, 34.734596252], clipped to the
 * 50 x 40 resized image (x1 = 50) and scaled by 2 to the 100 x 80 original. */
static void test_decode(void)
{
    det_graph g;
    memset(&g, 0, sizeof g);
    det_retina *r = &g.retina;
    tg_retina_identity(r, 1, 1);
    r->sizes[0][0] = 22.627417f;
    r->ratios[0][0] = 0.5f;
    r->num_classes = 2;
    r->nms_thresh = 0.5f;
    /* cls: 2 classes x 4 cells; cell 3 class 1 strong, cell 3 class 0 weak
     * but above 0.05, cell 2 class 1 overlapping cell 3's box (suppressed),
     * the rest below the threshold. */
    float cls[8] = {-9, -9, -9, -1.0f, -9, -9, 1.0f, 3.0f};
    float box[16] = {0};
    float d[4] = {0.1f, -0.2f, 0.3f, 0.4f};
    for (int j = 0; j < 4; j++) {
        box[j * 4 + 3] = d[j];
        box[j * 4 + 2] = d[j];
    }
    box[0 * 4 + 2] = 0.1f + 26.0f / 32.0f; /* cell 2 (x 0): same centre as cell 3 */
    float *cp[1] = {cls}, *bp[1] = {box};
    int fh = 2, fw = 2;
    det_detection *out = NULL;
    size_t n = 0;
    cnp_err err;
    REQUIRE(det_retina_ref_postprocess(&g, cp, bp, &fh, &fw, 40, 50, 52, 52, 80, 100, &out, &n,
                                       &err) == CNP_OK);
    CHECK(n == 2, "%zu detections", n);
    if (n == 2) {
        const float want[4] = {7.602258682f * 2, 10.865401268f * 2, 50.0f * 2,
                               34.734596252f * 2};
        const float got[4] = {out[0].x0, out[0].y0, out[0].x1, out[0].y1};
        for (int j = 0; j < 4; j++)
            CHECK(fabsf(got[j] - want[j]) <= 1e-4f * fabsf(want[j]), "coordinate %d: %.6f vs %.6f",
                  j, got[j], want[j]);
        CHECK(out[0].label == 1 && fabsf(out[0].score - 1.0f / (1.0f + expf(-3.0f))) < 1e-6f);
        /* The weak class-0 box on the same cell survives (class-wise NMS). */
        CHECK(out[1].label == 0 && fabsf(out[1].score - 1.0f / (1.0f + expf(1.0f))) < 1e-6f);
    }
    free(out);
}

int main(void)
{
    test_anchors();
    test_sizes();
    test_decode();
    return test_result("test_graph_ref");
}
