/* The bulk write path: one transaction per chunk, COPY into staging tables,
 * idempotent upsert into images, replace of trees. And the batch lookup used
 * to skip object versions already processed. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "canopy/log.h"
#include "canopy/rand.h"
#include "store/pg_internal.h"

#define CHUNK_MAX_ATTEMPTS 6
#define CHUNK_RETRY_BASE_MS 20

/* Temporary tables live until the end of the transaction, so a retried or
 * reconnected attempt starts clean and concurrent sessions never share them. */
static const char stage_sql[] =
    "BEGIN;\n"
    "CREATE TEMP TABLE canopy_stage_images (\n"
    "  ord integer, bucket text, key text, etag text, model_version text,\n"
    "  image_id text, scan_id text, address_id text, tree_types text[],\n"
    "  width integer, height integer, threshold real, canopy_cover double precision,\n"
    "  tree_count integer, mask_key text, overlay_key text, trees_key text,\n"
    "  status text, error text, download_ms real, decode_ms real, device_ms real,\n"
    "  encode_ms real, upload_ms real, run_id bigint, epsg integer, crs text,\n"
    "  geotransform double precision[], footprint_lonlat double precision[],\n"
    "  nodata_fraction double precision, type_counts jsonb, classifier_version text)\n"
    "  ON COMMIT DROP;\n"
    "CREATE TEMP TABLE canopy_stage_trees (\n"
    "  ord integer, idx integer, x real, y real, radius real, score real, label text,\n"
    "  box_xmin real, box_ymin real, box_xmax real, box_ymax real,\n"
    "  map_x double precision, map_y double precision, lon double precision,\n"
    "  lat double precision, radius_m double precision, box_map double precision[],\n"
    "  type text, type_score real)\n"
    "  ON COMMIT DROP;\n"
    "CREATE TEMP TABLE canopy_stage_map (ord integer, id bigint) ON COMMIT DROP;\n";

#define IMAGE_COLUMNS                                                                       \
    "bucket, key, etag, model_version, image_id, scan_id, address_id, tree_types, width, " \
    "height, threshold, canopy_cover, tree_count, mask_key, overlay_key, trees_key, "      \
    "status, error, download_ms, decode_ms, device_ms, encode_ms, upload_ms, run_id, "     \
    "epsg, crs, geotransform, footprint_lonlat, nodata_fraction, type_counts, "              \
    "classifier_version"

#define TREE_COLUMNS                                                                    \
    "idx, x, y, radius, score, label, box_xmin, box_ymin, box_xmax, box_ymax, map_x, " \
    "map_y, lon, lat, radius_m, box_map, type, type_score"

/* Rows go in `ord` order (sorted by key on the client) so that concurrent
 * writers take row locks in the same order. A failure does not overwrite a
 * success of the same object version; such rows are not RETURNED, so their
 * trees are left alone too. The temporary tables have no statistics: the
 * delete goes through an id array so that it is always an index lookup on
 * trees' primary key, never a scan of the whole table.
 * With PostGIS (see canopy_features) the geometry columns are computed in
 * the same statements, so every row has them at COMMIT. */
