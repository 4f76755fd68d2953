/* PNG decoding and encoding: every colour type, bit depth and interlace
 * written with libpng's own writer from known samples, decoded with
 * img_png_decode and compared pixel by pixel with RGBA8 values computed here
 * independently; encoder round trips; the NEON images against libpng's
 * simplified API; and every error path (empty, garbage, truncated, CRC,
 * zlib, decompression bomb, missing file). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <png.h>
#include <zlib.h>

#include "canopy/image.h"
#include "testutil.h"

static uint32_t rng_state = 0x12345678u;
static uint32_t rnd(void)
{
    /* xorshift32: deterministic, so failures reproduce. */
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 17;
    rng_state ^= rng_state << 5;
    return rng_state;
}

/* ------------------------------------------------ writing test PNGs */

static void buf_write(png_structp png, png_bytep data, size_t n)
{
    cnp_buf *b = png_get_io_ptr(png);
    if (cnp_buf_append(b, data, n) != CNP_OK)
        png_error(png, "oom");
}
static void buf_flush(png_structp png) { (void)png; }

typedef struct spec {
    int color_type;
    int depth;
    int interlace;
    uint32_t w, h;
    int palette_size; /* palette images */
    int num_trans;    /* palette: entries in tRNS; gray/RGB: 1 = tRNS present */
} spec;

static int channels_of(int color_type)
{
    switch (color_type) {
    case PNG_COLOR_TYPE_GRAY: return 1;
    case PNG_COLOR_TYPE_GRAY_ALPHA: return 2;
    case PNG_COLOR_TYPE_RGB: return 3;
    case PNG_COLOR_TYPE_RGB_ALPHA: return 4;
    default: return 1; /* palette index */
    }
}

/* Packs samples (one uint16 each) into a PNG row: big-endian 16-bit, or
 * several sub-byte samples per byte, most significant bits first. */
static void pack_row(const uint16_t *s, size_t n, int depth, uint8_t *dst)
{
    if (depth == 16) {
        for (size_t i = 0; i < n; i++) {
            dst[2 * i] = (uint8_t)(s[i] >> 8);
            dst[2 * i + 1] = (uint8_t)s[i];
        }
    } else if (depth == 8) {
        for (size_t i = 0; i < n; i++)
            dst[i] = (uint8_t)s[i];
    } else {
        memset(dst, 0, (n * (size_t)depth + 7) / 8);
        int per = 8 / depth;
        for (size_t i = 0; i < n; i++)
            dst[i / per] |= (uint8_t)(s[i] << (8 - depth * (int)(i % per + 1)));
    }
}

