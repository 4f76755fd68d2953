/* Georeferenced fixture rows and exact read-back checks for the GIS tests. */
#include "store/gisdata.h"

#include <math.h>
#include <string.h>

#include "canopy/buf.h"
#include "store/pgtest.h"

/* Escapes in the WKT check the COPY encoding of the new text column. */
static const char crs_a[] = "PROJCRS[\"WGS 84 / UTM zone 12N\",\n\tBASEGEOGCRS[\"WGS 84\"],"
                            "ID[\"EPSG\",32612]]\\";

static void ring(double *fp, double lon0, double lat0, double lon1, double lat1)
{
    const double pts[10] = {lon0, lat0, lon1, lat0, lon1, lat1, lon0, lat1, lon0, lat0};
    memcpy(fp, pts, sizeof pts);
}

static pg_tree geo_tree(double lon, double lat, double radius_m, double map_x, double map_y)
{
    pg_tree t = {.x = 100.5f, .y = 200.25f, .radius = 32.5f, .score = 0.875f};
    t.xmin = 68.0f, t.ymin = 167.75f, t.xmax = 133.0f, t.ymax = 232.75f;
    t.georef = true;
    t.lon = lon, t.lat = lat, t.radius_m = radius_m;
    t.map_x = map_x, t.map_y = map_y;
    t.box_map[0] = map_x - radius_m, t.box_map[1] = map_y - radius_m;
    t.box_map[2] = map_x + radius_m, t.box_map[3] = map_y + radius_m;
    return t;
}

void gis_fixture_make(gis_fixture *f, double shift)
{
    memset(f, 0, sizeof *f);
    /* Tile a. a/2 has no crown radius and odd values that must become NULL. */
    f->a[0] = geo_tree(-110.4975123456789 + shift, 44.9012345678901, 3.25, 539100.123456789,
                       4972500.987654321);
    f->a[0].label = "tree";
    f->a[1] = geo_tree(-110.49495 + shift, 44.903, 5.5, 539300.5, 4972700.5);
    f->a[1].xmin = 0.0f, f->a[1].ymin = 0.0f; /* a box at the corner: still a box */
    f->a[2] = geo_tree(-110.4988 + shift, 44.9031, NAN, 539000.0, INFINITY);
    f->a[2].box_map[1] = NAN;
    f->a[2].label = "snag";
    /* Tile b. */
    f->b[0] = geo_tree(-110.485 + shift, 44.905, 4.0, 540000.0, 4972800.0);
    f->b[1] = geo_tree(-110.4812 + shift, 44.9095, 2.0, 540300.25, 4973300.75);
    /* The PNG: georef values set but georef false, so all of them are NULL;
     * c/1 has an all-zero box, which means none. */
    f->c[0] = geo_tree(-1.0, 1.0, 1.0, 1.0, 1.0);
    f->c[0].georef = false;
    f->c[1] = (pg_tree){.x = 5.0f, .y = 6.0f, .radius = 2.0f, .score = 0.5f};

    static const char *const keys[GIS_IMAGES] = {"yell/tile-a.tif", "yell/tile-b.tif",
                                                 "plain/c.png", "broken/d.tif"};
    for (int i = 0; i < GIS_IMAGES; i++) {
        pg_image_result *r = &f->res[i];
        pg_image_result_init(r);
        r->bucket = "neon";
        r->key = keys[i];
        r->etag = "e1";
        r->model_version = "crown-1.1";
        r->status = PG_IMAGE_OK;
        r->width = 1000;
        r->height = 1000;
        r->threshold = 110;
    }
    pg_image_result *a = &f->res[0], *b = &f->res[1], *c = &f->res[2], *d = &f->res[3];
    a->scan_id = "scan-1", a->address_id = "addr-1";
    a->canopy_cover = 0.4;
    a->georef = true;
    a->epsg = 32612;
    a->crs_wkt = crs_a;
    const double gt_a[6] = {539000.5, 0.1, 0.0, 4973000.25, 0.0, -0.1};
    memcpy(a->geotransform, gt_a, sizeof gt_a);
    ring(a->footprint, -110.50, 44.90, -110.49, 44.91);
    a->nodata_fraction = 0.125;
    a->trees = f->a, a->n_trees = 3;

    b->scan_id = "scan-1", b->address_id = "addr-2";
    b->canopy_cover = 0.2;
    b->georef = true;
    b->epsg = 0; /* a CRS without an EPSG code */
    const double gt_b[6] = {540000.0, 0.1, NAN, 4973000.0, 0.0, -0.1};
    memcpy(b->geotransform, gt_b, sizeof gt_b);
    ring(b->footprint, -110.49, 44.90, -110.48, 44.91);
    b->trees = f->b, b->n_trees = 2;

    c->scan_id = "scan-2";
    c->canopy_cover = 0.5;
    c->georef = false; /* everything georeferenced below is ignored */
    c->epsg = 4326;
    c->crs_wkt = "ignored";
    ring(c->footprint, 1, 1, 2, 2);
    c->nodata_fraction = 0.0;
    c->trees = f->c, c->n_trees = 2;

    d->status = PG_IMAGE_FAILED;
    d->error = "GDAL: not a TIFF";
    d->width = d->height = -1;
    d->threshold = NAN;
}

