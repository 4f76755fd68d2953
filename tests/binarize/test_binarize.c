/* Binarization: the OpenCL kernels and the production C path (bin_cpu_run)
 * against the C reference, bit for bit, for every method and channel on odd
 * sizes, large sizes and the NEON images (the C path also where no OpenCL
 * device exists); and
 * the reference's Otsu against an independent textbook implementation. */
#include <math.h>
#include <stdint.h>

#include "canopy/binarize.h"
#include "canopy/synth.h"
#include "testutil.h"

static ocl_ctx *g_ctx;

/* Textbook Otsu: probabilities and class means in double, maximising
 * w0 w1 (mu0 - mu1)^2. Independent of bin_otsu's integer formulation. */
static int otsu_textbook(const uint32_t hist[256])
{
    double total = 0, sum = 0;
    for (int i = 0; i < 256; i++) {
        total += hist[i];
        sum += (double)i * hist[i];
    }
    double w0 = 0, sum0 = 0, best = -1;
    int best_t = 0;
    for (int t = 0; t < 256; t++) {
        w0 += hist[t];
        sum0 += (double)t * hist[t];
        double w1 = total - w0;
        if (w0 == 0 || w1 == 0)
            continue;
        double mu0 = sum0 / w0, mu1 = (sum - sum0) / w1;
        double var = (w0 / total) * (w1 / total) * (mu0 - mu1) * (mu0 - mu1);
        if (var > best) {
            best = var;
            best_t = t;
        }
    }
    return best_t;
}

/* Mask, threshold and count of one path against the reference's. */
static void same_result(const char *what, const char *path, const bin_params *p, size_t n,
                        const uint8_t *m_ref, const bin_result *r_ref, const uint8_t *m,
                        const bin_result *r)
{
    size_t diff = 0, first = n;
    for (size_t i = 0; i < n; i++)
        if (m_ref[i] != m[i] && diff++ == 0)
            first = i;
    CHECK_MSG(diff == 0, "%s m%d c%d %s: %zu mask pixels differ (first at %zu)", what, p->method,
              p->channel, path, diff, first);
    CHECK_MSG(r_ref->threshold == r->threshold, "%s m%d c%d: threshold ref %d %s %d", what,
              p->method, p->channel, r_ref->threshold, path, r->threshold);
    CHECK_MSG(r_ref->foreground == r->foreground, "%s: foreground ref %llu %s %llu", what,
              (unsigned long long)r_ref->foreground, path, (unsigned long long)r->foreground);
    CHECK_MSG(r_ref->canopy_cover == r->canopy_cover, "%s: cover ref %g %s %g", what,
              r_ref->canopy_cover, path, r->canopy_cover);
}

static void compare(const char *what, const cnp_image *img, const bin_params *p)
{
    size_t n = (size_t)img->width * img->height;
    uint8_t *m_ref = malloc(n + 1), *m_dev = malloc(n + 1);
    bin_result r_ref, r_dev;
    cnp_err err;
    bin_engine *eng = NULL;
    CHECK(m_ref && m_dev);
    CHECK(bin_ref_run(p, img, m_ref, &r_ref, &err) == CNP_OK);
    uint64_t count = 0;
    for (size_t i = 0; i < n; i++) {
        CHECK(m_ref[i] == 0 || m_ref[i] == 255);
        count += m_ref[i] != 0;
    }
    CHECK(count == r_ref.foreground);
    memset(m_dev, 0x5a, n + 1);
    cnp_status st = bin_cpu_run(p, img->rgba, img->width, img->height, m_dev, &r_dev, &err);
    CHECK_MSG(st == CNP_OK, "%s: %s", what, err.msg);
    if (st == CNP_OK)
        same_result(what, "cpu", p, n, m_ref, &r_ref, m_dev, &r_dev);
    CHECK(m_dev[n] == 0x5a);
    if (!g_ctx)
        goto out;
    st = bin_engine_create(g_ctx, p, &eng, &err);
    CHECK_MSG(st == CNP_OK, "%s", err.msg);
    if (st == CNP_OK) {
        st = bin_engine_run_image(eng, img, m_dev, &r_dev, &err);
        CHECK_MSG(st == CNP_OK, "%s: %s", what, err.msg);
    }
    if (st == CNP_OK)
        same_result(what, "dev", p, n, m_ref, &r_ref, m_dev, &r_dev);
    bin_engine_free(eng);
out:
    free(m_ref);
    free(m_dev);
}

static void all_methods(const char *what, const cnp_image *img)
{
    for (int m = 0; m < 3; m++) {
        for (int c = 0; c < 2; c++) {
            bin_params p = {.method = m, .channel = c, .threshold = 100, .window = 31, .offset = 5};
            compare(what, img, &p);
        }
    }
    /* A window larger than the image and the largest window. */
    bin_params big = {.method = CNP_BIN_ADAPTIVE, .channel = CNP_CH_LUMA, .window = 255, .offset = -3};
    compare(what, img, &big);
    bin_params small = {.method = CNP_BIN_ADAPTIVE, .channel = CNP_CH_EXG, .window = 3, .offset = 0};
    compare(what, img, &small);
}

