/* The chunk write path: idempotent re-apply, new object versions, trees
 * replaced never appended, duplicates inside a chunk, failures never erase
 * successes, the seen lookup and the runs table. */
#include <math.h>
#include <string.h>

#include "canopy/store.h"
#include "store/pgtest.h"

#define IMAGES_SQL                                                                      \
    "SELECT id, bucket, key, etag, model_version, image_id, scan_id, address_id, "     \
    "tree_types, width, height, threshold, canopy_cover, tree_count, mask_key, "       \
    "overlay_key, trees_key, status, error, download_ms, decode_ms, device_ms, "       \
    "encode_ms, upload_ms, run_id FROM images ORDER BY id"
#define TREES_SQL "SELECT image_ref, idx, x, y, radius, score, label FROM trees ORDER BY 1, 2"

enum { N_IMAGES = 24, MAX_TREES = 40 };

typedef struct fixture {
    pg_image_result res[N_IMAGES];
    pg_tree trees[N_IMAGES][MAX_TREES];
    char keys[N_IMAGES][64];
    char scan[N_IMAGES][32];
    char mask[N_IMAGES][80];
} fixture;

static const char *const types[] = {"oak", "pine"};

/* A chunk of N_IMAGES results; `salt` varies tree values and counts. */
static void make_chunk(fixture *f, int salt, int64_t run_id)
{
    (void)run_id;
    for (int i = 0; i < N_IMAGES; i++) {
        pg_image_result *r = &f->res[i];
        pg_image_result_init(r);
        snprintf(f->keys[i], sizeof f->keys[i], "scans/s%02d/img-%03d.png", i % 5, i);
        snprintf(f->scan[i], sizeof f->scan[i], "scan-%d", i % 5);
        snprintf(f->mask[i], sizeof f->mask[i], "out/img-%03d.mask.png", i);
        r->bucket = "canopy-in";
        r->key = f->keys[i];
        r->etag = "etag-1";
        r->model_version = "tiny-1";
        r->scan_id = i % 4 == 0 ? NULL : f->scan[i];
        r->address_id = i % 3 == 0 ? NULL : "addr-7";
        r->tree_types = i % 2 ? types : NULL;
        r->n_tree_types = i % 2 ? 2 : 0;
        if (i % 7 == 6) {
            r->status = PG_IMAGE_FAILED;
            r->error = "PNG: IDAT: invalid distance too far back";
            continue;
        }
        r->status = PG_IMAGE_OK;
        r->width = 400 + i;
        r->height = 300;
        r->threshold = 117;
        r->canopy_cover = 0.25 + i / 100.0;
        r->mask_key = f->mask[i];
        r->download_ms = 12.5;
        r->device_ms = 3.25;
        int n = (i * 3 + salt) % MAX_TREES;
        for (int t = 0; t < n; t++)
            f->trees[i][t] = (pg_tree){.x = (float)t + salt * 0.5f, .y = (float)i,
                                       .radius = 4.0f + t % 3, .score = 0.5f + t / 100.0f,
                                       .label = t % 5 ? NULL : "conifer"};
        r->trees = f->trees[i];
        r->n_trees = (size_t)n;
    }
}

static void commit(pg_store *s, int64_t run, const pg_image_result *r, size_t n)
{
    cnp_err err = {{0}};
    cnp_status st = pg_chunk_commit(s, run, r, n, &err);
    CHECK(st == CNP_OK, "commit: %s: %s", cnp_status_name(st), err.msg);
}

static long long count_where(PGconn *c, const char *sql_fmt, const char *arg)
{
    char *lit = PQescapeLiteral(c, arg, strlen(arg));
    char sql[512];
    snprintf(sql, sizeof sql, sql_fmt, lit);
    PQfreemem(lit);
    return pgt_int(c, sql);
}

