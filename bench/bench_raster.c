/* bench_raster: decode throughput of the raster readers on the same pixels,
 * in one run, median of several repeats: PNG through libpng (canopy's PNG
 * path) against PNG through GDAL (why PNG stays on libpng), and GeoTIFF
 * (uncompressed, deflate, LZW tiled, JPEG), COG and JPEG through GDAL.
 * Prints a table and writes a JSON file.
 *
 *   bench_raster [--image PNG] [--tile N] [--repeats N] [--json FILE]
 *
 * The input (default: a NEON image) is tiled to N x N pixels (default 4096)
 * so that one decode takes long enough to time. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <cpl_vsi.h>
#include <gdal.h>

#include "canopy/raster.h"

#define MAX_REPEATS 32

/* Repeats the source image over an n x n canvas. */
static cnp_image tile_image(const cnp_image *src, uint32_t n)
{
    cnp_image out;
    cnp_err err;
    if (cnp_image_alloc(&out, n, n, &err) != CNP_OK)
        exit(1);
    for (uint32_t y = 0; y < n; y++)
        for (uint32_t x = 0; x < n; x++)
            memcpy(out.rgba + 4 * ((size_t)y * n + x),
                   src->rgba + 4 * ((size_t)(y % src->height) * src->width + x % src->width), 4);
    return out;
}

/* Encodes img with a GDAL driver and options; returns the bytes. */
static cnp_buf encode(const cnp_image *img, const char *driver, const char *const *opts)
{
    cnp_buf out = {0};
    int w = (int)img->width, h = (int)img->height;
    GDALDatasetH mem = GDALCreate(GDALGetDriverByName("MEM"), "", w, h, 3, GDT_Byte, NULL);
    int map[3] = {1, 2, 3};
    if (GDALDatasetRasterIO(mem, GF_Write, 0, 0, w, h, img->rgba, w, h, GDT_Byte, 3, map, 4,
                            4 * (GSpacing)w, 1) != CE_None)
        exit(1);
    GDALDatasetH ds = GDALCreateCopy(GDALGetDriverByName(driver), "/vsimem/bench.out", mem, FALSE,
                                     (char **)opts, NULL, NULL);
    GDALClose(ds);
    GDALClose(mem);
    vsi_l_offset len = 0;
    GByte *bytes = VSIGetMemFileBuffer("/vsimem/bench.out", &len, FALSE);
    cnp_buf_append(&out, bytes, (size_t)len);
    VSIUnlink("/vsimem/bench.out");
    return out;
}

/* PNG through GDAL, for the comparison only (canopy never does this). */
static double gdal_png_decode(const cnp_buf *png, uint32_t n)
{
    VSILFILE *f = VSIFileFromMemBuffer("/vsimem/bench.png", png->data, png->len, FALSE);
    VSIFCloseL(f);
    uint8_t *rgba = malloc((size_t)n * n * 4);
    double t0 = cnp_now();
    GDALDatasetH ds = GDALOpen("/vsimem/bench.png", GA_ReadOnly);
    int map[3] = {1, 2, 3};
    if (!ds || GDALDatasetRasterIO(ds, GF_Read, 0, 0, (int)n, (int)n, rgba, (int)n, (int)n,
                                   GDT_Byte, 3, map, 4, 4 * (GSpacing)n, 1) != CE_None)
        exit(1);
    GDALClose(ds);
    double s = cnp_now() - t0;
    VSIUnlink("/vsimem/bench.png");
    free(rgba);
    return s;
}

