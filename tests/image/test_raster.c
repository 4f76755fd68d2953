/* Rasters through GDAL: GeoTIFFs written here with GDAL from the NEON PNGs
 * (UTM CRS and geotransform; striped and tiled; none, deflate, LZW, JPEG and
 * WebP compression; a COG; 16-bit; nodata value; alpha band) decode to the
 * same pixels as the PNG (lossless) or close (lossy), carry their
 * georeferencing, honour nodata, and unusable rasters are refused with a
 * reason. Also: the GeoTIFF mask writer. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cpl_conv.h>
#include <cpl_vsi.h>
#include <gdal.h>
#include <ogr_srs_api.h>

#include "canopy/raster.h"
#include "testutil.h"

static cnp_image g_png; /* OSBS_029 through libpng */
static const double GT[6] = {404000.0, 0.1, 0.0, 3285000.0, 0.0, -0.1};

/* Writes an in-memory GDAL dataset built from g_png to a temporary file
 * with the driver and creation options; returns its bytes. */
static cnp_buf write_raster(const char *driver, const char *const *opts, GDALDataType type,
                            int bands, bool georef, double nodata, bool with_nodata)
{
    cnp_buf out = {0};
    int w = (int)g_png.width, h = (int)g_png.height;
    GDALDatasetH mem = GDALCreate(GDALGetDriverByName("MEM"), "", w, h, bands, type, NULL);
    for (int b = 1; b <= bands; b++) {
        GDALRasterBandH band = GDALGetRasterBand(mem, b);
        int ch = b <= 3 ? b - 1 : 3;
        if (type == GDT_Byte) {
            CHECK(GDALRasterIO(band, GF_Write, 0, 0, w, h, g_png.rgba + ch, w, h, GDT_Byte, 4,
                               4 * w) == CE_None);
        } else {
            /* 12-bit samples: v * 16 (declared NBITS=12 below when asked). */
            uint16_t *v = malloc((size_t)w * h * sizeof *v);
            for (size_t i = 0; i < (size_t)w * h; i++)
                v[i] = (uint16_t)(g_png.rgba[4 * i + ch] * 16);
            CHECK(GDALRasterIO(band, GF_Write, 0, 0, w, h, v, w, h, GDT_UInt16, 0, 0) == CE_None);
            free(v);
        }
        if (with_nodata)
            GDALSetRasterNoDataValue(band, nodata);
        if (bands == 4 && b == 4)
            GDALSetRasterColorInterpretation(band, GCI_AlphaBand);
    }
    if (georef) {
        OGRSpatialReferenceH srs = OSRNewSpatialReference(NULL);
        OSRImportFromEPSG(srs, 32617);
        GDALSetGeoTransform(mem, (double *)GT);
        GDALSetSpatialRef(mem, srs);
        OSRDestroySpatialReference(srs);
    }
    char path[64];
    static int seq;
    snprintf(path, sizeof path, "/vsimem/test-raster-%d", seq++);
    GDALDatasetH ds = GDALCreateCopy(GDALGetDriverByName(driver), path, mem, FALSE,
                                     (char **)opts, NULL, NULL);
    CHECK_MSG(ds != NULL, "%s: %s", driver, CPLGetLastErrorMsg());
    if (ds)
        GDALClose(ds);
    GDALClose(mem);
    vsi_l_offset len = 0;
    GByte *bytes = VSIGetMemFileBuffer(path, &len, FALSE);
    if (bytes)
        cnp_buf_append(&out, bytes, (size_t)len);
    VSIUnlink(path);
    return out;
}

/* Largest absolute difference of the RGB channels against the PNG. */
static int max_diff(const cnp_image *img)
{
    int worst = 0;
    for (size_t i = 0; i < (size_t)img->width * img->height; i++)
        for (int c = 0; c < 3; c++) {
            int d = abs((int)img->rgba[4 * i + c] - (int)g_png.rgba[4 * i + c]);
            if (d > worst)
                worst = d;
        }
    return worst;
}

static double mean_diff(const cnp_image *img)
{
    double sum = 0;
    size_t n = (size_t)img->width * img->height;
    for (size_t i = 0; i < n; i++)
        for (int c = 0; c < 3; c++)
            sum += abs((int)img->rgba[4 * i + c] - (int)g_png.rgba[4 * i + c]);
    return sum / (3.0 * n);
}

