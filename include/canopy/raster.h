/* Rasters through GDAL (GeoTIFF, COG, JPEG; PNG goes to libpng, which is
 * faster) and their georeferencing.
 *
 * Decoding gives the same RGBA8 layout as canopy/image.h. A pixel that the
 * raster marks as nodata (nodata value, alpha band or mask band: GDAL's mask
 * of each colour band; a pixel is nodata when all three bands say so) gets
 * alpha 0, every other pixel alpha 255. 16-bit bands are rescaled to 8 bits
 * by v8 = round(v * 255 / max), where max is 2^NBITS - 1 when the band
 * declares NBITS (IMAGE_STRUCTURE metadata, e.g. 12-bit sensors), else the
 * largest valid value of the three bands. A raster canopy cannot use (one or
 * two bands, float or signed samples such as an elevation model) is refused
 * with CNP_ERR_FORMAT and a reason that says what it is. */
#ifndef CANOPY_RASTER_H
#define CANOPY_RASTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "canopy/image.h"
#include "canopy/status.h"

/* Where a raster lies on the Earth. */
typedef struct img_georef {
    bool valid;        /* a geotransform and a CRS */
    double gt[6];      /* GDAL geotransform: map = gt[0] + px*gt[1] + py*gt[2], ... */
    int epsg;          /* 0 when the CRS has no EPSG code */
    char *wkt;         /* the CRS as WKT; owned */
    bool geographic;   /* map units are degrees */
    double unit_m;     /* metres per map unit (projected CRS) */
    void *to_wgs84;    /* OGRCoordinateTransformationH; owned */
    int overviews;     /* the raster's overview levels (a COG's); its GeoTIFF mask gets them */
} img_georef;

void img_georef_free(img_georef *g);

/* Registers GDAL's drivers once (and keeps its messages from stderr); every
 * img_raster_* and img_mask_* function does it itself. Thread-safe. */
void img_gdal_init(void);

/* GDAL's pixel-to-map transform (GDALApplyGeoTransform): px, py measured in
 * pixels from the raster's top-left corner. */
void img_georef_pixel_to_map(const img_georef *g, double px, double py, double *mx, double *my);

/* Transforms n map points to WGS 84 longitude/latitude in place. */
cnp_status img_georef_to_lonlat(const img_georef *g, size_t n, double *x, double *y,
                                cnp_err *err);

/* Metres per pixel near pixel (px, py): the square root of the pixel's area
 * (handles rotated and non-square pixels; degrees are converted at that
 * latitude). */
double img_georef_pixel_m(const img_georef *g, double px, double py);

/* What the first bytes say the data is: "png", "tiff", "jpeg", "vrt" (GDAL's
 * XML virtual raster) or NULL. */
const char *img_raster_sniff(const void *data, size_t len);

/* Width and height without decoding pixels (PNG: libpng; else GDAL). */
cnp_status img_raster_probe(const void *data, size_t len, const char *name, uint32_t *width,
                            uint32_t *height, cnp_err *err);

/* Decodes a raster held in memory into *out (RGBA8, alpha 0 at nodata) and,
 * when geo is not NULL, its georeferencing. *nodata (may be NULL) receives
 * the number of nodata pixels. Refuses more than max_pixels (0: no limit)
 * with CNP_ERR_LIMIT before allocating pixel memory. Thread-safe. */
cnp_status img_raster_decode(const void *data, size_t len, const char *name, uint64_t max_pixels,
                             cnp_image *out, img_georef *geo, uint64_t *nodata, cnp_err *err);

/* Decodes the local file at path, whose bytes (data, len) were read, as
 * img_raster_decode decodes bytes, with what only a file has: its
 * georeferencing as gdalinfo reports it, sidecar files included (GDAL's
 * .aux.xml, world files .wld, .tfw, .pgw, .jgw ...), and VRT mosaics
 * (read through GDAL with the files they name). Errors name the path. */
cnp_status img_raster_decode_file(const void *data, size_t len, const char *path,
                                  uint64_t max_pixels, cnp_image *out, img_georef *geo,
                                  uint64_t *nodata, cnp_err *err);

/* The georeferencing GDAL reports for the file at path, sidecar files
 * included; geo->valid false without a geotransform and a CRS (a world
 * file alone has no CRS) or when GDAL cannot open it. */
cnp_status img_georef_read_file(const char *path, const char *name, img_georef *geo,
                                cnp_err *err);

/* ---- windows of a large raster -------------------------------------------- */

/* An open raster read in windows (GDAL keeps at most [a small block cache]
 * of it in memory). Not thread-safe: one thread at a time. */
typedef struct img_raster img_raster;

/* Opens a raster from memory (data, len; borrowed, must outlive it) or, when
 * data is NULL, from the file `path`. Refuses unusable rasters as
 * img_raster_decode does. geo receives the georeferencing (may be NULL). A
 * 16-bit raster without NBITS is read once here for its maximum. */
cnp_status img_raster_open(const void *data, size_t len, const char *path, const char *name,
                           img_raster **out, img_georef *geo, cnp_err *err);
void img_raster_close(img_raster *r);
uint32_t img_raster_width(const img_raster *r);
uint32_t img_raster_height(const img_raster *r);
/* Whether the raster is a TIFF (windows are cheap: tiles or strips). */
bool img_raster_is_tiff(const img_raster *r);

/* Reads the window [x0, x0+w) x [y0, y0+h) as RGBA8 (alpha 0 at nodata) into
 * rgba (4 * w * h bytes, rows packed); *nodata (may be NULL) receives its
 * nodata pixel count. Pixels equal those of img_raster_decode. */
cnp_status img_raster_read(img_raster *r, uint32_t x0, uint32_t y0, uint32_t w, uint32_t h,
                           uint8_t *rgba, uint64_t *nodata, cnp_err *err);

/* The GeoTIFF mask's value, and NoData value, for pixels the input marks
 * nodata (canopy 255, not canopy 0). */
#define IMG_MASK_NODATA 1

/* A single-band 8-bit GeoTIFF mask written window by window (deflate, tiled
 * 256 x 256, NoData = IMG_MASK_NODATA), georeferenced like geo when it is
 * valid: into the file at path (created or replaced), or in memory when
 * path is NULL. For a georeferenced input with overviews (geo->overviews,
 * a COG) the mask is a COG with overviews (nearest neighbour). */
typedef struct img_mask_writer img_mask_writer;
cnp_status img_mask_writer_open(uint32_t width, uint32_t height, const img_georef *geo,
                                const char *path, img_mask_writer **out, cnp_err *err);
/* Writes rows of the mask (IMG_MASK_NODATA = nodata, other non-zero =
 * foreground, stored as 255). */
cnp_status img_mask_writer_put(img_mask_writer *w, uint32_t x0, uint32_t y0, uint32_t width,
                               uint32_t height, const uint8_t *mask, cnp_err *err);
/* Finishes the file; a writer in memory appends its bytes to out (a file
 * writer leaves out alone: may be NULL). Frees w (also on error). */
cnp_status img_mask_writer_finish(img_mask_writer *w, cnp_buf *out, cnp_err *err);
void img_mask_writer_free(img_mask_writer *w);

/* Encodes a mask (as img_mask_writer_put takes it) as a single-band 8-bit
 * GeoTIFF (0/255, nodata 1, deflate, tiled 256 x 256; a COG for an input
 * with overviews) carrying geo's geotransform and CRS; appends to out. */
cnp_status img_mask_encode_geotiff(const uint8_t *mask, uint32_t width, uint32_t height,
                                   const img_georef *geo, cnp_buf *out, cnp_err *err);

#endif
