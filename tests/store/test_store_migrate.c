/* Migrations: from empty, re-run (same schema), 4 concurrent processes
 * (each migration applied once), and the `canopy db` command. */
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "canopy/store.h"
#include "cli/commands.h"
#include "store/pg_internal.h"
#include "store/pgtest.h"

/* Everything of the public schema a migration can change. */
static char *catalog_dump(const char *conninfo)
{
    PGconn *c = pgt_connect(conninfo);
    char *cols = pgt_dump(c,
        "SELECT table_name, column_name, ordinal_position, data_type, udt_name, "
        "is_nullable, column_default, is_identity FROM information_schema.columns "
        "WHERE table_schema = 'public' ORDER BY 1, 3");
    char *idx = pgt_dump(c,
        "SELECT tablename, indexname, indexdef FROM pg_indexes "
        "WHERE schemaname = 'public' ORDER BY 1, 2");
    char *cons = pgt_dump(c,
        "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) "
        "FROM pg_constraint WHERE connamespace = 'public'::regnamespace ORDER BY 1, 2");
    PQfinish(c);
    size_t len = strlen(cols) + strlen(idx) + strlen(cons) + 16;
    char *all = malloc(len);
    snprintf(all, len, "%s--\n%s--\n%s", cols, idx, cons);
    free(cols);
    free(idx);
    free(cons);
    return all;
}

static void test_from_empty_and_rerun(const char *ci, char **dump_out)
{
    size_t n_mig;
    pg_migrations(&n_mig);
    pg_store *s = NULL;
    cnp_err err = {{0}};
    CHECK_FATAL(pg_store_open(ci, &s, &err) == CNP_OK, "open: %s", err.msg);
    int version = -1, applied = -1;
    CHECK(pg_store_schema_version(s, &version, &err) == CNP_OK && version == 0,
          "empty version %d: %s", version, err.msg);
    CHECK(pg_store_migrate(s, &applied, &version, &err) == CNP_OK, "migrate: %s", err.msg);
    CHECK(applied == (int)n_mig && version == pg_store_schema_latest(),
          "applied %d version %d", applied, version);
    char *first = catalog_dump(ci);
    CHECK(strstr(first, "images_object_version_key") && strstr(first, "trees|image_ref"),
          "schema incomplete:\n%s", first);
    CHECK(pg_store_migrate(s, &applied, &version, &err) == CNP_OK, "re-migrate: %s", err.msg);
    CHECK(applied == 0 && version == pg_store_schema_latest(), "re-run applied %d", applied);
    char *second = catalog_dump(ci);
    CHECK(!strcmp(first, second), "schema changed on re-run:\n%s\nvs\n%s", first, second);
    free(second);
    PGconn *c = pgt_connect(ci);
    CHECK(pgt_int(c, "SELECT count(*) FROM schema_migrations") == (long long)n_mig,
          "schema_migrations rows");
    PQfinish(c);
    pg_store_free(s);
    *dump_out = first;
}

