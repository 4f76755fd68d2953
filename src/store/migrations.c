/* Numbered schema migrations, kept in the source tree as SQL text.
 *
 * Rules: versions ascend without gaps; a released migration is never edited
 * (its effect is already recorded in users' databases): change the schema by
 * appending a new entry. Each entry runs in its own transaction together
 * with its row in schema_migrations (see pg_store_migrate()). */
#include "store/pg_internal.h"

static const pg_migration migrations[] = {
    {
        1,
        "tables",
        "CREATE TABLE runs (\n"
        "    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,\n"
        "    mode          text NOT NULL,\n"
        "    host          text,\n"
        "    pid           integer,\n"
        "    version       text,\n"
        "    started_at    timestamptz NOT NULL DEFAULT now(),\n"
        "    finished_at   timestamptz,\n"
        "    images_ok     bigint,\n"
        "    images_failed bigint,\n"
        "    trees         bigint,\n"
        "    exit_code     integer\n"
        ");\n"
        "CREATE TABLE images (\n"
        "    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,\n"
        "    bucket        text NOT NULL,\n"
        "    key           text NOT NULL,\n"
        "    etag          text NOT NULL,\n"
        "    model_version text NOT NULL,\n"
        "    image_id      text,\n"
        "    scan_id       text,\n"
        "    address_id    text,\n"
        "    tree_types    text[],\n"
        "    width         integer,\n"
        "    height        integer,\n"
        "    threshold     real,\n"
        "    canopy_cover  double precision,\n"
        "    tree_count    integer,\n"
        "    mask_key      text,\n"
        "    overlay_key   text,\n"
        "    trees_key     text,\n"
        "    status        text NOT NULL CHECK (status IN ('ok', 'failed')),\n"
        "    error         text,\n"
        "    download_ms   real,\n"
        "    decode_ms     real,\n"
        "    device_ms     real,\n"
        "    encode_ms     real,\n"
        "    upload_ms     real,\n"
        "    run_id        bigint REFERENCES runs (id) ON DELETE SET NULL,\n"
        "    processed_at  timestamptz NOT NULL DEFAULT now(),\n"
        "    CONSTRAINT images_object_version_key UNIQUE (bucket, key, etag, model_version)\n"
        ");\n"
        "CREATE TABLE trees (\n"
        "    image_ref     bigint NOT NULL REFERENCES images (id) ON DELETE CASCADE,\n"
        "    idx           integer NOT NULL,\n"
        "    x             real NOT NULL,\n"
        "    y             real NOT NULL,\n"
        "    radius        real NOT NULL,\n"
        "    score         real NOT NULL,\n"
        "    label         text,\n"
        "    PRIMARY KEY (image_ref, idx)\n"
        ");\n"
        "COMMENT ON TABLE runs IS 'one row per canopy invocation';\n"
        "COMMENT ON TABLE images IS "
        "'one row per processed object version (bucket, key, etag, model_version)';\n"
        "COMMENT ON TABLE trees IS 'detected trees of an image; replaced as a whole';\n"
        "COMMENT ON COLUMN images.image_id IS 'the earlier system''s image uuid';\n"
        "COMMENT ON COLUMN trees.idx IS 'position of the tree in the detector output';\n",
    },
    {
        2,
        "query_indexes",
        "CREATE INDEX images_key_idx ON images (key);\n"
        "CREATE INDEX images_scan_id_idx ON images (scan_id) WHERE scan_id IS NOT NULL;\n"
        "CREATE INDEX images_address_id_idx ON images (address_id)\n"
        "    WHERE address_id IS NOT NULL;\n"
        "CREATE INDEX images_image_id_idx ON images (image_id) WHERE image_id IS NOT NULL;\n"
        "CREATE INDEX images_run_status_idx ON images (run_id, status);\n"
        "CREATE INDEX images_failed_idx ON images (processed_at) WHERE status = 'failed';\n"
        "CREATE INDEX runs_started_at_idx ON runs (started_at);\n",
    },
    {
        /* Boxes and georeferencing (issues 11 and 12). PostGIS is optional:
         * it is used only when the server offers it, the role may create it
         * and the client did not switch it off (session setting
         * canopy.postgis = 'off', see pg_store_set_postgis()). A role that may
         * not create it, or an extension whose files are missing, means no
         * PostGIS rather than a failed migration. The outcome is
         * recorded in canopy_features for pg_chunk_commit() and for people.
         * Serialized with other migrators by pg_store_migrate()'s lock. */
        3,
        "georef",
        "ALTER TABLE trees\n"
        "    ADD COLUMN box_xmin real, ADD COLUMN box_ymin real,\n"
        "    ADD COLUMN box_xmax real, ADD COLUMN box_ymax real,\n"
        "    ADD COLUMN map_x double precision, ADD COLUMN map_y double precision,\n"
        "    ADD COLUMN lon double precision, ADD COLUMN lat double precision,\n"
        "    ADD COLUMN radius_m double precision, ADD COLUMN box_map double precision[];\n"
        "ALTER TABLE images\n"
        "    ADD COLUMN epsg integer, ADD COLUMN crs text,\n"
        "    ADD COLUMN geotransform double precision[],\n"
        "    ADD COLUMN footprint_lonlat double precision[],\n"
        "    ADD COLUMN nodata_fraction double precision;\n"
        "COMMENT ON COLUMN trees.box_xmin IS 'box in pixels (xmin, xmax are reserved names)';\n"
        "COMMENT ON COLUMN trees.map_x IS 'crown centre in the raster CRS (images.crs)';\n"
        "COMMENT ON COLUMN trees.lon IS 'crown centre, WGS 84 longitude';\n"
        "COMMENT ON COLUMN trees.radius_m IS 'crown radius in metres';\n"
        "COMMENT ON COLUMN trees.box_map IS "
        "'box in the raster CRS: {xmin, ymin, xmax, ymax}';\n"
        "COMMENT ON COLUMN images.crs IS 'raster CRS as WKT';\n"
        "COMMENT ON COLUMN images.geotransform IS 'GDAL geotransform of the raster';\n"
        "COMMENT ON COLUMN images.footprint_lonlat IS "
        "'closed ring of 5 WGS 84 points {lon0, lat0, ..., lon4, lat4}';\n"
        "CREATE TABLE canopy_features (\n"
        "    feature    text PRIMARY KEY,\n"
        "    enabled    boolean NOT NULL,\n"
        "    detail     text,\n"
        "    updated_at timestamptz NOT NULL DEFAULT now()\n"
        ");\n"
        "COMMENT ON TABLE canopy_features IS "
        "'optional schema parts and whether they exist (postgis: geometry columns)';\n"
        "DO $canopy$\n"
        "DECLARE\n"
        "    why text;\n"
        "    ver text;\n"
        "BEGIN\n"
        "    IF current_setting('canopy.postgis', true) = 'off' THEN\n"
        "        why := 'switched off by the client (canopy.postgis = off)';\n"
        "    ELSIF NOT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'postgis') THEN\n"
        "        why := 'the server does not offer the postgis extension';\n"
        "    ELSE\n"
        "        BEGIN\n"
        "            CREATE EXTENSION IF NOT EXISTS postgis;\n"
        "        EXCEPTION WHEN insufficient_privilege OR undefined_file THEN\n"
        "            why := 'CREATE EXTENSION postgis: ' || SQLERRM;\n"
        "        END;\n"
        "    END IF;\n"
        "    IF why IS NOT NULL THEN\n"
        "        CREATE INDEX trees_lat_lon_idx ON trees (lat, lon) WHERE lat IS NOT NULL;\n"
        "        INSERT INTO canopy_features (feature, enabled, detail)\n"
        "            VALUES ('postgis', false, why);\n"
        "        RETURN;\n"
        "    END IF;\n"
        /* EXECUTE: the geometry type exists only from here on. */
        "    EXECUTE 'ALTER TABLE trees ADD COLUMN geom geometry(Point, 4326),'\n"
        "        ' ADD COLUMN crown geometry(Polygon, 4326)';\n"
        "    EXECUTE 'ALTER TABLE images ADD COLUMN footprint geometry(Polygon, 4326)';\n"
        "    EXECUTE 'CREATE INDEX trees_geom_idx ON trees USING gist (geom)';\n"
        "    EXECUTE 'CREATE INDEX trees_crown_idx ON trees USING gist (crown)';\n"
        "    EXECUTE 'CREATE INDEX images_footprint_idx ON images USING gist (footprint)';\n"
        "    COMMENT ON COLUMN trees.geom IS 'crown centre (lon, lat)';\n"
        "    COMMENT ON COLUMN trees.crown IS "
        "'32-gon of radius_m metres around geom (local metres per degree)';\n"
        "    COMMENT ON COLUMN images.footprint IS 'footprint_lonlat as a polygon';\n"
        "    SELECT extversion INTO ver FROM pg_extension WHERE extname = 'postgis';\n"
        "    INSERT INTO canopy_features (feature, enabled, detail)\n"
        "        VALUES ('postgis', true, 'PostGIS ' || ver);\n"
        "END\n"
        "$canopy$;\n",
    },
    {
        /* Tree types (issue 21): the second stage's class of every tree,
         * the count per type and tree_count restricted to the types asked
         * for (images.tree_types). */
        4,
        "tree types",
        "ALTER TABLE trees ADD COLUMN type text, ADD COLUMN type_score real;\n"
        "ALTER TABLE images ADD COLUMN type_counts jsonb, ADD COLUMN classifier_version text;\n"
        "COMMENT ON COLUMN trees.type IS "
        "'tree type from the classifier (images.classifier_version); NULL without one';\n"
        "COMMENT ON COLUMN trees.type_score IS 'softmax probability of type';\n"
        "COMMENT ON COLUMN images.type_counts IS "
        "'trees per type, {\"<type>\": n}; NULL without a classifier';\n"
        "COMMENT ON COLUMN images.classifier_version IS "
        "'version of the tree-type classifier; NULL without one';\n"
        "COMMENT ON COLUMN images.tree_count IS "
        "'trees detected; with a classifier and tree_types, those of the types asked for';\n",
    },
    {
        /* The transactional outbox of output notifications (issue 20, item
         * 6): written in the chunk's own transaction by pg_chunk_commit(),
         * sent after COMMIT and deleted once SQS took it (pg_outbox_flush()).
         * Follows issue 21's tree types (4). */
        5,
        "notification_outbox",
        "CREATE TABLE notification_outbox (\n"
        "    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,\n"
        "    queue_url   text NOT NULL,\n"
        "    body        text NOT NULL,\n"
        "    group_id    text,\n"
        "    dedup_id    text,\n"
        "    created_at  timestamptz NOT NULL DEFAULT now(),\n"
        "    attempts    integer NOT NULL DEFAULT 0,\n"
        "    last_error  text,\n"
        "    last_try_at timestamptz\n"
        ");\n"
        "CREATE INDEX notification_outbox_queue_idx ON notification_outbox (queue_url, id);\n"
        "COMMENT ON TABLE notification_outbox IS "
        "'output notifications committed with their images and not yet sent';\n"
        "COMMENT ON COLUMN notification_outbox.attempts IS 'sends that failed so far';\n",
    },
};

const pg_migration *pg_migrations(size_t *count)
{
    *count = sizeof migrations / sizeof migrations[0];
    return migrations;
}