/* Writes a PNG with libpng from raw samples (w*h*channels uint16). */
static int write_png(const spec *sp, const uint16_t *samples, const png_color *pal,
                     const uint8_t *pal_trans, const png_color_16 *trans, cnp_buf *out)
{
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    int ch = channels_of(sp->color_type);
    size_t nsamp = (size_t)sp->w * ch;
    uint8_t *row = calloc(nsamp * 2 + 1, 1);
    if (setjmp(png_jmpbuf(png))) {
        free(row);
        png_destroy_write_struct(&png, &info);
        return -1;
    }
    png_set_write_fn(png, out, buf_write, buf_flush);
    png_set_check_for_invalid_index(png, 0);
    png_set_IHDR(png, info, sp->w, sp->h, sp->depth, sp->color_type, sp->interlace,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    if (sp->color_type == PNG_COLOR_TYPE_PALETTE)
        png_set_PLTE(png, info, pal, sp->palette_size);
    if (sp->num_trans > 0) {
        if (sp->color_type == PNG_COLOR_TYPE_PALETTE)
            png_set_tRNS(png, info, pal_trans, sp->num_trans, NULL);
        else
            png_set_tRNS(png, info, NULL, 0, trans);
    }
    png_write_info(png, info);
    int passes = png_set_interlace_handling(png);
    for (int p = 0; p < passes; p++)
        for (uint32_t y = 0; y < sp->h; y++) {
            pack_row(samples + (size_t)y * nsamp, nsamp, sp->depth, row);
            png_write_row(png, row);
        }
    png_write_end(png, info);
    png_destroy_write_struct(&png, &info);
    free(row);
    return 0;
}

static uint8_t to8(uint32_t v, int depth)
{
    if (depth == 16)
        return (uint8_t)((v * 255u + 32767u) / 65535u);
    return (uint8_t)(v * 255u / ((1u << depth) - 1u));
}

/* Generates samples, writes the PNG, decodes it and compares every pixel
 * with the RGBA8 value expected from the samples. */
static void check_format(const spec *sp)
{
    int ch = channels_of(sp->color_type);
    uint32_t maxv = (1u << sp->depth) - 1u;
    size_t n = (size_t)sp->w * sp->h;
    uint16_t *s = malloc(n * ch * sizeof *s);
    uint8_t *want = malloc(n * 4);
    png_color pal[256];
    uint8_t pal_trans[256];
    png_color_16 trans = {0};

    for (int i = 0; i < 256; i++) {
        pal[i].red = (uint8_t)rnd();
        pal[i].green = (uint8_t)rnd();
        pal[i].blue = (uint8_t)rnd();
        pal_trans[i] = (uint8_t)rnd();
    }
    for (size_t i = 0; i < n * ch; i++) {
        uint32_t v = rnd();
        s[i] = (uint16_t)(sp->color_type == PNG_COLOR_TYPE_PALETTE
                              ? v % (uint32_t)sp->palette_size
                              : (sp->depth == 16 ? v & 0xffffu : v & maxv));
    }
    /* Extremes always appear; transparent colour = pixel 0, repeated. */
    if (sp->color_type != PNG_COLOR_TYPE_PALETTE && n * ch >= 2) {
        s[0] = 0;
        s[1] = (uint16_t)(sp->depth == 16 ? 0xffff : maxv);
    }
    if (sp->num_trans > 0 && sp->color_type != PNG_COLOR_TYPE_PALETTE) {
        trans.gray = s[0];
        trans.red = s[0];
        trans.green = ch >= 3 ? s[1] : 0;
        trans.blue = ch >= 3 ? s[2] : 0;
        for (size_t p = 3; p < n; p += 5) /* more transparent pixels */
            memcpy(s + p * ch, s, ch * sizeof *s);
        /* and near misses that must stay opaque */
        if (ch == 3 && n > 2) {
            s[2 * 3 + 0] = trans.red;
            s[2 * 3 + 1] = trans.green;
            s[2 * 3 + 2] = (uint16_t)(trans.blue ^ 1);
        }
    }
    for (size_t p = 0; p < n; p++) {
        const uint16_t *v = s + p * ch;
        uint8_t *o = want + p * 4;
        switch (sp->color_type) {
        case PNG_COLOR_TYPE_GRAY:
            o[0] = o[1] = o[2] = to8(v[0], sp->depth);
            o[3] = (sp->num_trans > 0 && v[0] == trans.gray) ? 0 : 255;
            break;
        case PNG_COLOR_TYPE_GRAY_ALPHA:
            o[0] = o[1] = o[2] = to8(v[0], sp->depth);
            o[3] = to8(v[1], sp->depth);
            break;
        case PNG_COLOR_TYPE_RGB:
            for (int k = 0; k < 3; k++)
                o[k] = to8(v[k], sp->depth);
            o[3] = (sp->num_trans > 0 && v[0] == trans.red && v[1] == trans.green &&
                    v[2] == trans.blue) ? 0 : 255;
            break;
        case PNG_COLOR_TYPE_RGB_ALPHA:
            for (int k = 0; k < 4; k++)
                o[k] = to8(v[k], sp->depth);
            break;
        case PNG_COLOR_TYPE_PALETTE:
            o[0] = pal[v[0]].red;
            o[1] = pal[v[0]].green;
            o[2] = pal[v[0]].blue;
            o[3] = v[0] < sp->num_trans ? pal_trans[v[0]] : 255;
            break;
        }
    }

    char name[128];
    snprintf(name, sizeof name, "type%d-depth%d-%s-%ux%u-trns%d", sp->color_type, sp->depth,
             sp->interlace ? "adam7" : "plain", sp->w, sp->h, sp->num_trans);
    cnp_buf png = {0};
    CHECK_MSG(write_png(sp, s, pal, pal_trans, &trans, &png) == 0, "%s: writing failed", name);
    cnp_image img;
    cnp_err err = {{0}};
    cnp_status st = img_png_decode(png.data, png.len, name, 0, &img, &err);
    CHECK_MSG(st == CNP_OK, "%s: %s", name, err.msg);
    if (st == CNP_OK) {
        CHECK_MSG(img.width == sp->w && img.height == sp->h, "%s: size %ux%u", name, img.width,
                  img.height);
        size_t bad = 0, first = 0;
        for (size_t i = 0; i < n * 4; i++)
            if (img.rgba[i] != want[i] && bad++ == 0)
                first = i;
        CHECK_MSG(bad == 0, "%s: %zu bytes differ, first at pixel %zu channel %zu: got %u want %u",
                  name, bad, first / 4, first % 4, img.rgba[first], want[first]);
        uint32_t w = 0, h = 0;
        CHECK_MSG(img_png_probe(png.data, png.len, name, &w, &h, &err) == CNP_OK &&
                      w == sp->w && h == sp->h, "%s: probe", name);
    }
    cnp_image_free(&img);
    cnp_buf_free(&png);
    free(s);
    free(want);
}

static void test_all_formats(void)
{
    static const struct { int type; int depths[5]; } kinds[] = {
        {PNG_COLOR_TYPE_GRAY, {1, 2, 4, 8, 16}},
        {PNG_COLOR_TYPE_GRAY_ALPHA, {8, 16}},
        {PNG_COLOR_TYPE_RGB, {8, 16}},
        {PNG_COLOR_TYPE_RGB_ALPHA, {8, 16}},
        {PNG_COLOR_TYPE_PALETTE, {1, 2, 4, 8}},
    };
    static const uint32_t sizes[][2] = {{1, 1}, {3, 7}, {37, 23}, {64, 9}};
    int count = 0;
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++)
        for (int d = 0; d < 5 && kinds[k].depths[d]; d++)
            for (int il = 0; il < 2; il++)
                for (size_t z = 0; z < sizeof sizes / sizeof sizes[0]; z++)
                    for (int t = 0; t < 2; t++) {
                        int type = kinds[k].type, depth = kinds[k].depths[d];
                        spec sp = {.color_type = type, .depth = depth,
                                   .interlace = il ? PNG_INTERLACE_ADAM7 : PNG_INTERLACE_NONE,
                                   .w = sizes[z][0], .h = sizes[z][1]};
                        if (t && (type & PNG_COLOR_MASK_ALPHA))
                            continue; /* tRNS is not allowed with an alpha channel */
                        if (type == PNG_COLOR_TYPE_PALETTE) {
                            sp.palette_size = depth == 8 ? 200 : 1 << depth;
                            sp.num_trans = t ? (sp.palette_size + 1) / 2 : 0;
                        } else {
                            sp.num_trans = t;
                        }
                        check_format(&sp);
                        count++;
                    }
    printf("formats: %d colour type/depth/interlace/size/tRNS combinations decoded\n", count);
}

