/* `canopy run` on real GeoTIFFs, written here with GDAL from the NEON PNGs
 * (UTM zone 17N, 0.1 m pixels), through the real executable:
 *  - each tree's map position equals GDAL's pixel-to-map transform of its
 *    pixel position, and its lon/lat PROJ's transform of that;
 *  - trees.geojson is RFC 7946: a FeatureCollection of closed,
 *    counter-clockwise crown polygons in lon/lat with a bbox holding them;
 *  - the mask is a GeoTIFF with the input's geotransform and CRS, nodata
 *    pixels its NoData value;
 *  - nodata is no canopy: canopy_cover is over valid pixels only;
 *  - an elevation model is refused with its reason, a PNG is not
 *    georeferenced and gets no GeoJSON;
 *  - a rotated geotransform is handled (positions, radius_m, box_map, mask);
 *  - processed in windows ([limits] window_pixels), the outputs equal
 *    whole-image processing byte for byte. */
#include <math.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <gdal.h>
#include <ogr_srs_api.h>

#include "canopy/buf.h"
#include "canopy/image.h"
#include "testutil.h"

static const char *g_canopy;
static char g_dir[] = "/tmp/canopy-test-geo-XXXXXX";
static const double GT[6] = {404000.0, 0.1, 0.0, 3285000.0, 0.0, -0.1};
/* 0.1 m pixels rotated by 30 degrees: GDAL's general affine transform. */
static const double GT_ROT[6] = {404000.0, 0.086602540378443865, -0.05, 3285000.0, -0.05,
                                 -0.086602540378443865};
static const double *g_gt = GT; /* of the rasters written and checked now */

static int run(const char *args, const char *log)
{
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "%s %s > %s/%s 2>&1", g_canopy, args, g_dir, log);
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static cJSON *read_json(const char *rel)
{
    char path[1024];
    cnp_buf b = {0};
    snprintf(path, sizeof path, "%s/%s", g_dir, rel);
    if (cnp_file_read(path, 0, &b, NULL) != CNP_OK || cnp_buf_append(&b, "", 1) != CNP_OK) {
        cnp_buf_free(&b);
        return NULL;
    }
    cJSON *doc = cJSON_Parse((const char *)b.data);
    cnp_buf_free(&b);
    return doc;
}

/* Writes in/<name>.tif from a NEON PNG; nodata: a 0,0,0 block declared nodata. */
static void write_geotiff(const char *neon, const char *name, bool nodata, GDALDataType type,
                          int bands)
{
    cnp_image img;
    cnp_err err;
    char path[1200];
    snprintf(path, sizeof path, "%s/%s.png", CANOPY_NEON_DIR, neon);
    CHECK(img_png_read_file(path, 0, &img, &err) == CNP_OK);
    if (nodata)
        for (uint32_t y = 0; y < 120; y++)
            memset(img.rgba + 4 * (size_t)y * img.width, 0, 4 * 160);
    snprintf(path, sizeof path, "%s/in/%s.tif", g_dir, name);
    static const char *const opts[] = {"COMPRESS=DEFLATE", "TILED=YES", NULL};
    GDALDatasetH ds = GDALCreate(GDALGetDriverByName("GTiff"), path, (int)img.width,
                                 (int)img.height, bands, type, (char **)opts);
    CHECK(ds != NULL);
    for (int b = 1; b <= bands; b++) {
        GDALRasterBandH band = GDALGetRasterBand(ds, b);
        CHECK(GDALRasterIO(band, GF_Write, 0, 0, (int)img.width, (int)img.height,
                           img.rgba + (b - 1), (int)img.width, (int)img.height, GDT_Byte, 4,
                           4 * (GSpacing)img.width) == CE_None);
        if (nodata)
            GDALSetRasterNoDataValue(band, 0);
    }
    OGRSpatialReferenceH srs = OSRNewSpatialReference(NULL);
    OSRImportFromEPSG(srs, 32617);
    GDALSetGeoTransform(ds, (double *)g_gt);
    GDALSetSpatialRef(ds, srs);
    OSRDestroySpatialReference(srs);
    GDALClose(ds);
    cnp_image_free(&img);
}