#define UPSERT_SQL(FP_COL, FP_EXPR, FP_SET, GEO_COLS, GEO_EXPRS, GEO_JOIN)                  \
    "WITH up AS (\n"                                                                        \
    "  INSERT INTO images (" IMAGE_COLUMNS ", processed_at" FP_COL ")\n"                    \
    "  SELECT " IMAGE_COLUMNS ", now()" FP_EXPR " FROM canopy_stage_images ORDER BY ord\n"  \
    "  ON CONFLICT (bucket, key, etag, model_version) DO UPDATE SET\n"                      \
    "    image_id = EXCLUDED.image_id, scan_id = EXCLUDED.scan_id,\n"                       \
    "    address_id = EXCLUDED.address_id, tree_types = EXCLUDED.tree_types,\n"             \
    "    width = EXCLUDED.width, height = EXCLUDED.height, threshold = EXCLUDED.threshold,\n" \
    "    canopy_cover = EXCLUDED.canopy_cover, tree_count = EXCLUDED.tree_count,\n"         \
    "    mask_key = EXCLUDED.mask_key, overlay_key = EXCLUDED.overlay_key,\n"               \
    "    trees_key = EXCLUDED.trees_key, status = EXCLUDED.status, error = EXCLUDED.error,\n" \
    "    download_ms = EXCLUDED.download_ms, decode_ms = EXCLUDED.decode_ms,\n"             \
    "    device_ms = EXCLUDED.device_ms, encode_ms = EXCLUDED.encode_ms,\n"                 \
    "    upload_ms = EXCLUDED.upload_ms, run_id = EXCLUDED.run_id,\n"                       \
    "    epsg = EXCLUDED.epsg, crs = EXCLUDED.crs, geotransform = EXCLUDED.geotransform,\n" \
    "    footprint_lonlat = EXCLUDED.footprint_lonlat,\n"                                   \
    "    nodata_fraction = EXCLUDED.nodata_fraction" FP_SET ",\n"                           \
    "    type_counts = EXCLUDED.type_counts,\n"                                             \
    "    classifier_version = EXCLUDED.classifier_version,\n"                               \
    "    processed_at = EXCLUDED.processed_at\n"                                            \
    "  WHERE images.status = 'failed' OR EXCLUDED.status = 'ok'\n"                          \
    "  RETURNING id, bucket, key, etag, model_version)\n"                                   \
    "INSERT INTO canopy_stage_map (ord, id)\n"                                              \
    "SELECT s.ord, up.id FROM up\n"                                                         \
    "  JOIN canopy_stage_images s USING (bucket, key, etag, model_version);\n"              \
    "DELETE FROM trees\n"                                                                   \
    "  WHERE image_ref = ANY (ARRAY(SELECT id FROM canopy_stage_map));\n"                   \
    "INSERT INTO trees (image_ref, " TREE_COLUMNS GEO_COLS ")\n"                            \
    "SELECT m.id, " TREE_COLUMNS GEO_EXPRS "\n"                                             \
    "  FROM canopy_stage_trees t JOIN canopy_stage_map m USING (ord)" GEO_JOIN "\n"         \
    "  ORDER BY m.id, t.idx;\n"

/* footprint_lonlat holds 10 numbers or is NULL (encode_image()); the ring
 * is closed with its first point whatever the fifth says. */
#define FOOTPRINT_EXPR                                                                    \
    ",\n    CASE WHEN cardinality(footprint_lonlat) = 10 THEN ST_SetSRID(ST_MakePolygon("   \
    "ST_MakeLine(ARRAY[\n"                                                                \
    "      ST_MakePoint(footprint_lonlat[1], footprint_lonlat[2]),\n"                     \
    "      ST_MakePoint(footprint_lonlat[3], footprint_lonlat[4]),\n"                     \
    "      ST_MakePoint(footprint_lonlat[5], footprint_lonlat[6]),\n"                     \
    "      ST_MakePoint(footprint_lonlat[7], footprint_lonlat[8]),\n"                     \
    "      ST_MakePoint(footprint_lonlat[1], footprint_lonlat[2])])), 4326) END"

/* The crown: a unit circle of 32 vertices scaled by the metres per degree of
 * longitude and latitude at the tree (WGS 84 series, exact to centimetres
 * per degree) and moved to (lon, lat). No reprojection per row: for radii of
 * metres to tens of metres the error is far below a millimetre. */
#define CROWN_JOIN                                                                          \
    "\n  CROSS JOIN (SELECT ST_Buffer(ST_Point(0, 0), 1, 'quad_segs=8') AS circle) u\n"   \
    "  CROSS JOIN LATERAL (SELECT radians(t.lat) AS phi) a\n"                              \
    "  CROSS JOIN LATERAL (SELECT\n"                                                       \
    "    NULLIF(111412.84 * cos(a.phi) - 93.5 * cos(3 * a.phi) + 0.118 * cos(5 * a.phi), 0)\n" \
    "      AS m_lon,\n"                                                                    \
    "    111132.92 - 559.82 * cos(2 * a.phi) + 1.175 * cos(4 * a.phi)\n"                   \
    "      - 0.0023 * cos(6 * a.phi) AS m_lat) k"

#define GEO_EXPRS                                                                       \
    ",\n    ST_SetSRID(ST_MakePoint(t.lon, t.lat), 4326),\n"                             \
    "    CASE WHEN t.radius_m > 0 THEN ST_SetSRID(ST_Translate(ST_Scale(u.circle,\n"     \
    "      t.radius_m / k.m_lon, t.radius_m / k.m_lat), t.lon, t.lat), 4326) END"