static void test_sizes(void)
{
    static const uint32_t sizes[][2] = {{1, 1}, {3, 7}, {7, 3}, {257, 1}, {1, 300}, {1021, 769}, {4096, 4096}};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        cnp_image img;
        cnp_err err;
        char what[64];
        snprintf(what, sizeof what, "synthetic %ux%u", sizes[i][0], sizes[i][1]);
        CHECK(synth_aerial(&img, sizes[i][0], sizes[i][1], sizes[i][0] * sizes[i][1] / 3000 + 1,
                           i + 1, &err) == CNP_OK);
        all_methods(what, &img);
        cnp_image_free(&img);
    }
    /* Constant image: one occupied histogram bin. */
    cnp_image flat;
    cnp_err err;
    CHECK(cnp_image_alloc(&flat, 33, 17, &err) == CNP_OK);
    memset(flat.rgba, 200, (size_t)33 * 17 * 4);
    all_methods("constant 33x17", &flat);
    cnp_image_free(&flat);
}

static void test_neon(void)
{
    static const char *const names[] = {"OSBS_029", "SOAP_061", "YELL_541000_west"};
    for (int i = 0; i < 3; i++) {
        char path[4096];
        cnp_image img;
        cnp_err err;
        snprintf(path, sizeof path, "%s/%s.png", CANOPY_NEON_DIR, names[i]);
        cnp_status st = img_png_read_file(path, 0, &img, &err);
        CHECK_MSG(st == CNP_OK, "%s", err.msg);
        if (st != CNP_OK)
            continue;
        all_methods(names[i], &img);
        /* Otsu on BT.601 luma against the textbook formulation, on the same
         * histogram (the documented rounded integer luma): exactly equal. An
         * off-by-one here is the class-boundary bug this test exists for. */
        uint32_t hist[256] = {0};
        size_t n = (size_t)img.width * img.height;
        for (size_t k = 0; k < n; k++) {
            const uint8_t *p = img.rgba + 4 * k;
            hist[(299u * p[0] + 587u * p[1] + 114u * p[2] + 500u) / 1000u]++;
        }
        int t_ind = otsu_textbook(hist);
        CHECK(bin_otsu(hist) == t_ind, "%s: bin_otsu %d, textbook %d", names[i], bin_otsu(hist),
              t_ind);
        bin_params p = {.method = CNP_BIN_OTSU, .channel = CNP_CH_LUMA, .window = 31};
        bin_result r;
        uint8_t *mask = malloc(n);
        CHECK(bin_ref_run(&p, &img, mask, &r, &err) == CNP_OK);
        CHECK_MSG(r.threshold == t_ind, "%s: otsu %d, textbook %d", names[i], r.threshold,
                  t_ind);
        free(mask);
        cnp_image_free(&img);
    }
}

static void test_channels(void)
{
    /* Spot values of the channel formulas. */
    const uint8_t white[4] = {255, 255, 255, 255}, black[4] = {0, 0, 0, 255};
    const uint8_t green[4] = {0, 255, 0, 255}, magenta[4] = {255, 0, 255, 255};
    const uint8_t gray[4] = {100, 100, 100, 255};
    CHECK(bin_channel_value(white, CNP_CH_LUMA) == 255);
    CHECK(bin_channel_value(black, CNP_CH_LUMA) == 0);
    CHECK(bin_channel_value(green, CNP_CH_LUMA) == 150); /* 0.587 * 255 = 149.7 */
    CHECK(bin_channel_value(green, CNP_CH_EXG) == 255);
    CHECK(bin_channel_value(magenta, CNP_CH_EXG) == 0);
    CHECK(bin_channel_value(gray, CNP_CH_EXG) == 128); /* exg 0 -> 127.5 rounds to 128 */
    uint32_t hist[256] = {0};
    hist[10] = 50;
    hist[200] = 50;
    CHECK(bin_otsu(hist) == 10);
    uint32_t one[256] = {0};
    one[77] = 9;
    CHECK(bin_otsu(one) == 0);
}

/* Nodata (alpha 0) stays out of the histogram: the Otsu threshold of an
 * image with a black nodata block equals that of its valid pixels alone,
 * on the device and in the reference. */
static void test_nodata(void)
{
    cnp_image img;
    cnp_err err;
    CHECK(img_png_read_file(CANOPY_NEON_DIR "/SOAP_061.png", 0, &img, &err) == CNP_OK);
    size_t n = (size_t)img.width * img.height;
    uint32_t hist[256] = {0}, with_block[256] = {0};
    for (size_t k = 0; k < n; k++) {
        uint8_t *px = img.rgba + 4 * k;
        if ((k / img.width) < 150 && (k % img.width) < 211) {
            px[0] = px[1] = px[2] = 0; /* a black nodata block */
            px[3] = 0;
        } else {
            hist[bin_channel_value(px, CNP_CH_LUMA)]++;
        }
        with_block[bin_channel_value(px, CNP_CH_LUMA)]++;
    }
    /* The block would move the threshold if it were counted. */
    CHECK(bin_otsu(with_block) != bin_otsu(hist));
    bin_params p = {.method = CNP_BIN_OTSU, .channel = CNP_CH_LUMA, .window = 31};
    bin_result r;
    uint8_t *mask = malloc(n);
    CHECK(bin_ref_run(&p, &img, mask, &r, &err) == CNP_OK);
    CHECK_MSG(r.threshold == bin_otsu(hist), "threshold %d, valid pixels' Otsu %d", r.threshold,
              bin_otsu(hist));
    all_methods("SOAP_061 with nodata", &img);
    free(mask);
    cnp_image_free(&img);
}

