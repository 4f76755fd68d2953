/* Awkward values round-trip exactly: quotes, backslashes, tabs, newlines,
 * carriage returns, unicode, look-alikes of NULL and of COPY escapes, NULL
 * scan ids, empty and NULL tree lists, extreme floats. */
#include <math.h>
#include <string.h>

#include "canopy/store.h"
#include "store/pgtest.h"

static const char *const keys[] = {
    "it's \"quoted\".png",
    "back\\slash\\\\double.png",
    "tab\there\nnew line\r\ncrlf.png",
    "B\xc3\xa4ume/\xe6\x9c\xa8/\xf0\x9f\x8c\xb3 tree.png",
    "\\N",
    "NULL",
    "",
    "{braces},commas;semi|pipe%percent_under$1.png",
};
#define N_KEYS (sizeof keys / sizeof keys[0])

static const char *const awkward_types[] = {"a,b", "q\"uote", "back\\slash", "NULL", "{x}",
                                            " spaced ", "", "tab\tnl\n", "\xe6\x9c\xa8"};
#define N_TYPES (sizeof awkward_types / sizeof awkward_types[0])

static char *fetch1(PGconn *c, const char *sql, const char *key, bool *isnull)
{
    const char *vals[1] = {key};
    PGresult *res = PQexecParams(c, sql, 1, NULL, vals, NULL, NULL, 0);
    CHECK_FATAL(PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1, "%s [%s]: %s",
                sql, key, PQresultErrorMessage(res));
    *isnull = PQgetisnull(res, 0, 0);
    char *v = strdup(PQgetvalue(res, 0, 0));
    PQclear(res);
    return v;
}

static void expect_text(PGconn *c, const char *col, const char *key, const char *want)
{
    char sql[256];
    snprintf(sql, sizeof sql, "SELECT %s FROM images WHERE key = $1", col);
    bool isnull;
    char *got = fetch1(c, sql, key, &isnull);
    if (!want)
        CHECK(isnull, "%s of [%s]: expected NULL, got [%s]", col, key, got);
    else
        CHECK(!isnull && !strcmp(got, want), "%s of [%s]: got [%s] want [%s]", col, key,
              isnull ? "<NULL>" : got, want);
    free(got);
}

/* Floats come back as shortest exact text: parse and compare bits. */
static void expect_float(PGconn *c, const char *col, const char *key, double want, bool real)
{
    char sql[256];
    snprintf(sql, sizeof sql, "SELECT %s FROM images WHERE key = $1", col);
    bool isnull;
    char *got = fetch1(c, sql, key, &isnull);
    if (isnan(want)) {
        CHECK(isnull, "%s of [%s]: expected NULL, got %s", col, key, got);
    } else {
        CHECK(!isnull, "%s of [%s] is NULL", col, key);
        bool same = real ? strtof(got, NULL) == (float)want : strtod(got, NULL) == want;
        CHECK(same, "%s of [%s]: got %s want %.17g", col, key, got, want);
    }
    free(got);
}