static const char upsert_sql[] = UPSERT_SQL("", "", "", "", "", "");
static const char upsert_sql_postgis[] =
    UPSERT_SQL(", footprint", FOOTPRINT_EXPR, ",\n    footprint = EXCLUDED.footprint",
               ", geom, crown", GEO_EXPRS, CROWN_JOIN);

typedef struct chunk_row {
    const pg_image_result *r;
    size_t pos; /* position in the caller's array: the later one wins */
} chunk_row;

static const char *etag_of(const char *etag)
{
    return etag ? etag : "";
}

static int cmp_version(const pg_image_result *a, const pg_image_result *b)
{
    int c = strcmp(a->bucket, b->bucket);
    if (!c)
        c = strcmp(a->key, b->key);
    if (!c)
        c = strcmp(etag_of(a->etag), etag_of(b->etag));
    if (!c)
        c = strcmp(a->model_version, b->model_version);
    return c;
}

static int cmp_rows(const void *pa, const void *pb)
{
    const chunk_row *a = pa, *b = pb;
    int c = cmp_version(a->r, b->r);
    if (c)
        return c;
    return a->pos < b->pos ? -1 : a->pos > b->pos;
}

/* Checks what the server would reject, naming the offending result. */
static cnp_status validate(const pg_image_result *r, size_t i, cnp_err *err)
{
    if (!r->bucket || !r->key || !r->model_version) {
        cnp_err_set(err, "chunk result %zu: bucket, key and model_version are required", i);
        return CNP_ERR_INVALID;
    }
    if (r->status != PG_IMAGE_OK && r->status != PG_IMAGE_FAILED) {
        cnp_err_set(err, "chunk result %zu (%s): invalid status %d", i, r->key, (int)r->status);
        return CNP_ERR_INVALID;
    }
    if ((r->n_trees && !r->trees) || (r->n_tree_types && !r->tree_types)) {
        cnp_err_set(err, "chunk result %zu (%s): NULL array with a count", i, r->key);
        return CNP_ERR_INVALID;
    }
    return CNP_OK;
}

/* A georeferenced value: NULL unless georef and finite. */
static void copy_geo(pg_copy *c, bool georef, double v)
{
    if (georef && isfinite(v))
        pg_copy_double(c, v);
    else
        pg_copy_null(c);
}

/* epsg, crs, geotransform, footprint_lonlat of an image. */
static void encode_georef(pg_copy *c, const pg_image_result *r)
{
    if (r->georef && r->epsg > 0) pg_copy_int(c, r->epsg); else pg_copy_null(c);
    pg_copy_str(c, r->georef ? r->crs_wkt : NULL);
    pg_copy_double_array(c, r->georef ? r->geotransform : NULL, 6);
    bool ring = r->georef;
    for (int i = 0; i < 10 && ring; i++)
        ring = isfinite(r->footprint[i]);
    pg_copy_double_array(c, ring ? r->footprint : NULL, 10);
}

static void encode_image(pg_copy *c, int64_t ord, const pg_image_result *r, int64_t run_id)
{
    pg_copy_int(c, ord);
    pg_copy_str(c, r->bucket);
    pg_copy_str(c, r->key);
    pg_copy_str(c, etag_of(r->etag));
    pg_copy_str(c, r->model_version);
    pg_copy_str(c, r->image_id);
    pg_copy_str(c, r->scan_id);
    pg_copy_str(c, r->address_id);
    pg_copy_text_array(c, r->tree_types, r->n_tree_types);
    if (r->width < 0) pg_copy_null(c); else pg_copy_int(c, r->width);
    if (r->height < 0) pg_copy_null(c); else pg_copy_int(c, r->height);
    pg_copy_real(c, r->threshold);
    pg_copy_double(c, r->canopy_cover);
    if (r->status == PG_IMAGE_OK)
        pg_copy_int(c, r->tree_count >= 0 ? r->tree_count : (int64_t)r->n_trees);
    else
        pg_copy_null(c);
    pg_copy_str(c, r->mask_key);
    pg_copy_str(c, r->overlay_key);
    pg_copy_str(c, r->trees_key);
    pg_copy_str(c, r->status == PG_IMAGE_OK ? "ok" : "failed");
    pg_copy_str(c, r->error);
    pg_copy_real(c, r->download_ms);
    pg_copy_real(c, r->decode_ms);
    pg_copy_real(c, r->device_ms);
    pg_copy_real(c, r->encode_ms);
    pg_copy_real(c, r->upload_ms);
    if (run_id > 0) pg_copy_int(c, run_id); else pg_copy_null(c);
    encode_georef(c, r);
    pg_copy_double(c, r->nodata_fraction);
    pg_copy_str(c, r->status == PG_IMAGE_OK ? r->type_counts : NULL);
    pg_copy_str(c, r->status == PG_IMAGE_OK ? r->classifier_version : NULL);
    pg_copy_eol(c);
}

