/* Schema migrations under an advisory lock, and the `runs` table. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "canopy/log.h"
#include "store/pg_internal.h"

#ifndef CANOPY_VERSION
#define CANOPY_VERSION "unknown"
#endif

/* Session advisory lock key that serializes migrations: any constant shared
 * by all canopy versions works ("canopy" in ASCII, as a decimal number). */
#define STORE_MIGRATE_LOCK "109270115774585"

int pg_store_schema_latest(void)
{
    size_t n;
    const pg_migration *m = pg_migrations(&n);
    return n ? m[n - 1].version : 0;
}

/* Reads the highest applied version; 0 when the table is absent. */
static cnp_status read_version(pg_store *store, int *version, cnp_err *err)
{
    PGresult *res = NULL;
    cnp_status result = pg_exec(store, "read schema version",
                                "SELECT CASE WHEN to_regclass('schema_migrations') IS NULL "
                                "THEN NULL ELSE 1 END",
                                0, NULL, PGRES_TUPLES_OK, &res, err);
    if (result != CNP_OK)
        return result;
    bool exists = !PQgetisnull(res, 0, 0);
    PQclear(res);
    *version = 0;
    if (!exists)
        return CNP_OK;
    result = pg_exec(store, "read schema version",
                     "SELECT coalesce(max(version), 0) FROM schema_migrations", 0, NULL,
                     PGRES_TUPLES_OK, &res, err);
    if (result != CNP_OK)
        return result;
    *version = atoi(PQgetvalue(res, 0, 0));
    PQclear(res);
    return CNP_OK;
}

cnp_status pg_store_schema_version(pg_store *store, int *version, cnp_err *err)
{
    cnp_status result = pg_conn_ensure(store, err);
    if (result == CNP_OK)
        result = read_version(store, version, err);
    if (result != CNP_OK && pg_conn_lost(store)) {
        /* A read-only query: safe to repeat once on a fresh connection. */
        result = pg_conn_ensure(store, err);
        if (result == CNP_OK)
            result = read_version(store, version, err);
    }
    return result;
}

/* Applies one migration and records it, in one transaction. */
static cnp_status apply_one(pg_store *store, const pg_migration *m, cnp_err *err)
{
    char what[160];
    snprintf(what, sizeof what, "migration %04d_%s", m->version, m->name);
    /* An index build on a large table may take longer than the default
     * statement timeout: no limit inside a migration. */
    cnp_status result = pg_exec(store, what, "BEGIN; SET LOCAL statement_timeout = 0", -1,
                                NULL, PGRES_COMMAND_OK, NULL, err);
    if (result == CNP_OK)
        result = pg_exec(store, what, m->sql, -1, NULL, PGRES_COMMAND_OK, NULL, err);
    if (result == CNP_OK) {
        char version[16];
        snprintf(version, sizeof version, "%d", m->version);
        const char *vals[2] = {version, m->name};
        result = pg_exec(store, what,
                         "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", 2,
                         vals, PGRES_COMMAND_OK, NULL, err);
    }
    if (result == CNP_OK)
        result = pg_exec(store, what, "COMMIT", -1, NULL, PGRES_COMMAND_OK, NULL, err);
    if (result != CNP_OK)
        pg_rollback_quietly(store);
    else
        LOG_INFO("store", "applied %s", what);
    return result;
}

/* Reads canopy_features' postgis row: *has true only when the geometry
 * columns were created. */
static cnp_status read_postgis(pg_store *store, bool *has, char *detail, size_t size,
                               cnp_err *err)
{
    PGresult *res = NULL;
    *has = false;
    if (detail && size)
        detail[0] = '\0';
    /* Two statements: a query naming a missing table fails at parse time. */
    cnp_status result = pg_exec(store, "read canopy_features",
                                "SELECT to_regclass('canopy_features') IS NOT NULL", 0, NULL,
                                PGRES_TUPLES_OK, &res, err);
    if (result != CNP_OK)
        return result;
    bool exists = !strcmp(PQgetvalue(res, 0, 0), "t");
    PQclear(res);
    if (!exists)
        return CNP_OK;
    result = pg_exec(store, "read canopy_features",
                     "SELECT enabled, coalesce(detail, '') FROM canopy_features "
                     "WHERE feature = 'postgis'",
                     0, NULL, PGRES_TUPLES_OK, &res, err);
    if (result != CNP_OK)
        return result;
    if (PQntuples(res) == 1) {
        *has = !strcmp(PQgetvalue(res, 0, 0), "t");
        if (detail && size)
            snprintf(detail, size, "%s", PQgetvalue(res, 0, 1));
    }
    PQclear(res);
    return CNP_OK;
}

