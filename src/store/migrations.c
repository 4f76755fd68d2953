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
};

const pg_migration *pg_migrations(size_t *count)
{
    *count = sizeof migrations / sizeof migrations[0];
    return migrations;
}