/* The streaming binarizer (windowed rasters) against the reference on the
 * whole image: pixels fed window by window in a scattered order; the
 * threshold identical (nodata left out of the histogram, as the reference
 * leaves it out), the mask identical with nodata as background; adaptive
 * refused. */
static void test_stream(void)
{
    cnp_image img;
    cnp_err err;
    if (img_png_read_file(CANOPY_NEON_DIR "/OSBS_029.png", 0, &img, &err) != CNP_OK) {
        CHECK(!"OSBS_029.png unreadable", "%s", err.msg);
        return;
    }
    uint32_t w = img.width, h = img.height;
    size_t n = (size_t)w * h;
    for (size_t k = 0; k < n; k++)
        if ((k % w) > w - 37 && (k / w) < 53)
            img.rgba[4 * k + 3] = 0; /* nodata corner */
    for (int ch = 0; ch < 2; ch++)
        for (int method = 0; method < 2; method++) {
            cnp_binarize_config cfg = {.method = method ? CNP_BIN_FIXED : CNP_BIN_OTSU,
                                       .channel = ch ? CNP_CH_EXG : CNP_CH_LUMA,
                                       .threshold = 97, .window = 31};
            bin_stream s;
            CHECK(bin_stream_init(&s, &cfg, &err) == CNP_OK, "%s", err.msg);
            uint8_t *pairs = malloc(2 * n), *mask = malloc(n), *ref = malloc(n);
            /* Windows of 61 x 47, bottom-right first. */
            for (long y0 = ((long)h - 1) / 47 * 47; y0 >= 0; y0 -= 47)
                for (long x0 = ((long)w - 1) / 61 * 61; x0 >= 0; x0 -= 61)
                    for (uint32_t y = (uint32_t)y0; y < h && y < (uint32_t)y0 + 47; y++)
                        for (uint32_t x = (uint32_t)x0; x < w && x < (uint32_t)x0 + 61; x++) {
                            size_t k = (size_t)y * w + x;
                            bin_stream_put(&s, img.rgba + 4 * k, pairs + 2 * k);
                        }
            int thr = bin_stream_threshold(&s);
            uint64_t fg = bin_stream_mask(thr, pairs, n, 0, mask);
            bin_params p = {.method = cfg.method, .channel = cfg.channel, .threshold = 97,
                            .window = 31};
            bin_result r;
            CHECK(bin_ref_run(&p, &img, ref, &r, &err) == CNP_OK, "%s", err.msg);
            /* The window stage's mask: nodata pixels are background. */
            uint64_t want_fg = 0;
            for (size_t k = 0; k < n; k++) {
                if (img.rgba[4 * k + 3] == 0)
                    ref[k] = 0;
                want_fg += ref[k] != 0;
            }
            CHECK(thr == r.threshold && fg == want_fg && memcmp(mask, ref, n) == 0,
                  "channel %d method %d: stream threshold %d fg %llu, reference %d fg %llu", ch,
                  method, thr, (unsigned long long)fg, r.threshold,
                  (unsigned long long)want_fg);
            CHECK(s.nodata == 36u * 53u, "nodata %llu", (unsigned long long)s.nodata);
            free(pairs);
            free(mask);
            free(ref);
        }
    cnp_binarize_config ad = {.method = CNP_BIN_ADAPTIVE, .window = 31};
    bin_stream s;
    CHECK(bin_stream_init(&s, &ad, &err) == CNP_ERR_INVALID && strstr(err.msg, "adaptive"));
    cnp_image_free(&img);
}

int main(void)
{
    cnp_config cfg;
    cnp_err err;
    test_channels();
    /* The environment applies (CANOPY_OPENCL_CACHE_DIR from scripts/test.sh):
     * defaults alone would cache kernels in the user's ~/.cache/canopy. */
    if (cnp_config_load(&cfg, NULL, &err) != CNP_OK) {
        fprintf(stderr, "configuration: %s\n", err.msg);
        return 1;
    }
    if (ocl_ctx_create(&cfg.opencl, &g_ctx, &err) != CNP_OK) {
        /* No device: the C path against the reference, then skip (or fail
         * where a device is required). */
        fprintf(stderr, "no OpenCL device: the C path alone (%s)\n", err.msg);
        test_sizes();
        test_neon();
        return TEST_RESULT() ? TEST_RESULT() : test_skip_or_fail(err.msg);
    }
    test_sizes();
    test_neon();
    test_nodata();
    test_stream();
    ocl_ctx_free(g_ctx);
    return TEST_RESULT();
}
