/* Output encoding, shared by all front ends: the mask (PNG or GeoTIFF), the
 * overlay, trees.json and, for georeferenced inputs, trees.geojson. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "canopy/pipeline.h"
#include "pipeline/encode_internal.h"

const char *const pipe_out_suffix[PIPE_OUT_COUNT] = {
    ".mask.png", ".mask.tif", ".overlay.png", ".trees.json", ".trees.geojson",
    ".trees.gpkg", ".trees.csv", ".overlay.pgw", ".overlay.png.aux.xml",
};
const char *const pipe_out_content_type[PIPE_OUT_COUNT] = {
    "image/png", "image/tiff", "image/png", "application/json", "application/geo+json",
    "application/geopackage+sqlite3", "text/csv", "text/plain", "application/xml",
};

/* Rounds pixel values and scores to `digits` decimals so the JSON stays
 * short and stable; map coordinates and lon/lat are written whole (a
 * thousandth of a degree is 100 m). */
static double round_to(double v, int digits)
{
    double scale = pow(10.0, digits);
    return round(v * scale) / scale;
}

/* ---- georeferencing ------------------------------------------------------- */

cnp_status pipe_georeference(const img_georef *geo, const pipe_result *r, pipe_geo_tree **out,
                             double footprint[10], cnp_err *err)
{
    *out = NULL;
    double fx[5] = {0, r->width, r->width, 0, 0}, fy[5] = {0, 0, r->height, r->height, 0};
    for (int i = 0; i < 5; i++)
        img_georef_pixel_to_map(geo, fx[i], fy[i], &fx[i], &fy[i]);
    cnp_status result = img_georef_to_lonlat(geo, 5, fx, fy, err);
    if (result != CNP_OK)
        return result;
    for (int i = 0; i < 5; i++) {
        footprint[2 * i] = fx[i];
        footprint[2 * i + 1] = fy[i];
    }
    if (!r->ntrees)
        return CNP_OK;
    pipe_geo_tree *t = calloc(r->ntrees, sizeof *t);
    double *lon = malloc(r->ntrees * sizeof *lon), *lat = malloc(r->ntrees * sizeof *lat);
    if (!t || !lon || !lat) {
        cnp_err_set(err, "out of memory georeferencing %zu trees", r->ntrees);
        result = CNP_ERR_NOMEM;
        goto out;
    }
    for (size_t i = 0; i < r->ntrees; i++) {
        const cnp_tree *tr = &r->trees[i];
        img_georef_pixel_to_map(geo, tr->x, tr->y, &t[i].map_x, &t[i].map_y);
        lon[i] = t[i].map_x;
        lat[i] = t[i].map_y;
        t[i].radius_m = tr->radius * img_georef_pixel_m(geo, tr->x, tr->y);
        /* The box's corners in map units (any rotation): their extent. */
        det_box b = pipe_tree_box(tr, r->width, r->height);
        double cx[4] = {b.x0, b.x1, b.x1, b.x0};
        double cy[4] = {b.y0, b.y0, b.y1, b.y1};
        t[i].box_map[0] = t[i].box_map[1] = INFINITY;
        t[i].box_map[2] = t[i].box_map[3] = -INFINITY;
        for (int k = 0; k < 4; k++) {
            double mx, my;
            img_georef_pixel_to_map(geo, cx[k], cy[k], &mx, &my);
            t[i].box_map[0] = fmin(t[i].box_map[0], mx);
            t[i].box_map[1] = fmin(t[i].box_map[1], my);
            t[i].box_map[2] = fmax(t[i].box_map[2], mx);
            t[i].box_map[3] = fmax(t[i].box_map[3], my);
        }
    }
    if ((result = img_georef_to_lonlat(geo, r->ntrees, lon, lat, err)) != CNP_OK)
        goto out;
    for (size_t i = 0; i < r->ntrees; i++) {
        t[i].lon = lon[i];
        t[i].lat = lat[i];
    }
    *out = t;
    t = NULL;
out:
    free(t);
    free(lon);
    free(lat);
    return result;
}

