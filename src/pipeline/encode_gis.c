/* GIS outputs beside trees.json: the GeoPackage (OGR) in the raster's CRS,
 * DeepForest's CSV, and the overlay's world file and CRS. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cpl_conv.h>
#include <cpl_error.h>
#include <cpl_string.h>
#include <cpl_vsi.h>
#include <gdal.h>
#include <ogr_api.h>
#include <ogr_srs_api.h>

#include "pipeline/encode_internal.h"

det_box pipe_tree_box(const cnp_tree *t, uint32_t w, uint32_t h)
{
    det_box b = det_tree_box(t);
    b.x0 = fminf(fmaxf(b.x0, 0.0f), (float)w);
    b.y0 = fminf(fmaxf(b.y0, 0.0f), (float)h);
    b.x1 = fminf(fmaxf(b.x1, 0.0f), (float)w);
    b.y1 = fminf(fmaxf(b.y1, 0.0f), (float)h);
    return b;
}

int pipe_tree_ring_map(const img_georef *geo, const cnp_tree *tr, uint32_t w, uint32_t h,
                       double *x, double *y)
{
    if (tr->boxed) {
        det_box b = pipe_tree_box(tr, w, h);
        const double px[4] = {b.x0, b.x1, b.x1, b.x0};
        const double py[4] = {b.y0, b.y0, b.y1, b.y1};
        for (int k = 0; k < 4; k++)
            img_georef_pixel_to_map(geo, px[k], py[k], &x[k], &y[k]);
        return 4;
    }
    for (int k = 0; k < PIPE_RING; k++) {
        double a = 2.0 * M_PI * k / PIPE_RING;
        img_georef_pixel_to_map(geo, tr->x + tr->radius * cos(a), tr->y + tr->radius * sin(a),
                                &x[k], &y[k]);
    }
    return PIPE_RING;
}

const char *pipe_fmt_double(double v, char buf[32])
{
    for (int digits = 15; digits <= 17; digits++) {
        snprintf(buf, 32, "%.*g", digits, v);
        if (strtod(buf, NULL) == v)
            break;
    }
    return buf;
}

/* ---- DeepForest's CSV -------------------------------------------------------- */

/* s as one CSV field (RFC 4180: quoted when it holds a comma, quote or line
 * break, quotes doubled). */
static cnp_status csv_field(cnp_spool *out, const char *s, cnp_err *err)
{
    if (!strpbrk(s, ",\"\r\n"))
        return cnp_spool_write(out, s, strlen(s), err);
    cnp_status result = cnp_spool_write(out, "\"", 1, err);
    for (const char *p = s; result == CNP_OK && *p; p++)
        result = cnp_spool_write(out, p, 1, err) == CNP_OK && *p == '"'
                     ? cnp_spool_write(out, "\"", 1, err)
                     : result;
    return result == CNP_OK ? cnp_spool_write(out, "\"", 1, err) : result;
}

/* The label DeepForest would give: the box model's class, "Tree" for crowns. */
static const char *tree_label(const pipe_encode_params *p, const cnp_tree *tr)
{
    const char *label = tr->boxed ? det_model_label(p->model, tr->label) : NULL;
    return label ? label : "Tree";
}