static OGRCoordinateTransformationH utm_to_wgs84(void)
{
    OGRSpatialReferenceH utm = OSRNewSpatialReference(NULL), wgs = OSRNewSpatialReference(NULL);
    OSRImportFromEPSG(utm, 32617);
    OSRImportFromEPSG(wgs, 4326);
    OSRSetAxisMappingStrategy(utm, OAMS_TRADITIONAL_GIS_ORDER);
    OSRSetAxisMappingStrategy(wgs, OAMS_TRADITIONAL_GIS_ORDER);
    OGRCoordinateTransformationH ct = OCTNewCoordinateTransformation(utm, wgs);
    OSRDestroySpatialReference(utm);
    OSRDestroySpatialReference(wgs);
    return ct;
}

static double num(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItem(o, k);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

static void check_trees(const char *stem)
{
    char rel[256];
    snprintf(rel, sizeof rel, "out/%s.trees.json", stem);
    cJSON *doc = read_json(rel);
    CHECK_MSG(doc != NULL, "%s missing", rel);
    if (!doc)
        return;
    CHECK(cJSON_IsTrue(cJSON_GetObjectItem(doc, "georeferenced")));
    CHECK(num(cJSON_GetObjectItem(doc, "crs"), "epsg") == 32617);
    const cJSON *gt = cJSON_GetObjectItem(doc, "geotransform");
    for (int i = 0; i < 6; i++)
        CHECK(cJSON_GetArrayItem(gt, i) && cJSON_GetArrayItem(gt, i)->valuedouble == g_gt[i]);
    OGRCoordinateTransformationH ct = utm_to_wgs84();
    const cJSON *trees = cJSON_GetObjectItem(doc, "trees");
    int n = cJSON_GetArraySize(trees), bad = 0;
    CHECK_MSG(n >= 20, "%s: %d trees", stem, n);
    for (int i = 0; i < n; i++) {
        const cJSON *t = cJSON_GetArrayItem(trees, i);
        double x = num(t, "x"), y = num(t, "y"), mx, my;
        GDALApplyGeoTransform((double *)g_gt, x, y, &mx, &my);
        /* x, y are written to 0.01 px = 1 mm; map to 1 mm. */
        bad += fabs(num(t, "map_x") - mx) > 0.0015 || fabs(num(t, "map_y") - my) > 0.0015;
        double lx = num(t, "map_x"), ly = num(t, "map_y");
        OCTTransform(ct, 1, &lx, &ly, NULL);
        bad += fabs(num(t, "lon") - lx) > 1e-7 || fabs(num(t, "lat") - ly) > 1e-7;
        bad += fabs(num(t, "radius_m") - num(t, "radius") * 0.1) > 0.002;
        bad += num(t, "xmin") > x || num(t, "xmax") < x;
        /* The box in map units spans the box's corners, rotated or not. */
        const cJSON *bm = cJSON_GetObjectItem(t, "box_map");
        double c[4][2] = {{num(t, "xmin"), num(t, "ymin")}, {num(t, "xmax"), num(t, "ymin")},
                          {num(t, "xmax"), num(t, "ymax")}, {num(t, "xmin"), num(t, "ymax")}};
        for (int k = 0; k < 4; k++) {
            double cx, cy;
            GDALApplyGeoTransform((double *)g_gt, c[k][0], c[k][1], &cx, &cy);
            bad += cJSON_GetArraySize(bm) != 4 ||
                   cx < cJSON_GetArrayItem(bm, 0)->valuedouble - 0.002 ||
                   cy < cJSON_GetArrayItem(bm, 1)->valuedouble - 0.002 ||
                   cx > cJSON_GetArrayItem(bm, 2)->valuedouble + 0.002 ||
                   cy > cJSON_GetArrayItem(bm, 3)->valuedouble + 0.002;
        }
    }
    CHECK_MSG(bad == 0, "%s: %d tree values disagree with GDAL/PROJ", stem, bad);
    OCTDestroyCoordinateTransformation(ct);

    /* The GeoJSON: one closed counter-clockwise crown per tree, inside the bbox. */
    snprintf(rel, sizeof rel, "out/%s.trees.geojson", stem);
    cJSON *gj = read_json(rel);
    CHECK_MSG(gj != NULL, "%s missing", rel);
    if (gj) {
        const cJSON *type = cJSON_GetObjectItem(gj, "type");
        CHECK(cJSON_IsString(type) && strcmp(type->valuestring, "FeatureCollection") == 0);
        const cJSON *feats = cJSON_GetObjectItem(gj, "features");
        const cJSON *bbox = cJSON_GetObjectItem(gj, "bbox");
        CHECK(cJSON_GetArraySize(feats) == n && cJSON_GetArraySize(bbox) == 4);
        double bb[4];
        for (int k = 0; k < 4; k++)
            bb[k] = cJSON_GetArrayItem(bbox, k)->valuedouble;
        int badf = 0;
        for (int i = 0; i < n; i++) {
            const cJSON *f = cJSON_GetArrayItem(feats, i);
            const cJSON *g = cJSON_GetObjectItem(f, "geometry");
            badf += strcmp(cJSON_GetObjectItem(f, "type")->valuestring, "Feature") != 0;
            badf += strcmp(cJSON_GetObjectItem(g, "type")->valuestring, "Polygon") != 0;
            const cJSON *ring = cJSON_GetArrayItem(cJSON_GetObjectItem(g, "coordinates"), 0);
            int m = cJSON_GetArraySize(ring);
            double area2 = 0;
            for (int k = 0; k + 1 < m; k++) {
                const cJSON *a = cJSON_GetArrayItem(ring, k), *b = cJSON_GetArrayItem(ring, k + 1);
                double ax = cJSON_GetArrayItem(a, 0)->valuedouble;
                double ay = cJSON_GetArrayItem(a, 1)->valuedouble;
                double bx = cJSON_GetArrayItem(b, 0)->valuedouble;
                double by = cJSON_GetArrayItem(b, 1)->valuedouble;
                area2 += ax * by - bx * ay;
                badf += ax < bb[0] - 1e-9 || ax > bb[2] + 1e-9 || ay < bb[1] - 1e-9 ||
                        ay > bb[3] + 1e-9;
            }
            const cJSON *first = cJSON_GetArrayItem(ring, 0), *last = cJSON_GetArrayItem(ring, m - 1);
            badf += m < 4 || cJSON_GetArrayItem(first, 0)->valuedouble !=
                                 cJSON_GetArrayItem(last, 0)->valuedouble;
            badf += area2 <= 0; /* RFC 7946: exterior rings counter-clockwise */
            badf += !cJSON_IsNumber(cJSON_GetObjectItem(cJSON_GetObjectItem(f, "properties"),
                                                        "radius_m"));
        }
        CHECK_MSG(badf == 0, "%s: %d GeoJSON problems", stem, badf);
    }
    cJSON_Delete(gj);
    cJSON_Delete(doc);
}

static void check_mask_tif(const char *stem, double want_cover)
{
    char path[1200];
    snprintf(path, sizeof path, "%s/out/%s.mask.tif", g_dir, stem);
    GDALDatasetH ds = GDALOpen(path, GA_ReadOnly);
    CHECK_MSG(ds != NULL, "%s missing", path);
    if (!ds)
        return;
    double gt[6];
    CHECK(GDALGetGeoTransform(ds, gt) == CE_None);
    for (int i = 0; i < 6; i++)
        CHECK_MSG(gt[i] == g_gt[i], "%s: geotransform[%d] %.17g, input's %.17g", path, i, gt[i],
                  g_gt[i]);
    const char *code = OSRGetAuthorityCode(GDALGetSpatialRef(ds), NULL);
    CHECK(code && strcmp(code, "32617") == 0);
    if (!isnan(want_cover)) {
        int w = GDALGetRasterXSize(ds), h = GDALGetRasterYSize(ds);
        uint8_t *m = malloc((size_t)w * h);
        CHECK(GDALRasterIO(GDALGetRasterBand(ds, 1), GF_Read, 0, 0, w, h, m, w, h, GDT_Byte, 0,
                           0) == CE_None);
        /* Nodata is the mask's NoData value (1), never canopy (255). */
        size_t fg = 0, block = 0;
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++) {
                bool in_block = y < 120 && x < 160;
                fg += m[(size_t)y * w + x] == 255;
                block += in_block && m[(size_t)y * w + x] != 1;
            }
        int has_nodata = 0;
        CHECK(GDALGetRasterNoDataValue(GDALGetRasterBand(ds, 1), &has_nodata) == 1 &&
              has_nodata);
        CHECK_MSG(block == 0, "%zu nodata pixels are not NoData in the mask", block);
        double cover = (double)fg / ((double)w * h - 120 * 160);
        CHECK_MSG(fabs(cover - want_cover) < 1e-4, "cover %.4f, mask over valid pixels %.4f",
                  want_cover, cover);
        free(m);
    }
    GDALClose(ds);
}