static void encode_trees(pg_copy *c, int64_t ord, const pg_image_result *r)
{
    for (size_t t = 0; t < r->n_trees; t++) {
        const pg_tree *tr = &r->trees[t];
        pg_copy_int(c, ord);
        pg_copy_int(c, (int64_t)t);
        pg_copy_real(c, tr->x);
        pg_copy_real(c, tr->y);
        pg_copy_real(c, tr->radius);
        pg_copy_real(c, tr->score);
        pg_copy_str(c, tr->label);
        /* Zero-initialized callers that predate boxes store none. */
        bool box = tr->xmin != 0 || tr->ymin != 0 || tr->xmax != 0 || tr->ymax != 0;
        const float corners[4] = {tr->xmin, tr->ymin, tr->xmax, tr->ymax};
        for (int k = 0; k < 4; k++) {
            if (box) pg_copy_real(c, corners[k]); else pg_copy_null(c);
        }
        copy_geo(c, tr->georef, tr->map_x);
        copy_geo(c, tr->georef, tr->map_y);
        copy_geo(c, tr->georef, tr->lon);
        copy_geo(c, tr->georef, tr->lat);
        copy_geo(c, tr->georef, tr->radius_m);
        pg_copy_double_array(c, tr->georef ? tr->box_map : NULL, 4);
        pg_copy_str(c, tr->type);
        pg_copy_real(c, tr->type ? tr->type_score : NAN);
        pg_copy_eol(c);
    }
}

/* The outbox row of a result's notification, if it has one. */
static void encode_note(pg_copy *c, const pg_image_result *r)
{
    if (!r->notify_body || !r->notify_queue)
        return;
    pg_copy_str(c, r->notify_queue);
    pg_copy_str(c, r->notify_body);
    pg_copy_str(c, r->notify_group);
    pg_copy_str(c, r->notify_dedup);
    pg_copy_eol(c);
}

/* Sorts, de-duplicates and encodes the chunk into the COPY payloads. */
static cnp_status encode_chunk(const pg_image_result *results, size_t n, int64_t run_id,
                               pg_copy *images, pg_copy *trees, pg_copy *notes, size_t *rows,
                               cnp_err *err)
{
    chunk_row *order = calloc(n ? n : 1, sizeof *order);
    if (!order) {
        cnp_err_set(err, "chunk: out of memory");
        return CNP_ERR_NOMEM;
    }
    for (size_t i = 0; i < n; i++)
        order[i] = (chunk_row){&results[i], i};
    qsort(order, n, sizeof *order, cmp_rows);
    int64_t ord = 0;
    for (size_t i = 0; i < n; i++) {
        /* Same object version twice: ON CONFLICT cannot touch a row twice in
         * one statement, and the later result is the newer one. */
        if (i + 1 < n && cmp_version(order[i].r, order[i + 1].r) == 0)
            continue;
        encode_image(images, ord, order[i].r, run_id);
        encode_trees(trees, ord, order[i].r);
        encode_note(notes, order[i].r);
        ord++;
    }
    free(order);
    *rows = (size_t)ord;
    if (images->sanitized || trees->sanitized)
        LOG_WARN("store", "chunk: %zu text value(s) were not valid UTF-8; stored with U+FFFD",
                 images->sanitized + trees->sanitized);
    if (images->nomem || trees->nomem || notes->nomem) {
        cnp_err_set(err, "chunk: out of memory encoding %zu results", n);
        return CNP_ERR_NOMEM;
    }
    return CNP_OK;
}

