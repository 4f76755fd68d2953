/* PostgreSQL results store (libpq): versioned schema, one transaction per
 * chunk, idempotent bulk upsert.
 *
 * Rows are keyed by (bucket, key, etag, model_version). pg_chunk_commit()
 * stages a whole chunk with COPY into temporary tables and upserts it into
 * `images`, replacing each image's `trees`, in ONE transaction; it returns
 * CNP_OK only after COMMIT succeeded, so the caller may then acknowledge the
 * messages. Applying the same chunk again leaves the same rows.
 *
 * Errors: CNP_ERR_TRANSIENT for a lost or refused connection and for
 * SQLSTATEs worth retrying later (class 08, 40001, 40P01, 53xxx, 57P0x, ...);
 * CNP_ERR_AUTH for refused credentials; CNP_ERR_CONFIG for an unparsable
 * conninfo; CNP_ERR_REMOTE for other SQL errors. Messages carry the SQLSTATE.
 *
 * A pg_store is one connection; use it from one thread at a time. Open one
 * store per writer thread or process. */
#ifndef CANOPY_STORE_H
#define CANOPY_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "canopy/config.h"
#include "canopy/status.h"

typedef struct pg_store pg_store;

/* Connects with `conninfo` (key=value or postgresql:// URI). NULL or "" means
 * libpq defaults: PG* environment variables and service files; sslmode and
 * every other libpq setting are honoured. A failed connection is retried with
 * capped exponential backoff (a few seconds in all) before giving up with
 * CNP_ERR_TRANSIENT. Unless the user set one (conninfo options, PGOPTIONS,
 * role or database settings), statements are bounded by a 10-minute
 * statement_timeout (migrations are not). On success *out owns a store; free
 * it with pg_store_free(). */
cnp_status pg_store_open(const char *conninfo, pg_store **out, cnp_err *err);

/* pg_store_open() with the [postgres] section's conninfo. */
cnp_status pg_store_open_config(const cnp_postgres_config *cfg, pg_store **out, cnp_err *err);

/* Closes the connection and frees the store; accepts NULL. */
void pg_store_free(pg_store *store);

/* Round trip to the server (reconnecting first if the connection was lost). */
cnp_status pg_store_ping(pg_store *store, cnp_err *err);

/* Applies every pending migration, each in its own transaction, under a
 * session advisory lock, so concurrent callers serialize and each migration
 * is applied exactly once. Applied versions are recorded in the table
 * `schema_migrations`. *applied (may be NULL) receives the number applied by
 * this call, *version (may be NULL) the schema version afterwards. */
cnp_status pg_store_migrate(pg_store *store, int *applied, int *version, cnp_err *err);

/* Whether migrations may use PostGIS (default true). When true and the
 * server offers the extension (pg_available_extensions), the georeferencing
 * migration runs CREATE EXTENSION IF NOT EXISTS postgis and adds geometry
 * columns with GIST indexes (trees.geom, trees.crown, images.footprint);
 * false skips that, leaving lon/lat columns only. Either way the outcome is
 * recorded in the table canopy_features (feature 'postgis'), and
 * pg_chunk_commit() fills geometry columns whenever the database has them,
 * whatever this setting says. Call before pg_store_migrate(). */
void pg_store_set_postgis(pg_store *store, bool enabled);

/* Whether this database has canopy's PostGIS geometry columns (read from
 * canopy_features once per connection). *has is false before migration. */
cnp_status pg_store_has_postgis(pg_store *store, bool *has, cnp_err *err);

/* Highest schema version this build knows (its newest migration). */
int pg_store_schema_latest(void);

/* Schema version recorded in the database (0 when never migrated). */
cnp_status pg_store_schema_version(pg_store *store, int *version, cnp_err *err);

/* ---- runs: one row per invocation ---------------------------------------- */

/* Inserts a `runs` row (mode "drain", "reprocess", ...; host NULL: this
 * machine's hostname) and returns its id in *run_id. */
cnp_status pg_run_begin(pg_store *store, const char *mode, const char *host, int64_t *run_id,
                        cnp_err *err);

typedef struct pg_run_counts {
    int64_t images_ok;
    int64_t images_failed;
    int64_t trees;
    int exit_code;
} pg_run_counts;