int main(int argc, char **argv)
{
    if (argc < 2 || !mkdtemp(g_dir))
        return 1;
    g_canopy = argv[1];
    GDALAllRegister();
    char path[1200], args[4096];
    snprintf(path, sizeof path, "%s/in", g_dir);
    mkdir(path, 0755);
    write_geotiff("OSBS_029", "osbs", false, GDT_Byte, 3);
    write_geotiff("YELL_541000_west", "yell_nodata", true, GDT_Byte, 3);
    write_geotiff("SOAP_061", "dem", false, GDT_Float32, 1);
    snprintf(args, sizeof args, "cp %s/SOAP_061.png %s/in/soap.png", CANOPY_NEON_DIR, g_dir);
    CHECK(system(args) == 0);
    snprintf(args, sizeof args, "%s/in/notes.txt", g_dir);
    CHECK(cnp_file_write(args, "not a raster\n", 13, NULL) == CNP_OK);

    snprintf(args, sizeof args, "run -i %s/in -o %s/out", g_dir, g_dir);
    int rc = run(args, "run.log");
    cnp_buf log = {0};
    snprintf(path, sizeof path, "%s/run.log", g_dir);
    cnp_file_read(path, 0, &log, NULL);
    cnp_buf_append(&log, "", 1);
    const char *text = (const char *)log.data;
    CHECK_MSG(rc == 3, "exit %d (the DEM fails): %s", rc, text);
    CHECK_MSG(strstr(text, "dem.tif") && strstr(text, "1 band of Float32") &&
                  strstr(text, "skipped 1 file that are not rasters (notes.txt)"),
              "%s", text);
    CHECK(strstr(text, "4 images: 3 ok, 1 failed") != NULL);
    check_trees("osbs");
    check_mask_tif("osbs", NAN);
    check_trees("yell_nodata");
    cJSON *doc = read_json("out/yell_nodata.trees.json");
    double cover = doc ? num(doc, "canopy_cover") : NAN;
    double nodata = doc ? num(doc, "nodata_fraction") : NAN;
    CHECK_MSG(nodata >= 120.0 * 160 / (700.0 * 1035) - 1e-4, "nodata_fraction %.4f", nodata);
    check_mask_tif("yell_nodata", cover);
    /* No tree stands in nodata. */
    const cJSON *trees = cJSON_GetObjectItem(doc, "trees");
    int inside = 0;
    for (int i = 0; i < cJSON_GetArraySize(trees); i++) {
        const cJSON *t = cJSON_GetArrayItem(trees, i);
        inside += num(t, "x") < 160 && num(t, "y") < 120;
    }
    CHECK_MSG(inside == 0, "%d trees in the nodata block", inside);
    cJSON_Delete(doc);

    /* A rotated geotransform is handled, not refused: positions are GDAL's
     * affine transform, radius_m the pixel's side times the radius, each
     * box_map spans the rotated box's corners, the mask keeps the rotation. */
    g_gt = GT_ROT;
    write_geotiff("OSBS_029", "osbs_rot", false, GDT_Byte, 3);
    snprintf(args, sizeof args, "run -i %s/in/osbs_rot.tif -o %s/out", g_dir, g_dir);
    CHECK(run(args, "rot.log") == 0);
    check_trees("osbs_rot");
    check_mask_tif("osbs_rot", NAN);
    g_gt = GT;
    /* A PNG without georeferencing: no GeoJSON, and the JSON says so. */
    doc = read_json("out/soap.trees.json");
    CHECK(doc && cJSON_IsFalse(cJSON_GetObjectItem(doc, "georeferenced")));
    cJSON_Delete(doc);
    struct stat st;
    snprintf(path, sizeof path, "%s/out/soap.trees.geojson", g_dir);
    CHECK(stat(path, &st) != 0);
    snprintf(path, sizeof path, "%s/out/soap.mask.png", g_dir);
    CHECK(stat(path, &st) == 0);
    /* [output] mask_format = png: a PNG mask for a georeferenced input too. */
    snprintf(args, sizeof args, "run --no-detector -i %s/in/osbs.tif -o %s/out-png --set "
             "output.mask_format=png", g_dir, g_dir);
    CHECK(run(args, "png.log") == 0);
    snprintf(path, sizeof path, "%s/out-png/osbs.mask.png", g_dir);
    CHECK(stat(path, &st) == 0);
    cnp_buf_free(&log);

    /* In windows (a window_pixels below the image) the results equal
     * whole-image processing: trees.json, GeoJSON and mask byte for byte
     * (one convolution path, so that both runs compute alike). The whole
     * runs keep their outputs in memory, the windowed ones send every
     * output through a temporary file in the output directory (spill_bytes
     * 1), renamed into place: none may be left behind. */
    static const char *const stems[] = {"osbs", "yell_nodata", "yell_nodata"};
    for (int i = 0; i < 3; i++) {
        /* The third: binarization only (2048-pixel blocks, no overlay). Byte
         * identity is what the OpenCL engine guarantees with direct
         * convolutions (the same tiles either way); the CPU backend's
         * windowed path is held to a tolerance by test_cpu_backend. */
        const char *common = i < 2 ? "--set detector.tile=256 --set detector.conv=direct "
                                     "--set device.backend=opencl"
                                   : "--no-detector";
        snprintf(args, sizeof args, "run -i %s/in/%s.tif -o %s/whole %s --set "
                 "output.spill_bytes=0", g_dir, stems[i], g_dir, common);
        CHECK(run(args, "whole.log") == 0);
        snprintf(args, sizeof args, "run -i %s/in/%s.tif -o %s/windows %s --set "
                 "limits.window_pixels=50000 --set log.level=debug --set output.spill_bytes=1",
                 g_dir, stems[i], g_dir, common);
        CHECK(run(args, "windows.log") == 0);
        cnp_buf wl = {0};
        snprintf(path, sizeof path, "%s/windows.log", g_dir);
        cnp_file_read(path, 0, &wl, NULL);
        cnp_buf_append(&wl, "", 1);
        CHECK(strstr((const char *)wl.data, "in windows, threshold") != NULL,
              "%s: not processed in windows: %s", stems[i], (const char *)wl.data);
        cnp_buf_free(&wl);
        static const char *const suffix[] = {".trees.json", ".trees.geojson", ".mask.tif"};
        for (int k = 0; k < 3; k++) {
            char a[1200], b[1200];
            snprintf(a, sizeof a, "%s/whole/%s%s", g_dir, stems[i], suffix[k]);
            snprintf(b, sizeof b, "%s/windows/%s%s", g_dir, stems[i], suffix[k]);
            cnp_buf ba = {0}, bb = {0};
            CHECK(cnp_file_read(a, 0, &ba, NULL) == CNP_OK &&
                  cnp_file_read(b, 0, &bb, NULL) == CNP_OK);
            CHECK(ba.len > 0 && ba.len == bb.len && memcmp(ba.data, bb.data, ba.len) == 0,
                  "%s%s differs between whole and windowed processing", stems[i], suffix[k]);
            cnp_buf_free(&ba);
            cnp_buf_free(&bb);
        }
        snprintf(args, sizeof args, "ls -A %s/windows | grep -q canopy-spool", g_dir);
        CHECK(system(args) != 0, "a temporary output file was left in the output directory");
    }
    if (!g_failures) {
        snprintf(args, sizeof args, "rm -rf %s", g_dir);
        if (system(args) != 0)
            return 1;
    }
    return TEST_RESULT();
}