/* ---- trees.json ------------------------------------------------------------ */

/* v at full precision: the shortest decimal that reads back as v (cJSON's
 * own printing may give one a unit in the last place away). */
static cJSON *exact_number(double v)
{
    char buf[32];
    return isfinite(v) ? cJSON_CreateRaw(pipe_fmt_double(v, buf)) : cJSON_CreateNull();
}

static bool add_exact(cJSON *o, const char *name, double v)
{
    cJSON *x = exact_number(v);
    if (x && cJSON_AddItemToObject(o, name, x))
        return true;
    cJSON_Delete(x);
    return false;
}

/* n values, rounded to `digits` decimals, or exact (digits < 0). */
static bool add_array(cJSON *o, const char *name, const double *v, int n, int digits)
{
    cJSON *a = cJSON_AddArrayToObject(o, name);
    for (int i = 0; a && i < n; i++) {
        cJSON *x = digits >= 0 ? cJSON_CreateNumber(round_to(v[i], digits)) : exact_number(v[i]);
        if (!x)
            return false;
        cJSON_AddItemToArray(a, x);
    }
    return a != NULL;
}

/* The document-level georeferencing: CRS, geotransform, footprint. */
static bool json_georef(cJSON *doc, const pipe_encode_in *in)
{
    if (!in->geo || !in->geo->valid)
        return cJSON_AddFalseToObject(doc, "georeferenced") != NULL;
    cJSON *crs = cJSON_CreateObject();
    if (!crs || !cJSON_AddTrueToObject(doc, "georeferenced"))
        return false;
    cJSON_AddItemToObject(doc, "crs", crs);
    if (in->geo->epsg ? !cJSON_AddNumberToObject(crs, "epsg", in->geo->epsg)
                      : !cJSON_AddNullToObject(crs, "epsg"))
        return false;
    return cJSON_AddStringToObject(crs, "wkt", in->geo->wkt) &&
           add_array(doc, "geotransform", in->geo->gt, 6, -1) &&
           add_array(doc, "footprint_lonlat", in->footprint, 10, -1);
}

static bool json_tree(cJSON *t, const cnp_tree *tr, const pipe_geo_tree *g,
                      const pipe_encode_params *p, const pipe_result *r)
{
    const det_model *m = p->model;
    /* Box models name the class; crowns have none. */
    const char *label = tr->boxed ? det_model_label(m, tr->label) : NULL;
    if (label && !cJSON_AddStringToObject(t, "label", label))
        return false;
    det_box b = pipe_tree_box(tr, r->width, r->height);
    double box[4] = {b.x0, b.y0, b.x1, b.y1};
    bool ok = cJSON_AddNumberToObject(t, "x", round_to(tr->x, 2)) &&
              cJSON_AddNumberToObject(t, "y", round_to(tr->y, 2)) &&
              cJSON_AddNumberToObject(t, "radius", round_to(tr->radius, 2)) &&
              cJSON_AddNumberToObject(t, "score", round_to(tr->score, 4)) &&
              cJSON_AddNumberToObject(t, "xmin", round_to(box[0], 2)) &&
              cJSON_AddNumberToObject(t, "ymin", round_to(box[1], 2)) &&
              cJSON_AddNumberToObject(t, "xmax", round_to(box[2], 2)) &&
              cJSON_AddNumberToObject(t, "ymax", round_to(box[3], 2));
    /* The second stage's type (DeepForest's cropmodel_label / _score). */
    const char *type = tr->typed ? det_model_type_name(p->classifier, tr->type) : NULL;
    if (ok && type)
        ok = cJSON_AddStringToObject(t, "type", type) &&
             cJSON_AddNumberToObject(t, "type_score", round_to(tr->type_score, 6));
    if (!ok || !g)
        return ok;
    return add_exact(t, "map_x", g->map_x) && add_exact(t, "map_y", g->map_y) &&
           add_exact(t, "lon", g->lon) && add_exact(t, "lat", g->lat) &&
           cJSON_AddNumberToObject(t, "radius_m", round_to(g->radius_m, 3)) &&
           add_array(t, "box_map", g->box_map, 4, -1);
}