/* Streams one COPY payload into a staging table. */
static cnp_status copy_in(pg_store *store, const char *table, const pg_copy *payload,
                          cnp_err *err)
{
    char sql[160], what[160];
    snprintf(sql, sizeof sql, "COPY %s FROM STDIN", table);
    snprintf(what, sizeof what, "COPY %s", table);
    cnp_status result = pg_exec(store, what, sql, -1, NULL, PGRES_COPY_IN, NULL, err);
    if (result != CNP_OK)
        return result;
    /* Pieces of 1 MiB keep libpq's output buffer small. */
    const size_t piece = (size_t)1 << 20;
    int ok = 1;
    for (size_t off = 0; off < payload->buf.len && ok == 1; off += piece) {
        size_t len = payload->buf.len - off < piece ? payload->buf.len - off : piece;
        ok = PQputCopyData(store->conn, (const char *)payload->buf.data + off, (int)len);
    }
    if (ok == 1)
        ok = PQputCopyEnd(store->conn, NULL);
    PGresult *res = PQgetResult(store->conn);
    if (ok == 1 && res && PQresultStatus(res) == PGRES_COMMAND_OK) {
        PQclear(res);
        /* Drain to the end of this command (NULL). */
        while ((res = PQgetResult(store->conn)) != NULL)
            PQclear(res);
        return CNP_OK;
    }
    result = pg_fail(store, res, what, err);
    PQclear(res);
    while ((res = PQgetResult(store->conn)) != NULL)
        PQclear(res);
    return result;
}

/* Phases of one attempt, to know whether anything reached the server. */
enum attempt_phase { PHASE_BEGIN, PHASE_BODY, PHASE_COMMIT };

/* One attempt at the whole transaction. */
static cnp_status chunk_attempt(pg_store *store, const pg_copy *images, const pg_copy *trees,
                                const pg_copy *notes, enum attempt_phase *phase, cnp_err *err)
{
    *phase = PHASE_BEGIN;
    cnp_status result = pg_conn_ensure(store, err);
    bool postgis = false;
    if (result == CNP_OK)
        result = pg_store_has_postgis(store, &postgis, err);
    if (result != CNP_OK)
        return result;
    result = pg_exec(store, "chunk staging", stage_sql, -1, NULL, PGRES_COMMAND_OK, NULL, err);
    if (result != CNP_OK)
        return result;
    *phase = PHASE_BODY;
    result = copy_in(store, "canopy_stage_images", images, err);
    if (result == CNP_OK)
        result = copy_in(store, "canopy_stage_trees", trees, err);
    if (result == CNP_OK)
        result = pg_exec(store, "chunk upsert", postgis ? upsert_sql_postgis : upsert_sql, -1,
                         NULL, PGRES_COMMAND_OK, NULL, err);
    /* The notifications commit with their images or not at all. */
    if (result == CNP_OK && notes->buf.len)
        result = copy_in(store, "notification_outbox (queue_url, body, group_id, dedup_id)",
                         notes, err);
    if (result != CNP_OK)
        return result;
    if (store->hook)
        store->hook(store->hook_user);
    *phase = PHASE_COMMIT;
    PGresult *res = NULL;
    result = pg_exec(store, "chunk commit", "COMMIT", -1, NULL, PGRES_COMMAND_OK, &res, err);
    if (result != CNP_OK) {
        if (pg_conn_lost(store) && err) {
            /* The caller must not acknowledge; a later replay is idempotent. */
            char msg[CNP_ERR_MSG_MAX];
            snprintf(msg, sizeof msg, "%s", err->msg);
            cnp_err_set(err, "%s (commit outcome unknown; not replayed)", msg);
        }
        return result;
    }
    /* COMMIT of an aborted transaction answers ROLLBACK without an error. */
    bool committed = strcmp(PQcmdStatus(res), "COMMIT") == 0;
    PQclear(res);
    if (!committed) {
        cnp_err_set(err, "postgres: chunk commit: the server rolled the transaction back");
        return CNP_ERR_REMOTE;
    }
    return CNP_OK;
}

cnp_status pg_chunk_commit(pg_store *store, int64_t run_id, const pg_image_result *results,
                           size_t n, cnp_err *err)
{
    for (size_t i = 0; i < n; i++) {
        cnp_status v = validate(&results[i], i, err);
        if (v != CNP_OK)
            return v;
    }
    if (n == 0)
        return CNP_OK;
    pg_copy images = {0}, trees = {0}, notes = {0};
    size_t rows = 0;
    cnp_status result = encode_chunk(results, n, run_id, &images, &trees, &notes, &rows, err);
    int delay = CHUNK_RETRY_BASE_MS;
    bool reconnected = false;
    for (int attempt = 1; result == CNP_OK; attempt++) {
        enum attempt_phase phase;
        result = chunk_attempt(store, &images, &trees, &notes, &phase, err);
        if (result == CNP_OK) {
            store->stats.commits++;
            break;
        }
        pg_rollback_quietly(store);
        /* Lost before anything of this transaction was sent: a server that
         * restarted while we were idle. Safe to run it once more. */
        bool stale = phase == PHASE_BEGIN && pg_conn_lost(store) && !reconnected;
        bool retry = stale || (pg_last_is_retryable(store) && phase != PHASE_COMMIT &&
                               attempt < CHUNK_MAX_ATTEMPTS);
        if (!retry)
            break;
        if (stale) {
            reconnected = true;
        } else {
            store->stats.retries++;
            LOG_DEBUG("store", "chunk of %zu rows: SQLSTATE %s, attempt %d, retrying", rows,
                      store->sqlstate, attempt);
            /* Jitter so that writers that collided do not collide again. */
            pg_sleep_ms(delay + cnp_jitter(delay));
            delay *= 2;
        }
        result = CNP_OK;
    }
    pg_copy_free(&images);
    pg_copy_free(&trees);
    pg_copy_free(&notes);
    return result;
}

