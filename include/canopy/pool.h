/* A fixed pool of worker threads running "parallel for" jobs: the caller
 * submits n tasks fn(arg, i), i in [0, n), and waits for all of them. Several
 * threads may submit at once; their tasks share the workers. */
#ifndef CANOPY_POOL_H
#define CANOPY_POOL_H

#include <stddef.h>

#include "canopy/status.h"

typedef struct cnp_pool cnp_pool;

/* threads <= 0: one per online core. */
cnp_status cnp_pool_create(int threads, cnp_pool **out, cnp_err *err);
/* Waits for running tasks, then stops the workers; accepts NULL. */
void cnp_pool_free(cnp_pool *pool);
int cnp_pool_threads(const cnp_pool *pool);

/* Runs fn(arg, i) for every i in [0, n) on the workers and returns when all
 * have finished. The calling thread works on the tasks too. */
void cnp_pool_for(cnp_pool *pool, size_t n, void (*fn)(void *arg, size_t i), void *arg);

#endif