/* All 65536 16-bit gray values: the rounding promised by image.h. */
static void test_16bit_rounding(void)
{
    spec sp = {.color_type = PNG_COLOR_TYPE_GRAY, .depth = 16, .w = 256, .h = 256};
    uint16_t *s = malloc(65536 * sizeof *s);
    for (uint32_t v = 0; v < 65536; v++)
        s[v] = (uint16_t)v;
    cnp_buf png = {0};
    write_png(&sp, s, NULL, NULL, NULL, &png);
    cnp_image img;
    cnp_err err = {{0}};
    CHECK_MSG(img_png_decode(png.data, png.len, "gray16-all", 0, &img, &err) == CNP_OK, "%s",
              err.msg);
    int bad = 0;
    for (uint32_t v = 0; img.rgba && v < 65536; v++) {
        uint8_t want = (uint8_t)((v * 255u + 32767u) / 65535u);
        if (img.rgba[v * 4] != want || img.rgba[v * 4 + 3] != 255)
            if (bad++ < 5)
                fprintf(stderr, "16-bit %u -> %u, want %u\n", v, img.rgba[v * 4], want);
    }
    CHECK_MSG(bad == 0, "%d of 65536 16-bit values rounded wrongly", bad);
    cnp_image_free(&img);
    cnp_buf_free(&png);
    free(s);
}

