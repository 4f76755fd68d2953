/* Crown models on the CPU backend (dnnl_crown.c) against the C reference,
 * with test_detect_engine.c's bounds: raw outputs within OUT_TOL of
 * det_ref_forward on NEON crops of odd sizes and on a random image, for
 * the shipped models and the random test model, with direct convolutions
 * and with Winograd; and the trees of det_dnnl_crown_run against det_ref_run
 * on the three NEON images (tiled, NMS over the whole image): every tree
 * found both ways (centre within POS_TOL, score within SCORE_TOL) but for
 * at most 2 % near-ties, with a minimum number of trees compared. */
#include <math.h>
#include <string.h>

#include "canopy/config.h"
#include "canopy/image.h"
#include "detect/cpu/dnnl_crown.h"
#include "detect/detect_internal.h"
#include "detect/test_detect_common.h"

#define OUT_TOL 1e-3
#define POS_TOL 0.02f
#define SCORE_TOL 1e-4f
#define THRESHOLD 0.3f

static const char *conv_name(enum det_dnnl_conv c)
{
    return c == DET_DNNL_CONV_WINOGRAD ? "winograd" : "direct";
}

static det_dnnl_crown *runner(const det_model *m, enum det_dnnl_conv conv, int tile)
{
    cnp_config cfg;
    cnp_config_defaults(&cfg);
    cfg.detector.tile = tile;
    cfg.detector.tile_overlap = 64;
    cfg.detector.score_threshold = THRESHOLD;
    det_dnnl_opts opts = {.conv = conv};
    det_dnnl_crown *e = NULL;
    cnp_err err;
    CHECK_FATAL(det_dnnl_crown_create(m, &cfg.detector, &opts, &e, &err) == CNP_OK, "%s",
                err.msg);
    return e;
}

/* The raw output of a w x h region at (x0, y0) of img both ways. */
static void check_forward(det_dnnl_crown *e, const det_model *m, const cnp_image *img,
                          uint32_t x0, uint32_t y0, uint32_t w, uint32_t h, const char *what)
{
    cnp_err err;
    const uint8_t *px = img->rgba + 4 * ((size_t)y0 * img->width + x0);
    float *dev = NULL, *ref = NULL;
    uint32_t oh, ow, roh, row;
    CHECK_FATAL(det_dnnl_crown_forward(e, px, img->width, w, h, &dev, &oh, &ow, &err) == CNP_OK,
                "%s: %s", what, err.msg);
    REQUIRE(det_ref_forward(m, px, img->width, w, h, &ref, &roh, &row, &err) == CNP_OK);
    CHECK(oh == roh && ow == row, "%s: %ux%u vs %ux%u", what, ow, oh, row, roh);
    double worst = 0;
    for (size_t i = 0; i < 4 * (size_t)oh * ow; i++)
        worst = fmax(worst, fabs((double)dev[i] - ref[i]));
    printf("%s %ux%u at (%u, %u): max abs diff %.3g\n", what, w, h, x0, y0, worst);
    CHECK(worst <= OUT_TOL, "%s: max abs diff %g", what, worst);
    free(dev);
    free(ref);
}

static void random_image(cnp_image *img, uint32_t w, uint32_t h, uint32_t seed)
{
    memset(img, 0, sizeof *img);
    img->width = w;
    img->height = h;
    img->rgba = malloc((size_t)w * h * 4);
    REQUIRE(img->rgba);
    for (size_t i = 0; i < (size_t)w * h * 4; i++) {
        seed = seed * 1664525u + 1013904223u;
        img->rgba[i] = (uint8_t)(seed >> 24);
    }
}

static void test_forward(const char *path, const cnp_image *neon)
{
    cnp_err err;
    det_model *m = NULL;
    CHECK_FATAL(det_model_load(path, &m, &err) == CNP_OK, "%s", err.msg);
    cnp_image rnd;
    random_image(&rnd, 77, 53, 5);
    for (int c = DET_DNNL_CONV_DIRECT; c <= DET_DNNL_CONV_WINOGRAD; c++) {
        det_dnnl_crown *e = runner(m, (enum det_dnnl_conv)c, 256);
        char what[256];
        snprintf(what, sizeof what, "%s %s", det_model_version(m),
                 conv_name((enum det_dnnl_conv)c));
        check_forward(e, m, neon, 0, 0, 256, 256, what);
        check_forward(e, m, neon, 131, 77, 131, 97, what);
        check_forward(e, m, &rnd, 0, 0, 77, 53, what);
        det_dnnl_crown_free(e);
    }
    cnp_image_free(&rnd);
    det_model_free(m);
}

static void test_trees(const char *path)
{
    static const char *images[] = {"OSBS_029", "SOAP_061", "YELL_541000_west"};
    cnp_err err;
    det_model *m = NULL;
    CHECK_FATAL(det_model_load(path, &m, &err) == CNP_OK, "%s", err.msg);
    det_dnnl_crown *e = runner(m, DET_DNNL_CONV_AUTO, 256);
    size_t total = 0;
    for (size_t i = 0; i < sizeof images / sizeof images[0]; i++) {
        char file[1024];
        snprintf(file, sizeof file, "%s/%s.png", CANOPY_NEON_DIR, images[i]);
        cnp_image img;
        CHECK_FATAL(img_png_read_file(file, 0, &img, &err) == CNP_OK, "%s", err.msg);
        cnp_tree *t = NULL, *r = NULL;
        size_t nt = 0, nr = 0;
        CHECK_FATAL(det_dnnl_crown_run(e, &img, &t, &nt, &err) == CNP_OK, "%s", err.msg);
        REQUIRE(det_ref_run(m, &img, THRESHOLD, (float)det_model_nms_iou(m), 256, 64, &r, &nr,
                            &err) == CNP_OK);
        size_t a = trees_found_in(r, nr, t, nt, POS_TOL, SCORE_TOL),
               b = trees_found_in(t, nt, r, nr, POS_TOL, SCORE_TOL);
        printf("%s %s: reference %zu trees, CPU backend %zu; %zu / %zu found both ways\n",
               det_model_version(m), images[i], nr, nt, a, b);
        CHECK(nr - a <= nr / 50 && nt - b <= nt / 50, "%s: %zu of %zu and %zu of %zu unmatched",
              images[i], nr - a, nr, nt - b, nt);
        total += nr;
        free(t);
        free(r);
        cnp_image_free(&img);
    }
    CHECK(total >= 100, "only %zu trees compared", total);
    det_dnnl_crown_free(e);
    det_model_free(m);
}

int main(void)
{
    cnp_image neon;
    cnp_err err;
    CHECK_FATAL(img_png_read_file(CANOPY_NEON_DIR "/OSBS_029.png", 0, &neon, &err) == CNP_OK,
                "%s", err.msg);
    test_forward(CANOPY_SOURCE_DIR "/models/crown-1.1.cnw", &neon);
    test_forward(CANOPY_SOURCE_DIR "/models/test/random-tiny.cnw", &neon);
    test_trees(CANOPY_SOURCE_DIR "/models/crown-1.1.cnw");
    cnp_image_free(&neon);
    return test_result("test_dnnl_crown");
}
