/* PostgreSQL connection handling: connect with libpq defaults, reconnect
 * with capped backoff, run statements, classify errors by SQLSTATE. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "canopy/log.h"
#include "canopy/rand.h"
#include "store/pg_internal.h"

#define STORE_DEFAULT_ATTEMPTS 6
#define STORE_DEFAULT_BACKOFF_MAX_MS 2000
#define STORE_BACKOFF_FIRST_MS 100
#define STORE_STATEMENT_TIMEOUT "600s"

void pg_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* libpq prints NOTICEs to stderr by default ("relation already exists,
 * skipping"); library code must not print, so route them to the debug log. */
static void store_notice(void *arg, const PGresult *res)
{
    (void)arg;
    const char *msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
    LOG_DEBUG("store", "server notice: %s", msg ? msg : "?");
}

/* Copies libpq's message without the trailing newline(s). */
static void trimmed_message(const char *msg, char *out, size_t size)
{
    snprintf(out, size, "%s", msg && *msg ? msg : "unknown error");
    size_t len = strlen(out);
    while (len > 0 && (out[len - 1] == '\n' || out[len - 1] == ' '))
        out[--len] = '\0';
    /* One line: newlines and tabs of multi-line libpq messages become one blank. */
    char *w = out;
    for (const char *p = out; *p; p++) {
        char ch = (*p == '\n' || *p == '\t' || *p == '\r') ? ' ' : *p;
        if (ch == ' ' && w > out && w[-1] == ' ')
            continue;
        *w++ = ch;
    }
    *w = '\0';
}

/* Describes where we tried to connect, without secrets (no password). */
static void describe_target(PGconn *conn, char *out, size_t size)
{
    const char *host = conn ? PQhost(conn) : NULL;
    const char *port = conn ? PQport(conn) : NULL;
    const char *db = conn ? PQdb(conn) : NULL;
    snprintf(out, size, "%s:%s/%s", host && *host ? host : "(default)",
             port && *port ? port : "(default)", db && *db ? db : "(default)");
}

/* One connection attempt (fresh or reset). */
static bool connect_once(pg_store *store)
{
    /* A new session may see another schema (a migration ran meanwhile). */
    store->postgis_cached = PG_POSTGIS_UNKNOWN;
    if (store->conn) {
        PQreset(store->conn);
    } else {
        /* Our defaults go BEFORE dbname: the expanded conninfo overrides them. */
        const char *keys[8];
        const char *vals[8];
        int n = 0;
        if (!getenv("PGCONNECT_TIMEOUT")) {
            keys[n] = "connect_timeout";
            vals[n++] = "10";
        }
        /* Notice a silently dead peer (network partition) within about a
         * minute instead of the kernel's two hours; TCP only. */
        keys[n] = "keepalives_idle";
        vals[n++] = "30";
        keys[n] = "keepalives_interval";
        vals[n++] = "10";
        keys[n] = "keepalives_count";
        vals[n++] = "3";
        keys[n] = "fallback_application_name";
        vals[n++] = "canopy";
        keys[n] = "dbname";
        vals[n++] = store->conninfo;
        keys[n] = NULL;
        vals[n] = NULL;
        store->conn = PQconnectdbParams(keys, vals, 1);
    }
    if (!store->conn || PQstatus(store->conn) != CONNECTION_OK)
        return false;
    PQsetNoticeReceiver(store->conn, store_notice, NULL);
    /* Keys and labels are UTF-8 whatever the client locale says. */
    if (PQsetClientEncoding(store->conn, "UTF8") != 0)
        return false;
    /* A commit stuck behind someone's lock must not hang a worker past its
     * messages' visibility timeout: bound statements unless the user already
     * did (conninfo options, PGOPTIONS, role or database settings). The
     * resulting 57014 is transient: the chunk is retried after redelivery. */
    PGresult *res = PQexec(store->conn,
                           "SELECT set_config('statement_timeout', '" STORE_STATEMENT_TIMEOUT
                           "', false) WHERE current_setting('statement_timeout') = '0'");
    bool ok = PQresultStatus(res) == PGRES_TUPLES_OK;
    PQclear(res);
    return ok;
}