/* Says once, after migrating, whether trees and images have geometry
 * columns and why not (server notices only reach the debug log). */
static void log_postgis(pg_store *store)
{
    bool has = false;
    char detail[256];
    cnp_err ignored;
    if (read_postgis(store, &has, detail, sizeof detail, &ignored) != CNP_OK || !detail[0])
        return;
    if (has)
        LOG_INFO("store", "geometry columns (%s): trees.geom, trees.crown, images.footprint",
                 detail);
    else
        LOG_INFO("store", "no geometry columns, lon/lat only: %s", detail);
}

/* The work done while holding the advisory lock. */
static cnp_status migrate_locked(pg_store *store, int *applied, int *version, cnp_err *err)
{
    cnp_status result = pg_exec(store, "create schema_migrations",
                                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                                " version integer PRIMARY KEY,"
                                " name text NOT NULL,"
                                " applied_at timestamptz NOT NULL DEFAULT now())",
                                -1, NULL, PGRES_COMMAND_OK, NULL, err);
    int current = 0;
    if (result == CNP_OK)
        result = read_version(store, &current, err);
    if (result != CNP_OK)
        return result;
    size_t n;
    const pg_migration *m = pg_migrations(&n);
    if (current > pg_store_schema_latest())
        LOG_WARN("store", "database schema version %d is newer than this build's %d", current,
                 pg_store_schema_latest());
    for (size_t i = 0; i < n; i++) {
        if (m[i].version <= current)
            continue;
        result = apply_one(store, &m[i], err);
        if (result != CNP_OK)
            return result;
        (*applied)++;
        current = m[i].version;
    }
    *version = current;
    return CNP_OK;
}

cnp_status pg_store_migrate(pg_store *store, int *applied, int *version, cnp_err *err)
{
    int n_applied = 0, now_version = 0;
    cnp_status result = pg_conn_ensure(store, err);
    if (result != CNP_OK)
        return result;
    /* Every statement below is idempotent or transactional; a connection that
     * died while idle is noticed by the first statement: retry once. */
    result = pg_exec(store, "advisory lock", "SELECT pg_advisory_lock(" STORE_MIGRATE_LOCK ")",
                     -1, NULL, PGRES_TUPLES_OK, NULL, err);
    if (result != CNP_OK && pg_conn_lost(store)) {
        result = pg_conn_ensure(store, err);
        if (result == CNP_OK)
            result = pg_exec(store, "advisory lock",
                             "SELECT pg_advisory_lock(" STORE_MIGRATE_LOCK ")", -1, NULL,
                             PGRES_TUPLES_OK, NULL, err);
    }
    if (result != CNP_OK)
        return result;
    /* Read by the georef migration's DO block (a placeholder setting of
     * this session; the migrations themselves stay static text). */
    const char *gis[1] = {store->postgis_allowed ? "on" : "off"};
    result = pg_exec(store, "migrate settings", "SELECT set_config('canopy.postgis', $1, false)",
                     1, gis, PGRES_TUPLES_OK, NULL, err);
    if (result == CNP_OK)
        result = migrate_locked(store, &n_applied, &now_version, err);
    store->postgis_cached = PG_POSTGIS_UNKNOWN;
    if (!pg_conn_lost(store)) {
        pg_rollback_quietly(store);
        cnp_err ignored;
        pg_exec(store, "advisory unlock", "SELECT pg_advisory_unlock(" STORE_MIGRATE_LOCK ")",
                -1, NULL, PGRES_TUPLES_OK, NULL, &ignored);
    }
    if (applied)
        *applied = n_applied;
    if (version)
        *version = now_version;
    if (result == CNP_OK && n_applied > 0)
        log_postgis(store);
    return result;
}

void pg_store_set_postgis(pg_store *store, bool enabled)
{
    store->postgis_allowed = enabled;
}

