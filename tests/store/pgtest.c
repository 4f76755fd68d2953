/* Throw-away databases for the store tests. */
#include "store/pgtest.h"

#include <string.h>
#include <unistd.h>

#include "canopy/buf.h"

static char db_name[64];
static char db_conninfo[128];
static pid_t db_owner;

void pgt_require_stack(void)
{
    const char *flag = getenv("CANOPY_TEST_STACK");
    if (flag && *flag && strcmp(flag, "0") != 0)
        return;
    const char *req = getenv("CANOPY_TEST_REQUIRE_STACK");
    if (req && !strcmp(req, "1")) {
        fprintf(stderr, "CANOPY_TEST_STACK is not set but CANOPY_TEST_REQUIRE_STACK=1: "
                        "source .stack/env first\n");
        exit(1);
    }
    fprintf(stderr, "skipped: no local stack (CANOPY_TEST_STACK unset)\n");
    exit(77);
}

/* Connects to the maintenance database: PGDATABASE as it was at the first
 * call (a test may point PGDATABASE at its own database later), else postgres. */
static PGconn *admin_connect(void)
{
    static char admin_db[128];
    if (!admin_db[0]) {
        const char *db = getenv("PGDATABASE");
        snprintf(admin_db, sizeof admin_db, "%s", db && *db ? db : "postgres");
    }
    const char *keys[] = {"dbname", NULL};
    const char *vals[] = {admin_db, NULL};
    PGconn *c = PQconnectdbParams(keys, vals, 0);
    CHECK_FATAL(PQstatus(c) == CONNECTION_OK, "admin connection: %s", PQerrorMessage(c));
    return c;
}

static void admin_exec(const char *verb)
{
    PGconn *c = admin_connect();
    char *ident = PQescapeIdentifier(c, db_name, strlen(db_name));
    char sql[256];
    snprintf(sql, sizeof sql, "%s %s%s", verb, ident,
             !strncmp(verb, "DROP", 4) ? " WITH (FORCE)" : "");
    PQfreemem(ident);
    /* CREATE DATABASE fails while someone else uses template1: retry. */
    for (int attempt = 0;; attempt++) {
        PGresult *res = PQexec(c, sql);
        bool ok = PQresultStatus(res) == PGRES_COMMAND_OK;
        if (!ok && attempt < 20) {
            PQclear(res);
            usleep(250000);
            continue;
        }
        CHECK_FATAL(ok, "%s: %s", sql, PQresultErrorMessage(res));
        PQclear(res);
        break;
    }
    PQfinish(c);
}

static void drop_at_exit(void)
{
    if (db_name[0] && getpid() == db_owner) {
        PGconn *c = admin_connect();
        char *ident = PQescapeIdentifier(c, db_name, strlen(db_name));
        char sql[256];
        snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s WITH (FORCE)", ident);
        PQfreemem(ident);
        PQclear(PQexec(c, sql));
        PQfinish(c);
    }
}

const char *pgt_db_create(void)
{
    unsigned char rnd[6];
    FILE *f = fopen("/dev/urandom", "rb");
    CHECK_FATAL(f && fread(rnd, 1, sizeof rnd, f) == sizeof rnd, "/dev/urandom");
    fclose(f);
    snprintf(db_name, sizeof db_name, "canopy_t_%02x%02x%02x%02x%02x%02x", rnd[0], rnd[1],
             rnd[2], rnd[3], rnd[4], rnd[5]);
    admin_exec("CREATE DATABASE");
    db_owner = getpid();
    atexit(drop_at_exit);
    snprintf(db_conninfo, sizeof db_conninfo, "dbname=%s", db_name);
    return db_conninfo;
}

pg_store *pgt_store_open(const char *conninfo)
{
    pg_store *s = NULL;
    cnp_err err = {{0}};
    CHECK_FATAL(pg_store_open(conninfo, &s, &err) == CNP_OK, "open: %s", err.msg);
    CHECK_FATAL(pg_store_migrate(s, NULL, NULL, &err) == CNP_OK, "migrate: %s", err.msg);
    return s;
}

PGconn *pgt_connect(const char *conninfo)
{
    PGconn *c = PQconnectdb(conninfo);
    CHECK_FATAL(PQstatus(c) == CONNECTION_OK, "connect %s: %s", conninfo, PQerrorMessage(c));
    PQsetClientEncoding(c, "UTF8");
    return c;
}

char *pgt_dump(PGconn *conn, const char *sql)
{
    PGresult *res = PQexec(conn, sql);
    CHECK_FATAL(PQresultStatus(res) == PGRES_TUPLES_OK, "%s: %s", sql,
                PQresultErrorMessage(res));
    cnp_buf out = {0};
    for (int r = 0; r < PQntuples(res); r++) {
        for (int col = 0; col < PQnfields(res); col++) {
            if (col)
                cnp_buf_append(&out, "|", 1);
            const char *v = PQgetisnull(res, r, col) ? "<NULL>" : PQgetvalue(res, r, col);
            cnp_buf_append(&out, v, strlen(v));
        }
        cnp_buf_append(&out, "\n", 1);
    }
    cnp_buf_append(&out, "", 1);
    PQclear(res);
    return (char *)out.data;
}

long long pgt_int(PGconn *conn, const char *sql)
{
    PGresult *res = PQexec(conn, sql);
    CHECK_FATAL(PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1, "%s: %s", sql,
                PQresultErrorMessage(res));
    long long v = PQgetisnull(res, 0, 0) ? -1 : strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    PQclear(res);
    return v;
}

int pgt_stack(const char *action)
{
    const char *stack = getenv("CANOPY_STACK");
    CHECK_FATAL(stack && *stack, "CANOPY_STACK is not set");
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "'%s' %s", stack, action);
    return system(cmd);
}