/* Sets finished_at = now() and the counts of run `run_id`. */
cnp_status pg_run_finish(pg_store *store, int64_t run_id, const pg_run_counts *counts,
                         cnp_err *err);

/* ---- chunk results --------------------------------------------------------- */

/* One detected tree. A zeroed pg_tree (calloc, or a compound literal naming
 * only the first five fields) has no box and is not georeferenced. */
typedef struct pg_tree {
    float x, y;          /* crown centre, pixels, origin top-left */
    float radius;        /* pixels */
    float score;
    const char *label;   /* class label; NULL: SQL NULL */
    /* Box in pixels (origin top-left). All four 0: no box (SQL NULL); a NAN
     * value is SQL NULL. Columns box_xmin .. box_ymax: xmin and xmax are
     * reserved (system column) names in PostgreSQL. */
    float xmin, ymin, xmax, ymax;
    /* Georeferenced values; ignored (SQL NULL) unless georef. Each non-finite
     * value is SQL NULL (and so is a geometry built from it). */
    bool georef;
    double map_x, map_y;     /* crown centre in the raster CRS's map units */
    double lon, lat;         /* crown centre, WGS 84 degrees */
    double radius_m;         /* crown radius, metres */
    double box_map[4];       /* xmin, ymin, xmax, ymax in the raster CRS's map units */
    const char *type;        /* the classifier's tree type; NULL: SQL NULL (none) */
    float type_score;        /* its softmax probability (stored only with a type) */
} pg_tree;

typedef enum pg_image_status {
    PG_IMAGE_OK = 0,
    PG_IMAGE_FAILED = 1,
} pg_image_status;

/* One processed object version. The store only reads these fields during the
 * call; the caller keeps ownership of every string and array.
 * bucket, key and model_version must be non-NULL; etag NULL is stored as ""
 * (object version unknown, e.g. the object was missing). Other strings: NULL
 * is SQL NULL. Numbers: use pg_image_result_init() first; -1 (ints) and NAN
 * (floating point) are SQL NULL. tree_count is n_trees for status OK and
 * NULL for FAILED. Strings are UTF-8; bytes that do not form valid UTF-8 are
 * stored as U+FFFD (the server would refuse the whole chunk for them), and
 * pg_images_seen() maps its arguments the same way. */
typedef struct pg_image_result {
    const char *bucket;
    const char *key;
    const char *etag;
    const char *model_version;
    const char *image_id;    /* the earlier system's uuid */
    const char *scan_id;
    const char *address_id;
    const char *const *tree_types; /* NULL: SQL NULL; n_tree_types == 0: '{}' */
    size_t n_tree_types;
    int width, height;       /* -1: unknown */
    double threshold;        /* NAN: none (adaptive method) */
    double canopy_cover;     /* 0..1, NAN: unknown */
    const char *mask_key;
    const char *overlay_key;
    const char *trees_key;
    pg_image_status status;
    const char *error;       /* reason when FAILED */
    double download_ms, decode_ms, device_ms, encode_ms, upload_ms; /* NAN: not measured */
    const pg_tree *trees;
    size_t n_trees;
    /* Georeferencing of the raster; the four fields below are ignored (SQL
     * NULL) unless georef. */
    bool georef;
    int epsg;                /* EPSG code of the raster CRS; 0: none known */
    const char *crs_wkt;     /* the raster CRS as WKT; NULL: none */
    double geotransform[6];  /* GDAL order: x0, dx, rx, y0, ry, dy; NAN items: NULL */
    /* Closed ring of 5 WGS 84 points: lon0, lat0, lon1, lat1, ... lon4, lat4
     * (point 4 repeats point 0). Any non-finite value: no footprint. */
    double footprint[10];
    double nodata_fraction;  /* 0..1 of pixels that are nodata; NAN: unknown */
    /* Its output notification, written into notification_outbox in the
     * chunk's own transaction (sent later by pg_outbox_flush()); body NULL:
     * none. group and dedup are the FIFO ids (NULL: none). */
    const char *notify_queue, *notify_body, *notify_group, *notify_dedup;
    /* Tree types (a classifier ran): type_counts, a JSON object
     * {"<type>": n} (NULL: SQL NULL), the classifier's version, and
     * tree_count when it is not n_trees (the types asked for; -1: n_trees). */
    const char *type_counts;
    const char *classifier_version;
    int64_t tree_count;
} pg_image_result;