/* Connects or re-connects, retrying with capped exponential backoff. */
static cnp_status store_connect(pg_store *store, cnp_err *err)
{
    bool was_connected = store->conn != NULL;
    int backoff = STORE_BACKOFF_FIRST_MS;
    for (int attempt = 1;; attempt++) {
        if (connect_once(store)) {
            if (was_connected) {
                store->stats.reconnects++;
                LOG_INFO("store", "reconnected to PostgreSQL after %d attempt(s)", attempt);
            }
            return CNP_OK;
        }
        if (store->conn && PQconnectionNeedsPassword(store->conn)) {
            char target[256], msg[512];
            describe_target(store->conn, target, sizeof target);
            trimmed_message(PQerrorMessage(store->conn), msg, sizeof msg);
            cnp_err_set(err, "postgres %s: password required: %s", target, msg);
            return CNP_ERR_AUTH;
        }
        if (attempt >= store->reconnect_attempts) {
            char target[256], msg[512];
            describe_target(store->conn, target, sizeof target);
            trimmed_message(store->conn ? PQerrorMessage(store->conn) : "out of memory", msg,
                            sizeof msg);
            cnp_err_set(err, "postgres %s: cannot connect after %d attempts: %s", target,
                        attempt, msg);
            return store->conn ? CNP_ERR_TRANSIENT : CNP_ERR_NOMEM;
        }
        LOG_DEBUG("store", "connection attempt %d failed; retrying in %d ms", attempt, backoff);
        /* Jitter: workers that lost the server together do not return together. */
        pg_sleep_ms(backoff / 2 + cnp_jitter(backoff / 2 + 1));
        backoff = backoff * 2 > store->max_backoff_ms ? store->max_backoff_ms : backoff * 2;
    }
}

cnp_status pg_conn_ensure(pg_store *store, cnp_err *err)
{
    if (store->conn && PQstatus(store->conn) == CONNECTION_OK) {
        PGTransactionStatusType ts = PQtransactionStatus(store->conn);
        if (ts == PQTRANS_IDLE)
            return CNP_OK;
        if (ts == PQTRANS_INTRANS || ts == PQTRANS_INERROR) {
            pg_rollback_quietly(store);
            if (PQstatus(store->conn) == CONNECTION_OK &&
                PQtransactionStatus(store->conn) == PQTRANS_IDLE)
                return CNP_OK;
        }
    }
    return store_connect(store, err);
}

void pg_rollback_quietly(pg_store *store)
{
    if (!store->conn || PQstatus(store->conn) != CONNECTION_OK)
        return;
    PGTransactionStatusType ts = PQtransactionStatus(store->conn);
    if (ts != PQTRANS_INTRANS && ts != PQTRANS_INERROR)
        return;
    PQclear(PQexec(store->conn, "ROLLBACK"));
}

/* SQLSTATEs worth retrying later: connection exceptions (08), transaction
 * rollbacks (40: serialization failure, deadlock), insufficient resources
 * (53), operator intervention (57: shutdown, cannot connect now, canceled),
 * lock not available (55P03). */
static cnp_status classify_sqlstate(const char *state)
{
    if (!strncmp(state, "08", 2) || !strncmp(state, "40", 2) || !strncmp(state, "53", 2) ||
        !strncmp(state, "57", 2) || !strcmp(state, "55P03") || !strcmp(state, "58000") ||
        !strcmp(state, "58030"))
        return CNP_ERR_TRANSIENT;
    if (!strncmp(state, "28", 2))
        return CNP_ERR_AUTH;
    return CNP_ERR_REMOTE;
}

cnp_status pg_fail(pg_store *store, const PGresult *res, const char *what, cnp_err *err)
{
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    snprintf(store->sqlstate, sizeof store->sqlstate, "%s", state ? state : "");
    char msg[768];
    const char *primary = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    trimmed_message(primary ? primary : PQerrorMessage(store->conn), msg, sizeof msg);

    bool lost = PQstatus(store->conn) != CONNECTION_OK;
    cnp_status status;
    if (lost)
        status = CNP_ERR_TRANSIENT;
    else if (state)
        status = classify_sqlstate(state);
    else if (res && PQresultStatus(res) != PGRES_FATAL_ERROR)
        status = CNP_ERR_INTERNAL; /* unexpected but successful result kind */
    else
        status = CNP_ERR_REMOTE;
    if (lost)
        cnp_err_set(err, "postgres: %s: connection lost: %s", what, msg);
    else if (state)
        cnp_err_set(err, "postgres: %s: SQLSTATE %s: %s", what, state, msg);
    else if (res && PQresultStatus(res) != PGRES_FATAL_ERROR)
        cnp_err_set(err, "postgres: %s: unexpected result %s", what,
                    PQresStatus(PQresultStatus(res)));
    else
        cnp_err_set(err, "postgres: %s: %s", what, msg);
    return status;
}

