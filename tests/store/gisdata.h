/* Georeferenced rows for the GIS tests (test_store_gis, test_store_nogis),
 * and the queries the README's "GIS queries" section shows, verbatim. */
#ifndef CANOPY_TESTS_GISDATA_H
#define CANOPY_TESTS_GISDATA_H

#include <libpq-fe.h>

#include "canopy/store.h"

/* Four results: two adjacent georeferenced tiles (a: lon -110.50..-110.49,
 * b: -110.49..-110.48, both lat 44.90..44.91), a plain PNG whose georef
 * values must be ignored, and a failure. The polygon of the queries is the
 * south-west quarter of tile a: trees a/0 and a/2 lie inside it, a/1 lies
 * just east of it with its crown across the edge. */
enum { GIS_IMAGES = 4 };

typedef struct gis_fixture {
    pg_image_result res[GIS_IMAGES];
    pg_tree a[3], b[2], c[2];
} gis_fixture;

/* Fills f; `shift` is added to every tree's longitude (0 for the standard
 * rows; another value to check that a re-commit moves the geometry). */
void gis_fixture_make(gis_fixture *f, double shift);

/* Checks every stored value of every result against f (exact for numbers,
 * SQL NULL where the store promises it). */
void gis_check_values(PGconn *c, const gis_fixture *f);

/* The CHECKs of gisdata.c that failed (testutil.h counts per translation
 * unit): a test using gis_check_values adds this to its own result. */
int gis_failures(void);

/* The first `ncols` columns of all rows of sql, '|' between, one line a row. */
char *gis_rows(PGconn *c, const char *sql, int ncols);

/* Exits 1 unless README.md contains sql verbatim (the README stays true). */
void gis_require_in_readme(const char *sql);

/* ---- the README's queries ---- */

#define GIS_Q_WITHIN                                                                       \
    "SELECT i.key, t.idx, t.lon, t.lat, t.radius_m\n"                                      \
    "FROM trees t JOIN images i ON i.id = t.image_ref\n"                                   \
    "WHERE ST_Within(t.geom, ST_GeomFromText(\n"                                           \
    "  'POLYGON((-110.5 44.9, -110.495 44.9, -110.495 44.905, -110.5 44.905, -110.5 44.9))',\n" \
    "  4326))\n"                                                                           \
    "ORDER BY i.key, t.idx;"

#define GIS_Q_CROWNS                                                                       \
    "SELECT i.key, t.idx, ST_Area(t.crown::geography) AS crown_m2\n"                       \
    "FROM trees t JOIN images i ON i.id = t.image_ref\n"                                   \
    "WHERE ST_Intersects(t.crown, ST_GeomFromText(\n"                                      \
    "  'POLYGON((-110.5 44.9, -110.495 44.9, -110.495 44.905, -110.5 44.905, -110.5 44.9))',\n" \
    "  4326))\n"                                                                           \
    "ORDER BY i.key, t.idx;"

#define GIS_Q_BBOX                                                                         \
    "SELECT i.key, t.idx, t.lon, t.lat, t.radius_m\n"                                      \
    "FROM trees t JOIN images i ON i.id = t.image_ref\n"                                   \
    "WHERE t.lat BETWEEN 44.9 AND 44.905 AND t.lon BETWEEN -110.5 AND -110.495\n"          \
    "ORDER BY i.key, t.idx;"

#define GIS_Q_PER_ADDRESS                                                                  \
    "SELECT i.scan_id, i.address_id, count(t.*) AS trees,\n"                               \
    "       sum(pi() * t.radius_m ^ 2) AS crown_m2\n"                                      \
    "FROM images i LEFT JOIN trees t ON t.image_ref = i.id\n"                              \
    "WHERE i.status = 'ok'\n"                                                              \
    "GROUP BY i.scan_id, i.address_id ORDER BY i.scan_id, i.address_id;"

#define GIS_Q_COVER_POLYGON                                                                \
    "WITH area AS (\n"                                                                     \
    "  SELECT ST_GeomFromText(\n"                                                          \
    "    'POLYGON((-110.5 44.9, -110.485 44.9, -110.485 44.91, -110.5 44.91, -110.5 44.9))',\n" \
    "    4326) AS g),\n"                                                                   \
    "part AS (\n"                                                                          \
    "  SELECT i.canopy_cover,\n"                                                           \
    "         ST_Area(ST_Intersection(i.footprint, area.g)::geography) AS m2\n"            \
    "  FROM images i, area\n"                                                              \
    "  WHERE i.status = 'ok' AND i.canopy_cover IS NOT NULL\n"                             \
    "    AND ST_Intersects(i.footprint, area.g))\n"                                        \
    "SELECT sum(canopy_cover * m2) / sum(m2) AS canopy_cover, sum(m2) AS imaged_m2\n"      \
    "FROM part;"

#define GIS_Q_COVER_IMAGES                                                                 \
    "SELECT key, canopy_cover, ST_Area(footprint::geography) AS footprint_m2,\n"           \
    "       canopy_cover * ST_Area(footprint::geography) AS canopy_m2\n"                   \
    "FROM images\n"                                                                        \
    "WHERE status = 'ok' AND footprint IS NOT NULL\n"                                      \
    "ORDER BY key;"

#define GIS_Q_CROWN_COVER                                                                  \
    "WITH area AS (\n"                                                                     \
    "  SELECT ST_GeomFromText(\n"                                                          \
    "    'POLYGON((-110.5 44.9, -110.495 44.9, -110.495 44.905, -110.5 44.905, -110.5 44.9))',\n" \
    "    4326) AS g)\n"                                                                    \
    "SELECT ST_Area(ST_Intersection(ST_Union(t.crown), area.g)::geography)\n"              \
    "       / ST_Area(area.g::geography) AS crown_cover\n"                                 \
    "FROM area JOIN trees t ON ST_Intersects(t.crown, area.g)\n"                           \
    "GROUP BY area.g;"

#endif
