/* pipe_encode's GIS outputs for a box model's trees (a crown model's run
 * through the executable in test_run_gis): on a 100 x 80 raster in UTM
 * zone 17N with 0.5 m pixels, a box reaching past the raster's top-left
 * corner is clipped to it in trees.json, the CSV, the GeoJSON and the
 * GeoPackage, whose polygon is the clipped box's four corners taken through
 * the geotransform; the overlay's world file names the centre of the
 * top-left pixel. */
#include <math.h>

#include <cjson/cJSON.h>
#include <cpl_vsi.h>
#include <gdal.h>
#include <ogr_api.h>
#include <ogr_srs_api.h>

#include "canopy/pipeline.h"
#include "canopy/raster.h"
#include "testutil.h"

static const double GT[6] = {404000.0, 0.5, 0.0, 3285000.0, 0.0, -0.5};

/* A 100 x 80 RGB GeoTIFF decoded back: pixels and georeferencing. */
static void make_raster(cnp_image *img, img_georef *geo)
{
    GDALAllRegister();
    GDALDatasetH ds = GDALCreate(GDALGetDriverByName("GTiff"), "/vsimem/enc.tif", 100, 80, 3,
                                 GDT_Byte, NULL);
    OGRSpatialReferenceH srs = OSRNewSpatialReference(NULL);
    OSRImportFromEPSG(srs, 32617);
    GDALSetGeoTransform(ds, (double *)GT);
    GDALSetSpatialRef(ds, srs);
    OSRDestroySpatialReference(srs);
    GDALClose(ds);
    vsi_l_offset len = 0;
    GByte *bytes = VSIGetMemFileBuffer("/vsimem/enc.tif", &len, FALSE);
    cnp_err err;
    CHECK_FATAL(img_raster_decode(bytes, (size_t)len, "enc.tif", 0, img, geo, NULL, &err) ==
                    CNP_OK && geo->valid,
                "%s", err.msg);
    VSIUnlink("/vsimem/enc.tif");
}

static char *text_of(cnp_spool *s)
{
    char *t = malloc(s->buf.len + 1);
    memcpy(t, s->buf.data, s->buf.len);
    t[s->buf.len] = '\0';
    return t;
}

static void check_gpkg(cnp_spool *s)
{
    VSILFILE *f = VSIFileFromMemBuffer("/vsimem/enc.gpkg", s->buf.data, s->buf.len, FALSE);
    VSIFCloseL(f);
    GDALDatasetH ds = GDALOpenEx("/vsimem/enc.gpkg", GDAL_OF_VECTOR, NULL, NULL, NULL);
    CHECK_FATAL(ds != NULL);
    OGRLayerH lyr = GDALDatasetGetLayerByName(ds, "trees");
    CHECK_FATAL(lyr && OGR_L_GetFeatureCount(lyr, TRUE) == 2);
    OGRFeatureH feat = OGR_L_GetNextFeature(lyr);
    OGRGeometryH ring = OGR_G_GetGeometryRef(OGR_F_GetGeometryRef(feat), 0);
    /* The clipped box [0, 20] x [0, 10]: map x 404000..404010, y
     * 3284995..3285000, closed, four corners. */
    CHECK(OGR_G_GetPointCount(ring) == 5, "%d points", OGR_G_GetPointCount(ring));
    OGREnvelope e;
    OGR_G_GetEnvelope(ring, &e);
    CHECK(e.MinX == 404000.0 && e.MaxX == 404010.0 && e.MinY == 3284995.0 &&
              e.MaxY == 3285000.0,
          "%.17g %.17g %.17g %.17g", e.MinX, e.MaxX, e.MinY, e.MaxY);
    CHECK(fabs(OGR_F_GetFieldAsDouble(feat, OGR_F_GetFieldIndex(feat, "score")) - 0.9) < 1e-6);
    CHECK(OGR_F_GetFieldAsDouble(feat, OGR_F_GetFieldIndex(feat, "xmin")) == 0);
    OGR_F_Destroy(feat);
    GDALClose(ds);
    VSIUnlink("/vsimem/enc.gpkg");
}