cnp_status pipe_encode_csv(const pipe_encode_params *p, const pipe_encode_in *in,
                           cnp_spool *out, cnp_err *err)
{
    const pipe_result *r = in->r;
    /* With a classifier, DeepForest's own columns of predict_tile with a
     * crop model. */
    const char *cls = p->classifier ? ",cropmodel_label,cropmodel_score" : "";
    cnp_status result =
        cnp_spool_printf(out, err, "image_path,xmin,ymin,xmax,ymax,label,score%s\n", cls);
    for (size_t i = 0; result == CNP_OK && i < r->ntrees; i++) {
        const cnp_tree *tr = &r->trees[i];
        det_box b = pipe_tree_box(tr, r->width, r->height);
        /* The values trees.json has: 0.01 px, scores to 4 decimals. */
        if ((result = csv_field(out, in->image_name, err)) == CNP_OK)
            result = cnp_spool_printf(out, err, ",%.2f,%.2f,%.2f,%.2f,", round(b.x0 * 100.0) / 100,
                                      round(b.y0 * 100.0) / 100, round(b.x1 * 100.0) / 100,
                                      round(b.y1 * 100.0) / 100);
        if (result == CNP_OK)
            result = csv_field(out, tree_label(p, tr), err);
        if (result == CNP_OK)
            result = cnp_spool_printf(out, err, ",%.4f", round(tr->score * 1e4) / 1e4);
        const char *type = tr->typed ? det_model_type_name(p->classifier, tr->type) : NULL;
        if (result == CNP_OK && p->classifier)
            result = cnp_spool_printf(out, err, ",");
        if (result == CNP_OK && type && (result = csv_field(out, type, err)) == CNP_OK)
            result = cnp_spool_printf(out, err, ",%.6f", round(tr->type_score * 1e6) / 1e6);
        else if (result == CNP_OK && p->classifier)
            result = cnp_spool_printf(out, err, ",");
        if (result == CNP_OK)
            result = cnp_spool_printf(out, err, "\n");
    }
    if (result != CNP_OK)
        cnp_err_prefix(err, "writing trees.csv");
    return result;
}

/* ---- GeoPackage ------------------------------------------------------------------ */

static const struct {
    const char *name;
    OGRFieldType type;
} gpkg_fields[] = {
    {"label", OFTString}, {"score", OFTReal},   {"x", OFTReal},    {"y", OFTReal},
    {"radius", OFTReal},  {"xmin", OFTReal},    {"ymin", OFTReal}, {"xmax", OFTReal},
    {"ymax", OFTReal},    {"radius_m", OFTReal}, {"model", OFTString},
};
enum { NFIELDS = sizeof gpkg_fields / sizeof gpkg_fields[0] };
/* With a classifier, two more: the tree's type and type_score (fields
 * NFIELDS and NFIELDS + 1; null for a tree left untyped). */
static const struct {
    const char *name;
    OGRFieldType type;
} gpkg_type_fields[] = {{"type", OFTString}, {"type_score", OFTReal}};

/* The tree as a closed, counter-clockwise polygon in the raster's CRS. */
static OGRGeometryH tree_polygon(const img_georef *geo, const pipe_result *r, const cnp_tree *tr)
{
    double x[PIPE_RING + 1], y[PIPE_RING + 1];
    int n = pipe_tree_ring_map(geo, tr, r->width, r->height, x, y);
    x[n] = x[0];
    y[n] = y[0];
    double area2 = 0;
    for (int k = 0; k < n; k++)
        area2 += x[k] * y[k + 1] - x[k + 1] * y[k];
    OGRGeometryH poly = OGR_G_CreateGeometry(wkbPolygon);
    OGRGeometryH ring = OGR_G_CreateGeometry(wkbLinearRing);
    if (!poly || !ring) {
        OGR_G_DestroyGeometry(poly);
        OGR_G_DestroyGeometry(ring);
        return NULL;
    }
    for (int i = 0; i <= n; i++) {
        int k = area2 >= 0 ? i : n - i;
        OGR_G_AddPoint_2D(ring, x[k], y[k]);
    }
    OGR_G_AddGeometryDirectly(poly, ring);
    return poly;
}

