/* `canopy run` and the outputs a GIS or DeepForest user opens, through the
 * real executable on inputs written here by GDAL's own tools from the NEON
 * PNGs (as scripts/demo.sh writes its GeoTIFF):
 *  - [output] vector = geojson,gpkg,csv: a GeoPackage that ogrinfo opens,
 *    one polygon per tree in the raster's CRS (EPSG:32617) with a spatial
 *    index, its score equal to trees.json's; DeepForest's CSV; the
 *    default writes neither;
 *  - the overlay georeferenced (world file and CRS beside it);
 *  - boxes clipped to the raster;
 *  - map coordinates at full precision: a box in EPSG:4326 keeps its height;
 *  - georeferencing from sidecar files (world file + .aux.xml) as gdalinfo
 *    reports it; a VRT mosaic read; a text file named .tif refused as text;
 *  - a grey JPEG and a single-band GeoTIFF processed like a grey PNG;
 *  - a COG with nodata and overviews: a COG mask with NoData and overviews;
 *  - a pixel size far from the model's resolution warned about;
 *  - with a classifier (issue 21; a constant CropModel, every tree "dead"),
 *    the GeoPackage's type and type_score fields equal trees.json's; without
 *    one it has no such fields. */
#include <math.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <gdal.h>
#include <ogr_api.h>
#include <ogr_srs_api.h>

#include "canopy/buf.h"
#include "canopy/image.h"
#include "cli/cropmodel_util.h"
#include "testutil.h"

static const char *g_canopy;
static char g_dir[] = "/tmp/canopy-test-gis-XXXXXX";

