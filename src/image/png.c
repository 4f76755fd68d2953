/* PNG reading and writing with libpng.
 *
 * libpng reports errors by calling an error function that must not return;
 * ours copies the message into the decoder's state and longjmps back to the
 * setjmp in png_rd_run / png_wr_run. Everything that changes after setjmp
 * lives in a state struct owned by the caller of those functions (never in
 * their own locals), so it is well defined after the longjmp and whatever was
 * allocated can be freed there. */
#include <errno.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <png.h>
#include <zlib.h>

#include "canopy/image.h"
#include "canopy/log.h"

/* Ancillary chunks (text, ICC profiles) larger than this are refused; IDAT is
 * streamed and not affected. */
#define PNG_CHUNK_MALLOC_MAX (8u * 1024 * 1024)

/* ---------------------------------------------------------------- reading */

typedef struct png_rd {
    const char *name;
    /* The source: memory (data/len/pos) or an open file (fp). */
    const uint8_t *data;
    size_t len;
    size_t pos;
    FILE *fp;
    uint64_t max_pixels;
    bool header_only;
    /* Results and what the error path must free. */
    cnp_status status;    /* set before png_error, or by rd_error (FORMAT) */
    bool limit_warning;   /* libpng warned "exceeds user limit" */
    char msg[512];
    uint32_t width;
    uint32_t height;
    uint8_t *pixels;      /* owned until handed to the caller's image */
    png_bytep *rows;
} png_rd;

static void rd_error(png_structp png, png_const_charp msg)
{
    png_rd *rd = png_get_error_ptr(png);
    /* A status set before png_error (read failure) keeps its message; a
     * refused IHDR keeps the user-limit warning, which says more than
     * libpng's "Invalid IHDR data". */
    if (rd->status == CNP_OK) {
        if (rd->limit_warning) {
            rd->status = CNP_ERR_LIMIT;
        } else {
            bool oom = strstr(msg, "ut of memory") || strstr(msg, "nsufficient memory");
            rd->status = oom ? CNP_ERR_NOMEM : CNP_ERR_FORMAT;
            snprintf(rd->msg, sizeof rd->msg, "%s", msg);
        }
    }
    png_longjmp(png, 1);
}

static void rd_warning(png_structp png, png_const_charp msg)
{
    png_rd *rd = png_get_error_ptr(png);
    if (strstr(msg, "exceeds user limit")) {
        rd->limit_warning = true;
        snprintf(rd->msg, sizeof rd->msg, "%s (limit: max_pixels = %" PRIu64 ")", msg,
                 rd->max_pixels);
    }
    LOG_DEBUG("image", "%s: libpng warning: %s", rd->name, msg);
}

static void rd_read(png_structp png, png_bytep dst, size_t n)
{
    png_rd *rd = png_get_io_ptr(png);
    if (rd->fp) {
        size_t got = fread(dst, 1, n, rd->fp);
        if (got == n)
            return;
        if (ferror(rd->fp)) {
            rd->status = CNP_ERR_IO;
            snprintf(rd->msg, sizeof rd->msg, "read error: %s", strerror(errno));
            png_error(png, rd->msg);
        }
        png_error(png, "truncated (unexpected end of file)");
    }
    if (rd->len - rd->pos < n)
        png_error(png, "truncated (unexpected end of data)");
    memcpy(dst, rd->data + rd->pos, n);
    rd->pos += n;
}

/* Checks the 8-byte signature, consuming it from the source. */
static cnp_status rd_signature(png_rd *rd)
{
    uint8_t sig[8];
    size_t got;
    if (rd->fp) {
        got = fread(sig, 1, sizeof sig, rd->fp);
        if (got < sizeof sig && ferror(rd->fp)) {
            snprintf(rd->msg, sizeof rd->msg, "read error: %s", strerror(errno));
            return CNP_ERR_IO;
        }
    } else {
        got = rd->len < sizeof sig ? rd->len : sizeof sig;
        if (got)
            memcpy(sig, rd->data, got);
        rd->pos = got;
    }
    if (got == 0) {
        snprintf(rd->msg, sizeof rd->msg, "not a PNG file (empty)");
        return CNP_ERR_FORMAT;
    }
    if (png_sig_cmp(sig, 0, got) != 0) {
        snprintf(rd->msg, sizeof rd->msg, "not a PNG file (bad signature)");
        return CNP_ERR_FORMAT;
    }
    if (got < sizeof sig) {
        snprintf(rd->msg, sizeof rd->msg, "truncated (%zu bytes, inside the signature)", got);
        return CNP_ERR_FORMAT;
    }
    return CNP_OK;
}