/* Palette indices beyond the PLTE (allowed by the writer with checks off):
 * decoding must not read outside the palette. libpng maps them to black; the
 * sanitizer build checks the memory accesses. */
static void test_palette_out_of_range(void)
{
    spec sp = {.color_type = PNG_COLOR_TYPE_PALETTE, .depth = 8, .w = 16, .h = 16,
               .palette_size = 4};
    png_color pal[4] = {{10, 20, 30}, {40, 50, 60}, {70, 80, 90}, {100, 110, 120}};
    uint16_t s[256];
    for (int i = 0; i < 256; i++)
        s[i] = (uint16_t)i;
    cnp_buf png = {0};
    int wrote = write_png(&sp, s, pal, NULL, NULL, &png);
    if (wrote != 0) {
        printf("palette out of range: libpng's writer refuses it, nothing to decode\n");
        cnp_buf_free(&png);
        return;
    }
    cnp_image img;
    cnp_err err = {{0}};
    cnp_status st = img_png_decode(png.data, png.len, "badindex.png", 0, &img, &err);
    CHECK_MSG(st == CNP_OK || st == CNP_ERR_FORMAT, "bad palette index: %s", err.msg);
    if (st == CNP_OK) {
        CHECK_MSG(memcmp(img.rgba + 4 * 3, (uint8_t[]){100, 110, 120, 255}, 4) == 0,
                  "valid index 3");
        for (int i = 4; i < 256; i++)
            CHECK_MSG(img.rgba[4 * i + 3] == 255, "index %d alpha", i);
    }
    printf("palette out of range: %s%s%s\n", cnp_status_name(st), st ? ": " : "",
           st ? err.msg : "");
    cnp_image_free(&img);
    cnp_buf_free(&png);
}

/* ------------------------------------------------ encoder round trips */

static void test_roundtrips(void)
{
    static const uint32_t sizes[][2] = {{1, 1}, {7, 3}, {8, 8}, {9, 5}, {1021, 769}};
    static const int levels[] = {0, 1, 6, 9};
    for (size_t z = 0; z < sizeof sizes / sizeof sizes[0]; z++) {
        uint32_t w = sizes[z][0], h = sizes[z][1];
        size_t n = (size_t)w * h;
        int level = levels[z % 4];
        uint8_t *mask = malloc(n);
        for (size_t i = 0; i < n; i++)
            mask[i] = (rnd() % 3 == 0) ? 0 : (uint8_t)(rnd() | 1); /* any non-zero is fg */
        cnp_image src;
        cnp_err err = {{0}};
        CHECK_MSG(cnp_image_alloc(&src, w, h, &err) == CNP_OK, "%s", err.msg);
        for (size_t i = 0; i < n * 4; i++)
            src.rgba[i] = (uint8_t)rnd();

        /* Mask: 1-bit gray, foreground white. Appends after existing bytes. */
        cnp_buf out = {0};
        cnp_buf_append(&out, "xyz", 3);
        CHECK_MSG(img_png_encode_mask(mask, w, h, level, &out, &err) == CNP_OK, "%s", err.msg);
        CHECK_MSG(out.len > 3 + 33 && memcmp(out.data, "xyz", 3) == 0, "mask: prefix kept");
        CHECK_MSG(out.data[3 + 24] == 1 && out.data[3 + 25] == 0, "mask: IHDR depth %u type %u",
                  out.data[3 + 24], out.data[3 + 25]);
        cnp_image img;
        CHECK_MSG(img_png_decode(out.data + 3, out.len - 3, "mask", 0, &img, &err) == CNP_OK, "%s",
                  err.msg);
        size_t bad = 0;
        for (size_t i = 0; img.rgba && i < n; i++) {
            uint8_t v = mask[i] ? 255 : 0;
            const uint8_t *p = img.rgba + 4 * i;
            bad += p[0] != v || p[1] != v || p[2] != v || p[3] != 255;
        }
        CHECK_MSG(img.rgba && bad == 0, "mask %ux%u level %d: %zu pixels differ", w, h, level, bad);
        cnp_image_free(&img);

        /* RGB: alpha dropped, comes back opaque. */
        out.len = 0;
        CHECK_MSG(img_png_encode_rgb(&src, level, &out, &err) == CNP_OK, "%s", err.msg);
        CHECK_MSG(out.data[24] == 8 && out.data[25] == 2, "rgb: IHDR depth/type");
        CHECK_MSG(img_png_decode(out.data, out.len, "rgb", 0, &img, &err) == CNP_OK, "%s", err.msg);
        bad = 0;
        for (size_t i = 0; img.rgba && i < n; i++)
            bad += memcmp(img.rgba + 4 * i, src.rgba + 4 * i, 3) != 0 || img.rgba[4 * i + 3] != 255;
        CHECK_MSG(img.rgba && bad == 0, "rgb %ux%u level %d: %zu pixels differ", w, h, level, bad);
        cnp_image_free(&img);

        /* RGBA: exact. */
        out.len = 0;
        CHECK_MSG(img_png_encode_rgba(&src, level, &out, &err) == CNP_OK, "%s", err.msg);
        CHECK_MSG(out.data[24] == 8 && out.data[25] == 6, "rgba: IHDR depth/type");
        CHECK_MSG(img_png_decode(out.data, out.len, "rgba", 0, &img, &err) == CNP_OK, "%s",
                  err.msg);
        CHECK_MSG(img.rgba && memcmp(img.rgba, src.rgba, n * 4) == 0, "rgba %ux%u differs", w, h);
        cnp_image_free(&img);

        cnp_buf_free(&out);
        cnp_image_free(&src);
        free(mask);
    }

    /* Invalid arguments leave the output untouched. */
    cnp_buf out = {0};
    cnp_err err = {{0}};
    uint8_t m[4] = {0};
    CHECK_MSG(img_png_encode_mask(m, 2, 2, 10, &out, &err) == CNP_ERR_INVALID && out.len == 0,
              "level 10");
    CHECK_MSG(img_png_encode_mask(m, 0, 2, 1, &out, &err) == CNP_ERR_INVALID && out.len == 0,
              "width 0");
    cnp_image empty = {0};
    CHECK_MSG(img_png_encode_rgb(&empty, 1, &out, &err) == CNP_ERR_INVALID && out.len == 0,
              "empty image");
    cnp_buf_free(&out);
}