static void test_variants(void)
{
    static const char *const none[] = {NULL};
    static const char *const deflate[] = {"COMPRESS=DEFLATE", NULL};
    static const char *const lzw_tiled[] = {"COMPRESS=LZW", "TILED=YES", "BLOCKXSIZE=64",
                                            "BLOCKYSIZE=64", NULL};
    static const char *const jpeg[] = {"COMPRESS=JPEG", "JPEG_QUALITY=95", NULL};
    static const char *const webp[] = {"COMPRESS=WEBP", "WEBP_LOSSLESS=TRUE", "WEBP_LEVEL=100",
                                       NULL};
    static const char *const jpeg_file[] = {"QUALITY=95", NULL};
    static const char *const cog[] = {"COMPRESS=DEFLATE", "BLOCKSIZE=128", NULL};
    struct {
        const char *name, *driver;
        const char *const *opts;
        int tolerance;
    } v[] = {
        {"striped, uncompressed", "GTiff", none, 0},
        {"striped, deflate", "GTiff", deflate, 0},
        {"tiled, LZW", "GTiff", lzw_tiled, 0},
        {"JPEG-compressed", "GTiff", jpeg, 40},
        {"WebP lossless", "GTiff", webp, 0},
        {"COG", "COG", cog, 0},
        {"JPEG file", "JPEG", jpeg_file, 64},
    };
    for (size_t k = 0; k < sizeof v / sizeof v[0]; k++) {
        bool georef = strcmp(v[k].driver, "JPEG") != 0;
        cnp_buf b = write_raster(v[k].driver, v[k].opts, GDT_Byte, 3, georef, 0, false);
        cnp_image img;
        img_georef geo;
        uint64_t nodata = 99;
        cnp_err err;
        cnp_status st = img_raster_decode(b.data, b.len, v[k].name, 0, &img, &geo, &nodata, &err);
        CHECK_MSG(st == CNP_OK, "%s: %s", v[k].name, err.msg);
        if (st == CNP_OK) {
            CHECK(img.width == g_png.width && img.height == g_png.height);
            /* Lossless: identical. Lossy (JPEG at quality 95): close on average,
             * and no sample off by more than the tolerance. */
            int d = max_diff(&img);
            double mean = mean_diff(&img);
            CHECK_MSG(d <= v[k].tolerance && mean <= (v[k].tolerance ? 5.0 : 0.0),
                      "%s: pixels differ by up to %d, %.2f on average", v[k].name, d, mean);
            CHECK_MSG(nodata == 0 && img.rgba[3] == 255, "%s: nodata %llu", v[k].name,
                      (unsigned long long)nodata);
            CHECK_MSG(geo.valid == georef, "%s: georef %d", v[k].name, geo.valid);
            if (georef) {
                CHECK(geo.epsg == 32617 && !geo.geographic && fabs(geo.unit_m - 1.0) < 1e-12);
                for (int i = 0; i < 6; i++)
                    CHECK(geo.gt[i] == GT[i]);
                uint32_t pw, ph;
                CHECK(img_raster_probe(b.data, b.len, "p", &pw, &ph, &err) == CNP_OK &&
                      pw == g_png.width && ph == g_png.height);
            }
        }
        cnp_image_free(&img);
        img_georef_free(&geo);
        cnp_buf_free(&b);
    }
}

/* Map and lon/lat positions against GDAL's and PROJ's own transforms. */
static void test_transform(void)
{
    cnp_buf b = write_raster("GTiff", NULL, GDT_Byte, 3, true, 0, false);
    cnp_image img;
    img_georef geo;
    cnp_err err;
    CHECK(img_raster_decode(b.data, b.len, "t", 0, &img, &geo, NULL, &err) == CNP_OK);
    double px = 123.25, py = 301.5, mx, my;
    img_georef_pixel_to_map(&geo, px, py, &mx, &my);
    CHECK(mx == GT[0] + px * GT[1] + py * GT[2] && my == GT[3] + px * GT[4] + py * GT[5]);
    CHECK(fabs(img_georef_pixel_m(&geo, px, py) - 0.1) < 1e-12);
    OGRSpatialReferenceH utm = OSRNewSpatialReference(NULL), wgs = OSRNewSpatialReference(NULL);
    OSRImportFromEPSG(utm, 32617);
    OSRImportFromEPSG(wgs, 4326);
    OSRSetAxisMappingStrategy(wgs, OAMS_TRADITIONAL_GIS_ORDER);
    OSRSetAxisMappingStrategy(utm, OAMS_TRADITIONAL_GIS_ORDER);
    OGRCoordinateTransformationH ct = OCTNewCoordinateTransformation(utm, wgs);
    double ex = mx, ey = my, lx = mx, ly = my;
    CHECK(OCTTransform(ct, 1, &ex, &ey, NULL));
    CHECK(img_georef_to_lonlat(&geo, 1, &lx, &ly, &err) == CNP_OK);
    CHECK_MSG(fabs(lx - ex) < 1e-12 && fabs(ly - ey) < 1e-12, "%.9f %.9f vs %.9f %.9f", lx, ly,
              ex, ey);
    CHECK(lx > -82.1 && lx < -81.9 && ly > 29.6 && ly < 29.8); /* north-central Florida */
    OCTDestroyCoordinateTransformation(ct);
    OSRDestroySpatialReference(utm);
    OSRDestroySpatialReference(wgs);
    cnp_image_free(&img);
    img_georef_free(&geo);
    cnp_buf_free(&b);
}