/* Asks libpng for RGBA8 whatever the stored colour type and depth. */
static void rd_set_transforms(png_structp png, png_infop info)
{
    int color_type = png_get_color_type(png, info);
    int bit_depth = png_get_bit_depth(png, info);
    bool trns = png_get_valid(png, info, PNG_INFO_tRNS) != 0;

    if (color_type == PNG_COLOR_TYPE_PALETTE)
        png_set_palette_to_rgb(png);
    if (color_type == PNG_COLOR_TYPE_GRAY && bit_depth < 8)
        png_set_expand_gray_1_2_4_to_8(png);
    if (trns)
        png_set_tRNS_to_alpha(png);
    /* Rounds: floor((v + 128.5) / 257) == (v * 255 + 32767) / 65535 for every
     * v, as image.h promises (the tests check all 65536 values). */
    if (bit_depth == 16)
        png_set_scale_16(png);
    if (color_type == PNG_COLOR_TYPE_GRAY || color_type == PNG_COLOR_TYPE_GRAY_ALPHA)
        png_set_gray_to_rgb(png);
    if (!(color_type & PNG_COLOR_MASK_ALPHA) && !trns)
        png_set_filler(png, 0xff, PNG_FILLER_AFTER);
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
}

/* The whole decode; libpng errors longjmp out of it to png_rd_run. Returns
 * with rd->status set for refusals that are not libpng errors. */
static void rd_body(png_structp png, png_infop info, png_rd *rd)
{
    png_set_read_fn(png, rd, rd_read);
    png_set_sig_bytes(png, 8);
    png_uint_32 dim_max = 0x7fffffffu;
    if (rd->max_pixels && rd->max_pixels < dim_max)
        dim_max = (png_uint_32)rd->max_pixels;
    png_set_user_limits(png, dim_max, dim_max);
    png_set_chunk_malloc_max(png, PNG_CHUNK_MALLOC_MAX);

    png_read_info(png, info);
    rd->width = png_get_image_width(png, info);
    rd->height = png_get_image_height(png, info);
    if (rd->header_only)
        return;

    /* Decompression bombs stop here, before any pixel memory exists. */
    uint64_t pixels = (uint64_t)rd->width * rd->height;
    if ((rd->max_pixels && pixels > rd->max_pixels) || pixels > (uint64_t)(SIZE_MAX / 4)) {
        rd->status = CNP_ERR_LIMIT;
        snprintf(rd->msg, sizeof rd->msg,
                 "%" PRIu32 "x%" PRIu32 " = %" PRIu64 " pixels exceeds the limit of %" PRIu64
                 " pixels (max_pixels)",
                 rd->width, rd->height, pixels,
                 rd->max_pixels ? rd->max_pixels : (uint64_t)(SIZE_MAX / 4));
        return;
    }

    rd_set_transforms(png, info);
    size_t stride = (size_t)rd->width * 4;
    if (png_get_rowbytes(png, info) != stride) {
        rd->status = CNP_ERR_INTERNAL;
        snprintf(rd->msg, sizeof rd->msg, "libpng row size %zu, expected %zu (RGBA8)",
                 (size_t)png_get_rowbytes(png, info), stride);
        return;
    }
    rd->pixels = malloc(stride * rd->height);
    rd->rows = malloc(sizeof *rd->rows * rd->height);
    if (!rd->pixels || !rd->rows) {
        rd->status = CNP_ERR_NOMEM;
        snprintf(rd->msg, sizeof rd->msg, "out of memory for %" PRIu32 "x%" PRIu32,
                 rd->width, rd->height);
        return;
    }
    for (uint32_t y = 0; y < rd->height; y++)
        rd->rows[y] = rd->pixels + (size_t)y * stride;
    png_read_image(png, rd->rows);
    /* Reads up to IEND so that a file cut after its pixel data, or with a
     * damaged trailing chunk, is reported rather than half-trusted. */
    png_read_end(png, NULL);
}