int main(int argc, char **argv)
{
    const char *image = CANOPY_SOURCE_DIR "/tests/data/neon/YELL_541000_west.png";
    const char *json = NULL;
    int repeats = 5, tile = 4096, c;
    static const struct option opts[] = {{"image", required_argument, NULL, 'i'},
                                         {"tile", required_argument, NULL, 't'},
                                         {"repeats", required_argument, NULL, 'r'},
                                         {"json", required_argument, NULL, 'j'},
                                         {0, 0, 0, 0}};
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'i': image = optarg; break;
        case 't': tile = atoi(optarg); break;
        case 'r': repeats = atoi(optarg); break;
        case 'j': json = optarg; break;
        default: return 2;
        }
    }
    if (repeats < 1 || repeats > MAX_REPEATS || tile < 64)
        return 2;
    GDALAllRegister();
    cnp_image src, big;
    cnp_err err;
    if (img_png_read_file(image, 0, &src, &err) != CNP_OK) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    big = tile_image(&src, (uint32_t)tile);
    static const char *const none[] = {NULL};
    static const char *const deflate[] = {"COMPRESS=DEFLATE", "TILED=YES", NULL};
    static const char *const lzw[] = {"COMPRESS=LZW", "TILED=YES", NULL};
    static const char *const jpeg[] = {"COMPRESS=JPEG", "TILED=YES", NULL};
    static const char *const cog[] = {"COMPRESS=DEFLATE", NULL};
    static const char *const png_opts[] = {"ZLEVEL=1", NULL};
    struct {
        const char *name, *driver;
        const char *const *opts;
        bool via_gdal_png;
    } cases[] = {
        {"PNG (libpng, canopy)", "PNG", png_opts, false},
        {"PNG (GDAL)", "PNG", png_opts, true},
        {"GeoTIFF uncompressed", "GTiff", none, false},
        {"GeoTIFF deflate tiled", "GTiff", deflate, false},
        {"GeoTIFF LZW tiled", "GTiff", lzw, false},
        {"GeoTIFF JPEG tiled", "GTiff", jpeg, false},
        {"COG deflate", "COG", cog, false},
        {"JPEG", "JPEG", none, false},
    };
    size_t ncases = sizeof cases / sizeof cases[0];
    double mpix = (double)tile * tile / 1e6;
    cJSON *doc = cJSON_CreateObject(), *rows = cJSON_AddArrayToObject(doc, "decoders");
    cJSON_AddNumberToObject(doc, "side", tile);
    cJSON_AddNumberToObject(doc, "repeats", repeats);
    printf("decode of a %dx%d RGB image (%.1f MPix), median of %d\n", tile, tile, mpix, repeats);
    printf("%-24s %10s %10s %10s\n", "reader", "MB", "ms", "MPix/s");
    for (size_t k = 0; k < ncases; k++) {
        cnp_buf data = encode(&big, cases[k].driver, cases[k].opts);
        double t[MAX_REPEATS];
        for (int r = 0; r < repeats; r++) {
            if (cases[k].via_gdal_png) {
                t[r] = gdal_png_decode(&data, (uint32_t)tile);
                continue;
            }
            cnp_image img;
            double t0 = cnp_now();
            if (img_raster_decode(data.data, data.len, cases[k].name, 0, &img, NULL, NULL, &err) !=
                CNP_OK) {
                fprintf(stderr, "%s: %s\n", cases[k].name, err.msg);
                return 1;
            }
            t[r] = cnp_now() - t0;
            cnp_image_free(&img);
        }
        double med = cnp_median(t, repeats);
        printf("%-24s %10.1f %10.1f %10.1f\n", cases[k].name, data.len / 1e6, med * 1e3,
               mpix / med);
        cJSON *row = cJSON_CreateObject();
        cJSON_AddStringToObject(row, "reader", cases[k].name);
        cJSON_AddNumberToObject(row, "bytes", (double)data.len);
        cJSON_AddNumberToObject(row, "median_s", med);
        cJSON_AddNumberToObject(row, "mpix_per_s", mpix / med);
        cJSON_AddItemToArray(rows, row);
        cnp_buf_free(&data);
    }
    if (json) {
        char *text = cJSON_Print(doc);
        FILE *f = fopen(json, "w");
        if (f) {
            fprintf(f, "%s\n", text);
            fclose(f);
        }
        cJSON_free(text);
    }
    cJSON_Delete(doc);
    cnp_image_free(&src);
    cnp_image_free(&big);
    return 0;
}
