/* The run's count of images, each counted once (tally.c). */
#ifndef CANOPY_PL_TALLY_H
#define CANOPY_PL_TALLY_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum pl_tally_outcome {
    PL_TALLY_OK,
    PL_TALLY_FAILED,   /* permanently */
    PL_TALLY_RETRIED,  /* transiently: it may come back in this run */
} pl_tally_outcome;

#define PL_TALLY_GONE ((char *)1) /* a deleted slot */

typedef struct pl_tally {
    pthread_mutex_t lock;
    char **slot;       /* names of images whose latest attempt was retried */
    size_t cap, used;
    long long ok, failed, retried;
} pl_tally;

void pl_tally_init(pl_tally *t);
void pl_tally_destroy(pl_tally *t);
/* Records an attempt of the image `name`. A retried image counts once
 * however often it is retried; when it later ends ok or failed it moves
 * there. Thread-safe. */
void pl_tally_add(pl_tally *t, const char *name, pl_tally_outcome o);
/* Images ok, failed, and retried (their latest attempt failed transiently). */
void pl_tally_get(pl_tally *t, long long *ok, long long *failed, long long *retried);

#endif