/* Runs rd_body under setjmp. The caller owns rd and frees rd->pixels and
 * rd->rows whatever happens. */
static cnp_status png_rd_run(png_rd *rd)
{
    cnp_status result = rd_signature(rd);
    if (result != CNP_OK)
        return result;
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, rd, rd_error, rd_warning);
    if (!png) {
        snprintf(rd->msg, sizeof rd->msg, "out of memory (png_create_read_struct)");
        return CNP_ERR_NOMEM;
    }
    png_infop info = png_create_info_struct(png);
    if (!info) {
        png_destroy_read_struct(&png, NULL, NULL);
        snprintf(rd->msg, sizeof rd->msg, "out of memory (png_create_info_struct)");
        return CNP_ERR_NOMEM;
    }
    /* png and info are not modified after setjmp, so they are valid after a
     * longjmp; everything else is in *rd. */
    if (setjmp(png_jmpbuf(png)) == 0)
        rd_body(png, info, rd);
    png_destroy_read_struct(&png, &info, NULL);
    return rd->status;
}

static cnp_status png_rd_finish(png_rd *rd, cnp_status result, cnp_image *out, cnp_err *err)
{
    free(rd->rows);
    if (result != CNP_OK) {
        free(rd->pixels);
        cnp_err_set(err, "%s: %s", rd->name, rd->msg);
        return result;
    }
    out->width = rd->width;
    out->height = rd->height;
    out->rgba = rd->pixels;
    return CNP_OK;
}

cnp_status img_png_decode(const void *data, size_t len, const char *name,
                          uint64_t max_pixels, cnp_image *out, cnp_err *err)
{
    memset(out, 0, sizeof *out);
    png_rd rd = {.name = name ? name : "(png)", .data = data, .len = data ? len : 0,
                 .max_pixels = max_pixels};
    cnp_status result = png_rd_run(&rd);
    return png_rd_finish(&rd, result, out, err);
}

cnp_status img_png_read_file(const char *path, uint64_t max_pixels, cnp_image *out,
                             cnp_err *err)
{
    memset(out, 0, sizeof *out);
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        int e = errno;
        cnp_err_set(err, "%s: %s", path, strerror(e));
        return e == ENOENT ? CNP_ERR_NOTFOUND : CNP_ERR_IO;
    }
    png_rd rd = {.name = path, .fp = fp, .max_pixels = max_pixels};
    cnp_status result = png_rd_run(&rd);
    fclose(fp);
    return png_rd_finish(&rd, result, out, err);
}

cnp_status img_png_probe(const void *data, size_t len, const char *name,
                         uint32_t *width, uint32_t *height, cnp_err *err)
{
    png_rd rd = {.name = name ? name : "(png)", .data = data, .len = data ? len : 0,
                 .header_only = true};
    cnp_status result = png_rd_run(&rd);
    free(rd.rows);
    free(rd.pixels);
    if (result != CNP_OK) {
        cnp_err_set(err, "%s: %s", rd.name, rd.msg);
        return result;
    }
    *width = rd.width;
    *height = rd.height;
    return CNP_OK;
}

/* ---------------------------------------------------------------- writing */

typedef enum wr_kind { WR_MASK, WR_RGB, WR_RGBA } wr_kind;

typedef struct png_wr {
    wr_kind kind;
    const uint8_t *src;   /* mask bytes or RGBA8 pixels */
    uint32_t width;
    uint32_t height;
    int level;
    cnp_buf *out;
    cnp_status status;
    char msg[256];
    uint8_t *row;         /* packed 1-bit row for masks */
} png_wr;