/* One feature per tree into the layer; false with err set. */
static cnp_status gpkg_features(const pipe_encode_params *p, const pipe_encode_in *in,
                                OGRLayerH lyr, cnp_err *err)
{
    const pipe_result *r = in->r;
    OGRFeatureDefnH defn = OGR_L_GetLayerDefn(lyr);
    for (size_t i = 0; i < r->ntrees; i++) {
        const cnp_tree *tr = &r->trees[i];
        det_box b = pipe_tree_box(tr, r->width, r->height);
        const double v[] = {tr->score, tr->x,   tr->y,   tr->radius, b.x0,
                            b.y0,      b.x1,    b.y1,    in->trees_geo[i].radius_m};
        OGRFeatureH f = OGR_F_Create(defn);
        OGRGeometryH g = f ? tree_polygon(in->geo, r, tr) : NULL;
        if (!g) {
            OGR_F_Destroy(f);
            cnp_err_set(err, "out of memory for tree %zu", i);
            return CNP_ERR_NOMEM;
        }
        OGR_F_SetFieldString(f, 0, tree_label(p, tr));
        for (int k = 0; k < (int)(sizeof v / sizeof v[0]); k++)
            OGR_F_SetFieldDouble(f, k + 1, v[k]);
        if (p->model_version)
            OGR_F_SetFieldString(f, NFIELDS - 1, p->model_version);
        const char *type = tr->typed ? det_model_type_name(p->classifier, tr->type) : NULL;
        if (p->classifier && type) {
            OGR_F_SetFieldString(f, NFIELDS, type);
            OGR_F_SetFieldDouble(f, NFIELDS + 1, tr->type_score);
        } else if (p->classifier) {
            OGR_F_SetFieldNull(f, NFIELDS);
            OGR_F_SetFieldNull(f, NFIELDS + 1);
        }
        OGR_F_SetGeometryDirectly(f, g);
        OGRErr e = OGR_L_CreateFeature(lyr, f);
        OGR_F_Destroy(f);
        if (e != OGRERR_NONE) {
            cnp_err_set(err, "tree %zu: %s", i, CPLGetLastErrorMsg());
            return CNP_ERR_IO;
        }
    }
    return CNP_OK;
}

/* Writes the GeoPackage at path (which must not exist). */
static cnp_status gpkg_write(const pipe_encode_params *p, const pipe_encode_in *in,
                             const char *path, cnp_err *err)
{
    static const char *const lopts[] = {"SPATIAL_INDEX=YES", "GEOMETRY_NAME=geom",
                                        "FID=fid", NULL};
    GDALDriverH drv = GDALGetDriverByName("GPKG");
    GDALDatasetH ds = drv ? GDALCreate(drv, path, 0, 0, 0, GDT_Unknown, NULL) : NULL;
    OGRSpatialReferenceH srs = OSRNewSpatialReference(in->geo->wkt);
    cnp_status result = CNP_ERR_IO;
    if (!ds || !srs) {
        cnp_err_set(err, "%s", drv ? CPLGetLastErrorMsg() : "GDAL has no GPKG driver");
        goto out;
    }
    OSRSetAxisMappingStrategy(srs, OAMS_TRADITIONAL_GIS_ORDER);
    OGRLayerH lyr = GDALDatasetCreateLayer(ds, "trees", srs, wkbPolygon, (char **)lopts);
    int nfields = NFIELDS + (p->classifier ? 2 : 0);
    for (int k = 0; lyr && k < nfields; k++) {
        OGRFieldDefnH fd = k < NFIELDS ? OGR_Fld_Create(gpkg_fields[k].name, gpkg_fields[k].type)
                                       : OGR_Fld_Create(gpkg_type_fields[k - NFIELDS].name,
                                                        gpkg_type_fields[k - NFIELDS].type);
        OGRErr e = OGR_L_CreateField(lyr, fd, TRUE);
        OGR_Fld_Destroy(fd);
        if (e != OGRERR_NONE)
            lyr = NULL;
    }
    if (!lyr) {
        cnp_err_set(err, "creating its layer: %s", CPLGetLastErrorMsg());
        goto out;
    }
    /* One transaction: SQLite commits per feature otherwise. */
    if (GDALDatasetStartTransaction(ds, FALSE) != OGRERR_NONE) {
        cnp_err_set(err, "%s", CPLGetLastErrorMsg());
        goto out;
    }
    if ((result = gpkg_features(p, in, lyr, err)) != CNP_OK)
        goto out;
    if (GDALDatasetCommitTransaction(ds) != OGRERR_NONE) {
        cnp_err_set(err, "committing: %s", CPLGetLastErrorMsg());
        result = CNP_ERR_IO;
    }
out:
    if (srs)
        OSRDestroySpatialReference(srs);
    if (ds) {
        CPLErrorReset();
        GDALClose(ds); /* writes the file */
        if (result == CNP_OK && CPLGetLastErrorType() >= CE_Failure) {
            cnp_err_set(err, "closing: %s", CPLGetLastErrorMsg());
            result = CNP_ERR_IO;
        }
    }
    return result;
}