static void test_idempotent(pg_store *s, PGconn *c, fixture *f, int64_t run)
{
    make_chunk(f, 1, run);
    commit(s, run, f->res, N_IMAGES);
    char *img1 = pgt_dump(c, IMAGES_SQL), *tr1 = pgt_dump(c, TREES_SQL);
    CHECK(pgt_int(c, "SELECT count(*) FROM images") == N_IMAGES, "image rows");
    long long want_trees = 0;
    for (int i = 0; i < N_IMAGES; i++)
        want_trees += (long long)f->res[i].n_trees;
    CHECK(pgt_int(c, "SELECT count(*) FROM trees") == want_trees, "tree rows");
    CHECK(pgt_int(c, "SELECT count(*) FROM images WHERE status = 'failed' AND tree_count IS "
                     "NULL AND error LIKE 'PNG:%'") == 3, "failed rows");
    commit(s, run, f->res, N_IMAGES);
    char *img2 = pgt_dump(c, IMAGES_SQL), *tr2 = pgt_dump(c, TREES_SQL);
    CHECK(!strcmp(img1, img2), "images differ after re-apply:\n%s\nvs\n%s", img1, img2);
    CHECK(!strcmp(tr1, tr2), "trees differ after re-apply");
    /* Same again in reverse order: the store sorts, the outcome is the same. */
    pg_image_result rev[N_IMAGES];
    for (int i = 0; i < N_IMAGES; i++)
        rev[i] = f->res[N_IMAGES - 1 - i];
    commit(s, run, rev, N_IMAGES);
    char *img3 = pgt_dump(c, IMAGES_SQL), *tr3 = pgt_dump(c, TREES_SQL);
    CHECK(!strcmp(img1, img3) && !strcmp(tr1, tr3), "reverse order changed rows");
    free(img1), free(img2), free(img3), free(tr1), free(tr2), free(tr3);
}

static void test_new_versions(pg_store *s, PGconn *c, fixture *f, int64_t run)
{
    long long before = pgt_int(c, "SELECT count(*) FROM images");
    char *old = pgt_dump(c, IMAGES_SQL);
    pg_image_result r = f->res[1];
    r.etag = "etag-2";
    commit(s, run, &r, 1);
    CHECK(pgt_int(c, "SELECT count(*) FROM images") == before + 1, "new etag adds a row");
    r.etag = "etag-1";
    r.model_version = "tiny-2";
    commit(s, run, &r, 1);
    CHECK(pgt_int(c, "SELECT count(*) FROM images") == before + 2, "new model adds a row");
    CHECK(count_where(c, "SELECT count(*) FROM images WHERE key = %s", f->keys[1]) == 3,
          "three versions of one key");
    CHECK(count_where(c, "SELECT count(*) FROM trees t JOIN images i ON i.id = t.image_ref "
                         "WHERE i.key = %s", f->keys[1]) == 3 * (long long)r.n_trees,
          "each version has its own trees");
    /* The original rows are untouched. */
    char *now = pgt_dump(c, IMAGES_SQL);
    CHECK(!strncmp(old, now, strlen(old)), "existing rows changed");
    free(old), free(now);
}

static void test_trees_replaced(pg_store *s, PGconn *c, fixture *f, int64_t run)
{
    pg_image_result r = f->res[2];
    pg_tree five[5], three[3];
    for (int t = 0; t < 5; t++)
        five[t] = (pg_tree){.x = 10.0f + t, .y = 20.0f, .radius = 3.0f, .score = 0.9f,
                            .label = "five"};
    for (int t = 0; t < 3; t++)
        three[t] = (pg_tree){.x = 30.0f + t, .y = 40.0f, .radius = 2.0f, .score = 0.8f,
                             .label = "three"};
    const char *q = "SELECT count(*) FROM trees t JOIN images i ON i.id = t.image_ref "
                    "WHERE i.key = %s AND i.model_version = 'tiny-1'";
    r.trees = five, r.n_trees = 5;
    commit(s, run, &r, 1);
    commit(s, run, &r, 1);
    CHECK(count_where(c, q, r.key) == 5, "5 trees after applying twice");
    r.trees = three, r.n_trees = 3;
    commit(s, run, &r, 1);
    CHECK(count_where(c, q, r.key) == 3, "3 trees replace 5");
    CHECK(count_where(c, "SELECT count(*) FROM trees t JOIN images i ON i.id = t.image_ref "
                         "WHERE i.key = %s AND label = 'three' AND idx < 3",
                      r.key) == 3, "the new trees");
    CHECK(count_where(c, "SELECT tree_count FROM images WHERE key = %s AND "
                         "model_version = 'tiny-1' AND etag = 'etag-1'", r.key) == 3,
          "tree_count follows");
    r.trees = NULL, r.n_trees = 0;
    commit(s, run, &r, 1);
    CHECK(count_where(c, q, r.key) == 0, "an empty list removes the trees");
}

