/* The run's count of images, each once: an image retried in the same run
 * (its message came back) and then done counts as ok, not as ok and
 * retried. The names of images whose latest attempt failed transiently are
 * kept in a hash set; a later ok or permanent failure takes them out. */
#include <stdlib.h>
#include <string.h>

#include "pipeline/tally.h"

void pl_tally_init(pl_tally *t)
{
    memset(t, 0, sizeof *t);
    pthread_mutex_init(&t->lock, NULL);
}

void pl_tally_destroy(pl_tally *t)
{
    for (size_t i = 0; i < t->cap; i++)
        if (t->slot[i] && t->slot[i] != PL_TALLY_GONE)
            free(t->slot[i]);
    free(t->slot);
    pthread_mutex_destroy(&t->lock);
}

static size_t hash(const char *s)
{
    size_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

/* The slot holding name, or (insert) the first free one on its probe path;
 * SIZE_MAX when absent (lookup) or full. */
static size_t find(const pl_tally *t, const char *name, bool insert)
{
    if (!t->cap)
        return SIZE_MAX;
    size_t free_at = SIZE_MAX;
    for (size_t k = 0, i = hash(name) & (t->cap - 1); k < t->cap; k++, i = (i + 1) & (t->cap - 1)) {
        char *s = t->slot[i];
        if (!s)
            return insert ? (free_at != SIZE_MAX ? free_at : i) : SIZE_MAX;
        if (s == PL_TALLY_GONE) {
            if (free_at == SIZE_MAX)
                free_at = i;
        } else if (strcmp(s, name) == 0) {
            return i;
        }
    }
    return insert ? free_at : SIZE_MAX;
}

static bool grow(pl_tally *t)
{
    size_t cap = t->cap ? 2 * t->cap : 64;
    char **old = t->slot;
    size_t ocap = t->cap;
    if (!(t->slot = calloc(cap, sizeof *t->slot))) {
        t->slot = old;
        return false;
    }
    t->cap = cap;
    t->used = 0;
    for (size_t i = 0; i < ocap; i++) {
        if (old[i] && old[i] != PL_TALLY_GONE) {
            t->slot[find(t, old[i], true)] = old[i];
            t->used++;
        }
    }
    free(old);
    return true;
}

void pl_tally_add(pl_tally *t, const char *name, pl_tally_outcome o)
{
    pthread_mutex_lock(&t->lock);
    size_t at = find(t, name, false);
    bool was_retried = at != SIZE_MAX;
    if (o == PL_TALLY_RETRIED) {
        if (!was_retried) {
            t->retried++;
            /* Keep the load under a half; without memory the image may be
             * counted again if it is retried once more (counts only). */
            if ((t->used + 1) * 2 <= t->cap || grow(t)) {
                char *copy = strdup(name);
                size_t i = copy ? find(t, name, true) : SIZE_MAX;
                if (i != SIZE_MAX) {
                    t->slot[i] = copy;
                    t->used++;
                } else {
                    free(copy);
                }
            }
        }
    } else {
        if (was_retried) {
            free(t->slot[at]);
            t->slot[at] = PL_TALLY_GONE;
            t->retried--;
        }
        if (o == PL_TALLY_OK)
            t->ok++;
        else
            t->failed++;
    }
    pthread_mutex_unlock(&t->lock);
}

void pl_tally_get(pl_tally *t, long long *ok, long long *failed, long long *retried)
{
    pthread_mutex_lock(&t->lock);
    *ok = t->ok;
    *failed = t->failed;
    *retried = t->retried;
    pthread_mutex_unlock(&t->lock);
}