int main(void)
{
    cnp_image img;
    img_georef geo;
    make_raster(&img, &geo);
    cnp_tree trees[2] = {
        {.x = 5, .y = 2, .radius = 8, .score = 0.9f, .x0 = -10, .y0 = -6, .x1 = 20, .y1 = 10,
         .boxed = true},
        {.x = 60.3f, .y = 50.7f, .radius = 5, .score = 0.4f, .x0 = 55, .y0 = 45, .x1 = 65,
         .y1 = 55, .boxed = true},
    };
    pipe_result r = {.width = 100, .height = 80, .trees = trees, .ntrees = 2};
    cnp_output_config oc = {.overlay = true, .mask_format = CNP_MASK_AUTO,
                            .vector = CNP_VECTOR_GEOJSON | CNP_VECTOR_GPKG | CNP_VECTOR_CSV};
    pipe_encode_params p = {.output = &oc, .detector = true, .model_version = "box-test"};
    pipe_geo_tree *tg = NULL;
    double footprint[10];
    cnp_err err;
    CHECK_FATAL(pipe_georeference(&geo, &r, &tg, footprint, &err) == CNP_OK, "%s", err.msg);
    pipe_encode_in in = {.img = &img, .r = &r, .image_name = "enc.tif", .geo = &geo,
                         .trees_geo = tg, .footprint = footprint};
    pipe_outputs out;
    pipe_outputs_init(&out, NULL, 0);
    CHECK_FATAL(pipe_encode(&p, &in, &out, &err) == CNP_OK, "%s", err.msg);

    char *csv = text_of(&out.out[PIPE_OUT_CSV]);
    CHECK(strcmp(csv, "image_path,xmin,ymin,xmax,ymax,label,score\n"
                      "enc.tif,0.00,0.00,20.00,10.00,Tree,0.9000\n"
                      "enc.tif,55.00,45.00,65.00,55.00,Tree,0.4000\n") == 0,
          "%s", csv);
    free(csv);
    char *json = text_of(&out.out[PIPE_OUT_TREES_JSON]);
    cJSON *doc = cJSON_Parse(json);
    const cJSON *t0 = cJSON_GetArrayItem(cJSON_GetObjectItem(doc, "trees"), 0);
    CHECK(cJSON_GetObjectItem(t0, "xmin")->valuedouble == 0 &&
          cJSON_GetObjectItem(t0, "ymin")->valuedouble == 0);
    const cJSON *bm = cJSON_GetObjectItem(t0, "box_map");
    CHECK(cJSON_GetArrayItem(bm, 0)->valuedouble == 404000.0 &&
          cJSON_GetArrayItem(bm, 3)->valuedouble == 3285000.0);
    /* Map positions and lon/lat to the last bit (cJSON reads with strtod). */
    const cJSON *t1 = cJSON_GetArrayItem(cJSON_GetObjectItem(doc, "trees"), 1);
    CHECK(cJSON_GetObjectItem(t1, "map_x")->valuedouble == tg[1].map_x &&
          cJSON_GetObjectItem(t1, "map_y")->valuedouble == tg[1].map_y &&
          cJSON_GetObjectItem(t1, "lon")->valuedouble == tg[1].lon &&
          cJSON_GetObjectItem(t1, "lat")->valuedouble == tg[1].lat,
          "%.17g %.17g", cJSON_GetObjectItem(t1, "lon")->valuedouble, tg[1].lon);
    cJSON_Delete(doc);
    free(json);
    /* The GeoJSON: a box of four corners (five points), not a circle. */
    char *gj = text_of(&out.out[PIPE_OUT_GEOJSON]);
    doc = cJSON_Parse(gj);
    const cJSON *ring = cJSON_GetArrayItem(
        cJSON_GetObjectItem(
            cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(doc, "features"), 0),
                                "geometry"),
            "coordinates"),
        0);
    CHECK(cJSON_GetArraySize(ring) == 5, "%d points", cJSON_GetArraySize(ring));
    cJSON_Delete(doc);
    free(gj);
    check_gpkg(&out.out[PIPE_OUT_GPKG]);
    char *wld = text_of(&out.out[PIPE_OUT_OVERLAY_WLD]);
    CHECK(strcmp(wld, "0.5\n0\n0\n-0.5\n404000.25\n3284999.75\n") == 0, "%s", wld);
    free(wld);
    char *aux = text_of(&out.out[PIPE_OUT_OVERLAY_AUX]);
    /* The CRS's WKT, XML-escaped (GDAL reads it back: test_run_gis). */
    CHECK(strncmp(aux, "<PAMDataset>\n  <SRS>PROJCS[&quot;WGS 84 / UTM zone 17N&quot;", 52) == 0 ||
              strncmp(aux, "<PAMDataset>\n  <SRS>PROJCRS[&quot;WGS 84 / UTM zone 17N&quot;", 53) == 0,
          "%s", aux);
    free(aux);

    pipe_outputs_free(&out);

    /* A raster processed in windows: its overlay is a preview drawn at
     * 1 / overlay_step, already encoded; the world file's pixels are
     * overlay_step input pixels. */
    cnp_image preview;
    CHECK_FATAL(cnp_image_alloc(&preview, 50, 40, &err) == CNP_OK);
    memset(preview.rgba, 90, 50 * 40 * 4);
    pipe_outputs_init(&out, NULL, 0);
    CHECK(img_png_encode_rgb(&preview, 1, &out.out[PIPE_OUT_OVERLAY].buf, &err) == CNP_OK);
    r.overlay_step = 2;
    in.img = NULL;
    CHECK_FATAL(pipe_encode(&p, &in, &out, &err) == CNP_OK, "%s", err.msg);
    wld = text_of(&out.out[PIPE_OUT_OVERLAY_WLD]);
    CHECK(strcmp(wld, "1\n0\n0\n-1\n404000.5\n3284999.5\n") == 0, "%s", wld);
    free(wld);
    pipe_outputs_free(&out);
    cnp_image_free(&preview);
    free(tg);
    img_georef_free(&geo);
    cnp_image_free(&img);
    return TEST_RESULT();
}
