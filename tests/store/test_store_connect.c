/* libpq as users expect: key=value and URI conninfo, empty conninfo = PG*
 * variables, sslmode honoured, bad syntax is a configuration error, an
 * unreachable server a transient one, SQL errors carry their SQLSTATE. */
#include <string.h>

#include "canopy/buf.h"
#include "canopy/store.h"
#include "store/pg_internal.h"
#include "store/pgtest.h"

static cnp_status try_open(const char *ci, cnp_err *err)
{
    pg_store *s = NULL;
    cnp_status st = pg_store_open(ci, &s, err);
    if (st == CNP_OK) {
        st = pg_store_ping(s, err);
        pg_store_free(s);
    }
    return st;
}

int main(void)
{
    pgt_require_stack();
    const char *ci = pgt_db_create();
    const char *db = strchr(ci, '=') + 1;
    cnp_err err = {{0}};

    /* key=value, with sslmode=disable honoured (the local server has no TLS). */
    char kv[256];
    snprintf(kv, sizeof kv, "%s sslmode=disable application_name=canopy-test", ci);
    CHECK(try_open(kv, &err) == CNP_OK, "key=value: %s", err.msg);

    /* URI built from the PG* variables. */
    const char *host = getenv("PGHOST"), *port = getenv("PGPORT"), *user = getenv("PGUSER");
    char uri[512];
    snprintf(uri, sizeof uri, "postgresql://%s@%s:%s/%s", user ? user : "postgres",
             host ? host : "127.0.0.1", port ? port : "5432", db);
    if (host && host[0] != '/')
        CHECK(try_open(uri, &err) == CNP_OK, "URI %s: %s", uri, err.msg);

    /* Empty conninfo: libpq's own PG* variables decide (PGDATABASE here). */
    setenv("PGDATABASE", db, 1);
    pg_store *s = NULL;
    CHECK_FATAL(pg_store_open("", &s, &err) == CNP_OK, "empty conninfo: %s", err.msg);
    CHECK_FATAL(pg_store_migrate(s, NULL, NULL, &err) == CNP_OK, "migrate: %s", err.msg);

    /* A default statement timeout, unless the user chose one. */
    PGresult *res = PQexec(s->conn, "SHOW statement_timeout");
    CHECK(!strcmp(PQgetvalue(res, 0, 0), "10min"), "statement_timeout %s",
          PQgetvalue(res, 0, 0));
    PQclear(res);
    pg_store *s2 = NULL;
    snprintf(kv, sizeof kv, "%s options='-c statement_timeout=5s'", ci);
    CHECK_FATAL(pg_store_open(kv, &s2, &err) == CNP_OK, "open with options: %s", err.msg);
    res = PQexec(s2->conn, "SHOW statement_timeout");
    CHECK(!strcmp(PQgetvalue(res, 0, 0), "5s"), "user's statement_timeout %s",
          PQgetvalue(res, 0, 0));
    PQclear(res);
    pg_store_free(s2);

    /* An SQL error is remote and names its SQLSTATE (23503: no such run). */
    pg_image_result r;
    pg_image_result_init(&r);
    r.bucket = "b", r.key = "k", r.etag = "e", r.model_version = "m";
    cnp_status st = pg_chunk_commit(s, 424242, &r, 1, &err);
    CHECK(st == CNP_ERR_REMOTE && strstr(err.msg, "SQLSTATE 23503"), "FK error: %s: %s",
          cnp_status_name(st), err.msg);
    /* The store is usable after a failed chunk. */
    CHECK(pg_chunk_commit(s, 0, &r, 1, &err) == CNP_OK, "after error: %s", err.msg);
    int64_t run = 0;
    CHECK(pg_run_begin(s, "reprocess", NULL, &run, &err) == CNP_OK && run > 0, "run: %s",
          err.msg);
    PGconn *c = pgt_connect(ci);
    CHECK(pgt_int(c, "SELECT count(*) FROM runs WHERE host IS NOT NULL AND host <> '' "
                     "AND pid IS NOT NULL AND mode = 'reprocess'") == 1, "run row");
    PQfinish(c);
    pg_store_free(s);

    /* sslmode=require against a server without TLS: refused, not ignored. */
    snprintf(kv, sizeof kv, "%s sslmode=require", ci);
    st = try_open(kv, &err);
    CHECK(st != CNP_OK, "sslmode=require was ignored");

    /* Syntax errors are configuration errors, reported at once. */
    st = try_open("host=localhost port", &err);
    CHECK(st == CNP_ERR_CONFIG && strstr(err.msg, "conninfo"), "bad syntax: %s: %s",
          cnp_status_name(st), err.msg);
    st = try_open("postgresql://[::1", &err);
    CHECK(st == CNP_ERR_CONFIG, "bad URI: %s: %s", cnp_status_name(st), err.msg);

    /* Nobody listening: bounded retries, then transient, naming the target. */
    double t0 = cnp_now();
    st = try_open("host=127.0.0.1 port=1 connect_timeout=2", &err);
    double took = cnp_now() - t0;
    CHECK(st == CNP_ERR_TRANSIENT && strstr(err.msg, "127.0.0.1:1"), "unreachable: %s: %s",
          cnp_status_name(st), err.msg);
    CHECK(took < 30, "gave up after %.1f s", took);
    return TEST_RESULT();
}