static void test_nodata_and_16bit(void)
{
    cnp_err err;
    cnp_image img;
    img_georef geo;
    uint64_t nodata = 0;
    /* Blank a block of the source to 0,0,0 and declare nodata 0. */
    cnp_image saved = g_png;
    cnp_image copy;
    CHECK(cnp_image_alloc(&copy, g_png.width, g_png.height, &err) == CNP_OK);
    memcpy(copy.rgba, g_png.rgba, (size_t)g_png.width * g_png.height * 4);
    size_t blank = 0;
    for (uint32_t y = 0; y < 100; y++)
        for (uint32_t x = 0; x < 150; x++) {
            memset(copy.rgba + 4 * ((size_t)y * copy.width + x), 0, 3);
            blank++;
        }
    size_t black = 0; /* pixels black in the source anyway */
    for (size_t i = 0; i < (size_t)copy.width * copy.height; i++)
        black += !copy.rgba[4 * i] && !copy.rgba[4 * i + 1] && !copy.rgba[4 * i + 2];
    g_png = copy;
    static const char *const deflate[] = {"COMPRESS=DEFLATE", NULL};
    cnp_buf b = write_raster("GTiff", deflate, GDT_Byte, 3, true, 0, true);
    CHECK(img_raster_decode(b.data, b.len, "nodata", 0, &img, &geo, &nodata, &err) == CNP_OK);
    CHECK_MSG(nodata == black && black >= blank, "nodata %llu, black %zu",
              (unsigned long long)nodata, black);
    CHECK(img.rgba[3] == 0 && img.rgba[4 * (200 * (size_t)img.width + 200) + 3] == 255);
    cnp_image_free(&img);
    img_georef_free(&geo);
    cnp_buf_free(&b);

    /* An alpha band: alpha 0 where the source's alpha is 0. */
    for (uint32_t y = 0; y < 100; y++)
        for (uint32_t x = 0; x < 150; x++)
            copy.rgba[4 * ((size_t)y * copy.width + x) + 3] = 0;
    b = write_raster("GTiff", deflate, GDT_Byte, 4, true, 0, false);
    CHECK(img_raster_decode(b.data, b.len, "alpha", 0, &img, &geo, &nodata, &err) == CNP_OK);
    CHECK_MSG(nodata == blank, "alpha band: nodata %llu, want %zu", (unsigned long long)nodata,
              blank);
    cnp_image_free(&img);
    img_georef_free(&geo);
    cnp_buf_free(&b);
    g_png = saved;
    cnp_image_free(&copy);

    /* 16-bit: 12-bit data (v * 16) without NBITS is scaled by its maximum;
     * with NBITS=12 by 4095. */
    static const char *const nbits[] = {"NBITS=12", NULL};
    b = write_raster("GTiff", NULL, GDT_UInt16, 3, true, 0, false);
    CHECK(img_raster_decode(b.data, b.len, "u16", 0, &img, &geo, NULL, &err) == CNP_OK);
    unsigned max8 = 0;
    for (size_t i = 0; i < (size_t)g_png.width * g_png.height; i++)
        for (int c = 0; c < 3; c++)
            if (g_png.rgba[4 * i + c] > max8)
                max8 = g_png.rgba[4 * i + c];
    unsigned max16 = max8 * 16;
    size_t bad = 0;
    for (size_t i = 0; i < (size_t)g_png.width * g_png.height; i++)
        for (int c = 0; c < 3; c++) {
            unsigned v = g_png.rgba[4 * i + c] * 16u;
            bad += img.rgba[4 * i + c] != (uint8_t)((v * 255u + max16 / 2) / max16);
        }
    CHECK_MSG(bad == 0, "16-bit by its maximum: %zu samples differ", bad);
    cnp_image_free(&img);
    img_georef_free(&geo);
    cnp_buf_free(&b);
    b = write_raster("GTiff", nbits, GDT_UInt16, 3, true, 0, false);
    CHECK(img_raster_decode(b.data, b.len, "u12", 0, &img, &geo, NULL, &err) == CNP_OK);
    bad = 0;
    for (size_t i = 0; i < (size_t)g_png.width * g_png.height; i++)
        for (int c = 0; c < 3; c++) {
            unsigned v = g_png.rgba[4 * i + c] * 16u;
            bad += img.rgba[4 * i + c] != (uint8_t)((v * 255u + 4095 / 2) / 4095);
        }
    CHECK_MSG(bad == 0, "NBITS=12: %zu samples differ", bad);
    cnp_image_free(&img);
    img_georef_free(&geo);
    cnp_buf_free(&b);
}

