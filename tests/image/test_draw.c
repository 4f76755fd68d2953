/* Overlay drawing: rings, dots and crosses land where the geometry says,
 * leave everything else untouched, and clip at the borders without writing
 * outside the image (guard bytes here, ASan in the sanitizer build). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "canopy/image.h"
#include "testutil.h"

static const uint8_t yellow[3] = {255, 255, 0};
static const uint8_t bg[4] = {128, 128, 128, 255};

static void fill(cnp_image *img, const uint8_t px[4])
{
    for (size_t i = 0; i < (size_t)img->width * img->height; i++)
        memcpy(img->rgba + 4 * i, px, 4);
}

static const uint8_t *at(const cnp_image *img, uint32_t x, uint32_t y)
{
    return img->rgba + ((size_t)y * img->width + x) * 4;
}

static bool is_bg(const cnp_image *img, uint32_t x, uint32_t y)
{
    return memcmp(at(img, x, y), bg, 4) == 0;
}

/* Distance from the centre of pixel (x, y) to (cx, cy). */
static double dist(uint32_t x, uint32_t y, double cx, double cy)
{
    return hypot(x + 0.5 - cx, y + 0.5 - cy);
}

static void test_circle(void)
{
    cnp_image img;
    cnp_err err;
    CHECK_MSG(cnp_image_alloc(&img, 64, 64, &err) == CNP_OK, "%s", err.msg);
    fill(&img, bg);
    img_draw_circle(&img, 32.0f, 32.0f, 20.0f, yellow, 2.0f);

    /* On the ring: yellow, whatever the angle. */
    int off_ring = 0;
    for (int a = 0; a < 360; a++) {
        double t = a * M_PI / 180.0;
        uint32_t x = (uint32_t)floor(32.0 + 20.0 * cos(t));
        uint32_t y = (uint32_t)floor(32.0 + 20.0 * sin(t));
        const uint8_t *p = at(&img, x, y);
        if (!(p[0] >= 195 && p[1] >= 195 && p[2] <= 60 && p[3] == 255) && off_ring++ < 5)
            fprintf(stderr, "angle %d pixel (%u,%u) = %u %u %u %u\n", a, x, y, p[0], p[1],
                    p[2], p[3]);
    }
    CHECK_MSG(off_ring == 0, "%d ring samples are not yellow", off_ring);
    /* Fully inside the band: exactly the colour. */
    CHECK_MSG(memcmp(at(&img, 51, 31), (uint8_t[]){255, 255, 0, 255}, 4) == 0, "band centre");
    /* The dark outline just outside and just inside the band. */
    const uint8_t *o = at(&img, 53, 31), *in = at(&img, 13, 31);
    CHECK_MSG(o[0] < 40 && o[1] < 40 && o[2] < 40, "outer outline %u %u %u", o[0], o[1], o[2]);
    CHECK_MSG(in[0] < 40 && in[1] < 40 && in[2] < 40, "inner outline %u %u %u", in[0], in[1],
              in[2]);
    /* Centre, interior, corners and everything beyond the outline untouched. */
    int touched = 0;
    for (uint32_t y = 0; y < 64; y++)
        for (uint32_t x = 0; x < 64; x++) {
            double d = dist(x, y, 32.0, 32.0);
            if ((d < 17.4 || d > 22.6) && !is_bg(&img, x, y))
                touched++;
        }
    CHECK_MSG(touched == 0, "%d pixels off the ring were changed", touched);
    CHECK_MSG(is_bg(&img, 32, 32) && is_bg(&img, 31, 31) && is_bg(&img, 0, 0) &&
                  is_bg(&img, 63, 63) && is_bg(&img, 0, 63) && is_bg(&img, 63, 0),
              "centre or corners changed");
    /* A ring centred on a pixel corner is mirror-symmetric. */
    int asym = 0;
    for (uint32_t y = 0; y < 64; y++)
        for (uint32_t x = 0; x < 64; x++)
            asym += memcmp(at(&img, x, y), at(&img, 63 - x, y), 4) != 0 ||
                    memcmp(at(&img, x, y), at(&img, y, x), 4) != 0;
    CHECK_MSG(asym == 0, "%d pixels break the symmetry", asym);

    /* Alpha rises to coverage on a transparent canvas. */
    memset(img.rgba, 0, (size_t)64 * 64 * 4);
    img_draw_circle(&img, 32.0f, 32.0f, 20.0f, yellow, 2.0f);
    CHECK_MSG(at(&img, 51, 31)[3] == 255 && at(&img, 32, 32)[3] == 0, "alpha");
    cnp_image_free(&img);
}