cnp_status pg_store_has_postgis(pg_store *store, bool *has, cnp_err *err)
{
    if (store->postgis_cached != PG_POSTGIS_UNKNOWN && store->conn &&
        PQstatus(store->conn) == CONNECTION_OK) {
        *has = store->postgis_cached == PG_POSTGIS_YES;
        return CNP_OK;
    }
    cnp_status result = pg_conn_ensure(store, err);
    if (result == CNP_OK)
        result = read_postgis(store, has, NULL, 0, err);
    if (result == CNP_OK)
        store->postgis_cached = *has ? PG_POSTGIS_YES : PG_POSTGIS_NO;
    return result;
}

/* Runs one parameterized write in its own transaction. If the connection was
 * found dead at BEGIN nothing was sent, so it reconnects and tries once more. */
static cnp_status exec_write(pg_store *store, const char *what, const char *sql, int nparams,
                             const char *const *vals, ExecStatusType want, PGresult **out,
                             cnp_err *err)
{
    cnp_status result = CNP_OK;
    for (int attempt = 0; attempt < 2; attempt++) {
        result = pg_conn_ensure(store, err);
        if (result != CNP_OK)
            return result;
        result = pg_exec(store, what, "BEGIN", -1, NULL, PGRES_COMMAND_OK, NULL, err);
        if (result == CNP_OK)
            break;
        if (!pg_conn_lost(store))
            return result;
    }
    if (result != CNP_OK)
        return result;
    PGresult *res = NULL;
    result = pg_exec(store, what, sql, nparams, vals, want, &res, err);
    if (result == CNP_OK)
        result = pg_exec(store, what, "COMMIT", -1, NULL, PGRES_COMMAND_OK, NULL, err);
    if (result != CNP_OK) {
        PQclear(res);
        pg_rollback_quietly(store);
        return result;
    }
    if (out)
        *out = res;
    else
        PQclear(res);
    return CNP_OK;
}

cnp_status pg_run_begin(pg_store *store, const char *mode, const char *host, int64_t *run_id,
                        cnp_err *err)
{
    char hostname[256] = "";
    if (!host) {
        if (gethostname(hostname, sizeof hostname - 1) != 0)
            hostname[0] = '\0';
        host = hostname[0] ? hostname : NULL;
    }
    char pid[16];
    snprintf(pid, sizeof pid, "%ld", (long)getpid());
    const char *vals[4] = {mode, host, pid, CANOPY_VERSION};
    PGresult *res = NULL;
    cnp_status result = exec_write(store, "begin run",
                                   "INSERT INTO runs (mode, host, pid, version) "
                                   "VALUES ($1, $2, $3, $4) RETURNING id",
                                   4, vals, PGRES_TUPLES_OK, &res, err);
    if (result != CNP_OK)
        return result;
    *run_id = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    PQclear(res);
    return CNP_OK;
}

cnp_status pg_run_finish(pg_store *store, int64_t run_id, const pg_run_counts *counts,
                         cnp_err *err)
{
    char id[24], ok[24], failed[24], trees[24], code[16];
    snprintf(id, sizeof id, "%lld", (long long)run_id);
    snprintf(ok, sizeof ok, "%lld", (long long)counts->images_ok);
    snprintf(failed, sizeof failed, "%lld", (long long)counts->images_failed);
    snprintf(trees, sizeof trees, "%lld", (long long)counts->trees);
    snprintf(code, sizeof code, "%d", counts->exit_code);
    const char *vals[5] = {id, ok, failed, trees, code};
    PGresult *res = NULL;
    cnp_status result = exec_write(store, "finish run",
                                   "UPDATE runs SET finished_at = now(), images_ok = $2, "
                                   "images_failed = $3, trees = $4, exit_code = $5 "
                                   "WHERE id = $1",
                                   5, vals, PGRES_COMMAND_OK, &res, err);
    if (result != CNP_OK)
        return result;
    bool found = strcmp(PQcmdTuples(res), "0") != 0;
    PQclear(res);
    if (!found) {
        cnp_err_set(err, "postgres: finish run: run %lld does not exist", (long long)run_id);
        return CNP_ERR_NOTFOUND;
    }
    return CNP_OK;
}