static void test_refused(void)
{
    cnp_err err;
    cnp_image img;
    img_georef geo;
    /* One float band: an elevation model. */
    cnp_buf b = write_raster("GTiff", NULL, GDT_Float32, 1, true, 0, false);
    CHECK(img_raster_decode(b.data, b.len, "dem.tif", 0, &img, &geo, NULL, &err) ==
          CNP_ERR_FORMAT);
    CHECK_MSG(strstr(err.msg, "dem.tif") && strstr(err.msg, "1 band of Float32") &&
                  strstr(err.msg, "elevation"), "%s", err.msg);
    cnp_buf_free(&b);
    b = write_raster("GTiff", NULL, GDT_Byte, 2, true, 0, false);
    CHECK(img_raster_decode(b.data, b.len, "two.tif", 0, &img, &geo, NULL, &err) ==
          CNP_ERR_FORMAT);
    CHECK_MSG(strstr(err.msg, "2 bands"), "%s", err.msg);
    cnp_buf_free(&b);
    b = write_raster("GTiff", NULL, GDT_Float32, 3, true, 0, false);
    CHECK(img_raster_decode(b.data, b.len, "f.tif", 0, &img, &geo, NULL, &err) == CNP_ERR_FORMAT);
    CHECK_MSG(strstr(err.msg, "floating point"), "%s", err.msg);
    /* Over the pixel limit: refused before its pixels are read. */
    cnp_buf_free(&b);
    b = write_raster("GTiff", NULL, GDT_Byte, 3, true, 0, false);
    CHECK(img_raster_decode(b.data, b.len, "big.tif", 1000, &img, &geo, NULL, &err) ==
          CNP_ERR_LIMIT);
    CHECK(strstr(err.msg, "max_pixels") != NULL);
    /* Truncated TIFF and garbage: a format error naming the input. */
    CHECK(img_raster_decode(b.data, b.len / 3, "cut.tif", 0, &img, &geo, NULL, &err) ==
          CNP_ERR_FORMAT);
    CHECK_MSG(strstr(err.msg, "cut.tif"), "%s", err.msg);
    CHECK(img_raster_decode("II*\0garbage!", 12, "junk.tif", 0, &img, &geo, NULL, &err) ==
          CNP_ERR_FORMAT);
    CHECK(strstr(err.msg, "junk.tif") != NULL);
    cnp_buf_free(&b);
    CHECK(img_raster_sniff("\x89PNG\r\n\x1a\n", 8) && !strcmp(img_raster_sniff("MM\0*", 4), "tiff") &&
          !strcmp(img_raster_sniff("\xff\xd8\xff\xe0", 4), "jpeg") && !img_raster_sniff("GIF89a", 6));
}

