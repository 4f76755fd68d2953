/* Helpers for the store tests: a throw-away database per test on the local
 * stack's PostgreSQL (PG* variables), and table dumps to compare. Checks are
 * tests/testutil.h's; the helpers here end the test (CHECK_FATAL) when they
 * fail. */
#ifndef CANOPY_TESTS_PGTEST_H
#define CANOPY_TESTS_PGTEST_H

#include <stdio.h>
#include <stdlib.h>

#include <libpq-fe.h>

#include "canopy/store.h"
#include "testutil.h"

/* Exits 77 (skip) when the stack's variables are absent, 1 when they are
 * absent but CANOPY_TEST_REQUIRE_STACK=1. */
void pgt_require_stack(void);

/* Creates a database canopy_t_<random> and returns its conninfo
 * ("dbname=..."; host, port and user come from PG*). The database is dropped
 * at exit of the creating process (also when a CHECK fails). */
const char *pgt_db_create(void);

/* A store on the test database with the schema migrated (exits on failure). */
pg_store *pgt_store_open(const char *conninfo);

/* A direct libpq connection to the test database (for assertions). */
PGconn *pgt_connect(const char *conninfo);

/* All rows of sql as text, one line per row, '|' between columns, NULL
 * written as <NULL>. Caller frees. */
char *pgt_dump(PGconn *conn, const char *sql);

/* The single value of a one-row, one-column query as a long long. */
long long pgt_int(PGconn *conn, const char *sql);

/* Runs $CANOPY_STACK with one argument (pg-stop, pg-start); returns its exit status. */
int pgt_stack(const char *action);

#endif
