/* The server goes away during a commit: the call fails (transient), nothing
 * of the chunk is visible, and after a restart the same chunk commits on the
 * same store. Also: a restart while idle is absorbed, and a server that stays
 * down gives a transient error after the bounded reconnect attempts. And a
 * chunk whose commit returned survives the server stopping at once right
 * after it (stack.sh pg-crash: the test stack must not run with
 * synchronous_commit = off, which loses such rows).
 * Stops and starts the stack's PostgreSQL: registered SERIAL. */
#include <string.h>

#include "canopy/store.h"
#include "store/pg_internal.h"
#include "store/pgtest.h"

enum { N = 40, TREES = 50 };

static bool server_stopped;

static void stop_server(void)
{
    CHECK_FATAL(pgt_stack("pg-stop") == 0, "pg-stop failed");
    server_stopped = true;
}

static void start_server(void)
{
    CHECK_FATAL(pgt_stack("pg-start") == 0, "pg-start failed");
    server_stopped = false;
}

static void restart_at_exit(void)
{
    if (server_stopped)
        pgt_stack("pg-start");
}

static void hook_stop(void *user)
{
    (void)user;
    stop_server();
}

typedef struct chunk {
    pg_image_result res[N];
    char keys[N][48];
    pg_tree trees[TREES];
} chunk;

static void make(chunk *c, const char *prefix)
{
    for (int t = 0; t < TREES; t++)
        c->trees[t] = (pg_tree){.x = (float)t, .y = (float)t, .radius = 2.0f, .score = 0.75f};
    for (int i = 0; i < N; i++) {
        pg_image_result *r = &c->res[i];
        pg_image_result_init(r);
        snprintf(c->keys[i], sizeof c->keys[i], "%s/%03d.png", prefix, i);
        r->bucket = "b", r->key = c->keys[i], r->etag = "e", r->model_version = "m";
        r->status = PG_IMAGE_OK;
        r->trees = c->trees, r->n_trees = TREES;
    }
}

static long long rows_like(const char *ci, const char *prefix, bool trees)
{
    PGconn *c = pgt_connect(ci);
    char sql[256];
    snprintf(sql, sizeof sql,
             trees ? "SELECT count(*) FROM trees t JOIN images i ON i.id = t.image_ref "
                     "WHERE i.key LIKE '%s/%%'"
                   : "SELECT count(*) FROM images WHERE key LIKE '%s/%%'",
             prefix);
    long long n = pgt_int(c, sql);
    PQfinish(c);
    return n;
}

int main(void)
{
    pgt_require_stack();
    const char *stack = getenv("CANOPY_STACK");
    if (!stack || !*stack) {
        const char *req = getenv("CANOPY_TEST_REQUIRE_STACK");
        fprintf(stderr, "CANOPY_STACK unset: cannot stop the server\n");
        return req && !strcmp(req, "1") ? 1 : 77;
    }
    const char *ci = pgt_db_create();
    atexit(restart_at_exit);
    pg_store *s = pgt_store_open(ci);
    cnp_err err = {{0}};
    pg_store_set_reconnect(s, 40, 500); /* up to ~20 s for the restart */
    static chunk a, b, c, d[3];
    make(&a, "a");
    make(&b, "b");
    make(&c, "c");
    make(&d[0], "d0");
    make(&d[1], "d1");
    make(&d[2], "d2");
    CHECK(pg_chunk_commit(s, 0, a.res, N, &err) == CNP_OK, "chunk a: %s", err.msg);

    /* 1. Server stopped between the staged upsert and COMMIT. */
    pg_store_set_commit_hook(s, hook_stop, NULL);
    cnp_status st = pg_chunk_commit(s, 0, b.res, N, &err);
    pg_store_set_commit_hook(s, NULL, NULL);
    start_server();
    CHECK(st == CNP_ERR_TRANSIENT, "commit during shutdown: %s: %s", cnp_status_name(st),
          err.msg);
    fprintf(stderr, "expected failure: %s\n", err.msg);
    CHECK(rows_like(ci, "b", false) == 0 && rows_like(ci, "b", true) == 0,
          "part of the failed chunk is visible");
    CHECK(rows_like(ci, "a", false) == N, "earlier chunk lost");
    CHECK(pg_chunk_commit(s, 0, b.res, N, &err) == CNP_OK, "chunk b after restart: %s", err.msg);
    CHECK(rows_like(ci, "b", false) == N && rows_like(ci, "b", true) == N * TREES,
          "chunk b rows after retry");
    pg_store_stats stats;
    pg_store_get_stats(s, &stats);
    CHECK(stats.reconnects >= 1, "no reconnect counted");

    /* 2. Restart while idle: the next commit reconnects by itself. */
    stop_server();
    start_server();
    CHECK(pg_chunk_commit(s, 0, c.res, N, &err) == CNP_OK, "chunk c after idle restart: %s",
          err.msg);
    CHECK(rows_like(ci, "c", false) == N, "chunk c rows");
    CHECK(pg_store_ping(s, &err) == CNP_OK, "ping: %s", err.msg);

    /* 3. Server down for good: bounded attempts, then a transient error. */
    pg_store_set_reconnect(s, 3, 200);
    stop_server();
    st = pg_chunk_commit(s, 0, a.res, N, &err);
    CHECK(st == CNP_ERR_TRANSIENT, "commit with the server down: %s: %s",
          cnp_status_name(st), err.msg);
    st = pg_store_ping(s, &err);
    CHECK(st == CNP_ERR_TRANSIENT, "ping with the server down: %s", cnp_status_name(st));
    start_server();
    pg_store_set_reconnect(s, 40, 500);
    CHECK(pg_store_ping(s, &err) == CNP_OK, "ping after start: %s", err.msg);

    /* 4. A crash right after COMMIT returned: the rows are there after
     * recovery (a few rounds, each crashing within milliseconds). */
    for (int i = 0; i < 3; i++) {
        char prefix[8];
        snprintf(prefix, sizeof prefix, "d%d", i);
        CHECK_FATAL(pg_chunk_commit(s, 0, d[i].res, N, &err) == CNP_OK, "chunk %s: %s", prefix,
                    err.msg);
        CHECK_FATAL(pgt_stack("pg-crash") == 0, "pg-crash failed");
        server_stopped = true;
        start_server();
        CHECK(rows_like(ci, prefix, false) == N && rows_like(ci, prefix, true) == N * TREES,
              "chunk %s committed, then lost in a crash: %lld images, %lld trees", prefix,
              rows_like(ci, prefix, false), rows_like(ci, prefix, true));
    }
    pg_store_free(s);
    return TEST_RESULT();
}