static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...)
{
    char cmd[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static char *slurp(const char *rel)
{
    char path[1200];
    cnp_buf b = {0};
    snprintf(path, sizeof path, "%s/%s", g_dir, rel);
    if (cnp_file_read(path, 0, &b, NULL) != CNP_OK || cnp_buf_append(&b, "", 1) != CNP_OK) {
        cnp_buf_free(&b);
        return NULL;
    }
    return (char *)b.data;
}

static cJSON *read_json(const char *rel)
{
    char *text = slurp(rel);
    cJSON *doc = text ? cJSON_Parse(text) : NULL;
    free(text);
    return doc;
}

static bool exists(const char *rel)
{
    char path[1200];
    struct stat st;
    snprintf(path, sizeof path, "%s/%s", g_dir, rel);
    return stat(path, &st) == 0;
}

static double num(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItem(o, k);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

/* The layer "trees" of g_dir/REL.trees.gpkg, opened by GDAL (*ds to close). */
static OGRLayerH open_trees(const char *rel, GDALDatasetH *ds)
{
    char path[1200];
    snprintf(path, sizeof path, "%s/%s.trees.gpkg", g_dir, rel);
    *ds = GDALOpenEx(path, GDAL_OF_VECTOR, NULL, NULL, NULL);
    CHECK_FATAL(*ds != NULL, "%s", path);
    OGRLayerH lyr = GDALDatasetGetLayerByName(*ds, "trees");
    CHECK_FATAL(lyr != NULL, "%s: no layer trees", path);
    return lyr;
}

/* The GeoPackage: ogrinfo opens it; one polygon per tree of trees.json in
 * EPSG:32617, scores equal, each crown around its tree's map position; an
 * R-tree spatial index. */
static void check_gpkg(const char *stem, const cJSON *trees)
{
    int n = cJSON_GetArraySize(trees);
    CHECK(sh("ogrinfo -ro -so %s/out/%s.trees.gpkg trees > %s/ogrinfo.txt 2>&1", g_dir, stem,
             g_dir) == 0, "ogrinfo cannot open %s.trees.gpkg", stem);
    char *info = slurp("ogrinfo.txt"), want[64];
    snprintf(want, sizeof want, "Feature Count: %d\n", n);
    CHECK(info && strstr(info, want) && strstr(info, "Geometry: Polygon"), "ogrinfo: %s",
          info ? info : "");
    free(info);
    char rel[256];
    snprintf(rel, sizeof rel, "out/%s", stem);
    GDALDatasetH ds;
    OGRLayerH lyr = open_trees(rel, &ds);
    const char *code = OSRGetAuthorityCode(OGR_L_GetSpatialRef(lyr), NULL);
    CHECK(code && strcmp(code, "32617") == 0, "layer CRS %s", code ? code : "none");
    CHECK(OGR_L_GetFeatureCount(lyr, TRUE) == n);
    OGRLayerH idx = GDALDatasetExecuteSQL(ds, "SELECT HasSpatialIndex('trees', 'geom')", NULL,
                                          "SQLITE");
    OGRFeatureH f = idx ? OGR_L_GetNextFeature(idx) : NULL;
    CHECK(f && OGR_F_GetFieldAsInteger(f, 0) == 1, "no spatial index");
    OGR_F_Destroy(f);
    if (idx)
        GDALDatasetReleaseResultSet(ds, idx);
    OGR_L_ResetReading(lyr);
    int bad = 0, i = 0;
    while ((f = OGR_L_GetNextFeature(lyr)) != NULL && i < n) {
        const cJSON *t = cJSON_GetArrayItem(trees, i++);
        OGREnvelope e;
        OGR_G_GetEnvelope(OGR_F_GetGeometryRef(f), &e);
        double mx = num(t, "map_x"), my = num(t, "map_y");
        bad += fabs(OGR_F_GetFieldAsDouble(f, OGR_F_GetFieldIndex(f, "score")) - num(t, "score")) >
               1e-4;
        bad += !(e.MinX < mx && mx < e.MaxX && e.MinY < my && my < e.MaxY);
        /* A crown's circle: its extent is twice the radius in metres. */
        bad += fabs((e.MaxX - e.MinX) - 2 * num(t, "radius_m")) > 0.01;
        bad += strcmp(OGR_F_GetFieldAsString(f, OGR_F_GetFieldIndex(f, "label")), "Tree") != 0;
        OGR_F_Destroy(f);
    }
    CHECK(i == n && bad == 0, "%d features read, %d disagree with trees.json", i, bad);
    OGRFeatureDefnH defn = OGR_L_GetLayerDefn(lyr);
    bool typed = cJSON_GetObjectItem(cJSON_GetArrayItem(trees, 0), "type") != NULL;
    CHECK(typed || (OGR_FD_GetFieldIndex(defn, "type") < 0 &&
                    OGR_FD_GetFieldIndex(defn, "type_score") < 0),
          "%s: type fields without a classifier", stem);
    GDALClose(ds);
}

/* With a classifier: every feature's type and type_score are trees.json's
 * (every tree "dead" here), read back through GDAL as a GIS would. */
static void check_gpkg_types(const char *stem, const cJSON *trees)
{
    int n = cJSON_GetArraySize(trees);
    GDALDatasetH ds;
    OGRLayerH lyr = open_trees(stem, &ds);
    OGRFeatureDefnH defn = OGR_L_GetLayerDefn(lyr);
    int ti = OGR_FD_GetFieldIndex(defn, "type"), si = OGR_FD_GetFieldIndex(defn, "type_score");
    CHECK_FATAL(ti >= 0 && si >= 0, "%s: no type / type_score field", stem);
    CHECK(OGR_Fld_GetType(OGR_FD_GetFieldDefn(defn, ti)) == OFTString &&
          OGR_Fld_GetType(OGR_FD_GetFieldDefn(defn, si)) == OFTReal);
    OGRFeatureH f;
    int bad = 0, i = 0, dead = 0;
    while ((f = OGR_L_GetNextFeature(lyr)) != NULL && i < n) {
        const cJSON *t = cJSON_GetArrayItem(trees, i++);
        const char *type = cJSON_GetStringValue(cJSON_GetObjectItem(t, "type"));
        const char *got = OGR_F_GetFieldAsString(f, ti);
        bad += !type || strcmp(got, type) != 0;
        dead += strcmp(got, "dead") == 0;
        bad += fabs(OGR_F_GetFieldAsDouble(f, si) - num(t, "type_score")) > 1e-6;
        OGR_F_Destroy(f);
    }
    CHECK(n > 0 && i == n && bad == 0 && dead == n,
          "%d of %d features read, %d disagree with trees.json, %d dead", i, n, bad, dead);
    GDALClose(ds);
}

/* DeepForest's CSV: its header, then each tree's clipped box, label, score. */
static void check_csv(const char *stem, const char *image, const cJSON *trees)
{
    char rel[256];
    snprintf(rel, sizeof rel, "out/%s.trees.csv", stem);
    char *csv = slurp(rel);
    CHECK_FATAL(csv != NULL, "%s missing", rel);
    const char *head = "image_path,xmin,ymin,xmax,ymax,label,score\n";
    CHECK(strncmp(csv, head, strlen(head)) == 0, "%s", csv);
    char *line = csv + strlen(head);
    int rows = 0, bad = 0;
    for (char *nl; (nl = strchr(line, '\n')) != NULL; line = nl + 1, rows++) {
        *nl = '\0';
        const cJSON *t = cJSON_GetArrayItem(trees, rows);
        char name[256], label[64];
        double v[5];
        bad += !t || sscanf(line, "%255[^,],%lf,%lf,%lf,%lf,%63[^,],%lf", name, &v[0], &v[1],
                            &v[2], &v[3], label, &v[4]) != 7;
        if (!t)
            continue;
        bad += strcmp(name, image) != 0 || strcmp(label, "Tree") != 0;
        bad += v[0] != num(t, "xmin") || v[1] != num(t, "ymin") || v[2] != num(t, "xmax") ||
               v[3] != num(t, "ymax") || fabs(v[4] - num(t, "score")) > 1e-9;
    }
    CHECK(rows == cJSON_GetArraySize(trees) && bad == 0, "%s: %d rows, %d bad", rel, rows, bad);
    free(csv);
}

/* The overlay PNG opens in GDAL with the input's geotransform and CRS. */
static void check_overlay(const char *stem, const double gt_in[6])
{
    char path[1200];
    snprintf(path, sizeof path, "%s/out/%s.overlay.png", g_dir, stem);
    GDALDatasetH ds = GDALOpen(path, GA_ReadOnly);
    CHECK_FATAL(ds != NULL, "%s", path);
    double gt[6];
    CHECK(GDALGetGeoTransform(ds, gt) == CE_None);
    for (int k = 0; k < 6; k++)
        CHECK(fabs(gt[k] - gt_in[k]) < 1e-9, "overlay geotransform[%d] %.17g, input %.17g", k,
              gt[k], gt_in[k]);
    const OGRSpatialReferenceH srs = GDALGetSpatialRef(ds);
    const char *code = srs ? OSRGetAuthorityCode(srs, NULL) : NULL;
    CHECK(code && strcmp(code, "32617") == 0, "overlay CRS %s", code ? code : "none");
    GDALClose(ds);
}

/* Every box inside the w x h raster; some trees touch its edge. */
static void check_clipped(const cJSON *trees, double w, double h)
{
    int outside = 0, on_edge = 0;
    for (int i = 0; i < cJSON_GetArraySize(trees); i++) {
        const cJSON *t = cJSON_GetArrayItem(trees, i);
        outside += num(t, "xmin") < 0 || num(t, "ymin") < 0 || num(t, "xmax") > w ||
                   num(t, "ymax") > h;
        on_edge += num(t, "xmin") == 0 || num(t, "ymin") == 0 || num(t, "xmax") == w ||
                   num(t, "ymax") == h;
    }
    CHECK(outside == 0 && on_edge > 0, "%d boxes outside the raster, %d on its edge", outside,
          on_edge);
}

static void check_georeferenced(const char *stem, int epsg, const double gt_in[6])
{
    char rel[256];
    snprintf(rel, sizeof rel, "out/%s.trees.json", stem);
    cJSON *doc = read_json(rel);
    CHECK_FATAL(doc != NULL, "%s missing", rel);
    CHECK(cJSON_IsTrue(cJSON_GetObjectItem(doc, "georeferenced")), "%s not georeferenced", stem);
    CHECK(num(cJSON_GetObjectItem(doc, "crs"), "epsg") == epsg, "%s: epsg", stem);
    const cJSON *gt = cJSON_GetObjectItem(doc, "geotransform");
    for (int k = 0; gt && k < 6; k++)
        CHECK(fabs(cJSON_GetArrayItem(gt, k)->valuedouble - gt_in[k]) < 1e-9, "%s gt[%d]", stem,
              k);
    CHECK(cJSON_GetArraySize(cJSON_GetObjectItem(doc, "trees")) > 20, "%s: trees", stem);
    cJSON_Delete(doc);
}

/* EPSG:4326, pixels of 1e-6 degrees: every box keeps its height, and map
 * positions are GDAL's transform of the pixel position to the last bit. */
static void check_geographic(void)
{
    static const double gt[6] = {-82.0, 1e-6, 0, 29.7, 0, -1e-6};
    cJSON *doc = read_json("out/wgs.trees.json");
    CHECK_FATAL(doc != NULL);
    const cJSON *trees = cJSON_GetObjectItem(doc, "trees");
    int flat = 0, off = 0;
    for (int i = 0; i < cJSON_GetArraySize(trees); i++) {
        const cJSON *t = cJSON_GetArrayItem(trees, i);
        const cJSON *bm = cJSON_GetObjectItem(t, "box_map");
        flat += !(cJSON_GetArrayItem(bm, 3)->valuedouble > cJSON_GetArrayItem(bm, 1)->valuedouble);
        double mx, my;
        GDALApplyGeoTransform((double *)gt, num(t, "x"), num(t, "y"), &mx, &my);
        /* x, y are written to 0.01 px: 1e-8 degrees. */
        off += fabs(num(t, "map_x") - mx) > 1.01e-8 || fabs(num(t, "lat") - num(t, "map_y")) > 0;
    }
    CHECK(cJSON_GetArraySize(trees) > 20 && flat == 0 && off == 0,
          "EPSG:4326: %d boxes without height, %d positions off", flat, off);
    cJSON_Delete(doc);
}

static void check_mask_cog(void)
{
    char path[1200];
    snprintf(path, sizeof path, "%s/out/cog.mask.tif", g_dir);
    GDALDatasetH ds = GDALOpen(path, GA_ReadOnly);
    CHECK_FATAL(ds != NULL, "%s", path);
    GDALRasterBandH b = GDALGetRasterBand(ds, 1);
    int has = 0;
    double nd = GDALGetRasterNoDataValue(b, &has);
    CHECK(has && nd == 1, "mask NoData %d %g", has, nd);
    CHECK(GDALGetOverviewCount(b) > 0, "mask without overviews");
    const char *layout = GDALGetMetadataItem(ds, "LAYOUT", "IMAGE_STRUCTURE");
    CHECK(layout && strcmp(layout, "COG") == 0, "mask layout %s", layout ? layout : "none");
    uint8_t corner[16 * 16];
    CHECK(GDALRasterIO(b, GF_Read, 0, 0, 16, 16, corner, 16, 16, GDT_Byte, 0, 0) == CE_None);
    int marked = 0;
    for (int i = 0; i < 256; i++)
        marked += corner[i] == 1;
    CHECK(marked == 256, "%d of the nodata block's pixels are NoData in the mask", marked);
    GDALClose(ds);
}

/* Inputs written with GDAL's tools from the NEON PNGs. */
static void make_inputs(void)
{
    const char *neon = CANOPY_NEON_DIR;
    CHECK_FATAL(sh("cd %s/in && "
                   "gdal_translate -q -a_srs EPSG:32617 -a_ullr 404000 3285040 404040 3285000 "
                   "%s/OSBS_029.png osbs.tif && "
                   "gdal_translate -q -a_srs EPSG:4326 -a_ullr -82 29.7 -81.9996 29.6996 "
                   "%s/OSBS_029.png wgs.tif && "
                   "cp %s/YELL_541000_west.png yell.png && "
                   "cp %s/OSBS_029.png side.png && "
                   "printf '0.1\\n0\\n0\\n-0.1\\n404000.05\\n3285039.95\\n' > side.wld && "
                   "gdal_translate -q -of JPEG -b 1 %s/OSBS_029.png grey.jpg && "
                   "gdal_translate -q -b 2 -a_srs EPSG:32617 -a_ullr 404000 3285040 404040 "
                   "3285000 %s/OSBS_029.png single.tif && "
                   "gdal_translate -q -a_srs EPSG:32617 -a_ullr 404000 3285240 404240 3285000 "
                   "%s/OSBS_029.png naip.tif && "
                   "echo 'not a raster, whatever its name' > notes.tif && "
                   "mkdir -p ../tiles && "
                   "gdal_translate -q -srcwin 0 0 200 400 -a_srs EPSG:32617 -a_ullr 404000 "
                   "3285040 404020 3285000 %s/OSBS_029.png ../tiles/a.tif && "
                   "gdal_translate -q -srcwin 200 0 200 400 -a_srs EPSG:32617 -a_ullr 404020 "
                   "3285040 404040 3285000 %s/OSBS_029.png ../tiles/b.tif && "
                   "gdalbuildvrt -q mosaic.vrt ../tiles/a.tif ../tiles/b.tif",
                   g_dir, neon, neon, neon, neon, neon, neon, neon, neon, neon) == 0);
    /* The CRS of side.png from GDAL's .aux.xml beside it; its transform
     * from the world file. */
    CHECK_FATAL(sh("cd %s/in && gdalsrsinfo -o wkt EPSG:32617 | tr -d '\\n' | "
                   "sed 's/&/\\&amp;/g; s/</\\&lt;/g; s/>/\\&gt;/g; "
                   "s/^/<PAMDataset><SRS>/; s/$/<\\/SRS><\\/PAMDataset>/' > side.png.aux.xml",
                   g_dir) == 0);
    /* A COG with a nodata block (top-left 16 x 16 black, nodata 0) and
     * overviews. */
    cnp_image img;
    cnp_err err;
    char path[1200];
    snprintf(path, sizeof path, "%s/SOAP_061.png", neon);
    CHECK_FATAL(img_png_read_file(path, 0, &img, &err) == CNP_OK);
    for (uint32_t y = 0; y < 16; y++)
        memset(img.rgba + 4 * (size_t)y * img.width, 0, 4 * 16);
    GDALDatasetH mem = GDALCreate(GDALGetDriverByName("MEM"), "", (int)img.width,
                                  (int)img.height, 3, GDT_Byte, NULL);
    for (int b = 1; b <= 3; b++) {
        GDALRasterBandH band = GDALGetRasterBand(mem, b);
        CHECK(GDALRasterIO(band, GF_Write, 0, 0, (int)img.width, (int)img.height,
                           img.rgba + b - 1, (int)img.width, (int)img.height, GDT_Byte, 4,
                           4 * (GSpacing)img.width) == CE_None);
        GDALSetRasterNoDataValue(band, 0);
    }
    static const double gt[6] = {404000, 0.1, 0, 3285040, 0, -0.1};
    OGRSpatialReferenceH srs = OSRNewSpatialReference(NULL);
    OSRImportFromEPSG(srs, 32617);
    GDALSetGeoTransform(mem, (double *)gt);
    GDALSetSpatialRef(mem, srs);
    OSRDestroySpatialReference(srs);
    static const char *const opts[] = {"COMPRESS=DEFLATE", "BLOCKSIZE=128", "OVERVIEWS=AUTO",
                                       NULL};
    snprintf(path, sizeof path, "%s/in/cog.tif", g_dir);
    GDALDatasetH cog = GDALCreateCopy(GDALGetDriverByName("COG"), path, mem, FALSE,
                                      (char **)opts, NULL, NULL);
    CHECK_FATAL(cog != NULL);
    GDALClose(cog);
    GDALClose(mem);
    cnp_image_free(&img);
}

int main(int argc, char **argv)
{
    if (argc < 2 || !mkdtemp(g_dir))
        return 1;
    g_canopy = argv[1];
    GDALAllRegister();
    CHECK_FATAL(sh("mkdir -p %s/in", g_dir) == 0);
    make_inputs();
    static const double UTM[6] = {404000, 0.1, 0, 3285040, 0, -0.1};

    int rc = sh("%s run -i %s/in -o %s/out --set output.vector=geojson,gpkg,csv > %s/run.log "
                "2>&1", g_canopy, g_dir, g_dir, g_dir);
    char *log = slurp("run.log");
    if (!log) {
        CHECK(false, "no run.log");
        return TEST_RESULT();
    }
    /* notes.tif fails (text); every other input is processed. */
    CHECK(rc == 3 && strstr(log, "10 images: 9 ok, 1 failed"), "exit %d: %s", rc, log);
    CHECK(strstr(log, "notes.tif: not a raster canopy can read") &&
              strstr(log, "it holds text") && !strstr(log, "not a PNG"),
          "%s", log);
    /* Grey like a grey PNG: processed, with the same warning. */
    int grey_warnings = 0;
    for (const char *p = log; (p = strstr(p, "warning: grey image")) != NULL; p++)
        grey_warnings++;
    CHECK(grey_warnings == 2, "%d grey warnings: %s", grey_warnings, log);
    CHECK(exists("out/grey.trees.json") && exists("out/single.trees.json"));
    /* 0.6 m pixels against the model's 0.1 m. */
    CHECK(strstr(log, "naip.tif: pixel size 0.6 m is more than 2x from the model's training "
                      "resolution 0.1 m"),
          "%s", log);
    CHECK(!strstr(log, "osbs.tif: pixel size"), "%s", log);
    free(log);

    cJSON *doc = read_json("out/osbs.trees.json");
    CHECK_FATAL(doc != NULL);
    const cJSON *trees = cJSON_GetObjectItem(doc, "trees");
    check_gpkg("osbs", trees);
    check_csv("osbs", "osbs.tif", trees);
    check_overlay("osbs", UTM);
    check_clipped(trees, 400, 400);
    cJSON_Delete(doc);
    doc = read_json("out/yell.trees.json");
    CHECK_FATAL(doc != NULL);
    check_clipped(cJSON_GetObjectItem(doc, "trees"), num(doc, "width"), num(doc, "height"));
    /* Not georeferenced: a CSV, but no GeoPackage, GeoJSON or world file. */
    CHECK(exists("out/yell.trees.csv") && !exists("out/yell.trees.gpkg") &&
          !exists("out/yell.overlay.pgw"));
    cJSON_Delete(doc);
    check_geographic();
    check_georeferenced("side", 32617, UTM);
    check_georeferenced("mosaic", 32617, UTM);
    check_overlay("mosaic", UTM);
    check_mask_cog();

    /* The default keeps today's outputs: GeoJSON, no GeoPackage or CSV. */
    CHECK(sh("%s run -i %s/in/osbs.tif -o %s/out-default > %s/default.log 2>&1", g_canopy,
             g_dir, g_dir, g_dir) == 0);
    CHECK(exists("out-default/osbs.trees.geojson") && !exists("out-default/osbs.trees.gpkg") &&
          !exists("out-default/osbs.trees.csv"));
    /* With a classifier: the GeoPackage carries each tree's type. */
    static const float dead[3] = {0.0f, 2.0f, -1.0f};
    char crop[1100];
    snprintf(crop, sizeof crop, "%s/crop", g_dir);
    CHECK_FATAL(cm_write_constant(crop, dead) == 0);
    CHECK_FATAL(sh("%s model import %s --output %s/dead.cnw > %s/import.log 2>&1 && %s run -i "
                   "%s/in/osbs.tif -o %s/out-types --classifier %s/dead.cnw --set "
                   "output.vector=gpkg > %s/types.log 2>&1",
                   g_canopy, crop, g_dir, g_dir, g_canopy, g_dir, g_dir, g_dir, g_dir) == 0);
    doc = read_json("out-types/osbs.trees.json");
    CHECK_FATAL(doc != NULL);
    check_gpkg_types("out-types/osbs", cJSON_GetObjectItem(doc, "trees"));
    cJSON_Delete(doc);
    /* A misspelt format names the choices. */
    CHECK(sh("%s run -i %s/in/osbs.tif -o %s/out-bad --set output.vector=geojson,shape > "
             "%s/bad.log 2>&1", g_canopy, g_dir, g_dir, g_dir) == 2);
    log = slurp("bad.log");
    CHECK(log && strstr(log, "'shape' is not one of geojson, gpkg, csv"), "%s", log ? log : "");
    free(log);
    if (!g_failures)
        sh("rm -rf %s", g_dir);
    return TEST_RESULT();
}