bool pg_last_is_retryable(const pg_store *store)
{
    return !strcmp(store->sqlstate, "40001") || !strcmp(store->sqlstate, "40P01");
}

bool pg_conn_lost(const pg_store *store)
{
    return !store->conn || PQstatus(store->conn) != CONNECTION_OK;
}

cnp_status pg_exec(pg_store *store, const char *what, const char *sql, int nparams,
                   const char *const *values, ExecStatusType want, PGresult **out,
                   cnp_err *err)
{
    PGresult *res = nparams < 0 ? PQexec(store->conn, sql)
                                : PQexecParams(store->conn, sql, nparams, NULL, values, NULL,
                                               NULL, 0);
    if (res && PQresultStatus(res) == want) {
        store->sqlstate[0] = '\0';
        if (out)
            *out = res;
        else
            PQclear(res);
        return CNP_OK;
    }
    cnp_status result = pg_fail(store, res, what, err);
    PQclear(res);
    return result;
}

cnp_status pg_store_open(const char *conninfo, pg_store **out, cnp_err *err)
{
    *out = NULL;
    const char *ci = conninfo ? conninfo : "";
    if (*ci) {
        /* Syntax errors are configuration errors, not worth retrying. */
        char *perr = NULL;
        PQconninfoOption *opts = PQconninfoParse(ci, &perr);
        if (!opts) {
            char msg[512];
            trimmed_message(perr ? perr : "out of memory", msg, sizeof msg);
            cnp_err_set(err, "[postgres] conninfo: %s", msg);
            PQfreemem(perr);
            return CNP_ERR_CONFIG;
        }
        PQconninfoFree(opts);
    }
    pg_store *store = calloc(1, sizeof *store);
    if (!store || !(store->conninfo = strdup(ci))) {
        free(store);
        cnp_err_set(err, "postgres: out of memory");
        return CNP_ERR_NOMEM;
    }
    store->reconnect_attempts = STORE_DEFAULT_ATTEMPTS;
    store->max_backoff_ms = STORE_DEFAULT_BACKOFF_MAX_MS;
    store->postgis_allowed = true;
    cnp_status result = store_connect(store, err);
    if (result != CNP_OK) {
        pg_store_free(store);
        return result;
    }
    LOG_DEBUG("store", "connected to %s:%s/%s (server %d)", PQhost(store->conn),
              PQport(store->conn), PQdb(store->conn), PQserverVersion(store->conn));
    *out = store;
    return CNP_OK;
}

cnp_status pg_store_open_config(const cnp_postgres_config *cfg, pg_store **out, cnp_err *err)
{
    return pg_store_open(cfg->conninfo, out, err);
}

void pg_store_free(pg_store *store)
{
    if (!store)
        return;
    if (store->conn)
        PQfinish(store->conn);
    free(store->conninfo);
    free(store);
}

cnp_status pg_store_ping(pg_store *store, cnp_err *err)
{
    cnp_status result = CNP_OK;
    /* A server restart is only noticed when a statement fails: one retry on
     * a fresh connection makes ping answer for the server, not the socket. */
    for (int attempt = 0; attempt < 2; attempt++) {
        result = pg_conn_ensure(store, err);
        if (result != CNP_OK)
            return result;
        result = pg_exec(store, "ping", "SELECT 1", 0, NULL, PGRES_TUPLES_OK, NULL, err);
        if (result == CNP_OK || !pg_conn_lost(store))
            return result;
    }
    return result;
}

void pg_store_get_stats(const pg_store *store, pg_store_stats *out)
{
    *out = store->stats;
}

void pg_store_set_reconnect(pg_store *store, int attempts, int max_backoff_ms)
{
    store->reconnect_attempts = attempts < 1 ? 1 : attempts;
    store->max_backoff_ms = max_backoff_ms < STORE_BACKOFF_FIRST_MS ? STORE_BACKOFF_FIRST_MS
                                                                    : max_backoff_ms;
}

void pg_store_set_commit_hook(pg_store *store, pg_commit_hook hook, void *user)
{
    store->hook = hook;
    store->hook_user = user;
}