/* One value of a one-row query with $1 = key, $2 = idx (or NULL); NULL: NULL. */
static char *value_of(PGconn *c, const char *sql, const char *key, int idx)
{
    char idx_s[16];
    snprintf(idx_s, sizeof idx_s, "%d", idx);
    const char *vals[2] = {key, idx_s};
    PGresult *res = PQexecParams(c, sql, idx >= 0 ? 2 : 1, NULL, vals, NULL, NULL, 0);
    CHECK(PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1, "%s [%s %d]: %s",
          sql, key, idx, PQresultErrorMessage(res));
    char *v = PQgetisnull(res, 0, 0) ? NULL : strdup(PQgetvalue(res, 0, 0));
    PQclear(res);
    return v;
}

/* Compares column `col` (an expression over t and i) with want: NAN means SQL NULL. */
static void expect_num(PGconn *c, const char *col, const char *key, int idx, double want,
                       bool real)
{
    char sql[512];
    if (idx >= 0)
        snprintf(sql, sizeof sql,
                 "SELECT %s FROM trees t JOIN images i ON i.id = t.image_ref "
                 "WHERE i.key = $1 AND t.idx = $2",
                 col);
    else
        snprintf(sql, sizeof sql, "SELECT %s FROM images i WHERE i.key = $1", col);
    char *got = value_of(c, sql, key, idx);
    if (isnan(want)) {
        CHECK(!got, "%s of %s/%d: expected NULL, got %s", col, key, idx, got);
        return;
    }
    CHECK(got, "%s of %s/%d is NULL, want %.17g", col, key, idx, want);
    bool same = real ? strtof(got, NULL) == (float)want : strtod(got, NULL) == want;
    CHECK(same, "%s of %s/%d: got %s want %.17g", col, key, idx, got, want);
    free(got);
}

static void expect_null(PGconn *c, const char *col, const char *key, int idx)
{
    expect_num(c, col, key, idx, NAN, false);
}

static double geo(const pg_tree *t, double v)
{
    return t->georef && isfinite(v) ? v : NAN;
}

static void check_tree(PGconn *c, const char *key, int idx, const pg_tree *t)
{
    bool box = t->xmin != 0 || t->ymin != 0 || t->xmax != 0 || t->ymax != 0;
    expect_num(c, "t.x", key, idx, t->x, true);
    expect_num(c, "t.radius", key, idx, t->radius, true);
    expect_num(c, "t.box_xmin", key, idx, box ? t->xmin : NAN, true);
    expect_num(c, "t.box_ymin", key, idx, box ? t->ymin : NAN, true);
    expect_num(c, "t.box_xmax", key, idx, box ? t->xmax : NAN, true);
    expect_num(c, "t.box_ymax", key, idx, box ? t->ymax : NAN, true);
    expect_num(c, "t.map_x", key, idx, geo(t, t->map_x), false);
    expect_num(c, "t.map_y", key, idx, geo(t, t->map_y), false);
    expect_num(c, "t.lon", key, idx, geo(t, t->lon), false);
    expect_num(c, "t.lat", key, idx, geo(t, t->lat), false);
    expect_num(c, "t.radius_m", key, idx, geo(t, t->radius_m), false);
    if (!t->georef) {
        expect_null(c, "t.box_map", key, idx);
    } else {
        expect_num(c, "cardinality(t.box_map)", key, idx, 4, false);
        for (int k = 0; k < 4; k++) {
            char col[32];
            snprintf(col, sizeof col, "t.box_map[%d]", k + 1);
            expect_num(c, col, key, idx, geo(t, t->box_map[k]), false);
        }
    }
    char *label = value_of(c,
                           "SELECT t.label FROM trees t JOIN images i ON i.id = t.image_ref "
                           "WHERE i.key = $1 AND t.idx = $2",
                           key, idx);
    CHECK(t->label ? label && !strcmp(label, t->label) : !label, "label of %s/%d: %s", key,
          idx, label ? label : "NULL");
    free(label);
}

