/* Source: local files (run). Chunks of the files the front end collected;
 * fetching reads each file; nothing to acknowledge. */
#include <stdlib.h>
#include <string.h>

#include <stdio.h>

#include "pipeline/sources.h"

struct pl_files_source {
    pl_file *files;        /* borrowed */
    size_t n, next;
    int chunk_size;
    int64_t max_bytes;
};

static bool files_next_chunk(pl_ctx *x, void *self, pl_chunk *c)
{
    pl_files_source *s = self;
    if (pl_cancelled(x))
        return false;
    for (; s->next < s->n && (int)c->nitems < s->chunk_size; s->next++) {
        pl_item *it = chunk_add_item(c, -1, NULL, NULL, s->files[s->next].path);
        if (!it || !(it->out_stem = strdup(s->files[s->next].stem))) {
            pl_set_fatal(x);
            break;
        }
    }
    return c->nitems > 0;
}

/* A TIFF or VRT file above [limits] window_pixels is not read into memory:
 * GDAL reads its windows from the file itself. True when it was opened so (or
 * failed). */
static bool open_large_tiff(pl_ctx *x, pl_item *it)
{
    unsigned char head[8];
    FILE *f = fopen(it->path, "rb");
    size_t got = f ? fread(head, 1, sizeof head, f) : 0;
    if (f)
        fclose(f);
    const char *kind = img_raster_sniff(head, got);
    if (!kind || (strcmp(kind, "tiff") != 0 && strcmp(kind, "vrt") != 0))
        return false;
    img_raster *r = NULL;
    img_georef geo;
    cnp_err err;
    if (img_raster_open(NULL, 0, it->path, it->path, &r, &geo, &err) != CNP_OK)
        return false; /* read and decoded whole: the decoder says why it fails */
    uint64_t px = (uint64_t)img_raster_width(r) * img_raster_height(r);
    if (px <= x->sp.window_pixels) {
        img_raster_close(r);
        img_georef_free(&geo);
        return false;
    }
    if (x->sp.max_pixels && px > x->sp.max_pixels) {
        item_fail(it, CNP_ERR_LIMIT, "%s: %ux%u = %llu pixels exceeds the limit of %llu pixels "
                  "(max_pixels)", it->path, img_raster_width(r), img_raster_height(r),
                  (unsigned long long)px, (unsigned long long)x->sp.max_pixels);
        img_raster_close(r);
        img_georef_free(&geo);
        return true;
    }
    it->raster = r;
    it->geo = geo;
    item_advance(it, ITEM_FETCHED);
    return true;
}

static void files_fetch(pl_ctx *x, void *self, pl_chunk *c)
{
    pl_files_source *s = self;
    for (size_t i = 0; i < c->nitems; i++) {
        pl_item *it = &c->items[i];
        if (it->state != ITEM_RECEIVED)
            continue;
        cnp_err err;
        double t0 = cnp_now();
        if (open_large_tiff(x, it)) {
            it->t_fetch = (cnp_now() - t0) * 1e3;
            continue;
        }
        cnp_status st = cnp_file_read(it->path, (size_t)s->max_bytes, &it->bytes.body, &err);
        it->t_fetch = (cnp_now() - t0) * 1e3;
        if (st != CNP_OK)
            item_fail(it, st == CNP_ERR_IO ? CNP_ERR_INVALID : st, "%s", err.msg);
        else
            item_advance(it, ITEM_FETCHED);
    }
}

const pl_source_ops pl_source_files_ops = {
    .next_chunk = files_next_chunk,
    .fetch = files_fetch,
    .acknowledge = pl_ack_without_message,
};

cnp_status pl_files_source_create(pl_file *files, size_t n, int chunk_size, int64_t max_bytes,
                                  pl_files_source **out, cnp_err *err)
{
    pl_files_source *s = calloc(1, sizeof *s);
    *out = NULL;
    if (!s) {
        cnp_err_set(err, "out of memory");
        return CNP_ERR_NOMEM;
    }
    s->files = files;
    s->n = n;
    s->chunk_size = chunk_size > 0 ? chunk_size : 1;
    s->max_bytes = max_bytes;
    *out = s;
    return CNP_OK;
}

void pl_files_source_free(pl_files_source *s)
{
    free(s);
}