static void test_duplicates_and_failures(pg_store *s, PGconn *c, fixture *f, int64_t run)
{
    pg_image_result dup[3] = {f->res[3], f->res[4], f->res[3]};
    pg_tree two[2], four[4];
    for (int t = 0; t < 4; t++) {
        pg_tree v = {.x = t + 1, .y = t + 1, .radius = t + 1, .score = 0.5f};
        if (t < 2)
            two[t] = v, two[t].label = "first";
        four[t] = v, four[t].label = "second";
    }
    dup[0].trees = two, dup[0].n_trees = 2;
    dup[2].trees = four, dup[2].n_trees = 4;
    commit(s, run, dup, 3);
    const char *q = "SELECT count(*) FROM trees t JOIN images i ON i.id = t.image_ref "
                    "WHERE i.key = %s AND i.model_version = 'tiny-1' AND label = 'second'";
    CHECK(count_where(c, q, f->keys[3]) == 4, "the later duplicate wins");
    CHECK(count_where(c, "SELECT count(*) FROM images WHERE key = %s", f->keys[3]) == 1,
          "one row for a duplicate");

    /* A failure on redelivery does not erase a success... */
    pg_image_result fail = f->res[3];
    fail.status = PG_IMAGE_FAILED, fail.error = "timeout", fail.trees = NULL, fail.n_trees = 0;
    commit(s, run, &fail, 1);
    CHECK(count_where(c, "SELECT count(*) FROM images WHERE key = %s AND status = 'ok' "
                         "AND error IS NULL AND tree_count = 4", f->keys[3]) == 1,
          "ok row kept");
    CHECK(count_where(c, q, f->keys[3]) == 4, "trees kept");
    /* ...but a success replaces a failure. */
    pg_image_result ok = f->res[6];
    CHECK(ok.status == PG_IMAGE_FAILED, "fixture: image 6 failed");
    ok.status = PG_IMAGE_OK, ok.error = NULL, ok.trees = two, ok.n_trees = 2;
    commit(s, run, &ok, 1);
    CHECK(count_where(c, "SELECT count(*) FROM images WHERE key = %s AND status = 'ok' "
                         "AND error IS NULL AND tree_count = 2", f->keys[6]) == 1,
          "failure replaced by success");

    /* Invalid input is refused before anything is sent. */
    pg_image_result bad = f->res[0];
    bad.key = NULL;
    cnp_err err = {{0}};
    CHECK(pg_chunk_commit(s, run, &bad, 1, &err) == CNP_ERR_INVALID, "NULL key refused");
    CHECK(pg_chunk_commit(s, run, NULL, 0, &err) == CNP_OK, "empty chunk is a no-op");
}

