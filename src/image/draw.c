/* Overlay drawing on RGBA8 images: rings, dots, crosses and box outlines with a dark
 * outline so that they stay readable on any aerial background.
 *
 * Coordinates are continuous, origin top-left: pixel (i, j) covers
 * [i, i+1) x [j, j+1), so its centre is (i + 0.5, j + 0.5). Edges are
 * anti-aliased with a box filter: a pixel's coverage is the length (or area)
 * of its overlap with the shape, measured across the edge. Only the shape's
 * bounding box, clipped to the image, is visited. */
#include <math.h>

#include "canopy/image.h"

/* Opacity of the dark outline drawn under every shape. */
#define OUTLINE_OPACITY 0.85f

/* Length of [lo, hi] covered by the unit interval centred on c. */
static inline float overlap1(float c, float lo, float hi)
{
    float a = fmaxf(lo, c - 0.5f);
    float b = fminf(hi, c + 0.5f);
    return b > a ? b - a : 0.0f;
}

static inline uint8_t mix(uint8_t p, uint8_t c, float a)
{
    return (uint8_t)((float)p + ((float)c - (float)p) * a + 0.5f);
}

/* Dark outline first (coverage `under`), then the colour (coverage `over`). */
static inline void blend(uint8_t *px, const uint8_t rgb[3], float under, float over)
{
    static const uint8_t dark[3] = {0, 0, 0};
    float a = under * OUTLINE_OPACITY;
    for (int k = 0; k < 3; k++) {
        uint8_t v = a > 0.0f ? mix(px[k], dark[k], a) : px[k];
        px[k] = over > 0.0f ? mix(v, rgb[k], over) : v;
    }
    float cov = fmaxf(a, over);
    uint8_t alpha = (uint8_t)(cov * 255.0f + 0.5f);
    if (alpha > px[3])
        px[3] = alpha;
}

/* Pixel range [*lo, *hi) covering [a, b] in continuous coordinates, clipped
 * to [0, n). Returns false when empty (or when the inputs are not finite). */
static bool span(double a, double b, uint32_t n, uint32_t *lo, uint32_t *hi)
{
    if (!(a <= b) || !isfinite(a) || !isfinite(b))
        return false;
    double l = floor(a), h = ceil(b);
    if (h <= 0.0 || l >= (double)n)
        return false;
    *lo = l < 0.0 ? 0u : (uint32_t)l;
    *hi = h > (double)n ? n : (uint32_t)h;
    return *lo < *hi;
}

/* Fills the radial band inner <= d <= outer around (cx, cy) with rgb over a
 * band one pixel wider on each side in the outline colour. inner < 0 gives a
 * disc. */
static void draw_band(cnp_image *img, float cx, float cy, float inner, float outer,
                      const uint8_t rgb[3])
{
    if (!img || !img->rgba || !(outer > 0.0f))
        return;
    float reach = outer + 1.0f; /* outline */
    uint32_t x0, x1, y0, y1;
    if (!span((double)cx - reach - 1.0, (double)cx + reach + 1.0, img->width, &x0, &x1) ||
        !span((double)cy - reach - 1.0, (double)cy + reach + 1.0, img->height, &y0, &y1))
        return;
    /* Pixels whose centre is closer than this are untouched (interior). */
    float hole = inner - 1.0f - 0.75f;
    for (uint32_t y = y0; y < y1; y++) {
        float dy = (float)y + 0.5f - cy;
        uint32_t skip_lo = 1, skip_hi = 0; /* empty */
        if (hole > 0.0f && fabsf(dy) < hole) {
            float xi = sqrtf(hole * hole - dy * dy);
            double lo = floor((double)cx - xi - 0.5) + 1.0;
            double hi = ceil((double)cx + xi - 0.5) - 1.0;
            if (lo <= hi && hi >= 0.0 && lo < (double)img->width) {
                skip_lo = lo < 0.0 ? 0u : (uint32_t)lo;
                skip_hi = hi >= (double)img->width ? img->width - 1 : (uint32_t)hi;
            }
        }
        uint8_t *row = img->rgba + (size_t)y * img->width * 4;
        for (uint32_t x = x0; x < x1; x++) {
            if (x == skip_lo && skip_lo <= skip_hi) {
                x = skip_hi;
                continue;
            }
            float dx = (float)x + 0.5f - cx;
            float d = sqrtf(dx * dx + dy * dy);
            float under = overlap1(d, inner - 1.0f, outer + 1.0f);
            if (under <= 0.0f)
                continue;
            blend(row + (size_t)x * 4, rgb, under, overlap1(d, inner, outer));
        }
    }
}