cnp_status pipe_encode_gpkg(const pipe_encode_params *p, const pipe_encode_in *in,
                            cnp_spool *out, cnp_err *err)
{
    static unsigned seq;
    char path[4096];
    bool in_memory = out->limit == 0;
    cnp_status result;
    img_gdal_init();
    if (in_memory) {
        snprintf(path, sizeof path, "/vsimem/canopy/trees-%u-%p.gpkg",
                 __atomic_fetch_add(&seq, 1, __ATOMIC_RELAXED), (void *)out);
    } else {
        if ((result = cnp_spool_temp_name(out, ".gpkg", path, sizeof path, err)) != CNP_OK)
            return result;
        unlink(path); /* the GPKG driver makes its own file */
    }
    CPLErrorReset();
    result = gpkg_write(p, in, path, err);
    if (result == CNP_OK && in_memory) {
        vsi_l_offset size = 0;
        GByte *bytes = VSIGetMemFileBuffer(path, &size, FALSE);
        result = bytes ? cnp_spool_write(out, bytes, (size_t)size, err) : CNP_ERR_IO;
        if (!bytes)
            cnp_err_set(err, "no output");
    } else if (result == CNP_OK) {
        result = cnp_spool_adopt(out, path, err);
    }
    if (in_memory)
        VSIUnlink(path);
    else if (result != CNP_OK)
        unlink(path);
    if (result != CNP_OK)
        cnp_err_prefix(err, "writing trees.gpkg");
    return result;
}

/* ---- the overlay's georeferencing -------------------------------------------- */

cnp_status pipe_encode_overlay_georef(const img_georef *geo, const pipe_result *r, uint32_t ow,
                                      uint32_t oh, cnp_spool *wld, cnp_spool *aux,
                                      cnp_err *err)
{
    if (!ow || !oh) {
        cnp_err_set(err, "the overlay has no pixels");
        return CNP_ERR_INVALID;
    }
    /* An overlay pixel spans sx x sy input pixels (1 x 1 unless a preview). */
    double sx = (double)r->width / ow, sy = (double)r->height / oh;
    if (r->overlay_step > 1)
        sx = sy = r->overlay_step;
    const double *gt = geo->gt;
    double a = gt[1] * sx, b = gt[2] * sy, d = gt[4] * sx, e = gt[5] * sy;
    /* A world file names the centre of the top-left pixel. */
    double c = gt[0] + a / 2 + b / 2, f = gt[3] + d / 2 + e / 2;
    char v[6][32];
    cnp_status result =
        cnp_spool_printf(wld, err, "%s\n%s\n%s\n%s\n%s\n%s\n", pipe_fmt_double(a, v[0]),
                         pipe_fmt_double(d, v[1]), pipe_fmt_double(b, v[2]),
                         pipe_fmt_double(e, v[3]), pipe_fmt_double(c, v[4]),
                         pipe_fmt_double(f, v[5]));
    if (result != CNP_OK)
        return result;
    char *wkt = CPLEscapeString(geo->wkt, -1, CPLES_XML);
    if (!wkt) {
        cnp_err_set(err, "out of memory for the overlay's CRS");
        return CNP_ERR_NOMEM;
    }
    result = cnp_spool_printf(aux, err, "<PAMDataset>\n  <SRS>%s</SRS>\n</PAMDataset>\n", wkt);
    CPLFree(wkt);
    return result;
}