/* With a classifier: the classifier's version, the count per type and
 * tree_count (the trees of the types asked for; all without such a list). */
static bool json_types(cJSON *doc, const pipe_encode_params *p, const pipe_encode_in *in)
{
    if (!p->classifier)
        return true;
    const pipe_result *r = in->r;
    char *counts = pipe_type_counts_json(p->classifier, r->trees, r->ntrees);
    cJSON *c = counts ? cJSON_Parse(counts) : NULL;
    free(counts);
    if (!c)
        return false;
    cJSON_AddItemToObject(doc, "type_counts", c);
    size_t n = pipe_tree_count(p->classifier, r->trees, r->ntrees, in->types, in->n_types,
                               p->types);
    return cJSON_AddStringToObject(doc, "classifier", det_model_version(p->classifier)) &&
           cJSON_AddNumberToObject(doc, "tree_count", (double)n);
}

/* trees.json's document with an empty "trees" (its last member), printed;
 * NULL without memory. */
static char *trees_json_head(const pipe_encode_params *p, const pipe_encode_in *in)
{
    const pipe_result *r = in->r;
    double n = (double)r->width * r->height;
    cJSON *doc = cJSON_CreateObject();
    char *head = NULL;
    bool ok = doc && cJSON_AddStringToObject(doc, "image", in->image_name) &&
              cJSON_AddNumberToObject(doc, "width", r->width) &&
              cJSON_AddNumberToObject(doc, "height", r->height) &&
              (r->bin.threshold >= 0 ? cJSON_AddNumberToObject(doc, "threshold", r->bin.threshold)
                                     : cJSON_AddNullToObject(doc, "threshold")) &&
              cJSON_AddNumberToObject(doc, "canopy_cover", round_to(r->bin.canopy_cover, 4)) &&
              cJSON_AddNumberToObject(doc, "nodata_fraction",
                                      round_to(n > 0 ? (double)in->nodata / n : 0.0, 4)) &&
              (p->model_version ? cJSON_AddStringToObject(doc, "model", p->model_version)
                                : cJSON_AddNullToObject(doc, "model")) &&
              json_georef(doc, in) && json_types(doc, p, in) &&
              cJSON_AddArrayToObject(doc, "trees");
    if (ok)
        head = cJSON_PrintUnformatted(doc);
    cJSON_Delete(doc);
    return head;
}

/* The head with each tree printed on its own into the gap of "trees": the
 * same bytes as one cJSON document, without holding a cJSON node per number
 * of a raster's 100,000 trees (about 1.5 KB a tree), and written through the
 * spool (a 20k tile's trees.json is 24 MB). */
static cnp_status trees_json(const pipe_encode_params *p, const pipe_encode_in *in,
                             cnp_spool *out, cnp_err *err)
{
    const pipe_result *r = in->r;
    char *head = trees_json_head(p, in);
    size_t hl = head ? strlen(head) : 0;
    cnp_status result = CNP_ERR_NOMEM;
    if (hl >= 2 && strcmp(head + hl - 2, "]}") == 0)
        result = cnp_spool_write(out, head, hl - 2, err);
    else
        cnp_err_set(err, "out of memory writing trees.json");
    cJSON_free(head);
    for (size_t i = 0; result == CNP_OK && i < r->ntrees; i++) {
        cJSON *t = cJSON_CreateObject();
        char *text = NULL;
        if (!t || !json_tree(t, &r->trees[i], in->trees_geo ? &in->trees_geo[i] : NULL,
                             p, r) ||
            !(text = cJSON_PrintUnformatted(t))) {
            cnp_err_set(err, "out of memory writing trees.json");
            result = CNP_ERR_NOMEM;
        }
        if (result == CNP_OK && i > 0)
            result = cnp_spool_write(out, ",", 1, err);
        if (result == CNP_OK)
            result = cnp_spool_write(out, text, strlen(text), err);
        cJSON_free(text);
        cJSON_Delete(t);
    }
    if (result == CNP_OK)
        result = cnp_spool_write(out, "]}\n", 3, err);
    return result;
}