static void test_dot_and_cross(void)
{
    cnp_image img;
    cnp_err err;
    CHECK_MSG(cnp_image_alloc(&img, 32, 32, &err) == CNP_OK, "%s", err.msg);
    fill(&img, bg);
    img_draw_dot(&img, 16.0f, 16.0f, 3.0f, yellow);
    CHECK_MSG(memcmp(at(&img, 16, 16), (uint8_t[]){255, 255, 0, 255}, 4) == 0 &&
                  memcmp(at(&img, 15, 15), (uint8_t[]){255, 255, 0, 255}, 4) == 0, "dot centre");
    CHECK_MSG(at(&img, 19, 16)[0] < 40, "dot outline %u", at(&img, 19, 16)[0]);
    int touched = 0;
    for (uint32_t y = 0; y < 32; y++)
        for (uint32_t x = 0; x < 32; x++)
            touched += dist(x, y, 16.0, 16.0) > 4.6 && !is_bg(&img, x, y);
    CHECK_MSG(touched == 0, "dot: %d pixels beyond its outline changed", touched);

    fill(&img, bg);
    img_draw_cross(&img, 16.0f, 16.0f, 6.0f, yellow, 2.0f);
    for (uint32_t x = 10; x < 22; x++)
        CHECK_MSG(memcmp(at(&img, x, 15), (uint8_t[]){255, 255, 0, 255}, 4) == 0 &&
                      memcmp(at(&img, 15, x), (uint8_t[]){255, 255, 0, 255}, 4) == 0,
                  "cross arm at %u", x);
    CHECK_MSG(at(&img, 22, 16)[0] < 40 && at(&img, 16, 9)[0] < 40, "cross outline");
    touched = 0;
    for (uint32_t y = 0; y < 32; y++)
        for (uint32_t x = 0; x < 32; x++) {
            bool in_h = x >= 9 && x < 23 && y >= 14 && y < 18;
            bool in_v = y >= 9 && y < 23 && x >= 14 && x < 18;
            touched += !in_h && !in_v && !is_bg(&img, x, y);
        }
    CHECK_MSG(touched == 0, "cross: %d pixels off the cross changed", touched);
    cnp_image_free(&img);
}

/* A box model's box: its edges in the colour (thickness 2 centred on the
 * edge), the outline one pixel beyond, the inside and outside untouched. */
static void test_rect(void)
{
    cnp_image img;
    cnp_err err;
    CHECK_MSG(cnp_image_alloc(&img, 32, 24, &err) == CNP_OK, "%s", err.msg);
    fill(&img, bg);
    img_draw_rect(&img, 6.0f, 5.0f, 25.0f, 18.0f, yellow, 2.0f);
    static const uint8_t full[4] = {255, 255, 0, 255};
    for (uint32_t x = 7; x < 24; x++)
        CHECK(memcmp(at(&img, x, 4), full, 4) == 0 && memcmp(at(&img, x, 17), full, 4) == 0,
              "top or bottom edge at x %u", x);
    for (uint32_t y = 6; y < 17; y++)
        CHECK(memcmp(at(&img, 5, y), full, 4) == 0 && memcmp(at(&img, 24, y), full, 4) == 0,
              "left or right edge at y %u", y);
    CHECK(at(&img, 12, 3)[0] < 40 && at(&img, 4, 10)[0] < 40, "outline beyond the edges");
    int touched = 0;
    for (uint32_t y = 0; y < 24; y++)
        for (uint32_t x = 0; x < 32; x++) {
            bool band = x >= 3 && x < 28 && y >= 2 && y < 21;
            bool inside = x >= 8 && x < 23 && y >= 7 && y < 16;
            touched += (!band || inside) && !is_bg(&img, x, y);
        }
    CHECK(touched == 0, "rect: %d pixels off its frame changed", touched);
    cnp_image_free(&img);
}

