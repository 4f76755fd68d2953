/* Georeferenced results with PostGIS: every new field round-trips exactly,
 * geometry columns exist and are right at COMMIT (points, crowns,
 * footprints), a re-commit moves them, and the README's GIS queries run and
 * answer what the rows say. Skipped (77) when the server does not offer
 * PostGIS, unless CANOPY_TEST_REQUIRE_STACK=1. */
#include <math.h>
#include <string.h>

#include "canopy/store.h"
#include "store/gisdata.h"
#include "store/pgtest.h"

#define P_WKT                                                                          \
    "'POLYGON((-110.5 44.9, -110.495 44.9, -110.495 44.905, -110.5 44.905, -110.5 44.9))'"

#define GEO_DUMP                                                                        \
    "SELECT i.key, ST_AsEWKT(i.footprint), t.idx, ST_AsEWKT(t.geom), ST_AsEWKT(t.crown) " \
    "FROM images i LEFT JOIN trees t ON t.image_ref = i.id ORDER BY i.key, t.idx"

static void require_postgis(void)
{
    PGconn *c = pgt_connect("");
    long long n = pgt_int(c, "SELECT count(*) FROM pg_available_extensions "
                             "WHERE name = 'postgis'");
    PQfinish(c);
    if (n > 0)
        return;
    const char *req = getenv("CANOPY_TEST_REQUIRE_STACK");
    CHECK(!(req && !strcmp(req, "1")),
          "the stack's PostgreSQL has no PostGIS: install postgresql-15-postgis-3 "
          "(scripts/bootstrap.sh)");
    fprintf(stderr, "skipped: the server offers no postgis extension\n");
    exit(77);
}

static void commit(pg_store *s, const gis_fixture *f)
{
    cnp_err err = {{0}};
    cnp_status st = pg_chunk_commit(s, 0, f->res, GIS_IMAGES, &err);
    CHECK(st == CNP_OK, "commit: %s: %s", cnp_status_name(st), err.msg);
}

/* A float8 from a one-row, one-column query. */
static double num(PGconn *c, const char *sql)
{
    PGresult *res = PQexec(c, sql);
    CHECK(PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1 &&
              !PQgetisnull(res, 0, 0),
          "%s: %s", sql, PQresultErrorMessage(res));
    double v = strtod(PQgetvalue(res, 0, 0), NULL);
    PQclear(res);
    return v;
}

static void check_schema(pg_store *s, PGconn *c)
{
    CHECK(pgt_int(c, "SELECT count(*) FROM canopy_features WHERE feature = 'postgis' "
                     "AND enabled AND detail LIKE 'PostGIS 3%'") == 1,
          "canopy_features:\n%s", pgt_dump(c, "SELECT * FROM canopy_features"));
    bool has = false;
    cnp_err err = {{0}};
    CHECK(pg_store_has_postgis(s, &has, &err) == CNP_OK && has, "has_postgis: %s", err.msg);
    CHECK(pgt_int(c, "SELECT count(*) FROM geometry_columns WHERE srid = 4326 AND "
                     "((f_table_name = 'trees' AND f_geometry_column = 'geom' AND type = 'POINT')"
                     " OR (f_table_name = 'trees' AND f_geometry_column = 'crown' AND "
                     "type = 'POLYGON') OR (f_table_name = 'images' AND "
                     "f_geometry_column = 'footprint' AND type = 'POLYGON'))") == 3,
          "geometry columns");
    CHECK(pgt_int(c, "SELECT count(*) FROM pg_indexes WHERE schemaname = 'public' AND "
                     "indexname IN ('trees_geom_idx', 'trees_crown_idx', "
                     "'images_footprint_idx') AND indexdef LIKE '%USING gist%'") == 3,
          "GIST indexes");
}