/* ---- trees.geojson (RFC 7946) ------------------------------------------------ */

/* A tree's polygon (pipe_tree_ring_map) in lon/lat: ring[2 * k],
 * ring[2 * k + 1], closed (*nv + 1 points) and counter-clockwise; bbox
 * grows to hold it. */
static cnp_status crown_ring(const img_georef *geo, const pipe_result *r, const cnp_tree *tr,
                             double *ring, int *nv, double bbox[4], cnp_err *err)
{
    double x[PIPE_RING + 1], y[PIPE_RING + 1];
    int n = pipe_tree_ring_map(geo, tr, r->width, r->height, x, y);
    cnp_status result = img_georef_to_lonlat(geo, (size_t)n, x, y, err);
    if (result != CNP_OK)
        return result;
    x[n] = x[0];
    y[n] = y[0];
    double area2 = 0;
    for (int k = 0; k < n; k++)
        area2 += x[k] * y[k + 1] - x[k + 1] * y[k];
    for (int i = 0; i <= n; i++) {
        int k = area2 >= 0 ? i : n - i; /* exterior ring counter-clockwise */
        ring[2 * i] = x[k];
        ring[2 * i + 1] = y[k];
        bbox[0] = fmin(bbox[0], x[k]);
        bbox[1] = fmin(bbox[1], y[k]);
        bbox[2] = fmax(bbox[2], x[k]);
        bbox[3] = fmax(bbox[3], y[k]);
    }
    *nv = n;
    return CNP_OK;
}

/* One feature's properties: the tree's values, as trees.json has them. */
static cnp_status feature_props(const pipe_encode_params *p, const pipe_result *r,
                                const cnp_tree *tr, const pipe_geo_tree *g, cnp_spool *out,
                                cnp_err *err)
{
    cJSON *props = cJSON_CreateObject();
    cnp_status result = CNP_ERR_NOMEM;
    char *text = NULL;
    if (props && json_tree(props, tr, g, p, r) &&
        (!p->model_version || cJSON_AddStringToObject(props, "model", p->model_version)) &&
        (text = cJSON_PrintUnformatted(props)))
        result = cnp_spool_write(out, text, strlen(text), err);
    else
        cnp_err_set(err, "out of memory writing trees.geojson");
    cJSON_free(text);
    cJSON_Delete(props);
    return result;
}

/* Written feature by feature (no document tree in memory: a large raster has
 * tens of thousands of crowns of 33 points each). */