/* Zeroes r and sets every nullable number to its NULL sentinel (georef
 * false, nodata_fraction NAN). */
void pg_image_result_init(pg_image_result *r);

/* Commits a chunk of results in ONE transaction: COPY into temporary staging
 * tables, INSERT ... ON CONFLICT (bucket, key, etag, model_version) DO UPDATE
 * into `images`, delete and re-insert the trees of those images, COMMIT.
 * run_id <= 0 stores NULL. Rows are sorted by key first so that concurrent
 * writers lock in the same order; if the same object version appears twice
 * in one chunk the later entry wins. A FAILED result never replaces an OK
 * row of the same object version (a redelivery that fails does not erase
 * good results). Deadlocks and serialization failures are retried a bounded
 * number of times. Returns CNP_OK only after COMMIT succeeded. If the
 * connection is lost during the transaction the call fails with
 * CNP_ERR_TRANSIENT and is NOT replayed here: the caller decides (replaying
 * the same chunk later is safe, the upsert is idempotent). */
cnp_status pg_chunk_commit(pg_store *store, int64_t run_id, const pg_image_result *results,
                           size_t n, cnp_err *err);

/* ---- the notification outbox ------------------------------------------------ */

/* One pending notification as pg_outbox_flush() hands it to the sender. */
typedef struct pg_outbox_msg {
    int64_t id;
    const char *body;
    const char *group_id, *dedup_id; /* NULL: none */
} pg_outbox_msg;

/* Sends n messages (at most the flush's batch). Sets sent[i] for each one
 * the queue took; for the others it may write a reason into why[i]. */
typedef void (*pg_outbox_send_fn)(void *user, const pg_outbox_msg *msgs, size_t n, bool *sent,
                                  char (*why)[256]);

typedef struct pg_outbox_counts {
    size_t sent, failed;
} pg_outbox_counts;

/* Sends the pending notifications of queue_url, oldest first, each pending
 * row once per call, batch (1..10) rows per transaction: the rows are
 * locked with FOR UPDATE SKIP LOCKED (several workers never send the same
 * row at once), handed to send, and in the same transaction the sent ones
 * are deleted and the others keep their row with attempts + 1 and the
 * reason. A crash between the send and COMMIT sends those again later
 * (at-least-once). A batch of which nothing was sent ends the call (the
 * queue is down or refuses us: the rest waits for the next flush). counts
 * (may be NULL) receives what was sent and what failed. Returns the first
 * database failure (rows stay pending). */
cnp_status pg_outbox_flush(pg_store *store, const char *queue_url, size_t batch,
                           pg_outbox_send_fn send, void *user, pg_outbox_counts *counts,
                           cnp_err *err);

/* Number of pending notifications for queue_url (NULL: every queue). */
cnp_status pg_outbox_pending(pg_store *store, const char *queue_url, int64_t *n, cnp_err *err);

/* What the store holds for one object version (reprocess's skip logic). */
typedef enum pg_seen {
    PG_SEEN_NONE = 0,
    PG_SEEN_OK = 1,
    PG_SEEN_FAILED = 2,
} pg_seen;

typedef struct pg_image_ref {
    const char *bucket, *key, *etag, *model_version; /* etag NULL: "" */
} pg_image_ref;

/* Looks up n object versions in one query; out[i] receives refs[i]'s state. */
cnp_status pg_images_seen(pg_store *store, const pg_image_ref *refs, size_t n, pg_seen *out,
                          cnp_err *err);

/* ---- tuning and statistics --------------------------------------------------- */

typedef struct pg_store_stats {
    uint64_t commits;        /* chunks committed */
    uint64_t retries;        /* chunk transactions retried (deadlock, serialization) */
    uint64_t reconnects;     /* successful re-connections after a loss */
} pg_store_stats;

void pg_store_get_stats(const pg_store *store, pg_store_stats *out);

/* Connection attempts per (re)connect and the backoff cap in milliseconds
 * (defaults 6 and 2000: the waits double from 100 ms with jitter, 2 to 3
 * seconds in all before CNP_ERR_TRANSIENT). Each attempt itself is bounded by
 * connect_timeout (default 10 s unless the conninfo or PGCONNECT_TIMEOUT
 * says otherwise). */
void pg_store_set_reconnect(pg_store *store, int attempts, int max_backoff_ms);

#endif