/* Shapes partly or wholly outside the image, and absurd parameters, never
 * write outside the pixels: the image lives between guard bytes. */
static void test_clipping(void)
{
    enum { W = 16, H = 12, GUARD = 4096 };
    uint8_t *mem = malloc(GUARD * 2 + W * H * 4);
    memset(mem, 0xa5, GUARD * 2 + W * H * 4);
    cnp_image img = {.width = W, .height = H, .rgba = mem + GUARD};
    fill(&img, bg);

    const float nan = NAN, inf = INFINITY;
    const float cs[][4] = {
        {-5, -5, 10, 2},  {0, 0, 10, 2},   {W, H, 7, 3},     {W + 3, 6, 5, 2},
        {8, -3, 4, 2},    {8, H + 1, 2, 1}, {8, 6, 1e6f, 2}, {8, 6, 1e20f, 1e20f},
        {1e30f, 0, 5, 2}, {-1e30f, -1e30f, 1e30f, 2}, {nan, 6, 5, 2}, {8, nan, 5, 2},
        {8, 6, nan, 2},   {8, 6, 5, nan},  {inf, 6, 5, 2},   {8, 6, inf, 2},
        {8, 6, 0, 2},     {8, 6, 5, 0},    {8, 6, -4, 2},    {8, 6, 5, -2},
        {8, 6, 0.2f, 0.1f}, {W - 0.5f, H - 0.5f, 1, 1},
    };
    for (size_t i = 0; i < sizeof cs / sizeof cs[0]; i++) {
        img_draw_circle(&img, cs[i][0], cs[i][1], cs[i][2], yellow, cs[i][3]);
        img_draw_dot(&img, cs[i][0], cs[i][1], cs[i][2], yellow);
        img_draw_cross(&img, cs[i][0], cs[i][1], cs[i][2], yellow, cs[i][3]);
        img_draw_rect(&img, cs[i][0], cs[i][1], cs[i][0] + cs[i][2], cs[i][1] + cs[i][2],
                      yellow, cs[i][3]);
    }
    int guard_hit = 0;
    for (size_t i = 0; i < GUARD; i++)
        guard_hit += mem[i] != 0xa5 || mem[GUARD + W * H * 4 + i] != 0xa5;
    CHECK_MSG(guard_hit == 0, "%d guard bytes overwritten", guard_hit);
    free(mem);

    /* A ring around the origin is still drawn in the visible quarter. */
    cnp_image small;
    cnp_err err;
    CHECK_MSG(cnp_image_alloc(&small, W, H, &err) == CNP_OK, "%s", err.msg);
    fill(&small, bg);
    img_draw_circle(&small, 0.0f, 0.0f, 10.0f, yellow, 2.0f);
    CHECK_MSG(memcmp(at(&small, 9, 0), (uint8_t[]){255, 255, 0, 255}, 4) == 0 &&
                  memcmp(at(&small, 0, 9), (uint8_t[]){255, 255, 0, 255}, 4) == 0 &&
                  is_bg(&small, 0, 0) && is_bg(&small, W - 1, H - 1), "clipped ring");
    /* NULL and empty images are ignored. */
    img_draw_circle(NULL, 1, 1, 1, yellow, 1);
    cnp_image none = {0};
    img_draw_dot(&none, 1, 1, 1, yellow);
    img_draw_cross(&none, 1, 1, 1, yellow, 1);
    img_draw_rect(&none, 1, 1, 2, 2, yellow, 1);
    cnp_image_free(&small);
}

int main(void)
{
    test_circle();
    test_dot_and_cross();
    test_rect();
    test_clipping();
    return TEST_RESULT();
}