static cnp_status trees_geojson(const pipe_encode_params *p, const pipe_encode_in *in,
                                cnp_spool *out, cnp_err *err)
{
    const pipe_result *r = in->r;
    double bbox[4] = {INFINITY, INFINITY, -INFINITY, -INFINITY};
    double ring[2 * (PIPE_RING + 1)];
    char a[32], b[32];
    cnp_status result =
        cnp_spool_printf(out, err, "{\"type\":\"FeatureCollection\",\"features\":[");
    for (size_t i = 0; result == CNP_OK && i < r->ntrees; i++) {
        int nv = PIPE_RING;
        if ((result = crown_ring(in->geo, r, &r->trees[i], ring, &nv, bbox, err)) != CNP_OK) {
            cnp_err_prefix(err, "crown %zu", i);
            return result;
        }
        result = cnp_spool_printf(out, err,
                                  "%s{\"type\":\"Feature\",\"geometry\":{\"type\":"
                                  "\"Polygon\",\"coordinates\":[[",
                                  i ? "," : "");
        for (int k = 0; result == CNP_OK && k <= nv; k++)
            result = cnp_spool_printf(out, err, "%s[%s,%s]", k ? "," : "",
                                      pipe_fmt_double(ring[2 * k], a),
                                      pipe_fmt_double(ring[2 * k + 1], b));
        if (result == CNP_OK)
            result = cnp_spool_printf(out, err, "]]},\"properties\":");
        if (result == CNP_OK)
            result = feature_props(p, r, &r->trees[i], &in->trees_geo[i], out, err);
        if (result == CNP_OK)
            result = cnp_spool_write(out, "}", 1, err);
    }
    if (r->ntrees == 0) /* an empty collection: the footprint's extent */
        for (int i = 0; i < 5; i++) {
            bbox[0] = fmin(bbox[0], in->footprint[2 * i]);
            bbox[1] = fmin(bbox[1], in->footprint[2 * i + 1]);
            bbox[2] = fmax(bbox[2], in->footprint[2 * i]);
            bbox[3] = fmax(bbox[3], in->footprint[2 * i + 1]);
        }
    char c[32], d[32];
    if (result == CNP_OK)
        result = cnp_spool_printf(out, err, "],\"bbox\":[%s,%s,%s,%s]}\n",
                                  pipe_fmt_double(bbox[0], a), pipe_fmt_double(bbox[1], b),
                                  pipe_fmt_double(bbox[2], c), pipe_fmt_double(bbox[3], d));
    if (result != CNP_OK)
        cnp_err_prefix(err, "writing trees.geojson");
    return result;
}

/* ---- overlay ------------------------------------------------------------------- */

cnp_status pipe_overlay_encode(const cnp_output_config *oc, cnp_image *canvas,
                               const cnp_tree *trees, size_t n, float scale, cnp_buf *out,
                               cnp_err *err)
{
    static const uint8_t strong[3] = {255, 230, 0};
    static const uint8_t weak[3] = {255, 120, 0};
    float ring = scale < 1.0f ? 1.0f : 2.0f;
    for (size_t i = 0; i < n; i++) {
        const cnp_tree *t = &trees[i];
        const uint8_t *c = t->score >= 0.5f ? strong : weak;
        if (t->boxed) { /* a box model: its own box */
            img_draw_rect(canvas, t->x0 * scale, t->y0 * scale, t->x1 * scale, t->y1 * scale, c,
                          ring);
            continue;
        }
        float r = t->radius * scale < 1.5f ? 1.5f : t->radius * scale;
        img_draw_circle(canvas, t->x * scale, t->y * scale, r, c, ring);
        img_draw_dot(canvas, t->x * scale, t->y * scale, 1.5f, c);
    }
    return img_png_encode_rgb(canvas, oc->png_level, out, err);
}

/* Draws each crown as a ring (a box model's trees as their boxes) on a copy
 * of the input, easy to read at a glance on green canopy: yellow for
 * confident trees, orange otherwise. */
static cnp_status overlay_png(const cnp_output_config *oc, const cnp_image *img,
                              const pipe_result *r, cnp_buf *out, cnp_err *err)
{
    cnp_image copy;
    cnp_status result = cnp_image_alloc(&copy, img->width, img->height, err);
    if (result != CNP_OK)
        return result;
    memcpy(copy.rgba, img->rgba, (size_t)img->width * img->height * 4);
    result = pipe_overlay_encode(oc, &copy, r->trees, r->ntrees, 1.0f, out, err);
    cnp_image_free(&copy);
    return result;
}

/* The GeoTIFF mask, its input's nodata pixels (alpha 0) marked nodata. */
static cnp_status mask_geotiff(const pipe_encode_in *in, bool geo, cnp_buf *out, cnp_err *err)
{
    const pipe_result *r = in->r;
    size_t n = (size_t)r->width * r->height;
    uint8_t *marked = NULL;
    if (in->nodata && in->img) {
        if (!(marked = malloc(n ? n : 1))) {
            cnp_err_set(err, "out of memory for the GeoTIFF mask");
            return CNP_ERR_NOMEM;
        }
        for (size_t i = 0; i < n; i++)
            marked[i] = in->img->rgba[4 * i + 3] == 0 ? IMG_MASK_NODATA : r->mask[i] ? 255 : 0;
    }
    cnp_status result = img_mask_encode_geotiff(marked ? marked : r->mask, r->width, r->height,
                                                geo ? in->geo : NULL, out, err);
    free(marked);
    return result;
}

