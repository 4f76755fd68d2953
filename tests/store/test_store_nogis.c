/* The store without PostGIS (pg_store_set_postgis(store, false), as on a
 * server that does not offer it): the georef migration still applies, no
 * extension and no geometry columns are created, canopy_features says why,
 * every new field round-trips with lon/lat filled, the README's lon/lat
 * bounding-box query answers, and a later store that would use PostGIS
 * follows what the database records. A role that may not create the
 * extension gets the same plain schema. */
#include <string.h>

#include "canopy/store.h"
#include "store/gisdata.h"
#include "store/pgtest.h"

static void commit(pg_store *s, const gis_fixture *f)
{
    cnp_err err = {{0}};
    cnp_status st = pg_chunk_commit(s, 0, f->res, GIS_IMAGES, &err);
    CHECK(st == CNP_OK, "commit: %s: %s", cnp_status_name(st), err.msg);
}

static void check_plain_schema(pg_store *s, PGconn *c)
{
    CHECK(pgt_int(c, "SELECT max(version) FROM schema_migrations") == pg_store_schema_latest(),
          "migrated");
    CHECK(pgt_int(c, "SELECT count(*) FROM canopy_features WHERE feature = 'postgis' AND "
                     "NOT enabled AND detail LIKE 'switched off%'") == 1,
          "canopy_features:\n%s", pgt_dump(c, "SELECT * FROM canopy_features"));
    CHECK(pgt_int(c, "SELECT count(*) FROM pg_extension WHERE extname = 'postgis'") == 0,
          "no extension");
    CHECK(pgt_int(c, "SELECT count(*) FROM information_schema.columns WHERE "
                     "table_schema = 'public' AND column_name IN ('geom', 'crown', "
                     "'footprint')") == 0,
          "no geometry columns");
    CHECK(pgt_int(c, "SELECT count(*) FROM information_schema.columns WHERE "
                     "table_schema = 'public' AND (table_name, column_name) IN "
                     "(('trees', 'lon'), ('trees', 'lat'), ('trees', 'box_xmin'), "
                     "('trees', 'box_map'), ('images', 'epsg'), ('images', 'crs'), "
                     "('images', 'footprint_lonlat'), ('images', 'nodata_fraction'))") == 8,
          "new plain columns");
    CHECK(pgt_int(c, "SELECT count(*) FROM pg_indexes WHERE indexname = "
                     "'trees_lat_lon_idx'") == 1,
          "lat/lon index");
    bool has = true;
    cnp_err err = {{0}};
    CHECK(pg_store_has_postgis(s, &has, &err) == CNP_OK && !has, "has_postgis: %s", err.msg);
}

/* A role that may not create extensions (a plain RDS user) gets the plain
 * schema, with the reason recorded, instead of a failed migration. */
static void test_unprivileged(const char *ci)
{
    PGconn *admin = pgt_connect(ci);
    char role[48];
    snprintf(role, sizeof role, "%s_role", strchr(ci, '=') + 1);
    char sql[512];
    snprintf(sql, sizeof sql,
             "DROP SCHEMA public CASCADE; CREATE ROLE %s LOGIN; "
             "CREATE SCHEMA public AUTHORIZATION %s",
             role, role);
    PGresult *res = PQexec(admin, sql);
    CHECK(PQresultStatus(res) == PGRES_COMMAND_OK, "%s: %s", sql, PQresultErrorMessage(res));
    PQclear(res);
    char user_ci[160];
    snprintf(user_ci, sizeof user_ci, "%s user=%s", ci, role);
    pg_store *s = pgt_store_open(user_ci); /* PostGIS allowed, but not for this role */
    CHECK(pgt_int(admin, "SELECT count(*) FROM canopy_features WHERE feature = 'postgis' AND "
                         "NOT enabled AND detail LIKE 'CREATE EXTENSION postgis: %denied%'")
              == 1,
          "canopy_features:\n%s", pgt_dump(admin, "SELECT * FROM canopy_features"));
    CHECK(pgt_int(admin, "SELECT count(*) FROM pg_extension WHERE extname = 'postgis'") == 0,
          "no extension");
    gis_fixture f;
    gis_fixture_make(&f, 0);
    commit(s, &f);
    gis_check_values(admin, &f);
    pg_store_free(s);
    snprintf(sql, sizeof sql, "DROP SCHEMA public CASCADE; CREATE SCHEMA public; DROP ROLE %s",
             role);
    res = PQexec(admin, sql);
    CHECK(PQresultStatus(res) == PGRES_COMMAND_OK, "%s: %s", sql, PQresultErrorMessage(res));
    PQclear(res);
    PQfinish(admin);
}

int main(void)
{
    pgt_require_stack();
    const char *ci = pgt_db_create();
    pg_store *s = NULL;
    cnp_err err = {{0}};
    CHECK(pg_store_open(ci, &s, &err) == CNP_OK, "open: %s", err.msg);
    bool has = true;
    CHECK(pg_store_has_postgis(s, &has, &err) == CNP_OK && !has, "before migrating: %s",
          err.msg);
    pg_store_set_postgis(s, false);
    CHECK(pg_store_migrate(s, NULL, NULL, &err) == CNP_OK, "migrate: %s", err.msg);
    PGconn *c = pgt_connect(ci);
    check_plain_schema(s, c);

    gis_fixture f;
    gis_fixture_make(&f, 0);
    commit(s, &f);
    gis_check_values(c, &f);
    CHECK(pgt_int(c, "SELECT count(*) FROM trees WHERE lon IS NOT NULL AND lat IS NOT NULL")
              == 5, "lon/lat filled");
    gis_require_in_readme(GIS_Q_BBOX);
    char *rows = gis_rows(c, GIS_Q_BBOX, 2);
    CHECK(!strcmp(rows, "yell/tile-a.tif|0\nyell/tile-a.tif|2\n"), "bbox:\n%s", rows);
    free(rows);
    pg_store_free(s);

    /* A worker that would use PostGIS finds the schema done without it:
     * nothing to migrate, and its commits write the plain columns. */
    s = pgt_store_open(ci);
    check_plain_schema(s, c);
    gis_fixture moved;
    gis_fixture_make(&moved, 0.001);
    commit(s, &moved);
    gis_check_values(c, &moved);
    pg_store_free(s);
    PQfinish(c);
    test_unprivileged(ci);
    /* The non-fatal CHECKs above and in gisdata.c decide (it used to
     * return 0 whatever they found). */
    int failed = TEST_RESULT() || gis_failures();
    if (gis_failures())
        fprintf(stderr, "%d check(s) of gisdata.c failed\n", gis_failures());
    if (!failed)
        printf("ok\n");
    return failed;
}