void gis_check_values(PGconn *c, const gis_fixture *f)
{
    for (int i = 0; i < GIS_IMAGES; i++) {
        const pg_image_result *r = &f->res[i];
        bool g = r->georef;
        expect_num(c, "i.epsg", r->key, -1, g && r->epsg > 0 ? r->epsg : NAN, false);
        expect_num(c, "i.nodata_fraction", r->key, -1, r->nodata_fraction, false);
        expect_num(c, "i.canopy_cover", r->key, -1, r->canopy_cover, false);
        char *crs = value_of(c, "SELECT crs FROM images WHERE key = $1", r->key, -1);
        const char *want = g ? r->crs_wkt : NULL;
        CHECK(want ? crs && !strcmp(crs, want) : !crs, "crs of %s: [%s]", r->key,
              crs ? crs : "NULL");
        free(crs);
        if (!g) {
            expect_null(c, "i.geotransform", r->key, -1);
            expect_null(c, "i.footprint_lonlat", r->key, -1);
        } else {
            for (int k = 0; k < 6; k++) {
                char col[40];
                snprintf(col, sizeof col, "i.geotransform[%d]", k + 1);
                expect_num(c, col, r->key, -1, r->geotransform[k], false);
            }
            for (int k = 0; k < 10; k++) {
                char col[40];
                snprintf(col, sizeof col, "i.footprint_lonlat[%d]", k + 1);
                expect_num(c, col, r->key, -1, r->footprint[k], false);
            }
        }
        char sql[160];
        snprintf(sql, sizeof sql,
                 "SELECT count(*) FROM trees t JOIN images i ON i.id = t.image_ref "
                 "WHERE i.key = '%s'", r->key);
        CHECK(pgt_int(c, sql) == (r->status == PG_IMAGE_OK ? (long long)r->n_trees : 0),
              "trees of %s", r->key);
        for (size_t t = 0; t < r->n_trees && r->status == PG_IMAGE_OK; t++)
            check_tree(c, r->key, (int)t, &r->trees[t]);
    }
}

char *gis_rows(PGconn *c, const char *sql, int ncols)
{
    PGresult *res = PQexec(c, sql);
    CHECK(PQresultStatus(res) == PGRES_TUPLES_OK, "%s: %s", sql, PQresultErrorMessage(res));
    cnp_buf out = {0};
    for (int r = 0; r < PQntuples(res); r++) {
        for (int col = 0; col < ncols && col < PQnfields(res); col++) {
            if (col)
                cnp_buf_append(&out, "|", 1);
            const char *v = PQgetisnull(res, r, col) ? "<NULL>" : PQgetvalue(res, r, col);
            cnp_buf_append(&out, v, strlen(v));
        }
        cnp_buf_append(&out, "\n", 1);
    }
    cnp_buf_append(&out, "", 1);
    PQclear(res);
    return (char *)out.data;
}

void gis_require_in_readme(const char *sql)
{
    FILE *fp = fopen(CANOPY_SOURCE_DIR "/README.md", "rb");
    CHECK(fp, "cannot open %s", CANOPY_SOURCE_DIR "/README.md");
    cnp_buf text = {0};
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, fp)) > 0)
        cnp_buf_append(&text, chunk, n);
    fclose(fp);
    cnp_buf_append(&text, "", 1);
    CHECK(strstr((const char *)text.data, sql), "README.md lacks this query verbatim:\n%s", sql);
    cnp_buf_free(&text);
}

int gis_failures(void)
{
    return g_failures;
}