static void wr_error(png_structp png, png_const_charp msg)
{
    png_wr *wr = png_get_error_ptr(png);
    if (wr->status == CNP_OK)
        wr->status = CNP_ERR_INTERNAL;
    if (!wr->msg[0])
        snprintf(wr->msg, sizeof wr->msg, "%s", msg);
    png_longjmp(png, 1);
}

static void wr_warning(png_structp png, png_const_charp msg)
{
    LOG_DEBUG("image", "PNG encoder: libpng warning: %s", msg);
}

static void wr_write(png_structp png, png_bytep data, size_t n)
{
    png_wr *wr = png_get_io_ptr(png);
    if (cnp_buf_append(wr->out, data, n) != CNP_OK) {
        wr->status = CNP_ERR_NOMEM;
        png_error(png, "out of memory for the encoded PNG");
    }
}

static void wr_flush(png_structp png)
{
    (void)png;
}

/* Packs one mask row to 1 bit per pixel, most significant bit first. */
static void wr_pack_row(const uint8_t *src, uint32_t width, uint8_t *dst)
{
    uint32_t x = 0;
    for (; x + 8 <= width; x += 8, src += 8)
        *dst++ = (uint8_t)((!!src[0] << 7) | (!!src[1] << 6) | (!!src[2] << 5) |
                           (!!src[3] << 4) | (!!src[4] << 3) | (!!src[5] << 2) |
                           (!!src[6] << 1) | !!src[7]);
    if (x < width) {
        uint8_t b = 0;
        for (int bit = 7; x < width; x++, bit--)
            b |= (uint8_t)(!!*src++ << bit);
        *dst = b;
    }
}

/* Row filter and zlib strategy per output kind, chosen by measurement at
 * level 1 on a 4096x4096 mosaic of YELL_541000_west.png (tile columns
 * shifted and mirrored so that no exact repeat falls inside the deflate
 * window) and its luma > 100 mask; CPU time, median-free best of 2, on the
 * shared 2-core Debian host, so read the ratios rather than the absolutes:
 *
 *   RGB   filter/strategy   MPix/s   bytes (raw 50.3 MB)
 *         NONE  default       10.5   46.4 M
 *         SUB   default        9.5   39.6 M
 *         NONE  RLE           21.2   48.2 M
 *         SUB   RLE           19.9   38.3 M   <- chosen (RGBA too)
 *         UP    RLE           19.0   37.6 M
 *         PAETH RLE           15.2   35.9 M
 *   mask  NONE  default        267   882 k
 *         NONE  RLE            347   757 k
 *         UP    RLE            428   677 k   <- chosen
 *         SUB   RLE            299   1.0 M
 *
 * Aerial imagery has few long matches, so Z_RLE (distance-1 matches only, no
 * hash chains) halves the time of deflate_fast and still compresses better
 * after a SUB filter. Z_RLE ignores the level (1 and 9 give the same bytes;
 * 0 stores). Higher levels buy little on this content: RGB at level 6 or 9
 * with Z_FILTERED is 38.06 M (0.6 % smaller, 3x slower), with the default
 * strategy 38.7 M; masks at level 9 are 699 k, still larger than Z_RLE. So
 * masks always use Z_RLE, and RGB uses Z_RLE at level 1 and zlib's strategy
 * for filtered data (Z_FILTERED) when the caller asks for level 2 or more. */
static const struct {
    int filter;
    int fast_strategy;  /* levels 0-1 */
    int strategy;       /* levels 2-9 */
} wr_settings[] = {
    [WR_MASK] = {PNG_FILTER_UP, Z_RLE, Z_RLE},
    [WR_RGB] = {PNG_FILTER_SUB, Z_RLE, Z_FILTERED},
    [WR_RGBA] = {PNG_FILTER_SUB, Z_RLE, Z_FILTERED},
};