static void test_mask_geotiff(void)
{
    cnp_buf b = write_raster("GTiff", NULL, GDT_Byte, 3, true, 0, false);
    cnp_image img;
    img_georef geo;
    cnp_err err;
    CHECK(img_raster_decode(b.data, b.len, "m", 0, &img, &geo, NULL, &err) == CNP_OK);
    size_t n = (size_t)img.width * img.height;
    uint8_t *mask = malloc(n);
    for (size_t i = 0; i < n; i++)
        mask[i] = img.rgba[4 * i + 1] > 120 ? 255 : 0;
    cnp_buf tif = {0};
    CHECK(img_mask_encode_geotiff(mask, img.width, img.height, &geo, &tif, &err) == CNP_OK);
    VSILFILE *f = VSIFileFromMemBuffer("/vsimem/mask-check.tif", tif.data, tif.len, FALSE);
    VSIFCloseL(f);
    GDALDatasetH ds = GDALOpen("/vsimem/mask-check.tif", GA_ReadOnly);
    CHECK(ds != NULL);
    if (ds) {
        double gt[6];
        CHECK(GDALGetRasterCount(ds) == 1 && GDALGetGeoTransform(ds, gt) == CE_None);
        for (int i = 0; i < 6; i++)
            CHECK(gt[i] == GT[i]);
        const char *code = OSRGetAuthorityCode(GDALGetSpatialRef(ds), NULL);
        CHECK(code && strcmp(code, "32617") == 0);
        const char *comp = GDALGetMetadataItem(ds, "COMPRESSION", "IMAGE_STRUCTURE");
        CHECK(comp && strcmp(comp, "DEFLATE") == 0);
        int bx, by;
        GDALGetBlockSize(GDALGetRasterBand(ds, 1), &bx, &by);
        CHECK(bx == 256 && by == 256);
        uint8_t *back = malloc(n);
        CHECK(GDALRasterIO(GDALGetRasterBand(ds, 1), GF_Read, 0, 0, (int)img.width,
                           (int)img.height, back, (int)img.width, (int)img.height, GDT_Byte, 0,
                           0) == CE_None);
        CHECK(memcmp(back, mask, n) == 0);
        free(back);
        GDALClose(ds);
    }
    VSIUnlink("/vsimem/mask-check.tif");
    free(mask);
    cnp_buf_free(&tif);
    cnp_image_free(&img);
    img_georef_free(&geo);
    cnp_buf_free(&b);
}

/* A grey raster (one band; grey and alpha; 16-bit grey) decodes to its
 * grey in R, G and B; a text file and a VRT in memory are refused with
 * their reasons; "vrt" is sniffed. */
static void test_grey_and_refusals(void)
{
    cnp_err err;
    cnp_image img;
    img_georef geo;
    static const struct {
        const char *driver;
        GDALDataType type;
        int bands;
    } v[] = {{"GTiff", GDT_Byte, 1}, {"GTiff", GDT_UInt16, 1}, {"JPEG", GDT_Byte, 1}};
    for (size_t k = 0; k < sizeof v / sizeof v[0]; k++) {
        cnp_buf b = write_raster(v[k].driver, NULL, v[k].type, v[k].bands, true, 0, false);
        cnp_status st = img_raster_decode(b.data, b.len, "grey", 0, &img, &geo, NULL, &err);
        CHECK(st == CNP_OK, "%s %d-band %s: %s", v[k].driver, v[k].bands,
              GDALGetDataTypeName(v[k].type), st == CNP_OK ? "" : err.msg);
        int bad = 0, off = 0;
        for (size_t i = 0; st == CNP_OK && i < (size_t)img.width * img.height; i++) {
            const uint8_t *p = img.rgba + 4 * i;
            bad += p[1] != p[0] || p[2] != p[0] || p[3] != 255;
            /* Band 1 was R (16-bit: R * 16, scaled back by its maximum). */
            off += abs((int)p[0] - (int)g_png.rgba[4 * i]) > (v[k].driver[0] == 'J' ? 40 : 1);
        }
        CHECK(bad == 0 && off < 50, "%s: %d pixels not grey, %d far from R", v[k].driver, bad,
              off);
        cnp_image_free(&img);
        img_georef_free(&geo);
        cnp_buf_free(&b);
    }
    /* Grey and alpha: two bands, the second alpha (0 in the first row). */
    static const char *const ga_opts[] = {"ALPHA=YES", NULL};
    GDALDatasetH ds = GDALCreate(GDALGetDriverByName("GTiff"), "/vsimem/ga.tif", 8, 4, 2,
                                 GDT_Byte, (char **)ga_opts);
    uint8_t px[2][32];
    for (int i = 0; i < 32; i++) {
        px[0][i] = (uint8_t)(i * 7);
        px[1][i] = i < 8 ? 0 : 255;
    }
    for (int band = 1; band <= 2; band++)
        CHECK(GDALRasterIO(GDALGetRasterBand(ds, band), GF_Write, 0, 0, 8, 4, px[band - 1], 8, 4,
                           GDT_Byte, 0, 0) == CE_None);
    GDALClose(ds);
    vsi_l_offset len = 0;
    GByte *bytes = VSIGetMemFileBuffer("/vsimem/ga.tif", &len, FALSE);
    uint64_t nodata = 0;
    CHECK(img_raster_decode(bytes, (size_t)len, "ga.tif", 0, &img, &geo, &nodata, &err) ==
          CNP_OK);
    int bad = 0;
    for (int i = 0; img.rgba && i < 32; i++)
        bad += img.rgba[4 * i] != px[0][i] || img.rgba[4 * i + 2] != px[0][i] ||
               img.rgba[4 * i + 3] != (i < 8 ? 0 : 255);
    CHECK(img.rgba && bad == 0 && nodata == 8, "grey + alpha: %d pixels wrong, %llu nodata",
          bad, (unsigned long long)nodata);
    cnp_image_free(&img);
    img_georef_free(&geo);
    VSIUnlink("/vsimem/ga.tif");
    static const char text[] = "image_path,xmin,ymin\nOSBS_029.png,1,2\n";
    CHECK(img_raster_decode(text, sizeof text - 1, "notes.tif", 0, &img, &geo, NULL, &err) ==
          CNP_ERR_FORMAT);
    CHECK(strstr(err.msg, "notes.tif: not a raster canopy can read") &&
              strstr(err.msg, "it holds text") && !strstr(err.msg, "PNG file"),
          "%s", err.msg);
    /* A .png name keeps libpng's own reason. */
    CHECK(img_raster_decode(text, sizeof text - 1, "x.png", 0, &img, &geo, NULL, &err) ==
          CNP_ERR_FORMAT);
    CHECK(strstr(err.msg, "not a PNG file"), "%s", err.msg);
    static const char vrt[] = "\n  <VRTDataset rasterXSize=\"4\" rasterYSize=\"4\">";
    CHECK(img_raster_sniff(vrt, sizeof vrt - 1) && !strcmp(img_raster_sniff(vrt, sizeof vrt - 1),
                                                           "vrt"));
    CHECK(img_raster_decode(vrt, sizeof vrt - 1, "m.vrt", 0, &img, &geo, NULL, &err) ==
          CNP_ERR_FORMAT);
    CHECK(strstr(err.msg, "a VRT is read only from a local file"), "%s", err.msg);
}

