/* Work items: their states, the one place that moves them, and chunks. */
#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "canopy/log.h"
#include "pipeline/pl_internal.h"

static const char *const state_names[] = {
    [ITEM_RECEIVED] = "received",       [ITEM_FETCHED] = "fetched",
    [ITEM_DECODED] = "decoded",         [ITEM_PROCESSED] = "processed",
    [ITEM_ENCODED] = "encoded",         [ITEM_UPLOADED] = "uploaded",
    [ITEM_COMMITTED] = "committed",     [ITEM_ACKNOWLEDGED] = "acknowledged",
    [ITEM_FAILED_PERMANENT] = "failed-permanent",
    [ITEM_FAILED_TRANSIENT] = "failed-transient",
};

const char *item_state_name(item_state s)
{
    if ((unsigned)s < sizeof state_names / sizeof state_names[0])
        return state_names[s];
    return "invalid";
}

/* The main line advances one step at a time. Any state before the end may
 * fail; a permanent failure may still become transient (its row could not
 * be committed, so its message must come back), and a transient failure is
 * final for this run. */
bool item_transition_ok(item_state from, item_state to)
{
    if (from > ITEM_FAILED_TRANSIENT || to > ITEM_FAILED_TRANSIENT)
        return false;
    if (to == ITEM_FAILED_TRANSIENT)
        return from != ITEM_ACKNOWLEDGED && from != ITEM_FAILED_TRANSIENT;
    if (to == ITEM_FAILED_PERMANENT)
        return from < ITEM_COMMITTED;
    if (from >= ITEM_ACKNOWLEDGED)
        return false;
    return to == from + 1;
}

void item_advance(pl_item *it, item_state to)
{
    if (!item_transition_ok(it->state, to)) {
        assert(!"illegal item state transition");
        LOG_ERROR("pipeline", "%s: illegal move %s -> %s; retried later", it->name,
                  item_state_name(it->state), item_state_name(to));
        it->state = ITEM_FAILED_TRANSIENT;
        it->fail_status = CNP_ERR_INTERNAL;
        snprintf(it->error, sizeof it->error, "%s: internal error (state)", it->name);
        return;
    }
    LOG_DEBUG("pipeline", "%s: %s -> %s", it->name, item_state_name(it->state),
              item_state_name(to));
    it->state = to;
}

item_state item_fail_state(cnp_status st)
{
    switch (st) {
    case CNP_ERR_INVALID:
    case CNP_ERR_FORMAT:
    case CNP_ERR_LIMIT:
    case CNP_ERR_NOTFOUND:
    case CNP_ERR_REMOTE:
        return ITEM_FAILED_PERMANENT;
    default: /* network, credentials, device, database, memory: try again later */
        return ITEM_FAILED_TRANSIENT;
    }
}

void item_fail(pl_item *it, cnp_status st, const char *fmt, ...)
{
    item_state to = item_fail_state(st);
    if (!item_transition_ok(it->state, to))
        to = ITEM_FAILED_TRANSIENT;
    if (!item_transition_ok(it->state, to))
        return; /* already failed transiently: keep the first reason */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(it->error, sizeof it->error, fmt, ap);
    va_end(ap);
    it->fail_status = st;
    item_advance(it, to);
}

void item_free(pl_item *it)
{
    free(it->name);
    free(it->bucket);
    free(it->key);
    free(it->path);
    free(it->etag);
    free(it->scan_id);
    free(it->address_id);
    free(it->out_stem);
    cnp_buf_free(&it->bytes.body);
    if (it->bytes.spill_path[0])
        unlink(it->bytes.spill_path);
    cnp_image_free(&it->img);
    img_georef_free(&it->geo);
    img_raster_close(it->raster);
    pipe_result_free(&it->res);
    free(it->trees_geo);
    pipe_outputs_free(&it->outs);
    for (int i = 0; i < PIPE_OUT_COUNT; i++)
        free(it->out_name[i]);
}

pl_item *chunk_add_item(pl_chunk *c, int ack, const char *bucket, const char *key,
                        const char *path)
{
    pl_item *grown = realloc(c->items, (c->nitems + 1) * sizeof *grown);
    if (!grown)
        return NULL;
    c->items = grown;
    pl_item *it = &grown[c->nitems];
    memset(it, 0, sizeof *it);
    it->ack = ack;
    it->state = ITEM_RECEIVED;
    bool ok;
    if (path) {
        ok = (it->path = strdup(path)) && (it->name = strdup(path));
    } else {
        size_t len = strlen(bucket) + strlen(key) + 8;
        ok = (it->bucket = strdup(bucket)) && (it->key = strdup(key)) &&
             (it->name = malloc(len));
        if (ok)
            snprintf(it->name, len, "s3://%s/%s", bucket, key);
    }
    if (!ok) {
        item_free(it);
        return NULL;
    }
    c->nitems++;
    return it;
}

static const char *const chunk_names[] = {
    [CHUNK_RECEIVED] = "received",   [CHUNK_FETCHED] = "fetched",
    [CHUNK_PROCESSED] = "processed", [CHUNK_WRITTEN] = "written",
    [CHUNK_COMMITTED] = "committed", [CHUNK_ACKNOWLEDGED] = "acknowledged",
    [CHUNK_FAILED] = "failed",
};

const char *chunk_state_name(chunk_state s)
{
    if ((unsigned)s < sizeof chunk_names / sizeof chunk_names[0])
        return chunk_names[s];
    return "invalid";
}

void chunk_advance(pl_chunk *c, chunk_state to)
{
    chunk_state from = atomic_load(&c->state);
    if (from == CHUNK_FAILED)
        return;
    if (to != from + 1 || to == CHUNK_FAILED) {
        LOG_ERROR("pipeline", "chunk %zu: illegal move %s -> %s (internal error)", c->seq,
                  chunk_state_name(from), chunk_state_name(to));
        return;
    }
    LOG_DEBUG("pipeline", "chunk %zu: %s -> %s", c->seq, chunk_state_name(from),
              chunk_state_name(to));
    atomic_store(&c->state, to);
}

void chunk_fail(pl_chunk *c, cnp_status st, const char *reason)
{
    for (size_t i = 0; i < c->nitems; i++)
        if (c->items[i].state != ITEM_FAILED_TRANSIENT)
            item_fail(&c->items[i], st, "%s: %s", c->items[i].name, reason);
    chunk_state from = atomic_exchange(&c->state, CHUNK_FAILED);
    if (from != CHUNK_FAILED)
        LOG_DEBUG("pipeline", "chunk %zu: %s -> failed (%s)", c->seq, chunk_state_name(from),
                  reason);
}

/* The source's state is freed by its own function: no allocation is needed
 * to free. */
void chunk_free(pl_chunk *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->nitems; i++)
        item_free(&c->items[i]);
    free(c->items);
    if (c->src_state && c->src_state_free)
        c->src_state_free(c->src_state);
    free(c);
}