/* 4 processes migrate the same empty database at once. */
static void test_concurrent(const char *ci, const char *expected_dump)
{
    size_t n_mig;
    pg_migrations(&n_mig);
    int fds[4][2];
    pid_t pids[4];
    for (int i = 0; i < 4; i++) {
        CHECK_FATAL(pipe(fds[i]) == 0, "pipe");
        pids[i] = fork();
        CHECK_FATAL(pids[i] >= 0, "fork");
        if (pids[i] == 0) {
            pg_store *s = NULL;
            cnp_err err = {{0}};
            int applied = -1, version = -1;
            cnp_status st = pg_store_open(ci, &s, &err);
            if (st == CNP_OK)
                st = pg_store_migrate(s, &applied, &version, &err);
            if (st != CNP_OK)
                fprintf(stderr, "child %d: %s\n", i, err.msg);
            pg_store_free(s);
            int msg[2] = {st == CNP_OK ? applied : -1, version};
            if (write(fds[i][1], msg, sizeof msg) != (ssize_t)sizeof msg)
                _exit(2);
            _exit(st == CNP_OK ? 0 : 1);
        }
        close(fds[i][1]);
    }
    int total = 0;
    for (int i = 0; i < 4; i++) {
        int msg[2] = {-1, -1}, status = 0;
        CHECK(read(fds[i][0], msg, sizeof msg) == (ssize_t)sizeof msg, "child %d result", i);
        close(fds[i][0]);
        CHECK_FATAL(waitpid(pids[i], &status, 0) == pids[i], "waitpid");
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child %d failed", i);
        CHECK(msg[0] >= 0 && msg[1] == pg_store_schema_latest(), "child %d: %d %d", i, msg[0],
              msg[1]);
        total += msg[0];
    }
    CHECK(total == (int)n_mig, "migrations applied %d times in all, expected %zu", total, n_mig);
    PGconn *c = pgt_connect(ci);
    CHECK(pgt_int(c, "SELECT count(*) FROM schema_migrations") == (long long)n_mig,
          "schema_migrations rows");
    PQfinish(c);
    char *dump = catalog_dump(ci);
    CHECK(!strcmp(dump, expected_dump), "concurrent schema differs:\n%s", dump);
    free(dump);
}

static void test_cli(const char *ci)
{
    char a0[] = "db", a1[] = "migrate", a2[] = "--conninfo", a4[] = "--help", a5[] = "bogus",
         a6[] = "status";
    char a3[128];
    snprintf(a3, sizeof a3, "%s", ci);
    char *help[] = {a0, a4, NULL};
    CHECK(cmd_db(2, help) == CNP_EXIT_OK, "db --help");
    char *bad[] = {a0, a5, NULL};
    CHECK(cmd_db(2, bad) == CNP_EXIT_USAGE, "db bogus");
    char *none[] = {a0, NULL};
    CHECK(cmd_db(1, none) == CNP_EXIT_USAGE, "db without subcommand");
    char *missing[] = {a0, a1, a2, NULL};
    CHECK(cmd_db(3, missing) == CNP_EXIT_USAGE, "--conninfo without value");
    char *mig[] = {a0, a1, a2, a3, NULL};
    CHECK(cmd_db(4, mig) == CNP_EXIT_OK, "db migrate");
    char *st[] = {a0, a6, a2, a3, NULL};
    CHECK(cmd_db(4, st) == CNP_EXIT_OK, "db status");
    char badci[] = "host=127.0.0.1 port=notaport= x";
    char *cfgerr[] = {a0, a1, a2, badci, NULL};
    CHECK(cmd_db(4, cfgerr) == CNP_EXIT_USAGE, "unparsable conninfo is a usage error");
    PGconn *c = pgt_connect(ci);
    CHECK(pgt_int(c, "SELECT max(version) FROM schema_migrations") == pg_store_schema_latest(),
          "cli migrated");
    PQfinish(c);
}

int main(void)
{
    pgt_require_stack();
    /* One database per scenario: each starts empty. Only the parent creates
     * and drops them; pgt_db_create() keeps one name, so run in sequence. */
    char *dump = NULL;
    char ci[128];
    snprintf(ci, sizeof ci, "%s", pgt_db_create());
    test_from_empty_and_rerun(ci, &dump);
    PGconn *c = pgt_connect(ci);
    /* Reset to empty for the concurrent run, in the same database. */
    PGresult *res = PQexec(c, "DROP SCHEMA public CASCADE; CREATE SCHEMA public");
    CHECK(PQresultStatus(res) == PGRES_COMMAND_OK, "reset: %s", PQresultErrorMessage(res));
    PQclear(res);
    PQfinish(c);
    test_concurrent(ci, dump);
    c = pgt_connect(ci);
    res = PQexec(c, "DROP SCHEMA public CASCADE; CREATE SCHEMA public");
    CHECK(PQresultStatus(res) == PGRES_COMMAND_OK, "reset: %s", PQresultErrorMessage(res));
    PQclear(res);
    PQfinish(c);
    test_cli(ci);
    free(dump);
    return TEST_RESULT();
}