/* ------------------------------------------------ NEON images */

static uint64_t fnv1a(const uint8_t *p, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

static void test_neon(void)
{
    static const struct { const char *file; uint32_t w, h; } imgs[] = {
        {"OSBS_029.png", 400, 400},
        {"SOAP_061.png", 400, 400},
        {"YELL_541000_west.png", 700, 1035},
    };
    for (size_t i = 0; i < 3; i++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", CANOPY_NEON_DIR, imgs[i].file);

        /* The reference: libpng's simplified API. */
        png_image ref;
        memset(&ref, 0, sizeof ref);
        ref.version = PNG_IMAGE_VERSION;
        CHECK_MSG(png_image_begin_read_from_file(&ref, path), "%s: %s", path, ref.message);
        ref.format = PNG_FORMAT_RGBA;
        uint8_t *want = malloc(PNG_IMAGE_SIZE(ref));
        CHECK_MSG(png_image_finish_read(&ref, NULL, want, 0, NULL), "%s: %s", path, ref.message);

        cnp_image img;
        cnp_err err = {{0}};
        CHECK_MSG(img_png_read_file(path, 50000000, &img, &err) == CNP_OK, "%s", err.msg);
        CHECK_MSG(img.width == imgs[i].w && img.height == imgs[i].h, "%s: %ux%u", path, img.width,
                  img.height);
        CHECK_MSG(ref.width == img.width && ref.height == img.height, "%s: reference size", path);
        size_t bytes = (size_t)img.width * img.height * 4;
        uint64_t got = img.rgba ? fnv1a(img.rgba, bytes) : 0, exp = fnv1a(want, bytes);
        CHECK_MSG(img.rgba && got == exp, "%s: checksum %016" PRIx64 " want %016" PRIx64, path,
                  got, exp);
        printf("%s: %ux%u fnv1a %016" PRIx64 "\n", imgs[i].file, img.width, img.height, got);

        /* From memory, the same pixels. */
        cnp_buf file = {0};
        CHECK_MSG(cnp_file_read(path, 0, &file, &err) == CNP_OK, "%s", err.msg);
        cnp_image mem;
        CHECK_MSG(img_png_decode(file.data, file.len, imgs[i].file, 0, &mem, &err) == CNP_OK, "%s",
                  err.msg);
        CHECK_MSG(mem.rgba && img.rgba && memcmp(mem.rgba, img.rgba, bytes) == 0,
                  "%s: memory decode differs", path);
        /* A max_pixels just below the size refuses it. */
        cnp_image small;
        uint64_t lim = (uint64_t)imgs[i].w * imgs[i].h - 1;
        CHECK_MSG(img_png_decode(file.data, file.len, imgs[i].file, lim, &small, &err) ==
                      CNP_ERR_LIMIT && small.rgba == NULL, "%s: limit %" PRIu64, path, lim);
        CHECK_MSG(img_png_decode(file.data, file.len, imgs[i].file, lim + 1, &small, &err) ==
                      CNP_OK, "%s: exact limit: %s", path, err.msg);
        cnp_image_free(&small);
        cnp_image_free(&mem);
        cnp_buf_free(&file);
        cnp_image_free(&img);
        free(want);
    }
}

/* ------------------------------------------------ errors */

static void expect_error(cnp_status st, cnp_status want, const cnp_err *err, const char *name,
                         const char *reason, const cnp_image *img, const char *what)
{
    CHECK_MSG(st == want, "%s: status %s, want %s (%s)", what, cnp_status_name(st),
              cnp_status_name(want), err->msg);
    CHECK_MSG(strstr(err->msg, name) != NULL, "%s: message does not name the input: %s", what,
              err->msg);
    CHECK_MSG(!reason || strstr(err->msg, reason) != NULL, "%s: message lacks \"%s\": %s", what,
              reason, err->msg);
    CHECK_MSG(img->rgba == NULL && img->width == 0 && img->height == 0, "%s: image not zeroed",
              what);
    printf("  %-28s -> %s: %s\n", what, cnp_status_name(st), err->msg);
}

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* Appends a chunk with a correct CRC. */
static void add_chunk(cnp_buf *b, const char *type, const uint8_t *data, uint32_t len)
{
    uint8_t hdr[8];
    put32(hdr, len);
    memcpy(hdr + 4, type, 4);
    cnp_buf_append(b, hdr, 8);
    cnp_buf_append(b, data, len);
    uLong crc = crc32(0, (const Bytef *)type, 4);
    crc = crc32(crc, data, len);
    uint8_t c[4];
    put32(c, (uint32_t)crc);
    cnp_buf_append(b, c, 4);
}

/* A header claiming w x h RGB with a few bytes of compressed data. */
static void make_bomb(cnp_buf *b, uint32_t w, uint32_t h)
{
    static const uint8_t sig[8] = {137, 80, 78, 71, 13, 10, 26, 10};
    uint8_t ihdr[13] = {0};
    put32(ihdr, w);
    put32(ihdr + 4, h);
    ihdr[8] = 8;
    ihdr[9] = 2;
    cnp_buf_append(b, sig, 8);
    add_chunk(b, "IHDR", ihdr, 13);
    uint8_t zeros[1024] = {0}, z[64];
    uLongf zl = sizeof z;
    compress(z, &zl, zeros, 64);
    add_chunk(b, "IDAT", z, (uint32_t)zl);
    add_chunk(b, "IEND", NULL, 0);
}

/* Offset of the first byte of the first IDAT chunk's data. */
static size_t find_idat(const cnp_buf *b)
{
    for (size_t i = 8; i + 8 < b->len; i++)
        if (memcmp(b->data + i, "IDAT", 4) == 0)
            return i + 4;
    return 0;
}

static void test_errors(void)
{
    cnp_image img;
    cnp_err err;
    char path[1024];
    snprintf(path, sizeof path, "%s/OSBS_029.png", CANOPY_NEON_DIR);
    cnp_buf file = {0};
    CHECK_MSG(cnp_file_read(path, 0, &file, &err) == CNP_OK, "%s", err.msg);

    printf("error messages:\n");
    expect_error(img_png_decode("", 0, "empty.png", 0, &img, &err), CNP_ERR_FORMAT, &err,
                 "empty.png", "empty", &img, "empty buffer");
    expect_error(img_png_decode(NULL, 0, "null.png", 0, &img, &err), CNP_ERR_FORMAT, &err,
                 "null.png", "not a PNG", &img, "NULL buffer");
    uint8_t junk[7] = {0x13, 0x37, 0xc0, 0xff, 0xee, 0x42, 0x99};
    expect_error(img_png_decode(junk, sizeof junk, "junk.png", 0, &img, &err), CNP_ERR_FORMAT,
                 &err, "junk.png", "bad signature", &img, "7 random bytes");
    expect_error(img_png_decode(file.data, 5, "sig5.png", 0, &img, &err), CNP_ERR_FORMAT, &err,
                 "sig5.png", "truncated", &img, "5 bytes of signature");
    expect_error(img_png_decode(file.data, 20, "ihdr20.png", 0, &img, &err), CNP_ERR_FORMAT,
                 &err, "ihdr20.png", "truncated", &img, "cut inside IHDR");
    expect_error(img_png_decode(file.data, file.len / 2, "half.png", 0, &img, &err),
                 CNP_ERR_FORMAT, &err, "half.png", "truncated", &img, "first half of NEON");
    expect_error(img_png_decode(file.data, file.len - 12, "noiend.png", 0, &img, &err),
                 CNP_ERR_FORMAT, &err, "noiend.png", "truncated", &img, "IEND missing");
    uint32_t w, h;
    CHECK_MSG(img_png_probe(file.data, file.len / 2, "half.png", &w, &h, &err) == CNP_OK &&
                  w == 400 && h == 400, "probe of a truncated file still reads the header");

    /* A flipped byte in IDAT: libpng inflates the chunk before it reaches
     * the CRC at its end, so either zlib or the CRC check reports it. */
    size_t idat = find_idat(&file);
    CHECK_MSG(idat > 0, "no IDAT in %s", path);
    uint32_t idat_len = (uint32_t)file.data[idat - 8] << 24 |
                        (uint32_t)file.data[idat - 7] << 16 |
                        (uint32_t)file.data[idat - 6] << 8 | file.data[idat - 5];
    cnp_buf bad = {0};
    cnp_buf_append(&bad, file.data, file.len);
    bad.data[idat + 100] ^= 0x5a;
    expect_error(img_png_decode(bad.data, bad.len, "flip.png", 0, &img, &err), CNP_ERR_FORMAT,
                 &err, "flip.png", "IDAT", &img, "corrupted IDAT byte");
    /* Intact data with a wrong CRC: the CRC check itself. */
    memcpy(bad.data, file.data, file.len);
    bad.data[idat + idat_len] ^= 0x01;
    expect_error(img_png_decode(bad.data, bad.len, "crc.png", 0, &img, &err), CNP_ERR_FORMAT,
                 &err, "crc.png", "CRC error", &img, "IDAT CRC mismatch");
    memcpy(bad.data, file.data, file.len);
    /* Damage early in the deflate stream with the CRC recomputed: zlib has to
     * catch it. */
    bad.data[idat + 2] ^= 0xff;
    uLong crc = crc32(crc32(0, (const Bytef *)"IDAT", 4), bad.data + idat, idat_len);
    put32(bad.data + idat + idat_len, (uint32_t)crc);
    expect_error(img_png_decode(bad.data, bad.len, "zlib.png", 0, &img, &err), CNP_ERR_FORMAT,
                 &err, "zlib.png", "IDAT", &img, "corrupted deflate stream");
    cnp_buf_free(&bad);

    /* Decompression bombs: refused from the header, before any allocation
     * (a 100000x100000 RGBA buffer would be 40 GB and fail as NOMEM). */
    cnp_buf bomb = {0};
    make_bomb(&bomb, 100000, 100000);
    expect_error(img_png_decode(bomb.data, bomb.len, "bomb.png", 50000000, &img, &err),
                 CNP_ERR_LIMIT, &err, "bomb.png", "100000x100000", &img, "bomb 100000x100000");
    CHECK_MSG(strstr(err.msg, "50000000") != NULL, "limit not named: %s", err.msg);
    CHECK_MSG(img_png_probe(bomb.data, bomb.len, "bomb.png", &w, &h, &err) == CNP_OK &&
                  w == 100000 && h == 100000, "probe of the bomb header: %s", err.msg);
    cnp_buf_free(&bomb);
    /* One side alone above the limit: libpng's user limit refuses IHDR. */
    make_bomb(&bomb, 2000000, 1);
    expect_error(img_png_decode(bomb.data, bomb.len, "wide.png", 1000000, &img, &err),
                 CNP_ERR_LIMIT, &err, "wide.png", "limit", &img, "bomb 2000000x1");
    cnp_buf_free(&bomb);
    /* Within the limit but with too little data: a format error. */
    make_bomb(&bomb, 300, 200);
    expect_error(img_png_decode(bomb.data, bomb.len, "short.png", 0, &img, &err),
                 CNP_ERR_FORMAT, &err, "short.png", NULL, &img, "IDAT too short");
    cnp_buf_free(&bomb);

    /* Files. */
    const char *missing = "/nonexistent-dir/no-such-image.png";
    expect_error(img_png_read_file(missing, 0, &img, &err), CNP_ERR_NOTFOUND, &err, missing,
                 NULL, &img, "missing file");
    char tmp[] = "/tmp/canopy-test-png-XXXXXX";
    int fd = mkstemp(tmp);
    CHECK_MSG(fd >= 0, "mkstemp");
    CHECK_MSG(write(fd, file.data, file.len / 2) == (ssize_t)(file.len / 2), "write");
    close(fd);
    expect_error(img_png_read_file(tmp, 0, &img, &err), CNP_ERR_FORMAT, &err, tmp, "truncated",
                 &img, "truncated file");
    fd = open(tmp, O_WRONLY | O_TRUNC);
    close(fd);
    expect_error(img_png_read_file(tmp, 0, &img, &err), CNP_ERR_FORMAT, &err, tmp, "empty",
                 &img, "empty file");
    unlink(tmp);
    expect_error(img_png_read_file("/tmp", 0, &img, &err), CNP_ERR_IO, &err, "/tmp", NULL,
                 &img, "a directory");
    cnp_buf_free(&file);
}

#if defined(__SANITIZE_ADDRESS__)
#define HAVE_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define HAVE_ASAN 1
#endif
#endif

/* The bomb refusal happens before any pixel allocation: in a child limited
 * to its current address space + 256 MiB, a 20000x20000 header (1.6 GB of
 * RGBA) is refused as LIMIT with max_pixels set, and the same header without
 * a limit runs into the rlimit as NOMEM, which shows the rlimit would have
 * caught an early allocation. ASan reserves terabytes of shadow address
 * space, so this runs in the plain build only. */
static void test_bomb_allocation(void)
{
#ifdef HAVE_ASAN
    printf("bomb allocation check: skipped under AddressSanitizer\n");
#else
    cnp_buf bomb = {0};
    make_bomb(&bomb, 20000, 20000);
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        long pages = 0;
        FILE *f = fopen("/proc/self/statm", "r");
        if (!f || fscanf(f, "%ld", &pages) != 1)
            _exit(2);
        fclose(f);
        rlim_t cap = (rlim_t)pages * (rlim_t)sysconf(_SC_PAGESIZE) + ((rlim_t)256 << 20);
        struct rlimit rl = {cap, cap};
        if (setrlimit(RLIMIT_AS, &rl) != 0)
            _exit(2);
        cnp_image img;
        cnp_err err;
        cnp_status limited = img_png_decode(bomb.data, bomb.len, "bomb20k.png", 100000000, &img,
                                            &err);
        cnp_status unlimited = img_png_decode(bomb.data, bomb.len, "bomb20k.png", 0, &img,
                                              &err);
        printf("  bomb 20000x20000 under a 256 MiB rlimit: max_pixels 1e8 -> %s, "
               "no limit -> %s (%s)\n", cnp_status_name(limited), cnp_status_name(unlimited),
               err.msg);
        fflush(stdout);
        _exit(limited == CNP_ERR_LIMIT && unlimited == CNP_ERR_NOMEM ? 0 : 1);
    }
    int wst = 0;
    CHECK_MSG(pid > 0 && waitpid(pid, &wst, 0) == pid && WIFEXITED(wst) && WEXITSTATUS(wst) == 0,
              "bomb allocation child: status %d", wst);
    cnp_buf_free(&bomb);
#endif
}

int main(void)
{
    test_all_formats();
    test_16bit_rounding();
    test_palette_out_of_range();
    test_roundtrips();
    test_neon();
    test_errors();
    test_bomb_allocation();
    return TEST_RESULT();
}