static void check_geometry(PGconn *c)
{
    CHECK(pgt_int(c, "SELECT count(geom) FROM trees") == 5, "points of georeferenced trees");
    CHECK(pgt_int(c, "SELECT count(*) FROM trees WHERE (geom IS NULL) <> (lon IS NULL) OR "
                     "ST_X(geom) <> lon OR ST_Y(geom) <> lat OR ST_SRID(geom) <> 4326") == 0,
          "geom is (lon, lat):\n%s", pgt_dump(c, "SELECT lon, lat, ST_AsEWKT(geom) FROM trees"));
    /* Crowns: of every tree with a radius, 33 points (closed 32-gon), each
     * radius_m metres from the centre on the ellipsoid. */
    CHECK(pgt_int(c, "SELECT count(crown) FROM trees") == 4, "crowns");
    CHECK(pgt_int(c, "SELECT count(*) FROM trees WHERE crown IS NOT NULL AND "
                     "(NOT ST_Contains(crown, geom) OR ST_NPoints(crown) <> 33 OR "
                     "ST_SRID(crown) <> 4326 OR NOT ST_IsValid(crown))") == 0,
          "crown shape");
    CHECK(pgt_int(c, "SELECT count(*) FROM trees t, ST_DumpPoints(t.crown) p "
                     "WHERE abs(ST_Distance(p.geom::geography, t.geom::geography) "
                     "/ t.radius_m - 1) > 1e-4") == 0,
          "crown vertices are radius_m from the centre:\n%s",
          pgt_dump(c, "SELECT t.radius_m, ST_Distance(p.geom::geography, t.geom::geography) "
                      "FROM trees t, ST_DumpPoints(t.crown) p"));
    /* Footprints: the rings given, tile a holds its own three trees only. */
    CHECK(pgt_int(c, "SELECT count(footprint) FROM images") == 2, "footprints");
    CHECK(pgt_int(c, "SELECT count(*) FROM images WHERE key = 'yell/tile-a.tif' AND "
                     "ST_Equals(footprint, ST_MakeEnvelope(-110.5, 44.9, -110.49, 44.91, "
                     "4326)) AND ST_SRID(footprint) = 4326") == 1,
          "footprint of a");
    CHECK(pgt_int(c, "SELECT count(*) FROM trees t JOIN images i ON i.id = t.image_ref, "
                     "images fa WHERE fa.key = 'yell/tile-a.tif' AND "
                     "ST_Contains(fa.footprint, t.geom) AND i.key = 'yell/tile-a.tif'") == 3,
          "trees of a inside its footprint");
    CHECK(pgt_int(c, "SELECT count(*) FROM trees t, images fa WHERE fa.key = "
                     "'yell/tile-a.tif' AND ST_Contains(fa.footprint, t.geom)") == 3,
          "no tree of b inside a's footprint");
}

static void check_queries(PGconn *c)
{
    const char *queries[] = {GIS_Q_WITHIN, GIS_Q_CROWNS, GIS_Q_BBOX, GIS_Q_PER_ADDRESS,
                             GIS_Q_COVER_POLYGON, GIS_Q_COVER_IMAGES, GIS_Q_CROWN_COVER};
    for (size_t q = 0; q < sizeof queries / sizeof queries[0]; q++)
        gis_require_in_readme(queries[q]);

    char *rows = gis_rows(c, GIS_Q_WITHIN, 2);
    CHECK(!strcmp(rows, "yell/tile-a.tif|0\nyell/tile-a.tif|2\n"), "within:\n%s", rows);
    free(rows);
    rows = gis_rows(c, GIS_Q_BBOX, 2);
    CHECK(!strcmp(rows, "yell/tile-a.tif|0\nyell/tile-a.tif|2\n"), "bbox:\n%s", rows);
    free(rows);
    /* a/1's centre is east of the polygon, its crown reaches into it. */
    rows = gis_rows(c, GIS_Q_CROWNS, 2);
    CHECK(!strcmp(rows, "yell/tile-a.tif|0\nyell/tile-a.tif|1\n"), "crowns:\n%s", rows);
    free(rows);
    rows = gis_rows(c, GIS_Q_PER_ADDRESS, 3);
    CHECK(!strcmp(rows, "scan-1|addr-1|3\nscan-1|addr-2|2\nscan-2|<NULL>|2\n"),
          "per address:\n%s", rows);
    free(rows);

    /* All of a (0.4) and the western half of b (0.2): (0.4 + 0.1) / 1.5. */
    double area_a = num(c, "SELECT ST_Area(ST_MakeEnvelope(-110.5, 44.9, -110.49, 44.91, "
                           "4326)::geography)");
    PGresult *res = PQexec(c, GIS_Q_COVER_POLYGON);
    CHECK(PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1, "cover: %s",
          PQresultErrorMessage(res));
    double cover = strtod(PQgetvalue(res, 0, 0), NULL);
    double imaged = strtod(PQgetvalue(res, 0, 1), NULL);
    PQclear(res);
    CHECK(fabs(cover - 1.0 / 3.0) < 1e-6 && fabs(imaged / (1.5 * area_a) - 1) < 1e-6,
          "cover of the polygon %.9f over %.1f m2 (a: %.1f m2)", cover, imaged, area_a);
    /* 0.01 degrees square at 44.905 N: about 787 m by 1111 m. */
    CHECK(fabs(area_a / (0.01 * 78870.0 * 0.01 * 111142.0) - 1) < 0.005, "area of a %.1f",
          area_a);

    res = PQexec(c, GIS_Q_COVER_IMAGES);
    CHECK(PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 2, "per image: %s",
          PQresultErrorMessage(res));
    CHECK(!strcmp(PQgetvalue(res, 0, 0), "yell/tile-a.tif") &&
              fabs(strtod(PQgetvalue(res, 0, 2), NULL) / area_a - 1) < 1e-9 &&
              fabs(strtod(PQgetvalue(res, 0, 3), NULL) / (0.4 * area_a) - 1) < 1e-9 &&
              !strcmp(PQgetvalue(res, 1, 0), "yell/tile-b.tif") &&
              fabs(strtod(PQgetvalue(res, 1, 3), NULL) / (0.2 * area_a) - 1) < 1e-6,
          "per image footprint rows");
    PQclear(res);

    /* Crown cover: all of a/0's crown and part of a/1's. */
    double p_area = num(c, "SELECT ST_Area(ST_GeomFromText(" P_WKT ", 4326)::geography)");
    double a0 = num(c, "SELECT ST_Area(crown::geography) FROM trees t JOIN images i ON "
                       "i.id = t.image_ref WHERE i.key = 'yell/tile-a.tif' AND t.idx = 0");
    double a1 = num(c, "SELECT ST_Area(crown::geography) FROM trees t JOIN images i ON "
                       "i.id = t.image_ref WHERE i.key = 'yell/tile-a.tif' AND t.idx = 1");
    double crown_cover = num(c, GIS_Q_CROWN_COVER);
    CHECK(crown_cover > (a0 + 0.05 * a1) / p_area && crown_cover < (a0 + 0.5 * a1) / p_area,
          "crown cover %.9g (a/0 %.3f m2, a/1 %.3f m2, polygon %.1f m2)", crown_cover, a0, a1,
          p_area);
    /* A 32-gon of radius r: 16 sin(pi/16) r^2 = 0.9936 pi r^2. */
    CHECK(fabs(a0 / (16 * sin(M_PI / 16) * 3.25 * 3.25) - 1) < 1e-3, "crown area %.4f", a0);
}

