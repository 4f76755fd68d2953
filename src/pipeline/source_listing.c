/* Source: an S3 listing (reprocess). Chunks of objects already listed; no
 * messages, so acknowledging only marks committed items done. */
#include <stdlib.h>
#include <string.h>

#include "pipeline/sources.h"

struct pl_listing_source {
    const char *bucket;
    s3_list_entry *items;  /* borrowed */
    size_t n, next;
    int chunk_size;
    aws_batch *fetch_batch;
};

static bool listing_next_chunk(pl_ctx *x, void *self, pl_chunk *c)
{
    pl_listing_source *s = self;
    if (pl_cancelled(x))
        return false;
    for (; s->next < s->n && (int)c->nitems < s->chunk_size; s->next++) {
        pl_item *it = chunk_add_item(c, -1, s->bucket, s->items[s->next].key, NULL);
        if (!it || !(it->etag = strdup(s->items[s->next].etag))) {
            pl_set_fatal(x);
            break;
        }
    }
    return c->nitems > 0;
}

static void listing_fetch(pl_ctx *x, void *self, pl_chunk *c)
{
    pl_listing_source *s = self;
    pl_fetch_s3(x, s->fetch_batch, c);
}

const pl_source_ops pl_source_listing_ops = {
    .next_chunk = listing_next_chunk,
    .fetch = listing_fetch,
    .acknowledge = pl_ack_without_message,
};

cnp_status pl_listing_source_create(aws_client *aws, const char *bucket, s3_list_entry *items,
                                    size_t n, int chunk_size, pl_listing_source **out,
                                    cnp_err *err)
{
    pl_listing_source *s = calloc(1, sizeof *s);
    *out = NULL;
    if (!s) {
        cnp_err_set(err, "out of memory");
        return CNP_ERR_NOMEM;
    }
    cnp_status result = aws_batch_create(aws, &s->fetch_batch, err);
    if (result != CNP_OK) {
        free(s);
        return result;
    }
    s->bucket = bucket;
    s->items = items;
    s->n = n;
    s->chunk_size = chunk_size > 0 ? chunk_size : 1;
    *out = s;
    return CNP_OK;
}

void pl_listing_source_free(pl_listing_source *s)
{
    if (!s)
        return;
    aws_batch_free(s->fetch_batch);
    free(s);
}
