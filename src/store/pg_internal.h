/* Private to src/store and its tests: the migration table and test hooks. */
#ifndef CANOPY_STORE_PG_INTERNAL_H
#define CANOPY_STORE_PG_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>

#include <libpq-fe.h>

#include "canopy/buf.h"
#include "canopy/store.h"

/* One numbered migration: applied in ascending version order, never edited
 * once released (add a new one instead). */
typedef struct pg_migration {
    int version;
    const char *name;
    const char *sql;
} pg_migration;

/* The migrations of this build, ascending by version (src/store/migrations.c). */
const pg_migration *pg_migrations(size_t *count);

/* Test hook: called inside pg_chunk_commit() after the rows are staged and
 * upserted, right before COMMIT. NULL removes it. */
typedef void (*pg_commit_hook)(void *user);
void pg_store_set_commit_hook(pg_store *store, pg_commit_hook hook, void *user);

/* ---- shared by the files of src/store ---- */

struct pg_store {
    PGconn *conn;              /* NULL before the first connection */
    char *conninfo;            /* owned; "" for libpq defaults */
    int reconnect_attempts;
    int max_backoff_ms;
    char sqlstate[6];          /* of the last failure; "" when none or no SQLSTATE */
    pg_store_stats stats;
    pg_commit_hook hook;
    void *hook_user;
    bool postgis_allowed;      /* pg_store_set_postgis(); default true */
    int postgis_cached;        /* PG_POSTGIS_*: per connection, reset on (re)connect */
};

/* What this connection knows about the database's geometry columns. */
enum { PG_POSTGIS_UNKNOWN = 0, PG_POSTGIS_NO = 1, PG_POSTGIS_YES = 2 };

/* Makes sure the store has a healthy, idle connection: connects or resets
 * it (with backoff) when lost, rolls back a transaction left open. */
cnp_status pg_conn_ensure(pg_store *store, cnp_err *err);

/* Runs sql (several statements allowed when nparams < 0) and checks the
 * result status is `want`. On success *out (may be NULL) owns the result
 * (PQclear it). On failure fills err with "postgres: <what>: ..." and the
 * SQLSTATE, records it in store->sqlstate and returns the classified status. */
cnp_status pg_exec(pg_store *store, const char *what, const char *sql, int nparams,
                   const char *const *values, ExecStatusType want, PGresult **out,
                   cnp_err *err);

/* Sends a ROLLBACK if a transaction is open and the connection is alive. */
void pg_rollback_quietly(pg_store *store);

/* Classifies a failed result (res may be NULL) and fills err. */
cnp_status pg_fail(pg_store *store, const PGresult *res, const char *what, cnp_err *err);

/* True when the last failure was a deadlock or serialization failure. */
bool pg_last_is_retryable(const pg_store *store);

/* True when the connection is gone (the last failure was a connection loss). */
bool pg_conn_lost(const pg_store *store);

void pg_sleep_ms(int ms);

/* ---- COPY text format encoding (pg_copy.c) ---- */

/* A COPY text-format payload; appends are no-ops once memory ran out. Each
 * value is followed by a tab; pg_copy_eol() turns the last tab into a newline. */
typedef struct pg_copy {
    cnp_buf buf;
    bool nomem;
    size_t sanitized; /* values that were not valid UTF-8 (stored with U+FFFD) */
} pg_copy;

void pg_copy_str(pg_copy *c, const char *s);              /* NULL: \N */
void pg_copy_int(pg_copy *c, int64_t v);
void pg_copy_real(pg_copy *c, double v);                  /* float4; NAN: \N */
void pg_copy_double(pg_copy *c, double v);                /* float8; NAN: \N */
void pg_copy_null(pg_copy *c);
/* A double precision[] value of n items, 17 significant digits; v NULL: \N;
 * a non-finite item is an SQL NULL element. */
void pg_copy_double_array(pg_copy *c, const double *v, size_t n);
/* A text[] value; items NULL: \N; a NULL item is an SQL NULL element. */
void pg_copy_text_array(pg_copy *c, const char *const *items, size_t n);
void pg_copy_eol(pg_copy *c);
void pg_copy_free(pg_copy *c);

/* Appends the array literal {"a","b\"c"} of items (NUL-terminated). */
cnp_status pg_array_literal(cnp_buf *out, const char *const *items, size_t n);

/* True when s is well-formed UTF-8 (what the server will accept). */
bool pg_utf8_valid(const char *s);

/* A malloc'd copy of s with every byte that is not part of a well-formed
 * UTF-8 sequence replaced by U+FFFD; NULL when out of memory. */
char *pg_utf8_sanitize(const char *s);

#endif