int main(void)
{
    pgt_require_stack();
    require_postgis();
    const char *ci = pgt_db_create();
    pg_store *s = pgt_store_open(ci);
    PGconn *c = pgt_connect(ci);
    check_schema(s, c);

    gis_fixture f;
    gis_fixture_make(&f, 0);
    commit(s, &f);
    gis_check_values(c, &f);
    check_geometry(c);

    /* Applying the same chunk again leaves the same rows and shapes. */
    char *before = pgt_dump(c, GEO_DUMP);
    commit(s, &f);
    char *after = pgt_dump(c, GEO_DUMP);
    CHECK(!strcmp(before, after), "re-apply changed geometry:\n%s\nvs\n%s", before, after);
    free(after);

    /* A new result for the same object versions moves points, crowns and the
     * footprint (ON CONFLICT updates it). A store told not to use PostGIS
     * still fills the columns the database has. */
    gis_fixture moved;
    gis_fixture_make(&moved, 0.001);
    for (int k = 0; k < 10; k += 2)
        moved.res[0].footprint[k] += 0.001;
    pg_store *s2 = NULL;
    cnp_err err = {{0}};
    CHECK(pg_store_open(ci, &s2, &err) == CNP_OK, "open: %s", err.msg);
    pg_store_set_postgis(s2, false);
    commit(s2, &moved);
    pg_store_free(s2);
    gis_check_values(c, &moved);
    CHECK(pgt_int(c, "SELECT count(*) FROM trees WHERE ST_X(geom) = lon AND ST_Y(geom) = lat "
                     "AND lon > -110.4975 AND lon < -110.4965") == 1,
          "moved point:\n%s", pgt_dump(c, GEO_DUMP));
    CHECK(pgt_int(c, "SELECT count(*) FROM images WHERE key = 'yell/tile-a.tif' AND "
                     "ST_Equals(footprint, ST_MakeEnvelope(footprint_lonlat[1], "
                     "footprint_lonlat[2], footprint_lonlat[5], footprint_lonlat[6], 4326)) "
                     "AND abs(ST_XMin(footprint) + 110.499) < 1e-9") == 1,
          "moved footprint:\n%s", pgt_dump(c, GEO_DUMP));
    commit(s, &f);
    after = pgt_dump(c, GEO_DUMP);
    CHECK(!strcmp(before, after), "moving back:\n%s\nvs\n%s", before, after);
    free(before);
    free(after);

    check_queries(c);
    PQfinish(c);
    pg_store_free(s);
    /* The non-fatal CHECKs above and in gisdata.c decide (it used to
     * return 0 whatever they found). */
    int failed = TEST_RESULT() || gis_failures();
    if (gis_failures())
        fprintf(stderr, "%d check(s) of gisdata.c failed\n", gis_failures());
    if (!failed)
        printf("ok\n");
    return failed;
}