void img_draw_circle(cnp_image *img, float cx, float cy, float radius, const uint8_t rgb[3],
                     float thickness)
{
    if (!(thickness > 0.0f) || !(radius >= 0.0f))
        return;
    draw_band(img, cx, cy, radius - thickness * 0.5f, radius + thickness * 0.5f, rgb);
}

void img_draw_dot(cnp_image *img, float cx, float cy, float radius, const uint8_t rgb[3])
{
    if (!(radius > 0.0f))
        return;
    draw_band(img, cx, cy, -2.0f, radius, rgb);
}

/* Coverage of the pixel centred on (px, py) by the rectangle [x0,x1]x[y0,y1]. */
static inline float rect_cov(float px, float py, float x0, float x1, float y0, float y1)
{
    return overlap1(px, x0, x1) * overlap1(py, y0, y1);
}

/* Coverage of a plus sign of half-length s and half-thickness h. */
static inline float plus_cov(float px, float py, float cx, float cy, float s, float h)
{
    float horiz = rect_cov(px, py, cx - s, cx + s, cy - h, cy + h);
    float vert = rect_cov(px, py, cx - h, cx + h, cy - s, cy + s);
    float both = rect_cov(px, py, cx - h, cx + h, cy - h, cy + h);
    return horiz + vert - both;
}

/* A straight-edged shape: its coverage of the pixel centred on (px, py),
 * grown by `grow` pixels (1 for the outline under it, 0 for the colour). */
typedef struct shape {
    float (*cov)(const struct shape *s, float px, float py, float grow);
    float a, b, c, d; /* the shape's own numbers */
    float h;          /* half-thickness */
} shape;

/* Visits the pixels of [x0, x1] x [y0, y1] (the shape and its outline,
 * clipped to the image) and blends the outline, then the colour. */
static void paint(cnp_image *img, const shape *sh, double x0, double x1, double y0, double y1,
                  const uint8_t rgb[3])
{
    uint32_t ix0, ix1, iy0, iy1;
    if (!span(x0, x1, img->width, &ix0, &ix1) || !span(y0, y1, img->height, &iy0, &iy1))
        return;
    for (uint32_t y = iy0; y < iy1; y++) {
        float py = (float)y + 0.5f;
        uint8_t *row = img->rgba + (size_t)y * img->width * 4;
        for (uint32_t x = ix0; x < ix1; x++) {
            float px = (float)x + 0.5f;
            float under = sh->cov(sh, px, py, 1.0f);
            if (under <= 0.0f)
                continue;
            blend(row + (size_t)x * 4, rgb, under, sh->cov(sh, px, py, 0.0f));
        }
    }
}

/* A plus sign centred on (a, b) of half-length c. */
static float cross_cov(const shape *s, float px, float py, float grow)
{
    return plus_cov(px, py, s->a, s->b, s->c + grow, s->h + grow);
}

void img_draw_cross(cnp_image *img, float cx, float cy, float size, const uint8_t rgb[3],
                    float thickness)
{
    if (!img || !img->rgba || !(size > 0.0f) || !(thickness > 0.0f))
        return;
    shape sh = {cross_cov, cx, cy, size, 0.0f, thickness * 0.5f};
    float reach = fmaxf(size, sh.h) + 1.0f;
    paint(img, &sh, (double)cx - reach, (double)cx + reach, (double)cy - reach,
          (double)cy + reach, rgb);
}

/* Coverage of the outline of [x0,x1]x[y0,y1] of half-thickness h: the band
 * between the rectangle grown by h and the one shrunk by h. */
static inline float frame_cov(float px, float py, float x0, float y0, float x1, float y1,
                              float h)
{
    float outer = rect_cov(px, py, x0 - h, x1 + h, y0 - h, y1 + h);
    float inner = (x1 - x0 > 2 * h && y1 - y0 > 2 * h)
                      ? rect_cov(px, py, x0 + h, x1 - h, y0 + h, y1 - h)
                      : 0.0f;
    return outer - inner;
}

/* The outline of the rectangle [a, c] x [b, d]. */
static float rect_frame_cov(const shape *s, float px, float py, float grow)
{
    return frame_cov(px, py, s->a, s->b, s->c, s->d, s->h + grow);
}

void img_draw_rect(cnp_image *img, float x0, float y0, float x1, float y1, const uint8_t rgb[3],
                   float thickness)
{
    if (!img || !img->rgba || !(thickness > 0.0f) || !(x1 >= x0) || !(y1 >= y0))
        return;
    shape sh = {rect_frame_cov, x0, y0, x1, y1, thickness * 0.5f};
    double reach = (double)sh.h + 1.0;
    paint(img, &sh, (double)x0 - reach, (double)x1 + reach, (double)y0 - reach,
          (double)y1 + reach, rgb);
}
