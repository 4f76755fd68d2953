/* Images in one internal layout, and PNG reading and writing with libpng.
 *
 * Every PNG colour type and bit depth (gray, gray+alpha, RGB, RGBA, palette,
 * 1/2/4/8/16-bit, tRNS) decodes to RGBA8, row-major, 4 bytes per pixel, rows
 * packed (stride = 4 * width). 16-bit samples are rounded to 8 bits
 * ((v * 255 + 32767) / 65535); images without alpha get alpha 255. */
#ifndef CANOPY_IMAGE_H
#define CANOPY_IMAGE_H

#include <stddef.h>
#include <stdint.h>

#include "canopy/buf.h"
#include "canopy/status.h"

typedef struct cnp_image {
    uint32_t width;
    uint32_t height;
    uint8_t *rgba; /* 4 * width * height bytes, owned */
} cnp_image;

/* Frees the pixels and zeroes the struct; accepts NULL. */
void cnp_image_free(cnp_image *img);

/* Allocates a width x height image (pixels uninitialised). */
cnp_status cnp_image_alloc(cnp_image *img, uint32_t width, uint32_t height, cnp_err *err);

/* Decodes a PNG held in memory. `name` names the input in errors. Refuses an
 * image whose width * height exceeds max_pixels (0: no limit) with
 * CNP_ERR_LIMIT before allocating pixel memory; corrupt, truncated or non-PNG
 * data gives CNP_ERR_FORMAT with libpng's reason. On success *out owns its
 * pixels; on failure *out is zeroed. */
cnp_status img_png_decode(const void *data, size_t len, const char *name,
                          uint64_t max_pixels, cnp_image *out, cnp_err *err);

/* Reads and decodes a PNG file (errors name the path). */
cnp_status img_png_read_file(const char *path, uint64_t max_pixels, cnp_image *out,
                             cnp_err *err);

/* Reads only the header: width and height, without decoding pixels. */
cnp_status img_png_probe(const void *data, size_t len, const char *name,
                         uint32_t *width, uint32_t *height, cnp_err *err);

/* Encodes a mask (one byte per pixel, non-zero = foreground) as a 1-bit
 * grayscale PNG (foreground white), appending to `out`. level: zlib 0..9. */
cnp_status img_png_encode_mask(const uint8_t *mask, uint32_t width, uint32_t height,
                               int level, cnp_buf *out, cnp_err *err);

/* Encodes an RGBA8 image as an 8-bit RGB PNG (alpha dropped), appending to out. */
cnp_status img_png_encode_rgb(const cnp_image *img, int level, cnp_buf *out,
                              cnp_err *err);

/* Encodes an RGBA8 image as an 8-bit RGBA PNG, appending to out. */
cnp_status img_png_encode_rgba(const cnp_image *img, int level, cnp_buf *out,
                               cnp_err *err);

/* Overlay drawing (src/image/draw.c). Coordinates are continuous pixel
 * coordinates with the origin top-left: pixel (i, j) covers [i, i+1) x
 * [j, j+1). Shapes are anti-aliased, drawn over a dark 1-pixel outline so they
 * read on any background, and clipped to the image: only the shape's bounding
 * box is visited. Alpha is raised to the shape's coverage, never lowered.
 * Non-finite or non-positive sizes draw nothing. */

/* A ring of colour rgb, `thickness` pixels wide, centred on the circle of
 * `radius` around (cx, cy). */
void img_draw_circle(cnp_image *img, float cx, float cy, float radius, const uint8_t rgb[3],
                     float thickness);

/* A filled disc (centre dot) of `radius` around (cx, cy). */
/* Outline of the box [x0, x1] x [y0, y1] (pixel coordinates, edges at
 * pixel boundaries), `thickness` pixels wide, antialiased and with a dark
 * halo like the circle's; clipped to the image. */
void img_draw_rect(cnp_image *img, float x0, float y0, float x1, float y1, const uint8_t rgb[3],
                   float thickness);

void img_draw_dot(cnp_image *img, float cx, float cy, float radius, const uint8_t rgb[3]);

/* A plus sign with arms reaching `size` pixels from (cx, cy), `thickness`
 * pixels wide. */
void img_draw_cross(cnp_image *img, float cx, float cy, float size, const uint8_t rgb[3],
                    float thickness);

#endif