static void wr_body(png_structp png, png_infop info, png_wr *wr)
{
    png_set_write_fn(png, wr, wr_write, wr_flush);
    png_set_compression_level(png, wr->level);
    png_set_compression_buffer_size(png, 256 * 1024);
    png_set_compression_strategy(png, wr->level <= 1 ? wr_settings[wr->kind].fast_strategy
                                                     : wr_settings[wr->kind].strategy);
    png_set_filter(png, PNG_FILTER_TYPE_BASE, wr_settings[wr->kind].filter);
    if (wr->kind == WR_MASK)
        png_set_IHDR(png, info, wr->width, wr->height, 1, PNG_COLOR_TYPE_GRAY,
                     PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    else
        png_set_IHDR(png, info, wr->width, wr->height, 8,
                     wr->kind == WR_RGB ? PNG_COLOR_TYPE_RGB : PNG_COLOR_TYPE_RGBA,
                     PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    /* RGB from RGBA rows: libpng drops the fourth byte itself, so rows are
     * passed straight from the image without a copy. */
    if (wr->kind == WR_RGB)
        png_set_filler(png, 0, PNG_FILLER_AFTER);
    size_t stride = wr->kind == WR_MASK ? wr->width : (size_t)wr->width * 4;
    for (uint32_t y = 0; y < wr->height; y++) {
        const uint8_t *src = wr->src + (size_t)y * stride;
        if (wr->kind == WR_MASK) {
            wr_pack_row(src, wr->width, wr->row);
            png_write_row(png, wr->row);
        } else {
            png_write_row(png, (png_const_bytep)src);
        }
    }
    png_write_end(png, info);
}

static cnp_status png_wr_run(png_wr *wr)
{
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, wr, wr_error, wr_warning);
    if (!png)
        return CNP_ERR_NOMEM;
    png_infop info = png_create_info_struct(png);
    if (!info) {
        png_destroy_write_struct(&png, NULL);
        return CNP_ERR_NOMEM;
    }
    if (setjmp(png_jmpbuf(png)) == 0)
        wr_body(png, info, wr);
    png_destroy_write_struct(&png, &info);
    return wr->status;
}

static cnp_status png_encode(png_wr *wr, cnp_err *err)
{
    static const char *const what[] = {"mask", "RGB", "RGBA"};
    if (!wr->src || wr->width == 0 || wr->height == 0 || wr->width > 0x7fffffffu ||
        wr->height > 0x7fffffffu || wr->level < 0 || wr->level > 9) {
        cnp_err_set(err, "PNG %s encoder: invalid arguments (%" PRIu32 "x%" PRIu32
                    ", level %d)", what[wr->kind], wr->width, wr->height, wr->level);
        return CNP_ERR_INVALID;
    }
    size_t start = wr->out->len;
    cnp_status result = CNP_OK;
    if (wr->kind == WR_MASK) {
        wr->row = malloc(((size_t)wr->width + 7) / 8);
        if (!wr->row)
            result = CNP_ERR_NOMEM;
    }
    if (result == CNP_OK)
        result = png_wr_run(wr);
    free(wr->row);
    wr->row = NULL;
    if (result != CNP_OK) {
        wr->out->len = start; /* nothing half-written is left behind */
        cnp_err_set(err, "PNG %s encoder (%" PRIu32 "x%" PRIu32 "): %s", what[wr->kind],
                    wr->width, wr->height, wr->msg[0] ? wr->msg : cnp_status_name(result));
    }
    return result;
}

cnp_status img_png_encode_mask(const uint8_t *mask, uint32_t width, uint32_t height,
                               int level, cnp_buf *out, cnp_err *err)
{
    png_wr wr = {.kind = WR_MASK, .src = mask, .width = width, .height = height,
                 .level = level, .out = out};
    return png_encode(&wr, err);
}

cnp_status img_png_encode_rgb(const cnp_image *img, int level, cnp_buf *out, cnp_err *err)
{
    png_wr wr = {.kind = WR_RGB, .src = img->rgba, .width = img->width,
                 .height = img->height, .level = level, .out = out};
    return png_encode(&wr, err);
}

cnp_status img_png_encode_rgba(const cnp_image *img, int level, cnp_buf *out,
                               cnp_err *err)
{
    png_wr wr = {.kind = WR_RGBA, .src = img->rgba, .width = img->width,
                 .height = img->height, .level = level, .out = out};
    return png_encode(&wr, err);
}
