/* 4 writer processes upsert overlapping chunks at once: every commit
 * succeeds (deadlocks and serialization failures are retried inside the
 * store), no duplicates, and every image's trees belong to the same write
 * as its row. */
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "canopy/store.h"
#include "store/pgtest.h"

enum { WRITERS = 4, POOL = 80, CHUNKS = 12, PER_CHUNK = 30, MAX_TREES = 25 };

static void key_of(int k, char *out, size_t size)
{
    snprintf(out, size, "shared/\"pool\"\t%03d.png", k);
}

static int writer(const char *ci, int w)
{
    pg_store *s = NULL;
    cnp_err err = {{0}};
    if (pg_store_open(ci, &s, &err) != CNP_OK) {
        fprintf(stderr, "writer %d: %s\n", w, err.msg);
        return 1;
    }
    unsigned seed = 1234u + (unsigned)w;
    static char keys[PER_CHUNK][64], tag[32];
    static pg_tree trees[PER_CHUNK][MAX_TREES];
    pg_image_result res[PER_CHUNK];
    int status = 0;
    for (int c = 0; c < CHUNKS && !status; c++) {
        snprintf(tag, sizeof tag, "w%dc%d", w, c);
        int pick[PER_CHUNK];
        int start = (w * 13 + c * 7) % POOL;
        for (int i = 0; i < PER_CHUNK; i++)
            pick[i] = (start + i) % POOL;
        for (int i = PER_CHUNK - 1; i > 0; i--) { /* a different order per writer */
            int j = rand_r(&seed) % (i + 1), t = pick[i];
            pick[i] = pick[j], pick[j] = t;
        }
        for (int i = 0; i < PER_CHUNK; i++) {
            pg_image_result *r = &res[i];
            pg_image_result_init(r);
            key_of(pick[i], keys[i], sizeof keys[i]);
            r->bucket = "b";
            r->key = keys[i];
            r->etag = "e";
            r->model_version = "m";
            r->status = PG_IMAGE_OK;
            r->mask_key = tag;
            r->scan_id = pick[i] % 2 ? NULL : "scan";
            int n = (w * 5 + c * 3 + i) % MAX_TREES;
            for (int t = 0; t < n; t++)
                trees[i][t] = (pg_tree){.x = (float)t, .y = (float)w, .radius = (float)c,
                                        .score = 0.5f, .label = tag};
            r->trees = trees[i];
            r->n_trees = (size_t)n;
        }
        cnp_status st = pg_chunk_commit(s, 0, res, PER_CHUNK, &err);
        if (st != CNP_OK) {
            fprintf(stderr, "writer %d chunk %d: %s: %s\n", w, c, cnp_status_name(st), err.msg);
            status = 1;
        }
    }
    pg_store_stats stats;
    pg_store_get_stats(s, &stats);
    fprintf(stderr, "writer %d: %llu commits, %llu retries\n", w,
            (unsigned long long)stats.commits, (unsigned long long)stats.retries);
    pg_store_free(s);
    return status;
}

int main(void)
{
    pgt_require_stack();
    const char *ci = pgt_db_create();
    pg_store_free(pgt_store_open(ci)); /* the schema, before the writers race */

    fflush(NULL);
    pid_t pids[WRITERS];
    for (int w = 0; w < WRITERS; w++) {
        pids[w] = fork();
        CHECK_FATAL(pids[w] >= 0, "fork");
        if (pids[w] == 0)
            _exit(writer(ci, w));
    }
    for (int w = 0; w < WRITERS; w++) {
        int status = 0;
        CHECK_FATAL(waitpid(pids[w], &status, 0) == pids[w], "waitpid");
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "writer %d failed", w);
    }

    bool used[POOL] = {false};
    int distinct = 0;
    for (int w = 0; w < WRITERS; w++)
        for (int c = 0; c < CHUNKS; c++)
            for (int i = 0; i < PER_CHUNK; i++) {
                int k = ((w * 13 + c * 7) % POOL + i) % POOL;
                distinct += !used[k];
                used[k] = true;
            }
    PGconn *c = pgt_connect(ci);
    CHECK(pgt_int(c, "SELECT count(*) FROM images") == distinct, "images %lld, expected %d",
          pgt_int(c, "SELECT count(*) FROM images"), distinct);
    CHECK(pgt_int(c, "SELECT count(DISTINCT (bucket, key, etag, model_version)) FROM images") ==
              distinct, "duplicate object versions");
    CHECK(pgt_int(c, "SELECT count(*) FROM images i WHERE tree_count <> "
                     "(SELECT count(*) FROM trees t WHERE t.image_ref = i.id)") == 0,
          "tree_count disagrees with the trees");
    CHECK(pgt_int(c, "SELECT count(*) FROM trees t JOIN images i ON i.id = t.image_ref "
                     "WHERE t.label IS DISTINCT FROM i.mask_key") == 0,
          "trees of one write mixed with the row of another");
    CHECK(pgt_int(c, "SELECT count(*) FROM (SELECT image_ref, count(*) AS n, max(idx) AS m "
                     "FROM trees GROUP BY 1) x WHERE m + 1 <> n") == 0,
          "tree positions not contiguous (appended twice?)");
    char key[64];
    key_of(0, key, sizeof key);
    CHECK(pgt_int(c, "SELECT count(*) FROM images WHERE key LIKE 'shared/\"pool\"%'") == distinct,
          "keys");
    PQfinish(c);
    return TEST_RESULT();
}