/* The overlay's world file and CRS, for a georeferenced input whose
 * overlay was drawn. */
static cnp_status overlay_georef(const pipe_encode_in *in, pipe_outputs *out, cnp_err *err)
{
    const cnp_buf *png = &out->out[PIPE_OUT_OVERLAY].buf;
    uint32_t ow, oh;
    cnp_status result = img_png_probe(png->data, png->len, "overlay", &ow, &oh, err);
    return result == CNP_OK
               ? pipe_encode_overlay_georef(in->geo, in->r, ow, oh,
                                            &out->out[PIPE_OUT_OVERLAY_WLD],
                                            &out->out[PIPE_OUT_OVERLAY_AUX], err)
               : result;
}

cnp_status pipe_encode(const pipe_encode_params *p, const pipe_encode_in *in, pipe_outputs *out,
                       cnp_err *err)
{
    const cnp_output_config *oc = p->output;
    const pipe_result *r = in->r;
    bool geo = in->geo && in->geo->valid;
    bool tif = oc->mask_format == CNP_MASK_TIFF || (oc->mask_format == CNP_MASK_AUTO && geo);
    cnp_status result = CNP_OK;
    /* A raster processed in windows comes with its mask (and overlay
     * preview) already encoded: r->mask and in->img are NULL. */
    if (r->mask && tif)
        result = mask_geotiff(in, geo, &out->out[PIPE_OUT_MASK_TIF].buf, err);
    else if (r->mask)
        result = img_png_encode_mask(r->mask, r->width, r->height, oc->png_level,
                                     &out->out[PIPE_OUT_MASK_PNG].buf, err);
    if (result != CNP_OK ||
        (result = trees_json(p, in, &out->out[PIPE_OUT_TREES_JSON], err)) != CNP_OK)
        goto fail;
    if (geo && (oc->vector & CNP_VECTOR_GEOJSON) &&
        (result = trees_geojson(p, in, &out->out[PIPE_OUT_GEOJSON], err)) != CNP_OK)
        goto fail;
    if (geo && (oc->vector & CNP_VECTOR_GPKG) &&
        (result = pipe_encode_gpkg(p, in, &out->out[PIPE_OUT_GPKG], err)) != CNP_OK)
        goto fail;
    if ((oc->vector & CNP_VECTOR_CSV) &&
        (result = pipe_encode_csv(p, in, &out->out[PIPE_OUT_CSV], err)) != CNP_OK)
        goto fail;
    /* Without a detector there is nothing to draw: no overlay. */
    if (p->detector && oc->overlay && in->img &&
        (result = overlay_png(oc, in->img, r, &out->out[PIPE_OUT_OVERLAY].buf, err)) != CNP_OK)
        goto fail;
    if (geo && out->out[PIPE_OUT_OVERLAY].buf.len &&
        (result = overlay_georef(in, out, err)) != CNP_OK)
        goto fail;
    for (int k = 0; k < PIPE_OUT_COUNT; k++)
        if ((result = cnp_spool_flush(&out->out[k], err)) != CNP_OK)
            goto fail;
    return CNP_OK;
fail:
    cnp_err_prefix(err, "%s", in->image_name);
    pipe_outputs_free(out);
    return result;
}

void pipe_outputs_init(pipe_outputs *o, const char *dir, uint64_t limit)
{
    for (int i = 0; i < PIPE_OUT_COUNT; i++)
        cnp_spool_init(&o->out[i], dir, limit);
}

void pipe_outputs_free(pipe_outputs *o)
{
    if (!o)
        return;
    for (int i = 0; i < PIPE_OUT_COUNT; i++)
        cnp_spool_free(&o->out[i]);
}