int main(void)
{
    pgt_require_stack();
    const char *ci = pgt_db_create();
    pg_store *s = pgt_store_open(ci);
    cnp_err err = {{0}};

    pg_image_result res[N_KEYS];
    pg_tree trees[3] = {
        {.x = 1.0e-30f, .y = 3.4028235e38f, .radius = 1.17549435e-38f, .score = 0.1f,
         .label = "lab\\el\t\"x\"\n\xf0\x9f\x8c\xb2"},
        {.x = -0.0f, .y = 1234.5678f, .radius = 0.333333343f, .score = 1.0f},
        {.x = 0.5f, .y = 0.25f, .radius = 7.0f, .score = 0.99999994f, .label = ""},
    };
    for (size_t i = 0; i < N_KEYS; i++) {
        pg_image_result *r = &res[i];
        pg_image_result_init(r);
        r->bucket = "bucket.with-dots";
        r->key = keys[i];
        r->etag = i == 2 ? NULL : "\"d41d8cd98f00b204e9800998ecf8427e\"";
        r->model_version = "m\\1\t";
        r->image_id = i % 2 ? keys[i] : NULL;
        r->scan_id = i % 3 ? keys[(i + 1) % N_KEYS] : NULL;
        r->address_id = i == 4 ? "\\N" : NULL;
        r->tree_types = i % 3 == 0 ? NULL : awkward_types;
        r->n_tree_types = i % 3 == 1 ? N_TYPES : 0;
        r->status = PG_IMAGE_OK;
        r->width = i == 5 ? -1 : 1 << 20;
        r->height = 0;
        r->threshold = i == 6 ? NAN : 127.5;
        r->canopy_cover = i == 7 ? NAN : 1.0 / 3.0;
        r->mask_key = keys[(i + 3) % N_KEYS];
        r->error = i == 1 ? "line1\nline2\t\\" : NULL;
        r->decode_ms = 0.1;
        r->trees = i % 2 ? trees : NULL;
        r->n_trees = i % 2 ? 3 : 0;
    }
    CHECK(pg_chunk_commit(s, 0, res, N_KEYS, &err) == CNP_OK, "commit: %s", err.msg);

    PGconn *c = pgt_connect(ci);
    CHECK(pgt_int(c, "SELECT count(*) FROM images") == (long long)N_KEYS, "rows");
    for (size_t i = 0; i < N_KEYS; i++) {
        const pg_image_result *r = &res[i];
        expect_text(c, "bucket", r->key, r->bucket);
        expect_text(c, "etag", r->key, r->etag ? r->etag : "");
        expect_text(c, "model_version", r->key, r->model_version);
        expect_text(c, "image_id", r->key, r->image_id);
        expect_text(c, "scan_id", r->key, r->scan_id);
        expect_text(c, "address_id", r->key, r->address_id);
        expect_text(c, "mask_key", r->key, r->mask_key);
        expect_text(c, "overlay_key", r->key, NULL);
        expect_text(c, "error", r->key, r->error);
        expect_text(c, "width", r->key, r->width < 0 ? NULL : "1048576");
        expect_text(c, "height", r->key, "0");
        expect_text(c, "run_id", r->key, NULL);
        expect_text(c, "tree_count", r->key, r->n_trees ? "3" : "0");
        expect_float(c, "threshold", r->key, r->threshold, true);
        expect_float(c, "canopy_cover", r->key, r->canopy_cover, false);
        expect_float(c, "decode_ms", r->key, 0.1, true);
        expect_float(c, "download_ms", r->key, NAN, true);
        /* tree_types element by element. */
        if (!r->tree_types) {
            expect_text(c, "tree_types", r->key, NULL);
        } else {
            char sql[256];
            snprintf(sql, sizeof sql, "SELECT cardinality(tree_types) FROM images WHERE key = $1");
            bool isnull;
            char *n = fetch1(c, sql, r->key, &isnull);
            CHECK(!isnull && atoi(n) == (int)r->n_tree_types, "tree_types size %s", n);
            free(n);
            for (size_t t = 0; t < r->n_tree_types; t++) {
                snprintf(sql, sizeof sql, "SELECT tree_types[%zu] FROM images WHERE key = $1",
                         t + 1);
                char *v = fetch1(c, sql, r->key, &isnull);
                CHECK(!isnull && !strcmp(v, r->tree_types[t]), "tree_types[%zu]: [%s]", t, v);
                free(v);
            }
        }
        /* Trees, value by value. */
        const char *vals[1] = {r->key};
        PGresult *tr = PQexecParams(c,
            "SELECT idx, x, y, radius, score, label FROM trees t JOIN images i "
            "ON i.id = t.image_ref WHERE i.key = $1 ORDER BY idx", 1, NULL, vals, NULL, NULL, 0);
        CHECK_FATAL(PQresultStatus(tr) == PGRES_TUPLES_OK, "trees: %s", PQresultErrorMessage(tr));
        CHECK_FATAL(PQntuples(tr) == (int)r->n_trees, "tree rows of [%s]: %d", r->key,
                    PQntuples(tr));
        for (int t = 0; t < PQntuples(tr); t++) {
            const pg_tree *w = &r->trees[t];
            float got[4];
            for (int k = 0; k < 4; k++)
                got[k] = strtof(PQgetvalue(tr, t, 1 + k), NULL);
            CHECK(atoi(PQgetvalue(tr, t, 0)) == t, "idx");
            CHECK(!memcmp(&got[0], &w->x, sizeof(float)) && got[1] == w->y &&
                  got[2] == w->radius && got[3] == w->score,
                  "tree %d of [%s]: %s %s %s %s", t, r->key, PQgetvalue(tr, t, 1),
                  PQgetvalue(tr, t, 2), PQgetvalue(tr, t, 3), PQgetvalue(tr, t, 4));
            if (w->label)
                CHECK(!PQgetisnull(tr, t, 5) && !strcmp(PQgetvalue(tr, t, 5), w->label),
                      "label [%s]", PQgetvalue(tr, t, 5));
            else
                CHECK(PQgetisnull(tr, t, 5), "label NULL");
        }
        PQclear(tr);
    }

    /* The seen lookup matches awkward keys exactly. */
    pg_image_ref refs[N_KEYS];
    pg_seen seen[N_KEYS];
    for (size_t i = 0; i < N_KEYS; i++)
        refs[i] = (pg_image_ref){res[i].bucket, res[i].key, res[i].etag, res[i].model_version};
    CHECK(pg_images_seen(s, refs, N_KEYS, seen, &err) == CNP_OK, "seen: %s", err.msg);
    for (size_t i = 0; i < N_KEYS; i++)
        CHECK(seen[i] == PG_SEEN_OK, "seen [%s]: %d", keys[i], seen[i]);

    /* Invalid UTF-8 does not block the chunk: the bad bytes are stored as
     * U+FFFD, the valid neighbour lands intact, the lookup maps the same way. */
    pg_image_result bad[2] = {res[0], res[1]};
    bad[0].key = "fresh-key.png";
    bad[1].key = "bad-\xc3\x28.png";
    CHECK(pg_chunk_commit(s, 0, bad, 2, &err) == CNP_OK, "invalid UTF-8: %s", err.msg);
    CHECK(pgt_int(c, "SELECT count(*) FROM images WHERE key IN ('fresh-key.png', "
                     "E'bad-\\xef\\xbf\\xbd(.png')") == 2, "sanitized rows");
    pg_image_ref bad_ref = {bad[1].bucket, bad[1].key, bad[1].etag, bad[1].model_version};
    pg_seen bad_seen = PG_SEEN_NONE;
    CHECK(pg_images_seen(s, &bad_ref, 1, &bad_seen, &err) == CNP_OK && bad_seen == PG_SEEN_OK,
          "seen with an invalid key: %d %s", bad_seen, err.msg);
    PQclear(PQexec(c, "DELETE FROM images WHERE key IN ('fresh-key.png', "
                      "E'bad-\\xef\\xbf\\xbd(.png')"));
    CHECK(pgt_int(c, "SELECT count(*) FROM images") == (long long)N_KEYS, "cleanup");

    /* Applying the awkward chunk again changes nothing. */
#define FULL_DUMP                                                                     \
    "SELECT (to_jsonb(i) - 'processed_at')::text, to_jsonb(t)::text FROM images i "     \
    "LEFT JOIN trees t ON t.image_ref = i.id ORDER BY i.id, t.idx"
    char *before = pgt_dump(c, FULL_DUMP);
    CHECK(pg_chunk_commit(s, 0, res, N_KEYS, &err) == CNP_OK, "recommit: %s", err.msg);
    char *after = pgt_dump(c, FULL_DUMP);
    CHECK(!strcmp(before, after), "re-apply changed rows:\n%s\nvs\n%s", before, after);
    free(before);
    free(after);
    PQfinish(c);
    pg_store_free(s);
    return TEST_RESULT();
}