/* The GeoTIFF mask: IMG_MASK_NODATA kept and declared NoData. */
static void test_mask_nodata(void)
{
    uint8_t mask[64 * 64];
    for (int i = 0; i < 64 * 64; i++)
        mask[i] = i < 64 ? IMG_MASK_NODATA : (i & 1) ? 200 : 0;
    cnp_buf tif = {0};
    cnp_err err;
    CHECK(img_mask_encode_geotiff(mask, 64, 64, NULL, &tif, &err) == CNP_OK);
    VSILFILE *f = VSIFileFromMemBuffer("/vsimem/mask-nd.tif", tif.data, tif.len, FALSE);
    VSIFCloseL(f);
    GDALDatasetH ds = GDALOpen("/vsimem/mask-nd.tif", GA_ReadOnly);
    CHECK_FATAL(ds != NULL);
    int has = 0;
    CHECK(GDALGetRasterNoDataValue(GDALGetRasterBand(ds, 1), &has) == IMG_MASK_NODATA && has);
    uint8_t back[64 * 64];
    CHECK(GDALRasterIO(GDALGetRasterBand(ds, 1), GF_Read, 0, 0, 64, 64, back, 64, 64, GDT_Byte,
                       0, 0) == CE_None);
    int bad = 0;
    for (int i = 0; i < 64 * 64; i++)
        bad += back[i] != (i < 64 ? IMG_MASK_NODATA : (i & 1) ? 255 : 0);
    CHECK(bad == 0, "%d mask pixels differ", bad);
    GDALClose(ds);
    VSIUnlink("/vsimem/mask-nd.tif");
    cnp_buf_free(&tif);
}

int main(void)
{
    cnp_err err;
    GDALAllRegister();
    if (img_png_read_file(CANOPY_NEON_DIR "/OSBS_029.png", 0, &g_png, &err) != CNP_OK) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    test_variants();
    test_transform();
    test_nodata_and_16bit();
    test_refused();
    test_mask_geotiff();
    test_grey_and_refusals();
    test_mask_nodata();
    cnp_image_free(&g_png);
    return TEST_RESULT();
}