cnp_status pg_images_seen(pg_store *store, const pg_image_ref *refs, size_t n, pg_seen *out,
                          cnp_err *err)
{
    for (size_t i = 0; i < n; i++)
        out[i] = PG_SEEN_NONE;
    if (n == 0)
        return CNP_OK;
    cnp_buf arrays[4] = {{0}};
    const char **items = malloc(n * sizeof *items);
    cnp_status result = items ? CNP_OK : CNP_ERR_NOMEM;
    for (int col = 0; col < 4 && result == CNP_OK; col++) {
        for (size_t i = 0; i < n; i++) {
            const pg_image_ref *r = &refs[i];
            const char *v = col == 0 ? r->bucket : col == 1 ? r->key
                          : col == 2 ? etag_of(r->etag) : r->model_version;
            items[i] = v ? v : "";
        }
        result = pg_array_literal(&arrays[col], items, n);
        if (result == CNP_OK)
            result = cnp_buf_append(&arrays[col], "", 1);
        if (result == CNP_OK && !pg_utf8_valid((const char *)arrays[col].data)) {
            /* Look up what pg_chunk_commit() stored for such a key. */
            char *clean = pg_utf8_sanitize((const char *)arrays[col].data);
            if (!clean) {
                result = CNP_ERR_NOMEM;
                break;
            }
            arrays[col].len = 0;
            result = cnp_buf_append(&arrays[col], clean, strlen(clean) + 1);
            free(clean);
        }
    }
    free(items);
    if (result != CNP_OK) {
        cnp_err_set(err, "postgres: images seen: out of memory");
        goto out;
    }
    const char *vals[4];
    for (int col = 0; col < 4; col++)
        vals[col] = (const char *)arrays[col].data;
    PGresult *res = NULL;
    for (int attempt = 0; attempt < 2; attempt++) {
        /* Read-only: safe to repeat once on a fresh connection. */
        result = pg_conn_ensure(store, err);
        if (result != CNP_OK)
            goto out;
        result = pg_exec(store, "images seen",
                         "SELECT r.ord, i.status FROM unnest($1::text[], $2::text[], "
                         "$3::text[], $4::text[]) WITH ORDINALITY AS r(b, k, e, m, ord) "
                         "JOIN images i ON i.bucket = r.b AND i.key = r.k AND i.etag = r.e "
                         "AND i.model_version = r.m",
                         4, vals, PGRES_TUPLES_OK, &res, err);
        if (result == CNP_OK || !pg_conn_lost(store))
            break;
    }
    if (result != CNP_OK)
        goto out;
    for (int row = 0; row < PQntuples(res); row++) {
        long long ord = strtoll(PQgetvalue(res, row, 0), NULL, 10);
        if (ord >= 1 && (size_t)ord <= n)
            out[ord - 1] = strcmp(PQgetvalue(res, row, 1), "ok") == 0 ? PG_SEEN_OK
                                                                        : PG_SEEN_FAILED;
    }
    PQclear(res);
out:
    for (int col = 0; col < 4; col++)
        cnp_buf_free(&arrays[col]);
    return result;
}

void pg_image_result_init(pg_image_result *r)
{
    memset(r, 0, sizeof *r);
    r->width = -1;
    r->height = -1;
    r->threshold = NAN;
    r->canopy_cover = NAN;
    r->download_ms = NAN;
    r->decode_ms = NAN;
    r->device_ms = NAN;
    r->encode_ms = NAN;
    r->upload_ms = NAN;
    r->nodata_fraction = NAN;
    r->tree_count = -1;
}