static void test_seen_and_runs(pg_store *s, PGconn *c, fixture *f, int64_t run)
{
    pg_image_ref refs[5] = {
        {"canopy-in", f->keys[0], "etag-1", "tiny-1"},
        {"canopy-in", f->keys[13], "etag-1", "tiny-1"}, /* failed in the fixture */
        {"canopy-in", f->keys[0], "etag-9", "tiny-1"},
        {"canopy-in", "no/such/key.png", NULL, "tiny-1"},
        {"canopy-in", f->keys[1], "etag-2", "tiny-1"},
    };
    pg_seen seen[5];
    cnp_err err = {{0}};
    CHECK(pg_images_seen(s, refs, 5, seen, &err) == CNP_OK, "seen: %s", err.msg);
    CHECK(seen[0] == PG_SEEN_OK && seen[1] == PG_SEEN_FAILED && seen[2] == PG_SEEN_NONE &&
          seen[3] == PG_SEEN_NONE && seen[4] == PG_SEEN_OK,
          "seen %d %d %d %d %d", seen[0], seen[1], seen[2], seen[3], seen[4]);

    pg_run_counts counts = {N_IMAGES - 3, 3, 1234, 3};
    CHECK(pg_run_finish(s, run, &counts, &err) == CNP_OK, "finish: %s", err.msg);
    char *row = pgt_dump(c, "SELECT mode, host, images_ok, images_failed, trees, exit_code, "
                            "finished_at >= started_at FROM runs ORDER BY id");
    CHECK(!strcmp(row, "drain|test-host|21|3|1234|3|t\n"), "runs row: %s", row);
    free(row);
    CHECK(pg_run_finish(s, run + 1000, &counts, &err) == CNP_ERR_NOTFOUND, "unknown run");
    CHECK(count_where(c, "SELECT count(*) FROM images WHERE run_id = %s",
                      "1") > 0, "images reference their run");
    /* The example queries of the README run. */
    char *q1 = pgt_dump(c, "SELECT i.scan_id, count(t.*) AS trees FROM images i "
                           "LEFT JOIN trees t ON t.image_ref = i.id WHERE i.status = 'ok' "
                           "GROUP BY i.scan_id ORDER BY 1");
    CHECK(strstr(q1, "scan-1|"), "trees per scan: %s", q1);
    free(q1);
    char *q2 = pgt_dump(c, "SELECT address_id, "
                           "sum(canopy_cover * width * height) / sum(width * height) "
                           "AS canopy_cover, sum(tree_count) AS trees FROM images "
                           "WHERE status = 'ok' AND address_id IS NOT NULL "
                           "GROUP BY address_id ORDER BY address_id");
    CHECK(!strncmp(q2, "addr-7|0.", 9) && !strchr(q2 + 1, '\n')[1], "cover per address: %s",
          q2);
    free(q2);
    char *q3 = pgt_dump(c, "SELECT key, error FROM images WHERE status = 'failed' AND "
                           "run_id = (SELECT max(id) FROM runs) ORDER BY key");
    char want[256];
    /* Sorted by key: scans/s00/img-020 before scans/s03/img-013. */
    snprintf(want, sizeof want, "%s|%s\n%s|%s\n", f->keys[20], f->res[20].error, f->keys[13],
             f->res[13].error);
    CHECK(!strcmp(q3, want), "failures of the last run:\n%s\nwant\n%s", q3, want);
    free(q3);
    pg_store_stats st;
    pg_store_get_stats(s, &st);
    CHECK(st.commits >= 10, "stats commits %llu", (unsigned long long)st.commits);
}

int main(void)
{
    pgt_require_stack();
    const char *ci = pgt_db_create();
    pg_store *s = pgt_store_open(ci);
    cnp_err err = {{0}};
    CHECK(pg_store_ping(s, &err) == CNP_OK, "ping: %s", err.msg);
    int64_t run = 0;
    CHECK_FATAL(pg_run_begin(s, "drain", "test-host", &run, &err) == CNP_OK && run == 1,
                "run: %s", err.msg);
    PGconn *c = pgt_connect(ci);
    fixture *f = calloc(1, sizeof *f);
    test_idempotent(s, c, f, run);
    test_new_versions(s, c, f, run);
    test_trees_replaced(s, c, f, run);
    test_duplicates_and_failures(s, c, f, run);
    test_seen_and_runs(s, c, f, run);
    free(f);
    PQfinish(c);
    pg_store_free(s);
    return TEST_RESULT();
}
